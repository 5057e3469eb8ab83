//! Recording costs, ours against the naive alternative a user would write, on 1 and 2
//! threads:
//!
//! - `latency_record_{1,2}t`: [`LatencyRecorder::record`] against a
//!   `parking_lot::Mutex<Vec<Duration>>` that pushes every value;
//! - `traffic_record_{1,2}t`: [`Traffic::sent`] / [`Traffic::received`] (lifetime counters
//!   and the per-second rate window) against the same window of per-second buckets
//!   behind a `parking_lot::Mutex`, reading the same clock. With two threads one sends
//!   and one receives on one connection, as a WebSocket's writer and reader do.
//!
//! Prints one JSON line per figure on stdout
//! (`{"bench": "latency_record_1t", "unit": "ops/s", "ours": .., "peer": "parking_lot",
//! "peer_value": .., "ratio": ..}`, ratio > 1 meaning ours is faster) and a readable table
//! on stderr.
#![allow(
    clippy::print_stdout,
    reason = "stdout carries the bench's JSON result lines"
)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connection_core::Traffic;
use connection_core::metrics::{ConnectionMetrics, LatencyRecorder};
use parking_lot::Mutex;

/// Values recorded by each thread per round.
const PER_THREAD: u64 = 2_000_000;
/// Measured rounds per recorder; ours and the peer alternate so drift hits both.
const ROUNDS: usize = 5;

trait Recorder: Sync {
    /// Records one value from thread number `thread`.
    fn record(&self, thread: usize, d: Duration);
    fn recorded(&self) -> u64;
}

impl Recorder for LatencyRecorder {
    fn record(&self, _thread: usize, d: Duration) {
        LatencyRecorder::record(self, d);
    }
    fn recorded(&self) -> u64 {
        self.snapshot().count
    }
}

/// What a user would write without a histogram: keep every value, sort later.
struct MutexVec(Mutex<Vec<Duration>>);

impl Recorder for MutexVec {
    fn record(&self, _thread: usize, d: Duration) {
        self.0.lock().push(d);
    }
    fn recorded(&self) -> u64 {
        self.0.lock().len() as u64
    }
}

/// One connection's traffic recording: even threads send, odd threads receive. The
/// "duration" is used as a message size, so both sides record varied byte counts.
struct TrafficRecorder(Traffic);

impl Recorder for TrafficRecorder {
    fn record(&self, thread: usize, d: Duration) {
        let bytes = u64::from(d.subsec_nanos() & 0xFFF);
        if thread % 2 == 0 {
            self.0.sent(1, bytes);
        } else {
            self.0.received(1, bytes);
        }
    }
    fn recorded(&self) -> u64 {
        let s = self.0.metrics().snapshot_counters();
        s.messages_in + s.messages_out
    }
}

/// What a user would write for messages and bytes per second over the last 10 s: the
/// same ring of per-second buckets, behind a lock.
struct MutexWindow {
    base: Instant,
    inner: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    messages: [u64; 2],
    bytes: [u64; 2],
    /// (second, messages, bytes) per direction and slot.
    slots: [[(u64, u64, u64); 10]; 2],
}

impl MutexWindow {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            inner: Mutex::new(WindowState::default()),
        }
    }
}

impl Recorder for MutexWindow {
    fn record(&self, thread: usize, d: Duration) {
        let bytes = u64::from(d.subsec_nanos() & 0xFFF);
        let dir = thread % 2;
        let sec = self.base.elapsed().as_secs();
        let mut s = self.inner.lock();
        s.messages[dir] += 1;
        s.bytes[dir] += bytes;
        let slot = &mut s.slots[dir][(sec % 10) as usize];
        if slot.0 != sec {
            *slot = (sec, 0, 0);
        }
        slot.1 += 1;
        slot.2 += bytes;
    }
    fn recorded(&self) -> u64 {
        let s = self.inner.lock();
        s.messages[0] + s.messages[1]
    }
}

/// Cheap deterministic durations, 1 µs to ~17 ms, spread over many histogram buckets.
/// Both recorders pay the same generation cost.
fn xorshift(state: &mut u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_nanos(1_000 + (*state >> 40))
}

/// Records `PER_THREAD` values from each of `threads` threads; returns total ops/s.
fn run(threads: usize, recorder: &impl Recorder) -> f64 {
    let barrier = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
                    barrier.wait();
                    for _ in 0..PER_THREAD {
                        recorder.record(t, black_box(xorshift(&mut state)));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            if worker.join().is_err() {
                panic!("bench worker panicked");
            }
        }
        start.elapsed()
    });
    let total = threads as u64 * PER_THREAD;
    assert_eq!(
        black_box(recorder).recorded(),
        total,
        "recorder lost values"
    );
    total as f64 / elapsed.as_secs_f64()
}

/// One result line; a struct rather than `json!` so the keys keep this order.
#[derive(serde::Serialize)]
struct BenchLine {
    bench: String,
    unit: &'static str,
    ours: f64,
    peer: &'static str,
    peer_value: f64,
    ratio: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    eprintln!("{PER_THREAD} records per thread, {ROUNDS} alternating rounds, median");
    eprintln!(
        "{:<16} {:>7}  {:>14} {:>8}  {:>14} {:>8}  {:>7}",
        "figure", "threads", "ours ops/s", "ns/op", "peer ops/s", "ns/op", "ratio"
    );
    for threads in [1, 2] {
        compare("latency_record", threads, LatencyRecorder::new, || {
            // A fresh Vec each round: it grows as a user's would, no preallocation.
            MutexVec(Mutex::new(Vec::new()))
        });
    }
    for threads in [1, 2] {
        compare(
            "traffic_record",
            threads,
            || TrafficRecorder(Traffic::new(Arc::new(ConnectionMetrics::new()))),
            MutexWindow::new,
        );
    }
}

/// Alternating rounds of a fresh `ours()` and a fresh `peer()`; prints the medians.
fn compare<O: Recorder, P: Recorder>(
    figure: &str,
    threads: usize,
    ours_make: impl Fn() -> O,
    peer_make: impl Fn() -> P,
) {
    // Warm-up: fault in pages and let the CPU settle on a frequency.
    run(threads, &ours_make());
    run(threads, &peer_make());

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(run(threads, &ours_make()));
        peer.push(run(threads, &peer_make()));
    }
    let (ours, peer) = (median(ours), median(peer));
    let ratio = ours / peer;
    let per_op_ns = |ops: f64| threads as f64 * 1e9 / ops;
    eprintln!(
        "{figure:<16} {threads:>7}  {ours:>14.0} {:>8.1}  {peer:>14.0} {:>8.1}  {ratio:>7.2}",
        per_op_ns(ours),
        per_op_ns(peer)
    );
    let line = BenchLine {
        bench: format!("{figure}_{threads}t"),
        unit: "ops/s",
        ours: ours.round(),
        peer: "parking_lot",
        peer_value: peer.round(),
        ratio: (ratio * 100.0).round() / 100.0,
    };
    match serde_json::to_string(&line) {
        Ok(json) => println!("{json}"),
        Err(e) => panic!("cannot serialize the result line: {e}"),
    }
}
