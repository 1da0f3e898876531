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
//! **Non-UTF-8 names.** [`Item::path`] is a `String`: a caller holding an
//! `OsStr` with invalid UTF-8 builds it with `to_string_lossy`, which replaces
//! each invalid sequence by U+FFFD. That never creates or removes a `/`, `.` or
//! NUL byte (ASCII bytes always decode as themselves), so the rules above
//! still hold and the output stays inside the bucket — but its name differs
//! from the source's. The workflow runner may prefer to refuse such items.

use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value, context};

use crate::config::template::prepare;
use crate::item::Item;
use crate::tree::{BucketTree, Place, split_path};

/// Longest path component, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;
/// Longest rendered bucket path, in bytes (Linux `PATH_MAX` less the NUL).
pub const MAX_PATH: usize = 4095;

/// The context variable holding the `pathPattern` captures (index = group).
const GROUPS_VAR: &str = "__storgate_groups";

impl Item {
    fn to_value(&self) -> Value {
        context! {
            path => self.path.clone(),
            filename => self.filename.clone(),
            dirname => self.dirname.clone(),
            state => self.state.clone(),
            size => self.size,
            owner => self.owner.clone(),
            group => self.group.clone(),
            mode => self.mode.clone(),
            mtime => self.mtime,
            atime => self.atime,
            ctime => self.ctime,
            inode => self.inode,
            hits => self.hits,
        }
    }
}

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

/// The minijinja environment with storgate's filters.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// Why rendering failed, before the caller adds the template's name.
enum RenderFail {
    NoGroup { group: String },
    Engine(String),
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // The default delimiters always build; keep minijinja's default
        // (trailing newline dropped) in the impossible other case.
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        env.add_filter("basename", |p: &str| basename(p).to_string());
        env.add_filter("dirname", |p: &str| dirname(p).to_string());
        env.add_filter("relpath", |p: &str, base: &str| relpath(p, base));
        env.add_filter("rsplit", rsplit_filter);
        env.add_filter("splitext", |p: &str| {
            let (root, ext) = splitext(p);
            vec![root.to_string(), ext.to_string()]
        });
        Templates { env }
    }

    /// Render a savePath / onComplete path: pathPattern captures substituted
    /// for #1, #2… BEFORE rendering (no match → Err naming the pattern),
    /// rendered with `item` and `source_dir`, then normalised.
    ///
    /// The result is absolute, normalised and free of `..`, NUL and
    /// over-long components; whether it lies inside a mount of the bucket is
    /// [`check_bucket_path`]'s job.
    pub fn render_path(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
        path_pattern: Option<&regex::Regex>,
    ) -> Result<String, PathError> {
        let groups = match path_pattern {
            None => None,
            Some(re) => {
                let caps = re.captures(&item.path).ok_or_else(|| PathError::NoMatch {
                    template: template.to_string(),
                    pattern: re.as_str().to_string(),
                    path: item.path.clone(),
                })?;
                Some(
                    caps.iter()
                        .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let rendered = self
            .render(template, item, source_dir, groups.as_deref())
            .map_err(|f| match f {
                RenderFail::NoGroup { group } => PathError::NoGroup {
                    template: template.to_string(),
                    pattern: path_pattern.map_or(String::new(), |re| re.as_str().to_string()),
                    group,
                    groups: groups.as_ref().map_or(0, |g| g.len().saturating_sub(1)),
                },
                RenderFail::Engine(message) => PathError::Render {
                    template: template.to_string(),
                    message,
                },
            })?;
        normalize_path(&rendered).map_err(|problem| PathError::Bad {
            template: Some(template.to_string()),
            path: rendered,
            problem,
        })
    }

    /// Render an exec argument (no path normalisation). `#N` is plain text
    /// here. A NUL byte in the result is an error (no program argument can
    /// hold one).
    pub fn render_arg(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
    ) -> Result<String, String> {
        let out = self
            .render(template, item, source_dir, None)
            .map_err(|f| match f {
                RenderFail::Engine(m) => format!("exec argument {template:?}: {m}"),
                // Unreachable without captures; worded anyway.
                RenderFail::NoGroup { group } => {
                    format!("exec argument {template:?}: #{group} has no capture group")
                }
            })?;
        if out.contains('\0') {
            return Err(format!(
                "exec argument {template:?} rendered {out:?}, which contains a NUL byte"
            ));
        }
        Ok(out)
    }

    fn render(
        &self,
        template: &str,
        item: &Item,
        source_dir: &str,
        groups: Option<&[String]>,
    ) -> Result<String, RenderFail> {
        let mut src = prepare(template);
        if let Some(groups) = groups {
            src = substitute_groups(&src, groups).map_err(|group| RenderFail::NoGroup { group })?;
        }
        let groups_value = Value::from(groups.map(<[String]>::to_vec).unwrap_or_default());
        let ctx = Value::from_pairs([
            ("item", item.to_value()),
            ("source_dir", Value::from(source_dir)),
            (GROUPS_VAR, groups_value),
        ]);
        self.env
            .render_str(&src, ctx)
            .map_err(|e| RenderFail::Engine(describe(&e, template)))
    }
}

/// minijinja's error as one line: kind, detail, line (for multi-line
/// templates) and the causes.
fn describe(e: &Error, template: &str) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if template.contains('\n')
        && let Some(l) = e.line()
    {
        s.push_str(&format!(" (line {l})"));
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

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
fn normalize_path(path: &str) -> Result<String, PathProblem> {
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
            _ if c.len() > MAX_COMPONENT => {
                return Err(PathProblem::ComponentTooLong { len: c.len() });
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
    if out.len() > MAX_PATH {
        return Err(PathProblem::TooLong { len: out.len() });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// `#N` substitution

/// The `#N` reference starting at byte `i`, if any: its digits and end.
fn group_ref(src: &str, i: usize) -> Option<(&str, usize)> {
    let b = src.as_bytes();
    if b[i] != b'#' || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    Some((&src[i + 1..end], end))
}

/// The capture for `digits`, or the digits back as the error.
fn lookup<'g>(groups: &'g [String], digits: &str) -> Result<(usize, &'g str), String> {
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| groups.get(n).map(|g| (n, g.as_str())))
        .ok_or_else(|| digits.to_string())
}

/// minijinja's lexer's `skip_basic_tag`: when `s` (the text after `{%`) is the
/// tag `name` (`{%- name -%}` and `+` forms included), the length up to and
/// including its `%}`.
fn basic_tag(s: &str, name: &str) -> Option<usize> {
    let rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix(name)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    rest.starts_with("%}").then(|| s.len() - rest.len() + 2)
}

/// End (exclusive) of the `{{ … }}` / `{% … %}` whose body starts at `from`,
/// as minijinja's lexer finds it: the first `close` outside string literals
/// and brackets; the end of `src` if there is none.
fn block_end(src: &str, from: usize, close: &str) -> usize {
    let b = src.as_bytes();
    let mut depth = 0i64;
    let mut j = from;
    while j < b.len() {
        match b[j] {
            q @ (b'\'' | b'"') => j = string_end(b, j, q),
            b'(' | b'[' | b'{' => {
                depth += 1;
                j += 1;
            }
            b')' | b']' | b'}' if depth > 0 => {
                depth -= 1;
                j += 1;
            }
            _ if src[j..].starts_with(close) => return j + close.len(),
            _ => j += 1,
        }
    }
    b.len()
}

/// End (exclusive) of the string literal opened by quote `q` at `start`.
fn string_end(b: &[u8], start: usize, q: u8) -> usize {
    let mut k = start + 1;
    while k < b.len() && b[k] != q {
        k += if b[k] == b'\\' { 2 } else { 1 };
    }
    (k + 1).min(b.len())
}

/// Escapes `s` for a minijinja string literal (either quote), keeping line
/// breaks out of the source so that error line numbers stay right.
fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every `#N` of a (prepared) template by capture group N so that
/// the captured text is printed as data (see the module docs). Errors with
/// the digits of a reference to a group that does not exist.
fn substitute_groups(src: &str, groups: &[String]) -> Result<String, String> {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 32);
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%' | b'#')) {
            let kind = b[i + 1];
            if kind == b'#' {
                i = src[i + 2..].find("#}").map_or(b.len(), |e| i + 2 + e + 2);
                continue;
            }
            if kind == b'%'
                && let Some(open) = basic_tag(&src[i + 2..], "raw")
            {
                let content = i + 2 + open;
                let (content_end, after) = raw_end(src, content);
                out.push_str(&src[copied..content]);
                let mut k = content;
                let mut done = content;
                while k < content_end {
                    if let Some((digits, end)) = group_ref(src, k) {
                        let (n, _) = lookup(groups, digits)?;
                        out.push_str(&src[done..k]);
                        out.push_str(&format!(
                            "{{% endraw %}}{{{{ {GROUPS_VAR}[{n}] }}}}{{% raw %}}"
                        ));
                        done = end;
                        k = end;
                    } else {
                        k += 1;
                    }
                }
                out.push_str(&src[done..after]);
                copied = after;
                i = after;
                continue;
            }
            let close = if kind == b'{' { "}}" } else { "%}" };
            let end = block_end(src, i + 2, close);
            // Substitute inside the block's string literals only.
            let mut j = i + 2;
            while j < end {
                if let q @ (b'\'' | b'"') = b[j] {
                    let s_end = string_end(b, j, q).min(end);
                    let mut k = j + 1;
                    while k < s_end {
                        if b[k] == b'\\' {
                            k += 2;
                        } else if let Some((digits, r_end)) = group_ref(src, k) {
                            let (_, value) = lookup(groups, digits)?;
                            out.push_str(&src[copied..k]);
                            out.push_str(&escape_literal(value));
                            copied = r_end;
                            k = r_end;
                        } else {
                            k += 1;
                        }
                    }
                    j = s_end;
                } else {
                    j += 1;
                }
            }
            i = end;
            continue;
        }
        if let Some((digits, end)) = group_ref(src, i) {
            let (n, _) = lookup(groups, digits)?;
            out.push_str(&src[copied..i]);
            out.push_str(&format!("{{{{ {GROUPS_VAR}[{n}] }}}}"));
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    out.push_str(&src[copied..]);
    Ok(out)
}

/// For raw content starting at `from`: where it ends (the `{%` of its
/// `endraw` tag) and where that tag ends; both the end of `src` without one.
fn raw_end(src: &str, from: usize) -> (usize, usize) {
    let mut p = from;
    while let Some(off) = src[p..].find("{%") {
        let at = p + off;
        if let Some(len) = basic_tag(&src[at + 2..], "endraw") {
            return (at, at + 2 + len);
        }
        p = at + 2;
    }
    (src.len(), src.len())
}

// ---------------------------------------------------------------------------
// Filters (Python `posixpath` / `str.rsplit` semantics)

/// `os.path.basename`: the text after the last `/` (`/a/b/` → ``, `/` → ``).
fn basename(p: &str) -> &str {
    &p[p.rfind('/').map_or(0, |i| i + 1)..]
}

/// `os.path.dirname`: the text before the last `/`, trailing slashes removed
/// unless it is all slashes (`/a/b` → `/a`, `/a` → `/`, `a` → ``,
/// `/a/b/` → `/a/b`, `//a` → `//`).
fn dirname(p: &str) -> &str {
    let head = &p[..p.rfind('/').map_or(0, |i| i + 1)];
    if head.bytes().all(|b| b == b'/') {
        head
    } else {
        head.trim_end_matches('/')
    }
}

/// The components of `p` as `os.path.abspath` would leave them, taking the
/// bucket root as the working directory: empty and `.` dropped, `..`
/// resolved lexically (and stopping at the root).
fn abs_components(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `os.path.relpath(p, base)`: `.` for the same directory, `..` steps when
/// `p` is outside `base` (which the path check then rejects). An empty `p` is
/// an error, as in Python; relative arguments are relative to `/`.
fn relpath(p: &str, base: &str) -> Result<String, Error> {
    if p.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "relpath: no path specified",
        ));
    }
    let p = abs_components(p);
    let b = abs_components(base);
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts = vec![".."; b.len() - common];
    parts.extend_from_slice(&p[common..]);
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

/// Python's `str.isspace`, which adds U+001C–U+001F to Unicode White_Space.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.rsplit(sep, maxsplit)`: from the right, at most `maxsplit` splits
/// (`None` = unlimited); `sep = None` splits on runs of whitespace and drops
/// empty strings, like Python. An empty separator is an error.
fn rsplit(s: &str, sep: Option<&str>, maxsplit: Option<usize>) -> Result<Vec<String>, Error> {
    let limit = maxsplit.and_then(|n| n.checked_add(1));
    let mut v: Vec<String> = match (sep, limit) {
        (Some(""), _) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "rsplit: empty separator",
            ));
        }
        (Some(sep), Some(n)) => s.rsplitn(n, sep).map(String::from).collect(),
        (Some(sep), None) => s.rsplit(sep).map(String::from).collect(),
        (None, _) => return Ok(rsplit_whitespace(s, maxsplit.unwrap_or(usize::MAX))),
    };
    v.reverse();
    Ok(v)
}

/// CPython's `rsplit_whitespace`.
fn rsplit_whitespace(s: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let trimmed = rest.trim_end_matches(is_py_space);
        if trimmed.is_empty() {
            break;
        }
        if out.len() == max {
            out.push(trimmed.to_string());
            break;
        }
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| is_py_space(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        out.push(trimmed[start..].to_string());
        rest = &trimmed[..start];
    }
    out.reverse();
    out
}

/// The `rsplit` filter: `rsplit()`, `rsplit(sep)`, `rsplit(sep, maxsplit)`,
/// also with keywords `sep=` / `maxsplit=`; a negative `maxsplit` means no
/// limit, as in Python.
fn rsplit_filter(
    s: &str,
    sep: Option<&str>,
    maxsplit: Option<i64>,
    kwargs: Kwargs,
) -> Result<Vec<String>, Error> {
    let kw_sep: Option<&str> = kwargs.get("sep")?;
    let kw_max: Option<i64> = kwargs.get("maxsplit")?;
    kwargs.assert_all_used()?;
    let twice = |what| {
        Error::new(
            ErrorKind::TooManyArguments,
            format!("rsplit: {what} given twice"),
        )
    };
    let sep = match (sep, kw_sep) {
        (Some(_), Some(_)) => return Err(twice("sep")),
        (a, b) => a.or(b),
    };
    let maxsplit = match (maxsplit, kw_max) {
        (Some(_), Some(_)) => return Err(twice("maxsplit")),
        (a, b) => a.or(b),
    };
    rsplit(s, sep, maxsplit.and_then(|n| usize::try_from(n).ok()))
}

/// `os.path.splitext`: `(root, ext)` where `ext` starts at the last `.` of
/// the last component, unless that component is only dots before it
/// (`.bashrc` → (`.bashrc`, ``), `a.` → (`a`, `.`), `a/.b.c` → (`a/.b`, `.c`)).
fn splitext(p: &str) -> (&str, &str) {
    let name = p.rfind('/').map_or(0, |i| i + 1);
    if let Some(dot) = p.rfind('.')
        && dot >= name
        && p[name..dot].bytes().any(|b| b != b'.')
    {
        return (&p[..dot], &p[dot..]);
    }
    (p, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// The draft's derivative template (SPEC §5.1).
    const DRAFT: &str = "/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}";

    fn item(path: &str) -> Item {
        Item {
            path: path.to_string(),
            filename: basename(path).to_string(),
            dirname: dirname(path).to_string(),
            state: "file".into(),
            size: 1234,
            owner: "www".into(),
            group: "staff".into(),
            mode: "0644".into(),
            mtime: 1_700_000_000,
            atime: 1_700_000_001,
            ctime: -5,
            inode: 42,
            hits: 7,
        }
    }

    fn render(template: &str, path: &str) -> Result<String, PathError> {
        Templates::new().render_path(template, &item(path), "/newimg", None)
    }

    fn render_re(template: &str, path: &str, re: &str) -> Result<String, PathError> {
        let re = Regex::new(re).expect("test regex");
        Templates::new().render_path(template, &item(path), "/newimg", Some(&re))
    }

    fn arg(template: &str, path: &str) -> Result<String, String> {
        Templates::new().render_arg(template, &item(path), "/newimg")
    }

    fn problem(r: Result<String, PathError>) -> PathProblem {
        match r {
            Err(PathError::Bad { problem, .. }) => problem,
            other => panic!("expected a path problem, got {other:?}"),
        }
    }

    fn render_err(r: Result<String, PathError>) -> String {
        match r {
            Err(e @ PathError::Render { .. }) => e.to_string(),
            other => panic!("expected a render error, got {other:?}"),
        }
    }

    fn tree(mounts: &[(Option<&str>, bool)]) -> BucketTree {
        BucketTree::for_tests("media", mounts)
    }

    // ---- filters -------------------------------------------------------

    #[test]
    fn basename_like_python() {
        assert_eq!(basename("/a/b/sample.jpg"), "sample.jpg");
        assert_eq!(basename("/a/b/"), "");
        assert_eq!(basename("/"), "");
        assert_eq!(basename(""), "");
        assert_eq!(basename("name"), "name");
        assert_eq!(basename("//x"), "x");
    }

    #[test]
    fn dirname_like_python() {
        assert_eq!(dirname("/a/b"), "/a");
        assert_eq!(dirname("/a"), "/");
        assert_eq!(dirname("a"), "");
        assert_eq!(dirname("/a/b/"), "/a/b");
        assert_eq!(dirname("//a"), "//");
        assert_eq!(dirname("a//b"), "a");
        assert_eq!(dirname("///"), "///");
        assert_eq!(dirname(""), "");
    }

    #[test]
    fn relpath_like_python() {
        let r = |p, b| relpath(p, b).expect("relpath");
        assert_eq!(r("/newimg/a/b/sample.jpg", "/newimg"), "a/b/sample.jpg");
        assert_eq!(r("/newimg/a", "/newimg/"), "a");
        assert_eq!(r("/a/b", "/a/b"), ".");
        assert_eq!(r("/a", "/a/b/c"), "../..");
        assert_eq!(r("/x/y", "/a/b"), "../../x/y");
        assert_eq!(r("/a//b/./c", "/a/"), "b/c");
        assert_eq!(r("/a/../b", "/"), "b");
        assert_eq!(r("/..", "/"), ".");
        // No working directory: relative arguments are relative to `/`.
        assert_eq!(r("a/b", "a"), "b");
        assert_eq!(r("/a", ""), "a");
        let e = relpath("", "/").unwrap_err();
        assert!(e.to_string().contains("no path specified"), "{e}");
    }

    #[test]
    fn rsplit_with_separator_like_python() {
        let r = |s, sep, n| rsplit(s, Some(sep), n).expect("rsplit");
        assert_eq!(r("sample.tar.gz", ".", Some(1)), ["sample.tar", "gz"]);
        assert_eq!(r("sample.tar.gz", ".", None), ["sample", "tar", "gz"]);
        assert_eq!(r("sample.tar.gz", ".", Some(0)), ["sample.tar.gz"]);
        assert_eq!(r("README", ".", Some(1)), ["README"]);
        assert_eq!(r("", ".", None), [""]);
        assert_eq!(r(".hidden", ".", Some(1)), ["", "hidden"]);
        assert_eq!(r("aaa", "aa", None), ["a", ""]);
        assert_eq!(r("a::b::c", "::", Some(usize::MAX)), ["a", "b", "c"]);
        assert!(rsplit("a", Some(""), None).is_err());
    }

    #[test]
    fn rsplit_whitespace_like_python() {
        let r = |s, n| rsplit(s, None, n).expect("rsplit");
        assert_eq!(r(" a b  c  ", Some(1)), [" a b", "c"]);
        assert_eq!(r(" a b  c  ", None), ["a", "b", "c"]);
        assert_eq!(r(" a ", Some(0)), [" a"]);
        assert!(r("  ", None).is_empty());
        assert!(r("", None).is_empty());
        assert_eq!(r(" a\u{1c} b\u{3000}c", None), ["a", "b", "c"]);
    }

    #[test]
    fn rsplit_filter_arguments() {
        let p = "/x/photo.raw.jpg";
        assert_eq!(
            arg("{{ item.path | basename | rsplit('.') | join(',') }}", p).unwrap(),
            "photo,raw,jpg"
        );
        assert_eq!(
            arg("{{ item.path | basename | rsplit('.', -1) | length }}", p).unwrap(),
            "3"
        );
        assert_eq!(
            arg("{{ item.path | basename | rsplit('.', maxsplit=1)[0] }}", p).unwrap(),
            "photo.raw"
        );
        assert_eq!(
            arg(
                "{{ item.path | basename | rsplit(sep='.', maxsplit=1)[1] }}",
                p
            )
            .unwrap(),
            "jpg"
        );
        assert_eq!(
            arg("{{ 'a b  c' | rsplit(none, 1) | join('|') }}", p).unwrap(),
            "a b|c"
        );
        let e = arg("{{ item.path | rsplit('.', 1, maxsplit=1) }}", p).unwrap_err();
        assert!(e.contains("maxsplit given twice"), "{e}");
        let e = arg("{{ item.path | rsplit('.', limit=1) }}", p).unwrap_err();
        assert!(e.contains("limit"), "{e}");
        let e = arg("{{ item.path | rsplit('') }}", p).unwrap_err();
        assert!(e.contains("empty separator"), "{e}");
    }

    #[test]
    fn splitext_like_python() {
        assert_eq!(splitext("/a/sample.jpg"), ("/a/sample", ".jpg"));
        assert_eq!(splitext("a.tar.gz"), ("a.tar", ".gz"));
        assert_eq!(splitext(".bashrc"), (".bashrc", ""));
        assert_eq!(splitext("a/.b.c"), ("a/.b", ".c"));
        assert_eq!(splitext("a."), ("a", "."));
        assert_eq!(splitext(".."), ("..", ""));
        assert_eq!(splitext("a..b"), ("a.", ".b"));
        assert_eq!(splitext("/x.y/z"), ("/x.y/z", ""));
        assert_eq!(splitext("...a"), ("...a", ""));
        assert_eq!(splitext(""), ("", ""));
    }

    #[test]
    fn filters_in_templates() {
        let p = "/newimg/a/b/sample.jpg";
        assert_eq!(arg("{{ item.path | basename }}", p).unwrap(), "sample.jpg");
        assert_eq!(arg("{{ item.path | dirname }}", p).unwrap(), "/newimg/a/b");
        assert_eq!(
            arg("{{ item.path | relpath(source_dir) }}", p).unwrap(),
            "a/b/sample.jpg"
        );
        assert_eq!(
            arg("{{ item.path | splitext | first }}", p).unwrap(),
            "/newimg/a/b/sample"
        );
        assert_eq!(arg("{{ (item.path | splitext)[1] }}", p).unwrap(), ".jpg");
        // Subscripted directly: `prepare` makes this parse.
        assert_eq!(
            arg("{{ item.path | splitext[-1] | upper }}", p).unwrap(),
            ".JPG"
        );
        assert_eq!(
            render("/thumbs/{{ item.filename | splitext[0] }}.webp", p).unwrap(),
            "/thumbs/sample.webp"
        );
    }

    #[test]
    fn filters_reject_non_strings_and_missing_arguments() {
        let p = "/newimg/a.jpg";
        let e = arg("{{ item.size | basename }}", p).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
        assert!(arg("{{ none | dirname }}", p).is_err());
        assert!(arg("{{ item.path | relpath }}", p).is_err());
        assert!(arg("{{ item.path | relpath(item.size) }}", p).is_err());
        assert!(arg("{{ item.path | splitext(1) }}", p).is_err());
    }

    // ---- render_path ---------------------------------------------------

    #[test]
    fn draft_derivative_example() {
        // relpath = a/b/sample.jpg, dirname = a/b, rsplit('.', 1) = [sample, jpg]:
        // "/a/b/sample_m.jpg" (nothing to normalise).
        assert_eq!(
            render(DRAFT, "/newimg/a/b/sample.jpg").unwrap(),
            "/a/b/sample_m.jpg"
        );
    }

    #[test]
    fn draft_example_directly_in_source_dir() {
        // dirname("sample.jpg") = "" → "//sample_m.jpg", normalised.
        assert_eq!(
            render(DRAFT, "/newimg/sample.jpg").unwrap(),
            "/sample_m.jpg"
        );
    }

    #[test]
    fn draft_example_edge_names_follow_python() {
        // No extension: rsplit gives one element, [0] and [-1] are both the name.
        assert_eq!(
            render(DRAFT, "/newimg/d/README").unwrap(),
            "/d/README_m.README"
        );
        // Dot file: ".hidden".rsplit('.', 1) = ["", "hidden"].
        assert_eq!(render(DRAFT, "/newimg/.hidden").unwrap(), "/_m.hidden");
        // Several dots: only the last one splits.
        assert_eq!(
            render(DRAFT, "/newimg/x/a.tar.gz").unwrap(),
            "/x/a.tar_m.gz"
        );
    }

    #[test]
    fn overwrite_and_prefix_templates() {
        let p = "/dir/sample.jpg";
        assert_eq!(render("{{ item.path }}", p).unwrap(), p);
        assert_eq!(
            render("/newimg/{{ item.path }}", p).unwrap(),
            "/newimg/dir/sample.jpg"
        );
        assert_eq!(
            render("/newimg{{ item.dirname }}/{{ item.filename }}", p).unwrap(),
            "/newimg/dir/sample.jpg"
        );
    }

    #[test]
    fn normalisation_collapses_slashes_dots_and_trailing_slash() {
        let p = "/dir/sample.jpg";
        assert_eq!(render("//out///./x/.//y/", p).unwrap(), "/out/x/y");
        assert_eq!(
            render("/out/{{ '.' }}/{{ item.filename }}", p).unwrap(),
            "/out/sample.jpg"
        );
        // `...` and `.x` are ordinary names.
        assert_eq!(render("/out/.../.x", p).unwrap(), "/out/.../.x");
    }

    #[test]
    fn path_pattern_groups_are_substituted() {
        let re = r"^/newimg/([^/]+)/(.*)\.jpg$";
        assert_eq!(
            render_re("/out/#2-#1.png", "/newimg/cat/sub/pic.jpg", re).unwrap(),
            "/out/sub/pic-cat.png"
        );
        // Mixed with expressions and filters.
        assert_eq!(
            render_re(
                "/out/#1/{{ item.path | basename | rsplit('.', 1)[0] }}_#1.webp",
                "/newimg/cat/pic.jpg",
                re
            )
            .unwrap(),
            "/out/cat/pic_cat.webp"
        );
    }

    #[test]
    fn path_pattern_without_match_fails() {
        let e = render_re("/out/#1", "/elsewhere/a.png", r"^/newimg/(.*)\.jpg$").unwrap_err();
        assert!(matches!(e, PathError::NoMatch { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains(r#"pathPattern "^/newimg/(.*)\\.jpg$""#), "{m}");
        assert!(m.contains("\"/out/#1\""), "{m}");
        assert!(m.contains("\"/elsewhere/a.png\""), "{m}");
    }

    #[test]
    fn reference_to_missing_group_fails() {
        let e = render_re("/out/#3", "/newimg/a/b", r"^/newimg/(\w)/(\w)$").unwrap_err();
        match &e {
            PathError::NoGroup { group, groups, .. } => {
                assert_eq!(group, "3");
                assert_eq!(*groups, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().contains("#3 refers to a capture group"),
            "{e}"
        );
        // Absurd numbers do not overflow.
        let e = render_re(
            "/out/#99999999999999999999999",
            "/newimg/a/b",
            r"^/newimg/(\w)/(\w)$",
        )
        .unwrap_err();
        assert!(matches!(e, PathError::NoGroup { .. }), "{e:?}");
        // Inside a string literal too.
        let e = render_re("/out/{{ '#3' }}", "/newimg/a/b", r"^/newimg/(\w)/(\w)$").unwrap_err();
        assert!(matches!(e, PathError::NoGroup { .. }), "{e:?}");
    }

    #[test]
    fn group_zero_optional_groups_and_search_semantics() {
        // Unanchored: the pattern is searched; #0 is the whole match.
        assert_eq!(
            render_re("/out/#0", "/newimg/a/pic.jpg", r"[a-z]+\.jpg").unwrap(),
            "/out/pic.jpg"
        );
        // A group that did not take part is empty.
        assert_eq!(
            render_re("/out/#1x#2", "/newimg/a.jpg", r"/newimg/(b)?(a)").unwrap(),
            "/out/xa"
        );
    }

    #[test]
    fn multi_digit_group_numbers_are_greedy() {
        let re = r"^/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)$";
        assert_eq!(
            render_re("/out/#11-#1-#10", "/abcdefghijk", re).unwrap(),
            "/out/k-a-j"
        );
        // "#1" directly followed by a digit is #1x, not #1 then a digit.
        let e = render_re("/out/#12", "/abcdefghijk", re).unwrap_err();
        assert!(
            matches!(e, PathError::NoGroup { ref group, .. } if group == "12"),
            "{e:?}"
        );
    }

    #[test]
    fn hash_without_pattern_is_plain_text() {
        // onComplete paths have no pathPattern; exec arguments never do.
        assert_eq!(render("/done/#1/x", "/a").unwrap(), "/done/#1/x");
        assert_eq!(arg("-fill '#123456'", "/a").unwrap(), "-fill '#123456'");
        assert_eq!(arg("{{ '#1' }}", "/a").unwrap(), "#1");
    }

    #[test]
    fn captured_template_syntax_is_never_evaluated() {
        let re = r"(?s)^/in/(.*)$";
        let p = "/in/{{ item.size }}{% if true %}x{% endif %}{# c #}";
        assert_eq!(
            render_re("/out/#1", p, re).unwrap(),
            "/out/{{ item.size }}{% if true %}x{% endif %}{# c #}"
        );
        // A capture that tries to close a raw block or a string.
        let p = "/in/{% endraw %}{{ item.size }}'\"\\}}";
        assert_eq!(
            render_re("/out/{% raw %}[#1]{% endraw %}", p, re).unwrap(),
            "/out/[{% endraw %}{{ item.size }}'\"\\}}]"
        );
        assert_eq!(
            render_re("/out/{{ '#1' }}/{{ \"#1\" }}", p, re).unwrap(),
            "/out/{% endraw %}{{ item.size }}'\"\\}}/{% endraw %}{{ item.size }}'\"\\}}"
        );
    }

    #[test]
    fn captures_inside_expression_strings_are_escaped() {
        let re = r"(?s)^/in/([^/]*)/(.*)$";
        let p = "/in/it's \"q\" \\n\nline/rest";
        assert_eq!(
            render_re(
                "/out/{{ '#1' | upper }}/{{ item.path | relpath('/in/#1') }}",
                p,
                re
            )
            .unwrap(),
            "/out/IT'S \"Q\" \\N\nLINE/rest"
        );
    }

    #[test]
    fn hash_in_comments_and_raw_blocks() {
        let re = r"^/in/(.*)$";
        // Comments are dropped untouched; raw text gets the value, unparsed.
        assert_eq!(
            render_re(
                "/out/{# #1 #}{%- raw -%} {{ #1 }} {%- endraw %}",
                "/in/v",
                re
            )
            .unwrap(),
            "/out/{{ v }}"
        );
        // `#N` in expression code is left alone: a syntax error.
        let e = render_re("/out/{{ #1 }}", "/in/v", re).unwrap_err();
        assert!(matches!(e, PathError::Render { .. }), "{e:?}");
    }

    #[test]
    fn substitution_keeps_line_numbers() {
        let re = r"(?s)^/in/(.*)$";
        let e = render_re("/out/{{ '#1' }}\n{{ nope }}", "/in/a\nb\nc", re).unwrap_err();
        assert!(render_err(Err(e)).contains("(line 2)"));
    }

    #[test]
    fn undefined_variables_are_errors() {
        let p = "/a/b.jpg";
        for t in [
            "/out/{{ nope }}",
            "/out/{{ item.nope }}",
            "/out/{{ item.path.nope }}",
        ] {
            let m = render_err(render(t, p));
            assert!(m.contains("undefined"), "{t}: {m}");
            assert!(m.contains(&format!("{t:?}")), "{m}");
        }
        // Passed to a filter, an undefined value is refused by the filter.
        assert!(render("/out/{{ item.path | relpath(nope) }}", p).is_err());
        // `is defined` and `default` still work.
        assert_eq!(
            render(
                "/out/{{ nope | default('d') }}{% if nope is defined %}x{% endif %}",
                p
            )
            .unwrap(),
            "/out/d"
        );
    }

    #[test]
    fn syntax_and_runtime_errors_are_errors() {
        let p = "/a/b.jpg";
        for t in [
            "/out/{{ item.path }",
            "/out/{% if %}",
            "/out/{% if true %}",
            "/out/{{ }}",
            "/out/{{ 1 / 0 }}",
            "/out/{{ item.path | nosuchfilter }}",
            "/out/{{ item.path | rsplit('') }}",
            "/out/{% raw %}unterminated",
            "/out/{# unterminated",
            "/out/{{ 'unterminated }}",
        ] {
            let m = render_err(render(t, p));
            assert!(m.starts_with(&format!("template {t:?}: ")), "{m}");
        }
    }

    #[test]
    fn relpath_outside_source_dir_is_rejected() {
        let t = Templates::new();
        let r = t.render_path(DRAFT, &item("/other/x/pic.jpg"), "/newimg", None);
        assert_eq!(problem(r), PathProblem::DotDot);
        let r = t.render_path(
            "/out/{{ item.path | relpath(source_dir) }}",
            &item("/newimg/pic.jpg"),
            "/newimg/deeper",
            None,
        );
        assert_eq!(problem(r), PathProblem::DotDot);
    }

    #[test]
    fn dotdot_anywhere_is_rejected() {
        assert_eq!(
            problem(render("/out/{{ item.path }}", "/x/../../etc/passwd")),
            PathProblem::DotDot
        );
        assert_eq!(
            problem(render("/out/{{ item.filename }}", "/x/..")),
            PathProblem::DotDot
        );
        assert_eq!(
            problem(render("/out/{{ '..' }}/x", "/a")),
            PathProblem::DotDot
        );
        assert_eq!(problem(render("/out/..", "/a")), PathProblem::DotDot);
        assert_eq!(
            problem(render_re("/out/#1", "/in/../../etc", r"^/in/(.*)$")),
            PathProblem::DotDot
        );
        assert_eq!(
            problem(render("/{{ item.path }}/..", "/a")),
            PathProblem::DotDot
        );
    }

    #[test]
    fn shape_problems() {
        assert_eq!(
            problem(render("{{ item.filename }}", "/a/b")),
            PathProblem::NotAbsolute
        );
        assert_eq!(problem(render(" /a", "/a/b")), PathProblem::NotAbsolute);
        assert_eq!(problem(render("{{ '' }}", "/a/b")), PathProblem::Empty);
        assert_eq!(problem(render("/{{ '' }}", "/a/b")), PathProblem::Root);
        assert_eq!(problem(render("//./", "/a/b")), PathProblem::Root);
        assert_eq!(
            problem(render("/out/{{ item.filename }}", "/a/b\0c")),
            PathProblem::Nul
        );
        // Relative paths are not silently made absolute.
        assert_eq!(
            problem(render("{{ item.path | relpath('/') }}", "/a/b")),
            PathProblem::NotAbsolute
        );
    }

    #[test]
    fn hostile_names_stay_one_component() {
        for name in [
            "a\nb",
            "it's",
            "\"q\"",
            "back\\slash",
            "{{ item.size }}",
            "{% if true %}x{% endif %}",
            "#1",
            "{#",
            "%}",
            "..x",
            "x..",
            " .. ",
            "\u{202e}gpj.exe",
            "\r\n\t",
        ] {
            let p = format!("/in/{name}");
            assert_eq!(
                render("/out/{{ item.filename }}", &p).unwrap(),
                format!("/out/{name}"),
                "{name:?}"
            );
            assert_eq!(arg("{{ item.filename }}", &p).unwrap(), name);
        }
    }

    #[test]
    fn component_and_path_length_limits() {
        let ok = "a".repeat(255);
        assert_eq!(
            render("/out/{{ item.filename }}", &format!("/in/{ok}")).unwrap(),
            format!("/out/{ok}")
        );
        let long = "é".repeat(128); // 256 bytes
        assert_eq!(
            problem(render("/out/{{ item.filename }}", &format!("/in/{long}"))),
            PathProblem::ComponentTooLong { len: 256 }
        );
        // 16 components of 255 bytes: 16 × 256 = 4096 bytes.
        let deep = format!("/{}", vec![ok.as_str(); 16].join("/"));
        assert_eq!(
            problem(render("{{ item.path }}", &deep)),
            PathProblem::TooLong { len: 4096 }
        );
        let fits = &deep[..deep.len() - 1];
        assert_eq!(render("{{ item.path }}", fits).unwrap(), fits);
        // Megabytes of name: an error, no panic.
        let huge = "x".repeat(1 << 20);
        assert!(render("/out/{{ item.filename }}", &format!("/in/{huge}")).is_err());
    }

    #[test]
    fn lossy_non_utf8_names_cannot_escape() {
        for bytes in [
            &b"/in/\xff\xfe/pic.jpg"[..],
            b"/in/.\xff.",
            b"/in/\xc0./x",
            b"/in/\xe2\x80/\xff..",
            b"/in/..\xff",
        ] {
            let path = String::from_utf8_lossy(bytes).into_owned();
            assert!(path.contains('\u{FFFD}'));
            let out = render("/out/{{ item.path | relpath('/in') }}", &path).unwrap();
            assert!(out.starts_with("/out/"), "{out:?}");
            assert!(out.split('/').all(|c| c != ".." && c != "."), "{out:?}");
        }
        // Real `..` bytes survive lossy decoding, so they are still caught.
        let path = String::from_utf8_lossy(b"/in/\xff/../../x").into_owned();
        assert_eq!(
            problem(render("/out/{{ item.path }}", &path)),
            PathProblem::DotDot
        );
    }

    #[test]
    fn item_variables_and_source_dir() {
        let t = "{{ item.path }}|{{ item.filename }}|{{ item.dirname }}|{{ item.state }}|{{ item.size }}|{{ item.owner }}|{{ item.group }}|{{ item.mode }}|{{ item.mtime }}|{{ item.atime }}|{{ item.ctime }}|{{ item.inode }}|{{ item.hits }}|{{ source_dir }}";
        assert_eq!(
            arg(t, "/d/s.jpg").unwrap(),
            "/d/s.jpg|s.jpg|/d|file|1234|www|staff|0644|1700000000|1700000001|-5|42|7|/newimg"
        );
        let big = Item {
            size: u64::MAX,
            ..item("/x")
        };
        assert_eq!(
            Templates::new()
                .render_arg("{{ item.size }}", &big, "/")
                .unwrap(),
            u64::MAX.to_string()
        );
        // The internal captures variable never clashes with the user's.
        assert_eq!(arg("{{ __storgate_groups | length }}", "/x").unwrap(), "0");
    }

    #[test]
    fn control_structures() {
        let t = "/{% if item.size > 1000 %}big{% else %}small{% endif %}/{{ item.filename }}";
        assert_eq!(render(t, "/a/x.jpg").unwrap(), "/big/x.jpg");
        let t = "/by-mode/{{ item.mode[1:] }}/{% for p in item.path | rsplit('/', 2) %}{{ p }}-{% endfor %}";
        // "/a/b/c".rsplit('/', 2) = ["/a", "b", "c"]; the "//" collapses.
        assert_eq!(render(t, "/a/b/c").unwrap(), "/by-mode/644/a-b-c-");
    }

    #[test]
    fn render_arg_is_not_normalised() {
        assert_eq!(arg("a//b/../c", "/x").unwrap(), "a//b/../c");
        assert_eq!(
            arg("--in={{ item.path }}", "/d/s.jpg").unwrap(),
            "--in=/d/s.jpg"
        );
        assert_eq!(arg("", "/x").unwrap(), "");
        assert_eq!(arg("line\n", "/x").unwrap(), "line\n");
        assert_eq!(
            arg(
                "{{ item.path | basename | rsplit('.', 1)[0] }}.png",
                "/d/s.jpg"
            )
            .unwrap(),
            "s.png"
        );
    }

    #[test]
    fn render_arg_errors_name_the_template() {
        let e = arg("--x={{ nope }}", "/x").unwrap_err();
        assert!(e.starts_with("exec argument \"--x={{ nope }}\": "), "{e}");
        assert!(e.contains("undefined"), "{e}");
        let e = arg("{{ item.path", "/x").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        let e = arg("{{ item.filename }}", "/a\0b").unwrap_err();
        assert!(e.contains("NUL byte"), "{e}");
    }

    #[test]
    fn error_messages_name_template_path_and_problem() {
        let e = render("/out/{{ item.filename }}", "/x/..").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template \"/out/{{ item.filename }}\" rendered \"/out/..\", which contains a `..` component"
        );
        let e = render("/out/{{ item.filename }}", "/x/a\nb\0").unwrap_err();
        let m = e.to_string();
        assert!(!m.contains('\n') && !m.contains('\0'), "{m:?}");
        assert!(m.contains("\\n") && m.contains("\\0"), "{m}");
        let t = tree(&[(Some("/out"), true)]);
        let e = check_bucket_path("/elsewhere/x", &t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "path \"/elsewhere/x\" is not under any mount point of bucket \"media\", which has no root mount"
        );
        let e = e.in_template("/elsewhere/{{ item.filename }}");
        assert!(e.to_string().starts_with(
            "template \"/elsewhere/{{ item.filename }}\" rendered \"/elsewhere/x\", which is not under"
        ));
        assert_eq!(
            e.problem(),
            Some(&PathProblem::NoMount {
                bucket: "media".into()
            })
        );
    }

    // ---- check_bucket_path ---------------------------------------------

    #[test]
    fn check_with_root_mount_normalises() {
        let t = tree(&[(None, true), (Some("/archive"), true)]);
        assert_eq!(check_bucket_path("/a//b/./c/", &t).unwrap(), "/a/b/c");
        assert_eq!(check_bucket_path("/archive/x", &t).unwrap(), "/archive/x");
        // Component-wise prefixes only: /archived is a root path.
        assert_eq!(check_bucket_path("/archived", &t).unwrap(), "/archived");
    }

    #[test]
    fn check_without_root_mount_needs_an_explicit_one() {
        let t = tree(&[(Some("/out"), true), (Some("/hid"), false)]);
        assert_eq!(check_bucket_path("/out/a/b", &t).unwrap(), "/out/a/b");
        // Hidden mounts are allowed for workflows.
        assert_eq!(check_bucket_path("/hid/x", &t).unwrap(), "/hid/x");
        for p in ["/other/x", "/outx", "/outx/y", "/x"] {
            let e = check_bucket_path(p, &t).unwrap_err();
            assert_eq!(
                e.problem(),
                Some(&PathProblem::NoMount {
                    bucket: "media".into()
                }),
                "{p}"
            );
        }
    }

    #[test]
    fn check_rejects_mount_points_and_their_ancestors() {
        let t = tree(&[(None, true), (Some("/deep/a"), true), (Some("/h/x"), false)]);
        for p in ["/deep/a", "/deep", "/h/x", "/h", "//deep/./a/"] {
            let e = check_bucket_path(p, &t).unwrap_err();
            assert_eq!(e.problem(), Some(&PathProblem::MountLayout), "{p}");
        }
        assert_eq!(check_bucket_path("/deep/b", &t).unwrap(), "/deep/b");
        assert_eq!(check_bucket_path("/deep/a/f", &t).unwrap(), "/deep/a/f");
        assert_eq!(check_bucket_path("/h/y", &t).unwrap(), "/h/y");
    }

    #[test]
    fn check_rejects_bad_shapes() {
        let t = tree(&[(None, true)]);
        let cases: [(&str, PathProblem); 7] = [
            ("", PathProblem::Empty),
            ("a/b", PathProblem::NotAbsolute),
            ("/", PathProblem::Root),
            ("/./", PathProblem::Root),
            ("/a/../b", PathProblem::DotDot),
            ("/a/b\0", PathProblem::Nul),
            ("/..", PathProblem::DotDot),
        ];
        for (p, want) in cases {
            let e = check_bucket_path(p, &t).unwrap_err();
            assert_eq!(e.problem(), Some(&want), "{p:?}");
        }
        let long = format!("/{}", "n".repeat(256));
        assert_eq!(
            check_bucket_path(&long, &t).unwrap_err().problem(),
            Some(&PathProblem::ComponentTooLong { len: 256 })
        );
    }

    #[test]
    fn check_with_no_mounts_at_all() {
        let t = tree(&[]);
        assert!(check_bucket_path("/a", &t).is_err());
    }

    #[test]
    fn templates_are_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Templates>();
        assert_send_sync::<PathError>();
    }

    // ---- substitution internals ----------------------------------------

    #[test]
    fn substitute_groups_shapes() {
        let g = vec!["whole".to_string(), "v'1".to_string()];
        let s = |t: &str| substitute_groups(t, &g).unwrap();
        assert_eq!(s("/a/#1"), format!("/a/{{{{ {GROUPS_VAR}[1] }}}}"));
        assert_eq!(s("{{ 'x#1' }}"), "{{ 'x v\\'1' }}".replace("x v", "xv"));
        assert_eq!(s("{# #1 #}#"), "{# #1 #}#");
        assert_eq!(s("{{ x }}#a"), "{{ x }}#a");
        assert_eq!(s("{{ {'k': '#1'}['k'] }}"), "{{ {'k': 'v\\'1'}['k'] }}");
        assert_eq!(s("{{ '}}#1' }}#1").matches(GROUPS_VAR).count(), 1);
        assert_eq!(substitute_groups("#2", &g), Err("2".to_string()));
    }

    // ---- property test -------------------------------------------------

    /// A small deterministic generator (xorshift64*), so the test needs no
    /// extra crate and always runs the same cases.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[(self.next() % v.len() as u64) as usize]
        }
    }

    #[test]
    fn hostile_names_never_escape_or_panic() {
        const PIECES: &[&str] = &[
            "/",
            "/",
            ".",
            "..",
            "../",
            "/..",
            "x",
            "pic.jpg",
            "\n",
            "\r",
            "'",
            "\"",
            "\\",
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "#1",
            "#0",
            "#9",
            "{% raw %}",
            "{% endraw %}",
            "{{ item.size }}",
            "\0",
            "é",
            "\u{FFFD}",
            " ",
            "\t",
            ".hidden",
            "a.b.c",
            "//",
            "./",
        ];
        let templates: &[(&str, Option<&str>)] = &[
            ("/out/{{ item.path }}", None),
            ("/out/{{ item.filename }}", None),
            ("/out/{{ item.path | relpath(source_dir) }}", None),
            (
                "/out/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}",
                None,
            ),
            (
                "/out/{{ item.path | splitext | first }}{{ item.path | splitext | last }}",
                None,
            ),
            ("/out/#1", Some(r"(?s)^/newimg/(.*)$")),
            ("/out/{{ '#1' }}", Some(r"(?s)^/newimg/(.*)$")),
            ("/out/{% raw %}#1{% endraw %}", Some(r"(?s)^/newimg/(.*)$")),
            ("/out/#2/#1", Some(r"(?s)^/newimg/([^/]*)/?(.*)$")),
        ];
        let templates: Vec<(&str, Option<Regex>)> = templates
            .iter()
            .map(|(t, p)| (*t, p.map(|p| Regex::new(p).expect("test regex"))))
            .collect();
        let t = Templates::new();
        let out_tree = tree(&[(Some("/out"), false)]);
        let mut rng = Rng(0x5eed_1234_dead_beef);
        for _ in 0..1000 {
            let n = 1 + rng.next() % 8;
            let name: String = (0..n).map(|_| rng.pick(PIECES)).collect();
            let name = if rng.next().is_multiple_of(16) {
                name.repeat(40)
            } else {
                name
            };
            let it = item(&format!("/newimg/{name}"));
            for (tpl, re) in &templates {
                let r = t.render_path(tpl, &it, "/newimg", re.as_ref());
                if let Ok(p) = &r {
                    assert!(p == "/out" || p.starts_with("/out/"), "{tpl}: {p:?}");
                    assert!(!p.contains("//") && !p.contains('\0') && !p.ends_with('/'));
                    assert!(p.len() <= MAX_PATH);
                    for c in p.split('/').skip(1) {
                        assert!(c != ".." && c != "." && !c.is_empty(), "{p:?}");
                        assert!(c.len() <= MAX_COMPONENT);
                    }
                    match check_bucket_path(p, &out_tree) {
                        Ok(q) => assert_eq!(&q, p),
                        Err(e) => assert_eq!(p, "/out", "{e}"),
                    }
                }
                // A capture is printed exactly, wherever `#1` stands.
                if let Some(re) = &re
                    && !tpl.contains("#2")
                {
                    let cap = re.captures(&it.path).map(|c| c[1].to_string());
                    let want = cap.map(|c| normalize_path(&format!("/out/{c}")));
                    match (want, &r) {
                        (Some(Ok(w)), Ok(got)) => assert_eq!(&w, got, "{tpl}"),
                        (Some(Err(w)), Err(e)) => assert_eq!(e.problem(), Some(&w), "{tpl}"),
                        (None, Err(PathError::NoMatch { .. })) => {}
                        (w, got) => panic!("{tpl} {name:?}: want {w:?}, got {got:?}"),
                    }
                }
                let _ = t.render_arg(tpl, &it, "/newimg");
            }
        }
    }
}
