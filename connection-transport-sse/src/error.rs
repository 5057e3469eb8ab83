//! [`SseError`]: what can go wrong in this crate, and how it maps onto
//! [`connection_core::Error`] (whose `is_retryable` the supervisor follows for a failed
//! connect).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{BoxError, ConfigError, Endpoint, Error, Operation};

/// What went wrong, and where.
///
/// Converts into [`connection_core::Error`]; [`is_retryable`](Self::is_retryable) gives
/// the same answer as the converted error.
///
/// | variant | core error | retried |
/// |---|---|---|
/// | `Config` | `Config` | no |
/// | `Connect` (refused, unreachable) | `Connect` | yes |
/// | `Tls` (certificate does not verify, ...) | `Tls` | no |
/// | `Timeout` (no response headers in time) | `Timeout` | yes |
/// | `Status` 401 / 403 not in the retry set | `Auth` | no |
/// | `Status` other | `Status`, or `Other` where the retry set and core's classification disagree | per [`StatusSet`](crate::StatusSet): 408, 429, 5xx by default |
/// | `ContentType` | `Protocol` | no |
/// | `Redirect` (too many, no `Location`) | `Other` | no |
/// | `Request`, `Read` | `Io` / `Other` | yes |
/// | `Inactive` (no byte within the inactivity timeout) | `Timeout` | yes |
/// | `TooLarge` | `Protocol` | no (the stream is reconnected all the same) |
/// | `Closed` | `Closed` | yes |
///
/// ```
/// use connection_core::Endpoint;
/// use connection_transport_sse::SseError;
///
/// let endpoint: Endpoint = "http://127.0.0.1:9000/events".parse()?;
/// let err = SseError::Status { endpoint, status: 404, retry_after: None, retry: false };
/// assert!(!err.is_retryable());
/// let core: connection_core::Error = err.into();
/// assert!(matches!(core, connection_core::Error::Status { status: 404, .. }));
/// # Ok::<(), connection_core::EndpointError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Opening the TCP connection failed.
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// Where.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (a certificate that does not verify...). Not retried.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        /// Where.
        endpoint: Endpoint,
        /// The rustls error, as reqwest reported it.
        #[source]
        source: BoxError,
    },
    /// No response headers within the connect timeout.
    #[error("no response from {endpoint} within {after:?}")]
    Timeout {
        /// Where.
        endpoint: Endpoint,
        /// The connect timeout.
        after: Duration,
    },
    /// The server answered with a status other than 200 (and 204, which ends the
    /// stream for good, and the redirects).
    #[error("{endpoint} answered with status {status}")]
    Status {
        /// Where.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After` (seconds form), if any: the next attempt waits at
        /// least this long.
        retry_after: Option<Duration>,
        /// Whether the status is in the configured retry set.
        retry: bool,
    },
    /// A 200 whose `Content-Type` is not `text/event-stream`: not an event stream.
    #[error("{endpoint} answered with Content-Type {found:?}, not text/event-stream")]
    ContentType {
        /// Where.
        endpoint: Endpoint,
        /// What it said, if anything.
        found: Option<String>,
    },
    /// A redirect that cannot be followed: too many, or without a usable `Location`.
    #[error("redirect from {endpoint} not followed: {reason}")]
    Redirect {
        /// Where.
        endpoint: Endpoint,
        /// Why.
        reason: String,
    },
    /// Sending the request failed after the connection was made.
    #[error("request to {endpoint} failed: {source}")]
    Request {
        /// Where.
        endpoint: Endpoint,
        /// The error.
        #[source]
        source: BoxError,
    },
    /// Reading the stream failed (reset, a broken chunked encoding...).
    #[error("reading the stream of {endpoint} failed: {source}")]
    Read {
        /// Where.
        endpoint: Endpoint,
        /// The error.
        #[source]
        source: BoxError,
    },
    /// Nothing arrived, not even a comment, for the inactivity timeout: the connection
    /// is presumed dead (half open) and is reconnected.
    #[error("no byte from {endpoint} for {after:?}: the connection is presumed dead")]
    Inactive {
        /// Where.
        endpoint: Endpoint,
        /// The inactivity timeout.
        after: Duration,
    },
    /// A line or an event grew past `max_event_size`.
    #[error("an event from {endpoint} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Where.
        endpoint: Endpoint,
        /// The limit.
        limit: usize,
    },
    /// The client is closed, failed or ended.
    #[error("the stream of {endpoint} is closed")]
    Closed {
        /// Where.
        endpoint: Endpoint,
    },
}

impl SseError {
    /// Whether a new attempt may succeed: the answer of the converted core error.
    pub fn is_retryable(&self) -> bool {
        Error::from(self.clone_shallow()).is_retryable()
    }

    /// The endpoint, when the error concerns one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Config(_) => None,
            Self::Connect { endpoint, .. }
            | Self::Tls { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::ContentType { endpoint, .. }
            | Self::Redirect { endpoint, .. }
            | Self::Request { endpoint, .. }
            | Self::Read { endpoint, .. }
            | Self::Inactive { endpoint, .. }
            | Self::TooLarge { endpoint, .. }
            | Self::Closed { endpoint } => Some(endpoint),
        }
    }

    /// A copy good enough to classify (sources become their text).
    fn clone_shallow(&self) -> Self {
        let text = |e: &BoxError| -> BoxError { e.to_string().into() };
        match self {
            Self::Config(c) => Self::Config(c.clone()),
            Self::Connect { endpoint, source } => Self::Connect {
                endpoint: endpoint.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Self::Tls { endpoint, source } => Self::Tls {
                endpoint: endpoint.clone(),
                source: text(source),
            },
            Self::Timeout { endpoint, after } => Self::Timeout {
                endpoint: endpoint.clone(),
                after: *after,
            },
            Self::Status {
                endpoint,
                status,
                retry_after,
                retry,
            } => Self::Status {
                endpoint: endpoint.clone(),
                status: *status,
                retry_after: *retry_after,
                retry: *retry,
            },
            Self::ContentType { endpoint, found } => Self::ContentType {
                endpoint: endpoint.clone(),
                found: found.clone(),
            },
            Self::Redirect { endpoint, reason } => Self::Redirect {
                endpoint: endpoint.clone(),
                reason: reason.clone(),
            },
            Self::Request { endpoint, source } => Self::Request {
                endpoint: endpoint.clone(),
                source: text(source),
            },
            Self::Read { endpoint, source } => Self::Read {
                endpoint: endpoint.clone(),
                source: text(source),
            },
            Self::Inactive { endpoint, after } => Self::Inactive {
                endpoint: endpoint.clone(),
                after: *after,
            },
            Self::TooLarge { endpoint, limit } => Self::TooLarge {
                endpoint: endpoint.clone(),
                limit: *limit,
            },
            Self::Closed { endpoint } => Self::Closed {
                endpoint: endpoint.clone(),
            },
        }
    }

    /// Classifies an error of reqwest from sending the request.
    pub(crate) fn from_send(endpoint: &Endpoint, error: reqwest::Error, limit: Duration) -> Self {
        if error.is_timeout() {
            return Self::Timeout {
                endpoint: endpoint.clone(),
                after: limit,
            };
        }
        if let Some(tls) = find_tls(&error) {
            return Self::Tls {
                endpoint: endpoint.clone(),
                source: tls.into(),
            };
        }
        if error.is_connect() {
            let kind = find_io(&error).map_or(io::ErrorKind::ConnectionRefused, io::Error::kind);
            return Self::Connect {
                endpoint: endpoint.clone(),
                source: io::Error::new(kind, error),
            };
        }
        Self::Request {
            endpoint: endpoint.clone(),
            source: Box::new(error),
        }
    }
}

/// The first `io::Error` in a chain of sources.
fn find_io<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

/// The TLS failure in a chain of sources, as text (rustls errors sit inside
/// `io::Error`s there).
fn find_tls(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        #[cfg(feature = "tls")]
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            #[cfg(feature = "tls")]
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls.to_string());
            }
            let _ = io;
        }
        next = e.source();
    }
    None
}

impl From<SseError> for Error {
    fn from(e: SseError) -> Self {
        match e {
            SseError::Config(c) => Error::Config(c),
            SseError::Connect { endpoint, source } => Error::connect(&endpoint, source),
            SseError::Tls { endpoint, source } => Error::tls(&endpoint, source),
            SseError::Timeout { endpoint, after } => {
                Error::timeout(&endpoint, Operation::Connect, after)
            }
            SseError::Status {
                endpoint,
                status,
                retry_after,
                retry,
            } => {
                let core = if matches!(status, 401 | 403) && !retry {
                    Error::Auth {
                        endpoint: endpoint.clone(),
                        status,
                    }
                } else {
                    Error::Status {
                        endpoint: endpoint.clone(),
                        status,
                        retry_after,
                    }
                };
                // The retry set is configurable; where it disagrees with core's
                // classification, the verdict travels in an `Other`.
                if core.is_retryable() == retry {
                    core
                } else {
                    Error::other(
                        &endpoint,
                        SseError::Status {
                            endpoint: endpoint.clone(),
                            status,
                            retry_after,
                            retry,
                        },
                        retry,
                    )
                }
            }
            SseError::ContentType { ref endpoint, .. } => Error::protocol(&endpoint.clone(), e),
            SseError::Redirect { ref endpoint, .. } => Error::other(&endpoint.clone(), e, false),
            SseError::Request { ref endpoint, .. } => {
                let endpoint = endpoint.clone();
                Error::other(&endpoint, e, true)
            }
            SseError::Read { endpoint, source } => {
                let kind =
                    find_io(&*source).map_or(io::ErrorKind::ConnectionReset, io::Error::kind);
                Error::io(&endpoint, io::Error::new(kind, source))
            }
            SseError::Inactive { endpoint, after } => Error::Timeout {
                endpoint: endpoint.clone(),
                operation: Operation::Request,
                after,
                cause: Some(Arc::new(Error::other(
                    &endpoint,
                    SseError::Inactive {
                        endpoint: endpoint.clone(),
                        after,
                    },
                    true,
                ))),
            },
            SseError::TooLarge { ref endpoint, .. } => Error::protocol(&endpoint.clone(), e),
            SseError::Closed { endpoint } => Error::Closed { endpoint },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        "http://127.0.0.1:1/e".parse().unwrap()
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SseError>();
    }

    #[test]
    fn status_verdicts_follow_the_retry_set() {
        let status = |status, retry| SseError::Status {
            endpoint: ep(),
            status,
            retry_after: None,
            retry,
        };
        for (code, retry) in [
            (404, false),
            (404, true),
            (503, true),
            (503, false),
            (401, false),
            (401, true),
            (429, true),
        ] {
            let err = status(code, retry);
            assert_eq!(err.is_retryable(), retry, "{code} {retry}");
            assert_eq!(Error::from(status(code, retry)).is_retryable(), retry);
        }
        assert!(matches!(
            Error::from(status(401, false)),
            Error::Auth { status: 401, .. }
        ));
        assert!(matches!(
            Error::from(status(503, true)),
            Error::Status { status: 503, .. }
        ));
        let inactive = Error::from(SseError::Inactive {
            endpoint: ep(),
            after: Duration::from_secs(1),
        });
        assert!(inactive.is_retryable() && inactive.is_connection_level());
        assert!(
            !SseError::ContentType {
                endpoint: ep(),
                found: None
            }
            .is_retryable()
        );
    }
}
