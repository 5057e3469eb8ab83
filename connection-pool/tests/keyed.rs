//! KeyedPool: per-key max, a total across keys, and room made from cold keys.

mod support;

use std::time::Duration;

use connection_pool::{KeyedPool, PoolConfig};
use support::Mem;

fn keyed(per_key: usize, total: usize) -> KeyedPool<&'static str, Mem> {
    let cfg = PoolConfig::builder()
        .max_size(per_key)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(Some(Duration::from_secs(1)))
        .build()
        .expect("test step");
    KeyedPool::new(cfg, total, |_: &&str| Mem::new()).expect("test step")
}

#[tokio::test(start_paused = true)]
async fn per_key_and_total_caps_hold() {
    let pools = keyed(3, 4);
    let a: Vec<_> = futures::future::join_all((0..3).map(|_| pools.get(&"a"))).await;
    assert!(a.iter().all(Result::is_ok));
    // Per-key max: a fourth for "a" waits and times out.
    assert!(pools.get(&"a").await.expect_err("per-key cap").is_timeout());
    let b = pools.get(&"b").await.expect("test step");
    assert_eq!(pools.total(), 4);
    // Total reached, nothing idle anywhere: "c" waits.
    assert!(pools.get(&"c").await.expect_err("total cap").is_timeout());
    assert_eq!(pools.status(&"c").map(|s| s.size), Some(0));
    drop((a, b));
    assert_eq!(pools.total(), 4);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_of_a_cold_key_make_room() {
    let pools = keyed(4, 4);
    let a: Vec<_> = futures::future::join_all((0..4).map(|_| pools.get(&"a"))).await;
    drop(a);
    assert_eq!(pools.status(&"a").map(|s| s.idle), Some(4));
    let b = pools.get(&"b").await.expect("room made from a");
    assert_eq!(pools.status(&"a").map(|s| s.size), Some(3));
    assert_eq!(pools.total(), 4);
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_key_gets_the_next_connection_returned_elsewhere() {
    let pools = keyed(4, 2);
    let a1 = pools.get(&"a").await.expect("test step");
    let a2 = pools.get(&"a").await.expect("test step");
    let p = pools.clone();
    let b = tokio::spawn(async move { p.get(&"b").await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert_eq!(pools.status(&"b").map(|s| s.waiting), Some(1));
    // Nobody waits on "a": its returned connection is closed and "b" gets the room.
    drop(a1);
    b.await
        .expect("test step")
        .expect("served after a returned one");
    assert_eq!(pools.status(&"a").map(|s| s.size), Some(1));
    assert!(pools.total() <= 2);
    drop(a2);
}

#[tokio::test(start_paused = true)]
async fn total_cap_holds_under_a_storm_of_keys() {
    let pools = keyed(3, 5);
    let keys = ["a", "b", "c", "d"];
    let mut tasks = Vec::new();
    for i in 0..400usize {
        let p = pools.clone();
        let key = keys[i % 4];
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(5), p.get(&key)).await {
                tokio::time::sleep(Duration::from_millis((i % 3) as u64)).await;
                drop(c);
            }
            assert!(p.total() <= 5);
        }));
    }
    for t in tasks {
        t.await.expect("test step");
    }
    assert!(pools.total() <= 5);
    let mut size = 0;
    for k in keys {
        let s = pools.status(&k).expect("used");
        assert_eq!((s.in_use, s.waiting), (0, 0), "{k}: {s}");
        size += s.size;
    }
    assert_eq!(size, pools.total());
}

#[test]
fn zero_total_is_refused() {
    let err = KeyedPool::new(PoolConfig::default(), 0, |_: &u8| Mem::new()).expect_err("zero");
    assert_eq!(err.field(), "total_max");
}
