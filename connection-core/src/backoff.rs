//! How long to wait before the next attempt: the [`Backoff`] trait.
//!
//! The trait lives here, not in `connection-retry`, so the [`Supervisor`](crate::Supervisor)
//! and every transport can reconnect with any strategy without depending on the policy
//! crate. `connection-retry` provides the real strategies (exponential, jitter, ...);
//! this crate ships only [`ConstantBackoff`].

use std::time::Duration;

use crate::error::Error;

/// A strategy that decides the delay before each new attempt, or that it is time to stop.
///
/// Implementations may keep state (decorrelated jitter needs the previous delay), hence
/// `&mut self`. [`reset`](Backoff::reset) is called after a success, so the next failure
/// starts again from attempt 1.
///
/// ```
/// use connection_core::{Backoff, ConstantBackoff};
/// use std::time::Duration;
///
/// let mut b = ConstantBackoff::new(Duration::from_millis(100)).max_attempts(2);
/// assert_eq!(b.next_delay(1, None), Some(Duration::from_millis(100)));
/// assert_eq!(b.next_delay(2, None), Some(Duration::from_millis(100)));
/// assert_eq!(b.next_delay(3, None), None);
/// ```
pub trait Backoff: Send + 'static {
    /// The delay before attempt number `attempt` (1 for the first retry) following
    /// `last_error` (`None` when the connection ended without an error, e.g. the peer
    /// closed it), or `None` to give up.
    fn next_delay(&mut self, attempt: u32, last_error: Option<&Error>) -> Option<Duration>;

    /// Forgets accumulated state after a success.
    fn reset(&mut self) {}
}

impl<B: Backoff + ?Sized> Backoff for Box<B> {
    fn next_delay(&mut self, attempt: u32, last_error: Option<&Error>) -> Option<Duration> {
        (**self).next_delay(attempt, last_error)
    }

    fn reset(&mut self) {
        (**self).reset();
    }
}

/// The same delay every time, optionally for a limited number of attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstantBackoff {
    delay: Duration,
    max_attempts: Option<u32>,
}

impl ConstantBackoff {
    /// Waits `delay` before every attempt, forever.
    pub const fn new(delay: Duration) -> Self {
        Self {
            delay,
            max_attempts: None,
        }
    }

    /// Gives up after `n` attempts.
    #[must_use]
    pub const fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

impl Default for ConstantBackoff {
    /// One second, forever.
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl Backoff for ConstantBackoff {
    fn next_delay(&mut self, attempt: u32, _last_error: Option<&Error>) -> Option<Duration> {
        match self.max_attempts {
            Some(max) if attempt > max => None,
            _ => Some(self.delay),
        }
    }
}
