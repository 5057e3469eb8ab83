//! The breaker around a real TCP transport on 127.0.0.1.

use std::time::Duration;

use connection_core::{Connection, Error, RejectReason, Transport};
use connection_retry::breaker::{CircuitBreak, CircuitBreaker, CircuitState};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};

#[tokio::test(start_paused = true)]
async fn refused_connects_trip_it_and_a_probe_closes_it_after_restart() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let inner = TcpEchoTransport::new(server.addr()).unwrap();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(3)
        .wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let transport = CircuitBreak::new(inner.clone(), breaker.clone());
    assert_eq!(transport.endpoint(), inner.endpoint());

    let mut conn = transport.connect().await.unwrap();
    conn.probe().await.unwrap();
    conn.close().await.unwrap();
    server.stop().await;

    for _ in 0..3 {
        match transport.connect().await {
            Err(Error::Connect { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a refused connect, got {other:?}"),
        }
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(inner.attempts(), 4);

    // Rejected without touching the socket, naming the endpoint and the wait.
    for _ in 0..5 {
        match transport.connect().await {
            Err(Error::Rejected(r)) => {
                assert_eq!(r.reason, RejectReason::CircuitOpen);
                assert_eq!(r.endpoint.as_ref(), Some(inner.endpoint()));
                assert_eq!(r.retry_after, Some(Duration::from_secs(5)));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(inner.attempts(), 4);

    tokio::time::advance(Duration::from_secs(5)).await;
    server.restart().await.unwrap();
    let mut conn = transport.connect().await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    conn.probe().await.unwrap();
    assert_eq!(inner.attempts(), 5);

    let s = breaker.stats();
    assert_eq!(
        (s.successes, s.failures, s.rejections, s.trips),
        (2, 3, 5, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_breaker() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    server.stop().await;
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let a = CircuitBreak::new(TcpEchoTransport::new(addr).unwrap(), breaker);
    let b = a.clone();
    assert!(matches!(a.connect().await, Err(Error::Connect { .. })));
    assert!(matches!(b.connect().await, Err(Error::Rejected(_))));
    assert!(b.breaker().state().is_open());
    assert!(format!("{a:?}").contains("CircuitBreak"));
}
