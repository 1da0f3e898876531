//! A `bindfs` pass-through mount for the change-detection tests (TESTING.md
//! layer 7): the test writes the backing directory directly, the daemon
//! watches the FUSE view of it — like a share that another host writes, the
//! writes reach the origin without any inotify event on it.
//!
//! ```ignore
//! let share = Bindfs::mount(&backing, &view); // bindfs -f backing view
//! fs::write(backing.join("f"), b"x").unwrap(); // "the other host"
//! assert!(view.join("f").exists());
//! drop(share); // fusermount -u view, then the process ends
//! ```
//!
//! bindfs runs in the foreground (`-f`) as a child of the test, so it is
//! known and ended by its own PID only. Dropping a [`Bindfs`] always
//! unmounts: `fusermount -u` (bindfs links libfuse 2; `fusermount3` as a
//! fallback), lazily (`-z`, then `umount -l`) when the mount is still busy,
//! and SIGKILL of that PID if the process does not end. Drop the storgate
//! mount that uses the view *before* its `Bindfs` (declare the `Bindfs`
//! first: locals drop in reverse order), or the unmount is lazy.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{is_fuse_mounted, scaled};

/// How long the mount may take to appear (nominal, scaled).
const READY: Duration = Duration::from_secs(10);
/// How long bindfs may take to exit once unmounted (nominal, scaled).
const EXIT: Duration = Duration::from_secs(5);

/// A running `bindfs -f BACKING VIEW`; dropping it unmounts VIEW.
pub struct Bindfs {
    /// The backing directory (what the test writes).
    pub backing: PathBuf,
    /// The FUSE view of it (the daemon's origin).
    pub view: PathBuf,
    child: Option<Child>,
}

/// `bindfs` on the usual paths (scripts/test.sh installs the Debian package).
fn bindfs_bin() -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("bindfs");
        if p.exists() {
            return p;
        }
    }
    panic!("bindfs is missing: the change-detection tests need it (apt-get install bindfs)");
}

impl Bindfs {
    /// Mounts `backing` at `view` (both created when missing); panics with
    /// bindfs's own words if the mount does not come up.
    pub fn mount(backing: &Path, view: &Path) -> Bindfs {
        super::require_fuse();
        for d in [backing, view] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
        }
        let log = tempfile::tempfile().expect("tempfile for bindfs's stderr");
        let child = Command::new(bindfs_bin())
            .arg("-f")
            .arg(backing)
            .arg(view)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone().expect("dup bindfs log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn bindfs: {e}"));
        let mut b = Bindfs {
            backing: backing.to_path_buf(),
            view: view.to_path_buf(),
            child: Some(child),
        };
        let start = Instant::now();
        while !is_fuse_mounted(view) {
            let exited = b.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                b.child = None;
                panic!(
                    "bindfs {} {} exited with {st} before mounting: {}",
                    backing.display(),
                    view.display(),
                    read_log(&log)
                );
            }
            if start.elapsed() > scaled(READY) {
                drop(b);
                panic!(
                    "bindfs did not mount {} within {:?}: {}",
                    view.display(),
                    scaled(READY),
                    read_log(&log)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        b
    }
}

fn read_log(f: &fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match f.try_clone() {
        Ok(f) => f,
        Err(e) => return format!("(log unreadable: {e})"),
    };
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s
}

/// Runs an unmount command quietly; whether it succeeded.
fn quiet(cmd: &str, args: &[&str], path: &Path) -> bool {
    Command::new(cmd)
        .args(args)
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        if is_fuse_mounted(&self.view) {
            let _ = quiet("fusermount", &["-u"], &self.view)
                || quiet("fusermount3", &["-u"], &self.view)
                || quiet("fusermount", &["-u", "-z"], &self.view)
                || quiet("umount", &["-l"], &self.view);
        }
        if let Some(mut child) = self.child.take() {
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if start.elapsed() > scaled(EXIT) {
                    eprintln!(
                        "bindfs (pid {}) did not exit after the unmount of {}; killing it",
                        child.id(),
                        self.view.display()
                    );
                    // Child::kill signals this PID only (SIGKILL).
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        if is_fuse_mounted(&self.view) {
            let _ = quiet("umount", &["-l"], &self.view);
        }
    }
}
