//! The TCP client's I/O handle through a manager and a failover group of two real
//! servers on 127.0.0.1: one request-reply exchange every millisecond while the
//! primary's server is killed (listener and every open socket). No exchange may fail.
// The server helpers outside #[test] functions panic on setup failure, as tests do.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use connection_core::{Endpoint, Error, HealthStatus};
use connection_health::{ConnectionManager, ConnectionOptions, HealthCheck};
use connection_transport_tcp::{LengthDelimited, TcpIo, TcpTransport};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A server answering each frame with its name; `kill` closes the listener and every
/// connection at once.
struct NamedServer {
    addr: SocketAddr,
    kill: watch::Sender<bool>,
}

impl NamedServer {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, killed) = watch::channel(false);
        let mut stop = killed.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                    () = until_killed(&mut stop) => return,
                };
                let mut stop = killed.clone();
                tokio::spawn(async move {
                    let mut f = Framed::new(s, LengthDelimitedCodec::new());
                    loop {
                        tokio::select! {
                            frame = f.next() => match frame {
                                Some(Ok(_)) => {
                                    if f.send(Bytes::from_static(name.as_bytes())).await.is_err() {
                                        return;
                                    }
                                }
                                _ => return,
                            },
                            () = until_killed(&mut stop) => return,
                        }
                    }
                });
            }
        });
        Self { addr, kill }
    }

    fn transport(&self) -> TcpTransport<LengthDelimited> {
        let ep = Endpoint::host_port("127.0.0.1", self.addr.port()).unwrap();
        TcpTransport::new(ep, LengthDelimited::new()).unwrap()
    }
}

async fn until_killed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|k| *k).await;
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// One exchange: a frame out, the server's name back.
async fn exchange(io: TcpIo<LengthDelimited>) -> Result<Bytes, Error> {
    io.send(Bytes::from_static(b"which?")).await?;
    match tokio::time::timeout(Duration::from_secs(2), io.recv()).await {
        Ok(Some(Ok(reply))) => Ok(reply),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err(Error::Closed {
            endpoint: Endpoint::host_port("127.0.0.1", 1).unwrap(),
        }),
        Err(_) => Err(Error::timeout(
            &Endpoint::host_port("127.0.0.1", 1).unwrap(),
            connection_core::Operation::Request,
            Duration::from_secs(2),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_group_of_two_tcp_servers_keeps_traffic_flowing_while_one_is_killed() {
    let (east, west) = (
        NamedServer::start("east").await,
        NamedServer::start("west").await,
    );
    let manager = ConnectionManager::builder()
        .health_check(
            HealthCheck::builder()
                .interval(Duration::from_millis(100))
                .probe_timeout(Duration::from_millis(500))
                .failure_threshold(2)
                .recovery_threshold(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let options = || {
        ConnectionOptions::builder()
            .reconnect_delay(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    manager.add("east", east.transport(), options()).unwrap();
    manager.add("west", west.transport(), options()).unwrap();
    let group = manager
        .failover_group("echo")
        .route("east", 0)
        .route("west", 1)
        .parallel(true)
        .build()
        .unwrap();
    manager.connect_all().await;
    let mut primary = group.watch_primary();
    tokio::time::timeout(
        Duration::from_secs(5),
        primary.wait_for(|p| p.as_deref() == Some("east")),
    )
    .await
    .unwrap()
    .unwrap();
    wait_until("west healthy", || {
        manager.health("west").unwrap() == HealthStatus::Healthy
    })
    .await;
    let link = group.link::<TcpIo<LengthDelimited>>().unwrap();

    let (ok, failed, on_west) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (link, ok, failed, on_west, stop) = (
            link.clone(),
            ok.clone(),
            failed.clone(),
            on_west.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let mut n = 0u32;
            // Bounded: at most 20,000 exchanges, and stopped by the test.
            while n < 20_000 && !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                match link.run_idempotent(exchange).await {
                    Ok(reply) => {
                        if &reply[..] == b"west" {
                            on_west.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("exchange {n} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(ok.load(Ordering::Relaxed) > 50, "traffic was flowing");
    assert_eq!(on_west.load(Ordering::Relaxed), 0, "east served it all");
    east.kill.send_replace(true);
    tokio::time::timeout(
        Duration::from_secs(5),
        primary.wait_for(|p| p.as_deref() == Some("west")),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let on_west = on_west.load(Ordering::Relaxed);
    assert!(on_west > 50, "traffic moved to west: {on_west}");
    assert_eq!(failed, 0, "{failed} of {} exchanges failed", ok + failed);
    let west_metrics = manager.status("west").unwrap().metrics;
    assert!(west_metrics.messages_in >= on_west, "{west_metrics:?}");
    manager.shutdown(Duration::from_secs(2)).await;
}
