//! [`TcpEchoTransport`]: a small but real [`Transport`] over TCP, for testing code that
//! is generic over transports (supervisors, pools, managers) against real sockets.
//!
//! Each connection runs one I/O task that owns the socket. Its I/O handle,
//! [`EchoClient`], sends requests to that task from any number of tasks, so traffic goes
//! through a supervised connection exactly as it would with a production transport:
//! bytes, messages and request latency land in the supervisor's metrics, a failed
//! request is reported as one (a failure on traffic, and in the error rate), and the
//! bytes its requests hold are reported as the connection's buffers.
//!
//! It talks to any echo server (such as [`TcpEchoServer`](crate::TcpEchoServer)):
//! [`probe`](Connection::probe) writes a short ping and waits for its echo, so a
//! blackholed or stalled peer makes probes time out exactly like a dead production
//! peer would. With [`TcpEchoTransport::with_banner`], a connect also reads a one-line
//! banner first: `OK` accepts, `DENY` fails with a non-retryable
//! [`Error::Auth`], which lets tests exercise the give-up path on a real socket.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, EndpointError, Error,
    Traffic, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The line [`TcpEchoConnection::probe`] sends; the echo server sends it back.
pub const PING: &[u8] = b"ping\n";

/// A TCP transport to an echo server.
///
/// ```
/// use connection_core::{Connection, Transport};
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TcpEchoServer::start().await?;
/// let transport = TcpEchoTransport::new(server.addr())?;
/// let mut conn = transport.connect().await?;
/// let rtt = conn.probe().await?;
/// assert!(rtt < std::time::Duration::from_secs(5));
/// conn.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TcpEchoTransport {
    endpoint: Endpoint,
    banner: bool,
    hang_on_close: bool,
    attempts: Arc<AtomicU64>,
}

impl TcpEchoTransport {
    /// A transport to `addr`, named `tcp-echo`. Fails only for port 0.
    pub fn new(addr: SocketAddr) -> Result<Self, EndpointError> {
        let endpoint = Endpoint::host_port(&addr.ip().to_string(), addr.port())?;
        Ok(Self::from_endpoint(endpoint.with_name("tcp-echo")))
    }

    /// A transport to an endpoint (its host and port are used; TLS is not supported).
    pub fn from_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            banner: false,
            hang_on_close: false,
            attempts: Arc::default(),
        }
    }

    /// Requires a banner line from the server after connecting: `OK` accepts, `DENY`
    /// refuses with a non-retryable [`Error::Auth`] (status 403).
    #[must_use]
    pub fn with_banner(mut self) -> Self {
        self.banner = true;
        self
    }

    /// Makes every connection's [`close`](Connection::close) wait forever, like a peer
    /// that never answers a close handshake: for testing shutdown deadlines.
    #[must_use]
    pub fn hang_on_close(mut self) -> Self {
        self.hang_on_close = true;
        self
    }

    /// How many connect attempts were made, successful or not.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }
}

impl Transport for TcpEchoTransport {
    type Connection = TcpEchoConnection;

    async fn connect(&self) -> Result<TcpEchoConnection, Error> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let stream = TcpStream::connect(self.endpoint.authority())
            .await
            .map_err(|e| Error::connect(&self.endpoint, e))?;
        // Probes are tiny; Nagle would add a delayed-ACK wait to every round trip.
        stream
            .set_nodelay(true)
            .map_err(|e| Error::connect(&self.endpoint, e))?;
        let mut stream = stream;
        if self.banner {
            let line = read_banner(&mut stream)
                .await
                .map_err(|e| Error::connect(&self.endpoint, e))?;
            match line.trim_end() {
                "OK" => {}
                "DENY" => {
                    return Err(Error::Auth {
                        endpoint: self.endpoint.clone(),
                        status: 403,
                    });
                }
                "" => {
                    return Err(Error::Closed {
                        endpoint: self.endpoint.clone(),
                    });
                }
                other => {
                    return Err(Error::protocol(
                        &self.endpoint,
                        format!("unexpected banner {other:?}"),
                    ));
                }
            }
        }
        Ok(TcpEchoConnection::start(
            self.endpoint.clone(),
            stream,
            self.hang_on_close,
        ))
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Reads one banner line a byte at a time: no read-ahead, so not a byte of what follows
/// is taken from the socket, and no 8 KiB buffer is kept per connection for a line of a
/// few bytes.
async fn read_banner(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        if stream.read(&mut byte).await? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Requests an [`EchoClient`] may have waiting for the I/O task.
const QUEUE: usize = 64;

/// One echo round trip asked of the I/O task.
struct Request {
    payload: Vec<u8>,
    /// A probe is not application traffic: it is not counted as a request.
    probe: bool,
    reply: oneshot::Sender<Result<Duration, Error>>,
    /// The payload's bytes, in the buffer figure until the request is dropped: answered,
    /// abandoned, or dropped with the queue when the connection goes.
    _held: Held,
}

/// Counts `n` bytes in its connection's buffer figure for as long as it lives.
struct Held {
    shared: Arc<Shared>,
    n: u64,
}

impl Held {
    fn new(shared: &Arc<Shared>, n: usize) -> Self {
        let n = n as u64;
        shared.buffered.fetch_add(n, Ordering::Relaxed);
        Self {
            shared: shared.clone(),
            n,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.buffered.fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// What the connection, its I/O task and its clients share.
struct Shared {
    endpoint: Endpoint,
    /// Set by [`Connection::bind_traffic`], before the first request can arrive.
    traffic: OnceLock<Traffic>,
    /// Why the connection ended; `None` while it is up.
    reason: watch::Sender<Option<DisconnectReason>>,
    /// Bytes of this connection's requests: payloads queued for the I/O task or in their
    /// round trip, plus the buffer the echo is read into. Not counted: the fixed 256-byte
    /// read buffer of the idle loop, the queue's slots, the socket's kernel buffers.
    buffered: AtomicU64,
}

impl Shared {
    fn end(&self, reason: DisconnectReason) {
        self.reason.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// The I/O handle of a [`TcpEchoConnection`]: echoes payloads over that connection from
/// any task. Cheap to clone. Once the connection is gone every call fails with
/// [`Error::Closed`] (or the socket's error), at once.
#[derive(Clone)]
pub struct EchoClient {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl fmt::Debug for EchoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoClient")
            .field("endpoint", &self.shared.endpoint)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl EchoClient {
    /// Sends `payload` and waits until the same bytes came back; returns the round trip.
    /// Concurrent calls are served one after another, in order.
    pub async fn echo(&self, payload: &[u8]) -> Result<Duration, Error> {
        self.request(payload, false).await
    }

    /// Whether the connection behind this handle is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.shared.reason.borrow().is_some()
    }

    /// Where the connection goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    async fn request(&self, payload: &[u8], probe: bool) -> Result<Duration, Error> {
        // A request the connection is gone for is a failed request like one that fails on
        // the wire (the I/O task counts those), whichever side noticed first.
        let closed = || {
            let error = Error::Closed {
                endpoint: self.shared.endpoint.clone(),
            };
            if let Some(t) = self.shared.traffic.get()
                && !probe
            {
                t.request_failed(&error);
            }
            error
        };
        let (reply, rx) = oneshot::channel();
        let request = Request {
            payload: payload.to_vec(),
            probe,
            reply,
            _held: Held::new(&self.shared, payload.len()),
        };
        self.tx.send(request).await.map_err(|_| closed())?;
        // The task drops the request unanswered when the connection goes away first.
        rx.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// One connection of a [`TcpEchoTransport`].
///
/// Dropping it stops its I/O task at once; [`close`](Connection::close) shuts the socket
/// down first.
pub struct TcpEchoConnection {
    id: ConnectionId,
    shared: Arc<Shared>,
    client: EchoClient,
    reason: watch::Receiver<Option<DisconnectReason>>,
    task: JoinHandle<()>,
    local_addr: Option<SocketAddr>,
    hang_on_close: bool,
}

impl fmt::Debug for TcpEchoConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpEchoConnection")
            .field("id", &self.id)
            .field("endpoint", &self.shared.endpoint)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Drop for TcpEchoConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpEchoConnection {
    fn start(endpoint: Endpoint, stream: TcpStream, hang_on_close: bool) -> Self {
        let local_addr = stream.local_addr().ok();
        let (reason, reason_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            endpoint,
            traffic: OnceLock::new(),
            reason,
            buffered: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(io_task(stream, rx, shared.clone()));
        Self {
            id: ConnectionId::next(),
            client: EchoClient {
                tx,
                shared: shared.clone(),
            },
            shared,
            reason: reason_rx,
            task,
            local_addr,
            hang_on_close,
        }
    }

    /// Sends `payload` and waits until the same bytes came back; returns the round
    /// trip. The same as [`EchoClient::echo`] on [`io`](Connection::io).
    pub async fn echo(&mut self, payload: &[u8]) -> Result<Duration, Error> {
        self.client.echo(payload).await
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.local_addr
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

/// Owns the socket: serves requests one at a time and, between them, reads to notice
/// the peer closing. Ends on a socket error, EOF, or when the connection is dropped.
async fn io_task(
    mut stream: TcpStream,
    mut requests: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
) {
    let mut idle = [0u8; 256];
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(mut request) = request else {
                    // The connection and every client are gone.
                    return;
                };
                let started = Instant::now();
                let result = tokio::select! {
                    result = round_trip(&mut stream, &request.payload, &shared) => result,
                    // The caller gave up (a probe timed out): abandon the round trip, as a
                    // dropped future would. A late echo is discarded while idle, or makes
                    // the next round trip fail its comparison.
                    () = request.reply.closed() => continue,
                };
                let traffic = shared.traffic.get();
                match &result {
                    Ok(()) => {
                        if let Some(t) = traffic {
                            let n = request.payload.len() as u64;
                            t.sent(1, n);
                            t.received(1, n);
                            if !request.probe {
                                t.request(started.elapsed());
                            }
                        }
                    }
                    Err(error) => {
                        if let Some(t) = traffic && !request.probe {
                            t.request_failed(error);
                        }
                    }
                }
                let failed = result.as_ref().err().cloned();
                let _ = request.reply.send(result.map(|()| started.elapsed()));
                if let Some(error) = failed {
                    shared.end(DisconnectReason::Error(Arc::new(error)));
                    return;
                }
            }
            // Cancel-safe: a read either completes (and its bytes, stray echoes, are
            // discarded) or is dropped before taking anything from the socket.
            read = stream.read(&mut idle) => match read {
                Ok(0) => {
                    shared.end(DisconnectReason::PeerClosed);
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    shared.end(DisconnectReason::Error(Arc::new(Error::io(&shared.endpoint, e))));
                    return;
                }
            },
        }
    }
}

async fn round_trip(
    stream: &mut TcpStream,
    payload: &[u8],
    shared: &Arc<Shared>,
) -> Result<(), Error> {
    let endpoint = &shared.endpoint;
    let io = |e| Error::io(endpoint, e);
    stream.write_all(payload).await.map_err(io)?;
    let mut back = vec![0; payload.len()];
    let _echo = Held::new(shared, back.len());
    stream.read_exact(&mut back).await.map_err(io)?;
    if back != payload {
        return Err(Error::protocol(
            endpoint,
            "echo did not match what was sent",
        ));
    }
    Ok(())
}

impl Connection for TcpEchoConnection {
    type Io = EchoClient;

    fn io(&self) -> EchoClient {
        self.client.clone()
    }

    /// Records into `traffic`, and reports as the connection's buffers the bytes of its
    /// requests waiting or in their round trip (see `Shared::buffered`).
    fn bind_traffic(&mut self, traffic: Traffic) {
        // Weak: the metrics outlive the connection, its buffers must not.
        let shared = Arc::downgrade(&self.shared);
        traffic.buffers(move || {
            shared
                .upgrade()
                .map_or(0, |s| s.buffered.load(Ordering::Relaxed))
        });
        let _ = self.shared.traffic.set(traffic);
    }

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        match &*self.reason.borrow() {
            None => ConnectionState::Connected,
            Some(DisconnectReason::Error(_)) => ConnectionState::Failed,
            Some(_) => ConnectionState::Closed,
        }
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        self.client.request(PING, true).await
    }

    async fn closed(&mut self) -> DisconnectReason {
        match self.reason.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(DisconnectReason::PeerClosed),
            Err(_) => DisconnectReason::PeerClosed,
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        if self.hang_on_close {
            std::future::pending::<()>().await;
        }
        // Dropping the socket closes it (FIN); a peer that already went away makes no
        // difference, closing is best effort.
        self.task.abort();
        self.shared.end(DisconnectReason::Shutdown);
        Ok(())
    }
}
