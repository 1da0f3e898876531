//! `onBatch.schedule` (SPEC §6): cron expressions parsed with `croner`.
//!
//! Accepted: the standard 5-field POSIX form (`min hour dom month dow`), a
//! 6-field form with a leading seconds field, and the nicknames `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@hourly`. POSIX rules:
//! day-of-week 0–7 with both 0 and 7 = Sunday (names `SUN`–`SAT` too), and when
//! both day-of-month and day-of-week are restricted a day matching *either*
//! fires (croner's default; its `+` prefix on the day-of-week field asks for
//! AND instead). A field counts as unrestricted only when it is exactly `*`
//! (or `?`): `*/2` in day-of-month is a restriction, so `0 0 */2 * 1` fires
//! on odd days *and* on Mondays (Vixie cron would AND them). A 7-field form
//! with years is refused. Times are evaluated in
//! whatever time zone the caller passes (the scheduler uses local time).

use super::ConfigError;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule: the expression as written and croner's pattern.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    pub cron: Cron,
}

const NICKNAMES: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .build()
}

/// How far ahead a schedule must fire at least once: two leap days, so that
/// `0 0 29 2 *` passes while `0 0 30 2 *` (valid fields, no such date) does
/// not.
const HORIZON_YEARS: i32 = 8;

/// Whether `cron` matches some time within `years` years after `from`.
fn fires_within_years(cron: &Cron, from: chrono::DateTime<chrono::Utc>, years: i32) -> bool {
    use chrono::Datelike;
    let limit = from
        .with_year(from.year() + years)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    cron.find_next_occurrence(&from, false)
        .is_ok_and(|next| next <= limit)
}

/// Parses a schedule; the error message is meant to follow `schedule: `.
pub fn parse(expr: &str) -> Result<Schedule, ConfigError> {
    let t = expr.trim();
    if t.starts_with('@') {
        if !NICKNAMES.iter().any(|n| n.eq_ignore_ascii_case(t)) {
            return Err(ConfigError::value(format!(
                "bad cron expression {expr:?}: unknown nickname (use one of {})",
                NICKNAMES.join(" ")
            )));
        }
    } else {
        let fields = t.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ConfigError::value(format!(
                "bad cron expression {expr:?}: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {fields}"
            )));
        }
    }
    match parser().parse(t) {
        Ok(cron) => {
            if !fires_within_years(&cron, chrono::Utc::now(), HORIZON_YEARS) {
                return Err(ConfigError::value(format!(
                    "bad cron expression {expr:?}: it never fires (no date in the next {HORIZON_YEARS} years matches)"
                )));
            }
            Ok(Schedule {
                expr: expr.to_string(),
                cron,
            })
        }
        Err(e) => Err(ConfigError::value(format!(
            "bad cron expression {expr:?}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Utc};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid date")
    }

    fn matches(expr: &str, t: chrono::DateTime<Utc>) -> bool {
        parse(expr)
            .expect("parses")
            .cron
            .is_time_matching(&t)
            .expect("matching works")
    }

    #[test]
    fn five_and_six_fields() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("0 1 * * *").is_ok());
        assert!(parse("30 */5 * * * *").is_ok());
        assert!(parse("@daily").is_ok());
        assert!(parse("@WEEKLY").is_ok());
        assert!(parse("0 0 * * MON-FRI").is_ok());
        assert!(parse("0 0 1 JAN *").is_ok());
        assert!(parse("* * * *").is_err());
        assert!(parse("0 0 0 1 1 * 2030").is_err());
        assert!(parse("").is_err());
        assert!(parse("@reboot").is_err());
        assert!(parse("60 * * * *").is_err());
        assert!(parse("* 24 * * *").is_err());
        assert!(parse("* * 0 * *").is_err());
        assert!(parse("* * * 13 *").is_err());
        assert!(parse("* * * * 8").is_err());
        assert!(parse("*/x * * * *").is_err());
        assert!(parse("a b c d e").is_err());
    }

    #[test]
    fn five_fields_fire_at_second_zero() {
        assert!(matches("*/5 * * * *", at(2024, 3, 5, 10, 15)));
        assert!(!matches("*/5 * * * *", at(2024, 3, 5, 10, 16)));
        let t = Utc
            .with_ymd_and_hms(2024, 3, 5, 10, 15, 30)
            .single()
            .expect("date");
        assert!(!matches("*/5 * * * *", t));
        assert!(matches("30 */5 * * * *", t));
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        // 2024-03-03 is a Sunday, 2024-03-04 a Monday.
        let sun = at(2024, 3, 3, 0, 0);
        let mon = at(2024, 3, 4, 0, 0);
        assert_eq!(sun.weekday(), chrono::Weekday::Sun);
        for e in [
            "0 0 * * 0",
            "0 0 * * 7",
            "0 0 * * SUN",
            "0 0 * * 6-7",
            "0 0 * * 5-7",
        ] {
            assert!(matches(e, sun), "{e} should match Sunday");
            assert!(!matches(e, mon), "{e} should not match Monday");
        }
        assert!(matches("0 0 * * 1", mon));
        assert!(matches("0 0 * * 1-5", mon));
        assert!(!matches("0 0 * * 1-5", sun));
    }

    #[test]
    fn dom_and_dow_either_match() {
        // "0 0 13 * 5": the 13th of any month OR any Friday (POSIX).
        let e = "0 0 13 * 5";
        assert!(matches(e, at(2024, 3, 13, 0, 0))); // Wednesday the 13th
        assert!(matches(e, at(2024, 3, 8, 0, 0))); // Friday the 8th
        assert!(matches(e, at(2024, 9, 13, 0, 0))); // Friday the 13th
        assert!(!matches(e, at(2024, 3, 12, 0, 0))); // Tuesday the 12th
        // Only one restricted: that one alone decides.
        assert!(matches("0 0 13 * *", at(2024, 3, 13, 0, 0)));
        assert!(!matches("0 0 13 * *", at(2024, 3, 8, 0, 0)));
        assert!(matches("0 0 * * 5", at(2024, 3, 8, 0, 0)));
        assert!(!matches("0 0 * * 5", at(2024, 3, 13, 0, 0)));
    }

    #[test]
    fn stepped_star_is_a_restriction() {
        let e = "0 0 */2 * 1";
        assert!(matches(e, at(2024, 3, 4, 0, 0))); // Monday the 4th (even day)
        assert!(matches(e, at(2024, 3, 7, 0, 0))); // Thursday the 7th (odd day)
        assert!(!matches(e, at(2024, 3, 6, 0, 0))); // Wednesday the 6th
    }

    #[test]
    fn schedules_that_never_fire_are_refused() {
        for e in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 31 6,9,11 *"] {
            let m = parse(e).unwrap_err().to_string();
            assert!(m.contains("it never fires"), "{e}: {m}");
        }
        // Rare but real: leap days, the 31st of some months, a weekday
        // OR a day of month that does not exist.
        for e in ["0 0 29 2 *", "0 0 31 1-12 *", "0 0 30 2 1", "0 12 13 * 5"] {
            assert!(parse(e).is_ok(), "{e}");
        }
        let cron = parse("0 0 29 2 *").expect("parses").cron;
        assert!(fires_within_years(&cron, at(2025, 3, 1, 0, 0), 8));
        assert!(!fires_within_years(&cron, at(2025, 3, 1, 0, 0), 2));
    }

    #[test]
    fn next_occurrence() {
        let s = parse("0 1 * * *").expect("parses");
        let next = s
            .cron
            .find_next_occurrence(&at(2024, 3, 5, 10, 15), false)
            .expect("next");
        assert_eq!((next.day(), next.hour(), next.minute()), (6, 1, 0));
    }
}
