//! Serde and environment configuration for rate limiters.

use std::time::Duration;

use connection_core::ConfigError;

use super::{LimitMode, Quota, RateLimiter, RateLimiterBuilder};

/// Prefix of the environment variables read by [`RateLimitConfig::from_env`].
const ENV_PREFIX: &str = "CONNECTION_RATE_LIMIT_";

/// The serde form of a limiter mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitModeConfig {
    /// [`LimitMode::Wait`].
    #[default]
    Wait,
    /// [`LimitMode::FailFast`].
    FailFast,
}

/// A rate limiter's settings, from serde or `CONNECTION_RATE_LIMIT_*` variables.
///
/// | field | variable | meaning |
/// |---|---|---|
/// | `rate` | `CONNECTION_RATE_LIMIT_RATE` | calls per period (required) |
/// | `period_ms` | `CONNECTION_RATE_LIMIT_PERIOD_MS` | the period, default 1000 |
/// | `burst` | `CONNECTION_RATE_LIMIT_BURST` | calls allowed at once (required) |
/// | `mode` | `CONNECTION_RATE_LIMIT_MODE` | `wait` (default) or `fail_fast` |
/// | `max_wait_ms` | `CONNECTION_RATE_LIMIT_MAX_WAIT_MS` | longest wait in `wait` mode |
/// | `jitter_ms` | `CONNECTION_RATE_LIMIT_JITTER_MS` | random extra wait, default 0 |
///
/// ```
/// use connection_retry::limit::RateLimitConfig;
///
/// let cfg: RateLimitConfig = serde_json::from_str(r#"{"rate": 100, "burst": 10, "mode": "fail_fast"}"#)?;
/// let limiter = cfg.build()?;
/// assert_eq!(limiter.quota().burst(), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Calls per period.
    pub rate: u32,
    /// The period in milliseconds (default one second).
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Calls allowed at once.
    pub burst: u32,
    /// Wait or fail fast.
    #[serde(default)]
    pub mode: LimitModeConfig,
    /// Longest wait in wait mode; absent waits as long as needed.
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    /// Random extra wait.
    #[serde(default)]
    pub jitter_ms: u64,
}

fn default_period_ms() -> u64 {
    1000
}

impl RateLimitConfig {
    /// Validates and turns the settings into a builder (to add events or a seed).
    pub fn builder(&self) -> Result<RateLimiterBuilder, ConfigError> {
        if self.period_ms == 0 {
            return Err(ConfigError::new("period_ms", "must be greater than zero"));
        }
        let quota = Quota::per(Duration::from_millis(self.period_ms), self.rate, self.burst)?;
        let mode = match self.mode {
            LimitModeConfig::FailFast => LimitMode::FailFast,
            LimitModeConfig::Wait => LimitMode::Wait {
                max_wait: self.max_wait_ms.map(Duration::from_millis),
            },
        };
        Ok(RateLimiter::builder(quota)
            .mode(mode)
            .jitter(Duration::from_millis(self.jitter_ms)))
    }

    /// Validates and builds the limiter.
    pub fn build(&self) -> Result<RateLimiter, ConfigError> {
        Ok(self.builder()?.build())
    }

    /// Reads `CONNECTION_RATE_LIMIT_*` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `CONNECTION_RATE_LIMIT_*` from the given pairs; `RATE` and `BURST` are
    /// required.
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let (mut rate, mut burst) = (None, None);
        let mut cfg = Self {
            rate: 0,
            period_ms: default_period_ms(),
            burst: 0,
            mode: LimitModeConfig::Wait,
            max_wait_ms: None,
            jitter_ms: 0,
        };
        for (key, value) in vars {
            let Some(key) = key.as_ref().strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let value = value.as_ref().trim();
            match key {
                "RATE" => rate = Some(number("rate", value)?),
                "BURST" => burst = Some(number("burst", value)?),
                "PERIOD_MS" => cfg.period_ms = number("period_ms", value)?,
                "MAX_WAIT_MS" => cfg.max_wait_ms = Some(number("max_wait_ms", value)?),
                "JITTER_MS" => cfg.jitter_ms = number("jitter_ms", value)?,
                "MODE" => {
                    cfg.mode = match value {
                        "wait" => LimitModeConfig::Wait,
                        "fail_fast" => LimitModeConfig::FailFast,
                        other => {
                            return Err(ConfigError::new(
                                "mode",
                                format!("{other:?} is not `wait` or `fail_fast`"),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        cfg.rate =
            rate.ok_or_else(|| ConfigError::new("rate", "missing CONNECTION_RATE_LIMIT_RATE"))?;
        cfg.burst = burst
            .ok_or_else(|| ConfigError::new("burst", "missing CONNECTION_RATE_LIMIT_BURST"))?;
        // Validate now, so a bad variable is reported where it is read.
        let _ = cfg.builder()?;
        Ok(cfg)
    }
}

fn number<N: std::str::FromStr>(field: &'static str, value: &str) -> Result<N, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::new(field, format!("{value:?} is not a whole number")))
}
