//! In-process HTTP/1.1 servers on 127.0.0.1 for the tests: hyper on a restartable
//! `LoopbackServer`, and raw TCP servers for what hyper would not do (closing a
//! keep-alive socket under a request).
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use connection_testkit::LoopbackServer;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A request as the handler sees it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// 1 for the server's first request, 2 for the second...
    pub n: u64,
}

pub type Resp = Response<Full<Bytes>>;

type Handler = Arc<dyn Fn(Req) -> futures::future::BoxFuture<'static, Resp> + Send + Sync>;

/// A hyper HTTP/1.1 server; counts requests.
pub struct HttpServer {
    pub server: LoopbackServer,
    requests: Arc<AtomicU64>,
}

impl HttpServer {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resp> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |r| Box::pin(handler(r)));
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let server = LoopbackServer::start(move |stream, _| {
            let (handler, counter) = (handler.clone(), counter.clone());
            async move {
                let _ = stream.set_nodelay(true);
                serve_http(stream, handler, counter).await;
            }
        })
        .await
        .expect("bind");
        Self { server, requests }
    }

    /// Always 200 with `body`.
    pub async fn ok(body: &'static str) -> Self {
        Self::start(move |_| async move { text(200, body) }).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.server.accepted()
    }

    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    pub async fn restart(&mut self) {
        self.server.restart().await.expect("rebind");
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS).
pub async fn serve_http<S>(stream: S, handler: Handler, counter: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (handler, counter) = (handler.clone(), counter.clone());
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let req = Req {
                method: parts.method,
                path,
                headers: parts.headers,
                body,
                n,
            };
            Ok::<_, Infallible>(handler(req).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

pub fn text(status: u16, body: &'static str) -> Resp {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("response")
}

pub fn with_header(status: u16, name: &'static str, value: String) -> Resp {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header(name, value)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

pub fn json(value: serde_json::Value) -> Resp {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("response")
}

/// Reads one HTTP/1.1 request head (and a Content-Length body) from a raw socket;
/// `None` at EOF.
pub async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Waits, bounded, until `cond` holds (tokio time).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}
