//! `cargo bench -p connection-transport-tcp --bench listener`: the listener's accept
//! rate against a bare tokio accept loop.
//!
//! `listener_accept`: 10,000 short connections (the client connects and closes at once,
//! 64 connects in flight), accepted per second. Ours is [`Listener`] with a cap of 1024
//! and a subscriber draining its events, a handler that drops the connection; the peer
//! is the loop a tokio user writes: `accept`, then `tokio::spawn` a task that drops the
//! stream. Both servers and the clients share one multi-thread runtime with 2 workers.
//! Rounds alternate which side goes first; the figure is the median of 9 rounds.
//!
//! JSON lines on stdout (DESIGN.md "Measuring"), a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::median;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connection_transport_tcp::{LengthDelimited, Listener, ListenerHandle};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::net::{TcpListener, TcpStream};

const PEER: &str = "tokio";
const ROUNDS: usize = 9;
const CONNECTIONS: u64 = 10_000;
const IN_FLIGHT: usize = 64;

/// Opens `n` connections to `addr`, `IN_FLIGHT` at a time, each closed at once.
async fn storm(addr: SocketAddr, n: u64) {
    let mut pending = FuturesUnordered::new();
    for _ in 0..n {
        if pending.len() >= IN_FLIGHT {
            pending.next().await;
        }
        pending.push(async move {
            drop(TcpStream::connect(addr).await.expect("connect"));
        });
    }
    while pending.next().await.is_some() {}
}

/// Connections per second until `accepted()` has grown by `CONNECTIONS`.
async fn round(addr: SocketAddr, accepted: impl Fn() -> u64) -> f64 {
    let before = accepted();
    let started = Instant::now();
    storm(addr, CONNECTIONS).await;
    while accepted() - before < CONNECTIONS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "accepts stalled"
        );
        tokio::task::yield_now().await;
    }
    CONNECTIONS as f64 / started.elapsed().as_secs_f64()
}

async fn ours() -> ListenerHandle {
    let listener = Listener::builder()
        .max_connections(1024)
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let mut events = listener.events();
    tokio::spawn(async move {
        // Events on, and read: the cost a monitored listener pays.
        while !matches!(
            events.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ) {}
    });
    listener.serve(LengthDelimited::new(), |conn| async move { drop(conn) })
}

async fn peer() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move { drop(stream) });
        }
    });
    (addr, count)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (o, p) = rt.block_on(async {
        let ours = ours().await;
        let (peer_addr, peer_count) = peer().await;
        // Warm up both (and the kernel's port and TIME_WAIT state).
        round(ours.local_addr(), || ours.metrics().accepted).await;
        round(peer_addr, || peer_count.load(Ordering::Relaxed)).await;
        let (mut o, mut p) = (Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            let ours_first = r % 2 == 0;
            for side in [ours_first, !ours_first] {
                if side {
                    o.push(round(ours.local_addr(), || ours.metrics().accepted).await);
                } else {
                    p.push(round(peer_addr, || peer_count.load(Ordering::Relaxed)).await);
                }
            }
            eprintln!("round {r}: ours {:.0}/s, {PEER} {:.0}/s", o[r], p[r]);
        }
        let m = ours.metrics();
        assert_eq!(m.rejected, 0, "the cap was never reached");
        (median(o), median(p))
    });
    eprintln!(
        "{:<18} {:>10.0} {:>10.0} {:>7.3}   (accepts/s, median of {ROUNDS} rounds)",
        "listener_accept",
        o,
        p,
        o / p
    );
    println!(
        "{{\"bench\":\"listener_accept\",\"unit\":\"accepts/s\",\"ours\":{o:.0},\"peer\":\"{PEER}\",\"peer_value\":{p:.0},\"ratio\":{:.3}}}",
        o / p
    );
}
