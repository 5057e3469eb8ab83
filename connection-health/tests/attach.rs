//! Connections supervised elsewhere can be attached to a manager.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, EventFilter, EventType, HealthStatus, Supervisor};
use connection_health::{ConnectionManager, ConnectionOptions};
use connection_testkit::TcpEchoServer;
use support::{echo, next_matching, wait_health};

#[tokio::test(start_paused = true)]
async fn attached_connections_are_rated_reported_and_closed() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    let mut events = manager.subscribe(EventFilter::all().name("ws"));
    // Built on the manager's bus, so its own events join the manager's stream.
    let handle = Supervisor::new(echo(server.addr()))
        .name("ws")
        .events(manager.event_bus().clone())
        .spawn()
        .unwrap();
    manager
        .attach("ws", &handle, ConnectionOptions::default())
        .unwrap();
    next_matching(&mut events, |e| e.event_type() == EventType::Connected).await;
    wait_health(&manager, "ws", HealthStatus::Healthy).await;
    let status = manager.status("ws").unwrap();
    assert!(status.attached);
    assert_eq!(status.id, Some(handle.id()));
    assert_eq!(manager.statistics().connected, 1);

    server.stop().await;
    wait_health(&manager, "ws", HealthStatus::Unhealthy).await;
    server.restart().await.unwrap();
    wait_health(&manager, "ws", HealthStatus::Healthy).await;

    let report = manager.disconnect_all().await;
    assert_eq!(report.graceful.len(), 1);
    assert_eq!(handle.state(), ConnectionState::Closed);
    // It cannot be started again by the manager.
    let again = manager.connect_all().await;
    assert_eq!(again.failed.len(), 1, "{again:?}");
    assert!(again.failed[0].error.contains("shut down"), "{again:?}");
    let _ = manager.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn events_of_an_attached_connection_on_its_own_bus_reach_the_manager_once() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    let mut own = manager.subscribe(EventFilter::all().name("own-bus"));
    let mut shared = manager.subscribe(EventFilter::all().name("shared-bus"));
    // One on a bus of its own (its events are copied over), one on the manager's bus
    // (nothing to copy: each event must arrive exactly once).
    let on_own_bus = Supervisor::new(echo(server.addr()))
        .name("own-bus")
        .spawn()
        .unwrap();
    let on_shared_bus = Supervisor::new(echo(server.addr()))
        .name("shared-bus")
        .events(manager.event_bus().clone())
        .spawn()
        .unwrap();
    for (name, handle) in [("own-bus", &on_own_bus), ("shared-bus", &on_shared_bus)] {
        manager
            .attach(name, handle, ConnectionOptions::default())
            .unwrap();
        support::wait_state(&manager, name, ConnectionState::Connected).await;
    }

    server.stop().await;
    for stream in [&mut own, &mut shared] {
        next_matching(stream, |e| e.event_type() == EventType::Disconnected).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, stream) in [("own-bus", &mut own), ("shared-bus", &mut shared)] {
        let again = support::drain(stream)
            .into_iter()
            .filter(|e| e.event_type() == EventType::Disconnected)
            .count();
        assert_eq!(again, 0, "{name}: a Disconnected event arrived twice");
    }

    // The copying task goes with the entry.
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    manager.remove("own-bus").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Its supervisor (shut down by `remove`) and the copying task.
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        tasks - 2,
        "the forwarding task outlived its entry"
    );
    let _ = manager.shutdown(Duration::from_secs(1)).await;
}
