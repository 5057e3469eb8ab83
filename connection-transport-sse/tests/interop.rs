//! Interop against a third-party server: aiohttp (pinned in xtask) running
//! tests/interop/sse_server.py, which honours `Last-Event-ID`, drops streams in the
//! middle of an event and ends with 204. `cargo xtask ci` and `cargo xtask interop`
//! install it in `target/interop-venv` and point `CONNECTION_INTEROP_PYTHON` at it.
//!
//! Without the variable the tests fall back to `target/interop-venv/bin/python` when it
//! exists; a peer that is missing fails the tests when `CONNECTION_REQUIRE_INTEROP=1` or
//! `CI` is set, and else they print a notice on how to run them and pass.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use connection_transport_sse::{SseClient, SseConfigBuilder, SseEnd};
use tokio::time::timeout;

/// Every wait is bounded by this: the server is local and answers in milliseconds.
const LIMIT: Duration = Duration::from_secs(20);

/// The Python server, killed on drop; it also exits when its stdin closes.
struct PythonServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl PythonServer {
    fn start() -> Option<Self> {
        let python = python()?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sse_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
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
            panic!("the aiohttp server did not print its port within {LIMIT:?} ({line:?}; exit status {status:?})")
        });
        Some(server)
    }

    fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/events{query}", self.port)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter with the pinned aiohttp, or `None` when missing and not required.
fn python() -> Option<PathBuf> {
    let required = std::env::var_os("CONNECTION_REQUIRE_INTEROP").is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let candidate = std::env::var_os("CONNECTION_INTEROP_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
            venv.exists().then_some(venv)
        });
    let has_aiohttp = candidate.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import aiohttp"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if has_aiohttp {
        return candidate;
    }
    assert!(
        !required,
        "interop peer missing: no Python with aiohttp ({candidate:?}); run `cargo xtask interop`"
    );
    let _ = std::io::stderr().write_all(
        b"\n!!! INTEROP TEST SKIPPED: the aiohttp peer is not installed.\n\
          !!! Run `cargo xtask interop` (or `cargo xtask ci`) to install it in \
          target/interop-venv and run these tests.\n\n",
    );
    None
}

fn fast(c: SseConfigBuilder) -> SseConfigBuilder {
    c.reconnect_delays(Duration::from_millis(10), Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_across_drops_mid_event_and_stops_on_204() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let mut client = SseClient::builder(server.url("?drop_after=3&total=10"))
        .configure(fast)
        .spawn()
        .unwrap();
    let mut got = Vec::new();
    while let Some(event) = timeout(LIMIT, client.next_event())
        .await
        .expect("an event in time")
    {
        got.push((event.id().to_owned(), event.data().to_owned()));
    }
    let expected: Vec<_> = (1..=10)
        .map(|n| (n.to_string(), format!("event {n}")))
        .collect();
    // Every event exactly once, in order: the partial ones were dropped by the parser
    // and sent again after the resume.
    assert_eq!(got, expected);
    assert!(
        matches!(client.end(), Some(SseEnd::NoContent)),
        "{:?}",
        client.end()
    );
    let m = client.metrics();
    assert!(m.connection.reconnects >= 3, "{m:?}");
    assert_eq!(m.stream.events, 10);
    assert_eq!(client.server_retry(), Some(Duration::from_millis(20)));
    assert_eq!(client.last_event_id().as_ref(), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_body_is_sent_again_on_every_reconnect() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let mut client = SseClient::builder(server.url("?drop_after=2&total=5"))
        .configure(|c| fast(c).method("POST").body("ping").last_event_id("0"))
        .spawn()
        .unwrap();
    let mut datas = Vec::new();
    while let Some(event) = timeout(LIMIT, client.next_event())
        .await
        .expect("an event in time")
    {
        datas.push(event.into_data());
    }
    let expected: Vec<_> = (1..=5).map(|n| format!("event {n} ping")).collect();
    assert_eq!(datas, expected);
    assert!(client.metrics().connection.reconnects >= 2);
}
