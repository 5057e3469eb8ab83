//! The circuit breaker and the rate limiter: shared by every clone of a client, counted
//! in the metrics; and the time limits (request, read, connect), per client and per
//! request. Real servers on 127.0.0.1, paused time.

mod support;

use std::time::Duration;

use connection_core::RejectReason;
use connection_transport_http::{
    CircuitState, HttpClient, HttpError, HttpRequest, RateLimiter, TimeoutKind,
};
use support::{HttpServer, text};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_under_a_failing_endpoint_and_is_shared_by_clones() {
    let server = HttpServer::start(|_| async { text(500, "broken") }).await;
    let client = HttpClient::builder(server.url())
        .no_retries()
        .breaker(3, Duration::from_secs(10))
        .build_client()
        .expect("client");
    let clone = client.clone();
    for _ in 0..3 {
        assert_eq!(clone.get("/").await.expect("answered").status(), 500);
    }
    assert_eq!(server.requests(), 3);
    assert_eq!(
        client.circuit_breaker().expect("breaker").state(),
        CircuitState::Open
    );
    // The original fails fast: nothing reaches the server.
    let err = client.get("/").await.expect_err("circuit open");
    let HttpError::Rejected(refused) = &err else {
        panic!("expected a refusal, got {err}");
    };
    assert_eq!(refused.reason, RejectReason::CircuitOpen);
    assert!(refused.retry_after.is_some());
    assert_eq!(server.requests(), 3);
    let m = client.metrics();
    assert_eq!(
        (m.breaker_rejections, m.requests, m.errors),
        (1, 4, 4),
        "{m:?}"
    );
    let report = client.health_check().await;
    assert_eq!(report.circuit, Some("open"));

    // After the wait one probe goes through.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(client.get("/").await.expect("probe").status(), 500);
    assert_eq!(
        server.requests(),
        5,
        "the health check's probe and this one"
    );
}

#[tokio::test(start_paused = true)]
async fn a_4xx_does_not_trip_the_breaker_and_a_refusal_is_not_retried() {
    let server = HttpServer::start(|_| async { text(404, "no") }).await;
    let client = HttpClient::builder(server.url())
        .breaker(1, Duration::from_secs(10))
        .build_client()
        .expect("client");
    for _ in 0..5 {
        assert_eq!(client.get("/").await.expect("answered").status(), 404);
    }
    assert_eq!(
        client.circuit_breaker().expect("breaker").state(),
        CircuitState::Closed
    );
    // An open circuit fails fast even with retries on (no waiting out the breaker).
    client.circuit_breaker().expect("breaker").force_open();
    let started = Instant::now();
    let err = client.get("/").await.expect_err("refused");
    assert!(matches!(err, HttpError::Rejected(_)), "{err}");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_is_shared_by_clones_and_by_clients_given_the_same_limiter() {
    let server = HttpServer::ok("ok").await;
    let client = HttpClient::builder(server.url())
        .rate_limit(10, 1)
        .build_client()
        .expect("client");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                c.get("/").await.expect("ok");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Ten requests at ten a second with a burst of one: 0.9 s, whichever clone sent them.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1_000),
        "{took:?}"
    );
    assert_eq!(server.requests(), 10);

    // Two clients built with one limiter share its quota too.
    let limiter = RateLimiter::new(connection_retry::Quota::per_second(10, 1).expect("quota"));
    let a = HttpClient::builder(server.url())
        .rate_limiter(limiter.clone())
        .build_client()
        .expect("client");
    let b = HttpClient::builder(server.url())
        .rate_limiter(limiter)
        .build_client()
        .expect("client");
    let started = Instant::now();
    for _ in 0..3 {
        a.get("/").await.expect("ok");
        b.get("/").await.expect("ok");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(600),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fail_fast_limiter_refuses_and_is_counted() {
    let server = HttpServer::ok("ok").await;
    let limiter = RateLimiter::builder(connection_retry::Quota::per_second(1, 1).expect("quota"))
        .mode(connection_retry::limit::LimitMode::FailFast)
        .build();
    let client = HttpClient::builder(server.url())
        .rate_limiter(limiter)
        .build_client()
        .expect("client");
    client.get("/").await.expect("first");
    let err = client.get("/").await.expect_err("over the rate");
    let HttpError::Rejected(r) = &err else {
        panic!("{err}")
    };
    assert_eq!(r.reason, RejectReason::RateLimited);
    assert_eq!(client.metrics().limiter_rejections, 1);
    assert_eq!(server.requests(), 1);
}

/// Answers after `delay` (tokio time, so paused).
async fn slow(delay: Duration) -> HttpServer {
    HttpServer::start(move |_| async move {
        tokio::time::sleep(delay).await;
        text(200, "late")
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn request_timeouts_per_client_and_per_request() {
    let server = slow(Duration::from_secs(5)).await;
    let client = HttpClient::builder(server.url())
        .request_timeout(Duration::from_secs(1))
        .max_retries(1)
        .retry_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    let started = Instant::now();
    let err = client.get("/").await.expect_err("too slow");
    assert!(
        matches!(
            err,
            HttpError::Timeout {
                kind: TimeoutKind::Request,
                ..
            }
        ),
        "{err}"
    );
    // Two attempts of 1 s (a GET is retried after a timeout) and at most 100 ms between.
    assert!(started.elapsed() <= Duration::from_millis(2_100));
    assert_eq!(server.requests(), 2);

    // A request may allow more.
    let ok = client
        .send(HttpRequest::get("/").timeout(Duration::from_secs(6)))
        .await
        .expect("answered in 5 s");
    assert_eq!(ok.status(), 200);

    // The read limit: a silence longer than it fails the attempt.
    let err = client
        .send(
            HttpRequest::get("/")
                .timeout(Duration::from_secs(60))
                .read_timeout(Duration::from_millis(300)),
        )
        .await
        .expect_err("silent too long");
    assert!(
        matches!(
            err,
            HttpError::Timeout {
                kind: TimeoutKind::Read,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_hangs_is_cut_by_the_connect_timeout() {
    // A listener whose accept queue is full and never drained: further SYNs go
    // unanswered, so a connect hangs (loopback only, nothing leaves the machine).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(50),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let client = HttpClient::builder(format!("http://{addr}"))
        .connect_timeout(Duration::from_secs(2))
        .no_retries()
        .build_client()
        .expect("client");
    let err = client
        .send(HttpRequest::get("/").connect_timeout(Duration::from_millis(500)))
        .await
        .expect_err("never connects");
    assert!(
        matches!(
            err,
            HttpError::Timeout {
                kind: TimeoutKind::Connect,
                after,
                ..
            } if after == Duration::from_millis(500)
        ),
        "{err}"
    );
    assert!(err.is_connect_phase());
    drop(listener);
}
