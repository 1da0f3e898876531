//! Events and workflows end to end (SPEC §1 scenarios 2 and 3, §4, §5, §8
//! `workflow run`, §9 hostile names), with real kernel mounts, real
//! processes and a loopback HTTP server (`common::http`) for webhooks and
//! HTTP functions:
//! - publish on upload: 1,000 files copied into the mount are published to a
//!   hidden mount, one webhook per file with the documented payload;
//! - files dropped straight into the local origin (write + close, rename in)
//!   are published too;
//! - derivatives: an `exec` task and an HTTP function with the draft's
//!   `_m.jpg` template on `onPut`, removed again on `onDelete`;
//! - `kill -9` with ~2,000 post events pending: a restart replays them all;
//! - pre timing: a failing pre put makes `close` fail with EIO and
//!   quarantines the data, a succeeding one has published before `close`
//!   returns; a failing pre delete keeps the file (EIO), a succeeding one has
//!   archived first; a pre get rewrites the file before the first read;
//! - workflow outputs never fire events, also inside the filter's scope;
//! - hostile file names never write outside the bucket nor kill the daemon;
//!   a literal `..` in a savePath refuses to mount;
//! - `storgate workflow run` (`--dry-run`, success, failure, usage error);
//! - outputs `storgate workflow run` / `batch run` write straight into a
//!   watched local origin fire nothing in a daemon on the same config (the
//!   registry of storgate's own changes is shared through `stateDir`);
//! - `item.hits` counts opens and restarts at a write;
//! - names are bytes: two non-UTF-8 names of the same lossy text are two
//!   items with two outputs.
use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use common::http::{Body, HttpServer, Reply, Request};
use common::*;
use serde_json::{Value, json};

/// Generous deadline for anything the engine does asynchronously.
const DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ helpers ----

/// Every regular file below `dir` (recursively), by path relative to `dir`
/// (lossy UTF-8), with its content. Missing dir = empty.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(base, &p, out);
            } else if ft.is_file() {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if let Ok(b) = fs::read(&p) {
                    out.insert(rel, b);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every directory and file below `dir` (not `dir` itself: the operator's)
/// has no permission bit for group or others.
fn assert_private_below(dir: &Path) {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut seen = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read state dir").flatten() {
            let p = e.path();
            let meta = fs::symlink_metadata(&p).expect("stat");
            if meta.file_type().is_symlink() || meta.file_type().is_socket() {
                continue;
            }
            let mode = meta.permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is mode {:o}",
                p.display(),
                mode & 0o7777
            );
            seen += 1;
            if meta.is_dir() {
                todo.push(p);
            }
        }
    }
    assert!(
        seen > 3,
        "state dir {} has almost nothing in it",
        dir.display()
    );
}

/// Names in `dir` (not recursive; missing dir = empty).
fn entries(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {} ({e})", p.display(), errno_name(errno(&e))))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the storgate binary with `args` (60 s deadline).
fn storgate<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let mut cmd = Command::new(storgate_bin());
    cmd.args(args);
    run_timeout(&mut cmd, Duration::from_secs(60))
}

fn show(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// `item.path` of every webhook payload under `prefix` whose `hook` is `hook`.
fn hook_paths(srv: &HttpServer, prefix: &str, hook: &str) -> Vec<String> {
    paths_in(&srv.requests(), prefix, hook)
}

/// `item.path` of the payloads among `reqs` under `prefix` with this `hook`
/// (bodies that are not JSON are skipped here; `json_bodies` reports them).
fn paths_in(reqs: &[Request], prefix: &str, hook: &str) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.path.starts_with(prefix))
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|v| v["hook"] == hook)
        .filter_map(|v| v["item"]["path"].as_str().map(str::to_string))
        .collect()
}

/// Waits (up to `DEADLINE`) until a `hook` payload under `prefix` arrived
/// for each of `paths`; panics naming the missing ones.
#[track_caller]
fn wait_hooks(srv: &HttpServer, prefix: &str, hook: &str, paths: &[String]) {
    wait_hooks_for(srv, prefix, hook, paths, DEADLINE)
}

/// `wait_hooks` with its own deadline. Parses each request once (the check
/// runs at every arrival, thousands of times in the big tests).
#[track_caller]
fn wait_hooks_for(
    srv: &HttpServer,
    prefix: &str,
    hook: &str,
    paths: &[String],
    deadline: Duration,
) {
    let want: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    let mut got: BTreeSet<String> = BTreeSet::new();
    let mut upto = 0;
    let ok = srv.wait_until(deadline, |reqs| {
        got.extend(paths_in(&reqs[upto..], prefix, hook));
        upto = reqs.len();
        want.iter().all(|p| got.contains(*p))
    });
    if !ok {
        let got: BTreeSet<String> = hook_paths(srv, prefix, hook).into_iter().collect();
        let missing: Vec<&&str> = want.iter().filter(|p| !got.contains(**p)).collect();
        panic!(
            "timed out after {deadline:?} waiting for {hook} webhooks under {prefix}; {} of {} missing, e.g. {:?}\n{}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)],
            hooks_summary(srv, prefix)
        );
    }
}

/// Summary of the webhook payloads received under `prefix`, for messages.
fn hooks_summary(srv: &HttpServer, prefix: &str) -> String {
    let v = srv.json_bodies(prefix);
    let mut s = format!("{} webhook calls under {prefix}", v.len());
    for p in v.iter().take(20) {
        s.push_str(&format!(
            "\n  {} {} error={}",
            p["hook"], p["item"]["path"], p["error"]
        ));
    }
    s
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// A local mount of `origin` at `mount_point`, hidden or exposed.
fn local(mount_point: &str, origin: &str, expose: bool) -> Value {
    json!({"mountPoint": mount_point, "originPath": origin, "expose": expose})
}

/// A file-system event object.
fn event(filter: Value, workflow: &str, timing: &str, hooks: Value) -> Value {
    let mut e = json!({
        "enable": true,
        "trigger": {"workflow": workflow, "timing": timing},
        "webhook": hooks,
    });
    if !filter.is_null() {
        e["filter"] = filter;
    }
    e
}

/// A bucket (all access enabled) with mounts, events and workflows.
fn bucket_with(name: &str, mounts: Vec<Value>, events: Value, workflows: Value) -> Value {
    let mut b = bucket(name, mounts);
    b["events"] = events;
    b["workflows"] = workflows;
    b
}

/// The draft's derivative name (SPEC §5.1), below `/thumbs`.
const THUMB: &str = "/thumbs/{{ item.path | relpath(source_dir) | dirname }}/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}";

// ------------------------------------------------- scenario 2: publish ----

/// Bucket `media`: `/in` (exposed) and `/pub` (hidden); onPut post copies
/// `/in/X` to `/pub/X` and calls `hook` when an item completes.
fn publish_config(hook: &str) -> Value {
    config(vec![bucket_with(
        "media",
        vec![
            local("/in", "{root}/in", true),
            local("/pub", "{root}/pub", false),
        ],
        json!({"onPut": event(Value::Null, "publish", "post", json!({"onItemCompleted": hook}))}),
        json!([{"name": "publish", "tasks": [
            {"savePath": "/pub/{{ item.path | relpath(source_dir) }}"}
        ]}]),
    )])
}

fn batch_content(i: usize) -> Vec<u8> {
    format!("file {i} of the batch\n")
        .repeat(i % 7 + 1)
        .into_bytes()
}

#[test]
fn publish_on_upload_1000_files() {
    let srv = HttpServer::start();
    let root = scratch();
    let src = root.path().join("src/batch");
    fs::create_dir_all(&src).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("f{i:04}.txt")), batch_content(i)).unwrap();
    }
    let m = Mount::start_in(
        root,
        &publish_config(&format!("{}/hook", srv.url())),
        &["--bucket", "media"],
    );
    run_ok(Command::new("cp").arg("-r").arg(&src).arg(m.at("in")));
    assert_eq!(
        fs::read_dir(m.scratch_path("in/batch")).unwrap().count(),
        1000,
        "cp wrote 1,000 files into the /in origin"
    );

    let pub_dir = m.scratch_path("pub/batch");
    let published = || {
        entries(&pub_dir)
            .iter()
            .filter(|n| {
                let n = n.to_string_lossy();
                n.len() == 9 && n.starts_with('f') && n.ends_with(".txt")
            })
            .count()
    };
    poll(
        DEADLINE,
        Duration::from_millis(100),
        "1,000 files published to the hidden /pub origin",
        || published() == 1000,
        || format!("{} published so far", published()),
    );
    let out = files_under(&pub_dir);
    for i in 0..1000 {
        let name = format!("f{i:04}.txt");
        let got = out
            .get(&name)
            .unwrap_or_else(|| panic!("pub/batch/{name} missing"));
        assert!(
            *got == batch_content(i),
            "pub/batch/{name} differs from the source"
        );
    }
    assert_eq!(
        out.len(),
        1000,
        "nothing else (no temp files) left in pub/batch"
    );

    let want: BTreeSet<String> = (0..1000)
        .map(|i| format!("/in/batch/f{i:04}.txt"))
        .collect();
    let paths: Vec<String> = want.iter().cloned().collect();
    wait_hooks(&srv, "/hook", "onItemCompleted", &paths);
    // Late duplicates would arrive right behind the last completion; give
    // them a moment before counting (absence cannot be polled for).
    thread::sleep(Duration::from_secs(1));
    let reqs = srv.requests_to("/hook");
    assert_eq!(reqs.len(), 1000, "exactly one webhook call per file");
    let mut seen = BTreeSet::new();
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "webhook Content-Type: {:?}",
            r.header("content-type")
        );
        let v = r.json();
        let path = v["item"]["path"].as_str().expect("item.path").to_string();
        assert!(seen.insert(path.clone()), "{path} reported twice");
        let i: usize = path["/in/batch/f".len()..path.len() - 4].parse().unwrap();
        assert_eq!(v["event"], "onPut", "{v}");
        assert_eq!(v["bucket"], "media", "{v}");
        assert_eq!(v["workflow"], "publish", "{v}");
        assert_eq!(v["hook"], "onItemCompleted", "{v}");
        assert!(v["error"].is_null(), "{v}");
        assert_eq!(v["item"]["filename"], format!("f{i:04}.txt"), "{v}");
        assert_eq!(v["item"]["dirname"], "/in/batch", "{v}");
        assert_eq!(v["item"]["state"], "file", "{v}");
        assert_eq!(v["item"]["size"], batch_content(i).len() as u64, "{v}");
        assert_eq!(
            v["outputs"],
            json!([{"savePath": format!("/pub/batch/f{i:04}.txt"), "status": "written"}]),
            "{v}"
        );
    }
    assert_eq!(seen, want);
}

#[test]
fn files_dropped_into_the_local_origin_are_published() {
    let srv = HttpServer::start();
    let root = scratch();
    fs::create_dir_all(root.path().join("in/sub")).unwrap();
    fs::create_dir_all(root.path().join("outside")).unwrap();
    let m = Mount::start_in(
        root,
        &publish_config(&format!("{}/hook", srv.url())),
        &["--bucket", "media"],
    );
    // Plain write + close straight into the origin (an FTP server's upload).
    fs::write(m.scratch_path("in/direct.txt"), b"direct write\n").unwrap();
    // Written elsewhere under a temp name, then renamed into the origin.
    let tmp = m.scratch_path("outside/upload.part");
    fs::write(&tmp, b"renamed in\n").unwrap();
    fs::rename(&tmp, m.scratch_path("in/moved.txt")).unwrap();
    // Into an existing subdirectory of the origin.
    let mut f = fs::File::create(m.scratch_path("in/sub/deep.txt")).unwrap();
    f.write_all(b"deep ").unwrap();
    f.write_all(b"down\n").unwrap();
    drop(f);

    let want = [
        ("direct.txt", &b"direct write\n"[..]),
        ("moved.txt", b"renamed in\n"),
        ("sub/deep.txt", b"deep down\n"),
    ];
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "the three dropped files published to /pub",
        || {
            let out = files_under(&m.scratch_path("pub"));
            want.iter()
                .all(|(n, c)| out.get(*n).is_some_and(|b| b == c))
        },
        || format!("pub: {:?}", files_under(&m.scratch_path("pub")).keys()),
    );
    let paths: Vec<String> = want.iter().map(|(n, _)| format!("/in/{n}")).collect();
    wait_hooks(&srv, "/hook", "onItemCompleted", &paths);
    assert!(
        !hook_paths(&srv, "/hook", "onItemCompleted")
            .iter()
            .any(|p| p.contains("upload.part")),
        "the temp file outside the origin fired nothing"
    );
    assert_eq!(
        text(&read(&m.at("in/moved.txt"))),
        "renamed in\n",
        "and the mount shows the dropped file"
    );
}

// --------------------------------------------- scenario 3: derivatives ----

#[test]
fn derivatives_on_put_and_removed_on_delete() {
    let srv = HttpServer::start();
    srv.route("/convert", Reply::ok(Body::Prepend(b"converted:".to_vec())));
    // SPEC §5 has no "delete these outputs" function (onComplete acts on the
    // source, which onDelete has already removed), so the cleanup is an
    // `exec` task running `rm -fv` on the derivatives' origin paths, computed
    // with the same templates; its stdout (rm's report) is the task's output,
    // saved to a hidden /log mount.
    // Note: that `rm` is an external change to the watched /newimg and
    // /thumbs origins, so it fires onDelete for the derivatives as well; the
    // templates then name files that do not exist and `rm -f` is harmless.
    let cfg = json!({
        "stateDir": "{root}/state",
        "throttling": {"enable": false},
        "functionBaseUrl": srv.url(),
        "buckets": [bucket_with(
            "media",
            vec![
                local("/img", "{root}/img", true),
                local("/newimg", "{root}/newimg", true),
                local("/thumbs", "{root}/thumbs", true),
                local("/log", "{root}/log", false),
            ],
            json!({
                "onPut": event(json!({"patterns": ["*.jpg"]}), "derive", "post",
                    json!({"onItemCompleted": format!("{}/hook/put", srv.url()),
                           "onItemAborted": format!("{}/hook/put", srv.url())})),
                "onDelete": event(json!({"patterns": ["*.jpg"]}), "underive", "post",
                    json!({"onItemCompleted": format!("{}/hook/delete", srv.url())})),
            }),
            json!([
                {"name": "derive", "tasks": [
                    {"function": {"exec": ["tr", "a-z", "A-Z"]}, "savePath": "/newimg/{{ item.path }}"},
                    {"function": "/convert", "savePath": THUMB},
                ]},
                {"name": "underive", "tasks": [
                    {"function": {"exec": [
                        "rm", "-fv", "--",
                        "{root}/newimg{{ item.path }}",
                        format!("{{root}}{THUMB}"),
                    ]}, "savePath": "/log{{ item.path }}.deleted"},
                ]},
            ]),
        )],
    });
    let m = Mount::start(&cfg, &["--bucket", "media"]);
    fs::write(m.at("img/c.png"), b"not a jpeg\n").unwrap();
    fs::create_dir(m.at("img/cats")).unwrap();
    let sources: [(&str, &[u8]); 3] = [
        ("cats/a.jpg", b"cat picture a\n"),
        ("b.jpg", b"bee\n"),
        ("x.y.jpg", b"dotted name\n"),
    ];
    for (n, c) in sources {
        fs::write(m.at(&format!("img/{n}")), c).unwrap();
    }

    let expected: BTreeMap<String, Vec<u8>> = [
        ("newimg/img/cats/a.jpg", b"CAT PICTURE A\n".to_vec()),
        ("newimg/img/b.jpg", b"BEE\n".to_vec()),
        ("newimg/img/x.y.jpg", b"DOTTED NAME\n".to_vec()),
        ("thumbs/cats/a_m.jpg", b"converted:cat picture a\n".to_vec()),
        ("thumbs/b_m.jpg", b"converted:bee\n".to_vec()),
        ("thumbs/x.y_m.jpg", b"converted:dotted name\n".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let derivatives = || {
        let mut all = BTreeMap::new();
        for d in ["newimg", "thumbs"] {
            for (k, v) in files_under(&m.scratch_path(d)) {
                all.insert(format!("{d}/{k}"), v);
            }
        }
        all
    };
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "both derivatives of each .jpg",
        || {
            expected
                .iter()
                .all(|(k, v)| derivatives().get(k) == Some(v))
        },
        || format!("{:?}\n{}", derivatives(), hooks_summary(&srv, "/hook")),
    );
    let paths: Vec<String> = sources.iter().map(|(n, _)| format!("/img/{n}")).collect();
    wait_hooks(&srv, "/hook/put", "onItemCompleted", &paths);
    assert_eq!(
        derivatives(),
        expected,
        "exactly these derivatives (none for c.png)"
    );
    let conv = srv.requests_to("/convert");
    assert_eq!(conv.len(), 3, "one /convert call per .jpg");
    let bodies: BTreeSet<Vec<u8>> = conv.iter().map(|r| r.body.clone()).collect();
    let want: BTreeSet<Vec<u8>> = sources.iter().map(|(_, c)| c.to_vec()).collect();
    assert_eq!(bodies, want, "/convert got the source bytes");
    assert!(conv.iter().all(|r| r.method == "POST"));
    assert_eq!(
        read(&m.at("newimg/img/cats/a.jpg")),
        b"CAT PICTURE A\n",
        "derivative visible through the mount"
    );
    assert_eq!(
        read(&m.at("thumbs/cats/a_m.jpg")),
        b"converted:cat picture a\n"
    );

    // onDelete: rm through the mount removes the derivatives.
    fs::remove_file(m.at("img/cats/a.jpg")).unwrap();
    let rm = run_timeout(
        Command::new("rm").arg(m.at("img/b.jpg")),
        Duration::from_secs(60),
    );
    assert!(rm.status.success(), "rm img/b.jpg: {}", show(&rm));
    let gone = [
        "newimg/img/cats/a.jpg",
        "thumbs/cats/a_m.jpg",
        "newimg/img/b.jpg",
        "thumbs/b_m.jpg",
    ];
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "derivatives of the deleted sources removed",
        || gone.iter().all(|g| !m.scratch_path(g).exists()),
        || format!("{:?}\n{}", derivatives(), hooks_summary(&srv, "/hook")),
    );
    let left: BTreeSet<String> = derivatives().into_keys().collect();
    assert_eq!(
        left,
        ["newimg/img/x.y.jpg", "thumbs/x.y_m.jpg"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "the untouched source keeps its derivatives"
    );
    let deleted = ["/img/cats/a.jpg".to_string(), "/img/b.jpg".to_string()];
    wait_hooks(&srv, "/hook/delete", "onItemCompleted", &deleted);
    for n in ["cats/a.jpg", "b.jpg"] {
        let log = text(&read(&m.scratch_path(&format!("log/img/{n}.deleted"))));
        assert!(log.contains("removed"), "rm -v report for {n}: {log:?}");
    }
}

// ------------------------------------------------ crash and replay ----

#[test]
fn kill_9_with_2000_pending_post_events_replays_them_all() {
    const N: usize = 2000;
    let srv = HttpServer::start();
    let outer = scratch();
    let o = outer.path();
    for d in ["in", "out", "state"] {
        fs::create_dir_all(o.join(d)).unwrap();
    }
    let gate = o.join("gate");
    let od = o.to_str().unwrap();
    // The workers wait at the gate until every file has been written, then
    // take ~20 ms per item, with 2 workers: plenty stays pending at the kill.
    let cfg = json!({
        "stateDir": format!("{od}/state"),
        "throttling": {"enable": false},
        "buckets": [bucket_with(
            "b",
            vec![
                local("/in", &format!("{od}/in"), true),
                local("/out", &format!("{od}/out"), false),
            ],
            json!({"onPut": event(Value::Null, "slow", "post",
                json!({"onItemCompleted": format!("{}/hook", srv.url())}))}),
            json!([{"name": "slow", "tasks": [{
                "function": {"exec": [
                    "sh", "-c",
                    "while [ ! -e \"$0\" ]; do sleep 0.05; done; sleep 0.02; exec cat",
                    gate.to_str().unwrap(),
                ]},
                "savePath": "/out/{{ item.filename }}",
                "timeout": 300,
            }]}]),
        )],
    });
    let content = |i: usize| format!("pending item {i}\n").into_bytes();
    let env = [("STORGATE_WORKERS", "2")];

    let mut m1 = Mount::start_in_env(scratch(), &cfg, &["--bucket", "b"], &env);
    m1.extend_watchdog(300);
    for i in 0..N {
        let p = m1.at(&format!("in/f{i:04}"));
        fs::write(&p, content(i)).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    fs::write(&gate, b"").unwrap();
    assert!(
        srv.wait_path("/hook", 100, DEADLINE),
        "100 items completed before the kill; {}",
        hooks_summary(&srv, "/hook")
    );
    let stopped = m1.stop_with(libc::SIGKILL);
    assert!(stopped.status.is_some(), "daemon died of SIGKILL");
    let at_kill = srv.count_path("/hook");
    assert!(
        at_kill < N / 2,
        "test premise: most events still pending at the kill ({at_kill} completed)"
    );
    assert!(
        o.join("state/journal").is_dir(),
        "post events journaled under STATEDIR/journal"
    );

    let mut m2 = Mount::start_in_env(scratch(), &cfg, &["--bucket", "b"], &env);
    m2.extend_watchdog(300);
    let paths: Vec<String> = (0..N).map(|i| format!("/in/f{i:04}")).collect();
    wait_hooks_for(
        &srv,
        "/hook",
        "onItemCompleted",
        &paths,
        Duration::from_secs(240),
    );
    let out = files_under(&o.join("out"));
    for i in 0..N {
        let name = format!("f{i:04}");
        assert!(
            out.get(&name).is_some_and(|b| *b == content(i)),
            "output out/{name} missing or wrong ({} outputs)",
            out.len()
        );
    }
    assert!(m2.pid().is_some_and(alive), "restarted daemon still alive");
}

// ------------------------------------------------------- pre timing ----

/// `close(2)` of a file's fd, returning its errno (0 = success).
fn close_errno(f: fs::File) -> i32 {
    let fd = f.into_raw_fd();
    // SAFETY: fd is owned and closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        0
    } else {
        errno(&std::io::Error::last_os_error())
    }
}

/// Files in `dir` named `<stem>.<unix-ms>` with content `c`.
fn quarantined(dir: &Path, stem: &str, c: &[u8]) -> Vec<String> {
    entries(dir)
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(stem)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|ms| ms.len() >= 13 && ms.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|n| fs::read(dir.join(n)).is_ok_and(|b| b == c))
        .collect()
}

#[test]
fn pre_put_failure_is_eio_on_close_and_quarantined() {
    let root = scratch();
    put(&root.path().join("bad/old.txt"), "old\n");
    put(&root.path().join("src.txt"), "copied by cp\n");
    let cfg = config(vec![
        bucket_with(
            "bad",
            vec![
                root_mount("{root}/bad"),
                local("/pub", "{root}/badpub", false),
            ],
            json!({"onPut": event(Value::Null, "fail", "pre", json!({}))}),
            json!([{"name": "fail", "tasks": [
                {"function": {"exec": ["false"]}, "savePath": "/pub/{{ item.filename }}"}
            ]}]),
        ),
        bucket_with(
            "good",
            vec![
                root_mount("{root}/good"),
                local("/pub", "{root}/goodpub", false),
            ],
            json!({"onPut": event(Value::Null, "copy", "pre", json!({}))}),
            json!([{"name": "copy", "tasks": [{"savePath": "/pub/{{ item.filename }}"}]}]),
        ),
    ]);
    let m = Mount::start_in(root, &cfg, &[]);
    let q = m.scratch_path("state/quarantine/bad");

    // A new file: write succeeds (staged), close fails with EIO.
    let mut f = expect_ok(
        open_raw(
            &m.at("bad/a.txt"),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        ),
        "create bad/a.txt",
    );
    f.write_all(b"quarantined payload\n").unwrap();
    let e = close_errno(f);
    assert_eq!(
        e,
        libc::EIO,
        "close after a failing pre put gave {}",
        if e == 0 { "success" } else { errno_name(e) }
    );
    assert!(
        !m.scratch_path("bad/a.txt").exists(),
        "nothing published in the origin"
    );
    expect_errno(
        fs::symlink_metadata(m.at("bad/a.txt")),
        libc::ENOENT,
        "bad/a.txt through the mount",
    );
    assert_eq!(
        quarantined(&q, "a.txt", b"quarantined payload\n").len(),
        1,
        "quarantine/bad/a.txt.<unix-ms> holds the data; quarantine: {:?}",
        files_under(&m.scratch_path("state/quarantine"))
    );

    // SPEC §9.1: everything the daemon keeps under stateDir — the staged and
    // quarantined client data above included — is root's alone.
    assert_private_below(&m.scratch_path("state"));

    // Overwriting an existing file: it keeps its old content.
    let mut f = expect_ok(
        open_raw(&m.at("bad/old.txt"), libc::O_WRONLY | libc::O_TRUNC, 0),
        "open bad/old.txt for overwrite",
    );
    f.write_all(b"new\n").unwrap();
    assert_eq!(close_errno(f), libc::EIO, "close of the overwrite");
    assert_eq!(read(&m.scratch_path("bad/old.txt")), b"old\n");
    assert_eq!(read(&m.at("bad/old.txt")), b"old\n");
    assert_eq!(
        quarantined(&q, "old.txt", b"new\n").len(),
        1,
        "quarantine/bad/old.txt.<unix-ms>; quarantine: {:?}",
        files_under(&m.scratch_path("state/quarantine"))
    );

    // cp sees the failure too.
    let cp = run_timeout(
        Command::new("cp")
            .arg(m.scratch_path("src.txt"))
            .arg(m.at("bad/c.txt")),
        Duration::from_secs(60),
    );
    assert!(!cp.status.success(), "cp into bad must fail: {}", show(&cp));
    assert!(!m.scratch_path("bad/c.txt").exists());
    assert!(
        files_under(&m.scratch_path("badpub")).is_empty(),
        "the failing workflow published nothing"
    );

    // A succeeding pre put: published before close returns.
    let mut f = expect_ok(
        open_raw(
            &m.at("good/g.txt"),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        ),
        "create good/g.txt",
    );
    f.write_all(b"good data\n").unwrap();
    assert_eq!(close_errno(f), 0, "close after a succeeding pre put");
    assert_eq!(read(&m.scratch_path("good/g.txt")), b"good data\n");
    assert_eq!(
        read(&m.scratch_path("goodpub/g.txt")),
        b"good data\n",
        "output written before close returned"
    );
    assert_eq!(read(&m.at("good/g.txt")), b"good data\n");
    assert!(
        files_under(&m.scratch_path("state/quarantine/good")).is_empty(),
        "nothing quarantined for the good bucket"
    );
}

#[test]
fn pre_delete_failure_keeps_the_file_and_success_archives_first() {
    let root = scratch();
    put(&root.path().join("keep/x.txt"), "keep me\n");
    put(&root.path().join("arch/y.txt"), "archive me\n");
    let cfg = config(vec![
        bucket_with(
            "keep",
            vec![
                root_mount("{root}/keep"),
                local("/arch", "{root}/keeparch", false),
            ],
            json!({"onDelete": event(Value::Null, "fail", "pre", json!({}))}),
            json!([{"name": "fail", "tasks": [
                {"function": {"exec": ["false"]}, "savePath": "/arch/{{ item.filename }}"}
            ]}]),
        ),
        bucket_with(
            "arch",
            vec![
                root_mount("{root}/arch"),
                local("/saved", "{root}/saved", false),
            ],
            json!({"onDelete": event(Value::Null, "save", "pre", json!({}))}),
            json!([{"name": "save", "tasks": [{"savePath": "/saved/{{ item.filename }}"}]}]),
        ),
    ]);
    let m = Mount::start_in(root, &cfg, &[]);

    expect_errno(
        fs::remove_file(m.at("keep/x.txt")),
        libc::EIO,
        "unlink with a failing pre delete",
    );
    let rm = run_timeout(
        Command::new("rm").arg("-f").arg(m.at("keep/x.txt")),
        Duration::from_secs(60),
    );
    assert!(!rm.status.success(), "rm -f must fail: {}", show(&rm));
    assert_eq!(read(&m.scratch_path("keep/x.txt")), b"keep me\n");
    assert_eq!(read(&m.at("keep/x.txt")), b"keep me\n");
    assert!(files_under(&m.scratch_path("keeparch")).is_empty());

    expect_ok(
        fs::remove_file(m.at("arch/y.txt")),
        "unlink with a succeeding pre delete",
    );
    assert_eq!(
        read(&m.scratch_path("saved/y.txt")),
        b"archive me\n",
        "archived before unlink returned"
    );
    assert!(!m.scratch_path("arch/y.txt").exists());
}

#[test]
fn pre_get_rewrites_the_file_before_the_first_read() {
    let root = scratch();
    put(&root.path().join("o/doc.txt"), "hello pre get\n");
    let cfg = config(vec![bucket_with(
        "b",
        vec![root_mount("{root}/o")],
        json!({"onGet": event(Value::Null, "upper", "pre", json!({}))}),
        json!([{"name": "upper", "tasks": [
            {"function": {"exec": ["tr", "a-z", "A-Z"]}, "savePath": "{{ item.path }}"}
        ]}]),
    )]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    let out = run_ok(Command::new("cat").arg(m.at("doc.txt")));
    assert_eq!(out, "HELLO PRE GET\n", "the very first cat sees the output");
    assert_eq!(read(&m.scratch_path("o/doc.txt")), b"HELLO PRE GET\n");
}

// ---------------------------------------------------------- no loops ----

#[test]
fn workflow_outputs_inside_the_filter_scope_do_not_loop() {
    let srv = HttpServer::start();
    let cfg = config(vec![bucket_with(
        "b",
        vec![local("/in", "{root}/in", true)],
        json!({"onPut": event(json!({"patterns": ["*"]}), "copy", "post",
            json!({"onItemCompleted": format!("{}/hook", srv.url()),
                   "onItemAborted": format!("{}/hook", srv.url())}))}),
        json!([{"name": "copy", "tasks": [{"savePath": "/in/{{ item.filename }}.copy"}]}]),
    )]);
    let m = Mount::start(&cfg, &["--bucket", "b"]);
    fs::write(m.at("in/a.txt"), b"through the mount\n").unwrap();
    // Also a file dropped into the watched origin directly.
    fs::write(m.scratch_path("in/b.txt"), b"into the origin\n").unwrap();
    assert!(
        srv.wait_path("/hook", 2, DEADLINE),
        "two items completed; {}",
        hooks_summary(&srv, "/hook")
    );
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "a.txt.copy and b.txt.copy",
        || m.scratch_path("in/a.txt.copy").exists() && m.scratch_path("in/b.txt.copy").exists(),
        || format!("{:?}", entries(&m.scratch_path("in"))),
    );
    // A loop would show within moments; absence can only be checked by
    // waiting a little.
    thread::sleep(Duration::from_secs(3));
    let names: BTreeSet<String> = entries(&m.scratch_path("in"))
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["a.txt", "a.txt.copy", "b.txt", "b.txt.copy"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "exactly one output per source, no .copy.copy"
    );
    let paths: BTreeSet<String> = hook_paths(&srv, "/hook", "onItemCompleted")
        .into_iter()
        .collect();
    assert_eq!(
        srv.count_path("/hook"),
        2,
        "{}",
        hooks_summary(&srv, "/hook")
    );
    assert_eq!(
        paths,
        ["/in/a.txt", "/in/b.txt"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        read(&m.scratch_path("in/a.txt.copy")),
        b"through the mount\n"
    );
    assert_eq!(read(&m.scratch_path("in/b.txt.copy")), b"into the origin\n");
}

// ---------------------------------------------------- hostile names ----

#[test]
fn hostile_names_stay_inside_and_the_daemon_lives() {
    let srv = HttpServer::start();
    let pid = std::process::id();
    let hooks = |p: &str| {
        json!({"onItemCompleted": format!("{}/{p}", srv.url()),
               "onItemAborted": format!("{}/{p}", srv.url())})
    };
    let cfg = config(vec![
        // Plain name substitution.
        bucket_with(
            "h1",
            vec![
                local("/in", "{root}/h1in", true),
                local("/pub", "{root}/h1pub", false),
            ],
            json!({"onPut": event(json!({"hidden": true}), "pub", "post", hooks("h1"))}),
            json!([{"name": "pub", "tasks": [{"savePath": "/pub/{{ item.filename }}"}]}]),
        ),
        // `_` becomes `/`, so names can smuggle `..` components into the
        // rendered path: those items must abort.
        bucket_with(
            "h2",
            vec![
                local("/in", "{root}/h2in", true),
                local("/pub", "{root}/h2pub", false),
            ],
            json!({"onPut": event(json!({"hidden": true}), "pub", "post", hooks("h2"))}),
            json!([{"name": "pub", "tasks": [
                {"savePath": "/pub/{{ item.filename | replace('_', '/') }}"}
            ]}]),
        ),
    ]);
    let m = Mount::start(&cfg, &[]);
    let daemon = m.pid().unwrap();

    let long = format!("{}.txt", "L".repeat(251));
    assert_eq!(long.len(), 255);
    let h1_names: Vec<String> = vec![
        "new\nline.txt".into(),
        "quote\"s'and`back`.txt".into(),
        "{{ item.size }}".into(),
        "{% if true %}x{% endif %}{# c".into(),
        "$(touch sgpwned)".into(),
        "a;touch sgpwned".into(),
        "-rf".into(),
        " leading space".into(),
        "tab\there".into(),
        "..hidden".into(),
        "%2e%2e%2fetc".into(),
        "\\..\\..\\win".into(),
        "ünïcødé ✓.txt".into(),
        long,
    ];
    let non_utf8 = OsStr::from_bytes(b"bad\xff\xfename.txt");
    let content = |n: &str| format!("content of {n:?}\n").into_bytes();
    for n in &h1_names {
        let p = m.at("h1/in").join(n);
        fs::write(&p, content(n)).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    }
    fs::write(m.at("h1/in").join(non_utf8), b"non-utf8\n").unwrap();

    let esc1 = format!("sgesc-{pid}");
    let esc2 = format!("sgup-{pid}");
    let h2_ok = [("a_b.txt", "a/b.txt"), ("__double", "double")];
    let h2_bad = [format!(".._.._.._{esc1}"), format!("x_.._.._{esc2}")];
    for (n, _) in h2_ok {
        fs::write(m.at("h2/in").join(n), content(n)).unwrap();
    }
    for n in &h2_bad {
        fs::write(m.at("h2/in").join(n), content(n)).unwrap();
    }

    // Wait for every item's outcome.
    let h1_paths: Vec<String> = h1_names.iter().map(|n| format!("/in/{n}")).collect();
    wait_hooks(&srv, "/h1", "onItemCompleted", &h1_paths);
    // Non-UTF-8: either published under the lossy name (U+FFFD) or aborted;
    // either way the item ends with a webhook.
    let lossy = non_utf8.to_string_lossy().into_owned();
    let non_utf8_hook = |reqs: &[Request]| {
        ["onItemCompleted", "onItemAborted"].iter().any(|h| {
            paths_in(reqs, "/h1", h)
                .iter()
                .any(|p| p.starts_with("/in/bad") && p.ends_with("name.txt"))
        })
    };
    assert!(
        srv.wait_until(DEADLINE, non_utf8_hook),
        "a webhook for the non-UTF-8 name; {}",
        hooks_summary(&srv, "/h1")
    );
    let ok_paths: Vec<String> = h2_ok.iter().map(|(n, _)| format!("/in/{n}")).collect();
    wait_hooks(&srv, "/h2", "onItemCompleted", &ok_paths);
    let bad_paths: Vec<String> = h2_bad.iter().map(|n| format!("/in/{n}")).collect();
    wait_hooks(&srv, "/h2", "onItemAborted", &bad_paths);
    for v in srv.json_bodies("/h2") {
        if v["hook"] == "onItemAborted" {
            assert!(v["error"].is_string(), "aborted payload has an error: {v}");
        }
    }
    assert!(
        hook_paths(&srv, "/h2", "onItemCompleted")
            .iter()
            .all(|p| !h2_bad.iter().any(|b| p.ends_with(b.as_str()))),
        "no `..` item completed"
    );

    // Outputs: the same names for h1; lossy or nothing for the non-UTF-8 one.
    let h1pub = files_under(&m.scratch_path("h1pub"));
    for n in &h1_names {
        assert_eq!(
            h1pub.get(n.as_str()).map(|b| text(b)),
            Some(text(&content(n))),
            "h1pub/{n:?}"
        );
    }
    let mut extra: Vec<&String> = h1pub.keys().filter(|k| !h1_names.contains(k)).collect();
    extra.retain(|k| **k != lossy);
    assert!(extra.is_empty(), "unexpected outputs in h1pub: {extra:?}");
    if let Some(b) = h1pub.get(&lossy) {
        assert_eq!(b, b"non-utf8\n", "lossy-named output keeps the content");
    }
    let h2pub: BTreeSet<String> = files_under(&m.scratch_path("h2pub")).into_keys().collect();
    assert_eq!(
        h2pub,
        h2_ok.iter().map(|(_, o)| o.to_string()).collect(),
        "h2 outputs"
    );

    // Nothing outside the origins: the scratch root holds only what the
    // harness and the config made, and no escape target exists anywhere.
    let top: BTreeSet<String> = entries(m.root.path())
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    let allowed: BTreeSet<String> = [
        "mnt",
        "state",
        "storgate.json",
        "storgate.log",
        "h1in",
        "h1pub",
        "h2in",
        "h2pub",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(
        top.is_subset(&allowed),
        "unexpected entries in the scratch root: {:?}",
        top.difference(&allowed).collect::<Vec<_>>()
    );
    let cwd = std::env::current_dir().unwrap();
    for dir in [
        PathBuf::from("/"),
        PathBuf::from("/tmp"),
        m.root.path().to_path_buf(),
        cwd.clone(),
    ] {
        for n in [esc1.as_str(), esc2.as_str()] {
            assert!(!dir.join(n).exists(), "{} escaped", dir.join(n).display());
        }
    }
    for dir in [cwd, m.root.path().to_path_buf(), PathBuf::from("/tmp")] {
        assert!(
            !dir.join("sgpwned").exists(),
            "a name was run by a shell: {}",
            dir.join("sgpwned").display()
        );
    }

    // The daemon lives and still works.
    assert!(alive(daemon), "daemon died");
    let ls = names(&m.at("h1/in"));
    assert_eq!(ls.len(), h1_names.len() + 1, "mount still answers: {ls:?}");
    fs::write(m.at("h1/in/alive.txt"), b"still here\n").unwrap();
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "a later item is still published",
        || m.scratch_path("h1pub/alive.txt").exists(),
        || hooks_summary(&srv, "/h1"),
    );
}

#[test]
fn literal_dotdot_in_save_path_refuses_to_mount() {
    let cfg = config(vec![bucket_with(
        "b",
        vec![
            local("/in", "{root}/in", true),
            local("/pub", "{root}/pub", false),
        ],
        json!({"onPut": event(Value::Null, "esc", "post", json!({}))}),
        json!([{"name": "esc", "tasks": [{"savePath": "/pub/../../{{ item.filename }}"}]}]),
    )]);
    match Mount::try_start(&cfg, &["--bucket", "b"]) {
        Ok(m) => panic!("mounted with a `..` savePath; log:\n{}", m.log()),
        Err(e) => assert!(
            e.contains("savePath") && e.contains(".."),
            "the refusal names the savePath: {e}"
        ),
    }
}

// ------------------------------------------------- workflow run CLI ----

#[test]
fn workflow_run_cli() {
    let root = scratch();
    let r = root.path();
    put(&r.join("in/a.jpg"), "jpeg a\n");
    put(&r.join("in/sub/b.jpg"), "jpeg b\n");
    let cfg = config(vec![bucket_with(
        "media",
        vec![
            local("/in", "{root}/in", true),
            local("/pub", "{root}/pub", false),
            local("/thumbs", "{root}/thumbs", true),
        ],
        json!({}),
        json!([
            {"name": "publish", "tasks": [
                {"savePath": "/pub/{{ item.filename }}"},
                {"function": {"exec": ["tr", "a-z", "A-Z"]},
                 "savePath": "/thumbs/{{ item.path | basename | rsplit('.', 1)[0] }}_m.{{ item.path | basename | rsplit('.', 1)[-1] }}"},
            ]},
            {"name": "broken", "tasks": [
                {"function": {"exec": ["false"]}, "savePath": "/pub/{{ item.filename }}.broken"}
            ]},
        ]),
    )]);
    let cfg_path = write_config(r, &cfg, "storgate.json");
    let c = cfg_path.to_str().unwrap();
    let lines =
        |o: &Output| -> Vec<String> { text(&o.stdout).lines().map(str::to_string).collect() };

    let o = storgate(&[
        "workflow",
        "run",
        "--config",
        c,
        "--dry-run",
        "media",
        "publish",
        "/in/a.jpg",
    ]);
    assert_eq!(o.status.code(), Some(0), "dry run: {}", show(&o));
    let l = lines(&o);
    for want in ["/in/a.jpg -> /pub/a.jpg", "/in/a.jpg -> /thumbs/a_m.jpg"] {
        assert!(
            l.iter().any(|x| x == want),
            "dry run prints {want:?}: {}",
            show(&o)
        );
    }
    assert!(
        files_under(&r.join("pub")).is_empty(),
        "dry run writes nothing"
    );
    assert!(
        files_under(&r.join("thumbs")).is_empty(),
        "dry run writes nothing"
    );

    let o = storgate(&[
        "workflow",
        "run",
        "--config",
        c,
        "media",
        "publish",
        "/in/a.jpg",
        "/in/sub/b.jpg",
    ]);
    assert_eq!(o.status.code(), Some(0), "run: {}", show(&o));
    let l = lines(&o);
    for want in ["completed /in/a.jpg", "completed /in/sub/b.jpg"] {
        assert!(
            l.iter().any(|x| x == want),
            "run prints {want:?}: {}",
            show(&o)
        );
    }
    assert_eq!(read(&r.join("pub/a.jpg")), b"jpeg a\n");
    assert_eq!(read(&r.join("pub/b.jpg")), b"jpeg b\n");
    assert_eq!(read(&r.join("thumbs/a_m.jpg")), b"JPEG A\n");
    assert_eq!(read(&r.join("thumbs/b_m.jpg")), b"JPEG B\n");

    let o = storgate(&[
        "workflow",
        "run",
        "--config",
        c,
        "media",
        "broken",
        "/in/a.jpg",
    ]);
    assert_eq!(o.status.code(), Some(1), "failing workflow: {}", show(&o));
    assert!(
        lines(&o)
            .iter()
            .any(|x| x.starts_with("aborted /in/a.jpg: ")),
        "prints the abort: {}",
        show(&o)
    );
    assert!(!r.join("pub/a.jpg.broken").exists());

    let o = storgate(&[
        "workflow",
        "run",
        "--config",
        c,
        "media",
        "nosuch",
        "/in/a.jpg",
    ]);
    assert_eq!(o.status.code(), Some(2), "unknown workflow: {}", show(&o));
}

// ------------------------------------ CLI outputs next to a daemon ----

/// Issue 10: `storgate workflow run` and `storgate batch run` share their
/// own changes with a daemon on the same config through `stateDir`, so the
/// daemon fires nothing for the outputs they write straight into its
/// watched local origin. Two controls show that the silence is the shared
/// registry's doing: a file the test writes into the origin fires onPut,
/// and so does the output of a `workflow run` on a copy of the config with
/// another `stateDir` (nothing shared with the daemon).
///
/// Absence is checked without sleeping: the daemon runs one worker, so its
/// post events run in the order the watcher saw the changes; once a
/// sentinel written into the origin after the CLI runs has fired, anything
/// the CLI outputs fired would have fired before it.
#[test]
fn cli_outputs_in_a_watched_origin_fire_nothing_in_the_daemon() {
    let srv = HttpServer::start();
    let hook = format!("{}/hook", srv.url());
    let root = scratch();
    let r = root.path();
    put(&r.join("in/src.txt"), "source of workflow run\n");
    put(&r.join("in/other.txt"), "source of the unshared run\n");
    fs::create_dir_all(r.join("out/batch")).unwrap();
    let (schedule, _) = crate::batch::one_shot_schedule(12 * 3600);
    let cfg = |state_dir: &str| {
        let mut c = config(vec![bucket_with(
            "b",
            vec![
                local("/in", "{root}/in", true),
                local("/out", "{root}/out", true),
                local("/marks", "{root}/marks", false),
            ],
            json!({
                "onPut": event(Value::Null, "mark", "post",
                    json!({"onItemCompleted": hook, "onItemAborted": hook})),
                // Due 12 hours from now: only `storgate batch run` runs it.
                "onBatch": [{"enable": true, "path": "/in", "schedule": schedule,
                             "trigger": {"workflow": "export_batch"}}],
            }),
            json!([
                {"name": "mark", "tasks": [{"savePath": "/marks{{ item.path }}"}]},
                {"name": "export", "tasks": [{"savePath": "/out/{{ item.filename }}"}]},
                {"name": "export_batch", "tasks": [
                    {"savePath": "/out/batch/{{ item.filename }}"}
                ]},
            ]),
        )]);
        c["stateDir"] = json!(state_dir);
        c
    };
    let m = Mount::start_in_env(
        root,
        &cfg("{root}/state"),
        &["--bucket", "b"],
        &[("STORGATE_WORKERS", "1")],
    );
    let unshared = write_config(
        m.root.path(),
        &cfg("{root}/state-unshared"),
        "unshared.json",
    );
    let cli = |sub: &str, config: &Path, rest: &[&str]| {
        let mut cmd = Command::new(storgate_bin());
        cmd.args([sub, "run", "--config"]).arg(config).args(rest);
        run_timeout(&mut cmd, DEADLINE)
    };
    let fired = || -> Vec<String> {
        let mut v: Vec<String> = srv
            .json_bodies("/hook")
            .iter()
            .filter_map(|p| p["item"]["path"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };

    // Control: a file written into the origin by someone else fires.
    fs::write(m.scratch_path("out/control.txt"), b"not storgate's\n").unwrap();
    wait_hooks(
        &srv,
        "/hook",
        "onItemCompleted",
        &["/out/control.txt".to_string()],
    );

    // Control: a CLI run that shares nothing with the daemon (another
    // stateDir) writes an output the daemon cannot tell from anyone else's.
    let o = cli(
        "workflow",
        unshared.as_path(),
        &["b", "export", "/in/other.txt"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "unshared workflow run: {}",
        show(&o)
    );
    assert_eq!(
        read(&m.scratch_path("out/other.txt")),
        b"source of the unshared run\n"
    );
    wait_hooks(
        &srv,
        "/hook",
        "onItemCompleted",
        &["/out/other.txt".to_string()],
    );

    // The same config as the daemon: outputs straight into the watched
    // origin, announced through stateDir.
    let o = cli("workflow", m.config_path(), &["b", "export", "/in/src.txt"]);
    assert_eq!(o.status.code(), Some(0), "workflow run: {}", show(&o));
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l == "completed /in/src.txt"),
        "workflow run: {}",
        show(&o)
    );
    assert_eq!(
        read(&m.scratch_path("out/src.txt")),
        b"source of workflow run\n"
    );
    let o = cli("batch", m.config_path(), &["b"]);
    assert_eq!(o.status.code(), Some(0), "batch run: {}", show(&o));
    assert_eq!(
        files_under(&m.scratch_path("out/batch")),
        [
            ("other.txt", &b"source of the unshared run\n"[..]),
            ("src.txt", b"source of workflow run\n"),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c.to_vec()))
        .collect::<BTreeMap<_, _>>(),
        "batch run wrote both outputs; {}",
        show(&o)
    );

    // The sentinel, written after the CLI runs, fires; by then every event
    // the watcher saw before it has run (one worker, in order).
    fs::write(m.scratch_path("out/sentinel.txt"), b"after the runs\n").unwrap();
    wait_hooks(
        &srv,
        "/hook",
        "onItemCompleted",
        &["/out/sentinel.txt".to_string()],
    );
    assert_eq!(
        fired(),
        ["/out/control.txt", "/out/other.txt", "/out/sentinel.txt"],
        "onPut fired once for each outside change and never for the outputs of \
         `workflow run` / `batch run` on the daemon's config; {}",
        hooks_summary(&srv, "/hook")
    );
    let marks: Vec<String> = files_under(&m.scratch_path("marks")).into_keys().collect();
    assert_eq!(
        marks,
        ["out/control.txt", "out/other.txt", "out/sentinel.txt"],
        "the daemon's onPut workflow ran for exactly these"
    );
}

// ------------------------------------------------------- item.hits ----

#[test]
fn item_hits_counts_opens_since_the_last_write() {
    let root = scratch();
    put(&root.path().join("in/a.txt"), "abc");
    let cfg = config(vec![bucket_with(
        "b",
        vec![
            local("/in", "{root}/in", true),
            local("/stats", "{root}/stats", false),
        ],
        json!({"onGet": event(Value::Null, "count", "post", json!({}))}),
        json!([
            {"name": "count", "tasks": [{"savePath": "/stats/{{ item.filename }}.{{ item.hits }}"}]},
            {"name": "hits", "tasks": [{"savePath": "/stats/{{ item.filename }}.hits{{ item.hits }}"}]},
        ]),
    )]);
    let mut m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    for _ in 0..3 {
        assert_eq!(run_ok(Command::new("cat").arg(m.at("in/a.txt"))), "abc");
    }
    let stats = m.scratch_path("stats");
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "an onGet output named a.txt.3 (3 opens)",
        || stats.join("a.txt.3").exists(),
        || format!("{:?}", entries(&stats)),
    );
    // A write restarts the count.
    fs::write(m.at("in/a.txt"), b"abcd").unwrap();
    assert_eq!(run_ok(Command::new("cat").arg(m.at("in/a.txt"))), "abcd");
    poll(
        DEADLINE,
        Duration::from_millis(20),
        "a.txt.1 with the new content (one open since the write)",
        || fs::read(stats.join("a.txt.1")).is_ok_and(|b| b == b"abcd"),
        || format!("{:?}", files_under(&stats)),
    );
    let counts: Vec<String> = entries(&stats)
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert!(
        !counts.iter().any(|n| n == "a.txt.4" || n == "a.txt.0"),
        "no count beyond the opens: {counts:?}"
    );

    // The count is kept in the state directory: `workflow run` sees it after
    // the daemon stopped.
    let st = m.stop();
    assert!(
        st.status.is_some_and(|s| s.success()),
        "daemon exits cleanly on SIGTERM: {st:?}"
    );
    let cfg_path = m.config_path().to_path_buf();
    let o = storgate(&[
        OsStr::new("workflow"),
        OsStr::new("run"),
        OsStr::new("--config"),
        cfg_path.as_os_str(),
        OsStr::new("--dry-run"),
        OsStr::new("b"),
        OsStr::new("hits"),
        OsStr::new("/in/a.txt"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l == "/in/a.txt -> /stats/a.txt.hits1"),
        "hits = 1 after the write and one open: {}",
        show(&o)
    );
}

// ------------------------------------------------- names are bytes ----

/// Issue 11 item 2 (SPEC §9.1): `bad\xff.jpg` and `bad\xfe.jpg` have the same
/// lossy text. With one worker held on a first item, both post events are
/// pending at once — where a lossy key coalesced them into one — and each is
/// processed: two outputs and two `onComplete` moves with the exact names and
/// contents, two webhooks with distinct lossless `item.path`s.
#[test]
fn non_utf8_names_of_the_same_lossy_text_are_two_items() {
    let srv = HttpServer::start();
    let root = scratch();
    let go = root.path().join("go");
    // Every item waits for `go`: the one worker holds the first item while
    // the two others are journaled.
    let wait = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; cat",
        go.display()
    );
    let cfg = config(vec![bucket_with(
        "nb",
        vec![
            local("/in", "{root}/in", true),
            local("/out", "{root}/out", false),
            local("/done", "{root}/done", false),
        ],
        json!({"onPut": event(Value::Null, "copy", "post",
            json!({"onItemCompleted": format!("{}/names", srv.url()),
                   "onItemAborted": format!("{}/names", srv.url())}))}),
        json!([{"name": "copy",
            "tasks": [{"savePath": "/out/{{ item.filename }}",
                       "function": {"exec": ["sh", "-c", wait]}, "timeout": 120}],
            "onComplete": {"src": {"op": "move", "path": "/done/{{ item.filename }}"}}}]),
    )]);
    let m = Mount::start_in_env(
        root,
        &cfg,
        &["--bucket", "nb"],
        &[("STORGATE_WORKERS", "1")],
    );
    let ff = OsStr::from_bytes(b"bad\xff.jpg");
    let fe = OsStr::from_bytes(b"bad\xfe.jpg");
    assert_eq!(
        ff.to_string_lossy(),
        fe.to_string_lossy(),
        "same lossy text"
    );
    fs::write(m.at("in/first.jpg"), b"first\n").unwrap();
    fs::write(m.at("in").join(ff), b"content of \\xff\n").unwrap();
    fs::write(m.at("in").join(fe), b"content of \\xfe\n").unwrap();
    // Each `close` returned after its event was journaled: all are pending.
    fs::write(&go, b"").unwrap();

    let want = [
        "/in/first.jpg".to_string(),
        "/in/bad\u{10FFFF}.jpg".to_string(),
        "/in/bad\u{10FFFE}.jpg".to_string(),
    ];
    wait_hooks(&srv, "/names", "onItemCompleted", &want);
    let out = m.scratch_path("out");
    let done = m.scratch_path("done");
    for (name, content) in [
        (OsStr::new("first.jpg"), &b"first\n"[..]),
        (ff, b"content of \\xff\n"),
        (fe, b"content of \\xfe\n"),
    ] {
        assert_eq!(read(&out.join(name)), content, "out/{name:?}");
        assert_eq!(
            read(&done.join(name)),
            content,
            "done/{name:?} (onComplete move)"
        );
    }
    let exact: BTreeSet<OsString> = [OsStr::new("first.jpg"), ff, fe]
        .iter()
        .map(|n| n.to_os_string())
        .collect();
    assert_eq!(
        entries(&out),
        exact,
        "exactly the three outputs, by exact name"
    );
    assert_eq!(entries(&done), exact, "exactly the three moved sources");
    assert!(
        entries(&m.scratch_path("in")).is_empty(),
        "sources moved away"
    );

    // The payloads carry the lossless text: item fields and the savePath.
    thread::sleep(Duration::from_millis(500));
    let bodies = srv.json_bodies("/names");
    assert_eq!(
        bodies.len(),
        3,
        "one webhook per item: {}",
        hooks_summary(&srv, "/names")
    );
    for (esc, name) in [("\u{10FFFF}", ff), ("\u{10FFFE}", fe)] {
        let v = bodies
            .iter()
            .find(|v| v["item"]["path"] == format!("/in/bad{esc}.jpg"))
            .unwrap_or_else(|| panic!("no payload for {name:?}: {bodies:?}"));
        assert_eq!(v["hook"], "onItemCompleted", "{v}");
        assert_eq!(v["item"]["filename"], format!("bad{esc}.jpg"), "{v}");
        assert_eq!(v["item"]["dirname"], "/in", "{v}");
        assert_eq!(
            v["outputs"],
            json!([{"savePath": format!("/out/bad{esc}.jpg"), "status": "written"}]),
            "{v}"
        );
    }
}

// ------------------------------------------------- harness self-check ----

/// The loopback HTTP server itself: keep-alive, chunked bodies, routes,
/// recording (so that the tests above fail for the engine, not the harness).
#[test]
fn http_test_server_self_check() {
    use std::io::{BufRead, BufReader, Read};
    let srv = HttpServer::start();
    srv.route("/up", Reply::ok(Body::Upper));
    srv.route("/up/fail", Reply::status(503));
    let mut c = std::net::TcpStream::connect(srv.url().trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(
        b"POST /up/x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n\
          GET /up/fail/1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(c);
    let mut replies = Vec::new();
    for _ in 0..3 {
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        replies.push((status.trim().to_string(), text(&body)));
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "connection closed after Connection: close");
    assert_eq!(replies[0], ("HTTP/1.1 200 OK".into(), "HELLO".into()));
    assert_eq!(replies[1], ("HTTP/1.1 200 OK".into(), String::new()));
    assert_eq!(replies[2].0, "HTTP/1.1 503 Service Unavailable");
    assert!(srv.wait_for(3, Duration::from_secs(10)));
    let reqs = srv.requests();
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    assert_eq!(reqs[1].json(), json!({"a": 1}));
    assert_eq!(srv.count_path("/up"), 2);
    assert_eq!(srv.json_bodies("/echo"), vec![json!({"a": 1})]);
    assert_eq!(paths_in(&reqs, "/echo", "x"), Vec::<String>::new());
}
