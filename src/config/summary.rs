//! The human summary `storgate check` prints for a valid config: buckets with
//! their mounts, origins and (when not the default) watch modes, access,
//! enabled events, workflows, S3 endpoints (never their keys), distribution
//! and throttling. Deterministic, so tests can compare it.

use std::fmt::Write;

use super::model::*;

fn hooks(w: &Webhooks) -> String {
    let mut v = Vec::new();
    for (k, h) in [
        ("onItemCompleted", &w.on_item_completed),
        ("onItemAborted", &w.on_item_aborted),
        ("onChunkExtracted", &w.on_chunk_extracted),
        ("onChunkCompleted", &w.on_chunk_completed),
    ] {
        if let Some(h) = h {
            v.push(format!("{k} {h}"));
        }
    }
    if v.is_empty() {
        String::new()
    } else {
        format!("; webhooks: {}", v.join(", "))
    }
}

fn filter(f: &Option<Filter>) -> String {
    let Some(f) = f else {
        return String::new();
    };
    let mut v = Vec::new();
    if !f.patterns.is_empty() {
        v.push(format!(
            "{} {}",
            if f.use_regex { "regex" } else { "patterns" },
            f.patterns.join(" ")
        ));
    }
    if !f.excludes.is_empty() {
        v.push(format!("excludes {}", f.excludes.join(" ")));
    }
    if f.filetype != FileType::File {
        v.push(format!("filetype {}", f.filetype));
    }
    if f.recursive {
        v.push(if f.depth > 0 {
            format!("recursive (depth {})", f.depth)
        } else {
            "recursive".to_string()
        });
    }
    if f.hidden {
        v.push("hidden".to_string());
    }
    if let Some(a) = f.age {
        let op = if a.at_most { "<=" } else { ">=" };
        v.push(format!("age {op} {}s ({})", a.seconds, f.age_stamp));
    }
    if let Some(s) = f.size {
        let op = if s.at_most { "<=" } else { ">=" };
        v.push(format!("size {op} {} bytes", s.bytes));
    }
    if v.is_empty() {
        " [filter: files]".to_string()
    } else {
        format!(" [filter: {}]", v.join(", "))
    }
}

fn trigger(t: &Option<Trigger>) -> String {
    match t {
        Some(t) => format!("-> workflow {} ({})", t.workflow, t.timing),
        None => "-> (no trigger)".to_string(),
    }
}

/// A mount's `watch`, when it is not the default (auto, 30 s, baseline).
/// The interval is shown where it is used: by the modes that poll.
fn watch(w: &WatchSpec) -> String {
    if *w == WatchSpec::default() {
        return String::new();
    }
    let mut s = format!("; watch {}", w.mode.name());
    if matches!(w.mode, WatchMode::Auto | WatchMode::Poll) {
        let _ = write!(s, " every {}s", w.interval.as_secs_f64());
    }
    if w.mode != WatchMode::Off && w.initial == WatchInitial::Fire {
        s.push_str(", initial fire");
    }
    s
}

fn percent(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// The summary text, one item per line, ending with a newline.
pub fn summary(cfg: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "stateDir {}, vhost {}",
        cfg.state_dir.display(),
        cfg.vhost
    );
    for b in &cfg.buckets {
        let mut flags = vec![format!("region {}", b.meta.region)];
        if !b.meta.enable {
            flags.push("DISABLED".into());
        }
        if !b.meta.expose {
            flags.push("hidden".into());
        }
        let _ = writeln!(s, "bucket {} ({})", b.meta.name, flags.join(", "));
        for m in &b.mounts {
            let origin = match m.origin() {
                Origin::Local(p) => format!("local {}", p.display()),
                Origin::S3 { endpoint, prefix } if prefix.is_empty() => format!("s3 {endpoint}"),
                Origin::S3 { endpoint, prefix } => format!("s3 {endpoint} prefix {prefix}/"),
            };
            let hidden = if m.expose { "" } else { " (hidden)" };
            let _ = writeln!(
                s,
                "  mount {} <- {origin}{hidden}{}",
                m.mount_path(),
                watch(&m.watch)
            );
        }
        let a = &b.access;
        let denied: Vec<&str> = [("get", &a.get), ("put", &a.put), ("delete", &a.delete)]
            .iter()
            .filter(|(_, r)| !r.enable)
            .map(|(k, _)| *k)
            .collect();
        if !denied.is_empty() {
            let _ = writeln!(s, "  access denied: {}", denied.join(", "));
        }
        for (k, e) in [
            ("onGet", &b.events.on_get),
            ("onPut", &b.events.on_put),
            ("onDelete", &b.events.on_delete),
        ] {
            if e.enable {
                let _ = writeln!(
                    s,
                    "  {k}{} {}{}",
                    filter(&e.filter),
                    trigger(&e.trigger),
                    hooks(&e.webhooks)
                );
            }
        }
        for (i, e) in b.events.on_batch.iter().enumerate() {
            if !e.enable {
                continue;
            }
            let sched = e.schedule.as_ref().map_or("-", |s| s.expr.as_str());
            let _ = writeln!(
                s,
                "  onBatch[{i}] \"{sched}\" path {} (chunk {}, {}, cursor {}){} {}{}",
                e.path,
                e.chunk_size,
                e.traverse,
                e.cursor,
                filter(&e.filter),
                trigger(&e.trigger),
                hooks(&e.webhooks)
            );
        }
        let disabled = [&b.events.on_get, &b.events.on_put, &b.events.on_delete]
            .iter()
            .filter(|e| !e.enable && e.trigger.is_some())
            .count()
            + b.events.on_batch.iter().filter(|e| !e.enable).count();
        if disabled > 0 {
            let _ = writeln!(
                s,
                "  ({disabled} disabled event{})",
                if disabled == 1 { "" } else { "s" }
            );
        }
        for w in &b.workflows {
            let state = if w.enable { "" } else { " (disabled)" };
            let oc = match &w.on_complete.src {
                SrcOp::None => String::new(),
                SrcOp::Delete => ", then delete the source".to_string(),
                SrcOp::Move { path } => format!(", then move the source to {path}"),
            };
            let _ = writeln!(
                s,
                "  workflow {}{state}: {} task{}{oc}",
                w.name,
                w.tasks.len(),
                if w.tasks.len() == 1 { "" } else { "s" }
            );
            for t in &w.tasks {
                let f = match &t.function {
                    Function::Copy => "copy".to_string(),
                    Function::Http(p) => format!("http {p}"),
                    Function::Exec(a) => format!("exec {}", a.join(" ")),
                };
                let _ = writeln!(
                    s,
                    "    {f} -> {} (whenExist {}, timeout {}s)",
                    t.save_path,
                    t.when_exist,
                    t.timeout.as_secs_f64()
                );
            }
        }
    }
    for e in &cfg.aws_s3 {
        let server = e.endpoint.as_deref().unwrap_or("AWS");
        let creds = if e.access_key_id.is_some() {
            "explicit keys".to_string()
        } else if let Some(p) = &e.profile {
            format!("profile {p}")
        } else {
            "default credential chain".to_string()
        };
        let region = e
            .region
            .as_deref()
            .map(|r| format!(", region {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "aws_s3 {}: bucket {} at {server}{region}, {creds}",
            e.name, e.bucket
        );
    }
    match (&cfg.distribution.enable, &cfg.distribution.leader.url) {
        (true, Some(u)) => {
            let auth = cfg
                .distribution
                .leader
                .auth_endpoint
                .as_deref()
                .map(|a| format!(" via {a}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "distribution: leader lease {u}{auth}, term {}s",
                cfg.distribution.leader.term.as_secs()
            );
        }
        _ => {
            let _ = writeln!(s, "distribution: off (this node is its own leader)");
        }
    }
    if cfg.throttling.enable {
        let _ = writeln!(
            s,
            "throttling: pause at {}% CPU, resume below {}%, {}",
            percent(cfg.throttling.cpu_deactive),
            percent(cfg.throttling.cpu_reactive),
            match cfg.throttling.max_pause {
                Some(d) => format!("at least one item every {}s", d.as_secs_f64()),
                None => "pauses without limit".to_string(),
            }
        );
    } else {
        let _ = writeln!(s, "throttling: off");
    }
    if let Some(u) = &cfg.function_base_url {
        let _ = writeln!(s, "functionBaseUrl: {u}");
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn watch_is_shown_only_when_not_the_default() {
        let w = |mode, secs: f64, initial| {
            watch(&WatchSpec {
                mode,
                interval: Duration::from_secs_f64(secs),
                initial,
            })
        };
        use WatchInitial::{Baseline, Fire};
        use WatchMode::*;
        assert_eq!(watch(&WatchSpec::default()), "");
        assert_eq!(w(Auto, 30.0, Baseline), "");
        assert_eq!(w(Poll, 2.0, Baseline), "; watch poll every 2s");
        assert_eq!(w(Poll, 30.0, Baseline), "; watch poll every 30s");
        assert_eq!(w(Auto, 0.5, Fire), "; watch auto every 0.5s, initial fire");
        assert_eq!(w(Notify, 30.0, Baseline), "; watch notify");
        assert_eq!(w(Notify, 30.0, Fire), "; watch notify, initial fire");
        assert_eq!(w(Off, 5.0, Fire), "; watch off");
    }
}
