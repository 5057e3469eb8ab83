//! Connection identifiers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one connection for its whole life in this process.
///
/// Ids are unique per process and never reused, so an id seen in an event or a metric
/// always names the same connection. A [`Supervisor`](crate::Supervisor) keeps one id for
/// the logical connection across reconnects; a transport gives every physical
/// connection ([`Connection::id`](crate::Connection::id)) an id of its own.
///
/// ```
/// use connection_core::ConnectionId;
/// let a = ConnectionId::next();
/// let b = ConnectionId::next();
/// assert_ne!(a, b);
/// assert_eq!(a.to_string(), format!("conn-{}", a.as_u64()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// Allocates a fresh id.
    pub fn next() -> Self {
        // Relaxed is enough: only uniqueness matters, not ordering with other memory.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The numeric value, for logs and labels.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
