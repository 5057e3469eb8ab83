//! [`ManagerConfig`]: the settings of a [`ConnectionManager`](crate::ConnectionManager).

use std::time::Duration;

use connection_core::{ConfigError, from_prefixed_vars, require_nonzero};
use serde::{Deserialize, Serialize};

use crate::check::HealthCheck;
use crate::options::ms;

/// The prefix of the environment variables read by [`ManagerConfig::from_env`].
pub const ENV_PREFIX: &str = "CONNECTION_MANAGER_";

/// Settings of a [`ConnectionManager`](crate::ConnectionManager).
///
/// Serde form (every field optional, durations in milliseconds):
/// `{"max_connections": null, "connect_concurrency": 256, "connect_deadline_ms": 30000,
/// "event_capacity": 1024, "health": {...}}` (see [`HealthCheck`] for `health`).
/// From the environment: `CONNECTION_MANAGER_MAX_CONNECTIONS`,
/// `CONNECTION_MANAGER_CONNECT_CONCURRENCY`, `CONNECTION_MANAGER_CONNECT_DEADLINE_MS`,
/// `CONNECTION_MANAGER_EVENT_CAPACITY` (the health check is set in code or serde).
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
/// assert_eq!(env.max_connections(), Some(5));
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    max_connections: Option<usize>,
    connect_concurrency: usize,
    #[serde(rename = "connect_deadline_ms", with = "ms")]
    connect_deadline: Duration,
    event_capacity: usize,
    health: HealthCheck,
}

impl Default for ManagerConfig {
    /// No connection limit, 256 connects at once, 30 s for `connect_all`, an event bus
    /// of 1024 slots, passive health signals only ([`HealthCheck::passive`]).
    fn default() -> Self {
        Self {
            max_connections: None,
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

    /// Reads `CONNECTION_MANAGER_*` from the process environment, then validates.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `CONNECTION_MANAGER_*` from `vars` (other names are ignored), then
    /// validates.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config: Self = from_prefixed_vars(ENV_PREFIX, vars)?;
        config.validate()?;
        Ok(config)
    }

    /// Most connections the manager holds; `None` for no limit.
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
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
        if self.max_connections == Some(0) {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if self.connect_concurrency == 0 {
            return Err(ConfigError::new(
                "connect_concurrency",
                "must be at least 1",
            ));
        }
        require_nonzero("connect_deadline", self.connect_deadline)?;
        if self.event_capacity == 0 {
            return Err(ConfigError::new("event_capacity", "must be at least 1"));
        }
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
    /// Refuse to hold more than `n` connections.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = Some(n);
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
