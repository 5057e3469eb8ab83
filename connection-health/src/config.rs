//! [`ManagerConfig`]: the settings of a [`ConnectionManager`](crate::ConnectionManager).

use std::time::Duration;

use connection_core::env::{EnvSection, EnvVar, load_env};
use connection_core::{ConfigError, require_in_range, require_nonzero};
use serde::{Deserialize, Serialize};

use crate::check::HealthCheck;
use crate::options::ms;

/// The prefix of the environment variables read by [`ManagerConfig::from_env`].
pub const ENV_PREFIX: &str = "CONNECTION_MANAGER_";

/// The most slots a manager's event bus may have: each is allocated up front.
pub const MAX_EVENT_CAPACITY: usize = connection_core::EventBus::MAX_CAPACITY;

/// The most connect attempts `connect_all` may run at once.
pub const MAX_CONNECT_CONCURRENCY: usize = 1 << 16;

/// The most connections a manager may be allowed to hold.
pub const MAX_CONNECTIONS_LIMIT: usize = 10_000_000;

/// The longest name limit a manager may be given, in bytes.
pub const MAX_NAME_LEN_LIMIT: usize = 64 * 1024;

/// The health check's variables, as the manager reads them (a passive check unless
/// `CONNECTION_HEALTH_INTERVAL_MS` is set).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthVars {
    interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    failure_threshold: Option<u32>,
    recovery_threshold: Option<u32>,
    #[serde(default)]
    degraded_latency_ms: Option<Option<u64>>,
    max_concurrent_probes: Option<usize>,
}

impl HealthVars {
    fn apply(self, base: HealthCheck) -> Result<HealthCheck, ConfigError> {
        let ms = Duration::from_millis;
        let mut b = base.into_builder();
        b = match self.interval_ms {
            Some(0) => b.passive_only(),
            Some(i) => b.interval(ms(i)),
            None => b,
        };
        if let Some(t) = self.probe_timeout_ms {
            b = b.probe_timeout(ms(t));
        }
        if let Some(n) = self.failure_threshold {
            b = b.failure_threshold(n);
        }
        if let Some(n) = self.recovery_threshold {
            b = b.recovery_threshold(n);
        }
        match self.degraded_latency_ms {
            Some(Some(d)) => b = b.degraded_latency(ms(d)),
            Some(None) => b = b.no_degraded_latency(),
            None => {}
        }
        if let Some(n) = self.max_concurrent_probes {
            b = b.max_concurrent_probes(n);
        }
        b.build()
    }
}

/// Settings of a [`ConnectionManager`](crate::ConnectionManager).
///
/// Serde form (every field optional, durations in milliseconds):
/// `{"max_connections": 10000, "max_name_len": 256, "connect_concurrency": 256, "connect_deadline_ms": 30000,
/// "event_capacity": 1024, "health": {...}}` (see [`HealthCheck`] for `health`).
/// From the environment: the `CONNECTION_MANAGER_*` variables of [`ManagerConfig::ENV`]
/// and the health check's `CONNECTION_HEALTH_*` of [`ManagerConfig::HEALTH_ENV`].
///
/// ```
/// use connection_health::ManagerConfig;
/// use std::time::Duration;
///
/// let cfg = ManagerConfig::builder()
///     .max_connections(10_000)
///     .connect_concurrency(256)
///     .connect_deadline(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(cfg.connect_concurrency(), 256);
///
/// let err = ManagerConfig::builder().connect_concurrency(0).build().unwrap_err();
/// assert_eq!(err.field(), "connect_concurrency");
///
/// let env = ManagerConfig::from_vars([("CONNECTION_MANAGER_MAX_CONNECTIONS", "5")])?;
/// assert_eq!(env.max_connections(), 5);
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    max_connections: usize,
    max_name_len: usize,
    connect_concurrency: usize,
    #[serde(rename = "connect_deadline_ms", with = "ms")]
    connect_deadline: Duration,
    event_capacity: usize,
    health: HealthCheck,
}

impl Default for ManagerConfig {
    /// At most 10,000 connections with names of at most 256 bytes, 256 connects at once,
    /// 30 s for `connect_all`, an event bus of 1024 slots, passive health signals only
    /// ([`HealthCheck::passive`]).
    fn default() -> Self {
        Self {
            max_connections: crate::manager::DEFAULT_MAX_CONNECTIONS,
            max_name_len: crate::manager::DEFAULT_MAX_NAME_LEN,
            connect_concurrency: 256,
            connect_deadline: Duration::from_secs(30),
            event_capacity: 1024,
            health: HealthCheck::passive(),
        }
    }
}

impl ManagerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ManagerConfigBuilder {
        ManagerConfigBuilder {
            config: Self::default(),
        }
    }

    /// The `CONNECTION_MANAGER_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_MANAGER_MAX_CONNECTIONS",
                "max_connections",
                "10000",
                "most connections the manager holds",
            ),
            EnvVar::new(
                "CONNECTION_MANAGER_MAX_NAME_LEN",
                "max_name_len",
                "256",
                "longest connection name, bytes",
            ),
            EnvVar::new(
                "CONNECTION_MANAGER_CONNECT_CONCURRENCY",
                "connect_concurrency",
                "256",
                "connect attempts connect_all runs at once",
            ),
            EnvVar::new(
                "CONNECTION_MANAGER_CONNECT_DEADLINE_MS",
                "connect_deadline",
                "30000",
                "overall bound on connect_all, ms",
            ),
            EnvVar::new(
                "CONNECTION_MANAGER_EVENT_CAPACITY",
                "event_capacity",
                "1024",
                "slots of the manager's event bus",
            ),
        ],
    );

    /// The `CONNECTION_HEALTH_*` variables [`from_env`](Self::from_env) reads into the
    /// manager's [`HealthCheck`].
    pub const HEALTH_ENV: EnvSection = EnvSection::new(
        "CONNECTION_HEALTH_",
        &[
            EnvVar::new(
                "CONNECTION_HEALTH_INTERVAL_MS",
                "interval",
                "0",
                "probe each connection this often, ms (0 = passive signals only)",
            ),
            EnvVar::new(
                "CONNECTION_HEALTH_PROBE_TIMEOUT_MS",
                "probe_timeout",
                "5000",
                "limit on one probe, ms",
            ),
            EnvVar::new(
                "CONNECTION_HEALTH_FAILURE_THRESHOLD",
                "failure_threshold",
                "3",
                "failures in a row that make a connection Unhealthy",
            ),
            EnvVar::new(
                "CONNECTION_HEALTH_RECOVERY_THRESHOLD",
                "recovery_threshold",
                "2",
                "successes in a row that make it healthy again",
            ),
            EnvVar::new(
                "CONNECTION_HEALTH_DEGRADED_LATENCY_MS",
                "degraded_latency",
                "null",
                "a passing probe slower than this rates Degraded, ms (null = off)",
            ),
            EnvVar::new(
                "CONNECTION_HEALTH_MAX_CONCURRENT_PROBES",
                "max_concurrent_probes",
                "64",
                "probes running at once",
            ),
        ],
    );

    /// The defaults overridden by the `CONNECTION_MANAGER_*` and `CONNECTION_HEALTH_*`
    /// environment variables, validated; an unknown name under either prefix is refused.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs (only
    /// `CONNECTION_MANAGER_*` and `CONNECTION_HEALTH_*` keys are read).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let health = load_env(&Self::HEALTH_ENV, vars.iter().cloned(), |h: HealthVars| {
            h.apply(HealthCheck::passive())
        })?;
        load_env(&Self::ENV, vars, |mut config: Self| {
            config.health = health;
            config.validate().map(|()| config)
        })
    }

    /// Most connections the manager holds (default
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::DEFAULT_MAX_CONNECTIONS), 10,000).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Longest name a connection may have, in bytes (default
    /// [`DEFAULT_MAX_NAME_LEN`](crate::DEFAULT_MAX_NAME_LEN), 256).
    pub fn max_name_len(&self) -> usize {
        self.max_name_len
    }

    /// Connect attempts `connect_all` runs at once.
    pub fn connect_concurrency(&self) -> usize {
        self.connect_concurrency
    }

    /// Overall bound on `connect_all`.
    pub fn connect_deadline(&self) -> Duration {
        self.connect_deadline
    }

    /// Capacity of the manager's event bus.
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
    }

    /// How connections are checked.
    pub fn health(&self) -> &HealthCheck {
        &self.health
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_in_range(
            "max_connections",
            self.max_connections,
            1..=MAX_CONNECTIONS_LIMIT,
        )?;
        require_in_range("max_name_len", self.max_name_len, 1..=MAX_NAME_LEN_LIMIT)?;
        require_in_range(
            "connect_concurrency",
            self.connect_concurrency,
            1..=MAX_CONNECT_CONCURRENCY,
        )?;
        require_nonzero("connect_deadline", self.connect_deadline)?;
        require_in_range(
            "event_capacity",
            self.event_capacity,
            1..=MAX_EVENT_CAPACITY,
        )?;
        self.health.validate()
    }
}

/// Builds a [`ManagerConfig`]; [`build`](Self::build) names the first bad field.
#[derive(Debug, Clone)]
#[must_use]
pub struct ManagerConfigBuilder {
    config: ManagerConfig,
}

impl ManagerConfigBuilder {
    /// Refuse to hold more than `n` connections (default 10,000).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Refuse names longer than `bytes` (default 256).
    pub fn max_name_len(mut self, bytes: usize) -> Self {
        self.config.max_name_len = bytes;
        self
    }

    /// Connect attempts `connect_all` runs at once (default 256).
    pub fn connect_concurrency(mut self, n: usize) -> Self {
        self.config.connect_concurrency = n;
        self
    }

    /// Overall bound on `connect_all` (default 30 s).
    pub fn connect_deadline(mut self, limit: Duration) -> Self {
        self.config.connect_deadline = limit;
        self
    }

    /// Capacity of the event bus (default 1024; each slot is allocated up front).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.config.event_capacity = n;
        self
    }

    /// How connections are checked (default: passive signals only).
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.config.health = check;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<ManagerConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
