//! [`PoolConfig`]: the pool's settings, through a validating builder or serde.
//!
//! Both ways end in [`PoolConfig::validate`], so a zero `max_size` or a `min_idle` above
//! `max_size` is refused with a [`ConfigError`] naming the field, however it came in.
//! Serde fields take durations in milliseconds (`wait_timeout_ms`, ...); an absent
//! optional duration (or `null`) turns the feature off.
//!
//! ```
//! use connection_pool::{Fairness, PoolConfig, QueueOrder};
//! use std::time::Duration;
//!
//! let cfg = PoolConfig::builder()
//!     .max_size(16)
//!     .min_idle(2)
//!     .idle_timeout(Some(Duration::from_secs(60)))
//!     .queue_order(QueueOrder::Fifo)
//!     .fairness(Fairness::Throughput)
//!     .build()?;
//! assert_eq!(cfg.max_size, 16);
//!
//! let err = PoolConfig::builder().max_size(2).min_idle(3).build().unwrap_err();
//! assert_eq!(err.field(), "min_idle");
//!
//! let json: PoolConfig = serde_json::from_str(r#"{"max_size": 4, "wait_timeout_ms": 250}"#)?;
//! assert_eq!(json.wait_timeout, Some(Duration::from_millis(250)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use connection_core::ConfigError;
use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_core::{require_at_most_max, require_in_range, require_nonzero};

/// Which idle connection a checkout takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    /// The most recently returned: a few connections stay hot and the rest age out
    /// through `idle_timeout`. The default.
    #[default]
    Lifo,
    /// The least recently returned: load spreads over every connection.
    Fifo,
}

/// How waiting tasks and newcomers share returned connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fairness {
    /// First come, first served: a newcomer queues behind every waiter, and a returned
    /// connection is handed straight to the oldest waiter. The default.
    #[default]
    Strict,
    /// A task that asks while a connection is idle takes it even when others wait
    /// (barging). Waiters are woken one per returned connection and may lose it to a
    /// newcomer; faster under contention, with no bound on how long one waiter waits.
    Throughput,
}

/// What happens to a connection being validated for a `get` that is cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledValidation {
    /// Close it: a half-finished probe may leave bytes in flight on it. The default.
    #[default]
    Discard,
    /// Give it back to the pool (to the next waiter, or idle) unvalidated, so the next
    /// checkout probes it again. For transports whose probe leaves nothing behind when
    /// abandoned, and where connections are costly to make.
    Return,
}

/// The pool's settings. Build with [`PoolConfig::builder`] or deserialize.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(try_from = "RawConfig")]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most connections open at once (idle, in use, being created or checked).
    pub max_size: usize,
    /// Idle connections the maintainer keeps ready (never more than `max_size` in all).
    pub min_idle: usize,
    /// How long `get` waits for a connection; `None` waits for ever.
    pub wait_timeout: Option<Duration>,
    /// Limit on one connect attempt.
    pub create_timeout: Duration,
    /// Limit on one validation or keepalive probe; `None` turns checkout validation off.
    pub validate_timeout: Option<Duration>,
    /// A connection used (or probed) this recently is handed out without a probe.
    pub recycle_window: Duration,
    /// Idle connections beyond `min_idle` idle this long are closed; `None` keeps them.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed after about this long; `None` keeps them for ever.
    pub max_lifetime: Option<Duration>,
    /// Each connection's lifetime is shortened by a random part of up to this fraction of
    /// `max_lifetime`, so connections created together do not expire together.
    pub lifetime_jitter: f64,
    /// How often idle connections are probed; `None` turns keepalive off.
    pub keepalive_interval: Option<Duration>,
    /// Which idle connection a checkout takes.
    pub queue_order: QueueOrder,
    /// How waiters and newcomers share connections.
    pub fairness: Fairness,
    /// What happens to a connection being validated when its `get` is cancelled.
    pub cancelled_validation: CancelledValidation,
    /// A connection checked out longer than this is reported once, as a tracing warning
    /// and a [`ConnectionLeak`](crate::events::ConnectionLeak) event naming
    /// where it was taken; `None` (the default) turns leak detection off.
    pub leak_threshold: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 10,
            min_idle: 0,
            wait_timeout: Some(Duration::from_secs(30)),
            create_timeout: Duration::from_secs(10),
            validate_timeout: Some(Duration::from_secs(5)),
            recycle_window: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: 0.025,
            keepalive_interval: None,
            queue_order: QueueOrder::Lifo,
            fairness: Fairness::Strict,
            cancelled_validation: CancelledValidation::Discard,
            leak_threshold: None,
        }
    }
}

impl PoolConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> PoolConfigBuilder {
        PoolConfigBuilder {
            config: Self::default(),
        }
    }

    /// Checks every rule; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_in_range("max_size", self.max_size, 1..=MAX_POOL_SIZE)?;
        if self.min_idle > self.max_size {
            return Err(ConfigError::new(
                "min_idle",
                format!("{} is more than max_size {}", self.min_idle, self.max_size),
            ));
        }
        if let Some(d) = self.wait_timeout {
            require_nonzero("wait_timeout", d)?;
        }
        require_nonzero("create_timeout", self.create_timeout)?;
        require_at_most_max("recycle_window", self.recycle_window)?;
        if let Some(d) = self.validate_timeout {
            require_nonzero("validate_timeout", d)?;
        }
        if let Some(d) = self.idle_timeout {
            require_nonzero("idle_timeout", d)?;
        }
        if let Some(d) = self.max_lifetime {
            require_nonzero("max_lifetime", d)?;
        }
        if let Some(d) = self.keepalive_interval {
            require_nonzero("keepalive_interval", d)?;
        }
        if let Some(d) = self.leak_threshold {
            require_nonzero("leak_threshold", d)?;
        }
        if !(0.0..=0.5).contains(&self.lifetime_jitter) {
            return Err(ConfigError::new(
                "lifetime_jitter",
                format!("{} is outside 0.0..=0.5", self.lifetime_jitter),
            ));
        }
        Ok(())
    }

    /// Whether anything needs the background maintainer.
    pub(crate) fn needs_maintainer(&self) -> bool {
        self.min_idle > 0
            || self.idle_timeout.is_some()
            || self.max_lifetime.is_some()
            || self.keepalive_interval.is_some()
            || self.leak_threshold.is_some()
    }
}

/// The most connections a pool may hold: far beyond any server's accept queue, and
/// small enough that the pool's own bookkeeping for all of them stays in megabytes.
pub const MAX_POOL_SIZE: usize = 1_000_000;

impl PoolConfig {
    /// The `CONNECTION_POOL_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        "CONNECTION_POOL_",
        &[
            EnvVar::new(
                "CONNECTION_POOL_MAX_SIZE",
                "max_size",
                "10",
                "most connections open at once",
            ),
            EnvVar::new(
                "CONNECTION_POOL_MIN_IDLE",
                "min_idle",
                "0",
                "idle connections kept ready",
            ),
            EnvVar::new(
                "CONNECTION_POOL_WAIT_TIMEOUT_MS",
                "wait_timeout",
                "30000",
                "how long a checkout waits, ms (null = for ever)",
            ),
            EnvVar::new(
                "CONNECTION_POOL_CREATE_TIMEOUT_MS",
                "create_timeout",
                "10000",
                "limit on one connect, ms",
            ),
            EnvVar::new(
                "CONNECTION_POOL_VALIDATE_TIMEOUT_MS",
                "validate_timeout",
                "5000",
                "limit on a checkout probe, ms (null = no probe)",
            ),
            EnvVar::new(
                "CONNECTION_POOL_RECYCLE_WINDOW_MS",
                "recycle_window",
                "500",
                "skip the probe for connections used this recently, ms",
            ),
            EnvVar::new(
                "CONNECTION_POOL_IDLE_TIMEOUT_MS",
                "idle_timeout",
                "600000",
                "close idle connections beyond min_idle after this, ms (null = never)",
            ),
            EnvVar::new(
                "CONNECTION_POOL_MAX_LIFETIME_MS",
                "max_lifetime",
                "1800000",
                "close connections after about this, ms (null = never)",
            ),
            EnvVar::new(
                "CONNECTION_POOL_LIFETIME_JITTER",
                "lifetime_jitter",
                "0.025",
                "fraction of max_lifetime randomly taken off, 0.0..=0.5",
            ),
            EnvVar::new(
                "CONNECTION_POOL_KEEPALIVE_INTERVAL_MS",
                "keepalive_interval",
                "null",
                "probe idle connections this often, ms (null = off)",
            ),
            EnvVar::new(
                "CONNECTION_POOL_QUEUE_ORDER",
                "queue_order",
                "lifo",
                "lifo or fifo reuse of idle connections",
            ),
            EnvVar::new(
                "CONNECTION_POOL_FAIRNESS",
                "fairness",
                "strict",
                "strict (FIFO waiters) or throughput",
            ),
            EnvVar::new(
                "CONNECTION_POOL_CANCELLED_VALIDATION",
                "cancelled_validation",
                "discard",
                "discard or return a connection whose probe was cancelled",
            ),
            EnvVar::new(
                "CONNECTION_POOL_LEAK_THRESHOLD_MS",
                "leak_threshold",
                "null",
                "report checkouts held longer, ms (null = off)",
            ),
        ],
    );

    /// Reads the `CONNECTION_POOL_*` environment variables through the serde form and
    /// validates the result: `CONNECTION_POOL_MAX_SIZE=16` sets `max_size`,
    /// `CONNECTION_POOL_IDLE_TIMEOUT_MS=60000` sets `idle_timeout`, and `null` turns an
    /// optional duration off. Variables not set keep their defaults; an unknown
    /// `CONNECTION_POOL_*` name is an error, so a typo is not silently ignored.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only
    /// `CONNECTION_POOL_*` keys are read).
    ///
    /// ```
    /// use connection_pool::{Fairness, PoolConfig};
    /// use std::time::Duration;
    ///
    /// let cfg = PoolConfig::from_vars([
    ///     ("CONNECTION_POOL_MAX_SIZE", "16"),
    ///     ("CONNECTION_POOL_WAIT_TIMEOUT_MS", "250"),
    ///     ("CONNECTION_POOL_MAX_LIFETIME_MS", "null"),
    ///     ("CONNECTION_POOL_FAIRNESS", "throughput"),
    ///     ("PATH", "/usr/bin"),
    /// ])?;
    /// assert_eq!(cfg.max_size, 16);
    /// assert_eq!(cfg.wait_timeout, Some(Duration::from_millis(250)));
    /// assert_eq!(cfg.max_lifetime, None);
    /// assert_eq!(cfg.fairness, Fairness::Throughput);
    ///
    /// let err = PoolConfig::from_vars([("CONNECTION_POOL_MAX_SIZE", "0")]).unwrap_err();
    /// assert_eq!(err.field(), "max_size");
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        // Deserializing the raw form, then `try_from` validates and names the field.
        load_env(&Self::ENV, vars, |raw: RawConfig| Self::try_from(raw))
    }
}

/// Builds a [`PoolConfig`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
#[must_use]
pub struct PoolConfigBuilder {
    config: PoolConfig,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl PoolConfigBuilder {
    setter!(
        /// Most connections open at once (default 10).
        max_size: usize
    );
    setter!(
        /// Idle connections kept ready by the maintainer (default 0).
        min_idle: usize
    );
    setter!(
        /// How long `get` waits; `None` waits for ever (default 30 s).
        wait_timeout: Option<Duration>
    );
    setter!(
        /// Limit on one connect attempt (default 10 s).
        create_timeout: Duration
    );
    setter!(
        /// Limit on one probe; `None` turns checkout validation off (default 5 s).
        validate_timeout: Option<Duration>
    );
    setter!(
        /// Skip checkout validation for connections used this recently (default 500 ms).
        recycle_window: Duration
    );
    setter!(
        /// Close idle connections beyond `min_idle` after this long (default 10 min).
        idle_timeout: Option<Duration>
    );
    setter!(
        /// Close connections after about this long (default 30 min).
        max_lifetime: Option<Duration>
    );
    setter!(
        /// Fraction of `max_lifetime` randomly taken off each lifetime, 0.0..=0.5
        /// (default 0.025).
        lifetime_jitter: f64
    );
    setter!(
        /// Probe idle connections this often; `None` turns keepalive off (default off).
        keepalive_interval: Option<Duration>
    );
    setter!(
        /// LIFO (default) or FIFO reuse of idle connections.
        queue_order: QueueOrder
    );
    setter!(
        /// Strict FIFO (default) or throughput (barging) service of waiters.
        fairness: Fairness
    );
    setter!(
        /// Discard (default) or return a connection whose validation was cancelled.
        cancelled_validation: CancelledValidation
    );
    setter!(
        /// Report connections checked out longer than this; `None` turns leak detection
        /// off (default off).
        leak_threshold: Option<Duration>
    );

    /// Validates and returns the settings.
    pub fn build(self) -> Result<PoolConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The serde form: durations in milliseconds, every field optional.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    max_size: Option<usize>,
    min_idle: Option<usize>,
    #[serde(default, with = "opt_ms")]
    wait_timeout_ms: Option<Option<u64>>,
    create_timeout_ms: Option<u64>,
    #[serde(default, with = "opt_ms")]
    validate_timeout_ms: Option<Option<u64>>,
    recycle_window_ms: Option<u64>,
    #[serde(default, with = "opt_ms")]
    idle_timeout_ms: Option<Option<u64>>,
    #[serde(default, with = "opt_ms")]
    max_lifetime_ms: Option<Option<u64>>,
    lifetime_jitter: Option<f64>,
    #[serde(default, with = "opt_ms")]
    keepalive_interval_ms: Option<Option<u64>>,
    queue_order: Option<QueueOrder>,
    fairness: Option<Fairness>,
    cancelled_validation: Option<CancelledValidation>,
    #[serde(default, with = "opt_ms")]
    leak_threshold_ms: Option<Option<u64>>,
}

/// Tells an absent field (keep the default) from an explicit `null` (turn it off).
mod opt_ms {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<u64>>, D::Error> {
        Ok(Some(Option::<u64>::deserialize(d)?))
    }
}

impl TryFrom<RawConfig> for PoolConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let ms = Duration::from_millis;
        let d = Self::default();
        let config = Self {
            max_size: raw.max_size.unwrap_or(d.max_size),
            min_idle: raw.min_idle.unwrap_or(d.min_idle),
            wait_timeout: raw.wait_timeout_ms.map_or(d.wait_timeout, |v| v.map(ms)),
            create_timeout: raw.create_timeout_ms.map_or(d.create_timeout, ms),
            validate_timeout: raw
                .validate_timeout_ms
                .map_or(d.validate_timeout, |v| v.map(ms)),
            recycle_window: raw.recycle_window_ms.map_or(d.recycle_window, ms),
            idle_timeout: raw.idle_timeout_ms.map_or(d.idle_timeout, |v| v.map(ms)),
            max_lifetime: raw.max_lifetime_ms.map_or(d.max_lifetime, |v| v.map(ms)),
            lifetime_jitter: raw.lifetime_jitter.unwrap_or(d.lifetime_jitter),
            keepalive_interval: raw
                .keepalive_interval_ms
                .map_or(d.keepalive_interval, |v| v.map(ms)),
            queue_order: raw.queue_order.unwrap_or(d.queue_order),
            fairness: raw.fairness.unwrap_or(d.fairness),
            cancelled_validation: raw.cancelled_validation.unwrap_or(d.cancelled_validation),
            leak_threshold: raw
                .leak_threshold_ms
                .map_or(d.leak_threshold, |v| v.map(ms)),
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_fields_are_named() {
        let err = PoolConfig::builder().max_size(0).build().unwrap_err();
        assert_eq!(err.field(), "max_size");
        let err = PoolConfig::builder()
            .create_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "create_timeout");
        let err = PoolConfig::builder()
            .lifetime_jitter(0.9)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "lifetime_jitter");
        let err = serde_json::from_str::<PoolConfig>(r#"{"wait_timeout_ms": 0}"#).unwrap_err();
        assert!(err.to_string().contains("wait_timeout"), "{err}");
    }

    #[test]
    fn env_vars_go_through_the_serde_form_and_are_validated() {
        let cfg = PoolConfig::from_vars([
            ("CONNECTION_POOL_MAX_SIZE", "8"),
            ("CONNECTION_POOL_MIN_IDLE", " 2 "),
            ("CONNECTION_POOL_LEAK_THRESHOLD_MS", "5000"),
            ("CONNECTION_POOL_IDLE_TIMEOUT_MS", "null"),
            ("CONNECTION_POOL_LIFETIME_JITTER", "0.1"),
            ("CONNECTION_POOL_QUEUE_ORDER", "fifo"),
            ("CONNECTION_POOL_CANCELLED_VALIDATION", "return"),
            ("CONNECTION_RECONNECT_MAX_ATTEMPTS", "3"),
        ])
        .unwrap();
        assert_eq!((cfg.max_size, cfg.min_idle), (8, 2));
        assert_eq!(cfg.leak_threshold, Some(Duration::from_secs(5)));
        assert_eq!(cfg.idle_timeout, None);
        assert_eq!(cfg.lifetime_jitter, 0.1);
        assert_eq!(cfg.queue_order, QueueOrder::Fifo);
        assert_eq!(cfg.cancelled_validation, CancelledValidation::Return);
        assert_eq!(cfg.max_lifetime, PoolConfig::default().max_lifetime);

        let none: [(&str, &str); 0] = [];
        assert_eq!(PoolConfig::from_vars(none).unwrap(), PoolConfig::default());

        let err = PoolConfig::from_vars([
            ("CONNECTION_POOL_MAX_SIZE", "2"),
            ("CONNECTION_POOL_MIN_IDLE", "3"),
        ])
        .unwrap_err();
        assert_eq!(err.field(), "min_idle");
        let err = PoolConfig::from_vars([("CONNECTION_POOL_LEAK_THRESHOLD_MS", "0")]).unwrap_err();
        assert_eq!(err.field(), "leak_threshold");
        let err = PoolConfig::from_vars([("CONNECTION_POOL_MAX_SIZ", "4")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_POOL_MAX_SIZ"));
        for bad in [
            "many",
            "NaN",
            "inf",
            "-1",
            "18446744073709551615",
            "100000000000",
        ] {
            let err = PoolConfig::from_vars([("CONNECTION_POOL_MAX_SIZE", bad)]).unwrap_err();
            assert_eq!(
                err.variable(),
                Some("CONNECTION_POOL_MAX_SIZE"),
                "{bad}: {err}"
            );
            assert_eq!(err.field(), "max_size", "{bad}: {err}");
        }
        let err = PoolConfig::from_vars([("CONNECTION_POOL_LIFETIME_JITTER", "NaN")]).unwrap_err();
        assert_eq!(err.variable(), Some("CONNECTION_POOL_LIFETIME_JITTER"));
    }

    #[test]
    fn every_variable_at_its_documented_default_gives_the_defaults() {
        let defaults = PoolConfig::ENV
            .vars()
            .iter()
            .map(|v| (v.name(), v.default_value()));
        let cfg = PoolConfig::from_vars(defaults).unwrap();
        assert_eq!(format!("{cfg:?}"), format!("{:?}", PoolConfig::default()));
        let none = PoolConfig::from_vars(Vec::<(String, String)>::new()).unwrap();
        assert_eq!(format!("{none:?}"), format!("{:?}", PoolConfig::default()));
    }

    #[test]
    fn serde_null_turns_off_and_absent_keeps_default() {
        let cfg: PoolConfig =
            serde_json::from_str(r#"{"idle_timeout_ms": null, "fairness": "throughput"}"#).unwrap();
        assert_eq!(cfg.idle_timeout, None);
        assert_eq!(cfg.max_lifetime, PoolConfig::default().max_lifetime);
        assert_eq!(cfg.fairness, Fairness::Throughput);
    }
}
