//! Events: `onGet`/`onPut`/`onDelete` and `onBatch` entries — filters
//! (globs or regexes, size/age units), triggers naming a workflow of the same
//! bucket, webhooks (URL or executable), schedules, batch paths inside the
//! bucket's mounts, `cursor: reset` loops.

use std::path::PathBuf;

use super::{BucketCtx, Ctx, check_executable, http_url};
use crate::config::model::*;
use crate::config::paths::{NAME_MAX, join, join_index, join_key, normalize_bucket_path};
use crate::config::raw::*;
use crate::config::{cron, pattern, units};

fn filter(cx: &mut Ctx, f: &RawFilter, fp: &str) -> Filter {
    let use_regex = f.use_regex.unwrap_or(false);
    let mut check = |key: &str, list: &Option<Vec<String>>| -> Vec<String> {
        let lp = join_key(fp, key);
        let list = list.clone().unwrap_or_default();
        for (i, p) in list.iter().enumerate() {
            // The compiler the runtime filter uses: what passes here is
            // matched exactly so there.
            if let Err(e) = pattern::compile(p, use_regex) {
                cx.err(&join_index(&lp, i), e.message);
            } else if !use_regex && pattern::glob_min_chars(p) > NAME_MAX {
                cx.err(
                    &join_index(&lp, i),
                    format!(
                        "glob of {} bytes matches only names longer than {NAME_MAX} bytes, which cannot exist",
                        p.len()
                    ),
                );
            }
        }
        list
    };
    let patterns = check("patterns", &f.patterns);
    let excludes = check("excludes", &f.excludes);
    let age = f.age.as_ref().and_then(|a| {
        units::parse_age(&a.0)
            .map_err(|m| cx.err(&join_key(fp, "age"), format!("bad age {m}")))
            .ok()
    });
    let size = f.size.as_ref().and_then(|s| {
        units::parse_size(&s.0)
            .map_err(|m| cx.err(&join_key(fp, "size"), format!("bad size {m}")))
            .ok()
    });
    let depth = match f.depth.map(u32::try_from) {
        None => 0,
        Some(Ok(d)) => d,
        Some(Err(_)) => {
            cx.err(&join_key(fp, "depth"), "is too large");
            0
        }
    };
    Filter {
        patterns,
        excludes,
        use_regex,
        filetype: f.filetype.unwrap_or(FileType::File),
        recursive: f.recursive.unwrap_or(false),
        hidden: f.hidden.unwrap_or(false),
        age,
        age_stamp: f.age_stamp.unwrap_or(AgeStamp::Mtime),
        size,
        depth,
    }
}

fn webhook(cx: &mut Ctx, v: &Option<String>, path: &str, active: bool) -> Option<Webhook> {
    let s = v.as_ref()?;
    if s.starts_with("http://") || s.starts_with("https://") {
        return match http_url(s) {
            Ok(()) => Some(Webhook::Http(s.clone())),
            Err(m) => {
                cx.err(path, m);
                None
            }
        };
    }
    if s.starts_with('/') {
        check_executable(cx, active, path, s, "webhook");
        return Some(Webhook::Exec(PathBuf::from(s)));
    }
    cx.err(
        path,
        format!("{s:?} is neither an http(s):// URL nor an absolute path to an executable"),
    );
    None
}

fn trigger(
    cx: &mut Ctx,
    t: &Option<Checked<RawTrigger>>,
    ep: &str,
    enabled: bool,
    bcx: &BucketCtx,
) -> Option<Trigger> {
    let tp = join_key(ep, "trigger");
    let Some(t) = t else {
        if enabled {
            cx.err(&tp, "required when the event is enabled");
        }
        return None;
    };
    let t = cx.take(t, &tp)?;
    let wp = join_key(&tp, "workflow");
    match bcx.workflows.iter().find(|w| w.name == t.workflow) {
        Some(w) if !w.enable && enabled => {
            cx.warn(
                &wp,
                format!(
                    "workflow {:?} is disabled, so this event runs nothing",
                    w.name
                ),
            );
        }
        Some(_) => {}
        None if bcx.workflows_complete => {
            let known: Vec<&str> = bcx.workflows.iter().map(|w| w.name.as_str()).collect();
            let known = if known.is_empty() {
                "the bucket has no workflows".to_string()
            } else {
                format!("workflows: {}", known.join(", "))
            };
            cx.err(
                &wp,
                format!(
                    "no workflow named {:?} in bucket {:?} ({known})",
                    t.workflow, bcx.name
                ),
            );
        }
        None => {}
    }
    Some(Trigger {
        workflow: t.workflow.clone(),
        timing: t.timing.unwrap_or(Timing::Post),
    })
}

pub(super) fn event(cx: &mut Ctx, e: &RawEvent, ep: &str, bcx: &BucketCtx) -> Event {
    let enable = e.enable.unwrap_or(false);
    let active = bcx.active && enable;
    let filter = e.filter.as_ref().and_then(|f| {
        let fp = join_key(ep, "filter");
        cx.take(f, &fp).map(|f| filter(cx, f, &fp))
    });
    let trigger = trigger(cx, &e.trigger, ep, enable, bcx);
    let mut webhooks = Webhooks::default();
    if let Some(w) = &e.webhook {
        let wp = join_key(ep, "webhook");
        if let Some(w) = cx.take(w, &wp) {
            webhooks.on_item_completed = webhook(
                cx,
                &w.on_item_completed,
                &join_key(&wp, "onItemCompleted"),
                active,
            );
            webhooks.on_item_aborted = webhook(
                cx,
                &w.on_item_aborted,
                &join_key(&wp, "onItemAborted"),
                active,
            );
        }
    }
    Event {
        enable,
        filter,
        trigger,
        webhooks,
    }
}

pub(super) fn batch(
    cx: &mut Ctx,
    e: &RawBatch,
    schedule_dropped: bool,
    ep: &str,
    bcx: &BucketCtx,
) -> BatchEvent {
    let enable = e.enable.unwrap_or(false);
    let active = bcx.active && enable;
    let chunk_size = match e.chunk_size {
        Some(0) => {
            cx.err(&join_key(ep, "chunkSize"), "must be at least 1");
            1000
        }
        Some(n) => n,
        None => 1000,
    };
    let pp = join_key(ep, "path");
    let path = match normalize_bucket_path(e.path.as_deref().unwrap_or("/")) {
        Ok(p) => {
            if bcx.mounts_complete && !bcx.dir_reachable(&p) {
                cx.err(
                    &pp,
                    format!(
                        "{p} is not inside any mount of bucket {:?} ({})",
                        bcx.name,
                        bcx.mount_list()
                    ),
                );
            }
            p
        }
        Err(m) => {
            cx.err(&pp, m);
            "/".into()
        }
    };
    let sp = join_key(ep, "schedule");
    let schedule = match &e.schedule {
        Some(s) => cron::parse(s).map_err(|m| cx.err(&sp, m)).ok(),
        None => {
            if enable && !schedule_dropped {
                cx.err(&sp, "required when the scan is enabled");
            }
            None
        }
    };
    let filter = e.filter.as_ref().and_then(|f| {
        let fp = join_key(ep, "filter");
        cx.take(f, &fp).map(|f| filter(cx, f, &fp))
    });
    let trigger = trigger(cx, &e.trigger, ep, enable, bcx);
    if let Some(t) = &trigger
        && t.timing == Timing::Pre
    {
        cx.err(
            &join(ep, "trigger.timing"),
            "must be `post` for onBatch (a scan runs no client operation to wait for)",
        );
    }
    let cursor = e.cursor.unwrap_or(CursorPolicy::Continue);
    if cursor == CursorPolicy::Reset
        && let Some(t) = &trigger
        && let Some(w) = bcx.workflows.iter().find(|w| w.name == t.workflow)
        && w.on_complete.src == SrcOp::None
    {
        cx.warn(
            &join_key(ep, "cursor"),
            format!(
                "`reset` with workflow {:?}, whose onComplete op is `none`, extracts the same items again and again",
                w.name
            ),
        );
    }
    let mut webhooks = Webhooks::default();
    if let Some(w) = &e.webhook {
        let wp = join_key(ep, "webhook");
        if let Some(w) = cx.take(w, &wp) {
            let mut hook =
                |v: &Option<String>, key: &str| webhook(cx, v, &join_key(&wp, key), active);
            webhooks.on_item_completed = hook(&w.on_item_completed, "onItemCompleted");
            webhooks.on_item_aborted = hook(&w.on_item_aborted, "onItemAborted");
            webhooks.on_chunk_extracted = hook(&w.on_chunk_extracted, "onChunkExtracted");
            webhooks.on_chunk_completed = hook(&w.on_chunk_completed, "onChunkCompleted");
        }
    }
    BatchEvent {
        enable,
        chunk_size,
        path,
        traverse: e.traverse.unwrap_or(Traverse::Depth),
        cursor,
        schedule,
        filter,
        trigger,
        webhooks,
    }
}
