//! What the retry policy adds to an operation's errors: [`TimedOut`] and
//! [`ConnectPhase`].

use std::time::Duration;

use connection_core::Operation;
use connection_core::{Endpoint, Error, Rejected};

use crate::Classify;

/// Which time limit of a [`RetryPolicy`](super::RetryPolicy) ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeLimit {
    /// One attempt took longer than
    /// [`attempt_timeout`](super::RetryPolicyBuilder::attempt_timeout). Retryable: the
    /// next attempt may be faster.
    Attempt,
    /// The whole run, attempts and waits together, reached
    /// [`max_elapsed`](super::RetryPolicyBuilder::max_elapsed). Final.
    Deadline,
}

/// A retry policy cut an attempt short: the operation's own error type receives it
/// through `From<TimedOut>` (see [`RetryPolicy::run`](super::RetryPolicy::run)).
///
/// With [`connection_core::Error`], which names an endpoint in every variant,
/// [`into_error`](Self::into_error) makes an [`Error::Timeout`]; that is what
/// [`RetryPolicy::on`](super::RetryPolicy::on) and the [`Retry`](super::Retry)
/// transport do.
///
/// ```
/// use connection_retry::retry::{TimeLimit, TimedOut};
///
/// #[derive(Debug, thiserror::Error)]
/// enum MyError {
///     #[error("backend said no")]
///     Backend,
///     #[error(transparent)]
///     TimedOut(#[from] TimedOut),
/// }
/// # let _ = MyError::Backend;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .limit {
    TimeLimit::Attempt => format!("attempt timed out after {:?}", .after),
    TimeLimit::Deadline => format!("retry deadline of {:?} passed", .after),
})]
pub struct TimedOut {
    limit: TimeLimit,
    after: Duration,
}

impl TimedOut {
    pub(crate) fn new(limit: TimeLimit, after: Duration) -> Self {
        Self { limit, after }
    }

    /// Which limit ran out.
    pub fn limit(&self) -> TimeLimit {
        self.limit
    }

    /// The limit's length.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// An [`Error::Timeout`] on `endpoint`, operation [`Operation::Attempt`]
    /// (retryable) or [`Operation::RetryDeadline`] (final: it stays non-retryable in
    /// core's error too).
    pub fn into_error(self, endpoint: &Endpoint) -> Error {
        let operation = match self.limit {
            TimeLimit::Attempt => Operation::Attempt,
            TimeLimit::Deadline => Operation::RetryDeadline,
        };
        Error::timeout(endpoint, operation, self.after)
    }
}

impl Classify for TimedOut {
    fn is_retryable(&self) -> bool {
        self.limit == TimeLimit::Attempt
    }
}

/// Whether an error proves the operation never reached the server, so that running
/// it again cannot apply it twice. Non-idempotent runs
/// ([`RetryPolicy::run_non_idempotent`](super::RetryPolicy::run_non_idempotent)) retry
/// only such errors.
///
/// For [`connection_core::Error`] these are:
/// - [`Error::Connect`]: the connection was never established (refused, unreachable,
///   reset during the handshake, no banner);
/// - [`Error::Rejected`]: a local policy (breaker, limiter, bulkhead) refused to start
///   the call;
/// - [`Error::Timeout`] with operation `"connect"`: the connection was not up in time.
///
/// Everything else (an I/O error or timeout on an open connection, a closed
/// connection, an HTTP status) may have happened after the server received and acted
/// on the request. Implement this trait for your own error type to use non-idempotent
/// runs with it.
pub trait ConnectPhase {
    /// `true` if the operation certainly did not reach the server.
    fn is_connect_phase(&self) -> bool;
}

impl ConnectPhase for Error {
    fn is_connect_phase(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Rejected(_)
                | Error::Timeout {
                    operation: Operation::Connect,
                    ..
                }
        )
    }
}

impl ConnectPhase for Rejected {
    fn is_connect_phase(&self) -> bool {
        true
    }
}

impl ConnectPhase for TimedOut {
    /// An attempt cut by a timeout may have reached the server.
    fn is_connect_phase(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use connection_core::RejectReason;

    use super::*;

    #[test]
    fn connect_phase_of_core_errors() {
        let ep = Endpoint::host_port("127.0.0.1", 1).unwrap();
        let yes = [
            Error::connect(&ep, io::ErrorKind::ConnectionRefused.into()),
            Error::Rejected(Rejected::new(RejectReason::CircuitOpen)),
            Error::timeout(&ep, Operation::Connect, Duration::from_secs(1)),
        ];
        let no = [
            Error::io(&ep, io::ErrorKind::ConnectionReset.into()),
            Error::timeout(&ep, Operation::Attempt, Duration::from_secs(1)),
            Error::Closed {
                endpoint: ep.clone(),
            },
            Error::Status {
                endpoint: ep.clone(),
                status: 503,
                retry_after: None,
            },
        ];
        for e in &yes {
            assert!(e.is_connect_phase(), "{e}");
        }
        for e in &no {
            assert!(!e.is_connect_phase(), "{e}");
        }
    }

    #[test]
    fn timed_out_messages_and_classification() {
        let a = TimedOut::new(TimeLimit::Attempt, Duration::from_secs(2));
        let d = TimedOut::new(TimeLimit::Deadline, Duration::from_secs(30));
        assert_eq!(a.to_string(), "attempt timed out after 2s");
        assert_eq!(d.to_string(), "retry deadline of 30s passed");
        assert!(a.is_retryable() && !d.is_retryable());
        let ep = Endpoint::host_port("127.0.0.1", 1).unwrap();
        assert!(matches!(
            d.into_error(&ep),
            Error::Timeout {
                operation: Operation::RetryDeadline,
                ..
            }
        ));
        fn bounds<T: Send + Sync + 'static + std::error::Error>() {}
        bounds::<TimedOut>();
    }
}
