//! Broken connections are discarded, not reused; detached ones leave the pool.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_core::{Connection, ConnectionState};
use connection_pool::{Pool, PoolConfig, QueueOrder};
use support::Mem;

fn pool(order: QueueOrder) -> (Pool<Mem>, std::sync::Arc<support::Knobs>) {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(2)
        .idle_timeout(None)
        .max_lifetime(None)
        .queue_order(order)
        .build()
        .expect("test step");
    (Pool::new(mem, cfg).expect("test step"), knobs)
}

#[tokio::test(start_paused = true)]
async fn marked_broken_is_discarded() {
    let (pool, knobs) = pool(QueueOrder::Lifo);
    let mut c = pool.get().await.expect("test step");
    let id = c.id();
    c.mark_broken();
    drop(c);
    tokio::task::yield_now().await;
    assert_eq!(pool.status().size, 0);
    assert_eq!(knobs.closes.load(Ordering::SeqCst), 1);
    let c = pool.get().await.expect("test step");
    assert_ne!(c.id(), id);
    assert_eq!(pool.metrics().closed.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn connection_reporting_failed_state_is_discarded() {
    let (pool, _) = pool(QueueOrder::Lifo);
    let mut c = pool.get().await.expect("test step");
    let id = c.id();
    c.state = ConnectionState::Failed;
    drop(c);
    let c = pool.get().await.expect("test step");
    assert_ne!(c.id(), id);
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn detach_frees_the_slot() {
    let (pool, _) = pool(QueueOrder::Lifo);
    let a = pool.get().await.expect("test step");
    let b = pool.get().await.expect("test step");
    let conn = a.detach();
    assert_eq!(pool.status().size, 1);
    let c = pool.get().await.expect("test step");
    assert_ne!(c.id(), conn.id());
    drop((b, c));
    assert_eq!(pool.status().idle, 2);
}

#[tokio::test(start_paused = true)]
async fn lifo_and_fifo_reuse_orders() {
    for (order, expect_first) in [(QueueOrder::Lifo, 1), (QueueOrder::Fifo, 0)] {
        let (pool, _) = pool(order);
        let a = pool.get().await.expect("test step");
        let b = pool.get().await.expect("test step");
        let ids = [a.id(), b.id()];
        drop(a);
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(b);
        let c = pool.get().await.expect("test step");
        assert_eq!(c.id(), ids[expect_first], "{order:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn validation_failure_on_checkout_reconnects_in_the_same_slot() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let cfg = PoolConfig::builder()
        .max_size(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .recycle_window(Duration::from_millis(100))
        .build()
        .expect("test step");
    let pool = Pool::new(mem, cfg).expect("test step");
    let id = pool.get().await.expect("test step").id();
    // Used within the window: no probe.
    assert_eq!(pool.get().await.expect("test step").id(), id);
    assert_eq!(knobs.probes.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    knobs.dead.store(true, Ordering::SeqCst);
    let c = pool.get().await.expect("test step");
    assert_ne!(c.id(), id);
    assert_eq!(knobs.probes.load(Ordering::SeqCst), 1);
    assert_eq!(pool.metrics().closed.failed_validation, 1);
    assert_eq!(pool.status().size, 1);
}
