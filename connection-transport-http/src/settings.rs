//! [`HttpSettings`]: the plain settings of an [`HttpConfig`] from serde (a config file)
//! or from `CONNECTION_HTTP_*` environment variables.
//!
//! Absent fields keep the builder's defaults; the builder validates everything, and
//! [`HttpSettings::from_vars`] does so while it can still name the variable.
//! [`HttpSettings::ENV`] lists the variables with their defaults and meanings.

use std::fmt;
use std::time::Duration;

use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_core::{ConfigError, Endpoint};
use reqwest::Method;
use serde::Deserialize;

use crate::client::HttpClient;
use crate::config::{Hedge, HttpConfig, HttpConfigBuilder, Probe};
use crate::error::HttpError;

/// The prefix of the variables [`HttpSettings::from_env`] reads.
pub const ENV_PREFIX: &str = "CONNECTION_HTTP_";

/// HTTP client settings as plain data.
///
/// ```
/// use connection_transport_http::HttpSettings;
/// use std::time::Duration;
///
/// let settings = HttpSettings::from_vars([
///     ("CONNECTION_HTTP_URL", "https://api.example.com/v1"),
///     ("CONNECTION_HTTP_BEARER_TOKEN", "s3cret"),
///     ("CONNECTION_HTTP_REQUEST_TIMEOUT_MS", "5000"),
///     ("CONNECTION_HTTP_MAX_RETRIES", "2"),
/// ])?;
/// assert!(!format!("{settings:?}").contains("s3cret"));
/// let config = settings.into_builder()?.build()?;
/// assert_eq!(config.request_timeout(), Some(Duration::from_secs(5)));
///
/// let err = HttpSettings::from_vars([("CONNECTION_HTTP_MAX_RETRIS", "2")]).unwrap_err();
/// assert_eq!(err.variable(), Some("CONNECTION_HTTP_MAX_RETRIS"));
/// # Ok::<(), connection_transport_http::HttpError>(())
/// ```
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSettings {
    /// The base URL, `http://` or `https://`.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// The header an API key goes in (with `api_key`).
    pub api_key_header: Option<String>,
    /// The API key.
    pub api_key: Option<String>,
    /// Basic auth user (with `basic_password`).
    pub basic_user: Option<String>,
    /// Basic auth password.
    pub basic_password: Option<String>,
    /// Limit on opening a connection, ms.
    pub connect_timeout_ms: Option<u64>,
    /// Limit on a whole request, ms; 0 = none.
    pub request_timeout_ms: Option<u64>,
    /// Longest silence while reading a response, ms; 0 = none.
    pub read_timeout_ms: Option<u64>,
    /// How long a pooled socket may stay idle, ms; 0 = until the server closes it.
    pub pool_idle_timeout_ms: Option<u64>,
    /// Most idle sockets kept per host.
    pub pool_max_idle_per_host: Option<usize>,
    /// Largest response body, bytes.
    pub max_response_bytes: Option<usize>,
    /// Retries after the first attempt; 0 = none.
    pub max_retries: Option<u32>,
    /// First retry delay, ms.
    pub retry_initial_delay_ms: Option<u64>,
    /// Ceiling on a retry delay, ms.
    pub retry_max_delay_ms: Option<u64>,
    /// Ceiling on a server's `Retry-After`, ms.
    pub retry_after_max_ms: Option<u64>,
    /// Share of recent requests retries may add.
    pub retry_budget_ratio: Option<f64>,
    /// Failures in a row that open the circuit; 0 = no breaker.
    pub breaker_failures: Option<u32>,
    /// How long the circuit stays open, ms.
    pub breaker_wait_ms: Option<u64>,
    /// Requests a second; absent or 0 = no limit.
    pub rate_limit_per_second: Option<u32>,
    /// Requests allowed at once (default: the rate).
    pub rate_limit_burst: Option<u32>,
    /// The health request's path.
    pub probe_path: Option<String>,
    /// The health request's method.
    pub probe_method: Option<String>,
    /// The status a healthy server answers the probe with (default: any below 500).
    pub probe_status: Option<u16>,
    /// Limit on the probe, ms.
    pub probe_timeout_ms: Option<u64>,
    /// Hedge after this delay, ms (or, with `hedge_percentile`, until enough requests
    /// were measured); absent or 0 = no hedging.
    pub hedge_delay_ms: Option<u64>,
    /// Hedge after the client's latency at this quantile, in (0, 1).
    pub hedge_percentile: Option<f64>,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry credentials; tokens, keys and passwords are secrets.
        let url = self.url.as_deref().map(|u| {
            Endpoint::parse(u).map_or_else(|_| "<invalid>".to_owned(), |e| e.redacted().to_owned())
        });
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("HttpSettings")
            .field("url", &url)
            .field("bearer_token", &hidden(&self.bearer_token))
            .field("api_key_header", &self.api_key_header)
            .field("api_key", &hidden(&self.api_key))
            .field("basic_user", &self.basic_user)
            .field("basic_password", &hidden(&self.basic_password))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("pool_idle_timeout_ms", &self.pool_idle_timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("breaker_failures", &self.breaker_failures)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("probe_path", &self.probe_path)
            .field("hedge_delay_ms", &self.hedge_delay_ms)
            .finish_non_exhaustive()
    }
}

const fn var(
    name: &'static str,
    field: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> EnvVar {
    EnvVar::new(name, field, default, meaning)
}

impl HttpSettings {
    /// The `CONNECTION_HTTP_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        ENV_PREFIX,
        &[
            var(
                "CONNECTION_HTTP_URL",
                "url",
                "null",
                "base URL, http:// or https:// (required to build a client)",
            ),
            var(
                "CONNECTION_HTTP_BEARER_TOKEN",
                "auth",
                "null",
                "sent as Authorization: Bearer <token>",
            )
            .secret(),
            var(
                "CONNECTION_HTTP_API_KEY_HEADER",
                "auth",
                "null",
                "header carrying CONNECTION_HTTP_API_KEY",
            ),
            var(
                "CONNECTION_HTTP_API_KEY",
                "auth",
                "null",
                "API key sent in that header",
            )
            .secret(),
            var(
                "CONNECTION_HTTP_BASIC_USER",
                "auth",
                "null",
                "basic auth user",
            ),
            var(
                "CONNECTION_HTTP_BASIC_PASSWORD",
                "auth",
                "null",
                "basic auth password",
            )
            .secret(),
            var(
                "CONNECTION_HTTP_CONNECT_TIMEOUT_MS",
                "connect_timeout",
                "10000",
                "limit on opening a connection (TCP and TLS), ms",
            ),
            var(
                "CONNECTION_HTTP_REQUEST_TIMEOUT_MS",
                "request_timeout",
                "30000",
                "limit on a whole request, each attempt's own, ms (0 = none)",
            ),
            var(
                "CONNECTION_HTTP_READ_TIMEOUT_MS",
                "read_timeout",
                "0",
                "longest silence while reading a response, ms (0 = none)",
            ),
            var(
                "CONNECTION_HTTP_POOL_IDLE_TIMEOUT_MS",
                "pool_idle_timeout",
                "4000",
                "how long a pooled keep-alive socket may idle, ms (0 = until the server closes it)",
            ),
            var(
                "CONNECTION_HTTP_POOL_MAX_IDLE_PER_HOST",
                "pool_max_idle_per_host",
                "null",
                "idle sockets kept per host (null = no limit)",
            ),
            var(
                "CONNECTION_HTTP_MAX_RESPONSE_BYTES",
                "max_response_size",
                "67108864",
                "largest response body accepted, bytes",
            ),
            var(
                "CONNECTION_HTTP_MAX_RETRIES",
                "max_retries",
                "3",
                "retries after the first attempt (0 = none)",
            ),
            var(
                "CONNECTION_HTTP_RETRY_INITIAL_DELAY_MS",
                "retry_backoff",
                "100",
                "first retry delay, ms (doubling, full jitter)",
            ),
            var(
                "CONNECTION_HTTP_RETRY_MAX_DELAY_MS",
                "retry_backoff",
                "5000",
                "ceiling on a retry delay, ms",
            ),
            var(
                "CONNECTION_HTTP_RETRY_AFTER_MAX_MS",
                "retry_after_max",
                "30000",
                "ceiling on a server's Retry-After, ms",
            ),
            var(
                "CONNECTION_HTTP_RETRY_BUDGET_RATIO",
                "retry_budget",
                "0.2",
                "share of recent requests retries may add",
            ),
            var(
                "CONNECTION_HTTP_BREAKER_FAILURES",
                "breaker",
                "5",
                "failures in a row that open the circuit (0 = no breaker)",
            ),
            var(
                "CONNECTION_HTTP_BREAKER_WAIT_MS",
                "breaker",
                "10000",
                "how long the circuit stays open, ms",
            ),
            var(
                "CONNECTION_HTTP_RATE_LIMIT_PER_SECOND",
                "rate_limit",
                "0",
                "requests a second (0 = no limit)",
            ),
            var(
                "CONNECTION_HTTP_RATE_LIMIT_BURST",
                "rate_limit",
                "null",
                "requests allowed at once (null = the rate)",
            ),
            var(
                "CONNECTION_HTTP_PROBE_PATH",
                "probe",
                "/",
                "path of the health request",
            ),
            var(
                "CONNECTION_HTTP_PROBE_METHOD",
                "probe",
                "GET",
                "method of the health request",
            ),
            var(
                "CONNECTION_HTTP_PROBE_STATUS",
                "probe",
                "null",
                "status of a healthy answer (null = any below 500)",
            ),
            var(
                "CONNECTION_HTTP_PROBE_TIMEOUT_MS",
                "probe",
                "5000",
                "limit on the health request, ms",
            ),
            var(
                "CONNECTION_HTTP_HEDGE_DELAY_MS",
                "hedge",
                "0",
                "send a second copy of a slow idempotent request after this, ms (0 = no hedging)",
            ),
            var(
                "CONNECTION_HTTP_HEDGE_PERCENTILE",
                "hedge",
                "null",
                "or after the client's latency at this quantile, in (0, 1)",
            ),
        ],
    );

    /// Reads the `CONNECTION_HTTP_*` environment variables; an unknown name, a value of
    /// the wrong type or out of range is refused, naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only
    /// `CONNECTION_HTTP_*` keys are read).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        load_env(&Self::ENV, vars, |s: Self| {
            // Validate every value now, where the variable can still be named; a missing
            // URL is only an error when a client is built.
            let url = s
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1/".to_owned());
            match s.clone().apply(HttpConfig::builder(url)).build() {
                Ok(_) => Ok(s),
                Err(HttpError::Config(e)) => Err(e),
                Err(other) => Err(ConfigError::new("url", other.to_string())),
            }
        })
    }

    /// A builder for the URL with these settings applied; fails (setting `url`) without
    /// a URL.
    pub fn into_builder(self) -> Result<HttpConfigBuilder, ConfigError> {
        let url = self
            .url
            .clone()
            .ok_or_else(|| ConfigError::new("url", "no URL given (CONNECTION_HTTP_URL)"))?;
        Ok(self.apply(HttpConfig::builder(url)))
    }

    /// A client with these settings; fails without a URL.
    pub fn into_client(self) -> Result<HttpClient, HttpError> {
        self.into_builder()?.build_client()
    }

    /// Applies the settings that are present to `b` (the URL excepted).
    pub fn apply(self, mut b: HttpConfigBuilder) -> HttpConfigBuilder {
        let ms = Duration::from_millis;
        if let Some(token) = &self.bearer_token {
            b = b.bearer_auth(token);
        }
        match (&self.api_key_header, &self.api_key) {
            (Some(h), Some(k)) => b = b.api_key(h, k),
            (None, Some(k)) => b = b.api_key("x-api-key", k),
            _ => {}
        }
        if let Some(user) = &self.basic_user {
            b = b.basic_auth(user, self.basic_password.as_deref());
        }
        if let Some(v) = self.connect_timeout_ms {
            b = b.connect_timeout(ms(v));
        }
        match self.request_timeout_ms {
            Some(0) => b = b.no_request_timeout(),
            Some(v) => b = b.request_timeout(ms(v)),
            None => {}
        }
        if let Some(v) = self.read_timeout_ms.filter(|v| *v != 0) {
            b = b.read_timeout(ms(v));
        }
        match self.pool_idle_timeout_ms {
            Some(0) => b = b.pool_idle_timeout(None),
            Some(v) => b = b.pool_idle_timeout(Some(ms(v))),
            None => {}
        }
        if let Some(n) = self.pool_max_idle_per_host {
            b = b.pool_max_idle_per_host(n);
        }
        if let Some(n) = self.max_response_bytes {
            b = b.max_response_size(n);
        }
        if let Some(n) = self.max_retries {
            b = b.max_retries(n);
        }
        if self.retry_initial_delay_ms.is_some() || self.retry_max_delay_ms.is_some() {
            b = b.retry_backoff(
                ms(self.retry_initial_delay_ms.unwrap_or(100)),
                ms(self.retry_max_delay_ms.unwrap_or(5_000)),
            );
        }
        if let Some(v) = self.retry_after_max_ms {
            b = b.retry_after_max(ms(v));
        }
        if let Some(r) = self.retry_budget_ratio {
            b = b.retry_budget(Some(r));
        }
        match (self.breaker_failures, self.breaker_wait_ms) {
            (Some(0), _) => b = b.no_circuit_breaker(),
            (None, None) => {}
            (failures, wait) => {
                b = b.breaker(
                    failures.unwrap_or(crate::config::DEFAULT_BREAKER_FAILURES),
                    wait.map_or(crate::config::DEFAULT_BREAKER_WAIT, ms),
                );
            }
        }
        if let Some(rate) = self.rate_limit_per_second.filter(|r| *r != 0) {
            b = b.rate_limit(rate, self.rate_limit_burst.unwrap_or(rate));
        }
        if self.probe_path.is_some()
            || self.probe_method.is_some()
            || self.probe_status.is_some()
            || self.probe_timeout_ms.is_some()
        {
            let method = match self.probe_method.as_deref().map(str::trim) {
                None => Method::GET,
                Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(method) if !m.is_empty() => method,
                    _ => {
                        return b.refuse(ConfigError::new(
                            "probe",
                            format!("`{m}` is not an HTTP method"),
                        ));
                    }
                },
            };
            let mut probe = Probe::new(
                method,
                self.probe_path.clone().unwrap_or_else(|| "/".into()),
            );
            if let Some(s) = self.probe_status {
                probe = probe.expect_status(s);
            }
            if let Some(t) = self.probe_timeout_ms {
                probe = probe.timeout(ms(t));
            }
            b = b.probe(probe);
        }
        let hedge_delay = self.hedge_delay_ms.filter(|d| *d != 0).map(ms);
        match (self.hedge_percentile, hedge_delay) {
            (Some(q), delay) => {
                b = b.hedge(Hedge::at_percentile(
                    q,
                    delay.unwrap_or(Duration::from_millis(100)),
                ));
            }
            (None, Some(delay)) => b = b.hedge(Hedge::after(delay)),
            (None, None) => {}
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: (&str, &str) = ("CONNECTION_HTTP_URL", "http://127.0.0.1:1/");

    #[test]
    fn every_variable_at_its_documented_default_gives_the_defaults() {
        let explicit = HttpSettings::from_vars(
            HttpSettings::ENV
                .vars()
                .iter()
                .filter(|v| v.default_value() != "null")
                .map(|v| (v.name(), v.default_value()))
                .filter(|(n, _)| *n != "CONNECTION_HTTP_URL")
                .chain([URL]),
        )
        .unwrap()
        .into_builder()
        .unwrap()
        .build()
        .unwrap();
        let implicit = HttpConfig::builder(URL.1).build().unwrap();
        assert_eq!(format!("{explicit:?}"), format!("{implicit:?}"));
    }

    #[test]
    fn values_are_applied_and_bad_ones_name_their_variable() {
        let s = HttpSettings::from_vars([
            URL,
            ("CONNECTION_HTTP_API_KEY_HEADER", "x-key"),
            ("CONNECTION_HTTP_API_KEY", "12345"),
            ("CONNECTION_HTTP_REQUEST_TIMEOUT_MS", "0"),
            ("CONNECTION_HTTP_POOL_IDLE_TIMEOUT_MS", "0"),
            ("CONNECTION_HTTP_PROBE_PATH", "/healthz"),
            ("CONNECTION_HTTP_PROBE_STATUS", "204"),
            ("CONNECTION_HTTP_HEDGE_DELAY_MS", "50"),
            ("CONNECTION_HTTP_BREAKER_FAILURES", "0"),
        ])
        .unwrap();
        assert_eq!(s.api_key.as_deref(), Some("12345"));
        assert!(!format!("{s:?}").contains("12345"));
        let c = s.into_builder().unwrap().build().unwrap();
        assert_eq!(c.request_timeout(), None);
        assert_eq!(c.pool_idle_timeout(), None);
        assert_eq!(c.probe().path(), "/healthz");
        assert_eq!(c.probe().expected_status(), Some(204));
        assert_eq!(c.hedge(), Some(Hedge::after(Duration::from_millis(50))));
        assert_eq!(c.header_names().next(), Some("x-key"));

        for (var, bad) in [
            ("CONNECTION_HTTP_CONNECT_TIMEOUT_MS", "0"),
            ("CONNECTION_HTTP_CONNECT_TIMEOUT_MS", "NaN"),
            ("CONNECTION_HTTP_CONNECT_TIMEOUT_MS", "18446744073709551615"),
            ("CONNECTION_HTTP_MAX_RETRIES", "1000"),
            ("CONNECTION_HTTP_MAX_RESPONSE_BYTES", "0"),
            ("CONNECTION_HTTP_RETRY_BUDGET_RATIO", "-1"),
            ("CONNECTION_HTTP_RETRY_BUDGET_RATIO", "inf"),
            ("CONNECTION_HTTP_PROBE_PATH", "healthz"),
            ("CONNECTION_HTTP_HEDGE_PERCENTILE", "2"),
            ("CONNECTION_HTTP_PROBE_METHOD", "GE T"),
            ("CONNECTION_HTTP_PROBE_STATUS", "600"),
            ("CONNECTION_HTTP_URL", "ftp://x"),
            ("CONNECTION_HTTP_BEARER_TOKEN", "bad\ntoken"),
        ] {
            let err = HttpSettings::from_vars([URL, (var, bad)]).unwrap_err();
            assert_eq!(err.variable(), Some(var), "{var}={bad}: {err}");
        }
        let err =
            HttpSettings::from_vars([("CONNECTION_HTTP_BEARER_TOKEN", "bad\ntoken")]).unwrap_err();
        assert!(!err.to_string().contains("bad\ntoken"), "{err}");
        let err = HttpSettings::from_vars([("CONNECTION_HTTP_NOPE", "1")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_HTTP_NOPE"));
        assert!(HttpSettings::default().into_builder().is_err());
    }
}
