//! Shared harness for the mount tests: starts a real `storgate mount -f` on a
//! temporary directory through `/dev/fuse`, waits until the kernel shows the
//! mount, and always tears it down again (SIGTERM, then `fusermount3 -u -z`,
//! then SIGKILL).
//!
//! Usage:
//! ```ignore
//! use crate::common::*;
//! let root = scratch();
//! std::fs::create_dir_all(root.path().join("o1")).unwrap();
//! let cfg = serde_json::json!({"stateDir": "{root}/state", "buckets": [
//!     bucket("b", vec![root_mount("{root}/o1")])]});
//! let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
//! std::fs::write(m.at("f"), b"x").unwrap();
//! assert!(m.scratch_path("o1/f").exists());
//! ```
//!
//! Conventions:
//! * Every string in the config may contain `{root}`; it is replaced by the
//!   scratch directory (`Mount::root`) before the config is written.
//! * Local `originPath`s below the scratch root and `stateDir` are created
//!   (`mkdir -p`) when missing, so a test only creates what it fills.
//! * The mount point is `<root>/mnt`, the config `<root>/storgate.json`, the
//!   daemon's stderr and stdout go to `<root>/storgate.log`.
//! * `STORGATE_TEST_MOUNT_ARGS` adds arguments to every harness mount and
//!   `STORGATE_TEST_BIN` replaces the binary under test.
//! * A watchdog kills the daemon (SIGKILL, which aborts the FUSE connection so
//!   every pending syscall returns ENOTCONN) if a mount lives longer than
//!   `STORGATE_TEST_MOUNT_TIMEOUT` seconds (default 300): a hung core makes a
//!   test fail, never hang. (Generous: all tests share one process and run
//!   in parallel, and a slow, busy machine must not make a mount "hung".)
//! * Every deadline of the harness is scaled by [`time_factor`]
//!   (`STORGATE_TEST_TIME_FACTOR`, default 3): [`wait_until`], [`poll_until`],
//!   [`poll`], [`run_timeout`], `HttpServer::wait_until`, the mount's start,
//!   stop and watchdog. Tests pass the nominal duration (what an idle
//!   machine needs, with a margin) and never scale it again; a wait of their
//!   own outside these helpers uses [`scaled`]. A deadline only turns a hang
//!   into a failure, so being generous costs time only when a test fails —
//!   while a tight one fails the suite on a machine that is merely busy
//!   (2 cores shared with a build, or `stress-ng --cpu 2` beside the suite).
//! * Throttling (SPEC §6.3) is off in every config the harness writes that
//!   does not set `throttling` itself ([`write_config`]): it would hold post
//!   events and scan items back whenever the machine is busy — and it is,
//!   with the tests running in parallel. Only the throttling test turns it on.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

/// How long `Mount::start` waits for the mount to appear (nominal: scaled
/// by [`time_factor`]).
pub const MOUNT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long teardown waits for the daemon to exit after SIGTERM (nominal:
/// scaled by [`time_factor`]).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The factor used when `STORGATE_TEST_TIME_FACTOR` is not set: measured on
/// a 2-core machine running `stress-ng --cpu 2` and other builds beside the
/// suite, the slowest waits took about twice their idle time.
pub const DEFAULT_TIME_FACTOR: f64 = 3.0;

/// How many times longer than nominal every harness deadline is:
/// `STORGATE_TEST_TIME_FACTOR` (a positive number; below 1 shortens them,
/// e.g. for a quick look at how tests fail), default
/// [`DEFAULT_TIME_FACTOR`]. Read once; a malformed value fails the test
/// that first asks, naming the variable.
pub fn time_factor() -> f64 {
    static FACTOR: OnceLock<Result<f64, String>> = OnceLock::new();
    let f = FACTOR.get_or_init(|| match std::env::var("STORGATE_TEST_TIME_FACTOR") {
        Err(_) => Ok(DEFAULT_TIME_FACTOR),
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(format!(
                "STORGATE_TEST_TIME_FACTOR={s:?}: expected a positive number"
            )),
        },
    });
    match f {
        Ok(f) => *f,
        Err(e) => panic!("{e}"),
    }
}

/// `nominal` × [`time_factor`], for a wait outside the harness's helpers
/// (which scale by themselves: never pass them a scaled value).
pub fn scaled(nominal: Duration) -> Duration {
    Duration::try_from_secs_f64(nominal.as_secs_f64() * time_factor()).unwrap_or(Duration::MAX)
}

/// The storgate binary built by cargo for this test run (`STORGATE_TEST_BIN`
/// overrides it, e.g. to run the suite against an installed binary).
pub fn storgate_bin() -> PathBuf {
    cpu::enter();
    match std::env::var_os("STORGATE_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_storgate")),
    }
}

/// Fails loudly (never skips) when the machine cannot run FUSE mount tests.
pub fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: mount tests need FUSE (install fuse3, load the fuse module)"
    );
    assert!(
        fusermount3().is_some(),
        "fusermount3 is missing: mount tests need the fuse3 package"
    );
}

fn fusermount3() -> Option<PathBuf> {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join("fusermount3");
        if p.exists() {
            return Some(p);
        }
    }
    None
}

/// A fresh scratch directory under /tmp (origins, state, config, mount point).
pub fn scratch() -> TempDir {
    cpu::enter();
    tempfile::Builder::new()
        .prefix("storgate-test-")
        .tempdir_in("/tmp")
        .expect("create scratch dir under /tmp")
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `timeout` (nominal: scaled by [`time_factor`]).
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let timeout = scaled(timeout);
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Like `wait_until` but returns whether the condition came true in time
/// (`timeout` is a deadline, scaled: to watch that something does *not*
/// happen for a while, loop over `thread::sleep` yourself).
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let timeout = scaled(timeout);
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- errno ----

/// The raw errno of an io::Error (-1 when it has none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// errno of a failed result; panics (naming `what`) if it succeeded.
pub fn err_of<T: std::fmt::Debug>(r: io::Result<T>, what: &str) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => errno(&e),
    }
}

/// Asserts that `r` failed with errno `want`.
#[track_caller]
pub fn expect_errno<T: std::fmt::Debug>(r: io::Result<T>, want: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {} ({want}), got Ok({v:?})",
            errno_name(want)
        ),
        Err(e) => {
            let got = errno(&e);
            assert_eq!(
                got,
                want,
                "{what}: expected {} ({want}), got {} ({got}): {e}",
                errno_name(want),
                errno_name(got)
            );
        }
    }
}

/// Asserts that `r` succeeded, showing the errno otherwise.
#[track_caller]
pub fn expect_ok<T>(r: io::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!(
            "{what}: expected success, got {} ({}): {e}",
            errno_name(errno(&e)),
            errno(&e)
        ),
    }
}

/// Symbolic name of an errno value, for messages.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESTALE => "ESTALE",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENODATA => "ENODATA",
        -1 => "no errno",
        _ => "E?",
    }
}

// ------------------------------------------------------- raw syscalls ----

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `open(2)` with explicit flags; returns the fd wrapped in a File.
pub fn open_raw(p: &Path, flags: libc::c_int, mode: libc::mode_t) -> io::Result<fs::File> {
    use std::os::fd::FromRawFd;
    let c = cpath(p);
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(unsafe { fs::File::from_raw_fd(fd) })
    }
}

/// `truncate(2)` by path.
pub fn truncate_path(p: &Path, len: i64) -> io::Result<()> {
    let c = cpath(p);
    cvt(unsafe { libc::truncate(c.as_ptr(), len) })
}

/// `lchown(2)`; pass u32::MAX (-1) to leave an id unchanged.
pub fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cpath(p);
    cvt(unsafe { libc::lchown(c.as_ptr(), uid, gid) })
}

/// `utimensat(2)` setting atime and mtime to `secs` (whole seconds).
pub fn set_times(p: &Path, secs: i64) -> io::Result<()> {
    let c = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) })
}

/// `renameat2(2)` with flags (e.g. `libc::RENAME_NOREPLACE`).
pub fn rename2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let a = cpath(from);
    let b = cpath(to);
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    })
}

/// Sorted names of a directory listing.
pub fn list(p: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(p)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// Sorted names of a directory listing; panics with the errno on failure.
#[track_caller]
pub fn names(p: &Path) -> Vec<String> {
    match list(p) {
        Ok(v) => v,
        Err(e) => panic!("readdir {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

/// Writes a file, creating parent directories (for preparing origins).
pub fn put(p: &Path, content: impl AsRef<[u8]>) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
    }
    fs::write(p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

// -------------------------------------------------------- commands ----

/// Runs a command with a deadline (stdin null, stdout/stderr captured through
/// temp files so a chatty command can't block). Panics on timeout (the
/// process is killed by PID first). `timeout` is nominal, scaled by
/// [`time_factor`].
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cpu::enter();
    let timeout = scaled(timeout);
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{desc} did not finish within {timeout:?}; stderr so far:\n{}",
                read_all(&err)
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: read_all(&out).into_bytes(),
        stderr: read_all(&err).into_bytes(),
    }
}

fn read_all(f: &fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f.try_clone().unwrap();
    let mut s = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut s).unwrap();
    String::from_utf8_lossy(&s).into_owned()
}

/// Runs a command (60 s deadline) and asserts exit 0; returns stdout.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let o = run_timeout(cmd, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "{desc} failed with {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `sh -c script` (60 s deadline), asserting exit 0; returns stdout.
#[track_caller]
pub fn sh(script: &str) -> String {
    run_ok(Command::new("sh").arg("-c").arg(script))
}

// ------------------------------------------------------ mountinfo ----

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// All mounts whose mount point is `p`.
pub fn mounts_at(p: &Path) -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let mp = PathBuf::from(unescape_mountinfo(l[4]));
        if mp == p {
            v.push(MountInfo {
                mount_point: mp,
                options: l[5].to_string(),
                fs_type: r[0].to_string(),
                source: r[1].to_string(),
                super_options: r[2].to_string(),
            });
        }
    }
    v
}

/// Whether a FUSE file system is mounted at `p`.
pub fn is_fuse_mounted(p: &Path) -> bool {
    mounts_at(p).iter().any(|m| m.fs_type.starts_with("fuse"))
}

/// Lazy unmount with fusermount3 (errors ignored: it may already be gone).
pub fn force_unmount(p: &Path) {
    if let Some(fm) = fusermount3() {
        let _ = Command::new(fm)
            .args(["-u", "-z"])
            .arg(p)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

// ------------------------------------------------------ config help ----

/// A bucket with all access enabled.
pub fn bucket(name: &str, mounts: Vec<Value>) -> Value {
    json!({
        "meta": {"name": name},
        "mounts": mounts,
        "access": {"get": {"enable": true}, "put": {"enable": true}, "delete": {"enable": true}},
    })
}

/// A root mount (`mountPoint: null`) of a local origin.
pub fn root_mount(origin: &str) -> Value {
    json!({"mountPoint": null, "originPath": origin})
}

/// A mount of a local origin at `mount_point`.
pub fn mount_at(mount_point: &str, origin: &str) -> Value {
    json!({"mountPoint": mount_point, "originPath": origin})
}

/// A hidden (`expose: false`) mount at `mount_point`.
pub fn hidden_mount_at(mount_point: &str, origin: &str) -> Value {
    json!({"mountPoint": mount_point, "originPath": origin, "expose": false})
}

/// `{"stateDir": "{root}/state", "buckets": buckets}`, throttling off.
///
/// Throttling (on by default, SPEC §6.3) would hold post events back while
/// the machine is busy — and it is, with the tests running in parallel — so
/// that a test's deadline would depend on the others' load. The throttling
/// test turns it on itself. (Said here explicitly although [`write_config`]
/// would add it: the config a test prints is the config it runs.)
pub fn config(buckets: Vec<Value>) -> Value {
    json!({"stateDir": "{root}/state", "throttling": {"enable": false}, "buckets": buckets})
}

/// Replaces `{root}` in every string of `v`.
pub fn substitute_root(v: &Value, root: &Path) -> Value {
    let r = root.to_string_lossy();
    match v {
        Value::String(s) => Value::String(s.replace("{root}", &r)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_root(x, root)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute_root(x, root)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Creates stateDir and local originPaths that lie under `root` and are missing.
fn create_dirs_under_root(cfg: &Value, root: &Path) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(s) = cfg.get("stateDir").and_then(Value::as_str) {
        dirs.push(PathBuf::from(s));
    }
    let inner = cfg.pointer("/functions/backend/storgate").unwrap_or(cfg);
    if let Some(s) = inner.get("stateDir").and_then(Value::as_str) {
        dirs.push(PathBuf::from(s));
    }
    if let Some(bs) = inner.get("buckets").and_then(Value::as_array) {
        for b in bs {
            if let Some(ms) = b.get("mounts").and_then(Value::as_array) {
                for m in ms {
                    if let Some(o) = m.get("originPath").and_then(Value::as_str)
                        && o.starts_with('/')
                    {
                        dirs.push(PathBuf::from(o));
                    }
                }
            }
        }
    }
    for d in dirs {
        if d.starts_with(root) && !d.exists() {
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
        }
    }
}

/// Turns throttling off in a config (or the `functions.backend.storgate`
/// config of an envelope) that does not mention `throttling` at all, so no
/// test is throttled by accident (see the module docs).
fn throttling_off_unless_set(cfg: &mut Value) {
    let inner = if cfg.pointer("/functions/backend/storgate").is_some() {
        cfg.pointer_mut("/functions/backend/storgate")
    } else {
        Some(cfg)
    };
    if let Some(Value::Object(o)) = inner
        && o.contains_key("buckets")
        && !o.contains_key("throttling")
    {
        o.insert("throttling".into(), json!({"enable": false}));
    }
}

/// Writes `cfg` (after `{root}` substitution, creating missing dirs under
/// root, throttling off unless it says otherwise) to `<root>/<file>` and
/// returns its path.
pub fn write_config(root: &Path, cfg: &Value, file: &str) -> PathBuf {
    let mut cfg = substitute_root(cfg, root);
    throttling_off_unless_set(&mut cfg);
    create_dirs_under_root(&cfg, root);
    let p = root.join(file);
    fs::write(&p, serde_json::to_vec_pretty(&cfg).unwrap()).expect("write config");
    p
}

// ----------------------------------------------------------- Mount ----

/// Extra `storgate mount` arguments for every harness mount, from
/// `STORGATE_TEST_MOUNT_ARGS` (whitespace-separated), e.g.
/// `STORGATE_TEST_MOUNT_ARGS="-o no_passthrough"` to run the suite without
/// FUSE passthrough.
pub fn env_mount_args() -> Vec<String> {
    std::env::var("STORGATE_TEST_MOUNT_ARGS")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// How a stopped daemon ended.
#[derive(Debug)]
pub struct Stopped {
    /// Exit status, None if it did not exit within 10 s (then it was killed).
    pub status: Option<ExitStatus>,
    /// Whether the FUSE mount was still present right after the daemon exited.
    pub mounted_after_exit: bool,
}

/// A running `storgate mount -f` on `<root>/mnt`. Dropping it unmounts.
pub struct Mount {
    /// Scratch: origins, state, config, log, mount point.
    pub root: TempDir,
    /// The mount point.
    pub mnt: PathBuf,
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    watchdog: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
}

impl Mount {
    /// Mounts `config` in a fresh scratch dir; panics with the daemon's log
    /// if the mount does not come up within 20 s.
    pub fn start(config: &Value, extra_args: &[&str]) -> Mount {
        Self::start_in(scratch(), config, extra_args)
    }

    /// Like `start`, in a scratch dir the test has already filled.
    pub fn start_in(root: TempDir, config: &Value, extra_args: &[&str]) -> Mount {
        match Self::try_start_in(root, config, extra_args) {
            Ok(m) => m,
            Err(e) => panic!("storgate mount failed to come up: {e}"),
        }
    }

    /// Like `start` but returns the failure (with the daemon's log) instead.
    pub fn try_start(config: &Value, extra_args: &[&str]) -> Result<Mount, String> {
        Self::try_start_in(scratch(), config, extra_args)
    }

    /// Like `start_in` but returns the failure (with the daemon's log) instead.
    pub fn try_start_in(
        root: TempDir,
        config: &Value,
        extra_args: &[&str],
    ) -> Result<Mount, String> {
        Self::try_start_in_env(root, config, extra_args, &[])
    }

    /// Like `start_in`, with extra environment variables for the daemon
    /// (e.g. `STORGATE_WORKERS`).
    pub fn start_in_env(
        root: TempDir,
        config: &Value,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Mount {
        match Self::try_start_in_env(root, config, extra_args, env) {
            Ok(m) => m,
            Err(e) => panic!("storgate mount failed to come up: {e}"),
        }
    }

    /// Like `try_start_in`, with extra environment variables for the daemon.
    pub fn try_start_in_env(
        root: TempDir,
        config: &Value,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        cpu::enter();
        require_fuse();
        let mnt = root.path().join("mnt");
        fs::create_dir_all(&mnt).expect("create mount point");
        let config_path = write_config(root.path(), config, "storgate.json");
        let log_path = root.path().join("storgate.log");
        let log = fs::File::create(&log_path).expect("create log file");
        let mut cmd = Command::new(storgate_bin());
        cmd.arg("mount")
            .arg("-f")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .args(env_mount_args())
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if std::env::var_os("STORGATE_LOG").is_none() && std::env::var_os("RUST_LOG").is_none() {
            cmd.env("STORGATE_LOG", "info");
        }
        cmd.envs(env.iter().copied());
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", storgate_bin().display()))?;
        let pid = child.id();
        let mut m = Mount {
            root,
            mnt,
            child: Some(child),
            config_path,
            log_path,
            watchdog: None,
        };
        let start = Instant::now();
        loop {
            if is_fuse_mounted(&m.mnt) {
                break;
            }
            if let Some(st) = m.child.as_mut().unwrap().try_wait().expect("try_wait") {
                m.child = None;
                return Err(format!(
                    "daemon exited with {st} before the mount appeared; log:\n{}",
                    m.log()
                ));
            }
            if start.elapsed() > scaled(MOUNT_READY_TIMEOUT) {
                let log = m.log();
                drop(m);
                return Err(format!(
                    "mount did not appear in /proc/self/mountinfo within {:?}; log:\n{log}",
                    scaled(MOUNT_READY_TIMEOUT)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        m.watchdog = Some(start_watchdog(pid, m.mnt.clone()));
        Ok(m)
    }

    /// The daemon's stderr/stdout so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A path inside the mount.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel.trim_start_matches('/'))
    }

    /// A path inside the scratch dir (e.g. `"o1/file"` in an origin).
    pub fn scratch_path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    /// The config file written for this mount.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// PID of the daemon (None after it was stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Unmounts (SIGTERM, then fusermount3 -u -z / SIGKILL if needed).
    pub fn unmount(mut self) {
        self.teardown();
    }

    /// Sends SIGTERM and reports how the daemon ended (see `stop_with`).
    pub fn stop(&mut self) -> Stopped {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `sig` to the daemon and waits up to 10 s for it to exit. Reports
    /// its exit status (None = it had to be killed) and whether the mount was
    /// still there right after it exited (it should have unmounted itself).
    /// Anything left over is cleaned up; the scratch dir stays until drop.
    pub fn stop_with(&mut self, sig: libc::c_int) -> Stopped {
        self.stop_watchdog();
        let Some(mut child) = self.child.take() else {
            return Stopped {
                status: None,
                mounted_after_exit: is_fuse_mounted(&self.mnt),
            };
        };
        signal(child.id(), sig);
        let status = wait_child(&mut child, scaled(STOP_TIMEOUT));
        let mounted_after_exit = is_fuse_mounted(&self.mnt);
        if status.is_none() {
            force_unmount(&self.mnt);
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_fuse_mounted(&self.mnt) {
            force_unmount(&self.mnt);
        }
        Stopped {
            status,
            mounted_after_exit,
        }
    }

    /// Sends `sig` to the daemon (no waiting).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself (no signal);
    /// status None = still running (it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Stopped {
        let status = match self.child.as_mut() {
            Some(c) => wait_child(c, timeout),
            None => None,
        };
        if status.is_some() {
            self.stop_watchdog();
            self.child = None;
        }
        Stopped {
            status,
            mounted_after_exit: is_fuse_mounted(&self.mnt),
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some((tx, h)) = self.watchdog.take() {
            drop(tx);
            let _ = h.join();
        }
    }

    fn teardown(&mut self) {
        self.stop_watchdog();
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            if wait_child(&mut child, scaled(STOP_TIMEOUT)).is_none() {
                eprintln!(
                    "storgate (pid {}) did not exit within {:?} of SIGTERM; forcing",
                    child.id(),
                    scaled(STOP_TIMEOUT)
                );
                force_unmount(&self.mnt);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_fuse_mounted(&self.mnt) {
            force_unmount(&self.mnt);
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.teardown();
        if thread::panicking() {
            eprintln!(
                "---- storgate log ({}) ----\n{}\n---- end of log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// How long a mount may live before the watchdog kills it:
/// `STORGATE_TEST_MOUNT_TIMEOUT` seconds (taken as is), default 300 scaled
/// by [`time_factor`].
fn watchdog_secs() -> u64 {
    std::env::var("STORGATE_TEST_MOUNT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| scaled(Duration::from_secs(300)).as_secs())
}

fn start_watchdog(pid: u32, mnt: PathBuf) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let secs = watchdog_secs();
    let (tx, rx) = mpsc::channel::<()>();
    let h = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!(
                "watchdog: mount {} alive for {secs}s; killing storgate pid {pid} so hung calls fail",
                mnt.display()
            );
            signal(pid, libc::SIGKILL);
            force_unmount(&mnt);
        }
    });
    (tx, h)
}
/// `program args…` as `nobody` (no supplementary groups, a clean
/// environment: nothing of root's, like its pyenv, is reachable).
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ])
    .env_clear()
    .current_dir("/")
    .env("PATH", "/usr/bin:/bin")
    .env("LC_ALL", "C.UTF-8");
    c
}

pub mod bindfs;
pub mod cpu;
pub mod http;
pub mod s3;

// ------------------------------------------------ long-running mounts ----

impl Mount {
    /// Replaces the watchdog with one that fires after `secs` seconds
    /// (nominal: scaled by [`time_factor`]) from now, for tests that
    /// legitimately keep a mount longer than `STORGATE_TEST_MOUNT_TIMEOUT`,
    /// e.g. a 1 GiB S3 upload. Never shorter than the usual watchdog: a
    /// larger `STORGATE_TEST_MOUNT_TIMEOUT` (or the default) still wins.
    pub fn extend_watchdog(&mut self, secs: u64) {
        let secs = scaled(Duration::from_secs(secs))
            .as_secs()
            .max(watchdog_secs());
        self.stop_watchdog();
        let Some(pid) = self.pid() else { return };
        let mnt = self.mnt.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let h = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs))
            {
                eprintln!(
                    "watchdog: mount {} alive for {secs}s; killing storgate pid {pid} so hung calls fail",
                    mnt.display()
                );
                signal(pid, libc::SIGKILL);
                force_unmount(&mnt);
            }
        });
        self.watchdog = Some((tx, h));
    }
}

/// Polls `cond` every `every` until it holds; panics naming `what` (and
/// `detail()`) after `timeout` (nominal: scaled by [`time_factor`]).
#[track_caller]
pub fn poll(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    detail: impl Fn() -> String,
) {
    let timeout = scaled(timeout);
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                detail()
            );
        }
        thread::sleep(every);
    }
}
