//! The connection state machine.
//!
//! Every legal transition is listed in one table, [`ConnectionState::can_transition_to`],
//! and everything that changes a state goes through [`ConnectionState::transition`], so an
//! illegal move is refused in one place instead of being prevented by convention in many.
//!
//! ```text
//!                  +------------------------------------------+
//!                  v                                          |
//!  Disconnected -> Connecting -> Connected -> Reconnecting ---+
//!        ^              |   \         |   \          |
//!        |              |    \        |    \         v
//!        +--------------|-----\-------+     \----> Failed --(restart)--> Connecting
//!                       |      \                     |
//!                       |       +--> Reconnecting    |
//!                       v                            v
//!              Closed  (terminal: reached from every state by shutdown)
//! ```
//!
//! A connection lost for a reason retrying will not fix (a final close code, a
//! non-retryable error) goes from Connected straight to Failed.

use std::fmt;

/// Where a connection is in its life.
///
/// ```
/// use connection_core::ConnectionState::*;
/// assert!(Connecting.can_transition_to(Connected));
/// assert!(!Closed.can_transition_to(Connecting));
/// assert!(Connected.transition(Connecting).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Not connected and not trying to be: the initial state.
    Disconnected,
    /// A connect attempt is in flight.
    Connecting,
    /// Connected and usable.
    Connected,
    /// Lost or failed to connect; waiting for the backoff delay before the next attempt.
    Reconnecting,
    /// Gave up: a non-retryable error, or the backoff ran out of attempts. Only an explicit
    /// restart leaves this state.
    Failed,
    /// Shut down on request. Terminal.
    Closed,
}

impl ConnectionState {
    /// All states, in declaration order.
    pub const ALL: [ConnectionState; 6] = [
        Self::Disconnected,
        Self::Connecting,
        Self::Connected,
        Self::Reconnecting,
        Self::Failed,
        Self::Closed,
    ];

    /// Whether moving from `self` to `next` is legal. Staying in the same state is not a
    /// transition and is refused, so a no-op never shows up as a state-change event.
    pub const fn can_transition_to(self, next: ConnectionState) -> bool {
        use ConnectionState::*;
        matches!(
            (self, next),
            (Disconnected, Connecting)
                | (Connecting, Connected | Reconnecting | Failed | Disconnected)
                // Lost for a reason retrying will not fix (a final close code, a
                // non-retryable error): give up without a pointless Reconnecting.
                | (Connected, Reconnecting | Disconnected | Failed)
                | (Reconnecting, Connecting | Failed)
                | (Failed, Connecting)
                | (
                    Disconnected | Connecting | Connected | Reconnecting | Failed,
                    Closed
                )
        )
    }

    /// Returns `next` if the move is legal, or the refused transition.
    pub const fn transition(
        self,
        next: ConnectionState,
    ) -> Result<ConnectionState, IllegalTransition> {
        if self.can_transition_to(next) {
            Ok(next)
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }

    /// `true` for [`Connected`](Self::Connected).
    pub const fn is_connected(self) -> bool {
        matches!(self, Self::Connected)
    }

    /// `true` for states no automatic process leaves: [`Failed`](Self::Failed) and
    /// [`Closed`](Self::Closed).
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Closed)
    }

    /// Lower-case name, as used in events, metrics labels and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change the state machine refuses. Seeing one is a bug in the code that asked
/// for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal connection state transition from {from} to {to}")]
pub struct IllegalTransition {
    /// The state the connection was in.
    pub from: ConnectionState,
    /// The state that was asked for.
    pub to: ConnectionState,
}

#[cfg(test)]
mod tests {
    use super::ConnectionState::{self, *};

    #[test]
    fn legal_transitions_are_exactly_the_table() {
        let legal: &[(ConnectionState, ConnectionState)] = &[
            (Disconnected, Connecting),
            (Disconnected, Closed),
            (Connecting, Connected),
            (Connecting, Reconnecting),
            (Connecting, Failed),
            (Connecting, Disconnected),
            (Connecting, Closed),
            (Connected, Reconnecting),
            (Connected, Disconnected),
            (Connected, Failed),
            (Connected, Closed),
            (Reconnecting, Connecting),
            (Reconnecting, Failed),
            (Reconnecting, Closed),
            (Failed, Connecting),
            (Failed, Closed),
        ];
        for from in ConnectionState::ALL {
            for to in ConnectionState::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
                assert_eq!(from.transition(to).is_ok(), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn closed_is_terminal_and_self_loops_are_refused() {
        for s in ConnectionState::ALL {
            assert!(!Closed.can_transition_to(s));
            assert!(!s.can_transition_to(s));
        }
        let err = Connected.transition(Connecting).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal connection state transition from connected to connecting"
        );
    }
}
