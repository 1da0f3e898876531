//! The normalised, validated configuration model that the rest of storgate
//! reads (SPEC §2–§7). Every default of the spec is already applied, paths are
//! normalised, cross references are known to resolve. Built by `validate`.
//!
//! Secrets (`accessKeyId`, `secretAccessKey`) are held in [`Secret`], whose
//! `Debug` prints `"***"`, so a `{:?}` of any part of the model is safe to log.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use super::cron::Schedule;
pub use super::units::{AgeFilter, SizeFilter};

/// Default of `stateDir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/storgate";
/// Default of `meta.region`.
pub const DEFAULT_REGION: &str = "ap-northeast-2";

/// A loaded, validated, normalised configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub buckets: Vec<Bucket>,
    /// `stateDir`: journal, cursors, staging files (absolute).
    pub state_dir: PathBuf,
    /// `aws_s3`: named S3 endpoints, names unique.
    pub aws_s3: Vec<S3Endpoint>,
    pub distribution: Distribution,
    pub throttling: Throttling,
    /// `functionBaseUrl` without a trailing `/`.
    pub function_base_url: Option<String>,
    /// `vhost` (default `"default"`), already substituted into the leader URL.
    pub vhost: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            buckets: Vec::new(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            aws_s3: Vec::new(),
            distribution: Distribution::default(),
            throttling: Throttling::default(),
            function_base_url: None,
            vhost: "default".into(),
        }
    }
}

impl Config {
    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.iter().find(|b| b.meta.name == name)
    }
    pub fn s3_endpoint(&self, name: &str) -> Option<&S3Endpoint> {
        self.aws_s3.iter().find(|e| e.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub meta: BucketMeta,
    /// In declaration order (the order matters for root mounts, SPEC §3.1).
    pub mounts: Vec<MountSpec>,
    pub access: Access,
    pub events: Events,
    pub workflows: Vec<Workflow>,
}

impl Bucket {
    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct BucketMeta {
    pub enable: bool,
    /// Unique, `[A-Za-z0-9._-]+`, not `.` or `..`.
    pub name: String,
    pub expose: bool,
    pub region: String,
}

impl Default for BucketMeta {
    fn default() -> Self {
        BucketMeta {
            enable: true,
            name: String::new(),
            expose: true,
            region: DEFAULT_REGION.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Normalised absolute bucket path: starts with `/`, no trailing slash, no
    /// `//`, no `.`/`..` components. `None` = a root mount: the JSON gave
    /// `null`, nothing, or `"/"` (which is treated exactly like `null`).
    pub mount_point: Option<String>,
    /// Normalised origin: a local absolute directory without trailing slash
    /// (`/mnt/nas/upload`), or `NAME@aws_s3` / `NAME@aws_s3/prefix/path` with
    /// the prefix free of empty, `.` and `..` components.
    pub origin_path: String,
    pub expose: bool,
    /// How changes made directly in the origin are found (SPEC §4.5).
    pub watch: WatchSpec,
}

/// Default of `watch.intervalSeconds`.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(30);

/// A mount's `watch` key (SPEC §2.1, §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSpec {
    pub mode: WatchMode,
    /// Time between two poll rounds; also how long a file's mtime must be
    /// in the past before a poll fires for it.
    pub interval: Duration,
    pub initial: WatchInitial,
}

impl Default for WatchSpec {
    fn default() -> Self {
        WatchSpec {
            mode: WatchMode::Auto,
            interval: DEFAULT_WATCH_INTERVAL,
            initial: WatchInitial::Baseline,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// notify on local file systems, poll on network/FUSE ones and on S3.
    Auto,
    /// inotify only (local origins only).
    Notify,
    /// Periodic reconcile against the snapshot.
    Poll,
    /// Nothing made outside storgate is seen.
    Off,
}

impl WatchMode {
    pub fn name(self) -> &'static str {
        match self {
            WatchMode::Auto => "auto",
            WatchMode::Notify => "notify",
            WatchMode::Poll => "poll",
            WatchMode::Off => "off",
        }
    }
}

/// What the first round of a fresh snapshot does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchInitial {
    /// Records what is there; fires nothing.
    Baseline,
    /// Fires onPut for every entry found.
    Fire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Local(PathBuf),
    /// `endpoint` names an `aws_s3` entry; `prefix` has no leading or
    /// trailing `/` (empty = the whole S3 bucket).
    S3 {
        endpoint: String,
        prefix: String,
    },
}

impl MountSpec {
    pub fn origin(&self) -> Origin {
        if self.origin_path.starts_with('/') {
            return Origin::Local(PathBuf::from(&self.origin_path));
        }
        let (name, prefix) = self
            .origin_path
            .split_once('/')
            .unwrap_or((self.origin_path.as_str(), ""));
        Origin::S3 {
            endpoint: name.strip_suffix("@aws_s3").unwrap_or(name).to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// The mount point as a path (`"/"` for a root mount).
    pub fn mount_path(&self) -> &str {
        self.mount_point.as_deref().unwrap_or("/")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Access {
    pub get: AccessRule,
    pub put: AccessRule,
    pub delete: AccessRule,
}

#[derive(Debug, Clone)]
pub struct AccessRule {
    pub enable: bool,
}

impl Default for AccessRule {
    fn default() -> Self {
        AccessRule { enable: true }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Events {
    pub on_get: Event,
    pub on_put: Event,
    pub on_delete: Event,
    pub on_batch: Vec<BatchEvent>,
}

/// `onGet`, `onPut`, `onDelete`.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// Default false.
    pub enable: bool,
    /// `None` = absent or `null`: every file matches (not directories/links).
    pub filter: Option<Filter>,
    /// Always `Some` when `enable` is true.
    pub trigger: Option<Trigger>,
    pub webhooks: Webhooks,
}

/// One `onBatch` entry.
#[derive(Debug, Clone)]
pub struct BatchEvent {
    pub enable: bool,
    /// Default 1000, at least 1.
    pub chunk_size: u64,
    /// Normalised absolute bucket path, default `/`.
    pub path: String,
    pub traverse: Traverse,
    pub cursor: CursorPolicy,
    /// Always `Some` when `enable` is true.
    pub schedule: Option<Schedule>,
    pub filter: Option<Filter>,
    /// Always `Some` when `enable` is true; its timing is always `post`.
    pub trigger: Option<Trigger>,
    pub webhooks: Webhooks,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    /// Names a workflow of the same bucket.
    pub workflow: String,
    pub timing: Timing,
}

/// `filter` (SPEC §4.3): Ansible `find` semantics.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Globs (or regexes with `use_regex`), all valid, matched on the basename.
    pub patterns: Vec<String>,
    pub excludes: Vec<String>,
    pub use_regex: bool,
    pub filetype: FileType,
    pub recursive: bool,
    pub hidden: bool,
    pub age: Option<AgeFilter>,
    pub age_stamp: AgeStamp,
    pub size: Option<SizeFilter>,
    /// 0 = unlimited.
    pub depth: u32,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            patterns: Vec::new(),
            excludes: Vec::new(),
            use_regex: false,
            filetype: FileType::File,
            recursive: false,
            hidden: false,
            age: None,
            age_stamp: AgeStamp::Mtime,
            size: None,
            depth: 0,
        }
    }
}

/// Webhooks of one event; the chunk hooks are only ever set on `onBatch`.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub on_item_completed: Option<Webhook>,
    pub on_item_aborted: Option<Webhook>,
    pub on_chunk_extracted: Option<Webhook>,
    pub on_chunk_completed: Option<Webhook>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    /// An `http://` or `https://` URL (POST of the payload).
    Http(String),
    /// An absolute path to an executable file (checked at load time).
    Exec(PathBuf),
}

impl fmt::Display for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Webhook::Http(u) => f.write_str(u),
            Webhook::Exec(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    /// Default true.
    pub enable: bool,
    pub tasks: Vec<Task>,
    pub on_complete: OnComplete,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub function: Function,
    /// The template as written (syntax checked).
    pub save_path: String,
    /// Compiled `pathPattern`; `#N` in `save_path` are in range.
    pub path_pattern: Option<regex::Regex>,
    pub when_exist: WhenExist,
    /// Default 60 s.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Function {
    /// `null` or absent: copy the source bytes.
    Copy,
    /// `"/a/b"`: POST to `functionBaseUrl` + this path (`functionBaseUrl` is set).
    Http(String),
    /// `{"exec": [...]}`: non-empty; elements are templates (syntax checked).
    Exec(Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct OnComplete {
    pub src: SrcOp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SrcOp {
    #[default]
    None,
    Delete,
    /// `path` is a template, checked like a `savePath`.
    Move {
        path: String,
    },
}

/// One `aws_s3` entry. Its `Debug` never shows the keys.
#[derive(Debug, Clone)]
pub struct S3Endpoint {
    pub name: String,
    pub bucket: String,
    pub region: Option<String>,
    /// An `http(s)://` URL of an S3-compatible server; `None` = AWS.
    pub endpoint: Option<String>,
    /// Default: true when `endpoint` is set, false for AWS.
    pub force_path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub profile: Option<String>,
    /// `metadataTtl` (default 1 s, 0 = always revalidate).
    pub metadata_ttl: Duration,
    /// `timeout` of one backend request (default 30 s).
    pub timeout: Duration,
}

/// A credential: printed as `***` by `Debug`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone)]
pub struct Distribution {
    /// `distribution.meta.enable` (default true). Even when true, a config
    /// without `leader.url` makes every node its own leader.
    pub enable: bool,
    pub leader: Leader,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            enable: true,
            leader: Leader::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Leader {
    /// `url` with `{vhost}` substituted.
    pub url: Option<LeaderUrl>,
    /// Names an `aws_s3` entry.
    pub auth_endpoint: Option<String>,
    /// `termSeconds` (default 300).
    pub term: Duration,
}

impl Default for Leader {
    fn default() -> Self {
        Leader {
            url: None,
            auth_endpoint: None,
            term: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderUrl {
    /// `file:///abs/path`.
    File(PathBuf),
    /// `s3://ENDPOINT_NAME/key`; the endpoint exists in `aws_s3`.
    S3 { endpoint: String, key: String },
    /// `http(s)://…`, used with `authEndpoint`.
    Http(String),
}

impl fmt::Display for LeaderUrl {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LeaderUrl::File(p) => write!(f, "file://{}", p.display()),
            LeaderUrl::S3 { endpoint, key } => write!(f, "s3://{endpoint}/{key}"),
            LeaderUrl::Http(u) => f.write_str(u),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Throttling {
    /// Default true.
    pub enable: bool,
    /// Pause at or above this CPU percentage (default 60).
    pub cpu_deactive: f64,
    /// Resume below this CPU percentage (default 40); always ≤ `cpu_deactive`.
    pub cpu_reactive: f64,
    /// While paused, one item still starts at least this often
    /// (`maxPauseSeconds`, default 30 s); `None` (`0`) pauses without limit.
    pub max_pause: Option<Duration>,
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling {
            enable: true,
            cpu_deactive: 60.0,
            cpu_reactive: 40.0,
            max_pause: Some(Duration::from_secs(30)),
        }
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $expecting:literal, { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        match v {
                            $($text => Ok($name::$variant),)+
                            _ => Err(E::unknown_variant(v, &[$($text),+])),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_enum!(
    /// `trigger.timing` (default `post`).
    Timing, "`pre` or `post`", { Pre = "pre", Post = "post" }
);
string_enum!(
    /// `onBatch.traverse` (default `depth`).
    Traverse, "`depth` or `breadth`", { Depth = "depth", Breadth = "breadth" }
);
string_enum!(
    /// `onBatch.cursor` (default `continue`).
    CursorPolicy, "`continue` or `reset`", { Continue = "continue", Reset = "reset" }
);
string_enum!(
    /// `filter.filetype` (default `file`).
    FileType, "`file`, `directory`, `link` or `any`",
    { File = "file", Directory = "directory", Link = "link", Any = "any" }
);
string_enum!(
    /// `filter.age_stamp` (default `mtime`).
    AgeStamp, "`mtime`, `atime` or `ctime`", { Mtime = "mtime", Atime = "atime", Ctime = "ctime" }
);
string_enum!(
    /// `task.whenExist` (default `overwrite`).
    WhenExist, "`overwrite`, `skip` or `diff`", { Overwrite = "overwrite", Skip = "skip", Diff = "diff" }
);
string_enum!(
    /// `onComplete.src.op` as written (default `none`).
    SrcOpKind, "`none`, `delete` or `move`", { None = "none", Delete = "delete", Move = "move" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_debug_printed() {
        let e = S3Endpoint {
            name: "n".into(),
            bucket: "b".into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            access_key_id: Some(Secret::new("AKIAEXAMPLE")),
            secret_access_key: Some(Secret::new("s3cr3t-value")),
            profile: None,
            metadata_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
        };
        let d = format!("{e:?} {e:#?}");
        assert!(!d.contains("AKIAEXAMPLE") && !d.contains("s3cr3t"), "{d}");
        assert!(d.contains("***"));
        assert_eq!(
            e.secret_access_key.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
    }

    #[test]
    fn origins() {
        let m = |o: &str| MountSpec {
            mount_point: None,
            origin_path: o.into(),
            expose: true,
            watch: Default::default(),
        };
        assert_eq!(m("/mnt/x").origin(), Origin::Local("/mnt/x".into()));
        assert_eq!(
            m("store@aws_s3").origin(),
            Origin::S3 {
                endpoint: "store".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            m("store@aws_s3/skip/this").origin(),
            Origin::S3 {
                endpoint: "store".into(),
                prefix: "skip/this".into()
            }
        );
    }

    #[test]
    fn enum_names() {
        let t: Timing = serde_json::from_str("\"pre\"").expect("pre");
        assert_eq!(t, Timing::Pre);
        let e = serde_json::from_value::<Timing>(serde_json::json!("later"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown variant `later`, expected `pre` or `post`"),
            "{e}"
        );
        let e = serde_json::from_value::<Timing>(serde_json::json!(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid type: integer `1`, expected `pre` or `post`"),
            "{e}"
        );
    }
}
