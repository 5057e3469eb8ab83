//! Waiting for events in tests, bounded so a missing event fails the test instead of
//! hanging it.

use std::time::Duration;

use connection_core::{Event, EventStream};
use futures::{FutureExt, StreamExt};

/// Bound on one wait (tokio time, so under a paused clock it costs nothing real).
pub const WAIT: Duration = Duration::from_secs(60);

/// Takes events from `stream` until one satisfies `pred` and returns it.
///
/// # Panics
///
/// When no such event arrives within [`WAIT`] or the stream ends: this is for tests.
pub async fn next_matching(
    stream: &mut EventStream,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    let wait = async {
        loop {
            match stream.next().await {
                Some(Ok(e)) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(event) => event,
        Err(_) => panic!("no matching event within {WAIT:?}"),
    }
}

/// Every event already delivered to `stream`, without waiting for more.
pub fn drain(stream: &mut EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(Some(Ok(e))) = stream.next().now_or_never() {
        out.push(e);
    }
    out
}
