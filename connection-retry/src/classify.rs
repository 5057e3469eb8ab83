//! How policies read an operation's error: [`Classify`].

use std::time::Duration;

use connection_core::{Error, RejectReason, Rejected};

/// What the policies need to know about an operation's error.
///
/// Implemented for [`connection_core::Error`] and [`Rejected`]; implement it for your
/// own error type to put these policies around any operation. Only
/// [`is_retryable`](Self::is_retryable) is required. Policies that refuse work (breaker,
/// limiter, bulkhead) also need `E: From<Rejected>` so a refusal comes back in the
/// caller's own type; a [`RetryPolicy`](crate::RetryPolicy) with a time limit needs
/// `E: From<`[`TimedOut`](crate::TimedOut)`>`. Where a closure is handier than a trait,
/// [`RetryPolicy::when`](crate::RetryPolicy::when) and
/// [`CircuitBreaker::run_with`](crate::CircuitBreaker::run_with) take one instead.
///
/// # Refusals need no forwarding
///
/// Once a refusal has become your error (`ApiError::Refused(Rejected)`, or a variant
/// that keeps nothing of it), the default methods below cannot see it. The policies
/// hear of it anyway: every refusal this crate's breaker, limiter and bulkhead make is
/// noted on the current thread, and a retry attempt or a breaker call that ends in an
/// error in the same poll that made a refusal treats the error as that refusal: the
/// retry waits for the refusal's `retry_after` (an open circuit's time until its next
/// probe) instead of its backoff and spends no budget on it; a breaker counts it as
/// neither success nor failure. A refusal the operation handled and moved on from (it
/// awaited something else before failing) is not taken for the failure.
///
/// What the error says itself comes first: a `Some` from [`retry_after`](Self::retry_after)
/// or [`rejection`](Self::rejection) wins over the noted refusal. Refusals you make
/// yourself (`Rejected::new(..)`) are not noted; report them through these methods.
///
/// ```
/// use connection_retry::{Classify, Rejected};
/// use std::time::Duration;
///
/// #[derive(Debug, thiserror::Error)]
/// enum ApiError {
///     #[error("HTTP {status}")]
///     Status { status: u16, retry_after: Option<Duration> },
///     #[error(transparent)]
///     Refused(#[from] Rejected),
/// }
///
/// impl Classify for ApiError {
///     fn is_retryable(&self) -> bool {
///         match self {
///             ApiError::Status { status, .. } => matches!(status, 429 | 502..=504),
///             ApiError::Refused(_) => true,
///         }
///     }
///
///     // Optional: the server's Retry-After. Refusals by this crate's policies are
///     // recognized without it.
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             ApiError::Status { retry_after, .. } => *retry_after,
///             ApiError::Refused(r) => r.retry_after,
///         }
///     }
/// }
/// # let _ = ApiError::Status { status: 503, retry_after: None }.is_retryable();
/// ```
pub trait Classify {
    /// Whether trying again may succeed.
    fn is_retryable(&self) -> bool;

    /// How long the server or a policy asked to wait, if it said (e.g. `Retry-After`).
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// Which policy refused the call, if this error is a refusal rather than a failure
    /// of the operation itself. Refusals do not count as failures for a circuit breaker
    /// and do not consume retry budget.
    fn rejection(&self) -> Option<RejectReason> {
        None
    }
}

impl Classify for Error {
    fn is_retryable(&self) -> bool {
        Error::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        Error::retry_after(self)
    }

    fn rejection(&self) -> Option<RejectReason> {
        match self {
            Error::Rejected(r) => Some(r.reason),
            _ => None,
        }
    }
}

impl Classify for Rejected {
    fn is_retryable(&self) -> bool {
        true
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn rejection(&self) -> Option<RejectReason> {
        Some(self.reason)
    }
}
