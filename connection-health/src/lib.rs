//! # connection-health
//!
//! The manager of many named connections, their health checks and failover groups.
//!
//! ## Design
//!
//! Every connection is owned by a core [`Supervisor`](connection_core::Supervisor), the
//! one reconnect loop of the workspace; this crate never reconnects anything itself.
//! [`ConnectionManager::add`] type-erases a transport of any kind into a small entry
//! that knows how to start a supervisor for it (on the manager's one shared
//! [`EventBus`](connection_core::EventBus), with metrics kept across restarts), so HTTP,
//! WebSocket and TCP connections sit side by side. Adding does not connect:
//! [`ConnectionManager::connect_all`] starts them with bounded concurrency and an
//! overall deadline and reports partial success as a normal result.
//!
//! One monitor task per manager watches every connection: it holds one `watch` receiver
//! of each supervisor's state (a drop is seen at once, not at the next probe), runs the
//! [`HealthCheck`] probes concurrently up to a bound with at most one in flight per
//! connection, rates connections Healthy / Degraded / Unhealthy with failure and
//! recovery thresholds, publishes every change, and hands it straight to the
//! [`FailoverGroup`]s the connection belongs to, which switch their primary in the same
//! step. Per connection this costs one supervisor task, one state receiver and a few
//! hundred bytes in the monitor, and no event subscription.
//!
//! Events: supervisors started by the manager publish on its bus, next to the health
//! changes and the failover groups' events, so [`ConnectionManager::subscribe`] is one
//! stream over everything. A connection supervised elsewhere and
//! [attached](ConnectionManager::attach) keeps its own bus unless it was built on
//! [`ConnectionManager::event_bus`].
//!
//! Lifecycle: [`ConnectionManager::shutdown`] stops the monitor and closes every
//! connection concurrently within a deadline, reporting what had to be aborted.
//! Dropping the last clone of the manager aborts the monitor, and each supervisor ends
//! when its last handle goes, so nothing is left running.
//!
//! ## Example
//!
//! ```no_run
//! use connection_health::{ConnectionManager, ConnectionOptions, Failover, HealthCheck};
//! use connection_core::{EventFilter, Transport};
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! # async fn demo<T: Transport>(primary: T, standby: T) -> Result<(), connection_health::HealthError> {
//! let manager = ConnectionManager::builder()
//!     .health_check(HealthCheck::builder().interval(Duration::from_secs(5)).build()?)
//!     .build()?;
//! manager.add("primary", primary, ConnectionOptions::default())?;
//! manager.add("standby", standby, ConnectionOptions::default())?;
//!
//! let group = manager
//!     .failover_group("service")
//!     .route("primary", 0)
//!     .route("standby", 1)
//!     .parallel(true)
//!     .build()?;
//!
//! let mut failovers = manager.subscribe(EventFilter::all().extensions([Failover::NAME]));
//! while let Some(Ok(event)) = failovers.next().await {
//!     println!("{event}; primary is now {:?}", group.primary());
//! }
//! manager.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod check;
mod config;
mod entry;
mod error;
pub mod events;
mod failover;
mod group_builder;
mod health;
mod link;
mod manager;
mod monitor;
mod options;
mod report;

pub use check::{CheckFn, CheckFuture, HealthCheck, HealthCheckBuilder};
pub use config::{
    ENV_PREFIX, MAX_CONNECT_CONCURRENCY, MAX_CONNECTIONS_LIMIT, MAX_EVENT_CAPACITY,
    MAX_NAME_LEN_LIMIT, ManagerConfig, ManagerConfigBuilder,
};
pub use error::HealthError;
pub use events::{Failover, MonitorRestarted, PrimaryChanged};
pub use failover::{FailoverGroup, RouteStatus};
pub use group_builder::FailoverGroupBuilder;
pub use link::GroupLink;
pub use manager::{
    ConnectionManager, ConnectionManagerBuilder, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_NAME_LEN,
};
pub use options::{ConnectionOptions, ConnectionOptionsBuilder};
pub use report::{
    ConnectFailure, ConnectReport, ConnectionStatus, MetricsReport, ShutdownReport, Statistics,
};

/// Re-exported from core: a connection's health rating.
pub use connection_core::HealthStatus;
