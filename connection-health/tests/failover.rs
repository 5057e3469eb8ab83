//! Failover groups: passive failover when the primary's server goes away, automatic
//! return once it has recovered, manual switches, lazy standbys and the no-route state.

mod support;

use std::time::Duration;

use connection_core::{EventFilter, EventKind, EventType, HealthStatus};
use connection_health::{ConnectionManager, Failover, HealthCheck, HealthError, PrimaryChanged};
use connection_testkit::TcpEchoServer;
use support::{echo, next_matching, quick, wait_health, wait_primary, wait_until};
use tokio::time::Instant;

fn manager(interval: Duration) -> ConnectionManager {
    ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(interval)
                .probe_timeout(Duration::from_millis(500))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()
                .expect("valid check"),
        )
        .build()
        .expect("valid manager")
}

/// The group's own events, as (type, from, to) strings.
fn describe(kind: &EventKind) -> String {
    if let Some(PrimaryChanged { from, to, .. }) = kind.downcast_ref() {
        return format!("primary {} -> {to}", from.as_deref().unwrap_or("none"));
    }
    if let Some(Failover { from, to, .. }) = kind.downcast_ref() {
        return format!("failover {} -> {to}", from.as_deref().unwrap_or("none"));
    }
    match kind {
        EventKind::HealthChanged { from, to } => format!("group {from} -> {to}"),
        other => format!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn primary_killed_fails_over_then_recovers() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = manager(Duration::from_secs(1));
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    assert!(manager.connect_all().await.all_connected());
    wait_health(&manager, "a", HealthStatus::Healthy).await;
    wait_health(&manager, "b", HealthStatus::Healthy).await;

    let group = manager
        .failover_group("svc")
        .route("b", 1)
        .route("a", 0)
        .parallel(true)
        .auto_recover(true)
        .build()
        .unwrap();
    let mut events = group.subscribe(EventFilter::all());
    let mut failovers = group.subscribe(EventFilter::all().extensions([Failover::NAME]));
    let mut a_health = manager.subscribe(
        EventFilter::all()
            .name("a")
            .types([EventType::HealthChanged]),
    );
    assert_eq!(group.primary().as_deref(), Some("a"));
    assert_eq!(group.require_primary().unwrap().name(), "a");

    // The primary's server goes away: the standby takes over without waiting for a probe.
    server_a.stop().await;
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "b", support::WAIT, "failover in time").await;
    let failover = next_matching(&mut failovers, |_| true).await;
    match failover.kind.downcast_ref::<Failover>() {
        Some(Failover {
            from, to, reason, ..
        }) => {
            assert_eq!(from.as_deref(), Some("a"));
            assert_eq!(&**to, "b");
            assert!(reason.contains("a is unhealthy"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(failover.name.as_ref(), "svc");
    assert_eq!(failover.connection, group.id());

    // It comes back: once recovered (two passing probes), the group returns to it.
    server_a.restart().await.unwrap();
    wait_primary(&mut primary, "a", support::WAIT, "recovery in time").await;

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = next_matching(&mut events, |_| true).await;
        seen.push(describe(&e.kind));
    }
    assert_eq!(seen, ["failover a -> b", "primary b -> a"]);

    let a_changes: Vec<_> = support::drain(&mut a_health)
        .iter()
        .filter_map(support::health_change)
        .collect();
    assert_eq!(
        a_changes,
        [
            (HealthStatus::Healthy, HealthStatus::Unhealthy),
            (HealthStatus::Unhealthy, HealthStatus::Healthy),
        ]
    );
    let routes = group.routes();
    assert_eq!(routes[0].name.as_ref(), "a");
    assert!(routes[0].primary && !routes[1].primary);
}

/// Passive detection in real time: probes every hour, so only the dropped socket can
/// explain a quick switch.
#[tokio::test]
async fn failover_is_passive() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new(); // passive signals only
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .parallel(true)
        .build()
        .unwrap();
    let mut primary = group.watch_primary();
    tokio::time::timeout(Duration::from_secs(10), async {
        primary.wait_for(|p| p.as_deref() == Some("a")).await.ok();
        wait_health(&manager, "b", HealthStatus::Healthy).await;
    })
    .await
    .expect("both routes up");

    let started = Instant::now();
    server_a.stop().await;
    wait_primary(
        &mut primary,
        "b",
        Duration::from_secs(5),
        "passive failover",
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn no_healthy_route_says_so_and_recovers() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let mut server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .parallel(true)
        .build()
        .unwrap();
    let mut events = group.subscribe(EventFilter::all());
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;

    server_a.stop().await;
    server_b.stop().await;
    tokio::time::timeout(support::WAIT, primary.wait_for(Option::is_none))
        .await
        .expect("no primary left")
        .unwrap();
    assert!(group.primary_handle().is_none());
    let err = group.require_primary().unwrap_err();
    assert!(matches!(err, HealthError::NoHealthyRoute { .. }), "{err}");

    // The standby comes back first: it takes over, from the route that was lost.
    server_b.restart().await.unwrap();
    wait_primary(&mut primary, "b", support::WAIT, "standby back").await;
    // Back on the route that was lost last: a plain primary change, not a failover.
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("group unhealthy -> healthy") {
        seen.push(describe(&next_matching(&mut events, |_| true).await.kind));
    }
    assert_eq!(
        seen,
        [
            "primary none -> a",
            "group unknown -> healthy",
            "failover a -> b",
            "group healthy -> unhealthy",
            "primary none -> b",
            "group unhealthy -> healthy"
        ]
    );
    server_a.restart().await.unwrap();
    wait_primary(&mut primary, "a", support::WAIT, "auto recover").await;
}

#[tokio::test(start_paused = true)]
async fn set_primary_is_validated_and_pins() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    manager.add("c", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .route("c", 2)
        .build()
        .unwrap();
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;
    // Lazy standbys: only the preferred route was started.
    assert!(manager.handle("b").unwrap().is_none());

    let err = group.set_primary("zzz").unwrap_err();
    assert!(matches!(err, HealthError::UnknownRoute { .. }), "{err}");
    let err = group.set_primary("b").unwrap_err();
    assert!(
        matches!(
            err,
            HealthError::RouteUnhealthy {
                status: HealthStatus::Unknown,
                ..
            }
        ),
        "{err}"
    );

    manager.connect("b").unwrap();
    wait_health(&manager, "b", HealthStatus::Healthy).await;
    group.set_primary("b").unwrap();
    assert_eq!(group.primary().as_deref(), Some("b"));
    // Pinned: auto-recover does not take it back to `a` while `b` is fine.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(group.primary().as_deref(), Some("b"));

    // Kill a: b stays. Unknown names are refused.
    server_a.stop().await;
    wait_health(&manager, "a", HealthStatus::Unhealthy).await;
    assert_eq!(group.primary().as_deref(), Some("b"));
    let err = manager
        .failover_group("bad")
        .route("a", 0)
        .route("nope", 1)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, HealthError::UnknownConnection { .. }),
        "{err}"
    );
    let err = manager.failover_group("empty").build().unwrap_err();
    assert!(
        matches!(&err, HealthError::Config(c) if c.field() == "routes"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn lazy_standby_starts_when_needed() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .build()
        .unwrap();
    let mut events = group.subscribe(EventFilter::all().extensions([Failover::NAME]));
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;
    assert_eq!(
        server_b.accepted(),
        0,
        "standby connected before it was needed"
    );

    server_a.stop().await;
    wait_primary(&mut primary, "b", support::WAIT, "lazy failover").await;
    assert_eq!(server_b.accepted(), 1);
    let e = next_matching(&mut events, |_| true).await;
    assert_eq!(describe(&e.kind), "failover a -> b");
    wait_until("b stays up", || {
        manager.health("b").unwrap() == HealthStatus::Healthy
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn disconnect_all_starts_no_standby() {
    let server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .build()
        .unwrap();
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;

    let report = manager.disconnect_all().await;
    assert_eq!(report.graceful.len(), 1);
    primary.wait_for(Option::is_none).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        server_b.accepted(),
        0,
        "a standby was started after disconnect_all"
    );
    assert!(manager.handle("b").unwrap().is_none());

    // Connecting again brings the preferred route back.
    manager.connect("a").unwrap();
    wait_primary(&mut primary, "a", support::WAIT, "primary back").await;
}

#[tokio::test(start_paused = true)]
async fn members_are_added_with_the_group_and_rolled_back_on_error() {
    let server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    let err = manager
        .failover_group("bad")
        .member("x", echo(server_a.addr()), quick(), 0)
        .route("missing", 1)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, HealthError::UnknownConnection { .. }),
        "{err}"
    );
    assert!(manager.is_empty(), "the member was not rolled back");

    let group = manager
        .failover_group("svc")
        .member("a", echo(server_a.addr()), quick(), 0)
        .member("b", echo(server_b.addr()), quick(), 1)
        .parallel(true)
        .build()
        .unwrap();
    assert_eq!(
        manager.names(),
        ["a".into(), "b".into()] as [std::sync::Arc<str>; 2]
    );
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;
    wait_health(&manager, "b", HealthStatus::Healthy).await;
}

#[tokio::test(start_paused = true)]
async fn failover_prefers_a_healthy_route_over_a_degraded_one() {
    let mut server_a = TcpEchoServer::start().await.unwrap();
    let server_b = TcpEchoServer::start().await.unwrap();
    let slow = connection_testkit::FaultProxy::start(server_b.addr())
        .await
        .unwrap();
    slow.set_latency(Duration::from_millis(200), Duration::ZERO);
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_secs(1))
                .probe_timeout(Duration::from_secs(1))
                .degraded_latency(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("a", echo(server_a.addr()), quick()).unwrap();
    manager.add("b", echo(slow.addr()), quick()).unwrap();
    manager.add("c", echo(server_b.addr()), quick()).unwrap();
    let group = manager
        .failover_group("svc")
        .route("a", 0)
        .route("b", 1)
        .route("c", 2)
        .parallel(true)
        .build()
        .unwrap();
    for (name, status) in [
        ("a", HealthStatus::Healthy),
        ("b", HealthStatus::Degraded),
        ("c", HealthStatus::Healthy),
    ] {
        wait_health(&manager, name, status).await;
    }
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "a", support::WAIT, "first election").await;
    server_a.stop().await;
    wait_primary(
        &mut primary,
        "c",
        support::WAIT,
        "failover to the healthy route",
    )
    .await;
    // b recovering its speed takes over again: it is preferred to c.
    slow.set_latency(Duration::ZERO, Duration::ZERO);
    wait_primary(&mut primary, "b", support::WAIT, "auto recover to b").await;
}
