//! Where policies report what they do.

use std::fmt;
use std::sync::Arc;

use connection_core::{ConnectionId, Event, EventBus, EventKind};

/// An [`EventBus`] plus the identity that policy events are published under.
///
/// Policies hold an `Option<EventSink>`: without one they publish nothing and pay
/// nothing.
#[derive(Clone)]
pub struct EventSink {
    bus: EventBus,
    id: ConnectionId,
    name: Arc<str>,
}

impl EventSink {
    /// Publishes on `bus` as connection `id` named `name`.
    pub fn new(bus: EventBus, id: ConnectionId, name: impl Into<Arc<str>>) -> Self {
        Self {
            bus,
            id,
            name: name.into(),
        }
    }

    /// Publishes on `bus` under a fresh id.
    pub fn named(bus: EventBus, name: impl Into<Arc<str>>) -> Self {
        Self::new(bus, ConnectionId::next(), name)
    }

    /// Publishes one event. Never blocks.
    pub fn publish(&self, kind: EventKind) {
        self.bus
            .publish(Event::new(self.id, self.name.clone(), kind));
    }

    /// The bus.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}
