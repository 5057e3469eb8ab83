//! Interop against a third-party server: the Python `websockets` package (pinned in
//! xtask), running tests/interop/ws_server.py. `cargo xtask ci` and `cargo xtask interop`
//! install it in `target/interop-venv` and point `CONNECTION_INTEROP_PYTHON` at it.
//!
//! Without the variable the tests fall back to `target/interop-venv/bin/python` when it
//! exists; otherwise they fail when `CONNECTION_REQUIRE_INTEROP=1` or `CI` is set, and
//! else print a notice on how to run them and pass.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use connection_core::{ConnectionState, DisconnectReason, EventFilter, EventKind, EventStream};
use connection_retry::backoff::BackoffStrategy;
use connection_transport_ws::{Message, WsClient, WsConfigBuilder};
use futures::{FutureExt, StreamExt};
use tokio::time::timeout;

/// The Python server, killed on drop. It also exits by itself when its stdin closes, so
/// a test process that dies does not leave it behind.
struct PythonServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl PythonServer {
    /// Starts the server, or returns `None` (after the notice) when the peer is not
    /// installed and not required.
    fn start(args: &[&str]) -> Option<Self> {
        let python = python()?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ws_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} {}: {e}",
                    python.display(),
                    script.display()
                )
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        // The port line, read on a thread so a server that hangs cannot hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Self {
            child,
            stdin,
            port: 0,
        };
        let line = rx.recv_timeout(LIMIT).unwrap_or_default();
        server.port = line.trim().parse().unwrap_or_else(|_| {
            let status = server.child.try_wait();
            panic!(
                "the websockets server did not print its port within {LIMIT:?} \
                 ({line:?}; exit status {status:?})"
            )
        });
        Some(server)
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter with the pinned `websockets`, or `None` when it is missing and not
/// required.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONNECTION_INTEROP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    let required = std::env::var_os("CONNECTION_REQUIRE_INTEROP").is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    assert!(
        !required,
        "interop peer missing: no CONNECTION_INTEROP_PYTHON and no target/interop-venv; run `cargo xtask interop`"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!`.
    let _ = std::io::stderr().write_all(
        b"\n!!! INTEROP TEST SKIPPED: the Python websockets peer is not installed.\n\
          !!! Run `cargo xtask interop` (or `cargo xtask ci`) to install it in \
          target/interop-venv and run these tests.\n\n",
    );
    None
}

// ---- the client side ----

/// Every wait in these tests is bounded by this: the server is local and answers in
/// milliseconds, so reaching it means the client is stuck.
const LIMIT: Duration = Duration::from_secs(5);

/// A client of `server`, reconnecting after a fixed 20 ms, with its event stream
/// subscribed before it starts connecting.
async fn client(
    server: &PythonServer,
    configure: impl FnOnce(WsConfigBuilder) -> WsConfigBuilder,
) -> (WsClient, EventStream) {
    let client = WsClient::builder(server.url())
        .configure(|c| configure(c.connect_timeout(Duration::from_secs(2))))
        .backoff(
            BackoffStrategy::fixed(Duration::from_millis(20))
                .build()
                .expect("fixed backoff"),
        )
        .name("interop")
        .spawn()
        .expect("spawn the client");
    let events = client.subscribe(EventFilter::all());
    timeout(LIMIT, client.wait_connected())
        .await
        .expect("connected in time")
        .expect("connected to the websockets server");
    (client, events)
}

async fn recv(client: &mut WsClient) -> Message {
    timeout(LIMIT, client.recv())
        .await
        .expect("a message in time")
        .expect("the client is open")
}

/// The next event matching `pick`, skipping the others.
async fn next_event<T>(
    events: &mut EventStream,
    mut pick: impl FnMut(&EventKind) -> Option<T>,
) -> T {
    timeout(LIMIT, async {
        loop {
            let event = events
                .next()
                .await
                .expect("event stream open")
                .expect("no events lost");
            if let Some(found) = pick(&event.kind) {
                return found;
            }
        }
    })
    .await
    .expect("the event in time")
}

fn disconnect_reason(kind: &EventKind) -> Option<DisconnectReason> {
    match kind {
        EventKind::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    }
}

/// A payload that a shifted or truncated copy does not match.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn echoes_text_and_binary_in_order() {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    let (mut client, _events) = client(&server, |c| c).await;

    client
        .send_text("hello, websockets")
        .await
        .expect("send text");
    assert_eq!(recv(&mut client).await, Message::text("hello, websockets"));
    client
        .send_binary(vec![0u8, 1, 2, 0xff, 0xfe])
        .await
        .expect("send binary");
    assert_eq!(
        recv(&mut client).await,
        Message::binary(vec![0u8, 1, 2, 0xff, 0xfe])
    );

    // A burst queued at once comes back whole and in order, text and binary mixed.
    for i in 0..200u32 {
        let msg = if i % 2 == 0 {
            Message::text(format!("text {i} é"))
        } else {
            Message::binary(i.to_be_bytes().to_vec())
        };
        client.send(msg).await.expect("send");
    }
    for i in 0..200u32 {
        let expected = if i % 2 == 0 {
            Message::text(format!("text {i} é"))
        } else {
            Message::binary(i.to_be_bytes().to_vec())
        };
        assert_eq!(recv(&mut client).await, expected, "message {i}");
    }
    let metrics = client.metrics();
    assert_eq!(metrics.messages_in, 202);
    assert_eq!(metrics.reconnects, 0);
}

#[tokio::test]
async fn large_messages_both_ways() {
    let Some(server) = PythonServer::start(&["--max-size", "16777216"]) else {
        return;
    };
    let (mut client, _events) = client(&server, |c| {
        c.max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20))
    })
    .await;
    for len in [1 << 20, 8 << 20] {
        let payload = pattern(len);
        client
            .send_binary(payload.clone())
            .await
            .expect("send binary");
        match recv(&mut client).await {
            Message::Binary(back) => {
                assert_eq!(back.len(), len);
                assert!(back == payload, "the {len}-byte echo differs");
            }
            other => panic!("expected binary, got {other:?}"),
        }
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        client.send_text(text.clone()).await.expect("send text");
        match recv(&mut client).await {
            Message::Text(back) => assert!(back.as_str() == text, "the {len}-byte text differs"),
            other => panic!("expected text, got {other:?}"),
        }
    }
    assert!(client.metrics().bytes_in >= 2 * (9 << 20));
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_not_truncated() {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    // The client accepts at most 64 KiB; the server echoes 128 KiB back.
    let (mut client, mut events) = client(&server, |c| {
        c.max_message_size(Some(64 << 10))
            .max_frame_size(Some(64 << 10))
    })
    .await;
    client.send_binary(pattern(128 << 10)).await.expect("send");
    // The connection is dropped as a protocol error and comes back; no partial message.
    let reason = next_event(&mut events, disconnect_reason).await;
    assert!(
        matches!(reason, DisconnectReason::Error(_)),
        "unexpected reason {reason:?}"
    );
    next_event(&mut events, |k| {
        matches!(k, EventKind::Connected).then_some(())
    })
    .await;
    client.send_text("after").await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("after"));
}

#[tokio::test]
async fn probe_measures_the_round_trip_to_the_server() {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    let (client, _events) = client(&server, |c| c).await;
    for _ in 0..3 {
        let rtt = timeout(LIMIT, client.handle().probe())
            .await
            .expect("probe in time")
            .expect("pong from the websockets server");
        assert!(rtt > Duration::ZERO && rtt < LIMIT, "round trip {rtt:?}");
    }
}

#[tokio::test]
async fn heartbeat_pings_reach_the_server() {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    let (client, mut events) = client(&server, |c| {
        c.ping_interval(Duration::from_millis(50))
            .pong_timeout(Duration::from_secs(1))
    })
    .await;
    // Wait for a few keepalive round trips to land in the metrics.
    timeout(LIMIT, async {
        while client.metrics().probe_rtt.count < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three heartbeat round trips");
    let latency = client.metrics().probe_rtt;
    assert!(latency.mean > Duration::ZERO, "{latency:?}");
    assert_eq!(client.state(), ConnectionState::Connected);
    while let Some(Some(event)) = events.next().now_or_never() {
        let event = event.expect("no events lost");
        assert!(
            disconnect_reason(&event.kind).is_none(),
            "unexpected {event:?}"
        );
    }
}

#[tokio::test]
async fn answers_the_servers_pings() {
    // websockets pings every 50 ms and closes the connection (1011) when a pong is
    // more than 300 ms late.
    let Some(server) = PythonServer::start(&["--ping-interval", "0.05", "--ping-timeout", "0.3"])
    else {
        return;
    };
    let (mut client, mut events) = client(&server, |c| c).await;

    // The server's own ping, awaited by the server: the reply carries its round trip.
    client.send_text("ping").await.expect("send");
    let Message::Text(reply) = recv(&mut client).await else {
        panic!("expected text");
    };
    let rtt: f64 = reply
        .strip_prefix("pong:")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reply {reply}"));
    assert!(rtt > 0.0, "{reply}");

    // Keepalive pings: websockets records their round trip once a pong came back. Wait
    // until it did, and past a few ping timeouts, without losing the connection.
    let started = tokio::time::Instant::now();
    timeout(LIMIT, async {
        loop {
            client.send_text("latency").await.expect("send");
            let Message::Text(reply) = recv(&mut client).await else {
                panic!("expected text");
            };
            let latency: f64 = reply
                .strip_prefix("latency:")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected reply {reply}"));
            if latency > 0.0 && started.elapsed() > Duration::from_millis(700) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the server's keepalive pings answered");
    while let Some(Some(event)) = events.next().now_or_never() {
        let event = event.expect("no events lost");
        assert!(
            disconnect_reason(&event.kind).is_none(),
            "unexpected {event:?}"
        );
    }
    assert_eq!(client.metrics().reconnects, 0);
}

#[tokio::test]
async fn close_1000_ends_the_client_without_reconnecting() {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    let (mut client, mut events) = client(&server, |c| c).await;
    client
        .send_text("close:1000:done for today")
        .await
        .expect("send");
    let reason = next_event(&mut events, disconnect_reason).await;
    match reason {
        DisconnectReason::CloseCode {
            code,
            reason,
            reconnect,
        } => {
            assert_eq!(code, 1000);
            assert_eq!(&*reason, "done for today");
            assert!(!reconnect);
        }
        other => panic!("unexpected reason {other:?}"),
    }
    let mut state = client.handle().watch_state();
    timeout(LIMIT, state.wait_for(|s| *s == ConnectionState::Failed))
        .await
        .expect("failed in time")
        .expect("state channel open");
    // The message stream ends instead of waiting forever.
    assert_eq!(
        timeout(LIMIT, client.recv()).await.expect("end in time"),
        None
    );
    // No attempt was made, even well past the 20 ms backoff.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Some(Some(event)) = events.next().now_or_never() {
        let event = event.expect("no events lost");
        assert!(
            !matches!(
                event.kind,
                EventKind::Reconnecting { .. } | EventKind::Connected
            ),
            "unexpected {event:?}"
        );
    }
    assert_eq!(client.state(), ConnectionState::Failed);
    assert_eq!(client.metrics().reconnects, 0);
}

async fn reconnects_after(code: u16) {
    let Some(server) = PythonServer::start(&[]) else {
        return;
    };
    let (mut client, mut events) = client(&server, |c| c).await;
    let why = format!("server restart {code}");
    client
        .send_text(format!("close:{code}:{why}"))
        .await
        .expect("send");
    let reason = next_event(&mut events, disconnect_reason).await;
    match reason {
        DisconnectReason::CloseCode {
            code: got,
            reason,
            reconnect,
        } => {
            assert_eq!(got, code);
            assert_eq!(&*reason, why);
            assert!(reconnect);
        }
        other => panic!("unexpected reason {other:?}"),
    }
    next_event(&mut events, |k| {
        matches!(k, EventKind::Reconnecting { .. }).then_some(())
    })
    .await;
    next_event(&mut events, |k| {
        matches!(k, EventKind::Connected).then_some(())
    })
    .await;
    // The new connection works.
    client.send_text("again").await.expect("send");
    assert_eq!(recv(&mut client).await, Message::text("again"));
    assert_eq!(client.metrics().reconnects, 1);
}

#[tokio::test]
async fn close_1001_reconnects() {
    reconnects_after(1001).await;
}

#[tokio::test]
async fn close_1012_reconnects() {
    reconnects_after(1012).await;
}
