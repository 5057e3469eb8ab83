//! `cargo xtask bench manager`: failover time and the manager at 10,000 connections.
//!
//! - `failover_passive` / `failover_passive_p99`: a failover group of two routes
//!   (`primary` through a fault proxy in front of one echo server, `standby` straight to
//!   another), hot standby, probes every second. Each trial resets the primary's
//!   connection from the server side (the proxy sends an RST) and times, on real time,
//!   from that moment to the group's primary switching to `standby` (its watch). Then the
//!   primary reconnects and auto-recovery makes it primary again (not timed), and the next
//!   trial starts. Median and p99 of 200 trials, in milliseconds.
//! - `failover_traffic_switch` / `failover_traffic_failed`: the same group carrying one
//!   idempotent request per millisecond (`GroupLink::run_idempotent`) through 100 more
//!   resets of the primary: median time from the reset to the first request completed on
//!   the standby (ms), and how many requests failed (count; goal 0).
//! - At 10,000 connections to an echo server in another process (this binary re-executed,
//!   so its sockets and buffers are not in our RSS):
//!   - `manager_memory_per_connection`: RSS after `connect_all` minus RSS before the
//!     connections were added, over 10,000 (kernel socket buffers are not in RSS), in the
//!     first round, on a fresh allocator; stderr adds the share of the bare transport's
//!     connections, measured the same way in a fresh child process;
//!   - `manager_statistics_10k`: median time of one `statistics()` call (of 50), in
//!     microseconds;
//!   - `manager_connect_all`: `connect_all` with concurrency 256 against a plain tokio
//!     loop making the same transport's connects (`TcpEchoTransport::connect`) with a
//!     256-permit semaphore, a task per connect, the connections kept open until the round
//!     ends. After the first round of ours (a warm-up), 7 rounds alternate (peer, ours);
//!     medians compared, in connections per second, each round on a fresh server port.
//!
//! JSON lines on stdout, progress on stderr. Every wait is bounded; the server process is
//! ended by a drop guard and by the end of its stdin.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connection_health::{ConnectionManager, ConnectionOptions, HealthCheck, HealthStatus};
use connection_testkit::{EchoClient, FaultProxy, TcpEchoServer, TcpEchoTransport};
use support::{
    ServerProcess, cpu_seconds, median, percentile, raise_fd_limit, report, report_vs, rss_bytes,
    tokio_connect_all,
};
use tokio::time::timeout;

/// Connections of the scale figures.
const N: usize = 10_000;
/// `connect_all` concurrency, and the peer's semaphore.
const LIMIT: usize = 256;
/// Failover trials.
const TRIALS: usize = 200;
/// Failover trials with traffic.
const TRAFFIC_TRIALS: usize = 100;
/// Bound on one failover, and on one recovery between trials.
const SWITCH_BOUND: Duration = Duration::from_secs(2);
/// Connect rounds of each side.
const ROUNDS: usize = 7;
/// `statistics()` calls timed.
const STAT_CALLS: usize = 50;
/// Bound on closing 10,000 connections.
const SHUTDOWN: Duration = Duration::from_secs(15);
/// Bound on the whole group: whatever hangs, the process ends.
const WHOLE: Duration = Duration::from_secs(240);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if std::env::var_os(support::SERVER_ENV).is_some() {
        if let Err(e) = support::run_server() {
            eprintln!("manager bench server: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(spec) = std::env::var_os(support::PEER_MEMORY_ENV) {
        if let Err(e) = support::run_peer_memory(&spec.to_string_lossy()) {
            eprintln!("manager bench peer-memory child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let fds = raise_fd_limit();
    if fds < (N + 1000) as u64 {
        eprintln!("manager bench: file-descriptor limit {fds} is too low for {N} connections");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The bench body is a task on the runtime's workers, like a service's code; from
    // `block_on`'s thread every wake-up of the caller would be a cross-thread futex wake
    // (connect_all at 10,000: ratio about 0.75 from there, against about 0.9 from a task).
    let outcome = runtime.block_on(async {
        let body = tokio::spawn(async {
            // The scale figures do not depend on the failover ones: run them either way.
            let failover = failover().await;
            if let Err(e) = &failover {
                eprintln!("manager bench: failover figures missing: {e}");
            }
            let scale = scale().await;
            if let Err(e) = &scale {
                eprintln!("manager bench: scale figures incomplete: {e}");
            }
            failover.is_ok() && scale.is_ok()
        });
        timeout(WHOLE, body).await.map(|done| done.unwrap_or(false))
    });
    let failed = match outcome {
        Ok(all) => !all,
        Err(_) => {
            eprintln!("manager bench: gave up after {WHOLE:?}");
            true
        }
    };
    // Supervisors still closing must not hold the process up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed {
        std::process::exit(1);
    }
}

// ---- failover ----

async fn failover() -> Result<(), BoxError> {
    let primary_server = TcpEchoServer::start().await?;
    let standby_server = TcpEchoServer::start().await?;
    let proxy = FaultProxy::start(primary_server.addr()).await?;

    let manager = ConnectionManager::builder()
        // Probes are far apart: a switch within milliseconds can only be passive.
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_secs(1))
                .probe_timeout(Duration::from_millis(500))
                .recovery_threshold(1)
                .build()?,
        )
        .build()?;
    let options = ConnectionOptions::builder()
        .connect_timeout(Duration::from_secs(1))
        .reconnect_delay(Duration::from_millis(5))
        .close_timeout(Duration::from_secs(1))
        .build()?;
    manager.add(
        "primary",
        TcpEchoTransport::new(proxy.addr())?,
        options.clone(),
    )?;
    manager.add(
        "standby",
        TcpEchoTransport::new(standby_server.addr())?,
        options,
    )?;
    let group = manager
        .failover_group("service")
        .route("primary", 0)
        .route("standby", 1)
        .parallel(true)
        .auto_recover(true)
        .build()?;
    let mut primary = group.watch_primary();
    let is = |name: &'static str| move |p: &Option<Arc<str>>| p.as_deref() == Some(name);

    let mut samples = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        // The primary is back and preferred again, and the standby is usable.
        timeout(SWITCH_BOUND, primary.wait_for(is("primary")))
            .await
            .map_err(|_| {
                format!("trial {trial}: the primary did not recover in {SWITCH_BOUND:?}")
            })??;
        if !standby_healthy(&group).await {
            return Err(format!("trial {trial}: the standby is not healthy").into());
        }
        let started = Instant::now();
        proxy.reset_all();
        timeout(SWITCH_BOUND, primary.wait_for(is("standby")))
            .await
            .map_err(|_| format!("trial {trial}: no failover within {SWITCH_BOUND:?}"))??;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let med = median(&samples);
    let p99 = percentile(&samples, 0.99);
    eprintln!(
        "failover over {TRIALS} trials: median {med:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        percentile(&samples, 1.0)
    );
    report("failover_passive", "ms", med);
    report("failover_passive_p99", "ms", p99);

    failover_traffic(&group, &proxy, standby_server.addr()).await?;
    drop(group);
    manager.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

/// `failover_traffic_switch` and `failover_traffic_failed`: the same group carries one
/// idempotent echo request per millisecond through [`GroupLink::run_idempotent`] while
/// the primary's connection is reset `TRAFFIC_TRIALS` times. Switch time is from the
/// reset to the first request completed on the standby; every failed request counts.
async fn failover_traffic(
    group: &connection_health::FailoverGroup,
    proxy: &FaultProxy,
    standby: std::net::SocketAddr,
) -> Result<(), BoxError> {
    let api = group.link::<EchoClient>()?;
    let standby_port = standby.port();
    let failed = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Completions on the standby, as the instant they completed.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let load = {
        let (failed, ok, stop) = (failed.clone(), ok.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded by the stop flag and by a count well above what the trials need.
            for _ in 0..2_000_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let result = api
                    .run_idempotent(|c| async move {
                        c.echo(b"GET /status\n").await?;
                        Ok(c.endpoint().port() == standby_port)
                    })
                    .await;
                match result {
                    Ok(on_standby) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if on_standby {
                            let _ = done_tx.send(Instant::now());
                        }
                    }
                    Err(e) => {
                        eprintln!("failover traffic: request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let mut primary = group.watch_primary();
    let is = |name: &'static str| move |p: &Option<Arc<str>>| p.as_deref() == Some(name);
    let mut samples = Vec::with_capacity(TRAFFIC_TRIALS);
    let result: Result<(), BoxError> = async {
        for trial in 0..TRAFFIC_TRIALS {
            timeout(SWITCH_BOUND, primary.wait_for(is("primary")))
                .await
                .map_err(|_| format!("traffic trial {trial}: the primary did not recover"))??;
            if !standby_healthy(group).await {
                return Err(format!("traffic trial {trial}: the standby is not healthy").into());
            }
            // Traffic is on the primary again: forget completions from before.
            tokio::time::sleep(Duration::from_millis(5)).await;
            while done_rx.try_recv().is_ok() {}
            let started = Instant::now();
            proxy.reset_all();
            let first = timeout(SWITCH_BOUND, async {
                loop {
                    match done_rx.recv().await {
                        Some(at) if at >= started => return Some(at),
                        Some(_) => continue,
                        None => return None,
                    }
                }
            })
            .await;
            match first {
                Ok(Some(at)) => samples.push(at.duration_since(started).as_secs_f64() * 1e3),
                _ => {
                    return Err(format!(
                        "traffic trial {trial}: no request completed on the standby"
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = timeout(SWITCH_BOUND, load).await;
    result?;
    let med = median(&samples);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "failover with traffic over {TRAFFIC_TRIALS} resets: switch median {med:.3} ms, p99 {:.3} ms; {ok} requests succeeded, {failed} failed",
        percentile(&samples, 0.99)
    );
    report("failover_traffic_switch", "ms", med);
    report("failover_traffic_failed", "count", failed as f64);
    Ok(())
}

/// Waits (bounded by `SWITCH_BOUND`) until the group's `standby` route is rated Healthy.
async fn standby_healthy(group: &connection_health::FailoverGroup) -> bool {
    timeout(SWITCH_BOUND, async {
        while !group
            .routes()
            .iter()
            .any(|r| &*r.name == "standby" && r.health == HealthStatus::Healthy)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .is_ok()
}

// ---- 10,000 connections ----

/// A manager with `N` connections to `addr`, not started.
fn manager_to(addr: std::net::SocketAddr) -> Result<ConnectionManager, BoxError> {
    let manager = ConnectionManager::builder()
        .connect_concurrency(LIMIT)
        .connect_deadline(Duration::from_secs(60))
        .build()?;
    let options = ConnectionOptions::builder()
        .connect_timeout(support::CONNECT_TIMEOUT)
        .close_timeout(Duration::from_secs(5))
        .build()?;
    let transport = TcpEchoTransport::new(addr)?;
    let started = Instant::now();
    for i in 0..N {
        manager.add(format!("conn-{i}"), transport.clone(), options.clone())?;
    }
    eprintln!("  add x{N}: {:.2?}", started.elapsed());
    Ok(manager)
}

/// `connect_all` on `manager`; fails unless every connection connected.
async fn connect_all(manager: &ConnectionManager) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let report = manager.connect_all().await;
    let took = started.elapsed();
    if report.connected.len() != N {
        return Err(format!(
            "connect_all connected {} of {N} ({} failed, first: {:?}; {} pending, {} not started)",
            report.connected.len(),
            report.failed.len(),
            report.failed.first().map(|f| &f.error),
            report.pending.len(),
            report.not_started.len()
        )
        .into());
    }
    Ok(took)
}

async fn close(manager: ConnectionManager) {
    let report = manager.shutdown(SHUTDOWN).await;
    eprintln!(
        "  shutdown: {} graceful, {} aborted in {:.2?}",
        report.graceful.len(),
        report.aborted.len(),
        report.elapsed
    );
    drop(manager);
    // Let the server process see the closes before the next round.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn scale() -> Result<(), BoxError> {
    let server = ServerProcess::start()?;
    let mut port = 0;

    // The first round of ours gives memory and statistics, before any other round has
    // grown the allocator; it is a warm-up for the connect times.
    let before = rss_bytes();
    let manager = manager_to(server.addr(port))?;
    port += 1;
    let added = rss_bytes();
    let took = connect_all(&manager).await?;
    let after = rss_bytes();
    eprintln!("warm-up (ours): connect_all {took:.2?}");
    if let (Some(before), Some(added), Some(after)) = (before, added, after) {
        let per = after.saturating_sub(before) as f64 / N as f64;
        eprintln!(
            "  rss {before} -> {added} after add -> {after} connected: {:.0} bytes per \
             connection registered, {per:.0} in all",
            added.saturating_sub(before) as f64 / N as f64
        );
        report("manager_memory_per_connection", "bytes", per);
    }
    let mut calls = Vec::with_capacity(STAT_CALLS);
    for _ in 0..STAT_CALLS {
        let started = Instant::now();
        let stats = std::hint::black_box(manager.statistics());
        calls.push(started.elapsed().as_secs_f64() * 1e6);
        if stats.connected != N {
            eprintln!("  statistics: {} of {N} connected", stats.connected);
        }
    }
    let stats_us = median(&calls);
    eprintln!("  statistics(): median {stats_us:.0} us");
    report("manager_statistics_10k", "us", stats_us);
    close(manager).await;
    // Context for the memory figure: the transport's own share.
    match support::peer_memory(server.addr(port), N, LIMIT) {
        Ok(bare) => eprintln!(
            "  the bare transport's connections alone (plain tokio loop, fresh process): \
             {bare:.0} bytes per connection"
        ),
        Err(e) => eprintln!("  bare transport memory not measured: {e}"),
    }
    port += 1;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut peer_cpu) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let rss = rss_bytes();
        let transport = TcpEchoTransport::new(server.addr(port))?;
        let cpu = cpu_seconds();
        let (took, conns) = tokio_connect_all(&transport, N, LIMIT).await?;
        peer_cpu.extend(cpu.zip(cpu_seconds()).map(|(b, a)| a - b));
        port += 1;
        let per = rss
            .zip(rss_bytes())
            .map_or(0.0, |(b, a)| a.saturating_sub(b) as f64 / N as f64);
        eprintln!("round {round}: tokio loop {took:.2?} (rss +{per:.0} bytes per connection)");
        peer.push(took.as_secs_f64());
        drop(conns);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let manager = manager_to(server.addr(port))?;
        port += 1;
        let cpu = cpu_seconds();
        let took = connect_all(&manager).await?;
        ours_cpu.extend(cpu.zip(cpu_seconds()).map(|(b, a)| a - b));
        eprintln!("round {round}: connect_all {took:.2?}");
        ours.push(took.as_secs_f64());
        close(manager).await;
    }
    let ours_rate = N as f64 / median(&ours);
    let peer_rate = N as f64 / median(&peer);
    eprintln!(
        "connect_all: median {:.0} conn/s, tokio loop {:.0} conn/s over {ROUNDS} rounds each",
        ours_rate, peer_rate
    );
    eprintln!(
        "  cpu of this process per connection (user + system, median): connect_all {:.1} us, \
         tokio loop {:.1} us",
        median(&ours_cpu) * 1e6 / N as f64,
        median(&peer_cpu) * 1e6 / N as f64
    );
    report_vs(
        "manager_connect_all",
        "conn/s",
        ours_rate,
        "tokio",
        peer_rate,
        ours_rate / peer_rate,
    );
    Ok(())
}
