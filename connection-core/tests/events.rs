//! Event subscribers: filters, and slow subscribers that never stall the publisher.

mod support;

use std::time::Duration;

use connection_core::{
    ConnectionId, ConnectionState, ConstantBackoff, Event, EventBus, EventFilter, EventKind,
    EventType, ExtensionEvent, Lagged, Severity, Supervisor,
};
use connection_testkit::{TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;
use support::wait_state;

fn event(id: ConnectionId, name: &str, kind: EventKind) -> Event {
    Event::new(id, name.into(), kind)
}

/// An event a crate built on core defines for itself.
#[derive(Debug)]
struct Alarm {
    level: u8,
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alarm level {}", self.level)
    }
}

impl ExtensionEvent for Alarm {
    fn name(&self) -> &'static str {
        "alarm"
    }

    fn severity(&self) -> Severity {
        Severity::Warn
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Another one, to show filters by name.
#[derive(Debug)]
struct Note;

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("note")
    }
}

impl ExtensionEvent for Note {
    fn name(&self) -> &'static str {
        "note"
    }

    fn severity(&self) -> Severity {
        Severity::Debug
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[tokio::test]
async fn extension_events_travel_on_the_bus_and_filter_by_name() {
    let bus = EventBus::new(16);
    let id = ConnectionId::next();
    let alarms = bus.subscribe(EventFilter::all().extensions(["alarm"]));
    let health_and_notes = bus.subscribe(
        EventFilter::all()
            .types([EventType::HealthChanged])
            .extensions(["note"]),
    );
    let every_extension = bus.subscribe(EventFilter::all().types([EventType::Extension]));
    bus.publish(event(id, "x", EventKind::extension(Alarm { level: 3 })));
    bus.publish(event(id, "x", EventKind::extension(Note)));
    bus.publish(event(id, "x", EventKind::Connected));
    drop(bus);

    let names = |s: connection_core::EventStream| async move {
        s.map(|e| e.unwrap().to_string()).collect::<Vec<_>>().await
    };
    let alarms: Vec<Event> = alarms.map(|e| e.unwrap()).collect().await;
    assert_eq!(alarms.len(), 1);
    assert_eq!(
        alarms[0].kind.downcast_ref::<Alarm>().map(|a| a.level),
        Some(3)
    );
    assert!(alarms[0].kind.downcast_ref::<Note>().is_none());
    assert_eq!(alarms[0].severity(), Severity::Warn);
    assert_eq!(alarms[0].event_type(), EventType::Extension);
    assert!(
        alarms[0].to_string().ends_with("alarm level 3"),
        "{}",
        alarms[0]
    );
    let notes = names(health_and_notes).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].ends_with("note"), "{notes:?}");
    assert_eq!(names(every_extension).await.len(), 2);
}

#[tokio::test]
async fn filters_select_by_type_severity_connection_and_name() {
    let bus = EventBus::new(64);
    let (a, b) = (ConnectionId::next(), ConnectionId::next());
    let by_type = bus.subscribe(EventFilter::all().types([EventType::Connected]));
    let warn_up = bus.subscribe(EventFilter::all().min_severity(Severity::Warn));
    let only_b = bus.subscribe(EventFilter::all().connection(b));
    let by_name = bus.subscribe(EventFilter::all().name("alpha"));

    bus.publish(event(a, "alpha", EventKind::Connected));
    bus.publish(event(
        b,
        "beta",
        EventKind::StateChanged {
            from: ConnectionState::Connecting,
            to: ConnectionState::Connected,
        },
    ));
    bus.publish(event(b, "beta", EventKind::extension(Alarm { level: 1 })));
    bus.publish(event(
        a,
        "alpha",
        EventKind::Reconnecting {
            attempt: 1,
            delay: Duration::ZERO,
        },
    ));
    drop(bus);

    let collect = |s: connection_core::EventStream| async move {
        s.map(|e| e.unwrap().event_type()).collect::<Vec<_>>().await
    };
    assert_eq!(collect(by_type).await, [EventType::Connected]);
    assert_eq!(collect(warn_up).await, [EventType::Extension]);
    assert_eq!(
        collect(only_b).await,
        [EventType::StateChanged, EventType::Extension]
    );
    assert_eq!(
        collect(by_name).await,
        [EventType::Connected, EventType::Reconnecting]
    );
}

#[tokio::test]
async fn slow_subscriber_does_not_stall_publishing_and_learns_what_it_missed() {
    let bus = EventBus::new(16);
    let mut slow = bus.subscribe(EventFilter::all());
    let id = ConnectionId::next();
    // Nobody reads while 10 000 events go out: publishing must finish anyway.
    let published = tokio::time::timeout(Duration::from_secs(5), async {
        for attempt in 0..10_000u32 {
            bus.publish(event(
                id,
                "x",
                EventKind::Reconnecting {
                    attempt,
                    delay: Duration::ZERO,
                },
            ));
        }
    })
    .await;
    assert!(published.is_ok(), "publishing blocked on a slow subscriber");

    match slow.next().await {
        Some(Err(Lagged { missed })) => assert_eq!(missed, 10_000 - 16),
        other => panic!("expected a lag report, got {other:?}"),
    }
    // Then the newest 16, in order.
    for expected in 10_000 - 16..10_000 {
        let e = slow.next().await.unwrap().unwrap();
        assert!(matches!(e.kind, EventKind::Reconnecting { attempt, .. } if attempt == expected));
    }
}

#[tokio::test(start_paused = true)]
async fn supervisors_share_a_bus_and_subscribers_filter_by_connection() {
    let server = TcpEchoServer::start().await.unwrap();
    let bus = EventBus::default();
    let spawn = |name: &str| {
        Supervisor::new(TcpEchoTransport::new(server.addr()).unwrap())
            .name(name)
            .events(bus.clone())
            .backoff(ConstantBackoff::new(Duration::from_millis(10)))
            .spawn()
            .unwrap()
    };
    let mut all_connected = bus.subscribe(EventFilter::all().types([EventType::Connected]));
    let one = spawn("one");
    let mut only_two = bus.subscribe(EventFilter::all().name("two").types([EventType::Connected]));
    let two = spawn("two");
    wait_state(&one, ConnectionState::Connected).await;
    wait_state(&two, ConnectionState::Connected).await;

    let mut names = Vec::new();
    for _ in 0..2 {
        names.push(
            all_connected
                .next()
                .await
                .unwrap()
                .unwrap()
                .name
                .to_string(),
        );
    }
    names.sort();
    assert_eq!(names, ["one", "two"]);
    let e = only_two.next().await.unwrap().unwrap();
    assert_eq!((&*e.name, e.connection), ("two", two.id()));
    one.shutdown(Duration::from_secs(1)).await;
    two.shutdown(Duration::from_secs(1)).await;
}
