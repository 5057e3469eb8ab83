//! [`HttpError`]: what can go wrong with a request, and how it maps to core's [`Error`].
//!
//! Errors never carry a URL: reqwest's errors print the full request URL (userinfo and
//! query included), so every reqwest error kept as a source has its URL removed first,
//! and our own messages name the endpoint through its redacted form.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{
    ConfigError, Endpoint, Error, ErrorKind, Operation, RejectReason, Rejected, SharedError, shared,
};

/// What timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Opening the TCP connection and the TLS handshake.
    Connect,
    /// The whole request: connect, send, response head and body.
    Request,
    /// A silence while waiting for the response head or the next piece of the body.
    Read,
    /// The retry policy's deadline across every attempt (final).
    Deadline,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Request => "request",
            Self::Read => "read",
            Self::Deadline => "retry deadline",
        })
    }
}

/// Why a request whose failure is retryable by its kind was not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotRetried {
    /// The method is not idempotent (POST, PATCH, or anything but GET, HEAD, OPTIONS,
    /// TRACE, PUT and DELETE), the request carried no `Idempotency-Key` header and did
    /// not opt in with [`HttpRequest::retry`](crate::HttpRequest::retry): the server may
    /// have acted on it already.
    NotIdempotent,
    /// The body is a stream, consumed by the first attempt: it cannot be sent again.
    StreamingBody,
    /// The request opted out with [`HttpRequest::retry`](crate::HttpRequest::retry).
    OptedOut,
}

impl fmt::Display for NotRetried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotIdempotent => {
                "the method is not idempotent and the request has no Idempotency-Key"
            }
            Self::StreamingBody => "the request body is a stream that cannot be replayed",
            Self::OptedOut => "the request opted out of retries",
        })
    }
}

/// A failed HTTP request or a bad setting.
///
/// Every variant that concerns a server names its endpoint, redacted (no password, no
/// secret query value). Converts into core's [`Error`] without losing its kind:
/// statuses 401 and 403 become [`Error::Auth`], other statuses [`Error::Status`] (with
/// the server's `Retry-After`), connect failures [`Error::Connect`], and so on.
///
/// ```
/// use connection_core::{Endpoint, Error, ErrorKind};
/// use connection_transport_http::HttpError;
///
/// let endpoint = Endpoint::parse("https://api.example.com")?;
/// let err = HttpError::Status { endpoint, status: 503, retry_after: None };
/// assert!(err.is_retryable());
/// let core: Error = err.into();
/// assert_eq!(core.kind(), ErrorKind::Status);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The request could not be built (a bad path, header or body).
    #[error("invalid request to {endpoint}: {reason}")]
    InvalidRequest {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// What was wrong.
        reason: Arc<str>,
    },
    /// The TCP connection could not be opened: nothing was sent.
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A time limit passed.
    #[error("{kind} on {endpoint} timed out after {after:?}")]
    Timeout {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// Which limit.
        kind: TimeoutKind,
        /// The limit.
        after: Duration,
    },
    /// The TLS handshake failed, e.g. the certificate did not verify. Not retried.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The TLS library's error.
        #[source]
        source: SharedError,
    },
    /// The server closed the connection before a response began (the stale pooled
    /// socket of hyper#2136 when `reused`).
    #[error("{endpoint} closed the connection before answering{}", if *.reused { " (a reused keep-alive connection)" } else { "" })]
    Closed {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// Whether the request went out on a pooled connection used before.
        reused: bool,
    },
    /// Reading or writing an open connection failed.
    #[error("i/o error on {endpoint}: {source}")]
    Io {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The server did not speak HTTP correctly.
    #[error("protocol error on {endpoint}: {source}")]
    Protocol {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// What the HTTP implementation reported.
        #[source]
        source: SharedError,
    },
    /// The server answered with a status the caller treats as an error (from
    /// [`HttpResponse::error_for_status`](crate::HttpResponse::error_for_status) and the
    /// typed helpers), or a probe got an unexpected status.
    #[error("{endpoint} answered with status {status}")]
    Status {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The status code.
        status: u16,
        /// The server's `Retry-After`, if it sent one that parses.
        retry_after: Option<Duration>,
    },
    /// The response body was not what the caller asked for (JSON that does not match,
    /// text that is not UTF-8).
    #[error("the response from {endpoint} could not be decoded: {source}")]
    Decode {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The decoder's error.
        #[source]
        source: SharedError,
    },
    /// The response body is larger than the client accepts.
    #[error("the response from {endpoint} is larger than {limit} bytes")]
    BodyTooLarge {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The client's limit, in bytes.
        limit: usize,
    },
    /// The caller's streaming request body failed.
    #[error("the request body for {endpoint} failed: {source}")]
    Body {
        /// The client's endpoint.
        endpoint: Endpoint,
        /// The stream's error.
        #[source]
        source: SharedError,
    },
    /// The client's circuit breaker or rate limiter refused the request; it was not
    /// sent.
    #[error(transparent)]
    Rejected(Rejected),
    /// A failure that would have been retried, but the request could not be: `reason`
    /// says why.
    #[error("{error} (not retried: {reason})")]
    NotRetried {
        /// Why.
        reason: NotRetried,
        /// The failure.
        error: Box<HttpError>,
    },
}

impl HttpError {
    /// The failure itself, past a [`NotRetried`] wrapper.
    pub fn inner(&self) -> &HttpError {
        match self {
            Self::NotRetried { error, .. } => error.inner(),
            other => other,
        }
    }

    /// Why a retryable failure was not retried, if that is what happened.
    pub fn not_retried(&self) -> Option<NotRetried> {
        match self {
            Self::NotRetried { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The status code, for [`HttpError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self.inner() {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `true` for a timeout of any kind.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner(), Self::Timeout { .. })
    }

    /// `true` when the failure proves the request never left this process or never
    /// reached the server (connect failure, connect timeout, refusal by a local
    /// policy): sending it again cannot apply it twice.
    pub fn is_connect_phase(&self) -> bool {
        matches!(
            self.inner(),
            Self::Connect { .. }
                | Self::Rejected(_)
                | Self::Timeout {
                    kind: TimeoutKind::Connect,
                    ..
                }
        )
    }

    /// Whether trying the same request again may succeed, judged by the failure alone
    /// (the client also asks whether the request is safe to repeat): connect failures,
    /// timeouts, a connection closed or broken under the request, statuses 408, 429,
    /// 502, 503 and 504.
    pub fn is_retryable(&self) -> bool {
        match self.inner() {
            Self::Connect { .. } | Self::Closed { .. } => true,
            Self::Io { source, .. } => connection_core::io_is_retryable(source),
            Self::Timeout { kind, .. } => *kind != TimeoutKind::Deadline,
            Self::Status { status, .. } => is_retryable_status(*status),
            Self::Rejected(r) => r.reason == RejectReason::RateLimited,
            _ => false,
        }
    }

    /// The server's `Retry-After`, or a refusing policy's hint.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.inner() {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Rejected(r) => r.retry_after,
            _ => None,
        }
    }

    /// The endpoint the error concerns (none for a configuration error).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self.inner() {
            Self::InvalidRequest { endpoint, .. }
            | Self::Connect { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Tls { endpoint, .. }
            | Self::Closed { endpoint, .. }
            | Self::Io { endpoint, .. }
            | Self::Protocol { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::BodyTooLarge { endpoint, .. }
            | Self::Body { endpoint, .. } => Some(endpoint),
            Self::Rejected(r) => r.endpoint.as_ref(),
            Self::Config(_) | Self::NotRetried { .. } => None,
        }
    }

    /// The kind of core [`Error`] this becomes.
    pub fn kind(&self) -> ErrorKind {
        Error::from(self.clone()).kind()
    }

    pub(crate) fn invalid(endpoint: &Endpoint, reason: impl Into<Arc<str>>) -> Self {
        Self::InvalidRequest {
            endpoint: endpoint.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn timeout(endpoint: &Endpoint, kind: TimeoutKind, after: Duration) -> Self {
        Self::Timeout {
            endpoint: endpoint.clone(),
            kind,
            after,
        }
    }
}

/// The statuses worth another attempt: 408 Request Timeout, 429 Too Many Requests, 502
/// Bad Gateway, 503 Service Unavailable and 504 Gateway Timeout. (500 is not: it
/// usually means the request itself breaks the server.)
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Config(c) => Error::Config(c),
            HttpError::InvalidRequest { endpoint, reason } => {
                Error::other(&endpoint, reason.to_string(), false)
            }
            HttpError::Connect { endpoint, source } => Error::Connect { endpoint, source },
            HttpError::Timeout {
                endpoint,
                kind,
                after,
            } => {
                let operation = match kind {
                    TimeoutKind::Connect => Operation::Connect,
                    TimeoutKind::Request | TimeoutKind::Read => Operation::Request,
                    TimeoutKind::Deadline => Operation::RetryDeadline,
                };
                Error::timeout(&endpoint, operation, after)
            }
            HttpError::Tls { endpoint, source } => Error::Tls { endpoint, source },
            HttpError::Closed { endpoint, .. } => Error::Closed { endpoint },
            HttpError::Io { endpoint, source } => Error::Io { endpoint, source },
            HttpError::Protocol { endpoint, source } => Error::Protocol { endpoint, source },
            HttpError::Status {
                endpoint,
                status: status @ (401 | 403),
                ..
            } => Error::Auth { endpoint, status },
            HttpError::Status {
                endpoint,
                status,
                retry_after,
            } => Error::Status {
                endpoint,
                status,
                retry_after,
            },
            // A body that does not decode says nothing about the connection: not a
            // protocol error, which would move a failover group to another route.
            e @ (HttpError::Decode { .. }
            | HttpError::BodyTooLarge { .. }
            | HttpError::Body { .. }) => {
                let endpoint = e.endpoint().cloned().unwrap_or_else(placeholder);
                Error::Other {
                    endpoint,
                    source: shared(e.to_string()),
                    retryable: false,
                }
            }
            HttpError::Rejected(r) => Error::Rejected(r),
            HttpError::NotRetried { error, .. } => Error::from(*error),
        }
    }
}

fn placeholder() -> Endpoint {
    // Unreachable in practice (every such variant names its endpoint); a fixed,
    // valid address keeps the conversion total without a panic.
    Endpoint::host_port("0.0.0.0", 1).unwrap_or_else(|_| unreachable!("a valid address"))
}

impl From<Error> for HttpError {
    /// Core errors reaching the client: the retry policy's deadline, and refusals.
    fn from(e: Error) -> Self {
        match e {
            Error::Timeout {
                endpoint,
                operation,
                after,
                ..
            } => {
                let kind = match operation {
                    Operation::Connect => TimeoutKind::Connect,
                    Operation::RetryDeadline => TimeoutKind::Deadline,
                    _ => TimeoutKind::Request,
                };
                HttpError::Timeout {
                    endpoint,
                    kind,
                    after,
                }
            }
            Error::Rejected(r) => HttpError::Rejected(r),
            Error::Config(c) => HttpError::Config(c),
            Error::Connect { endpoint, source } => HttpError::Connect { endpoint, source },
            Error::Io { endpoint, source } => HttpError::Io { endpoint, source },
            Error::Tls { endpoint, source } => HttpError::Tls { endpoint, source },
            Error::Closed { endpoint } => HttpError::Closed {
                endpoint,
                reused: false,
            },
            Error::Status {
                endpoint,
                status,
                retry_after,
            } => HttpError::Status {
                endpoint,
                status,
                retry_after,
            },
            Error::Auth { endpoint, status } => HttpError::Status {
                endpoint,
                status,
                retry_after: None,
            },
            other => {
                let endpoint = other.endpoint().cloned().unwrap_or_else(placeholder);
                HttpError::Protocol {
                    endpoint,
                    source: shared(other.to_string()),
                }
            }
        }
    }
}

impl connection_retry::Classify for HttpError {
    fn is_retryable(&self) -> bool {
        HttpError::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        HttpError::retry_after(self)
    }

    fn rejection(&self) -> Option<RejectReason> {
        match self.inner() {
            HttpError::Rejected(r) => Some(r.reason),
            _ => None,
        }
    }
}

impl From<Rejected> for HttpError {
    fn from(r: Rejected) -> Self {
        HttpError::Rejected(r)
    }
}

/// The marker our connector layer returns when a connect takes longer than its limit.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub(crate) struct ConnectTimedOut(pub(crate) Duration);

/// Turns a reqwest error into ours. `fresh`: whether this attempt opened a new
/// connection (so a closed socket cannot be a stale pooled one).
pub(crate) fn from_reqwest(endpoint: &Endpoint, err: reqwest::Error, fresh: bool) -> HttpError {
    let err = err.without_url();
    let endpoint = endpoint.clone();
    let mut io_kind = None;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<ConnectTimedOut>() {
            return HttpError::Timeout {
                endpoint,
                kind: TimeoutKind::Connect,
                after: t.0,
            };
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return HttpError::Tls {
                endpoint,
                source: Arc::new(tls.clone()),
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return HttpError::Closed {
                    endpoint,
                    reused: !fresh,
                };
            }
            if h.is_parse() || h.is_parse_status() {
                return HttpError::Protocol {
                    endpoint,
                    source: shared(h.to_string()),
                };
            }
            if h.is_user() && err.is_body() {
                return HttpError::Body {
                    endpoint,
                    source: shared(h.to_string()),
                };
            }
        }
        if let Some(mut io) = e.downcast_ref::<io::Error>() {
            // An io::Error's `source` skips the error it wraps: look inside by hand,
            // through io::Errors wrapping io::Errors (reqwest wraps tokio-rustls's).
            loop {
                if io.kind() != io::ErrorKind::Other || io_kind.is_none() {
                    io_kind = Some(io.kind());
                }
                let Some(inner) = io.get_ref() else { break };
                #[cfg(feature = "tls")]
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return HttpError::Tls {
                        endpoint,
                        source: Arc::new(tls.clone()),
                    };
                }
                match inner.downcast_ref::<io::Error>() {
                    Some(next) => io = next,
                    None => break,
                }
            }
        }
        cause = e.source();
    }
    let kind = io_kind.unwrap_or(io::ErrorKind::Other);
    if err.is_connect() {
        return HttpError::Connect {
            endpoint,
            source: Arc::new(io::Error::new(kind, err)),
        };
    }
    if err.is_builder() {
        return HttpError::InvalidRequest {
            endpoint,
            reason: err.to_string().into(),
        };
    }
    if err.is_timeout() {
        return HttpError::Timeout {
            endpoint,
            kind: TimeoutKind::Request,
            after: Duration::ZERO,
        };
    }
    if matches!(
        kind,
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    ) && io_kind.is_some()
    {
        // Reset or cut before the response: the same situation as a clean close.
        return HttpError::Closed {
            endpoint,
            reused: !fresh,
        };
    }
    HttpError::Io {
        endpoint,
        source: Arc::new(io::Error::new(kind, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        Endpoint::parse("http://127.0.0.1:1/").unwrap()
    }

    #[test]
    fn errors_are_send_sync_static_and_clone() {
        fn bounds<T: Send + Sync + Clone + 'static>() {}
        bounds::<HttpError>();
    }

    #[test]
    fn conversion_keeps_the_kind() {
        let cases: Vec<(HttpError, ErrorKind, bool)> = vec![
            (
                HttpError::Status {
                    endpoint: ep(),
                    status: 401,
                    retry_after: None,
                },
                ErrorKind::Auth,
                false,
            ),
            (
                HttpError::Status {
                    endpoint: ep(),
                    status: 503,
                    retry_after: Some(Duration::from_secs(2)),
                },
                ErrorKind::Status,
                true,
            ),
            (
                HttpError::timeout(&ep(), TimeoutKind::Connect, Duration::from_secs(1)),
                ErrorKind::Timeout,
                true,
            ),
            (
                HttpError::timeout(&ep(), TimeoutKind::Deadline, Duration::from_secs(1)),
                ErrorKind::Timeout,
                false,
            ),
            (
                HttpError::Closed {
                    endpoint: ep(),
                    reused: true,
                },
                ErrorKind::Closed,
                true,
            ),
            (
                HttpError::Decode {
                    endpoint: ep(),
                    source: shared("bad json"),
                },
                ErrorKind::Other,
                false,
            ),
        ];
        for (e, kind, retryable) in cases {
            assert_eq!(e.is_retryable(), retryable, "{e}");
            let core = Error::from(e.clone());
            assert_eq!(core.kind(), kind, "{e}");
            assert_eq!(e.kind(), kind);
            assert_eq!(core.endpoint(), Some(&ep()));
        }
        let core = Error::from(HttpError::Status {
            endpoint: ep(),
            status: 503,
            retry_after: Some(Duration::from_secs(2)),
        });
        assert_eq!(core.retry_after(), Some(Duration::from_secs(2)));
        let wrapped = HttpError::NotRetried {
            reason: NotRetried::NotIdempotent,
            error: Box::new(HttpError::Closed {
                endpoint: ep(),
                reused: false,
            }),
        };
        assert!(wrapped.to_string().contains("not retried"), "{wrapped}");
        assert_eq!(wrapped.kind(), ErrorKind::Closed);
        assert_eq!(wrapped.not_retried(), Some(NotRetried::NotIdempotent));
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 404, 500, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
