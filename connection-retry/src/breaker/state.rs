//! The state machine: the packed state word, the lock-free closed path, and the
//! transitions, which are rare and serialized by one mutex.
//!
//! # The state word
//!
//! One `AtomicU64`: the state in the low two bits, a generation above them. Every
//! transition stores a new word with the generation bumped, and every permit remembers
//! the word it was granted under. An outcome whose permit's word is no longer current
//! belongs to a period that is over (a call started before a trip, finishing during
//! half-open) and moves no state; it is still counted in the stats.
//!
//! # Memory ordering
//!
//! Transitions happen under `transitions` and prepare everything the new state needs
//! (window reset, open deadline, probe slots) before storing the word with `Release`;
//! readers load it with `Acquire`, so whoever sees the new state sees it prepared. Since
//! every write of the word is under the mutex, a transition reads it with `Relaxed` and
//! compares with the word the caller saw: a mismatch means another thread moved the
//! state first, and the caller's transition is dropped. All counters are `Relaxed`: they
//! are statistics or thresholds, and the decisions they feed re-check the word under the
//! mutex.
//!
//! # Half-open probes
//!
//! `probes` packs the half-open period's generation (low 32 bits of it), the slots
//! taken and the successes. Admission, success and release are compare-and-swap loops
//! that only act when the generation matches, so a late permit from an earlier period
//! cannot free a slot of the current one.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use connection_core::{EventKind, RejectReason, Rejected};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::config::Settings;
use super::stats::{CachePadded, CircuitStats, Count, Counters};
use super::window::{self, Tally, Window};
use crate::events::{CircuitClosed, CircuitHalfOpen, CircuitOpened};
use crate::{Classify, refusal};

pub(super) const CLOSED: u64 = 0;
pub(super) const OPEN: u64 = 1;
pub(super) const HALF_OPEN: u64 = 2;
pub(super) const ISOLATED: u64 = 3;
pub(super) const STATE_MASK: u64 = 0b11;
const GENERATION_ONE: u64 = 0b100;

/// The next word: `state`, one generation on.
fn next(word: u64, state: u64) -> u64 {
    ((word & !STATE_MASK).wrapping_add(GENERATION_ONE)) | state
}

/// The low 32 bits of a word's generation, as kept in `probes`.
fn generation32(word: u64) -> u64 {
    (word >> 2) & 0xFFFF_FFFF
}

const PROBES_TAKEN_ONE: u64 = 1 << 16;
const PROBES_FIELD: u64 = 0xFFFF;

/// Where a circuit breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A limited number of probe calls pass; their outcome closes or re-opens it.
    HalfOpen,
    /// Held open by [`isolate`](super::CircuitBreaker::isolate) until
    /// [`reset`](super::CircuitBreaker::reset).
    Isolated,
}

impl CircuitState {
    /// `true` when calls pass freely.
    pub fn is_closed(self) -> bool {
        self == Self::Closed
    }

    /// `true` when every call is rejected ([`Open`](Self::Open) or
    /// [`Isolated`](Self::Isolated)).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::Isolated)
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::Isolated => "isolated",
        })
    }
}

/// Why the circuit opened, for logs.
#[derive(Clone, Copy, Debug)]
enum TripReason {
    ConsecutiveFailures,
    FailureRate,
    SlowCallRate,
    ProbeFailed,
    Forced,
}

/// How an error counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    Failure,
    Ignore,
}

/// What only transitions touch.
struct Transitions {
    rng: SmallRng,
    /// Opens since the circuit last closed: the exponent of a growing wait.
    trips_in_row: u32,
}

/// Written only by transitions and half-open calls, kept off the hot lines.
#[derive(Default)]
struct Cold {
    /// Deadline of the open state, in nanoseconds since `base`.
    open_until: AtomicU64,
    /// Half-open bookkeeping: generation << 32 | taken << 16 | successes.
    probes: AtomicU64,
    trips: AtomicU64,
}

pub(super) struct Inner {
    /// The state word. Read by every call, written only by transitions.
    state: CachePadded<AtomicU64>,
    /// Failures in a row in the current closed period. Read by every success, written
    /// by failures (and by the success after them).
    consecutive: CachePadded<AtomicU32>,
    cold: CachePadded<Cold>,
    window: Option<Window>,
    counters: Counters,
    /// Whether permits note their start time (slow-call detection).
    pub(super) times_calls: bool,
    /// Origin of the nanosecond clock used for deadlines and time windows.
    base: Instant,
    transitions: Mutex<Transitions>,
    settings: Settings,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.peek_state())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Inner {
    pub(super) fn new(settings: Settings) -> Self {
        let rng = match settings.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Self {
            state: CachePadded(AtomicU64::new(CLOSED)),
            consecutive: CachePadded::default(),
            cold: CachePadded::default(),
            window: settings
                .uses_window()
                .then(|| Window::new(settings.window, settings.min_calls)),
            counters: Counters::new(),
            times_calls: settings.slow_call.is_some(),
            base: Instant::now(),
            transitions: Mutex::new(Transitions {
                rng,
                trips_in_row: 0,
            }),
            settings,
        }
    }

    /// The state word. Acquire: see the transition's preparations (module docs).
    #[inline]
    pub(super) fn word(&self) -> u64 {
        self.state.load(Acquire)
    }

    fn now_nanos_at(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.base))
    }

    fn now_nanos(&self) -> u64 {
        self.now_nanos_at(Instant::now())
    }

    // ---- admission ----------------------------------------------------------------

    /// Admission when the word is not closed: open (maybe turning half-open), half-open
    /// (maybe a probe slot) or isolated. Returns the word the permit is granted under.
    #[cold]
    pub(super) fn acquire_slow(&self, mut word: u64) -> Result<u64, Rejected> {
        loop {
            match word & STATE_MASK {
                CLOSED => return Ok(word),
                OPEN => {
                    let now = self.now_nanos();
                    let until = self.cold.open_until.load(Relaxed);
                    if now < until {
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    word = self.to_half_open(word);
                }
                HALF_OPEN => {
                    let generation = generation32(word);
                    let mut probes = self.cold.probes.load(Acquire);
                    while probes >> 32 == generation {
                        if (probes >> 16) & PROBES_FIELD
                            >= u64::from(self.settings.half_open_probes)
                        {
                            return Err(self.reject(Some(self.half_open_hint())));
                        }
                        match self.cold.probes.compare_exchange_weak(
                            probes,
                            probes + PROBES_TAKEN_ONE,
                            AcqRel,
                            Acquire,
                        ) {
                            Ok(_) => return Ok(word),
                            Err(now) => probes = now,
                        }
                    }
                    // Another half-open period began since we read the word.
                    word = self.word();
                }
                _ => return Err(self.reject(None)),
            }
        }
    }

    /// What a call refused in half-open is told: the probes usually finish well before
    /// a whole wait, and if one fails the next refusal carries the new wait.
    fn half_open_hint(&self) -> Duration {
        self.settings.wait.min(Duration::from_secs(1))
    }

    fn reject(&self, retry_after: Option<Duration>) -> Rejected {
        self.counters.bump(Count::Rejections);
        refusal::refuse(RejectReason::CircuitOpen, retry_after)
    }

    // ---- outcomes -----------------------------------------------------------------

    /// How the breaker's predicate counts `error`; `refused`: the poll that ended the
    /// call made a refusal (see `refusal.rs`), whatever `error` says.
    pub(super) fn verdict<E: Classify>(&self, error: &E, refused: bool) -> Verdict {
        let refusal = refused || error.rejection().is_some();
        let is_failure = match &self.settings.predicate {
            Some(predicate) => predicate(error),
            None => !refusal,
        };
        if is_failure {
            Verdict::Failure
        } else if refusal {
            Verdict::Ignore
        } else {
            Verdict::Success
        }
    }

    /// Whether a call that took `elapsed` was slow.
    #[inline]
    pub(super) fn is_slow(&self, elapsed: Duration) -> bool {
        self.settings
            .slow_call
            .is_some_and(|(threshold, _)| elapsed >= threshold)
    }

    /// Records an outcome under the permit's `word`. `now` is the end of the call when
    /// the permit measured it.
    ///
    /// Inlined whole into callers: a closed success without a window is a counter bump
    /// and two loads, and an out-of-line call would cost as much again (the caller
    /// would have to spill the call's result around it).
    #[inline(always)]
    pub(super) fn record(&self, word: u64, failure: bool, slow: bool, now: Option<Instant>) {
        self.counters.bump(if failure {
            Count::Failures
        } else {
            Count::Successes
        });
        if slow {
            self.counters.bump(Count::Slow);
        }
        // Relaxed: only filters out permits of a finished period; a transition this
        // races with re-checks the word under the mutex.
        if self.state.load(Relaxed) != word {
            return;
        }
        if word & STATE_MASK != CLOSED {
            self.record_probe(word, failure || slow);
        } else if failure || self.window.is_some() {
            self.record_closed(word, failure, slow, now);
        } else if self.settings.consecutive_failures.is_some()
            && self.consecutive.load(Relaxed) != 0
        {
            // Load first: a success after a success writes nothing, so the line stays
            // shared between cores.
            self.consecutive.store(0, Relaxed);
        }
    }

    /// A failure, or any outcome with a window.
    #[inline(never)]
    fn record_closed(&self, word: u64, failure: bool, slow: bool, now: Option<Instant>) {
        if let Some(limit) = self.settings.consecutive_failures {
            if failure {
                if self.consecutive.fetch_add(1, Relaxed).saturating_add(1) >= limit {
                    self.trip(word, TripReason::ConsecutiveFailures);
                    return;
                }
            } else if self.consecutive.load(Relaxed) != 0 {
                self.consecutive.store(0, Relaxed);
            }
        }
        if let Some(window) = &self.window {
            let outcome = window::outcome(failure, slow);
            let clock = || self.now_nanos_at(now.unwrap_or_else(Instant::now));
            if let Some(tally) = window.record(outcome, clock) {
                if let Some(reason) = self.judge(tally) {
                    self.trip(word, reason);
                }
            }
        }
    }

    fn judge(&self, t: Tally) -> Option<TripReason> {
        if t.calls < u64::from(self.settings.min_calls) {
            return None;
        }
        let calls = t.calls as f64;
        if let Some(rate) = self.settings.failure_rate {
            if t.failures as f64 >= rate * calls {
                return Some(TripReason::FailureRate);
            }
        }
        if let Some((_, rate)) = self.settings.slow_call {
            if t.slow as f64 >= rate * calls {
                return Some(TripReason::SlowCallRate);
            }
        }
        None
    }

    #[cold]
    fn record_probe(&self, word: u64, failure: bool) {
        if failure {
            self.trip(word, TripReason::ProbeFailed);
            return;
        }
        let generation = generation32(word);
        let mut probes = self.cold.probes.load(Acquire);
        while probes >> 32 == generation {
            match self
                .cold
                .probes
                .compare_exchange_weak(probes, probes + 1, AcqRel, Acquire)
            {
                Ok(_) => {
                    if (probes & PROBES_FIELD) + 1 >= u64::from(self.settings.half_open_probes) {
                        self.close(word);
                    }
                    return;
                }
                Err(now) => probes = now,
            }
        }
    }

    /// A permit ended with no outcome: dropped, or an inner policy's refusal.
    pub(super) fn ignore(&self, word: u64) {
        self.counters.bump(Count::Ignored);
        if word & STATE_MASK != HALF_OPEN {
            return;
        }
        // Give the probe slot back, if the period it was taken in still runs.
        let generation = generation32(word);
        let mut probes = self.cold.probes.load(Acquire);
        while probes >> 32 == generation && (probes >> 16) & PROBES_FIELD > 0 {
            match self.cold.probes.compare_exchange_weak(
                probes,
                probes - PROBES_TAKEN_ONE,
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return,
                Err(now) => probes = now,
            }
        }
    }

    // ---- transitions --------------------------------------------------------------
    //
    // Each takes the mutex, checks the word is still the one the caller decided on,
    // prepares the new state, stores the word with Release, and publishes the event
    // while still holding the mutex so that events come out in transition order.

    #[cold]
    fn trip(&self, expected: u64, reason: TripReason) {
        let mut t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        if word != expected {
            return;
        }
        self.open_locked(&mut t, word, reason);
    }

    fn open_locked(&self, t: &mut Transitions, word: u64, reason: TripReason) {
        let mut wait = self.settings.wait_for(t.trips_in_row);
        t.trips_in_row = t.trips_in_row.saturating_add(1);
        if self.settings.jitter > 0.0 {
            let cut = self.settings.jitter * t.rng.random::<f64>();
            // `try_from`: a wait near `Duration::MAX` must not panic on rounding.
            let shortened = Duration::try_from_secs_f64(wait.as_secs_f64() * (1.0 - cut));
            wait = shortened
                .map_or(wait, |w| w.min(wait))
                .max(Duration::from_nanos(1));
        }
        self.cold
            .open_until
            .store(self.now_nanos().saturating_add(nanos(wait)), Relaxed);
        self.cold.trips.fetch_add(1, Relaxed);
        self.state.store(next(word, OPEN), Release);
        tracing::warn!(?reason, ?wait, "circuit opened");
        self.publish(CircuitOpened::new(wait).into());
    }

    /// Open to half-open once the wait is over. Returns the current word, whoever set
    /// it.
    #[cold]
    fn to_half_open(&self, expected: u64) -> u64 {
        let _t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        if word != expected {
            return word;
        }
        let new = next(word, HALF_OPEN);
        self.cold.probes.store(generation32(new) << 32, Relaxed);
        self.state.store(new, Release);
        tracing::info!(probes = self.settings.half_open_probes, "circuit half-open");
        self.publish(CircuitHalfOpen.into());
        new
    }

    #[cold]
    fn close(&self, expected: u64) {
        let mut t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        if word != expected {
            return;
        }
        self.close_locked(&mut t, word);
    }

    fn close_locked(&self, t: &mut Transitions, word: u64) {
        t.trips_in_row = 0;
        if let Some(window) = &self.window {
            window.reset();
        }
        self.consecutive.store(0, Relaxed);
        self.state.store(next(word, CLOSED), Release);
        if word & STATE_MASK != CLOSED {
            tracing::info!("circuit closed");
            self.publish(CircuitClosed.into());
        }
    }

    pub(super) fn force_open(&self) {
        let mut t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        self.open_locked(&mut t, word, TripReason::Forced);
    }

    pub(super) fn isolate(&self) {
        let _t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        if word & STATE_MASK == ISOLATED {
            return;
        }
        self.state.store(next(word, ISOLATED), Release);
        tracing::warn!("circuit isolated");
        self.publish(CircuitOpened::new(Duration::MAX).into());
    }

    pub(super) fn reset(&self) {
        let mut t = self.transitions.lock();
        let word = self.state.load(Relaxed);
        self.close_locked(&mut t, word);
    }

    fn publish(&self, kind: EventKind) {
        if let Some(events) = &self.settings.events {
            events.publish(kind);
        }
    }

    // ---- reading ------------------------------------------------------------------

    /// The state, moving open to half-open if the wait is over.
    pub(super) fn state(&self) -> CircuitState {
        let word = self.word();
        if word & STATE_MASK == OPEN && self.now_nanos() >= self.cold.open_until.load(Relaxed) {
            return from_word(self.to_half_open(word));
        }
        from_word(word)
    }

    /// The stored state, without moving it.
    fn peek_state(&self) -> CircuitState {
        from_word(self.word())
    }

    pub(super) fn stats(&self) -> CircuitStats {
        CircuitStats::new(self.state(), &self.counters, self.cold.trips.load(Relaxed))
    }
}

fn from_word(word: u64) -> CircuitState {
    match word & STATE_MASK {
        CLOSED => CircuitState::Closed,
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        _ => CircuitState::Isolated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_state_and_generation_apart() {
        let w = next(CLOSED, OPEN);
        assert_eq!(w & STATE_MASK, OPEN);
        assert_eq!(generation32(w), 1);
        let w = next(w, HALF_OPEN);
        assert_eq!(from_word(w), CircuitState::HalfOpen);
        assert_eq!(generation32(w), 2);
        // The generation wraps without touching the state bits.
        let top = !STATE_MASK | HALF_OPEN;
        assert_eq!(next(top, CLOSED), CLOSED);
    }
}
