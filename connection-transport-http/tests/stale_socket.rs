//! The stale keep-alive socket (hyper#2136): a request sent on a pooled socket that the
//! server closes at that moment. Raw TCP servers on 127.0.0.1 play the server, since the
//! race must happen every time, not by luck.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_testkit::LoopbackServer;
use connection_transport_http::{HttpClient, HttpError, HttpRequest, Method};
use support::{OK_RESPONSE, read_request};
use tokio::io::AsyncWriteExt;

/// Answers the first request of each connection and keeps it alive; reads the second
/// and closes without an answer, as a server closing an idle socket just as the request
/// arrives does.
async fn closes_on_second_request(seen: Arc<AtomicU64>) -> LoopbackServer {
    LoopbackServer::start(move |mut stream, _| {
        let seen = seen.clone();
        async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            if stream.write_all(OK_RESPONSE).await.is_err() {
                return;
            }
            if read_request(&mut stream).await.is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await
    .expect("bind")
}

fn client(server: &LoopbackServer) -> HttpClient {
    // No retry policy: the stale-socket retry is not the policy's.
    HttpClient::builder(format!("http://{}", server.addr()))
        .no_retries()
        .no_circuit_breaker()
        .build_client()
        .expect("client")
}

#[tokio::test(start_paused = true)]
async fn a_reused_socket_closed_under_an_idempotent_request_is_retried_once() {
    let seen = Arc::new(AtomicU64::new(0));
    let server = closes_on_second_request(seen.clone()).await;
    let client = client(&server);
    assert_eq!(client.get("/a").await.expect("first").status(), 200);
    // Goes out on the pooled socket, which the server closes: tried again on a new one.
    let second = client.get("/b").await.expect("retried on a fresh socket");
    assert_eq!(second.status(), 200);
    assert_eq!(server.accepted(), 2);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let m = client.metrics();
    assert_eq!((m.stale_retries, m.retries, m.errors), (1, 0, 0), "{m:?}");
    assert_eq!(m.connections_opened, 2);
}

#[tokio::test(start_paused = true)]
async fn a_post_on_a_stale_socket_is_not_retried() {
    let seen = Arc::new(AtomicU64::new(0));
    let server = closes_on_second_request(seen.clone()).await;
    let client = client(&server);
    client.get("/a").await.expect("first");
    let err = client
        .send(HttpRequest::new(Method::POST, "/pay").body("1"))
        .await
        .expect_err("not repeated");
    assert!(
        matches!(err.inner(), HttpError::Closed { reused: true, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("reused"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(client.metrics().stale_retries, 0);
    // With a key it is.
    let seen = Arc::new(AtomicU64::new(0));
    let server = closes_on_second_request(seen.clone()).await;
    let client = self::client(&server);
    client.get("/a").await.expect("first");
    let ok = client
        .send(
            HttpRequest::new(Method::POST, "/pay")
                .idempotency_key("k")
                .body("1"),
        )
        .await
        .expect("retried once");
    assert_eq!(ok.status(), 200);
    assert_eq!(client.metrics().stale_retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_socket_closed_without_an_answer_is_not_a_stale_socket() {
    // Every connection is read and dropped: nothing stale about it.
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let server = LoopbackServer::start(move |mut stream, _| {
        let counter = counter.clone();
        async move {
            if read_request(&mut stream).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await
    .expect("bind");
    let client = client(&server);
    let err = client.get("/").await.expect_err("no answer");
    assert!(
        matches!(err.inner(), HttpError::Closed { reused: false, .. }),
        "{err}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(client.metrics().stale_retries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_closing_idle_sockets_after_a_short_keep_alive_costs_no_request() {
    // Keep-alive of 1 s: a socket idle that long is closed by the server.
    let server = LoopbackServer::start(|mut stream, _| async move {
        loop {
            let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_secs(1), read_request(&mut stream)).await
            else {
                return;
            };
            if stream.write_all(OK_RESPONSE).await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("bind");
    // Even a client that keeps idle sockets for ever (no pool idle timeout) loses no
    // request: the closed socket is noticed, or retried once if the close races.
    let client = HttpClient::builder(format!("http://{}", server.addr()))
        .pool_idle_timeout(None)
        .no_retries()
        .build_client()
        .expect("client");
    for _ in 0..3 {
        assert_eq!(client.get("/").await.expect("answered").status(), 200);
        assert_eq!(client.get("/").await.expect("answered").status(), 200);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(server.accepted(), 3, "one socket per burst");
    assert_eq!(client.metrics().errors, 0);
}

#[tokio::test(start_paused = true)]
async fn the_default_pool_drops_idle_sockets_before_a_5_second_keep_alive_ends() {
    // Node's and Apache's keep-alive: 5 s. The default client keeps idle sockets 4 s, so
    // after 4.5 s idle it opens a new socket instead of racing the server's close.
    let server = LoopbackServer::start(|mut stream, _| async move {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(5), read_request(&mut stream)).await
        {
            if stream.write_all(OK_RESPONSE).await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("bind");
    let client = client(&server);
    client.get("/").await.expect("first");
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    client.get("/").await.expect("second");
    assert_eq!(server.accepted(), 2);
    assert_eq!(client.metrics().stale_retries, 0);
}
