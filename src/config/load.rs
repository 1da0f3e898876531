//! From bytes to a JSON value: reading the file, `#` and `//` line comments,
//! JSON syntax errors with the line and column of the original file,
//! duplicate keys, and the optional envelope
//! `{"functions":{"backend":{"storgate":{…}}}}`.
//!
//! Paths reported after this step are relative to the inner object (the one
//! holding `buckets`), whether or not the envelope was used. Keys next to the
//! envelope's path (other sections of a shared settings file) are ignored.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;

use json_comments::StripComments;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ConfigError;
use super::paths::{join_index, join_key};

/// The text serde reads: every `#…` and `//…` line comment outside strings
/// blanked by `json_comments`, which writes a space over each comment byte,
/// so lines and columns of what remains are those of the original.
///
/// `json_comments` also blanks `/* … */`, which SPEC §2 refuses, and it
/// reports a lone `/` only as "invalid data", without a position. So from
/// the first block comment, or from the spot it refuses, the text is handed
/// to serde as written: serde then names the problem with its own message
/// and position, exactly as for any other text that is not JSON.
pub(crate) fn strip_comments(src: &str) -> Vec<u8> {
    let orig = src.as_bytes();
    let mut out = Vec::with_capacity(orig.len());
    // One byte per read, so that on an error `out` ends right before the
    // byte refused (a larger read loses the whole chunk it failed in).
    let mut reader = StripComments::new(OneByte(orig));
    let mut byte = [0u8];
    let failed = loop {
        match reader.read(&mut byte) {
            Ok(0) => break false,
            Ok(_) => out.push(byte[0]),
            Err(_) => break true,
        }
    };
    let mut keep = first_block_comment(orig, &out).unwrap_or(out.len());
    // A refused `/` (not followed by `/` or `*`) was already blanked.
    if failed && keep == out.len() && keep > 0 && out[keep - 1] == b' ' && orig[keep - 1] == b'/' {
        keep -= 1;
    }
    out.truncate(keep);
    out.extend_from_slice(&orig[keep..]);
    out
}

/// Where the first `/*` comment starts, found from what `json_comments`
/// blanked: outside line comments, the first byte it changed opens a comment.
fn first_block_comment(orig: &[u8], stripped: &[u8]) -> Option<usize> {
    let mut in_line = false;
    for (i, (&o, &s)) in orig.iter().zip(stripped).enumerate() {
        if in_line {
            in_line = o != b'\n';
        } else if o != s {
            if orig[i..].starts_with(b"/*") {
                return Some(i);
            }
            in_line = true;
        }
    }
    None
}

/// A reader handing out one byte per call.
struct OneByte<'a>(&'a [u8]);

impl Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

/// The text of a config file, or where its first byte that is not UTF-8
/// sits, as `line L, column C` (characters, 1-based) like syntax errors.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        // The prefix up to `at` is valid UTF-8 by definition.
        let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError {
            path: format!("line {line}, column {column}"),
            message: format!("not UTF-8 text (byte 0x{:02x})", bytes[at]),
        }
    })
}

/// serde_json counts columns in bytes; users count characters.
fn char_column(src: &str, line: usize, byte_col: usize) -> usize {
    let Some(text) = src.split('\n').nth(line.saturating_sub(1)) else {
        return byte_col;
    };
    text.char_indices()
        .take_while(|(i, _)| *i < byte_col)
        .count()
}

fn syntax_error(original: &str, e: &serde_json::Error) -> ConfigError {
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(p) => full[..p].to_string(),
        None => full,
    };
    let (line, col) = (e.line(), e.column());
    let path = if line == 0 {
        String::new()
    } else {
        format!(
            "line {line}, column {}",
            char_column(original, line, col).max(1)
        )
    };
    ConfigError {
        path,
        message: format!("invalid JSON: {message}"),
    }
}

/// Parses the text of a config file (comments allowed) into a JSON value.
/// Duplicate keys are returned as separate errors next to the value.
pub(crate) fn parse(original: &str) -> Result<(Value, Vec<ConfigError>), ConfigError> {
    let text = original.strip_prefix('\u{feff}').unwrap_or(original);
    let stripped = strip_comments(text);
    let dups = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(&stripped);
    let value = ValueSeed {
        path: String::new(),
        dups: &dups,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| syntax_error(text, &e))?;
    Ok((value, dups.into_inner()))
}

/// Returns the inner object: the envelope's `functions.backend.storgate`, or
/// the whole document when it has no `functions` key (or has `buckets`).
pub(crate) fn unwrap_envelope(v: Value) -> Result<Value, ConfigError> {
    let Value::Object(mut top) = v else {
        return Err(ConfigError {
            path: String::new(),
            message: format!(
                "the configuration must be a JSON object, found {}",
                kind(&v)
            ),
        });
    };
    if !top.contains_key("functions") || top.contains_key("buckets") {
        return Ok(Value::Object(top));
    }
    let mut cur = top.remove("functions").unwrap_or(Value::Null);
    let mut path = String::from("functions");
    for key in ["backend", "storgate"] {
        let Value::Object(mut m) = cur else {
            return Err(ConfigError {
                path,
                message: format!(
                    "expected an object (the envelope is {{\"functions\":{{\"backend\":{{\"storgate\":{{…}}}}}}}}), found {}",
                    kind(&cur)
                ),
            });
        };
        let Some(next) = m.remove(key) else {
            return Err(ConfigError {
                path,
                message: format!(
                    "missing `{key}` (the envelope is {{\"functions\":{{\"backend\":{{\"storgate\":{{…}}}}}}}})"
                ),
            });
        };
        cur = next;
        path = join_key(&path, key);
    }
    if !cur.is_object() {
        return Err(ConfigError {
            path,
            message: format!("expected an object, found {}", kind(&cur)),
        });
    }
    Ok(cur)
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Builds a `serde_json::Value` like `Value::deserialize`, recording the
/// path of every key that occurs twice in one object.
struct ValueSeed<'a> {
    path: String,
    dups: &'a RefCell<Vec<ConfigError>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            path: join_index(&self.path, out.len()),
            dups: self.dups,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = join_key(&self.path, &key);
            let v = map.next_value_seed(ValueSeed {
                path: path.clone(),
                dups: self.dups,
            })?;
            if out.insert(key, v).is_some() {
                self.dups.borrow_mut().push(ConfigError {
                    path,
                    message: "duplicate key".into(),
                });
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_outside_strings_only() {
        let src = "{ # a comment\n  \"url\": \"http://x//y#z\", // trailing\n  \"a\": 1 // c \"quoted\"\n}";
        let s = strip_comments(src);
        assert_eq!(s.len(), src.len());
        let v: Value = serde_json::from_slice(&s).expect("valid after stripping");
        assert_eq!(v["url"], "http://x//y#z");
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn escaped_quote_in_string() {
        let src = "{\"a\": \"x\\\"#y\" # c\n}";
        let v: Value = serde_json::from_slice(&strip_comments(src)).expect("valid");
        assert_eq!(v["a"], "x\"#y");
    }

    #[test]
    fn multibyte_comments_keep_positions() {
        let src = "{\n  # 한국어 주석\n  \"a\": 1,\n  \"b\" 2\n}";
        let e = parse(src).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 4, column 7: invalid JSON: expected `:`"
        );
    }

    #[test]
    fn columns_count_characters() {
        let src = "{\"이름\": 1 2}";
        let e = parse(src).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1, column 10: invalid JSON: expected `,` or `}`"
        );
    }

    #[test]
    fn block_comments_are_not_json() {
        let e = parse("{\n /* no */ \"a\": 1}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 2: invalid JSON: key must be a string"
        );
    }

    #[test]
    fn comment_positions_are_kept() {
        // Blanked byte for byte: an error after comments is located as if
        // they were not there, even after a multibyte comment and a `#` or
        // `/*` inside a string.
        let src = "{ // 주석 /* not a block */\n  \"u\": \"a#b/*c\", # x\n  \"v\" 1\n}";
        let e = parse(src).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3, column 7: invalid JSON: expected `:`"
        );
        let s = strip_comments(src);
        assert_eq!(s.len(), src.len());
        assert_eq!(s.iter().filter(|&&b| b == b'\n').count(), 3);
    }

    #[test]
    fn block_comment_after_line_comments() {
        let e = parse("{ # one\n  // two\n  \"a\": 1, /* three */ \"b\": 2}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3, column 11: invalid JSON: key must be a string"
        );
        // Unterminated: still serde's message and position.
        let e = parse("{\"a\": 1 /* open").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1, column 9: invalid JSON: expected `,` or `}`"
        );
    }

    #[test]
    fn lone_slash_and_open_string_are_serde_errors() {
        let e = parse("# c\n{\"a\": /1}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 7: invalid JSON: expected value"
        );
        let e = parse("{\"a\": 1} /").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1, column 10: invalid JSON: trailing characters"
        );
        let e = parse("{\"a\": \"x # y").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1, column 12: invalid JSON: EOF while parsing a string"
        );
    }

    #[test]
    fn not_utf8_is_located_by_line_and_column() {
        let e = decode(b"{\n  \"a\": \"\xc3\xa9\xff\"\n}".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 10: not UTF-8 text (byte 0xff)"
        );
        let e = decode(b"\xfe".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1, column 1: not UTF-8 text (byte 0xfe)"
        );
        // A sequence cut short at the end of the file.
        let e = decode(b"{}\n\xe2\x82".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 1: not UTF-8 text (byte 0xe2)"
        );
        assert_eq!(decode(b"{}".to_vec()).ok().as_deref(), Some("{}"));
    }

    #[test]
    fn empty_and_bom() {
        assert_eq!(
            parse("").unwrap_err().to_string(),
            "line 1, column 1: invalid JSON: EOF while parsing a value"
        );
        let (v, _) = parse("\u{feff}{\"a\":1}").expect("BOM is skipped");
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn duplicates() {
        let (_, d) = parse("{\"a\":{\"b\":1,\"b\":2},\"c\":[{\"x\":1,\"x\":1}]}").expect("parses");
        let d: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d, vec!["a.b: duplicate key", "c[0].x: duplicate key"]);
    }

    #[test]
    fn envelope() {
        let inner = serde_json::json!({"buckets": []});
        let env = serde_json::json!({"functions": {"backend": {"storgate": inner.clone(), "other": 1}, "x": 2}, "y": 3});
        assert_eq!(unwrap_envelope(env).expect("ok"), inner);
        assert_eq!(unwrap_envelope(inner.clone()).expect("ok"), inner);
        let e = unwrap_envelope(serde_json::json!({"functions": {"backend": {}}})).unwrap_err();
        assert_eq!(e.path, "functions.backend");
        assert!(e.message.starts_with("missing `storgate`"));
        let e = unwrap_envelope(serde_json::json!({"functions": {"backend": {"storgate": []}}}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "functions.backend.storgate: expected an object, found an array"
        );
        let e = unwrap_envelope(serde_json::json!([1])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the configuration must be a JSON object, found an array"
        );
    }
}
