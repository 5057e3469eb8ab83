//! A governor clock that reads tokio's time.
//!
//! governor's own clocks read the real time, so on paused tokio time a limiter would
//! never see time pass while a task sleeps. Reading `tokio::time::Instant` keeps the
//! limiter's arithmetic and our waits on one clock: real time in production, virtual
//! time in tests.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// A governor [`Clock`] backed by [`tokio::time::Instant`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

/// A point in tokio's time, as governor needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}
