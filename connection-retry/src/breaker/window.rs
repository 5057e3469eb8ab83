//! Sliding windows of call outcomes, lock-free on the recording path (but for a
//! time bucket reset, once per slice).
//!
//! The count-based window is a ring of one-byte slots. A recorder takes the next
//! sequence number (`fetch_add` on the head), swaps its outcome into slot
//! `seq % size`, and corrects the failure and slow totals by the difference between the
//! new and the old slot value. Since every swap adjusts the totals by exactly what it
//! changed, the totals always converge to what the slots hold; while recorders are
//! mid-way they may be off by the number in flight, which is why reads clamp at zero.
//! A success replacing a success writes nothing but the head.
//!
//! The time-based window is ten buckets, each covering a tenth of the span and tagged
//! with the time slice it counts. A recorder finding its bucket tagged with an older
//! slice resets it under a small lock (once per slice per bucket), then counts with
//! atomic adds.
//!
//! Both answer, after a record, whether the rates need judging: a failure or a slow
//! call always; a plain success only while the window may still be below its minimum
//! number of calls (a success lowers both rates, so past the minimum it cannot trip).

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::*};
use std::time::Duration;

use parking_lot::Mutex;

use super::config::SlidingWindow;
use super::stats::CachePadded;

/// Slot value bits: recorded, failed, slow.
const RECORDED: u8 = 0b001;
const FAILED: u8 = 0b010;
const SLOW: u8 = 0b100;

/// Buckets of a time-based window.
const BUCKETS: u64 = 10;

/// An outcome as stored in a count window slot.
#[inline]
pub(super) fn outcome(failure: bool, slow: bool) -> u8 {
    RECORDED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 }
}

/// The calls in the window, for judging rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) calls: u64,
    pub(super) failures: u64,
    pub(super) slow: u64,
}

#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per breaker; the size is the cache-line padding of the count window"
)]
pub(super) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(super) fn new(window: SlidingWindow, min_calls: u32) -> Self {
        match window {
            SlidingWindow::Count(size) => Self::Count(CountWindow::new(size, min_calls)),
            SlidingWindow::Time(span) => Self::Time(TimeWindow::new(span, min_calls)),
        }
    }

    /// Records one outcome (from [`outcome`]); `now` (nanoseconds on the breaker's
    /// clock) is called only by a time window. Returns the window's tally when this
    /// outcome may have pushed a rate over its threshold.
    #[inline]
    pub(super) fn record(&self, outcome: u8, now: impl FnOnce() -> u64) -> Option<Tally> {
        match self {
            Self::Count(w) => w.record(outcome),
            Self::Time(w) => w.record(outcome, now()),
        }
    }

    /// Forgets every call. Callers publish the reset through the breaker's state word.
    pub(super) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    failures: AtomicI64,
    slow: AtomicI64,
}

/// The last `size` calls.
#[derive(Debug)]
pub(super) struct CountWindow {
    /// Sequence number of the next record; written by every recorder.
    head: CachePadded<AtomicU64>,
    /// Failed and slow slots; written only when a slot changes.
    totals: CachePadded<Totals>,
    slots: Box<[AtomicU8]>,
    size: u32,
    /// Lemire's fast-modulo constant for `size`: a division would cost more than the
    /// rest of the record.
    modulo: u64,
    min_calls: u64,
}

impl CountWindow {
    fn new(size: u32, min_calls: u32) -> Self {
        Self {
            head: CachePadded::default(),
            totals: CachePadded::default(),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            size,
            modulo: (u64::MAX / u64::from(size)).wrapping_add(1),
            min_calls: u64::from(min_calls),
        }
    }

    /// `n % self.size`, by two multiplications (exact for all 32-bit `n` and `size`).
    #[inline]
    fn slot_of(&self, n: u32) -> usize {
        let low = self.modulo.wrapping_mul(u64::from(n));
        ((u128::from(low) * u128::from(self.size)) >> 64) as usize
    }

    #[inline]
    fn record(&self, outcome: u8) -> Option<Tally> {
        // Relaxed: the head only hands out distinct sequence numbers; the slots and
        // totals carry the data, and the breaker's state word publishes resets.
        let seq = self.head.fetch_add(1, Relaxed);
        // Truncating: past 2^32 records the ring restarts at slot 0 once, which only
        // moves where the next outcomes land.
        let slot = &self.slots[self.slot_of(seq as u32)];
        if slot.load(Relaxed) != outcome {
            let old = slot.swap(outcome, Relaxed);
            let delta = |bit: u8| i64::from(outcome & bit != 0) - i64::from(old & bit != 0);
            let (failed, slow) = (delta(FAILED), delta(SLOW));
            if failed != 0 {
                self.totals.failures.fetch_add(failed, Relaxed);
            }
            if slow != 0 {
                self.totals.slow.fetch_add(slow, Relaxed);
            }
        }
        if outcome == RECORDED && seq >= self.min_calls {
            return None;
        }
        Some(Tally {
            calls: (seq + 1).min(u64::from(self.size)),
            failures: self.totals.failures.load(Relaxed).max(0).unsigned_abs(),
            slow: self.totals.slow.load(Relaxed).max(0).unsigned_abs(),
        })
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Relaxed);
        }
        self.totals.failures.store(0, Relaxed);
        self.totals.slow.store(0, Relaxed);
        self.head.store(0, Relaxed);
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// The slice counted, plus one (0: never used).
    tag: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The calls of the last span of time.
#[derive(Debug)]
pub(super) struct TimeWindow {
    slice_nanos: u64,
    buckets: Box<[Bucket]>,
    /// Serializes bucket resets (rare: once per slice).
    rotate: Mutex<()>,
    min_calls: u64,
}

impl TimeWindow {
    fn new(span: Duration, min_calls: u32) -> Self {
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        Self {
            slice_nanos: (nanos / BUCKETS).max(1),
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
            rotate: Mutex::new(()),
            min_calls: u64::from(min_calls),
        }
    }

    #[inline]
    fn record(&self, outcome: u8, now: u64) -> Option<Tally> {
        let slice = now / self.slice_nanos;
        let tag = slice + 1;
        let bucket = &self.buckets[(slice % BUCKETS) as usize];
        // Acquire pairs with the Release in `rotate`: seeing the new tag means seeing
        // the zeroed counters, so our adds land after the reset.
        let seen = bucket.tag.load(Acquire);
        if seen != tag {
            if seen > tag {
                // This thread read the clock a whole window ago: too old to count.
                return None;
            }
            self.rotate(bucket, tag);
        }
        let before = bucket.calls.fetch_add(1, Relaxed);
        if outcome & FAILED != 0 {
            bucket.failures.fetch_add(1, Relaxed);
        }
        if outcome & SLOW != 0 {
            bucket.slow.fetch_add(1, Relaxed);
        }
        // This bucket alone already held the minimum: a success cannot trip.
        if outcome == RECORDED && before >= self.min_calls {
            return None;
        }
        Some(self.tally(tag))
    }

    #[cold]
    fn rotate(&self, bucket: &Bucket, tag: u64) {
        let _guard = self.rotate.lock();
        if bucket.tag.load(Relaxed) < tag {
            bucket.calls.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
            bucket.slow.store(0, Relaxed);
            bucket.tag.store(tag, Release);
        }
    }

    /// Sums the buckets of the `BUCKETS` slices ending with `tag`'s.
    fn tally(&self, tag: u64) -> Tally {
        let mut t = Tally::default();
        for b in self.buckets.iter() {
            let bt = b.tag.load(Acquire);
            if bt != 0 && bt <= tag && bt + BUCKETS > tag {
                t.calls += b.calls.load(Relaxed);
                t.failures += b.failures.load(Relaxed);
                t.slow += b.slow.load(Relaxed);
            }
        }
        t
    }

    fn reset(&self) {
        let _guard = self.rotate.lock();
        for b in self.buckets.iter() {
            b.tag.store(0, Relaxed);
            b.calls.store(0, Relaxed);
            b.failures.store(0, Relaxed);
            b.slow.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: u8 = RECORDED;
    const FAIL: u8 = RECORDED | FAILED;

    #[test]
    fn fast_modulo_matches_remainder() {
        for size in [1u32, 2, 3, 7, 10, 100, 1000, 12_345, 1 << 24] {
            let w = CountWindow::new(size, 1);
            for n in [
                0u32,
                1,
                2,
                99,
                100,
                101,
                65_535,
                1 << 31,
                u32::MAX - 1,
                u32::MAX,
            ] {
                assert_eq!(w.slot_of(n), (n % size) as usize, "{n} % {size}");
            }
        }
    }

    #[test]
    fn count_window_keeps_the_last_calls() {
        let w = CountWindow::new(4, 4);
        assert_eq!(
            w.record(FAIL),
            Some(Tally {
                calls: 1,
                failures: 1,
                slow: 0
            })
        );
        w.record(FAIL);
        w.record(OK);
        // Fourth call reaches the minimum: judged although a success.
        assert_eq!(
            w.record(OK),
            Some(Tally {
                calls: 4,
                failures: 2,
                slow: 0
            })
        );
        // Past the minimum a success is not judged, but it pushes out a failure.
        assert_eq!(w.record(OK), None);
        assert_eq!(
            w.record(outcome(true, true)),
            Some(Tally {
                calls: 4,
                failures: 1,
                slow: 1
            })
        );
        w.reset();
        assert_eq!(
            w.record(OK),
            Some(Tally {
                calls: 1,
                failures: 0,
                slow: 0
            })
        );
    }

    #[test]
    fn concurrent_records_keep_totals_equal_to_the_slots() {
        let w = std::sync::Arc::new(CountWindow::new(37, 1));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let o = match (t * 7 + i) % 3 {
                            0 => outcome(true, false),
                            1 => outcome(true, true),
                            _ => OK,
                        };
                        w.record(o);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let count = |bit: u8| {
            w.slots
                .iter()
                .filter(|s| s.load(Relaxed) & bit != 0)
                .count() as i64
        };
        assert_eq!(w.totals.failures.load(Relaxed), count(FAILED));
        assert_eq!(w.totals.slow.load(Relaxed), count(SLOW));
        assert_eq!(count(RECORDED), 37);
        assert_eq!(w.head.load(Relaxed), 80_000);
    }

    #[test]
    fn time_window_drops_old_slices() {
        let ms = 1_000_000;
        let w = TimeWindow::new(Duration::from_millis(100), 1);
        assert_eq!(w.record(FAIL, 0).unwrap().failures, 1);
        assert_eq!(w.record(FAIL, 55 * ms).unwrap().failures, 2);
        // 100 ms later the first slice has left the window.
        assert_eq!(
            w.record(FAIL, 100 * ms),
            Some(Tally {
                calls: 2,
                failures: 2,
                slow: 0
            })
        );
        // Far later everything old is gone, and the reused bucket restarted at zero.
        assert_eq!(
            w.record(FAIL, 1000 * ms),
            Some(Tally {
                calls: 1,
                failures: 1,
                slow: 0
            })
        );
        // A clock read from long ago is not counted.
        assert_eq!(w.record(FAIL, 0), None);
    }
}
