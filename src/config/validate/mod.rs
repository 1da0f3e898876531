//! Raw model → normalised model, with every semantic check of SPEC §2–§7:
//! defaults, path normalisation, cross references (triggers → workflows,
//! origins and leader URLs → `aws_s3`), cron (syntax, and that it fires
//! at all), regex and template syntax, template names (variables, filters,
//! tests), size/age units, webhook executables, local origin directories,
//! a mount's `watch` (no `notify` on S3), throttling values. Paths: no literal component over 255 bytes, no output
//! path onto a mount point, no `stateDir` overlapping a local origin.
//! Durations: finite, non-negative, at most a day. All problems are
//! collected; warnings are kept apart.
//!
//! Environment checks (a local origin directory or a webhook/exec program
//! that must exist on this machine) are errors for enabled buckets and
//! events, and only warnings for disabled ones.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

mod bucket;
mod events;
mod globals;
mod workflow;

use super::model::*;
use super::paths::{is_under, join, join_index, long_component};
use super::raw::*;
use super::units::MAX_SECONDS;
use super::{ConfigError, Loaded};
use globals::{distribution, s3_endpoint, throttling};

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
    /// `stateDir` (or its default), normalised; None when it is invalid.
    state_dir: Option<String>,
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

    /// The mount point that normalised path `p` is, or leads to: writing
    /// there would replace the layout of the bucket, not a file in a mount
    /// (the runtime path check refuses it too).
    fn layout_dir(&self, p: &str) -> Option<&str> {
        self.mounts
            .iter()
            .filter_map(|m| m.mount_point.as_deref())
            .find(|mp| is_under(mp, p))
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
    let mut state_dir_ok = true;
    if let Some(s) = &top.state_dir {
        state_dir_ok = false;
        if !s.starts_with('/') || s.contains('\0') {
            cx.err("stateDir", format!("{s:?} is not an absolute path"));
        } else if let Some(m) = long_component(s) {
            cx.err("stateDir", format!("{s:?} {m}"));
        } else {
            c.state_dir = PathBuf::from(s);
            state_dir_ok = true;
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
        state_dir: state_dir_ok
            .then(|| lexical(&c.state_dir.to_string_lossy()))
            .flatten(),
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
        let Some((bucket, name_path)) = bucket::bucket(cx, raw, &b.dropped, &bp, &env) else {
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

/// `p` with `//`, `.` and `..` resolved lexically (None when not absolute).
fn lexical(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// How local directory `origin` and the state directory overlap, if they
/// do: compared as written and, when both exist, with symlinks resolved.
fn state_dir_overlap(origin: &str, state: &str) -> Option<&'static str> {
    let judge = |o: &str, s: &str| {
        if o == s {
            Some("is")
        } else if is_under(s, o) {
            Some("contains")
        } else if is_under(o, s) {
            Some("lies inside")
        } else {
            None
        }
    };
    judge(origin, state).or_else(|| {
        let real = |p: &str| {
            std::fs::canonicalize(p)
                .ok()
                .and_then(|r| r.to_str().map(String::from))
        };
        judge(&real(origin)?, &real(state)?)
    })
}

fn http_url(u: &str) -> Result<(), ConfigError> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            port_problem(r).map_or(Ok(()), |m| Err(ConfigError::value(format!("{u:?} {m}"))))
        }
        _ => Err(ConfigError::value(format!(
            "{u:?} is not an http:// or https:// URL"
        ))),
    }
}

/// What is wrong with the port of a URL's authority (`rest` is the URL after
/// `scheme://`), if anything: every request to it would fail.
fn port_problem(rest: &str) -> Option<String> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.strip_prefix('[') {
        // `[v6 address]:port`
        Some(v6) => v6.split_once(']').map(|(_, p)| p.strip_prefix(':'))?,
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    }?;
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(format!("has a bad port {port:?} (use 1–65535)")),
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
    if s > MAX_SECONDS as f64 {
        // `1e19`, not twenty digits (or three hundred).
        let shown = if s < 1e15 {
            s.to_string()
        } else {
            format!("{s:e}")
        };
        cx.err(
            path,
            format!("{shown} seconds is more than the maximum of {MAX_SECONDS} (one day)"),
        );
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

/// Collapses regex's multi-line syntax error into one line.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_ports() {
        for ok in [
            "http://h",
            "https://h:443/x",
            "http://u:p@h:9000",
            "http://[::1]:9000/a",
            "http://[::1]",
            "http://h/a:b",
        ] {
            assert!(http_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            http_url("http://h:99999/x").unwrap_err().to_string(),
            "\"http://h:99999/x\" has a bad port \"99999\" (use 1–65535)"
        );
        for bad in [
            "http://h:",
            "http://h:0",
            "http://h:+80",
            "http://[::1]:x",
            "http://h:8a",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lexical_paths() {
        assert_eq!(lexical("/a//b/./c/").as_deref(), Some("/a/b/c"));
        assert_eq!(lexical("/a/../../b").as_deref(), Some("/b"));
        assert_eq!(lexical("/").as_deref(), Some("/"));
        assert_eq!(lexical("a/b"), None);
    }

    #[test]
    fn state_dir_overlaps() {
        assert_eq!(state_dir_overlap("/srv/up", "/srv/up"), Some("is"));
        assert_eq!(
            state_dir_overlap("/srv/up", "/srv/up/.st"),
            Some("contains")
        );
        assert_eq!(
            state_dir_overlap("/", "/var/lib/storgate"),
            Some("contains")
        );
        assert_eq!(
            state_dir_overlap("/var/lib/storgate/x", "/var/lib/storgate"),
            Some("lies inside")
        );
        assert_eq!(state_dir_overlap("/srv/up", "/srv/upstate"), None);
        // Through a symlink: the link names the origin, the state is inside.
        let d = tempfile::tempdir().expect("tempdir");
        let real = d.path().join("real");
        std::fs::create_dir_all(real.join("state")).expect("mkdir");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let s = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
        assert_eq!(
            state_dir_overlap(&s(&link), &s(&real.join("state"))),
            Some("contains")
        );
    }

    #[test]
    fn durations_are_bounded() {
        let mut cx = Ctx::default();
        let d = Duration::from_secs(7);
        let p = "t";
        assert_eq!(
            seconds(&mut cx, Some(86_400.0), p, d, false),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            seconds(&mut cx, Some(0.5), p, d, false),
            Duration::from_millis(500)
        );
        assert!(cx.errors.is_empty());
        for bad in [1e19, 86_400.001, f64::MAX, -0.5, f64::NAN, f64::INFINITY] {
            assert_eq!(seconds(&mut cx, Some(bad), p, d, true), d, "{bad}");
        }
        assert_eq!(cx.errors.len(), 6);
        assert_eq!(
            cx.errors[0].to_string(),
            "t: 1e19 seconds is more than the maximum of 86400 (one day)"
        );
    }
}
