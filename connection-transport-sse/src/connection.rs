//! [`SseConnection`]: one response being read by a task of its own.
//!
//! ```text
//!   reader task: chunk ──► parser ──► items ──► queue (waits when full: TCP then
//!                 │                    │         slows the server down)
//!                 │                    └► last event ID moves past each event queued
//!                 ├ no chunk within the inactivity timeout ──► Inactive (reconnect)
//!                 ├ end of body ──► PeerClosed (reconnect; a partial event is dropped)
//!                 └ read error / event too large ──► Error (reconnect)
//!   closed() waits for the task's verdict; close() aborts the task, which drops the
//!   response and so the socket.
//! ```

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use connection_core::task::{TaskEnded, catch_panic};
use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Error, Traffic,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SseConfig;
use crate::error::SseError;
use crate::event::SseItem;
use crate::parser::SseParser;
use crate::source::SseEvents;

/// One open event stream. Its [`Io`](Connection::Io) is the source's [`SseEvents`].
///
/// SSE has no ping, so [`probe`](Connection::probe) only reports whether the stream is
/// still open (with a zero round trip); the inactivity timeout is what catches a peer
/// that went silent.
pub struct SseConnection {
    id: ConnectionId,
    events: SseEvents,
    end: watch::Receiver<Option<DisconnectReason>>,
    task: Option<JoinHandle<()>>,
    traffic: Arc<OnceLock<Traffic>>,
}

impl std::fmt::Debug for SseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseConnection")
            .field("id", &self.id)
            .field("endpoint", &self.events.source().endpoint)
            .field("ended", &self.end.borrow().is_some())
            .finish()
    }
}

impl SseConnection {
    /// A connection whose server answered 204: over before it started, for good.
    pub(crate) fn ended_by_server(events: SseEvents, status: u16) -> Self {
        events.source().lost();
        let reason = DisconnectReason::CloseCode {
            code: status,
            reason: Arc::from("No Content: the server asked the client to stop"),
            reconnect: false,
        };
        Self {
            id: ConnectionId::next(),
            events,
            end: watch::channel(Some(reason)).1,
            task: None,
            traffic: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn open(
        response: reqwest::Response,
        events: SseEvents,
        last_event_id: Arc<str>,
        config: &SseConfig,
    ) -> Self {
        let (end_tx, end) = watch::channel(None);
        let traffic = Arc::new(OnceLock::new());
        let parser = SseParser::new()
            .with_last_event_id(last_event_id)
            .with_max_event_size(config.max_event_size);
        let reader = Reader {
            events: events.clone(),
            traffic: traffic.clone(),
            inactivity: config.inactivity_timeout,
            limit: config.max_event_size,
        };
        let task = tokio::spawn(async move {
            // A panic must end this connection with a reason the supervisor reconnects
            // after, not leave `closed()` without a verdict.
            let reason = match catch_panic(reader.run(response, parser)).await {
                Ok(reason) => reason,
                Err(payload) => {
                    let ended = TaskEnded::panicked("sse reader", payload.as_ref());
                    tracing::error!(endpoint = %reader.events.source().endpoint, %ended);
                    let e = Error::other(&reader.events.source().endpoint, ended, true);
                    DisconnectReason::Error(Arc::new(e))
                }
            };
            reader.events.source().lost();
            let _ = end_tx.send(Some(reason));
        });
        Self {
            id: ConnectionId::next(),
            events,
            end,
            task: Some(task),
            traffic,
        }
    }

    fn is_ended(&self) -> bool {
        self.end.borrow().is_some()
    }
}

impl Drop for SseConnection {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Connection for SseConnection {
    type Io = SseEvents;

    fn io(&self) -> SseEvents {
        self.events.clone()
    }

    fn bind_traffic(&mut self, traffic: Traffic) {
        let _ = self.traffic.set(traffic);
    }

    fn id(&self) -> ConnectionId {
        self.id
    }

    fn state(&self) -> ConnectionState {
        if self.is_ended() {
            ConnectionState::Closed
        } else {
            ConnectionState::Connected
        }
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        if self.is_ended() {
            Err(Error::Closed {
                endpoint: self.events.source().endpoint.clone(),
            })
        } else {
            Ok(Duration::ZERO)
        }
    }

    async fn closed(&mut self) -> DisconnectReason {
        match self.end.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(DisconnectReason::PeerClosed),
            // The task is gone without a verdict (aborted): the stream is over, and a
            // new one is worth trying.
            Err(_) => {
                let ended = TaskEnded::new("sse reader");
                let endpoint = &self.events.source().endpoint;
                DisconnectReason::Error(Arc::new(Error::other(endpoint, ended, true)))
            }
        }
    }

    async fn close(&mut self) -> Result<(), Error> {
        if let Some(task) = self.task.take() {
            task.abort();
            // Wait for the abort to land, so the socket is closed when this returns.
            let _ = task.await;
            self.events.source().lost();
        }
        Ok(())
    }
}

/// The reader task's context.
struct Reader {
    events: SseEvents,
    traffic: Arc<OnceLock<Traffic>>,
    inactivity: Option<Duration>,
    limit: usize,
}

impl Reader {
    async fn run(
        &self,
        mut response: reqwest::Response,
        mut parser: SseParser,
    ) -> DisconnectReason {
        let source = self.events.source();
        let endpoint = &source.endpoint;
        let mut batch: VecDeque<SseItem> = VecDeque::new();
        loop {
            let next = match self.inactivity {
                Some(limit) => match tokio::time::timeout(limit, response.chunk()).await {
                    Ok(next) => next,
                    Err(_) => {
                        let e = SseError::Inactive {
                            endpoint: endpoint.clone(),
                            after: limit,
                        };
                        return DisconnectReason::Error(Arc::new(e.into()));
                    }
                },
                None => response.chunk().await,
            };
            let chunk = match next {
                Ok(Some(chunk)) => chunk,
                // The server ended the response: an incomplete event is discarded.
                Ok(None) => return DisconnectReason::PeerClosed,
                Err(e) => {
                    let e = SseError::Read {
                        endpoint: endpoint.clone(),
                        source: Box::new(e),
                    };
                    return DisconnectReason::Error(Arc::new(e.into()));
                }
            };
            let n = chunk.len() as u64;
            source.stats.bytes.fetch_add(n, Relaxed);
            if let Err(e) = parser.feed(&chunk, |i| batch.push_back(i)) {
                tracing::warn!(%endpoint, %e, "event too large; reconnecting");
                let e = SseError::TooLarge {
                    endpoint: endpoint.clone(),
                    limit: self.limit,
                };
                return DisconnectReason::Error(Arc::new(e.into()));
            }
            for item in &batch {
                match item {
                    SseItem::Comment(_) => {
                        source.stats.comments.fetch_add(1, Relaxed);
                    }
                    SseItem::Retry(delay) => source.retry.set(*delay),
                    _ => {}
                }
            }
            let mut dispatched = 0;
            let open = source
                .inbox
                .push(&mut batch, |moved| {
                    // The resume point moves past an event only once it is queued.
                    if let Some(id) = &moved.last_id {
                        source.set_last_event_id(id);
                    }
                    source.stats.events.fetch_add(moved.events, Relaxed);
                    dispatched += moved.events;
                })
                .await;
            if !open {
                // The transport is gone: nobody will read what comes.
                return DisconnectReason::Shutdown;
            }
            // A block with only an `id` moves the last event ID without an event.
            source.set_last_event_id(parser.last_event_id_shared());
            if let Some(traffic) = self.traffic.get() {
                traffic.received(dispatched, n);
            }
        }
    }
}
