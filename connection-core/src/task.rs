//! Background tasks that end before their time.
//!
//! A supervisor, a health monitor or a pool maintainer runs user code (a transport's
//! `connect`, a connection's `probe`, a health check). When that code panics, the task
//! it runs in must not vanish silently: the supervisor turns
//! [`Failed`](crate::ConnectionState::Failed) with a [`TaskEnded`] error as the cause,
//! and the monitor and the maintainer report it and start over. [`TaskEnded`] is that
//! error; [`catch_panic`] is how those tasks run the code they do not trust.
//!
//! ```
//! use connection_core::task::TaskEnded;
//!
//! let payload: Box<dyn std::any::Any + Send> = Box::new("boom");
//! let ended = TaskEnded::panicked("supervisor", payload.as_ref());
//! assert_eq!(ended.to_string(), "supervisor task ended: panicked: boom");
//! assert_eq!(ended.panic_message(), Some("boom"));
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;

use crate::error::Error;

/// A background task ended unexpectedly: what task, and the panic message if it
/// panicked. Found as the source of an [`Error::Other`] (not
/// retryable) in the state's cause, the error events and `last_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEnded {
    task: &'static str,
    panic: Option<Arc<str>>,
}

impl TaskEnded {
    /// The task `task` (`"supervisor"`, `"health monitor"`, ...) ended without a panic.
    pub fn new(task: &'static str) -> Self {
        Self { task, panic: None }
    }

    /// The task `task` panicked with `payload` (what `catch_unwind` or a `JoinError`
    /// gives).
    pub fn panicked(task: &'static str, payload: &(dyn Any + Send)) -> Self {
        Self {
            task,
            panic: Some(panic_message(payload).into()),
        }
    }

    /// The `TaskEnded` behind `error`: its source, or that of the cause of an
    /// [`Error::Unavailable`] or a timeout.
    ///
    /// ```
    /// use connection_core::{Endpoint, Error, task::TaskEnded};
    ///
    /// let ep = Endpoint::host_port("127.0.0.1", 9)?;
    /// let error = Error::other(&ep, TaskEnded::new("supervisor"), false);
    /// assert_eq!(TaskEnded::find(&error).map(TaskEnded::task), Some("supervisor"));
    /// # Ok::<(), connection_core::EndpointError>(())
    /// ```
    pub fn find(error: &Error) -> Option<&TaskEnded> {
        match error {
            Error::Other { source, .. } => source.downcast_ref::<TaskEnded>(),
            Error::Unavailable {
                cause: Some(cause), ..
            }
            | Error::Timeout {
                cause: Some(cause), ..
            } => Self::find(cause),
            _ => None,
        }
    }

    /// Which task ended.
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// The panic message, when it panicked (`"<non-string panic payload>"` when the
    /// payload was neither a `&str` nor a `String`).
    pub fn panic_message(&self) -> Option<&str> {
        self.panic.as_deref()
    }
}

impl fmt::Display for TaskEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.panic {
            Some(message) => write!(f, "{} task ended: panicked: {message}", self.task),
            None => write!(f, "{} task ended", self.task),
        }
    }
}

impl std::error::Error for TaskEnded {}

/// The message of a panic payload: the `&str` or `String` given to `panic!`.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Runs `future`, turning a panic inside it into `Err(payload)` instead of unwinding
/// through the caller's task.
///
/// The future is treated as unwind safe: callers use it for code whose state they drop
/// or rebuild after a panic, never for state they keep using half-updated.
pub async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    AssertUnwindSafe(future).catch_unwind().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catches_a_panicking_future() {
        let caught = catch_panic(async { panic!("bad {}", 42) }).await;
        let payload = caught.err().unwrap();
        let ended = TaskEnded::panicked("test", payload.as_ref());
        assert_eq!(ended.to_string(), "test task ended: panicked: bad 42");
        assert_eq!(catch_panic(async { 7 }).await.ok(), Some(7));
        assert_eq!(TaskEnded::new("x").to_string(), "x task ended");
    }
}
