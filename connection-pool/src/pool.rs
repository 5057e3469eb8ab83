//! [`Pool`]: the handle, `get`, `status`, `close`.
//!
//! # Checkout
//!
//! `get` first takes a slot ([`Shared::try_acquire`], one short lock, no allocation when
//! a connection is idle), then makes it ready outside the lock: a connection that
//! reports itself not connected, is past its lifetime, or (when not used within
//! `recycle_window`) fails a probe is discarded and *its slot is reused* to connect a
//! fresh one, so the caller keeps its place instead of queueing again.
//!
//! In strict mode a `get` that finds nothing idle and takes a free slot to connect
//! also queues for a connection given back meanwhile, and takes whichever comes first
//! ([`Shared::connect_racing`]); a connect that loses finishes in the background and
//! serves a waiter, idles up to `min_idle`, or is closed. So a burst of demand opens
//! connections only while the ones in use do not come back sooner.
//!
//! # Cancellation
//!
//! Every await in `get` holds either a queue entry (which leaves the queue when dropped)
//! or a `Slot` (which gives itself back when dropped). A connection being validated when
//! the caller gives up is discarded by default, since a half-finished probe may leave
//! bytes in flight on it, and its slot goes to the next waiter;
//! [`CancelledValidation::Return`] gives the connection back instead, to be probed again
//! at its next checkout.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::panic::Location;

use connection_core::{
    Connection, ConnectionState, DisconnectReason, EventBus, EventKind, Transport,
};
use tokio::time::Instant;

use crate::config::{CancelledValidation, PoolConfig};
use crate::error::PoolError;
use crate::inner::{Acquire, Raced, Shared, Slot, peer_gone};
use crate::maintainer;
use crate::status::{CloseReason, PoolMetrics, Status};

/// A bounded, fair pool of connections of one [`Transport`].
///
/// Cheap to clone: clones share the pool. The background maintainer (when a setting
/// needs one) stops when the pool is closed or the last handle is dropped; guards that
/// are still out keep working and their connections are closed on return.
pub struct Pool<T: Transport> {
    shared: Arc<Shared<T>>,
}

impl<T: Transport> Pool<T> {
    /// A pool of `transport`'s connections with `config`'s settings.
    ///
    /// Starts the maintainer when `min_idle`, `idle_timeout`, `max_lifetime`,
    /// `keepalive_interval` or `leak_threshold` is set; that needs a tokio runtime, and without one those
    /// settings are refused (the error names `min_idle`, or the first one set).
    pub fn new(transport: T, config: PoolConfig) -> Result<Self, connection_core::ConfigError> {
        Self::with_cap(transport, config, None, None)
    }

    pub(crate) fn with_cap(
        transport: T,
        config: PoolConfig,
        cap: Option<Arc<crate::inner::Cap<T>>>,
        events: Option<(EventBus, Arc<str>)>,
    ) -> Result<Self, connection_core::ConfigError> {
        config.validate()?;
        let needs = config.needs_maintainer();
        let field = if config.min_idle > 0 {
            "min_idle"
        } else if config.idle_timeout.is_some() {
            "idle_timeout"
        } else if config.max_lifetime.is_some() {
            "max_lifetime"
        } else if config.keepalive_interval.is_some() {
            "keepalive_interval"
        } else {
            "leak_threshold"
        };
        let shared = Arc::new(Shared::new(transport, config, cap, events));
        if needs {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return Err(connection_core::ConfigError::new(
                    field,
                    "needs a tokio runtime for the pool's maintainer",
                ));
            };
            rt.spawn(maintainer::run(Arc::clone(&shared)));
        }
        Ok(Self { shared })
    }

    /// A builder over the default settings: `Pool::builder(t).max_size(8).spawn()`;
    /// [`PoolBuilder::configure`] reaches every other setting.
    pub fn builder(transport: T) -> PoolBuilder<T> {
        PoolBuilder {
            transport,
            config: PoolConfig::builder(),
            events: None,
        }
    }

    /// Takes a connection: an idle one, a new one, or the next one returned.
    ///
    /// Fails with [`PoolError::Timeout`] after `wait_timeout`, [`PoolError::Connect`]
    /// when this call's own connect attempt fails, and [`PoolError::Closed`].
    /// Cancel-safe: dropping the future at any point gives back whatever it held.
    ///
    /// The caller's source location is kept (a `&'static` reference, no allocation) so
    /// that a leak report can say where a connection held too long was taken.
    #[track_caller]
    pub fn get(&self) -> impl Future<Output = Result<PoolGuard<T>, PoolError>> + '_ {
        self.get_at(Location::caller())
    }

    pub(crate) async fn get_at(
        &self,
        at: &'static Location<'static>,
    ) -> Result<PoolGuard<T>, PoolError> {
        let shared = &self.shared;
        let slot = match Shared::try_acquire(shared, at)? {
            // Nothing idle: connect, but take a connection given back meanwhile if it
            // comes first (strict mode; a keyed pool's total cap keeps plain connects).
            Acquire::Ready(slot)
                if slot.conn.is_none()
                    && shared.config.fairness == crate::config::Fairness::Strict
                    && shared.cap.is_none() =>
            {
                return match Shared::connect_racing(shared, slot, at).await? {
                    Raced::Connected(slot) => Ok(PoolGuard { slot: Some(slot) }),
                    Raced::Handed(slot) => ready(slot).await,
                };
            }
            Acquire::Ready(slot) => slot,
            waiting => {
                shared.counters.waited.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                // Saturating: a wait of `Duration::MAX` means "as long as it takes".
                let deadline = shared
                    .config
                    .wait_timeout
                    .map(|d| connection_core::time::deadline(started, d));
                let slot = match waiting {
                    Acquire::Queued(id, rx) => Shared::wait_handoff(shared, id, rx, deadline).await,
                    _ => Shared::wait_barging(shared, deadline, at).await,
                }?;
                shared.wait_time.record(started.elapsed());
                slot
            }
        };
        ready(slot).await
    }

    /// Changes `max_size` at run time.
    ///
    /// Growing serves waiting `get` calls at once with the new room. Shrinking closes
    /// idle connections beyond `max_size` now and connections in use as they come back
    /// (they are not handed to waiters meanwhile), so the pool never again holds more
    /// than `max_size`. [`Status::max_size`] shows the current cap; [`config`](Self::config)
    /// keeps the one the pool was built with. Fails, naming `max_size`, for zero or less
    /// than `min_idle`; on a closed pool it does nothing.
    ///
    /// ```
    /// use connection_pool::Pool;
    /// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TcpEchoServer::start().await?;
    /// let pool = Pool::builder(TcpEchoTransport::new(server.addr())?).max_size(1).spawn()?;
    /// let first = pool.get().await?;
    /// pool.resize(2)?;                        // room for a second one at once
    /// let second = pool.get().await?;
    /// assert_eq!(pool.status().size, 2);
    ///
    /// pool.resize(1)?;
    /// drop(first);                            // closed on return: one too many
    /// assert_eq!(pool.status().size, 1);
    /// assert!(pool.resize(0).is_err());
    /// # drop(second);
    /// # Ok(()) }
    /// ```
    pub fn resize(&self, max_size: usize) -> Result<(), connection_core::ConfigError> {
        if max_size == 0 {
            return Err(connection_core::ConfigError::new(
                "max_size",
                "must be greater than zero",
            ));
        }
        let min_idle = self.shared.config.min_idle;
        if max_size < min_idle {
            return Err(connection_core::ConfigError::new(
                "max_size",
                format!("{max_size} is less than min_idle {min_idle}"),
            ));
        }
        Shared::resize(&self.shared, max_size);
        Ok(())
    }

    /// The pool's occupancy now.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Status, counters and wait-time summary, serializable.
    pub fn metrics(&self) -> PoolMetrics {
        self.shared.metrics()
    }

    /// The settings.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// Closes the pool: waiting and later `get` calls fail with [`PoolError::Closed`],
    /// idle connections are closed gracefully (this waits for that), connections in use
    /// are closed when their guards drop, and the maintainer stops.
    pub async fn close(&self) {
        let (idle, waiters) = {
            let mut st = self.shared.state.lock();
            self.shared.close_locked(&mut st)
        };
        drop(waiters);
        self.shared.give_units(idle.len());
        self.shared.wake_all_waiters();
        self.shared.maintainer.notify_one();
        let limit = self
            .shared
            .config
            .validate_timeout
            .unwrap_or(std::time::Duration::from_secs(5));
        for mut c in idle {
            self.shared
                .publish(c.conn.id(), || EventKind::Disconnected {
                    reason: DisconnectReason::Shutdown,
                });
            let _ = tokio::time::timeout(limit, c.conn.close()).await;
        }
    }
}

/// Turns a slot into a guard: checks a pooled connection, or connects.
async fn ready<T: Transport>(mut slot: Slot<T>) -> Result<PoolGuard<T>, PoolError> {
    let shared = Arc::clone(&slot.shared);
    if let Some(idle) = slot.conn.as_mut() {
        let now = if shared.uses_clock {
            Instant::now()
        } else {
            idle.last_ok
        };
        let reason = if idle.conn.state() != ConnectionState::Connected {
            Some(CloseReason::Broken)
        } else if peer_gone(&mut idle.conn) {
            // A server that restarted inside `recycle_window`: the socket said so, no
            // probe needed and none skipped.
            Some(CloseReason::PeerClosed)
        } else if idle.expired(now) {
            Some(CloseReason::Lifetime)
        } else if shared.config.validate_timeout.is_some()
            && now.saturating_duration_since(idle.last_ok) >= shared.config.recycle_window
        {
            // The connection stays in the slot while it is probed, so a cancelled `get`
            // hands it to `release` with these flags: closed, or returned unvouched for.
            slot.unchecked = true;
            slot.broken = shared.config.cancelled_validation == CancelledValidation::Discard;
            let ok = shared.probe(idle).await;
            slot.unchecked = false;
            slot.broken = false;
            (!ok).then_some(CloseReason::FailedValidation)
        } else {
            None
        };
        match reason {
            None => return Ok(PoolGuard { slot: Some(slot) }),
            Some(reason) => {
                shared.counters.closed(reason);
                shared.discard(slot.conn.take());
            }
        }
    }
    match shared.create().await {
        Ok(idle) => {
            slot.conn = Some(idle);
            Ok(PoolGuard { slot: Some(slot) })
        }
        Err(source) => {
            shared.record_error(&source);
            Err(PoolError::Connect { source })
        }
    }
}

impl<T: Transport> Pool<T> {
    pub(crate) fn shared(&self) -> &Arc<Shared<T>> {
        &self.shared
    }
}

impl<T: Transport> Clone for Pool<T> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Transport> Drop for Pool<T> {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.stopped.store(true, Ordering::Release);
            self.shared.maintainer.notify_one();
        }
    }
}

impl<T: Transport> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", self.shared.transport.endpoint())
            .field("status", &self.status())
            .finish()
    }
}

/// Builds a [`Pool`]: the [`PoolConfig`] builder's settings plus the transport.
#[must_use]
pub struct PoolBuilder<T: Transport> {
    transport: T,
    config: crate::config::PoolConfigBuilder,
    events: Option<(EventBus, Arc<str>)>,
}

impl<T: Transport> fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("endpoint", self.transport.endpoint())
            .field("config", &self.config)
            .finish()
    }
}

impl<T: Transport> PoolBuilder<T> {
    /// Changes the settings through the [`PoolConfig`] builder.
    pub fn configure(
        mut self,
        f: impl FnOnce(crate::config::PoolConfigBuilder) -> crate::config::PoolConfigBuilder,
    ) -> Self {
        self.config = f(self.config);
        self
    }

    /// Most connections open at once.
    pub fn max_size(self, n: usize) -> Self {
        self.configure(|c| c.max_size(n))
    }

    /// Idle connections the maintainer keeps ready.
    pub fn min_idle(self, n: usize) -> Self {
        self.configure(|c| c.min_idle(n))
    }

    /// Publishes the pool's events on `bus` under `name`: `Connected` and
    /// `Disconnected` (reason `Shutdown`) for each connection the pool opens and
    /// closes, `Error` for each failed connect, and `ConnectionLeak` for each checkout
    /// held past `leak_threshold`. Events about no one connection (errors, leaks) carry
    /// the pool's own [`ConnectionId`](connection_core::ConnectionId). Nothing is
    /// published on the `get`/drop path of a pooled connection.
    ///
    /// ```
    /// use connection_core::{EventBus, EventFilter, EventKind};
    /// use connection_pool::Pool;
    /// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
    /// use futures::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TcpEchoServer::start().await?;
    /// let bus = EventBus::new(64);
    /// let mut events = bus.subscribe(EventFilter::all().name("db"));
    /// let pool = Pool::builder(TcpEchoTransport::new(server.addr())?)
    ///     .events(bus.clone(), "db")
    ///     .spawn()?;
    /// drop(pool.get().await?);
    /// let first = events.next().await.ok_or("no event")??;
    /// assert!(matches!(first.kind, EventKind::Connected));
    /// # Ok(()) }
    /// ```
    pub fn events(mut self, bus: EventBus, name: impl Into<Arc<str>>) -> Self {
        self.events = Some((bus, name.into()));
        self
    }

    /// Validates the settings and starts the pool: `spawn`, like every builder that
    /// starts a background task (the maintainer runs when the settings need one), so it
    /// must be called inside a tokio runtime. See [`Pool::new`].
    pub fn spawn(self) -> Result<Pool<T>, connection_core::ConfigError> {
        Pool::with_cap(self.transport, self.config.build()?, None, self.events)
    }
}

/// A connection checked out of a [`Pool`]; dropping it gives the connection back.
///
/// Derefs to the connection. A connection whose [`Connection::state`] is not
/// connected when it comes back, or that was [`mark_broken`](Self::mark_broken), is
/// closed rather than reused.
pub struct PoolGuard<T: Transport> {
    // `Some` until `detach` takes it; both `detach` and drop consume the guard, so every
    // other method sees `Some`.
    slot: Option<Slot<T>>,
}

impl<T: Transport> PoolGuard<T> {
    fn idle(&self) -> Option<&crate::inner::Idle<T::Connection>> {
        self.slot.as_ref().and_then(|s| s.conn.as_ref())
    }

    /// Discard this connection on return instead of reusing it.
    pub fn mark_broken(&mut self) {
        if let Some(s) = self.slot.as_mut() {
            s.broken = true;
        }
    }

    /// Takes the connection out of the pool for good; its place is freed for a new one.
    pub fn detach(mut self) -> T::Connection {
        let conn = self.slot.take().and_then(Slot::detach);
        match conn {
            Some(c) => c,
            // A guard is only made with a connection in its slot.
            None => unreachable!("a pool guard always holds a connection"),
        }
    }
}

impl<T: Transport> Deref for PoolGuard<T> {
    type Target = T::Connection;

    fn deref(&self) -> &T::Connection {
        match self.idle() {
            Some(i) => &i.conn,
            None => unreachable!("a pool guard always holds a connection"),
        }
    }
}

impl<T: Transport> DerefMut for PoolGuard<T> {
    fn deref_mut(&mut self) -> &mut T::Connection {
        match self.slot.as_mut().and_then(|s| s.conn.as_mut()) {
            Some(i) => &mut i.conn,
            None => unreachable!("a pool guard always holds a connection"),
        }
    }
}

impl<T: Transport> fmt::Debug for PoolGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolGuard")
            .field("connection", &self.idle().map(|i| i.conn.id()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    //! The pool on settings validation refuses: its maintainer and checkouts must
    //! neither panic nor stall whatever the durations are.

    use std::time::Duration;

    use connection_testkit::{TcpEchoServer, TcpEchoTransport};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn durations_of_duration_max_neither_panic_nor_stall_checkouts() {
        let server = TcpEchoServer::start().await.unwrap();
        let mut cfg = PoolConfig::builder()
            .max_size(1)
            .min_idle(1)
            .lifetime_jitter(0.5)
            .build()
            .unwrap();
        cfg.wait_timeout = Some(Duration::MAX);
        cfg.create_timeout = Duration::MAX;
        cfg.validate_timeout = Some(Duration::MAX);
        cfg.recycle_window = Duration::MAX;
        cfg.idle_timeout = Some(Duration::MAX);
        cfg.max_lifetime = Some(Duration::MAX);
        cfg.keepalive_interval = Some(Duration::MAX);
        cfg.leak_threshold = Some(Duration::MAX);
        // Refused since settings stop at a year; the runtime must cope anyway.
        assert!(cfg.validate().is_err());
        let transport = TcpEchoTransport::new(server.addr()).unwrap();
        let shared = Arc::new(Shared::new(transport, cfg, None, None));
        tokio::spawn(maintainer::run(Arc::clone(&shared)));
        let pool = Pool { shared };

        let mut first = pool.get().await.unwrap();
        first.echo(b"one").await.unwrap();
        // A second checkout waits (deadline "never") for the first to come back.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                c.echo(b"two").await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(pool.status().waiting, 1);
        drop(first);
        tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .unwrap()
            .unwrap();

        // An hour on, the maintainer is alive and nothing expired.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        pool.get().await.unwrap().echo(b"three").await.unwrap();
        let m = pool.metrics();
        assert_eq!((m.created, m.maintainer_restarts), (1, 0), "{m:?}");
        assert_eq!(pool.status().idle, 1);
    }
}
