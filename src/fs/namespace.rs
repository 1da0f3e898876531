//! Operations that change names and attributes: mkdir, mknod, symlink,
//! link, unlink, rmdir, rename, setattr — with the access rules of SPEC §2.1
//! and the placement rules of SPEC §3.1 (rule 5: where new entries go,
//! rule 6: EXDEV across origins).

use std::ffi::{OsStr, OsString};

use super::FsResult;
use super::inodes::Ino;
use super::{Core, Ctx, Entry, Located, Target, kind_of_mode};
use crate::bucket::resolve::{self, NewFor};
use crate::error::Errno;
use crate::origin::local::{SetTime, fstat};
use crate::tree::Place;

/// The attribute changes of one setattr request.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub fh: Option<u64>,
}

impl SetAttr {
    /// Whether the request changes nothing: `chown(path, -1, -1)`, which
    /// the kernel sends as a SETATTR without fields (or with only a ctime).
    /// It must still update ctime, as the kernel's own file systems do.
    fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

/// Which access rule an operation needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    Get,
    Put,
    Delete,
}

impl Core {
    /// The access rules of the bucket (EACCES) and `-o ro` (EROFS).
    pub(crate) fn allow(&self, bucket: usize, need: Need) -> FsResult<()> {
        let access = &self.buckets[bucket].access;
        let enabled = match need {
            Need::Get => access.get.enable,
            Need::Put => access.put.enable,
            Need::Delete => access.delete.enable,
        };
        if !matches!(need, Need::Get) && self.opts.read_only {
            return Err(Errno::EROFS.into());
        }
        if enabled {
            Ok(())
        } else {
            Err(Errno::EACCES.into())
        }
    }

    fn root_mount_list(&self, bucket: usize) -> Vec<usize> {
        self.buckets[bucket].tree.root_mounts().collect()
    }

    fn is_dir_in(&self, bucket: usize, mount: usize, rel: &[OsString]) -> bool {
        self.origin(bucket, mount)
            .lstat(rel)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
    }

    /// Rule 5: the origin and origin path a new entry at `path` goes to.
    /// The layout's own names (mount points, synthetic directories) exist
    /// already; synthetic directories take no new entries.
    fn new_entry_place(
        &self,
        bucket: usize,
        path: &[OsString],
    ) -> Result<(usize, Vec<OsString>), Errno> {
        let view = self.buckets[bucket].view(true);
        resolve::new_place(view, path, NewFor::Client).map(|p| (p.mount, p.rel))
    }

    /// New entries belong to the caller, as on a local file system: the
    /// daemon creates them (as root) and hands them over. In a set-gid
    /// directory the group is inherited instead.
    pub(crate) fn give_to_caller(&self, bucket: usize, mount: usize, rel: &[OsString], ctx: Ctx) {
        if !nix::unistd::geteuid().is_root() || (ctx.uid == 0 && ctx.gid == 0) {
            return;
        }
        let origin = self.origin(bucket, mount);
        let parent_setgid = origin
            .lstat(&rel[..rel.len().saturating_sub(1)])
            .is_ok_and(|st| st.st_mode & libc::S_ISGID != 0);
        let gid = (!parent_setgid).then_some(ctx.gid);
        if let Err(e) = origin.chown(rel, Some(ctx.uid), gid) {
            tracing::warn!(path = ?rel, error = %e, "cannot give new entry to its creator");
        }
    }

    /// Shared tail of every create-like operation: record the new node.
    pub(crate) fn finish_new(
        &self,
        parent: Ino,
        name: &OsStr,
        bucket: usize,
        mount: usize,
        rel: &[OsString],
    ) -> FsResult<Entry> {
        let st = self.origin(bucket, mount).lstat(rel)?;
        let identity = self.link_identity(bucket, mount, &st);
        let ino =
            self.inodes_write()
                .entry(parent, name, kind_of_mode(st.st_mode), None, true, identity);
        Ok(self.entry_from_stat(ino, &st))
    }

    pub(crate) fn prepare_new(
        &self,
        parent: Ino,
        name: &OsStr,
    ) -> FsResult<(usize, usize, Vec<OsString>)> {
        let (bucket, path) = self.child_path(parent, name)?;
        self.allow(bucket, Need::Put)?;
        let (mount, rel) = self.new_entry_place(bucket, &path)?;
        Ok((bucket, mount, rel))
    }

    pub fn mkdir(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        ctx: Ctx,
    ) -> FsResult<Entry> {
        let (bucket, mount, rel) = self.prepare_new(parent, name)?;
        self.before_create(bucket, mount, &rel);
        self.origin(bucket, mount)
            .mkdir(&rel, mode & !umask & 0o7777)?;
        self.give_to_caller(bucket, mount, &rel, ctx);
        self.created(parent, name, bucket, mount, &rel, |o| o.rmdir(&rel))
    }

    /// The end of mkdir/mknod/symlink: onPut, then the new node. A pre
    /// onPut that aborts removes the entry again (`remove`) and fails.
    fn created(
        &self,
        parent: Ino,
        name: &OsStr,
        bucket: usize,
        mount: usize,
        rel: &[OsString],
        remove: impl FnOnce(&crate::origin::Backend) -> Result<(), Errno>,
    ) -> FsResult<Entry> {
        if self.engine(bucket).is_some() {
            let (_, path) = self.child_path(parent, name)?;
            let origin = self.origin(bucket, mount);
            let st = origin.lstat(rel)?;
            self.after_put(bucket, &path, &st, || {
                if let Some(abs) = self.local_abs(bucket, mount, rel)
                    && let Some((engine, _)) = self.engine(bucket)
                {
                    engine.self_changes().deleting(&abs);
                }
                if let Err(e) = remove(origin) {
                    tracing::warn!(path = ?rel, error = %e, "cannot take back an entry refused by its pre workflow");
                }
            })?;
        }
        self.finish_new(parent, name, bucket, mount, rel)
    }

    pub fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        ctx: Ctx,
    ) -> FsResult<Entry> {
        let (bucket, mount, rel) = self.prepare_new(parent, name)?;
        let perm = mode & !umask & 0o7777;
        self.before_create(bucket, mount, &rel);
        self.origin(bucket, mount)
            .mknod(&rel, (mode & libc::S_IFMT) | perm, rdev)?;
        self.give_to_caller(bucket, mount, &rel, ctx);
        self.created(parent, name, bucket, mount, &rel, |o| o.unlink(&rel))
    }

    pub fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr, ctx: Ctx) -> FsResult<Entry> {
        let (bucket, mount, rel) = self.prepare_new(parent, name)?;
        self.before_create(bucket, mount, &rel);
        self.origin(bucket, mount).symlink(target, &rel)?;
        self.give_to_caller(bucket, mount, &rel, ctx);
        self.created(parent, name, bucket, mount, &rel, |o| o.unlink(&rel))
    }

    /// Where the second name of a link or rename goes: it must be the same
    /// origin as the first (`mount`), else EXDEV (rule 6).
    fn same_origin_dest(
        &self,
        bucket: usize,
        mount: usize,
        path: &[OsString],
        must_be_new: bool,
    ) -> Result<Vec<OsString>, Errno> {
        let b = &self.buckets[bucket];
        if b.tree.is_mount_ancestor(path) {
            return Err(if must_be_new {
                Errno::EEXIST
            } else {
                Errno::EBUSY
            });
        }
        match b.tree.place(path, true) {
            Place::Hidden => Err(Errno::EACCES),
            Place::Mount { rel, .. } if rel.is_empty() => Err(if must_be_new {
                Errno::EEXIST
            } else {
                Errno::EBUSY
            }),
            Place::Mount { mount: m2, rel } => {
                if m2 == mount {
                    Ok(rel)
                } else {
                    Err(Errno::EXDEV)
                }
            }
            Place::Root { rel } => {
                if !b.tree.mounts[mount].is_root {
                    return Err(Errno::EXDEV);
                }
                let roots = self.root_mount_list(bucket);
                if roots.len() > 1 {
                    let visible_elsewhere = roots
                        .iter()
                        .take_while(|r| **r != mount)
                        .any(|r| self.origin(bucket, *r).lstat(&rel).is_ok());
                    if visible_elsewhere {
                        return Err(if must_be_new {
                            Errno::EEXIST
                        } else {
                            Errno::EXDEV
                        });
                    }
                    if !self.is_dir_in(bucket, mount, &rel[..rel.len() - 1]) {
                        return Err(Errno::EXDEV);
                    }
                }
                Ok(rel)
            }
        }
    }

    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> FsResult<Entry> {
        let Target::Path { bucket, path } = self.target(ino)? else {
            return Err(Errno::EPERM.into());
        };
        let (b2, path2) = self.child_path(new_parent, new_name)?;
        if b2 != bucket {
            return Err(Errno::EXDEV.into());
        }
        self.allow(bucket, Need::Put)?;
        let Located::Origin { mount, rel, .. } = self.locate(bucket, &path)? else {
            return Err(Errno::EPERM.into());
        };
        let rel2 = self.same_origin_dest(bucket, mount, &path2, true)?;
        let origin = self.origin(bucket, mount);
        origin.link(&rel, &rel2)?;
        // The new name is one more link of the source's node.
        if let Ok(st) = origin.lstat(&rel)
            && let Some(id) = self.link_identity(bucket, mount, &st)
        {
            self.inodes_write().set_identity(ino, id);
        }
        self.finish_new(new_parent, new_name, bucket, mount, &rel2)
    }

    pub fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let (bucket, path) = self.child_path(parent, name)?;
        self.allow(bucket, Need::Delete)?;
        let Located::Origin { mount, rel, .. } = self.locate(bucket, &path)? else {
            return Err(Errno::EISDIR.into());
        };
        let gone = self.before_delete(bucket, &path, mount, &rel)?;
        self.origin(bucket, mount).unlink(&rel)?;
        // The same name in later root mounts would reappear: remove it too.
        if self.buckets[bucket].tree.mounts[mount].is_root {
            for r in self
                .root_mount_list(bucket)
                .into_iter()
                .filter(|r| *r > mount)
            {
                let o = self.origin(bucket, r);
                if o.lstat(&rel)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR)
                {
                    if let Some(abs) = self.local_abs(bucket, r, &rel)
                        && let Some((engine, _)) = self.engine(bucket)
                    {
                        engine.self_changes().deleting(&abs);
                    }
                    o.unlink(&rel)?;
                }
            }
        }
        self.inodes_write().detach(parent, name);
        self.after_delete(bucket, &path, gone);
        Ok(())
    }

    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        let (bucket, path) = self.child_path(parent, name)?;
        self.allow(bucket, Need::Delete)?;
        let b = &self.buckets[bucket];
        let (mount, rel, st) = match self.locate(bucket, &path)? {
            Located::Synthetic => return Err(Errno::EBUSY.into()),
            Located::Origin { rel, .. } if rel.is_empty() => return Err(Errno::EBUSY.into()),
            Located::Origin { mount, rel, st, .. } => (mount, rel, st),
        };
        if b.tree.is_mount_ancestor(&path) {
            return Err(Errno::ENOTEMPTY.into());
        }
        let removed = self.inodes_read().child(parent, name);
        let gone = self.before_delete(bucket, &path, mount, &rel)?;
        if b.tree.mounts[mount].is_root {
            let holders: Vec<usize> = self
                .root_mount_list(bucket)
                .into_iter()
                .filter(|r| self.is_dir_in(bucket, *r, &rel))
                .collect();
            if holders.len() > 1 {
                for r in &holders {
                    if !self.origin(bucket, *r).read_dir(&rel)?.is_empty() {
                        return Err(Errno::ENOTEMPTY.into());
                    }
                }
                for r in &holders {
                    if let Some(abs) = self.local_abs(bucket, *r, &rel)
                        && let Some((engine, _)) = self.engine(bucket)
                    {
                        engine.self_changes().deleting(&abs);
                    }
                    self.origin(bucket, *r).rmdir(&rel)?;
                }
                self.detach_removed_dir(parent, name, removed, *st);
                self.after_delete(bucket, &path, gone);
                return Ok(());
            }
        }
        self.origin(bucket, mount).rmdir(&rel)?;
        self.detach_removed_dir(parent, name, removed, *st);
        self.after_delete(bucket, &path, gone);
        Ok(())
    }

    /// A removed directory may still be open (its fd can be fstat'ed, as on
    /// any file system): remember its last attributes, with no links left.
    fn detach_removed_dir(&self, parent: Ino, name: &OsStr, ino: Option<Ino>, mut st: libc::stat) {
        self.inodes_write().detach(parent, name);
        if let Some(ino) = ino {
            st.st_nlink = 0;
            self.tombstones().insert(ino, st);
        }
    }

    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        let (bucket, path) = self.child_path(parent, name)?;
        let (b2, path2) = self.child_path(new_parent, new_name)?;
        // Access before EXDEV: a rename that cannot delete its source (or
        // create its target) is refused outright. EXDEV would make `mv`
        // copy first and only then fail to remove the source, leaving the
        // file in both places.
        self.allow(bucket, Need::Delete)?;
        self.allow(b2, Need::Put)?;
        if b2 != bucket {
            return Err(Errno::EXDEV.into());
        }
        let b = &self.buckets[bucket];
        let (mount, rel) = match self.locate(bucket, &path)? {
            Located::Synthetic => return Err(Errno::EBUSY.into()),
            Located::Origin { rel, .. } if rel.is_empty() => return Err(Errno::EBUSY.into()),
            Located::Origin { mount, rel, .. } => (mount, rel),
        };
        if b.tree.is_mount_ancestor(&path) {
            return Err(Errno::EBUSY.into());
        }
        let rel2 = self.same_origin_dest(bucket, mount, &path2, false)?;
        let moved = self.before_rename(bucket, &path, &path2, mount, &rel, &rel2)?;
        self.origin(bucket, mount).rename(&rel, &rel2, flags)?;
        {
            let mut inodes = self.inodes_write();
            if flags & libc::RENAME_EXCHANGE != 0 {
                inodes.exchange(parent, name, new_parent, new_name);
            } else {
                inodes.rename(parent, name, new_parent, new_name);
            }
        }
        self.after_rename(bucket, &path, &path2, moved);
        Ok(())
    }

    pub fn setattr(&self, ino: Ino, s: SetAttr) -> FsResult<Entry> {
        // An open handle is the only way to an unlinked file.
        let by_handle = match s.fh {
            Some(fh) => self.handles.file(fh).ok(),
            None => None,
        };
        let (bucket, mount, rel, path) = match self.target(ino) {
            Ok(Target::MountRoot) => return Err(Errno::EACCES.into()),
            Ok(Target::Path { bucket, path }) => match self.locate(bucket, &path)? {
                Located::Synthetic => return Err(Errno::EACCES.into()),
                Located::Origin { mount, rel, .. } => (bucket, mount, rel, path),
            },
            Err(e) => {
                let f = by_handle.or_else(|| self.handles.any_file(ino)).ok_or(e)?;
                let file = f.file.as_local().ok_or(Errno::ENOTSUP)?;
                return self.setattr_fd(ino, file, &s);
            }
        };
        self.allow(bucket, Need::Put)?;
        let origin = self.origin(bucket, mount);
        // An empty change is an lchown(-1, -1) on a local origin, which
        // updates ctime and nothing else. S3 objects keep no ctime of their
        // own (it reads as the mtime), so there it only has to exist.
        if s.uid.is_some() || s.gid.is_some() || (s.is_empty() && origin.as_local().is_some()) {
            origin.chown(&rel, s.uid, s.gid)?;
        }
        if let Some(mode) = s.mode {
            origin.chmod(&rel, mode & 0o7777)?;
        }
        if let Some(size) = s.size {
            match &by_handle {
                Some(f) => {
                    f.file.set_len(size)?;
                    if let Some(w) = &f.put {
                        w.changed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                None => origin.truncate(&rel, size)?,
            }
        }
        if s.atime.is_some() || s.mtime.is_some() {
            origin.utimens(
                &rel,
                s.atime.unwrap_or(SetTime::Omit),
                s.mtime.unwrap_or(SetTime::Omit),
            )?;
        }
        let st = origin.lstat(&rel)?;
        // A truncate by path (no open handle to fire at release) is a put.
        if s.size.is_some() && by_handle.is_none() && self.engine(bucket).is_some() {
            self.after_put(bucket, &path, &st, || {})?;
        }
        Ok(self.entry_from_stat(ino, &st))
    }

    fn setattr_fd(&self, ino: Ino, file: &std::fs::File, s: &SetAttr) -> FsResult<Entry> {
        use nix::sys::stat::Mode;
        use nix::sys::time::TimeSpec;
        use nix::unistd::{Gid, Uid};
        if self.opts.read_only {
            return Err(Errno::EROFS.into());
        }
        if s.uid.is_some() || s.gid.is_some() || s.is_empty() {
            nix::unistd::fchown(file, s.uid.map(Uid::from_raw), s.gid.map(Gid::from_raw))?;
        }
        if let Some(mode) = s.mode {
            nix::sys::stat::fchmod(file, Mode::from_bits_truncate(mode & 0o7777))?;
        }
        if let Some(size) = s.size {
            file.set_len(size)?;
        }
        if s.atime.is_some() || s.mtime.is_some() {
            let atime = TimeSpec::from(s.atime.unwrap_or(SetTime::Omit).timespec());
            let mtime = TimeSpec::from(s.mtime.unwrap_or(SetTime::Omit).timespec());
            nix::sys::stat::futimens(file, &atime, &mtime)?;
        }
        let st = fstat(file)?;
        Ok(self.entry_from_stat(ino, &st))
    }
}
