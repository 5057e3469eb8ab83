//! [`ResilienceExt`]: the policies of this crate as [`Transport`] wrappers.

use connection_core::{Endpoint, Transport};

use crate::bulkhead::{Bulkhead, ConcurrencyLimit};
use crate::limit::{KeyedRateLimit, KeyedRateLimiter, RateLimit, RateLimiter};

/// Wraps any [`Transport`] in this crate's policies. Each method returns a new
/// `Transport`, so wrappers stack in any order through generics, with no boxing; the
/// policy values are shared by reference count, so every clone of a wrapped transport
/// draws from the same limiter, breaker or budget.
///
/// The order is outside-in: `t.rate_limit(l).concurrency_limit(b)` first waits for a
/// bulkhead slot, then for a rate-limit permit, then connects.
///
/// ```
/// use connection_core::TransportExt;
/// use connection_retry::ResilienceExt;
/// use connection_retry::bulkhead::Bulkhead;
/// use connection_retry::limit::{Quota, RateLimiter};
/// use std::time::Duration;
///
/// # fn wrap<T: connection_core::Transport>(t: T) -> Result<(), connection_core::ConfigError> {
/// let guarded = t
///     .timeout(Duration::from_secs(2))
///     .rate_limit(RateLimiter::new(Quota::per_second(10, 1)?))
///     .concurrency_limit(Bulkhead::builder(4).build()?);
/// # let _ = guarded; Ok(()) }
/// ```
pub trait ResilienceExt: Transport + Sized {
    /// Connects draw permits from `limiter`.
    fn rate_limit(self, limiter: RateLimiter) -> RateLimit<Self> {
        RateLimit::new(self, limiter)
    }

    /// Connects draw permits from this endpoint's quota in a limiter shared across
    /// transports.
    fn rate_limit_per_endpoint(self, limiter: KeyedRateLimiter<Endpoint>) -> KeyedRateLimit<Self> {
        KeyedRateLimit::new(self, limiter)
    }

    /// At most the bulkhead's limit of connections are open at once.
    fn concurrency_limit(self, bulkhead: Bulkhead) -> ConcurrencyLimit<Self> {
        ConcurrencyLimit::new(self, bulkhead)
    }
}

impl<T: Transport> ResilienceExt for T {}
