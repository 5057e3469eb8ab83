//! The shared state behind every handle, guard and waiter, and the one place
//! connections come back to ([`Shared::release`]).
//!
//! # Accounting
//!
//! `size` counts *slots*: a connection that is idle, held by a caller, being validated
//! or probed, or a connection being opened. A slot is taken under the lock before any
//! connect starts, so `size <= max_size` holds at every instant. Every slot outside the
//! idle deque is owned by exactly one [`Slot`] value, whose `Drop` gives it back; that
//! is why no await point, cancelled or not, can leak one.
//!
//! # Handoff (strict mode)
//!
//! A waiter enqueues a oneshot sender. [`Shared::release`] pops the oldest waiter and
//! sends it the [`Slot`] itself (with its connection, or empty as a right to connect).
//! If the waiter is gone, `send` gives the slot back and the next waiter is tried. If
//! the waiter is dropped *after* the send, the slot dies inside the channel and its
//! `Drop` releases it again, to the next waiter or to idle. So a connection is never
//! stranded in a dead waiter.
//!
//! # Lock order
//!
//! One mutex ([`StateLock`], a padded `std` mutex) guards the idle deque, the waiter queue and the counts. It is
//! never held across an await, never held while a [`Slot`] is dropped (drops re-enter
//! `release`), and no other lock is taken under it except a oneshot's or a `Notify`'s
//! internal one.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::time;
use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Error, Event, EventBus, EventKind,
    LatencyRecorder, Transport,
};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::config::{Fairness, PoolConfig, QueueOrder};
use crate::status::{CloseReason, Counters, PoolMetrics, Status};

/// A connection with the times the pool keeps about it.
pub(crate) struct Idle<C> {
    pub(crate) conn: C,
    /// When this connection must be closed, jitter included.
    pub(crate) expires: Option<Instant>,
    /// When it was last returned (idle timeout counts from here).
    pub(crate) idle_since: Instant,
    /// When it was last used or probed successfully (validation and keepalive count
    /// from here).
    pub(crate) last_ok: Instant,
}

impl<C: Connection> Idle<C> {
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

pub(crate) struct Waiter<T: Transport> {
    id: u64,
    tx: oneshot::Sender<Slot<T>>,
    /// Where its `get` was called, for leak reports.
    at: &'static Location<'static>,
    /// Whether this caller is connecting a slot of its own meanwhile (see
    /// [`Shared::connect_racing`]): it is not counted as waiting.
    connecting: bool,
}

/// A checkout watched for leaks (only with `leak_threshold` set): when and where it was
/// taken, and whether it was reported already.
pub(crate) struct Lease {
    pub(crate) since: Instant,
    pub(crate) at: &'static Location<'static>,
    pub(crate) reported: bool,
}

pub(crate) struct State<T: Transport> {
    pub(crate) idle: VecDeque<Idle<T::Connection>>,
    /// Strict mode's queue, oldest first.
    waiters: VecDeque<Waiter<T>>,
    /// How many of `waiters` are connecting a slot of their own meanwhile.
    connecting: usize,
    /// Throughput mode's count of tasks waiting on `Shared::available`.
    barging_waiters: usize,
    pub(crate) size: usize,
    /// The current cap: `config.max_size` until [`Shared::resize`] changes it.
    pub(crate) max_size: usize,
    pub(crate) closed: bool,
    next_waiter: u64,
    gets: u64,
    pub(crate) last_error: Option<Arc<Error>>,
    /// Checkouts in progress, indexed by `Slot::lease`; empty without a leak threshold.
    /// Kept under the pool lock that checkout and return take anyway, so watching for
    /// leaks adds no lock and, up to the peak number out at once, no allocation.
    pub(crate) leases: Vec<Option<Lease>>,
    free_leases: Vec<usize>,
}

impl<T: Transport> State<T> {
    fn waiting(&self) -> usize {
        self.waiters.len() - self.connecting + self.barging_waiters
    }

    /// Takes the oldest waiter off the queue.
    fn pop_waiter(&mut self) -> Option<Waiter<T>> {
        let w = self.waiters.pop_front()?;
        self.connecting -= usize::from(w.connecting);
        Some(w)
    }
}

pub(crate) struct Shared<T: Transport> {
    pub(crate) transport: T,
    pub(crate) config: PoolConfig,
    /// Whether any setting reads connection times; when none does, the hot path skips
    /// the clock (two reads per get + drop are a tenth of its cost).
    pub(crate) uses_clock: bool,
    pub(crate) state: StateLock<State<T>>,
    /// The total cap shared with the other pools of a `KeyedPool`, if any.
    pub(crate) cap: Option<Arc<Cap<T>>>,
    /// Throughput mode: one notification per connection (or slot) given back.
    available: Notify,
    /// Wakes the maintainer: a slot was freed, the pool closed, the last handle left.
    pub(crate) maintainer: Notify,
    pub(crate) stopped: AtomicBool,
    pub(crate) handles: AtomicUsize,
    pub(crate) counters: Counters,
    pub(crate) wait_time: LatencyRecorder,
    rng: Mutex<SmallRng>,
    /// Where pool events go, under which name.
    events: Option<(EventBus, Arc<str>)>,
    /// The pool's own id, carried by its events that concern no one connection.
    pub(crate) id: ConnectionId,
}

impl<T: Transport> State<T> {
    /// Queues a waiter at the back, returning its id and the receiving end of its slot.
    fn enqueue(
        &mut self,
        at: &'static Location<'static>,
        connecting: bool,
    ) -> (u64, oneshot::Receiver<Slot<T>>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back(Waiter {
            id,
            tx,
            at,
            connecting,
        });
        (id, rx)
    }
}

/// The pool lock, alone on its cache line: the `Arc`'s reference count, bumped by every
/// checkout, would otherwise share it and turn each lock into two contended lines.
///
/// A `std` mutex rather than `parking_lot`'s: its critical sections here are a few
/// dozen nanoseconds, and under contention `std` spins on the lock word before it
/// sleeps, whereas `parking_lot` soon falls back to `sched_yield`, a system call that
/// costs far more than the wait it replaces and set the multi-thread p99.
#[repr(align(64))]
pub(crate) struct StateLock<S>(std::sync::Mutex<S>);

impl<S> StateLock<S> {
    fn new(state: S) -> Self {
        Self(std::sync::Mutex::new(state))
    }

    /// Locks the state. No code panics under this lock, and were one to, the state
    /// would still be consistent for the caller (as with `parking_lot`), so poisoning
    /// is ignored.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a successful acquire hands over: a slot, with or without a connection.
pub(crate) struct Slot<T: Transport> {
    pub(crate) shared: Arc<Shared<T>>,
    pub(crate) conn: Option<Idle<T::Connection>>,
    /// Set to discard the connection instead of reusing it.
    pub(crate) broken: bool,
    /// This checkout's entry in `State::leases`, when leaks are watched.
    pub(crate) lease: Option<usize>,
    /// Set while a checkout validates the connection: if it comes back now, it was not
    /// used and its validation is not vouched for, so `last_ok` must not move.
    pub(crate) unchecked: bool,
    armed: bool,
}

impl<T: Transport> Slot<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>, conn: Option<Idle<T::Connection>>) -> Self {
        Self {
            shared,
            conn,
            broken: false,
            lease: None,
            unchecked: false,
            armed: true,
        }
    }

    /// Takes the connection and frees the slot; the connection is no longer counted.
    pub(crate) fn detach(mut self) -> Option<T::Connection> {
        let conn = self.conn.take();
        conn.map(|c| c.conn)
        // `self` drops here with no connection: the slot goes back.
    }
}

impl<T: Transport> Drop for Slot<T> {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            let conn = self.conn.take();
            Shared::release(
                &self.shared,
                conn,
                self.broken,
                self.unchecked,
                self.lease.take(),
            );
        }
    }
}

impl<T: Transport> Shared<T> {
    pub(crate) fn new(
        transport: T,
        config: PoolConfig,
        cap: Option<Arc<Cap<T>>>,
        events: Option<(EventBus, Arc<str>)>,
    ) -> Self {
        // Reserve for a typical pool, not for the maximum: a large `max_size` is a limit,
        // not a promise to fill it, and must not cost its memory up front.
        let initial = config.max_size.min(256);
        let leak_capacity = if config.leak_threshold.is_some() {
            initial
        } else {
            0
        };
        Self {
            events,
            id: ConnectionId::next(),
            transport,
            cap,
            state: StateLock::new(State {
                idle: VecDeque::with_capacity(initial),
                waiters: VecDeque::new(),
                connecting: 0,
                barging_waiters: 0,
                size: 0,
                max_size: config.max_size,
                closed: false,
                next_waiter: 0,
                gets: 0,
                last_error: None,
                leases: Vec::with_capacity(leak_capacity),
                free_leases: Vec::with_capacity(leak_capacity),
            }),
            uses_clock: config.validate_timeout.is_some()
                || config.idle_timeout.is_some()
                || config.max_lifetime.is_some()
                || config.keepalive_interval.is_some(),
            config,
            available: Notify::new(),
            maintainer: Notify::new(),
            stopped: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            counters: Counters::default(),
            wait_time: LatencyRecorder::new(),
            rng: Mutex::new(SmallRng::from_os_rng()),
        }
    }

    fn pop_idle(&self, st: &mut State<T>) -> Option<Idle<T::Connection>> {
        match self.config.queue_order {
            QueueOrder::Lifo => st.idle.pop_back(),
            QueueOrder::Fifo => st.idle.pop_front(),
        }
    }

    pub(crate) fn closed_error(&self) -> crate::PoolError {
        crate::PoolError::Closed {
            endpoint: self.transport.endpoint().clone(),
        }
    }

    fn timeout_error(&self, st: &State<T>) -> crate::PoolError {
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        crate::PoolError::Timeout {
            endpoint: self.transport.endpoint().clone(),
            status: self.status_locked(st),
            last_connect_error: st.last_error.clone(),
            wait: self.config.wait_timeout.unwrap_or_default(),
        }
    }

    /// Gives a slot back: to the oldest waiter (strict), else to the idle deque or, with
    /// no usable connection, by freeing it.
    ///
    /// Never called with the lock held: it takes it.
    pub(crate) fn release(
        this: &Arc<Self>,
        conn: Option<Idle<T::Connection>>,
        broken: bool,
        unchecked: bool,
        lease: Option<usize>,
    ) {
        let mut conn = conn;
        let mut discard = None;
        if let Some(c) = conn.take() {
            let now = if this.uses_clock {
                Instant::now()
            } else {
                c.idle_since
            };
            if broken || c.conn.state() != ConnectionState::Connected {
                this.counters.closed(CloseReason::Broken);
                discard = Some(c);
            } else if c.expired(now) {
                this.counters.closed(CloseReason::Lifetime);
                discard = Some(c);
            } else {
                let last_ok = if unchecked { c.last_ok } else { now };
                conn = Some(Idle {
                    idle_since: now,
                    last_ok,
                    ..c
                });
            }
        }
        let mut st = this.state.lock();
        Self::end_lease(&mut st, lease);
        if st.closed {
            st.size -= 1;
            drop(st);
            if let Some(c) = conn {
                discard = Some(c);
            }
            this.discard(discard);
            this.give_units(1);
            return;
        }
        if st.size > st.max_size {
            // `resize` shrank the pool below this slot: it closes instead of serving
            // anyone, so the pool settles at the new cap as guards come back.
            if let Some(c) = conn.take() {
                this.counters.closed(CloseReason::Idle);
                discard = Some(c);
            }
            st.size -= 1;
            drop(st);
            this.discard(discard);
            this.give_units(1);
            return;
        }
        if this.config.fairness == Fairness::Strict {
            while let Some(waiter) = st.pop_waiter() {
                match Self::hand_to(this, &mut st, waiter, conn.take()) {
                    Ok(()) => {
                        this.waiter_left(&st);
                        drop(st);
                        this.discard(discard);
                        return;
                    }
                    Err(back) => conn = back,
                }
            }
        }
        // Another key of a keyed pool waits for room: nobody here wants this
        // connection, so it makes way rather than idling.
        let make_way =
            st.barging_waiters == 0 && this.cap.as_ref().is_some_and(|c| c.has_blocked());
        if let Some(c) = conn.take_if(|_| make_way) {
            this.counters.closed(CloseReason::Idle);
            discard = Some(c);
        }
        let freed = match conn {
            Some(c) => {
                st.idle.push_back(c);
                false
            }
            None => {
                st.size -= 1;
                true
            }
        };
        let notify = st.barging_waiters > 0;
        let refill = freed && st.size < this.config.min_idle;
        drop(st);
        if notify {
            this.available.notify_one();
        }
        if refill {
            this.maintainer.notify_one();
        }
        this.discard(discard);
        if freed {
            this.give_units(1);
        }
    }

    /// Sends a slot (with `conn`, or empty as the right to connect) to `waiter`, under
    /// the lock. A cancelled waiter's slot comes back disarmed, since it must not
    /// re-enter `release` while the lock is held, and its connection is returned.
    fn hand_to(
        this: &Arc<Self>,
        st: &mut State<T>,
        waiter: Waiter<T>,
        conn: Option<Idle<T::Connection>>,
    ) -> Result<(), Option<Idle<T::Connection>>> {
        let mut slot = Slot::new(Arc::clone(this), conn);
        slot.lease = this.lease(st, waiter.at);
        waiter.tx.send(slot).map_err(|mut back| {
            back.armed = false;
            Self::end_lease(st, back.lease.take());
            back.conn.take()
        })
    }

    /// Starts watching a checkout taken at `at`, when a leak threshold is set.
    pub(crate) fn lease(&self, st: &mut State<T>, at: &'static Location<'static>) -> Option<usize> {
        self.config.leak_threshold?;
        let lease = Lease {
            since: Instant::now(),
            at,
            reported: false,
        };
        if let Some(i) = st.free_leases.pop() {
            if let Some(entry) = st.leases.get_mut(i) {
                *entry = Some(lease);
                return Some(i);
            }
        }
        st.leases.push(Some(lease));
        Some(st.leases.len() - 1)
    }

    fn end_lease(st: &mut State<T>, lease: Option<usize>) {
        if let Some(entry) = lease.and_then(|i| st.leases.get_mut(i)) {
            *entry = None;
            st.free_leases.extend(lease);
        }
    }

    /// Publishes a pool event, when the pool has an event bus.
    pub(crate) fn publish(&self, connection: ConnectionId, kind: impl FnOnce() -> EventKind) {
        if let Some((bus, name)) = &self.events {
            bus.publish(Event::new(connection, Arc::clone(name), kind()));
        }
    }

    /// Takes one unit of the keyed total, when there is one. Lock-free; may be called
    /// under the pool lock.
    pub(crate) fn take_unit(&self) -> bool {
        self.cap.as_ref().is_none_or(|c| c.try_take())
    }

    /// Gives units of the keyed total back. Never under the pool lock: it may hand the
    /// unit to a waiter of another pool, or of this one.
    pub(crate) fn give_units(&self, n: usize) {
        if let Some(cap) = &self.cap {
            if n > 0 {
                cap.give(n);
            }
        }
    }

    /// Remembers that this pool has a waiter blocked by the keyed total. Called under
    /// the pool lock (pool lock, then the cap's list: never the other way round).
    fn block(this: &Arc<Self>) {
        if let Some(cap) = &this.cap {
            cap.block(Arc::downgrade(this));
        }
    }

    /// After a waiter left: with nobody waiting any more, this pool no longer wants room.
    fn waiter_left(&self, st: &State<T>) {
        if let Some(cap) = &self.cap {
            if st.waiting() == 0 {
                cap.unblock(self);
            }
        }
    }

    /// A unit of the keyed total was freed: hand it to this pool's oldest waiter.
    /// Returns whether it was used (or passed to a waiter that will take it).
    fn grant(this: &Arc<Self>) -> bool {
        let Some(cap) = &this.cap else { return false };
        let mut st = this.state.lock();
        if st.closed || st.size >= st.max_size {
            return false;
        }
        if this.config.fairness == Fairness::Throughput {
            let waiting = st.barging_waiters > 0;
            drop(st);
            if waiting {
                this.available.notify_one();
            }
            return waiting;
        }
        if st.waiters.iter().all(|w| w.tx.is_closed()) {
            return false;
        }
        if !cap.try_take() {
            // Someone else took it first; stay in line for the next one.
            cap.block(Arc::downgrade(this));
            return true;
        }
        st.size += 1;
        while let Some(waiter) = st.pop_waiter() {
            if Self::hand_to(this, &mut st, waiter, None).is_ok() {
                this.waiter_left(&st);
                return true;
            }
        }
        st.size -= 1;
        cap.untake();
        false
    }

    /// Changes the cap to `n`. Growing hands the new room to waiters at once (strict:
    /// an empty slot each, as the right to connect; throughput: a wake-up each);
    /// shrinking closes the coldest idle connections beyond `n` now, and `release`
    /// closes in-use ones as they come back.
    pub(crate) fn resize(this: &Arc<Self>, n: usize) {
        let mut surplus = Vec::new();
        {
            let mut st = this.state.lock();
            if st.closed {
                return;
            }
            let old = st.max_size;
            st.max_size = n;
            while st.size > n {
                let Some(c) = st.idle.pop_front() else { break };
                st.size -= 1;
                surplus.push(c);
            }
            if this.config.fairness == Fairness::Throughput {
                this.notify_freed(&st, n.saturating_sub(old));
            } else {
                while st.size < st.max_size {
                    let Some(waiter) = st.pop_waiter() else {
                        break;
                    };
                    if waiter.tx.is_closed() {
                        continue;
                    }
                    if !this.take_unit() {
                        // The keyed total is full: stay first in line for its next unit.
                        st.connecting += usize::from(waiter.connecting);
                        st.waiters.push_front(waiter);
                        Shared::block(this);
                        break;
                    }
                    st.size += 1;
                    if Self::hand_to(this, &mut st, waiter, None).is_err() {
                        st.size -= 1;
                        if let Some(cap) = &this.cap {
                            cap.untake();
                        }
                    }
                }
                this.waiter_left(&st);
            }
        }
        let closed = surplus.len();
        for c in surplus {
            this.counters.closed(CloseReason::Idle);
            this.discard(Some(c));
        }
        this.give_units(closed);
        // More room may let the maintainer refill to `min_idle`.
        this.maintainer.notify_one();
    }

    /// Closes the coldest idle connection (the longest idle) to make room elsewhere.
    pub(crate) fn evict_one(this: &Arc<Self>) -> bool {
        let mut st = this.state.lock();
        let Some(c) = st.idle.pop_front() else {
            return false;
        };
        st.size -= 1;
        drop(st);
        this.counters.closed(CloseReason::Idle);
        this.discard(Some(c));
        this.give_units(1);
        true
    }

    /// When this pool's longest-idle connection went idle, if it has one.
    pub(crate) fn coldest_idle(&self) -> Option<Instant> {
        self.state.lock().idle.front().map(|c| c.idle_since)
    }

    /// Closes a connection that left the pool, in the background so that drop paths
    /// never wait for I/O.
    pub(crate) fn discard(&self, conn: Option<Idle<T::Connection>>) {
        let Some(mut c) = conn else { return };
        self.publish(c.conn.id(), || EventKind::Disconnected {
            reason: DisconnectReason::Shutdown,
        });
        let limit = self
            .config
            .validate_timeout
            .unwrap_or(Duration::from_secs(5));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(limit, c.conn.close()).await;
            });
        }
    }

    /// Takes an idle connection or a free slot without waiting, or enqueues the caller.
    pub(crate) fn try_acquire(
        this: &Arc<Self>,
        at: &'static Location<'static>,
    ) -> Result<Acquire<T>, crate::PoolError> {
        let mut st = this.state.lock();
        if st.closed {
            return Err(this.closed_error());
        }
        st.gets += 1;
        let strict = this.config.fairness == Fairness::Strict;
        if !strict || st.waiters.len() == st.connecting {
            // The slot (and its `Arc` count, a contended line) is made after unlocking.
            if let Some(c) = this.pop_idle(&mut st) {
                let lease = this.lease(&mut st, at);
                drop(st);
                let mut slot = Slot::new(Arc::clone(this), Some(c));
                slot.lease = lease;
                return Ok(Acquire::Ready(slot));
            }
            if st.size < st.max_size {
                if this.take_unit() {
                    st.size += 1;
                    let lease = this.lease(&mut st, at);
                    drop(st);
                    let mut slot = Slot::new(Arc::clone(this), None);
                    slot.lease = lease;
                    return Ok(Acquire::Ready(slot));
                }
                Shared::block(this);
            }
        }
        if strict {
            let (id, rx) = st.enqueue(at, false);
            Ok(Acquire::Queued(id, rx))
        } else {
            st.barging_waiters += 1;
            Ok(Acquire::Barging)
        }
    }

    /// Strict mode: connects the empty `slot` while also queueing for a connection
    /// given back meanwhile; whichever comes first serves the caller.
    ///
    /// A connect that loses to a handoff goes on in the background with its slot: its
    /// connection then goes to a waiter, or idles while the pool has fewer than
    /// `min_idle` idle, and is otherwise closed. Cancelled, this drops the queue entry
    /// first, then the connect and the slot, as a plain connect would.
    pub(crate) async fn connect_racing(
        this: &Arc<Self>,
        mut slot: Slot<T>,
        at: &'static Location<'static>,
    ) -> Result<Raced<T>, crate::PoolError> {
        let shared = Arc::clone(this);
        let mut connect = Box::pin(async move { shared.create().await });
        let (id, rx) = {
            let mut st = this.state.lock();
            if st.closed {
                drop(st);
                return Err(this.closed_error());
            }
            st.connecting += 1;
            st.enqueue(at, true)
        };
        let mut entry = QueueEntry {
            shared: this,
            id,
            rx: Some(rx),
        };
        let Some(rx) = entry.rx.as_mut() else {
            return Err(this.closed_error());
        };
        let outcome = tokio::select! {
            biased;
            r = &mut connect => Race::Own(r),
            r = rx => Race::Handed(r),
        };
        let own = match outcome {
            Race::Own(r) => {
                // Leaves the queue; a slot sent to it just now goes to the next waiter.
                drop(entry);
                r
            }
            Race::Handed(Ok(handed)) => {
                entry.rx = None;
                if handed.conn.is_none() {
                    // A right to connect: this caller connects already, so give it back.
                    drop(handed);
                    connect.await
                } else {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let shared = Arc::clone(this);
                        rt.spawn(async move {
                            match connect.await {
                                Ok(idle) => {
                                    let keep = {
                                        let st = shared.state.lock();
                                        !st.waiters.is_empty()
                                            || st.idle.len() < shared.config.min_idle
                                    };
                                    if keep {
                                        slot.conn = Some(idle);
                                    } else {
                                        shared.counters.closed(CloseReason::Idle);
                                        shared.discard(Some(idle));
                                    }
                                }
                                Err(e) => shared.record_error(&e),
                            }
                            // Hands the connection on, idles it, or frees the slot.
                            drop(slot);
                        });
                    }
                    return Ok(Raced::Handed(handed));
                }
            }
            // The sender was dropped unsent: the pool closed.
            Race::Handed(Err(_)) => {
                entry.rx = None;
                return Err(this.closed_error());
            }
        };
        match own {
            Ok(idle) => {
                slot.conn = Some(idle);
                Ok(Raced::Connected(slot))
            }
            Err(source) => {
                this.record_error(&source);
                Err(crate::PoolError::Connect { source })
            }
        }
    }

    /// Strict mode: waits for a handoff to waiter `id`.
    pub(crate) async fn wait_handoff(
        this: &Arc<Self>,
        id: u64,
        rx: oneshot::Receiver<Slot<T>>,
        deadline: Option<Instant>,
    ) -> Result<Slot<T>, crate::PoolError> {
        let mut entry = QueueEntry {
            shared: this,
            id,
            rx: Some(rx),
        };
        let Some(rx) = entry.rx.as_mut() else {
            return Err(this.closed_error());
        };
        let received = match deadline {
            Some(d) => tokio::time::timeout_at(d, rx).await.ok(),
            None => Some(rx.await),
        };
        match received {
            Some(Ok(slot)) => {
                entry.rx = None;
                Ok(slot)
            }
            // The sender was dropped unsent: the pool closed.
            Some(Err(_)) => {
                entry.rx = None;
                Err(this.closed_error())
            }
            None => {
                let st_removed;
                {
                    let mut st = this.state.lock();
                    st_removed = remove_waiter(&mut st, id);
                    if st_removed {
                        this.waiter_left(&st);
                        let err = this.timeout_error(&st);
                        drop(st);
                        entry.rx = None;
                        return Err(err);
                    }
                }
                // Not in the queue any more: a slot was sent just as time ran out. Use it.
                let mut rx = entry.rx.take();
                match rx.as_mut().map(|r| r.try_recv()) {
                    Some(Ok(slot)) => Ok(slot),
                    _ => Err(this.closed_error()),
                }
            }
        }
    }

    /// Throughput mode: waits until a connection or slot can be taken, barging allowed.
    pub(crate) async fn wait_barging(
        this: &Arc<Self>,
        deadline: Option<Instant>,
        at: &'static Location<'static>,
    ) -> Result<Slot<T>, crate::PoolError> {
        let _count = BargingEntry { shared: this };
        loop {
            let notified = this.available.notified();
            tokio::pin!(notified);
            // Registered before looking, so a release after the look wakes someone.
            notified.as_mut().enable();
            {
                let mut st = this.state.lock();
                if st.closed {
                    return Err(this.closed_error());
                }
                if let Some(c) = this.pop_idle(&mut st) {
                    let mut slot = Slot::new(Arc::clone(this), Some(c));
                    slot.lease = this.lease(&mut st, at);
                    drop(st);
                    return Ok(slot);
                }
                if st.size < st.max_size {
                    if this.take_unit() {
                        st.size += 1;
                        let mut slot = Slot::new(Arc::clone(this), None);
                        slot.lease = this.lease(&mut st, at);
                        drop(st);
                        return Ok(slot);
                    }
                    Shared::block(this);
                }
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        let st = this.state.lock();
                        return Err(this.timeout_error(&st));
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Throughput mode: slots were freed outside `release` (maintainer eviction); wake
    /// that many waiters so they can connect.
    pub(crate) fn notify_freed(&self, st: &State<T>, n: usize) {
        for _ in 0..n.min(st.barging_waiters) {
            self.available.notify_one();
        }
    }

    pub(crate) fn wake_all_waiters(&self) {
        self.available.notify_waiters();
    }

    pub(crate) fn close_locked(
        &self,
        st: &mut State<T>,
    ) -> (Vec<Idle<T::Connection>>, VecDeque<Waiter<T>>) {
        st.closed = true;
        let idle: Vec<_> = st.idle.drain(..).collect();
        st.size -= idle.len();
        st.connecting = 0;
        (idle, std::mem::take(&mut st.waiters))
    }

    pub(crate) fn status_locked(&self, st: &State<T>) -> Status {
        Status {
            size: st.size,
            idle: st.idle.len(),
            in_use: st.size - st.idle.len(),
            waiting: st.waiting(),
            max_size: st.max_size,
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.status_locked(&self.state.lock())
    }

    pub(crate) fn metrics(&self) -> PoolMetrics {
        let (status, gets) = {
            let st = self.state.lock();
            (self.status_locked(&st), st.gets)
        };
        let c = &self.counters;
        PoolMetrics {
            status,
            gets,
            waited: c.waited.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            created: c.created.load(Ordering::Relaxed),
            create_failed: c.create_failed.load(Ordering::Relaxed),
            closed: c.closed_counts(),
            wait_time: self.wait_time.snapshot(),
            maintainer_restarts: c.maintainer_restarts.load(Ordering::Relaxed),
        }
    }

    /// A new connection's expiry: `max_lifetime` minus a random part of the jitter.
    pub(crate) fn expiry(&self, now: Instant) -> Option<Instant> {
        // Capped: `Duration::MAX` means "never", and must neither overflow the clock
        // nor the jitter's float arithmetic.
        let lifetime = time::cap(self.config.max_lifetime?);
        let jitter = lifetime.mul_f64(self.config.lifetime_jitter);
        let cut = if jitter.is_zero() {
            Duration::ZERO
        } else {
            jitter.mul_f64(self.rng.lock().random::<f64>())
        };
        Some(time::deadline(now, lifetime.saturating_sub(cut)))
    }

    /// A uniformly random duration in `[d/2, d]`.
    pub(crate) fn jittered(&self, d: Duration) -> Duration {
        d / 2 + (d / 2).mul_f64(self.rng.lock().random::<f64>())
    }

    /// Opens one connection, bounded by `create_timeout`, counting the outcome.
    pub(crate) async fn create(&self) -> Result<Idle<T::Connection>, Error> {
        let limit = Some(self.config.create_timeout);
        let result = connection_core::connect_within(&self.transport, limit).await;
        match result {
            Ok(conn) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                self.publish(conn.id(), || EventKind::Connected);
                let now = Instant::now();
                Ok(Idle {
                    conn,
                    expires: self.expiry(now),
                    idle_since: now,
                    last_ok: now,
                })
            }
            Err(e) => {
                self.counters.create_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(endpoint = %self.transport.endpoint(), error = %e, "pool connect failed");
                Err(e)
            }
        }
    }

    /// Records a connect failure for later timeout errors: a clone of the error itself
    /// (cheap, and it keeps its kind), while the original goes to the caller.
    pub(crate) fn record_error(&self, e: &Error) {
        let kept = Arc::new(e.clone());
        self.publish(self.id, || EventKind::Error {
            error: Arc::clone(&kept),
        });
        self.state.lock().last_error = Some(kept);
    }

    /// Probes a connection within `validate_timeout` (5 s when validation is off).
    pub(crate) async fn probe(&self, idle: &mut Idle<T::Connection>) -> bool {
        let limit = self
            .config
            .validate_timeout
            .unwrap_or(Duration::from_secs(5));
        match tokio::time::timeout(limit, idle.conn.probe()).await {
            Ok(Ok(_)) => {
                idle.last_ok = Instant::now();
                true
            }
            _ => false,
        }
    }
}

/// How [`Shared::connect_racing`] served its caller.
pub(crate) enum Raced<T: Transport> {
    /// With its own new connection, ready to use.
    Connected(Slot<T>),
    /// With a connection given back by another caller, to be checked like any other.
    Handed(Slot<T>),
}

enum Race<A, B> {
    Own(A),
    Handed(B),
}

pub(crate) enum Acquire<T: Transport> {
    Ready(Slot<T>),
    Queued(u64, oneshot::Receiver<Slot<T>>),
    Barging,
}

fn remove_waiter<T: Transport>(st: &mut State<T>, id: u64) -> bool {
    // Ids grow along the queue, so a binary search finds the entry.
    match st.waiters.binary_search_by_key(&id, |w| w.id) {
        Ok(i) => {
            if let Some(w) = st.waiters.remove(i) {
                st.connecting -= usize::from(w.connecting);
            }
            true
        }
        Err(_) => false,
    }
}

/// A strict waiter's place in line. Dropped while still queued (the `get` future was
/// cancelled), it leaves the queue first and only then drops its receiver, so a slot
/// already sent to it is released to the next waiter, outside the lock.
struct QueueEntry<'a, T: Transport> {
    shared: &'a Arc<Shared<T>>,
    id: u64,
    rx: Option<oneshot::Receiver<Slot<T>>>,
}

impl<T: Transport> Drop for QueueEntry<'_, T> {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            let mut st = self.shared.state.lock();
            if remove_waiter(&mut st, self.id) {
                self.shared.waiter_left(&st);
            }
            drop(st);
            drop(rx);
        }
    }
}

/// Keeps the throughput-mode waiter count right whichever way the wait ends.
struct BargingEntry<'a, T: Transport> {
    shared: &'a Arc<Shared<T>>,
}

impl<T: Transport> Drop for BargingEntry<'_, T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.barging_waiters -= 1;
        self.shared.waiter_left(&st);
    }
}

/// The total cap of a `KeyedPool`: units shared by every key's pool, and the pools with
/// a waiter blocked for want of one.
pub(crate) struct Cap<T: Transport> {
    used: AtomicUsize,
    max: usize,
    blocked: Mutex<VecDeque<std::sync::Weak<Shared<T>>>>,
    blocked_len: AtomicUsize,
}

impl<T: Transport> Cap<T> {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
            blocked: Mutex::new(VecDeque::new()),
            blocked_len: AtomicUsize::new(0),
        }
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.used() >= self.max
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.max).then_some(u + 1)
            })
            .is_ok()
    }

    fn untake(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }

    fn has_blocked(&self) -> bool {
        self.blocked_len.load(Ordering::Acquire) > 0
    }

    /// Forgets `pool`: its last waiter left. Under the pool lock, like `block`.
    fn unblock(&self, pool: &Shared<T>) {
        let mut blocked = self.blocked.lock();
        blocked.retain(|w| !std::ptr::eq(w.as_ptr(), pool));
        self.blocked_len.store(blocked.len(), Ordering::Release);
    }

    fn block(&self, pool: std::sync::Weak<Shared<T>>) {
        let mut blocked = self.blocked.lock();
        blocked.push_back(pool);
        self.blocked_len.store(blocked.len(), Ordering::Release);
    }

    /// Frees `n` units and offers each to the pools that wait for one, oldest first.
    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        for _ in 0..n {
            loop {
                let next = {
                    let mut blocked = self.blocked.lock();
                    let next = blocked.pop_front();
                    self.blocked_len.store(blocked.len(), Ordering::Release);
                    next
                };
                let Some(pool) = next else { return };
                if pool.upgrade().is_some_and(|p| Shared::grant(&p)) {
                    break;
                }
            }
        }
    }
}

/// Whether the connection already knows its peer is gone: its
/// [`closed`](connection_core::Connection::closed) future is ready on the first poll. No
/// waiting and no probe; a transport whose `closed` watches a flag its I/O task sets
/// answers without a system call. `closed` is cancel-safe, so polling it once and
/// dropping it leaves the connection as it was.
///
/// Called under the pool lock by the maintainer: a `closed` that panics counts as gone
/// rather than unwinding through the idle deque.
pub(crate) fn peer_gone<C: connection_core::Connection>(conn: &mut C) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let closed = std::pin::pin!(conn.closed());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        closed.poll(&mut cx).is_ready()
    }))
    .unwrap_or(true)
}
