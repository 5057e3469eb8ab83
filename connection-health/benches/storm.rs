//! `cargo xtask bench manager` (second target): what the library's *defaults* do to a
//! server that restarts under many clients, and what a default supervisor weighs.
//!
//! - `storm_peak_share_10ms` (unit %): `STORM_N` connections, each a `Supervisor::new`
//!   with nothing but the transport set (the default backoff), to an in-process echo
//!   server. The server is stopped (every connection drops at once), stays down 2 s, and
//!   restarts on the same port. Its accept times after the restart are put in 10 ms
//!   buckets: the figure is the fullest bucket's share of the clients (goal: at most 2 %).
//!   `storm_peak_share_10ms_manager` is the same for a `ConnectionManager` with
//!   `ConnectionOptions::default()`. `storm_recovery_s` is how long after the restart
//!   the last client was back (the backoff's window). For contrast, stderr shows the
//!   same storm with the old default (a constant 1 s).
//! - `supervisor_memory_per_connection` (unit bytes): RSS after `N_MEMORY` default
//!   supervisors connected to an echo server in another process, minus RSS before, over
//!   `N_MEMORY`, with the bare transport's own share printed beside it on stderr.
//!
//! JSON lines on stdout, progress on stderr; every wait is bounded.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

#[allow(dead_code)] // shared with the manager bench; not every helper is used here
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use connection_core::{ConnectionState, ConstantBackoff, Supervised, Supervisor};
use connection_health::{ConnectionManager, ConnectionOptions};
use connection_testkit::{EchoClient, LoopbackServer, TcpEchoTransport, handlers};
use parking_lot::Mutex;
use support::{ServerProcess, raise_fd_limit, report, rss_bytes};
use tokio::time::timeout;

/// Clients in a storm.
const STORM_N: usize = 4_000;
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(2);
/// Bound on every client being connected (before and after the outage).
const BACK_BOUND: Duration = Duration::from_secs(60);
/// Default supervisors in the memory figure.
const N_MEMORY: usize = 10_000;
/// Bound on the whole program.
const WHOLE: Duration = Duration::from_secs(300);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    if std::env::var_os(support::SERVER_ENV).is_some() {
        if let Err(e) = support::run_server() {
            eprintln!("storm bench server: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(spec) = std::env::var_os(support::PEER_MEMORY_ENV) {
        if let Err(e) = support::run_peer_memory(&spec.to_string_lossy()) {
            eprintln!("storm bench peer-memory child: {e}");
            std::process::exit(1);
        }
        return;
    }
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = runtime.block_on(async {
        let body = tokio::spawn(async {
            let memory = memory().await;
            if let Err(e) = &memory {
                eprintln!("storm bench: memory figure missing: {e}");
            }
            let storms = storms().await;
            if let Err(e) = &storms {
                eprintln!("storm bench: storm figures missing: {e}");
            }
            memory.is_ok() && storms.is_ok()
        });
        timeout(WHOLE, body).await.map(|r| r.unwrap_or(false))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if ok != Ok(true) {
        std::process::exit(1);
    }
}

/// An echo server that notes when it accepted each connection.
async fn recording_server() -> Result<(LoopbackServer, Arc<Mutex<Vec<Instant>>>), BoxError> {
    let accepted = Arc::new(Mutex::new(Vec::with_capacity(STORM_N * 2)));
    let log = accepted.clone();
    let server = LoopbackServer::start(move |stream, peer| {
        log.lock().push(Instant::now());
        handlers::echo(stream, peer)
    })
    .await?;
    Ok((server, accepted))
}

/// What a storm did: the fullest 10 ms bucket's share of the clients (%), and how long
/// after the restart the last client was back.
struct Storm {
    peak_share: f64,
    recovery: Duration,
}

/// Stops `server`, keeps it down for `OUTAGE`, restarts it, and waits until `connected`
/// says every client is back; then reads the accept times after the restart.
async fn storm(
    server: &mut LoopbackServer,
    accepted: &Mutex<Vec<Instant>>,
    connected: impl Fn() -> usize,
) -> Result<Storm, BoxError> {
    server.stop().await;
    tokio::time::sleep(OUTAGE).await;
    let restarted = Instant::now();
    server.restart().await?;
    all_up(&connected, STORM_N, "back after the restart").await?;
    let times: Vec<Duration> = accepted
        .lock()
        .iter()
        .filter(|t| **t >= restarted)
        .map(|t| t.duration_since(restarted))
        .collect();
    let recovery = times.iter().max().copied().unwrap_or_default();
    let mut buckets = std::collections::HashMap::<u128, usize>::new();
    for t in &times {
        *buckets.entry(t.as_millis() / 10).or_default() += 1;
    }
    let peak = buckets.values().max().copied().unwrap_or(0);
    Ok(Storm {
        peak_share: peak as f64 * 100.0 / STORM_N as f64,
        recovery,
    })
}

/// Waits (bounded by `BACK_BOUND`) until `count()` reaches `n`.
async fn all_up(count: &impl Fn() -> usize, n: usize, what: &str) -> Result<(), BoxError> {
    timeout(BACK_BOUND, async {
        while count() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| {
        format!(
            "only {} of {n} clients {what} within {BACK_BOUND:?}",
            count()
        )
        .into()
    })
}

/// `STORM_N` supervisors built by `make` against `server`, all connected.
async fn supervisors<B: connection_core::Backoff>(
    server: &LoopbackServer,
    make: impl Fn(TcpEchoTransport) -> Supervisor<TcpEchoTransport, B>,
) -> Result<Vec<Supervised<EchoClient>>, BoxError> {
    let transport = TcpEchoTransport::new(server.addr())?;
    let mut all = Vec::with_capacity(STORM_N);
    for _ in 0..STORM_N {
        all.push(make(transport.clone()).spawn()?);
    }
    let up = || {
        all.iter()
            .filter(|s| s.state() == ConnectionState::Connected)
            .count()
    };
    all_up(&up, STORM_N, "connected").await?;
    Ok(all)
}

async fn storms() -> Result<(), BoxError> {
    // The default: Supervisor::new and nothing else.
    let (mut server, accepted) = recording_server().await?;
    let clients = supervisors(&server, Supervisor::new).await?;
    let up = || {
        clients
            .iter()
            .filter(|s| s.state() == ConnectionState::Connected)
            .count()
    };
    let ours = storm(&mut server, &accepted, up).await?;
    eprintln!(
        "storm, Supervisor::new defaults, {STORM_N} clients: peak 10 ms bucket {:.2} %, all back {:.2?} after the restart",
        ours.peak_share, ours.recovery
    );
    // Dropping the last handle shuts each supervisor down.
    drop(clients);
    drop(server);

    // The manager with ConnectionOptions::default().
    let (mut server, accepted) = recording_server().await?;
    let manager = ConnectionManager::builder()
        .max_connections(STORM_N)
        .build()?;
    let transport = TcpEchoTransport::new(server.addr())?;
    for i in 0..STORM_N {
        manager.add(
            format!("c{i}"),
            transport.clone(),
            ConnectionOptions::default(),
        )?;
    }
    let outcome = manager.connect_all().await;
    if outcome.connected.len() != STORM_N {
        return Err(format!("manager connected {} of {STORM_N}", outcome.connected.len()).into());
    }
    let up = || manager.statistics().connected;
    let managed = storm(&mut server, &accepted, up).await?;
    eprintln!(
        "storm, manager with ConnectionOptions::default(): peak 10 ms bucket {:.2} %, all back {:.2?}",
        managed.peak_share, managed.recovery
    );
    manager.shutdown(Duration::from_secs(5)).await;
    drop(server);

    // For contrast only: the old default, a constant 1 s.
    let (mut server, accepted) = recording_server().await?;
    let clients = supervisors(&server, |t| {
        Supervisor::new(t).backoff(ConstantBackoff::new(Duration::from_secs(1)))
    })
    .await?;
    let up = || {
        clients
            .iter()
            .filter(|s| s.state() == ConnectionState::Connected)
            .count()
    };
    let constant = storm(&mut server, &accepted, up).await?;
    eprintln!(
        "storm, constant 1 s (the old default, for contrast): peak 10 ms bucket {:.2} %, all back {:.2?}",
        constant.peak_share, constant.recovery
    );
    drop(clients);

    report("storm_peak_share_10ms", "%", ours.peak_share);
    report("storm_peak_share_10ms_manager", "%", managed.peak_share);
    report(
        "storm_recovery_s",
        "s",
        ours.recovery.max(managed.recovery).as_secs_f64(),
    );
    Ok(())
}

async fn memory() -> Result<(), BoxError> {
    let server = ServerProcess::start()?;
    let addr = server.addr(0);
    let before = rss_bytes().ok_or("no RSS on this platform")?;
    let transport = TcpEchoTransport::new(addr)?;
    let mut all = Vec::with_capacity(N_MEMORY);
    for _ in 0..N_MEMORY {
        all.push(Supervisor::new(transport.clone()).spawn()?);
    }
    let up = || {
        all.iter()
            .filter(|s| s.state() == ConnectionState::Connected)
            .count()
    };
    all_up(&up, N_MEMORY, "connected").await?;
    let after = rss_bytes().ok_or("no RSS on this platform")?;
    let per = after.saturating_sub(before) as f64 / N_MEMORY as f64;
    let bare = support::peer_memory(addr, N_MEMORY, 256).unwrap_or(f64::NAN);
    eprintln!(
        "{N_MEMORY} default supervisors: {per:.0} bytes per connection (the bare transport's connections alone: {bare:.0})"
    );
    drop(all);
    report("supervisor_memory_per_connection", "bytes", per);
    Ok(())
}
