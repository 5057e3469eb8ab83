//! Plumbing of the `manager` bench: the echo server in a child process, the plain tokio
//! connect loop (the peer of `connect_all`), RSS, statistics and the JSON lines.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use connection_core::Transport;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Set in the child's environment: run as the echo server, not as the bench.
pub(crate) const SERVER_ENV: &str = "CONNECTION_HEALTH_BENCH_SERVER";
/// How many ports the child listens on: each connect round uses a fresh port, so the
/// `TIME_WAIT` sockets of the previous round never collide with the next one's.
pub(crate) const SERVER_PORTS: usize = 20;
/// The child drops connections beyond this many open at once, so it never runs out of
/// file descriptors while the previous round's sockets are still closing.
const SERVER_MAX_OPEN: usize = 18_000;
/// Listen backlog: the kernel caps it at `somaxconn`.
const BACKLOG: u32 = 4096;
/// Bound on every single connect of the peer loop.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises the soft file-descriptor limit to the hard one; returns the limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("manager bench: could not raise the file-descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
        }
    }
}

/// The resident set size of this process in bytes (`VmRSS` of `/proc/self/status`).
pub(crate) fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time used by this process so far, user and system, in seconds (from
/// `/proc/self/stat`, in clock ticks of 10 ms).
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The median; `NaN` for no samples.
pub(crate) fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

/// The `p` quantile (nearest rank, `p` in 0..=1); `NaN` for no samples.
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Prints a figure with no peer as one JSON line on stdout.
pub(crate) fn report(bench: &str, unit: &str, ours: f64) {
    println!(
        "{{\"bench\": \"{bench}\", \"unit\": \"{unit}\", \"ours\": {}}}",
        json_number(ours)
    );
}

/// Prints a comparison as one JSON line; `ratio` must already be oriented so that > 1
/// means ours is better.
pub(crate) fn report_vs(
    bench: &str,
    unit: &str,
    ours: f64,
    peer: &str,
    peer_value: f64,
    ratio: f64,
) {
    println!(
        "{{\"bench\": \"{bench}\", \"unit\": \"{unit}\", \"ours\": {}, \"peer\": \"{peer}\", \"peer_value\": {}, \"ratio\": {}}}",
        json_number(ours),
        json_number(peer_value),
        json_number(ratio)
    );
}

/// Four significant digits (more than the noise allows); `null` for a value that is not
/// a number, which JSON cannot carry.
fn json_number(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    format!("{}", (x * scale).round() / scale)
}

// ---- child processes ----

/// A child process running this same bench binary in another mode (chosen by an
/// environment variable). Dropping it closes the child's stdin, which makes it exit,
/// and kills it if it has not exited 2 s later.
#[derive(Debug)]
struct HelperProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl HelperProcess {
    /// Starts the child with `env=value`; waits at most `limit` for its first stdout line.
    fn start(env: &str, value: &str, limit: Duration) -> io::Result<(Self, String)> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env(env, value)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // From here on, dropping `process` ends the child whatever happens below.
        let process = Self { child, stdin };
        let stdout = stdout.ok_or_else(|| io::Error::other("child has no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = rx.recv_timeout(limit).map_err(|_| {
            io::Error::other(format!("the {env} child printed nothing in {limit:?}"))
        })??;
        Ok((process, line))
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ends this child process when its stdin closes (the bench ended or died).
fn exit_with_parent() {
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
}

/// The echo server running in a child process (see [`run_server`]).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    _process: HelperProcess,
    ports: Vec<SocketAddr>,
}

impl ServerProcess {
    /// Starts the child and waits (bounded) for the line with its ports.
    pub(crate) fn start() -> io::Result<Self> {
        let (process, line) = HelperProcess::start(SERVER_ENV, "1", Duration::from_secs(10))?;
        let ports: Vec<SocketAddr> = line
            .split_whitespace()
            .skip(1)
            .map(|p| {
                p.parse::<u16>()
                    .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| io::Error::other(format!("bad ports line {line:?}: {e}")))?;
        if ports.len() != SERVER_PORTS {
            return Err(io::Error::other(format!("bad ports line {line:?}")));
        }
        Ok(Self {
            _process: process,
            ports,
        })
    }

    /// The `i`-th listening address (modulo the number of ports).
    pub(crate) fn addr(&self, i: usize) -> SocketAddr {
        self.ports[i % self.ports.len()]
    }
}

/// Set in a child's environment to `ADDR N LIMIT`: measure the memory of `N` bare
/// `TcpEchoTransport` connections to `ADDR` (see [`run_peer_memory`]).
pub(crate) const PEER_MEMORY_ENV: &str = "CONNECTION_HEALTH_BENCH_PEER_MEMORY";

/// RSS per connection of `n` connections of the bare transport opened by the plain
/// tokio loop, measured in a fresh child process (a fresh allocator, like the manager's
/// measurement here).
pub(crate) fn peer_memory(addr: SocketAddr, n: usize, limit: usize) -> io::Result<f64> {
    let (_process, line) = HelperProcess::start(
        PEER_MEMORY_ENV,
        &format!("{addr} {n} {limit}"),
        Duration::from_secs(60),
    )?;
    line.trim()
        .parse()
        .map_err(|e| io::Error::other(format!("bad memory line {line:?}: {e}")))
}

/// The child's main for [`peer_memory`]: prints the RSS delta per connection, then
/// waits for stdin to close with the connections open.
pub(crate) fn run_peer_memory(spec: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    raise_fd_limit();
    exit_with_parent();
    let mut parts = spec.split_whitespace();
    let (Some(addr), Some(n), Some(limit)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad {PEER_MEMORY_ENV} {spec:?}").into());
    };
    let (addr, n, limit): (SocketAddr, usize, usize) = (addr.parse()?, n.parse()?, limit.parse()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let transport = connection_testkit::TcpEchoTransport::new(addr)?;
        let before = rss_bytes().ok_or("no /proc/self/status")?;
        let (_took, conns) = tokio_connect_all(&transport, n, limit).await?;
        let after = rss_bytes().ok_or("no /proc/self/status")?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", after.saturating_sub(before) as f64 / n as f64)?;
        stdout.flush()?;
        drop(stdout);
        // Held until the parent has read the line and closes our stdin.
        std::future::pending::<()>().await;
        drop(conns);
        Ok(())
    })
}

/// The child's main: echo servers on [`SERVER_PORTS`] loopback ports, printed on one
/// stdout line (`ports P1 P2 ...`); exits when stdin closes (the bench ended or died).
pub(crate) fn run_server() -> io::Result<()> {
    raise_fd_limit();
    exit_with_parent();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let open = Arc::new(AtomicUsize::new(0));
        let mut listeners = Vec::new();
        for _ in 0..SERVER_PORTS {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            listeners.push(socket.listen(BACKLOG)?);
        }
        let mut line = String::from("ports");
        for l in &listeners {
            line.push_str(&format!(" {}", l.local_addr()?.port()));
        }
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        drop(stdout);
        let mut accepts = JoinSet::new();
        for listener in listeners {
            let open = open.clone();
            accepts.spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            if open.load(Ordering::Relaxed) >= SERVER_MAX_OPEN {
                                continue; // dropped: closed at once
                            }
                            open.fetch_add(1, Ordering::Relaxed);
                            let open = open.clone();
                            tokio::spawn(async move {
                                connection_testkit::handlers::echo(stream, peer).await;
                                open.fetch_sub(1, Ordering::Relaxed);
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        }
        while accepts.join_next().await.is_some() {}
        Ok(())
    })
}

// ---- the peer of connect_all: a plain tokio loop ----

/// Connects `n` connections of `transport`, at most `limit` connects in flight (a
/// semaphore), each in a task of its own; returns the time until all are connected, and
/// the open connections. The connects are the transport's own (for `TcpEchoTransport`: a
/// `TcpStream::connect`, `TCP_NODELAY` and its read buffer), so the difference to
/// `connect_all` is what supervision and the manager cost. Fails on the first connect
/// that fails.
pub(crate) async fn tokio_connect_all<T: Transport + Clone>(
    transport: &T,
    n: usize,
    limit: usize,
) -> Result<(Duration, Vec<T::Connection>), Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let transport = transport.clone();
        tasks.spawn(async move {
            let conn = timeout(CONNECT_TIMEOUT, transport.connect())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            drop(permit);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(conn)
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        conns.push(done??);
    }
    Ok((started.elapsed(), conns))
}
