//! `cargo xtask bench manager` (this binary): exporting the metrics of a manager of
//! 100,000 connections with 1 KiB names.
//!
//! The connections are started on a transport that connects at once and carries no
//! traffic of its own (this bench is about the export, not sockets); each records a
//! little traffic and one request when bound, and reports its buffers, so every family
//! has a sample. Then, alternating, `ROUNDS` times each:
//!
//! - `manager_prometheus_100k` / `_peak_heap`: `ConnectionManager::write_prometheus` into
//!   `io::sink()`: median milliseconds, and the most heap it held at once on top of
//!   what was allocated before the call (bytes; the largest over the rounds);
//! - `manager_json_100k` / `_peak_heap`: the same for `write_json`;
//! - for comparison (stderr only, one round after the others: it takes seconds and
//!   gigabytes): what the export cost when it built the text first,
//!   `manager.metrics().to_prometheus()` (the report's snapshots, then one `String`).
//!
//! Heap is counted by `peak_alloc`, this binary's global allocator: every byte requested
//! from the system allocator, exactly, whatever the allocator keeps resident. Its
//! `realloc` always moves (allocates, copies, frees), which makes a growing buffer a
//! little slower here and counts both copies at the peak; the streamed exports barely
//! reallocate.
//!
//! JSON lines on stdout, progress on stderr. Bounded: the whole run is under a minute on
//! two cores, and a watchdog ends it at `WHOLE`.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

#[allow(dead_code)] // shared with the manager bench; not every helper is used here
mod support;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Traffic,
    Transport,
};
use connection_health::{ConnectionManager, ConnectionOptions};
use peak_alloc::PeakAlloc;
use support::{median, report};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Connections exported.
const N: usize = 100_000;
/// Bytes in each connection's name.
const NAME_LEN: usize = 1024;
/// Measured rounds of each export.
const ROUNDS: usize = 5;
/// Bound on the whole bench.
const WHOLE: Duration = Duration::from_secs(240);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transport whose connections exist at once and never end: the manager's own cost,
/// without sockets.
struct Ready {
    endpoint: Endpoint,
}

impl Transport for Ready {
    type Connection = ReadyConnection;

    async fn connect(&self) -> Result<ReadyConnection, Error> {
        Ok(ReadyConnection {
            id: ConnectionId::next(),
        })
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

struct ReadyConnection {
    id: ConnectionId,
}

/// What every connection reports as its buffers (the same for all: the export reads it,
/// it does not matter what it says).
static BUFFERED: AtomicU64 = AtomicU64::new(512);

impl Connection for ReadyConnection {
    type Io = ();

    fn io(&self) {}

    fn bind_traffic(&mut self, traffic: Traffic) {
        traffic.sent(3, 300);
        traffic.received(2, 200);
        traffic.request(Duration::from_micros(1_500));
        traffic.buffers(|| BUFFERED.load(Ordering::Relaxed));
    }

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        ConnectionState::Connected
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        Ok(Duration::ZERO)
    }

    async fn closed(&mut self) -> DisconnectReason {
        std::future::pending().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Bytes written, without keeping them: `io::sink` that counts.
#[derive(Default)]
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `export`, returning what it returned, milliseconds, and the peak heap on top of
/// what was allocated before, in bytes.
fn measure<T>(export: impl FnOnce() -> T) -> (T, f64, f64) {
    let before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let started = Instant::now();
    let result = export();
    let took = started.elapsed();
    let peak = HEAP.peak_usage().saturating_sub(before);
    (result, took.as_secs_f64() * 1e3, peak as f64)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        let body = tokio::spawn(run());
        tokio::time::timeout(WHOLE, body).await
    });
    let failed = match outcome {
        Ok(Ok(Ok(()))) => false,
        Ok(Ok(Err(e))) => {
            eprintln!("export bench: {e}");
            true
        }
        Ok(Err(e)) => {
            eprintln!("export bench: the bench task failed: {e}");
            true
        }
        Err(_) => {
            eprintln!("export bench: gave up after {WHOLE:?}");
            true
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    if failed {
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let started = Instant::now();
    let manager = ConnectionManager::builder()
        .max_connections(N)
        .max_name_len(NAME_LEN)
        .connect_deadline(Duration::from_secs(120))
        .build()?;
    let endpoint = Endpoint::host_port("127.0.0.1", 9)?;
    let transport = Arc::new(Ready { endpoint });
    let options = ConnectionOptions::default();
    for i in 0..N {
        let mut name = format!("connection-{i:06}-");
        name.extend(std::iter::repeat_n('x', NAME_LEN - name.len()));
        manager.add(name, transport.clone(), options.clone())?;
    }
    let added = started.elapsed();
    let report_ = manager.connect_all().await;
    if report_.connected.len() != N {
        return Err(format!("connected {} of {N}", report_.connected.len()).into());
    }
    eprintln!(
        "{N} connections with {NAME_LEN}-byte names: added in {added:.2?}, connected in {:.2?}; heap {:.0} MiB",
        report_.elapsed,
        HEAP.current_usage_as_mb()
    );
    drop(report_);

    // The sizes, once.
    let mut text = Counting::default();
    manager.write_prometheus(&mut text)?;
    let mut json = Counting::default();
    manager.write_json(&mut json)?;
    eprintln!(
        "prometheus text {:.0} MiB, json {:.0} MiB",
        text.0 as f64 / (1 << 20) as f64,
        json.0 as f64 / (1 << 20) as f64
    );

    let (mut prom_ms, mut prom_heap) = (Vec::new(), Vec::new());
    let (mut json_ms, mut json_heap) = (Vec::new(), Vec::new());
    // Blocking work on a runtime worker, as a metrics endpoint's handler would do it.
    for round in 1..=ROUNDS {
        let (result, ms, heap) = measure(|| manager.write_prometheus(&mut io::sink()));
        result?;
        prom_ms.push(ms);
        prom_heap.push(heap);
        let (result, j_ms, j_heap) = measure(|| manager.write_json(&mut io::sink()));
        result?;
        json_ms.push(j_ms);
        json_heap.push(j_heap);
        eprintln!(
            "round {round}: write_prometheus {ms:.0} ms, +{:.2} MiB peak; write_json {j_ms:.0} ms, +{:.2} MiB",
            heap / (1 << 20) as f64,
            j_heap / (1 << 20) as f64,
        );
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "median of {ROUNDS}: write_prometheus {:.0} ms (+{:.2} MiB peak), write_json {:.0} ms (+{:.2} MiB)",
        median(&prom_ms),
        max(&prom_heap) / (1 << 20) as f64,
        median(&json_ms),
        max(&json_heap) / (1 << 20) as f64,
    );
    let ((), s_ms, s_heap) = measure(|| {
        let text = manager.metrics().to_prometheus();
        std::hint::black_box(&text);
    });
    eprintln!(
        "for comparison, building the text first (manager.metrics().to_prometheus()): {s_ms:.0} ms, +{:.0} MiB peak",
        s_heap / (1 << 20) as f64
    );
    report("manager_prometheus_100k", "ms", median(&prom_ms));
    report(
        "manager_prometheus_100k_peak_heap",
        "bytes",
        max(&prom_heap),
    );
    report("manager_json_100k", "ms", median(&json_ms));
    report("manager_json_100k_peak_heap", "bytes", max(&json_heap));

    let shutdown = manager.shutdown(Duration::from_secs(10)).await;
    eprintln!(
        "shutdown: {} graceful, {} aborted in {:.2?}; total {:.1?}",
        shutdown.graceful.len(),
        shutdown.aborted.len(),
        shutdown.elapsed,
        started.elapsed()
    );
    Ok(())
}
