//! The S3 layer (`origin::s3::client`, `origin::s3::prefetch`) against a real
//! moto server on loopback: listing with paging, ranged and pinned reads,
//! multipart upload and copy, errno mapping, a stopped or hung server, and
//! the read-ahead prefetcher.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::s3::S3Server;
use storgate::error::Errno;
use storgate::origin::s3::client::{Cond, MIB, S3Client};
use storgate::origin::s3::prefetch::{MAX_WINDOW, Prefetcher};
use tokio::task::JoinSet;

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Shows the layer's warnings in a failing test's output.
fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "storgate=debug".into()),
        )
        .try_init();
}

async fn client(srv: &S3Server, hint: &str) -> S3Client {
    init_log();
    let bucket = srv.new_bucket(hint);
    S3Client::connect(&srv.s3_endpoint(&bucket))
        .await
        .expect("connect")
}

/// The whole object, through `get_to_file` (parallel ranged parts).
async fn read_all(c: &S3Client, key: &str) -> Vec<u8> {
    let file = tempfile::tempfile().expect("tempfile");
    let n = c.get_to_file(key, &file, None).await.expect("get_to_file");
    let mut out = Vec::new();
    use std::io::{Read, Seek};
    let mut f = file;
    f.rewind().expect("rewind");
    f.read_to_end(&mut out).expect("read back");
    assert_eq!(out.len() as u64, n);
    out
}

fn is_multipart_etag(etag: &str) -> bool {
    etag.trim_matches('"').contains('-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_list_with_paging() {
    let c = client(S3Server::shared(), "list").await;
    let etag = c
        .put_bytes(
            "dir/a.txt",
            b"hello".to_vec(),
            &meta(&[("mtime", "123"), ("Mode", "33188")]),
        )
        .await
        .expect("put");
    c.put_bytes("dir/sub/b", vec![1; 10], &HashMap::new())
        .await
        .expect("put");
    c.put_bytes("top", Vec::new(), &HashMap::new())
        .await
        .expect("put");

    let h = c.head("dir/a.txt").await.expect("head").expect("exists");
    assert_eq!(h.key, "dir/a.txt");
    assert_eq!(h.size, 5);
    assert_eq!(h.etag, etag);
    assert_eq!(h.user, meta(&[("mtime", "123"), ("mode", "33188")]));
    assert!(h.last_modified > std::time::UNIX_EPOCH);
    assert_eq!(c.head("dir/missing").await.map_err(|e| e.errno()), Ok(None));
    assert_eq!(c.head("dir").await.map_err(|e| e.errno()), Ok(None));

    let root = c.list_all("", Some("/")).await.expect("list root");
    assert_eq!(root.prefixes, vec!["dir/".to_string()]);
    assert_eq!(root.objects.len(), 1);
    assert_eq!(root.objects[0].key, "top");
    assert_eq!(root.objects[0].size, 0);
    let dir = c.list_all("dir/", Some("/")).await.expect("list dir");
    assert_eq!(dir.prefixes, vec!["dir/sub/".to_string()]);
    assert_eq!(dir.objects.len(), 1);
    assert_eq!(dir.objects[0].etag, etag, "LIST and HEAD ETags agree");
    assert!(dir.objects[0].user.is_empty());

    // 1100 keys: more than one default page (1000).
    let keys: Vec<String> = (0..1100).map(|i| format!("many/k{i:05}")).collect();
    let mut set = JoinSet::new();
    for chunk in keys.chunks(70) {
        let (c, chunk) = (c.clone(), chunk.to_vec());
        set.spawn(async move {
            for k in chunk {
                c.put_bytes(&k, k.as_bytes().to_vec(), &HashMap::new())
                    .await
                    .expect("put many");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("put task");
    }

    // Explicit paging with max-keys.
    let (mut got, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = c
            .list_page("many/", None, None, token, Some(250))
            .await
            .expect("page");
        assert!(page.objects.len() <= 250);
        got.extend(page.objects.into_iter().map(|o| o.key));
        pages += 1;
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(got, keys);

    // list_all follows the continuation tokens past the first 1000.
    let all = c.list_all("many/", Some("/")).await.expect("list_all");
    assert_eq!(
        all.objects
            .iter()
            .map(|o| o.key.clone())
            .collect::<Vec<_>>(),
        keys
    );
    assert!(all.next.is_none());

    // start_after
    let after = c
        .list_page("many/", None, Some("many/k01090"), None, None)
        .await
        .expect("start_after");
    assert_eq!(after.objects.len(), 9);
    assert_eq!(after.objects[0].key, "many/k01091");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_range_and_if_match() {
    let c = client(S3Server::shared(), "range").await;
    let data = pattern(1000, 1);
    let etag = c
        .put_bytes("obj", data.clone(), &HashMap::new())
        .await
        .expect("put");

    assert_eq!(
        c.get_range("obj", 10..20, None).await.expect("get"),
        data[10..20]
    );
    assert_eq!(
        c.get_range("obj", 0..1000, Some(&etag))
            .await
            .expect("pinned"),
        data[..]
    );
    // Short at the end, empty past it, empty for an empty range.
    assert_eq!(
        c.get_range("obj", 990..2000, None).await.expect("tail"),
        data[990..]
    );
    assert!(
        c.get_range("obj", 1000..1010, None)
            .await
            .expect("past")
            .is_empty()
    );
    assert!(
        c.get_range("obj", 5..5, None)
            .await
            .expect("empty")
            .is_empty()
    );

    assert_eq!(
        c.get_range("obj", 0..10, Some("\"0123456789abcdef0123456789abcdef\""))
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ESTALE)
    );
    assert_eq!(
        c.get_range("nothing", 0..10, None)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );

    // get_to_file: pinned to an ETag, and the file is truncated to the object.
    let file = tempfile::tempfile().expect("tempfile");
    file.set_len(5000).expect("set_len");
    assert_eq!(
        c.get_to_file("obj", &file, Some(&etag))
            .await
            .map_err(|e| e.errno()),
        Ok(1000)
    );
    assert_eq!(file.metadata().expect("stat").len(), 1000);
    assert_eq!(
        c.get_to_file("obj", &file, Some("\"ffffffffffffffffffffffffffffffff\""))
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ESTALE)
    );
    assert_eq!(
        c.get_to_file("nothing", &file, None)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );

    // An empty object.
    c.put_bytes("empty", Vec::new(), &HashMap::new())
        .await
        .expect("put");
    assert!(read_all(&c, "empty").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_file_single_and_multipart() {
    let c = client(S3Server::shared(), "upload").await;
    let dir = tempfile::tempdir().expect("tempdir");

    let small = pattern(3 * MIB as usize + 17, 2);
    let p = dir.path().join("small");
    std::fs::write(&p, &small).expect("write");
    let etag = c
        .upload_file("small", &p, &meta(&[("uid", "1000")]))
        .await
        .expect("upload small");
    assert!(!is_multipart_etag(&etag), "{etag}");
    assert_eq!(read_all(&c, "small").await, small);

    // 20 MiB: multipart (8 + 8 + 4 MiB).
    let big = pattern(20 * MIB as usize + 5, 3);
    let p = dir.path().join("big");
    std::fs::write(&p, &big).expect("write");
    let etag = c
        .upload_file(
            "dir/big",
            &p,
            &meta(&[("mtime", "1700000000"), ("mode", "33152")]),
        )
        .await
        .expect("upload big");
    assert!(
        is_multipart_etag(&etag),
        "multipart ETag expected, got {etag}"
    );
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    let h = c.head("dir/big").await.expect("head").expect("exists");
    assert_eq!(h.size, big.len() as u64);
    assert_eq!(h.etag, etag);
    assert_eq!(h.user, meta(&[("mtime", "1700000000"), ("mode", "33152")]));
    let got = read_all(&c, "dir/big").await;
    assert!(got == big, "downloaded content differs");

    // A missing file is an error, not an empty object.
    assert_eq!(
        c.upload_file("x", &dir.path().join("nope"), &HashMap::new())
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_replace_keep_and_multipart() {
    let c = client(S3Server::shared(), "copy").await;
    let data = pattern(4096, 4);
    c.put_bytes(
        "src key+ü",
        data.clone(),
        &meta(&[("mtime", "1"), ("mode", "33188")]),
    )
    .await
    .expect("put");

    // REPLACE metadata.
    let new_meta = meta(&[("mtime", "2"), ("uid", "7")]);
    let etag = c
        .copy("src key+ü", "dst/replaced", Some(&new_meta))
        .await
        .expect("copy");
    let h = c.head("dst/replaced").await.expect("head").expect("exists");
    assert_eq!(h.etag, etag);
    assert_eq!(h.user, new_meta);
    assert_eq!(
        c.get_range("dst/replaced", 0..4096, None)
            .await
            .expect("get"),
        data[..]
    );

    // COPY (keep) metadata.
    c.copy("src key+ü", "dst/kept", None).await.expect("copy");
    let h = c.head("dst/kept").await.expect("head").expect("exists");
    assert_eq!(h.user, meta(&[("mtime", "1"), ("mode", "33188")]));

    assert_eq!(
        c.copy("missing", "dst/x", None)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );

    // The multipart copy path, with a small threshold: 12 MiB in 5 MiB parts.
    let big = pattern(12 * MIB as usize + 3, 5);
    c.put_bytes("big", big.clone(), &meta(&[("mode", "33261")]))
        .await
        .expect("put big");
    let etag = c
        .copy_with("big", "big-copy", None, 8 * MIB, 5 * MIB)
        .await
        .expect("multipart copy");
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "3-part ETag expected, got {etag}"
    );
    let h = c.head("big-copy").await.expect("head").expect("exists");
    assert_eq!(h.size, big.len() as u64);
    assert_eq!(h.user, meta(&[("mode", "33261")]), "metadata carried over");
    assert!(
        read_all(&c, "big-copy").await == big,
        "copied content differs"
    );

    let m2 = meta(&[("mode", "33188")]);
    c.copy_with("big", "big-copy2", Some(&m2), 8 * MIB, 5 * MIB)
        .await
        .expect("multipart copy with metadata");
    let h = c.head("big-copy2").await.expect("head").expect("exists");
    assert_eq!(h.user, m2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects() {
    let c = client(S3Server::shared(), "delete").await;
    c.put_bytes("a/b", b"x".to_vec(), &HashMap::new())
        .await
        .expect("put");
    assert!(c.head("a/b").await.expect("head").is_some());
    c.delete("a/b").await.expect("delete");
    assert_eq!(c.head("a/b").await.map_err(|e| e.errno()), Ok(None));
    // Deleting what is not there succeeds.
    c.delete("a/b").await.expect("delete again");
    assert!(c.list_all("", None).await.expect("list").objects.is_empty());
}

/// Conditional writes, as a lease held in a bucket uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_and_delete() {
    let c = client(S3Server::shared(), "cond").await;
    let none = HashMap::new();
    let e1 = c
        .put_bytes_if("lease", b"a".to_vec(), &none, Cond::Absent)
        .await
        .expect("create");
    assert_eq!(
        c.put_bytes_if("lease", b"b".to_vec(), &none, Cond::Absent)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::EEXIST)
    );
    let e2 = c
        .put_bytes_if("lease", b"c".to_vec(), &none, Cond::Match(&e1))
        .await
        .expect("replace");
    assert_eq!(
        c.put_bytes_if("lease", b"d".to_vec(), &none, Cond::Match(&e1))
            .await
            .map_err(|e| e.errno()),
        Err(Errno::ESTALE)
    );
    assert_eq!(
        c.get_range("lease", 0..10, None).await.expect("get"),
        b"c"[..]
    );
    assert_eq!(
        c.delete_if("lease", &e1).await.map_err(|e| e.errno()),
        Err(Errno::ESTALE)
    );
    c.delete_if("lease", &e2).await.expect("delete");
    assert_eq!(c.head("lease").await.map_err(|e| e.errno()), Ok(None));
    assert_eq!(
        c.delete_if("lease", &e2).await.map_err(|e| e.errno()),
        Err(Errno::ENOENT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_eio_not_enoent() {
    let srv = S3Server::shared();
    let c = S3Client::connect(&srv.s3_endpoint("sg-no-such-bucket"))
        .await
        .expect("connect");
    assert_eq!(
        c.list_page("", None, None, None, None)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::EIO)
    );
    assert_eq!(
        c.get_range("k", 0..1, None).await.map_err(|e| e.errno()),
        Err(Errno::EIO)
    );
}

#[test]
fn harness_disables_imds() {
    assert_eq!(
        std::env::var("AWS_EC2_METADATA_DISABLED").as_deref(),
        Ok("true")
    );
}

fn assert_fails_fast<T: std::fmt::Debug, E: Into<Errno> + std::fmt::Debug>(
    what: &str,
    res: Result<T, E>,
    started: Instant,
) {
    let took = started.elapsed();
    eprintln!("{what}: {res:?} after {took:?}");
    match res.map_err(Into::into) {
        Err(e) if e == Errno::EIO || e == Errno::ETIMEDOUT => {}
        other => panic!("{what}: expected EIO or ETIMEDOUT, got {other:?}"),
    }
    assert!(took < Duration::from_secs(10), "{what} took {took:?}");
}

/// A stopped server fails every call with EIO/ETIMEDOUT within the timeout;
/// after a restart the same client works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_fast_and_recovers() {
    let srv = S3Server::spawn_private();
    let bucket = srv.new_bucket("stopped");
    // Set up with the default timeout (a loaded machine may take a while to
    // store 16 MiB); probe with a 2 s one.
    let setup = S3Client::connect(&srv.s3_endpoint(&bucket))
        .await
        .expect("connect");
    let data = pattern(16 * MIB as usize, 6);
    let etag = setup
        .put_bytes("obj", data.clone(), &HashMap::new())
        .await
        .expect("put");
    let mut ep = srv.s3_endpoint(&bucket);
    ep.timeout = Duration::from_secs(2);
    let c = Arc::new(S3Client::connect(&ep).await.expect("connect"));

    // A prefetcher in the middle of a sequential read.
    let pf = Prefetcher::new(c.clone(), "obj".into(), etag, data.len() as u64);
    assert_eq!(
        pf.read(0, 128 * 1024).await.expect("read"),
        data[..128 * 1024]
    );

    srv.stop();

    let t = Instant::now();
    assert_fails_fast("head", c.head("obj").await, t);
    let t = Instant::now();
    assert_fails_fast("get_range", c.get_range("obj", 0..10, None).await, t);
    let t = Instant::now();
    assert_fails_fast("list", c.list_page("", None, None, None, None).await, t);
    let t = Instant::now();
    assert_fails_fast(
        "put",
        c.put_bytes("new", vec![1; 10], &HashMap::new()).await,
        t,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("big");
    std::fs::write(&p, pattern(20 * MIB as usize, 7)).expect("write");
    let t = Instant::now();
    assert_fails_fast(
        "upload_file",
        c.upload_file("big", &p, &HashMap::new()).await,
        t,
    );

    // The prefetcher: reads up to the end must fail (not hang) once they need
    // the server; bytes served before that are the object's.
    let t = Instant::now();
    let mut offset = 128 * 1024u64;
    let res = loop {
        match pf.read(offset, 128 * 1024).await {
            Ok(b) if b.is_empty() => break Ok(()),
            Ok(b) => {
                assert_eq!(b[..], data[offset as usize..offset as usize + b.len()]);
                offset += b.len() as u64;
            }
            Err(e) => break Err(e),
        }
    };
    assert_fails_fast("prefetch read", res, t);

    // After a restart (moto comes back empty) the same client works again.
    srv.start();
    assert_eq!(
        c.list_page("", None, None, None, None)
            .await
            .map_err(|e| e.errno()),
        Err(Errno::EIO),
        "NoSuchBucket is EIO, not ENOENT"
    );
    srv.create_bucket(&bucket);
    c.put_bytes("again", b"ok".to_vec(), &HashMap::new())
        .await
        .expect("put after restart");
    assert_eq!(
        c.get_range("again", 0..2, None).await.expect("get"),
        b"ok"[..]
    );
}

/// A hung server (SIGSTOP) gives ETIMEDOUT within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_times_out() {
    let srv = S3Server::spawn_private();
    let bucket = srv.new_bucket("hung");
    let mut ep = srv.s3_endpoint(&bucket);
    ep.timeout = Duration::from_secs(2);
    let c = S3Client::connect(&ep).await.expect("connect");
    let setup = S3Client::connect(&srv.s3_endpoint(&bucket))
        .await
        .expect("connect");
    setup
        .put_bytes("obj", vec![7; 100], &HashMap::new())
        .await
        .expect("put");

    srv.pause();
    let t = Instant::now();
    let res = c
        .get_range("obj", 0..100, None)
        .await
        .map_err(|e| e.errno());
    assert_fails_fast("get_range on a hung server", res.clone(), t);
    assert_eq!(res, Err(Errno::ETIMEDOUT));
    // The endpoint now counts as silent: the next request fails at once
    // (one client call's later requests must not each wait the timeout).
    let t = Instant::now();
    assert_eq!(
        c.head("obj").await.map_err(|e| e.errno()),
        Err(Errno::ETIMEDOUT),
        "head on a silent endpoint"
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "a request to a silent endpoint waited {:?}",
        t.elapsed()
    );
    // After the probe pause (1 s for a 2 s timeout) one request tries again:
    // it gets no answer, and takes the timeout, not more.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    assert_fails_fast("a probe of a hung server", c.head("obj").await, t);
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "the probe was not sent"
    );
    srv.resume();
    // Once the server answers a probe, everything works again.
    let t = Instant::now();
    let got = loop {
        match c.get_range("obj", 0..100, None).await {
            Ok(b) => break b,
            Err(e) if t.elapsed() < Duration::from_secs(10) => {
                assert_eq!(e.errno(), Errno::ETIMEDOUT, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery 10 s after resume: {e}"),
        }
    };
    assert_eq!(got, vec![7; 100]);
    assert!(!c.is_silent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetcher_sequential_read() {
    let c = Arc::new(client(S3Server::shared(), "seq").await);
    let data = pattern(40 * MIB as usize + 1234, 8);
    let etag = c
        .put_bytes("big", data.clone(), &HashMap::new())
        .await
        .expect("put");
    let pf = Prefetcher::new(c.clone(), "big".into(), etag, data.len() as u64);

    let step = 128 * 1024u32;
    let mut got = Vec::with_capacity(data.len());
    loop {
        let b = pf.read(got.len() as u64, step).await.expect("read");
        if b.is_empty() {
            break;
        }
        assert!(b.len() <= step as usize);
        got.extend_from_slice(&b);
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data, "sequential read differs from the object");
    let stats = pf.stats().await;
    assert!(
        stats.peak_window >= MAX_WINDOW / 2,
        "window did not grow: {stats:?}"
    );
    assert_eq!(stats.random_reads, 0, "{stats:?}");
    // 330 reads of 128 KiB served by a few large GETs.
    assert!(stats.requests <= 20, "{stats:?}");
    // Past the end: empty.
    assert!(
        pf.read(data.len() as u64 + 10, step)
            .await
            .expect("eof")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetcher_random_reads() {
    let c = Arc::new(client(S3Server::shared(), "random").await);
    let size = 10 * MIB as usize + 77;
    let data = pattern(size, 9);
    let etag = c
        .put_bytes("obj", data.clone(), &HashMap::new())
        .await
        .expect("put");
    let pf = Prefetcher::new(c.clone(), "obj".into(), etag, size as u64);

    let mut x = 12345u64;
    for i in 0..60 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (x >> 16) % (size as u64 + 1000);
        let len = ((x >> 40) % (300 * 1024)) as u32 + 1;
        let b = pf.read(offset, len).await.expect("read");
        let from = (offset as usize).min(size);
        let to = (offset as usize + len as usize).min(size);
        assert_eq!(b.len(), to - from, "read {i} at {offset}+{len}");
        assert!(
            b[..] == data[from..to],
            "read {i} at {offset}+{len} differs"
        );
    }
    // A random jump followed by sequential reads from there.
    let mut offset = 3 * MIB + 5;
    for _ in 0..40 {
        let b = pf.read(offset, 128 * 1024).await.expect("read");
        assert!(b[..] == data[offset as usize..offset as usize + b.len()]);
        offset += b.len() as u64;
    }
    let stats = pf.stats().await;
    assert!(stats.random_reads >= 50, "{stats:?}");

    // Re-reading a block just read costs no request.
    let at = 7 * MIB + 3;
    let first = pf.read(at, 4096).await.expect("read");
    let before = pf.stats().await.requests;
    assert_eq!(pf.read(at, 4096).await.expect("re-read"), first);
    assert_eq!(
        pf.read(at + 100, 100).await.expect("re-read"),
        first[100..200]
    );
    assert_eq!(pf.stats().await.requests, before);
}

/// An overwrite while a handle reads: the handle sees ESTALE, and every byte
/// it got before is the old version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetcher_overwrite_gives_estale() {
    let c = Arc::new(client(S3Server::shared(), "stale").await);
    let old = pattern(24 * MIB as usize, 10);
    let new = pattern(24 * MIB as usize, 11);
    let etag = c
        .put_bytes("obj", old.clone(), &HashMap::new())
        .await
        .expect("put");
    let pf = Prefetcher::new(c.clone(), "obj".into(), etag.clone(), old.len() as u64);

    let step = 128 * 1024u32;
    assert_eq!(
        pf.read(0, step).await.expect("first read"),
        old[..step as usize]
    );
    let etag2 = c
        .put_bytes("obj", new.clone(), &HashMap::new())
        .await
        .expect("overwrite");
    assert_ne!(etag, etag2);

    let mut offset = step as u64;
    let err = loop {
        match pf.read(offset, step).await {
            Ok(b) => {
                assert!(!b.is_empty(), "reached the end without ESTALE");
                assert!(
                    b[..] == old[offset as usize..offset as usize + b.len()],
                    "bytes of the new version at {offset}"
                );
                offset += b.len() as u64;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.errno(), Errno::ESTALE);
    // It stays stale.
    assert_eq!(
        pf.read(offset, step).await.map_err(|e| e.errno()),
        Err(Errno::ESTALE)
    );
    // A handle opened on the new version reads it.
    let pf2 = Prefetcher::new(c.clone(), "obj".into(), etag2, new.len() as u64);
    assert_eq!(
        pf2.read(5 * MIB, step).await.expect("new"),
        new[5 * MIB as usize..][..step as usize]
    );
}
