//! What the side-by-side benchmarks share: CPU time of the whole process, and the
//! median of rounds.

/// CPU time used so far by every thread of this process (clients, runtime workers and
/// in-process servers alike), in nanoseconds, from `/proc/self/task/*/schedstat`; 0
/// where that is not readable. Less sensitive than the wall clock to other programs
/// sharing the machine.
pub fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// The median of the rounds' values (the upper one of an even count); `NaN` for none.
///
/// ```
/// assert_eq!(connection_testkit::bench::median(vec![3.0, 1.0, 2.0]), 2.0);
/// ```
pub fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds.get(rounds.len() / 2).copied().unwrap_or(f64::NAN)
}
