//! `cut_after(N)` resets a connection once N more bytes passed (both directions
//! together); each peer gets at most N bytes.

mod support;

use std::io;

use connection_testkit::{FaultProxy, TcpEchoServer};
use support::{bounded, connect, drain, echo, firehose, payload};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn a_new_connection_gets_at_most_n_bytes_then_a_reset() {
    bounded(async {
        let server = firehose(1024 * 1024).await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.cut_after(Some(1000));
        let mut client = connect(proxy.addr()).await;
        let (data, error) = drain(&mut client).await;
        assert!(
            data.len() <= 1000,
            "{} bytes passed a cut after 1000",
            data.len()
        );
        assert!(
            data[..] == payload(1024 * 1024)[..data.len()],
            "the bytes that passed differ"
        );
        let error = error.expect("the connection ended without a reset");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        assert_eq!(proxy.stats().bytes_to_client, 1000);
        assert_eq!(proxy.stats().reset, 1);
    })
    .await;
}

#[tokio::test]
async fn counts_both_directions_from_when_it_is_set() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        let mut client = connect(proxy.addr()).await;
        assert_eq!(echo(&mut client, &[1; 500]).await.unwrap(), [1; 500]);

        // The 1000 bytes before do not count.
        proxy.cut_after(Some(100));
        assert_eq!(
            echo(&mut client, &[2; 40]).await.unwrap(),
            [2; 40],
            "80 of 100 bytes used"
        );
        // 40 more: 20 reach the upstream, then both sides are reset; none come back.
        let err = echo(&mut client, &[3; 40]).await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
        let stats = proxy.stats();
        assert_eq!((stats.bytes_to_upstream, stats.bytes_to_client), (560, 540));
        assert_eq!(stats.reset, 1);
    })
    .await;
}

#[tokio::test]
async fn turning_it_off_lets_everything_pass() {
    bounded(async {
        let server = firehose(256 * 1024).await;
        let proxy = FaultProxy::start(server.addr()).await.unwrap();
        proxy.cut_after(Some(10));
        proxy.cut_after(None);
        let mut client = connect(proxy.addr()).await;
        let (data, error) = drain(&mut client).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(data.len(), 256 * 1024);

        proxy.cut_after(Some(10));
        proxy.restore();
        let mut client = connect(proxy.addr()).await;
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 256 * 1024);
    })
    .await;
}
