//! Wiring and lifecycle of `storgate mount`: checks before mounting,
//! daemonizing (the parent exits only once the mount is ready), the FUSE
//! session with its worker threads, the origin watcher, and clean unmounting
//! on SIGTERM/SIGINT.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{MountOption, SessionACL};

use crate::config::{self, Config};
use crate::events::dispatch::Engine;
use crate::fs::{Core, FsOptions};
use crate::fuse::{DEFAULT_TTL, FuseFs};

/// Everything `storgate mount` was asked to do.
#[derive(Debug, Clone)]
pub struct MountArgs {
    pub config: PathBuf,
    pub bucket: Option<String>,
    pub foreground: bool,
    pub options: Vec<String>,
    pub mountpoint: PathBuf,
}

/// Mount options after parsing `-o`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountOpts {
    pub allow_other: bool,
    pub read_only: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `-o no_passthrough`: serve every read and write in the daemon.
    pub no_passthrough: bool,
}

/// Options that mount(8) and fstab pass along and that mean nothing here.
const IGNORED_OPTIONS: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "default_permissions",
];

pub fn parse_options(raw: &[String]) -> Result<MountOpts, String> {
    let mut o = MountOpts::default();
    for opt in raw
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        match opt.split_once('=') {
            None if opt == "allow_other" => o.allow_other = true,
            None if opt == "ro" => o.read_only = true,
            None if opt == "no_passthrough" => o.no_passthrough = true,
            None if IGNORED_OPTIONS.contains(&opt) => {}
            Some(("uid", v)) => {
                o.uid = Some(v.parse().map_err(|_| format!("-o uid={v}: not a number"))?)
            }
            Some(("gid", v)) => {
                o.gid = Some(v.parse().map_err(|_| format!("-o gid={v}: not a number"))?)
            }
            _ => return Err(format!("-o {opt}: unknown mount option")),
        }
    }
    Ok(o)
}

/// Is `path` a mount point already (listed in /proc/self/mountinfo)?
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
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

/// Checks that can fail before anything is mounted, with the reason a user
/// needs to fix them.
fn preflight(args: &MountArgs) -> Result<PathBuf, String> {
    let mp = &args.mountpoint;
    let meta = std::fs::metadata(mp).map_err(|e| format!("mount point {}: {e}", mp.display()))?;
    if !meta.is_dir() {
        return Err(format!("mount point {}: not a directory", mp.display()));
    }
    let canon =
        std::fs::canonicalize(mp).map_err(|e| format!("mount point {}: {e}", mp.display()))?;
    if is_mounted(&canon) {
        return Err(format!(
            "mount point {}: busy (something is already mounted there)",
            mp.display()
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Err(format!(
            "/dev/fuse: {e} (is the fuse module loaded and fuse3 installed?)"
        ));
    }
    Ok(canon)
}

/// Runs `storgate mount`; returns the process exit code.
pub fn run_mount(args: MountArgs) -> i32 {
    let cfg = match config::load(&args.config) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            loaded.config
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 2;
        }
    };
    let opts = match parse_options(&args.options) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("storgate mount: {e}");
            return 1;
        }
    };
    let mountpoint = match preflight(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("storgate mount: {e}");
            return 1;
        }
    };
    let fs_opts = FsOptions {
        read_only: opts.read_only,
        uid: opts.uid,
        gid: opts.gid,
        attr_ttl: DEFAULT_TTL,
    };
    let bucket = args.bucket.as_deref();
    if args.foreground {
        init_logging();
        return match serve(&cfg, bucket, fs_opts, &mountpoint, &opts, None) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("storgate mount: {e}");
                1
            }
        };
    }
    daemonize_and_serve(&cfg, bucket, fs_opts, &mountpoint, &opts)
}

fn init_logging() {
    let filter = std::env::var("STORGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Forks: the child mounts and serves; the parent waits on a pipe until the
/// child reports the mount ready (exit 0) or failed (exit 1, reason printed).
/// The core (and with it the I/O runtime and its threads) is built in the
/// child: threads do not survive a fork.
fn daemonize_and_serve(
    cfg: &Config,
    bucket: Option<&str>,
    fs_opts: FsOptions,
    mountpoint: &Path,
    opts: &MountOpts,
) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!("storgate mount: pipe: {}", std::io::Error::last_os_error());
        return 1;
    }
    // SAFETY: single-threaded here (no runtime, no FUSE threads yet).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("storgate mount: fork: {}", std::io::Error::last_os_error());
        return 1;
    }
    if pid > 0 {
        // SAFETY: fds[1] is ours to close; fds[0] becomes the File.
        unsafe { libc::close(fds[1]) };
        let mut status = String::new();
        // SAFETY: fds[0] is an open pipe end owned by nobody else.
        let mut r = unsafe { File::from_raw_fd(fds[0]) };
        let _ = r.read_to_string(&mut status);
        return match status.strip_prefix("ready") {
            Some(_) => 0,
            None if status.is_empty() => {
                eprintln!("storgate mount: the daemon exited before the mount was ready");
                1
            }
            None => {
                eprint!("storgate mount: {status}");
                1
            }
        };
    }
    // Child.
    // SAFETY: fds[0] is ours to close.
    unsafe {
        libc::close(fds[0]);
        libc::setsid();
    }
    // SAFETY: fds[1] is an open pipe end owned by nobody else.
    let ready_pipe = unsafe { File::from_raw_fd(fds[1]) };
    redirect_stdio(&cfg.state_dir);
    init_logging();
    let code = match serve(cfg, bucket, fs_opts, mountpoint, opts, Some(ready_pipe)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    std::process::exit(code);
}

/// The daemon's stdin is /dev/null and its log goes to `stateDir/storgate.log`.
fn redirect_stdio(state_dir: &Path) {
    let _ = std::fs::create_dir_all(state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("storgate.log"))
        .or_else(|_| std::fs::OpenOptions::new().write(true).open("/dev/null"));
    let null = std::fs::File::open("/dev/null");
    // SAFETY: dup2 onto the standard descriptors of this process.
    unsafe {
        if let Ok(n) = null {
            libc::dup2(n.into_raw_fd(), 0);
        }
        if let Ok(l) = log {
            let fd = l.into_raw_fd();
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
    }
}

/// Mounts and serves until unmounted. `ready` (daemon mode) hears "ready"
/// once the kernel mount exists, or the reason it could not be made.
fn serve(
    cfg: &Config,
    bucket: Option<&str>,
    fs_opts: FsOptions,
    mountpoint: &Path,
    opts: &MountOpts,
    mut ready: Option<File>,
) -> Result<(), String> {
    let all = crate::bucket::build_buckets(cfg).map_err(|e| e.to_string());
    let built = all.and_then(|all| {
        let core = Core::with_buckets(cfg, &all, bucket, fs_opts)?;
        let engine = if has_events(cfg) {
            Some(Engine::new(cfg, &all)?)
        } else {
            None
        };
        Ok((Arc::new(core), engine))
    });
    let (core, engine) = match built {
        Ok(b) => b,
        Err(e) => {
            if let Some(p) = ready.as_mut() {
                let _ = p.write_all(format!("{e}\n").as_bytes());
            }
            return Err(e);
        }
    };
    let mut event_threads = Vec::new();
    let scans_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut scheduler = None;
    if let Some(engine) = &engine {
        core.set_engine(engine.clone());
        event_threads = engine.start_workers(crate::events::dispatch::worker_count());
        // Lives as long as the process.
        if let Some(w) = engine.start_watcher() {
            std::mem::forget(w);
        }
        scheduler = crate::batch::scheduler::start(
            Arc::new(cfg.clone()),
            engine.clone(),
            scans_stop.clone(),
        );
    }
    // New entries get exactly the mode the client asked for.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("storgate".into()),
        MountOption::Subtype("storgate".into()),
        MountOption::DefaultPermissions,
    ];
    if opts.read_only {
        fuse_config.mount_options.push(MountOption::RO);
    }
    if opts.allow_other {
        fuse_config.acl = SessionACL::All;
    } else {
        // SAFETY: getuid has no preconditions.
        fuse_config.acl = if unsafe { libc::getuid() } == 0 {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
    }
    fuse_config.n_threads = Some(worker_threads());
    fuse_config.clone_fd = true;

    let session = fuser::Session::new(
        FuseFs::new(core.clone(), !opts.no_passthrough),
        mountpoint,
        &fuse_config,
    );
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount {}: {e}\n", mountpoint.display());
            if let Some(p) = ready.as_mut() {
                let _ = p.write_all(msg.as_bytes());
            }
            return Err(msg.trim_end().to_string());
        }
    };
    let notifier = session.notifier();
    let mut unmounter = session.unmount_callable();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    match signals {
        Ok(mut signals) => {
            let mp = mountpoint.to_path_buf();
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "unmounting {}", mp.display());
                    if let Err(e) = unmounter.unmount() {
                        tracing::warn!(error = %e, "unmount failed; detaching lazily");
                        lazy_unmount(&mp);
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle signals"),
    }
    // Watching can take a while on big trees; the mount is usable meanwhile.
    let watch_core = core.clone();
    std::thread::spawn(move || {
        match crate::fs::watch::start(watch_core, Arc::new(notifier)) {
            // The watcher lives as long as the process.
            Ok(w) => std::mem::forget(w),
            Err(e) => tracing::warn!(error = %e, "origin watcher not started"),
        }
    });
    tracing::info!(
        mountpoint = %mountpoint.display(),
        buckets = core.bucket_count(),
        state_dir = %cfg.state_dir.display(),
        "mounted"
    );
    if let Some(mut p) = ready.take() {
        let _ = p.write_all(b"ready\n");
    }
    let served = session
        .run()
        .map_err(|e| format!("FUSE session ended with an error: {e}"));
    tracing::info!("unmounted {}", mountpoint.display());
    if let Some(engine) = &engine {
        // Running items finish; pending ones stay journaled for next time,
        // scans keep their cursors.
        scans_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        engine.shutdown();
        if let Some(s) = scheduler.take() {
            let _ = s.join();
        }
        for t in event_threads {
            let _ = t.join();
        }
    }
    served
}

/// Whether any enabled bucket has an enabled event (onBatch included).
fn has_events(cfg: &Config) -> bool {
    cfg.buckets.iter().any(|b| {
        b.meta.enable
            && ([&b.events.on_get, &b.events.on_put, &b.events.on_delete]
                .iter()
                .any(|e| e.enable && e.trigger.is_some())
                || b.events.on_batch.iter().any(|e| e.enable))
    })
}

fn lazy_unmount(mp: &Path) {
    if let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 4).clamp(4, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = parse_options(&["allow_other,ro,uid=12,gid=34,_netdev".into()]).unwrap();
        assert_eq!(
            o,
            MountOpts {
                allow_other: true,
                read_only: true,
                uid: Some(12),
                gid: Some(34),
                no_passthrough: false,
            }
        );
        assert_eq!(
            parse_options(&["uid=x".into()]).unwrap_err(),
            "-o uid=x: not a number"
        );
        assert_eq!(
            parse_options(&["bogus".into()]).unwrap_err(),
            "-o bogus: unknown mount option"
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
    }
}
