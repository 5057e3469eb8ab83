//! [`FailoverGroup`]: several routes to one service, exactly one of them primary.

use std::fmt;
use std::sync::{Arc, Weak};

use connection_core::{
    ConnectionId, ConnectionState, Error, Event, EventBus, EventFilter, EventKind, EventStream,
    HealthStatus, SupervisorHandle,
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::entry::{Entry, RatingListener};
use crate::error::HealthError;
use crate::events::{Failover, PrimaryChanged};
use crate::health::usable;

/// What a group needs of whoever owns its routes' connections (the manager): starting a
/// standby route, and rating a route down on a failure seen on its traffic. A trait, so
/// the group sits on top of entries and ratings without knowing the manager.
pub(crate) trait RouteOwner: Send + Sync {
    /// Whether standby routes may be started now (not after `disconnect_all` or
    /// `shutdown`).
    fn may_start_standby(&self) -> bool;
    /// Starts the route's connection unless it runs.
    fn start_route(&self, entry: &Arc<Entry>) -> Result<(), Error>;
    /// A connection-level failure on the route's traffic: rate it Unhealthy now.
    fn report_lost(&self, entry: &Entry);
}

/// A group of redundant routes with one primary.
///
/// The routes are connections of a [`ConnectionManager`](crate::ConnectionManager), each
/// with a priority (lower is preferred). The group never probes anything itself: it
/// reacts to the rating changes of the manager's health monitor, inside the monitor task,
/// the moment they happen. A primary that drops is rated Unhealthy as soon as its
/// supervisor notices the loss (the socket closing), so failover is passive and does not
/// wait for a probe interval.
///
/// Rules, applied on every rating change of a route and on every manual switch:
///
/// - A route is *usable* when it is rated Healthy or Degraded. A route not rated yet
///   (Unknown, e.g. still connecting, or connected but not probed yet) is not usable.
/// - While the primary is usable it stays primary, even Degraded. With `auto_recover`,
///   a Healthy route with a better priority takes over again (a [`PrimaryChanged`] event), unless the
///   primary was chosen by [`FailoverGroup::set_primary`], which pins it until it fails.
///   Recovery follows the health check's `recovery_threshold`: a failed route is usable
///   again only after that many passing probes in a row.
/// - When the primary stops being usable, the best route becomes primary at once (the
///   first Healthy one by priority, else the first Degraded one), with a [`Failover`] event naming both routes and the reason.
/// - When no route is usable the group has no primary: [`FailoverGroup::primary`] returns
///   `None`, [`FailoverGroup::require_primary`] fails with
///   [`HealthError::NoHealthyRoute`], and the group publishes `HealthChanged` to
///   Unhealthy under its own name. The first route to become usable then takes over with
///   a `Failover` event from the route that was lost.
///
/// Standbys: in `parallel` mode every route is connected from the start (hot standby,
/// fastest failover). By default standbys connect lazily: only the preferred route is
/// started, and when no started route is usable the next route by priority is started;
/// failover then waits for that connect. A standby started this way stays connected.
/// No standby is started after `disconnect_all` (until the next connect) or `shutdown`.
///
/// Group events (`Failover`, `PrimaryChanged`, the group's `HealthChanged`) are published
/// on the manager's bus under the group's own [`ConnectionId`] and name.
///
/// [`PrimaryChanged`]: crate::events::PrimaryChanged
/// [`Failover`]: crate::events::Failover
///
/// Cheap to clone; clones share the group. The group keeps its routes' connections
/// alive while it exists.
///
/// ```no_run
/// use connection_health::{ConnectionManager, ConnectionOptions};
/// use connection_core::Transport;
///
/// # async fn demo<T: Transport>(a: T, b: T) -> Result<(), connection_health::HealthError> {
/// let manager = ConnectionManager::new();
/// manager.add("east", a, ConnectionOptions::default())?;
/// manager.add("west", b, ConnectionOptions::default())?;
/// let group = manager
///     .failover_group("api")
///     .route("east", 0)
///     .route("west", 1)
///     .parallel(true)
///     .auto_recover(true)
///     .build()?;
/// let mut primary = group.watch_primary();
/// primary.wait_for(|p| p.is_some()).await.ok();
/// let handle = group.require_primary()?;
/// println!("using {}", handle.name());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FailoverGroup {
    inner: Arc<GroupInner>,
}

struct Route {
    name: Arc<str>,
    priority: u32,
    entry: Arc<Entry>,
}

struct GroupState {
    primary: Option<usize>,
    /// Chosen by `set_primary`: auto-recover leaves it alone until it fails.
    pinned: bool,
    /// The primary that was lost while no other route was usable, and why.
    lost: Option<(Arc<str>, Arc<str>)>,
    health: HealthStatus,
}

pub(crate) struct GroupInner {
    name: Arc<str>,
    id: ConnectionId,
    /// Sorted by priority, stable for equal priorities.
    routes: Vec<Route>,
    auto_recover: bool,
    parallel: bool,
    state: Mutex<GroupState>,
    primary_tx: watch::Sender<Option<Arc<str>>>,
    bus: EventBus,
    owner: Weak<dyn RouteOwner>,
}

impl GroupInner {
    fn publish(&self, kind: EventKind) {
        self.bus
            .publish(Event::new(self.id, self.name.clone(), kind));
    }

    /// Called by the health monitor after `entry`'s rating changed.
    fn on_health_change(&self, entry: &Entry, to: HealthStatus) {
        let mut st = self.state.lock();
        let changed = self.routes.iter().position(|r| r.entry.key == entry.key);
        tracing::trace!(group = %self.name, route = ?changed.map(|i| &self.routes[i].name), %to, "route health changed");
        self.evaluate(&mut st);
    }

    /// The best route to switch to: the first Healthy one by priority, else the first
    /// Degraded one.
    fn best_usable(&self) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.entry.health() == HealthStatus::Healthy)
            .or_else(|| self.routes.iter().position(|r| usable(r.entry.health())))
    }

    fn evaluate(&self, st: &mut GroupState) {
        let best = self.best_usable();
        match st.primary {
            Some(p) if usable(self.routes[p].entry.health()) => {
                if self.auto_recover
                    && !st.pinned
                    && let Some(b) = best
                    && self.routes[b].entry.health() == HealthStatus::Healthy
                    && self.routes[b].priority < self.routes[p].priority
                {
                    self.switch(st, b, None);
                }
            }
            Some(p) => {
                let lost = &self.routes[p];
                let reason: Arc<str> = format!(
                    "{} is {} ({})",
                    lost.name,
                    lost.entry.health(),
                    lost.entry.state()
                )
                .into();
                st.pinned = false;
                match best {
                    Some(b) => self.switch(st, b, Some((lost.name.clone(), reason))),
                    None => {
                        tracing::warn!(group = %self.name, route = %lost.name, %reason, "no healthy route left");
                        st.primary = None;
                        st.lost = Some((lost.name.clone(), reason));
                        self.primary_tx.send_replace(None);
                        self.set_health(st, HealthStatus::Unhealthy);
                        self.start_standby();
                    }
                }
            }
            None => match best {
                Some(b) => {
                    // Back on the route that was lost is a recovery, not a failover.
                    let lost = st
                        .lost
                        .take()
                        .filter(|(name, _)| *name != self.routes[b].name);
                    self.switch(st, b, lost);
                }
                None => {
                    if st.lost.is_some()
                        || self
                            .routes
                            .iter()
                            .all(|r| r.entry.health() == HealthStatus::Unhealthy)
                    {
                        self.set_health(st, HealthStatus::Unhealthy);
                    }
                    self.start_standby();
                }
            },
        }
    }

    /// Makes route `to` primary. `failover` carries the lost route and the reason when
    /// this is a failover rather than a planned change.
    fn switch(&self, st: &mut GroupState, to: usize, failover: Option<(Arc<str>, Arc<str>)>) {
        let from = st.primary.map(|p| self.routes[p].name.clone());
        let to_name = self.routes[to].name.clone();
        st.primary = Some(to);
        self.primary_tx.send_replace(Some(to_name.clone()));
        match failover {
            Some((lost, reason)) => {
                tracing::warn!(group = %self.name, from = %lost, to = %to_name, %reason, "failover");
                self.publish(
                    Failover {
                        from: Some(lost),
                        to: to_name,
                        reason,
                    }
                    .into(),
                );
            }
            None => {
                tracing::info!(group = %self.name, from = ?from, to = %to_name, "primary changed");
                self.publish(PrimaryChanged { from, to: to_name }.into());
            }
        }
        self.set_health(st, HealthStatus::Healthy);
    }

    fn set_health(&self, st: &mut GroupState, to: HealthStatus) {
        if st.health != to {
            let from = std::mem::replace(&mut st.health, to);
            self.publish(EventKind::HealthChanged { from, to });
        }
    }

    /// Lazy mode: when no started route is usable, start the next route by priority
    /// that has no running supervisor.
    fn start_standby(&self) {
        if self.parallel {
            return;
        }
        let Some(owner) = self.owner.upgrade() else {
            return;
        };
        if !owner.may_start_standby() {
            return;
        }
        let running = |r: &Route| {
            r.entry
                .handle()
                .is_some_and(|h| h.state() != ConnectionState::Closed)
        };
        // A started route that is still on its way (not rated yet) may yet come up.
        if self
            .routes
            .iter()
            .any(|r| running(r) && r.entry.health() == HealthStatus::Unknown)
        {
            return;
        }
        if let Some(next) = self.routes.iter().find(|r| !running(r)) {
            tracing::info!(group = %self.name, route = %next.name, "starting standby route");
            if let Err(error) = owner.start_route(&next.entry) {
                tracing::warn!(group = %self.name, route = %next.name, %error, "standby route failed to start");
            }
        }
    }
}

impl FailoverGroup {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The id the group's own events carry.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The current primary route, or `None` when no route is usable.
    pub fn primary(&self) -> Option<Arc<str>> {
        self.inner.primary_tx.borrow().clone()
    }

    /// The handle of the primary route's connection, or `None` when no route is usable.
    pub fn primary_handle(&self) -> Option<SupervisorHandle> {
        let st = self.inner.state.lock();
        st.primary.and_then(|p| self.inner.routes[p].entry.handle())
    }

    /// The primary's handle, or [`HealthError::NoHealthyRoute`].
    pub fn require_primary(&self) -> Result<SupervisorHandle, HealthError> {
        self.primary_handle().ok_or_else(|| self.no_healthy_route())
    }

    /// A receiver that sees every change of primary (`None` while no route is usable);
    /// `wait_for` awaits a switch.
    pub fn watch_primary(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.inner.primary_tx.subscribe()
    }

    /// Makes `route` the primary now. Refused for a route that is not in the group
    /// ([`HealthError::UnknownRoute`]) or not usable ([`HealthError::RouteUnhealthy`]).
    /// The chosen route stays primary, even with `auto_recover`, until it fails.
    pub fn set_primary(&self, route: &str) -> Result<(), HealthError> {
        let inner = &self.inner;
        let index = inner
            .routes
            .iter()
            .position(|r| &*r.name == route)
            .ok_or_else(|| HealthError::UnknownRoute {
                group: inner.name.clone(),
                route: route.into(),
            })?;
        let r = &inner.routes[index];
        let status = r.entry.health();
        if !usable(status) {
            return Err(HealthError::RouteUnhealthy {
                group: inner.name.clone(),
                route: r.name.clone(),
                endpoint: r.entry.endpoint.clone(),
                status,
            });
        }
        let mut st = inner.state.lock();
        st.pinned = true;
        st.lost = None;
        if st.primary != Some(index) {
            inner.switch(&mut st, index, None);
        }
        Ok(())
    }

    /// Every route with its priority, rating, state and whether it is primary, in
    /// priority order.
    pub fn routes(&self) -> Vec<RouteStatus> {
        let primary = self.inner.state.lock().primary;
        self.inner
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| RouteStatus {
                name: r.name.clone(),
                priority: r.priority,
                health: r.entry.health(),
                state: r.entry.state(),
                primary: primary == Some(i),
            })
            .collect()
    }

    pub(crate) fn no_healthy_route(&self) -> HealthError {
        HealthError::NoHealthyRoute {
            group: self.inner.name.clone(),
            preferred: self.inner.routes[0].entry.endpoint.clone(),
        }
    }

    pub(crate) fn owner(&self) -> Option<Arc<dyn RouteOwner>> {
        self.inner.owner.upgrade()
    }

    /// Each route's name and entry, in priority order.
    pub(crate) fn route_entries(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Entry>)> {
        self.inner.routes.iter().map(|r| (&r.name, &r.entry))
    }

    /// A group over `routes` (name, priority, entry; checked by the caller): registers
    /// it as a listener of its routes' ratings, starts the routes the mode asks for
    /// through `owner`, and elects a first primary.
    #[allow(clippy::too_many_arguments)] // private; every argument is a distinct setting
    pub(crate) fn start(
        name: Arc<str>,
        routes: Vec<(Arc<str>, u32, Arc<Entry>)>,
        auto_recover: bool,
        parallel: bool,
        bus: EventBus,
        owner: Arc<dyn RouteOwner>,
    ) -> Result<Self, HealthError> {
        let mut routes: Vec<Route> = routes
            .into_iter()
            .map(|(name, priority, entry)| Route {
                name,
                priority,
                entry,
            })
            .collect();
        routes.sort_by_key(|r| r.priority);
        let (primary_tx, _) = watch::channel(None);
        let inner = Arc::new(GroupInner {
            name,
            id: ConnectionId::next(),
            routes,
            auto_recover,
            parallel,
            state: Mutex::new(GroupState {
                primary: None,
                pinned: false,
                lost: None,
                health: HealthStatus::Unknown,
            }),
            primary_tx,
            bus,
            owner: Arc::downgrade(&owner),
        });
        let listener: Arc<dyn RatingListener> = inner.clone();
        for route in &inner.routes {
            route.entry.listen(Arc::downgrade(&listener));
        }
        let to_start = if inner.parallel {
            inner.routes.len()
        } else {
            1
        };
        for route in &inner.routes[..to_start] {
            owner
                .start_route(&route.entry)
                .map_err(|source| HealthError::Connection {
                    name: route.name.clone(),
                    source,
                })?;
        }
        {
            let mut st = inner.state.lock();
            inner.evaluate(&mut st);
        }
        Ok(Self { inner })
    }

    /// The group's own events (`Failover`, `PrimaryChanged`, its `HealthChanged`).
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.inner.bus.subscribe(filter.connection(self.inner.id))
    }
}

impl fmt::Debug for FailoverGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverGroup")
            .field("name", &self.inner.name)
            .field("primary", &self.primary())
            .field("routes", &self.inner.routes.len())
            .field("auto_recover", &self.inner.auto_recover)
            .field("parallel", &self.inner.parallel)
            .finish()
    }
}

/// One route of a [`FailoverGroup`], as seen now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RouteStatus {
    /// The connection's name in the manager.
    pub name: Arc<str>,
    /// Lower is preferred.
    pub priority: u32,
    /// Its rating.
    pub health: HealthStatus,
    /// Its supervisor's state.
    pub state: ConnectionState,
    /// Whether it is the primary.
    pub primary: bool,
}

impl RatingListener for GroupInner {
    fn on_rating(&self, entry: &Entry, to: HealthStatus) {
        self.on_health_change(entry, to);
    }
}
