//! [`SseSettings`]: the settings of an [`SseConfig`] as plain data, from serde (a
//! config file) or `CONNECTION_SSE_*` environment variables ([`SseSettings::ENV`]
//! lists them with their defaults and meanings). Absent fields keep the builder's
//! defaults; the builder validates everything, and [`SseConfig`] deserializes through
//! this form.

use std::fmt;
use std::time::Duration;

use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_core::{ConfigError, Endpoint};
use serde::{Deserialize, Deserializer};

use crate::client::{SseClient, SseClientBuilder};
use crate::config::{SseConfig, SseConfigBuilder};
use crate::status::StatusSet;

/// The prefix of the environment variables read by [`SseSettings::from_env`].
pub const ENV_PREFIX: &str = "CONNECTION_SSE_";

/// SSE client settings as plain data.
///
/// ```
/// use connection_transport_sse::SseSettings;
/// use std::time::Duration;
///
/// let settings = SseSettings::from_vars([
///     ("CONNECTION_SSE_URL", "https://api.example.com/stream"),
///     ("CONNECTION_SSE_BEARER_TOKEN", "s3cret"),
///     ("CONNECTION_SSE_INACTIVITY_TIMEOUT_MS", "60000"),
///     ("CONNECTION_SSE_RETRY_STATUSES", "429,500-599"),
/// ])?;
/// assert!(!format!("{settings:?}").contains("s3cret"));
/// let config = settings.into_builder()?.build()?;
/// assert_eq!(config.inactivity_timeout(), Some(Duration::from_secs(60)));
/// assert!(!config.retry_statuses().contains(408));
///
/// let err = SseSettings::from_vars([("CONNECTION_SSE_MAX_REDIRECT", "3")]).unwrap_err();
/// assert_eq!(err.variable(), Some("CONNECTION_SSE_MAX_REDIRECT"));
/// # Ok::<(), connection_transport_sse::ConfigError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SseSettings {
    /// `http://` or `https://` URL of the stream.
    pub url: Option<String>,
    /// Request method (default GET).
    pub method: Option<String>,
    /// Request body, sent on every (re)connect.
    pub body: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// `Last-Event-ID` of the first request.
    pub last_event_id: Option<String>,
    /// Limit on getting the response headers, ms.
    pub connect_timeout_ms: Option<u64>,
    /// No byte for this long and the stream is presumed dead, ms; 0 turns it off.
    pub inactivity_timeout_ms: Option<u64>,
    /// Whether to reconnect after a lost stream (default true).
    pub reconnect: Option<bool>,
    /// First reconnect delay until the server sends `retry`, ms.
    pub reconnect_initial_delay_ms: Option<u64>,
    /// Ceiling on reconnect delays, ms.
    pub reconnect_max_delay_ms: Option<u64>,
    /// Reconnect attempts in a row before giving up (default: no limit).
    pub reconnect_max_attempts: Option<u32>,
    /// Uptime after which the reconnect delays start over, ms.
    pub reconnect_reset_after_ms: Option<u64>,
    /// Failing statuses that are retried, like `408,429,500-599`.
    pub retry_statuses: Option<StatusSet>,
    /// Redirects followed per request.
    pub max_redirects: Option<u32>,
    /// Limit on one line or event, bytes.
    pub max_event_size: Option<usize>,
    /// Items waiting for the application.
    pub inbound_buffer: Option<usize>,
    /// Bound on closing a connection, ms.
    pub close_timeout_ms: Option<u64>,
}

impl fmt::Debug for SseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry credentials and the token is one: print neither.
        let url = self.url.as_deref().map(|u| {
            Endpoint::parse(u).map_or_else(|_| "<invalid>".to_owned(), |e| e.redacted().to_owned())
        });
        f.debug_struct("SseSettings")
            .field("url", &url)
            .field("method", &self.method)
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("{} bytes", b.len())),
            )
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("last_event_id", &self.last_event_id)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("inactivity_timeout_ms", &self.inactivity_timeout_ms)
            .field("reconnect", &self.reconnect)
            .field(
                "reconnect_initial_delay_ms",
                &self.reconnect_initial_delay_ms,
            )
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("reconnect_max_attempts", &self.reconnect_max_attempts)
            .field("reconnect_reset_after_ms", &self.reconnect_reset_after_ms)
            .field("retry_statuses", &self.retry_statuses)
            .field("max_redirects", &self.max_redirects)
            .field("max_event_size", &self.max_event_size)
            .field("inbound_buffer", &self.inbound_buffer)
            .field("close_timeout_ms", &self.close_timeout_ms)
            .finish()
    }
}

impl SseSettings {
    /// The `CONNECTION_SSE_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_SSE_URL",
                "url",
                "null",
                "http:// or https:// URL of the event stream (required to build a client)",
            ),
            EnvVar::new("CONNECTION_SSE_METHOD", "method", "GET", "request method"),
            EnvVar::new(
                "CONNECTION_SSE_BODY",
                "body",
                "null",
                "request body, sent again on every reconnect",
            ),
            EnvVar::new(
                "CONNECTION_SSE_BEARER_TOKEN",
                "bearer_token",
                "null",
                "sent as Authorization: Bearer <token>",
            )
            .secret(),
            EnvVar::new(
                "CONNECTION_SSE_LAST_EVENT_ID",
                "last_event_id",
                "null",
                "Last-Event-ID of the first request (resume from an earlier run)",
            ),
            EnvVar::new(
                "CONNECTION_SSE_CONNECT_TIMEOUT_MS",
                "connect_timeout",
                "10000",
                "limit on getting the response headers, redirects included, ms",
            ),
            EnvVar::new(
                "CONNECTION_SSE_INACTIVITY_TIMEOUT_MS",
                "inactivity_timeout",
                "300000",
                "no byte for this long (not even a comment) and the stream is reconnected, ms (0 = never)",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RECONNECT",
                "reconnect",
                "true",
                "reconnect after a lost stream",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RECONNECT_INITIAL_DELAY_MS",
                "reconnect_initial_delay",
                "1000",
                "first reconnect delay until the server sends retry, ms (doubling, equal jitter)",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RECONNECT_MAX_DELAY_MS",
                "reconnect_max_delay",
                "30000",
                "ceiling on reconnect delays (a larger server retry wins), ms",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RECONNECT_MAX_ATTEMPTS",
                "reconnect_max_attempts",
                "null",
                "reconnect attempts in a row before giving up (null = no limit)",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RECONNECT_RESET_AFTER_MS",
                "stable_after",
                "60000",
                "a stream up this long starts the reconnect delays over, ms",
            ),
            EnvVar::new(
                "CONNECTION_SSE_RETRY_STATUSES",
                "retry_statuses",
                "408,429,500-599",
                "failing HTTP statuses that are retried (others are final)",
            ),
            EnvVar::new(
                "CONNECTION_SSE_MAX_REDIRECTS",
                "max_redirects",
                "10",
                "redirects followed per request",
            ),
            EnvVar::new(
                "CONNECTION_SSE_MAX_EVENT_SIZE",
                "max_event_size",
                "16777216",
                "largest line or event data, bytes",
            ),
            EnvVar::new(
                "CONNECTION_SSE_INBOUND_BUFFER",
                "inbound_buffer",
                "256",
                "received items waiting for the application",
            ),
            EnvVar::new(
                "CONNECTION_SSE_CLOSE_TIMEOUT_MS",
                "close_timeout",
                "5000",
                "limit on closing a connection, ms",
            ),
        ],
    );

    /// Reads the `CONNECTION_SSE_*` environment variables; an unknown `CONNECTION_SSE_*`
    /// name or a value of the wrong type is refused, naming the variable, and so is a
    /// value the builder refuses.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only
    /// `CONNECTION_SSE_*` keys are read).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        load_env(&Self::ENV, vars, |s: Self| {
            // Validate every value now, where the variable can still be named; a
            // missing URL is only an error when a client is built.
            let url = s
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1/".to_owned());
            s.clone().apply(SseConfig::builder(url)).build()?;
            Ok(s)
        })
    }

    /// A builder for the URL with these settings applied; fails (setting `url`)
    /// without a URL.
    pub fn into_builder(self) -> Result<SseConfigBuilder, ConfigError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| ConfigError::new("url", "no URL given (CONNECTION_SSE_URL)"))?;
        Ok(self.apply(SseConfig::builder(url)))
    }

    /// A client builder with every setting applied.
    ///
    /// ```
    /// use connection_transport_sse::SseSettings;
    ///
    /// let settings = SseSettings::from_vars([("CONNECTION_SSE_URL", "http://127.0.0.1:9000/e")])?;
    /// let builder = settings.client_builder()?; // then `.spawn()` inside a runtime
    /// # drop(builder);
    /// # Ok::<(), connection_transport_sse::ConfigError>(())
    /// ```
    pub fn client_builder(self) -> Result<SseClientBuilder, ConfigError> {
        Ok(SseClient::from_builder(self.into_builder()?))
    }

    /// Applies the settings that are present to `builder` (the URL excepted).
    pub fn apply(self, mut b: SseConfigBuilder) -> SseConfigBuilder {
        let ms = Duration::from_millis;
        if let Some(v) = self.method {
            b = b.method(v);
        }
        if let Some(v) = self.body {
            b = b.body(v);
        }
        if let Some(v) = self.bearer_token {
            b = b.bearer_auth(v);
        }
        if let Some(v) = self.last_event_id {
            b = b.last_event_id(v);
        }
        if let Some(v) = self.connect_timeout_ms {
            b = b.connect_timeout(ms(v));
        }
        match self.inactivity_timeout_ms {
            Some(0) => b = b.inactivity_timeout(None),
            Some(v) => b = b.inactivity_timeout(Some(ms(v))),
            None => {}
        }
        if let Some(v) = self.reconnect {
            b = b.reconnect(v);
        }
        let (initial, max) = b.delays();
        let initial = self.reconnect_initial_delay_ms.map_or(initial, ms);
        let max = self.reconnect_max_delay_ms.map_or(max, ms);
        b = b.reconnect_delays(initial, max);
        if self.reconnect_max_attempts.is_some() {
            b = b.max_attempts(self.reconnect_max_attempts);
        }
        if let Some(v) = self.reconnect_reset_after_ms {
            b = b.stable_after(ms(v));
        }
        if let Some(v) = self.retry_statuses {
            b = b.retry_statuses(v);
        }
        if let Some(v) = self.max_redirects {
            b = b.max_redirects(v);
        }
        if let Some(v) = self.max_event_size {
            b = b.max_event_size(v);
        }
        if let Some(v) = self.inbound_buffer {
            b = b.inbound_buffer(v);
        }
        if let Some(v) = self.close_timeout_ms {
            b = b.close_timeout(ms(v));
        }
        b
    }
}

impl TryFrom<SseSettings> for SseConfig {
    type Error = ConfigError;

    fn try_from(s: SseSettings) -> Result<Self, ConfigError> {
        s.into_builder()?.build()
    }
}

impl<'de> Deserialize<'de> for SseConfig {
    /// Deserializes through [`SseSettings`] and validates.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SseSettings::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_at_its_documented_default_gives_the_defaults() {
        let url = ("CONNECTION_SSE_URL", "http://127.0.0.1:1/");
        let explicit = SseSettings::from_vars(
            SseSettings::ENV
                .vars()
                .iter()
                .map(|v| (v.name(), v.default_value()))
                .filter(|(n, _)| *n != "CONNECTION_SSE_URL")
                .chain([url]),
        )
        .unwrap()
        .into_builder()
        .unwrap()
        .build()
        .unwrap();
        let implicit = SseConfig::builder("http://127.0.0.1:1/").build().unwrap();
        assert_eq!(format!("{explicit:?}"), format!("{implicit:?}"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        for (var, bad) in [
            ("CONNECTION_SSE_URL", "ftp://x/"),
            ("CONNECTION_SSE_METHOD", "BAD METHOD"),
            ("CONNECTION_SSE_CONNECT_TIMEOUT_MS", "0"),
            ("CONNECTION_SSE_CONNECT_TIMEOUT_MS", "-1"),
            ("CONNECTION_SSE_CONNECT_TIMEOUT_MS", "NaN"),
            ("CONNECTION_SSE_CONNECT_TIMEOUT_MS", "18446744073709551615"),
            ("CONNECTION_SSE_RECONNECT_MAX_DELAY_MS", "0"),
            ("CONNECTION_SSE_RECONNECT_RESET_AFTER_MS", "100000000000000"),
            ("CONNECTION_SSE_RETRY_STATUSES", "600"),
            ("CONNECTION_SSE_MAX_REDIRECTS", "1000"),
            ("CONNECTION_SSE_MAX_EVENT_SIZE", "0"),
            ("CONNECTION_SSE_INBOUND_BUFFER", "100000000000"),
            ("CONNECTION_SSE_RECONNECT", "maybe"),
            ("CONNECTION_SSE_NOPE", "1"),
        ] {
            let err = SseSettings::from_vars([(var, bad)]).unwrap_err();
            assert_eq!(err.variable(), Some(var), "{var}={bad}: {err}");
        }
        let err = SseSettings::from_vars([
            ("CONNECTION_SSE_RECONNECT_INITIAL_DELAY_MS", "5000"),
            ("CONNECTION_SSE_RECONNECT_MAX_DELAY_MS", "1000"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("CONNECTION_SSE_RECONNECT_INITIAL_DELAY_MS"),
            "{err}"
        );
        let token = SseSettings::from_vars([("CONNECTION_SSE_BEARER_TOKEN", "12345")]).unwrap();
        assert_eq!(token.bearer_token.as_deref(), Some("12345"));
        assert!(SseSettings::default().into_builder().is_err());
        let off = SseSettings::from_vars([
            ("CONNECTION_SSE_URL", "http://x/"),
            ("CONNECTION_SSE_INACTIVITY_TIMEOUT_MS", "0"),
        ])
        .unwrap();
        assert_eq!(
            off.into_builder()
                .unwrap()
                .build()
                .unwrap()
                .inactivity_timeout(),
            None
        );
    }

    #[test]
    fn config_deserializes_and_validates() {
        let c: SseConfig = serde_json::from_str(
            r#"{"url": "http://127.0.0.1:1/e", "method": "POST", "retry_statuses": "503"}"#,
        )
        .unwrap();
        assert_eq!(c.method(), "POST");
        assert!(!c.retry_statuses().contains(500));
        let e = serde_json::from_str::<SseConfig>(r#"{"url": "http://x/", "max_redirects": 1000}"#)
            .unwrap_err();
        assert!(e.to_string().contains("max_redirects"), "{e}");
    }
}
