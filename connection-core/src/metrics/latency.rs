//! The lock-free latency histogram.
//!
//! Buckets are log-linear over whole microseconds: values below 16 µs get one bucket per
//! microsecond, and every power-of-two range `[2^k, 2^(k+1))` above that is split into 16
//! equal sub-buckets. A bucket is therefore never wider than 1/16 of its lower bound, which
//! bounds the error of a reported percentile to 6.25% (plus under 1 µs of truncation).
//! Covering 1 µs to 2^32 µs (~71.6 minutes) takes 464 buckets, 3.7 KiB; with the sum
//! stripes below a recorder stays under 4 KiB.
//!
//! The running sum is split over a few cache-line-sized stripes, one per recording thread
//! (round-robin), because a single sum word written by every record is the worst
//! contention point when threads share a recorder: two threads recording into one sum ran
//! at less than half the throughput of striped sums in the `metrics` bench.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::serde_secs;

/// log2 of the number of sub-buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Values are tracked in microseconds below 2^32 µs.
const RANGE_BITS: u32 = 32;
const MAX_MICROS: u64 = (1 << RANGE_BITS) - 1;
/// Largest value kept, in nanoseconds: the last nanosecond of the top bucket, so that
/// `max` and `sum` stay consistent with the buckets when a huge value is clamped.
const CEILING_NANOS: u64 = (MAX_MICROS + 1) * 1_000 - 1;
const BUCKETS: usize = SUB_COUNT + (RANGE_BITS - SUB_BITS) as usize * SUB_COUNT;
/// Enough for the few threads that realistically record into one connection's
/// histogram at once, while keeping the recorder under 4 KiB.
const SUM_STRIPES: usize = 4;

/// One atomic alone on a (64-byte) cache line, so stripes written by different threads
/// do not invalidate each other.
#[repr(align(64))]
struct Stripe(AtomicU64);

/// This thread's sum stripe, handed out round-robin on first use.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE
        .try_with(|stripe| match stripe.get() {
            usize::MAX => {
                let index = NEXT.fetch_add(1, Relaxed) % SUM_STRIPES;
                stripe.set(index);
                index
            }
            index => index,
        })
        // Only fails while the thread's locals are being torn down; any stripe is correct.
        .unwrap_or(0)
}

/// Bucket holding a value of `micros` microseconds.
fn bucket_index(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    if v < SUB_COUNT as u64 {
        return v as usize;
    }
    let msb = u64::BITS - 1 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    // `v >> shift` lies in [SUB_COUNT, 2 * SUB_COUNT), so this continues the linear
    // range seamlessly: bucket 16 holds 16 µs, bucket 31 holds 31 µs.
    let sub = (v >> shift) as usize - SUB_COUNT;
    SUB_COUNT + shift as usize * SUB_COUNT + sub
}

/// Exclusive upper bound of bucket `index`, in microseconds.
fn bucket_upper_micros(index: usize) -> u64 {
    if index < SUB_COUNT {
        return index as u64 + 1;
    }
    let shift = (index - SUB_COUNT) / SUB_COUNT;
    let sub = (index - SUB_COUNT) % SUB_COUNT;
    ((SUB_COUNT + sub + 1) as u64) << shift
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A lock-free, fixed-size latency histogram.
///
/// [`record`](Self::record) is wait-free: three relaxed atomic operations (bucket, this
/// thread's sum stripe, and a max that is only written when it grows), no lock and no
/// allocation, so it can sit on any hot path and be shared by reference between threads.
///
/// Percentiles are the upper bound of the bucket holding the requested rank, clamped to
/// the exact maximum: they are never below the true value, at most 6.25% above it
/// (values under 16 µs are exact to the microsecond), and `p50 <= p99 <= max` always holds.
/// Durations above [`CEILING`](Self::CEILING) (~71.6 minutes) are recorded as `CEILING`.
///
/// Reads ([`snapshot`](Self::snapshot), [`quantile`](Self::quantile)) are not atomic with
/// respect to concurrent recording: a value recorded meanwhile may be seen in some fields
/// and not yet in others. Each field is still a value the histogram really held.
///
/// ```
/// use connection_core::metrics::LatencyRecorder;
/// use std::time::Duration;
///
/// let latency = LatencyRecorder::new();
/// for ms in 1..=100 {
///     latency.record(Duration::from_millis(ms));
/// }
/// let snap = latency.snapshot();
/// assert_eq!(snap.count, 100);
/// assert_eq!(snap.max, Duration::from_millis(100));
/// assert_eq!(snap.mean, Duration::from_micros(50_500));
/// // Percentiles are bucket upper bounds: never low, at most ~6% high.
/// assert!(snap.p50 >= Duration::from_millis(50) && snap.p50 <= Duration::from_millis(54));
/// assert!(snap.p99 >= Duration::from_millis(99) && snap.p99 <= snap.max);
/// assert_eq!(latency.quantile(1.0), snap.max);
/// ```
pub struct LatencyRecorder {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: [Stripe; SUM_STRIPES],
    max_nanos: AtomicU64,
}

impl LatencyRecorder {
    /// The largest duration told apart; longer ones are recorded as this (2^32 µs, about
    /// 71.6 minutes).
    pub const CEILING: Duration = Duration::from_nanos(CEILING_NANOS);

    /// An empty recorder.
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_nanos: [const { Stripe(AtomicU64::new(0)) }; SUM_STRIPES],
            max_nanos: AtomicU64::new(0),
        }
    }

    /// Records one latency. Wait-free; durations above [`CEILING`](Self::CEILING) count
    /// as `CEILING`.
    #[inline]
    pub fn record(&self, d: Duration) {
        let nanos = saturating_nanos(d).min(CEILING_NANOS);
        self.buckets[bucket_index(nanos / 1_000)].fetch_add(1, Relaxed);
        // The sum wraps only after ~4 million recordings at the ceiling, or 584 years of
        // accumulated latency; not worth a CAS loop on the hot path.
        self.sum_nanos[stripe_index()].0.fetch_add(nanos, Relaxed);
        // The max rarely grows, so a plain load first keeps its cache line shared between
        // recording threads instead of bouncing on every call.
        if nanos > self.max_nanos.load(Relaxed) {
            self.max_nanos.fetch_max(nanos, Relaxed);
        }
    }

    /// The latency below or at which a fraction `q` of the recorded values fall: the upper
    /// bound of the bucket holding that rank, clamped to the maximum.
    ///
    /// `q` is clamped to `0.0..=1.0` (NaN counts as 0). Zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts = self.load_counts();
        let total = counts.iter().sum();
        quantile_of(&counts, total, self.max_nanos.load(Relaxed), q)
    }

    /// Count, mean, p50, p99 and max, read in one pass over the buckets.
    pub fn snapshot(&self) -> LatencySnapshot {
        let counts = self.load_counts();
        // The count comes from the buckets rather than its own atomic: one contended
        // write less per record, and the ranks used for the percentiles always agree with
        // the count reported next to them.
        let count: u64 = counts.iter().sum();
        let sum = self
            .sum_nanos
            .iter()
            .fold(0u64, |sum, stripe| sum.wrapping_add(stripe.0.load(Relaxed)));
        let max = self.max_nanos.load(Relaxed);
        if count == 0 {
            return LatencySnapshot::default();
        }
        LatencySnapshot {
            count,
            // Clamped because a concurrent record may have reached the sum but not yet the
            // max.
            mean: Duration::from_nanos((sum / count).min(max)),
            p50: quantile_of(&counts, count, max, 0.5),
            p99: quantile_of(&counts, count, max, 0.99),
            max: Duration::from_nanos(max),
        }
    }

    /// Adds everything `other` recorded into this recorder, bucket by bucket, so
    /// percentiles over many connections are as exact as over one (not an upper bound
    /// from the largest per-connection percentile).
    ///
    /// ```
    /// use connection_core::metrics::LatencyRecorder;
    /// use std::time::Duration;
    ///
    /// let (a, b, total) = (LatencyRecorder::new(), LatencyRecorder::new(), LatencyRecorder::new());
    /// for _ in 0..99 { a.record(Duration::from_millis(1)); }
    /// b.record(Duration::from_millis(500));
    /// total.merge_from(&a);
    /// total.merge_from(&b);
    /// let snap = total.snapshot();
    /// assert_eq!(snap.count, 100);
    /// assert!(snap.p99 < Duration::from_millis(2));
    /// assert_eq!(snap.max, Duration::from_millis(500));
    /// ```
    pub fn merge_from(&self, other: &LatencyRecorder) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            let n = theirs.load(Relaxed);
            // Most buckets are empty: skip the write so merging stays a read-mostly pass.
            if n != 0 {
                mine.fetch_add(n, Relaxed);
            }
        }
        let sum = other
            .sum_nanos
            .iter()
            .fold(0u64, |sum, stripe| sum.wrapping_add(stripe.0.load(Relaxed)));
        self.sum_nanos[stripe_index()].0.fetch_add(sum, Relaxed);
        self.max_nanos
            .fetch_max(other.max_nanos.load(Relaxed), Relaxed);
    }

    /// The largest value recorded, without a pass over the buckets.
    pub(crate) fn max(&self) -> Duration {
        Duration::from_nanos(self.max_nanos.load(Relaxed))
    }

    /// Forgets everything recorded. Values recorded concurrently with a reset may be
    /// partly kept (e.g. in the count but not the sum).
    pub fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Relaxed);
        }
        for stripe in &self.sum_nanos {
            stripe.0.store(0, Relaxed);
        }
        self.max_nanos.store(0, Relaxed);
    }

    fn load_counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }
}

fn quantile_of(counts: &[u64; BUCKETS], total: u64, max_nanos: u64, q: f64) -> Duration {
    if total == 0 {
        return Duration::ZERO;
    }
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    // The rank (1-based) of the value wanted: the smallest one with at least a fraction
    // `q` of all values at or below it.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (index, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let upper = bucket_upper_micros(index).saturating_mul(1_000);
            return Duration::from_nanos(upper.min(max_nanos));
        }
    }
    // Only reachable if `total` exceeds the bucket sum, which the callers rule out.
    Duration::from_nanos(max_nanos)
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyRecorder {
    // 464 raw buckets would drown any log line; the summary is what a reader wants.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyRecorder")
            .field("snapshot", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// A point-in-time summary of a [`LatencyRecorder`].
///
/// Serialized with every duration as a floating-point number of seconds, under a name
/// ending in `_seconds`: `{"count": 3, "mean_seconds": 0.002, "p50_seconds": 0.002,
/// "p99_seconds": 0.003, "max_seconds": 0.003}`. All zeros when nothing was recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// Number of values recorded.
    pub count: u64,
    /// Arithmetic mean, exact to the nanosecond.
    #[serde(rename = "mean_seconds", with = "serde_secs")]
    pub mean: Duration,
    /// Median, as a bucket upper bound (at most 6.25% high).
    #[serde(rename = "p50_seconds", with = "serde_secs")]
    pub p50: Duration,
    /// 99th percentile, as a bucket upper bound (at most 6.25% high, never above `max`).
    #[serde(rename = "p99_seconds", with = "serde_secs")]
    pub p99: Duration,
    /// Largest value recorded, exact.
    #[serde(rename = "max_seconds", with = "serde_secs")]
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);

    fn within(actual: Duration, expected: Duration, tolerance: f64) -> bool {
        let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
        (a - e).abs() <= e * tolerance
    }

    #[test]
    fn fits_in_four_kib_and_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LatencyRecorder>();
        assert!(
            size_of::<LatencyRecorder>() <= 4096,
            "{}",
            size_of::<LatencyRecorder>()
        );
        assert_eq!(BUCKETS, 464);
    }

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut values: Vec<u64> = (0..200_000).collect();
        for bit in 17..RANGE_BITS {
            let p = 1u64 << bit;
            values.extend([p - 1, p, p + 1, p + p / 3, p + p / 2, 2 * p - 1]);
        }
        values.push(MAX_MICROS);
        values.sort_unstable();
        let mut last = 0;
        for v in values {
            let index = bucket_index(v);
            assert!(index < BUCKETS, "{v} -> {index}");
            assert!(index >= last, "bucket of {v} went backwards");
            last = index;
            let upper = bucket_upper_micros(index);
            assert!(
                upper > v,
                "{v} µs in bucket {index} with upper bound {upper}"
            );
            // Relative width: exact below 16 µs, at most 1/16 above.
            let width = upper - v;
            assert!(
                width == 1 || width * 16 <= v,
                "{v} µs: bucket {index} too wide ({upper})"
            );
        }
        assert_eq!(bucket_index(MAX_MICROS), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_upper_micros(BUCKETS - 1), 1 << RANGE_BITS);
        // Every bucket is reachable and the bounds line up end to start.
        for index in 1..BUCKETS {
            assert_eq!(bucket_index(bucket_upper_micros(index - 1)), index);
        }
    }

    #[test]
    fn empty_recorder_reports_zeros() {
        let r = LatencyRecorder::new();
        assert_eq!(r.snapshot(), LatencySnapshot::default());
        assert_eq!(r.quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn uniform_milliseconds_percentiles_are_accurate() {
        let r = LatencyRecorder::new();
        for ms in 1..=1000 {
            r.record(ms * MS);
        }
        let s = r.snapshot();
        assert_eq!(s.count, 1000);
        assert_eq!(s.max, 1000 * MS);
        assert_eq!(s.mean, Duration::from_micros(500_500));
        // Upper bounds: never below the true rank value, and within the bucket error.
        assert!(
            s.p50 >= 500 * MS && within(s.p50, 500 * MS, 0.0625),
            "p50 {:?}",
            s.p50
        );
        assert!(
            s.p99 >= 990 * MS && within(s.p99, 990 * MS, 0.0625),
            "p99 {:?}",
            s.p99
        );
        assert!(s.p99 <= s.max);
        assert_eq!(r.quantile(0.5), s.p50);
        assert_eq!(r.quantile(0.99), s.p99);
        assert_eq!(r.quantile(1.0), 1000 * MS);
        let p10 = r.quantile(0.1);
        assert!(
            p10 >= 100 * MS && within(p10, 100 * MS, 0.0625),
            "p10 {p10:?}"
        );
    }

    #[test]
    fn skewed_distribution_separates_p50_from_p99() {
        let r = LatencyRecorder::new();
        for _ in 0..980 {
            r.record(Duration::from_micros(200));
        }
        for _ in 0..20 {
            r.record(Duration::from_millis(80));
        }
        let s = r.snapshot();
        assert!(
            within(s.p50, Duration::from_micros(200), 0.0625),
            "{:?}",
            s.p50
        );
        assert!(
            within(s.p99, Duration::from_millis(80), 0.0625),
            "{:?}",
            s.p99
        );
        // 980 * 200 µs + 20 * 80 ms = 196 ms + 1600 ms over 1000 values.
        assert_eq!(s.mean, Duration::from_micros(1_796));
    }

    #[test]
    fn small_values_are_exact_and_clamped_to_max() {
        let r = LatencyRecorder::new();
        r.record(Duration::from_nanos(300));
        let s = r.snapshot();
        let ns300 = Duration::from_nanos(300);
        assert_eq!((s.p50, s.p99, s.max, s.mean), (ns300, ns300, ns300, ns300));
        r.record(Duration::from_micros(7));
        assert_eq!(r.quantile(1.0), Duration::from_micros(7));
        assert_eq!(r.quantile(0.0), Duration::from_micros(1));
        assert_eq!(r.quantile(f64::NAN), Duration::from_micros(1));
        assert_eq!(r.quantile(7.0), Duration::from_micros(7));
    }

    #[test]
    fn huge_values_clamp_into_the_top_bucket() {
        let r = LatencyRecorder::new();
        r.record(Duration::MAX);
        r.record(Duration::from_secs(10 * 3600));
        let s = r.snapshot();
        assert_eq!(s.count, 2);
        assert_eq!(s.max, LatencyRecorder::CEILING);
        assert_eq!(s.p99, LatencyRecorder::CEILING);
        assert_eq!(s.mean, LatencyRecorder::CEILING);
        assert!(LatencyRecorder::CEILING > Duration::from_secs(3600));
    }

    #[test]
    fn one_hour_is_in_range() {
        let r = LatencyRecorder::new();
        r.record(Duration::from_secs(3600));
        r.record(Duration::from_secs(1800));
        assert_eq!(r.snapshot().max, Duration::from_secs(3600));
        let p50 = r.quantile(0.5);
        assert!(p50 >= Duration::from_secs(1800) && within(p50, Duration::from_secs(1800), 0.0625));
    }

    #[test]
    fn reset_forgets_everything() {
        let r = LatencyRecorder::new();
        r.record(5 * MS);
        r.reset();
        assert_eq!(r.snapshot(), LatencySnapshot::default());
        r.record(2 * MS);
        assert_eq!(r.snapshot().count, 1);
        assert_eq!(r.snapshot().max, 2 * MS);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 50_000;
        let r = Arc::new(LatencyRecorder::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        // Thread t records (t + 1) µs .. spread over several buckets.
                        r.record(Duration::from_micros((t + 1) * (1 + i % 1000)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = r.snapshot();
        assert_eq!(s.count, THREADS * PER_THREAD);
        // Each thread: (t + 1) * sum over i of (1 + i % 1000) = (t + 1) * 50 * 500_500 µs.
        let per_unit: u64 = (0..PER_THREAD).map(|i| 1 + i % 1000).sum();
        let expected_micros: u64 = (1..=THREADS).map(|m| m * per_unit).sum();
        assert_eq!(
            s.mean,
            Duration::from_micros(expected_micros) / (THREADS * PER_THREAD) as u32
        );
        assert_eq!(s.max, Duration::from_micros(THREADS * 1000));
    }

    #[test]
    fn snapshot_serializes_as_seconds_and_round_trips() {
        let r = LatencyRecorder::new();
        r.record(2 * MS);
        r.record(4 * MS);
        let s = r.snapshot();
        let v = serde_json::to_value(s).unwrap();
        assert_eq!(v["count"], 2);
        assert_eq!(v["mean_seconds"], 0.003);
        assert_eq!(v["max_seconds"], 0.004);
        assert_eq!(v["p99_seconds"], 0.004);
        assert!(v.get("mean").is_none());
        let back: LatencySnapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert!(
            serde_json::from_str::<LatencySnapshot>(
                r#"{"count":1,"mean_seconds":-1,"p50_seconds":0,"p99_seconds":0,"max_seconds":0}"#
            )
            .is_err()
        );
    }
}
