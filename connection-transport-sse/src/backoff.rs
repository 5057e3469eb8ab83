//! [`SseBackoff`]: reconnect delays whose base is the server's `retry`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{Backoff, Error};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// No server `retry` received yet.
const UNSET: u64 = u64::MAX;

/// The reconnection time the server asked for with its last `retry` field; shared by
/// the connections (which write it) and the backoff (which reads it).
#[derive(Clone, Debug)]
pub(crate) struct ServerRetry(Arc<AtomicU64>);

impl Default for ServerRetry {
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(UNSET)))
    }
}

impl ServerRetry {
    pub(crate) fn set(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis())
            .unwrap_or(UNSET - 1)
            .min(UNSET - 1);
        self.0.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            UNSET => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// The client's default reconnect schedule: the base is the server's last `retry`
/// (or the configured initial delay until one arrives), doubled per failed attempt in a
/// row, capped at the configured maximum (or at the server's base when that is
/// higher: a server that asks for a minute gets a minute), with equal jitter (half
/// fixed, half random) so a fleet of clients does not come back in lockstep. A
/// `Retry-After` on a failing status is a floor. The supervisor starts the count over
/// once a stream has stayed up `stable_after`.
///
/// Made by [`SseTransport::backoff`](crate::SseTransport::backoff) (bound to that
/// transport's server `retry`); [`SseClient`](crate::SseClient) uses it by default.
#[derive(Debug)]
pub struct SseBackoff {
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    server: ServerRetry,
    rng: SmallRng,
}

impl SseBackoff {
    pub(crate) fn new(
        initial: Duration,
        max: Duration,
        max_attempts: Option<u32>,
        server: ServerRetry,
    ) -> Self {
        Self {
            initial,
            max,
            max_attempts,
            server,
            rng: SmallRng::from_os_rng(),
        }
    }

    /// The delay before jitter for `attempt` (1 for the first retry).
    fn ceiling(&self, attempt: u32) -> Duration {
        // A server's `retry: 0` would otherwise make every delay zero and a server that
        // drops at once would be hammered: the doubling starts from at least 1 ms.
        let base = self
            .server
            .get()
            .unwrap_or(self.initial)
            .max(Duration::from_millis(1));
        let doublings = attempt.saturating_sub(1).min(31);
        base.saturating_mul(1u32 << doublings)
            .min(self.max.max(base))
    }
}

impl Backoff for SseBackoff {
    fn next_delay(&mut self, attempt: u32, last_error: Option<&Error>) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let delay = half + half.mul_f64(self.rng.random::<f64>());
        let floor = match last_error {
            Some(Error::Status {
                retry_after: Some(after),
                ..
            }) => *after,
            _ => Duration::ZERO,
        };
        // A server `retry` of centuries is obeyed up to the horizon tokio's timers take.
        Some(connection_core::time::cap(delay.max(floor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_retry_is_the_base_and_delays_stay_in_their_band() {
        let server = ServerRetry::default();
        let mut b = SseBackoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            None,
            server.clone(),
        );
        let band = |b: &mut SseBackoff, attempt, ceiling_ms: u64| {
            for _ in 0..100 {
                let d = b.next_delay(attempt, None).unwrap();
                let c = Duration::from_millis(ceiling_ms);
                assert!(
                    d >= c / 2 && d <= c,
                    "attempt {attempt}: {d:?} not in {c:?}/2..={c:?}"
                );
            }
        };
        band(&mut b, 1, 100);
        band(&mut b, 2, 200);
        band(&mut b, 5, 1000);
        server.set(Duration::from_millis(300));
        band(&mut b, 1, 300);
        band(&mut b, 2, 600);
        band(&mut b, 3, 1000);
        // A server asking for more than the ceiling is obeyed.
        server.set(Duration::from_secs(5));
        band(&mut b, 1, 5000);
        band(&mut b, 9, 5000);
        // retry: 0 still grows.
        server.set(Duration::ZERO);
        band(&mut b, 1, 1);
        band(&mut b, 8, 128);
        assert!(b.next_delay(u32::MAX, None).is_some(), "no overflow");
    }

    #[test]
    fn max_attempts_and_retry_after() {
        let mut b = SseBackoff::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
            Some(2),
            ServerRetry::default(),
        );
        assert!(b.next_delay(2, None).is_some());
        assert_eq!(b.next_delay(3, None), None);
        let err = Error::Status {
            endpoint: "http://x/".parse().unwrap(),
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(b.next_delay(1, Some(&err)), Some(Duration::from_secs(7)));
    }
}
