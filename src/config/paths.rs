//! Path helpers: JSON paths for error messages (`buckets[0].events.onBatch[1]`)
//! and bucket paths (absolute, `/`-separated, normalised).

use super::ConfigError;

/// Longest file name component, in bytes (Linux `NAME_MAX`): a longer
/// literal component can never be created or matched.
pub(crate) const NAME_MAX: usize = 255;

/// The message for a component of `len` bytes starting with `c`: the first
/// characters only, so that the line stays readable.
pub(crate) fn too_long_message(c: &str, len: usize) -> String {
    let head: String = c.chars().take(16).collect();
    format!("has a component of {len} bytes ({head:?}…); a file name is at most {NAME_MAX} bytes")
}

/// The first component of `p` longer than [`NAME_MAX`], as its message.
pub(crate) fn long_component(p: &str) -> Option<String> {
    p.split('/')
        .find(|c| c.len() > NAME_MAX)
        .map(|c| too_long_message(c, c.len()))
}

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
        if c.len() > NAME_MAX {
            return Err(ConfigError::value(too_long_message(c, c.len())));
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
        let long = format!("/a/{}/b", "x".repeat(256));
        let e = normalize_bucket_path(&long).unwrap_err().to_string();
        assert!(e.starts_with("has a component of 256 bytes"), "{e}");
        assert!(normalize_bucket_path(&format!("/a/{}", "x".repeat(255))).is_ok());
        assert!(long_component(&long).is_some());
        assert!(long_component("/a/b").is_none());
    }
}
