//! One TCP (or TLS) connection: a reader task, a writer task, and the I/O handle
//! ([`TcpIo`]) the application sends and receives with.
//!
//! ```text
//!  TcpSender::send ─► encode (caller's task; a bad frame fails here, nothing written)
//!                  ─► send budget (bytes) ─► queue ─► writer task: batch, write, flush
//!  socket ─► reader task: read, decode ─► recv budget (bytes) ─► queue ─► TcpIo::recv
//!                         └ a ping reply is taken by the waiting probe instead
//! ```
//!
//! Both queues are bounded in bytes by semaphores: a full send buffer makes `send` wait,
//! a full receive buffer stops the reader (and TCP slows the peer down).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use connection_core::metrics::ConnectionMetrics;
use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Operation,
    Traffic,
};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::codec::Framing;
use crate::error::TcpError;
use crate::socket::Socket;

/// Largest batch the writer gathers into one write.
const MAX_BATCH: usize = 64 << 10;
/// Frames from this size on are written from their own buffer, not copied into a batch.
const COALESCE_BELOW: usize = 4 << 10;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 << 10;

/// An application-level ping for [`Connection::probe`]: the frame to send and how to
/// recognise its answer. The answer is taken by the probe and not handed to the
/// application.
pub struct Ping<F, I> {
    pub(crate) request: Arc<dyn Fn() -> F + Send + Sync>,
    pub(crate) is_reply: IsReply<I>,
}

type IsReply<I> = Arc<dyn Fn(&I) -> bool + Send + Sync>;

impl<F, I> Clone for Ping<F, I> {
    fn clone(&self) -> Self {
        Self {
            request: self.request.clone(),
            is_reply: self.is_reply.clone(),
        }
    }
}

impl<F, I> fmt::Debug for Ping<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ping")
    }
}

impl<F, I> Ping<F, I> {
    /// Sends `request()` and waits for the first received frame for which `is_reply`
    /// holds.
    pub fn new(
        request: impl Fn() -> F + Send + Sync + 'static,
        is_reply: impl Fn(&I) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            request: Arc::new(request),
            is_reply: Arc::new(is_reply),
        }
    }
}

struct PendingPing {
    sent: Instant,
    reply: oneshot::Sender<Duration>,
}

/// What the tasks and the handles of one connection share.
struct Shared {
    endpoint: Endpoint,
    own_metrics: Arc<ConnectionMetrics>,
    bound: OnceLock<Traffic>,
    reason: watch::Sender<Option<DisconnectReason>>,
    /// Set by `close()`: the writer flushes what is queued and shuts the socket down.
    closing: watch::Sender<bool>,
    send_budget: Semaphore,
    send_capacity: u32,
    recv_budget: Semaphore,
    recv_capacity: u32,
    /// Bytes queued for the socket and for the application (for the buffers figure).
    queued_out: AtomicU64,
    queued_in: AtomicU64,
    ping_waiting: AtomicBool,
    ping: parking_lot::Mutex<Option<PendingPing>>,
    /// Encode buffers the writer is done with, for the next large frames (see
    /// [`Shared::recycle`]).
    spare: parking_lot::Mutex<Spare>,
    /// How many buffers `spare` holds, readable without its lock: small frames (whose
    /// buffers are never kept) find it 0 and take no lock on their way out.
    spare_count: AtomicU64,
    /// The error that broke the connection, as this crate names it.
    failure: OnceLock<TcpError>,
    /// Whether a receiver has been handed `failure` (it is reported once).
    failure_reported: AtomicBool,
}

/// Written buffers kept for reuse: large frames are encoded into memory that stays
/// allocated. Without it every large frame is a fresh allocation, and glibc hands the
/// memory back to the kernel and faults it in again, page by page (measured: four page
/// faults per 64 KiB frame, a third more CPU per frame than tokio-util's `Framed`, which
/// reuses one write buffer).
#[derive(Default)]
struct Spare {
    buffers: Vec<BytesMut>,
    bytes: usize,
}

/// Buffers smaller than this come cheaply from the allocator's caches: not kept.
const SPARE_MIN: usize = 4 << 10;
const SPARE_MAX_BUFFERS: usize = 16;

impl Shared {
    /// A buffer to encode into: a spare one if there is, else a new one.
    fn encode_buffer(&self) -> BytesMut {
        if self.spare_count.load(Ordering::Relaxed) == 0 {
            return BytesMut::new();
        }
        let mut spare = self.spare.lock();
        match spare.buffers.pop() {
            Some(b) => {
                spare.bytes -= b.capacity();
                self.spare_count.fetch_sub(1, Ordering::Relaxed);
                b
            }
            None => BytesMut::new(),
        }
    }

    /// Keeps a written frame's buffer for reuse, within the send buffer's size.
    fn recycle(&self, written: Bytes) {
        if written.len() < SPARE_MIN {
            return;
        }
        let Ok(mut b) = written.try_into_mut() else {
            return;
        };
        b.clear();
        let mut spare = self.spare.lock();
        if spare.buffers.len() < SPARE_MAX_BUFFERS
            && spare.bytes + b.capacity() <= self.send_capacity as usize
        {
            spare.bytes += b.capacity();
            spare.buffers.push(b);
            self.spare_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn traffic_metrics(&self) -> &Arc<ConnectionMetrics> {
        self.bound.get().map_or(&self.own_metrics, Traffic::metrics)
    }

    /// Records why the connection ended (the first reason wins) and wakes everyone
    /// waiting on its budgets.
    fn end(&self, reason: DisconnectReason) {
        if let DisconnectReason::Error(e) = &reason
            && let Some(t) = self.bound.get()
        {
            t.failure(e);
        }
        self.reason.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
        self.send_budget.close();
        self.recv_budget.close();
    }

    fn fail(&self, e: TcpError) {
        let _ = self.failure.set(e.clone());
        self.end(DisconnectReason::Error(Arc::new(e.into())));
    }

    /// What a send on a connection that is over fails with: a socket error as it was,
    /// anything else (a bad frame from the peer, a close) as `Closed`.
    fn closed_error(&self) -> TcpError {
        match self.failure.get() {
            Some(e @ TcpError::Io { .. }) => e.clone(),
            _ => TcpError::Closed {
                endpoint: self.endpoint.clone(),
            },
        }
    }

    fn is_over(&self) -> bool {
        self.reason.borrow().is_some()
    }
}

/// The sending half of a connection's I/O handle: encodes frames in the caller's task
/// and queues them for the writer. Cheap to clone; clones send on the same connection.
pub struct TcpSender<C, F> {
    codec: C,
    tx: mpsc::UnboundedSender<(Bytes, u32)>,
    shared: Arc<Shared>,
    _frame: PhantomData<fn(F)>,
}

impl<C: Clone, F> Clone for TcpSender<C, F> {
    fn clone(&self) -> Self {
        Self {
            codec: self.codec.clone(),
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            _frame: PhantomData,
        }
    }
}

impl<C, F> fmt::Debug for TcpSender<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSender")
            .field("endpoint", &self.shared.endpoint)
            .field(
                "queued_bytes",
                &self.shared.queued_out.load(Ordering::Relaxed),
            )
            .field("closed", &self.shared.is_over())
            .finish()
    }
}

impl<C: Framing<F>, F> TcpSender<C, F> {
    /// Encodes `frame` and queues it, waiting while the send buffer is full. Fails with
    /// [`TcpError::FrameTooLarge`] or [`TcpError::Codec`] when the codec refuses the frame
    /// (nothing is written and the connection goes on), and with
    /// [`TcpError::Closed`] (or the error that broke it) once the connection is gone.
    pub async fn send(&self, frame: F) -> Result<(), TcpError> {
        let bytes = self.encode(frame)?;
        let cost = self.cost(&bytes);
        match self.shared.send_budget.acquire_many(cost).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(self.shared.closed_error()),
        }
        self.queue(bytes, cost)
    }

    /// Like [`send`](Self::send) without waiting: `Ok(false)` (and the frame dropped)
    /// when the send buffer is full.
    pub fn try_send(&self, frame: F) -> Result<bool, TcpError> {
        if self.shared.is_over() {
            return Err(self.shared.closed_error());
        }
        let bytes = self.encode(frame)?;
        let cost = self.cost(&bytes);
        match self.shared.send_budget.try_acquire_many(cost) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Ok(false),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(self.shared.closed_error()),
        }
        self.queue(bytes, cost).map(|()| true)
    }

    /// Bytes queued for the socket, not yet written.
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_out.load(Ordering::Relaxed)
    }

    /// Whether the connection is gone (sends fail).
    pub fn is_closed(&self) -> bool {
        self.shared.is_over()
    }

    fn encode(&self, frame: F) -> Result<Bytes, TcpError> {
        let mut buf = self.shared.encode_buffer();
        self.codec
            .clone()
            .encode(frame, &mut buf)
            .map_err(|e| TcpError::from_codec(&self.shared.endpoint, e))?;
        Ok(buf.freeze())
    }

    fn cost(&self, bytes: &Bytes) -> u32 {
        // A frame larger than the whole buffer takes all of it and goes out alone.
        u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.shared.send_capacity)
    }

    fn queue(&self, bytes: Bytes, cost: u32) -> Result<(), TcpError> {
        let len = bytes.len() as u64;
        self.shared.queued_out.fetch_add(len, Ordering::Relaxed);
        if self.tx.send((bytes, cost)).is_err() {
            self.shared.queued_out.fetch_sub(len, Ordering::Relaxed);
            return Err(self.shared.closed_error());
        }
        Ok(())
    }
}

type Inbound<I> = mpsc::UnboundedReceiver<(I, u32)>;

/// A connection's I/O handle: a [`TcpSender`] and the received frames. Cheap to clone;
/// clones share the connection (frames received go to whichever clone asks first).
///
/// Received frames come as a stream of `Result`s, as tokio-util's `Framed` gives them:
/// `None` once the connection ended cleanly (the peer closed, or we did), one `Err` first
/// if it broke (a frame over the limit, a socket error).
pub struct TcpIo<C: Decoder, F = <C as Decoder>::Item> {
    sender: TcpSender<C, F>,
    inbound: Arc<Mutex<Inbound<C::Item>>>,
}

impl<C: Decoder + Clone, F> Clone for TcpIo<C, F> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            inbound: self.inbound.clone(),
        }
    }
}

impl<C: Decoder, F> fmt::Debug for TcpIo<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpIo")
            .field("endpoint", &self.sender.shared.endpoint)
            .field("closed", &self.sender.shared.is_over())
            .finish()
    }
}

impl<C: Framing<F>, F> TcpIo<C, F> {
    /// See [`TcpSender::send`].
    pub async fn send(&self, frame: F) -> Result<(), TcpError> {
        self.sender.send(frame).await
    }

    /// The sending half, for a task that only sends.
    pub fn sender(&self) -> &TcpSender<C, F> {
        &self.sender
    }

    /// The next received frame; `None` once the connection ended cleanly, `Some(Err)`
    /// once if it broke. Cancel-safe: a frame is never lost to a dropped `recv`.
    pub async fn recv(&self) -> Option<Result<C::Item, TcpError>> {
        let mut rx = self.inbound.lock().await;
        match rx.recv().await {
            Some((item, cost)) => {
                let shared = &self.sender.shared;
                shared.recv_budget.add_permits(cost as usize);
                shared
                    .queued_in
                    .fetch_sub(u64::from(cost), Ordering::Relaxed);
                Some(Ok(item))
            }
            None => {
                // The reader is gone and everything it queued has been taken: say why
                // once, then end.
                let shared = &self.sender.shared;
                match shared.failure.get() {
                    Some(e) if !shared.failure_reported.swap(true, Ordering::Relaxed) => {
                        Some(Err(e.clone()))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The received frames as a `Stream` (the same as calling [`recv`](Self::recv) in a
    /// loop).
    pub fn frames(&self) -> impl Stream<Item = Result<C::Item, TcpError>> + Send + 'static
    where
        C::Item: Send,
        F: 'static,
    {
        futures::stream::unfold(self.clone(), |io| async move {
            let next = io.recv().await?;
            Some((next, io))
        })
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// One open connection. Its I/O handle is a [`TcpIo`]; dropping the connection stops
/// its tasks (close it first for a graceful end).
pub struct TcpConnection<C: Decoder, F = <C as Decoder>::Item> {
    id: ConnectionId,
    io: TcpIo<C, F>,
    ping: Option<Ping<F, C::Item>>,
    reason: watch::Receiver<Option<DisconnectReason>>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    close_timeout: Duration,
    peer: Option<std::net::SocketAddr>,
    tls: bool,
}

impl<C: Decoder, F> fmt::Debug for TcpConnection<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConnection")
            .field("id", &self.id)
            .field("endpoint", &self.io.sender.shared.endpoint)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("reason", &*self.reason.borrow())
            .finish()
    }
}

impl<C: Decoder, F> Drop for TcpConnection<C, F> {
    fn drop(&mut self) {
        for t in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        self.io.sender.shared.end(DisconnectReason::Shutdown);
    }
}

/// What [`spawn`] needs besides the socket and codec.
pub(crate) struct Parts<F, I> {
    pub(crate) endpoint: Endpoint,
    pub(crate) send_buffer: usize,
    pub(crate) recv_buffer: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) ping: Option<Ping<F, I>>,
}

/// Starts the reader and writer tasks of `socket`.
pub(crate) fn spawn<C: Framing<F>, F: Send + 'static>(
    socket: Socket,
    codec: C,
    parts: Parts<F, C::Item>,
) -> TcpConnection<C, F> {
    let peer = socket.peer_addr().ok();
    let tls = socket.is_tls();
    let (reason, reason_rx) = watch::channel(None);
    let (closing, closing_rx) = watch::channel(false);
    let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).max(1);
    let shared = Arc::new(Shared {
        endpoint: parts.endpoint,
        own_metrics: Arc::new(ConnectionMetrics::new()),
        bound: OnceLock::new(),
        reason,
        closing,
        send_budget: Semaphore::new(cap(parts.send_buffer) as usize),
        send_capacity: cap(parts.send_buffer),
        recv_budget: Semaphore::new(cap(parts.recv_buffer) as usize),
        recv_capacity: cap(parts.recv_buffer),
        queued_out: AtomicU64::new(0),
        queued_in: AtomicU64::new(0),
        ping_waiting: AtomicBool::new(false),
        ping: parking_lot::Mutex::new(None),
        spare: parking_lot::Mutex::new(Spare::default()),
        spare_count: AtomicU64::new(0),
        failure: OnceLock::new(),
        failure_reported: AtomicBool::new(false),
    });
    let (read_half, write_half) = tokio::io::split(socket);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let is_reply = parts.ping.as_ref().map(|p| p.is_reply.clone());
    let reader = tokio::spawn(read_loop(
        read_half,
        codec.clone(),
        in_tx,
        shared.clone(),
        is_reply,
    ));
    let writer = tokio::spawn(write_loop(write_half, out_rx, closing_rx, shared.clone()));
    TcpConnection {
        id: ConnectionId::next(),
        io: TcpIo {
            sender: TcpSender {
                codec,
                tx: out_tx,
                shared,
                _frame: PhantomData,
            },
            inbound: Arc::new(Mutex::new(in_rx)),
        },
        ping: parts.ping,
        reason: reason_rx,
        reader: Some(reader),
        writer: Some(writer),
        close_timeout: parts.close_timeout,
        peer,
        tls,
    }
}

async fn read_loop<C: Decoder>(
    mut socket: ReadHalf<Socket>,
    mut codec: C,
    inbound: mpsc::UnboundedSender<(C::Item, u32)>,
    shared: Arc<Shared>,
    is_reply: Option<IsReply<C::Item>>,
) where
    C::Error: std::error::Error + Send + Sync + 'static,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Bytes consumed by the decoder since the last frame (a prefix may be consumed by a
    // call that returns no frame yet).
    let mut consumed = 0usize;
    let mut eof = false;
    loop {
        let (mut frames, mut bytes) = (0u64, 0u64);
        loop {
            let before = buf.len();
            let decoded = if eof {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            consumed += before - buf.len();
            let item = match decoded {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    record_received(&shared, frames, bytes);
                    shared.fail(TcpError::from_codec(&shared.endpoint, e));
                    return;
                }
            };
            let size = std::mem::take(&mut consumed);
            frames += 1;
            bytes += size as u64;
            if let Some(is_reply) = &is_reply
                && shared.ping_waiting.load(Ordering::Acquire)
                && is_reply(&item)
                && let Some(p) = shared.ping.lock().take()
            {
                shared.ping_waiting.store(false, Ordering::Release);
                let _ = p.reply.send(p.sent.elapsed());
                continue;
            }
            let cost = u32::try_from(size)
                .unwrap_or(u32::MAX)
                .clamp(1, shared.recv_capacity);
            match shared.recv_budget.try_acquire_many(cost) {
                Ok(p) => p.forget(),
                Err(_) => {
                    // Full: what was read so far is counted before waiting.
                    record_received(&shared, frames, bytes);
                    (frames, bytes) = (0, 0);
                    match shared.recv_budget.acquire_many(cost).await {
                        Ok(p) => p.forget(),
                        Err(_) => return,
                    }
                }
            }
            shared
                .queued_in
                .fetch_add(u64::from(cost), Ordering::Relaxed);
            if inbound.send((item, cost)).is_err() {
                return;
            }
        }
        record_received(&shared, frames, bytes);
        if eof {
            shared.end(DisconnectReason::PeerClosed);
            return;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) => eof = true,
            Ok(_) => {}
            Err(e) => {
                shared.fail(TcpError::Io {
                    endpoint: shared.endpoint.clone(),
                    source: Arc::new(e),
                });
                return;
            }
        }
    }
}

fn record_received(shared: &Shared, frames: u64, bytes: u64) {
    if frames > 0 {
        shared.traffic_metrics().record_received(frames, bytes);
    }
}

async fn write_loop(
    mut socket: WriteHalf<Socket>,
    mut queue: mpsc::UnboundedReceiver<(Bytes, u32)>,
    mut closing: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut reason = shared.reason.subscribe();
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            m = queue.recv() => m,
            _ = closing.wait_for(|c| *c) => None,
            _ = reason.wait_for(Option::is_some) => return,
        };
        let Some(first) = first else {
            // Closing: what is queued goes out, then FIN (or close_notify and FIN).
            let mut rest = Vec::new();
            while let Ok(m) = queue.try_recv() {
                rest.push(m);
            }
            for (bytes, cost) in rest {
                if write(&mut socket, &shared, &bytes, 1, cost).await.is_err() {
                    return;
                }
            }
            let _ = socket.flush().await;
            let _ = socket.shutdown().await;
            return;
        };
        // Small frames queued together go out in one write (one syscall, one TLS
        // record); a large one is written from its own buffer, never copied again.
        let result = if first.0.len() < COALESCE_BELOW
            && let Ok(second) = queue.try_recv()
        {
            batch.clear();
            let (mut n, mut cost) = (1u64, first.1);
            batch.extend_from_slice(&first.0);
            let mut next = Some(second);
            let mut large = None;
            while let Some((b, c)) = next.take() {
                if b.len() >= COALESCE_BELOW {
                    large = Some((b, c));
                    break;
                }
                batch.extend_from_slice(&b);
                n += 1;
                cost += c;
                if batch.len() >= MAX_BATCH {
                    break;
                }
                next = queue.try_recv().ok();
            }
            let r = write(&mut socket, &shared, &batch, n, cost).await;
            match large {
                Some((b, c)) if r.is_ok() => {
                    let r = write(&mut socket, &shared, &b, 1, c).await;
                    shared.recycle(b);
                    r
                }
                _ => r,
            }
        } else {
            let r = write(&mut socket, &shared, &first.0, 1, first.1).await;
            shared.recycle(first.0);
            r
        };
        if result.is_err() {
            return;
        }
    }
}

async fn write<S: AsyncWrite + AsyncRead>(
    socket: &mut WriteHalf<S>,
    shared: &Shared,
    bytes: &[u8],
    frames: u64,
    cost: u32,
) -> Result<(), ()> {
    let done = async {
        socket.write_all(bytes).await?;
        socket.flush().await
    };
    match done.await {
        Ok(()) => {
            shared
                .queued_out
                .fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            shared.send_budget.add_permits(cost as usize);
            shared
                .traffic_metrics()
                .record_sent(frames, bytes.len() as u64);
            Ok(())
        }
        Err(e) => {
            shared.fail(TcpError::Io {
                endpoint: shared.endpoint.clone(),
                source: Arc::new(e),
            });
            Err(())
        }
    }
}

impl<C: Framing<F>, F: Send + 'static> TcpConnection<C, F> {
    /// The connection's I/O handle.
    pub fn handle(&self) -> &TcpIo<C, F> {
        &self.io
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }

    /// Whether the connection runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// See [`TcpSender::send`].
    pub async fn send(&self, frame: F) -> Result<(), TcpError> {
        self.io.send(frame).await
    }

    /// See [`TcpIo::recv`].
    pub async fn recv(&self) -> Option<Result<C::Item, TcpError>> {
        self.io.recv().await
    }

    /// Metrics of a connection used without a supervisor (a supervised one records into
    /// its supervisor's).
    pub fn metrics(&self) -> &Arc<ConnectionMetrics> {
        self.io.sender.shared.traffic_metrics()
    }
}

impl<C: Framing<F>, F: Send + 'static> Connection for TcpConnection<C, F>
where
    C::Item: Send + Sync,
{
    type Io = TcpIo<C, F>;

    fn io(&self) -> TcpIo<C, F> {
        self.io.clone()
    }

    /// From now on, frames and bytes are recorded into `traffic`, and the bytes waiting in
    /// the two queues are its buffers.
    fn bind_traffic(&mut self, traffic: Traffic) {
        let shared = Arc::downgrade(&self.io.sender.shared);
        traffic.buffers(move || {
            shared.upgrade().map_or(0, |s| {
                s.queued_out.load(Ordering::Relaxed) + s.queued_in.load(Ordering::Relaxed)
            })
        });
        let _ = self.io.sender.shared.bound.set(traffic);
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

    /// With a [`Ping`]: sends its request and waits for the reply, returning the round
    /// trip (unbounded: the supervisor adds its probe timeout). Without one: `Ok(0)`
    /// while the connection is up (loss is noticed by the reader at once).
    async fn probe(&mut self) -> Result<Duration, Error> {
        let shared = self.io.sender.shared.clone();
        let closed = || -> Error { shared.closed_error().into() };
        if shared.is_over() {
            return Err(closed());
        }
        let Some(ping) = &self.ping else {
            return Ok(Duration::ZERO);
        };
        let (reply, rx) = oneshot::channel();
        *shared.ping.lock() = Some(PendingPing {
            sent: Instant::now(),
            reply,
        });
        shared.ping_waiting.store(true, Ordering::Release);
        self.io.send((ping.request)()).await?;
        let mut reason = self.reason.clone();
        tokio::select! {
            rtt = rx => rtt.map_err(|_| closed()),
            _ = reason.wait_for(Option::is_some) => Err(closed()),
        }
    }

    async fn closed(&mut self) -> DisconnectReason {
        match self.reason.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(DisconnectReason::PeerClosed),
            Err(_) => DisconnectReason::PeerClosed,
        }
    }

    /// Flushes what is queued, sends TLS `close_notify` and FIN, bounded by the close
    /// timeout; then the tasks stop. Frames the peer sends meanwhile still reach
    /// [`TcpIo::recv`] until the socket is dropped.
    async fn close(&mut self) -> Result<(), Error> {
        let shared = self.io.sender.shared.clone();
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let _ = shared.closing.send(true);
        let deadline = self.close_timeout;
        let graceful = tokio::time::timeout(deadline, &mut writer).await;
        writer.abort();
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        shared.end(DisconnectReason::Shutdown);
        match graceful {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::timeout(&shared.endpoint, Operation::Close, deadline)),
        }
    }
}
