//! What outlives connections: the event source's last event ID, the server's
//! reconnection time, the channel events wait in, the SSE counters; and [`SseEvents`],
//! the I/O handle the application reads them through.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use connection_core::Endpoint;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::backoff::ServerRetry;
use crate::event::SseItem;
use crate::inbox::Inbox;

/// The state of one logical event source, shared by its transport, connections and
/// handles.
pub(crate) struct Source {
    pub(crate) endpoint: Endpoint,
    last_event_id: Mutex<Arc<str>>,
    pub(crate) retry: ServerRetry,
    pub(crate) inbox: Inbox,
    pub(crate) stats: Stats,
    /// When the last stream was lost, until the next one opens (for the gap).
    lost_at: Mutex<Option<Instant>>,
}

impl Source {
    pub(crate) fn new(
        endpoint: Endpoint,
        last_event_id: Option<Arc<str>>,
        capacity: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            last_event_id: Mutex::new(last_event_id.unwrap_or_else(|| Arc::from(""))),
            retry: ServerRetry::default(),
            inbox: Inbox::new(capacity),
            stats: Stats::default(),
            lost_at: Mutex::new(None),
        })
    }

    pub(crate) fn last_event_id(&self) -> Arc<str> {
        self.last_event_id.lock().clone()
    }

    pub(crate) fn set_last_event_id(&self, id: &Arc<str>) {
        let mut current = self.last_event_id.lock();
        if !Arc::ptr_eq(&current, id) {
            *current = id.clone();
        }
    }

    /// A stream opened: the gap since the last one closed is over.
    pub(crate) fn opened(&self) {
        self.inbox.set_ended(false);
        if let Some(lost) = self.lost_at.lock().take() {
            self.stats.record_gap(lost.elapsed());
        }
    }

    /// A stream ended (read to its end, failed, or dropped on close).
    pub(crate) fn lost(&self) {
        self.lost_at.lock().get_or_insert_with(Instant::now);
    }

    pub(crate) fn no_content(&self) {
        self.inbox.set_ended(true);
    }
}

/// Counters of what the streams carried, beyond the supervisor's.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) events: AtomicU64,
    pub(crate) comments: AtomicU64,
    pub(crate) bytes: AtomicU64,
    gaps: AtomicU64,
    gap_total_ns: AtomicU64,
    gap_last_ns: AtomicU64,
    gap_max_ns: AtomicU64,
}

impl Stats {
    fn record_gap(&self, gap: Duration) {
        let ns = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX);
        self.gaps.fetch_add(1, Relaxed);
        self.gap_total_ns.fetch_add(ns, Relaxed);
        self.gap_last_ns.store(ns, Relaxed);
        self.gap_max_ns.fetch_max(ns, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StreamStats {
        StreamStats {
            events: self.events.load(Relaxed),
            comments: self.comments.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            gap_total: Duration::from_nanos(self.gap_total_ns.load(Relaxed)),
            gap_last: Duration::from_nanos(self.gap_last_ns.load(Relaxed)),
            gap_max: Duration::from_nanos(self.gap_max_ns.load(Relaxed)),
        }
    }
}

/// What the streams of one source carried, and the gaps between them.
///
/// Reconnects, time connected and errors are the supervisor's
/// ([`MetricsSnapshot`](connection_core::MetricsSnapshot)); these are the SSE ones.
/// Durations serialize as seconds (`gap_total_seconds`...), like core's snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamStats {
    /// Events dispatched.
    pub events: u64,
    /// Comments received.
    pub comments: u64,
    /// Bytes of stream bodies received.
    pub bytes: u64,
    /// Reconnects that ended a gap (a stream lost, then another opened).
    pub gaps: u64,
    /// Time without a stream, over all gaps: from a stream's loss to the next
    /// stream's response.
    #[serde(rename = "gap_total_seconds", serialize_with = "secs")]
    pub gap_total: Duration,
    /// The last gap.
    #[serde(rename = "gap_last_seconds", serialize_with = "secs")]
    pub gap_last: Duration,
    /// The longest gap.
    #[serde(rename = "gap_max_seconds", serialize_with = "secs")]
    pub gap_max: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The I/O handle of an SSE connection: where its items wait for the application.
///
/// Cheap to clone; every clone reads the same queue, and each item goes to exactly one
/// reader (take them from one task to keep their order). The queue outlives
/// connections: items of the next connection arrive in the same queue after a
/// reconnect, so a reader holds on to one `SseEvents` across reconnects. It is what a
/// [`Link`](connection_core::Link) to an SSE connection hands out (through a manager or
/// a failover group); [`SseClient`](crate::SseClient) is a `Stream` over the same queue.
///
/// ```no_run
/// use connection_transport_sse::{SseItem, SseTransport, SseConfig};
/// use connection_core::Supervisor;
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = SseTransport::new(SseConfig::builder("http://127.0.0.1:8080/events").build()?)?;
/// let backoff = transport.backoff();
/// let conn = Supervisor::new(transport).backoff(backoff).spawn()?;
/// let events = conn.ready(Duration::from_secs(5)).await?;
/// while let Some(item) = events.recv().await {
///     if let SseItem::Event(e) = item {
///         println!("{} {}", e.event_type(), e.data());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SseEvents {
    source: Arc<Source>,
}

impl fmt::Debug for SseEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEvents")
            .field("endpoint", &self.source.endpoint)
            .field("buffered", &self.queued())
            .finish()
    }
}

impl SseEvents {
    pub(crate) fn new(source: Arc<Source>) -> Self {
        Self { source }
    }

    /// The next item. `None` once nothing more can come: the transport is gone, or the
    /// server ended the stream with 204 No Content and every item before it was taken.
    /// While the connection is being re-established it waits.
    pub async fn recv(&self) -> Option<SseItem> {
        self.source.inbox.recv().await
    }

    /// The next item if one is waiting.
    pub fn try_recv(&self) -> Option<SseItem> {
        self.source.inbox.pop()
    }

    /// Items waiting.
    pub fn queued(&self) -> usize {
        self.source.inbox.len()
    }

    /// The last event ID: what the next reconnect sends as `Last-Event-ID` (empty: no
    /// header). It moves past an event once the event is in the queue.
    pub fn last_event_id(&self) -> Arc<str> {
        self.source.last_event_id()
    }

    /// The reconnection time the server asked for with its last `retry` field.
    pub fn server_retry(&self) -> Option<Duration> {
        self.source.retry.get()
    }

    /// What the streams carried so far.
    pub fn stats(&self) -> StreamStats {
        self.source.stats.snapshot()
    }

    /// Whether the server ended the stream with 204 No Content.
    pub fn is_ended_by_server(&self) -> bool {
        self.source.inbox.is_ended()
    }

    pub(crate) fn source(&self) -> &Arc<Source> {
        &self.source
    }
}
