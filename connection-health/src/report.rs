//! What the manager reports: connect and shutdown results, statuses, statistics and
//! metrics.

use std::sync::Arc;
use std::time::Duration;

use connection_core::metrics::{Rates, to_json, to_prometheus, write_json, write_prometheus};
use connection_core::{
    ConnectionId, ConnectionState, Endpoint, HealthStatus, LatencySnapshot, MetricsSnapshot,
};
use serde::Serialize;

/// The result of [`ConnectionManager::connect_all`](crate::ConnectionManager::connect_all).
///
/// Partial success is a normal outcome: every connection is in exactly one list.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ConnectReport {
    /// Connected (or already connected).
    pub connected: Vec<Arc<str>>,
    /// Failed their first attempt in this round, with the first error. Those with
    /// `retrying` set keep being supervised and reconnect in the background.
    pub failed: Vec<ConnectFailure>,
    /// Still connecting when the deadline passed; they keep trying in the background.
    pub pending: Vec<Arc<str>>,
    /// Not started because the deadline passed first; `connect_all` again or
    /// `connect(name)` starts them.
    pub not_started: Vec<Arc<str>>,
    /// How long `connect_all` took.
    #[serde(rename = "elapsed_seconds", serialize_with = "secs")]
    pub elapsed: Duration,
}

impl ConnectReport {
    /// Whether every connection connected.
    pub fn all_connected(&self) -> bool {
        self.failed.is_empty() && self.pending.is_empty() && self.not_started.is_empty()
    }

    /// The failure of connection `name`, if it failed.
    pub fn failure(&self, name: &str) -> Option<&ConnectFailure> {
        self.failed.iter().find(|f| &*f.name == name)
    }
}

/// One connection that did not connect in a `connect_all` round.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ConnectFailure {
    /// The connection.
    pub name: Arc<str>,
    /// The first error seen, as text (the endpoint is in it).
    pub error: Arc<str>,
    /// The same error itself, with its kind ([`Error::kind`](connection_core::Error::kind)),
    /// when there was one (not serialized).
    #[serde(skip)]
    pub source: Option<Arc<connection_core::Error>>,
    /// Whether its supervisor keeps reconnecting in the background (`false` once it
    /// gave up: state `Failed`, left only by `restart`).
    pub retrying: bool,
    /// Its state when the outcome was taken.
    pub state: ConnectionState,
}

/// The result of [`ConnectionManager::shutdown`](crate::ConnectionManager::shutdown) and
/// [`disconnect_all`](crate::ConnectionManager::disconnect_all). Connections that were
/// never started are in neither list.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Closed gracefully within the deadline.
    pub graceful: Vec<Arc<str>>,
    /// Still closing at the deadline: their task was aborted and the socket dropped.
    pub aborted: Vec<Arc<str>>,
    /// How long it took.
    #[serde(rename = "elapsed_seconds", serialize_with = "secs")]
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Whether everything closed gracefully.
    pub fn all_graceful(&self) -> bool {
        self.aborted.is_empty()
    }
}

/// One connection of a manager, as seen now.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// Its name in the manager.
    pub name: Arc<str>,
    /// Its current supervisor's id (`None` before it was first started).
    #[serde(skip)]
    pub id: Option<ConnectionId>,
    /// Where it connects.
    #[serde(serialize_with = "redacted")]
    pub endpoint: Endpoint,
    /// Its supervisor's state (`Disconnected` before it was first started).
    pub state: ConnectionState,
    /// Its health rating.
    pub health: HealthStatus,
    /// The last connect error, if any since it was last started.
    pub last_error: Option<Arc<str>>,
    /// Supervised elsewhere and attached with `attach`.
    pub attached: bool,
    /// Its metrics.
    pub metrics: MetricsSnapshot,
}

/// Totals over every connection of a manager, from
/// [`ConnectionManager::statistics`](crate::ConnectionManager::statistics).
///
/// Latency figures are over every sample of every connection together: the histograms
/// are merged bucket by bucket, so each p99 has the same precision as one
/// connection's (a bucket upper bound, at most 6.25 % high). Probe round trips and
/// request latency are kept apart: a fast ping says nothing of how slow requests are.
///
/// Rates are the manager's throughput: the sum of every connection's rates over its last
/// 10 seconds ([`Rates::total`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Statistics {
    /// Registered connections.
    pub connections: usize,
    /// Connected now.
    pub connected: usize,
    /// Rated Healthy.
    pub healthy: usize,
    /// Rated Degraded.
    pub degraded: usize,
    /// Rated Unhealthy.
    pub unhealthy: usize,
    /// Reconnects, summed.
    pub reconnects: u64,
    /// Errors, summed.
    pub errors: u64,
    /// Bytes received, summed.
    pub bytes_in: u64,
    /// Bytes sent, summed.
    pub bytes_out: u64,
    /// Messages received, summed.
    pub messages_in: u64,
    /// Messages sent, summed.
    pub messages_out: u64,
    /// Requests, summed (failed ones included).
    pub requests: u64,
    /// Failed requests, summed; `failed_requests / requests` is the lifetime error rate.
    pub failed_requests: u64,
    /// Messages, bytes and requests per second over the last 10 s, summed over every
    /// connection, and the share of those requests that failed.
    pub rates: Rates,
    /// Bytes held in the connections' own buffers and queues, summed over those whose
    /// transport reports it (see [`MetricsSnapshot::buffered_bytes`]).
    pub buffered_bytes: u64,
    /// Probe round trips over every sample of every connection (see the type's docs).
    pub probe_rtt: LatencySnapshot,
    /// Latency of requests made on the connections (application traffic), over every
    /// sample of every connection.
    pub request_latency: LatencySnapshot,
    /// Time since the manager was created.
    #[serde(rename = "uptime_seconds", serialize_with = "secs")]
    pub uptime: Duration,
    /// Connected time of every connection's current session, summed.
    #[serde(rename = "connected_seconds", serialize_with = "secs")]
    pub connected_time: Duration,
    /// Times the health monitor panicked and was started again (each also published as
    /// a [`MonitorRestarted`](crate::MonitorRestarted) event). Not zero means a bug
    /// worth reporting: ratings went on, but probes in flight were started over.
    pub monitor_restarts: u64,
}

/// Every connection's metrics, from
/// [`ConnectionManager::metrics`](crate::ConnectionManager::metrics), sorted by name.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct MetricsReport {
    /// `(name, snapshot)` per connection.
    pub connections: Vec<(Arc<str>, MetricsSnapshot)>,
}

impl MetricsReport {
    /// Prometheus text exposition, labelled `connection="<name>"` (core's
    /// [`to_prometheus`]).
    pub fn to_prometheus(&self) -> String {
        to_prometheus(self.connections.iter().map(|(n, s)| (&**n, s)))
    }

    /// The same text streamed into `w` (core's [`write_prometheus`]).
    pub fn write_prometheus<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        write_prometheus(w, self.connections.iter().map(|(n, s)| (&**n, s)))
    }

    /// A JSON array of named snapshots (core's [`to_json`]).
    pub fn to_json(&self) -> String {
        to_json(self.connections.iter().map(|(n, s)| (&**n, s)))
    }

    /// The same JSON streamed into `w` (core's [`write_json`]).
    pub fn write_json<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        write_json(w, self.connections.iter().map(|(n, s)| (&**n, s)))
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn redacted<S: serde::Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.redacted())
}
