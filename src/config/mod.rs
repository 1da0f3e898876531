//! The configuration of SPEC §2–§7: loading, validation, `storgate check`.
//!
//! Nothing else in storgate reads raw JSON. The pipeline:
//! - `load`: file → JSON value (`#`/`//` comments, syntax errors with line and
//!   column, duplicate keys, the optional `functions.backend.storgate` envelope);
//! - `raw`: the serde model of the file (`deny_unknown_fields`), read piece by
//!   piece so that many problems are reported at once;
//! - `validate/`: raw → the normalised [`model`] with every semantic check
//!   (`globals`, `bucket`, `workflow`, `events`);
//! - `units`, `cron`, `template`, `paths`: the small parsers it uses;
//! - `pattern`: the one compiler of filter name patterns (globs and regexes),
//!   used by the validation here and by the runtime filter alike;
//! - `error`: [`ConfigError`], a problem located by its JSON path;
//! - `summary`: the text `storgate check` prints.
//!
//! Error paths are JSON paths relative to the inner object (the one holding
//! `buckets`), e.g. `buckets[0].events.onBatch[1].schedule`, whether or not
//! the file uses the envelope. JSON syntax errors, and a file that is not
//! UTF-8, are located as `line L, column C` (characters, 1-based) of the
//! original file.
//!
//! `mountPoint: "/"` is the same as `null`/absent: a root mount.

pub mod cron;
mod error;
mod load;
pub mod model;
mod paths;
pub mod pattern;
mod raw;
mod summary;
pub mod template;
pub mod units;
mod validate;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use model::*;
pub use summary::summary;

/// Where the config is read from when nothing else is said.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/storgate/storgate.json";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "STORGATE_CONFIG";

/// A valid configuration and the warnings found while checking it (each
/// `{path}: {message}`).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Reads, parses, normalises and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    let text = load::decode(bytes).map_err(|e| vec![e])?;
    load_str(&text)
}

/// Like [`load`], for the text of a config file. Relative paths inside the
/// config are still refused (they are never relative to the file).
pub fn load_str(text: &str) -> Result<Loaded, Vec<ConfigError>> {
    let (value, mut errors) = load::parse(text).map_err(|e| vec![e])?;
    let inner = match load::unwrap_envelope(value) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    match validate::build(inner) {
        Ok(loaded) if errors.is_empty() => Ok(loaded),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

/// `--config`, else `$STORGATE_CONFIG` (when set and non-empty), else
/// `/etc/storgate/storgate.json`.
/// Loads `path` for a command: the config, or None after writing one line
/// per problem to `err` (the command then exits 2, SPEC §9).
pub fn load_or_report(path: &Path, err: &mut dyn std::io::Write) -> Option<Config> {
    match load(path) {
        Ok(l) => Some(l.config),
        Err(errors) => {
            for e in errors {
                let _ = writeln!(err, "{e}");
            }
            None
        }
    }
}

pub fn resolve_config_path(cli: Option<&Path>) -> PathBuf {
    resolve_with(cli, std::env::var_os(CONFIG_ENV))
}

fn resolve_with(cli: Option<&Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    match (cli, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(v)) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// `storgate check`: on errors prints each on its own line to stderr and
/// returns 2; prints warnings as `warning: …` to stderr; when valid prints
/// [`summary`] to stdout and returns 0.
pub fn check_command(path: &Path) -> i32 {
    check_to(path, &mut std::io::stdout(), &mut std::io::stderr())
}

/// [`check_command`] writing to the given streams (for tests).
pub fn check_to(path: &Path, out: &mut dyn std::io::Write, err: &mut dyn std::io::Write) -> i32 {
    // Output errors (a closed pipe) are ignored: the exit code still tells.
    match load(path) {
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(err, "{e}");
            }
            let n = errors.len();
            let _ = writeln!(
                err,
                "{}: {n} problem{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            2
        }
        Ok(loaded) => {
            for w in &loaded.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            let _ = writeln!(out, "{}: OK", path.display());
            let _ = write!(out, "{}", summary(&loaded.config));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        let e = ConfigError {
            path: "buckets[0].name".into(),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "buckets[0].name: bad");
        let e = ConfigError {
            path: String::new(),
            message: "missing field `buckets`".into(),
        };
        assert_eq!(e.to_string(), "missing field `buckets`");
    }

    #[test]
    fn config_path_order() {
        let cli = Some(Path::new("/x/cli.json"));
        let env = || Some(std::ffi::OsString::from("/x/env.json"));
        assert_eq!(resolve_with(cli, env()), PathBuf::from("/x/cli.json"));
        assert_eq!(resolve_with(None, env()), PathBuf::from("/x/env.json"));
        assert_eq!(
            resolve_with(None, Some("".into())),
            PathBuf::from(DEFAULT_CONFIG_PATH)
        );
        assert_eq!(resolve_with(None, None), PathBuf::from(DEFAULT_CONFIG_PATH));
        assert_eq!(resolve_config_path(cli), PathBuf::from("/x/cli.json"));
    }

    #[test]
    fn minimal_config() {
        let l = load_str(r#"{"buckets": []}"#).expect("valid");
        assert!(l.config.buckets.is_empty());
        assert_eq!(l.config.state_dir, PathBuf::from("/var/lib/storgate"));
        assert_eq!(l.config.vhost, "default");
        assert_eq!(l.warnings, vec!["buckets: no buckets are configured"]);
    }
}
