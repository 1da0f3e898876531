//! Issue 11 tried as a hostile client would (SPEC §9.1, TESTING.md layer 5):
//! the daemon runs as root, the client as `nobody` through an `allow_other`
//! mount and, like an FTP user of the share, straight in the origin.
//! - symlink race: `up/dN/x` is created, then `up/dN` (or `x` itself, or the
//!   directory an output goes to) is swapped for a symlink to a directory
//!   outside the bucket holding a root-only secret, while post workflows
//!   copy `/up/**` and `onComplete` deletes the source;
//! - rename swaps: `RENAME_EXCHANGE` with a symlink, the directory renamed
//!   out of the bucket and a symlink or another directory renamed in;
//! - hard links: `x` replaced by a hard link to the secret (refused to
//!   `nobody` by the kernel; one made by root keeps its output unreadable);
//!
//! After every race: the secret exists unchanged, its bytes are in no other
//! file, and nothing was created outside the bucket. Then:
//! - output modes: the source's mode less `022` and the setuid bits, for
//!   copy and `exec` outputs;
//! - `kill -9` while outputs are being written: a restart removes the temp
//!   files the dead daemon left, and replays the events to completion;
//! - paths longer than `PATH_MAX` below the mount, with an origin whose own
//!   path is over 1,000 bytes: the same results as on a bare directory.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Generous deadline for the daemon's asynchronous work (a failed item is
/// retried after 4 s and 16 s before it is given up).
const DEADLINE: Duration = Duration::from_secs(120);

/// uid/gid of `nobody`/`nogroup`.
const NOBODY: u32 = 65534;

// ------------------------------------------------------------ helpers ----

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `python3 -c script args…` (as `nobody` when `nobody`), asserting
/// exit 0; returns stdout.
#[track_caller]
fn python(nobody: bool, script: &str, args: &[&Path]) -> String {
    let mut cmd = if nobody {
        as_nobody("/usr/bin/python3")
    } else {
        Command::new("/usr/bin/python3")
    };
    cmd.arg("-c").arg(script).args(args);
    let o = run_timeout(&mut cmd, Duration::from_secs(120));
    assert!(o.status.success(), "python3 script failed: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Events of `stateDir/journal/journal.log` that are neither done nor dead
/// (their bucket paths); `None` while the log does not exist yet.
fn open_events(state: &Path) -> Option<Vec<String>> {
    let data = fs::read(state.join("journal/journal.log")).ok()?;
    let mut live: BTreeMap<u64, String> = BTreeMap::new();
    // Only complete lines: the last one may be half written.
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for line in data[..end].split(|&b| b == b'\n') {
        let Ok(rec) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        match rec["t"].as_str() {
            Some("add") | Some("upd") => {
                if let Some(id) = rec["ev"]["id"].as_u64() {
                    let path = rec["ev"]["path"].as_str().unwrap_or("?").to_string();
                    live.insert(id, path);
                }
            }
            Some("done") | Some("dead") => {
                if let Some(id) = rec["id"].as_u64() {
                    live.remove(&id);
                }
            }
            _ => {}
        }
    }
    Some(live.into_values().collect())
}

/// Waits until every journaled event has ended (completed, given up or
/// skipped) and no new one arrived for 3 s (the origin watcher's events
/// come asynchronously).
#[track_caller]
fn wait_journal_idle(m: &Mount, state: &Path) {
    let mut idle_since: Option<std::time::Instant> = None;
    let mut last = String::new();
    poll(
        DEADLINE * 2,
        Duration::from_millis(200),
        "every post event ended",
        || {
            let now = open_events(state);
            let snapshot = format!("{now:?}");
            let idle = now.as_ref().is_some_and(Vec::is_empty);
            if !idle || snapshot != last {
                idle_since = idle.then(std::time::Instant::now);
            }
            last = snapshot;
            idle_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
        },
        || format!("open events: {:?}\nlog:\n{}", open_events(state), m.log()),
    );
}

/// Every entry below `dir` (not following symlinks, not entering `skip`)
/// with its metadata, by path.
fn entries(dir: &Path, skip: &[PathBuf]) -> BTreeMap<PathBuf, fs::Metadata> {
    fn walk(d: &Path, skip: &[PathBuf], out: &mut BTreeMap<PathBuf, fs::Metadata>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if skip.contains(&p) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                walk(&p, skip, out);
            }
            out.insert(p, md);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, skip, &mut out);
    out
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------- the races ----

/// The scratch layout of a race:
/// - `up/` (origin of the exposed `/up`, owned by `nobody`: the share the
///   client uploads to), `out/` (origin of the hidden `/out`);
/// - `secret/x`: root's, mode 0600, in a directory outside the bucket;
/// - `away/`: `nobody`'s own directory outside the bucket, on the same
///   file system (somewhere to rename things to and from);
/// - `ctl/`: the blocker's markers.
struct Race {
    m: Mount,
    state: PathBuf,
    secret: PathBuf,
    secret_bytes: Vec<u8>,
    secret_ino: u64,
    /// What existed outside the bucket before the attack.
    outside_before: BTreeMap<PathBuf, u32>,
}

/// The attacker (run as `nobody`), one attempt per index: creates
/// `up/dN/x` through the mount, waits a little (varying), then swaps — in
/// the origin directly or through the mount, alternately. It prints one
/// line per step that failed (`fail I STEP ERRNO`) and `swapped I` per
/// attempt whose swap was made.
const ATTACK: &str = r#"
import ctypes, errno, os, sys, time
mnt, org, secret, away = sys.argv[1:5]
first, count, race, variant = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "race", sys.argv[8]
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
def exchange(a, b):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)
def step(i, name, f, *a):
    try:
        f(*a)
        return True
    except OSError as e:
        print("fail", i, name, errno.errorcode.get(e.errno, e.errno), flush=True)
        return False
def upload(i, d):
    os.mkdir(f"{mnt}/{d}")
    with open(f"{mnt}/{d}/x", "w") as f:
        f.write(f"client data {i}\n")
for i in range(first, first + count):
    d, k = f"d{i}", i % 4
    via = mnt if i % 2 else org
    ok = True
    if variant == "symlink":
        upload(i, d)
        if race: time.sleep(((i * 7) % 11) / 1000.0)
        if k in (0, 1):
            # the item's directory becomes a symlink to the secret's
            ok = step(i, "rename", os.rename, f"{via}/{d}", f"{via}/{d}.old") and \
                 step(i, "symlink", os.symlink, secret, f"{via}/{d}")
        elif k == 2:
            # the item itself becomes a symlink to the secret (atomic rename)
            ok = step(i, "symlink", os.symlink, f"{secret}/x", f"{org}/{d}/x.new") and \
                 step(i, "rename", os.rename, f"{org}/{d}/x.new", f"{org}/{d}/x")
        else:
            # the directory an output goes to is a symlink to the secret's
            ok = step(i, "symlink", os.symlink, secret, f"{mnt}/{d}/o")
    elif variant == "rename":
        os.mkdir(f"{mnt}/{d}")
        if k < 3:
            os.symlink(secret, f"{via if k < 2 else org}/l{i}")
        else:
            # another directory whose x is a hard link to the secret — which
            # the kernel refuses nobody (fs.protected_hardlinks) — or else to
            # a file of nobody's own outside the bucket
            os.mkdir(f"{org}/e{i}")
            if step(i, "link-secret", os.link, f"{secret}/x", f"{org}/e{i}/x"):
                print("linked-secret", i, flush=True)
            else:
                os.link(f"{away}/own", f"{org}/e{i}/x")
        with open(f"{mnt}/{d}/x", "w") as f:
            f.write(f"client data {i}\n")
        if race: time.sleep(((i * 7) % 11) / 1000.0)
        if k < 2:
            # atomic: the directory and the symlink trade places
            ok = step(i, "exchange", exchange, f"{via}/{d}", f"{via}/l{i}")
        elif k == 2:
            ok = step(i, "rename-out", os.rename, f"{org}/{d}", f"{away}/{d}") and \
                 step(i, "rename-in", os.rename, f"{org}/l{i}", f"{org}/{d}")
        else:
            ok = step(i, "rename-out", os.rename, f"{org}/{d}", f"{away}/{d}") and \
                 step(i, "rename-in", os.rename, f"{org}/e{i}", f"{org}/{d}")
    elif variant == "hardlink":
        upload(i, d)
        if race: time.sleep(((i * 7) % 11) / 1000.0)
        # x replaced by a hard link to the secret: in the origin the kernel
        # refuses it (fs.protected_hardlinks), through the mount it is EXDEV
        ok = step(i, "link", os.link, f"{secret}/x", f"{via}/{d}/x.new") and \
             step(i, "rename", os.rename, f"{via}/{d}/x.new", f"{via}/{d}/x")
        if ok: print("linked-secret", i, flush=True)
    if ok: print("swapped", i, flush=True)
"#;

/// The exec task: `cat`, except that the blocker item (`/up/block`) marks
/// that it started and then waits for the gate — holding the only worker,
/// so the items uploaded meanwhile are all processed after their swap.
const GATED_CAT: &str = r#"case "$3" in /up/block) : > "$1"; while [ ! -e "$2" ]; do sleep 0.02; done;; esac; exec cat"#;

impl Race {
    fn start() -> Race {
        let root = scratch();
        let r = root.path().to_path_buf();
        chmod(&r, 0o755);
        for d in ["up", "out", "secret", "away", "ctl"] {
            fs::create_dir(r.join(d)).unwrap();
        }
        // Made before the watcher starts: the hard-link test's root drop.
        fs::create_dir(r.join("up/hl")).unwrap();
        chown(&r.join("up"), NOBODY, NOBODY);
        chown(&r.join("away"), NOBODY, NOBODY);
        let secret = r.join("secret/x");
        let secret_bytes = format!("ROOT-ONLY SECRET {}\n", std::process::id()).into_bytes();
        fs::write(&secret, &secret_bytes).unwrap();
        chmod(&secret, 0o600);
        fs::write(r.join("away/own"), b"nobody's own file\n").unwrap();
        chown(&r.join("away/own"), NOBODY, NOBODY);
        let ctl = r.join("ctl");
        let cfg = config(vec![{
            let mut b = bucket(
                "b",
                vec![
                    json!({"mountPoint": "/up", "originPath": "{root}/up"}),
                    json!({"mountPoint": "/out", "originPath": "{root}/out", "expose": false}),
                ],
            );
            b["events"] = json!({"onPut": {
                "enable": true,
                "trigger": {"workflow": "grab", "timing": "post"},
                "webhook": {},
            }});
            b["workflows"] = json!([{
                "name": "grab",
                "tasks": [
                    {"savePath": "/out/copy{{ item.path }}"},
                    {"function": {"exec": ["sh", "-c", GATED_CAT, "sh",
                        ctl.join("started"), ctl.join("gate"), "{{ item.path }}"]},
                     "savePath": "/out/exec{{ item.path }}", "timeout": 300},
                    {"savePath": "{{ item.path | dirname }}/o/{{ item.filename }}.out"},
                ],
                "onComplete": {"src": {"op": "delete"}},
            }]);
            b
        }]);
        let outside_before = outside(&r);
        let secret_ino = fs::metadata(&secret).unwrap().ino();
        let m = Mount::start_in_env(
            root,
            &cfg,
            &["--bucket", "b", "-o", "allow_other"],
            &[("STORGATE_WORKERS", "1")],
        );
        Race {
            state: m.scratch_path("state"),
            m,
            secret,
            secret_bytes,
            secret_ino,
            outside_before,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.m.scratch_path(rel)
    }

    /// Runs attempts `first..first+count` of `variant` as `nobody`; returns
    /// the attacker's report.
    fn attack(&self, variant: &str, first: usize, count: usize, race: bool) -> String {
        let args: Vec<PathBuf> = vec![
            self.m.at("up"),
            self.path("up"),
            self.path("secret"),
            self.path("away"),
            PathBuf::from(first.to_string()),
            PathBuf::from(count.to_string()),
            PathBuf::from(if race { "race" } else { "gated" }),
            PathBuf::from(variant),
        ];
        let args: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
        python(true, ATTACK, &args)
    }

    /// The whole attack: 30 attempts while the only worker is held (every
    /// swap lands before its item runs), then 30 racing the worker with
    /// delays of 0–10 ms. Returns the attacker's report.
    fn run(&self, variant: &str) -> String {
        fs::write(self.m.at("up/block"), b"blocker\n").unwrap();
        wait_until(DEADLINE, "the blocker item holds the worker", || {
            self.path("ctl/started").exists()
        });
        let mut report = self.attack(variant, 0, 30, false);
        fs::write(self.path("ctl/gate"), b"").unwrap();
        report += &self.attack(variant, 30, 30, true);
        wait_journal_idle(&self.m, &self.state);
        report
    }

    /// What every race asserts at the end.
    fn assert_nothing_escaped(&self, report: &str) {
        let ctx = || format!("attacker's report:\n{report}");
        // The secret is still there, unchanged.
        let md = fs::symlink_metadata(&self.secret).unwrap_or_else(|e| {
            panic!("the secret outside the bucket was deleted ({e}); {}", ctx())
        });
        assert!(md.is_file(), "the secret is still a regular file");
        assert_eq!(md.ino(), self.secret_ino, "the secret is the same inode");
        assert_eq!(md.mode() & 0o7777, 0o600, "the secret's mode is unchanged");
        assert_eq!(md.uid(), 0, "the secret's owner is unchanged");
        assert_eq!(
            fs::read(&self.secret).unwrap(),
            self.secret_bytes,
            "the secret's content is unchanged"
        );
        assert_eq!(
            names(&self.path("secret")),
            vec!["x".to_string()],
            "nothing was created beside the secret; {}",
            ctx()
        );
        // Its bytes are in no other file: not in any output, nowhere.
        let root = self.m.root.path();
        let leaked: Vec<PathBuf> = entries(root, std::slice::from_ref(&self.m.mnt))
            .into_iter()
            .filter(|(p, md)| md.is_file() && p != &self.secret)
            .filter(|(p, _)| fs::read(p).is_ok_and(|b| contains(&b, &self.secret_bytes)))
            .map(|(p, _)| p)
            .collect();
        assert!(
            leaked.is_empty(),
            "the secret was copied into {leaked:?}; {}",
            ctx()
        );
        // Outside the bucket, only the attacker created things — but for
        // what the daemon made in the bucket (`up/dN/o/…`, an output beside
        // its item) before the attacker renamed `dN` out to `away/`.
        let after = outside(root);
        let away = self.path("away");
        let moved_out = |p: &Path| {
            p.strip_prefix(&away).is_ok_and(|rel| {
                let c: Vec<_> = rel.iter().collect();
                c.len() >= 2
                    && c[1] == "o"
                    && !c
                        .iter()
                        .any(|n| n.to_string_lossy().starts_with(".storgate.tmp."))
            })
        };
        let made_by_root: Vec<&PathBuf> = after
            .iter()
            .filter(|(p, uid)| **uid != NOBODY && !self.outside_before.contains_key(*p))
            .filter(|(p, _)| !moved_out(p))
            .map(|(p, _)| p)
            .collect();
        assert!(
            made_by_root.is_empty(),
            "the daemon created {made_by_root:?} outside the bucket; {}",
            ctx()
        );
        assert!(
            self.m.pid().is_some_and(alive),
            "the daemon survived the attack"
        );
    }
}

/// What lies outside the bucket's origins (and the daemon's own files), by
/// path with its owner.
fn outside(root: &Path) -> BTreeMap<PathBuf, u32> {
    let skip: Vec<PathBuf> = ["up", "out", "state", "mnt", "ctl"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    entries(root, &skip)
        .into_iter()
        .filter(|(p, _)| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("storgate."))
        })
        .map(|(p, md)| (p, md.uid()))
        .collect()
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The attempts of the report that made their swap.
fn swapped(report: &str) -> BTreeSet<usize> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("swapped "))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn symlink_swaps_racing_the_workers_never_reach_outside() {
    let race = Race::start();
    let report = race.run("symlink");
    // While the worker is held every swap lands (racing it, a swap may find
    // the item already done and `o` made): for the test to mean anything
    // all of those must have happened.
    let made = swapped(&report);
    assert!(
        (0..30).all(|i| made.contains(&i)),
        "every swap while the worker was held was made:\n{report}"
    );
    race.assert_nothing_escaped(&report);
    // The output-side symlinks (`up/dN/o`) were not written through.
    for i in (3..30).step_by(4) {
        let o = race.path(&format!("up/d{i}/o"));
        assert!(
            fs::symlink_metadata(&o).is_ok_and(|m| m.file_type().is_symlink()),
            "the attacker's symlink {} is still a symlink",
            o.display()
        );
    }
}

#[test]
fn rename_swaps_racing_the_workers_never_reach_outside() {
    let race = Race::start();
    let report = race.run("rename");
    // The origin-side swaps are plain renames: they all happen. Through the
    // mount, RENAME_EXCHANGE is storgate's to answer; either way nothing
    // may escape.
    let made = swapped(&report);
    let missing: Vec<usize> = (0..60)
        .filter(|i| i % 4 != 1 && !made.contains(i))
        .collect();
    assert!(
        missing.is_empty(),
        "every origin-side swap was made (missing {missing:?}):\n{report}"
    );
    assert!(
        !report.contains("linked-secret"),
        "the kernel let nobody hard-link root's secret (fs.protected_hardlinks off?):\n{report}"
    );
    race.assert_nothing_escaped(&report);
}

#[test]
fn hard_links_to_a_secret_never_bring_it_into_the_bucket() {
    let race = Race::start();
    // As nobody the link is refused: EPERM in the origin (the kernel's
    // fs.protected_hardlinks: one may only link a file one can read and
    // write), EXDEV through the mount (the secret is not in it).
    let report = race.run("hardlink");
    assert!(
        !report.contains("linked-secret"),
        "nobody could hard-link root's secret (fs.protected_hardlinks off?):\n{report}"
    );
    assert!(swapped(&report).is_empty(), "no link was made:\n{report}");
    race.assert_nothing_escaped(&report);

    // Only root can put such a link into the share (then it is in the
    // bucket, and the daemon cannot tell it from an upload): its outputs
    // must stay as unreadable to others as the file itself.
    let r = race.m.root.path();
    let secret2 = r.join("secret2");
    let bytes = b"second root-only secret\n";
    fs::write(&secret2, bytes).unwrap();
    chmod(&secret2, 0o600);
    fs::create_dir(r.join("stage")).unwrap();
    fs::hard_link(&secret2, r.join("stage/x")).unwrap();
    fs::rename(r.join("stage/x"), r.join("up/hl/x")).unwrap();
    let outputs = ["out/copy/up/hl/x", "out/exec/up/hl/x", "up/hl/o/x.out"];
    wait_until(DEADLINE, "the hard link's outputs", || {
        outputs.iter().all(|o| r.join(o).exists()) && !r.join("up/hl/x").exists()
    });
    for o in outputs {
        let p = r.join(o);
        let md = fs::metadata(&p).unwrap();
        assert_eq!(
            md.mode() & 0o7777,
            0o600,
            "{o}: an output of a 0600 file is 0600"
        );
        assert_eq!(fs::read(&p).unwrap(), bytes, "{o}: content");
        let o = run_timeout(as_nobody("/bin/cat").arg(&p), Duration::from_secs(30));
        assert!(!o.status.success(), "nobody cannot read {}", p.display());
    }
    assert_eq!(
        fs::read(&secret2).unwrap(),
        bytes,
        "onComplete removed the link, not the file"
    );
}

// ------------------------------------------------------------- modes ----

#[test]
fn outputs_are_never_world_writable_nor_setuid() {
    let root = scratch();
    let r = root.path().to_path_buf();
    fs::create_dir(r.join("stage")).unwrap();
    let sources = [("rw-all", 0o666u32), ("setuid", 0o4755), ("plain", 0o640)];
    let cfg = config(vec![{
        let mut b = bucket(
            "b",
            vec![
                json!({"mountPoint": "/in", "originPath": "{root}/in"}),
                json!({"mountPoint": "/out", "originPath": "{root}/out", "expose": false}),
            ],
        );
        b["events"] = json!({"onPut": {
            "enable": true,
            "trigger": {"workflow": "w", "timing": "post"},
            "webhook": {},
        }});
        b["workflows"] = json!([{"name": "w", "tasks": [
            {"savePath": "/out/copy/{{ item.filename }}"},
            {"function": {"exec": ["cat"]}, "savePath": "/out/exec/{{ item.filename }}"},
        ]}]);
        b
    }]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    // Dropped into the origin with their modes (a chmod through the mount
    // after the upload would race the worker).
    for (name, mode) in sources {
        let p = r.join("stage").join(name);
        fs::write(&p, format!("{name}\n")).unwrap();
        chmod(&p, mode);
        fs::rename(&p, r.join("in").join(name)).unwrap();
    }
    for (name, mode) in sources {
        for kind in ["copy", "exec"] {
            let p = r.join("out").join(kind).join(name);
            poll(
                DEADLINE,
                Duration::from_millis(20),
                &format!("output {}", p.display()),
                || p.exists(),
                || m.log(),
            );
            let got = fs::metadata(&p).unwrap().mode() & 0o7777;
            assert_eq!(
                got,
                mode & 0o755,
                "{kind} output of a {mode:04o} source: {got:04o}, expected {:04o}",
                mode & 0o755
            );
            assert_eq!(got & 0o7022, 0, "never world-writable nor setuid");
            assert_eq!(fs::read(&p).unwrap(), format!("{name}\n").as_bytes());
        }
    }
}

// ----------------------------------------------------- crash leftovers ----

/// Temp outputs (`.storgate.tmp.*`) anywhere below `dir`.
fn temps_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = entries(dir, &[])
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".storgate.tmp."))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kill_9_while_writing_outputs_leaves_no_temp_after_restart() {
    const N: usize = 6;
    let outer = scratch();
    let o = outer.path();
    let od = o.to_str().unwrap();
    // Outputs in a subdirectory that exists and in one that does not yet:
    // the temps live in the nearest existing directory on the way.
    fs::create_dir_all(o.join("out/deep")).unwrap();
    fs::create_dir_all(o.join("in")).unwrap();
    fs::create_dir_all(o.join("state")).unwrap();
    let cfg = json!({
        "stateDir": format!("{od}/state"),
        "throttling": {"enable": false},
        "buckets": [{
            "meta": {"name": "b"},
            "mounts": [
                {"mountPoint": "/in", "originPath": format!("{od}/in")},
                {"mountPoint": "/out", "originPath": format!("{od}/out"), "expose": false},
            ],
            "events": {"onPut": {
                "enable": true,
                "trigger": {"workflow": "slow", "timing": "post"},
                "webhook": {},
            }},
            "workflows": [{"name": "slow", "tasks": [
                {"function": {"exec": ["sh", "-c", "sleep 5; cat"]},
                 "savePath": "/out/{{ item.filename }}", "timeout": 300},
                {"function": {"exec": ["sh", "-c", "sleep 5; cat"]},
                 "savePath": "/out/deep/new/{{ item.filename }}", "timeout": 300},
            ]}],
        }],
    });
    let content = |i: usize| format!("item {i} written while the daemon died\n").into_bytes();
    let mut m1 = Mount::start_in(scratch(), &cfg, &["--bucket", "b"]);
    for i in 0..N {
        fs::write(m1.at(&format!("in/f{i}")), content(i)).unwrap();
    }
    // Several outputs in flight: their temps exist, nothing is published.
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "temp outputs in flight",
        || temps_under(&o.join("out")).len() >= N,
        || format!("{:?}\n{}", temps_under(&o.join("out")), m1.log()),
    );
    let stopped = m1.stop_with(libc::SIGKILL);
    assert!(stopped.status.is_some(), "the daemon died of SIGKILL");
    let in_origins = || [temps_under(&o.join("in")), temps_under(&o.join("out"))].concat();
    let left = in_origins();
    assert!(
        !left.is_empty(),
        "test premise: the dead daemon left temp outputs"
    );

    let m2 = Mount::start_in(scratch(), &cfg, &["--bucket", "b"]);
    // Start-up removed them before the mount came up.
    let still: Vec<&PathBuf> = left.iter().filter(|p| p.exists()).collect();
    assert!(
        still.is_empty(),
        "temp outputs of the dead daemon left after start-up: {still:?}"
    );
    // The events are replayed and complete.
    for i in 0..N {
        for out in [format!("out/f{i}"), format!("out/deep/new/f{i}")] {
            let p = o.join(&out);
            poll(
                DEADLINE,
                Duration::from_millis(50),
                &format!("replayed output {out}"),
                || fs::read(&p).is_ok_and(|b| b == content(i)),
                || m2.log(),
            );
        }
    }
    wait_journal_idle(&m2, &o.join("state"));
    let now = in_origins();
    assert!(now.is_empty(), "no temp output remains: {now:?}");
}

// -------------------------------------------------------- long paths ----

/// Descends `sys.argv[1]` one `chdir` at a time, 24 directories of 200
/// bytes (≈ 4.8 KB below it: more than PATH_MAX), does file operations at
/// the bottom, climbs back removing everything. Prints one line per
/// operation: its name and `ok` or the errno's name.
const DEEP: &str = r#"
import errno, os, sys
os.chdir(sys.argv[1])
def op(name, f, *a):
    try:
        r = f(*a)
        print(name, "ok", flush=True)
        return r
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno), flush=True)
names = [("%02d" % i) + "d" * 198 for i in range(24)]
for n in names:
    op("mkdir", os.mkdir, n, 0o755)
    op("chdir", os.chdir, n)
print("depth", sum(len(n) + 1 for n in names) > 4096)
def write():
    with open("f", "w") as f:
        f.write("deep\n")
op("create", write)
op("stat", lambda: os.stat("f").st_size == 5 or 1 / 0)
op("chmod", os.chmod, "f", 0o640)
op("utime", os.utime, "f", (1, 2))
op("stat-mode", lambda: oct(os.stat("f").st_mode & 0o777) == "0o640" or 1 / 0)
op("rename", os.rename, "f", "g")
op("read", lambda: open("g").read() == "deep\n" or 1 / 0)
op("link", os.link, "g", "h")
op("symlink", os.symlink, "g", "s")
op("readlink", lambda: os.readlink("s") == "g" or 1 / 0)
op("listdir", lambda: sorted(os.listdir(".")) == ["g", "h", "s"] or 1 / 0)
op("truncate", os.truncate, "g", 2)
op("setxattr", os.setxattr, "g", "user.k", b"v")
op("getxattr", lambda: os.getxattr("g", "user.k") == b"v" or 1 / 0)
for n in ["g", "h", "s"]:
    op("unlink", os.unlink, n)
op("mkdir-leaf", os.mkdir, "leaf")
op("rename-dir", os.rename, "leaf", "leaf2")
op("rmdir-leaf", os.rmdir, "leaf2")
for n in reversed(names):
    op("chdir-up", os.chdir, "..")
    op("rmdir", os.rmdir, n)
"#;

#[test]
fn paths_longer_than_path_max_below_a_long_origin_work_as_on_a_bare_dir() {
    let root = scratch();
    // The origin's own path is over 1,000 bytes.
    let mut origin = root.path().to_path_buf();
    for i in 0..5 {
        origin.push(format!("{i}{}", "p".repeat(199)));
    }
    assert!(origin.as_os_str().len() > 1000);
    fs::create_dir_all(&origin).unwrap();
    let bare = root.path().join("bare");
    fs::create_dir(&bare).unwrap();
    let want = python(false, DEEP, &[&bare]);
    assert!(
        want.lines()
            .all(|l| l.ends_with(" ok") || l == "depth True"),
        "the bare directory does everything:\n{want}"
    );
    let cfg = config(vec![bucket(
        "b",
        vec![root_mount(origin.to_str().unwrap())],
    )]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    let got = python(false, DEEP, &[&m.mnt]);
    assert_eq!(got, want, "through the mount, as on the bare directory");
    assert_eq!(names(&origin), Vec::<String>::new(), "all removed again");
}
