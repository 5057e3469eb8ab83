//! The shared error type.
//!
//! Every error names the endpoint it concerns and classifies itself with
//! [`Error::is_retryable`], which is what reconnect loops and retry policies decide on.
//! Other crates keep their own error enums and convert into this one without losing
//! what kind of failure it was ([`Error::kind`]).
//!
//! [`Error`] is cheap to clone: its sources are behind `Arc`s, so one failure can be
//! handed to every waiter, event subscriber and metrics reader without re-formatting
//! it into a string.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;
use crate::endpoint::{Endpoint, EndpointError};
use crate::state::ConnectionState;

/// A boxed error from a dependency, kept as a source so dependency types stay out of the
/// public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error source, as [`Error`] holds it: cheap to clone. Make one from anything
/// that converts into a [`BoxError`] (a dependency's error, a `String`, a `&str`) with
/// [`shared`].
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Turns an error (or a message) into a [`SharedError`].
///
/// ```
/// let e = connection_core::shared("bad frame");
/// assert_eq!(e.to_string(), "bad frame");
/// ```
pub fn shared(source: impl Into<BoxError>) -> SharedError {
    Arc::from(source.into())
}

/// What timed out. An enum, so code that reacts to one kind of timeout (a connect that
/// never completed, against a request that may have reached the server) matches a
/// value, not a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Establishing a connection (TCP, TLS, protocol handshake).
    Connect,
    /// A health probe or heartbeat.
    Probe,
    /// Closing a connection gracefully.
    Close,
    /// Waiting for a usable connection ([`Link::ready`](crate::Link::ready)).
    Ready,
    /// A request or operation on an open connection.
    Request,
    /// One attempt of a retry policy.
    Attempt,
    /// A retry policy's overall deadline: final, the policy gives up.
    RetryDeadline,
    /// Waiting for a pooled connection.
    PoolWait,
}

impl Operation {
    /// A short lower-case name (`"connect"`, `"probe"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Probe => "probe",
            Self::Close => "close",
            Self::Ready => "ready",
            Self::Request => "request",
            Self::Attempt => "attempt",
            Self::RetryDeadline => "retry deadline",
            Self::PoolWait => "pool wait",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an [`Error`], without its data: for matching and for metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Connect`].
    Connect,
    /// [`Error::Io`].
    Io,
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::Tls`].
    Tls,
    /// [`Error::Auth`].
    Auth,
    /// [`Error::Status`].
    Status,
    /// [`Error::Rejected`].
    Rejected,
    /// [`Error::Protocol`].
    Protocol,
    /// [`Error::Closed`].
    Closed,
    /// [`Error::Unavailable`].
    Unavailable,
    /// [`Error::Shutdown`].
    Shutdown,
    /// [`Error::InvalidEndpoint`].
    InvalidEndpoint,
    /// [`Error::Config`].
    Config,
    /// [`Error::Other`].
    Other,
}

/// What went wrong, and where.
///
/// ```
/// use connection_core::{Endpoint, Error};
/// use std::io;
///
/// let ep = Endpoint::host_port("127.0.0.1", 9)?;
/// let err = Error::connect(&ep, io::Error::from(io::ErrorKind::ConnectionRefused));
/// assert!(err.is_retryable());
/// assert_eq!(err.endpoint(), Some(&ep));
/// assert!(err.to_string().contains("127.0.0.1:9"));
///
/// let auth = Error::Auth { endpoint: ep, status: 401 };
/// assert!(!auth.is_retryable());
/// # Ok::<(), connection_core::EndpointError>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening the connection failed at the socket level.
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// Where we tried to connect.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An established connection failed while reading or writing.
    #[error("i/o error on {endpoint}: {source}")]
    Io {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An operation did not finish in time. Retryable, except a retry policy's overall
    /// deadline ([`Operation::RetryDeadline`]), which is final.
    #[error("{operation} on {endpoint} timed out after {after:?}")]
    Timeout {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// What timed out.
        operation: Operation,
        /// The limit that was exceeded.
        after: Duration,
        /// What was going wrong meanwhile, when known (for a pool wait, the last
        /// connect error), with its own kind.
        #[source]
        cause: Option<Arc<Error>>,
    },
    /// The TLS handshake failed, e.g. the certificate did not verify. Not retryable: the
    /// same certificate will not verify next time either.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The TLS library's error.
        #[source]
        source: SharedError,
    },
    /// The server refused our credentials (HTTP 401/403, WebSocket handshake rejected).
    #[error("{endpoint} rejected the credentials (status {status})")]
    Auth {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The status code the server answered with.
        status: u16,
    },
    /// The server answered with an unexpected status. Retryable for 408, 429 and 5xx.
    #[error("{endpoint} answered with status {status}")]
    Status {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The status code.
        status: u16,
        /// How long the server asked us to wait (its `Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// A resilience policy (circuit breaker, rate limiter, bulkhead) refused to run the
    /// operation. Retryable: the refusal says when trying again can succeed.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The peer spoke the protocol wrongly (bad frame, bad handshake, bad event stream).
    #[error("protocol error on {endpoint}: {source}")]
    Protocol {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// What the protocol implementation reported.
        #[source]
        source: SharedError,
    },
    /// The peer closed the connection.
    #[error("{endpoint} closed the connection")]
    Closed {
        /// The connection's endpoint.
        endpoint: Endpoint,
    },
    /// No connection is usable right now: it is being established or re-established
    /// (retryable), or it failed or was closed (not retryable; `cause` says why it
    /// failed, when known). Returned by [`Link`](crate::Link) and everything that hands
    /// out I/O handles through one.
    #[error("no usable connection to {endpoint}: it is {state}")]
    Unavailable {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The connection's state when asked.
        state: ConnectionState,
        /// Why a Failed connection failed, when known.
        #[source]
        cause: Option<Arc<Error>>,
    },
    /// The operation was refused because the component is shutting down or shut down.
    #[error("{endpoint} is shut down")]
    Shutdown {
        /// The connection's endpoint.
        endpoint: Endpoint,
    },
    /// An address did not parse.
    #[error(transparent)]
    InvalidEndpoint(#[from] EndpointError),
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else, from a crate built on this one; it says itself whether to retry.
    #[error("{endpoint}: {source}")]
    Other {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The underlying error.
        #[source]
        source: SharedError,
        /// Whether trying again may succeed.
        retryable: bool,
    },
}

impl Error {
    /// A failed connect attempt.
    pub fn connect(endpoint: &Endpoint, source: io::Error) -> Self {
        Self::Connect {
            endpoint: endpoint.clone(),
            source: Arc::new(source),
        }
    }

    /// A read or write failure on an open connection.
    pub fn io(endpoint: &Endpoint, source: io::Error) -> Self {
        Self::Io {
            endpoint: endpoint.clone(),
            source: Arc::new(source),
        }
    }

    /// An operation that ran out of time.
    pub fn timeout(endpoint: &Endpoint, operation: Operation, after: Duration) -> Self {
        Self::Timeout {
            endpoint: endpoint.clone(),
            operation,
            after,
            cause: None,
        }
    }

    /// A TLS failure (not retryable).
    pub fn tls(endpoint: &Endpoint, source: impl Into<BoxError>) -> Self {
        Self::Tls {
            endpoint: endpoint.clone(),
            source: shared(source),
        }
    }

    /// The peer spoke the protocol wrongly (not retryable as a request; a long-lived
    /// connection reconnects after one).
    pub fn protocol(endpoint: &Endpoint, source: impl Into<BoxError>) -> Self {
        Self::Protocol {
            endpoint: endpoint.clone(),
            source: shared(source),
        }
    }

    /// Anything else, saying itself whether to retry.
    pub fn other(endpoint: &Endpoint, source: impl Into<BoxError>, retryable: bool) -> Self {
        Self::Other {
            endpoint: endpoint.clone(),
            source: shared(source),
            retryable,
        }
    }

    /// What kind of error this is, without its data.
    ///
    /// ```
    /// use connection_core::{Endpoint, Error, ErrorKind};
    /// let ep = Endpoint::host_port("127.0.0.1", 9)?;
    /// let e = Error::connect(&ep, std::io::ErrorKind::ConnectionRefused.into());
    /// assert_eq!(e.kind(), ErrorKind::Connect);
    /// let copy = e.clone(); // cheap: the socket error is shared
    /// assert_eq!(copy.kind(), ErrorKind::Connect);
    /// # Ok::<(), connection_core::EndpointError>(())
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Connect { .. } => ErrorKind::Connect,
            Self::Io { .. } => ErrorKind::Io,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Tls { .. } => ErrorKind::Tls,
            Self::Auth { .. } => ErrorKind::Auth,
            Self::Status { .. } => ErrorKind::Status,
            Self::Rejected(_) => ErrorKind::Rejected,
            Self::Protocol { .. } => ErrorKind::Protocol,
            Self::Closed { .. } => ErrorKind::Closed,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Shutdown { .. } => ErrorKind::Shutdown,
            Self::InvalidEndpoint(_) => ErrorKind::InvalidEndpoint,
            Self::Config(_) => ErrorKind::Config,
            Self::Other { .. } => ErrorKind::Other,
        }
    }

    /// The timed-out operation, for [`Error::Timeout`].
    pub fn timeout_operation(&self) -> Option<Operation> {
        match self {
            Self::Timeout { operation, .. } => Some(*operation),
            _ => None,
        }
    }

    /// Whether trying the same thing again may succeed.
    ///
    /// Refused, reset, aborted, timed-out connections and server overload (408, 429,
    /// 5xx) are retryable; certificate failures, bad addresses, bad configuration,
    /// rejected credentials, protocol violations and shutdown are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Io { source, .. } => io_is_retryable(source),
            Self::Timeout { operation, .. } => *operation != Operation::RetryDeadline,
            Self::Closed { .. } | Self::Rejected(_) => true,
            Self::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::Other { retryable, .. } => *retryable,
            Self::Unavailable { state, .. } => {
                !matches!(state, ConnectionState::Failed | ConnectionState::Closed)
            }
            Self::Tls { .. }
            | Self::Auth { .. }
            | Self::Protocol { .. }
            | Self::Shutdown { .. }
            | Self::InvalidEndpoint(_)
            | Self::Config(_) => false,
        }
    }

    /// Whether the error says the *connection* failed (refused, reset, closed, timed out,
    /// TLS or wire-protocol failure, no connection at all), as opposed to the peer
    /// answering an operation with an error (a status, a refused credential) or a local
    /// policy refusing it. Failover moves traffic to another route on these.
    ///
    /// ```
    /// use connection_core::{Endpoint, Error};
    /// let ep = Endpoint::host_port("127.0.0.1", 9)?;
    /// assert!(Error::Closed { endpoint: ep.clone() }.is_connection_level());
    /// let status = Error::Status { endpoint: ep, status: 503, retry_after: None };
    /// assert!(!status.is_connection_level());
    /// # Ok::<(), connection_core::EndpointError>(())
    /// ```
    pub fn is_connection_level(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Io { .. }
                | Self::Timeout {
                    operation: Operation::Connect
                        | Operation::Probe
                        | Operation::Request
                        | Operation::Ready
                        | Operation::Attempt,
                    ..
                }
                | Self::Tls { .. }
                | Self::Protocol { .. }
                | Self::Closed { .. }
                | Self::Unavailable { .. }
        )
    }

    /// `true` for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The endpoint the error concerns, when there is one (configuration errors have
    /// none).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Connect { endpoint, .. }
            | Self::Io { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Tls { endpoint, .. }
            | Self::Auth { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::Protocol { endpoint, .. }
            | Self::Closed { endpoint }
            | Self::Unavailable { endpoint, .. }
            | Self::Shutdown { endpoint }
            | Self::Other { endpoint, .. } => Some(endpoint),
            Self::Rejected(r) => r.endpoint.as_ref(),
            Self::InvalidEndpoint(_) | Self::Config(_) => None,
        }
    }

    /// How long to wait before trying again, when the peer or a policy said so: the
    /// server's `Retry-After`, or when a circuit will next admit a probe or a rate limiter
    /// a call. Retry policies prefer this over their computed delay.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Rejected(r) => r.retry_after,
            _ => None,
        }
    }
}

/// Which policy refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// A circuit breaker is open (or half-open with every probe slot taken).
    CircuitOpen,
    /// A rate limiter has no permit now.
    RateLimited,
    /// A concurrency limit (bulkhead) is full.
    BulkheadFull,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CircuitOpen => "circuit open",
            Self::RateLimited => "rate limited",
            Self::BulkheadFull => "concurrency limit reached",
        })
    }
}

/// A refusal by a resilience policy: a value that says why and, when known, how long
/// until trying again can succeed.
///
/// Policies that run any operation (not only a [`Transport`](crate::Transport)'s connect)
/// return their caller's error type `E: From<Rejected>`, so a stack of policies around an
/// operation yields one flat error type rather than nested wrappers.
///
/// ```
/// use connection_core::{Error, RejectReason, Rejected};
/// use std::time::Duration;
///
/// let r = Rejected::new(RejectReason::CircuitOpen).retry_after(Duration::from_secs(5));
/// let e: Error = r.into();
/// assert!(e.is_retryable());
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
/// assert_eq!(e.to_string(), "circuit open; retry in 5s");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Rejected {
    /// Which policy refused.
    pub reason: RejectReason,
    /// When trying again can succeed, if known.
    pub retry_after: Option<Duration>,
    /// The endpoint the operation was for, if any.
    pub endpoint: Option<Endpoint>,
}

impl Rejected {
    /// A refusal for `reason`, with no hint and no endpoint.
    pub fn new(reason: RejectReason) -> Self {
        Self {
            reason,
            retry_after: None,
            endpoint: None,
        }
    }

    /// Adds when trying again can succeed.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Adds the endpoint the refused operation was for.
    pub fn endpoint(mut self, endpoint: &Endpoint) -> Self {
        self.endpoint = Some(endpoint.clone());
        self
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(endpoint) = &self.endpoint {
            write!(f, "{endpoint}: ")?;
        }
        write!(f, "{}", self.reason)?;
        if let Some(after) = self.retry_after {
            write!(f, "; retry in {after:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Whether a socket error describes a transient condition of the network or the peer
/// (refused, reset, timed out, unreachable...), so trying again may succeed. The rule
/// behind [`Error::is_retryable`] for `Connect` and `Io`, for transports whose own error
/// types classify the same way.
///
/// ```
/// use std::io;
/// assert!(connection_core::io_is_retryable(&io::ErrorKind::ConnectionReset.into()));
/// assert!(!connection_core::io_is_retryable(&io::ErrorKind::PermissionDenied.into()));
/// ```
pub fn io_is_retryable(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | Interrupted
            | WouldBlock
            | AddrInUse
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::parse("tcp://127.0.0.1:1").unwrap()
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn classification() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionRefused,
            ConnectionReset,
            TimedOut,
            BrokenPipe,
            UnexpectedEof,
        ] {
            assert!(
                Error::connect(&ep(), kind.into()).is_retryable(),
                "{kind:?}"
            );
            assert!(Error::io(&ep(), kind.into()).is_retryable(), "{kind:?}");
        }
        for kind in [PermissionDenied, InvalidInput, InvalidData] {
            assert!(
                !Error::connect(&ep(), kind.into()).is_retryable(),
                "{kind:?}"
            );
        }
        assert!(Error::timeout(&ep(), Operation::Connect, Duration::from_secs(1)).is_retryable());
        let tls = Error::tls(&ep(), "certificate not trusted");
        assert!(!tls.is_retryable());
        assert!(
            !Error::Auth {
                endpoint: ep(),
                status: 401
            }
            .is_retryable()
        );
        assert!(
            !Error::Auth {
                endpoint: ep(),
                status: 403
            }
            .is_retryable()
        );
        for (status, retry) in [
            (400, false),
            (404, false),
            (408, true),
            (429, true),
            (503, true),
        ] {
            assert_eq!(
                Error::Status {
                    endpoint: ep(),
                    status,
                    retry_after: None
                }
                .is_retryable(),
                retry,
                "{status}"
            );
        }
        let bad_url: Error = Endpoint::parse("nope").unwrap_err().into();
        assert!(!bad_url.is_retryable());
        assert!(bad_url.endpoint().is_none());
    }

    #[test]
    fn rejections_are_retryable_and_carry_their_hint() {
        let r = Rejected::new(RejectReason::RateLimited)
            .retry_after(Duration::from_millis(20))
            .endpoint(&ep());
        let e = Error::from(r.clone());
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(20)));
        assert_eq!(e.endpoint(), Some(&ep()));
        assert_eq!(
            e.to_string(),
            "tcp://127.0.0.1:1: rate limited; retry in 20ms"
        );
        let s = Error::Status {
            endpoint: ep(),
            status: 503,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(s.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            Error::timeout(&ep(), Operation::Connect, Duration::from_secs(1)).retry_after(),
            None
        );
    }

    #[test]
    fn messages_name_the_endpoint() {
        let ep = ep().with_name("db");
        let e = Error::timeout(&ep, Operation::Probe, Duration::from_millis(250));
        assert_eq!(
            e.to_string(),
            "probe on db (tcp://127.0.0.1:1) timed out after 250ms"
        );
        let e = Error::connect(&ep, io::ErrorKind::ConnectionRefused.into());
        assert!(
            e.to_string()
                .starts_with("connecting to db (tcp://127.0.0.1:1) failed"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn clones_are_cheap_and_keep_the_kind() {
        let e = Error::io(&ep(), io::ErrorKind::ConnectionReset.into());
        let c = e.clone();
        let (Error::Io { source: a, .. }, Error::Io { source: b, .. }) = (&e, &c) else {
            panic!("{e:?}");
        };
        assert!(Arc::ptr_eq(a, b), "the socket error is shared, not copied");
        assert_eq!(c.kind(), ErrorKind::Io);
        assert_eq!(c.to_string(), e.to_string());
        let p = Error::protocol(&ep(), "bad frame");
        assert_eq!(p.clone().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn a_retry_deadline_is_final_other_timeouts_are_not() {
        let d = Duration::from_secs(1);
        assert!(!Error::timeout(&ep(), Operation::RetryDeadline, d).is_retryable());
        for op in [Operation::Connect, Operation::Attempt, Operation::PoolWait] {
            assert!(Error::timeout(&ep(), op, d).is_retryable(), "{op}");
        }
        let e = Error::timeout(&ep(), Operation::PoolWait, d);
        assert_eq!(e.timeout_operation(), Some(Operation::PoolWait));
        assert_eq!(
            e.to_string(),
            "pool wait on tcp://127.0.0.1:1 timed out after 1s"
        );
    }
}
