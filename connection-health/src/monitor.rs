//! The one task that watches every connection of a manager.
//!
//! It owns the rating state of every connection ([`Tracker`]) and is its only writer, so
//! ratings need no lock. Per connection it keeps one `watch` receiver of the supervisor's
//! state (a dropped connection is seen the moment the supervisor notices it, without
//! waiting for a probe), at most one running probe, and one entry in a timer heap for the
//! next probe. Probes run concurrently up to `max_concurrent_probes`; due probes beyond
//! that wait in a FIFO. A probe is scheduled only when the previous one of the same
//! connection has finished or timed out, so a hung peer never makes them pile up, and a
//! timed-out probe is dropped, which abandons it on the connection too.
//!
//! Failures the connections report on real traffic (`Traffic::failure`, seen through
//! each supervisor's `watch_traffic_failures`) count like failed probes.
//!
//! Every rating change is stored in the entry (read lock-free by the manager and the
//! failover groups), published as `HealthChanged`, and handed to the entry's rating
//! listeners (its failover groups) at once, in this task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConnectionState, Error, Event, EventBus, EventKind, SupervisorHandle};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::check::{CheckFuture, HealthCheck};
use crate::entry::Entry;
use crate::health::{Change, Tracker};

/// Requests to the monitor.
pub(crate) enum Cmd {
    /// A supervisor was started for `entry`: watch it.
    Watch {
        entry: Arc<Entry>,
        generation: u64,
        handle: SupervisorHandle,
    },
    /// A failure seen on real traffic.
    Failure { key: u64 },
    /// A connection-level failure seen on real traffic (the connection is gone or
    /// unusable): Unhealthy at once, as if the connection had dropped.
    Lost { key: u64 },
    /// A success seen on real traffic, with its latency if known.
    Success { key: u64, latency: Duration },
}

struct Watched {
    entry: Arc<Entry>,
    generation: u64,
    handle: SupervisorHandle,
    tracker: Tracker,
    connected: bool,
    probing: bool,
    /// Identifies the one valid scheduled probe; older heap items are stale.
    probe_seq: u64,
}

enum ProbeResult {
    Passed(Duration),
    Failed(Error),
    TimedOut,
}

/// Waits for the next failure reported on one supervisor's traffic; `None` when the
/// supervisor is gone.
async fn next_failure(
    key: u64,
    generation: u64,
    mut rx: watch::Receiver<u64>,
) -> Option<(u64, u64, watch::Receiver<u64>)> {
    rx.changed().await.ok()?;
    rx.borrow_and_update();
    Some((key, generation, rx))
}

/// Waits for the next state of one supervisor; returns the receiver for the next wait.
async fn next_state(
    key: u64,
    generation: u64,
    mut rx: watch::Receiver<ConnectionState>,
) -> (u64, u64, watch::Receiver<ConnectionState>, ConnectionState) {
    let state = match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        // Every handle is gone: the supervisor is over.
        Err(_) => ConnectionState::Closed,
    };
    (key, generation, rx, state)
}

async fn run_probe(
    key: u64,
    generation: u64,
    probe: CheckFuture,
    limit: Duration,
) -> (u64, u64, ProbeResult) {
    let result = match tokio::time::timeout(limit, probe).await {
        Ok(Ok(rtt)) => ProbeResult::Passed(rtt),
        Ok(Err(e)) => ProbeResult::Failed(e),
        Err(_) => ProbeResult::TimedOut,
    };
    (key, generation, result)
}

pub(crate) async fn run(mut cmds: mpsc::UnboundedReceiver<Cmd>, cfg: HealthCheck, bus: EventBus) {
    let mut watched: HashMap<u64, Watched> = HashMap::new();
    let mut states = FuturesUnordered::new();
    let mut failures = FuturesUnordered::new();
    let mut probes = FuturesUnordered::new();
    let mut due: BinaryHeap<Reverse<(Instant, u64, u64)>> = BinaryHeap::new();
    let mut ready: VecDeque<(u64, u64)> = VecDeque::new();
    let max_probes = cfg.max_concurrent_probes();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);

    loop {
        while probes.len() < max_probes
            && let Some((key, seq)) = ready.pop_front()
        {
            let Some(w) = watched.get_mut(&key) else {
                continue;
            };
            if w.probe_seq != seq || w.probing || !w.connected {
                continue;
            }
            w.probing = true;
            let probe = match cfg.check_fn() {
                Some(check) => check(&w.handle),
                None => {
                    let handle = w.handle.clone();
                    Box::pin(async move { handle.probe().await })
                }
            };
            probes.push(run_probe(key, w.generation, probe, cfg.timeout()));
        }
        if let Some(Reverse((at, _, _))) = due.peek() {
            sleep.as_mut().reset(*at);
        }

        tokio::select! {
            // Connection drops first: failover latency depends on it.
            biased;
            Some((key, generation, rx, state)) = states.next(), if !states.is_empty() => {
                let Some(w) = watched.get_mut(&key) else { continue };
                if w.generation != generation {
                    continue;
                }
                let closed = on_state(w, state, &cfg, &bus, &mut ready);
                if closed {
                    watched.remove(&key);
                } else {
                    states.push(next_state(key, generation, rx));
                }
            }
            cmd = cmds.recv() => match cmd {
                None => break,
                Some(Cmd::Watch { entry, generation, handle }) => {
                    let key = entry.key;
                    let mut failures_rx = handle.watch_traffic_failures();
                    failures_rx.borrow_and_update();
                    failures.push(next_failure(key, generation, failures_rx));
                    let mut rx = handle.watch_state();
                    let state = *rx.borrow_and_update();
                    let tracker = watched.remove(&key).map(|w| w.tracker).unwrap_or_default();
                    let w = watched.entry(key).or_insert(Watched {
                        entry,
                        generation,
                        handle,
                        tracker,
                        connected: false,
                        probing: false,
                        probe_seq: 0,
                    });
                    if on_state(w, state, &cfg, &bus, &mut ready) {
                        watched.remove(&key);
                    } else {
                        states.push(next_state(key, generation, rx));
                    }
                }
                Some(Cmd::Failure { key }) => {
                    if let Some(w) = watched.get_mut(&key) {
                        let change = w.tracker.failure(&cfg);
                        publish(w, change, &bus);
                    }
                }
                Some(Cmd::Lost { key }) => {
                    if let Some(w) = watched.get_mut(&key) {
                        let change = w.tracker.lost(&cfg);
                        publish(w, change, &bus);
                    }
                }
                Some(Cmd::Success { key, latency }) => {
                    // Only a live connection can succeed; a late report must not rate a
                    // dropped one healthy.
                    if let Some(w) = watched.get_mut(&key)
                        && w.connected
                    {
                        let change = w.tracker.success(latency, &cfg);
                        publish(w, change, &bus);
                    }
                }
            },
            Some(failure) = failures.next(), if !failures.is_empty() => {
                // `None`: that supervisor is gone; its state watch reports the end.
                let Some((key, generation, rx)) = failure else { continue };
                let Some(w) = watched.get_mut(&key) else { continue };
                if w.generation != generation {
                    continue;
                }
                tracing::debug!(connection = %w.entry.name, "failure on traffic");
                let change = w.tracker.failure(&cfg);
                publish(w, change, &bus);
                failures.push(next_failure(key, generation, rx));
            }
            Some((key, generation, result)) = probes.next(), if !probes.is_empty() => {
                let Some(w) = watched.get_mut(&key) else { continue };
                if w.generation != generation {
                    continue;
                }
                w.probing = false;
                let change = match result {
                    ProbeResult::Passed(rtt) => w.tracker.success(rtt, &cfg),
                    ProbeResult::Failed(error) => {
                        tracing::debug!(connection = %w.entry.name, %error, "health probe failed");
                        w.tracker.failure(&cfg)
                    }
                    ProbeResult::TimedOut => {
                        tracing::debug!(connection = %w.entry.name, timeout = ?cfg.timeout(), "health probe timed out");
                        w.tracker.failure(&cfg)
                    }
                };
                publish(w, change, &bus);
                if w.connected && let Some(interval) = cfg.interval() {
                    w.probe_seq += 1;
                    due.push(Reverse((Instant::now() + interval, key, w.probe_seq)));
                }
            }
            () = &mut sleep, if !due.is_empty() => {
                let now = Instant::now();
                while let Some(Reverse((at, key, seq))) = due.peek().copied() {
                    if at > now {
                        break;
                    }
                    due.pop();
                    ready.push_back((key, seq));
                }
            }
        }
    }
    tracing::debug!(connections = watched.len(), "health monitor stopped");
}

/// Applies a supervisor state; returns whether the supervisor is over.
fn on_state(
    w: &mut Watched,
    state: ConnectionState,
    cfg: &HealthCheck,
    bus: &EventBus,
    ready: &mut VecDeque<(u64, u64)>,
) -> bool {
    let was_connected = w.connected;
    w.connected = state == ConnectionState::Connected;
    // The supervisor never repeats a state, and a `watch` keeps only the latest one: a
    // notification without a visible change (Connected again), or a state that only
    // follows a drop (Connecting after Connected), means the drop happened in between.
    let dropped = was_connected
        && matches!(
            state,
            ConnectionState::Connected
                | ConnectionState::Connecting
                | ConnectionState::Disconnected
        );
    if dropped {
        let change = w.tracker.lost(cfg);
        publish(w, change, bus);
    }
    let change = match state {
        ConnectionState::Connected => {
            let change = w.tracker.connected(cfg);
            if cfg.interval().is_some() {
                // Probe a fresh connection at once rather than an interval later.
                w.probe_seq += 1;
                ready.push_back((w.entry.key, w.probe_seq));
            }
            change
        }
        ConnectionState::Reconnecting | ConnectionState::Failed => w.tracker.lost(cfg),
        ConnectionState::Closed => w.tracker.stopped(),
        ConnectionState::Connecting | ConnectionState::Disconnected => None,
    };
    if !w.connected {
        // Any scheduled probe is for a connection that is gone.
        w.probe_seq += 1;
    }
    publish(w, change, bus);
    state == ConnectionState::Closed
}

fn publish(w: &Watched, change: Change, bus: &EventBus) {
    let Some((from, to)) = change else { return };
    w.entry.set_health(to);
    tracing::debug!(connection = %w.entry.name, %from, %to, "health changed");
    bus.publish(Event::new(
        w.handle.id(),
        w.entry.name.clone(),
        EventKind::HealthChanged { from, to },
    ));
    for listener in w.entry.listeners() {
        listener.on_rating(&w.entry, to);
    }
}
