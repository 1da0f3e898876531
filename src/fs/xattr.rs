//! Extended attributes, passed through to local origins. Layout
//! directories have none and take none.

use std::ffi::OsStr;

use super::FsResult;
use super::inodes::Ino;
use super::namespace::Need;
use super::{Core, Located, Target};
use crate::error::Errno;

/// The answer to a getxattr/listxattr: the size when the caller probes with
/// size 0, the bytes otherwise.
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

impl Core {
    fn xattr_target(&self, ino: Ino) -> FsResult<Option<(usize, usize, Vec<std::ffi::OsString>)>> {
        match self.target(ino)? {
            Target::MountRoot => Ok(None),
            Target::Path { bucket, path } => match self.locate(bucket, &path)? {
                Located::Synthetic => Ok(None),
                Located::Origin { mount, rel, .. } => Ok(Some((bucket, mount, rel))),
            },
        }
    }

    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> FsResult<XattrReply> {
        let Some((bucket, mount, rel)) = self.xattr_target(ino)? else {
            return Err(Errno(libc::ENODATA).into());
        };
        let origin = self.origin(bucket, mount);
        if size == 0 {
            let len = origin.getxattr_size(&rel, name)?;
            return Ok(XattrReply::Size(len as u32));
        }
        Ok(XattrReply::Data(origin.getxattr(
            &rel,
            name,
            size as usize,
        )?))
    }

    pub fn listxattr(&self, ino: Ino, size: u32) -> FsResult<XattrReply> {
        let Some((bucket, mount, rel)) = self.xattr_target(ino)? else {
            return Ok(if size == 0 {
                XattrReply::Size(0)
            } else {
                XattrReply::Data(Vec::new())
            });
        };
        let data = self.origin(bucket, mount).listxattr(&rel, size as usize)?;
        Ok(if size == 0 {
            XattrReply::Size(data.len() as u32)
        } else {
            XattrReply::Data(data)
        })
    }

    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
        let Some((bucket, mount, rel)) = self.xattr_target(ino)? else {
            return Err(Errno::EACCES.into());
        };
        self.allow(bucket, Need::Put)?;
        Ok(self
            .origin(bucket, mount)
            .setxattr(&rel, name, value, flags)?)
    }

    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> FsResult<()> {
        let Some((bucket, mount, rel)) = self.xattr_target(ino)? else {
            return Err(Errno::EACCES.into());
        };
        self.allow(bucket, Need::Put)?;
        Ok(self.origin(bucket, mount).removexattr(&rel, name)?)
    }
}
