//! Settings a deployment tunes: [`ConnectionConfig`].
//!
//! Three ways in, one validation: the builder, serde deserialization (durations in
//! milliseconds, field names as in the table below) and environment variables with the
//! `CONNECTION_` prefix (the serde name upper-cased, read by [`crate::env::load_env`]).
//! Each ends in [`ConnectionConfig::validate`], so a zero timeout, a duration past
//! [`MAX_DURATION`] or a maximum below its minimum is refused with an error naming the
//! field (and the variable), whichever way it came.
//!
//! | serde field | environment variable | default |
//! |---|---|---|
//! | `connect_timeout_ms` | `CONNECTION_CONNECT_TIMEOUT_MS` | 10 000 |
//! | `keepalive_interval_ms` (0 or `null` = off) | `CONNECTION_KEEPALIVE_INTERVAL_MS` | off |
//! | `probe_timeout_ms` | `CONNECTION_PROBE_TIMEOUT_MS` | 5 000 |
//! | `close_timeout_ms` | `CONNECTION_CLOSE_TIMEOUT_MS` | 5 000 |
//! | `reconnect_max_attempts` (`null` = unlimited) | `CONNECTION_RECONNECT_MAX_ATTEMPTS` | unlimited |
//! | `reconnect_initial_delay_ms` | `CONNECTION_RECONNECT_INITIAL_DELAY_MS` | 250 |
//! | `reconnect_max_delay_ms` | `CONNECTION_RECONNECT_MAX_DELAY_MS` | 30 000 |
//!
//! The `CONNECTION_RECONNECT_*` variables mean one thing wherever they are read: the
//! reconnect schedule [`ConnectionConfig::backoff`], exponential from the initial delay,
//! doubling, capped at the maximum, with equal jitter (the library's default schedule).
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
//! let from_env = ConnectionConfig::from_vars([("CONNECTION_CONNECT_TIMEOUT_MS", "2500")])?;
//! assert_eq!(from_env.connect_timeout, Duration::from_millis(2500));
//! # Ok::<(), connection_core::ConfigError>(())
//! ```

use std::time::Duration;

use crate::env::EnvVar;

/// The prefix of every environment variable read by [`ConnectionConfig::from_env`].
pub const ENV_PREFIX: &str = crate::env::PROJECT_PREFIX;

/// The longest duration any setting accepts: one year. Longer is refused at build or
/// load time, so no deadline computed from a setting can overflow later.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A setting that was refused, and why: the setting's name, and when it came from the
/// environment, the variable and its value (never the value of a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: String,
    variable: Option<String>,
    value: Option<String>,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
            variable: None,
            value: None,
        }
    }

    /// The same error, located at an environment variable (and its value, unless it
    /// is a secret).
    pub fn with_variable(mut self, variable: String, value: Option<String>) -> Self {
        self.variable = Some(variable);
        self.value = value;
        self
    }

    /// The name of the offending setting (empty for an unknown variable).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The environment variable it came from, if it came from one.
    pub fn variable(&self) -> Option<&str> {
        self.variable.as_deref()
    }

    /// The value that was refused, when it came from the environment and is no secret.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid setting ")?;
        match (&self.variable, &self.value) {
            (Some(var), Some(value)) => write!(f, "{var}={value:?}")?,
            (Some(var), None) => write!(f, "{var}")?,
            (None, _) => write!(f, "`{}`", self.field)?,
        }
        if self.variable.is_some() && !self.field.is_empty() {
            write!(f, " (`{}`)", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Refuses a zero duration for `field` (a zero timeout would fail every operation), and
/// one past [`MAX_DURATION`].
pub fn require_nonzero(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be greater than zero"))
    } else {
        require_at_most_max(field, value)
    }
}

/// Refuses a duration past [`MAX_DURATION`] for `field`.
pub fn require_at_most_max(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        Err(ConfigError::new(
            field,
            format!("{value:?} is longer than the maximum, one year"),
        ))
    } else {
        Ok(())
    }
}

/// Refuses a count outside `min..=max` for `field`.
pub fn require_in_range<T>(
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ))
    }
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
    pub close_timeout: Duration,
    /// Reconnect attempts before giving up; `None` for no limit.
    pub reconnect_max_attempts: Option<u32>,
    /// First reconnect delay.
    pub reconnect_initial_delay: Duration,
    /// Ceiling on reconnect delays.
    pub reconnect_max_delay: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: None,
            probe_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            reconnect_max_attempts: None,
            reconnect_initial_delay: Duration::from_millis(250),
            reconnect_max_delay: Duration::from_secs(30),
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
        require_nonzero("close_timeout", self.close_timeout)?;
        require_nonzero("reconnect_initial_delay", self.reconnect_initial_delay)?;
        require_at_most_max("reconnect_max_delay", self.reconnect_max_delay)?;
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
        if self.reconnect_max_delay < self.reconnect_initial_delay {
            return Err(ConfigError::new(
                "reconnect_max_delay",
                format!(
                    "{:?} is less than reconnect_initial_delay {:?}",
                    self.reconnect_max_delay, self.reconnect_initial_delay
                ),
            ));
        }
        if self.reconnect_max_attempts == Some(0) {
            return Err(ConfigError::new(
                "reconnect_max_attempts",
                "must be at least 1 (omit it for no limit)",
            ));
        }
        Ok(())
    }

    /// The reconnect schedule these settings describe: exponential from
    /// `reconnect_initial_delay`, doubling, capped at `reconnect_max_delay`, equal jitter, for
    /// `reconnect_max_attempts` attempts (unlimited when `None`). With the defaults it is
    /// [`ExponentialBackoff::default`](crate::ExponentialBackoff::default).
    ///
    /// Each call seeds its own jitter, so connections built from one config disperse.
    ///
    /// ```
    /// use connection_core::{Backoff, ConnectionConfig};
    /// use std::time::Duration;
    ///
    /// let cfg = ConnectionConfig::from_vars([("CONNECTION_RECONNECT_MAX_ATTEMPTS", "3")])?;
    /// let mut schedule = cfg.backoff();
    /// let first = schedule.next_delay(1, None).unwrap();
    /// assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(250));
    /// assert_eq!(schedule.next_delay(4, None), None);
    /// // A supervisor takes its lifecycle settings and its schedule from the same config:
    /// // `Supervisor::new(transport).config(&cfg).backoff(cfg.backoff())`.
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn backoff(&self) -> crate::ExponentialBackoff {
        let b =
            crate::ExponentialBackoff::new(self.reconnect_initial_delay, self.reconnect_max_delay);
        match self.reconnect_max_attempts {
            Some(n) => b.max_attempts(n),
            None => b,
        }
    }

    /// The variables [`from_env`](Self::from_env) reads.
    pub const ENV: crate::env::EnvSection = crate::env::EnvSection::new(
        ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_CONNECT_TIMEOUT_MS",
                "connect_timeout",
                "10000",
                "limit on one connect attempt, ms",
            ),
            EnvVar::new(
                "CONNECTION_KEEPALIVE_INTERVAL_MS",
                "keepalive_interval",
                "0",
                "probe an established connection this often, ms (0 = off)",
            ),
            EnvVar::new(
                "CONNECTION_PROBE_TIMEOUT_MS",
                "probe_timeout",
                "5000",
                "limit on one probe, ms",
            ),
            EnvVar::new(
                "CONNECTION_CLOSE_TIMEOUT_MS",
                "close_timeout",
                "5000",
                "limit on a graceful close, ms",
            ),
            EnvVar::new(
                "CONNECTION_RECONNECT_MAX_ATTEMPTS",
                "reconnect_max_attempts",
                "null",
                "reconnect attempts before giving up (null = unlimited)",
            ),
            EnvVar::new(
                "CONNECTION_RECONNECT_INITIAL_DELAY_MS",
                "reconnect_initial_delay",
                "250",
                "first reconnect delay, ms (doubling, equal jitter)",
            ),
            EnvVar::new(
                "CONNECTION_RECONNECT_MAX_DELAY_MS",
                "reconnect_max_delay",
                "30000",
                "ceiling on reconnect delays, ms",
            ),
        ],
    );

    /// The defaults overridden by the `CONNECTION_*` environment variables of
    /// [`ENV`](Self::ENV), validated. Names under another crate's section
    /// (`CONNECTION_POOL_*`, ...) are left to it; any other unknown `CONNECTION_*` name is
    /// refused.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), reading from the given pairs instead of the
    /// process environment (tests, or a config map from elsewhere).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        crate::env::load_env(&Self::ENV, vars, |raw: RawConfig| {
            ConnectionConfig::try_from(raw)
        })
    }
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
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.config.close_timeout = d;
        self
    }

    /// Reconnect attempts before giving up.
    pub fn reconnect_max_attempts(mut self, n: u32) -> Self {
        self.config.reconnect_max_attempts = Some(n);
        self
    }

    /// First and largest reconnect delay.
    pub fn reconnect_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.config.reconnect_initial_delay = initial;
        self.config.reconnect_max_delay = max;
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
    close_timeout_ms: Option<u64>,
    reconnect_max_attempts: Option<u32>,
    reconnect_initial_delay_ms: Option<u64>,
    reconnect_max_delay_ms: Option<u64>,
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
            close_timeout: or(raw.close_timeout_ms, d.close_timeout),
            reconnect_max_attempts: raw.reconnect_max_attempts.or(d.reconnect_max_attempts),
            reconnect_initial_delay: or(raw.reconnect_initial_delay_ms, d.reconnect_initial_delay),
            reconnect_max_delay: or(raw.reconnect_max_delay_ms, d.reconnect_max_delay),
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
                ConnectionConfig::builder().close_timeout(Duration::ZERO),
                "close_timeout",
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
                    .reconnect_delays(Duration::from_secs(2), Duration::from_secs(1)),
                "reconnect_max_delay",
            ),
            (
                ConnectionConfig::builder().reconnect_max_attempts(0),
                "reconnect_max_attempts",
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
            ("CONNECTION_CONNECT_TIMEOUT_MS", "1500"),
            ("CONNECTION_KEEPALIVE_INTERVAL_MS", "20000"),
            ("CONNECTION_PROBE_TIMEOUT_MS", "2000"),
            ("CONNECTION_RECONNECT_MAX_ATTEMPTS", "7"),
            ("CONNECTION_RECONNECT_INITIAL_DELAY_MS", "50"),
            ("CONNECTION_RECONNECT_MAX_DELAY_MS", "60000"),
            ("CONNECTION_POOL_MAX_SIZE", "left to the pool"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.keepalive_interval, Some(Duration::from_secs(20)));
        assert_eq!(cfg.reconnect_max_attempts, Some(7));
        assert_eq!(cfg.reconnect_max_delay, Duration::from_secs(60));

        let err =
            ConnectionConfig::from_vars([("CONNECTION_CONNECT_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(err.field(), "connect_timeout");
        assert_eq!(err.variable(), Some("CONNECTION_CONNECT_TIMEOUT_MS"));
        let err =
            ConnectionConfig::from_vars([("CONNECTION_CONNECT_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.field(), "connect_timeout");
        assert_eq!(
            err.to_string(),
            "invalid setting CONNECTION_CONNECT_TIMEOUT_MS=\"0\" (`connect_timeout`): \
             must be greater than zero"
        );
        let err = ConnectionConfig::from_vars([("CONNECTION_TIMOUT_MS", "1")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_TIMOUT_MS"));
        let year_and_a_day = (366 * 24 * 3600 * 1000u64).to_string();
        let err =
            ConnectionConfig::from_vars([("CONNECTION_RECONNECT_MAX_DELAY_MS", year_and_a_day)])
                .unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_RECONNECT_MAX_DELAY_MS"));
        assert_eq!(
            ConnectionConfig::from_vars(Vec::<(String, String)>::new()).unwrap(),
            ConnectionConfig::default()
        );
        let err =
            ConnectionConfig::from_vars([("CONNECTION_RECONNECT_MAX_DELAY_MS", "10")]).unwrap_err();
        assert_eq!(err.field(), "reconnect_max_delay");
        let off = ConnectionConfig::from_vars([("CONNECTION_KEEPALIVE_INTERVAL_MS", "0")]).unwrap();
        assert_eq!(off.keepalive_interval, None);
    }

    #[test]
    fn serde_uses_milliseconds_and_validates() {
        let cfg: ConnectionConfig =
            serde_json::from_str(r#"{"connect_timeout_ms": 250, "reconnect_max_attempts": 3}"#)
                .unwrap();
        assert_eq!(cfg.connect_timeout, Duration::from_millis(250));
        assert_eq!(cfg.reconnect_max_attempts, Some(3));
        assert_eq!(cfg.probe_timeout, ConnectionConfig::default().probe_timeout);
        let err =
            serde_json::from_str::<ConnectionConfig>(r#"{"connect_timeout_ms": 0}"#).unwrap_err();
        assert!(err.to_string().contains("connect_timeout"), "{err}");
        let err =
            serde_json::from_str::<ConnectionConfig>(r#"{"conect_timeout_ms": 5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
