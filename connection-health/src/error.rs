//! [`HealthError`]: the one error type of this crate.

use std::sync::Arc;

use connection_core::{ConfigError, Endpoint, Error, HealthStatus, RejectReason, Rejected};

/// What went wrong in the manager, a health check or a failover group.
///
/// Converts into [`connection_core::Error`] so callers can keep one error type; every
/// variant names the connection, route or group it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// A connection with this name is already registered.
    #[error("a connection named `{name}` is already registered")]
    DuplicateName {
        /// The name asked for.
        name: Arc<str>,
    },
    /// No connection with this name is registered.
    #[error("no connection named `{name}`")]
    UnknownConnection {
        /// The name asked for.
        name: Arc<str>,
    },
    /// The manager already holds `max` connections.
    #[error(
        "cannot add `{name}`: the manager is at its limit of {max} connections (setting `max_connections`)"
    )]
    AtCapacity {
        /// The connection that was refused.
        name: Arc<str>,
        /// The configured `max_connections`.
        max: usize,
    },
    /// The name is longer than the manager takes.
    #[error(
        "cannot add `{start}…`: its name is {len} bytes, over the limit of {max} (setting `max_name_len`)"
    )]
    NameTooLong {
        /// The name's first characters (at most 32), to tell which it was.
        start: Arc<str>,
        /// The name's length in bytes.
        len: usize,
        /// The configured `max_name_len`.
        max: usize,
    },
    /// The failover group has no route with this name.
    #[error("failover group `{group}` has no route `{route}`")]
    UnknownRoute {
        /// The group.
        group: Arc<str>,
        /// The route asked for.
        route: Arc<str>,
    },
    /// The route cannot be made primary because it is not healthy.
    #[error("route `{route}` of failover group `{group}` ({endpoint}) is {status}")]
    RouteUnhealthy {
        /// The group.
        group: Arc<str>,
        /// The route asked for.
        route: Arc<str>,
        /// Where the route connects.
        endpoint: Endpoint,
        /// Its health.
        status: HealthStatus,
    },
    /// No route of the failover group is healthy.
    #[error("no route of failover group `{group}` is healthy (preferred: {preferred})")]
    NoHealthyRoute {
        /// The group.
        group: Arc<str>,
        /// The endpoint of the group's preferred route.
        preferred: Endpoint,
    },
    /// The manager has been shut down; it takes no new connections.
    #[error("the connection manager is shut down (refused `{name}`)")]
    ShutDown {
        /// The connection the refused operation was about.
        name: Arc<str>,
    },
    /// The connection's I/O handle is of another type than the one asked for.
    #[error("connection `{name}` carries `{actual}`, not `{requested}`")]
    IoType {
        /// The connection.
        name: Arc<str>,
        /// The I/O handle type asked for.
        requested: &'static str,
        /// The connection's I/O handle type.
        actual: &'static str,
    },
    /// A setting was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Starting or using the connection `name` failed.
    #[error("connection `{name}`: {source}")]
    Connection {
        /// The connection.
        name: Arc<str>,
        /// What failed.
        #[source]
        source: Error,
    },
}

impl HealthError {
    /// Whether asking again later may succeed (capacity, an unhealthy route, no healthy
    /// route, or a retryable connection error).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::AtCapacity { .. } | Self::RouteUnhealthy { .. } | Self::NoHealthyRoute { .. } => {
                true
            }
            Self::Connection { source, .. } => source.is_retryable(),
            Self::DuplicateName { .. }
            | Self::UnknownConnection { .. }
            | Self::UnknownRoute { .. }
            | Self::IoType { .. }
            | Self::ShutDown { .. }
            | Self::NameTooLong { .. }
            | Self::Config(_) => false,
        }
    }
}

impl From<HealthError> for Error {
    fn from(e: HealthError) -> Self {
        match e {
            HealthError::Config(c) => Error::Config(c),
            HealthError::Connection { source, .. } => source,
            // A full manager is a concurrency limit, and like one it may pass later.
            HealthError::AtCapacity { .. } => {
                Error::Rejected(Rejected::new(RejectReason::BulkheadFull))
            }
            HealthError::RouteUnhealthy { ref endpoint, .. } => Error::Other {
                endpoint: endpoint.clone(),
                retryable: true,
                source: Arc::new(e),
            },
            HealthError::NoHealthyRoute { ref preferred, .. } => Error::Other {
                endpoint: preferred.clone(),
                retryable: true,
                source: Arc::new(e),
            },
            // Naming errors are a caller's bad argument: core's Config says which one.
            HealthError::DuplicateName { .. }
            | HealthError::UnknownConnection { .. }
            | HealthError::UnknownRoute { .. }
            | HealthError::NameTooLong { .. } => {
                Error::Config(ConfigError::new("name", e.to_string()))
            }
            HealthError::IoType { .. } => Error::Config(ConfigError::new("io", e.to_string())),
            HealthError::ShutDown { .. } => {
                Error::Config(ConfigError::new("manager", e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<HealthError>();
    }

    #[test]
    fn converts_into_core_errors() {
        let e: Error = HealthError::UnknownConnection { name: "db".into() }.into();
        assert!(matches!(&e, Error::Config(c) if c.field() == "name"), "{e}");
        assert!(e.to_string().contains("db"));
        let e: Error = HealthError::AtCapacity {
            name: "x".into(),
            max: 3,
        }
        .into();
        assert!(e.is_retryable());
        let too_long = HealthError::NameTooLong {
            start: "conn".into(),
            len: 300,
            max: 256,
        };
        assert!(!too_long.is_retryable());
        assert!(too_long.to_string().contains("max_name_len"), "{too_long}");
        let e: Error = too_long.into();
        assert!(matches!(&e, Error::Config(c) if c.field() == "name"), "{e}");
        let ep = Endpoint::host_port("127.0.0.1", 80).expect("valid endpoint");
        let e: Error = HealthError::RouteUnhealthy {
            group: "g".into(),
            route: "a".into(),
            endpoint: ep.clone(),
            status: HealthStatus::Unhealthy,
        }
        .into();
        assert_eq!(e.endpoint(), Some(&ep));
        assert!(e.to_string().contains("unhealthy"), "{e}");
    }
}
