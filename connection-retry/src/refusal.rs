//! How a refusal is still recognized after it became the caller's own error.
//!
//! A breaker, limiter or bulkhead around an operation hands its refusal back as
//! `E::from(Rejected)`. From then on the refusal is whatever the caller's type makes of
//! it, and a [`Classify`](crate::Classify) that only answers `is_retryable` (the obvious
//! first implementation) would hide it: the retry loop would use its own backoff instead
//! of the circuit's "come back in 300 ms", and spend budget on calls that never left the
//! process; an outer breaker would count an inner limiter's refusal as a failure.
//!
//! So every refusal this crate makes is also *noted* on the current thread (a counter
//! and the last refusal's reason and wait), and the policies that wrap an operation
//! (a retry attempt, a breaker call) look at the counter around each poll of it. A poll
//! that ends the operation with an error and saw the counter move produced a refusal,
//! whatever `E` says: the policy reads the noted reason and wait. Polls are synchronous,
//! so what moved the counter during one ran inside that operation; a refusal made in an
//! earlier poll, or by a sibling task, is not taken for this one.
//!
//! The error's own answer comes first: [`Classify::retry_after`] and
//! [`Classify::rejection`], when they say something, win over the noted refusal.
//!
//! The cost: two thread-local reads per poll of a wrapped operation; a refusal (already
//! the slow path) adds two writes.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use connection_core::{RejectReason, Rejected};

thread_local! {
    /// Refusals made on this thread so far (wrapping).
    static NOTED: Cell<u64> = const { Cell::new(0) };
    /// The last one.
    static LAST: Cell<Option<Hint>> = const { Cell::new(None) };
}

/// What a policy keeps of a noted refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hint {
    pub(crate) reason: RejectReason,
    pub(crate) retry_after: Option<Duration>,
}

/// A refusal by this crate's policies: noted, then returned.
pub(crate) fn refuse(reason: RejectReason, retry_after: Option<Duration>) -> Rejected {
    NOTED.with(|n| n.set(n.get().wrapping_add(1)));
    LAST.with(|l| {
        l.set(Some(Hint {
            reason,
            retry_after,
        }))
    });
    let r = Rejected::new(reason);
    match retry_after {
        Some(after) => r.retry_after(after),
        None => r,
    }
}

/// The counter now, to compare with [`since`] after running an operation.
#[inline]
pub(crate) fn mark() -> u64 {
    NOTED.with(Cell::get)
}

/// The last refusal noted since `mark`, if any was.
#[inline]
pub(crate) fn since(mark: u64) -> Option<Hint> {
    if NOTED.with(Cell::get) == mark {
        return None;
    }
    LAST.with(Cell::get)
}

pin_project_lite::pin_project! {
    /// An operation's future that also says whether the poll that ended it in an error
    /// made a refusal.
    pub(crate) struct Watched<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Watched<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<F, T, E> Future for Watched<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, (E, Option<Hint>)>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mark = mark();
        let out = ready!(self.project().inner.poll(cx));
        Poll::Ready(out.map_err(|e| (e, since(mark))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_made_since_the_mark_count() {
        let before = refuse(RejectReason::BulkheadFull, None);
        assert_eq!(before.reason, RejectReason::BulkheadFull);
        let m = mark();
        assert_eq!(since(m), None, "an earlier refusal is not this one");
        let r = refuse(RejectReason::CircuitOpen, Some(Duration::from_millis(300)));
        assert_eq!(r.retry_after, Some(Duration::from_millis(300)));
        assert_eq!(
            since(m),
            Some(Hint {
                reason: RejectReason::CircuitOpen,
                retry_after: Some(Duration::from_millis(300)),
            })
        );
    }

    #[tokio::test]
    async fn a_refusal_in_an_earlier_poll_is_not_taken_for_the_failure() {
        let out = Watched::new(async {
            let _ = refuse(RejectReason::RateLimited, None);
            tokio::task::yield_now().await;
            Err::<(), _>("failed after a fallback")
        })
        .await;
        assert_eq!(out, Err(("failed after a fallback", None)));
        let out = Watched::new(async {
            tokio::task::yield_now().await;
            Err::<(), _>(refuse(RejectReason::RateLimited, None))
        })
        .await;
        assert!(matches!(out, Err((_, Some(h))) if h.reason == RejectReason::RateLimited));
    }
}
