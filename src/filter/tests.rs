//! The filter's rules (SPEC §4.3), one Ansible `find` rule at a time.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::model::{AgeStamp, FileType, Filter};
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
        .to_string()
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
fn globs_check_refuses_are_refused_here_too() {
    let compiles = |p: &str| {
        CompiledFilter::new(Some(&Filter {
            patterns: vec!["*".into()],
            excludes: vec![p.into()],
            ..Filter::default()
        }))
        .map_err(|e| e.to_string())
    };
    // Everything else fnmatch reads, including what globset would refuse
    // (a dangling `\`, a reversed range) or read otherwise (`{2}`, `[^a]`).
    for p in [
        "a\\", "]", "**", "(", "$^|+.", "\\", "[z-a]", "x{2}", "{a,b}", "[^a]", "[{]", "[}]",
        "[]]", "[!]]", "{{*}}",
    ] {
        assert!(compiles(p).is_ok(), "{p:?}");
    }
    for (p, why) in [
        ("[abc", "unclosed character class; missing ']'"),
        ("[", "unclosed character class; missing ']'"),
        ("[!", "unclosed character class; missing ']'"),
        ("[]", "unclosed character class; missing ']'"),
        ("[!]", "unclosed character class; missing ']'"),
        ("x[*", "unclosed character class; missing ']'"),
        (
            "{a,b",
            "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
        (
            "a}",
            "unopened alternate group; missing '{' (maybe escape '}' with '[}]'?)",
        ),
        (
            "{{a}",
            "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
    ] {
        assert_eq!(
            compiles(p).unwrap_err(),
            format!("excludes[0]: bad glob {p:?}: {why}")
        );
    }
}

#[test]
fn check_and_runtime_use_one_compiler() {
    // A config `storgate check` accepts gives a runtime filter that matches
    // exactly as the shared compiler does; one it refuses, for the same
    // reason, cannot be compiled at runtime either.
    let names = [
        "a.jpg",
        "é.jpg",
        "a.{jpg,png}",
        "x{2}",
        "^",
        "a",
        "\\x",
        "[",
        "{{ x }}",
        ".a.jpg",
    ];
    let cases: &[(&str, bool)] = &[
        ("?.jpg", false),
        ("*.{jpg,png}", false),
        ("x{2}", false),
        ("[^a]", false),
        ("\\*", false),
        ("[[]", false),
        ("{{*}}", false),
        ("a.jpg", true),
        (".*[.]jpg$", true),
        ("(a|é)\\.", true),
    ];
    for &(p, use_regex) in cases {
        let json = serde_json::json!({"buckets": [{"name": "b", "mounts": [{"originPath": "/tmp"}],
            "events": {"onGet": {"filter": {"patterns": [p], "use_regex": use_regex, "hidden": true}}}}]});
        let loaded = crate::config::load_str(&json.to_string()).expect("check accepts");
        let f = loaded.config.buckets[0].events.on_get.filter.as_ref();
        let runtime = CompiledFilter::new(f).expect("runtime compiles");
        let shared = crate::config::pattern::compile(p, use_regex).expect("compiles");
        for n in names {
            assert_eq!(
                runtime.matches_event(&file(n), now()),
                shared.is_match(n),
                "{p:?} on {n:?}"
            );
        }
    }
    for (p, use_regex) in [
        ("[abc", false),
        ("{a,b", false),
        ("a}", false),
        ("(x", true),
    ] {
        let json = serde_json::json!({"buckets": [{"name": "b", "mounts": [{"originPath": "/tmp"}],
            "events": {"onGet": {"filter": {"excludes": [p], "use_regex": use_regex}}}}]});
        let errors = crate::config::load_str(&json.to_string()).unwrap_err();
        let runtime = CompiledFilter::new(Some(&Filter {
            excludes: vec![p.into()],
            use_regex,
            ..Filter::default()
        }))
        .unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            format!("buckets[0].events.onGet.filter.{runtime}")
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
    // A `[` without its `]` is refused (globs_check_refuses_are_refused_here_too);
    // a literal `[` is a set of one.
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
            "fnmatch({name:?}, {p:?})"
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
        excludes: vec!["[[]".into()],
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
        assert!(f.matches_event(&file("a.jpg"), now()) && g.matches_event(&file("a.jpg"), now()));
        assert!(!g.matches_event(&file("a.png"), now()));
    }
}
