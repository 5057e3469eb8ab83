//! Helpers shared by the behaviour tests.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use connection_core::{ConnectionState, Event, EventKind, HealthStatus};
use connection_health::{ConnectionManager, ConnectionOptions};
use connection_testkit::TcpEchoTransport;
use tokio::sync::watch;

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

pub use connection_testkit::events::{drain, next_matching};

/// `(from, to)` of a HealthChanged event.
pub fn health_change(e: &Event) -> Option<(HealthStatus, HealthStatus)> {
    match e.kind {
        EventKind::HealthChanged { from, to } => Some((from, to)),
        _ => None,
    }
}

/// Waits until the group's primary is `want`, failing the test after `within`.
pub async fn wait_primary(
    primary: &mut watch::Receiver<Option<Arc<str>>>,
    want: &str,
    within: Duration,
    what: &str,
) {
    tokio::time::timeout(within, primary.wait_for(|p| p.as_deref() == Some(want)))
        .await
        .unwrap_or_else(|_| panic!("{what}: primary did not become {want} within {within:?}"))
        .expect("the group is alive");
}
