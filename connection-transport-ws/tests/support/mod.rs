//! In-process WebSocket servers on 127.0.0.1 for the tests (tokio-tungstenite on the
//! testkit's restartable `LoopbackServer`). Reusable by other test files read-only.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_testkit::LoopbackServer;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub type ServerWs = WebSocketStream<TcpStream>;

/// What the server saw, across all its connections and restarts.
#[derive(Default)]
pub struct ServerLog {
    /// WebSocket handshakes completed.
    pub accepted: AtomicUsize,
    /// Connections whose handler finished (socket dropped).
    pub ended: AtomicUsize,
    /// Every text message received, in arrival order.
    pub texts: Mutex<Vec<String>>,
    /// Number of binary messages received.
    pub binaries: AtomicUsize,
    /// Handshake request headers, one entry per connection attempt.
    pub headers: Mutex<Vec<HeaderMap>>,
    /// Close frames received from clients: (code, reason).
    pub closes: Mutex<Vec<(u16, String)>>,
    /// Messages the server managed to send (for backpressure tests).
    pub sent: AtomicUsize,
    changed: Notify,
}

impl ServerLog {
    pub fn touch(&self) {
        self.changed.notify_waiters();
    }

    pub fn texts(&self) -> Vec<String> {
        self.texts.lock().expect("log lock").clone()
    }

    pub fn closes(&self) -> Vec<(u16, String)> {
        self.closes.lock().expect("log lock").clone()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }

    /// Waits (tokio time, bounded by 30 s) until `f` holds.
    pub async fn wait_until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if f(self) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
    }
}

/// Handshake behaviour.
#[derive(Clone, Default)]
pub struct Options {
    /// Subprotocols the server supports; it picks the first one the client offers.
    pub protocols: Vec<&'static str>,
    /// Reject every handshake with this HTTP status.
    pub reject: Option<u16>,
}

pub struct WsServer {
    pub server: LoopbackServer,
    pub log: Arc<ServerLog>,
}

impl WsServer {
    /// Starts a server whose connections run `handler` after the handshake.
    pub async fn start<F, Fut>(options: Options, handler: F) -> Self
    where
        F: Fn(ServerWs, Arc<ServerLog>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_on(([127, 0, 0, 1], 0).into(), options, handler).await
    }

    pub async fn start_on<F, Fut>(addr: SocketAddr, options: Options, handler: F) -> Self
    where
        F: Fn(ServerWs, Arc<ServerLog>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let log = Arc::new(ServerLog::default());
        let handler = Arc::new(handler);
        let server_log = log.clone();
        let server = LoopbackServer::start_on(addr, move |tcp, _peer| {
            let log = server_log.clone();
            let handler = handler.clone();
            let options = options.clone();
            async move {
                let _ = tcp.set_nodelay(true);
                let Some(ws) = handshake(tcp, &options, &log).await else {
                    return;
                };
                log.accepted.fetch_add(1, Ordering::SeqCst);
                log.touch();
                handler(ws, log.clone()).await;
                log.ended.fetch_add(1, Ordering::SeqCst);
                log.touch();
            }
        })
        .await
        .expect("start loopback server");
        Self { server, log }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

#[allow(clippy::result_large_err)] // tungstenite's callback signature
async fn handshake(tcp: TcpStream, options: &Options, log: &ServerLog) -> Option<ServerWs> {
    let reject = options.reject;
    let protocols = options.protocols.clone();
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        log.headers
            .lock()
            .expect("log lock")
            .push(req.headers().clone());
        log.touch();
        if let Some(status) = reject {
            let mut err = ErrorResponse::new(Some("rejected".to_owned()));
            *err.status_mut() = StatusCode::from_u16(status).expect("valid status");
            return Err(err);
        }
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(p) = offered
            .split(',')
            .map(str::trim)
            .find(|p| protocols.contains(p))
        {
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(p).expect("token"),
            );
        }
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .ok()
}

/// Echoes text and binary messages, records them, answers the close handshake.
pub async fn echo(mut ws: ServerWs, log: Arc<ServerLog>) {
    while let Some(Ok(msg)) = ws.next().await {
        record(&log, &msg);
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Records text and binary messages without answering.
pub async fn sink(mut ws: ServerWs, log: Arc<ServerLog>) {
    while let Some(Ok(msg)) = ws.next().await {
        record(&log, &msg);
    }
}

/// Accepts and then never reads or writes: pings go unanswered, close frames too.
pub async fn unresponsive(ws: ServerWs, _log: Arc<ServerLog>) {
    let _keep = ws;
    std::future::pending::<()>().await;
}

/// Echoes `n` messages, then closes with `code`.
pub async fn close_after(mut ws: ServerWs, log: Arc<ServerLog>, n: usize, code: u16) {
    let mut seen = 0;
    while seen < n {
        match ws.next().await {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                record(&log, &msg);
                seen += 1;
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(format!("bye {code}")),
    };
    let _ = ws.close(Some(frame)).await;
    // Wait for the client's reply, then drop the socket.
    while let Some(Ok(msg)) = ws.next().await {
        record(&log, &msg);
    }
}

/// Sends `count` binary messages of `size` bytes as fast as the socket allows, counting
/// each in `log.sent`; then keeps the connection open.
pub async fn flood(mut ws: ServerWs, log: Arc<ServerLog>, count: usize, size: usize) {
    let payload = vec![7u8; size];
    for _ in 0..count {
        if ws.send(Message::binary(payload.clone())).await.is_err() {
            return;
        }
        log.sent.fetch_add(1, Ordering::SeqCst);
        log.touch();
    }
    while let Some(Ok(_)) = ws.next().await {}
}

pub fn record(log: &ServerLog, msg: &Message) {
    match msg {
        Message::Text(t) => log.texts.lock().expect("log lock").push(t.to_string()),
        Message::Binary(_) => {
            log.binaries.fetch_add(1, Ordering::SeqCst);
        }
        Message::Close(frame) => {
            let entry = frame.as_ref().map_or((1005, String::new()), |f| {
                (u16::from(f.code), f.reason.to_string())
            });
            log.closes.lock().expect("log lock").push(entry);
        }
        _ => {}
    }
    log.touch();
}

/// Pings the client with `payload` and records whether the matching pong came back
/// (as a text entry `pong:<payload>`), then echoes.
pub async fn pinger(mut ws: ServerWs, log: Arc<ServerLog>) {
    if ws.send(Message::Ping("server-ping".into())).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        match &msg {
            Message::Pong(p) => {
                let text = format!("pong:{}", String::from_utf8_lossy(p));
                log.texts.lock().expect("log lock").push(text);
                log.touch();
            }
            _ => record(&log, &msg),
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
