//! The demo: the project's main job on local servers it starts itself.
//!
//! Three supervised connections share one event bus:
//! - `direct` talks straight to an echo server;
//! - `via-proxy` goes through a fault-injecting proxy, probes every 200 ms, and connects
//!   through a circuit breaker that opens after 2 failed connects in a row;
//! - `denied` reaches a server that refuses it with a non-retryable error.
//!
//! Then the script kills the echo server, restarts it on the same port, blackholes the
//! proxy (the peer stops answering without closing), restores it, and shuts everything
//! down. Every event is printed as it happens; a metrics table and the Prometheus
//! exposition close the part.
//!
//! Four more parts follow: a WebSocket client that keeps its queue through a server kill
//! and restart (`demo/ws.rs`), a failover group of two servers (`demo/failover.rs`), and
//! a failover pair of HTTP servers under constant traffic (`demo/http.rs`), and a TLS
//! listener with a cap serving clients through a connection cache, then shut down
//! gracefully (`demo/tcp.rs`).
#![allow(clippy::print_stdout, reason = "the demo reports to the terminal")]

mod failover;
mod http;
mod tcp;
mod ws;

use std::time::Duration;

use connection_kit::core::metrics::to_prometheus;
use connection_kit::retry::{BackoffStrategy, CircuitBreaker, EventSink, Jitter, ResilienceExt};
use connection_kit::{
    ConnectionState, EventBus, EventFilter, MetricsSnapshot, Severity, Supervisor, SupervisorHandle,
};
use connection_testkit::{FaultProxy, LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, sleep, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let mut echo = TcpEchoServer::start().await?;
    let proxy = FaultProxy::start(echo.addr()).await?;
    let gatekeeper = LoopbackServer::start(|mut stream, _| async move {
        let _ = stream.write_all(b"DENY\n").await;
    })
    .await?;
    println!(
        "echo server on {}, fault proxy on {}, gatekeeper on {}\n",
        echo.addr(),
        proxy.addr(),
        gatekeeper.addr()
    );

    let bus = EventBus::default();
    let mut events = bus.subscribe(EventFilter::all().min_severity(Severity::Info));
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Ok(e) => println!(
                    "{:>7.3}s  {:<10} {}",
                    started.elapsed().as_secs_f64(),
                    e.name,
                    e.kind
                ),
                Err(lagged) => println!("          ({lagged})"),
            }
        }
    });

    // Reconnect after 100 ms, doubling to at most 400 ms, with equal jitter so the
    // connections do not retry in lockstep.
    let backoff = BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
        .max_delay(Duration::from_millis(400))
        .jitter(Jitter::Equal)
        .build()?;
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(2)
        .wait(Duration::from_millis(300))
        .events(EventSink::named(bus.clone(), "breaker"))
        .build()?;
    let direct = Supervisor::new(TcpEchoTransport::new(echo.addr())?)
        .name("direct")
        .events(bus.clone())
        .backoff(backoff.clone())
        .keepalive(Duration::from_millis(500), Duration::from_millis(200))
        .spawn()?;
    let via_proxy = Supervisor::new(TcpEchoTransport::new(proxy.addr())?.circuit_breaker(breaker))
        .name("via-proxy")
        .events(bus.clone())
        .backoff(backoff.clone())
        .keepalive(Duration::from_millis(200), Duration::from_millis(150))
        .spawn()?;
    let denied = Supervisor::new(TcpEchoTransport::new(gatekeeper.addr())?.with_banner())
        .name("denied")
        .events(bus.clone())
        .backoff(backoff)
        .spawn()?;
    let all = [&direct, &via_proxy, &denied];

    wait_for(&direct, ConnectionState::Connected).await?;
    wait_for(&via_proxy, ConnectionState::Connected).await?;
    wait_for(&denied, ConnectionState::Failed).await?;
    sleep(Duration::from_millis(600)).await;

    step("killing the echo server");
    echo.stop().await;
    wait_for(&direct, ConnectionState::Reconnecting).await?;
    sleep(Duration::from_millis(700)).await;

    step("restarting the echo server on the same port");
    echo.restart().await?;
    wait_for(&direct, ConnectionState::Connected).await?;
    wait_for(&via_proxy, ConnectionState::Connected).await?;
    sleep(Duration::from_millis(600)).await;

    step("blackholing the proxy: the peer stops answering but never closes");
    proxy.blackhole(true);
    wait_for(&via_proxy, ConnectionState::Reconnecting).await?;
    sleep(Duration::from_millis(500)).await;

    step("restoring the proxy");
    proxy.restore();
    wait_for(&via_proxy, ConnectionState::Connected).await?;
    sleep(Duration::from_millis(600)).await;

    step("shutting down");
    for handle in all {
        let outcome = handle.shutdown(Duration::from_secs(2)).await;
        println!("          {:<10} shutdown: {outcome:?}", handle.name());
    }
    // Let the printer show the last events, then stop it.
    sleep(Duration::from_millis(50)).await;
    printer.abort();

    let snapshots: Vec<(String, MetricsSnapshot)> = all
        .iter()
        .map(|h| (h.name().to_owned(), h.metrics()))
        .collect();
    print_table(&snapshots);
    println!("\nPrometheus exposition:\n");
    print!(
        "{}",
        to_prometheus(snapshots.iter().map(|(n, s)| (n.as_str(), s)))
    );

    let direct_reconnects = snapshots[0].1.reconnects;
    let proxy_reconnects = snapshots[1].1.reconnects;
    if direct_reconnects == 0 || proxy_reconnects == 0 {
        return Err(
            format!("expected reconnects, got {direct_reconnects} and {proxy_reconnects}").into(),
        );
    }

    println!("\n=== WebSocket: the server is killed and restarted; nothing queued is lost\n");
    ws::run().await?;
    println!(
        "\n=== Failover: the primary is killed, the standby takes over, the primary takes back over\n"
    );
    failover::run().await?;
    println!(
        "\n=== HTTP: a failover pair of HTTP servers under constant traffic, one killed and restarted\n"
    );
    http::run().await?;
    println!(
        "\n=== TCP: a TLS listener with a cap, clients through a connection cache, a graceful shutdown\n"
    );
    tcp::run().await?;

    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(what: &str) {
    println!("\n--- {what}");
}

async fn wait_for(handle: &SupervisorHandle, state: ConnectionState) -> Result<(), BoxError> {
    let mut rx = handle.watch_state();
    timeout(Duration::from_secs(10), rx.wait_for(|s| *s == state))
        .await
        .map_err(|_| {
            format!(
                "{} did not reach {state} (is {})",
                handle.name(),
                handle.state()
            )
        })??;
    Ok(())
}

fn print_table(rows: &[(String, MetricsSnapshot)]) {
    println!(
        "\n{:<10} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "connection", "connected", "reconnects", "errors", "probes", "mean", "p99", "max"
    );
    for (name, s) in rows {
        println!(
            "{:<10} {:>9} {:>10} {:>7} {:>9} {:>9.2?} {:>9.2?} {:>9.2?}",
            name,
            s.connected,
            s.reconnects,
            s.errors,
            s.probe_rtt.count,
            s.probe_rtt.mean,
            s.probe_rtt.p99,
            s.probe_rtt.max
        );
    }
}
