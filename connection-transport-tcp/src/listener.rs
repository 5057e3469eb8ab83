//! [`Listener`]: the server side. Accepts TCP (optionally TLS) connections and hands each
//! one, framed by a codec, to a handler of yours, with the limits a server exposed to the
//! network needs and a bounded graceful shutdown.
//!
//! # Limits, and why they are what they are
//!
//! | setting | default | what it bounds |
//! |---|---|---|
//! | [`max_connections`](ListenerBuilder::max_connections) | 1024 | connections open at once (handshaking included); one more is closed at once and counted as rejected, never queued |
//! | [`max_handshakes`](ListenerBuilder::max_handshakes) | 64 | TLS handshakes running at once (tls-listener's default) |
//! | [`handshake_timeout`](ListenerBuilder::handshake_timeout) | 10 s | time a connection waits for a handshake slot, and then time its TLS handshake may take |
//! | [`read_idle_timeout`](ListenerBuilder::read_idle_timeout) | 5 min | time a handler waits for the next frame before its stream ends with a timeout |
//! | [`backlog`](ListenerBuilder::backlog) | 1024 | connections the kernel queues before we accept them |
//!
//! The handshake timeout departs from tls-listener's 200 ms: a TLS 1.2 handshake takes two
//! round trips, and a client on a mobile or satellite link or on another continent
//! (round trips of 300 ms to 1 s, plus a retransmitted packet) would never finish one in
//! 200 ms. 10 s (Go's `TLSHandshakeTimeout`) still frees a silent client's slot, and the
//! connection cap bounds how many such slots exist at once.
//!
//! # Accept errors
//!
//! An accept error that concerns one connection (reset or aborted before we took it) is
//! skipped. Any other (out of file descriptors, out of memory) is retried after a pause
//! that doubles from 10 ms up to 1 s and resets after a successful accept, so the loop
//! never spins and recovers within a second of the cause going away. (mini-redis waits
//! 1 s to 64 s and then gives up; a server that gives up on EMFILE stays down after a
//! burst it would have survived.)
//!
//! # Shutdown
//!
//! [`ListenerHandle::shutdown`] stops accepting, tells every handler (its
//! [`Inbound`] stream ends and [`Inbound::shutdown_signal`] fires), waits up to a
//! deadline for them to return, aborts the rest and reports how many of each.
//! Dropping the handle shuts down with no grace: every handler is aborted at once.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use connection_core::{ConfigError, Endpoint, Operation, require_in_range, require_nonzero};
use futures::{Sink, Stream};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::codec::{Decoder, Encoder, Framed};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::TcpError;
use crate::socket::Socket;

/// The largest [`ListenerBuilder::max_connections`] (and `max_handshakes`): 1,048,576.
pub const MAX_CONNECTIONS: usize = 1 << 20;

fn invalid(e: ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Builder of a [`Listener`]: limits, TLS, then [`bind`](Self::bind).
#[derive(Clone)]
#[must_use]
pub struct ListenerBuilder {
    max_connections: usize,
    max_handshakes: usize,
    handshake_timeout: Duration,
    read_idle_timeout: Option<Duration>,
    backlog: u32,
    nodelay: bool,
    event_capacity: usize,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ListenerBuilder");
        d.field("max_connections", &self.max_connections)
            .field("max_handshakes", &self.max_handshakes)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("read_idle_timeout", &self.read_idle_timeout)
            .field("backlog", &self.backlog)
            .field("nodelay", &self.nodelay)
            .field("event_capacity", &self.event_capacity);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_handshakes: 64,
            handshake_timeout: Duration::from_secs(10),
            read_idle_timeout: Some(Duration::from_secs(300)),
            backlog: 1024,
            nodelay: true,
            event_capacity: 64,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ListenerBuilder {
    /// Serves TLS with this configuration (see `connection_tls::ServerTls`), plain TCP
    /// otherwise.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connections open at once, handshaking ones included (1024 by default, 1 to
    /// [`MAX_CONNECTIONS`]). One more is closed as soon as it is accepted and reported as
    /// [`ListenerEvent::Rejected`].
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// TLS handshakes running at once (64 by default, 1 to [`MAX_CONNECTIONS`]). A connection waits
    /// up to [`handshake_timeout`](Self::handshake_timeout) for a handshake slot (and
    /// is closed as a handshake timeout if none frees), then has that long again for
    /// the handshake itself.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n;
        self
    }

    /// Time a TLS handshake may take, and time a connection may wait for a handshake
    /// slot before it (10 s by default; see the module docs for why not 200 ms). A
    /// connection over either is closed and counted as a handshake timeout.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Time a handler's [`Inbound`] stream waits for the next frame before it yields
    /// [`TcpError::Timeout`] and ends (5 minutes by default; `None` to wait forever).
    /// The clock runs only while the handler is waiting for a frame, not while it works
    /// on the last one.
    pub fn read_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_idle_timeout = timeout;
        self
    }

    /// The kernel's accept queue length (1024 by default; the kernel may cap it, on
    /// Linux at `net.core.somaxconn`).
    pub fn backlog(mut self, n: u32) -> Self {
        self.backlog = n;
        self
    }

    /// `TCP_NODELAY` on accepted sockets (on by default: frames go out when written,
    /// not when Nagle's algorithm is done waiting).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// How many [`ListenerEvent`]s a slow subscriber may fall behind before it loses the
    /// oldest (64 by default, 1 to 4096).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Checks every setting: a count out of range, a zero timeout or one past
    /// [`MAX_DURATION`](connection_core::MAX_DURATION) is an error naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        require_in_range("max_connections", self.max_connections, 1..=MAX_CONNECTIONS)?;
        require_in_range("max_handshakes", self.max_handshakes, 1..=MAX_CONNECTIONS)?;
        require_nonzero("handshake_timeout", self.handshake_timeout)?;
        if let Some(t) = self.read_idle_timeout {
            require_nonzero("read_idle_timeout", t)?;
        }
        require_in_range("event_capacity", self.event_capacity, 1..=4096)?;
        Ok(())
    }

    /// Binds `addr` (port 0 picks a free port; [`Listener::local_addr`] tells which).
    /// A setting out of range fails with an [`io::Error`] of kind `InvalidInput` whose
    /// inner error is the [`ConfigError`] naming it (see [`validate`](Self::validate)).
    pub async fn bind(self, addr: SocketAddr) -> io::Result<Listener> {
        self.validate().map_err(invalid)?;
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // A restarted server must be able to bind while old connections sit in TIME_WAIT.
        #[cfg(not(windows))]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(self.backlog)?;
        self.from_listener(listener)
    }

    /// A listener on a socket you bound yourself.
    pub fn from_listener(self, listener: TcpListener) -> io::Result<Listener> {
        self.validate().map_err(invalid)?;
        let local_addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(self.event_capacity);
        Ok(Listener {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                counters: Counters::default(),
                events,
            }),
            config: self,
        })
    }
}

/// A bound TCP (optionally TLS) listener, not yet serving.
///
/// [`serve`](Self::serve) spawns the accept loop and calls your handler once per
/// connection with an [`Inbound`]: the connection framed by your codec (a `Stream` of
/// frames and a `Sink` of frames), its peer address and the shutdown signal.
///
/// ```
/// use std::time::Duration;
///
/// use connection_transport_tcp::{Lines, Listener};
/// use futures::{SinkExt, StreamExt};
/// use tokio_util::codec::Framed;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::builder()
///     .max_connections(100)
///     .bind("127.0.0.1:0".parse()?)
///     .await?;
/// let addr = listener.local_addr();
/// let server = listener.serve(Lines::default(), |mut conn| async move {
///     // Ends when the peer closes, a frame is bad, the read-idle timeout fires, or the
///     // listener shuts down.
///     while let Some(Ok(line)) = conn.next().await {
///         if conn.send(line).await.is_err() {
///             break;
///         }
///     }
/// });
///
/// let mut client = Framed::new(tokio::net::TcpStream::connect(addr).await?, Lines::default());
/// client.send("hello".to_string()).await?;
/// assert_eq!(client.next().await.transpose()?.as_deref(), Some("hello"));
///
/// let report = server.shutdown(Duration::from_secs(1)).await;
/// assert_eq!((report.closed_cleanly, report.aborted), (1, 0));
/// assert_eq!(report.metrics.accepted, 1);
/// # Ok(())
/// # }
/// ```
pub struct Listener {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    config: ListenerBuilder,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish()
    }
}

impl Listener {
    /// The builder, with the defaults of the module docs.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// A plain TCP listener on `addr` with the default limits.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::builder().bind(addr).await
    }

    /// The bound address (with the port picked when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Subscribes to the listener's events (subscribe before [`serve`](Self::serve) to
    /// see the first ones).
    pub fn events(&self) -> broadcast::Receiver<ListenerEvent> {
        self.shared.events.subscribe()
    }

    /// The counters so far.
    pub fn metrics(&self) -> ListenerMetrics {
        self.shared.counters.snapshot()
    }

    /// Starts accepting on a spawned task (call it inside a tokio runtime) and calls
    /// `handler` once per connection, on a task of its own. Returns the handle that
    /// reports metrics and shuts the listener down; dropping it shuts down at once.
    pub fn serve<C, H, Fut>(self, codec: C, handler: H) -> ListenerHandle
    where
        C: Decoder + Clone + Send + 'static,
        C::Item: Send + 'static,
        C::Error: std::error::Error + Send + Sync + 'static,
        H: Fn(Inbound<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let grace = Arc::new(Mutex::new(Duration::ZERO));
        let shared = self.shared.clone();
        let local_addr = self.local_addr;
        let task = tokio::spawn(run(
            self,
            codec,
            Arc::new(handler),
            stop.clone(),
            grace.clone(),
        ));
        ListenerHandle {
            local_addr,
            shared,
            stop,
            grace,
            task: Some(task),
        }
    }
}

/// A serving listener: its metrics and events, and the way to shut it down.
pub struct ListenerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    grace: Arc<Mutex<Duration>>,
    task: Option<tokio::task::JoinHandle<ShutdownReport>>,
}

impl fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("local_addr", &self.local_addr)
            .field("stopping", &self.stop.is_cancelled())
            .finish()
    }
}

impl ListenerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far.
    pub fn metrics(&self) -> ListenerMetrics {
        self.shared.counters.snapshot()
    }

    /// Subscribes to the listener's events.
    pub fn events(&self) -> broadcast::Receiver<ListenerEvent> {
        self.shared.events.subscribe()
    }

    /// Stops accepting, tells every handler to finish, waits up to `deadline` for them,
    /// aborts the rest, and reports what happened. Returns within `deadline` plus the
    /// time aborted tasks take to drop.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        *self.grace.lock() = deadline;
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return ShutdownReport::default();
        };
        match task.await {
            Ok(report) => report,
            // The accept loop does not panic; if the runtime is shutting down, there is
            // nothing left to report.
            Err(_) => ShutdownReport {
                metrics: self.shared.counters.snapshot(),
                ..ShutdownReport::default()
            },
        }
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        // Grace stays at zero unless shutdown() set it: every handler is aborted at once.
        self.stop.cancel();
    }
}

/// What a graceful shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when shutdown started (handshaking ones included).
    pub in_flight: usize,
    /// Handlers that returned within the deadline.
    pub closed_cleanly: usize,
    /// Connections still in their TLS handshake, closed without a handler.
    pub closed_in_handshake: usize,
    /// Handlers that panicked during the drain.
    pub panicked: usize,
    /// Handlers still running at the deadline, aborted.
    pub aborted: usize,
    /// How long the drain took.
    pub took: Duration,
    /// The listener's counters at the end.
    pub metrics: ListenerMetrics,
}

/// Something that happened on a listener.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A connection was accepted (its TLS handshake, if any, follows).
    Accepted {
        /// The peer.
        peer: SocketAddr,
    },
    /// A connection was closed as soon as accepted: `max_connections` were open.
    Rejected {
        /// The peer.
        peer: SocketAddr,
    },
    /// A TLS handshake failed or timed out; the connection is closed.
    HandshakeFailed {
        /// The peer.
        peer: SocketAddr,
        /// [`TcpError::Tls`] or [`TcpError::Timeout`].
        error: TcpError,
    },
    /// A connection's handler returned (or the connection closed during its handshake),
    /// and its slot under `max_connections` is free again.
    Closed {
        /// The peer.
        peer: SocketAddr,
    },
    /// Accepting failed; the next attempt waits `retry_in`.
    AcceptError {
        /// The error.
        error: Arc<io::Error>,
        /// The pause before the next accept.
        retry_in: Duration,
    },
    /// Shutdown started with this many connections open.
    ShutdownStarted {
        /// Connections open.
        in_flight: usize,
    },
    /// Shutdown finished.
    ShutdownFinished(ShutdownReport),
}

/// A snapshot of a listener's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ListenerMetrics {
    /// Connections accepted and given a slot.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// Connections open now (handshaking ones included).
    pub active: u64,
    /// The most connections open at once so far.
    pub peak_active: u64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// Of those, the ones that timed out.
    pub handshake_timeouts: u64,
    /// Handler streams ended by the read-idle timeout.
    pub idle_timeouts: u64,
    /// Accept errors (each followed by a pause, unless it concerned one connection).
    pub accept_errors: u64,
    /// Bytes read from connections (inside TLS: the application's bytes).
    pub bytes_in: u64,
    /// Bytes written to connections (inside TLS: the application's bytes).
    pub bytes_out: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    active: AtomicU64,
    peak_active: AtomicU64,
    handshake_failures: AtomicU64,
    handshake_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    accept_errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ListenerMetrics {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ListenerMetrics {
            accepted: get(&self.accepted),
            rejected: get(&self.rejected),
            active: get(&self.active),
            peak_active: get(&self.peak_active),
            handshake_failures: get(&self.handshake_failures),
            handshake_timeouts: get(&self.handshake_timeouts),
            idle_timeouts: get(&self.idle_timeouts),
            accept_errors: get(&self.accept_errors),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }
}

#[derive(Debug)]
struct Shared {
    counters: Counters,
    events: broadcast::Sender<ListenerEvent>,
}

impl Shared {
    fn emit(&self, event: ListenerEvent) {
        // No subscriber is fine; a slow one loses the oldest events.
        let _ = self.events.send(event);
    }
}

/// Decrements the active count however the connection's task ends (returned, panicked
/// or aborted).
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a connection's task ended.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
enum Outcome {
    Handled,
    HandshakeFailed,
    HandshakeCancelled,
}

/// The pause after an accept error: 10 ms doubling to 1 s, reset by a successful accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self(Self::FIRST)
    }

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        now
    }
}

/// An accept error that concerns the one connection being accepted, not the listener.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

struct Setup {
    #[cfg(feature = "tls")]
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<Semaphore>)>,
    handshake_timeout: Duration,
    read_idle_timeout: Option<Duration>,
}

async fn run<C, H, Fut>(
    listener: Listener,
    codec: C,
    handler: Arc<H>,
    stop: CancellationToken,
    grace: Arc<Mutex<Duration>>,
) -> ShutdownReport
where
    C: Decoder + Clone + Send + 'static,
    C::Item: Send + 'static,
    C::Error: std::error::Error + Send + Sync + 'static,
    H: Fn(Inbound<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Listener {
        listener: tcp,
        shared,
        config,
        ..
    } = listener;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let setup = Arc::new(Setup {
        #[cfg(feature = "tls")]
        tls: config.tls.clone().map(|c| {
            (
                tokio_rustls::TlsAcceptor::from(c),
                Arc::new(Semaphore::new(config.max_handshakes)),
            )
        }),
        handshake_timeout: config.handshake_timeout,
        read_idle_timeout: config.read_idle_timeout,
    });
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut backoff = Backoff::new();
    // Handlers are told only after the accept loop has stopped and reaped what ended
    // before, so the report counts exactly the connections shutdown had to close.
    let tell_handlers = CancellationToken::new();

    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            // Reap finished connections so the set holds only live ones.
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a connection handler panicked");
                }
                continue;
            }
            r = tcp.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Backoff::new();
                a
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                let pause = backoff.next();
                shared
                    .counters
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in = ?pause, "accept failed");
                shared.emit(ListenerEvent::AcceptError {
                    error: Arc::new(e),
                    retry_in: pause,
                });
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            shared.emit(ListenerEvent::Rejected { peer });
            continue;
        };
        if config.nodelay {
            // Best effort: a socket that refuses still works, only with Nagle's delay.
            let _ = stream.set_nodelay(true);
        }
        let c = &shared.counters;
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let now = c.active.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak_active.fetch_max(now, Ordering::Relaxed);
        shared.emit(ListenerEvent::Accepted { peer });
        let active = Active(shared.clone());
        let conn = connection(
            stream,
            peer,
            setup.clone(),
            shared.clone(),
            codec.clone(),
            handler.clone(),
            tell_handlers.clone(),
        );
        let events = shared.clone();
        tasks.spawn(async move {
            let outcome = conn.await;
            // The slot is free before anyone hears of the close.
            drop((slot, active));
            if !matches!(outcome, Outcome::HandshakeCancelled) {
                events.emit(ListenerEvent::Closed { peer });
            }
            outcome
        });
    }

    // Stop accepting: the kernel refuses new connections from here on.
    drop(tcp);
    let started = Instant::now();
    // Connections that ended before shutdown are not part of its report.
    while tasks.try_join_next().is_some() {}
    tell_handlers.cancel();
    let in_flight = tasks.len();
    shared.emit(ListenerEvent::ShutdownStarted { in_flight });
    let deadline = connection_core::time::deadline(started, *grace.lock());
    let mut report = ShutdownReport {
        in_flight,
        ..ShutdownReport::default()
    };
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(Outcome::Handled))) => report.closed_cleanly += 1,
            Ok(Some(Ok(_))) => report.closed_in_handshake += 1,
            Ok(Some(Err(e))) if e.is_panic() => report.panicked += 1,
            Ok(Some(Err(_))) => report.aborted += 1,
            Ok(None) | Err(_) => break,
        }
    }
    report.aborted += tasks.len();
    tasks.abort_all();
    // Aborted tasks end at their next await point; this waits only for their drops.
    while tasks.join_next().await.is_some() {}
    report.took = started.elapsed();
    report.metrics = shared.counters.snapshot();
    shared.emit(ListenerEvent::ShutdownFinished(report));
    report
}

async fn connection<C, H, Fut>(
    stream: TcpStream,
    peer: SocketAddr,
    setup: Arc<Setup>,
    shared: Arc<Shared>,
    codec: C,
    handler: Arc<H>,
    stop: CancellationToken,
) -> Outcome
where
    C: Decoder + Clone + Send + 'static,
    H: Fn(Inbound<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    #[cfg(feature = "tls")]
    let socket = match &setup.tls {
        None => Socket::Plain(stream),
        Some((acceptor, handshakes)) => 'tls: {
            let limit = setup.handshake_timeout;
            let handshake = async {
                // Waiting for a slot and the handshake are bounded separately: a client
                // queued behind slow ones still gets its full time once it starts.
                let _permit = tokio::time::timeout(limit, handshakes.acquire()).await?;
                tokio::time::timeout(limit, acceptor.accept(stream)).await
            };
            let result = tokio::select! {
                () = stop.cancelled() => return Outcome::HandshakeCancelled,
                r = handshake => r,
            };
            let c = &shared.counters;
            let error = match result {
                Ok(Ok(tls)) => break 'tls Socket::ServerTls(Box::new(tls)),
                Ok(Err(e)) => TcpError::Tls {
                    endpoint: peer_endpoint(peer),
                    source: connection_core::shared(e),
                },
                Err(_) => {
                    c.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                    TcpError::Timeout {
                        endpoint: peer_endpoint(peer),
                        operation: Operation::Connect,
                        after: setup.handshake_timeout,
                    }
                }
            };
            c.handshake_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %error, "TLS handshake failed");
            shared.emit(ListenerEvent::HandshakeFailed { peer, error });
            return Outcome::HandshakeFailed;
        }
    };
    #[cfg(not(feature = "tls"))]
    let socket = {
        let _ = &setup.handshake_timeout;
        Socket::Plain(stream)
    };
    let inbound = Inbound::new(
        Framed::new(
            Metered {
                socket,
                shared: shared.clone(),
            },
            codec,
        ),
        peer,
        stop,
        setup.read_idle_timeout,
        shared.clone(),
    );
    handler(inbound).await;
    Outcome::Handled
}

/// The peer as an endpoint, for errors. Made only when an error is, never per frame: it
/// formats and parses the address.
fn peer_endpoint(peer: SocketAddr) -> Endpoint {
    let host = peer.ip().to_string();
    // An IP address always makes a host; port 0 (which an accepted peer never has) does
    // not make an endpoint, so it is shown as 1.
    match Endpoint::host_port(&host, peer.port().max(1)) {
        Ok(e) => e,
        Err(_) => Endpoint::host_port("0.0.0.0", 1).unwrap_or_else(|_| unreachable_endpoint()),
    }
}

#[allow(clippy::unwrap_used, reason = "a literal that parses")]
fn unreachable_endpoint() -> Endpoint {
    "tcp://127.0.0.1:1".parse().unwrap()
}

/// A socket that counts its bytes into the listener's counters: one relaxed atomic add
/// per read or write call, nothing per byte.
struct Metered {
    socket: Socket,
    shared: Arc<Shared>,
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        this.shared
            .counters
            .bytes_in
            .fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.socket).poll_write(cx, buf))?;
        this.shared
            .counters
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.socket).poll_write_vectored(cx, bufs))?;
        this.shared
            .counters
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// One accepted connection as a handler sees it: a [`Stream`] of the frames the
    /// codec decodes and a [`Sink`] of the frames it encodes, with the peer's address
    /// and the listener's shutdown signal.
    ///
    /// The stream ends (`None`) when the peer closes or the listener shuts down; it
    /// yields one error and then ends when a frame is bad or over the limit
    /// ([`TcpError::FrameTooLarge`], [`TcpError::Codec`]), the socket fails, or no frame
    /// arrives within the read-idle timeout ([`TcpError::Timeout`], operation
    /// `request`). The connection closes when the handler drops it; close the sink
    /// first (`SinkExt::close`) to flush and, with TLS, send `close_notify`.
    pub struct Inbound<C> {
        #[pin]
        framed: Framed<Metered, C>,
        peer: SocketAddr,
        stop: CancellationToken,
        stopped: Pin<Box<WaitForCancellationFutureOwned>>,
        idle_after: Option<Duration>,
        idle: Option<Pin<Box<Sleep>>>,
        waiting: bool,
        ended: bool,
        shared: Arc<Shared>,
    }
}

impl<C> fmt::Debug for Inbound<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("peer", &self.peer)
            .field("tls", &self.framed.get_ref().socket.is_tls())
            .field("ended", &self.ended)
            .finish()
    }
}

impl<C> Inbound<C> {
    fn new(
        framed: Framed<Metered, C>,
        peer: SocketAddr,
        stop: CancellationToken,
        idle_after: Option<Duration>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            framed,
            peer,
            stopped: Box::pin(stop.clone().cancelled_owned()),
            stop,
            idle_after,
            idle: None,
            waiting: false,
            ended: false,
            shared,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket (for the TLS session: `Socket::ServerTls`, e.g. the client's
    /// certificate).
    pub fn socket(&self) -> &Socket {
        &self.framed.get_ref().socket
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        self.framed.codec()
    }

    /// The codec, to change its settings mid-stream.
    pub fn codec_mut(&mut self) -> &mut C {
        self.framed.codec_mut()
    }

    /// Fires when the listener starts shutting down: finish up and return. A handler
    /// that only reads the stream needs nothing more (the stream ends); one that waits
    /// on something else should also wait on this.
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Whether the listener is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl<C> Stream for Inbound<C>
where
    C: Decoder,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    type Item = Result<C::Item, TcpError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let endpoint = |peer| peer_endpoint(peer);
        let mut this = self.project();
        if this.stopped.as_mut().poll(cx).is_ready() {
            *this.ended = true;
            return Poll::Ready(None);
        }
        if let (false, Some(after)) = (*this.waiting, *this.idle_after) {
            // A new wait for a frame starts now; time spent on the last one does not
            // count.
            *this.waiting = true;
            let at = connection_core::time::deadline(Instant::now(), after);
            match this.idle {
                Some(sleep) => sleep.as_mut().reset(at),
                None => *this.idle = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match this.framed.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.ended = true;
                Poll::Ready(Some(Err(TcpError::from_codec(&endpoint(*this.peer), e))))
            }
            Poll::Ready(None) => {
                *this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let (Some(sleep), Some(after)) = (this.idle.as_mut(), *this.idle_after)
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    *this.ended = true;
                    this.shared
                        .counters
                        .idle_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(TcpError::Timeout {
                        endpoint: endpoint(*this.peer),
                        operation: Operation::Request,
                        after,
                    })));
                }
                Poll::Pending
            }
        }
    }
}

impl<C, F> Sink<F> for Inbound<C>
where
    C: Encoder<F>,
    C::Error: std::error::Error + Send + Sync + 'static,
{
    type Error = TcpError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        let peer = self.peer;
        self.project()
            .framed
            .poll_ready(cx)
            .map_err(|e| TcpError::from_codec(&peer_endpoint(peer), e))
    }

    fn start_send(self: Pin<&mut Self>, item: F) -> Result<(), TcpError> {
        let peer = self.peer;
        self.project()
            .framed
            .start_send(item)
            .map_err(|e| TcpError::from_codec(&peer_endpoint(peer), e))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        let peer = self.peer;
        self.project()
            .framed
            .poll_flush(cx)
            .map_err(|e| TcpError::from_codec(&peer_endpoint(peer), e))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        let peer = self.peer;
        self.project()
            .framed
            .poll_close(cx)
            .map_err(|e| TcpError::from_codec(&peer_endpoint(peer), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_error_backoff_doubles_from_10ms_to_1s_and_stays_there() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[test]
    fn errors_about_one_connection_do_not_pause_the_listener() {
        assert!(per_connection(&io::ErrorKind::ConnectionAborted.into()));
        // EMFILE has no ErrorKind of its own; it is "other" and pauses.
        assert!(!per_connection(&io::Error::from_raw_os_error(24)));
    }
}
