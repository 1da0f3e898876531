//! Building the item of an event (SPEC §5.2) from a bucket path and its
//! stat, the filter's view of it, and where the item's bytes come from.
//!
//! The item's `path`, `filename` and `dirname` are the lossless text form of
//! the exact name bytes ([`crate::name`]): two names that differ in any byte
//! give different items, and a rendered path turns back into the same bytes.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;

use crate::filter::{Candidate, ItemKind};

/// SPEC §5.2 item variables.
///
/// `path` is the full bucket path (`/dir/sample.jpg`), `filename` and
/// `dirname` its last component and the rest, each in the lossless text form
/// of [`crate::name`] (a UTF-8 name as it is, each other byte escaped).
#[derive(Debug, serde::Serialize, serde::Deserialize, Clone, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Item {
    pub path: String,
    pub filename: String,
    pub dirname: String,
    /// `file`, `directory` or `link`.
    pub state: String,
    pub size: u64,
    /// User name of the owner.
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Octal permission bits with a leading zero: `"0644"`.
    pub mode: String,
    /// Unix seconds.
    pub mtime: i64,
    pub atime: i64,
    pub ctime: i64,
    pub inode: u64,
    /// onGet events recorded for this path since it was last written.
    pub hits: u64,
}

/// Where the bytes of an item come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The entry at this bucket path (components, exact bytes).
    Bucket(Vec<OsString>),
    /// The entry at this bucket path, with the stat a listing just gave
    /// (a batch scan): an S3 object is not looked up again.
    Listed(Vec<OsString>, libc::stat),
    /// A local file standing in for the item (a staged pre-put write).
    File(PathBuf),
    /// Nothing: the item is gone (a post onDelete); tasks read no bytes.
    Empty,
}

/// The bucket path of components `path`, as lossless text (`/dir/a.jpg`;
/// see [`crate::name`]): [`crate::name::split_path`] gives back the exact
/// components.
pub fn path_text(path: &[OsString]) -> String {
    crate::name::path_text(path)
}

/// `dirname` and `filename` of a path text (`/` and `t` for `/t`).
pub fn split_text(text: &str) -> (String, String) {
    match text.rfind('/') {
        Some(0) => ("/".to_string(), text[1..].to_string()),
        Some(i) => (text[..i].to_string(), text[i + 1..].to_string()),
        None => ("/".to_string(), text.to_string()),
    }
}

pub fn kind_of(mode: libc::mode_t) -> ItemKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => ItemKind::File,
        libc::S_IFDIR => ItemKind::Directory,
        libc::S_IFLNK => ItemKind::Link,
        _ => ItemKind::Other,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// What the filter sees of an entry named `name` with stat `st`.
pub fn candidate<'a>(name: &'a OsStr, st: &libc::stat, depth: u32) -> Candidate<'a> {
    Candidate {
        name,
        kind: kind_of(st.st_mode),
        size: st.st_size.max(0) as u64,
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        atime: time(st.st_atime, st.st_atime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        depth,
    }
}

/// The item of `path` (bucket path components) with stat `st`.
pub fn item_of(path: &[OsString], st: &libc::stat, hits: u64) -> Item {
    let text = path_text(path);
    let (dirname, filename) = split_text(&text);
    let state = match kind_of(st.st_mode) {
        ItemKind::Directory => "directory",
        ItemKind::Link => "link",
        _ => "file",
    };
    Item {
        path: text,
        filename,
        dirname,
        state: state.to_string(),
        size: st.st_size.max(0) as u64,
        owner: user_name(st.st_uid),
        group: group_name(st.st_gid),
        mode: format!("{:04o}", st.st_mode & 0o7777),
        mtime: st.st_mtime,
        atime: st.st_atime,
        ctime: st.st_ctime,
        inode: st.st_ino,
        hits,
    }
}

/// An all-zero stat of a regular file: the item of something already gone.
pub fn gone_stat(dir: bool) -> libc::stat {
    // SAFETY: all-zero is a valid libc::stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_mode = if dir { libc::S_IFDIR } else { libc::S_IFREG };
    st
}

static USERS: Mutex<Option<FxHashMap<u32, String>>> = Mutex::new(None);
static GROUPS: Mutex<Option<FxHashMap<u32, String>>> = Mutex::new(None);

fn cached(
    cache: &Mutex<Option<FxHashMap<u32, String>>>,
    id: u32,
    look: fn(u32) -> Option<String>,
) -> String {
    let mut g = cache.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(FxHashMap::default);
    if let Some(n) = map.get(&id) {
        return n.clone();
    }
    // Unknown ids print as numbers, like ls.
    let name = look(id).unwrap_or_else(|| id.to_string());
    map.insert(id, name.clone());
    name
}

pub fn user_name(uid: u32) -> String {
    cached(&USERS, uid, |uid| {
        // A lookup error (no passwd source answering) reads as unknown.
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
        user.ok().flatten().map(|u| u.name)
    })
}

pub fn group_name(gid: u32) -> String {
    cached(&GROUPS, gid, |gid| {
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid));
        group.ok().flatten().map(|g| g.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_fields() {
        let mut st = gone_stat(false);
        st.st_mode |= 0o640;
        st.st_size = 42;
        st.st_uid = 0;
        let p = vec![OsString::from("dir"), OsString::from("a.jpg")];
        let it = item_of(&p, &st, 3);
        assert_eq!(it.path, "/dir/a.jpg");
        assert_eq!(it.filename, "a.jpg");
        assert_eq!(it.dirname, "/dir");
        assert_eq!(it.mode, "0640");
        assert_eq!(it.state, "file");
        assert_eq!(it.owner, "root");
        assert_eq!(it.hits, 3);
        let top = item_of(&[OsString::from("t")], &st, 0);
        assert_eq!((top.dirname.as_str(), top.filename.as_str()), ("/", "t"));
    }

    #[test]
    fn names_of_the_same_lossy_text_give_distinct_exact_items() {
        use std::os::unix::ffi::OsStrExt;
        let st = gone_stat(false);
        let path = |b: &[u8]| vec![OsString::from("dü"), OsStr::from_bytes(b).to_os_string()];
        let ff = item_of(&path(b"bad\xff.jpg"), &st, 0);
        let fe = item_of(&path(b"bad\xfe.jpg"), &st, 0);
        assert_ne!(ff.path, fe.path);
        assert_ne!(ff.filename, fe.filename);
        assert_eq!(ff.dirname, "/dü", "a UTF-8 component stays as it is");
        assert_eq!(
            crate::name::split_path(&ff.path),
            path(b"bad\xff.jpg"),
            "the text gives back the exact bytes"
        );
        assert_eq!(crate::name::to_bytes(&fe.filename), b"bad\xfe.jpg");
    }
}
