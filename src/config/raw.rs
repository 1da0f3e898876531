//! The raw serde model: exactly the JSON shape of SPEC §2–§7, camelCase keys,
//! `deny_unknown_fields`, every value optional where the spec has a default.
//! `validate` turns it into the normalised model of `model`.
//!
//! Objects that are worth reporting on separately are wrapped in
//! [`Checked`], which never fails its parent: it records the problems of its
//! own value (every unknown key, then the first type error) so that one bad
//! mount or task does not hide the problems of its siblings.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::Value;
use serde_path_to_error::Segment;

use super::model::{
    AgeStamp, CursorPolicy, FileType, Secret, SrcOpKind, Timing, Traverse, WatchInitial, WatchMode,
    WhenExist,
};
use super::paths::join_key;

/// A problem inside a [`Checked`] value; `path` is relative to that value.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub path: String,
    pub message: String,
}

/// A value deserialized on its own. Unknown keys are reported and removed;
/// a key whose value has the wrong type is reported and removed too, and the
/// rest is deserialized again, so that siblings are still checked. `value` is
/// `None` when the object still cannot be read (a required key is missing or
/// wrong, or the value is not an object at all).
pub(crate) struct Checked<T> {
    pub value: Option<T>,
    pub problems: Vec<Problem>,
    /// Known keys removed because their value was wrong: validation must not
    /// call them missing, nor trust lists that lost them.
    pub dropped: Vec<String>,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Checked::from_value(Value::deserialize(d)?))
    }
}

impl<T: DeserializeOwned> Checked<T> {
    pub(crate) fn from_value(mut v: Value) -> Self {
        let mut problems = Vec::new();
        if let (Value::Object(map), Some(fields)) = (&mut v, struct_fields::<T>()) {
            let unknown: Vec<String> = map
                .keys()
                .filter(|k| !fields.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in unknown {
                map.remove(&k);
                problems.push(Problem {
                    path: join_key("", &k),
                    message: unknown_field_message(&k, fields),
                });
            }
        }
        let mut dropped: Vec<String> = Vec::new();
        // Each round removes one key, so this ends.
        let value = loop {
            let e = match serde_path_to_error::deserialize::<_, T>(&v) {
                Ok(t) => break Some(t),
                Err(e) => e,
            };
            let message = clean_message(&e.inner().to_string());
            let first = match e.path().iter().next() {
                Some(Segment::Map { key }) => Some(key.clone()),
                _ => None,
            };
            let path = e.path().to_string();
            // A required key we removed ourselves is not "missing" as well.
            let echo = first.is_none()
                && dropped
                    .iter()
                    .any(|k| message == format!("missing field `{k}`"));
            if !echo {
                problems.push(Problem {
                    path: if path == "." { String::new() } else { path },
                    message,
                });
            }
            let removed = match (&first, &mut v) {
                (Some(k), Value::Object(map)) => map.remove(k).is_some(),
                _ => false,
            };
            match first {
                Some(k) if removed => dropped.push(k),
                _ => break None,
            }
        };
        Checked {
            value,
            problems,
            dropped,
        }
    }

    /// Whether `key` was present but removed because its value was wrong.
    pub(crate) fn dropped(&self, key: &str) -> bool {
        self.dropped.iter().any(|k| k == key)
    }
}

fn unknown_field_message(key: &str, fields: &[&str]) -> String {
    let best = fields
        .iter()
        .map(|f| (edit_distance(&key.to_lowercase(), &f.to_lowercase()), *f))
        .min();
    match best {
        Some((d, f)) if d <= 2 && d < key.len() => format!("unknown field (did you mean `{f}`?)"),
        _ => "unknown field".to_string(),
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Rewrites serde's wording into JSON terms.
fn clean_message(m: &str) -> String {
    let mut s = m.to_string();
    for (from, to) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: unit value", "invalid type: null"),
        ("floating point", "number"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// The JSON field names of a derived struct, found by asking its
/// `Deserialize` impl (which passes them to `deserialize_struct`).
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut found = None;
    let _ = T::deserialize(FieldsProbe(&mut found));
    found
}

struct FieldsProbe<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldsProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("probe"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// A string, or an integer taken as its decimal text (sizes and ages).
#[derive(Debug, Clone)]
pub(crate) struct StrOrInt(pub String);

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrOrInt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string such as \"2d\" or \"-1m\", or an integer")
            }
            fn visit_str<E>(self, v: &str) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrOrInt, E> {
                Ok(StrOrInt(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads one of the names in `table` (a JSON string); anything else is an
/// error listing every allowed name, worded like the other enums' errors.
fn named<'de, D: Deserializer<'de>, T: Copy + 'static>(
    d: D,
    expecting: &'static str,
    table: &'static [(&'static str, T)],
    names: &'static [&'static str],
) -> Result<T, D::Error> {
    struct V<T: 'static> {
        expecting: &'static str,
        table: &'static [(&'static str, T)],
        names: &'static [&'static str],
    }
    impl<T: Copy> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            self.table
                .iter()
                .find(|(n, _)| *n == v)
                .map(|(_, t)| *t)
                .ok_or_else(|| E::unknown_variant(v, self.names))
        }
    }
    d.deserialize_str(V {
        expecting,
        table,
        names,
    })
}

/// `watch.mode` (SPEC §2.1). The model type has no serde of its own; the
/// JSON names are only the config's business.
impl<'de> Deserialize<'de> for WatchMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named(
            d,
            "`auto`, `notify`, `poll` or `off`",
            &[
                ("auto", WatchMode::Auto),
                ("notify", WatchMode::Notify),
                ("poll", WatchMode::Poll),
                ("off", WatchMode::Off),
            ],
            &["auto", "notify", "poll", "off"],
        )
    }
}

/// `watch.initial` (SPEC §2.1).
impl<'de> Deserialize<'de> for WatchInitial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        named(
            d,
            "`baseline` or `fire`",
            &[
                ("baseline", WatchInitial::Baseline),
                ("fire", WatchInitial::Fire),
            ],
            &["baseline", "fire"],
        )
    }
}

/// `task.function`: `null`, `"/http/function/path"` or `{"exec": [...]}`.
#[derive(Debug, Clone)]
pub(crate) enum RawFunction {
    Http(String),
    Exec(Vec<String>),
}

impl<'de> Deserialize<'de> for RawFunction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "expected null, an HTTP function path such as \"/a/b\", or {\"exec\": [\"prog\", \"arg\", …]}";
        match Value::deserialize(d)? {
            Value::String(s) => Ok(RawFunction::Http(s)),
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| *k != "exec") {
                    return Err(de::Error::custom(format!(
                        "unknown key `{k}` in function; {EXPECTED}"
                    )));
                }
                match m.get("exec") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| match x {
                            Value::String(s) => Ok(s.clone()),
                            _ => Err(de::Error::custom("exec: every element must be a string")),
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(RawFunction::Exec),
                    _ => Err(de::Error::custom(format!(
                        "exec must be an array of strings; {EXPECTED}"
                    ))),
                }
            }
            other => Err(de::Error::custom(format!(
                "invalid type: {}, {EXPECTED}",
                super::load::kind(&other)
            ))),
        }
    }
}

/// Helper so that `Option<Vec<Checked<T>>>` reads as one name.
pub(crate) type List<T> = Option<Vec<Checked<T>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawTop {
    pub buckets: Vec<Checked<RawBucket>>,
    #[serde(rename = "aws_s3")]
    pub aws_s3: List<RawS3>,
    pub distribution: Option<Checked<RawDistribution>>,
    pub throttling: Option<Checked<RawThrottling>>,
    pub function_base_url: Option<String>,
    pub state_dir: Option<String>,
    pub vhost: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawBucket {
    pub meta: Option<Checked<RawMeta>>,
    pub enable: Option<bool>,
    pub name: Option<String>,
    pub region: Option<String>,
    pub expose: Option<bool>,
    pub mounts: List<RawMount>,
    pub access: Option<Checked<RawAccess>>,
    pub events: Option<Checked<RawEvents>>,
    pub workflows: List<RawWorkflow>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawMeta {
    pub enable: Option<bool>,
    pub name: Option<String>,
    pub region: Option<String>,
    pub expose: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawMount {
    pub mount_point: Option<String>,
    pub origin_path: String,
    pub expose: Option<bool>,
    pub watch: Option<Checked<RawWatch>>,
}

/// A mount's `watch` (SPEC §2.1, §4.5); every key optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawWatch {
    pub mode: Option<WatchMode>,
    pub interval_seconds: Option<f64>,
    pub initial: Option<WatchInitial>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawAccess {
    pub get: Option<Checked<RawRule>>,
    pub put: Option<Checked<RawRule>>,
    pub delete: Option<Checked<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawRule {
    pub enable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawEvents {
    pub on_get: Option<Checked<RawEvent>>,
    pub on_put: Option<Checked<RawEvent>>,
    pub on_delete: Option<Checked<RawEvent>>,
    pub on_batch: List<RawBatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawEvent {
    pub enable: Option<bool>,
    pub filter: Option<Checked<RawFilter>>,
    pub trigger: Option<Checked<RawTrigger>>,
    pub webhook: Option<Checked<RawItemWebhooks>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawBatch {
    pub enable: Option<bool>,
    pub chunk_size: Option<u64>,
    pub path: Option<String>,
    pub traverse: Option<Traverse>,
    pub cursor: Option<CursorPolicy>,
    pub schedule: Option<String>,
    pub filter: Option<Checked<RawFilter>>,
    pub trigger: Option<Checked<RawTrigger>>,
    pub webhook: Option<Checked<RawBatchWebhooks>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub(crate) struct RawFilter {
    pub patterns: Option<Vec<String>>,
    pub excludes: Option<Vec<String>>,
    pub use_regex: Option<bool>,
    pub filetype: Option<FileType>,
    pub recursive: Option<bool>,
    pub hidden: Option<bool>,
    pub age: Option<StrOrInt>,
    pub age_stamp: Option<AgeStamp>,
    pub size: Option<StrOrInt>,
    pub depth: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawTrigger {
    pub workflow: String,
    pub timing: Option<Timing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawItemWebhooks {
    pub on_item_completed: Option<String>,
    pub on_item_aborted: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawBatchWebhooks {
    pub on_item_completed: Option<String>,
    pub on_item_aborted: Option<String>,
    pub on_chunk_extracted: Option<String>,
    pub on_chunk_completed: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawWorkflow {
    pub name: String,
    pub enable: Option<bool>,
    pub tasks: List<RawTask>,
    pub on_complete: Option<Checked<RawOnComplete>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawTask {
    pub function: Option<RawFunction>,
    pub save_path: String,
    pub path_pattern: Option<String>,
    pub when_exist: Option<WhenExist>,
    pub timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawOnComplete {
    pub src: Option<Checked<RawSrc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawSrc {
    pub op: Option<SrcOpKind>,
    pub path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawS3 {
    pub name: String,
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub profile: Option<String>,
    pub metadata_ttl: Option<f64>,
    pub timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawDistribution {
    pub meta: Option<Checked<RawDistMeta>>,
    pub leader: Option<Checked<RawLeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawDistMeta {
    pub enable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawLeader {
    pub url: Option<String>,
    pub auth_endpoint: Option<String>,
    pub term_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawThrottling {
    pub enable: Option<bool>,
    pub cpu: Option<Checked<RawCpu>>,
    pub max_pause_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", expecting = "an object")]
pub(crate) struct RawCpu {
    pub deactive: Option<f64>,
    pub reactive: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probe_finds_struct_fields() {
        let f = struct_fields::<RawTrigger>().expect("a struct");
        assert_eq!(f, &["workflow", "timing"]);
        assert!(struct_fields::<Vec<String>>().is_none());
    }

    #[test]
    fn checked_collects_unknown_keys_then_type_error() {
        let c = Checked::<RawTask>::from_value(json!({
            "savePath": 5, "timout": 1, "pathPatern": "x", "zzzzzzzz": 1
        }));
        assert!(c.value.is_none());
        let p: Vec<String> = c
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            p,
            vec![
                "pathPatern: unknown field (did you mean `pathPattern`?)",
                "timout: unknown field (did you mean `timeout`?)",
                "zzzzzzzz: unknown field",
                "savePath: invalid type: integer `5`, expected a string",
            ]
        );
        assert_eq!(c.dropped, vec!["savePath"]);
    }

    #[test]
    fn checked_reports_every_wrong_key() {
        let c = Checked::<RawBatch>::from_value(json!({
            "enable": "yes", "chunkSize": -1, "schedule": "* * * * *",
            "trigger": {"workflow": 3}
        }));
        let b = c.value.as_ref().expect("the rest is kept");
        assert_eq!(b.schedule.as_deref(), Some("* * * * *"));
        let p: Vec<String> = c
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert_eq!(
            p,
            vec![
                "chunkSize: invalid value: integer `-1`, expected a non-negative integer",
                "enable: invalid type: string \"yes\", expected a boolean",
            ]
        );
        let t = b.trigger.as_ref().expect("trigger given");
        assert_eq!(t.problems[0].path, "workflow");
        assert!(c.dropped("enable") && c.dropped("chunkSize") && !c.dropped("schedule"));
    }

    #[test]
    fn nested_checked_does_not_fail_parent() {
        let c = Checked::<RawWorkflow>::from_value(json!({
            "name": "w", "tasks": [{"savePath": "/a"}, {"savePath": []}]
        }));
        let w = c.value.expect("workflow itself is fine");
        let tasks = w.tasks.expect("tasks");
        assert!(tasks[0].value.is_some());
        assert_eq!(tasks[1].problems[0].path, "savePath");
    }

    #[test]
    fn functions() {
        let f = |v| serde_json::from_value::<RawFunction>(v).map_err(|e| e.to_string());
        assert!(matches!(f(json!("/a/b")), Ok(RawFunction::Http(_))));
        assert!(matches!(f(json!({"exec": ["x", "y"]})), Ok(RawFunction::Exec(v)) if v.len() == 2));
        assert!(f(json!({"exec": "x"})).is_err());
        assert!(f(json!({"exec": [1]})).is_err());
        assert!(f(json!({"run": []})).is_err());
        assert!(f(json!(3)).is_err());
    }

    #[test]
    fn watch_names() {
        let m = |v| serde_json::from_value::<WatchMode>(v).map_err(|e| e.to_string());
        assert_eq!(m(json!("auto")), Ok(WatchMode::Auto));
        assert_eq!(m(json!("notify")), Ok(WatchMode::Notify));
        assert_eq!(m(json!("poll")), Ok(WatchMode::Poll));
        assert_eq!(m(json!("off")), Ok(WatchMode::Off));
        // Names are exact, as for every other enum of the config.
        assert_eq!(
            m(json!("Poll")),
            Err("unknown variant `Poll`, expected one of `auto`, `notify`, `poll`, `off`".into())
        );
        let i = |v| serde_json::from_value::<WatchInitial>(v).map_err(|e| e.to_string());
        assert_eq!(i(json!("baseline")), Ok(WatchInitial::Baseline));
        assert_eq!(i(json!("fire")), Ok(WatchInitial::Fire));
        assert_eq!(
            i(json!(0)),
            Err("invalid type: integer `0`, expected `baseline` or `fire`".into())
        );
        let c = Checked::<RawWatch>::from_value(json!({"intervalSeconds": 2.5}));
        let w = c.value.expect("valid");
        assert_eq!(w.interval_seconds, Some(2.5));
        assert!(w.mode.is_none() && w.initial.is_none());
    }
}
