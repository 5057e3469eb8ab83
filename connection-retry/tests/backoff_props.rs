//! Properties every backoff strategy keeps, for any settings and attempt numbers.

use std::time::Duration;

use connection_core::Backoff;
use connection_retry::backoff::{BackoffBuilder, BackoffStrategy, Jitter};
use proptest::prelude::*;

/// A schedule with arbitrary valid settings, as (name, builder, initial).
fn schedule() -> impl Strategy<Value = (BackoffBuilder, Duration)> {
    let initial = (1u64..=10_000_000_000).prop_map(Duration::from_nanos);
    (0..4u8, initial, 0u64..=5_000_000_000, 1.0f64..=16.0).prop_map(
        |(kind, initial, step, multiplier)| {
            let builder = match kind {
                0 => BackoffStrategy::fixed(initial),
                1 => BackoffStrategy::linear(initial, Duration::from_nanos(step)),
                2 => BackoffStrategy::exponential(initial, multiplier),
                _ => BackoffStrategy::fibonacci(initial),
            };
            (builder, initial)
        },
    )
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0.0f64..=1.0).prop_map(Jitter::Proportional),
    ]
}

/// Attempt numbers, small and huge.
fn attempts() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(prop_oneof![1u32..64, any::<u32>(), Just(u32::MAX)], 1..40)
}

proptest! {
    #[test]
    fn never_above_the_ceiling(
        (builder, initial) in schedule(),
        extra in 0u64..=100_000_000_000,
        jitter in jitter(),
        seed in any::<u64>(),
        attempts in attempts(),
    ) {
        let max = initial + Duration::from_nanos(extra);
        let mut b = builder.max_delay(max).jitter(jitter).seed(seed).build().unwrap();
        for attempt in attempts {
            // A Duration cannot be negative; the property is that nothing panics and
            // every delay is within [0, max].
            let d = b.next_delay(attempt, None).unwrap();
            prop_assert!(d <= max, "{d:?} > {max:?} at attempt {attempt}");
        }
    }

    #[test]
    fn jitter_stays_within_its_band(
        (builder, initial) in schedule(),
        jitter in prop_oneof![
            Just(Jitter::Full),
            Just(Jitter::Equal),
            (0.0f64..=1.0).prop_map(Jitter::Proportional),
        ],
        seed in any::<u64>(),
        attempts in attempts(),
    ) {
        let max = initial * 1000;
        let mut plain = builder.clone().max_delay(max).build().unwrap();
        let mut jittered = builder.max_delay(max).jitter(jitter).seed(seed).build().unwrap();
        for attempt in attempts {
            let d = plain.next_delay(attempt, None).unwrap().as_nanos() as f64;
            let j = jittered.next_delay(attempt, None).unwrap().as_nanos() as f64;
            let (low, high) = match jitter {
                Jitter::Full => (0.0, d),
                Jitter::Equal => ((d / 2.0).floor(), d),
                Jitter::Proportional(f) => (d * (1.0 - f), (d * (1.0 + f)).min(max.as_nanos() as f64)),
                _ => unreachable!(),
            };
            // One nanosecond of slack for rounding.
            prop_assert!(j >= low - 1.0 && j <= high + 1.0, "{j} outside [{low}, {high}] ({jitter:?})");
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_three_times_the_previous(
        base in (1u64..=1_000_000_000).prop_map(Duration::from_nanos),
        cap_factor in 1u32..1000,
        seed in any::<u64>(),
        steps in 1usize..100,
    ) {
        let cap = base * cap_factor;
        let mut b = BackoffStrategy::fixed(base)
            .max_delay(cap)
            .jitter(Jitter::Decorrelated)
            .seed(seed)
            .build()
            .unwrap();
        let mut prev = base;
        for attempt in 1..=steps as u32 {
            let d = b.next_delay(attempt, None).unwrap();
            let high = cap.min(prev * 3);
            prop_assert!(d >= base.min(cap) && d <= high, "{d:?} outside [{base:?}, {high:?}]");
            prev = d;
        }
    }

    #[test]
    fn monotone_without_jitter(
        (builder, initial) in schedule(),
        extra in 0u64..=100_000_000_000,
        mut attempts in attempts(),
    ) {
        let max = initial + Duration::from_nanos(extra);
        let mut b = builder.max_delay(max).build().unwrap();
        attempts.sort_unstable();
        let delays: Vec<_> = attempts.iter().map(|&a| b.next_delay(a, None).unwrap()).collect();
        for pair in delays.windows(2) {
            prop_assert!(pair[0] <= pair[1], "{:?} then {:?}", pair[0], pair[1]);
        }
    }
}
