//! The manager's bookkeeping: names, limits, concurrency from many tasks, statistics and
//! metrics export.

mod support;

use std::time::Duration;

use connection_core::{ConnectionState, Error, EventFilter, EventType, HealthStatus, Severity};
use connection_health::{ConnectionManager, ConnectionOptions, HealthError};
use connection_testkit::TcpEchoServer;
use support::{echo, next_matching, quick, wait_health};

#[test]
fn manager_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<ConnectionManager>();
    assert_send_sync::<connection_health::FailoverGroup>();
    // No runtime needed to create one and add to it.
    let manager = ConnectionManager::new();
    let addr = "127.0.0.1:9".parse().unwrap();
    manager
        .add("x", echo(addr), ConnectionOptions::default())
        .unwrap();
    assert_eq!(manager.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_from_many_tasks() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    let addr = server.addr();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let manager = manager.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let name = format!("t{t}-{i}");
                    manager.add(name.as_str(), echo(addr), quick()).unwrap();
                    if i % 2 == 0 {
                        manager.connect(&name).unwrap();
                    }
                    let _ = manager.statistics();
                    let _ = manager.status(&name).unwrap();
                }
                manager.connect_all().await
            })
        })
        .collect();
    for t in tasks {
        let report = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("task finished")
            .unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
    }
    assert_eq!(manager.len(), 160);
    let report = manager.connect_all().await;
    assert_eq!(report.connected.len(), 160);
    assert_eq!(manager.statistics().connected, 160);
    let shutdown = manager.shutdown(Duration::from_secs(5)).await;
    assert_eq!(shutdown.graceful.len(), 160);
}

#[tokio::test]
async fn names_and_limits_are_checked() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::builder()
        .max_connections(2)
        .build()
        .unwrap();
    manager.add("a", echo(server.addr()), quick()).unwrap();
    let err = manager.add("a", echo(server.addr()), quick()).unwrap_err();
    assert!(matches!(err, HealthError::DuplicateName { .. }), "{err}");
    assert!(err.to_string().contains("`a`"));
    let err = manager.add("", echo(server.addr()), quick()).unwrap_err();
    assert!(
        matches!(&err, HealthError::Config(c) if c.field() == "name"),
        "{err}"
    );
    manager.add("b", echo(server.addr()), quick()).unwrap();
    let err = manager.add("c", echo(server.addr()), quick()).unwrap_err();
    assert!(
        matches!(err, HealthError::AtCapacity { max: 2, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(err.to_string().contains("max_connections"), "{err}");
    let core: Error = err.into();
    assert!(core.is_retryable());

    for result in [
        manager.status("zz").map(drop),
        manager.connect("zz").map(drop),
        manager.restart("zz"),
        manager.health("zz").map(drop),
    ] {
        assert!(
            matches!(result, Err(HealthError::UnknownConnection { ref name }) if &**name == "zz"),
            "{result:?}"
        );
    }
    let err = ConnectionManager::builder()
        .connect_concurrency(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "connect_concurrency");
    let bad_opts: ConnectionOptions = serde_json::from_str(r#"{"close_timeout_ms": 0}"#).unwrap();
    let err = manager.add("d", echo(server.addr()), bad_opts).unwrap_err();
    assert!(
        matches!(&err, HealthError::Config(c) if c.field() == "close_timeout"),
        "{err}"
    );
}

#[test]
fn a_manager_holds_10_000_connections_by_default() {
    let manager = ConnectionManager::new();
    assert_eq!(
        manager.max_connections(),
        connection_health::DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(manager.max_connections(), 10_000);
    let addr = "127.0.0.1:9".parse().unwrap();
    for i in 0..10_000 {
        manager.add(format!("c{i}"), echo(addr), quick()).unwrap();
    }
    let err = manager.add("one-more", echo(addr), quick()).unwrap_err();
    assert!(
        matches!(err, HealthError::AtCapacity { max: 10_000, .. }),
        "{err}"
    );
    // The bound is a setting, up to the configuration's own limit.
    let larger = ConnectionManager::builder()
        .max_connections(connection_health::MAX_CONNECTIONS_LIMIT)
        .build()
        .unwrap();
    assert_eq!(
        larger.max_connections(),
        connection_health::MAX_CONNECTIONS_LIMIT
    );
}

#[test]
fn names_are_bounded_in_length() {
    let manager = ConnectionManager::new();
    assert_eq!(
        manager.max_name_len(),
        connection_health::DEFAULT_MAX_NAME_LEN
    );
    let addr = "127.0.0.1:9".parse().unwrap();
    manager.add("n".repeat(256), echo(addr), quick()).unwrap();
    // 'é' is two bytes: 129 of them are 258 bytes, and the error's excerpt must not cut
    // one in half.
    let long = format!("x{}", "é".repeat(128));
    assert_eq!(long.len(), 257);
    let err = manager.add(long.as_str(), echo(addr), quick()).unwrap_err();
    match &err {
        HealthError::NameTooLong { start, len, max } => {
            assert_eq!((*len, *max), (257, 256));
            assert!(long.starts_with(&**start) && start.len() <= 32, "{start}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("max_name_len"), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(manager.len(), 1);

    let short = ConnectionManager::builder()
        .max_name_len(4)
        .build()
        .unwrap();
    short.add("abcd", echo(addr), quick()).unwrap();
    let err = short.add("abcde", echo(addr), quick()).unwrap_err();
    assert!(
        matches!(err, HealthError::NameTooLong { len: 5, max: 4, .. }),
        "{err}"
    );
    let err = ConnectionManager::builder()
        .max_name_len(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_name_len");
}

#[tokio::test(start_paused = true)]
async fn attach_refuses_a_name_too_long() {
    let server = TcpEchoServer::start().await.unwrap();
    let supervised = connection_core::Supervisor::new(echo(server.addr()))
        .spawn()
        .unwrap();
    let manager = ConnectionManager::builder()
        .max_name_len(3)
        .build()
        .unwrap();
    let err = manager
        .attach("long", &supervised, ConnectionOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, HealthError::NameTooLong { len: 4, .. }),
        "{err}"
    );
    manager
        .attach("abc", &supervised, ConnectionOptions::default())
        .unwrap();
    supervised.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn statistics_and_metrics_add_up() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    for name in ["a", "b", "c"] {
        manager.add(name, echo(server.addr()), quick()).unwrap();
    }
    manager.add("off", echo(server.addr()), quick()).unwrap();
    manager.connect("a").unwrap();
    manager.connect("b").unwrap();
    manager.connect("c").unwrap();
    for name in ["a", "b", "c"] {
        wait_health(&manager, name, HealthStatus::Healthy).await;
    }
    let ms = Duration::from_millis;
    for (name, bytes, latencies) in [
        ("a", 100, vec![ms(1), ms(3)]),
        ("b", 20, vec![ms(10)]),
        ("c", 3, vec![]),
    ] {
        let h = manager.handle(name).unwrap().unwrap();
        let m = h.metrics_handle();
        m.add_bytes_in(bytes);
        m.add_bytes_out(bytes * 2);
        m.add_messages_in(1);
        for l in latencies {
            m.record_probe_rtt(l);
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Recent traffic, for the rates: 40 messages on "a" and 10 on "b" in the last
    // seconds, and 4 requests of which 1 failed.
    for (name, messages) in [("a", 40), ("b", 10)] {
        let h = manager.handle(name).unwrap().unwrap();
        h.metrics_handle().record_sent(messages, messages * 10);
    }
    let c = manager.handle("c").unwrap().unwrap();
    for _ in 0..3 {
        c.metrics_handle().record_request(ms(2));
    }
    c.metrics_handle().record_failed_request();
    let s = manager.statistics();
    assert_eq!(
        (s.connections, s.connected, s.healthy, s.unhealthy),
        (4, 3, 3, 0)
    );
    assert_eq!(
        (s.bytes_in, s.bytes_out, s.messages_in),
        (123, 246 + 500, 3)
    );
    assert_eq!((s.requests, s.failed_requests, s.errors), (4, 1, 1));
    // The throughput is the sum of every connection's, over its own window.
    let windows: Vec<_> = ["a", "b", "c", "off"]
        .iter()
        .map(|n| manager.status(n).unwrap().metrics.window)
        .collect();
    assert_eq!(s.rates, connection_core::metrics::Rates::total(&windows));
    let span = windows[0].span.as_secs_f64();
    assert!((9.0..10.0).contains(&span), "{span}");
    assert_eq!(s.rates.messages_out_per_second, 50.0 / span);
    assert_eq!(s.rates.bytes_out_per_second, 500.0 / span);
    assert_eq!(s.rates.error_rate, Some(0.25));
    // The echo connections report their buffers (nothing is waiting); "off" never
    // connected, so it reports none.
    assert_eq!(s.buffered_bytes, 0);
    assert_eq!(manager.status("a").unwrap().metrics.buffered_bytes, Some(0));
    assert_eq!(manager.status("off").unwrap().metrics.buffered_bytes, None);
    assert_eq!(s.probe_rtt.count, 3);
    // (1 + 3 + 10) / 3 ms, exact.
    assert_eq!(s.probe_rtt.mean, Duration::from_nanos(14_000_000 / 3));
    assert!(
        s.probe_rtt.p99 >= ms(10) && s.probe_rtt.p99 <= ms(11),
        "{s:?}"
    );
    assert_eq!(s.probe_rtt.max, ms(10));
    assert!(s.uptime >= Duration::from_secs(10));
    assert!(s.connected_time >= Duration::from_secs(30));

    // The p99 is over all samples together: 200 fast samples on "a" outweigh the one
    // slow sample on "b" (the largest per-connection p99 would say 10 ms).
    let a = manager.handle("a").unwrap().unwrap();
    for _ in 0..200 {
        a.metrics_handle().record_probe_rtt(ms(1));
    }
    let merged = manager.statistics();
    assert_eq!(merged.probe_rtt.count, 203);
    assert!(
        merged.probe_rtt.p99 <= Duration::from_micros(3200),
        "{merged:?}"
    );
    assert_eq!(merged.probe_rtt.max, ms(10));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["bytes_in"], 123);
    assert_eq!(json["failed_requests"], 1);
    assert_eq!(json["rates"]["error_rate"], 0.25);
    assert_eq!(json["rates"]["messages_out_per_second"], 50.0 / span);
    assert_eq!(json["buffered_bytes"], 0);

    let report = manager.metrics();
    assert_eq!(report.connections.len(), 4);
    assert_eq!(&*report.connections[0].0, "a");
    let parsed: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 4);
    assert_eq!(parsed[0]["connection"], "a");
    assert_eq!(parsed[0]["bytes_in"], 100);

    let text = report.to_prometheus();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let bytes_in: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "connection_bytes_in_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(bytes_in, 123.0);

    // The manager streams the same text and JSON from the live metrics, without
    // collecting snapshots first; on a paused clock nothing moves in between.
    assert_eq!(manager.to_prometheus(), text);
    let mut streamed = Vec::new();
    manager.write_prometheus(&mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), text);
    assert_eq!(manager.to_json(), report.to_json());
    let mut streamed = Vec::new();
    report.write_json(&mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), report.to_json());
    // The new families are there: rates, error ratio, failed requests, buffers (only
    // for the connections that report them).
    let sample = |metric: &str, connection: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("connection") == Some(connection))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            })
    };
    assert_eq!(
        sample("connection_messages_out_per_second", "a"),
        Some(40.0 / span)
    );
    assert_eq!(sample("connection_request_error_ratio", "c"), Some(0.25));
    assert!(
        sample("connection_request_error_ratio", "a")
            .unwrap()
            .is_nan()
    );
    assert_eq!(sample("connection_failed_requests_total", "c"), Some(1.0));
    assert_eq!(sample("connection_buffered_bytes", "b"), Some(0.0));
    assert_eq!(sample("connection_buffered_bytes", "off"), None);

    let list = manager.list();
    assert_eq!(list.len(), 4);
    assert_eq!(list[3].name.as_ref(), "off");
    assert_eq!(list[3].state, ConnectionState::Disconnected);
    assert!(list[3].id.is_none());
    let status_json = serde_json::to_value(&list[0]).unwrap();
    assert_eq!(status_json["health"], "healthy");
}

#[tokio::test(start_paused = true)]
async fn subscribe_filters_by_name_type_and_severity() {
    let server = TcpEchoServer::start().await.unwrap();
    let manager = ConnectionManager::new();
    manager.add("a", echo(server.addr()), quick()).unwrap();
    manager.add("b", echo(server.addr()), quick()).unwrap();
    let mut only_b = manager.subscribe(EventFilter::all().name("b").types([EventType::Connected]));
    let mut warnings = manager.subscribe(EventFilter::all().min_severity(Severity::Warn));
    let mut all = manager.subscribe(EventFilter::all());
    assert!(manager.connect_all().await.all_connected());
    let e = next_matching(&mut only_b, |_| true).await;
    assert_eq!(e.name.as_ref(), "b");
    next_matching(&mut all, |e| {
        e.name.as_ref() == "a" && e.event_type() == EventType::HealthChanged
    })
    .await;
    manager.restart("a").unwrap();
    // A restart is an Info disconnect; nothing at Warn or above happened.
    next_matching(&mut all, |e| {
        e.name.as_ref() == "a" && e.event_type() == EventType::Connected
    })
    .await;
    assert!(
        support::drain(&mut warnings)
            .iter()
            .all(|e| e.name.as_ref() != "b")
    );
    assert!(support::drain(&mut only_b).is_empty());
}
