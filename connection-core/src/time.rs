//! Deadlines that cannot overflow.
//!
//! `Instant + Duration` panics when the sum does not fit, and a setting such as
//! `Duration::MAX` ("never") is a legitimate way to say "as good as never". Every
//! deadline the connection crates compute goes through [`deadline`], which saturates at
//! [`FAR_FUTURE`] from now, as tokio's own `sleep` does; interval periods go through
//! [`cap`].
//!
//! ```
//! use connection_core::time::{FAR_FUTURE, deadline};
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! let now = Instant::now();
//! assert_eq!(deadline(now, Duration::from_secs(1)), now + Duration::from_secs(1));
//! // No panic: "never" becomes "in about 30 years".
//! assert_eq!(deadline(now, Duration::MAX), now + FAR_FUTURE);
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: the horizon deadlines saturate at. The same as tokio's own bound for
/// `sleep` (longer overflows the clock on some platforms).
pub const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `d`, at most [`FAR_FUTURE`]: a period or delay that can be added to any instant a
/// program sees.
pub fn cap(d: Duration) -> Duration {
    d.min(FAR_FUTURE)
}

/// `now + after`, saturating at [`FAR_FUTURE`] from `now`. Never panics, whatever
/// `after` is.
pub fn deadline(now: Instant, after: Duration) -> Instant {
    let mut after = cap(after);
    loop {
        if let Some(at) = now.checked_add(after) {
            return at;
        }
        // Only on a clock that cannot represent 30 years ahead; halving terminates at
        // zero, which always fits.
        after /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_panicking() {
        let now = Instant::now();
        for d in [Duration::MAX, Duration::from_secs(u64::MAX), FAR_FUTURE * 2] {
            assert_eq!(deadline(now, d), now + FAR_FUTURE);
        }
        assert_eq!(deadline(now, Duration::ZERO), now);
        assert_eq!(cap(Duration::MAX), FAR_FUTURE);
        assert_eq!(cap(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
