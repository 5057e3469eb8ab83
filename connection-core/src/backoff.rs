//! How long to wait before the next attempt: the [`Backoff`] trait.
//!
//! The trait lives here, not in `connection-retry`, so the [`Supervisor`](crate::Supervisor)
//! and every transport can reconnect with any strategy without depending on the policy
//! crate. `connection-retry` provides the full set of strategies; this crate ships
//! [`ExponentialBackoff`], the jittered default every supervisor uses unless told
//! otherwise (a fleet of clients that all lose their server at once must not come back
//! in lockstep), and [`ConstantBackoff`].

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

/// Exponential backoff with "equal" jitter: before attempt `n` it waits between half and
/// all of `initial * 2^(n-1)`, capped at `max`; the random half differs per instance
/// (and per clone), so clients that lost their server together spread out instead of
/// coming back in lockstep. The default of [`Supervisor`](crate::Supervisor): from
/// 250 ms, at most 30 s, forever.
///
/// ```
/// use connection_core::{Backoff, ExponentialBackoff};
/// use std::time::Duration;
///
/// let mut b = ExponentialBackoff::default();
/// let first = b.next_delay(1, None).unwrap();
/// assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(250));
/// let fifth = b.next_delay(5, None).unwrap();
/// assert!(fifth >= Duration::from_secs(2) && fifth <= Duration::from_secs(4));
/// let late = b.next_delay(40, None).unwrap();
/// assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
/// ```
#[derive(Debug)]
pub struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    /// xorshift64* state; never zero.
    rng: u64,
}

impl ExponentialBackoff {
    /// From `initial`, doubling, at most `max` (both at least 1 ms), forever.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            max_attempts: None,
            rng: seed(),
        }
    }

    /// Gives up after `n` attempts.
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// A uniform draw in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        // The top 53 bits of the scrambled state, as a fraction.
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random, non-zero seed from the standard library's per-process random keys: no
/// dependency, and every call differs.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish() | 1
}

impl Clone for ExponentialBackoff {
    /// A clone draws from a stream of its own: clones handed to many connections must
    /// not jitter alike.
    fn clone(&self) -> Self {
        Self {
            rng: seed(),
            ..*self
        }
    }
}

impl Default for ExponentialBackoff {
    /// From 250 ms, doubling, at most 30 s, forever.
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self, attempt: u32, _last_error: Option<&Error>) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(32);
        let base = self
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let half = base / 2;
        // Saturating: a `max` of `Duration::MAX` must not overflow by a rounding.
        Some(half.saturating_add(half.mul_f64(self.unit())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_in_their_band_and_cap() {
        let mut b = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for (attempt, base_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            for _ in 0..200 {
                let d = b.next_delay(attempt, None).unwrap();
                let base = Duration::from_millis(base_ms);
                assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
            }
        }
        assert_eq!(b.clone().max_attempts(2).next_delay(3, None), None);
        let mut huge = ExponentialBackoff::new(Duration::MAX, Duration::MAX);
        assert!(huge.next_delay(u32::MAX, None).is_some(), "no overflow");
    }

    #[test]
    fn jitter_spreads_and_clones_differ() {
        let mut a = ExponentialBackoff::default();
        let mut b = a.clone();
        let xs: Vec<_> = (0..50).map(|_| a.next_delay(3, None).unwrap()).collect();
        let ys: Vec<_> = (0..50).map(|_| b.next_delay(3, None).unwrap()).collect();
        assert_ne!(xs, ys, "a clone must not repeat the same jitter");
        let distinct: std::collections::HashSet<_> = xs.iter().collect();
        assert!(distinct.len() > 40, "jitter is spread: {distinct:?}");
        // Uniform over [500 ms, 1 s]: the mean sits near 750 ms.
        let mean = xs.iter().sum::<Duration>() / 50;
        assert!(
            mean > Duration::from_millis(650) && mean < Duration::from_millis(850),
            "{mean:?}"
        );
    }
}
