//! # connection-transport-tcp
//!
//! TCP and TLS connections for the connection family: framing through tokio-util codecs
//! chosen by generics ([`codec`]), a client transport whose I/O handle is a framed
//! sender and a stream of frames on the workspace's data plane, a server-side listener,
//! and a connection cache by key.
#![forbid(unsafe_code)]

pub mod cache;
pub mod codec;
mod error;
mod listener;
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
pub use parallel::{ConnectOutcome, connect_parallel};
pub use socket::Socket;
mod config;
mod connection;
mod transport;

pub use config::{ENV_PREFIX, MAX_BUFFER_BYTES, TcpConfig, TcpConfigBuilder};
pub use connection::{Ping, TcpConnection, TcpIo, TcpSender};
pub use transport::{TcpTransport, TcpTransportBuilder};
