//! The pool's own events, published as extension events
//! ([`connection_core::ExtensionEvent`]) on the pool's bus: select them with
//! `EventFilter::extensions([ConnectionLeak::NAME])`, read them with
//! `event.kind.downcast_ref::<ConnectionLeak>()`.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{EventKind, ExtensionEvent, Severity};

/// A pooled connection has been checked out longer than the pool's leak threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLeak {
    /// How long it had been out when noticed.
    pub held: Duration,
    /// Where it was taken, as `file:line:column`.
    pub taken_at: Arc<str>,
}

impl ConnectionLeak {
    /// The name filters select it by.
    pub const NAME: &'static str = "connection_leak";
}

impl fmt::Display for ConnectionLeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection held {:?}, taken at {}",
            self.held, self.taken_at
        )
    }
}

impl ExtensionEvent for ConnectionLeak {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn severity(&self) -> Severity {
        Severity::Warn
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl From<ConnectionLeak> for EventKind {
    fn from(event: ConnectionLeak) -> Self {
        EventKind::extension(event)
    }
}
