//! [`BackoffConfig`]: a backoff strategy as configuration data.

use std::time::Duration;

use connection_core::ConfigError;

use super::{BackoffBuilder, BackoffStrategy, Jitter};

/// Which schedule a [`BackoffConfig`] describes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// [`BackoffStrategy::fixed`].
    Fixed,
    /// [`BackoffStrategy::linear`]; `step_ms` defaults to `initial_ms`.
    Linear,
    /// [`BackoffStrategy::exponential`], the default kind; `multiplier` defaults to 2.0,
    /// and left out, `initial_ms` is 250, `max_delay_ms` 30 000 and `jitter` `equal`: the
    /// library's default schedule.
    #[default]
    Exponential,
    /// [`BackoffStrategy::fibonacci`].
    Fibonacci,
    /// [`BackoffStrategy::grpc`]; every other field is optional and overrides the preset.
    Grpc,
}

/// A backoff strategy as configuration: a `kind` and its settings, durations in
/// milliseconds. Unknown fields are refused, so a typo is an error rather than a
/// silently ignored setting; [`build`](Self::build) validates the rest.
///
/// ```
/// use connection_retry::backoff::BackoffConfig;
///
/// let config: BackoffConfig = serde_json::from_str(
///     r#"{ "kind": "exponential", "initial_ms": 50, "multiplier": 2.0,
///          "max_delay_ms": 10000, "jitter": "full", "max_retries": 5 }"#,
/// )?;
/// let strategy = config.build()?;
/// assert_eq!(strategy.max_retries(), Some(5));
///
/// let grpc: BackoffConfig = serde_json::from_str(r#"{ "kind": "grpc", "seed": 7 }"#)?;
/// assert_eq!(grpc.build()?.max_delay(), std::time::Duration::from_secs(120));
///
/// let bad: BackoffConfig = serde_json::from_str(r#"{ "kind": "fixed", "initial_ms": 0 }"#)?;
/// assert_eq!(bad.build().unwrap_err().field(), "initial_ms");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The schedule (default `exponential`).
    #[serde(default)]
    pub kind: BackoffKind,
    /// First delay; required except for `grpc`.
    #[serde(default)]
    pub initial_ms: Option<u64>,
    /// Increment of a `linear` schedule.
    #[serde(default)]
    pub step_ms: Option<u64>,
    /// Growth factor of an `exponential` (or `grpc`) schedule.
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// Ceiling on every delay.
    #[serde(default)]
    pub max_delay_ms: Option<u64>,
    /// Randomization (default `none`, or the preset's for `grpc`).
    #[serde(default)]
    pub jitter: Option<Jitter>,
    /// Retries before giving up (default: no limit).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Seed of the random source (default: from the operating system).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// First delay of the default exponential schedule.
const DEFAULT_INITIAL: Duration = Duration::from_millis(250);
/// Ceiling of the default exponential schedule.
const DEFAULT_MAX: Duration = Duration::from_secs(30);

impl Default for BackoffConfig {
    /// Exponential from 250 ms, doubling, at most 30 s, equal jitter, forever.
    fn default() -> Self {
        Self::new(BackoffKind::Exponential)
    }
}

impl BackoffConfig {
    /// A configuration of `kind` with every setting at its default.
    pub fn new(kind: BackoffKind) -> Self {
        Self {
            kind,
            initial_ms: None,
            step_ms: None,
            multiplier: None,
            max_delay_ms: None,
            jitter: None,
            max_retries: None,
            seed: None,
        }
    }

    /// Validates and builds the strategy. Errors name the configuration field
    /// (`initial_ms`, `max_delay_ms`, ...); a field that does not apply to the `kind`
    /// (`step_ms` on an exponential schedule, say) is refused too.
    pub fn build(&self) -> Result<BackoffStrategy, ConfigError> {
        let ms = Duration::from_millis;
        if self.step_ms.is_some() && self.kind != BackoffKind::Linear {
            return Err(ConfigError::new("step_ms", "only applies to kind `linear`"));
        }
        if self.multiplier.is_some()
            && !matches!(self.kind, BackoffKind::Exponential | BackoffKind::Grpc)
        {
            return Err(ConfigError::new(
                "multiplier",
                "only applies to kinds `exponential` and `grpc`",
            ));
        }
        let initial = || {
            self.initial_ms
                .map(ms)
                .ok_or_else(|| ConfigError::new("initial_ms", "is required for this kind"))
        };
        let exponential = self.kind == BackoffKind::Exponential;
        let mut builder: BackoffBuilder = match self.kind {
            BackoffKind::Fixed => BackoffStrategy::fixed(initial()?),
            BackoffKind::Linear => {
                let initial = initial()?;
                BackoffStrategy::linear(initial, self.step_ms.map_or(initial, ms))
            }
            BackoffKind::Exponential => BackoffStrategy::exponential(
                self.initial_ms.map_or(DEFAULT_INITIAL, ms),
                self.multiplier.unwrap_or(2.0),
            ),
            BackoffKind::Fibonacci => BackoffStrategy::fibonacci(initial()?),
            BackoffKind::Grpc => match (self.initial_ms, self.multiplier) {
                (None, None) => BackoffStrategy::grpc(),
                (initial, multiplier) => BackoffStrategy::exponential(
                    initial.map_or(Duration::from_secs(1), ms),
                    multiplier.unwrap_or(1.6),
                )
                .max_delay(Duration::from_secs(120))
                .jitter(Jitter::Proportional(0.2)),
            },
        };
        match self.max_delay_ms {
            Some(max) => builder = builder.max_delay(ms(max)),
            None if exponential => {
                builder =
                    builder.max_delay(DEFAULT_MAX.max(self.initial_ms.map_or(DEFAULT_INITIAL, ms)))
            }
            None => {}
        }
        match self.jitter {
            Some(jitter) => builder = builder.jitter(jitter),
            None if exponential => builder = builder.jitter(Jitter::Equal),
            None => {}
        }
        if let Some(n) = self.max_retries {
            builder = builder.max_retries(n);
        }
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        builder.build().map_err(|e| {
            let field = match e.field() {
                "initial" => "initial_ms",
                "max_delay" => "max_delay_ms",
                other => other,
            };
            ConfigError::new(field, e.reason())
        })
    }
}

impl TryFrom<BackoffConfig> for BackoffStrategy {
    type Error = ConfigError;

    fn try_from(config: BackoffConfig) -> Result<Self, ConfigError> {
        config.build()
    }
}

#[cfg(test)]
mod tests {
    use connection_core::Backoff;

    use super::*;

    fn parse(json: &str) -> BackoffConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_kind_builds_its_schedule() {
        let ms = Duration::from_millis;
        let cases = [
            (r#"{"kind":"fixed","initial_ms":20}"#, [20, 20, 20]),
            (r#"{"kind":"linear","initial_ms":20}"#, [20, 40, 60]),
            (
                r#"{"kind":"linear","initial_ms":20,"step_ms":5}"#,
                [20, 25, 30],
            ),
            (
                r#"{"kind":"exponential","initial_ms":20,"jitter":"none"}"#,
                [20, 40, 80],
            ),
            (r#"{"jitter":"none"}"#, [250, 500, 1000]),
            (
                r#"{"kind":"exponential","initial_ms":20,"multiplier":3.0,"max_delay_ms":100,"jitter":"none"}"#,
                [20, 60, 100],
            ),
            (r#"{"kind":"fibonacci","initial_ms":20}"#, [20, 20, 40]),
            (r#"{"kind":"grpc","jitter":"none"}"#, [1000, 1600, 2560]),
            (
                r#"{"kind":"grpc","initial_ms":100,"jitter":"none"}"#,
                [100, 160, 256],
            ),
        ];
        for (json, expected) in cases {
            let mut b = parse(json).build().unwrap();
            let got: Vec<_> = (1..=3).map(|n| b.next_delay(n, None).unwrap()).collect();
            assert_eq!(got, expected.map(ms), "{json}");
        }
    }

    #[test]
    fn jitter_forms() {
        let c = parse(r#"{"kind":"fixed","initial_ms":1,"jitter":{"proportional":0.5}}"#);
        assert_eq!(c.jitter, Some(Jitter::Proportional(0.5)));
        for (text, jitter) in [
            ("none", Jitter::None),
            ("full", Jitter::Full),
            ("equal", Jitter::Equal),
            ("decorrelated", Jitter::Decorrelated),
        ] {
            let c = parse(&format!(
                r#"{{"kind":"fixed","initial_ms":1,"jitter":"{text}"}}"#
            ));
            assert_eq!(c.build().unwrap().jitter(), jitter);
        }
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let field = |json: &str| parse(json).build().unwrap_err().field();
        assert_eq!(field(r#"{"kind":"fixed"}"#), "initial_ms");
        assert_eq!(field(r#"{"kind":"fixed","initial_ms":0}"#), "initial_ms");
        assert_eq!(
            field(r#"{"kind":"fixed","initial_ms":10,"max_delay_ms":5}"#),
            "max_delay_ms"
        );
        assert_eq!(
            field(r#"{"kind":"exponential","initial_ms":10,"multiplier":0.9}"#),
            "multiplier"
        );
        assert_eq!(
            field(r#"{"kind":"fixed","initial_ms":10,"multiplier":2.0}"#),
            "multiplier"
        );
        assert_eq!(
            field(r#"{"kind":"exponential","initial_ms":10,"step_ms":2}"#),
            "step_ms"
        );
        assert_eq!(
            field(r#"{"kind":"fixed","initial_ms":10,"jitter":{"proportional":2.0}}"#),
            "jitter"
        );
        assert!(serde_json::from_str::<BackoffConfig>(r#"{"kind":"fixed","initial":10}"#).is_err());
        assert!(serde_json::from_str::<BackoffConfig>(r#"{"kind":"cubic"}"#).is_err());
    }

    #[test]
    fn round_trips_through_serde() {
        let mut c = BackoffConfig::new(BackoffKind::Exponential);
        c.initial_ms = Some(5);
        c.jitter = Some(Jitter::Proportional(0.1));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BackoffConfig>(&json).unwrap(), c);
        assert!(BackoffStrategy::try_from(c).is_ok());
    }
}
