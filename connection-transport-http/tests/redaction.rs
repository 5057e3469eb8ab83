//! Secrets (bearer token, API key, basic credentials, URL userinfo, secret query values)
//! never reach Debug output, error messages, metrics or log lines (every crate's, at
//! trace level), while the server does receive them.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use connection_core::Error;
use connection_transport_http::metrics::to_prometheus;
use connection_transport_http::{HttpClient, HttpRequest};
use support::{HttpServer, text};

const SECRETS: &[&str] = &[
    "s3cret-t0ken",
    "k3y-value",
    "hunter2",
    "aHVudGVyMg",
    "qs-secret",
];

/// Every log line written while the test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked in {what}: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn secrets_never_reach_debug_errors_metrics_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut server = HttpServer::start(move |req| {
        let record = record.clone();
        async move {
            let mut headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            headers.push(("path".into(), req.path.clone()));
            record.lock().expect("lock").push(headers);
            if req.path.contains("/fail") {
                text(503, "down")
            } else {
                text(200, "ok")
            }
        }
    })
    .await;
    let url = format!("http://alice:hunter2@{}/api", server.addr());
    let bearer = HttpClient::builder(&url)
        .bearer_auth("s3cret-t0ken")
        .header("x-api-key", "k3y-value")
        .max_retries(1)
        .build_client()
        .expect("client");
    let basic = HttpClient::builder(&url).build_client().expect("client");

    let response = bearer
        .send(HttpRequest::get("/items?token=qs-secret"))
        .await
        .expect("ok");
    basic.get("/items").await.expect("ok");
    let failed = bearer.get("/fail").await.expect("503 in the end");
    {
        let seen = seen.lock().expect("lock");
        let header = |i: usize, name: &str| {
            seen[i]
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header(0, "authorization").as_deref(),
            Some("Bearer s3cret-t0ken")
        );
        assert_eq!(header(0, "x-api-key").as_deref(), Some("k3y-value"));
        assert_eq!(
            header(0, "path").as_deref(),
            Some("/api/items?token=qs-secret")
        );
        // alice:hunter2
        assert_eq!(
            header(1, "authorization").as_deref(),
            Some("Basic YWxpY2U6aHVudGVyMg==")
        );
    }

    server.stop().await;
    let err = bearer
        .send(HttpRequest::get("/items?token=qs-secret"))
        .await
        .expect_err("server gone");
    let status_err = failed.error_for_status().expect_err("503");

    assert_clean("config Debug", &format!("{:?}", bearer.config()));
    assert_clean("client Debug", &format!("{bearer:?} {basic:?}"));
    assert_clean("response Debug", &format!("{response:?}"));
    assert_clean(
        "request Debug",
        &format!(
            "{:?}",
            HttpRequest::get("/x?token=qs-secret").header("authorization", "Bearer s3cret-t0ken")
        ),
    );
    assert_clean("error", &format!("{err} / {err:?}"));
    assert_clean("core error", &format!("{}", Error::from(err.clone())));
    assert_clean("status error", &format!("{status_err} / {status_err:?}"));
    assert_clean("endpoint", &bearer.endpoint().to_string());
    let snapshot = bearer.metrics();
    assert_clean("metrics", &snapshot.to_json());
    assert_clean("prometheus", &to_prometheus([("api", &snapshot)]));
    assert_clean("health", &format!("{:?}", bearer.health_check().await));
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned();
    assert!(!logs.is_empty(), "something was logged");
    assert_clean("logs", &logs);
}
