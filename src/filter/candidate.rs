//! What the filter is asked about: one item's kind, name, size, times and
//! depth, and the basename as text for the patterns.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

/// The kind of an item, as `lstat` sees it (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    File,
    Directory,
    Link,
    /// FIFO, socket, device: only `filetype: any` admits it.
    Other,
}

/// What the filter needs to know about one item.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The basename (no `/`).
    pub name: &'a OsStr,
    pub kind: ItemKind,
    /// Bytes; only looked at for [`ItemKind::File`].
    pub size: u64,
    pub mtime: SystemTime,
    pub atime: SystemTime,
    pub ctime: SystemTime,
    /// 1 = directly in the scan path, 2 = in a directory of it, …; ignored
    /// for file-system events.
    pub depth: u32,
}

/// The basename as the patterns see it: UTF-8 as is; otherwise each invalid
/// byte becomes one U+FFFD (one "character" per byte, like Python's
/// `surrogateescape`).
pub(super) fn name_text(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 16);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
            }
            Cow::Owned(out)
        }
    }
}
