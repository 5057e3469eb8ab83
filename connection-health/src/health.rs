//! The rating state machine of one connection, apart from any I/O so it can be tested
//! alone. The monitor task owns one [`Tracker`] per connection and is its only writer.

use std::time::Duration;

use connection_core::HealthStatus;

use crate::check::HealthCheck;

/// Whether a rating makes a route usable (a failover group may send traffic to it).
pub(crate) fn usable(status: HealthStatus) -> bool {
    matches!(status, HealthStatus::Healthy | HealthStatus::Degraded)
}

/// A change of rating: `(from, to)`.
pub(crate) type Change = Option<(HealthStatus, HealthStatus)>;

/// Consecutive results and the current rating.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    status: HealthStatus,
    failures: u32,
    successes: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            status: HealthStatus::Unknown,
            failures: 0,
            successes: 0,
        }
    }
}

impl Tracker {
    #[cfg(test)]
    pub(crate) fn status(&self) -> HealthStatus {
        self.status
    }

    fn set(&mut self, to: HealthStatus) -> Change {
        let from = self.status;
        (from != to).then(|| {
            self.status = to;
            (from, to)
        })
    }

    /// A passing probe that took `latency`.
    pub(crate) fn success(&mut self, latency: Duration, cfg: &HealthCheck) -> Change {
        self.failures = 0;
        self.successes = self.successes.saturating_add(1);
        let rating = cfg.rate(latency);
        match self.status {
            HealthStatus::Unhealthy if self.successes < cfg.recovery_threshold() => None,
            _ => self.set(rating),
        }
    }

    /// A failed or timed-out probe, or a failure reported on real traffic.
    pub(crate) fn failure(&mut self, cfg: &HealthCheck) -> Change {
        self.successes = 0;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= cfg.failure_threshold() {
            self.set(HealthStatus::Unhealthy)
        } else {
            None
        }
    }

    /// The connection dropped or failed to connect: Unhealthy at once, and recovery
    /// starts from zero.
    pub(crate) fn lost(&mut self, cfg: &HealthCheck) -> Change {
        self.successes = 0;
        self.failures = self.failures.max(cfg.failure_threshold());
        self.set(HealthStatus::Unhealthy)
    }

    /// The connection is (re)established. Without active probes this is the only
    /// evidence there will be, so it rates Healthy at once; with probes, the next probe
    /// (started immediately) decides.
    pub(crate) fn connected(&mut self, cfg: &HealthCheck) -> Change {
        self.successes = 0;
        if cfg.interval().is_none() {
            self.failures = 0;
            self.set(HealthStatus::Healthy)
        } else {
            None
        }
    }

    /// The connection was stopped on purpose: not rated any more.
    pub(crate) fn stopped(&mut self) -> Change {
        self.successes = 0;
        self.failures = 0;
        self.set(HealthStatus::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg(fail: u32, recover: u32) -> HealthCheck {
        HealthCheck::builder()
            .failure_threshold(fail)
            .recovery_threshold(recover)
            .degraded_latency(100 * MS)
            .build()
            .unwrap()
    }

    #[test]
    fn failure_threshold_counts_consecutive_failures() {
        let c = cfg(3, 2);
        let mut t = Tracker::default();
        assert_eq!(
            t.success(MS, &c),
            Some((HealthStatus::Unknown, HealthStatus::Healthy))
        );
        assert_eq!(t.failure(&c), None);
        assert_eq!(t.failure(&c), None);
        // A success in between resets the count.
        assert_eq!(t.success(MS, &c), None);
        assert_eq!(t.failure(&c), None);
        assert_eq!(t.failure(&c), None);
        assert_eq!(t.status(), HealthStatus::Healthy);
        assert_eq!(
            t.failure(&c),
            Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
        );
        assert_eq!(t.failure(&c), None);
    }

    #[test]
    fn recovery_threshold_counts_consecutive_successes() {
        let c = cfg(1, 3);
        let mut t = Tracker::default();
        t.lost(&c);
        assert_eq!(t.success(MS, &c), None);
        assert_eq!(t.success(MS, &c), None);
        assert_eq!(t.failure(&c), None);
        assert_eq!(t.success(MS, &c), None);
        assert_eq!(t.success(MS, &c), None);
        assert_eq!(
            t.success(MS, &c),
            Some((HealthStatus::Unhealthy, HealthStatus::Healthy))
        );
    }

    #[test]
    fn slow_probes_rate_degraded() {
        let c = cfg(3, 1);
        let mut t = Tracker::default();
        assert_eq!(
            t.success(150 * MS, &c),
            Some((HealthStatus::Unknown, HealthStatus::Degraded))
        );
        assert_eq!(
            t.success(20 * MS, &c),
            Some((HealthStatus::Degraded, HealthStatus::Healthy))
        );
    }

    #[test]
    fn passive_signals_act_at_once() {
        let passive = HealthCheck::passive();
        let mut t = Tracker::default();
        assert_eq!(
            t.connected(&passive),
            Some((HealthStatus::Unknown, HealthStatus::Healthy))
        );
        assert_eq!(
            t.lost(&passive),
            Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
        );
        assert_eq!(
            t.connected(&passive),
            Some((HealthStatus::Unhealthy, HealthStatus::Healthy))
        );
        assert_eq!(
            t.stopped(),
            Some((HealthStatus::Healthy, HealthStatus::Unknown))
        );
        // With probes, connecting alone proves nothing.
        let active = cfg(3, 2);
        let mut t = Tracker::default();
        assert_eq!(t.connected(&active), None);
    }
}
