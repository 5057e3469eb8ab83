//! How policies read an operation's error: [`Classify`].

use std::time::Duration;

use connection_core::{Error, RejectReason, Rejected};

/// What the policies need to know about an operation's error.
///
/// Implemented for [`connection_core::Error`] and [`Rejected`]; implement it for your
/// own error type to put these policies around any operation. Policies that refuse work
/// (breaker, limiter, bulkhead) also need `E: From<Rejected>` so a refusal comes back in
/// the caller's own error type.
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
