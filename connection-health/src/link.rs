//! [`GroupLink`]: application traffic through a failover group.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConnectionState, Error, Link};
use tokio::time::Instant;

use crate::entry::Entry;
use crate::error::HealthError;
use crate::failover::FailoverGroup;

/// Each route's link and entry, by route name.
pub(crate) type Routes<H> = HashMap<Arc<str>, (Link<H>, Arc<Entry>)>;

/// How long an operation waits for a usable primary by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// A failover group as a data plane: every operation goes to the current primary's I/O
/// handle. From [`FailoverGroup::link`]; cheap to clone.
///
/// - [`current`](Self::current) is the primary's I/O handle now.
/// - [`ready`](Self::ready) waits, bounded, for a primary whose connection is up.
/// - [`run`](Self::run) runs an operation on the primary. When it fails with a
///   connection-level error ([`Error::is_connection_level`]), the route is rated
///   Unhealthy at once (the group fails over in the same moment, without waiting for a
///   probe) and the error is returned. [`run_idempotent`](Self::run_idempotent) does the
///   same and then runs the operation once more on the new primary: use it only for
///   operations that are safe to repeat, since the first attempt may have reached the
///   server before the connection failed.
///
/// Errors: [`HealthError::NoHealthyRoute`] when no primary is usable within the wait;
/// [`HealthError::Connection`] (naming the route) when the operation itself failed.
///
/// ```no_run
/// use connection_health::{ConnectionManager, ConnectionOptions};
/// use connection_testkit::{EchoClient, TcpEchoServer, TcpEchoTransport};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let (east, west) = (TcpEchoServer::start().await?, TcpEchoServer::start().await?);
/// let manager = ConnectionManager::new();
/// manager.add("east", TcpEchoTransport::new(east.addr())?, ConnectionOptions::default())?;
/// manager.add("west", TcpEchoTransport::new(west.addr())?, ConnectionOptions::default())?;
/// let group = manager
///     .failover_group("echo")
///     .route("east", 0)
///     .route("west", 1)
///     .parallel(true)
///     .build()?;
/// manager.connect_all().await;
///
/// let api = group.link::<EchoClient>()?;
/// // Runs on the primary; if east's connection fails under it, runs once more on west.
/// let rtt = api
///     .run_idempotent(|echo| async move { echo.echo(b"GET /status").await })
///     .await?;
/// # let _ = rtt; Ok(()) }
/// ```
pub struct GroupLink<H> {
    group: FailoverGroup,
    routes: Arc<Routes<H>>,
    wait: Duration,
}

impl<H> Clone for GroupLink<H> {
    fn clone(&self) -> Self {
        Self {
            group: self.group.clone(),
            routes: self.routes.clone(),
            wait: self.wait,
        }
    }
}

impl<H> fmt::Debug for GroupLink<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLink")
            .field("group", &self.group.name())
            .field("primary", &self.group.primary())
            .field("wait", &self.wait)
            .finish()
    }
}

impl FailoverGroup {
    /// The group as a data plane: operations on the current primary's I/O handle, with
    /// failover on connection-level errors (see [`GroupLink`]). `H` is the routes' I/O
    /// handle type (the transport's [`IoOf`](connection_core::IoOf)); fails with
    /// [`HealthError::IoType`] when a route carries another type.
    pub fn link<H: Clone + Send + Sync + 'static>(&self) -> Result<GroupLink<H>, HealthError> {
        let routes = self
            .route_entries()
            .map(|(name, entry)| {
                let link = entry.link::<H>().ok_or_else(|| HealthError::IoType {
                    name: name.clone(),
                    requested: std::any::type_name::<H>(),
                    actual: entry.io_type(),
                })?;
                Ok((name.clone(), (link, entry.clone())))
            })
            .collect::<Result<Routes<H>, HealthError>>()?;
        Ok(GroupLink::new(self.clone(), routes))
    }
}

impl<H: Clone + Send + Sync + 'static> GroupLink<H> {
    fn new(group: FailoverGroup, routes: Routes<H>) -> Self {
        Self {
            group,
            routes: Arc::new(routes),
            wait: DEFAULT_WAIT,
        }
    }

    /// How long [`run`](Self::run) and [`run_idempotent`](Self::run_idempotent) wait for
    /// a usable primary (default 5 s).
    #[must_use]
    pub fn wait(mut self, limit: Duration) -> Self {
        self.wait = limit;
        self
    }

    /// The group.
    pub fn group(&self) -> &FailoverGroup {
        &self.group
    }

    /// The primary's I/O handle now, or [`HealthError::NoHealthyRoute`].
    pub fn current(&self) -> Result<H, HealthError> {
        let primary = self
            .group
            .primary()
            .ok_or_else(|| self.group.no_healthy_route())?;
        let (link, _) = &self.routes[&primary];
        link.current().map_err(|_| self.group.no_healthy_route())
    }

    /// The primary's I/O handle, waiting up to `within` for a primary whose connection
    /// is up; returns the route's name with it.
    pub async fn ready(&self, within: Duration) -> Result<(Arc<str>, H), HealthError> {
        self.ready_other_than(None, within).await
    }

    /// Like [`ready`](Self::ready), but never on the route `avoid` (the one that just
    /// failed, while the group has not yet moved away from it).
    async fn ready_other_than(
        &self,
        avoid: Option<&str>,
        within: Duration,
    ) -> Result<(Arc<str>, H), HealthError> {
        let deadline = connection_core::time::deadline(Instant::now(), within);
        let mut primary = self.group.watch_primary();
        loop {
            let name = primary
                .borrow_and_update()
                .clone()
                .filter(|n| Some(&**n) != avoid);
            let mut link = name.as_ref().map(|n| self.routes[n].0.clone());
            if let (Some(name), Some(Ok(io))) = (&name, link.as_ref().map(Link::current)) {
                return Ok((name.clone(), io));
            }
            // The primary is chosen by rating; its connection may be a step behind (or
            // ahead): wait for either to move.
            let link_moved = async {
                match link.as_mut() {
                    Some(l) => l.changed().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = primary.changed() => {
                    if changed.is_err() {
                        return Err(self.group.no_healthy_route());
                    }
                }
                // A link whose slot is gone never moves again: only the primary can.
                Ok(()) = link_moved => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(self.group.no_healthy_route());
                }
            }
        }
    }

    /// Runs `op` once on the primary's I/O handle. A connection-level failure rates the
    /// route down at once, so the next operation goes to the new primary; the error is
    /// returned (see [`run_idempotent`](Self::run_idempotent) to run it again).
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, HealthError>
    where
        F: FnOnce(H) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (route, io) = self.ready(self.wait).await?;
        match op(io).await {
            Ok(value) => Ok(value),
            Err(error) => Err(self.failed(route, error)),
        }
    }

    /// Runs `op` on the primary; when it fails with a connection-level error, rates the
    /// route down at once and runs `op` once more on the route that takes over. For
    /// idempotent operations only.
    pub async fn run_idempotent<T, F, Fut>(&self, mut op: F) -> Result<T, HealthError>
    where
        F: FnMut(H) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let (route, io) = self.ready(self.wait).await?;
        let error = match op(io).await {
            Ok(value) => return Ok(value),
            Err(error) if !error.is_connection_level() => return Err(self.failed(route, error)),
            Err(error) => error,
        };
        let first = self.failed(route.clone(), error);
        let Ok((route, io)) = self.ready_other_than(Some(&route), self.wait).await else {
            return Err(first);
        };
        tracing::debug!(group = %self.group.name(), %route, "running the operation again after failover");
        op(io).await.map_err(|error| self.failed(route, error))
    }

    /// Records a failed operation of `route`; a connection-level one rates it down.
    fn failed(&self, route: Arc<str>, error: Error) -> HealthError {
        if error.is_connection_level() {
            let (link, entry) = &self.routes[&route];
            if let Some(owner) = self.group.owner() {
                owner.report_lost(entry);
            }
            // A connection the supervisor still believes in would stay Unhealthy until a
            // probe passes (or forever, with passive checks only): start it afresh.
            if link.state() == ConnectionState::Connected
                && let Some(handle) = entry.handle()
            {
                handle.restart();
            }
        }
        HealthError::Connection {
            name: route,
            source: error,
        }
    }
}
