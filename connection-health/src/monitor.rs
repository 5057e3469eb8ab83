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
//!
//! Panics: a user's health check that panics (when called or when polled) counts as a
//! failed probe with a [`TaskEnded`] error, published as the connection's Error event.
//! Anything else that panics in the loop (a listener, a backoff factory called to start
//! a standby) ends only the loop's current run: the ratings live outside it, the run
//! starts again at once (after a second if the previous one also panicked), the
//! restart is counted (`Statistics::monitor_restarts`) and published as a
//! [`MonitorRestarted`] event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::task::{TaskEnded, catch_panic};
use connection_core::{
    ConnectionId, ConnectionState, Endpoint, Error, Event, EventBus, EventKind, SupervisorHandle,
    time,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::check::{CheckFuture, HealthCheck};
use crate::entry::Entry;
use crate::events::MonitorRestarted;
use crate::health::{Change, Tracker};

/// Pause before running the loop again when its previous run also panicked, so a panic
/// that recurs on every run cannot spin a core.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

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
    endpoint: Endpoint,
) -> (u64, u64, ProbeResult) {
    let result = match catch_panic(tokio::time::timeout(limit, probe)).await {
        Ok(Ok(Ok(rtt))) => ProbeResult::Passed(rtt),
        Ok(Ok(Err(e))) => ProbeResult::Failed(e),
        Ok(Err(_)) => ProbeResult::TimedOut,
        Err(payload) => ProbeResult::Failed(check_panicked(&endpoint, payload.as_ref())),
    };
    (key, generation, result)
}

fn check_panicked(endpoint: &Endpoint, payload: &(dyn std::any::Any + Send)) -> Error {
    Error::other(
        endpoint,
        TaskEnded::panicked("health check", payload),
        false,
    )
}

/// Starts the user's check (or the supervisor's probe) on `w`. A check that panics when
/// called fails like one that panics when polled.
fn start_check(w: &Watched, cfg: &HealthCheck) -> CheckFuture {
    match cfg.check_fn() {
        Some(check) => match std::panic::catch_unwind(AssertUnwindSafe(|| check(&w.handle))) {
            Ok(probe) => probe,
            Err(payload) => {
                let error = check_panicked(w.handle.endpoint(), payload.as_ref());
                Box::pin(async move { Err(error) })
            }
        },
        None => {
            let handle = w.handle.clone();
            Box::pin(async move { handle.probe().await })
        }
    }
}

/// Runs the monitor until every command sender is gone. The ratings (`watched`) are
/// kept here, outside each run, so a run that panics loses only what was in flight.
pub(crate) async fn run(
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    cfg: HealthCheck,
    bus: EventBus,
    restarts: Arc<AtomicU64>,
) {
    let mut watched: HashMap<u64, Watched> = HashMap::new();
    let id = ConnectionId::next();
    let mut last_panic: Option<Instant> = None;
    loop {
        match catch_panic(run_once(&mut cmds, &mut watched, &cfg, &bus)).await {
            Ok(()) => break,
            Err(payload) => {
                let ended = TaskEnded::panicked("health monitor", payload.as_ref());
                let restarts = restarts.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::error!(%ended, restarts, "health monitor panicked; starting it again");
                bus.publish(Event::new(
                    id,
                    "health-monitor".into(),
                    MonitorRestarted { ended, restarts }.into(),
                ));
                // The probes that were running went with the run.
                for w in watched.values_mut() {
                    w.probing = false;
                }
                if last_panic.is_some_and(|at| at.elapsed() < RESTART_PAUSE) {
                    tokio::time::sleep(RESTART_PAUSE).await;
                }
                last_panic = Some(Instant::now());
            }
        }
    }
    tracing::debug!(connections = watched.len(), "health monitor stopped");
}

/// One run of the monitor loop. Starts by watching again what an earlier run watched.
async fn run_once(
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    watched: &mut HashMap<u64, Watched>,
    cfg: &HealthCheck,
    bus: &EventBus,
) {
    let mut states = FuturesUnordered::new();
    let mut failures = FuturesUnordered::new();
    let mut probes = FuturesUnordered::new();
    let mut due: BinaryHeap<Reverse<(Instant, u64, u64)>> = BinaryHeap::new();
    let mut ready: VecDeque<(u64, u64)> = VecDeque::new();
    let max_probes = cfg.max_concurrent_probes();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);

    let mut gone = Vec::new();
    for (&key, w) in watched.iter_mut() {
        let generation = w.generation;
        let mut failures_rx = w.handle.watch_traffic_failures();
        failures_rx.borrow_and_update();
        failures.push(next_failure(key, generation, failures_rx));
        let mut rx = w.handle.watch_state();
        let state = *rx.borrow_and_update();
        if state == ConnectionState::Connected && w.connected {
            // Unchanged: not a drop, only the probe schedule to make again.
            if cfg.interval().is_some() {
                w.probe_seq += 1;
                ready.push_back((key, w.probe_seq));
            }
        } else if on_state(w, state, cfg, bus, &mut ready) {
            gone.push(key);
            continue;
        }
        states.push(next_state(key, generation, rx));
    }
    for key in gone {
        watched.remove(&key);
    }

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
            let probe = start_check(w, cfg);
            let endpoint = w.handle.endpoint().clone();
            probes.push(run_probe(
                key,
                w.generation,
                probe,
                cfg.probe_timeout(),
                endpoint,
            ));
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
                let closed = on_state(w, state, cfg, bus, &mut ready);
                if closed {
                    watched.remove(&key);
                } else {
                    states.push(next_state(key, generation, rx));
                }
            }
            cmd = cmds.recv() => match cmd {
                None => return,
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
                    if on_state(w, state, cfg, bus, &mut ready) {
                        watched.remove(&key);
                    } else {
                        states.push(next_state(key, generation, rx));
                    }
                }
                Some(Cmd::Failure { key }) => {
                    if let Some(w) = watched.get_mut(&key) {
                        let change = w.tracker.failure(cfg);
                        publish(w, change, bus);
                    }
                }
                Some(Cmd::Lost { key }) => {
                    if let Some(w) = watched.get_mut(&key) {
                        let change = w.tracker.lost(cfg);
                        publish(w, change, bus);
                    }
                }
                Some(Cmd::Success { key, latency }) => {
                    // Only a live connection can succeed; a late report must not rate a
                    // dropped one healthy.
                    if let Some(w) = watched.get_mut(&key)
                        && w.connected
                    {
                        let change = w.tracker.success(latency, cfg);
                        publish(w, change, bus);
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
                let change = w.tracker.failure(cfg);
                publish(w, change, bus);
                failures.push(next_failure(key, generation, rx));
            }
            Some((key, generation, result)) = probes.next(), if !probes.is_empty() => {
                let Some(w) = watched.get_mut(&key) else { continue };
                if w.generation != generation {
                    continue;
                }
                w.probing = false;
                let change = match result {
                    ProbeResult::Passed(rtt) => w.tracker.success(rtt, cfg),
                    ProbeResult::Failed(error) => {
                        if TaskEnded::find(&error).is_some() {
                            // A check that panics needs a person's attention.
                            tracing::warn!(connection = %w.entry.name, %error, "health check panicked");
                            bus.publish(Event::new(
                                w.handle.id(),
                                w.entry.name.clone(),
                                EventKind::Error { error: Arc::new(error) },
                            ));
                        } else {
                            tracing::debug!(connection = %w.entry.name, %error, "health probe failed");
                        }
                        w.tracker.failure(cfg)
                    }
                    ProbeResult::TimedOut => {
                        tracing::debug!(connection = %w.entry.name, timeout = ?cfg.probe_timeout(), "health probe timed out");
                        w.tracker.failure(cfg)
                    }
                };
                publish(w, change, bus);
                if w.connected && let Some(interval) = cfg.interval() {
                    w.probe_seq += 1;
                    // Saturating: an interval of `Duration::MAX` means "never".
                    due.push(Reverse((time::deadline(Instant::now(), interval), key, w.probe_seq)));
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

#[cfg(test)]
mod tests {
    use connection_core::Supervisor;
    use connection_testkit::{TcpEchoServer, TcpEchoTransport};

    use super::*;
    use crate::options::ConnectionOptions;

    async fn wait_health(entry: &Entry, status: crate::HealthStatus) {
        tokio::time::timeout(Duration::from_secs(60), async {
            while entry.health() != status {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never {status}, stuck at {}", entry.health()));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_of_duration_max_neither_panics_nor_stops_the_monitor() {
        let server = TcpEchoServer::start().await.unwrap();
        let bus = EventBus::new(64);
        let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
            .events(bus.clone())
            .spawn()
            .unwrap();
        let handle = conn.handle().clone();
        let entry = Arc::new(Entry::attached(
            "db".into(),
            conn,
            &ConnectionOptions::default(),
            &bus,
        ));
        // Refused by validation since settings stop at a year; the monitor must cope.
        let builder = HealthCheck::builder()
            .interval(Duration::MAX)
            .probe_timeout(Duration::MAX)
            .failure_threshold(5);
        assert!(builder.clone().build().is_err());
        let (tx, rx) = mpsc::unbounded_channel();
        let restarts = Arc::new(AtomicU64::new(0));
        let monitor = tokio::spawn(run(rx, builder.build_unchecked(), bus, restarts.clone()));
        tx.send(Cmd::Watch {
            entry: entry.clone(),
            generation: 1,
            handle,
        })
        .unwrap();

        // The first probe passes at once; the next is due "never" (an overflow before).
        wait_health(&entry, crate::HealthStatus::Healthy).await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!monitor.is_finished());
        // It still rates: five failures make the connection Unhealthy, four do not.
        for _ in 0..4 {
            tx.send(Cmd::Failure { key: entry.key }).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(entry.health(), crate::HealthStatus::Healthy);
        tx.send(Cmd::Failure { key: entry.key }).unwrap();
        wait_health(&entry, crate::HealthStatus::Unhealthy).await;
        assert_eq!(restarts.load(Ordering::Acquire), 0);
    }
}
