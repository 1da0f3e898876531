//! `storgate mount` as a command (SPEC §8, §9): daemon mode, failures with
//! reasons, config errors, signals and `-o` options.
use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CMD_TIMEOUT: Duration = Duration::from_secs(30);

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn simple_config() -> Value {
    config(vec![bucket("b", vec![root_mount("{root}/o1")])])
}

/// PIDs of processes whose command line contains `needle` (a path unique to
/// one test), i.e. daemons this test started.
fn pids_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == needle) {
                v.push(pid);
            }
        }
    }
    v
}

/// Cleans up after a daemonized `storgate mount`: unmounts `mnt`, then makes
/// sure every process started with `config` (a file unique to this test) has
/// exited — SIGTERM, then SIGKILL, by PID.
struct DaemonGuard {
    mnt: PathBuf,
    config: PathBuf,
}

impl DaemonGuard {
    /// Waits up to 10 s for the daemon to exit; SIGTERM, then SIGKILL.
    fn reap(&self) {
        let needle = self.config.to_string_lossy().into_owned();
        if poll_until(Duration::from_secs(10), || {
            pids_with_arg(&needle).is_empty()
        }) {
            return;
        }
        for pid in pids_with_arg(&needle) {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if poll_until(Duration::from_secs(10), || {
            pids_with_arg(&needle).is_empty()
        }) {
            return;
        }
        for pid in pids_with_arg(&needle) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        // Only our own stacked mount: fusermount3 -u pops the topmost one.
        let needle = self.config.to_string_lossy().into_owned();
        if !pids_with_arg(&needle).is_empty() && is_fuse_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .output();
        }
        self.reap();
    }
}

fn mount_cmd(config: &Path, extra: &[&str], mnt: &Path) -> Command {
    let mut c = Command::new(storgate_bin());
    c.arg("mount")
        .arg("--config")
        .arg(config)
        .args(extra)
        .arg(mnt);
    c
}

#[test]
fn daemon_mode_parent_exits_0_once_mount_is_ready() {
    require_fuse();
    let root = scratch();
    put(&root.path().join("o1/hello"), "world");
    let cfg = write_config(root.path(), &simple_config(), "daemon.json");
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let guard = DaemonGuard {
        mnt: mnt.clone(),
        config: cfg.clone(),
    };
    let out = run_timeout(&mut mount_cmd(&cfg, &[], &mnt), CMD_TIMEOUT);
    // Checked right at the parent's exit, no waiting.
    let mounted = mounts_at(&mnt);
    assert!(
        out.status.success(),
        "daemon-mode parent exited with {}; stderr:\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        mounted.iter().any(|mi| mi.fs_type.starts_with("fuse")),
        "mount not in /proc/self/mountinfo when the parent exited: {mounted:?}"
    );
    let fstype = &mounted.last().unwrap().fs_type;
    assert!(
        fstype == "fuse.storgate" || fstype == "fuse",
        "fs type {fstype}, want fuse.storgate or fuse"
    );
    assert_eq!(names(&mnt), s(&["b"]));
    assert_eq!(fs::read_to_string(mnt.join("b/hello")).unwrap(), "world");

    // Unmounting ends the daemon.
    run_ok(Command::new("fusermount3").arg("-u").arg(&mnt));
    let needle = cfg.to_string_lossy().into_owned();
    wait_until(
        Duration::from_secs(10),
        "daemon exits after fusermount3 -u",
        || pids_with_arg(&needle).is_empty(),
    );
    drop(guard);
}

#[test]
fn missing_mount_point_fails_with_reason() {
    require_fuse();
    let root = scratch();
    let cfg = write_config(root.path(), &simple_config(), "missing.json");
    let mnt = root.path().join("does-not-exist");
    let _guard = DaemonGuard {
        mnt: mnt.clone(),
        config: cfg.clone(),
    };
    for extra in [&[][..], &["-f"][..]] {
        let out = run_timeout(&mut mount_cmd(&cfg, extra, &mnt), CMD_TIMEOUT);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "mount {extra:?} on a missing mount point exited 0; stderr:\n{err}"
        );
        let low = err.to_lowercase();
        assert!(
            err.contains(&*mnt.to_string_lossy())
                || low.contains("no such file")
                || low.contains("does not exist")
                || low.contains("not found")
                || low.contains("missing"),
            "mount {extra:?}: stderr should give the reason (missing mount point), got:\n{err}"
        );
        assert!(!mnt.exists(), "the mount point must not be created");
    }
}

#[test]
fn busy_mount_point_fails() {
    let first = Mount::start(&simple_config(), &[]);
    put(&first.scratch_path("o2/other"), "o");
    let cfg2 = write_config(
        first.root.path(),
        &config(vec![bucket("c", vec![root_mount("{root}/o2")])]),
        "second.json",
    );
    let _guard = DaemonGuard {
        mnt: first.mnt.clone(),
        config: cfg2.clone(),
    };
    for extra in [&[][..], &["-f"][..]] {
        let out = run_timeout(&mut mount_cmd(&cfg2, extra, &first.mnt), CMD_TIMEOUT);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "second mount {extra:?} on an already-mounted mount point exited 0; stderr:\n{err}"
        );
        assert!(!err.trim().is_empty(), "a reason on stderr");
        assert_eq!(
            mounts_at(&first.mnt).len(),
            1,
            "nothing stacked on the first mount"
        );
        assert_eq!(names(&first.mnt), s(&["b"]), "first mount still serves");
    }
}

#[test]
fn invalid_config_exits_2_with_json_path() {
    require_fuse();
    let root = scratch();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"stateDir": "{root}/state", "buckets": [
                {"meta": {"name": "b"}, "mounts": [root_mount("{root}/o1")], "schedlue": 1}]}),
            "buckets[0].schedlue",
        ),
        (
            json!({"stateDir": "{root}/state", "buckets": [
                {"meta": {"name": "b"}, "mounts": [{"mountPoint": null, "originPath": 42}]}]}),
            "buckets[0].mounts[0].originPath",
        ),
    ];
    for (i, (cfg, path)) in cases.into_iter().enumerate() {
        let file = write_config(root.path(), &cfg, &format!("bad{i}.json"));
        let _guard = DaemonGuard {
            mnt: mnt.clone(),
            config: file.clone(),
        };
        for extra in [&[][..], &["-f"][..]] {
            let out = run_timeout(&mut mount_cmd(&file, extra, &mnt), CMD_TIMEOUT);
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "invalid config {i} {extra:?}: want exit 2, got {}; stderr:\n{err}",
                out.status
            );
            assert!(
                err.contains(path),
                "invalid config {i} {extra:?}: stderr should name {path}, got:\n{err}"
            );
            assert!(!is_fuse_mounted(&mnt), "nothing mounted on a config error");
        }
    }
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    let mut m = Mount::start(&simple_config(), &[]);
    fs::write(m.at("b/f"), "x").unwrap();
    let st = m.stop();
    assert_eq!(
        st.status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM: {st:?}; log:\n{}",
        m.log()
    );
    assert!(
        !st.mounted_after_exit,
        "still mounted after the daemon exited on SIGTERM"
    );
    assert_eq!(fs::read_to_string(m.scratch_path("o1/f")).unwrap(), "x");
}

#[test]
fn sigint_unmounts_and_exits_0() {
    let mut m = Mount::start(&simple_config(), &[]);
    assert_eq!(names(&m.mnt), s(&["b"]));
    let st = m.stop_with(libc::SIGINT);
    assert_eq!(
        st.status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGINT: {st:?}; log:\n{}",
        m.log()
    );
    assert!(
        !st.mounted_after_exit,
        "still mounted after the daemon exited on SIGINT"
    );
}

/// A busy mount (open file, a process's cwd inside) cannot be unmounted
/// normally: SIGTERM must still take it out of the tree at once (lazy
/// detach), keep serving the open file, and exit 0 when the last user leaves.
#[test]
fn sigterm_on_a_busy_mount_detaches_and_exits_when_released() {
    use std::io::Read;
    let mut m = Mount::start(&simple_config(), &[]);
    fs::write(m.at("b/f"), "still readable").unwrap();
    let mut open = fs::File::open(m.at("b/f")).unwrap();
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .current_dir(m.at("b"))
        .spawn()
        .unwrap();
    m.signal(libc::SIGTERM);
    let mnt = m.mnt.clone();
    let gone = poll_until(Duration::from_secs(10), || !is_fuse_mounted(&mnt));
    let mut buf = String::new();
    let read = open.read_to_string(&mut buf).map(|_| buf);
    drop(open);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let st = m.wait_exit(Duration::from_secs(10));
    assert!(gone, "busy mount still in mountinfo 10 s after SIGTERM");
    assert_eq!(
        read.ok().as_deref(),
        Some("still readable"),
        "an open file keeps working after the detach"
    );
    assert_eq!(
        st.status.and_then(|s| s.code()),
        Some(0),
        "exit once the busy mount was released: {st:?}; log:\n{}",
        m.log()
    );
}

#[test]
fn ro_option_gives_erofs() {
    let root = scratch();
    put(&root.path().join("o1/f"), "data");
    put(&root.path().join("o1/d/x"), "x");
    let m = Mount::start_in(root, &simple_config(), &["--bucket", "b", "-o", "ro"]);
    assert_eq!(
        fs::read_to_string(m.at("f")).unwrap(),
        "data",
        "reading works"
    );
    expect_errno(
        fs::File::create(m.at("new")),
        libc::EROFS,
        "create on -o ro",
    );
    expect_errno(
        fs::OpenOptions::new().write(true).open(m.at("f")),
        libc::EROFS,
        "write-open on -o ro",
    );
    expect_errno(fs::create_dir(m.at("nd")), libc::EROFS, "mkdir on -o ro");
    expect_errno(fs::remove_file(m.at("f")), libc::EROFS, "unlink on -o ro");
    expect_errno(
        fs::rename(m.at("f"), m.at("g")),
        libc::EROFS,
        "rename on -o ro",
    );
    assert_eq!(names(&m.scratch_path("o1")), s(&["d", "f"]));
}

#[test]
fn uid_gid_options_show_in_stat() {
    let root = scratch();
    put(&root.path().join("o1/f"), "data");
    put(&root.path().join("o1/d/x"), "x");
    let m = Mount::start_in(
        root,
        &simple_config(),
        &["--bucket", "b", "-o", "uid=1234,gid=1234"],
    );
    for p in ["f", "d", "d/x"] {
        let md = fs::metadata(m.at(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 1234), "uid/gid of {p}");
    }
    let om = fs::metadata(m.scratch_path("o1/f")).unwrap();
    assert_eq!((om.uid(), om.gid()), (0, 0), "origin file keeps its owner");
}

/// `stat` as uid/gid 65534 (nobody): Ok(()) or the stderr of the failure.
fn stat_as_nobody(p: &Path) -> Result<(), String> {
    let o = run_timeout(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "stat"])
            .arg(p),
        CMD_TIMEOUT,
    );
    if o.status.success() {
        Ok(())
    } else {
        Err(stderr(&o))
    }
}

#[test]
fn allow_other_lets_other_users_in() {
    use std::os::unix::fs::PermissionsExt;
    for (opts, allowed) in [(&[][..], false), (&["-o", "allow_other"][..], true)] {
        let root = scratch();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        put(&root.path().join("o1/f"), "data");
        let mut args = vec!["--bucket", "b"];
        args.extend_from_slice(opts);
        let m = Mount::start_in(root, &simple_config(), &args);
        let r = stat_as_nobody(&m.at("f"));
        if allowed {
            assert!(
                r.is_ok(),
                "with -o allow_other another user can stat: {r:?}"
            );
        } else {
            assert!(
                r.is_err(),
                "without allow_other another user must be refused"
            );
        }
    }
}
