//! Path helpers: JSON paths for error messages (`buckets[0].events.onBatch[1]`)
//! and bucket paths (absolute, `/`-separated, normalised).

use super::ConfigError;

/// `base.key`, or `base["odd key"]` for keys that are not plain identifiers.
pub(crate) fn join_key(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
        return format!("{base}[{quoted}]");
    }
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

pub(crate) fn join_index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// Appends a relative JSON path (`a.b[0]`, `[2].c`, or empty) to `base`.
pub(crate) fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() || rel == "." {
        base.to_string()
    } else if base.is_empty() || rel.starts_with('[') {
        format!("{base}{rel}")
    } else {
        format!("{base}.{rel}")
    }
}

/// Normalises an absolute bucket path: collapses `//`, drops a trailing `/`
/// (except for the root). Errors on relative paths and `.`/`..` components.
pub(crate) fn normalize_bucket_path(p: &str) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::value(format!(
            "{p:?} is not an absolute path (it must start with /)"
        )));
    }
    let mut out = String::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(ConfigError::value(format!(
                "{p:?} contains a `{c}` component"
            )));
        }
        if c.contains('\0') {
            return Err(ConfigError::value(format!("{p:?} contains a NUL byte")));
        }
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether normalised path `p` is `dir` or lies below it.
pub(crate) fn is_under(p: &str, dir: &str) -> bool {
    dir == "/" || p == dir || (p.starts_with(dir) && p.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        assert_eq!(join_key("", "buckets"), "buckets");
        assert_eq!(join_key("a[0]", "b"), "a[0].b");
        assert_eq!(join_key("a", "x y"), "a[\"x y\"]");
        assert_eq!(join_key("a", "x.y"), "a[\"x.y\"]");
        assert_eq!(join_index("a", 3), "a[3]");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("a", "."), "a");
        assert_eq!(join("a", "b[1].c"), "a.b[1].c");
        assert_eq!(join("a", "[1].c"), "a[1].c");
        assert_eq!(join("", "b"), "b");
    }

    #[test]
    fn bucket_paths() {
        assert_eq!(normalize_bucket_path("/"), Ok("/".into()));
        assert_eq!(normalize_bucket_path("//"), Ok("/".into()));
        assert_eq!(normalize_bucket_path("/a//b/"), Ok("/a/b".into()));
        assert!(normalize_bucket_path("a/b").is_err());
        assert!(normalize_bucket_path("").is_err());
        assert!(normalize_bucket_path("/a/../b").is_err());
        assert!(normalize_bucket_path("/a/./b").is_err());
        assert_eq!(normalize_bucket_path("/a/.b"), Ok("/a/.b".into()));
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/x", "/"));
    }
}
