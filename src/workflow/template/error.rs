//! What can be wrong with a path template or with the path it rendered.

use std::fmt;

use super::path::{MAX_COMPONENT, MAX_PATH};

/// Why a rendered (or given) path is not an acceptable bucket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    NotAbsolute,
    /// The path is `/` (after normalisation).
    Root,
    DotDot,
    Nul,
    ComponentTooLong {
        len: usize,
    },
    TooLong {
        len: usize,
    },
    /// The path is an explicit mount point, or a directory on the way to one:
    /// it belongs to the mount layout, not to any mount's contents.
    MountLayout,
    /// Not under any mount point, and the bucket has no root mount.
    NoMount {
        bucket: String,
    },
    /// In a hidden mount while hidden mounts are not allowed (never returned
    /// for workflows, which may use hidden mounts; kept for completeness).
    Hidden,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Empty => f.write_str("is empty"),
            PathProblem::NotAbsolute => {
                f.write_str("is not an absolute bucket path (it must start with /)")
            }
            PathProblem::Root => f.write_str("names the bucket root, not an entry in it"),
            PathProblem::DotDot => f.write_str("contains a `..` component"),
            PathProblem::Nul => f.write_str("contains a NUL byte"),
            PathProblem::ComponentTooLong { len } => {
                write!(
                    f,
                    "has a component of {len} bytes (at most {MAX_COMPONENT})"
                )
            }
            PathProblem::TooLong { len } => {
                write!(f, "is {len} bytes long (at most {MAX_PATH})")
            }
            PathProblem::MountLayout => f.write_str(
                "is a mount point or a directory leading to one, not a path inside a mount",
            ),
            PathProblem::NoMount { bucket } => write!(
                f,
                "is not under any mount point of bucket {bucket:?}, which has no root mount"
            ),
            PathProblem::Hidden => f.write_str("is inside a hidden mount"),
        }
    }
}

/// A path template that cannot be rendered, or whose result is not a safe
/// bucket path. Every message names the template (when known), the value
/// involved and the problem; values are quoted with `{:?}`, so hostile names
/// (newlines, control characters) cannot forge log lines.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("template {template:?}: pathPattern {pattern:?} does not match item path {path:?}")]
    NoMatch {
        template: String,
        pattern: String,
        path: String,
    },
    #[error(
        "template {template:?}: #{group} refers to a capture group that pathPattern {pattern:?} does not have (it has {groups})"
    )]
    NoGroup {
        template: String,
        pattern: String,
        /// The digits after `#`, as written.
        group: String,
        /// Number of capture groups of the pattern (not counting group 0).
        groups: usize,
    },
    #[error("template {template:?}: {message}")]
    Render { template: String, message: String },
    #[error("{}", bad_message(.template.as_deref(), .path, .problem))]
    Bad {
        template: Option<String>,
        /// The rendered path, before normalisation.
        path: String,
        problem: PathProblem,
    },
}

fn bad_message(template: Option<&str>, path: &str, problem: &PathProblem) -> String {
    match template {
        Some(t) => format!("template {t:?} rendered {path:?}, which {problem}"),
        None => format!("path {path:?} {problem}"),
    }
}

impl PathError {
    /// Names `template` in an error of [`check_bucket_path`], which only sees
    /// the rendered path.
    pub fn in_template(self, template: &str) -> Self {
        match self {
            PathError::Bad {
                template: None,
                path,
                problem,
            } => PathError::Bad {
                template: Some(template.to_string()),
                path,
                problem,
            },
            other => other,
        }
    }

    /// The problem with the rendered path, for the errors that have one.
    pub fn problem(&self) -> Option<&PathProblem> {
        match self {
            PathError::Bad { problem, .. } => Some(problem),
            _ => None,
        }
    }
}
