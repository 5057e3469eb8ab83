//! The pool's own events, published as extension events
//! ([`connection_core::ExtensionEvent`]) on the pool's bus: select them with
//! `EventFilter::extensions([ConnectionLeak::NAME])`, read them with
//! `event.kind.downcast_ref::<ConnectionLeak>()`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

connection_core::extension_event!(ConnectionLeak, Warn);
