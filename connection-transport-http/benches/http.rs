//! `cargo xtask bench http`: our managed client against plain reqwest 0.13.
//!
//! - `http_get_rps` and `http_get_p99`: a small GET (11-byte body) on keep-alive
//!   against an in-process hyper HTTP/1.1 server (its own thread and current-thread
//!   runtime, the same server for both sides), 32 requests in flight (32 tasks, each
//!   sending its next request when the last one answered), the clients on a
//!   multi-thread runtime with 2 workers. Ours is `HttpClient` with retries (default
//!   policy and budget), its circuit breaker and a rate limiter on, none of them ever
//!   tripping, and its default request timeout; the peer is `reqwest::Client::new()`
//!   (reqwest 0.13's defaults; the process installs ring as rustls' provider, since the
//!   workspace builds reqwest without aws-lc-rs). Both read the body in full. Rounds
//!   alternate which side goes first; each figure is the median of the rounds' values.
//!   CPU time per request (all threads, server included) goes in the JSON line too.
//! - `http_retry_overhead`: what the policy stack costs a request that succeeds at
//!   once, in ns: the client's own retry policy, rate limiter and circuit breaker (taken
//!   from a built client), composed as the client composes them (retry run → limiter
//!   permit → breaker permit → success), around an operation that is ready at once,
//!   minus the same operation alone. Median of rounds, single thread.
//!
//! `HTTP_BENCH_VARIANT` (`bare`: every policy and the request timeout off; `timeout`:
//! only the request timeout; `policies`: only the policies) tells their costs apart
//! (and skips `http_retry_overhead`).
//!
//! JSON lines on stdout (DESIGN.md "Measuring"), a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::{cpu_ns, median};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use connection_core::Endpoint;
use connection_testkit::LoopbackServer;
use connection_transport_http::{HttpClient, HttpError};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

const PEER: &str = "reqwest";
const ROUNDS: usize = 15;
const IN_FLIGHT: usize = 32;
const REQUESTS: usize = 16_000;
const WARMUP: usize = 2_000;

fn main() {
    // The workspace builds reqwest with `rustls-no-provider`; plain `Client::new()`
    // needs a process-wide provider, and ring is the workspace's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    get();
    overhead();
    eprintln!("http bench done in {:.1?}", started.elapsed());
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The server on a thread and current-thread runtime of its own.
struct ServerThread {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let server = LoopbackServer::start(|stream, _| async move {
                    let _ = stream.set_nodelay(true);
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"hello world",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                })
                .await
                .expect("server");
                addr_tx.send(server.addr()).expect("send the address");
                let _ = stopped.await;
                drop(server);
            });
        });
        let addr = addr_rx.recv().expect("server address");
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
enum Side {
    Ours(HttpClient),
    Peer(reqwest::Client, Arc<str>),
}

impl Side {
    async fn get(&self) {
        match self {
            Side::Ours(client) => {
                let response = client.get("/").await.expect("ours");
                assert_eq!(response.bytes().len(), 11);
            }
            Side::Peer(client, url) => {
                let response = client.get(&**url).send().await.expect("peer");
                let body = response.bytes().await.expect("peer body");
                assert_eq!(body.len(), 11);
            }
        }
    }

    /// `count` GETs, `IN_FLIGHT` at a time; requests/s and the latencies (µs).
    async fn run(&self, count: usize) -> (f64, Vec<u32>) {
        let per_task = count / IN_FLIGHT;
        let started = Instant::now();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let side = self.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let t = Instant::now();
                        side.get().await;
                        latencies.push(t.elapsed().as_micros() as u32);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        let rps = (per_task * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64();
        (rps, all)
    }
}

fn p99(mut v: Vec<u32>) -> f64 {
    v.sort_unstable();
    f64::from(v[(v.len() * 99 / 100).min(v.len() - 1)])
}

fn ours(addr: SocketAddr) -> HttpClient {
    let b = HttpClient::builder(format!("http://{addr}"));
    // Diagnostics: which part of the stack costs what.
    let b = match std::env::var("HTTP_BENCH_VARIANT").as_deref() {
        Ok("bare") => b.no_retries().no_circuit_breaker().no_request_timeout(),
        Ok("timeout") => b.no_retries().no_circuit_breaker(),
        Ok("policies") => b.no_request_timeout().rate_limit(100_000_000, 100_000_000),
        Ok("retry") => b.no_request_timeout().no_circuit_breaker(),
        Ok("breaker") => b.no_request_timeout().no_retries(),
        Ok("limiter") => b
            .no_request_timeout()
            .no_retries()
            .no_circuit_breaker()
            .rate_limit(100_000_000, 100_000_000),
        // Policies on, never tripping: a rate far above what the machine can do.
        _ => b.rate_limit(100_000_000, 100_000_000),
    };
    b.build_client().expect("our client")
}

fn get() {
    let server = ServerThread::start();
    let rt = runtime();
    let url: Arc<str> = Arc::from(format!("http://{}/", server.addr));
    let (mut ours_rps, mut peer_rps, mut ours_p99, mut peer_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ours_cpu, mut peer_cpu) = (0u64, 0u64);
    rt.block_on(async {
        let us = Side::Ours(ours(server.addr));
        let them = Side::Peer(reqwest::Client::new(), url);
        us.run(WARMUP).await;
        them.run(WARMUP).await;
        for round in 0..ROUNDS {
            // Alternate who goes first, so drift in machine load hits both alike.
            for side in [round % 2, 1 - round % 2] {
                // HTTP_BENCH_SIDE=ours|peer runs one side only (for profiling; the
                // figures are then meaningless).
                if let Ok(only) = std::env::var("HTTP_BENCH_SIDE")
                    && (only == "ours") != (side == 0)
                {
                    let (v, l) = if side == 0 {
                        (&mut ours_rps, &mut ours_p99)
                    } else {
                        (&mut peer_rps, &mut peer_p99)
                    };
                    v.push(1.0);
                    l.push(1.0);
                    continue;
                }
                let cpu = cpu_ns();
                if side == 0 {
                    let (rps, lat) = us.run(REQUESTS).await;
                    ours_cpu += cpu_ns() - cpu;
                    ours_rps.push(rps);
                    ours_p99.push(p99(lat));
                } else {
                    let (rps, lat) = them.run(REQUESTS).await;
                    peer_cpu += cpu_ns() - cpu;
                    peer_rps.push(rps);
                    peer_p99.push(p99(lat));
                }
            }
        }
        if let Side::Ours(client) = &us {
            let m = client.metrics();
            eprintln!("  ours opened {} connections", m.connections_opened);
            assert_eq!(
                (
                    m.retries,
                    m.breaker_rejections,
                    m.limiter_rejections,
                    m.errors
                ),
                (0, 0, 0, 0),
                "the policies never tripped"
            );
        }
    });
    let per_req = |ns: u64| ns as f64 / (ROUNDS * REQUESTS) as f64 / 1e3;
    let (ocpu, pcpu) = (per_req(ours_cpu), per_req(peer_cpu));
    let ratios: Vec<f64> = ours_rps.iter().zip(&peer_rps).map(|(o, p)| o / p).collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    let (o, p) = (median(ours_rps), median(peer_rps));
    println!(
        "{{\"bench\":\"http_get_rps\",\"unit\":\"req/s\",\"ours\":{o:.0},\"peer\":\"{PEER}\",\"peer_value\":{p:.0},\"ratio\":{:.3},\"ours_cpu_us_per_req\":{ocpu:.2},\"peer_cpu_us_per_req\":{pcpu:.2}}}",
        o / p
    );
    eprintln!(
        "http_get_rps        ours {o:>9.0}  {PEER} {p:>9.0}  ratio {:.3}  (rounds {lo:.2}..{hi:.2}); CPU/req ours {ocpu:.2} µs, {PEER} {pcpu:.2} µs",
        o / p
    );
    let (o, p) = (median(ours_p99), median(peer_p99));
    println!(
        "{{\"bench\":\"http_get_p99\",\"unit\":\"us\",\"ours\":{o:.0},\"peer\":\"{PEER}\",\"peer_value\":{p:.0},\"ratio\":{:.3}}}",
        p / o
    );
    eprintln!(
        "http_get_p99        ours {o:>7.0} µs  {PEER} {p:>7.0} µs  ratio {:.3}",
        p / o
    );
}

/// The policy stack around an operation that succeeds at once, composed as the client
/// composes it, against the operation alone.
fn overhead() {
    const N: u32 = 200_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = ours("127.0.0.1:1".parse().expect("addr"));
    let endpoint: Endpoint = client.endpoint().clone();
    if std::env::var("HTTP_BENCH_VARIANT").is_ok_and(|v| v != "full") {
        return;
    }
    let (retry, limiter, breaker) = (
        client.retry_policy().expect("retry on").clone(),
        client.rate_limiter().expect("limiter on").clone(),
        client.circuit_breaker().expect("breaker on").clone(),
    );
    let mut with = Vec::new();
    let mut without = Vec::new();
    rt.block_on(async {
        for round in 0..ROUNDS {
            for side in [round % 2, 1 - round % 2] {
                let started = Instant::now();
                if side == 0 {
                    for i in 0..N {
                        let r: Result<u32, HttpError> = retry
                            .on(&endpoint)
                            .run(|| async {
                                limiter.acquire().await?;
                                let permit = breaker.try_acquire()?;
                                let v = std::hint::black_box(i);
                                permit.success();
                                Ok(v)
                            })
                            .await;
                        std::hint::black_box(r.is_ok());
                    }
                    with.push(started.elapsed().as_nanos() as f64 / f64::from(N));
                } else {
                    for i in 0..N {
                        let r: Result<u32, HttpError> = async { Ok(std::hint::black_box(i)) }.await;
                        std::hint::black_box(r.is_ok());
                    }
                    without.push(started.elapsed().as_nanos() as f64 / f64::from(N));
                }
            }
        }
    });
    let ns = (median(with) - median(without)).max(0.0);
    println!("{{\"bench\":\"http_retry_overhead\",\"unit\":\"ns\",\"ours\":{ns:.1}}}");
    eprintln!(
        "http_retry_overhead {ns:.1} ns per request (retry + limiter + breaker, success path)"
    );
}
