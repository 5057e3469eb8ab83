//! `set_bandwidth` limits throughput per direction; lifting it speeds a transfer up at
//! once; zero stalls. On paused tokio time.

mod support;

use std::time::Duration;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, drain, echo, firehose, payload};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

const KIB: usize = 1024;

#[tokio::test(start_paused = true)]
async fn limits_one_direction() {
    bounded(async {
        let server = firehose(64 * KIB).await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_bandwidth(Some(32 * 1024));
        let started = Instant::now();
        let mut client = connect(proxy.addr()).await;
        let (data, error) = drain(&mut client).await;
        let elapsed = started.elapsed();
        assert!(error.is_none(), "{error:?}");
        assert!(
            data == payload(64 * KIB),
            "{} bytes arrived, or different ones",
            data.len()
        );
        // 64 KiB at 32 KiB/s: 2 s, less the first piece (1/20 s worth), sent at once.
        assert!(
            elapsed >= Duration::from_millis(1900),
            "64 KiB at 32 KiB/s took only {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_millis(2200),
            "64 KiB at 32 KiB/s took {elapsed:?}"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn limits_a_round_trip_through_an_echo_server() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        let data = payload(64 * KIB);

        let started = Instant::now();
        assert!(echo(&mut client, &data).await.unwrap() == data);
        assert!(
            started.elapsed() < Duration::from_millis(10),
            "unlimited took {:?}",
            started.elapsed()
        );

        proxy.set_bandwidth(Some(32 * 1024));
        let started = Instant::now();
        assert!(echo(&mut client, &data).await.unwrap() == data);
        let elapsed = started.elapsed();
        // Both directions are limited, but they overlap.
        assert!(
            elapsed >= Duration::from_millis(1500),
            "64 KiB at 32 KiB/s took only {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_secs(3),
            "64 KiB at 32 KiB/s took {elapsed:?}"
        );
        assert_eq!(proxy.stats().bytes_to_client, 2 * data.len() as u64);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn lifting_the_limit_speeds_up_a_running_transfer() {
    bounded(async {
        let server = firehose(64 * KIB).await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_bandwidth(Some(1024));
        let started = Instant::now();
        let mut client = connect(proxy.addr()).await;
        let mut first = vec![0; 2 * KIB];
        client.read_exact(&mut first).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "2 KiB at 1 KiB/s took {:?}",
            started.elapsed()
        );

        proxy.set_bandwidth(None);
        let (rest, error) = drain(&mut client).await;
        assert!(error.is_none(), "{error:?}");
        assert!([first, rest].concat() == payload(64 * KIB));
        // At 1 KiB/s the whole transfer would take a minute.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn zero_stalls_until_changed() {
    bounded(async {
        let server = firehose(KIB).await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.set_bandwidth(Some(0));
        let mut client = connect(proxy.addr()).await;
        let mut buf = [0u8; 16];
        let stalled = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await;
        assert!(
            stalled.is_err(),
            "data passed a zero bandwidth: {stalled:?}"
        );

        proxy.restore();
        let (data, error) = drain(&mut client).await;
        assert!(error.is_none(), "{error:?}");
        assert!(data == payload(KIB));
    })
    .await;
}
