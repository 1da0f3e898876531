//! Work the engine does later or off the caller's thread, on a fixed set of
//! threads instead of one detached thread per request:
//! - [`RetryTimer`]: one thread that runs each task at its deadline (the
//!   pause before a failed post item is requeued). A task lost to a crash
//!   or a shutdown loses nothing: its event is still in the journal, in
//!   flight, and is replayed at the next start.
//! - [`HookPool`]: a bounded queue and a few workers for the webhooks of
//!   pre events, so a client never waits for them; when the queue is full
//!   the caller runs the webhook itself (backpressure, nothing dropped).
//!
//! Each task runs inside the tracing span that was current when it was
//! queued, so its logs stay tied to their event.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// The pause before run `attempt + 1` of a failed post item: 4 s, then
/// 16 s (runs stop at [`super::dispatch::MAX_ATTEMPTS`]).
pub fn retry_pause(attempt: u32) -> Duration {
    let schedule = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(4))
        .with_factor(4.0)
        .with_max_delay(Duration::from_secs(256))
        .with_max_times(8);
    let n = attempt.saturating_sub(1) as usize;
    schedule.build().nth(n).unwrap_or(Duration::from_secs(256))
}

fn in_span(span: tracing::Span, task: Task) -> Task {
    Box::new(move || span.in_scope(task))
}

#[derive(Default)]
struct TimerState {
    tasks: Vec<(Instant, Task)>,
    stop: bool,
}

#[derive(Default)]
struct TimerShared {
    state: Mutex<TimerState>,
    changed: Condvar,
}

/// One thread running tasks at their deadlines.
pub struct RetryTimer {
    shared: Arc<TimerShared>,
    thread: Option<JoinHandle<()>>,
}

impl RetryTimer {
    pub fn start() -> std::io::Result<RetryTimer> {
        let shared = Arc::new(TimerShared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("storgate-retry".into())
            .spawn(move || timer_loop(&s))?;
        Ok(RetryTimer {
            shared,
            thread: Some(thread),
        })
    }

    /// Runs `task` after `delay`, in the current span.
    pub fn after(&self, delay: Duration, task: impl FnOnce() + Send + 'static) {
        let task = in_span(tracing::Span::current(), Box::new(task));
        let mut g = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        g.tasks.push((Instant::now() + delay, task));
        self.shared.changed.notify_one();
    }

    /// Drops the tasks not yet due (their events stay journaled) and ends
    /// the thread.
    pub fn stop(&self) {
        let mut g = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        g.stop = true;
        g.tasks.clear();
        self.shared.changed.notify_all();
    }
}

impl Drop for RetryTimer {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn timer_loop(s: &TimerShared) {
    let mut g = s.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if g.stop {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut g.tasks)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        g.tasks = later;
        if !due.is_empty() {
            // Run outside the lock: a task appends to the journal.
            drop(g);
            for (_, task) in due {
                task();
            }
            g = s.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        g = match g.tasks.iter().map(|(at, _)| *at).min() {
            Some(next) => {
                s.changed
                    .wait_timeout(g, next.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => s.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Webhook calls of pre events: a bounded queue and `n` worker threads.
pub struct HookPool {
    tx: Mutex<Option<SyncSender<Task>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl HookPool {
    pub fn start(workers: usize, capacity: usize) -> std::io::Result<HookPool> {
        let (tx, rx) = sync_channel::<Task>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("storgate-hook-{i}"))
                    .spawn(move || hook_loop(&rx))?,
            );
        }
        Ok(HookPool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Queues `task` (in the current span); runs it here when the queue is
    /// full or the pool is stopped.
    pub fn submit(&self, task: impl FnOnce() + Send + 'static) {
        let task = in_span(tracing::Span::current(), Box::new(task));
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else {
            task();
            return;
        };
        match tx.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(task)) => {
                tracing::debug!("webhook queue full; calling the webhook inline");
                task();
            }
            Err(TrySendError::Disconnected(task)) => task(),
        }
    }

    /// Lets the workers finish what is queued, then ends them.
    pub fn stop(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for HookPool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hook_loop(rx: &Mutex<Receiver<Task>>) {
    loop {
        // The receiver lock is held only while waiting for the next task.
        let task = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(t) => t,
            Err(_) => return,
        };
        task();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn retry_pauses_are_4_then_16_seconds() {
        assert_eq!(retry_pause(1), Duration::from_secs(4));
        assert_eq!(retry_pause(2), Duration::from_secs(16));
    }

    #[test]
    fn timer_runs_tasks_in_deadline_order() {
        let t = RetryTimer::start().expect("timer");
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        t.after(Duration::from_millis(80), move || tx.send(2).expect("send"));
        t.after(Duration::from_millis(10), move || {
            tx2.send(1).expect("send")
        });
        let got: Vec<i32> = rx.iter().take(2).collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn stopped_timer_drops_pending_tasks() {
        let t = RetryTimer::start().expect("timer");
        let (tx, rx) = channel::<()>();
        t.after(Duration::from_secs(3600), move || {
            tx.send(()).expect("send")
        });
        drop(t);
        assert!(rx.recv().is_err(), "the task was dropped, not run");
    }

    #[test]
    fn pool_runs_everything_even_when_full() {
        let p = HookPool::start(1, 1).expect("pool");
        let (tx, rx) = channel();
        for i in 0..20 {
            let tx = tx.clone();
            p.submit(move || tx.send(i).expect("send"));
        }
        p.stop();
        drop(tx);
        let mut got: Vec<i32> = rx.iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }
}
