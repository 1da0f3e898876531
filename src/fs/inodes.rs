//! The inode table: one node per path the kernel has seen, as a tree of
//! (parent, name) links so that a rename moves a whole subtree in O(1).
//!
//! A node keeps its number for as long as its path exists while mounted
//! (also after the kernel forgets it), so `st_ino` is stable for a path.
//! Unlinking or renaming over a path *detaches* its node: open handles keep
//! working and a new entry at that path gets a new number, so the kernel
//! never sees one inode number change type.

use rustc_hash::FxHashMap as HashMap;
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

/// Names in each directory, looked up without allocating.
#[derive(Debug, Default)]
struct Children(HashMap<Ino, HashMap<OsString, Ino>>);

impl Children {
    fn get(&self, parent: Ino, name: &OsStr) -> Option<Ino> {
        self.0.get(&parent)?.get(name).copied()
    }

    fn insert(&mut self, (parent, name): (Ino, OsString), ino: Ino) {
        self.0.entry(parent).or_default().insert(name, ino);
    }

    fn remove(&mut self, (parent, name): &(Ino, OsString)) -> Option<Ino> {
        let names = self.0.get_mut(parent)?;
        let ino = names.remove(name);
        if names.is_empty() {
            self.0.remove(parent);
        }
        ino
    }
}

#[derive(Debug)]
struct Node {
    /// The primary link: the path operations on this node use.
    parent: Ino,
    name: OsString,
    /// Further links to the same origin file (hard links).
    aliases: Vec<(Ino, OsString)>,
    kind: Kind,
    lookups: u64,
    /// Index of the bucket this node belongs to; `None` for the root of a
    /// multi-bucket mount.
    bucket: Option<usize>,
    /// True for the node that is its bucket's root directory.
    bucket_root: bool,
    identity: Option<Identity>,
}

/// The origin file behind a multi-link node: (bucket, mount, st_dev, st_ino).
/// Names with the same identity share one node, as hard links share an inode.
pub type Identity = (usize, usize, u64, u64);

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
    children: Children,
    identities: HashMap<Identity, Ino>,
    next: Ino,
}

impl InodeTable {
    /// `single_bucket`: the mount root is that bucket's root directory.
    pub fn new(single_bucket: Option<usize>) -> Self {
        let mut nodes = HashMap::default();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: OsString::new(),
                aliases: Vec::new(),
                kind: Kind::Dir,
                lookups: 1,
                bucket: single_bucket,
                bucket_root: single_bucket.is_some(),
                identity: None,
            },
        );
        InodeTable {
            nodes,
            children: Children::default(),
            identities: HashMap::default(),
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
        self.children.get(parent, name)
    }

    /// The node already standing for origin file `id`, if any.
    pub fn by_identity(&self, id: &Identity) -> Option<Ino> {
        self.identities.get(id).copied()
    }

    /// Forgets that `id` is known (its node's path no longer leads to it).
    pub fn drop_identity(&mut self, id: &Identity) {
        if let Some(ino) = self.identities.remove(id)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.identity = None;
        }
    }

    /// Records that node `ino` is origin file `id`, unless another node is.
    pub fn set_identity(&mut self, ino: Ino, id: Identity) {
        if self.identities.contains_key(&id) {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino)
            && node.identity.is_none()
        {
            node.identity = Some(id);
            self.identities.insert(id, ino);
        }
    }

    /// The node for `name` in `parent`, created if needed; `lookup` counts a
    /// kernel reference. `bucket_root` marks a bucket's directory in a
    /// multi-bucket mount (a child of the mount root). With an `identity`,
    /// a name of an origin file that already has a node becomes one more
    /// link of that node.
    pub fn entry(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        bucket_root: Option<usize>,
        lookup: bool,
        identity: Option<Identity>,
    ) -> Ino {
        // The common case: a known name, nothing to link.
        if identity.is_none()
            && let Some(ino) = self.children.get(parent, name)
            && self.nodes.get(&ino).is_some_and(|n| n.kind == kind)
        {
            return self.counted(ino, lookup);
        }
        let key = (parent, name.to_os_string());
        let linked = identity
            .and_then(|id| self.identities.get(&id).copied())
            .filter(|other| self.nodes.get(other).is_some_and(|n| n.kind == kind));
        if let Some(ino) = self.children.get(parent, name) {
            let same_kind = self.nodes.get(&ino).is_some_and(|n| n.kind == kind);
            if same_kind {
                match linked {
                    // A node made only for a listing becomes a link of the
                    // file's node: the kernel never heard of it.
                    Some(other) if other != ino && self.is_placeholder(ino) => {
                        self.nodes.remove(&ino);
                        self.children.insert(key.clone(), other);
                        self.add_alias(other, key);
                        return self.counted(other, lookup);
                    }
                    None => {
                        if let Some(id) = identity {
                            self.set_identity(ino, id);
                        }
                    }
                    Some(_) => {}
                }
                return self.counted(ino, lookup);
            }
            self.detach(parent, name);
        }
        if let Some(other) = linked {
            self.children.insert(key.clone(), other);
            self.add_alias(other, key);
            return self.counted(other, lookup);
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
                aliases: Vec::new(),
                kind,
                lookups: 0,
                bucket,
                bucket_root: bucket_root.is_some(),
                identity: None,
            },
        );
        self.children.insert(key, ino);
        if let Some(id) = identity {
            self.set_identity(ino, id);
        }
        self.counted(ino, lookup)
    }

    fn is_placeholder(&self, ino: Ino) -> bool {
        self.nodes
            .get(&ino)
            .is_some_and(|n| n.lookups == 0 && n.aliases.is_empty() && n.identity.is_none())
    }

    fn counted(&mut self, ino: Ino, lookup: bool) -> Ino {
        if lookup && let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// Adds link `key` to node `ino`; a detached node gets it as its path.
    fn add_alias(&mut self, ino: Ino, key: (Ino, OsString)) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if node.parent == DETACHED {
                node.parent = key.0;
                node.name = key.1;
            } else {
                node.aliases.push(key);
            }
        }
    }

    /// Removes link `key` from node `ino`; returns true when it has none left.
    fn remove_link(&mut self, ino: Ino, key: &(Ino, OsString)) -> bool {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return false;
        };
        if node.parent == key.0 && node.name == key.1 {
            match node.aliases.pop() {
                Some((p, n)) => {
                    node.parent = p;
                    node.name = n;
                    false
                }
                None => {
                    node.parent = DETACHED;
                    true
                }
            }
        } else {
            node.aliases.retain(|a| a != key);
            false
        }
    }

    /// Renames link `from` of node `ino` to `to`.
    fn move_link(&mut self, ino: Ino, from: &(Ino, OsString), to: (Ino, OsString)) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if node.parent == from.0 && node.name == from.1 {
                node.parent = to.0;
                node.name = to.1;
            } else if let Some(a) = node.aliases.iter_mut().find(|a| *a == from) {
                *a = to;
            }
        }
    }

    /// The path `parent/name` no longer exists: its node keeps serving open
    /// handles until the kernel forgets it.
    pub fn detach(&mut self, parent: Ino, name: &OsStr) {
        let key = (parent, name.to_os_string());
        let Some(ino) = self.children.remove(&key) else {
            return;
        };
        if self.remove_link(ino, &key) {
            let (identity, unused) = match self.nodes.get_mut(&ino) {
                Some(node) => (node.identity.take(), node.lookups == 0),
                None => (None, false),
            };
            if let Some(id) = identity {
                self.identities.remove(&id);
            }
            if unused {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Moves `parent/name` to `new_parent/new_name`, detaching what was there.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let from = (parent, name.to_os_string());
        let to = (new_parent, new_name.to_os_string());
        let Some(ino) = self.children.remove(&from) else {
            self.detach(new_parent, new_name);
            return;
        };
        self.detach(new_parent, new_name);
        self.move_link(ino, &from, to.clone());
        self.children.insert(to, ino);
    }

    /// Swaps two paths (RENAME_EXCHANGE).
    pub fn exchange(&mut self, parent: Ino, name: &OsStr, new_parent: Ino, new_name: &OsStr) {
        let ka = (parent, name.to_os_string());
        let kb = (new_parent, new_name.to_os_string());
        let a = self.children.remove(&ka);
        let b = self.children.remove(&kb);
        // Through a temporary key, in case both names are links of one node.
        let tmp = (DETACHED, OsString::from("\0exchange"));
        if let Some(a) = a {
            self.move_link(a, &ka, tmp.clone());
        }
        if let Some(b) = b {
            self.move_link(b, &kb, ka.clone());
            self.children.insert(ka, b);
        }
        if let Some(a) = a {
            self.move_link(a, &tmp, kb.clone());
            self.children.insert(kb, a);
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
        if remove
            && let Some(node) = self.nodes.remove(&ino)
            && let Some(id) = node.identity
        {
            self.identities.remove(&id);
        }
    }

    /// Finds the node of a bucket path, if the kernel may know it.
    pub fn find(&self, bucket_root: Ino, path: &[OsString]) -> Option<Ino> {
        let mut cur = bucket_root;
        for c in path {
            cur = self.children.get(cur, c)?;
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
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::Dir, None, true, None);
        let f = t.entry(a, OsStr::new("f"), Kind::File, None, true, None);
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
        let f = t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true, None);
        t.forget(f, 1);
        assert_eq!(
            t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true, None),
            f
        );
        t.detach(ROOT_INO, OsStr::new("f"));
        assert_eq!(t.path(f), None);
        let g = t.entry(ROOT_INO, OsStr::new("f"), Kind::File, None, true, None);
        assert_ne!(f, g);
    }

    #[test]
    fn type_change_gives_new_number() {
        let mut t = InodeTable::new(Some(0));
        let f = t.entry(ROOT_INO, OsStr::new("x"), Kind::File, None, true, None);
        let d = t.entry(ROOT_INO, OsStr::new("x"), Kind::Dir, None, true, None);
        assert_ne!(f, d);
    }

    #[test]
    fn multi_bucket_paths() {
        let mut t = InodeTable::new(None);
        assert_eq!(t.path(ROOT_INO), Some(NodePath::MountRoot));
        let b = t.entry(ROOT_INO, OsStr::new("site"), Kind::Dir, Some(3), true, None);
        let f = t.entry(b, OsStr::new("f"), Kind::File, None, true, None);
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
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::File, None, true, None);
        let b = t.entry(ROOT_INO, OsStr::new("b"), Kind::Dir, None, true, None);
        t.exchange(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"));
        assert_eq!(t.child(ROOT_INO, OsStr::new("a")), Some(b));
        assert_eq!(t.child(ROOT_INO, OsStr::new("b")), Some(a));
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    #[test]
    fn hard_links_share_a_node_and_survive_unlinking_one_name() {
        let mut t = InodeTable::new(Some(0));
        let id = (0, 0, 1, 42);
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::File, None, true, Some(id));
        let b = t.entry(ROOT_INO, OsStr::new("b"), Kind::File, None, true, Some(id));
        assert_eq!(a, b);
        t.detach(ROOT_INO, OsStr::new("a"));
        assert_eq!(
            t.path(a),
            Some(NodePath::Bucket {
                bucket: 0,
                path: vec![OsString::from("b")]
            })
        );
        t.detach(ROOT_INO, OsStr::new("b"));
        assert_eq!(t.path(a), None);
        assert_eq!(t.by_identity(&id), None);
    }

    #[test]
    fn listing_placeholder_becomes_a_link() {
        let mut t = InodeTable::new(Some(0));
        let id = (0, 0, 1, 7);
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::File, None, true, Some(id));
        let placeholder = t.entry(ROOT_INO, OsStr::new("b"), Kind::File, None, false, None);
        assert_ne!(a, placeholder);
        let b = t.entry(ROOT_INO, OsStr::new("b"), Kind::File, None, true, Some(id));
        assert_eq!(a, b);
    }

    #[test]
    fn exchange_of_two_links_of_one_node() {
        let mut t = InodeTable::new(Some(0));
        let id = (0, 0, 1, 9);
        let a = t.entry(ROOT_INO, OsStr::new("a"), Kind::File, None, true, Some(id));
        t.entry(ROOT_INO, OsStr::new("b"), Kind::File, None, true, Some(id));
        t.exchange(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"));
        assert_eq!(t.child(ROOT_INO, OsStr::new("a")), Some(a));
        assert_eq!(t.child(ROOT_INO, OsStr::new("b")), Some(a));
        t.detach(ROOT_INO, OsStr::new("a"));
        assert!(t.path(a).is_some());
    }
}
