//! [`HealthCheck`]: how connections are probed and rated.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConfigError, Error, HealthStatus, SupervisorHandle, require_nonzero};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::options::{ms, opt_ms};

/// The future a custom check returns: the round trip, or why the check failed.
pub type CheckFuture = BoxFuture<'static, Result<Duration, Error>>;

/// A custom health check: called with the connection's handle, returns its round trip.
/// The manager bounds it with the check's `probe_timeout` and drops it when that passes.
pub type CheckFn = Arc<dyn Fn(&SupervisorHandle) -> CheckFuture + Send + Sync>;

/// How a manager checks the health of its connections.
///
/// Two kinds of signal feed a connection's rating:
///
/// - **active**: a probe every `interval` (the connection's own
///   [`probe`](connection_core::SupervisorHandle::probe), or a check of your own), bounded
///   by `probe_timeout`. One task probes every connection of a manager; probes run concurrently
///   up to `max_concurrent_probes`, and a connection's next probe is only scheduled once
///   its previous one has finished or timed out, so a hung peer never makes probes pile
///   up.
/// - **passive**, counted at once: the connection dropped (its supervisor left
///   `Connected`: Unhealthy immediately, no threshold), and failures seen on real
///   traffic ([`ConnectionManager::report_failure`](crate::ConnectionManager::report_failure),
///   which count like failed probes).
///
/// Ratings move with thresholds of consecutive results: `failure_threshold` failures in
/// a row make a connection Unhealthy, `recovery_threshold` successes in a row make an
/// Unhealthy one healthy again. A passing probe slower than `degraded_latency` rates it
/// Degraded instead of Healthy. A connection that was never rated (Unknown) takes the
/// rating of its first successful probe at once. Every change is published as
/// [`EventKind::HealthChanged`](connection_core::EventKind::HealthChanged).
///
/// Serde form (durations in milliseconds, `interval_ms: null` for passive signals
/// only): `{"interval_ms": 10000, "probe_timeout_ms": 5000, "failure_threshold": 3,
/// "recovery_threshold": 2, "degraded_latency_ms": null, "max_concurrent_probes": 64}`.
///
/// ```
/// use connection_health::HealthCheck;
/// use std::time::Duration;
///
/// let check = HealthCheck::builder()
///     .interval(Duration::from_secs(5))
///     .probe_timeout(Duration::from_secs(1))
///     .failure_threshold(3)
///     .recovery_threshold(2)
///     .degraded_latency(Duration::from_millis(200))
///     .build()?;
/// assert_eq!(check.failure_threshold(), 3);
///
/// let err = HealthCheck::builder().failure_threshold(0).build().unwrap_err();
/// assert_eq!(err.field(), "failure_threshold");
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "interval_ms", with = "opt_ms")]
    interval: Option<Duration>,
    #[serde(rename = "probe_timeout_ms", with = "ms")]
    timeout: Duration,
    failure_threshold: u32,
    recovery_threshold: u32,
    #[serde(rename = "degraded_latency_ms", with = "opt_ms")]
    degraded_latency: Option<Duration>,
    max_concurrent_probes: usize,
    #[serde(skip)]
    check: Option<CheckFn>,
}

impl Default for HealthCheck {
    /// Probe every 10 s with a 5 s timeout; 3 failures make Unhealthy, 2 successes
    /// recover; no latency ceiling; at most 64 probes at once.
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(10)),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
            recovery_threshold: 2,
            degraded_latency: None,
            max_concurrent_probes: 64,
            check: None,
        }
    }
}

impl HealthCheck {
    /// A builder starting from the defaults.
    pub fn builder() -> HealthCheckBuilder {
        Self::default().into_builder()
    }

    /// A builder starting from this check's settings.
    pub fn into_builder(self) -> HealthCheckBuilder {
        HealthCheckBuilder { check: self }
    }

    /// Passive signals only, no probes: a connection is Healthy while connected,
    /// Unhealthy once it drops or `failure_threshold` traffic failures were reported in a
    /// row.
    pub fn passive() -> Self {
        Self {
            interval: None,
            ..Self::default()
        }
    }

    /// Time between the end of one probe of a connection and the start of the next;
    /// `None` when only passive signals are used.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Bound on one probe; a probe over it counts as a failure.
    pub fn probe_timeout(&self) -> Duration {
        self.timeout
    }

    /// Consecutive failures that make a connection Unhealthy.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Consecutive successes that make an Unhealthy connection healthy again.
    pub fn recovery_threshold(&self) -> u32 {
        self.recovery_threshold
    }

    /// Latency above which a passing probe rates Degraded.
    pub fn degraded_latency(&self) -> Option<Duration> {
        self.degraded_latency
    }

    /// Probes running at once, at most.
    pub fn max_concurrent_probes(&self) -> usize {
        self.max_concurrent_probes
    }

    pub(crate) fn check_fn(&self) -> Option<&CheckFn> {
        self.check.as_ref()
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(i) = self.interval {
            require_nonzero("interval", i)?;
        }
        require_nonzero("probe_timeout", self.timeout)?;
        if self.failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be at least 1"));
        }
        if self.recovery_threshold == 0 {
            return Err(ConfigError::new("recovery_threshold", "must be at least 1"));
        }
        if let Some(d) = self.degraded_latency {
            require_nonzero("degraded_latency", d)?;
        }
        if !(1..=1 << 16).contains(&self.max_concurrent_probes) {
            return Err(ConfigError::new(
                "max_concurrent_probes",
                "must be in 1..=65536",
            ));
        }
        Ok(())
    }

    /// The rating of a passing probe that took `latency`.
    pub(crate) fn rate(&self, latency: Duration) -> HealthStatus {
        match self.degraded_latency {
            Some(ceiling) if latency > ceiling => HealthStatus::Degraded,
            _ => HealthStatus::Healthy,
        }
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("interval", &self.interval)
            .field("probe_timeout", &self.timeout)
            .field("failure_threshold", &self.failure_threshold)
            .field("recovery_threshold", &self.recovery_threshold)
            .field("degraded_latency", &self.degraded_latency)
            .field("max_concurrent_probes", &self.max_concurrent_probes)
            .field("custom_check", &self.check.is_some())
            .finish()
    }
}

/// Builds a [`HealthCheck`]; [`build`](Self::build) names the first bad field.
#[derive(Debug, Clone)]
#[must_use]
pub struct HealthCheckBuilder {
    check: HealthCheck,
}

impl HealthCheckBuilder {
    /// Time between probes of one connection (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.check.interval = Some(interval);
        self
    }

    /// No active probes: passive signals only.
    pub fn passive_only(mut self) -> Self {
        self.check.interval = None;
        self
    }

    /// Bound on one probe (default 5 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.check.timeout = timeout;
        self
    }

    /// Consecutive failures that make a connection Unhealthy (default 3, at least 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.check.failure_threshold = n;
        self
    }

    /// Consecutive successes that make an Unhealthy connection healthy (default 2, at
    /// least 1).
    pub fn recovery_threshold(mut self, n: u32) -> Self {
        self.check.recovery_threshold = n;
        self
    }

    /// A passing probe slower than this rates Degraded (default: no ceiling).
    pub fn degraded_latency(mut self, ceiling: Duration) -> Self {
        self.check.degraded_latency = Some(ceiling);
        self
    }

    /// No latency ceiling: a passing probe rates Healthy however slow (the default).
    pub fn no_degraded_latency(mut self) -> Self {
        self.check.degraded_latency = None;
        self
    }

    /// Probes running at once across all connections (default 64).
    pub fn max_concurrent_probes(mut self, n: usize) -> Self {
        self.check.max_concurrent_probes = n;
        self
    }

    /// A check of your own instead of the connection's probe, e.g. an HTTP request to
    /// a health endpoint. It gets the connection's handle and returns the round trip.
    ///
    /// ```
    /// use connection_health::HealthCheck;
    /// use futures::FutureExt;
    ///
    /// let check = HealthCheck::builder()
    ///     .check(|handle| {
    ///         let handle = handle.clone();
    ///         async move { handle.probe().await }.boxed()
    ///     })
    ///     .build()?;
    /// # let _ = check;
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn check<F>(mut self, check: F) -> Self
    where
        F: Fn(&SupervisorHandle) -> CheckFuture + Send + Sync + 'static,
    {
        self.check.check = Some(Arc::new(check));
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<HealthCheck, ConfigError> {
        self.check.validate()?;
        Ok(self.check)
    }
}

#[cfg(test)]
impl HealthCheckBuilder {
    /// The settings as they are, unvalidated: for tests of the monitor on settings that
    /// validation refuses (it must cope with any).
    pub(crate) fn build_unchecked(self) -> HealthCheck {
        self.check
    }
}
