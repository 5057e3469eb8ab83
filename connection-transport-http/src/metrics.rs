//! [`HttpMetrics`]: per-client counters, request latency and throughput, exported as
//! JSON or Prometheus text.
//!
//! Recording never locks and never allocates: relaxed atomics, core's lock-free
//! [`LatencyRecorder`], and a ring of one-second buckets for throughput. Time is tokio's,
//! so paused-time tests see the throughput window move with virtual time.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use connection_core::metrics::{LatencyRecorder, LatencySnapshot};
use serde::Serialize;
use tokio::time::Instant;

/// Length of the throughput window, in seconds.
pub const THROUGHPUT_WINDOW_SECS: u64 = 10;
const SLOTS: usize = THROUGHPUT_WINDOW_SECS as usize + 2;

/// How one request ended, for [`HttpMetrics::record`].
pub(crate) struct Outcome {
    /// The final status, when a response came back.
    pub(crate) status: Option<u16>,
    /// Whether it counts as an error (no response, or a 5xx).
    pub(crate) failed: bool,
    pub(crate) latency: Duration,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) retries: u32,
}

/// One client's counters (shared by its clones). Read them with
/// [`snapshot`](Self::snapshot).
pub struct HttpMetrics {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Final responses by class: 1xx, 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 5],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    retries: AtomicU64,
    stale_retries: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    breaker_rejections: AtomicU64,
    limiter_rejections: AtomicU64,
    connections_opened: AtomicU64,
    in_flight: AtomicI64,
    latency: LatencyRecorder,
    base: Instant,
    /// Per-second request counts: `(second since base, count)` in a ring.
    window: [(AtomicU64, AtomicU64); SLOTS],
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpMetrics")
            .field(&self.snapshot())
            .finish()
    }
}

impl HttpMetrics {
    /// Zeroed.
    pub fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            classes: Default::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stale_retries: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedge_wins: AtomicU64::new(0),
            breaker_rejections: AtomicU64::new(0),
            limiter_rejections: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            latency: LatencyRecorder::new(),
            base: Instant::now(),
            window: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
        }
    }

    /// One finished request (all its attempts).
    pub(crate) fn record(&self, now: Instant, o: Outcome) {
        self.requests.fetch_add(1, Relaxed);
        if o.failed {
            self.errors.fetch_add(1, Relaxed);
        }
        if let Some(status) = o.status {
            if let Some(class) = self.classes.get(usize::from(status / 100).wrapping_sub(1)) {
                class.fetch_add(1, Relaxed);
            }
            self.latency.record(o.latency);
        }
        if o.bytes_in != 0 {
            self.bytes_in.fetch_add(o.bytes_in, Relaxed);
        }
        if o.bytes_out != 0 {
            self.bytes_out.fetch_add(o.bytes_out, Relaxed);
        }
        if o.retries != 0 {
            self.retries.fetch_add(u64::from(o.retries), Relaxed);
        }
        self.tick(now);
    }

    fn tick(&self, now: Instant) {
        let second = now.saturating_duration_since(self.base).as_secs();
        let (tag, count) = &self.window[(second % SLOTS as u64) as usize];
        let seen = tag.load(Relaxed);
        if seen != second {
            // The first request of a new second claims the slot; racing writers of the
            // same second may lose a count or two, which a rate can afford.
            if tag.compare_exchange(seen, second, Relaxed, Relaxed).is_ok() {
                count.store(0, Relaxed);
            }
        }
        count.fetch_add(1, Relaxed);
    }

    /// Requests per second over the last [`THROUGHPUT_WINDOW_SECS`] full seconds (or
    /// since the client was made, if that is shorter).
    fn throughput(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.base);
        let current = elapsed.as_secs();
        let first = current.saturating_sub(THROUGHPUT_WINDOW_SECS);
        let total: u64 = self
            .window
            .iter()
            .filter(|(tag, _)| {
                let t = tag.load(Relaxed);
                t != u64::MAX && t >= first && t < current
            })
            .map(|(_, c)| c.load(Relaxed))
            .sum();
        let span = (current - first) as f64;
        if span == 0.0 {
            0.0
        } else {
            total as f64 / span
        }
    }

    pub(crate) fn stale_retry(&self) {
        self.stale_retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn hedge(&self) {
        self.hedges.fetch_add(1, Relaxed);
    }

    pub(crate) fn hedge_win(&self) {
        self.hedge_wins.fetch_add(1, Relaxed);
    }

    pub(crate) fn breaker_rejection(&self) {
        self.breaker_rejections.fetch_add(1, Relaxed);
    }

    pub(crate) fn limiter_rejection(&self) {
        self.limiter_rejections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }

    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Request latency so far (to the last byte of the body, every attempt included).
    pub fn latency(&self) -> &LatencyRecorder {
        &self.latency
    }

    /// Everything, now.
    pub fn snapshot(&self) -> HttpMetricsSnapshot {
        let load = |a: &AtomicU64| a.load(Relaxed);
        let requests = load(&self.requests);
        let errors = load(&self.errors);
        let [s1, s2, s3, s4, s5] = &self.classes;
        HttpMetricsSnapshot {
            requests,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            status_1xx: load(s1),
            status_2xx: load(s2),
            status_3xx: load(s3),
            status_4xx: load(s4),
            status_5xx: load(s5),
            latency: self.latency.snapshot(),
            throughput: self.throughput(Instant::now()),
            bytes_in: load(&self.bytes_in),
            bytes_out: load(&self.bytes_out),
            retries: load(&self.retries),
            stale_retries: load(&self.stale_retries),
            hedges: load(&self.hedges),
            hedge_wins: load(&self.hedge_wins),
            breaker_rejections: load(&self.breaker_rejections),
            limiter_rejections: load(&self.limiter_rejections),
            connections_opened: load(&self.connections_opened),
            in_flight: u64::try_from(self.in_flight.load(Relaxed)).unwrap_or(0),
        }
    }
}

/// A client's metrics at one moment. Serializes with durations in seconds
/// (`latency.p99_seconds`), like core's snapshots.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HttpMetricsSnapshot {
    /// Requests finished (each counted once, however many attempts it took).
    pub requests: u64,
    /// Requests that ended without a response, or with a 5xx.
    pub errors: u64,
    /// `errors / requests` (0 with no requests).
    pub error_rate: f64,
    /// Final responses with a 1xx status.
    pub status_1xx: u64,
    /// ... 2xx.
    pub status_2xx: u64,
    /// ... 3xx.
    pub status_3xx: u64,
    /// ... 4xx.
    pub status_4xx: u64,
    /// ... 5xx.
    pub status_5xx: u64,
    /// Latency of requests that got a response, first attempt to last byte.
    pub latency: LatencySnapshot,
    /// Requests per second over the last ten full seconds.
    #[serde(rename = "throughput_per_second")]
    pub throughput: f64,
    /// Response body bytes received.
    pub bytes_in: u64,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// Attempts after the first, made by the retry policy.
    pub retries: u64,
    /// Immediate second attempts after a reused keep-alive socket was found closed.
    pub stale_retries: u64,
    /// Hedged second copies sent.
    pub hedges: u64,
    /// Requests a hedged copy answered first.
    pub hedge_wins: u64,
    /// Attempts refused by the circuit breaker.
    pub breaker_rejections: u64,
    /// Attempts refused by the rate limiter.
    pub limiter_rejections: u64,
    /// New connections the client started to open.
    pub connections_opened: u64,
    /// Requests running now.
    pub in_flight: u64,
}

impl HttpMetricsSnapshot {
    /// As JSON: one object, field names as above.
    pub fn to_json(&self) -> String {
        // A struct of numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Renders snapshots of named clients as Prometheus text (format 0.0.4), labelled
/// `connection="<name>"`, beside core's `connection_*` families:
/// `connection_http_requests_total`, `connection_http_errors_total`,
/// `connection_http_responses_total{class="2xx"}`,
/// `connection_http_request_latency_seconds` (summary), `connection_http_throughput`,
/// `connection_http_bytes_{in,out}_total`, `connection_http_retries_total`,
/// `connection_http_stale_retries_total`, `connection_http_hedges_total`,
/// `connection_http_hedge_wins_total`, `connection_http_rejections_total{policy=...}`,
/// `connection_http_connections_opened_total`, `connection_http_in_flight`.
///
/// ```
/// use connection_transport_http::metrics::{HttpMetrics, to_prometheus};
///
/// let api = HttpMetrics::new().snapshot();
/// let text = to_prometheus([("api", &api)]);
/// assert!(text.contains("connection_http_requests_total{connection=\"api\"} 0\n"));
/// assert!(text.contains("# TYPE connection_http_request_latency_seconds summary\n"));
/// ```
pub fn to_prometheus<'a>(
    snapshots: impl IntoIterator<Item = (&'a str, &'a HttpMetricsSnapshot)>,
) -> String {
    let rows: Vec<(String, &HttpMetricsSnapshot)> = snapshots
        .into_iter()
        .map(|(name, s)| (escape(name), s))
        .collect();
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, &rows);
    out
}

type Counter = (&'static str, &'static str, fn(&HttpMetricsSnapshot) -> u64);

const COUNTERS: &[Counter] = &[
    ("requests_total", "Requests finished.", |s| s.requests),
    (
        "errors_total",
        "Requests that ended without a response or with a 5xx.",
        |s| s.errors,
    ),
    ("bytes_in_total", "Response body bytes received.", |s| {
        s.bytes_in
    }),
    ("bytes_out_total", "Request body bytes sent.", |s| {
        s.bytes_out
    }),
    (
        "retries_total",
        "Attempts after the first, made by the retry policy.",
        |s| s.retries,
    ),
    (
        "stale_retries_total",
        "Second attempts after a reused keep-alive socket was found closed.",
        |s| s.stale_retries,
    ),
    ("hedges_total", "Hedged second copies sent.", |s| s.hedges),
    (
        "hedge_wins_total",
        "Requests a hedged copy answered first.",
        |s| s.hedge_wins,
    ),
    (
        "connections_opened_total",
        "New connections started.",
        |s| s.connections_opened,
    ),
];

fn write_all(out: &mut String, rows: &[(String, &HttpMetricsSnapshot)]) -> fmt::Result {
    for (name, help, value) in COUNTERS {
        writeln!(out, "# HELP connection_http_{name} {help}")?;
        writeln!(out, "# TYPE connection_http_{name} counter")?;
        for (c, s) in rows {
            writeln!(
                out,
                "connection_http_{name}{{connection=\"{c}\"}} {}",
                value(s)
            )?;
        }
    }
    writeln!(
        out,
        "# HELP connection_http_responses_total Final responses by status class."
    )?;
    writeln!(out, "# TYPE connection_http_responses_total counter")?;
    for (c, s) in rows {
        for (class, n) in [
            ("1xx", s.status_1xx),
            ("2xx", s.status_2xx),
            ("3xx", s.status_3xx),
            ("4xx", s.status_4xx),
            ("5xx", s.status_5xx),
        ] {
            writeln!(
                out,
                "connection_http_responses_total{{connection=\"{c}\",class=\"{class}\"}} {n}"
            )?;
        }
    }
    writeln!(
        out,
        "# HELP connection_http_rejections_total Attempts refused by a local policy."
    )?;
    writeln!(out, "# TYPE connection_http_rejections_total counter")?;
    for (c, s) in rows {
        writeln!(
            out,
            "connection_http_rejections_total{{connection=\"{c}\",policy=\"breaker\"}} {}",
            s.breaker_rejections
        )?;
        writeln!(
            out,
            "connection_http_rejections_total{{connection=\"{c}\",policy=\"limiter\"}} {}",
            s.limiter_rejections
        )?;
    }
    for (name, help, value) in [
        (
            "throughput",
            "Requests per second over the last ten seconds.",
            (|s: &HttpMetricsSnapshot| s.throughput) as fn(&HttpMetricsSnapshot) -> f64,
        ),
        ("error_rate", "Errors per request.", |s| s.error_rate),
        ("in_flight", "Requests running now.", |s| s.in_flight as f64),
    ] {
        writeln!(out, "# HELP connection_http_{name} {help}")?;
        writeln!(out, "# TYPE connection_http_{name} gauge")?;
        for (c, s) in rows {
            writeln!(
                out,
                "connection_http_{name}{{connection=\"{c}\"}} {}",
                float(value(s))
            )?;
        }
    }
    let family = "connection_http_request_latency_seconds";
    writeln!(
        out,
        "# HELP {family} Request latency, first attempt to last byte."
    )?;
    writeln!(out, "# TYPE {family} summary")?;
    for (c, s) in rows {
        let l = &s.latency;
        let (p50, p99) = if l.count == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (l.p50.as_secs_f64(), l.p99.as_secs_f64())
        };
        writeln!(
            out,
            "{family}{{connection=\"{c}\",quantile=\"0.5\"}} {}",
            float(p50)
        )?;
        writeln!(
            out,
            "{family}{{connection=\"{c}\",quantile=\"0.99\"}} {}",
            float(p99)
        )?;
        writeln!(
            out,
            "{family}_sum{{connection=\"{c}\"}} {}",
            float(l.mean.as_secs_f64() * l.count as f64)
        )?;
        writeln!(out, "{family}_count{{connection=\"{c}\"}} {}", l.count)?;
    }
    Ok(())
}

fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{x}")
    }
}

fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str(r"\\"),
            '"' => escaped.push_str(r#"\""#),
            '\n' => escaped.push_str(r"\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(
        status: Option<u16>,
        failed: bool,
        ms: u64,
        bytes_in: u64,
        bytes_out: u64,
        retries: u32,
    ) -> Outcome {
        Outcome {
            status,
            failed,
            latency: Duration::from_millis(ms),
            bytes_in,
            bytes_out,
            retries,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counts_classes_rates_and_throughput() {
        let m = HttpMetrics::new();
        tokio::time::advance(Duration::from_millis(500)).await;
        for status in [200, 201, 404, 503] {
            m.record(
                Instant::now(),
                outcome(Some(status), status >= 500, 2, 10, 3, 0),
            );
        }
        m.record(Instant::now(), outcome(None, true, 1, 0, 3, 2));
        let s = m.snapshot();
        assert_eq!((s.requests, s.errors), (5, 2));
        assert!((s.error_rate - 0.4).abs() < 1e-9);
        assert_eq!(
            (s.status_2xx, s.status_4xx, s.status_5xx),
            (2, 1, 1),
            "{s:?}"
        );
        assert_eq!((s.bytes_in, s.bytes_out, s.retries), (40, 15, 2));
        assert_eq!(s.latency.count, 4);
        // The current second is not complete yet: nothing in the window.
        assert_eq!(s.throughput, 0.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            (m.snapshot().throughput - 5.0).abs() < 1e-9,
            "{:?}",
            m.snapshot()
        );
        // Ten requests a second for twenty seconds: the window sees ten a second.
        for _ in 0..20 {
            for _ in 0..10 {
                m.record(Instant::now(), outcome(Some(200), false, 0, 0, 0, 0));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!((m.snapshot().throughput - 10.0).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(m.snapshot().throughput, 0.0);
    }

    #[test]
    fn exports() {
        let m = HttpMetrics::new();
        m.record(Instant::now(), outcome(Some(200), false, 3, 5, 0, 0));
        m.breaker_rejection();
        let s = m.snapshot();
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["requests"], 1);
        assert_eq!(json["breaker_rejections"], 1);
        assert!(json["latency"]["p99_seconds"].as_f64().unwrap() > 0.0);
        let text = to_prometheus([("a\"b", &s)]);
        assert!(
            text.contains(
                "connection_http_responses_total{connection=\"a\\\"b\",class=\"2xx\"} 1\n"
            )
        );
        assert!(text.contains(
            "connection_http_rejections_total{connection=\"a\\\"b\",policy=\"breaker\"} 1\n"
        ));
        assert!(to_prometheus([]).is_empty());
    }
}
