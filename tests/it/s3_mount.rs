//! S3 origins through a real kernel mount (SPEC §3.3, §3.4, §9), against a
//! moto server on loopback (TESTING.md layers 2, 4, 5): ordinary tools
//! (`cp`, `mv`, `rm -r`, `mkdir -p`, `find`, `ls -R`, `rsync -a`, `vim`,
//! `touch`, `ln -s`, `dd`), what lands in the bucket (keys, `dir/` markers,
//! s3fs-style metadata), listings past one LIST page, the merged tree of
//! scenario 4, and a server that dies under a reader or before a close.
//!
//! Each test takes a fresh bucket; fault tests take a server of their own.
//! `STORGATE_S3_BIG_MB` sets the size of the big-file test (default 1024).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::s3::{S3Server, client, rt};
use common::*;
use serde_json::{Value, json};
use storgate::origin::s3::client::{ObjectMeta, S3Client};

// ------------------------------------------------------------ helpers ----

/// Every object under `prefix` (no delimiter), by key.
fn objects(c: &S3Client, prefix: &str) -> BTreeMap<String, ObjectMeta> {
    rt().block_on(c.list_all(prefix, None))
        .expect("list")
        .objects
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect()
}

fn keys(c: &S3Client, prefix: &str) -> Vec<String> {
    objects(c, prefix).into_keys().collect()
}

/// HEAD of `key` (user metadata included); panics when absent.
fn head(c: &S3Client, key: &str) -> ObjectMeta {
    rt().block_on(c.head(key))
        .expect("head")
        .unwrap_or_else(|| panic!("object {key} is missing"))
}

fn get(c: &S3Client, key: &str) -> Vec<u8> {
    let size = head(c, key).size;
    rt().block_on(c.get_range(key, 0..size, None))
        .expect("get")
        .to_vec()
}

fn put_object(c: &S3Client, key: &str, body: &[u8]) {
    rt().block_on(c.put_bytes(key, body.to_vec(), &HashMap::new()))
        .expect("put");
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An `aws_s3` entry for `bucket` with the given request timeout.
fn s3_entry(srv: &S3Server, bucket: &str, timeout_secs: u64) -> Value {
    let mut e = srv.endpoint_config(bucket);
    e["metadataTtl"] = json!(1);
    e["timeout"] = json!(timeout_secs);
    e
}

/// `NAME@aws_s3[/prefix]`
fn s3_origin(bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        format!("{bucket}@aws_s3")
    } else {
        format!("{bucket}@aws_s3/{prefix}")
    }
}

/// A config whose bucket "b" is the S3 bucket (under `prefix`) at its root.
fn s3_config(srv: &S3Server, bucket: &str, prefix: &str, timeout_secs: u64) -> Value {
    json!({
        "stateDir": "{root}/state",
        "aws_s3": [s3_entry(srv, bucket, timeout_secs)],
        "buckets": [bucket_cfg(vec![json!({
            "mountPoint": null,
            "originPath": s3_origin(bucket, prefix),
        })])],
    })
}

fn bucket_cfg(mounts: Vec<Value>) -> Value {
    common::bucket("b", mounts)
}

/// `--bucket b` mount of `s3_config` in a fresh scratch dir.
fn mount_s3(srv: &S3Server, bucket: &str, prefix: &str, timeout_secs: u64) -> Mount {
    Mount::start(
        &s3_config(srv, bucket, prefix, timeout_secs),
        &["--bucket", "b"],
    )
}

fn read(p: &Path) -> Vec<u8> {
    match fs::read(p) {
        Ok(b) => b,
        Err(e) => panic!("read {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

fn read_str(p: &Path) -> String {
    String::from_utf8_lossy(&read(p)).into_owned()
}

#[track_caller]
fn lstat(p: &Path) -> fs::Metadata {
    match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) => panic!("lstat {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

/// `utimensat(2)` with nanoseconds (atime = mtime).
fn set_times_ns(p: &Path, secs: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let ts = [libc::timespec {
        tv_sec: secs,
        tv_nsec: nsec,
    }; 2];
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) };
    assert_eq!(
        r,
        0,
        "utimensat {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// Runs `cmd` with a deadline of `secs`, asserting exit 0; returns stdout.
#[track_caller]
fn run_long(cmd: &mut Command, secs: u64) -> String {
    let desc = format!("{cmd:?}");
    let o = run_timeout(cmd, Duration::from_secs(secs));
    assert!(
        o.status.success(),
        "{desc} failed with {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh_long(script: &str, secs: u64) -> String {
    run_long(Command::new("sh").arg("-c").arg(script), secs)
}

/// `close(2)` of the file, returning its result (std's drop ignores it).
fn close(f: fs::File) -> std::io::Result<()> {
    let fd = f.into_raw_fd();
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sha256(p: &Path) -> String {
    let out = run_long(Command::new("sha256sum").arg(p), 600);
    out.split_whitespace().next().unwrap_or("").to_string()
}

/// Sorted output lines of a shell command.
fn sorted_lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn xattr_errno(f: impl FnOnce(*const libc::c_char) -> isize, p: &Path) -> Option<i32> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    if f(c.as_ptr()) < 0 {
        Some(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    } else {
        None
    }
}

/// A local tree for rsync: `dirs` directories of `per_dir` files with
/// varied sizes, modes and (nanosecond) mtimes in the past.
fn make_tree(dir: &Path, dirs: usize, per_dir: usize) -> Vec<String> {
    let mut rels = Vec::new();
    for d in 0..dirs {
        for f in 0..per_dir {
            let n = d * per_dir + f;
            let rel = format!("d{d:02}/f{f:03}.dat");
            let p = dir.join(&rel);
            put(&p, pattern(n * 37 % 5000, n as u64));
            let mode = [0o644, 0o600, 0o755, 0o640][n % 4];
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            set_times_ns(
                &p,
                1_500_000_000 + n as i64 * 3_607,
                (n as i64 * 7_919_113) % 1_000_000_000,
            );
            rels.push(rel);
        }
        set_times_ns(&dir.join(format!("d{d:02}")), 1_400_000_000 + d as i64, 0);
    }
    rels
}

/// Asserts that `rel` has the same size, mode and mtime (to the nanosecond)
/// in `a` and `b`.
#[track_caller]
fn assert_same_file(a: &Path, b: &Path, rel: &str) {
    let (x, y) = (lstat(&a.join(rel)), lstat(&b.join(rel)));
    // Directory sizes differ between file systems (4096 vs 0).
    let size = |m: &fs::Metadata| if m.is_dir() { 0 } else { m.size() };
    assert_eq!(
        (size(&x), x.mode(), x.mtime(), x.mtime_nsec()),
        (size(&y), y.mode(), y.mtime(), y.mtime_nsec()),
        "{rel}: (size, mode, mtime, mtime_nsec) in {} vs {}",
        a.display(),
        b.display()
    );
}

// ------------------------------------------------- everyday tools ----

#[test]
fn cp_mv_rm_mkdir_find_ls() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("tools");
    let c = client(srv, &bucket);
    put_object(&c, "outside/keep", b"not under the prefix");
    let m = mount_s3(srv, &bucket, "some/prefix", 30);
    let src = m.scratch_path("src");
    put(&src.join("a.txt"), "alpha\n");
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    set_times_ns(&src.join("a.txt"), 1_600_000_000, 0);
    let big = pattern(9 << 20, 7); // > 8 MiB: a multipart upload
    put(&src.join("sub/big.bin"), &big);
    put(&src.join("sub/deeper/c.txt"), "gamma");

    // mkdir -p writes one marker per level.
    sh(&format!("mkdir -p {}", m.at("x/y/z").display()));
    assert!(lstat(&m.at("x/y/z")).is_dir());
    let k = keys(&c, "some/prefix/");
    for marker in ["some/prefix/x/", "some/prefix/x/y/", "some/prefix/x/y/z/"] {
        assert!(
            k.contains(&marker.to_string()),
            "marker {marker} missing: {k:?}"
        );
    }

    // cp: content; cp -p: also mode and mtime, stored s3fs-style.
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    sh(&format!(
        "cp {} {}",
        src.join("a.txt").display(),
        m.at("x/a.txt").display()
    ));
    assert_eq!(read_str(&m.at("x/a.txt")), "alpha\n");
    assert!(
        lstat(&m.at("x/a.txt")).modified().unwrap() > before,
        "cp: mtime is the copy's"
    );
    sh(&format!(
        "cp -p {} {}",
        src.join("a.txt").display(),
        m.at("x/y/p.txt").display()
    ));
    let st = lstat(&m.at("x/y/p.txt"));
    assert_eq!(
        (st.mtime(), st.mode() & 0o7777, st.len()),
        (1_600_000_000, 0o640, 6)
    );
    let h = head(&c, "some/prefix/x/y/p.txt");
    assert_eq!(
        h.user.get("mtime").map(String::as_str),
        Some("1600000000"),
        "{:?}",
        h.user
    );
    assert_eq!(
        h.user.get("mode").map(String::as_str),
        Some("33184"),
        "{:?}",
        h.user
    ); // 0100640
    assert!(
        h.user.contains_key("uid") && h.user.contains_key("gid"),
        "{:?}",
        h.user
    );

    // cp -r of a tree with a multipart-sized file.
    sh(&format!(
        "cp -r {} {}",
        src.display(),
        m.at("x/tree").display()
    ));
    assert_eq!(read(&m.at("x/tree/sub/big.bin")), big);
    assert_eq!(get(&c, "some/prefix/x/tree/sub/big.bin"), big);
    assert_eq!(read_str(&m.at("x/tree/sub/deeper/c.txt")), "gamma");

    // mv of a file = CopyObject + DeleteObject.
    sh(&format!(
        "mv {} {}",
        m.at("x/a.txt").display(),
        m.at("x/y/z/moved.txt").display()
    ));
    expect_errno(
        fs::symlink_metadata(m.at("x/a.txt")),
        libc::ENOENT,
        "mv source",
    );
    assert_eq!(read_str(&m.at("x/y/z/moved.txt")), "alpha\n");
    let k = keys(&c, "some/prefix/");
    assert!(!k.contains(&"some/prefix/x/a.txt".to_string()), "{k:?}");
    assert!(
        k.contains(&"some/prefix/x/y/z/moved.txt".to_string()),
        "{k:?}"
    );

    // find and ls -R see the whole tree.
    let found = sorted_lines(&sh(&format!("cd {} && find x", m.mnt.display())));
    let want = sorted_lines(
        "x\nx/y\nx/y/z\nx/y/z/moved.txt\nx/y/p.txt\nx/tree\nx/tree/a.txt\nx/tree/sub\n\
         x/tree/sub/big.bin\nx/tree/sub/deeper\nx/tree/sub/deeper/c.txt",
    );
    assert_eq!(found, want);
    let ls = sh(&format!("cd {} && ls -R x", m.mnt.display()));
    for name in [
        "x/tree/sub/deeper:",
        "c.txt",
        "moved.txt",
        "big.bin",
        "p.txt",
    ] {
        assert!(ls.contains(name), "ls -R lacks {name}:\n{ls}");
    }
    let names_root = names(&m.mnt);
    assert_eq!(
        names_root,
        vec!["x".to_string()],
        "keys outside the prefix stay invisible"
    );

    // rm -r removes every object and marker below x.
    sh(&format!("rm -r {}", m.at("x").display()));
    expect_errno(
        fs::symlink_metadata(m.at("x")),
        libc::ENOENT,
        "x after rm -r",
    );
    assert_eq!(keys(&c, "some/prefix/"), Vec::<String>::new());
    assert_eq!(keys(&c, "outside/"), vec!["outside/keep".to_string()]);
    m.unmount();
}

#[test]
fn editor_save_append_touch() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("editor");
    let c = client(srv, &bucket);
    let m = mount_s3(srv, &bucket, "", 30);
    let f = m.at("notes.txt");

    // > and >>
    sh(&format!("echo one > {0} && echo two >> {0}", f.display()));
    assert_eq!(read_str(&f), "one\ntwo\n");
    assert_eq!(get(&c, "notes.txt"), b"one\ntwo\n");

    // vim with a backup made by rename: the original is renamed to notes.txt~
    // and a new notes.txt written.
    run_long(
        Command::new("vim")
            .args(["-u", "NONE", "-i", "NONE", "-N", "-n", "-es"])
            // backupskip: Debian's default skips /tmp/*, where the scratch is.
            .args([
                "-c",
                "set backup writebackup backupcopy=no backupskip= backupdir=.",
            ])
            .args(["-c", "%s/two/three/", "-c", "wq"])
            .arg(&f)
            .env("HOME", m.root.path()),
        60,
    );
    assert_eq!(read_str(&f), "one\nthree\n");
    assert_eq!(read_str(&m.at("notes.txt~")), "one\ntwo\n");

    // The usual "write a temp file, rename it over the original" save.
    let tmp = m.at(".notes.txt.swp-tmp");
    fs::write(&tmp, "saved by rename\n").unwrap();
    fs::rename(&tmp, &f).unwrap();
    assert_eq!(read_str(&f), "saved by rename\n");
    expect_errno(
        fs::symlink_metadata(&tmp),
        libc::ENOENT,
        "temp after rename",
    );
    assert_eq!(
        keys(&c, ""),
        vec!["notes.txt".to_string(), "notes.txt~".to_string()]
    );

    // touch: a new empty object; an explicit time; "now".
    let t = m.at("touched");
    sh(&format!("touch {}", t.display()));
    assert_eq!(lstat(&t).len(), 0);
    assert_eq!(head(&c, "touched").size, 0);
    sh(&format!("touch -d @1500000000 {}", t.display()));
    assert_eq!(lstat(&t).mtime(), 1_500_000_000);
    assert_eq!(
        head(&c, "touched").user.get("mtime").map(String::as_str),
        Some("1500000000")
    );
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    sh(&format!("touch {}", t.display()));
    assert!(
        lstat(&t).modified().unwrap() > before,
        "touch sets the mtime to now"
    );
    assert_eq!(read_str(&t), "", "touch leaves the content");

    // Append to an object written elsewhere (no storgate metadata).
    put_object(&c, "foreign.log", b"line 1\n");
    sh(&format!(
        "echo 'line 2' >> {}",
        m.at("foreign.log").display()
    ));
    assert_eq!(read_str(&m.at("foreign.log")), "line 1\nline 2\n");
    assert_eq!(
        lstat(&m.at("foreign.log")).mode() & 0o7777,
        0o644,
        "default file mode"
    );
    m.unmount();
}

#[test]
fn symlink_hardlink_xattr_errors() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("links");
    let c = client(srv, &bucket);
    let m = mount_s3(srv, &bucket, "p", 30);
    fs::write(m.at("data"), "payload").unwrap();

    sh(&format!("ln -s some/where {}", m.at("l").display()));
    assert!(lstat(&m.at("l")).file_type().is_symlink());
    assert_eq!(fs::read_link(m.at("l")).unwrap(), Path::new("some/where"));
    assert_eq!(
        sh(&format!("readlink {}", m.at("l").display())),
        "some/where\n"
    );
    // s3fs layout: body = target, mode with S_IFLNK.
    assert_eq!(get(&c, "p/l"), b"some/where");
    let mode: u32 = head(&c, "p/l").user["mode"].parse().unwrap();
    assert_eq!(mode & libc::S_IFMT, libc::S_IFLNK);

    // A link to a file of the mount resolves through the kernel.
    sh(&format!("cd {} && ln -s data l2", m.mnt.display()));
    assert_eq!(read_str(&m.at("l2")), "payload");
    let ls = sh(&format!("ls -l {}", m.mnt.display()));
    assert!(ls.contains("l2 -> data"), "{ls}");

    // Hard links: EPERM (also for `ln`).
    expect_errno(
        fs::hard_link(m.at("data"), m.at("hard")),
        libc::EPERM,
        "link",
    );
    let o = run_timeout(
        Command::new("ln").arg(m.at("data")).arg(m.at("hard2")),
        Duration::from_secs(30),
    );
    assert!(!o.status.success(), "ln must fail");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "ln: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // xattrs: ENOTSUP.
    let p = m.at("data");
    let name = c"user.test";
    let set = xattr_errno(
        |c| unsafe { libc::setxattr(c, name.as_ptr(), b"v".as_ptr().cast(), 1, 0) as isize },
        &p,
    );
    assert_eq!(set.map(errno_name), Some("ENOTSUP"), "setxattr");
    let mut buf = [0u8; 64];
    let get = xattr_errno(
        |c| unsafe { libc::getxattr(c, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
        &p,
    );
    assert_eq!(get.map(errno_name), Some("ENOTSUP"), "getxattr");
    let rm = xattr_errno(
        |c| unsafe { libc::removexattr(c, name.as_ptr()) as isize },
        &p,
    );
    assert_eq!(rm.map(errno_name), Some("ENOTSUP"), "removexattr");
    assert_eq!(keys(&c, "p/"), vec!["p/data", "p/l", "p/l2"]);
    m.unmount();
}

#[test]
fn rename_dir_is_exdev_and_mv_copies() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("mvdir");
    let c = client(srv, &bucket);
    let m = mount_s3(srv, &bucket, "", 30);
    fs::create_dir(m.at("d")).unwrap();
    fs::write(m.at("d/f1"), "one").unwrap();
    fs::create_dir(m.at("d/sub")).unwrap();
    fs::write(m.at("d/sub/f2"), "two").unwrap();
    fs::create_dir(m.at("d/empty")).unwrap();

    expect_errno(
        rename2(&m.at("d"), &m.at("e"), 0),
        libc::EXDEV,
        "rename(dir)",
    );
    sh(&format!(
        "mv {} {}",
        m.at("d").display(),
        m.at("e").display()
    ));
    expect_errno(fs::symlink_metadata(m.at("d")), libc::ENOENT, "d after mv");
    assert_eq!(read_str(&m.at("e/f1")), "one");
    assert_eq!(read_str(&m.at("e/sub/f2")), "two");
    assert!(lstat(&m.at("e/empty")).is_dir());
    assert_eq!(
        keys(&c, ""),
        vec!["e/", "e/empty/", "e/f1", "e/sub/", "e/sub/f2"]
    );
    m.unmount();
}

// ----------------------------------------------------------- rsync ----

#[test]
fn rsync_500_files_twice_transfers_nothing() {
    // ~20 requests per file: a server of its own keeps the others going.
    let srv = &S3Server::spawn_private();
    let bucket = srv.new_bucket("rsync");
    let mut m = mount_s3(srv, &bucket, "r", 30);
    m.extend_watchdog(1500);
    let src = m.scratch_path("src");
    let rels = make_tree(&src, 10, 50);
    let dst = m.at("dst");
    let rsync = |extra: &[&str]| {
        run_long(
            Command::new("rsync")
                .arg("-a")
                .args(extra)
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dst.display())),
            600,
        )
    };
    let t = Instant::now();
    rsync(&[]);
    eprintln!("rsync -a of 500 files to S3: {:?}", t.elapsed());
    for rel in &rels {
        assert_same_file(&src, &dst, rel);
    }
    for d in 0..10 {
        assert_same_file(&src, &dst, &format!("d{d:02}"));
    }
    assert_eq!(
        read(&dst.join("d03/f007.dat")),
        read(&src.join("d03/f007.dat"))
    );

    let t = Instant::now();
    let out = rsync(&["--itemize-changes"]);
    eprintln!("second rsync: {:?}", t.elapsed());
    assert_eq!(out, "", "the second rsync -a transferred something");
    m.unmount();
}

#[test]
fn rsync_after_remount_transfers_nothing() {
    // What the second rsync sees must come from the bucket, not from what
    // one daemon remembers of its own uploads.
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("rsync-remount");
    let cfg = s3_config(srv, &bucket, "", 30);
    let src_dir = scratch();
    let src = src_dir.path().join("src");
    let rels = make_tree(&src, 2, 20);
    let rsync = |dst: &Path, extra: &[&str]| {
        run_long(
            Command::new("rsync")
                .arg("-a")
                .args(extra)
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dst.display())),
            120,
        )
    };
    let m = Mount::start(&cfg, &["--bucket", "b"]);
    rsync(&m.at("dst"), &[]);
    m.unmount();

    let m = Mount::start(&cfg, &["--bucket", "b"]);
    let dst = m.at("dst");
    // Per-file stats with no listing before them (rsync -a without --delete
    // lists nothing on the receiving side): each one asks the bucket.
    for rel in &rels {
        assert_same_file(&src, &dst, rel);
    }
    let out = rsync(&dst, &["--itemize-changes"]);
    assert_eq!(out, "", "rsync after a remount transferred something");
    m.unmount();
}

// ------------------------------------------------------ data paths ----

#[test]
fn big_file_dd_round_trip() {
    let mb: u64 = std::env::var("STORGATE_S3_BIG_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    // A server of its own: moto copies the whole object for every ranged
    // GET, which would starve the tests sharing a server.
    let srv = &S3Server::spawn_private();
    let bucket = srv.new_bucket("big");
    let c = client(srv, &bucket);
    let mut m = mount_s3(srv, &bucket, "", 60);
    m.extend_watchdog(900);
    let local = m.scratch_path("big.src");
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count={mb} status=none",
        local.display()
    ));
    let want = sha256(&local);

    let t = Instant::now();
    sh_long(
        &format!(
            "dd if={} of={} bs=1M status=none",
            local.display(),
            m.at("big.bin").display()
        ),
        600,
    );
    let wrote = t.elapsed();
    assert_eq!(lstat(&m.at("big.bin")).len(), mb << 20);
    assert_eq!(head(&c, "big.bin").size, mb << 20);
    let staging = m.scratch_path("state/staging");
    assert_eq!(
        names(&staging),
        Vec::<String>::new(),
        "staging file left after a good close"
    );

    let t = Instant::now();
    let got = sha256(&m.at("big.bin"));
    let read_t = t.elapsed();
    eprintln!("{mb} MiB through the S3 mount: write+upload {wrote:?}, read+sha256 {read_t:?}");
    assert_eq!(got, want, "sha256 of the file read back");
    m.unmount();
}

#[test]
fn append_and_random_writes() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("pwrite");
    let c = client(srv, &bucket);
    let mut data = pattern(3 << 20, 1);
    put_object(&c, "obj", &data);
    let m = mount_s3(srv, &bucket, "", 30);
    let p = m.at("obj");

    // pwrite into the middle of an existing object (no O_TRUNC).
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    let off = (1 << 20) + 7;
    f.write_all_at(b"HELLO, S3", off as u64).unwrap();
    close(f).unwrap();
    data[off..off + 9].copy_from_slice(b"HELLO, S3");
    assert_eq!(lstat(&p).len(), 3 << 20);
    assert_eq!(read(&p), data);
    assert_eq!(get(&c, "obj"), data);

    // Read-modify-write in one O_RDWR handle sees its own writes.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let mut buf = [0u8; 9];
    f.read_exact_at(&mut buf, off as u64).unwrap();
    assert_eq!(&buf, b"HELLO, S3");
    f.write_all_at(b"J", off as u64).unwrap();
    f.read_exact_at(&mut buf, off as u64).unwrap();
    assert_eq!(&buf, b"JELLO, S3");
    // ... and past the end: a hole of zeros.
    let end = data.len() as u64 + 100;
    f.write_all_at(b"end", end).unwrap();
    close(f).unwrap();
    data[off] = b'J';
    data.resize(end as usize, 0);
    data.extend_from_slice(b"end");
    assert_eq!(read(&p), data);
    assert_eq!(get(&c, "obj"), data);

    // O_APPEND writes go to the end, whatever the offset.
    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"+tail").unwrap();
    close(f).unwrap();
    data.extend_from_slice(b"+tail");
    assert_eq!(read(&p), data);

    // truncate(2) shrinks; ftruncate in an open handle grows.
    truncate_path(&p, 10).unwrap();
    assert_eq!(read(&p), &data[..10]);
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(20).unwrap();
    close(f).unwrap();
    let mut want = data[..10].to_vec();
    want.resize(20, 0);
    assert_eq!(read(&p), want);
    assert_eq!(get(&c, "obj"), want);

    // A new file written at an offset from the start.
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(m.at("sparse"))
        .unwrap();
    f.write_all_at(b"x", 4095).unwrap();
    close(f).unwrap();
    let mut want = vec![0u8; 4095];
    want.push(b'x');
    assert_eq!(read(&m.at("sparse")), want);
    assert_eq!(lstat(&m.at("sparse")).mode() & 0o7777, 0o600);
    m.unmount();
}

#[test]
fn ten_thousand_objects_ls_and_find() {
    const N: usize = 10_000;
    let srv = &S3Server::spawn_private();
    let bucket = srv.new_bucket("many");
    let c = client(srv, &bucket);
    let t = Instant::now();
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let all: Vec<String> = (0..N)
            .map(|i| format!("many/o{i:05}"))
            .chain((0..5).flat_map(|d| (0..10).map(move |i| format!("deep/d{d}/o{i}"))))
            .collect();
        for chunk in all.chunks(all.len().div_ceil(32)) {
            let (c, chunk) = (c.clone(), chunk.to_vec());
            set.spawn(async move {
                for k in chunk {
                    c.put_bytes(&k, k.as_bytes().to_vec(), &HashMap::new())
                        .await
                        .unwrap_or_else(|e| panic!("put {k}: {e:?}"));
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("uploader");
        }
    });
    eprintln!("{} objects uploaded in {:?}", N + 50, t.elapsed());
    // Listing 10,000 keys is 10 pages from moto, which a busy machine slows
    // down past 30 s (the endpoint's timeout bounds the whole listing). And
    // the listing must stay cached while `ls -l` and `find` stat its entries:
    // with the usual 1 s metadataTtl a busy machine outlives it mid-`ls`, and
    // every further entry costs a HEAD and a LIST (20,000 requests a pass).
    let timeout = common::scaled(Duration::from_secs(60)).as_secs();
    let mut cfg = s3_config(srv, &bucket, "", timeout);
    cfg["aws_s3"][0]["metadataTtl"] = json!(common::scaled(Duration::from_secs(300)).as_secs());
    let mut m = Mount::start(&cfg, &["--bucket", "b"]);
    // Four listings of 10,000 entries (with a stat each for `ls -l`) take
    // minutes on a busy machine.
    m.extend_watchdog(900);
    let mnt = m.mnt.display();
    let t = Instant::now();
    assert_eq!(
        sh_long(&format!("ls {mnt}/many | wc -l"), 120).trim(),
        N.to_string()
    );
    eprintln!("ls of {N}: {:?}", t.elapsed());
    assert_eq!(
        sh_long(&format!("ls -l {mnt}/many | grep -c '^-rw-r--r--'"), 120).trim(),
        N.to_string()
    );
    assert_eq!(
        sh_long(&format!("find {mnt}/many | wc -l"), 120).trim(),
        (N + 1).to_string()
    );
    assert_eq!(
        sh_long(&format!("find {mnt} -type f | wc -l"), 120).trim(),
        (N + 50).to_string()
    );
    assert_eq!(sh(&format!("find {mnt}/deep | wc -l")).trim(), "56");
    assert_eq!(read_str(&m.at("many/o09999")), "many/o09999");
    assert_eq!(lstat(&m.at("many/o00000")).len(), 11);
    eprintln!("ls + ls -l + 2 finds + checks: {:?}", t.elapsed());
    m.unmount();
}

#[test]
fn empty_directory_survives_remount() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("emptydir");
    let c = client(srv, &bucket);
    let cfg = s3_config(srv, &bucket, "pre", 30);
    let m = Mount::start(&cfg, &["--bucket", "b"]);
    fs::create_dir(m.at("empty")).unwrap();
    sh(&format!("mkdir -p {}", m.at("a/b/c").display()));
    fs::set_permissions(m.at("a/b"), fs::Permissions::from_mode(0o750)).unwrap();
    m.unmount();
    assert_eq!(
        keys(&c, ""),
        vec!["pre/a/", "pre/a/b/", "pre/a/b/c/", "pre/empty/"]
    );

    let m = Mount::start(&cfg, &["--bucket", "b"]);
    assert_eq!(names(&m.mnt), vec!["a", "empty"]);
    assert!(lstat(&m.at("empty")).is_dir());
    assert_eq!(names(&m.at("empty")), Vec::<String>::new());
    assert!(lstat(&m.at("a/b/c")).is_dir());
    assert_eq!(
        lstat(&m.at("a/b")).mode() & 0o7777,
        0o750,
        "dir mode from its marker"
    );
    fs::remove_dir(m.at("empty")).unwrap();
    expect_errno(fs::remove_dir(m.at("a/b")), libc::ENOTEMPTY, "rmdir a/b");
    assert_eq!(keys(&c, ""), vec!["pre/a/", "pre/a/b/", "pre/a/b/c/"]);
    m.unmount();
}

#[test]
fn reader_while_another_handle_writes() {
    // Another process opening a file that is being written (cp into the
    // mount while a web server serves it, tail of a log being appended)
    // gets a consistent version: the staged bytes or the last upload, never
    // an error for a file that stat and readdir show.
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("concurrent");
    let m = mount_s3(srv, &bucket, "", 30);
    let p = m.at("growing");

    let w = fs::File::create(&p).unwrap();
    w.write_all_at(&[b'A'; 100], 0).unwrap();
    assert_eq!(lstat(&p).len(), 100, "stat of a file being written");
    assert!(names(&m.mnt).contains(&"growing".to_string()));
    match fs::read(&p) {
        Ok(b) => assert_eq!(b, vec![b'A'; 100], "reader of a new file being written"),
        Err(e) => panic!(
            "open+read of a new file being written (not yet uploaded): expected its \
             100 staged bytes, got {} ({e})",
            errno_name(errno(&e))
        ),
    }
    close(w).unwrap();
    assert_eq!(read(&p), vec![b'A'; 100]);

    let mut w = fs::OpenOptions::new().append(true).open(&p).unwrap();
    w.write_all(&[b'B'; 50]).unwrap();
    match fs::read(&p) {
        Ok(b) => {
            let old = vec![b'A'; 100];
            let mut new = old.clone();
            new.extend_from_slice(&[b'B'; 50]);
            assert!(
                b == old || b == new,
                "reader saw {} bytes, neither version",
                b.len()
            );
        }
        Err(e) => panic!(
            "open+read of an uploaded file while another handle appends: expected the \
             old or the new content, got {} ({e})",
            errno_name(errno(&e))
        ),
    }
    close(w).unwrap();
    assert_eq!(read(&p).len(), 150);
    m.unmount();
}

/// `#` / `//` line comments outside strings removed (SPEC §2).
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let (mut in_str, mut esc) = (false, false);
        let b = line.as_bytes();
        let mut end = line.len();
        for (i, &c) in b.iter().enumerate() {
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
            } else if c == b'"' {
                in_str = true;
            } else if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
                end = i;
                break;
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

#[test]
fn example_config_merged_s3_mounts() {
    // mount-configs/merged-s3.json, pointed at the test server and at
    // scratch directories, passes `check` and mounts as documented.
    let text = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/mount-configs/merged-s3.json"
    ))
    .expect("mount-configs/merged-s3.json");
    let mut cfg: Value =
        serde_json::from_str(&strip_comments(&text)).expect("example is JSON with comments");
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("example");
    let c = client(srv, &bucket);
    put_object(&c, "archive/2024/a.log", b"log\n");
    cfg["stateDir"] = json!("{root}/state");
    cfg["aws_s3"][0]["endpoint"] = json!(srv.endpoint);
    cfg["aws_s3"][0]["bucket"] = json!(bucket);
    let mounts = cfg["buckets"][0]["mounts"].as_array_mut().unwrap();
    assert_eq!(mounts[0]["mountPoint"], json!("/archive"));
    mounts[1]["originPath"] = json!("{root}/nfs");
    mounts[2]["originPath"] = json!("{root}/local");
    let root = scratch();
    put(&root.path().join("nfs/www/index.html"), "hi");
    put(&root.path().join("local/extra/e.txt"), "e");
    let path = write_config(root.path(), &cfg, "example.json");
    let o = run_timeout(
        Command::new(storgate_bin())
            .arg("check")
            .arg("--config")
            .arg(&path),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "check: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m = Mount::start_in(root, &cfg, &["--bucket", "media"]);
    assert_eq!(names(&m.mnt), vec!["archive", "extra", "www"]);
    assert_eq!(read_str(&m.at("archive/2024/a.log")), "log\n");
    fs::write(m.at("archive/new.txt"), "n").unwrap();
    assert_eq!(get(&c, "archive/new.txt"), b"n");
    m.unmount();
}

#[test]
fn attributes_in_listings_after_remount() {
    // Right after a remount of the same node (same stateDir), `ls -l` and
    // `find` (readdir, then a stat of each entry) show what storgate stored
    // in the objects' metadata — symlinks as symlinks, modes and mtimes as
    // set — from LIST plus its persisted attribute index, with no HEAD per
    // entry (SPEC §3.3).
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("remount-attrs");
    let state = scratch();
    let mut cfg = s3_config(srv, &bucket, "", 30);
    cfg["stateDir"] = json!(state.path().join("state"));
    let m = Mount::start(&cfg, &["--bucket", "b"]);
    fs::write(m.at("file"), "data").unwrap();
    fs::set_permissions(m.at("file"), fs::Permissions::from_mode(0o600)).unwrap();
    sh(&format!("touch -d @1500000000 {}", m.at("file").display()));
    std::os::unix::fs::symlink("file", m.at("link")).unwrap();
    fs::create_dir(m.at("dir")).unwrap();
    fs::set_permissions(m.at("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    let (link_t, dir_t) = (lstat(&m.at("link")).mtime(), lstat(&m.at("dir")).mtime());
    m.unmount();

    let m = Mount::start(&cfg, &["--bucket", "b"]);
    let ls = sh(&format!(
        "ls -l --time-style=+%s {} | tail -n +2 | awk '{{print $1, $6, $7}}'",
        m.mnt.display()
    ));
    assert_eq!(
        sorted_lines(&ls),
        sorted_lines(&format!(
            "-rw------- 1500000000 file\nlrwxrwxrwx {link_t} link\ndrwx------ {dir_t} dir"
        )),
        "ls -l right after the mount"
    );
    m.unmount();
}

// ------------------------------------------------ scenario 4 (merged) ----

#[test]
fn merged_tree_scenario_4() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("scenario4");
    let c = client(srv, &bucket);
    put_object(&c, "archive/2023/old.log", b"old log\n");
    put_object(&c, "archive/2024/new.log", b"new log\n");
    let root = scratch();
    let r = root.path();
    put(&r.join("nfs/www/index.html"), "<h1>hi</h1>\n");
    put(&r.join("nfs/www/img/logo.png"), pattern(20_000, 3));
    put(&r.join("local/extra/e.txt"), "extra\n");
    let cfg = json!({
        "stateDir": "{root}/state",
        "aws_s3": [s3_entry(srv, &bucket, 30)],
        "buckets": [common::bucket("site", vec![
            json!({"mountPoint": "/archive", "originPath": s3_origin(&bucket, "archive")}),
            root_mount("{root}/nfs"),
            root_mount("{root}/local"),
        ])],
    });
    // Without --bucket: the bucket is a directory of the mount root.
    let m = Mount::start_in(root, &cfg, &[]);
    let site = m.at("site");
    let s = |rel: &str| site.join(rel);

    let ls = sh(&format!("cd {} && ls -R .", site.display()));
    for line in [
        "./archive/2023:",
        "old.log",
        "./www/img:",
        "logo.png",
        "./extra:",
        "e.txt",
    ] {
        assert!(ls.lines().any(|l| l == line), "ls -R lacks {line:?}:\n{ls}");
    }
    assert_eq!(names(&site), vec!["archive", "extra", "www"]);

    // cp both ways.
    sh(&format!(
        "cp {} {}",
        s("www/index.html").display(),
        s("archive/index.html").display()
    ));
    assert_eq!(get(&c, "archive/index.html"), b"<h1>hi</h1>\n");
    sh(&format!(
        "cp {} {}",
        s("archive/2023/old.log").display(),
        s("extra/").display()
    ));
    assert_eq!(
        read_str(&m.scratch_path("local/extra/old.log")),
        "old log\n"
    );
    // mv across origins: EXDEV inside, copy + delete by mv.
    sh(&format!(
        "mv {} {}",
        s("archive/index.html").display(),
        s("www/moved.html").display()
    ));
    assert_eq!(
        read_str(&m.scratch_path("nfs/www/moved.html")),
        "<h1>hi</h1>\n"
    );
    assert!(!keys(&c, "").contains(&"archive/index.html".to_string()));

    // rsync -a local -> S3 and S3 -> local, twice each.
    let rsync = |from: &Path, to: &Path, extra: &[&str]| {
        run_long(
            Command::new("rsync")
                .arg("-a")
                .args(extra)
                .arg(format!("{}/", from.display()))
                .arg(format!("{}/", to.display())),
            120,
        )
    };
    set_times_ns(
        &m.scratch_path("nfs/www/index.html"),
        1_600_000_000,
        123_456_789,
    );
    rsync(&s("www"), &s("archive/www"), &[]);
    assert_eq!(read(&s("archive/www/img/logo.png")), pattern(20_000, 3));
    assert_same_file(&s("www"), &s("archive/www"), "index.html");
    assert_eq!(
        rsync(&s("www"), &s("archive/www"), &["-i"]),
        "",
        "2nd rsync local -> S3"
    );
    rsync(&s("archive"), &s("restore"), &[]);
    assert_eq!(
        read_str(&m.scratch_path("nfs/restore/2024/new.log")),
        "new log\n"
    );
    assert_same_file(&s("archive"), &s("restore"), "2024/new.log");
    assert_same_file(&s("archive"), &s("restore"), "www/index.html");
    assert_eq!(
        rsync(&s("archive"), &s("restore"), &["-i"]),
        "",
        "2nd rsync S3 -> local"
    );

    // find -newer across origins.
    let t = 2_000_000_000i64; // later than anything written today
    sh(&format!("touch -d @{t} {}", s("extra/ref").display()));
    for (rel, when) in [
        ("archive/2023/old.log", t - 100),
        ("archive/2024/new.log", t + 100),
        ("www/index.html", t - 100),
        ("www/img/logo.png", t + 100),
        ("extra/e.txt", t + 100),
    ] {
        sh(&format!("touch -d @{when} {}", s(rel).display()));
    }
    let newer = sorted_lines(&sh(&format!(
        "cd {} && find . -type f -newer extra/ref",
        site.display()
    )));
    assert_eq!(
        newer,
        vec![
            "./archive/2024/new.log",
            "./extra/e.txt",
            "./www/img/logo.png"
        ]
    );
    let big = sorted_lines(&sh(&format!(
        "cd {} && find . -type f -size +10k -name '*.png'",
        site.display()
    )));
    assert_eq!(
        big,
        vec![
            "./archive/www/img/logo.png",
            "./restore/www/img/logo.png",
            "./www/img/logo.png"
        ]
    );
    m.unmount();
}

// ------------------------------------------------- staging files ----

/// Mode bits (0o777) of `p`.
fn mode_of(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// SPEC §9.1: staging files hold a client's bytes; the daemon runs as root
/// with umask 0, so they must be made 0600 in a 0700 directory explicitly —
/// checked while the writes are open, as another local user would look.
#[test]
fn staging_files_are_private_while_a_write_is_open() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("staging-modes");
    let c = client(srv, &bucket);
    put_object(&c, "old.txt", b"existing object");
    let m = mount_s3(srv, &bucket, "", 20);
    let staging = m.scratch_path("state/staging");
    let mut created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(m.at("new.bin"))
        .unwrap();
    created.write_all(b"secret bytes of a client").unwrap();
    // Opened without O_TRUNC: downloaded into its staging file first.
    let mut opened = fs::OpenOptions::new()
        .write(true)
        .open(m.at("old.txt"))
        .unwrap();
    opened.write_all(b"EXISTING").unwrap();
    let files: Vec<_> = fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        2,
        "one staging file per open writer: {files:?}"
    );
    assert_eq!(
        mode_of(&staging),
        0o700,
        "staging dir {}",
        staging.display()
    );
    for f in &files {
        assert_eq!(mode_of(f), 0o600, "staging file {}", f.display());
    }
    // The attribute index under stateDir is private too.
    let index = m.scratch_path("state/s3meta");
    assert_eq!(mode_of(&index), 0o700, "index dir {}", index.display());
    for e in fs::read_dir(&index).unwrap().flatten() {
        assert_eq!(mode_of(&e.path()), 0o600, "index file {:?}", e.path());
    }
    close(created).unwrap();
    close(opened).unwrap();
    assert_eq!(get(&c, "new.bin"), b"secret bytes of a client");
    assert_eq!(get(&c, "old.txt"), b"EXISTING object");
    poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "staging files removed after the uploads",
        || names(&staging).is_empty(),
        || format!("{:?}", names(&staging)),
    );
    m.unmount();
}

/// A truncate to a size no S3 object can have fails with EFBIG — by path
/// (`truncate(2)`) and through a handle (`truncate -s`) — before a byte is
/// staged, and leaves no staging file and the object as it was.
#[test]
fn failed_truncate_leaves_no_staging_file() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("staging-efbig");
    let c = client(srv, &bucket);
    put_object(&c, "f", b"keep me");
    let m = mount_s3(srv, &bucket, "", 20);
    let staging = m.scratch_path("state/staging");
    let huge = 100i64 << 40; // 100 TiB
    expect_errno(
        truncate_path(&m.at("f"), huge),
        libc::EFBIG,
        "truncate(2) to 100 TiB",
    );
    assert_eq!(names(&staging), Vec::<String>::new(), "after truncate(2)");
    let o = run_timeout(
        Command::new("truncate")
            .arg("-s")
            .arg("100T")
            .arg(m.at("f")),
        Duration::from_secs(60),
    );
    assert!(!o.status.success(), "truncate -s 100T succeeded");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("File too large"),
        "truncate -s 100T: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    poll(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "no staging file after truncate -s",
        || names(&staging).is_empty(),
        || format!("{:?}", names(&staging)),
    );
    assert_eq!(get(&c, "f"), b"keep me");
    assert_eq!(fs::read(m.at("f")).unwrap(), b"keep me");
    // A truncate S3 can hold still works.
    truncate_path(&m.at("f"), 4).unwrap();
    assert_eq!(get(&c, "f"), b"keep");
    assert_eq!(
        names(&staging),
        Vec::<String>::new(),
        "after a good truncate"
    );
    m.unmount();
}

/// Staging files a crash left (`*.part`, unlocked) are removed at the next
/// start; a failed upload kept for the operator (`*.failed`) stays.
#[test]
fn crash_leftover_staging_files_are_removed_at_start() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("staging-crash");
    let root = scratch();
    let staging = root.path().join("state/staging");
    fs::create_dir_all(&staging).unwrap();
    let leftover = staging.join(format!("{bucket}-crashed1.part"));
    fs::write(&leftover, b"half an upload").unwrap();
    let empty = staging.join(format!("{bucket}-crashed2.part"));
    fs::write(&empty, b"").unwrap();
    let kept = staging.join(format!("{bucket}-earlier.failed"));
    fs::write(&kept, b"a failed upload, kept").unwrap();
    let m = Mount::start_in(root, &s3_config(srv, &bucket, "", 20), &["--bucket", "b"]);
    assert!(
        !leftover.exists(),
        "a crash's staging file survived the start"
    );
    assert!(
        !empty.exists(),
        "an empty crash leftover survived the start"
    );
    assert_eq!(fs::read(&kept).unwrap(), b"a failed upload, kept");
    assert_eq!(mode_of(&staging), 0o700);
    // A file being staged while another process starts (a `batch run` on
    // the same stateDir cleans too) is locked by its handle: it stays.
    let mut w = fs::File::create(m.at("w.bin")).unwrap();
    w.write_all(b"in flight").unwrap();
    let in_flight = names(&staging);
    assert_eq!(in_flight.len(), 2, "{in_flight:?}");
    let removed = storgate::origin::s3::clean_staging(&m.scratch_path("state"));
    assert_eq!(removed, 0, "a live staging file was removed");
    assert_eq!(names(&staging), in_flight);
    close(w).unwrap();
    assert_eq!(fs::read(m.at("w.bin")).unwrap(), b"in flight");
    m.unmount();
}

// ----------------------------------------------------------- faults ----

/// Runs `f` on a thread; returns its result and how long it took, or panics
/// after `limit` (the mount is then torn down by the caller's guard).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, t.elapsed()),
        Err(_) => panic!("{what}: no answer within {limit:?} (a hung mount)"),
    }
}

#[test]
fn server_stopped_during_read_gives_eio() {
    let srv = S3Server::spawn_private();
    let bucket = srv.new_bucket("fault-read");
    let c = client(&srv, &bucket);
    let size = 96usize << 20; // more than the 64 MiB read-ahead window
    let data = pattern(size, 9);
    let tmp = scratch();
    let src = tmp.path().join("obj");
    fs::write(&src, &data).unwrap();
    rt().block_on(c.upload_file("big", &src, &HashMap::new()))
        .expect("upload");
    let m = mount_s3(&srv, &bucket, "", 5);

    let mut f = fs::File::open(m.at("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[..1 << 20]);
    srv.stop();

    let (res, took) = within(
        Duration::from_secs(60),
        "read after the server died",
        move || {
            let mut total = 1usize << 20;
            loop {
                match f.read(&mut buf) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n,
                    Err(e) => return Err((e, total)),
                }
            }
        },
    );
    match res {
        Ok(total) => panic!("read the whole object ({total} bytes) with the server stopped"),
        Err((e, at)) => {
            let en = errno(&e);
            assert!(
                en == libc::EIO || en == libc::ETIMEDOUT,
                "read at {at}: expected EIO or ETIMEDOUT, got {} ({e})",
                errno_name(en)
            );
            assert!(at < size, "failed only at the end");
        }
    }
    eprintln!("read error {took:?} after the server stopped");
    assert!(
        took < Duration::from_secs(30),
        "the read failed only after {took:?}"
    );

    // The mount answers (with an error) rather than hanging, and the daemon lives.
    let mnt = m.mnt.clone();
    let (ls, took) = within(
        Duration::from_secs(60),
        "readdir with the server stopped",
        move || fs::read_dir(&mnt).map(|d| d.count()),
    );
    assert!(took < Duration::from_secs(30), "readdir took {took:?}");
    if let Err(e) = &ls {
        assert_eq!(errno(e), libc::EIO, "readdir: {e}");
    }
    assert!(is_fuse_mounted(&m.mnt), "the mount is gone");
    m.unmount();
}

#[test]
fn server_hung_during_read_times_out() {
    let srv = S3Server::spawn_private();
    let bucket = srv.new_bucket("fault-hung");
    let c = client(&srv, &bucket);
    put_object(&c, "obj", &pattern(4 << 20, 2));
    let m = mount_s3(&srv, &bucket, "", 3);
    let mut f = fs::File::open(m.at("obj")).unwrap();
    srv.pause();
    let (res, took) = within(
        Duration::from_secs(60),
        "read from a hung server",
        move || {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map(|_| buf.len())
        },
    );
    srv.resume();
    let e = res.expect_err("read from a paused server succeeded");
    let en = errno(&e);
    assert!(
        en == libc::EIO || en == libc::ETIMEDOUT,
        "expected EIO or ETIMEDOUT, got {} ({e})",
        errno_name(en)
    );
    eprintln!("hung server: read failed after {took:?} (timeout 3 s)");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    m.unmount();
}

#[test]
fn server_stopped_before_close_gives_eio_and_keeps_staging() {
    let srv = S3Server::spawn_private();
    let bucket = srv.new_bucket("fault-close");
    let mut m = mount_s3(&srv, &bucket, "", 5);
    let data = pattern(300_000, 4);
    let mut f = fs::File::create(m.at("unsaved.bin")).unwrap();
    f.write_all(&data).unwrap();
    let mut g = fs::File::create(m.at("fsynced.bin")).unwrap();
    g.write_all(b"fsync me").unwrap();
    srv.stop();

    let (r, took) = within(
        Duration::from_secs(60),
        "close with the server stopped",
        move || close(f),
    );
    expect_errno(r, libc::EIO, "close after the server stopped");
    eprintln!("close failed after {took:?}");
    assert!(took < Duration::from_secs(30), "close took {took:?}");
    let (r, _) = within(
        Duration::from_secs(60),
        "fsync with the server stopped",
        move || {
            let r = g.sync_all();
            (r, g)
        },
    );
    let (r, g) = r;
    expect_errno(r, libc::EIO, "fsync after the server stopped");
    drop(g);

    // Nothing is dropped: the staging files hold the data (also after release).
    let staging = m.scratch_path("state/staging");
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let ok = poll_until(Duration::from_secs(30), || {
        contents = fs::read_dir(&staging)
            .map(|d| d.filter_map(|e| fs::read(e.ok()?.path()).ok()).collect())
            .unwrap_or_default();
        contents.len() == 2
    });
    assert!(
        ok,
        "staging dir {}: {} files",
        staging.display(),
        contents.len()
    );
    assert!(
        contents.contains(&data),
        "no staging file holds the unsaved data"
    );
    assert!(
        contents.iter().any(|c| c == b"fsync me"),
        "no staging file holds the fsynced data"
    );
    // A client's unsaved bytes are the daemon's (root's) alone: the daemon
    // runs with umask 0, so a staging file must be made 0600 explicitly.
    for e in fs::read_dir(&staging).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "staging file {:?} has mode {mode:o}", e.path());
    }
    let log = m.log();
    assert!(
        log.contains("staging"),
        "the failure is not logged with the staging path:\n{log}"
    );
    m.stop();
    assert_eq!(
        fs::read_dir(&staging).unwrap().count(),
        2,
        "staging files gone after unmount"
    );
}

/// Events on an S3 origin (SPEC §4.1): a file written through the mount
/// into S3 fires a post onPut whose copy lands in a local hidden mount; a
/// pre onPut that refuses a write gives EIO at close and uploads nothing; a
/// pre onDelete that fails keeps the object.
#[test]
fn events_fire_for_s3_items() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("events");
    let mut b = bucket_cfg(vec![
        json!({"mountPoint": null, "originPath": s3_origin(&bucket, "ev")}),
        json!({"mountPoint": "/pub", "originPath": "{root}/pub", "expose": false}),
    ]);
    b["events"] = json!({
        "onPut": {"enable": true, "filter": {"patterns": ["*.txt"]},
                  "trigger": {"workflow": "publish"}},
        "onDelete": {"enable": true, "filter": {"patterns": ["*.keep"]},
                     "trigger": {"workflow": "refuse", "timing": "pre"}},
    });
    b["workflows"] = json!([
        {"name": "publish", "tasks": [{"savePath": "/pub/{{ item.filename }}"}]},
        {"name": "refuse", "tasks": [{"function": {"exec": ["false"]}, "savePath": "/pub/never"}]},
    ]);
    let cfg = json!({
        "stateDir": "{root}/state",
        "throttling": {"enable": false},
        "aws_s3": [s3_entry(srv, &bucket, 20)],
        "buckets": [b],
    });
    let root = tempfile::Builder::new()
        .prefix("storgate-test-")
        .tempdir()
        .expect("scratch dir");
    fs::create_dir_all(root.path().join("pub")).expect("mkdir pub");
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);

    fs::write(m.at("a.txt"), b"to S3 and published\n").expect("write a.txt");
    let published = m.scratch_path("pub/a.txt");
    let deadline = Instant::now() + common::scaled(Duration::from_secs(60));
    while fs::read(&published).ok().as_deref() != Some(&b"to S3 and published\n"[..]) {
        assert!(
            Instant::now() < deadline,
            "the onPut copy of an S3 item never appeared"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let c = client(srv, &bucket);
    assert_eq!(get(&c, "ev/a.txt"), b"to S3 and published\n", "uploaded");

    fs::write(m.at("x.keep"), b"keep me\n").expect("write x.keep");
    let e = fs::remove_file(m.at("x.keep")).expect_err("a failing pre onDelete refuses");
    assert_eq!(errno(&e), libc::EIO, "{e}");
    assert_eq!(read(&m.at("x.keep")), b"keep me\n", "the object stays");
}
