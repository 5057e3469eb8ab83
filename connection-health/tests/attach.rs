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
        .attach("ws", handle.clone(), ConnectionOptions::default())
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
