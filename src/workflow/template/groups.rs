//! `#N` capture references (SPEC §5.1): replaced by `pathPattern` groups
//! before rendering, so that the captured text is printed as data (see the
//! module docs of `workflow::template`).
//!
//! This walks the template the way minijinja's lexer does (`{{ }}`, `{% %}`,
//! `{# #}`, string literals, `{% raw %}`) because `#N` is not Jinja: it must
//! be rewritten in the source text before minijinja parses it, and
//! minijinja's public API offers no token stream to rewrite (its lexer is
//! internal).

use super::GROUPS_VAR;

/// The `#N` reference starting at byte `i`, if any: its digits and end.
pub(super) fn group_ref(src: &str, i: usize) -> Option<(&str, usize)> {
    let b = src.as_bytes();
    if b[i] != b'#' || !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    Some((&src[i + 1..end], end))
}

/// A `#N` naming a capture group the pattern does not have: the digits as
/// written.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MissingGroup(pub String);

/// The capture for `digits`, or the digits back as the error.
pub(super) fn lookup<'g>(
    groups: &'g [String],
    digits: &str,
) -> Result<(usize, &'g str), MissingGroup> {
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| groups.get(n).map(|g| (n, g.as_str())))
        .ok_or_else(|| MissingGroup(digits.to_string()))
}

/// minijinja's lexer's `skip_basic_tag`: when `s` (the text after `{%`) is the
/// tag `name` (`{%- name -%}` and `+` forms included), the length up to and
/// including its `%}`.
pub(super) fn basic_tag(s: &str, name: &str) -> Option<usize> {
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
pub(super) fn block_end(src: &str, from: usize, close: &str) -> usize {
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
pub(super) fn string_end(b: &[u8], start: usize, q: u8) -> usize {
    let mut k = start + 1;
    while k < b.len() && b[k] != q {
        k += if b[k] == b'\\' { 2 } else { 1 };
    }
    (k + 1).min(b.len())
}

/// Escapes `s` for a minijinja string literal (either quote), keeping line
/// breaks out of the source so that error line numbers stay right.
pub(super) fn escape_literal(s: &str) -> String {
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
pub(super) fn substitute_groups(src: &str, groups: &[String]) -> Result<String, MissingGroup> {
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
pub(super) fn raw_end(src: &str, from: usize) -> (usize, usize) {
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
