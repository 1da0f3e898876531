//! One bucket: `meta` (object or flat keys, never both), name rules, mounts
//! (normalised mount points, unique; local origins that must be existing
//! directories; `NAME@aws_s3[/prefix]` origins naming an `aws_s3` entry),
//! access rules, then its workflows and events.

use super::events::{batch, event};
use super::workflow::workflow;
use super::{BucketCtx, Ctx, Env, plain_name, state_dir_overlap};
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
        match (mount_point, origin) {
            (Some(mount_point), Some(origin_path)) => b.mounts.push(MountSpec {
                mount_point,
                origin_path,
                expose: m.expose.unwrap_or(true),
                watch: WatchSpec::default(),
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
