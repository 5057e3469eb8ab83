//! [`TcpEchoTransport`]: a small but real [`Transport`] over TCP, for testing code that
//! is generic over transports (supervisors, pools, managers) against real sockets.
//!
//! It talks to any echo server (such as [`TcpEchoServer`](crate::TcpEchoServer)):
//! [`probe`](Connection::probe) writes a short ping and waits for its echo, so a
//! blackholed or stalled peer makes probes time out exactly like a dead production
//! peer would. With [`TcpEchoTransport::with_banner`], a connect also reads a one-line
//! banner first: `OK` accepts, `DENY` fails with a non-retryable
//! [`Error::Auth`], which lets tests exercise the give-up path on a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, EndpointError, Error,
    Transport,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
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
        let mut stream = BufReader::new(stream);
        if self.banner {
            let mut line = String::new();
            stream
                .read_line(&mut line)
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
                    return Err(Error::Protocol {
                        endpoint: self.endpoint.clone(),
                        source: format!("unexpected banner {other:?}").into(),
                    });
                }
            }
        }
        Ok(TcpEchoConnection {
            id: ConnectionId::next(),
            endpoint: self.endpoint.clone(),
            stream,
            state: ConnectionState::Connected,
            hang_on_close: self.hang_on_close,
        })
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// One connection of a [`TcpEchoTransport`].
#[derive(Debug)]
pub struct TcpEchoConnection {
    id: ConnectionId,
    endpoint: Endpoint,
    stream: BufReader<TcpStream>,
    state: ConnectionState,
    hang_on_close: bool,
}

impl TcpEchoConnection {
    /// Sends `payload` and waits until the same number of bytes came back; returns the
    /// round trip. The echoed bytes must equal the payload.
    pub async fn echo(&mut self, payload: &[u8]) -> Result<Duration, Error> {
        let started = Instant::now();
        let result = self.echo_inner(payload).await;
        if result.is_err() {
            self.state = ConnectionState::Failed;
        }
        result.map(|()| started.elapsed())
    }

    async fn echo_inner(&mut self, payload: &[u8]) -> Result<(), Error> {
        let io = |e| Error::io(&self.endpoint, e);
        self.stream.get_mut().write_all(payload).await.map_err(io)?;
        let mut back = vec![0; payload.len()];
        self.stream.read_exact(&mut back).await.map_err(io)?;
        if back != payload {
            return Err(Error::Protocol {
                endpoint: self.endpoint.clone(),
                source: "echo did not match what was sent".into(),
            });
        }
        Ok(())
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.get_ref().local_addr()
    }
}

impl Connection for TcpEchoConnection {
    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        self.state
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        self.echo(PING).await
    }

    async fn closed(&mut self) -> DisconnectReason {
        // Cancel-safe: a read either completes (and its bytes, stray echoes, are
        // discarded) or is dropped before taking anything from the socket.
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf).await {
                Ok(0) => {
                    self.state = ConnectionState::Closed;
                    return DisconnectReason::PeerClosed;
                }
                Ok(_) => continue,
                Err(e) => {
                    self.state = ConnectionState::Failed;
                    return DisconnectReason::Error(Arc::new(Error::io(&self.endpoint, e)));
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        if self.hang_on_close {
            std::future::pending::<()>().await;
        }
        if self.state == ConnectionState::Connected {
            self.state = ConnectionState::Closed;
            // A peer that already went away makes shutdown fail; closing is best effort.
            let _ = self.stream.get_mut().shutdown().await;
        }
        Ok(())
    }
}
