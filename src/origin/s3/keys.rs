//! Object keys ↔ paths (SPEC §3.3): `/` separates components, common
//! prefixes are directories, `dir/` markers keep empty directories, and keys
//! that no path could name (`.`/`..`/empty components, NUL, `name/` with
//! content) are not shown. When a key `a` and a prefix `a/` both exist, the
//! directory wins.

use std::collections::BTreeMap;
use std::ffi::OsString;

use crate::error::{Errno, FsResult};

/// What a listing says about one name of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Dir,
    /// A file object: its key, size, ETag and LastModified.
    File {
        key: String,
        size: u64,
        etag: String,
        last_modified: std::time::SystemTime,
    },
}

/// The key prefix (ending in `/`, or empty) under which an origin lives.
pub fn root_prefix(prefix: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// The object key of origin path `rel` (no trailing slash).
pub fn key_of(root: &str, rel: &[OsString]) -> FsResult<String> {
    let mut key = root.to_string();
    for (i, c) in rel.iter().enumerate() {
        let c = c.to_str().ok_or(Errno::EINVAL)?;
        if !valid_component(c) {
            return Err(Errno::EINVAL);
        }
        if i > 0 {
            key.push('/');
        }
        key.push_str(c);
    }
    Ok(key)
}

/// The prefix listing directory `rel` (ends in `/` unless it is the root of
/// an unprefixed origin).
pub fn dir_prefix(root: &str, rel: &[OsString]) -> FsResult<String> {
    if rel.is_empty() {
        return Ok(root.to_string());
    }
    Ok(format!("{}/", key_of(root, rel)?))
}

pub fn valid_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && !c.contains('/')
}

/// Turns one directory's listing (objects and common prefixes under
/// `prefix`, delimiter `/`) into names.
pub fn entries_of(
    prefix: &str,
    objects: &[super::client::ObjectMeta],
    prefixes: &[String],
) -> BTreeMap<String, Listed> {
    let mut out = BTreeMap::new();
    for p in prefixes {
        let Some(rest) = p.strip_prefix(prefix) else {
            continue;
        };
        let name = rest.strip_suffix('/').unwrap_or(rest);
        if valid_component(name) {
            out.insert(name.to_string(), Listed::Dir);
        }
    }
    for o in objects {
        let Some(name) = o.key.strip_prefix(prefix) else {
            continue;
        };
        // The directory's own marker, or a stray `x/` object.
        if name.is_empty() || name.ends_with('/') {
            continue;
        }
        if !valid_component(name) || out.contains_key(name) {
            continue;
        }
        out.insert(
            name.to_string(),
            Listed::File {
                key: o.key.clone(),
                size: o.size,
                etag: o.etag.clone(),
                last_modified: o.last_modified,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::client::ObjectMeta;
    use super::*;
    use std::collections::HashMap;
    use std::time::UNIX_EPOCH;

    fn obj(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size: 1,
            etag: "e".into(),
            last_modified: UNIX_EPOCH,
            user: HashMap::new(),
        }
    }

    #[test]
    fn keys_and_prefixes() {
        let rel = [OsString::from("a"), OsString::from("b.txt")];
        assert_eq!(key_of("", &rel).unwrap(), "a/b.txt");
        assert_eq!(key_of(&root_prefix("/p/q/"), &rel).unwrap(), "p/q/a/b.txt");
        assert_eq!(dir_prefix("p/", &[]).unwrap(), "p/");
        assert_eq!(dir_prefix("", &rel[..1]).unwrap(), "a/");
        assert_eq!(key_of("", &[OsString::from("..")]), Err(Errno::EINVAL));
    }

    #[test]
    fn listing_rules() {
        let objects = [
            obj("d/"),  // own marker
            obj("d/a"), // shadowed by prefix d/a/
            obj("d/f"),
            obj("d/./x"),  // not a name
            obj("d/sub/"), // stray marker object in contents
            obj("d/x\0y"),
        ];
        let prefixes = ["d/a/".to_string(), "d/../".to_string(), "d//".to_string()];
        let e = entries_of("d/", &objects, &prefixes);
        let names: Vec<_> = e.keys().cloned().collect();
        assert_eq!(names, ["a", "f"]);
        assert_eq!(e["a"], Listed::Dir);
    }
}
