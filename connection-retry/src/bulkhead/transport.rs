//! A bulkhead as a [`Transport`] wrapper: a bound on open connections.

use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Traffic,
    Transport,
};

use super::{Bulkhead, BulkheadPermit};

/// A [`Transport`] that keeps at most the bulkhead's limit of connections open at once:
/// each connection holds its slot until dropped. Clones share the bulkhead.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<T> {
    inner: T,
    bulkhead: Bulkhead,
}

impl<T> ConcurrencyLimit<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, bulkhead: Bulkhead) -> Self {
        Self { inner, bulkhead }
    }
}

impl<T: Transport> Transport for ConcurrencyLimit<T> {
    type Connection = Limited<T::Connection>;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        let endpoint = self.inner.endpoint();
        let permit = self
            .bulkhead
            .acquire()
            .await
            .map_err(|r| Error::Rejected(r.endpoint(endpoint)))?;
        let conn = self.inner.connect().await?;
        Ok(Limited {
            conn,
            _permit: permit,
        })
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

/// A connection holding a bulkhead slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Limited<C> {
    conn: C,
    _permit: BulkheadPermit,
}

impl<C> Limited<C> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.conn
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C: Connection> Connection for Limited<C> {
    type Io = C::Io;

    fn io(&self) -> C::Io {
        self.conn.io()
    }

    fn bind_traffic(&mut self, traffic: Traffic) {
        self.conn.bind_traffic(traffic);
    }

    fn id(&self) -> ConnectionId {
        self.conn.id()
    }

    fn state(&self) -> ConnectionState {
        self.conn.state()
    }

    fn probe(&mut self) -> impl Future<Output = Result<Duration, Error>> + Send {
        self.conn.probe()
    }

    fn closed(&mut self) -> impl Future<Output = DisconnectReason> + Send {
        self.conn.closed()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Error>> + Send {
        self.conn.close()
    }
}
