//! The daemon's scheduler of `onBatch` scans (SPEC §6): each enabled scan
//! with a schedule runs at the cron ticks of its expression in local time.
//! A tick that arrives while the same scan still runs is skipped (logged);
//! ticks missed while the daemon was down are not replayed — the next run
//! starts at the next tick and resumes from the scan's cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Local};

use super::BatchError;
use super::job::{Job, Progress};
use crate::config::model::Config;
use crate::events::dispatch::Engine;

/// One scheduled scan.
struct Entry {
    bucket: String,
    index: usize,
    running: Arc<AtomicBool>,
    next: Option<DateTime<Local>>,
}

/// Starts the scheduler thread; it ends when `stop` is set (running scans
/// stop after their current items, keeping their cursors).
pub fn start(
    config: Arc<Config>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let mut entries = Vec::new();
    for b in config.buckets.iter().filter(|b| b.meta.enable) {
        for (i, ev) in b.events.on_batch.iter().enumerate() {
            if ev.enable && ev.schedule.is_some() && ev.trigger.is_some() {
                entries.push(Entry {
                    bucket: b.meta.name.clone(),
                    index: i,
                    running: Arc::new(AtomicBool::new(false)),
                    next: None,
                });
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    std::thread::Builder::new()
        .name("storgate-scheduler".into())
        .spawn(move || run(config, engine, stop, entries))
        .ok()
}

fn next_tick(config: &Config, e: &Entry, after: &DateTime<Local>) -> Option<DateTime<Local>> {
    let schedule = config
        .bucket(&e.bucket)?
        .events
        .on_batch
        .get(e.index)?
        .schedule
        .as_ref()?;
    match schedule.cron.find_next_occurrence(after, false) {
        Ok(t) => Some(t),
        Err(err) => {
            tracing::error!(bucket = %e.bucket, index = e.index, schedule = %schedule.expr, error = %err,
                "no next time for this schedule; the scan will not run");
            None
        }
    }
}

fn run(config: Arc<Config>, engine: Arc<Engine>, stop: Arc<AtomicBool>, mut entries: Vec<Entry>) {
    let now = Local::now();
    for e in &mut entries {
        e.next = next_tick(&config, e, &now);
        if let Some(t) = e.next {
            tracing::info!(bucket = %e.bucket, index = e.index, next = %t, "scan scheduled");
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let now = Local::now();
        for e in &mut entries {
            let Some(due) = e.next else { continue };
            if due > now {
                continue;
            }
            // Next tick from now, not from `due`: missed ticks are not replayed.
            e.next = next_tick(&config, e, &now);
            if e.running.swap(true, Ordering::AcqRel) {
                tracing::warn!(bucket = %e.bucket, index = e.index, tick = %due,
                    "scan still running at its next tick; tick skipped");
                continue;
            }
            let (config, engine, stop, running) = (
                config.clone(),
                engine.clone(),
                stop.clone(),
                e.running.clone(),
            );
            let (bucket, index) = (e.bucket.clone(), e.index);
            let spawned = std::thread::Builder::new()
                .name(format!("storgate-scan-{bucket}-{index}"))
                .spawn(move || {
                    run_scan(&config, &engine, &bucket, index, &stop);
                    running.store(false, Ordering::Release);
                });
            if let Err(err) = spawned {
                e.running.store(false, Ordering::Release);
                tracing::error!(error = %err, "cannot start a scan thread");
            }
        }
        let sleep = entries
            .iter()
            .filter_map(|e| e.next)
            .min()
            .and_then(|t| (t - Local::now()).to_std().ok())
            .unwrap_or(Duration::from_millis(200))
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        std::thread::sleep(sleep);
    }
}

fn run_scan(config: &Config, engine: &Engine, bucket: &str, index: usize, stop: &AtomicBool) {
    let progress = Progress::default();
    let result = job_for(config, engine, bucket, index, stop, &progress).and_then(|job| job.run());
    match result {
        Ok(s) => tracing::info!(
            bucket,
            index,
            matched = s.matched,
            completed = s.completed,
            aborted = s.aborted,
            skipped = s.skipped,
            chunks = s.chunks,
            elapsed_ms = s.elapsed.as_millis() as u64,
            interrupted = s.interrupted,
            "scan finished"
        ),
        Err(BatchError::Busy) => tracing::warn!(
            bucket,
            index,
            "scan already running elsewhere (storgate batch run?); tick skipped"
        ),
        Err(e) => tracing::error!(bucket, index, error = %e,
            "scan failed; it resumes from its cursor at the next tick"),
    }
}

/// The job of scan `index` of `bucket`, run with the engine's runner,
/// webhooks, CPU gate and hit counts.
fn job_for<'a>(
    config: &'a Config,
    engine: &'a Engine,
    bucket: &'a str,
    index: usize,
    stop: &'a AtomicBool,
    progress: &'a Progress,
) -> Result<Job<'a>, BatchError> {
    let b = config
        .bucket(bucket)
        .ok_or_else(|| BatchError::config(format!("no bucket named {bucket:?}")))?;
    let event =
        b.events.on_batch.get(index).ok_or_else(|| {
            BatchError::config(format!("bucket {bucket:?} has no onBatch[{index}]"))
        })?;
    let wf_name = event
        .trigger
        .as_ref()
        .map(|t| t.workflow.as_str())
        .unwrap_or("");
    let workflow = b
        .workflows
        .iter()
        .find(|w| w.name == wf_name)
        .ok_or_else(|| {
            BatchError::config(format!(
                "bucket {bucket:?} has no workflow named {wf_name:?}"
            ))
        })?;
    let state = engine
        .bucket_state(bucket)
        .ok_or_else(|| BatchError::config(format!("bucket {bucket:?} is not enabled")))?;
    Ok(Job {
        bucket: state,
        bucket_name: bucket,
        index,
        event,
        workflow,
        runner: engine.runner(),
        webhooks: engine.webhooks(),
        gate: engine.gate(),
        hits: engine.hits(),
        state_dir: &config.state_dir,
        workers: crate::events::dispatch::worker_count(),
        stop,
        progress,
    })
}
