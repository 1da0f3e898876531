//! Path resolution over a bucket's origins — the merge rules of SPEC §3.1,
//! written once: where an existing path lives (rules 1–4), what a directory
//! lists (the union of the root mounts, first declared wins a name, plus the
//! names the layout adds, minus what it shadows), and where a new entry goes
//! (rule 5). [`crate::tree`] says *where to look*; this module looks.
//!
//! The mount (`fs`), batch scans and the workflow store all call these
//! functions; they differ only in the [`View`] they pass (clients do not see
//! hidden mounts, workflows do) and in how exact a stat must be.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};

use crate::error::{Errno, FsResult};
use crate::origin::Backend;
use crate::tree::{BucketTree, Place};

/// A bucket as one caller sees it.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub tree: &'a BucketTree,
    /// The origin of each mount, by mount index.
    pub origins: &'a [Backend],
    /// Clients (the mount, batch scans) do not see hidden mounts; workflows
    /// pass `false` and reach them.
    pub for_client: bool,
}

/// How exact the attributes of a lookup must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// A full stat (a HEAD on S3 where the listing does not say enough).
    Exact,
    /// Attributes for a listing: an S3 origin may answer from its listing.
    Listed,
}

/// Where an existing bucket path lives.
#[derive(Debug, Clone)]
pub enum Located {
    /// A directory made up by the layout (rule 3), or a bucket root without a
    /// root mount: owned by no origin.
    Synthetic,
    /// An entry of origin `mount` at `rel`.
    Origin {
        mount: usize,
        rel: Vec<OsString>,
        st: libc::stat,
    },
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn stat(origin: &Backend, rel: &[OsString], how: Stat) -> FsResult<libc::stat> {
    match how {
        Stat::Exact => origin.lstat(rel),
        Stat::Listed => origin.lstat_listed(rel).map(|(st, _exact)| st),
    }
}

/// Rules 1–4: the entry behind bucket path `path`. Among the root mounts the
/// first that has the name wins; when none has it the first error is
/// returned, unless the layout makes the path a directory of its own.
pub fn locate(view: View, path: &[OsString], how: Stat) -> FsResult<Located> {
    let tree = view.tree;
    match tree.place(path, view.for_client) {
        Place::Hidden => Err(Errno::ENOENT),
        Place::Mount { mount, rel } => match stat(&view.origins[mount], &rel, how) {
            Ok(st) => Ok(Located::Origin { mount, rel, st }),
            Err(e) if e == Errno::ENOENT && tree.is_mount_ancestor(path) => Ok(Located::Synthetic),
            Err(e) => Err(e),
        },
        Place::Root { rel } => {
            let mut first_err = None;
            for r in tree.root_mounts() {
                match stat(&view.origins[r], &rel, how) {
                    Ok(st) => return Ok(Located::Origin { mount: r, rel, st }),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if path.is_empty() || tree.is_mount_ancestor(path) {
                return Ok(Located::Synthetic);
            }
            Err(first_err.unwrap_or(Errno::ENOENT))
        }
    }
}

/// One name of a merged listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: OsString,
    /// The `d_type` the origin gave (`DT_DIR` for names the layout adds).
    pub d_type: u8,
    /// The origin that listed it; `None` for a name the layout adds (a mount
    /// point or a synthetic parent): look it up with [`locate`].
    pub mount: Option<usize>,
}

/// A merged directory listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// The directory's path inside its origin(s).
    pub rel: Vec<OsString>,
    /// Origin names first (first declared root mount first, each name once),
    /// then the names the layout adds. Unsorted.
    pub entries: Vec<Listed>,
    /// Origins that could not be listed for another reason than the
    /// directory not being there (ENOENT, ENOTDIR).
    pub failed: Vec<(usize, Errno)>,
    /// Whether at least one origin listed the directory.
    pub listed_any: bool,
}

/// The listing of directory `dir` as the merge rules make it (rules 2–4):
/// the union of the root mounts (the first declared wins a name) or the
/// entries of the explicit mount that owns it, without the names the layout
/// shadows, plus its mount points and synthetic parents. `keep` filters
/// names early (a batch scan resuming after a name).
pub fn merged_listing(
    view: View,
    dir: &[OsString],
    keep: &dyn Fn(&OsStr) -> bool,
) -> FsResult<Listing> {
    let tree = view.tree;
    let (rel, sources): (Vec<OsString>, Vec<usize>) = match tree.place(dir, view.for_client) {
        Place::Hidden => return Err(Errno::ENOENT),
        Place::Mount { mount, rel } => (rel, vec![mount]),
        Place::Root { rel } => (rel, tree.root_mounts().collect()),
    };
    let mut out = Listing {
        rel,
        ..Listing::default()
    };
    // Names of one origin are unique; only a union needs deduplicating.
    let mut seen: Option<HashSet<OsString>> = (sources.len() > 1).then(HashSet::new);
    for mount in sources {
        match view.origins[mount].read_dir(&out.rel) {
            Ok(entries) => {
                out.listed_any = true;
                for e in entries {
                    if !keep(&e.name) || tree.is_shadowed(dir, &e.name) {
                        continue;
                    }
                    if let Some(seen) = &mut seen
                        && !seen.insert(e.name.clone())
                    {
                        continue;
                    }
                    out.entries.push(Listed {
                        name: e.name,
                        d_type: e.d_type,
                        mount: Some(mount),
                    });
                }
            }
            // A directory of the union need not exist in every root mount.
            Err(e) if e == Errno::ENOENT || e == Errno::ENOTDIR => {}
            Err(e) => out.failed.push((mount, e)),
        }
    }
    // Every added name is shadowed above, so none is listed twice.
    out.entries.extend(
        tree.virtual_children(dir)
            .into_iter()
            .filter(|v| keep(&v.name))
            .map(|v| Listed {
                name: v.name,
                d_type: libc::DT_DIR,
                mount: None,
            }),
    );
    Ok(out)
}

/// Who asks where a new entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewFor {
    /// A client creating through the mount: the parent directory must exist
    /// (the origin gives the exact errno), layout directories take no new
    /// entries, and an existing name is EEXIST.
    Client,
    /// A workflow writing an output: an existing entry is replaced where it
    /// is, and missing parent directories will be created.
    Output,
}

/// Where a new entry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlace {
    pub mount: usize,
    pub rel: Vec<OsString>,
    /// `NewFor::Output` only: the path exists already (at `mount`/`rel`).
    pub exists: bool,
}

/// Rule 5: the origin and origin path a new entry at bucket path `path`
/// goes to — the mount that owns the path; for root paths the first root
/// mount in which the parent directory exists, else the first root mount.
pub fn new_place(view: View, path: &[OsString], purpose: NewFor) -> FsResult<NewPlace> {
    let tree = view.tree;
    let is_dir_in =
        |m: usize, rel: &[OsString]| view.origins[m].lstat(rel).is_ok_and(|st| is_dir(&st));
    let new = |mount: usize, rel: Vec<OsString>| NewPlace {
        mount,
        rel,
        exists: false,
    };
    if purpose == NewFor::Output {
        if let Ok(Located::Origin { mount, rel, .. }) = locate(view, path, Stat::Exact) {
            return Ok(NewPlace {
                mount,
                rel,
                exists: true,
            });
        }
    } else if tree.is_mount_ancestor(path) {
        return Err(Errno::EEXIST);
    }
    let parent = &path[..path.len().saturating_sub(1)];
    // A client's entry under a layout directory needs that directory to be
    // real in the origin: synthetic directories are read-only.
    let layout_parent_missing =
        |m: usize, prel: &[OsString]| tree.is_mount_ancestor(parent) && !is_dir_in(m, prel);
    match tree.place(path, view.for_client) {
        Place::Hidden => Err(Errno::EACCES),
        Place::Mount { rel, .. } if rel.is_empty() => Err(match purpose {
            NewFor::Client => Errno::EEXIST,
            NewFor::Output => Errno::EISDIR,
        }),
        Place::Mount { mount, rel } => {
            if purpose == NewFor::Client && layout_parent_missing(mount, &rel[..rel.len() - 1]) {
                return Err(Errno::EACCES);
            }
            Ok(new(mount, rel))
        }
        Place::Root { rel } => {
            let roots: Vec<usize> = tree.root_mounts().collect();
            let rparent = &rel[..rel.len().saturating_sub(1)];
            match (purpose, roots.as_slice()) {
                (_, []) => Err(Errno::EACCES),
                // One root mount: let the origin give the exact errno.
                (NewFor::Client, [only]) => {
                    if layout_parent_missing(*only, rparent) {
                        return Err(Errno::EACCES);
                    }
                    Ok(new(*only, rel))
                }
                (NewFor::Client, _) => {
                    if roots.iter().any(|r| view.origins[*r].lstat(&rel).is_ok()) {
                        return Err(Errno::EEXIST);
                    }
                    roots
                        .iter()
                        .find(|r| is_dir_in(**r, rparent))
                        .map(|r| new(*r, rel.clone()))
                        .ok_or(Errno::EACCES)
                }
                (NewFor::Output, _) => {
                    let with_parent = roots.iter().copied().find(|m| is_dir_in(*m, rparent));
                    Ok(new(with_parent.unwrap_or(roots[0]), rel))
                }
            }
        }
    }
}
