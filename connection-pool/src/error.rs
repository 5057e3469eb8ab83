//! [`PoolError`]: why `get` gave no connection.

use std::sync::Arc;

use std::time::Duration;

use connection_core::{Endpoint, Error, Operation};

use crate::status::Status;

/// Why [`Pool::get`](crate::Pool::get) returned no connection.
///
/// Converts into [`connection_core::Error`] so pool users can keep one error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection became available within `wait_timeout`.
    #[error("no connection to {endpoint} within the wait timeout ({status})")]
    Timeout {
        /// The pool's endpoint.
        endpoint: Endpoint,
        /// The pool as it was when the wait ended.
        status: Status,
        /// The last connect failure the pool saw, if any: often the real reason.
        last_connect_error: Option<Arc<Error>>,
        /// How long the caller waited (the pool's `wait_timeout`).
        wait: Duration,
    },
    /// Opening a new connection for this caller failed.
    #[error("pool could not connect: {source}")]
    Connect {
        /// The transport's error.
        #[source]
        source: Error,
    },
    /// The pool was closed.
    #[error("pool for {endpoint} is closed")]
    Closed {
        /// The pool's endpoint.
        endpoint: Endpoint,
    },
}

impl PoolError {
    /// Whether asking again may succeed (timeouts and retryable connect failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Connect { source } => source.is_retryable(),
            Self::Closed { .. } => false,
        }
    }

    /// `true` for [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Connect { source } => source,
            PoolError::Closed { endpoint } => Error::Shutdown { endpoint },
            // A wait that ran out is a timeout, and the connect failure behind it (often
            // the real reason) stays reachable with its own kind, as the source.
            PoolError::Timeout {
                endpoint,
                last_connect_error,
                wait,
                ..
            } => Error::Timeout {
                endpoint,
                operation: Operation::PoolWait,
                after: wait,
                cause: last_connect_error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<PoolError>();
    }
}
