//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks, in the order that fails fastest; installs nothing it
//!   cannot get from the toolchain, and says what it skipped and why.
//! - `bench [group]`: the side-by-side comparisons; JSON lines on stdout.
//! - `demo`: the demo, on local servers it starts itself.
#![allow(clippy::print_stdout, reason = "a command-line tool reports on stdout")]

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Crates that users depend on: each must build alone with and without its features.
const LIBRARY_CRATES: &[&str] = &[
    "connection-core",
    "connection-retry",
    "connection-pool",
    "connection-health",
    "connection-transport-ws",
    "connection-testkit",
    "connection-kit",
];

/// `cargo xtask bench` groups: name, package, bench target.
const BENCH_GROUPS: &[(&str, &str, &str)] = &[
    ("metrics", "connection-core", "metrics"),
    ("retry", "connection-retry", "retry"),
    ("retry", "connection-retry", "breaker"),
    ("retry", "connection-retry", "limit"),
    ("retry", "connection-retry", "stack"),
    ("pool", "connection-pool", "pool"),
    ("ws", "connection-transport-ws", "ws"),
    ("manager", "connection-health", "manager"),
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("demo") => run(cargo().args(["run", "--quiet", "-p", "examples", "--bin", "demo"])),
        _ => {
            eprintln!("usage: cargo xtask <ci | bench [group] | demo>");
            eprintln!(
                "bench groups: {}",
                BENCH_GROUPS
                    .iter()
                    .map(|g| g.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ci() -> Result<(), String> {
    let started = Instant::now();
    let mut steps: Vec<(String, Command)> = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(args);
        steps.push((name.to_owned(), cmd));
    };
    step("fmt", &["fmt", "--all", "--", "--check"]);
    step(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    );
    if has_nextest() {
        step(
            "test",
            &[
                "nextest",
                "run",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
            ],
        );
    } else {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
        step(
            "test",
            &[
                "test",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
                "--lib",
                "--bins",
                "--tests",
            ],
        );
    }
    step(
        "doctest",
        &["test", "--workspace", "--all-features", "--doc"],
    );
    step(
        "doc",
        &["doc", "--workspace", "--no-deps", "--all-features"],
    );
    for krate in LIBRARY_CRATES {
        steps.push((format!("{krate} --no-default-features"), {
            let mut c = cargo();
            c.args(["check", "-p", krate, "--no-default-features"]);
            c
        }));
        steps.push((format!("{krate} --all-features"), {
            let mut c = cargo();
            c.args(["check", "-p", krate, "--all-features"]);
            c
        }));
    }

    let total = steps.len();
    let mut failed = Vec::new();
    for (i, (name, mut cmd)) in steps.into_iter().enumerate() {
        eprintln!("\n=== xtask ci [{}/{total}] {name}", i + 1);
        if name == "doc" {
            cmd.env("RUSTDOCFLAGS", "-Dwarnings");
        }
        let step_started = Instant::now();
        match run(&mut cmd) {
            Ok(()) => eprintln!("=== {name}: ok ({:.0?})", step_started.elapsed()),
            Err(e) => {
                eprintln!("=== {name}: FAILED: {e}");
                failed.push(name);
            }
        }
    }
    let secs = started.elapsed().as_secs();
    if failed.is_empty() {
        println!("xtask ci: all {total} steps ok in {secs} s");
        Ok(())
    } else {
        println!(
            "xtask ci: {} of {total} steps FAILED in {secs} s: {}",
            failed.len(),
            failed.join(", ")
        );
        Err("ci failed".into())
    }
}

fn bench(group: Option<&str>) -> Result<(), String> {
    let selected: Vec<_> = BENCH_GROUPS
        .iter()
        .filter(|(name, ..)| group.is_none_or(|g| g == *name))
        .collect();
    if selected.is_empty() {
        let known: Vec<_> = BENCH_GROUPS.iter().map(|g| g.0).collect();
        return Err(format!(
            "unknown bench group {:?}; known: {}",
            group.unwrap_or(""),
            known.join(", ")
        ));
    }
    for (_, package, target) in selected {
        run(cargo().args(["bench", "--quiet", "-p", package, "--bench", target]))?;
    }
    Ok(())
}
