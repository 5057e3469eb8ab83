//! A scriptable HTTP/1.1 event-stream server on 127.0.0.1 for the tests (the testkit's
//! restartable `LoopbackServer` with a hand-written HTTP layer, so a test can do what
//! no well-behaved server library would: drop a stream mid-event, send a wrong
//! Content-Type, redirect in circles, go silent).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_testkit::LoopbackServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived (tokio time).
    pub at: tokio::time::Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One step of a response body.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Never end the response (until the server stops or the client leaves).
    Hold,
}

/// What the server answers: a status, headers, then the body steps; the socket closes
/// after the last step (the body is close-delimited).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub steps: Vec<Step>,
}

impl Reply {
    /// `200` with `Content-Type: text/event-stream`.
    pub fn stream() -> Self {
        Self::status(200).header("content-type", "text/event-stream")
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            steps: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn send(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.steps.push(Step::Write(bytes.as_ref().to_vec()));
        self
    }

    pub fn sleep(mut self, d: Duration) -> Self {
        self.steps.push(Step::Sleep(d));
        self
    }

    pub fn hold(mut self) -> Self {
        self.steps.push(Step::Hold);
        self
    }
}

type Handler = Arc<dyn Fn(&Request, usize) -> Reply + Send + Sync>;

/// What the server saw.
#[derive(Default)]
pub struct Log {
    requests: Mutex<Vec<Request>>,
    changed: Notify,
}

impl Log {
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("log lock").clone()
    }

    /// Waits (tokio time, bounded) until `n` requests arrived; returns them.
    pub async fn wait_requests(&self, n: usize) -> Vec<Request> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let seen = self.requests();
                if seen.len() >= n {
                    return seen;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .unwrap_or_else(|_| {
                panic!("timed out waiting for {n} requests ({:?})", self.requests())
            })
    }
}

/// The server. Stops when dropped.
pub struct SseServer {
    server: LoopbackServer,
    pub log: Arc<Log>,
}

impl SseServer {
    /// Starts a server answering each request with `handler(request, index)`, where
    /// `index` counts requests from 0.
    pub async fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Self {
        let handler: Handler = Arc::new(handler);
        let log = Arc::new(Log::default());
        let l = log.clone();
        let server =
            LoopbackServer::start(move |stream, _peer| serve(stream, handler.clone(), l.clone()))
                .await
                .expect("start the SSE server");
        Self { server, log }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    pub async fn restart(&mut self) {
        self.server.restart().await.expect("restart");
    }
}

async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Log>) {
    let _ = stream.set_nodelay(true);
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let index = {
        let mut requests = log.requests.lock().expect("log lock");
        requests.push(request.clone());
        requests.len() - 1
    };
    log.changed.notify_waiters();
    let reply = handler(&request, index);
    let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", reply.status);
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if reply.steps.is_empty() && !reply.headers.iter().any(|(n, _)| n == "content-length") {
        head.push_str("content-length: 0\r\n");
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for step in reply.steps {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Hold => {
                // Until the client goes away.
                let mut sink = [0u8; 64];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Request {
        method,
        path,
        headers,
        body,
        at: tokio::time::Instant::now(),
    })
}
