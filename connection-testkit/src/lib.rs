//! Real sockets on `127.0.0.1` for testing connection code: restartable loopback
//! servers and a fault-injecting TCP proxy.
//!
//! - [`LoopbackServer`]: a TCP server with a connection handler of your own, that can
//!   be [stopped](LoopbackServer::stop) (the port refuses, open connections close) and
//!   [restarted](LoopbackServer::restart) on the same port. [`TcpEchoServer`] echoes;
//!   [`handlers`] has ready-made handlers.
//! - [`FaultProxy`]: sits between a client and a server and injects latency, bandwidth
//!   limits, refused connections, resets, a blackhole (the half-open case), a cut after
//!   some bytes and sliced writes, switched on and off while connections run.
//! - [`Panicking`]: wraps a transport so that its connect, probe or close panics on
//!   demand, for testing that background tasks do not die silently.
//!
//! Everything listens on loopback addresses only, every fault lasts until it is
//! changed, and everything stops when dropped. Timing goes through [`tokio::time`], so
//! tests can run on paused time (`#[tokio::test(start_paused = true)]`).
//!
//! ```
//! use std::time::Duration;
//!
//! use connection_testkit::{FaultProxy, TcpEchoServer};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpStream;
//! use tokio::time::timeout;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> std::io::Result<()> {
//! // An echo server, and a proxy in front of it.
//! let server = TcpEchoServer::start().await?;
//! let proxy = FaultProxy::start(server.addr()).await?;
//!
//! let mut client = TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"hello").await?;
//! let mut buf = [0; 5];
//! client.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hello");
//!
//! // The peer stops answering, but the connection stays open.
//! proxy.blackhole(true);
//! client.write_all(b"anyone?").await?;
//! let answer = timeout(Duration::from_secs(1), client.read(&mut buf)).await;
//! assert!(answer.is_err(), "nothing comes back through a blackhole");
//!
//! // Back to normal; then every open connection is reset.
//! proxy.restore();
//! proxy.reset_all();
//! let after_reset = client.read(&mut buf).await;
//! assert!(matches!(after_reset, Ok(0) | Err(_)), "{after_reset:?}");
//!
//! // New connections work again.
//! let mut client = TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"again").await?;
//! client.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"again");
//! # Ok(()) }
//! ```
//!
//! # Paused time
//!
//! On paused tokio time, the clock jumps to the next timer whenever the runtime has
//! nothing to do, even while the kernel still holds data back. The usual culprit is
//! Nagle's algorithm: a small write waits for the ACK of the previous one, which the
//! receiver may delay by tens of milliseconds of real time, and meanwhile a timeout
//! fires. Call [`set_nodelay(true)`](tokio::net::TcpStream::set_nodelay) on client
//! sockets in such tests; [`handlers::echo`] and the proxy already do.
#![forbid(unsafe_code)]

pub mod bench;
pub mod events;
mod guard;
pub mod handlers;
mod panicking;
mod proxy;
mod server;
mod transport;

pub use panicking::{PANIC_MESSAGE, Panicking, PanickingConnection};
pub use proxy::{FaultProxy, ProxyStats};
pub use server::{LoopbackServer, TcpEchoServer};
pub use transport::{EchoClient, PING, TcpEchoConnection, TcpEchoTransport};
