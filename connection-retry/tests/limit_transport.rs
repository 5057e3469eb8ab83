//! Rate-limited and concurrency-limited transports on real loopback sockets.

use std::time::Duration;

use connection_core::{Error, RejectReason, Transport};
use connection_retry::bulkhead::{Bulkhead, ConcurrencyLimit};
use connection_retry::limit::{KeyedRateLimit, LimitMode, Quota, RateLimit, RateLimiter};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn clones_of_a_rate_limited_transport_share_one_quota() {
    let server = TcpEchoServer::start().await.unwrap();
    let limiter = RateLimiter::new(Quota::per_second(2, 1).unwrap());
    let a = RateLimit::new(TcpEchoTransport::new(server.addr()).unwrap(), limiter);
    let b = a.clone();
    let started = Instant::now();
    let _c1 = a.connect().await.unwrap();
    let _c2 = b.connect().await.unwrap();
    let _c3 = a.connect().await.unwrap();
    // One at once, then one every 500 ms, whichever clone asks.
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    accepted(&server, 3).await;
}

/// The server counts a connection when its accept task runs, which can be just after
/// the client's connect returns.
async fn accepted(server: &TcpEchoServer, n: u64) {
    for _ in 0..1000 {
        if server.accepted() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "server accepted {} connections, expected {n}",
        server.accepted()
    );
}

#[tokio::test(start_paused = true)]
async fn fail_fast_refusal_names_the_endpoint_and_skips_the_socket() {
    let server = TcpEchoServer::start().await.unwrap();
    let inner = TcpEchoTransport::new(server.addr()).unwrap();
    let limiter = RateLimiter::builder(Quota::per_minute(1, 1).unwrap())
        .mode(LimitMode::FailFast)
        .build();
    let t = RateLimit::new(inner.clone(), limiter);
    t.connect().await.unwrap();
    let err = t.connect().await.unwrap_err();
    let Error::Rejected(r) = &err else {
        panic!("{err}")
    };
    assert_eq!(r.reason, RejectReason::RateLimited);
    assert_eq!(r.endpoint.as_ref(), Some(inner.endpoint()));
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(
        inner.attempts(),
        1,
        "a refused connect never touches the socket"
    );
}

#[tokio::test(start_paused = true)]
async fn keyed_limits_each_endpoint_separately() {
    let (s1, s2) = (
        TcpEchoServer::start().await.unwrap(),
        TcpEchoServer::start().await.unwrap(),
    );
    let per_host = RateLimiter::builder(Quota::per_second(1, 1).unwrap())
        .mode(LimitMode::FailFast)
        .build_keyed();
    let t1 = KeyedRateLimit::new(TcpEchoTransport::new(s1.addr()).unwrap(), per_host.clone());
    let t2 = KeyedRateLimit::new(TcpEchoTransport::new(s2.addr()).unwrap(), per_host.clone());
    t1.connect().await.unwrap();
    t2.connect().await.unwrap();
    assert!(t1.connect().await.is_err());
    assert_eq!(per_host.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_bounds_open_connections() {
    let server = TcpEchoServer::start().await.unwrap();
    let bulkhead = Bulkhead::builder(2)
        .max_queue(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let t = ConcurrencyLimit::new(
        TcpEchoTransport::new(server.addr()).unwrap(),
        bulkhead.clone(),
    );
    let c1 = t.connect().await.unwrap();
    let _c2 = t.connect().await.unwrap();
    assert_eq!(bulkhead.available(), 0);

    // A third waits for a slot and times out while both connections stay open.
    let started = Instant::now();
    let err = t.connect().await.unwrap_err();
    assert!(
        matches!(&err, Error::Rejected(r) if r.reason == RejectReason::BulkheadFull),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // Dropping a connection frees its slot for the waiter.
    let waiter = tokio::spawn({
        let t = t.clone();
        async move { t.connect().await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(bulkhead.queued(), 1);
    drop(c1);
    waiter.await.unwrap().unwrap();
    accepted(&server, 3).await;
}
