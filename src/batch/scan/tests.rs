//! Scan order, chunking, resumption and the merge view of batch scans, on
//! temporary local origins.

use super::*;
use crate::config::model::{FileType, Filter};
use crate::config::{Access, Origin};
use crate::origin::LocalOrigin;
use crate::tree::TreeMount;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// A bucket of local origins: `(mountPoint, expose, origin dir)` each.
fn bucket(mounts: &[(Option<&str>, bool, &Path)]) -> BucketState {
    let tree = BucketTree {
        name: "b".into(),
        mounts: mounts
            .iter()
            .map(|(p, expose, dir)| {
                let point = p.map(split_path).unwrap_or_default();
                TreeMount {
                    is_root: point.is_empty(),
                    point,
                    expose: *expose,
                    origin: Origin::Local(dir.to_path_buf()),
                    watch: Default::default(),
                }
            })
            .collect(),
    };
    BucketState {
        name: "b".into(),
        tree,
        access: Access::default(),
        origins: mounts
            .iter()
            .map(|(_, _, dir)| Backend::Local(LocalOrigin::new(dir.to_path_buf())))
            .collect(),
    }
}

fn filter(f: Filter) -> CompiledFilter {
    CompiledFilter::new(Some(&f)).unwrap()
}

/// Everything, everywhere: any kind, hidden names too, unlimited depth.
fn everything() -> CompiledFilter {
    filter(Filter {
        filetype: FileType::Any,
        recursive: true,
        hidden: true,
        ..Filter::default()
    })
}

fn text(path: &[OsString]) -> String {
    path_text(path)
}

fn texts(items: &[ScanItem]) -> Vec<String> {
    items.iter().map(|i| text(&i.path)).collect()
}

fn touch(p: &Path) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, b"x").unwrap();
}

fn full(b: &BucketState, base: &str, f: &CompiledFilter, t: Traverse) -> Vec<ScanItem> {
    let mut s = Scan::new(b, base, f, t).unwrap();
    let (items, _) = s.next_chunk(None, usize::MAX).unwrap();
    items
}

/// The names of the order test, with one that is not UTF-8.
fn order_tree(root: &Path) -> OsString {
    let odd = OsString::from_vec(b"n\xff".to_vec());
    for f in ["a/x", "a/y/deep", "a-b", "a.b/k", "B", "\u{e9}"] {
        touch(&root.join(f));
    }
    touch(&root.join(&odd));
    odd
}

#[test]
fn depth_first_order_is_name_byte_order() {
    let d = tempfile::tempdir().unwrap();
    order_tree(d.path());
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    let items = full(&b, "/", &f, Traverse::Depth);
    assert_eq!(
        texts(&items),
        [
            "/B",
            "/a",
            "/a/x",
            "/a/y",
            "/a/y/deep",
            "/a-b",
            "/a.b",
            "/a.b/k",
            "/n\u{10ffff}",
            "/\u{e9}"
        ]
    );
    assert_eq!(items[8].path[0].as_bytes(), b"n\xff");
    // Pre-order with sorted siblings = order of the component sequences.
    let mut sorted: Vec<_> = items.iter().map(|i| i.path.clone()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        items.iter().map(|i| i.path.clone()).collect::<Vec<_>>()
    );
    let depths: Vec<u32> = items.iter().map(|i| i.depth).collect();
    assert_eq!(depths, [1, 1, 2, 2, 3, 1, 1, 2, 1, 1]);
}

#[test]
fn breadth_first_order_is_depth_then_names() {
    let d = tempfile::tempdir().unwrap();
    order_tree(d.path());
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    let items = full(&b, "/", &f, Traverse::Breadth);
    assert_eq!(
        texts(&items),
        [
            "/B",
            "/a",
            "/a-b",
            "/a.b",
            "/n\u{10ffff}",
            "/\u{e9}",
            "/a/x",
            "/a/y",
            "/a.b/k",
            "/a/y/deep"
        ]
    );
}

/// A tree of a few levels with files and directories mixed.
fn wide_tree(root: &Path) {
    for i in 0..6 {
        touch(&root.join(format!("f{i}")));
        for j in 0..5 {
            touch(&root.join(format!("d{i}/g{j}")));
            if j % 2 == 0 {
                touch(&root.join(format!("d{i}/s{j}/h")));
                touch(&root.join(format!("d{i}/s{j}/t/u")));
            }
        }
    }
    fs::create_dir_all(root.join("empty")).unwrap();
}

/// All items by chunks of `n`, each chunk resumed from the previous one's
/// marker; `fresh`: a new scan per chunk, from the marker persisted as
/// JSON (as after a restart).
fn chunked(
    b: &BucketState,
    f: &CompiledFilter,
    t: Traverse,
    n: usize,
    fresh: bool,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut scan = Scan::new(b, "/", f, t).unwrap();
    let mut marker: Option<Marker> = None;
    loop {
        if fresh {
            scan = Scan::new(b, "/", f, t).unwrap();
            marker = marker.map(|m| {
                let json = serde_json::to_string(&m).unwrap();
                serde_json::from_str(&json).unwrap()
            });
        }
        let (items, _) = scan.next_chunk(marker.as_ref(), n).unwrap();
        assert!(items.len() <= n);
        out.extend(texts(&items));
        // A scan that repeats itself must fail here, not loop forever.
        assert!(
            out.len() <= limit,
            "more items than the whole scan: {out:?}"
        );
        match items.last() {
            Some(last) if items.len() == n => marker = Some(scan.marker_of(last)),
            _ => return out,
        }
    }
}

#[test]
fn chunks_cover_every_item_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    wide_tree(d.path());
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    for t in [Traverse::Depth, Traverse::Breadth] {
        let all = texts(&full(&b, "/", &f, t));
        assert_eq!(all.len(), 6 + 6 * (1 + 5 + 3 * 4) + 1);
        for n in [1, 7, 1000] {
            for fresh in [false, true] {
                assert_eq!(
                    chunked(&b, &f, t, n, fresh, all.len()),
                    all,
                    "{t} n={n} fresh={fresh}"
                );
            }
        }
    }
}

#[test]
fn resume_from_each_marker_gives_the_suffix() {
    let d = tempfile::tempdir().unwrap();
    wide_tree(d.path());
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    for t in [Traverse::Depth, Traverse::Breadth] {
        let all = full(&b, "/", &f, t);
        let names = texts(&all);
        for (i, item) in all.iter().enumerate() {
            let mut s = Scan::new(&b, "/", &f, t).unwrap();
            let m = s.marker_of(item);
            let (rest, _) = s.next_chunk(Some(&m), usize::MAX).unwrap();
            assert_eq!(texts(&rest), names[i + 1..], "{t} after {}", names[i]);
        }
    }
}

#[test]
fn markers_of_other_paths_and_gone_entries() {
    let d = tempfile::tempdir().unwrap();
    for f in ["m/a", "m/c/x", "m/e"] {
        touch(&d.path().join(f));
    }
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    let after = |path: &str, t: Traverse| {
        let m = Marker {
            path: split_path(path),
            dir: false,
        };
        let mut s = Scan::new(&b, "/m", &f, t).unwrap();
        texts(&s.next_chunk(Some(&m), 100).unwrap().0)
    };
    let t = Traverse::Depth;
    // A marker that no longer exists still places the scan.
    assert_eq!(after("/m/b", t), ["/m/c", "/m/c/x", "/m/e"]);
    assert_eq!(after("/m/c/w", t), ["/m/c/x", "/m/e"]);
    assert_eq!(after("/m/d/zz", t), ["/m/e"]);
    assert_eq!(after("/m/c/x", Traverse::Breadth), Vec::<String>::new());
    assert_eq!(after("/m/b", Traverse::Breadth), ["/m/c", "/m/e", "/m/c/x"]);
    // Before the scan path, or an ancestor of it: everything.
    assert_eq!(after("/a", t).len(), 4);
    assert_eq!(after("/", t).len(), 4);
    assert_eq!(after("/m", t).len(), 4);
    // After the scan path: nothing.
    assert!(after("/n", t).is_empty());
}

#[test]
fn filter_depth_recursive_patterns_filetype() {
    let d = tempfile::tempdir().unwrap();
    for f in [
        "a.jpg",
        "b.png",
        ".h.jpg",
        "s/c.jpg",
        "s/t/d.jpg",
        "s/t/u/e.jpg",
    ] {
        touch(&d.path().join(f));
    }
    let b = bucket(&[(None, true, d.path())]);
    let run = |f: Filter| texts(&full(&b, "/", &filter(f), Traverse::Depth));
    // The default: regular files directly in the path, not hidden.
    assert_eq!(run(Filter::default()), ["/a.jpg", "/b.png"]);
    assert_eq!(
        run(Filter {
            recursive: true,
            ..Filter::default()
        }),
        ["/a.jpg", "/b.png", "/s/c.jpg", "/s/t/d.jpg", "/s/t/u/e.jpg"]
    );
    assert_eq!(
        run(Filter {
            recursive: true,
            depth: 2,
            ..Filter::default()
        }),
        ["/a.jpg", "/b.png", "/s/c.jpg"]
    );
    assert_eq!(
        run(Filter {
            recursive: true,
            patterns: vec!["*.jpg".into()],
            hidden: true,
            ..Filter::default()
        }),
        [
            "/.h.jpg",
            "/a.jpg",
            "/s/c.jpg",
            "/s/t/d.jpg",
            "/s/t/u/e.jpg"
        ]
    );
    // Directories are yielded only when the filetype admits them, but
    // traversed either way.
    assert_eq!(
        run(Filter {
            recursive: true,
            filetype: FileType::Directory,
            ..Filter::default()
        }),
        ["/s", "/s/t", "/s/t/u"]
    );
    assert_eq!(
        run(Filter {
            recursive: true,
            depth: 2,
            filetype: FileType::Any,
            ..Filter::default()
        }),
        ["/a.jpg", "/b.png", "/s", "/s/c.jpg", "/s/t"]
    );
}

#[test]
fn no_listing_below_what_the_filter_can_reach() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..20 {
        touch(&d.path().join(format!("top/f{i}")));
        touch(&d.path().join(format!("sub{i}/deep/x")));
    }
    let b = bucket(&[(None, true, d.path())]);
    let f = CompiledFilter::new(None).unwrap();
    for t in [Traverse::Depth, Traverse::Breadth] {
        let mut s = Scan::new(&b, "/", &f, t).unwrap();
        let (items, examined) = s.next_chunk(None, 100).unwrap();
        assert!(items.is_empty());
        // Only the 21 entries of the scan path itself.
        assert_eq!(examined, 21, "{t}");
    }
}

#[test]
fn symlinks_are_not_followed() {
    let d = tempfile::tempdir().unwrap();
    touch(&d.path().join("real/f"));
    std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
    std::os::unix::fs::symlink(".", d.path().join("real/loop")).unwrap();
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    let items = full(&b, "/", &f, Traverse::Depth);
    assert_eq!(texts(&items), ["/link", "/real", "/real/f", "/real/loop"]);
    assert_eq!(items[0].st.st_mode & libc::S_IFMT, libc::S_IFLNK);
}

#[test]
fn merged_root_mounts_and_mount_points() {
    let d = tempfile::tempdir().unwrap();
    let (o0, o1, om, oh) = (
        d.path().join("o0"),
        d.path().join("o1"),
        d.path().join("om"),
        d.path().join("oh"),
    );
    touch(&o0.join("both"));
    fs::create_dir_all(&o1).unwrap();
    fs::write(o1.join("both"), b"longer").unwrap();
    touch(&o0.join("d/x"));
    touch(&o1.join("d/y"));
    touch(&o1.join("only1"));
    // Shadowed by the mount point /m.
    touch(&o0.join("m/shadowed"));
    touch(&om.join("in-m"));
    touch(&oh.join("in-h"));
    let b = bucket(&[
        (None, true, &o0),
        (None, true, &o1),
        (Some("/m"), true, &om),
        (Some("/h"), false, &oh),
        (Some("/deep/er"), true, &om),
    ]);
    let f = everything();
    let items = full(&b, "/", &f, Traverse::Depth);
    assert_eq!(
        texts(&items),
        [
            "/both",
            "/d",
            "/d/x",
            "/d/y",
            "/deep",
            "/deep/er",
            "/deep/er/in-m",
            "/m",
            "/m/in-m",
            "/only1"
        ]
    );
    // The first root mount wins a name.
    assert_eq!(items[0].st.st_size, 1);
    // A synthetic parent is a directory.
    assert!(is_dir(&items[4].st));
    // A scan inside a hidden mount sees it.
    let inside = full(&b, "/h", &f, Traverse::Depth);
    assert_eq!(texts(&inside), ["/h/in-h"]);
    assert_eq!(inside[0].depth, 1);
    let inside_m = full(&b, "/m", &f, Traverse::Breadth);
    assert_eq!(texts(&inside_m), ["/m/in-m"]);
}

#[test]
fn vanishing_entries_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    for f in ["a", "b", "c", "d/e", "d/f"] {
        touch(&d.path().join(f));
    }
    let b = bucket(&[(None, true, d.path())]);
    let f = everything();
    let mut s = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
    let (first, _) = s.next_chunk(None, 1).unwrap();
    assert_eq!(texts(&first), ["/a"]);
    // Listed already (the scan keeps its walk), gone before its stat.
    fs::remove_file(d.path().join("b")).unwrap();
    fs::remove_dir_all(d.path().join("d")).unwrap();
    let m = s.marker_of(&first[0]);
    let (rest, _) = s.next_chunk(Some(&m), 10).unwrap();
    assert_eq!(texts(&rest), ["/c"]);
}

#[test]
fn unreadable_directories_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let o0 = d.path().join("o0");
    touch(&o0.join("a"));
    touch(&o0.join("z"));
    // A second root mount whose listing always fails (ELOOP).
    let looped = d.path().join("loop");
    std::os::unix::fs::symlink("loop", &looped).unwrap();
    let b = bucket(&[(None, true, &o0), (None, true, &looped)]);
    let f = everything();
    assert_eq!(texts(&full(&b, "/", &f, Traverse::Depth)), ["/a", "/z"]);

    // Unreadable by permissions: only meaningful without CAP_DAC_OVERRIDE.
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        touch(&o0.join("m/secret"));
        fs::set_permissions(
            o0.join("m"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let got = texts(&full(&b, "/", &f, Traverse::Depth));
        fs::set_permissions(
            o0.join("m"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(got, ["/a", "/m", "/z"]);
    }
}

#[test]
fn base_must_be_an_existing_directory() {
    let d = tempfile::tempdir().unwrap();
    touch(&d.path().join("file"));
    let b = bucket(&[(None, true, d.path()), (Some("/x/mnt"), true, d.path())]);
    let f = everything();
    let err = Scan::new(&b, "/missing", &f, Traverse::Depth)
        .err()
        .unwrap();
    let err = err.to_string();
    assert!(
        err.contains("/missing") && err.contains("does not exist"),
        "{err}"
    );
    let err = Scan::new(&b, "/file", &f, Traverse::Depth).err().unwrap();
    let err = err.to_string();
    assert!(err.contains("not a directory"), "{err}");
    assert!(Scan::new(&b, "/../etc", &f, Traverse::Depth).is_err());
    // A synthetic parent of a mount point exists.
    let items = full(&b, "/x", &f, Traverse::Depth);
    assert_eq!(texts(&items)[..2], ["/x/mnt", "/x/mnt/file"]);
}

#[test]
fn marker_json_keeps_raw_bytes() {
    let m = Marker {
        path: vec![OsString::from("dir"), OsString::from_vec(b"n\xff".to_vec())],
        dir: true,
    };
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"path":["dir",[110,255]],"dir":true}"#);
    assert_eq!(serde_json::from_str::<Marker>(&json).unwrap(), m);
    let old: Marker = serde_json::from_str(r#"{"path":["a"]}"#).unwrap();
    assert!(!old.dir);
}

#[test]
fn large_tree_in_chunks_and_cheap_resume_near_the_end() {
    let d = tempfile::tempdir().unwrap();
    let (dirs, files) = (100, 1000);
    for i in 0..dirs {
        let dir = d.path().join(format!("d{i:03}"));
        fs::create_dir(&dir).unwrap();
        for j in 0..files {
            fs::File::create(dir.join(format!("f{j:04}"))).unwrap();
        }
    }
    let b = bucket(&[(None, true, d.path())]);
    let f = filter(Filter {
        recursive: true,
        ..Filter::default()
    });
    let mut s = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
    let mut marker = None;
    let mut count = 0;
    let mut last = Vec::new();
    loop {
        let (items, _) = s.next_chunk(marker.as_ref(), 1000).unwrap();
        if let Some(l) = items.last() {
            assert!(l.path > last);
            last = l.path.clone();
            marker = Some(s.marker_of(l));
        }
        count += items.len();
        assert!(count <= dirs * files);
        if items.len() < 1000 {
            break;
        }
    }
    assert_eq!(count, dirs * files);
    // From a persisted marker near the end: only what follows it is
    // examined.
    let m = Marker {
        path: split_path("/d099/f0997"),
        dir: false,
    };
    let mut fresh = Scan::new(&b, "/", &f, Traverse::Depth).unwrap();
    let (rest, examined) = fresh.next_chunk(Some(&m), 10).unwrap();
    assert_eq!(texts(&rest), ["/d099/f0998", "/d099/f0999"]);
    assert_eq!(examined, 2);
}
