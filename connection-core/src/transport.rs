//! The two traits everything else is built on: [`Transport`] opens connections,
//! [`Connection`] is one of them.
//!
//! Changes from the design sketch, and why:
//! - [`Connection::closed`] was added. Without it a supervisor can only learn that a
//!   connection died by polling [`Connection::state`] or by waiting for the next probe;
//!   with it, loss is noticed the moment the socket reports it (passive detection), which
//!   is what makes failover in milliseconds possible.
//! - [`Connection::close`] consumes nothing and may be called on a dead connection; it is
//!   best effort and idempotent, so cleanup code never has to check state first.
//!
//! Composition is by generics, like `StreamExt`: [`TransportExt`] methods wrap a
//! transport in another transport. This crate adds [`TransportExt::timeout`];
//! `connection-retry` adds retry, circuit breaking and rate limiting the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::{Error, Operation};
use crate::event::DisconnectReason;
use crate::id::ConnectionId;
use crate::link::Traffic;
use crate::state::ConnectionState;

/// Opens connections to one [`Endpoint`].
///
/// `connect` makes exactly one attempt: retrying, timeouts and circuit breaking are
/// wrappers (see [`TransportExt`]), so each concern is configured in one place.
///
/// ```
/// use connection_core::{Connection, ConnectionId, ConnectionState, DisconnectReason};
/// use connection_core::{Endpoint, Error, Transport};
/// use std::time::Duration;
///
/// /// A transport whose connections live in memory: enough to show the shape.
/// struct Loop(Endpoint);
/// struct LoopConn(ConnectionId, bool);
///
/// impl Transport for Loop {
///     type Connection = LoopConn;
///     async fn connect(&self) -> Result<LoopConn, Error> {
///         Ok(LoopConn(ConnectionId::next(), true))
///     }
///     fn endpoint(&self) -> &Endpoint { &self.0 }
/// }
///
/// impl Connection for LoopConn {
///     type Io = ();
///     fn io(&self) {}
///     fn id(&self) -> ConnectionId { self.0 }
///     fn state(&self) -> ConnectionState {
///         if self.1 { ConnectionState::Connected } else { ConnectionState::Closed }
///     }
///     async fn probe(&mut self) -> Result<Duration, Error> { Ok(Duration::ZERO) }
///     async fn closed(&mut self) -> DisconnectReason { std::future::pending().await }
///     async fn close(&mut self) -> Result<(), Error> { self.1 = false; Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
/// let t = Loop(Endpoint::host_port("127.0.0.1", 1)?);
/// let mut c = t.connect().await?;
/// assert!(c.state().is_connected());
/// c.close().await?;
/// # Ok(()) }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The connection type this transport opens.
    type Connection: Connection;

    /// Opens one new connection. Never retries.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Error>> + Send;

    /// Where connections go.
    fn endpoint(&self) -> &Endpoint;
}

/// One open connection.
///
/// The lifecycle states ([`Reconnecting`](ConnectionState::Reconnecting) and so on)
/// belong to whoever supervises the connection; a connection itself reports
/// [`Connected`](ConnectionState::Connected) while usable and
/// [`Closed`](ConnectionState::Closed) or [`Failed`](ConnectionState::Failed) after.
pub trait Connection: Send + 'static {
    /// What the application sends and receives with: cheap to clone, usable from many
    /// tasks at once (a WebSocket sender, an HTTP client bound to a base URL, a framed
    /// TCP sink and stream behind channels). A supervisor hands the current connection's
    /// `Io` to the application through a [`Link`](crate::Link). A connection that carries
    /// no application traffic uses `()`.
    type Io: Clone + Send + Sync + 'static;

    /// This connection's I/O handle. Once the connection is lost, operations on the
    /// handle fail (with a connection-level error, see
    /// [`Error::is_connection_level`]); they never hang on a dead socket.
    fn io(&self) -> Self::Io;

    /// Gives the connection where to record the traffic it carries (bytes, messages,
    /// request latency, failures). A supervisor calls it once, right after connecting
    /// and before [`io`](Self::io). The default records nothing.
    fn bind_traffic(&mut self, traffic: Traffic) {
        let _ = traffic;
    }

    /// This physical connection's id.
    fn id(&self) -> ConnectionId;

    /// Whether the connection is usable, as far as it knows without I/O.
    fn state(&self) -> ConnectionState;

    /// Active health probe (WebSocket ping/pong, HTTP health request, application-level
    /// ping): returns the round trip. An error means the connection should be
    /// considered dead.
    fn probe(&mut self) -> impl Future<Output = Result<Duration, Error>> + Send;

    /// Resolves when the connection is lost: the peer closed it or the socket failed.
    ///
    /// Must be cancel-safe: supervisors drop this future to run a probe or to shut down
    /// and call it again afterwards.
    fn closed(&mut self) -> impl Future<Output = DisconnectReason> + Send;

    /// Closes gracefully (close frame, TLS close_notify, FIN). Idempotent and best
    /// effort: closing a dead connection is not an error.
    fn close(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The I/O handle type of a transport's connections: what a
/// [`Supervised`](crate::Supervised) of that transport hands the application.
pub type IoOf<T> = <<T as Transport>::Connection as Connection>::Io;

impl<T: Transport> Transport for Arc<T> {
    type Connection = T::Connection;

    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Error>> + Send {
        (**self).connect()
    }

    fn endpoint(&self) -> &Endpoint {
        (**self).endpoint()
    }
}

/// Wrappers that add a behaviour to any [`Transport`] and are transports themselves, so
/// they stack through generics with no boxing.
///
/// ```
/// # use connection_core::{Endpoint, Error, Transport, TransportExt};
/// # fn wrap<T: Transport>(t: T) {
/// use std::time::Duration;
/// let bounded = t.timeout(Duration::from_secs(2));
/// # let _ = bounded; }
/// ```
pub trait TransportExt: Transport + Sized {
    /// Fails a connect attempt that takes longer than `limit` with
    /// [`Error::Timeout`] (operation `"connect"`), which is retryable.
    fn timeout(self, limit: Duration) -> Timeout<Self> {
        Timeout { inner: self, limit }
    }
}

impl<T: Transport> TransportExt for T {}

/// A [`Transport`] whose connect attempts are bounded in time. Made by
/// [`TransportExt::timeout`].
#[derive(Clone, Debug)]
pub struct Timeout<T> {
    inner: T,
    limit: Duration,
}

/// One connect attempt of `transport`, bounded by `limit` when there is one: over it
/// the attempt fails with a retryable [`Error::Timeout`] of [`Operation::Connect`]. The
/// one connect timeout of the workspace: the supervisor, the manager, the pool and
/// [`TransportExt::timeout`] all bound their connects with it.
///
/// ```
/// # use connection_core::{connect_within, Error, Operation};
/// # async fn demo(t: impl connection_core::Transport) {
/// match connect_within(&t, Some(std::time::Duration::from_secs(2))).await {
///     Ok(conn) => drop(conn),
///     Err(Error::Timeout { operation: Operation::Connect, .. }) => { /* retryable */ }
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
pub async fn connect_within<T: Transport + ?Sized>(
    transport: &T,
    limit: Option<Duration>,
) -> Result<T::Connection, Error> {
    let Some(limit) = limit else {
        return transport.connect().await;
    };
    match tokio::time::timeout(limit, transport.connect()).await {
        Ok(result) => result,
        Err(_) => Err(Error::timeout(
            transport.endpoint(),
            Operation::Connect,
            limit,
        )),
    }
}

impl<T> Timeout<T> {
    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl<T: Transport> Transport for Timeout<T> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        connect_within(&self.inner, Some(self.limit)).await
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}
