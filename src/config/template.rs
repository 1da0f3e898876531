//! Static checks of the minijinja templates a config contains (`savePath`,
//! `onComplete.src.path`, `exec` arguments): syntax with minijinja's own
//! parser, the names a template uses (variables, filters, tests) against
//! what the renderer provides, plus the shape checks that can be done
//! without rendering (absolute path, literal `..` components, over-long
//! literal components, `#N` capture references, the literal directory prefix
//! that decides whether a path can reach a mount).
//!
//! # Names
//!
//! Every template is rendered with the variables [`TEMPLATE_VARIABLES`]
//! (`item` with the attributes [`ITEM_FIELDS`] of SPEC §5.2, and
//! `source_dir`), minijinja's global functions (`range`, `dict`, …), and the
//! filters [`STORGATE_FILTERS`] next to minijinja's built-in ones. The lists
//! live here, below the workflow module, so that the checker and the renderer
//! share them: the renderer registers exactly [`STORGATE_FILTERS`] and its
//! tests assert that its item value has exactly [`ITEM_FIELDS`]. The names a
//! template uses come from minijinja's own parser
//! (`Template::undeclared_variables(true)`: `item.nmae` as written). Filter
//! and test names are found with the small tokenizer below (minijinja has no
//! API listing them); whether minijinja has a built-in one of that name is
//! asked of minijinja itself, so the answer follows its Cargo features.
//!
//! # Subscripted filter results
//!
//! The spec's templates subscript a filter's result directly
//! (`item.path | basename | rsplit('.', 1)[0]`, Nunjucks style), which
//! minijinja (like Jinja2) does not parse. [`prepare`] rewrites such
//! expressions to `(item.path | basename | rsplit('.', 1))[0]`; the renderer
//! must compile `prepare(template)` too, exactly as [`check_syntax`] does.
//!
//! Why a tokenizer of our own, next to minijinja's parser: the rewrite must
//! happen on the source text *before* minijinja parses it (minijinja rejects
//! the unrewritten form), and minijinja exposes neither its lexer nor a way to
//! hook its parser.

use minijinja::Environment;

/// A template minijinja cannot compile. `Display` is the message
/// `storgate check` prints: `bad template: <kind>: <detail>[ (line N)]`.
#[derive(Debug, thiserror::Error)]
#[error("bad template: {what}")]
pub struct TemplateSyntaxError {
    what: String,
    #[source]
    source: minijinja::Error,
}

/// Compiles `prepare(src)` and returns minijinja's syntax error, if any.
pub(crate) fn check_syntax(src: &str) -> Result<(), TemplateSyntaxError> {
    let env = Environment::new();
    let prepared = prepare(src);
    match env.template_from_str(&prepared) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut what = match e.detail() {
                Some(d) => format!("{}: {d}", e.kind()),
                None => e.kind().to_string(),
            };
            if let Some(l) = e.line()
                && src.contains('\n')
            {
                what.push_str(&format!(" (line {l})"));
            }
            Err(TemplateSyntaxError { what, source: e })
        }
    }
}

/// The filters storgate adds to minijinja's (SPEC §5.1). The renderer
/// registers exactly these.
pub const STORGATE_FILTERS: [&str; 5] = ["basename", "dirname", "relpath", "rsplit", "splitext"];

/// The top-level variables every template is rendered with (SPEC §5.1).
pub const TEMPLATE_VARIABLES: [&str; 2] = ["item", "source_dir"];

/// The attributes of `item` (SPEC §5.2). All are strings or numbers, which
/// have no attributes of their own.
pub const ITEM_FIELDS: [&str; 13] = [
    "path", "filename", "dirname", "state", "size", "owner", "group", "mode", "mtime", "atime",
    "ctime", "inode", "hits",
];

/// Whether minijinja (as built here) has a built-in filter `name`. Asked by
/// applying it to nothing: an unknown filter is its own error kind, a known
/// one only complains about its missing argument.
fn builtin_filter(env: &Environment, name: &str) -> bool {
    !matches!(
        env.empty_state().apply_filter(name, &[]),
        Err(e) if e.kind() == minijinja::ErrorKind::UnknownFilter
    )
}

/// Whether minijinja has a test `name` (`x is odd`); asked as for filters.
fn builtin_test(env: &Environment, name: &str) -> bool {
    !matches!(
        env.empty_state().perform_test(name, &[]),
        Err(e) if e.kind() == minijinja::ErrorKind::UnknownTest
    )
}

/// ` (did you mean `x`?)` for the closest of `known`, if it is close.
fn suggestion<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| (super::raw::edit_distance(name, k), k))
        .min();
    match best {
        Some((d, k)) if d <= 2 && d < name.len() => format!(" (did you mean `{k}`?)"),
        _ => String::new(),
    }
}

/// The problems with the names a template uses: unknown variables, `item`
/// attributes, filters and tests. A template with a syntax error gives none
/// here ([`check_syntax`] reports it). Messages are sorted for stable output.
pub(crate) fn check_names(src: &str) -> Vec<String> {
    let env = Environment::new();
    let prepared = prepare(src);
    let Ok(t) = env.template_from_str(&prepared) else {
        return Vec::new();
    };
    let globals: Vec<&str> = env.globals().map(|(n, _)| n).collect();
    let mut roots: Vec<&str> = TEMPLATE_VARIABLES.to_vec();
    roots.extend(&globals);
    let mut out = Vec::new();
    let mut used: Vec<String> = t.undeclared_variables(true).into_iter().collect();
    used.sort();
    for name in used {
        let mut parts = name.split('.');
        let root = parts.next().unwrap_or_default();
        let attr = parts.next();
        let deeper = parts.next();
        if !roots.contains(&root) {
            out.push(format!(
                "unknown variable `{root}`{} (templates get {})",
                suggestion(root, TEMPLATE_VARIABLES),
                TEMPLATE_VARIABLES.join(" and ")
            ));
            continue;
        }
        if globals.contains(&root) {
            continue;
        }
        match (root, attr, deeper) {
            ("item", Some(a), _) if !ITEM_FIELDS.contains(&a) => out.push(format!(
                "unknown variable `item.{a}`{} (item has {})",
                suggestion(a, ITEM_FIELDS),
                ITEM_FIELDS.join(", ")
            )),
            ("item", Some(a), Some(d)) => out.push(format!(
                "unknown variable `item.{a}.{d}` (item.{a} is a string or number, without attributes)"
            )),
            ("source_dir", Some(a), _) => out.push(format!(
                "unknown variable `source_dir.{a}` (source_dir is a string, without attributes)"
            )),
            _ => {}
        }
    }
    let mut filters = Vec::new();
    let mut tests = Vec::new();
    for body in code_blocks(src) {
        let t = tokens(body);
        let word = |k: usize| match t.get(k) {
            Some((Tok::Word, a, b)) => Some(&body[*a..*b]),
            _ => None,
        };
        let first = t
            .iter()
            .position(|x| !matches!(x.0, Tok::Punct(b'-' | b'+')))
            .unwrap_or(0);
        for k in 0..t.len() {
            let after_dot = k > 0 && t[k - 1].0 == Tok::Punct(b'.');
            if t[k].0 == Tok::Punct(b'|') {
                filters.extend(word(k + 1));
            } else if k == first && word(k) == Some("filter") {
                // `{% filter name %}…{% endfilter %}`.
                filters.extend(word(k + 1));
            } else if word(k) == Some("is") && !after_dot {
                let n = if word(k + 1) == Some("not") {
                    k + 2
                } else {
                    k + 1
                };
                tests.extend(word(n));
            }
        }
    }
    filters.sort_unstable();
    filters.dedup();
    for f in filters {
        if !STORGATE_FILTERS.contains(&f) && !builtin_filter(&env, f) {
            out.push(format!(
                "unknown filter `{f}`{} (storgate adds {} to minijinja's built-in filters)",
                suggestion(f, STORGATE_FILTERS),
                STORGATE_FILTERS.join(", ")
            ));
        }
    }
    tests.sort_unstable();
    tests.dedup();
    for name in tests {
        if !builtin_test(&env, name) {
            out.push(format!("unknown test `{name}` (after `is`)"));
        }
    }
    out
}

/// The bodies of the `{{ … }}` and `{% … %}` blocks of a template, as
/// minijinja's lexer delimits them; `{# … #}` comments and the content of
/// `{% raw %}` are text, not code.
fn code_blocks(src: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = src;
    loop {
        let open = rest
            .find("{{")
            .into_iter()
            .chain(rest.find("{%"))
            .chain(rest.find("{#"))
            .min();
        let Some(open) = open else {
            return out;
        };
        let kind = rest.as_bytes()[open + 1];
        let body = &rest[open + 2..];
        let end = match kind {
            b'#' => body.find("#}"),
            b'{' => block_end(body, "}}"),
            _ => block_end(body, "%}"),
        };
        let Some(end) = end else {
            return out;
        };
        let code = &body[..end];
        rest = &body[end + 2..];
        if kind == b'%' && tag_name(code) == "raw" {
            // Skip to the end of the first `{% endraw %}`.
            loop {
                let Some(p) = rest.find("{%") else {
                    return out;
                };
                let tail = &rest[p + 2..];
                let Some(e) = tail.find("%}") else {
                    return out;
                };
                rest = &tail[e + 2..];
                if tag_name(&tail[..e]) == "endraw" {
                    break;
                }
            }
        } else if kind != b'#' {
            out.push(code);
        }
    }
}

/// The body of a `{% … %}` tag without its whitespace-control marks.
fn tag_name(code: &str) -> &str {
    code.trim_matches(|c: char| c == '-' || c == '+' || c.is_ascii_whitespace())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// An identifier or a number.
    Word,
    Str,
    Punct(u8),
}

/// A rough Jinja expression tokenizer: enough to find brackets, pipes and
/// names while skipping string literals. Spans are byte ranges of `e`.
fn tokens(e: &str) -> Vec<(Tok, usize, usize)> {
    let b = e.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            out.push((Tok::Str, start, i));
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            out.push((Tok::Word, start, i));
        } else {
            out.push((Tok::Punct(c), i, i + 1));
            i += 1;
        }
    }
    out
}

/// Index of the bracket opening the group that closes at `close`.
fn matching_open(t: &[(Tok, usize, usize)], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    for k in (0..=close).rev() {
        match t[k].0 {
            Tok::Punct(b')' | b']' | b'}') => depth += 1,
            Tok::Punct(b'(' | b'[' | b'{') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// When token `k` ends a filter application (`| name` or `| name(...)`),
/// the index of its `|`.
fn filter_pipe_ending_at(t: &[(Tok, usize, usize)], k: usize) -> Option<usize> {
    let name = match t[k].0 {
        Tok::Punct(b')') => matching_open(t, k)?.checked_sub(1)?,
        Tok::Word => k,
        _ => return None,
    };
    let pipe = name.checked_sub(1)?;
    (t[name].0 == Tok::Word && t[pipe].0 == Tok::Punct(b'|')).then_some(pipe)
}

/// The index of the first token of the operand a filter chain applies to,
/// given the index of one of the chain's `|`.
fn chain_start(t: &[(Tok, usize, usize)], pipe: usize) -> Option<usize> {
    let mut k = pipe.checked_sub(1)?;
    loop {
        if let Some(p) = filter_pipe_ending_at(t, k) {
            k = p.checked_sub(1)?;
            continue;
        }
        // A postfix expression, read backwards: primary (`.name` | `[…]` | `(…)`)*.
        let start = match t[k].0 {
            Tok::Punct(b')' | b']' | b'}') => matching_open(t, k)?,
            Tok::Word | Tok::Str => k,
            _ => return None,
        };
        match start.checked_sub(1).map(|p| t[p].0) {
            Some(Tok::Punct(b'.')) => k = start.checked_sub(2)?,
            Some(Tok::Word | Tok::Punct(b')' | b']'))
                if t[start].0 == Tok::Punct(b'(') || t[start].0 == Tok::Punct(b'[') =>
            {
                k = start - 1;
            }
            _ => return Some(start),
        }
    }
}

/// Rewrites one expression until no filter result is subscripted directly.
fn prepare_expr(e: &str) -> String {
    let mut e = e.to_string();
    // Each round removes one such subscript; the bound only guards against
    // a mistake looping forever.
    for _ in 0..64 {
        let t = tokens(&e);
        let found = (1..t.len()).find_map(|i| {
            if t[i].0 != Tok::Punct(b'[') {
                return None;
            }
            let pipe = filter_pipe_ending_at(&t, i - 1)?;
            Some((chain_start(&t, pipe)?, i))
        });
        let Some((start, bracket)) = found else {
            break;
        };
        let (s, b) = (t[start].1, t[bracket].1);
        e = format!("{}({}){}", &e[..s], &e[s..b], &e[b..]);
    }
    e
}

/// Rewrites `expr | filter(args)[i]` to `(expr | filter(args))[i]` inside
/// every `{{ … }}` and `{% … %}` of a template, leaving all else untouched.
pub fn prepare(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 8);
    let mut rest = src;
    loop {
        let open = rest
            .find("{{")
            .into_iter()
            .chain(rest.find("{%"))
            .chain(rest.find("{#"))
            .min();
        let Some(open) = open else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..open + 2]);
        let kind = rest.as_bytes()[open + 1];
        let body = &rest[open + 2..];
        let close = if kind == b'{' {
            "}}"
        } else if kind == b'%' {
            "%}"
        } else {
            "#}"
        };
        let end = if kind == b'#' {
            body.find(close)
        } else {
            block_end(body, close)
        };
        let Some(end) = end else {
            out.push_str(body);
            return out;
        };
        if kind == b'#' {
            out.push_str(&body[..end]);
        } else {
            out.push_str(&prepare_expr(&body[..end]));
        }
        out.push_str(close);
        rest = &body[end + 2..];
    }
}

/// Offset of `close` in `body`, outside string literals.
fn block_end(body: &str, close: &str) -> Option<usize> {
    let b = body.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'\'' {
                    quote = Some(b[i]);
                } else if body[i..].starts_with(close) {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Byte offset where the first dynamic part starts: `{{`, `{%`, `{#`, or a
/// `#N` capture reference; `None` when the whole template is literal text.
fn first_dynamic(src: &str) -> Option<usize> {
    let b = src.as_bytes();
    (0..b.len()).find(|&i| {
        (b[i] == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%' | b'#')))
            || (b[i] == b'#' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
    })
}

/// The template with every dynamic part replaced by a NUL byte, so that path
/// components can be inspected literally.
fn literal_skeleton(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while !rest.is_empty() {
        let Some(start) = first_dynamic(rest) else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..start]);
        out.push('\0');
        let tail = &rest[start..];
        let end = if let Some(digits) = tail.strip_prefix('#') {
            1 + digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len())
        } else {
            let close = match tail.as_bytes().get(1) {
                Some(b'{') => "}}",
                Some(b'%') => "%}",
                _ => "#}",
            };
            match tail[2..].find(close) {
                Some(p) => p + 4,
                None => tail.len(),
            }
        };
        rest = &tail[end.min(tail.len())..];
    }
    out
}

/// Whether a literal path component of the template is `..`.
pub(crate) fn has_literal_dotdot(src: &str) -> bool {
    literal_skeleton(src).split('/').any(|c| c == "..")
}

/// The length of the first literal run of text longer than `max` bytes
/// inside one path component of the template: whatever the dynamic parts
/// render, that component is longer still (no file name can be).
pub(crate) fn long_literal_component(src: &str, max: usize) -> Option<usize> {
    literal_skeleton(src)
        .split(['/', '\0'])
        .map(str::len)
        .find(|&n| n > max)
}

/// Whether the rendered result can be an absolute path: the template starts
/// with `/` or with a dynamic part (whose value is only known at run time).
pub(crate) fn can_be_absolute(src: &str) -> bool {
    src.starts_with('/') || first_dynamic(src) == Some(0)
}

/// The literal part before anything dynamic, and whether the whole template
/// is literal.
pub(crate) fn literal_prefix(src: &str) -> (&str, bool) {
    match first_dynamic(src) {
        Some(i) => (&src[..i], false),
        None => (src, true),
    }
}

/// The capture group numbers referenced as `#N`.
pub(crate) fn group_refs(src: &str) -> Vec<usize> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'#' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            out.push(src[start..end].parse().unwrap_or(usize::MAX));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(check_syntax("/newimg/{{ item.path }}").is_ok());
        assert!(
            check_syntax(
                "/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}"
            )
            .is_ok()
        );
        assert!(check_syntax("/a/{% if item.size > 10 %}big{% else %}small{% endif %}").is_ok());
        let e = check_syntax("/newimg/{{ item.path }")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad template: syntax error"), "{e}");
        assert!(check_syntax("/a/{% if x %}").is_err());
        assert!(check_syntax("{{ }}").is_err());
    }

    #[test]
    fn prepare_wraps_subscripted_filters() {
        assert_eq!(prepare("/a/{{ x }}"), "/a/{{ x }}");
        assert_eq!(
            prepare("{{ item.path | basename | rsplit('.', 1)[0] }}_m"),
            "{{ (item.path | basename | rsplit('.', 1))[0] }}_m"
        );
        assert_eq!(prepare("{{ a | f[-1] | g }}"), "{{ (a | f)[-1] | g }}");
        assert_eq!(
            prepare("{{ x ~ a.b[1] | f(')[')[0] }}"),
            "{{ x ~ (a.b[1] | f(')['))[0] }}"
        );
        assert_eq!(prepare("{{ g(a | f(1)[0]) }}"), "{{ g((a | f(1))[0]) }}");
        assert_eq!(prepare("{{ range(3)[0] }}"), "{{ range(3)[0] }}");
        assert_eq!(prepare("{# a | f[0] #}"), "{# a | f[0] #}");
        assert_eq!(
            prepare("{% set y = a | f(1)[0] %}"),
            "{% set y = (a | f(1))[0] %}"
        );
        assert_eq!(prepare("{{ a | f[0] }"), "{{ a | f[0] }");
        assert_eq!(prepare("{{ '}}' | f[0] }}"), "{{ ('}}' | f)[0] }}");
    }

    #[test]
    fn spec_example_renders() {
        let src = "/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}";
        let prepared = prepare(src);
        let mut env = Environment::new();
        env.add_filter("basename", |s: String| {
            s.rsplit('/').next().unwrap_or("").to_string()
        });
        env.add_filter("dirname", |s: String| match s.rfind('/') {
            Some(i) => s[..i].to_string(),
            None => String::new(),
        });
        env.add_filter("relpath", |s: String, base: String| {
            s.strip_prefix(&base)
                .unwrap_or(&s)
                .trim_start_matches('/')
                .to_string()
        });
        env.add_filter("rsplit", |s: String, sep: String, n: usize| {
            let mut v: Vec<String> = s.rsplitn(n + 1, sep.as_str()).map(String::from).collect();
            v.reverse();
            v
        });
        let t = env.template_from_str(&prepared).expect("compiles");
        let out = t
            .render(minijinja::context! { item => minijinja::context! { path => "/up/dir/sample.jpg" }, source_dir => "/up" })
            .expect("renders");
        assert_eq!(out, "/dir/sample_m.jpg");
    }

    #[test]
    fn names() {
        let ok = [
            "/a/{{ item.path }}/{{ item.filename | upper }}-{{ source_dir | basename }}",
            "/a/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | splitext | last }}",
            "/a/{% for p in item.path | relpath(source_dir) | dirname | split('/') %}{{ loop.index }}{{ p }}{% endfor %}",
            "/a/{% set n = namespace(x=1) %}{{ n.x }}{{ range(3) | join(',') }}{{ dict(a=1).a }}",
            "/a/{% if item.size is not odd and item.mode is string %}{{ item.hits }}{% endif %}",
            "/a/{%- filter lower -%}X{%- endfilter -%}",
            "/a/{% raw %}{{ item.nmae | basenme }}{% endraw %}{# {{ x | y }} #}",
            "/a/{{ 'a | basenme' }}{{ item['path'] }}",
            "/a/#1/{{ item.inode }}{{ item.ctime }}{{ item.atime }}{{ item.mtime }}{{ item.owner }}{{ item.group }}{{ item.state }}{{ item.dirname }}",
        ];
        for t in ok {
            assert_eq!(check_names(t), Vec::<String>::new(), "{t}");
        }
        let bad: [(&str, &[&str]); 7] = [
            (
                "/a/{{ item.nmae }}",
                &[
                    "unknown variable `item.nmae` (item has path, filename, dirname, state, size, owner, group, mode, mtime, atime, ctime, inode, hits)",
                ],
            ),
            (
                "/a/{{ item.path | basenme }}",
                &[
                    "unknown filter `basenme` (did you mean `basename`?) (storgate adds basename, dirname, relpath, rsplit, splitext to minijinja's built-in filters)",
                ],
            ),
            (
                "/a/{{ itme.path }}",
                &[
                    "unknown variable `itme` (did you mean `item`?) (templates get item and source_dir)",
                ],
            ),
            (
                "/a/{{ item.path.upper() }}",
                &[
                    "unknown variable `item.path.upper` (item.path is a string or number, without attributes)",
                ],
            ),
            (
                "/a/{{ source_dir.x }}",
                &["unknown variable `source_dir.x` (source_dir is a string, without attributes)"],
            ),
            (
                "/a/{% if item.size is od %}x{% endif %}",
                &["unknown test `od` (after `is`)"],
            ),
            (
                "/a/{% filter shout %}x{% endfilter %}{{ x }}",
                &[
                    "unknown variable `x` (templates get item and source_dir)",
                    "unknown filter `shout` (storgate adds basename, dirname, relpath, rsplit, splitext to minijinja's built-in filters)",
                ],
            ),
        ];
        for (t, want) in bad {
            assert_eq!(check_names(t), want.to_vec(), "{t}");
        }
        // A syntax error is check_syntax's to report.
        assert!(check_names("/a/{{ item.nmae ").is_empty());
    }

    #[test]
    fn long_literal_components() {
        let long = "x".repeat(256);
        assert_eq!(
            long_literal_component(&format!("/a/{long}/b"), 255),
            Some(256)
        );
        assert_eq!(
            long_literal_component(&format!("/a/{{{{ item.filename }}}}{long}"), 255),
            Some(256)
        );
        assert_eq!(
            long_literal_component(&format!("/a/{}", "x".repeat(255)), 255),
            None
        );
        // Long text inside an expression is not a literal component.
        assert_eq!(
            long_literal_component(&format!("/a/{{{{ '{long}' | basename }}}}"), 255),
            None
        );
    }

    #[test]
    fn shapes() {
        assert!(can_be_absolute("/a/{{ x }}"));
        assert!(can_be_absolute("{{ item.path }}"));
        assert!(can_be_absolute("#1/x"));
        assert!(!can_be_absolute("a/{{ x }}"));
        assert!(!can_be_absolute(""));
        assert!(has_literal_dotdot("/a/../{{ x }}"));
        assert!(has_literal_dotdot("/a/{{ x }}/.."));
        assert!(has_literal_dotdot("/a/#1/../b"));
        assert!(!has_literal_dotdot("/a/{{ '..' }}/b"));
        assert!(!has_literal_dotdot("/a/..{{ x }}"));
        assert!(!has_literal_dotdot("/a/...b"));
        assert_eq!(literal_prefix("/newimg/{{ x }}"), ("/newimg/", false));
        assert_eq!(literal_prefix("/newimg/#2"), ("/newimg/", false));
        assert_eq!(literal_prefix("/a/b"), ("/a/b", true));
        assert_eq!(group_refs("/newimg/#2/#10-#x"), vec![2, 10]);
        assert!(group_refs("/a/{{ b }}").is_empty());
    }
}
