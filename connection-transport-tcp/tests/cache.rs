//! ConnectionCache and connect_parallel against real loopback echo servers, timing on
//! paused tokio time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{Endpoint, Error, Transport};
use connection_retry::{BackoffStrategy, RetryPolicy};
use connection_testkit::{EchoClient, TcpEchoConnection, TcpEchoServer, TcpEchoTransport};
use connection_transport_tcp::cache::MAX_CAPACITY;
use connection_transport_tcp::{
    CacheEvent, ConnectionCache, EvictReason, KeyStatus, connect_parallel,
};
use tokio::sync::broadcast;
use tokio::time::{sleep, timeout};

/// Counts connects (started, in flight, most in flight at once) around the testkit's
/// echo transport, and makes each connect take `delay` first.
#[derive(Clone, Default)]
struct Gauge {
    started: Arc<AtomicU64>,
    in_flight: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
}

struct Gauged {
    inner: TcpEchoTransport,
    gauge: Gauge,
    delay: Duration,
}

impl Gauge {
    fn transport(&self, addr: SocketAddr, delay: Duration) -> Result<Gauged, Error> {
        Ok(Gauged {
            inner: TcpEchoTransport::new(addr)?,
            gauge: self.clone(),
            delay,
        })
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}

impl Transport for Gauged {
    type Connection = TcpEchoConnection;

    async fn connect(&self) -> Result<TcpEchoConnection, Error> {
        let g = &self.gauge;
        g.started.fetch_add(1, Ordering::SeqCst);
        let now = g.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        g.peak.fetch_max(now, Ordering::SeqCst);
        sleep(self.delay).await;
        let result = self.inner.connect().await;
        g.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

type Cache = ConnectionCache<SocketAddr, TcpEchoConnection>;

fn cache_with(
    gauge: &Gauge,
    delay: Duration,
    configure: impl FnOnce(
        connection_transport_tcp::CacheBuilder<SocketAddr, TcpEchoConnection>,
    ) -> connection_transport_tcp::CacheBuilder<SocketAddr, TcpEchoConnection>,
) -> Cache {
    let gauge = gauge.clone();
    configure(ConnectionCache::builder(move |addr: &SocketAddr| {
        gauge.transport(*addr, delay)
    }))
    .build()
    .expect("valid settings")
}

/// An address nothing listens on: bound, then released.
async fn refusing_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("bound")
}

async fn wait_closed(client: &EchoClient) {
    timeout(Duration::from_secs(5), async {
        while !client.is_closed() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the connection was closed");
}

/// The next eviction event, skipping others.
async fn next_eviction(
    events: &mut broadcast::Receiver<CacheEvent<SocketAddr>>,
) -> (SocketAddr, EvictReason) {
    timeout(Duration::from_secs(30), async {
        loop {
            if let CacheEvent::Evicted { key, reason, .. } = events.recv().await.expect("events") {
                return (key, reason);
            }
        }
    })
    .await
    .expect("an eviction")
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_gets_make_one_connect() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::from_millis(50), |b| b);

    let addr = server.addr();
    let gets = (0..100).map(|_| cache.get(&addr));
    let clients = futures::future::join_all(gets).await;
    for client in &clients {
        client.as_ref().unwrap().echo(b"x").await.unwrap();
    }
    assert_eq!(gauge.started(), 1);
    assert_eq!(server.accepted(), 1);
    let m = cache.metrics();
    assert_eq!(
        (m.connects, m.misses, m.hits, m.connections),
        (1, 100, 0, 1)
    );

    // Later gets are hits on the same connection.
    cache.get(&server.addr()).await.unwrap();
    assert_eq!(cache.metrics().hits, 1);
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_first_caller_does_not_strand_the_others() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::from_millis(100), |b| b);

    let first = {
        let cache = cache.clone();
        let addr = server.addr();
        tokio::spawn(async move { cache.get(&addr).await })
    };
    sleep(Duration::from_millis(10)).await;
    assert_eq!(cache.status(&server.addr()), Some(KeyStatus::Connecting));
    let addr = server.addr();
    let second = cache.get(&addr);
    first.abort();
    let client = timeout(Duration::from_secs(1), second)
        .await
        .unwrap()
        .unwrap();
    client.echo(b"still here").await.unwrap();
    assert_eq!(gauge.started(), 1);
}

#[tokio::test(start_paused = true)]
async fn least_recently_used_is_evicted_and_closed() {
    let servers = [
        TcpEchoServer::start().await.unwrap(),
        TcpEchoServer::start().await.unwrap(),
        TcpEchoServer::start().await.unwrap(),
    ];
    let [a, b, c] = [servers[0].addr(), servers[1].addr(), servers[2].addr()];
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b.capacity(2));
    let mut events = cache.subscribe();

    cache.get(&a).await.unwrap();
    let b_client = cache.get(&b).await.unwrap();
    cache.get(&a).await.unwrap(); // a is now more recent than b
    cache.get(&c).await.unwrap();

    assert_eq!(next_eviction(&mut events).await, (b, EvictReason::Capacity));
    assert!(cache.status(&a).is_some());
    assert!(cache.status(&b).is_none());
    assert!(cache.status(&c).is_some());
    assert_eq!(cache.len(), 2);
    wait_closed(&b_client).await;
    assert_eq!(cache.metrics().evictions.capacity, 1);
}

#[tokio::test(start_paused = true)]
async fn ttl_expires_without_a_get() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| {
        b.ttl(Duration::from_secs(10)).no_idle_timeout()
    });
    let mut events = cache.subscribe();
    let client = cache.get(&server.addr()).await.unwrap();

    sleep(Duration::from_millis(9_500)).await;
    // Used all along: TTL counts from insertion regardless.
    cache.get(&server.addr()).await.unwrap();
    assert!(cache.status(&server.addr()).is_some());

    sleep(Duration::from_millis(1_000)).await; // 10.5 s
    assert!(cache.status(&server.addr()).is_none());
    assert_eq!(
        next_eviction(&mut events).await,
        (server.addr(), EvictReason::Ttl)
    );
    wait_closed(&client).await;
    assert_eq!(cache.metrics().evictions.ttl, 1);

    cache.get(&server.addr()).await.unwrap();
    assert_eq!(server.accepted(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_last_get() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| {
        b.idle_timeout(Duration::from_secs(5)).no_ttl()
    });
    let mut events = cache.subscribe();
    cache.get(&server.addr()).await.unwrap();

    sleep(Duration::from_millis(3_500)).await;
    cache.get(&server.addr()).await.unwrap(); // last use at 3 s on the coarse clock
    sleep(Duration::from_millis(4_000)).await; // 7.5 s
    match cache.status(&server.addr()) {
        Some(KeyStatus::Connected { idle, .. }) => {
            assert!(idle >= Duration::from_secs(4), "{idle:?}");
        }
        other => panic!("{other:?}"),
    }
    sleep(Duration::from_millis(2_000)).await; // 9.5 s
    assert!(cache.status(&server.addr()).is_none());
    assert_eq!(
        next_eviction(&mut events).await,
        (server.addr(), EvictReason::Idle)
    );
    assert_eq!(cache.metrics().evictions.idle, 1);
}

#[tokio::test(start_paused = true)]
async fn a_connect_error_is_not_cached() {
    let mut server = TcpEchoServer::start().await.unwrap();
    server.stop().await;
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let mut events = cache.subscribe();

    let addr = server.addr();
    let (one, two) = tokio::join!(cache.get(&addr), cache.get(&addr));
    assert!(matches!(one, Err(Error::Connect { .. })), "{one:?}");
    assert!(matches!(two, Err(Error::Connect { .. })), "{two:?}");
    assert_eq!(gauge.started(), 1, "both waited for one attempt");
    assert!(matches!(
        events.recv().await.unwrap(),
        CacheEvent::ConnectFailed { .. }
    ));
    assert!(cache.status(&server.addr()).is_none());

    server.restart().await.unwrap();
    let client = cache.get(&server.addr()).await.unwrap();
    client.echo(b"up").await.unwrap();
    assert_eq!(gauge.started(), 2);
    let m = cache.metrics();
    assert_eq!((m.connects, m.connect_failures, m.connections), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_dead_connection_is_replaced() {
    let mut server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let mut events = cache.subscribe();
    cache.get(&server.addr()).await.unwrap();
    let Some(KeyStatus::Connected { id: first, .. }) = cache.status(&server.addr()) else {
        panic!("cached");
    };

    server.stop().await; // closes the open connection
    assert_eq!(
        next_eviction(&mut events).await,
        (server.addr(), EvictReason::Closed)
    );
    assert!(cache.status(&server.addr()).is_none());

    server.restart().await.unwrap();
    let client = cache.get(&server.addr()).await.unwrap();
    client.echo(b"again").await.unwrap();
    let Some(KeyStatus::Connected { id: second, .. }) = cache.status(&server.addr()) else {
        panic!("cached");
    };
    assert_ne!(first, second);
    assert_eq!(cache.metrics().evictions.closed, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_closes_its_connections() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let client = cache.get(&server.addr()).await.unwrap();
    drop(cache);
    wait_closed(&client).await;
}

#[tokio::test(start_paused = true)]
async fn remove_and_clear_close_connections() {
    let servers = [
        TcpEchoServer::start().await.unwrap(),
        TcpEchoServer::start().await.unwrap(),
    ];
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let one = cache.get(&servers[0].addr()).await.unwrap();
    let two = cache.get(&servers[1].addr()).await.unwrap();
    assert!(cache.remove(&servers[0].addr()));
    assert!(!cache.remove(&servers[0].addr()));
    wait_closed(&one).await;
    cache.clear();
    wait_closed(&two).await;
    assert!(cache.is_empty());
    assert_eq!(cache.metrics().evictions.removed, 2);
}

#[tokio::test(start_paused = true)]
async fn metrics_aggregate_traffic_and_serialize() {
    let server = TcpEchoServer::start().await.unwrap();
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let client = cache.get(&server.addr()).await.unwrap();
    for _ in 0..4 {
        client.echo(b"0123456789").await.unwrap();
    }
    let m = cache.metrics();
    assert!(m.messages_per_second > 0.0, "{m:?}");
    assert!(m.bytes_per_second > 0.0, "{m:?}");
    assert!(m.mean_latency.is_some(), "{m:?}");
    let json = serde_json::to_value(m).unwrap();
    assert_eq!(json["connections"], 1);
    assert_eq!(json["evictions"]["capacity"], 0);
    assert!(json["mean_latency_seconds"].is_f64(), "{json}");
    assert!(json["buffered_bytes"].is_u64(), "{json}");
}

#[tokio::test(start_paused = true)]
async fn connect_all_warms_the_cache() {
    let up = TcpEchoServer::start().await.unwrap();
    let down = refusing_addr().await;
    let gauge = Gauge::default();
    let cache = cache_with(&gauge, Duration::ZERO, |b| b);
    let outcomes = cache.connect_all([up.addr(), down], 2).await;
    assert_eq!(outcomes[0].0, up.addr());
    assert!(outcomes[0].1.is_ok());
    assert!(outcomes[1].1.is_err());
    assert_eq!(cache.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn connect_parallel_reports_each_outcome_within_the_limit() {
    let server = TcpEchoServer::start().await.unwrap();
    let refusing = refusing_addr().await;
    // Locations 2, 5 and 8 refuse.
    let locations: Vec<(usize, SocketAddr)> = (0..10)
        .map(|i| (i, if i % 3 == 2 { refusing } else { server.addr() }))
        .collect();
    let retry = RetryPolicy::builder()
        .backoff(
            BackoffStrategy::fixed(Duration::from_millis(10))
                .max_retries(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let gauge = Gauge::default();

    let outcomes = connect_parallel(locations.clone(), 4, &retry, |(_, addr)| {
        gauge.transport(*addr, Duration::from_millis(20))
    })
    .await;

    assert_eq!(outcomes.len(), 10);
    for (outcome, location) in outcomes.iter().zip(&locations) {
        assert_eq!(outcome.location, *location, "input order");
        if location.0 % 3 == 2 {
            assert!(matches!(outcome.result, Err(Error::Connect { .. })));
            assert_eq!(outcome.attempts, 3, "the first try and two retries");
        } else {
            assert!(outcome.is_ok());
            assert_eq!(outcome.attempts, 1);
        }
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 7);
    assert_eq!(server.accepted(), 7);
    assert_eq!(gauge.started(), 7 + 3 * 3);
    assert_eq!(
        gauge.peak.load(Ordering::SeqCst),
        4,
        "at most 4 at once, and 4 used"
    );
}

#[test]
fn config_errors_name_the_setting() {
    let build =
        |configure: fn(
            connection_transport_tcp::CacheBuilder<SocketAddr, TcpEchoConnection>,
        )
            -> connection_transport_tcp::CacheBuilder<SocketAddr, TcpEchoConnection>| {
            configure(ConnectionCache::builder(|addr: &SocketAddr| {
                Ok(TcpEchoTransport::new(*addr)?)
            }))
            .build()
            .map(drop)
            .unwrap_err()
            .field()
        };
    assert_eq!(build(|b| b.capacity(0)), "capacity");
    assert_eq!(build(|b| b.capacity(MAX_CAPACITY + 1)), "capacity");
    assert_eq!(build(|b| b.ttl(Duration::ZERO)), "ttl");
    assert_eq!(build(|b| b.idle_timeout(Duration::ZERO)), "idle_timeout");
    assert_eq!(
        build(|b| b.connect_timeout(Duration::ZERO)),
        "connect_timeout"
    );
    assert_eq!(build(|b| b.close_timeout(Duration::ZERO)), "close_timeout");
    assert_eq!(
        build(|b| b.sweep_interval(connection_core::MAX_DURATION + Duration::from_secs(1))),
        "sweep_interval"
    );
    assert_eq!(build(|b| b.event_capacity(0)), "event_capacity");

    // The defaults build, outside a runtime too.
    let cache: Cache =
        ConnectionCache::builder(|addr: &SocketAddr| Ok(TcpEchoTransport::new(*addr)?))
            .build()
            .unwrap();
    assert_eq!(cache.capacity(), 256);
}

#[tokio::test(start_paused = true)]
async fn caches_the_crates_own_tcp_transport() {
    use connection_transport_tcp::{Lines, TcpTransport};

    let mut server = TcpEchoServer::start().await.unwrap();
    let cache = ConnectionCache::builder(|addr: &SocketAddr| {
        let endpoint = Endpoint::host_port(&addr.ip().to_string(), addr.port())?;
        Ok(TcpTransport::new(endpoint, Lines::default())?)
    })
    .build()
    .unwrap();
    let mut events = cache.subscribe();

    let io = cache.get(&server.addr()).await.unwrap();
    io.send("one".to_string()).await.unwrap();
    assert_eq!(io.recv().await.unwrap().unwrap(), "one");
    let m = cache.metrics();
    assert!(m.messages_per_second > 0.0, "{m:?}");

    server.stop().await;
    assert_eq!(
        next_eviction(&mut events).await,
        (server.addr(), EvictReason::Closed)
    );
    server.restart().await.unwrap();
    let io = cache.get(&server.addr()).await.unwrap();
    io.send("two".to_string()).await.unwrap();
    assert_eq!(io.recv().await.unwrap().unwrap(), "two");
    assert_eq!(server.accepted(), 2);
}
