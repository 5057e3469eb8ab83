//! [`connect_parallel`]: open connections to many server locations at once, with a
//! concurrency limit and the same retry policy for each server.
//!
//! Partial success is a normal result: every location comes back with its own outcome,
//! and the caller decides whether 7 of 10 is enough. Retrying is
//! `connection-retry`'s [`RetryPolicy`] (backoff, budget, deadline, `Retry-After`),
//! applied to each location's connects; this module only schedules.

use std::fmt;

use connection_core::{Error, Transport};
use connection_retry::RetryPolicy;
use futures::stream::{self, StreamExt};

/// How connecting to one location went, from [`connect_parallel`].
#[non_exhaustive]
pub struct ConnectOutcome<L, C> {
    /// The location, as given.
    pub location: L,
    /// The connection, or the last attempt's error (or the transport maker's error).
    pub result: Result<C, Error>,
    /// Connect attempts made for this location (0 when the maker failed).
    pub attempts: u32,
}

impl<L: fmt::Debug, C> fmt::Debug for ConnectOutcome<L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOutcome")
            .field("location", &self.location)
            .field("result", &self.result.as_ref().map(|_| "connected"))
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<L, C> ConnectOutcome<L, C> {
    /// Whether a connection was opened.
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Connects to every location in `locations`, at most `max_concurrent` connect attempts
/// in flight at a time (0 counts as 1), each location's connects retried by `retry`;
/// returns one outcome per location, in input order.
///
/// `make` turns a location into the transport that connects to it (called once per
/// location; its error is that location's outcome). A location keeps its slot from its
/// first attempt to its outcome, retry delays included, so `max_concurrent` bounds both
/// the connects in flight and the servers being worked on. The policy's state (its
/// budget, if it has one) is shared by all locations, as clones of a policy share it.
///
/// ```
/// use connection_retry::{BackoffStrategy, RetryPolicy};
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
/// use connection_transport_tcp::connect_parallel;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let up = TcpEchoServer::start().await?;
/// let down = {
///     let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
///     gone.local_addr()? // refuses once the listener is dropped here
/// };
/// let retry = RetryPolicy::builder()
///     .backoff(BackoffStrategy::fixed(Duration::from_millis(10)).max_retries(2).build()?)
///     .build()?;
///
/// let outcomes = connect_parallel([up.addr(), down], 4, &retry, |addr| {
///     Ok(TcpEchoTransport::new(*addr)?)
/// })
/// .await;
/// assert!(outcomes[0].is_ok());
/// assert!(!outcomes[1].is_ok());
/// assert_eq!(outcomes[1].attempts, 3); // the first try and two retries
/// # Ok(()) }
/// ```
pub async fn connect_parallel<L, T, F, P>(
    locations: impl IntoIterator<Item = L>,
    max_concurrent: usize,
    retry: &RetryPolicy<P>,
    make: F,
) -> Vec<ConnectOutcome<L, T::Connection>>
where
    F: Fn(&L) -> Result<T, Error>,
    T: Transport,
{
    let make = &make;
    let mut outcomes: Vec<(usize, ConnectOutcome<L, T::Connection>)> =
        stream::iter(locations.into_iter().enumerate())
            .map(|(i, location)| async move {
                let transport = match make(&location) {
                    Ok(t) => t,
                    Err(error) => {
                        return (
                            i,
                            ConnectOutcome {
                                location,
                                result: Err(error),
                                attempts: 0,
                            },
                        );
                    }
                };
                let mut attempts = 0u32;
                let result = retry
                    .on(transport.endpoint())
                    .run(|| {
                        attempts += 1;
                        transport.connect()
                    })
                    .await;
                (
                    i,
                    ConnectOutcome {
                        location,
                        result,
                        attempts,
                    },
                )
            })
            .buffer_unordered(max_concurrent.max(1))
            .collect()
            .await;
    outcomes.sort_unstable_by_key(|o| o.0);
    outcomes.into_iter().map(|(_, o)| o).collect()
}
