//! Lock-free connection metrics and their export.
//!
//! - [`ConnectionMetrics`] holds one connection's counters, two [`LatencyRecorder`]s
//!   (probe round trips, and the latency of requests made on the connection: separate,
//!   because a quick ping says nothing of how slow real requests are), a sliding window
//!   of the last 10 seconds for rates, and its uptime. Recording never locks and never
//!   allocates after a connection's first traffic, so it is safe on any hot path and from
//!   any thread; [`ConnectionMetrics::snapshot`] reads everything into a plain
//!   [`MetricsSnapshot`].
//! - Rates (messages and bytes per second each way, requests per second, the share of
//!   requests that failed) come from the window ([`WindowSnapshot::rates`]); lifetime
//!   totals stay plain counters, from which Prometheus computes rates of its own.
//! - Memory: a transport reports the bytes held in a connection's own buffers and queues
//!   ([`ConnectionMetrics::report_buffers`]); the snapshot's `buffered_bytes` asks it.
//! - [`write_prometheus`] streams many connections as Prometheus text exposition format
//!   0.0.4, labelled `connection="<name>"`, into any [`std::io::Write`]; [`write_json`]
//!   streams them as JSON. Both read snapshots, or live metrics
//!   ([`write_prometheus_live`], [`write_json_live`]) without collecting them first;
//!   [`to_prometheus`] and [`to_json`] return a `String`.
//!
//! Every duration in a serialized snapshot is a floating-point number of seconds in a
//! field whose name ends in `_seconds` (`uptime_seconds`, `latency.p99_seconds`, ...).

mod export;
mod latency;
mod window;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use export::{
    to_json, to_prometheus, write_json, write_json_live, write_prometheus, write_prometheus_live,
};
pub use latency::{LatencyRecorder, LatencySnapshot};
pub use window::{Rates, WindowSnapshot};

use window::{Counter, RateWindow};

/// What a transport registers with [`ConnectionMetrics::report_buffers`].
type BufferProbe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// `connected_at` while disconnected.
const NOT_CONNECTED: u64 = u64::MAX;

/// One connection's traffic counters, latency histograms, rate window and uptime.
///
/// All methods take `&self` and use relaxed atomics: share it behind an `Arc` and record
/// from any task or thread without locking. Counters wrap on overflow (after 2^64).
///
/// Traffic (messages, bytes, requests, failed requests) is also counted into a window of
/// the last 10 seconds, from which a snapshot's [`window`](MetricsSnapshot::window)
/// gives rates. That costs a clock read per recording call, so record a batch with one
/// call ([`record_sent`](Self::record_sent)) rather than one per field.
///
/// Uptime and the window follow [`tokio::time::Instant`], so under a paused tokio clock
/// they move only with virtual time.
///
/// ```
/// use connection_core::metrics::ConnectionMetrics;
/// use std::time::Duration;
///
/// let metrics = ConnectionMetrics::new();
/// metrics.mark_connected();
/// metrics.record_sent(1, 512);
/// metrics.record_request(Duration::from_millis(3));
/// metrics.record_failed_request();
/// metrics.record_probe_rtt(Duration::from_micros(200));
///
/// let snap = metrics.snapshot();
/// assert!(snap.connected);
/// assert_eq!((snap.bytes_out, snap.messages_out, snap.requests), (512, 1, 2));
/// assert_eq!(snap.error_rate(), Some(0.5));
/// assert_eq!(snap.window.messages_out, 1);
/// assert_eq!(snap.window.rates().bytes_out_per_second, 512.0); // over at least 1 s
/// assert_eq!(snap.request_latency.count, 1);
/// assert_eq!(snap.request_latency.max, Duration::from_millis(3));
/// assert_eq!(snap.probe_rtt.count, 1);
///
/// metrics.mark_disconnected();
/// assert_eq!(metrics.snapshot().uptime, Duration::ZERO);
/// ```
pub struct ConnectionMetrics {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// The last seconds of traffic, for rates; allocated on the first recording (480
    /// bytes), like the histograms below, so idle connections do not pay for it.
    window: OnceLock<Box<RateWindow>>,
    /// Reports the bytes the connection holds in its buffers and queues; asked at
    /// snapshot time only, so recording never touches it. A lock, not an atomic: it is
    /// replaced once per connection at most, and read by snapshots.
    buffers: Mutex<Option<BufferProbe>>,
    /// Probe round trips. Allocated on the first recording: 3.7 KiB is most of what a
    /// connection's metrics weigh, and many connections (idle ones, ones nobody probes)
    /// never record one. A manager of 10,000 connections saves 37 MB, and its totals
    /// skip them.
    probe_rtt: OnceLock<Box<LatencyRecorder>>,
    /// Latency of requests made on the connection; allocated lazily for the same reason.
    request_latency: OnceLock<Box<LatencyRecorder>>,
    /// Origin of the two clocks below; an `Instant` itself cannot be stored atomically.
    base: Instant,
    /// Nanoseconds from `base` to the last `mark_connected`, or `NOT_CONNECTED`.
    connected_at: AtomicU64,
    /// Nanoseconds connected in sessions that have ended.
    connected_before: AtomicU64,
}

impl ConnectionMetrics {
    /// Zeroed counters, disconnected.
    pub fn new() -> Self {
        Self {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            window: OnceLock::new(),
            buffers: Mutex::new(None),
            probe_rtt: OnceLock::new(),
            request_latency: OnceLock::new(),
            base: Instant::now(),
            connected_at: AtomicU64::new(NOT_CONNECTED),
            connected_before: AtomicU64::new(0),
        }
    }

    /// Counts `n` bytes received.
    #[inline]
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
        self.count_in_window(Counter::BytesIn, n);
    }

    /// Counts `n` bytes sent.
    #[inline]
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Relaxed);
        self.count_in_window(Counter::BytesOut, n);
    }

    /// Counts `n` messages received.
    #[inline]
    pub fn add_messages_in(&self, n: u64) {
        self.messages_in.fetch_add(n, Relaxed);
        self.count_in_window(Counter::MessagesIn, n);
    }

    /// Counts `n` messages sent.
    #[inline]
    pub fn add_messages_out(&self, n: u64) {
        self.messages_out.fetch_add(n, Relaxed);
        self.count_in_window(Counter::MessagesOut, n);
    }

    /// Counts `messages` messages of `bytes` bytes in total received: the same as
    /// [`add_messages_in`](Self::add_messages_in) and
    /// [`add_bytes_in`](Self::add_bytes_in), with one clock read instead of two.
    #[inline]
    pub fn record_received(&self, messages: u64, bytes: u64) {
        self.messages_in.fetch_add(messages, Relaxed);
        self.bytes_in.fetch_add(bytes, Relaxed);
        self.count_pair(Counter::MessagesIn, messages, Counter::BytesIn, bytes);
    }

    /// Counts `messages` messages of `bytes` bytes in total sent (see
    /// [`record_received`](Self::record_received)).
    #[inline]
    pub fn record_sent(&self, messages: u64, bytes: u64) {
        self.messages_out.fetch_add(messages, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
        self.count_pair(Counter::MessagesOut, messages, Counter::BytesOut, bytes);
    }

    /// Counts one request.
    #[inline]
    pub fn inc_requests(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.count_in_window(Counter::Requests, 1);
    }

    /// Counts one request that failed: a request, a failed request and an error. Its
    /// latency is not recorded (a failure's duration, often a timeout, says nothing of
    /// how fast the connection answers).
    #[inline]
    pub fn record_failed_request(&self) {
        self.requests.fetch_add(1, Relaxed);
        self.failed_requests.fetch_add(1, Relaxed);
        self.errors.fetch_add(1, Relaxed);
        self.count_pair(Counter::Requests, 1, Counter::FailedRequests, 1);
    }

    /// Counts one error.
    #[inline]
    pub fn inc_errors(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Counts one reconnect.
    #[inline]
    pub fn inc_reconnects(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    /// Records one probe round trip into [`probe_rtt`](Self::probe_rtt).
    #[inline]
    pub fn record_probe_rtt(&self, d: Duration) {
        self.probe_rtt().record(d);
    }

    /// Counts one request made on the connection and records how long it took into
    /// [`request_latency`](Self::request_latency).
    #[inline]
    pub fn record_request(&self, d: Duration) {
        self.requests.fetch_add(1, Relaxed);
        self.count_in_window(Counter::Requests, 1);
        self.request_latency().record(d);
    }

    #[inline]
    fn count_in_window(&self, counter: Counter, n: u64) {
        if n > 0 {
            self.window().add(self.now_secs(), counter, n);
        }
    }

    #[inline]
    fn count_pair(&self, a: Counter, a_n: u64, b: Counter, b_n: u64) {
        if a_n == 0 && b_n == 0 {
            return;
        }
        let (sec, window) = (self.now_secs(), self.window());
        if a_n > 0 {
            window.add(sec, a, a_n);
        }
        if b_n > 0 {
            window.add(sec, b, b_n);
        }
    }

    #[inline]
    fn window(&self) -> &RateWindow {
        self.window.get_or_init(Box::default)
    }

    /// Whole seconds since the metrics were created: the window's clock.
    #[inline]
    fn now_secs(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.base)
            .as_secs()
    }

    /// Has `probe` report the bytes the connection holds in its own buffers and queues
    /// (messages waiting to be written, received messages waiting for the application):
    /// every snapshot calls it for [`MetricsSnapshot::buffered_bytes`]. A later call
    /// replaces the probe (a new connection of the same supervisor registers its own).
    ///
    /// The probe runs on whatever thread takes the snapshot, so it should be a few atomic
    /// loads. These metrics often outlive a connection (a supervisor keeps them across
    /// reconnects): capture its buffers by [`Weak`](std::sync::Weak) reference and
    /// report 0 once they are gone, so the metrics do not keep them alive.
    ///
    /// ```
    /// use connection_core::metrics::ConnectionMetrics;
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    ///
    /// let queue_bytes = Arc::new(AtomicU64::new(0));
    /// let metrics = ConnectionMetrics::new();
    /// assert_eq!(metrics.snapshot().buffered_bytes, None);
    ///
    /// let held = Arc::downgrade(&queue_bytes);
    /// metrics.report_buffers(move || held.upgrade().map_or(0, |b| b.load(Ordering::Relaxed)));
    /// queue_bytes.store(4096, Ordering::Relaxed);
    /// assert_eq!(metrics.snapshot().buffered_bytes, Some(4096));
    /// drop(queue_bytes);
    /// assert_eq!(metrics.snapshot().buffered_bytes, Some(0));
    /// ```
    pub fn report_buffers(&self, probe: impl Fn() -> u64 + Send + Sync + 'static) {
        *self.buffers.lock() = Some(Arc::new(probe));
    }

    /// What the probe given to [`report_buffers`](Self::report_buffers) reports now;
    /// `None` without one.
    pub fn buffered_bytes(&self) -> Option<u64> {
        // Called outside the lock, so a probe that reads these metrics cannot deadlock.
        let probe = self.buffers.lock().clone()?;
        Some(probe())
    }

    /// The window of the last seconds of traffic, as of now.
    pub fn window_snapshot(&self) -> WindowSnapshot {
        let elapsed = Instant::now().saturating_duration_since(self.base);
        RateWindow::snapshot(self.window.get().map(|w| &**w), elapsed)
    }

    /// The probe round-trip histogram, for quantiles other than those in the snapshot.
    /// Allocates it if nothing was recorded yet; see
    /// [`recorded_probe_rtt`](Self::recorded_probe_rtt) to read without allocating.
    pub fn probe_rtt(&self) -> &LatencyRecorder {
        self.probe_rtt.get_or_init(Box::default)
    }

    /// The probe round-trip histogram, or `None` if none was ever recorded (nor the
    /// histogram asked for): for totals over many connections, which skip those.
    pub fn recorded_probe_rtt(&self) -> Option<&LatencyRecorder> {
        self.probe_rtt.get().map(|b| &**b)
    }

    /// The request latency histogram; allocates it if nothing was recorded yet.
    pub fn request_latency(&self) -> &LatencyRecorder {
        self.request_latency.get_or_init(Box::default)
    }

    /// The request latency histogram, or `None` if no request was ever recorded.
    pub fn recorded_request_latency(&self) -> Option<&LatencyRecorder> {
        self.request_latency.get().map(|b| &**b)
    }

    /// Starts a connected session: uptime counts from now. Calling it while already
    /// connected ends the running session (its time goes to `total_connected`) and starts
    /// a new one.
    pub fn mark_connected(&self) {
        let now = self.now_nanos();
        let previous = self.connected_at.swap(now, Relaxed);
        self.close_session(previous, now);
    }

    /// Ends the connected session, if any: uptime drops to zero and the session's length
    /// is added to `total_connected`.
    pub fn mark_disconnected(&self) {
        let now = self.now_nanos();
        let previous = self.connected_at.swap(NOT_CONNECTED, Relaxed);
        self.close_session(previous, now);
    }

    fn close_session(&self, started: u64, now: u64) {
        if started != NOT_CONNECTED {
            self.connected_before
                .fetch_add(now.saturating_sub(started), Relaxed);
        }
    }

    fn now_nanos(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.base);
        // Saturate below the sentinel: 584 years of process life are not a concern, but
        // the sentinel must stay unambiguous.
        u64::try_from(elapsed.as_nanos()).map_or(NOT_CONNECTED - 1, |n| n.min(NOT_CONNECTED - 1))
    }

    /// Reads every counter, the latency summary and the uptime.
    ///
    /// Fields are read one by one, so with concurrent recording they may be a few events
    /// apart; `total_connected` may briefly lag right as a session ends.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            probe_rtt: self
                .recorded_probe_rtt()
                .map(LatencyRecorder::snapshot)
                .unwrap_or_default(),
            request_latency: self
                .recorded_request_latency()
                .map(LatencyRecorder::snapshot)
                .unwrap_or_default(),
            ..self.snapshot_counters()
        }
    }

    /// Like [`snapshot`](Self::snapshot) but with empty latency summaries, skipping the
    /// passes over the histograms: for totals over many connections, which merge the
    /// histograms themselves with [`LatencyRecorder::merge_from`].
    pub fn snapshot_counters(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            window: self.window_snapshot(),
            buffered_bytes: self.buffered_bytes(),
            ..self.plain_counters()
        }
    }

    /// The plain counters and the uptime: no window, no buffers, no histograms.
    fn plain_counters(&self) -> MetricsSnapshot {
        let started = self.connected_at.load(Relaxed);
        let uptime = if started == NOT_CONNECTED {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.now_nanos().saturating_sub(started))
        };
        MetricsSnapshot {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            requests: self.requests.load(Relaxed),
            failed_requests: self.failed_requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            connected: started != NOT_CONNECTED,
            uptime,
            total_connected: Duration::from_nanos(self.connected_before.load(Relaxed))
                .saturating_add(uptime),
            ..MetricsSnapshot::default()
        }
    }
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// So exports can take `&ConnectionMetrics`, `Arc<ConnectionMetrics>` or
/// `&Arc<ConnectionMetrics>` alike.
impl AsRef<ConnectionMetrics> for ConnectionMetrics {
    fn as_ref(&self) -> &ConnectionMetrics {
        self
    }
}

impl fmt::Debug for ConnectionMetrics {
    // The raw atomics (a sentinel, nanosecond offsets, 464 buckets) mean nothing to a
    // reader; the snapshot is the useful view.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionMetrics")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// A point-in-time copy of a [`ConnectionMetrics`].
///
/// Serialized with durations as floating-point seconds:
/// `{"bytes_in": 0, ..., "requests": 4, "failed_requests": 1, "errors": 1,
/// "reconnects": 0, "window": {"seconds": 9.5, ..., "messages_per_second": 20.0, ...,
/// "error_rate": 0.25}, "buffered_bytes": 512, "probe_rtt": {"count": 0,
/// "mean_seconds": 0.0, ...}, ..., "connected": true, "uptime_seconds": 12.5,
/// "total_connected_seconds": 40.25}` (`buffered_bytes` is `null` when the transport
/// reports no buffers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Requests made, failed ones included.
    pub requests: u64,
    /// Requests that failed ([`ConnectionMetrics::record_failed_request`]); they count
    /// in `requests` and `errors` too.
    #[serde(default)]
    pub failed_requests: u64,
    /// Errors seen: failed requests, other failures on traffic, lost connections.
    pub errors: u64,
    /// Reconnects made.
    pub reconnects: u64,
    /// Traffic over the last 10 seconds, for rates ([`WindowSnapshot::rates`]).
    #[serde(default)]
    pub window: WindowSnapshot,
    /// Bytes held in the connection's own buffers and queues, as its transport reports
    /// them ([`ConnectionMetrics::report_buffers`]); `None` when it reports nothing.
    /// What each transport counts is in its docs; no transport can count the kernel's
    /// socket buffers or the allocator's overhead.
    #[serde(default)]
    pub buffered_bytes: Option<u64>,
    /// Probe round trips.
    pub probe_rtt: LatencySnapshot,
    /// Latency of requests made on the connection.
    pub request_latency: LatencySnapshot,
    /// Whether the connection is up.
    pub connected: bool,
    /// Time since the connection came up; zero while disconnected.
    #[serde(rename = "uptime_seconds", with = "serde_secs")]
    pub uptime: Duration,
    /// Time connected over all sessions, the current one included.
    #[serde(rename = "total_connected_seconds", with = "serde_secs")]
    pub total_connected: Duration,
}

impl MetricsSnapshot {
    /// Failed requests over requests, over the connection's life; `None` without
    /// requests. The window's [`rates`](WindowSnapshot::rates) give the recent one.
    pub fn error_rate(&self) -> Option<f64> {
        window::ratio(self.failed_requests, self.requests)
    }
}

/// So exports can take snapshots by value or by reference alike.
impl AsRef<MetricsSnapshot> for MetricsSnapshot {
    fn as_ref(&self) -> &MetricsSnapshot {
        self
    }
}

/// Serde form of a `Duration`: a floating-point number of seconds, which is what
/// Prometheus and most dashboards expect and what JSON can carry without a custom shape.
mod serde_secs {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    #[test]
    fn latency_histograms_are_allocated_on_first_record() {
        let m = ConnectionMetrics::new();
        assert!(m.recorded_probe_rtt().is_none());
        assert_eq!(m.snapshot().probe_rtt, LatencySnapshot::default());
        assert!(
            m.recorded_probe_rtt().is_none(),
            "reading must not allocate"
        );
        assert!(m.recorded_request_latency().is_none());
        m.record_probe_rtt(Duration::from_millis(2));
        assert_eq!(m.recorded_probe_rtt().map(|l| l.snapshot().count), Some(1));
        assert_eq!(m.snapshot().probe_rtt.count, 1);
        assert!(
            m.recorded_request_latency().is_none(),
            "a probe is not a request"
        );
        m.record_request(Duration::from_millis(9));
        let s = m.snapshot();
        assert_eq!((s.requests, s.request_latency.count), (1, 1));
        assert_eq!(s.request_latency.max, Duration::from_millis(9));
        assert_eq!(s.probe_rtt.max, Duration::from_millis(2));
    }

    #[test]
    fn counters_add_up() {
        let m = ConnectionMetrics::default();
        m.add_bytes_in(10);
        m.add_bytes_in(5);
        m.add_bytes_out(7);
        m.add_messages_in(2);
        m.add_messages_out(3);
        m.inc_requests();
        m.inc_requests();
        m.inc_errors();
        m.inc_reconnects();
        m.inc_reconnects();
        m.inc_reconnects();
        m.record_probe_rtt(Duration::from_millis(4));
        let s = m.snapshot();
        assert_eq!(
            (s.bytes_in, s.bytes_out, s.messages_in, s.messages_out),
            (15, 7, 2, 3)
        );
        assert_eq!((s.requests, s.errors, s.reconnects), (2, 1, 3));
        assert_eq!(s.probe_rtt.count, 1);
        assert_eq!(m.probe_rtt().snapshot(), s.probe_rtt);
        assert!(!s.connected);
        assert_eq!(s.uptime, Duration::ZERO);
    }

    #[test]
    fn concurrent_counters_lose_nothing() {
        let m = Arc::new(ConnectionMetrics::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        m.add_bytes_in(3);
                        m.record_request(Duration::from_micros(100));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = m.snapshot();
        assert_eq!(
            (s.bytes_in, s.requests, s.request_latency.count),
            (120_000, 40_000, 40_000)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn uptime_follows_the_paused_clock() {
        let m = ConnectionMetrics::new();
        advance(Duration::from_secs(100)).await;
        assert_eq!(m.snapshot().uptime, Duration::ZERO);

        m.mark_connected();
        advance(Duration::from_secs(5)).await;
        let s = m.snapshot();
        assert!(s.connected);
        assert_eq!(s.uptime, Duration::from_secs(5));
        assert_eq!(s.total_connected, Duration::from_secs(5));

        m.mark_disconnected();
        advance(Duration::from_secs(3)).await;
        let s = m.snapshot();
        assert!(!s.connected);
        assert_eq!(s.uptime, Duration::ZERO);
        assert_eq!(s.total_connected, Duration::from_secs(5));
        // A second disconnect adds nothing.
        m.mark_disconnected();
        assert_eq!(m.snapshot().total_connected, Duration::from_secs(5));

        m.mark_connected();
        advance(Duration::from_millis(2_500)).await;
        let s = m.snapshot();
        assert_eq!(s.uptime, Duration::from_millis(2_500));
        assert_eq!(s.total_connected, Duration::from_millis(7_500));

        // Reconnecting without a disconnect restarts uptime and keeps the total.
        m.mark_connected();
        advance(Duration::from_secs(1)).await;
        let s = m.snapshot();
        assert_eq!(s.uptime, Duration::from_secs(1));
        assert_eq!(s.total_connected, Duration::from_millis(8_500));
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_serializes_durations_as_seconds() {
        let m = ConnectionMetrics::new();
        m.mark_connected();
        advance(Duration::from_millis(1_500)).await;
        m.add_bytes_in(42);
        let s = m.snapshot();
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v["bytes_in"], 42);
        assert_eq!(v["connected"], true);
        assert_eq!(v["uptime_seconds"], 1.5);
        assert_eq!(v["total_connected_seconds"], 1.5);
        assert_eq!(v["probe_rtt"]["count"], 0);
        assert_eq!(v["request_latency"]["count"], 0);
        let back: MetricsSnapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn debug_shows_the_snapshot() {
        let m = ConnectionMetrics::new();
        m.add_bytes_out(99);
        let text = format!("{m:?}");
        assert!(text.contains("bytes_out: 99"), "{text}");
        assert!(text.len() < 1000, "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn rates_follow_the_paused_clock() {
        let m = ConnectionMetrics::new();
        // 50 messages of 100 bytes received and 20 sent in the middle of each second,
        // for 20 seconds.
        for _ in 0..20 {
            advance(Duration::from_millis(500)).await;
            for _ in 0..50 {
                m.record_received(1, 100);
            }
            m.record_sent(20, 2_000);
            advance(Duration::from_millis(500)).await;
        }
        // At 20 s: the window is seconds 11..=20, 9 s long, with 9 seconds of traffic.
        let w = m.snapshot().window;
        assert_eq!(w.span, Duration::from_secs(9));
        assert_eq!((w.messages_in, w.messages_out), (450, 180));
        let r = w.rates();
        assert_eq!(r.messages_in_per_second, 50.0);
        assert_eq!(r.bytes_in_per_second, 5_000.0);
        assert_eq!(r.messages_out_per_second, 20.0);
        assert_eq!(r.messages_per_second(), 70.0);
        assert_eq!(r.bytes_per_second(), 7_000.0);
        assert_eq!(r.error_rate, None);

        // Half a second later the current second counts as far as it has gone.
        advance(Duration::from_millis(500)).await;
        let w = m.snapshot().window;
        assert_eq!((w.span, w.messages_in), (Duration::from_millis(9_500), 450));

        // Traffic stops: the rate falls as its seconds leave the window, then is zero.
        advance(Duration::from_secs(5)).await;
        assert_eq!(m.snapshot().window.messages_in, 200);
        advance(Duration::from_secs(5)).await;
        let s = m.snapshot();
        assert_eq!(s.window.rates().messages_in_per_second, 0.0);
        // The lifetime totals keep everything.
        assert_eq!(
            (s.messages_in, s.bytes_in, s.messages_out),
            (1_000, 100_000, 400)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn error_rate_over_the_window_and_over_the_life() {
        let m = ConnectionMetrics::new();
        assert_eq!(m.snapshot().error_rate(), None);
        // 10 s of 1 failure in 4 requests, then 10 s without failures.
        for second in 0..20 {
            for i in 0..4 {
                if second < 10 && i == 0 {
                    m.record_failed_request();
                } else {
                    m.record_request(Duration::from_millis(1));
                }
            }
            advance(Duration::from_secs(1)).await;
        }
        let s = m.snapshot();
        assert_eq!((s.requests, s.failed_requests, s.errors), (80, 10, 10));
        assert_eq!(s.error_rate(), Some(0.125));
        // Only successful requests have a latency.
        assert_eq!(s.request_latency.count, 70);
        // The window (seconds 11..=20) has no failure left.
        assert_eq!(s.window.rates().error_rate, Some(0.0));
        assert_eq!(s.window.rates().requests_per_second, 4.0);
        // A failure now shows at once.
        m.record_failed_request();
        let w = m.snapshot().window;
        assert_eq!((w.requests, w.failed_requests), (37, 1));
    }

    #[test]
    fn buffers_are_asked_at_snapshot_time_and_can_be_replaced() {
        let m = Arc::new(ConnectionMetrics::new());
        assert_eq!(m.snapshot_counters().buffered_bytes, None);
        let held = Arc::new(AtomicU64::new(10));
        let weak = Arc::downgrade(&held);
        m.report_buffers(move || weak.upgrade().map_or(0, |h| h.load(Relaxed)));
        assert_eq!(m.snapshot().buffered_bytes, Some(10));
        held.store(25, Relaxed);
        assert_eq!(m.snapshot_counters().buffered_bytes, Some(25));
        // A probe may read the metrics it reports into: it runs outside their lock.
        let inner = Arc::downgrade(&m);
        m.report_buffers(move || inner.upgrade().map_or(0, |m| m.window_snapshot().bytes_in));
        m.add_bytes_in(3);
        assert_eq!(m.snapshot().buffered_bytes, Some(3));
    }
}
