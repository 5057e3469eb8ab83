//! The breaker's settings: the builder, its validation, and the serde form.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection_core::ConfigError;

use super::CircuitBreaker;
use crate::{Classify, EventSink};

/// Decides whether an error counts as a failure. See
/// [`CircuitBreakerBuilder::failure_predicate`].
pub(super) type Predicate = Arc<dyn Fn(&dyn Classify) -> bool + Send + Sync>;

/// Largest count-based window, in calls (one byte per call).
const MAX_WINDOW_CALLS: u32 = 1 << 24;

/// Largest number of probes in half-open (they are counted in 16 bits).
const MAX_HALF_OPEN_PROBES: u32 = u16::MAX as u32;

/// Which calls a failure or slow-call rate is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last `n` recorded calls.
    Count(u32),
    /// The calls recorded in the last `d` (kept in ten buckets of `d / 10`, so the
    /// oldest tenth of the span leaves the window at once).
    Time(Duration),
}

/// Everything the breaker needs, validated. Built by [`CircuitBreakerBuilder::build`].
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) consecutive_failures: Option<u32>,
    pub(super) failure_rate: Option<f64>,
    pub(super) slow_call: Option<(Duration, f64)>,
    pub(super) window: SlidingWindow,
    pub(super) min_calls: u32,
    pub(super) wait: Duration,
    pub(super) max_wait: Option<Duration>,
    pub(super) wait_multiplier: f64,
    pub(super) jitter: f64,
    pub(super) seed: Option<u64>,
    pub(super) half_open_probes: u32,
    pub(super) predicate: Option<Predicate>,
    pub(super) events: Option<EventSink>,
}

impl Settings {
    /// Whether a rate over a window can trip the breaker (so the window is kept).
    pub(super) fn uses_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow_call.is_some()
    }

    /// The wait before the `n`th trip in a row (0 for the first) before jitter.
    pub(super) fn wait_for(&self, n: u32) -> Duration {
        let Some(max) = self.max_wait else {
            return self.wait;
        };
        let factor = self.wait_multiplier.powi(n.min(1024) as i32);
        let secs = self.wait.as_secs_f64() * factor;
        Duration::try_from_secs_f64(secs).map_or(max, |w| w.min(max))
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call", &self.slow_call)
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .field("wait_multiplier", &self.wait_multiplier)
            .field("jitter", &self.jitter)
            .field("half_open_probes", &self.half_open_probes)
            .field("custom_predicate", &self.predicate.is_some())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// Builds a [`CircuitBreaker`]. Setters never fail; [`build`](Self::build) checks
/// everything and names the first bad setting.
///
/// The defaults trip after 5 consecutive failures, stay open 10 s, then admit one
/// probe. Rate-based tripping is off until [`failure_rate`](Self::failure_rate) or
/// [`slow_calls`](Self::slow_calls) turns it on: a rate needs call volume to mean
/// anything, and a breaker around connection attempts sees few calls.
///
/// ```
/// use connection_retry::breaker::CircuitBreaker;
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::builder()
///     .consecutive_failures(3)
///     .failure_rate(0.5)
///     .count_window(50)
///     .min_calls(10)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .wait(Duration::from_secs(1))
///     .max_wait(Duration::from_secs(60))
///     .jitter(0.2)
///     .half_open_probes(2)
///     .build()?;
/// assert!(breaker.state().is_closed());
///
/// let bad = CircuitBreaker::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(bad.field(), "failure_rate");
/// # Ok::<(), connection_core::ConfigError>(())
/// ```
#[must_use]
#[derive(Clone)]
pub struct CircuitBreakerBuilder {
    consecutive_failures: Option<u32>,
    failure_rate: Option<f64>,
    slow_call: Option<(Duration, f64)>,
    window: SlidingWindow,
    min_calls: u32,
    wait: Duration,
    max_wait: Option<Duration>,
    wait_multiplier: f64,
    jitter: f64,
    seed: Option<u64>,
    half_open_probes: u32,
    predicate: Option<Predicate>,
    events: Option<EventSink>,
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: None,
            slow_call: None,
            window: SlidingWindow::Count(100),
            min_calls: 20,
            wait: Duration::from_secs(10),
            max_wait: None,
            wait_multiplier: 2.0,
            jitter: 0.0,
            seed: None,
            half_open_probes: 1,
            predicate: None,
            events: None,
        }
    }
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("consecutive_failures", &self.consecutive_failures)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call", &self.slow_call)
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .field("wait_multiplier", &self.wait_multiplier)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("half_open_probes", &self.half_open_probes)
            .field("custom_predicate", &self.predicate.is_some())
            .field("events", &self.events)
            .finish()
    }
}

impl CircuitBreakerBuilder {
    /// Trips after `n` failures in a row (default 5; must be at least 1).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Turns the consecutive-failure trigger off (leaving the rate triggers, if set).
    pub fn no_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Trips when at least this fraction of the calls in the window failed, once the
    /// window holds [`min_calls`](Self::min_calls) calls. In (0, 1]; off by default.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// Trips when at least `rate` of the calls in the window took `threshold` or longer
    /// (whether they succeeded or not), once the window holds
    /// [`min_calls`](Self::min_calls) calls. A probe that slow re-opens a half-open
    /// circuit. Off by default; measuring durations reads the clock twice per call.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow_call = Some((threshold, rate));
        self
    }

    /// Rates are computed over the last `n` calls (the default, with `n` = 100).
    pub fn count_window(mut self, n: u32) -> Self {
        self.window = SlidingWindow::Count(n);
        self
    }

    /// Rates are computed over the calls of the last `span` (reads the clock on every
    /// call).
    pub fn time_window(mut self, span: Duration) -> Self {
        self.window = SlidingWindow::Time(span);
        self
    }

    /// Sets the window directly.
    pub fn window(mut self, window: SlidingWindow) -> Self {
        self.window = window;
        self
    }

    /// Rates are not judged before the window holds this many calls (default 20; at
    /// least 1). With a count window larger than the window, the window size is used.
    pub fn min_calls(mut self, n: u32) -> Self {
        self.min_calls = n;
        self
    }

    /// How long the circuit stays open before admitting a probe (default 10 s). With
    /// [`max_wait`](Self::max_wait), the wait of the first trip.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Makes the wait grow on repeated trips: every re-open from half-open multiplies it
    /// by [`wait_multiplier`](Self::wait_multiplier), up to `max`. Closing the circuit
    /// starts over from [`wait`](Self::wait).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.max_wait = Some(max);
        self
    }

    /// Growth factor per repeated trip (default 2; at least 1). Used only with
    /// [`max_wait`](Self::max_wait).
    pub fn wait_multiplier(mut self, factor: f64) -> Self {
        self.wait_multiplier = factor;
        self
    }

    /// Shortens each wait by a random fraction up to `fraction` (in [0, 1]; default 0),
    /// so that breakers tripped together do not probe together.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Seeds the jitter, for reproducible waits (default: seeded from the OS).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many probe calls half-open admits (default 1; 1 to 65535). All of them must
    /// succeed to close the circuit; the first that fails re-opens it. Further calls are
    /// rejected while the probes run; a probe whose permit is dropped unfinished frees
    /// its slot.
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// Which errors count as failures, judged through [`Classify`] so it applies to any
    /// error type. Default: every error except refusals (`rejection().is_none()`).
    ///
    /// An error the predicate does not count as a failure is a success (the dependency
    /// answered), except a refusal by an inner policy, which counts as neither: the
    /// call never reached the dependency.
    pub fn failure_predicate<F>(mut self, is_failure: F) -> Self
    where
        F: Fn(&dyn Classify) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(is_failure));
        self
    }

    /// Publishes state changes on `sink`.
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        Ok(CircuitBreaker::from_settings(self.validate()?))
    }

    pub(super) fn validate(self) -> Result<Settings, ConfigError> {
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if let Some(rate) = self.failure_rate {
            check_rate("failure_rate", rate)?;
        }
        if let Some((threshold, rate)) = self.slow_call {
            if threshold.is_zero() {
                return Err(ConfigError::new(
                    "slow_call_ms",
                    "must be greater than zero",
                ));
            }
            check_rate("slow_call_rate", rate)?;
        }
        match self.window {
            SlidingWindow::Count(0) => {
                return Err(ConfigError::new("window_calls", "must be at least 1"));
            }
            SlidingWindow::Count(n) if n > MAX_WINDOW_CALLS => {
                return Err(ConfigError::new(
                    "window_calls",
                    format!("must be at most {MAX_WINDOW_CALLS}"),
                ));
            }
            SlidingWindow::Time(span) if span.is_zero() => {
                return Err(ConfigError::new("window_ms", "must be greater than zero"));
            }
            _ => {}
        }
        if self.min_calls == 0 {
            return Err(ConfigError::new("min_calls", "must be at least 1"));
        }
        if self.wait.is_zero() {
            return Err(ConfigError::new("wait_ms", "must be greater than zero"));
        }
        // Durations stop at a year, so no deadline computed from them can overflow.
        let durations = [
            ("wait_ms", Some(self.wait)),
            ("max_wait_ms", self.max_wait),
            (
                "slow_call_ms",
                self.slow_call.map(|(threshold, _)| threshold),
            ),
            (
                "window_ms",
                match self.window {
                    SlidingWindow::Time(span) => Some(span),
                    _ => None,
                },
            ),
        ];
        for (field, d) in durations {
            if let Some(d) = d {
                connection_core::require_at_most_max(field, d)?;
            }
        }
        if let Some(max) = self.max_wait {
            if max < self.wait {
                return Err(ConfigError::new(
                    "max_wait_ms",
                    "must be at least the wait (wait_ms)",
                ));
            }
        }
        if !(self.wait_multiplier.is_finite() && self.wait_multiplier >= 1.0) {
            return Err(ConfigError::new(
                "wait_multiplier",
                "must be a finite number of at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::new("jitter", "must be between 0 and 1"));
        }
        if self.half_open_probes == 0 || self.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(ConfigError::new(
                "half_open_probes",
                format!("must be between 1 and {MAX_HALF_OPEN_PROBES}"),
            ));
        }
        Ok(Settings {
            consecutive_failures: self.consecutive_failures,
            failure_rate: self.failure_rate,
            slow_call: self.slow_call,
            window: self.window,
            min_calls: match self.window {
                SlidingWindow::Count(n) => self.min_calls.min(n),
                SlidingWindow::Time(_) => self.min_calls,
            },
            wait: self.wait,
            max_wait: self.max_wait,
            wait_multiplier: self.wait_multiplier,
            jitter: self.jitter,
            seed: self.seed,
            half_open_probes: self.half_open_probes,
            predicate: self.predicate,
            events: self.events,
        })
    }
}

fn check_rate(field: &'static str, rate: f64) -> Result<(), ConfigError> {
    // Written so that NaN fails too.
    if rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(field, "must be in (0, 1]"))
    }
}

/// A circuit breaker's settings in serde form, durations in milliseconds. Every field
/// is optional; absent fields take the [`CircuitBreakerBuilder`] defaults.
///
/// | field | meaning |
/// |---|---|
/// | `consecutive_failures` | trip after this many failures in a row (default 5; `null` turns it off) |
/// | `failure_rate` | trip at this failure fraction of the window, in (0, 1] |
/// | `slow_call_ms`, `slow_call_rate` | trip when this fraction of calls took at least this long (both or neither) |
/// | `window_calls` / `window_ms` | count-based (default 100 calls) or time-based window; at most one |
/// | `min_calls` | calls the window must hold before rates count (default 20) |
/// | `wait_ms` | how long the circuit stays open (default 10000) |
/// | `max_wait_ms`, `wait_multiplier` | growing wait on repeated trips (multiplier default 2) |
/// | `jitter` | random shortening of each wait, in [0, 1] |
/// | `seed` | seed for the jitter |
/// | `half_open_probes` | probe calls admitted in half-open (default 1) |
///
/// ```
/// use connection_retry::breaker::CircuitBreakerConfig;
///
/// let cfg: CircuitBreakerConfig = serde_json::from_str(
///     r#"{"consecutive_failures": null, "failure_rate": 0.5, "window_ms": 60000, "wait_ms": 5000}"#,
/// )?;
/// let breaker = cfg.build()?;
/// assert!(breaker.state().is_closed());
///
/// let bad: CircuitBreakerConfig = serde_json::from_str(r#"{"wait_ms": 0}"#)?;
/// assert_eq!(bad.build().unwrap_err().field(), "wait_ms");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Failures in a row that trip the breaker; `None` turns the trigger off.
    pub consecutive_failures: Option<u32>,
    /// Failure fraction of the window that trips the breaker.
    pub failure_rate: Option<f64>,
    /// Duration from which a call is slow, in milliseconds.
    pub slow_call_ms: Option<u64>,
    /// Fraction of slow calls that trips the breaker.
    pub slow_call_rate: Option<f64>,
    /// Count-based window size, in calls.
    pub window_calls: Option<u32>,
    /// Time-based window span, in milliseconds.
    pub window_ms: Option<u64>,
    /// Calls the window must hold before rates count.
    pub min_calls: u32,
    /// How long the circuit stays open, in milliseconds.
    pub wait_ms: u64,
    /// Ceiling of the growing wait, in milliseconds; `None` keeps the wait fixed.
    pub max_wait_ms: Option<u64>,
    /// Growth factor of the wait per repeated trip.
    pub wait_multiplier: f64,
    /// Random shortening of each wait, as a fraction.
    pub jitter: f64,
    /// Seed for the jitter.
    pub seed: Option<u64>,
    /// Probe calls admitted in half-open.
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        let d = CircuitBreakerBuilder::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            failure_rate: None,
            slow_call_ms: None,
            slow_call_rate: None,
            window_calls: None,
            window_ms: None,
            min_calls: d.min_calls,
            wait_ms: millis(d.wait),
            max_wait_ms: None,
            wait_multiplier: d.wait_multiplier,
            jitter: d.jitter,
            seed: None,
            half_open_probes: d.half_open_probes,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CircuitBreakerConfig {
    /// Turns the settings into a builder (to add a failure predicate or events). The
    /// settings are checked by the builder's [`build`](CircuitBreakerBuilder::build),
    /// except the combinations only this form can express, checked here.
    pub fn builder(&self) -> Result<CircuitBreakerBuilder, ConfigError> {
        let mut b = CircuitBreaker::builder()
            .min_calls(self.min_calls)
            .wait(Duration::from_millis(self.wait_ms))
            .wait_multiplier(self.wait_multiplier)
            .jitter(self.jitter)
            .half_open_probes(self.half_open_probes);
        b.consecutive_failures = self.consecutive_failures;
        if let Some(rate) = self.failure_rate {
            b = b.failure_rate(rate);
        }
        match (self.slow_call_ms, self.slow_call_rate) {
            (Some(ms), Some(rate)) => b = b.slow_calls(Duration::from_millis(ms), rate),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "slow_call_rate",
                    "must be set together with slow_call_ms",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "slow_call_ms",
                    "must be set together with slow_call_rate",
                ));
            }
        }
        match (self.window_calls, self.window_ms) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "window_ms",
                    "set either window_calls or window_ms, not both",
                ));
            }
            (Some(n), None) => b = b.count_window(n),
            (None, Some(ms)) => b = b.time_window(Duration::from_millis(ms)),
            (None, None) => {}
        }
        if let Some(ms) = self.max_wait_ms {
            b = b.max_wait(Duration::from_millis(ms));
        }
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        Ok(b)
    }

    /// Validates and builds the breaker.
    pub fn build(&self) -> Result<CircuitBreaker, ConfigError> {
        self.builder()?.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: CircuitBreakerBuilder) -> &'static str {
        b.build().unwrap_err().field()
    }

    #[test]
    fn bad_settings_name_their_field() {
        let b = CircuitBreaker::builder;
        assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(field(b().failure_rate(0.0)), "failure_rate");
        assert_eq!(field(b().failure_rate(1.01)), "failure_rate");
        assert_eq!(field(b().failure_rate(f64::NAN)), "failure_rate");
        assert_eq!(field(b().slow_calls(Duration::ZERO, 0.5)), "slow_call_ms");
        assert_eq!(
            field(b().slow_calls(Duration::from_secs(1), -0.1)),
            "slow_call_rate"
        );
        assert_eq!(field(b().count_window(0)), "window_calls");
        assert_eq!(field(b().count_window(u32::MAX)), "window_calls");
        assert_eq!(field(b().time_window(Duration::ZERO)), "window_ms");
        assert_eq!(field(b().min_calls(0)), "min_calls");
        assert_eq!(field(b().wait(Duration::ZERO)), "wait_ms");
        assert_eq!(
            field(
                b().wait(Duration::from_secs(2))
                    .max_wait(Duration::from_secs(1))
            ),
            "max_wait_ms"
        );
        assert_eq!(field(b().wait_multiplier(0.5)), "wait_multiplier");
        assert_eq!(field(b().wait_multiplier(f64::INFINITY)), "wait_multiplier");
        assert_eq!(field(b().jitter(1.5)), "jitter");
        assert_eq!(field(b().jitter(f64::NAN)), "jitter");
        assert_eq!(field(b().half_open_probes(0)), "half_open_probes");
        assert_eq!(field(b().half_open_probes(70_000)), "half_open_probes");
    }

    #[test]
    fn count_window_caps_min_calls() {
        let s = CircuitBreaker::builder()
            .count_window(10)
            .min_calls(50)
            .validate()
            .unwrap();
        assert_eq!(s.min_calls, 10);
    }

    #[test]
    fn wait_grows_to_its_ceiling() {
        let s = CircuitBreaker::builder()
            .wait(Duration::from_secs(1))
            .max_wait(Duration::from_secs(10))
            .validate()
            .unwrap();
        let waits: Vec<u64> = (0..6).map(|n| s.wait_for(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(s.wait_for(u32::MAX), Duration::from_secs(10));
        let fixed = CircuitBreaker::builder().validate().unwrap();
        assert_eq!(fixed.wait_for(7), Duration::from_secs(10));
    }

    #[test]
    fn serde_form_maps_onto_the_builder() {
        let cfg: CircuitBreakerConfig = serde_json::from_str(
            r#"{"consecutive_failures": 3, "failure_rate": 0.25, "window_calls": 40,
                "min_calls": 8, "slow_call_ms": 250, "slow_call_rate": 0.5,
                "wait_ms": 100, "max_wait_ms": 1000, "wait_multiplier": 3.0,
                "jitter": 0.1, "seed": 7, "half_open_probes": 2}"#,
        )
        .unwrap();
        let s = cfg.builder().unwrap().validate().unwrap();
        assert_eq!(s.consecutive_failures, Some(3));
        assert_eq!(s.failure_rate, Some(0.25));
        assert_eq!(s.window, SlidingWindow::Count(40));
        assert_eq!(s.min_calls, 8);
        assert_eq!(s.slow_call, Some((Duration::from_millis(250), 0.5)));
        assert_eq!(s.wait, Duration::from_millis(100));
        assert_eq!(s.max_wait, Some(Duration::from_secs(1)));
        assert_eq!(s.wait_multiplier, 3.0);
        assert_eq!(s.seed, Some(7));
        assert_eq!(s.half_open_probes, 2);

        let off: CircuitBreakerConfig =
            serde_json::from_str(r#"{"consecutive_failures": null}"#).unwrap();
        assert_eq!(
            off.builder()
                .unwrap()
                .validate()
                .unwrap()
                .consecutive_failures,
            None
        );
        assert_eq!(
            CircuitBreakerConfig::default()
                .builder()
                .unwrap()
                .validate()
                .unwrap()
                .consecutive_failures,
            Some(5)
        );
    }

    #[test]
    fn serde_form_rejects_half_settings_and_unknown_fields() {
        let one_sided: CircuitBreakerConfig =
            serde_json::from_str(r#"{"slow_call_ms": 100}"#).unwrap();
        assert_eq!(one_sided.build().unwrap_err().field(), "slow_call_rate");
        let both: CircuitBreakerConfig =
            serde_json::from_str(r#"{"window_calls": 10, "window_ms": 1000}"#).unwrap();
        assert_eq!(both.build().unwrap_err().field(), "window_ms");
        assert!(serde_json::from_str::<CircuitBreakerConfig>(r#"{"wait": 5}"#).is_err());
    }
}
