//! One table of layouts and paths run through the three callers of the
//! merge rules (SPEC §3.1) — the mount's lookup and create placement
//! (`fs::Core`), a batch listing (`batch::scan::Scan`) and a workflow output
//! (`bucket::store::Store`) — proving they agree on which origin holds a
//! path and where a new one goes. Changing a rule in `bucket::resolve` or
//! `tree` changes all three; this test needs no edit to keep them honest.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::batch::scan::Scan;
use crate::bucket::selfchange::SelfChanges;
use crate::bucket::store::Store;
use crate::config::model::{FileType, Filter, Traverse, WhenExist};
use crate::config::{Access, AccessRule, Bucket, BucketMeta, Config, MountSpec};
use crate::filter::CompiledFilter;
use crate::fs::inodes::ROOT_INO;
use crate::fs::{Core, FsOptions, Located};
use crate::item::path_text;
use crate::tree::split_path;

struct Layout {
    _dir: tempfile::TempDir,
    origins: Vec<PathBuf>,
    cfg: Config,
}

/// `(mountPoint, expose)` per mount, each with its own local origin holding
/// `files` (`(mount index, path inside the origin)`).
fn layout(mounts: &[(Option<&str>, bool)], files: &[(usize, &str)]) -> Layout {
    let dir = tempfile::tempdir().expect("tempdir");
    let origins: Vec<PathBuf> = (0..mounts.len())
        .map(|i| dir.path().join(format!("o{i}")))
        .collect();
    for o in &origins {
        std::fs::create_dir_all(o).expect("mkdir");
    }
    for (i, f) in files {
        let p = origins[*i].join(f);
        if f.ends_with('/') {
            std::fs::create_dir_all(&p).expect("mkdir");
        } else {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, format!("o{i}")).expect("write");
        }
    }
    let on = AccessRule { enable: true };
    let cfg = Config {
        buckets: vec![Bucket {
            meta: BucketMeta {
                enable: true,
                name: "b".into(),
                expose: true,
                ..Default::default()
            },
            mounts: mounts
                .iter()
                .zip(&origins)
                .map(|((point, expose), o)| MountSpec {
                    mount_point: point.map(str::to_string),
                    origin_path: o.to_string_lossy().into_owned(),
                    expose: *expose,
                    watch: Default::default(),
                })
                .collect(),
            access: Access {
                get: on.clone(),
                put: on.clone(),
                delete: on,
            },
            ..Default::default()
        }],
        state_dir: dir.path().join("state"),
        ..Default::default()
    };
    Layout {
        _dir: dir,
        origins,
        cfg,
    }
}

/// The mount index whose origin holds the file with this inode.
fn origin_of(l: &Layout, st: &libc::stat, rel: &str) -> Option<usize> {
    l.origins.iter().position(|o| {
        std::fs::symlink_metadata(o.join(rel.trim_start_matches('/')))
            .is_ok_and(|m| m.ino() == st.st_ino && m.dev() == st.st_dev)
    })
}

/// The mount's answer: the origin holding `path`, or None.
fn mount_locate(core: &Core, path: &str) -> Option<usize> {
    match core.locate(0, &split_path(path)) {
        Ok(Located::Origin { mount, .. }) => Some(mount),
        _ => None,
    }
}

/// The mount's answer for a new entry: where a create would put it.
fn mount_new(core: &Core, path: &str) -> Option<usize> {
    let comps = split_path(path);
    let (name, parents) = comps.split_last()?;
    let mut ino = ROOT_INO;
    for c in parents {
        ino = core.lookup(ino, c).ok()?.attr.ino.0;
    }
    core.prepare_new(ino, name).ok().map(|(_, mount, _)| mount)
}

/// The origin each listed item of a whole-bucket batch scan came from.
fn batch_listing(l: &Layout, core_bucket: &crate::bucket::BucketState) -> HashMap<String, usize> {
    let f = CompiledFilter::new(Some(&Filter {
        filetype: FileType::File,
        recursive: true,
        hidden: true,
        ..Filter::default()
    }))
    .expect("filter");
    let mut scan = Scan::new(core_bucket, "/", &f, Traverse::Depth).expect("scan");
    let (items, _) = scan.next_chunk(None, usize::MAX).expect("chunk");
    items
        .iter()
        .filter_map(|i| {
            let text = path_text(&i.path);
            // The origin path is the bucket path minus the mount point.
            let m = (0..l.origins.len()).find(|m| {
                let point = l.cfg.buckets[0].mounts[*m]
                    .mount_point
                    .clone()
                    .unwrap_or_default();
                text.starts_with(&point)
                    && origin_of(l, &i.st, &text[point.len()..]).is_some_and(|o| o == *m)
            })?;
            Some((text, m))
        })
        .collect()
}

/// Where a workflow output at `path` lands: the origin whose file now holds
/// the new bytes.
fn output_lands(l: &Layout, store: &Store, path: &str) -> Option<usize> {
    let comps = split_path(path);
    store
        .write(&comps, path, WhenExist::Overwrite, 0o644, &|tmp: &Path| {
            std::fs::write(tmp, b"output").map_err(Into::into)
        })
        .ok()?;
    (0..l.origins.len()).find(|m| {
        let point = l.cfg.buckets[0].mounts[*m]
            .mount_point
            .clone()
            .unwrap_or_default();
        path.starts_with(&point)
            && std::fs::read(l.origins[*m].join(path[point.len()..].trim_start_matches('/')))
                .is_ok_and(|b| b == b"output")
    })
}

#[test]
fn mount_batch_and_workflow_outputs_agree() {
    // (layout, files, existing paths with their origin, new paths with theirs)
    type Case<'a> = (
        Vec<(Option<&'a str>, bool)>,
        Vec<(usize, &'a str)>,
        Vec<(&'a str, usize)>,
        Vec<(&'a str, usize)>,
    );
    let cases: Vec<Case> = vec![
        // Merged roots, an explicit mount shadowing a root entry, a deep
        // mount with synthetic parents, a hidden mount.
        (
            vec![
                (None, true),
                (None, true),
                (Some("/m"), true),
                (Some("/h"), true),
                (Some("/deep/er"), true),
            ],
            vec![
                (0, "both"),
                (1, "both"),
                (1, "only1"),
                (0, "d/x"),
                (1, "d/y"),
                (1, "o1dir/"),
                (0, "m/shadowed"),
                (2, "in-m"),
                (3, "in-h"),
                (4, "in-er"),
            ],
            vec![
                ("/both", 0),
                ("/only1", 1),
                ("/d/x", 0),
                ("/d/y", 1),
                ("/m/in-m", 2),
                ("/h/in-h", 3),
                ("/deep/er/in-er", 4),
            ],
            vec![
                ("/new", 0),
                ("/d/new", 0),
                ("/o1dir/new", 1),
                ("/m/new", 2),
                ("/m/shadowed", 2),
                ("/deep/er/new", 4),
            ],
        ),
        // One root mount and a mount below a root directory.
        (
            vec![(None, true), (Some("/a/b"), true)],
            vec![(0, "a/x"), (0, "a/b/hidden-by-mount"), (1, "y")],
            vec![("/a/x", 0), ("/a/b/y", 1)],
            vec![("/a/new", 0), ("/a/b/new", 1), ("/top", 0)],
        ),
    ];
    for (mounts, files, existing, new) in cases {
        let l = layout(&mounts, &files);
        let core = Core::new(&l.cfg, Some("b"), FsOptions::default()).expect("core");
        let state = &core.buckets[0];
        let listed = batch_listing(&l, state);
        let tmp = l.cfg.state_dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        let selfc = SelfChanges::default();
        let store = Store {
            bucket: state,
            selfc: &selfc,
            tmp_dir: &tmp,
        };
        for (path, want) in &existing {
            assert_eq!(mount_locate(&core, path), Some(*want), "mount: {path}");
            assert_eq!(listed.get(*path), Some(want), "batch: {path} in {listed:?}");
            let (m, _, _) = store.find(&split_path(path)).expect("store finds it");
            assert_eq!(m, *want, "workflow find: {path}");
        }
        // Exactly the existing paths are listed: shadowed names are not.
        assert_eq!(listed.len(), existing.len(), "{listed:?}");
        for (path, want) in &new {
            if mount_locate(&core, path).is_none() {
                assert_eq!(mount_new(&core, path), Some(*want), "mount create: {path}");
            }
            assert_eq!(
                output_lands(&l, &store, path),
                Some(*want),
                "output: {path}"
            );
        }
        // Outputs over existing paths replace them where the mount sees them.
        for (path, want) in &existing {
            assert_eq!(
                output_lands(&l, &store, path),
                Some(*want),
                "overwrite: {path}"
            );
        }
    }
}
