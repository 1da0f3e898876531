//! Honest timeouts of S3 origins (SPEC §9.1, issue 11 items 6 and 9): an
//! `aws_s3` endpoint with `timeout` T whose server stops answering — it
//! accepts TCP and never replies, or stops in the middle of a response —
//! makes every operation through the mount fail with EIO or ETIMEDOUT within
//! T + 5 s: reads (read-ahead included), pread, `ls`, lookups, open, and the
//! upload at close and fsync. And `storgate mount` checks each S3 endpoint
//! before it reports ready: down, it exits non-zero naming the endpoint,
//! unless `-o lazy_origins`, which mounts with the origin degraded.
//!
//! The server is the shared moto behind a [`Valve`] (a loopback relay this
//! test controls), so a mount comes up healthy and then the backend goes
//! silent. Every client call runs on a thread with its own timer: a hang
//! fails the test (and the mount's watchdog ends the daemon) instead of
//! hanging the suite.

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::s3::{S3Server, Valve, client, rt};
use common::*;
use serde_json::{Value, json};
use storgate::origin::s3::client::S3Client;

/// The endpoint's `timeout` in these tests: above 5 s, so that an operation
/// that waits for two timeouts in a row (2T) breaks the limit of T + 5 s.
const T: u64 = 7;

/// What SPEC §9.1 allows a client to wait: T + 5 s.
fn allowed() -> Duration {
    Duration::from_secs(T + 5)
}

fn put_object(c: &S3Client, key: &str, body: &[u8]) {
    rt().block_on(c.put_bytes(key, body.to_vec(), &HashMap::new()))
        .expect("put");
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// An `aws_s3` entry for `bucket` reached through `url`, timeout T.
fn entry(bucket: &str, url: &str) -> Value {
    json!({
        "name": format!("ep-{bucket}"),
        "bucket": bucket,
        "endpoint": url,
        "forcePathStyle": true,
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
        "region": "us-east-1",
        "metadataTtl": 1,
        "timeout": T,
    })
}

/// Bucket "b" = the S3 bucket at its root, through `url`.
fn s3_config(bucket: &str, url: &str) -> Value {
    let mut cfg = common::config(vec![common::bucket(
        "b",
        vec![json!({"mountPoint": null, "originPath": format!("ep-{bucket}@aws_s3")})],
    )]);
    cfg["aws_s3"] = json!([entry(bucket, url)]);
    cfg
}

/// Bucket "b" = a local root (`{root}/local`) plus the S3 bucket at `/s3`.
fn mixed_config(bucket: &str, url: &str) -> Value {
    let mut cfg = common::config(vec![common::bucket(
        "b",
        vec![
            root_mount("{root}/local"),
            json!({"mountPoint": "/s3", "originPath": format!("ep-{bucket}@aws_s3")}),
        ],
    )]);
    cfg["aws_s3"] = json!([entry(bucket, url)]);
    cfg
}

/// A healthy mount of a fresh bucket (filled by `fill`) behind a valve.
fn setup(name: &str, fill: impl FnOnce(&S3Client)) -> (Valve, Mount) {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket(name);
    fill(&client(srv, &bucket));
    let valve = Valve::to(&srv.endpoint);
    let m = Mount::start(&s3_config(&bucket, &valve.endpoint), &["--bucket", "b"]);
    (valve, m)
}

/// Runs `f` (a client call) on its own thread and returns its result and
/// how long it took; panics if it has not returned within T + 20 s (so a
/// hang fails here; the thread is left to the mount's teardown).
fn timed<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    let hang = Duration::from_secs(T + 20);
    match rx.recv_timeout(hang) {
        Ok(v) => (v, start.elapsed()),
        Err(_) => panic!("{what}: still blocked after {hang:?} (timeout {T} s)"),
    }
}

/// `f` must fail with EIO or ETIMEDOUT within T + 5 s.
#[track_caller]
fn assert_fails_in_time<V: std::fmt::Debug>(
    what: &str,
    res: std::io::Result<V>,
    took: Duration,
    m: &Mount,
) {
    eprintln!("{what}: {:?} after {took:?}", res.as_ref().map(|_| ()));
    match res {
        Ok(v) => panic!("{what}: succeeded ({v:?}) with the server silent"),
        Err(e) => {
            let en = errno(&e);
            assert!(
                en == libc::EIO || en == libc::ETIMEDOUT,
                "{what}: expected EIO or ETIMEDOUT, got {} ({e})",
                errno_name(en)
            );
        }
    }
    assert!(
        took <= allowed(),
        "{what}: the error came after {took:?}, more than timeout {T} s + 5 s\nlog:\n{}",
        m.log()
    );
}

/// Waits out `metadataTtl` so that nothing is answered from the cache.
fn past_ttl() {
    thread::sleep(Duration::from_millis(1200));
}

/// Waits until a silent endpoint lets a probe through again (T/2 after the
/// last timeout), so that the next operation meets the silence itself
/// rather than failing fast because of the previous one.
fn next_op() {
    thread::sleep(Duration::from_millis(T * 500 + 500));
}

// ------------------------------------------------------------ reads ----

#[test]
fn read_of_an_uncached_file_fails_in_time() {
    let data = pattern(4 << 20, 1);
    let d = data.clone();
    let (valve, m) = setup("to-read", move |c| put_object(c, "obj", &d));
    let mut f = fs::File::open(m.at("obj")).expect("open while healthy");
    valve.silence();
    let (res, took) = timed("read", move || {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map(|_| buf.len())
    });
    assert_fails_in_time("read of an uncached file", res, took, &m);
    assert!(is_fuse_mounted(&m.mnt), "the mount is gone");
    m.unmount();
}

/// The server stops in the middle of a response body (headers and some
/// bytes sent, then nothing): the prefetcher's wait on the body is bounded.
#[test]
fn read_stalled_mid_body_fails_in_time() {
    let data = pattern(6 << 20, 2);
    let d = data.clone();
    let (valve, m) = setup("to-midbody", move |c| put_object(c, "obj", &d));
    let mut f = fs::File::open(m.at("obj")).expect("open while healthy");
    valve.silence_after(300_000);
    let (res, took) = timed("read", move || {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map(|_| buf.len())
    });
    assert_fails_in_time("read stalled mid-body", res, took, &m);
    m.unmount();
}

/// A pread far beyond what was read (no read-ahead covers it) fails in time.
#[test]
fn pread_fails_in_time() {
    let data = pattern(8 << 20, 3);
    let d = data.clone();
    let (valve, m) = setup("to-pread", move |c| put_object(c, "obj", &d));
    let f = fs::File::open(m.at("obj")).expect("open while healthy");
    let mut head = [0u8; 4096];
    f.read_exact_at(&mut head, 0).expect("pread while healthy");
    assert_eq!(head[..], data[..4096]);
    valve.silence();
    let (res, took) = timed("pread", move || {
        let mut buf = vec![0u8; 64 * 1024];
        f.read_at(&mut buf, 7 << 20)
    });
    assert_fails_in_time("pread", res, took, &m);
    m.unmount();
}

// ---------------------------------------------------------- metadata ----

#[test]
fn ls_fails_in_time() {
    let (valve, m) = setup("to-ls", |c| {
        put_object(c, "top", b"x");
        put_object(c, "sub/inner", b"y");
    });
    let mut names = list(&m.mnt).expect("ls while healthy");
    names.sort();
    assert_eq!(names, ["sub", "top"]);
    valve.silence();
    past_ttl();
    let mnt = m.mnt.clone();
    let (res, took) = timed("ls", move || list(&mnt));
    assert_fails_in_time("ls of the root", res, took, &m);
    next_op();
    let sub = m.at("sub");
    let (res, took) = timed("ls sub", move || list(&sub));
    assert_fails_in_time("ls of a subdirectory", res, took, &m);
    m.unmount();
}

#[test]
fn stat_of_an_unknown_name_fails_in_time() {
    let (valve, m) = setup("to-stat", |c| put_object(c, "known", b"x"));
    valve.silence();
    let p = m.at("never-seen");
    let (res, took) = timed("stat", move || fs::metadata(&p));
    assert_fails_in_time("stat of an unknown name", res, took, &m);
    next_op();
    let p = m.at("known");
    let (res, took) = timed("open", move || fs::File::open(&p));
    assert_fails_in_time("open of a file not looked up yet", res, took, &m);
    m.unmount();
}

// ------------------------------------------------------------ writes ----

fn close(f: fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (just taken out of the File).
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn close_and_fsync_after_write_fail_in_time() {
    let (valve, m) = setup("to-close", |_| {});
    // Created while healthy: the upload at close is what meets the silence.
    let mut small = fs::File::create(m.at("small")).expect("create");
    small.write_all(&pattern(200_000, 4)).expect("write");
    // Above 8 MiB: a multipart upload with parallel parts.
    let mut big = fs::File::create(m.at("big")).expect("create");
    big.write_all(&pattern(20 << 20, 5)).expect("write");
    let mut synced = fs::File::create(m.at("synced")).expect("create");
    synced.write_all(b"fsync me").expect("write");
    valve.silence();

    let (res, took) = timed("close", move || close(small));
    assert_fails_in_time("close of a small upload", res, took, &m);
    next_op();
    let (res, took) = timed("close", move || close(big));
    assert_fails_in_time("close of a multipart upload", res, took, &m);
    next_op();
    // The handle outlives the timer: its close is another operation.
    let ((res, synced), took) = timed("fsync", move || (synced.sync_all(), synced));
    assert_fails_in_time("fsync", res, took, &m);
    drop(synced);
    m.unmount();
}

// ------------------------------------------------ mount with S3 down ----

/// `storgate mount` (daemonizing) against `cfg`; returns (status, stderr).
fn mount_cmd(root: &Path, cfg: &Value, extra: &[&str]) -> (std::process::Output, Duration) {
    let cfg_path = write_config(root, cfg, "storgate.json");
    let mnt = root.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let start = Instant::now();
    let out = run_timeout(
        Command::new(storgate_bin())
            .arg("mount")
            .arg("--config")
            .arg(&cfg_path)
            .args(extra)
            .arg(&mnt),
        Duration::from_secs(T + 30),
    );
    (out, start.elapsed())
}

#[test]
fn mount_with_the_endpoint_down_fails_naming_it() {
    require_fuse();
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("to-down");
    // Hung: accepts connections, never answers.
    let valve = Valve::to(&srv.endpoint);
    valve.silence();
    let root = scratch();
    let (out, took) = mount_cmd(root.path(), &s3_config(&bucket, &valve.endpoint), &[]);
    let mnt = root.path().join("mnt");
    let mounted = is_fuse_mounted(&mnt);
    if mounted {
        force_unmount(&mnt);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!mounted, "mounted with the endpoint down");
    assert!(
        !out.status.success(),
        "storgate mount exited {} with the endpoint down; stderr:\n{stderr}",
        out.status
    );
    for want in [
        format!("ep-{bucket}"),
        valve.endpoint.clone(),
        bucket.clone(),
    ] {
        assert!(
            stderr.contains(&want),
            "the message does not name {want:?}:\n{stderr}"
        );
    }
    assert!(
        took <= allowed() + Duration::from_secs(5),
        "the failure took {took:?}"
    );

    // Refused (nothing listens): the same, at once; in the foreground too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let root = scratch();
    let (out, _) = mount_cmd(root.path(), &s3_config(&bucket, &closed), &["-f"]);
    let mnt = root.path().join("mnt");
    if is_fuse_mounted(&mnt) {
        force_unmount(&mnt);
        panic!("mounted in the foreground with the endpoint refusing");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {}: {stderr}", out.status);
    assert!(
        stderr.contains(&closed) && stderr.contains(&format!("ep-{bucket}")),
        "the message does not name the endpoint:\n{stderr}"
    );
    assert!(
        stderr.contains("lazy_origins"),
        "the message does not say how to start anyway:\n{stderr}"
    );
}

/// A missing bucket on a live server is named too (a typo in `bucket`).
#[test]
fn mount_with_a_missing_bucket_fails_naming_it() {
    require_fuse();
    let srv = S3Server::shared();
    let root = scratch();
    let (out, _) = mount_cmd(
        root.path(),
        &s3_config("sg-no-such-bucket-anywhere", &srv.endpoint),
        &[],
    );
    let mnt = root.path().join("mnt");
    if is_fuse_mounted(&mnt) {
        force_unmount(&mnt);
        panic!("mounted with a missing bucket");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {}: {stderr}", out.status);
    assert!(
        stderr.contains("sg-no-such-bucket-anywhere") && stderr.contains(&srv.endpoint),
        "the message does not name the bucket and the URL:\n{stderr}"
    );
}

#[test]
fn lazy_origins_mounts_with_the_endpoint_down() {
    let srv = S3Server::shared();
    let bucket = srv.new_bucket("to-lazy");
    let valve = Valve::to(&srv.endpoint);
    valve.silence();
    let root = scratch();
    fs::create_dir_all(root.path().join("local")).unwrap();
    fs::write(root.path().join("local/old.txt"), b"from before").unwrap();
    let m = Mount::start_in(
        root,
        &mixed_config(&bucket, &valve.endpoint),
        &["--bucket", "b", "-o", "lazy_origins"],
    );
    // The local part works.
    assert_eq!(fs::read(m.at("old.txt")).unwrap(), b"from before");
    fs::write(m.at("new.txt"), b"written").expect("write to the local origin");
    assert_eq!(
        fs::read(m.scratch_path("local/new.txt")).unwrap(),
        b"written"
    );
    // The degraded origin answers with an error, in time.
    let p = m.at("s3/anything");
    let (res, took) = timed("stat in the degraded origin", move || fs::metadata(&p));
    assert_fails_in_time("stat in the degraded origin", res, took, &m);
    let log = m.log();
    let degraded: Vec<&str> = log.lines().filter(|l| l.contains("degraded")).collect();
    assert_eq!(
        degraded.len(),
        1,
        "expected one WARN naming the degraded origin:\n{log}"
    );
    assert!(
        degraded[0].contains("WARN") && degraded[0].contains(&format!("ep-{bucket}")),
        "{}",
        degraded[0]
    );
    // Once the server answers again, so does the origin.
    valve.forward();
    let p = m.at("s3/late.txt");
    let ok = poll_until(Duration::from_secs(T * 4 + 10), || {
        fs::write(&p, b"late").is_ok()
    });
    assert!(ok, "the origin did not recover:\n{}", m.log());
    assert_eq!(fs::read(m.at("s3/late.txt")).unwrap(), b"late");
    m.unmount();
}
