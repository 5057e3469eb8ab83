//! Call counters sharded per thread, and the snapshot read from them.
//!
//! Every call bumps a counter, so one shared counter would be a cache line that every
//! core writes: under load it bounces between cores on every call. And even unshared,
//! an atomic add (`lock xadd` on x86) is a full barrier that waits for the store
//! buffer to drain, which costs more than the rest of the closed path together.
//!
//! So each live thread owns a *slot*: a small number handed out on first use and given
//! back when the thread exits (slots are reused, lowest first). A breaker has one shard
//! per slot below its shard count, each on cache lines of its own. The owner of slot
//! `i` is the only thread that writes shard `i`'s `owned` counters, so it bumps them
//! with a plain load and store, exact without a locked instruction. Threads with a slot
//! past the shard count (more live threads than shards) use the `shared` counters of
//! shard `slot % shards`, with atomic adds. Reading sums both halves of every shard:
//! exact, though not one instant while calls run.
//!
//! A slot moves to a new thread only through the pool's mutex, after its previous owner
//! has exited: the mutex orders the old owner's last stores before the new owner's
//! first load.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::CircuitState;

/// Keeps a value on cache lines of its own (128 bytes: two 64-byte lines, because
/// adjacent-line prefetching makes neighbours contend too on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct CachePadded<T>(pub(super) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(super) enum Count {
    Successes = 0,
    Failures = 1,
    Slow = 2,
    Rejections = 3,
    Ignored = 4,
}

const COUNTS: usize = 5;

/// One slot's counters: written by the slot's owner (`owned`) and by threads past the
/// shard count that map here (`shared`).
#[derive(Debug, Default)]
struct Shard {
    owned: [AtomicU64; COUNTS],
    shared: [AtomicU64; COUNTS],
}

/// The shards of one breaker.
#[derive(Debug)]
pub(super) struct Counters {
    shards: Box<[CachePadded<Shard>]>,
}

/// Slots free for reuse, and the next never-used one.
struct SlotPool {
    free: BTreeSet<usize>,
    next: usize,
}

static POOL: Mutex<SlotPool> = Mutex::new(SlotPool {
    free: BTreeSet::new(),
    next: 0,
});

fn claim_slot() -> usize {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    match pool.free.pop_first() {
        Some(slot) => slot,
        None => {
            pool.next += 1;
            pool.next - 1
        }
    }
}

/// A thread's slot, given back when the thread exits.
struct ThreadSlot(Cell<usize>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        let slot = self.0.get();
        if slot != usize::MAX {
            let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
            pool.free.insert(slot);
        }
    }
}

thread_local! {
    static SLOT: ThreadSlot = const { ThreadSlot(Cell::new(usize::MAX)) };
}

/// The calling thread's slot; `usize::MAX` during thread teardown, which sends the
/// caller to the shared counters.
#[inline]
fn thread_slot() -> usize {
    SLOT.try_with(|cell| {
        let slot = cell.0.get();
        if slot != usize::MAX {
            slot
        } else {
            let slot = claim_slot();
            cell.0.set(slot);
            slot
        }
    })
    .unwrap_or(usize::MAX)
}

/// Twice the cores, as a power of two, between 2 and 64: enough that threads rarely go
/// past it, few enough that a breaker per endpoint stays small.
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cores * 2).next_power_of_two().clamp(2, 64)
    })
}

impl Counters {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..shard_count()).map(|_| CachePadded::default()).collect(),
        }
    }

    /// Adds one to `count`.
    #[inline]
    pub(super) fn bump(&self, count: Count) {
        let slot = thread_slot();
        if let Some(shard) = self.shards.get(slot) {
            let c = &shard.owned[count as usize];
            // Single writer (module docs): load + store is an exact increment.
            c.store(c.load(Relaxed) + 1, Relaxed);
        } else {
            // The shard count is a power of two.
            let shard = &self.shards[slot & (self.shards.len() - 1)];
            shard.shared[count as usize].fetch_add(1, Relaxed);
        }
    }

    /// Sums the shards.
    fn sum(&self, count: Count) -> u64 {
        self.shards
            .iter()
            .map(|s| s.owned[count as usize].load(Relaxed) + s.shared[count as usize].load(Relaxed))
            .sum()
    }
}

/// What a [`CircuitBreaker`](super::CircuitBreaker) has seen since it was built.
///
/// `calls == successes + failures`: calls whose outcome was recorded. Calls whose
/// permit was dropped unfinished, or that ended in an inner policy's refusal, are
/// `ignored` instead. Counters are read shard by shard, so a snapshot taken while calls
/// run is not one instant, but every call is counted exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CircuitStats {
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// Calls with a recorded outcome.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls that took at least the slow-call threshold (successes or failures).
    pub slow_calls: u64,
    /// Calls refused because the circuit was open.
    pub rejections: u64,
    /// Calls counted as neither success nor failure.
    pub ignored: u64,
    /// How many times the circuit opened (by a trip condition, a failed probe, or
    /// [`force_open`](super::CircuitBreaker::force_open)).
    pub trips: u64,
}

impl CircuitStats {
    pub(super) fn new(state: CircuitState, counters: &Counters, trips: u64) -> Self {
        let successes = counters.sum(Count::Successes);
        let failures = counters.sum(Count::Failures);
        Self {
            state,
            calls: successes + failures,
            successes,
            failures,
            slow_calls: counters.sum(Count::Slow),
            rejections: counters.sum(Count::Rejections),
            ignored: counters.sum(Count::Ignored),
            trips,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_past_the_shard_count_share_exactly() {
        let counters = Counters::new();
        let threads = shard_count() * 2 + 1;
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // Every thread holds its slot while the others run.
                    barrier.wait();
                    for _ in 0..10_000 {
                        counters.bump(Count::Successes);
                    }
                    counters.bump(Count::Rejections);
                    barrier.wait();
                });
            }
        });
        assert_eq!(counters.sum(Count::Successes), threads as u64 * 10_000);
        assert_eq!(counters.sum(Count::Rejections), threads as u64);
    }
}
