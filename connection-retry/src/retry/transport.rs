//! [`Retry`]: a [`Transport`] whose connects are retried.

use connection_core::Operation;
use connection_core::{Endpoint, Error, Transport};

use super::policy::CutWith;
use super::{RetryPolicy, TimedOut, Untimed};

/// A [`Transport`] whose [`connect`](Transport::connect) is retried by a
/// [`RetryPolicy`]. Clones share the policy, so they draw from one budget.
///
/// Opening a connection has no effect on the server that a second attempt could
/// duplicate, so every retryable error is retried. An attempt cut by
/// [`attempt_timeout`](super::RetryPolicyBuilder::attempt_timeout) or
/// [`max_elapsed`](super::RetryPolicyBuilder::max_elapsed) fails with
/// [`Error::Timeout`] (operation `"connect"`), like
/// [`TransportExt::timeout`](connection_core::TransportExt::timeout).
///
/// ```
/// use connection_core::{Connection, Transport};
/// use connection_retry::backoff::BackoffStrategy;
/// use connection_retry::retry::{Retry, RetryPolicy};
/// use connection_testkit::{TcpEchoServer, TcpEchoTransport};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = TcpEchoServer::start().await?;
/// let policy = RetryPolicy::builder()
///     .backoff(BackoffStrategy::exponential(Duration::from_millis(50), 2.0).max_retries(4).build()?)
///     .max_elapsed(Duration::from_secs(5))
///     .build()?;
/// let transport = Retry::new(TcpEchoTransport::new(server.addr())?, policy);
/// let mut conn = transport.connect().await?;
/// conn.probe().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Retry<T, L = Untimed> {
    inner: T,
    policy: RetryPolicy<L>,
}

impl<T, L> Retry<T, L> {
    /// Retries `inner`'s connects with `policy`.
    pub fn new(inner: T, policy: RetryPolicy<L>) -> Self {
        Self { inner, policy }
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<L> {
        &self.policy
    }
}

impl<T: Transport, L: Send + Sync + 'static> Transport for Retry<T, L> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        let endpoint = self.inner.endpoint();
        self.policy
            .execute(
                || self.inner.connect(),
                &self.policy.classify(),
                None,
                CutWith(|t: TimedOut| Error::timeout(endpoint, Operation::Connect, t.after())),
            )
            .await
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}
