//! Many threads and tasks on one breaker: counts stay exact, probes stay limited.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use connection_core::Error;
use connection_retry::breaker::{CircuitBreaker, CircuitState};

#[test]
fn threads_hammering_the_closed_path_keep_exact_counts() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 50_000;
    // Every trigger on but out of reach, so every part of the closed path runs.
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(u32::MAX)
        .failure_rate(1.0)
        .count_window(100)
        .min_calls(100)
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (b, barrier) = (breaker.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..CALLS {
                    let permit = b.try_acquire().expect("closed");
                    match (t + i) % 4 {
                        0 => permit.failure(),
                        1 => drop(permit),
                        _ => permit.success(),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = breaker.stats();
    let total = THREADS * CALLS;
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(s.failures, total / 4);
    assert_eq!(s.ignored, total / 4);
    assert_eq!(s.successes, total / 2);
    assert_eq!(s.calls, s.successes + s.failures);
    assert_eq!((s.rejections, s.trips), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_running_through_the_breaker_keep_exact_counts() {
    let breaker = CircuitBreaker::default();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let b = breaker.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    let r: Result<(), Error> = b
                        .run(|| async {
                            tokio::task::yield_now().await;
                            Ok(())
                        })
                        .await;
                    r.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = breaker.stats();
    assert_eq!((s.calls, s.successes, s.failures), (32_000, 32_000, 0));
}

#[test]
fn racing_callers_get_exactly_the_probe_slots() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _guard = rt.enter();
    for probes in [1u32, 3] {
        let breaker = CircuitBreaker::builder()
            .consecutive_failures(1)
            .half_open_probes(probes)
            .wait(Duration::from_secs(1))
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().failure();
        rt.block_on(tokio::time::advance(Duration::from_secs(1)));
        // Turn half-open here, on the paused clock; the threads below read the real one.
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let barrier = Arc::new(Barrier::new(8));
        let admitted: u32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (b, barrier) = (&breaker, barrier.clone());
                    s.spawn(move || {
                        barrier.wait();
                        let mut kept = vec![];
                        for _ in 0..100 {
                            if let Ok(p) = b.try_acquire() {
                                kept.push(p);
                            }
                        }
                        let n = kept.len() as u32;
                        // Hold the slots until every thread has tried.
                        barrier.wait();
                        std::mem::forget(kept);
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, probes);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    }
}
