//! Real client tools on the mount (SPEC §3.4): cp, mv, rm -r, mkdir -p, tar,
//! rsync, an editor's save, tail -f, inotifywait, find, df.
use crate::common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

const TOOL_WAIT: Duration = Duration::from_secs(15);

fn read(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => panic!("read {}: {} ({e})", p.display(), errno_name(errno(&e))),
    }
}

/// `--bucket b` mount: root origin `o1`, plus `/other` → origin `o2`.
fn tool_mount() -> Mount {
    let root = scratch();
    let cfg = config(vec![bucket(
        "b",
        vec![root_mount("{root}/o1"), mount_at("/other", "{root}/o2")],
    )]);
    Mount::start_in(root, &cfg, &["--bucket", "b"])
}

/// A source tree outside the mount: nested dirs, an empty dir, a symlink,
/// modes, fixed mtimes and a 1 MiB binary file.
fn make_tree(dir: &Path) {
    put(&dir.join("a.txt"), "alpha\n");
    put(&dir.join("sub/b.txt"), "bravo\n");
    put(&dir.join("sub/deeper/c.jpg"), vec![0xffu8; 20_000]);
    put(&dir.join("sub/deeper/d.jpg"), "small jpg");
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    put(&dir.join("big.bin"), big);
    fs::create_dir_all(dir.join("empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    fs::set_permissions(dir.join("sub/b.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(dir.join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut t = 1_600_000_000;
    for f in [
        "a.txt",
        "sub/b.txt",
        "sub/deeper/c.jpg",
        "sub/deeper/d.jpg",
        "big.bin",
    ] {
        set_times(&dir.join(f), t).unwrap();
        t += 86_400;
    }
}

/// `diff -r` (contents) plus a comparison of modes and mtimes of files.
#[track_caller]
fn assert_same_tree(a: &Path, b: &Path) {
    let out = run_timeout(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(a)
            .arg(b),
        TOOL_WAIT,
    );
    assert!(
        out.status.success(),
        "diff -r {} {} differs:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["a.txt", "sub/b.txt", "sub/deeper/c.jpg", "big.bin"] {
        let ma = fs::metadata(a.join(f)).unwrap();
        let mb = fs::metadata(b.join(f)).unwrap();
        assert_eq!(ma.mode(), mb.mode(), "mode of {f}");
        assert_eq!(ma.mtime(), mb.mtime(), "mtime of {f}");
    }
    assert_eq!(
        fs::read_link(b.join("link")).unwrap(),
        Path::new("a.txt"),
        "symlink target"
    );
}

#[test]
fn cp_a_tree_in_and_out() {
    let m = tool_mount();
    let src = m.scratch_path("src");
    make_tree(&src);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(m.at("tree")));
    assert_same_tree(&src, &m.at("tree"));
    assert_same_tree(&src, &m.scratch_path("o1/tree"));
    let out = m.scratch_path("out");
    run_ok(Command::new("cp").arg("-a").arg(m.at("tree")).arg(&out));
    assert_same_tree(&src, &out);
    // cp -a into another origin of the same bucket
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(m.at("tree"))
            .arg(m.at("other/tree")),
    );
    assert_same_tree(&src, &m.scratch_path("o2/tree"));
}

#[test]
fn mv_files_and_dirs() {
    let m = tool_mount();
    let src = m.scratch_path("src");
    make_tree(&src);
    // in from outside
    run_ok(Command::new("mv").arg(&src).arg(m.at("t")));
    assert!(!src.exists());
    run_ok(
        Command::new("mv")
            .arg(m.at("t/a.txt"))
            .arg(m.at("t/sub/a-moved.txt")),
    );
    assert_eq!(read(&m.scratch_path("o1/t/sub/a-moved.txt")), "alpha\n");
    // a directory to another origin (EXDEV → copy + delete)
    run_ok(Command::new("mv").arg(m.at("t/sub")).arg(m.at("other/sub")));
    assert_eq!(read(&m.scratch_path("o2/sub/b.txt")), "bravo\n");
    assert_eq!(read(&m.scratch_path("o2/sub/a-moved.txt")), "alpha\n");
    assert!(!m.scratch_path("o1/t/sub").exists());
    // out of the mount
    let out = m.scratch_path("out");
    run_ok(Command::new("mv").arg(m.at("other/sub")).arg(&out));
    assert_eq!(read(&out.join("deeper/d.jpg")), "small jpg");
    assert!(!m.scratch_path("o2/sub").exists());
    assert!(!m.at("other/sub").exists());
}

#[test]
fn rm_r_tree() {
    let m = tool_mount();
    make_tree(&m.scratch_path("o1/t"));
    make_tree(&m.scratch_path("o2/t"));
    run_ok(
        Command::new("rm")
            .arg("-r")
            .arg(m.at("t"))
            .arg(m.at("other/t")),
    );
    assert!(!m.scratch_path("o1/t").exists());
    assert!(!m.scratch_path("o2/t").exists());
    expect_errno(
        fs::symlink_metadata(m.at("t")),
        libc::ENOENT,
        "t after rm -r",
    );
    assert_eq!(names(&m.mnt), vec!["other".to_string()]);
}

#[test]
fn mkdir_p() {
    let m = tool_mount();
    run_ok(
        Command::new("mkdir")
            .arg("-p")
            .arg(m.at("a/b/c/d"))
            .arg(m.at("other/x/y")),
    );
    assert!(m.scratch_path("o1/a/b/c/d").is_dir());
    assert!(m.scratch_path("o2/x/y").is_dir());
    // again: everything exists, still exit 0
    run_ok(
        Command::new("mkdir")
            .arg("-p")
            .arg(m.at("a/b/c/d"))
            .arg(m.at("other/x/y")),
    );
    run_ok(Command::new("mkdir").arg("-p").arg(m.at("a/b/e")));
    assert_eq!(names(&m.at("a/b")), vec!["c".to_string(), "e".to_string()]);
}

#[test]
fn tar_out_of_and_into_the_mount() {
    let m = tool_mount();
    let src = m.scratch_path("src");
    make_tree(&src);
    // into the mount: tar xf
    let ball = m.scratch_path("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("cf")
            .arg(&ball)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );
    fs::create_dir(m.at("in")).unwrap();
    run_ok(
        Command::new("tar")
            .arg("xpf")
            .arg(&ball)
            .arg("-C")
            .arg(m.at("in")),
    );
    assert_same_tree(&src, &m.at("in"));
    assert_same_tree(&src, &m.scratch_path("o1/in"));
    // out of the mount: tar cf from the mount, xf outside
    let ball2 = m.scratch_path("from-mount.tar");
    run_ok(
        Command::new("tar")
            .arg("cf")
            .arg(&ball2)
            .arg("-C")
            .arg(m.at("in"))
            .arg("."),
    );
    let out = m.scratch_path("out");
    fs::create_dir(&out).unwrap();
    run_ok(
        Command::new("tar")
            .arg("xpf")
            .arg(&ball2)
            .arg("-C")
            .arg(&out),
    );
    assert_same_tree(&src, &out);
}

fn itemized(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn rsync_a_in_and_out_then_nothing_to_transfer() {
    let m = tool_mount();
    let src = m.scratch_path("src");
    make_tree(&src);
    let dst = m.at("r");
    let src_s = format!("{}/", src.display());
    let dst_s = format!("{}/", dst.display());
    run_ok(Command::new("rsync").arg("-a").arg(&src_s).arg(&dst_s));
    assert_same_tree(&src, &dst);
    let again = run_ok(
        Command::new("rsync")
            .arg("-a")
            .arg("--itemize-changes")
            .arg(&src_s)
            .arg(&dst_s),
    );
    assert!(
        itemized(&again).is_empty(),
        "second rsync -a into the mount transferred/changed something:\n{again}"
    );
    // and out
    let out = m.scratch_path("out");
    let out_s = format!("{}/", out.display());
    run_ok(Command::new("rsync").arg("-a").arg(&dst_s).arg(&out_s));
    assert_same_tree(&src, &out);
    let again = run_ok(
        Command::new("rsync")
            .arg("-a")
            .arg("--itemize-changes")
            .arg(&dst_s)
            .arg(&out_s),
    );
    assert!(
        itemized(&again).is_empty(),
        "second rsync -a out of the mount transferred/changed something:\n{again}"
    );
    // a changed file is transferred again, through rsync's temp file + rename
    fs::write(src.join("a.txt"), "alpha changed\n").unwrap();
    let third = run_ok(
        Command::new("rsync")
            .arg("-a")
            .arg("--itemize-changes")
            .arg(&src_s)
            .arg(&dst_s),
    );
    assert!(
        third.contains("a.txt"),
        "changed a.txt not transferred:\n{third}"
    );
    assert_eq!(read(&m.scratch_path("o1/r/a.txt")), "alpha changed\n");
    let leftovers: Vec<String> = names(&dst)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "rsync temp files left behind: {leftovers:?}"
    );
}

#[test]
fn editor_style_save_replaces_target() {
    let m = tool_mount();
    fs::write(m.at("doc.txt"), "old line\n").unwrap();
    // By hand: write a temp file next to it, fsync, rename over the target.
    {
        let mut f = fs::File::create(m.at(".doc.txt.swp")).unwrap();
        f.write_all(b"new line\n").unwrap();
        f.sync_all().unwrap();
    }
    let tmp_ino = fs::metadata(m.scratch_path("o1/.doc.txt.swp"))
        .unwrap()
        .ino();
    fs::rename(m.at(".doc.txt.swp"), m.at("doc.txt")).unwrap();
    assert_eq!(read(&m.at("doc.txt")), "new line\n");
    assert_eq!(
        fs::metadata(m.scratch_path("o1/doc.txt")).unwrap().ino(),
        tmp_ino,
        "the temp file itself now is doc.txt"
    );
    assert_eq!(read(&m.scratch_path("o1/doc.txt")), "new line\n");
    assert_eq!(
        names(&m.mnt),
        vec!["doc.txt".to_string(), "other".to_string()]
    );

    // sed -i: a real tool writing a temp file and renaming it over the target.
    let ino = |m: &Mount| fs::metadata(m.scratch_path("o1/doc.txt")).unwrap().ino();
    let before = ino(&m);
    run_ok(
        Command::new("sed")
            .arg("-i")
            .arg("s/new/sed/")
            .arg(m.at("doc.txt")),
    );
    assert_eq!(read(&m.scratch_path("o1/doc.txt")), "sed line\n");
    assert_ne!(ino(&m), before, "sed -i replaced the file by rename");
    let before = ino(&m);

    // vim with a swap file and a write backup: backupcopy=no renames the
    // original to doc.txt~ and writes a new doc.txt (backupskip= because the
    // default skips backups under /tmp).
    run_ok(
        Command::new("vim")
            .args(["-u", "NONE", "-i", "NONE", "-N", "-Es"])
            .args([
                "-c",
                "set backup writebackup backupcopy=no backupdir=. backupskip=",
            ])
            .args(["-c", "%s/sed/vim/", "-c", "wq"])
            .arg("doc.txt")
            .current_dir(&m.mnt)
            .env("HOME", m.root.path()),
    );
    assert_eq!(read(&m.at("doc.txt")), "vim line\n");
    assert_eq!(read(&m.scratch_path("o1/doc.txt")), "vim line\n");
    assert_ne!(ino(&m), before, "vim (backupcopy=no) wrote a new file");
    let mut left = names(&m.mnt);
    left.retain(|n| n != "doc.txt~"); // vim's kept backup (set backup) is fine
    assert_eq!(
        left,
        vec!["doc.txt".to_string(), "other".to_string()],
        "no swap/temp files left"
    );
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_to_file(cmd: &mut Command, out: &Path, err: &Path) -> KillOnDrop {
    let o = fs::File::create(out).unwrap();
    let e = fs::File::create(err).unwrap();
    KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    )
}

fn tail_follows(m: &Mount, file_in_mount: &Path, append_to: &Path) {
    fs::write(append_to, "line 0\n").unwrap();
    let out = m.scratch_path("tail.out");
    let err = m.scratch_path("tail.err");
    let _tail = spawn_to_file(
        Command::new("tail")
            .args(["-f", "-n", "+1", "-s", "0.1"])
            .arg(file_in_mount),
        &out,
        &err,
    );
    wait_until(TOOL_WAIT, "tail -f printed the first line", || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("line 0\n")
    });
    for i in 1..=3 {
        let mut f = fs::OpenOptions::new().append(true).open(append_to).unwrap();
        writeln!(f, "line {i}").unwrap();
        drop(f);
        let want = format!("line {i}\n");
        wait_until(TOOL_WAIT, &format!("tail -f printed {want:?}"), || {
            fs::read_to_string(&out).unwrap_or_default().contains(&want)
        });
    }
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "line 0\nline 1\nline 2\nline 3\n",
        "tail stderr: {}",
        fs::read_to_string(&err).unwrap_or_default()
    );
}

#[test]
fn tail_f_follows_a_file_growing_through_the_mount() {
    let m = tool_mount();
    let f = m.at("log.txt");
    tail_follows(&m, &f, &f);
}

#[test]
fn tail_f_follows_a_file_growing_in_the_local_origin() {
    let m = tool_mount();
    tail_follows(&m, &m.at("log.txt"), &m.scratch_path("o1/log.txt"));
}

#[test]
fn inotifywait_sees_changes_made_through_the_mount() {
    let m = tool_mount();
    fs::create_dir(m.at("d")).unwrap();
    let out = m.scratch_path("inotify.out");
    let err = m.scratch_path("inotify.err");
    let _w = spawn_to_file(
        Command::new("inotifywait")
            .args(["-m", "-r", "--format", "%e %w%f"])
            .args([
                "-e",
                "create",
                "-e",
                "close_write",
                "-e",
                "moved_to",
                "-e",
                "delete",
            ])
            .arg(&m.mnt),
        &out,
        &err,
    );
    wait_until(TOOL_WAIT, "inotifywait: Watches established", || {
        fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("Watches established")
    });
    let mnt = m.mnt.display().to_string();
    let expect = |line: String| {
        wait_until(TOOL_WAIT, &format!("inotifywait printed {line:?}"), || {
            fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .any(|l| l == line)
        });
    };
    fs::write(m.at("f.txt"), "hello").unwrap();
    expect(format!("CREATE {mnt}/f.txt"));
    expect(format!("CLOSE_WRITE,CLOSE {mnt}/f.txt"));
    fs::write(m.at("d/g.txt"), "in subdir").unwrap();
    expect(format!("CREATE {mnt}/d/g.txt"));
    expect(format!("CLOSE_WRITE,CLOSE {mnt}/d/g.txt"));
    fs::rename(m.at("f.txt"), m.at("d/moved.txt")).unwrap();
    expect(format!("MOVED_TO {mnt}/d/moved.txt"));
    fs::remove_file(m.at("d/moved.txt")).unwrap();
    expect(format!("DELETE {mnt}/d/moved.txt"));
    fs::create_dir(m.at("newdir")).unwrap();
    expect(format!("CREATE,ISDIR {mnt}/newdir"));
}

fn find_in(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = run_ok(
        Command::new("find")
            .args([".", "-mindepth", "1"])
            .args(args)
            .current_dir(dir),
    );
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn find_gives_the_same_results_as_on_the_origin() {
    let m = tool_mount();
    let o1 = m.scratch_path("o1");
    make_tree(&o1.join("t"));
    put(&o1.join("ref"), "reference");
    set_times(&o1.join("ref"), 1_600_000_000 + 2 * 86_400).unwrap();
    let queries: Vec<Vec<&str>> = vec![
        vec![],
        vec!["-newer", "ref"],
        vec!["!", "-newer", "ref", "-type", "f"],
        vec!["-type", "f", "-size", "+10k"],
        vec!["-type", "f", "-size", "-2"],
        vec!["-name", "*.jpg"],
        vec!["-type", "d"],
        vec!["-type", "l"],
        vec!["-empty"],
        vec!["-type", "f", "-mtime", "+30"],
    ];
    let mnt = m.mnt.clone();
    for q in &queries {
        let on_origin = find_in(&o1, q);
        let on_mount = find_in(&mnt, q);
        assert!(
            !on_origin.is_empty() || q.contains(&"-empty"),
            "query {q:?} finds something"
        );
        // /other is a mount point of the bucket, not in the origin
        let on_mount: Vec<String> = on_mount.into_iter().filter(|p| p != "./other").collect();
        assert_eq!(on_mount, on_origin, "find . {q:?}: mount vs origin");
    }
    let jpgs = find_in(&mnt, &["-name", "*.jpg"]);
    assert_eq!(jpgs, vec!["./t/sub/deeper/c.jpg", "./t/sub/deeper/d.jpg"]);
}

#[test]
fn df_on_the_mount() {
    let m = tool_mount();
    let out = run_ok(Command::new("df").arg("-P").arg(&m.mnt));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "df -P output: header + one line for the mount:\n{out}"
    );
    assert!(
        lines[1].ends_with(&*m.mnt.to_string_lossy()),
        "df line names the mount point: {out}"
    );
    let mnt_s: PathBuf = m.mnt.clone();
    run_ok(Command::new("df").arg("-i").arg(&mnt_s));
    run_ok(Command::new("df").arg("-h").arg(m.at("other")));
}

#[test]
fn concurrent_writers_and_readers() {
    let m = tool_mount();
    let mnt = m.mnt.clone();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let p = mnt.join(format!("w{w}-{i}.txt"));
                    let body = format!("writer {w} file {i}\n").repeat(200 + i);
                    fs::write(&p, &body).unwrap();
                    assert_eq!(fs::read_to_string(&p).unwrap(), body);
                }
            })
        })
        .collect();
    // shell readers in separate processes while the writers run
    let readers: Vec<_> = (0..3)
        .map(|_| {
            KillOnDrop(
                Command::new("sh")
                    .arg("-c")
                    .arg("for i in $(seq 1 30); do cat ./* >/dev/null 2>&1; ls -l . >/dev/null; done")
                    .current_dir(&mnt)
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    for mut r in readers {
        let st = r.0.wait().unwrap();
        assert!(st.success() || st.code() == Some(1), "reader: {st}");
    }
    let n = names(&m.scratch_path("o1")).len();
    assert_eq!(n, 120, "all files written to the origin");
    for w in 0..6 {
        let body = format!("writer {w} file 19\n").repeat(219);
        assert_eq!(read(&m.scratch_path(&format!("o1/w{w}-19.txt"))), body);
    }
}

/// Log lines at WARN or ERROR (the harness's log is plain text, one event a
/// line, with continuation lines for multi-line messages).
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

#[track_caller]
fn assert_no_warnings(log: &str, what: &str) {
    let w = warnings(log);
    assert!(w.is_empty(), "{what} logged warnings:\n{}", w.join("\n"));
}

/// Issue 11 item 10: Python's `open()` asks isatty (ioctl TCGETS) of every
/// file; the answer is ENOTTY, without a warning (once, a 3-line WARN each).
/// A plain unmount (SIGTERM) adds none either.
#[test]
fn python_open_and_unmount_log_no_warning() {
    let mut m = tool_mount();
    put(&m.scratch_path("o1/f.txt"), "text");
    let script = format!(
        "import sys\nfor _ in range(20):\n    with open({:?}) as f:\n        assert f.read() == 'text'\n        assert not f.isatty()\nwith open({:?}, 'w') as f:\n    f.write('new')\n",
        m.at("f.txt").display().to_string(),
        m.at("g.txt").display().to_string()
    );
    run_ok(Command::new("python3").arg("-c").arg(&script));
    assert_eq!(read(&m.scratch_path("o1/g.txt")), "new");
    let stopped = m.stop();
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "daemon exit: {stopped:?}"
    );
    assert_no_warnings(&m.log(), "python open() and unmount");
}

/// An unmount from outside (`umount`, as an admin or systemd does) ends the
/// session; fuser's second unmount at the end used to warn about EINVAL.
#[test]
fn unmount_from_outside_logs_no_warning() {
    let mut m = tool_mount();
    put(&m.scratch_path("o1/f"), "f");
    assert_eq!(read(&m.at("f")), "f");
    run_ok(Command::new("umount").arg(&m.mnt));
    let ended = m.wait_exit(Duration::from_secs(20));
    assert!(
        ended.status.is_some_and(|s| s.success()),
        "daemon must exit 0 after an outside unmount: {ended:?}\n{}",
        m.log()
    );
    assert!(!ended.mounted_after_exit);
    assert_no_warnings(&m.log(), "an unmount from outside");
}

/// copy_file_range between files of local origins is done by the origin's
/// kernel, not refused (the kernel fell back to read/write after a WARN
/// "Not Implemented"): the copies are identical, the daemon served the
/// requests (debug log) and logged nothing above debug about them.
#[test]
fn copy_file_range_within_local_origins_is_native() {
    let root = scratch();
    let big: Vec<u8> = (0..5 * 1024 * 1024u32 + 123)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    put(&root.path().join("o1/big.bin"), &big);
    fs::create_dir_all(root.path().join("o2")).unwrap();
    let cfg = config(vec![bucket(
        "b",
        vec![root_mount("{root}/o1"), mount_at("/other", "{root}/o2")],
    )]);
    let m = Mount::start_in_env(
        root,
        &cfg,
        &["--bucket", "b"],
        &[(
            "STORGATE_LOG",
            "info,fuser::request=debug,storgate::fuse=debug",
        )],
    );
    let script = format!(
        "import os\nsrc = os.open({src:?}, os.O_RDONLY)\nfor dst_path in ({a:?}, {b:?}):\n    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n    left = os.fstat(src).st_size\n    off = 0\n    while left:\n        n = os.copy_file_range(src, dst, left, off, off)\n        assert n > 0, n\n        off += n\n        left -= n\n    os.close(dst)\n",
        src = m.at("big.bin").display().to_string(),
        a = m.at("py.bin").display().to_string(),
        b = m.at("other/py.bin").display().to_string(),
    );
    run_ok(Command::new("python3").arg("-c").arg(&script));
    run_ok(
        Command::new("cp")
            .arg("--reflink=never")
            .arg(m.at("big.bin"))
            .arg(m.at("cp.bin")),
    );
    for copy in ["o1/py.bin", "o2/py.bin", "o1/cp.bin"] {
        assert!(
            fs::read(m.scratch_path(copy)).unwrap() == big,
            "{copy} differs from the source"
        );
    }
    assert!(fs::read(m.at("other/py.bin")).unwrap() == big);
    let log = m.log();
    // Refused once (ENOSYS), the kernel never asks again: one request per
    // Python copy shows that each was served. (`cp --reflink=never` reads
    // and writes: it only shows that the mount's data is right.)
    let served = log
        .lines()
        .filter(|l| l.contains("COPY_FILE_RANGE"))
        .count();
    assert!(
        served >= 2,
        "the daemon must have served each copy_file_range (saw {served}):\n{log}"
    );
    assert!(
        !log.contains("op=\"copy_file_range\""),
        "no copy_file_range may have failed:\n{log}"
    );
    assert_no_warnings(&log, "copy_file_range");
}

/// copy_file_range that involves an S3 origin answers EXDEV (no local fd
/// to copy between), and the kernel copies through read and write: the
/// copies are right and nothing is logged above debug.
#[test]
fn copy_file_range_with_an_s3_origin_falls_back_quietly() {
    let srv = common::s3::S3Server::shared();
    let s3_bucket = srv.new_bucket("cfr");
    let root = scratch();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    put(&root.path().join("o1/local.bin"), &data);
    let mut cfg = config(vec![bucket(
        "b",
        vec![
            root_mount("{root}/o1"),
            json!({"mountPoint": "/s3", "originPath": format!("{s3_bucket}@aws_s3")}),
        ],
    )]);
    cfg["aws_s3"] = json!([srv.endpoint_config(&s3_bucket)]);
    let m = Mount::start_in(root, &cfg, &["--bucket", "b"]);
    let script = format!(
        "import os\ndef copy(a, b):\n    src = os.open(a, os.O_RDONLY)\n    dst = os.open(b, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n    left = os.fstat(src).st_size\n    while left:\n        n = os.copy_file_range(src, dst, left)\n        assert n > 0, n\n        left -= n\n    os.close(dst)\n    os.close(src)\ncopy({l:?}, {s1:?})\ncopy({s1:?}, {s2:?})\ncopy({s2:?}, {back:?})\n",
        l = m.at("local.bin").display().to_string(),
        s1 = m.at("s3/one.bin").display().to_string(),
        s2 = m.at("s3/two.bin").display().to_string(),
        back = m.at("back.bin").display().to_string(),
    );
    run_ok(Command::new("python3").arg("-c").arg(&script));
    for copy in ["s3/one.bin", "s3/two.bin", "back.bin"] {
        assert!(fs::read(m.at(copy)).unwrap() == data, "{copy} differs");
    }
    assert!(fs::read(m.scratch_path("o1/back.bin")).unwrap() == data);
    assert_no_warnings(&m.log(), "copy_file_range with an S3 origin");
}
