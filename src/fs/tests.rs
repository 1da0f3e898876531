//! Core tests without a kernel mount: the merge, placement and access rules
//! driven through `Core` on temporary origins.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use super::inodes::ROOT_INO;
use super::*;
use crate::config::{Access, AccessRule, Bucket, BucketMeta, Config, MountSpec};

fn mount(point: Option<&str>, origin: &Path, expose: bool) -> MountSpec {
    MountSpec {
        mount_point: point.map(str::to_string),
        origin_path: origin.to_string_lossy().into_owned(),
        expose,
        watch: Default::default(),
    }
}

fn config(mounts: Vec<MountSpec>, access: [bool; 3]) -> Config {
    Config {
        buckets: vec![Bucket {
            meta: BucketMeta {
                enable: true,
                name: "b".into(),
                expose: true,
                ..Default::default()
            },
            mounts,
            access: Access {
                get: AccessRule { enable: access[0] },
                put: AccessRule { enable: access[1] },
                delete: AccessRule { enable: access[2] },
            },
            ..Default::default()
        }],
        state_dir: "/nonexistent".into(),
        ..Default::default()
    }
}

const ROOT_CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn lookup_path(core: &Core, path: &str) -> FsResult<Entry> {
    let mut ino = ROOT_INO;
    let mut last = None;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let e = core.lookup(ino, OsStr::new(c))?;
        ino = e.attr.ino.0;
        last = Some(e);
    }
    last.ok_or(Errno::EINVAL.into())
}

fn names(core: &Core, path: &str) -> Vec<String> {
    let ino = if path == "/" {
        ROOT_INO
    } else {
        lookup_path(core, path).unwrap().attr.ino.0
    };
    let fh = core.opendir(ino).unwrap();
    let mut v: Vec<String> = core
        .readdir(ino, fh, 0)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    core.releasedir(fh);
    v.sort();
    v
}

struct Fixture {
    _dir: tempfile::TempDir,
    o1: std::path::PathBuf,
    o2: std::path::PathBuf,
    hidden: std::path::PathBuf,
    deep: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mk = |n: &str| {
        let p = dir.path().join(n);
        fs::create_dir(&p).unwrap();
        p
    };
    let (o1, o2, hidden, deep) = (mk("o1"), mk("o2"), mk("h"), mk("d"));
    fs::write(o1.join("both"), "from o1").unwrap();
    fs::write(o2.join("both"), "from o2").unwrap();
    fs::write(o2.join("only2"), "2").unwrap();
    fs::create_dir(o1.join("shared")).unwrap();
    fs::create_dir(o2.join("shared")).unwrap();
    fs::write(o1.join("shared/x"), "").unwrap();
    fs::write(o2.join("shared/y"), "").unwrap();
    fs::create_dir(o2.join("sub2")).unwrap();
    fs::write(o1.join("hidden"), "shadowed by the hidden mount").unwrap();
    fs::write(hidden.join("secret"), "s").unwrap();
    Fixture {
        _dir: dir,
        o1,
        o2,
        hidden,
        deep,
    }
}

fn merged_core(f: &Fixture, access: [bool; 3]) -> Core {
    let cfg = config(
        vec![
            mount(None, &f.o1, true),
            mount(None, &f.o2, true),
            mount(Some("/hidden"), &f.hidden, false),
            mount(Some("/deep/a/b"), &f.deep, true),
        ],
        access,
    );
    Core::new(&cfg, Some("b"), FsOptions::default()).unwrap()
}

#[test]
fn listing_is_the_union_with_layout_names() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    assert_eq!(
        names(&core, "/"),
        ["both", "deep", "only2", "shared", "sub2"]
    );
    assert_eq!(names(&core, "/shared"), ["x", "y"]);
    assert_eq!(names(&core, "/deep"), ["a"]);
    assert_eq!(names(&core, "/deep/a"), ["b"]);
}

#[test]
fn first_root_mount_wins_a_name() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    let e = lookup_path(&core, "/both").unwrap();
    let fh = core.open(e.attr.ino.0, libc::O_RDONLY).unwrap();
    assert_eq!(core.read(fh, 0, 100).unwrap(), b"from o1");
}

#[test]
fn hidden_mount_is_enoent_even_over_a_root_entry() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    assert_eq!(lookup_path(&core, "/hidden").unwrap_err(), Errno::ENOENT);
}

#[test]
fn synthetic_dirs_are_read_only() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    let deep = lookup_path(&core, "/deep").unwrap();
    assert_eq!(deep.attr.perm, 0o555);
    assert_eq!(
        core.mkdir(deep.attr.ino.0, OsStr::new("new"), 0o755, 0, ROOT_CTX)
            .unwrap_err(),
        Errno::EACCES
    );
    assert_eq!(
        core.rmdir(ROOT_INO, OsStr::new("deep")).unwrap_err(),
        Errno::EBUSY
    );
}

#[test]
fn new_entries_go_to_first_root_mount_with_the_parent() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    let sub2 = lookup_path(&core, "/sub2").unwrap();
    core.create(
        sub2.attr.ino.0,
        OsStr::new("n"),
        0o644,
        0,
        libc::O_WRONLY,
        ROOT_CTX,
    )
    .unwrap();
    assert!(f.o2.join("sub2/n").exists());
    core.create(
        ROOT_INO,
        OsStr::new("top"),
        0o644,
        0,
        libc::O_WRONLY,
        ROOT_CTX,
    )
    .unwrap();
    assert!(f.o1.join("top").exists());
    // A name visible from another root mount exists already.
    assert_eq!(
        core.mkdir(ROOT_INO, OsStr::new("only2"), 0o755, 0, ROOT_CTX)
            .unwrap_err(),
        Errno::EEXIST
    );
}

#[test]
fn rename_across_origins_is_exdev() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    let b = lookup_path(&core, "/deep/a/b").unwrap();
    assert_eq!(
        core.rename(
            ROOT_INO,
            OsStr::new("both"),
            b.attr.ino.0,
            OsStr::new("x"),
            0
        )
        .unwrap_err(),
        Errno::EXDEV
    );
    let sub2 = lookup_path(&core, "/sub2").unwrap();
    // only2 lives in o2, sub2 too: same origin, native rename.
    core.rename(
        ROOT_INO,
        OsStr::new("only2"),
        sub2.attr.ino.0,
        OsStr::new("moved"),
        0,
    )
    .unwrap();
    assert!(f.o2.join("sub2/moved").exists());
}

#[test]
fn unlink_removes_the_name_from_every_root_mount() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    core.unlink(ROOT_INO, OsStr::new("both")).unwrap();
    assert_eq!(lookup_path(&core, "/both").unwrap_err(), Errno::ENOENT);
    assert!(!f.o2.join("both").exists());
}

#[test]
fn access_rules() {
    let f = fixture();
    let core = merged_core(&f, [false, false, false]);
    let e = lookup_path(&core, "/both").unwrap();
    assert_eq!(
        core.open(e.attr.ino.0, libc::O_RDONLY).unwrap_err(),
        Errno::EACCES
    );
    assert_eq!(
        core.open(e.attr.ino.0, libc::O_WRONLY).unwrap_err(),
        Errno::EACCES
    );
    assert_eq!(
        core.unlink(ROOT_INO, OsStr::new("both")).unwrap_err(),
        Errno::EACCES
    );
    assert_eq!(
        core.mkdir(ROOT_INO, OsStr::new("d"), 0o755, 0, ROOT_CTX)
            .unwrap_err(),
        Errno::EACCES
    );
    // Listing still works in a drop box.
    assert!(names(&core, "/").contains(&"both".to_string()));
}

#[test]
fn hostile_names_are_refused() {
    let f = fixture();
    let core = merged_core(&f, [true; 3]);
    for bad in ["..", ".", "a/b"] {
        assert_eq!(
            core.lookup(ROOT_INO, OsStr::new(bad)).unwrap_err(),
            Errno::EINVAL
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        core.lookup(ROOT_INO, OsStr::new(&long)).unwrap_err(),
        Errno::ENAMETOOLONG
    );
}

#[test]
fn multi_bucket_root_is_read_only_listing_of_buckets() {
    let f = fixture();
    let cfg = config(vec![mount(None, &f.o1, true)], [true; 3]);
    let core = Core::new(&cfg, None, FsOptions::default()).unwrap();
    assert_eq!(names(&core, "/"), ["b"]);
    assert_eq!(
        core.mkdir(ROOT_INO, OsStr::new("x"), 0o755, 0, ROOT_CTX)
            .unwrap_err(),
        Errno::EACCES
    );
    assert_eq!(names(&core, "/b"), ["both", "hidden", "shared"]);
}
