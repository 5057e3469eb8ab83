//! Rate limiting as [`Transport`] wrappers: limit how fast connections are opened.

use connection_core::{Endpoint, Error, Transport};

use super::{KeyedRateLimiter, RateLimiter};

/// A [`Transport`] whose connects draw from a [`RateLimiter`]. Clones share the limiter.
///
/// ```
/// use connection_retry::limit::{Quota, RateLimit, RateLimiter};
/// # fn wrap<T: connection_core::Transport>(t: T) {
/// let limited = RateLimit::new(t, RateLimiter::new(Quota::per_second(5, 1).unwrap()));
/// # let _ = limited; }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit<T> {
    inner: T,
    limiter: RateLimiter,
}

impl<T> RateLimit<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, limiter: RateLimiter) -> Self {
        Self { inner, limiter }
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: Transport> Transport for RateLimit<T> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        self.limiter
            .acquire()
            .await
            .map_err(|r| Error::Rejected(r.endpoint(self.inner.endpoint())))?;
        self.inner.connect().await
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}

/// A [`Transport`] whose connects draw from a per-endpoint quota of a shared
/// [`KeyedRateLimiter`]: hand the same limiter to many transports to limit each host
/// separately.
#[derive(Clone, Debug)]
pub struct KeyedRateLimit<T> {
    inner: T,
    limiter: KeyedRateLimiter<Endpoint>,
}

impl<T> KeyedRateLimit<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, limiter: KeyedRateLimiter<Endpoint>) -> Self {
        Self { inner, limiter }
    }
}

impl<T: Transport> Transport for KeyedRateLimit<T> {
    type Connection = T::Connection;

    async fn connect(&self) -> Result<Self::Connection, Error> {
        let endpoint = self.inner.endpoint();
        self.limiter
            .acquire_key(endpoint)
            .await
            .map_err(|r| Error::Rejected(r.endpoint(endpoint)))?;
        self.inner.connect().await
    }

    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }
}
