//! [`Quota`]: how many calls, per what period, with what burst.

use std::num::NonZeroU32;
use std::time::Duration;

use connection_core::ConfigError;

/// A rate with an explicit burst.
///
/// governor derives the burst from the rate unless told otherwise (`per_second(50)` allows
/// 50 calls at once), which surprises users who meant "spread evenly". Here the burst is
/// always stated: `Quota::per_second(50, 1)` spreads calls 20 ms apart, `Quota::per_second(50,
/// 50)` allows the whole second's worth at once.
///
/// ```
/// use connection_retry::limit::Quota;
/// use std::time::Duration;
///
/// let q = Quota::per_second(50, 5)?;
/// assert_eq!(q.interval(), Duration::from_millis(20));
/// assert_eq!(q.burst(), 5);
/// assert!(Quota::per_second(0, 1).is_err());
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    burst: NonZeroU32,
}

impl Quota {
    /// `rate` calls per second, at most `burst` at once.
    pub fn per_second(rate: u32, burst: u32) -> Result<Self, ConfigError> {
        Self::per(Duration::from_secs(1), rate, burst)
    }

    /// `rate` calls per minute, at most `burst` at once.
    pub fn per_minute(rate: u32, burst: u32) -> Result<Self, ConfigError> {
        Self::per(Duration::from_secs(60), rate, burst)
    }

    /// `rate` calls per `period`, at most `burst` at once.
    pub fn per(period: Duration, rate: u32, burst: u32) -> Result<Self, ConfigError> {
        if rate == 0 {
            return Err(ConfigError::new("rate", "must be at least 1"));
        }
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| ConfigError::new("burst", "must be at least 1"))?;
        connection_core::require_nonzero("period", period)?;
        let interval = period / rate;
        if interval.is_zero() {
            return Err(ConfigError::new(
                "rate",
                format!("{rate} per {period:?} is finer than a nanosecond"),
            ));
        }
        // The limiter keeps `interval × burst` in 64-bit nanoseconds.
        let fits = u64::try_from(interval.as_nanos())
            .ok()
            .and_then(|n| n.checked_mul(u64::from(burst.get())))
            .is_some();
        if !fits {
            return Err(ConfigError::new(
                "burst",
                format!("{burst} permits of {interval:?} each span more than 584 years"),
            ));
        }
        Ok(Self { interval, burst })
    }

    /// Time between two permits at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many permits can be taken at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    pub(crate) fn to_governor(self) -> governor::Quota {
        // `with_period` is `None` only for a zero period, ruled out above.
        governor::Quota::with_period(self.interval)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}
