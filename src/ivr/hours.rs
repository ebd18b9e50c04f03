//! Opening hours: weekly windows in a region's IANA time zone, spans past midnight, holidays.
//!
//! Pure functions of wall-clock time: `is_open(&Schedule, DateTime<Utc>)` converts to local time with
//! `chrono-tz` (so daylight-saving changes follow the tz database) and never reads the clock. Parsing
//! of `HH:MM`, day lists and dates lives here too; choosing a menu from the result is `compile`'s job.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

/// A weekly window: starts on the marked days at `open`, ends at `close` (the next day when `close` is
/// not after `open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklySpan {
    /// Start days, Monday first.
    pub days: [bool; 7],
    /// Opening minute of the day, 0..1440.
    pub open: u32,
    /// Closing minute of the day, 0..=1440.
    pub close: u32,
}

impl WeeklySpan {
    /// Whether local weekday `wd` (0 = Monday) at minute `m` falls in this window.
    fn contains(&self, wd: usize, m: u32) -> bool {
        if self.open < self.close {
            self.days[wd] && self.open <= m && m < self.close
        } else {
            // Past midnight (or a full 24 h when open == close): the part after `open` on a start day,
            // plus the part before `close` on the day after a start day.
            let prev = (wd + 6) % 7;
            (self.days[wd] && m >= self.open) || (self.days[prev] && m < self.close)
        }
    }
}

/// A region's weekly hours, holidays and time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The region's time zone.
    pub tz: Tz,
    /// Opening windows.
    pub open: Vec<WeeklySpan>,
    /// Local dates on which the region is closed all day.
    pub holidays: BTreeSet<NaiveDate>,
}

/// Local weekday (0 = Monday) and minute of day of `at` in `tz`.
pub fn local_week_minute(tz: Tz, at: DateTime<Utc>) -> (NaiveDate, usize, u32) {
    let local = at.with_timezone(&tz);
    (
        local.date_naive(),
        local.weekday().num_days_from_monday() as usize,
        local.hour() * 60 + local.minute(),
    )
}

/// Whether `span` contains `at` in `tz`.
pub fn span_contains(span: &WeeklySpan, tz: Tz, at: DateTime<Utc>) -> bool {
    let (_, wd, m) = local_week_minute(tz, at);
    span.contains(wd, m)
}

/// Whether the local date of `at` is a holiday.
pub fn is_holiday(s: &Schedule, at: DateTime<Utc>) -> bool {
    s.holidays.contains(&local_week_minute(s.tz, at).0)
}

/// Whether the region is open at `at`: not a holiday, and inside one of the weekly windows.
pub fn is_open(s: &Schedule, at: DateTime<Utc>) -> bool {
    !is_holiday(s, at) && s.open.iter().any(|w| span_contains(w, s.tz, at))
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes.
pub fn parse_time(text: &str) -> Result<u32, String> {
    let bad = || format!("invalid time `{text}`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `mon-fri`, `sat,sun`, `fri-mon` (wrapping) or `daily`.
pub fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let day = |d: &str| {
        DAY_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(d.trim()))
            .ok_or_else(|| {
                format!(
                    "invalid day `{}` (expected one of mon, tue, wed, thu, fri, sat, sun)",
                    d.trim()
                )
            })
    };
    let mut days = [false; 7];
    if text.trim().eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

/// Parses a holiday date `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("invalid date `{text}`"))
}

/// Parses an IANA time zone name.
pub fn parse_tz(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>()
        .map_err(|_| format!("unknown time zone `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn sched(tz: &str, days: &str, open: &str, close: &str) -> Schedule {
        Schedule {
            tz: parse_tz(tz).unwrap(),
            open: vec![WeeklySpan {
                days: parse_days(days).unwrap(),
                open: parse_time(open).unwrap(),
                close: parse_time(close).unwrap(),
            }],
            holidays: BTreeSet::new(),
        }
    }

    #[test]
    fn boundaries_are_open_inclusive_close_exclusive() {
        // Europe/Paris in November is UTC+1: 08:00 local = 07:00 UTC.
        let s = sched("Europe/Paris", "mon-sat", "08:00", "22:00");
        assert!(!is_open(&s, utc(2026, 11, 20, 6, 59)));
        assert!(is_open(&s, utc(2026, 11, 20, 7, 0)));
        assert!(is_open(&s, utc(2026, 11, 20, 20, 59)));
        assert!(!is_open(&s, utc(2026, 11, 20, 21, 0)));
        // Sunday 2026-11-22 is closed all day.
        assert!(!is_open(&s, utc(2026, 11, 22, 12, 0)));
    }

    #[test]
    fn span_past_midnight_belongs_to_its_start_day() {
        let s = sched("UTC", "fri", "22:00", "02:00");
        assert!(is_open(&s, utc(2026, 11, 20, 23, 0))); // Friday 23:00
        assert!(is_open(&s, utc(2026, 11, 21, 1, 59))); // Saturday 01:59
        assert!(!is_open(&s, utc(2026, 11, 21, 2, 0)));
        assert!(!is_open(&s, utc(2026, 11, 20, 1, 0))); // Friday 01:00 belongs to Thursday's start
        assert!(!is_open(&s, utc(2026, 11, 21, 23, 0))); // Saturday is not a start day
    }

    #[test]
    fn daylight_saving_change_moves_utc_opening() {
        // New York 07:00 local is 12:00 UTC on Saturday 2026-03-07 (EST) and 11:00 UTC on Monday
        // 2026-03-09 (EDT, after the change on Sunday 2026-03-08).
        let s = sched("America/New_York", "daily", "07:00", "23:00");
        assert!(!is_open(&s, utc(2026, 3, 7, 11, 30)));
        assert!(is_open(&s, utc(2026, 3, 7, 12, 0)));
        assert!(is_open(&s, utc(2026, 3, 9, 11, 0)));
        assert!(!is_open(&s, utc(2026, 3, 9, 10, 59)));
    }

    #[test]
    fn holidays_close_the_whole_local_day() {
        let mut s = sched("Asia/Shanghai", "daily", "00:00", "24:00");
        s.holidays.insert(parse_date("2026-10-01").unwrap());
        // 2026-09-30 16:00 UTC is 2026-10-01 00:00 in Shanghai.
        assert!(is_open(&s, utc(2026, 9, 30, 15, 59)));
        assert!(!is_open(&s, utc(2026, 9, 30, 16, 0)));
        assert!(is_open(&s, utc(2026, 10, 1, 16, 0)));
    }

    #[test]
    fn parse_errors() {
        assert!(parse_time("25:00").is_err());
        assert!(parse_time("8:00").is_err());
        assert_eq!(parse_time("24:00"), Ok(1440));
        assert!(parse_days("mon-fry").is_err());
        assert_eq!(
            parse_days("fri-mon").unwrap(),
            [true, false, false, false, true, true, true]
        );
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_tz("Europe/Pariss").is_err());
    }
}
