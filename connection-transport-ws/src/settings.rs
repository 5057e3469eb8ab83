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
//!
//! Absent fields keep the builder's defaults; the builder validates everything.

use std::fmt;
use std::time::Duration;

use connection_core::{ConfigError, Endpoint};
use serde::{Deserialize, Deserializer};

use crate::config::{WhenFull, WsConfig, WsConfigBuilder};
use crate::error::WsError;

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
/// # Ok::<(), connection_transport_ws::WsError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WsSettings {
    /// `ws://` or `wss://` URL.
    #[serde(deserialize_with = "text")]
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(deserialize_with = "text")]
    pub bearer_token: Option<String>,
    /// Offered subprotocols, comma-separated, in preference order.
    #[serde(deserialize_with = "text")]
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
}

/// Accepts text or a number as text (the environment reader turns digits into numbers).
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::U(n) => n.to_string(),
        Text::F(x) => x.to_string(),
        Text::B(b) => b.to_string(),
    }))
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
            .finish_non_exhaustive()
    }
}

impl WsSettings {
    /// Reads the `CONNECTION_WS_*` environment variables.
    pub fn from_env() -> Result<Self, WsError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only `CONNECTION_WS_*`
    /// keys are read).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, WsError> {
        Ok(connection_core::from_prefixed_vars(ENV_PREFIX, vars)?)
    }

    /// A builder for the URL with these settings applied; fails (field `url`) without a
    /// URL.
    pub fn into_builder(self) -> Result<WsConfigBuilder, WsError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| ConfigError::new("url", "no URL given (CONNECTION_WS_URL)"))?;
        Ok(self.apply(WsConfig::builder(url)))
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
        assert!(err.to_string().contains("CONNECTION_WS_"), "{err}");
        let err = WsSettings::default().into_builder().unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
        let err = WsSettings::from_vars([
            ("CONNECTION_WS_URL", "ws://x/"),
            ("CONNECTION_WS_QUEUE_CAPACITY", "0"),
        ])
        .unwrap()
        .into_builder()
        .unwrap()
        .build()
        .unwrap_err();
        assert!(err.to_string().contains("queue_capacity"), "{err}");
    }
}
