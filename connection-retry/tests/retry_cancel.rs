//! Dropping a retrying future stops it at once: mid-sleep nothing else runs, mid-attempt
//! the attempt's socket is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use connection_core::{Endpoint, Error, EventBus, EventFilter, Transport};
use connection_retry::EventSink;
use connection_retry::backoff::BackoffStrategy;
use connection_retry::events::Retrying;
use connection_retry::retry::{Retry, RetryPolicy};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;
use tokio::time::timeout;

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

fn policy(delay: Duration, events: Option<EventSink>) -> RetryPolicy {
    let mut builder = RetryPolicy::builder().backoff(
        BackoffStrategy::fixed(delay)
            .build()
            .expect("valid backoff"),
    );
    if let Some(sink) = events {
        builder = builder.events(sink);
    }
    builder.build().expect("valid policy")
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_sleep_stops_retrying() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let transport = TcpEchoTransport::new(server.addr()).unwrap();
    let bus = EventBus::new(16);
    let mut events = bus.subscribe(EventFilter::all());
    let retrying = Retry::new(
        transport.clone(),
        policy(Duration::from_secs(10), Some(EventSink::named(bus, "c"))),
    );

    // The first attempt is refused at once; the future is dropped 1 s into the 10 s wait.
    let cut = timeout(Duration::from_secs(1), retrying.connect()).await;
    assert!(cut.is_err(), "still waiting when dropped");
    let event = events.next().await.unwrap().unwrap();
    assert!(matches!(
        event.kind.downcast_ref::<Retrying>(),
        Some(r) if r.attempt == 2 && r.delay == Duration::from_secs(10)
    ));

    // Well past the moment the retry would have run, nothing ran.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(transport.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn aborting_a_task_mid_sleep_stops_retrying() {
    let calls = Arc::new(AtomicU32::new(0));
    let policy = policy(Duration::from_secs(5), None);
    let ep = Endpoint::host_port("127.0.0.1", 9).unwrap();
    let task = {
        let calls = calls.clone();
        tokio::spawn(async move {
            let result: Result<(), Error> = policy
                .on(&ep)
                .run(|| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    let ep = ep.clone();
                    async move { Err(Error::Closed { endpoint: ep }) }
                })
                .await;
            result
        })
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "first attempt and one retry"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_attempt_closes_the_attempt() {
    let server = LoopbackServer::silent().await.unwrap();
    let transport = TcpEchoTransport::new(server.addr()).unwrap().with_banner();
    let retrying = Retry::new(transport.clone(), policy(Duration::from_secs(1), None));

    let cut = timeout(Duration::from_secs(5), retrying.connect()).await;
    assert!(cut.is_err());
    assert_eq!(transport.attempts(), 1);
    // The server sees the dropped attempt's socket close.
    timeout(WAIT, async {
        while server.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the attempt's connection was closed");
    assert_eq!(server.accepted(), 1);
}
