//! [`WsClient`]: the managed, reconnecting client, built on
//! [`connection_core::Supervisor`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use connection_core::metrics::ConnectionMetrics;
use connection_core::{
    Backoff, BoxError, ConfigError, ConnectionState, Endpoint, Error, EventBus, EventFilter,
    EventStream, MetricsSnapshot, ShutdownOutcome, Supervise, Supervised, Supervisor,
    SupervisorHandle,
};
use connection_retry::backoff::{BackoffStrategy, Jitter};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::WatchStream;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

use crate::config::{WsConfig, WsConfigBuilder};
use crate::connection::{ByteBudget, ClientState, buffer_probe};
use crate::connection::{Hook, Outbox, Session, WsSender};
use crate::error::WsError;
use crate::transport::{Wiring, WsTransport};

/// Capacity of the private event bus a client gets when none is given: small, because
/// a broadcast ring allocates every slot up front and clients can be many.
pub const PRIVATE_BUS_CAPACITY: usize = 16;

/// The default reconnect backoff: exponential from 250 ms, doubling, at most 30 s, with
/// "equal" jitter (half fixed, half random) so a fleet of clients does not reconnect in
/// lockstep after a server restart.
pub fn default_backoff() -> Result<BackoffStrategy, ConfigError> {
    BackoffStrategy::exponential(Duration::from_millis(250), 2.0)
        .max_delay(Duration::from_secs(30))
        .jitter(Jitter::Equal)
        .build()
}

enum ConfigSource {
    Builder(WsConfigBuilder),
    Built(WsConfig),
}

/// Configures and starts a [`WsClient`].
#[must_use = "a client does nothing until spawned"]
pub struct WsClientBuilder {
    config: ConfigSource,
    backoff: Option<Box<dyn Backoff>>,
    hook: Option<Hook>,
    events: Option<EventBus>,
    name: Option<Arc<str>>,
    reconnect: bool,
}

impl fmt::Debug for WsClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClientBuilder")
            .field("name", &self.name)
            .field("custom_backoff", &self.backoff.is_some())
            .field("on_connect", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl WsClientBuilder {
    /// Changes connection settings (headers, heartbeat, queue, TLS...).
    ///
    /// ```no_run
    /// # use connection_transport_ws::WsClient;
    /// # use std::time::Duration;
    /// # async fn demo() -> Result<(), connection_transport_ws::WsError> {
    /// let client = WsClient::builder("wss://example.com/feed")
    ///     .configure(|c| c.bearer_auth("token").ping_interval(Duration::from_secs(10)))
    ///     .spawn()?;
    /// # Ok(()) }
    /// ```
    pub fn configure(mut self, f: impl FnOnce(WsConfigBuilder) -> WsConfigBuilder) -> Self {
        let builder = match self.config {
            ConfigSource::Builder(b) => b,
            ConfigSource::Built(c) => c.to_builder(),
        };
        self.config = ConfigSource::Builder(f(builder));
        self
    }

    /// The reconnect strategy: any [`Backoff`], e.g. a `connection-retry`
    /// [`BackoffStrategy`]. Defaults to [`default_backoff`].
    pub fn backoff(mut self, backoff: impl Backoff) -> Self {
        self.backoff = Some(Box::new(backoff));
        self
    }

    /// Runs `hook` after every (re)connect, before queued messages are written: the
    /// place to authenticate and subscribe again. It talks through a [`Session`]; an
    /// error fails that connect attempt, which is retried after the backoff. The connect
    /// timeout bounds it.
    ///
    /// ```no_run
    /// # use connection_transport_ws::WsClient;
    /// # async fn demo() -> Result<(), connection_transport_ws::WsError> {
    /// let client = WsClient::builder("wss://example.com/feed")
    ///     .on_connect(|session| async move {
    ///         session.send_text(r#"{"op":"auth","token":"..."}"#).await?;
    ///         let reply = session.recv().await?;
    ///         if reply.to_text()? != "ok" {
    ///             return Err("authentication refused".into());
    ///         }
    ///         session.send_text(r#"{"op":"subscribe","topic":"prices"}"#).await?;
    ///         Ok(())
    ///     })
    ///     .spawn()?;
    /// # Ok(()) }
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.hook = Some(crate::connection::hook(hook));
        self
    }

    /// Publish events on this (shared) bus instead of a small private one.
    pub fn events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// The name in events, logs and metrics (default: the endpoint, redacted).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reconnect after a lost connection or a failed connect (default) or not: off, the
    /// client goes to `Failed` at the first loss and its stream ends;
    /// [`SupervisorHandle::restart`] connects again. No need for a backoff that gives up.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }

    /// Validates the settings and starts connecting in the background. Must be called
    /// inside a tokio runtime.
    pub fn spawn(self) -> Result<WsClient, WsError> {
        let config = match self.config {
            ConfigSource::Builder(b) => b.build()?,
            ConfigSource::Built(c) => c,
        };
        let backoff: Box<dyn Backoff> = match self.backoff {
            Some(b) => b,
            None => Box::new(default_backoff()?),
        };
        let (tx, outbox) = Outbox::new(config.s.queue_capacity);
        let (in_tx, inbound) = mpsc::channel(config.s.inbound_buffer);
        let inbound_bytes = ByteBudget::new(config.s.inbound_buffer_bytes);
        let metrics = Arc::new(ConnectionMetrics::new());
        // From the start: messages queue up before the first connection, and while the
        // client reconnects.
        metrics.report_buffers(buffer_probe(&outbox, &inbound_bytes));
        let closed = Arc::new(AtomicBool::new(false));
        let client_state = ClientState::default();
        let sender = WsSender::new(
            tx,
            outbox.clone(),
            config.endpoint.clone(),
            config.s.when_full,
            config.s.queue_capacity,
            closed.clone(),
            None,
            client_state.clone(),
        );
        let transport = WsTransport::new(config.clone())
            .with_hook(self.hook)
            .wired(Wiring {
                outbox,
                inbound: in_tx,
                inbound_bytes: inbound_bytes.clone(),
                sender: sender.clone(),
            });
        let bus = self
            .events
            .unwrap_or_else(|| EventBus::new(PRIVATE_BUS_CAPACITY));
        let mut supervisor = Supervisor::new(transport)
            .backoff(backoff)
            .metrics(metrics)
            .events(bus)
            .close_timeout(config.s.close_timeout);
        if let Some((interval, timeout)) = config.s.heartbeat {
            supervisor = supervisor.keepalive(interval, timeout);
        }
        if let Some(name) = self.name {
            supervisor = supervisor.name(name);
        }
        if !self.reconnect {
            supervisor = supervisor.reconnect(false);
        }
        let supervised = supervisor.spawn().map_err(|e| match e {
            Error::Config(c) => WsError::Config(c),
            other => WsError::Config(ConfigError::new("runtime", other.to_string())),
        })?;
        let handle = supervised.handle().clone();
        let _ = client_state.set(handle.watch_state());
        let states = WatchStream::new(handle.watch_state());
        Ok(WsClient {
            handle,
            supervised,
            sender,
            inbound,
            inbound_bytes,
            states,
            closed,
            config,
        })
    }
}

/// A WebSocket client that reconnects, heart-beats and queues.
///
/// Built on [`connection_core::Supervisor`]: one task owns the connection, reconnects
/// with the backoff when it drops (or when a pong is late), and publishes events and
/// metrics. Sending goes through a bounded queue that survives reconnects; receiving is a
/// [`Stream`] of text and binary messages. See the crate docs for the delivery
/// guarantees.
///
/// Dropping the client stops everything it started (unless a clone of
/// [`handle`](Self::handle) is still held: the supervisor lives as long as a handle).
///
/// ```no_run
/// use connection_transport_ws::{Message, WsClient};
/// use futures::StreamExt;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), connection_transport_ws::WsError> {
/// let mut client = WsClient::builder("ws://127.0.0.1:9000/echo").spawn()?;
/// client.send_text("hello").await?; // queued even before the connection is up
/// if let Some(Message::Text(reply)) = client.next().await {
///     println!("got {reply}");
/// }
/// println!("{:?}", client.metrics());
/// client.close(Duration::from_secs(2)).await;
/// # Ok(()) }
/// ```
pub struct WsClient {
    handle: SupervisorHandle,
    supervised: Supervised<WsSender>,
    sender: WsSender,
    inbound: mpsc::Receiver<Message>,
    inbound_bytes: Arc<ByteBudget>,
    states: WatchStream<ConnectionState>,
    closed: Arc<AtomicBool>,
    config: WsConfig,
}

impl fmt::Debug for WsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClient")
            .field("handle", &self.handle)
            .field("queued", &self.sender.queued())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WsClient {
    /// A builder for a client of `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> WsClientBuilder {
        Self::from_builder(WsConfig::builder(url))
    }

    /// A builder from connection settings already built.
    pub fn with_config(config: WsConfig) -> WsClientBuilder {
        WsClientBuilder {
            config: ConfigSource::Built(config),
            backoff: None,
            hook: None,
            events: None,
            name: None,
            reconnect: true,
        }
    }

    /// A builder from a [`WsConfigBuilder`] (validated at spawn).
    pub fn from_builder(config: WsConfigBuilder) -> WsClientBuilder {
        WsClientBuilder {
            config: ConfigSource::Builder(config),
            backoff: None,
            hook: None,
            events: None,
            name: None,
            reconnect: true,
        }
    }

    /// A cloneable sender for other tasks.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    /// Queues a text or binary message. While disconnected it waits in the queue. On a
    /// full queue: [`WsError::QueueFull`] or waiting, per
    /// [`WhenFull`](crate::WhenFull). After [`close`](Self::close):
    /// [`WsError::Shutdown`].
    pub async fn send(&self, msg: Message) -> Result<(), WsError> {
        self.sender.send(msg).await
    }

    /// Queues a text message (see [`send`](Self::send)).
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), WsError> {
        self.sender.send_text(text).await
    }

    /// Queues a binary message (see [`send`](Self::send)).
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), WsError> {
        self.sender.send_binary(data).await
    }

    /// Queues without waiting; [`WsError::QueueFull`] when there is no room.
    pub fn try_send(&self, msg: Message) -> Result<(), WsError> {
        self.sender.try_send(msg)
    }

    /// Waits until everything sent so far was flushed to a socket (or lost with a
    /// connection that died while writing it).
    pub async fn flushed(&self) {
        self.sender.flushed().await;
    }

    /// The next text or binary message from the server. `None` once the client is
    /// closed or failed (a close code that ends it, rejected credentials...) and every
    /// buffered message was taken; after [`SupervisorHandle::restart`] messages flow
    /// again.
    pub async fn recv(&mut self) -> Option<Message> {
        futures::future::poll_fn(|cx| self.poll_next_unpin(cx)).await
    }

    /// This client's events (connected, disconnected with the close code and reason,
    /// reconnecting, error, state changes), filtered: `subscribe`, as on the manager, a
    /// failover group, a supervisor's handle and an event bus.
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        self.handle.subscribe(filter)
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.handle.state()
    }

    /// Waits until connected. Fails with [`WsError::Closed`] if the client fails or is
    /// closed first; the cause is in the error events.
    pub async fn wait_connected(&self) -> Result<(), WsError> {
        let mut state = self.handle.watch_state();
        let reached = state
            .wait_for(|s| s.is_connected() || s.is_terminal())
            .await
            .map(|s| s.is_connected());
        match reached {
            Ok(true) => Ok(()),
            _ => Err(WsError::Closed {
                endpoint: self.endpoint().clone(),
            }),
        }
    }

    /// Waits until connected or failed, and returns the error that made it fail (for a
    /// non-retryable connect error such as rejected credentials or a certificate that
    /// does not verify).
    pub async fn wait_ready(&self) -> Result<(), Arc<Error>> {
        if self.wait_connected().await.is_ok() {
            return Ok(());
        }
        // The supervisor keeps the latest error, so one that happened before this call
        // is still reported.
        Err(self.handle.last_error().unwrap_or_else(|| {
            Arc::new(Error::Shutdown {
                endpoint: self.endpoint().clone(),
            })
        }))
    }

    /// Bytes of received messages waiting for [`recv`](Self::recv): at most
    /// `inbound_buffer_bytes` (16 MiB by default), or one message larger than that.
    pub fn buffered_bytes(&self) -> usize {
        usize::try_from(self.inbound_bytes.held()).unwrap_or(usize::MAX)
    }

    /// Why the last connection ended: the server's close code and reason
    /// (`DisconnectReason::CloseCode`), the error, or a shutdown; `None` before any loss.
    /// For learning why [`recv`](Self::recv) returned `None` without having subscribed
    /// to events.
    pub fn last_disconnect(&self) -> Option<connection_core::DisconnectReason> {
        self.handle.last_disconnect()
    }

    /// Traffic (messages and bytes each way, counted when flushed or received) and its
    /// rates over the last 10 s, reconnects, ping round trips (mean, p99), uptime, and
    /// the memory the client's buffers hold.
    ///
    /// `buffered_bytes` counts payload bytes: of messages sent and not yet flushed to a
    /// socket (in the queue, which keeps them while the client reconnects, or in the
    /// writer's current batch), and of received messages not yet taken by
    /// [`recv`](Self::recv). It does not count what the client cannot see: tungstenite's
    /// read buffer and a frame being assembled (up to `max_message_size`), its write
    /// buffer, TLS records, the kernel's socket buffers, nor allocation overhead.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.handle.metrics()
    }

    /// Streams the client's metrics into `w` as Prometheus text, labelled with its name
    /// ([`SupervisorHandle::write_prometheus`]).
    pub fn write_prometheus<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        self.handle.write_prometheus(w)
    }

    /// The client's metrics as Prometheus text, labelled with its name.
    ///
    /// ```no_run
    /// # use connection_transport_ws::WsClient;
    /// # async fn demo() -> Result<(), connection_transport_ws::WsError> {
    /// let client = WsClient::builder("ws://127.0.0.1:9000/feed").name("feed").spawn()?;
    /// let text = client.to_prometheus();
    /// assert!(text.contains("connection_up{connection=\"feed\"}"));
    /// # Ok(()) }
    /// ```
    pub fn to_prometheus(&self) -> String {
        self.handle.to_prometheus()
    }

    /// Streams the client's metrics into `w` as JSON, named after it
    /// ([`SupervisorHandle::write_json`]).
    pub fn write_json<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        self.handle.write_json(w)
    }

    /// The client's metrics as JSON, named after it.
    pub fn to_json(&self) -> String {
        self.handle.to_json()
    }

    /// The supervised connection: the untyped handle plus a link to the current
    /// connection's sender. The same as [`Supervise::supervised`], which is how a
    /// `ConnectionManager` attaches the client.
    pub fn supervised(&self) -> &Supervised<WsSender> {
        &self.supervised
    }

    /// The supervisor handle, or to [`restart`](SupervisorHandle::restart) a failed
    /// client.
    pub fn handle(&self) -> &SupervisorHandle {
        &self.handle
    }

    /// Where the client connects.
    pub fn endpoint(&self) -> &Endpoint {
        self.handle.endpoint()
    }

    /// The client's settings.
    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// Closes gracefully: refuses new sends, gives queued messages until the deadline to
    /// be flushed (when connected), sends a close frame and waits for the server's, then
    /// stops every task. Whatever is still running at `deadline` is aborted
    /// ([`ShutdownOutcome::Aborted`]).
    pub async fn close(&self, deadline: Duration) -> ShutdownOutcome {
        let started = Instant::now();
        self.closed.store(true, Ordering::Release);
        if self.handle.state().is_connected() {
            let _ = tokio::time::timeout(deadline, self.sender.flushed()).await;
        }
        let left = deadline.saturating_sub(started.elapsed());
        self.handle.shutdown(left).await
    }
}

impl Supervise for WsClient {
    type Io = WsSender;

    fn supervised(&self) -> Supervised<WsSender> {
        self.supervised.clone()
    }
}

impl Stream for WsClient {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = self.get_mut();
        if let Poll::Ready(msg) = this.inbound.poll_recv(cx) {
            if let Some(m) = &msg {
                this.inbound_bytes.give(m);
            }
            return Poll::Ready(msg);
        }
        // Register for state changes, then see whether anything can still arrive.
        while let Poll::Ready(Some(_)) = this.states.poll_next_unpin(cx) {}
        if matches!(
            this.handle.state(),
            ConnectionState::Failed | ConnectionState::Closed
        ) {
            let msg = this.inbound.try_recv().ok();
            if let Some(m) = &msg {
                this.inbound_bytes.give(m);
            }
            return Poll::Ready(msg);
        }
        Poll::Pending
    }
}
