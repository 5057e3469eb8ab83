//! One WebSocket connection: [`WsConnection`], its I/O task, and the [`Session`] the
//! `on_connect` hook talks through.
//!
//! Each connection runs two tasks over the split socket, a reader and a writer:
//!
//! ```text
//!            outbound queue ──► writer ──┐                ┌──► reader ──► inbound channel
//!   control (ping, close) ──►            ├─ WebSocket ────┤     (pongs → probe, close
//!                                        │  (BiLock)      │      frame → closed())
//! ```
//!
//! They never wait for each other, so a server that is not reading (our writes block)
//! cannot stop us from reading, and a slow application (inbound channel full: the reader
//! stops reading the socket, and TCP pushes back on the server) cannot stop us writing.
//! Two tasks rather than one task polling both loops: on a multi-threaded runtime the
//! CPU work of each direction (masking, UTF-8 checks, TLS) runs in parallel, which is
//! worth about 20% of echo throughput with 16 KiB messages.
//! The writer holds the outbound queue's lock for as long as it writes data, and lets go
//! of it as soon as the connection is closing or lost, so a client's next connection
//! carries on with the same queue, in order.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use connection_core::Operation;
use connection_core::metrics::ConnectionMetrics;
use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Traffic,
};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::sync::{Notify, OwnedMutexGuard, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Bytes, Message, Utf8Bytes};

use crate::config::{CloseCodePolicy, WhenFull};
use crate::error::WsError;
use crate::stream::MaybeTls;

pub(crate) type Ws = WebSocketStream<MaybeTls>;

/// Messages the writer takes from the queue and writes in one flush, at most.
const MAX_BATCH: usize = 64;
/// Control requests (probes, close) that may wait for the writer.
const CONTROL_QUEUE: usize = 8;

/// The `on_connect` hook, type-erased.
pub(crate) type Hook =
    Arc<dyn Fn(Session) -> BoxFuture<'static, Result<(), connection_core::BoxError>> + Send + Sync>;

/// Boxes a user's `on_connect` closure (one place for the client and the transport).
pub(crate) fn hook<F, Fut>(hook: F) -> Hook
where
    F: Fn(Session) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), connection_core::BoxError>> + Send + 'static,
{
    Arc::new(move |s| Box::pin(hook(s)))
}

/// The byte bound on received messages waiting for the consumer (next to the count
/// bound of the inbound channel): the reader takes a message's bytes before handing it
/// over, waiting (and so not reading the socket) while the consumer is behind; the
/// consumer gives them back as it takes messages. A message larger than the whole
/// bound counts as the whole bound, so it still passes, alone.
pub(crate) struct ByteBudget {
    sem: tokio::sync::Semaphore,
    max: usize,
    /// Bytes of the messages waiting for the consumer, exactly (the permits count a
    /// message over the whole bound as the bound).
    held: AtomicU64,
}

impl ByteBudget {
    /// `max` is validated by the config: 1 ..= u32::MAX.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let max = max.clamp(1, u32::MAX as usize);
        Arc::new(Self {
            sem: tokio::sync::Semaphore::new(max),
            max,
            held: AtomicU64::new(0),
        })
    }

    fn cost(&self, msg: &Message) -> usize {
        msg.len().min(self.max)
    }

    /// Waits until `msg`'s bytes fit. Cancel-safe: nothing is taken until it resolves.
    async fn take(&self, msg: &Message) {
        let n = self.cost(msg);
        if n == 0 {
            return;
        }
        // n <= max <= u32::MAX, so the conversion cannot fail; the semaphore is never
        // closed.
        if let Ok(permit) = self
            .sem
            .acquire_many(u32::try_from(n).unwrap_or(u32::MAX))
            .await
        {
            permit.forget();
            self.held.fetch_add(msg.len() as u64, Ordering::Relaxed);
        }
    }

    /// The consumer took `msg`: its bytes are free again.
    pub(crate) fn give(&self, msg: &Message) {
        let n = self.cost(msg);
        if n > 0 {
            self.held.fetch_sub(msg.len() as u64, Ordering::Relaxed);
            self.sem.add_permits(n);
        }
    }

    /// Bytes of the received messages waiting for the consumer, exactly (one message
    /// over the bound counts in full).
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// The outbound queue shared by the senders and, one at a time, the writers.
pub(crate) struct Outbox {
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Message>>>,
    /// Messages accepted by `send` and not yet flushed (or lost with a connection).
    pending: AtomicUsize,
    /// Their payload bytes, for the buffer figure.
    pending_bytes: AtomicU64,
    idle: Notify,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> (mpsc::Sender<Message>, Arc<Self>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Arc::new(Self {
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            pending: AtomicUsize::new(0),
            pending_bytes: AtomicU64::new(0),
            idle: Notify::new(),
        });
        (tx, outbox)
    }

    /// A message of `bytes` bytes was accepted into the queue.
    fn accepted(&self, bytes: usize) {
        self.pending_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn done(&self, n: usize, bytes: u64) {
        if bytes > 0 {
            self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        if n > 0 && self.pending.fetch_sub(n, Ordering::AcqRel) == n {
            self.idle.notify_waiters();
        }
    }

    /// Waits until every accepted message was flushed to the socket or lost with a
    /// connection.
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// A cheap, cloneable handle for sending on a client's (or a standalone connection's)
/// outbound queue from any task.
///
/// Messages go into a bounded queue in the order they are sent; the connection's writer
/// takes them out in order. While the client is reconnecting they wait in the queue.
#[derive(Clone)]
pub struct WsSender {
    tx: mpsc::Sender<Message>,
    outbox: Arc<Outbox>,
    endpoint: Endpoint,
    when_full: WhenFull,
    capacity: usize,
    closed: Arc<AtomicBool>,
    /// A standalone connection's: set when that connection is gone.
    ended: Option<Arc<AtomicBool>>,
    /// A client's lifecycle, set right after its supervisor starts: once the client is
    /// Failed or Closed nothing will drain the queue, so sends fail instead of waiting.
    client_state: ClientState,
}

/// A client's state, for its senders (empty for a standalone connection's).
pub(crate) type ClientState = Arc<OnceLock<watch::Receiver<ConnectionState>>>;

fn is_over(state: ConnectionState) -> bool {
    matches!(state, ConnectionState::Failed | ConnectionState::Closed)
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("endpoint", &self.endpoint)
            .field("queued", &self.queued())
            .field("capacity", &self.capacity)
            .field("when_full", &self.when_full)
            .finish()
    }
}

impl WsSender {
    // Crate-private, two callers; each argument is a distinct part of the sender.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tx: mpsc::Sender<Message>,
        outbox: Arc<Outbox>,
        endpoint: Endpoint,
        when_full: WhenFull,
        capacity: usize,
        closed: Arc<AtomicBool>,
        ended: Option<Arc<AtomicBool>>,
        client_state: ClientState,
    ) -> Self {
        Self {
            tx,
            outbox,
            endpoint,
            when_full,
            capacity,
            closed,
            ended,
            client_state,
        }
    }

    /// The client's state, if this is a client's sender.
    fn client_state(&self) -> Option<ConnectionState> {
        self.client_state.get().map(|rx| *rx.borrow())
    }

    /// Why a client's sender refuses to queue: the client is Closed ([`WsError::Shutdown`])
    /// or Failed ([`WsError::Closed`]: nothing drains the queue of a failed client until
    /// it is restarted; the cause is in `WsClient::last_disconnect`).
    fn client_refusal(&self) -> Option<WsError> {
        let endpoint = self.endpoint.clone();
        match self.client_state()? {
            ConnectionState::Closed => Some(WsError::Shutdown { endpoint }),
            ConnectionState::Failed => Some(WsError::Closed { endpoint }),
            _ => None,
        }
    }

    /// Resolves once the client is Failed or Closed (or its supervisor is gone); never
    /// for a standalone connection's sender.
    async fn client_over(&self) {
        match self.client_state.get() {
            Some(rx) => {
                let mut rx = rx.clone();
                let _ = rx.wait_for(|s| is_over(*s)).await;
            }
            None => std::future::pending().await,
        }
    }

    fn check(&self, msg: &Message) -> Result<(), WsError> {
        if self
            .ended
            .as_ref()
            .is_some_and(|e| e.load(Ordering::Acquire))
        {
            // A standalone connection's queue has no writer any more: fail, do not queue
            // into the void.
            return Err(WsError::Closed {
                endpoint: self.endpoint.clone(),
            });
        }
        if self.closed.load(Ordering::Acquire) || self.tx.is_closed() {
            return Err(WsError::Shutdown {
                endpoint: self.endpoint.clone(),
            });
        }
        if let Some(refused) = self.client_refusal() {
            return Err(refused);
        }
        if !matches!(msg, Message::Text(_) | Message::Binary(_)) {
            return Err(WsError::ControlFrame {
                endpoint: self.endpoint.clone(),
            });
        }
        Ok(())
    }

    /// Queues a text or binary message. On a full queue it fails with
    /// [`WsError::QueueFull`] or waits for room, as configured
    /// ([`WhenFull`]). Fails with [`WsError::Shutdown`] once the client is closed (or
    /// dropped), and with [`WsError::Closed`] while it is `Failed`; a send waiting for
    /// room gives up with the same errors when that happens.
    pub async fn send(&self, msg: Message) -> Result<(), WsError> {
        match self.when_full {
            WhenFull::Error => self.try_send(msg),
            WhenFull::Wait => {
                self.check(&msg)?;
                // Reserve first: a send cancelled while waiting leaves no trace.
                let shutdown = || WsError::Shutdown {
                    endpoint: self.endpoint.clone(),
                };
                let permit = tokio::select! {
                    permit = self.tx.reserve() => permit.map_err(|_| shutdown())?,
                    // A supervisor that is gone left the state it had: Closed at the latest.
                    () = self.client_over() => return Err(self.client_refusal().unwrap_or_else(shutdown)),
                };
                self.outbox.accepted(msg.len());
                permit.send(msg);
                Ok(())
            }
        }
    }

    /// Queues a message without waiting: [`WsError::QueueFull`] when there is no room,
    /// whatever [`WhenFull`] says.
    pub fn try_send(&self, msg: Message) -> Result<(), WsError> {
        self.check(&msg)?;
        let permit = self.tx.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => WsError::QueueFull {
                endpoint: self.endpoint.clone(),
                capacity: self.capacity,
            },
            mpsc::error::TrySendError::Closed(()) => WsError::Shutdown {
                endpoint: self.endpoint.clone(),
            },
        })?;
        self.outbox.accepted(msg.len());
        permit.send(msg);
        Ok(())
    }

    /// Queues a text message (see [`send`](Self::send)).
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), WsError> {
        self.send(Message::Text(text.into())).await
    }

    /// Queues a binary message (see [`send`](Self::send)).
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), WsError> {
        self.send(Message::Binary(data.into())).await
    }

    /// Messages waiting in the queue (not yet taken by a writer).
    pub fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether sends are refused because the client is closed or failed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
            || self.tx.is_closed()
            || self.client_state().is_some_and(is_over)
    }

    /// Waits until every message sent so far has been flushed to a socket, or lost with
    /// a connection that died while writing it (see the crate docs on delivery). Returns
    /// too once the client is Failed or Closed: what is still queued then waits for a
    /// restart, or is never sent.
    pub async fn flushed(&self) {
        tokio::select! {
            () = self.outbox.drained() => {}
            () = self.client_over() => {}
        }
    }
}

/// What the writer is asked to do besides draining the queue.
enum Control {
    Ping(Bytes),
    Close,
}

struct PendingPing {
    payload: Bytes,
    sent: Instant,
    reply: oneshot::Sender<Duration>,
}

/// What the I/O task and the connection handle share.
pub(crate) struct IoShared {
    pub(crate) endpoint: Endpoint,
    /// Where traffic was recorded before [`Connection::bind_traffic`]: the client's
    /// metrics, or a standalone connection's own.
    own_metrics: Arc<ConnectionMetrics>,
    /// Set by [`Connection::bind_traffic`]; recorded into from then on.
    bound: std::sync::OnceLock<Traffic>,
    /// A standalone connection's senders fail once it is gone (a client's queue outlives
    /// its connections, so its senders have no such flag).
    sender_ended: Option<Arc<AtomicBool>>,
    reason: watch::Sender<Option<DisconnectReason>>,
    pending_ping: parking_lot::Mutex<Option<PendingPing>>,
    we_closed: AtomicBool,
    /// A close frame the writer owes the server when the reader gives up on the
    /// connection (1002, 1007, 1009, as RFC 6455 7.1.7 and 7.4.1 ask).
    close_with: parking_lot::Mutex<Option<CloseFrame>>,
    /// Set with `close_with` and never cleared (the writer takes the frame): tells
    /// `close()` a frame is or was on its way, worth waiting for.
    close_owed: AtomicBool,
    close_codes: CloseCodePolicy,
    close_timeout: Duration,
}

impl IoShared {
    fn metrics(&self) -> &Arc<ConnectionMetrics> {
        self.bound.get().map_or(&self.own_metrics, Traffic::metrics)
    }

    /// Records why the connection ended; the first reason wins.
    fn end(&self, reason: DisconnectReason) {
        if let Some(ended) = &self.sender_ended {
            ended.store(true, Ordering::Release);
        }
        self.reason.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    fn error(&self, e: WsError) -> DisconnectReason {
        DisconnectReason::Error(Arc::new(e.into()))
    }

    fn pong(&self, payload: &Bytes) {
        let mut pending = self.pending_ping.lock();
        if pending.as_ref().is_some_and(|p| p.payload == *payload) {
            if let Some(p) = pending.take() {
                let _ = p.reply.send(p.sent.elapsed());
            }
        }
    }
}

/// Everything [`spawn_io`] needs besides the socket.
pub(crate) struct IoParts {
    pub(crate) endpoint: Endpoint,
    pub(crate) metrics: Arc<ConnectionMetrics>,
    /// Set for a standalone connection: its senders fail once it is gone.
    pub(crate) sender_ended: Option<Arc<AtomicBool>>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) inbound: mpsc::Sender<Message>,
    pub(crate) inbound_bytes: Arc<ByteBudget>,
    pub(crate) close_codes: CloseCodePolicy,
    pub(crate) close_timeout: Duration,
    pub(crate) subprotocol: Option<Arc<str>>,
    /// The sender of the queue the writer drains: the client's (it outlives connections)
    /// or, for a standalone connection, its own.
    pub(crate) sender: WsSender,
    /// Set for a standalone connection, which owns its inbound channel.
    pub(crate) own_inbound: Option<mpsc::Receiver<Message>>,
}

/// Starts the I/O task of an established WebSocket and returns its connection handle.
pub(crate) fn spawn_io(ws: Ws, parts: IoParts) -> WsConnection {
    parts
        .metrics
        .report_buffers(buffer_probe(&parts.outbox, &parts.inbound_bytes));
    let (reason, reason_rx) = watch::channel(None);
    let shared = Arc::new(IoShared {
        endpoint: parts.endpoint,
        own_metrics: parts.metrics,
        bound: std::sync::OnceLock::new(),
        sender_ended: parts.sender_ended,
        reason,
        pending_ping: parking_lot::Mutex::new(None),
        we_closed: AtomicBool::new(false),
        close_with: parking_lot::Mutex::new(None),
        close_owed: AtomicBool::new(false),
        close_codes: parts.close_codes,
        close_timeout: parts.close_timeout,
    });
    let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (sink, stream) = ws.split();
    // Two tasks, so reading and writing (masking, TLS) use two cores when there are.
    let reader = tokio::spawn(reader_task(
        stream,
        shared.clone(),
        parts.inbound,
        parts.inbound_bytes.clone(),
        parts.outbox.clone(),
    ));
    let writer = tokio::spawn(writer_task(sink, shared.clone(), parts.outbox, control_rx));
    let (sender, inbound) = (parts.sender, parts.own_inbound);
    WsConnection {
        id: ConnectionId::next(),
        shared,
        control,
        reader: Some(reader),
        writer: Some(writer),
        reason: reason_rx,
        subprotocol: parts.subprotocol,
        sender,
        inbound,
        inbound_bytes: parts.inbound_bytes,
        ping_seq: AtomicU64::new(0),
    }
}

async fn reader_task(
    stream: futures::stream::SplitStream<Ws>,
    shared: Arc<IoShared>,
    inbound: mpsc::Sender<Message>,
    bytes: Arc<ByteBudget>,
    outbox: Arc<Outbox>,
) {
    let mut reason = shared.reason.subscribe();
    tokio::select! {
        () = read_loop(stream, &shared, inbound, &bytes, &outbox) => {}
        // A failed write means the socket is gone: reading on is pointless.
        _ = reason.wait_for(|r| matches!(r, Some(DisconnectReason::Error(_)))) => {}
    }
    shared.end(shared.error(WsError::Closed {
        endpoint: shared.endpoint.clone(),
    }));
    // A probe waiting for a pong will never get it.
    shared.pending_ping.lock().take();
}

async fn writer_task(
    sink: futures::stream::SplitSink<Ws, Message>,
    shared: Arc<IoShared>,
    outbox: Arc<Outbox>,
    control: mpsc::Receiver<Control>,
) {
    match write_loop(sink, &shared, &outbox, control).await {
        // The protocol is closing (the peer's close frame raced with our write): the
        // reader is about to report the close code, which decides about reconnecting.
        WriterEnd::Failed(WsError::Closed { .. }) => {}
        WriterEnd::Failed(e) => shared.end(shared.error(e)),
        WriterEnd::Closing | WriterEnd::Ended => {}
    }
}

enum WriterEnd {
    /// We sent our close frame.
    Closing,
    /// The connection ended (peer closed, reader failed) while the writer was idle.
    Ended,
    /// A write failed.
    Failed(WsError),
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    shared: &IoShared,
    outbox: &Arc<Outbox>,
    mut control: mpsc::Receiver<Control>,
) -> WriterEnd {
    let mut reason = shared.reason.subscribe();
    let mut queue: Option<OwnedMutexGuard<mpsc::Receiver<Message>>> = None;
    let mut queue_open = true;
    loop {
        enum Step {
            Ended,
            Control(Option<Control>),
            Message(Option<Message>),
        }
        let step = tokio::select! {
            biased;
            _ = reason.wait_for(Option::is_some) => Step::Ended,
            c = control.recv() => Step::Control(c),
            m = next_outbound(&mut queue, outbox), if queue_open => Step::Message(m),
        };
        match step {
            Step::Ended => {
                let frame = shared.close_with.lock().take();
                if let Some(frame) = frame {
                    // Tell the server why before dropping the socket; bounded, as the
                    // server may not be reading.
                    drop(queue.take());
                    let send = sink.send(Message::Close(Some(frame)));
                    let _ = tokio::time::timeout(shared.close_timeout, send).await;
                }
                return WriterEnd::Ended;
            }
            // The connection handle is gone; the task is about to be aborted anyway.
            Step::Control(None) => return WriterEnd::Ended,
            Step::Control(Some(Control::Ping(payload))) => {
                if let Err(e) = sink.send(Message::Ping(payload)).await {
                    return WriterEnd::Failed(WsError::from_stream(&shared.endpoint, e));
                }
            }
            Step::Control(Some(Control::Close)) => {
                // Leave what is still queued for the next connection.
                drop(queue.take());
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: Utf8Bytes::from_static(""),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return WriterEnd::Closing;
            }
            // Every sender is gone: nothing more will be queued.
            Step::Message(None) => queue_open = false,
            Step::Message(Some(first)) => {
                // Taken from the queue: settled when the guard drops, whether the batch
                // was flushed, failed, or the task was aborted mid-write (a writer cut off
                // by `close()` must not leave `flushed()` waiting forever).
                let mut in_flight = InFlight {
                    outbox,
                    count: 1,
                    bytes: first.len() as u64,
                };
                let mut result = sink.feed(first).await;
                if let Some(rx) = queue.as_mut() {
                    while result.is_ok() && in_flight.count < MAX_BATCH {
                        let Ok(next) = rx.try_recv() else { break };
                        in_flight.count += 1;
                        in_flight.bytes += next.len() as u64;
                        result = sink.feed(next).await;
                    }
                }
                let result = match result {
                    Ok(()) => sink.flush().await,
                    Err(e) => Err(e),
                };
                let (count, bytes) = (in_flight.count, in_flight.bytes);
                drop(in_flight);
                match result {
                    Ok(()) => shared.metrics().record_sent(count as u64, bytes),
                    Err(e) => {
                        return WriterEnd::Failed(WsError::from_stream(&shared.endpoint, e));
                    }
                }
            }
        }
    }
}

/// The close frame RFC 6455 asks for after a read error, when the socket still works:
/// 1007 for text that is not UTF-8, 1009 for a message over our limit, 1002 for any
/// other protocol violation; none for a broken socket or a connection already closing.
fn close_frame_for(e: &tungstenite::Error) -> Option<CloseFrame> {
    use tungstenite::error::{CapacityError, ProtocolError};
    let (code, reason) = match e {
        tungstenite::Error::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8"),
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { .. }) => {
            (CloseCode::Size, "message too big")
        }
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
        ) => return None,
        tungstenite::Error::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    })
}

/// Waits, up to `limit`, until the application has taken every message received and
/// the writer has written everything queued. Polled: neither condition has a wake-up of
/// its own here. It must hold on two looks 1 ms apart, because an application that has
/// just taken the last message may not have queued its answer yet.
async fn settle(inbound: &mpsc::Sender<Message>, outbox: &Outbox, limit: Duration) {
    let deadline = connection_core::time::deadline(Instant::now(), limit);
    let mut calm = 0;
    while calm < 2 && Instant::now() < deadline {
        let delivered = inbound.is_closed() || inbound.capacity() == inbound.max_capacity();
        let written = outbox.pending.load(Ordering::Acquire) == 0;
        calm = if delivered && written { calm + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Messages a writer took from the queue and has not settled yet; settles them on drop.
struct InFlight<'a> {
    outbox: &'a Outbox,
    count: usize,
    bytes: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.outbox.done(self.count, self.bytes);
    }
}

/// What a WebSocket connection or client reports as its buffers
/// ([`ConnectionMetrics::report_buffers`]): the payload bytes of messages accepted by a
/// send and not yet flushed to the socket (queued, or in the writer's batch), plus those
/// of received messages waiting for the application. Weak references: the metrics
/// outlive both, and must not keep them alive.
pub(crate) fn buffer_probe(
    outbox: &Arc<Outbox>,
    inbound: &Arc<ByteBudget>,
) -> impl Fn() -> u64 + Send + Sync + 'static {
    let (outbox, inbound) = (Arc::downgrade(outbox), Arc::downgrade(inbound));
    move || {
        let queued = outbox
            .upgrade()
            .map_or(0, |o| o.pending_bytes.load(Ordering::Relaxed));
        queued.saturating_add(inbound.upgrade().map_or(0, |b| b.held()))
    }
}

/// The next queued message, taking the queue's lock first if this writer does not hold
/// it yet (the previous connection's writer may still be letting go). Cancel-safe.
async fn next_outbound(
    queue: &mut Option<OwnedMutexGuard<mpsc::Receiver<Message>>>,
    outbox: &Arc<Outbox>,
) -> Option<Message> {
    if queue.is_none() {
        *queue = Some(outbox.rx.clone().lock_owned().await);
    }
    match queue.as_mut() {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

async fn read_loop(
    mut stream: futures::stream::SplitStream<Ws>,
    shared: &IoShared,
    inbound: mpsc::Sender<Message>,
    bytes: &ByteBudget,
    outbox: &Outbox,
) {
    let mut permit = None;
    loop {
        // Reserve room before reading: when the application is behind, stop reading the
        // socket so TCP slows the server down instead of our memory growing.
        if permit.is_none() && !inbound.is_closed() {
            permit = inbound.reserve().await.ok();
        }
        let next = stream.next().await;
        match next {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                shared.metrics().record_received(1, msg.len() as u64);
                if let Some(p) = permit.take() {
                    // Bounded in bytes too: while the consumer holds too much, the socket
                    // is not read (one message, at most the configured maximum, waits
                    // here).
                    bytes.take(&msg).await;
                    p.send(msg);
                }
            }
            // tungstenite queued the pong; the next read flushes it.
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Pong(payload))) => shared.pong(&payload),
            Some(Ok(Message::Close(frame))) => {
                let reason = if shared.we_closed.load(Ordering::Acquire) {
                    DisconnectReason::Shutdown
                } else {
                    let (code, text) = frame.map_or((1005, Arc::from("")), |f| {
                        (u16::from(f.code), Arc::from(f.reason.as_str()))
                    });
                    tracing::debug!(endpoint = %shared.endpoint, code, reason = %text, "server closed the connection");
                    DisconnectReason::CloseCode {
                        code,
                        reason: text,
                        reconnect: shared.close_codes.reconnects(code),
                    }
                };
                shared.end(reason);
                // Keep reading: the next read flushes our close reply, then sees the
                // server drop the TCP connection.
                let drain = async { while let Some(Ok(_)) = stream.next().await {} };
                let _ = tokio::time::timeout(shared.close_timeout, drain).await;
                return;
            }
            Some(Err(e)) => {
                let frame = close_frame_for(&e);
                let e = WsError::from_stream(&shared.endpoint, e);
                tracing::debug!(endpoint = %shared.endpoint, error = %e, "read failed");
                if let Some(frame) = frame {
                    // The peer broke the protocol, but the socket works: as RFC 6455
                    // 7.1.7 asks, say why (1002, 1007, 1009) after the application has
                    // taken what arrived before the bad frame and the writer has sent
                    // what was queued (an echo of the last good message), all within
                    // the close timeout.
                    *shared.close_with.lock() = Some(frame);
                    shared.close_owed.store(true, Ordering::Release);
                    drop(permit.take());
                    settle(&inbound, outbox, shared.close_timeout).await;
                }
                shared.end(shared.error(e));
                return;
            }
            None => {
                // No close frame: abnormal closure (1006), worth reconnecting.
                let e = WsError::Io {
                    endpoint: shared.endpoint.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection dropped without a close frame (1006)",
                    ),
                };
                shared.end(shared.error(e));
                return;
            }
        }
    }
}

/// One established WebSocket connection, owned by whoever opened it (usually the
/// [`WsClient`](crate::WsClient)'s supervisor).
///
/// Dropping it stops its I/O task at once (no close frame; use
/// [`close`](Connection::close) for that).
pub struct WsConnection {
    id: ConnectionId,
    shared: Arc<IoShared>,
    control: mpsc::Sender<Control>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    reason: watch::Receiver<Option<DisconnectReason>>,
    subprotocol: Option<Arc<str>>,
    sender: WsSender,
    inbound: Option<mpsc::Receiver<Message>>,
    inbound_bytes: Arc<ByteBudget>,
    ping_seq: AtomicU64,
}

impl fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConnection")
            .field("id", &self.id)
            .field("endpoint", &self.shared.endpoint)
            .field("state", &self.state())
            .field("subprotocol", &self.subprotocol)
            .finish_non_exhaustive()
    }
}

impl Drop for WsConnection {
    fn drop(&mut self) {
        self.abort();
    }
}

impl WsConnection {
    fn abort(&mut self) {
        for task in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        self.shared.pending_ping.lock().take();
    }

    /// Where the connection goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// The subprotocol the server chose, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// This connection's traffic counters (a client's connections record into the
    /// client's metrics).
    pub fn metrics(&self) -> &Arc<ConnectionMetrics> {
        self.shared.metrics()
    }

    /// The sender of the queue this connection's writer drains: its own for a
    /// standalone connection, the client's (which outlives connections) for a connection
    /// made by a [`WsClient`](crate::WsClient). The same as [`io`](Connection::io).
    pub fn sender(&self) -> &WsSender {
        &self.sender
    }

    /// Queues a message (see [`WsSender::send`]).
    pub async fn send(&self, msg: Message) -> Result<(), WsError> {
        self.sender.send(msg).await
    }

    /// Queues a text message on a standalone connection.
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), WsError> {
        self.send(Message::Text(text.into())).await
    }

    /// Queues a binary message on a standalone connection.
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), WsError> {
        self.send(Message::Binary(data.into())).await
    }

    /// The next text or binary message received on a standalone connection; `None`
    /// once the connection is gone and everything received was taken.
    pub async fn recv(&mut self) -> Option<Message> {
        let msg = match self.inbound.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }?;
        self.inbound_bytes.give(&msg);
        Some(msg)
    }
}

impl Connection for WsConnection {
    /// The sender of the queue this connection's writer drains. Through a
    /// [`WsClient`](crate::WsClient) it is the client's sender, whose queue waits through
    /// reconnects; receiving stays on the client's stream.
    type Io = WsSender;

    fn io(&self) -> WsSender {
        self.sender.clone()
    }

    /// From now on, messages and bytes are recorded into `traffic`, and the bytes held in
    /// the outbound queue and the inbound buffer are reported as its buffers. What the
    /// connection counted before (its `on_connect` hook's messages) is carried over.
    fn bind_traffic(&mut self, traffic: Traffic) {
        traffic.buffers(buffer_probe(&self.sender.outbox, &self.inbound_bytes));
        let own = &self.shared.own_metrics;
        let carry = !Arc::ptr_eq(own, traffic.metrics());
        if self.shared.bound.set(traffic.clone()).is_ok() && carry {
            let s = own.snapshot_counters();
            traffic.sent(s.messages_out, s.bytes_out);
            traffic.received(s.messages_in, s.bytes_in);
        }
    }

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        match &*self.reason.borrow() {
            None => ConnectionState::Connected,
            Some(DisconnectReason::Error(_)) => ConnectionState::Failed,
            Some(_) => ConnectionState::Closed,
        }
    }

    /// Sends a ping with a unique payload and waits for the matching pong; returns the
    /// round trip. Unbounded: callers (the supervisor's heartbeat) add the pong timeout.
    async fn probe(&mut self) -> Result<Duration, Error> {
        let closed = || Error::Closed {
            endpoint: self.shared.endpoint.clone(),
        };
        if self.reason.borrow().is_some() {
            return Err(closed());
        }
        let seq = self.ping_seq.fetch_add(1, Ordering::Relaxed);
        let payload = Bytes::copy_from_slice(&seq.to_be_bytes());
        let (reply, rx) = oneshot::channel();
        *self.shared.pending_ping.lock() = Some(PendingPing {
            payload: payload.clone(),
            sent: Instant::now(),
            reply,
        });
        self.control
            .send(Control::Ping(payload))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())
    }

    async fn closed(&mut self) -> DisconnectReason {
        match self.reason.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(DisconnectReason::PeerClosed),
            Err(_) => DisconnectReason::PeerClosed,
        }
    }

    /// Sends a close frame (1000) and waits for the server's reply, bounded by the close
    /// timeout; then the socket is dropped. Messages still queued stay queued. A broken
    /// connection, or one whose last ping went unanswered, is dropped at once.
    async fn close(&mut self) -> Result<(), Error> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let broken = matches!(*self.reason.borrow(), Some(DisconnectReason::Error(_)));
        // A ping still waiting for its pong (the heartbeat gave up on it) means the peer
        // stopped answering: waiting for its close frame would only delay the reconnect.
        let unresponsive = self.shared.pending_ping.lock().is_some();
        let result = if broken || unresponsive {
            // A protocol error leaves a close frame for the writer to send (1002, 1007,
            // 1009): let it go out, bounded, before the socket is dropped. A broken socket
            // owes nothing, and its writer may be stuck in a flush: drop it at once.
            if broken
                && !unresponsive
                && self.shared.close_owed.load(Ordering::Acquire)
                && let Some(writer) = self.writer.as_mut()
            {
                let _ = tokio::time::timeout(self.shared.close_timeout, writer).await;
            }
            // There is nobody to say goodbye to.
            Ok(())
        } else {
            if !reader.is_finished() && self.reason.borrow().is_none() {
                self.shared.we_closed.store(true, Ordering::Release);
                // The writer may be blocked on a full socket; the timeout covers it.
                let _ = self.control.try_send(Control::Close);
            }
            // The reader ends when the server's close frame arrives (or it drops the
            // connection), after flushing our reply to a close it started.
            let limit = self.shared.close_timeout;
            match tokio::time::timeout(limit, &mut *reader).await {
                Ok(_) => Ok(()),
                Err(_) => Err(Error::timeout(
                    &self.shared.endpoint,
                    Operation::Close,
                    limit,
                )),
            }
        };
        self.abort();
        self.shared.end(DisconnectReason::Shutdown);
        result
    }
}

/// The connection as the `on_connect` hook sees it: messages sent here go out before
/// anything in the outbound queue, and messages received here are consumed by the hook
/// (they do not reach the application's stream).
///
/// Cloneable; it stops working when the hook returns.
#[derive(Clone)]
pub struct Session {
    ws: Arc<tokio::sync::Mutex<Option<Ws>>>,
    endpoint: Endpoint,
    subprotocol: Option<Arc<str>>,
    metrics: Arc<ConnectionMetrics>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.endpoint)
            .field("subprotocol", &self.subprotocol)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        ws: Ws,
        endpoint: Endpoint,
        subprotocol: Option<Arc<str>>,
        metrics: Arc<ConnectionMetrics>,
    ) -> Self {
        Self {
            ws: Arc::new(tokio::sync::Mutex::new(Some(ws))),
            endpoint,
            subprotocol,
            metrics,
        }
    }

    /// Takes the socket back once the hook is done.
    pub(crate) async fn finish(self) -> Option<Ws> {
        self.ws.lock().await.take()
    }

    fn gone(&self) -> WsError {
        WsError::Closed {
            endpoint: self.endpoint.clone(),
        }
    }

    /// Where the connection goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The subprotocol the server chose, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Sends a text or binary message now and flushes it.
    pub async fn send(&self, msg: Message) -> Result<(), WsError> {
        if !matches!(msg, Message::Text(_) | Message::Binary(_)) {
            return Err(WsError::ControlFrame {
                endpoint: self.endpoint.clone(),
            });
        }
        let mut guard = self.ws.lock().await;
        let ws = guard.as_mut().ok_or_else(|| self.gone())?;
        let len = msg.len();
        ws.send(msg)
            .await
            .map_err(|e| WsError::from_stream(&self.endpoint, e))?;
        self.metrics.add_messages_out(1);
        self.metrics.add_bytes_out(len as u64);
        Ok(())
    }

    /// Sends a text message now.
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), WsError> {
        self.send(Message::Text(text.into())).await
    }

    /// Sends a binary message now.
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), WsError> {
        self.send(Message::Binary(data.into())).await
    }

    /// Waits for the next text or binary message (e.g. the answer to an authentication
    /// request). Pings are answered meanwhile. Bound it with a timeout: the connect
    /// timeout bounds the whole hook anyway.
    pub async fn recv(&self) -> Result<Message, WsError> {
        let mut guard = self.ws.lock().await;
        let ws = guard.as_mut().ok_or_else(|| self.gone())?;
        loop {
            match ws.next().await {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    self.metrics.add_messages_in(1);
                    self.metrics.add_bytes_in(msg.len() as u64);
                    return Ok(msg);
                }
                Some(Ok(Message::Close(_))) | None => return Err(self.gone()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(WsError::from_stream(&self.endpoint, e)),
            }
        }
    }
}
