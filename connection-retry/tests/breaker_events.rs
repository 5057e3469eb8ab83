//! State changes come out as events, in the order they happened.

use std::time::Duration;

use connection_core::{EventBus, EventFilter, EventKind};
use connection_retry::EventSink;
use connection_retry::breaker::{CircuitBreaker, CircuitState};
use connection_retry::events::{CircuitClosed, CircuitHalfOpen, CircuitOpened};
use futures::StreamExt;
use tokio::time::advance;

#[tokio::test(start_paused = true)]
async fn transitions_are_published_in_order() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all());
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .wait(Duration::from_secs(1))
        .max_wait(Duration::from_secs(10))
        .events(EventSink::named(bus.clone(), "db"))
        .build()
        .unwrap();

    b.try_acquire().unwrap().failure(); // closed -> open (1 s)
    advance(Duration::from_secs(1)).await;
    b.try_acquire().unwrap().failure(); // half-open -> open (2 s)
    advance(Duration::from_secs(2)).await;
    b.try_acquire().unwrap().success(); // half-open -> closed
    b.isolate();
    b.reset();
    b.force_open();
    assert_eq!(b.state(), CircuitState::Open);

    let mut seen = vec![];
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(1), events.next()).await
    {
        let event = event.unwrap();
        assert_eq!(&*event.name, "db");
        seen.push(describe(&event.kind));
    }
    let isolated = format!("opened {:?}", Duration::MAX);
    assert_eq!(
        seen,
        [
            "opened 1s",
            "half-open",
            "opened 2s",
            "half-open",
            "closed",
            &isolated,
            "closed",
            "opened 1s",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn callers_noticing_the_end_of_the_wait_make_one_transition() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all());
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .half_open_probes(3)
        .events(EventSink::named(bus.clone(), "db"))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    advance(Duration::from_secs(10)).await;
    let admitted: Vec<_> = (0..10).filter_map(|_| b.try_acquire().ok()).collect();
    assert_eq!(admitted.len(), 3);
    assert!(describe(&events.next().await.unwrap().unwrap().kind).starts_with("opened"));
    assert_eq!(
        describe(&events.next().await.unwrap().unwrap().kind),
        "half-open"
    );
    for p in admitted {
        p.success();
    }
    assert_eq!(
        describe(&events.next().await.unwrap().unwrap().kind),
        "closed"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1), events.next())
            .await
            .is_err()
    );
}

/// A breaker event as a short string; panics on anything else.
fn describe(kind: &EventKind) -> String {
    if let Some(CircuitOpened { wait, .. }) = kind.downcast_ref() {
        return format!("opened {wait:?}");
    }
    if kind.downcast_ref::<CircuitHalfOpen>().is_some() {
        return "half-open".into();
    }
    if kind.downcast_ref::<CircuitClosed>().is_some() {
        return "closed".into();
    }
    panic!("unexpected event {kind:?}")
}
