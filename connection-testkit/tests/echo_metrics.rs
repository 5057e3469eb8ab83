//! `TcpEchoConnection` records what its requests carry: rates, failed requests, and the
//! bytes its requests hold as its buffers.

mod support;

use std::sync::Arc;

use connection_core::metrics::ConnectionMetrics;
use connection_core::{Connection, Traffic, Transport};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport, handlers};
use support::{bounded, wait_until};

async fn bound_connection(
    addr: std::net::SocketAddr,
) -> (
    connection_testkit::TcpEchoConnection,
    Arc<ConnectionMetrics>,
) {
    let transport = TcpEchoTransport::new(addr).expect("a transport to the server");
    let mut conn = transport.connect().await.expect("connect to the server");
    let metrics = Arc::new(ConnectionMetrics::new());
    conn.bind_traffic(Traffic::new(metrics.clone()));
    (conn, metrics)
}

#[tokio::test]
async fn requests_waiting_on_a_silent_server_are_its_buffers() {
    bounded(async {
        let server = LoopbackServer::silent().await.unwrap();
        let (conn, metrics) = bound_connection(server.addr()).await;
        assert_eq!(metrics.snapshot().buffered_bytes, Some(0));

        let client = conn.io();
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.echo(&[7; 1000]).await })
            })
            .collect();
        // One request in its round trip (its payload and the buffer its echo is read
        // into), two queued behind it.
        wait_until("three requests held", || {
            metrics.snapshot_counters().buffered_bytes == Some(4_000)
        })
        .await;

        // Callers giving up free what their requests held.
        for task in &waiting {
            task.abort();
        }
        wait_until("nothing held", || {
            metrics.snapshot_counters().buffered_bytes == Some(0)
        })
        .await;

        // So does the end of the connection, for requests it never took.
        let more: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { client.echo(&[1; 500]).await })
            })
            .collect();
        wait_until("two more held", || {
            metrics.snapshot_counters().buffered_bytes == Some(1_500)
        })
        .await;
        drop(conn);
        for task in more {
            assert!(task.await.unwrap().is_err());
        }
        assert_eq!(metrics.snapshot().buffered_bytes, Some(0));
    })
    .await;
}

#[tokio::test]
async fn echoes_count_as_requests_in_the_window() {
    bounded(async {
        let server = TcpEchoServer::start().await.unwrap();
        let (conn, metrics) = bound_connection(server.addr()).await;
        let client = conn.io();
        for _ in 0..20 {
            client.echo(b"0123456789").await.unwrap();
        }
        let s = metrics.snapshot();
        assert_eq!((s.requests, s.failed_requests), (20, 0));
        assert_eq!(
            (s.window.requests, s.window.bytes_out, s.window.bytes_in),
            (20, 200, 200)
        );
        assert_eq!(s.error_rate(), Some(0.0));
        // The window is at least a second long, so at most 20 per second here.
        let r = s.window.rates();
        assert!(
            r.requests_per_second > 0.0 && r.requests_per_second <= 20.0,
            "{r:?}"
        );
        assert_eq!(s.buffered_bytes, Some(0));
    })
    .await;
}

#[tokio::test]
async fn a_wrong_answer_is_a_failed_request() {
    bounded(async {
        let server = LoopbackServer::start(handlers::garble).await.unwrap();
        let (conn, metrics) = bound_connection(server.addr()).await;
        assert!(conn.io().echo(b"hello").await.is_err());
        let s = metrics.snapshot();
        assert_eq!((s.requests, s.failed_requests, s.errors), (1, 1, 1));
        assert_eq!(s.error_rate(), Some(1.0));
        assert_eq!(s.window.rates().error_rate, Some(1.0));
        // A failed request has no latency to record.
        assert_eq!(s.request_latency.count, 0);
    })
    .await;
}
