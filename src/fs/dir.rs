//! Directory listings: the union of the root mounts (first declared wins a
//! name), the entries of an explicit mount, plus the names the layout adds
//! (mount points, synthetic parents) minus hidden mounts (SPEC §3.1).

use std::collections::HashSet;
use std::ffi::OsString;

use fuser::FileType;

use super::FsResult;
use super::inodes::{Ino, Kind, ROOT_INO};
use super::{Core, Located, Target};
use crate::error::Errno;
use crate::tree::Place;

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: Ino,
    pub name: OsString,
    pub kind: FileType,
}

fn kind_of_dtype(d: u8) -> (Kind, FileType) {
    match d {
        libc::DT_DIR => (Kind::Dir, FileType::Directory),
        libc::DT_REG => (Kind::File, FileType::RegularFile),
        libc::DT_LNK => (Kind::Symlink, FileType::Symlink),
        libc::DT_FIFO => (Kind::Other, FileType::NamedPipe),
        libc::DT_SOCK => (Kind::Other, FileType::Socket),
        libc::DT_CHR => (Kind::Other, FileType::CharDevice),
        libc::DT_BLK => (Kind::Other, FileType::BlockDevice),
        _ => (Kind::Other, FileType::RegularFile),
    }
}

impl Core {
    /// The names of directory `ino` with their types, as a client sees them.
    fn list(&self, ino: Ino) -> FsResult<Vec<(OsString, u8)>> {
        let (bucket, path) = match self.target(ino)? {
            Target::MountRoot => {
                return Ok(self
                    .buckets
                    .iter()
                    .map(|b| (b.name.clone(), libc::DT_DIR))
                    .collect());
            }
            Target::Path { bucket, path } => (bucket, path),
        };
        let loc = self.locate(bucket, &path)?;
        if let Located::Origin { st, .. } = &loc
            && st.st_mode & libc::S_IFMT != libc::S_IFDIR
        {
            return Err(Errno::ENOTDIR.into());
        }
        let b = &self.buckets[bucket];
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        let sources: Vec<(usize, Vec<OsString>)> = match b.tree.place(&path, true) {
            Place::Hidden => return Err(Errno::ENOENT.into()),
            Place::Mount { mount, rel } => vec![(mount, rel)],
            Place::Root { rel } => b.tree.root_mounts().map(|r| (r, rel.clone())).collect(),
        };
        let mut first_err = None;
        let mut any_ok = false;
        for (mount, rel) in &sources {
            match b.origins[*mount].read_dir(rel) {
                Ok(entries) => {
                    any_ok = true;
                    for e in entries {
                        if seen.insert(e.name.clone()) {
                            out.push((e.name, e.d_type));
                        }
                    }
                }
                // A directory of the union need not exist in every root mount.
                Err(e) if e == Errno::ENOENT || e == Errno::ENOTDIR => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if !any_ok
            && let Some(e) = first_err
            && !matches!(loc, Located::Synthetic)
        {
            return Err(e.into());
        }
        out.retain(|(name, _)| !b.tree.is_shadowed(&path, name));
        for v in b.tree.virtual_children(&path) {
            out.push((v.name, libc::DT_DIR));
        }
        Ok(out)
    }

    pub fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let names = self.list(ino)?;
        let mut inodes = self.inodes_write();
        let parent_ino = ino;
        let entries = names
            .into_iter()
            .map(|(name, d_type)| {
                let (kind, ftype) = kind_of_dtype(d_type);
                let child = match inodes.child(parent_ino, &name) {
                    Some(c) => c,
                    None => {
                        let bucket_root = if parent_ino == ROOT_INO && self.single.is_none() {
                            self.buckets.iter().position(|b| b.name == name)
                        } else {
                            None
                        };
                        inodes.entry(parent_ino, &name, kind, bucket_root, false, None)
                    }
                };
                DirEntry {
                    ino: child,
                    name,
                    kind: ftype,
                }
            })
            .collect();
        drop(inodes);
        Ok(self.handles.insert_dir(entries))
    }

    /// Entries of an open directory from `offset` on ("." and ".." first).
    pub fn readdir(&self, ino: Ino, fh: u64, offset: u64) -> FsResult<Vec<(u64, DirEntry)>> {
        let dir = self.handles.dir(fh)?;
        let dots = [
            DirEntry {
                ino,
                name: ".".into(),
                kind: FileType::Directory,
            },
            DirEntry {
                ino,
                name: "..".into(),
                kind: FileType::Directory,
            },
        ];
        Ok(dots
            .iter()
            .chain(dir.entries.iter())
            .enumerate()
            .skip(offset as usize)
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect())
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
    }
}
