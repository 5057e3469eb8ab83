//! The demo's HTTP section: a failover pair of local HTTP servers, `east` (preferred) and
//! `west`, each reached by an `HttpClient` (retries, retry budget and circuit breaker on,
//! as by default) that a connection manager supervises and health-checks with a
//! `GET /health` probe. The application sends one GET per millisecond *through the
//! group* the whole time; `east` is killed, then restarted. The demo prints the switches,
//! the breakers' states, each client's metrics and how many requests failed: the goal,
//! and the demo's condition, is none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connection_kit::Error;
use connection_kit::health::{ConnectionManager, ConnectionOptions, FailoverGroup, HealthCheck};
use connection_kit::http::{HttpClient, HttpConfig, HttpTransport, Probe};
use connection_testkit::LoopbackServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tiny HTTP/1.1 keep-alive server: `GET /health` answers `up`, anything else the
/// server's name. Enough for a demo; the crate's tests use hyper.
async fn http_server(name: &'static str) -> Result<LoopbackServer, BoxError> {
    Ok(LoopbackServer::start(move |mut stream, _| async move {
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            // One request head at a time (the demo sends no bodies).
            let head_end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            buf.drain(..head_end);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let body = if path == "/health" { "up" } else { name };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await?)
}

/// Runs the HTTP section; fails if a request fails or a switch does not happen in time.
pub(crate) async fn run() -> Result<(), BoxError> {
    let started = Instant::now();
    let mut east = http_server("east").await?;
    let west = http_server("west").await?;
    println!("east on {}, west on {}", east.addr(), west.addr());

    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(250))
                .probe_timeout(Duration::from_millis(200))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()?,
        )
        .build()?;
    let options = ConnectionOptions::builder()
        .connect_timeout(Duration::from_millis(500))
        .reconnect_delay(Duration::from_millis(200))
        .build()?;
    for (name, server) in [("east", &east), ("west", &west)] {
        let config = HttpConfig::builder(format!("http://{}", server.addr()))
            .probe(Probe::get("/health").expect_status(200))
            .request_timeout(Duration::from_millis(500))
            .build()?;
        manager.add(name, HttpTransport::new(config)?, options.clone())?;
    }
    let group = manager
        .failover_group("api")
        .route("east", 0)
        .route("west", 1)
        .parallel(true)
        .auto_recover(true)
        .build()?;
    manager.connect_all().await;
    wait_primary(&group, "east").await?;
    let api = group.link::<HttpClient>()?;

    let (ok, failed, by_west) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (ok, failed, by_west, stop) =
            (ok.clone(), failed.clone(), by_west.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u32;
            // Bounded: at most 10,000 requests, and stopped by the demo.
            while n < 10_000 && !stop.load(Ordering::Relaxed) {
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
                            by_west.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        println!("          request {n} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    println!("sending one GET per millisecond through the group `api`");
    sleep(Duration::from_millis(400)).await;

    println!("\n--- killing east's server");
    let killed = Instant::now();
    east.stop().await;
    wait_primary(&group, "west").await?;
    println!(
        "{:>7.3}s  api      primary east -> west, {:.1} ms after the kill",
        started.elapsed().as_secs_f64(),
        killed.elapsed().as_secs_f64() * 1e3
    );
    sleep(Duration::from_millis(600)).await;
    print_breakers(&manager);

    println!("\n--- restarting east's server on the same port");
    let restarted = Instant::now();
    east.restart().await?;
    wait_primary(&group, "east").await?;
    println!(
        "{:>7.3}s  api      primary west -> east, {:.0} ms after its server returned",
        started.elapsed().as_secs_f64(),
        restarted.elapsed().as_secs_f64() * 1e3
    );
    sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await?;

    print_breakers(&manager);
    println!(
        "\n{:<6} {:>8} {:>7} {:>8} {:>6} {:>6} {:>9} {:>9}",
        "client", "requests", "errors", "retries", "2xx", "5xx", "p50", "p99"
    );
    for name in ["east", "west"] {
        if let Ok(link) = manager.link::<HttpClient>(name)
            && let Ok(client) = link.current()
        {
            let m = client.metrics();
            println!(
                "{:<6} {:>8} {:>7} {:>8} {:>6} {:>6} {:>9.2?} {:>9.2?}",
                name,
                m.requests,
                m.errors,
                m.retries,
                m.status_2xx,
                m.status_5xx,
                m.latency.p50,
                m.latency.p99
            );
        }
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "\ntraffic: {ok} requests answered ({} by west), {failed} failed",
        by_west.load(Ordering::Relaxed)
    );
    manager.shutdown(Duration::from_secs(2)).await;
    if failed > 0 {
        return Err(format!("{failed} requests failed during the HTTP failover").into());
    }
    Ok(())
}

async fn wait_primary(group: &FailoverGroup, want: &str) -> Result<(), BoxError> {
    let mut primary = group.watch_primary();
    timeout(
        Duration::from_secs(5),
        primary.wait_for(|p| p.as_deref() == Some(want)),
    )
    .await
    .map_err(|_| format!("{want} did not become the primary within 5 s"))??;
    Ok(())
}

fn print_breakers(manager: &ConnectionManager) {
    let states: Vec<String> = ["east", "west"]
        .iter()
        .map(|name| {
            let state = manager
                .link::<HttpClient>(name)
                .ok()
                .and_then(|l| l.current().ok())
                .and_then(|c| c.circuit_breaker().map(|b| format!("{:?}", b.state())))
                .unwrap_or_else(|| "(no connection)".to_owned());
            format!("{name}: {state}")
        })
        .collect();
    println!("          breakers: {}", states.join(", "));
}
