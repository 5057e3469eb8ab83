//! A server's `Retry-After` replaces the computed backoff, up to the configured cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use connection_core::{Endpoint, Error, EventBus, EventFilter};
use connection_retry::EventSink;
use connection_retry::backoff::BackoffStrategy;
use connection_retry::events::Retrying;
use connection_retry::retry::{RetryPolicy, parse_retry_after};
use connection_testkit::LoopbackServer;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Bound on every test (tokio time, paused).
const WAIT: Duration = Duration::from_secs(60);

/// A minimal HTTP server: the first `busy` requests get a 503 with `Retry-After:
/// {retry_after}`, later ones a 200.
async fn busy_server(busy: usize, retry_after: &'static str) -> LoopbackServer {
    let served = Arc::new(AtomicUsize::new(0));
    LoopbackServer::start(move |stream, _| {
        let n = served.fetch_add(1, Ordering::Relaxed);
        async move {
            // Reads the whole request first: closing a socket with unread input would
            // reset the connection and could discard the answer.
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            while stream.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer = if n < busy {
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\ncontent-length: 0\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
            };
            let _ = stream.get_mut().write_all(answer.as_bytes()).await;
        }
    })
    .await
    .expect("server starts")
}

/// Sends a request and maps a 503 to `Error::Status`, with the parsed `Retry-After`.
async fn get(endpoint: &Endpoint) -> Result<u16, Error> {
    let io = |e| Error::io(endpoint, e);
    let stream = TcpStream::connect(endpoint.authority())
        .await
        .map_err(|e| Error::connect(endpoint, e))?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .map_err(io)?;
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.map_err(io)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::protocol(endpoint, format!("bad status line {status_line:?}")))?;
    let mut retry_after = None;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.map_err(io)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("retry-after") {
                retry_after = parse_retry_after(value, SystemTime::now());
            }
        }
    }
    match status {
        200 => Ok(status),
        _ => Err(Error::Status {
            endpoint: endpoint.clone(),
            status,
            retry_after,
        }),
    }
}

fn policy(cap: Option<Duration>, bus: EventBus) -> RetryPolicy {
    let mut builder = RetryPolicy::builder()
        .backoff(
            BackoffStrategy::fixed(Duration::from_millis(100))
                .max_retries(5)
                .build()
                .expect("valid backoff"),
        )
        .events(EventSink::named(bus, "http"));
    if let Some(cap) = cap {
        builder = builder.retry_after_cap(cap);
    }
    builder.build().expect("valid policy")
}

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_backoff_delay() {
    let server = busy_server(2, "3").await;
    let endpoint = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let bus = EventBus::new(16);
    let mut events = bus.subscribe(EventFilter::all());
    let policy = policy(None, bus);

    let started = Instant::now();
    let status = timeout(WAIT, policy.on(&endpoint).run(|| get(&endpoint)))
        .await
        .expect("bounded")
        .expect("the third request succeeds");
    assert_eq!(status, 200);
    assert_eq!(started.elapsed(), Duration::from_secs(6), "3 s twice");
    assert_eq!(server.accepted(), 3);
    for attempt in [2, 3] {
        let event = events.next().await.unwrap().unwrap();
        assert!(
            matches!(event.kind.downcast_ref::<Retrying>(), Some(r)
                if r.attempt == attempt && r.delay == Duration::from_secs(3)),
            "{event}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped() {
    let server = busy_server(1, "600").await;
    let endpoint = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let policy = policy(Some(Duration::from_secs(5)), EventBus::new(1));

    let started = Instant::now();
    timeout(WAIT, policy.on(&endpoint).run(|| get(&endpoint)))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn unparseable_retry_after_falls_back_to_the_backoff() {
    let server = busy_server(1, "whenever").await;
    let endpoint = Endpoint::host_port("127.0.0.1", server.port()).unwrap();
    let policy = policy(None, EventBus::new(1));

    let started = Instant::now();
    timeout(WAIT, policy.on(&endpoint).run(|| get(&endpoint)))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}
