//! Every numeric setting of every builder, given edge values (zero, one, the longest
//! accepted, one past it, the type's maximum, NaN, infinities, negatives): each is
//! refused at build time naming the setting, or runs a short real scenario on 127.0.0.1
//! without a panic or a hang.

use std::future::Future;
use std::time::Duration;

use connection_kit::core::{ConfigError, ConnectionConfig, Error, MAX_DURATION, Supervisor};
use connection_kit::health::{ConnectionManager, ConnectionOptions, HealthCheck, ManagerConfig};
use connection_kit::http::{Hedge, HttpClient, HttpConfig, HttpConfigBuilder, Probe};
use connection_kit::pool::{Pool, PoolConfig};
use connection_kit::retry::{BackoffStrategy, Bulkhead, CircuitBreaker, Quota, RateLimiter};
use connection_kit::ws::{WsClient, WsConfig};
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::{SinkExt, StreamExt};

const DURATIONS: &[Duration] = &[
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_secs(1),
    MAX_DURATION,
    Duration::from_secs(MAX_DURATION.as_secs() + 1),
    Duration::MAX,
];
const COUNTS: &[usize] = &[0, 1, 2, 1 << 16, 1 << 20, 1 << 31, usize::MAX];
const RATIOS: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -1.0,
    0.0,
    0.5,
    1.0,
    2.0,
    1e300,
];

async fn bounded<F: Future<Output = ()>>(what: String, f: F) {
    if tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .is_err()
    {
        panic!("{what}: the scenario hung");
    }
}

/// A refusal must name the setting; an acceptance must run.
async fn judge<T, Fut>(
    what: String,
    field: &str,
    built: Result<T, ConfigError>,
    run: impl FnOnce(T) -> Fut,
) where
    Fut: Future<Output = ()>,
{
    match built {
        // `field` lists the settings a refusal may name, `|`-separated (a rate per a
        // period too short can blame either).
        Err(err) => assert!(
            field
                .split('|')
                .any(|f| err.field().contains(f) || f.contains(err.field())),
            "{what} refused naming `{}` instead of `{field}`: {err}",
            err.field()
        ),
        Ok(value) => bounded(what, run(value)).await,
    }
}

fn config_error(e: Error) -> ConfigError {
    match e {
        Error::Config(c) => c,
        other => panic!("not a configuration error: {other}"),
    }
}

#[tokio::test]
async fn supervisor_and_connection_config() {
    let server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    let run = |s: connection_kit::core::Supervised<connection_testkit::EchoClient>| async move {
        if let Ok(io) = s.ready(Duration::from_millis(300)).await {
            let _ = io.echo(b"ping").await;
        }
        s.shutdown(Duration::from_millis(300)).await;
    };
    for &d in DURATIONS {
        let sup = || Supervisor::new(TcpEchoTransport::new(addr).unwrap());
        let cases = [
            ("connect_timeout", sup().connect_timeout(d)),
            (
                "keepalive_interval",
                sup().keepalive(d, Duration::from_millis(100)),
            ),
            ("probe_timeout", sup().keepalive(Duration::from_secs(1), d)),
            ("close_timeout", sup().close_timeout(d)),
            ("stable_after", sup().stable_after(d)),
        ];
        for (field, s) in cases {
            let built = s.spawn().map_err(config_error);
            judge(format!("Supervisor {field}={d:?}"), field, built, run).await;
        }
        let cfg = || ConnectionConfig::builder();
        let cases = [
            ("connect_timeout", cfg().connect_timeout(d)),
            ("close_timeout", cfg().close_timeout(d)),
            (
                "reconnect_initial_delay",
                cfg().reconnect_delays(d, MAX_DURATION),
            ),
            (
                "reconnect_max_delay",
                cfg().reconnect_delays(Duration::from_millis(1), d),
            ),
        ];
        for (field, c) in cases {
            judge(
                format!("ConnectionConfig {field}={d:?}"),
                field,
                c.build(),
                |cfg| {
                    let s = Supervisor::new(TcpEchoTransport::new(addr).unwrap())
                        .config(&cfg)
                        .backoff(cfg.backoff())
                        .spawn()
                        .unwrap();
                    run(s)
                },
            )
            .await;
        }
    }
}

#[tokio::test]
async fn pool_config() {
    let server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    let run = |cfg: PoolConfig| async move {
        let pool = Pool::new(TcpEchoTransport::new(addr).unwrap(), cfg).unwrap();
        if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(1), pool.get()).await {
            let _ = conn.echo(b"ping").await;
        }
        pool.close().await;
    };
    let b = || PoolConfig::builder();
    for &n in COUNTS {
        for (field, c) in [("max_size", b().max_size(n)), ("min_idle", b().min_idle(n))] {
            judge(format!("PoolConfig {field}={n}"), field, c.build(), run).await;
        }
    }
    for &d in DURATIONS {
        let cases = [
            ("wait_timeout", b().wait_timeout(Some(d))),
            ("create_timeout", b().create_timeout(d)),
            ("validate_timeout", b().validate_timeout(Some(d))),
            ("recycle_window", b().recycle_window(d)),
            ("idle_timeout", b().idle_timeout(Some(d))),
            ("max_lifetime", b().max_lifetime(Some(d))),
            ("keepalive_interval", b().keepalive_interval(Some(d))),
            ("leak_threshold", b().leak_threshold(Some(d))),
        ];
        for (field, c) in cases {
            judge(format!("PoolConfig {field}={d:?}"), field, c.build(), run).await;
        }
    }
    for &x in RATIOS {
        let c = b().lifetime_jitter(x);
        judge(
            format!("PoolConfig lifetime_jitter={x}"),
            "lifetime_jitter",
            c.build(),
            run,
        )
        .await;
    }
}

#[tokio::test]
async fn manager_health_and_options() {
    let server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    let run = |(config, options): (ManagerConfig, ConnectionOptions)| async move {
        let manager = ConnectionManager::from_config(config).unwrap();
        let _link = manager
            .add("echo", TcpEchoTransport::new(addr).unwrap(), options)
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(1), manager.connect_all()).await;
        manager.shutdown(Duration::from_millis(300)).await;
    };
    let with_defaults =
        |c: Result<ManagerConfig, ConfigError>| c.map(|c| (c, ConnectionOptions::default()));
    let m = || ManagerConfig::builder();
    for &n in COUNTS {
        let cases = [
            ("max_connections", m().max_connections(n)),
            ("connect_concurrency", m().connect_concurrency(n)),
            ("event_capacity", m().event_capacity(n)),
        ];
        for (field, c) in cases {
            judge(
                format!("ManagerConfig {field}={n}"),
                field,
                with_defaults(c.build()),
                run,
            )
            .await;
        }
        let h = HealthCheck::builder().interval(Duration::from_millis(50));
        let cases = [
            ("failure_threshold", h.clone().failure_threshold(n as u32)),
            ("recovery_threshold", h.clone().recovery_threshold(n as u32)),
            ("max_concurrent_probes", h.clone().max_concurrent_probes(n)),
        ];
        for (field, c) in cases {
            let built = c.build().and_then(|h| m().health_check(h).build());
            judge(
                format!("HealthCheck {field}={n}"),
                field,
                with_defaults(built),
                run,
            )
            .await;
        }
    }
    for &d in DURATIONS {
        let c = m().connect_deadline(d).build();
        judge(
            format!("ManagerConfig connect_deadline={d:?}"),
            "connect_deadline",
            with_defaults(c),
            run,
        )
        .await;
        let h = || HealthCheck::builder();
        let cases = [
            ("interval", h().interval(d)),
            ("probe_timeout", h().probe_timeout(d)),
            ("degraded_latency", h().degraded_latency(d)),
        ];
        for (field, c) in cases {
            let built = c.build().and_then(|h| m().health_check(h).build());
            judge(
                format!("HealthCheck {field}={d:?}"),
                field,
                with_defaults(built),
                run,
            )
            .await;
        }
        let o = || ConnectionOptions::builder();
        let cases = [
            ("connect_timeout", o().connect_timeout(d)),
            (
                "keepalive_interval",
                o().keepalive(d, Duration::from_millis(100)),
            ),
            ("probe_timeout", o().keepalive(Duration::from_secs(1), d)),
            ("close_timeout", o().close_timeout(d)),
            ("reconnect_delay", o().reconnect_delay(d)),
        ];
        for (field, c) in cases {
            let built = c.build().map(|o| (ManagerConfig::default(), o));
            judge(
                format!("ConnectionOptions {field}={d:?}"),
                field,
                built,
                run,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn policies() {
    let endpoint = connection_kit::core::Endpoint::parse("tcp://127.0.0.1:1").unwrap();
    let endpoint = &endpoint;
    let run_breaker = |b: CircuitBreaker| async move {
        for i in 0..20u32 {
            let _ = b
                .run(|| async move {
                    if i % 2 == 0 {
                        Err(Error::other(endpoint, "no", true))
                    } else {
                        Ok(())
                    }
                })
                .await;
        }
    };
    let br = || CircuitBreaker::builder();
    for &d in DURATIONS {
        let cases = [
            ("wait", br().wait(d)),
            ("max_wait", br().max_wait(d)),
            ("window", br().time_window(d)),
            ("slow_call", br().slow_calls(d, 0.5)),
        ];
        for (field, c) in cases {
            judge(
                format!("CircuitBreaker {field}={d:?}"),
                field,
                c.build(),
                run_breaker,
            )
            .await;
        }
        let backoffs = [
            ("initial", BackoffStrategy::exponential(d, 2.0)),
            ("initial", BackoffStrategy::fixed(d)),
            (
                "max_delay",
                BackoffStrategy::exponential(Duration::from_millis(1), 2.0).max_delay(d),
            ),
        ];
        for (field, b) in backoffs {
            judge(
                format!("BackoffStrategy {field}={d:?}"),
                field,
                b.build(),
                |mut b| async move {
                    use connection_kit::core::Backoff;
                    for attempt in [1, 2, 64, u32::MAX] {
                        let _ = b.next_delay(attempt, None);
                    }
                },
            )
            .await;
        }
        let quota = Quota::per(d, 10, 10);
        judge(
            format!("Quota period={d:?}"),
            "period|rate",
            quota,
            |q| async move {
                let limiter = RateLimiter::builder(q).build();
                for _ in 0..3 {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
                }
            },
        )
        .await;
        let bulkhead = Bulkhead::builder(4).max_queue(2).max_wait(d).build();
        judge(
            format!("Bulkhead max_wait={d:?}"),
            "max_wait",
            bulkhead,
            |b| async move {
                let runs = (0..8).map(|_| b.run(|| async { Ok::<_, Error>(()) }));
                let _ = futures::future::join_all(runs).await;
            },
        )
        .await;
    }
    for &x in RATIOS {
        let cases = [
            ("failure_rate", br().failure_rate(x)),
            ("wait_multiplier", br().wait_multiplier(x)),
            ("jitter", br().jitter(x)),
            ("slow_call", br().slow_calls(Duration::from_secs(1), x)),
        ];
        for (field, c) in cases {
            judge(
                format!("CircuitBreaker {field}={x}"),
                field,
                c.build(),
                run_breaker,
            )
            .await;
        }
        let b = BackoffStrategy::exponential(Duration::from_millis(1), x).build();
        judge(
            format!("BackoffStrategy multiplier={x}"),
            "multiplier",
            b,
            |_| async {},
        )
        .await;
    }
    for &n in COUNTS {
        let b = Bulkhead::builder(n).build();
        judge(
            format!("Bulkhead max_concurrent={n}"),
            "max_concurrent",
            b,
            |b| async move {
                let _ = b.run(|| async { Ok::<_, Error>(()) }).await;
            },
        )
        .await;
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        for (field, q) in [
            ("rate", Quota::per(Duration::from_secs(1), n32, 1)),
            ("burst", Quota::per(Duration::from_secs(1), 1, n32)),
        ] {
            judge(format!("Quota {field}={n32}"), field, q, |q| async move {
                let limiter = RateLimiter::builder(q).build();
                let _ = limiter.check();
            })
            .await;
        }
    }
}

#[tokio::test]
async fn websocket_config() {
    let server = LoopbackServer::start(|stream, _| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    })
    .await
    .unwrap();
    let url = format!("ws://{}/feed", server.addr());
    let run = |config: WsConfig| async move {
        let client = WsClient::with_config(config).spawn().unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(300), client.wait_connected()).await;
        let _ = tokio::time::timeout(Duration::from_millis(100), client.send_text("hi")).await;
        client.close(Duration::from_millis(300)).await;
    };
    let b = || WsConfig::builder(url.clone());
    let build = |c: connection_kit::ws::WsConfigBuilder| {
        c.build().map_err(|e| match e {
            connection_kit::ws::WsError::Config(c) => c,
            other => panic!("not a configuration error: {other}"),
        })
    };
    for &n in COUNTS {
        let cases = [
            ("queue_capacity", b().queue_capacity(n)),
            ("inbound_buffer", b().inbound_buffer(n)),
            ("inbound_buffer_bytes", b().inbound_buffer_bytes(n)),
            ("read_buffer_size", b().read_buffer_size(n)),
            ("write_buffer_size", b().write_buffer_size(n)),
            ("max_message_size", b().max_message_size(Some(n))),
            ("max_frame_size", b().max_frame_size(Some(n))),
        ];
        for (field, c) in cases {
            judge(format!("WsConfig {field}={n}"), field, build(c), run).await;
        }
    }
    for &d in DURATIONS {
        let cases = [
            ("connect_timeout", b().connect_timeout(d)),
            ("ping_interval", b().ping_interval(d)),
            ("pong_timeout", b().pong_timeout(d)),
            ("close_timeout", b().close_timeout(d)),
        ];
        for (field, c) in cases {
            judge(format!("WsConfig {field}={d:?}"), field, build(c), run).await;
        }
    }
}

#[tokio::test]
async fn http_config() {
    let server = LoopbackServer::start(|mut stream, _| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0
                || stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
            {
                return;
            }
        }
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.addr());
    let run = |config: HttpConfig| async move {
        let client = HttpClient::new(config).unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(300), client.get("/")).await;
        let _ = tokio::time::timeout(Duration::from_millis(300), client.probe()).await;
    };
    let b = || HttpConfig::builder(url.clone());
    let build = |c: HttpConfigBuilder| {
        c.build().map_err(|e| match e {
            connection_kit::http::HttpError::Config(c) => c,
            other => panic!("not a configuration error: {other}"),
        })
    };
    for &n in COUNTS {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let cases = [
            ("max_response_size", b().max_response_size(n)),
            ("pool_max_idle_per_host", b().pool_max_idle_per_host(n)),
            ("max_retries", b().max_retries(n32)),
            ("breaker", b().breaker(n32, Duration::from_secs(1))),
            ("rate_limit", b().rate_limit(n32, n32)),
        ];
        for (field, c) in cases {
            judge(format!("HttpConfig {field}={n}"), field, build(c), run).await;
        }
    }
    for &d in DURATIONS {
        let cases = [
            ("connect_timeout", b().connect_timeout(d)),
            ("request_timeout", b().request_timeout(d)),
            ("read_timeout", b().read_timeout(d)),
            ("pool_idle_timeout", b().pool_idle_timeout(Some(d))),
            ("retry_backoff", b().retry_backoff(d, d)),
            ("retry_after_max", b().retry_after_max(d)),
            ("retry_deadline", b().retry_deadline(d)),
            ("breaker", b().breaker(5, d)),
            ("hedge", b().hedge(Hedge::after(d))),
            ("probe", b().probe(Probe::get("/").timeout(d))),
        ];
        for (field, c) in cases {
            judge(format!("HttpConfig {field}={d:?}"), field, build(c), run).await;
        }
    }
    for &r in RATIOS {
        let cases = [
            ("retry_budget", b().retry_budget(Some(r))),
            (
                "hedge",
                b().hedge(Hedge::at_percentile(r, Duration::from_millis(5))),
            ),
        ];
        for (field, c) in cases {
            judge(format!("HttpConfig {field}={r}"), field, build(c), run).await;
        }
    }
}
