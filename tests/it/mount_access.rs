//! Access rules of a bucket (SPEC §2.1 `access`): a denied operation returns
//! EACCES through the mount and leaves the origin untouched.
use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn read(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => panic!("read {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn access(get: bool, put: bool, delete: bool) -> Value {
    json!({"get": {"enable": get}, "put": {"enable": put}, "delete": {"enable": delete}})
}

fn prepare(r: &Path) {
    put(&r.join("o1/f"), "data");
    put(&r.join("o1/d/inner"), "inner");
    fs::create_dir_all(r.join("o1/e")).unwrap();
    std::os::unix::fs::symlink("f", r.join("o1/sym")).unwrap();
}

/// `--bucket b` mount of one local root origin `o1` with the given access.
fn mount_with_access(get: bool, put: bool, delete: bool) -> Mount {
    let root = scratch();
    prepare(root.path());
    let mut b = bucket("b", vec![root_mount("{root}/o1")]);
    b["access"] = access(get, put, delete);
    Mount::start_in(root, &config(vec![b]), &["--bucket", "b"])
}

/// Snapshot of an origin: (relative path, mode, size, mtime, content) sorted.
fn snapshot(dir: &Path) -> Vec<(String, u32, u64, i64, Vec<u8>)> {
    let mut v = Vec::new();
    fn walk(base: &Path, dir: &Path, v: &mut Vec<(String, u32, u64, i64, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let content = if md.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let mtime = if md.is_dir() { 0 } else { md.mtime() };
            v.push((rel, md.mode(), md.len(), mtime, content));
            if md.is_dir() {
                walk(base, &p, v);
            }
        }
    }
    walk(dir, dir, &mut v);
    v.sort();
    v
}

#[test]
fn get_disabled_denies_reading_but_not_stat_or_listing() {
    let m = mount_with_access(false, true, true);
    expect_errno(
        fs::File::open(m.at("f")),
        libc::EACCES,
        "open f for reading",
    );
    expect_errno(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(m.at("f")),
        libc::EACCES,
        "open f O_RDWR",
    );
    expect_errno(fs::read(m.at("d/inner")), libc::EACCES, "read d/inner");
    let md = expect_ok(fs::metadata(m.at("f")), "stat f");
    assert_eq!(md.len(), 4);
    assert_eq!(
        names(&m.mnt),
        s(&["d", "e", "f", "sym"]),
        "readdir still works"
    );
    assert_eq!(names(&m.at("d")), s(&["inner"]));
    assert!(
        fs::symlink_metadata(m.at("sym"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A drop box: uploading still works, reading back does not.
    expect_ok(
        fs::write(m.at("upload"), "up"),
        "write a new file (put enabled)",
    );
    assert_eq!(read(&m.scratch_path("o1/upload")), "up");
    expect_errno(
        fs::read(m.at("upload")),
        libc::EACCES,
        "read back the upload",
    );
    let out = Command::new("cat").arg(m.at("f")).output().unwrap();
    assert!(!out.status.success(), "cat of f must fail");
}

#[test]
fn put_disabled_denies_every_modification() {
    let m = mount_with_access(true, false, true);
    let origin = m.scratch_path("o1");
    let before = snapshot(&origin);
    let opts = || fs::OpenOptions::new();

    expect_errno(
        fs::File::create(m.at("new")),
        libc::EACCES,
        "create new file",
    );
    expect_errno(
        opts().write(true).create_new(true).open(m.at("new")),
        libc::EACCES,
        "O_CREAT|O_EXCL new file",
    );
    expect_errno(
        opts().write(true).open(m.at("f")),
        libc::EACCES,
        "open f O_WRONLY",
    );
    expect_errno(
        opts().read(true).write(true).open(m.at("f")),
        libc::EACCES,
        "open f O_RDWR",
    );
    expect_errno(
        opts().append(true).open(m.at("f")),
        libc::EACCES,
        "open f O_APPEND",
    );
    expect_errno(fs::File::create(m.at("f")), libc::EACCES, "open f O_TRUNC");
    expect_errno(truncate_path(&m.at("f"), 0), libc::EACCES, "truncate(f, 0)");
    expect_errno(fs::create_dir(m.at("newdir")), libc::EACCES, "mkdir");
    expect_errno(
        fs::create_dir(m.at("d/sub")),
        libc::EACCES,
        "mkdir in subdir",
    );
    expect_errno(
        std::os::unix::fs::symlink("f", m.at("newsym")),
        libc::EACCES,
        "symlink",
    );
    expect_errno(fs::hard_link(m.at("f"), m.at("hard")), libc::EACCES, "link");
    expect_errno(
        fs::set_permissions(m.at("f"), fs::Permissions::from_mode(0o600)),
        libc::EACCES,
        "chmod (setattr)",
    );
    expect_errno(
        lchown(&m.at("f"), 1234, 1234),
        libc::EACCES,
        "chown (setattr)",
    );
    expect_errno(
        set_times(&m.at("f"), 1_000_000_000),
        libc::EACCES,
        "utimens (setattr)",
    );
    expect_errno(
        fs::rename(m.at("f"), m.at("g")),
        libc::EACCES,
        "rename f → g (into)",
    );
    expect_errno(
        fs::rename(m.at("f"), m.at("d/f")),
        libc::EACCES,
        "rename f → d/f (into)",
    );

    assert_eq!(snapshot(&origin), before, "origin must be unchanged");
    // Reading still works, and so does delete (enabled).
    assert_eq!(read(&m.at("f")), "data");
    expect_ok(fs::remove_file(m.at("f")), "unlink with delete enabled");
    assert!(!m.scratch_path("o1/f").exists());
}

#[test]
fn delete_disabled_denies_unlink_rmdir_and_rename_out() {
    let m = mount_with_access(true, true, false);
    let origin = m.scratch_path("o1");
    let before = snapshot(&origin);

    expect_errno(fs::remove_file(m.at("f")), libc::EACCES, "unlink f");
    expect_errno(
        fs::remove_file(m.at("d/inner")),
        libc::EACCES,
        "unlink d/inner",
    );
    expect_errno(fs::remove_file(m.at("sym")), libc::EACCES, "unlink symlink");
    expect_errno(fs::remove_dir(m.at("e")), libc::EACCES, "rmdir empty dir e");
    expect_errno(
        fs::rename(m.at("f"), m.at("g")),
        libc::EACCES,
        "rename f → g (out of f)",
    );
    expect_errno(
        fs::rename(m.at("d"), m.at("d2")),
        libc::EACCES,
        "rename dir d → d2",
    );
    expect_errno(
        fs::rename(m.at("d/inner"), m.at("inner")),
        libc::EACCES,
        "rename d/inner → inner",
    );
    let rm = Command::new("rm")
        .arg("-r")
        .arg(m.at("d"))
        .output()
        .unwrap();
    assert!(!rm.status.success(), "rm -r d must fail");
    assert_eq!(snapshot(&origin), before, "origin must be unchanged");

    // Creating and writing still work (put enabled).
    expect_ok(fs::write(m.at("new"), "n"), "create a new file");
    expect_ok(fs::create_dir(m.at("newdir")), "mkdir");
    expect_ok(fs::write(m.at("f"), "rewritten"), "overwrite f");
    assert_eq!(read(&m.scratch_path("o1/new")), "n");
    assert_eq!(read(&m.scratch_path("o1/f")), "rewritten");
}

#[test]
fn rename_into_a_put_disabled_bucket_fails() {
    let root = scratch();
    put(&root.path().join("open/f"), "f");
    put(&root.path().join("locked/x"), "x");
    let mut locked = bucket("locked", vec![root_mount("{root}/locked")]);
    locked["access"] = access(true, false, true);
    let cfg = config(vec![
        bucket("open", vec![root_mount("{root}/open")]),
        locked,
    ]);
    let m = Mount::start_in(root, &cfg, &[]);

    // Either EACCES directly, or EXDEV (separate origins) and then the copy
    // fails: in no case may the file arrive in the locked bucket.
    let e = err_of(
        fs::rename(m.at("open/f"), m.at("locked/f")),
        "rename open/f → locked/f",
    );
    assert!(
        e == libc::EACCES || e == libc::EXDEV,
        "rename into put-disabled bucket: expected EACCES (or EXDEV), got {} ({e})",
        errno_name(e)
    );
    let mv = Command::new("mv")
        .arg(m.at("open/f"))
        .arg(m.at("locked/"))
        .output()
        .unwrap();
    assert!(!mv.status.success(), "mv open/f locked/ must fail");
    assert_eq!(
        names(&m.scratch_path("locked")),
        s(&["x"]),
        "locked bucket unchanged"
    );
    assert_eq!(read(&m.scratch_path("open/f")), "f", "source kept");
}

#[test]
fn default_access_allows_everything() {
    let root = scratch();
    prepare(root.path());
    let cfg = config(vec![
        json!({"meta": {"name": "b"}, "mounts": [root_mount("{root}/o1")]}),
    ]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    assert_eq!(read(&m.at("f")), "data");
    expect_ok(fs::write(m.at("g"), "g"), "create");
    expect_ok(fs::rename(m.at("g"), m.at("h")), "rename");
    expect_ok(fs::remove_file(m.at("h")), "unlink");
    expect_ok(fs::remove_dir(m.at("e")), "rmdir");
    assert_eq!(names(&m.scratch_path("o1")), s(&["d", "f", "sym"]));
}

/// SPEC §9.1: a rename that would have to delete its source where `delete`
/// is disabled is EACCES, never EXDEV — on EXDEV `mv` copies first and
/// only then fails to remove the source, leaving the file in both places.
/// Out of the bucket (into another bucket of the mount) and across the
/// bucket's own origins alike.
#[test]
fn mv_out_of_a_delete_disabled_bucket_fails_and_leaves_one_copy() {
    let root = scratch();
    put(&root.path().join("locked/f"), "f");
    put(&root.path().join("locked/d/inner"), "inner");
    fs::create_dir_all(root.path().join("locked_sub")).unwrap();
    fs::create_dir_all(root.path().join("open")).unwrap();
    let mut locked = bucket(
        "locked",
        vec![
            root_mount("{root}/locked"),
            mount_at("/sub", "{root}/locked_sub"),
        ],
    );
    locked["access"] = access(true, true, false);
    let cfg = config(vec![
        locked,
        bucket("open", vec![root_mount("{root}/open")]),
    ]);
    let m = Mount::start_in(root, &cfg, &[]);
    let before = snapshot(&m.scratch_path("locked"));

    for (from, to) in [
        ("locked/f", "open/f"),
        ("locked/d", "open/d"),
        ("locked/f", "locked/sub/f"),
        ("locked/d", "locked/sub/d"),
    ] {
        expect_errno(
            fs::rename(m.at(from), m.at(to)),
            libc::EACCES,
            &format!("rename {from} → {to}"),
        );
    }
    for (from, to) in [
        ("locked/f", "open/"),
        ("locked/d", "open/"),
        ("locked/f", "locked/sub/"),
        ("locked/d", "locked/sub/"),
    ] {
        let mv = run_timeout(
            Command::new("mv").arg(m.at(from)).arg(m.at(to)),
            std::time::Duration::from_secs(60),
        );
        assert!(!mv.status.success(), "mv {from} {to} must fail");
        let err = String::from_utf8_lossy(&mv.stderr);
        assert!(
            err.contains("Permission denied"),
            "mv {from} {to}: expected EACCES, got: {err}"
        );
    }
    assert_eq!(
        snapshot(&m.scratch_path("locked")),
        before,
        "source origin unchanged"
    );
    assert_eq!(names(&m.scratch_path("open")), s(&[]), "nothing copied out");
    assert_eq!(
        names(&m.scratch_path("locked_sub")),
        s(&[]),
        "nothing copied into the other origin"
    );
    assert_eq!(read(&m.at("locked/f")), "f");

    // Copying out (no delete needed) still works.
    run_ok(Command::new("cp").arg(m.at("locked/f")).arg(m.at("open/")));
    assert_eq!(read(&m.scratch_path("open/f")), "f");
}
