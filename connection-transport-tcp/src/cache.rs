//! [`ConnectionCache`]: connections by key (a server location, a peer id), opened on
//! first use and shared by every caller of that key.
//!
//! What it does, after SwiftNIO's client connection manager and the P2P seed's
//! connection manager:
//!
//! - **get-or-connect** ([`ConnectionCache::get`]): a hit hands out the connection's I/O
//!   handle; a miss opens one connection, and concurrent gets for the same key wait for
//!   that one attempt (moka's `get_with` semantics). The attempt runs in a task of its
//!   own, so a caller that gives up strands nobody. Errors are not cached: every waiter of
//!   the failed attempt gets the error, and the next get tries again.
//! - **capacity** with least-recently-used eviction, a **TTL** (maximum lifetime) and an
//!   **idle timeout** (time since the last get), enforced by a background sweep that
//!   holds the cache only weakly, so dropping the cache stops it and closes every
//!   connection.
//! - **dead connections** (their [`Connection::closed`] resolved) are removed at once by
//!   the task that owns them; the next get reconnects.
//! - **status** per key, **events** ([`CacheEvent`]) and **metrics**
//!   ([`CacheMetrics`], serializable).
//!
//! # The hit path
//!
//! A hit takes the read lock of its own thread in the key's shard, reads the entry and
//! two clock-like counters and counts itself on its thread's counter: no allocation, no
//! clock read, and no cache line that another thread writes (in the steady state), so
//! hits from many threads do not slow each other down, even on one key. Misses pay
//! instead: inserting takes every thread's lock of a shard. Consequences, by design:
//!
//! - **Time is coarse.** Idle time and expiry are measured on a clock that the sweep
//!   advances every [`sweep_interval`](CacheBuilder::sweep_interval) (1 s by default,
//!   less for short timeouts)
//!   and every miss advances too, so an expiry happens up to one sweep interval late and
//!   idle times are rounded to it. (Reading `tokio::time::Instant::now()` on every hit
//!   would cost more than the rest of the hit.)
//! - **LRU is by last-use stamp.** Each entry keeps a stamp of when it was last used; the
//!   stamp advances at every insert and every sweep, and eviction picks the entry with
//!   the oldest stamp. Uses between two such steps tie, and the tie is broken by shard
//!   order. Eviction scans the entries: O(capacity) per insert into a full cache, which
//!   [`MAX_CAPACITY`] bounds.
//! - **No per-key use count**: counting each hit on its entry would make every thread
//!   hitting that key write one cache line. Hits are counted per thread and summed in
//!   [`CacheMetrics::hits`].
//!
//! # Example
//!
//! ```
//! use connection_core::Endpoint;
//! use connection_testkit::TcpEchoServer;
//! use connection_transport_tcp::{ConnectionCache, Lines, TcpTransport};
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TcpEchoServer::start().await?;
//!
//! // How to reach a key: a transport per key. Here the key is the server's address.
//! let cache = ConnectionCache::builder(|addr: &SocketAddr| {
//!     let endpoint = Endpoint::host_port(&addr.ip().to_string(), addr.port())?;
//!     Ok(TcpTransport::new(endpoint, Lines::default())?)
//! })
//! .capacity(100)
//! .idle_timeout(Duration::from_secs(60))
//! .build()?;
//!
//! let io = cache.get(&server.addr()).await?; // connects
//! io.send("hello".to_string()).await?;
//! assert_eq!(io.recv().await.transpose()?.as_deref(), Some("hello"));
//!
//! let again = cache.get(&server.addr()).await?; // the same connection
//! again.send("again".to_string()).await?;
//! assert_eq!(again.recv().await.transpose()?.as_deref(), Some("again"));
//! assert_eq!(server.accepted(), 1);
//!
//! let metrics = cache.metrics();
//! assert_eq!((metrics.hits, metrics.misses, metrics.connections), (1, 1, 1));
//! assert!(metrics.messages_per_second > 0.0); // what the connection recorded
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use connection_core::metrics::ConnectionMetrics;
use connection_core::task::TaskEnded;
use connection_core::{
    ConfigError, Connection, ConnectionId, ConnectionState, Endpoint, Error, Traffic, Transport,
    connect_within, require_in_range, require_nonzero,
};
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;

/// The largest [`capacity`](CacheBuilder::capacity) a cache accepts: eviction scans the
/// entries, so this bounds the cost of an insert into a full cache.
pub const MAX_CAPACITY: usize = 65_536;

/// The largest [`event_capacity`](CacheBuilder::event_capacity): the event ring is
/// allocated up front.
pub const MAX_EVENT_CAPACITY: usize = 4_096;

const SHARDS: usize = 16;
/// Hit counters per cache: threads are spread over them, so two threads rarely count
/// on one cache line.
const STRIPES: usize = 16;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Relaxed) % STRIPES;
}

/// This thread's hit counter.
#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| *s)
}

/// One connect attempt of a key: the transport's endpoint (for errors the cache makes
/// itself) and the attempt.
type Connecting<C> = (
    Endpoint,
    Pin<Box<dyn Future<Output = Result<C, Error>> + Send>>,
);
type Maker<K, C> = dyn Fn(&K, Option<Duration>) -> Result<Connecting<C>, Error> + Send + Sync;

/// Why an entry left the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvictReason {
    /// The cache was full and this entry was the least recently used.
    Capacity,
    /// It reached the maximum lifetime ([`CacheBuilder::ttl`]).
    Ttl,
    /// It was not used for the idle timeout ([`CacheBuilder::idle_timeout`]).
    Idle,
    /// The connection was lost (its [`Connection::closed`] resolved).
    Closed,
    /// [`ConnectionCache::remove`] or [`ConnectionCache::clear`].
    Removed,
}

impl EvictReason {
    /// Whether the entry expired (TTL or idle timeout) rather than being pushed out,
    /// lost or removed.
    pub fn is_expiry(self) -> bool {
        matches!(self, Self::Ttl | Self::Idle)
    }
}

impl fmt::Display for EvictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Capacity => "capacity",
            Self::Ttl => "ttl",
            Self::Idle => "idle",
            Self::Closed => "closed",
            Self::Removed => "removed",
        })
    }
}

/// Something that happened in a [`ConnectionCache`], from
/// [`subscribe`](ConnectionCache::subscribe).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CacheEvent<K> {
    /// A new connection was cached for `key`.
    Inserted {
        /// The key.
        key: K,
        /// The new connection.
        id: ConnectionId,
    },
    /// A connection left the cache, and is being closed. An expiry is an eviction whose
    /// [`reason`](EvictReason::is_expiry) is [`Ttl`](EvictReason::Ttl) or
    /// [`Idle`](EvictReason::Idle).
    Evicted {
        /// The key.
        key: K,
        /// The connection.
        id: ConnectionId,
        /// Why.
        reason: EvictReason,
    },
    /// A connect attempt for `key` failed; nothing was cached.
    ConnectFailed {
        /// The key.
        key: K,
        /// What every waiter of the attempt got.
        error: Error,
    },
}

/// What the cache holds for one key, from [`ConnectionCache::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStatus {
    /// A connect attempt is running; gets wait for it.
    Connecting,
    /// A connection is cached.
    Connected {
        /// The connection's id.
        id: ConnectionId,
        /// Time since it was cached.
        age: Duration,
        /// Time since the last get that returned it (coarse: see the module docs).
        idle: Duration,
    },
}

/// Evictions counted by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Evictions {
    /// Pushed out by capacity (LRU).
    pub capacity: u64,
    /// Expired by TTL.
    pub ttl: u64,
    /// Expired by idle timeout.
    pub idle: u64,
    /// Lost connections.
    pub closed: u64,
    /// Removed by the application.
    pub removed: u64,
}

impl Evictions {
    /// All evictions.
    pub fn total(&self) -> u64 {
        self.capacity + self.ttl + self.idle + self.closed + self.removed
    }
}

/// A point-in-time copy of a cache's metrics (the P2P seed's `NetworkMetrics`).
///
/// Serialized with durations as floating-point seconds in `_seconds` fields, like the
/// other snapshots of the workspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Connections held.
    pub connections: usize,
    /// Keys with a connect attempt running.
    pub connecting: usize,
    /// The configured capacity.
    pub capacity: usize,
    /// Gets served from the cache.
    pub hits: u64,
    /// Gets that found no usable connection (each waiter of an attempt counts).
    pub misses: u64,
    /// Connect attempts started.
    pub connects: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Evictions by reason.
    pub evictions: Evictions,
    /// Messages per second, both ways, over the held connections' last seconds (from the
    /// traffic each connection records through [`Traffic`]; 0 for a transport that
    /// records none).
    pub messages_per_second: f64,
    /// Bytes per second, both ways, likewise.
    pub bytes_per_second: f64,
    /// Mean request latency over the held connections' lifetimes; `None` without
    /// requests.
    #[serde(rename = "mean_latency_seconds", serialize_with = "opt_secs")]
    pub mean_latency: Option<Duration>,
    /// Bytes the held connections report in their own buffers and queues
    /// ([`Traffic::buffers`]); 0 for transports that report none.
    pub buffered_bytes: u64,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Settings of a [`ConnectionCache`]; made by [`ConnectionCache::builder`].
///
/// | setting | default | accepted |
/// |---|---|---|
/// | [`capacity`](Self::capacity) | 256 | 1..=[`MAX_CAPACITY`] |
/// | [`ttl`](Self::ttl) | 30 min | >0, ≤ [`MAX_DURATION`](connection_core::MAX_DURATION); [`no_ttl`](Self::no_ttl) |
/// | [`idle_timeout`](Self::idle_timeout) | 10 min | >0, ≤ max; [`no_idle_timeout`](Self::no_idle_timeout) |
/// | [`connect_timeout`](Self::connect_timeout) | 10 s | >0, ≤ max |
/// | [`close_timeout`](Self::close_timeout) | 5 s | >0, ≤ max |
/// | [`sweep_interval`](Self::sweep_interval) | 1 s, or a quarter of the shorter of TTL and idle timeout if less (at least 10 ms) | >0, ≤ max |
/// | [`event_capacity`](Self::event_capacity) | 64 | 1..=[`MAX_EVENT_CAPACITY`] |
///
/// The TTL and idle defaults are HikariCP's `maxLifetime` and `idleTimeout`: long enough
/// that a busy key rarely reconnects, short enough that a server's own idle cutoff or a
/// NAT's mapping timeout is usually met by a clean close rather than a dead socket.
#[must_use]
pub struct CacheBuilder<K, C> {
    make: Arc<Maker<K, C>>,
    capacity: usize,
    ttl: Option<Duration>,
    idle_timeout: Option<Duration>,
    connect_timeout: Duration,
    close_timeout: Duration,
    /// `None`: derived from the timeouts at build time.
    sweep_interval: Option<Duration>,
    event_capacity: usize,
}

impl<K, C> fmt::Debug for CacheBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("event_capacity", &self.event_capacity)
            .finish_non_exhaustive()
    }
}

impl<K, C> CacheBuilder<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    /// How many connections the cache holds at most; past it, the least recently used
    /// one is evicted and closed.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// The maximum lifetime of a cached connection, counted from its insertion.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// No maximum lifetime.
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// How long a cached connection may go without a get before it is closed.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// No idle timeout.
    pub fn no_idle_timeout(mut self) -> Self {
        self.idle_timeout = None;
        self
    }

    /// How long one connect attempt may take (the attempt fails with a retryable
    /// [`Error::Timeout`]). Every waiter waits at most this long, since attempts are
    /// shared.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// How long closing an evicted connection may take before it is dropped.
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.close_timeout = limit;
        self
    }

    /// How often the background sweep expires entries and advances the coarse clock.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = Some(every);
        self
    }

    /// How many events a subscriber may fall behind before it misses some.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Checks the settings and makes the cache. The sweep task starts with the first
    /// connect, so this may be called outside a tokio runtime.
    ///
    /// Fails with a [`ConfigError`] naming the setting (`capacity`, `ttl`,
    /// `idle_timeout`, `connect_timeout`, `close_timeout`, `sweep_interval`,
    /// `event_capacity`).
    pub fn build(self) -> Result<ConnectionCache<K, C>, ConfigError> {
        require_in_range("capacity", self.capacity, 1..=MAX_CAPACITY)?;
        if let Some(ttl) = self.ttl {
            require_nonzero("ttl", ttl)?;
        }
        if let Some(idle) = self.idle_timeout {
            require_nonzero("idle_timeout", idle)?;
        }
        require_nonzero("connect_timeout", self.connect_timeout)?;
        require_nonzero("close_timeout", self.close_timeout)?;
        let sweep_interval = match self.sweep_interval {
            Some(every) => every,
            // Expiry is at most one interval late: keep that small next to the timeouts.
            None => [self.ttl, self.idle_timeout]
                .into_iter()
                .flatten()
                .map(|d| (d / 4).max(Duration::from_millis(10)))
                .fold(Duration::from_secs(1), Duration::min),
        };
        require_nonzero("sweep_interval", sweep_interval)?;
        require_in_range(
            "event_capacity",
            self.event_capacity,
            1..=MAX_EVENT_CAPACITY,
        )?;
        let (events, _) = broadcast::channel(self.event_capacity);
        let (stop_sweep, stop_rx) = oneshot::channel();
        Ok(ConnectionCache {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| Shard::default()),
                shard_seed: RandomState::new().hash_one(0u64) | 1,
                clock: Padded(AtomicU64::new(0)),
                stamp: Padded(AtomicU64::new(0)),
                base: Instant::now(),
                make: self.make,
                capacity: self.capacity,
                ttl_ms: self.ttl.map(millis),
                idle_ms: self.idle_timeout.map(millis),
                connect_timeout: self.connect_timeout,
                close_timeout: self.close_timeout,
                sweep_interval,
                events,
                held: AtomicUsize::new(0),
                connecting: AtomicUsize::new(0),
                next_attempt: AtomicU64::new(0),
                counters: Counters::default(),
                evicting: Mutex::new(()),
                sweeper: Mutex::new(Some(stop_rx)),
                _stop_sweep: stop_sweep,
            }),
        })
    }
}

/// Connections by key, opened on first use, shared by every caller of the key, closed
/// on eviction, expiry, loss or drop. See the [module docs](self) for the semantics and
/// an example.
///
/// Cheap to clone: clones share the cache. Dropping the last clone closes every cached
/// connection (each within [`close_timeout`](CacheBuilder::close_timeout)) and stops the
/// sweep.
pub struct ConnectionCache<K, C: Connection> {
    inner: Arc<Inner<K, C>>,
}

impl<K, C: Connection> Clone for ConnectionCache<K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, C: Connection> fmt::Debug for ConnectionCache<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCache")
            .field("connections", &self.inner.held.load(Relaxed))
            .field("connecting", &self.inner.connecting.load(Relaxed))
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// Keeps a hot atomic on a cache line of its own, so hits on one shard or entry do not
/// slow down readers of its neighbours.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// One sixteenth of the keys. A `ShardedLock`: each reader thread takes a read lock of
/// its own (8 per shard, each on its own cache line) and a writer takes all of them, so
/// hits from different threads write to no common cache line, while misses, which
/// connect anyway, pay for the writes.
struct Shard<K, C: Connection>(ShardedLock<HashMap<K, Slot<C>>>);

impl<K, C: Connection> Default for Shard<K, C> {
    fn default() -> Self {
        Self(ShardedLock::new(HashMap::new()))
    }
}

impl<K, C: Connection> Shard<K, C> {
    // Poisoning is ignored: no code that holds these locks can leave the map
    // half-updated (a panic in a key's `Hash` or `Eq` leaves it as it was).
    #[inline]
    fn read(&self) -> ShardedLockReadGuard<'_, HashMap<K, Slot<C>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> ShardedLockWriteGuard<'_, HashMap<K, Slot<C>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

enum Slot<C: Connection> {
    Connecting(Arc<Attempt<C>>),
    Ready(Arc<Entry<C>>),
}

/// A running connect attempt; its waiters hold receivers of `result`. The channel closes
/// without a result only when the attempt was abandoned (its connector panicked while
/// being called, or the runtime shut down): waiters then try again.
struct Attempt<C: Connection> {
    id: u64,
    result: watch::Sender<Option<Result<C::Io, Error>>>,
}

struct Entry<C: Connection> {
    hot: Padded<Hot>,
    io: C::Io,
    id: ConnectionId,
    created: Instant,
    created_ms: u64,
    metrics: Arc<ConnectionMetrics>,
    /// Dropped with the entry: tells the task that owns the connection to close it.
    _close: oneshot::Sender<()>,
}

/// What hits read, and write only when it changed (about once per sweep interval): a
/// counter bumped on every hit would put one cache line in every hitting thread's way,
/// which is why there is no per-key use count.
#[derive(Default)]
struct Hot {
    /// Coarse clock (ms since the cache's base) of the last get.
    last_used_ms: AtomicU64,
    /// LRU stamp: inserted at an even stamp, touched at the current stamp + 1.
    lru: AtomicU64,
    /// The owning task saw the connection end; set before it removes the entry.
    dead: AtomicBool,
}

#[derive(Default)]
struct Counters {
    misses: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    /// Hits, one counter per thread stripe (see `stripe`), summed when read.
    hits: [Padded<AtomicU64>; STRIPES],
    evicted: [AtomicU64; 5],
}

struct Inner<K, C: Connection> {
    shards: [Shard<K, C>; SHARDS],
    /// Seeds the shard hash, so which keys share a shard differs between caches.
    shard_seed: u64,
    /// Coarse milliseconds since `base`, advanced by the sweep and by slow paths.
    clock: Padded<AtomicU64>,
    /// The LRU stamp: +2 at every insert and every sweep.
    stamp: Padded<AtomicU64>,
    base: Instant,
    make: Arc<Maker<K, C>>,
    capacity: usize,
    ttl_ms: Option<u64>,
    idle_ms: Option<u64>,
    connect_timeout: Duration,
    close_timeout: Duration,
    sweep_interval: Duration,
    events: broadcast::Sender<CacheEvent<K>>,
    held: AtomicUsize,
    connecting: AtomicUsize,
    next_attempt: AtomicU64,
    counters: Counters,
    /// Serializes capacity enforcement, so two inserts do not both evict for one excess.
    evicting: Mutex<()>,
    /// Taken by whoever starts the sweep task (the first connect).
    sweeper: Mutex<Option<oneshot::Receiver<()>>>,
    /// Dropped with the cache: stops the sweep task at once.
    _stop_sweep: oneshot::Sender<()>,
}

/// FxHash's mixing step (rustc's hasher): a multiply and a rotate per word.
struct ShardHasher(u64);

impl Hasher for ShardHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the top bits best mixed; one more round spreads the last
        // word into them.
        self.0
            .rotate_left(26)
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn reason_index(reason: EvictReason) -> usize {
    match reason {
        EvictReason::Capacity => 0,
        EvictReason::Ttl => 1,
        EvictReason::Idle => 2,
        EvictReason::Closed => 3,
        EvictReason::Removed => 4,
    }
}

/// Where a get waits for a running attempt's result.
type Waiter<C> = watch::Receiver<Option<Result<<C as Connection>::Io, Error>>>;

enum Lookup<C: Connection> {
    Hit(C::Io),
    Wait(Waiter<C>),
    Lead(Arc<Attempt<C>>),
}

impl<K, C> ConnectionCache<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    /// Starts a cache whose connections for a key come from the transport `make`
    /// returns for it (called once per connect attempt; an error from it fails that
    /// attempt like a failed connect). Wrap the transport in retries
    /// (`connection_retry::Retry`) if attempts should be retried.
    ///
    /// ```
    /// use connection_testkit::TcpEchoTransport;
    /// use connection_transport_tcp::ConnectionCache;
    /// use std::collections::HashMap;
    /// use std::net::SocketAddr;
    ///
    /// // Keyed by peer id; the address book says where each peer is.
    /// let book: HashMap<u64, SocketAddr> = HashMap::new();
    /// let cache = ConnectionCache::builder(move |peer: &u64| {
    ///     let addr = book.get(peer).copied().ok_or_else(|| {
    ///         connection_core::Error::Config(connection_core::ConfigError::new("peer", "unknown peer"))
    ///     })?;
    ///     Ok(TcpEchoTransport::new(addr)?)
    /// })
    /// .build()?;
    /// # let _ = cache;
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn builder<F, T>(make: F) -> CacheBuilder<K, C>
    where
        F: Fn(&K) -> Result<T, Error> + Send + Sync + 'static,
        T: Transport<Connection = C>,
    {
        let make: Arc<Maker<K, C>> = Arc::new(move |key: &K, limit: Option<Duration>| {
            let transport = make(key)?;
            let endpoint = transport.endpoint().clone();
            let attempt: Pin<Box<dyn Future<Output = Result<C, Error>> + Send>> =
                Box::pin(async move { connect_within(&transport, limit).await });
            Ok((endpoint, attempt))
        });
        CacheBuilder {
            make,
            capacity: 256,
            ttl: Some(Duration::from_secs(30 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            sweep_interval: None,
            event_capacity: 64,
        }
    }

    /// The I/O handle of the connection cached for `key`, connecting first if there is
    /// none (or it expired, or died).
    ///
    /// Concurrent gets for one key share one connect attempt; if it fails, each of them
    /// gets its error and nothing is cached. Dropping this future does not cancel the
    /// attempt others wait for.
    pub async fn get(&self, key: &K) -> Result<C::Io, Error> {
        if let Some(io) = self.get_cached(key) {
            return Ok(io);
        }
        // Boxed so this future stays small: a hit would otherwise move the slow path's
        // whole state machine around (a memmove per hit, measured).
        Box::pin(self.get_slow(key)).await
    }

    /// The I/O handle of the connection cached for `key`, if there is a usable one; never
    /// connects. A hit counts like one of [`get`](Self::get).
    #[inline]
    pub fn get_cached(&self, key: &K) -> Option<C::Io> {
        let inner = &*self.inner;
        let map = inner.shard(key).read();
        match map.get(key) {
            Some(Slot::Ready(entry)) if inner.usable(entry).is_none() => {
                inner.touch(entry);
                Some(entry.io.clone())
            }
            _ => None,
        }
    }

    async fn get_slow(&self, key: &K) -> Result<C::Io, Error> {
        let mut missed = false;
        loop {
            let lookup = self.inner.lookup_or_claim(key);
            if !missed && !matches!(lookup, Lookup::Hit(_)) {
                missed = true;
                self.inner.counters.misses.fetch_add(1, Relaxed);
            }
            let mut rx = match lookup {
                Lookup::Hit(io) => return Ok(io),
                Lookup::Wait(rx) => rx,
                Lookup::Lead(attempt) => match self.lead(key, attempt) {
                    Ok(rx) => rx,
                    Err(error) => return Err(error),
                },
            };
            // An error means the attempt was abandoned without a result: try again.
            if let Ok(result) = rx.wait_for(Option::is_some).await
                && let Some(result) = &*result
            {
                return result.clone();
            }
        }
    }

    /// Calls the connector for a claimed key and starts the attempt's task.
    fn lead(&self, key: &K, attempt: Arc<Attempt<C>>) -> Result<Waiter<C>, Error> {
        let inner = &self.inner;
        // Until the task takes it over, the claim is released if the connector panics.
        let claim = Claim {
            inner: Arc::downgrade(inner),
            key: key.clone(),
            attempt: attempt.id,
        };
        inner.counters.connects.fetch_add(1, Relaxed);
        inner.start_sweeper();
        let (endpoint, connecting) = match (inner.make)(key, Some(inner.connect_timeout)) {
            Ok(made) => made,
            Err(error) => {
                inner.finish_failed(key, &attempt, error.clone());
                claim.disarm();
                return Err(error);
            }
        };
        let rx = attempt.result.subscribe();
        tokio::spawn(drive(
            Arc::downgrade(inner),
            key.clone(),
            attempt,
            endpoint,
            connecting,
            claim,
            inner.close_timeout,
        ));
        Ok(rx)
    }

    /// Opens connections for `keys`, at most `max_concurrent` at a time (0 counts as
    /// 1), and returns each key with its outcome, in input order: for warming the cache
    /// before traffic. Keys already cached count as successes without a connect.
    pub async fn connect_all(
        &self,
        keys: impl IntoIterator<Item = K>,
        max_concurrent: usize,
    ) -> Vec<(K, Result<(), Error>)> {
        let mut outcomes: Vec<(usize, K, Result<(), Error>)> =
            stream::iter(keys.into_iter().enumerate())
                .map(|(i, key)| async move {
                    let result = self.get(&key).await.map(drop);
                    (i, key, result)
                })
                .buffer_unordered(max_concurrent.max(1))
                .collect()
                .await;
        outcomes.sort_unstable_by_key(|o| o.0);
        outcomes.into_iter().map(|(_, k, r)| (k, r)).collect()
    }

    /// What the cache holds for `key`: `None` when nothing.
    pub fn status(&self, key: &K) -> Option<KeyStatus> {
        let inner = &*self.inner;
        let map = inner.shard(key).read();
        match map.get(key)? {
            Slot::Connecting(_) => Some(KeyStatus::Connecting),
            Slot::Ready(entry) => {
                let now = inner.now_ms();
                let last = entry.hot.0.last_used_ms.load(Relaxed);
                Some(KeyStatus::Connected {
                    id: entry.id,
                    age: entry.created.elapsed(),
                    idle: Duration::from_millis(now.saturating_sub(last)),
                })
            }
        }
    }

    /// Removes the connection cached for `key` and closes it; `true` if there was one.
    /// A connect attempt in progress for `key` is left alone.
    pub fn remove(&self, key: &K) -> bool {
        self.inner.remove_where(key, |_| true, EvictReason::Removed)
    }

    /// Removes and closes every cached connection.
    pub fn clear(&self) {
        for shard in &self.inner.shards {
            let removed: Vec<(K, Arc<Entry<C>>)> = {
                let mut map = shard.write();
                let keys: Vec<K> = map
                    .iter()
                    .filter(|(_, s)| matches!(s, Slot::Ready(_)))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.into_iter()
                    .filter_map(|k| match map.remove(&k) {
                        Some(Slot::Ready(e)) => Some((k, e)),
                        _ => None,
                    })
                    .collect()
            };
            for (key, entry) in removed {
                self.inner.retire(key, &entry, EvictReason::Removed);
            }
        }
    }

    /// How many connections are cached.
    pub fn len(&self) -> usize {
        self.inner.held.load(Relaxed)
    }

    /// Whether no connection is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Events from now on. A subscriber that falls more than
    /// [`event_capacity`](CacheBuilder::event_capacity) events behind gets
    /// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) and continues with the
    /// newest.
    pub fn subscribe(&self) -> broadcast::Receiver<CacheEvent<K>> {
        self.inner.events.subscribe()
    }

    /// The cache's counters and the held connections' traffic, now.
    pub fn metrics(&self) -> CacheMetrics {
        let inner = &*self.inner;
        let c = &inner.counters;
        let mut snapshot = CacheMetrics {
            connections: inner.held.load(Relaxed),
            connecting: inner.connecting.load(Relaxed),
            capacity: inner.capacity,
            misses: c.misses.load(Relaxed),
            connects: c.connects.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            evictions: Evictions {
                capacity: c.evicted[0].load(Relaxed),
                ttl: c.evicted[1].load(Relaxed),
                idle: c.evicted[2].load(Relaxed),
                closed: c.evicted[3].load(Relaxed),
                removed: c.evicted[4].load(Relaxed),
            },
            ..CacheMetrics::default()
        };
        let hits = c.hits.iter().map(|h| h.0.load(Relaxed)).sum();
        let (mut requests, mut latency_nanos) = (0u64, 0f64);
        for shard in &inner.shards {
            // Collected first: snapshots call the transports' buffer probes, which must
            // not run under a shard lock.
            let entries: Vec<Arc<Entry<C>>> = shard
                .read()
                .values()
                .filter_map(|s| match s {
                    Slot::Ready(e) => Some(e.clone()),
                    Slot::Connecting(_) => None,
                })
                .collect();
            for entry in entries {
                let m = entry.metrics.snapshot_counters();
                let rates = m.window.rates();
                snapshot.messages_per_second += rates.messages_per_second();
                snapshot.bytes_per_second += rates.bytes_per_second();
                snapshot.buffered_bytes += m.buffered_bytes.unwrap_or(0);
                if let Some(latency) = entry.metrics.recorded_request_latency() {
                    let l = latency.snapshot();
                    requests += l.count;
                    latency_nanos += l.mean.as_nanos() as f64 * l.count as f64;
                }
            }
        }
        snapshot.hits = hits;
        if requests > 0 {
            snapshot.mean_latency = Some(Duration::from_nanos(
                (latency_nanos / requests as f64) as u64,
            ));
        }
        snapshot
    }
}

impl<K, C> Inner<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    #[inline]
    fn shard(&self, key: &K) -> &Shard<K, C> {
        // A cheap hash picks the shard; the map inside keeps SipHash with a random seed,
        // which is what resists keys chosen to collide. A poor spread here costs only
        // contention, never correctness.
        let mut h = ShardHasher(self.shard_seed);
        key.hash(&mut h);
        &self.shards[(h.finish() >> 60) as usize % SHARDS]
    }

    /// Why `entry` may no longer be handed out, if it may not.
    #[inline]
    fn usable(&self, entry: &Entry<C>) -> Option<EvictReason> {
        let hot = &entry.hot.0;
        if hot.dead.load(Relaxed) {
            return Some(EvictReason::Closed);
        }
        let now = self.clock.0.load(Relaxed);
        if let Some(ttl) = self.ttl_ms
            && now.saturating_sub(entry.created_ms) >= ttl
        {
            return Some(EvictReason::Ttl);
        }
        if let Some(idle) = self.idle_ms
            && now.saturating_sub(hot.last_used_ms.load(Relaxed)) >= idle
        {
            return Some(EvictReason::Idle);
        }
        None
    }

    /// Records a use. Stores only what changed, so hits on a hot entry mostly read.
    #[inline]
    fn touch(&self, entry: &Entry<C>) {
        let hot = &entry.hot.0;
        let now = self.clock.0.load(Relaxed);
        if hot.last_used_ms.load(Relaxed) != now {
            hot.last_used_ms.store(now, Relaxed);
        }
        let stamp = self.stamp.0.load(Relaxed) + 1;
        if hot.lru.load(Relaxed) != stamp {
            hot.lru.store(stamp, Relaxed);
        }
        self.counters.hits[stripe()].0.fetch_add(1, Relaxed);
    }

    /// Reads the real clock and advances the coarse one to it.
    fn now_ms(&self) -> u64 {
        let now = millis(self.base.elapsed());
        self.clock.0.fetch_max(now, Relaxed);
        now
    }

    fn lookup_or_claim(&self, key: &K) -> Lookup<C> {
        self.now_ms();
        let stale = {
            let mut map = self.shard(key).write();
            let stale = match map.get(key) {
                Some(Slot::Ready(entry)) => match self.usable(entry) {
                    None => {
                        self.touch(entry);
                        return Lookup::Hit(entry.io.clone());
                    }
                    Some(reason) => match map.remove(key) {
                        Some(Slot::Ready(entry)) => Some((entry, reason)),
                        _ => None,
                    },
                },
                Some(Slot::Connecting(attempt)) => {
                    return Lookup::Wait(attempt.result.subscribe());
                }
                None => None,
            };
            let attempt = Arc::new(Attempt {
                id: self.next_attempt.fetch_add(1, Relaxed),
                result: watch::channel(None).0,
            });
            map.insert(key.clone(), Slot::Connecting(attempt.clone()));
            self.connecting.fetch_add(1, Relaxed);
            (stale, attempt)
        };
        let (stale, attempt) = stale;
        if let Some((entry, reason)) = stale {
            self.retire(key.clone(), &entry, reason);
        }
        Lookup::Lead(attempt)
    }

    /// Removes the claim of `attempt` on `key` if it is still there.
    fn release_claim(&self, key: &K, attempt: u64) -> bool {
        let mut map = self.shard(key).write();
        if matches!(map.get(key), Some(Slot::Connecting(a)) if a.id == attempt) {
            map.remove(key);
            self.connecting.fetch_sub(1, Relaxed);
            true
        } else {
            false
        }
    }

    fn finish_failed(&self, key: &K, attempt: &Attempt<C>, error: Error) {
        self.counters.connect_failures.fetch_add(1, Relaxed);
        self.release_claim(key, attempt.id);
        attempt.result.send_replace(Some(Err(error.clone())));
        let _ = self.events.send(CacheEvent::ConnectFailed {
            key: key.clone(),
            error,
        });
    }

    /// Replaces the claim of `attempt` with `entry`; false if the claim is gone.
    fn install(&self, key: &K, attempt: u64, entry: Arc<Entry<C>>) -> bool {
        {
            let mut map = self.shard(key).write();
            match map.get_mut(key) {
                Some(slot) if matches!(&*slot, Slot::Connecting(a) if a.id == attempt) => {
                    *slot = Slot::Ready(entry.clone());
                    self.connecting.fetch_sub(1, Relaxed);
                    self.held.fetch_add(1, Relaxed);
                }
                _ => return false,
            }
        }
        let _ = self.events.send(CacheEvent::Inserted {
            key: key.clone(),
            id: entry.id,
        });
        self.enforce_capacity();
        true
    }

    /// Evicts least-recently-used entries until the cache is within capacity.
    fn enforce_capacity(&self) {
        let _one_at_a_time = self.evicting.lock();
        while self.held.load(Relaxed) > self.capacity {
            let mut victim: Option<(u64, K, ConnectionId)> = None;
            for shard in &self.shards {
                for (key, slot) in shard.read().iter() {
                    if let Slot::Ready(e) = slot {
                        let lru = e.hot.0.lru.load(Relaxed);
                        if victim.as_ref().is_none_or(|v| lru < v.0) {
                            victim = Some((lru, key.clone(), e.id));
                        }
                    }
                }
            }
            let Some((_, key, id)) = victim else { return };
            self.remove_where(&key, |e| e.id == id, EvictReason::Capacity);
        }
    }

    /// Removes the entry of `key` if `which` accepts it.
    fn remove_where(
        &self,
        key: &K,
        which: impl FnOnce(&Entry<C>) -> bool,
        reason: EvictReason,
    ) -> bool {
        let removed = {
            let mut map = self.shard(key).write();
            match map.get(key) {
                Some(Slot::Ready(e)) if which(e) => match map.remove(key) {
                    Some(Slot::Ready(e)) => e,
                    _ => return false,
                },
                _ => return false,
            }
        };
        self.retire(key.clone(), &removed, reason);
        true
    }

    /// Accounts for an entry that left the map. Its connection closes when the last
    /// reference to it goes (the caller's, right after).
    fn retire(&self, key: K, entry: &Entry<C>, reason: EvictReason) {
        self.held.fetch_sub(1, Relaxed);
        self.counters.evicted[reason_index(reason)].fetch_add(1, Relaxed);
        entry.metrics.mark_disconnected();
        tracing::debug!(id = %entry.id, %reason, "connection cache: evicted");
        let _ = self.events.send(CacheEvent::Evicted {
            key,
            id: entry.id,
            reason,
        });
    }

    /// Expires what is due and advances the clocks.
    fn sweep(&self) {
        self.now_ms();
        self.stamp.0.fetch_add(2, Relaxed);
        for shard in &self.shards {
            let expired: Vec<(K, ConnectionId, EvictReason)> = shard
                .read()
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Ready(e) => self.usable(e).map(|r| (k.clone(), e.id, r)),
                    Slot::Connecting(_) => None,
                })
                .collect();
            for (key, id, reason) in expired {
                self.remove_where(&key, |e| e.id == id, reason);
            }
        }
    }

    fn start_sweeper(self: &Arc<Self>) {
        let Some(mut stop) = self.sweeper.lock().take() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let every = self.sweep_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stop => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                inner.sweep();
            }
        });
    }
}

/// A claim on a key that the attempt's task has not taken over yet (or that it holds
/// while connecting): released if dropped armed, so waiters try again instead of
/// waiting forever.
struct Claim<K, C: Connection>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    inner: Weak<Inner<K, C>>,
    key: K,
    attempt: u64,
}

impl<K, C> Claim<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl<K, C> Drop for Claim<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.release_claim(&self.key, self.attempt);
        }
    }
}

/// The task of one connection: connects, caches it, then owns it until it is lost
/// (removes it) or evicted (closes it).
async fn drive<K, C>(
    cache: Weak<Inner<K, C>>,
    key: K,
    attempt: Arc<Attempt<C>>,
    endpoint: Endpoint,
    connecting: Pin<Box<dyn Future<Output = Result<C, Error>> + Send>>,
    claim: Claim<K, C>,
    close_timeout: Duration,
) where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Connection,
{
    let result = match AssertUnwindSafe(connecting).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(Error::other(
            &endpoint,
            TaskEnded::panicked("connection cache connect", &*panic),
            false,
        )),
    };
    let Some(inner) = cache.upgrade() else {
        // The cache is gone; nobody can want this connection.
        if let Ok(mut conn) = result {
            let _ = tokio::time::timeout(close_timeout, conn.close()).await;
        }
        return;
    };
    let mut conn = match result {
        Ok(conn) => conn,
        Err(error) => {
            inner.finish_failed(&key, &attempt, error);
            claim.disarm();
            return;
        }
    };
    let metrics = Arc::new(ConnectionMetrics::new());
    conn.bind_traffic(Traffic::new(metrics.clone()));
    metrics.mark_connected();
    let (close_tx, mut close_rx) = oneshot::channel();
    let now = inner.now_ms();
    let entry: Arc<Entry<C>> = Arc::new(Entry {
        hot: Padded(Hot {
            last_used_ms: AtomicU64::new(now),
            lru: AtomicU64::new(inner.stamp.0.fetch_add(2, Relaxed) + 2),
            dead: AtomicBool::new(false),
        }),
        io: conn.io(),
        id: conn.id(),
        created: Instant::now(),
        created_ms: now,
        metrics,
        _close: close_tx,
    });
    let io: C::Io = entry.io.clone();
    let id = entry.id;
    let weak_entry = Arc::downgrade(&entry);
    let installed = inner.install(&key, attempt.id, entry);
    claim.disarm();
    if installed {
        attempt.result.send_replace(Some(Ok(io)));
    } else {
        // Removed or cleared while connecting: the waiters asked before that, but the
        // connection is not cached, so it is closed and they are told.
        attempt.result.send_replace(Some(Err(Error::Unavailable {
            endpoint: endpoint.clone(),
            state: ConnectionState::Closed,
            cause: None,
        })));
        drop(inner);
        let _ = tokio::time::timeout(close_timeout, conn.close()).await;
        return;
    }
    // The attempt's waiters have their result; later gets find the entry.
    drop(attempt);
    // Only weak references from here: the entry and the cache live in the map.
    drop(inner);
    tokio::select! {
        _ = conn.closed() => {
            if let Some(entry) = weak_entry.upgrade() {
                entry.hot.0.dead.store(true, Relaxed);
                drop(entry);
                if let Some(inner) = cache.upgrade() {
                    inner.remove_where(&key, |e| e.id == id, EvictReason::Closed);
                }
            }
        }
        // The entry was dropped: evicted, removed, or the cache is gone.
        _ = &mut close_rx => {}
    }
    let _ = tokio::time::timeout(close_timeout, conn.close()).await;
}
