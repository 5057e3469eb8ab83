//! [`KeyedRateLimiter`]: one GCRA quota per key, in a table of bounded size whose
//! eviction costs O(1) per check.
//!
//! # Why not governor's keyed store
//!
//! governor keeps every key it has seen in a `DashMap` until the caller runs
//! `retain_recent`, a scan of the whole map. Bounding it by scanning when the map is full
//! makes every check past the bound a full scan (337 µs instead of 300 ns with 100 000
//! keys), and a key flood then refuses tracked keys too. So the table is our own; the
//! arithmetic is governor's GCRA, unchanged (same waits, same burst).
//!
//! # The table
//!
//! ```text
//!   hash(key) ──► shard (Mutex) ──► index: HashTable<slot number>
//!                                    slots: [key, hash, tat]
//!                                    hand:  where the next eviction probe starts
//!   used: slots in all shards together, at most `max_keys`
//! ```
//!
//! - **A tracked key** is found under its shard's lock and its permit taken by moving
//!   its `tat` (theoretical arrival time) on; other keys never enter the picture, so a
//!   tracked key is never refused for their sake.
//! - **A new key** is added under the same lock, after the same lookup. (A mutex
//!   rather than a read-write lock: a read lock, a miss, then a write lock and a
//!   second lookup made the flood case pay twice, and the sections are a few dozen
//!   nanoseconds either way.) Below `max_keys`, counted over the whole table (shards
//!   fill unevenly, and a fixed share each would refuse keys early), it gets a new
//!   slot. At the bound, its shard's hand (a clock, as in page replacement) looks at
//!   no more than `PROBES` slots from where it stopped last and reuses the first whose
//!   bucket is full again (`tat <= now`): such a key's state is the same as a new
//!   key's, so forgetting it loses nothing. When none of those is, the new key is
//!   refused, with the time until the earliest of them will be, rather than scanning
//!   on or forgetting a key that still owes time. The hand moves on, so the next new
//!   key looks at other slots.
//!
//! Each check does a bounded amount of work whatever the table size. What a new key
//! costs beyond a tracked key whose state is in the CPU's cache is two cache misses
//! (its index group, and the group of the key it replaces): about what a tracked key
//! costs when its state is not in the cache (`cargo xtask bench retry`,
//! `keyed_limiter_*`).
//!
//! Memory is bounded: at most `max_keys` slots in all, each a key, its hash and its
//! `tat`, plus the index's 4 bytes and control byte per slot (and the index's spare
//! capacity). Slots are allocated as keys arrive and kept for reuse;
//! [`KeyedRateLimiter::prune`] gives them back.

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{RejectReason, Rejected};
use governor::clock::Clock;
use hashbrown::HashTable;
use parking_lot::Mutex;

use super::clock::LimiterClock;
use super::{Policy, Quota};
use crate::events::RateLimited;
use crate::refusal;

/// Slots a new key may look at for one to reuse when its shard is full.
const PROBES: usize = 8;

/// Fewest keys per shard at the bound: a new key only looks for room in its own
/// shard, so shards that hold few keys would turn it away while others have room.
const MIN_SHARD_SLOTS: usize = 256;

/// Most shards: enough to keep writers of new keys on different locks.
const MAX_SHARDS: usize = 64;

/// A rate limiter with one quota per key (host, peer id, tenant). Clones share state.
///
/// # Bounded memory, and what happens at the bound
///
/// At most [`max_keys`](super::RateLimiterBuilder::max_keys) keys are tracked, and
/// every check costs about the same whatever their number (no scan of the table):
///
/// - A **tracked key** is judged by its own quota only: it is never refused for
///   another key's sake, however many new keys arrive.
/// - A **new key** at the bound takes the place of a key whose quota is full again
///   (a key in that state is the same as one never seen: nothing is forgotten). Only
///   a few places are looked at per new key (8, going round the table from where the
///   last look stopped); if none is free, the new key is refused at once, in either
///   [`LimitMode`](super::LimitMode), with [`RejectReason::RateLimited`] and the time
///   until the earliest of them frees up. A key that still owes time is never dropped
///   to make room, so flooding new keys cannot reset anyone's quota.
/// - Memory: one slot per tracked key (the key, its hash and 8 bytes of state, plus
///   about 5 bytes of index), allocated as keys arrive and reused after, so at most
///   `max_keys` slots. [`prune`](Self::prune) gives back the slots of idle keys.
///   Keys are spread over up to 64 shards by hash (locks of their own, so new keys
///   in different shards do not wait for each other); at the bound a new key can only
///   take a place in its own shard.
///
/// ```
/// use connection_retry::limit::{LimitMode, Quota, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let per_host = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
///     .mode(LimitMode::FailFast)
///     .max_keys(1_000)
///     .build_keyed::<&'static str>();
/// assert!(per_host.check_key(&"a.example").is_ok());
/// assert!(per_host.check_key(&"b.example").is_ok());
/// assert!(per_host.check_key(&"a.example").is_err());
/// # }
/// ```
pub struct KeyedRateLimiter<K: Hash + Eq + Clone> {
    inner: Arc<KeyedInner<K>>,
}

impl<K: Hash + Eq + Clone> Clone for KeyedRateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(super) struct KeyedInner<K> {
    table: Table<K>,
    clock: LimiterClock,
    policy: Policy,
    quota: Quota,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    pub(super) fn new(quota: Quota, clock: LimiterClock, policy: Policy, max_keys: usize) -> Self {
        Self {
            inner: Arc::new(KeyedInner {
                table: Table::new(quota, max_keys),
                clock,
                policy,
                quota,
                max_keys,
            }),
        }
    }

    fn now(&self) -> u64 {
        self.inner.clock.now().nanos()
    }

    /// Takes a permit for `key` if one is free now; never waits.
    pub fn check_key(&self, key: &K) -> Result<(), Rejected> {
        match self.inner.table.check(key, self.now()) {
            Ok(()) => Ok(()),
            Err(refused) => Err(self.refuse(refused)),
        }
    }

    /// Takes a permit for `key`, waiting for it in [`LimitMode::Wait`](super::LimitMode).
    /// A new key that finds no room is refused at once in either mode: waiting callers
    /// would hold the memory the bound is there to save.
    pub async fn acquire_key(&self, key: &K) -> Result<(), Rejected> {
        loop {
            match self.inner.table.check(key, self.now()) {
                Ok(()) => return Ok(()),
                Err(Refused::NoPermit(wait)) => {
                    tokio::time::sleep(self.inner.policy.on_refusal(wait)?).await;
                }
                Err(full @ Refused::NoRoom(_)) => return Err(self.refuse(full)),
            }
        }
    }

    fn refuse(&self, refused: Refused) -> Rejected {
        let (Refused::NoPermit(wait) | Refused::NoRoom(wait)) = refused;
        if let Some(events) = &self.inner.policy.events {
            events.publish(RateLimited::new(wait).into());
        }
        refusal::refuse(RejectReason::RateLimited, Some(wait))
    }

    /// Runs `operation` once `key` has a permit.
    pub async fn run_key<F, Fut, T, E>(&self, key: &K, operation: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Rejected>,
    {
        self.acquire_key(key).await?;
        operation().await
    }

    /// How many keys are tracked now (at most `max_keys`).
    pub fn len(&self) -> usize {
        self.inner.table.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked at once.
    pub fn max_keys(&self) -> usize {
        self.inner.max_keys
    }

    /// Forgets every key whose quota is full again, and gives their memory back. A scan
    /// of the whole table: for a quiet moment, never needed for the bound to hold.
    pub fn prune(&self) {
        self.inner.table.prune(self.now());
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedRateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimiter")
            .field("quota", &self.inner.quota)
            .field("keys", &self.inner.table.len())
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

/// Why a check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// The key's quota has no permit for this long.
    NoPermit(Duration),
    /// The key is new and its shard is full; a slot may free up in this long.
    NoRoom(Duration),
}

/// Keeps a shard's lock on cache lines of its own (two, for the adjacent-line
/// prefetcher), so writers of different shards do not contend.
#[repr(align(128))]
struct Padded<T>(T);

/// The keys and their states. Nanoseconds throughout, on the limiter's clock.
pub(super) struct Table<K> {
    shards: Box<[Padded<Mutex<Shard<K>>>]>,
    /// Slots in use, all shards together: never more than `max_keys`.
    used: Padded<AtomicUsize>,
    max_keys: usize,
    hasher: RandomState,
    /// Emission interval: time between two permits.
    t: u64,
    /// Burst tolerance: how far ahead of now a key's `tat` may be and still admit.
    tau: u64,
}

struct Shard<K> {
    /// Slot numbers, by their key's hash.
    index: HashTable<u32>,
    slots: Vec<Slot<K>>,
    /// Where the next eviction probe starts.
    hand: usize,
    /// Slots looked at for room so far, for tests of the work a check does.
    #[cfg(test)]
    looked: usize,
}

struct Slot<K> {
    key: K,
    hash: u64,
    /// Theoretical arrival time (GCRA): the key has a permit when `now >= tat - tau`,
    /// and its bucket is full again once `tat <= now`.
    tat: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<K: Hash + Eq + Clone> Table<K> {
    pub(super) fn new(quota: Quota, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let wanted = (max_keys / MIN_SHARD_SLOTS).clamp(1, MAX_SHARDS);
        // A power of two, so the shard is a mask of the hash.
        let n = 1usize << wanted.ilog2();
        let shards = (0..n)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    index: HashTable::new(),
                    slots: Vec::new(),
                    hand: 0,
                    #[cfg(test)]
                    looked: 0,
                }))
            })
            .collect();
        let t = nanos(quota.interval()).max(1);
        Self {
            shards,
            used: Padded(AtomicUsize::new(0)),
            max_keys,
            hasher: RandomState::new(),
            t,
            tau: t.saturating_mul(u64::from(quota.burst()) - 1),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<K>> {
        // Bits the index does not use: hashbrown takes the bucket from the low bits and
        // its tag from the top seven.
        let i = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[i].0
    }

    /// Takes a permit for `key` at `now`.
    pub(super) fn check(&self, key: &K, now: u64) -> Result<(), Refused> {
        let hash = self.hasher.hash_one(key);
        let mut guard = self.shard(hash).lock();
        let s = &mut *guard;
        if let Some(&i) = s.index.find(hash, |&i| s.slots[i as usize].key == *key) {
            return self.take(&mut s.slots[i as usize].tat, now);
        }
        // A new key's bucket is full: its first permit is always there.
        let slot = Slot {
            key: key.clone(),
            hash,
            tat: now.saturating_add(self.t),
        };
        // Room anywhere in the table is room for this shard: shards fill unevenly,
        // and a fixed share each would refuse keys well before `max_keys`. Loaded
        // first: a full table (the flood case) then costs no write to the shared count.
        if self.used.0.load(Ordering::Relaxed) < self.max_keys {
            if self.used.0.fetch_add(1, Ordering::Relaxed) < self.max_keys {
                s.push(slot);
                return Ok(());
            }
            self.used.0.fetch_sub(1, Ordering::Relaxed);
        }
        s.replace(slot, now)
    }

    /// GCRA (as governor computes it) on one key's state.
    fn take(&self, tat: &mut u64, now: u64) -> Result<(), Refused> {
        let earliest = tat.saturating_sub(self.tau);
        if now < earliest {
            return Err(Refused::NoPermit(Duration::from_nanos(earliest - now)));
        }
        *tat = (*tat).max(now).saturating_add(self.t);
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.used.0.load(Ordering::Relaxed)
    }

    fn prune(&self, now: u64) {
        for shard in &*self.shards {
            let dropped = shard.0.lock().prune(now);
            self.used.0.fetch_sub(dropped, Ordering::Relaxed);
        }
    }
}

impl<K: Hash + Eq + Clone> Shard<K> {
    /// Adds a key not in the shard, in a new slot.
    fn push(&mut self, slot: Slot<K>) {
        let Self { index, slots, .. } = self;
        // Slot numbers stay below `max_keys`, which the builder keeps within u32.
        let i = slots.len() as u32;
        let hash = slot.hash;
        slots.push(slot);
        index.insert_unique(hash, i, |&j| slots[j as usize].hash);
    }

    /// Adds a key not in the shard in place of one whose bucket is full again, looking
    /// at `PROBES` slots at most, from the hand on.
    fn replace(&mut self, slot: Slot<K>, now: u64) -> Result<(), Refused> {
        let len = self.slots.len();
        #[cfg(test)]
        {
            self.looked += PROBES.min(len);
        }
        let Self {
            index, slots, hand, ..
        } = self;
        let mut soonest = u64::MAX;
        for _ in 0..PROBES.min(len) {
            let i = if *hand < len { *hand } else { 0 };
            *hand = i + 1;
            let old = slots[i].tat;
            if old <= now {
                if let Ok(entry) = index.find_entry(slots[i].hash, |&j| j as usize == i) {
                    entry.remove();
                }
                let hash = slot.hash;
                slots[i] = slot;
                index.insert_unique(hash, i as u32, |&j| slots[j as usize].hash);
                return Ok(());
            }
            soonest = soonest.min(old);
        }
        // An empty shard in a full table has nothing to give; its keys will find room
        // once another shard's key is pruned. Otherwise: when the first looked-at slot
        // frees up.
        let wait = if soonest == u64::MAX {
            Duration::from_secs(1)
        } else {
            Duration::from_nanos(soonest.saturating_sub(now).max(1))
        };
        Err(Refused::NoRoom(wait))
    }

    /// Drops every key whose bucket is full again, and the memory they held; returns
    /// how many.
    fn prune(&mut self, now: u64) -> usize {
        let before = self.slots.len();
        self.slots.retain(|s| s.tat > now);
        self.slots.shrink_to_fit();
        self.index = HashTable::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            self.index
                .insert_unique(s.hash, i as u32, |&j| self.slots[j as usize].hash);
        }
        self.hand = 0;
        before - self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_keys: usize) -> Table<u32> {
        Table::new(Quota::per_second(1, 1).unwrap(), max_keys)
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_table_fills_to_max_keys_exactly_whatever_the_sharding() {
        for max in [1, 10, 255, 256, 1_000, 100_000] {
            // Keys that owe a second: none can make room for another.
            let t = table(max);
            assert!(t.shards.len().is_power_of_two() && t.shards.len() <= MAX_SHARDS);
            let admitted = (0..max as u32 + 100)
                .filter(|k| t.check(k, 0).is_ok())
                .count();
            assert_eq!(admitted, max, "{max}");
            assert_eq!(t.len(), max);
            let slots: usize = t.shards.iter().map(|s| s.0.lock().slots.len()).sum();
            assert_eq!(slots, max);
        }
    }

    #[test]
    fn a_full_table_reuses_only_slots_whose_bucket_is_full_again() {
        let t = table(4);
        for k in 0..4 {
            t.check(&k, 0).unwrap();
        }
        // Every bucket is empty until 1 s: no room, and it says when there will be.
        assert_eq!(
            t.check(&9, SECOND / 2),
            Err(Refused::NoRoom(Duration::from_millis(500)))
        );
        // Tracked keys keep their state.
        assert_eq!(
            t.check(&2, SECOND / 2),
            Err(Refused::NoPermit(Duration::from_millis(500)))
        );
        // At 1 s the buckets are full again: key 9 takes one of their slots.
        assert_eq!(t.check(&9, SECOND), Ok(()));
        assert_eq!(t.len(), 4);
        // Now tracked, key 9 has a state of its own.
        assert_eq!(
            t.check(&9, SECOND),
            Err(Refused::NoPermit(Duration::from_secs(1)))
        );
    }

    #[test]
    fn a_new_key_looks_at_a_bounded_number_of_slots_whatever_the_table_size() {
        for max in [1_000, 100_000] {
            let t = table(max);
            for k in 0..max as u32 {
                t.check(&k, 0).unwrap();
            }
            let looked =
                |t: &Table<u32>| -> usize { t.shards.iter().map(|s| s.0.lock().looked).sum() };
            for k in 0..100 {
                let key = max as u32 + k;
                assert!(matches!(t.check(&key, 1), Err(Refused::NoRoom(_))));
            }
            // Each refused key looked at PROBES slots, never the whole table.
            assert_eq!(looked(&t), 100 * PROBES, "{max}");
        }
    }

    #[test]
    fn concurrent_floods_keep_the_index_and_the_bound_right() {
        let t = Arc::new(table(1_000));
        let threads: Vec<_> = (0..4u32)
            .map(|n| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        // A shared tracked key, and new keys whose time moves on, so
                        // that some find room and some do not.
                        let _ = t.check(&0, u64::from(i) * SECOND / 1_000);
                        let _ = t.check(&(n * 1_000_000 + i + 1), u64::from(i) * SECOND / 1_000);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.len(), 1_000);
        for shard in &*t.shards {
            let s = shard.0.lock();
            assert_eq!(s.index.len(), s.slots.len());
            for (i, slot) in s.slots.iter().enumerate() {
                let found = s
                    .index
                    .find(slot.hash, |&j| s.slots[j as usize].key == slot.key);
                assert_eq!(found.copied(), Some(i as u32));
            }
        }
    }

    #[test]
    fn prune_gives_back_fresh_keys_only() {
        let t = table(100);
        for k in 0..10 {
            t.check(&k, 0).unwrap();
        }
        t.check(&3, SECOND).unwrap();
        t.prune(SECOND);
        assert_eq!(t.len(), 1);
        assert!(t.check(&3, SECOND).is_err(), "key 3 kept its state");
        assert!(t.check(&4, SECOND).is_ok());
    }
}
