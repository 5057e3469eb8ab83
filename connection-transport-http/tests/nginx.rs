//! Interop with a third-party server: nginx from Debian, installed and pointed at by
//! `cargo xtask ci` / `cargo xtask interop` (`CONNECTION_INTEROP_NGINX`), started here
//! bound to 127.0.0.1 with a configuration written under the target directory. Covers
//! keep-alive expiry, a 503 with `Retry-After`, and a dropped connection (`return 444`).
//!
//! Without the variable the tests say so and pass, unless `CONNECTION_REQUIRE_INTEROP=1`
//! (set by xtask) makes a missing nginx a failure. Real time: nginx is another process.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connection_transport_http::{HttpClient, HttpError, HttpRequest, Method, NotRetried};

struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // One process (`master_process off`): killing it leaves nothing behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nginx, or `None` (with a notice) when it is not available and not required.
async fn nginx(test: &str) -> Option<Nginx> {
    let Some(binary) = std::env::var_os("CONNECTION_INTEROP_NGINX") else {
        assert!(
            std::env::var("CONNECTION_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "CONNECTION_INTEROP_NGINX is not set but interop is required"
        );
        eprintln!("SKIPPED {test}: set CONNECTION_INTEROP_NGINX (cargo xtask interop does)");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("nginx-{test}-{port}"));
    std::fs::create_dir_all(dir.join("tmp")).expect("nginx dir");
    let d = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         error_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
           fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
           scgi_temp_path {d}/tmp/scgi;\n\
           keepalive_timeout 1s;\n\
           server {{\n    listen 127.0.0.1:{port};\n\
             location = /ok {{ return 200 \"ok\"; }}\n\
             location = /busy {{ add_header Retry-After 1 always; return 503; }}\n\
             location = /drop {{ return 444; }}\n\
           }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("nginx.conf");
    let child = Command::new(&binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.to_string_lossy()));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let nginx = Nginx { child, addr };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not listen on {addr}; see {d}/error.log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(nginx)
}

#[tokio::test]
async fn nginx_keep_alive_expiry_costs_no_request() {
    let Some(nginx) = nginx("keepalive").await else {
        return;
    };
    // The client keeps idle sockets for ever: nginx (1 s keep-alive) closes them.
    let client = HttpClient::builder(format!("http://{}", nginx.addr))
        .pool_idle_timeout(None)
        .no_retries()
        .build_client()
        .expect("client");
    for _ in 0..3 {
        assert_eq!(
            client.get("/ok").await.expect("ok").text().expect("utf-8"),
            "ok"
        );
        assert_eq!(client.get("/ok").await.expect("ok").status(), 200);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    let m = client.metrics();
    assert_eq!(m.errors, 0, "{m:?}");
    assert!(m.connections_opened >= 3, "{m:?}");
}

#[tokio::test]
async fn nginx_503_with_retry_after_is_retried_after_the_delay() {
    let Some(nginx) = nginx("busy").await else {
        return;
    };
    let client = HttpClient::builder(format!("http://{}", nginx.addr))
        .max_retries(1)
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    let started = Instant::now();
    let response = client.get("/busy").await.expect("an answer");
    assert_eq!((response.status().as_u16(), response.attempts()), (503, 2));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let err = response.error_for_status().expect_err("503");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn nginx_dropping_the_connection_is_a_closed_error_and_a_post_is_not_repeated() {
    let Some(nginx) = nginx("drop").await else {
        return;
    };
    let client = HttpClient::builder(format!("http://{}", nginx.addr))
        .no_retries()
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    let err = client.get("/drop").await.expect_err("dropped");
    assert!(matches!(err.inner(), HttpError::Closed { .. }), "{err}");
    assert!(err.is_retryable());

    let client = HttpClient::builder(format!("http://{}", nginx.addr))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .no_circuit_breaker()
        .build_client()
        .expect("client");
    let err = client
        .send(HttpRequest::new(Method::POST, "/drop").body("x"))
        .await
        .expect_err("dropped");
    assert_eq!(err.not_retried(), Some(NotRetried::NotIdempotent), "{err}");
    // The GET is retried (three times by default), then reported.
    let err = client.get("/drop").await.expect_err("dropped every time");
    assert!(matches!(err.inner(), HttpError::Closed { .. }), "{err}");
    assert_eq!(client.metrics().retries, 3);
}
