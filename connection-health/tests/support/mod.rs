//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Event, EventKind,
    EventStream, HealthStatus, Transport,
};
use connection_health::{ConnectionManager, ConnectionOptions};
use connection_testkit::{TcpEchoConnection, TcpEchoTransport};
use futures::{FutureExt, StreamExt};

/// Bound on any single wait in these tests (tokio time, paused in most of them).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn echo(addr: SocketAddr) -> TcpEchoTransport {
    TcpEchoTransport::new(addr).expect("loopback address with a port")
}

/// Options with a short reconnect delay, so restarts in tests are quick.
pub fn quick() -> ConnectionOptions {
    ConnectionOptions::builder()
        .reconnect_delay(Duration::from_millis(100))
        .build()
        .expect("valid options")
}

/// Polls `cond` every millisecond of tokio time until it holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

pub async fn wait_health(manager: &ConnectionManager, name: &str, status: HealthStatus) {
    wait_until(&format!("{name} is {status}"), || {
        manager.health(name).expect("known connection") == status
    })
    .await;
}

pub async fn wait_state(manager: &ConnectionManager, name: &str, state: ConnectionState) {
    wait_until(&format!("{name} is {state}"), || {
        manager.status(name).expect("known connection").state == state
    })
    .await;
}

/// Takes events from `stream` until one satisfies `pred`.
pub async fn next_matching(
    stream: &mut EventStream,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(e)) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("no matching event in time")
}

/// Every event already delivered to `stream`, without waiting.
pub fn drain(stream: &mut EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(Ok(e))) = stream.next().now_or_never() {
        out.push(e);
    }
    out
}

/// `(from, to)` of a HealthChanged event.
pub fn health_change(e: &Event) -> Option<(HealthStatus, HealthStatus)> {
    match e.kind {
        EventKind::HealthChanged { from, to } => Some((from, to)),
        _ => None,
    }
}

/// A real echo connection whose `close` never finishes, like a peer that never answers
/// a close handshake.
pub struct StuckClose(pub TcpEchoTransport);
pub struct StuckConn(TcpEchoConnection);

impl Transport for StuckClose {
    type Connection = StuckConn;
    async fn connect(&self) -> Result<StuckConn, Error> {
        self.0.connect().await.map(StuckConn)
    }
    fn endpoint(&self) -> &Endpoint {
        self.0.endpoint()
    }
}

impl Connection for StuckConn {
    fn id(&self) -> ConnectionId {
        self.0.id()
    }
    fn state(&self) -> ConnectionState {
        self.0.state()
    }
    async fn probe(&mut self) -> Result<Duration, Error> {
        self.0.probe().await
    }
    async fn closed(&mut self) -> DisconnectReason {
        self.0.closed().await
    }
    async fn close(&mut self) -> Result<(), Error> {
        std::future::pending().await
    }
}
