//! The inode table: one node per path the kernel has seen, as a tree of
//! (parent, name) links so that a rename moves a whole subtree in O(1).
//!
//! A node keeps its number for as long as its path exists while mounted
//! (also after the kernel forgets it), so `st_ino` is stable for a path.
//! Unlinking or renaming over a path *detaches* its node: open handles keep
//! working and a new entry at that path gets a new number, so the kernel
//! never sees one inode number change type.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

pub type Ino = u64;

/// The inode number of the mount root (fixed by FUSE).
pub const ROOT_INO: Ino = 1;
/// Parent of nodes that no longer have a path.
const DETACHED: Ino = 0;

/// What the kernel was told a node is; a path whose type changes behind
/// our back gets a new node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

#[derive(Debug)]
struct Node {
    parent: Ino,
    name: OsString,
    kind: Kind,
    lookups: u64,
    /// Index of the bucket this node belongs to; `None` for the root of a
    /// multi-bucket mount.
    bucket: Option<usize>,
    /// True for the node that is its bucket's root directory.
    bucket_root: bool,
}

/// Where a node is: its bucket and its path inside the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePath {
    /// The root of a mount that shows several buckets.
    MountRoot,
    Bucket {
        bucket: usize,
        path: Vec<OsString>,
    },
}

#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<Ino, Node>,
    children: HashMap<(Ino, OsString), Ino>,
    next: Ino,
}

impl InodeTable {
    /// `single_bucket`: the mount root is that bucket's root directory.
    pub fn new(single_bucket: Option<usize>) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: OsString::new(),
                kind: Kind::Dir,
                lookups: 1,
                bucket: single_bucket,
                bucket_root: single_bucket.is_some(),
            },
        );
        InodeTable {
            nodes,
            children: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }

    pub fn path(&self, ino: Ino) -> Option<NodePath> {
        let mut node = self.nodes.get(&ino)?;
        let Some(bucket) = node.bucket else {
            return Some(NodePath::MountRoot);
        };
        let mut comps = Vec::new();
        while !node.bucket_root {
            if node.parent == DETACHED {
                return None;
            }
            comps.push(node.name.clone());
            node = self.nodes.get(&node.parent)?;
        }
        comps.reverse();
        Some(NodePath::Bucket {
            bucket,
            path: comps,
        })
    }

    pub fn kind(&self, ino: Ino) -> Option<Kind> {
        self.nodes.get(&ino).map(|n| n.kind)
    }

    pub fn child(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        self.children.get(&(parent, name.to_os_string())).copied()
    }

    /// The node for `name` in `parent`, created if needed; `lookup` counts a
    /// kernel reference. `bucket_root` marks a bucket's directory in a
    /// multi-bucket mount (a child of the mount root).
    pub fn entry(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        bucket_root: Option<usize>,
        lookup: bool,
    ) -> Ino {
        let key = (parent, name.to_os_string());
        if let Some(&ino) = self.children.get(&key) {
            if let Some(node) = self.nodes.get_mut(&ino)
                && node.kind == kind
            {
                if lookup {
                    node.lookups += 1;
                }
                return ino;
            }
            self.detach(parent, name);
        }
        let bucket = match bucket_root {
            Some(b) => Some(b),
            None => self.nodes.get(&parent).and_then(|p| p.bucket),
        };
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_os_string(),
                kind,
                lookups: u64::from(lookup),
                bucket,
                bucket_root: bucket_root.is_some(),
            },
        );
        self.children.insert(key, ino);
        ino
    }

    /// The path `parent/name` no longer exists: its node keeps serving open
    /// handles until the kernel forgets it.
    pub fn detach(&mut self, parent: Ino, name: &OsStr) {
        if let Some(ino) = self.children.remove(&(parent, name.to_os_string())) {
            let forget = match self.nodes.get_mut(&ino) {
                Some(node) => {
                    node.parent = DETACHED;
                    node.lookups == 0
                }
                None => false,
            };
            if forget {
                self.remove_node(ino);
            }
        }
    }

    /// Moves `parent/name` to `new_parent/new_name`, detaching what was there.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let Some(ino) = self.children.remove(&(parent, name.to_os_string())) else {
            self.detach(new_parent, new_name);
            return;
        };
        self.detach(new_parent, new_name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.to_os_string();
        }
        self.children
            .insert((new_parent, new_name.to_os_string()), ino);
    }

    /// Swaps two paths (RENAME_EXCHANGE).
    pub fn exchange(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let a = self.children.remove(&(parent, name.to_os_string()));
        let b = self.children.remove(&(new_parent, new_name.to_os_string()));
        if let Some(a) = a {
            if let Some(node) = self.nodes.get_mut(&a) {
                node.parent = new_parent;
                node.name = new_name.to_os_string();
            }
            self.children
                .insert((new_parent, new_name.to_os_string()), a);
        }
        if let Some(b) = b {
            if let Some(node) = self.nodes.get_mut(&b) {
                node.parent = parent;
                node.name = name.to_os_string();
            }
            self.children.insert((parent, name.to_os_string()), b);
        }
    }

    /// The kernel dropped `n` references. Nodes that still have a path stay
    /// (stable inode numbers); detached ones go.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let remove = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0 && node.parent == DETACHED
            }
            None => false,
        };
        if remove {
            self.remove_node(ino);
        }
    }

    fn remove_node(&mut self, ino: Ino) {
        self.nodes.remove(&ino);
    }

    /// Finds the node of a bucket path, if the kernel may know it.
    pub fn find(&self, bucket_root: Ino, path: &[OsString]) -> Option<Ino> {
        let mut cur = bucket_root;
        for c in path {
            cur = *self.children.get(&(cur, c.clone()))?;
        }
        Some(cur)
    }

    /// The node that is bucket `bucket`'s root, if it has one yet.
    pub fn bucket_root(&self, bucket: usize, name: &OsStr) -> Option<Ino> {
        match self.nodes.get(&ROOT_INO) {
            Some(root) if root.bucket == Some(bucket) => Some(ROOT_INO),
            _ => self.child(ROOT_INO, name),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn paths_follow_renames_of_ancestors() {
        let mut t = InodeTable::new(Some(0));
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::Dir, None, true);
        let f = t.entry(a, OsStr::new("f"), Kind::File, None, true);
        t.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"));
        assert_eq!(
            t.path(f),
            Some(NodePath::Bucket {
                bucket: 0,
                path: vec![os("b"), os("f")]
            })
        );
    }

    #[test]
    fn same_path_same_number_until_deleted() {
        let mut t = InodeTable::new(Some(0));
        let f = t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true);
        t.forget(f, 1);
        assert_eq!(
            t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true),
            f
        );
        t.detach(ROOT_INO, OsStr::new("f"));
        assert_eq!(t.path(f), None);
        let g = t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true);
        assert_ne!(f, g);
    }

    #[test]
    fn type_change_gives_new_number() {
        let mut t = InodeTable::new(Some(0));
        let f = t.entry(ROOT_INO, OsStr::new("x"), Kind::File, None, true);
        let d = t.entry(ROOT_INO, OsStr::new("x"), Kind::Dir, None, true);
        assert_ne!(f, d);
    }

    #[test]
    fn multi_bucket_paths() {
        let mut t = InodeTable::new(None);
        assert_eq!(t.path(ROOT_INO), Some(NodePath::MountRoot));
        let b = t.entry(ROOT_INO, OsStr::new("site"), Kind::Dir, Some(3), true);
        let f = t.entry(b, OsStr::new("f"), Kind::File, None, true);
        assert_eq!(
            t.path(b),
            Some(NodePath::Bucket {
                bucket: 3,
                path: vec![]
            })
        );
        assert_eq!(
            t.path(f),
            Some(NodePath::Bucket {
                bucket: 3,
                path: vec![os("f")]
            })
        );
        assert_eq!(t.find(b, &[os("f")]), Some(f));
    }

    #[test]
    fn exchange_swaps() {
        let mut t = InodeTable::new(Some(0));
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::File, None, true);
        let b = t.entry(ROOT_INO, OsStr::new("b"), Kind::Dir, None, true);
        t.exchange(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"));
        assert_eq!(t.child(ROOT_INO, OsStr::new("a")), Some(b));
        assert_eq!(t.child(ROOT_INO, OsStr::new("b")), Some(a));
    }
}
