//! What is retried and when: Retry-After in both forms and its cap, idempotency (POST
//! only with a key or an opt-in), streaming bodies never, refused connects always, the
//! retry budget. Servers are real, on 127.0.0.1; time is paused.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use connection_retry::RetryBudget;
use connection_retry::backoff::BackoffStrategy;
use connection_transport_http::{
    Body, HttpClient, HttpError, HttpRequest, Method, NotRetried, RetryMode, RetryPolicy,
};
use support::{HttpServer, text, with_header};
use tokio::time::Instant;

/// 503 with `Retry-After: <value>` for the first request, 200 after.
async fn busy_once(retry_after: impl Fn() -> String + Send + Sync + 'static) -> HttpServer {
    HttpServer::start(move |req| {
        let value = retry_after();
        async move {
            if req.n == 1 {
                with_header(503, "retry-after", value)
            } else {
                text(200, "ok")
            }
        }
    })
    .await
}

fn client(server: &HttpServer) -> HttpClient {
    HttpClient::builder(server.url())
        .no_circuit_breaker()
        .build_client()
        .expect("client")
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_in_seconds_waits_what_the_server_asked() {
    let server = busy_once(|| "2".to_owned()).await;
    let client = client(&server);
    let started = Instant::now();
    let response = client.get("/").await.expect("response");
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(response.attempts(), 2);
    assert_eq!(server.requests(), 2);
    // Our own backoff would have waited at most 100 ms.
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2_100),
        "{waited:?}"
    );
    assert_eq!(client.metrics().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_as_an_http_date_waits_until_that_date() {
    // The date is on the wall clock (one-second resolution), the wait on tokio's.
    let server =
        busy_once(|| httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3))).await;
    let client = client(&server);
    let started = Instant::now();
    let response = client.get("/").await.expect("response");
    let waited = started.elapsed();
    assert_eq!((response.status().as_u16(), server.requests()), (200, 2));
    assert!(
        waited >= Duration::from_secs(2) && waited <= Duration::from_millis(3_100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_waits_only_the_cap() {
    let server = busy_once(|| "3600".to_owned()).await;
    let client = HttpClient::builder(server.url())
        .retry_after_max(Duration::from_secs(1))
        .build_client()
        .expect("client");
    let started = Instant::now();
    let response = client.get("/").await.expect("response");
    let waited = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1_100),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_and_the_last_response_is_returned() {
    let server = HttpServer::start(|_| async { with_header(503, "retry-after", "1".into()) }).await;
    let client = HttpClient::builder(server.url())
        .max_retries(2)
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    let response = client.get("/").await.expect("a response, not an error");
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 3));
    assert_eq!(server.requests(), 3);
    let err = response.error_for_status().expect_err("503");
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_post_without_an_idempotency_key_is_not_retried() {
    let server = busy_once(|| "1".to_owned()).await;
    let client = client(&server);
    let response = client
        .send(HttpRequest::new(Method::POST, "/orders").body("item=1"))
        .await
        .expect("response");
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
    assert_eq!(server.requests(), 1);
    // The server answers the next one; post_json checks the status for us.
    let ok = client
        .post_json("/orders", &serde_json::json!({"item": 1}))
        .await
        .expect("second request answered 200");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_or_an_opt_in_is_retried() {
    let server = busy_once(|| "1".to_owned()).await;
    let client = client(&server);
    let response = client
        .request(Method::POST, "/orders")
        .idempotency_key("order-1")
        .json(&serde_json::json!({"item": 1}))
        .send()
        .await
        .expect("response");
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));

    let server = busy_once(|| "1".to_owned()).await;
    let client = self::client(&server);
    let response = client
        .request(Method::PATCH, "/orders/1")
        .retry(RetryMode::Always)
        .body("qty=2")
        .send()
        .await
        .expect("response");
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));

    // And a GET that opts out is not.
    let server = busy_once(|| "1".to_owned()).await;
    let client = self::client(&server);
    let response = client
        .send(HttpRequest::get("/").retry(RetryMode::Never))
        .await
        .expect("response");
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 1));
}

#[tokio::test(start_paused = true)]
async fn a_connection_lost_under_a_post_is_not_retried_and_the_error_says_why() {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    // Reads each request and drops the connection without an answer.
    let server = connection_testkit::LoopbackServer::start(move |mut stream, _| {
        let counter = counter.clone();
        async move {
            if support::read_request(&mut stream).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            // Dropped: closed with no response.
        }
    })
    .await
    .expect("bind");
    let client = HttpClient::builder(format!("http://{}", server.addr()))
        .no_circuit_breaker()
        .build_client()
        .expect("client");

    let err = client
        .send(HttpRequest::new(Method::POST, "/pay").body("amount=10"))
        .await
        .expect_err("no answer");
    assert_eq!(err.not_retried(), Some(NotRetried::NotIdempotent), "{err}");
    assert!(
        matches!(err.inner(), HttpError::Closed { reused: false, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not idempotent"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // A stream cannot be sent twice, whatever the method.
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>("a"), Ok("b")]);
    let err = client
        .send(HttpRequest::new(Method::PUT, "/upload").body(Body::stream(chunks)))
        .await
        .expect_err("no answer");
    assert_eq!(err.not_retried(), Some(NotRetried::StreamingBody), "{err}");
    assert!(err.to_string().contains("cannot be replayed"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // The same loss under a GET is retried (3 retries by default).
    let err = client.get("/").await.expect_err("never answered");
    assert!(err.not_retried().is_none(), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connect_is_retried_even_for_a_post() {
    let mut server = HttpServer::ok("created").await;
    server.stop().await;
    let client = HttpClient::builder(server.url())
        .retry_policy(
            RetryPolicy::builder()
                .backoff(
                    BackoffStrategy::fixed(Duration::from_millis(200))
                        .max_retries(5)
                        .build()
                        .expect("backoff"),
                )
                .build()
                .expect("policy"),
        )
        .build_client()
        .expect("client");
    let request = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(HttpRequest::new(Method::POST, "/orders").body("x"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    let response = request
        .await
        .expect("task")
        .expect("sent once the server is up");
    assert_eq!(response.status(), 200);
    assert!(response.attempts() >= 2, "{}", response.attempts());
    // Nothing was sent while refused: the server saw the POST once.
    assert_eq!(server.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_retries_against_a_failing_dependency() {
    let server = HttpServer::start(|_| async { text(503, "down") }).await;
    let budget = RetryBudget::builder()
        .min_per_sec(0)
        .ratio(0.1)
        .build()
        .expect("budget");
    let client = HttpClient::builder(server.url())
        .retry_policy(
            RetryPolicy::builder()
                .backoff(
                    BackoffStrategy::fixed(Duration::from_millis(10))
                        .max_retries(3)
                        .build()
                        .expect("backoff"),
                )
                .budget(budget)
                .build()
                .expect("policy"),
        )
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    for _ in 0..50 {
        let r = client.get("/").await.expect("response");
        assert_eq!(r.status(), 503);
    }
    // Without a budget: 200 requests. With 10 % of 50 calls: about 5 retries.
    let total = server.requests();
    assert!(
        (50..=56).contains(&total),
        "{total} requests reached the server"
    );
    assert_eq!(client.metrics().retries, total - 50);
}
