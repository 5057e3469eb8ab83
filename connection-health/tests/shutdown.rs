//! Shutdown is bounded and reported; dropping the manager leaves no task behind.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, EventFilter, EventType};
use connection_health::{ConnectionManager, ConnectionOptions, HealthCheck, HealthError};
use connection_testkit::TcpEchoServer;
use support::{echo, next_matching, quick, wait_until};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_a_close_that_never_finishes() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    let stubborn = ConnectionOptions::builder()
        .close_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    manager
        .add("stuck", echo(server.addr()).hang_on_close(), stubborn)
        .unwrap();
    manager.add("fine", echo(server.addr()), quick()).unwrap();
    manager.add("idle", echo(server.addr()), quick()).unwrap();
    manager.connect("stuck").unwrap();
    manager.connect("fine").unwrap();
    support::wait_state(&manager, "stuck", ConnectionState::Connected).await;
    support::wait_state(&manager, "fine", ConnectionState::Connected).await;
    assert_eq!(server.connections(), 2);

    let started = Instant::now();
    let report = manager.shutdown(Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert_eq!(
        report.aborted,
        vec!["stuck".into()] as Vec<std::sync::Arc<str>>
    );
    assert_eq!(
        report.graceful,
        vec!["fine".into()] as Vec<std::sync::Arc<str>>
    );
    assert!(!report.all_graceful());
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(
        manager.status("stuck").unwrap().state,
        ConnectionState::Closed
    );
    wait_until("sockets closed", || server.connections() == 0).await;

    // A shut-down manager takes nothing new.
    let err = manager
        .add("late", echo(server.addr()), quick())
        .unwrap_err();
    assert!(matches!(err, HealthError::ShutDown { .. }), "{err}");
    assert!(manager.connect("idle").is_err());
}

#[tokio::test(start_paused = true)]
async fn disconnect_all_then_connect_all_again() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    for name in ["a", "b"] {
        manager.add(name, echo(server.addr()), quick()).unwrap();
    }
    assert!(manager.connect_all().await.all_connected());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = manager.disconnect_all().await;
    assert_eq!(report.graceful.len(), 2);
    assert_eq!(manager.statistics().connected, 0);
    wait_until("sockets closed", || server.connections() == 0).await;

    let again = manager.connect_all().await;
    assert!(again.all_connected(), "{again:?}");
    assert_eq!(server.accepted(), 4);
    // Metrics carry over the restart.
    assert!(manager.status("a").unwrap().metrics.total_connected >= Duration::from_secs(1));
    assert_eq!(manager.statistics().connected, 2);
}

#[tokio::test(start_paused = true)]
async fn remove_closes_the_connection() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server.addr()), quick()).unwrap();
    manager.add("never", echo(server.addr()), quick()).unwrap();
    let handle = manager.connect("a").unwrap();
    support::wait_state(&manager, "a", ConnectionState::Connected).await;
    let mut events = manager.subscribe(
        EventFilter::all()
            .name("a")
            .types([EventType::Disconnected]),
    );
    let outcome = manager.remove("a").await.unwrap();
    assert_eq!(outcome, Some(connection_core::ShutdownOutcome::Graceful));
    next_matching(&mut events, |_| true).await;
    assert_eq!(handle.state(), ConnectionState::Closed);
    assert_eq!(manager.remove("never").await.unwrap(), None);
    assert!(matches!(
        manager.remove("a").await,
        Err(HealthError::UnknownConnection { .. })
    ));
    assert!(manager.is_empty());
    wait_until("socket closed", || server.connections() == 0).await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_every_task() {
    let server = TcpEchoServer::start().await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();

    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    for name in ["a", "b", "c"] {
        manager.add(name, echo(server.addr()), quick()).unwrap();
    }
    let group = manager
        .failover_group("g")
        .route("a", 0)
        .route("b", 1)
        .parallel(true)
        .build()
        .unwrap();
    assert!(manager.connect_all().await.all_connected());
    let clone = manager.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 3 supervisors, the monitor, and the server's 3 connection tasks.
    assert!(
        metrics.num_alive_tasks() >= baseline + 7,
        "{}",
        metrics.num_alive_tasks()
    );

    drop(group);
    drop(manager);
    drop(clone);
    wait_until("every task ended", || metrics.num_alive_tasks() == baseline).await;
    wait_until("sockets closed", || server.connections() == 0).await;
}
