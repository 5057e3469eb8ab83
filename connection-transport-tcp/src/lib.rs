//! # connection-transport-tcp
//!
//! TCP and TLS connections for the connection family, in tokio terms:
//!
//! - **Framing by generics** ([`codec`]): any tokio-util [`Decoder`](tokio_util::codec::Decoder)
//!   and [`Encoder`](tokio_util::codec::Encoder) is a [`Framing`]; the crate brings
//!   [`LengthDelimited`] (1, 2, 4 or 8-byte prefix, either byte order, a limit checked
//!   before anything is reserved), [`Lines`] (with a limit) and [`Raw`]. A frame over the
//!   limit is a clear error ([`TcpError::FrameTooLarge`]) and closes the connection that
//!   sent it.
//! - **The client** ([`TcpTransport`]): DNS, every address tried happy-eyeballs style,
//!   `TCP_NODELAY` and keepalive, optional TLS (rustls on ring, through `connection-tls`).
//!   Its connections' I/O handle, [`TcpIo`], is a framed sender and the stream of received
//!   frames, both bounded in bytes ([`TcpConfig`]); a supervisor, a pool, a manager and a
//!   failover group hand it to the application like every transport's. An optional
//!   application-level [`Ping`] makes `probe()` a real round trip.
//! - **The server side** ([`Listener`]): TLS and mTLS, a connection cap that refuses
//!   instead of queueing, a handshake cap and timeout, a read-idle timeout, backoff on
//!   accept errors, and a bounded graceful shutdown that reports what it closed.
//! - **Connections by key** ([`ConnectionCache`]): LRU, TTL and idle expiry, concurrent
//!   connects for one key coalesced into one, errors not cached; and
//!   [`connect_parallel`] for many locations at once.
//!
//! ```
//! use connection_core::Supervisor;
//! use connection_transport_tcp::{Bytes, Inbound, LengthDelimited, Listener, TcpTransport};
//! use futures::{SinkExt, StreamExt};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on 127.0.0.1 that echoes frames, at most 100 connections at once.
//! let server = Listener::builder()
//!     .max_connections(100)
//!     .bind("127.0.0.1:0".parse()?)
//!     .await?
//!     .serve(LengthDelimited::new(), |mut conn: Inbound<LengthDelimited>| async move {
//!         while let Some(Ok(frame)) = conn.next().await {
//!             if conn.send(frame).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!
//! // A supervised client: the link always reaches the current connection's handle.
//! let endpoint = format!("tcp://{}", server.local_addr()).parse()?;
//! let transport = TcpTransport::new(endpoint, LengthDelimited::new())?;
//! let supervised = Supervisor::new(transport).spawn()?;
//! let io = supervised.link().ready(Duration::from_secs(5)).await?;
//! io.send(Bytes::from_static(b"hello")).await?;
//! assert_eq!(io.recv().await.transpose()?, Some(Bytes::from_static(b"hello")));
//!
//! // Shutting down: handlers see their stream end and return; none is aborted.
//! supervised.shutdown(Duration::from_secs(1)).await;
//! let report = server.shutdown(Duration::from_secs(1)).await;
//! assert_eq!(report.aborted, 0);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod cache;
pub mod codec;
mod error;
mod listener;
mod listener_settings;
mod parallel;
mod socket;

/// The frame type of the byte-oriented framings, re-exported so that using them needs no
/// other crate.
pub use bytes::Bytes;
pub use cache::{
    CacheBuilder, CacheEvent, CacheMetrics, ConnectionCache, EvictReason, Evictions, KeyStatus,
};
pub use codec::{Framing, LengthDelimited, Lines, Raw};
pub use error::TcpError;
pub use listener::{
    Inbound, Listener, ListenerBuilder, ListenerEvent, ListenerHandle, ListenerMetrics,
    MAX_CONNECTIONS, ShutdownReport,
};
pub use listener_settings::{LISTENER_ENV_PREFIX, ListenerSettings};
pub use parallel::{ConnectOutcome, connect_parallel};
pub use socket::Socket;
mod config;
mod connection;
mod transport;

pub use config::{ENV_PREFIX, MAX_BUFFER_BYTES, TcpConfig, TcpConfigBuilder};
pub use connection::{Ping, TcpConnection, TcpIo, TcpSender};
pub use transport::{TcpTransport, TcpTransportBuilder};
