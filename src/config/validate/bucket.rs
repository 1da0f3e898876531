//! One bucket: `meta` (object or flat keys, never both), name rules, mounts
//! (normalised mount points, unique; local origins that must be existing
//! directories; `NAME@aws_s3[/prefix]` origins naming an `aws_s3` entry),
//! access rules, then its workflows and events. A mount's `watch` (SPEC
//! §4.5): known mode and initial, an interval between 0.1 s and a day, and no `notify` for an S3 origin.

use std::time::Duration;

use super::events::{batch, event};
use super::workflow::workflow;
use super::{BucketCtx, Ctx, Env, plain_name, seconds, state_dir_overlap};
use crate::config::model::*;
use crate::config::paths::{NAME_MAX, join_index, join_key, normalize_bucket_path};
use crate::config::raw::*;

/// Returns the bucket and the JSON path of its name.
pub(super) fn bucket(
    cx: &mut Ctx,
    raw: &RawBucket,
    dropped: &[String],
    bp: &str,
    env: &Env,
) -> Option<(Bucket, String)> {
    let was_dropped = |k: &str| dropped.iter().any(|d| d == k);
    let flat: Vec<&str> = [
        ("enable", raw.enable.is_some()),
        ("name", raw.name.is_some()),
        ("region", raw.region.is_some()),
        ("expose", raw.expose.is_some()),
    ]
    .iter()
    .filter(|(_, given)| *given)
    .map(|(k, _)| *k)
    .collect();
    let mut name_dropped = was_dropped("name");
    let (meta, meta_path) = match &raw.meta {
        Some(m) => {
            let mp = join_key(bp, "meta");
            if !flat.is_empty() {
                cx.err(
                    bp,
                    format!(
                        "`meta` is given both as an object and as keys of the bucket ({}); use one form",
                        flat.join(", ")
                    ),
                );
            }
            let meta = cx.take(m, &mp)?;
            name_dropped = m.dropped("name");
            (
                RawMeta {
                    enable: meta.enable,
                    name: meta.name.clone(),
                    region: meta.region.clone(),
                    expose: meta.expose,
                },
                mp,
            )
        }
        None => (
            RawMeta {
                enable: raw.enable,
                name: raw.name.clone(),
                region: raw.region.clone(),
                expose: raw.expose,
            },
            bp.to_string(),
        ),
    };
    let name_path = join_key(&meta_path, "name");
    let name = match &meta.name {
        None if name_dropped => String::new(),
        None => {
            let where_ = if raw.meta.is_some() {
                ""
            } else {
                " (in the bucket or in its `meta`)"
            };
            cx.err(&meta_path, format!("missing field `name`{where_}"));
            String::new()
        }
        Some(n) if !plain_name(n) => {
            cx.err(
                &name_path,
                format!("{n:?} is not a valid bucket name (use letters, digits, `.`, `_`, `-`)"),
            );
            n.clone()
        }
        Some(n) if n.len() > NAME_MAX => {
            cx.err(
                &name_path,
                format!(
                    "is {} bytes long; a bucket name (a directory of the mount) is at most {NAME_MAX} bytes",
                    n.len()
                ),
            );
            n.clone()
        }
        Some(n) => n.clone(),
    };
    let mut b = Bucket {
        meta: BucketMeta {
            enable: meta.enable.unwrap_or(true),
            name,
            expose: meta.expose.unwrap_or(true),
            region: meta.region.unwrap_or_else(|| DEFAULT_REGION.into()),
        },
        ..Bucket::default()
    };
    let active = b.meta.enable;

    // Mounts.
    let mounts_path = join_key(bp, "mounts");
    let mut mounts_complete = !was_dropped("mounts");
    let mut seen: Vec<(String, String)> = Vec::new();
    for (j, m) in raw.mounts.iter().flatten().enumerate() {
        let mp = join_index(&mounts_path, j);
        let Some(m) = cx.take(m, &mp) else {
            mounts_complete = false;
            continue;
        };
        let mpp = join_key(&mp, "mountPoint");
        let mount_point = match m.mount_point.as_deref().map(normalize_bucket_path) {
            None => Some(None),
            Some(Ok(p)) if p == "/" => Some(None),
            Some(Ok(p)) => {
                if let Some((_, other)) = seen.iter().find(|(s, _)| *s == p) {
                    cx.err(&mpp, format!("duplicate mountPoint {p} (also {other})"));
                } else {
                    seen.push((p.clone(), mp.clone()));
                }
                Some(Some(p))
            }
            Some(Err(e)) => {
                cx.err(&mpp, e);
                None
            }
        };
        let origin = origin(
            cx,
            &m.origin_path,
            &join_key(&mp, "originPath"),
            active,
            env,
        );
        if let (Some(o), Some(state)) = (&origin, &env.state_dir)
            && o.starts_with('/')
            && let Some(how) = state_dir_overlap(o, state)
        {
            // Clients of an exposed mount could read and rewrite the journal,
            // cursors and staging files; a hidden one is still written by
            // workflows.
            let exposed = b.meta.expose && m.expose.unwrap_or(true);
            let msg = format!(
                "local origin {o} {how} stateDir {state}: clients and workflows of the bucket could read and change storgate's journal and staging files"
            );
            if exposed {
                cx.env(active, &join_key(&mp, "originPath"), msg);
            } else {
                cx.warn(&join_key(&mp, "originPath"), msg);
            }
        }
        let watch = watch(
            cx,
            m.watch.as_ref(),
            &join_key(&mp, "watch"),
            origin.as_deref(),
        );
        match (mount_point, origin) {
            (Some(mount_point), Some(origin_path)) => b.mounts.push(MountSpec {
                mount_point,
                origin_path,
                expose: m.expose.unwrap_or(true),
                watch,
            }),
            _ => mounts_complete = false,
        }
    }
    if b.mounts.is_empty() && mounts_complete && active {
        cx.warn(&mounts_path, "the bucket has no mounts");
    }

    // Access.
    if let Some(a) = &raw.access
        && let Some(a) = cx.take(a, &join_key(bp, "access"))
    {
        let ap = join_key(bp, "access");
        for (key, rule, out) in [
            ("get", &a.get, &mut b.access.get),
            ("put", &a.put, &mut b.access.put),
            ("delete", &a.delete, &mut b.access.delete),
        ] {
            if let Some(r) = rule
                && let Some(r) = cx.take(r, &join_key(&ap, key))
            {
                out.enable = r.enable.unwrap_or(true);
            }
        }
    }

    // Workflows.
    let wp_all = join_key(bp, "workflows");
    let mut workflows_complete = !was_dropped("workflows");
    let mut workflows: Vec<Workflow> = Vec::new();
    let mut wf_paths: Vec<String> = Vec::new();
    {
        let bcx = BucketCtx {
            name: &b.meta.name,
            active,
            mounts: &b.mounts,
            mounts_complete,
            workflows: &[],
            workflows_complete: false,
        };
        for (k, w) in raw.workflows.iter().flatten().enumerate() {
            let wp = join_index(&wp_all, k);
            let Some(w) = cx.take(w, &wp) else {
                workflows_complete = false;
                continue;
            };
            if w.name.is_empty() {
                cx.err(&join_key(&wp, "name"), "must not be empty");
            } else if let Some(i) = workflows.iter().position(|x| x.name == w.name) {
                cx.err(
                    &join_key(&wp, "name"),
                    format!(
                        "duplicate workflow name {:?} (also {})",
                        w.name, wf_paths[i]
                    ),
                );
            }
            workflows.push(workflow(cx, w, &wp, &bcx, env));
            wf_paths.push(wp);
        }
    }
    b.workflows = workflows;

    // Events.
    if let Some(e) = &raw.events
        && let Some(e) = cx.take(e, &join_key(bp, "events"))
    {
        let bcx = BucketCtx {
            name: &b.meta.name,
            active,
            mounts: &b.mounts,
            mounts_complete,
            workflows: &b.workflows,
            workflows_complete,
        };
        let ep = join_key(bp, "events");
        let mut events = Events::default();
        for (key, ev, out) in [
            ("onGet", &e.on_get, &mut events.on_get),
            ("onPut", &e.on_put, &mut events.on_put),
            ("onDelete", &e.on_delete, &mut events.on_delete),
        ] {
            let p = join_key(&ep, key);
            if let Some(ev) = ev
                && let Some(ev) = cx.take(ev, &p)
            {
                *out = event(cx, ev, &p, &bcx);
            }
        }
        let bp_all = join_key(&ep, "onBatch");
        for (i, be_c) in e.on_batch.iter().flatten().enumerate() {
            let p = join_index(&bp_all, i);
            if let Some(be) = cx.take(be_c, &p) {
                events
                    .on_batch
                    .push(batch(cx, be, be_c.dropped("schedule"), &p, &bcx));
            }
        }
        b.events = events;
    }
    Some((b, name_path))
}

/// The smallest `watch.intervalSeconds`. Every poll round lists the whole
/// origin, so a tiny interval would keep a core (and an NFS or S3 server)
/// busy; and an interval that rounds to zero would make the poller spin.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// A mount's `watch` key (absent = the defaults). `origin` is the normalised
/// originPath, None when it was refused (then its kind is unknown).
fn watch(
    cx: &mut Ctx,
    raw: Option<&Checked<RawWatch>>,
    wp: &str,
    origin: Option<&str>,
) -> WatchSpec {
    let mut spec = WatchSpec::default();
    let Some(w) = raw.and_then(|c| cx.take(c, wp)) else {
        return spec;
    };
    if let Some(m) = w.mode {
        spec.mode = m;
    }
    if let Some(i) = w.initial {
        spec.initial = i;
    }
    let ip = join_key(wp, "intervalSeconds");
    spec.interval = seconds(cx, w.interval_seconds, &ip, DEFAULT_WATCH_INTERVAL, false);
    if spec.interval < MIN_WATCH_INTERVAL {
        cx.err(
            &ip,
            format!(
                "{} is below the minimum of {} seconds (every poll round lists the whole origin)",
                w.interval_seconds.unwrap_or_default(),
                MIN_WATCH_INTERVAL.as_secs_f64()
            ),
        );
        spec.interval = DEFAULT_WATCH_INTERVAL;
    }
    if spec.mode == WatchMode::Notify && origin.is_some_and(|o| !o.starts_with('/')) {
        cx.err(
            &join_key(wp, "mode"),
            "an S3 origin cannot be watched with inotify (`notify` sees local file systems only); S3 origins are polled: use \"poll\" or \"auto\"",
        );
    }
    spec
}

/// Checks and normalises an `originPath`.
fn origin(cx: &mut Ctx, s: &str, path: &str, active: bool, env: &Env) -> Option<String> {
    if s.starts_with('/') {
        let norm = match normalize_bucket_path(s) {
            Ok(n) => n,
            Err(e) => {
                cx.err(path, e);
                return None;
            }
        };
        match std::fs::metadata(&norm) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => cx.env(active, path, format!("{norm} is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cx.env(
                active,
                path,
                format!("local directory {norm} does not exist"),
            ),
            Err(e) => cx.env(active, path, format!("cannot access {norm}: {e}")),
        }
        return Some(norm);
    }
    let (head, prefix) = s.split_once('/').unwrap_or((s, ""));
    let name = match head.strip_suffix("@aws_s3") {
        Some(n) if !n.is_empty() => n,
        _ => {
            cx.err(
                path,
                format!("{s:?} is neither an absolute local directory (starting with /) nor NAME@aws_s3[/prefix]"),
            );
            return None;
        }
    };
    env.check_endpoint(cx, path, name);
    let comps: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(c) = comps.iter().find(|c| **c == "." || **c == "..") {
        cx.err(path, format!("{s:?} contains a `{c}` component"));
        return None;
    }
    Some(if comps.is_empty() {
        head.to_string()
    } else {
        format!("{head}/{}", comps.join("/"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::load_str;

    /// A config with one bucket: a local root mount, then a mount at /w
    /// with origin `origin` (`LOCAL` = a second local directory) and
    /// `watch` (absent when `None`).
    fn load(origin: &str, watch: Option<Value>) -> Result<Vec<MountSpec>, Vec<String>> {
        let d = tempfile::tempdir().expect("tempdir");
        for sub in ["root", "w"] {
            std::fs::create_dir(d.path().join(sub)).expect("mkdir");
        }
        let p = |s: &str| d.path().join(s).display().to_string();
        let origin = if origin == "LOCAL" {
            p("w")
        } else {
            origin.into()
        };
        let mut m = json!({"mountPoint": "/w", "originPath": origin});
        if let Some(w) = watch {
            m["watch"] = w;
        }
        let v = json!({
            "stateDir": p("state"),
            "aws_s3": [{"name": "s3", "bucket": "x", "endpoint": "http://127.0.0.1:9"}],
            "buckets": [{"name": "b", "mounts": [{"originPath": p("root")}, m]}]
        });
        match load_str(&v.to_string()) {
            Ok(l) => Ok(l.config.buckets[0].mounts.clone()),
            Err(e) => Err(e.iter().map(ToString::to_string).collect()),
        }
    }

    fn spec(origin: &str, watch: Value) -> WatchSpec {
        match load(origin, Some(watch.clone())) {
            Ok(m) => m[1].watch,
            Err(e) => panic!("{watch} on {origin}: {e:?}"),
        }
    }

    fn refused(origin: &str, watch: Value) -> Vec<String> {
        match load(origin, Some(watch.clone())) {
            Ok(_) => panic!("{watch} on {origin} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn absent_empty_or_null_watch_is_the_default() {
        let m = load("LOCAL", None).expect("valid");
        assert_eq!(m[0].watch, WatchSpec::default());
        assert_eq!(m[1].watch, WatchSpec::default());
        assert_eq!(
            WatchSpec::default(),
            WatchSpec {
                mode: WatchMode::Auto,
                interval: Duration::from_secs(30),
                initial: WatchInitial::Baseline
            }
        );
        for w in [
            json!({}),
            json!(null),
            json!({"mode": null, "intervalSeconds": null, "initial": null}),
        ] {
            assert_eq!(spec("LOCAL", w.clone()), WatchSpec::default(), "{w}");
            assert_eq!(spec("s3@aws_s3/p", w), WatchSpec::default());
        }
    }

    #[test]
    fn every_valid_value() {
        for (name, mode) in [
            ("auto", WatchMode::Auto),
            ("notify", WatchMode::Notify),
            ("poll", WatchMode::Poll),
            ("off", WatchMode::Off),
        ] {
            let s = spec("LOCAL", json!({"mode": name}));
            assert_eq!(
                s,
                WatchSpec {
                    mode,
                    ..WatchSpec::default()
                }
            );
        }
        for (name, initial) in [
            ("baseline", WatchInitial::Baseline),
            ("fire", WatchInitial::Fire),
        ] {
            assert_eq!(spec("LOCAL", json!({"initial": name})).initial, initial);
        }
        for (n, d) in [
            (json!(1), Duration::from_secs(1)),
            (json!(2), Duration::from_secs(2)),
            (json!(2.5), Duration::from_millis(2500)),
            (json!(0.1), Duration::from_millis(100)),
            (json!(86400), Duration::from_secs(86_400)),
        ] {
            assert_eq!(spec("LOCAL", json!({"intervalSeconds": n})).interval, d);
        }
        // S3 origins: every mode but notify.
        for name in ["auto", "poll", "off"] {
            spec("s3@aws_s3", json!({"mode": name}));
        }
        assert_eq!(
            spec(
                "s3@aws_s3/in",
                json!({"mode": "poll", "intervalSeconds": 2, "initial": "fire"})
            ),
            WatchSpec {
                mode: WatchMode::Poll,
                interval: Duration::from_secs(2),
                initial: WatchInitial::Fire
            }
        );
    }

    #[test]
    fn bad_values_name_their_json_path() {
        let p = "buckets[0].mounts[1].watch";
        let cases: &[(Value, &[String])] = &[
            (
                json!({"mode": "inotify"}),
                &[format!(
                    "{p}.mode: unknown variant `inotify`, expected one of `auto`, `notify`, `poll`, `off`"
                )],
            ),
            (
                json!({"mode": 1}),
                &[format!(
                    "{p}.mode: invalid type: integer `1`, expected `auto`, `notify`, `poll` or `off`"
                )],
            ),
            (
                json!({"initial": "all"}),
                &[format!(
                    "{p}.initial: unknown variant `all`, expected `baseline` or `fire`"
                )],
            ),
            (
                json!({"intervalSeconds": 0}),
                &[format!(
                    "{p}.intervalSeconds: 0 is not a positive number of seconds"
                )],
            ),
            (
                json!({"intervalSeconds": -2}),
                &[format!(
                    "{p}.intervalSeconds: -2 is not a positive number of seconds"
                )],
            ),
            (
                json!({"intervalSeconds": "30"}),
                &[format!(
                    "{p}.intervalSeconds: invalid type: string \"30\", expected a number"
                )],
            ),
            (
                json!({"intervalSeconds": 86400.5}),
                &[format!(
                    "{p}.intervalSeconds: 86400.5 seconds is more than the maximum of 86400 (one day)"
                )],
            ),
            (
                json!({"intervalSeconds": 1e-12}),
                &[format!(
                    "{p}.intervalSeconds: 0.000000000001 is below the minimum of 0.1 seconds (every poll round lists the whole origin)"
                )],
            ),
            (
                json!({"intervalSecond": 2}),
                &[format!(
                    "{p}.intervalSecond: unknown field (did you mean `intervalSeconds`?)"
                )],
            ),
            (
                json!("poll"),
                &[format!(
                    "{p}: invalid type: string \"poll\", expected an object"
                )],
            ),
            // Every problem of one watch is reported.
            (
                json!({"mode": "sometimes", "intervalSeconds": 0, "initial": true, "x": 1}),
                &[
                    format!("{p}.x: unknown field"),
                    format!(
                        "{p}.initial: invalid type: boolean `true`, expected `baseline` or `fire`"
                    ),
                    format!(
                        "{p}.mode: unknown variant `sometimes`, expected one of `auto`, `notify`, `poll`, `off`"
                    ),
                    format!("{p}.intervalSeconds: 0 is not a positive number of seconds"),
                ],
            ),
        ];
        for (w, want) in cases {
            assert_eq!(refused("LOCAL", w.clone()), *want, "{w}");
        }
    }

    #[test]
    fn numbers_json_cannot_hold_are_refused_too() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut cx = Ctx::default();
            let raw = Checked {
                value: Some(RawWatch {
                    mode: None,
                    interval_seconds: Some(bad),
                    initial: None,
                }),
                problems: Vec::new(),
                dropped: Vec::new(),
            };
            let s = watch(&mut cx, Some(&raw), "w", Some("/x"));
            assert_eq!(s, WatchSpec::default());
            assert_eq!(
                cx.errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                vec![format!(
                    "w.intervalSeconds: {bad} is not a positive number of seconds"
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn notify_on_an_s3_origin_is_refused() {
        let want = vec![
            "buckets[0].mounts[1].watch.mode: an S3 origin cannot be watched with inotify (`notify` sees local file systems only); S3 origins are polled: use \"poll\" or \"auto\"".to_string(),
        ];
        assert_eq!(refused("s3@aws_s3", json!({"mode": "notify"})), want);
        assert_eq!(
            refused(
                "s3@aws_s3/a/b",
                json!({"mode": "notify", "intervalSeconds": 5})
            ),
            want
        );
        // A local origin may use it; a refused originPath adds no guess.
        spec("LOCAL", json!({"mode": "notify"}));
        assert_eq!(
            refused("s3@aws_s3/../x", json!({"mode": "notify"})),
            vec![
                "buckets[0].mounts[1].originPath: \"s3@aws_s3/../x\" contains a `..` component"
                    .to_string()
            ]
        );
    }
}
