//! [`Supervisor`]: the one reconnect loop every transport uses.
//!
//! A supervisor is a task that owns one logical connection. It connects, watches the
//! connection (passively through [`Connection::closed`], actively through optional
//! keepalive probes), reconnects with a [`Backoff`] when the connection is lost or a
//! connect attempt fails, publishes every state change as an [`Event`], keeps
//! [`ConnectionMetrics`], and stops on request. Users hold a [`SupervisorHandle`]: cheap
//! to clone, with no type parameters, so handles to HTTP, WebSocket and TCP connections
//! sit side by side in one collection.
//!
//! ```text
//!   Disconnected -> Connecting --ok--> Connected --lost/probe failed--> Reconnecting
//!                      ^   |                                              |
//!                      |   +--retryable error--> Reconnecting ---delay----+
//!                      |   +--non-retryable----> Failed <--backoff gives up
//!                      +----------------------- restart() ----------------+
//!   shutdown() or last handle dropped: any state -> Closed (connection closed gracefully,
//!   aborted at the deadline)
//! ```
//!
//! Cancellation: the task reacts to shutdown at every await point (connect, probe,
//! backoff sleep), so shutdown latency is bounded by the graceful close alone, and that
//! is bounded by the shutdown deadline.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::backoff::{Backoff, ExponentialBackoff};
use crate::config::{ConfigError, ConnectionConfig, require_nonzero};
use crate::endpoint::Endpoint;
use crate::error::{Error, Operation};
use crate::event::{DisconnectReason, Event, EventBus, EventFilter, EventKind, EventStream};
use crate::id::ConnectionId;
use crate::link::{Link, LinkSlot, Traffic};
use crate::metrics::{ConnectionMetrics, MetricsSnapshot};
use crate::state::ConnectionState;
use crate::task::{TaskEnded, catch_panic};
use crate::time;
use crate::transport::{Connection, IoOf, Transport};

/// Default bound on closing a connection the supervisor is done with.
const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time a connection must stay up before its backoff starts over.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(10);

/// Capacity of the event bus a supervisor makes when it is given none: small, because a
/// broadcast ring allocates every slot up front and supervisors can be many (1,024 slots
/// cost about 120 KiB per connection). Share a bus ([`Supervisor::events`]) to keep more.
pub const PRIVATE_BUS_CAPACITY: usize = 16;

/// Bound on a probe asked for through a handle when no keepalive timeout is set: a
/// blackholed peer must never hold the task (and with it loss detection) for longer.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Probe requests that may wait for the task; callers beyond it wait to enqueue, so a hung
/// probe never lets requests pile up without bound.
const PROBE_QUEUE: usize = 4;

/// A handle's request for one probe of the current connection.
type ProbeRequest = oneshot::Sender<Result<Duration, Error>>;

/// Configures and starts a supervised connection.
///
/// ```no_run
/// use connection_core::{ConnectionState, ConstantBackoff, Supervisor, Transport};
/// use std::time::Duration;
///
/// # async fn run<T: Transport>(transport: T) -> Result<(), connection_core::Error> {
/// let handle = Supervisor::new(transport)
///     .name("orders-db")
///     .backoff(ConstantBackoff::new(Duration::from_millis(200)))
///     .keepalive(Duration::from_secs(10), Duration::from_secs(2))
///     .spawn()?;
///
/// let mut state = handle.watch_state();
/// state.wait_for(|s| *s == ConnectionState::Connected).await.ok();
/// println!("{:?}", handle.metrics());
/// handle.shutdown(Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[must_use = "a supervisor does nothing until spawned"]
pub struct Supervisor<T: Transport, B = ExponentialBackoff> {
    transport: T,
    backoff: B,
    name: Option<Arc<str>>,
    events: Option<EventBus>,
    metrics: Option<Arc<ConnectionMetrics>>,
    connect_timeout: Option<Duration>,
    keepalive: Option<(Duration, Duration)>,
    close_timeout: Duration,
    stable_after: Duration,
    reconnect: Reconnect,
    link_slot: Option<LinkSlot<IoOf<T>>>,
}

impl<T: Transport> Supervisor<T> {
    /// A supervisor for `transport` with the defaults: reconnect forever with jittered
    /// exponential backoff ([`ExponentialBackoff::default`]: from 250 ms, at most 30 s),
    /// which starts over once a connection has stayed up 10 s; no connect timeout beyond
    /// the transport's own; no keepalive; a small private event bus.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            backoff: ExponentialBackoff::default(),
            name: None,
            events: None,
            metrics: None,
            connect_timeout: None,
            keepalive: None,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            stable_after: DEFAULT_STABLE_AFTER,
            reconnect: Reconnect::Policy(None),
            link_slot: None,
        }
    }
}

impl<T: Transport, B: Backoff> Supervisor<T, B> {
    /// The reconnect strategy.
    pub fn backoff<B2: Backoff>(self, backoff: B2) -> Supervisor<T, B2> {
        Supervisor {
            transport: self.transport,
            backoff,
            name: self.name,
            events: self.events,
            metrics: self.metrics,
            connect_timeout: self.connect_timeout,
            keepalive: self.keepalive,
            close_timeout: self.close_timeout,
            stable_after: self.stable_after,
            reconnect: self.reconnect,
            link_slot: self.link_slot,
        }
    }

    /// The name used in events, logs and metrics; defaults to the endpoint's label.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Publish events on this bus (shared with other supervisors) instead of a private
    /// one.
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// Record into these metrics (e.g. to keep them across supervisor restarts).
    pub fn metrics(mut self, metrics: Arc<ConnectionMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Bound each connect attempt; an attempt over the limit counts as a retryable
    /// failure.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// Probe the connection every `interval`; a probe that fails or takes longer than
    /// `timeout` declares the connection dead (this catches peers that vanished without
    /// closing, which no socket event reveals).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = Some((interval, timeout));
        self
    }

    /// Publish the current connection's I/O handle into `slot` instead of a new one, so
    /// [`Link`]s made from it before (or for an earlier supervisor of the same logical
    /// connection) follow this one. For components that restart supervisors, such as a
    /// manager.
    pub fn link_slot(mut self, slot: LinkSlot<IoOf<T>>) -> Self {
        self.link_slot = Some(slot);
        self
    }

    /// How long a connection must stay up before the backoff starts over (default 10 s).
    /// A connection lost sooner counts as one more failed attempt, so a server that
    /// accepts and drops at once is retried ever more slowly instead of being hammered
    /// at the first delay forever. `Duration::ZERO` resets on every connect.
    pub fn stable_after(mut self, uptime: Duration) -> Self {
        self.stable_after = uptime;
        self
    }

    /// Turns reconnecting on (the default) or off. Off, a lost connection or a failed
    /// connect attempt ends in [`Failed`](ConnectionState::Failed) at once (a handle's
    /// `restart()` tries again); the backoff is not consulted.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = if on {
            Reconnect::Policy(None)
        } else {
            Reconnect::Off
        };
        self
    }

    /// Decides, for each lost connection, whether to reconnect (instead of
    /// [`DisconnectReason::reconnects`], the default: yes, except a close code the
    /// transport's policy names as final). Connect failures are not asked: they follow
    /// [`Error::is_retryable`] and the backoff.
    ///
    /// ```no_run
    /// # use connection_core::{DisconnectReason, Supervisor, Transport};
    /// # fn demo<T: Transport>(t: T) {
    /// // Give up when the peer says our protocol is wrong; reconnect after anything else.
    /// let s = Supervisor::new(t).reconnect_policy(|reason: &DisconnectReason| {
    ///     !matches!(reason.error(), Some(connection_core::Error::Protocol { .. }))
    /// });
    /// # let _ = s; }
    /// ```
    pub fn reconnect_policy(
        mut self,
        policy: impl Fn(&DisconnectReason) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.reconnect = Reconnect::Policy(Some(Arc::new(policy)));
        self
    }

    /// Bound on closing a connection the supervisor gives up on (default 5 s).
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.close_timeout = limit;
        self
    }

    /// Applies the lifecycle settings of a [`ConnectionConfig`]: connect timeout,
    /// keepalive and close timeout. Its reconnect schedule is set with the backoff:
    /// `.config(&cfg).backoff(cfg.backoff())`.
    pub fn config(mut self, config: &ConnectionConfig) -> Self {
        self.connect_timeout = Some(config.connect_timeout);
        self.keepalive = config.keepalive_interval.map(|i| (i, config.probe_timeout));
        self.close_timeout = config.close_timeout;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(limit) = self.connect_timeout {
            require_nonzero("connect_timeout", limit)?;
        }
        if let Some((interval, timeout)) = self.keepalive {
            require_nonzero("keepalive_interval", interval)?;
            require_nonzero("probe_timeout", timeout)?;
        }
        require_nonzero("close_timeout", self.close_timeout)
    }

    /// Validates the settings and starts the task on the current tokio runtime; returns
    /// the typed handle, whose [`Link`] gives the application the current connection's
    /// I/O handle.
    ///
    /// Fails with [`Error::Config`] for a zero timeout or interval, or when called
    /// outside a tokio runtime (field `runtime`).
    pub fn spawn(self) -> Result<Supervised<IoOf<T>>, Error> {
        self.validate()?;
        self.start()
    }

    /// Starts the task without validating: the task itself must be safe for any setting
    /// (validation refuses what makes no sense, not what would crash it), which the unit
    /// tests check through here.
    fn start(self) -> Result<Supervised<IoOf<T>>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("runtime", "spawn must be called from a tokio runtime")
        })?;
        let endpoint = self.transport.endpoint().clone();
        let name = self.name.clone().unwrap_or_else(|| endpoint.label().into());
        let (state, _) = watch::channel(ConnectionState::Disconnected);
        let slot = self
            .link_slot
            .clone()
            .unwrap_or_else(|| LinkSlot::new(endpoint.clone()));
        let link = slot.link();
        let publish_slot = slot.clone();
        let shared = Arc::new(Shared {
            id: ConnectionId::next(),
            name,
            endpoint,
            state,
            metrics: self.metrics.clone().unwrap_or_default(),
            events: self
                .events
                .clone()
                .unwrap_or_else(|| EventBus::new(PRIVATE_BUS_CAPACITY)),
            last_error: Mutex::new(None),
            last_disconnect: Mutex::new(None),
            link: Box::new(move |state, cause| publish_slot.set_state(state, cause)),
            traffic_failures: Arc::new(watch::channel(0).0),
            ended: AtomicBool::new(false),
        });
        let (control, control_rx) = watch::channel(Control::default());
        let (probes, probes_rx) = mpsc::channel(PROBE_QUEUE);
        let task = Task {
            transport: self.transport,
            backoff: self.backoff,
            connect_timeout: self.connect_timeout,
            keepalive: self.keepalive,
            close_timeout: self.close_timeout,
            stable_after: self.stable_after,
            reconnect: self.reconnect.clone(),
            shared: shared.clone(),
            control: control_rx,
            restarts_seen: 0,
            probes: probes_rx,
            slot,
        };
        let watcher = shared.clone();
        let control_seen = task.control.clone();
        let join = runtime.spawn(async move {
            // A panic in user code (a transport's connect, a connection's probe or close)
            // must not leave the handle saying Connected over a dead task.
            if let Err(payload) = catch_panic(task.run()).await {
                let shutting_down = control_seen.borrow().shutdown;
                watcher.task_ended(
                    TaskEnded::panicked("supervisor", payload.as_ref()),
                    shutting_down,
                );
            }
        });
        let handle = SupervisorHandle {
            inner: Arc::new(HandleInner {
                shared,
                control,
                probes,
                join: Mutex::new(Some(join)),
            }),
        };
        Ok(Supervised { handle, link })
    }
}

impl<T: Transport, B> fmt::Debug for Supervisor<T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.name)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// What the supervisor task and its handles share.
struct Shared {
    id: ConnectionId,
    name: Arc<str>,
    endpoint: Endpoint,
    state: watch::Sender<ConnectionState>,
    metrics: Arc<ConnectionMetrics>,
    events: EventBus,
    /// The latest connect error or error that ended a connection, so a caller that
    /// arrives after the event (e.g. waiting for a client to be ready) can still learn why.
    last_error: Mutex<Option<Arc<Error>>>,
    /// Why the last connection ended (close code and reason, error, shutdown...).
    last_disconnect: Mutex<Option<DisconnectReason>>,
    /// Mirrors every state change into the typed [`LinkSlot`] (type-erased: `Shared` is
    /// not generic, and the handle's abort path changes state without the task).
    link: Box<dyn Fn(ConnectionState, Option<Arc<Error>>) + Send + Sync>,
    /// Bumped by [`Traffic::failure`]: failures seen on real traffic.
    traffic_failures: Arc<watch::Sender<u64>>,
    /// Set when the task ended unexpectedly (a panic), before the state says so: from
    /// then on nothing may announce a new attempt (`restart`), as nobody will make it.
    ended: AtomicBool,
}

impl Shared {
    /// The task died (a panic in user code): the connection it held is gone with it.
    /// Failed, with `ended` as the cause the link, `last_error` and an Error event give;
    /// Closed instead when a shutdown was under way anyway.
    fn task_ended(&self, ended: TaskEnded, shutting_down: bool) {
        self.ended.store(true, Ordering::Release);
        let error = Arc::new(Error::other(&self.endpoint, ended, false));
        tracing::error!(connection = %self.name, %error, "supervisor task ended");
        self.metrics.inc_errors();
        *self.last_error.lock() = Some(error.clone());
        let state = *self.state.borrow();
        if state.is_connected() {
            self.metrics.mark_disconnected();
            let reason = DisconnectReason::Error(error.clone());
            *self.last_disconnect.lock() = Some(reason.clone());
            self.publish(EventKind::Disconnected { reason });
        }
        self.publish(EventKind::Error {
            error: error.clone(),
        });
        let to = if shutting_down {
            ConnectionState::Closed
        } else {
            ConnectionState::Failed
        };
        if state == to {
            // Already there (it died closing a connection it had given up on): the
            // cause is news all the same.
            (self.link)(to, Some(error));
            return;
        }
        if state == ConnectionState::Disconnected && to == ConnectionState::Failed {
            self.set_state(ConnectionState::Connecting);
        }
        if self.state.borrow().can_transition_to(to) {
            self.set_state(to);
        }
    }

    fn publish(&self, kind: EventKind) {
        self.events
            .publish(Event::new(self.id, self.name.clone(), kind));
    }

    /// The only place a supervised connection's state changes.
    fn set_state(&self, to: ConnectionState) {
        let mut from = None;
        self.state
            .send_if_modified(|current| match current.transition(to) {
                // Already there (a phase announced it early): nothing to publish.
                _ if *current == to => false,
                Ok(next) => {
                    from = Some(*current);
                    *current = next;
                    true
                }
                Err(illegal) => {
                    // A bug in this module: make tests fail loudly, keep production running.
                    debug_assert!(false, "{illegal}");
                    tracing::error!(connection = %self.name, %illegal, "refused state change");
                    false
                }
            });
        if let Some(from) = from {
            let cause = if to == ConnectionState::Failed {
                self.last_error.lock().clone()
            } else {
                None
            };
            (self.link)(to, cause);
            tracing::debug!(connection = %self.name, %from, %to, "state changed");
            self.publish(EventKind::StateChanged { from, to });
        }
    }
}

/// A user's reconnect decision, per lost connection.
type ReconnectPolicy = Arc<dyn Fn(&DisconnectReason) -> bool + Send + Sync>;

/// Whether and when a lost connection is reconnected.
#[derive(Clone)]
enum Reconnect {
    Off,
    /// With the user's policy, or the reason's own verdict.
    Policy(Option<ReconnectPolicy>),
}

impl Reconnect {
    fn enabled(&self) -> bool {
        matches!(self, Self::Policy(_))
    }

    fn reconnects(&self, reason: &DisconnectReason) -> bool {
        match self {
            Self::Off => false,
            Self::Policy(Some(policy)) => policy(reason),
            Self::Policy(None) => reason.reconnects(),
        }
    }
}

/// Requests from handles to the task. A counter rather than a flag for restarts, so two
/// quick restarts are never merged into none.
#[derive(Clone, Copy, Debug, Default)]
struct Control {
    shutdown: bool,
    restarts: u64,
}

enum Signal {
    Shutdown,
    Restart,
}

struct Task<T: Transport, B> {
    transport: T,
    backoff: B,
    connect_timeout: Option<Duration>,
    keepalive: Option<(Duration, Duration)>,
    close_timeout: Duration,
    stable_after: Duration,
    reconnect: Reconnect,
    shared: Arc<Shared>,
    control: watch::Receiver<Control>,
    restarts_seen: u64,
    probes: mpsc::Receiver<ProbeRequest>,
    slot: LinkSlot<IoOf<T>>,
}

/// How a phase of the loop ended.
enum Next {
    /// Wait for the backoff, then connect again.
    Retry(Option<Arc<Error>>),
    /// Connect again at once.
    Reconnect,
    /// Stay failed until restarted.
    Fail,
    /// Stop.
    Stop,
}

impl<T: Transport, B: Backoff> Task<T, B> {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut ever_connected = false;
        self.shared.set_state(ConnectionState::Connecting);
        loop {
            let next = match self.connect().await {
                Err(signal) => self.on_signal_while_idle(signal),
                Ok(Ok(conn)) => {
                    if ever_connected {
                        self.shared.metrics.inc_reconnects();
                    }
                    ever_connected = true;
                    let up_since = Instant::now();
                    let next = self.serve(conn).await;
                    // Only a connection that held proves the peer healthy again; one
                    // dropped at once is the next failed attempt, so the delays keep
                    // growing against a server that accepts and closes.
                    if up_since.elapsed() >= self.stable_after {
                        attempt = 0;
                        self.backoff.reset();
                    }
                    next
                }
                Ok(Err(error)) => {
                    self.shared.metrics.inc_errors();
                    let error = Arc::new(error);
                    tracing::warn!(connection = %self.shared.name, %error, "connect failed");
                    *self.shared.last_error.lock() = Some(error.clone());
                    self.shared.publish(EventKind::Error {
                        error: error.clone(),
                    });
                    if error.is_retryable() && self.reconnect.enabled() {
                        Next::Retry(Some(error))
                    } else {
                        Next::Fail
                    }
                }
            };
            let next = match next {
                Next::Retry(error) => {
                    self.shared.set_state(ConnectionState::Reconnecting);
                    attempt = attempt.saturating_add(1);
                    match self.backoff.next_delay(attempt, error.as_deref()) {
                        Some(delay) => self.wait_backoff(attempt, delay).await,
                        None => Next::Fail,
                    }
                }
                other => other,
            };
            let next = match next {
                Next::Fail => {
                    self.shared.set_state(ConnectionState::Failed);
                    match self.signal(true).await {
                        Signal::Shutdown => Next::Stop,
                        Signal::Restart => {
                            attempt = 0;
                            self.backoff.reset();
                            Next::Reconnect
                        }
                    }
                }
                other => other,
            };
            match next {
                Next::Stop => {
                    self.shared.set_state(ConnectionState::Closed);
                    return;
                }
                _ => self.shared.set_state(ConnectionState::Connecting),
            }
        }
    }

    /// One connect attempt, abandoned on shutdown. Restarts while connecting are
    /// absorbed: a connect is already what they ask for.
    async fn connect(&mut self) -> Result<Result<T::Connection, Error>, Signal> {
        let attempt = crate::transport::connect_within(&self.transport, self.connect_timeout);
        tokio::select! {
            biased;
            signal = next_signal(&mut self.control, &mut self.restarts_seen, false) => Err(signal),
            result = attempt => Ok(result),
        }
    }

    fn on_signal_while_idle(&self, signal: Signal) -> Next {
        match signal {
            Signal::Shutdown => Next::Stop,
            Signal::Restart => Next::Reconnect,
        }
    }

    async fn signal(&mut self, want_restart: bool) -> Signal {
        next_signal(&mut self.control, &mut self.restarts_seen, want_restart).await
    }

    async fn wait_backoff(&mut self, attempt: u32, delay: Duration) -> Next {
        tracing::info!(connection = %self.shared.name, attempt, ?delay, "reconnecting");
        self.shared
            .publish(EventKind::Reconnecting { attempt, delay });
        tokio::select! {
            biased;
            signal = self.signal(true) => self.on_signal_while_idle(signal),
            () = tokio::time::sleep(delay) => Next::Reconnect,
        }
    }

    /// Runs one established connection until it ends, then closes it.
    async fn serve(&mut self, mut conn: T::Connection) -> Next {
        let shared = self.shared.clone();
        conn.bind_traffic(Traffic::supervised(
            shared.metrics.clone(),
            shared.traffic_failures.clone(),
        ));
        // Before the state turns Connected, so a waiter woken by it finds the handle.
        self.slot.set_io(conn.io());
        shared.metrics.mark_connected();
        shared.set_state(ConnectionState::Connected);
        tracing::info!(connection = %shared.name, "connected");
        shared.publish(EventKind::Connected);

        let reason = self.watch(&mut conn).await;
        // Probes asked for this connection will never run on it.
        while let Ok(reply) = self.probes.try_recv() {
            let _ = reply.send(Err(Error::Closed {
                endpoint: shared.endpoint.clone(),
            }));
        }

        shared.metrics.mark_disconnected();
        if let DisconnectReason::Error(e) | DisconnectReason::ProbeFailed(e) = &reason {
            shared.metrics.inc_errors();
            *shared.last_error.lock() = Some(e.clone());
        }
        tracing::info!(connection = %shared.name, %reason, "disconnected");
        let next = match &reason {
            DisconnectReason::Shutdown => Next::Stop,
            DisconnectReason::Restart => Next::Reconnect,
            // Whether to *reconnect* a long-lived connection is not whether to *retry* a
            // request: a bad frame or a TLS error on an established connection is worth
            // a new connection. The reason carries its verdict; the user may override it.
            _ if !self.reconnect.reconnects(&reason) => Next::Fail,
            DisconnectReason::Error(e) | DisconnectReason::ProbeFailed(e) => {
                Next::Retry(Some(e.clone()))
            }
            // The peer closed cleanly: reconnect, with no error for the backoff to see.
            _ => Next::Retry(None),
        };
        *shared.last_disconnect.lock() = Some(reason.clone());
        let fatal = match (&next, &reason) {
            (Next::Fail, DisconnectReason::Error(e) | DisconnectReason::ProbeFailed(e)) => {
                Some(e.clone())
            }
            _ => None,
        };
        // Watchers learn of the loss before the (bounded, possibly slow) close of what is
        // left of the connection: failover and health react to this, and must not wait
        // for a close handshake the dead peer will never answer.
        shared.publish(EventKind::Disconnected { reason });
        if let Some(error) = fatal {
            // Given up because of an error: that needs a person's attention.
            shared.publish(EventKind::Error { error });
        }
        match next {
            // A restart goes through Reconnecting so watchers see the connection drop.
            Next::Retry(_) | Next::Reconnect => shared.set_state(ConnectionState::Reconnecting),
            Next::Fail => shared.set_state(ConnectionState::Failed),
            Next::Stop => {}
        }
        if let Err(error) = close_within(&mut conn, self.close_timeout, &shared.endpoint).await {
            tracing::debug!(connection = %shared.name, %error, "close after disconnect failed");
        }
        next
    }

    /// Waits until the connection is lost, a probe fails, or a handle asks for a stop or
    /// a restart.
    async fn watch(&mut self, conn: &mut T::Connection) -> DisconnectReason {
        let mut ticker = self.keepalive.map(|(interval, _)| {
            // Saturating: `Duration::MAX` means "never", not a panic.
            let mut t = tokio::time::interval_at(
                time::deadline(Instant::now(), interval),
                time::cap(interval),
            );
            // After a slow probe, wait a full interval instead of probing in a burst.
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                biased;
                signal = next_signal(&mut self.control, &mut self.restarts_seen, true) => {
                    return signal_reason(signal);
                }
                reason = conn.closed() => return reason,
                Some(reply) = self.probes.recv() => {
                    if let Some(reason) = self.probe_for(conn, reply).await {
                        return reason;
                    }
                    continue;
                }
                () = tick(&mut ticker) => {}
            }
            let Some((_, limit)) = self.keepalive else {
                continue;
            };
            let probe = tokio::select! {
                biased;
                signal = next_signal(&mut self.control, &mut self.restarts_seen, true) => {
                    return signal_reason(signal);
                }
                probe = tokio::time::timeout(limit, conn.probe()) => probe,
            };
            match probe {
                Ok(Ok(rtt)) => self.shared.metrics.record_probe_rtt(rtt),
                Ok(Err(error)) => return DisconnectReason::ProbeFailed(Arc::new(error)),
                Err(_) => {
                    let error = Error::timeout(&self.shared.endpoint, Operation::Probe, limit);
                    return DisconnectReason::ProbeFailed(Arc::new(error));
                }
            }
        }
    }
}

impl<T: Transport, B: Backoff> Task<T, B> {
    /// Runs one probe a handle asked for. The caller bounds it with its own timeout: when it
    /// gives up (drops the reply), the probe is abandoned too, so hung probes never pile up.
    /// A failed probe is only reported, not acted on: the caller owns the health policy.
    async fn probe_for(
        &mut self,
        conn: &mut T::Connection,
        mut reply: ProbeRequest,
    ) -> Option<DisconnectReason> {
        if reply.is_closed() {
            return None;
        }
        // Bounded even when the caller is not: the task watches for the connection's loss
        // only between probes, so a blackholed peer must not hold it here.
        let limit = self
            .keepalive
            .map_or(DEFAULT_PROBE_TIMEOUT, |(_, timeout)| timeout);
        let result = tokio::select! {
            biased;
            signal = next_signal(&mut self.control, &mut self.restarts_seen, true) => {
                let _ = reply.send(Err(Error::Closed { endpoint: self.shared.endpoint.clone() }));
                return Some(signal_reason(signal));
            }
            () = reply.closed() => return None,
            result = tokio::time::timeout(limit, conn.probe()) => result
                .unwrap_or_else(|_| Err(Error::timeout(&self.shared.endpoint, Operation::Probe, limit))),
        };
        if let Ok(rtt) = &result {
            self.shared.metrics.record_probe_rtt(*rtt);
        }
        let _ = reply.send(result);
        None
    }
}

fn signal_reason(signal: Signal) -> DisconnectReason {
    match signal {
        Signal::Shutdown => DisconnectReason::Shutdown,
        Signal::Restart => DisconnectReason::Restart,
    }
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn close_within<C: Connection>(
    conn: &mut C,
    limit: Duration,
    endpoint: &Endpoint,
) -> Result<(), Error> {
    tokio::time::timeout(limit, conn.close())
        .await
        .unwrap_or_else(|_| Err(Error::timeout(endpoint, Operation::Close, limit)))
}

/// Waits for the next request from the handles. Cancel-safe: all progress is in
/// `restarts_seen` and the watch version. When every handle is gone there is nobody left
/// to use the connection, so that counts as shutdown.
async fn next_signal(
    control: &mut watch::Receiver<Control>,
    restarts_seen: &mut u64,
    want_restart: bool,
) -> Signal {
    loop {
        {
            let c = *control.borrow_and_update();
            if c.shutdown {
                return Signal::Shutdown;
            }
            if c.restarts != *restarts_seen {
                *restarts_seen = c.restarts;
                if want_restart {
                    return Signal::Restart;
                }
            }
        }
        if control.changed().await.is_err() {
            return Signal::Shutdown;
        }
    }
}

/// How a [`SupervisorHandle::shutdown`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The connection closed gracefully within the deadline.
    Graceful,
    /// The deadline passed; the task was aborted and the connection dropped.
    Aborted,
}

/// A cheap, cloneable handle to a supervised connection.
///
/// Dropping the last handle shuts the supervisor down (gracefully, bounded by its close
/// timeout), so a forgotten handle never leaves a task behind.
#[derive(Clone)]
pub struct SupervisorHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    probes: mpsc::Sender<ProbeRequest>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl SupervisorHandle {
    /// The logical connection's id, stable across reconnects.
    pub fn id(&self) -> ConnectionId {
        self.inner.shared.id
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// Where it connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.shared.endpoint
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        *self.inner.shared.state.borrow()
    }

    /// A receiver that sees every state change; use `wait_for` to await a state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.shared.state.subscribe()
    }

    /// A snapshot of the connection's metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.shared.metrics.snapshot()
    }

    /// The live metrics, to record application traffic into.
    pub fn metrics_handle(&self) -> &Arc<ConnectionMetrics> {
        &self.inner.shared.metrics
    }

    /// Streams this connection's metrics into `w` as Prometheus text, labelled with its
    /// [`name`](Self::name) (see [`metrics::write_prometheus`](crate::metrics::write_prometheus)
    /// for the families). One snapshot, so every sample is of the same instant.
    ///
    /// ```no_run
    /// # use connection_core::{Supervisor, Transport};
    /// # fn demo<T: Transport>(transport: T) -> Result<(), Box<dyn std::error::Error>> {
    /// let conn = Supervisor::new(transport).name("orders-db").spawn()?;
    /// conn.write_prometheus(&mut std::io::stdout().lock())?; // connection="orders-db"
    /// # Ok(()) }
    /// ```
    pub fn write_prometheus<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        crate::metrics::write_prometheus(w, [(self.name(), self.metrics())])
    }

    /// [`write_prometheus`](Self::write_prometheus) into a `String`.
    pub fn to_prometheus(&self) -> String {
        let snapshot = self.metrics();
        crate::metrics::to_prometheus([(self.name(), &snapshot)])
    }

    /// Streams this connection's metrics into `w` as JSON: an array of one object named
    /// after the connection, the same shape as a manager's export of many
    /// ([`metrics::write_json`](crate::metrics::write_json)), so one parser reads both.
    pub fn write_json<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        crate::metrics::write_json(w, [(self.name(), self.metrics())])
    }

    /// [`write_json`](Self::write_json) into a `String`.
    pub fn to_json(&self) -> String {
        let snapshot = self.metrics();
        crate::metrics::to_json([(self.name(), &snapshot)])
    }

    /// The bus this supervisor publishes on.
    pub fn events(&self) -> &EventBus {
        &self.inner.shared.events
    }

    /// Subscribes to this connection's events only.
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.inner
            .shared
            .events
            .subscribe(filter.connection(self.id()))
    }

    /// Drops the current connection (if any) and connects again at once; also leaves
    /// [`Failed`](ConnectionState::Failed). No effect after shutdown, nor once the task
    /// has ended ([`is_finished`](Self::is_finished)).
    pub fn restart(&self) {
        self.inner
            .control
            .send_modify(|c| c.restarts = c.restarts.wrapping_add(1));
        // A Failed task does nothing but wait for this signal, and its next step is
        // Connecting: say so now, so that `restart(); ready(..)` waits for the new
        // attempt instead of seeing the old Failed and giving up at once.
        let shared = &self.inner.shared;
        if *shared.state.borrow() == ConnectionState::Failed && !self.is_finished() {
            shared.set_state(ConnectionState::Connecting);
        }
    }

    /// The latest error: a failed connect attempt or the error that ended a connection
    /// (kept after a later success, so it also explains a past reconnect). `None` if
    /// there was none yet.
    pub fn last_error(&self) -> Option<Arc<Error>> {
        self.inner.shared.last_error.lock().clone()
    }

    /// Why the last connection ended: the peer's close code and reason, the error, a
    /// shutdown... `None` while the first connection is up or was never made. Kept
    /// until the next loss, so a caller that notices the end late (a stream that
    /// returned `None`, a `Failed` state) still learns why without having subscribed to
    /// events beforehand.
    pub fn last_disconnect(&self) -> Option<DisconnectReason> {
        self.inner.shared.last_disconnect.lock().clone()
    }

    /// Probes the current connection once (its [`Connection::probe`]) and returns the
    /// round trip, which is also recorded in the metrics. A failed probe is reported, not
    /// acted on: whoever asks owns the health policy (see `connection-health`).
    ///
    /// Fails with [`Error::Closed`] at once when the connection is not connected. Wrap it
    /// in a timeout: dropping the future abandons the probe on the connection too, so a
    /// hung peer never makes probes pile up.
    pub async fn probe(&self) -> Result<Duration, Error> {
        let closed = || Error::Closed {
            endpoint: self.endpoint().clone(),
        };
        if !self.state().is_connected() {
            return Err(closed());
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.probes.send(tx).await.is_err() {
            return Err(closed());
        }
        // The task drops the request unanswered when the connection goes away first.
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    /// A receiver whose value counts the failures the connections of this supervisor
    /// reported on real traffic ([`Traffic::failure`]); it changes with each one. Health
    /// monitors treat a change like a failed probe.
    pub fn watch_traffic_failures(&self) -> watch::Receiver<u64> {
        self.inner.shared.traffic_failures.subscribe()
    }

    /// Whether the supervisor task has ended: shut down, or died (a panic in the
    /// transport's code; the state is then [`Failed`](ConnectionState::Failed) with a
    /// [`TaskEnded`] cause). An ended supervisor does not [`restart`](Self::restart):
    /// start a new one.
    pub fn is_finished(&self) -> bool {
        self.inner.shared.ended.load(Ordering::Acquire)
            || self
                .inner
                .join
                .lock()
                .as_ref()
                .is_none_or(JoinHandle::is_finished)
    }

    /// Stops the supervisor: closes the connection gracefully and waits up to `deadline`,
    /// then aborts the task. The state is [`Closed`](ConnectionState::Closed) afterwards
    /// either way. Safe to call from several handles; later callers wait for the first.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownOutcome {
        let started = Instant::now();
        self.inner.control.send_modify(|c| c.shutdown = true);
        let join = self.inner.join.lock().take();
        let Some(mut join) = join else {
            let mut state = self.watch_state();
            let closed =
                tokio::time::timeout(deadline, state.wait_for(|s| *s == ConnectionState::Closed));
            return match closed.await {
                Ok(_) => ShutdownOutcome::Graceful,
                Err(_) => ShutdownOutcome::Aborted,
            };
        };
        let outcome = match tokio::time::timeout(deadline, &mut join).await {
            Ok(_) => ShutdownOutcome::Graceful,
            Err(_) => {
                join.abort();
                // Wait for the abort to land so the connection is really dropped.
                let _ = join.await;
                let shared = &self.inner.shared;
                shared.metrics.mark_disconnected();
                if shared.state.borrow().is_connected() {
                    shared.publish(EventKind::Disconnected {
                        reason: DisconnectReason::Shutdown,
                    });
                }
                if *shared.state.borrow() != ConnectionState::Closed {
                    shared.set_state(ConnectionState::Closed);
                }
                ShutdownOutcome::Aborted
            }
        };
        tracing::debug!(connection = %self.name(), ?outcome, elapsed = ?started.elapsed(), "supervisor shut down");
        outcome
    }
}

impl fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("endpoint", self.endpoint())
            .field("state", &self.state())
            .finish()
    }
}

/// A supervised connection, typed by the I/O handle its connections give the
/// application: what [`Supervisor::spawn`] returns.
///
/// It is a [`SupervisorHandle`] (state, events, metrics, probe, restart, shutdown: it
/// derefs to one) plus a [`Link`] to the current connection's I/O handle. Cheap to clone;
/// dropping the last clone (and every `SupervisorHandle` cloned from it) shuts the
/// supervisor down.
///
/// ```no_run
/// use connection_core::Supervisor;
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TcpEchoServer::start().await?;
/// let conn = Supervisor::new(TcpEchoTransport::new(server.addr())?).spawn()?;
/// // Waits (at most 1 s) while connecting; the handle is the connection's I/O handle.
/// let echo = conn.ready(Duration::from_secs(1)).await?;
/// echo.echo(b"hello").await?;
/// println!("{:?}", conn.metrics());
/// conn.shutdown(Duration::from_secs(1)).await;
/// # Ok(()) }
/// ```
pub struct Supervised<H> {
    handle: SupervisorHandle,
    link: Link<H>,
}

impl<H> Clone for Supervised<H> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            link: self.link.clone(),
        }
    }
}

impl<H> fmt::Debug for Supervised<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervised")
            .field("id", &self.handle.id())
            .field("name", &self.handle.name())
            .field("endpoint", self.handle.endpoint())
            .field("state", &self.handle.state())
            .finish()
    }
}

impl<H> std::ops::Deref for Supervised<H> {
    type Target = SupervisorHandle;

    fn deref(&self) -> &SupervisorHandle {
        &self.handle
    }
}

impl<H> AsRef<SupervisorHandle> for Supervised<H> {
    fn as_ref(&self) -> &SupervisorHandle {
        &self.handle
    }
}

impl<H: Clone> Supervised<H> {
    /// Pairs a supervisor's handle with a link to its connections' I/O handles (for
    /// clients built on a supervisor that expose the pair through [`Supervise`]).
    pub fn from_parts(handle: SupervisorHandle, link: Link<H>) -> Self {
        Self { handle, link }
    }

    /// The untyped handle, for collections of connections of different kinds.
    pub fn handle(&self) -> &SupervisorHandle {
        &self.handle
    }

    /// The link to the current connection's I/O handle.
    pub fn link(&self) -> &Link<H> {
        &self.link
    }

    /// The current connection's I/O handle, without waiting (see [`Link::current`]).
    pub fn current(&self) -> Result<H, Error> {
        self.link.current()
    }

    /// The current connection's I/O handle, waiting up to `within` while connecting
    /// (see [`Link::ready`]).
    pub async fn ready(&self, within: Duration) -> Result<H, Error> {
        self.link.ready(within).await
    }

    /// Splits into the untyped handle and the link.
    pub fn into_parts(self) -> (SupervisorHandle, Link<H>) {
        (self.handle, self.link)
    }
}

/// Anything supervised that carries traffic: the one way a manager, a failover group or
/// any other component takes hold of a connection supervised elsewhere (a
/// [`Supervised`] from [`Supervisor::spawn`], a WebSocket client, an HTTP client...).
pub trait Supervise {
    /// The I/O handle its connections give the application.
    type Io: Clone + Send + Sync + 'static;

    /// The supervised connection: its untyped handle and its link.
    fn supervised(&self) -> Supervised<Self::Io>;
}

impl<H: Clone + Send + Sync + 'static> Supervise for Supervised<H> {
    type Io = H;

    fn supervised(&self) -> Supervised<H> {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    //! The task on settings validation refuses: it must neither panic nor stop reacting.
    //! (The testkit's transports implement another build of this crate's traits, so
    //! these tests bring a small loopback transport of their own.)

    use super::*;
    use crate::backoff::ConstantBackoff;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    struct Tcp(Endpoint);

    struct TcpConn {
        id: ConnectionId,
        stream: TcpStream,
    }

    impl Transport for Tcp {
        type Connection = TcpConn;

        async fn connect(&self) -> Result<TcpConn, Error> {
            let stream = TcpStream::connect(self.0.authority())
                .await
                .map_err(|e| Error::connect(&self.0, e))?;
            Ok(TcpConn {
                id: ConnectionId::next(),
                stream,
            })
        }

        fn endpoint(&self) -> &Endpoint {
            &self.0
        }
    }

    impl Connection for TcpConn {
        type Io = ();

        fn io(&self) {}

        fn id(&self) -> ConnectionId {
            self.id
        }

        fn state(&self) -> ConnectionState {
            ConnectionState::Connected
        }

        async fn probe(&mut self) -> Result<Duration, Error> {
            Ok(Duration::ZERO)
        }

        async fn closed(&mut self) -> DisconnectReason {
            let mut buf = [0u8; 16];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return DisconnectReason::PeerClosed,
                    Ok(_) => {}
                }
            }
        }

        async fn close(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }

    async fn wait(handle: &SupervisorHandle, state: ConnectionState) {
        let mut rx = handle.watch_state();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| *s == state))
            .await
            .unwrap_or_else(|_| panic!("never {state}, stuck in {}", handle.state()))
            .expect("state channel");
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_and_timeouts_of_duration_max_neither_panic_nor_stop_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = Tcp(Endpoint::host_port("127.0.0.1", addr.port()).unwrap());
        let supervisor = Supervisor::new(transport)
            .backoff(ConstantBackoff::new(Duration::from_millis(100)))
            .keepalive(Duration::MAX, Duration::MAX)
            .connect_timeout(Duration::MAX)
            .close_timeout(Duration::MAX)
            .stable_after(Duration::MAX);
        // Refused by validation since settings stop at a year; the task must cope anyway.
        assert!(supervisor.validate().is_err());
        let conn = supervisor.start().unwrap();
        let (first, _) = listener.accept().await.unwrap();
        wait(&conn, ConnectionState::Connected).await;

        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!conn.is_finished(), "the task died");
        assert_eq!(conn.state(), ConnectionState::Connected);
        conn.probe().await.unwrap();
        conn.ready(Duration::MAX).await.unwrap();

        // It still sees the peer go, and connects again.
        drop(first);
        wait(&conn, ConnectionState::Reconnecting).await;
        let _second = listener.accept().await.unwrap();
        wait(&conn, ConnectionState::Connected).await;
        assert_eq!(conn.metrics().reconnects, 1);
        conn.shutdown(Duration::MAX).await;
        assert_eq!(conn.state(), ConnectionState::Closed);
    }
}
