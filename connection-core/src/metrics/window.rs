//! The sliding window behind the per-second rates.
//!
//! A ring of [`SLOTS`] one-second slots on the metrics' own clock (whole seconds since
//! they were created). Each slot holds one counter per [`Counter`]; each counter is one
//! `AtomicU64` packing the second it belongs to (the low [`TAG_BITS`] bits of it) with
//! its count ([`COUNT_BITS`] bits). Claiming a slot for a new second and counting into it
//! are therefore one atomic operation: no lock, and no count is lost between a reset and
//! an add, which a separate tag word would allow.
//!
//! Recording costs one clock read per call (shared by the counters a call updates) and
//! one atomic read-modify-write per counter: a `fetch_add` while the slot already holds
//! this second, a compare-and-swap only when it turns over. A value whose second is
//! already older than the slot's (a thread that read the clock, was descheduled for ten
//! seconds, then recorded) is left out of the window; the lifetime counters still have it.
//!
//! Rates are computed when read: the counts of the slots holding one of the last
//! [`SLOTS`] seconds, over the time those seconds cover, the current second only as far
//! as it has gone (so between 9 and 10 seconds once the metrics are that old).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::serde_secs;

/// Seconds in the window.
pub(crate) const SLOTS: u64 = 10;
/// Bits of the second kept in a counter: a slot left alone for 2^24 s (194 days) could be
/// taken for current only if that span were also a multiple of the ring's length.
const TAG_BITS: u32 = 24;
/// Bits of the count: 2^40 (1.1e12) bytes in one second on one connection is far beyond
/// any link; a count saturates there rather than spill into the tag.
const COUNT_BITS: u32 = 64 - TAG_BITS;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// Below this count, and for additions below `FAST_ADD`, a plain `fetch_add` cannot carry
/// into the tag even with many threads adding at once.
const FAST_COUNT: u64 = 1 << (COUNT_BITS - 1);
const FAST_ADD: u64 = 1 << 32;

/// What a window counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    MessagesIn = 0,
    MessagesOut = 1,
    BytesIn = 2,
    BytesOut = 3,
    Requests = 4,
    FailedRequests = 5,
}

const COUNTERS: usize = 6;

/// The ring of per-second slots; 480 bytes, allocated on a connection's first traffic.
#[derive(Default)]
pub(crate) struct RateWindow {
    slots: [[AtomicU64; COUNTERS]; SLOTS as usize],
}

impl RateWindow {
    /// Adds `n` to `counter` in second `sec`.
    #[inline]
    pub(crate) fn add(&self, sec: u64, counter: Counter, n: u64) {
        let word = &self.slots[(sec % SLOTS) as usize][counter as usize];
        let tag = sec & TAG_MASK;
        let mut current = word.load(Relaxed);
        if current >> COUNT_BITS == tag && current & COUNT_MASK < FAST_COUNT && n < FAST_ADD {
            word.fetch_add(n, Relaxed);
            return;
        }
        loop {
            let held = current >> COUNT_BITS;
            let count = if held == tag {
                (current & COUNT_MASK).saturating_add(n).min(COUNT_MASK)
            } else if tag.wrapping_sub(held) & TAG_MASK < (1 << (TAG_BITS - 1)) {
                // The slot holds an older second: this one takes it over.
                n.min(COUNT_MASK)
            } else {
                // The slot already moved on to a later second: too old for the window.
                return;
            };
            match word.compare_exchange_weak(current, tag << COUNT_BITS | count, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Sums each counter over the slots that hold one of the last `SLOTS` seconds up to
    /// `now_sec`.
    fn read(&self, now_sec: u64) -> [u64; COUNTERS] {
        let mut sums = [0u64; COUNTERS];
        for sec in now_sec.saturating_sub(SLOTS - 1)..=now_sec {
            let tag = sec & TAG_MASK;
            for (sum, word) in sums.iter_mut().zip(&self.slots[(sec % SLOTS) as usize]) {
                let v = word.load(Relaxed);
                if v >> COUNT_BITS == tag {
                    *sum = sum.saturating_add(v & COUNT_MASK);
                }
            }
        }
        sums
    }

    /// The window as of `elapsed` since the metrics were created.
    pub(crate) fn snapshot(window: Option<&Self>, elapsed: Duration) -> WindowSnapshot {
        let now_sec = elapsed.as_secs();
        let counts = window.map_or([0; COUNTERS], |w| w.read(now_sec));
        let first = Duration::from_secs(now_sec.saturating_sub(SLOTS - 1));
        WindowSnapshot {
            span: elapsed.saturating_sub(first).max(MIN_SPAN),
            messages_in: counts[Counter::MessagesIn as usize],
            messages_out: counts[Counter::MessagesOut as usize],
            bytes_in: counts[Counter::BytesIn as usize],
            bytes_out: counts[Counter::BytesOut as usize],
            requests: counts[Counter::Requests as usize],
            failed_requests: counts[Counter::FailedRequests as usize],
        }
    }
}

/// The shortest span a rate is taken over: over less, one message makes a huge rate that
/// says more about timing than about throughput.
const MIN_SPAN: Duration = Duration::from_secs(1);

/// What a connection carried over its last few seconds: counts, and the time they cover.
/// [`rates`](Self::rates) turns them into per-second figures.
///
/// The window is the last 10 one-second slots of the connection's metrics clock: the
/// current second as far as it has gone plus the 9 before it, so `span` is between 9 and
/// 10 s once the metrics are that old, and their age (at least 1 s) before that.
///
/// Serialized with the rates next to the counts (`span` as `seconds`):
/// `{"seconds": 9.5, "messages_in": 95, ..., "messages_per_second": 20.0,
/// "messages_in_per_second": 10.0, ..., "error_rate": 0.25}`; the rates are ignored when
/// reading it back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WindowJson")]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// The time the counts cover.
    #[serde(rename = "seconds", with = "serde_secs")]
    pub span: Duration,
    /// Messages received in the window.
    pub messages_in: u64,
    /// Messages sent in the window.
    pub messages_out: u64,
    /// Bytes received in the window.
    pub bytes_in: u64,
    /// Bytes sent in the window.
    pub bytes_out: u64,
    /// Requests made in the window, failed ones included.
    pub requests: u64,
    /// Requests that failed in the window.
    pub failed_requests: u64,
}

impl WindowSnapshot {
    /// The counts per second of `span`, and the share of requests that failed.
    pub fn rates(&self) -> Rates {
        let secs = self.span.as_secs_f64();
        let per_second = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Rates {
            messages_in_per_second: per_second(self.messages_in),
            messages_out_per_second: per_second(self.messages_out),
            bytes_in_per_second: per_second(self.bytes_in),
            bytes_out_per_second: per_second(self.bytes_out),
            requests_per_second: per_second(self.requests),
            error_rate: ratio(self.failed_requests, self.requests),
        }
    }
}

/// `part / whole`, or `None` when `whole` is zero (no requests: no error rate, rather
/// than a misleading 0).
pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Per-second figures of a [`WindowSnapshot`], or their sum over many connections
/// (where `error_rate` is over every connection's requests together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rates {
    /// Messages received per second.
    pub messages_in_per_second: f64,
    /// Messages sent per second.
    pub messages_out_per_second: f64,
    /// Bytes received per second.
    pub bytes_in_per_second: f64,
    /// Bytes sent per second.
    pub bytes_out_per_second: f64,
    /// Requests made per second, failed ones included.
    pub requests_per_second: f64,
    /// Failed requests over requests; `None` without requests.
    pub error_rate: Option<f64>,
}

impl Rates {
    /// The rates of many connections together: each rate is the sum of theirs (each
    /// over its own window), and `error_rate` is over all their windows' requests.
    ///
    /// ```
    /// use connection_core::metrics::{ConnectionMetrics, Rates};
    ///
    /// let (a, b) = (ConnectionMetrics::new(), ConnectionMetrics::new());
    /// a.record_sent(10, 1_000);
    /// b.record_sent(5, 500);
    /// b.record_failed_request();
    /// let total = Rates::total(&[a.window_snapshot(), b.window_snapshot()]);
    /// assert_eq!(total.messages_out_per_second, 15.0); // both younger than 1 s
    /// assert_eq!(total.error_rate, Some(1.0));
    /// ```
    pub fn total<'a>(windows: impl IntoIterator<Item = &'a WindowSnapshot>) -> Rates {
        let mut total = Rates::default();
        let (mut requests, mut failed) = (0u64, 0u64);
        for w in windows {
            let r = w.rates();
            total.messages_in_per_second += r.messages_in_per_second;
            total.messages_out_per_second += r.messages_out_per_second;
            total.bytes_in_per_second += r.bytes_in_per_second;
            total.bytes_out_per_second += r.bytes_out_per_second;
            total.requests_per_second += r.requests_per_second;
            requests = requests.saturating_add(w.requests);
            failed = failed.saturating_add(w.failed_requests);
        }
        total.error_rate = ratio(failed, requests);
        total
    }

    /// Messages per second, both ways.
    pub fn messages_per_second(&self) -> f64 {
        self.messages_in_per_second + self.messages_out_per_second
    }

    /// Bytes per second, both ways.
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes_in_per_second + self.bytes_out_per_second
    }
}

/// The serialized form of a [`WindowSnapshot`]: its counts and its rates.
#[derive(Serialize)]
struct WindowJson {
    seconds: f64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    requests: u64,
    failed_requests: u64,
    messages_per_second: f64,
    messages_in_per_second: f64,
    messages_out_per_second: f64,
    bytes_per_second: f64,
    bytes_in_per_second: f64,
    bytes_out_per_second: f64,
    requests_per_second: f64,
    error_rate: Option<f64>,
}

impl From<WindowSnapshot> for WindowJson {
    fn from(w: WindowSnapshot) -> Self {
        let r = w.rates();
        Self {
            seconds: w.span.as_secs_f64(),
            messages_in: w.messages_in,
            messages_out: w.messages_out,
            bytes_in: w.bytes_in,
            bytes_out: w.bytes_out,
            requests: w.requests,
            failed_requests: w.failed_requests,
            messages_per_second: r.messages_per_second(),
            messages_in_per_second: r.messages_in_per_second,
            messages_out_per_second: r.messages_out_per_second,
            bytes_per_second: r.bytes_per_second(),
            bytes_in_per_second: r.bytes_in_per_second,
            bytes_out_per_second: r.bytes_out_per_second,
            requests_per_second: r.requests_per_second,
            error_rate: r.error_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(w: &RateWindow, elapsed: Duration) -> WindowSnapshot {
        RateWindow::snapshot(Some(w), elapsed)
    }

    #[test]
    fn counts_the_last_ten_seconds() {
        let w = RateWindow::default();
        for sec in 0..20 {
            w.add(sec, Counter::MessagesIn, 10);
            w.add(sec, Counter::BytesOut, 1000);
        }
        // At 19.5 s: seconds 10..=19 are in, 9.5 s of them.
        let s = snap(&w, Duration::from_millis(19_500));
        assert_eq!(s.span, Duration::from_millis(9_500));
        assert_eq!((s.messages_in, s.bytes_out), (100, 10_000));
        // At 25 s: seconds 16..=25, of which 16..=19 had traffic.
        let s = snap(&w, Duration::from_secs(25));
        assert_eq!((s.span, s.messages_in), (Duration::from_secs(9), 40));
        // Long after, nothing is left, whatever the slots still hold.
        let s = snap(&w, Duration::from_secs(1_000));
        assert_eq!((s.messages_in, s.bytes_out), (0, 0));
    }

    #[test]
    fn a_young_window_spans_its_age_but_at_least_a_second() {
        let w = RateWindow::default();
        w.add(0, Counter::Requests, 4);
        w.add(3, Counter::Requests, 4);
        w.add(3, Counter::FailedRequests, 2);
        let s = snap(&w, Duration::from_millis(3_200));
        assert_eq!(
            (s.span, s.requests, s.failed_requests),
            (Duration::from_millis(3_200), 8, 2)
        );
        assert_eq!(s.rates().requests_per_second, 8.0 / 3.2);
        assert_eq!(s.rates().error_rate, Some(0.25));
        let s = snap(&w, Duration::from_millis(200));
        assert_eq!((s.span, s.requests), (Duration::from_secs(1), 4));
        assert_eq!(
            RateWindow::snapshot(None, Duration::ZERO).rates(),
            Rates::default()
        );
    }

    #[test]
    fn a_slot_is_taken_over_by_a_later_second_only() {
        let w = RateWindow::default();
        w.add(12, Counter::MessagesOut, 5);
        // Second 2 maps to the same slot but is older: left out.
        w.add(2, Counter::MessagesOut, 7);
        assert_eq!(snap(&w, Duration::from_secs(12)).messages_out, 5);
        w.add(22, Counter::MessagesOut, 3);
        assert_eq!(snap(&w, Duration::from_secs(22)).messages_out, 3);
    }

    #[test]
    fn counts_saturate_instead_of_spilling_into_the_tag() {
        let w = RateWindow::default();
        w.add(1, Counter::BytesIn, u64::MAX);
        w.add(1, Counter::BytesIn, 5);
        w.add(1, Counter::BytesOut, 3);
        let s = snap(&w, Duration::from_secs(1));
        assert_eq!((s.bytes_in, s.bytes_out), (COUNT_MASK, 3));
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let w = std::sync::Arc::new(RateWindow::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        // Two slots, recorded from every thread at once.
                        w.add(5 + i % 2, Counter::MessagesIn, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(snap(&w, Duration::from_secs(6)).messages_in, 80_000);
    }

    #[test]
    fn serializes_counts_and_rates_and_reads_back_the_counts() {
        let w = WindowSnapshot {
            span: Duration::from_secs(10),
            messages_in: 50,
            messages_out: 150,
            bytes_in: 1000,
            bytes_out: 3000,
            requests: 8,
            failed_requests: 2,
        };
        let v = serde_json::to_value(w).unwrap();
        assert_eq!(v["seconds"], 10.0);
        assert_eq!(v["messages_in"], 50);
        assert_eq!(v["messages_per_second"], 20.0);
        assert_eq!(v["messages_in_per_second"], 5.0);
        assert_eq!(v["bytes_per_second"], 400.0);
        assert_eq!(v["requests_per_second"], 0.8);
        assert_eq!(v["error_rate"], 0.25);
        assert_eq!(serde_json::from_value::<WindowSnapshot>(v).unwrap(), w);
        let none = serde_json::to_value(WindowSnapshot::default()).unwrap();
        assert!(none["error_rate"].is_null());
        assert_eq!(none["messages_per_second"], 0.0);
    }
}
