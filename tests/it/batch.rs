//! Batch scans (`onBatch`, SPEC §1 scenario 1, §6, §6.3, §8 `batch run`) end
//! to end, with real kernel mounts, real processes, a loopback HTTP server
//! for webhooks (`common::http`) and moto for S3 (`common::s3`):
//! - the landing zone: 20,000 files in 200 directories moved by a scheduled
//!   scan to a hidden mount (copy + onComplete delete), in chunks of 1,000
//!   (20 chunk hooks with seq 1..20, one item hook per file, depth-first
//!   byte order);
//! - `kill -9` of the daemon mid-scan, restart on the same stateDir: every
//!   file processed, at most one chunk of items twice;
//! - `cursor: reset` with onComplete delete through `storgate batch run`
//!   terminates and processes everything (summary line, exit 0);
//! - `cursor: continue` over 5,000 S3 objects: `kill -9` mid-scan, restart,
//!   everything copied, at most one chunk twice;
//! - a 5-field `* * * * *` schedule fires within a minute;
//! - ticks arriving while a scan runs are skipped: runs never overlap and
//!   each run handles every item exactly once;
//! - throttling delays, never starves (SPEC §6.3): under a real CPU load
//!   ("throttled" logged once) the items of a scan still start, one per
//!   `maxPauseSeconds` and no faster — whether or not the machine was busy
//!   before;
//! - `storgate batch run`: summary lines, INDEX, exit 1 on an aborted item,
//!   exit 2 on usage errors, "already running" while the scan's lock is held,
//!   exec webhook environment;
//! - names are bytes: two non-UTF-8 names of the same lossy text are two
//!   items with two outputs.
//!
//! The CPU-throttling test runs beside the others: their load only keeps it
//! throttled, which is what it needs.
//! `STORGATE_TEST_BATCH_DEADLINE=SECS` caps every (nominal) deadline of this
//! file (a quick look at how the tests fail, e.g. while the engine is
//! missing); the harness scales them (`common::time_factor`).
use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::http::HttpServer;
use common::s3::{S3Server, client, rt};
use common::*;
use regex::Regex;
use serde_json::{Value, json};
use storgate::origin::s3::client::S3Client;

// ------------------------------------------------------------ helpers ----

/// `secs`, capped by `STORGATE_TEST_BATCH_DEADLINE` when set (nominal: the
/// harness's waits scale it).
fn dl(secs: u64) -> Duration {
    let cap = std::env::var("STORGATE_TEST_BATCH_DEADLINE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs.min(cap))
}

/// Visits every regular file below `dir` with its path relative to `dir`.
fn walk(dir: &Path, f: &mut impl FnMut(String, &Path)) {
    fn go(base: &Path, d: &Path, f: &mut impl FnMut(String, &Path)) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                go(base, &p, f);
            } else if ft.is_file() {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                f(rel, &p);
            }
        }
    }
    go(dir, dir, f)
}

/// How many regular files are below `dir` (missing dir = 0).
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    walk(dir, &mut |_, _| n += 1);
    n
}

/// Every regular file below `dir`, by relative path, with its content.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, &mut |rel, p| {
        if let Ok(b) = fs::read(p) {
            out.insert(rel, b);
        }
    });
    out
}

/// Asserts that `dir` holds exactly `want` (relative path → content).
#[track_caller]
fn assert_tree(dir: &Path, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let got = files_under(dir);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}: {} missing (e.g. {:?}), {} unexpected (e.g. {:?}), {} with other content (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
        differ.len(),
        &differ[..differ.len().min(5)],
    );
}

/// Creates `dirs` × `per_dir` files `dNNN/fNNN.jpg` below `dir`; returns
/// them (relative path → content) in depth-first byte order.
fn make_tree(dir: &Path, dirs: usize, per_dir: usize) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for d in 0..dirs {
        let sub = dir.join(format!("d{d:03}"));
        fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("mkdir {}: {e}", sub.display()));
        for f in 0..per_dir {
            let name = format!("f{f:03}.jpg");
            let content = format!("image {d}/{f}\n").repeat(f % 5 + 1).into_bytes();
            fs::write(sub.join(&name), &content).unwrap();
            out.insert(format!("d{d:03}/{name}"), content);
        }
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `storgate batch run --config CONFIG ARGS…` with a deadline.
fn batch_run(config: &Path, args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new(storgate_bin());
    cmd.args(["batch", "run", "--config"])
        .arg(config)
        .args(args)
        .env("STORGATE_LOG", "info");
    run_timeout(&mut cmd, timeout)
}

/// The summary line of a scan (SPEC §8, contract):
/// `scan BUCKET[INDEX] PATH: matched N, completed N, aborted N, skipped N, chunks N, elapsed S.SSs`
fn summary_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^scan (\S+)\[(\d+)\] (\S+): matched (\d+), completed (\d+), aborted (\d+), skipped (\d+), chunks (\d+), elapsed (\d+\.\d{2})s$",
        )
        .unwrap()
    })
}

/// One parsed summary line.
#[derive(Debug, PartialEq, Eq)]
struct ScanSummary {
    bucket: String,
    index: u64,
    path: String,
    matched: u64,
    completed: u64,
    aborted: u64,
    skipped: u64,
    chunks: u64,
}

/// The summary lines of a `batch run`: stdout must hold nothing else.
#[track_caller]
fn summaries(o: &Output) -> Vec<ScanSummary> {
    let out = text(&o.stdout);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c = summary_re()
                .captures(l.trim_end())
                .unwrap_or_else(|| panic!("stdout line is not a scan summary: {l:?}\n{}", show(o)));
            let n = |i: usize| c[i].parse::<u64>().unwrap();
            ScanSummary {
                bucket: c[1].to_string(),
                index: n(2),
                path: c[3].to_string(),
                matched: n(4),
                completed: n(5),
                aborted: n(6),
                skipped: n(7),
                chunks: n(8),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn summary(
    bucket: &str,
    index: u64,
    path: &str,
    matched: u64,
    completed: u64,
    aborted: u64,
    skipped: u64,
    chunks: u64,
) -> ScanSummary {
    ScanSummary {
        bucket: bucket.into(),
        index,
        path: path.into(),
        matched,
        completed,
        aborted,
        skipped,
        chunks,
    }
}

// ------------------------------------------------------- webhooks ----

/// Webhook calls counted as they arrive (each body parsed once: the big
/// tests get tens of thousands).
#[derive(Default, Debug)]
struct Tally {
    /// Calls per `hook`.
    calls: BTreeMap<String, usize>,
    /// Distinct `item.path`s per `hook`.
    paths: BTreeMap<String, BTreeSet<String>>,
    /// Bodies that were not JSON.
    bad: usize,
}

impl Tally {
    fn add(&mut self, body: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            self.bad += 1;
            return;
        };
        let hook = v["hook"].as_str().unwrap_or("?").to_string();
        *self.calls.entry(hook.clone()).or_default() += 1;
        if let Some(p) = v["item"]["path"].as_str() {
            self.paths.entry(hook).or_default().insert(p.to_string());
        }
    }

    fn count(&self, hook: &str) -> usize {
        self.calls.get(hook).copied().unwrap_or(0)
    }

    fn distinct(&self, hook: &str) -> usize {
        self.paths.get(hook).map_or(0, BTreeSet::len)
    }
}

/// Waits until `cond` holds for the calls received under `prefix`; panics
/// naming `what` (with the counts so far) after `timeout`.
#[track_caller]
fn wait_hooks(
    srv: &HttpServer,
    prefix: &str,
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut(&Tally) -> bool,
) -> Tally {
    let mut t = Tally::default();
    let mut upto = 0;
    // Runs under the server's lock: only the slice, never `srv`.
    let ok = srv.wait_until(timeout, |reqs| {
        for r in &reqs[upto..] {
            if r.path.starts_with(prefix) {
                t.add(&r.body);
            }
        }
        upto = reqs.len();
        cond(&t)
    });
    assert!(
        ok,
        "timed out after {timeout:?} waiting for {what}; webhook calls under {prefix}: {:?} ({} not JSON)",
        t.calls, t.bad
    );
    t
}

/// The JSON payloads under `prefix` whose `hook` is `hook`, in arrival order.
fn payloads(srv: &HttpServer, prefix: &str, hook: &str) -> Vec<Value> {
    srv.json_bodies(prefix)
        .into_iter()
        .filter(|v| v["hook"] == hook)
        .collect()
}

fn item_path(v: &Value) -> String {
    v["item"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("payload without item.path: {v}"))
        .to_string()
}

/// Checks the chunk hooks of one complete run: `sizes.len()` calls of each,
/// seq 1..=n with these sizes, no item, one batch id (returned).
#[track_caller]
fn check_chunk_hooks(srv: &HttpServer, prefix: &str, sizes: &[u64]) -> String {
    let mut batch: Option<String> = None;
    for hook in ["onChunkExtracted", "onChunkCompleted"] {
        let v = payloads(srv, prefix, hook);
        assert_eq!(v.len(), sizes.len(), "{hook} calls: {v:?}");
        let mut by_seq: Vec<(u64, u64)> = v
            .iter()
            .map(|p| {
                assert_eq!(p["event"], "onBatch", "{p}");
                assert!(p["item"].is_null(), "{hook} has no item: {p}");
                assert_eq!(p["outputs"], json!([]), "{hook} has no outputs: {p}");
                let b = p["chunk"]["batch"]
                    .as_str()
                    .unwrap_or_else(|| panic!("chunk.batch: {p}"))
                    .to_string();
                assert_eq!(
                    batch.get_or_insert_with(|| b.clone()),
                    &b,
                    "one batch id for the run"
                );
                (
                    p["chunk"]["seq"].as_u64().expect("chunk.seq"),
                    p["chunk"]["size"].as_u64().expect("chunk.size"),
                )
            })
            .collect();
        by_seq.sort();
        let want: Vec<(u64, u64)> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, *s))
            .collect();
        assert_eq!(by_seq, want, "{hook}: (seq, size) of each chunk");
    }
    batch.expect("a batch id")
}

// ------------------------------------------------------- config ----

/// An enabled, recursive `onBatch` scan of `path`.
fn scan(path: &str, chunk: u64, schedule: &str, workflow: &str, hooks: Value) -> Value {
    json!({
        "enable": true,
        "chunkSize": chunk,
        "path": path,
        "schedule": schedule,
        "filter": {"recursive": true},
        "trigger": {"workflow": workflow},
        "webhook": hooks,
    })
}

/// All four batch hooks posting to `url`.
fn all_hooks(url: &str) -> Value {
    json!({
        "onItemCompleted": url,
        "onItemAborted": url,
        "onChunkExtracted": url,
        "onChunkCompleted": url,
    })
}

/// A one-task workflow writing `save` (function `function`, null = copy),
/// deleting the source afterwards when `delete`.
fn workflow(name: &str, function: Value, save: &str, delete: bool) -> Value {
    let mut task = json!({"savePath": save, "timeout": 120});
    if !function.is_null() {
        task["function"] = function;
    }
    let mut w = json!({"name": name, "tasks": [task]});
    if delete {
        w["onComplete"] = json!({"src": {"op": "delete"}});
    }
    w
}

/// A bucket with mounts, `onBatch` scans and workflows.
fn batch_bucket(name: &str, mounts: Vec<Value>, scans: Vec<Value>, workflows: Vec<Value>) -> Value {
    let mut b = bucket(name, mounts);
    b["events"] = json!({"onBatch": scans});
    b["workflows"] = Value::Array(workflows);
    b
}

/// Top level: stateDir, throttling off (unless given), buckets.
fn top(state_dir: &str, buckets: Vec<Value>, throttling: Value) -> Value {
    json!({"stateDir": state_dir, "throttling": throttling, "buckets": buckets})
}

fn no_throttling() -> Value {
    json!({"enable": false})
}

/// A copy to `/out/<path below the scan>`.
const TO_OUT: &str = "/out/{{ item.path | relpath(source_dir) }}";

/// A 6-field schedule that fires once, `delay` seconds from now (local
/// time, at that hour:minute:second of the day), and that instant as unix
/// seconds: a daemon runs its scan exactly once while the test watches.
pub(crate) fn one_shot_schedule(delay: i64) -> (String, i64) {
    // SAFETY: time(NULL) and localtime_r into a zeroed tm.
    let at = unsafe { libc::time(std::ptr::null_mut()) } + delay;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&at, &mut tm).is_null() };
    assert!(ok, "localtime_r failed");
    (
        format!("{} {} {} * * *", tm.tm_sec, tm.tm_min, tm.tm_hour),
        at,
    )
}

fn unix_now() -> i64 {
    // SAFETY: time(NULL).
    unsafe { libc::time(std::ptr::null_mut()) }
}

/// Panics when the one-shot tick at `at` already passed (the mount came up
/// too late for it): the scan would then never run.
#[track_caller]
fn assert_before(at: i64) {
    assert!(
        unix_now() < at,
        "test premise: the mount came up after the one-shot tick ({at}); the machine is too slow"
    );
}

/// How often `needle` occurs in the daemon's log.
fn log_count(m: &Mount, needle: &str) -> usize {
    m.log().matches(needle).count()
}

/// Waits until the daemon's log holds `needle` at least `n` times.
#[track_caller]
fn wait_log(m: &Mount, needle: &str, n: usize, timeout: Duration) {
    poll(
        timeout,
        Duration::from_millis(100),
        &format!("{n} × {needle:?} in the daemon's log"),
        || log_count(m, needle) >= n,
        || format!("{} so far", log_count(m, needle)),
    );
}

// ------------------------------------------ scenario 1: landing zone ----

#[test]
fn landing_zone_20000_files_moved_in_chunks_with_webhooks() {
    const DIRS: usize = 200;
    const PER_DIR: usize = 100;
    const N: usize = DIRS * PER_DIR;
    const CHUNK: u64 = 1000;
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    let want = make_tree(&root.path().join("upload"), DIRS, PER_DIR);
    let cfg = top(
        "{root}/state",
        vec![{
            let mut b = batch_bucket(
                "image_landing_bucket",
                vec![
                    mount_at("/image_landing", "{root}/upload"),
                    hidden_mount_at("/image_service", "{root}/service"),
                ],
                vec![scan(
                    "/image_landing",
                    CHUNK,
                    "*/3 * * * * *",
                    "migrate_tmpimg",
                    all_hooks(&url),
                )],
                vec![workflow(
                    "migrate_tmpimg",
                    Value::Null,
                    "/image_service/{{ item.path | relpath(source_dir) }}",
                    true,
                )],
            );
            b["meta"]["expose"] = json!(true);
            b
        }],
        no_throttling(),
    );
    let mut m = Mount::start_in(root, &cfg, &[]);
    m.extend_watchdog(480);
    let service = m.scratch_path("service");
    let upload = m.scratch_path("upload");
    poll(
        dl(360),
        Duration::from_millis(500),
        "all 20,000 files moved from the landing origin to the service origin",
        || count_files(&upload) == 0 && count_files(&service) == N,
        || {
            format!(
                "landing: {} files, service: {} files; log tail:\n{}",
                count_files(&upload),
                count_files(&service),
                tail(&m.log(), 30)
            )
        },
    );
    assert_tree(&service, &want, "service origin after the move");
    assert!(
        !m.at("image_landing_bucket/image_service").exists(),
        "/image_service stays hidden"
    );
    wait_hooks(&srv, "/hook", dl(120), "every item and chunk hook", |t| {
        t.distinct("onItemCompleted") >= N && t.count("onChunkCompleted") >= 20
    });
    // The first run is over once it logged "scan finished"; a second one
    // (a later tick, over the now empty landing zone) proves nothing more is
    // in flight from the first.
    wait_log(&m, "scan finished", 2, dl(60));

    let items = payloads(&srv, "/hook", "onItemCompleted");
    assert_eq!(items.len(), N, "exactly one onItemCompleted per file");
    assert!(
        payloads(&srv, "/hook", "onItemAborted").is_empty(),
        "nothing aborted"
    );
    let batch = check_chunk_hooks(&srv, "/hook", &[CHUNK; 20]);
    // Depth-first, names in byte order: file i of that order is in chunk
    // i / 1000 + 1.
    let order: BTreeMap<String, usize> = want
        .keys()
        .enumerate()
        .map(|(i, k)| (format!("/image_landing/{k}"), i))
        .collect();
    let mut seen = BTreeSet::new();
    for v in &items {
        let p = item_path(v);
        assert!(seen.insert(p.clone()), "{p} reported twice");
        let i = *order
            .get(&p)
            .unwrap_or_else(|| panic!("webhook for an unknown item {p}"));
        assert_eq!(v["event"], "onBatch", "{v}");
        assert_eq!(v["bucket"], "image_landing_bucket", "{v}");
        assert_eq!(v["workflow"], "migrate_tmpimg", "{v}");
        assert!(v["error"].is_null(), "{v}");
        assert_eq!(v["chunk"]["batch"], batch.as_str(), "{v}");
        assert_eq!(v["chunk"]["size"], CHUNK, "{v}");
        assert_eq!(
            v["chunk"]["seq"],
            (i / CHUNK as usize + 1) as u64,
            "{p} is item {i} in depth-first byte order: {v}"
        );
        let rel = &p["/image_landing/".len()..];
        assert_eq!(
            v["outputs"],
            json!([{"savePath": format!("/image_service/{rel}"), "status": "written"}]),
            "{v}"
        );
    }
    assert!(
        !m.scratch_path("state/cursors/image_landing_bucket.0.json")
            .exists(),
        "the cursor is removed at the end of a scan"
    );
    m.unmount();
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ------------------------------------------- kill -9 mid-scan (local) ----

#[test]
fn kill_9_mid_scan_restart_processes_every_file_at_most_one_chunk_twice() {
    const DIRS: usize = 50;
    const PER_DIR: usize = 100;
    const N: usize = DIRS * PER_DIR;
    const CHUNK: usize = 500;
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let outer = scratch();
    let o = outer.path();
    let od = o.to_str().unwrap();
    let want = make_tree(&o.join("in"), DIRS, PER_DIR);
    fs::create_dir_all(o.join("out")).unwrap();
    fs::create_dir_all(o.join("state")).unwrap();
    let cfg = top(
        &format!("{od}/state"),
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", &format!("{od}/in")),
                hidden_mount_at("/out", &format!("{od}/out")),
            ],
            vec![scan(
                "/in",
                CHUNK as u64,
                "*/2 * * * * *",
                "slow",
                json!({"onItemCompleted": url, "onChunkCompleted": url}),
            )],
            vec![workflow(
                "slow",
                json!({"exec": ["sh", "-c", "sleep 0.01; cat"]}),
                TO_OUT,
                true,
            )],
        )],
        no_throttling(),
    );
    let env = [("STORGATE_WORKERS", "2")];

    let mut m1 = Mount::start_in_env(scratch(), &cfg, &["--bucket", "b"], &env);
    m1.extend_watchdog(300);
    wait_hooks(&srv, "/hook", dl(180), "two completed chunks", |t| {
        t.count("onChunkCompleted") >= 2
    });
    let stopped = m1.stop_with(libc::SIGKILL);
    assert!(stopped.status.is_some(), "the daemon died of SIGKILL");
    assert!(!is_fuse_mounted(&m1.mnt), "the dead mount is gone");
    let at_kill = payloads(&srv, "/hook", "onItemCompleted").len();
    assert!(
        at_kill + CHUNK < N,
        "test premise: killed mid-scan ({at_kill} of {N} items completed)"
    );
    let cursor = o.join("state/cursors/b.0.json");
    assert!(
        cursor.is_file(),
        "the marker of the last completed chunk is persisted in {}",
        cursor.display()
    );
    drop(m1);

    let mut m2 = Mount::start_in_env(scratch(), &cfg, &["--bucket", "b"], &env);
    m2.extend_watchdog(300);
    poll(
        dl(240),
        Duration::from_millis(200),
        "every file moved to /out after the restart",
        || count_files(&o.join("in")) == 0 && count_files(&o.join("out")) == N,
        || {
            format!(
                "in: {}, out: {}",
                count_files(&o.join("in")),
                count_files(&o.join("out"))
            )
        },
    );
    assert_tree(&o.join("out"), &want, "out after the restart");
    wait_hooks(
        &srv,
        "/hook",
        dl(60),
        "onItemCompleted for every file",
        |t| t.distinct("onItemCompleted") >= N,
    );
    // The resumed run and a later (empty) one have finished: nothing of the
    // resumed run is still in flight.
    wait_log(&m2, "scan finished", 2, dl(60));
    let items = payloads(&srv, "/hook", "onItemCompleted");
    let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
    for v in &items {
        *per_path.entry(item_path(v)).or_default() += 1;
    }
    let all: BTreeSet<String> = want.keys().map(|k| format!("/in/{k}")).collect();
    assert_eq!(
        per_path.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every file reported at least once, nothing else"
    );
    assert!(
        items.len() <= N + CHUNK,
        "only the in-flight chunk may run twice: {} onItemCompleted calls for {N} files ({at_kill} before the kill)",
        items.len()
    );
    assert!(
        !cursor.exists(),
        "the cursor is removed when the scan reaches the end"
    );
    m2.unmount();
}

// --------------------------------------------- cursor: reset (CLI) ----

#[test]
fn cursor_reset_with_delete_terminates_and_processes_everything() {
    const DIRS: usize = 30;
    const PER_DIR: usize = 100;
    const N: usize = DIRS * PER_DIR;
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    let want = make_tree(&root.path().join("in"), DIRS, PER_DIR);
    let mut s = scan("/in", 700, "0 0 1 1 *", "move", all_hooks(&url));
    s["cursor"] = json!("reset");
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", "{root}/in"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![s],
            vec![workflow("move", Value::Null, TO_OUT, true)],
        )],
        no_throttling(),
    );
    let config = write_config(root.path(), &cfg, "storgate.json");
    let o = batch_run(&config, &["b", "0"], dl(240));
    assert!(o.status.success(), "batch run: {}", show(&o));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        summaries(&o),
        vec![summary("b", 0, "/in", N as u64, N as u64, 0, 0, 5)],
        "{}",
        show(&o)
    );
    assert_eq!(count_files(&root.path().join("in")), 0, "sources deleted");
    assert_tree(&root.path().join("out"), &want, "out after the reset scan");
    let items = payloads(&srv, "/hook", "onItemCompleted");
    let paths: BTreeSet<String> = items.iter().map(item_path).collect();
    assert_eq!(items.len(), N, "one onItemCompleted per file");
    assert_eq!(paths.len(), N, "each file once");
    check_chunk_hooks(&srv, "/hook", &[700, 700, 700, 700, 200]);
    assert!(
        !root.path().join("state/cursors/b.0.json").exists(),
        "reset persists no cursor"
    );
}

// ----------------------------------- cursor: continue over S3, kill -9 ----

/// Puts every `(key, body)`, 32 at a time.
fn put_objects(c: Arc<S3Client>, objects: Vec<(String, Vec<u8>)>) {
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for part in objects.chunks(objects.len().div_ceil(32)) {
            let (c, part) = (c.clone(), part.to_vec());
            set.spawn(async move {
                for (k, body) in part {
                    c.put_bytes(&k, body, &HashMap::new())
                        .await
                        .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("uploader");
        }
    });
}

#[test]
fn s3_cursor_continue_kill_9_restart_copies_every_object() {
    const N: usize = 5000;
    const CHUNK: usize = 500;
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket("batch-continue");
    let client = client(s3, &bucket);
    let objects: Vec<(String, Vec<u8>)> = (0..N)
        .map(|i| {
            (
                format!("pre/d{:02}/o{i:04}", i / 100),
                format!("object {i}\n").into_bytes(),
            )
        })
        .collect();
    let t = Instant::now();
    put_objects(client, objects.clone());
    eprintln!("{N} objects uploaded in {:?}", t.elapsed());
    let want: BTreeMap<String, Vec<u8>> = objects
        .iter()
        .map(|(k, b)| (k["pre/".len()..].to_string(), b.clone()))
        .collect();

    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let outer = scratch();
    let o = outer.path();
    let od = o.to_str().unwrap();
    fs::create_dir_all(o.join("out")).unwrap();
    fs::create_dir_all(o.join("state")).unwrap();
    // Fires once: no second run (from the start) can follow the first.
    let cfg = |schedule: &str| {
        let mut c = top(
            &format!("{od}/state"),
            vec![batch_bucket(
                "b",
                vec![
                    json!({"mountPoint": "/s3", "originPath": format!("{bucket}@aws_s3/pre")}),
                    hidden_mount_at("/out", &format!("{od}/out")),
                ],
                vec![scan(
                    "/s3",
                    CHUNK as u64,
                    schedule,
                    "copy",
                    json!({"onItemCompleted": url, "onChunkCompleted": url}),
                )],
                vec![workflow("copy", Value::Null, TO_OUT, false)],
            )],
            no_throttling(),
        );
        c["aws_s3"] = json!([s3.endpoint_config(&bucket)]);
        c
    };
    let env = [("STORGATE_WORKERS", "2")];

    let (sched, at) = one_shot_schedule(6);
    let mut m1 = Mount::start_in_env(scratch(), &cfg(&sched), &["--bucket", "b"], &env);
    assert_before(at);
    m1.extend_watchdog(300);
    wait_hooks(&srv, "/hook", dl(180), "two completed chunks", |t| {
        t.count("onChunkCompleted") >= 2
    });
    let stopped = m1.stop_with(libc::SIGKILL);
    assert!(stopped.status.is_some(), "the daemon died of SIGKILL");
    let at_kill = payloads(&srv, "/hook", "onItemCompleted").len();
    assert!(
        at_kill + CHUNK < N,
        "test premise: killed mid-scan ({at_kill} of {N} objects copied)"
    );
    let cursor = o.join("state/cursors/b.0.json");
    assert!(cursor.is_file(), "marker persisted in {}", cursor.display());
    drop(m1);

    let (sched, at) = one_shot_schedule(6);
    // After the restart only completion matters: more workers, less CI time.
    let env = [("STORGATE_WORKERS", "8")];
    let mut m2 = Mount::start_in_env(scratch(), &cfg(&sched), &["--bucket", "b"], &env);
    assert_before(at);
    m2.extend_watchdog(400);
    poll(
        dl(360),
        Duration::from_millis(200),
        "every object copied to /out after the restart",
        || count_files(&o.join("out")) >= N,
        || format!("out: {} files", count_files(&o.join("out"))),
    );
    assert_tree(&o.join("out"), &want, "out after the restart");
    wait_hooks(
        &srv,
        "/hook",
        dl(60),
        "onItemCompleted for every object",
        |t| t.distinct("onItemCompleted") >= N,
    );
    wait_log(&m2, "scan finished", 1, dl(60));
    let items = payloads(&srv, "/hook", "onItemCompleted");
    let paths: BTreeSet<String> = items.iter().map(item_path).collect();
    let all: BTreeSet<String> = want.keys().map(|k| format!("/s3/{k}")).collect();
    assert_eq!(paths, all, "every object reported at least once");
    assert!(
        items.len() <= N + CHUNK,
        "the restart resumed after the persisted marker: {} onItemCompleted calls for {N} objects ({at_kill} before the kill)",
        items.len()
    );
    assert!(!cursor.exists(), "the cursor is removed at the end");
    m2.unmount();
}

// ---------------------------------------------- 5-field schedule ----

#[test]
fn five_field_schedule_fires_within_a_minute() {
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    put(&root.path().join("in/sub/one.txt"), "one small file\n");
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", "{root}/in"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![scan(
                "/in",
                1000,
                "* * * * *",
                "move",
                json!({"onItemCompleted": url}),
            )],
            vec![workflow("move", Value::Null, TO_OUT, true)],
        )],
        no_throttling(),
    );
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    let started = Instant::now();
    poll(
        dl(75),
        Duration::from_millis(200),
        "the file moved by the every-minute scan",
        || {
            fs::read(m.scratch_path("out/sub/one.txt")).is_ok_and(|b| b == b"one small file\n")
                && !m.scratch_path("in/sub/one.txt").exists()
        },
        || tail(&m.log(), 20),
    );
    eprintln!("moved after {:?}", started.elapsed());
    let t = wait_hooks(&srv, "/hook", dl(30), "the item's webhook", |t| {
        t.count("onItemCompleted") >= 1
    });
    assert_eq!(t.distinct("onItemCompleted"), 1);
    assert_eq!(
        payloads(&srv, "/hook", "onItemCompleted")
            .iter()
            .map(item_path)
            .collect::<Vec<_>>(),
        vec!["/in/sub/one.txt".to_string()]
    );
    m.unmount();
}

// ------------------------------------------------------- overlap ----

#[test]
fn ticks_during_a_run_are_skipped_and_runs_never_overlap() {
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    for n in ["a", "b", "c"] {
        put(&root.path().join(format!("in/{n}.txt")), format!("{n}\n"));
    }
    // 3 items of ~3 s each, one worker, chunks of 2: a run lasts ~9 s while
    // the schedule ticks every second.
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", "{root}/in"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![scan("/in", 2, "*/1 * * * * *", "slow", all_hooks(&url))],
            vec![workflow(
                "slow",
                json!({"exec": ["sh", "-c", "sleep 3; cat"]}),
                TO_OUT,
                false,
            )],
        )],
        no_throttling(),
    );
    let mut m = Mount::start_in_env(root, &cfg, &["--bucket", "b"], &[("STORGATE_WORKERS", "1")]);
    m.extend_watchdog(180);
    // Two whole runs: the last chunk (seq 2) completed twice.
    wait_hooks(&srv, "/hook", dl(100), "two complete runs", |t| {
        t.count("onChunkCompleted") >= 4
    });
    wait_log(&m, "tick skipped", 1, dl(10));
    m.stop();
    let log = m.log();
    drop(m);

    // Replay the hooks in arrival order: a chunk is open from its
    // onChunkExtracted to its onChunkCompleted; no other chunk may be
    // extracted meanwhile, and its items report inside it.
    let all = srv.json_bodies("/hook");
    let mut open: Option<(Value, u64)> = None;
    // Runs (a run starts at seq 1): per chunk (seq, item paths), whether it completed.
    let mut runs: Vec<Vec<(u64, Vec<String>, bool)>> = Vec::new();
    for v in &all {
        let batch = v["chunk"]["batch"].clone();
        let seq = v["chunk"]["seq"].as_u64().unwrap_or(0);
        match v["hook"].as_str().unwrap_or("") {
            "onChunkExtracted" => {
                assert!(
                    open.is_none(),
                    "chunk {batch} #{seq} extracted while chunk {open:?} is still running: two runs overlap\nall hooks: {all:#?}"
                );
                open = Some((batch, seq));
                if seq == 1 {
                    runs.push(Vec::new());
                }
                runs.last_mut()
                    .expect("a run starts with chunk 1")
                    .push((seq, Vec::new(), false));
            }
            "onItemCompleted" => {
                assert_eq!(
                    open,
                    Some((batch, seq)),
                    "item {} reported outside its chunk",
                    item_path(v)
                );
                let chunk = runs.last_mut().unwrap().last_mut().unwrap();
                chunk.1.push(item_path(v));
            }
            "onChunkCompleted" => {
                assert_eq!(open, Some((batch, seq)), "completed chunk was not open");
                open = None;
                runs.last_mut().unwrap().last_mut().unwrap().2 = true;
            }
            other => panic!("unexpected hook {other}: {v}"),
        }
    }
    let whole: Vec<&Vec<(u64, Vec<String>, bool)>> =
        runs.iter().filter(|r| r.len() == 2 && r[1].2).collect();
    assert!(whole.len() >= 2, "two complete runs: {runs:?}");
    for r in whole {
        assert_eq!(
            r,
            &vec![
                (
                    1,
                    vec!["/in/a.txt".to_string(), "/in/b.txt".to_string()],
                    true
                ),
                (2, vec!["/in/c.txt".to_string()], true),
            ],
            "one run: each item exactly once, in order, chunks of 2 ({runs:?})"
        );
    }
    assert!(
        runs.iter().all(|r| r.len() <= 2),
        "no run has more than 2 chunks: {runs:?}"
    );
    assert!(log.contains("tick skipped"));
}

// ---------------------------------------------------- throttling ----

/// The longest pause between two items in the throttling test.
const MAX_PAUSE: Duration = Duration::from_secs(2);

#[test]
fn throttling_holds_items_while_the_cpu_is_busy() {
    const N: usize = 5;
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    fs::create_dir_all(root.path().join("in")).unwrap();
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", "{root}/in"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![scan("/in", 10, "*/1 * * * * *", "move", all_hooks(&url))],
            vec![workflow("move", Value::Null, TO_OUT, true)],
        )],
        json!({"enable": true, "cpu": {"deactive": 85, "reactive": 70},
               "maxPauseSeconds": MAX_PAUSE.as_secs()}),
    );
    // Every core busy for the whole test: the machine never goes idle, and
    // whatever else runs beside it only adds to the load.
    let mut burners = common::cpu::Burners::start();
    let mut m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    m.extend_watchdog(300);
    wait_log(&m, "throttled:", 1, dl(60));

    // Items appear only now, while throttled: the scan (every second) lists
    // them into one chunk, whose items the gate lets start one per period.
    let want: BTreeMap<String, Vec<u8>> = (0..N)
        .map(|i| {
            (
                format!("f{i}.txt"),
                format!("throttled item {i}\n").into_bytes(),
            )
        })
        .collect();
    let put_at = Instant::now();
    for (n, c) in &want {
        put(&m.scratch_path(&format!("in/{n}")), c);
    }
    // Never starved: all of them move while the CPU stays busy.
    poll(
        dl(120),
        Duration::from_millis(100),
        "the items moved one by one while the CPU is busy",
        || {
            count_files(&m.scratch_path("in")) == 0
                && count_files(&m.scratch_path("out")) == want.len()
        },
        || tail(&m.log(), 30),
    );
    let took = put_at.elapsed();
    eprintln!("{N} items moved in {took:?} while throttled (max pause {MAX_PAUSE:?})");
    let log = m.log();
    // The premise of the bound below: the gate stayed closed throughout.
    assert!(
        !log.contains("resumed:"),
        "the CPU went below 70% with every core busy; log:\n{}",
        tail(&log, 30)
    );
    // Held back: none started before the items existed, and each next one a
    // whole period after the previous pass — a lower bound that holds on an
    // idle machine and a busy one alike (load only makes it slower).
    let held = MAX_PAUSE * (N as u32 - 1);
    assert!(
        took >= held,
        "{N} items ran in {took:?} while throttled, faster than one per {MAX_PAUSE:?}; log:\n{}",
        tail(&log, 30)
    );
    assert_tree(&m.scratch_path("out"), &want, "out while throttled");
    wait_hooks(&srv, "/hook", dl(30), "five onItemCompleted", |t| {
        t.distinct("onItemCompleted") >= N
    });
    // Logged when the pause began, not once per item let through.
    assert_eq!(
        log_count(&m, "throttled:"),
        1,
        "one \"throttled:\" line; log:\n{}",
        tail(&m.log(), 30)
    );
    burners.stop();
    m.unmount();
}

// ------------------------------------------------- batch run CLI ----

/// An exec webhook that appends `EVENT BUCKET HOOK PATH` (its environment)
/// to `log` and swallows the payload.
fn exec_hook(path: &Path, log: &Path) {
    fs::write(
        path,
        format!(
            "#!/bin/sh\ncat > /dev/null\nprintf '%s %s %s %s\\n' \"$STORGATE_EVENT\" \"$STORGATE_BUCKET\" \"$STORGATE_HOOK\" \"$STORGATE_PATH\" >> '{}'\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn sorted_lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn batch_run_cli_summary_index_exit_codes_and_lock() {
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    let r = root.path();
    for n in ["a", "b", "c"] {
        put(&r.join(format!("ok/{n}.txt")), format!("ok {n}\n"));
    }
    for n in ["x", "y"] {
        put(&r.join(format!("bad/{n}.txt")), format!("bad {n}\n"));
    }
    let hook = r.join("hook.sh");
    let hook_log = r.join("hook.log");
    exec_hook(&hook, &hook_log);
    let hs = hook.to_str().unwrap();
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/ok", "{root}/ok"),
                mount_at("/bad", "{root}/bad"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![
                scan(
                    "/ok",
                    1000,
                    "0 0 1 1 *",
                    "copy",
                    json!({"onItemCompleted": hs, "onChunkExtracted": hs, "onChunkCompleted": url}),
                ),
                scan(
                    "/bad",
                    1000,
                    "0 0 1 1 *",
                    "fail",
                    json!({"onItemAborted": url, "onItemCompleted": url}),
                ),
            ],
            vec![
                workflow("copy", Value::Null, TO_OUT, false),
                workflow(
                    "fail",
                    json!({"exec": ["false"]}),
                    "/out/failed/{{ item.filename }}",
                    false,
                ),
            ],
        )],
        no_throttling(),
    );
    let config = write_config(r, &cfg, "storgate.json");
    let t = dl(120);

    // INDEX 0: the /ok scan only.
    let o = batch_run(&config, &["b", "0"], t);
    assert_eq!(o.status.code(), Some(0), "batch run b 0: {}", show(&o));
    assert_eq!(
        summaries(&o),
        vec![summary("b", 0, "/ok", 3, 3, 0, 0, 1)],
        "{}",
        show(&o)
    );
    let ok_tree: BTreeMap<String, Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|n| (format!("{n}.txt"), format!("ok {n}\n").into_bytes()))
        .collect();
    assert_tree(&r.join("out"), &ok_tree, "out after batch run b 0");
    assert_eq!(
        sorted_lines(&hook_log),
        vec![
            "onBatch b onChunkExtracted /ok",
            "onBatch b onItemCompleted /ok/a.txt",
            "onBatch b onItemCompleted /ok/b.txt",
            "onBatch b onItemCompleted /ok/c.txt",
        ],
        "exec webhooks' environment (STORGATE_EVENT BUCKET HOOK PATH)"
    );
    assert_eq!(payloads(&srv, "/hook", "onChunkCompleted").len(), 1);
    assert!(payloads(&srv, "/hook", "onItemAborted").is_empty());

    // INDEX 1: every item aborts → exit 1.
    let o = batch_run(&config, &["b", "1"], t);
    assert_eq!(o.status.code(), Some(1), "batch run b 1: {}", show(&o));
    assert_eq!(
        summaries(&o),
        vec![summary("b", 1, "/bad", 2, 0, 2, 0, 1)],
        "{}",
        show(&o)
    );
    let aborted = payloads(&srv, "/hook", "onItemAborted");
    let mut paths: Vec<String> = aborted.iter().map(item_path).collect();
    paths.sort();
    assert_eq!(paths, vec!["/bad/x.txt", "/bad/y.txt"]);
    for v in &aborted {
        assert_eq!(v["event"], "onBatch", "{v}");
        assert_eq!(v["workflow"], "fail", "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "onItemAborted carries the error: {v}"
        );
    }
    assert!(payloads(&srv, "/hook", "onItemCompleted").is_empty());
    assert_eq!(count_files(&r.join("bad")), 2, "failed sources stay");
    assert!(!r.join("out/failed").exists(), "nothing written on failure");

    // No INDEX: every enabled scan of the bucket, in order; one aborted → 1.
    let o = batch_run(&config, &["b"], t);
    assert_eq!(o.status.code(), Some(1), "batch run b: {}", show(&o));
    assert_eq!(
        summaries(&o),
        vec![
            summary("b", 0, "/ok", 3, 3, 0, 0, 1),
            summary("b", 1, "/bad", 2, 0, 2, 0, 1),
        ],
        "{}",
        show(&o)
    );

    // Usage errors: exit 2.
    let o = batch_run(&config, &["nosuch"], t);
    assert_eq!(o.status.code(), Some(2), "unknown bucket: {}", show(&o));
    assert!(summaries(&o).is_empty(), "{}", show(&o));
    let o = batch_run(&config, &["b", "7"], t);
    assert_eq!(o.status.code(), Some(2), "unknown index: {}", show(&o));

    // Someone else holds the scan's lock: "already running", exit 1.
    let cursors = r.join("state/cursors");
    fs::create_dir_all(&cursors).unwrap();
    let lock_path: PathBuf = cursors.join("b.0.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    // SAFETY: flock on an open fd.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "taking {}", lock_path.display());
    let before = fs::read_to_string(&hook_log).unwrap_or_default();
    let o = batch_run(&config, &["b", "0"], t);
    assert_eq!(o.status.code(), Some(1), "lock held: {}", show(&o));
    assert!(
        text(&o.stdout).contains("already running") || text(&o.stderr).contains("already running"),
        "says \"already running\": {}",
        show(&o)
    );
    assert_eq!(
        fs::read_to_string(&hook_log).unwrap_or_default(),
        before,
        "nothing ran while the lock was held"
    );
    drop(lock);
    let o = batch_run(&config, &["b", "0"], t);
    assert_eq!(o.status.code(), Some(0), "lock released: {}", show(&o));
    assert_eq!(
        summaries(&o),
        vec![summary("b", 0, "/ok", 3, 3, 0, 0, 1)],
        "{}",
        show(&o)
    );
}

// ------------------------------------------------- names are bytes ----

/// Issue 11 item 2 (SPEC §9.1) for scans: `bad\xff.jpg` and `bad\xfe.jpg`
/// (the same lossy text) are two items with two outputs of the exact names,
/// one chunk each, so the cursor between them names one exact name.
#[test]
fn batch_items_of_the_same_lossy_text_write_two_outputs() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStrExt;
    let srv = HttpServer::start();
    let url = format!("{}/hook", srv.url());
    let root = scratch();
    let r = root.path();
    let ff = OsStr::from_bytes(b"bad\xff.jpg");
    let fe = OsStr::from_bytes(b"bad\xfe.jpg");
    put(&r.join("in/a.jpg"), "a\n");
    put(&r.join("in").join(ff), "ff\n");
    put(&r.join("in").join(fe), "fe\n");
    let cfg = top(
        "{root}/state",
        vec![batch_bucket(
            "b",
            vec![
                mount_at("/in", "{root}/in"),
                hidden_mount_at("/out", "{root}/out"),
            ],
            vec![scan("/in", 1, "0 0 1 1 *", "copy", all_hooks(&url))],
            vec![workflow(
                "copy",
                Value::Null,
                "/out/{{ item.filename }}",
                false,
            )],
        )],
        no_throttling(),
    );
    let config = write_config(r, &cfg, "storgate.json");
    let o = batch_run(&config, &["b", "0"], dl(120));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let s = summaries(&o);
    assert_eq!(s.len(), 1, "{}", show(&o));
    assert_eq!(
        (s[0].matched, s[0].completed, s[0].aborted),
        (3, 3, 0),
        "{}",
        show(&o)
    );
    let out: BTreeSet<OsString> = fs::read_dir(r.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let want: BTreeSet<OsString> = [OsStr::new("a.jpg"), ff, fe]
        .iter()
        .map(|n| n.to_os_string())
        .collect();
    assert_eq!(out, want, "three outputs, by exact name");
    assert_eq!(fs::read(r.join("out").join(ff)).unwrap(), b"ff\n");
    assert_eq!(fs::read(r.join("out").join(fe)).unwrap(), b"fe\n");
    // Webhooks carry the lossless text, once per item.
    let paths: BTreeSet<String> = payloads(&srv, "/hook", "onItemCompleted")
        .iter()
        .map(item_path)
        .collect();
    let want: BTreeSet<String> = [
        "/in/a.jpg",
        "/in/bad\u{10FFFE}.jpg",
        "/in/bad\u{10FFFF}.jpg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(paths, want);
}
