//! `cargo xtask bench tcp`: the framed TCP/TLS client against a plain tokio + tokio-util
//! `Framed` pair (and tokio-rustls for TLS).
//!
//! Echo throughput (`tcp_framed_echo_64b`, `tcp_framed_echo_64kib`,
//! `tls_framed_echo_64kib`): one connection to an in-process echo server built on
//! tokio-util's `LengthDelimitedCodec` (its own thread and current-thread runtime, the
//! same server for both sides), the client on a multi-thread runtime with 2 workers.
//! Ours is `TcpTransport` with `LengthDelimited` and its defaults (`send` from a sender
//! task, `recv` in the caller). The peer is what a tokio user writes: `TcpStream::connect`
//! (+ `TCP_NODELAY`; for TLS, tokio-rustls' `TlsConnector` with the same rustls config),
//! `Framed::new(stream, LengthDelimitedCodec::new())` split into sink and stream,
//! `SinkExt::send` from a sender task, `StreamExt::next` in the caller. Both keep 32
//! frames in flight on one connection each, kept across rounds. Rounds alternate which
//! side goes first; the figure is the median of 31 rounds. The JSON line also has the
//! CPU time per frame of each side (all threads, the server's included).
//!
//! JSON lines on stdout (DESIGN.md "Measuring"), progress and a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::{cpu_ns, median};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use connection_core::{Connection, Endpoint, Transport};
use connection_tls::TlsSource;
use connection_transport_tcp::{LengthDelimited, TcpConnection, TcpTransport};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const PEER: &str = "tokio-util Framed";
const ROUNDS: usize = 31;
const WINDOW: usize = 32;
const WARMUP: usize = 1_000;

fn main() {
    let started = Instant::now();
    echo();
    eprintln!("tcp bench done in {:.1?}", started.elapsed());
}

/// `cargo bench --bench tcp -- <name>...` runs only the named figures.
fn selected(name: &str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    only.is_empty() || only.iter().any(|o| o == name)
}

/// Ours with its defaults; `TCP_BENCH_SEND_KIB` / `TCP_BENCH_RECV_KIB` override the
/// buffers (for experiments; the figures are with the defaults).
fn bench_config() -> connection_transport_tcp::TcpConfig {
    let mut b = connection_transport_tcp::TcpConfig::builder();
    let kib = |var: &str| -> Option<usize> {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|k: usize| k << 10)
    };
    if let Some(n) = kib("TCP_BENCH_SEND_KIB") {
        b = b.send_buffer(n);
    }
    if let Some(n) = kib("TCP_BENCH_RECV_KIB") {
        b = b.recv_buffer(n);
    }
    b.build().expect("config")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---- the server ----

struct Certs {
    root: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn certs() -> Certs {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    Certs {
        root: cert.cert.der().clone(),
        chain: vec![cert.cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()),
    }
}

async fn echo_frames<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let mut f = Framed::new(s, LengthDelimitedCodec::new());
    while let Some(Ok(frame)) = f.next().await {
        if f.send(frame.freeze()).await.is_err() {
            return;
        }
    }
}

/// The echo server (plain and TLS ports) on a thread and current-thread runtime of its
/// own, so its cost is the same for both sides.
fn start_server(certs: &Certs) -> (SocketAddr, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        certs.chain.clone(),
        PrivateKeyDer::Pkcs8(certs.key.clone_key()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let tls = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send((
                plain.local_addr().expect("addr"),
                tls.local_addr().expect("addr"),
            ))
            .expect("send addrs");
            let plain_loop = async {
                while let Ok((s, _)) = plain.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(echo_frames(s));
                }
            };
            let tls_loop = async {
                while let Ok((s, _)) = tls.accept().await {
                    let _ = s.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(s) = acceptor.accept(s).await {
                            echo_frames(s).await;
                        }
                    });
                }
            };
            tokio::join!(plain_loop, tls_loop);
        });
    });
    rx.recv().expect("server addresses")
}

// ---- the two sides ----

trait Echo {
    /// Echoes `count` frames with at most `window` in flight; frames/s.
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64;
}

struct Ours(TcpConnection<LengthDelimited>);

impl Echo for Ours {
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64 {
        let io = self.0.io();
        let permits = Arc::new(Semaphore::new(window));
        let (sender, p, data) = (io.sender().clone(), permits.clone(), payload.clone());
        let started = Instant::now();
        let task = tokio::spawn(async move {
            for _ in 0..count {
                p.acquire().await.expect("semaphore open").forget();
                sender.send(data.clone()).await.expect("send");
            }
        });
        for _ in 0..count {
            let frame = io.recv().await.expect("open").expect("echo");
            assert_eq!(frame.len(), payload.len());
            permits.add_permits(1);
        }
        let elapsed = started.elapsed();
        task.await.expect("sender task");
        count as f64 / elapsed.as_secs_f64()
    }
}

type Sink<S> = futures::stream::SplitSink<Framed<S, LengthDelimitedCodec>, Bytes>;
type Stream<S> = futures::stream::SplitStream<Framed<S, LengthDelimitedCodec>>;

struct Peer<S> {
    sink: Option<Sink<S>>,
    stream: Stream<S>,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Peer<S> {
    fn new(s: S) -> Self {
        let (sink, stream) = Framed::new(s, LengthDelimitedCodec::new()).split();
        Self {
            sink: Some(sink),
            stream,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Echo for Peer<S> {
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64 {
        let permits = Arc::new(Semaphore::new(window));
        let (p, data) = (permits.clone(), payload.clone());
        let mut sink = self.sink.take().expect("the sink is back");
        let started = Instant::now();
        let task = tokio::spawn(async move {
            for _ in 0..count {
                p.acquire().await.expect("semaphore open").forget();
                sink.send(data.clone()).await.expect("send");
            }
            sink
        });
        for _ in 0..count {
            let frame = self.stream.next().await.expect("open").expect("echo");
            assert_eq!(frame.len(), payload.len());
            permits.add_permits(1);
        }
        let elapsed = started.elapsed();
        self.sink = Some(task.await.expect("sender task"));
        count as f64 / elapsed.as_secs_f64()
    }
}

async fn compare(
    name: &str,
    ours: &mut impl Echo,
    peer: &mut impl Echo,
    size: usize,
    count: usize,
) -> (f64, f64, f64, f64) {
    let payload = Bytes::from(vec![0x5a; size]);
    ours.run(&payload, WARMUP.min(count), WINDOW).await;
    peer.run(&payload, WARMUP.min(count), WINDOW).await;
    let (mut o, mut p, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ours_cpu, mut peer_cpu) = (0, 0);
    for round in 0..ROUNDS {
        let mut one = async |side: bool| {
            // TCP_BENCH_SIDE=ours|peer runs one side only (for profiling; no figure).
            if let Ok(only) = std::env::var("TCP_BENCH_SIDE")
                && (only == "ours") != side
            {
                if side {
                    o.push(1.0)
                } else {
                    p.push(1.0)
                }
                return;
            }
            let cpu = cpu_ns();
            if side {
                let v = ours.run(&payload, count, WINDOW).await;
                ours_cpu += cpu_ns() - cpu;
                o.push(v);
            } else {
                let v = peer.run(&payload, count, WINDOW).await;
                peer_cpu += cpu_ns() - cpu;
                p.push(v);
            }
        };
        if round % 2 == 0 {
            one(true).await;
            one(false).await;
        } else {
            one(false).await;
            one(true).await;
        }
        ratios.push(o[round] / p[round]);
    }
    let per = |ns: u64| ns as f64 / (ROUNDS * count) as f64 / 1e3;
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    let (om, pm) = (median(o), median(p));
    eprintln!(
        "{name:<24} {om:>12.0} {pm:>12.0} {:>7.3}   ratios {lo:.2}..{hi:.2}; cpu/frame {:.2} vs {:.2} µs",
        om / pm,
        per(ours_cpu),
        per(peer_cpu)
    );
    (om, pm, per(ours_cpu), per(peer_cpu))
}

fn echo() {
    let certs = certs();
    let (plain, tls) = start_server(&certs);
    let rt = runtime();
    eprintln!(
        "{:<24} {:>12} {:>12} {:>7}   (frames/s, median of {ROUNDS} rounds)",
        "bench", "ours", PEER, "ratio"
    );
    let mut results = Vec::new();
    rt.block_on(async {
        let plain_transport = TcpTransport::builder(
            Endpoint::host_port("127.0.0.1", plain.port()).expect("endpoint"),
            LengthDelimited::new(),
        )
        .config(bench_config())
        .build()
        .expect("transport");
        let mut ours = Ours(plain_transport.connect().await.expect("connect"));
        let stream = TcpStream::connect(plain).await.expect("peer connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut peer = Peer::new(stream);
        for (name, size, count) in [
            ("tcp_framed_echo_64b", 64, 30_000),
            ("tcp_framed_echo_64kib", 64 << 10, 2_000),
        ] {
            if !selected(name) {
                continue;
            }
            let r = compare(name, &mut ours, &mut peer, size, count).await;
            results.push((name, r));
        }

        if !selected("tls_framed_echo_64kib") {
            return;
        }
        let mut source = TlsSource::default();
        source.add_root(certs.root.clone()).expect("root");
        let client_config = source.client_config().expect("client config");
        let tls_transport = TcpTransport::builder(
            Endpoint::host_port("127.0.0.1", tls.port()).expect("endpoint"),
            LengthDelimited::new(),
        )
        .tls(source)
        .server_name("localhost")
        .build()
        .expect("tls transport");
        let mut ours = Ours(tls_transport.connect().await.expect("tls connect"));
        let stream = TcpStream::connect(tls).await.expect("peer connect");
        stream.set_nodelay(true).expect("nodelay");
        let connector = tokio_rustls::TlsConnector::from(client_config);
        let name = ServerName::try_from("localhost").expect("name");
        let stream = connector.connect(name, stream).await.expect("peer tls");
        let mut peer = Peer::new(stream);
        let r = compare(
            "tls_framed_echo_64kib",
            &mut ours,
            &mut peer,
            64 << 10,
            1_000,
        )
        .await;
        results.push(("tls_framed_echo_64kib", r));
    });
    for (name, (o, p, oc, pc)) in results {
        println!(
            "{{\"bench\":\"{name}\",\"unit\":\"frames/s\",\"ours\":{o:.0},\"peer\":\"{PEER}\",\"peer_value\":{p:.0},\"ratio\":{:.3},\"ours_cpu_us_per_frame\":{oc:.2},\"peer_cpu_us_per_frame\":{pc:.2}}}",
            o / p
        );
    }
}
