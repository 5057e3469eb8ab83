//! Helpers shared by the behaviour tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use connection_core::{ConnectionState, Event, EventStream, SupervisorHandle};
use futures::StreamExt;

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

/// Takes events from `stream` until one satisfies `pred`, returning it.
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

/// Collects every event already delivered to `stream` without waiting for more.
pub fn drain(stream: &mut EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(Ok(e))) = stream.next().now_or_never() {
        out.push(e);
    }
    out
}

use futures::FutureExt;

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
