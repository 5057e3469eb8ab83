//! [`RetryBudget`]: retries may add at most a fixed share of load.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use connection_core::ConfigError;
use tokio::time::Instant;

/// How many slices the time-to-live is cut into: tokens expire one slice at a time.
const SLICES: usize = 10;
/// Fixed-point scale of the deposit and withdrawal amounts, so ratios such as 0.3 are
/// kept to three decimals instead of rounded to 1/3.
const SCALE: i64 = 1000;

/// Builds a [`RetryBudget`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RetryBudgetBuilder {
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
}

impl RetryBudgetBuilder {
    /// How long a deposit counts (default 10 s), between 1 s and 1 hour.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries per second allowed even with no calls to earn them (default 10), so a
    /// client with little traffic can still retry.
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = n;
        self
    }

    /// Retries allowed per call (default 0.2: retries add at most 20 % load), between 0
    /// and 1000.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.ttl) {
            return Err(ConfigError::new(
                "ttl",
                format!("must be between 1 s and 1 hour, got {:?}", self.ttl),
            ));
        }
        if !(0.0..=1000.0).contains(&self.ratio) {
            return Err(ConfigError::new(
                "ratio",
                format!("must be between 0 and 1000, got {}", self.ratio),
            ));
        }
        let (deposit, withdraw) = if self.ratio == 0.0 {
            // Calls earn nothing; only the per-second minimum can be spent.
            (0, SCALE)
        } else {
            (SCALE, ((SCALE as f64 / self.ratio).round() as i64).max(1))
        };
        let reserve = (f64::from(self.min_per_sec) * self.ttl.as_secs_f64()) as i64;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                slice_nanos: (self.ttl.as_nanos() / SLICES as u128) as u64,
                generation: AtomicU64::new(0),
                slices: Default::default(),
                reserve: reserve.saturating_mul(withdraw),
                deposit,
                withdraw,
                config: self,
            }),
        })
    }
}

/// A budget for retries, shared by every clone: each call deposits, each retry
/// withdraws, and a retry without funds is not made.
///
/// A call earns `ratio` of a retry; `min_per_sec` retries per second are free. What was
/// earned expires after `ttl`, in ten slices, so the budget follows the recent load
/// rather than all history. This is the budget of Finagle and of tower's `TpsBudget`.
///
/// Why a budget instead of (only) a maximum number of retries: a limit of 3 retries
/// per call means that when a dependency goes down, every caller sends 4 times its
/// normal load to it at exactly the worst moment, and the retries of one layer multiply
/// with those of the next. A budget bounds the *extra* load across all calls (20 %
/// by default) whatever the per-call limits are: while most calls succeed, the few that
/// fail may retry freely; when most fail, the budget runs dry and failures surface at
/// once instead of piling up.
///
/// The hot path is lock-free and allocation-free: a few atomic operations and one read
/// of tokio's clock (so paused-time tests control expiry). Under contention the balance
/// is approximate (two withdrawals may both pass on the last token, a deposit racing a
/// slice rotation may be dropped), which is the same trade tower makes.
///
/// ```
/// use connection_retry::retry::RetryBudget;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), connection_core::ConfigError> {
/// // No free retries; each call earns half a retry.
/// let budget = RetryBudget::builder().min_per_sec(0).ratio(0.5).build()?;
/// assert!(!budget.withdraw());
/// budget.deposit();
/// budget.deposit();
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
///
/// // Deposits expire after the ttl (10 s by default).
/// budget.deposit();
/// budget.deposit();
/// tokio::time::advance(Duration::from_secs(11)).await;
/// assert!(!budget.withdraw());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    slice_nanos: u64,
    /// The newest slice number (time since `epoch` / slice length) any caller has seen;
    /// its ring position and the nine before it hold the live tokens.
    generation: AtomicU64,
    slices: [AtomicI64; SLICES],
    /// Tokens always present: `min_per_sec · ttl` retries.
    reserve: i64,
    deposit: i64,
    withdraw: i64,
    config: RetryBudgetBuilder,
}

impl RetryBudget {
    /// A builder with Finagle's defaults: ttl 10 s, 10 retries per second, ratio 0.2.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            ratio: 0.2,
        }
    }

    /// Records a call (a first attempt).
    pub fn deposit(&self) {
        let inner = &*self.inner;
        if inner.deposit != 0 {
            inner
                .current_slice()
                .fetch_add(inner.deposit, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` if there is not enough left.
    pub fn withdraw(&self) -> bool {
        let inner = &*self.inner;
        let slice = inner.current_slice();
        if inner.balance() < inner.withdraw {
            return false;
        }
        slice.fetch_sub(inner.withdraw, Ordering::Relaxed);
        true
    }

    /// How many retries the budget would allow now.
    pub fn available(&self) -> u64 {
        let inner = &*self.inner;
        inner.current_slice();
        u64::try_from(inner.balance() / inner.withdraw).unwrap_or(0)
    }
}

impl Inner {
    /// The slice the present moment belongs to, after clearing the slices that expired.
    fn current_slice(&self) -> &AtomicI64 {
        let elapsed = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        let now = u64::try_from(elapsed / u128::from(self.slice_nanos)).unwrap_or(u64::MAX);
        let mut seen = self.generation.load(Ordering::Acquire);
        while seen < now {
            match self.generation.compare_exchange_weak(
                seen,
                now,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // This caller moved time forward: the slices between the old and
                    // the new generation hold tokens older than the ttl.
                    let stale = (now - seen).min(SLICES as u64);
                    for back in 0..stale {
                        self.slices[ring(now - back)].store(0, Ordering::Release);
                    }
                    break;
                }
                Err(actual) => seen = actual,
            }
        }
        &self.slices[ring(now)]
    }

    fn balance(&self) -> i64 {
        self.slices.iter().fold(self.reserve, |sum, s| {
            sum.saturating_add(s.load(Ordering::Relaxed))
        })
    }
}

fn ring(generation: u64) -> usize {
    (generation % SLICES as u64) as usize
}

impl Default for RetryBudget {
    /// Finagle's defaults: see [`RetryBudget::builder`].
    fn default() -> Self {
        let b = Self::builder();
        // Cannot fail: the defaults are within every bound `build` checks.
        b.build()
            .unwrap_or_else(|_| unreachable!("default budget settings are valid"))
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("RetryBudget")
            .field("ttl", &c.ttl)
            .field("min_per_sec", &c.min_per_sec)
            .field("ratio", &c.ratio)
            .field("available", &self.available())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reserve_allows_min_per_sec_times_ttl() {
        let b = RetryBudget::builder()
            .ttl(Duration::from_secs(2))
            .min_per_sec(3)
            .ratio(0.0)
            .build()
            .unwrap();
        assert_eq!(b.available(), 6);
        for _ in 0..6 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw());
        b.deposit();
        assert!(!b.withdraw(), "ratio 0: calls earn nothing");
        // Withdrawals expire like deposits: after the ttl the reserve is whole again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.available(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_slice_by_slice() {
        let b = RetryBudget::builder()
            .ttl(Duration::from_secs(10))
            .min_per_sec(0)
            .ratio(1.0)
            .build()
            .unwrap();
        b.deposit();
        tokio::time::advance(Duration::from_secs(5)).await;
        b.deposit();
        assert_eq!(b.available(), 2);
        tokio::time::advance(Duration::from_millis(5500)).await;
        assert_eq!(b.available(), 1, "the first deposit is older than the ttl");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.available(), 0);
        // A long silence clears everything without looping over every missed slice.
        b.deposit();
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert_eq!(b.available(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ratios_keep_their_precision() {
        let b = RetryBudget::builder()
            .min_per_sec(0)
            .ratio(0.3)
            .build()
            .unwrap();
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(b.available(), 3);
        let generous = RetryBudget::builder()
            .min_per_sec(0)
            .ratio(1000.0)
            .build()
            .unwrap();
        generous.deposit();
        assert_eq!(generous.available(), 1000);
    }

    #[test]
    fn clones_share_the_balance() {
        let a = RetryBudget::builder()
            .min_per_sec(1)
            .ttl(Duration::from_secs(1))
            .ratio(0.0)
            .build()
            .unwrap();
        let b = a.clone();
        assert!(a.withdraw());
        assert!(!b.withdraw());
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |b: RetryBudgetBuilder| b.build().unwrap_err().field();
        assert_eq!(
            field(RetryBudget::builder().ttl(Duration::from_millis(999))),
            "ttl"
        );
        assert_eq!(
            field(RetryBudget::builder().ttl(Duration::from_secs(3601))),
            "ttl"
        );
        for r in [-0.1, 1000.5, f64::NAN, f64::INFINITY] {
            assert_eq!(field(RetryBudget::builder().ratio(r)), "ratio");
        }
        let huge = RetryBudget::builder()
            .min_per_sec(u32::MAX)
            .ttl(Duration::from_secs(3600))
            .ratio(0.001)
            .build()
            .unwrap();
        assert!(huge.withdraw());
        assert!(format!("{:?}", RetryBudget::default()).contains("ratio: 0.2"));
    }
}
