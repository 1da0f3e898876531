//! File attributes of S3 objects, stored the way s3fs stores them
//! (`x-amz-meta-mtime`, `-mode`, `-uid`, `-gid`), so that a bucket written by
//! one tool reads right in the other and `rsync -a` keeps times.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The POSIX attributes storgate keeps in an object's user metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Full mode including the file-type bits (S_IFREG, S_IFDIR, S_IFLNK).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

pub const DEFAULT_FILE_MODE: u32 = libc::S_IFREG | 0o644;
pub const DEFAULT_DIR_MODE: u32 = libc::S_IFDIR | 0o755;

pub fn unix_time(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(_) => (0, 0),
    }
}

pub fn now() -> (i64, i64) {
    unix_time(SystemTime::now())
}

impl Attrs {
    /// Attributes from user metadata (names without `x-amz-meta-`), with
    /// `default_mode` and `last_modified` for what is missing.
    pub fn from_user(
        user: &HashMap<String, String>,
        default_mode: u32,
        last_modified: SystemTime,
    ) -> Attrs {
        let num = |k: &str| user.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        let mut mode = num("mode").unwrap_or(default_mode);
        if mode & libc::S_IFMT == 0 {
            mode |= default_mode & libc::S_IFMT;
        }
        Attrs {
            mode,
            uid: num("uid").unwrap_or(0),
            gid: num("gid").unwrap_or(0),
            mtime: user
                .get("mtime")
                .and_then(|v| parse_mtime(v))
                .unwrap_or_else(|| unix_time(last_modified)),
        }
    }

    pub fn new(mode: u32) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            mtime: now(),
        }
    }

    /// The user metadata to store these attributes.
    pub fn to_user(self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("mode".to_string(), self.mode.to_string());
        m.insert("uid".to_string(), self.uid.to_string());
        m.insert("gid".to_string(), self.gid.to_string());
        m.insert("mtime".to_string(), format_mtime(self.mtime));
        m
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// A `stat` for an object of `size` bytes with these attributes.
    pub fn stat(&self, size: u64, ino: u64) -> libc::stat {
        // SAFETY: libc::stat is plain old data; all-zero is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = self.mode;
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st.st_size = size as i64;
        st.st_blocks = size.div_ceil(512) as i64;
        st.st_blksize = 1 << 20;
        st.st_nlink = if self.is_dir() { 2 } else { 1 };
        st.st_ino = ino;
        st.st_mtime = self.mtime.0;
        st.st_mtime_nsec = self.mtime.1;
        st.st_atime = self.mtime.0;
        st.st_atime_nsec = self.mtime.1;
        st.st_ctime = self.mtime.0;
        st.st_ctime_nsec = self.mtime.1;
        st
    }
}

/// `secs` or `secs.fraction` (s3fs writes whole seconds; storgate keeps
/// nanoseconds so that rsync sees exactly the times it set).
pub fn parse_mtime(v: &str) -> Option<(i64, i64)> {
    let v = v.trim();
    let (s, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: i64 = s.parse().ok()?;
    if frac.is_empty() {
        return Some((secs, 0));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some((secs, digits.parse().ok()?))
}

pub fn format_mtime((s, ns): (i64, i64)) -> String {
    if ns == 0 {
        s.to_string()
    } else {
        format!("{s}.{ns:09}")
    }
}

pub fn system_time((s, ns): (i64, i64)) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::new(s as u64, ns as u32)
    } else {
        UNIX_EPOCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_round_trip() {
        assert_eq!(parse_mtime("1700000000"), Some((1700000000, 0)));
        assert_eq!(parse_mtime("1700000000.5"), Some((1700000000, 500_000_000)));
        assert_eq!(parse_mtime(&format_mtime((12, 34))), Some((12, 34)));
        assert_eq!(parse_mtime("x"), None);
        assert_eq!(parse_mtime("1.2e3"), None);
    }

    #[test]
    fn s3fs_metadata_read() {
        let mut user = HashMap::new();
        user.insert("mode".into(), "33188".into()); // 0100644
        user.insert("uid".into(), "1000".into());
        user.insert("mtime".into(), "1600000000".into());
        let a = Attrs::from_user(&user, DEFAULT_FILE_MODE, UNIX_EPOCH);
        assert_eq!(a.mode, libc::S_IFREG | 0o644);
        assert_eq!(a.uid, 1000);
        assert_eq!(a.gid, 0);
        assert_eq!(a.mtime, (1600000000, 0));
        let none = Attrs::from_user(&HashMap::new(), DEFAULT_DIR_MODE, UNIX_EPOCH);
        assert!(none.is_dir());
        assert_eq!(
            Attrs::from_user(&a.to_user(), DEFAULT_FILE_MODE, UNIX_EPOCH),
            a
        );
    }

    #[test]
    fn mode_without_type_bits_gets_the_default_type() {
        let mut user = HashMap::new();
        user.insert("mode".into(), "420".into()); // 0644
        let a = Attrs::from_user(&user, DEFAULT_FILE_MODE, UNIX_EPOCH);
        assert_eq!(a.mode, libc::S_IFREG | 0o644);
    }
}
