//! The safety check of a rendered bucket path (SPEC §9): normalisation and
//! the rules that keep every output inside a mount of its bucket.
//!
//! A rendered path is the lossless text form of [`crate::name`]: its length
//! limits count the bytes it stands for, and its components are the exact
//! bytes (escapes decoded) when compared with the mount layout.

use super::error::{PathError, PathProblem};
use crate::name::{byte_len, split_path};
use crate::tree::{BucketTree, Place};

/// Longest path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// Longest rendered bucket path, in bytes (Linux `PATH_MAX` less the NUL).
pub const MAX_PATH: usize = 4095;

/// Checks a rendered path: absolute, `//` collapsed, no `..` component (error,
/// not resolved), no NUL, each component ≤ 255 bytes, and it resolves into a
/// mount of the same bucket (`tree.place(path, false)` not Hidden — hidden
/// mounts are allowed for workflows; a Root place requires at least one root
/// mount). Returns the normalised path.
///
/// Also refused: the bucket root, and a path that is an explicit mount point
/// or a directory leading to one (it names the layout, not a file inside a
/// mount). Errors name the path only; [`PathError::in_template`] adds the
/// template.
pub fn check_bucket_path(path: &str, tree: &BucketTree) -> Result<String, PathError> {
    let bad = |problem| PathError::Bad {
        template: None,
        path: path.to_string(),
        problem,
    };
    let norm = normalize_path(path).map_err(bad)?;
    let comps = split_path(&norm);
    if tree
        .mounts
        .iter()
        .any(|m| !m.is_root && m.point.starts_with(&comps))
    {
        return Err(bad(PathProblem::MountLayout));
    }
    match tree.place(&comps, false) {
        Place::Hidden => Err(bad(PathProblem::Hidden)),
        Place::Root { .. } if tree.root_mounts().next().is_none() => {
            Err(bad(PathProblem::NoMount {
                bucket: tree.name.clone(),
            }))
        }
        Place::Root { .. } | Place::Mount { .. } => Ok(norm),
    }
}

/// Normalises a rendered bucket path: `//` and `.` components collapse, a
/// trailing `/` goes; `..`, NUL, relative, root-only and over-long paths are
/// errors.
pub(super) fn normalize_path(path: &str) -> Result<String, PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if !path.starts_with('/') {
        return Err(PathProblem::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.split('/') {
        match c {
            "" | "." => continue,
            ".." => return Err(PathProblem::DotDot),
            _ if byte_len(c) > MAX_COMPONENT => {
                return Err(PathProblem::ComponentTooLong { len: byte_len(c) });
            }
            _ => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        return Err(PathProblem::Root);
    }
    let len = byte_len(&out);
    if len > MAX_PATH {
        return Err(PathProblem::TooLong { len });
    }
    Ok(out)
}
