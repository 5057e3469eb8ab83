//! Lifecycle events and the [`EventBus`] that carries them.
//!
//! The bus is a `tokio::sync::broadcast` ring: publishing writes one slot and wakes
//! subscribers, never waits for them and allocates nothing. A subscriber that falls more
//! than the bus capacity behind loses the oldest events and is told how many with
//! [`Lagged`], instead of making the publisher wait or memory grow. Filtering happens on
//! the subscriber's side, so a publisher's cost does not depend on how many filters exist.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::error::Error;
use crate::id::ConnectionId;
use crate::state::ConnectionState;

/// One thing that happened to one connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Event {
    /// When it happened (wall clock, for logs and exports).
    pub at: SystemTime,
    /// Which connection.
    pub connection: ConnectionId,
    /// The connection's name (its endpoint label unless named otherwise).
    pub name: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// An event stamped with the current time.
    pub fn new(connection: ConnectionId, name: Arc<str>, kind: EventKind) -> Self {
        Self {
            at: SystemTime::now(),
            connection,
            name,
            kind,
        }
    }

    /// The kind without its data, for filtering.
    pub fn event_type(&self) -> EventType {
        self.kind.event_type()
    }

    /// How much the event matters.
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

impl fmt::Display for Event {
    /// `[conn-3] users-api: connected` for a connection's event; `breaker users-api:
    /// open for 5s` for an extension event that names its
    /// [`source`](ExtensionEvent::source), whose id would only be a label.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.extension_source() {
            Some(source) => write!(f, "{source} {}: {}", self.name, self.kind),
            None => write!(f, "[{}] {}: {}", self.connection, self.name, self.kind),
        }
    }
}

/// Health of a connection as judged by its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Not checked yet.
    Unknown,
    /// Checks pass.
    Healthy,
    /// Checks pass, but slowly (latency over the ceiling).
    Degraded,
    /// Checks fail.
    Unhealthy,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        })
    }
}

/// Why a connection ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed the connection cleanly.
    PeerClosed,
    /// The connection broke with an error.
    Error(Arc<Error>),
    /// A keepalive probe failed or timed out: the peer stopped answering.
    ProbeFailed(Arc<Error>),
    /// Our side closed it on request (shutdown).
    Shutdown,
    /// Our side closed it to connect again (restart).
    Restart,
    /// The peer closed with a protocol-level close code, such as a WebSocket close frame.
    /// The transport decides from the code whether the supervisor reconnects
    /// (`reconnect: true`) or gives up and goes to
    /// [`Failed`](crate::ConnectionState::Failed) until restarted.
    CloseCode {
        /// The peer's close code (for WebSocket, 1000 normal closure, 1001 going away...).
        code: u16,
        /// The peer's close reason, possibly empty.
        reason: Arc<str>,
        /// Whether to connect again.
        reconnect: bool,
    },
}

impl DisconnectReason {
    /// Whether a supervisor should connect again after this loss, by default: yes,
    /// except after a close code the transport named final (`CloseCode { reconnect:
    /// false }`, such as a WebSocket 1000) and our own shutdown. A protocol error or a TLS
    /// failure on an *established* connection reconnects too: whether to retry a request
    /// and whether to reconnect a long-lived connection are different questions.
    /// [`Supervisor::reconnect_policy`](crate::Supervisor::reconnect_policy) overrides it.
    pub fn reconnects(&self) -> bool {
        match self {
            Self::Shutdown => false,
            Self::CloseCode { reconnect, .. } => *reconnect,
            _ => true,
        }
    }

    /// The error behind the disconnect, if any.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Self::Error(e) | Self::ProbeFailed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("closed by peer"),
            Self::Error(e) => write!(f, "error: {e}"),
            Self::ProbeFailed(e) => write!(f, "probe failed: {e}"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::Restart => f.write_str("restart"),
            Self::CloseCode { code, reason, .. } if reason.is_empty() => {
                write!(f, "closed by peer with code {code}")
            }
            Self::CloseCode { code, reason, .. } => {
                write!(f, "closed by peer with code {code}: {reason}")
            }
        }
    }
}

/// What happened, with its data.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EventKind {
    /// The connection is established.
    Connected,
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
    /// A new connect attempt will start after `delay`.
    Reconnecting {
        /// The attempt number (1 for the first retry after a loss or failure).
        attempt: u32,
        /// How long until it starts.
        delay: Duration,
    },
    /// The state machine moved.
    StateChanged {
        /// Previous state.
        from: ConnectionState,
        /// New state.
        to: ConnectionState,
    },
    /// The health rating changed.
    HealthChanged {
        /// Previous rating.
        from: HealthStatus,
        /// New rating.
        to: HealthStatus,
    },
    /// An error that did not (yet) change the state, e.g. a failed connect attempt.
    Error {
        /// The error.
        error: Arc<Error>,
    },
    /// An event defined by a crate built on this one: a failover group's switch, a
    /// circuit breaker's transition, a pool's leak report, a retry. Core needs no
    /// variant for each; see [`ExtensionEvent`] and [`EventKind::downcast_ref`].
    Extension(Arc<dyn ExtensionEvent>),
}

/// An event that a crate built on core defines for itself (a failover group's
/// `Failover`, a breaker's `CircuitOpened`, a pool's `ConnectionLeak`), carried as
/// [`EventKind::Extension`] on the same bus as every other event.
///
/// Subscribers select them by [`name`](Self::name) with [`EventFilter::extensions`] and
/// read their data back with [`EventKind::downcast_ref`].
///
/// ```
/// use connection_core::{EventFilter, EventKind, ExtensionEvent, Severity};
/// use std::any::Any;
///
/// #[derive(Debug)]
/// struct CacheEvicted { entries: usize }
///
/// impl std::fmt::Display for CacheEvicted {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "cache evicted {} entries", self.entries)
///     }
/// }
///
/// impl ExtensionEvent for CacheEvicted {
///     fn name(&self) -> &'static str { "cache_evicted" }
///     fn severity(&self) -> Severity { Severity::Info }
///     fn as_any(&self) -> &dyn Any { self }
/// }
///
/// let kind = EventKind::extension(CacheEvicted { entries: 3 });
/// assert_eq!(kind.downcast_ref::<CacheEvicted>().map(|e| e.entries), Some(3));
/// assert_eq!(kind.to_string(), "cache evicted 3 entries");
/// let filter = EventFilter::all().extensions(["cache_evicted"]);
/// # let _ = filter;
/// ```
///
/// Types with a `NAME` constant and a `Display` impl get this trait, and
/// `From<T> for EventKind`, from [`extension_event!`](crate::extension_event).
pub trait ExtensionEvent: fmt::Display + fmt::Debug + Send + Sync + 'static {
    /// A short, stable, snake_case name (`"failover"`, `"circuit_opened"`): what filters
    /// select on.
    fn name(&self) -> &'static str;

    /// How much it matters.
    fn severity(&self) -> Severity;

    /// The event as `Any`, for [`EventKind::downcast_ref`]; implement as `self`.
    fn as_any(&self) -> &dyn std::any::Any;

    /// What published it, when that is not a connection: a noun such as `"breaker"` or
    /// `"retry policy"`. An [`Event`] then displays as `breaker users-api: open for 5s`
    /// rather than as a connection's event (`[conn-3] users-api: ...`). Default `None`:
    /// the event is about the connection it is published under.
    fn source(&self) -> Option<&'static str> {
        None
    }
}

impl EventKind {
    /// An [`EventKind::Extension`] carrying `event`.
    pub fn extension(event: impl ExtensionEvent) -> Self {
        Self::Extension(Arc::new(event))
    }

    /// The extension event of type `T`, if this is one.
    pub fn downcast_ref<T: ExtensionEvent>(&self) -> Option<&T> {
        match self {
            Self::Extension(e) => e.as_any().downcast_ref::<T>(),
            _ => None,
        }
    }

    /// The extension event's name, if this is one.
    pub fn extension_name(&self) -> Option<&'static str> {
        match self {
            Self::Extension(e) => Some(e.name()),
            _ => None,
        }
    }

    /// The extension event's [`source`](ExtensionEvent::source), if this is one that
    /// names it.
    pub fn extension_source(&self) -> Option<&'static str> {
        match self {
            Self::Extension(e) => e.source(),
            _ => None,
        }
    }

    /// The kind without its data.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Connected => EventType::Connected,
            Self::Disconnected { .. } => EventType::Disconnected,
            Self::Reconnecting { .. } => EventType::Reconnecting,
            Self::StateChanged { .. } => EventType::StateChanged,
            Self::HealthChanged { .. } => EventType::HealthChanged,
            Self::Error { .. } => EventType::Error,
            Self::Extension(_) => EventType::Extension,
        }
    }

    /// How much this kind of event matters.
    pub fn severity(&self) -> Severity {
        match self {
            // Giving up is worth a look, but not always an error: a peer's final close
            // code (a WebSocket 1000) is a normal end. An error behind it is published as
            // an `Error` event of its own.
            Self::StateChanged {
                to: ConnectionState::Failed,
                ..
            } => Severity::Warn,
            Self::StateChanged { .. } => Severity::Debug,
            Self::Connected | Self::Reconnecting { .. } => Severity::Info,
            Self::Disconnected {
                reason: DisconnectReason::Shutdown | DisconnectReason::Restart,
            } => Severity::Info,
            Self::HealthChanged {
                to: HealthStatus::Healthy | HealthStatus::Unknown,
                ..
            } => Severity::Info,
            Self::Disconnected { .. } | Self::HealthChanged { .. } => Severity::Warn,
            Self::Error { .. } => Severity::Error,
            Self::Extension(e) => e.severity(),
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected => f.write_str("connected"),
            Self::Disconnected { reason } => write!(f, "disconnected ({reason})"),
            Self::Reconnecting { attempt, delay } => {
                write!(f, "reconnecting (attempt {attempt} in {delay:?})")
            }
            Self::StateChanged { from, to } => write!(f, "state {from} -> {to}"),
            Self::HealthChanged { from, to } => write!(f, "health {from} -> {to}"),
            Self::Error { error } => write!(f, "error: {error}"),
            Self::Extension(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// An [`EventKind`] without its data: what filters select on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// See [`EventKind::Connected`].
    Connected,
    /// See [`EventKind::Disconnected`].
    Disconnected,
    /// See [`EventKind::Reconnecting`].
    Reconnecting,
    /// See [`EventKind::StateChanged`].
    StateChanged,
    /// See [`EventKind::HealthChanged`].
    HealthChanged,
    /// See [`EventKind::Error`].
    Error,
    /// See [`EventKind::Extension`]: every extension event, whatever its name (see
    /// [`EventFilter::extensions`] to pick some).
    Extension,
}

impl EventType {
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// How much an event matters, ordered from least to most.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine detail.
    Debug,
    /// Normal lifecycle.
    Info,
    /// Something degraded or was lost.
    Warn,
    /// Something failed.
    Error,
}

/// Which events a subscriber wants. The default takes everything.
///
/// ```
/// use connection_core::{EventFilter, EventType, Severity};
/// let f = EventFilter::all()
///     .types([EventType::Connected, EventType::Disconnected])
///     .min_severity(Severity::Info);
/// # let _ = f;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EventFilter {
    connections: Option<Vec<ConnectionId>>,
    names: Option<Vec<Arc<str>>>,
    /// Bit set of [`EventType`]s; 0 means all.
    types: u32,
    /// Extension events by name; `None` means all of them (when their type passes).
    extensions: Option<Vec<&'static str>>,
    min_severity: Option<Severity>,
}

impl EventFilter {
    /// Matches every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of this connection (may be called several times to add more).
    pub fn connection(mut self, id: ConnectionId) -> Self {
        self.connections.get_or_insert_with(Vec::new).push(id);
        self
    }

    /// Only events of connections with this name (may be called several times).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.names.get_or_insert_with(Vec::new).push(name.into());
        self
    }

    /// Only these kinds of events.
    pub fn types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.types |= types.into_iter().fold(0, |acc, t| acc | t.bit());
        self
    }

    /// Only extension events with these names (see [`ExtensionEvent::name`]), besides
    /// the types chosen with [`types`](Self::types); may be called several times.
    /// `EventFilter::all().extensions(["failover"])` takes failover events only.
    pub fn extensions(mut self, names: impl IntoIterator<Item = &'static str>) -> Self {
        self.types |= EventType::Extension.bit();
        self.extensions.get_or_insert_with(Vec::new).extend(names);
        self
    }

    /// Only events at least this severe.
    pub fn min_severity(mut self, severity: Severity) -> Self {
        self.min_severity = Some(severity);
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        (self.types == 0 || self.types & event.event_type().bit() != 0)
            && match (&self.extensions, event.kind.extension_name()) {
                (Some(names), Some(name)) => names.contains(&name),
                _ => true,
            }
            && self.min_severity.is_none_or(|min| event.severity() >= min)
            && self
                .connections
                .as_ref()
                .is_none_or(|ids| ids.contains(&event.connection))
            && self
                .names
                .as_ref()
                .is_none_or(|names| names.contains(&event.name))
    }
}

/// The subscriber fell behind and the bus overwrote events it had not read yet.
///
/// `missed` counts every event published while it lagged, whether or not it would have
/// passed the subscriber's filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event subscriber lagged and missed {missed} events")]
pub struct Lagged {
    /// How many events were lost.
    pub missed: u64,
}

/// A publish/subscribe channel for [`Event`]s. Cloning gives another handle to the same
/// bus.
///
/// ```
/// use connection_core::{ConnectionId, Event, EventBus, EventFilter, EventKind, EventType};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = EventBus::new(64);
/// let mut connected = bus.subscribe(EventFilter::all().types([EventType::Connected]));
/// let id = ConnectionId::next();
/// bus.publish(Event::new(id, "db".into(), EventKind::Reconnecting {
///     attempt: 1,
///     delay: std::time::Duration::ZERO,
/// }));
/// bus.publish(Event::new(id, "db".into(), EventKind::Connected));
/// let event = connected.next().await.unwrap().unwrap();
/// assert_eq!(event.event_type(), EventType::Connected);
/// # }
/// ```
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// Capacity used by [`Default`].
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// The most slots a bus has: every slot is allocated up front, so a larger request
    /// is clamped rather than allowed to exhaust memory.
    pub const MAX_CAPACITY: usize = 1 << 16;

    /// A bus that keeps up to `capacity` unread events per subscriber before the oldest
    /// are overwritten (clamped to `1..=`[`MAX_CAPACITY`](Self::MAX_CAPACITY)).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.clamp(1, Self::MAX_CAPACITY));
        Self { tx }
    }

    /// Sends an event to every current subscriber. Never blocks; with no subscribers the
    /// event is dropped.
    pub fn publish(&self, event: Event) {
        // An error only means nobody is listening, which is fine.
        let _ = self.tx.send(event);
    }

    /// A stream of the events published from now on that pass `filter`.
    pub fn subscribe(&self, filter: EventFilter) -> EventStream {
        EventStream {
            inner: BroadcastStream::new(self.tx.subscribe()),
            filter,
        }
    }

    /// Whether `other` is a handle to this same bus (not merely an equal one), e.g. to
    /// avoid forwarding a bus's events onto itself.
    pub fn same_bus(&self, other: &EventBus) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// How many subscribers are listening.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

/// The events of one subscription: `Ok(event)` for each matching event, `Err(Lagged)`
/// when some were lost. Ends when every [`EventBus`] handle is dropped.
pub struct EventStream {
    inner: BroadcastStream<Event>,
    filter: EventFilter,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    if self.filter.matches(&event) {
                        return Poll::Ready(Some(Ok(event)));
                    }
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    return Poll::Ready(Some(Err(Lagged { missed })));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Implements [`ExtensionEvent`] and `From<T> for EventKind` for an event type that has
/// an associated `NAME: &'static str` and a `Display` impl; the second argument is its
/// [`Severity`] variant, and an optional third, `source = "..."`, its
/// [`ExtensionEvent::source`].
///
/// ```
/// use connection_core::{ConnectionId, Event, EventKind, Severity};
///
/// #[derive(Debug)]
/// pub struct QuotaLow { pub left: u32 }
///
/// impl QuotaLow {
///     pub const NAME: &'static str = "quota_low";
/// }
///
/// impl std::fmt::Display for QuotaLow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "{} calls left", self.left)
///     }
/// }
///
/// connection_core::extension_event!(QuotaLow, Warn, source = "quota");
///
/// let kind: EventKind = QuotaLow { left: 3 }.into();
/// assert_eq!(kind.severity(), Severity::Warn);
/// assert_eq!(kind.extension_name(), Some("quota_low"));
/// let event = Event::new(ConnectionId::next(), "billing".into(), kind);
/// assert_eq!(event.to_string(), "quota billing: 3 calls left");
/// ```
#[macro_export]
macro_rules! extension_event {
    ($ty:ty, $severity:ident) => {
        $crate::extension_event!(@impl $ty, $severity, ::std::option::Option::None);
    };
    ($ty:ty, $severity:ident, source = $source:literal) => {
        $crate::extension_event!(@impl $ty, $severity, ::std::option::Option::Some($source));
    };
    (@impl $ty:ty, $severity:ident, $source:expr) => {
        impl $crate::ExtensionEvent for $ty {
            fn name(&self) -> &'static str {
                <$ty>::NAME
            }

            fn severity(&self) -> $crate::Severity {
                $crate::Severity::$severity
            }

            fn as_any(&self) -> &dyn ::std::any::Any {
                self
            }

            fn source(&self) -> ::std::option::Option<&'static str> {
                $source
            }
        }

        impl ::std::convert::From<$ty> for $crate::EventKind {
            fn from(event: $ty) -> Self {
                $crate::EventKind::extension(event)
            }
        }
    };
}
