//! `storgate batch run [--config F] BUCKET [INDEX]` (SPEC §8): runs a
//! bucket's scan (or all its enabled scans, in order) now, in the
//! foreground, without a mount and without the event journal — so it works
//! next to a running daemon, whose copy of the same scan it excludes through
//! the scan's lock. Progress goes to stderr (a bar on a terminal, plain lines
//! otherwise); one summary line per scan goes to stdout.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::batch::BatchError;
use crate::batch::job::{Job, Progress, Summary};
use crate::bucket::run_tmp_dir;
use crate::bucket::selfchange::SelfChanges;
use crate::config;
use crate::events::dispatch::worker_count;
use crate::state::hits::HitStore;
use crate::throttle::CpuGate;
use crate::workflow::runner::Runner;
use crate::workflow::webhook::WebhookCaller;

/// Exit code: 0 no item aborted, 1 an item aborted or a scan could not run,
/// 2 config or usage error.
pub fn run_command(
    config_path: &Path,
    bucket: &str,
    index: Option<usize>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let Some(cfg) = config::load_or_report(config_path, err) else {
        return 2;
    };
    let usage = |err: &mut dyn Write, msg: String| {
        let _ = writeln!(err, "storgate batch run: {msg}");
        2
    };
    let Some(b) = cfg.bucket(bucket).filter(|b| b.meta.enable) else {
        return usage(err, format!("no enabled bucket named {bucket:?}"));
    };
    let indexes: Vec<usize> = match index {
        Some(i) if i < b.events.on_batch.len() => vec![i],
        Some(i) => {
            return usage(
                err,
                format!(
                    "bucket {bucket:?} has {} onBatch entries; there is no index {i}",
                    b.events.on_batch.len()
                ),
            );
        }
        None => (0..b.events.on_batch.len())
            .filter(|i| b.events.on_batch[*i].enable)
            .collect(),
    };
    if indexes.is_empty() {
        return usage(err, format!("bucket {bucket:?} has no enabled onBatch"));
    }
    let buckets = match crate::bucket::build_buckets(&cfg) {
        Ok(b) => b,
        Err(e) => return usage(err, e.to_string()),
    };
    let Some(state) = buckets.iter().find(|s| s.name == *bucket) else {
        return usage(err, format!("no enabled bucket named {bucket:?}"));
    };
    let state_tmp = cfg.state_dir.join("tmp");
    let run_tmp = match run_tmp_dir(&state_tmp) {
        Ok(d) => d,
        Err(e) => {
            return usage(
                err,
                format!("cannot create a directory in {}: {e}", state_tmp.display()),
            );
        }
    };
    let tmp = run_tmp.path().to_path_buf();
    let selfc = Arc::new(SelfChanges::announcing(&cfg.state_dir));
    crate::bucket::attach_self_changes(&buckets, &selfc);
    let runner = Runner::new(selfc, tmp, cfg.function_base_url.clone());
    let webhooks = WebhookCaller::new();
    let gate = CpuGate::start(&cfg.throttling);
    let hits = HitStore::open(&cfg.state_dir);
    let stop = Arc::new(AtomicBool::new(false));
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    let mut code = 0;
    for i in indexes {
        let event = &b.events.on_batch[i];
        let wf_name = event.trigger.as_ref().map_or("", |t| t.workflow.as_str());
        let Some(workflow) = b.workflows.iter().find(|w| w.name == wf_name) else {
            return usage(err, format!("onBatch[{i}] names no workflow of {bucket:?}"));
        };
        let progress = Progress::default();
        let job = Job {
            bucket: state,
            bucket_name: bucket,
            index: i,
            event,
            workflow,
            runner: &runner,
            webhooks: &webhooks,
            gate: &gate,
            hits: &hits,
            state_dir: &cfg.state_dir,
            workers: worker_count(),
            stop: &stop,
            progress: &progress,
        };
        let label = format!("scan {bucket}[{i}] {}", event.path);
        let result = with_progress(&label, &progress, || job.run());
        match result {
            Ok(s) => {
                let _ = writeln!(out, "{}", summary_line(&label, &s));
                if s.aborted > 0 || s.interrupted {
                    code = 1;
                }
            }
            Err(BatchError::Busy) => {
                let _ = writeln!(
                    err,
                    "{label}: already running (the daemon or another batch run holds it)"
                );
                code = 1;
            }
            Err(e) => {
                let _ = writeln!(err, "{label}: {e}");
                code = 1;
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    gate.stop();
    code
}

pub fn summary_line(label: &str, s: &Summary) -> String {
    format!(
        "{label}: matched {}, completed {}, aborted {}, skipped {}, chunks {}, elapsed {:.2}s{}",
        s.matched,
        s.completed,
        s.aborted,
        s.skipped,
        s.chunks,
        s.elapsed.as_secs_f64(),
        if s.interrupted {
            " (interrupted; the cursor stays)"
        } else {
            ""
        }
    )
}

/// Runs `f` while showing `progress` on stderr.
fn with_progress<R>(label: &str, progress: &Progress, f: impl FnOnce() -> R) -> R {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let line = |p: &Progress| {
                format!(
                    "matched {} · completed {} · aborted {} · skipped {} · chunks {} · examined {}",
                    p.matched.load(Ordering::Relaxed),
                    p.completed.load(Ordering::Relaxed),
                    p.aborted.load(Ordering::Relaxed),
                    p.skipped.load(Ordering::Relaxed),
                    p.chunks.load(Ordering::Relaxed),
                    p.examined.load(Ordering::Relaxed),
                )
            };
            if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix} [{elapsed_precise}] {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(label.to_string());
                while !done.load(Ordering::Relaxed) {
                    bar.set_message(line(progress));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            } else {
                let mut waited = Duration::ZERO;
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                    if waited >= Duration::from_secs(2) {
                        waited = Duration::ZERO;
                        eprintln!("{label}: {}", line(progress));
                    }
                }
            }
        });
        let r = f();
        done.store(true, Ordering::Relaxed);
        r
    })
}
