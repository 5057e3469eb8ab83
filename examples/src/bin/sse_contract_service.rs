//! A test service for LaunchDarkly's SSE contract-test protocol (`sse-contract-tests`,
//! its `docs/service_spec.md`), so that external conformance harness can drive our
//! `SseClient`:
//!
//! ```text
//! cargo run -p examples --bin sse-contract-service      # 127.0.0.1:8000 ($PORT to change)
//! ./sse-contract-tests --url http://127.0.0.1:8000       # the harness, run separately
//! ```
//!
//! - `GET /` reports the capabilities; `DELETE /` stops the service.
//! - `POST /` creates a stream from `streamUrl`, `callbackUrl`, `initialDelayMs`,
//!   `readTimeoutMs`, `lastEventId`, `headers`, `method` and `body`, and answers `201`
//!   with its `Location`.
//! - `POST <location>` runs a command: `restart` (drop the stream and connect again) or
//!   `listen` (nothing to do: every event type is delivered).
//! - `DELETE <location>` closes the stream.
//!
//! Each stream POSTs what it receives to `<callbackUrl>/<n>`, numbered from 1 and in
//! order: `{"kind":"event","event":{"type","data","id"}}`, `{"kind":"comment",
//! "comment"}`, and `{"kind":"error","comment"}` when a stream breaks or an attempt fails.
//!
//! The service's HTTP is hand-written HTTP/1.1 over tokio (one request per connection,
//! `Connection: close`): the protocol is a handful of JSON calls, and the example stays
//! free of a web framework.
#![allow(
    clippy::print_stdout,
    reason = "a command-line service reports on stdout"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_kit::sse::{
    DisconnectReason, EventFilter, EventKind, EventType, SseClient, SseConfig, SseItem,
};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify, mpsc};

/// What the service can do, in the protocol's words.
const CAPABILITIES: &[&str] = &[
    "comments",
    "headers",
    "last-event-id",
    "post",
    "report",
    "read-timeout",
    "restart",
];

/// `POST /`: a stream to create.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateStream {
    stream_url: String,
    callback_url: String,
    tag: Option<String>,
    initial_delay_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    last_event_id: Option<String>,
    headers: Option<HashMap<String, String>>,
    method: Option<String>,
    body: Option<String>,
}

/// The streams the harness created, by id.
#[derive(Default)]
struct Streams {
    next: AtomicU64,
    open: Mutex<HashMap<u64, SseClient>>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "sse-contract-service listening on http://{}",
        listener.local_addr()?
    );
    let streams = Arc::new(Streams::default());
    let stop = Arc::new(Notify::new());
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = stop.notified() => break,
        };
        let (streams, stop) = (streams.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(socket, &streams, &stop).await {
                eprintln!("request failed: {e}");
            }
        });
    }
    let open: Vec<SseClient> = streams.open.lock().await.drain().map(|(_, c)| c).collect();
    for client in open {
        client.close(Duration::from_secs(1)).await;
    }
    println!("sse-contract-service stopped");
    Ok(())
}

/// One HTTP request: method, path, body.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or("/").to_owned();
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Some(Request { method, path, body }))
}

async fn respond(
    socket: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        out.push_str("content-type: application/json\r\n");
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    socket.write_all(out.as_bytes()).await?;
    socket.shutdown().await
}

async fn serve(
    mut socket: TcpStream,
    streams: &Arc<Streams>,
    stop: &Notify,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut socket).await? else {
        return Ok(());
    };
    let id = req
        .path
        .strip_prefix("/streams/")
        .and_then(|i| i.parse::<u64>().ok());
    match (req.method.as_str(), req.path.as_str(), id) {
        ("GET", "/", _) => {
            let body = json!({ "capabilities": CAPABILITIES }).to_string();
            respond(&mut socket, 200, &[], &body).await
        }
        ("DELETE", "/", _) => {
            respond(&mut socket, 204, &[], "").await?;
            stop.notify_one();
            Ok(())
        }
        ("POST", "/", _) => match create(streams, &req.body).await {
            Ok(id) => {
                let location = ("location", format!("/streams/{id}"));
                respond(&mut socket, 201, &[location], "").await
            }
            Err(e) => respond(&mut socket, 400, &[], &json!({ "error": e }).to_string()).await,
        },
        ("POST", _, Some(id)) => {
            let command: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let open = streams.open.lock().await;
            let Some(client) = open.get(&id) else {
                return respond(&mut socket, 404, &[], "").await;
            };
            match command.get("command").and_then(Value::as_str) {
                Some("restart") => {
                    client.handle().restart();
                    respond(&mut socket, 204, &[], "").await
                }
                Some("listen") => respond(&mut socket, 204, &[], "").await,
                _ => respond(&mut socket, 400, &[], "").await,
            }
        }
        ("DELETE", _, Some(id)) => {
            let client = streams.open.lock().await.remove(&id);
            match client {
                Some(client) => {
                    client.close(Duration::from_secs(1)).await;
                    respond(&mut socket, 204, &[], "").await
                }
                None => respond(&mut socket, 404, &[], "").await,
            }
        }
        _ => respond(&mut socket, 404, &[], "").await,
    }
}

/// Starts a client for the harness's stream and the task that reports what it sees.
async fn create(streams: &Arc<Streams>, body: &[u8]) -> Result<u64, String> {
    let params: CreateStream = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut config = SseConfig::builder(params.stream_url.clone());
    if let Some(ms) = params.initial_delay_ms {
        let initial = Duration::from_millis(ms);
        config = config.reconnect_delays(initial, initial.max(Duration::from_secs(30)));
    }
    if let Some(ms) = params.read_timeout_ms.filter(|ms| *ms > 0) {
        config = config.inactivity_timeout(Some(Duration::from_millis(ms)));
    }
    if let Some(id) = params.last_event_id.filter(|id| !id.is_empty()) {
        config = config.last_event_id(id);
    }
    for (name, value) in params.headers.unwrap_or_default() {
        config = config.header(name, value);
    }
    if let Some(method) = params.method {
        config = config.method(method);
    }
    if let Some(body) = params.body {
        config = config.body(body);
    }
    let config = config.build().map_err(|e| e.to_string())?;
    let id = streams.next.fetch_add(1, Ordering::Relaxed) + 1;
    let client = SseClient::with_config(config)
        .name(params.tag.unwrap_or_else(|| format!("stream {id}")))
        .spawn()
        .map_err(|e| e.to_string())?;
    let lifecycle =
        client.subscribe(EventFilter::all().types([EventType::Disconnected, EventType::Error]));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(callbacks(params.callback_url, rx));
    tokio::spawn(report(client.events(), lifecycle, tx));
    streams.open.lock().await.insert(id, client);
    Ok(id)
}

/// Turns items and lifecycle errors into callback messages, in the order they come.
async fn report(
    events: connection_kit::sse::SseEvents,
    mut lifecycle: connection_kit::EventStream,
    tx: mpsc::UnboundedSender<Value>,
) {
    loop {
        let message = tokio::select! {
            item = events.recv() => match item {
                Some(SseItem::Event(e)) => {
                    let mut event = json!({ "type": e.event_type(), "data": e.data() });
                    if !e.id().is_empty() {
                        event["id"] = json!(e.id());
                    }
                    json!({ "kind": "event", "event": event })
                }
                Some(SseItem::Comment(c)) => json!({ "kind": "comment", "comment": c }),
                Some(_) => continue,
                None => return,
            },
            event = lifecycle.next() => match event {
                Some(Ok(event)) => match &event.kind {
                    EventKind::Disconnected { reason: DisconnectReason::Error(error) }
                    | EventKind::Error { error } => json!({ "kind": "error", "comment": error.to_string() }),
                    _ => continue,
                },
                Some(Err(_lagged)) => continue,
                None => return,
            },
        };
        if tx.send(message).is_err() {
            return;
        }
    }
}

/// POSTs each message to `<base>/<n>`, n from 1, one at a time so they arrive in order.
async fn callbacks(base: String, mut rx: mpsc::UnboundedReceiver<Value>) {
    let base = base.trim_end_matches('/').to_owned();
    let mut n = 0u64;
    while let Some(message) = rx.recv().await {
        n += 1;
        let url = format!("{base}/{n}");
        if let Err(e) = post_json(&url, &message.to_string()).await {
            eprintln!("callback {url} failed: {e}");
        }
    }
}

/// A minimal HTTP/1.1 POST to an `http://` URL; waits for the status line.
async fn post_json(url: &str, body: &str) -> std::io::Result<()> {
    let bad = |what: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {url}"))
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut socket = TcpStream::connect(authority).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await?;
    let mut reply = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut reply))
        .await
        .map_err(|_| bad("no answer in 10 s"))??;
    let status = String::from_utf8_lossy(&reply[..n]);
    if status.starts_with("HTTP/1.1 2") || status.starts_with("HTTP/1.0 2") {
        Ok(())
    } else {
        Err(bad(&format!(
            "answered {:?}",
            status.lines().next().unwrap_or("")
        )))
    }
}
