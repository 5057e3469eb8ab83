//! Errors say why: wait timeout with status, connect failure with the transport's error,
//! closed.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_core::{Error, ErrorKind, Operation};
use connection_pool::{Pool, PoolConfig, PoolError};
use support::Mem;

fn cfg(max: usize) -> PoolConfig {
    PoolConfig::builder()
        .max_size(max)
        .idle_timeout(None)
        .max_lifetime(None)
        .wait_timeout(Some(Duration::from_millis(100)))
        .build()
        .expect("test step")
}

#[tokio::test(start_paused = true)]
async fn wait_timeout_carries_status() {
    let pool = Pool::new(Mem::new(), cfg(2)).expect("test step");
    let _a = pool.get().await.expect("test step");
    let _b = pool.get().await.expect("test step");
    let started = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let PoolError::Timeout {
        status,
        last_connect_error,
        ..
    } = &err
    else {
        panic!("expected a timeout, got {err}");
    };
    assert_eq!(
        (status.size, status.in_use, status.idle, status.max_size),
        (2, 2, 0, 2)
    );
    assert_eq!(
        status.waiting, 0,
        "taken after the caller left the queue: {status}"
    );
    assert!(last_connect_error.is_none());
    assert!(err.is_timeout() && err.is_retryable());
    assert!(err.to_string().contains("size 2/2"), "{err}");
    let m = pool.metrics();
    assert_eq!((m.gets, m.waited, m.timed_out), (3, 1, 1));
    assert_eq!(pool.status().waiting, 0);
    let core: connection_core::Error = err.into();
    assert!(core.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn connect_failure_reaches_the_caller_and_frees_the_slot() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let pool = Pool::new(mem, cfg(1)).expect("test step");
    knobs.fail_connect.store(true, Ordering::SeqCst);
    let err = pool.get().await.unwrap_err();
    let PoolError::Connect { source } = &err else {
        panic!("expected a connect error, got {err}");
    };
    assert!(
        matches!(source, connection_core::Error::Connect { .. }),
        "{source}"
    );
    assert_eq!(pool.status().size, 0);
    knobs.fail_connect.store(false, Ordering::SeqCst);
    let _c = pool.get().await.expect("test step");
    assert_eq!(pool.metrics().create_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_carries_the_last_connect_error() {
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let pool = Pool::new(mem, cfg(1)).expect("test step");
    knobs.fail_connect.store(true, Ordering::SeqCst);
    assert!(pool.get().await.is_err());
    knobs.fail_connect.store(false, Ordering::SeqCst);
    let _held = pool.get().await.expect("test step");
    let err = pool.get().await.unwrap_err();
    let PoolError::Timeout {
        last_connect_error: Some(last),
        ..
    } = &err
    else {
        panic!("expected a timeout with a connect error, got {err}");
    };
    assert!(last.to_string().contains("refused"), "{last}");
    assert_eq!(
        last.kind(),
        ErrorKind::Connect,
        "kept with its kind: {last:?}"
    );

    // In core's error: a pool-wait timeout whose source is that connect error, kind and
    // all, not a string.
    let core: Error = err.into();
    assert_eq!(
        core.timeout_operation(),
        Some(Operation::PoolWait),
        "{core:?}"
    );
    assert!(core.is_retryable());
    let Error::Timeout {
        cause: Some(cause), ..
    } = &core
    else {
        panic!("expected the cause: {core:?}");
    };
    assert_eq!(cause.kind(), ErrorKind::Connect);
    let source = std::error::Error::source(&core).expect("a source");
    assert!(source.to_string().contains("refused"), "{source}");
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_and_later_gets() {
    let cfg = PoolConfig::builder()
        .max_size(1)
        .wait_timeout(None)
        .idle_timeout(None)
        .max_lifetime(None)
        .build()
        .expect("test step");
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let pool = Pool::new(mem, cfg).expect("test step");
    let held = pool.get().await.expect("test step");
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.get().await.map(|_| ()) });
    tokio::task::yield_now().await;
    pool.close().await;
    assert!(matches!(
        waiter.await.expect("test step"),
        Err(PoolError::Closed { .. })
    ));
    assert!(matches!(pool.get().await, Err(PoolError::Closed { .. })));
    drop(held);
    tokio::task::yield_now().await;
    assert_eq!(pool.status().size, 0);
    assert_eq!(
        knobs.closes.load(Ordering::SeqCst),
        1,
        "returned connection closed"
    );
}

#[test]
fn builder_names_the_bad_field() {
    let err = Pool::builder(Mem::new()).max_size(0).spawn().unwrap_err();
    assert_eq!(err.field(), "max_size");
    // The maintainer needs a runtime; outside one the setting that needs it is named.
    let err = Pool::builder(Mem::new()).min_idle(1).spawn().unwrap_err();
    assert_eq!(err.field(), "min_idle");
}

#[tokio::test(start_paused = true)]
async fn metrics_snapshot_serializes() {
    let pool = Pool::new(Mem::new(), cfg(2)).expect("test step");
    let c = pool.get().await.expect("test step");
    let json = serde_json::to_value(pool.metrics()).expect("test step");
    assert_eq!(json["status"]["in_use"], 1);
    assert_eq!(json["gets"], 1);
    assert_eq!(json["created"], 1);
    assert_eq!(json["closed"]["broken"], 0);
    assert!(json["wait_time"]["p99_seconds"].is_number(), "{json}");
    drop(c);
}
