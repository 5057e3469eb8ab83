//! Strict mode serves waiters first come, first served, and hands a returned connection
//! straight to the oldest waiter.

mod support;

use std::sync::Arc;
use std::time::Duration;

use connection_core::Connection;
use connection_pool::{Fairness, Pool, PoolConfig};
use parking_lot::Mutex;
use support::Mem;

fn pool(max: usize, fairness: Fairness) -> Pool<Mem> {
    let cfg = PoolConfig::builder()
        .max_size(max)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .fairness(fairness)
        .build()
        .expect("test step");
    Pool::new(Mem::new(), cfg).expect("test step")
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let pool = pool(1, Fairness::Strict);
    let held = pool.get().await.expect("test step");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (p, order) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.expect("test step");
            order.lock().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(c);
        }));
        // Sequence arrivals: each waiter is queued before the next one asks.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(pool.status().waiting, i + 1);
    }
    drop(held);
    for t in tasks {
        t.await.expect("test step");
    }
    assert_eq!(*order.lock(), (0..20).collect::<Vec<_>>());
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn returned_connection_goes_to_the_oldest_waiter_not_a_newcomer() {
    let pool = pool(1, Fairness::Strict);
    let held = pool.get().await.expect("test step");
    let id = held.id();
    let p = pool.clone();
    let oldest = tokio::spawn(async move { p.get().await.expect("test step").id() });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiting, 1);
    drop(held);
    // The connection is already the waiter's: a newcomer cannot take it.
    assert_eq!(pool.status().idle, 0);
    let newcomer = futures::FutureExt::now_or_never(pool.get());
    assert!(newcomer.is_none(), "newcomer overtook the waiter");
    assert_eq!(oldest.await.expect("test step"), id);
}

#[tokio::test(start_paused = true)]
async fn handoff_skips_a_cancelled_waiter() {
    let pool = pool(1, Fairness::Strict);
    let held = pool.get().await.expect("test step");
    let p = pool.clone();
    let cancelled = tokio::spawn(async move { p.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    let p = pool.clone();
    let second = tokio::spawn(async move { p.get().await.map(|c| c.id()) });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiting, 2);
    cancelled.abort();
    let _ = cancelled.await;
    assert_eq!(pool.status().waiting, 1);
    let id = held.id();
    drop(held);
    assert_eq!(second.await.expect("test step").expect("test step"), id);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.waiting), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn throughput_mode_lets_a_newcomer_take_an_idle_connection() {
    let pool = pool(1, Fairness::Throughput);
    let held = pool.get().await.expect("test step");
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiting, 1);
    drop(held);
    // Barging: the newcomer asks before the woken waiter runs, and wins.
    let barger = pool.get().await.expect("test step");
    assert_eq!(pool.status().waiting, 1);
    drop(barger);
    waiter.await.expect("test step").expect("test step");
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.waiting), (1, 1, 0));
}
