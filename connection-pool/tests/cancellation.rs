//! A storm of cancelled `get` calls interleaved with holders leaves the pool consistent.

mod support;

use std::time::Duration;

use connection_pool::{CancelledValidation, Fairness, Pool, PoolConfig};
use support::Mem;

async fn storm(fairness: Fairness, validate: bool) {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(4)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .validate_timeout(validate.then_some(Duration::from_millis(50)))
        .recycle_window(Duration::ZERO)
        .fairness(fairness)
        .build()
        .expect("test step");
    // Connects take time too, so cancellation also hits the create path.
    knobs
        .connect_delay_ms
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let pool = Pool::new(mem, cfg).expect("test step");
    let mut tasks = Vec::new();
    for i in 0..3000u64 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let pool = p;
            if i % 7 == 0 {
                // A holder: keeps a connection a little while.
                if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(20), pool.get()).await
                {
                    tokio::time::sleep(Duration::from_micros(300 * (i % 5))).await;
                    drop(c);
                }
            } else {
                let tiny = Duration::from_micros(50 * (i % 13));
                let _ = tokio::time::timeout(tiny, pool.get()).await;
            }
            assert!(pool.status().size <= 4);
        }));
        if i % 50 == 0 {
            tokio::task::yield_now().await;
            let s = pool.status();
            assert!(s.size <= s.max_size, "{s}");
        }
    }
    for t in tasks {
        t.await.expect("test step");
    }
    let s = pool.status();
    assert_eq!(s.waiting, 0, "{s}");
    assert_eq!(s.in_use, 0, "every slot given back: {s}");
    assert_eq!(s.idle, s.size, "{s}");
    assert!(s.size <= 4, "{s}");
    // Every slot can be taken again at once: none leaked.
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(
            tokio::time::timeout(Duration::from_secs(1), pool.get())
                .await
                .expect("test step")
                .expect("test step"),
        );
    }
    assert_eq!(pool.status().size, 4);
    drop(all);
    assert_eq!(pool.status().idle, 4);
}

#[tokio::test(start_paused = true)]
async fn strict_storm_keeps_invariants() {
    storm(Fairness::Strict, false).await;
}

#[tokio::test(start_paused = true)]
async fn strict_storm_with_validation_keeps_invariants() {
    storm(Fairness::Strict, true).await;
}

#[tokio::test(start_paused = true)]
async fn throughput_storm_keeps_invariants() {
    storm(Fairness::Throughput, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread_handoff_stress() {
    let cfg = PoolConfig::builder()
        .max_size(3)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .build()
        .expect("test step");
    let pool = Pool::new(Mem::new(), cfg).expect("test step");
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..300u64 {
                if (i + j) % 5 == 0 {
                    let _ = tokio::time::timeout(Duration::from_micros(10), pool.get()).await;
                } else {
                    let c = pool.get().await.expect("test step");
                    tokio::task::yield_now().await;
                    drop(c);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("test step");
    }
    let s = pool.status();
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s}");
    assert!(s.size <= 3 && s.idle == s.size, "{s}");
}

fn one_slot_pool() -> (Pool<Mem>, std::sync::Arc<support::Knobs>) {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .create_timeout(Duration::from_millis(500))
        .validate_timeout(Some(Duration::from_secs(1)))
        .recycle_window(Duration::ZERO)
        .build()
        .expect("test step");
    (Pool::new(mem, cfg).expect("test step"), knobs)
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_validation_discards_and_frees_the_slot() {
    use std::sync::atomic::Ordering;
    let (pool, knobs) = one_slot_pool();
    drop(pool.get().await.expect("test step"));
    knobs.probe_delay_ms.store(100, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
    assert!(gave_up.is_err());
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use), (0, 0, 0), "{s}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        knobs.closes.load(Ordering::SeqCst),
        1,
        "closed, not just dropped"
    );
    knobs.probe_delay_ms.store(0, Ordering::SeqCst);
    let c = pool.get().await.expect("test step");
    assert_eq!(knobs.connects.load(Ordering::SeqCst), 2);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_validation_can_return_the_connection() {
    use std::sync::atomic::Ordering;
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .validate_timeout(Some(Duration::from_secs(1)))
        .recycle_window(Duration::from_secs(10))
        .cancelled_validation(CancelledValidation::Return)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    drop(pool.get().await.expect("test step"));
    tokio::time::sleep(Duration::from_secs(11)).await;
    knobs.probe_delay_ms.store(100, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
    assert!(gave_up.is_err());
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use), (1, 1, 0), "returned: {s}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(knobs.closes.load(Ordering::SeqCst), 0);

    knobs.probe_delay_ms.store(0, Ordering::SeqCst);
    let c = pool.get().await.expect("test step");
    assert_eq!(
        knobs.connects.load(Ordering::SeqCst),
        1,
        "the same connection"
    );
    // The abandoned probe vouched for nothing: this checkout probed it again, though
    // within `recycle_window` of its return.
    assert_eq!(knobs.probes.load(Ordering::SeqCst), 2);
    drop(c);
}

#[tokio::test(start_paused = true)]
async fn cancelled_during_connect_frees_the_slot_for_a_waiter() {
    use std::sync::atomic::Ordering;
    let (pool, knobs) = one_slot_pool();
    knobs.connect_delay_ms.store(100, Ordering::SeqCst);
    let p = pool.clone();
    let connecting = tokio::spawn(async move { p.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiting, 1);
    connecting.abort();
    let _ = connecting.await;
    // The freed slot went to the waiter as the right to connect.
    waiter.await.expect("test step").expect("test step");
    assert_eq!(knobs.connects.load(Ordering::SeqCst), 2);
    assert_eq!(pool.status().idle, 1);
}

#[tokio::test(start_paused = true)]
async fn create_timeout_is_a_connect_error() {
    use std::sync::atomic::Ordering;
    let (pool, knobs) = one_slot_pool();
    knobs.connect_delay_ms.store(10_000, Ordering::SeqCst);
    let err = pool.get().await.expect_err("connect takes too long");
    let connection_pool::PoolError::Connect { source } = &err else {
        panic!("expected a connect error, got {err}");
    };
    assert!(source.is_timeout(), "{source}");
    assert_eq!(pool.status().size, 0);
}

#[tokio::test(start_paused = true)]
async fn a_connecting_get_takes_a_connection_returned_first() {
    use connection_core::Connection;
    use std::sync::atomic::Ordering;
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(2)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .create_timeout(Duration::from_millis(500))
        .validate_timeout(None)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    let held = pool.get().await.expect("test step");
    knobs.connect_delay_ms.store(100, Ordering::SeqCst);
    let p = pool.clone();
    let started = tokio::time::Instant::now();
    let second = tokio::spawn(async move {
        let c = p.get().await.expect("test step");
        (started.elapsed(), c.id())
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Connecting, not waiting.
    let s = pool.status();
    assert_eq!((s.size, s.waiting), (2, 0), "{s}");
    let first_id = held.id();
    drop(held);
    let (took, id) = second.await.expect("test step");
    // Served by the handoff, long before its own connect would finish.
    assert!(took < Duration::from_millis(50), "{took:?}");
    assert_eq!(id, first_id);
    // The losing connect finishes in the background and, with nobody waiting and
    // enough idle, is closed: the pool settles at one connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(knobs.connects.load(Ordering::SeqCst), 2);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.in_use, s.waiting), (1, 1, 0, 0), "{s}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_racing_connect_frees_its_slot_and_queue_place() {
    use std::sync::atomic::Ordering;
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(2)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(None)
        .create_timeout(Duration::from_millis(500))
        .validate_timeout(None)
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    let held = pool.get().await.expect("test step");
    knobs.connect_delay_ms.store(100, Ordering::SeqCst);
    let gave_up = tokio::time::timeout(Duration::from_millis(10), pool.get()).await;
    assert!(gave_up.is_err());
    let s = pool.status();
    assert_eq!((s.size, s.in_use, s.waiting), (1, 1, 0), "{s}");
    drop(held);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1), "{s}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pool.status().size, 1);
}
