//! Unit tests of the journal: replay, coalescing, retries, torn logs,
//! compaction and concurrency.

use super::*;
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

fn ev(path: &str, v: u64) -> PostEvent {
    PostEvent::new("b", "wf", "onPut", path, json!({ "path": path, "v": v }))
}

fn version(e: &PostEvent) -> u64 {
    e.item["v"].as_u64().unwrap()
}

fn opts(compact_min_records: u64) -> JournalOptions {
    JournalOptions {
        compact_min_records,
    }
}

fn ids(evs: &[PostEvent]) -> Vec<u64> {
    evs.iter().map(|e| e.id).collect()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

#[test]
fn append_take_done_and_replay() {
    let d = tempfile::tempdir().unwrap();
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert!(replay.is_empty());
    let a = j.append(ev("/a", 1)).unwrap();
    let b = j.append(ev("/b", 1)).unwrap();
    let c = j.append(ev("/c", 1)).unwrap();
    assert_eq!(
        (a, b, c),
        (Appended::Added(1), Appended::Added(2), Appended::Added(3))
    );
    assert_eq!(j.pending_len(), 3);

    let t = j.take().unwrap();
    assert_eq!((t.id, t.path.as_str()), (1, "/a"));
    assert_eq!(j.pending_len(), 2);
    assert!(j.done(1).unwrap());
    assert!(!j.done(1).unwrap(), "done twice");
    let t = j.take().unwrap();
    assert_eq!(t.id, 2); // taken, never done: replayed
    let s = j.stats();
    assert_eq!(
        (s.pending, s.in_flight, s.appended, s.completed),
        (1, 1, 3, 1)
    );
    drop(j);

    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2, 3]);
    assert_eq!(replay[0], ev_with("/b", 1, 2, replay[0].enqueued_at));
    // Ids keep growing.
    assert_eq!(j.append(ev("/d", 1)).unwrap(), Appended::Added(4));
    assert_eq!(ids(&drain(&j)), vec![2, 3, 4]);
}

fn ev_with(path: &str, v: u64, id: u64, at: i64) -> PostEvent {
    PostEvent {
        id,
        enqueued_at: at,
        ..ev(path, v)
    }
}

fn drain(j: &Journal) -> Vec<PostEvent> {
    std::iter::from_fn(|| j.take()).collect()
}

#[test]
fn coalesces_pending_events_of_one_key() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let first = ev("/x", 1);
    let at = first.enqueued_at;
    assert_eq!(j.append(first).unwrap(), Appended::Added(1));
    assert_eq!(j.append(ev("/y", 1)).unwrap(), Appended::Added(2));
    assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Coalesced(1));
    let mut del = ev("/x", 3);
    del.event = "onDelete".into();
    assert_eq!(j.append(del).unwrap(), Appended::Coalesced(1));
    // Another workflow or bucket is another key.
    let mut other = ev("/x", 9);
    other.workflow = "wf2".into();
    assert_eq!(j.append(other).unwrap(), Appended::Added(3));
    assert_eq!(j.pending_len(), 3);
    assert_eq!(j.stats().coalesced, 2);
    drop(j);

    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1, 2, 3]);
    let x = &replay[0];
    assert_eq!(
        (version(x), x.event.as_str(), x.enqueued_at),
        (3, "onDelete", at)
    );
    // Still coalescing after replay.
    assert_eq!(j.append(ev("/x", 4)).unwrap(), Appended::Coalesced(1));
    assert_eq!(version(&j.take().unwrap()), 4);
}

#[test]
fn taken_event_is_not_coalesced_and_replay_keeps_the_newest() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/x", 1)).unwrap();
    assert_eq!(j.take().unwrap().id, 1);
    assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
    assert_eq!(j.append(ev("/x", 3)).unwrap(), Appended::Coalesced(2));
    drop(j); // crash with 1 in flight and 2 pending

    // Both are live at replay; one pending event per key: the newer.
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2]);
    assert_eq!(version(&replay[0]), 3);
    assert_eq!(j.stats().superseded, 1);
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2], "the merge was journaled");
}

#[test]
fn taken_then_done_leaves_only_the_new_event() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/x", 1)).unwrap();
    let t = j.take().unwrap();
    assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
    j.done(t.id).unwrap();
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2]);
}

#[test]
fn failed_with_retry_requeues_at_the_back() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/a", 1)).unwrap();
    j.append(ev("/b", 1)).unwrap();
    let a = j.take().unwrap();
    assert_eq!(j.failed(a.id, true, "timeout").unwrap(), Failed::Requeued);
    assert_eq!(j.pending_len(), 2);
    // Requeued: coalescing applies to it again.
    assert_eq!(j.append(ev("/a", 2)).unwrap(), Appended::Coalesced(1));
    drop(j);

    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2, 1]);
    assert_eq!((replay[1].attempts, version(&replay[1])), (1, 2));
    assert_eq!(j.take().unwrap().id, 2);
    let a = j.take().unwrap();
    assert_eq!(j.failed(a.id, true, "again").unwrap(), Failed::Requeued);
    assert_eq!(j.take().unwrap().attempts, 2);
    assert_eq!(j.failed(99, true, "x").unwrap(), Failed::Unknown);
    assert_eq!(j.stats().retried, 1);
}

#[test]
fn failed_with_retry_is_superseded_by_a_newer_pending_event() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/x", 1)).unwrap();
    let t = j.take().unwrap();
    assert_eq!(j.append(ev("/x", 2)).unwrap(), Appended::Added(2));
    assert_eq!(j.failed(t.id, true, "boom").unwrap(), Failed::Superseded(2));
    assert_eq!(j.pending_len(), 1);
    assert_eq!(j.stats().in_flight, 0);
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2]);
}

#[test]
fn failed_without_retry_goes_to_dead_letters() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/a", 1)).unwrap();
    j.append(ev("/b", 1)).unwrap();
    let a = j.take().unwrap();
    assert_eq!(
        j.failed(a.id, false, "exit status 3\nstderr: nope")
            .unwrap(),
        Failed::Dead
    );
    assert_eq!(j.failed(a.id, false, "again").unwrap(), Failed::Unknown);
    assert_eq!(j.stats().dead, 1);
    drop(j);

    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![2]);
    let text = fs::read_to_string(d.path().join(DEAD_FILE)).unwrap();
    let letters: Vec<DeadLetter> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].error, "exit status 3\nstderr: nope");
    assert_eq!((letters[0].event.id, letters[0].event.attempts), (1, 1));
    assert_eq!(letters[0].event.path, "/a");
}

#[test]
fn torn_last_record_is_ignored() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    for i in 1..=3 {
        j.append(ev(&format!("/f{i}"), i)).unwrap();
    }
    drop(j);
    let full = fs::read(log_path(d.path())).unwrap();
    // Cut the last record in the middle.
    let cut = full.len() - 20;
    fs::OpenOptions::new()
        .write(true)
        .open(log_path(d.path()))
        .unwrap()
        .set_len(cut as u64)
        .unwrap();

    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1, 2]);
    // The torn tail is gone, so new records start on a line of their own.
    let now = fs::read(log_path(d.path())).unwrap();
    assert_eq!(now.last(), Some(&b'\n'));
    assert_eq!(j.append(ev("/f4", 4)).unwrap(), Appended::Added(3));
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1, 2, 3]);
    assert_eq!(replay[2].path, "/f4");
}

/// Builds a log with every kind of record, then opens every prefix of it:
/// no panic, and a prefix cut mid-line replays like the prefix cut at
/// the line's start.
#[test]
fn every_truncation_point_replays_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/a", 1)).unwrap();
    j.append(ev("/b", 1)).unwrap();
    j.append(ev("/a", 2)).unwrap(); // upd
    let a = j.take().unwrap();
    j.failed(a.id, true, "x").unwrap(); // retry
    let b = j.take().unwrap();
    j.done(b.id).unwrap();
    j.append(ev("/c", 1)).unwrap();
    let a = j.take().unwrap();
    j.failed(a.id, false, "y").unwrap(); // dead
    j.append(ev("/d", 1)).unwrap();
    drop(j);
    let full = fs::read(log_path(d.path())).unwrap();

    let replay_of = |bytes: &[u8]| {
        let d = tempfile::tempdir().unwrap();
        fs::write(log_path(d.path()), bytes).unwrap();
        let (_j, replay) = Journal::open(d.path()).unwrap();
        let on_disk = fs::read(log_path(d.path())).unwrap();
        assert!(on_disk.is_empty() || on_disk.ends_with(b"\n"));
        replay
            .into_iter()
            .map(|e| (e.id, version(&e), e.attempts))
            .collect::<Vec<_>>()
    };
    let mut line_start = 0;
    let mut at_start = replay_of(&[]);
    for len in 0..=full.len() {
        if len > 0 && full[len - 1] == b'\n' {
            line_start = len;
            at_start = replay_of(&full[..len]);
        } else if len != line_start {
            assert_eq!(replay_of(&full[..len]), at_start, "cut at {len}");
        }
    }
    assert_eq!(at_start, vec![(3, 1, 0), (4, 1, 0)]);
}

#[test]
fn corrupt_lines_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/a", 1)).unwrap();
    drop(j);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(log_path(d.path()))
        .unwrap();
    f.write_all(b"{\"t\":\"add\",\"ev\":{\"id\":7\n").unwrap();
    f.write_all(b"\0\0\0\0\0\0\n\n").unwrap();
    f.write_all(b"{\"t\":\"frobnicate\",\"id\":1}\n").unwrap();
    f.write_all(b"[1,2,3]\n").unwrap();
    drop(f);
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1]);
    j.append(ev("/b", 1)).unwrap();
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1, 2]);
}

#[test]
fn newer_format_is_refused() {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        log_path(d.path()),
        b"{\"t\":\"meta\",\"v\":99,\"next_id\":1}\n",
    )
    .unwrap();
    let e = Journal::open(d.path()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn record_of_a_newer_names_format_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let ev = json!({"id": 1, "bucket": "b", "workflow": "wf", "event": "onPut",
        "path": "/a", "item": {}, "enqueued_at": 1});
    fs::write(
        log_path(d.path()),
        format!("{}\n", json!({"t": "add", "v": 99, "ev": ev})),
    )
    .unwrap();
    let e = Journal::open(d.path()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn unfinished_compaction_is_discarded() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    j.append(ev("/a", 1)).unwrap();
    drop(j);
    // A crash before the rename: the temp file is half written.
    fs::write(
        d.path().join(LEGACY_TMP_FILE),
        b"{\"t\":\"meta\",\"v\":1,\"next_id\":5}\n{\"t\":\"ad",
    )
    .unwrap();
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), vec![1]);
    assert!(!d.path().join(LEGACY_TMP_FILE).exists());
}

#[test]
fn compaction_keeps_pending_and_in_flight_events() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open_with(d.path(), opts(100)).unwrap();
    for i in 0..300 {
        j.append(ev(&format!("/f{i}"), i)).unwrap();
    }
    // Finish 250, keep 20 in flight and 30 pending.
    for _ in 0..250 {
        let t = j.take().unwrap();
        j.done(t.id).unwrap();
    }
    let in_flight: Vec<u64> = (0..20).map(|_| j.take().unwrap().id).collect();
    let s = j.stats();
    assert!(s.compactions >= 1, "{s:?}");
    assert!(s.log_records < 200, "{s:?}");
    assert_eq!((s.pending, s.in_flight), (30, 20));
    j.compact().unwrap();
    let s = j.stats();
    assert_eq!(s.log_records, 51); // meta + 50 live
    assert_eq!(
        fs::read_to_string(log_path(d.path()))
            .unwrap()
            .lines()
            .count(),
        51
    );
    // The journal keeps working on the new file.
    assert_eq!(j.append(ev("/new", 1)).unwrap(), Appended::Added(301));
    j.done(in_flight[0]).unwrap();
    drop(j);

    let (j, replay) = Journal::open_with(d.path(), opts(100)).unwrap();
    let got = ids(&replay);
    let want: Vec<u64> = (251..=301).filter(|&id| id != in_flight[0]).collect();
    let got_set: HashSet<u64> = got.iter().copied().collect();
    assert_eq!(got_set, want.iter().copied().collect::<HashSet<_>>());
    assert_eq!(got.len(), want.len());
    assert!(
        replay
            .iter()
            .all(|e| version(e) == e.id - 1 || e.path == "/new")
    );
    // Ids continue after the compacted log's meta record, even with
    // nothing live.
    for e in drain(&j) {
        j.done(e.id).unwrap();
    }
    j.compact().unwrap();
    drop(j);
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert!(replay.is_empty());
    assert_eq!(j.append(ev("/z", 1)).unwrap(), Appended::Added(302));
}

#[test]
fn compaction_runs_at_open_when_due() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open_with(d.path(), opts(1_000_000)).unwrap();
    for i in 0..100 {
        j.append(ev(&format!("/f{i}"), i)).unwrap();
        let t = j.take().unwrap();
        j.done(t.id).unwrap();
    }
    j.append(ev("/left", 1)).unwrap();
    assert_eq!(j.stats().compactions, 0);
    drop(j);
    let (j, replay) = Journal::open_with(d.path(), opts(50)).unwrap();
    assert_eq!(ids(&replay), vec![101]);
    let s = j.stats();
    assert_eq!((s.compactions, s.log_records), (1, 2));
}

#[test]
fn a_second_open_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let e = Journal::open(d.path()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    drop(j);
    Journal::open(d.path()).unwrap();
}

#[test]
fn take_blocking_waits_for_an_append() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let j = Arc::new(j);
    assert!(j.take_blocking(Duration::from_millis(20)).is_none());
    let j2 = j.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        j2.append(ev("/late", 1)).unwrap();
    });
    let got = j.take_blocking(Duration::from_secs(10)).unwrap();
    assert_eq!(got.path, "/late");
    t.join().unwrap();
}

/// 8 threads × 2,000 events with distinct keys: every id replayed once.
#[test]
fn concurrent_appenders_distinct_keys() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let j = Arc::new(j);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                (0..2000)
                    .map(|i| match j.append(ev(&format!("/t{t}/f{i}"), i)).unwrap() {
                        Appended::Added(id) => id,
                        c => panic!("coalesced {c:?}"),
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let s = j.stats();
    assert!(s.syncs < 16_000, "group commit shared syncs: {s:?}");
    drop(j);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 16_000);

    let (_j, replay) = Journal::open(d.path()).unwrap();
    let mut got = ids(&replay);
    assert_eq!(got.len(), 16_000);
    got.sort_unstable();
    assert_eq!(got, all);
    let keys: HashSet<&str> = replay.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(keys.len(), 16_000);
}

/// 8 threads × 2,000 events over a few keys each (and some keys shared
/// by all threads): one pending event per key, carrying the last snapshot.
#[test]
fn concurrent_appenders_coalescing() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let j = Arc::new(j);
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0..2000u64 {
                    j.append(ev(&format!("/t{t}/k{}", i % 50), i)).unwrap();
                    j.append(ev(&format!("/shared{}", i % 5), t * 10_000 + i))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(j.pending_len(), 8 * 50 + 5);
    drop(j);

    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(replay.len(), 8 * 50 + 5);
    let keys: HashSet<&str> = replay.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(keys.len(), replay.len());
    for e in &replay {
        if let Some(k) = e.path.rsplit_once("/k") {
            let k: u64 = k.1.parse().unwrap();
            assert_eq!(version(e), 1950 + k, "{}", e.path); // the thread's last write
        } else {
            assert!(version(e) % 10_000 >= 1995, "{e:?}"); // someone's last write
        }
    }
}

/// Appenders, workers and compactions at once: everything done exactly
/// once, nothing left.
#[test]
fn concurrent_appenders_and_workers_with_compaction() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open_with(d.path(), opts(500)).unwrap();
    let j = Arc::new(j);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut added = Vec::new();
                for i in 0..1500 {
                    if let Appended::Added(id) =
                        j.append(ev(&format!("/t{t}/f{}", i % 300), i)).unwrap()
                    {
                        added.push(id);
                    }
                }
                added
            })
        })
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let j = j.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut finished = Vec::new();
                loop {
                    match j.take_blocking(Duration::from_millis(20)) {
                        Some(e) if w == 0 && e.attempts == 0 && e.id % 7 == 0 => {
                            match j.failed(e.id, true, "flaky").unwrap() {
                                Failed::Requeued => {}
                                Failed::Superseded(_) => finished.push(e.id),
                                other => panic!("{other:?}"),
                            }
                        }
                        Some(e) => {
                            assert!(j.done(e.id).unwrap());
                            finished.push(e.id);
                        }
                        None if stop.load(std::sync::atomic::Ordering::SeqCst) => break,
                        None => {}
                    }
                }
                finished
            })
        })
        .collect();
    let mut added: Vec<u64> = appenders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    while j.stats().pending + j.stats().in_flight > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut finished: Vec<u64> = workers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    added.sort_unstable();
    finished.sort_unstable();
    assert_eq!(finished, added, "every event finished exactly once");
    let s = j.stats();
    assert!(s.compactions > 0, "{s:?}");
    drop(j);
    let (_j, replay) = Journal::open(d.path()).unwrap();
    assert!(replay.is_empty(), "{replay:?}");
}

/// Not a timed assertion: prints events/s for 1 and 8 appending threads,
/// each run for about a second
/// (`cargo test --lib journal::tests::throughput -- --nocapture`).
#[test]
fn throughput() {
    for threads in [1usize, 8] {
        let d = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(d.path()).unwrap();
        let j = Arc::new(j);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(1);
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        j.append(ev(&format!("/t{t}/f{n}"), n)).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let events: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        let s = j.stats();
        assert_eq!(s.appended, events);
        println!(
            "journal throughput, {threads} thread(s): {:.0} events/s ({events} events, {} fdatasyncs, {:.1} events/sync)",
            events as f64 / secs,
            s.syncs,
            events as f64 / s.syncs.max(1) as f64
        );
    }
}

// ---- names are bytes (SPEC §9.1) ----

use crate::name::to_text;

#[test]
fn names_of_the_same_lossy_text_are_two_keys() {
    let d = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(d.path()).unwrap();
    let ff = to_text(b"/in/bad\xff.jpg");
    let fe = to_text(b"/in/bad\xfe.jpg");
    assert_eq!(j.append(ev(&ff, 1)).unwrap(), Appended::Added(1));
    assert_eq!(j.append(ev(&fe, 1)).unwrap(), Appended::Added(2));
    assert_eq!(j.append(ev(&ff, 2)).unwrap(), Appended::Coalesced(1));
    drop(j);
    let text = fs::read_to_string(log_path(d.path())).unwrap();
    assert!(
        text.lines()
            .all(|l| !l.contains("\"t\":\"add\"") || l.contains("\"v\":2")),
        "add records carry their names' format: {text}"
    );
    let (_j, replay) = Journal::open(d.path()).unwrap();
    let paths: Vec<&str> = replay.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, [ff.as_str(), fe.as_str()]);
    assert_eq!(crate::name::to_bytes(&replay[1].path), b"/in/bad\xfe.jpg");
}

/// A line of a format-1 log (no `v`): lossy path, exact bytes in `__raw_path`.
fn legacy_add(id: u64, path: &str, raw: Option<&[u8]>) -> String {
    let mut item =
        json!({"path": path, "filename": path.rsplit('/').next(), "dirname": "/in", "size": 3});
    if let Some(raw) = raw {
        item["__raw_path"] = json!(raw);
    }
    let ev = json!({"id": id, "bucket": "b", "workflow": "wf", "event": "onPut",
        "path": path, "item": item, "enqueued_at": 1, "attempts": 0});
    format!("{}\n", json!({"t": "add", "ev": ev}))
}

#[test]
fn format_1_journals_replay_with_exact_names() {
    let d = tempfile::tempdir().unwrap();
    let lossy = "/in/bad\u{FFFD}.jpg";
    // Two events of the same lossy text (one taken, then a new one, before
    // the crash), a UTF-8 name, and a UTF-8 name holding a code point that
    // format 2 uses as an escape.
    let log = [
        legacy_add(1, lossy, Some(b"/in/bad\xff.jpg")),
        legacy_add(2, lossy, Some(b"/in/bad\xfe.jpg")),
        legacy_add(3, "/in/ok.jpg", None),
        legacy_add(4, "/in/x\u{10FFFF}.jpg", None),
    ]
    .concat();
    fs::write(log_path(d.path()), log).unwrap();
    let (j, replay) = Journal::open(d.path()).unwrap();
    assert_eq!(ids(&replay), [1, 2, 3, 4], "no longer one key");
    let bytes: Vec<Vec<u8>> = replay
        .iter()
        .map(|e| crate::name::to_bytes(&e.path))
        .collect();
    assert_eq!(
        bytes,
        [
            &b"/in/bad\xff.jpg"[..],
            b"/in/bad\xfe.jpg",
            b"/in/ok.jpg",
            "/in/x\u{10FFFF}.jpg".as_bytes()
        ]
    );
    for e in &replay {
        assert!(e.item.get("__raw_path").is_none(), "{e:?}");
        assert_eq!(e.item["path"], e.path.as_str(), "{e:?}");
        assert_eq!(e.item["size"], 3, "the rest of the item is kept");
    }
    assert_eq!(replay[0].item["filename"], "bad\u{10FFFF}.jpg");
    assert_eq!(replay[2].item["filename"], "ok.jpg");
    // The converted key is the one a new event of the same name has.
    assert_eq!(
        j.append(ev(&to_text(b"/in/bad\xfe.jpg"), 5)).unwrap(),
        Appended::Coalesced(2)
    );
    drop(j);
    // Format-1 and format-2 records in one log replay the same.
    let (_j, again) = Journal::open(d.path()).unwrap();
    let paths: Vec<&str> = again.iter().map(|e| e.path.as_str()).collect();
    let before: Vec<&str> = replay.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, before);
}
