//! [`ConnectionOptions`]: how the manager supervises one connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{
    Backoff, ConfigError, ConnectionConfig, ConstantBackoff, ExponentialBackoff, require_nonzero,
};
use serde::{Deserialize, Serialize};

/// Makes a fresh backoff for every supervisor the manager starts for a connection
/// (a connection is started again after `disconnect_all`).
pub(crate) type BackoffFactory = Arc<dyn Fn() -> Box<dyn Backoff> + Send + Sync>;

/// How the manager supervises one connection: the settings of its
/// [`Supervisor`](connection_core::Supervisor).
///
/// Serde form (every field optional, durations in milliseconds):
/// `{"connect_timeout_ms": 10000, "keepalive_interval_ms": null, "probe_timeout_ms":
/// 5000, "close_timeout_ms": 5000, "reconnect_delay_ms": null, "reconnect_max_attempts":
/// null}`. Without a `reconnect_delay` the connection reconnects with jittered
/// exponential backoff ([`ExponentialBackoff::default`]), so many connections that lose
/// one server together do not come back in lockstep. A custom backoff strategy (such
/// as one of `connection-retry`'s) is set with [`ConnectionOptionsBuilder::backoff`] and
/// is not part of the serde form.
///
/// ```
/// use connection_health::ConnectionOptions;
/// use std::time::Duration;
///
/// let opts = ConnectionOptions::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .reconnect_delay(Duration::from_millis(250))
///     .build()?;
/// assert_eq!(opts.connect_timeout(), Some(Duration::from_secs(2)));
///
/// let err = ConnectionOptions::builder().close_timeout(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "close_timeout");
///
/// let from_json: ConnectionOptions = serde_json::from_str(r#"{"connect_timeout_ms": 500}"#)?;
/// assert_eq!(from_json.connect_timeout(), Some(Duration::from_millis(500)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionOptions {
    #[serde(rename = "connect_timeout_ms", with = "opt_ms")]
    connect_timeout: Option<Duration>,
    #[serde(rename = "keepalive_interval_ms", with = "opt_ms")]
    keepalive_interval: Option<Duration>,
    #[serde(rename = "probe_timeout_ms", with = "ms")]
    probe_timeout: Duration,
    #[serde(rename = "close_timeout_ms", with = "ms")]
    close_timeout: Duration,
    #[serde(rename = "reconnect_delay_ms", with = "opt_ms")]
    reconnect_delay: Option<Duration>,
    reconnect_max_attempts: Option<u32>,
    #[serde(skip)]
    backoff: Option<BackoffFactory>,
}

impl Default for ConnectionOptions {
    /// Connect timeout 10 s, no keepalive (the manager's health checks probe instead),
    /// close timeout 5 s, reconnect forever with jittered exponential backoff (from
    /// 250 ms, at most 30 s).
    fn default() -> Self {
        Self {
            connect_timeout: Some(Duration::from_secs(10)),
            keepalive_interval: None,
            probe_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            reconnect_delay: None,
            reconnect_max_attempts: None,
            backoff: None,
        }
    }
}

impl ConnectionOptions {
    /// A builder starting from the defaults.
    pub fn builder() -> ConnectionOptionsBuilder {
        ConnectionOptionsBuilder {
            options: Self::default(),
        }
    }

    /// The lifecycle and retry settings of a [`ConnectionConfig`] (already validated):
    /// its reconnect schedule is [`ConnectionConfig::backoff`], the same jittered
    /// exponential schedule the `CONNECTION_RECONNECT_*` variables mean everywhere.
    pub fn from_config(config: &ConnectionConfig) -> Self {
        let schedule = config.clone();
        Self {
            connect_timeout: Some(config.connect_timeout),
            keepalive_interval: config.keepalive_interval,
            probe_timeout: config.probe_timeout,
            close_timeout: config.close_timeout,
            reconnect_delay: None,
            reconnect_max_attempts: config.reconnect_max_attempts,
            // A fresh schedule (and jitter seed) for every supervisor, so a fleet disperses.
            backoff: Some(Arc::new(move || {
                Box::new(schedule.backoff()) as Box<dyn Backoff>
            })),
        }
    }

    /// Bound on each connect attempt, if any.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The supervisor's own keepalive: interval and probe timeout, if enabled.
    pub fn keepalive(&self) -> Option<(Duration, Duration)> {
        self.keepalive_interval
            .map(|interval| (interval, self.probe_timeout))
    }

    /// Bound on a graceful close.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Checks every field, naming the first bad one. Deserialized options should be
    /// validated before use; [`ConnectionManager::add`](crate::ConnectionManager::add)
    /// does it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = self.connect_timeout {
            require_nonzero("connect_timeout", t)?;
        }
        if let Some(i) = self.keepalive_interval {
            require_nonzero("keepalive_interval", i)?;
            require_nonzero("probe_timeout", self.probe_timeout)?;
        }
        require_nonzero("close_timeout", self.close_timeout)?;
        if self.backoff.is_none()
            && let Some(delay) = self.reconnect_delay
        {
            require_nonzero("reconnect_delay", delay)?;
        }
        Ok(())
    }

    pub(crate) fn make_backoff(&self) -> Box<dyn Backoff> {
        match &self.backoff {
            Some(make) => make(),
            None => match (self.reconnect_delay, self.reconnect_max_attempts) {
                (Some(delay), Some(n)) => Box::new(ConstantBackoff::new(delay).max_attempts(n)),
                (Some(delay), None) => Box::new(ConstantBackoff::new(delay)),
                (None, Some(n)) => Box::new(ExponentialBackoff::default().max_attempts(n)),
                (None, None) => Box::new(ExponentialBackoff::default()),
            },
        }
    }
}

impl fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("probe_timeout", &self.probe_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("reconnect_max_attempts", &self.reconnect_max_attempts)
            .field("custom_backoff", &self.backoff.is_some())
            .finish()
    }
}

/// Builds [`ConnectionOptions`]; [`build`](Self::build) names the first bad field.
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectionOptionsBuilder {
    options: ConnectionOptions,
}

impl ConnectionOptionsBuilder {
    /// Bound on each connect attempt (default 10 s); over it the attempt fails with a
    /// retryable timeout.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.options.connect_timeout = Some(limit);
        self
    }

    /// No connect timeout beyond the transport's own.
    pub fn no_connect_timeout(mut self) -> Self {
        self.options.connect_timeout = None;
        self
    }

    /// The supervisor's keepalive: probe every `interval`, reconnect when a probe fails
    /// or takes over `timeout`. Off by default: the manager's [`HealthCheck`](crate::HealthCheck)
    /// probes and rates instead, without reconnecting.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.options.keepalive_interval = Some(interval);
        self.options.probe_timeout = timeout;
        self
    }

    /// Bound on a graceful close (default 5 s).
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.options.close_timeout = limit;
        self
    }

    /// A constant delay between reconnect attempts instead of the default jittered
    /// exponential backoff, when no [`backoff`](Self::backoff) is set. A constant delay
    /// brings a fleet of connections back in lockstep after a shared outage: prefer the
    /// default, or a jittered strategy, for many connections.
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.options.reconnect_delay = Some(delay);
        self
    }

    /// Give up (state `Failed`) after `n` reconnect attempts in a row, when no
    /// [`backoff`](Self::backoff) is set. Unlimited by default.
    pub fn reconnect_max_attempts(mut self, n: u32) -> Self {
        self.options.reconnect_max_attempts = Some(n);
        self
    }

    /// A custom reconnect strategy; `make` is called for every supervisor started for
    /// the connection, so each starts from a fresh state.
    pub fn backoff<B, F>(mut self, make: F) -> Self
    where
        B: Backoff,
        F: Fn() -> B + Send + Sync + 'static,
    {
        self.options.backoff = Some(Arc::new(move || Box::new(make()) as Box<dyn Backoff>));
        self
    }

    /// Validates and returns the options.
    pub fn build(self) -> Result<ConnectionOptions, ConfigError> {
        self.options.validate()?;
        Ok(self.options)
    }
}

/// Serde form of a duration: whole milliseconds.
pub(crate) mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Serde form of an optional duration: whole milliseconds or null.
pub(crate) mod opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_and_validation() {
        let opts = ConnectionOptions::builder()
            .keepalive(Duration::from_secs(3), Duration::from_secs(1))
            .reconnect_max_attempts(4)
            .build()
            .unwrap();
        let json = serde_json::to_string(&opts).unwrap();
        assert!(json.contains("\"keepalive_interval_ms\":3000"), "{json}");
        let back: ConnectionOptions = serde_json::from_str(&json).unwrap();
        assert_eq!(back.keepalive(), opts.keepalive());
        assert_eq!(back.reconnect_max_attempts, Some(4));

        let bad: ConnectionOptions =
            serde_json::from_str(r#"{"keepalive_interval_ms": 0}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().field(), "keepalive_interval");
        assert!(serde_json::from_str::<ConnectionOptions>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn default_backoff_honours_attempts() {
        let opts = ConnectionOptions::builder()
            .reconnect_delay(Duration::from_millis(7))
            .reconnect_max_attempts(1)
            .build()
            .unwrap();
        let mut b = opts.make_backoff();
        assert_eq!(b.next_delay(1, None), Some(Duration::from_millis(7)));
        assert_eq!(b.next_delay(2, None), None);
    }
}
