//! Restartable TCP servers on the loopback interface.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::guard::OpenGuard;
use tracing::{debug, warn};

use crate::handlers;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type Handler = Arc<dyn Fn(TcpStream, SocketAddr) -> BoxFuture + Send + Sync + 'static>;

/// How often a bind to a fixed port is retried while the port is still in use.
const BIND_ATTEMPTS: u32 = 50;
/// Pause between two bind attempts (tokio time).
const BIND_RETRY: Duration = Duration::from_millis(20);
/// Listen backlog of every listener.
const BACKLOG: u32 = 1024;
/// Pause after a failed `accept` (for example out of file descriptors), so the loop
/// does not spin.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A TCP server on a loopback address that hands every accepted connection to a
/// handler, and that can be stopped and restarted on the same port.
///
/// Each connection runs in its own task, owned by the server: [`stop`](Self::stop)
/// closes the listener (new connects are refused) and ends every live connection (the
/// handler's future is dropped, which closes the socket, so peers see EOF or a reset).
/// [`restart`](Self::restart) listens again on the same port. Dropping the server stops
/// it.
///
/// A handler should keep the stream inside its own future (not move it into a task it
/// spawns), or `stop` cannot close it.
///
/// ```
/// use connection_testkit::LoopbackServer;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::TcpStream;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// // Greets every client, then closes.
/// let mut server = LoopbackServer::start(|mut stream, _peer| async move {
///     let _ = stream.write_all(b"hello\n").await;
/// })
/// .await?;
///
/// let mut greeting = String::new();
/// TcpStream::connect(server.addr()).await?.read_to_string(&mut greeting).await?;
/// assert_eq!(greeting, "hello\n");
///
/// server.stop().await;
/// assert!(TcpStream::connect(server.addr()).await.is_err());
/// server.restart().await?;
/// assert!(TcpStream::connect(server.addr()).await.is_ok());
/// # Ok(()) }
/// ```
pub struct LoopbackServer {
    addr: SocketAddr,
    handler: Handler,
    counters: Arc<Counters>,
    running: Option<Running>,
}

/// The accept task of a running server and the way to ask it to stop.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    accepted: AtomicU64,
}

impl LoopbackServer {
    /// Starts a server on `127.0.0.1` with a port chosen by the system.
    ///
    /// `handler` is called with every accepted stream and the peer's address; the
    /// future it returns runs in a task of its own until it completes or the server
    /// stops.
    pub async fn start<F, Fut>(handler: F) -> io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), handler).await
    }

    /// Starts a server on `addr`, which must be a loopback address (port 0 lets the
    /// system choose). Fails with [`io::ErrorKind::InvalidInput`] for any other address.
    ///
    /// Binding a fixed port is retried for about a second (tokio time) while the port
    /// is still in use.
    pub async fn start_on<F, Fut>(addr: SocketAddr, handler: F) -> io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler =
            Arc::new(move |stream, peer| Box::pin(handler(stream, peer)) as BoxFuture);
        let listener = bind_loopback(addr).await?;
        let addr = listener.local_addr()?;
        let mut server = Self {
            addr,
            handler,
            counters: Arc::default(),
            running: None,
        };
        server.serve(listener);
        debug!(%addr, "loopback server started");
        Ok(server)
    }

    /// Starts a server that accepts connections, reads and discards everything, and
    /// never writes: a peer that is there but never answers.
    pub async fn silent() -> io::Result<Self> {
        Self::start(handlers::silent).await
    }

    /// The address the server listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the server is listening (started or restarted, and not stopped since).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// How many accepted connections are open right now.
    pub fn connections(&self) -> usize {
        self.counters.open.load(Ordering::Relaxed)
    }

    /// How many connections were accepted since the server was created, across restarts.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Stops the server: closes the listener, so connecting to the port is refused, and
    /// closes every open connection. When this returns, both are done. Does nothing if
    /// the server is already stopped.
    pub async fn stop(&mut self) {
        let Some(Running { stop, task }) = self.running.take() else {
            return;
        };
        // The accept loop drops the listener first, then ends every connection task.
        let _ = stop.send(());
        if let Err(e) = task.await {
            if e.is_panic() {
                warn!(addr = %self.addr, "loopback server accept loop panicked");
            }
        }
        debug!(addr = %self.addr, "loopback server stopped");
    }

    /// Listens again on the same address after [`stop`](Self::stop), with
    /// `SO_REUSEADDR` so closed connections in `TIME_WAIT` do not block the port. Binding
    /// is retried for about a second (tokio time) while the port is in use. Does nothing
    /// if the server is running.
    pub async fn restart(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = bind_loopback(self.addr).await?;
        self.serve(listener);
        debug!(addr = %self.addr, "loopback server restarted");
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.handler),
            Arc::clone(&self.counters),
            stopped,
        ));
        self.running = Some(Running { stop, task });
    }
}

impl fmt::Debug for LoopbackServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopbackServer")
            .field("addr", &self.addr)
            .field("running", &self.is_running())
            .field("connections", &self.connections())
            .field("accepted", &self.accepted())
            .finish_non_exhaustive()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Dropping the accept loop drops the listener and its `JoinSet`, which
            // aborts every connection task.
            running.task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Handler,
    counters: Arc<Counters>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let guard = OpenGuard::new(&counters);
                    let served = handler(stream, peer);
                    connections.spawn(async move {
                        let _guard = guard;
                        served.await;
                    });
                }
                Err(e) => {
                    warn!(error = %e, "loopback server accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        warn!("loopback server connection handler panicked");
                    }
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Binds a listener on a loopback address with `SO_REUSEADDR`, retrying for a bounded
/// time while a fixed port is in use.
pub(crate) async fn bind_loopback(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("connection-testkit only listens on loopback addresses, not {addr}"),
        ));
    }
    let mut attempt = 1;
    loop {
        match try_bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && addr.port() != 0
                    && attempt < BIND_ATTEMPTS =>
            {
                debug!(%addr, attempt, "port still in use, retrying bind");
                attempt += 1;
                tokio::time::sleep(BIND_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn try_bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A [`LoopbackServer`] that echoes every byte back to its sender.
///
/// When a client shuts down its write side, the server finishes echoing and then closes
/// its side too.
///
/// ```
/// use connection_testkit::TcpEchoServer;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::TcpStream;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let server = TcpEchoServer::start().await?;
/// let mut client = TcpStream::connect(server.addr()).await?;
/// client.write_all(b"ping").await?;
/// let mut buf = [0; 4];
/// client.read_exact(&mut buf).await?;
/// assert_eq!(&buf, b"ping");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TcpEchoServer {
    inner: LoopbackServer,
}

impl TcpEchoServer {
    /// Starts an echo server on `127.0.0.1` with a port chosen by the system.
    pub async fn start() -> io::Result<Self> {
        Ok(Self {
            inner: LoopbackServer::start(handlers::echo).await?,
        })
    }

    /// Starts an echo server on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            inner: LoopbackServer::start_on(addr, handlers::echo).await?,
        })
    }

    /// The address the server listens on (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr()
    }

    /// The port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// Whether the server is listening. See [`LoopbackServer::is_running`].
    pub fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// How many accepted connections are open right now.
    pub fn connections(&self) -> usize {
        self.inner.connections()
    }

    /// How many connections were accepted since the server was created, across restarts.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted()
    }

    /// Closes the listener and every open connection. See [`LoopbackServer::stop`].
    pub async fn stop(&mut self) {
        self.inner.stop().await;
    }

    /// Listens again on the same port. See [`LoopbackServer::restart`].
    pub async fn restart(&mut self) -> io::Result<()> {
        self.inner.restart().await
    }

    /// The underlying [`LoopbackServer`].
    pub fn into_inner(self) -> LoopbackServer {
        self.inner
    }
}

impl crate::guard::OpenCount for Counters {
    fn open(&self) -> &AtomicUsize {
        &self.open
    }
}
