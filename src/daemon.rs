//! Wiring and lifecycle of `storgate mount`: checks before mounting,
//! daemonizing (the parent exits only once the mount is ready), the FUSE
//! session with its worker threads, the origin watcher, and clean unmounting
//! on SIGTERM/SIGINT.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{MountOption, SessionACL};

use crate::config::{self, Config};
use crate::events::dispatch::Engine;
use crate::fs::error::BoxError;
use crate::fs::{Core, FsError, FsOptions};
use crate::fuse::{DEFAULT_TTL, FuseFs};

/// Why `storgate mount` could not mount, or why serving ended badly. The
/// `Display` text is what the user reads after `storgate mount: `.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("-o {opt}: unknown mount option")]
    UnknownOption { opt: String },
    #[error("-o {key}={value}: not a number")]
    NotANumber {
        key: &'static str,
        value: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("mount point {}: {source}", path.display())]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount point {}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("mount point {}: busy (something is already mounted there)", path.display())]
    Busy { path: PathBuf },
    #[error("/dev/fuse: {source} (is the fuse module loaded and fuse3 installed?)")]
    NoFuse {
        #[source]
        source: std::io::Error,
    },
    /// Building the buckets or the event engine from the config failed.
    #[error(transparent)]
    Setup(BoxError),
    /// An S3 origin's endpoint did not pass its check before mounting.
    #[error(
        "{source}\n(to mount anyway, with that origin failing until it answers: -o lazy_origins)"
    )]
    OriginDown {
        #[source]
        source: crate::origin::OriginError,
    },
    #[error(transparent)]
    Core(#[from] FsError),
    #[error("cannot mount {}: {source}", path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("FUSE session ended with an error: {0}")]
    Session(#[source] std::io::Error),
    /// A step of daemonizing (pipe, fork) failed.
    #[error("{step}: {source}")]
    Daemonize {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

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
    /// `-o lazy_origins`: mount even when an S3 origin fails its check
    /// (logged once as degraded; its calls fail until it answers).
    pub lazy_origins: bool,
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

pub fn parse_options(raw: &[String]) -> Result<MountOpts, DaemonError> {
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
            None if opt == "lazy_origins" => o.lazy_origins = true,
            None if IGNORED_OPTIONS.contains(&opt) => {}
            Some(("uid", v)) => o.uid = Some(parse_id("uid", v)?),
            Some(("gid", v)) => o.gid = Some(parse_id("gid", v)?),
            _ => {
                return Err(DaemonError::UnknownOption {
                    opt: opt.to_string(),
                });
            }
        }
    }
    Ok(o)
}

fn parse_id(key: &'static str, value: &str) -> Result<u32, DaemonError> {
    value.parse().map_err(|source| DaemonError::NotANumber {
        key,
        value: value.to_string(),
        source,
    })
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
fn preflight(args: &MountArgs) -> Result<PathBuf, DaemonError> {
    let mp = &args.mountpoint;
    let at_mp = |source| DaemonError::MountPoint {
        path: mp.clone(),
        source,
    };
    let meta = std::fs::metadata(mp).map_err(at_mp)?;
    if !meta.is_dir() {
        return Err(DaemonError::NotADirectory { path: mp.clone() });
    }
    let canon = std::fs::canonicalize(mp).map_err(at_mp)?;
    if is_mounted(&canon) {
        return Err(DaemonError::Busy { path: mp.clone() });
    }
    if let Err(source) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Err(DaemonError::NoFuse { source });
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
/// child: threads do not survive a fork. (`nix::unistd::daemon` would fork
/// too, but its parent exits at once, before it could learn whether the
/// mount came up.)
fn daemonize_and_serve(
    cfg: &Config,
    bucket: Option<&str>,
    fs_opts: FsOptions,
    mountpoint: &Path,
    opts: &MountOpts,
) -> i32 {
    let fail = |step, e: nix::errno::Errno| {
        let e = DaemonError::Daemonize {
            step,
            source: e.into(),
        };
        eprintln!("storgate mount: {e}");
        1
    };
    let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail("pipe", e),
    };
    // SAFETY: single-threaded here (no runtime, no FUSE threads yet), so
    // the child may do anything, not only async-signal-safe calls.
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Err(e) => fail("fork", e),
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            // Only the child may hold the write end: EOF means it is gone.
            drop(write_end);
            let mut status = String::new();
            let _ = File::from(read_end).read_to_string(&mut status);
            match status.strip_prefix("ready") {
                Some(_) => 0,
                None if status.is_empty() => {
                    eprintln!("storgate mount: the daemon exited before the mount was ready");
                    1
                }
                None => {
                    eprint!("storgate mount: {status}");
                    1
                }
            }
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read_end);
            // A new session: no controlling terminal, no signals from the
            // shell that started the mount. Fails only for a group leader,
            // which a fresh child is not.
            let _ = nix::unistd::setsid();
            let ready_pipe = File::from(write_end);
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
    }
}

/// The daemon's stdin is /dev/null and its log goes to `stateDir/storgate.log`.
fn redirect_stdio(state_dir: &Path) {
    let _ = crate::state::private::create_dir(state_dir);
    let log = crate::state::private::file_options()
        .create(true)
        .append(true)
        .open(state_dir.join("storgate.log"))
        .or_else(|_| std::fs::OpenOptions::new().write(true).open("/dev/null"));
    // Best effort: with nowhere to write, the daemon still serves.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    if let Ok(log) = log {
        let _ = nix::unistd::dup2_stdout(&log);
        let _ = nix::unistd::dup2_stderr(&log);
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
) -> Result<(), DaemonError> {
    // Until "ready", a failure is also the parent's to print.
    let not_ready = |ready: &mut Option<File>, e: DaemonError| {
        if let Some(p) = ready.as_mut() {
            let _ = p.write_all(format!("{e}\n").as_bytes());
        }
        e
    };
    // Before any origin is built: nothing of ours is being staged yet.
    crate::origin::s3::clean_staging(&cfg.state_dir);
    let built = (|| {
        let all = crate::bucket::build_buckets(cfg).map_err(|e| DaemonError::Setup(e.into()))?;
        check_s3_origins(&all, opts.lazy_origins)?;
        let core = Core::with_buckets(cfg, &all, bucket, fs_opts)?;
        let engine = if has_events(cfg) {
            Some(Engine::new(cfg, &all).map_err(|e| DaemonError::Setup(e.into()))?)
        } else {
            None
        };
        Ok((Arc::new(core), engine))
    })();
    let (core, engine) = built.map_err(|e| not_ready(&mut ready, e))?;
    // One watcher of the local origins for the engine and the kernel caches.
    let watcher = match crate::watch::OriginWatcher::new() {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch local origins; changes made outside the mount fire no events");
            None
        }
    };
    let mut event_threads = Vec::new();
    let scans_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut scheduler = None;
    if let Some(engine) = &engine {
        core.set_engine(engine.clone());
        event_threads = engine.start_workers(crate::events::dispatch::worker_count());
        if let Some(w) = &watcher {
            let e = engine.clone();
            w.subscribe(Arc::new(move |ev: &notify::Event| e.origin_event(ev)));
            w.watch(&engine.notify_roots());
        }
        // Pollers and reconcilers start once inotify watches; their first
        // rounds run while the mount comes up.
        engine.start_change_detection();
        scheduler = crate::batch::scheduler::start(
            Arc::new(cfg.clone()),
            engine.clone(),
            scans_stop.clone(),
        );
    }
    raise_fd_limit();
    // New entries get exactly the mode the client asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
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
        fuse_config.acl = if nix::unistd::getuid().is_root() {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
    }
    fuse_config.n_threads = Some(worker_threads());
    fuse_config.clone_fd = true;

    let session = crate::fuse::mount(
        FuseFs::new(core.clone(), !opts.no_passthrough),
        mountpoint,
        &fuse_config,
    );
    let mut session = session.map_err(|source| {
        let e = DaemonError::Mount {
            path: mountpoint.to_path_buf(),
            source,
        };
        not_ready(&mut ready, e)
    })?;
    let notifier = session.notifier();
    let mut unmounter = session.unmount_callable();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]);
    match signals {
        Ok(mut signals) => {
            let mp = mountpoint.to_path_buf();
            // One thread for the life of the mount (not per request).
            let spawned = std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        tracing::info!(signal = sig, "unmounting {}", mp.display());
                        if let Err(e) = unmounter.unmount() {
                            tracing::warn!(error = %e, "unmount failed; detaching lazily");
                            lazy_unmount(&mp);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot handle signals");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle signals"),
    }
    // Watching can take a while on big trees; the mount is usable meanwhile.
    if let Some(w) = watcher.clone() {
        let watch_core = core.clone();
        std::thread::spawn(move || {
            let cache: Arc<dyn crate::fs::watch::KernelCache> = Arc::new(notifier);
            let c = watch_core.clone();
            w.subscribe(Arc::new(move |ev: &notify::Event| {
                crate::fs::watch::invalidate(&c, cache.as_ref(), ev)
            }));
            w.watch(&watch_core.local_roots());
        });
    }
    tracing::info!(
        mountpoint = %mountpoint.display(),
        buckets = core.bucket_count(),
        state_dir = %cfg.state_dir.display(),
        "mounted"
    );
    if let Some(mut p) = ready.take() {
        let _ = p.write_all(b"ready\n");
    }
    let served = session.run().map_err(DaemonError::Session);
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

/// Checks every S3 origin (in parallel, each within its endpoint's
/// timeout) before the mount is reported ready: the first failure is the
/// mount's, unless `lazy`, which logs each failed origin once as degraded.
fn check_s3_origins(buckets: &[crate::bucket::BucketState], lazy: bool) -> Result<(), DaemonError> {
    let mut origins: Vec<&Arc<crate::origin::S3Origin>> = Vec::new();
    for o in buckets.iter().flat_map(|b| &b.origins) {
        if let crate::origin::Backend::S3(s3) = o
            && !origins.iter().any(|seen| seen.describe() == s3.describe())
        {
            origins.push(s3);
        }
    }
    let failures: Vec<crate::origin::OriginError> = std::thread::scope(|scope| {
        let checks: Vec<_> = origins
            .iter()
            .map(|o| scope.spawn(move || o.check()))
            .collect();
        checks
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(res) => res.err(),
                Err(_) => Some(crate::origin::OriginError::new(
                    crate::error::Errno::EIO,
                    "the S3 origin check panicked",
                )),
            })
            .collect()
    });
    for source in failures {
        if !lazy {
            return Err(DaemonError::OriginDown { source });
        }
        tracing::warn!(origin = %source,
            "S3 origin degraded (-o lazy_origins): mounted anyway; its calls fail until its endpoint answers");
    }
    Ok(())
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

/// umount2(MNT_DETACH). Raw libc: nix's `umount2` sits behind its `mount`
/// feature, which the crate does not enable.
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

/// Raises the soft limit of open files to the hard one: the mount's open
/// files, inotify and the pollers' walks (one fd per directory level) share
/// it, and the default soft limit of 1024 is soon reached on a busy share.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid output struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return;
    }
    let wanted = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: a valid input struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
    }
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
                lazy_origins: false,
            }
        );
        assert!(
            parse_options(&["lazy_origins".into()])
                .unwrap()
                .lazy_origins
        );
        assert_eq!(
            parse_options(&["uid=x".into()]).unwrap_err().to_string(),
            "-o uid=x: not a number"
        );
        assert_eq!(
            parse_options(&["gid=-1".into()]).unwrap_err().to_string(),
            "-o gid=-1: not a number"
        );
        assert_eq!(
            parse_options(&["bogus".into()]).unwrap_err().to_string(),
            "-o bogus: unknown mount option"
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
    }
}
