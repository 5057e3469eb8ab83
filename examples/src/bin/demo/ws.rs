//! The WebSocket part of the demo: a client that survives its server being killed and
//! restarted, and loses nothing from its queue.
//!
//! An in-process tokio-tungstenite echo server; a `WsClient` that re-subscribes in its
//! `on_connect` hook; a few messages echoed; the server killed; 5 messages queued during
//! the outage; the server restarted on the same port; the 5 arrive, in order, after the
//! reconnect. Fails if one is lost or out of order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use connection_kit::core::{
    ConnectionState, EventBus, EventFilter, EventKind, EventStream, EventType,
};
use connection_kit::retry::{BackoffStrategy, Jitter};
use connection_kit::ws::{Message, WsClient};
use connection_testkit::LoopbackServer;
use futures::future::ready;
use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// Send + Sync, so `run().await?` works in a `main` returning either error box.
type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// Any wait here is on a local server: past this, something is broken.
const LIMIT: Duration = Duration::from_secs(5);

/// Echoes text and binary messages back (tungstenite answers pings itself).
async fn echo(stream: TcpStream, _peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (tx, rx) = ws.split();
    let _ = rx
        .try_filter(|m| ready(m.is_text() || m.is_binary()))
        .forward(tx)
        .await;
}

/// The client's events, printed with their own timestamps when the script reaches a
/// step (not from a task of their own, so the output reads in order).
struct Events {
    stream: EventStream,
    started: SystemTime,
}

impl Events {
    fn print(&self, kind: &EventKind, at: SystemTime) {
        let secs = at
            .duration_since(self.started)
            .unwrap_or_default()
            .as_secs_f64();
        println!("{secs:>7.3}s  ws   {kind}");
    }

    /// Prints the events that already happened.
    fn print_pending(&mut self) {
        while let Some(Some(Ok(event))) = self.stream.next().now_or_never() {
            self.print(&event.kind, event.at);
        }
    }

    /// Prints events until one of type `wanted`.
    async fn until(&mut self, wanted: EventType) -> Result<EventKind, DemoError> {
        loop {
            let event = timeout(LIMIT, self.stream.next())
                .await
                .map_err(|_| format!("no {wanted:?} event within {LIMIT:?}"))?
                .ok_or("event stream ended")??;
            self.print(&event.kind, event.at);
            if event.kind.event_type() == wanted {
                return Ok(event.kind);
            }
        }
    }
}

pub(crate) async fn run() -> Result<(), DemoError> {
    let mut server = LoopbackServer::start(echo).await?;
    let url = format!("ws://{}/ticker", server.addr());
    println!("websocket echo server on {url}");

    let bus = EventBus::new(64);
    let mut events = Events {
        stream: bus.subscribe(EventFilter::all().types([
            EventType::Connected,
            EventType::Disconnected,
            EventType::Reconnecting,
        ])),
        started: SystemTime::now(),
    };
    let connects = Arc::new(AtomicU32::new(0));
    let hook_connects = connects.clone();
    let mut client = WsClient::builder(url.as_str())
        .name("ws")
        .events(bus)
        .configure(|c| {
            c.ping_interval(Duration::from_millis(100))
                .pong_timeout(Duration::from_millis(500))
        })
        .backoff(
            BackoffStrategy::fixed(Duration::from_millis(100))
                .jitter(Jitter::None)
                .build()?,
        )
        .on_connect(move |session| {
            let n = hook_connects.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                // Runs before anything queued is written: the place to re-subscribe.
                session.send_text("subscribe:ticker").await?;
                let ack = session.recv().await?;
                println!("  on_connect #{n}: re-subscribed (server echoed {ack})");
                Ok(())
            }
        })
        .spawn()?;

    events.until(EventType::Connected).await?;
    for i in 1..=3 {
        client.send_text(format!("hello {i}")).await?;
        let reply = expect_text(&mut client).await?;
        println!("  echo: {reply}");
    }

    println!("\n--- killing the websocket server");
    server.stop().await;
    events.until(EventType::Disconnected).await?;
    for i in 1..=5 {
        client.send_text(format!("queued {i}")).await?;
    }
    println!(
        "  queued 5 messages while disconnected ({} waiting in the queue)",
        client.sender().queued()
    );
    // Let a few reconnect attempts fail against the dead port.
    sleep(Duration::from_millis(250)).await;
    events.print_pending();

    println!("\n--- restarting the websocket server on the same port");
    server.restart().await?;
    events.until(EventType::Connected).await?;
    for i in 1..=5 {
        let expected = format!("queued {i}");
        let got = expect_text(&mut client).await?;
        if got != expected {
            return Err(format!("expected {expected:?} after the reconnect, got {got:?}").into());
        }
        println!("  after reconnect: {got}");
    }
    println!("  all 5 queued messages arrived, in order");

    // A few heartbeats (every 100 ms) for the round-trip figures, and one ping now.
    sleep(Duration::from_millis(300)).await;
    let rtt = timeout(LIMIT, client.handle().probe()).await??;
    println!("  ping round trip now: {rtt:.2?}");
    client.close(Duration::from_secs(1)).await;
    events.print_pending();
    if client.state() != ConnectionState::Closed {
        return Err(format!("client not closed: {}", client.state()).into());
    }

    let m = client.metrics();
    println!(
        "\n{:<4} {:>8} {:>8} {:>9} {:>9} {:>10} {:>6} {:>9} {:>9}",
        "",
        "msgs in",
        "msgs out",
        "bytes in",
        "bytes out",
        "reconnects",
        "pings",
        "rtt mean",
        "rtt p99"
    );
    println!(
        "{:<4} {:>8} {:>8} {:>9} {:>9} {:>10} {:>6} {:>9.2?} {:>9.2?}",
        "ws",
        m.messages_in,
        m.messages_out,
        m.bytes_in,
        m.bytes_out,
        m.reconnects,
        m.probe_rtt.count,
        m.probe_rtt.mean,
        m.probe_rtt.p99
    );
    let hooks = connects.load(Ordering::Relaxed);
    if m.reconnects == 0 || hooks < 2 {
        return Err(format!(
            "expected a reconnect: {} reconnects, {hooks} on_connect runs",
            m.reconnects
        )
        .into());
    }
    Ok(())
}

async fn expect_text(client: &mut WsClient) -> Result<String, DemoError> {
    match timeout(LIMIT, client.recv()).await? {
        Some(Message::Text(text)) => Ok(text.to_string()),
        Some(other) => Err(format!("expected text, got {other:?}").into()),
        None => Err("the client ended before the message arrived".into()),
    }
}
