//! Name patterns of filters (SPEC §4.3), compiled by one function,
//! [`compile`], for `storgate check` and for the runtime filter alike: a
//! pattern check accepts is matched at runtime exactly as compiled here, and
//! one check refuses cannot reach the runtime by another road.
//!
//! Globs follow Python's `fnmatch.fnmatch` (what Ansible's `find` runs; the
//! rules are listed in the `filter` module docs), translated to a `regex`
//! anchored at both ends. Not `globset`, although SPEC §10 names it: globset
//! cannot be configured to these rules — its `?` and sets match one *byte*
//! (its regexes are `(?-u)`), so `?` never matches `é`; `{a,b}` is always
//! alternation; `\` escapes; `[^a]` negates. Validating with globset and
//! matching with fnmatch (as storgate once did) let a pattern pass `check`
//! and then match otherwise; one compiler rules that out.
//!
//! fnmatch itself accepts every string. Two shapes are refused all the same,
//! because whoever wrote them almost surely meant something else than the
//! literal text fnmatch would match (and `storgate check` always refused
//! them): a `[` that never closes, and unbalanced braces (`{a,b` or `a}`).
//! Balanced braces are literal text (there is no brace expansion).
//!
//! Regexes use the `regex` crate's syntax with Python `re.match` anchoring
//! (the match starts at the first character, need not reach the end).

use std::fmt::Write as _;

use regex::Regex;

use super::ConfigError;

/// One compiled name pattern. Cheap to clone (the regex is shared).
#[derive(Debug, Clone)]
pub enum Pattern {
    /// An fnmatch glob translated to a regex anchored at both ends.
    Glob(Regex),
    /// A user regex with `re.match` semantics: compiled as written (wrapping
    /// it in `^(?:…)` would break a trailing `(?x)` comment) and accepted
    /// only when the leftmost match starts at 0 — there is a match at 0
    /// exactly when the leftmost match starts there.
    Regex(Regex),
}

/// Compiles one pattern of a filter's `patterns` or `excludes` list. The
/// error is the message `storgate check` prints after the entry's path.
pub fn compile(pattern: &str, use_regex: bool) -> Result<Pattern, ConfigError> {
    if use_regex {
        return Regex::new(pattern)
            .map(Pattern::Regex)
            .map_err(|e| ConfigError::value(regex_error(pattern, &e)));
    }
    if let Some(problem) = glob_problem(pattern) {
        return Err(ConfigError::value(format!(
            "bad glob {pattern:?}: {problem}"
        )));
    }
    Regex::new(&fnmatch_to_regex(pattern))
        .map(Pattern::Glob)
        .map_err(|e| {
            ConfigError::value(format!(
                "glob {pattern:?} cannot be compiled: {}",
                one_line(&e)
            ))
        })
}

impl Pattern {
    /// Whether `name` (a basename, as text: see the `filter` docs for
    /// names that are not UTF-8) matches.
    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Pattern::Glob(re) => re.is_match(name),
            Pattern::Regex(re) => re.find(name).is_some_and(|m| m.start() == 0),
        }
    }
}

/// `bad regex "…": reason`, the reason being one line of the regex error.
pub(crate) fn regex_error(pattern: &str, e: &regex::Error) -> String {
    format!("bad regex {pattern:?}: {}", one_line(e))
}

/// Why a glob is refused (see the module docs), in the words `storgate
/// check` has always used for these shapes.
fn glob_problem(pat: &str) -> Option<&'static str> {
    let chars: Vec<char> = pat.chars().collect();
    let mut open_braces = 0usize;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => match set_end(&chars, i + 1) {
                None => return Some("unclosed character class; missing ']'"),
                Some(j) => i = j,
            },
            '{' => open_braces += 1,
            '}' if open_braces == 0 => {
                return Some(
                    "unopened alternate group; missing '{' (maybe escape '}' with '[}]'?)",
                );
            }
            '}' => open_braces -= 1,
            _ => {}
        }
        i += 1;
    }
    (open_braces > 0)
        .then_some("unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)")
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
/// The fewest characters a name matching glob `pat` has: each character,
/// `?` and `[set]` is one, `*` none. Names are at most 255 bytes, hence at
/// most 255 characters as the patterns see them (each byte that is not UTF-8
/// is one character), so a glob needing more can never match.
pub(crate) fn glob_min_chars(pat: &str) -> usize {
    let chars: Vec<char> = pat.chars().collect();
    let mut n = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {}
            '[' => {
                if let Some(j) = set_end(&chars, i + 1) {
                    i = j;
                }
                n += 1;
            }
            _ => n += 1,
        }
        i += 1;
    }
    n
}

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
    use super::*;

    #[test]
    fn glob_minimum_length() {
        assert_eq!(glob_min_chars("*.jpg"), 4);
        assert_eq!(glob_min_chars("a?[bc]*[!x]"), 4);
        assert_eq!(glob_min_chars("[]]"), 1);
        assert_eq!(glob_min_chars("[abc"), 4);
        assert_eq!(glob_min_chars("é*"), 1);
        assert_eq!(glob_min_chars(""), 0);
    }

    fn glob(p: &str) -> Result<Pattern, String> {
        compile(p, false).map_err(|e| e.to_string())
    }

    #[test]
    fn refused_globs() {
        assert!(
            glob("[ab")
                .unwrap_err()
                .ends_with("unclosed character class; missing ']'")
        );
        assert!(
            glob("a{b")
                .unwrap_err()
                .contains("unclosed alternate group")
        );
        assert!(
            glob("a}b")
                .unwrap_err()
                .contains("unopened alternate group")
        );
        // Braces and brackets inside a set are members, not syntax.
        for p in ["[{]", "[}]", "[[]", "[]]", "x{[}]}", "{a,b}"] {
            assert!(glob(p).is_ok(), "{p:?}");
        }
    }

    #[test]
    fn globs_match_whole_names_by_character() {
        let p = glob("?.{a}").expect("valid");
        assert!(p.is_match("é.{a}") && !p.is_match("é.a") && !p.is_match("ab.{a}"));
    }

    #[test]
    fn regexes_anchor_at_the_start_only() {
        let p = compile(r"a\.", true).expect("valid");
        assert!(p.is_match("a.jpg") && !p.is_match("ba.jpg"));
        let e = compile("(x", true).unwrap_err().to_string();
        assert!(
            e.starts_with("bad regex \"(x\": ") && !e.contains('\n'),
            "{e}"
        );
    }
}
