//! # connection-transport-sse
//!
//! A Server-Sent Events client that follows the WHATWG EventSource processing model
//! exactly, reconnects with backoff and resumes where it left off.
//!
//! ## Why our own parser
//!
//! The design card named `eventsource-stream`; it stays in this workspace as the
//! benchmark peer and as the oracle of a differential test, but the parser here is our
//! own, because the Rust SSE clients each get part of the model wrong:
//!
//! - eventsource-stream 0.2.3 (and reqwest-eventsource 0.6 on it) panics on a UTF-8
//!   BOM (it slices one byte into a three-byte character), rescans its whole buffer for
//!   every chunk (an 8 MiB line in 1 KiB chunks takes seconds), loses a block with only
//!   `id:` for resuming, fails on invalid UTF-8 instead of replacing it, and treats a
//!   CR that ends the stream as unfinished;
//! - reqwest-eventsource ends the stream on any non-200, 204 included, has no
//!   inactivity timeout, and its retry counter never grows;
//! - LaunchDarkly's eventsource-client treats 204 as success and reconnects, follows
//!   only 301 and 307, does not check the Content-Type and fails on invalid UTF-8.
//!
//! [`SseParser`] is incremental and linear in its input whatever the chunking (each
//! byte is scanned, copied and decoded at most once), never fails on input the model
//! accepts, and is checked rule by rule at every split point, against chunking by
//! property tests, and against eventsource-stream on the inputs that one handles.
//!
//! ## The client
//!
//! [`SseTransport`] is a [`connection_core::Transport`]: one `connect()` is one request
//! (with redirects), checked as the model asks (200 and `text/event-stream`, or the
//! end on 204). [`SseClient`] runs it under the workspace's one reconnect loop,
//! [`connection_core::Supervisor`]:
//!
//! - after a dropped stream or a network error it reconnects with backoff whose base
//!   is the server's `retry` (doubling, jittered, reset only once a stream stayed up
//!   `stable_after`), sending `Last-Event-ID` with the last ID seen (none when there is
//!   none; the first request can carry one too);
//! - 204 No Content ends the client for good ([`SseEnd::NoContent`]), not as an error;
//!   other statuses fail the attempt and are retried only if in the [`StatusSet`]
//!   (408, 429 and 5xx by default); a 200 that is not `text/event-stream` fails;
//! - 301, 302, 303, 307 and 308 are followed up to a limit, keeping `Last-Event-ID`
//!   (and dropping credentials when the origin changes);
//! - any method with a body (POST, as LLM streaming APIs use), sent again on every
//!   reconnect; headers and auth redacted wherever the config is shown;
//! - an inactivity timeout catches half-open connections: no byte for that long, not
//!   even a comment, and the stream is reconnected;
//! - items wait for the application in a bounded queue that outlives connections
//!   (when full, the reader stops and TCP slows the server down).
//!
//! The client is a `Stream` of [`SseItem`]s (events, comments, `retry` changes); the
//! lifecycle (connected, disconnected, reconnecting, errors) comes apart through
//! [`SseClient::subscribe`]. [`SseClient::metrics`] has the events, bytes, reconnects,
//! time connected and the gaps without a stream. Through [`Supervise`] a client joins
//! a `ConnectionManager` or a failover group; its connections' I/O handle is
//! [`SseEvents`], the same queue.
//!
//! ## Delivery
//!
//! The last event ID moves past an event once the event is in the queue, so a stream
//! that drops loses nothing the server can replay: a partial event at the drop is
//! discarded by the parser and sent again by a server that honours `Last-Event-ID`.
//! Items still in the queue when the client is dropped are lost.
//!
//! ## TLS
//!
//! `https://` uses rustls with the **ring** provider, handed to reqwest as a finished
//! configuration (reqwest's `rustls-no-provider` feature): aws-lc-rs is never compiled
//! in and nothing is installed process-wide. webpki roots by default, your own roots or
//! client certificate on request. Cargo feature `tls` (default); without it `https://`
//! is refused with a configuration error naming the feature. HTTP/1.1 only.
//!
//! ## Example
//!
//! ```no_run
//! use connection_transport_sse::{EventFilter, EventType, SseClient, SseItem};
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), connection_transport_sse::SseError> {
//! let mut client = SseClient::builder("https://api.example.com/v1/chat")
//!     .configure(|c| {
//!         c.method("POST")
//!             .header("content-type", "application/json")
//!             .body(r#"{"stream": true}"#)
//!             .bearer_auth("token")
//!             .inactivity_timeout(Some(Duration::from_secs(60)))
//!     })
//!     .name("chat")
//!     .spawn()?;
//! let mut lifecycle = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
//! tokio::spawn(async move {
//!     while let Some(Ok(event)) = lifecycle.next().await {
//!         tracing::info!(%event);
//!     }
//! });
//! while let Some(item) = client.next().await {
//!     match item {
//!         SseItem::Event(e) => println!("{}: {}", e.event_type(), e.data()),
//!         SseItem::Comment(_) => {} // a heartbeat
//!         _ => {}
//!     }
//! }
//! println!("ended: {:?}, {:?}", client.end(), client.metrics());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod client;
mod config;
mod connection;
mod decoder;
mod error;
mod event;
mod inbox;
mod parser;
mod settings;
mod source;
mod status;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use backoff::SseBackoff;
pub use client::{PRIVATE_BUS_CAPACITY, SseClient, SseClientBuilder, SseEnd, SseMetrics};
pub use config::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INACTIVITY_TIMEOUT,
    DEFAULT_INBOUND_BUFFER, DEFAULT_INITIAL_DELAY, DEFAULT_MAX_DELAY, DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_MAX_REDIRECTS, DEFAULT_STABLE_AFTER, MAX_EVENT_SIZE_LIMIT, MAX_INBOUND_BUFFER,
    MAX_REDIRECTS, SseConfig, SseConfigBuilder,
};
pub use connection::SseConnection;
pub use decoder::{DecodeError, SseDecoder};
pub use error::SseError;
pub use event::{SseEvent, SseItem};
pub use parser::{SseParseError, SseParser};
pub use settings::{ENV_PREFIX, SseSettings};
pub use source::{SseEvents, StreamStats};
pub use status::StatusSet;
pub use transport::SseTransport;

/// What an SSE user needs from connection-core without depending on it: states,
/// lifecycle events and their filter, errors, backoffs.
pub use connection_core::{
    Backoff, ConfigError, ConnectionState, ConstantBackoff, DisconnectReason, Error, Event,
    EventBus, EventFilter, EventKind, EventStream, EventType, ExponentialBackoff, MetricsSnapshot,
    Severity, ShutdownOutcome, Supervise,
};

/// The rustls crate, for root stores, certificates and keys.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
