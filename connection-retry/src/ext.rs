//! [`ResilienceExt`]: the policies of this crate as [`Transport`] wrappers.

use connection_core::{Endpoint, Transport};

use crate::breaker::{CircuitBreak, CircuitBreaker};
use crate::bulkhead::{Bulkhead, ConcurrencyLimit};
use crate::limit::{KeyedRateLimit, KeyedRateLimiter, RateLimit, RateLimiter};
use crate::retry::{Retry, RetryPolicy};

/// Wraps any [`Transport`] in this crate's policies. Each method returns a new
/// `Transport`, so wrappers stack in any order through generics, with no boxing; the
/// policy values are shared by reference count, so every clone of a wrapped transport
/// draws from the same limiter, breaker or budget.
///
/// The last wrapper applied is the outermost: in
/// `t.circuit_breaker(b).retry(p)` every retry goes through the breaker (so an open
/// circuit stops the retries early), while in `t.retry(p).circuit_breaker(b)` the breaker
/// sees one call per retried sequence.
///
/// ```
/// use connection_core::TransportExt;
/// use connection_retry::ResilienceExt;
/// use connection_retry::bulkhead::Bulkhead;
/// use connection_retry::limit::{Quota, RateLimiter};
/// use connection_retry::{CircuitBreaker, RetryBudget, RetryPolicy};
/// use std::time::Duration;
///
/// # fn wrap<T: connection_core::Transport>(t: T) -> Result<(), connection_core::ConfigError> {
/// let guarded = t
///     .timeout(Duration::from_secs(2))
///     .rate_limit(RateLimiter::new(Quota::per_second(10, 1)?))
///     .circuit_breaker(CircuitBreaker::builder().build()?)
///     .retry(RetryPolicy::builder().budget(RetryBudget::default()).build()?)
///     .concurrency_limit(Bulkhead::builder(4).build()?);
/// # let _ = guarded; Ok(()) }
/// ```
pub trait ResilienceExt: Transport + Sized {
    /// Failed connects are retried by `policy` (its backoff, budget, deadline and
    /// Retry-After handling).
    fn retry<L>(self, policy: RetryPolicy<L>) -> Retry<Self, L> {
        Retry::new(self, policy)
    }

    /// Connects go through `breaker`: refused at once while it is open, with the time
    /// until the next probe.
    fn circuit_breaker(self, breaker: CircuitBreaker) -> CircuitBreak<Self> {
        CircuitBreak::new(self, breaker)
    }

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
