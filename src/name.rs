//! Names are bytes (SPEC §9.1): the lossless, reversible text form of a
//! file name or bucket path, for everything that needs a `String` — the
//! journal's keys, hit counts, the item templates see, rendered output paths,
//! webhook payloads (JSON strings must be UTF-8).
//!
//! # The form
//! - A run of valid UTF-8 stays as it is, so a UTF-8 name *is* its text form
//!   (the common case costs nothing and reads naturally).
//! - Each byte that is not part of valid UTF-8 — always a byte `0x80`–`0xFF`,
//!   since an ASCII byte is valid UTF-8 on its own — becomes the private-use
//!   code point `U+10FF00 + byte` (`bad\xff.jpg` → `"bad\u{10FFFF}.jpg"`).
//! - So that the mapping stays one-to-one, a code point of that reserved range
//!   (`U+10FF80`–`U+10FFFF`, the last 128 of plane 16) that a name really
//!   contains is written the same way, one escape per byte of its UTF-8
//!   encoding (`U+10FFC1` = `F4 8F BF 81` → four escapes).
//!
//! [`to_bytes`] maps every reserved code point back to its byte and every
//! other character to its UTF-8, so `to_bytes(to_text(b)) == b` for every
//! byte string, and two different names never share a text form. Text that
//! [`to_text`] did not produce (a template's own literal text) decodes too: a
//! reserved code point there stands for its byte, anything else for itself.
//!
//! Why this form rather than base64 or byte arrays: templates work on text,
//! and every character that matters to a path — `/`, `.`, NUL, ASCII in
//! general — is never escaped *and no escape decodes to one* (the range
//! holds no escape for an ASCII byte), so `basename`, `dirname`, `splitext`,
//! `rsplit`, `replace` and the path safety rules (no `..`, no NUL) work on
//! the text and still hold for the bytes, and a name keeps its extension.
//! Only lengths must be measured in bytes ([`byte_len`]): one escaped byte is
//! four bytes of text.
//!
//! Logs print the text with `{:?}`, which shows an escape as `\u{10ffff}`:
//! still exact, and readable. Nothing converts names lossily.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Byte `b` (`0x80`–`0xFF`) is escaped as the code point `ESCAPE_BASE + b`.
pub const ESCAPE_BASE: u32 = 0x10_FF00;

fn escape(b: u8) -> char {
    // The whole range U+10FF00..=U+10FFFF lies in plane 16, never a surrogate.
    char::from_u32(ESCAPE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The byte a reserved code point (`U+10FF80`–`U+10FFFF`) stands for.
fn unescape(c: char) -> Option<u8> {
    u32::from(c)
        .checked_sub(ESCAPE_BASE)
        .and_then(|b| u8::try_from(b).ok())
        .filter(|b| *b >= 0x80)
}

/// The lossless text form of `bytes`.
pub fn to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        if valid.chars().any(|c| unescape(c).is_some()) {
            let mut buf = [0u8; 4];
            for c in valid.chars() {
                if unescape(c).is_some() {
                    out.extend(c.encode_utf8(&mut buf).bytes().map(escape));
                } else {
                    out.push(c);
                }
            }
        } else {
            out.push_str(valid);
        }
        out.extend(chunk.invalid().iter().copied().map(escape));
    }
    out
}

/// The bytes a text form names (the inverse of [`to_text`]).
pub fn to_bytes(text: &str) -> Vec<u8> {
    if !has_escapes(text) {
        return text.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        match unescape(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

/// Whether `text` holds a reserved code point (so its bytes differ from its
/// UTF-8).
pub fn has_escapes(text: &str) -> bool {
    // Every reserved code point is encoded F4 8F BE..=BF xx in UTF-8.
    text.as_bytes()
        .windows(3)
        .any(|w| w[0] == 0xF4 && w[1] == 0x8F && w[2] >= 0xBE)
        && text.chars().any(|c| unescape(c).is_some())
}

/// How many bytes the name `text` stands for has (what `NAME_MAX` and
/// `PATH_MAX` count).
pub fn byte_len(text: &str) -> usize {
    if !has_escapes(text) {
        return text.len();
    }
    text.chars()
        .map(|c| match unescape(c) {
            Some(_) => 1,
            None => c.len_utf8(),
        })
        .sum()
}

/// The text form of the bucket path with components `path` (`/dir/a.jpg`;
/// the root is `/`).
pub fn path_text(path: &[OsString]) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut s = String::new();
    for c in path {
        s.push('/');
        s.push_str(&to_text(c.as_bytes()));
    }
    s
}

/// The exact components of the text form `text` of a bucket path: empty and
/// `.` components are dropped (like `tree::split_path`, which takes config
/// text literally; this one decodes escapes).
pub fn split_path(text: &str) -> Vec<OsString> {
    text.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| OsString::from_vec(to_bytes(c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64: a fixed seed, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Random bytes, biased towards the interesting ones: ASCII, UTF-8
        /// lead and continuation bytes, and pieces of reserved code points.
        fn name(&mut self) -> Vec<u8> {
            let len = (self.next() % 24) as usize;
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                match self.next() % 6 {
                    0 => v.push(b'a' + (self.next() % 26) as u8),
                    1 => v.push(0x80 + (self.next() % 0x40) as u8),
                    2 => v.extend_from_slice(&[0xF4, 0x8F, 0xBC + (self.next() % 4) as u8]),
                    3 => {
                        let c = char::from_u32((self.next() % 0x11_0000) as u32).unwrap_or('x');
                        v.extend_from_slice(c.to_string().as_bytes());
                    }
                    _ => v.push(self.next() as u8),
                }
            }
            v
        }
    }

    #[test]
    fn round_trip_of_random_byte_strings() {
        let mut rng = Rng(0x5EED);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..50_000 {
            let b = rng.name();
            let t = to_text(&b);
            assert_eq!(to_bytes(&t), b, "round trip of {b:x?} via {t:?}");
            assert_eq!(byte_len(&t), b.len(), "{b:x?}");
            assert!(!t.contains('/') || b.contains(&b'/'));
            // Distinct names, distinct texts.
            if let Some(other) = seen.insert(t.clone(), b.clone()) {
                assert_eq!(other, b, "{t:?} names two byte strings");
            }
        }
    }

    #[test]
    fn every_single_and_double_byte_string_round_trips_distinctly() {
        let mut texts = std::collections::HashSet::new();
        for a in 0..=255u8 {
            let t = to_text(&[a]);
            assert_eq!(to_bytes(&t), [a]);
            assert!(texts.insert(t));
            for b in 0..=255u8 {
                let t = to_text(&[a, b]);
                assert_eq!(to_bytes(&t), [a, b]);
                assert!(texts.insert(t), "{a:x} {b:x}");
            }
        }
    }

    #[test]
    fn valid_utf8_is_unchanged() {
        for s in [
            "",
            "a.jpg",
            "dir/sub/ü ñ 日本.txt",
            "\u{10FEFF}",
            "\u{10FF2F}",
            "{{ x }}",
            "a\nb",
        ] {
            assert_eq!(to_text(s.as_bytes()), s);
            assert_eq!(to_bytes(s), s.as_bytes());
            assert!(!has_escapes(s));
        }
    }

    #[test]
    fn the_colliding_pair_of_issue_11_stays_apart() {
        let ff = to_text(b"bad\xff.jpg");
        let fe = to_text(b"bad\xfe.jpg");
        assert_ne!(ff, fe);
        assert_eq!(ff, "bad\u{10FFFF}.jpg");
        assert_eq!(fe, "bad\u{10FFFE}.jpg");
        // A name that really holds U+10FFFF is a third, different text.
        let real = to_text("bad\u{10FFFF}.jpg".as_bytes());
        assert_ne!(real, ff);
        assert_eq!(to_bytes(&real), "bad\u{10FFFF}.jpg".as_bytes());
        // Path characters are never escaped.
        assert!(ff.ends_with(".jpg") && ff.starts_with("bad"));
    }

    #[test]
    fn no_escape_decodes_to_an_ascii_byte() {
        // U+10FF00 + '/', NUL, '.': ordinary characters, not escapes, so a
        // template's literal text cannot smuggle a `/`, a NUL or `..` past
        // the path checks made on the text.
        for b in 0..0x80u8 {
            let c = char::from_u32(ESCAPE_BASE + u32::from(b)).expect("a code point");
            let text = c.to_string();
            assert_eq!(to_bytes(&text), text.as_bytes());
            assert_eq!(to_text(text.as_bytes()), text);
        }
        assert_eq!(to_bytes("\u{10FF80}\u{10FFFF}"), [0x80, 0xFF]);
        assert!(
            to_bytes("a\u{10FF2F}\u{10FF2E}\u{10FF00}b")
                .iter()
                .all(|&b| b != b'/' && b != 0)
        );
    }

    #[test]
    fn paths_split_back_to_exact_components() {
        use std::ffi::OsStr;
        let comps = vec![
            OsString::from("dir"),
            OsStr::from_bytes(b"x\xff\xc3").to_os_string(),
            OsString::from("a.jpg"),
        ];
        let text = path_text(&comps);
        assert_eq!(text, "/dir/x\u{10FFFF}\u{10FFC3}/a.jpg");
        assert_eq!(split_path(&text), comps);
        assert_eq!(path_text(&[]), "/");
        assert_eq!(
            split_path("//a/./b/"),
            [OsString::from("a"), OsString::from("b")]
        );
    }
}
