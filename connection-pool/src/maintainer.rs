//! The background maintainer: one task per pool.
//!
//! Each round it (1) closes idle connections past their lifetime, and those idle past
//! `idle_timeout` while more than `min_idle` are idle; (2) takes idle connections not
//! used or probed within `keepalive_interval` out of the deque, probes them and puts the
//! live ones back (through the same release path as guards, so waiters get them first);
//! (3) refills to `min_idle`; (4) with `leak_threshold` set, reports checkouts held
//! past it, each once.
//!
//! Refill after failures: each failed batch doubles a jittered backoff (100 ms up to
//! 30 s) and drops the batch size to one connection, the *prober*; every fully
//! successful batch doubles the batch size again (slow start), so a recovering server
//! sees 1, 2, 4, ... connects rather than `min_idle` at once.
//!
//! The task sleeps until the next deadline it knows of (capped by the shortest
//! configured interval, so connections returned meanwhile are looked at in time) or
//! until woken: a slot freed below `min_idle`, `close`, or the last handle dropped.
//!
//! Panics: the task runs the user's code (`Transport::connect`, `Connection::probe`,
//! `closed`). Every slot it takes is held by a [`Slot`] while that code runs, so a
//! panic gives each slot back (a connection being probed is discarded as broken) and no
//! checkout waits for a slot that is gone. The round that panicked ends; the task
//! counts it (`PoolMetrics::maintainer_restarts`), records it as the last connect error
//! (an Error event on the pool's bus), backs off like after a failed refill, and goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_core::task::{TaskEnded, catch_panic};
use connection_core::{Error, Transport, time};
use futures::future::join_all;
use tokio::time::Instant;

use crate::events::ConnectionLeak;
use crate::inner::{Idle, Shared, Slot, peer_gone};
use crate::status::CloseReason;

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest sleep when nothing is due, so the task notices settings-driven work late at
/// most by this much.
const MAX_NAP: Duration = Duration::from_secs(60);

/// Refill pacing state.
struct Refill {
    failures: u32,
    /// Connects allowed in the next batch; `usize::MAX` when healthy.
    batch: usize,
    not_before: Option<Instant>,
}

impl Refill {
    /// A batch failed: one connection at a time from now on, after a growing, jittered
    /// pause. Returns when to try again.
    fn failed<T: Transport>(&mut self, shared: &Shared<T>) -> Instant {
        self.failures = self.failures.saturating_add(1);
        self.batch = 1;
        let exp = BACKOFF_BASE
            .saturating_mul(1u32 << self.failures.min(16).saturating_sub(1))
            .min(BACKOFF_MAX);
        let t = time::deadline(Instant::now(), shared.jittered(exp));
        self.not_before = Some(t);
        t
    }
}

pub(crate) async fn run<T: Transport>(shared: Arc<Shared<T>>) {
    let mut refill = Refill {
        failures: 0,
        batch: usize::MAX,
        not_before: None,
    };
    loop {
        match catch_panic(rounds(&shared, &mut refill)).await {
            Ok(()) => break,
            Err(payload) => {
                let ended = TaskEnded::panicked("pool maintainer", payload.as_ref());
                let restarts = shared
                    .counters
                    .maintainer_restarts
                    .fetch_add(1, Ordering::AcqRel)
                    + 1;
                tracing::error!(endpoint = %shared.transport.endpoint(), %ended, restarts, "pool maintainer panicked; going on");
                shared.record_error(&Error::other(shared.transport.endpoint(), ended, false));
                // Whatever panicked (most likely a connect) is not retried at once.
                refill.failed(&shared);
            }
        }
    }
    tracing::debug!(endpoint = %shared.transport.endpoint(), "pool maintainer stopped");
}

/// The maintenance rounds, until the pool is closed or every handle is gone.
async fn rounds<T: Transport>(shared: &Arc<Shared<T>>, refill: &mut Refill) {
    let cfg = shared.config.clone();
    let nap = [
        cfg.keepalive_interval,
        cfg.idle_timeout,
        cfg.max_lifetime,
        cfg.leak_threshold,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_NAP)
    .min(MAX_NAP);
    loop {
        if shared.stopped.load(Ordering::Acquire) || shared.state.lock().closed {
            break;
        }
        let now = Instant::now();
        let (to_close, to_probe, next_due) = sweep(shared, now);
        for (idle, reason) in to_close {
            shared.counters.closed(reason);
            shared.discard(Some(idle));
        }
        probe_all(shared, to_probe).await;
        let next_refill = refill_round(shared, refill).await;
        let next_leak = report_leaks(shared, now);

        let mut wake = time::deadline(now, nap);
        for t in [next_due, next_refill, next_leak].into_iter().flatten() {
            wake = wake.min(t);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shared.maintainer.notified() => {}
        }
    }
}

type Sweep<C> = (Vec<(Idle<C>, CloseReason)>, Vec<Idle<C>>, Option<Instant>);

/// Takes out of the idle deque what must be closed or probed; returns the next time
/// something will be due.
fn sweep<T: Transport>(shared: &Shared<T>, now: Instant) -> Sweep<T::Connection> {
    let cfg = &shared.config;
    let mut close = Vec::new();
    let mut probe = Vec::new();
    let mut next: Option<Instant> = None;
    let mut due = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
    let mut st = shared.state.lock();
    let mut kept = std::collections::VecDeque::with_capacity(st.idle.len());
    let mut idle_left = st.idle.len();
    // Oldest-returned first, so idle-timeout eviction keeps the most recently used.
    while let Some(mut c) = st.idle.pop_front() {
        if peer_gone(&mut c.conn) {
            idle_left -= 1;
            close.push((c, CloseReason::PeerClosed));
            continue;
        }
        if c.expired(now) {
            idle_left -= 1;
            close.push((c, CloseReason::Lifetime));
            continue;
        }
        if let Some(t) = cfg.idle_timeout {
            if idle_left > cfg.min_idle && now.saturating_duration_since(c.idle_since) >= t {
                idle_left -= 1;
                close.push((c, CloseReason::Idle));
                continue;
            }
            // Kept for min_idle past its timeout: no deadline, or the task would spin.
            let idle_until = time::deadline(c.idle_since, t);
            if idle_until > now {
                due(idle_until);
            }
        }
        if let Some(e) = c.expires {
            due(e);
        }
        if let Some(k) = cfg.keepalive_interval {
            if now.saturating_duration_since(c.last_ok) >= k {
                probe.push(c);
                continue;
            }
            due(time::deadline(c.last_ok, k));
        }
        kept.push_back(c);
    }
    st.idle = kept;
    // Closed connections free their slots; probed ones keep theirs until put back.
    // The refill step of the same round makes up for them.
    st.size -= close.len();
    // Strict waiters exist only while nothing is idle, so only barging ones can wait here.
    shared.notify_freed(&st, close.len());
    drop(st);
    shared.give_units(close.len());
    (close, probe, next)
}

/// Reports checkouts held past `leak_threshold`, each once; returns when the next one
/// known will be due. Checkouts taken after this scan are found by the next, at most
/// one nap (no longer than the threshold) later.
fn report_leaks<T: Transport>(shared: &Shared<T>, now: Instant) -> Option<Instant> {
    let threshold = shared.config.leak_threshold?;
    let mut next: Option<Instant> = None;
    let mut leaks = Vec::new();
    {
        let mut st = shared.state.lock();
        for lease in st.leases.iter_mut().flatten() {
            if lease.reported {
                continue;
            }
            let held = now.saturating_duration_since(lease.since);
            if held >= threshold {
                lease.reported = true;
                leaks.push((held, lease.at));
            } else {
                let due = time::deadline(lease.since, threshold);
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
    }
    // Reported outside the lock: formatting and publishing allocate.
    for (held, at) in leaks {
        tracing::warn!(
            endpoint = %shared.transport.endpoint(),
            ?held,
            taken_at = %at,
            "pool connection held longer than leak_threshold"
        );
        shared.publish(shared.id, || {
            ConnectionLeak {
                held,
                taken_at: at.to_string().into(),
            }
            .into()
        });
    }
    next
}

async fn probe_all<T: Transport>(shared: &Arc<Shared<T>>, conns: Vec<Idle<T::Connection>>) {
    if conns.is_empty() {
        return;
    }
    // Each in a slot from here on: should a probe panic, the slots unwinding give their
    // places back, and their connections are discarded as broken.
    let results = join_all(conns.into_iter().map(|c| async move {
        let mut slot = Slot::new(Arc::clone(shared), Some(c));
        slot.broken = true;
        let ok = match slot.conn.as_mut() {
            Some(c) => shared.probe(c).await,
            None => false,
        };
        (slot, ok)
    }))
    .await;
    for (mut slot, ok) in results {
        if ok {
            // Back through the slot, so a waiter gets it before the idle deque does.
            slot.broken = false;
        } else {
            shared.counters.closed(CloseReason::FailedValidation);
            tracing::debug!(endpoint = %shared.transport.endpoint(), "keepalive probe failed; connection discarded");
            shared.discard(slot.conn.take());
        }
        drop(slot);
    }
}

/// Opens connections up to `min_idle` idle, paced by `refill`. Returns when to try again
/// after a failure.
async fn refill_round<T: Transport>(
    shared: &Arc<Shared<T>>,
    refill: &mut Refill,
) -> Option<Instant> {
    let cfg = &shared.config;
    if cfg.min_idle == 0 {
        return None;
    }
    if let Some(t) = refill.not_before {
        if Instant::now() < t {
            return Some(t);
        }
    }
    loop {
        let slots = {
            let mut st = shared.state.lock();
            if st.closed {
                return None;
            }
            let deficit = cfg
                .min_idle
                .saturating_sub(st.idle.len())
                .min(st.max_size.saturating_sub(st.size));
            let mut n = 0;
            while n < deficit.min(refill.batch) && shared.take_unit() {
                n += 1;
            }
            st.size += n;
            n
        };
        if slots == 0 {
            return None;
        }
        // Each connect owns its slot: one that fails, or panics, gives it back.
        let results = join_all((0..slots).map(|_| async {
            let mut slot = Slot::new(Arc::clone(shared), None);
            let result = shared.create().await.map(|idle| slot.conn = Some(idle));
            drop(slot);
            result
        }))
        .await;
        let mut failed = None;
        for r in results {
            if let Err(e) = r {
                failed = Some(e);
            }
        }
        match failed {
            None => {
                if refill.failures > 0 {
                    refill.batch = refill.batch.saturating_mul(2);
                    // Healthy again once a batch as large as the whole deficit succeeds.
                    if refill.batch >= cfg.max_size {
                        refill.failures = 0;
                        refill.batch = usize::MAX;
                    }
                }
                refill.not_before = None;
            }
            Some(e) => {
                shared.record_error(&e);
                return Some(refill.failed(shared));
            }
        }
    }
}
