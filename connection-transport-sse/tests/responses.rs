//! What each kind of response does: 204 ends the client for good, other statuses fail
//! and are retried only when in the retry set, a 200 that is not an event stream
//! fails, redirects are followed keeping `Last-Event-ID`.

mod support;

use std::time::Duration;

use connection_transport_sse::{
    ConnectionState, DisconnectReason, Error, EventFilter, EventKind, EventType, SseClient, SseEnd,
    StatusSet,
};
use futures::StreamExt;
use support::{Reply, SseServer};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);

fn fast(
    c: connection_transport_sse::SseConfigBuilder,
) -> connection_transport_sse::SseConfigBuilder {
    c.reconnect_delays(Duration::from_millis(100), Duration::from_millis(200))
}

async fn wait_state(client: &SseClient, state: ConnectionState) {
    let mut watch = client.handle().watch_state();
    timeout(LIMIT, watch.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| panic!("never {state}; now {}", client.state()))
        .expect("supervisor alive");
}

#[tokio::test(start_paused = true)]
async fn no_content_ends_the_client_for_good_without_an_error() {
    let server = SseServer::start(|_, i| match i {
        0 => Reply::stream().send("id: 5\ndata: last\n\n"),
        _ => Reply::status(204),
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(fast)
        .spawn()
        .unwrap();
    let mut errors = client.subscribe(EventFilter::all().types([EventType::Error]));
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "last"
    );
    // The stream ends once what came before the 204 was taken.
    assert_eq!(timeout(LIMIT, client.next()).await.unwrap(), None);
    assert!(
        matches!(client.end(), Some(SseEnd::NoContent)),
        "{:?}",
        client.end()
    );
    assert!(matches!(
        client.last_disconnect(),
        Some(DisconnectReason::CloseCode {
            code: 204,
            reconnect: false,
            ..
        })
    ));
    // No error loop: one more request (the 204), no error events, and no retry later.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(server.log.requests().len(), 2);
    assert_eq!(server.log.requests()[1].header("last-event-id"), Some("5"));
    assert!(errors.next().now_or_never_is_none());
    // Asking again is the application's call.
    client.handle().restart();
    server.log.wait_requests(3).await;
    client.close(Duration::from_secs(1)).await;
}

trait NowOrNever {
    fn now_or_never_is_none(&mut self) -> bool;
}

impl<F: std::future::Future + Unpin> NowOrNever for F {
    fn now_or_never_is_none(&mut self) -> bool {
        futures::FutureExt::now_or_never(self).is_none()
    }
}

#[tokio::test(start_paused = true)]
async fn a_4xx_is_final_by_default() {
    for status in [400, 401, 403, 404, 410] {
        let server = SseServer::start(move |_, _| Reply::status(status)).await;
        let mut client = SseClient::builder(server.url("/"))
            .configure(fast)
            .spawn()
            .unwrap();
        wait_state(&client, ConnectionState::Failed).await;
        assert_eq!(timeout(LIMIT, client.next()).await.unwrap(), None);
        let Some(SseEnd::Failed(Some(error))) = client.end() else {
            panic!("{status}: {:?}", client.end());
        };
        match status {
            401 | 403 => assert!(matches!(*error, Error::Auth { .. }), "{error}"),
            _ => assert!(
                matches!(*error, Error::Status { status: s, .. } if s == status),
                "{error}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(server.log.requests().len(), 1, "{status} was retried");
        client.close(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn statuses_in_the_retry_set_are_retried() {
    for status in [408, 429, 500, 502, 503] {
        let server = SseServer::start(move |_, i| {
            if i == 0 {
                Reply::status(status)
            } else {
                Reply::stream().send("data: ok\n\n").hold()
            }
        })
        .await;
        let mut client = SseClient::builder(server.url("/"))
            .configure(fast)
            .spawn()
            .unwrap();
        assert_eq!(
            timeout(LIMIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .data(),
            "ok",
            "{status}"
        );
        client.close(Duration::from_secs(1)).await;
    }
    // The set is configurable both ways.
    let server = SseServer::start(|_, i| {
        if i == 0 {
            Reply::status(404)
        } else {
            Reply::stream().send("data: ok\n\n").hold()
        }
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| fast(c).retry_statuses(StatusSet::none().with(404)))
        .spawn()
        .unwrap();
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "ok"
    );
    client.close(Duration::from_secs(1)).await;
    let server = SseServer::start(|_, _| Reply::status(503)).await;
    let client = SseClient::builder(server.url("/"))
        .configure(|c| fast(c).retry_statuses(StatusSet::none()))
        .spawn()
        .unwrap();
    wait_state(&client, ConnectionState::Failed).await;
    assert_eq!(server.log.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_on_the_next_delay() {
    let server = SseServer::start(|_, i| match i {
        0 => Reply::status(429).header("retry-after", "7"),
        _ => Reply::stream().hold(),
    })
    .await;
    let client = SseClient::builder(server.url("/"))
        .configure(fast)
        .spawn()
        .unwrap();
    let r = server.log.wait_requests(2).await;
    let waited = r[1].at - r[0].at;
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7100),
        "{waited:?}"
    );
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_200_that_is_not_an_event_stream_fails() {
    for content_type in [
        Some("text/plain"),
        Some("application/json"),
        None,
        Some("text/event-streams"),
    ] {
        let server = SseServer::start(move |_, _| {
            let reply = Reply::status(200);
            let reply = match content_type {
                Some(t) => reply.header("content-type", t),
                None => reply,
            };
            reply.send("data: not an event stream\n\n")
        })
        .await;
        let client = SseClient::builder(server.url("/"))
            .configure(fast)
            .spawn()
            .unwrap();
        wait_state(&client, ConnectionState::Failed).await;
        let Some(SseEnd::Failed(Some(error))) = client.end() else {
            panic!("{:?}", client.end())
        };
        assert!(matches!(*error, Error::Protocol { .. }), "{error}");
        assert!(error.to_string().contains("Content-Type"), "{error}");
    }
    // Parameters and case do not matter.
    let server = SseServer::start(|_, _| {
        Reply::status(200)
            .header("content-type", "Text/Event-Stream; charset=utf-8")
            .send("data: ok\n\n")
            .hold()
    })
    .await;
    let mut client = SseClient::builder(server.url("/")).spawn().unwrap();
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "ok"
    );
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn redirects_are_followed_keeping_the_last_event_id() {
    for status in [301, 302, 303, 307, 308] {
        let server = SseServer::start(move |r, _| match r.path.as_str() {
            "/old" => Reply::status(status).header("location", "/new"),
            "/new" if r.header("last-event-id").is_none() => {
                Reply::stream().send("id: 1\ndata: a\n\n")
            }
            "/new" => Reply::stream().send("data: b\n\n").hold(),
            other => panic!("{other}"),
        })
        .await;
        let mut client = SseClient::builder(server.url("/old"))
            .configure(fast)
            .spawn()
            .unwrap();
        assert_eq!(
            timeout(LIMIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .data(),
            "a"
        );
        assert_eq!(
            timeout(LIMIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
                .data(),
            "b"
        );
        let paths: Vec<_> = server
            .log
            .requests()
            .iter()
            .map(|r| (r.path.clone(), r.header("last-event-id").map(str::to_owned)))
            .collect();
        // Reconnects go to the configured URL again, and are redirected again.
        assert_eq!(
            paths,
            [
                ("/old".into(), None),
                ("/new".into(), None),
                ("/old".into(), Some("1".into())),
                ("/new".into(), Some("1".into())),
            ],
            "{status}"
        );
        client.close(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn see_other_turns_a_post_into_a_get_and_307_keeps_it() {
    for (status, method, body) in [
        (303, "GET", ""),
        (307, "POST", "q"),
        (308, "POST", "q"),
        (302, "GET", ""),
    ] {
        let server = SseServer::start(move |r, _| match r.path.as_str() {
            "/a" => Reply::status(status).header("location", "/b"),
            _ => Reply::stream().send("data: ok\n\n").hold(),
        })
        .await;
        let mut client = SseClient::builder(server.url("/a"))
            .configure(|c| c.method("POST").body("q"))
            .spawn()
            .unwrap();
        timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
        let second = &server.log.requests()[1];
        assert_eq!(
            (second.method.as_str(), second.body.as_slice()),
            (method, body.as_bytes()),
            "{status}"
        );
        client.close(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn too_many_redirects_fail_and_credentials_stay_with_their_origin() {
    let server = SseServer::start(|r, _| {
        let n: u32 = r.path.trim_start_matches("/r").parse().unwrap_or(0);
        Reply::status(302).header("location", &format!("/r{}", n + 1))
    })
    .await;
    let client = SseClient::builder(server.url("/r0"))
        .configure(|c| fast(c).max_redirects(3))
        .spawn()
        .unwrap();
    wait_state(&client, ConnectionState::Failed).await;
    assert_eq!(
        server.log.requests().len(),
        4,
        "the first request and 3 redirects"
    );
    let Some(SseEnd::Failed(Some(error))) = client.end() else {
        panic!()
    };
    assert!(
        error.to_string().contains("more than 3 redirects"),
        "{error}"
    );

    // Another origin (another port): the Authorization header is not sent there.
    let target = SseServer::start(|_, _| Reply::stream().send("data: ok\n\n").hold()).await;
    let to = target.url("/");
    let origin = SseServer::start(move |_, _| Reply::status(307).header("location", &to)).await;
    let mut client = SseClient::builder(origin.url("/"))
        .configure(|c| {
            c.bearer_auth("s3cret")
                .header("x-keep", "1")
                .last_event_id("4")
        })
        .spawn()
        .unwrap();
    timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
    let r = &target.log.requests()[0];
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("x-keep"), Some("1"));
    assert_eq!(r.header("last-event-id"), Some("4"));
    assert_eq!(
        origin.log.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_stream_is_dropped_after_the_inactivity_timeout() {
    let server = SseServer::start(|_, i| match i {
        // Comments keep it alive for 25 s, then nothing at all.
        0 => {
            let mut r = Reply::stream().send("id: 1\ndata: a\n\n");
            for _ in 0..5 {
                r = r.sleep(Duration::from_secs(5)).send(":\n");
            }
            r.hold()
        }
        _ => Reply::stream().send("data: b\n\n").hold(),
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| fast(c).inactivity_timeout(Some(Duration::from_secs(10))))
        .spawn()
        .unwrap();
    let mut disconnected = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "a"
    );
    let started = tokio::time::Instant::now();
    let event = timeout(LIMIT, disconnected.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let EventKind::Disconnected {
        reason: DisconnectReason::Error(error),
    } = &event.kind
    else {
        panic!("{event}")
    };
    assert!(error.to_string().contains("timed out"), "{error}");
    // The last comment at 25 s, then 10 s of silence.
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(35) && after < Duration::from_secs(36),
        "{after:?}"
    );
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "b"
    );
    assert_eq!(server.log.requests()[1].header("last-event-id"), Some("1"));
    assert_eq!(client.metrics().stream.comments, 5);
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_event_past_the_size_limit_drops_the_stream() {
    let server = SseServer::start(|_, i| match i {
        0 => Reply::stream().send(format!("data: {}\n\n", "x".repeat(100))),
        _ => Reply::stream().send("data: small\n\n").hold(),
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| fast(c).max_event_size(64))
        .spawn()
        .unwrap();
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "small"
    );
    let Some(DisconnectReason::Error(error)) = client.last_disconnect() else {
        panic!()
    };
    assert!(error.to_string().contains("64 bytes"), "{error}");
    client.close(Duration::from_secs(1)).await;
}
