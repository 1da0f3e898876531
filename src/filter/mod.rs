//! The event filter (SPEC §4.3): which items an event or a batch scan acts
//! on, with the semantics of Ansible's `find` module
//! (`lib/ansible/modules/find.py`), compiled once from a validated
//! [`config::Filter`](crate::config::model::Filter).
//!
//! An item matches when **every** rule holds:
//!
//! - **filetype**: `file` (default) admits regular files only, `directory`
//!   directories only, `link` symlinks only (never followed), `any` every
//!   kind, including [`ItemKind::Other`] (FIFOs, sockets, devices), which no
//!   other filetype admits.
//! - **hidden**: with `hidden: false` (default) a basename starting with `.`
//!   never matches, whatever the patterns say (Ansible tests this before the
//!   patterns, so `patterns: [".*"]` still needs `hidden: true`).
//! - **patterns / excludes**, tested on the **basename** only: at least one
//!   pattern must match (no patterns = match all, as Ansible's default `*` /
//!   `.*`), and no exclude may match.
//!   - Globs (`use_regex: false`) follow Python's `fnmatch.fnmatch` on POSIX,
//!     not a shell and not `globset` (compiled by
//!     [`config::pattern`](crate::config::pattern), the same compiler
//!     `storgate check` validates with): the whole basename must match;
//!     case-sensitive; `*` = any run of characters (also empty, also a leading
//!     `.`, also a newline); `?` = exactly one character (a Unicode scalar, not
//!     a byte); `[seq]` / `[!seq]` = a set or its complement, with ranges
//!     `a-z`; a `-` first or last in the set is literal, a `]` right after
//!     `[` or `[!` is a member; `[^a]` is the set {`^`, `a`} (only `!`
//!     negates); a reversed range such as `[z-a]` is empty. There is **no
//!     brace expansion** (`*.{jpg,png}` matches only a name ending in the
//!     literal `.{jpg,png}`; write two patterns) and **no escaping** (`\` is
//!     an ordinary character; use `[*]` for a literal `*`). fnmatch reads
//!     every string, a `[` without its `]` as a literal `[`; but that `[`,
//!     and unbalanced braces (`{a,b`, `a}`), are refused, by `storgate
//!     check` and here alike: their literal reading is surely not what was
//!     meant.
//!   - Regexes (`use_regex: true`) use the `regex` crate's syntax (as
//!     `storgate check` validates it) with Python `re.match` anchoring, which
//!     is what Ansible runs: the match must **start at the first character**
//!     of the basename but need **not reach its end**. So `\.jpg` matches no
//!     ordinary name (only names starting with `.jpg`), `.*\.jpg` matches
//!     `a.jpg` and also `a.jpg.tmp`, and `.*\.jpg$` only names ending in
//!     `.jpg`. (Ansible's docs say the regex "must match the entire file
//!     name"; its code, and so this filter, only anchors the start.) One
//!     difference from Python remains: `$` matches only at the very end, not
//!     also before a trailing newline. Excludes are anchored the same way.
//!   - A list element is one pattern: unlike a comma-separated Ansible
//!     *string*, `["a,b"]` is the single pattern `a,b` (Ansible does not split
//!     list elements either).
//! - **age** (`"2d"` = at least, `"-2d"` = at most 2 days old), measured as
//!   `now - stamp` (`age_stamp`: mtime, atime or ctime) with sub-second
//!   precision, boundaries included. A stamp in the future has a negative
//!   age: it passes every "at most" and fails every "at least" bound.
//!   Applies to every kind.
//! - **size** (`"1m"` = at least, `"-1m"` = at most 1 MiB, boundaries
//!   included) applies to regular files only: directories, links and other
//!   kinds always pass it.
//! - **depth** (batch scans only, [`CompiledFilter::matches_scan`] and
//!   [`CompiledFilter::descend`]): depth 1 = directly in the scan `path`. With
//!   `recursive: false` only depth 1 matches (whatever `depth` says); with
//!   `recursive: true`, `depth: N` admits depths 1..=N and `depth: 0` is
//!   unlimited. File-system events ignore both ([`CompiledFilter::matches_event`]).
//!
//! Names that are not UTF-8 never cause a panic: each byte that is not part of
//! valid UTF-8 is seen by the patterns as one U+FFFD (so, as with Python's
//! `surrogateescape` names, `?` and a regex `.` match exactly one such byte;
//! a literal U+FFFD in a pattern matches such a byte too); the hidden rule
//! looks at the raw first byte.

//!
//! Files: `candidate` (what is asked about), `compiled` (the rules), `age`
//! (the age bound); the patterns themselves live in `config::pattern`.

mod age;
mod candidate;
mod compiled;
#[cfg(test)]
mod tests;

pub use candidate::{Candidate, ItemKind};
pub use compiled::CompiledFilter;
