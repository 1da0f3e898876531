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

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ConfigError;
use super::paths::{join_index, join_key};

/// Replaces every `#…` and `//…` line comment outside strings by spaces, byte
/// for byte, so that lines and columns of what remains are unchanged.
pub(crate) fn strip_comments(src: &str) -> String {
    let mut out = src.as_bytes().to_vec();
    let b = src.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' | b'\n' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let comment = c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/'));
        if comment {
            while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                out[i] = b' ';
                i += 1;
            }
            continue;
        }
        if c == b'"' {
            in_string = true;
        }
        i += 1;
    }
    // Only ASCII bytes were written, and only over whole comments (which run
    // to the end of a line), so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
    let mut de = serde_json::Deserializer::from_str(&stripped);
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
        let v: Value = serde_json::from_str(&s).expect("valid after stripping");
        assert_eq!(v["url"], "http://x//y#z");
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn escaped_quote_in_string() {
        let src = "{\"a\": \"x\\\"#y\" # c\n}";
        let v: Value = serde_json::from_str(&strip_comments(src)).expect("valid");
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
