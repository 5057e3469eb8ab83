//! Policy settings from environment variables.
//!
//! Each policy config already has a serde form; the environment reuses it instead of a
//! second parser: `CONNECTION_BREAKER_FAILURE_RATE=0.5` becomes the field
//! `failure_rate: 0.5` of [`CircuitBreakerConfig`], and the same validation runs as for
//! a config file ([`connection_core::env`] has the rules; each config's `ENV` table lists
//! its variables with their defaults). `CONNECTION_BACKOFF_*` is the schedule of request
//! retries ([`RetryPolicy`](crate::RetryPolicy)); the reconnect schedule of a connection is
//! core's `CONNECTION_RECONNECT_*` ([`connection_core::ConnectionConfig::backoff`]).
//!
//! | config | prefix |
//! |---|---|
//! | [`BackoffConfig`] | `CONNECTION_BACKOFF_` |
//! | [`CircuitBreakerConfig`] | `CONNECTION_BREAKER_` |
//! | [`BulkheadConfig`] | `CONNECTION_BULKHEAD_` |
//! | [`RateLimitConfig`](crate::limit::RateLimitConfig) | `CONNECTION_RATE_LIMIT_` |

use connection_core::ConfigError;
use connection_core::env::{EnvSection, EnvVar, load_env};

use crate::backoff::BackoffConfig;
use crate::breaker::CircuitBreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::limit::RateLimitConfig;

macro_rules! env_config {
    ($ty:ty, $prefix:literal, [$($var:expr),* $(,)?], $validate:expr) => {
        impl $ty {
            #[doc = concat!("The `", $prefix, "*` variables [`from_env`](Self::from_env) reads.")]
            pub const ENV: EnvSection = EnvSection::new($prefix, &[$($var),*]);

            #[doc = concat!("The defaults overridden by the `", $prefix, "*` environment variables, validated; an unknown `", $prefix, "*` name is refused.")]
            pub fn from_env() -> Result<Self, ConfigError> {
                Self::from_vars(std::env::vars())
            }

            #[doc = concat!("Like [`from_env`](Self::from_env), from the given pairs (only `", $prefix, "*` keys are read).")]
            pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
                vars: impl IntoIterator<Item = (K, V)>,
            ) -> Result<Self, ConfigError> {
                let validate: fn(&Self) -> Result<(), ConfigError> = $validate;
                load_env(&Self::ENV, vars, |config: Self| validate(&config).map(|()| config))
            }
        }
    };
}

env_config!(
    BackoffConfig,
    "CONNECTION_BACKOFF_",
    [
        EnvVar::new(
            "CONNECTION_BACKOFF_KIND",
            "kind",
            "exponential",
            "request retry schedule: fixed, linear, exponential, fibonacci or grpc"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_INITIAL_MS",
            "initial_ms",
            "null",
            "first delay, ms (exponential: 250)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_STEP_MS",
            "step_ms",
            "null",
            "increment of a linear schedule, ms (default: the initial delay)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_MULTIPLIER",
            "multiplier",
            "null",
            "growth factor of exponential and grpc (2.0 and 1.6)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_MAX_DELAY_MS",
            "max_delay_ms",
            "null",
            "ceiling on every delay, ms (exponential: 30000)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_JITTER",
            "jitter",
            "null",
            "none, full, equal or decorrelated (exponential: equal)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_MAX_RETRIES",
            "max_retries",
            "null",
            "retries before giving up (null = no limit)"
        ),
        EnvVar::new(
            "CONNECTION_BACKOFF_SEED",
            "seed",
            "null",
            "seed of the jitter (null = from the operating system)"
        ),
    ],
    |c| c.build().map(drop)
);
env_config!(
    CircuitBreakerConfig,
    "CONNECTION_BREAKER_",
    [
        EnvVar::new(
            "CONNECTION_BREAKER_CONSECUTIVE_FAILURES",
            "consecutive_failures",
            "5",
            "failures in a row that trip the breaker (null = off)"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_FAILURE_RATE",
            "failure_rate",
            "null",
            "failure fraction of the window that trips it, in (0, 1]"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_SLOW_CALL_MS",
            "slow_call_ms",
            "null",
            "a call this long is slow, ms (with SLOW_CALL_RATE)"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_SLOW_CALL_RATE",
            "slow_call_rate",
            "null",
            "slow fraction of the window that trips it, in (0, 1]"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_WINDOW_CALLS",
            "window_calls",
            "null",
            "count-based window, calls (default 100)"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_WINDOW_MS",
            "window_ms",
            "null",
            "time-based window instead, ms"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_MIN_CALLS",
            "min_calls",
            "20",
            "calls the window holds before rates count"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_WAIT_MS",
            "wait_ms",
            "10000",
            "how long the circuit stays open, ms"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_MAX_WAIT_MS",
            "max_wait_ms",
            "null",
            "ceiling of a growing wait, ms (null = fixed wait)"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_WAIT_MULTIPLIER",
            "wait_multiplier",
            "2.0",
            "growth of the wait per repeated trip"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_JITTER",
            "jitter",
            "0.0",
            "random shortening of each wait, fraction in [0, 1]"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_SEED",
            "seed",
            "null",
            "seed of the jitter"
        ),
        EnvVar::new(
            "CONNECTION_BREAKER_HALF_OPEN_PROBES",
            "half_open_probes",
            "1",
            "probe calls admitted in half-open"
        ),
    ],
    |c| c.build().map(drop)
);
env_config!(
    BulkheadConfig,
    "CONNECTION_BULKHEAD_",
    [
        EnvVar::new(
            "CONNECTION_BULKHEAD_MAX_CONCURRENT",
            "max_concurrent",
            "100",
            "operations at once"
        ),
        EnvVar::new(
            "CONNECTION_BULKHEAD_MAX_QUEUE",
            "max_queue",
            "0",
            "callers that may wait"
        ),
        EnvVar::new(
            "CONNECTION_BULKHEAD_MAX_WAIT_MS",
            "max_wait_ms",
            "null",
            "longest wait, ms (null = no limit)"
        ),
    ],
    |c| c.build().map(drop)
);
env_config!(
    RateLimitConfig,
    "CONNECTION_RATE_LIMIT_",
    [
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_RATE",
            "rate",
            "100",
            "calls per period"
        ),
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_PERIOD_MS",
            "period_ms",
            "1000",
            "the period, ms"
        ),
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_BURST",
            "burst",
            "100",
            "calls allowed at once"
        ),
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_MODE",
            "mode",
            "wait",
            "wait or fail_fast"
        ),
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_MAX_WAIT_MS",
            "max_wait_ms",
            "null",
            "longest wait in wait mode, ms (null = as long as needed)"
        ),
        EnvVar::new(
            "CONNECTION_RATE_LIMIT_JITTER_MS",
            "jitter_ms",
            "0",
            "random extra wait, ms"
        ),
    ],
    |c| c.build().map(drop)
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::BackoffKind;
    use connection_core::env::EnvSection;

    #[test]
    fn every_variable_set_to_its_documented_default_gives_the_default() {
        fn defaults(section: &EnvSection) -> Vec<(&'static str, &'static str)> {
            section
                .vars()
                .iter()
                .map(|v| (v.name(), v.default_value()))
                .collect()
        }
        assert_eq!(
            BackoffConfig::from_vars(defaults(&BackoffConfig::ENV)).unwrap(),
            BackoffConfig::default()
        );
        assert_eq!(
            CircuitBreakerConfig::from_vars(defaults(&CircuitBreakerConfig::ENV)).unwrap(),
            CircuitBreakerConfig::default()
        );
        assert_eq!(
            BulkheadConfig::from_vars(defaults(&BulkheadConfig::ENV)).unwrap(),
            BulkheadConfig::default()
        );
        assert_eq!(
            RateLimitConfig::from_vars(defaults(&RateLimitConfig::ENV)).unwrap(),
            RateLimitConfig::default()
        );
    }

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
        assert_eq!(err.variable(), Some("CONNECTION_BREAKER_FAILUR_RATE"));

        let k = BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "8")]).unwrap();
        assert_eq!(k.max_concurrent, 8);
        let err =
            BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "0")]).unwrap_err();
        assert_eq!(err.field(), "max_concurrent");
        let err = BulkheadConfig::from_vars([("CONNECTION_BULKHEAD_MAX_CONCURRENT", "many")])
            .unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_BULKHEAD_MAX_CONCURRENT"));
        assert_eq!(err.field(), "max_concurrent");

        assert_eq!(
            BackoffConfig::from_vars(Vec::<(String, String)>::new()).unwrap(),
            BackoffConfig::default()
        );
        assert_eq!(
            RateLimitConfig::from_vars(Vec::<(String, String)>::new()).unwrap(),
            RateLimitConfig::default()
        );
        assert_eq!(
            BulkheadConfig::from_vars(Vec::<(String, String)>::new()).unwrap(),
            BulkheadConfig::default()
        );
        let err = RateLimitConfig::from_vars([("CONNECTION_RATE_LIMIT_RATE", "NaN")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_RATE_LIMIT_RATE"));
    }
}
