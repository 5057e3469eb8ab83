//! Every variable of every loader, given hostile values: each is either refused with the
//! variable named, or the config it gives runs a short real scenario on 127.0.0.1
//! without a panic or a hang.

use std::future::Future;
use std::time::Duration;

use connection_kit::core::env::EnvSection;
use connection_kit::core::{ConnectionConfig, Error, Supervisor};
use connection_kit::health::{ConnectionManager, ConnectionOptions, ManagerConfig};
use connection_kit::http::HttpSettings;
use connection_kit::pool::{Pool, PoolConfig};
use connection_kit::retry::backoff::BackoffConfig;
use connection_kit::retry::breaker::CircuitBreakerConfig;
use connection_kit::retry::bulkhead::BulkheadConfig;
use connection_kit::retry::limit::RateLimitConfig;
use connection_kit::ws::WsSettings;
use connection_testkit::{LoopbackServer, TcpEchoServer, TcpEchoTransport};
use futures::{SinkExt, StreamExt};

const HOSTILE: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "",
    " ",
    "0.5",
    "1e3",
    "4294967296",
    "100000000000",
    "18446744073709551615",
    "99999999999999999999999",
    "true",
    "null",
    "wait",
    "x",
];

/// A scenario must end by itself; a hang is a failure, not a slow pass.
async fn bounded<F: Future<Output = ()>>(what: String, f: F) {
    if tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .is_err()
    {
        panic!("{what}: the scenario hung");
    }
}

/// Tries every hostile value on every variable of `section`; for each accepted config,
/// runs `scenario`. Returns how many were accepted.
async fn sweep<T, L, S, Fut>(section: EnvSection, load: L, scenario: S) -> usize
where
    L: Fn(Vec<(&'static str, &'static str)>) -> Result<T, connection_kit::core::ConfigError>,
    S: Fn(T) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut accepted = 0;
    for var in section.vars() {
        for &value in HOSTILE {
            let mut vars = vec![(var.name(), value)];
            if section.prefix() == "CONNECTION_WS_" && var.name() != "CONNECTION_WS_URL" {
                vars.push(("CONNECTION_WS_URL", "ws://127.0.0.1:1/"));
            }
            if section.prefix() == "CONNECTION_HTTP_" && var.name() != "CONNECTION_HTTP_URL" {
                vars.push(("CONNECTION_HTTP_URL", "http://127.0.0.1:1/"));
            }
            match load(vars) {
                Err(err) => {
                    // One variable set: the error names it, alone or (for a rule
                    // between settings) among the variables that were set.
                    let named = err
                        .variable()
                        .is_some_and(|v| v.split(", ").any(|n| n == var.name()));
                    assert!(
                        named,
                        "{}={value:?} refused without naming it: {err}",
                        var.name()
                    );
                    if var.is_secret() {
                        assert_eq!(err.value(), None);
                    } else if !value.is_empty() {
                        assert!(err.to_string().contains(value.trim()), "{err}");
                    }
                }
                Ok(config) => {
                    accepted += 1;
                    bounded(format!("{}={value:?}", var.name()), scenario(config)).await;
                }
            }
        }
    }
    accepted
}

#[tokio::test]
async fn core_and_manager_settings_refuse_or_run() {
    let server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    let n = sweep(
        ConnectionConfig::ENV,
        ConnectionConfig::from_vars,
        |cfg| async move {
            let s = Supervisor::new(TcpEchoTransport::new(addr).unwrap())
                .config(&cfg)
                .backoff(cfg.backoff())
                .spawn()
                .unwrap();
            if let Ok(io) = s.ready(Duration::from_millis(500)).await {
                let _ = io.echo(b"ping").await;
            }
            s.shutdown(Duration::from_millis(500)).await;
        },
    )
    .await;
    assert!(n > 0);

    let health_and_manager = |section: EnvSection| {
        sweep(section, ManagerConfig::from_vars, move |cfg| async move {
            let manager = ConnectionManager::from_config(cfg).unwrap();
            // A name longer than a (hostile) max_name_len is refused, not a panic.
            let _link = manager.add(
                "echo",
                TcpEchoTransport::new(addr).unwrap(),
                ConnectionOptions::default(),
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), manager.connect_all()).await;
            manager.shutdown(Duration::from_millis(500)).await;
        })
    };
    assert!(health_and_manager(ManagerConfig::ENV).await > 0);
    assert!(health_and_manager(ManagerConfig::HEALTH_ENV).await > 0);
}

#[tokio::test]
async fn pool_settings_refuse_or_run() {
    let server = TcpEchoServer::start().await.unwrap();
    let addr = server.addr();
    let n = sweep(PoolConfig::ENV, PoolConfig::from_vars, |cfg| async move {
        let pool = Pool::new(TcpEchoTransport::new(addr).unwrap(), cfg).unwrap();
        if let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(1), pool.get()).await {
            let _ = conn.echo(b"ping").await;
        }
        pool.close().await;
    })
    .await;
    assert!(n > 0);
}

#[tokio::test]
async fn policy_settings_refuse_or_run() {
    let n = sweep(
        BackoffConfig::ENV,
        BackoffConfig::from_vars,
        |cfg| async move {
            use connection_kit::core::Backoff;
            let mut b = cfg.build().unwrap();
            for attempt in [1, 2, 3, 10, 64, 1000, u32::MAX] {
                let _ = b.next_delay(attempt, None);
            }
        },
    )
    .await;
    assert!(n > 0);
    let n = sweep(
        CircuitBreakerConfig::ENV,
        CircuitBreakerConfig::from_vars,
        |cfg| async move {
            let breaker = cfg.build().unwrap();
            let endpoint = connection_kit::core::Endpoint::parse("tcp://127.0.0.1:1").unwrap();
            let endpoint = &endpoint;
            for i in 0..50u32 {
                let _ = breaker
                    .run(|| async move {
                        if i % 3 == 0 {
                            Err(Error::other(endpoint, "no", true))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
            }
        },
    )
    .await;
    assert!(n > 0);
    let n = sweep(
        BulkheadConfig::ENV,
        BulkheadConfig::from_vars,
        |cfg| async move {
            let bulkhead = cfg.build().unwrap();
            let runs = (0..4).map(|_| bulkhead.run(|| async { Ok::<_, Error>(()) }));
            let _ =
                tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(runs)).await;
        },
    )
    .await;
    assert!(n > 0);
    let n = sweep(
        RateLimitConfig::ENV,
        RateLimitConfig::from_vars,
        |cfg| async move {
            let limiter = cfg.build().unwrap();
            for _ in 0..3 {
                let _ = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
            }
        },
    )
    .await;
    assert!(n > 0);
}

#[tokio::test]
async fn websocket_settings_refuse_or_run() {
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
    let n = sweep(WsSettings::ENV, WsSettings::from_vars, |mut settings| {
        let url = url.clone();
        async move {
            settings.url = Some(url);
            let client = settings.client_builder().unwrap().spawn().unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(500), client.wait_connected()).await;
            let _ = tokio::time::timeout(Duration::from_millis(200), client.send_text("hi")).await;
            client.close(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(n > 0);
}

#[tokio::test]
async fn http_settings_refuse_or_run() {
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
    let url = format!("http://{}/", server.addr());
    let n = sweep(
        HttpSettings::ENV,
        HttpSettings::from_vars,
        |mut settings| {
            let url = url.clone();
            async move {
                settings.url = Some(url);
                let client = settings.into_client().unwrap();
                let _ = tokio::time::timeout(Duration::from_millis(500), client.get("/")).await;
                let _ = tokio::time::timeout(Duration::from_millis(500), client.probe()).await;
            }
        },
    )
    .await;
    assert!(n > 0);
}
