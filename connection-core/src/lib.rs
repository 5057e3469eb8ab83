//! # connection-core
//!
//! The shared vocabulary of the connection crates, and the one reconnect loop they all
//! use.
//!
//! - [`Transport`] opens connections to an [`Endpoint`]; [`Connection`] is one of them.
//!   Policies wrap transports through [`TransportExt`] (this crate adds
//!   [`timeout`](TransportExt::timeout); `connection-retry` adds retry, circuit breaking
//!   and rate limiting).
//! - [`ConnectionState`] is the state machine, with every legal transition in one table.
//! - [`Error`] names the endpoint and knows whether to retry ([`Error::is_retryable`]).
//! - [`Event`]s flow through an [`EventBus`] to filtered subscribers without ever
//!   blocking the publisher.
//! - [`metrics`]: lock-free counters and latency histograms, exported as Prometheus text
//!   or JSON.
//! - [`Backoff`] decides reconnect delays; [`Supervisor`] owns a connection, reconnects
//!   it, publishes its events and keeps its metrics; [`Supervised`] is what users hold:
//!   a [`SupervisorHandle`] plus a [`Link`] to the current connection's I/O handle
//!   ([`Connection::Io`]), so application traffic goes through the supervised
//!   connection. [`Traffic`] is how a connection records what it carries.
//! - [`ConnectionConfig`] holds the settings a deployment tunes, from a builder, serde or
//!   `CONNECTION_*` environment variables.
//!
//! ## Example
//!
//! Supervise any transport and watch its state:
//!
//! ```no_run
//! use connection_core::{ConnectionState, ConstantBackoff, EventFilter, Supervisor, Transport};
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! # async fn demo<T: Transport>(transport: T) -> Result<(), connection_core::Error> {
//! let handle = Supervisor::new(transport)
//!     .backoff(ConstantBackoff::new(Duration::from_millis(500)))
//!     .connect_timeout(Duration::from_secs(3))
//!     .spawn()?;
//! let mut events = handle.subscribe(EventFilter::all());
//! while let Some(Ok(event)) = events.next().await {
//!     println!("{event}");
//!     if handle.state() == ConnectionState::Connected {
//!         break;
//!     }
//! }
//! handle.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod config;
mod endpoint;
pub mod env;
mod error;
mod event;
mod id;
mod link;
pub mod metrics;
mod state;
mod supervisor;
pub mod task;
pub mod time;
mod transport;

pub use backoff::{Backoff, ConstantBackoff, ExponentialBackoff};
pub use config::{
    ConfigError, ConnectionConfig, ConnectionConfigBuilder, ENV_PREFIX, MAX_DURATION,
    require_at_most_max, require_in_range, require_nonzero,
};
pub use endpoint::{Endpoint, EndpointError, EndpointErrorKind};
pub use error::{
    BoxError, Error, ErrorKind, Operation, RejectReason, Rejected, SharedError, io_is_retryable,
    shared,
};
pub use event::{
    DisconnectReason, Event, EventBus, EventFilter, EventKind, EventStream, EventType,
    ExtensionEvent, HealthStatus, Lagged, Severity,
};
pub use id::ConnectionId;
pub use link::{Link, LinkSlot, Traffic};
pub use metrics::{ConnectionMetrics, LatencyRecorder, LatencySnapshot, MetricsSnapshot};
pub use state::{ConnectionState, IllegalTransition};
pub use supervisor::{
    DEFAULT_STABLE_AFTER, PRIVATE_BUS_CAPACITY, ShutdownOutcome, Supervise, Supervised, Supervisor,
    SupervisorHandle,
};
pub use transport::{Connection, IoOf, Timeout, Transport, TransportExt, connect_within};
