//! [`FailoverGroupBuilder`]: where a manager and failover groups meet. The group itself
//! (`failover.rs`) knows its routes' entries and ratings and reaches the manager only
//! through [`RouteOwner`]; this module is the composition layer that knows both.

use std::fmt;
use std::sync::Arc;

use connection_core::{ConfigError, Transport};

use crate::entry::Entry;
use crate::error::HealthError;
use crate::failover::{FailoverGroup, RouteOwner};
use crate::manager::{ConnectionManager, Shared};
use crate::options::ConnectionOptions;

impl ConnectionManager {
    /// Starts building a failover group over connections of this manager.
    pub fn failover_group(&self, name: impl Into<Arc<str>>) -> FailoverGroupBuilder {
        FailoverGroupBuilder::new(self.shared().clone(), name.into())
    }
}

/// Adds one member connection to the manager.
type AddMember = Box<dyn FnOnce(&ConnectionManager) -> Result<(), HealthError> + Send>;

/// Builds a [`FailoverGroup`] over connections of a manager; from
/// [`ConnectionManager::failover_group`](crate::ConnectionManager::failover_group).
#[must_use]
pub struct FailoverGroupBuilder {
    manager: Arc<Shared>,
    name: Arc<str>,
    routes: Vec<(Arc<str>, u32)>,
    /// Connections to add to the manager at `build`, in order.
    members: Vec<(Arc<str>, AddMember)>,
    auto_recover: bool,
    parallel: bool,
}

impl fmt::Debug for FailoverGroupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverGroupBuilder")
            .field("name", &self.name)
            .field("routes", &self.routes)
            .field(
                "members",
                &self.members.iter().map(|m| &m.0).collect::<Vec<_>>(),
            )
            .field("auto_recover", &self.auto_recover)
            .field("parallel", &self.parallel)
            .finish()
    }
}

impl FailoverGroupBuilder {
    fn new(manager: Arc<Shared>, name: Arc<str>) -> Self {
        Self {
            manager,
            name,
            routes: Vec::new(),
            members: Vec::new(),
            auto_recover: true,
            parallel: false,
        }
    }

    /// Adds the manager's connection `name` as a route; lower `priority` is preferred.
    pub fn route(mut self, name: impl Into<Arc<str>>, priority: u32) -> Self {
        self.routes.push((name.into(), priority));
        self
    }

    /// Adds `transport` to the manager under `name` and makes it a route; the
    /// connection is added at [`build`](Self::build), and removed again if the build
    /// fails. Errors as for [`ConnectionManager::add`](crate::ConnectionManager::add).
    pub fn member<T: Transport>(
        mut self,
        name: impl Into<Arc<str>>,
        transport: T,
        options: ConnectionOptions,
        priority: u32,
    ) -> Self {
        let name = name.into();
        let add_name = name.clone();
        self.members.push((
            name.clone(),
            Box::new(move |manager: &ConnectionManager| {
                manager.add(add_name, transport, options).map(drop)
            }),
        ));
        self.routes.push((name, priority));
        self
    }

    /// Return to a better route once it has recovered (default on).
    pub fn auto_recover(mut self, on: bool) -> Self {
        self.auto_recover = on;
        self
    }

    /// Keep every route connected as a hot standby (default off: standbys connect when
    /// needed).
    pub fn parallel(mut self, on: bool) -> Self {
        self.parallel = on;
        self
    }

    /// Validates the routes, starts the connections the mode asks for and returns the
    /// group. Fails for an empty name or route list ([`HealthError::Config`], fields
    /// `name` and `routes`), a route listed twice, or a route that is not a connection of
    /// the manager ([`HealthError::UnknownConnection`]).
    pub fn build(mut self) -> Result<FailoverGroup, HealthError> {
        let members = std::mem::take(&mut self.members);
        let manager = ConnectionManager::from_shared(self.manager.clone());
        let mut added = Vec::with_capacity(members.len());
        let mut result = Ok(());
        for (name, add) in members {
            result = add(&manager);
            if result.is_err() {
                break;
            }
            added.push(name);
        }
        let shared = self.manager.clone();
        let result = result.and_then(|()| self.build_routes());
        if result.is_err() {
            for name in &added {
                shared.forget_unstarted(name);
            }
        }
        result
    }

    fn build_routes(self) -> Result<FailoverGroup, HealthError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "a failover group needs a name").into());
        }
        if self.routes.is_empty() {
            return Err(
                ConfigError::new("routes", "a failover group needs at least one route").into(),
            );
        }
        let mut routes: Vec<(Arc<str>, u32, Arc<Entry>)> = Vec::with_capacity(self.routes.len());
        for (name, priority) in &self.routes {
            if routes.iter().any(|r| r.0 == *name) {
                return Err(ConfigError::new(
                    "routes",
                    format!("route `{name}` is listed twice in group `{}`", self.name),
                )
                .into());
            }
            routes.push((name.clone(), *priority, self.manager.entry(name)?));
        }
        let bus = self.manager.bus.clone();
        let owner: Arc<dyn RouteOwner> = self.manager.clone();
        FailoverGroup::start(
            self.name,
            routes,
            self.auto_recover,
            self.parallel,
            bus,
            owner,
        )
    }
}
