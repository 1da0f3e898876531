//! Workflows and tasks: functions (copy, HTTP needing `functionBaseUrl`,
//! `exec`), `savePath` / `onComplete.src.path` templates (syntax, absolute,
//! no literal `..`, inside a mount of the bucket), `pathPattern` and its `#N`
//! references, timeouts.

use std::time::Duration;

use super::{BucketCtx, Ctx, Env, check_executable, seconds};
use crate::config::model::*;
use crate::config::paths::{NAME_MAX, join_index, join_key, normalize_bucket_path};
use crate::config::pattern::regex_error;
use crate::config::raw::*;
use crate::config::template;

/// A template that must render to an absolute path inside the bucket
/// (`savePath`, `onComplete.src.path`).
fn check_path_template(cx: &mut Ctx, src: &str, path: &str, bcx: &BucketCtx) -> bool {
    if let Err(m) = template::check_syntax(src) {
        cx.err(path, m.to_string());
        return false;
    }
    if src.trim().is_empty() {
        cx.err(path, "must not be empty");
        return false;
    }
    // Unknown names do not stop the shape checks below.
    for m in template::check_names(src) {
        cx.err(path, m);
    }
    if let Some(n) = template::long_literal_component(src, NAME_MAX) {
        cx.err(
            path,
            format!("{src:?} has a literal component of {n} bytes; a file name is at most {NAME_MAX} bytes"),
        );
        return false;
    }
    if !template::can_be_absolute(src) {
        cx.err(
            path,
            format!(
                "{src:?} is not an absolute bucket path (it must start with / or with a template)"
            ),
        );
        return false;
    }
    if template::has_literal_dotdot(src) {
        cx.err(path, format!("{src:?} contains a `..` component"));
        return false;
    }
    if !bcx.mounts_complete {
        return true;
    }
    let (prefix, literal) = template::literal_prefix(src);
    if !prefix.starts_with('/') {
        return true;
    }
    let reachable = if literal {
        match normalize_bucket_path(prefix) {
            Ok(p) => {
                if let Some(mp) = bcx.layout_dir(&p) {
                    let what = if mp == p {
                        "the mount point itself".to_string()
                    } else {
                        format!("a directory holding the mount point {mp}")
                    };
                    cx.err(
                        path,
                        format!(
                            "{src:?} is {what}, not a file inside a mount of bucket {:?}",
                            bcx.name
                        ),
                    );
                    return false;
                }
                bcx.file_reachable(&p)
            }
            Err(e) => {
                cx.err(path, e);
                return false;
            }
        }
    } else {
        let dir = &prefix[..prefix.rfind('/').map_or(1, |i| i + 1)];
        match normalize_bucket_path(dir) {
            Ok(d) => bcx.dir_reachable(&d),
            Err(e) => {
                cx.err(path, e);
                return false;
            }
        }
    };
    if !reachable {
        cx.err(
            path,
            format!(
                "{src:?} is not inside any mount of bucket {:?} ({})",
                bcx.name,
                bcx.mount_list()
            ),
        );
        return false;
    }
    true
}

pub(super) fn workflow(
    cx: &mut Ctx,
    w: &RawWorkflow,
    wp: &str,
    bcx: &BucketCtx,
    env: &Env,
) -> Workflow {
    let enable = w.enable.unwrap_or(true);
    let mut tasks = Vec::new();
    let tp_all = join_key(wp, "tasks");
    for (t, raw) in w.tasks.iter().flatten().enumerate() {
        let tp = join_index(&tp_all, t);
        if let Some(raw) = cx.take(raw, &tp) {
            tasks.push(task(cx, raw, &tp, bcx, env, bcx.active && enable));
        }
    }
    let mut on_complete = OnComplete::default();
    let op = join_key(wp, "onComplete");
    if let Some(oc) = &w.on_complete
        && let Some(oc) = cx.take(oc, &op)
        && let Some(src) = &oc.src
    {
        let sp = join_key(&op, "src");
        if let Some(src) = cx.take(src, &sp) {
            let kind = src.op.unwrap_or(SrcOpKind::None);
            on_complete.src = match (kind, &src.path) {
                (SrcOpKind::Move, Some(p)) => {
                    check_path_template(cx, p, &join_key(&sp, "path"), bcx);
                    SrcOp::Move { path: p.clone() }
                }
                (SrcOpKind::Move, None) => {
                    cx.err(&sp, "op `move` needs a `path`");
                    SrcOp::None
                }
                (k, p) => {
                    if p.is_some() {
                        cx.warn(
                            &join_key(&sp, "path"),
                            format!("only used with op `move`; ignored with op `{k}`"),
                        );
                    }
                    if k == SrcOpKind::Delete {
                        SrcOp::Delete
                    } else {
                        SrcOp::None
                    }
                }
            };
        }
    }
    Workflow {
        name: w.name.clone(),
        enable,
        tasks,
        on_complete,
    }
}

fn task(cx: &mut Ctx, t: &RawTask, tp: &str, bcx: &BucketCtx, env: &Env, active: bool) -> Task {
    let fp = join_key(tp, "function");
    let function = match &t.function {
        None => Function::Copy,
        Some(RawFunction::Http(p)) => {
            if !p.starts_with('/') {
                cx.err(
                    &fp,
                    format!("{p:?}: an HTTP function path must start with / (use {{\"exec\": […]}} to run a program)"),
                );
            } else if p.contains(|c: char| c.is_whitespace() || c.is_control()) {
                cx.err(
                    &fp,
                    format!("{p:?}: an HTTP function path must not contain spaces or control characters (it becomes part of a URL)"),
                );
            } else if !env.has_function_base_url {
                cx.err(
                    &fp,
                    format!("HTTP function {p} needs `functionBaseUrl` at the top level"),
                );
            }
            Function::Http(p.clone())
        }
        Some(RawFunction::Exec(args)) => {
            let xp = join_key(&fp, "exec");
            match args.first() {
                None => cx.err(&xp, "must name a program: [\"prog\", \"arg\", …]"),
                Some(p) if p.trim().is_empty() => {
                    cx.err(&join_index(&xp, 0), "the program must not be empty")
                }
                Some(p) if p.starts_with('/') && template::literal_prefix(p).1 => {
                    check_executable(cx, active, &join_index(&xp, 0), p, "program")
                }
                Some(_) => {}
            }
            for (i, a) in args.iter().enumerate() {
                match template::check_syntax(a) {
                    Err(m) => cx.err(&join_index(&xp, i), m.to_string()),
                    Ok(()) => {
                        for m in template::check_names(a) {
                            cx.err(&join_index(&xp, i), m);
                        }
                    }
                }
            }
            Function::Exec(args.clone())
        }
    };

    let sp = join_key(tp, "savePath");
    let save_ok = check_path_template(cx, &t.save_path, &sp, bcx);
    let mut path_pattern = None;
    match &t.path_pattern {
        Some(pat) => match regex::Regex::new(pat) {
            Ok(re) => {
                let groups = re.captures_len() - 1;
                if save_ok
                    && let Some(n) = template::group_refs(&t.save_path)
                        .into_iter()
                        .find(|n| *n > groups)
                {
                    cx.err(
                        &sp,
                        format!("#{n} refers to a capture group that pathPattern does not have (it has {groups})"),
                    );
                }
                path_pattern = Some(re);
            }
            Err(e) => cx.err(&join_key(tp, "pathPattern"), regex_error(pat, &e)),
        },
        None => {
            if save_ok && let Some(n) = template::group_refs(&t.save_path).first() {
                cx.err(&sp, format!("uses #{n} but the task has no pathPattern"));
            }
        }
    }
    Task {
        function,
        save_path: t.save_path.clone(),
        path_pattern,
        when_exist: t.when_exist.unwrap_or(WhenExist::Overwrite),
        timeout: seconds(
            cx,
            t.timeout,
            &join_key(tp, "timeout"),
            Duration::from_secs(60),
            false,
        ),
    }
}
