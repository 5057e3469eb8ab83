//! `cargo xtask bench ws`: the WebSocket client against raw tokio-tungstenite.
//!
//! - Echo throughput (`ws_echo_64b`, `ws_echo_16kib`, `ws_echo_64b_pingpong`): one
//!   connection to an in-process tokio-tungstenite echo server (its own thread and
//!   current-thread runtime, the same server for both), the client on a multi-thread
//!   runtime with 2 workers. Ours is `WsClient` with its defaults (`send_binary` from a
//!   sender task, `recv` in the caller); the peer is tokio-tungstenite as its users set
//!   it up (`connect_async` defaults, the stream split into sink and stream,
//!   `SinkExt::send` from a sender task, `StreamExt::next` in the caller). Both keep a
//!   window of 32 messages in flight (1 for the ping-pong variant), on one connection
//!   each kept across rounds. Rounds alternate which side goes first; the figure is the
//!   median of 31 rounds. stderr also shows the spread of the per-round ratios and the
//!   CPU time per message of each side (all threads, server included; also in the JSON
//!   line as `ours_cpu_us_per_msg` / `peer_cpu_us_per_msg`), which a busy
//!   machine disturbs less than the wall clock.
//!
//!   Buffer defaults differ: ours reads into 8 KiB and writes through 16 KiB
//!   (tungstenite zero-fills and so keeps resident its whole read buffer: memory per
//!   idle client), tokio-tungstenite uses 128 KiB for both. That costs ours on 16 KiB
//!   messages (several reads per message); with 128 KiB buffers ours is ahead there.
//! - Reconnect (`ws_reconnect`, `ws_reconnect_over_backoff`): see [`reconnect`].
//! - Memory (`ws_memory_per_client`): see [`memory`]. The bench binary re-executes
//!   itself (`WS_BENCH_MODE`) to run the server and each side's clients in processes
//!   of their own.
//!
//! JSON lines on stdout (DESIGN.md "Measuring"), progress and a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::{cpu_ns, median};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use connection_core::{EventFilter, EventKind, EventType};
use connection_retry::{BackoffStrategy, Jitter};
use connection_testkit::LoopbackServer;
use connection_transport_ws::{Bytes, Message, WsClient};
use futures::future::ready;
use futures::{FutureExt, SinkExt, StreamExt, TryStreamExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const PEER: &str = "tokio-tungstenite";
const ROUNDS: usize = 31;
const WINDOW: usize = 32;
/// Messages echoed before each timed run, on the same connection.
const WARMUP: usize = 1_000;

const RECONNECT_TRIALS: usize = 100;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

const MEMORY_CLIENTS: usize = 2_000;
/// Clients connect in batches, so the server's accept backlog never overflows (an
/// overflow costs a SYN retry, seconds).
const MEMORY_BATCH: usize = 100;
const MODE_VAR: &str = "WS_BENCH_MODE";
const URL_VAR: &str = "WS_BENCH_URL";

fn main() {
    match std::env::var(MODE_VAR).as_deref() {
        Ok("server") => memory_server(),
        Ok("mem-ours") => memory_client(Side::Ours),
        Ok("mem-raw") => memory_client(Side::Raw),
        _ => {
            // `cargo bench --bench ws -- echo` runs one section (echo, reconnect, memory).
            let only: Vec<String> = std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect();
            let run = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
            let started = Instant::now();
            if run("echo") {
                echo();
            }
            if run("reconnect") {
                reconnect();
            }
            if run("memory") {
                memory();
            }
            eprintln!("ws bench done in {:.1?}", started.elapsed());
        }
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---- the server ----

/// A tokio-tungstenite echo of text and binary messages (pings are answered by
/// tungstenite itself), with the size limit raised for the 16 KiB runs' comfort.
async fn echo_handler(stream: TcpStream, _peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (tx, rx) = ws.split();
    let _ = rx
        .try_filter(|m| ready(m.is_text() || m.is_binary()))
        .forward(tx)
        .await;
}

/// The echo server on a thread and current-thread runtime of its own, so its cost is
/// the same for both sides and does not share the clients' workers.
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
                let server = LoopbackServer::start(echo_handler)
                    .await
                    .expect("echo server");
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

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
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

// ---- echo throughput ----

/// One side of the echo comparison: a connection, kept across rounds.
trait Echo {
    /// Echoes `count` messages with at most `window` in flight; msg/s.
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64;
}

/// Ours: `WsClient` with its defaults.
struct Ours(WsClient);

impl Ours {
    async fn connect(url: &str) -> Self {
        let client = WsClient::builder(url).spawn().expect("our client");
        client.wait_connected().await.expect("connected");
        Self(client)
    }
}

impl Echo for Ours {
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64 {
        let client = &mut self.0;
        let permits = Arc::new(Semaphore::new(window));
        let (sender, p, data) = (client.sender(), permits.clone(), payload.clone());
        let started = Instant::now();
        let task = tokio::spawn(async move {
            for _ in 0..count {
                p.acquire().await.expect("semaphore open").forget();
                sender.send_binary(data.clone()).await.expect("send");
            }
        });
        for _ in 0..count {
            let msg = client.recv().await.expect("echo");
            assert_eq!(msg.len(), payload.len());
            permits.add_permits(1);
        }
        let elapsed = started.elapsed();
        task.await.expect("sender task");
        count as f64 / elapsed.as_secs_f64()
    }
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The peer: raw tokio-tungstenite from `connect_async`, split into sink and stream.
struct Peer {
    sink: Option<futures::stream::SplitSink<RawWs, Message>>,
    stream: futures::stream::SplitStream<RawWs>,
}

impl Peer {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("peer connect");
        let (sink, stream) = ws.split();
        Self {
            sink: Some(sink),
            stream,
        }
    }
}

impl Echo for Peer {
    async fn run(&mut self, payload: &Bytes, count: usize, window: usize) -> f64 {
        let permits = Arc::new(Semaphore::new(window));
        let (p, msg) = (permits.clone(), Message::Binary(payload.clone()));
        let mut sink = self.sink.take().expect("the sink is back");
        let started = Instant::now();
        // The sink goes into a sender task like ours, and comes back for the next run.
        let task = tokio::spawn(async move {
            for _ in 0..count {
                p.acquire().await.expect("semaphore open").forget();
                sink.send(msg.clone()).await.expect("send");
            }
            sink
        });
        for _ in 0..count {
            let msg = self.stream.next().await.expect("open").expect("echo");
            assert_eq!(msg.len(), payload.len());
            permits.add_permits(1);
        }
        let elapsed = started.elapsed();
        self.sink = Some(task.await.expect("sender task"));
        count as f64 / elapsed.as_secs_f64()
    }
}

fn echo() {
    let server = ServerThread::start();
    let url = server.url();
    let rt = runtime();
    // (name, payload bytes, messages per timed run, window)
    let cases = [
        ("ws_echo_64b", 64, 30_000, WINDOW),
        ("ws_echo_16kib", 16 << 10, 8_000, WINDOW),
        ("ws_echo_64b_pingpong", 64, 2_000, 1),
    ];
    eprintln!(
        "{:<24} {:>12} {:>12} {:>7}   (msg/s, median of {ROUNDS} rounds; per-round ratios min..max)",
        "bench", "ours", PEER, "ratio"
    );
    for (name, size, n, window) in cases {
        let payload = Bytes::from(vec![0x5a; size]);
        let (ours, peer, (ours_cpu, peer_cpu)) = rt.block_on(async {
            let (mut us, mut them) = (Ours::connect(&url).await, Peer::connect(&url).await);
            us.run(&payload, WARMUP, window).await;
            them.run(&payload, WARMUP, window).await;
            let (mut ours, mut peer) = (Vec::new(), Vec::new());
            let (mut ours_cpu, mut peer_cpu) = (0, 0);
            for round in 0..ROUNDS {
                // Alternate who goes first, so drift in machine load hits both alike.
                for side in [round % 2, 1 - round % 2] {
                    let cpu = cpu_ns();
                    if side == 0 {
                        ours.push(us.run(&payload, n, window).await);
                        ours_cpu += cpu_ns() - cpu;
                    } else {
                        peer.push(them.run(&payload, n, window).await);
                        peer_cpu += cpu_ns() - cpu;
                    }
                }
            }
            us.0.close(Duration::from_secs(1)).await;
            let per_msg = |ns: u64| ns as f64 / (ROUNDS * n) as f64 / 1e3;
            let cpu = (per_msg(ours_cpu), per_msg(peer_cpu));
            eprintln!(
                "  {name}: CPU per message, server included: ours {:.2} µs, {PEER} {:.2} µs",
                cpu.0, cpu.1
            );
            (ours, peer, cpu)
        });
        let ratios: Vec<f64> = ours.iter().zip(&peer).map(|(o, p)| o / p).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let (o, p) = (median(ours), median(peer));
        let ratio = o / p;
        println!(
            "{{\"bench\":\"{name}\",\"unit\":\"msg/s\",\"ours\":{o:.0},\"peer\":\"{PEER}\",\"peer_value\":{p:.0},\"ratio\":{ratio:.3},\"ours_cpu_us_per_msg\":{ours_cpu:.2},\"peer_cpu_us_per_msg\":{peer_cpu:.2}}}"
        );
        eprintln!("{name:<24} {o:>12.0} {p:>12.0} {ratio:>7.3}   ({lo:.2}..{hi:.2})");
    }
}

// ---- reconnect ----

/// Reconnect time after a server restart, over [`RECONNECT_TRIALS`] trials.
///
/// Each trial stops the server (listener closed, every connection dropped, so the
/// client sees the connection end), waits for the client's `Reconnecting` event, and
/// binds the same port again: "accept-ready" is the moment `restart()` returned, i.e.
/// the listener is bound and listening. The client reconnects with a fixed 10 ms
/// backoff without jitter.
///
/// - `ws_reconnect`: from accept-ready to the client's `Connected` event as a
///   subscriber receives it. The server is back well within the backoff, so this is
///   about the backoff plus the reconnect's own cost.
/// - `ws_reconnect_over_backoff`: from the later of accept-ready and the backoff's
///   expiry (the `Reconnecting` event's timestamp plus its delay: the earliest moment
///   the client may try) to `Connected`: what reconnecting costs beyond the configured
///   wait (timer lateness, TCP connect, handshake, event delivery). The goal is < 2 ms.
///
/// Both use the wall clock (`SystemTime`), since that is what events are stamped with.
fn reconnect() {
    let rt = runtime();
    let (ours, over) = rt.block_on(async {
        let accepted = Arc::new(parking_lot::Mutex::new(None::<SystemTime>));
        let stamp = accepted.clone();
        let mut server = LoopbackServer::start(move |stream, peer| {
            *stamp.lock() = Some(SystemTime::now());
            echo_handler(stream, peer)
        })
        .await
        .expect("echo server");
        let backoff = BackoffStrategy::fixed(RECONNECT_BACKOFF)
            .jitter(Jitter::None)
            .build()
            .expect("backoff");
        let client = WsClient::builder(format!("ws://{}", server.addr()))
            .backoff(backoff)
            .spawn()
            .expect("our client");
        let mut events = client
            .subscribe(EventFilter::all().types([EventType::Reconnecting, EventType::Connected]));
        client.wait_connected().await.expect("connected");
        let (mut ours, mut over) = (Vec::new(), Vec::new());
        let (mut until_accept, mut until_stamp, mut delivery) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RECONNECT_TRIALS {
            // Leave the Connected event of the previous trial behind.
            while events.next().now_or_never().is_some() {}
            server.stop().await;
            let mut expiry = None;
            let mut restarted = None;
            let (stamped, connected) = loop {
                let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                    .await
                    .expect("an event in time")
                    .expect("events open")
                    .expect("no events lost");
                match event.kind {
                    EventKind::Reconnecting { delay, .. } => {
                        expiry = Some(event.at + delay);
                        if restarted.is_none() {
                            server.restart().await.expect("restart");
                            restarted = Some(SystemTime::now());
                        }
                    }
                    // A Connected from before the restart is the previous trial's,
                    // arriving late (the drain above cannot promise to catch it).
                    EventKind::Connected if restarted.is_some() => {
                        break (event.at, SystemTime::now());
                    }
                    _ => {}
                }
            };
            let ready = restarted.expect("restarted before connecting");
            let earliest = expiry.expect("a Reconnecting event").max(ready);
            let since = |t: SystemTime| {
                connected
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1e3
            };
            ours.push(since(ready));
            over.push(since(earliest));
            // Where the time beyond the backoff goes: up to the supervisor's
            // Connected (timer lateness, connect, handshake), then event delivery.
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let accept = accepted.lock().take().expect("accepted");
            until_accept.push(ms(accept.duration_since(earliest).unwrap_or_default()));
            until_stamp.push(ms(stamped.duration_since(accept).unwrap_or_default()));
            delivery.push(ms(connected.duration_since(stamped).unwrap_or_default()));
        }
        client.close(Duration::from_secs(1)).await;
        // For scale: how late a bare tokio sleep of the backoff fires on this runtime
        // (its timer has a 1 ms resolution).
        let mut late = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            tokio::time::sleep(RECONNECT_BACKOFF).await;
            late.push((t.elapsed().saturating_sub(RECONNECT_BACKOFF)).as_secs_f64() * 1e3);
        }
        eprintln!(
            "ws_reconnect: for scale, tokio::time::sleep({RECONNECT_BACKOFF:?}) alone fires {:.3} ms late (median)",
            median(late)
        );
        eprintln!(
            "ws_reconnect: beyond the backoff, medians: {:.3} ms until the server accepted \
             (timer lateness, TCP connect), {:.3} ms more until the supervisor published \
             Connected (handshake), {:.3} ms event delivery",
            median(until_accept),
            median(until_stamp),
            median(delivery)
        );
        (median(ours), median(over))
    });
    println!("{{\"bench\":\"ws_reconnect\",\"unit\":\"ms\",\"ours\":{ours:.3}}}");
    println!("{{\"bench\":\"ws_reconnect_over_backoff\",\"unit\":\"ms\",\"ours\":{over:.3}}}");
    eprintln!(
        "ws_reconnect: median {ours:.3} ms from accept-ready to Connected; {over:.3} ms beyond the {RECONNECT_BACKOFF:?} backoff"
    );
}

// ---- memory ----

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Raw,
}

/// Memory per idle connected client: RSS growth of a client process over
/// [`MEMORY_CLIENTS`] connections, divided by their number.
///
/// Three processes (this binary re-executed): the echo server alone, so its memory is
/// not counted; then our clients in a fresh process; then raw tokio-tungstenite
/// connections in another fresh process, so neither reuses memory the other freed.
/// Each client process first connects one client and keeps it (runtime, allocator and
/// lazy statics warm), reads RSS, connects the rest, waits a moment, reads RSS again.
///
/// Ours: `WsClient` with defaults (private event bus, heartbeat on). Raw: the
/// `WebSocketStream` from `connect_async` with a task reading it, the least a user
/// must do to notice the connection ending and to answer pings.
fn memory() {
    let exe = std::env::current_exe().expect("current exe");
    let mut server = Command::new(&exe)
        .env(MODE_VAR, "server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the memory server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("server address");
    let url = format!("ws://{}", line.trim());
    let measure = |side: &str| -> f64 {
        let out = Command::new(&exe)
            .env(MODE_VAR, side)
            .env(URL_VAR, &url)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run a memory client");
        assert!(out.status.success(), "{side} failed: {:?}", out.status);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("bytes per client")
    };
    let ours = measure("mem-ours");
    let peer = measure("mem-raw");
    drop(server.stdin.take());
    let _ = server.wait();
    let ratio = peer / ours;
    println!(
        "{{\"bench\":\"ws_memory_per_client\",\"unit\":\"bytes\",\"ours\":{ours:.0},\"peer\":\"{PEER}\",\"peer_value\":{peer:.0},\"ratio\":{ratio:.3}}}"
    );
    eprintln!(
        "ws_memory_per_client: ours {:.1} KiB, {PEER} {:.1} KiB per idle connection ({MEMORY_CLIENTS} connections)",
        ours / 1024.0,
        peer / 1024.0
    );
}

/// The server process: an echo server; prints its address, exits when stdin closes.
fn memory_server() {
    let rt = runtime();
    let server = rt.block_on(async {
        LoopbackServer::start(echo_handler)
            .await
            .expect("echo server")
    });
    println!("{}", server.addr());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    rt.block_on(async move { drop(server) });
}

/// A client process: prints the RSS growth per connection.
fn memory_client(side: Side) {
    let url = std::env::var(URL_VAR).expect("WS_BENCH_URL");
    let rt = runtime();
    let per_client = rt.block_on(async {
        let mut ours = Vec::with_capacity(MEMORY_CLIENTS + 1);
        let mut raw = Vec::with_capacity(MEMORY_CLIENTS + 1);
        let mut connect = async |count: usize| {
            let mut left = count;
            while left > 0 {
                let batch = left.min(MEMORY_BATCH);
                left -= batch;
                if side == Side::Ours {
                    let clients: Vec<_> = (0..batch)
                        .map(|_| WsClient::builder(url.as_str()).spawn().expect("client"))
                        .collect();
                    for c in &clients {
                        tokio::time::timeout(Duration::from_secs(10), c.wait_connected())
                            .await
                            .expect("connected in time")
                            .expect("connected");
                    }
                    ours.extend(clients);
                } else {
                    let tasks: Vec<_> = (0..batch)
                        .map(|_| {
                            let url = url.clone();
                            tokio::spawn(async move {
                                tokio_tungstenite::connect_async(url)
                                    .await
                                    .expect("raw connect")
                                    .0
                            })
                        })
                        .collect();
                    for t in tasks {
                        let mut ws = t.await.expect("connect task");
                        raw.push(tokio::spawn(async move {
                            while let Some(Ok(_)) = ws.next().await {}
                        }));
                    }
                }
            }
        };
        connect(1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss();
        connect(MEMORY_CLIENTS).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss();
        let per_client = after.saturating_sub(before) as f64 / MEMORY_CLIENTS as f64;
        drop(ours);
        for t in raw {
            t.abort();
        }
        per_client
    });
    println!("{per_client:.0}");
}
