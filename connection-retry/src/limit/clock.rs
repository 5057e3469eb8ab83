//! The clock a rate limiter reads: [`LimiterClock`].
//!
//! governor's own clocks read real time, so on paused tokio time a limiter would never
//! see time pass while a task sleeps. The default here reads `tokio::time::Instant`,
//! which keeps the limiter's arithmetic and our waits on one clock: real time in
//! production, virtual time in tests.
//!
//! That read costs about 25 ns (`cargo xtask bench retry` prints it), most of a
//! permitted check. Programs that never run their limiters on paused time can choose
//! [`LimiterClock::fast`], quanta's TSC-based clock, which governor uses by default:
//! a few nanoseconds per read.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// Where a rate limiter reads the time. Defaults to tokio's clock.
#[derive(Clone)]
pub struct LimiterClock(Source);

#[derive(Clone)]
enum Source {
    /// tokio's clock, measured from a base instant.
    Tokio(tokio::time::Instant),
    /// quanta's clock in raw ticks, converted to nanoseconds.
    Fast(quanta::Clock),
}

impl LimiterClock {
    /// tokio's clock: paused time in tests drives the limiter. The default.
    pub fn tokio() -> Self {
        Self(Source::Tokio(tokio::time::Instant::now()))
    }

    /// quanta's TSC clock: several times cheaper to read, but real time only. A limiter
    /// on this clock does not see paused tokio time advance, so do not use it in tests
    /// that pause time.
    pub fn fast() -> Self {
        Self(Source::Fast(quanta::Clock::new()))
    }
}

impl Default for LimiterClock {
    fn default() -> Self {
        Self::tokio()
    }
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Source::Tokio(_) => "LimiterClock::tokio",
            Source::Fast(_) => "LimiterClock::fast",
        })
    }
}

/// A reading of a [`LimiterClock`]: nanoseconds since the clock's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LimiterInstant(u64);

impl LimiterInstant {
    /// Nanoseconds since the clock's origin.
    pub(super) fn nanos(self) -> u64 {
        self.0
    }
}

impl Add<Nanos> for LimiterInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0.saturating_add(other.as_u64()))
    }
}

impl Reference for LimiterInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(Duration::from_nanos(self.0.saturating_sub(earlier.0)))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.saturating_sub(duration.as_u64()))
    }
}

impl Clock for LimiterClock {
    type Instant = LimiterInstant;

    fn now(&self) -> LimiterInstant {
        match &self.0 {
            Source::Tokio(base) => {
                let since = tokio::time::Instant::now().saturating_duration_since(*base);
                LimiterInstant(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
            }
            Source::Fast(clock) => LimiterInstant(clock.delta_as_nanos(0, clock.raw())),
        }
    }
}
