//! Nothing the user configures or plugs in stops the manager's background work: the
//! longest durations, a health check that panics, a panic in the monitor's loop itself,
//! a supervisor whose task died.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use connection_core::task::TaskEnded;
use connection_core::{
    ConnectionState, ConstantBackoff, Error, EventFilter, EventKind, EventType, HealthStatus,
    MAX_DURATION,
};
use connection_health::{ConnectionManager, ConnectionOptions, HealthCheck, MonitorRestarted};
use connection_testkit::{EchoClient, PANIC_MESSAGE, Panicking, TcpEchoServer};
use futures::FutureExt;
use support::{echo, next_matching, quick, wait_health, wait_state};

fn report_failures(manager: &ConnectionManager, name: &str, n: usize) {
    let ep = manager.status(name).expect("known connection").endpoint;
    for _ in 0..n {
        let error = Error::Closed {
            endpoint: ep.clone(),
        };
        manager
            .report_failure(name, &error)
            .expect("known connection");
    }
}

#[tokio::test(start_paused = true)]
async fn the_longest_durations_neither_panic_nor_stop_the_monitor() {
    // Settings stop at MAX_DURATION (validation); waits given per call have no bound.
    // (Settings past it are tested on the monitor directly: `monitor::tests`.)
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .connect_deadline(MAX_DURATION)
        .health_check(
            HealthCheck::builder()
                .interval(MAX_DURATION)
                .probe_timeout(MAX_DURATION)
                .failure_threshold(5)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let options = ConnectionOptions::builder()
        .connect_timeout(MAX_DURATION)
        .keepalive(MAX_DURATION, MAX_DURATION)
        .close_timeout(MAX_DURATION)
        .reconnect_delay(Duration::from_millis(100))
        .build()
        .unwrap();
    manager.add("db", echo(server.addr()), options).unwrap();
    let group = manager
        .failover_group("svc")
        .route("db", 0)
        .build()
        .unwrap();
    let report = manager.connect_all().await;
    assert!(report.all_connected(), "{report:?}");
    wait_health(&manager, "db", HealthStatus::Healthy).await;
    // A wait of "never" for a route (an overflow before).
    let (route, io) = group
        .link::<EchoClient>()
        .unwrap()
        .ready(Duration::MAX)
        .await
        .unwrap();
    assert_eq!(&*route, "db");
    io.echo(b"hi").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(manager.health("db").unwrap(), HealthStatus::Healthy);

    // The monitor still rates: five failures on traffic make it Unhealthy.
    report_failures(&manager, "db", 4);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(manager.health("db").unwrap(), HealthStatus::Healthy);
    report_failures(&manager, "db", 1);
    wait_health(&manager, "db", HealthStatus::Unhealthy).await;
    assert_eq!(manager.statistics().monitor_restarts, 0);
    assert!(manager.shutdown(Duration::MAX).await.aborted.is_empty());
}

/// What the check does: 0 probe, 1 panic when called, 2 panic when polled.
fn switchable_check(mode: &Arc<AtomicU8>) -> HealthCheck {
    let mode = mode.clone();
    HealthCheck::builder()
        .interval(Duration::from_secs(1))
        .probe_timeout(Duration::from_millis(500))
        .failure_threshold(2)
        .recovery_threshold(1)
        .check(move |handle| {
            let handle = handle.clone();
            match mode.load(Ordering::SeqCst) {
                1 => panic!("check called: {PANIC_MESSAGE}"),
                2 => async move { panic!("check polled: {PANIC_MESSAGE}") }.boxed(),
                _ => async move { handle.probe().await }.boxed(),
            }
        })
        .build()
        .expect("valid check")
}

#[tokio::test(start_paused = true)]
async fn a_panicking_health_check_counts_as_a_failure_and_is_reported() {
    let server = TcpEchoServer::start().await.unwrap();
    for (mode_value, said) in [(1, "check called"), (2, "check polled")] {
        let mode = Arc::new(AtomicU8::new(0));
        let manager = ConnectionManager::builder()
            .health_check(switchable_check(&mode))
            .build()
            .unwrap();
        manager.add("db", echo(server.addr()), quick()).unwrap();
        assert!(manager.connect_all().await.all_connected());
        wait_health(&manager, "db", HealthStatus::Healthy).await;
        let mut errors = manager.subscribe(EventFilter::all().types([EventType::Error]));

        mode.store(mode_value, Ordering::SeqCst);
        wait_health(&manager, "db", HealthStatus::Unhealthy).await;
        let event = next_matching(&mut errors, |_| true).await;
        let EventKind::Error { error } = &event.kind else {
            unreachable!()
        };
        let ended = TaskEnded::find(error).expect("a TaskEnded error");
        assert_eq!(ended.task(), "health check");
        assert!(
            ended.panic_message().is_some_and(|m| m.contains(said)),
            "{ended}"
        );
        assert_eq!(&*event.name, "db");

        // The monitor lives on: a working check rates the connection back up.
        mode.store(0, Ordering::SeqCst);
        wait_health(&manager, "db", HealthStatus::Healthy).await;
        assert_eq!(manager.statistics().monitor_restarts, 0);
        manager.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_monitor_loop_restarts_it_and_is_reported() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_secs(1))
                .probe_timeout(Duration::from_millis(500))
                .failure_threshold(3)
                .recovery_threshold(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    // Its backoff factory panics: the lazy group calls it from the monitor task, when
    // it starts this standby because "a" went down.
    let standby = ConnectionOptions::builder()
        .backoff(|| -> ConstantBackoff { panic!("backoff factory: {PANIC_MESSAGE}") })
        .build()
        .unwrap();
    manager.add("b", echo(server_b.addr()), standby).unwrap();
    let _group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .build()
        .unwrap();
    wait_health(&manager, "a", HealthStatus::Healthy).await;
    let mut restarted = manager.subscribe(EventFilter::all().extensions([MonitorRestarted::NAME]));

    server_a.stop().await;
    let event = next_matching(&mut restarted, |_| true).await;
    let restart = event
        .kind
        .downcast_ref::<MonitorRestarted>()
        .expect("a MonitorRestarted event");
    assert_eq!(restart.ended.task(), "health monitor");
    assert!(
        restart
            .ended
            .panic_message()
            .is_some_and(|m| m.contains("backoff factory")),
        "{event}"
    );
    assert_eq!(restart.restarts, 1);
    assert!(manager.statistics().monitor_restarts >= 1);

    // The restarted monitor still follows "a": back up, rated Healthy again...
    server_a.restart().await.unwrap();
    wait_state(&manager, "a", ConnectionState::Connected).await;
    wait_health(&manager, "a", HealthStatus::Healthy).await;
    // ...and down again on failures reported from traffic.
    report_failures(&manager, "a", 3);
    wait_health(&manager, "a", HealthStatus::Unhealthy).await;
    manager.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_supervisor_is_rated_down_and_started_anew() {
    let server = TcpEchoServer::start().await.unwrap();
    let transport = Panicking::new(echo(server.addr()));
    let switches = transport.clone();
    let manager = ConnectionManager::builder()
        .health_check(HealthCheck::passive())
        .build()
        .unwrap();
    let link = manager.add("db", transport, quick()).unwrap();
    assert!(manager.connect_all().await.all_connected());
    wait_health(&manager, "db", HealthStatus::Healthy).await;

    // The connection's close panics: restarting it kills its supervisor task.
    switches.panic_on_close(true);
    manager.restart("db").unwrap();
    wait_state(&manager, "db", ConnectionState::Failed).await;
    wait_health(&manager, "db", HealthStatus::Unhealthy).await;
    let status = manager.status("db").unwrap();
    let last = status.last_error.expect("the panic is reported");
    assert!(
        last.contains(&format!("supervisor task ended: panicked: {PANIC_MESSAGE}")),
        "{last}"
    );
    let err = link.ready(Duration::from_secs(1)).await.unwrap_err();
    assert!(TaskEnded::find(&err).is_some(), "{err}");

    // connect_all starts a new supervisor in place of the dead one.
    switches.panic_on_close(false);
    let report = manager.connect_all().await;
    assert!(report.all_connected(), "{report:?}");
    link.ready(Duration::from_secs(1))
        .await
        .unwrap()
        .echo(b"back")
        .await
        .unwrap();
    wait_health(&manager, "db", HealthStatus::Healthy).await;
    manager.shutdown(Duration::from_secs(1)).await;
}
