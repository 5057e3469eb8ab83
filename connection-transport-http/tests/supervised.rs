//! The client as an I/O handle: under a supervisor (traffic in its metrics, failures as
//! health signals, reconnect when the server goes away), in a manager, and in a
//! failover group of two real local HTTP servers, one of them killed mid-stream.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{ConnectionState, Error, HealthStatus, Supervisor};
use connection_health::{ConnectionManager, ConnectionOptions, HealthCheck};
use connection_transport_http::{HttpClient, HttpConfig, HttpTransport, Probe};
use support::{HttpServer, text};

async fn api_server(name: &'static str) -> HttpServer {
    HttpServer::start(move |req| async move {
        match req.path.as_str() {
            "/health" => text(200, "up"),
            "/bad" => text(503, "down"),
            _ => text(200, name),
        }
    })
    .await
}

fn config(server: &HttpServer) -> HttpConfig {
    HttpConfig::builder(server.url())
        .probe(Probe::get("/health").expect_status(200))
        .no_retries()
        .build()
        .expect("config")
}

#[tokio::test(start_paused = true)]
async fn a_supervised_client_records_its_traffic_and_failures_in_its_connection() {
    let server = api_server("api").await;
    let api = Supervisor::new(HttpTransport::new(config(&server)).expect("transport"))
        .spawn()
        .expect("spawn");
    let client = api.ready(Duration::from_secs(5)).await.expect("connected");
    assert_eq!(server.requests(), 1, "connect sent the probe");
    let failures = api.watch_traffic_failures();
    let response = client.get("/orders").await.expect("ok");
    assert_eq!(response.text().expect("utf-8"), "api");
    let m = api.metrics();
    assert_eq!((m.requests, m.bytes_in, m.errors), (1, 3, 0), "{m:?}");
    assert_eq!(m.request_latency.count, 1);
    // A 503 is a failure on real traffic: counted, and seen by whoever watches.
    assert_eq!(client.get("/bad").await.expect("answered").status(), 503);
    assert_eq!(api.metrics().errors, 1);
    assert_eq!(*failures.borrow(), 1);
    // The client's own metrics count the same.
    assert_eq!(client.metrics().status_5xx, 1);
    api.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_supervised_client_reconnects_once_the_server_is_back() {
    let mut server = api_server("api").await;
    let api = Supervisor::new(HttpTransport::new(config(&server)).expect("transport"))
        .backoff(connection_core::ConstantBackoff::new(
            Duration::from_millis(100),
        ))
        .spawn()
        .expect("spawn");
    let client = api.ready(Duration::from_secs(5)).await.expect("connected");
    server.stop().await;
    let err = client.get("/").await.expect_err("server gone");
    assert!(Error::from(err).is_connection_level());
    // The connection is lost: the supervisor probes until the server answers.
    support::wait_until("reconnecting", || api.state() != ConnectionState::Connected).await;
    server.restart().await;
    let client = api.ready(Duration::from_secs(5)).await.expect("back");
    assert_eq!(client.get("/").await.expect("ok").status(), 200);
    api.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn probe_and_health_check_report_the_round_trip_and_the_details() {
    let mut server = api_server("api").await;
    let client = HttpClient::new(config(&server)).expect("client");
    let rtt = client.probe().await.expect("healthy");
    assert!(rtt < Duration::from_secs(1));
    let report = client.health_check().await;
    assert!(report.healthy, "{report:?}");
    assert_eq!((report.status, report.circuit), (Some(200), Some("closed")));
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["healthy"], true);
    assert!(json["response_time_seconds"].is_number());

    // A probe expecting another status fails with the status it got.
    let picky = HttpClient::new(
        config(&server)
            .to_builder()
            .probe(Probe::get("/bad").expect_status(200))
            .build()
            .expect("config"),
    )
    .expect("client");
    assert_eq!(picky.probe().await.expect_err("503").status(), Some(503));

    server.stop().await;
    let report = client.health_check().await;
    assert!(!report.healthy);
    assert!(
        report.error.as_deref().unwrap_or("").contains("connecting"),
        "{report:?}"
    );
    // Probes are not request traffic.
    assert_eq!(client.metrics().requests, 0);
}

/// The scenario: one idempotent request every millisecond through a failover group of
/// two HTTP servers; the primary's server is killed mid-stream. No request may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_group_of_two_http_servers_keeps_traffic_flowing_while_one_is_killed() {
    let (mut east, west) = (api_server("east").await, api_server("west").await);
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(100))
                .probe_timeout(Duration::from_millis(500))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()
                .expect("check"),
        )
        .build()
        .expect("manager");
    let options = || {
        ConnectionOptions::builder()
            .reconnect_delay(Duration::from_millis(100))
            .build()
            .expect("options")
    };
    manager
        .add(
            "east",
            HttpTransport::new(config(&east)).expect("transport"),
            options(),
        )
        .expect("add");
    manager
        .add(
            "west",
            HttpTransport::new(config(&west)).expect("transport"),
            options(),
        )
        .expect("add");
    let group = manager
        .failover_group("api")
        .route("east", 0)
        .route("west", 1)
        .parallel(true)
        .build()
        .expect("group");
    manager.connect_all().await;
    let mut primary = group.watch_primary();
    tokio::time::timeout(
        Duration::from_secs(5),
        primary.wait_for(|p| p.as_deref() == Some("east")),
    )
    .await
    .expect("east primary")
    .expect("group alive");
    support::wait_until("west healthy", || {
        manager.health("west").expect("known") == HealthStatus::Healthy
    })
    .await;
    let api = group.link::<HttpClient>().expect("typed link");

    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let served_by_west = Arc::new(AtomicU64::new(0));
    let load = {
        let (api, ok, failed, stop, west_count) = (
            api.clone(),
            ok.clone(),
            failed.clone(),
            stop.clone(),
            served_by_west.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u32;
            // Bounded: at most 20,000 requests, and stopped by the test.
            while n < 20_000 && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let result = api
                    .run_idempotent(|client| async move {
                        let response = client.get("/stock").await.map_err(Error::from)?;
                        Ok(response.text().map_err(Error::from)?.to_owned())
                    })
                    .await;
                match result {
                    Ok(body) => {
                        if body == "west" {
                            west_count.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("request {n} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 50, "traffic was flowing: {before}");
    assert_eq!(
        served_by_west.load(Ordering::Relaxed),
        0,
        "east served it all"
    );
    east.stop().await;
    tokio::time::timeout(
        Duration::from_secs(5),
        primary.wait_for(|p| p.as_deref() == Some("west")),
    )
    .await
    .expect("failed over to west")
    .expect("group alive");
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let on_west = served_by_west.load(Ordering::Relaxed);
    assert!(on_west > 50, "traffic moved to west: {on_west}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    let west_metrics = manager.status("west").expect("known").metrics;
    assert!(west_metrics.requests >= on_west, "{west_metrics:?}");
    manager.shutdown(Duration::from_secs(2)).await;
}
