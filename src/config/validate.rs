//! Raw model → normalised model, with every semantic check of SPEC §2–§7:
//! defaults, path normalisation, cross references (triggers → workflows,
//! origins and leader URLs → `aws_s3`), cron, regex and template syntax,
//! size/age units, webhook executables, local origin directories, throttling
//! values. All problems are collected; warnings are kept apart.
//!
//! Environment checks (a local origin directory or a webhook/exec program
//! that must exist on this machine) are errors for enabled buckets and
//! events, and only warnings for disabled ones.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::model::*;
use super::paths::{is_under, join, join_index, join_key, normalize_bucket_path};
use super::raw::*;
use super::{ConfigError, Loaded, cron, template, units};

#[derive(Default)]
struct Ctx {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Ctx {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &str, message: impl AsRef<str>) {
        let m = message.as_ref();
        self.warnings.push(if path.is_empty() {
            m.to_string()
        } else {
            format!("{path}: {m}")
        });
    }

    /// Reports the problems of a checked value under `path`.
    fn take<'a, T>(&mut self, c: &'a Checked<T>, path: &str) -> Option<&'a T> {
        for p in &c.problems {
            self.err(&join(path, &p.path), p.message.clone());
        }
        c.value.as_ref()
    }

    /// An environment problem: an error when `active`, else a warning.
    fn env(&mut self, active: bool, path: &str, message: String) {
        if active {
            self.err(path, message);
        } else {
            self.warn(path, format!("{message} (ignored while disabled)"));
        }
    }
}

/// What bucket-level checks need to know about the whole config.
struct Env {
    s3_names: Vec<String>,
    /// False when an `aws_s3` entry could not be read: then unknown endpoint
    /// names are not reported (they might be that entry's).
    s3_complete: bool,
    has_function_base_url: bool,
}

impl Env {
    fn check_endpoint(&self, cx: &mut Ctx, path: &str, name: &str) {
        if self.s3_complete && !self.s3_names.iter().any(|n| n == name) {
            let known = if self.s3_names.is_empty() {
                " (aws_s3 is empty)".to_string()
            } else {
                format!(" (known: {})", self.s3_names.join(", "))
            };
            cx.err(path, format!("no aws_s3 entry named {name:?}{known}"));
        }
    }
}

/// What checks inside one bucket need to know about it.
struct BucketCtx<'a> {
    name: &'a str,
    active: bool,
    mounts: &'a [MountSpec],
    /// False when a mount could not be read: reachability is then not judged.
    mounts_complete: bool,
    workflows: &'a [Workflow],
    workflows_complete: bool,
}

impl BucketCtx<'_> {
    fn has_root_mount(&self) -> bool {
        self.mounts.iter().any(|m| m.mount_point.is_none())
    }

    /// Whether files somewhere below directory `dir` can belong to a mount.
    fn dir_reachable(&self, dir: &str) -> bool {
        self.has_root_mount()
            || self
                .mounts
                .iter()
                .filter_map(|m| m.mount_point.as_deref())
                .any(|mp| is_under(dir, mp) || is_under(mp, dir))
    }

    /// Whether the file at `p` belongs to a mount.
    fn file_reachable(&self, p: &str) -> bool {
        p != "/"
            && (self.has_root_mount()
                || self
                    .mounts
                    .iter()
                    .filter_map(|m| m.mount_point.as_deref())
                    .any(|mp| is_under(p, mp) && p != mp))
    }

    fn mount_list(&self) -> String {
        let v: Vec<&str> = self.mounts.iter().map(MountSpec::mount_path).collect();
        if v.is_empty() {
            "the bucket has no mounts".into()
        } else {
            format!("mount points: {}", v.join(", "))
        }
    }
}

pub(crate) fn build(v: Value) -> Result<Loaded, Vec<ConfigError>> {
    let mut cx = Ctx::default();
    let top_c = Checked::<RawTop>::from_value(v);
    let Some(top) = cx.take(&top_c, "") else {
        return Err(cx.errors);
    };
    let config = config(&mut cx, top, !top_c.dropped("aws_s3"));
    if cx.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: cx.warnings,
        })
    } else {
        Err(cx.errors)
    }
}

fn config(cx: &mut Ctx, top: &RawTop, aws_complete: bool) -> Config {
    let mut c = Config::default();
    if let Some(s) = &top.state_dir {
        if s.starts_with('/') && !s.contains('\0') {
            c.state_dir = PathBuf::from(s);
        } else {
            cx.err("stateDir", format!("{s:?} is not an absolute path"));
        }
    }
    if let Some(v) = &top.vhost {
        if v.is_empty() || v.contains('/') || v.contains('\0') {
            cx.err(
                "vhost",
                format!("{v:?} must be a non-empty name without `/`"),
            );
        } else {
            c.vhost = v.clone();
        }
    }
    if let Some(u) = &top.function_base_url {
        match http_url(u) {
            Ok(()) => c.function_base_url = Some(u.trim_end_matches('/').to_string()),
            Err(m) => cx.err("functionBaseUrl", m),
        }
    }

    let mut env = Env {
        s3_names: Vec::new(),
        s3_complete: aws_complete,
        has_function_base_url: top.function_base_url.is_some(),
    };
    for (i, e) in top.aws_s3.iter().flatten().enumerate() {
        let p = join_index("aws_s3", i);
        match cx.take(e, &p) {
            Some(raw) => {
                if let Some(ep) = s3_endpoint(cx, raw, &p, &c.aws_s3) {
                    env.s3_names.push(ep.name.clone());
                    c.aws_s3.push(ep);
                } else {
                    env.s3_complete = false;
                }
            }
            None => env.s3_complete = false,
        }
    }

    if let Some(d) = &top.distribution
        && let Some(d) = cx.take(d, "distribution")
    {
        c.distribution = distribution(cx, d, &c.vhost, &env);
    }
    if let Some(t) = &top.throttling
        && let Some(t) = cx.take(t, "throttling")
    {
        c.throttling = throttling(cx, t);
    }

    let mut names: Vec<(String, String)> = Vec::new();
    for (i, b) in top.buckets.iter().enumerate() {
        let bp = join_index("buckets", i);
        let Some(raw) = cx.take(b, &bp) else {
            continue;
        };
        let Some((bucket, name_path)) = bucket(cx, raw, &b.dropped, &bp, &env) else {
            continue;
        };
        if bucket.meta.name.is_empty() || !plain_name(&bucket.meta.name) {
            // Already reported.
        } else if let Some((_, other)) = names.iter().find(|(n, _)| *n == bucket.meta.name) {
            cx.err(
                &name_path,
                format!(
                    "duplicate bucket name {:?} (also {other})",
                    bucket.meta.name
                ),
            );
        } else {
            names.push((bucket.meta.name.clone(), bp.clone()));
        }
        c.buckets.push(bucket);
    }
    if top.buckets.is_empty() {
        cx.warn("buckets", "no buckets are configured");
    }
    c
}

fn http_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!("{u:?} is not an http:// or https:// URL")),
    }
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn seconds(
    cx: &mut Ctx,
    v: Option<f64>,
    path: &str,
    default: Duration,
    allow_zero: bool,
) -> Duration {
    let Some(s) = v else {
        return default;
    };
    if !s.is_finite() || s < 0.0 || (s == 0.0 && !allow_zero) {
        let what = if allow_zero {
            "non-negative"
        } else {
            "positive"
        };
        cx.err(path, format!("{s} is not a {what} number of seconds"));
        return default;
    }
    match Duration::try_from_secs_f64(s) {
        Ok(d) => d,
        Err(_) => {
            cx.err(path, format!("{s} seconds is too large"));
            default
        }
    }
}

fn s3_endpoint(cx: &mut Ctx, r: &RawS3, p: &str, earlier: &[S3Endpoint]) -> Option<S3Endpoint> {
    let mut ok = true;
    if !plain_name(&r.name) {
        cx.err(
            &join_key(p, "name"),
            format!(
                "{:?} is not a valid name (use letters, digits, `.`, `_`, `-`)",
                r.name
            ),
        );
        ok = false;
    } else if let Some(i) = earlier.iter().position(|e| e.name == r.name) {
        cx.err(
            &join_key(p, "name"),
            format!("duplicate aws_s3 name {:?} (also aws_s3[{i}])", r.name),
        );
        ok = false;
    }
    if r.bucket.is_empty() {
        cx.err(&join_key(p, "bucket"), "must not be empty");
    }
    if let Some(e) = &r.endpoint
        && let Err(m) = http_url(e)
    {
        cx.err(&join_key(p, "endpoint"), m);
    }
    if r.access_key_id.is_some() != r.secret_access_key.is_some() {
        cx.err(p, "accessKeyId and secretAccessKey must be given together");
    }
    let ep = S3Endpoint {
        name: r.name.clone(),
        bucket: r.bucket.clone(),
        region: r.region.clone(),
        endpoint: r
            .endpoint
            .as_ref()
            .map(|e| e.trim_end_matches('/').to_string()),
        force_path_style: r.force_path_style.unwrap_or(r.endpoint.is_some()),
        access_key_id: r.access_key_id.clone(),
        secret_access_key: r.secret_access_key.clone(),
        profile: r.profile.clone(),
        metadata_ttl: seconds(
            cx,
            r.metadata_ttl,
            &join_key(p, "metadataTtl"),
            Duration::from_secs(1),
            true,
        ),
        timeout: seconds(
            cx,
            r.timeout,
            &join_key(p, "timeout"),
            Duration::from_secs(30),
            false,
        ),
    };
    ok.then_some(ep)
}

fn distribution(cx: &mut Ctx, d: &RawDistribution, vhost: &str, env: &Env) -> Distribution {
    let mut out = Distribution::default();
    if let Some(m) = &d.meta
        && let Some(m) = cx.take(m, "distribution.meta")
    {
        out.enable = m.enable.unwrap_or(true);
    }
    let Some(l) = &d.leader else {
        return out;
    };
    let Some(l) = cx.take(l, "distribution.leader") else {
        return out;
    };
    if let Some(a) = &l.auth_endpoint {
        env.check_endpoint(cx, "distribution.leader.authEndpoint", a);
        out.leader.auth_endpoint = Some(a.clone());
    }
    if let Some(t) = l.term_seconds {
        if t < 3 {
            cx.err(
                "distribution.leader.termSeconds",
                format!("{t} is below the minimum of 3"),
            );
        } else {
            out.leader.term = Duration::from_secs(t);
        }
    }
    if let Some(u) = &l.url {
        let path = "distribution.leader.url";
        let url = u.replace("{vhost}", vhost);
        if let Some(rest) = url.strip_prefix("file://") {
            if rest.starts_with('/') && rest.len() > 1 {
                out.leader.url = Some(LeaderUrl::File(PathBuf::from(rest)));
            } else {
                cx.err(
                    path,
                    format!("{u:?}: a file URL needs an absolute path, as in file:///shared/dir/.{{vhost}}.m2leader"),
                );
            }
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (name, key) = rest.split_once('/').unwrap_or((rest, ""));
            let key = key.trim_start_matches('/');
            if name.is_empty() || key.is_empty() {
                cx.err(path, format!("{u:?}: expected s3://ENDPOINT_NAME/key"));
            } else {
                env.check_endpoint(cx, path, name);
                out.leader.url = Some(LeaderUrl::S3 {
                    endpoint: name.to_string(),
                    key: key.to_string(),
                });
            }
        } else if http_url(&url).is_ok() {
            out.leader.url = Some(LeaderUrl::Http(url));
        } else {
            cx.err(
                path,
                format!("{u:?}: expected file:///path, s3://ENDPOINT_NAME/key or https://…"),
            );
        }
    } else if out.enable {
        cx.warn(
            "distribution.leader.url",
            "not set, so every node acts as its own leader",
        );
    }
    out
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.1}")
    }
}

fn throttling(cx: &mut Ctx, t: &RawThrottling) -> Throttling {
    let mut out = Throttling {
        enable: t.enable.unwrap_or(true),
        ..Throttling::default()
    };
    let Some(cpu) = &t.cpu else {
        return out;
    };
    let Some(cpu) = cx.take(cpu, "throttling.cpu") else {
        return out;
    };
    let range = 0.0..=100.0;
    if let Some(d) = cpu.deactive {
        if range.contains(&d) {
            out.cpu_deactive = d;
        } else {
            cx.warn(
                "throttling.cpu.deactive",
                format!("{} is outside 0–100; using 60", fmt_num(d)),
            );
        }
    }
    let r = cpu.reactive.unwrap_or(40.0);
    let why = if !range.contains(&r) {
        Some("is outside 0–100")
    } else if r > out.cpu_deactive {
        Some("is above deactive")
    } else {
        None
    };
    out.cpu_reactive = match why {
        Some(why) => {
            let fixed = out.cpu_deactive * 2.0 / 3.0;
            cx.warn(
                "throttling.cpu.reactive",
                format!(
                    "{} {why}; using {} (deactive × 2/3)",
                    fmt_num(r),
                    fmt_num(fixed)
                ),
            );
            fixed
        }
        None => r,
    };
    out
}

/// Returns the bucket and the JSON path of its name.
fn bucket(
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
        match (mount_point, origin) {
            (Some(mount_point), Some(origin_path)) => b.mounts.push(MountSpec {
                mount_point,
                origin_path,
                expose: m.expose.unwrap_or(true),
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

/// Collapses regex's multi-line syntax error into one line.
fn regex_error(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let reason = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().last().unwrap_or_default().trim().to_string());
    format!("bad regex {pattern:?}: {reason}")
}

fn check_executable(cx: &mut Ctx, active: bool, path: &str, file: &str, what: &str) {
    match std::fs::metadata(file) {
        Ok(md) if !md.is_file() => {
            cx.env(active, path, format!("{what} {file} is not a regular file"))
        }
        Ok(md) if md.permissions().mode() & 0o111 == 0 => {
            cx.env(active, path, format!("{what} {file} is not executable"))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            cx.env(active, path, format!("{what} {file} does not exist"))
        }
        Err(e) => cx.env(active, path, format!("cannot access {what} {file}: {e}")),
    }
}

/// A template that must render to an absolute path inside the bucket
/// (`savePath`, `onComplete.src.path`).
fn check_path_template(cx: &mut Ctx, src: &str, path: &str, bcx: &BucketCtx) -> bool {
    if let Err(m) = template::check_syntax(src) {
        cx.err(path, m);
        return false;
    }
    if src.trim().is_empty() {
        cx.err(path, "must not be empty");
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
            Ok(p) => bcx.file_reachable(&p),
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

fn workflow(cx: &mut Ctx, w: &RawWorkflow, wp: &str, bcx: &BucketCtx, env: &Env) -> Workflow {
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
                if let Err(m) = template::check_syntax(a) {
                    cx.err(&join_index(&xp, i), m);
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

fn filter(cx: &mut Ctx, f: &RawFilter, fp: &str) -> Filter {
    let use_regex = f.use_regex.unwrap_or(false);
    let mut check = |key: &str, list: &Option<Vec<String>>| -> Vec<String> {
        let lp = join_key(fp, key);
        let list = list.clone().unwrap_or_default();
        for (i, p) in list.iter().enumerate() {
            let problem = if use_regex {
                regex::Regex::new(p).err().map(|e| regex_error(p, &e))
            } else {
                globset::Glob::new(p)
                    .err()
                    .map(|e| format!("bad glob {p:?}: {}", e.kind()))
            };
            if let Some(m) = problem {
                cx.err(&join_index(&lp, i), m);
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

fn event(cx: &mut Ctx, e: &RawEvent, ep: &str, bcx: &BucketCtx) -> Event {
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

fn batch(
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
