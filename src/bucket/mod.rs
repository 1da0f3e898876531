//! The one place that knows a bucket: its state built from the config (the
//! merge tree and one origin per mount), the writer workflows use for their
//! outputs (`store`), and the registry of storgate's own changes
//! (`selfchange`) that keeps the watcher and the engine from reporting them
//! again. The mount, the event engine, workflows and batch scans all ask this
//! layer; it names only `origin`, `tree` and `config` below it.

pub mod error;
pub mod resolve;
pub mod selfchange;
mod selfchange_shared;
pub mod store;
pub mod temps;

pub use error::BucketError;

use std::ffi::OsString;
use std::path::Path;

use crate::config::{Access, Config, Origin};
use crate::item::path_text;
use crate::origin::{Backend, LocalOrigin, S3Origin};
use crate::tree::{BucketTree, Place};

/// Staged pre-put writes under `stateDir` (SPEC §4.3).
pub const PRESTAGE_DIR: &str = "prestage";
/// Refused or unplaceable pre-put writes, kept for a user to find.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A bucket as the core serves it.
#[derive(Clone)]
pub struct BucketState {
    pub name: OsString,
    pub tree: BucketTree,
    pub access: Access,
    /// The origin of each mount, by mount index.
    pub origins: Vec<Backend>,
}

impl BucketState {
    /// The bucket as path resolution sees it: `for_client` hides the hidden
    /// mounts (the mount, batch scans); workflows pass `false`.
    pub fn view(&self, for_client: bool) -> resolve::View<'_> {
        resolve::View {
            tree: &self.tree,
            origins: &self.origins,
            for_client,
        }
    }
}

/// Makes the S3 origins of `buckets` record this process's changes in
/// `selfc` (local changes are recorded by their callers, by path).
pub fn attach_self_changes(
    buckets: &[BucketState],
    selfc: &std::sync::Arc<selfchange::SelfChanges>,
) {
    for b in buckets {
        for o in &b.origins {
            if let Backend::S3(s3) = o {
                s3.attach_changes(selfc.clone());
            }
        }
    }
}

/// The buckets of `config` that are enabled, each with its origins.
pub fn build_buckets(config: &Config) -> Result<Vec<BucketState>, BucketError> {
    let mut buckets = Vec::new();
    for b in &config.buckets {
        if !b.meta.enable {
            continue;
        }
        let tree = BucketTree::from_config(b);
        let mut origins = Vec::new();
        for (i, m) in tree.mounts.iter().enumerate() {
            match &m.origin {
                Origin::Local(root) => {
                    let local = LocalOrigin::new(root.clone());
                    // Opened now, before any client can reach it: a parent of
                    // the configured path that changes later cannot redirect
                    // the origin. A directory missing now is opened at first use.
                    let _ = local.at();
                    origins.push(Backend::Local(local));
                }
                Origin::S3 { endpoint, prefix } => {
                    let ep = config.s3_endpoint(endpoint).ok_or_else(|| {
                        BucketError::config(format!(
                            "bucket {} mount {i}: no aws_s3 entry named {endpoint}",
                            b.meta.name
                        ))
                    })?;
                    let origin = S3Origin::new(ep, prefix, &config.state_dir)
                        .map_err(|e| BucketError::config(e.to_string()))?;
                    origins.push(Backend::S3(origin));
                }
            }
        }
        buckets.push(BucketState {
            name: OsString::from(&b.meta.name),
            tree,
            access: b.access.clone(),
            origins,
        });
    }
    Ok(buckets)
}

/// The mount point holding `path` (SPEC §5.2 `source_dir` of a file-system
/// event).
pub fn source_dir(tree: &BucketTree, path: &[OsString]) -> String {
    match tree.place(path, false) {
        Place::Mount { mount, .. } => path_text(&tree.mounts[mount].point),
        _ => "/".to_string(),
    }
}

/// Removes temporary files (and the private temp directories of
/// `batch run`/`workflow run`, see [`run_tmp_dir`]) that a crashed run left
/// in `stateDir/tmp`, and the temp outputs crashed writers left in origins
/// (their intent logs, see [`temps`]). A run whose log is still locked is
/// alive and left alone. Only the daemon calls it, at start.
pub fn clean_tmp(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name
            .as_encoded_bytes()
            .starts_with(store::TMP_PREFIX.as_bytes())
        {
            continue;
        }
        let path = e.path();
        if name == temps::INTENT_LOG {
            temps::replay_log(&path);
            continue;
        }
        let _ = match e.file_type() {
            Ok(t) if t.is_dir() => {
                let log = path.join(temps::INTENT_LOG);
                if log.exists() && temps::replay_log(&log).is_none() {
                    continue;
                }
                std::fs::remove_dir_all(&path)
            }
            _ => std::fs::remove_file(&path),
        };
    }
}

/// A private directory for the temporary files of one `batch run` or
/// `workflow run` under `stateDir/tmp` (0700, removed when dropped). A CLI
/// run never cleans `stateDir/tmp` itself: a daemon on the same config may
/// have downloads and outputs in flight there.
pub fn run_tmp_dir(state_tmp: &Path) -> std::io::Result<tempfile::TempDir> {
    crate::state::private::own_dir(state_tmp)?;
    use std::os::unix::fs::PermissionsExt;
    // Explicit: tempfile leaves a directory's mode to the umask, and the
    // daemon's is 0.
    tempfile::Builder::new()
        .prefix(&format!("{}run.", store::TMP_PREFIX))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(state_tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tmp_dirs_are_private_and_cleaned_only_by_clean_tmp() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().expect("tempdir");
        let tmp = state.path().join("tmp");
        let run = run_tmp_dir(&tmp).expect("run dir");
        let mode = std::fs::metadata(run.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "a CLI run's temp dir is private");
        std::fs::write(run.path().join("download"), b"x").expect("write");
        let stale = tmp.join(format!("{}out.1", store::TMP_PREFIX));
        std::fs::write(&stale, b"x").expect("write");
        let foreign = tmp.join("not-ours");
        std::fs::write(&foreign, b"x").expect("write");
        // Another CLI run beside this one leaves both alone.
        let other = run_tmp_dir(&tmp).expect("second run dir");
        assert!(run.path().join("download").exists() && stale.exists());
        drop(other);
        // The daemon's start removes what crashed runs left, not the rest.
        clean_tmp(&tmp);
        assert!(!run.path().exists(), "a crashed run's dir is removed");
        assert!(!stale.exists(), "a stale temp file is removed");
        assert!(foreign.exists(), "other files are kept");
    }
}
