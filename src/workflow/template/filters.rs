//! The filters storgate adds to minijinja, with Python `posixpath` /
//! `str.rsplit` semantics. Their names are `config::template`'s
//! `STORGATE_FILTERS`, the list `storgate check` knows (tested below).

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind};

/// Adds storgate's filters to `env`; returns the names added.
pub(super) fn register(env: &mut Environment<'static>) -> Vec<&'static str> {
    let mut added = Vec::new();
    let mut name = |n: &'static str| {
        added.push(n);
        n
    };
    env.add_filter(name("basename"), |p: &str| basename(p).to_string());
    env.add_filter(name("dirname"), |p: &str| dirname(p).to_string());
    env.add_filter(name("relpath"), |p: &str, base: &str| relpath(p, base));
    env.add_filter(name("rsplit"), rsplit_filter);
    env.add_filter(name("splitext"), |p: &str| {
        let (root, ext) = splitext(p);
        vec![root.to_string(), ext.to_string()]
    });
    added
}

/// The pieces `rsplit` returns.
type Parts = Vec<String>;

/// `os.path.basename`: the text after the last `/` (`/a/b/` → ``, `/` → ``).
pub(super) fn basename(p: &str) -> &str {
    &p[p.rfind('/').map_or(0, |i| i + 1)..]
}

/// `os.path.dirname`: the text before the last `/`, trailing slashes removed
/// unless it is all slashes (`/a/b` → `/a`, `/a` → `/`, `a` → ``,
/// `/a/b/` → `/a/b`, `//a` → `//`).
pub(super) fn dirname(p: &str) -> &str {
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
pub(super) fn abs_components(p: &str) -> Vec<&str> {
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
pub(super) fn relpath(p: &str, base: &str) -> Result<String, Error> {
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
pub(super) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.rsplit(sep, maxsplit)`: from the right, at most `maxsplit` splits
/// (`None` = unlimited); `sep = None` splits on runs of whitespace and drops
/// empty strings, like Python. An empty separator is an error.
pub(super) fn rsplit(s: &str, sep: Option<&str>, maxsplit: Option<usize>) -> Result<Parts, Error> {
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
pub(super) fn rsplit_whitespace(s: &str, max: usize) -> Vec<String> {
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
pub(super) fn rsplit_filter(
    s: &str,
    sep: Option<&str>,
    maxsplit: Option<i64>,
    kwargs: Kwargs,
) -> Result<Parts, Error> {
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
pub(super) fn splitext(p: &str) -> (&str, &str) {
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
mod shared_lists {
    //! The checker (`config::template`) and the renderer agree on names.
    use super::super::Templates;
    use crate::config::template::{ITEM_FIELDS, STORGATE_FILTERS, TEMPLATE_VARIABLES, check_names};
    use crate::item::Item;

    #[test]
    fn registered_filters_are_the_checkers_list() {
        let mut env = minijinja::Environment::new();
        let mut added = super::register(&mut env);
        added.sort_unstable();
        let mut known = STORGATE_FILTERS.to_vec();
        known.sort_unstable();
        assert_eq!(added, known);
    }

    #[test]
    fn item_has_exactly_the_checkers_fields() {
        let t = Templates::new();
        let out = t
            .render_arg(
                "{% for k in item %}{{ k }} {% endfor %}",
                &Item::default(),
                "/s",
            )
            .expect("renders");
        let mut got: Vec<&str> = out.split_whitespace().collect();
        got.sort_unstable();
        let mut known = ITEM_FIELDS.to_vec();
        known.sort_unstable();
        assert_eq!(got, known);
        for v in TEMPLATE_VARIABLES {
            t.render_arg(&format!("{{{{ {v} }}}}"), &Item::default(), "/s")
                .expect("every variable the checker knows is given");
        }
    }

    #[test]
    fn every_known_name_checks_and_renders() {
        let item = Item {
            path: "/in/a/b.tar.gz".into(),
            ..Item::default()
        };
        let fields: Vec<String> = ITEM_FIELDS
            .iter()
            .map(|f| format!("{{{{ item.{f} }}}}"))
            .collect();
        let src = format!(
            "/out/{}/{{{{ item.path | relpath(source_dir) | dirname }}}}/{{{{ item.path | basename | rsplit('.', 1)[0] }}}}{{{{ (item.path | splitext)[1] | upper | replace('.', '_') }}}}{{% if item.size is odd %}}x{{% endif %}}{{% for i in range(2) %}}{{{{ loop.index }}}}{{% endfor %}}{{% filter lower %}}Z{{% endfilter %}}{{% raw %}}{{{{ x | nope }}}}{{% endraw %}}",
            fields.join("")
        );
        assert_eq!(check_names(&src), Vec::<String>::new(), "{src}");
        let t = Templates::new();
        t.render_path(&src, &item, "/in", None).expect("renders");
        // And the checker's rejections fail at render time too.
        for bad in [
            "/o/{{ item.nmae }}",
            "/o/{{ item.path | basenme }}",
            "/o/{{ itme.path }}",
        ] {
            assert!(!check_names(bad).is_empty(), "{bad}");
            assert!(t.render_path(bad, &item, "/in", None).is_err(), "{bad}");
        }
    }
}
