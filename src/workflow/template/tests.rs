//! Unit tests of template rendering, filters, `#N` and the path check.

use super::error::*;
use super::filters::*;
use super::groups::*;
use super::path::*;
use super::render::*;
use super::*;
use crate::item::Item;
use crate::tree::BucketTree;
use crate::workflow::error::WorkflowError;
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

fn arg(template: &str, path: &str) -> Result<String, WorkflowError> {
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
    let e = arg("{{ item.path | rsplit('.', 1, maxsplit=1) }}", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("maxsplit given twice"), "{e}");
    let e = arg("{{ item.path | rsplit('.', limit=1) }}", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit"), "{e}");
    let e = arg("{{ item.path | rsplit('') }}", p)
        .unwrap_err()
        .to_string();
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
    let e = arg("{{ item.size | basename }}", p)
        .unwrap_err()
        .to_string();
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

/// The item of exact path bytes `bytes`, as events build it.
fn exact_item(bytes: &[u8]) -> Item {
    use std::os::unix::ffi::OsStrExt;
    let comps: Vec<_> = bytes
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| std::ffi::OsStr::from_bytes(c).to_os_string())
        .collect();
    let mut st = crate::item::gone_stat(false);
    st.st_mode |= 0o644;
    crate::item::item_of(&comps, &st, 0)
}

/// The bytes a rendered path stands for.
fn bytes_of(rendered: &str) -> Vec<u8> {
    crate::name::to_bytes(rendered)
}

#[test]
fn non_utf8_names_render_to_their_exact_bytes_and_cannot_escape() {
    let t = Templates::new();
    let ff = exact_item(b"/in/bad\xff.jpg");
    let fe = exact_item(b"/in/bad\xfe.jpg");
    let a = t
        .render_path("/out/{{ item.filename }}", &ff, "/in", None)
        .unwrap();
    let b = t
        .render_path("/out/{{ item.filename }}", &fe, "/in", None)
        .unwrap();
    assert_ne!(a, b, "same lossy text, two outputs");
    assert_eq!(bytes_of(&a), b"/out/bad\xff.jpg");
    assert_eq!(bytes_of(&b), b"/out/bad\xfe.jpg");
    // The filters work on the text and keep the exact bytes.
    let tpl = "/out/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | splitext | first }}_m{{ item.path | splitext | last }}";
    let sub = exact_item(b"/in/d\xc3/x\xe2\x80.tar.gz");
    let out = t.render_path(tpl, &sub, "/in", None).unwrap();
    assert_eq!(bytes_of(&out), b"/out/d\xc3/x\xe2\x80.tar_m.gz");
    // A pathPattern captures exact names too.
    let re = Regex::new(r"^/in/(.*)\.jpg$").unwrap();
    let cap = t.render_path("/out/#1.png", &ff, "/in", Some(&re)).unwrap();
    assert_eq!(bytes_of(&cap), b"/out/bad\xff.png");

    for bytes in [
        &b"/in/\xff\xfe/pic.jpg"[..],
        b"/in/.\xff.",
        b"/in/\xc0./x",
        b"/in/\xe2\x80/\xff..",
        b"/in/..\xff",
        "/in/\u{10FFFF}\u{10FF2F}/x".as_bytes(),
    ] {
        let it = exact_item(bytes);
        let out = t
            .render_path("/out/{{ item.path | relpath('/in') }}", &it, "/in", None)
            .unwrap();
        assert!(out.starts_with("/out/"), "{out:?}");
        assert!(out.split('/').all(|c| c != ".." && c != "."), "{out:?}");
        let mut want = b"/out".to_vec();
        want.extend_from_slice(&bytes[3..]);
        assert_eq!(bytes_of(&out), want, "{out:?}");
        for c in crate::name::split_path(&out) {
            let c = std::os::unix::ffi::OsStrExt::as_bytes(c.as_os_str());
            assert!(!c.contains(&b'/') && !c.contains(&0) && c != b".." && c != b".");
        }
    }
    // Lengths count bytes: 255 escaped bytes (1020 bytes of text) fit.
    let long = [0xffu8; 255];
    let mut p = b"/in/".to_vec();
    p.extend_from_slice(&long);
    let out = t
        .render_path("/out/{{ item.filename }}", &exact_item(&p), "/in", None)
        .unwrap();
    assert_eq!(crate::name::byte_len(&out), 5 + 255);
    p.push(0xfe);
    assert_eq!(
        problem(t.render_path("/out/{{ item.filename }}", &exact_item(&p), "/in", None)),
        PathProblem::ComponentTooLong { len: 256 }
    );
    // A literal look-alike of an escape for `/` or NUL is no escape.
    let lit = t
        .render_path("/out/a\u{10FF2F}b\u{10FF00}", &ff, "/in", None)
        .unwrap();
    assert_eq!(crate::name::split_path(&lit).len(), 2);
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
    let e = arg("--x={{ nope }}", "/x").unwrap_err().to_string();
    assert!(e.starts_with("exec argument \"--x={{ nope }}\": "), "{e}");
    assert!(e.contains("undefined"), "{e}");
    let e = arg("{{ item.path", "/x").unwrap_err().to_string();
    assert!(e.contains("syntax error"), "{e}");
    let e = arg("{{ item.filename }}", "/a\0b").unwrap_err().to_string();
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
    assert_eq!(
        substitute_groups("#2", &g),
        Err(MissingGroup("2".to_string()))
    );
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
        "\u{10FFFF}",
        "\u{10FF80}",
        "\u{10FF2F}",
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
                assert!(crate::name::byte_len(p) <= MAX_PATH);
                for c in p.split('/').skip(1) {
                    assert!(c != ".." && c != "." && !c.is_empty(), "{p:?}");
                    assert!(crate::name::byte_len(c) <= MAX_COMPONENT);
                }
                // The bytes it stands for keep the same components.
                let bytes = crate::name::split_path(p);
                assert_eq!(bytes.len(), p.split('/').skip(1).count(), "{p:?}");
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
