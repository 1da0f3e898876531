//! Directory listings: the union of the root mounts (first declared wins a
//! name), the entries of an explicit mount, plus the names the layout adds
//! (mount points, synthetic parents) minus hidden mounts (SPEC §3.1).

use std::ffi::OsString;

use fuser::FileType;

use super::FsResult;
use super::inodes::{Ino, Kind, ROOT_INO};
use super::{Core, Located, Target};
use crate::bucket::resolve;
use crate::error::Errno;

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
        let listing = resolve::merged_listing(self.buckets[bucket].view(true), &path, &|_| true)?;
        if !listing.listed_any
            && let Some((_, e)) = listing.failed.first()
            && !matches!(loc, Located::Synthetic)
        {
            return Err((*e).into());
        }
        Ok(listing
            .entries
            .into_iter()
            .map(|e| (e.name, e.d_type))
            .collect())
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
