//! [`HttpTransport`]: the HTTP client as a supervised connection.
//!
//! HTTP has no one long-lived socket to watch: the client keeps a pool and opens
//! sockets as requests need them. What a supervisor can still watch is whether the
//! server answers. So a connection here is "the server answers":
//!
//! - [`connect`](Transport::connect) sends the [`Probe`](crate::Probe) once and
//!   succeeds when it passes;
//! - the connection's I/O handle is the transport's [`HttpClient`] (a cheap clone),
//!   recording what it carries into the connection's [`Traffic`]: request latency,
//!   bytes, and failures (connection failures, timeouts, 5xx), which a health monitor
//!   counts like failed probes;
//! - [`closed`](Connection::closed) resolves when a request through the handle finally
//!   fails to reach the server at all (connect refused or timed out): the supervisor
//!   then reconnects, that is probes until the server answers again;
//! - [`probe`](Connection::probe) is the configured health request.
//!
//! Every connection of a transport shares one client, so one pool, one breaker, one
//! limiter and one retry budget; a handle obtained from an earlier connection keeps
//! working (requests are independent), it just records into that connection.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Traffic,
    Transport,
};
use tokio::sync::watch;

use crate::client::{Bound, HttpClient};
use crate::config::HttpConfig;
use crate::error::HttpError;

/// A [`Transport`] whose connections hand out an [`HttpClient`].
///
/// HTTP has no one long-lived socket to watch, so a connection here is "the server
/// answers": `connect` sends the [`Probe`](crate::Probe) once; the connection's I/O
/// handle is the transport's client (a clone), recording its traffic into the
/// connection's [`Traffic`] (latency, bytes, failures: connection failures, timeouts,
/// 5xx, which a health monitor counts like failed probes); `closed` resolves when a
/// request finally fails to reach the server at all (connect refused or timed out), so
/// the supervisor reconnects, that is probes until the server answers; `probe` is the
/// health request. All connections share one client: one pool, breaker, limiter and
/// retry budget.
///
/// ```no_run
/// use connection_core::Supervisor;
/// use connection_transport_http::{HttpConfig, HttpTransport, Probe};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = HttpConfig::builder("http://127.0.0.1:8080")
///     .probe(Probe::get("/healthz").expect_status(200))
///     .build()?;
/// let api = Supervisor::new(HttpTransport::new(config)?)
///     .keepalive(Duration::from_secs(10), Duration::from_secs(2))
///     .spawn()?;
/// let client = api.ready(Duration::from_secs(5)).await?;
/// let status = client.get("/orders").await?.status();
/// # let _ = status; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: HttpClient,
}

impl HttpTransport {
    /// A transport for `config`, with one client for all its connections.
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        Ok(Self {
            client: HttpClient::new(config)?,
        })
    }

    /// A transport whose connections hand out clones of `client`.
    pub fn from_client(client: HttpClient) -> Self {
        Self { client }
    }

    /// The client every connection hands out (unsupervised: it records into no
    /// connection's traffic).
    pub fn client(&self) -> &HttpClient {
        &self.client
    }
}

impl Transport for HttpTransport {
    type Connection = HttpConnection;

    async fn connect(&self) -> Result<HttpConnection, Error> {
        self.client.probe().await.map_err(Error::from)?;
        let (lost, _) = watch::channel(None);
        let bound = Arc::new(Bound {
            traffic: OnceLock::new(),
            lost,
        });
        Ok(HttpConnection {
            id: ConnectionId::next(),
            lost: bound.lost.subscribe(),
            client: self.client.bound_to(bound.clone()),
            bound,
            closed: false,
        })
    }

    fn endpoint(&self) -> &Endpoint {
        self.client.endpoint()
    }
}

/// One "connection" of an [`HttpTransport`]: the server answered its probe. See
/// [`HttpTransport`] for what that means.
#[derive(Debug)]
pub struct HttpConnection {
    id: ConnectionId,
    client: HttpClient,
    bound: Arc<Bound>,
    lost: watch::Receiver<Option<Arc<Error>>>,
    closed: bool,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("traffic", &self.traffic.get().is_some())
            .field("lost", &self.lost.borrow().is_some())
            .finish()
    }
}

impl Connection for HttpConnection {
    type Io = HttpClient;

    fn io(&self) -> HttpClient {
        self.client.clone()
    }

    fn bind_traffic(&mut self, traffic: Traffic) {
        let _ = self.bound.traffic.set(traffic);
    }

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        if self.closed {
            ConnectionState::Closed
        } else if self.lost.borrow().is_some() {
            ConnectionState::Failed
        } else {
            ConnectionState::Connected
        }
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        self.client.probe().await.map_err(Error::from)
    }

    async fn closed(&mut self) -> DisconnectReason {
        let lost = self
            .lost
            .wait_for(Option::is_some)
            .await
            .map(|lost| lost.clone());
        match lost {
            Ok(Some(error)) => DisconnectReason::Error(error),
            Ok(None) => DisconnectReason::PeerClosed,
            // The sender lives in `self.bound`: unreachable while `self` exists.
            Err(_) => std::future::pending().await,
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        // Nothing to close: the pool belongs to the transport's client, and idle
        // sockets expire on their own.
        self.closed = true;
        Ok(())
    }
}
