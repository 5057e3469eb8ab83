//! Leak detection and pool events on paused time: a guard held past `leak_threshold` is
//! reported once, naming where it was taken; guards returned in time are not.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connection_core::{EventBus, EventFilter, EventKind, EventType};
use connection_pool::{ConnectionLeak, Pool};
use futures::{FutureExt, StreamExt};
use support::Mem;

const THRESHOLD: Duration = Duration::from_secs(10);

/// Every event published so far, without waiting for more.
fn drain(events: &mut connection_core::EventStream) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Some(Some(e)) = events.next().now_or_never() {
        out.push(e.expect("not lagged").kind);
    }
    out
}

fn leaks(kinds: &[EventKind]) -> Vec<(Duration, String)> {
    kinds
        .iter()
        .filter_map(|k| k.downcast_ref::<ConnectionLeak>())
        .map(|l| (l.held, l.taken_at.to_string()))
        .collect()
}

fn leak_pool(bus: &EventBus) -> Pool<Mem> {
    Pool::builder(Mem::new())
        .max_size(4)
        .configure(|c| {
            c.leak_threshold(Some(THRESHOLD))
                .idle_timeout(None)
                .max_lifetime(None)
        })
        .events(bus.clone(), "leaky")
        .spawn()
        .expect("test step")
}

#[tokio::test(start_paused = true)]
async fn a_guard_held_too_long_is_reported_once_with_its_location() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([ConnectionLeak::NAME]));
    let pool = leak_pool(&bus);

    // Returned in time, several times over: never reported.
    for _ in 0..3 {
        let g = pool.get().await.expect("test step");
        tokio::time::sleep(THRESHOLD / 2).await;
        drop(g);
    }
    tokio::time::sleep(THRESHOLD * 3).await;
    assert!(leaks(&drain(&mut events)).is_empty());

    let line = line!() + 1;
    let leaked = pool.get().await.expect("test step");
    let in_time = pool.get().await.expect("test step");
    tokio::time::sleep(THRESHOLD / 2).await;
    drop(in_time);
    assert!(
        leaks(&drain(&mut events)).is_empty(),
        "not before the threshold"
    );

    // Within one more threshold of becoming a leak, and only once however long after.
    tokio::time::sleep(THRESHOLD * 2).await;
    let found = leaks(&drain(&mut events));
    assert_eq!(found.len(), 1, "{found:?}");
    let (held, at) = &found[0];
    assert!(*held >= THRESHOLD && *held <= THRESHOLD * 2, "{held:?}");
    assert!(
        at.starts_with(&format!("{}:{line}:", file!())),
        "{at} should be {}:{line}",
        file!()
    );
    tokio::time::sleep(THRESHOLD * 5).await;
    assert!(leaks(&drain(&mut events)).is_empty(), "reported once");

    // Returned and taken again: a new checkout, watched afresh.
    drop(leaked);
    let again = pool.get().await.expect("test step");
    tokio::time::sleep(THRESHOLD * 3).await;
    assert_eq!(leaks(&drain(&mut events)).len(), 1);
    drop(again);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_served_by_handoff_is_watched_from_its_own_call() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().extensions([ConnectionLeak::NAME]));
    let pool = Pool::builder(Mem::new())
        .max_size(1)
        .configure(|c| c.leak_threshold(Some(THRESHOLD)).idle_timeout(None))
        .events(bus.clone(), "leaky")
        .spawn()
        .expect("test step");
    let first = pool.get().await.expect("test step");
    let p = pool.clone();
    let line = line!() + 1;
    let waiter = tokio::spawn(async move { p.get().await.map(std::mem::forget) });
    tokio::time::sleep(THRESHOLD / 2).await;
    drop(first);
    waiter.await.expect("test step").expect("handed over");
    tokio::time::sleep(THRESHOLD * 3).await;
    let found = leaks(&drain(&mut events));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].1.starts_with(&format!("{}:{line}:", file!())),
        "{found:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pool_events_report_connects_failures_and_closes() {
    let bus = EventBus::new(64);
    let mut events = bus.subscribe(EventFilter::all().name("events"));
    let mem = Mem::new();
    let knobs = mem.knobs.clone();
    let pool = Pool::builder(mem)
        .max_size(2)
        .configure(|c| c.idle_timeout(None).max_lifetime(None))
        .events(bus.clone(), "events")
        .spawn()
        .expect("test step");
    let mut g = pool.get().await.expect("test step");
    g.mark_broken();
    drop(g);
    knobs.fail_connect.store(true, Ordering::SeqCst);
    assert!(pool.get().await.is_err());
    tokio::time::sleep(Duration::from_millis(1)).await;
    let kinds: Vec<_> = drain(&mut events);
    assert!(
        matches!(
            kinds.as_slice(),
            [
                EventKind::Connected,
                EventKind::Disconnected { .. },
                EventKind::Error { .. }
            ]
        ),
        "{kinds:?}"
    );
    // Connection events carry the connection's id.
    knobs.fail_connect.store(false, Ordering::SeqCst);
    let g = pool.get().await.expect("test step");
    let id = connection_core::Connection::id(&*g);
    drop(g);
    pool.close().await;
    let mut seen = Vec::new();
    while let Some(Some(e)) = events.next().now_or_never() {
        let e = e.expect("not lagged");
        seen.push((e.connection, e.event_type()));
    }
    assert_eq!(
        seen,
        [(id, EventType::Connected), (id, EventType::Disconnected)]
    );
}
