//! Counting open connections, shared by the servers and the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Something that counts its open connections.
pub(crate) trait OpenCount: Send + Sync + 'static {
    fn open(&self) -> &AtomicUsize;
}

/// Counts one open connection for as long as it lives. A guard rather than paired
/// increments and decrements so the count stays right when a connection task is aborted.
pub(crate) struct OpenGuard<C: OpenCount>(Arc<C>);

impl<C: OpenCount> OpenGuard<C> {
    pub(crate) fn new(counters: &Arc<C>) -> Self {
        counters.open().fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters))
    }
}

impl<C: OpenCount> Drop for OpenGuard<C> {
    fn drop(&mut self) {
        self.0.open().fetch_sub(1, Ordering::Relaxed);
    }
}
