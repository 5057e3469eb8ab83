//! # connection-kit
//!
//! One dependency for the whole connection family: each crate sits behind a cargo
//! feature named after it, re-exported as a module of the same name. Pick features to
//! pull in only what you use; features only add API, never change a default.
//!
//! | feature | crate | what it brings |
//! |---|---|---|
//! | `core` (default) | `connection-core` | traits, state machine, events, metrics, supervisor |
//! | `retry` | `connection-retry` | backoff strategies, retry, circuit breaker, rate limiting, bulkhead |
//! | `pool` | `connection-pool` | `Pool` and `KeyedPool`: bounded, fair, cancellation-safe pooling |
//! | `health` | `connection-health` | health checks, failover groups, the manager of named connections |
//! | `ws` | `connection-transport-ws` | a reconnecting, heart-beating WebSocket client |
//! | `http` | `connection-transport-http` | a managed HTTP client that retries only what is safe |
//! | `sse` | `connection-transport-sse` | a spec-exact Server-Sent Events client that resumes where it left off |
//! | `tcp` | `connection-transport-tcp` | TCP and TLS with tokio-util framing, a listener, a connection cache by key |
//! | `tls` | `connection-tls` | the rustls client and server configurations the transports share |
//!
//! With `core` on, its main names are also at the root; with `retry` on, so are the
//! names your own error type meets (`Classify`, `TimedOut`, and core's
//! `Rejected`):
//!
//! ```
//! use connection_kit::{ConnectionState, Endpoint};
//!
//! let ep: Endpoint = "wss://feed.example.com/live".parse()?;
//! assert!(ep.tls());
//! assert!(ConnectionState::Connecting.can_transition_to(ConnectionState::Connected));
//! # Ok::<(), connection_kit::EndpointError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The shared vocabulary: [`Transport`], [`Connection`], [`Supervisor`], events and
/// metrics (the `connection-core` crate).
#[cfg(feature = "core")]
#[cfg_attr(docsrs, doc(cfg(feature = "core")))]
pub use connection_core as core;

/// Resilience policies (the `connection-retry` crate).
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use connection_retry as retry;

/// Connection pools (the `connection-pool` crate).
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use connection_pool as pool;

/// Health checks, failover groups and the connection manager (the `connection-health`
/// crate).
#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub use connection_health as health;

/// The WebSocket client (the `connection-transport-ws` crate).
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub use connection_transport_ws as ws;

/// The managed HTTP client (the `connection-transport-http` crate).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use connection_transport_http as http;
/// The Server-Sent Events client (the `connection-transport-sse` crate).
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub use connection_transport_sse as sse;

/// TCP and TLS with framing, the listener and the connection cache (the
/// `connection-transport-tcp` crate).
#[cfg(feature = "tcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "tcp")))]
pub use connection_transport_tcp as tcp;

/// The rustls configurations the transports and the listener share (the
/// `connection-tls` crate).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use connection_tls as tls;

#[cfg(feature = "core")]
#[cfg_attr(docsrs, doc(cfg(feature = "core")))]
pub use connection_core::{
    Backoff, ConfigError, Connection, ConnectionConfig, ConnectionId, ConnectionMetrics,
    ConnectionState, ConstantBackoff, DisconnectReason, Endpoint, EndpointError, Error, ErrorKind,
    Event, EventBus, EventFilter, EventKind, EventStream, EventType, ExponentialBackoff, IoOf,
    Link, MetricsSnapshot, RejectReason, Rejected, Severity, ShutdownOutcome, Supervise,
    Supervised, Supervisor, SupervisorHandle, Traffic, Transport, TransportExt,
};

/// Metrics and their export: [`metrics::to_prometheus`], [`metrics::to_json`] and the
/// recorders (the `metrics` module of `connection-core`).
#[cfg(feature = "core")]
#[cfg_attr(docsrs, doc(cfg(feature = "core")))]
pub use connection_core::metrics;

// What a user's own error type names to go through the policies (`impl Classify`,
// `From<Rejected>`, `From<TimedOut>`), at the root so that it is found, and so that
// compiler messages about a missing conversion print a path the user can write.
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use connection_retry::{Classify, TimedOut};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[cfg(all(
    doctest,
    feature = "health",
    feature = "ws",
    feature = "http",
    feature = "sse",
    feature = "tcp"
))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
