//! Change detection (SPEC §4.5) tried as a hostile client would (§9.1): the
//! daemon runs as root, the client as `nobody`, through an `allow_other`
//! mount and straight in the origin (an FTP user of the share).
//! - names with newline, tab, `%`, space and invalid UTF-8 fire with their
//!   exact bytes, and the poller's snapshot round-trips them (a key that
//!   did not would look deleted and new again, and fire every round);
//! - the snapshots under `stateDir/watch` are 0600 in a 0700 directory;
//! - directories nested 400 deep (deeper than the walk descends) neither
//!   crash nor stall detection: later files still fire;
//! - a symlink to a directory outside the origin is never walked: the files
//!   outside never fire.
//!
//! Every bucket copies `/in/**` to the hidden, unwatched `/out`, so a fired
//! onPut shows as a file in the `out` origin with the same name bytes.
use crate::common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

/// `python3 -c script args…` as `nobody` (clean environment); asserts exit 0.
#[track_caller]
fn nobody_py(script: &str, args: &[&Path]) {
    let mut c = as_nobody("/usr/bin/python3");
    c.arg("-c").arg(script).args(args);
    let o = run_timeout(&mut c, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "python3 as nobody failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A daemon on bucket `b`: `/in` (origin `in/`, owned by `nobody`, watched
/// as `watch` says) and the hidden, unwatched `/out`; every onPut of `/in`
/// copies the item to `/out`.
fn start(watch: Value) -> Mount {
    let root = scratch();
    let r = root.path().to_path_buf();
    fs::set_permissions(&r, fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    for d in ["in", "out", "outside"] {
        fs::create_dir(r.join(d)).expect("mkdir");
    }
    std::os::unix::fs::chown(r.join("in"), Some(NOBODY), Some(NOBODY)).expect("chown in");
    let mut b = bucket(
        "b",
        vec![
            json!({"mountPoint": "/in", "originPath": "{root}/in", "watch": watch}),
            json!({"mountPoint": "/out", "originPath": "{root}/out", "expose": false,
                   "watch": {"mode": "off"}}),
        ],
    );
    b["events"] = json!({"onPut": {
        "enable": true,
        "trigger": {"workflow": "cp", "timing": "post"},
        "webhook": {},
    }});
    b["workflows"] = json!([{"name": "cp", "tasks": [{"savePath": "/out{{ item.path }}"}]}]);
    Mount::start_in(
        root,
        &config(vec![b]),
        &["--bucket", "b", "-o", "allow_other"],
    )
}

/// The snapshot files of mount 0 (`/in`) under `stateDir/watch`.
fn snapshots(m: &Mount) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(m.scratch_path("state/watch")) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.as_bytes()).unwrap_or_default();
            n.starts_with(b"b.0.") && n.ends_with(b".snap")
        })
        .collect()
}

#[track_caller]
fn wait_snapshot(m: &Mount) -> PathBuf {
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "the baseline snapshot of /in",
        || !snapshots(m).is_empty(),
        || m.log(),
    );
    snapshots(m).remove(0)
}

/// Waits for the copy of `/in/<name>` in the `out` origin.
#[track_caller]
fn wait_fired(m: &Mount, name: &[u8]) {
    let out = m
        .scratch_path("out/in")
        .join(std::ffi::OsStr::from_bytes(name));
    poll(
        DEADLINE,
        Duration::from_millis(100),
        &format!("onPut of /in/{}", String::from_utf8_lossy(name)),
        || out.exists(),
        || m.log(),
    );
}

/// Writes each `(name, body)` straight into the origin directory `dir`, as
/// `nobody` (names as bytes, given in hex).
fn nobody_writes(dir: &Path, files: &[&[u8]]) {
    let hex: Vec<String> = files
        .iter()
        .map(|n| n.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args: Vec<PathBuf> = vec![dir.to_path_buf()];
    args.extend(hex.iter().map(PathBuf::from));
    let refs: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    nobody_py(
        r#"
import os, sys
d = os.fsencode(sys.argv[1])
for h in sys.argv[2:]:
    n = bytes.fromhex(h)
    with open(os.path.join(d, n), "wb") as f:
        f.write(b"body of " + n)
"#,
        &refs,
    );
}

#[test]
fn hostile_names_fire_exactly_and_round_trip_the_snapshot() {
    let m = start(json!({"mode": "poll", "intervalSeconds": 1}));
    let snap = wait_snapshot(&m);
    let names: [&[u8]; 5] = [b"nl\nx", b"tab\tx", b"bad\xff\xfe", b"pct%41", b"sp ace"];
    nobody_writes(&m.scratch_path("in"), &names);
    for n in names {
        wait_fired(&m, n);
        let out = m
            .scratch_path("out/in")
            .join(std::ffi::OsStr::from_bytes(n));
        let mut want = b"body of ".to_vec();
        want.extend_from_slice(n);
        assert_eq!(fs::read(&out).expect("read copy"), want, "copy of {n:?}");
    }
    // Each name is one escaped line of the snapshot.
    let text = fs::read(&snap).expect("read snapshot");
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1 + names.len(),
        "header + one line per file: {text:?}"
    );
    for key in [
        "nl%0Ax\t",
        "tab%09x\t",
        "bad%FF%FE\t",
        "pct%2541\t",
        "sp%20ace\t",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(key.as_bytes())),
            "snapshot line for {key:?}: {text:?}"
        );
    }
    // Every round reads the previous snapshot back: a key it did not read
    // back exactly would vanish and reappear, firing again.
    for n in names {
        fs::remove_file(
            m.scratch_path("out/in")
                .join(std::ffi::OsStr::from_bytes(n)),
        )
        .expect("rm copy");
    }
    nobody_writes(&m.scratch_path("in"), &[b"later"]);
    wait_fired(&m, b"later");
    std::thread::sleep(scaled(Duration::from_secs(2)));
    let again: Vec<_> = names
        .iter()
        .filter(|n| {
            m.scratch_path("out/in")
                .join(std::ffi::OsStr::from_bytes(n))
                .exists()
        })
        .collect();
    assert!(again.is_empty(), "fired again: {again:?}\n{}", m.log());
    assert!(!m.log().contains("unreadable"), "{}", m.log());
}

#[test]
fn snapshots_are_private() {
    // Notify origins keep a reconcile snapshot too; poll ones theirs.
    for watch in [
        json!({"mode": "notify"}),
        json!({"mode": "poll", "intervalSeconds": 1}),
    ] {
        let m = start(watch.clone());
        let snap = wait_snapshot(&m);
        let dir = fs::metadata(m.scratch_path("state/watch")).expect("stat watch dir");
        assert_eq!(
            dir.permissions().mode() & 0o7777,
            0o700,
            "{watch}: watch dir"
        );
        for f in fs::read_dir(m.scratch_path("state/watch"))
            .expect("ls")
            .flatten()
        {
            let md = fs::symlink_metadata(f.path()).expect("lstat");
            assert!(md.is_file(), "{watch}: {:?} is a file", f.path());
            assert_eq!(
                md.permissions().mode() & 0o7777,
                0o600,
                "{watch}: {:?}",
                f.path()
            );
        }
        assert!(snap.exists());
    }
}

/// Nests `depth` directories named `d` below `top`, as `nobody`, and puts a
/// file `deep` at the bottom.
fn nest(top: &Path, depth: usize) {
    nobody_py(
        r#"
import os, sys
top, depth = sys.argv[1], int(sys.argv[2])
os.mkdir(top)
fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
for _ in range(depth):
    os.mkdir("d", dir_fd=fd)
    nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
w = os.open("deep", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(w, b"deep")
os.close(w)
os.close(fd)
"#,
        &[top, Path::new(&depth.to_string())],
    );
}

#[test]
fn nesting_400_deep_keeps_detection_working() {
    for watch in [
        json!({"mode": "notify"}),
        json!({"mode": "poll", "intervalSeconds": 1}),
    ] {
        let m = start(watch.clone());
        wait_snapshot(&m);
        // Through the mount, and straight in the origin.
        nest(&m.at("in/viamount"), 400);
        nest(&m.scratch_path("in/direct"), 400);
        nobody_writes(&m.scratch_path("in"), &[b"after-nesting"]);
        wait_fired(&m, b"after-nesting");
        // Still alive and firing a while later (the next rounds walk the
        // deep trees again).
        std::thread::sleep(scaled(Duration::from_secs(2)));
        nobody_writes(&m.scratch_path("in"), &[b"still-firing"]);
        wait_fired(&m, b"still-firing");
        assert!(m.pid().is_some(), "{watch}: daemon alive");
        assert!(!m.log().contains("panicked"), "{watch}: {}", m.log());
    }
}

#[test]
fn a_symlink_to_a_directory_outside_is_never_walked() {
    for watch in [
        json!({"mode": "notify"}),
        json!({"mode": "poll", "intervalSeconds": 1}),
    ] {
        let m = start(watch.clone());
        wait_snapshot(&m);
        let outside = m.scratch_path("outside");
        fs::create_dir(outside.join("sub")).expect("mkdir");
        fs::write(outside.join("secret"), b"outside").expect("write");
        fs::write(outside.join("sub/secret2"), b"outside").expect("write");
        let in_ = m.scratch_path("in");
        // A link planted in the origin, one through the mount, and a
        // directory holding a link moved in (walked as a new directory).
        nobody_py(
            r#"
import os, sys
org, mnt, outside = sys.argv[1:4]
os.symlink(outside, org + "/link")
os.symlink(outside, mnt + "/mlink")
os.mkdir(org + "/newdir.part")
os.symlink(outside, org + "/newdir.part/inner")
os.symlink(outside + "/sub", org + "/newdir.part/inner2")
os.rename(org + "/newdir.part", org + "/newdir")
"#,
            &[&in_, &m.at("in"), &outside],
        );
        // Files written into the outside directory after the links exist.
        fs::write(outside.join("late"), b"outside").expect("write");
        fs::write(outside.join("sub/late2"), b"outside").expect("write");
        nobody_writes(&in_, &[b"control"]);
        wait_fired(&m, b"control");
        std::thread::sleep(scaled(Duration::from_secs(2)));
        let out = m.scratch_path("out");
        let mut found = Vec::new();
        fn walk(d: &Path, found: &mut Vec<PathBuf>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, found);
                }
                found.push(p);
            }
        }
        walk(&out, &mut found);
        let leaked: Vec<_> = found
            .iter()
            .filter(|p| {
                let n = p.file_name().map(|n| n.as_bytes()).unwrap_or_default();
                n.starts_with(b"secret") || n.starts_with(b"late")
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{watch}: files outside fired: {leaked:?}\n{}",
            m.log()
        );
        assert_eq!(
            fs::read(outside.join("secret")).expect("read"),
            b"outside",
            "{watch}: the outside file is untouched"
        );
    }
}

// ------------------------------------------- fired once, never lost ----

/// Like [`start`], but every onPut and onDelete of `/in` appends
/// `put PATH` / `del PATH` to `runs.log` (one line per workflow run).
fn start_logged(watch: Value) -> Mount {
    let root = scratch();
    let r = root.path().to_path_buf();
    for d in ["in", "out"] {
        fs::create_dir(r.join(d)).expect("mkdir");
    }
    let log = |what: &str| {
        json!({"function": {"exec": ["sh", "-c",
            format!("printf '{what} %s\\n' \"$2\" >> \"$1\"; exec cat"),
            "sh", "{root}/runs.log", "{{ item.path }}"]},
            "savePath": format!("/out/{what}{{{{ item.path }}}}")})
    };
    let mut b = bucket(
        "b",
        vec![
            json!({"mountPoint": "/in", "originPath": "{root}/in", "watch": watch}),
            json!({"mountPoint": "/out", "originPath": "{root}/out", "expose": false,
                   "watch": {"mode": "off"}}),
        ],
    );
    let ev = |wf: &str| json!({"enable": true, "trigger": {"workflow": wf, "timing": "post"}, "webhook": {}});
    b["events"] = json!({"onPut": ev("p"), "onDelete": ev("d")});
    b["workflows"] = json!([
        {"name": "p", "tasks": [log("put")]},
        {"name": "d", "tasks": [log("del")]},
    ]);
    Mount::start_in(root, &config(vec![b]), &["--bucket", "b"])
}

fn runs(m: &Mount, line: &str) -> usize {
    fs::read_to_string(m.scratch_path("runs.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Writes `body` to `p` with an mtime a minute ago (as `rsync -t`, `cp -p`
/// or `tar x` leave a finished file).
fn write_old(p: &Path, body: &[u8]) {
    fs::write(p, body).expect("write");
    fs::File::options()
        .write(true)
        .open(p)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60)))
        .expect("set mtime");
}

/// The inode of the current snapshot changes at every committed round.
#[track_caller]
fn next_round(m: &Mount, snap: &Path) {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| fs::metadata(p).map(|md| md.ino()).unwrap_or(0);
    let before = ino(snap);
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "the next poll round",
        || ino(snap) != before,
        || m.log(),
    );
}

/// A file changed again between the round that saw it change and its
/// re-check is fired by the re-check; the next round must not fire it again.
#[test]
fn a_file_changed_twice_fires_once() {
    let m = start_logged(json!({"mode": "poll", "intervalSeconds": 4}));
    let snap = wait_snapshot(&m);
    let f = m.scratch_path("in/f");
    write_old(&f, b"first");
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "put /in/f",
        || runs(&m, "put /in/f") == 1,
        || m.log(),
    );
    next_round(&m, &snap);
    write_old(&f, b"second version");
    // This round sees it changed: it waits to settle...
    next_round(&m, &snap);
    // ...and changes again before the re-check a second later.
    write_old(&f, b"third version, longer");
    // The re-checks fire it; then two more rounds.
    next_round(&m, &snap);
    next_round(&m, &snap);
    std::thread::sleep(scaled(Duration::from_secs(2)));
    assert_eq!(
        runs(&m, "put /in/f"),
        2,
        "the first version and the last, once each:\n{}",
        fs::read_to_string(m.scratch_path("runs.log")).unwrap_or_default()
    );
}

/// A fired file that changes and is deleted before the change settled was
/// there (and processed): its deletion fires onDelete.
#[test]
fn a_changed_file_deleted_before_it_settled_fires_on_delete() {
    let m = start_logged(json!({"mode": "poll", "intervalSeconds": 4}));
    let snap = wait_snapshot(&m);
    let f = m.scratch_path("in/g");
    write_old(&f, b"first");
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "put /in/g",
        || runs(&m, "put /in/g") == 1,
        || m.log(),
    );
    next_round(&m, &snap);
    fs::write(&f, b"being rewritten").expect("write");
    next_round(&m, &snap);
    fs::remove_file(&f).expect("rm");
    next_round(&m, &snap);
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "del /in/g",
        || runs(&m, "del /in/g") == 1,
        || {
            format!(
                "{}\n{}",
                fs::read_to_string(m.scratch_path("runs.log")).unwrap_or_default(),
                m.log()
            )
        },
    );
}

// ------------------------------------- directories new to a notify origin ----

/// Files written into directories just created in a notify origin (an FTP
/// `mkdir` then upload): each fires once, whether the walk of the new
/// directory or inotify saw it first.
#[test]
fn files_in_new_directories_fire_once_each() {
    let m = start_logged(json!({"mode": "notify"}));
    wait_snapshot(&m);
    let in_ = m.scratch_path("in");
    nobody_py_root(
        r#"
import os, sys, time
org = sys.argv[1]
for i in range(24):
    os.mkdir(f"{org}/d{i}")
    time.sleep((i % 6) / 4000.0)
    with open(f"{org}/d{i}/f", "w") as f:
        f.write(f"file {i}\n")
"#,
        &in_,
    );
    let want: Vec<String> = (0..24).map(|i| format!("put /in/d{i}/f")).collect();
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "every file fired",
        || want.iter().all(|w| runs(&m, w) >= 1),
        || m.log(),
    );
    std::thread::sleep(scaled(Duration::from_secs(2)));
    let twice: Vec<&String> = want.iter().filter(|w| runs(&m, w) != 1).collect();
    assert!(twice.is_empty(), "fired more than once: {twice:?}");
}

/// A directory moved into a notify origin while a file in it is still
/// being written: the walk must not process the half-written file; the
/// file fires once, with its final content.
#[test]
fn a_file_still_being_written_in_a_moved_in_directory_fires_once_complete() {
    let m = start_logged(json!({"mode": "notify"}));
    wait_snapshot(&m);
    let stage = m.scratch_path("stage");
    fs::create_dir(&stage).expect("mkdir");
    std::os::unix::fs::chown(&stage, Some(NOBODY), Some(NOBODY)).expect("chown");
    nobody_py_root(
        r#"
import os, sys, time
stage = sys.argv[1]
org = stage[: -len("stage")] + "in"
os.mkdir(stage + "/up")
with open(stage + "/up/f", "w") as f:
    f.write("first half\n")
    f.flush()
    os.rename(stage + "/up", org + "/up")
    time.sleep(1.5)
    f.write("second half\n")
"#,
        &stage,
    );
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "put /in/up/f",
        || runs(&m, "put /in/up/f") >= 1,
        || m.log(),
    );
    std::thread::sleep(scaled(Duration::from_secs(2)));
    assert_eq!(
        fs::read(m.scratch_path("out/put/in/up/f")).expect("output"),
        b"first half\nsecond half\n"
    );
    assert_eq!(runs(&m, "put /in/up/f"), 1, "fired once");
}

/// [`nobody_py`] with one path argument; `in/` must be `nobody`'s.
#[track_caller]
fn nobody_py_root(script: &str, dir: &Path) {
    let in_ = dir.parent().expect("parent").join("in");
    std::os::unix::fs::chown(&in_, Some(NOBODY), Some(NOBODY)).expect("chown in");
    fs::set_permissions(
        dir.parent().expect("parent"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod scratch");
    nobody_py(script, &[dir]);
}

/// A file written into a new directory while other changes keep the
/// watcher busy (an FTP server busy with other uploads) still fires: the
/// new directory is watched, or walked, after the file came.
#[test]
fn a_file_in_a_new_directory_fires_while_the_watcher_is_busy() {
    let m = start_logged(json!({"mode": "notify"}));
    wait_snapshot(&m);
    let in_ = m.scratch_path("in");
    nobody_py_root(
        r#"
import os, sys, time
org = sys.argv[1]
os.mkdir(org + "/busy")
os.mkdir(org + "/new")
t0 = time.time()
i = 0
wrote = False
while time.time() - t0 < 4:
    with open(f"{org}/busy/{i % 50}", "w") as f:
        f.write(str(i))
    i += 1
    if not wrote and time.time() - t0 > 1:
        with open(org + "/new/f", "w") as f:
            f.write("in the new directory\n")
        wrote = True
"#,
        &in_,
    );
    poll(
        Duration::from_secs(20),
        Duration::from_millis(100),
        "put /in/new/f",
        || runs(&m, "put /in/new/f") >= 1,
        || m.log(),
    );
}
