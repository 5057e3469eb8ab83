//! [`TcpConfig`]: the client's socket and buffer settings, validated, from code, serde or
//! `CONNECTION_TCP_*` variables.

use std::time::Duration;

use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_core::{ConfigError, require_at_most_max, require_in_range, require_nonzero};
use serde::{Deserialize, Serialize};

/// The prefix of the variables [`TcpConfig::from_env`] reads.
pub const ENV_PREFIX: &str = "CONNECTION_TCP_";

/// The largest send or receive buffer: 1 GiB.
pub const MAX_BUFFER_BYTES: usize = 1 << 30;

/// Socket and buffer settings of a [`TcpTransport`](crate::TcpTransport).
///
/// Every buffer is bounded in bytes: `send_buffer` bytes of encoded frames wait for the
/// socket before [`TcpSender::send`](crate::TcpSender::send) waits (a frame larger than
/// the whole buffer goes out alone), and `recv_buffer` bytes of received frames wait
/// for the application before the connection stops reading (and TCP slows the peer
/// down).
///
/// ```
/// use connection_transport_tcp::TcpConfig;
/// use std::time::Duration;
///
/// let config = TcpConfig::builder()
///     .connect_timeout(Duration::from_secs(3))
///     .keepalive(Some(Duration::from_secs(30)))
///     .send_buffer(256 << 10)
///     .build()?;
/// assert_eq!(config.connect_timeout(), Duration::from_secs(3));
/// assert!(config.nodelay(), "TCP_NODELAY is on by default");
///
/// let err = TcpConfig::from_vars([("CONNECTION_TCP_SEND_BUFFER", "0")]).unwrap_err();
/// assert_eq!(err.variable(), Some("CONNECTION_TCP_SEND_BUFFER"));
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    #[serde(rename = "connect_timeout_ms", with = "ms")]
    connect_timeout: Duration,
    #[serde(rename = "happy_eyeballs_delay_ms", with = "ms")]
    happy_eyeballs_delay: Duration,
    nodelay: bool,
    #[serde(rename = "keepalive_ms", with = "opt_ms")]
    keepalive: Option<Duration>,
    send_buffer: usize,
    recv_buffer: usize,
    #[serde(rename = "close_timeout_ms", with = "ms")]
    close_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            happy_eyeballs_delay: Duration::from_millis(250),
            nodelay: true,
            keepalive: Some(Duration::from_secs(60)),
            send_buffer: 1 << 20,
            recv_buffer: 128 << 10,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl TcpConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> TcpConfigBuilder {
        TcpConfigBuilder(Self::default())
    }

    /// Bound on one connect: resolving, every address tried, and the TLS handshake
    /// (default 10 s).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long an attempt on one address runs before the next address is tried in
    /// parallel (RFC 8305 "happy eyeballs"; default 250 ms).
    pub fn happy_eyeballs_delay(&self) -> Duration {
        self.happy_eyeballs_delay
    }

    /// Whether `TCP_NODELAY` is set (default on: frames go out when sent, and the
    /// writer batches what is queued on its own).
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// Idle time before TCP keepalive probes start, or `None` for none (default 60 s).
    pub fn keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    /// Bytes of encoded frames that may wait for the socket (default 1 MiB).
    pub fn send_buffer(&self) -> usize {
        self.send_buffer
    }

    /// Bytes of received frames that may wait for the application (default 128 KiB).
    ///
    /// The socket's own buffers hold more; this is how far the reader runs ahead of the
    /// application. Larger is not faster: frames read far ahead are memory the allocator
    /// returns to the kernel and faults in again (measured on 64 KiB frames: 1 MiB took
    /// 50 times the page faults of 128 KiB, and a third more CPU per frame).
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// Bound on a graceful close: queued frames flushed, TLS `close_notify`, FIN
    /// (default 5 s).
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The `CONNECTION_TCP_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_TCP_CONNECT_TIMEOUT_MS",
                "connect_timeout",
                "10000",
                "bound on resolving, connecting and the TLS handshake, ms",
            ),
            EnvVar::new(
                "CONNECTION_TCP_HAPPY_EYEBALLS_DELAY_MS",
                "happy_eyeballs_delay",
                "250",
                "delay before the next resolved address is tried in parallel, ms",
            ),
            EnvVar::new(
                "CONNECTION_TCP_NODELAY",
                "nodelay",
                "true",
                "set TCP_NODELAY",
            ),
            EnvVar::new(
                "CONNECTION_TCP_KEEPALIVE_MS",
                "keepalive",
                "60000",
                "idle time before TCP keepalive probes, ms; 0 turns them off",
            ),
            EnvVar::new(
                "CONNECTION_TCP_SEND_BUFFER",
                "send_buffer",
                "1048576",
                "bytes of frames waiting for the socket",
            ),
            EnvVar::new(
                "CONNECTION_TCP_RECV_BUFFER",
                "recv_buffer",
                "131072",
                "bytes of received frames waiting for the application",
            ),
            EnvVar::new(
                "CONNECTION_TCP_CLOSE_TIMEOUT_MS",
                "close_timeout",
                "5000",
                "bound on a graceful close, ms",
            ),
        ],
    );

    /// Reads the `CONNECTION_TCP_*` environment variables over the defaults; an unknown
    /// `CONNECTION_TCP_*` name, a value of the wrong type or one the builder refuses is an
    /// error naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs.
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        load_env(&Self::ENV, vars, |c: Self| c.validate())
    }

    /// Checks every setting; [`TcpConfigBuilder::build`] and deserialized configs go
    /// through it.
    pub fn validate(self) -> Result<Self, ConfigError> {
        require_nonzero("connect_timeout", self.connect_timeout)?;
        require_at_most_max("happy_eyeballs_delay", self.happy_eyeballs_delay)?;
        if let Some(k) = self.keepalive {
            require_at_most_max("keepalive", k)?;
        }
        require_in_range("send_buffer", self.send_buffer, 1..=MAX_BUFFER_BYTES)?;
        require_in_range("recv_buffer", self.recv_buffer, 1..=MAX_BUFFER_BYTES)?;
        require_nonzero("close_timeout", self.close_timeout)?;
        Ok(self)
    }
}

/// Builds a validated [`TcpConfig`]; see it for the meaning and default of each setting.
#[derive(Debug, Clone)]
#[must_use]
pub struct TcpConfigBuilder(TcpConfig);

impl TcpConfigBuilder {
    /// See [`TcpConfig::connect_timeout`].
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.0.connect_timeout = limit;
        self
    }

    /// See [`TcpConfig::happy_eyeballs_delay`].
    pub fn happy_eyeballs_delay(mut self, delay: Duration) -> Self {
        self.0.happy_eyeballs_delay = delay;
        self
    }

    /// See [`TcpConfig::nodelay`].
    pub fn nodelay(mut self, on: bool) -> Self {
        self.0.nodelay = on;
        self
    }

    /// See [`TcpConfig::keepalive`]; `Some(Duration::ZERO)` means none.
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.0.keepalive = idle.filter(|d| !d.is_zero());
        self
    }

    /// See [`TcpConfig::send_buffer`].
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.0.send_buffer = bytes;
        self
    }

    /// See [`TcpConfig::recv_buffer`].
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.0.recv_buffer = bytes;
        self
    }

    /// See [`TcpConfig::close_timeout`].
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.0.close_timeout = limit;
        self
    }

    /// The config, or the first setting that is out of range.
    pub fn build(self) -> Result<TcpConfig, ConfigError> {
        self.0.validate()
    }
}

mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// 0 (and `null`) mean "off".
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let v = Option::<u64>::deserialize(d)?;
        Ok(v.filter(|v| *v != 0).map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_default_loads_as_the_default() {
        let vars = TcpConfig::ENV
            .vars()
            .iter()
            .map(|v| (v.name(), v.default_value()));
        assert_eq!(TcpConfig::from_vars(vars).unwrap(), TcpConfig::default());
    }

    #[test]
    fn bad_values_name_their_setting() {
        let e = TcpConfig::builder().recv_buffer(0).build().unwrap_err();
        assert_eq!(e.field(), "recv_buffer");
        let e = TcpConfig::from_vars([("CONNECTION_TCP_CONNECT_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(e.variable(), Some("CONNECTION_TCP_CONNECT_TIMEOUT_MS"));
        let e = TcpConfig::from_vars([("CONNECTION_TCP_NODELAY", "maybe")]).unwrap_err();
        assert_eq!(e.variable(), Some("CONNECTION_TCP_NODELAY"));
        let e = TcpConfig::from_vars([("CONNECTION_TCP_TYPO", "1")]).unwrap_err();
        assert_eq!(e.variable(), Some("CONNECTION_TCP_TYPO"));
    }

    #[test]
    fn keepalive_zero_is_off() {
        let c = TcpConfig::from_vars([("CONNECTION_TCP_KEEPALIVE_MS", "0")]).unwrap();
        assert_eq!(c.keepalive(), None);
    }
}
