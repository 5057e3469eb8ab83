//! Serde and environment configuration for rate limiters.

use std::time::Duration;

use connection_core::ConfigError;

use super::{LimitMode, Quota, RateLimiter, RateLimiterBuilder};

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
/// | `rate` | `CONNECTION_RATE_LIMIT_RATE` | calls per period, default 100 |
/// | `period_ms` | `CONNECTION_RATE_LIMIT_PERIOD_MS` | the period, default 1000 |
/// | `burst` | `CONNECTION_RATE_LIMIT_BURST` | calls allowed at once, default 100 |
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
    /// Calls per period (default 100).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// The period in milliseconds (default one second).
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Calls allowed at once (default 100).
    #[serde(default = "default_rate")]
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

fn default_rate() -> u32 {
    100
}

impl Default for RateLimitConfig {
    /// 100 calls a second, bursts of 100, waiting as long as needed.
    fn default() -> Self {
        Self {
            rate: default_rate(),
            period_ms: default_period_ms(),
            burst: default_rate(),
            mode: LimitModeConfig::Wait,
            max_wait_ms: None,
            jitter_ms: 0,
        }
    }
}

impl RateLimitConfig {
    /// Validates and turns the settings into a builder (to add events or a seed).
    pub fn builder(&self) -> Result<RateLimiterBuilder, ConfigError> {
        if self.period_ms == 0 {
            return Err(ConfigError::new("period_ms", "must be greater than zero"));
        }
        let ms = Duration::from_millis;
        connection_core::require_at_most_max("period_ms", ms(self.period_ms))?;
        connection_core::require_at_most_max("jitter_ms", ms(self.jitter_ms))?;
        if let Some(max_wait) = self.max_wait_ms {
            connection_core::require_at_most_max("max_wait_ms", ms(max_wait))?;
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
}
