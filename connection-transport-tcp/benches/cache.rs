//! `cargo xtask bench tcp` (this target): `cache_get_hit`, ns per
//! [`ConnectionCache::get`] that hits, the handle cloned and dropped as a caller would.
//!
//! - `cache_get_hit_1thread`: one thread cycling over 64 cached keys.
//! - `cache_get_hit_2threads`: two threads cycling over the same 64 keys from opposite
//!   ends (different keys at any moment, shards shared now and then).
//! - `cache_get_hit_2threads_same_key`: two threads on one key, the worst case: both
//!   take the same shard's read lock and bump the same entry's use count.
//!
//! The I/O handle is a plain number, so the figure is the cache's own: a real handle's
//! clone (an `Arc` or a channel sender: a reference count that every thread using the
//! connection writes) costs what it costs with or without a cache. There is no peer
//! (moka, the obvious one, is not in the lock file), so `peer` is `null`; beside each
//! figure, `global_mutex_ns` is the same lookup-and-clone through one
//! `parking_lot::Mutex<HashMap>` shared by all threads: what the sharded read path saves
//! under contention. Each figure is wall time per hit of the slowest thread, and beside
//! it (`*_cpu_ns`) that thread's CPU time per hit: on a shared machine a thread that is
//! descheduled inflates the wall figure, while a cache line bouncing between cores
//! inflates both. Rounds alternate the two; each figure is the median of the rounds.
//! JSON lines on stdout, a table on stderr.
#![allow(clippy::print_stdout)] // The JSON lines on stdout are this program's output.

use connection_testkit::bench::median;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Transport,
};
use connection_transport_tcp::ConnectionCache;
use futures::FutureExt;
use parking_lot::Mutex;

const KEYS: u64 = 64;
const ITERS: u64 = 4_000_000;
const ROUNDS: usize = 9;

/// A connection that costs nothing, so the figure is the cache's.
struct Zero(Endpoint);
struct ZeroConn(ConnectionId, u64);

impl Transport for Zero {
    type Connection = ZeroConn;
    async fn connect(&self) -> Result<ZeroConn, Error> {
        Ok(ZeroConn(ConnectionId::next(), 7))
    }
    fn endpoint(&self) -> &Endpoint {
        &self.0
    }
}

impl Connection for ZeroConn {
    type Io = u64;
    fn io(&self) -> u64 {
        self.1
    }
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

trait Lookup: Sync {
    fn hit(&self, key: u64) -> u64;
}

struct Ours(ConnectionCache<u64, ZeroConn>);

impl Lookup for Ours {
    #[inline]
    fn hit(&self, key: u64) -> u64 {
        // A hit completes at the first poll; `now_or_never` is that poll.
        match self.0.get(&key).now_or_never() {
            Some(Ok(io)) => io,
            other => panic!("not a hit: {other:?}"),
        }
    }
}

struct GlobalMutex(Mutex<HashMap<u64, u64>>);

impl Lookup for GlobalMutex {
    #[inline]
    fn hit(&self, key: u64) -> u64 {
        *self.0.lock().get(&key).expect("cached")
    }
}

/// This thread's CPU time so far, in ns (0 where /proc is missing).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wall and CPU ns per hit of the slowest thread: `threads` threads, each doing `ITERS`
/// hits; `same_key` puts them all on key 0, otherwise thread `t` walks the keys from its
/// own end.
fn run(lookup: &dyn Lookup, threads: usize, same_key: bool) -> (f64, f64) {
    let barrier = Barrier::new(threads);
    let elapsed: Vec<(Duration, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let cpu = thread_cpu_ns();
                    let started = Instant::now();
                    for i in 0..ITERS {
                        let key = match (same_key, t) {
                            (true, _) => 0,
                            (false, 0) => i % KEYS,
                            (false, _) => KEYS - 1 - i % KEYS,
                        };
                        black_box(lookup.hit(black_box(key)));
                    }
                    (started.elapsed(), thread_cpu_ns().saturating_sub(cpu))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let wall = elapsed.iter().map(|e| e.0).max().unwrap_or_default();
    let cpu = elapsed.iter().map(|e| e.1).max().unwrap_or_default();
    (
        wall.as_nanos() as f64 / ITERS as f64,
        cpu as f64 / ITERS as f64,
    )
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = Endpoint::host_port("127.0.0.1", 9).expect("endpoint");
    let cache = ConnectionCache::builder(move |_: &u64| Ok(Zero(endpoint.clone())))
        .capacity(1024)
        .no_ttl()
        .no_idle_timeout()
        .build()
        .expect("settings");
    let mut plain = HashMap::new();
    rt.block_on(async {
        for key in 0..KEYS {
            plain.insert(key, cache.get(&key).await.expect("connect"));
        }
    });
    let ours = Ours(cache);
    let peer = GlobalMutex(Mutex::new(plain));

    eprintln!(
        "{:<34} {:>8} {:>8}   {:>8} {:>8}   (ns per hit, slowest thread, median of {ROUNDS} rounds)",
        "bench", "ours", "cpu", "mutex", "cpu"
    );
    // `cargo bench --bench cache -- <name>` runs only the figures whose name contains it.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, threads, same_key) in [
        ("cache_get_hit_1thread", 1, false),
        ("cache_get_hit_2threads", 2, false),
        ("cache_get_hit_2threads_same_key", 2, true),
    ] {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let (mut o, mut p) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Alternate which goes first, so drift in the machine hits both alike.
            if round % 2 == 0 {
                o.push(run(&ours, threads, same_key));
                p.push(run(&peer, threads, same_key));
            } else {
                p.push(run(&peer, threads, same_key));
                o.push(run(&ours, threads, same_key));
            }
        }
        let wall = |v: &[(f64, f64)]| median(v.iter().map(|r| r.0).collect());
        let cpu = |v: &[(f64, f64)]| median(v.iter().map(|r| r.1).collect());
        let (o_wall, o_cpu, p_wall, p_cpu) = (wall(&o), cpu(&o), wall(&p), cpu(&p));
        println!(
            "{{\"bench\":\"{name}\",\"unit\":\"ns\",\"ours\":{o_wall:.1},\"peer\":null,\"peer_value\":null,\"ratio\":null,\"threads\":{threads},\"ours_cpu_ns\":{o_cpu:.1},\"global_mutex_ns\":{p_wall:.1},\"global_mutex_cpu_ns\":{p_cpu:.1}}}"
        );
        eprintln!("{name:<34} {o_wall:>8.1} {o_cpu:>8.1}   {p_wall:>8.1} {p_cpu:>8.1}");
    }
    // The cache's sweep task lives on this runtime; drop the cache inside it.
    rt.block_on(async move { drop(ours) });
}
