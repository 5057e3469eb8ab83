//! Where policies report what they do, and the events they report: extension events
//! ([`connection_core::ExtensionEvent`]) on the same bus as connection events. Select
//! them with `EventFilter::extensions([CircuitOpened::NAME, ...])`, read them with
//! `event.kind.downcast_ref::<CircuitOpened>()`. Each names its source, so a whole
//! event displays as what published it: `breaker users-api: open for 5s`,
//! `retry policy users-api: retrying (attempt 2 in 100ms) after: ...`,
//! `rate limiter users-api: no permit for 20ms`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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

/// A retry policy will run the operation again after `delay`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retrying {
    /// The attempt about to be made (2 for the first retry).
    pub attempt: u32,
    /// How long until it starts.
    pub delay: Duration,
    /// The failure that caused the retry, as text (the operation's error type is the
    /// caller's, so only its message travels).
    pub error: Arc<str>,
}

/// A circuit breaker opened; calls are refused until the wait is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitOpened {
    /// How long until it admits a probe call.
    pub wait: Duration,
}

/// A circuit breaker admits probe calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitHalfOpen;

/// A circuit breaker closed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitClosed;

/// A rate limiter delayed or refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    /// How long until a permit is available.
    pub retry_after: Duration,
}

impl Retrying {
    /// The name filters select it by.
    pub const NAME: &'static str = "retrying";

    pub(crate) fn new(attempt: u32, delay: Duration, error: Arc<str>) -> Self {
        Self {
            attempt,
            delay,
            error,
        }
    }
}

impl CircuitOpened {
    /// The name filters select it by.
    pub const NAME: &'static str = "circuit_opened";

    pub(crate) fn new(wait: Duration) -> Self {
        Self { wait }
    }
}

impl CircuitHalfOpen {
    /// The name filters select it by.
    pub const NAME: &'static str = "circuit_half_open";
}

impl CircuitClosed {
    /// The name filters select it by.
    pub const NAME: &'static str = "circuit_closed";
}

impl RateLimited {
    /// The name filters select it by.
    pub const NAME: &'static str = "rate_limited";

    pub(crate) fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }
}

impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retrying (attempt {} in {:?}) after: {}",
            self.attempt, self.delay, self.error
        )
    }
}

impl fmt::Display for CircuitOpened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wait == Duration::MAX {
            f.write_str("open until reset (isolated)")
        } else {
            write!(f, "open for {:?}", self.wait)
        }
    }
}

impl fmt::Display for CircuitHalfOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("half-open")
    }
}

impl fmt::Display for CircuitClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("closed")
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no permit for {:?}", self.retry_after)
    }
}

// Each names its source, so that a whole event reads `breaker users-api: open for 5s`
// rather than like a connection's event: the id under a policy's sink is only a label.
// Retries and throttling are routine; an open circuit means a dependency is failing.
connection_core::extension_event!(Retrying, Debug, source = "retry policy");
connection_core::extension_event!(CircuitOpened, Warn, source = "breaker");
connection_core::extension_event!(CircuitHalfOpen, Info, source = "breaker");
connection_core::extension_event!(CircuitClosed, Info, source = "breaker");
connection_core::extension_event!(RateLimited, Debug, source = "rate limiter");

#[cfg(test)]
mod tests {
    use connection_core::{Event, EventKind};

    use super::*;

    #[test]
    fn policy_events_read_as_what_published_them() {
        let event = |kind: EventKind| {
            Event::new(ConnectionId::next(), "users-api".into(), kind).to_string()
        };
        assert_eq!(
            event(CircuitOpened::new(Duration::from_millis(300)).into()),
            "breaker users-api: open for 300ms"
        );
        assert_eq!(
            event(CircuitOpened::new(Duration::MAX).into()),
            "breaker users-api: open until reset (isolated)"
        );
        assert_eq!(
            event(CircuitHalfOpen.into()),
            "breaker users-api: half-open"
        );
        assert_eq!(event(CircuitClosed.into()), "breaker users-api: closed");
        assert_eq!(
            event(Retrying::new(2, Duration::from_millis(50), "busy".into()).into()),
            "retry policy users-api: retrying (attempt 2 in 50ms) after: busy"
        );
        assert_eq!(
            event(RateLimited::new(Duration::from_millis(20)).into()),
            "rate limiter users-api: no permit for 20ms"
        );
        // A connection's own events keep their id.
        let id = ConnectionId::next();
        let connected = Event::new(id, "users-api".into(), EventKind::Connected).to_string();
        assert!(
            connected.starts_with(&format!("[{id}] users-api: ")),
            "{connected}"
        );
    }
}
