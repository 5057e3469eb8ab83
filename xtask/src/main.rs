//! Project automation, run as `cargo xtask <command>`:
//!
//! - `ci`: everything CI checks, in the order that fails fastest; installs nothing it
//!   cannot get from the toolchain or PyPI (the interop peer, see below), and says what
//!   it skipped and why.
//! - `interop`: sets up the third-party interop peers and runs only the interop tests
//!   (Python `websockets` and `aiohttp`, and the Autobahn|Testsuite fuzzing server).
//! - `autobahn`: only the Autobahn|Testsuite conformance run.
//! - `bench [group]`: the side-by-side comparisons; JSON lines on stdout.
//! - `demo`: the demo, on local servers it starts itself.
//!
//! The interop peers are Python packages, pinned, in a venv under `target/interop-venv`
//! (created by `python3 -m venv`, or `$CONNECTION_PYTHON`): `websockets` for the
//! WebSocket client, `aiohttp` for the SSE client (its server runs
//! `connection-transport-sse/tests/interop/sse_server.py` on 127.0.0.1; the TCP client's
//! peer, `connection-transport-tcp/tests/interop/echo_server.py`, is asyncio and ssl from
//! the same interpreter's standard library). Each install is
//! skipped when the venv already has the pinned version. The tests get the
//! venv's interpreter through `CONNECTION_INTEROP_PYTHON`, and `CONNECTION_REQUIRE_INTEROP=1`
//! makes a missing peer a failure instead of a notice.
//!
//! The HTTP interop peer is nginx from Debian (`nginx-light`), installed with apt-get
//! when no `nginx` binary is found (with a `policy-rc.d` that keeps the package from
//! starting its own service on port 80); the tests start it themselves, bound to
//! 127.0.0.1, with a configuration under the target directory, and get the binary
//! through `CONNECTION_INTEROP_NGINX`.
//!
//! The conformance suite is PyPI `autobahntestsuite` 0.8.2, which needs CPython 2.7
//! (`$CONNECTION_AUTOBAHN_PYTHON`, else `python2.7` on the PATH, else pyenv's 2.7): it is
//! installed with `pip install --target target/autobahn/site` (skipped when there), and
//! `target/autobahn/run.py` starts its fuzzing server bound to 127.0.0.1. The test
//! `connection-transport-ws/tests/autobahn.rs` gets the folder through
//! `CONNECTION_AUTOBAHN_DIR`.
#![allow(clippy::print_stdout, reason = "a command-line tool reports on stdout")]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Crates that users depend on: each must build alone with and without its features.
const LIBRARY_CRATES: &[&str] = &[
    "connection-core",
    "connection-retry",
    "connection-pool",
    "connection-health",
    "connection-tls",
    "connection-transport-ws",
    "connection-transport-http",
    "connection-transport-sse",
    "connection-transport-tcp",
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
    ("http", "connection-transport-http", "http"),
    ("sse", "connection-transport-sse", "sse"),
    ("tcp", "connection-transport-tcp", "tcp"),
    ("tcp", "connection-transport-tcp", "cache"),
    ("tcp", "connection-transport-tcp", "listener"),
    ("manager", "connection-health", "manager"),
    ("manager", "connection-health", "storm"),
    ("manager", "connection-health", "export"),
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("interop") => interop(),
        Some("autobahn") => autobahn(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("demo") => run(cargo().args(["run", "--quiet", "-p", "examples", "--bin", "demo"])),
        _ => {
            eprintln!("usage: cargo xtask <ci | interop | autobahn | bench [group] | demo>");
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

/// The pinned interop peers: `pip install` argument, the module to import and the
/// version it reports.
const INTEROP_PEERS: &[(&str, &str, &str)] = &[
    ("websockets==15.0.1", "websockets", "15.0.1"),
    ("aiohttp==3.14.5", "aiohttp", "3.14.5"),
];

/// Environment variables the interop tests read: the peer's interpreter, and whether a
/// missing peer fails the test (set by `ci` and `interop`) rather than skipping it loudly.
const INTEROP_PYTHON_VAR: &str = "CONNECTION_INTEROP_PYTHON";
const INTEROP_REQUIRE_VAR: &str = "CONNECTION_REQUIRE_INTEROP";

fn interop_venv() -> PathBuf {
    root().join("target").join("interop-venv")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Creates the interop venv if needed and installs the pinned peers that are not
/// already there (so reruns take a fraction of a second). Returns the venv's
/// interpreter.
fn interop_setup() -> Result<PathBuf, String> {
    let venv = interop_venv();
    let python = venv_python(&venv);
    if !python.exists() {
        let base = env::var("CONNECTION_PYTHON").unwrap_or_else(|_| "python3".into());
        eprintln!(
            "xtask: creating the interop venv {} with {base}",
            venv.display()
        );
        run(Command::new(&base).arg("-m").arg("venv").arg(&venv))
            .map_err(|e| format!("{e} (is Python 3 with the venv module installed?)"))?;
    }
    for &(requirement, module, version) in INTEROP_PEERS {
        let installed = Command::new(&python)
            .args([
                "-c",
                &format!("import {module}, sys; sys.stdout.write({module}.__version__)"),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if installed.as_deref() == Some(version) {
            eprintln!("xtask: interop peer {requirement} already installed");
            continue;
        }
        eprintln!("xtask: installing the interop peer {requirement} from PyPI");
        run(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]))?;
    }
    Ok(python)
}

/// Points a test command at the interop peers and makes their absence a failure.
fn with_interop_env(cmd: &mut Command) {
    cmd.env(INTEROP_PYTHON_VAR, venv_python(&interop_venv()))
        .env(INTEROP_REQUIRE_VAR, "1");
    if let Some(nginx) = nginx_path() {
        cmd.env(NGINX_VAR, nginx);
    }
}

/// Where the HTTP interop tests find nginx.
const NGINX_VAR: &str = "CONNECTION_INTEROP_NGINX";

/// An nginx binary: `$CONNECTION_INTEROP_NGINX`, Debian's place, or the PATH.
fn nginx_path() -> Option<PathBuf> {
    if let Some(p) = env::var_os(NGINX_VAR) {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let mut places = vec![PathBuf::from("/usr/sbin/nginx")];
    if let Some(path) = env::var_os("PATH") {
        places.extend(env::split_paths(&path).map(|d| d.join("nginx")));
    }
    places.into_iter().find(|p| p.exists())
}

/// Installs Debian's `nginx-light` unless an nginx is there.
fn nginx_setup() -> Result<PathBuf, String> {
    if let Some(p) = nginx_path() {
        eprintln!("xtask: nginx already installed ({})", p.display());
        return Ok(p);
    }
    eprintln!("xtask: installing nginx-light from Debian");
    // Keep the package from starting its own nginx (port 80, every interface): the
    // tests start theirs on 127.0.0.1. Removed again only if we made it.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists()
        && std::fs::write(policy, "#!/bin/sh\nexit 101\n").is_ok()
        && Command::new("chmod").arg("+x").arg(policy).status().is_ok();
    let result = run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| {
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "nginx-light",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    });
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    result.map_err(|e| format!("{e} (installing nginx needs apt-get and root)"))?;
    nginx_path().ok_or_else(|| "nginx-light installed, but no nginx binary found".to_owned())
}

/// The pinned conformance suite.
const AUTOBAHN_PEER: &str = "autobahntestsuite==0.8.2";
/// What the Autobahn test reads: the suite's folder and its interpreter.
const AUTOBAHN_DIR_VAR: &str = "CONNECTION_AUTOBAHN_DIR";
const AUTOBAHN_PYTHON_VAR: &str = "CONNECTION_AUTOBAHN_PYTHON";

fn autobahn_dir() -> PathBuf {
    root().join("target").join("autobahn")
}

/// A CPython 2.7 interpreter, which the suite needs.
fn python27() -> Option<PathBuf> {
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import sys; assert sys.version_info[:2] == (2, 7)"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if let Ok(p) = env::var(AUTOBAHN_PYTHON_VAR) {
        return Some(PathBuf::from(p)).filter(|p| works(p));
    }
    if works(Path::new("python2.7")) {
        return Some(PathBuf::from("python2.7"));
    }
    let pyenv_root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))?;
    let mut versions: Vec<PathBuf> = std::fs::read_dir(pyenv_root.join("versions"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("2.7"))
        .map(|e| e.path().join("bin").join("python"))
        .collect();
    versions.sort();
    versions.into_iter().rev().find(|p| works(p))
}

/// Installs the suite into `target/autobahn/site` unless it is there, and writes the
/// script that starts its server on 127.0.0.1. Returns the interpreter.
fn autobahn_setup() -> Result<PathBuf, String> {
    let python = python27().ok_or_else(|| {
        format!(
            "no CPython 2.7 found for the Autobahn|Testsuite (set {AUTOBAHN_PYTHON_VAR}, or \
             install 2.7 with pyenv)"
        )
    })?;
    let dir = autobahn_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("run.py"), include_str!("autobahn_run.py"))
        .map_err(|e| format!("writing run.py: {e}"))?;
    let marker = dir.join("site").join(".installed-autobahntestsuite-0.8.2");
    if marker.exists() {
        eprintln!("xtask: {AUTOBAHN_PEER} already installed");
        return Ok(python);
    }
    eprintln!("xtask: installing {AUTOBAHN_PEER} for {}", python.display());
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
        ])
        .arg(dir.join("site"))
        .arg(AUTOBAHN_PEER))?;
    std::fs::write(&marker, "").map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(python)
}

fn with_autobahn_env(cmd: &mut Command, python: &Path) {
    cmd.env(AUTOBAHN_DIR_VAR, autobahn_dir())
        .env(AUTOBAHN_PYTHON_VAR, python);
}

fn autobahn() -> Result<(), String> {
    let python = autobahn_setup()?;
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "connection-transport-ws",
        "--test",
        "autobahn",
        "--",
        "--nocapture",
    ]);
    with_autobahn_env(&mut cmd, &python);
    run(&mut cmd)
}

fn interop() -> Result<(), String> {
    interop_setup()?;
    nginx_setup()?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "connection-transport-http", "--test", "nginx"]);
    with_interop_env(&mut cmd);
    run(&mut cmd)?;
    autobahn()?;
    let nextest = has_nextest();
    for package in [
        "connection-transport-ws",
        "connection-transport-sse",
        "connection-transport-tcp",
    ] {
        let mut cmd = cargo();
        if nextest {
            cmd.args(["nextest", "run"]);
        } else {
            cmd.arg("test");
        }
        cmd.args(["-p", package, "--test", "interop", "--no-fail-fast"]);
        with_interop_env(&mut cmd);
        run(&mut cmd)?;
    }
    Ok(())
}

/// One `ci` step: a cargo command, or work done here in xtask.
enum Step {
    Cargo(Command),
    InteropSetup,
}

fn ci() -> Result<(), String> {
    let started = Instant::now();
    let mut steps: Vec<(String, Step)> = Vec::new();
    let mut step = |name: &str, args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(args);
        steps.push((name.to_owned(), Step::Cargo(cmd)));
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
    // Before the tests, which need the peer: a failed setup fails both steps.
    steps.push(("interop setup".to_owned(), Step::InteropSetup));
    let mut step = |name: &str, args: &[&str]| {
        let mut cmd = cargo();
        cmd.args(args);
        steps.push((name.to_owned(), Step::Cargo(cmd)));
    };
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
        step(
            &format!("{krate} --no-default-features"),
            &["check", "-p", krate, "--no-default-features"],
        );
        step(
            &format!("{krate} --all-features"),
            &["check", "-p", krate, "--all-features"],
        );
    }

    let total = steps.len();
    let mut failed = Vec::new();
    for (i, (name, step)) in steps.into_iter().enumerate() {
        eprintln!("\n=== xtask ci [{}/{total}] {name}", i + 1);
        let step_started = Instant::now();
        let result = match step {
            Step::InteropSetup => interop_setup()
                .and_then(|_| nginx_setup())
                .and_then(|_| autobahn_setup())
                .map(drop),
            Step::Cargo(mut cmd) => {
                if name == "doc" {
                    cmd.env("RUSTDOCFLAGS", "-Dwarnings");
                }
                if name == "test" {
                    with_interop_env(&mut cmd);
                    if let Some(python) = python27() {
                        with_autobahn_env(&mut cmd, &python);
                    }
                }
                run(&mut cmd)
            }
        };
        match result {
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
