//! Timing helpers shared by this crate's benches.

use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Runs `op` `ops` times on each of `threads` threads released together by a barrier;
/// returns nanoseconds per operation as one caller sees it.
pub(crate) fn time_threads(threads: usize, ops: u64, op: impl Fn() + Send + Sync + 'static) -> f64 {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (op, barrier) = (op.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..ops {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for h in handles {
        h.join().expect("bench thread panicked");
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

/// The median of the rounds: robust to one round hit by machine noise.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
