//! `storgate check` through the library (the binary's CLI is wired by the
//! lead): every file of `tests/bad-configs/` with the exact problem lines it
//! must produce, every file of `tests/good-configs/` with its summary and
//! warnings, secrets never printed, and no panic on mangled input.
//!
//! Good configs name their local paths `@ROOT@/…`; the test builds that tree
//! in a temporary directory (directories, executable hooks) and substitutes
//! it, then writes `@ROOT@` back into the output before comparing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use storgate::config::{
    self, Function, LeaderUrl, Origin, WatchInitial, WatchMode, WatchSpec, check_to, load, load_str,
};

fn corpus(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

/// Each bad config and the exact lines `load` reports for it.
const BAD: &[(&str, &[&str])] = &[
    (
        "bad-bucket-name",
        &[
            "buckets[0].name: \"my bucket\" is not a valid bucket name (use letters, digits, `.`, `_`, `-`)",
            "buckets[1].meta.name: \"a/b\" is not a valid bucket name (use letters, digits, `.`, `_`, `-`)",
            "buckets[2].name: \"..\" is not a valid bucket name (use letters, digits, `.`, `_`, `-`)",
            "buckets[3]: missing field `name` (in the bucket or in its `meta`)",
            "buckets[4].meta: missing field `name`",
        ],
    ),
    (
        "bad-cron",
        &[
            "buckets[0].events.onBatch[0].schedule: bad cron expression \"*/5 * * *\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 4",
            "buckets[0].events.onBatch[1].schedule: bad cron expression \"61 * * * *\": Component error: Number out of bounds.",
            "buckets[0].events.onBatch[2].schedule: bad cron expression \"0 0 * * 8\": Component error: Number out of bounds.",
            "buckets[0].events.onBatch[3].schedule: bad cron expression \"@reboot\": unknown nickname (use one of @yearly @annually @monthly @weekly @daily @hourly)",
            "buckets[0].events.onBatch[4].schedule: required when the scan is enabled",
        ],
    ),
    (
        "bad-enums",
        &[
            "buckets[0].workflows[0].tasks[0].whenExist: unknown variant `replace`, expected one of `overwrite`, `skip`, `diff`",
            "buckets[0].workflows[0].onComplete.src.op: unknown variant `remove`, expected one of `none`, `delete`, `move`",
            "buckets[0].events.onGet.filter.age_stamp: unknown variant `birth`, expected one of `mtime`, `atime`, `ctime`",
            "buckets[0].events.onGet.filter.filetype: unknown variant `files`, expected one of `file`, `directory`, `link`, `any`",
            "buckets[0].events.onPut.trigger.timing: unknown variant `before`, expected `pre` or `post`",
            "buckets[0].events.onBatch[0].traverse: unknown variant `deep`, expected `depth` or `breadth`",
            "buckets[0].events.onBatch[1].cursor: unknown variant `restart`, expected `continue` or `reset`",
        ],
    ),
    (
        "bad-exec",
        &[
            "buckets[0].workflows[0].tasks[0].function.exec: must name a program: [\"prog\", \"arg\", …]",
            "buckets[0].workflows[0].tasks[1].function.exec[0]: the program must not be empty",
            "buckets[0].workflows[0].tasks[2].function.exec[0]: program /nonexistent/storgate-test/convert does not exist",
            "buckets[0].workflows[0].tasks[3].function: exec must be an array of strings; expected null, an HTTP function path such as \"/a/b\", or {\"exec\": [\"prog\", \"arg\", …]}",
            "buckets[0].workflows[0].tasks[4].function: unknown key `run` in function; expected null, an HTTP function path such as \"/a/b\", or {\"exec\": [\"prog\", \"arg\", …]}",
            "buckets[0].workflows[0].tasks[5].function: invalid type: a number, expected null, an HTTP function path such as \"/a/b\", or {\"exec\": [\"prog\", \"arg\", …]}",
        ],
    ),
    (
        "bad-glob",
        &[
            "buckets[0].events.onGet.filter.patterns[1]: bad glob \"[abc\": unclosed character class; missing ']'",
            "buckets[0].events.onGet.filter.excludes[0]: bad glob \"{a,b\": unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ],
    ),
    (
        "bad-globals",
        &[
            "stateDir: \"var/lib/storgate\" is not an absolute path",
            "vhost: \"a/b\" must be a non-empty name without `/`",
            "functionBaseUrl: \"127.0.0.1:8080\" is not an http:// or https:// URL",
            "aws_s3[0].bucket: must not be empty",
            "aws_s3[0].endpoint: \"minio:9000\" is not an http:// or https:// URL",
            "aws_s3[0]: accessKeyId and secretAccessKey must be given together",
            "aws_s3[0].metadataTtl: -1 is not a non-negative number of seconds",
            "aws_s3[0].timeout: 0 is not a positive number of seconds",
            "aws_s3[1].name: duplicate aws_s3 name \"s3\" (also aws_s3[0])",
            "aws_s3[1]: accessKeyId and secretAccessKey must be given together",
            "aws_s3[2].name: \"bad@name\" is not a valid name (use letters, digits, `.`, `_`, `-`)",
            "distribution.leader.termSeconds: 1 is below the minimum of 3",
            "distribution.leader.url: \"file://mnt/nas/images/temp/.{vhost}.m2leader\": a file URL needs an absolute path, as in file:///shared/dir/.{vhost}.m2leader",
            "throttling.enable: invalid type: string \"yes\", expected a boolean",
        ],
    ),
    (
        "bad-origin-path",
        &[
            "buckets[0].mounts[0].originPath: \"mystorage\" is neither an absolute local directory (starting with /) nor NAME@aws_s3[/prefix]",
            "buckets[0].mounts[1].originPath: \"mystorage@aws_s3/x/../y\" contains a `..` component",
            "buckets[0].mounts[2].originPath: \"relative/dir\" is neither an absolute local directory (starting with /) nor NAME@aws_s3[/prefix]",
        ],
    ),
    (
        "bad-regex",
        &[
            "buckets[0].workflows[0].tasks[0].pathPattern: bad regex \"/in/([^/]+\": unclosed group",
            "buckets[0].events.onPut.filter.patterns[1]: bad regex \"(unclosed\": unclosed group",
            "buckets[0].events.onPut.filter.excludes[0]: bad regex \"*.tmp\": repetition operator missing expression",
        ],
    ),
    (
        "bad-save-paths",
        &[
            "buckets[0].workflows[0].tasks[0].savePath: \"image_service/{{ item.path }}\" is not an absolute bucket path (it must start with / or with a template)",
            "buckets[0].workflows[0].tasks[1].savePath: \"/image_service/../{{ item.path }}\" contains a `..` component",
            "buckets[0].workflows[0].tasks[2].savePath: \"/newimg/{{ item.path }}\" is not inside any mount of bucket \"b1\" (mount points: /image_landing, /image_service)",
            "buckets[0].workflows[0].tasks[6].savePath: must not be empty",
            "buckets[0].workflows[0].tasks[7].savePath: invalid type: null, expected a string",
        ],
    ),
    (
        "bad-template",
        &[
            "buckets[0].workflows[0].tasks[0].savePath: bad template: syntax error: unexpected `}`, expected end of variable block",
            "buckets[0].workflows[0].tasks[1].function.exec[1]: bad template: syntax error: unexpected end of variable block, expected identifier",
            "buckets[0].workflows[0].tasks[1].savePath: bad template: syntax error: unexpected end of input, expected end of block",
            "buckets[0].workflows[0].onComplete.src.path: bad template: syntax error: unexpected end of input, expected end of variable block",
        ],
    ),
    (
        "bad-units",
        &[
            "buckets[0].events.onPut.filter.age: bad age \"2y\": unknown unit \"y\" (use s m h d w)",
            "buckets[0].events.onPut.filter.size: bad size \"1M\": unknown unit \"M\" (use b k m g t)",
            "buckets[0].events.onBatch[0].filter.age: invalid type: number `1.5`, expected a string such as \"2d\" or \"-1m\", or an integer",
            "buckets[0].events.onBatch[0].filter.size: bad size \"1.5m\" is not a whole number with an optional unit (b k m g t)",
        ],
    ),
    (
        "bad-watch",
        &[
            "buckets[0].mounts[0].watch.mode: unknown variant `inotify`, expected one of `auto`, `notify`, `poll`, `off`",
            "buckets[0].mounts[1].watch.intervalSeconds: 0 is not a positive number of seconds",
            "buckets[0].mounts[2].watch.intervalSeconds: invalid type: string \"30s\", expected a number",
            "buckets[0].mounts[3].watch.initial: unknown variant `all`, expected `baseline` or `fire`",
            "buckets[0].mounts[3].watch.intervalSeconds: 172800 seconds is more than the maximum of 86400 (one day)",
            "buckets[0].mounts[4].watch.mode: an S3 origin cannot be watched with inotify (`notify` sees local file systems only); S3 origins are polled: use \"poll\" or \"auto\"",
            "buckets[0].mounts[5].watch.interval: unknown field",
        ],
    ),
    (
        "bad-webhooks",
        &[
            "buckets[0].events.onPut.webhook.onItemCompleted: webhook /etc/passwd is not executable",
            "buckets[0].events.onPut.webhook.onItemAborted: webhook /nonexistent/storgate-test/call_err.js does not exist",
            "buckets[0].events.onBatch[0].webhook.onItemCompleted: \"http://\" is not an http:// or https:// URL",
            "buckets[0].events.onBatch[0].webhook.onChunkExtracted: \"ftp://example.com/hook\" is neither an http(s):// URL nor an absolute path to an executable",
            "buckets[0].events.onBatch[0].webhook.onChunkCompleted: \"end_chunk.js\" is neither an http(s):// URL nor an absolute path to an executable",
        ],
    ),
    (
        "buckets-not-array",
        &["buckets: invalid type: object, expected an array"],
    ),
    (
        "duplicate-bucket",
        &["buckets[2].meta.name: duplicate bucket name \"media\" (also buckets[0])"],
    ),
    ("duplicate-key", &["buckets[0].name: duplicate key"]),
    (
        "duplicate-mount-point",
        &[
            "buckets[0].mounts[3].mountPoint: duplicate mountPoint /images (also buckets[0].mounts[0])",
        ],
    ),
    (
        "envelope-without-storgate",
        &[
            "functions.backend: missing `storgate` (the envelope is {\"functions\":{\"backend\":{\"storgate\":{…}}}})",
        ],
    ),
    (
        "event-rules",
        &[
            "buckets[0].workflows[1].name: duplicate workflow name \"w\" (also buckets[0].workflows[0])",
            "buckets[0].events.onPut.trigger: required when the event is enabled",
            "buckets[0].events.onBatch[0].chunkSize: must be at least 1",
            "buckets[0].events.onBatch[0].path: /elsewhere is not inside any mount of bucket \"b1\" (mount points: /in)",
            "buckets[0].events.onBatch[0].trigger.timing: must be `post` for onBatch (a scan runs no client operation to wait for)",
            "buckets[0].events.onBatch[1].path: \"in/sub\" is not an absolute path (it must start with /)",
        ],
    ),
    (
        "http-function-without-base-url",
        &[
            "buckets[0].workflows[0].tasks[0].function: HTTP function /hyperdims/format/avif/optimize needs `functionBaseUrl` at the top level",
            "buckets[0].workflows[0].tasks[1].function: \"hyperdims/format/webp\": an HTTP function path must start with / (use {\"exec\": […]} to run a program)",
        ],
    ),
    (
        "json-block-comment",
        &["line 2, column 3: invalid JSON: key must be a string"],
    ),
    (
        "json-missing-comma",
        &["line 14, column 13: invalid JSON: expected `,` or `}`"],
    ),
    (
        "json-trailing-comma",
        &["line 3, column 59: invalid JSON: trailing comma"],
    ),
    (
        "json-unquoted-key",
        &["line 3, column 32: invalid JSON: key must be a string"],
    ),
    (
        "many-problems",
        &[
            "buckets[0].mounts[0].exposed: unknown field (did you mean `expose`?)",
            "buckets[0].workflows[0].tasks[0].timeout: -1 is not a positive number of seconds",
            "buckets[0].events.onBatch[0].schedule: bad cron expression \"*/5 * * * * * *\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 7",
            "buckets[1].mounts[0].originPath: no aws_s3 entry named \"nowhere\" (aws_s3 is empty)",
            "buckets[1].events.onGet.trigger.workflow: no workflow named \"nope\" in bucket \"two\" (the bucket has no workflows)",
        ],
    ),
    (
        "meta-both-ways",
        &[
            "buckets[0]: `meta` is given both as an object and as keys of the bucket (name, expose); use one form",
        ],
    ),
    ("missing-buckets", &["missing field `buckets`"]),
    (
        "missing-origin-dir",
        &[
            "buckets[0].mounts[0].originPath: local directory /nonexistent/storgate-test/upload does not exist",
            "buckets[0].mounts[1].originPath: /etc/passwd is not a directory",
            "buckets[2].mounts[0].originPath: local directory /nonexistent/storgate-test/third does not exist",
        ],
    ),
    (
        "not-an-object",
        &["the configuration must be a JSON object, found an array"],
    ),
    (
        "on-complete",
        &[
            "buckets[0].workflows[0].onComplete.src: op `move` needs a `path`",
            "buckets[0].workflows[1].onComplete.src.path: \"/processed/{{ item.path }}\" is not inside any mount of bucket \"b1\" (mount points: /in)",
            "buckets[0].workflows[2].onComplete.op: unknown field",
        ],
    ),
    (
        "path-pattern-groups",
        &[
            "buckets[0].workflows[0].tasks[0].savePath: #3 refers to a capture group that pathPattern does not have (it has 2)",
            "buckets[0].workflows[0].tasks[1].savePath: uses #1 but the task has no pathPattern",
        ],
    ),
    (
        "relative-mount-point",
        &[
            "buckets[0].mounts[0].mountPoint: \"images\" is not an absolute path (it must start with /)",
            "buckets[0].mounts[1].mountPoint: \"/a/../b\" contains a `..` component",
            "buckets[0].mounts[2].mountPoint: \"\" is not an absolute path (it must start with /)",
        ],
    ),
    (
        "unknown-endpoint",
        &[
            "distribution.leader.authEndpoint: no aws_s3 entry named \"auth\" (known: mystorage)",
            "distribution.leader.url: no aws_s3 entry named \"lockstore\" (known: mystorage)",
            "buckets[0].mounts[0].originPath: no aws_s3 entry named \"mystorag\" (known: mystorage)",
            "buckets[0].mounts[1].originPath: no aws_s3 entry named \"google_storage\" (known: mystorage)",
        ],
    ),
    (
        "unknown-field-chunk-hook-on-put",
        &["buckets[0].events.onPut.webhook.onChunkExtracted: unknown field"],
    ),
    (
        "unknown-field-schedlue",
        &[
            "buckets[0].events.onBatch[1].schedlue: unknown field (did you mean `schedule`?)",
            "buckets[0].events.onBatch[1].schedule: required when the scan is enabled",
        ],
    ),
    (
        "unknown-field-top",
        &[
            "functionBaseURL: unknown field (did you mean `functionBaseUrl`?)",
            "statedir: unknown field (did you mean `stateDir`?)",
        ],
    ),
    (
        "unknown-workflow",
        &[
            "buckets[0].events.onPut.trigger.workflow: no workflow named \"migrate_tmpimg\" in bucket \"b1\" (workflows: migrate_tmping)",
            "buckets[1].events.onDelete.trigger.workflow: no workflow named \"cleanup\" in bucket \"b2\" (the bucket has no workflows)",
        ],
    ),
    (
        "wrong-types",
        &[
            "aws_s3[0].bucket: invalid type: integer `7`, expected a string",
            "buckets[0].workflows: invalid type: object, expected an array",
            "buckets[0].mounts[0].expose: invalid type: string \"no\", expected a boolean",
            "buckets[0].access.get.enable: invalid type: integer `1`, expected a boolean",
            "buckets[0].events.onPut.enable: invalid type: string \"yes\", expected a boolean",
            "buckets[0].events.onBatch[0].chunkSize: invalid value: integer `-5`, expected a non-negative integer",
            "buckets[0].events.onBatch[1].chunkSize: invalid type: number `1.5`, expected a non-negative integer",
        ],
    ),
];

fn problems(path: &Path) -> Vec<String> {
    match load(path) {
        Ok(l) => vec![format!("<loaded OK, warnings {:?}>", l.warnings)],
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bad_configs_report_exact_lines() {
    let mut failures = Vec::new();
    for (name, expected) in BAD {
        let got = problems(&corpus("bad-configs").join(format!("{name}.json")));
        if got != *expected {
            failures.push(format!(
                "{name}:\n  expected:\n    {}\n  got:\n    {}",
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_bad_config_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus("bad-configs"))
        .expect("corpus dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".json")?.to_string())
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = BAD.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 25);
}

#[test]
fn check_command_prints_problems_and_returns_2() {
    let path = corpus("bad-configs").join("unknown-workflow.json");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_to(&path, &mut out, &mut err), 2);
    assert!(out.is_empty());
    let err = String::from_utf8(err).expect("utf-8");
    let expected = BAD
        .iter()
        .find(|(n, _)| *n == "unknown-workflow")
        .map(|(_, e)| e.join("\n"))
        .expect("listed");
    assert_eq!(err, format!("{expected}\n{}: 2 problems\n", path.display()));
    assert_eq!(
        config::check_command(&corpus("bad-configs/no-such-file.json")),
        2
    );
}

/// A temporary tree with the directories and executables good configs name.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in [
            "mnt/nas/upload",
            "mnt/nas/image/service",
            "nfs/media",
            "local/media",
            "ssd",
            "data",
            "shared",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        for f in [
            "usr/local/m2/webhook/purge_cdn.js",
            "hooks/alert.sh",
            "hooks/begin_chunk.sh",
            "bin/convert",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Tree { dir }
    }

    fn root(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Writes good config `name` with `@ROOT@` substituted; returns its path.
    fn config(&self, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(corpus("good-configs").join(format!("{name}.json")))
            .expect("good config");
        let p = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&p, text.replace("@ROOT@", &self.root())).expect("write");
        p
    }

    fn unroot(&self, s: &str) -> String {
        s.replace(&self.root(), "@ROOT@")
    }
}

fn expected_file(name: &str, ext: &str) -> String {
    std::fs::read_to_string(corpus("good-configs").join(format!("{name}.{ext}")))
        .unwrap_or_default()
}

#[test]
fn good_configs_load_with_expected_summary_and_warnings() {
    let tree = Tree::new();
    for name in ["landing-zone", "media", "minimal"] {
        let loaded = match load(&tree.config(name)) {
            Ok(l) => l,
            Err(e) => panic!("{name} must load, got: {e:#?}"),
        };
        assert_eq!(
            tree.unroot(&config::summary(&loaded.config)),
            expected_file(name, "summary"),
            "summary of {name}"
        );
        let warnings: String = loaded
            .warnings
            .iter()
            .map(|w| format!("{}\n", tree.unroot(w)))
            .collect();
        assert_eq!(
            warnings,
            expected_file(name, "warnings"),
            "warnings of {name}"
        );
    }
}

#[test]
fn check_command_prints_summary_and_returns_0() {
    let tree = Tree::new();
    let path = tree.config("landing-zone");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_to(&path, &mut out, &mut err), 0);
    let out = tree.unroot(&String::from_utf8(out).expect("utf-8"));
    assert_eq!(
        out,
        format!(
            "@ROOT@/landing-zone.json: OK\n{}",
            expected_file("landing-zone", "summary")
        )
    );
    assert!(err.is_empty());

    let path = tree.config("media");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_to(&path, &mut out, &mut err), 0);
    let err = tree.unroot(&String::from_utf8(err).expect("utf-8"));
    let expected: String = expected_file("media", "warnings")
        .lines()
        .map(|l| format!("warning: {l}\n"))
        .collect();
    assert_eq!(err, expected);
}

#[test]
fn the_model_holds_what_the_file_says() {
    let tree = Tree::new();
    let cfg = load(&tree.config("media")).expect("loads").config;
    let media = cfg.bucket("media").expect("bucket media");
    let origins: Vec<(String, Origin)> = media
        .mounts
        .iter()
        .map(|m| (m.mount_path().to_string(), m.origin()))
        .collect();
    let root = tree.dir.path();
    assert_eq!(
        origins,
        vec![
            (
                "/archive".into(),
                Origin::S3 {
                    endpoint: "minio".into(),
                    prefix: "media/2024".into()
                }
            ),
            ("/".into(), Origin::Local(root.join("nfs/media"))),
            ("/".into(), Origin::Local(root.join("local/media"))),
            (
                "/newimg".into(),
                Origin::S3 {
                    endpoint: "aws".into(),
                    prefix: String::new()
                }
            ),
            ("/fast".into(), Origin::Local(root.join("ssd"))),
        ]
    );
    assert!(media.mounts[1].mount_point.is_none() && media.mounts[2].mount_point.is_none());
    assert!(!media.mounts[3].expose);
    let watches: Vec<(WatchMode, f64, WatchInitial)> = media
        .mounts
        .iter()
        .map(|m| {
            (
                m.watch.mode,
                m.watch.interval.as_secs_f64(),
                m.watch.initial,
            )
        })
        .collect();
    assert_eq!(
        watches,
        vec![
            (WatchMode::Poll, 2.5, WatchInitial::Fire),
            (WatchMode::Auto, 2.0, WatchInitial::Baseline),
            (WatchMode::Notify, 30.0, WatchInitial::Baseline),
            (WatchMode::Off, 30.0, WatchInitial::Baseline),
            (WatchMode::Auto, 30.0, WatchInitial::Baseline),
        ]
    );
    let dropbox_watch = cfg.bucket("dropbox").map(|b| b.mounts[0].watch);
    assert_eq!(dropbox_watch, Some(WatchSpec::default()));
    assert!(media.access.get.enable && media.access.put.enable && !media.access.delete.enable);
    let derive = media.workflow("derive").expect("derive");
    assert!(matches!(&derive.tasks[0].function, Function::Exec(a) if a.len() == 4));
    assert_eq!(
        derive.tasks[1].timeout,
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(
        derive.tasks[2].path_pattern.as_ref().map(|r| r.as_str()),
        Some("/([^/]+)/(.*)")
    );
    let minio = cfg.s3_endpoint("minio").expect("minio");
    assert_eq!(minio.metadata_ttl, std::time::Duration::ZERO);
    assert_eq!(minio.timeout, std::time::Duration::from_secs(5));
    assert!(minio.force_path_style);
    let aws = cfg.s3_endpoint("aws").expect("aws");
    assert_eq!(aws.metadata_ttl, std::time::Duration::from_secs(1));
    assert_eq!(aws.timeout, std::time::Duration::from_secs(30));
    assert!(!aws.force_path_style);
    assert_eq!(
        cfg.distribution.leader.url,
        Some(LeaderUrl::File(root.join("shared/.web1.m2leader")))
    );
    assert_eq!(cfg.state_dir, root.join("state"));
    assert_eq!(
        cfg.function_base_url.as_deref(),
        Some("http://127.0.0.1:8080")
    );
    let scan = &media.events.on_batch[0];
    assert_eq!(scan.chunk_size, 500);
    let filter = scan.filter.as_ref().expect("filter");
    assert_eq!((filter.depth, filter.recursive), (3, true));
    assert_eq!(
        filter.age.map(|a| (a.seconds, a.at_most)),
        Some((7 * 86400, true))
    );
    assert_eq!(
        filter.size.map(|s| (s.bytes, s.at_most)),
        Some((1 << 20, false))
    );
    let dropbox = cfg.bucket("dropbox").expect("dropbox");
    assert!(!dropbox.meta.enable && !dropbox.meta.expose && !dropbox.access.get.enable);
}

#[test]
fn secrets_are_never_printed() {
    let tree = Tree::new();
    let path = tree.config("media");
    let loaded = load(&path).expect("loads");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_to(&path, &mut out, &mut err), 0);
    let texts = [
        format!("{:?}", loaded.config),
        format!("{:#?}", loaded),
        config::summary(&loaded.config),
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ];
    for t in &texts {
        assert!(!t.contains("AKIASECRETKEYID0001"), "access key id leaked");
        assert!(!t.contains("CYSECRET"), "secret access key leaked");
    }
    let minio = loaded.config.s3_endpoint("minio").expect("minio");
    assert_eq!(
        minio.access_key_id.as_ref().map(|s| s.expose()),
        Some("AKIASECRETKEYID0001")
    );
    // A config error next to a secret does not print it either.
    let bad = load_str(
        r#"{"buckets": [], "aws_s3": [{"name": "x", "bucket": "b", "secretAccessKey": "TOPSECRETVALUE", "endpoint": 5}]}"#,
    )
    .expect_err("invalid");
    assert!(!format!("{bad:?}").contains("TOPSECRETVALUE"));
}

#[test]
fn envelope_and_bare_object_are_the_same() {
    let tree = Tree::new();
    let text = std::fs::read_to_string(tree.config("landing-zone")).expect("read");
    let wrapped = load_str(&text).expect("envelope loads");
    let start = text.find("\"buckets\"").expect("buckets");
    let end = text.rfind("]").expect("end of buckets");
    let bare = format!("{{ {} }}", &text[start..=end]);
    let bare = load_str(&bare).expect("bare object loads");
    assert_eq!(
        config::summary(&wrapped.config),
        config::summary(&bare.config)
    );
}

#[test]
fn schedules_are_real_cron() {
    use chrono::TimeZone;
    let tree = Tree::new();
    let cfg = load(&tree.config("media")).expect("loads").config;
    let media = cfg.bucket("media").expect("media");
    let s = media.events.on_batch[0]
        .schedule
        .as_ref()
        .expect("schedule");
    // "0 */2 * * 0,7": even hours on Sundays (0 and 7 both mean Sunday).
    let sunday = chrono::Utc
        .with_ymd_and_hms(2024, 3, 3, 4, 0, 0)
        .single()
        .expect("date");
    let monday = chrono::Utc
        .with_ymd_and_hms(2024, 3, 4, 4, 0, 0)
        .single()
        .expect("date");
    assert!(s.cron.is_time_matching(&sunday).expect("match"));
    assert!(!s.cron.is_time_matching(&monday).expect("match"));
}

/// Small deterministic PRNG (xorshift64*), so the test needs no rand API.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mangled_configs_never_panic() {
    let tree = Tree::new();
    let mut seeds: Vec<String> = ["landing-zone", "media", "minimal"]
        .iter()
        .map(|n| std::fs::read_to_string(tree.config(n)).expect("read"))
        .collect();
    for (name, _) in BAD {
        seeds.push(
            std::fs::read_to_string(corpus("bad-configs").join(format!("{name}.json")))
                .expect("read"),
        );
    }
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "null",
        "-1",
        "1e999",
        "\"/\"",
        "\"..\"",
        "{{",
        "}}",
        "#",
        "//",
        "\\",
        "\u{0}",
        "é",
        "\"*\"",
        "[]",
        "{}",
        "true",
        "\"@aws_s3\"",
        "18446744073709551616",
        "0.5",
        "\"{% for %}\"",
        "\"(\"",
        "\n",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let mut text: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 => {
                    let len = rng.below(12).min(text.len() - at.min(text.len()));
                    text.drain(at..at + len);
                }
                1 => {
                    let p = pieces[rng.below(pieces.len())];
                    for (k, c) in p.chars().enumerate() {
                        text.insert(at + k, c);
                    }
                }
                _ => text.truncate(at),
            }
        }
        let s: String = text.into_iter().collect();
        let _ = load_str(&s);
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(load_str(&deep).is_err());
}

/// SPEC §6.3: a reactive above deactive, or any value outside 0–100, gives
/// `reactive = deactive × 2/3`, and `check` says so in a warning.
#[test]
fn throttling_values_are_repaired_with_a_warning() {
    // (throttling JSON, deactive, reactive, expected throttling warnings)
    let cases: &[(&str, f64, f64, &[&str])] = &[
        (
            r#"{"cpu": {"deactive": 60, "reactive": 40}}"#,
            60.0,
            40.0,
            &[],
        ),
        (
            r#"{"cpu": {"deactive": 50, "reactive": 50}}"#,
            50.0,
            50.0,
            &[],
        ),
        (r#"{"cpu": {"deactive": 90}}"#, 90.0, 40.0, &[]),
        (r#"{}"#, 60.0, 40.0, &[]),
        (
            r#"{"cpu": {"deactive": 70, "reactive": 80}}"#,
            70.0,
            70.0 * 2.0 / 3.0,
            &["throttling.cpu.reactive: 80 is above deactive; using 46.7 (deactive × 2/3)"],
        ),
        (
            r#"{"cpu": {"deactive": 50, "reactive": -5}}"#,
            50.0,
            50.0 * 2.0 / 3.0,
            &["throttling.cpu.reactive: -5 is outside 0–100; using 33.3 (deactive × 2/3)"],
        ),
        (
            r#"{"cpu": {"deactive": 90, "reactive": 100.5}}"#,
            90.0,
            60.0,
            &["throttling.cpu.reactive: 100.5 is outside 0–100; using 60 (deactive × 2/3)"],
        ),
        (
            r#"{"cpu": {"deactive": 150, "reactive": 50}}"#,
            60.0,
            40.0,
            &[
                "throttling.cpu.deactive: 150 is outside 0–100; using 60",
                "throttling.cpu.reactive: 50 was set for an invalid deactive; using 40 (deactive × 2/3)",
            ],
        ),
        (
            r#"{"cpu": {"deactive": -1}}"#,
            60.0,
            40.0,
            &["throttling.cpu.deactive: -1 is outside 0–100; using 60"],
        ),
        (
            r#"{"cpu": {"deactive": 30}}"#,
            30.0,
            20.0,
            &[
                "throttling.cpu.reactive: the default 40 is above deactive; using 20 (deactive × 2/3)",
            ],
        ),
        (
            r#"{"cpu": {"deactive": 0}}"#,
            0.0,
            0.0,
            &[
                "throttling.cpu.reactive: the default 40 is above deactive; using 0 (deactive × 2/3)",
                "throttling.cpu.reactive: 0 means work never resumes once paused (CPU use never falls below 0)",
            ],
        ),
        // A disabled gate never pauses, so only the repair is reported.
        (
            r#"{"enable": false, "cpu": {"deactive": 0}}"#,
            0.0,
            0.0,
            &[
                "throttling.cpu.reactive: the default 40 is above deactive; using 0 (deactive × 2/3)",
            ],
        ),
    ];
    for (json, deactive, reactive, expected) in cases {
        let text = format!(r#"{{"buckets": [], "throttling": {json}}}"#);
        let loaded = match load_str(&text) {
            Ok(l) => l,
            Err(e) => panic!("{json} must load, got {e:?}"),
        };
        let t = &loaded.config.throttling;
        assert_eq!(t.cpu_deactive, *deactive, "deactive of {json}");
        assert!(
            (t.cpu_reactive - reactive).abs() < 1e-9,
            "reactive of {json}: {} != {reactive}",
            t.cpu_reactive
        );
        assert!(t.cpu_reactive <= t.cpu_deactive, "{json}");
        let got: Vec<&str> = loaded
            .warnings
            .iter()
            .map(String::as_str)
            .filter(|w| w.starts_with("throttling"))
            .collect();
        assert_eq!(got, *expected, "warnings of {json}");
    }
}

/// Issue 11 item 8: what `storgate check` (the real binary) and `storgate
/// mount` refuse, each problem on its own line with its JSON path, exit 2.
mod refused {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use serde_json::{Value, json};

    use crate::common::storgate_bin;

    /// A scratch tree: `in/`, `out/`, `root/` origins and `state/`.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Scratch {
            let dir = tempfile::tempdir().expect("tempdir");
            for d in ["in", "out", "root", "state"] {
                std::fs::create_dir(dir.path().join(d)).expect("mkdir");
            }
            Scratch { dir }
        }

        fn path(&self, rel: &str) -> String {
            self.dir.path().join(rel).display().to_string()
        }

        /// A valid config: a root mount, `/in` and `/out` (hidden), one
        /// workflow with one task, a post onPut and one enabled onBatch.
        fn base(&self) -> Value {
            json!({
                "stateDir": self.path("state"),
                "functionBaseUrl": "http://127.0.0.1:9",
                "throttling": {"enable": false},
                "buckets": [{
                    "name": "b",
                    "mounts": [
                        {"originPath": self.path("root")},
                        {"mountPoint": "/in", "originPath": self.path("in")},
                        {"mountPoint": "/out", "originPath": self.path("out"), "expose": false}
                    ],
                    "workflows": [{
                        "name": "w",
                        "tasks": [{"savePath": "/out/{{ item.filename }}"}]
                    }],
                    "events": {
                        "onPut": {"enable": true, "trigger": {"workflow": "w"}},
                        "onBatch": [{
                            "enable": true, "path": "/in", "schedule": "*/5 * * * *",
                            "trigger": {"workflow": "w"}
                        }]
                    }
                }]
            })
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, bytes).expect("write config");
            p
        }

        fn write_json(&self, v: &Value) -> PathBuf {
            self.write("c.json", v.to_string().as_bytes())
        }
    }

    /// Sets the value at JSON pointer `ptr` (its parent must exist).
    fn set(v: &mut Value, ptr: &str, x: Value) {
        let (parent, key) = ptr.rsplit_once('/').expect("a pointer");
        match v.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.insert(key.to_string(), x);
            }
            Some(Value::Array(a)) => {
                a[key.parse::<usize>().expect("an index")] = x;
            }
            _ => panic!("no {parent} in the base config"),
        }
    }

    /// `storgate check --config p`: exit code, stdout, stderr.
    fn check(p: &Path) -> (i32, String, String) {
        let out = Command::new(storgate_bin())
            .args(["check", "--config"])
            .arg(p)
            .output()
            .expect("run storgate check");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs check on `v`; asserts exit 2 and exactly the `want` lines, then
    /// the `N problem(s)` trailer.
    fn refuses(s: &Scratch, v: &Value, want: &[String]) {
        let p = s.write_json(v);
        let (code, out, err) = check(&p);
        assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
        let n = want.len();
        let mut lines: Vec<String> = want.to_vec();
        lines.push(format!(
            "{}: {n} problem{}",
            p.display(),
            if n == 1 { "" } else { "s" }
        ));
        assert_eq!(err.lines().collect::<Vec<_>>(), lines, "stderr:\n{err}");
    }

    #[test]
    fn the_base_config_and_every_known_template_name_pass() {
        let s = Scratch::new();
        let mut v = s.base();
        let fields = [
            "path", "filename", "dirname", "state", "size", "owner", "group", "mode", "mtime",
            "atime", "ctime", "inode", "hits",
        ]
        .map(|f| format!("{{{{ item.{f} }}}}"))
        .join("-");
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([
                {"savePath": format!("/out/{fields}")},
                {"savePath": "/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}"},
                {"savePath": "/out/{{ (item.path | splitext)[1] | lower | replace('.', '') | default('x') }}{% for i in range(2) %}{{ loop.index }}{% endfor %}{% if item.size is odd %}o{% endif %}"},
                {"savePath": "/out/#1/{{ item.filename | rsplit(sep='.', maxsplit=1) | first }}", "pathPattern": "^/in/([^/]+)/"},
                {"function": {"exec": ["/bin/sh", "-c", "cat", "{{ item.path | basename }}", "#123456", "{{ source_dir }}"]}, "savePath": "/out/x"},
                {"function": "/resize", "savePath": "/out/y", "timeout": 86400}
            ]),
        );
        set(
            &mut v,
            "/buckets/0/events/onBatch/0/schedule",
            json!("0 0 29 2 *"),
        );
        let (code, out, err) = check(&s.write_json(&v));
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(err.is_empty(), "{err}");
    }

    #[test]
    fn mount_configs_examples_pass_check() {
        // The examples name directories under /srv/storgate-demo; what only
        // this machine lacks (missing directories) is not our concern here,
        // every other problem is.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mount-configs");
        for e in std::fs::read_dir(&dir).expect("mount-configs") {
            let p = e.expect("entry").path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let (code, _, err) = check(&p);
            let other: Vec<&str> = err
                .lines()
                .filter(|l| {
                    !l.contains("does not exist")
                        && !l.contains(" problem")
                        && !l.starts_with("warning: ")
                })
                .collect();
            assert!(other.is_empty(), "{}: {other:?}", p.display());
            assert!(
                code == 0 || err.contains("does not exist"),
                "{}: {err}",
                p.display()
            );
        }
    }

    #[test]
    fn unknown_variable_or_filter_in_a_template() {
        let s = Scratch::new();
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([
                {"savePath": "/out/{{ item.nmae }}"},
                {"savePath": "/out/{{ item.path | basenme }}"},
                {"function": {"exec": ["/bin/cat", "{{ itme.path }}", "{{ item.size | shout }}"]}, "savePath": "/out/x"}
            ]),
        );
        set(
            &mut v,
            "/buckets/0/workflows/0/onComplete",
            json!({"src": {"op": "move", "path": "/out/{% if item.size is od %}a{% endif %}"}}),
        );
        let item_has = "item has path, filename, dirname, state, size, owner, group, mode, mtime, atime, ctime, inode, hits";
        let adds = "storgate adds basename, dirname, relpath, rsplit, splitext to minijinja's built-in filters";
        refuses(
            &s,
            &v,
            &[
                format!("buckets[0].workflows[0].tasks[0].savePath: unknown variable `item.nmae` ({item_has})"),
                format!("buckets[0].workflows[0].tasks[1].savePath: unknown filter `basenme` (did you mean `basename`?) ({adds})"),
                "buckets[0].workflows[0].tasks[2].function.exec[1]: unknown variable `itme` (did you mean `item`?) (templates get item and source_dir)".into(),
                format!("buckets[0].workflows[0].tasks[2].function.exec[2]: unknown filter `shout` ({adds})"),
                "buckets[0].workflows[0].onComplete.src.path: unknown test `od` (after `is`)".into(),
            ],
        );
    }

    #[test]
    fn save_path_onto_a_mount_point() {
        let s = Scratch::new();
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([{"savePath": "/out"}, {"savePath": "//out/"}]),
        );
        set(
            &mut v,
            "/buckets/0/workflows/0/onComplete",
            json!({"src": {"op": "move", "path": "/in"}}),
        );
        refuses(
            &s,
            &v,
            &[
                "buckets[0].workflows[0].tasks[0].savePath: \"/out\" is the mount point itself, not a file inside a mount of bucket \"b\"".into(),
                "buckets[0].workflows[0].tasks[1].savePath: \"//out/\" is the mount point itself, not a file inside a mount of bucket \"b\"".into(),
                "buckets[0].workflows[0].onComplete.src.path: \"/in\" is the mount point itself, not a file inside a mount of bucket \"b\"".into(),
            ],
        );
        // A directory leading to a mount point is the layout too.
        let mut v = s.base();
        set(&mut v, "/buckets/0/mounts/2/mountPoint", json!("/out/deep"));
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([{"savePath": "/out"}]),
        );
        refuses(
            &s,
            &v,
            &["buckets[0].workflows[0].tasks[0].savePath: \"/out\" is a directory holding the mount point /out/deep, not a file inside a mount of bucket \"b\"".into()],
        );
    }

    #[test]
    fn path_components_over_255_bytes() {
        let s = Scratch::new();
        let long = "x".repeat(256);
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/mounts/1/mountPoint",
            json!(format!("/{long}")),
        );
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([{"savePath": format!("/out/{{{{ item.filename }}}}{long}")}]),
        );
        set(
            &mut v,
            "/buckets/0/events/onBatch/0/path",
            json!(format!("/in/{long}")),
        );
        set(
            &mut v,
            "/buckets/0/events/onPut/filter",
            json!({"patterns": [format!("{long}*")]}),
        );
        let head = format!("\"{}\"…", "x".repeat(16));
        refuses(
            &s,
            &v,
            &[
                format!("buckets[0].mounts[1].mountPoint: has a component of 256 bytes ({head}); a file name is at most 255 bytes"),
                format!("buckets[0].workflows[0].tasks[0].savePath: \"/out/{{{{ item.filename }}}}{long}\" has a literal component of 256 bytes; a file name is at most 255 bytes"),
                "buckets[0].events.onPut.filter.patterns[0]: glob of 257 bytes matches only names longer than 255 bytes, which cannot exist".into(),
                format!("buckets[0].events.onBatch[0].path: has a component of 256 bytes ({head}); a file name is at most 255 bytes"),
            ],
        );
        // A local origin path too.
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/mounts/1/originPath",
            json!(format!("{}/{long}", s.path("in"))),
        );
        refuses(
            &s,
            &v,
            &[format!(
                "buckets[0].mounts[1].originPath: has a component of 256 bytes ({head}); a file name is at most 255 bytes"
            )],
        );
    }

    #[test]
    fn cron_schedules_that_never_fire() {
        let s = Scratch::new();
        let mut v = s.base();
        let scan = v["buckets"][0]["events"]["onBatch"][0].clone();
        let mut second = scan.clone();
        second["schedule"] = json!("0 0 30 2 *");
        let mut first = scan;
        first["schedule"] = json!("0 0 31 2 *");
        set(&mut v, "/buckets/0/events/onBatch", json!([first, second]));
        refuses(
            &s,
            &v,
            &[
                "buckets[0].events.onBatch[0].schedule: bad cron expression \"0 0 31 2 *\": it never fires (no date in the next 8 years matches)".into(),
                "buckets[0].events.onBatch[1].schedule: bad cron expression \"0 0 30 2 *\": it never fires (no date in the next 8 years matches)".into(),
            ],
        );
    }

    #[test]
    fn state_dir_overlapping_an_exposed_local_origin() {
        let s = Scratch::new();
        let msg = "clients and workflows of the bucket could read and change storgate's journal and staging files";
        // stateDir inside the root mount's origin.
        let mut v = s.base();
        set(&mut v, "/stateDir", json!(s.path("root/.state")));
        refuses(
            &s,
            &v,
            &[format!(
                "buckets[0].mounts[0].originPath: local origin {} contains stateDir {}: {msg}",
                s.path("root"),
                s.path("root/.state")
            )],
        );
        // stateDir equal to an origin.
        let mut v = s.base();
        set(&mut v, "/stateDir", json!(s.path("in")));
        refuses(
            &s,
            &v,
            &[format!(
                "buckets[0].mounts[1].originPath: local origin {} is stateDir {}: {msg}",
                s.path("in"),
                s.path("in")
            )],
        );
        // An origin inside stateDir.
        std::fs::create_dir(s.path("state/files")).expect("mkdir");
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/mounts/1/originPath",
            json!(s.path("state/files")),
        );
        refuses(
            &s,
            &v,
            &[format!(
                "buckets[0].mounts[1].originPath: local origin {} lies inside stateDir {}: {msg}",
                s.path("state/files"),
                s.path("state")
            )],
        );
        // A hidden mount is only warned about.
        let mut v = s.base();
        set(&mut v, "/stateDir", json!(s.path("out/state")));
        let (code, _, err) = check(&s.write_json(&v));
        assert_eq!(code, 0, "{err}");
        assert!(
            err.starts_with("warning: buckets[0].mounts[2].originPath: local origin"),
            "{err}"
        );
    }

    #[test]
    fn seconds_that_are_not_finite_or_too_large() {
        let s = Scratch::new();
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([
                {"function": "/resize", "savePath": "/out/a", "timeout": 1e19},
                {"function": "/resize", "savePath": "/out/b", "timeout": 86400.5},
                {"function": "/resize", "savePath": "/out/c", "timeout": -1}
            ]),
        );
        set(
            &mut v,
            "/aws_s3",
            json!([{"name": "s3", "bucket": "x", "endpoint": "http://127.0.0.1:9", "timeout": 1e19, "metadataTtl": 1e300}]),
        );
        set(
            &mut v,
            "/distribution",
            json!({"leader": {"termSeconds": 10_000_000_000_000u64}}),
        );
        refuses(
            &s,
            &v,
            &[
                "aws_s3[0].metadataTtl: 1e300 seconds is more than the maximum of 86400 (one day)".into(),
                "aws_s3[0].timeout: 1e19 seconds is more than the maximum of 86400 (one day)".into(),
                "distribution.leader.termSeconds: 10000000000000 is more than the maximum of 86400 (one day)".into(),
                "buckets[0].workflows[0].tasks[0].timeout: 1e19 seconds is more than the maximum of 86400 (one day)".into(),
                "buckets[0].workflows[0].tasks[1].timeout: 86400.5 seconds is more than the maximum of 86400 (one day)".into(),
                "buckets[0].workflows[0].tasks[2].timeout: -1 is not a positive number of seconds".into(),
            ],
        );
    }

    #[test]
    fn bad_watch_keys() {
        let s = Scratch::new();
        let mut v = s.base();
        set(
            &mut v,
            "/aws_s3",
            json!([{"name": "s3", "bucket": "x", "endpoint": "http://127.0.0.1:9"}]),
        );
        set(
            &mut v,
            "/buckets/0/mounts/1/watch",
            json!({"mode": "sometimes", "intervalSeconds": -1}),
        );
        set(
            &mut v,
            "/buckets/0/mounts/2/watch",
            json!({"initial": "now", "intervalSeconds": 1e6}),
        );
        let mounts = v
            .pointer_mut("/buckets/0/mounts")
            .and_then(Value::as_array_mut)
            .expect("mounts");
        mounts.push(
            json!({"mountPoint": "/s3", "originPath": "s3@aws_s3/up", "watch": {"mode": "notify"}}),
        );
        mounts.push(json!({"mountPoint": "/s3b", "originPath": "s3@aws_s3", "watch": {"mode": "poll", "intervalSeconds": 0.5}}));
        let m = "buckets[0].mounts";
        refuses(
            &s,
            &v,
            &[
                format!(
                    "{m}[1].watch.mode: unknown variant `sometimes`, expected one of `auto`, `notify`, `poll`, `off`"
                ),
                format!("{m}[1].watch.intervalSeconds: -1 is not a positive number of seconds"),
                format!(
                    "{m}[2].watch.initial: unknown variant `now`, expected `baseline` or `fire`"
                ),
                format!(
                    "{m}[2].watch.intervalSeconds: 1000000 seconds is more than the maximum of 86400 (one day)"
                ),
                format!(
                    "{m}[3].watch.mode: an S3 origin cannot be watched with inotify (`notify` sees local file systems only); S3 origins are polled: use \"poll\" or \"auto\""
                ),
            ],
        );
    }

    #[test]
    fn other_values_that_would_fail_at_run_time() {
        let s = Scratch::new();
        let long = "n".repeat(256);
        let mut v = s.base();
        set(&mut v, "/buckets/0/name", json!(long));
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks",
            json!([{"function": "/resize image", "savePath": "/out/a"}]),
        );
        set(
            &mut v,
            "/aws_s3",
            json!([{"name": "s3", "bucket": "x", "region": "", "endpoint": "http://127.0.0.1:99999"}]),
        );
        set(
            &mut v,
            "/distribution",
            json!({"leader": {"url": format!("file:///shared/{long}")}}),
        );
        refuses(
            &s,
            &v,
            &[
                "aws_s3[0].endpoint: \"http://127.0.0.1:99999\" has a bad port \"99999\" (use 1–65535)".into(),
                "aws_s3[0].region: \"\" is not a region name (such as us-east-1)".into(),
                format!("distribution.leader.url: \"file:///shared/{long}\" has a component of 256 bytes (\"{}\"…); a file name is at most 255 bytes", "n".repeat(16)),
                "buckets[0].name: is 256 bytes long; a bucket name (a directory of the mount) is at most 255 bytes".into(),
                "buckets[0].workflows[0].tasks[0].function: \"/resize image\": an HTTP function path must not contain spaces or control characters (it becomes part of a URL)".into(),
            ],
        );
    }

    #[test]
    fn a_config_that_is_not_utf8_is_located_by_line_and_column() {
        let s = Scratch::new();
        let p = s.write(
            "latin1.json",
            b"{\n  \"vhost\": \"caf\xe9\",\n  \"buckets\": []\n}\n",
        );
        let (code, _, err) = check(&p);
        assert_eq!(code, 2, "{err}");
        assert_eq!(
            err,
            format!(
                "line 2, column 16: not UTF-8 text (byte 0xe9)\n{}: 1 problem\n",
                p.display()
            )
        );
    }

    #[test]
    fn mount_refuses_the_same_before_mounting() {
        let s = Scratch::new();
        let mut v = s.base();
        set(
            &mut v,
            "/buckets/0/workflows/0/tasks/0/savePath",
            json!("/out/{{ item.nmae }}"),
        );
        let p = s.write_json(&v);
        let mnt = s.path("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        let out = Command::new(storgate_bin())
            .args(["mount", "-f", "--config"])
            .arg(&p)
            .arg(&mnt)
            .output()
            .expect("run storgate mount");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.lines().any(|l| l.starts_with(
                "buckets[0].workflows[0].tasks[0].savePath: unknown variable `item.nmae` (item has path,"
            )),
            "{err}"
        );
    }
}
