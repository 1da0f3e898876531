//! The namespace of one bucket: which mount owns a path (SPEC §3.1 rules 1–4),
//! which names a listing adds or hides, and where new entries may go (rule 5).
//!
//! Pure logic over path components — no I/O. The file-system core asks this
//! module *where* to look and performs the lookups itself.

use std::ffi::{OsStr, OsString};

use crate::config::{Bucket, Origin};

/// One mount of a bucket, as the namespace sees it.
#[derive(Debug, Clone)]
pub struct TreeMount {
    /// Components of the mountPoint; empty for a root mount.
    pub point: Vec<OsString>,
    pub is_root: bool,
    pub expose: bool,
    pub origin: Origin,
    /// How changes made directly in the origin are found.
    pub watch: crate::config::WatchSpec,
}

/// Where a bucket path lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Under the explicit mount `mount`; `rel` is the path inside its origin
    /// (empty for the mount point itself).
    Mount { mount: usize, rel: Vec<OsString> },
    /// Not under any explicit mount: served by the root mounts, in order.
    Root { rel: Vec<OsString> },
    /// At or under a mount with `expose: false`: invisible to clients.
    Hidden,
}

/// A name that the mount layout adds to a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualChild {
    pub name: OsString,
    /// `Some(i)` when the name is mount `i`'s own mount point; `None` when it
    /// is an intermediate directory on the way to a deeper mount point.
    pub mount: Option<usize>,
}

/// The namespace of one bucket.
#[derive(Debug, Clone)]
pub struct BucketTree {
    pub name: String,
    pub mounts: Vec<TreeMount>,
}

/// Splits an absolute bucket path into its components, dropping empty ones
/// and `.`; `..` is kept so that callers can reject it.
pub fn split_path(path: &str) -> Vec<OsString> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsString::from)
        .collect()
}

impl BucketTree {
    pub fn from_config(bucket: &Bucket) -> Self {
        let mounts = bucket
            .mounts
            .iter()
            .map(|m| {
                let point = m.mount_point.as_deref().map(split_path).unwrap_or_default();
                TreeMount {
                    is_root: point.is_empty(),
                    point,
                    expose: m.expose,
                    watch: m.watch,
                    origin: m.origin(),
                }
            })
            .collect();
        BucketTree {
            name: bucket.meta.name.clone(),
            mounts,
        }
    }

    /// The layout as seen from inside `base`: hidden mounts that contain
    /// `base` count as exposed (a workflow's batch scan may point there),
    /// hidden mounts below it stay hidden.
    pub fn seen_from(&self, base: &[OsString]) -> BucketTree {
        let mut tree = self.clone();
        for m in &mut tree.mounts {
            if !m.is_root && base.starts_with(&m.point) {
                m.expose = true;
            }
        }
        tree
    }

    /// Indices of the root mounts in declaration order (rule 2).
    pub fn root_mounts(&self) -> impl Iterator<Item = usize> + '_ {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_root)
            .map(|(i, _)| i)
    }

    /// Rule 1: the deepest explicit mount point that is a prefix of `path`
    /// owns it. `for_client` makes hidden mounts invisible (ENOENT); workflows
    /// pass `false` and may reach them.
    pub fn place(&self, path: &[OsString], for_client: bool) -> Place {
        let owner = self
            .mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_root && path.starts_with(&m.point))
            .max_by_key(|(_, m)| m.point.len());
        // A hidden mount anywhere on the way hides everything below it, even
        // where a deeper exposed mount is declared.
        if for_client
            && self
                .mounts
                .iter()
                .any(|m| !m.is_root && !m.expose && path.starts_with(&m.point))
        {
            return Place::Hidden;
        }
        match owner {
            Some((i, m)) => Place::Mount {
                mount: i,
                rel: path[m.point.len()..].to_vec(),
            },
            None => Place::Root { rel: path.to_vec() },
        }
    }

    /// Rule 3: true when `path` is a strict ancestor of an exposed explicit
    /// mount point, so it must exist as a directory even where no origin has it.
    pub fn is_mount_ancestor(&self, path: &[OsString]) -> bool {
        self.mounts.iter().any(|m| {
            !m.is_root && m.expose && m.point.len() > path.len() && m.point.starts_with(path)
        })
    }

    /// Names the layout adds to the listing of directory `path` (rules 3, 4):
    /// exposed mount points directly below it and intermediate directories
    /// leading to deeper ones. Deduplicated, in declaration order.
    pub fn virtual_children(&self, path: &[OsString]) -> Vec<VirtualChild> {
        let mut out: Vec<VirtualChild> = Vec::new();
        for (i, m) in self.mounts.iter().enumerate() {
            if m.is_root || !m.expose || m.point.len() <= path.len() || !m.point.starts_with(path) {
                continue;
            }
            let name = m.point[path.len()].clone();
            let own = m.point.len() == path.len() + 1;
            match out.iter_mut().find(|c| c.name == name) {
                Some(existing) => {
                    if own {
                        existing.mount = Some(i);
                    }
                }
                None => out.push(VirtualChild {
                    name,
                    mount: own.then_some(i),
                }),
            }
        }
        out
    }

    /// Names that must not appear in the listing of `path`: mount points of
    /// hidden mounts directly below it (they shadow any same-named entry).
    pub fn hidden_children(&self, path: &[OsString]) -> Vec<OsString> {
        self.mounts
            .iter()
            .filter(|m| {
                !m.is_root
                    && !m.expose
                    && m.point.len() == path.len() + 1
                    && m.point.starts_with(path)
            })
            .map(|m| m.point[path.len()].clone())
            .collect()
    }

    /// True when `name` in directory `dir` is taken over by the layout (a
    /// mount point, visible or hidden, or an intermediate directory), so the
    /// root mounts' same-named entry must not show (rule 4).
    pub fn is_shadowed(&self, dir: &[OsString], name: &OsStr) -> bool {
        self.mounts.iter().any(|m| {
            !m.is_root
                && m.point.len() > dir.len()
                && m.point.starts_with(dir)
                && m.point[dir.len()] == name
                && (m.expose || m.point.len() == dir.len() + 1)
        })
    }
}

#[cfg(test)]
impl BucketTree {
    /// A tree for tests: `(mountPoint, expose)` per mount, origins `/o0`, `/o1`, ….
    pub(crate) fn for_tests(name: &str, mounts: &[(Option<&str>, bool)]) -> BucketTree {
        BucketTree {
            name: name.into(),
            mounts: mounts
                .iter()
                .enumerate()
                .map(|(i, (p, expose))| {
                    let point = p.map(split_path).unwrap_or_default();
                    TreeMount {
                        is_root: point.is_empty(),
                        point,
                        expose: *expose,
                        origin: Origin::Local(std::path::PathBuf::from(format!("/o{i}"))),
                        watch: Default::default(),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(mounts: &[(Option<&str>, bool)]) -> BucketTree {
        BucketTree::for_tests("b", mounts)
    }

    fn p(s: &str) -> Vec<OsString> {
        split_path(s)
    }

    #[test]
    fn deepest_mount_point_wins() {
        let t = tree(&[(None, true), (Some("/a"), true), (Some("/a/b"), true)]);
        assert_eq!(
            t.place(&p("/a/b/c"), true),
            Place::Mount {
                mount: 2,
                rel: p("c")
            }
        );
        assert_eq!(
            t.place(&p("/a/x"), true),
            Place::Mount {
                mount: 1,
                rel: p("x")
            }
        );
        assert_eq!(
            t.place(&p("/a"), true),
            Place::Mount {
                mount: 1,
                rel: vec![]
            }
        );
        assert_eq!(t.place(&p("/z/y"), true), Place::Root { rel: p("/z/y") });
    }

    #[test]
    fn prefix_matches_whole_components_only() {
        let t = tree(&[(None, true), (Some("/arch"), true)]);
        assert_eq!(
            t.place(&p("/archive"), true),
            Place::Root { rel: p("/archive") }
        );
    }

    #[test]
    fn root_mounts_in_declaration_order() {
        let t = tree(&[(None, true), (Some("/x"), true), (None, true)]);
        assert_eq!(t.root_mounts().collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn hidden_mounts_are_invisible_to_clients_only() {
        let t = tree(&[(None, true), (Some("/h"), false), (Some("/h/deep"), true)]);
        assert_eq!(t.place(&p("/h"), true), Place::Hidden);
        assert_eq!(t.place(&p("/h/x"), true), Place::Hidden);
        assert_eq!(t.place(&p("/h/deep/x"), true), Place::Hidden);
        assert_eq!(
            t.place(&p("/h/x"), false),
            Place::Mount {
                mount: 1,
                rel: p("x")
            }
        );
        assert_eq!(t.hidden_children(&p("/")), vec![OsString::from("h")]);
        assert!(t.is_shadowed(&p("/"), OsStr::new("h")));
    }

    #[test]
    fn synthetic_ancestors_and_virtual_children() {
        let t = tree(&[
            (None, true),
            (Some("/deep/a/b"), true),
            (Some("/deep/c"), true),
        ]);
        assert!(t.is_mount_ancestor(&p("/")));
        assert!(t.is_mount_ancestor(&p("/deep")));
        assert!(t.is_mount_ancestor(&p("/deep/a")));
        assert!(!t.is_mount_ancestor(&p("/deep/a/b")));
        assert!(!t.is_mount_ancestor(&p("/other")));
        assert_eq!(
            t.virtual_children(&p("/")),
            vec![VirtualChild {
                name: "deep".into(),
                mount: None
            }]
        );
        assert_eq!(
            t.virtual_children(&p("/deep")),
            vec![
                VirtualChild {
                    name: "a".into(),
                    mount: None
                },
                VirtualChild {
                    name: "c".into(),
                    mount: Some(2)
                }
            ]
        );
        assert!(t.is_shadowed(&p("/deep"), OsStr::new("c")));
        assert!(!t.is_shadowed(&p("/deep"), OsStr::new("d")));
    }

    #[test]
    fn hidden_mount_creates_no_synthetic_parents() {
        let t = tree(&[(None, true), (Some("/x/h"), false)]);
        assert!(!t.is_mount_ancestor(&p("/x")));
        assert!(t.virtual_children(&p("/")).is_empty());
        assert_eq!(t.hidden_children(&p("/x")), vec![OsString::from("h")]);
        assert!(!t.is_shadowed(&p("/"), OsStr::new("x")));
    }

    #[test]
    fn split_path_normalises() {
        assert_eq!(p("//a///b/./c/"), p("/a/b/c"));
        assert!(p("/").is_empty());
    }
}
