//! A circuit breaker as a [`Transport`] wrapper.

use connection_core::{Endpoint, Error, Transport};

use super::CircuitBreaker;

/// A [`Transport`] whose connects go through a [`CircuitBreaker`]: while the circuit
/// is open, `connect` fails at once with [`Error::Rejected`] (reason
/// [`CircuitOpen`](connection_core::RejectReason::CircuitOpen), the endpoint, and when
/// a probe will be admitted) without touching the network. Connect errors count as
/// the breaker's failure predicate says.
///
/// Clones share the breaker, and so does any other transport or operation given a
/// clone of it.
///
/// ```
/// use connection_core::{Error, RejectReason, Transport};
/// use connection_retry::breaker::{CircuitBreak, CircuitBreaker};
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = TcpEchoServer::start().await?;
/// let inner = TcpEchoTransport::new(server.addr())?;
/// let transport = CircuitBreak::new(
///     inner.clone(),
///     CircuitBreaker::builder().consecutive_failures(1).build()?,
/// );
/// let _conn = transport.connect().await?;
///
/// server.stop().await;
/// assert!(transport.connect().await.is_err()); // refused: trips the breaker
/// match transport.connect().await {
///     Err(Error::Rejected(r)) => {
///         assert_eq!(r.reason, RejectReason::CircuitOpen);
///         assert_eq!(r.endpoint.as_ref(), Some(transport.endpoint()));
///     }
///     other => panic!("expected a rejection, got {other:?}"),
/// }
/// assert_eq!(inner.attempts(), 2); // the rejected connect never reached the socket
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreak<T> {
    inner: T,
    breaker: CircuitBreaker,
}

impl<T> CircuitBreak<T> {
    /// Guards `inner`'s connects with `breaker`.
    pub fn new(inner: T, breaker: CircuitBreaker) -> Self {
        Self { inner, breaker }
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<T: Transport> Transport for CircuitBreak<T> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|r| Error::Rejected(r.endpoint(self.inner.endpoint())))?;
        match self.inner.connect().await {
            Ok(conn) => {
                permit.success();
                Ok(conn)
            }
            Err(e) => {
                permit.error(&e);
                Err(e)
            }
        }
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}
