//! The data plane: how the application reaches the connection it sends traffic on.
//!
//! Every [`Connection`](crate::Connection) names its I/O handle
//! ([`Connection::Io`](crate::Connection::Io)): what the application sends and receives
//! with, cheap to clone and usable from many tasks (a WebSocket sender, an HTTP client
//! bound to a base URL, a framed TCP sink). A supervisor publishes the I/O handle of
//! whatever connection is current into a [`LinkSlot`]; the application reads it through a
//! [`Link`]:
//!
//! ```text
//!   application ──► Link<Io>::ready(within) ──► current connection's Io ──► socket
//!                    │ waits (bounded) while Connecting / Reconnecting
//!                    └ fails at once while Failed or Closed, with the cause
//!
//!   supervisor task: connect ──► conn.bind_traffic(traffic) ──► slot.connected(conn.io())
//!                    loss    ──► slot cleared (before the close), state published
//! ```
//!
//! The slot outlives any one supervisor, so a manager can hand out a `Link` before the
//! connection is started and keep it valid across restarts. Traffic flows the other way
//! through [`Traffic`]: the connection records bytes, messages and request latency into
//! its supervisor's metrics, and reports failures seen on real traffic, which health
//! monitors count like failed probes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::endpoint::Endpoint;
use crate::error::{Error, Operation};
use crate::metrics::ConnectionMetrics;
use crate::state::ConnectionState;

/// What a [`Link`] sees: the lifecycle state and, while connected, the I/O handle.
struct LinkState<H> {
    state: ConnectionState,
    io: Option<H>,
    /// Why the connection is Failed (or was last lost), when known.
    cause: Option<Arc<Error>>,
}

/// The writing side of a [`Link`]: where supervisors publish the current connection's
/// I/O handle and state. Cheap to clone; clones publish to the same links.
///
/// Most code never sees one: [`Supervisor::spawn`](crate::Supervisor::spawn) makes its
/// own. A component that starts supervisors again and again for one logical connection
/// (a manager restarting it) makes one slot and hands it to each supervisor with
/// [`Supervisor::link_slot`](crate::Supervisor::link_slot), so the links it gave out stay
/// valid. Only a supervisor writes to a slot.
pub struct LinkSlot<H> {
    tx: Arc<watch::Sender<LinkState<H>>>,
    endpoint: Endpoint,
}

impl<H> Clone for LinkSlot<H> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

impl<H> fmt::Debug for LinkSlot<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSlot")
            .field("endpoint", &self.endpoint)
            .field("state", &self.tx.borrow().state)
            .finish()
    }
}

impl<H: Clone + Send + Sync + 'static> LinkSlot<H> {
    /// An empty slot for connections to `endpoint` (state
    /// [`Disconnected`](ConnectionState::Disconnected), no I/O handle).
    pub fn new(endpoint: Endpoint) -> Self {
        let (tx, _) = watch::channel(LinkState {
            state: ConnectionState::Disconnected,
            io: None,
            cause: None,
        });
        Self {
            tx: Arc::new(tx),
            endpoint,
        }
    }

    /// A reader of this slot.
    pub fn link(&self) -> Link<H> {
        Link {
            rx: self.tx.subscribe(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// The new connection's I/O handle; published before the state turns Connected, so a
    /// waiter woken by Connected always finds it.
    pub(crate) fn set_io(&self, io: H) {
        self.tx.send_modify(|s| s.io = Some(io));
    }

    /// A state change. Leaving Connected drops the I/O handle at once, so nobody is handed
    /// the handle of a connection known to be gone.
    pub(crate) fn set_state(&self, state: ConnectionState, cause: Option<Arc<Error>>) {
        self.tx.send_modify(|s| {
            s.state = state;
            if !state.is_connected() {
                s.io = None;
            }
            if cause.is_some() {
                s.cause = cause;
            }
        });
    }
}

/// The application's way to the current connection's I/O handle: cheap to clone, usable
/// from many tasks, valid across reconnects.
///
/// - [`current`](Self::current) returns the handle now, or fails at once when there is no
///   connection.
/// - [`ready`](Self::ready) waits while the connection is (re)connecting, up to a bound
///   the caller gives, and fails at once when the connection is
///   [`Failed`](ConnectionState::Failed) or [`Closed`](ConnectionState::Closed).
///
/// A handle obtained just before the connection drops fails on use with the transport's
/// own error (the socket is gone); that error is the health signal, and the next
/// `ready` waits for the reconnect.
///
/// ```no_run
/// use connection_core::{Supervisor, Transport};
/// use std::time::Duration;
///
/// # async fn demo<T: Transport>(transport: T) -> Result<(), connection_core::Error> {
/// let conn = Supervisor::new(transport).spawn()?;
/// let link = conn.link().clone();
/// tokio::spawn(async move {
///     // Waits up to 2 s while the connection is (re)connecting.
///     let io = link.ready(Duration::from_secs(2)).await?;
///     // ... send through `io` ...
/// #   let _ = io;
///     Ok::<(), connection_core::Error>(())
/// });
/// # Ok(()) }
/// ```
pub struct Link<H> {
    rx: watch::Receiver<LinkState<H>>,
    endpoint: Endpoint,
}

impl<H> Clone for Link<H> {
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

impl<H> fmt::Debug for Link<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.rx.borrow();
        f.debug_struct("Link")
            .field("endpoint", &self.endpoint)
            .field("state", &s.state)
            .field("has_io", &s.io.is_some())
            .finish()
    }
}

impl<H: Clone> Link<H> {
    /// Where the connection goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The connection's lifecycle state.
    pub fn state(&self) -> ConnectionState {
        self.rx.borrow().state
    }

    /// The current connection's I/O handle, without waiting.
    ///
    /// Fails with [`Error::Unavailable`] when there is no connection right now; its
    /// [`is_retryable`](Error::is_retryable) says whether one can come back (it cannot
    /// once the connection is Failed or Closed).
    pub fn current(&self) -> Result<H, Error> {
        let s = self.rx.borrow();
        match (&s.io, s.state) {
            (Some(io), ConnectionState::Connected) => Ok(io.clone()),
            (_, state) => Err(self.unavailable(state, s.cause.clone())),
        }
    }

    /// The current connection's I/O handle, waiting up to `within` while the connection
    /// is being established or re-established.
    ///
    /// Fails at once with [`Error::Unavailable`] when the connection is
    /// [`Failed`](ConnectionState::Failed) (the cause is its source) or
    /// [`Closed`](ConnectionState::Closed), and with [`Error::Timeout`] (operation
    /// `"ready"`) when `within` passes first.
    pub async fn ready(&self, within: Duration) -> Result<H, Error> {
        let mut rx = self.rx.clone();
        let wait = rx.wait_for(|s| {
            (s.io.is_some() && s.state == ConnectionState::Connected) || is_final(s.state)
        });
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(s)) => match (&s.io, s.state) {
                (Some(io), ConnectionState::Connected) => Ok(io.clone()),
                (_, state) => Err(self.unavailable(state, s.cause.clone())),
            },
            // Every slot is gone: no supervisor will ever publish again.
            Ok(Err(_)) => Err(self.unavailable(ConnectionState::Closed, None)),
            Err(_) => Err(Error::timeout(&self.endpoint, Operation::Ready, within)),
        }
    }

    /// Waits until the state changes (or every writer is gone); for callers that follow
    /// the connection's lifecycle.
    pub async fn changed(&mut self) -> Result<ConnectionState, Error> {
        self.rx
            .changed()
            .await
            .map_err(|_| self.unavailable(ConnectionState::Closed, None))?;
        Ok(self.rx.borrow_and_update().state)
    }

    fn unavailable(&self, state: ConnectionState, cause: Option<Arc<Error>>) -> Error {
        Error::Unavailable {
            endpoint: self.endpoint.clone(),
            state,
            // A cause matters only for a connection that will not come back by itself.
            cause: if is_final(state) { cause } else { None },
        }
    }
}

fn is_final(state: ConnectionState) -> bool {
    matches!(state, ConnectionState::Failed | ConnectionState::Closed)
}

/// Where a connection records the traffic it carries, given to it by its supervisor
/// through [`Connection::bind_traffic`](crate::Connection::bind_traffic) right after
/// connecting. Cheap to clone: hand a clone to each I/O task and handle.
///
/// Recording never locks and never allocates after the first traffic (the rate window)
/// and the first request latency (its histogram). Failures reported with
/// [`failure`](Self::failure) or [`request_failed`](Self::request_failed) count as errors
/// in the metrics and reach
/// whoever watches the supervisor ([`SupervisorHandle::watch_traffic_failures`]), which
/// is how a health monitor rates a connection down on real traffic without waiting for
/// a probe.
///
/// [`SupervisorHandle::watch_traffic_failures`]: crate::SupervisorHandle::watch_traffic_failures
///
/// ```
/// use connection_core::{Traffic, metrics::ConnectionMetrics};
/// use std::{sync::Arc, time::Duration};
///
/// let metrics = Arc::new(ConnectionMetrics::new());
/// let traffic = Traffic::new(metrics.clone());
/// traffic.sent(1, 128);
/// traffic.received(1, 512);
/// traffic.request(Duration::from_millis(4));
/// # let error = connection_core::Error::Closed {
/// #     endpoint: connection_core::Endpoint::host_port("127.0.0.1", 80).unwrap(),
/// # };
/// traffic.request_failed(&error);
/// let s = metrics.snapshot();
/// assert_eq!((s.messages_out, s.bytes_in, s.requests), (1, 512, 2));
/// assert_eq!((s.failed_requests, s.errors, s.error_rate()), (1, 1, Some(0.5)));
/// assert_eq!(s.window.rates().error_rate, Some(0.5));
/// ```
#[derive(Clone)]
pub struct Traffic {
    metrics: Arc<ConnectionMetrics>,
    failures: Option<Arc<watch::Sender<u64>>>,
}

impl fmt::Debug for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traffic")
            .field("supervised", &self.failures.is_some())
            .finish_non_exhaustive()
    }
}

impl Traffic {
    /// Records into `metrics`, with nobody watching failures (for connections used
    /// without a supervisor).
    pub fn new(metrics: Arc<ConnectionMetrics>) -> Self {
        Self {
            metrics,
            failures: None,
        }
    }

    pub(crate) fn supervised(
        metrics: Arc<ConnectionMetrics>,
        failures: Arc<watch::Sender<u64>>,
    ) -> Self {
        Self {
            metrics,
            failures: Some(failures),
        }
    }

    /// Counts `messages` messages of `bytes` bytes in total sent. One call per batch:
    /// each call reads the clock once for the rate window.
    #[inline]
    pub fn sent(&self, messages: u64, bytes: u64) {
        self.metrics.record_sent(messages, bytes);
    }

    /// Counts `messages` messages of `bytes` bytes in total received.
    #[inline]
    pub fn received(&self, messages: u64, bytes: u64) {
        self.metrics.record_received(messages, bytes);
    }

    /// Counts one completed request and its latency (separate from probe round trips).
    #[inline]
    pub fn request(&self, latency: Duration) {
        self.metrics.record_request(latency);
    }

    /// Counts one request that failed: it counts as a request and as a failed one (the
    /// error rate is failed requests over requests) and, like
    /// [`failure`](Self::failure), as an error and a passive health signal.
    pub fn request_failed(&self, error: &Error) {
        self.metrics.record_failed_request();
        tracing::debug!(%error, "request failed");
        self.signal_failure();
    }

    /// Has `probe` report the bytes the connection holds in its own buffers and queues;
    /// see [`ConnectionMetrics::report_buffers`], which says how to write one. A
    /// connection registers it in [`bind_traffic`](crate::Connection::bind_traffic); it
    /// replaces the previous connection's.
    pub fn buffers(&self, probe: impl Fn() -> u64 + Send + Sync + 'static) {
        self.metrics.report_buffers(probe);
    }

    /// Reports a failure seen on real traffic that is not a request of its own (a write
    /// error; for a failed request use [`request_failed`](Self::request_failed), which
    /// the error rate counts). It counts as an error and is a passive health signal. A
    /// failure that also ends the connection is reported by
    /// [`Connection::closed`](crate::Connection::closed) too; reporting it here as well is
    /// harmless.
    pub fn failure(&self, error: &Error) {
        self.metrics.inc_errors();
        tracing::debug!(%error, "failure on traffic");
        self.signal_failure();
    }

    fn signal_failure(&self) {
        if let Some(f) = &self.failures {
            f.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The metrics recorded into, for counters this type has no method for.
    pub fn metrics(&self) -> &Arc<ConnectionMetrics> {
        &self.metrics
    }
}
