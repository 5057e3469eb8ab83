//! [`ListenerSettings`]: a [`Listener`](crate::Listener)'s limits as plain data, from serde
//! or `CONNECTION_LISTENER_*` variables. TLS is not among them (a certificate and key are
//! live objects, given to [`ListenerBuilder::tls`](crate::ListenerBuilder::tls)).

use std::time::Duration;

use connection_core::ConfigError;
use connection_core::env::{EnvSection, EnvVar, load_env};
use serde::Deserialize;

use crate::listener::ListenerBuilder;

/// The prefix of the variables [`ListenerSettings::from_env`] reads.
pub const LISTENER_ENV_PREFIX: &str = "CONNECTION_LISTENER_";

/// A listener's limits as plain data; each one left out keeps the builder's default.
///
/// ```
/// use connection_transport_tcp::ListenerSettings;
///
/// let settings = ListenerSettings::from_vars([
///     ("CONNECTION_LISTENER_MAX_CONNECTIONS", "100"),
///     ("CONNECTION_LISTENER_READ_IDLE_TIMEOUT_MS", "0"),
/// ])?;
/// let builder = settings.into_builder()?; // then .tls(..) if wanted, and .bind(addr)
/// # drop(builder);
///
/// let err = ListenerSettings::from_vars([("CONNECTION_LISTENER_MAX_CONNECTIONS", "0")])
///     .unwrap_err();
/// assert_eq!(err.variable(), Some("CONNECTION_LISTENER_MAX_CONNECTIONS"));
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ListenerSettings {
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// TLS handshakes running at once.
    pub max_handshakes: Option<usize>,
    /// Bound on waiting for a handshake slot, and then on the handshake, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// No frame for this long ends a handler's stream, ms; 0 turns it off.
    pub read_idle_timeout_ms: Option<u64>,
    /// The kernel's accept queue length.
    pub backlog: Option<u32>,
    /// `TCP_NODELAY` on accepted sockets.
    pub nodelay: Option<bool>,
    /// Events a slow subscriber may fall behind.
    pub event_capacity: Option<usize>,
}

impl ListenerSettings {
    /// The `CONNECTION_LISTENER_*` variables [`from_env`](Self::from_env) reads.
    pub const ENV: EnvSection = EnvSection::new(
        LISTENER_ENV_PREFIX,
        &[
            EnvVar::new(
                "CONNECTION_LISTENER_MAX_CONNECTIONS",
                "max_connections",
                "1024",
                "connections open at once; one more is refused, never queued",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_MAX_HANDSHAKES",
                "max_handshakes",
                "64",
                "TLS handshakes running at once",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_HANDSHAKE_TIMEOUT_MS",
                "handshake_timeout",
                "10000",
                "bound on waiting for a handshake slot, and then on the handshake, ms",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_READ_IDLE_TIMEOUT_MS",
                "read_idle_timeout",
                "300000",
                "no frame for this long ends a handler's stream, ms (0 = never)",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_BACKLOG",
                "backlog",
                "1024",
                "the kernel's accept queue length",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_NODELAY",
                "nodelay",
                "true",
                "set TCP_NODELAY on accepted sockets",
            ),
            EnvVar::new(
                "CONNECTION_LISTENER_EVENT_CAPACITY",
                "event_capacity",
                "64",
                "listener events a slow subscriber may fall behind",
            ),
        ],
    );

    /// Reads the `CONNECTION_LISTENER_*` environment variables; an unknown name, a value
    /// of the wrong type, or one the builder refuses is an error naming the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from the given pairs.
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        load_env(&Self::ENV, vars, |s: Self| {
            s.clone().into_builder().map(drop)?;
            Ok(s)
        })
    }

    /// A builder with these settings over the defaults, validated.
    pub fn into_builder(self) -> Result<ListenerBuilder, ConfigError> {
        let b = self.apply(ListenerBuilder::default());
        b.validate()?;
        Ok(b)
    }

    /// Applies the settings that are present to `builder`.
    pub fn apply(self, mut b: ListenerBuilder) -> ListenerBuilder {
        let ms = Duration::from_millis;
        if let Some(v) = self.max_connections {
            b = b.max_connections(v);
        }
        if let Some(v) = self.max_handshakes {
            b = b.max_handshakes(v);
        }
        if let Some(v) = self.handshake_timeout_ms {
            b = b.handshake_timeout(ms(v));
        }
        match self.read_idle_timeout_ms {
            Some(0) => b = b.read_idle_timeout(None),
            Some(v) => b = b.read_idle_timeout(Some(ms(v))),
            None => {}
        }
        if let Some(v) = self.backlog {
            b = b.backlog(v);
        }
        if let Some(v) = self.nodelay {
            b = b.nodelay(v);
        }
        if let Some(v) = self.event_capacity {
            b = b.event_capacity(v);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_builders() {
        let vars = ListenerSettings::ENV
            .vars()
            .iter()
            .map(|v| (v.name(), v.default_value()));
        let from_env = ListenerSettings::from_vars(vars)
            .unwrap()
            .into_builder()
            .unwrap();
        assert_eq!(
            format!("{from_env:?}"),
            format!("{:?}", ListenerBuilder::default())
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("CONNECTION_LISTENER_MAX_HANDSHAKES", "0"),
            ("CONNECTION_LISTENER_HANDSHAKE_TIMEOUT_MS", "0"),
            ("CONNECTION_LISTENER_NODELAY", "perhaps"),
            ("CONNECTION_LISTENER_MAX_CONECTIONS", "10"),
        ] {
            let err = ListenerSettings::from_vars([(name, value)]).unwrap_err();
            assert_eq!(err.variable(), Some(name), "{err}");
        }
    }
}
