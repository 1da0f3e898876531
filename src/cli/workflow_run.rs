//! `storgate workflow run [--dry-run] BUCKET WORKFLOW PATH…` (SPEC §8): runs a
//! workflow on given items in the foreground, without a mount and without
//! the journal (so it works next to a running daemon), printing one line
//! per item — or, with `--dry-run`, the rendered savePath of every task.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::bucket::selfchange::SelfChanges;
use crate::bucket::store::Store;
use crate::bucket::{run_tmp_dir, source_dir};
use crate::config;
use crate::item::Source;
use crate::item::{item_of, path_text};
use crate::state::hits::HitStore;
// A path argument is the lossless text of `crate::name`, as outputs print it.
use crate::name::split_path;
use crate::workflow::runner::Runner;

/// Exit code: 0 all completed, 1 any aborted, 2 config or usage error.
pub fn run_command(
    config_path: &Path,
    dry_run: bool,
    bucket: &str,
    workflow: &str,
    paths: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let Some(cfg) = config::load_or_report(config_path, err) else {
        return 2;
    };
    let buckets = match crate::bucket::build_buckets(&cfg) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(err, "storgate workflow run: {e}");
            return 2;
        }
    };
    let Some(state) = buckets.iter().find(|b| b.name == OsStr::new(bucket)) else {
        let _ = writeln!(
            err,
            "storgate workflow run: no enabled bucket named {bucket:?}"
        );
        return 2;
    };
    let Some(wf) = cfg
        .bucket(bucket)
        .and_then(|b| b.workflows.iter().find(|w| w.name == workflow))
    else {
        let _ = writeln!(
            err,
            "storgate workflow run: bucket {bucket:?} has no workflow named {workflow:?}"
        );
        return 2;
    };
    let state_tmp = cfg.state_dir.join("tmp");
    let run_tmp = match run_tmp_dir(&state_tmp) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(
                err,
                "storgate workflow run: cannot create a directory in {}: {e}",
                state_tmp.display()
            );
            return 2;
        }
    };
    let tmp = run_tmp.path().to_path_buf();
    let selfc = Arc::new(SelfChanges::announcing(&cfg.state_dir));
    crate::bucket::attach_self_changes(&buckets, &selfc);
    let runner = Runner::new(selfc.clone(), tmp.clone(), cfg.function_base_url.clone());
    let hits = HitStore::open(&cfg.state_dir);
    let store = Store {
        bucket: state,
        selfc: &selfc,
        tmp_dir: &tmp,
    };
    let mut code = 0;
    for path in paths {
        let comps = split_path(path);
        let text = path_text(&comps);
        let st = match store.find(&comps) {
            Ok((_, _, st)) => st,
            Err(e) => {
                let _ = writeln!(out, "aborted {text}: cannot find it: {e}");
                code = 1;
                continue;
            }
        };
        let item = item_of(&comps, &st, hits.get(bucket, &text));
        let dir = source_dir(&state.tree, &comps);
        if dry_run {
            for (i, task) in wf.tasks.iter().enumerate() {
                match runner.save_path(state, task, &item, &dir) {
                    Ok(p) => {
                        let _ = writeln!(out, "{text} -> {p}");
                    }
                    Err(e) => {
                        let _ = writeln!(out, "{text} -> task {i}: {e}");
                        code = 1;
                    }
                }
            }
            continue;
        }
        let outcome = runner.run(state, wf, &item, &Source::Bucket(comps), &dir);
        match &outcome.error {
            None => {
                let _ = writeln!(out, "completed {text}");
            }
            Some(e) => {
                let _ = writeln!(out, "aborted {text}: {e}");
                code = 1;
            }
        }
        for o in &outcome.outputs {
            let _ = writeln!(out, "  {} {}", o.status, o.save_path);
        }
    }
    code
}
