//! [`TcpError`]: what can go wrong in this crate, and how it maps onto
//! [`connection_core::Error`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConfigError, Endpoint, Error, Operation, SharedError};

use crate::codec::FrameTooLarge;

/// What went wrong, and where. Cheap to clone.
///
/// Converts into [`connection_core::Error`] without loss of kind;
/// [`is_retryable`](Self::is_retryable) gives the converted error's answer.
///
/// | variant | core error | retried |
/// |---|---|---|
/// | `Config` | `Config` | no |
/// | `Resolve` (no address for the host) | `Connect` | yes |
/// | `Connect` (refused, unreachable, every address failed) | `Connect` | yes |
/// | `Tls` (certificate does not verify, handshake refused) | `Tls` | no |
/// | `Timeout` | `Timeout` | yes |
/// | `FrameTooLarge` | `Protocol` | no (the connection is closed) |
/// | `Codec` (a frame the codec refuses) | `Protocol` | no (the connection is closed) |
/// | `Io` | `Io` | yes |
/// | `Closed` | `Closed` | yes |
///
/// ```
/// use connection_core::Endpoint;
/// use connection_transport_tcp::TcpError;
///
/// let endpoint = Endpoint::host_port("127.0.0.1", 7000)?;
/// let err = TcpError::FrameTooLarge { endpoint, limit: 1024, claimed: Some(1 << 32) };
/// assert!(!err.is_retryable());
/// assert_eq!(
///     err.to_string(),
///     "frame of 4294967296 bytes on 127.0.0.1:7000 is over the limit of 1024 bytes"
/// );
/// # Ok::<(), connection_core::EndpointError>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TcpError {
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The host name resolved to no address, or resolving failed.
    #[error("resolving {endpoint} failed: {source}")]
    Resolve {
        /// Where.
        endpoint: Endpoint,
        /// The resolver's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// No TCP connection could be opened (to any resolved address; the error is the
    /// last address's).
    #[error("connecting to {endpoint} failed: {source}")]
    Connect {
        /// Where.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The TLS handshake failed. Not retried: a certificate that does not verify will
    /// not verify next time either.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        /// Where.
        endpoint: Endpoint,
        /// rustls' error.
        #[source]
        source: SharedError,
    },
    /// An operation did not finish in time.
    #[error("{operation} on {endpoint} timed out after {after:?}")]
    Timeout {
        /// Where.
        endpoint: Endpoint,
        /// What timed out.
        operation: Operation,
        /// The limit.
        after: Duration,
    },
    /// A frame over the framing's limit, sent by the peer (the connection is closed) or
    /// given to send (refused before a byte was written).
    #[error("{}", too_large(endpoint, *limit, *claimed))]
    FrameTooLarge {
        /// Where.
        endpoint: Endpoint,
        /// The limit in bytes.
        limit: usize,
        /// The size the frame has or claims, when known.
        claimed: Option<u64>,
    },
    /// The codec refused a frame (not UTF-8 for lines, your codec's own error...).
    #[error("bad frame on {endpoint}: {source}")]
    Codec {
        /// Where.
        endpoint: Endpoint,
        /// The codec's error.
        #[source]
        source: SharedError,
    },
    /// Reading or writing the socket failed.
    #[error("i/o error on {endpoint}: {source}")]
    Io {
        /// Where.
        endpoint: Endpoint,
        /// The socket error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection is closed (by the peer, by us, or lost).
    #[error("the connection to {endpoint} is closed")]
    Closed {
        /// Where.
        endpoint: Endpoint,
    },
}

fn too_large(endpoint: &Endpoint, limit: usize, claimed: Option<u64>) -> String {
    match claimed {
        Some(n) => format!("frame of {n} bytes on {endpoint} is over the limit of {limit} bytes"),
        None => format!("frame on {endpoint} is over the limit of {limit} bytes"),
    }
}

impl TcpError {
    /// Whether a new attempt may succeed: the converted core error's answer.
    pub fn is_retryable(&self) -> bool {
        Error::from(self.clone()).is_retryable()
    }

    /// The endpoint, when the error concerns one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Self::Config(_) => None,
            Self::Resolve { endpoint, .. }
            | Self::Connect { endpoint, .. }
            | Self::Tls { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::FrameTooLarge { endpoint, .. }
            | Self::Codec { endpoint, .. }
            | Self::Io { endpoint, .. }
            | Self::Closed { endpoint } => Some(endpoint),
        }
    }

    /// A codec's error on `endpoint`: a frame over the limit becomes
    /// [`FrameTooLarge`](Self::FrameTooLarge), a socket error [`Io`](Self::Io), anything
    /// else [`Codec`](Self::Codec).
    pub fn from_codec<E>(endpoint: &Endpoint, error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if let Some(FrameTooLarge { limit, claimed }) = crate::codec::is_frame_too_large(&error) {
            return Self::FrameTooLarge {
                endpoint: endpoint.clone(),
                limit,
                claimed,
            };
        }
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
        match boxed.downcast::<io::Error>() {
            // A decoder's InvalidData is about the bytes, not the socket.
            Ok(io) if io.kind() != io::ErrorKind::InvalidData => Self::Io {
                endpoint: endpoint.clone(),
                source: Arc::new(*io),
            },
            Ok(io) => Self::Codec {
                endpoint: endpoint.clone(),
                source: connection_core::shared(*io),
            },
            Err(other) => Self::Codec {
                endpoint: endpoint.clone(),
                source: connection_core::shared(other),
            },
        }
    }
}

impl From<TcpError> for Error {
    fn from(e: TcpError) -> Self {
        match e {
            TcpError::Config(c) => Error::Config(c),
            TcpError::Resolve { endpoint, source } | TcpError::Connect { endpoint, source } => {
                Error::Connect { endpoint, source }
            }
            TcpError::Tls { endpoint, source } => Error::Tls { endpoint, source },
            TcpError::Timeout {
                endpoint,
                operation,
                after,
            } => Error::timeout(&endpoint, operation, after),
            TcpError::FrameTooLarge {
                endpoint,
                limit,
                claimed,
            } => Error::protocol(&endpoint, too_large(&endpoint, limit, claimed)),
            TcpError::Codec { endpoint, source } => Error::Protocol { endpoint, source },
            TcpError::Io { endpoint, source } => Error::Io { endpoint, source },
            TcpError::Closed { endpoint } => Error::Closed { endpoint },
        }
    }
}
