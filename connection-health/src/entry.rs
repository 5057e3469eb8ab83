//! One registered connection: how to start its supervisor, the handle of the running one,
//! its metrics (kept across restarts) and its health rating.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use connection_core::{
    ConnectionMetrics, ConnectionState, Endpoint, Error, EventBus, EventFilter, HealthStatus, IoOf,
    Link, LinkSlot, Supervised, Supervisor, SupervisorHandle, Transport,
};
use futures::StreamExt;
use parking_lot::Mutex;

use crate::options::ConnectionOptions;

/// The last connect error of a connection, for reports: a cheap clone of the error
/// itself, with its kind; formatted only when a report asks.
pub(crate) type LastErrorCell = Arc<Mutex<Option<Arc<Error>>>>;

/// Starts a supervisor for a connection; type-erases the transport.
trait Spawn: Send + Sync {
    fn spawn(
        &self,
        name: Arc<str>,
        bus: EventBus,
        metrics: Arc<ConnectionMetrics>,
    ) -> Result<SupervisorHandle, Error>;
}

struct Spawner<T: Transport> {
    transport: Arc<T>,
    options: ConnectionOptions,
    last_error: LastErrorCell,
    /// Shared by every supervisor this entry starts, so links handed out stay valid.
    slot: LinkSlot<IoOf<T>>,
}

impl<T: Transport> Spawn for Spawner<T> {
    fn spawn(
        &self,
        name: Arc<str>,
        bus: EventBus,
        metrics: Arc<ConnectionMetrics>,
    ) -> Result<SupervisorHandle, Error> {
        let transport = Managed {
            inner: self.transport.clone(),
            connect_timeout: self.options.connect_timeout(),
            last_error: self.last_error.clone(),
        };
        let mut supervisor = Supervisor::new(transport)
            .name(name)
            .backoff(self.options.make_backoff())
            .events(bus)
            .metrics(metrics)
            .link_slot(self.slot.clone())
            .close_timeout(self.options.close_timeout());
        if let Some((interval, timeout)) = self.options.keepalive() {
            supervisor = supervisor.keepalive(interval, timeout);
        }
        supervisor.spawn().map(|s| s.into_parts().0)
    }
}

/// The transport the supervisor sees: the user's, shared so the connection can be
/// started again, with the connect timeout applied here so every connect error, a
/// timeout included, passes by and is remembered for reports.
struct Managed<T> {
    inner: Arc<T>,
    connect_timeout: Option<Duration>,
    last_error: LastErrorCell,
}

impl<T: Transport> Transport for Managed<T> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<T::Connection, Error> {
        let result = connection_core::connect_within(&self.inner, self.connect_timeout).await;
        if let Err(error) = &result {
            *self.last_error.lock() = Some(Arc::new(error.clone()));
        }
        result
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

/// Hears of an entry's rating changes, in the monitor task, the moment they happen.
/// Failover groups are the listeners; the entry knows them only through this trait, so
/// the layers stay one-way: rating, entry, monitor, then failover on top.
pub(crate) trait RatingListener: Send + Sync {
    /// `entry` is now rated `to`.
    fn on_rating(&self, entry: &Entry, to: HealthStatus);
}

/// The current supervisor of an entry and how many have been started.
struct Slot {
    handle: Option<SupervisorHandle>,
    generation: u64,
}

/// What [`Entry::start`] did.
pub(crate) struct Started {
    pub(crate) handle: SupervisorHandle,
    pub(crate) generation: u64,
    /// A new supervisor was spawned (the monitor must be told).
    pub(crate) fresh: bool,
}

pub(crate) struct Entry {
    pub(crate) key: u64,
    pub(crate) name: Arc<str>,
    pub(crate) endpoint: Endpoint,
    pub(crate) close_timeout: Duration,
    spawner: Option<Box<dyn Spawn>>,
    pub(crate) metrics: Arc<ConnectionMetrics>,
    slot: Mutex<Slot>,
    health: AtomicU8,
    pub(crate) last_error: LastErrorCell,
    /// Who hears of this connection's rating changes: the failover groups it is a route
    /// of (weak: groups own their routes, not the other way round).
    listeners: Mutex<Vec<Weak<dyn RatingListener>>>,
    /// For an attached connection on a bus of its own: the task copying its events onto
    /// the manager's bus, stopped with the entry.
    forward: Option<AbortOnDrop>,
    /// The typed `Link<Io>` to the connection's I/O handle (type-erased: entries of
    /// every transport sit in one map).
    link: Box<dyn Any + Send + Sync>,
    /// The I/O handle's type name, for the error of a lookup with the wrong type.
    io_type: &'static str,
}

/// Aborts a task when dropped, so an entry's helper task never outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies every event of `handle`'s connection onto `bus`, until aborted or until the
/// source bus is gone. A lagging copy loses events like any slow subscriber would.
fn forward_events(handle: &SupervisorHandle, bus: EventBus) -> Option<AbortOnDrop> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let mut events = handle.subscribe(EventFilter::all());
    Some(AbortOnDrop(runtime.spawn(async move {
        while let Some(event) = events.next().await {
            if let Ok(event) = event {
                bus.publish(event);
            }
        }
    })))
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

impl Entry {
    pub(crate) fn new<T: Transport>(
        name: Arc<str>,
        transport: T,
        options: ConnectionOptions,
    ) -> Self {
        let endpoint = transport.endpoint().clone();
        let last_error = LastErrorCell::default();
        let close_timeout = options.close_timeout();
        let slot = LinkSlot::<IoOf<T>>::new(endpoint.clone());
        let link = slot.link();
        Self::build(
            name,
            endpoint,
            close_timeout,
            Some(Box::new(Spawner {
                transport: Arc::new(transport),
                options,
                last_error: last_error.clone(),
                slot,
            })),
            Arc::default(),
            None,
            last_error,
            link,
        )
    }

    /// A connection supervised elsewhere. Its events are copied onto `bus` unless its
    /// supervisor already publishes there.
    pub(crate) fn attached<H: Clone + Send + Sync + 'static>(
        name: Arc<str>,
        supervised: Supervised<H>,
        options: &ConnectionOptions,
        bus: &EventBus,
    ) -> Self {
        let (handle, link) = supervised.into_parts();
        let forward = if handle.events().same_bus(bus) {
            None
        } else {
            forward_events(&handle, bus.clone())
        };
        let mut entry = Self::build(
            name,
            handle.endpoint().clone(),
            options.close_timeout(),
            None,
            handle.metrics_handle().clone(),
            Some(handle),
            LastErrorCell::default(),
            link,
        );
        entry.forward = forward;
        entry
    }

    #[allow(clippy::too_many_arguments)] // private; every argument is a distinct part
    fn build<H: Clone + Send + Sync + 'static>(
        name: Arc<str>,
        endpoint: Endpoint,
        close_timeout: Duration,
        spawner: Option<Box<dyn Spawn>>,
        metrics: Arc<ConnectionMetrics>,
        handle: Option<SupervisorHandle>,
        last_error: LastErrorCell,
        link: Link<H>,
    ) -> Self {
        Self {
            key: NEXT_KEY.fetch_add(1, Relaxed),
            name,
            endpoint,
            close_timeout,
            spawner,
            metrics,
            slot: Mutex::new(Slot {
                generation: u64::from(handle.is_some()),
                handle,
            }),
            health: AtomicU8::new(encode(HealthStatus::Unknown)),
            last_error,
            listeners: Mutex::new(Vec::new()),
            forward: None,
            link: Box::new(link),
            io_type: std::any::type_name::<H>(),
        }
    }

    /// The link to the connection's I/O handle, if `H` is its type.
    pub(crate) fn link<H: Clone + Send + Sync + 'static>(&self) -> Option<Link<H>> {
        self.link.downcast_ref::<Link<H>>().cloned()
    }

    /// The name of the connection's I/O handle type.
    pub(crate) fn io_type(&self) -> &'static str {
        self.io_type
    }

    /// The running (or finished) supervisor's handle, if one was ever started.
    pub(crate) fn handle(&self) -> Option<SupervisorHandle> {
        self.slot.lock().handle.clone()
    }

    pub(crate) fn handle_and_generation(&self) -> Option<(SupervisorHandle, u64)> {
        let slot = self.slot.lock();
        slot.handle.clone().map(|h| (h, slot.generation))
    }

    pub(crate) fn state(&self) -> ConnectionState {
        self.slot
            .lock()
            .handle
            .as_ref()
            .map_or(ConnectionState::Disconnected, SupervisorHandle::state)
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.spawner.is_none()
    }

    /// Returns the live supervisor, spawning one when there is none or the last one was
    /// shut down or died. An attached connection cannot be started again once closed.
    pub(crate) fn start(&self, bus: &EventBus) -> Result<Started, Error> {
        let mut slot = self.slot.lock();
        // A supervisor whose task died (a panic in the transport) is Failed for good:
        // start a new one, as for a closed one.
        if let Some(handle) = &slot.handle
            && handle.state() != ConnectionState::Closed
            && !(handle.is_finished() && self.spawner.is_some())
        {
            return Ok(Started {
                handle: handle.clone(),
                generation: slot.generation,
                fresh: false,
            });
        }
        let Some(spawner) = &self.spawner else {
            return Err(Error::Shutdown {
                endpoint: self.endpoint.clone(),
            });
        };
        *self.last_error.lock() = None;
        let handle = spawner.spawn(self.name.clone(), bus.clone(), self.metrics.clone())?;
        slot.generation += 1;
        slot.handle = Some(handle.clone());
        Ok(Started {
            handle,
            generation: slot.generation,
            fresh: true,
        })
    }

    pub(crate) fn health(&self) -> HealthStatus {
        decode(self.health.load(Relaxed))
    }

    pub(crate) fn set_health(&self, status: HealthStatus) {
        self.health.store(encode(status), Relaxed);
    }

    pub(crate) fn last_error(&self) -> Option<Arc<Error>> {
        // A supervisor that died keeps why in its own last error: that is the news,
        // not the connect error before it.
        if let Some(handle) = self.handle()
            && handle.is_finished()
            && handle.state() == ConnectionState::Failed
            && let Some(error) = handle.last_error()
        {
            return Some(error);
        }
        self.last_error.lock().clone()
    }

    /// Registers a listener for this connection's rating changes.
    pub(crate) fn listen(&self, listener: Weak<dyn RatingListener>) {
        self.listeners.lock().push(listener);
    }

    /// The listeners that are still alive.
    pub(crate) fn listeners(&self) -> Vec<Arc<dyn RatingListener>> {
        let mut listeners = self.listeners.lock();
        listeners.retain(|l| l.strong_count() > 0);
        listeners.iter().filter_map(Weak::upgrade).collect()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("state", &self.state())
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

fn encode(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Unknown => 0,
        HealthStatus::Healthy => 1,
        HealthStatus::Degraded => 2,
        HealthStatus::Unhealthy => 3,
    }
}

fn decode(v: u8) -> HealthStatus {
    match v {
        1 => HealthStatus::Healthy,
        2 => HealthStatus::Degraded,
        3 => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    }
}
