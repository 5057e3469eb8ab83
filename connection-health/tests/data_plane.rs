//! Application traffic through the manager and through failover groups: typed links,
//! traffic in the statistics, failures on traffic as health signals, and a group that
//! keeps a stream of requests flowing while its primary's server dies and comes back.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{ConnectionState, Error, HealthStatus};
use connection_health::{ConnectionManager, FailoverGroup, GroupLink, HealthCheck, HealthError};
use connection_testkit::{EchoClient, LoopbackServer, TcpEchoServer};
use support::{echo, quick, wait_health, wait_primary, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn add_returns_a_typed_link_whose_traffic_shows_in_the_statistics() {
    let server = TcpEchoServer::start().await.expect("bind");
    let manager = ConnectionManager::new();
    let link = manager
        .add("db", echo(server.addr()), quick())
        .expect("added");
    // Not started yet: waiting is bounded.
    let err = link
        .ready(Duration::from_millis(50))
        .await
        .expect_err("not started");
    assert!(err.is_timeout(), "{err}");

    assert!(manager.connect_all().await.all_connected());
    let client = link.ready(Duration::from_secs(1)).await.expect("connected");
    for _ in 0..3 {
        client.echo(b"0123456789").await.expect("echo");
    }
    let s = manager.statistics();
    assert_eq!((s.bytes_out, s.bytes_in), (30, 30), "{s:?}");
    assert_eq!((s.messages_out, s.requests), (3, 3), "{s:?}");
    assert_eq!(s.request_latency.count, 3, "{s:?}");
    let prometheus = manager.metrics().to_prometheus();
    assert!(
        prometheus.contains("connection_request_latency_seconds_count{connection=\"db\"} 3\n"),
        "{prometheus}"
    );
    assert!(prometheus.contains("# TYPE connection_probe_rtt_seconds summary\n"));

    // The same link by name later; a wrong type is a clear error, not a panic.
    let again = manager.link::<EchoClient>("db").expect("same type");
    again
        .current()
        .expect("connected")
        .echo(b"x")
        .await
        .expect("echo");
    let err = manager.link::<String>("db").expect_err("wrong type");
    assert!(matches!(err, HealthError::IoType { .. }), "{err}");
    assert!(err.to_string().contains("EchoClient"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_link_from_add_stays_valid_across_disconnect_and_connect() {
    let server = TcpEchoServer::start().await.expect("bind");
    let manager = ConnectionManager::new();
    let link = manager
        .add("db", echo(server.addr()), quick())
        .expect("added");
    manager.connect_all().await;
    link.ready(Duration::from_secs(1)).await.expect("up");
    manager.disconnect_all().await;
    let err = link.current().expect_err("closed");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                state: ConnectionState::Closed,
                ..
            }
        ),
        "{err}"
    );
    // A new supervisor for the same entry publishes into the same link.
    manager.connect_all().await;
    let client = link.ready(Duration::from_secs(1)).await.expect("up again");
    client.echo(b"back").await.expect("echo");
}

#[tokio::test(start_paused = true)]
async fn failures_on_real_traffic_rate_the_connection_down_without_report_failure() {
    // Echoes until told otherwise, then answers garbage: the socket stays up.
    let server = LoopbackServer::start(|mut stream, _| async move {
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf).await {
            let reply = if buf[..n].starts_with(b"bad") {
                vec![b'?'; n]
            } else {
                buf[..n].to_vec()
            };
            if n == 0 || stream.write_all(&reply).await.is_err() {
                return;
            }
        }
    })
    .await
    .expect("bind");
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .passive_only()
                .failure_threshold(1)
                .build()
                .expect("valid"),
        )
        .build()
        .expect("valid");
    let link = manager
        .add("api", echo(server.addr()), quick())
        .expect("added");
    manager.connect_all().await;
    wait_health(&manager, "api", HealthStatus::Healthy).await;
    let client = link.ready(Duration::from_secs(1)).await.expect("up");
    client.echo(b"good").await.expect("echo");
    let err = client.echo(b"bad!").await.expect_err("garbage");
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    // Nobody called report_failure: the connection reported it on its traffic.
    wait_until("api rated down", || {
        manager.health("api").expect("known") != HealthStatus::Healthy
    })
    .await;
    assert!(manager.statistics().errors >= 1);
}

fn probing_manager() -> ConnectionManager {
    ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(100))
                .probe_timeout(Duration::from_millis(500))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()
                .expect("valid check"),
        )
        .build()
        .expect("valid manager")
}

/// A probing manager with a hot-standby group `api` over `east` (preferred) and `west`,
/// connected, east primary and west healthy; returns the group's typed link too.
async fn east_west_group(
    east: SocketAddr,
    west: SocketAddr,
) -> (ConnectionManager, FailoverGroup, GroupLink<EchoClient>) {
    let manager = probing_manager();
    manager.add("east", echo(east), quick()).expect("add");
    manager.add("west", echo(west), quick()).expect("add");
    let group = manager
        .failover_group("api")
        .route("east", 0)
        .route("west", 1)
        .parallel(true)
        .auto_recover(true)
        .build()
        .expect("group");
    manager.connect_all().await;
    let mut primary = group.watch_primary();
    wait_primary(&mut primary, "east", Duration::from_secs(5), "start").await;
    wait_health(&manager, "west", HealthStatus::Healthy).await;
    let api = group.link::<EchoClient>().expect("typed");
    (manager, group, api)
}

#[tokio::test(start_paused = true)]
async fn group_link_runs_on_the_primary_and_says_when_no_route_is_healthy() {
    let (mut east, mut west) = (
        TcpEchoServer::start().await.expect("bind"),
        TcpEchoServer::start().await.expect("bind"),
    );
    let (manager, group, api) = east_west_group(east.addr(), west.addr()).await;
    let api = api.wait(Duration::from_millis(500));
    api.run(|c| async move { c.echo(b"on east").await })
        .await
        .expect("runs");
    assert_eq!(manager.status("east").expect("known").metrics.requests, 1);
    assert_eq!(manager.status("west").expect("known").metrics.requests, 0);

    east.stop().await;
    west.stop().await;
    let err = api
        .run_idempotent(|c| async move { c.echo(b"anyone?").await })
        .await
        .expect_err("no route left");
    assert!(
        matches!(
            err,
            HealthError::NoHealthyRoute { .. } | HealthError::Connection { .. }
        ),
        "{err}"
    );
    wait_until("no primary", || group.primary().is_none()).await;
    let err = api
        .run(|c| async move { c.echo(b"anyone?").await })
        .await
        .expect_err("no route");
    assert!(matches!(err, HealthError::NoHealthyRoute { .. }), "{err}");
    assert!(
        err.to_string().contains("no route of failover group `api`"),
        "{err}"
    );
    assert!(matches!(
        group.link::<String>(),
        Err(HealthError::IoType { .. })
    ));
}

/// The scenario a failover group exists for: one idempotent request every millisecond,
/// the primary's server killed mid-stream and later restarted. No request may fail, and
/// traffic must be back on the primary after it recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stream_survives_the_primary_dying_and_returns_after_recovery() {
    let (mut east, west) = (
        TcpEchoServer::start().await.expect("bind"),
        TcpEchoServer::start().await.expect("bind"),
    );
    let (manager, group, api) = east_west_group(east.addr(), west.addr()).await;
    let mut primary = group.watch_primary();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (api, ok, failed, stop) = (api.clone(), ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u64;
            // Bounded: at most 20,000 requests, and stopped by the test.
            while n < 20_000 && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let payload = format!("req-{n}\n");
                match api
                    .run_idempotent(|c| {
                        let payload = payload.clone();
                        async move { c.echo(payload.as_bytes()).await }
                    })
                    .await
                {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("request {n} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = manager.status("east").expect("known").metrics.requests;
    assert!(before_kill > 100, "traffic was on east: {before_kill}");
    east.stop().await;
    wait_primary(&mut primary, "west", Duration::from_secs(5), "failover").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let on_west = manager.status("west").expect("known").metrics.requests;
    assert!(on_west > 100, "traffic moved to west: {on_west}");

    east.restart().await.expect("rebind");
    wait_primary(&mut primary, "east", Duration::from_secs(10), "recovery").await;
    let east_after_recovery = manager.status("east").expect("known").metrics.requests;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");

    let east_now = manager.status("east").expect("known").metrics.requests;
    assert!(
        east_now > east_after_recovery + 100,
        "traffic back on east: {east_after_recovery} -> {east_now}"
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 1_000, "{ok} requests succeeded");
    assert_eq!(
        failed,
        0,
        "{failed} of {} idempotent requests failed",
        ok + failed
    );
    manager.shutdown(Duration::from_secs(2)).await;
}

/// A request in flight on the primary when its server dies: `run_idempotent` runs it
/// once more on the route that takes over; `run` returns the connection-level error.
#[tokio::test(start_paused = true)]
async fn an_idempotent_request_in_flight_when_the_primary_dies_runs_again_on_the_standby() {
    let held = Arc::new(AtomicU64::new(0));
    // East echoes, except requests starting with "hold": those it never answers.
    let mut east = {
        let held = held.clone();
        LoopbackServer::start(move |mut stream, _| {
            let held = held.clone();
            async move {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].starts_with(b"hold") {
                        held.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
        .expect("bind")
    };
    let west = TcpEchoServer::start().await.expect("bind");
    let (manager, group, api) = east_west_group(east.addr(), west.addr()).await;
    let mut primary = group.watch_primary();

    let attempts = Arc::new(AtomicU64::new(0));
    let request = {
        let (api, attempts) = (api.clone(), attempts.clone());
        tokio::spawn(async move {
            api.run_idempotent(|c| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async move { c.echo(b"hold-1\n").await }
            })
            .await
        })
    };
    wait_until("east holds the request", || {
        held.load(Ordering::SeqCst) == 1
    })
    .await;
    east.stop().await;
    let result = request.await.expect("task");
    // West echoes "hold" like anything else: the second attempt succeeds there.
    result.expect("ran again on west");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(group.primary().as_deref(), Some("west"));
    assert_eq!(manager.status("west").expect("known").metrics.requests, 1);

    // Not idempotent: the error comes back, naming the route, and nothing is repeated.
    east.restart().await.expect("rebind");
    wait_primary(&mut primary, "east", Duration::from_secs(10), "recovery").await;
    let request = {
        let api = api.clone();
        tokio::spawn(async move { api.run(|c| async move { c.echo(b"hold-2\n").await }).await })
    };
    wait_until("east holds the second request", || {
        held.load(Ordering::SeqCst) == 2
    })
    .await;
    east.stop().await;
    let err = request.await.expect("task").expect_err("not repeated");
    let HealthError::Connection { name, source } = &err else {
        panic!("expected a connection error, got {err}");
    };
    assert_eq!(&**name, "east");
    assert!(source.is_connection_level(), "{source}");
    assert_eq!(manager.status("west").expect("known").metrics.requests, 1);
}
