//! `set_latency` delays each direction by at least the fixed part, within the jitter,
//! never reorders, and `restore` releases queued data at once. On paused tokio time.

mod support;

use std::time::Duration;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, echo, payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn adds_the_fixed_delay_in_each_direction() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;

        let started = Instant::now();
        assert_eq!(echo(&mut client, b"fast").await.unwrap(), b"fast");
        assert!(
            started.elapsed() < 10 * MS,
            "{:?} without latency",
            started.elapsed()
        );

        proxy.set_latency(250 * MS, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(echo(&mut client, b"slow").await.unwrap(), b"slow");
        let rtt = started.elapsed();
        assert!(
            rtt >= 500 * MS,
            "round trip {rtt:?} shorter than 2 x 250 ms"
        );
        assert!(
            rtt < 600 * MS,
            "round trip {rtt:?} much longer than 2 x 250 ms"
        );

        proxy.set_latency(Duration::ZERO, Duration::ZERO);
        let started = Instant::now();
        assert_eq!(echo(&mut client, b"fast").await.unwrap(), b"fast");
        assert!(
            started.elapsed() < 10 * MS,
            "{:?} after removing latency",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_bounds_and_varies() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_latency(100 * MS, 100 * MS);
        let mut client = connect(proxy.addr()).await;
        let mut rtts = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            assert_eq!(echo(&mut client, b"j").await.unwrap(), b"j");
            rtts.push(started.elapsed());
        }
        for rtt in &rtts {
            assert!(
                *rtt >= 200 * MS && *rtt <= 410 * MS,
                "round trip {rtt:?} outside 200..=400 ms: {rtts:?}"
            );
        }
        rtts.sort();
        rtts.dedup();
        assert!(rtts.len() > 1, "jitter never varied: {rtts:?}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn never_reorders_chunks_under_jitter() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_latency(5 * MS, 50 * MS);
        let mut client = connect(proxy.addr()).await;
        let data = payload(200 * 16);
        let (mut reader, mut writer) = client.split();
        let send = async {
            // Separate writes a millisecond apart, so the proxy reads separate chunks
            // with different random delays.
            for piece in data.chunks(16) {
                writer.write_all(piece).await?;
                tokio::time::sleep(MS).await;
            }
            Ok::<_, std::io::Error>(())
        };
        let mut back = vec![0; data.len()];
        let (sent, read) = tokio::join!(send, reader.read_exact(&mut back));
        sent.unwrap();
        read.unwrap();
        assert!(back == data, "bytes arrived out of order");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn restore_releases_queued_data_at_once() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        proxy.set_latency(Duration::from_secs(3600), Duration::ZERO);
        let started = Instant::now();
        client.write_all(b"stuck").await.unwrap();
        let mut back = [0u8; 5];
        let early =
            tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut back)).await;
        assert!(early.is_err(), "data passed before its delay: {early:?}");

        proxy.restore();
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"stuck");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}
