//! [`SseClient`]: the reconnecting, resuming client, built on
//! [`connection_core::Supervisor`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use connection_core::{
    Backoff, ConnectionState, DisconnectReason, Endpoint, Error, EventBus, EventFilter,
    EventStream, MetricsSnapshot, ShutdownOutcome, Supervise, Supervised, Supervisor,
    SupervisorHandle,
};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::WatchStream;

use crate::config::{SseConfig, SseConfigBuilder};
use crate::error::SseError;
use crate::event::SseItem;
use crate::source::{SseEvents, StreamStats};
use crate::transport::SseTransport;

/// Capacity of the private event bus a client gets when none is given: small, because
/// a broadcast ring allocates every slot up front and clients can be many.
pub const PRIVATE_BUS_CAPACITY: usize = 16;

enum ConfigSource {
    Builder(SseConfigBuilder),
    Built(SseConfig),
}

/// Configures and starts an [`SseClient`].
#[must_use = "a client does nothing until spawned"]
pub struct SseClientBuilder {
    config: ConfigSource,
    backoff: Option<Box<dyn Backoff>>,
    events: Option<EventBus>,
    name: Option<Arc<str>>,
}

impl fmt::Debug for SseClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClientBuilder")
            .field("name", &self.name)
            .field("custom_backoff", &self.backoff.is_some())
            .finish_non_exhaustive()
    }
}

impl SseClientBuilder {
    /// Changes the settings (headers, method and body, timeouts, delays...).
    pub fn configure(mut self, f: impl FnOnce(SseConfigBuilder) -> SseConfigBuilder) -> Self {
        let builder = match self.config {
            ConfigSource::Builder(b) => b,
            ConfigSource::Built(c) => c.to_builder(),
        };
        self.config = ConfigSource::Builder(f(builder));
        self
    }

    /// Replaces the reconnect schedule. The default's base is the server's `retry`
    /// (see [`SseConfigBuilder::reconnect_delays`]); a schedule given here ignores it.
    pub fn backoff(mut self, backoff: impl Backoff) -> Self {
        self.backoff = Some(Box::new(backoff));
        self
    }

    /// Publish lifecycle events on this (shared) bus instead of a small private one.
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// The name in events, logs and metrics (default: the endpoint, redacted).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the settings and starts connecting in the background. Must be called
    /// inside a tokio runtime.
    pub fn spawn(self) -> Result<SseClient, SseError> {
        let config = match self.config {
            ConfigSource::Builder(b) => b.build()?,
            ConfigSource::Built(c) => c,
        };
        let transport = SseTransport::new(config.clone())?;
        let events = transport.events();
        let backoff: Box<dyn Backoff> = match self.backoff {
            Some(b) => b,
            None => Box::new(transport.backoff()),
        };
        let bus = self
            .events
            .unwrap_or_else(|| EventBus::new(PRIVATE_BUS_CAPACITY));
        let mut supervisor = Supervisor::new(transport)
            .backoff(backoff)
            .events(bus)
            .close_timeout(config.close_timeout)
            .stable_after(config.stable_after)
            .reconnect(config.reconnect);
        if let Some(name) = self.name {
            supervisor = supervisor.name(name);
        }
        let supervised = supervisor.spawn().map_err(|e| match e {
            Error::Config(c) => SseError::Config(c),
            other => SseError::Config(connection_core::ConfigError::new(
                "runtime",
                other.to_string(),
            )),
        })?;
        let states = WatchStream::new(supervised.watch_state());
        Ok(SseClient {
            supervised,
            pending: None,
            events,
            states,
            config,
        })
    }
}

/// How a client ended, when it has.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SseEnd {
    /// The server answered 204 No Content: it asked the client to stop. Not an error;
    /// [`SupervisorHandle::restart`] asks again.
    NoContent,
    /// The client gave up: a final status (404, 401...), a response that is not an
    /// event stream, the attempts ran out. The error says which.
    Failed(Option<Arc<Error>>),
    /// Closed on request.
    Closed,
}

/// What an [`SseClient`] measured: the supervisor's metrics (reconnects, time
/// connected, errors) and the stream's (events, comments, bytes, gaps between
/// streams). Serializes as `{"connection": {...}, "stream": {...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SseMetrics {
    /// Reconnects, errors, `uptime` and `total_connected`, bytes and events in (as
    /// `bytes_in` and `messages_in`).
    pub connection: MetricsSnapshot,
    /// Events, comments, bytes and the gaps without a stream.
    pub stream: StreamStats,
}

/// A Server-Sent Events client that reconnects and resumes where it left off.
///
/// It is a [`Stream`] of [`SseItem`]s (events, comments, `retry` changes) and nothing
/// else: lifecycle events (connected, disconnected and why, reconnecting with the
/// delay, errors) come apart, through [`subscribe`](Self::subscribe). The stream ends
/// when the client does ([`end`](Self::end) says how): the server answered 204, a
/// final error, or [`close`](Self::close); after [`SupervisorHandle::restart`] items
/// flow again.
///
/// Dropping the client stops everything it started (unless a clone of
/// [`handle`](Self::handle) is still held).
///
/// ```no_run
/// use connection_transport_sse::{SseClient, SseItem};
/// use futures::StreamExt;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), connection_transport_sse::SseError> {
/// let mut client = SseClient::builder("http://127.0.0.1:8080/events")
///     .configure(|c| c.bearer_auth("token").last_event_id("42"))
///     .spawn()?;
/// while let Some(item) = client.next().await {
///     if let SseItem::Event(event) = item {
///         println!("{} {}: {}", event.id(), event.event_type(), event.data());
///     }
/// }
/// println!("ended: {:?}", client.end());
/// client.close(Duration::from_secs(2)).await;
/// # Ok(()) }
/// ```
pub struct SseClient {
    supervised: Supervised<SseEvents>,
    /// The wait for the next item while the queue is empty (dropping it loses
    /// nothing: an item is taken only when it is returned).
    pending: Option<Pin<Box<dyn Future<Output = Option<SseItem>> + Send + Sync>>>,
    events: SseEvents,
    states: WatchStream<ConnectionState>,
    config: SseConfig,
}

impl fmt::Debug for SseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClient")
            .field("handle", self.supervised.handle())
            .field("buffered", &self.events.queued())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SseClient {
    /// A builder for a client of `url` (`http://` or `https://`).
    pub fn builder(url: impl Into<String>) -> SseClientBuilder {
        Self::from_builder(SseConfig::builder(url))
    }

    /// A builder from settings already built.
    pub fn with_config(config: SseConfig) -> SseClientBuilder {
        SseClientBuilder {
            config: ConfigSource::Built(config),
            backoff: None,
            events: None,
            name: None,
        }
    }

    /// A builder from an [`SseConfigBuilder`] (validated at spawn).
    pub fn from_builder(config: SseConfigBuilder) -> SseClientBuilder {
        SseClientBuilder {
            config: ConfigSource::Builder(config),
            backoff: None,
            events: None,
            name: None,
        }
    }

    /// The next item; `None` once the client has ended and every item was taken.
    pub async fn recv(&mut self) -> Option<SseItem> {
        futures::future::poll_fn(|cx| self.poll_next_unpin(cx)).await
    }

    /// The next event, skipping comments and `retry` changes.
    pub async fn next_event(&mut self) -> Option<crate::SseEvent> {
        loop {
            if let SseItem::Event(e) = self.recv().await? {
                return Some(e);
            }
        }
    }

    /// Lifecycle events (connected, disconnected with the reason, reconnecting with the
    /// delay, errors, state changes), filtered; the data items come through the
    /// `Stream` instead.
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.supervised.subscribe(filter)
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.supervised.state()
    }

    /// Waits until a stream is open. Fails with [`SseError::Closed`] if the client ends
    /// first; [`end`](Self::end) says why.
    pub async fn wait_connected(&self) -> Result<(), SseError> {
        let mut state = self.supervised.watch_state();
        let reached = state
            .wait_for(|s| s.is_connected() || s.is_terminal())
            .await
            .map(|s| s.is_connected());
        match reached {
            Ok(true) => Ok(()),
            _ => Err(SseError::Closed {
                endpoint: self.endpoint().clone(),
            }),
        }
    }

    /// How the client ended, or `None` while it runs (connected, connecting, or waiting
    /// to reconnect).
    pub fn end(&self) -> Option<SseEnd> {
        // The 204 first: the stream ends with it, a moment before the supervisor
        // settles in Failed. The mark stays until a stream opens again.
        if self.events.is_ended_by_server() {
            return Some(SseEnd::NoContent);
        }
        match self.state() {
            ConnectionState::Closed => Some(SseEnd::Closed),
            ConnectionState::Failed => Some(SseEnd::Failed(self.supervised.last_error())),
            _ => None,
        }
    }

    /// Why the last stream ended (the server closed it, an error, a 204...), `None`
    /// before any loss.
    pub fn last_disconnect(&self) -> Option<DisconnectReason> {
        self.supervised.last_disconnect()
    }

    /// The last event ID: what the next request sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> Arc<str> {
        self.events.last_event_id()
    }

    /// The reconnection time the server asked for, if it did.
    pub fn server_retry(&self) -> Option<Duration> {
        self.events.server_retry()
    }

    /// Items waiting to be taken.
    pub fn queued(&self) -> usize {
        self.events.queued()
    }

    /// Events, bytes, reconnects, time connected and the gaps between streams.
    pub fn metrics(&self) -> SseMetrics {
        SseMetrics {
            connection: self.supervised.metrics(),
            stream: self.events.stats(),
        }
    }

    /// The queue the items wait in, for other tasks (each item goes to one reader).
    pub fn events(&self) -> SseEvents {
        self.events.clone()
    }

    /// The supervised connection, as a manager attaches it ([`Supervise`]).
    pub fn supervised(&self) -> &Supervised<SseEvents> {
        &self.supervised
    }

    /// The supervisor handle (restart, probe, shutdown...).
    pub fn handle(&self) -> &SupervisorHandle {
        self.supervised.handle()
    }

    /// Where the stream is.
    pub fn endpoint(&self) -> &Endpoint {
        self.supervised.endpoint()
    }

    /// The settings.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Closes: the current response is dropped (there is nothing to say to an SSE
    /// server before leaving) and the supervisor stops, within `deadline`. Items
    /// already received stay readable; then the stream ends.
    pub async fn close(&self, deadline: Duration) -> ShutdownOutcome {
        self.supervised.shutdown(deadline).await
    }
}

impl Supervise for SseClient {
    type Io = SseEvents;

    fn supervised(&self) -> Supervised<SseEvents> {
        self.supervised.clone()
    }
}

impl Stream for SseClient {
    type Item = SseItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SseItem>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            if let Some(item) = this.events.try_recv() {
                return Poll::Ready(Some(item));
            }
            let events = this.events.clone();
            this.pending = Some(Box::pin(async move { events.recv().await }));
        }
        if let Some(pending) = &mut this.pending {
            if let Poll::Ready(item) = pending.as_mut().poll(cx) {
                this.pending = None;
                return Poll::Ready(item);
            }
        }
        // Register for state changes, then see whether anything can still arrive.
        while let Poll::Ready(Some(_)) = this.states.poll_next_unpin(cx) {}
        if matches!(
            this.state(),
            ConnectionState::Failed | ConnectionState::Closed
        ) {
            this.pending = None;
            return Poll::Ready(this.events.try_recv());
        }
        Poll::Pending
    }
}
