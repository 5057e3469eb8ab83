//! The client against in-process servers on 127.0.0.1 (plain tokio-util `Framed` and
//! tokio-rustls, so the peer is not our own code): echo, framing limits both ways, a
//! server that drops us, backpressure, graceful close, the ping probe, TLS, and the
//! connection under a supervisor and in a pool.
// The server helpers outside #[test] functions panic on setup failure, as tests do.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use connection_core::{
    Connection, ConnectionState, DisconnectReason, Endpoint, Supervisor, Transport,
};
use connection_transport_tcp::codec::{LengthWidth, is_frame_too_large};
use connection_transport_tcp::{LengthDelimited, Lines, TcpConfig, TcpError, TcpTransport};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LinesCodec};

const LIMIT: Duration = Duration::from_secs(10);

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::host_port("127.0.0.1", addr.port()).unwrap()
}

/// A length-delimited echo server built on tokio-util's own codec; counts connections.
async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut f = Framed::new(s, tokio_util::codec::LengthDelimitedCodec::new());
                while let Some(Ok(frame)) = f.next().await {
                    if f.send(frame.freeze()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A server that runs `f` on each accepted socket.
async fn server<F, Fut>(f: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(f(s));
        }
    });
    addr
}

#[tokio::test]
async fn frames_echo_in_order() {
    let (addr, _) = echo_server().await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new()).unwrap();
    let conn = t.connect().await.unwrap();
    let io = conn.io();
    let sender = io.sender().clone();
    let send = tokio::spawn(async move {
        for i in 0..500u32 {
            sender
                .send(Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
    });
    for i in 0..500u32 {
        let f = tokio::time::timeout(LIMIT, io.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&f[..], i.to_be_bytes());
    }
    send.await.unwrap();
    let m = conn.metrics().snapshot();
    assert_eq!((m.messages_out, m.messages_in), (500, 500));
    assert_eq!(m.bytes_in, 500 * 8, "prefix and payload counted");
}

#[tokio::test]
async fn lines_echo_through_the_frames_stream() {
    let addr = server(|s| async move {
        let mut f = Framed::new(s, LinesCodec::new());
        while let Some(Ok(line)) = f.next().await {
            let _ = f.send(line.to_uppercase()).await;
        }
    })
    .await;
    let t = TcpTransport::new(endpoint(addr), Lines::default()).unwrap();
    let conn = t.connect().await.unwrap();
    conn.send("hello".into()).await.unwrap();
    conn.send("world".into()).await.unwrap();
    let got: Vec<String> = conn
        .io()
        .frames()
        .take(2)
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(got, ["HELLO", "WORLD"]);
}

#[tokio::test]
async fn a_frame_over_the_limit_from_the_peer_fails_the_connection() {
    let addr = server(|mut s| async move {
        let mut frame = 2000u32.to_be_bytes().to_vec();
        frame.extend(vec![7u8; 2000]);
        s.write_all(&frame).await.unwrap();
        let _ = s.read(&mut [0; 1]).await;
    })
    .await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new().max_frame_len(1024)).unwrap();
    let mut conn = t.connect().await.unwrap();
    let err = conn.recv().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            TcpError::FrameTooLarge {
                limit: 1024,
                claimed: Some(2000),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        conn.recv().await.is_none(),
        "the error is reported once, then the end"
    );
    let reason = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    assert!(matches!(reason, DisconnectReason::Error(_)), "{reason:?}");
    assert_eq!(conn.state(), ConnectionState::Failed);
    assert!(matches!(
        conn.send(Bytes::new()).await.unwrap_err(),
        TcpError::Closed { .. }
    ));
}

#[tokio::test]
async fn a_4_gib_length_prefix_is_refused_without_allocating_it() {
    let addr = server(|mut s| async move {
        s.write_all(&(4u64 << 30).to_be_bytes()).await.unwrap();
        s.write_all(b"tiny").await.unwrap();
        let _ = s.read(&mut [0; 1]).await;
    })
    .await;
    let codec = LengthDelimited::new().width(LengthWidth::U64);
    let t = TcpTransport::new(endpoint(addr), codec).unwrap();
    let conn = t.connect().await.unwrap();
    let err = tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, TcpError::FrameTooLarge { claimed: Some(c), .. } if c == 4 << 30));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_frame_of_ours_over_the_limit_is_refused_and_the_connection_goes_on() {
    let (addr, _) = echo_server().await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new().max_frame_len(8)).unwrap();
    let conn = t.connect().await.unwrap();
    let err = conn.send(Bytes::from(vec![0; 9])).await.unwrap_err();
    assert!(is_frame_too_large(&err).is_none() || matches!(err, TcpError::FrameTooLarge { .. }));
    assert!(
        matches!(
            err,
            TcpError::FrameTooLarge {
                claimed: Some(9),
                ..
            }
        ),
        "{err}"
    );
    conn.send(Bytes::from_static(b"ok")).await.unwrap();
    let f = tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&f[..], b"ok");
    assert_eq!(conn.state(), ConnectionState::Connected);
}

#[tokio::test]
async fn a_refused_connect_is_retryable_and_the_next_address_is_tried() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let t = TcpTransport::new(
        Endpoint::host_port("127.0.0.1", port).unwrap(),
        LengthDelimited::new(),
    )
    .unwrap();
    let err = t.connect().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, connection_core::Error::Connect { .. }),
        "{err}"
    );

    // "localhost" may resolve to ::1 and 127.0.0.1; a server on 127.0.0.1 only is
    // reached whichever is tried first.
    let (addr, accepted) = echo_server().await;
    let t = TcpTransport::new(
        Endpoint::host_port("localhost", addr.port()).unwrap(),
        LengthDelimited::new(),
    )
    .unwrap();
    let conn = t.connect().await.unwrap();
    assert_eq!(conn.peer_addr().unwrap().port(), addr.port());
    conn.send(Bytes::from_static(b"x")).await.unwrap();
    tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_closes_is_seen_at_once() {
    let addr = server(|s| async move { drop(s) }).await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new()).unwrap();
    let mut conn = t.connect().await.unwrap();
    let reason = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    assert!(matches!(reason, DisconnectReason::PeerClosed), "{reason:?}");
    assert!(conn.recv().await.is_none());
    assert_eq!(conn.state(), ConnectionState::Closed);
}

#[tokio::test]
async fn a_peer_that_stops_reading_makes_send_wait_within_the_byte_budget() {
    let (tx, rx) = tokio::sync::oneshot::channel::<TcpStream>();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(move |s| {
        // Keep the socket and never read it.
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(s);
        }
        async {}
    })
    .await;
    let config = TcpConfig::builder().send_buffer(64 << 10).build().unwrap();
    let t = TcpTransport::builder(endpoint(addr), LengthDelimited::new())
        .config(config)
        .build()
        .unwrap();
    let conn = t.connect().await.unwrap();
    let _peer = rx.await.unwrap();
    let frame = Bytes::from(vec![1u8; 16 << 10]);
    let mut sent = 0usize;
    // The socket buffers take some megabytes; then our 64 KiB; then try_send says full,
    // and stays full once the writer is stuck on the socket.
    loop {
        while conn.handle().sender().try_send(frame.clone()).unwrap() {
            sent += 1;
            assert!(sent < 100_000, "the send buffer never filled");
            if sent % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !conn.handle().sender().try_send(frame.clone()).unwrap() {
            break;
        }
        sent += 1;
    }
    assert!(conn.handle().sender().queued_bytes() <= 64 << 10);
    let blocked = tokio::time::timeout(Duration::from_millis(100), conn.send(frame)).await;
    assert!(blocked.is_err(), "send waits while the buffer is full");
}

#[tokio::test]
async fn close_flushes_what_is_queued_then_sends_fin() {
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = server(move |mut s| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            if let Some(tx) = tx {
                let _ = tx.send(all);
            }
        }
    })
    .await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new()).unwrap();
    let mut conn = t.connect().await.unwrap();
    for _ in 0..100 {
        conn.send(Bytes::from_static(b"abc")).await.unwrap();
    }
    conn.close().await.unwrap();
    let all = tokio::time::timeout(LIMIT, rx).await.unwrap().unwrap();
    assert_eq!(
        all.len(),
        100 * 7,
        "every queued frame arrived before the FIN"
    );
    assert_eq!(conn.state(), ConnectionState::Closed);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_ping_probe_measures_a_round_trip_and_keeps_the_reply_from_the_application() {
    let addr = server(|s| async move {
        let mut f = Framed::new(s, LinesCodec::new());
        while let Some(Ok(line)) = f.next().await {
            let reply = if line == "PING" {
                "PONG".to_owned()
            } else {
                line
            };
            let _ = f.send(reply).await;
        }
    })
    .await;
    let t = TcpTransport::builder(endpoint(addr), Lines::default())
        .ping(|| "PING".to_owned(), |l: &String| l == "PONG")
        .build()
        .unwrap();
    let mut conn = t.connect().await.unwrap();
    let rtt = tokio::time::timeout(LIMIT, conn.probe())
        .await
        .unwrap()
        .unwrap();
    assert!(rtt < LIMIT);
    conn.send("data".into()).await.unwrap();
    let got = tokio::time::timeout(LIMIT, conn.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, "data", "the PONG went to the probe");

    // Without a ping, a probe only says the connection is up.
    let t = TcpTransport::new(endpoint(addr), Lines::default()).unwrap();
    let mut plain = t.connect().await.unwrap();
    assert_eq!(plain.probe().await.unwrap(), Duration::ZERO);
}

#[tokio::test]
async fn supervised_traffic_survives_a_server_that_drops_the_connection() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    // The first connection is dropped after one echo; later ones echo for good.
    let addr = server(move |s| {
        let first = d.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let mut f = Framed::new(s, tokio_util::codec::LengthDelimitedCodec::new());
            while let Some(Ok(frame)) = f.next().await {
                let _ = f.send(frame.freeze()).await;
                if first {
                    return;
                }
            }
        }
    })
    .await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new()).unwrap();
    let supervised = Supervisor::new(t)
        .backoff(connection_core::ConstantBackoff::new(
            Duration::from_millis(10),
        ))
        .spawn()
        .unwrap();
    let link = supervised.link().clone();
    let io = link.ready(LIMIT).await.unwrap();
    io.send(Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(&io.recv().await.unwrap().unwrap()[..], b"one");
    assert!(
        io.recv().await.is_none(),
        "the server dropped the first connection"
    );
    // The link hands out the next connection's handle.
    // The old handle may still be out until the supervisor has seen the loss: look
    // again at each change of the link until its handle is open.
    let mut watch = link.clone();
    let io = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(io) = watch.current()
                && !io.is_closed()
            {
                return io;
            }
            watch.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    io.send(Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(&io.recv().await.unwrap().unwrap()[..], b"two");
    let m = supervised.metrics();
    assert!(m.messages_out >= 2 && m.messages_in >= 2, "{m:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pooled_connections_carry_traffic() {
    let (addr, accepted) = echo_server().await;
    let t = TcpTransport::new(endpoint(addr), LengthDelimited::new()).unwrap();
    let pool = connection_pool::Pool::builder(t).spawn().unwrap();
    for i in 0..20u8 {
        let conn = pool.get().await.unwrap();
        conn.send(Bytes::from(vec![i])).await.unwrap();
        let f = tokio::time::timeout(LIMIT, conn.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&f[..], [i]);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_endpoint_builds_with_webpki_roots_and_a_plain_one_without_tls() {
    let t = TcpTransport::new(
        "tls://example.com:993".parse().unwrap(),
        LengthDelimited::new(),
    )
    .unwrap();
    assert!(t.is_tls());
    let t = TcpTransport::new(
        "tcp://example.com:993".parse().unwrap(),
        LengthDelimited::new(),
    )
    .unwrap();
    assert!(!t.is_tls());
}

#[cfg(not(feature = "tls"))]
#[test]
fn a_tls_endpoint_without_the_tls_feature_is_a_config_error() {
    let err = TcpTransport::new(
        "tls://example.com:993".parse().unwrap(),
        LengthDelimited::new(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "tls");
}
