//! The maintainer on paused time: min_idle, idle and lifetime eviction, keepalive and
//! refill with backoff and slow start.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_pool::{Pool, PoolConfig};
use support::Mem;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn keeps_min_idle_and_evicts_idle_beyond_it() {
    let cfg = PoolConfig::builder()
        .max_size(6)
        .min_idle(2)
        .idle_timeout(Some(Duration::from_secs(10)))
        .max_lifetime(None)
        .build()
        .expect("test step");
    let pool = Pool::new(Mem::new(), cfg).expect("test step");
    tokio::time::sleep(MS).await;
    assert_eq!(pool.status().idle, 2);
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.get())).await;
    drop(held);
    tokio::time::sleep(MS).await;
    assert!(pool.status().idle >= 5, "{}", pool.status());
    // Idle timeout plus at most one maintenance period.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let s = pool.status();
    assert_eq!(s.idle, 2, "{s}");
    assert!(pool.metrics().closed.idle >= 3);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_jittered_and_expired_connections_replaced() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    // 64 connections: each lifetime is drawn from [50, 100] s, so "none expired by 75 s"
    // or "all expired" has a chance of 2^-63 (with 8 it was 1 in 128: a flaky test).
    const N: usize = 64;
    let cfg = PoolConfig::builder()
        .max_size(N)
        .min_idle(N)
        .idle_timeout(None)
        .max_lifetime(Some(Duration::from_secs(100)))
        .lifetime_jitter(0.5)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    tokio::time::sleep(MS).await;
    assert_eq!(knobs.connects.load(Ordering::SeqCst), N as u64);
    // Jitter takes up to 50 s off: some expire early, not all at once.
    tokio::time::sleep(Duration::from_secs(75)).await;
    let lifetime = pool.metrics().closed.lifetime;
    assert!(
        (1..N as u64).contains(&lifetime),
        "{lifetime} expired at 75 s"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(pool.metrics().closed.lifetime >= N as u64);
    assert_eq!(pool.status().idle, N, "replaced");
}

#[tokio::test(start_paused = true)]
async fn keepalive_discards_dead_idle_connections() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(4)
        .min_idle(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .keepalive_interval(Some(Duration::from_secs(5)))
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    let held: Vec<_> = futures::future::join_all((0..3).map(|_| pool.get())).await;
    drop(held);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        knobs.probes.load(Ordering::SeqCst),
        3,
        "healthy ones probed"
    );
    assert_eq!(pool.status().idle, 3);
    knobs.dead.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = pool.status();
    assert_eq!((s.size, s.idle), (0, 0), "{s}");
    assert_eq!(pool.metrics().closed.failed_validation, 3);
}

#[tokio::test(start_paused = true)]
async fn refill_backs_off_then_slow_starts() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    knobs.fail_connect.store(true, Ordering::SeqCst);
    knobs.connect_delay_ms.store(10, Ordering::SeqCst);
    let cfg = PoolConfig::builder()
        .max_size(16)
        .min_idle(16)
        .idle_timeout(None)
        .max_lifetime(None)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    // First round: all 16 at once (nothing has failed yet), then one prober at a time
    // with growing, jittered pauses.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = knobs.connects.load(Ordering::SeqCst);
    // 16 + backoff attempts at ~[50,100] + [100,200] + [200,400] + [400,800] ms ...
    assert!((17..=16 + 8).contains(&attempts), "{attempts}");
    knobs.peak_in_flight.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        knobs.peak_in_flight.load(Ordering::SeqCst),
        1,
        "one prober at a time"
    );
    knobs.fail_connect.store(false, Ordering::SeqCst);
    knobs.peak_in_flight.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(pool.status().idle, 16);
    // Slow start: 1, 2, 4, 8 then the remaining 1, never 16 at once.
    assert_eq!(knobs.peak_in_flight.load(Ordering::SeqCst), 8);
}

#[tokio::test(start_paused = true)]
async fn maintainer_stops_with_the_last_handle() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(2)
        .min_idle(2)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    tokio::time::sleep(MS).await;
    let clone = pool.clone();
    drop(pool);
    tokio::time::sleep(MS).await;
    assert_eq!(clone.status().idle, 2, "still running with one handle");
    drop(clone);
    tokio::time::sleep(Duration::from_secs(120)).await;
    // Nothing left to observe but that no connect happened after the drop.
    assert_eq!(knobs.connects.load(Ordering::SeqCst), 2);
}
