//! Temporary outputs inside local origins (SPEC §9.1): created beneath the
//! origin's root fd, published by one `renameat`, removed by their guard when
//! a write fails — and, when the process dies first, by the next start.
//!
//! A crash leaves temp files in origin directories that nothing lists. So
//! before a temp is created its place is appended to an intent log in the
//! writer's temporary directory (`stateDir/tmp` for the daemon, a run's
//! private dir for `batch run`/`workflow run`). The log is held under an
//! exclusive lock for the life of the process; [`clean_logs`] (the daemon's
//! start) replays every log it can lock — their writers are gone — removing
//! the temps still there, and then the log. A plain `write` reaches the page
//! cache, which survives a `kill -9`; no fsync per output.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use nix::fcntl::AtFlags;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::selfchange_shared::{hex, unhex};
use super::store::TMP_PREFIX;
use crate::error::{Errno, FsResult, check};
use crate::origin::beneath::Root;

/// Name of the intent log in a temporary directory (prefixed, so the
/// start-up cleaning of `stateDir/tmp` knows it).
pub const INTENT_LOG: &str = ".storgate.tmp.outputs";

/// The intent logs this process writes, one per temporary directory. A
/// process-wide table rather than a handle passed down: the stores that
/// write outputs are built in many places, and the log must be opened (and
/// locked) once and held for the whole life of the process.
fn logs() -> &'static Mutex<HashMap<PathBuf, Arc<Mutex<File>>>> {
    static LOGS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<File>>>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

fn log_for(tmp_dir: &Path) -> std::io::Result<Arc<Mutex<File>>> {
    let mut map = logs().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(f) = map.get(tmp_dir) {
        return Ok(f.clone());
    }
    crate::state::private::own_dir(tmp_dir)?;
    // O_NOFOLLOW: the log is root's; a symlink planted in its place is
    // refused rather than appended to.
    let file = crate::state::private::file_options()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp_dir.join(INTENT_LOG))?;
    // Held while the process lives: a start-up cleaning elsewhere leaves the
    // log (and the temps it lists) of a live writer alone.
    if file.try_lock().is_err() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "intent log held by another process",
        ));
    }
    let file = Arc::new(Mutex::new(file));
    map.insert(tmp_dir.to_path_buf(), file.clone());
    Ok(file)
}

/// One intent: `hex(root) hex(dir, '/'-joined) name`. Hex keeps any bytes
/// of a path on one line.
fn intent_line(root: &Path, dir: &[OsString], name: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    for (i, c) in dir.iter().enumerate() {
        if i > 0 {
            joined.push(b'/');
        }
        joined.extend_from_slice(c.as_bytes());
    }
    let mut line = hex(root.as_os_str().as_bytes()).into_bytes();
    line.push(b' ');
    line.extend_from_slice(hex(&joined).as_bytes());
    line.push(b' ');
    line.extend_from_slice(name);
    line.push(b'\n');
    line
}

/// A temporary output file in an origin directory: removed when dropped
/// unless [`OriginTemp::publish`]ed.
pub struct OriginTemp {
    dir: OwnedFd,
    name: CString,
    /// Open until published: closed before the rename, because the close of
    /// a written fd after it would reach an inotify watcher as a new
    /// close-after-write of the published name.
    file: Option<File>,
    published: bool,
}

impl OriginTemp {
    /// Creates a new temp (mode `mode`) in directory `dir` of `root`, after
    /// logging the intent in `tmp_dir`'s log.
    pub fn create(
        root: &Root,
        dir: &[OsString],
        tmp_dir: &Path,
        mode: u32,
    ) -> std::io::Result<OriginTemp> {
        let fd = root.dir(dir).map_err(io)?;
        let fd = fd.as_fd().try_clone_to_owned()?;
        let log = log_for(tmp_dir)?;
        for _ in 0..16 {
            let name = format!("{TMP_PREFIX}{:016x}", rand_u64());
            let line = intent_line(root.path(), dir, name.as_bytes());
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(&line)?;
            let c = CString::new(name).map_err(std::io::Error::other)?;
            // SAFETY: a directory fd and a valid C string; the fd is owned
            // by the File below.
            let r = unsafe {
                libc::openat(
                    fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_RDWR
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    mode as libc::c_uint,
                )
            };
            match check(r) {
                // SAFETY: just opened, owned by nobody else.
                Ok(f) => {
                    return Ok(OriginTemp {
                        dir: fd,
                        name: c,
                        file: Some(unsafe { File::from_raw_fd(f) }),
                        published: false,
                    });
                }
                Err(e) if e == Errno::EEXIST => continue,
                Err(e) => return Err(io(e)),
            }
        }
        Err(io(Errno::EEXIST))
    }

    /// The open temp file.
    pub fn file(&self) -> &File {
        // Only `publish` takes it, and it consumes the temp.
        self.file.as_ref().expect("temp file open until published")
    }

    /// A path that opens exactly this file, for producers that take a path
    /// (`/proc/self/fd/N` re-opens the inode the fd holds, not a name).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file().as_raw_fd()))
    }

    /// Whether the temp's name still holds the file this guard wrote. The
    /// directory may be a client's (an output beside its item): a client
    /// that replaced the name meanwhile must not get its own file
    /// published as the output, nor have it unlinked by the guard.
    fn is_ours(&self) -> bool {
        let on_disk = nix::sys::stat::fstatat(
            &self.dir,
            self.name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        let Some(file) = self.file.as_ref() else {
            return false;
        };
        let ours = nix::sys::stat::fstat(file.as_fd());
        matches!((on_disk, ours), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
    }

    /// Renames the temp onto `name` in directory `to` (same file system).
    /// A temp whose name no longer holds it (replaced by a client) fails
    /// with ESTALE and is left as the client made it.
    pub fn publish(mut self, to: &impl AsRawFd, name: &CString) -> FsResult<()> {
        if !self.is_ours() {
            self.published = true;
            return Err(Errno(libc::ESTALE));
        }
        drop(self.file.take());
        // SAFETY: directory fds and valid C strings.
        check(unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                to.as_raw_fd(),
                name.as_ptr(),
            )
        })?;
        self.published = true;
        Ok(())
    }
}

impl Drop for OriginTemp {
    fn drop(&mut self) {
        if !self.published && self.is_ours() {
            let _ = unlinkat(&self.dir, self.name.as_c_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.0)
}

/// Random bits for temp names (collisions are retried, so quality does not
/// matter; the std hasher is seeded randomly per process).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// Replays the intent log at `log` if no live process holds it: removes the
/// temps it lists that still exist, then the log. Returns how many temps
/// were removed; a log still held is left alone (`None`).
pub fn replay_log(log: &Path) -> Option<usize> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(log)
        .ok()?;
    if file.try_lock().is_err() {
        return None;
    }
    let mut removed = 0;
    for line in std::io::BufReader::new(&file)
        .split(b'\n')
        .map_while(Result::ok)
    {
        let text = String::from_utf8_lossy(&line);
        let mut parts = text.split(' ');
        let (Some(root), Some(dir), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        // Only our own temp names are ever removed, whatever the log says.
        if !name.starts_with(TMP_PREFIX) || name.contains('/') {
            continue;
        }
        let (Some(root), Some(dir)) = (unhex(root), unhex(dir)) else {
            continue;
        };
        let Ok(root) = Root::open(PathBuf::from(std::ffi::OsStr::from_bytes(&root))) else {
            continue;
        };
        let comps: Vec<OsString> = if dir.is_empty() {
            Vec::new()
        } else {
            dir.split(|b| *b == b'/')
                .map(|c| std::ffi::OsStr::from_bytes(c).to_os_string())
                .collect()
        };
        let Ok(d) = root.dir(&comps) else { continue };
        if nix::sys::stat::fstatat(&d, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
            && unlinkat(&d, name, UnlinkatFlags::NoRemoveDir).is_ok()
        {
            removed += 1;
        }
    }
    let _ = std::fs::remove_file(log);
    Some(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_temp_is_removed_and_a_published_one_stays() {
        let origin = tempfile::tempdir().expect("tmp");
        let state = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(origin.path().join("d")).expect("mkdir");
        let root = Root::open(origin.path()).expect("root");
        let dir = vec![OsString::from("d")];
        let t = OriginTemp::create(&root, &dir, state.path(), 0o640).expect("temp");
        std::fs::write(t.path(), b"data").expect("write via /proc");
        drop(t);
        assert_eq!(
            std::fs::read_dir(origin.path().join("d"))
                .expect("ls")
                .count(),
            0
        );
        let t = OriginTemp::create(&root, &dir, state.path(), 0o640).expect("temp");
        std::fs::write(t.path(), b"data").expect("write via /proc");
        let d = root.dir(&dir).expect("dir");
        t.publish(&d, &c"out".to_owned()).expect("publish");
        assert_eq!(
            std::fs::read(origin.path().join("d/out")).expect("read"),
            b"data"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(origin.path().join("d/out"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_temp_replaced_by_a_client_is_neither_published_nor_unlinked() {
        let origin = tempfile::tempdir().expect("tmp");
        let state = tempfile::tempdir().expect("tmp");
        let root = Root::open(origin.path()).expect("root");
        let name_of = |dir: &Path| {
            std::fs::read_dir(dir)
                .expect("ls")
                .map(|e| e.expect("entry").file_name())
                .find(|n| n.as_bytes().starts_with(TMP_PREFIX.as_bytes()))
                .expect("the temp")
        };
        for publish in [true, false] {
            let t = OriginTemp::create(&root, &[], state.path(), 0o644).expect("temp");
            std::fs::write(t.path(), b"output").expect("write via /proc");
            // The client moves the temp away and puts its own file there.
            let name = name_of(origin.path());
            let planted = origin.path().join(&name);
            std::fs::rename(&planted, origin.path().join("moved")).expect("rename");
            std::fs::write(&planted, b"client's").expect("plant");
            if publish {
                let d = root.dir(&[]).expect("dir");
                assert_eq!(
                    t.publish(&d, &c"out".to_owned()).err(),
                    Some(Errno(libc::ESTALE))
                );
                assert!(!origin.path().join("out").exists(), "nothing published");
            } else {
                drop(t);
            }
            assert_eq!(std::fs::read(&planted).expect("read"), b"client's");
            std::fs::remove_file(&planted).expect("rm");
            std::fs::remove_file(origin.path().join("moved")).expect("rm");
        }
    }

    #[test]
    fn a_crashed_writers_temps_are_removed_by_the_replay() {
        let origin = tempfile::tempdir().expect("tmp");
        let state = tempfile::tempdir().expect("tmp");
        let root = Root::open(origin.path()).expect("root");
        let t = OriginTemp::create(&root, &[], state.path(), 0o600).expect("temp");
        // A crash: the guard never runs.
        std::mem::forget(t);
        let log = state.path().join(INTENT_LOG);
        // Still held by this (live) process: left alone.
        assert_eq!(replay_log(&log), None);
        assert_eq!(std::fs::read_dir(origin.path()).expect("ls").count(), 1);
        // The process "dies": its table entry (and lock) goes.
        logs().lock().expect("lock").remove(state.path());
        // A hostile line naming a file that is not ours is ignored.
        let mut f = OpenOptions::new().append(true).open(&log).expect("log");
        std::fs::write(origin.path().join("keep"), b"x").expect("write");
        f.write_all(&intent_line(origin.path(), &[], b"keep"))
            .expect("line");
        drop(f);
        assert_eq!(replay_log(&log), Some(1));
        let left: Vec<_> = std::fs::read_dir(origin.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![OsString::from("keep")]);
        assert!(!log.exists());
    }
}
