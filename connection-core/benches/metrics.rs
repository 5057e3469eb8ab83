//! Recording cost of [`LatencyRecorder`] against the naive alternative a user would write,
//! a `parking_lot::Mutex<Vec<Duration>>` that pushes every value, on 1 and 2 threads.
//!
//! Prints one JSON line per thread count on stdout
//! (`{"bench": "latency_record_1t", "unit": "ops/s", "ours": .., "peer": "parking_lot",
//! "peer_value": .., "ratio": ..}`, ratio > 1 meaning ours is faster) and a readable table
//! on stderr.
#![allow(
    clippy::print_stdout,
    reason = "stdout carries the bench's JSON result lines"
)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use connection_core::metrics::LatencyRecorder;
use parking_lot::Mutex;

/// Values recorded by each thread per round.
const PER_THREAD: u64 = 2_000_000;
/// Measured rounds per recorder; ours and the peer alternate so drift hits both.
const ROUNDS: usize = 5;

trait Recorder: Sync {
    fn record(&self, d: Duration);
    fn recorded(&self) -> u64;
}

impl Recorder for LatencyRecorder {
    fn record(&self, d: Duration) {
        LatencyRecorder::record(self, d);
    }
    fn recorded(&self) -> u64 {
        self.snapshot().count
    }
}

/// What a user would write without a histogram: keep every value, sort later.
struct MutexVec(Mutex<Vec<Duration>>);

impl Recorder for MutexVec {
    fn record(&self, d: Duration) {
        self.0.lock().push(d);
    }
    fn recorded(&self) -> u64 {
        self.0.lock().len() as u64
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
                        recorder.record(black_box(xorshift(&mut state)));
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
    eprintln!(
        "latency_record: {PER_THREAD} records per thread, {ROUNDS} alternating rounds, median"
    );
    eprintln!(
        "{:>7}  {:>14} {:>8}  {:>14} {:>8}  {:>7}",
        "threads", "ours ops/s", "ns/op", "peer ops/s", "ns/op", "ratio"
    );
    for threads in [1, 2] {
        let ours_recorder = LatencyRecorder::new();
        // Warm-up: fault in pages and let the CPU settle on a frequency.
        run(threads, &ours_recorder);
        run(threads, &MutexVec(Mutex::new(Vec::new())));

        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours_recorder.reset();
            ours.push(run(threads, &ours_recorder));
            // A fresh Vec each round: it grows as a user's would, no preallocation.
            peer.push(run(threads, &MutexVec(Mutex::new(Vec::new()))));
        }
        let (ours, peer) = (median(ours), median(peer));
        let ratio = ours / peer;
        let per_op_ns = |ops: f64| threads as f64 * 1e9 / ops;
        eprintln!(
            "{threads:>7}  {ours:>14.0} {:>8.1}  {peer:>14.0} {:>8.1}  {ratio:>7.2}",
            per_op_ns(ours),
            per_op_ns(peer)
        );
        let line = BenchLine {
            bench: format!("latency_record_{threads}t"),
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
}
