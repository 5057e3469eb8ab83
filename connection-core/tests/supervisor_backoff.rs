//! The default backoff: jittered and exponential, and reset only after a connection has
//! stayed up, so a server that accepts and drops at once is not hammered.

mod support;

use std::time::Duration;

use connection_core::{EventFilter, EventKind, EventType, ExponentialBackoff, Supervisor};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;
use tokio::time::Instant;

/// The (attempt, delay) of the next `n` Reconnecting events.
async fn reconnects(events: &mut connection_core::EventStream, n: usize) -> Vec<(u32, Duration)> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("bounded")
            .expect("bus alive")
            .expect("not lagged");
        if let EventKind::Reconnecting { attempt, delay } = event.kind {
            out.push((attempt, delay));
        }
    }
    out
}

/// Real time, with the default strategy at a 10 ms base (the default's 250 ms would take
/// half a minute): on paused time a loaded machine can leave the runtime idle before the
/// server's close arrives, and the clock would jump to the test's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_drops_at_once_is_retried_ever_more_slowly() {
    // Accepts the connection, then closes it: every connect "succeeds".
    let server = LoopbackServer::start(|stream, _| async move { drop(stream) })
        .await
        .expect("bind");
    let base = Duration::from_millis(10);
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .backoff(ExponentialBackoff::new(base, Duration::from_secs(30)))
        .spawn()
        .expect("spawn");
    let mut events = conn.subscribe(EventFilter::all().types([EventType::Reconnecting]));
    let started = Instant::now();
    let seen = reconnects(&mut events, 8).await;
    // Attempt numbers keep counting across the short-lived connections (each lives far
    // less than the default 10 s `stable_after`), and each delay falls in its band of
    // the schedule: [base/2, base] * 2^(n-1).
    for (i, (attempt, delay)) in seen.iter().enumerate() {
        assert_eq!(*attempt, i as u32 + 1, "{seen:?}");
        let band = base * (1 << i);
        assert!(
            *delay >= band / 2 && *delay <= band,
            "attempt {attempt}: {delay:?} outside [{:?}, {band:?}]",
            band / 2
        );
    }
    // The eighth Reconnecting comes after seven waits: at least half of
    // 10 ms * (2^7 - 1), where a constant 10 ms would have taken 70 ms.
    assert!(
        started.elapsed() >= base * 127 / 2,
        "{:?}",
        started.elapsed()
    );
    assert!(server.accepted() >= 8, "{} handshakes", server.accepted());
    conn.shutdown(Duration::from_secs(1)).await;
}

/// Real time, for the same reason as above, with a short `stable_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_held_starts_the_schedule_over() {
    let mut server = TcpEchoServer::start().await.expect("bind");
    let conn = Supervisor::new(TcpEchoTransport::new(server.addr()).expect("port"))
        .stable_after(Duration::from_millis(300))
        .spawn()
        .expect("spawn");
    let mut events = conn.subscribe(EventFilter::all().types([EventType::Reconnecting]));
    conn.ready(Duration::from_secs(10))
        .await
        .expect("connected");

    // Down for a while: attempts 1, 2, 3 fail.
    server.stop().await;
    let seen = reconnects(&mut events, 3).await;
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
    server.restart().await.expect("rebind");
    conn.ready(Duration::from_secs(30)).await.expect("back");

    // Up for longer than stable_after: the next loss starts again from attempt 1.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.stop().await;
    let seen = reconnects(&mut events, 1).await;
    assert_eq!(seen[0].0, 1, "{seen:?}");
    assert!(seen[0].1 <= Duration::from_millis(250), "{seen:?}");
    conn.shutdown(Duration::from_secs(1)).await;
}
