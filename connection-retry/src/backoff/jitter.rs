//! [`Jitter`]: how a computed delay is randomized.

use connection_core::ConfigError;
use rand::Rng;
use rand::rngs::SmallRng;

/// How the delay a schedule computes is randomized before it is used.
///
/// Without jitter, clients that failed together retry together: every one of them
/// computes the same schedule from the same moment, so a server that dropped them all
/// is hit by all of them again at each step. Jitter spreads them out.
///
/// With `d` the schedule's delay for an attempt and `max` the strategy's ceiling:
///
/// | variant | delay |
/// |---|---|
/// | [`None`](Jitter::None) | `d` |
/// | [`Full`](Jitter::Full) | uniform in `[0, d]` |
/// | [`Equal`](Jitter::Equal) | `d/2` + uniform in `[0, d/2]` |
/// | [`Proportional(f)`](Jitter::Proportional) | uniform in `[d·(1−f), d·(1+f)]`, at most `max` |
/// | [`Decorrelated`](Jitter::Decorrelated) | `min(max, uniform in [d, 3·previous])` |
///
/// `Full` spreads load best and is what AWS recommends for contended resources; `Equal`
/// keeps at least half of the schedule's wait; `Proportional` is gRPC's "±20 %"
/// style. `Decorrelated` (AWS's "decorrelated jitter") grows from the previous *actual*
/// delay instead of the attempt number, so two clients that drew different delays
/// drift further apart rather than realigning at the next step; with
/// [`BackoffStrategy::fixed`](super::BackoffStrategy::fixed) as the schedule it is
/// exactly AWS's algorithm (`base` = the fixed delay), on any other schedule the
/// schedule's delay is the floor.
///
/// In configuration files (see [`BackoffConfig`](super::BackoffConfig)) a jitter is
/// written `"none"`, `"full"`, `"equal"`, `"decorrelated"` or `{"proportional": 0.2}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// The schedule's delay, unchanged.
    #[default]
    None,
    /// Uniform between zero and the delay.
    Full,
    /// Half the delay plus uniform up to the other half.
    Equal,
    /// Uniform between the delay and three times the previous delay, capped.
    Decorrelated,
    /// The delay times `1 ± f` (uniform), `f` in `0..=1`; at most the ceiling.
    Proportional(f64),
}

impl Jitter {
    pub(super) fn validate(self) -> Result<(), ConfigError> {
        match self {
            Self::Proportional(f) if !(0.0..=1.0).contains(&f) => Err(ConfigError::new(
                "jitter",
                format!("proportional factor must be within 0..=1, got {f}"),
            )),
            _ => Ok(()),
        }
    }

    /// Randomizes `d` (nanoseconds, already at most `max`). `prev` is the previous
    /// delay handed out, which only decorrelated jitter reads.
    pub(super) fn apply(self, d: u64, max: u64, prev: Option<u64>, rng: &mut SmallRng) -> u64 {
        match self {
            Self::None => d,
            Self::Full => rng.random_range(0..=d),
            Self::Equal => {
                let half = d / 2;
                (d - half) + rng.random_range(0..=half)
            }
            Self::Proportional(f) => {
                let d = d as f64;
                let low = d * (1.0 - f);
                let spread = 2.0 * d * f;
                let v = low + spread * rng.random::<f64>();
                // `as` saturates, and a NaN (impossible after validation) becomes 0.
                (v.round() as u64).min(max)
            }
            Self::Decorrelated => {
                let high = prev.unwrap_or(d).saturating_mul(3).max(d);
                rng.random_range(d..=high).min(max)
            }
        }
    }
}
