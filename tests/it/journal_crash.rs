//! Real crashes of the post-event journal (SPEC §4.2): a child process — this
//! test binary run again with `STORGATE_JOURNAL_CRASH_DIR` set — appends
//! events, takes and finishes some, and reports each step over a pipe (its
//! stdout). It dies by SIGKILL: its own after 2,000 appends, or the parent's
//! at a random point (often in the middle of an fdatasync or a compaction).
//! The parent then reopens the journal and checks the replay set against the
//! reports:
//! - every event whose append returned and that was not finished (no `done`
//!   or dead letter started, no retry that may have been superseded) is
//!   replayed — as itself, or merged into a newer event of the same key — with
//!   an item at least as new as the last one reported for it;
//! - one event per key; nothing replayed that was never appended, except at
//!   most the one append in progress when the child died.
//!
//! Report lines (prefixed `J `, other stdout is the test harness's):
//! `A id key version` an append (new or coalesced) returned, or an event was
//! replayed at open; `D id` about to finish an event (done or dead);
//! `R id` about to retry an event; `Q id` it was requeued; `K` about to kill
//! itself.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use storgate::events::journal::{Appended, Failed, Journal, JournalOptions, PostEvent};

const DIR_ENV: &str = "STORGATE_JOURNAL_CRASH_DIR";
const MODE_ENV: &str = "STORGATE_JOURNAL_CRASH_MODE";
const ROUND_ENV: &str = "STORGATE_JOURNAL_CRASH_ROUND";
const COMPACT_ENV: &str = "STORGATE_JOURNAL_CRASH_COMPACT";

/// The child's body; a no-op unless run by `spawn_child`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let self_kill = std::env::var(MODE_ENV).unwrap() == "self";
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let compact: u64 = std::env::var(COMPACT_ENV).unwrap().parse().unwrap();

    let mut out = std::io::stdout().lock();
    // The harness has printed `test journal_crash::crash_child ... ` without a newline.
    out.write_all(b"\n").unwrap();
    let mut report = |line: String| {
        out.write_all(format!("J {line}\n").as_bytes()).unwrap();
        out.flush().unwrap();
    };
    let (j, replay) = Journal::open_with(
        Path::new(&dir),
        JournalOptions {
            compact_min_records: compact,
        },
    )
    .unwrap();
    for e in &replay {
        report(format!("A {} {} {}", e.id, e.path, e.item["v"]));
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (round + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0u64.. {
        if self_kill && i == 2000 {
            report("K".into());
            // SAFETY: plain syscalls.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        let key = format!("/f{}", rand() % 600);
        let version = round * 1_000_000 + i;
        let item = json!({ "path": key, "v": version });
        let res = j
            .append(PostEvent::new("b", "wf", "onPut", &key, item))
            .unwrap();
        let (Appended::Added(id) | Appended::Coalesced(id)) = res;
        report(format!("A {id} {key} {version}"));
        match rand() % 10 {
            0..=2 => {
                if let Some(e) = j.take() {
                    report(format!("D {}", e.id));
                    assert!(j.done(e.id).unwrap());
                }
            }
            3 => {
                // Taken and never finished: in flight at the crash.
                j.take();
            }
            4 => {
                if let Some(e) = j.take() {
                    report(format!("R {}", e.id));
                    if j.failed(e.id, true, "flaky").unwrap() == Failed::Requeued {
                        report(format!("Q {}", e.id));
                    }
                }
            }
            5 => {
                if let Some(e) = j.take() {
                    report(format!("D {}", e.id));
                    assert_eq!(j.failed(e.id, false, "given up").unwrap(), Failed::Dead);
                }
            }
            _ => {}
        }
    }
}

struct Reports {
    /// id → (key, newest version reported)
    appended: HashMap<u64, (String, u64)>,
    /// Finished, or retried and maybe superseded: may be missing.
    exempt: HashSet<u64>,
    lines: usize,
    self_killed: bool,
}

impl Reports {
    /// `known`: the replay set the parent saw after the previous crash (the
    /// child may die before it has reported it).
    fn new(known: &[PostEvent]) -> Reports {
        Reports {
            appended: known
                .iter()
                .map(|e| (e.id, (e.path.clone(), e.item["v"].as_u64().unwrap())))
                .collect(),
            exempt: HashSet::new(),
            lines: 0,
            self_killed: false,
        }
    }

    fn read(&mut self, line: &str) -> bool {
        let Some(rest) = line.strip_prefix("J ") else {
            return false;
        };
        self.lines += 1;
        let f: Vec<&str> = rest.split(' ').collect();
        let id = || f[1].parse::<u64>().unwrap();
        match f[0] {
            "A" => {
                let version: u64 = f[3].parse().unwrap();
                let slot = self
                    .appended
                    .entry(id())
                    .or_insert_with(|| (f[2].to_string(), version));
                assert_eq!(slot.0, f[2], "one id, one key");
                slot.1 = slot.1.max(version);
            }
            "D" | "R" => {
                self.exempt.insert(id());
            }
            "Q" => {
                self.exempt.remove(&id());
            }
            "K" => self.self_killed = true,
            other => panic!("bad report {other}"),
        }
        true
    }
}

/// The full name of [`crash_child`] in this test binary (`MODULE::crash_child`,
/// without the crate name), as `--exact` wants it.
fn child_test() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    format!("{module}::crash_child")
}

/// Runs one child until it is SIGKILLed; `kill_after`: the parent kills it
/// after that many report lines, else it kills itself.
fn run_child(
    dir: &Path,
    round: u64,
    compact: u64,
    kill_after: Option<usize>,
    known: &[PostEvent],
) -> Reports {
    // The children load the machine: not beside the throttling test.
    crate::common::cpu::enter();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .arg(child_test())
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(
            MODE_ENV,
            if kill_after.is_some() {
                "parent"
            } else {
                "self"
            },
        )
        .env(ROUND_ENV, round.to_string())
        .env(COMPACT_ENV, compact.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reports = Reports::new(known);
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut killed = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if reports.read(&line) && !killed && Some(reports.lines) == kill_after {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    // Everything written before the kill has been read (EOF).
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child ended by itself: {status}"
    );
    if kill_after.is_none() {
        assert!(reports.self_killed);
    }
    reports
}

/// Opens the journal as the restarted daemon would, checks the replay set
/// and returns it.
fn check_replay(dir: &Path, compact: u64, r: &Reports, round: u64) -> Vec<PostEvent> {
    let (j, replay) = Journal::open_with(
        dir,
        JournalOptions {
            compact_min_records: compact,
        },
    )
    .unwrap();
    let mut by_key: HashMap<&str, &PostEvent> = HashMap::new();
    let mut ids = HashSet::new();
    let max_reported = r.appended.keys().copied().max().unwrap_or(0);
    let mut unknown = Vec::new();
    for e in &replay {
        assert!(ids.insert(e.id), "id {} replayed twice", e.id);
        assert!(
            by_key.insert(&e.path, e).is_none(),
            "two pending events for {}",
            e.path
        );
        match r.appended.get(&e.id) {
            Some((key, _)) => assert_eq!(key, &e.path),
            None => unknown.push(e.id),
        }
    }
    assert!(
        unknown.len() <= 1 && unknown.iter().all(|&id| id > max_reported),
        "replayed events never reported appended: {unknown:?} (last reported id {max_reported})"
    );
    let mut must = 0;
    for (id, (key, version)) in &r.appended {
        if r.exempt.contains(id) {
            continue;
        }
        must += 1;
        let Some(e) = by_key.get(key.as_str()) else {
            panic!(
                "round {round}: event {id} ({key}) was appended, not finished, and is not replayed"
            );
        };
        let got = e.item["v"].as_u64().unwrap();
        assert!(
            got >= *version,
            "round {round}: {key}: replayed version {got} older than reported {version}"
        );
        if e.id == *id {
            assert_eq!(e.item["path"], json!(key));
        }
    }
    let s = j.stats();
    println!(
        "round {round}: {} reports, {} ids appended, {must} must replay, {} replayed, log {} records",
        r.lines,
        r.appended.len(),
        replay.len(),
        s.log_records
    );
    replay
}

#[test]
fn kill_9_after_2000_appends() {
    let d = tempfile::tempdir().unwrap();
    let compact = JournalOptions::default().compact_min_records;
    let r = run_child(d.path(), 0, compact, None, &[]);
    assert!(
        r.appended.len() > 500,
        "coalescing, not losing: {}",
        r.appended.len()
    );
    check_replay(d.path(), compact, &r, 0);
}

/// Several crashes in a row on one journal, each at a random point, with a
/// small compaction threshold so that some land in a compaction.
#[test]
fn kill_9_at_random_points() {
    let d = tempfile::tempdir().unwrap();
    let compact = 150;
    let mut known = Vec::new();
    for round in 1..=6 {
        let kill_after = rand::random_range(20..1500usize);
        let r = run_child(d.path(), round, compact, Some(kill_after), &known);
        known = check_replay(d.path(), compact, &r, round);
    }
}
