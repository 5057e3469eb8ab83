//! Helpers shared by the behaviour tests.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::time::Duration;

use connection_core::{ConnectionState, SupervisorHandle};

/// Bound on any single wait in these tests (tokio time, which is paused in most of them).
pub const WAIT: Duration = Duration::from_secs(60);

/// Waits until the supervisor reports `state`.
pub async fn wait_state(handle: &SupervisorHandle, state: ConnectionState) {
    let mut rx = handle.watch_state();
    tokio::time::timeout(WAIT, rx.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} never reached {state}, stuck in {}",
                handle.name(),
                handle.state()
            )
        })
        .expect("supervisor state channel closed");
}

pub use connection_testkit::events::{drain, next_matching};

/// Polls `cond` every millisecond of tokio time until it holds. For conditions that only
/// a peer in another task can observe (a server counting its open sockets) and that have
/// no notification to await.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("condition never held");
}
