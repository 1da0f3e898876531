//! A local origin (or one directory of it) listed as a stream of
//! `(key, lstat)` in component order: each directory's names are read with
//! `getdents` through its own fd, sorted, stat'ed with `fstatat` and entered
//! with `openat(O_NOFOLLOW)` relative to that fd — never by a path, so a
//! client's symlink cannot lead the walk out of the origin (SPEC §9.1).
//! Memory: the names of the directories on the current path, not the tree.

use std::ffi::{CStr, CString, OsString};
use std::os::fd::AsFd;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};

use crate::bucket::store::TMP_PREFIX;
use crate::error::FsResult;
use crate::origin::beneath::Root;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

struct Level {
    dir: Dir,
    names: std::vec::IntoIter<CString>,
    /// Key of this directory followed by `/` (empty at the start).
    prefix: Vec<u8>,
}

/// How deep a walk descends below its start. Each level holds one open
/// directory fd; a client that nests directories thousands deep must not
/// exhaust the daemon's fds and stall change detection for everyone.
pub const MAX_DEPTH: usize = 256;

/// The walk; [`Walk::next_entry`] yields entries in key order.
pub struct Walk {
    stack: Vec<Level>,
    max_depth: usize,
    /// Directories not entered because of the depth limit.
    pub too_deep: u64,
    /// Keys of directories that could not be read (EACCES: a root-squashed
    /// NFS share), in key order: what is below them is unknown, not gone.
    unreadable: Vec<Vec<u8>>,
}

/// The names in `dir` (without `.`, `..` and storgate's temporaries), sorted.
fn sorted_names(dir: &mut Dir) -> FsResult<Vec<CString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." || bytes.starts_with(TMP_PREFIX.as_bytes()) {
            continue;
        }
        names.push(name.to_owned());
    }
    names.sort_unstable();
    Ok(names)
}

fn level(dir: Dir, prefix: Vec<u8>) -> FsResult<Level> {
    let mut dir = dir;
    let names = sorted_names(&mut dir)?;
    Ok(Level {
        dir,
        names: names.into_iter(),
        prefix,
    })
}

impl Walk {
    /// A walk of directory `start` beneath `root` (its entries, not itself).
    pub fn new(root: &Root, start: &[OsString]) -> FsResult<Walk> {
        let at = root.dir(start)?;
        let dir = Dir::openat(at.as_fd(), c".", DIR_FLAGS, Mode::empty())?;
        let mut prefix = Vec::new();
        for c in start {
            prefix.extend_from_slice(c.as_encoded_bytes());
            prefix.push(b'/');
        }
        Ok(Walk {
            stack: vec![level(dir, prefix)?],
            max_depth: MAX_DEPTH,
            too_deep: 0,
            unreadable: Vec::new(),
        })
    }

    /// Whether `key` lies below a directory the walk could not read.
    pub fn covers_unreadable(&self, key: &[u8]) -> bool {
        self.unreadable
            .iter()
            .any(|d| key.len() > d.len() && key.starts_with(d) && key[d.len()] == b'/')
    }

    pub fn unreadable_count(&self) -> u64 {
        self.unreadable.len() as u64
    }

    /// The same walk with another depth limit.
    pub fn max_depth(mut self, depth: usize) -> Walk {
        self.max_depth = depth.max(1);
        self
    }

    /// The next entry, or `Ok(None)` at the end. An entry that vanishes
    /// while it is being listed is left out (it is gone); any other error
    /// ends the walk, because the entries it would have listed would
    /// otherwise look deleted.
    pub fn next_entry(&mut self) -> FsResult<Option<(Vec<u8>, libc::stat)>> {
        loop {
            let depth = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(name) = top.names.next() else {
                self.stack.pop();
                continue;
            };
            let st = match fstatat(&top.dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut key = top.prefix.clone();
            key.extend_from_slice(name.to_bytes());
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR && depth >= self.max_depth {
                self.too_deep += 1;
            } else if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let opened =
                    Dir::openat(top.dir.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty())
                        .map_err(crate::error::Errno::from)
                        .and_then(|dir| {
                            let mut prefix = key.clone();
                            prefix.push(b'/');
                            level(dir, prefix)
                        });
                match opened {
                    Ok(l) => self.stack.push(l),
                    Err(e)
                        if e == crate::error::Errno::EACCES || e == crate::error::Errno::EPERM =>
                    {
                        self.unreadable.push(key.clone());
                    }
                    // Replaced by a file or a symlink since the stat, or gone:
                    // the next round sees what it became.
                    Err(e)
                        if e == crate::error::Errno::ENOENT
                            || e == crate::error::Errno::ENOTDIR
                            || e == crate::error::Errno(libc::ELOOP) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Some((key, st)));
        }
    }
}

/// The components of a key.
pub fn key_comps(key: &[u8]) -> Vec<OsString> {
    use std::os::unix::ffi::OsStringExt;
    key.split(|&b| b == b'/')
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

/// `fstatat` of one key below `root`, not following a final symlink.
pub fn stat_key(root: &Root, key: &[u8]) -> FsResult<libc::stat> {
    let (dir, name) = root.parent(&key_comps(key))?;
    let name: &CStr = name.as_c_str();
    Ok(fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(root: &Root, start: &[OsString]) -> Vec<String> {
        let mut w = Walk::new(root, start).expect("walk");
        let mut out = Vec::new();
        while let Some((k, _)) = w.next_entry().expect("entry") {
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        out
    }

    #[test]
    fn lists_in_component_order_without_following_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let o = d.path().join("origin");
        for dir in ["a/x", "a-b", "c"] {
            std::fs::create_dir_all(o.join(dir)).expect("mkdir");
        }
        std::fs::write(o.join("a/x/f"), b"1").expect("write");
        std::fs::write(o.join("a-b/g"), b"2").expect("write");
        std::fs::write(o.join(".storgate.tmp.123"), b"t").expect("write");
        std::fs::create_dir(d.path().join("outside")).expect("mkdir");
        std::fs::write(d.path().join("outside/secret"), b"s").expect("write");
        std::os::unix::fs::symlink(d.path().join("outside"), o.join("c/link")).expect("symlink");
        let root = Root::open(&o).expect("root");
        assert_eq!(
            keys(&root, &[]),
            ["a", "a/x", "a/x/f", "a-b", "a-b/g", "c", "c/link"]
        );
        assert_eq!(keys(&root, &[OsString::from("a")]), ["a/x", "a/x/f"]);
        let st = stat_key(&root, b"c/link").expect("stat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
        let mut sorted = keys(&root, &[]);
        sorted.sort_by(|a, b| {
            super::super::snapshot::KeyOrder::Components.cmp(a.as_bytes(), b.as_bytes())
        });
        assert_eq!(sorted, keys(&root, &[]));
        // Nesting past the depth limit is listed down to the limit only.
        std::fs::create_dir_all(o.join("n/n/n/n/n")).expect("mkdir");
        let mut w = Walk::new(&root, &[OsString::from("n")])
            .expect("walk")
            .max_depth(2);
        let mut deep = Vec::new();
        while let Some((k, _)) = w.next_entry().expect("entry") {
            deep.push(String::from_utf8_lossy(&k).into_owned());
        }
        assert_eq!(deep, ["n/n", "n/n/n"]);
        assert_eq!(w.too_deep, 1);
        // A start that is a symlink is refused, not followed.
        assert!(Walk::new(&root, &[OsString::from("c"), OsString::from("link")]).is_err());
    }
}
