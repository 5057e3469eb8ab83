//! [`WsError`]: everything that can go wrong in this crate, and how it maps onto
//! [`connection_core::Error`] (which decides whether the supervisor reconnects).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{
    BoxError, ConfigError, Endpoint, EndpointError, Error, Operation, io_is_retryable,
};
use tokio_tungstenite::tungstenite;

/// What went wrong, and where.
///
/// Converts into [`connection_core::Error`]; [`is_retryable`](Self::is_retryable) gives
/// the same answer as the converted error.
///
/// | variant | core error | retried |
/// |---|---|---|
/// | `Config`, `InvalidUrl` | `Config` / `InvalidEndpoint` | no |
/// | `Connect` (refused, unreachable) | `Connect` | yes |
/// | `Tls` (certificate does not verify, ...) | `Tls` | no |
/// | `Rejected` 401 / 403 | `Auth` | no |
/// | `Rejected` other status | `Status` | 408, 429, 5xx |
/// | `Handshake`, `Protocol` | `Protocol` | no |
/// | `Io` (reset, closed without close frame) | `Io` | yes |
/// | `Timeout` | `Timeout` | yes |
/// | `MessageTooLarge`, `Hook`, `QueueFull` | `Other` | yes |
/// | `ControlFrame` | `Other` | no |
/// | `Closed` | `Closed` | yes |
/// | `Shutdown` | `Shutdown` | no |
///
/// ```
/// use connection_core::Endpoint;
/// use connection_transport_ws::WsError;
///
/// let endpoint: Endpoint = "ws://127.0.0.1:9000/feed".parse()?;
/// let err = WsError::Rejected { endpoint, status: 401, retry_after: None };
/// assert!(!err.is_retryable());
/// let core: connection_core::Error = err.into();
/// assert!(matches!(core, connection_core::Error::Auth { status: 401, .. }));
/// # Ok::<(), connection_core::EndpointError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URL did not parse.
    #[error(transparent)]
    InvalidUrl(#[from] EndpointError),
    /// Opening the TCP connection failed.
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// Where we tried to connect.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed, e.g. the server's certificate did not verify against the
    /// configured roots. Not retried: the same certificate fails again.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The rustls error.
        #[source]
        source: BoxError,
    },
    /// The server answered the WebSocket upgrade with an HTTP status instead of 101.
    #[error("{endpoint} rejected the WebSocket handshake with HTTP status {status}")]
    Rejected {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After` (seconds form), if any.
        retry_after: Option<Duration>,
    },
    /// The WebSocket handshake failed for another reason (bad `Sec-WebSocket-Accept`,
    /// a subprotocol we did not offer, a malformed response).
    #[error("WebSocket handshake with {endpoint} failed: {source}")]
    Handshake {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// What tungstenite reported.
        #[source]
        source: BoxError,
    },
    /// Reading or writing an established connection failed, or the server dropped the
    /// TCP connection without a close frame (close code 1006).
    #[error("i/o error on {endpoint}: {source}")]
    Io {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server broke the WebSocket protocol (bad frame, bad UTF-8 in a text message).
    #[error("WebSocket protocol error on {endpoint}: {source}")]
    Protocol {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// What tungstenite reported.
        #[source]
        source: BoxError,
    },
    /// The server sent a message or frame larger than the configured maximum.
    #[error("message of {size} bytes from {endpoint} exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The size announced or reached.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An operation ran out of time (connect, close, ...).
    #[error("{operation} on {endpoint} timed out after {after:?}")]
    Timeout {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// What timed out.
        operation: Operation,
        /// The limit.
        after: Duration,
    },
    /// The `on_connect` hook returned an error; the connect attempt fails and is retried
    /// after the backoff.
    #[error("on_connect hook for {endpoint} failed: {source}")]
    Hook {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// The outbound queue is full and the client is configured to fail at once
    /// ([`WhenFull::Error`](crate::WhenFull::Error)).
    #[error("outbound queue for {endpoint} is full ({capacity} messages)")]
    QueueFull {
        /// The connection's endpoint.
        endpoint: Endpoint,
        /// The queue's capacity.
        capacity: usize,
    },
    /// Only text and binary messages can be sent; pings, pongs and the close handshake
    /// are run by the connection itself.
    #[error(
        "only text and binary messages can be sent to {endpoint}; control frames are managed by the connection"
    )]
    ControlFrame {
        /// The connection's endpoint.
        endpoint: Endpoint,
    },
    /// The connection is gone (closed by either side or broken).
    #[error("the WebSocket connection to {endpoint} is closed")]
    Closed {
        /// The connection's endpoint.
        endpoint: Endpoint,
    },
    /// The client was closed (or dropped): it accepts no more messages.
    #[error("the WebSocket client for {endpoint} is closed")]
    Shutdown {
        /// The connection's endpoint.
        endpoint: Endpoint,
    },
}

impl WsError {
    /// Whether trying again may succeed (same answer as the converted core error).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Io { .. }
            | Self::Timeout { .. }
            | Self::MessageTooLarge { .. }
            | Self::Hook { .. }
            | Self::QueueFull { .. }
            | Self::Closed { .. } => match self {
                Self::Connect { source, .. } | Self::Io { source, .. } => io_is_retryable(source),
                _ => true,
            },
            Self::Rejected { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::Config(_)
            | Self::InvalidUrl(_)
            | Self::Tls { .. }
            | Self::Handshake { .. }
            | Self::Protocol { .. }
            | Self::ControlFrame { .. }
            | Self::Shutdown { .. } => false,
        }
    }

    /// The endpoint the error concerns (configuration errors have none).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Config(_) | Self::InvalidUrl(_) => None,
            Self::Connect { endpoint, .. }
            | Self::Tls { endpoint, .. }
            | Self::Rejected { endpoint, .. }
            | Self::Handshake { endpoint, .. }
            | Self::Io { endpoint, .. }
            | Self::Protocol { endpoint, .. }
            | Self::MessageTooLarge { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Hook { endpoint, .. }
            | Self::QueueFull { endpoint, .. }
            | Self::ControlFrame { endpoint }
            | Self::Closed { endpoint }
            | Self::Shutdown { endpoint } => Some(endpoint),
        }
    }

    /// Classifies a failure of the WebSocket upgrade (after TCP and TLS are up).
    pub(crate) fn from_handshake(endpoint: &Endpoint, e: tungstenite::Error) -> Self {
        let endpoint = endpoint.clone();
        match e {
            tungstenite::Error::Http(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Self::Rejected {
                    endpoint,
                    status: response.status().as_u16(),
                    retry_after,
                }
            }
            tungstenite::Error::Io(source) => Self::from_io(endpoint, source),
            other => Self::Handshake {
                endpoint,
                source: Box::new(other),
            },
        }
    }

    /// Classifies a failure on an established connection.
    pub(crate) fn from_stream(endpoint: &Endpoint, e: tungstenite::Error) -> Self {
        let endpoint = endpoint.clone();
        match e {
            tungstenite::Error::Io(source) => Self::from_io(endpoint, source),
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size,
                max_size,
            }) => Self::MessageTooLarge {
                endpoint,
                size,
                max: max_size,
            },
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::SendAfterClosing) => {
                Self::Closed { endpoint }
            }
            // The TCP connection ended without a close frame: abnormal closure (1006), a
            // network event rather than a protocol violation, so worth reconnecting.
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => Self::Io {
                endpoint,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection dropped without a close frame (1006)",
                ),
            },
            other => Self::Protocol {
                endpoint,
                source: Box::new(other),
            },
        }
    }

    /// An I/O error, unless it carries a TLS failure (tokio-rustls reports those as
    /// `InvalidData` I/O errors wrapping the rustls error).
    pub(crate) fn from_io(endpoint: Endpoint, source: io::Error) -> Self {
        #[cfg(feature = "tls")]
        if source
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            let inner = source
                .into_inner()
                .unwrap_or_else(|| Box::new(io::Error::other("TLS failure")));
            return Self::Tls {
                endpoint,
                source: inner,
            };
        }
        Self::Io { endpoint, source }
    }
}

impl From<WsError> for Error {
    fn from(e: WsError) -> Self {
        let retryable = e.is_retryable();
        match e {
            WsError::Config(c) => Error::Config(c),
            WsError::InvalidUrl(u) => Error::InvalidEndpoint(u),
            WsError::Connect { endpoint, source } => Error::Connect {
                endpoint,
                source: Arc::new(source),
            },
            WsError::Tls { endpoint, source } => Error::Tls {
                endpoint,
                source: Arc::from(source),
            },
            WsError::Rejected {
                endpoint,
                status: status @ (401 | 403),
                ..
            } => Error::Auth { endpoint, status },
            WsError::Rejected {
                endpoint,
                status,
                retry_after,
            } => Error::Status {
                endpoint,
                status,
                retry_after,
            },
            WsError::Handshake { endpoint, source } | WsError::Protocol { endpoint, source } => {
                Error::Protocol {
                    endpoint,
                    source: Arc::from(source),
                }
            }
            WsError::Io { endpoint, source } => Error::Io {
                endpoint,
                source: Arc::new(source),
            },
            WsError::Timeout {
                endpoint,
                operation,
                after,
            } => Error::timeout(&endpoint, operation, after),
            WsError::Closed { endpoint } => Error::Closed { endpoint },
            WsError::Shutdown { endpoint } => Error::Shutdown { endpoint },
            other @ (WsError::MessageTooLarge { .. }
            | WsError::Hook { .. }
            | WsError::ControlFrame { .. }
            | WsError::QueueFull { .. }) => {
                let endpoint = match &other {
                    WsError::MessageTooLarge { endpoint, .. }
                    | WsError::Hook { endpoint, .. }
                    | WsError::ControlFrame { endpoint }
                    | WsError::QueueFull { endpoint, .. } => endpoint.clone(),
                    _ => unreachable!("matched above"),
                };
                Error::Other {
                    endpoint,
                    source: Arc::new(other),
                    retryable,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoint {
        "ws://127.0.0.1:1/x".parse().unwrap()
    }

    #[test]
    fn send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<WsError>();
    }

    #[test]
    fn classification_matches_core() {
        let cases = vec![
            WsError::Rejected {
                endpoint: ep(),
                status: 401,
                retry_after: None,
            },
            WsError::Rejected {
                endpoint: ep(),
                status: 403,
                retry_after: None,
            },
            WsError::Rejected {
                endpoint: ep(),
                status: 404,
                retry_after: None,
            },
            WsError::Rejected {
                endpoint: ep(),
                status: 503,
                retry_after: None,
            },
            WsError::Connect {
                endpoint: ep(),
                source: io::ErrorKind::ConnectionRefused.into(),
            },
            WsError::Io {
                endpoint: ep(),
                source: io::ErrorKind::PermissionDenied.into(),
            },
            WsError::Tls {
                endpoint: ep(),
                source: "bad cert".into(),
            },
            WsError::QueueFull {
                endpoint: ep(),
                capacity: 3,
            },
            WsError::Closed { endpoint: ep() },
            WsError::Shutdown { endpoint: ep() },
            WsError::MessageTooLarge {
                endpoint: ep(),
                size: 10,
                max: 5,
            },
        ];
        for e in cases {
            let text = e.to_string();
            let retry = e.is_retryable();
            let core: Error = e.into();
            assert_eq!(core.is_retryable(), retry, "{text}");
        }
        let auth: Error = WsError::Rejected {
            endpoint: ep(),
            status: 403,
            retry_after: None,
        }
        .into();
        assert!(matches!(auth, Error::Auth { status: 403, .. }));
        let status: Error = WsError::Rejected {
            endpoint: ep(),
            status: 503,
            retry_after: None,
        }
        .into();
        assert!(matches!(status, Error::Status { status: 503, .. }));
    }
}
