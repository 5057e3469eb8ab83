//! A concurrency limit (bulkhead): at most `max_concurrent` operations at once, with a
//! bounded queue of waiters or none.
//!
//! A bulkhead keeps one slow dependency from taking every task and socket of the
//! program: past the limit, callers wait in a queue that is itself bounded (an unbounded
//! queue only moves the pile-up into memory), then are refused with a [`Rejected`] that
//! says the bulkhead is full.
//!
//! ```
//! use connection_retry::bulkhead::Bulkhead;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bulkhead = Bulkhead::builder(1).max_queue(0).build().unwrap();
//! let held = bulkhead.try_acquire().unwrap();
//! assert!(bulkhead.try_acquire().is_err());
//! drop(held);
//! let answer: Result<u32, connection_core::Error> = bulkhead.run(|| async { Ok(42) }).await;
//! assert_eq!(answer.unwrap(), 42);
//! # }
//! ```

mod transport;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{ConfigError, RejectReason, Rejected};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use transport::{ConcurrencyLimit, Limited};

/// Builds a [`Bulkhead`].
#[derive(Clone, Debug)]
#[must_use]
pub struct BulkheadBuilder {
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Option<Duration>,
}

impl BulkheadBuilder {
    /// How many callers may wait for a slot (default 0: refuse at once when full).
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// Longest a queued caller waits before being refused (default: no limit).
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::new("max_concurrent", "must be at least 1"));
        }
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "max_concurrent",
                format!("must be at most {}", Semaphore::MAX_PERMITS),
            ));
        }
        if self.max_wait.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "max_wait",
                "must be greater than zero (use max_queue(0) to never wait)",
            ));
        }
        if let Some(d) = self.max_wait {
            connection_core::require_at_most_max("max_wait", d)?;
        }
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(self.max_concurrent)),
                queued: AtomicUsize::new(0),
                config: self,
            }),
        })
    }
}

/// A concurrency limit shared by its clones.
#[derive(Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    config: BulkheadBuilder,
}

/// A slot in a [`Bulkhead`], given back when dropped.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

impl Bulkhead {
    /// A builder allowing `max_concurrent` operations at once.
    pub fn builder(max_concurrent: usize) -> BulkheadBuilder {
        BulkheadBuilder {
            max_concurrent,
            max_queue: 0,
            max_wait: None,
        }
    }

    fn full(&self) -> Rejected {
        crate::refusal::refuse(RejectReason::BulkheadFull, None)
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, Rejected> {
        self.inner
            .slots
            .clone()
            .try_acquire_owned()
            .map(|p| BulkheadPermit { _permit: p })
            .map_err(|_| self.full())
    }

    /// Takes a slot, queueing for one if the queue has room. Cancel-safe: a dropped
    /// waiter leaves the queue and takes no slot.
    pub async fn acquire(&self) -> Result<BulkheadPermit, Rejected> {
        if let Ok(permit) = self.try_acquire() {
            return Ok(permit);
        }
        let inner = &self.inner;
        // Reserve a queue place first, so the queue bound holds under races.
        let reserved = inner
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < inner.config.max_queue).then_some(q + 1)
            });
        if reserved.is_err() {
            return Err(self.full());
        }
        let _leave = QueuePlace(&inner.queued);
        let wait = inner.slots.clone().acquire_owned();
        let permit = match inner.config.max_wait {
            Some(limit) => tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| self.full())?,
            None => wait.await,
        };
        // The semaphore is never closed, so acquiring cannot fail; refuse rather than panic
        // should that ever change.
        permit
            .map(|p| BulkheadPermit { _permit: p })
            .map_err(|_| self.full())
    }

    /// Runs `operation` in a slot.
    pub async fn run<F, Fut, T, E>(&self, operation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        let _permit = self.acquire().await?;
        operation().await
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// Callers waiting now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn max_concurrent(&self) -> usize {
        self.inner.config.max_concurrent
    }
}

/// Gives the queue place back however the wait ends (success, timeout, cancellation).
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("max_concurrent", &self.inner.config.max_concurrent)
            .field("available", &self.available())
            .field("queued", &self.queued())
            .field("max_queue", &self.inner.config.max_queue)
            .finish()
    }
}

/// The serde form of a bulkhead's settings.
///
/// ```
/// use connection_retry::bulkhead::BulkheadConfig;
/// let cfg: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 8, "max_queue": 32}"#)?;
/// assert_eq!(cfg.build()?.max_concurrent(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Operations at once (default 100).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Callers that may wait.
    #[serde(default)]
    pub max_queue: usize,
    /// Longest wait in milliseconds.
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
}

fn default_max_concurrent() -> usize {
    100
}

impl Default for BulkheadConfig {
    /// 100 operations at once, no queue.
    fn default() -> Self {
        Self {
            max_concurrent: default_max_concurrent(),
            max_queue: 0,
            max_wait_ms: None,
        }
    }
}

impl BulkheadConfig {
    /// Validates and builds.
    pub fn build(&self) -> Result<Bulkhead, ConfigError> {
        let mut b = Bulkhead::builder(self.max_concurrent).max_queue(self.max_queue);
        if let Some(ms) = self.max_wait_ms {
            b = b.max_wait(Duration::from_millis(ms));
        }
        b.build()
    }
}
