//! The configuration model of SPEC §2–§7, its loading and its validation.
//!
//! PLACEHOLDER written by the lead so the core compiles; the config helper
//! replaces it with the full serde model. The names below are the contract.

use std::path::{Path, PathBuf};

/// A loaded, validated, normalised configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub buckets: Vec<Bucket>,
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Bucket {
    pub meta: BucketMeta,
    pub mounts: Vec<MountSpec>,
    pub access: Access,
}

#[derive(Debug, Clone)]
pub struct BucketMeta {
    pub enable: bool,
    pub name: String,
    pub expose: bool,
}

#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Normalised absolute bucket path without trailing slash, `None` = root mount.
    pub mount_point: Option<String>,
    pub origin_path: String,
    pub expose: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Local(PathBuf),
    S3 { endpoint: String, prefix: String },
}

impl MountSpec {
    pub fn origin(&self) -> Origin {
        if self.origin_path.starts_with('/') {
            Origin::Local(PathBuf::from(&self.origin_path))
        } else {
            let (name, prefix) = match self.origin_path.split_once('/') {
                Some((n, p)) => (n, p),
                None => (self.origin_path.as_str(), ""),
            };
            let endpoint = name.strip_suffix("@aws_s3").unwrap_or(name).to_string();
            Origin::S3 {
                endpoint,
                prefix: prefix.trim_matches('/').to_string(),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Access {
    pub get: AccessRule,
    pub put: AccessRule,
    pub delete: AccessRule,
}

#[derive(Debug, Clone)]
pub struct AccessRule {
    pub enable: bool,
}

/// One problem found in a configuration, located by its JSON path.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Minimal stand-in loader (no validation) until the real model lands.
pub fn load(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let err = |m: String| {
        vec![ConfigError {
            path: path.display().to_string(),
            message: m,
        }]
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let b = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or(true);
    let mut buckets = Vec::new();
    for bk in v["buckets"].as_array().cloned().unwrap_or_default() {
        let meta = bk.get("meta").cloned().unwrap_or(bk.clone());
        let mounts = bk["mounts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| MountSpec {
                mount_point: m
                    .get("mountPoint")
                    .and_then(|x| x.as_str())
                    .map(|s| s.trim_end_matches('/').to_string())
                    .filter(|s| !s.is_empty()),
                origin_path: m["originPath"].as_str().unwrap_or("").to_string(),
                expose: b(m, "expose"),
            })
            .collect();
        let acc = |k: &str| AccessRule {
            enable: bk
                .get("access")
                .and_then(|a| a.get(k))
                .map(|x| b(x, "enable"))
                .unwrap_or(true),
        };
        buckets.push(Bucket {
            meta: BucketMeta {
                enable: b(&meta, "enable"),
                name: meta["name"].as_str().unwrap_or("").to_string(),
                expose: b(&meta, "expose"),
            },
            mounts,
            access: Access {
                get: acc("get"),
                put: acc("put"),
                delete: acc("delete"),
            },
        });
    }
    let state_dir = PathBuf::from(
        v.get("stateDir")
            .and_then(|x| x.as_str())
            .unwrap_or("/var/lib/storgate"),
    );
    Ok(Loaded {
        config: Config { buckets, state_dir },
        warnings: vec![],
    })
}

pub fn resolve_config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    std::env::var_os("STORGATE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/storgate/storgate.json"))
}

pub fn check_command(path: &Path) -> i32 {
    match load(path) {
        Ok(_) => 0,
        Err(errs) => {
            for e in errs {
                eprintln!("{}: {}", e.path, e.message);
            }
            2
        }
    }
}
