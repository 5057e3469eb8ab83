//! Hedged requests on paused time: a slow first copy is overtaken by the second, the
//! loser is cancelled, non-idempotent requests are never hedged, and hedges are drawn
//! from the retry budget.

mod support;

use std::time::Duration;

use connection_retry::RetryBudget;
use connection_transport_http::{Hedge, HttpClient, HttpRequest, Method, RetryPolicy};
use support::{HttpServer, text};
use tokio::time::Instant;

/// The first request takes 10 s; every later one answers at once.
async fn first_is_slow() -> HttpServer {
    HttpServer::start(|req| async move {
        if req.n == 1 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            text(200, "slow")
        } else {
            text(200, "fast")
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_copy_is_overtaken_by_the_hedge() {
    let server = first_is_slow().await;
    let client = HttpClient::builder(server.url())
        .hedge(Hedge::after(Duration::from_millis(50)))
        .build_client()
        .expect("client");
    let started = Instant::now();
    let response = client.get("/").await.expect("answered");
    let took = started.elapsed();
    assert_eq!(response.text().expect("utf-8"), "fast");
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_millis(60),
        "{took:?}"
    );
    assert_eq!(server.requests(), 2);
    let m = client.metrics();
    assert_eq!((m.hedges, m.hedge_wins, m.requests), (1, 1, 1), "{m:?}");
    // The losing copy was cancelled: its connection is gone, not left in the pool.
    support::wait_until("the slow copy's connection closed", || {
        server.server.connections() <= 1
    })
    .await;
    // A fast answer needs no hedge.
    let response = client.get("/").await.expect("answered");
    assert_eq!(response.text().expect("utf-8"), "fast");
    assert_eq!(client.metrics().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let server = first_is_slow().await;
    let client = HttpClient::builder(server.url())
        .hedge(Hedge::after(Duration::from_millis(50)))
        .no_request_timeout()
        .build_client()
        .expect("client");
    let started = Instant::now();
    let response = client
        .send(HttpRequest::new(Method::POST, "/pay").body("1"))
        .await
        .expect("answered");
    assert_eq!(response.text().expect("utf-8"), "slow");
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!((server.requests(), client.metrics().hedges), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn hedges_are_drawn_from_the_retry_budget() {
    let server = HttpServer::start(|req| async move {
        // Every odd request is slow: each request would hedge.
        if req.n % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        text(200, "ok")
    })
    .await;
    let budget = RetryBudget::builder()
        .min_per_sec(0)
        .ratio(0.25)
        .build()
        .expect("budget");
    let client = HttpClient::builder(server.url())
        .retry_policy(
            RetryPolicy::builder()
                .budget(budget)
                .build()
                .expect("policy"),
        )
        .hedge(Hedge::at_percentile(0.9, Duration::from_millis(20)))
        .build_client()
        .expect("client");
    for _ in 0..20 {
        client.get("/").await.expect("ok");
    }
    // A quarter of 20 requests earns 5 hedges; the rest wait out their slow copy.
    let hedges = client.metrics().hedges;
    assert!((4..=6).contains(&hedges), "{hedges} hedges");
}
