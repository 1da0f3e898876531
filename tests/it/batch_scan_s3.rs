//! Batch scans of S3 origins (SPEC §6, "S3: key order") against a moto
//! server on loopback: key order across listing pages, chunks resumed from
//! markers (kept in the scan, and persisted as JSON into a fresh scan), the
//! §3.3 key rules (directory markers, implied directories, `a` vs `a/`,
//! keys no path can name), and the delimiter listing of non-recursive scans.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use common::s3::S3Server;
use storgate::batch::scan::{Marker, Scan, ScanItem};
use storgate::bucket::BucketState;
use storgate::config::model::{FileType, Filter, Traverse};
use storgate::config::{Access, Origin};
use storgate::filter::CompiledFilter;
use storgate::item::path_text;
use storgate::origin::s3::client::S3Client;
use storgate::origin::s3::runtime;
use storgate::origin::{Backend, LocalOrigin, S3Origin};
use storgate::tree::{BucketTree, TreeMount, split_path};
use tempfile::TempDir;

/// A bucket "b": a local root mount and the S3 bucket under key prefix
/// `pre` at `/s3`.
struct Fixture {
    _dir: TempDir,
    client: S3Client,
    state: BucketState,
}

fn fixture(hint: &str) -> Fixture {
    let srv = S3Server::shared();
    let name = srv.new_bucket(hint);
    let ep = srv.s3_endpoint(&name);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).expect("mkdir");
    let origin: Arc<S3Origin> =
        S3Origin::new(&ep, "pre", &dir.path().join("state")).expect("S3 origin");
    let client = runtime()
        .block_on(S3Client::connect(&ep))
        .expect("S3 client");
    let state = BucketState {
        name: "b".into(),
        tree: BucketTree {
            name: "b".into(),
            mounts: vec![
                TreeMount {
                    point: Vec::new(),
                    is_root: true,
                    expose: true,
                    origin: Origin::Local(local.clone()),
                    watch: Default::default(),
                },
                TreeMount {
                    point: split_path("/s3"),
                    is_root: false,
                    expose: true,
                    origin: Origin::S3 {
                        endpoint: name.clone(),
                        prefix: "pre".into(),
                    },
                    watch: Default::default(),
                },
            ],
        },
        access: Access::default(),
        origins: vec![Backend::Local(LocalOrigin::new(local)), Backend::S3(origin)],
    };
    Fixture {
        _dir: dir,
        client,
        state,
    }
}

/// Puts `(key, size)` objects, many at a time.
fn put_all(c: &S3Client, objects: &[(String, usize)]) {
    runtime().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (key, size) in objects {
            let (c, key, body) = (c.clone(), key.clone(), vec![b'x'; *size]);
            set.spawn(async move { c.put_bytes(&key, body, &HashMap::new()).await });
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("put");
        }
    });
}

fn filter(f: Filter) -> CompiledFilter {
    CompiledFilter::new(Some(&f)).expect("filter")
}

fn recursive(filetype: FileType) -> CompiledFilter {
    filter(Filter {
        recursive: true,
        filetype,
        ..Filter::default()
    })
}

fn texts(items: &[ScanItem]) -> Vec<String> {
    items.iter().map(|i| path_text(&i.path)).collect()
}

/// All items in chunks of `n` through one scan (its kept position).
fn chunked(scan: &mut Scan, n: usize, limit: usize) -> Vec<Vec<String>> {
    let mut chunks = Vec::new();
    let mut marker: Option<Marker> = None;
    let mut total = 0;
    loop {
        let (items, _) = scan.next_chunk(marker.as_ref(), n).expect("chunk");
        total += items.len();
        assert!(total <= limit, "the scan repeats itself");
        let full = items.len() == n;
        if let Some(last) = items.last() {
            marker = Some(scan.marker_of(last));
        }
        if !items.is_empty() {
            chunks.push(texts(&items));
        }
        if !full {
            return chunks;
        }
    }
}

/// The bucket path an object key under `pre/` shows as.
fn shown(key: &str) -> String {
    format!(
        "/s3/{}",
        key.trim_start_matches("pre/").trim_end_matches('/')
    )
}

#[test]
fn three_hundred_objects_in_chunks_of_seventy_in_key_order() {
    let fx = fixture("scan300");
    let dirs = ["a", "a-b", "a.b"];
    let objects: Vec<(String, usize)> = (0..300)
        .map(|i| {
            let key = if i % 4 == 3 {
                format!("pre/landing/t{i:03}")
            } else {
                format!("pre/landing/{}/f{i:03}", dirs[i % 4])
            };
            (key, i % 7)
        })
        .collect();
    put_all(&fx.client, &objects);

    let mut keys: Vec<&String> = objects.iter().map(|(k, _)| k).collect();
    keys.sort();
    let expected: Vec<String> = keys.iter().map(|k| shown(k)).collect();
    // Key order, not tree order: `a-b/…` before `a/…`.
    assert!(expected[0].starts_with("/s3/landing/a-b/"));

    let files = recursive(FileType::File);
    let mut scan = Scan::new(&fx.state, "/s3/landing", &files, Traverse::Depth)
        .expect("scan")
        .with_page_size(50);
    let chunks = chunked(&mut scan, 70, 300);
    let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
    assert_eq!(sizes, [70, 70, 70, 70, 20]);
    assert_eq!(chunks.concat(), expected);

    // Resume from a persisted marker in a new scan: exactly the next 70.
    let (all, _) = Scan::new(&fx.state, "/s3/landing", &files, Traverse::Depth)
        .expect("scan")
        .next_chunk(None, 1000)
        .expect("all");
    assert_eq!(texts(&all), expected);
    // Sizes come from the listing.
    let sizes: HashMap<String, usize> = objects.iter().map(|(k, n)| (shown(k), *n)).collect();
    for item in &all {
        assert_eq!(item.st.st_size as usize, sizes[&path_text(&item.path)]);
    }
    let json = serde_json::to_string(&scan.marker_of(&all[139])).expect("json");
    let marker: Marker = serde_json::from_str(&json).expect("marker");
    let mut fresh = Scan::new(&fx.state, "/s3/landing", &files, Traverse::Depth)
        .expect("scan")
        .with_page_size(30);
    let (next, examined) = fresh.next_chunk(Some(&marker), 70).expect("resume");
    assert_eq!(texts(&next), expected[140..210]);
    // The listing started at the marker: nothing before it was read.
    assert_eq!(examined, 70);
    let last = scan.marker_of(&all[299]);
    let (none, _) = fresh.next_chunk(Some(&last), 70).expect("end");
    assert!(none.is_empty());

    // Directories sit where their `dir/` marker would.
    let any = recursive(FileType::Any);
    let mut with_dirs = Scan::new(&fx.state, "/s3/landing", &any, Traverse::Breadth)
        .expect("scan")
        .with_page_size(64);
    let mut positions: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    positions.extend(dirs.iter().map(|d| format!("pre/landing/{d}/")));
    positions.sort();
    let expected_any: Vec<String> = positions.iter().map(|k| shown(k)).collect();
    assert_eq!(chunked(&mut with_dirs, 7, 303).concat(), expected_any);

    // Not recursive: one delimited listing, nothing below is read.
    let top = filter(Filter::default());
    let mut shallow = Scan::new(&fx.state, "/s3/landing", &top, Traverse::Depth).expect("scan");
    let (items, examined) = shallow.next_chunk(None, 1000).expect("top");
    let expected_top: Vec<String> = expected
        .iter()
        .filter(|p| p.starts_with("/s3/landing/t"))
        .cloned()
        .collect();
    assert_eq!(texts(&items), expected_top);
    assert_eq!(examined, 75 + 3);

    // Not recursive, directories too, resumed after each item (a marker
    // on a directory is where the server rolls keys up into its prefix).
    let top_any = filter(Filter {
        filetype: FileType::Any,
        ..Filter::default()
    });
    let (items, _) = Scan::new(&fx.state, "/s3/landing", &top_any, Traverse::Depth)
        .expect("scan")
        .next_chunk(None, 1000)
        .expect("top");
    let names = texts(&items);
    assert_eq!(names.len(), 75 + 3);
    assert_eq!(
        names[..3],
        ["/s3/landing/a-b", "/s3/landing/a.b", "/s3/landing/a"]
    );
    for (i, item) in items.iter().enumerate().take(5) {
        let mut s = Scan::new(&fx.state, "/s3/landing", &top_any, Traverse::Depth)
            .expect("scan")
            .with_page_size(10);
        let m = s.marker_of(item);
        let (rest, _) = s.next_chunk(Some(&m), 1000).expect("resume");
        assert_eq!(texts(&rest), names[i + 1..], "after {}", names[i]);
    }
}

#[test]
fn key_rules_and_resume_across_one_key_pages() {
    let fx = fixture("scanrules");
    let keys = [
        "pre/r/",         // the scan path's own marker: not an item
        "pre/r/a",        // hidden: the directory a/ wins
        "pre/r/a-b",      // sorts between a and a/
        "pre/r/a/b",      // makes a/ an implied directory
        "pre/r/bad/./x",  // not a name; bad/ still shows
        "pre/r/c//d",     // empty component; c/ still shows
        "pre/r/empty/",   // a directory marker
        "pre/r/empty/in", // inside it: the directory shows once
        "pre/r/f",
    ];
    let objects: Vec<(String, usize)> = keys.iter().map(|k| (k.to_string(), 3)).collect();
    put_all(&fx.client, &objects);
    let listed = runtime()
        .block_on(fx.client.list_all("pre/", None))
        .expect("list");
    let mut stored: Vec<&str> = listed.objects.iter().map(|o| o.key.as_str()).collect();
    stored.sort();
    assert_eq!(stored, keys, "the server must keep every key as sent");

    let expected = [
        "/s3/r/a-b",
        "/s3/r/a",
        "/s3/r/a/b",
        "/s3/r/bad",
        "/s3/r/c",
        "/s3/r/empty",
        "/s3/r/empty/in",
        "/s3/r/f",
    ];
    let any = recursive(FileType::Any);
    for page in [1, 2, 1000] {
        let mut scan = Scan::new(&fx.state, "/s3/r", &any, Traverse::Depth)
            .expect("scan")
            .with_page_size(page);
        let (all, _) = scan.next_chunk(None, 100).expect("all");
        assert_eq!(texts(&all), expected, "page size {page}");
        let kinds: Vec<bool> = all
            .iter()
            .map(|i| i.st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .collect();
        assert_eq!(kinds, [false, true, false, true, true, true, false, false]);
        let depths: Vec<u32> = all.iter().map(|i| i.depth).collect();
        assert_eq!(depths, [1, 1, 2, 1, 1, 1, 2, 1]);
        for (i, item) in all.iter().enumerate() {
            let m = scan.marker_of(item);
            let mut fresh = Scan::new(&fx.state, "/s3/r", &any, Traverse::Depth)
                .expect("scan")
                .with_page_size(page);
            let (rest, _) = fresh.next_chunk(Some(&m), 100).expect("resume");
            assert_eq!(
                texts(&rest),
                expected[i + 1..],
                "page {page}, after {}",
                expected[i]
            );
        }
    }

    let missing = Scan::new(&fx.state, "/s3/nothing-here", &any, Traverse::Depth);
    let err = missing.err().expect("a missing path fails").to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn marker_outside_the_scan_path() {
    let fx = fixture("scanouter");
    put_all(
        &fx.client,
        &[("pre/m/x".to_string(), 1), ("pre/m/y".to_string(), 1)],
    );
    let files = recursive(FileType::File);
    let run = |path: &str| {
        let m = Marker {
            path: split_path(path),
            dir: false,
        };
        let mut s = Scan::new(&fx.state, "/s3/m", &files, Traverse::Depth).expect("scan");
        texts(&s.next_chunk(Some(&m), 10).expect("chunk").0)
    };
    assert_eq!(run("/s3/a"), ["/s3/m/x", "/s3/m/y"]);
    assert_eq!(run("/s3/m/x"), ["/s3/m/y"]);
    assert!(run("/s3/n").is_empty());
}
