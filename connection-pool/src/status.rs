//! What the pool holds right now ([`Status`]) and what it did ([`PoolMetrics`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use connection_core::LatencySnapshot;
use serde::Serialize;

/// The pool's occupancy at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// Connections open or being opened (idle + in use).
    pub size: usize,
    /// Connections waiting in the pool.
    pub idle: usize,
    /// Connections held by callers, being created, validated or probed.
    pub in_use: usize,
    /// Tasks waiting in `get`.
    pub waiting: usize,
    /// The cap on `size`.
    pub max_size: usize,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "size {}/{}, idle {}, in use {}, waiting {}",
            self.size, self.max_size, self.idle, self.in_use, self.waiting
        )
    }
}

/// Connections closed by the pool, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Reported broken (`mark_broken`, or a state other than connected), or dropped
    /// mid-validation by a cancelled `get` ([`CancelledValidation::Discard`](crate::CancelledValidation::Discard)).
    pub broken: u64,
    /// Idle longer than `idle_timeout`, or closed to make room (a keyed pool's other
    /// key, or a [`resize`](crate::Pool::resize) below the current size).
    pub idle: u64,
    /// Older than their (jittered) `max_lifetime`.
    pub lifetime: u64,
    /// A checkout validation or keepalive probe failed.
    pub failed_validation: u64,
    /// The connection already knew its peer had gone (its
    /// [`closed`](connection_core::Connection::closed) signal was ready, checked without
    /// I/O at checkout and while idle).
    pub peer_closed: u64,
}

/// A serializable snapshot of the pool: status, counters and wait times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// Occupancy.
    pub status: Status,
    /// Calls to `get`.
    pub gets: u64,
    /// Calls to `get` that had to wait.
    pub waited: u64,
    /// Calls to `get` that ran out of `wait_timeout`.
    pub timed_out: u64,
    /// Connections opened.
    pub created: u64,
    /// Connect attempts that failed.
    pub create_failed: u64,
    /// Connections closed, by reason.
    pub closed: ClosedCounts,
    /// How long waiting calls waited.
    pub wait_time: LatencySnapshot,
    /// Rounds of the background maintainer that panicked (in a transport's `connect`,
    /// a connection's `probe`...). The maintainer goes on after each, and the slots it
    /// held are given back; the panic is also the last connect error, published as an
    /// Error event on the pool's bus.
    pub maintainer_restarts: u64,
}

/// Why a connection left the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Broken,
    Idle,
    Lifetime,
    FailedValidation,
    PeerClosed,
}

/// Counters off the hot path (the hot `gets` counter lives under the pool lock).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) waited: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) create_failed: AtomicU64,
    broken: AtomicU64,
    idle: AtomicU64,
    lifetime: AtomicU64,
    failed_validation: AtomicU64,
    peer_closed: AtomicU64,
    pub(crate) maintainer_restarts: AtomicU64,
}

impl Counters {
    pub(crate) fn closed(&self, reason: CloseReason) {
        let c = match reason {
            CloseReason::Broken => &self.broken,
            CloseReason::Idle => &self.idle,
            CloseReason::Lifetime => &self.lifetime,
            CloseReason::FailedValidation => &self.failed_validation,
            CloseReason::PeerClosed => &self.peer_closed,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_counts(&self) -> ClosedCounts {
        ClosedCounts {
            broken: self.broken.load(Relaxed),
            idle: self.idle.load(Relaxed),
            lifetime: self.lifetime.load(Relaxed),
            failed_validation: self.failed_validation.load(Relaxed),
            peer_closed: self.peer_closed.load(Relaxed),
        }
    }
}
