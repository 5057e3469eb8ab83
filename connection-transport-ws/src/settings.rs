//! [`WsSettings`]: the plain settings of a [`WsConfig`](crate::WsConfig) from serde (a
//! config file) or from `CONNECTION_WS_*` environment variables.
//!
//! | field | environment variable |
//! |---|---|
//! | `url` | `CONNECTION_WS_URL` |
//! | `bearer_token` | `CONNECTION_WS_BEARER_TOKEN` |
//! | `subprotocols` (comma-separated) | `CONNECTION_WS_SUBPROTOCOLS` |
//! | `connect_timeout_ms` | `CONNECTION_WS_CONNECT_TIMEOUT_MS` |
//! | `ping_interval_ms` (0 = no heartbeat) | `CONNECTION_WS_PING_INTERVAL_MS` |
//! | `pong_timeout_ms` | `CONNECTION_WS_PONG_TIMEOUT_MS` |
//! | `close_timeout_ms` | `CONNECTION_WS_CLOSE_TIMEOUT_MS` |
//! | `queue_capacity` | `CONNECTION_WS_QUEUE_CAPACITY` |
//! | `when_full` (`error` or `wait`) | `CONNECTION_WS_WHEN_FULL` |
//! | `inbound_buffer` | `CONNECTION_WS_INBOUND_BUFFER` |
//! | `inbound_buffer_bytes` | `CONNECTION_WS_INBOUND_BUFFER_BYTES` |
//! | `max_message_size` | `CONNECTION_WS_MAX_MESSAGE_SIZE` |
//! | `max_frame_size` | `CONNECTION_WS_MAX_FRAME_SIZE` |
//! | `read_buffer_size` | `CONNECTION_WS_READ_BUFFER_SIZE` |
//! | `reconnect` | `CONNECTION_WS_RECONNECT` |
//! | `reconnect_initial_delay_ms` | `CONNECTION_WS_RECONNECT_INITIAL_DELAY_MS` |
//! | `reconnect_max_delay_ms` | `CONNECTION_WS_RECONNECT_MAX_DELAY_MS` |
//! | `reconnect_max_attempts` | `CONNECTION_WS_RECONNECT_MAX_ATTEMPTS` |
//!
//! Absent fields keep the builder's defaults; the builder validates everything.
//! [`WsSettings::ENV`] lists the variables with their defaults and meanings, and
//! [`WsSettings::client_builder`] turns the settings into a client, reconnect schedule
//! included.

use std::fmt;
use std::time::Duration;

use connection_core::{ConfigError, Endpoint};
use serde::Deserialize;

use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_retry::{BackoffStrategy, Jitter};

use crate::client::{WsClient, WsClientBuilder};
use crate::config::{WhenFull, WsConfig, WsConfigBuilder};

/// The prefix of the environment variables read by [`WsSettings::from_env`].
pub const ENV_PREFIX: &str = "CONNECTION_WS_";

/// WebSocket client settings as plain data.
///
/// ```
/// use connection_transport_ws::WsSettings;
/// use std::time::Duration;
///
/// let settings = WsSettings::from_vars([
///     ("CONNECTION_WS_URL", "wss://api.example.com/feed"),
///     ("CONNECTION_WS_BEARER_TOKEN", "s3cret"),
///     ("CONNECTION_WS_PING_INTERVAL_MS", "15000"),
///     ("CONNECTION_WS_WHEN_FULL", "wait"),
/// ])?;
/// assert!(!format!("{settings:?}").contains("s3cret"));
/// let config = settings.into_builder()?.build()?;
/// assert_eq!(config.heartbeat().map(|(i, _)| i), Some(Duration::from_secs(15)));
///
/// let err = WsSettings::from_vars([("CONNECTION_WS_QUEUE_CAPACTY", "8")]).unwrap_err();
/// assert_eq!(err.variable(), Some("CONNECTION_WS_QUEUE_CAPACTY"));
/// # Ok::<(), connection_transport_ws::WsError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WsSettings {
    /// `ws://` or `wss://` URL.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Offered subprotocols, comma-separated, in preference order.
    pub subprotocols: Option<String>,
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: Option<u64>,
    /// Heartbeat ping interval in milliseconds; 0 turns the heartbeat off.
    pub ping_interval_ms: Option<u64>,
    /// Pong timeout in milliseconds.
    pub pong_timeout_ms: Option<u64>,
    /// Close handshake timeout in milliseconds.
    pub close_timeout_ms: Option<u64>,
    /// Outbound queue capacity in messages.
    pub queue_capacity: Option<usize>,
    /// What a send does on a full queue.
    pub when_full: Option<WhenFull>,
    /// Received messages buffered for a slow consumer.
    pub inbound_buffer: Option<usize>,
    /// Bytes of received messages buffered for a slow consumer.
    pub inbound_buffer_bytes: Option<usize>,
    /// Largest accepted message in bytes.
    pub max_message_size: Option<usize>,
    /// Largest accepted frame in bytes.
    pub max_frame_size: Option<usize>,
    /// Initial read buffer in bytes.
    pub read_buffer_size: Option<usize>,
    /// Whether to reconnect after a lost connection (default true).
    pub reconnect: Option<bool>,
    /// First reconnect delay in milliseconds (default 250; doubling, equal jitter).
    pub reconnect_initial_delay_ms: Option<u64>,
    /// Ceiling on reconnect delays in milliseconds (default 30 000).
    pub reconnect_max_delay_ms: Option<u64>,
    /// Reconnect attempts in a row before giving up (default: no limit).
    pub reconnect_max_attempts: Option<u32>,
}

impl fmt::Debug for WsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry credentials and the token is one: print neither.
        let url = self.url.as_deref().map(|u| {
            Endpoint::parse(u).map_or_else(|_| "<invalid>".to_owned(), |e| e.redacted().to_owned())
        });
        f.debug_struct("WsSettings")
            .field("url", &url)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("subprotocols", &self.subprotocols)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("ping_interval_ms", &self.ping_interval_ms)
            .field("pong_timeout_ms", &self.pong_timeout_ms)
            .field("close_timeout_ms", &self.close_timeout_ms)
            .field("queue_capacity", &self.queue_capacity)
            .field("when_full", &self.when_full)
            .field("inbound_buffer", &self.inbound_buffer)
            .field("inbound_buffer_bytes", &self.inbound_buffer_bytes)
            .field("reconnect", &self.reconnect)
            .field(
                "reconnect_initial_delay_ms",
                &self.reconnect_initial_delay_ms,
            )
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("reconnect_max_attempts", &self.reconnect_max_attempts)
            .finish_non_exhaustive()
    }
}

impl WsSettings {
    /// The `CONNECTION_WS_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_WS_URL",
                "url",
                "null",
                "ws:// or wss:// URL (required to build a client)",
            ),
            EnvVar::new(
                "CONNECTION_WS_BEARER_TOKEN",
                "bearer_token",
                "null",
                "sent as Authorization: Bearer <token>",
            )
            .secret(),
            EnvVar::new(
                "CONNECTION_WS_SUBPROTOCOLS",
                "subprotocols",
                "null",
                "offered subprotocols, comma-separated",
            ),
            EnvVar::new(
                "CONNECTION_WS_CONNECT_TIMEOUT_MS",
                "connect_timeout",
                "10000",
                "limit on the TCP, TLS and upgrade handshake, ms",
            ),
            EnvVar::new(
                "CONNECTION_WS_PING_INTERVAL_MS",
                "ping_interval",
                "30000",
                "heartbeat ping interval, ms (0 = no heartbeat)",
            ),
            EnvVar::new(
                "CONNECTION_WS_PONG_TIMEOUT_MS",
                "pong_timeout",
                "10000",
                "a pong later than this ends the connection, ms",
            ),
            EnvVar::new(
                "CONNECTION_WS_CLOSE_TIMEOUT_MS",
                "close_timeout",
                "5000",
                "limit on the close handshake, ms",
            ),
            EnvVar::new(
                "CONNECTION_WS_QUEUE_CAPACITY",
                "queue_capacity",
                "1024",
                "outbound queue, messages",
            ),
            EnvVar::new(
                "CONNECTION_WS_WHEN_FULL",
                "when_full",
                "error",
                "a send on a full queue: error or wait",
            ),
            EnvVar::new(
                "CONNECTION_WS_INBOUND_BUFFER",
                "inbound_buffer",
                "256",
                "received messages buffered for a slow consumer",
            ),
            EnvVar::new(
                "CONNECTION_WS_INBOUND_BUFFER_BYTES",
                "inbound_buffer_bytes",
                "16777216",
                "bytes of received messages buffered for a slow consumer",
            ),
            EnvVar::new(
                "CONNECTION_WS_MAX_MESSAGE_SIZE",
                "max_message_size",
                "67108864",
                "largest accepted message, bytes",
            ),
            EnvVar::new(
                "CONNECTION_WS_MAX_FRAME_SIZE",
                "max_frame_size",
                "16777216",
                "largest accepted frame, bytes",
            ),
            EnvVar::new(
                "CONNECTION_WS_READ_BUFFER_SIZE",
                "read_buffer_size",
                "8192",
                "initial read buffer, bytes",
            ),
            EnvVar::new(
                "CONNECTION_WS_RECONNECT",
                "reconnect",
                "true",
                "reconnect after a lost connection",
            ),
            EnvVar::new(
                "CONNECTION_WS_RECONNECT_INITIAL_DELAY_MS",
                "reconnect_initial_delay_ms",
                "250",
                "first reconnect delay, ms (doubling, equal jitter)",
            ),
            EnvVar::new(
                "CONNECTION_WS_RECONNECT_MAX_DELAY_MS",
                "reconnect_max_delay_ms",
                "30000",
                "ceiling on reconnect delays, ms",
            ),
            EnvVar::new(
                "CONNECTION_WS_RECONNECT_MAX_ATTEMPTS",
                "reconnect_max_attempts",
                "null",
                "reconnect attempts in a row before giving up (null = no limit)",
            ),
        ],
    );

    /// Reads the `CONNECTION_WS_*` environment variables; an unknown `CONNECTION_WS_*`
    /// name or a value of the wrong type is refused, naming the variable. The values
    /// are checked in full when the client is built.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only `CONNECTION_WS_*`
    /// keys are read).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        load_env(&Self::ENV, vars, |s: Self| {
            s.reconnect_backoff().map(drop)?;
            // Validate every value now, where the variable can still be named; a missing
            // URL is only an error when a client is built.
            let url = s
                .url
                .clone()
                .unwrap_or_else(|| "ws://127.0.0.1/".to_owned());
            match s.clone().apply(WsConfig::builder(url)).build() {
                Ok(_) => Ok(s),
                Err(crate::WsError::Config(e)) => Err(e),
                Err(other) => Err(ConfigError::new("url", other.to_string())),
            }
        })
    }

    /// A builder for the URL with these settings applied; fails (field `url`) without a
    /// URL.
    pub fn into_builder(self) -> Result<WsConfigBuilder, ConfigError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| ConfigError::new("url", "no URL given (CONNECTION_WS_URL)"))?;
        Ok(self.apply(WsConfig::builder(url)))
    }

    /// The reconnect schedule these settings describe: exponential from
    /// `reconnect_initial_delay_ms` (250), doubling, at most `reconnect_max_delay_ms`
    /// (30 000), equal jitter, for `reconnect_max_attempts` attempts; with none of them
    /// set it is [`default_backoff`](crate::default_backoff).
    pub fn reconnect_backoff(&self) -> Result<BackoffStrategy, ConfigError> {
        let ms = Duration::from_millis;
        let mut b =
            BackoffStrategy::exponential(ms(self.reconnect_initial_delay_ms.unwrap_or(250)), 2.0)
                .max_delay(ms(self.reconnect_max_delay_ms.unwrap_or(30_000)))
                .jitter(Jitter::Equal);
        if let Some(n) = self.reconnect_max_attempts {
            b = b.max_retries(n);
        }
        b.build().map_err(|e| {
            let field = match e.field() {
                "initial" => "reconnect_initial_delay_ms",
                "max_delay" => "reconnect_max_delay_ms",
                other => other,
            };
            ConfigError::new(field, e.reason())
        })
    }

    /// A client builder with every setting applied: the connection settings, the
    /// reconnect schedule and whether to reconnect at all.
    ///
    /// ```
    /// use connection_transport_ws::WsSettings;
    ///
    /// let settings = WsSettings::from_vars([
    ///     ("CONNECTION_WS_URL", "ws://127.0.0.1:9000/feed"),
    ///     ("CONNECTION_WS_RECONNECT_MAX_ATTEMPTS", "5"),
    /// ])?;
    /// let builder = settings.client_builder()?; // then `.spawn()` inside a runtime
    /// # drop(builder);
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn client_builder(self) -> Result<WsClientBuilder, ConfigError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| ConfigError::new("url", "no URL given (CONNECTION_WS_URL)"))?;
        let backoff = self.reconnect_backoff()?;
        let reconnect = self.reconnect.unwrap_or(true);
        Ok(WsClient::builder(url)
            .configure(|b| self.apply(b))
            .backoff(backoff)
            .reconnect(reconnect))
    }

    /// Applies the settings that are present to `builder` (the URL excepted).
    pub fn apply(self, mut b: WsConfigBuilder) -> WsConfigBuilder {
        let ms = Duration::from_millis;
        if let Some(token) = self.bearer_token {
            b = b.bearer_auth(token);
        }
        for p in self.subprotocols.iter().flat_map(|s| s.split(',')) {
            b = b.subprotocol(p.trim());
        }
        if let Some(v) = self.connect_timeout_ms {
            b = b.connect_timeout(ms(v));
        }
        match self.ping_interval_ms {
            Some(0) => b = b.no_heartbeat(),
            Some(v) => b = b.ping_interval(ms(v)),
            None => {}
        }
        if let Some(v) = self.pong_timeout_ms {
            if self.ping_interval_ms != Some(0) {
                b = b.pong_timeout(ms(v));
            }
        }
        if let Some(v) = self.close_timeout_ms {
            b = b.close_timeout(ms(v));
        }
        if let Some(v) = self.queue_capacity {
            b = b.queue_capacity(v);
        }
        if let Some(v) = self.when_full {
            b = b.when_full(v);
        }
        if let Some(v) = self.inbound_buffer {
            b = b.inbound_buffer(v);
        }
        if let Some(v) = self.inbound_buffer_bytes {
            b = b.inbound_buffer_bytes(v);
        }
        if let Some(v) = self.max_message_size {
            b = b.max_message_size(Some(v));
        }
        if let Some(v) = self.max_frame_size {
            b = b.max_frame_size(Some(v));
        }
        if let Some(v) = self.read_buffer_size {
            b = b.read_buffer_size(v);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_at_its_documented_default_gives_the_defaults() {
        let defaults: Vec<_> = WsSettings::ENV
            .vars()
            .iter()
            .map(|v| (v.name(), v.default_value()))
            .filter(|(name, _)| *name != "CONNECTION_WS_URL")
            .chain([("CONNECTION_WS_URL", "ws://127.0.0.1:1/")])
            .collect();
        let url = ("CONNECTION_WS_URL", "ws://127.0.0.1:1/");
        let explicit = WsSettings::from_vars(defaults)
            .unwrap()
            .client_builder()
            .unwrap();
        let implicit = WsSettings::from_vars([url])
            .unwrap()
            .client_builder()
            .unwrap();
        assert_eq!(format!("{explicit:?}"), format!("{implicit:?}"));
        let a = WsSettings::from_vars(
            WsSettings::ENV
                .vars()
                .iter()
                .map(|v| (v.name(), v.default_value()))
                .filter(|(n, _)| *n != "CONNECTION_WS_URL")
                .chain([url]),
        )
        .unwrap()
        .into_builder()
        .unwrap()
        .build()
        .unwrap();
        let b = WsConfig::builder("ws://127.0.0.1:1/").build().unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn numeric_token_and_bad_values() {
        let s = WsSettings::from_vars([
            ("CONNECTION_WS_URL", "ws://127.0.0.1:1/"),
            ("CONNECTION_WS_BEARER_TOKEN", "12345"),
            ("CONNECTION_WS_SUBPROTOCOLS", "a, b"),
            ("CONNECTION_WS_PING_INTERVAL_MS", "0"),
        ])
        .unwrap();
        assert_eq!(s.bearer_token.as_deref(), Some("12345"));
        let c = s.into_builder().unwrap().build().unwrap();
        assert_eq!(c.subprotocols(), ["a", "b"]);
        assert_eq!(c.heartbeat(), None);

        let err = WsSettings::from_vars([("CONNECTION_WS_NOPE", "1")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_WS_NOPE"));
        let err = WsSettings::from_vars([("CONNECTION_WS_BEARER_TOKEN", "")]);
        assert!(err.is_ok(), "an empty token is text");
        let err =
            WsSettings::from_vars([("CONNECTION_WS_RECONNECT_MAX_DELAY_MS", "0")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_WS_RECONNECT_MAX_DELAY_MS"));
        let err = WsSettings::from_vars([("CONNECTION_WS_RECONNECT", "maybe")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_WS_RECONNECT"));
        let err = WsSettings::default().into_builder().unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
        // Refused where it is read, naming the variable.
        for (var, bad) in [
            ("CONNECTION_WS_QUEUE_CAPACITY", "0"),
            ("CONNECTION_WS_QUEUE_CAPACITY", "18446744073709551615"),
            ("CONNECTION_WS_INBOUND_BUFFER", "1000000000000"),
            ("CONNECTION_WS_READ_BUFFER_SIZE", "18446744073709551615"),
            ("CONNECTION_WS_READ_BUFFER_SIZE", "100000000000"),
            ("CONNECTION_WS_PING_INTERVAL_MS", "NaN"),
            ("CONNECTION_WS_CONNECT_TIMEOUT_MS", "18446744073709551615"),
        ] {
            let err =
                WsSettings::from_vars([("CONNECTION_WS_URL", "ws://x/"), (var, bad)]).unwrap_err();
            assert_eq!(err.variable(), Some(var), "{var}={bad}: {err}");
        }
        let err = WsSettings::from_vars([("CONNECTION_WS_QUEUE_CAPACITY", "0")]).unwrap_err();
        assert!(err.to_string().contains("queue_capacity"), "{err}");
    }
}
