//! `cargo xtask bench sse`: our parser and client against eventsource-stream 0.2.
//!
//! - `sse_parse_small`, `sse_parse_16kib`: events/s parsing 100-byte events (resp.
//!   16 KiB ones) delivered in 4 KiB chunks. Both sides are `Stream` adapters over the
//!   same in-memory stream of `Bytes` chunks (ours: [`SseDecoder`]; the peer:
//!   `eventsource_stream::EventStream`), polled to the end on this thread. Rounds
//!   alternate which side goes first; the figure is the median of the rounds; CPU per
//!   event is this process's CPU time (all threads) over the events.
//! - `sse_long_line`: one 8 MiB `data` line in 1 KiB chunks, ms (median); the peer's
//!   figure beside it (fewer rounds: it is quadratic and takes seconds).
//! - `sse_e2e`: events/s from a local HTTP/1.1 server (its own thread and
//!   current-thread runtime, the same for both sides) streaming 100-byte events as fast
//!   as the socket takes them. Ours: an `SseClient` with its defaults, read with
//!   `next()`; the peer: plain reqwest (a default client, `chunk()` as a stream) under
//!   eventsource-stream, read in the caller. Each round is one new connection per side
//!   (connect included), on a multi-thread runtime with 2 workers.
//!
//! JSON lines on stdout (DESIGN.md "Measuring"), progress and a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::{cpu_ns, median};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use connection_transport_sse::{SseClient, SseDecoder, SseItem};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = "eventsource-stream";

/// `count` events of exactly `size` bytes each (`id`, `event` and one `data` line).
fn events(count: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * size);
    for i in 0..count {
        let head = format!("id: {i}\nevent: tick\ndata: ");
        let fill = size - head.len() - 2;
        out.extend_from_slice(head.as_bytes());
        out.extend(std::iter::repeat_n(b'x', fill));
        out.extend_from_slice(b"\n\n");
    }
    out
}

fn chunks(bytes: &[u8], size: usize) -> Vec<Bytes> {
    bytes.chunks(size).map(Bytes::copy_from_slice).collect()
}

/// Ours: the decoder over the chunks; returns the events seen.
fn run_ours(input: &[Bytes]) -> usize {
    let source =
        futures::stream::iter(input.iter().cloned().map(Ok::<_, std::convert::Infallible>));
    futures::executor::block_on(async {
        let mut stream = SseDecoder::new(source);
        let mut n = 0;
        while let Some(item) = stream.next().await {
            if let Ok(SseItem::Event(e)) = item {
                std::hint::black_box(e.data());
                n += 1;
            }
        }
        n
    })
}

/// The peer: eventsource-stream over the same chunks.
fn run_peer(input: &[Bytes]) -> usize {
    let source =
        futures::stream::iter(input.iter().cloned().map(Ok::<_, std::convert::Infallible>));
    futures::executor::block_on(async {
        let mut stream = eventsource_stream::EventStream::new(source);
        let mut n = 0;
        while let Some(item) = stream.next().await {
            if let Ok(e) = item {
                std::hint::black_box(&e.data);
                n += 1;
            }
        }
        n
    })
}

struct Figure {
    ours: f64,
    peer: f64,
    ours_cpu: f64,
    peer_cpu: f64,
    spread: (f64, f64),
}

/// Alternating rounds of `ours` and `peer`, each returning (events, seconds).
fn compare(
    rounds: usize,
    mut ours: impl FnMut() -> (usize, f64),
    mut peer: impl FnMut() -> (usize, f64),
) -> Figure {
    let (mut o, mut p) = (Vec::new(), Vec::new());
    let (mut o_cpu, mut p_cpu, mut o_events, mut p_events) = (0u64, 0u64, 0usize, 0usize);
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            let cpu = cpu_ns();
            if side == 0 {
                let (n, secs) = ours();
                o_cpu += cpu_ns() - cpu;
                o_events += n;
                o.push(n as f64 / secs);
            } else {
                let (n, secs) = peer();
                p_cpu += cpu_ns() - cpu;
                p_events += n;
                p.push(n as f64 / secs);
            }
        }
    }
    let ratios: Vec<f64> = o.iter().zip(&p).map(|(a, b)| a / b).collect();
    let spread = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    Figure {
        ours: median(o),
        peer: median(p),
        ours_cpu: o_cpu as f64 / o_events.max(1) as f64 / 1e3,
        peer_cpu: p_cpu as f64 / p_events.max(1) as f64 / 1e3,
        spread,
    }
}

fn report(name: &str, f: &Figure) {
    let ratio = f.ours / f.peer;
    println!(
        "{{\"bench\":\"{name}\",\"unit\":\"events/s\",\"ours\":{:.0},\"peer\":\"{PEER}\",\"peer_value\":{:.0},\"ratio\":{ratio:.3},\"ours_cpu_us_per_event\":{:.3},\"peer_cpu_us_per_event\":{:.3}}}",
        f.ours, f.peer, f.ours_cpu, f.peer_cpu
    );
    eprintln!(
        "{name:<18} {:>12.0} {:>12.0} {ratio:>7.3}   ({:.2}..{:.2}; CPU/event {:.3} vs {:.3} µs)",
        f.ours, f.peer, f.spread.0, f.spread.1, f.ours_cpu, f.peer_cpu
    );
}

fn parse() {
    eprintln!(
        "{:<18} {:>12} {:>12} {:>7}   (events/s, median; per-round ratios)",
        "bench", "ours", PEER, "ratio"
    );
    for (name, size, count, rounds) in [
        ("sse_parse_small", 100, 200_000, 21),
        ("sse_parse_16kib", 16 << 10, 2_000, 21),
    ] {
        let input = chunks(&events(count, size), 4 << 10);
        assert_eq!(run_ours(&input), count);
        assert_eq!(run_peer(&input), count);
        let timed = |f: fn(&[Bytes]) -> usize| {
            let t = Instant::now();
            let n = f(&input);
            (n, t.elapsed().as_secs_f64())
        };
        let figure = compare(rounds, || timed(run_ours), || timed(run_peer));
        report(name, &figure);
    }
}

fn long_line() {
    let build = |len: usize| {
        let mut line = b"data: ".to_vec();
        line.extend(std::iter::repeat_n(b'y', len));
        line.extend_from_slice(b"\n\n");
        chunks(&line, 1 << 10)
    };
    let (full, half) = (build(8 << 20), build(4 << 20));
    let time = |f: fn(&[Bytes]) -> usize, input: &[Bytes]| {
        let t = Instant::now();
        assert_eq!(f(input), 1);
        t.elapsed().as_secs_f64() * 1e3
    };
    // The peer once: it is quadratic here and takes tens of seconds.
    let peer = time(run_peer, &full);
    // Ours alternating 8 MiB and 4 MiB: linear means about twice the time for twice the
    // bytes.
    let (mut ours, mut ours_half) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        ours.push(time(run_ours, &full));
        ours_half.push(time(run_ours, &half));
    }
    let (o, h) = (median(ours), median(ours_half));
    println!(
        "{{\"bench\":\"sse_long_line\",\"unit\":\"ms\",\"ours\":{o:.2},\"peer\":\"{PEER}\",\"peer_value\":{peer:.1},\"ratio\":{:.1},\"ours_4mib_ms\":{h:.2}}}",
        peer / o
    );
    eprintln!(
        "sse_long_line      ours {o:.2} ms (4 MiB: {h:.2} ms), {PEER} {peer:.1} ms, 8 MiB in 1 KiB chunks"
    );
}

// ---- end to end ----

const E2E_EVENTS: usize = 100_000;

/// A server thread answering every request with `E2E_EVENTS` 100-byte events, then
/// closing.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let body = Bytes::from(events(E2E_EVENTS, 100));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => {
                            let Ok((mut socket, _)) = accepted else { continue };
                            let body = body.clone();
                            tokio::spawn(async move {
                                let _ = socket.set_nodelay(true);
                                let mut head = Vec::new();
                                let mut buf = [0u8; 1024];
                                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                                    match socket.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(n) => head.extend_from_slice(&buf[..n]),
                                    }
                                }
                                let reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
                                if socket.write_all(reply).await.is_err() {
                                    return;
                                }
                                for part in body.chunks(64 << 10) {
                                    if socket.write_all(part).await.is_err() {
                                        return;
                                    }
                                }
                                let _ = socket.shutdown().await;
                            });
                        }
                    }
                }
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

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn e2e_ours(url: &str) -> (usize, f64) {
    let started = Instant::now();
    let mut client = SseClient::builder(url).spawn().expect("client");
    let mut n = 0;
    while n < E2E_EVENTS {
        if let SseItem::Event(e) = client.next().await.expect("stream open") {
            std::hint::black_box(e.data());
            n += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    client.close(Duration::from_secs(1)).await;
    (n, secs)
}

async fn e2e_peer(http: &reqwest::Client, url: &str) -> (usize, f64) {
    let started = Instant::now();
    let response = http
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("peer request");
    let body = futures::stream::unfold(response, |mut r| async move {
        match r.chunk().await {
            Ok(Some(c)) => Some((Ok::<_, reqwest::Error>(c), r)),
            _ => None,
        }
    });
    let mut stream = eventsource_stream::EventStream::new(Box::pin(body));
    let mut n = 0;
    while let Some(item) = stream.next().await {
        let e = item.expect("peer event");
        std::hint::black_box(&e.data);
        n += 1;
    }
    (n, started.elapsed().as_secs_f64())
}

fn e2e() {
    let server = Server::start();
    let url = format!("http://{}/events", server.addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let figure = rt.block_on(async {
        // The workspace builds reqwest with `rustls-no-provider`: a plain reqwest user
        // installs the ring provider once, as here (ours passes its own config instead).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("peer client");
        // Warm both up.
        e2e_ours(&url).await;
        assert_eq!(e2e_peer(&http, &url).await.0, E2E_EVENTS);
        let (mut o, mut p) = (Vec::new(), Vec::new());
        let (mut o_cpu, mut p_cpu) = (0u64, 0u64);
        let rounds = 15;
        for round in 0..rounds {
            for side in [round % 2, 1 - round % 2] {
                let cpu = cpu_ns();
                if side == 0 {
                    let (n, s) = e2e_ours(&url).await;
                    o_cpu += cpu_ns() - cpu;
                    o.push(n as f64 / s);
                } else {
                    let (n, s) = e2e_peer(&http, &url).await;
                    p_cpu += cpu_ns() - cpu;
                    p.push(n as f64 / s);
                }
            }
        }
        let ratios: Vec<f64> = o.iter().zip(&p).map(|(a, b)| a / b).collect();
        let spread = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let per = |ns: u64| ns as f64 / (rounds * E2E_EVENTS) as f64 / 1e3;
        Figure {
            ours: median(o),
            peer: median(p),
            ours_cpu: per(o_cpu),
            peer_cpu: per(p_cpu),
            spread,
        }
    });
    eprintln!(
        "sse_e2e: {E2E_EVENTS} events of 100 bytes per connection; CPU includes the server thread"
    );
    report("sse_e2e", &figure);
}

fn main() {
    // `cargo bench --bench sse -- parse` runs one section (parse, long, e2e).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    let started = Instant::now();
    if run("parse") {
        parse();
    }
    if run("long") {
        long_line();
    }
    if run("e2e") {
        e2e();
    }
    eprintln!("sse bench done in {:.1?}", started.elapsed());
}
