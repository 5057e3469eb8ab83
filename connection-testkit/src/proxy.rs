//! A TCP proxy on the loopback interface that injects faults between a client and its
//! upstream.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::guard::OpenGuard;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use crate::server::{ACCEPT_ERROR_PAUSE, bind_loopback};

/// Largest chunk read from a socket at once.
const READ_BUFFER: usize = 16 * 1024;
/// Chunks queued per direction between reading and writing (the latency queue). With
/// [`READ_BUFFER`] this bounds the queue to 256 KiB per direction; when it is full the
/// proxy stops reading, so the sender sees backpressure.
const QUEUE_CHUNKS: usize = 16;
/// Under a bandwidth limit, data is written in pieces of 1/`PACING_STEPS` of a second's
/// worth, so throughput is smooth rather than bursty.
const PACING_STEPS: u64 = 20;

/// The faults currently applied. Running connections watch it, so changes reach them
/// at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    latency: Duration,
    jitter: Duration,
    bandwidth: Option<u64>,
    refuse_new: bool,
    blackhole: bool,
    cut_after: Option<u64>,
    /// Bumped by every `cut_after`, so connections restart their byte budget.
    cut_epoch: u64,
    slice: Option<usize>,
    /// Bumped by every `reset_all`; a connection started under an older value resets.
    reset_epoch: u64,
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
    dropped: AtomicU64,
}

/// Counters of a [`FaultProxy`] since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client connections accepted, including refused ones.
    pub accepted: u64,
    /// Client connections reset at once because of [`FaultProxy::refuse_new`].
    pub refused: u64,
    /// Connections reset by [`FaultProxy::reset_all`] or [`FaultProxy::cut_after`].
    pub reset: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written to clients.
    pub bytes_to_client: u64,
    /// Bytes swallowed by [`FaultProxy::blackhole`], both directions.
    pub bytes_dropped: u64,
}

/// A TCP proxy on `127.0.0.1` that forwards every client connection to an upstream
/// address and injects faults on the way: latency and jitter, a bandwidth limit,
/// refused connections, resets, a blackhole, a cut after some bytes, and writes sliced
/// into small pieces.
///
/// Faults are changed through `&self` while the proxy runs and apply to new and
/// running connections alike, promptly (running connections watch them). A fault stays
/// until it is changed or [`restore`](Self::restore)d. All timing goes through
/// [`tokio::time`], so it works on paused time (`start_paused = true`).
///
/// Memory is bounded: each direction of a connection reads at most 16 KiB at once and
/// queues at most 16 such chunks (the latency queue); beyond that the proxy stops
/// reading and the sender sees backpressure.
///
/// Dropping the proxy closes its listener and every connection through it.
///
/// ```
/// use std::time::Duration;
///
/// use connection_testkit::{FaultProxy, TcpEchoServer};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::TcpStream;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> std::io::Result<()> {
/// let server = TcpEchoServer::start().await?;
/// let proxy = FaultProxy::start(server.addr()).await?;
/// proxy.set_latency(Duration::from_millis(100), Duration::ZERO);
///
/// let mut client = TcpStream::connect(proxy.addr()).await?;
/// let started = tokio::time::Instant::now();
/// client.write_all(b"ping").await?;
/// let mut buf = [0; 4];
/// client.read_exact(&mut buf).await?;
/// // 100 ms on the way there, 100 ms on the way back.
/// assert!(started.elapsed() >= Duration::from_millis(200));
/// # Ok(()) }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy listening on `127.0.0.1` (a port chosen by the system) that
    /// forwards every connection to `upstream`, with no faults.
    ///
    /// The upstream is connected to once per client connection, when it is accepted.
    /// If that fails (the upstream is down), the client connection is reset.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = bind_loopback(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let (faults, watcher) = watch::channel(Faults::default());
        let counters = Arc::<Counters>::default();
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            watcher,
            Arc::clone(&counters),
        ));
        debug!(%addr, %upstream, "fault proxy started");
        Ok(Self {
            addr,
            upstream,
            faults,
            counters,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// How many client connections are open through the proxy right now (including
    /// ones held by a [`blackhole`](Self::blackhole)).
    pub fn connections(&self) -> usize {
        self.counters.open.load(Ordering::Relaxed)
    }

    /// Counters since the proxy started.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.counters;
        ProxyStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            bytes_to_upstream: c.to_upstream.load(Ordering::Relaxed),
            bytes_to_client: c.to_client.load(Ordering::Relaxed),
            bytes_dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Delays every chunk of data by `fixed` plus a uniformly random part of `jitter`,
    /// in each direction separately, measured from when the proxy read the chunk.
    /// Chunks are never reordered: a chunk whose delay ran out waits for the ones before
    /// it. A change applies to chunks already queued too. `(ZERO, ZERO)` turns it off.
    pub fn set_latency(&self, fixed: Duration, jitter: Duration) {
        self.faults.send_modify(|f| {
            f.latency = fixed;
            f.jitter = jitter;
        });
    }

    /// Limits throughput to `bytes_per_sec` in each direction of each connection
    /// (`None`: unlimited). Data is paced in pieces of 1/20 s worth. `Some(0)` stalls
    /// every connection: nothing passes until the limit changes.
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.faults.send_modify(|f| f.bandwidth = bytes_per_sec);
    }

    /// While on, new connections are accepted and reset at once, so the client's
    /// connect succeeds but its first read or write fails (connection reset). Open
    /// connections are not affected.
    pub fn refuse_new(&self, refuse: bool) {
        self.faults.send_modify(|f| f.refuse_new = refuse);
    }

    /// Resets every open connection on both sides (an RST to the client and to the
    /// upstream), including ones held by a blackhole. Connections opened afterwards are
    /// not affected.
    pub fn reset_all(&self) {
        self.faults
            .send_modify(|f| f.reset_epoch = f.reset_epoch.wrapping_add(1));
    }

    /// While on, every byte is accepted and silently dropped, in both directions, and
    /// connections stay open: the half-open case, where the peer stops answering without
    /// closing. An end of stream (FIN) is held back too, until the blackhole ends. New
    /// connections are accepted but the upstream is only connected once the blackhole
    /// ends, so they get no answer meanwhile. Dropped data is lost for good.
    pub fn blackhole(&self, on: bool) {
        self.faults.send_modify(|f| f.blackhole = on);
    }

    /// Resets a connection (both sides) once `bytes` more bytes have passed through it,
    /// counted over both directions together: from now for open connections, from
    /// their start for new ones. Each peer receives at most that many bytes, then a
    /// reset. With `Some(0)` a connection is reset when its next byte would pass (idle
    /// connections stay open). `None` turns it off.
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.faults.send_modify(|f| {
            f.cut_after = bytes;
            f.cut_epoch = f.cut_epoch.wrapping_add(1);
        });
    }

    /// Forwards data in writes of at most `max_bytes` each (at least 1), yielding to
    /// the scheduler between two writes, to exercise a receiver's framing code. Socket
    /// options are set to send each write at once (`TCP_NODELAY`), but the receiver may
    /// still read several pieces together. `None` turns it off.
    pub fn slice_writes(&self, max_bytes: Option<usize>) {
        self.faults.send_modify(|f| f.slice = max_bytes);
    }

    /// Clears every fault: no latency, no bandwidth limit, new connections accepted,
    /// no blackhole, no cut, no slicing. Open connections behave normally again at once
    /// (queued chunks are no longer delayed, held connections are connected upstream).
    pub fn restore(&self) {
        self.faults.send_modify(|f| {
            *f = Faults {
                cut_epoch: f.cut_epoch.wrapping_add(1),
                reset_epoch: f.reset_epoch,
                ..Faults::default()
            };
        });
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("faults", &*self.faults.borrow())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops the listener and its `JoinSet`, which aborts
        // every connection task; their sockets close as the tasks are dropped.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    if faults.borrow().refuse_new {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        debug!(%peer, "fault proxy: refusing connection");
                        abort_stream(client);
                        continue;
                    }
                    let link = Link { upstream, peer, faults: faults.clone(), counters: Arc::clone(&counters) };
                    let guard = OpenGuard::new(&counters);
                    connections.spawn(async move {
                        let _guard = guard;
                        link.run(client).await;
                    });
                }
                Err(e) => {
                    warn!(error = %e, "fault proxy accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        warn!("fault proxy connection task panicked");
                    }
                }
            }
        }
    }
}

/// Closes a stream with an RST rather than a FIN.
fn abort_stream(stream: TcpStream) {
    // `SO_LINGER` is deprecated in tokio because a non-zero value blocks on close; zero
    // does not block. (`set_zero_linger` needs a newer tokio than the workspace minimum.)
    #[allow(deprecated, reason = "a zero linger does not block")]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Resolves when the watched value changed; never, once the proxy is gone (its tasks
/// are being aborted then anyway).
async fn changed(faults: &mut watch::Receiver<Faults>) {
    if faults.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once [`FaultProxy::reset_all`] was called after `epoch`.
async fn reset_requested(mut faults: watch::Receiver<Faults>, epoch: u64) {
    while faults.borrow_and_update().reset_epoch == epoch {
        changed(&mut faults).await;
    }
}

/// Why a connection ended abnormally; each ends in resetting both sides.
#[derive(Debug)]
enum End {
    /// A socket failed (a peer reset, or a write to a closed peer).
    Broken(io::Error),
    /// The [`FaultProxy::cut_after`] budget ran out.
    Cut,
    /// [`FaultProxy::reset_all`].
    ResetAll,
}

/// How a connection accepted during a blackhole left the holding phase.
enum Held {
    Released,
    ClientGone,
    Reset,
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// The cut budget of one connection, shared by both directions.
#[derive(Debug)]
struct Budget {
    epoch: u64,
    remaining: Option<u64>,
}

impl Budget {
    fn new(faults: &Faults) -> Self {
        Self {
            epoch: faults.cut_epoch,
            remaining: faults.cut_after,
        }
    }

    /// Takes up to `want` bytes; returns how many may pass and whether the budget is
    /// used up after them.
    fn take(&mut self, faults: &Faults, want: usize) -> (usize, bool) {
        if self.epoch != faults.cut_epoch {
            self.epoch = faults.cut_epoch;
            self.remaining = faults.cut_after;
        }
        match self.remaining {
            None => (want, false),
            Some(remaining) => {
                let n = usize::try_from(remaining).map_or(want, |r| want.min(r));
                let left = remaining - n as u64;
                self.remaining = Some(left);
                (n, left == 0)
            }
        }
    }
}

/// One chunk read from a socket, waiting in the latency queue.
struct Chunk {
    data: Vec<u8>,
    read_at: Instant,
    /// Where in `0..jitter` this chunk's extra delay falls, in `[0, 1)`.
    jitter: f64,
}

/// One client connection and its upstream.
struct Link {
    upstream: SocketAddr,
    peer: SocketAddr,
    faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
}

impl Link {
    async fn run(mut self, mut client: TcpStream) {
        let peer = self.peer;
        let _ = client.set_nodelay(true);
        let start = *self.faults.borrow_and_update();
        let reset_epoch = start.reset_epoch;
        if start.blackhole {
            match self.hold(&mut client, reset_epoch).await {
                Held::Released => {}
                Held::ClientGone => return,
                Held::Reset => {
                    self.counters.reset.fetch_add(1, Ordering::Relaxed);
                    abort_stream(client);
                    return;
                }
            }
        }

        let connected = tokio::select! {
            connected = TcpStream::connect(self.upstream) => connected,
            () = reset_requested(self.faults.clone(), reset_epoch) => {
                self.counters.reset.fetch_add(1, Ordering::Relaxed);
                abort_stream(client);
                return;
            }
        };
        let mut upstream = match connected {
            Ok(upstream) => upstream,
            Err(error) => {
                debug!(%peer, upstream = %self.upstream, %error, "fault proxy: upstream unreachable, resetting client");
                abort_stream(client);
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        debug!(%peer, upstream = %self.upstream, "fault proxy: connection open");

        match self.pump(&mut client, &mut upstream, reset_epoch).await {
            Ok(()) => debug!(%peer, "fault proxy: connection closed"),
            Err(end) => {
                match &end {
                    End::Broken(error) => {
                        debug!(%peer, %error, "fault proxy: connection failed, resetting both sides")
                    }
                    End::Cut | End::ResetAll => {
                        self.counters.reset.fetch_add(1, Ordering::Relaxed);
                        debug!(%peer, reason = ?end, "fault proxy: resetting connection");
                    }
                }
                abort_stream(client);
                abort_stream(upstream);
            }
        }
    }

    /// Holds a connection accepted during a blackhole, swallowing what the client sends,
    /// until the blackhole ends.
    async fn hold(&mut self, client: &mut TcpStream, reset_epoch: u64) -> Held {
        let mut buf = vec![0; READ_BUFFER];
        loop {
            let faults = *self.faults.borrow_and_update();
            if faults.reset_epoch != reset_epoch {
                return Held::Reset;
            }
            if !faults.blackhole {
                return Held::Released;
            }
            tokio::select! {
                // A change first: bytes sent after `restore` must not be swallowed.
                biased;
                () = changed(&mut self.faults) => {}
                read = client.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return Held::ClientGone,
                    Ok(n) => {
                        self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    }
                },
            }
        }
    }

    /// Forwards both directions until both ended cleanly, or until one fails.
    async fn pump(
        &self,
        client: &mut TcpStream,
        upstream: &mut TcpStream,
        reset_epoch: u64,
    ) -> Result<(), End> {
        let budget = Mutex::new(Budget::new(&self.faults.borrow()));
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let to_upstream =
            self.direction(client_read, upstream_write, Direction::ToUpstream, &budget);
        let to_client = self.direction(upstream_read, client_write, Direction::ToClient, &budget);
        tokio::select! {
            done = async { tokio::try_join!(to_upstream, to_client) } => done.map(|_| ()),
            () = reset_requested(self.faults.clone(), reset_epoch) => Err(End::ResetAll),
        }
    }

    /// One direction: a reader filling the latency queue and a writer emptying it.
    async fn direction(
        &self,
        src: ReadHalf<'_>,
        dst: WriteHalf<'_>,
        dir: Direction,
        budget: &Mutex<Budget>,
    ) -> Result<(), End> {
        let (queue, mut queued) = mpsc::channel::<Chunk>(QUEUE_CHUNKS);
        let reader = read_into(src, queue, self.faults.clone(), &self.counters);
        let writer = async {
            let mut writer = Writer {
                dst,
                dir,
                budget,
                faults: self.faults.clone(),
                counters: &self.counters,
                pace: Instant::now(),
            };
            while let Some(chunk) = queued.recv().await {
                writer.deliver(chunk).await?;
            }
            writer.finish().await;
            Ok(())
        };
        tokio::try_join!(reader, writer).map(|_| ())
    }
}

/// Reads chunks from `src` into the latency queue until end of stream (which closes the
/// queue) or an error. Chunks read during a blackhole are dropped.
async fn read_into(
    mut src: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    faults: watch::Receiver<Faults>,
    counters: &Counters,
) -> Result<(), End> {
    let mut rng = SmallRng::from_os_rng();
    let mut buf = vec![0; READ_BUFFER];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(error) => return Err(End::Broken(error)),
        };
        if faults.borrow().blackhole {
            counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        let chunk = Chunk {
            data: buf[..n].to_vec(),
            read_at: Instant::now(),
            jitter: rng.random::<f64>(),
        };
        if queue.send(chunk).await.is_err() {
            // The writer is gone, which only happens when the connection is ending.
            return Ok(());
        }
    }
}

/// The writing end of one direction.
struct Writer<'a> {
    dst: WriteHalf<'a>,
    dir: Direction,
    budget: &'a Mutex<Budget>,
    faults: watch::Receiver<Faults>,
    counters: &'a Counters,
    /// Under a bandwidth limit, the earliest time the next piece may be written.
    pace: Instant,
}

impl Writer<'_> {
    /// Writes one chunk once its delay ran out, applying the current faults.
    async fn deliver(&mut self, chunk: Chunk) -> Result<(), End> {
        self.wait_latency(&chunk).await;
        let mut data = &chunk.data[..];
        while !data.is_empty() {
            let faults = *self.faults.borrow_and_update();
            if faults.blackhole {
                self.counters
                    .dropped
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            let mut n = data.len();
            if let Some(max) = faults.slice {
                n = n.min(max.max(1));
            }
            if let Some(rate) = faults.bandwidth {
                if !self.wait_pace(rate).await {
                    continue; // The faults changed meanwhile: look again.
                }
                n = n.min(piece_for(rate));
            }
            let (n, used_up) = self
                .budget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(&faults, n);
            if n > 0 {
                self.dst.write_all(&data[..n]).await.map_err(End::Broken)?;
                let counter = match self.dir {
                    Direction::ToUpstream => &self.counters.to_upstream,
                    Direction::ToClient => &self.counters.to_client,
                };
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(rate) = faults.bandwidth {
                    self.pace = add(self.pace, transfer_time(n, rate));
                }
                data = &data[n..];
            }
            if used_up {
                return Err(End::Cut);
            }
            if faults.slice.is_some() && !data.is_empty() {
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Waits until the chunk's delay (under the latency in force) ran out.
    async fn wait_latency(&mut self, chunk: &Chunk) {
        loop {
            let faults = *self.faults.borrow_and_update();
            if faults.blackhole {
                return; // Dropped right away.
            }
            let delay = faults
                .latency
                .saturating_add(faults.jitter.mul_f64(chunk.jitter));
            let due = add(chunk.read_at, delay);
            if Instant::now() >= due {
                return;
            }
            tokio::select! {
                () = sleep_until(due) => return,
                () = changed(&mut self.faults) => {}
            }
        }
    }

    /// Waits until the bandwidth limit allows the next piece. Returns `false` early if
    /// the limit changed or a blackhole started meanwhile.
    async fn wait_pace(&mut self, rate: u64) -> bool {
        loop {
            if rate > 0 {
                let now = Instant::now();
                if self.pace <= now {
                    // No credit for idle time: pacing starts over from now.
                    self.pace = now;
                    return true;
                }
                tokio::select! {
                    () = sleep_until(self.pace) => continue,
                    () = changed(&mut self.faults) => {}
                }
            } else {
                changed(&mut self.faults).await;
            }
            let faults = *self.faults.borrow();
            if faults.bandwidth != Some(rate) {
                self.pace = Instant::now();
                return false;
            }
            if faults.blackhole {
                return false;
            }
        }
    }

    /// Passes on the end of stream (once no blackhole holds it back).
    async fn finish(&mut self) {
        while self.faults.borrow_and_update().blackhole {
            changed(&mut self.faults).await;
        }
        // A failure here means the peer is gone, which the other direction reports.
        let _ = self.dst.shutdown().await;
    }
}

/// The size of one paced piece: 1/`PACING_STEPS` of a second's worth at `rate`.
fn piece_for(rate: u64) -> usize {
    usize::try_from((rate / PACING_STEPS).clamp(1, READ_BUFFER as u64)).unwrap_or(READ_BUFFER)
}

/// How long `bytes` take at `rate` bytes per second (`rate` > 0).
fn transfer_time(bytes: usize, rate: u64) -> Duration {
    let nanos = (bytes as u128 * 1_000_000_000) / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `at + delay`, saturating far in the future instead of overflowing.
fn add(at: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    at.checked_add(delay)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

impl crate::guard::OpenCount for Counters {
    fn open(&self) -> &AtomicUsize {
        &self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_down_and_restarts_on_a_new_setting() {
        let mut faults = Faults {
            cut_after: Some(10),
            cut_epoch: 1,
            ..Faults::default()
        };
        let mut budget = Budget::new(&faults);
        assert_eq!(budget.take(&faults, 4), (4, false));
        assert_eq!(budget.take(&faults, 4), (4, false));
        assert_eq!(budget.take(&faults, 4), (2, true));
        assert_eq!(budget.take(&faults, 4), (0, true));
        faults.cut_after = None;
        faults.cut_epoch = 2;
        assert_eq!(budget.take(&faults, 4), (4, false));
        faults.cut_after = Some(0);
        faults.cut_epoch = 3;
        assert_eq!(budget.take(&faults, 4), (0, true));
    }

    #[test]
    fn pacing_arithmetic() {
        assert_eq!(piece_for(32 * 1024), 1638);
        assert_eq!(piece_for(1), 1);
        assert_eq!(piece_for(u64::MAX), READ_BUFFER);
        assert_eq!(transfer_time(1024, 1024), Duration::from_secs(1));
        assert_eq!(transfer_time(1, 1000), Duration::from_millis(1));
    }
}
