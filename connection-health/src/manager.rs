//! [`ConnectionManager`]: many named connections of any transports, side by side.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connection_core::metrics::{Rates, write_json_live, write_prometheus_live};
use connection_core::{
    ConfigError, ConnectionState, Error, EventBus, EventFilter, EventStream, HealthStatus, IoOf,
    LatencyRecorder, Link, ShutdownOutcome, Supervise, Supervised, SupervisorHandle, Transport,
    time,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ManagerConfig;
use crate::entry::{Entry, Started};
use crate::error::HealthError;
use crate::failover::RouteOwner;
use crate::monitor::{self, Cmd};
use crate::options::ConnectionOptions;
use crate::report::{
    ConnectFailure, ConnectReport, ConnectionStatus, MetricsReport, ShutdownReport, Statistics,
};

/// Connections a manager holds unless told otherwise
/// ([`ConnectionManagerBuilder::max_connections`]).
///
/// A bound by default, because a manager is usually fed names from code that may run
/// away (a name per request, per user, per retry) and each connection costs a task, a
/// socket and a few KiB; a cap turns such a leak into an [`AtCapacity`] error rather than
/// a process that runs out of memory or file descriptors. Ten thousand is far above what
/// a manager of named connections usually holds (tens to hundreds) and is the scale the
/// `manager` bench measures (memory per connection, `statistics()`, `connect_all`); raise
/// it for a larger fleet, up to [`MAX_CONNECTIONS_LIMIT`](crate::MAX_CONNECTIONS_LIMIT).
///
/// [`AtCapacity`]: HealthError::AtCapacity
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Longest connection name a manager takes, in bytes, unless told otherwise
/// ([`ConnectionManagerBuilder::max_name_len`]).
///
/// A name is repeated in every event, log line and exported sample of its connection
/// (about 25 samples in a Prometheus scrape): a 1 KiB name makes each scrape 25 KiB per
/// connection. 256 bytes holds any host name (253) or a URL-like label.
pub const DEFAULT_MAX_NAME_LEN: usize = 256;

enum MonitorTask {
    NotStarted(mpsc::UnboundedReceiver<Cmd>),
    Running(JoinHandle<()>),
    Stopped,
}

/// What the manager's clones, its failover groups (weakly) and its monitor share.
pub(crate) struct Shared {
    pub(crate) bus: EventBus,
    config: ManagerConfig,
    /// The configured `max_connections`, or [`DEFAULT_MAX_CONNECTIONS`].
    max_connections: usize,
    max_name_len: usize,
    entries: RwLock<HashMap<Arc<str>, Arc<Entry>>>,
    monitor_tx: mpsc::UnboundedSender<Cmd>,
    monitor: Mutex<MonitorTask>,
    monitor_started: AtomicBool,
    /// Times the monitor's loop panicked and was started again.
    monitor_restarts: Arc<AtomicU64>,
    closed: AtomicBool,
    /// Set by `disconnect_all`, cleared by the next connect: lazy failover groups do not
    /// start standbys for connections the user closed on purpose.
    suspended: AtomicBool,
    created: Instant,
}

impl Shared {
    pub(crate) fn entry(&self, name: &str) -> Result<Arc<Entry>, HealthError> {
        self.entries
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| HealthError::UnknownConnection { name: name.into() })
    }

    /// Removes a never-started entry (rolling back a failed group build).
    pub(crate) fn forget_unstarted(&self, name: &str) {
        let mut entries = self.entries.write();
        if entries.get(name).is_some_and(|e| e.handle().is_none()) {
            entries.remove(name);
        }
    }

    /// Every entry, copied out so no lock is held while they are walked.
    fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.read().values().cloned().collect()
    }

    /// Starts the entry's supervisor unless it runs, and has the monitor watch it.
    pub(crate) fn start_entry(&self, entry: &Arc<Entry>) -> Result<Started, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Shutdown {
                endpoint: entry.endpoint.clone(),
            });
        }
        self.ensure_monitor();
        let started = entry.start(&self.bus)?;
        if started.fresh {
            self.watch(entry, started.generation, started.handle.clone());
        }
        Ok(started)
    }

    fn resume(&self) {
        self.suspended.store(false, Ordering::Release);
    }

    fn watch(&self, entry: &Arc<Entry>, generation: u64, handle: SupervisorHandle) {
        // Fails only once the monitor is stopped, when nobody rates connections anymore.
        let _ = self.monitor_tx.send(Cmd::Watch {
            entry: entry.clone(),
            generation,
            handle,
        });
    }

    fn ensure_monitor(&self) {
        if self.monitor_started.load(Ordering::Acquire) {
            return;
        }
        let mut task = self.monitor.lock();
        if let MonitorTask::NotStarted(_) = &*task {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                // Spawning the supervisor fails the same way and reports it.
                return;
            };
            let MonitorTask::NotStarted(rx) = std::mem::replace(&mut *task, MonitorTask::Stopped)
            else {
                return;
            };
            let join = runtime.spawn(monitor::run(
                rx,
                self.config.health().clone(),
                self.bus.clone(),
                self.monitor_restarts.clone(),
            ));
            *task = MonitorTask::Running(join);
        }
        self.monitor_started.store(true, Ordering::Release);
    }

    fn stop_monitor(&self) {
        let task = std::mem::replace(&mut *self.monitor.lock(), MonitorTask::Stopped);
        if let MonitorTask::Running(join) = task {
            join.abort();
        }
        self.monitor_started.store(true, Ordering::Release);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The monitor holds no reference to the manager, only a receiver whose sender is
        // ours; abort it anyway so it is gone now, not at its next wake-up.
        if let MonitorTask::Running(join) = &*self.monitor.lock() {
            join.abort();
        }
    }
}

/// A manager of named connections over any transports.
///
/// Every connection is owned by a [`Supervisor`](connection_core::Supervisor) (the one
/// reconnect loop); the manager starts them, keeps their handles, rates their health
/// with one monitor task for all of them, and reports on them. Cheap to clone (an
/// `Arc` inside); `Send + Sync`, usable from any number of tasks.
///
/// Dropping the last clone stops the health monitor at once, and every supervisor shuts
/// itself down when its last handle goes (a [`FailoverGroup`](crate::FailoverGroup) still
/// held keeps its routes alive); use [`shutdown`](Self::shutdown) for a bounded, reported
/// close.
///
/// ```no_run
/// use connection_health::{ConnectionManager, ConnectionOptions};
/// use connection_core::{EventFilter, Transport};
/// use std::time::Duration;
///
/// # async fn demo<A: Transport, B: Transport>(a: A, b: B) -> Result<(), Box<dyn std::error::Error>> {
/// let manager = ConnectionManager::new();
/// manager.add("orders", a, ConnectionOptions::default())?;
/// manager.add("cache", b, ConnectionOptions::default())?;
///
/// let report = manager.connect_all().await;
/// for failure in &report.failed {
///     eprintln!("{} failed: {}", failure.name, failure.error);
/// }
/// let stats = manager.statistics();
/// println!("{}/{} connected", stats.connected, stats.connections);
/// println!("{:.1} messages/s", stats.rates.messages_per_second());
/// manager.write_prometheus(&mut std::io::stdout().lock())?;
///
/// let shutdown = manager.shutdown(Duration::from_secs(5)).await;
/// assert!(shutdown.aborted.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionManager {
    inner: Arc<Shared>,
}

impl Default for ConnectionManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`ConnectionManager`].
#[derive(Debug)]
#[must_use]
pub struct ConnectionManagerBuilder {
    config: crate::config::ManagerConfigBuilder,
}

impl ConnectionManagerBuilder {
    /// Refuse to hold more than `n` connections (default [`DEFAULT_MAX_CONNECTIONS`], at
    /// most [`MAX_CONNECTIONS_LIMIT`](crate::MAX_CONNECTIONS_LIMIT)).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config = self.config.max_connections(n);
        self
    }

    /// Refuse names longer than `bytes` (default [`DEFAULT_MAX_NAME_LEN`]); `add` and
    /// `attach` fail with [`HealthError::NameTooLong`].
    pub fn max_name_len(mut self, bytes: usize) -> Self {
        self.config = self.config.max_name_len(bytes);
        self
    }

    /// Connect attempts `connect_all` runs at once (default 256).
    pub fn connect_concurrency(mut self, n: usize) -> Self {
        self.config = self.config.connect_concurrency(n);
        self
    }

    /// Overall bound on `connect_all` (default 30 s).
    pub fn connect_deadline(mut self, limit: Duration) -> Self {
        self.config = self.config.connect_deadline(limit);
        self
    }

    /// Capacity of the event bus (default 1024).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.config = self.config.event_capacity(n);
        self
    }

    /// How connections are checked (default: passive signals only).
    pub fn health_check(mut self, check: crate::HealthCheck) -> Self {
        self.config = self.config.health_check(check);
        self
    }

    /// Validates the settings and returns the manager.
    pub fn build(self) -> Result<ConnectionManager, ConfigError> {
        Ok(ConnectionManager::with_config(self.config.build()?))
    }
}

impl ConnectionManager {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner
    }

    pub(crate) fn from_shared(inner: Arc<Shared>) -> Self {
        Self { inner }
    }

    /// A manager with the default [`ManagerConfig`]. Needs no runtime until a
    /// connection is started.
    pub fn new() -> Self {
        Self::with_config(ManagerConfig::default())
    }

    /// A builder for a manager with custom settings.
    pub fn builder() -> ConnectionManagerBuilder {
        ConnectionManagerBuilder {
            config: ManagerConfig::builder(),
        }
    }

    /// A manager with these settings (validated first).
    pub fn from_config(config: ManagerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::with_config(config))
    }

    fn with_config(config: ManagerConfig) -> Self {
        let (monitor_tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Shared {
                bus: EventBus::new(config.event_capacity()),
                max_connections: config.max_connections(),
                max_name_len: config.max_name_len(),
                config,
                entries: RwLock::new(HashMap::new()),
                monitor_tx,
                monitor: Mutex::new(MonitorTask::NotStarted(rx)),
                monitor_started: AtomicBool::new(false),
                monitor_restarts: Arc::default(),
                closed: AtomicBool::new(false),
                suspended: AtomicBool::new(false),
                created: Instant::now(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// Most connections this manager holds: the configured `max_connections`, or
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(&self) -> usize {
        self.inner.max_connections
    }

    /// Longest name this manager takes, in bytes.
    pub fn max_name_len(&self) -> usize {
        self.inner.max_name_len
    }

    /// Registers `transport` under `name` without connecting it; `connect_all`,
    /// `connect(name)` or a failover group starts it.
    ///
    /// Returns the typed [`Link`] to the connection's I/O handle: application traffic
    /// goes through it (`link.ready(within)` waits while the connection is started or
    /// re-established). It stays valid across restarts; [`link`](Self::link) finds it again
    /// by name. Failures the connection sees on that traffic count towards its health at
    /// once, like failed probes.
    ///
    /// Fails for an empty name or invalid options ([`HealthError::Config`]), a name
    /// longer than [`max_name_len`](Self::max_name_len) ([`HealthError::NameTooLong`]),
    /// a name already taken ([`HealthError::DuplicateName`]), a full manager
    /// ([`HealthError::AtCapacity`], see [`DEFAULT_MAX_CONNECTIONS`]) or a shut-down one
    /// ([`HealthError::ShutDown`]).
    pub fn add<T: Transport>(
        &self,
        name: impl Into<Arc<str>>,
        transport: T,
        options: ConnectionOptions,
    ) -> Result<Link<IoOf<T>>, HealthError> {
        let name = name.into();
        options.validate()?;
        let entry = self.insert(name.clone(), || Entry::new(name, transport, options))?;
        typed_link(&entry)
    }

    /// [`add`](Self::add), then start connecting at once; returns the supervised
    /// connection (its handle and its link).
    pub fn add_and_connect<T: Transport>(
        &self,
        name: impl Into<Arc<str>>,
        transport: T,
        options: ConnectionOptions,
    ) -> Result<Supervised<IoOf<T>>, HealthError> {
        let name = name.into();
        options.validate()?;
        let entry = self.insert(name.clone(), || Entry::new(name, transport, options))?;
        self.inner.resume();
        let handle = self.start(&entry)?;
        Ok(Supervised::from_parts(handle, typed_link(&entry)?))
    }

    /// The typed link to the I/O handle of the connection `name`, for code that did not
    /// keep the one [`add`](Self::add) returned. Fails with
    /// [`HealthError::UnknownConnection`], or [`HealthError::IoType`] when the
    /// connection carries another I/O handle type.
    pub fn link<H: Clone + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<Link<H>, HealthError> {
        typed_link(&*self.inner.entry(name)?)
    }

    /// Registers a connection supervised elsewhere: anything that implements
    /// [`Supervise`] (a [`Supervised`] from `Supervisor::spawn`, a WebSocket client...).
    /// The manager rates, reports and shuts it down like its own, but cannot start it
    /// again once it is closed; [`link`](Self::link) gives its I/O handle. Only
    /// `close_timeout` of `options` is used.
    ///
    /// Its supervisor's events show in [`subscribe`](Self::subscribe) either way: built
    /// on [`event_bus`](Self::event_bus) they are there directly (the cheapest way);
    /// on a bus of its own, one small task copies them over while the connection is
    /// registered.
    pub fn attach<S: Supervise + ?Sized>(
        &self,
        name: impl Into<Arc<str>>,
        connection: &S,
        options: ConnectionOptions,
    ) -> Result<(), HealthError> {
        let name = name.into();
        options.validate()?;
        let bus = &self.inner.bus;
        let supervised = connection.supervised();
        let entry = self.insert(name.clone(), || {
            Entry::attached(name, supervised, &options, bus)
        })?;
        self.inner.ensure_monitor();
        if let Some((handle, generation)) = entry.handle_and_generation() {
            self.inner.watch(&entry, generation, handle);
        }
        Ok(())
    }

    fn insert(
        &self,
        name: Arc<str>,
        make: impl FnOnce() -> Entry,
    ) -> Result<Arc<Entry>, HealthError> {
        if name.is_empty() {
            return Err(ConfigError::new("name", "a connection needs a non-empty name").into());
        }
        if name.len() > self.inner.max_name_len {
            let mut end = name.len().min(32);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            return Err(HealthError::NameTooLong {
                start: name[..end].into(),
                len: name.len(),
                max: self.inner.max_name_len,
            });
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(HealthError::ShutDown { name });
        }
        let mut entries = self.inner.entries.write();
        if entries.contains_key(&name) {
            return Err(HealthError::DuplicateName { name });
        }
        let max = self.inner.max_connections;
        if entries.len() >= max {
            return Err(HealthError::AtCapacity { name, max });
        }
        let entry = Arc::new(make());
        entries.insert(name, entry.clone());
        Ok(entry)
    }

    fn start(&self, entry: &Arc<Entry>) -> Result<SupervisorHandle, HealthError> {
        self.inner
            .start_entry(entry)
            .map(|s| s.handle)
            .map_err(|source| HealthError::Connection {
                name: entry.name.clone(),
                source,
            })
    }

    /// Starts connecting `name` (no effect if it is running) and returns its handle.
    pub fn connect(&self, name: &str) -> Result<SupervisorHandle, HealthError> {
        let entry = self.inner.entry(name)?;
        self.inner.resume();
        self.start(&entry)
    }

    /// Starts every connection that is not running, at most `connect_concurrency` at a
    /// time, and waits until each has a first outcome or `connect_deadline` passes.
    ///
    /// A connect slot is released at a connection's first outcome: connected, failed for
    /// good, or a first failed attempt. Connections that failed a first attempt keep being
    /// supervised and reconnect in the background (`retrying` in their
    /// [`ConnectFailure`]); those still connecting at the deadline are `pending` and keep
    /// trying; those not started by then are `not_started`. Already connected ones count
    /// as connected; `Failed` ones are restarted.
    pub async fn connect_all(&self) -> ConnectReport {
        let started_at = Instant::now();
        // Saturating: a deadline of `Duration::MAX` means "wait for every outcome".
        let deadline = time::deadline(started_at, self.inner.config.connect_deadline());
        let limit = self.inner.config.connect_concurrency();
        let entries = self.inner.all();
        self.inner.resume();
        let mut report = ConnectReport::default();
        let mut queue = entries.iter().enumerate();
        let mut done = vec![false; entries.len()];
        let mut inflight = FuturesUnordered::new();
        loop {
            while inflight.len() < limit {
                let Some((index, entry)) = queue.next() else {
                    break;
                };
                match self.inner.start_entry(entry) {
                    Ok(started) => {
                        if !started.fresh && started.handle.state() == ConnectionState::Failed {
                            started.handle.restart();
                        }
                        inflight.push(first_outcome(index, started.handle.watch_state()));
                    }
                    Err(error) => {
                        done[index] = true;
                        report.failed.push(ConnectFailure {
                            name: entry.name.clone(),
                            error: error.to_string().into(),
                            source: Some(Arc::new(error)),
                            retrying: false,
                            state: entry.state(),
                        });
                    }
                }
            }
            if inflight.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, inflight.next()).await {
                Ok(Some((index, state))) => {
                    done[index] = true;
                    let entry = &entries[index];
                    if state == ConnectionState::Connected {
                        report.connected.push(entry.name.clone());
                    } else {
                        report.failed.push(failure(entry, state));
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    drop(inflight);
                    for (index, entry) in entries.iter().enumerate() {
                        if done[index] {
                            continue;
                        }
                        if entry.handle().is_some() {
                            report.pending.push(entry.name.clone());
                        } else {
                            report.not_started.push(entry.name.clone());
                        }
                    }
                    break;
                }
            }
        }
        report.elapsed = started_at.elapsed();
        tracing::info!(
            connected = report.connected.len(),
            failed = report.failed.len(),
            pending = report.pending.len(),
            not_started = report.not_started.len(),
            elapsed = ?report.elapsed,
            "connect_all finished"
        );
        report
    }

    /// Removes `name` and closes its connection gracefully, bounded by its
    /// `close_timeout`. Returns how the close ended (`None` if it was never started).
    /// Failover groups that use it as a route see it go away (rated Unknown).
    pub async fn remove(&self, name: &str) -> Result<Option<ShutdownOutcome>, HealthError> {
        let entry = self
            .inner
            .entries
            .write()
            .remove(name)
            .ok_or_else(|| HealthError::UnknownConnection { name: name.into() })?;
        match entry.handle() {
            Some(handle) => Ok(Some(handle.shutdown(entry.close_timeout).await)),
            None => Ok(None),
        }
    }

    /// The status of `name`.
    pub fn status(&self, name: &str) -> Result<ConnectionStatus, HealthError> {
        let entry = self.inner.entry(name)?;
        Ok(status_of(&entry))
    }

    /// The status of every connection, sorted by name.
    pub fn list(&self) -> Vec<ConnectionStatus> {
        let mut all: Vec<_> = self.inner.all().iter().map(|e| status_of(e)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The names of every connection, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<_> = self.inner.entries.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.inner.entries.read().len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of `name`'s supervisor, if it was started.
    pub fn handle(&self, name: &str) -> Result<Option<SupervisorHandle>, HealthError> {
        Ok(self.inner.entry(name)?.handle())
    }

    /// The health rating of `name`.
    pub fn health(&self, name: &str) -> Result<HealthStatus, HealthError> {
        Ok(self.inner.entry(name)?.health())
    }

    /// Drops `name`'s connection and connects again at once (also leaves `Failed`);
    /// starts it if it was not running.
    pub fn restart(&self, name: &str) -> Result<(), HealthError> {
        let entry = self.inner.entry(name)?;
        let started = self
            .inner
            .start_entry(&entry)
            .map_err(|source| HealthError::Connection {
                name: entry.name.clone(),
                source,
            })?;
        if !started.fresh {
            started.handle.restart();
        }
        Ok(())
    }

    /// Counts a failure seen on real traffic of `name` (a failed request, a write
    /// error) towards its health at once, like a failed probe. Never blocks.
    pub fn report_failure(&self, name: &str, error: &Error) -> Result<(), HealthError> {
        let entry = self.inner.entry(name)?;
        tracing::debug!(connection = %entry.name, %error, "failure reported");
        entry.metrics.inc_errors();
        let _ = self.inner.monitor_tx.send(Cmd::Failure { key: entry.key });
        Ok(())
    }

    /// Counts a success seen on real traffic of `name` towards its health, like a
    /// passing probe that took `latency` (`Duration::ZERO` when unknown): it takes
    /// `recovery_threshold` of them in a row to make an Unhealthy connection healthy.
    /// With passive health checks only, this is how a connection rated Unhealthy by
    /// [`report_failure`](Self::report_failure) recovers without reconnecting. Ignored
    /// while the connection is not connected. Never blocks.
    pub fn report_success(&self, name: &str, latency: Duration) -> Result<(), HealthError> {
        let entry = self.inner.entry(name)?;
        let _ = self.inner.monitor_tx.send(Cmd::Success {
            key: entry.key,
            latency,
        });
        Ok(())
    }

    /// Closes every connection, all at once, each bounded by its `close_timeout`; the
    /// connections stay registered and `connect_all` starts them again (attached ones
    /// cannot be started again).
    pub async fn disconnect_all(&self) -> ShutdownReport {
        self.inner.suspended.store(true, Ordering::Release);
        close_all(self.inner.all(), None).await
    }

    /// Stops health checks, then shuts every connection down concurrently: each closes
    /// gracefully or is aborted at `deadline`. The manager takes no new connections
    /// afterwards.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop_monitor();
        close_all(self.inner.all(), Some(deadline)).await
    }

    /// Totals over every connection; one pass, no lock held during it.
    pub fn statistics(&self) -> Statistics {
        let entries = self.inner.all();
        let mut s = Statistics {
            connections: entries.len(),
            uptime: self.inner.created.elapsed(),
            monitor_restarts: self.inner.monitor_restarts.load(Ordering::Acquire),
            ..Statistics::default()
        };
        // One histogram for all: percentiles over every sample, not a bound from the
        // per-connection ones. Boxed: 3.7 KiB is a lot for a stack frame.
        let probe_rtt = Box::new(LatencyRecorder::new());
        let request_latency = Box::new(LatencyRecorder::new());
        let mut windows = Vec::with_capacity(entries.len());
        for entry in &entries {
            match entry.health() {
                HealthStatus::Healthy => s.healthy += 1,
                HealthStatus::Degraded => s.degraded += 1,
                HealthStatus::Unhealthy => s.unhealthy += 1,
                HealthStatus::Unknown => {}
            }
            let m = entry.metrics.snapshot_counters();
            s.connected += usize::from(m.connected);
            s.reconnects += m.reconnects;
            s.errors += m.errors;
            s.bytes_in += m.bytes_in;
            s.bytes_out += m.bytes_out;
            s.messages_in += m.messages_in;
            s.messages_out += m.messages_out;
            s.requests += m.requests;
            s.failed_requests += m.failed_requests;
            s.buffered_bytes += m.buffered_bytes.unwrap_or(0);
            windows.push(m.window);
            s.connected_time += m.uptime;
            if let Some(recorded) = entry.metrics.recorded_probe_rtt() {
                probe_rtt.merge_from(recorded);
            }
            if let Some(recorded) = entry.metrics.recorded_request_latency() {
                request_latency.merge_from(recorded);
            }
        }
        s.probe_rtt = probe_rtt.snapshot();
        s.request_latency = request_latency.snapshot();
        s.rates = Rates::total(&windows);
        s
    }

    /// Every connection's metrics, sorted by name; export with
    /// [`MetricsReport::to_json`] or [`MetricsReport::to_prometheus`]. To export many
    /// connections, [`write_prometheus`](Self::write_prometheus) and
    /// [`write_json`](Self::write_json) stream them instead of collecting them.
    pub fn metrics(&self) -> MetricsReport {
        let mut connections: Vec<_> = self
            .inner
            .all()
            .iter()
            .map(|e| (e.name.clone(), e.metrics.snapshot()))
            .collect();
        connections.sort_by(|a, b| a.0.cmp(&b.0));
        MetricsReport { connections }
    }

    /// Every connection's metrics, sorted by name, streamed into `w` as Prometheus text
    /// labelled `connection="<name>"` (the families are listed at
    /// [`connection_core::metrics::write_prometheus`]).
    ///
    /// Nothing is collected: each family reads every connection's live metrics as it is
    /// written, so what this holds besides a 32 KiB write buffer is one pointer per
    /// connection (to walk them in name order), whatever the names weigh. `w` can be a
    /// file, a socket or an HTTP response body as it is. Errors are `w`'s own.
    ///
    /// ```no_run
    /// # fn demo(manager: connection_health::ConnectionManager) -> std::io::Result<()> {
    /// let mut file = std::fs::File::create("/tmp/connections.prom")?;
    /// manager.write_prometheus(&mut file)?;
    /// # Ok(()) }
    /// ```
    pub fn write_prometheus<W: io::Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        let entries = self.sorted();
        write_prometheus_live(w, entries.iter().map(|e| (&*e.name, &*e.metrics)))
    }

    /// [`write_prometheus`](Self::write_prometheus) into a `String`, which holds the
    /// whole text: for a few connections.
    pub fn to_prometheus(&self) -> String {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_prometheus(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every connection's metrics, sorted by name, streamed into `w` as a JSON array of
    /// named snapshots ([`connection_core::metrics::write_json`]), one snapshot at a
    /// time.
    pub fn write_json<W: io::Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        let entries = self.sorted();
        write_json_live(w, entries.iter().map(|e| (&*e.name, &*e.metrics)))
    }

    /// [`write_json`](Self::write_json) into a `String`.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_json(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every entry, sorted by name.
    fn sorted(&self) -> Vec<Arc<Entry>> {
        let mut entries = self.inner.all();
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// One stream of the events of every connection started by this manager, its
    /// health changes and its failover groups' events, filtered by connection name,
    /// event type and severity (see [`EventFilter`]).
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.inner.bus.subscribe(filter)
    }

    /// The manager's event bus, to build supervisors on before [`attach`](Self::attach)
    /// so their events join the manager's stream.
    pub fn event_bus(&self) -> &EventBus {
        &self.inner.bus
    }
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("connections", &self.len())
            .field("config", &self.inner.config)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

/// Waits for a fresh or running supervisor's first outcome of this round.
async fn first_outcome(
    index: usize,
    mut rx: watch::Receiver<ConnectionState>,
) -> (usize, ConnectionState) {
    let state = match rx
        .wait_for(|s| {
            matches!(
                s,
                ConnectionState::Connected
                    | ConnectionState::Reconnecting
                    | ConnectionState::Failed
                    | ConnectionState::Closed
            )
        })
        .await
    {
        Ok(state) => *state,
        Err(_) => ConnectionState::Closed,
    };
    (index, state)
}

fn failure(entry: &Entry, state: ConnectionState) -> ConnectFailure {
    let last = entry.last_error();
    let error = match (&last, state) {
        (Some(e), _) => e.to_string().into(),
        (None, ConnectionState::Closed) => "shut down while connecting".into(),
        (None, _) => format!(
            "connection to {} lost right after connecting",
            entry.endpoint
        )
        .into(),
    };
    ConnectFailure {
        name: entry.name.clone(),
        error,
        source: last,
        retrying: state == ConnectionState::Reconnecting,
        state,
    }
}

fn status_of(entry: &Entry) -> ConnectionStatus {
    let handle = entry.handle();
    ConnectionStatus {
        name: entry.name.clone(),
        id: handle.as_ref().map(SupervisorHandle::id),
        endpoint: entry.endpoint.clone(),
        state: handle
            .as_ref()
            .map_or(ConnectionState::Disconnected, SupervisorHandle::state),
        health: entry.health(),
        last_error: entry.last_error().map(|e| e.to_string().into()),
        attached: entry.is_attached(),
        metrics: entry.metrics.snapshot(),
    }
}

/// Shuts every started connection down concurrently; `deadline` or each one's
/// `close_timeout`.
async fn close_all(entries: Vec<Arc<Entry>>, deadline: Option<Duration>) -> ShutdownReport {
    let started = Instant::now();
    let mut closing: FuturesUnordered<_> = entries
        .into_iter()
        .filter_map(|entry| {
            let handle = entry.handle()?;
            let limit = deadline.unwrap_or(entry.close_timeout);
            Some(async move { (entry.name.clone(), handle.shutdown(limit).await) })
        })
        .collect();
    let mut report = ShutdownReport::default();
    while let Some((name, outcome)) = closing.next().await {
        match outcome {
            ShutdownOutcome::Graceful => report.graceful.push(name),
            ShutdownOutcome::Aborted => report.aborted.push(name),
        }
    }
    report.elapsed = started.elapsed();
    tracing::info!(graceful = report.graceful.len(), aborted = report.aborted.len(), elapsed = ?report.elapsed, "connections closed");
    report
}

fn typed_link<H: Clone + Send + Sync + 'static>(entry: &Entry) -> Result<Link<H>, HealthError> {
    entry.link::<H>().ok_or_else(|| HealthError::IoType {
        name: entry.name.clone(),
        requested: std::any::type_name::<H>(),
        actual: entry.io_type(),
    })
}

impl RouteOwner for Shared {
    fn may_start_standby(&self) -> bool {
        !self.suspended.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire)
    }

    fn start_route(&self, entry: &Arc<Entry>) -> Result<(), Error> {
        self.start_entry(entry).map(drop)
    }

    fn report_lost(&self, entry: &Entry) {
        // A rating only: the connection counted the error itself when it saw it on its
        // traffic (`Traffic::failure`); counting it here too would count it twice.
        let _ = self.monitor_tx.send(Cmd::Lost { key: entry.key });
    }
}
