//! What the parser yields: events, comments and reconnection-time changes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One item of an event stream, in the order the server sent it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseItem {
    /// A dispatched event (a block ended by a blank line that had at least one `data`
    /// field).
    Event(SseEvent),
    /// A comment line (`:text`): its text after the colon, exactly (no space removed).
    /// Servers send them as heartbeats; the processing model ignores them, so they
    /// never change an event.
    Comment(String),
    /// A `retry` field made of ASCII digits: the server's new reconnection time. It
    /// takes effect at once (it is not tied to an event); the client uses it as the base
    /// of its reconnect delays.
    Retry(Duration),
}

impl SseItem {
    /// The event, if this item is one.
    pub fn as_event(&self) -> Option<&SseEvent> {
        match self {
            Self::Event(e) => Some(e),
            _ => None,
        }
    }

    /// The event, if this item is one.
    pub fn into_event(self) -> Option<SseEvent> {
        match self {
            Self::Event(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Debug for SseItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event(e) => e.fmt(f),
            Self::Comment(c) => f.debug_tuple("Comment").field(c).finish(),
            Self::Retry(d) => f.debug_tuple("Retry").field(d).finish(),
        }
    }
}

/// A dispatched event: its type, its data and the last event ID at the time it was
/// dispatched (the WHATWG `MessageEvent`'s `type`, `data` and `lastEventId`).
///
/// ```
/// use connection_transport_sse::SseEvent;
///
/// let e = SseEvent::new("", "hello", "7");
/// assert_eq!((e.event_type(), e.data(), e.id()), ("message", "hello", "7"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Empty for the default type, `message`: most events have no `event` field, and
    /// this spares them an allocation.
    event_type: String,
    data: String,
    /// Shared by every event dispatched under the same ID.
    id: Arc<str>,
}

impl SseEvent {
    /// An event of type `event_type` (empty means `message`), with `data` and `id`.
    pub fn new(
        event_type: impl Into<String>,
        data: impl Into<String>,
        id: impl Into<Arc<str>>,
    ) -> Self {
        let mut event_type = event_type.into();
        if event_type == "message" {
            event_type.clear();
        }
        Self {
            event_type,
            data: data.into(),
            id: id.into(),
        }
    }

    pub(crate) fn from_parts(event_type: String, data: String, id: Arc<str>) -> Self {
        Self {
            event_type,
            data,
            id,
        }
    }

    /// The event type: the last `event` field of the block, or `message`.
    pub fn event_type(&self) -> &str {
        if self.event_type.is_empty() {
            "message"
        } else {
            &self.event_type
        }
    }

    /// The data: the block's `data` fields joined by line feeds.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The data, owned.
    pub fn into_data(self) -> String {
        self.data
    }

    /// The last event ID when the event was dispatched: the latest `id` field seen so
    /// far on the stream (not only in this block), empty when there is none.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The last event ID, shared.
    pub fn id_shared(&self) -> &Arc<str> {
        &self.id
    }
}

impl fmt::Debug for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEvent")
            .field("type", &self.event_type())
            .field("data", &self.data)
            .field("id", &self.id())
            .finish()
    }
}
