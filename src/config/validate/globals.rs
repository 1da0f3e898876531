//! Top-level sections other than buckets: `aws_s3` entries, `distribution`
//! (leader URL with `{vhost}`, `authEndpoint`, term) and `throttling` (invalid
//! CPU thresholds become warnings and `reactive = deactive × 2/3`;
//! `maxPauseSeconds` is a non-negative number of seconds).

use std::path::PathBuf;
use std::time::Duration;

use super::{Ctx, Env, http_url, plain_name, seconds};
use crate::config::model::*;
use crate::config::paths::join_key;
use crate::config::raw::*;
use crate::config::units::MAX_SECONDS;

pub(super) fn s3_endpoint(
    cx: &mut Ctx,
    r: &RawS3,
    p: &str,
    earlier: &[S3Endpoint],
) -> Option<S3Endpoint> {
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
    if let Some(region) = &r.region
        && (region.is_empty() || region.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        cx.err(
            &join_key(p, "region"),
            format!("{region:?} is not a region name (such as us-east-1)"),
        );
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

pub(super) fn distribution(
    cx: &mut Ctx,
    d: &RawDistribution,
    vhost: &str,
    env: &Env,
) -> Distribution {
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
        } else if t > MAX_SECONDS {
            cx.err(
                "distribution.leader.termSeconds",
                format!("{t} is more than the maximum of {MAX_SECONDS} (one day)"),
            );
        } else {
            out.leader.term = Duration::from_secs(t);
        }
    }
    if let Some(u) = &l.url {
        let path = "distribution.leader.url";
        let url = u.replace("{vhost}", vhost);
        if let Some(rest) = url.strip_prefix("file://") {
            if let Some(m) = crate::config::paths::long_component(rest) {
                cx.err(path, format!("{u:?} {m}"));
            } else if rest.starts_with('/') && rest.len() > 1 {
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

pub(super) fn throttling(cx: &mut Ctx, t: &RawThrottling) -> Throttling {
    let mut out = Throttling {
        enable: t.enable.unwrap_or(true),
        ..Throttling::default()
    };
    // SPEC §6.3: 0 pauses without limit; a bad value keeps the default.
    if t.max_pause_seconds.is_some() {
        let default = out.max_pause.unwrap_or_default();
        let path = "throttling.maxPauseSeconds";
        let d = seconds(cx, t.max_pause_seconds, path, default, true);
        out.max_pause = (!d.is_zero()).then_some(d);
    }
    let Some(cpu) = &t.cpu else {
        return out;
    };
    let Some(cpu) = cx.take(cpu, "throttling.cpu") else {
        return out;
    };
    let range = 0.0..=100.0;
    let mut deactive_bad = false;
    if let Some(d) = cpu.deactive {
        if range.contains(&d) {
            out.cpu_deactive = d;
        } else {
            deactive_bad = true;
            cx.warn(
                "throttling.cpu.deactive",
                format!(
                    "{} is outside 0–100; using {}",
                    fmt_num(d),
                    fmt_num(out.cpu_deactive)
                ),
            );
        }
    }
    // SPEC §6.3: any out-of-range value, or reactive above deactive, makes
    // reactive = deactive × 2/3. A reactive given next to an invalid
    // deactive was chosen for a threshold that is not used, so it goes too.
    let fixed = out.cpu_deactive * 2.0 / 3.0;
    let why = match cpu.reactive {
        Some(r) if !range.contains(&r) => Some(format!("{} is outside 0–100", fmt_num(r))),
        Some(r) if deactive_bad && r != fixed => {
            Some(format!("{} was set for an invalid deactive", fmt_num(r)))
        }
        Some(r) if r > out.cpu_deactive => Some(format!("{} is above deactive", fmt_num(r))),
        Some(_) => None,
        // The default reactive only needs a word when it cannot apply.
        None if out.cpu_reactive > out.cpu_deactive => Some(format!(
            "the default {} is above deactive",
            fmt_num(out.cpu_reactive)
        )),
        None => None,
    };
    match why {
        Some(why) => {
            cx.warn(
                "throttling.cpu.reactive",
                format!("{why}; using {} (deactive × 2/3)", fmt_num(fixed)),
            );
            out.cpu_reactive = fixed;
        }
        None => {
            if deactive_bad {
                out.cpu_reactive = fixed;
            } else if let Some(r) = cpu.reactive {
                out.cpu_reactive = r;
            }
        }
    }
    // Work resumes only when the average falls *below* reactive, and CPU use
    // is never below 0: a pause would last for ever.
    if out.enable && out.cpu_reactive <= 0.0 {
        cx.warn(
            "throttling.cpu.reactive",
            "0 means work never resumes once paused (CPU use never falls below 0)",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::load_str;

    fn max_pause(json: &str) -> Result<Option<Duration>, Vec<String>> {
        let text = format!(r#"{{"buckets": [], "throttling": {json}}}"#);
        load_str(&text)
            .map(|l| l.config.throttling.max_pause)
            .map_err(|es| es.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn max_pause_seconds_default_zero_and_fractions() {
        assert_eq!(max_pause("{}"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(
            max_pause(r#"{"cpu": {"deactive": 80}}"#),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            max_pause(r#"{"maxPauseSeconds": 5}"#),
            Ok(Some(Duration::from_secs(5)))
        );
        assert_eq!(
            max_pause(r#"{"maxPauseSeconds": 2.5}"#),
            Ok(Some(Duration::from_millis(2500)))
        );
        // 0 = pause without limit (SPEC §6.3).
        assert_eq!(max_pause(r#"{"maxPauseSeconds": 0}"#), Ok(None));
        // Without `throttling` at all: the default.
        let l = load_str(r#"{"buckets": []}"#).expect("valid");
        assert_eq!(l.config.throttling.max_pause, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_max_pause_seconds_is_an_error_at_its_path() {
        let path = "throttling.maxPauseSeconds";
        for (json, want) in [
            ("-1", "-1 is not a non-negative number of seconds"),
            (
                "1e300",
                "seconds is more than the maximum of 86400 (one day)",
            ),
            ("\"30s\"", "invalid type: string \"30s\""),
            ("true", "invalid type: boolean `true`"),
            ("null", ""),
        ] {
            let got = max_pause(&format!(r#"{{"maxPauseSeconds": {json}}}"#));
            if json == "null" {
                // JSON null is "not given", like every optional key.
                assert_eq!(got, Ok(Some(Duration::from_secs(30))));
                continue;
            }
            let errs = got.expect_err(json);
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(want)),
                "{json}: {errs:?}"
            );
        }
    }
}
