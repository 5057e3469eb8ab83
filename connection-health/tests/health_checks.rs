//! Health checks: hanging probes time out, count as failures and never pile up;
//! thresholds; latency ceilings; failures reported from real traffic.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{EventFilter, EventType, HealthStatus};
use connection_health::{ConnectionManager, HealthCheck};
use connection_testkit::{FaultProxy, TcpEchoServer};
use futures::FutureExt;
use support::{drain, echo, health_change, next_matching, quick, wait_health};
use tokio::time::Instant;

/// Counts probes running now, and the most ever at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    started: AtomicUsize,
}

struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn counting_check(counter: &Arc<InFlight>, interval: Duration, threshold: u32) -> HealthCheck {
    let counter = counter.clone();
    HealthCheck::builder()
        .interval(interval)
        .probe_timeout(Duration::from_millis(200))
        .failure_threshold(threshold)
        .recovery_threshold(1)
        .check(move |handle| {
            let handle = handle.clone();
            let counter = counter.clone();
            async move {
                let now = counter.now.fetch_add(1, Ordering::SeqCst) + 1;
                counter.max.fetch_max(now, Ordering::SeqCst);
                counter.started.fetch_add(1, Ordering::SeqCst);
                let _guard = Guard(counter);
                handle.probe().await
            }
            .boxed()
        })
        .build()
        .expect("valid check")
}

#[tokio::test(start_paused = true)]
async fn hanging_probe_times_out_counts_and_does_not_pile_up() {
    let server = TcpEchoServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let counter = Arc::new(InFlight::default());
    let manager = ConnectionManager::builder()
        .health_check(counting_check(&counter, Duration::from_secs(1), 3))
        .build()
        .unwrap();
    manager.add("db", echo(proxy.addr()), quick()).unwrap();
    let mut health = manager.subscribe(EventFilter::all().types([EventType::HealthChanged]));
    assert!(manager.connect_all().await.all_connected());
    wait_health(&manager, "db", HealthStatus::Healthy).await;

    // The peer stops answering but the socket stays open: only probes can tell.
    proxy.blackhole(true);
    let blackholed = Instant::now();
    let started_before = counter.started.load(Ordering::SeqCst);
    let e = next_matching(&mut health, |e| {
        health_change(e) == Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
    })
    .await;
    assert_eq!(e.name.as_ref(), "db");
    // Three failures in a row: probes at +1 s, +2.2 s and +3.4 s, each timing out
    // after 200 ms. Two would not have been enough.
    let took = blackholed.elapsed();
    assert!(
        took >= Duration::from_millis(3_400) && took < Duration::from_millis(3_800),
        "{took:?}"
    );
    assert_eq!(counter.started.load(Ordering::SeqCst) - started_before, 3);

    // Ten more intervals: still one probe at a time, one per interval plus timeout.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(counter.max.load(Ordering::SeqCst), 1);
    let probes = counter.started.load(Ordering::SeqCst) - started_before;
    assert!((12..=14).contains(&probes), "{probes} probes");
    // The supervisor was told nothing: the connection is still up, just unhealthy.
    assert_eq!(
        manager.status("db").unwrap().state,
        connection_core::ConnectionState::Connected
    );

    // The peer answers again: one passing probe recovers it (recovery_threshold 1).
    proxy.restore();
    wait_health(&manager, "db", HealthStatus::Healthy).await;
}

#[tokio::test(start_paused = true)]
async fn default_probe_times_out_on_a_blackhole() {
    let server = TcpEchoServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(500))
                .probe_timeout(Duration::from_millis(100))
                .failure_threshold(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("db", echo(proxy.addr()), quick()).unwrap();
    manager.connect("db").unwrap();
    wait_health(&manager, "db", HealthStatus::Healthy).await;
    assert!(manager.status("db").unwrap().metrics.probe_rtt.count >= 1);
    proxy.blackhole(true);
    wait_health(&manager, "db", HealthStatus::Unhealthy).await;
}

#[tokio::test(start_paused = true)]
async fn reported_failures_follow_the_threshold() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .passive_only()
                .failure_threshold(3)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("api", echo(server.addr()), quick()).unwrap();
    manager.connect("api").unwrap();
    wait_health(&manager, "api", HealthStatus::Healthy).await;
    let mut health = manager.subscribe(EventFilter::all().types([EventType::HealthChanged]));
    let err = connection_core::Error::Closed {
        endpoint: manager.status("api").unwrap().endpoint,
    };

    manager.report_failure("api", &err).unwrap();
    manager.report_failure("api", &err).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(drain(&mut health).is_empty(), "two failures flipped it");
    assert_eq!(manager.health("api").unwrap(), HealthStatus::Healthy);

    manager.report_failure("api", &err).unwrap();
    let e = next_matching(&mut health, |_| true).await;
    assert_eq!(
        health_change(&e),
        Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
    );
    assert_eq!(manager.statistics().errors, 3);
    assert!(manager.report_failure("nope", &err).is_err());
}

#[tokio::test(start_paused = true)]
async fn slow_probes_rate_degraded() {
    let server = TcpEchoServer::start().await.unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_secs(1))
                .probe_timeout(Duration::from_secs(2))
                .degraded_latency(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("slow", echo(proxy.addr()), quick()).unwrap();
    manager.connect("slow").unwrap();
    wait_health(&manager, "slow", HealthStatus::Healthy).await;

    proxy.set_latency(Duration::from_millis(150), Duration::ZERO);
    wait_health(&manager, "slow", HealthStatus::Degraded).await;
    let stats = manager.statistics();
    assert_eq!((stats.degraded, stats.healthy), (1, 0));
    assert!(
        stats.probe_rtt.max >= Duration::from_millis(150),
        "{stats:?}"
    );

    proxy.set_latency(Duration::ZERO, Duration::ZERO);
    wait_health(&manager, "slow", HealthStatus::Healthy).await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_connection_is_unhealthy_at_once() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_secs(3600))
                .failure_threshold(5)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("x", echo(server.addr()), quick()).unwrap();
    manager.connect("x").unwrap();
    wait_health(&manager, "x", HealthStatus::Healthy).await;
    let before = Instant::now();
    server.stop().await;
    wait_health(&manager, "x", HealthStatus::Unhealthy).await;
    // Long before the next probe, regardless of the threshold of 5.
    assert!(
        before.elapsed() < Duration::from_secs(60),
        "{:?}",
        before.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn reported_successes_recover_a_passive_connection() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .passive_only()
                .failure_threshold(1)
                .recovery_threshold(2)
                .degraded_latency(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    manager.add("api", echo(server.addr()), quick()).unwrap();
    manager.connect("api").unwrap();
    wait_health(&manager, "api", HealthStatus::Healthy).await;
    let err = connection_core::Error::Closed {
        endpoint: manager.status("api").unwrap().endpoint,
    };
    manager.report_failure("api", &err).unwrap();
    wait_health(&manager, "api", HealthStatus::Unhealthy).await;

    manager
        .report_success("api", Duration::from_millis(80))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(manager.health("api").unwrap(), HealthStatus::Unhealthy);
    manager
        .report_success("api", Duration::from_millis(80))
        .unwrap();
    wait_health(&manager, "api", HealthStatus::Degraded).await;
    manager.report_success("api", Duration::ZERO).unwrap();
    wait_health(&manager, "api", HealthStatus::Healthy).await;
}

#[tokio::test(start_paused = true)]
async fn a_quick_restart_is_seen_as_a_drop() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server.addr()), quick()).unwrap();
    manager.connect("a").unwrap();
    wait_health(&manager, "a", HealthStatus::Healthy).await;
    let mut health = manager.subscribe(EventFilter::all().types([EventType::HealthChanged]));
    for _ in 0..3 {
        manager.restart("a").unwrap();
        // However the monitor saw the states (each one, or only the last), the drop
        // and the return both show.
        let down = next_matching(&mut health, |_| true).await;
        assert_eq!(
            health_change(&down),
            Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
        );
        let up = next_matching(&mut health, |_| true).await;
        assert_eq!(
            health_change(&up),
            Some((HealthStatus::Unhealthy, HealthStatus::Healthy))
        );
    }
    assert_eq!(server.accepted(), 4);
}
