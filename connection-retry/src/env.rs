//! Policy settings from environment variables, and from core's `ConnectionConfig`.
//!
//! Each policy config already has a serde form; the environment reuses it instead of a
//! second parser: `CONNECTION_BREAKER_FAILURE_RATE=0.5` becomes the field
//! `failure_rate: 0.5` of [`CircuitBreakerConfig`], and the same validation runs as for
//! a config file. Numbers and `true`/`false` are read as such, anything else as text.
//!
//! | config | prefix |
//! |---|---|
//! | [`BackoffConfig`] | `CONNECTION_BACKOFF_` |
//! | [`CircuitBreakerConfig`] | `CONNECTION_BREAKER_` |
//! | [`BulkheadConfig`] | `CONNECTION_BULKHEAD_` |
//! | [`RateLimitConfig`](crate::limit::RateLimitConfig) | `CONNECTION_RATE_LIMIT_` |

use std::time::Duration;

use connection_core::{ConfigError, ConnectionConfig};

use crate::backoff::{BackoffConfig, BackoffStrategy, Jitter};
use crate::breaker::CircuitBreakerConfig;
use crate::bulkhead::BulkheadConfig;

macro_rules! env_config {
    ($ty:ty, $prefix:literal, $validate:expr) => {
        impl $ty {
            #[doc = concat!("Reads the `", $prefix, "*` environment variables and validates them.")]
            pub fn from_env() -> Result<Self, ConfigError> {
                Self::from_vars(std::env::vars())
            }

            #[doc = concat!("Like [`from_env`](Self::from_env), from the given pairs (only `", $prefix, "*` keys are read).")]
            pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
                vars: impl IntoIterator<Item = (K, V)>,
            ) -> Result<Self, ConfigError> {
                let config: Self = connection_core::from_prefixed_vars($prefix, vars)?;
                let validate: fn(&Self) -> Result<(), ConfigError> = $validate;
                validate(&config)?;
                Ok(config)
            }
        }
    };
}

env_config!(BackoffConfig, "CONNECTION_BACKOFF_", |c| c
    .build()
    .map(drop));
env_config!(CircuitBreakerConfig, "CONNECTION_BREAKER_", |c| c
    .build()
    .map(drop));
env_config!(BulkheadConfig, "CONNECTION_BULKHEAD_", |c| c
    .build()
    .map(drop));

impl BackoffStrategy {
    /// The reconnect schedule a [`ConnectionConfig`] describes (so its
    /// `CONNECTION_RETRY_*` variables drive a [`Supervisor`](connection_core::Supervisor)):
    /// exponential from `retry_initial_delay`, doubling, capped at `retry_max_delay`,
    /// with full jitter, for `retry_max_attempts` retries.
    ///
    /// ```
    /// use connection_core::ConnectionConfig;
    /// use connection_retry::BackoffStrategy;
    ///
    /// let cfg = ConnectionConfig::from_vars([("CONNECTION_RETRY_MAX_ATTEMPTS", "5")])?;
    /// let backoff = BackoffStrategy::from_connection_config(&cfg)?;
    /// assert_eq!(backoff.max_retries(), Some(5));
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn from_connection_config(config: &ConnectionConfig) -> Result<Self, ConfigError> {
        let mut b = BackoffStrategy::exponential(config.retry_initial_delay, 2.0)
            .max_delay(config.retry_max_delay.max(Duration::from_nanos(1)))
            .jitter(Jitter::Full);
        if let Some(n) = config.retry_max_attempts {
            b = b.max_retries(n);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::BackoffKind;

    #[test]
    fn each_config_reads_its_prefix_and_is_validated() {
        let b = BackoffConfig::from_vars([
            ("CONNECTION_BACKOFF_KIND", "exponential"),
            ("CONNECTION_BACKOFF_INITIAL_MS", "50"),
            ("CONNECTION_BACKOFF_MULTIPLIER", "2"),
            ("CONNECTION_BACKOFF_MAX_RETRIES", "4"),
            ("CONNECTION_BREAKER_WAIT_MS", "1"),
        ])
        .unwrap();
        assert_eq!(b.kind, BackoffKind::Exponential);
        assert_eq!((b.initial_ms, b.max_retries), (Some(50), Some(4)));

        let c =
            CircuitBreakerConfig::from_vars([("CONNECTION_BREAKER_FAILURE_RATE", "0.5")]).unwrap();
        assert_eq!(c.failure_rate, Some(0.5));
        let err =
            CircuitBreakerConfig::from_vars([("CONNECTION_BREAKER_WAIT_MS", "0")]).unwrap_err();
        assert_eq!(err.field(), "wait_ms");
        let err = CircuitBreakerConfig::from_vars([("CONNECTION_BREAKER_FAILUR_RATE", "0.5")])
            .unwrap_err();
        assert!(err.to_string().contains("failur_rate"), "{err}");

        let k = BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "8")]).unwrap();
        assert_eq!(k.max_concurrent, 8);
        let err =
            BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "0")]).unwrap_err();
        assert_eq!(err.field(), "max_concurrent");
        let err = BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "many")])
            .unwrap_err();
        assert_eq!(err.field(), "CONNECTION_BULKHEAD_");
    }
}
