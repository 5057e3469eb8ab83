//! Interop against a third-party peer: Python's asyncio streams and ssl module (OpenSSL)
//! running tests/interop/echo_server.py on 127.0.0.1, length-delimited frames over TCP
//! and TLS and lines over TCP. It also answers with a length prefix claiming 4 GiB and
//! with half a frame then a close, as a buggy or hostile server would.
//!
//! The interpreter is `CONNECTION_INTEROP_PYTHON` (set by `cargo xtask ci` and `cargo
//! xtask interop`), else `target/interop-venv/bin/python`, else `python3`: the server
//! needs only the standard library. A missing interpreter fails the tests when
//! `CONNECTION_REQUIRE_INTEROP=1` or `CI` is set, and else they print a notice and pass.
#![cfg(feature = "tls")]
// The server helpers outside #[test] functions panic on setup failure, as tests do.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use connection_core::{ConstantBackoff, Endpoint, Supervisor, Transport};
use connection_transport_tcp::{LengthDelimited, Lines, TcpError, TcpTransport};
use futures::StreamExt;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

struct PythonServer {
    child: Child,
    stdin: Option<ChildStdin>,
    ports: [u16; 3],
    root: rustls::pki_types::CertificateDer<'static>,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl PythonServer {
    fn start() -> Option<Self> {
        let python = python()?;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "connection-tcp-interop-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        let (cert_path, key_path) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/echo_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&cert_path)
            .arg(&key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(LIMIT).unwrap_or_default();
        let ports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(ports.len(), 3, "the Python server printed {line:?}");
        Some(Self {
            child,
            stdin,
            ports: [ports[0], ports[1], ports[2]],
            root: cert.cert.der().clone(),
            _dir: dir,
        })
    }

    fn plain(&self) -> Endpoint {
        Endpoint::host_port("127.0.0.1", self.ports[0]).unwrap()
    }

    fn tls(&self) -> TcpTransport<LengthDelimited> {
        let ep = Endpoint::parse(&format!("tls://127.0.0.1:{}", self.ports[1])).unwrap();
        TcpTransport::builder(ep, LengthDelimited::new())
            .add_root(self.root.clone())
            .unwrap()
            .server_name("localhost")
            .build()
            .unwrap()
    }

    fn lines(&self) -> Endpoint {
        Endpoint::host_port("127.0.0.1", self.ports[2]).unwrap()
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn python() -> Option<PathBuf> {
    let required = std::env::var_os("CONNECTION_REQUIRE_INTEROP").is_some_and(|v| v != "0")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python");
    let candidates = std::env::var_os("CONNECTION_INTEROP_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv.exists().then_some(venv))
        .chain(Some(PathBuf::from("python3")));
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import asyncio, ssl"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    assert!(
        !required,
        "interop peer missing: no Python 3 with asyncio and ssl"
    );
    let _ = std::io::stderr().write_all(
        b"\n!!! INTEROP TEST SKIPPED: no Python 3 found; run `cargo xtask interop`.\n\n",
    );
    None
}

async fn echo_sizes(conn: &connection_transport_tcp::TcpConnection<LengthDelimited>) {
    let sizes = [0usize, 1, 100, 4096, 65_536, 200_000];
    for &size in &sizes {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        conn.send(Bytes::from(payload)).await.unwrap();
    }
    for &size in &sizes {
        let f = timeout(LIMIT, conn.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(f.len(), size);
        assert!(f.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_size_echo_over_tcp_and_tls() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let plain = TcpTransport::new(server.plain(), LengthDelimited::new()).unwrap();
    echo_sizes(&plain.connect().await.unwrap()).await;
    let conn = server.tls().connect().await.unwrap();
    assert!(conn.is_tls());
    echo_sizes(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_echo() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let t = TcpTransport::new(server.lines(), Lines::default()).unwrap();
    let conn = t.connect().await.unwrap();
    for word in ["alpha", "beta", "gamma"] {
        conn.send(word.to_owned()).await.unwrap();
    }
    let got: Vec<String> = timeout(
        LIMIT,
        conn.handle().frames().take(3).map(Result::unwrap).collect(),
    )
    .await
    .unwrap();
    assert_eq!(got, ["ALPHA", "BETA", "GAMMA"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_claim_over_tls_fails_the_connection_and_the_supervisor_reconnects() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let supervised = Supervisor::new(server.tls())
        .backoff(ConstantBackoff::new(Duration::from_millis(10)))
        .spawn()
        .unwrap();
    let io = supervised.link().ready(LIMIT).await.unwrap();
    io.send(Bytes::from_static(b"BIG")).await.unwrap();
    let err = timeout(LIMIT, io.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, TcpError::FrameTooLarge { .. }), "{err}");
    // The next connection carries traffic.
    // The old handle may still be out until the supervisor has seen the loss: look
    // again at each change of the link until its handle is open.
    let mut watch = supervised.link().clone();
    let io = timeout(LIMIT, async {
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
    io.send(Bytes::from_static(b"again")).await.unwrap();
    let f = timeout(LIMIT, io.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(&f[..], b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_frame_then_close_ends_the_stream_without_a_frame() {
    let Some(server) = PythonServer::start() else {
        return;
    };
    let t = TcpTransport::new(server.plain(), LengthDelimited::new()).unwrap();
    let conn = t.connect().await.unwrap();
    conn.send(Bytes::from_static(b"HALF")).await.unwrap();
    let end = timeout(LIMIT, conn.recv()).await.unwrap();
    // The half frame is never handed over as a frame: the stream ends with an error
    // (bytes remaining at EOF) or cleanly.
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    let end = timeout(LIMIT, conn.recv()).await.unwrap();
    assert!(end.is_none());
}
