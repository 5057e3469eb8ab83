//! `connect_all`: partial success is a result, concurrency is bounded, the deadline holds.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connection_core::{ConnectionState, Endpoint, Error, Transport};
use connection_health::{ConnectionManager, ConnectionOptions};
use connection_testkit::{LoopbackServer, TcpEchoConnection, TcpEchoServer, TcpEchoTransport};
use support::{echo, quick};
use tokio::io::AsyncWriteExt;

async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound socket has an address");
    drop(listener);
    addr
}

#[tokio::test(start_paused = true)]
async fn some_refuse_and_the_result_says_which() {
    let good1 = TcpEchoServer::start().await.unwrap();
    let good2 = TcpEchoServer::start().await.unwrap();
    let deny = LoopbackServer::start(|mut stream, _| async move {
        let _ = stream.write_all(b"DENY\n").await;
    })
    .await
    .unwrap();
    let silent = LoopbackServer::silent().await.unwrap();
    let refused = closed_port().await;

    let manager = ConnectionManager::builder()
        .connect_deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let patient = ConnectionOptions::builder()
        .connect_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    manager.add("good1", echo(good1.addr()), quick()).unwrap();
    manager.add("good2", echo(good2.addr()), quick()).unwrap();
    manager.add("refused", echo(refused), quick()).unwrap();
    manager
        .add("deny", echo(deny.addr()).with_banner(), quick())
        .unwrap();
    manager
        .add("silent", echo(silent.addr()).with_banner(), patient)
        .unwrap();

    let report = manager.connect_all().await;
    let mut connected: Vec<&str> = report.connected.iter().map(|n| &**n).collect();
    connected.sort_unstable();
    assert_eq!(connected, ["good1", "good2"]);
    assert_eq!(report.failed.len(), 2, "{report:?}");

    let refused_f = report.failure("refused").expect("refused failed");
    assert!(
        refused_f.retrying,
        "a refused connect is retried in the background"
    );
    assert!(
        refused_f.error.contains(&refused.to_string()),
        "{}",
        refused_f.error
    );

    let deny_f = report.failure("deny").expect("deny failed");
    assert!(!deny_f.retrying);
    assert_eq!(deny_f.state, ConnectionState::Failed);
    assert!(deny_f.error.contains("403"), "{}", deny_f.error);
    // The error itself travels too, with its kind: no parsing of the message needed.
    assert_eq!(
        deny_f.source.as_ref().map(|e| e.kind()),
        Some(connection_core::ErrorKind::Auth)
    );
    assert_eq!(
        refused_f.source.as_ref().map(|e| e.kind()),
        Some(connection_core::ErrorKind::Connect)
    );

    assert_eq!(report.pending.len(), 1);
    assert_eq!(&*report.pending[0], "silent");
    assert!(report.not_started.is_empty());
    assert!(!report.all_connected());
    assert!(
        report.elapsed >= Duration::from_secs(5),
        "{:?}",
        report.elapsed
    );

    // The report serializes for logs and APIs.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failed"].as_array().unwrap().len(), 2);

    // The statuses agree, and the refused one is still being retried.
    assert_eq!(
        manager.status("deny").unwrap().state,
        ConnectionState::Failed
    );
    assert!(manager.status("refused").unwrap().last_error.is_some());
    let stats = manager.statistics();
    assert_eq!((stats.connections, stats.connected), (5, 2));
}

#[tokio::test(start_paused = true)]
async fn deadline_leaves_the_rest_not_started() {
    let silent = LoopbackServer::silent().await.unwrap();
    let manager = ConnectionManager::builder()
        .connect_concurrency(1)
        .connect_deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    for i in 0..3 {
        manager
            .add(format!("s{i}"), echo(silent.addr()).with_banner(), quick())
            .unwrap();
    }
    let report = manager.connect_all().await;
    assert_eq!(report.pending.len(), 1, "{report:?}");
    assert_eq!(report.not_started.len(), 2, "{report:?}");
    for name in &report.not_started {
        assert!(manager.handle(name).unwrap().is_none());
    }
}

/// A transport that counts connects in flight, each taking 10 ms of tokio time.
struct Counted {
    inner: TcpEchoTransport,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl Transport for Counted {
    type Connection = TcpEchoConnection;
    async fn connect(&self) -> Result<TcpEchoConnection, Error> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let result = self.inner.connect().await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        result
    }
    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .connect_concurrency(3)
        .build()
        .unwrap();
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    for i in 0..20 {
        let t = Counted {
            inner: echo(server.addr()),
            now: now.clone(),
            max: max.clone(),
        };
        manager.add(format!("c{i}"), t, quick()).unwrap();
    }
    let report = manager.connect_all().await;
    assert_eq!(report.connected.len(), 20, "{report:?}");
    assert_eq!(max.load(Ordering::SeqCst), 3);
    // 20 connects of 10 ms, 3 at a time: 7 rounds.
    assert!(
        report.elapsed >= Duration::from_millis(70) && report.elapsed < Duration::from_millis(100),
        "{:?}",
        report.elapsed
    );
    // Again: everything is already connected, nothing new is started.
    let again = manager.connect_all().await;
    assert_eq!(again.connected.len(), 20);
    assert_eq!(server.accepted(), 20);
}
