//! The bulkhead refuses past its queue, serves waiters, and forgets cancelled ones.

use std::time::Duration;

use connection_core::{Error, RejectReason};
use connection_retry::bulkhead::{Bulkhead, BulkheadConfig};

#[tokio::test(start_paused = true)]
async fn queue_is_bounded_and_cancelled_waiters_leave_it() {
    let bulkhead = Bulkhead::builder(1).max_queue(2).build().unwrap();
    let held = bulkhead.acquire().await.unwrap();
    let w1 = tokio::spawn({
        let b = bulkhead.clone();
        async move { b.acquire().await.map(drop) }
    });
    let w2 = tokio::spawn({
        let b = bulkhead.clone();
        async move {
            tokio::time::timeout(Duration::from_millis(50), b.acquire())
                .await
                .is_err()
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(bulkhead.queued(), 2);
    let refused = bulkhead.acquire().await.unwrap_err();
    assert_eq!(refused.reason, RejectReason::BulkheadFull);

    // w2 gives up; its queue place is freed.
    assert!(w2.await.unwrap());
    assert_eq!(bulkhead.queued(), 1);
    drop(held);
    w1.await.unwrap().unwrap();
    assert_eq!(bulkhead.queued(), 0);
    assert_eq!(bulkhead.available(), 1);
}

#[tokio::test]
async fn run_returns_refusals_in_the_callers_error_type() {
    let bulkhead = Bulkhead::builder(1).build().unwrap();
    let _held = bulkhead.try_acquire().unwrap();
    let result: Result<(), Error> = bulkhead.run(|| async { Ok(()) }).await;
    assert!(matches!(result, Err(Error::Rejected(r)) if r.reason == RejectReason::BulkheadFull));
}

#[test]
fn settings_are_validated() {
    assert_eq!(
        Bulkhead::builder(0).build().unwrap_err().field(),
        "max_concurrent"
    );
    assert_eq!(
        Bulkhead::builder(1)
            .max_wait(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "max_wait"
    );
    let cfg: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 0}"#).unwrap();
    assert_eq!(cfg.build().unwrap_err().field(), "max_concurrent");
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{"max_concurent": 1}"#).is_err());
}
