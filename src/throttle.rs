//! CPU throttling (SPEC §6.3): a [`CpuGate`] that post/batch work asks before
//! starting a new work item.
//!
//! A sampler thread reads the machine-wide CPU use every second and keeps the
//! average of the last ten readings. The gate closes (throttled) when that
//! average reaches `deactive` and opens again only once it falls below
//! `reactive`; the gap between the two keeps work from flapping on and off
//! around one threshold. Items already running are never interrupted: the gate
//! only holds back the next one, in [`CpuGate::wait_ready`].
//!
//! Throttling delays work, it never starves it (SPEC §6.3): while the gate
//! is closed, one waiter is still let through every `maxPauseSeconds`. The
//! pass is handed out under the gate's lock, and the next one becomes due
//! a full period after it was taken, so however many workers wait (event
//! workers and every scan's item workers share one gate) at most one item
//! starts per period — a busy machine gets a trickle, not a burst.
//!
//! The gate fails open: if the CPU cannot be read, the sampler thread cannot
//! be started, or it dies, work goes on unthrottled rather than stalling for
//! ever. Thresholds are expected to come validated from the config; values
//! that are not (built by hand) are repaired by the same rule as `check`'s.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sysinfo::{CpuRefreshKind, RefreshKind, System};
use tracing::{debug, info, warn};

use crate::config::Throttling;

/// How often the production gate samples the CPU.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(1);
/// How many samples the production gate averages (10 s at one per second).
pub const DEFAULT_WINDOW: usize = 10;

/// How often a blocked [`CpuGate::wait_ready`] looks at the caller's stop
/// flag: nothing signals the gate when that flag is set, so it must poll.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Lower bound on the sampling period so a zero period cannot spin a core.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// A source of CPU readings.
pub trait CpuSampler: Send + Sync {
    /// Machine-wide CPU use in percent (0–100) since the previous call.
    /// A non-finite result is treated as "no reading" and skipped.
    fn sample(&self) -> f64;
}

/// [`CpuSampler`] over the `sysinfo` crate (all CPUs together).
pub struct SysinfoSampler {
    // `sample` takes `&self` (the trait must be `Sync`), while refreshing
    // mutates the `System`.
    system: Mutex<System>,
}

impl SysinfoSampler {
    /// Takes a first reading, so that the first [`CpuSampler::sample`]
    /// measures from now rather than from boot.
    ///
    /// Calls closer together than `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`
    /// (200 ms on Linux) repeat the previous value: the kernel counters do
    /// not move enough in less time to give a meaningful percentage.
    pub fn new() -> Result<Self, sysinfo::Error> {
        let system = System::new_with_specifics(
            RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_usage()),
        )?;
        Ok(SysinfoSampler {
            system: Mutex::new(system),
        })
    }
}

impl CpuSampler for SysinfoSampler {
    fn sample(&self) -> f64 {
        let mut system = lock(&self.system);
        system.refresh_cpu_usage();
        f64::from(system.global_cpu_usage())
    }
}

/// Holds new work items back while the machine is busy. See the module docs.
pub struct CpuGate {
    /// `None` for a disabled gate, which never blocks.
    shared: Option<Arc<Shared>>,
    sampler: Mutex<Option<JoinHandle<()>>>,
}

/// What the gate and its sampler thread share.
struct Shared {
    state: Mutex<State>,
    /// Signalled on every throttle transition and on stop.
    changed: Condvar,
    deactive: f64,
    reactive: f64,
    window: usize,
    /// `None`: a pause lets nothing through until it ends.
    max_pause: Option<Duration>,
}

struct State {
    samples: VecDeque<f64>,
    throttled: bool,
    stopped: bool,
    /// Readings recorded so far; lets tests wait for the thread.
    taken: u64,
    /// When the current pause began (`Some` exactly while throttled).
    paused_at: Option<Instant>,
    /// When the next waiter may pass during this pause; `None` when no
    /// pass is ever due (no limit, or a limit too large to reach).
    next_pass: Option<Instant>,
    /// Waiters let through during the current pause.
    passed: u64,
}

impl State {
    /// How long the current pause has lasted at `now` (zero when none).
    fn paused_for(&self, now: Instant) -> Duration {
        self.paused_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

/// The state of a pause, for status and metrics ([`CpuGate::pause`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pause {
    /// How long new work has been held back.
    pub elapsed: Duration,
    /// Items let through during this pause (one per `maxPauseSeconds`).
    pub passed: u64,
    /// How long until the next item may start; `None` with no limit.
    pub next_pass_in: Option<Duration>,
    /// The average CPU use over the window now.
    pub average: f64,
}

impl CpuGate {
    /// The gate for `cfg`: disabled (never blocks) when `cfg.enable` is false
    /// or the CPU cannot be read; otherwise one that samples every second and
    /// averages the last ten seconds.
    pub fn start(cfg: &Throttling) -> Arc<CpuGate> {
        if !cfg.enable {
            return CpuGate::disabled();
        }
        match SysinfoSampler::new() {
            Ok(s) => CpuGate::with_sampler(cfg, Box::new(s), DEFAULT_PERIOD, DEFAULT_WINDOW),
            Err(e) => {
                warn!("cannot read CPU use ({e}); throttling is off");
                CpuGate::disabled()
            }
        }
    }

    /// A gate over `sampler`, read every `period`, averaging the last
    /// `window` readings (at least one). Disabled when `cfg.enable` is false.
    pub fn with_sampler(
        cfg: &Throttling,
        sampler: Box<dyn CpuSampler>,
        period: Duration,
        window: usize,
    ) -> Arc<CpuGate> {
        if !cfg.enable {
            return CpuGate::disabled();
        }
        let (deactive, reactive) = thresholds(cfg);
        let window = window.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                samples: VecDeque::with_capacity(window),
                throttled: false,
                stopped: false,
                taken: 0,
                paused_at: None,
                next_pass: None,
                passed: 0,
            }),
            changed: Condvar::new(),
            deactive,
            reactive,
            window,
            max_pause: cfg.max_pause.filter(|d| !d.is_zero()),
        });
        let period = period.max(MIN_PERIOD);
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("cpu-throttle".into())
            .spawn(move || sample_loop(&thread_shared, sampler.as_ref(), period));
        match spawned {
            Ok(handle) => {
                debug!(
                    "throttling: pause at {}% CPU, resume below {}%, {}",
                    pct(deactive),
                    pct(reactive),
                    shared.limit_text()
                );
                Arc::new(CpuGate {
                    shared: Some(shared),
                    sampler: Mutex::new(Some(handle)),
                })
            }
            Err(e) => {
                warn!("cannot start the CPU sampler thread ({e}); throttling is off");
                CpuGate::disabled()
            }
        }
    }

    /// A gate that never blocks and samples nothing.
    pub fn disabled() -> Arc<CpuGate> {
        Arc::new(CpuGate {
            shared: None,
            sampler: Mutex::new(None),
        })
    }

    /// Blocks while throttled; returns at once when not. While throttled,
    /// one caller across the whole gate returns every `maxPauseSeconds` (the
    /// first a period after the pause began, each next one a period after
    /// the previous pass), so work is delayed, never starved. Also returns
    /// as soon as `stop` is set or the gate is stopped, so shutdown is never
    /// held up.
    ///
    /// Returning is the permission to start one item: call it once per
    /// item, right before starting it.
    pub fn wait_ready(&self, stop: &AtomicBool) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut st = lock(&shared.state);
        while st.throttled && !st.stopped && !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = match st.next_pass {
                Some(at) if at <= now => {
                    // Counted from now, not from `at`: a pass nobody took
                    // in time must not leave a backlog released at once.
                    st.next_pass = shared.max_pause.and_then(|p| now.checked_add(p));
                    st.passed += 1;
                    debug!(
                        passed = st.passed,
                        "throttled: one item let through (pause {})",
                        secs(st.paused_for(now))
                    );
                    return;
                }
                Some(at) => (at - now).min(STOP_POLL),
                None => STOP_POLL,
            };
            st = match shared.changed.wait_timeout(st, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// The current pause, `None` when work is not being held back (also for
    /// a disabled or stopped gate).
    pub fn pause(&self) -> Option<Pause> {
        let shared = self.shared.as_ref()?;
        let st = lock(&shared.state);
        if !st.throttled || st.stopped {
            return None;
        }
        let now = Instant::now();
        Some(Pause {
            elapsed: st.paused_for(now),
            passed: st.passed,
            next_pass_in: st.next_pass.map(|t| t.saturating_duration_since(now)),
            average: mean(&st.samples),
        })
    }

    /// The longest pause between two items while throttled (`None`: no
    /// limit, and for a disabled gate).
    pub fn max_pause(&self) -> Option<Duration> {
        self.shared.as_ref().and_then(|s| s.max_pause)
    }

    /// Whether new work is being held back now. A stopped gate is never
    /// throttled.
    pub fn is_throttled(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| {
            let st = lock(&s.state);
            st.throttled && !st.stopped
        })
    }

    /// The average CPU use over the window (0 before the first reading and
    /// for a disabled gate).
    pub fn average(&self) -> f64 {
        self.shared
            .as_ref()
            .map_or(0.0, |s| mean(&lock(&s.state).samples))
    }

    /// Ends the sampler thread (waiting for it) and releases every waiter.
    /// Idempotent.
    pub fn stop(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        {
            let mut st = lock(&shared.state);
            st.stopped = true;
            shared.changed.notify_all();
        }
        let handle = lock(&self.sampler).take();
        if let Some(h) = handle {
            // A panic in the sampler was already logged by its exit guard.
            let _ = h.join();
        }
    }

    #[cfg(test)]
    fn taken(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| lock(&s.state).taken)
    }
}

impl Drop for CpuGate {
    fn drop(&mut self) {
        // The thread only holds `Shared`, not the gate, so without this it
        // would sample for ever after the last user is gone.
        self.stop();
    }
}

/// Marks the gate stopped when the sampler thread ends for any reason, so a
/// sampler that panics cannot leave waiters blocked behind a stale
/// "throttled".
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            warn!("the CPU sampler failed; throttling is off");
        }
        let mut st = lock(&self.0.state);
        st.stopped = true;
        self.0.changed.notify_all();
    }
}

fn sample_loop(shared: &Shared, sampler: &dyn CpuSampler, period: Duration) {
    let _guard = ExitGuard(shared);
    loop {
        // Sleep first: a sampler measures "since the previous call", and the
        // first call right after construction would cover almost no time.
        {
            let st = lock(&shared.state);
            let st = match shared
                .changed
                .wait_timeout_while(st, period, |s| !s.stopped)
            {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
            if st.stopped {
                return;
            }
        }
        let v = sampler.sample();
        if !v.is_finite() {
            continue;
        }
        // Once per transition, never per item.
        match shared.record(v.clamp(0.0, 100.0)) {
            Some(Transition::Throttled(avg)) => info!(
                "throttled: CPU {}% ≥ {}%; new items held back, {}",
                pct_where(avg, |a| a >= shared.deactive),
                pct(shared.deactive),
                shared.limit_text()
            ),
            Some(Transition::Resumed {
                avg,
                paused,
                passed,
            }) => info!(
                "resumed: CPU {}% < {}% after a pause of {}, {passed} item(s) let through meanwhile",
                pct_where(avg, |a| a < shared.reactive),
                pct(shared.reactive),
                secs(paused)
            ),
            None => {}
        }
    }
}

enum Transition {
    Throttled(f64),
    Resumed {
        avg: f64,
        paused: Duration,
        passed: u64,
    },
}

impl Shared {
    /// Adds one reading and applies the hysteresis; returns the transition
    /// (with the average that caused it), if any.
    fn record(&self, v: f64) -> Option<Transition> {
        let mut st = lock(&self.state);
        if st.stopped {
            return None;
        }
        st.samples.push_back(v);
        while st.samples.len() > self.window {
            st.samples.pop_front();
        }
        st.taken += 1;
        let avg = mean(&st.samples);
        let t = if !st.throttled && avg >= self.deactive {
            let now = Instant::now();
            st.throttled = true;
            st.paused_at = Some(now);
            st.next_pass = self.max_pause.and_then(|p| now.checked_add(p));
            st.passed = 0;
            Some(Transition::Throttled(avg))
        } else if st.throttled && avg < self.reactive {
            st.throttled = false;
            let paused = st.paused_for(Instant::now());
            st.paused_at = None;
            st.next_pass = None;
            Some(Transition::Resumed {
                avg,
                paused,
                passed: st.passed,
            })
        } else {
            None
        };
        if t.is_some() {
            self.changed.notify_all();
        }
        t
    }
}

impl Shared {
    /// How a pause ends for the log: the trickle or "until it falls".
    fn limit_text(&self) -> String {
        match self.max_pause {
            Some(p) => format!("one let through every {}", secs(p)),
            None => format!("until it falls below {}%", pct(self.reactive)),
        }
    }
}

/// A duration for the log: whole seconds, or milliseconds below one second.
fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// (deactive, reactive), repaired like the config check does (SPEC §6.3) in
/// case `cfg` was not built by it: deactive outside 0–100 falls back to the
/// default, and a reactive that is invalid or above deactive (or goes with
/// an invalid deactive) becomes deactive × 2/3.
fn thresholds(cfg: &Throttling) -> (f64, f64) {
    let valid = |x: f64| (0.0..=100.0).contains(&x);
    let (deactive, d_ok) = if valid(cfg.cpu_deactive) {
        (cfg.cpu_deactive, true)
    } else {
        (Throttling::default().cpu_deactive, false)
    };
    let r = cfg.cpu_reactive;
    let reactive = if d_ok && valid(r) && r <= deactive {
        r
    } else {
        deactive * 2.0 / 3.0
    };
    (deactive, reactive)
}

fn mean(samples: &VecDeque<f64>) -> f64 {
    if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<f64>() / samples.len() as f64
    }
}

/// A threshold as `check` prints it: whole, or with one decimal.
fn pct(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `x` with the fewest decimals (up to 3) whose printed value still
/// satisfies `holds`, so a log line never reads like "40% < 40%".
fn pct_where(x: f64, holds: impl Fn(f64) -> bool) -> String {
    for decimals in 0..3 {
        let s = format!("{x:.decimals$}");
        if s.parse::<f64>().is_ok_and(&holds) {
            return s;
        }
    }
    format!("{x:.3}")
}

/// Locks, ignoring poisoning: every critical section here leaves the state
/// consistent, so a panic elsewhere must not take throttling down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::sync::mpsc;
    use std::time::Instant;

    const PERIOD: Duration = Duration::from_millis(10);
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Thresholds without a max pause: a pause holds everything back.
    fn cfg(deactive: f64, reactive: f64) -> Throttling {
        Throttling {
            enable: true,
            cpu_deactive: deactive,
            cpu_reactive: reactive,
            max_pause: None,
        }
    }

    /// Deactive 60, reactive 40, at most `max_pause` between items.
    fn cfg_max(max_pause: Duration) -> Throttling {
        Throttling {
            max_pause: Some(max_pause),
            ..cfg(60.0, 40.0)
        }
    }

    /// A sampler whose reading the test sets at will.
    #[derive(Default)]
    struct Dial {
        bits: AtomicU64,
        calls: AtomicUsize,
    }

    impl Dial {
        fn new(v: f64) -> Arc<Dial> {
            let d = Arc::new(Dial::default());
            d.set(v);
            d
        }
        fn set(&self, v: f64) {
            self.bits.store(v.to_bits(), Ordering::SeqCst);
        }
    }

    impl CpuSampler for Arc<Dial> {
        fn sample(&self) -> f64 {
            self.calls.fetch_add(1, Ordering::SeqCst);
            f64::from_bits(self.bits.load(Ordering::SeqCst))
        }
    }

    /// A sampler that plays a fixed sequence, then has no more readings.
    struct Script(Mutex<VecDeque<f64>>);

    impl Script {
        fn boxed(values: &[f64]) -> Box<dyn CpuSampler> {
            Box::new(Script(Mutex::new(values.iter().copied().collect())))
        }
    }

    impl CpuSampler for Script {
        fn sample(&self) -> f64 {
            lock(&self.0).pop_front().unwrap_or(f64::NAN)
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sets the dial and waits until a reading taken after that is recorded.
    fn turn(gate: &CpuGate, dial: &Dial, v: f64) {
        dial.set(v);
        // The reading recorded next may have been sampled before `set`; the
        // one after it was sampled after that record, hence after `set`.
        let target = gate.taken() + 2;
        wait_for("the sampler", || gate.taken() >= target);
    }

    /// Runs `wait_ready` on another thread; the receiver hears when it returns.
    fn waiter(gate: &Arc<CpuGate>, stop: &Arc<AtomicBool>) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let (gate, stop) = (Arc::clone(gate), Arc::clone(stop));
        std::thread::spawn(move || {
            gate.wait_ready(&stop);
            let _ = tx.send(());
        });
        rx
    }

    fn assert_still_blocked(rx: &mpsc::Receiver<()>) {
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(150)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "wait_ready returned while throttled"
        );
    }

    fn assert_released(rx: &mpsc::Receiver<()>) {
        assert_eq!(
            rx.recv_timeout(PATIENCE),
            Ok(()),
            "wait_ready did not return"
        );
    }

    #[test]
    fn hysteresis_both_ways() {
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg(60.0, 40.0), Box::new(Arc::clone(&dial)), PERIOD, 1);
        let steps = [
            (50.0, false),
            (59.9, false),
            (60.0, true), // at deactive: throttled
            (55.0, true), // between the thresholds: stays throttled
            (40.0, true), // at reactive: not yet below it
            (39.9, false),
            (45.0, false), // between the thresholds: stays running
            (75.0, true),
            (30.0, false),
        ];
        for (v, throttled) in steps {
            turn(&gate, &dial, v);
            assert_eq!(gate.is_throttled(), throttled, "after CPU {v}%");
        }
        gate.stop();
    }

    /// Plays `values` through a gate (deactive 60, reactive 40) and returns
    /// (average, throttled) once all are recorded.
    fn play(values: &[f64], window: usize) -> (f64, bool) {
        let gate = CpuGate::with_sampler(&cfg(60.0, 40.0), Script::boxed(values), PERIOD, window);
        let n = values.len() as u64;
        wait_for("the script", || gate.taken() >= n);
        let out = (gate.average(), gate.is_throttled());
        gate.stop();
        out
    }

    #[test]
    fn window_average() {
        // Only the last `window` readings count.
        assert_eq!(play(&[90.0, 0.0, 0.0, 30.0], 3), (10.0, false));
        assert_eq!(play(&[20.0, 50.0], 10), (35.0, false));
        // One spike in a calm window does not throttle; alone it would.
        assert_eq!(play(&[0.0, 0.0, 0.0, 100.0], 4), (25.0, false));
        assert_eq!(play(&[0.0, 0.0, 0.0, 100.0], 1), (100.0, true));
        // One calm reading after a busy spell does not resume; alone it would.
        assert_eq!(play(&[90.0, 90.0, 90.0, 0.0], 3), (60.0, true));
        assert_eq!(play(&[90.0, 90.0, 90.0, 0.0], 1), (0.0, false));
        // Through the whole busy-calm cycle with a window of 3.
        assert_eq!(
            play(&[100.0, 100.0, 100.0, 0.0, 0.0, 30.0], 3),
            (10.0, false)
        );
    }

    #[test]
    fn readings_are_clamped_and_non_finite_ones_skipped() {
        let gate = CpuGate::with_sampler(
            &cfg(60.0, 40.0),
            Script::boxed(&[f64::NAN, 250.0, f64::INFINITY, -50.0]),
            PERIOD,
            10,
        );
        wait_for("the script", || gate.taken() >= 2);
        // Give the sampler time to (wrongly) record anything more.
        std::thread::sleep(PERIOD * 10);
        assert_eq!(gate.taken(), 2);
        assert_eq!(gate.average(), 50.0);
        gate.stop();
    }

    #[test]
    fn wait_ready_blocks_while_throttled_and_returns_after_recovery() {
        let dial = Dial::new(10.0);
        let gate = CpuGate::with_sampler(&cfg(60.0, 40.0), Box::new(Arc::clone(&dial)), PERIOD, 1);
        let stop = Arc::new(AtomicBool::new(false));
        turn(&gate, &dial, 10.0);
        // Not throttled: returns at once.
        assert_released(&waiter(&gate, &stop));

        turn(&gate, &dial, 90.0);
        assert!(gate.is_throttled());
        let rx = waiter(&gate, &stop);
        assert_still_blocked(&rx);
        // Between the thresholds: still held back.
        turn(&gate, &dial, 50.0);
        assert_still_blocked(&rx);
        dial.set(20.0);
        assert_released(&rx);
        assert!(!gate.is_throttled());
        gate.stop();
    }

    #[test]
    fn disabled_gate_never_blocks() {
        let dial = Dial::new(100.0);
        let off = Throttling {
            enable: false,
            ..cfg(60.0, 40.0)
        };
        let stop = Arc::new(AtomicBool::new(false));
        for gate in [
            CpuGate::with_sampler(&off, Box::new(Arc::clone(&dial)), PERIOD, 1),
            CpuGate::disabled(),
        ] {
            std::thread::sleep(PERIOD * 5);
            assert!(!gate.is_throttled());
            assert_eq!(gate.average(), 0.0);
            assert_released(&waiter(&gate, &stop));
            gate.stop();
        }
        // A disabled gate does not even sample.
        assert_eq!(dial.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn stop_flag_unblocks_a_waiter() {
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg(60.0, 40.0), Box::new(Arc::clone(&dial)), PERIOD, 1);
        turn(&gate, &dial, 95.0);
        let stop = Arc::new(AtomicBool::new(false));
        let rx = waiter(&gate, &stop);
        assert_still_blocked(&rx);
        stop.store(true, Ordering::SeqCst);
        assert_released(&rx);
        // The gate itself is still throttled; only that caller gave up.
        assert!(gate.is_throttled());
        gate.stop();
    }

    #[test]
    fn stopping_the_gate_ends_the_sampler_and_releases_waiters() {
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg(60.0, 40.0), Box::new(Arc::clone(&dial)), PERIOD, 1);
        turn(&gate, &dial, 95.0);
        let stop = Arc::new(AtomicBool::new(false));
        let rx = waiter(&gate, &stop);
        assert_still_blocked(&rx);
        gate.stop();
        assert_released(&rx);
        assert!(!gate.is_throttled());
        let calls = dial.calls.load(Ordering::SeqCst);
        std::thread::sleep(PERIOD * 10);
        assert_eq!(dial.calls.load(Ordering::SeqCst), calls, "still sampling");
        gate.stop(); // idempotent
    }

    #[test]
    fn a_panicking_sampler_fails_open() {
        /// Reads 100% once, then fails.
        struct Boom(AtomicBool);
        impl CpuSampler for Boom {
            fn sample(&self) -> f64 {
                if self.0.swap(true, Ordering::SeqCst) {
                    panic!("sampler failure injected by the test");
                }
                100.0
            }
        }
        let gate = CpuGate::with_sampler(
            &cfg(60.0, 40.0),
            Box::new(Boom(AtomicBool::new(false))),
            PERIOD,
            1,
        );
        // Throttled by the one reading; without the exit guard the gate
        // would stay throttled for ever once the thread died.
        wait_for("the reading", || gate.taken() >= 1);
        let stop = Arc::new(AtomicBool::new(false));
        assert_released(&waiter(&gate, &stop));
        assert!(!gate.is_throttled());
        gate.stop();
    }

    #[test]
    fn invalid_thresholds_are_repaired_like_check_does() {
        assert_eq!(thresholds(&cfg(60.0, 40.0)), (60.0, 40.0));
        assert_eq!(thresholds(&cfg(50.0, 50.0)), (50.0, 50.0));
        assert_eq!(thresholds(&cfg(90.0, 95.0)), (90.0, 60.0));
        assert_eq!(thresholds(&cfg(90.0, -1.0)), (90.0, 60.0));
        assert_eq!(thresholds(&cfg(90.0, f64::NAN)), (90.0, 60.0));
        assert_eq!(thresholds(&cfg(150.0, 50.0)), (60.0, 40.0));
        assert_eq!(thresholds(&cfg(f64::NAN, 10.0)), (60.0, 40.0));
    }

    #[test]
    fn log_numbers_never_contradict_the_comparison() {
        assert_eq!(pct_where(75.2, |a| a >= 60.0), "75");
        assert_eq!(pct_where(39.96, |a| a < 40.0), "39.96");
        assert_eq!(pct_where(39.6, |a| a < 40.0), "39.6");
        assert_eq!(pct_where(60.0, |a| a >= 60.0), "60");
        assert_eq!(pct(46.666), "46.7");
        assert_eq!(pct(60.0), "60");
    }

    /// The current pause of a gate that must be throttled.
    fn paused(gate: &CpuGate) -> Pause {
        gate.pause().expect("the gate is throttled")
    }

    #[test]
    fn a_pause_lets_one_item_through_per_period() {
        const P: Duration = Duration::from_millis(400);
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg_max(P), Box::new(Arc::clone(&dial)), PERIOD, 1);
        assert_eq!(gate.max_pause(), Some(P));
        assert_eq!(gate.pause(), None, "not throttled yet");
        turn(&gate, &dial, 95.0);
        let stop = Arc::new(AtomicBool::new(false));
        let start = paused(&gate);
        assert_eq!(start.passed, 0);
        assert!(start.next_pass_in.is_some_and(|d| d <= P));
        // The first item waits a period after the pause began, never less
        // (however late this thread got here, `elapsed` says when it began).
        wait_ready_in(&gate, &stop);
        let first = paused(&gate);
        assert!(first.elapsed >= P, "passed after {:?}", first.elapsed);
        assert_eq!(first.passed, 1);
        // The next pass is a period after this one, so two periods in.
        assert!(first.next_pass_in.is_some_and(|d| d <= P));
        wait_ready_in(&gate, &stop);
        let second = paused(&gate);
        assert!(second.elapsed >= P * 2, "passed after {:?}", second.elapsed);
        assert_eq!(second.passed, 2);
        assert!(gate.is_throttled(), "passing does not end the pause");
        gate.stop();
    }

    /// Calls `wait_ready` on this thread and checks it returned in time.
    fn wait_ready_in(gate: &CpuGate, stop: &AtomicBool) {
        let t = Instant::now();
        gate.wait_ready(stop);
        assert!(t.elapsed() < PATIENCE, "wait_ready took {:?}", t.elapsed());
    }

    #[test]
    fn concurrent_waiters_pass_one_per_period_not_all_at_once() {
        const P: Duration = Duration::from_millis(250);
        const N: u64 = 4;
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg_max(P), Box::new(Arc::clone(&dial)), PERIOD, 1);
        turn(&gate, &dial, 95.0);
        let stop = Arc::new(AtomicBool::new(false));
        let waiters: Vec<_> = (0..N).map(|_| waiter(&gate, &stop)).collect();
        let mut at = Vec::new();
        for _ in 0..N {
            // Whichever waiter passes next; the pause's own clock says when.
            wait_for("a waiter to pass", || {
                waiters.iter().any(|rx| rx.try_recv().is_ok()) && {
                    at.push(paused(&gate));
                    true
                }
            });
        }
        let passed: Vec<u64> = at.iter().map(|p| p.passed).collect();
        // The k-th pass cannot come before k periods: no burst, whatever the
        // scheduling. (`passed` may run ahead of the waiter we noticed.)
        for (k, p) in at.iter().enumerate() {
            let k = k as u32 + 1;
            assert!(p.passed >= u64::from(k), "passes seen: {passed:?}");
            let due = P * u32::try_from(p.passed).unwrap_or(u32::MAX);
            assert!(p.elapsed >= due, "pass {k} after {:?}", p.elapsed);
        }
        assert_eq!(paused(&gate).passed, N);
        gate.stop();
    }

    #[test]
    fn a_new_pause_starts_a_new_period() {
        const P: Duration = Duration::from_millis(300);
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(&cfg_max(P), Box::new(Arc::clone(&dial)), PERIOD, 1);
        let stop = Arc::new(AtomicBool::new(false));
        turn(&gate, &dial, 95.0);
        wait_ready_in(&gate, &stop);
        assert_eq!(paused(&gate).passed, 1);
        turn(&gate, &dial, 10.0);
        assert_eq!(gate.pause(), None);
        // Unthrottled: no waiting, and nothing counted.
        wait_ready_in(&gate, &stop);
        turn(&gate, &dial, 95.0);
        let p = paused(&gate);
        assert_eq!(p.passed, 0, "counts restart with the pause");
        wait_ready_in(&gate, &stop);
        let p = paused(&gate);
        assert!(p.elapsed >= P, "the new pause waits a period: {p:?}");
        gate.stop();
    }

    #[test]
    fn without_a_limit_or_with_an_unreachable_one_a_pause_holds_everything() {
        for limit in [None, Some(Duration::MAX)] {
            let dial = Dial::new(0.0);
            let c = Throttling {
                max_pause: limit,
                ..cfg(60.0, 40.0)
            };
            let gate = CpuGate::with_sampler(&c, Box::new(Arc::clone(&dial)), PERIOD, 1);
            turn(&gate, &dial, 95.0);
            let p = paused(&gate);
            assert_eq!(p.next_pass_in, None, "limit {limit:?}");
            let stop = Arc::new(AtomicBool::new(false));
            let rx = waiter(&gate, &stop);
            assert_still_blocked(&rx);
            dial.set(10.0);
            assert_released(&rx);
            gate.stop();
        }
        // A zero limit means none (SPEC §6.3 `maxPauseSeconds: 0`).
        let gate = CpuGate::with_sampler(
            &cfg_max(Duration::ZERO),
            Box::new(Dial::new(0.0)),
            PERIOD,
            1,
        );
        assert_eq!(gate.max_pause(), None);
        gate.stop();
    }

    #[test]
    fn the_stop_flag_still_beats_a_pending_pass() {
        let dial = Dial::new(0.0);
        let gate = CpuGate::with_sampler(
            &cfg_max(Duration::from_secs(3600)),
            Box::new(Arc::clone(&dial)),
            PERIOD,
            1,
        );
        turn(&gate, &dial, 95.0);
        let stop = Arc::new(AtomicBool::new(false));
        let rx = waiter(&gate, &stop);
        assert_still_blocked(&rx);
        stop.store(true, Ordering::SeqCst);
        assert_released(&rx);
        assert_eq!(paused(&gate).passed, 0, "a stopped caller is no pass");
        gate.stop();
        assert_eq!(gate.pause(), None, "a stopped gate is not paused");
    }

    #[test]
    fn log_durations() {
        assert_eq!(secs(Duration::from_millis(250)), "250ms");
        assert_eq!(secs(Duration::from_secs(30)), "30s");
        assert_eq!(secs(Duration::from_millis(90_500)), "90s");
    }

    /// The real sampler: readings within 0–100, and two busy threads on this
    /// machine push the reading well up (other load only pushes it higher).
    #[test]
    fn sysinfo_sampler_sees_busy_threads() {
        let sampler = match SysinfoSampler::new() {
            Ok(s) => s,
            Err(e) => panic!("sysinfo cannot read the CPU here: {e}"),
        };
        std::thread::sleep(Duration::from_millis(300));
        let idle = sampler.sample();
        assert!((0.0..=100.0).contains(&idle), "idle reading {idle}");

        let busy = Arc::new(AtomicBool::new(true));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let busy = Arc::clone(&busy);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while busy.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // Start the measured interval once both threads are spinning.
        let _ = sampler.sample();
        std::thread::sleep(Duration::from_millis(1700));
        let loaded = sampler.sample();
        busy.store(false, Ordering::Relaxed);
        for s in spinners {
            let _ = s.join();
        }
        assert!((0.0..=100.0).contains(&loaded), "busy reading {loaded}");
        assert!(loaded >= 50.0, "busy reading {loaded}% (idle {idle}%)");
    }
}
