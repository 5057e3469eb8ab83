//! `resize` on paused time: growing serves waiters at once, shrinking closes idle
//! connections now and in-use ones as they come back, and the cap holds afterwards.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_pool::{Fairness, Pool, PoolConfig};
use support::Mem;

const MS: Duration = Duration::from_millis(1);

fn pool(mem: Mem, max: usize, fairness: Fairness) -> Pool<Mem> {
    let cfg = PoolConfig::builder()
        .max_size(max)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(Some(Duration::from_secs(5)))
        .fairness(fairness)
        .build()
        .expect("test step");
    Pool::new(mem, cfg).expect("test step")
}

async fn growing_admits_waiters_at_once(fairness: Fairness) {
    let pool = pool(Mem::new(), 1, fairness);
    let held = pool.get().await.expect("test step");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let p = pool.clone();
            tokio::spawn(async move { p.get().await.map(drop) })
        })
        .collect();
    tokio::time::sleep(MS).await;
    assert_eq!(pool.status().waiting, 2);
    let before = tokio::time::Instant::now();
    pool.resize(3).expect("test step");
    for w in waiters {
        w.await
            .expect("test step")
            .expect("served after the resize");
    }
    // Served by the new room, not by the held guard coming back or a timeout.
    assert!(before.elapsed() < Duration::from_millis(10));
    let s = pool.status();
    assert_eq!((s.max_size, s.in_use, s.waiting), (3, 1, 0), "{s}");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn growing_admits_strict_waiters_at_once() {
    growing_admits_waiters_at_once(Fairness::Strict).await;
}

#[tokio::test(start_paused = true)]
async fn growing_admits_barging_waiters_at_once() {
    growing_admits_waiters_at_once(Fairness::Throughput).await;
}

#[tokio::test(start_paused = true)]
async fn shrinking_closes_idle_now_and_in_use_on_return() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let pool = pool(mem, 6, Fairness::Strict);
    let mut guards: Vec<_> = futures::future::join_all((0..6).map(|_| pool.get()))
        .await
        .into_iter()
        .map(|g| g.expect("test step"))
        .collect();
    // Three idle, three in use.
    guards.truncate(3);
    assert_eq!(pool.status().idle, 3);

    pool.resize(2).expect("test step");
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use, s.max_size), (3, 0, 3, 2), "{s}");
    tokio::time::sleep(MS).await;
    assert_eq!(
        knobs.closes.load(Ordering::SeqCst),
        3,
        "idle ones closed now"
    );

    // A waiter is not served by a surplus connection coming back.
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(drop) });
    tokio::time::sleep(MS).await;
    drop(guards.pop());
    tokio::time::sleep(MS).await;
    let s = pool.status();
    assert_eq!((s.size, s.in_use, s.waiting), (2, 2, 1), "{s}");
    assert_eq!(knobs.closes.load(Ordering::SeqCst), 4);

    // At the cap again: the next one back goes to the waiter.
    drop(guards.pop());
    waiter
        .await
        .expect("test step")
        .expect("served at the new cap");
    drop(guards);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (2, 2), "{s}");
    assert_eq!(pool.metrics().closed.idle, 4);

    // Never above the new cap afterwards.
    let burst = futures::future::join_all((0..5).map(|_| {
        let p = pool.clone();
        async move {
            let g = p.get().await;
            assert!(p.status().size <= 2, "{}", p.status());
            tokio::time::sleep(MS).await;
            g.map(drop)
        }
    }))
    .await;
    assert!(burst.iter().all(Result::is_ok));
    assert!(pool.status().size <= 2);
}

#[tokio::test]
async fn bad_sizes_are_refused() {
    let cfg = PoolConfig::builder()
        .max_size(4)
        .min_idle(2)
        .build()
        .expect("test step");
    let pool = Pool::new(Mem::new(), cfg).expect("test step");
    assert_eq!(pool.resize(0).unwrap_err().field(), "max_size");
    assert_eq!(pool.resize(1).unwrap_err().field(), "max_size");
    pool.resize(2).expect("test step");
    assert_eq!(pool.status().max_size, 2);
}
