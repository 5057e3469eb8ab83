//! The data plane end to end on a real loopback server: events, comments and retries
//! in order, lifecycle events kept apart, the request as configured, metrics, close.

mod support;

use std::time::Duration;

use connection_transport_sse::{
    EventFilter, EventKind, EventType, SseClient, SseEnd, SseEvent, SseItem,
};
use futures::StreamExt;
use support::{Reply, SseServer};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(start_paused = true)]
async fn items_arrive_in_order_and_lifecycle_events_come_apart() {
    let server = SseServer::start(|_, _| {
        Reply::stream()
            .send("\u{FEFF}: hello\n\nretry: 2500\nevent: add\nid: 1\ndata: {\"a\":1}\n\n")
            .send("data: two\ndata: lines\n\n")
            .hold()
    })
    .await;
    let mut client = SseClient::builder(server.url("/events")).spawn().unwrap();
    let mut lifecycle = client.subscribe(EventFilter::all().types([EventType::Connected]));
    let mut items = Vec::new();
    for _ in 0..4 {
        items.push(timeout(LIMIT, client.next()).await.unwrap().unwrap());
    }
    assert_eq!(
        items,
        [
            SseItem::Comment(" hello".into()),
            SseItem::Retry(Duration::from_millis(2500)),
            SseItem::Event(SseEvent::new("add", "{\"a\":1}", "1")),
            SseItem::Event(SseEvent::new("", "two\nlines", "1")),
        ]
    );
    let connected = timeout(LIMIT, lifecycle.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(connected.kind, EventKind::Connected),
        "{connected}"
    );
    assert_eq!(client.last_event_id().as_ref(), "1");
    assert_eq!(client.server_retry(), Some(Duration::from_millis(2500)));

    let m = client.metrics();
    assert_eq!((m.stream.events, m.stream.comments), (2, 1));
    assert!(m.stream.bytes > 50, "{m:?}");
    assert!(m.connection.connected);
    assert_eq!(m.connection.messages_in, 2, "{m:?}");
    let json = serde_json_like(&m);
    assert!(json.contains("gap_total_seconds"), "{json}");

    assert_eq!(
        client.close(Duration::from_secs(1)).await,
        connection_transport_sse::ShutdownOutcome::Graceful
    );
    assert!(matches!(client.end(), Some(SseEnd::Closed)));
    assert_eq!(timeout(LIMIT, client.next()).await.unwrap(), None);
}

fn serde_json_like(m: &connection_transport_sse::SseMetrics) -> String {
    serde_json::to_string(m).expect("metrics serialize")
}

#[tokio::test(start_paused = true)]
async fn the_request_carries_method_body_headers_and_no_last_event_id() {
    let server = SseServer::start(|_, _| Reply::stream().send("data: ok\n\n").hold()).await;
    let mut client = SseClient::builder(server.url("/v1/chat?x=1"))
        .configure(|c| {
            c.method("POST")
                .header("content-type", "application/json")
                .body(r#"{"stream":true}"#)
                .bearer_auth("t0ken")
                .header("x-trace", "abc")
        })
        .spawn()
        .unwrap();
    let event = timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
    assert_eq!(event.data(), "ok");
    let r = &server.log.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat?x=1")
    );
    assert_eq!(r.body, br#"{"stream":true}"#);
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(r.header("x-trace"), Some("abc"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("last-event-id"), None, "no ID, no header");
    assert!(!format!("{client:?}").contains("t0ken"));
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_initial_last_event_id_goes_with_the_first_request() {
    let server = SseServer::start(|_, _| Reply::stream().send("data: ok\n\n").hold()).await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| c.last_event_id("41"))
        .spawn()
        .unwrap();
    let event = timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
    // An event without `id` carries the ID the stream resumed from.
    assert_eq!(event.id(), "41");
    assert_eq!(server.log.requests()[0].header("last-event-id"), Some("41"));
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_holds_the_reader_back_not_memory() {
    // 1,000 events ready at once against a queue of 4: the reader waits, nothing is
    // lost, and everything arrives in order.
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str(&format!("id: {i}\ndata: {i}\n\n"));
    }
    let server = SseServer::start(move |_, _| Reply::stream().send(body.clone()).hold()).await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| c.inbound_buffer(4))
        .spawn()
        .unwrap();
    client.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.queued() <= 4, "{}", client.queued());
    for i in 0..1000 {
        let e = timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
        assert_eq!(e.data(), i.to_string());
    }
    client.close(Duration::from_secs(1)).await;
}
