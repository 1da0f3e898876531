//! Marker paths in JSON: each component a string when it is UTF-8, else an
//! array of its bytes.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize)]
#[serde(untagged)]
enum NameRef<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Name {
    Text(String),
    Bytes(Vec<u8>),
}

pub fn serialize<S: Serializer>(path: &[OsString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(path.iter().map(|c| match c.to_str() {
        Some(t) => NameRef::Text(t),
        None => NameRef::Bytes(c.as_bytes()),
    }))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
    let names = Vec::<Name>::deserialize(d)?;
    Ok(names
        .into_iter()
        .map(|n| match n {
            Name::Text(t) => OsString::from(t),
            Name::Bytes(b) => OsString::from_vec(b),
        })
        .collect())
}
