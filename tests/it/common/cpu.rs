//! The CPU side of the harness:
//! - [`Burners`]: busy-loop processes on every core, for the throttling test
//!   (`batch::throttling_holds_items_while_the_cpu_is_busy`), which must see
//!   the machine busy. It does not need the machine to itself: other tests
//!   beside it only add to the load, and it never waits for the machine to
//!   go idle (SPEC §6.3: a pause lets one item through per
//!   `maxPauseSeconds`, so work trickles while the load lasts).
//! - Claims and [`exclusive`]: a way for a test that *does* need the
//!   machine quiet to run alone. No test needs it today; the harness still
//!   takes the claims, so a test can start using it without touching the
//!   others.
//!
//! Every test takes a *claim* the first time it uses the harness (a scratch
//! directory, a mount, the storgate binary, an S3 or HTTP test server), and
//! keeps it until its thread ends (libtest runs each test on a thread of its
//! own). [`exclusive`] waits until no other test holds a claim and keeps new
//! tests from taking one until it is dropped; tests already holding a claim
//! are never blocked, so nothing waits on a test that waits on it.
//!
//! Only test threads take claims (libtest names them after the test, which
//! in this binary is always `module::test`): a helper thread of a test runs
//! under its test's claim, and must not wait for a claim of its own while an
//! exclusive test waits for that very test to end.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;

#[derive(Default)]
struct State {
    /// Tests holding a claim.
    claims: usize,
    /// An exclusive test is running.
    exclusive: bool,
    /// Exclusive tests waiting for the claims to end; no new claim meanwhile.
    waiting: usize,
}

static STATE: Mutex<State> = Mutex::new(State {
    claims: 0,
    exclusive: false,
    waiting: 0,
});
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    // A test that panicked while holding the lock left consistent counts
    // (every change is a single field update).
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A test's claim; released by the thread-local destructor when the test's
/// thread ends.
struct Claim;

impl Drop for Claim {
    fn drop(&mut self) {
        let mut st = state();
        st.claims -= 1;
        CHANGED.notify_all();
    }
}

thread_local! {
    static CLAIM: RefCell<Option<Claim>> = const { RefCell::new(None) };
    static EXCLUSIVE_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is one libtest runs a test on (see the module docs).
fn is_test_thread() -> bool {
    thread::current()
        .name()
        .is_some_and(|n| n != "main" && n.contains("::"))
}

/// Takes this test's claim unless it holds one (or runs exclusively); waits
/// while an exclusive test runs or waits. Called by the harness's entry
/// points; a test that uses none of them may call it itself.
pub fn enter() {
    if !is_test_thread() || EXCLUSIVE_HERE.with(Cell::get) {
        return;
    }
    let _ = CLAIM.try_with(|c| {
        if c.borrow().is_some() {
            return;
        }
        let mut st = state();
        while st.exclusive || st.waiting > 0 {
            st = CHANGED.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.claims += 1;
        *c.borrow_mut() = Some(Claim);
    });
}

/// While alive, no other test of this binary runs (see the module docs).
/// Take it first thing in the test and keep it to the end.
pub struct Exclusive {
    // Released on the thread that took it (EXCLUSIVE_HERE is per thread).
    _not_send: PhantomData<*const ()>,
}

/// Waits until every other test has ended, then runs alone.
pub fn exclusive() -> Exclusive {
    // A claim of our own would be waited for by ourselves.
    drop(CLAIM.with(|c| c.borrow_mut().take()));
    let mut st = state();
    st.waiting += 1;
    while st.exclusive || st.claims > 0 {
        st = CHANGED.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    st.waiting -= 1;
    st.exclusive = true;
    EXCLUSIVE_HERE.with(|e| e.set(true));
    Exclusive {
        _not_send: PhantomData,
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        EXCLUSIVE_HERE.with(|e| e.set(false));
        let mut st = state();
        st.exclusive = false;
        CHANGED.notify_all();
    }
}

/// Busy-loop processes, one per CPU this process may use (at least two),
/// killed by PID when stopped or dropped.
pub struct Burners(Vec<Child>);

impl Burners {
    pub fn start() -> Burners {
        let n = thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let kids = (0..n)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn a busy loop")
            })
            .collect();
        Burners(kids)
    }

    pub fn stop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.stop();
    }
}
