//! # connection-transport-ws
//!
//! A WebSocket client an application can hold for days while networks flap and servers
//! restart: it reconnects, heart-beats, queues what you send while it is away, and
//! tells you what happened.
//!
//! ## Design
//!
//! Two layers. [`WsTransport`] is a [`connection_core::Transport`]: one `connect()` is one
//! attempt (TCP, TLS for `wss://`, the WebSocket handshake with your headers and
//! subprotocols, then your `on_connect` hook), and its [`WsConnection`] runs a reader task and
//! a writer task over the socket that never wait for each other. Its
//! [`probe`](connection_core::Connection::probe) is a ping with a unique payload answered
//! by the matching pong; its [`closed`](connection_core::Connection::closed) reports the
//! server's close code (and whether to reconnect, from the [`CloseCodePolicy`]) or the
//! error. [`WsClient`] is that transport under the workspace's one reconnect loop,
//! [`connection_core::Supervisor`]: the heartbeat is the supervisor's keepalive (ping
//! interval, pong timeout) so round trips land in the latency metrics and a missing pong
//! reconnects; events and metrics are the supervisor's. The client owns a bounded
//! outbound queue and a bounded inbound channel that outlive connections: each
//! connection's writer takes the queue's lock while it lives, so messages wait in order
//! during a reconnect; each reader pushes into the inbound channel and stops reading the
//! socket when it is full, so a slow consumer slows the server down (TCP backpressure)
//! instead of growing memory. What those two hold is the client's memory figure:
//! `metrics().buffered_bytes`, the payload bytes of sent messages not yet flushed to a
//! socket plus received ones not yet taken (see [`WsClient::metrics`] for what it cannot
//! count).
//!
//! The price of that backpressure: while the reader is paused, nothing else is read
//! either, pongs and server pings included (they queue behind the unread messages). A
//! consumer that stalls for longer than the pong timeout makes the heartbeat declare the
//! connection dead and reconnect, and a server with a keepalive of its own may close it;
//! Python's `websockets` behaves the same way. If your consumer can stall, raise
//! `pong_timeout` or `inbound_buffer` / `inbound_buffer_bytes`, or move slow work off the
//! receiving task.
//!
//! ## Delivery: at most once
//!
//! A message is written at most once; nothing is resent. What can be lost, exactly:
//!
//! - messages accepted by `send` stay in the queue until a writer takes them; the queue
//!   itself never drops one (a full queue refuses the send or makes it wait,
//!   per [`WhenFull`]);
//! - a writer takes up to 64 queued messages, writes them and flushes. If the connection
//!   dies during that write or flush, those messages (the one being written and any in
//!   tungstenite's write buffer not yet flushed) are lost: some may have reached the
//!   server, some not, and TCP cannot say which. Messages already flushed to the kernel
//!   may also be lost if the connection dies before the server reads them;
//! - when the client is closed or dropped, messages still queued are discarded
//!   ([`WsClient::close`] first gives them until its deadline to be flushed).
//!
//! How an application detects a loss: a [`Disconnected`](connection_core::EventKind)
//! event tells you a connection ended; `metrics().messages_out` counts only messages
//! whose flush succeeded. For end-to-end guarantees, number your messages and have the
//! server acknowledge them (re-sending unacknowledged ones from `on_connect`).
//!
//! ## TLS
//!
//! `wss://` uses rustls with the **ring** crypto provider, given to each
//! `ClientConfig` directly (nothing is installed process-wide; aws-lc-rs is never
//! compiled in). Server certificates are verified against the webpki roots by default,
//! or a root store you give; client certificates (mTLS) on request. A certificate that
//! does not verify fails with [`WsError::Tls`], which is not retried. TLS is the default
//! cargo feature `tls`; without it, `wss://` URLs are refused with a configuration error
//! naming the feature.
//!
//! ## Configuration
//!
//! [`WsConfig::builder`] validates every setting and names the bad one;
//! [`WsSettings`] reads the same settings from serde or `CONNECTION_WS_*` environment
//! variables.
//!
//! ## Logs and secrets
//!
//! What this crate logs (through `tracing`) and every error, event and `Debug` form it
//! makes are redacted: the URL's userinfo, query values and fragment, header values and
//! the bearer token never appear. tungstenite, the WebSocket library underneath, logs
//! through the `log` crate and does not redact: at TRACE it logs the whole upgrade
//! request (the `Authorization` header and the `?token=` of the URL included) and every
//! frame and message with its payload. Nothing reaches a log unless a logger takes
//! tungstenite's TRACE records, but the usual `tracing-subscriber` setup with its `log`
//! bridge does once the level is TRACE. Cap tungstenite at DEBUG with
//! [`LOG_FILTER_DIRECTIVE`] (its DEBUG records carry no secrets):
//!
//! ```text
//! RUST_LOG=trace,tungstenite=debug            # env_logger, or tracing's EnvFilter
//! ```
//!
//! ```
//! // tracing-subscriber: EnvFilter::new(format!("trace,{LOG_FILTER_DIRECTIVE}")), or
//! // format!("trace,{LOG_FILTER_DIRECTIVE}").parse::<tracing_subscriber::filter::Targets>()
//! use connection_transport_ws::LOG_FILTER_DIRECTIVE;
//! let directives = format!("trace,{LOG_FILTER_DIRECTIVE}");
//! assert_eq!(directives, "trace,tungstenite=debug");
//! ```
//!
//! The `log_filter` test of this crate checks both sides: without the directive the
//! secrets appear in a TRACE log, with it they do not.
//!
//! ## Memory
//!
//! tungstenite's read buffer starts at 8 KiB here instead of 128 KiB (it grows for large
//! messages), the private event bus is small, and the default TLS configuration is
//! shared by all clients of a process.
//!
//! ## Example
//!
//! ```no_run
//! // Everything a client needs comes from this crate: no direct connection-core or
//! // connection-retry dependency to set a backoff or filter events.
//! use connection_transport_ws::{
//!     BackoffStrategy, EventFilter, EventType, Jitter, Message, WsClient, WsError,
//! };
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), WsError> {
//! let backoff = BackoffStrategy::exponential(Duration::from_millis(500), 2.0)
//!     .max_delay(Duration::from_secs(60))
//!     .jitter(Jitter::Equal)
//!     .build()?;
//! let mut client = WsClient::builder("wss://stream.example.com/v1")
//!     .configure(|c| c.bearer_auth("token").subprotocol("v1.json"))
//!     .backoff(backoff)
//!     .on_connect(|session| async move {
//!         session.send_text(r#"{"subscribe":"ticker"}"#).await?;
//!         Ok(())
//!     })
//!     .name("ticker")
//!     .spawn()?;
//!
//! let mut events = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
//! tokio::spawn(async move {
//!     while let Some(Ok(event)) = events.next().await {
//!         tracing::info!(%event);
//!     }
//! });
//!
//! client.send_text("hello").await?;
//! while let Some(msg) = client.next().await {
//!     if let Message::Text(text) = msg {
//!         println!("{text}");
//!     }
//! }
//! client.close(Duration::from_secs(2)).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod connection;
mod error;
mod settings;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use client::{PRIVATE_BUS_CAPACITY, WsClient, WsClientBuilder, default_backoff};
pub use config::{
    CloseCodePolicy, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INBOUND_BUFFER,
    DEFAULT_INBOUND_BUFFER_BYTES, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE, DEFAULT_PING_INTERVAL,
    DEFAULT_PONG_TIMEOUT, DEFAULT_QUEUE_CAPACITY, DEFAULT_READ_BUFFER, DEFAULT_WRITE_BUFFER,
    MAX_BUFFER_SIZE, MAX_MESSAGE_LIMIT, MAX_QUEUE_CAPACITY, WhenFull, WsConfig, WsConfigBuilder,
};
pub use connection::{Session, WsConnection, WsSender};
pub use error::WsError;
pub use settings::{ENV_PREFIX, WsSettings};
pub use transport::WsTransport;

/// What a WebSocket user needs from the other crates without depending on them: the
/// reconnect schedules, the events and their filter, states and errors.
pub use connection_core::{
    Backoff, ConfigError, ConnectionState, ConstantBackoff, DisconnectReason, Error, Event,
    EventBus, EventFilter, EventKind, EventStream, EventType, ExponentialBackoff, Severity,
    ShutdownOutcome,
};
/// The configurable backoff of `connection-retry`, for [`WsClientBuilder::backoff`].
pub use connection_retry::{BackoffStrategy, Jitter};

/// The log filter directive that keeps secrets out of logs taken at TRACE: it caps the
/// `tungstenite` target (and its modules) at DEBUG, because tungstenite logs the upgrade
/// request with its `Authorization` header and URL query, and every frame's payload, at
/// TRACE. Append it to the directives of `RUST_LOG`, `EnvFilter` or `Targets`; see
/// "Logs and secrets" in the crate docs.
pub const LOG_FILTER_DIRECTIVE: &str = "tungstenite=debug";

/// The message type (text, binary; pings, pongs and close frames are handled inside).
pub use tokio_tungstenite::tungstenite::Message;
/// A close frame and its code.
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
/// Close codes.
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
/// Payload types of [`Message`].
pub use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

/// The rustls crate, for root stores, certificates and keys.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
