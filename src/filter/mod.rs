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
//!     not a shell and not `globset`: the whole basename must match;
//!     case-sensitive; `*` = any run of characters (also empty, also a leading
//!     `.`, also a newline); `?` = exactly one character (a Unicode scalar, not
//!     a byte); `[seq]` / `[!seq]` = a set or its complement, with ranges
//!     `a-z`; a `-` first or last in the set is literal, a `]` right after
//!     `[` or `[!` is a member; `[^a]` is the set {`^`, `a`} (only `!`
//!     negates); a reversed range such as `[z-a]` is empty; a `[` without its
//!     `]` is a literal `[`. There is **no brace expansion** (`*.{jpg,png}`
//!     matches only a name ending in the literal `.{jpg,png}`; write two
//!     patterns) and **no escaping** (`\` is an ordinary character; use `[*]`
//!     for a literal `*`). Every string is a valid fnmatch pattern.
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

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use regex::Regex;

use crate::config::model::{AgeStamp, FileType, Filter};
use crate::config::units::{AgeFilter, SizeFilter};

/// The kind of an item, as `lstat` sees it (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    File,
    Directory,
    Link,
    /// FIFO, socket, device: only `filetype: any` admits it.
    Other,
}

/// What the filter needs to know about one item.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The basename (no `/`).
    pub name: &'a OsStr,
    pub kind: ItemKind,
    /// Bytes; only looked at for [`ItemKind::File`].
    pub size: u64,
    pub mtime: SystemTime,
    pub atime: SystemTime,
    pub ctime: SystemTime,
    /// 1 = directly in the scan path, 2 = in a directory of it, …; ignored
    /// for file-system events.
    pub depth: u32,
}

/// A filter ready to test items: patterns compiled once. Cheap to share
/// (`Clone` copies reference-counted regexes).
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    patterns: Vec<Matcher>,
    excludes: Vec<Matcher>,
    filetype: FileType,
    recursive: bool,
    hidden: bool,
    age: Option<AgeFilter>,
    age_stamp: AgeStamp,
    size: Option<SizeFilter>,
    depth: u32,
}

impl CompiledFilter {
    /// Compiles a filter. `None` (the config's absent or `null` filter)
    /// behaves exactly like `{}`, i.e. every §4.3 default: every regular file
    /// (not directories, links or other kinds) whose name does not start with
    /// `.`, and for a batch scan only the items directly in its `path`. (The
    /// hidden default is what keeps rsync's `.name.XXXXXX` temporaries out of
    /// a landing-zone scan.)
    ///
    /// Fails only on a regex that does not compile (which `storgate check`
    /// already rejects) or on a pattern too large for the regex engine.
    pub fn new(f: Option<&Filter>) -> Result<CompiledFilter, String> {
        let default = Filter::default();
        let f = f.unwrap_or(&default);
        let compile = |key: &str, list: &[String]| -> Result<Vec<Matcher>, String> {
            list.iter()
                .enumerate()
                .map(|(i, p)| Matcher::new(p, f.use_regex).map_err(|e| format!("{key}[{i}]: {e}")))
                .collect()
        };
        Ok(CompiledFilter {
            patterns: compile("patterns", &f.patterns)?,
            excludes: compile("excludes", &f.excludes)?,
            filetype: f.filetype,
            recursive: f.recursive,
            hidden: f.hidden,
            age: f.age,
            age_stamp: f.age_stamp,
            size: f.size,
            depth: f.depth,
        })
    }

    /// For a file-system event (onGet/onPut/onDelete): every rule except
    /// `recursive` and `depth` (an event concerns one item wherever it is).
    pub fn matches_event(&self, c: &Candidate, now: SystemTime) -> bool {
        self.matches_item(c, now)
    }

    /// For an item found by a batch scan: every rule, including the depth
    /// rule (`c.depth` 1 = directly in the scan path; 0, the scan path
    /// itself, never matches — Ansible never reports the path it searches).
    pub fn matches_scan(&self, c: &Candidate, now: SystemTime) -> bool {
        self.depth_admits(c.depth) && self.matches_item(c, now)
    }

    /// Whether a scan must list the entries of a directory at `dir_depth` (0 =
    /// the scan path itself, 1 = a directory directly in it, …), i.e. whether
    /// items at `dir_depth + 1` can match. The scan path itself is always
    /// listed. Like Ansible, neither `hidden` nor `excludes` prune: a scan
    /// still looks inside `.git/` or an excluded directory, and tests the
    /// names found there one by one.
    pub fn descend(&self, dir_depth: u32) -> bool {
        dir_depth == 0 || (self.recursive && (self.depth == 0 || dir_depth < self.depth))
    }

    fn depth_admits(&self, depth: u32) -> bool {
        match (depth, self.recursive) {
            (0, _) => false,
            (_, false) => depth == 1,
            (_, true) => self.depth == 0 || depth <= self.depth,
        }
    }

    /// Every rule but depth, cheapest first.
    fn matches_item(&self, c: &Candidate, now: SystemTime) -> bool {
        let kind_ok = match self.filetype {
            FileType::File => c.kind == ItemKind::File,
            FileType::Directory => c.kind == ItemKind::Directory,
            FileType::Link => c.kind == ItemKind::Link,
            FileType::Any => true,
        };
        if !kind_ok {
            return false;
        }
        if !self.hidden && c.name.as_bytes().first() == Some(&b'.') {
            return false;
        }
        if let Some(size) = self.size
            && c.kind == ItemKind::File
            && !size.matches(c.size)
        {
            return false;
        }
        if let Some(age) = self.age {
            let stamp = match self.age_stamp {
                AgeStamp::Mtime => c.mtime,
                AgeStamp::Atime => c.atime,
                AgeStamp::Ctime => c.ctime,
            };
            if !age_matches(&age, stamp, now) {
                return false;
            }
        }
        self.name_matches(c.name)
    }

    /// Patterns and excludes (Ansible's `pfilter`).
    fn name_matches(&self, name: &OsStr) -> bool {
        if self.patterns.is_empty() && self.excludes.is_empty() {
            return true;
        }
        let name = name_text(name);
        (self.patterns.is_empty() || self.patterns.iter().any(|m| m.is_match(&name)))
            && !self.excludes.iter().any(|m| m.is_match(&name))
    }
}

/// Ansible's `agefilter` (`now - stamp >= age`, or `<=` for a negative age),
/// exact to the nanosecond although the bound is whole seconds.
fn age_matches(age: &AgeFilter, stamp: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(stamp) {
        Ok(d) => {
            // age >= N  <=>  floor(age) >= N;  age <= N  <=>  ceil(age) <= N.
            let secs = if age.at_most && d.subsec_nanos() > 0 {
                d.as_secs().saturating_add(1)
            } else {
                d.as_secs()
            };
            age.matches(secs)
        }
        // In the future: a negative age, below every bound.
        Err(_) => age.at_most,
    }
}

/// The basename as the patterns see it: UTF-8 as is; otherwise each invalid
/// byte becomes one U+FFFD (one "character" per byte, like Python's
/// `surrogateescape`).
fn name_text(name: &OsStr) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 16);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
            }
            Cow::Owned(out)
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    /// An fnmatch glob translated to a regex anchored at both ends.
    Glob(Regex),
    /// A user regex with `re.match` semantics: compiled as written (wrapping
    /// it in `^(?:…)` would break a trailing `(?x)` comment) and accepted
    /// only when the leftmost match starts at 0 — there is a match at 0
    /// exactly when the leftmost match starts there.
    Regex(Regex),
}

impl Matcher {
    fn new(pattern: &str, use_regex: bool) -> Result<Matcher, String> {
        if use_regex {
            Regex::new(pattern)
                .map(Matcher::Regex)
                .map_err(|e| format!("bad regex {pattern:?}: {}", one_line(&e)))
        } else {
            Regex::new(&fnmatch_to_regex(pattern))
                .map(Matcher::Glob)
                .map_err(|e| format!("glob {pattern:?} cannot be compiled: {}", one_line(&e)))
        }
    }

    fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Glob(re) => re.is_match(name),
            Matcher::Regex(re) => re.find(name).is_some_and(|m| m.start() == 0),
        }
    }
}

/// The last line of a regex error that says what is wrong.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| text.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or_default()
        .to_string()
}

/// Translates a glob exactly as CPython's `fnmatch.translate` (3.9+) does,
/// into `regex` syntax: `(?s)` so that `*` and `?` also match newlines, and
/// anchored at both ends.
fn fnmatch_to_regex(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let n = chars.len();
    let mut out = String::from(r"(?s)\A(?:");
    let mut i = 0;
    let mut last_star = false;
    while i < n {
        let c = chars[i];
        i += 1;
        let star = c == '*';
        match c {
            // Consecutive stars are one star.
            '*' if last_star => {}
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => match set_end(&chars, i) {
                // No closing `]`: a literal `[`; go on right after it.
                None => out.push_str(r"\["),
                Some(j) => {
                    push_set(&mut out, &chars[i..j]);
                    i = j + 1;
                }
            },
            _ => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
        last_star = star;
    }
    out.push_str(r")\z");
    out
}

/// The index of the `]` closing a set whose contents start at `i` (right
/// after `[`): a leading `!`, then a leading `]`, are members, not the end.
fn set_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'!') {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    (j..chars.len()).find(|&k| chars[k] == ']')
}

/// Appends the regex for the set `[stuff]` (`stuff` without the brackets).
/// `x-y` is a range, except that the first member is never a range's `-`
/// (so `[-a]` and `[!-a]` hold a literal `-`) and a `-` with nothing after it
/// is literal. Reversed ranges are dropped; a set left empty never matches,
/// its complement matches any character.
fn push_set(out: &mut String, stuff: &[char]) {
    let (negated, members) = match stuff.split_first() {
        Some(('!', rest)) => (true, rest),
        _ => (false, stuff),
    };
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut k = 0;
    while k < members.len() {
        if k + 2 < members.len() && members[k + 1] == '-' {
            let (lo, hi) = (members[k], members[k + 2]);
            if lo <= hi {
                ranges.push((lo, hi));
            }
            k += 3;
        } else {
            ranges.push((members[k], members[k]));
            k += 1;
        }
    }
    match (ranges.is_empty(), negated) {
        // Python emits `(?!)`; `regex` has no look-around, but an empty class
        // is fine.
        (true, false) => out.push_str(r"[^\x{0}-\x{10FFFF}]"),
        (true, true) => out.push('.'),
        (false, _) => {
            out.push('[');
            if negated {
                out.push('^');
            }
            for (lo, hi) in ranges {
                // Hex escapes: no member can be mistaken for class syntax.
                let _ = write!(out, r"\x{{{:X}}}", lo as u32);
                if hi != lo {
                    let _ = write!(out, r"-\x{{{:X}}}", hi as u32);
                }
            }
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::config::units::{parse_age, parse_size};

    const DAY: u64 = 86_400;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// A regular file of 100 bytes, modified/accessed/changed one hour ago,
    /// directly in the scan path.
    fn file(name: &str) -> Candidate<'_> {
        cand(OsStr::new(name), ItemKind::File)
    }

    fn cand(name: &OsStr, kind: ItemKind) -> Candidate<'_> {
        let t = now() - Duration::from_secs(3600);
        Candidate {
            name,
            kind,
            size: 100,
            mtime: t,
            atime: t,
            ctime: t,
            depth: 1,
        }
    }

    fn compile(f: Filter) -> CompiledFilter {
        CompiledFilter::new(Some(&f)).expect("filter compiles")
    }

    /// Glob patterns, hidden names admitted (so that only the patterns
    /// decide).
    fn globs(patterns: &[&str]) -> CompiledFilter {
        compile(Filter {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            hidden: true,
            ..Filter::default()
        })
    }

    fn regexes(patterns: &[&str], excludes: &[&str]) -> CompiledFilter {
        compile(Filter {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            excludes: excludes.iter().map(|p| p.to_string()).collect(),
            use_regex: true,
            ..Filter::default()
        })
    }

    /// Names (regular files) the filter lets through, for compact asserts.
    fn passing<'a>(f: &CompiledFilter, names: &[&'a str]) -> Vec<&'a str> {
        names
            .iter()
            .copied()
            .filter(|n| f.matches_event(&file(n), now()))
            .collect()
    }

    fn kinds() -> [ItemKind; 4] {
        [
            ItemKind::File,
            ItemKind::Directory,
            ItemKind::Link,
            ItemKind::Other,
        ]
    }

    // ----- construction and the null filter -----

    #[test]
    fn null_filter_matches_every_plain_file_only() {
        let f = CompiledFilter::new(None).unwrap();
        let name = OsStr::new("anything.bin");
        let hits: Vec<ItemKind> = kinds()
            .into_iter()
            .filter(|&k| f.matches_event(&cand(name, k), now()))
            .collect();
        assert_eq!(hits, [ItemKind::File]);
        let huge = Candidate {
            size: u64::MAX,
            mtime: UNIX_EPOCH,
            ..file("x")
        };
        assert!(f.matches_event(&huge, now()));
        assert!(f.matches_event(&file(""), now()), "no pattern: any name");
    }

    #[test]
    fn null_filter_is_the_defaults_hidden_and_one_level() {
        let f = CompiledFilter::new(None).unwrap();
        assert!(!f.matches_event(&file(".name.XyZ123"), now()));
        assert!(f.matches_scan(&file("a"), now()));
        assert!(!f.matches_scan(
            &Candidate {
                depth: 2,
                ..file("a")
            },
            now()
        ));
        assert!(f.descend(0) && !f.descend(1));
        let empty = compile(Filter::default());
        for c in [
            file("a"),
            file(".a"),
            Candidate {
                depth: 3,
                ..file("a")
            },
        ] {
            assert_eq!(f.matches_scan(&c, now()), empty.matches_scan(&c, now()));
            assert_eq!(f.matches_event(&c, now()), empty.matches_event(&c, now()));
        }
    }

    #[test]
    fn bad_regex_is_an_error_naming_the_entry() {
        let bad = |patterns: Vec<String>, excludes: Vec<String>| {
            CompiledFilter::new(Some(&Filter {
                patterns,
                excludes,
                use_regex: true,
                ..Filter::default()
            }))
            .unwrap_err()
        };
        let e = bad(vec![".*".into(), "(unclosed".into()], vec![]);
        assert!(
            e.starts_with("patterns[1]: bad regex \"(unclosed\": "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = bad(vec![], vec!["*.tmp".into()]);
        assert!(e.starts_with("excludes[0]: bad regex \"*.tmp\": "), "{e}");
    }

    #[test]
    fn every_string_is_a_valid_glob() {
        // Including what globset (and so `storgate check`) rejects.
        for p in [
            "[abc", "{a,b", "a\\", "[", "]", "[!", "[]", "[!]", "**", "(", "$^|+.", "\\",
        ] {
            assert!(
                CompiledFilter::new(Some(&Filter {
                    patterns: vec![p.into()],
                    excludes: vec![p.into()],
                    ..Filter::default()
                }))
                .is_ok()
            );
        }
    }

    // ----- globs (fnmatch) -----

    #[test]
    fn glob_matches_the_whole_basename() {
        let f = globs(&["*.jpg"]);
        assert_eq!(
            passing(
                &f,
                &[
                    "a.jpg",
                    ".jpg.x",
                    "a.jpeg",
                    "a.jpg.tmp",
                    "jpg",
                    "x.JPG",
                    "b.jpg"
                ]
            ),
            ["a.jpg", "b.jpg"]
        );
        assert_eq!(passing(&globs(&["jpg"]), &["a.jpg", "jpg"]), ["jpg"]);
    }

    #[test]
    fn glob_is_case_sensitive() {
        let f = globs(&["*.JPG"]);
        assert_eq!(passing(&f, &["a.jpg", "a.JPG", "a.Jpg"]), ["a.JPG"]);
    }

    #[test]
    fn glob_question_mark_is_one_character() {
        let f = globs(&["?.txt"]);
        assert_eq!(
            passing(
                &f,
                &["a.txt", "é.txt", "한.txt", "ab.txt", ".txt", "\n.txt"]
            ),
            ["a.txt", "é.txt", "한.txt", "\n.txt"]
        );
        assert_eq!(
            passing(&globs(&["a??"]), &["a", "ab", "abc", "abcd"]),
            ["abc"]
        );
    }

    #[test]
    fn glob_star_matches_any_run() {
        let f = globs(&["a*z"]);
        assert_eq!(
            passing(&f, &["az", "abz", "a.b.z", "a\nz", "a*z", "za", "azz"]),
            ["az", "abz", "a.b.z", "a\nz", "a*z", "azz"]
        );
        assert_eq!(passing(&globs(&["a***"]), &["a", "abc", "b"]), ["a", "abc"]);
        assert_eq!(passing(&globs(&["*"]), &["", "x", "\n"]), ["", "x", "\n"]);
    }

    #[test]
    fn glob_sets_ranges_and_negation() {
        assert_eq!(
            passing(&globs(&["[ab]*"]), &["apple", "banana", "cherry", "Apple"]),
            ["apple", "banana"]
        );
        assert_eq!(
            passing(
                &globs(&["img[0-9][0-9].png"]),
                &["img07.png", "img7.png", "imgx7.png", "img99.png"]
            ),
            ["img07.png", "img99.png"]
        );
        assert_eq!(
            passing(&globs(&["[!a-c]*"]), &["apple", "dog", "Cat", "b"]),
            ["dog", "Cat"]
        );
        assert_eq!(
            passing(&globs(&["[a-cx]"]), &["b", "x", "y", "-"]),
            ["b", "x"]
        );
    }

    #[test]
    fn glob_caret_does_not_negate() {
        // fnmatch: only `!` negates; `[^a]` is the set {^, a}.
        assert_eq!(passing(&globs(&["[^a]"]), &["^", "a", "b"]), ["^", "a"]);
    }

    #[test]
    fn glob_bracket_edge_cases() {
        // `]` right after `[` or `[!` is a member.
        assert_eq!(passing(&globs(&["[]a]"]), &["]", "a", "b"]), ["]", "a"]);
        assert_eq!(passing(&globs(&["[!]a]"]), &["]", "a", "b"]), ["b"]);
        // No closing bracket: a literal `[` (and the rest is parsed on).
        assert_eq!(passing(&globs(&["[ab"]), &["[ab", "a", "b"]), ["[ab"]);
        assert_eq!(
            passing(&globs(&["x[*"]), &["x[", "x[yz", "xy"]),
            ["x[", "x[yz"]
        );
        assert_eq!(passing(&globs(&["[!"]), &["[!", "a"]), ["[!"]);
        assert_eq!(passing(&globs(&["[[]"]), &["[", "]"]), ["["]);
        // `*` and `?` are literal inside a set.
        assert_eq!(
            passing(&globs(&["a[*?]"]), &["a*", "a?", "ab"]),
            ["a*", "a?"]
        );
    }

    #[test]
    fn glob_hyphens_and_reversed_ranges() {
        assert_eq!(passing(&globs(&["[-a]"]), &["-", "a", "b"]), ["-", "a"]);
        assert_eq!(passing(&globs(&["[a-]"]), &["-", "a", "b"]), ["-", "a"]);
        assert_eq!(passing(&globs(&["[!-a]"]), &["-", "a", "b"]), ["b"]);
        assert_eq!(
            passing(&globs(&["[a-b-d]"]), &["a", "b", "-", "c", "d"]),
            ["a", "b", "-", "d"]
        );
        assert_eq!(
            passing(&globs(&["[--0]"]), &["-", ".", "0", "1"]),
            ["-", ".", "0"]
        );
        // A reversed range is empty: the set never matches…
        assert_eq!(
            passing(&globs(&["x[z-a]"]), &["x", "xa", "xm", "xz", "x-"]),
            Vec::<&str>::new()
        );
        // …its complement matches any one character…
        assert_eq!(
            passing(&globs(&["x[!z-a]"]), &["x", "xa", "x\n", "xab"]),
            ["xa", "x\n"]
        );
        // …and the other members stay.
        assert_eq!(
            passing(&globs(&["[az-ab]"]), &["a", "b", "m", "z"]),
            ["a", "b"]
        );
    }

    #[test]
    fn glob_has_no_brace_expansion() {
        let f = globs(&["*.{jpg,png}"]);
        assert_eq!(
            passing(&f, &["a.jpg", "a.png", "a.{jpg,png}"]),
            ["a.{jpg,png}"]
        );
        // Two patterns do what the braces would in a shell.
        let f = globs(&["*.jpg", "*.png"]);
        assert_eq!(
            passing(&f, &["a.jpg", "a.png", "a.gif"]),
            ["a.jpg", "a.png"]
        );
    }

    #[test]
    fn glob_backslash_is_literal() {
        assert_eq!(
            passing(&globs(&[r"a\*"]), &["a*", r"a\", r"a\b", "ab"]),
            [r"a\", r"a\b"]
        );
        assert_eq!(passing(&globs(&["a[*]"]), &["a*", "ab"]), ["a*"]);
        assert_eq!(passing(&globs(&[r"[\]"]), &[r"\", "]"]), [r"\"]);
    }

    #[test]
    fn glob_regex_metacharacters_are_literal() {
        let f = globs(&["a+b(1)|$^.{2}"]);
        assert_eq!(
            passing(
                &f,
                &["a+b(1)|$^.{2}", "aab(1)|$^.{2}", "ab1", "a+b(1)|$^x{2}"]
            ),
            ["a+b(1)|$^.{2}"]
        );
        assert_eq!(passing(&globs(&["#x&&y~~z"]), &["#x&&y~~z"]), ["#x&&y~~z"]);
        assert_eq!(
            passing(&globs(&["[&~|]"]), &["&", "~", "|", "a"]),
            ["&", "~", "|"]
        );
    }

    #[test]
    fn glob_list_elements_are_not_split_on_commas() {
        let f = globs(&["*.old,*.log.gz"]);
        assert_eq!(
            passing(&f, &["a.old", "a.log.gz", "x.old,y.log.gz"]),
            ["x.old,y.log.gz"]
        );
    }

    #[test]
    fn glob_translation_agrees_with_python_fnmatch() {
        // (pattern, name, fnmatch.fnmatch(name, pattern)) — checked with
        // CPython 3.11.
        let table: &[(&str, &str, bool)] = &[
            ("*", ".hidden", true),
            ("*.tar.gz", "a.tar.gz", true),
            ("*.tar.gz", "a.tar.gz.part", false),
            ("a?c", "a\nc", true),
            ("[z-a]", "m", false),
            ("[!z-a]", "m", true),
            ("[a-b-c]", "-", true),
            ("[a-b-c]", "c", true),
            ("[a-b-c]", "bc", false),
            ("[^a]", "^", true),
            ("[^a]", "b", false),
            ("[]a]", "]", true),
            ("[!]a]", "]", false),
            ("[a", "[a", true),
            ("*.{jpg,png}", "x.jpg", false),
            (r"\*", r"\anything", true),
            ("[--a]", "B", true),
            ("[--a]", "b", false),
            ("[a-]", "-", true),
            ("[!-a]", "-", false),
            ("[a&&b]", "&", true),
            ("a**b", "ab", true),
            ("[[]", "[", true),
            ("[b-a-c]", "-", true),
            ("[b-a-c]", "b", false),
            ("[b-a-c]", "c", true),
            ("é*", "éa", true),
            ("[à-ÿ]", "é", true),
            ("[à-ÿ]", "e", false),
        ];
        for &(p, name, want) in table {
            let f = globs(&[p]);
            assert_eq!(
                f.matches_event(&file(name), now()),
                want,
                "fnmatch({name:?}, {p:?}) via {}",
                fnmatch_to_regex(p)
            );
        }
    }

    #[test]
    fn multiple_patterns_match_any() {
        let f = globs(&["*.old", "*.log.gz", "core"]);
        assert_eq!(
            passing(&f, &["x.old", "x.log.gz", "core", "x.log", "core.1"]),
            ["x.old", "x.log.gz", "core"]
        );
    }

    #[test]
    fn empty_patterns_match_all_names() {
        let f = globs(&[]);
        assert_eq!(
            passing(&f, &["a", "a.b", "{{x}}", "\n", "ünï"]),
            ["a", "a.b", "{{x}}", "\n", "ünï"]
        );
    }

    // ----- excludes -----

    #[test]
    fn an_exclude_match_skips() {
        let f = compile(Filter {
            patterns: vec!["*.jpg".into()],
            excludes: vec!["*_m.jpg".into(), "tmp*".into()],
            ..Filter::default()
        });
        assert_eq!(
            passing(&f, &["a.jpg", "a_m.jpg", "tmp1.jpg", "x.tmp.jpg", "a.png"]),
            ["a.jpg", "x.tmp.jpg"]
        );
    }

    #[test]
    fn excludes_without_patterns_keep_everything_else() {
        let f = compile(Filter {
            excludes: vec!["*.conf".into(), ".git".into(), "*.swp".into()],
            hidden: true,
            ..Filter::default()
        });
        assert_eq!(
            passing(
                &f,
                &["a.conf", ".git", ".a.swp", "a.txt", ".gitignore", "conf"]
            ),
            ["a.txt", ".gitignore", "conf"]
        );
    }

    #[test]
    fn excludes_apply_to_every_kind() {
        let f = compile(Filter {
            excludes: vec!["nginx".into(), "mysql".into()],
            filetype: FileType::Any,
            ..Filter::default()
        });
        for k in kinds() {
            assert!(
                !f.matches_event(&cand(OsStr::new("nginx"), k), now()),
                "{k:?}"
            );
            assert!(
                f.matches_event(&cand(OsStr::new("apache"), k), now()),
                "{k:?}"
            );
        }
    }

    // ----- regexes (use_regex) -----

    #[test]
    fn regex_is_anchored_at_the_start() {
        let f = regexes(&[r"\.jpg"], &[]);
        assert_eq!(passing(&f, &["a.jpg", "x.jpg.y"]), Vec::<&str>::new());
        let f = compile(Filter {
            patterns: vec![r"\.jpg".into()],
            use_regex: true,
            hidden: true,
            ..Filter::default()
        });
        assert_eq!(passing(&f, &[".jpg", ".jpgx", "a.jpg"]), [".jpg", ".jpgx"]);
        let f = regexes(&[r".*\.jpe?g"], &[]);
        assert_eq!(
            passing(&f, &["a.jpg", "b.jpeg", "c.png"]),
            ["a.jpg", "b.jpeg"]
        );
    }

    #[test]
    fn regex_is_not_anchored_at_the_end() {
        let f = regexes(&[r".*\.jpg"], &[]);
        assert_eq!(
            passing(&f, &["a.jpg", "a.jpg.tmp", "a.jpgx"]),
            ["a.jpg", "a.jpg.tmp", "a.jpgx"]
        );
        let f = regexes(&[r".*\.jpg$"], &[]);
        assert_eq!(passing(&f, &["a.jpg", "a.jpg.tmp", "a.jpg\n"]), ["a.jpg"]);
        // A prefix is enough.
        assert_eq!(
            passing(&regexes(&["ab"], &[]), &["ab", "abc", "cab"]),
            ["ab", "abc"]
        );
    }

    #[test]
    fn regex_excludes_are_anchored_the_same_way() {
        let f = regexes(&[], &["tmp", r".*\.bak$"]);
        assert_eq!(
            passing(&f, &["tmp.jpg", "a.tmp", "x.bak", "x.bak.1", "ok"]),
            ["a.tmp", "x.bak.1", "ok"]
        );
    }

    #[test]
    fn regex_syntax_not_glob_syntax() {
        let f = regexes(&["a.c", "[0-9]+$"], &[]);
        assert_eq!(
            passing(&f, &["abc", "a.c", "a.cd", "123", "12a", "x1"]),
            ["abc", "a.c", "a.cd", "123"]
        );
        assert!(
            CompiledFilter::new(Some(&Filter {
                patterns: vec!["*.jpg".into()],
                use_regex: true,
                ..Filter::default()
            }))
            .is_err()
        );
    }

    #[test]
    fn regex_flags_and_alternation() {
        let f = regexes(&[r"(?i).*\.jpe?g$"], &[]);
        assert_eq!(
            passing(&f, &["A.JPG", "b.Jpeg", "c.png"]),
            ["A.JPG", "b.Jpeg"]
        );
        // Alternation inside the pattern: each branch anchored at 0.
        let f = regexes(&["foo|.*bar$"], &[]);
        assert_eq!(
            passing(&f, &["foo1", "xbar", "xfoo", "barx"]),
            ["foo1", "xbar"]
        );
        let f = regexes(&[r"^_[0-9]{2,4}_.*.log$"], &[]);
        assert_eq!(
            passing(&f, &["_123_a.log", "_1_a.log", "x_12_a.log"]),
            ["_123_a.log"]
        );
    }

    #[test]
    fn regex_verbose_comment_and_empty_matches() {
        // A trailing comment would swallow a `)` added around the pattern.
        let f = regexes(&["(?x) img \\d+  # numbered images"], &[]);
        assert_eq!(passing(&f, &["img12.png", "logo.png"]), ["img12.png"]);
        // An empty match at 0 is a match (Python: `re.match("x*", "abc")`).
        assert_eq!(passing(&regexes(&["x*"], &[]), &["abc", ""]), ["abc", ""]);
        assert_eq!(passing(&regexes(&[""], &[]), &["abc"]), ["abc"]);
    }

    #[test]
    fn regex_dot_and_newlines() {
        let f = regexes(&[r".*\.jpg"], &[]);
        assert_eq!(passing(&f, &["a\n.jpg", "a.jpg\nb"]), ["a.jpg\nb"]);
        let f = regexes(&[r"(?s).*\.jpg"], &[]);
        assert_eq!(passing(&f, &["a\n.jpg"]), ["a\n.jpg"]);
        // `.*` as the only pattern matches every name, like Ansible's default.
        assert_eq!(
            passing(&regexes(&[".*"], &[]), &["\n", "a\nb", ""]),
            ["\n", "a\nb", ""]
        );
    }

    // ----- filetype -----

    #[test]
    fn filetype_admits_its_kind() {
        use ItemKind::*;
        let cases = [
            (FileType::File, vec![File]),
            (FileType::Directory, vec![Directory]),
            (FileType::Link, vec![Link]),
            (FileType::Any, vec![File, Directory, Link, Other]),
        ];
        for (ft, want) in cases {
            let f = compile(Filter {
                filetype: ft,
                ..Filter::default()
            });
            let got: Vec<ItemKind> = kinds()
                .into_iter()
                .filter(|&k| f.matches_event(&cand(OsStr::new("x"), k), now()))
                .collect();
            assert_eq!(got, want, "{ft:?}");
        }
    }

    #[test]
    fn patterns_apply_to_directories_and_links() {
        for (ft, kind) in [
            (FileType::Directory, ItemKind::Directory),
            (FileType::Link, ItemKind::Link),
        ] {
            let f = compile(Filter {
                patterns: vec!["2024-*".into()],
                filetype: ft,
                ..Filter::default()
            });
            assert!(f.matches_event(&cand(OsStr::new("2024-01"), kind), now()));
            assert!(!f.matches_event(&cand(OsStr::new("2023-12"), kind), now()));
        }
    }

    // ----- hidden -----

    #[test]
    fn hidden_names_never_match_by_default() {
        let f = compile(Filter {
            patterns: vec![".*".into(), "*".into()],
            filetype: FileType::Any,
            ..Filter::default()
        });
        for k in kinds() {
            for name in [".bashrc", ".a.jpg.XyZ123", ".", ".hidden dir"] {
                assert!(
                    !f.matches_event(&cand(OsStr::new(name), k), now()),
                    "{name} {k:?}"
                );
            }
            assert!(f.matches_event(&cand(OsStr::new("a.b"), k), now()));
        }
    }

    #[test]
    fn hidden_true_admits_dot_names() {
        let f = compile(Filter {
            patterns: vec![".*.swp".into()],
            hidden: true,
            ..Filter::default()
        });
        assert_eq!(passing(&f, &[".a.swp", "a.swp", "x.a.swp"]), [".a.swp"]);
        // Only a leading dot hides; a dot elsewhere (or a leading space) does not.
        let f = compile(Filter::default());
        assert_eq!(
            passing(&f, &["a.", " .a", "..a", "a..b"]),
            ["a.", " .a", "a..b"]
        );
    }

    // ----- age -----

    fn aged(f: &CompiledFilter, age: Duration) -> bool {
        f.matches_event(
            &Candidate {
                mtime: now() - age,
                ..file("x")
            },
            now(),
        )
    }

    fn with_age(text: &str) -> CompiledFilter {
        compile(Filter {
            age: Some(parse_age(text).unwrap()),
            ..Filter::default()
        })
    }

    #[test]
    fn age_at_least() {
        let f = with_age("2d");
        assert!(aged(&f, Duration::from_secs(2 * DAY)));
        assert!(aged(&f, Duration::from_secs(30 * DAY)));
        assert!(!aged(&f, Duration::from_secs(2 * DAY - 1)));
        assert!(!aged(
            &f,
            Duration::from_secs(2 * DAY) - Duration::from_millis(1)
        ));
        assert!(!aged(&f, Duration::ZERO));
        assert!(with_age("1w").matches_event(
            &Candidate {
                mtime: UNIX_EPOCH,
                ..file("x")
            },
            now()
        ));
    }

    #[test]
    fn age_at_most() {
        let f = with_age("-2d");
        assert!(aged(&f, Duration::ZERO));
        assert!(aged(&f, Duration::from_secs(2 * DAY)));
        assert!(!aged(
            &f,
            Duration::from_secs(2 * DAY) + Duration::from_nanos(1)
        ));
        assert!(!aged(&f, Duration::from_secs(2 * DAY + 1)));
        let f = with_age("-90");
        assert!(aged(&f, Duration::from_millis(89_999)));
        assert!(!aged(&f, Duration::from_millis(90_001)));
    }

    #[test]
    fn age_in_the_future_is_negative() {
        let future = Candidate {
            mtime: now() + Duration::from_secs(5),
            ..file("x")
        };
        assert!(with_age("-1m").matches_event(&future, now()));
        assert!(with_age("-0").matches_event(&future, now()));
        assert!(!with_age("1m").matches_event(&future, now()));
        assert!(!with_age("0").matches_event(&future, now()));
        // Exactly now: zero age.
        let present = Candidate {
            mtime: now(),
            ..file("x")
        };
        assert!(with_age("0").matches_event(&present, now()));
        assert!(with_age("-0").matches_event(&present, now()));
        assert!(!with_age("1").matches_event(&present, now()));
    }

    #[test]
    fn age_stamp_picks_the_timestamp() {
        let old = now() - Duration::from_secs(10 * DAY);
        let new = now() - Duration::from_secs(60);
        let c = Candidate {
            mtime: old,
            atime: new,
            ctime: old,
            ..file("x")
        };
        let stamp = |s| {
            compile(Filter {
                age: Some(parse_age("1d").unwrap()),
                age_stamp: s,
                ..Filter::default()
            })
            .matches_event(&c, now())
        };
        assert!(stamp(AgeStamp::Mtime));
        assert!(!stamp(AgeStamp::Atime));
        assert!(stamp(AgeStamp::Ctime));
        let c = Candidate { ctime: new, ..c };
        let f = compile(Filter {
            age: Some(parse_age("1d").unwrap()),
            age_stamp: AgeStamp::Ctime,
            ..Filter::default()
        });
        assert!(!f.matches_event(&c, now()));
    }

    #[test]
    fn age_applies_to_every_kind() {
        let f = compile(Filter {
            age: Some(parse_age("1d").unwrap()),
            filetype: FileType::Any,
            ..Filter::default()
        });
        for k in kinds() {
            let young = cand(OsStr::new("x"), k); // one hour old
            let old = Candidate {
                mtime: now() - Duration::from_secs(2 * DAY),
                ..young
            };
            assert!(!f.matches_event(&young, now()), "{k:?}");
            assert!(f.matches_event(&old, now()), "{k:?}");
        }
    }

    // ----- size -----

    fn sized(f: &CompiledFilter, kind: ItemKind, size: u64) -> bool {
        f.matches_event(
            &Candidate {
                size,
                ..cand(OsStr::new("x"), kind)
            },
            now(),
        )
    }

    fn with_size(text: &str, filetype: FileType) -> CompiledFilter {
        compile(Filter {
            size: Some(parse_size(text).unwrap()),
            filetype,
            ..Filter::default()
        })
    }

    #[test]
    fn size_at_least() {
        let f = with_size("1m", FileType::File);
        assert!(sized(&f, ItemKind::File, 1 << 20));
        assert!(sized(&f, ItemKind::File, u64::MAX));
        assert!(!sized(&f, ItemKind::File, (1 << 20) - 1));
        assert!(!sized(&f, ItemKind::File, 0));
    }

    #[test]
    fn size_at_most() {
        let f = with_size("-1k", FileType::File);
        assert!(sized(&f, ItemKind::File, 0));
        assert!(sized(&f, ItemKind::File, 1024));
        assert!(!sized(&f, ItemKind::File, 1025));
        let zero = with_size("-0", FileType::File);
        assert!(sized(&zero, ItemKind::File, 0) && !sized(&zero, ItemKind::File, 1));
        let any = with_size("0", FileType::File);
        assert!(sized(&any, ItemKind::File, 0) && sized(&any, ItemKind::File, u64::MAX));
    }

    #[test]
    fn size_applies_to_files_only() {
        let big = with_size("1g", FileType::Any);
        let small = with_size("-1", FileType::Any);
        for k in [ItemKind::Directory, ItemKind::Link, ItemKind::Other] {
            assert!(sized(&big, k, 0), "{k:?}");
            assert!(sized(&small, k, 4096), "{k:?}");
        }
        assert!(!sized(&big, ItemKind::File, 0));
        assert!(!sized(&small, ItemKind::File, 4096));
        let dirs = with_size("1t", FileType::Directory);
        assert!(sized(&dirs, ItemKind::Directory, 4096));
        let links = with_size("1t", FileType::Link);
        assert!(sized(&links, ItemKind::Link, 10));
    }

    // ----- depth and recursion -----

    fn at(depth: u32) -> Candidate<'static> {
        Candidate { depth, ..file("x") }
    }

    fn scan_depths(f: &CompiledFilter) -> Vec<u32> {
        (0..=6).filter(|&d| f.matches_scan(&at(d), now())).collect()
    }

    fn descents(f: &CompiledFilter) -> Vec<u32> {
        (0..=6).filter(|&d| f.descend(d)).collect()
    }

    fn tree(recursive: bool, depth: u32) -> CompiledFilter {
        compile(Filter {
            recursive,
            depth,
            ..Filter::default()
        })
    }

    #[test]
    fn not_recursive_scans_one_level() {
        let f = tree(false, 0);
        assert_eq!(scan_depths(&f), [1]);
        assert_eq!(descents(&f), [0]);
    }

    #[test]
    fn depth_is_ignored_when_not_recursive() {
        for depth in [1, 2, 5] {
            let f = tree(false, depth);
            assert_eq!(scan_depths(&f), [1], "depth {depth}");
            assert_eq!(descents(&f), [0], "depth {depth}");
        }
    }

    #[test]
    fn recursive_unlimited() {
        let f = tree(true, 0);
        assert_eq!(scan_depths(&f), [1, 2, 3, 4, 5, 6]);
        assert_eq!(descents(&f), [0, 1, 2, 3, 4, 5, 6]);
        assert!(f.matches_scan(&at(u32::MAX), now()) && f.descend(u32::MAX));
    }

    #[test]
    fn recursive_with_depth_limit() {
        let f = tree(true, 1);
        assert_eq!(scan_depths(&f), [1]);
        assert_eq!(descents(&f), [0]);
        let f = tree(true, 3);
        assert_eq!(scan_depths(&f), [1, 2, 3]);
        assert_eq!(descents(&f), [0, 1, 2]);
        let f = tree(true, u32::MAX);
        assert!(f.matches_scan(&at(u32::MAX), now()) && !f.descend(u32::MAX));
    }

    #[test]
    fn scan_path_itself_never_matches() {
        for f in [tree(false, 0), tree(true, 0), tree(true, 3)] {
            assert!(!f.matches_scan(&at(0), now()));
        }
    }

    #[test]
    fn events_ignore_recursion_and_depth() {
        for f in [tree(false, 0), tree(false, 2), tree(true, 1), tree(true, 3)] {
            for d in [0, 1, 2, 7, u32::MAX] {
                assert!(f.matches_event(&at(d), now()), "depth {d}");
            }
        }
    }

    #[test]
    fn scan_applies_every_other_rule_too() {
        let f = compile(Filter {
            patterns: vec!["*.log".into()],
            size: Some(parse_size("1k").unwrap()),
            recursive: true,
            ..Filter::default()
        });
        let ok = Candidate {
            size: 2048,
            depth: 4,
            ..file("a.log")
        };
        assert!(f.matches_scan(&ok, now()));
        assert!(!f.matches_scan(&Candidate { size: 10, ..ok }, now()));
        assert!(!f.matches_scan(
            &Candidate {
                name: OsStr::new("a.txt"),
                ..ok
            },
            now()
        ));
        assert!(!f.matches_scan(
            &Candidate {
                name: OsStr::new(".a.log"),
                ..ok
            },
            now()
        ));
        assert!(!f.matches_scan(
            &Candidate {
                kind: ItemKind::Directory,
                ..ok
            },
            now()
        ));
    }

    // ----- hostile names -----

    #[test]
    fn names_with_newlines_and_control_characters() {
        let f = globs(&["*.jpg"]);
        assert_eq!(
            passing(&f, &["a\n.jpg", "a.jpg\n", "\r\t\x1b.jpg", "a.jpg\0"]),
            ["a\n.jpg", "\r\t\x1b.jpg"]
        );
        let f = globs(&["a\nb"]);
        assert_eq!(passing(&f, &["a\nb", "ab", "a\n\nb"]), ["a\nb"]);
    }

    #[test]
    fn template_like_names_and_patterns_are_plain_text() {
        let f = globs(&["{{*}}"]);
        assert_eq!(
            passing(&f, &["{{ item.path }}", "{{}}", "{x}", "{% raw %}"]),
            ["{{ item.path }}", "{{}}"]
        );
        let f = globs(&["*.jpg"]);
        assert_eq!(passing(&f, &["{{ 7*7 }}.jpg"]), ["{{ 7*7 }}.jpg"]);
        let f = regexes(&[r"\{\{.*\}\}$"], &[]);
        assert_eq!(passing(&f, &["{{ x }}", "a{{ x }}"]), ["{{ x }}"]);
    }

    #[test]
    fn very_long_names_and_patterns() {
        let long = format!("{}.jpg", "a".repeat(100_000));
        let f = globs(&["*.jpg", "*a*a*a*a*a*a*a*a*a*a*.png"]);
        assert!(f.matches_event(&file(&long), now()));
        let png = format!("{}.gif", "a".repeat(100_000));
        assert!(!f.matches_event(&file(&png), now()));
        let f = regexes(&[r"(a|aa)*\.jpg$", "(?:a*)*b"], &[]);
        assert!(f.matches_event(&file(&long), now()));
        assert!(!f.matches_event(&file(&png), now()));
        let pattern = "?".repeat(4096);
        let f = globs(&[&pattern]);
        assert!(f.matches_event(&file(&"é".repeat(4096)), now()));
        assert!(!f.matches_event(&file(&"é".repeat(4095)), now()));
    }

    #[test]
    fn non_utf8_names_never_panic() {
        let raw = |b: &[u8]| OsString::from_vec(b.to_vec());
        let names = [
            raw(b"\xff.jpg"),
            raw(b"\xff\xfe.jpg"),
            raw(b"caf\xe9.jpg"),
            raw(b"\xe2\x82.jpg"), // a truncated 3-byte sequence: two bytes
            raw(b".\xff.jpg"),
            raw(b"\x80"),
            raw(b"ok.jpg"),
        ];
        let check = |f: &CompiledFilter| -> Vec<usize> {
            (0..names.len())
                .filter(|&i| f.matches_event(&cand(&names[i], ItemKind::File), now()))
                .collect()
        };
        assert_eq!(check(&globs(&["*.jpg"])), [0, 1, 2, 3, 4, 6]);
        // One `?` per undecodable byte.
        assert_eq!(check(&globs(&["?.jpg"])), [0]);
        assert_eq!(check(&globs(&["??.jpg"])), [1, 3, 4, 6]);
        assert_eq!(check(&globs(&["caf?.jpg"])), [2]);
        assert_eq!(check(&globs(&["[!a-z].jpg"])), [0]);
        assert_eq!(check(&regexes(&[r"..\.jpg$"], &[])), [1, 3, 6]);
        assert_eq!(check(&regexes(&[], &[r".*\.jpg"])), [5]);
        let all = compile(Filter {
            hidden: true,
            ..Filter::default()
        });
        assert_eq!(check(&all), [0, 1, 2, 3, 4, 5, 6]);
        // The hidden rule reads the raw first byte.
        assert_eq!(check(&compile(Filter::default())), [0, 1, 2, 3, 5, 6]);
    }

    #[test]
    fn empty_and_odd_names_do_not_panic() {
        let f = compile(Filter {
            patterns: vec!["[!a]".into(), "?*".into()],
            excludes: vec!["[".into()],
            filetype: FileType::Any,
            ..Filter::default()
        });
        for name in ["", "[", "]", "\0", "/", "\u{FFFD}", "\u{10FFFF}"] {
            for k in kinds() {
                let _ = f.matches_event(&cand(OsStr::new(name), k), now());
                let _ = f.matches_scan(&cand(OsStr::new(name), k), now());
            }
        }
        assert_eq!(
            passing(&f, &["", "[", "x", "\u{10FFFF}"]),
            ["x", "\u{10FFFF}"]
        );
    }

    // ----- combinations -----

    #[test]
    fn draft_example_filter() {
        // The draft's example: patterns *.old / *.log.gz, excludes *.conf and
        // .git, files only, recursive, at least 2 days old and 1 MiB.
        let f = compile(Filter {
            patterns: vec!["*.old".into(), "*.log.gz".into()],
            excludes: vec!["*.conf".into(), ".git".into()],
            filetype: FileType::File,
            recursive: true,
            age: Some(parse_age("2d").unwrap()),
            size: Some(parse_size("1m").unwrap()),
            ..Filter::default()
        });
        let good = Candidate {
            size: 5 << 20,
            mtime: now() - Duration::from_secs(3 * DAY),
            depth: 3,
            ..file("syslog.1.log.gz")
        };
        assert!(f.matches_scan(&good, now()) && f.matches_event(&good, now()));
        let variants = [
            Candidate {
                name: OsStr::new("syslog.log"),
                ..good
            },
            Candidate {
                name: OsStr::new(".syslog.old"),
                ..good
            },
            Candidate { size: 1000, ..good },
            Candidate {
                mtime: now() - Duration::from_secs(DAY),
                ..good
            },
            Candidate {
                kind: ItemKind::Directory,
                ..good
            },
            Candidate {
                kind: ItemKind::Link,
                ..good
            },
        ];
        for c in variants {
            assert!(!f.matches_scan(&c, now()), "{c:?}");
        }
        // Recursive without a depth limit: the scan goes all the way down.
        assert!(f.descend(10));
    }

    #[test]
    fn any_kind_with_size_and_pattern() {
        // Ansible's `file_type: any`: patterns and age for all, size for
        // regular files only.
        let f = compile(Filter {
            patterns: vec!["data*".into()],
            filetype: FileType::Any,
            size: Some(parse_size("-10").unwrap()),
            age: Some(parse_age("-1d").unwrap()),
            ..Filter::default()
        });
        let c = |kind, size, name| Candidate {
            size,
            ..cand(OsStr::new(name), kind)
        };
        assert!(f.matches_event(&c(ItemKind::File, 10, "data1"), now()));
        assert!(!f.matches_event(&c(ItemKind::File, 11, "data1"), now()));
        assert!(f.matches_event(&c(ItemKind::Directory, 4096, "data"), now()));
        assert!(f.matches_event(&c(ItemKind::Link, 4096, "data.lnk"), now()));
        assert!(f.matches_event(&c(ItemKind::Other, 0, "data.fifo"), now()));
        assert!(!f.matches_event(&c(ItemKind::Directory, 0, "other"), now()));
        let old = Candidate {
            mtime: now() - Duration::from_secs(2 * DAY),
            ..c(ItemKind::Directory, 0, "data")
        };
        assert!(!f.matches_event(&old, now()));
    }

    #[test]
    fn hidden_excludes_and_regex_together() {
        let f = compile(Filter {
            patterns: vec![r".*\.(jpe?g|png)$".into()],
            excludes: vec![r".*_(m|thumb)\.".into()],
            use_regex: true,
            hidden: false,
            ..Filter::default()
        });
        assert_eq!(
            passing(
                &f,
                &[
                    "a.jpg",
                    "a_m.jpg",
                    "a_thumb.png",
                    ".a.jpg",
                    "a.jpeg",
                    "a.gif",
                    "a_mx.png"
                ]
            ),
            ["a.jpg", "a.jpeg", "a_mx.png"]
        );
    }

    #[test]
    fn compiled_filter_is_reusable_and_cloneable() {
        let f = globs(&["*.jpg"]);
        let g = f.clone();
        for _ in 0..3 {
            assert!(
                f.matches_event(&file("a.jpg"), now()) && g.matches_event(&file("a.jpg"), now())
            );
            assert!(!g.matches_event(&file("a.png"), now()));
        }
    }
}
