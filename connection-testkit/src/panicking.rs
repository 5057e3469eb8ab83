//! [`Panicking`]: a transport wrapper whose code panics on demand, for testing that the
//! tasks running transport code (supervisors, health monitors, pool maintainers) do not
//! die silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{
    Connection, ConnectionId, ConnectionState, DisconnectReason, Endpoint, Error, Traffic,
    Transport,
};

/// The message every panic of a [`Panicking`] transport carries, to find in errors.
pub const PANIC_MESSAGE: &str = "testkit: panic on purpose";

#[derive(Debug, Default)]
struct Switches {
    connect: AtomicBool,
    probe: AtomicBool,
    close: AtomicBool,
    connects: AtomicU64,
}

/// Wraps a transport; each switch makes one method panic (with [`PANIC_MESSAGE`]) from
/// the moment it is turned on, in connections made before as well as after. Clones share
/// the switches, so a test keeps a clone to flip them while a supervisor or a pool owns
/// the other.
///
/// ```
/// use connection_core::Transport;
/// use connection_testkit::{Panicking, TcpEchoServer, TcpEchoTransport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TcpEchoServer::start().await?;
/// let transport = Panicking::new(TcpEchoTransport::new(server.addr())?);
/// let control = transport.clone();
/// control.panic_on_connect(true);
/// let attempt = tokio::spawn(async move { transport.connect().await.map(drop) });
/// assert!(attempt.await.unwrap_err().is_panic());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Panicking<T> {
    inner: T,
    switches: Arc<Switches>,
}

impl<T> Panicking<T> {
    /// `inner`, with every switch off.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            switches: Arc::default(),
        }
    }

    /// Makes `connect` panic (before it tries).
    pub fn panic_on_connect(&self, on: bool) {
        self.switches.connect.store(on, Ordering::Release);
    }

    /// Makes connections' `probe` panic.
    pub fn panic_on_probe(&self, on: bool) {
        self.switches.probe.store(on, Ordering::Release);
    }

    /// Makes connections' `close` panic.
    pub fn panic_on_close(&self, on: bool) {
        self.switches.close.store(on, Ordering::Release);
    }

    /// How many times `connect` was called, panicking or not.
    pub fn connects(&self) -> u64 {
        self.switches.connects.load(Ordering::Acquire)
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

fn check(switch: &AtomicBool) {
    if switch.load(Ordering::Acquire) {
        panic!("{PANIC_MESSAGE}");
    }
}

impl<T: Transport> Transport for Panicking<T> {
    type Connection = PanickingConnection<T::Connection>;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        self.switches.connects.fetch_add(1, Ordering::AcqRel);
        check(&self.switches.connect);
        let inner = self.inner.connect().await?;
        Ok(PanickingConnection {
            inner,
            switches: self.switches.clone(),
        })
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

/// A connection of a [`Panicking`] transport.
#[derive(Debug)]
pub struct PanickingConnection<C> {
    inner: C,
    switches: Arc<Switches>,
}

impl<C> PanickingConnection<C> {
    /// The wrapped connection.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: Connection> Connection for PanickingConnection<C> {
    type Io = C::Io;

    fn io(&self) -> C::Io {
        self.inner.io()
    }

    fn bind_traffic(&mut self, traffic: Traffic) {
        self.inner.bind_traffic(traffic);
    }

    fn id(&self) -> ConnectionId {
        self.inner.id()
    }

    fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    async fn probe(&mut self) -> Result<Duration, Error> {
        check(&self.switches.probe);
        self.inner.probe().await
    }

    async fn closed(&mut self) -> DisconnectReason {
        self.inner.closed().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        check(&self.switches.close);
        self.inner.close().await
    }
}
