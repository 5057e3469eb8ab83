//! `cargo xtask bench pool`: get + drop throughput and acquire latency, ours against
//! deadpool (fair, like our strict mode) and bb8 (barging, like our throughput mode).
//!
//! The fair method: a pool of 8 pre-warmed connections of a zero-cost type, every worker
//! released by one barrier, each worker looping get + drop, workers:pool 1:1, 4:1 and
//! 16:1, ours and the peer interleaved round by round on the same runtime shape. Every
//! worker yields to the scheduler every few operations (all pools alike), as a task
//! doing real work would. JSON lines on stdout, a table on stderr.
//!
//! The spike (after HikariCP's "pool sizing under spike demand"): connects take 150 ms,
//! the pool allows 50 and keeps 5 idle, 50 tasks ask at once and each holds its
//! connection 10 ms. Reported: how many connections exist once every get was served
//! and returned and the connects still running then are done (ours and bb8 finish
//! those in the background), ours and each peer with the same settings (deadpool has
//! no `min_idle`, so 5 are opened first by hand). Fewer is not simply better, so no
//! ratio.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Transport,
};
use connection_pool::{Fairness, Pool, PoolConfig};

const POOL: usize = 8;
const RATIOS: [usize; 3] = [1, 4, 16];
const ROUNDS: usize = 3;
const RUN: Duration = Duration::from_millis(400);
/// One acquire in this many is timed, so the clock reads barely touch throughput.
const SAMPLE_EVERY: u64 = 8;
const YIELD_EVERY: u64 = 32;

// ---- the connection, for us and for the peers ----

/// Sleeps the given delay in every connect (none for the throughput runs, 150 ms in the
/// spike, like a remote database), then makes a zero-cost connection.
async fn connect_after(delay: Duration) -> ConnectionId {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    ConnectionId::next()
}

struct Zero(Endpoint, Duration);
struct ZeroConn(ConnectionId);

impl Transport for Zero {
    type Connection = ZeroConn;
    async fn connect(&self) -> Result<ZeroConn, Error> {
        Ok(ZeroConn(connect_after(self.1).await))
    }
    fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Connection for ZeroConn {
    type Io = ();

    fn io(&self) {}

    fn id(&self) -> ConnectionId {
        self.0
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

struct DeadpoolManager(Duration);

impl deadpool::managed::Manager for DeadpoolManager {
    type Type = ConnectionId;
    type Error = std::convert::Infallible;
    async fn create(&self) -> Result<ConnectionId, Self::Error> {
        Ok(connect_after(self.0).await)
    }
    async fn recycle(
        &self,
        _: &mut ConnectionId,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Self::Error> {
        Ok(())
    }
}

struct Bb8Manager(Duration);

impl bb8::ManageConnection for Bb8Manager {
    type Connection = ConnectionId;
    type Error = std::convert::Infallible;
    async fn connect(&self) -> Result<ConnectionId, Self::Error> {
        Ok(connect_after(self.0).await)
    }
    async fn is_valid(&self, _: &mut ConnectionId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ConnectionId) -> bool {
        false
    }
}

// ---- the spike ----

const SPIKE_TASKS: usize = 50;
const SPIKE_MAX: usize = 50;
const SPIKE_MIN_IDLE: usize = 5;
const SPIKE_CONNECT: Duration = Duration::from_millis(150);
const SPIKE_HOLD: Duration = Duration::from_millis(10);

/// Runs `SPIKE_TASKS` tasks that each get, hold and return a connection, all at once.
async fn spike_with<F, Fut>(get_hold: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..SPIKE_TASKS).map(|_| tokio::spawn(get_hold())).collect();
    for t in tasks {
        t.await.expect("spike task");
    }
}

/// Connections open after the spike: ours (settled, and right at the end), deadpool's,
/// bb8's.
async fn spike() -> ((usize, usize), usize, usize) {
    let endpoint = Endpoint::host_port("127.0.0.1", 9).expect("endpoint");
    let cfg = PoolConfig::builder()
        .max_size(SPIKE_MAX)
        .min_idle(SPIKE_MIN_IDLE)
        .validate_timeout(None)
        .build()
        .expect("config");
    let us = Pool::new(Zero(endpoint, SPIKE_CONNECT), cfg).expect("pool");
    while us.status().idle < SPIKE_MIN_IDLE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spike_with(|| {
        let p = us.clone();
        async move {
            let c = p.get().await.expect("ours get");
            tokio::time::sleep(SPIKE_HOLD).await;
            drop(c);
        }
    })
    .await;
    // Like bb8, ours finishes connects that lost to a handoff in the background (and
    // closes those beyond `min_idle`): count once they are done, as for bb8, and
    // report the figure right after the spike too.
    let ours_at_end = us.status().size;
    tokio::time::sleep(SPIKE_CONNECT * 2).await;
    let ours = us.status().size;
    us.close().await;

    let dp: deadpool::managed::Pool<DeadpoolManager> =
        deadpool::managed::Pool::builder(DeadpoolManager(SPIKE_CONNECT))
            .max_size(SPIKE_MAX)
            .build()
            .expect("deadpool");
    let warm: Vec<_> = futures::future::join_all((0..SPIKE_MIN_IDLE).map(|_| dp.get())).await;
    drop(warm);
    spike_with(|| {
        let p = dp.clone();
        async move {
            let c = p.get().await.expect("deadpool get");
            tokio::time::sleep(SPIKE_HOLD).await;
            drop(c);
        }
    })
    .await;
    let deadpool = dp.status().size;

    let b = bb8::Pool::builder()
        .max_size(SPIKE_MAX as u32)
        .min_idle(Some(SPIKE_MIN_IDLE as u32))
        .test_on_check_out(false)
        .build(Bb8Manager(SPIKE_CONNECT))
        .await
        .expect("bb8");
    while (b.state().idle_connections as usize) < SPIKE_MIN_IDLE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spike_with(|| {
        let p = b.clone();
        async move {
            let c = p.get_owned().await.expect("bb8 get");
            tokio::time::sleep(SPIKE_HOLD).await;
            drop(c);
        }
    })
    .await;
    // bb8 finishes connects it started after their waiters were served; count them.
    tokio::time::sleep(SPIKE_CONNECT * 2).await;
    let bb8 = b.state().connections as usize;
    ((ours, ours_at_end), deadpool, bb8)
}

fn report_spike() {
    let ((ours, ours_at_end), deadpool, bb8) = runtime(false).block_on(spike());
    for (peer, value) in [("deadpool", deadpool), ("bb8", bb8)] {
        println!(
            "{{\"bench\":\"pool_spike_connections\",\"unit\":\"connections\",\"ours\":{ours},\"peer\":\"{peer}\",\"peer_value\":{value}}}"
        );
    }
    eprintln!(
        "pool_spike_connections: ours {ours} ({ours_at_end} right after the spike), deadpool {deadpool}, bb8 {bb8} (of {SPIKE_MAX}, {SPIKE_TASKS} asking)"
    );
}

// ---- one interface over the three pools ----

#[derive(Clone)]
enum Any {
    Ours(Pool<Zero>),
    Deadpool(deadpool::managed::Pool<DeadpoolManager>),
    Bb8(bb8::Pool<Bb8Manager>),
}

impl Any {
    async fn get_drop(&self) {
        match self {
            Self::Ours(p) => drop(black_box(p.get().await.expect("pool get"))),
            Self::Deadpool(p) => drop(black_box(p.get().await.expect("deadpool get"))),
            Self::Bb8(p) => drop(black_box(p.get().await.expect("bb8 get"))),
        }
    }

    async fn hold(&self) -> Held {
        match self {
            Self::Ours(p) => Held::Ours(p.get().await.expect("pool get")),
            Self::Deadpool(p) => Held::Deadpool(p.get().await.expect("deadpool get")),
            Self::Bb8(p) => Held::Bb8(p.get_owned().await.expect("bb8 get")),
        }
    }

    async fn warm(&self) {
        // Hold all eight at once so each pool really opens eight.
        let mut held = Vec::new();
        for _ in 0..POOL {
            match self {
                Self::Ours(p) => held.push(Held::Ours(p.get().await.expect("warm"))),
                Self::Deadpool(p) => held.push(Held::Deadpool(p.get().await.expect("warm"))),
                Self::Bb8(p) => held.push(Held::Bb8(p.get_owned().await.expect("warm"))),
            }
        }
        drop(held);
        tokio::task::yield_now().await;
    }
}

enum Held {
    Ours(#[allow(dead_code)] connection_pool::PoolGuard<Zero>),
    Deadpool(#[allow(dead_code)] deadpool::managed::Object<DeadpoolManager>),
    Bb8(#[allow(dead_code)] bb8::PooledConnection<'static, Bb8Manager>),
}

async fn ours(fairness: Fairness) -> Any {
    let cfg = PoolConfig::builder()
        .max_size(POOL)
        .min_idle(if fairness == Fairness::Throughput {
            POOL
        } else {
            0
        })
        .wait_timeout(None)
        .validate_timeout(None)
        .idle_timeout(None)
        .max_lifetime(None)
        .fairness(fairness)
        .build()
        .expect("valid config");
    let endpoint = Endpoint::host_port("127.0.0.1", 9).expect("valid endpoint");
    let pool = Any::Ours(Pool::new(Zero(endpoint, Duration::ZERO), cfg).expect("pool"));
    pool.warm().await;
    pool
}

async fn deadpool() -> Any {
    let pool = deadpool::managed::Pool::builder(DeadpoolManager(Duration::ZERO))
        .max_size(POOL)
        .build()
        .expect("deadpool");
    let pool = Any::Deadpool(pool);
    pool.warm().await;
    pool
}

async fn bb8() -> Any {
    let pool = bb8::Pool::builder()
        .max_size(POOL as u32)
        .min_idle(Some(POOL as u32))
        // Our bench pool skips checkout validation too.
        .test_on_check_out(false)
        .build(Bb8Manager(Duration::ZERO))
        .await
        .expect("bb8");
    let pool = Any::Bb8(pool);
    pool.warm().await;
    pool
}

/// Throughput (ops/s) and sampled acquire latencies (ns) of one timed run.
async fn run(pool: &Any, workers: usize) -> (f64, Vec<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(tokio::sync::Barrier::new(workers + 1));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (pool, stop, barrier) = (pool.clone(), Arc::clone(&stop), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(1 << 16);
            let mut ops = 0u64;
            barrier.wait().await;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..YIELD_EVERY {
                    if ops % SAMPLE_EVERY == 0 {
                        let t = Instant::now();
                        pool.get_drop().await;
                        samples.push(t.elapsed().as_nanos() as u64);
                    } else {
                        pool.get_drop().await;
                    }
                    ops += 1;
                }
                tokio::task::yield_now().await;
            }
            (ops, samples)
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut samples = Vec::new();
    for t in tasks {
        let (ops, s) = t.await.expect("worker");
        total += ops;
        samples.extend(s);
    }
    (total as f64 / started.elapsed().as_secs_f64(), samples)
}

/// Fairness: the largest number of later requests served before an earlier one, on a
/// current-thread runtime (so taking a ticket and asking the pool happen with no task
/// switch between them, and the figure measures the pool, not the scheduler).
async fn overtakes(pool: &Any, workers: usize) -> u64 {
    use std::sync::atomic::AtomicU64;
    const PER_WORKER: u64 = 200;
    let tickets = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (pool, tickets, served) = (pool.clone(), Arc::clone(&tickets), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::with_capacity(PER_WORKER as usize);
            for _ in 0..PER_WORKER {
                let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                let held = pool.hold().await;
                log.push((served.fetch_add(1, Ordering::Relaxed), ticket));
                // Hold across a yield, so others queue behind.
                tokio::task::yield_now().await;
                drop(held);
            }
            log
        }));
    }
    let mut log = Vec::new();
    for t in tasks {
        log.extend(t.await.expect("worker"));
    }
    log.sort_unstable();
    // Fenwick tree over tickets: how many served so far had a smaller ticket.
    let n = log.len();
    let mut tree = vec![0u64; n + 1];
    let mut worst = 0;
    for (done, &(_, ticket)) in log.iter().enumerate() {
        let mut i = ticket as usize;
        let mut earlier = 0;
        while i > 0 {
            earlier += tree[i];
            i &= i - 1;
        }
        worst = worst.max(done as u64 - earlier);
        let mut i = ticket as usize + 1;
        while i <= n {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    worst
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Figure {
    ops: f64,
    p50: u64,
    p99: u64,
}

/// Best throughput over the rounds; latency quantiles over all samples.
fn summarize(runs: Vec<(f64, Vec<u64>)>) -> Figure {
    let ops = runs.iter().map(|r| r.0).fold(0.0, f64::max);
    let mut all: Vec<u64> = runs.into_iter().flat_map(|r| r.1).collect();
    all.sort_unstable();
    Figure {
        ops,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
    }
}

fn runtime(multi: bool) -> tokio::runtime::Runtime {
    let mut b = if multi {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().expect("runtime")
}

fn main() {
    report_spike();
    eprintln!(
        "{:<44} {:>12} {:>9} {:>9}   {:>12} {:>9} {:>9}  {:>6}",
        "bench (peer)", "ours ops/s", "p50 ns", "p99 ns", "peer ops/s", "p50 ns", "p99 ns", "ratio"
    );
    for multi in [true, false] {
        let rt = runtime(multi);
        for ratio in RATIOS {
            let workers = POOL * ratio;
            for (mode, peer_name) in [("", "deadpool"), ("_throughput", "bb8")] {
                let (mut ours_runs, mut peer_runs) = (Vec::new(), Vec::new());
                rt.block_on(async {
                    let fairness = if peer_name == "bb8" {
                        Fairness::Throughput
                    } else {
                        Fairness::Strict
                    };
                    let us = ours(fairness).await;
                    let peer = if peer_name == "bb8" {
                        bb8().await
                    } else {
                        deadpool().await
                    };
                    // Interleaved, so drift in the machine hits both alike.
                    for _ in 0..ROUNDS {
                        ours_runs.push(run(&us, workers).await);
                        peer_runs.push(run(&peer, workers).await);
                    }
                });
                let (o, p) = (summarize(ours_runs), summarize(peer_runs));
                if !multi && ratio == 16 {
                    let (ours_worst, peer_worst) = rt.block_on(async {
                        let fairness = if peer_name == "bb8" {
                            Fairness::Throughput
                        } else {
                            Fairness::Strict
                        };
                        let us = ours(fairness).await;
                        let peer = if peer_name == "bb8" {
                            bb8().await
                        } else {
                            deadpool().await
                        };
                        (
                            overtakes(&us, workers).await,
                            overtakes(&peer, workers).await,
                        )
                    });
                    println!(
                        "{{\"bench\":\"pool_fairness{mode}_16to1\",\"unit\":\"overtakes\",\"ours\":{ours_worst},\"peer\":\"{peer_name}\",\"peer_value\":{peer_worst}}}"
                    );
                    eprintln!(
                        "pool_fairness{mode}_16to1: largest overtake count ours {ours_worst}, {peer_name} {peer_worst}"
                    );
                }
                let suffix = if multi { "" } else { "_current_thread" };
                let name = format!("pool_get_drop{mode}_{ratio}to1{suffix}");
                let ratio_value = o.ops / p.ops;
                println!(
                    "{{\"bench\":\"{name}\",\"unit\":\"ops/s\",\"ours\":{:.0},\"peer\":\"{peer_name}\",\"peer_value\":{:.0},\"ratio\":{ratio_value:.3}}}",
                    o.ops, p.ops
                );
                eprintln!(
                    "{:<44} {:>12.0} {:>9} {:>9}   {:>12.0} {:>9} {:>9}  {:>6.2}",
                    format!("{name} ({peer_name})"),
                    o.ops,
                    o.p50,
                    o.p99,
                    p.ops,
                    p.p50,
                    p.p99,
                    ratio_value
                );
            }
        }
    }
}
