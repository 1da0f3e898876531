//! Real kernel mounts proving the merge rules (SPEC §3.1), buckets as
//! top-level directories (§3), hidden mounts (§2.1 `expose`) and the
//! behaviour of local origins (§3.2).
use crate::common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn read(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => panic!("read {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `--bucket b` mount of a bucket "b" with the given mounts; `prepare` fills
/// the scratch dir first.
fn mount_bucket(mounts: Vec<serde_json::Value>, prepare: impl FnOnce(&Path)) -> Mount {
    let root = scratch();
    prepare(root.path());
    Mount::start_in(root, &config(vec![bucket("b", mounts)]), &["--bucket", "b"])
}

// ------------------------------------------------------------ rule 1 ----

#[test]
fn deepest_mount_point_wins() {
    // Declared shallow-last on purpose: the longest prefix wins, not the order.
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            mount_at("/x/y", "{root}/y"),
            mount_at("/x", "{root}/x"),
        ],
        |r| {
            put(&r.join("o1/x/from_root"), "root");
            put(&r.join("x/keep"), "x-keep");
            put(&r.join("x/y/from_x"), "x-y");
            put(&r.join("y/from_y"), "y");
        },
    );
    assert_eq!(read(&m.at("x/keep")), "x-keep");
    assert_eq!(read(&m.at("x/y/from_y")), "y");
    assert_eq!(names(&m.at("x/y")), s(&["from_y"]));
    expect_errno(
        fs::symlink_metadata(m.at("x/y/from_x")),
        libc::ENOENT,
        "x/y/from_x belongs to /x but /x/y is the deeper mount",
    );
    let x = names(&m.at("x"));
    assert!(x.contains(&"keep".to_string()), "/x listing {x:?}");
    assert!(x.contains(&"y".to_string()), "/x listing {x:?}");
    assert!(!x.contains(&"from_root".to_string()), "/x listing {x:?}");
    expect_errno(
        fs::symlink_metadata(m.at("x/from_root")),
        libc::ENOENT,
        "root origin's x/from_root is under mountPoint /x",
    );
}

// ------------------------------------------------------------ rule 2 ----

#[test]
fn root_mounts_are_merged() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), root_mount("{root}/o2")],
        |r| {
            put(&r.join("o1/a"), "a");
            put(&r.join("o1/common"), "one");
            put(&r.join("o1/dir/sub1"), "s1");
            put(&r.join("o1/dir/shared"), "first");
            put(&r.join("o2/b"), "b");
            put(&r.join("o2/common"), "two!!");
            put(&r.join("o2/dir/sub2"), "s2");
            put(&r.join("o2/dir/shared"), "second!!");
        },
    );
    assert_eq!(
        names(&m.mnt),
        s(&["a", "b", "common", "dir"]),
        "root listing = union, no duplicates"
    );
    assert_eq!(
        names(&m.at("dir")),
        s(&["shared", "sub1", "sub2"]),
        "dir listing = union"
    );
    assert_eq!(
        read(&m.at("common")),
        "one",
        "same name served from the first root mount"
    );
    assert_eq!(
        fs::metadata(m.at("common")).unwrap().len(),
        3,
        "stat of common from the first root mount"
    );
    assert_eq!(read(&m.at("dir/shared")), "first");
    assert_eq!(read(&m.at("b")), "b");
    assert_eq!(read(&m.at("dir/sub2")), "s2");
}

#[test]
fn writing_an_existing_name_modifies_the_origin_serving_it() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), root_mount("{root}/o2")],
        |r| {
            fs::create_dir_all(r.join("o1/dir")).unwrap();
            put(&r.join("o2/dir/x"), "from o2");
            put(&r.join("o2/y"), "y from o2");
        },
    );
    fs::write(m.at("dir/x"), "rewritten").unwrap();
    assert_eq!(
        read(&m.scratch_path("o2/dir/x")),
        "rewritten",
        "o2's file was rewritten"
    );
    assert!(
        !m.scratch_path("o1/dir/x").exists(),
        "no copy created in o1"
    );
    let mut f = fs::OpenOptions::new().append(true).open(m.at("y")).unwrap();
    f.write_all(b" appended").unwrap();
    drop(f);
    assert_eq!(read(&m.scratch_path("o2/y")), "y from o2 appended");
    assert!(!m.scratch_path("o1/y").exists());
    fs::remove_file(m.at("dir/x")).unwrap();
    assert!(
        !m.scratch_path("o2/dir/x").exists(),
        "unlink removed o2's file"
    );
    expect_errno(
        fs::symlink_metadata(m.at("dir/x")),
        libc::ENOENT,
        "dir/x after unlink",
    );
}

#[test]
fn mv_of_an_entry_of_the_second_root_mount() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), root_mount("{root}/o2")],
        |r| {
            put(&r.join("o2/b"), "b from o2");
            put(&r.join("o2/sub/c"), "c");
        },
    );
    // Native rename inside o2 or EXDEV + copy: either way mv must work.
    run_ok(Command::new("mv").arg(m.at("b")).arg(m.at("b2")));
    run_ok(Command::new("mv").arg(m.at("sub")).arg(m.at("sub2")));
    assert_eq!(names(&m.mnt), s(&["b2", "sub2"]));
    assert_eq!(read(&m.at("b2")), "b from o2");
    assert_eq!(read(&m.at("sub2/c")), "c");
    assert!(!m.scratch_path("o2/b").exists() && !m.scratch_path("o2/sub").exists());
}

#[test]
fn large_merged_directory_lists_every_name_once() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), root_mount("{root}/o2")],
        |r| {
            for i in 0..1500 {
                put(&r.join(format!("o1/big/file-{i:05}")), "");
            }
            for i in 1000..2500 {
                put(&r.join(format!("o2/big/file-{i:05}")), "");
            }
        },
    );
    let mut got = Vec::new();
    for e in fs::read_dir(m.at("big")).unwrap() {
        got.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(n, got.len(), "duplicate names in a merged listing");
    let want: Vec<String> = (0..2500).map(|i| format!("file-{i:05}")).collect();
    assert_eq!(got, want, "merged listing of 2500 names");
}

// ------------------------------------------------------------ rule 3 ----

#[test]
fn synthetic_read_only_parents_for_deep_mount_point() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), mount_at("/deep/a/b", "{root}/d")],
        |r| {
            put(&r.join("o1/top"), "t");
            put(&r.join("d/f"), "deep file");
        },
    );
    assert_eq!(names(&m.mnt), s(&["deep", "top"]));
    assert!(
        fs::metadata(m.at("deep")).unwrap().is_dir(),
        "/deep is a directory"
    );
    assert!(
        fs::metadata(m.at("deep/a")).unwrap().is_dir(),
        "/deep/a is a directory"
    );
    assert_eq!(names(&m.at("deep")), s(&["a"]));
    assert_eq!(names(&m.at("deep/a")), s(&["b"]));
    assert_eq!(read(&m.at("deep/a/b/f")), "deep file");

    expect_errno(
        fs::create_dir(m.at("deep/new")),
        libc::EACCES,
        "mkdir in synthetic /deep",
    );
    expect_errno(
        fs::File::create(m.at("deep/a/x")),
        libc::EACCES,
        "create in synthetic /deep/a",
    );
    expect_errno(
        std::os::unix::fs::symlink("t", m.at("deep/a/l")),
        libc::EACCES,
        "symlink in synthetic /deep/a",
    );
    assert!(
        !m.scratch_path("o1/deep").exists(),
        "nothing created in the root origin"
    );
    assert_eq!(names(&m.at("deep/a")), s(&["b"]));
}

#[test]
fn root_origin_directory_above_mount_point_is_merged_and_writable() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            mount_at("/media/live", "{root}/live"),
        ],
        |r| {
            put(&r.join("o1/media/old.txt"), "old");
            put(&r.join("live/now.txt"), "now");
        },
    );
    assert_eq!(names(&m.at("media")), s(&["live", "old.txt"]));
    assert_eq!(read(&m.at("media/live/now.txt")), "now");
    expect_ok(
        fs::create_dir(m.at("media/new")),
        "mkdir in root-origin dir /media",
    );
    assert!(
        m.scratch_path("o1/media/new").is_dir(),
        "mkdir landed in o1/media/new"
    );
}

// ------------------------------------------------------------ rule 4 ----

#[test]
fn mount_point_shadows_same_named_root_entry() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            mount_at("/m", "{root}/mo"),
            mount_at("/n", "{root}/no"),
        ],
        |r| {
            put(&r.join("o1/m/inner_root"), "root");
            put(&r.join("o1/n"), "a plain file in the root origin");
            put(&r.join("mo/inner_m"), "m");
            put(&r.join("no/x"), "x");
        },
    );
    assert_eq!(names(&m.mnt), s(&["m", "n"]), "each name once");
    assert_eq!(names(&m.at("m")), s(&["inner_m"]));
    expect_errno(
        fs::symlink_metadata(m.at("m/inner_root")),
        libc::ENOENT,
        "root origin's m/inner_root is shadowed",
    );
    let n = fs::metadata(m.at("n")).unwrap();
    assert!(
        n.is_dir(),
        "/n is the mount point (dir), not the root origin's file"
    );
    assert_eq!(names(&m.at("n")), s(&["x"]));
}

// ------------------------------------------------------------ rule 5 ----

#[test]
fn new_entries_go_to_the_owning_mount() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            mount_at("/deep/a/b", "{root}/d"),
            mount_at("/x", "{root}/x"),
        ],
        |_| {},
    );
    fs::write(m.at("deep/a/b/new.txt"), "n").unwrap();
    assert_eq!(
        read(&m.scratch_path("d/new.txt")),
        "n",
        "file landed in the /deep/a/b origin"
    );
    fs::create_dir(m.at("x/newdir")).unwrap();
    fs::write(m.at("x/newdir/f"), "f").unwrap();
    assert_eq!(
        read(&m.scratch_path("x/newdir/f")),
        "f",
        "file landed in the /x origin"
    );
    assert!(!m.scratch_path("o1/x").exists(), "root origin untouched");
    assert!(!m.scratch_path("o1/deep").exists(), "root origin untouched");
}

#[test]
fn new_root_entries_go_to_first_root_mount_with_parent() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), root_mount("{root}/o2")],
        |r| {
            fs::create_dir_all(r.join("o1/both")).unwrap();
            fs::create_dir_all(r.join("o2/both")).unwrap();
            fs::create_dir_all(r.join("o2/only2")).unwrap();
        },
    );
    fs::write(m.at("top"), "t").unwrap();
    assert!(
        m.scratch_path("o1/top").is_file(),
        "/top → first root mount o1"
    );
    assert!(!m.scratch_path("o2/top").exists());

    fs::write(m.at("both/f"), "f").unwrap();
    assert!(
        m.scratch_path("o1/both/f").is_file(),
        "/both/f → o1 (first with parent)"
    );
    assert!(!m.scratch_path("o2/both/f").exists());

    fs::write(m.at("only2/f"), "f").unwrap();
    assert!(
        m.scratch_path("o2/only2/f").is_file(),
        "/only2/f → o2 (only o2 has only2/)"
    );
    assert!(!m.scratch_path("o1/only2").exists(), "o1 got no only2/");

    fs::create_dir(m.at("only2/sub")).unwrap();
    fs::write(m.at("only2/sub/g"), "g").unwrap();
    assert!(
        m.scratch_path("o2/only2/sub/g").is_file(),
        "/only2/sub/g → o2"
    );

    fs::create_dir(m.at("newdir")).unwrap();
    assert!(m.scratch_path("o1/newdir").is_dir(), "mkdir /newdir → o1");
    assert!(!m.scratch_path("o2/newdir").exists());
}

// ------------------------------------------------------------ rule 6 ----

#[test]
fn rename_within_one_origin_is_native() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), mount_at("/x", "{root}/x")],
        |r| {
            put(&r.join("o1/a"), "content a");
            fs::create_dir_all(r.join("o1/dir")).unwrap();
            put(&r.join("x/f"), "xf");
        },
    );
    let ino = fs::metadata(m.scratch_path("o1/a")).unwrap().ino();
    expect_ok(fs::rename(m.at("a"), m.at("dir/a2")), "rename /a → /dir/a2");
    assert!(!m.scratch_path("o1/a").exists());
    let moved = fs::metadata(m.scratch_path("o1/dir/a2")).unwrap();
    assert_eq!(
        moved.ino(),
        ino,
        "same inode in the origin: a native rename, not a copy"
    );
    expect_ok(
        fs::rename(m.at("dir"), m.at("dir2")),
        "rename dir /dir → /dir2",
    );
    assert_eq!(read(&m.scratch_path("o1/dir2/a2")), "content a");
    assert_eq!(read(&m.at("dir2/a2")), "content a");
    let xino = fs::metadata(m.scratch_path("x/f")).unwrap().ino();
    expect_ok(
        fs::rename(m.at("x/f"), m.at("x/g")),
        "rename inside the /x origin",
    );
    assert_eq!(fs::metadata(m.scratch_path("x/g")).unwrap().ino(), xino);
}

#[test]
fn rename_across_origins_is_exdev() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            mount_at("/x", "{root}/x"),
            mount_at("/x/y", "{root}/y"),
        ],
        |r| {
            put(&r.join("o1/f"), "f");
            put(&r.join("o1/d/inner"), "i");
            put(&r.join("x/g"), "g");
        },
    );
    expect_errno(
        fs::rename(m.at("f"), m.at("x/f")),
        libc::EXDEV,
        "rename root → /x",
    );
    expect_errno(
        fs::rename(m.at("x/g"), m.at("g")),
        libc::EXDEV,
        "rename /x → root",
    );
    expect_errno(
        fs::rename(m.at("x/g"), m.at("x/y/g")),
        libc::EXDEV,
        "rename /x → /x/y",
    );
    expect_errno(
        fs::rename(m.at("d"), m.at("x/d")),
        libc::EXDEV,
        "rename dir root → /x",
    );
    assert_eq!(read(&m.scratch_path("o1/f")), "f", "source untouched");
    assert_eq!(read(&m.scratch_path("x/g")), "g", "source untouched");
    assert!(!m.scratch_path("x/f").exists() && !m.scratch_path("o1/g").exists());
}

#[test]
fn link_across_origins_is_exdev() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), mount_at("/x", "{root}/x")],
        |r| {
            put(&r.join("o1/f"), "f");
            put(&r.join("x/g"), "g");
        },
    );
    expect_errno(
        fs::hard_link(m.at("f"), m.at("x/f")),
        libc::EXDEV,
        "link root → /x",
    );
    expect_errno(
        fs::hard_link(m.at("x/g"), m.at("g")),
        libc::EXDEV,
        "link /x → root",
    );
    expect_ok(fs::hard_link(m.at("x/g"), m.at("x/g2")), "link inside /x");
    assert_eq!(fs::metadata(m.scratch_path("x/g")).unwrap().nlink(), 2);
}

#[test]
fn mount_point_itself_cannot_be_renamed_or_removed() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), mount_at("/x", "{root}/x")],
        |r| {
            fs::create_dir_all(r.join("x")).unwrap();
        },
    );
    let e = err_of(fs::rename(m.at("x"), m.at("z")), "rename of mount point /x");
    assert_ne!(e, 0);
    let e = err_of(fs::remove_dir(m.at("x")), "rmdir of (empty) mount point /x");
    assert_ne!(e, 0);
    assert!(
        m.scratch_path("x").is_dir(),
        "the origin dir of /x is intact"
    );
    assert!(!m.scratch_path("o1/z").exists());
    assert_eq!(names(&m.mnt), s(&["x"]));
}

#[test]
fn mv_across_origins_falls_back_to_copy() {
    let m = mount_bucket(
        vec![root_mount("{root}/o1"), mount_at("/x", "{root}/x")],
        |r| {
            put(&r.join("o1/f"), "file f");
            put(&r.join("o1/d/inner"), "inner");
            put(&r.join("o1/d/sub/deeper"), "deeper");
        },
    );
    run_ok(Command::new("mv").arg(m.at("f")).arg(m.at("x/")));
    run_ok(Command::new("mv").arg(m.at("d")).arg(m.at("x/")));
    assert_eq!(read(&m.scratch_path("x/f")), "file f");
    assert_eq!(read(&m.scratch_path("x/d/inner")), "inner");
    assert_eq!(read(&m.scratch_path("x/d/sub/deeper")), "deeper");
    assert!(
        !m.scratch_path("o1/f").exists(),
        "source removed after copy"
    );
    assert!(
        !m.scratch_path("o1/d").exists(),
        "source dir removed after copy"
    );
    assert_eq!(names(&m.mnt), s(&["x"]));
}

// ----------------------------------------------------------- buckets ----

fn four_buckets() -> Mount {
    let root = scratch();
    let r = root.path();
    put(&r.join("o1/f1"), "one");
    put(&r.join("o2/f2"), "two");
    put(&r.join("o3/f3"), "three");
    put(&r.join("o4/f4"), "four");
    let cfg = config(vec![
        bucket("b1", vec![root_mount("{root}/o1")]),
        // meta keys directly in the bucket, access left at its defaults
        json!({"name": "b2", "mounts": [root_mount("{root}/o2")]}),
        json!({"meta": {"name": "b3", "enable": false}, "mounts": [root_mount("{root}/o3")]}),
        json!({"meta": {"name": "b4", "expose": false}, "mounts": [root_mount("{root}/o4")]}),
    ]);
    Mount::start_in(root, &cfg, &[])
}

#[test]
fn buckets_are_top_level_directories() {
    let m = four_buckets();
    let top = names(&m.mnt);
    assert!(
        top.contains(&"b1".to_string()) && top.contains(&"b2".to_string()),
        "top level {top:?}"
    );
    assert!(fs::metadata(m.at("b1")).unwrap().is_dir());
    assert_eq!(names(&m.at("b1")), s(&["f1"]));
    assert_eq!(read(&m.at("b1/f1")), "one");
    assert_eq!(read(&m.at("b2/f2")), "two");
    fs::write(m.at("b2/new"), "n").unwrap();
    assert_eq!(
        read(&m.scratch_path("o2/new")),
        "n",
        "write in b2 lands in its origin"
    );
}

#[test]
fn disabled_bucket_is_not_shown() {
    let m = four_buckets();
    assert!(
        !names(&m.mnt).contains(&"b3".to_string()),
        "b3 (meta.enable:false) listed"
    );
    expect_errno(
        fs::symlink_metadata(m.at("b3")),
        libc::ENOENT,
        "lookup of disabled bucket b3",
    );
}

#[test]
fn unexposed_bucket_is_not_shown() {
    let m = four_buckets();
    assert_eq!(names(&m.mnt), s(&["b1", "b2"]));
    expect_errno(
        fs::symlink_metadata(m.at("b4")),
        libc::ENOENT,
        "lookup of expose:false bucket b4",
    );
    expect_errno(
        fs::read(m.at("b4/f4")),
        libc::ENOENT,
        "read inside expose:false bucket b4",
    );
}

#[test]
fn mount_root_is_read_only() {
    let m = four_buckets();
    expect_errno(
        fs::create_dir(m.at("newdir")),
        libc::EACCES,
        "mkdir at the mount root",
    );
    expect_errno(
        fs::File::create(m.at("newfile")),
        libc::EACCES,
        "create at the mount root",
    );
    expect_errno(
        std::os::unix::fs::symlink("b1", m.at("link")),
        libc::EACCES,
        "symlink at the mount root",
    );
    assert_eq!(names(&m.mnt), s(&["b1", "b2"]));
}

#[test]
fn bucket_option_mounts_one_bucket_at_root() {
    let root = scratch();
    put(&root.path().join("o1/f1"), "one");
    put(&root.path().join("o2/f2"), "two");
    let cfg = config(vec![
        bucket("b1", vec![root_mount("{root}/o1")]),
        bucket("b2", vec![root_mount("{root}/o2")]),
    ]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b2"]);
    assert_eq!(names(&m.mnt), s(&["f2"]));
    assert_eq!(read(&m.at("f2")), "two");
    fs::write(m.at("new"), "n").unwrap();
    assert_eq!(
        read(&m.scratch_path("o2/new")),
        "n",
        "the bucket root is writable with --bucket"
    );
}

// ------------------------------------------------------ hidden mounts ----

#[test]
fn hidden_mount_is_invisible() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            hidden_mount_at("/hidden", "{root}/h"),
        ],
        |r| {
            put(&r.join("o1/visible"), "v");
            put(&r.join("h/secret"), "s");
        },
    );
    assert_eq!(names(&m.mnt), s(&["visible"]));
    expect_errno(
        fs::symlink_metadata(m.at("hidden")),
        libc::ENOENT,
        "lookup /hidden",
    );
    expect_errno(
        fs::symlink_metadata(m.at("hidden/secret")),
        libc::ENOENT,
        "lookup /hidden/secret",
    );
    expect_errno(
        fs::read_dir(m.at("hidden")),
        libc::ENOENT,
        "opendir /hidden",
    );
}

#[test]
fn hidden_mount_hides_same_named_root_entry() {
    let m = mount_bucket(
        vec![
            root_mount("{root}/o1"),
            root_mount("{root}/o2"),
            hidden_mount_at("/hidden", "{root}/h"),
            hidden_mount_at("/hfile", "{root}/h2"),
        ],
        |r| {
            put(&r.join("o1/visible"), "v");
            put(&r.join("o1/hidden/root_file"), "r");
            put(
                &r.join("o2/hfile"),
                "a plain file in o2 under a hidden mount point",
            );
            put(&r.join("h/secret"), "s");
        },
    );
    assert_eq!(names(&m.mnt), s(&["visible"]));
    expect_errno(
        fs::symlink_metadata(m.at("hidden")),
        libc::ENOENT,
        "lookup /hidden",
    );
    expect_errno(
        fs::symlink_metadata(m.at("hidden/root_file")),
        libc::ENOENT,
        "lookup /hidden/root_file (root origin entry under a hidden mount)",
    );
    expect_errno(
        fs::symlink_metadata(m.at("hfile")),
        libc::ENOENT,
        "lookup /hfile",
    );
}

// ------------------------------------------------ local origin (§3.2) ----

fn single() -> Mount {
    mount_bucket(vec![root_mount("{root}/o1")], |r| {
        put(&r.join("o1/file"), "0123456789");
        put(&r.join("o1/full/inner"), "i");
        fs::create_dir_all(r.join("o1/empty")).unwrap();
    })
}

#[test]
fn local_origin_errno_pass_through() {
    let m = single();
    let opts = || fs::OpenOptions::new();
    expect_errno(
        fs::File::open(m.at("missing")),
        libc::ENOENT,
        "open missing",
    );
    expect_errno(
        fs::symlink_metadata(m.at("missing")),
        libc::ENOENT,
        "stat missing",
    );
    expect_errno(
        fs::read_dir(m.at("missing")),
        libc::ENOENT,
        "opendir missing",
    );
    expect_errno(
        fs::remove_file(m.at("missing")),
        libc::ENOENT,
        "unlink missing",
    );
    expect_errno(
        fs::File::create(m.at("missing/x")),
        libc::ENOENT,
        "create below missing dir",
    );
    expect_errno(
        opts().write(true).create_new(true).open(m.at("file")),
        libc::EEXIST,
        "O_CREAT|O_EXCL on existing",
    );
    expect_errno(fs::create_dir(m.at("full")), libc::EEXIST, "mkdir existing");
    expect_errno(
        fs::remove_dir(m.at("full")),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    expect_errno(fs::remove_dir(m.at("file")), libc::ENOTDIR, "rmdir a file");
    expect_errno(
        fs::remove_file(m.at("full")),
        libc::EISDIR,
        "unlink a directory",
    );
    expect_errno(
        opts().write(true).open(m.at("full")),
        libc::EISDIR,
        "open dir for writing",
    );
    expect_errno(fs::read_dir(m.at("file")), libc::ENOTDIR, "opendir a file");
    expect_errno(
        fs::symlink_metadata(m.at("file/x")),
        libc::ENOTDIR,
        "stat file/x",
    );
    expect_errno(
        fs::rename(m.at("empty"), m.at("full")),
        libc::ENOTEMPTY,
        "rename dir onto non-empty dir",
    );
    expect_errno(
        fs::rename(m.at("empty"), m.at("file")),
        libc::ENOTDIR,
        "rename dir onto file",
    );
    expect_errno(
        fs::rename(m.at("file"), m.at("empty")),
        libc::EISDIR,
        "rename file onto dir",
    );
    expect_errno(
        rename2(&m.at("file"), &m.at("full/inner"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE onto existing",
    );
    expect_errno(
        fs::hard_link(m.at("full"), m.at("dirlink")),
        libc::EPERM,
        "link to a directory",
    );
    expect_errno(
        fs::read_link(m.at("file")),
        libc::EINVAL,
        "readlink of a regular file",
    );
    // nothing changed in the origin
    assert_eq!(read(&m.scratch_path("o1/file")), "0123456789");
    assert_eq!(names(&m.scratch_path("o1")), s(&["empty", "file", "full"]));
}

#[test]
fn local_origin_posix_operations() {
    let m = single();
    let o = |rel: &str| m.scratch_path(&format!("o1/{rel}"));

    // random write and append
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.at("file"))
        .unwrap();
    f.seek(SeekFrom::Start(3)).unwrap();
    f.write_all(b"XY").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(read(&o("file")), "012XY56789");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.at("file"))
        .unwrap();
    f.write_all(b"++").unwrap();
    drop(f);
    assert_eq!(read(&m.at("file")), "012XY56789++");

    // truncate, by path and by handle
    truncate_path(&m.at("file"), 4).unwrap();
    assert_eq!(read(&o("file")), "012X");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.at("file"))
        .unwrap();
    f.set_len(2).unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.at("file")).unwrap().len(), 2);

    // symlink, readlink, hard link
    std::os::unix::fs::symlink("file", m.at("sym")).unwrap();
    assert_eq!(fs::read_link(m.at("sym")).unwrap(), Path::new("file"));
    assert_eq!(fs::read_link(o("sym")).unwrap(), Path::new("file"));
    assert_eq!(read(&m.at("sym")), "01");
    fs::hard_link(m.at("file"), m.at("hard")).unwrap();
    assert_eq!(
        fs::metadata(o("file")).unwrap().ino(),
        fs::metadata(o("hard")).unwrap().ino()
    );
    assert_eq!(fs::metadata(m.at("file")).unwrap().nlink(), 2);

    // chmod, chown, utimens show the origin's own values
    fs::set_permissions(m.at("file"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(o("file")).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(m.at("file")).unwrap().mode() & 0o7777, 0o640);
    lchown(&m.at("file"), 1234, 4321).unwrap();
    let om = fs::metadata(o("file")).unwrap();
    assert_eq!((om.uid(), om.gid()), (1234, 4321));
    let mm = fs::metadata(m.at("file")).unwrap();
    assert_eq!((mm.uid(), mm.gid()), (1234, 4321));
    set_times(&m.at("file"), 1_000_000_000).unwrap();
    assert_eq!(fs::metadata(o("file")).unwrap().mtime(), 1_000_000_000);
    assert_eq!(fs::metadata(m.at("file")).unwrap().mtime(), 1_000_000_000);

    // O_EXCL create, rename with RENAME_NOREPLACE to a free name, rmdir, unlink
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.at("excl"))
        .unwrap();
    rename2(&m.at("excl"), &m.at("excl2"), libc::RENAME_NOREPLACE).unwrap();
    assert!(o("excl2").exists() && !o("excl").exists());
    fs::remove_dir(m.at("empty")).unwrap();
    fs::remove_file(m.at("hard")).unwrap();
    assert!(!o("empty").exists() && !o("hard").exists());

    // statfs works
    let st = Command::new("stat").arg("-f").arg(&m.mnt).output().unwrap();
    assert!(st.status.success(), "stat -f on the mount: {st:?}");

    // a bigger file round-trips byte for byte
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    fs::write(m.at("big"), &big).unwrap();
    assert!(
        fs::read(o("big")).unwrap() == big,
        "origin copy of big file differs"
    );
    let mut back = Vec::new();
    fs::File::open(m.at("big"))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == big, "big file read through the mount differs");
}

/// External changes reach the daemon through inotify, which is asynchronous
/// to the writer: the mount may need a moment (measured: ~10 ms) before it
/// shows them. Waits up to 2 s and reports how long it took.
#[track_caller]
fn visible_at_once(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    if !poll_until(Duration::from_secs(2), &mut cond) {
        panic!("{what}: not visible within 2 s");
    }
    let ms = start.elapsed().as_millis();
    if ms > 0 {
        eprintln!("{what}: visible after {ms} ms");
    }
}

#[test]
fn external_changes_in_local_origin_are_visible_at_once() {
    let m = single();
    let o = |rel: &str| m.scratch_path(&format!("o1/{rel}"));
    // Let the kernel cache what it can first.
    assert_eq!(names(&m.mnt), s(&["empty", "file", "full"]));
    assert_eq!(read(&m.at("file")), "0123456789");
    assert_eq!(fs::metadata(m.at("file")).unwrap().len(), 10);
    expect_errno(
        fs::symlink_metadata(m.at("dropped")),
        libc::ENOENT,
        "dropped before it exists",
    );

    // a new file dropped straight into the origin
    fs::write(o("dropped"), "dropped by ftp").unwrap();
    visible_at_once("new file: stat", || {
        fs::symlink_metadata(m.at("dropped")).is_ok()
    });
    visible_at_once("new file: listing", || {
        list(&m.mnt)
            .map(|v| v.contains(&"dropped".to_string()))
            .unwrap_or(false)
    });
    assert_eq!(read(&m.at("dropped")), "dropped by ftp");

    // an already-seen file rewritten with other content and size
    fs::write(o("file"), "rewritten outside, longer than before").unwrap();
    visible_at_once("rewrite: size", || {
        fs::metadata(m.at("file")).map(|md| md.len()).ok() == Some(37)
    });
    visible_at_once("rewrite: content", || {
        fs::read(m.at("file")).ok().as_deref()
            == Some(&b"rewritten outside, longer than before"[..])
    });
    // same size, different bytes
    fs::write(o("file"), "REWRITTEN OUTSIDE, LONGER THAN BEFORE").unwrap();
    visible_at_once("same-size rewrite: content", || {
        fs::read(m.at("file")).ok().as_deref()
            == Some(&b"REWRITTEN OUTSIDE, LONGER THAN BEFORE"[..])
    });
    // shrink
    fs::write(o("file"), "tiny").unwrap();
    visible_at_once("shrink: content", || {
        fs::read(m.at("file")).ok().as_deref() == Some(&b"tiny"[..])
    });

    // a new file inside an already-listed subdirectory
    assert_eq!(names(&m.at("full")), s(&["inner"]));
    fs::write(o("full/inner2"), "2").unwrap();
    visible_at_once("new file in seen dir: listing", || {
        list(&m.at("full"))
            .map(|v| v == s(&["inner", "inner2"]))
            .unwrap_or(false)
    });

    // external delete
    fs::remove_file(o("file")).unwrap();
    visible_at_once(
        "external delete: stat gives ENOENT",
        || matches!(fs::symlink_metadata(m.at("file")), Err(e) if errno(&e) == libc::ENOENT),
    );
    visible_at_once("external delete: listing", || {
        list(&m.mnt)
            .map(|v| !v.contains(&"file".to_string()))
            .unwrap_or(false)
    });
    fs::remove_dir_all(o("full")).unwrap();
    visible_at_once(
        "external rmdir: ENOENT",
        || matches!(fs::symlink_metadata(m.at("full/inner")), Err(e) if errno(&e) == libc::ENOENT),
    );
}

/// ctime as (seconds, nanoseconds).
fn ctime_of(md: &fs::Metadata) -> (i64, i64) {
    (md.ctime(), md.ctime_nsec())
}

/// `chown(path, -1, -1)` changes no id, but ext4 and every kernel file
/// system still update ctime (pjdfstest chown/00.t checks it). The kernel
/// sends it as a SETATTR without fields; it must not be dropped.
#[test]
fn chown_minus_one_minus_one_updates_ctime() {
    let m = mount_bucket(vec![root_mount("{root}/o1")], |r| {
        put(&r.join("o1/f"), "f");
        put(&r.join("o1/g"), "g");
        put(&r.join("o1/h"), "h");
    });
    // Longer than the coarse clock's tick, so a new ctime is a later one.
    let tick = Duration::from_millis(30);
    let keep = u32::MAX;

    // By path (lchown), seen through the mount and in the origin.
    let before = ctime_of(&fs::symlink_metadata(m.at("f")).unwrap());
    std::thread::sleep(tick);
    expect_ok(lchown(&m.at("f"), keep, keep), "lchown(f, -1, -1)");
    let through = ctime_of(&fs::symlink_metadata(m.at("f")).unwrap());
    let origin = ctime_of(&fs::symlink_metadata(m.scratch_path("o1/f")).unwrap());
    assert!(
        through > before,
        "ctime through the mount must move: {before:?} → {through:?}"
    );
    assert_eq!(through, origin, "the mount shows the origin's ctime");

    // By an open handle (fchown), the file still linked.
    let file = fs::File::open(m.at("g")).unwrap();
    let before = ctime_of(&file.metadata().unwrap());
    std::thread::sleep(tick);
    expect_ok(
        std::os::unix::fs::fchown(&file, None, None),
        "fchown(g, -1, -1)",
    );
    let after = ctime_of(&file.metadata().unwrap());
    assert!(after > before, "fchown(-1, -1): {before:?} → {after:?}");

    // By an open handle of an unlinked file: only the handle reaches it.
    let file = fs::File::open(m.at("h")).unwrap();
    fs::remove_file(m.at("h")).unwrap();
    let before = ctime_of(&file.metadata().unwrap());
    std::thread::sleep(tick);
    expect_ok(
        std::os::unix::fs::fchown(&file, None, None),
        "fchown(unlinked h, -1, -1)",
    );
    let after = ctime_of(&file.metadata().unwrap());
    assert!(
        after > before,
        "fchown(-1, -1) of an unlinked file: {before:?} → {after:?}"
    );

    // Nothing else changed.
    let md = fs::symlink_metadata(m.at("f")).unwrap();
    let om = fs::symlink_metadata(m.scratch_path("o1/f")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode()),
        (om.uid(), om.gid(), om.mode())
    );
    assert_eq!(read(&m.at("f")), "f");
}
