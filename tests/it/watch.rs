//! Change detection (SPEC §4.5, issue 13): changes made in an origin behind
//! storgate's back fire `onPut`/`onDelete` (post timing), with real kernel
//! mounts, a real FUSE share (`bindfs`, TESTING.md layer 7) and moto:
//! - a share another host writes (a `bindfs` view of a directory the test
//!   writes directly, so no inotify event reaches the origin): `auto` polls
//!   it; 500 files fire within `intervalSeconds` + 2 s of the last write,
//!   each once; a file still growing fires once, after it stopped, with its
//!   final size; deleted files fire `onDelete`;
//! - a directory tree moved into a notify-watched origin fires each file once;
//! - an inotify queue overflow (a queue of 64 events, the daemon stopped
//!   while 2,000 files arrive) is caught up by a reconcile: every file fires;
//! - S3: objects put, overwritten and deleted straight in the bucket fire;
//!   a file written through the mount fires once, never again from the poller;
//! - what changed while the daemon was down fires after the restart, for a
//!   polled and for a notify-watched origin;
//! - files present before the very first start are the baseline (nothing
//!   fires), unless `watch.initial: "fire"`.
//!
//! Every item is reported by an `onItemCompleted`/`onItemAborted` webhook to
//! the loopback test server; the workflow has no task, so the webhook
//! payload (event, item path and size) is the whole observable effect.
//! The poller's DEBUG line "poll round" (target `storgate::watch`, fields
//! `origin`, `entries`, `fired`, `pending`, `elapsed_ms`) is how a test
//! knows that a round has run: it waits for the baseline round before it
//! writes, and lets further rounds pass before it counts, since a duplicate
//! cannot be waited for.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::bindfs::Bindfs;
use common::http::{HttpServer, Request};
use common::s3::{S3Server, client, rt};
use common::*;
use serde_json::{Value, json};

/// Generous deadline for anything the daemon does asynchronously (nominal).
const DEADLINE: Duration = Duration::from_secs(60);
/// Daemon logging: the poll rounds at DEBUG, everything else at INFO.
const LOG: (&str, &str) = ("STORGATE_LOG", "info,storgate::watch=debug");

/// An `intervalSeconds` for notify origins far beyond every deadline: the
/// periodic reconcile never runs during the test.
const NO_PERIODIC_RECONCILE: u64 = 3600;
/// How old (seconds) a test makes the files that were written long before
/// the daemon looks (while it was down, before its first start, during an
/// event flood): older than every `intervalSeconds` here, so they have
/// settled and a reconcile fires them at once.
const SETTLED_AGE: i64 = 2 * NO_PERIODIC_RECONCILE as i64;

// ------------------------------------------------------------ helpers ----

/// A bucket `w` with `mounts`, whose onPut and onDelete run the task-less
/// workflow `count` and report every item to `{srv}/hook`.
fn watch_config(state: &Path, srv: &HttpServer, mounts: Vec<Value>) -> Value {
    watch_config_with(state, srv, mounts, None)
}

/// `watch_config` with an `aws_s3` section.
fn watch_config_with(
    state: &Path,
    srv: &HttpServer,
    mounts: Vec<Value>,
    aws_s3: Option<Value>,
) -> Value {
    let hook = format!("{}/hook", srv.url());
    let hooks = json!({"onItemCompleted": hook, "onItemAborted": hook});
    let rule = json!({"enable": true, "trigger": {"workflow": "count", "timing": "post"},
        "webhook": hooks});
    let mut b = bucket("w", mounts);
    b["events"] = json!({"onPut": rule, "onDelete": rule});
    b["workflows"] = json!([{"name": "count", "tasks": []}]);
    let mut cfg = json!({
        "stateDir": state.to_str().expect("UTF-8 scratch path"),
        "throttling": {"enable": false},
        "buckets": [b],
    });
    if let Some(s3) = aws_s3 {
        cfg["aws_s3"] = s3;
    }
    cfg
}

/// A mount of `origin` at `mount_point` with this `watch` key.
fn watched(mount_point: &str, origin: &Path, watch: Value) -> Value {
    json!({"mountPoint": mount_point, "originPath": origin.to_str().expect("UTF-8 path"),
        "watch": watch})
}

/// Starts the daemon for `cfg` (its own scratch: mount point, log) with the
/// poll rounds logged.
fn start(cfg: &Value) -> Mount {
    Mount::start_in_env(scratch(), cfg, &["--bucket", "w"], &[LOG])
}

/// One finished item as its webhook reported it.
#[derive(Debug, Clone)]
struct Fired {
    event: String,
    path: String,
    size: Option<u64>,
    hook: String,
}

fn parse(r: &Request) -> Option<Fired> {
    if !r.path.starts_with("/hook") {
        return None;
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    Some(Fired {
        event: v["event"].as_str()?.to_string(),
        path: v["item"]["path"].as_str()?.to_string(),
        size: v["item"]["size"].as_u64(),
        hook: v["hook"].as_str().unwrap_or("").to_string(),
    })
}

/// Every item reported so far, in arrival order.
fn fired(srv: &HttpServer) -> Vec<Fired> {
    srv.requests().iter().filter_map(parse).collect()
}

/// How often each path was reported for `event`.
fn counts(srv: &HttpServer, event: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in fired(srv).into_iter().filter(|f| f.event == event) {
        *m.entry(f.path).or_insert(0) += 1;
    }
    m
}

/// The reports of `event` for `path`, in arrival order.
fn reports(srv: &HttpServer, event: &str, path: &str) -> Vec<Fired> {
    fired(srv)
        .into_iter()
        .filter(|f| f.event == event && f.path == path)
        .collect()
}

/// A short account of what fired, for failure messages.
fn summary(srv: &HttpServer) -> String {
    let all = fired(srv);
    let mut s = format!("{} items reported", all.len());
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &all {
        *by.entry((f.event.clone(), f.hook.clone())).or_insert(0) += 1;
    }
    for ((e, h), n) in by {
        s.push_str(&format!("; {e}/{h}: {n}"));
    }
    for f in all.iter().rev().take(10) {
        s.push_str(&format!(
            "\n  last: {} {} size={:?}",
            f.event, f.path, f.size
        ));
    }
    s
}

/// Waits up to `deadline` (nominal) until `event` was reported for every
/// path of `want`; panics naming the missing ones and how long it waited.
#[track_caller]
fn wait_fired(
    srv: &HttpServer,
    event: &str,
    want: &BTreeSet<String>,
    deadline: Duration,
    what: &str,
) {
    let start = Instant::now();
    let mut got: BTreeSet<String> = BTreeSet::new();
    let mut upto = 0;
    let ok = srv.wait_until(deadline, |reqs| {
        for r in &reqs[upto..] {
            if let Some(f) = parse(r)
                && f.event == event
            {
                got.insert(f.path);
            }
        }
        upto = reqs.len();
        want.iter().all(|p| got.contains(p))
    });
    if !ok {
        let got = counts(srv, event);
        let missing: Vec<&String> = want.iter().filter(|p| !got.contains_key(*p)).collect();
        panic!(
            "{what}: after {:?} (deadline {deadline:?} × time factor {}), {} of {} {event} \
             missing, e.g. {:?}\n{}",
            start.elapsed(),
            time_factor(),
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)],
            summary(srv)
        );
    }
}

/// Asserts that `event` was reported exactly once for each path of `want`
/// and for nothing else.
#[track_caller]
fn assert_exactly_once(srv: &HttpServer, event: &str, want: &BTreeSet<String>, what: &str) {
    let got = counts(srv, event);
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&String> = got.keys().filter(|p| !want.contains(*p)).collect();
    let missing: Vec<&String> = want.iter().filter(|p| !got.contains_key(*p)).collect();
    assert!(
        twice.is_empty() && extra.is_empty() && missing.is_empty(),
        "{what}: expected {event} exactly once for each of {} paths; {} reported more than once \
         (e.g. {:?}), {} unexpected (e.g. {:?}), {} missing (e.g. {:?})\n{}",
        want.len(),
        twice.len(),
        &twice[..twice.len().min(10)],
        extra.len(),
        &extra[..extra.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)],
        summary(srv)
    );
}

/// Lets `nominal` (scaled) pass before an exact count, for an origin that
/// has no poll rounds to count: a duplicate cannot be waited for.
fn quiet_period(nominal: Duration) {
    thread::sleep(scaled(nominal));
}

/// The "poll round" lines of the daemon's log whose text names `origin`.
fn rounds(m: &Mount, origin: &str) -> Vec<String> {
    m.log()
        .lines()
        .filter(|l| l.contains("poll round") && l.contains(origin))
        .map(str::to_string)
        .collect()
}

/// The numeric field `name=N` of a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key.as_str()))
        .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
}

/// Waits until the log shows at least `n` poll rounds of `origin`.
#[track_caller]
fn wait_rounds(m: &Mount, origin: &str, n: usize, what: &str) {
    poll(
        DEADLINE,
        Duration::from_millis(50),
        &format!("{what}: {n} poll rounds of {origin} logged"),
        || rounds(m, origin).len() >= n,
        || {
            format!(
                "{} poll rounds so far (log lines containing \"poll round\": {})",
                rounds(m, origin).len(),
                m.log().lines().filter(|l| l.contains("poll round")).count()
            )
        },
    );
}

/// Waits until `more` further poll rounds of `origin` were logged.
#[track_caller]
fn let_rounds_pass(m: &Mount, origin: &str, more: usize, what: &str) {
    let now = rounds(m, origin).len();
    wait_rounds(m, origin, now + more, what);
}

/// Unix seconds now.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn content(i: usize) -> Vec<u8> {
    format!("remote file {i}\n").repeat(i % 5 + 1).into_bytes()
}

fn set(paths: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    paths.into_iter().collect()
}

/// The origin's text as it appears in the poll round lines: its path.
fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------- a share another host writes ----

#[test]
fn auto_polls_a_fuse_share_written_behind_its_back() {
    const N: usize = 500;
    const INTERVAL: u64 = 2;
    let srv = HttpServer::start();
    let outer = scratch();
    let backing = outer.path().join("share-backing");
    let view = outer.path().join("share-view");
    // Declared before the daemon: dropped (unmounted) after it.
    let share = Bindfs::mount(&backing, &view);
    let cfg = watch_config(
        &outer.path().join("state"),
        &srv,
        vec![watched(
            "/nfs",
            &view,
            json!({"mode": "auto", "intervalSeconds": INTERVAL}),
        )],
    );
    let m = start(&cfg);
    let origin = s(&view);
    // Only a poller can see these writes: the FUSE view sends no inotify
    // event for them. Nothing may be written before the baseline round.
    wait_rounds(&m, &origin, 1, "auto chose poll for the FUSE share");

    // 500 files straight into the backing directory ("the other host").
    for i in 0..N {
        let p = backing.join(format!("f{i:03}.txt"));
        fs::write(&p, content(i)).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    let puts = set((0..N).map(|i| format!("/nfs/f{i:03}.txt")));
    wait_fired(
        &srv,
        "onPut",
        &puts,
        Duration::from_secs(INTERVAL + 2),
        "500 files written into the share fire within intervalSeconds + 2 s of the last write",
    );
    let_rounds_pass(&m, &origin, 2, "rounds after the 500 files");
    assert_exactly_once(&srv, "onPut", &puts, "the 500 files");
    for i in 0..N {
        let path = format!("/nfs/f{i:03}.txt");
        let r = reports(&srv, "onPut", &path);
        assert_eq!(
            r[0].size,
            Some(content(i).len() as u64),
            "{path}: item.size of the onPut"
        );
    }

    // A file appended to every ~1 s (an FTP upload in progress) for about
    // three rounds: it fires once, after it stopped growing.
    let grow = backing.join("upload.bin");
    let grow_path = "/nfs/upload.bin".to_string();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&grow)
        .unwrap_or_else(|e| panic!("open {}: {e}", grow.display()));
    let rounds_before = rounds(&m, &origin).len();
    let mut size = 0u64;
    let mut appends = 0;
    let mut last_append = Instant::now();
    loop {
        let chunk = vec![b'a' + (appends % 26) as u8; 4096 + appends * 100];
        f.write_all(&chunk).expect("append to the growing file");
        size += chunk.len() as u64;
        appends += 1;
        let gap = last_append.elapsed();
        last_append = Instant::now();
        assert!(
            appends == 1 || gap < Duration::from_secs(INTERVAL),
            "test premise: appends {gap:?} apart, less than intervalSeconds (a busy machine?)"
        );
        let early = reports(&srv, "onPut", &grow_path);
        assert!(
            early.is_empty(),
            "{grow_path} fired while still growing (after {appends} appends, {size} bytes): {early:?}"
        );
        if appends >= 3 && rounds(&m, &origin).len() >= rounds_before + 3 {
            break;
        }
        thread::sleep(Duration::from_secs(1));
    }
    drop(f);
    let final_size = fs::metadata(&grow).expect("stat the grown file").len();
    assert_eq!(final_size, size);
    wait_fired(
        &srv,
        "onPut",
        &set([grow_path.clone()]),
        Duration::from_secs(2 * INTERVAL + 2),
        "the grown file fires once it stopped growing",
    );
    let_rounds_pass(&m, &origin, 2, "rounds after the grown file fired");
    let r = reports(&srv, "onPut", &grow_path);
    assert_eq!(
        r.len(),
        1,
        "{grow_path} fired exactly once ({appends} appends): {r:?}"
    );
    assert_eq!(
        r[0].size,
        Some(final_size),
        "{grow_path}: item.size is the final size"
    );

    // Deleting files in the backing directory fires onDelete for each.
    let gone = set((0..100).map(|i| format!("/nfs/f{i:03}.txt")));
    for i in 0..100 {
        fs::remove_file(backing.join(format!("f{i:03}.txt"))).expect("remove from the share");
    }
    wait_fired(
        &srv,
        "onDelete",
        &gone,
        DEADLINE,
        "files deleted in the share",
    );
    let_rounds_pass(&m, &origin, 2, "rounds after the deletes");
    assert_exactly_once(&srv, "onDelete", &gone, "the 100 deleted files");
    let mut all_puts = puts.clone();
    all_puts.insert(grow_path);
    assert_exactly_once(&srv, "onPut", &all_puts, "no onPut again after the deletes");
    drop(m);
    drop(share);
}

// ------------------------------------------ a directory moved in (notify) ----

#[test]
fn a_directory_moved_into_a_notify_origin_fires_every_file_inside() {
    let srv = HttpServer::start();
    let outer = scratch();
    let origin = outer.path().join("notify-origin");
    let prep = outer.path().join("prepared");
    // 20 subdirectories of 10 files each, prepared on the same file system
    // outside the origin, so that the move is one rename(2).
    let tree = prep.join("tree");
    for d in 0..20 {
        for f in 0..10 {
            put(&tree.join(format!("d{d:02}/f{f}.dat")), content(d * 10 + f));
        }
    }
    fs::create_dir_all(&origin).unwrap();
    // The walked files fire once settled (mtime 2 s old); the periodic
    // reconcile (every 10 intervals, at least 300 s) comes far later: only
    // the walk of the moved-in tree can fire them within the deadline.
    let cfg = watch_config(
        &outer.path().join("state"),
        &srv,
        vec![watched(
            "/in",
            &origin,
            json!({"mode": "notify", "intervalSeconds": 2}),
        )],
    );
    let m = start(&cfg);
    // The reconcile at start is over (it would find the tree as well), and
    // the watcher is live once a file written into the origin fires.
    wait_rounds(&m, &s(&origin), 1, "the reconcile at start");
    put(&origin.join("ready.txt"), b"ready\n");
    wait_fired(
        &srv,
        "onPut",
        &set(["/in/ready.txt".to_string()]),
        DEADLINE,
        "a file written into the origin",
    );

    fs::rename(&tree, origin.join("tree")).expect("mv the tree into the origin");
    let mut want = set((0..200).map(|i| format!("/in/tree/d{:02}/f{}.dat", i / 10, i % 10)));
    wait_fired(
        &srv,
        "onPut",
        &want,
        DEADLINE,
        "every file of the moved-in tree",
    );
    quiet_period(Duration::from_secs(2));
    want.insert("/in/ready.txt".to_string());
    assert_exactly_once(&srv, "onPut", &want, "200 files moved in, one onPut each");
    let sized = reports(&srv, "onPut", "/in/tree/d07/f3.dat");
    assert_eq!(sized[0].size, Some(content(73).len() as u64), "item.size");
    assert!(
        counts(&srv, "onDelete").is_empty(),
        "nothing was deleted: {}",
        summary(&srv)
    );
    drop(m);
}

// ------------------------------------------------- inotify queue overflow ----

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

/// A sysctl set for a while; the old value is written back on drop.
struct Sysctl {
    path: &'static str,
    old: Option<String>,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {path}: {e}"));
        Sysctl {
            path,
            old: Some(old.trim().to_string()),
        }
    }

    /// Writes the old value back (once).
    fn restore(&mut self) -> Result<(), String> {
        match self.old.take() {
            Some(old) => fs::write(self.path, &old)
                .map_err(|e| format!("cannot restore {} to {old}: {e}", self.path)),
            None => Ok(()),
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("{e}");
        }
    }
}

/// SIGCONT for a daemon stopped with SIGSTOP, also when the test panics.
struct Continue<'a>(&'a Mount);

impl Drop for Continue<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

#[test]
fn an_inotify_queue_overflow_is_caught_up_by_a_reconcile() {
    const N: usize = 2000;
    // The kernel reads max_queued_events when an inotify instance is
    // created, for every process: no other test of this binary may start a
    // daemon while it is low. Alone from here until it is restored.
    let alone = cpu::exclusive();
    let srv = HttpServer::start();
    let outer = scratch();
    let origin = outer.path().join("notify-origin");
    fs::create_dir_all(origin.join("sub")).unwrap();
    // No periodic reconcile within the deadline: only the one the overflow
    // triggers can find what the lost events announced.
    let cfg = watch_config(
        &outer.path().join("state"),
        &srv,
        vec![watched(
            "/in",
            &origin,
            json!({"mode": "notify", "intervalSeconds": NO_PERIODIC_RECONCILE}),
        )],
    );
    let mut low = Sysctl::set(MAX_QUEUED, "64");
    let m = start(&cfg);
    if let Err(e) = low.restore() {
        panic!("{e}");
    }
    drop(alone);
    // The reconcile at start is over (it would find the files as well).
    wait_rounds(&m, &s(&origin), 1, "the reconcile at start");

    // Stopped, the daemon reads nothing: the 64-event queue overflows for
    // sure (each file is at least a create, a modify and a close).
    m.signal(libc::SIGSTOP);
    let cont = Continue(&m);
    let old = now_secs() - SETTLED_AGE;
    for i in 0..N {
        let p = if i % 2 == 0 {
            origin.join(format!("f{i:04}"))
        } else {
            origin.join(format!("sub/f{i:04}"))
        };
        fs::write(&p, content(i)).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        // Settled already (as after a long flood), so the reconcile fires
        // them at once rather than `intervalSeconds` later.
        set_times(&p, old).unwrap_or_else(|e| panic!("backdate {}: {e}", p.display()));
    }
    drop(cont);
    poll(
        DEADLINE,
        Duration::from_millis(50),
        "test premise: the daemon reports the inotify queue overflow",
        || m.log().to_lowercase().contains("overflow"),
        || "no log line mentions an overflow".to_string(),
    );

    let want = set((0..N).map(|i| {
        if i % 2 == 0 {
            format!("/in/f{i:04}")
        } else {
            format!("/in/sub/f{i:04}")
        }
    }));
    wait_fired(
        &srv,
        "onPut",
        &want,
        DEADLINE,
        "every file written while the inotify queue overflowed",
    );
    let got = counts(&srv, "onPut");
    let extra: Vec<&String> = got.keys().filter(|p| !want.contains(*p)).collect();
    assert!(extra.is_empty(), "onPut for paths never written: {extra:?}");
    assert!(
        counts(&srv, "onDelete").is_empty(),
        "nothing was deleted: {}",
        summary(&srv)
    );
    drop(m);
}

// ---------------------------------------------------------------- S3 ----

#[test]
fn s3_objects_put_straight_into_the_bucket_fire() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket("watch");
    let c = client(s3, &bucket);
    let srv = HttpServer::start();
    let outer = scratch();
    let mut ep = s3.endpoint_config(&bucket);
    ep["metadataTtl"] = json!(1);
    let cfg = watch_config_with(
        &outer.path().join("state"),
        &srv,
        vec![
            json!({"mountPoint": null, "originPath": format!("{bucket}@aws_s3"),
            "watch": {"mode": "auto", "intervalSeconds": 1}}),
        ],
        Some(json!([ep])),
    );
    let m = start(&cfg);
    let origin = bucket.clone();
    wait_rounds(&m, &origin, 1, "auto polls an S3 origin");
    let put_object = |key: &str, body: &[u8]| {
        rt().block_on(c.put_bytes(key, body.to_vec(), &std::collections::HashMap::new()))
            .unwrap_or_else(|e| panic!("put {key} straight into the bucket: {e}"));
    };

    put_object("direct/a.txt", b"first version\n");
    put_object("b.txt", b"bee\n");
    let a = "/direct/a.txt".to_string();
    wait_fired(
        &srv,
        "onPut",
        &set([a.clone(), "/b.txt".to_string()]),
        DEADLINE,
        "objects put straight into the bucket",
    );
    assert_eq!(reports(&srv, "onPut", &a)[0].size, Some(14), "item.size");

    // Overwritten: fires again, with the new size.
    put_object("direct/a.txt", b"the second, longer version\n");
    poll(
        DEADLINE,
        Duration::from_millis(50),
        "the overwritten object fires again",
        || reports(&srv, "onPut", &a).len() >= 2,
        || summary(&srv),
    );
    assert_eq!(
        reports(&srv, "onPut", &a)[1].size,
        Some(27),
        "item.size of the second onPut"
    );

    // Deleted: onDelete.
    rt().block_on(c.delete("b.txt"))
        .unwrap_or_else(|e| panic!("delete b.txt straight in the bucket: {e}"));
    wait_fired(
        &srv,
        "onDelete",
        &set(["/b.txt".to_string()]),
        DEADLINE,
        "an object deleted straight in the bucket",
    );

    // Through the mount: the mount's own onPut, and never again from the
    // poller, which lists the new object at the next rounds.
    fs::write(m.at("via-mount.txt"), b"written through storgate\n").expect("write via mount");
    let v = "/via-mount.txt".to_string();
    wait_fired(
        &srv,
        "onPut",
        &set([v.clone()]),
        DEADLINE,
        "a file written through the mount",
    );
    // Four lines: the round under way now may have listed before the
    // upload; three full rounds follow it.
    let_rounds_pass(&m, &origin, 4, "rounds after the write through the mount");
    let r = reports(&srv, "onPut", &v);
    assert_eq!(
        r.len(),
        1,
        "written through the mount: exactly one onPut, also after 3 poll rounds: {r:?}"
    );
    let puts = counts(&srv, "onPut");
    assert_eq!(
        puts,
        BTreeMap::from([(a.clone(), 2), ("/b.txt".to_string(), 1), (v.clone(), 1)]),
        "onPut per path\n{}",
        summary(&srv)
    );
    assert_eq!(
        counts(&srv, "onDelete"),
        BTreeMap::from([("/b.txt".to_string(), 1)]),
        "onDelete per path"
    );
    drop(m);
}

// ----------------------------------------------------------- restarts ----

#[test]
fn changes_made_while_the_daemon_was_down_fire_after_the_restart() {
    const INTERVAL: u64 = 1;
    let srv = HttpServer::start();
    let outer = scratch();
    let polled = outer.path().join("poll-origin");
    let notified = outer.path().join("notify-origin");
    for o in [&polled, &notified] {
        // In the baseline of the very first start.
        put(&o.join("base.txt"), b"there from the start\n");
    }
    let cfg = watch_config(
        &outer.path().join("state"),
        &srv,
        vec![
            watched(
                "/p",
                &polled,
                json!({"mode": "poll", "intervalSeconds": INTERVAL}),
            ),
            // Only the reconcile at start can find what changed while down.
            watched(
                "/n",
                &notified,
                json!({"mode": "notify", "intervalSeconds": NO_PERIODIC_RECONCILE}),
            ),
        ],
    );
    let (po, no) = (s(&polled), s(&notified));

    let mut m1 = start(&cfg);
    wait_rounds(&m1, &po, 1, "the baseline round of the polled origin");
    wait_rounds(&m1, &no, 1, "the reconcile at start of the notify origin");
    put(&polled.join("before.txt"), b"seen while running\n");
    put(&notified.join("before.txt"), b"seen while running\n");
    let before = set(["/p/before.txt".to_string(), "/n/before.txt".to_string()]);
    wait_fired(
        &srv,
        "onPut",
        &before,
        DEADLINE,
        "files written while the daemon runs",
    );
    // One round more: the poller's snapshot has the fired file.
    let_rounds_pass(&m1, &po, 2, "rounds after before.txt fired");
    let st = m1.stop();
    assert!(
        st.status.is_some_and(|s| s.success()),
        "the daemon stopped cleanly: {st:?}\n{}",
        m1.log()
    );
    assert!(!st.mounted_after_exit, "the daemon unmounted on SIGTERM");

    // While it is down, in both origins: new files (written a while ago, so
    // they are not still growing at the restart) and two deletions.
    let old = now_secs() - SETTLED_AGE;
    for o in [&polled, &notified] {
        for i in 0..10 {
            let p = o.join(format!("down-f{i}.txt"));
            put(&p, content(i));
            set_times(&p, old).expect("backdate a file written while down");
        }
        fs::remove_file(o.join("base.txt")).expect("delete while down");
        fs::remove_file(o.join("before.txt")).expect("delete while down");
    }

    let m2 = start(&cfg);
    let new = set(["p", "n"]
        .iter()
        .flat_map(|o| (0..10).map(move |i| format!("/{o}/down-f{i}.txt"))));
    wait_fired(
        &srv,
        "onPut",
        &new,
        DEADLINE,
        "files written while the daemon was down",
    );
    let deleted = set([
        "/p/base.txt".to_string(),
        "/n/base.txt".to_string(),
        "/p/before.txt".to_string(),
    ]);
    wait_fired(
        &srv,
        "onDelete",
        &deleted,
        DEADLINE,
        "files deleted while the daemon was down",
    );
    // The round's line is logged once it is complete: its events may be
    // reported before that.
    wait_rounds(&m2, &po, 1, "the first poll round after the restart");
    let first = rounds(&m2, &po)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no poll round of {po} logged after the restart"));
    assert_eq!(
        field(&first, "fired"),
        Some(12),
        "the first poll round after the restart fires the 10 new files and the 2 deletions: {first}"
    );
    let_rounds_pass(&m2, &po, 2, "rounds after the restart");
    quiet_period(Duration::from_secs(1));
    let mut all = new.clone();
    all.extend(before.iter().cloned());
    assert_exactly_once(
        &srv,
        "onPut",
        &all,
        "before.txt fired once before the stop, the new files once after the restart",
    );
    // A file that fired through inotify, then went while the daemon was
    // down: the notify origin's snapshot must know it.
    wait_fired(
        &srv,
        "onDelete",
        &set(["/n/before.txt".to_string()]),
        DEADLINE,
        "a notify origin's file that fired while running, deleted while down",
    );
    let mut gone = deleted.clone();
    gone.insert("/n/before.txt".to_string());
    assert_exactly_once(&srv, "onDelete", &gone, "the deletions while down");
    drop(m2);
}

// ----------------------------------------------------------- baseline ----

/// What `first_start_with_existing_files` started and found. The daemon
/// is the first field: it drops (stops) before the scratch dir goes.
struct FirstStart {
    _daemon: Mount,
    srv: HttpServer,
    _outer: tempfile::TempDir,
    /// Bucket paths of the files there before the start.
    existing: BTreeSet<String>,
    /// Bucket paths of the files written after the first rounds (fired).
    markers: BTreeSet<String>,
}

/// Two origins, one polled and one watched by inotify, each holding files
/// from before the daemon's very first start (written long ago: settled),
/// with `watch.initial` set to `initial`. Markers written after each
/// origin's first round have fired, and further rounds passed, when it
/// returns.
fn first_start_with_existing_files(initial: &str) -> FirstStart {
    let srv = HttpServer::start();
    let outer = scratch();
    let polled = outer.path().join("poll-origin");
    let notified = outer.path().join("notify-origin");
    let old = now_secs() - SETTLED_AGE;
    for o in [&polled, &notified] {
        for i in 0..5 {
            let p = o.join(format!("old/f{i}.txt"));
            put(&p, content(i));
            set_times(&p, old).expect("backdate an existing file");
        }
        put(&o.join("top.txt"), b"top\n");
        set_times(&o.join("top.txt"), old).expect("backdate an existing file");
    }
    let cfg = watch_config(
        &outer.path().join("state"),
        &srv,
        vec![
            watched(
                "/p",
                &polled,
                json!({"mode": "poll", "intervalSeconds": 1, "initial": initial}),
            ),
            watched(
                "/n",
                &notified,
                json!({"mode": "notify", "intervalSeconds": NO_PERIODIC_RECONCILE,
                    "initial": initial}),
            ),
        ],
    );
    let m = start(&cfg);
    let origin = s(&polled);
    wait_rounds(&m, &origin, 1, "the first poll round");
    wait_rounds(
        &m,
        &s(&notified),
        1,
        "the notify origin's reconcile at start",
    );
    put(&polled.join("marker.txt"), b"after the baseline\n");
    put(&notified.join("marker.txt"), b"after the baseline\n");
    let markers = set(["/p/marker.txt".to_string(), "/n/marker.txt".to_string()]);
    wait_fired(
        &srv,
        "onPut",
        &markers,
        DEADLINE,
        "files written after the first start",
    );
    let_rounds_pass(&m, &origin, 2, "rounds after the markers");
    quiet_period(Duration::from_secs(1));
    let existing = set(["p", "n"].iter().flat_map(|o| {
        (0..5)
            .map(move |i| format!("/{o}/old/f{i}.txt"))
            .chain([format!("/{o}/top.txt")])
    }));
    FirstStart {
        _daemon: m,
        srv,
        _outer: outer,
        existing,
        markers,
    }
}

#[test]
fn files_present_before_the_first_start_are_the_baseline() {
    let t = first_start_with_existing_files("baseline");
    let srv = &t.srv;
    assert_exactly_once(
        srv,
        "onPut",
        &t.markers,
        "only the files written after the start fire (the rest is the baseline)",
    );
    assert!(counts(srv, "onDelete").is_empty(), "{}", summary(srv));
    drop(t);
}

#[test]
fn initial_fire_fires_the_files_present_before_the_first_start() {
    let t = first_start_with_existing_files("fire");
    let srv = &t.srv;
    let mut want = t.existing.clone();
    want.extend(t.markers.iter().cloned());
    wait_fired(
        srv,
        "onPut",
        &t.existing,
        DEADLINE,
        "initial: fire fires the existing files",
    );
    quiet_period(Duration::from_secs(1));
    assert_exactly_once(
        srv,
        "onPut",
        &want,
        "every existing file once, and the markers",
    );
    let sized = reports(srv, "onPut", "/p/old/f3.txt");
    assert_eq!(sized[0].size, Some(content(3).len() as u64), "item.size");
    assert!(counts(srv, "onDelete").is_empty(), "{}", summary(srv));
    drop(t);
}
