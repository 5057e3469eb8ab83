//! Reconnecting on paused time against a real loopback server: `Last-Event-ID`, the
//! server's `retry` as the base delay, resuming after a stream dropped mid-event, the
//! backoff that starts over only after a stream stayed up.

mod support;

use std::time::Duration;

use connection_transport_sse::{DisconnectReason, EventFilter, EventKind, EventType, SseClient};
use futures::StreamExt;
use support::{Reply, SseServer};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(start_paused = true)]
async fn reconnects_send_the_last_event_id_and_nothing_before_there_is_one() {
    let server = SseServer::start(|_, i| match i {
        // No ID yet on the first stream.
        0 => Reply::stream().send("data: a\n\n"),
        1 => Reply::stream().send("id: 7\ndata: b\n\ndata: c\n\n"),
        // A block with only an ID still moves the resume point.
        2 => Reply::stream().send("id: 9\n\n"),
        _ => Reply::stream().hold(),
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| c.reconnect_delays(Duration::from_millis(100), Duration::from_secs(1)))
        .spawn()
        .unwrap();
    let requests = server.log.wait_requests(4).await;
    let ids: Vec<_> = requests.iter().map(|r| r.header("last-event-id")).collect();
    assert_eq!(ids, [None, None, Some("7"), Some("9")]);
    let datas: Vec<String> = [0; 3]
        .iter()
        .map(|_| client.try_next_event())
        .map(|e| e.expect("an event").data().to_owned())
        .collect();
    assert_eq!(datas, ["a", "b", "c"]);
    client.close(Duration::from_secs(1)).await;
}

trait TryNext {
    fn try_next_event(&mut self) -> Option<connection_transport_sse::SseEvent>;
}

impl TryNext for SseClient {
    fn try_next_event(&mut self) -> Option<connection_transport_sse::SseEvent> {
        while let Some(item) = self.events().try_recv() {
            if let Some(e) = item.into_event() {
                return Some(e);
            }
        }
        None
    }
}

#[tokio::test(start_paused = true)]
async fn the_server_retry_is_the_base_delay() {
    let server = SseServer::start(|_, i| match i {
        0 => Reply::stream().send("retry: 4000\ndata: a\n\n"),
        1 => Reply::stream().send("data: b\n\n"),
        _ => Reply::stream().hold(),
    })
    .await;
    let client = SseClient::builder(server.url("/"))
        .configure(|c| {
            c.reconnect_delays(Duration::from_millis(100), Duration::from_secs(1))
                .stable_after(Duration::from_secs(3600))
        })
        .spawn()
        .unwrap();
    let mut reconnecting = client.subscribe(EventFilter::all().types([EventType::Reconnecting]));
    let r = server.log.wait_requests(3).await;
    // First retry: from 4 s (equal jitter: half fixed, half random); the second doubles.
    // The server's 4 s is obeyed above the configured 1 s ceiling.
    let first = r[1].at - r[0].at;
    let second = r[2].at - r[1].at;
    assert!(
        first >= Duration::from_secs(2) && first <= Duration::from_millis(4100),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_secs(2) && second <= Duration::from_millis(4100),
        "{second:?}"
    );
    for attempt in [1, 2] {
        let event = timeout(LIMIT, reconnecting.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let EventKind::Reconnecting { attempt: a, delay } = event.kind else {
            panic!("{event}");
        };
        assert_eq!(a, attempt);
        assert!(
            delay >= Duration::from_secs(2) && delay <= Duration::from_secs(4),
            "{delay:?}"
        );
    }
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_server_retry_delays_grow_from_the_initial_delay() {
    // Every stream drops at once: each is one more failed attempt, so the delays
    // double instead of hammering the server at the first delay.
    let server = SseServer::start(|_, i| {
        if i < 5 {
            Reply::stream()
        } else {
            Reply::stream().hold()
        }
    })
    .await;
    let client = SseClient::builder(server.url("/"))
        .configure(|c| c.reconnect_delays(Duration::from_millis(400), Duration::from_secs(60)))
        .spawn()
        .unwrap();
    let r = server.log.wait_requests(6).await;
    for (n, pair) in r.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let ceiling = Duration::from_millis(400 << n);
        assert!(
            gap >= ceiling / 2 && gap <= ceiling + Duration::from_millis(100),
            "retry {n}: {gap:?}"
        );
    }
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn the_backoff_starts_over_only_after_a_stream_stayed_up() {
    let server = SseServer::start(|_, i| match i {
        0..=2 => Reply::stream(),
        // Stays up 20 s (past stable_after), then drops.
        3 => Reply::stream()
            .send("data: x\n\n")
            .sleep(Duration::from_secs(20)),
        _ => Reply::stream().hold(),
    })
    .await;
    let client = SseClient::builder(server.url("/"))
        .configure(|c| {
            c.reconnect_delays(Duration::from_millis(1000), Duration::from_secs(60))
                .stable_after(Duration::from_secs(10))
        })
        .spawn()
        .unwrap();
    let r = server.log.wait_requests(5).await;
    let third = r[3].at - r[2].at;
    assert!(
        third >= Duration::from_secs(2),
        "third retry still grows: {third:?}"
    );
    let after_stable = r[4].at - r[3].at - Duration::from_secs(20);
    assert!(
        after_stable <= Duration::from_millis(1100),
        "reset to the first delay: {after_stable:?}"
    );
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_mid_event_resumes_without_the_partial_event() {
    let server = SseServer::start(|r, _| match r.header("last-event-id") {
        None => Reply::stream().send("id: 1\ndata: one\n\nid: 2\ndata: tw"),
        Some("1") => Reply::stream()
            .send("id: 2\ndata: two\n\nid: 3\ndata: three\n\n")
            .hold(),
        Some(other) => panic!("resumed from {other}"),
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| c.reconnect_delays(Duration::from_millis(50), Duration::from_secs(1)))
        .spawn()
        .unwrap();
    let mut disconnected = client.subscribe(EventFilter::all().types([EventType::Disconnected]));
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = timeout(LIMIT, client.next_event()).await.unwrap().unwrap();
        got.push((e.id().to_owned(), e.data().to_owned()));
    }
    assert_eq!(
        got,
        [
            ("1".into(), "one".into()),
            ("2".into(), "two".into()),
            ("3".into(), "three".into())
        ]
    );
    let event = timeout(LIMIT, disconnected.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            event.kind,
            EventKind::Disconnected {
                reason: DisconnectReason::PeerClosed
            }
        ),
        "{event}"
    );
    let m = client.metrics();
    assert_eq!(m.connection.reconnects, 1);
    assert_eq!(m.stream.gaps, 1);
    assert!(m.stream.gap_last >= Duration::from_millis(25), "{m:?}");
    client.close(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_server_that_goes_away_is_retried_until_it_is_back() {
    let mut server = SseServer::start(|r, _| {
        let body = match r.header("last-event-id") {
            None => "id: 1\ndata: before\n\n",
            Some(_) => "id: 2\ndata: after\n\n",
        };
        Reply::stream().send(body).hold()
    })
    .await;
    let mut client = SseClient::builder(server.url("/"))
        .configure(|c| c.reconnect_delays(Duration::from_millis(100), Duration::from_millis(400)))
        .spawn()
        .unwrap();
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "before"
    );
    let mut errors = client.subscribe(EventFilter::all().types([EventType::Error]));
    server.stop().await;
    // Refused connects are retryable errors: the client keeps trying.
    for _ in 0..3 {
        let e = timeout(LIMIT, errors.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let EventKind::Error { error } = &e.kind else {
            panic!("{e}")
        };
        assert!(error.is_retryable(), "{error}");
    }
    server.restart().await;
    assert_eq!(
        timeout(LIMIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
            .data(),
        "after"
    );
    assert_eq!(
        server
            .log
            .requests()
            .last()
            .unwrap()
            .header("last-event-id"),
        Some("1")
    );
    client.close(Duration::from_secs(1)).await;
}
