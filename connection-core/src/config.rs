//! Settings a deployment tunes: [`ConnectionConfig`].
//!
//! Three ways in, one validation: the builder, serde deserialization (durations in
//! milliseconds, field names as in the table below) and environment variables with the
//! `CONNECTION_` prefix. Each ends in [`ConnectionConfig::validate`], so a zero timeout or
//! a maximum below its minimum is refused with an error naming the field, whichever way
//! it came.
//!
//! | field | environment variable | default |
//! |---|---|---|
//! | `connect_timeout_ms` | `CONNECTION_TIMEOUT_MS` | 10 000 |
//! | `keepalive_interval_ms` (0 = off) | `CONNECTION_KEEPALIVE_INTERVAL_MS` | 0 |
//! | `probe_timeout_ms` | `CONNECTION_PROBE_TIMEOUT_MS` | 5 000 |
//! | `shutdown_timeout_ms` | `CONNECTION_SHUTDOWN_TIMEOUT_MS` | 5 000 |
//! | `retry_max_attempts` (absent = unlimited) | `CONNECTION_RETRY_MAX_ATTEMPTS` | unlimited |
//! | `retry_initial_delay_ms` | `CONNECTION_RETRY_INITIAL_DELAY_MS` | 100 |
//! | `retry_max_delay_ms` | `CONNECTION_RETRY_MAX_DELAY_MS` | 30 000 |
//!
//! ```
//! use connection_core::ConnectionConfig;
//! use std::time::Duration;
//!
//! let cfg = ConnectionConfig::builder()
//!     .connect_timeout(Duration::from_secs(3))
//!     .keepalive(Duration::from_secs(30), Duration::from_secs(5))
//!     .build()?;
//! assert_eq!(cfg.connect_timeout, Duration::from_secs(3));
//!
//! let err = ConnectionConfig::builder().connect_timeout(Duration::ZERO).build().unwrap_err();
//! assert_eq!(err.field(), "connect_timeout");
//!
//! let from_env = ConnectionConfig::from_vars([("CONNECTION_TIMEOUT_MS", "2500")])?;
//! assert_eq!(from_env.connect_timeout, Duration::from_millis(2500));
//! # Ok::<(), connection_core::ConfigError>(())
//! ```

use std::time::Duration;

/// The prefix of every environment variable read by [`ConnectionConfig::from_env`].
pub const ENV_PREFIX: &str = "CONNECTION_";

/// A setting that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending setting.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Refuses a zero duration for `field`: a zero timeout would fail every operation.
pub fn require_nonzero(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be greater than zero"))
    } else {
        Ok(())
    }
}

/// Deserializes `T` from the variables whose names start with `prefix`: the rest of
/// the name, lower-cased, is the field (`CONNECTION_POOL_MAX_SIZE` → `max_size`).
///
/// Every crate's config already has a serde form; reading the environment through it
/// means one schema and one validation for files and variables alike. Values that
/// parse as numbers or `true`/`false` are passed as such, `null` as null (to turn an
/// optional setting off), anything else as text. A value of the wrong type or an
/// unknown name is an error whose field is the prefix.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Limits { max_size: u32, mode: String }
///
/// let l: Limits = connection_core::from_prefixed_vars(
///     "APP_",
///     [("APP_MAX_SIZE", "8"), ("APP_MODE", "fast"), ("OTHER", "x")],
/// )?;
/// assert_eq!((l.max_size, l.mode.as_str()), (8, "fast"));
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
pub fn from_prefixed_vars<T, K, V>(
    prefix: &'static str,
    vars: impl IntoIterator<Item = (K, V)>,
) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned,
    K: AsRef<str>,
    V: AsRef<str>,
{
    use serde_json::{Map, Value};
    let mut fields = Map::new();
    for (key, value) in vars {
        let Some(field) = key.as_ref().strip_prefix(prefix) else {
            continue;
        };
        let value = value.as_ref().trim();
        let value = if let Ok(n) = value.parse::<u64>() {
            Value::from(n)
        } else if let Ok(x) = value.parse::<f64>() {
            Value::from(x)
        } else if let Ok(b) = value.parse::<bool>() {
            Value::from(b)
        } else if value == "null" {
            Value::Null
        } else {
            Value::from(value)
        };
        fields.insert(field.to_ascii_lowercase(), value);
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ConfigError::new(prefix, e.to_string()))
}

/// Connection lifecycle settings shared by every transport.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawConfig")]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// Limit on one connect attempt.
    pub connect_timeout: Duration,
    /// How often to probe an established connection; `None` turns keepalive off.
    pub keepalive_interval: Option<Duration>,
    /// Limit on one probe; a probe that takes longer declares the connection dead.
    pub probe_timeout: Duration,
    /// How long a graceful shutdown may take before tasks are aborted.
    pub shutdown_timeout: Duration,
    /// Reconnect attempts before giving up; `None` for no limit.
    pub retry_max_attempts: Option<u32>,
    /// First reconnect delay.
    pub retry_initial_delay: Duration,
    /// Ceiling on reconnect delays.
    pub retry_max_delay: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: None,
            probe_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            retry_max_attempts: None,
            retry_initial_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(30),
        }
    }
}

impl ConnectionConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ConnectionConfigBuilder {
        ConnectionConfigBuilder {
            config: Self::default(),
        }
    }

    /// Checks every rule; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_nonzero("connect_timeout", self.connect_timeout)?;
        require_nonzero("probe_timeout", self.probe_timeout)?;
        require_nonzero("shutdown_timeout", self.shutdown_timeout)?;
        require_nonzero("retry_initial_delay", self.retry_initial_delay)?;
        if let Some(interval) = self.keepalive_interval {
            require_nonzero("keepalive_interval", interval)?;
            if self.probe_timeout > interval {
                return Err(ConfigError::new(
                    "probe_timeout",
                    format!(
                        "{:?} is longer than keepalive_interval {interval:?}",
                        self.probe_timeout
                    ),
                ));
            }
        }
        if self.retry_max_delay < self.retry_initial_delay {
            return Err(ConfigError::new(
                "retry_max_delay",
                format!(
                    "{:?} is less than retry_initial_delay {:?}",
                    self.retry_max_delay, self.retry_initial_delay
                ),
            ));
        }
        if self.retry_max_attempts == Some(0) {
            return Err(ConfigError::new(
                "retry_max_attempts",
                "must be at least 1 (omit it for no limit)",
            ));
        }
        Ok(())
    }

    /// The defaults overridden by `CONNECTION_*` environment variables, validated.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::default().merge_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), reading from the given pairs instead of the
    /// process environment (tests, or a config map from elsewhere).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::default().merge_vars(vars)
    }

    /// Overrides the settings of `self` that `vars` mention (keys with the `CONNECTION_`
    /// prefix; others are ignored), then validates. Unknown `CONNECTION_` keys are ignored
    /// too, so other crates can add their own.
    pub fn merge_vars<K, V>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        for (key, value) in vars {
            let Some(key) = key.as_ref().strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let value = value.as_ref().trim();
            match key {
                "TIMEOUT_MS" => self.connect_timeout = ms("connect_timeout", value)?,
                "KEEPALIVE_INTERVAL_MS" => {
                    let d = ms("keepalive_interval", value)?;
                    self.keepalive_interval = (!d.is_zero()).then_some(d);
                }
                "PROBE_TIMEOUT_MS" => self.probe_timeout = ms("probe_timeout", value)?,
                "SHUTDOWN_TIMEOUT_MS" => self.shutdown_timeout = ms("shutdown_timeout", value)?,
                "RETRY_MAX_ATTEMPTS" => {
                    self.retry_max_attempts = Some(value.parse().map_err(|_| {
                        ConfigError::new(
                            "retry_max_attempts",
                            format!("{value:?} is not a whole number"),
                        )
                    })?);
                }
                "RETRY_INITIAL_DELAY_MS" => {
                    self.retry_initial_delay = ms("retry_initial_delay", value)?
                }
                "RETRY_MAX_DELAY_MS" => self.retry_max_delay = ms("retry_max_delay", value)?,
                _ => {}
            }
        }
        self.validate()?;
        Ok(self)
    }
}

fn ms(field: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            ConfigError::new(
                field,
                format!("{value:?} is not a whole number of milliseconds"),
            )
        })
}

/// Builds a validated [`ConnectionConfig`]; errors surface at [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct ConnectionConfigBuilder {
    config: ConnectionConfig,
}

impl ConnectionConfigBuilder {
    /// Limit on one connect attempt.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Probe every `interval`, declaring the connection dead when a probe takes longer
    /// than `timeout`.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive_interval = Some(interval);
        self.config.probe_timeout = timeout;
        self
    }

    /// Turns keepalive probes off (the default).
    pub fn no_keepalive(mut self) -> Self {
        self.config.keepalive_interval = None;
        self
    }

    /// How long a graceful shutdown may take.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Reconnect attempts before giving up.
    pub fn retry_max_attempts(mut self, n: u32) -> Self {
        self.config.retry_max_attempts = Some(n);
        self
    }

    /// First and largest reconnect delay.
    pub fn retry_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry_initial_delay = initial;
        self.config.retry_max_delay = max;
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<ConnectionConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The serde form: milliseconds, every field optional.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    connect_timeout_ms: Option<u64>,
    keepalive_interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    shutdown_timeout_ms: Option<u64>,
    retry_max_attempts: Option<u32>,
    retry_initial_delay_ms: Option<u64>,
    retry_max_delay_ms: Option<u64>,
}

impl TryFrom<RawConfig> for ConnectionConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let d = ConnectionConfig::default();
        let or = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let config = ConnectionConfig {
            connect_timeout: or(raw.connect_timeout_ms, d.connect_timeout),
            keepalive_interval: match raw.keepalive_interval_ms {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => d.keepalive_interval,
            },
            probe_timeout: or(raw.probe_timeout_ms, d.probe_timeout),
            shutdown_timeout: or(raw.shutdown_timeout_ms, d.shutdown_timeout),
            retry_max_attempts: raw.retry_max_attempts.or(d.retry_max_attempts),
            retry_initial_delay: or(raw.retry_initial_delay_ms, d.retry_initial_delay),
            retry_max_delay: or(raw.retry_max_delay_ms, d.retry_max_delay),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_names_the_bad_field() {
        let cases: Vec<(ConnectionConfigBuilder, &str)> = vec![
            (
                ConnectionConfig::builder().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (
                ConnectionConfig::builder().shutdown_timeout(Duration::ZERO),
                "shutdown_timeout",
            ),
            (
                ConnectionConfig::builder().keepalive(Duration::ZERO, Duration::from_secs(1)),
                "keepalive_interval",
            ),
            (
                ConnectionConfig::builder().keepalive(Duration::from_secs(1), Duration::ZERO),
                "probe_timeout",
            ),
            (
                ConnectionConfig::builder()
                    .keepalive(Duration::from_secs(1), Duration::from_secs(2)),
                "probe_timeout",
            ),
            (
                ConnectionConfig::builder()
                    .retry_delays(Duration::from_secs(2), Duration::from_secs(1)),
                "retry_max_delay",
            ),
            (
                ConnectionConfig::builder().retry_max_attempts(0),
                "retry_max_attempts",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field));
        }
        assert!(ConnectionConfig::builder().build().is_ok());
    }

    #[test]
    fn env_vars_override_defaults_and_are_validated() {
        let cfg = ConnectionConfig::from_vars([
            ("CONNECTION_TIMEOUT_MS", "1500"),
            ("CONNECTION_KEEPALIVE_INTERVAL_MS", "20000"),
            ("CONNECTION_PROBE_TIMEOUT_MS", "2000"),
            ("CONNECTION_RETRY_MAX_ATTEMPTS", "7"),
            ("CONNECTION_RETRY_INITIAL_DELAY_MS", "50"),
            ("CONNECTION_RETRY_MAX_DELAY_MS", "60000"),
            ("CONNECTION_SOMETHING_ELSE", "ignored"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.keepalive_interval, Some(Duration::from_secs(20)));
        assert_eq!(cfg.retry_max_attempts, Some(7));
        assert_eq!(cfg.retry_max_delay, Duration::from_secs(60));

        let err = ConnectionConfig::from_vars([("CONNECTION_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(err.field(), "connect_timeout");
        let err = ConnectionConfig::from_vars([("CONNECTION_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.field(), "connect_timeout");
        let err =
            ConnectionConfig::from_vars([("CONNECTION_RETRY_MAX_DELAY_MS", "10")]).unwrap_err();
        assert_eq!(err.field(), "retry_max_delay");
        let off = ConnectionConfig::from_vars([("CONNECTION_KEEPALIVE_INTERVAL_MS", "0")]).unwrap();
        assert_eq!(off.keepalive_interval, None);
    }

    #[test]
    fn serde_uses_milliseconds_and_validates() {
        let cfg: ConnectionConfig =
            serde_json::from_str(r#"{"connect_timeout_ms": 250, "retry_max_attempts": 3}"#)
                .unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.retry_max_attempts, Some(3));
        assert_eq!(cfg.probe_timeout, ConnectionConfig::default().probe_timeout);
        let err =
            serde_json::from_str::<ConnectionConfig>(r#"{"connect_timeout_ms": 0}"#).unwrap_err();
        assert!(err.to_string().contains("connect_timeout"), "{err}");
        let err =
            serde_json::from_str::<ConnectionConfig>(r#"{"conect_timeout_ms": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
