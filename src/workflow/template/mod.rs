//! Rendering of `savePath` / `onComplete.src.path` templates and `exec`
//! arguments (SPEC §5.1, §5.3, §5.4), and the safety check of a rendered
//! bucket path (SPEC §9).
//!
//! # Rendering
//!
//! Templates are minijinja templates rendered with `item` (SPEC §5.2, see
//! [`Item`]) and `source_dir`. The environment:
//!
//! - uses **strict undefined** behaviour: a misspelt variable or attribute
//!   (`{{ item.nmae }}`) is an error, never an empty string;
//! - never auto-escapes, keeps a trailing newline (the output is exactly what
//!   the template says);
//! - compiles [`prepare`]`(template)`, like the config checker, so that a
//!   filter result can be subscripted directly
//!   (`item.path | basename | rsplit('.', 1)[0]`);
//! - adds the filters `basename`, `dirname`, `relpath(base)`,
//!   `rsplit(sep=none, maxsplit=-1)` and `splitext`, which follow Python's
//!   `posixpath` and `str.rsplit` (see each function below; the one
//!   difference is that there is no working directory: a relative path given
//!   to `relpath` is taken relative to the bucket root `/`).
//!
//! Values are never re-evaluated: a file named `{{ item.size }}` renders as
//! that literal text.
//!
//! # `#N` capture references
//!
//! With a `pathPattern`, `#N` (N decimal, greedy: `#12` is group 12, `#0` the
//! whole match) is replaced by the pattern's capture group N of `item.path`
//! *before* rendering, as the spec says — but the captured text stays data:
//!
//! - in template text, `#N` becomes `{{ <captures>[N] }}`, so the value is
//!   printed, not parsed (a capture containing `{{ … }}` is not evaluated);
//! - inside a string literal of an expression (`{{ x | relpath('/in/#1') }}`)
//!   it is inserted escaped, so it cannot end the literal;
//! - inside `{% raw %}` it is printed through a short `{% endraw %}…{% raw %}`
//!   break; in `{# comments #}` and in expression code it is left alone
//!   (code such as `{{ #1 }}` is a syntax error, which `storgate check`
//!   already reports).
//!
//! The pattern is searched anywhere in `item.path` (`Regex::captures`; anchor
//! it with `^…$` to match the whole path). A group that did not take part in
//! the match is the empty string. No match fails the task. Without a
//! `pathPattern` (always the case for `onComplete` paths and `exec`
//! arguments) `#N` is plain text, so `exec` arguments such as `-fill '#123456'`
//! keep their meaning.
//!
//! # Path normalisation and safety
//!
//! A rendered path (see [`check_bucket_path`]) must be absolute; `//` and `.`
//! components are collapsed and a trailing `/` dropped; a `..` component is an
//! error (never resolved); so are a NUL byte, a component longer than 255 bytes
//! (`NAME_MAX`), a path longer than 4095 bytes (`PATH_MAX` less its NUL), and
//! the bucket root itself. Only these rules decide safety, so however hostile
//! a value is — newlines, quotes, `{{ }}`, `../` pieces, megabytes — the result
//! is either an error or a normalised path with no `..` in it.
//!
//! **Names are bytes.** [`Item::path`], `filename` and `dirname` are the
//! lossless text form of [`crate::name`]: a UTF-8 name as it is, each byte
//! that is not UTF-8 an escape (`U+10FF80`–`U+10FFFF`). The filters see that
//! text and work unchanged (no escape is a `/` or `.`, none decodes to an
//! ASCII byte), and a rendered path stands for the bytes it decodes to, so
//! `/out/{{ item.filename }}` names the source's exact bytes and two items
//! whose names differ in a byte write two outputs. The rules above hold for
//! those bytes too: decoding never creates a `/`, `.` or NUL, and the length
//! limits count bytes ([`crate::name::byte_len`]). The one consequence for
//! template authors: a reserved code point written literally in a template
//! stands for its byte.
//!
//! # Layout
//!
//! - `render`: the minijinja environment and the render entry points;
//! - `groups`: the `#N` capture substitution done before rendering;
//! - `filters`: the `posixpath`-style filters;
//! - `path`: the normalisation and safety check of a rendered path;
//! - `error`: what can be wrong with a template or its result.

mod error;
mod filters;
mod groups;
mod path;
mod render;

pub use error::{PathError, PathProblem};
pub use path::{MAX_COMPONENT, MAX_PATH, check_bucket_path};
pub use render::Templates;

/// The context variable holding the `pathPattern` captures (index = group).
const GROUPS_VAR: &str = "__storgate_groups";

#[cfg(test)]
mod tests;
