//! [`BackoffStrategy`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connection_core::{Backoff, ConfigError, Error};

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::Jitter;

/// The ceiling used when none is set, unless the initial delay is longer.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

type CustomFn = Arc<dyn Fn(u32, Option<&Error>) -> Option<Duration> + Send + Sync>;

/// How the delay grows with the attempt number, before jitter.
#[derive(Clone)]
enum Schedule {
    Fixed,
    Linear { step: u64 },
    Exponential { multiplier: f64 },
    Fibonacci,
    Custom(CustomFn),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed => f.write_str("Fixed"),
            Self::Linear { step } => f
                .debug_struct("Linear")
                .field("step", &Duration::from_nanos(*step))
                .finish(),
            Self::Exponential { multiplier } => f
                .debug_struct("Exponential")
                .field("multiplier", multiplier)
                .finish(),
            Self::Fibonacci => f.write_str("Fibonacci"),
            Self::Custom(_) => f.write_str("Custom(<closure>)"),
        }
    }
}

/// A backoff: a schedule (fixed, linear, exponential, Fibonacci or your own closure), a
/// ceiling, a [`Jitter`], an optional limit on retries and a seedable random source.
///
/// It implements [`connection_core::Backoff`], so the same value drives the
/// [`Supervisor`](connection_core::Supervisor)'s reconnects and a
/// [`RetryPolicy`](crate::retry::RetryPolicy). Build one with
/// [`fixed`](Self::fixed), [`linear`](Self::linear), [`exponential`](Self::exponential),
/// [`fibonacci`](Self::fibonacci), [`custom`](Self::custom) or the [`grpc`](Self::grpc)
/// preset, then [`BackoffBuilder::build`], which validates every setting.
///
/// Attempts are numbered as in [`Backoff::next_delay`]: 1 is the first retry. Delays are
/// computed in whole nanoseconds with saturating arithmetic, so any attempt number (up
/// to `u32::MAX`) gives a delay between zero and the ceiling, never a panic.
///
/// A clone is another user of the same settings: it starts from a fresh state and draws
/// its jitter from a random stream of its own (derived from the seed and the clone's
/// number), so connections handed clones of one strategy do not retry in lockstep, and a
/// seeded strategy stays reproducible. A [`RetryPolicy`](crate::retry::RetryPolicy) does
/// the same for each of its runs.
pub struct BackoffStrategy {
    schedule: Schedule,
    /// First delay in nanoseconds (unused by custom schedules).
    initial: u64,
    /// Ceiling in nanoseconds.
    max: u64,
    jitter: Jitter,
    max_retries: Option<u32>,
    seed: u64,
    rng: SmallRng,
    /// The last delay handed out since the last reset, for decorrelated jitter.
    prev: Option<u64>,
    /// How many clones were made of this strategy and its clones: numbers their streams.
    clones: Arc<AtomicU64>,
}

impl Clone for BackoffStrategy {
    fn clone(&self) -> Self {
        let n = self.clones.fetch_add(1, Ordering::Relaxed) + 1;
        // Spread clone streams far from the small stream numbers `fork` uses.
        self.with_stream(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

impl BackoffStrategy {
    /// The same delay before every retry.
    ///
    /// ```
    /// use connection_core::Backoff;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// let mut b = BackoffStrategy::fixed(Duration::from_millis(250)).max_retries(2).build()?;
    /// assert_eq!(b.next_delay(1, None), Some(Duration::from_millis(250)));
    /// assert_eq!(b.next_delay(2, None), Some(Duration::from_millis(250)));
    /// assert_eq!(b.next_delay(3, None), None);
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn fixed(delay: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Schedule::Fixed, delay)
    }

    /// `initial`, then `initial + step`, `initial + 2·step`, ...
    ///
    /// ```
    /// use connection_core::Backoff;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let mut b = BackoffStrategy::linear(ms(100), ms(50)).max_delay(ms(200)).build()?;
    /// let delays: Vec<_> = (1..=4).map(|n| b.next_delay(n, None).unwrap()).collect();
    /// assert_eq!(delays, [ms(100), ms(150), ms(200), ms(200)]);
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn linear(initial: Duration, step: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Schedule::Linear { step: nanos(step) }, initial)
    }

    /// `initial`, then each delay `multiplier` times the previous one: `initial ·
    /// multiplier^(attempt−1)`, capped by the ceiling.
    ///
    /// The multiplier applies to the delay, not to an exponent of the initial value
    /// (a classic mistake: `50^attempt` milliseconds gives 50 ms, 2.5 s, 125 s).
    ///
    /// ```
    /// use connection_core::Backoff;
    /// use connection_retry::backoff::{BackoffStrategy, Jitter};
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let mut b = BackoffStrategy::exponential(ms(50), 2.0).max_delay(ms(300)).build()?;
    /// let delays: Vec<_> = (1..=5).map(|n| b.next_delay(n, None).unwrap()).collect();
    /// assert_eq!(delays, [ms(50), ms(100), ms(200), ms(300), ms(300)]);
    ///
    /// // With full jitter, each delay is drawn from [0, d]; a seed makes it repeatable.
    /// let jittered = BackoffStrategy::exponential(ms(50), 2.0).jitter(Jitter::Full).seed(7);
    /// let (mut a, mut b) = (jittered.clone().build()?, jittered.build()?);
    /// for n in 1..=5 {
    ///     let d = a.next_delay(n, None).unwrap();
    ///     assert!(d <= ms(50) * 2u32.pow(n - 1));
    ///     assert_eq!(Some(d), b.next_delay(n, None));
    /// }
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn exponential(initial: Duration, multiplier: f64) -> BackoffBuilder {
        BackoffBuilder::new(Schedule::Exponential { multiplier }, initial)
    }

    /// `initial` times the Fibonacci numbers: 1, 1, 2, 3, 5, 8, ... times `initial`.
    /// Grows more gently than doubling.
    ///
    /// ```
    /// use connection_core::Backoff;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// let ms = Duration::from_millis;
    /// let mut b = BackoffStrategy::fibonacci(ms(10)).build()?;
    /// let delays: Vec<_> = (1..=6).map(|n| b.next_delay(n, None).unwrap()).collect();
    /// assert_eq!(delays, [ms(10), ms(10), ms(20), ms(30), ms(50), ms(80)]);
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn fibonacci(initial: Duration) -> BackoffBuilder {
        BackoffBuilder::new(Schedule::Fibonacci, initial)
    }

    /// Your own schedule: `f(attempt, last_error)` returns the delay before retry
    /// `attempt` (from 1), or `None` to give up. The ceiling (unlimited unless
    /// [`max_delay`](BackoffBuilder::max_delay) is set), the jitter and
    /// [`max_retries`](BackoffBuilder::max_retries) still apply.
    ///
    /// `last_error` is the failure being retried when it is a [`connection_core::Error`]
    /// (for a [`RetryPolicy`](crate::retry::RetryPolicy) run over another error type it
    /// is `None`).
    ///
    /// ```
    /// use connection_core::{Backoff, Endpoint, Error};
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// // Short waits for refused connects, long ones for everything else.
    /// let mut b = BackoffStrategy::custom(|attempt, err| match err {
    ///     Some(Error::Connect { .. }) => Some(Duration::from_millis(100)),
    ///     _ if attempt <= 3 => Some(Duration::from_secs(2)),
    ///     _ => None,
    /// })
    /// .build()?;
    /// let ep = Endpoint::host_port("127.0.0.1", 9)?;
    /// let refused = Error::connect(&ep, std::io::ErrorKind::ConnectionRefused.into());
    /// assert_eq!(b.next_delay(1, Some(&refused)), Some(Duration::from_millis(100)));
    /// assert_eq!(b.next_delay(2, None), Some(Duration::from_secs(2)));
    /// assert_eq!(b.next_delay(4, None), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn custom<F>(f: F) -> BackoffBuilder
    where
        F: Fn(u32, Option<&Error>) -> Option<Duration> + Send + Sync + 'static,
    {
        BackoffBuilder::new(Schedule::Custom(Arc::new(f)), Duration::ZERO)
    }

    /// gRPC's connection backoff (`doc/connection-backoff.md` in the gRPC repository):
    /// 1 s initial delay, multiplier 1.6, ±20 % jitter, 120 s ceiling, no retry limit.
    ///
    /// One difference: gRPC jitters after capping, so its delays can reach 144 s; here
    /// the ceiling holds after jitter too.
    ///
    /// ```
    /// use connection_core::Backoff;
    /// use connection_retry::backoff::BackoffStrategy;
    /// use std::time::Duration;
    ///
    /// let mut b = BackoffStrategy::grpc().seed(1).build()?;
    /// let first = b.next_delay(1, None).unwrap();
    /// assert!(first >= Duration::from_millis(800) && first <= Duration::from_millis(1200));
    /// let late = b.next_delay(50, None).unwrap();
    /// assert!(late >= Duration::from_secs(96) && late <= Duration::from_secs(120));
    /// # Ok::<(), connection_core::ConfigError>(())
    /// ```
    pub fn grpc() -> BackoffBuilder {
        Self::exponential(Duration::from_secs(1), 1.6)
            .max_delay(Duration::from_secs(120))
            .jitter(Jitter::Proportional(0.2))
    }

    /// The jitter in use.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The ceiling on every delay.
    pub fn max_delay(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The retry limit, if any.
    pub fn max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// A copy for one run of a retry policy: same settings, fresh state, and a random
    /// stream of its own (stream 0 is the strategy's own seed).
    pub(crate) fn fork(&self, stream: u64) -> Self {
        self.with_stream(stream)
    }

    fn with_stream(&self, stream: u64) -> Self {
        Self {
            schedule: self.schedule.clone(),
            initial: self.initial,
            max: self.max,
            jitter: self.jitter,
            max_retries: self.max_retries,
            seed: self.seed,
            rng: SmallRng::seed_from_u64(self.seed.wrapping_add(stream)),
            prev: None,
            clones: self.clones.clone(),
        }
    }

    /// The schedule's delay for `attempt` before jitter, at most the ceiling.
    fn scheduled(&self, attempt: u32, last_error: Option<&Error>) -> Option<u64> {
        let n = attempt.max(1);
        let d = match &self.schedule {
            Schedule::Fixed => self.initial,
            Schedule::Linear { step } => self
                .initial
                .saturating_add(step.saturating_mul(u64::from(n - 1))),
            Schedule::Exponential { multiplier } => {
                let exponent = i32::try_from(n - 1).unwrap_or(i32::MAX);
                let d = self.initial as f64 * multiplier.powi(exponent);
                // Past the ceiling (or past f64's range) the float is not worth rounding.
                if d < self.max as f64 {
                    d.round() as u64
                } else {
                    self.max
                }
            }
            Schedule::Fibonacci => fibonacci(self.initial, n, self.max),
            Schedule::Custom(f) => nanos(f(attempt, last_error)?),
        };
        Some(d.min(self.max))
    }
}

impl Backoff for BackoffStrategy {
    fn next_delay(&mut self, attempt: u32, last_error: Option<&Error>) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| attempt > max) {
            return None;
        }
        let d = self.scheduled(attempt, last_error)?;
        let d = self.jitter.apply(d, self.max, self.prev, &mut self.rng);
        self.prev = Some(d);
        Some(Duration::from_nanos(d))
    }

    fn reset(&mut self) {
        self.prev = None;
    }
}

impl fmt::Debug for BackoffStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffStrategy")
            .field("schedule", &self.schedule)
            .field("initial", &Duration::from_nanos(self.initial))
            .field("max_delay", &Duration::from_nanos(self.max))
            .field("jitter", &self.jitter)
            .field("max_retries", &self.max_retries)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Builds a [`BackoffStrategy`]; made by the strategy's constructors.
#[derive(Clone, Debug)]
#[must_use]
pub struct BackoffBuilder {
    schedule: Schedule,
    initial: Duration,
    max_delay: Option<Duration>,
    jitter: Jitter,
    max_retries: Option<u32>,
    seed: Option<u64>,
}

impl BackoffBuilder {
    fn new(schedule: Schedule, initial: Duration) -> Self {
        Self {
            schedule,
            initial,
            max_delay: None,
            jitter: Jitter::None,
            max_retries: None,
            seed: None,
        }
    }

    /// The ceiling on every delay, after jitter. Defaults to
    /// [`DEFAULT_MAX_DELAY`] (60 s) or the initial delay if that is longer; a custom
    /// schedule has no ceiling by default.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = Some(max);
        self
    }

    /// How delays are randomized (default: [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Gives up after `n` retries: [`next_delay`](Backoff::next_delay) returns `None`
    /// for attempt `n + 1` and later (0 never retries). Default: no limit. In the
    /// supervisor's terms, `n` reconnect attempts.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Seeds the random source, so jitter is repeatable (default: seeded from the
    /// operating system).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the settings and builds the strategy.
    ///
    /// Refused, with the setting named in the [`ConfigError`]: a zero `initial` delay, a
    /// `multiplier` below 1.0 or not finite, a `max_delay` shorter than the initial delay
    /// (or zero), a proportional `jitter` factor outside `0..=1`.
    pub fn build(self) -> Result<BackoffStrategy, ConfigError> {
        let custom = matches!(self.schedule, Schedule::Custom(_));
        if !custom && self.initial.is_zero() {
            return Err(ConfigError::new("initial", "must be greater than zero"));
        }
        connection_core::require_at_most_max("initial", self.initial)?;
        if let Some(max) = self.max_delay {
            connection_core::require_at_most_max("max_delay", max)?;
        }
        if let Schedule::Exponential { multiplier } = self.schedule {
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "multiplier",
                    format!("must be a finite number of at least 1.0, got {multiplier}"),
                ));
            }
        }
        let max = match self.max_delay {
            Some(max) if max.is_zero() => {
                return Err(ConfigError::new("max_delay", "must be greater than zero"));
            }
            Some(max) if max < self.initial => {
                return Err(ConfigError::new(
                    "max_delay",
                    format!(
                        "{max:?} is shorter than the initial delay {:?}",
                        self.initial
                    ),
                ));
            }
            Some(max) => nanos(max),
            None if custom => u64::MAX,
            None => nanos(DEFAULT_MAX_DELAY.max(self.initial)),
        };
        self.jitter.validate()?;
        let seed = self.seed.unwrap_or_else(os_seed);
        Ok(BackoffStrategy {
            schedule: self.schedule,
            initial: nanos(self.initial),
            max,
            jitter: self.jitter,
            max_retries: self.max_retries,
            seed,
            rng: SmallRng::seed_from_u64(seed),
            prev: None,
            clones: Arc::default(),
        })
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `initial · fib(n)` with fib(1) = fib(2) = 1, at most `cap`.
fn fibonacci(initial: u64, n: u32, cap: u64) -> u64 {
    let (mut a, mut b) = (1u64, 1u64);
    // Stops as soon as the cap is reached: fib overflows u64 past n = 93, so the loop
    // runs at most about a hundred times whatever `n` is.
    for _ in 1..n {
        if initial.saturating_mul(a) >= cap {
            return cap;
        }
        (a, b) = (b, a.saturating_add(b));
    }
    initial.saturating_mul(a).min(cap)
}

/// A seed from the operating system; if it has none to give, the clock and the process
/// id are still different between processes and runs, which is all jitter needs.
fn os_seed() -> u64 {
    match SmallRng::try_from_os_rng() {
        Ok(mut rng) => rng.next_u64(),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn delays(b: &mut BackoffStrategy, n: u32) -> Vec<Duration> {
        (1..=n).map(|a| b.next_delay(a, None).unwrap()).collect()
    }

    #[test]
    fn exponential_multiplies_the_delay_not_the_exponent() {
        let mut b = BackoffStrategy::exponential(MS(50), 2.0)
            .max_delay(MS(1000))
            .build()
            .unwrap();
        assert_eq!(
            delays(&mut b, 8),
            [50, 100, 200, 400, 800, 1000, 1000, 1000].map(MS)
        );
        // Not tokio-retry's from_millis(50): 50 ms, 2.5 s, 125 s.
        assert_ne!(b.next_delay(2, None), Some(MS(2500)));
    }

    #[test]
    fn grpc_preset_without_jitter_matches_the_spec_sequence() {
        let mut b = BackoffStrategy::grpc()
            .jitter(Jitter::None)
            .build()
            .unwrap();
        assert_eq!(
            delays(&mut b, 4),
            [1000, 1600, 2560, 4096].map(MS),
            "1 s × 1.6^n"
        );
        assert_eq!(b.next_delay(20, None), Some(Duration::from_secs(120)));
        assert_eq!(b.max_retries(), None);
    }

    #[test]
    fn grpc_preset_jitter_is_plus_minus_twenty_percent() {
        let mut b = BackoffStrategy::grpc().seed(3).build().unwrap();
        let mut below = false;
        let mut above = false;
        for _ in 0..200 {
            let d = b.next_delay(1, None).unwrap();
            assert!(d >= MS(800) && d <= MS(1200), "{d:?}");
            below |= d < MS(1000);
            above |= d > MS(1000);
        }
        assert!(below && above, "jitter goes both ways");
    }

    #[test]
    fn linear_fixed_fibonacci() {
        let mut l = BackoffStrategy::linear(MS(10), MS(5)).build().unwrap();
        assert_eq!(delays(&mut l, 4), [10, 15, 20, 25].map(MS));
        let mut f = BackoffStrategy::fixed(MS(7)).build().unwrap();
        assert_eq!(delays(&mut f, 3), [7, 7, 7].map(MS));
        let mut fib = BackoffStrategy::fibonacci(MS(1))
            .max_delay(MS(20))
            .build()
            .unwrap();
        assert_eq!(delays(&mut fib, 9), [1, 1, 2, 3, 5, 8, 13, 20, 20].map(MS));
    }

    #[test]
    fn huge_attempt_numbers_saturate_at_the_ceiling() {
        let max = Duration::from_secs(30);
        let builders = [
            BackoffStrategy::fixed(MS(1)),
            BackoffStrategy::linear(MS(1), Duration::from_secs(86_400 * 365)),
            BackoffStrategy::exponential(MS(1), 10.0),
            BackoffStrategy::fibonacci(Duration::from_secs(1_000_000)),
        ];
        for builder in builders {
            for jitter in [
                Jitter::None,
                Jitter::Full,
                Jitter::Equal,
                Jitter::Decorrelated,
                Jitter::Proportional(1.0),
            ] {
                let mut b = builder
                    .clone()
                    .max_delay(max.max(builder.initial))
                    .jitter(jitter)
                    .seed(1)
                    .build()
                    .unwrap();
                for attempt in [u32::MAX - 1, u32::MAX, 1, u32::MAX] {
                    let d = b.next_delay(attempt, None).unwrap();
                    assert!(d <= b.max_delay(), "{jitter:?}: {d:?}");
                }
            }
        }
        let mut longest = BackoffStrategy::exponential(MS(1), 1e300)
            .max_delay(connection_core::MAX_DURATION)
            .build()
            .unwrap();
        assert_eq!(
            longest.next_delay(u32::MAX, None),
            Some(connection_core::MAX_DURATION)
        );
        // Past a year is refused, so no deadline built from a delay can overflow.
        let err = BackoffStrategy::exponential(MS(1), 2.0)
            .max_delay(Duration::MAX)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "max_delay");
    }

    #[test]
    fn max_retries_gives_up_after_n() {
        let mut b = BackoffStrategy::exponential(MS(1), 2.0)
            .max_retries(3)
            .build()
            .unwrap();
        assert!(b.next_delay(3, None).is_some());
        assert_eq!(b.next_delay(4, None), None);
        assert_eq!(b.next_delay(u32::MAX, None), None);
        let mut never = BackoffStrategy::fixed(MS(1))
            .max_retries(0)
            .build()
            .unwrap();
        assert_eq!(never.next_delay(1, None), None);
    }

    #[test]
    fn seeded_strategies_repeat_and_different_seeds_differ() {
        let build = |seed| {
            BackoffStrategy::exponential(MS(100), 2.0)
                .jitter(Jitter::Full)
                .seed(seed)
                .build()
                .unwrap()
        };
        let (mut a, mut b, mut c) = (build(42), build(42), build(43));
        let (da, db, dc) = (delays(&mut a, 10), delays(&mut b, 10), delays(&mut c, 10));
        assert_eq!(da, db);
        assert_ne!(da, dc);
        // Forks: stream 0 is the seed itself; other streams differ.
        let proto = build(42);
        assert_eq!(delays(&mut proto.fork(0), 10), da);
        assert_ne!(delays(&mut proto.fork(1), 10), da);
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay_and_reset_forgets_it() {
        let mut b = BackoffStrategy::fixed(MS(10))
            .max_delay(Duration::from_secs(10))
            .jitter(Jitter::Decorrelated)
            .seed(9)
            .build()
            .unwrap();
        let mut prev = MS(10);
        for attempt in 1..50 {
            let d = b.next_delay(attempt, None).unwrap();
            assert!(d >= MS(10) && d <= prev * 3, "{d:?} after {prev:?}");
            prev = d;
        }
        b.reset();
        assert!(b.next_delay(1, None).unwrap() <= MS(30));
    }

    #[test]
    fn custom_schedule_is_capped_and_jittered() {
        let mut b = BackoffStrategy::custom(|attempt, _| (attempt < 3).then(|| MS(500)))
            .max_delay(MS(200))
            .build()
            .unwrap();
        assert_eq!(b.next_delay(1, None), Some(MS(200)));
        assert_eq!(b.next_delay(3, None), None);
        let mut unbounded = BackoffStrategy::custom(|_, _| Some(Duration::from_secs(3600)))
            .build()
            .unwrap();
        assert_eq!(
            unbounded.next_delay(1, None),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let field = |b: BackoffBuilder| b.build().unwrap_err().field();
        assert_eq!(field(BackoffStrategy::fixed(Duration::ZERO)), "initial");
        assert_eq!(
            field(BackoffStrategy::exponential(MS(1), 0.5)),
            "multiplier"
        );
        assert_eq!(
            field(BackoffStrategy::exponential(MS(1), f64::NAN)),
            "multiplier"
        );
        assert_eq!(
            field(BackoffStrategy::exponential(MS(1), f64::INFINITY)),
            "multiplier"
        );
        assert_eq!(
            field(BackoffStrategy::fixed(MS(10)).max_delay(MS(5))),
            "max_delay"
        );
        assert_eq!(
            field(BackoffStrategy::custom(|_, _| None).max_delay(Duration::ZERO)),
            "max_delay"
        );
        for f in [-0.1, 1.5, f64::NAN] {
            assert_eq!(
                field(BackoffStrategy::fixed(MS(1)).jitter(Jitter::Proportional(f))),
                "jitter"
            );
        }
    }

    #[test]
    fn default_ceiling_is_sixty_seconds_or_the_initial_delay() {
        let b = BackoffStrategy::exponential(MS(1), 2.0).build().unwrap();
        assert_eq!(b.max_delay(), DEFAULT_MAX_DELAY);
        let b = BackoffStrategy::fixed(Duration::from_secs(90))
            .build()
            .unwrap();
        assert_eq!(b.max_delay(), Duration::from_secs(90));
    }

    #[test]
    fn is_clone_debug_send_sync() {
        fn bounds<T: Clone + fmt::Debug + Send + Sync + 'static>() {}
        bounds::<BackoffStrategy>();
        let b = BackoffStrategy::custom(|_, _| None).build().unwrap();
        assert!(format!("{b:?}").contains("Custom"));
    }
}

#[cfg(test)]
mod clone_tests {
    use super::*;

    fn draws(b: &mut BackoffStrategy) -> Vec<Option<Duration>> {
        (1..=8).map(|n| b.next_delay(n, None)).collect()
    }

    #[test]
    fn clones_jitter_independently_and_reproducibly() {
        let build = || {
            BackoffStrategy::exponential(Duration::from_millis(100), 2.0)
                .jitter(Jitter::Full)
                .seed(11)
                .build()
                .unwrap()
        };
        let mut original = build();
        let mut clone = original.clone();
        assert_ne!(
            draws(&mut original),
            draws(&mut clone),
            "clones must not jitter in lockstep"
        );
        // The first clone of the same seeded strategy draws the same, run after run.
        assert_eq!(draws(&mut build().clone()), draws(&mut build().clone()));
    }
}
