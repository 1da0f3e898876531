//! Whether other hosts can change a local origin behind this host's back:
//! inotify reports only changes made by this host's kernel, so an origin on
//! a network (or FUSE) file system must be polled (SPEC §4.5, mode `auto`).
//! Decided from `statfs` f_type, like `stat -f` shows it.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// f_type values of file systems that other hosts (or another process behind
/// a FUSE server) write: NFS, SMB/CIFS (three magics), FUSE, 9p, Ceph,
/// AFS, Coda, GFS2, OCFS2, Lustre, GPFS, BeeGFS.
const SHARED: &[i64] = &[
    0x6969,                // NFS
    0x517b,                // SMB
    0xff53_4d42u32 as i64, // CIFS
    0xfe53_4d42u32 as i64, // SMB2
    0x6573_5546,           // FUSE (sshfs, glusterfs, bindfs, s3fs, …)
    0x0102_1997,           // 9p
    0x00c3_6400,           // Ceph
    0x5346_414f,           // AFS
    0x6b41_4653,           // kAFS
    0x7375_7245,           // Coda
    0x0116_1970,           // GFS2
    0x7461_636f,           // OCFS2
    0x0bd0_0bd0,           // Lustre
    0x4750_4653,           // GPFS
    0x1996_1209,           // BeeGFS
];

/// The statfs f_type of `path`.
pub fn fs_type(path: &Path) -> std::io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: a valid C string and an output buffer.
    if unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0.
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    Ok(unsafe { st.assume_init() }.f_type as i64)
}

/// Whether a file system of type `f_type` can be changed by other hosts.
pub fn is_shared(f_type: i64) -> bool {
    SHARED.contains(&(f_type & 0xffff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_disks_are_not_shared_network_ones_are() {
        let t = fs_type(Path::new("/proc")).expect("statfs /proc");
        assert_eq!(t, 0x9fa0, "procfs magic");
        assert!(!is_shared(t));
        assert!(is_shared(0x6969));
        assert!(is_shared(0x6573_5546));
        assert!(is_shared(0xff53_4d42u32 as i64));
        assert!(fs_type(Path::new("/nonexistent/storgate")).is_err());
    }
}
