//! Size and age values of `filter.size` / `filter.age` (SPEC §4.3), Ansible
//! `find` style: an optional leading `-` ("at most" instead of "at least"),
//! digits, and one optional unit letter. Sizes: `b k m g t` (1024-based, no
//! unit = bytes). Ages: `s m h d w` (no unit = seconds). Units are lower-case
//! only, as in Ansible. Also the bound of every duration ([`MAX_SECONDS`]).

use super::ConfigError;

/// The largest number of seconds any duration of the config may be (task
/// and S3 timeouts, TTLs, the leader term): one day. Far beyond any sensible
/// value, and far below what a `Duration` added to `Instant::now()` (timers,
/// HTTP clients) can hold; code handing a configured duration to such a
/// client may clamp to it.
pub const MAX_SECONDS: u64 = 86_400;

/// A size bound: `"1m"` = at least 1 MiB, `"-1m"` = at most 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeFilter {
    pub bytes: u64,
    /// `true` for a leading `-`: the file must be at most `bytes` long.
    pub at_most: bool,
}

/// An age bound: `"2d"` = at least 2 days old, `"-2d"` = at most 2 days old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeFilter {
    pub seconds: u64,
    /// `true` for a leading `-`: the item must be at most `seconds` old.
    pub at_most: bool,
}

impl SizeFilter {
    pub fn matches(&self, size: u64) -> bool {
        if self.at_most {
            size <= self.bytes
        } else {
            size >= self.bytes
        }
    }
}

impl AgeFilter {
    pub fn matches(&self, age_seconds: u64) -> bool {
        if self.at_most {
            age_seconds <= self.seconds
        } else {
            age_seconds >= self.seconds
        }
    }
}

/// Splits `-?digits unit?` into (negative, number, unit).
fn split(text: &str, units: &str) -> Result<(bool, u64, Option<char>), ConfigError> {
    let t = text.trim();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, unit) = rest.split_at(digits_end);
    if digits.is_empty() {
        return Err(ConfigError::value(format!(
            "{text:?} is not a number with an optional unit ({units})"
        )));
    }
    if unit.starts_with(|c: char| !c.is_ascii_alphabetic()) {
        return Err(ConfigError::value(format!(
            "{text:?} is not a whole number with an optional unit ({units})"
        )));
    }
    let mut chars = unit.chars();
    let unit = match (chars.next(), chars.next()) {
        (None, _) => None,
        (Some(c), None) if units.split(' ').any(|u| u.starts_with(c)) => Some(c),
        _ => {
            return Err(ConfigError::value(format!(
                "{text:?}: unknown unit {unit:?} (use {units})"
            )));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| ConfigError::value(format!("{text:?} is too large")))?;
    Ok((neg, n, unit))
}

/// Parses a size such as `"1m"`, `"-512k"`, `"100"`.
pub fn parse_size(text: &str) -> Result<SizeFilter, ConfigError> {
    let (at_most, n, unit) = split(text, "b k m g t")?;
    let mult: u64 = match unit {
        None | Some('b') => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        _ => 1 << 40,
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| ConfigError::value(format!("{text:?} is too large")))?;
    Ok(SizeFilter { bytes, at_most })
}

/// Parses an age such as `"2d"`, `"-3h"`, `"90"`.
pub fn parse_age(text: &str) -> Result<AgeFilter, ConfigError> {
    let (at_most, n, unit) = split(text, "s m h d w")?;
    let mult: u64 = match unit {
        None | Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86400,
        _ => 7 * 86400,
    };
    let seconds = n
        .checked_mul(mult)
        .ok_or_else(|| ConfigError::value(format!("{text:?} is too large")))?;
    Ok(AgeFilter { seconds, at_most })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let s = |t| parse_size(t).map(|f| (f.bytes, f.at_most));
        assert_eq!(s("0"), Ok((0, false)));
        assert_eq!(s("100"), Ok((100, false)));
        assert_eq!(s("100b"), Ok((100, false)));
        assert_eq!(s("1k"), Ok((1024, false)));
        assert_eq!(s("1m"), Ok((1 << 20, false)));
        assert_eq!(s("-1m"), Ok((1 << 20, true)));
        assert_eq!(s("2g"), Ok((2 << 30, false)));
        assert_eq!(s("3t"), Ok((3 << 40, false)));
        assert_eq!(s(" 5k "), Ok((5120, false)));
        assert!(s("1M").is_err());
        assert!(s("1d").is_err());
        assert!(s("1kb").is_err());
        assert!(s("k").is_err());
        assert!(s("").is_err());
        assert!(s("-").is_err());
        assert!(s("--1").is_err());
        assert!(s("1.5m").is_err());
        assert!(s("99999999999999999999").is_err());
        assert!(s("16777216t").is_err());
        assert_eq!(
            parse_size("1.5m").unwrap_err().to_string(),
            "\"1.5m\" is not a whole number with an optional unit (b k m g t)"
        );
        assert_eq!(
            parse_size("10x").unwrap_err().to_string(),
            "\"10x\": unknown unit \"x\" (use b k m g t)"
        );
    }

    #[test]
    fn ages() {
        let a = |t| parse_age(t).map(|f| (f.seconds, f.at_most));
        assert_eq!(a("30"), Ok((30, false)));
        assert_eq!(a("30s"), Ok((30, false)));
        assert_eq!(a("5m"), Ok((300, false)));
        assert_eq!(a("2h"), Ok((7200, false)));
        assert_eq!(a("2d"), Ok((172800, false)));
        assert_eq!(a("-2d"), Ok((172800, true)));
        assert_eq!(a("1w"), Ok((604800, false)));
        assert!(a("1y").is_err());
        assert!(a("1k").is_err());
        assert!(a("2D").is_err());
        assert!(a("d").is_err());
    }

    #[test]
    fn matching() {
        let at_least = parse_size("1k").unwrap();
        assert!(at_least.matches(1024) && at_least.matches(5000) && !at_least.matches(1023));
        let at_most = parse_size("-1k").unwrap();
        assert!(at_most.matches(1024) && at_most.matches(0) && !at_most.matches(1025));
        let young = parse_age("-1h").unwrap();
        assert!(young.matches(10) && !young.matches(3601));
    }
}
