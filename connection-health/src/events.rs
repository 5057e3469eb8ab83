//! The failover groups' events, published as extension events
//! ([`connection_core::ExtensionEvent`]) on the manager's bus under the group's own id
//! and name: select them with `EventFilter::extensions([Failover::NAME,
//! PrimaryChanged::NAME])`, read them with `event.kind.downcast_ref::<Failover>()`.

use std::fmt;
use std::sync::Arc;

use connection_core::task::TaskEnded;

/// A failover group moved traffic from one route to another because the primary
/// stopped being usable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failover {
    /// The route that was primary, if any.
    pub from: Option<Arc<str>>,
    /// The new primary route.
    pub to: Arc<str>,
    /// Why the group failed over.
    pub reason: Arc<str>,
}

/// The primary of a group changed for a reason other than failure (a manual switch,
/// or the automatic return to the preferred route).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrimaryChanged {
    /// The previous primary, if any.
    pub from: Option<Arc<str>>,
    /// The new primary.
    pub to: Arc<str>,
}

/// The manager's health monitor panicked (in a failover group's reaction, say) and was
/// started again; ratings are kept, probes that were running are started over. Also
/// counted in `Statistics::monitor_restarts`. Published under the monitor's own id,
/// with the name `health-monitor`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorRestarted {
    /// What ended the run, with the panic message.
    pub ended: TaskEnded,
    /// Restarts so far, this one included.
    pub restarts: u64,
}

impl MonitorRestarted {
    /// The name filters select it by.
    pub const NAME: &'static str = "monitor_restarted";
}

impl fmt::Display for MonitorRestarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; started again (restart {})",
            self.ended, self.restarts
        )
    }
}

impl Failover {
    /// The name filters select it by.
    pub const NAME: &'static str = "failover";
}

impl PrimaryChanged {
    /// The name filters select it by.
    pub const NAME: &'static str = "primary_changed";
}

impl fmt::Display for Failover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failover {} -> {} ({})",
            self.from.as_deref().unwrap_or("none"),
            self.to,
            self.reason
        )
    }
}

impl fmt::Display for PrimaryChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "primary {} -> {}",
            self.from.as_deref().unwrap_or("none"),
            self.to
        )
    }
}

connection_core::extension_event!(Failover, Warn);
connection_core::extension_event!(PrimaryChanged, Info);
connection_core::extension_event!(MonitorRestarted, Error);
