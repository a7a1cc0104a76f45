//! Business hours in the site's time zone: which event times are off-hours, and the local hour
//! of day for per-hour baselines.
use chrono::{DateTime, Offset, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

const NS: u64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
const SECONDS_PER_HOUR: i64 = 3600;
const MINUTES_PER_DAY: u16 = 24 * 60;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// "UTC", a fixed offset ("+02:00", "-05:30") or an IANA time zone name ("Europe/Berlin",
    /// daylight saving time followed).
    pub timezone: String,
    /// Local business hours, "HH:MM-HH:MM"; an overnight range ("22:00-06:00") belongs to the
    /// day it starts on.
    pub hours: String,
    /// Business days: English day names, three letters or full, any case.
    pub workdays: Vec<String>,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            timezone: "UTC".into(),
            hours: "08:00-18:00".into(),
            workdays: ["Mon", "Tue", "Wed", "Thu", "Fri"]
                .map(String::from)
                .to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("business_hours: {0}")]
pub struct ClockError(pub String);

#[derive(Debug, Clone, Copy)]
enum Zone {
    /// Seconds east of UTC.
    Fixed(i32),
    Named(Tz),
}

#[derive(Debug, Clone)]
pub struct BusinessClock {
    zone: Zone,
    /// Minutes after local midnight; `end` may be below `start` (overnight).
    start_min: u16,
    end_min: u16,
    /// Bit n set: `Weekday::num_days_from_monday() == n` is a workday.
    workdays: u8,
    /// A named zone's UTC offset over one UTC hour: (hour start, offset), both in seconds.
    /// Asked once or twice per flow update, so the zone's transition search runs once an hour.
    named_offset: Cell<(i64, i32)>,
}

/// Local wall-clock facts of one instant.
struct Local {
    minute_of_day: u16,
    weekday: Weekday,
}

impl BusinessClock {
    pub fn new(config: &ClockConfig) -> Result<BusinessClock, ClockError> {
        let zone = parse_zone(&config.timezone)?;
        let (start_min, end_min) = parse_hours(&config.hours)?;
        let mut workdays = 0u8;
        for name in &config.workdays {
            let day = parse_weekday(name).ok_or_else(|| {
                ClockError(format!(
                    "workdays: '{name}' is not a day name (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"
                ))
            })?;
            workdays |= 1 << day.num_days_from_monday();
        }
        Ok(BusinessClock {
            zone,
            start_min,
            end_min,
            workdays,
            named_offset: Cell::new((i64::MIN, 0)),
        })
    }

    /// Seconds east of UTC at `secs` (UTC seconds) in a named zone. An hour whose start and
    /// end have the same offset is taken to have it throughout (no zone changes its offset
    /// twice within an hour); an hour with a transition is looked up each time.
    fn offset_named(&self, tz: Tz, secs: i64) -> i32 {
        let hour = secs - secs.rem_euclid(SECONDS_PER_HOUR);
        let (cached_hour, offset) = self.named_offset.get();
        if cached_hour == hour {
            return offset;
        }
        let at = |s: i64| {
            // u64 nanoseconds are at most ~1.8e10 seconds: always inside chrono's range.
            let utc = DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc()
        };
        let (start, end) = (at(hour), at(hour + SECONDS_PER_HOUR - 1));
        if start != end {
            return at(secs);
        }
        self.named_offset.set((hour, start));
        start
    }

    /// Plain arithmetic on seconds (chrono's calendar is not needed for a time of day and a
    /// weekday): 1970-01-01 was a Thursday.
    fn local(&self, ts_ns: u64) -> Local {
        let secs = i64::try_from(ts_ns / NS).unwrap_or(i64::MAX / 2);
        let offset = match self.zone {
            Zone::Fixed(seconds) => seconds,
            Zone::Named(tz) => self.offset_named(tz, secs),
        };
        let local = secs + i64::from(offset);
        // Unsigned division is cheaper; only instants before 1970 in local time need euclid.
        let (days, second_of_day) = match u64::try_from(local) {
            Ok(l) => ((l / 86_400) as i64, (l % 86_400) as i64),
            Err(_) => (
                local.div_euclid(SECONDS_PER_DAY),
                local.rem_euclid(SECONDS_PER_DAY),
            ),
        };
        let from_monday = (days + 3).rem_euclid(7) as u8;
        Local {
            minute_of_day: (second_of_day / 60) as u16,
            weekday: Weekday::try_from(from_monday).unwrap_or(Weekday::Mon),
        }
    }

    fn is_workday(&self, day: Weekday) -> bool {
        self.workdays & (1 << day.num_days_from_monday()) != 0
    }

    /// True when `ts_ns` (UTC nanoseconds) falls outside business hours or on a non-workday.
    pub fn is_off_hours(&self, ts_ns: u64) -> bool {
        let local = self.local(ts_ns);
        let m = local.minute_of_day;
        let business = if self.start_min < self.end_min {
            m >= self.start_min && m < self.end_min && self.is_workday(local.weekday)
        } else if m >= self.start_min {
            // Evening part of an overnight shift: the shift starts today.
            self.is_workday(local.weekday)
        } else if m < self.end_min {
            // Morning part: the shift started yesterday.
            self.is_workday(local.weekday.pred())
        } else {
            false
        };
        !business
    }

    /// Local hour of day, 0-23.
    pub fn hour_of_day(&self, ts_ns: u64) -> u8 {
        (self.local(ts_ns).minute_of_day / 60) as u8
    }
}

fn parse_zone(text: &str) -> Result<Zone, ClockError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("UTC") || t.eq_ignore_ascii_case("Z") {
        return Ok(Zone::Fixed(0));
    }
    if let Some(rest) = t.strip_prefix('+').or_else(|| t.strip_prefix('-')) {
        let sign = if t.starts_with('-') { -1 } else { 1 };
        let minutes = parse_hhmm(rest).filter(|&m| m <= 14 * 60).ok_or_else(|| {
            ClockError(format!(
                "timezone: '{text}' is not an offset of the form +HH:MM or -HH:MM (at most 14:00)"
            ))
        })?;
        return Ok(Zone::Fixed(sign * i32::from(minutes) * 60));
    }
    t.parse::<Tz>().map(Zone::Named).map_err(|_| {
        ClockError(format!(
            "timezone: '{text}' is neither UTC, an offset like +02:00, nor an IANA time zone name like Europe/Berlin"
        ))
    })
}

/// "HH:MM" -> minutes after midnight; "24:00" is allowed as an end of day.
fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    let total = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

fn parse_hours(text: &str) -> Result<(u16, u16), ClockError> {
    let bad = |why: &str| ClockError(format!("hours: '{text}' {why}"));
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| bad("is not a range of the form HH:MM-HH:MM"))?;
    let start = parse_hhmm(a).ok_or_else(|| bad("has a start that is not a time HH:MM"))?;
    let end = parse_hhmm(b).ok_or_else(|| bad("has an end that is not a time HH:MM"))?;
    if start >= MINUTES_PER_DAY {
        return Err(bad("starts at 24:00; use 00:00"));
    }
    if start == end % MINUTES_PER_DAY && !(start == 0 && end == MINUTES_PER_DAY) {
        return Err(bad("is empty; use 00:00-24:00 for all day"));
    }
    Ok((start, end))
}

fn parse_weekday(name: &str) -> Option<Weekday> {
    const DAYS: [(&str, Weekday); 7] = [
        ("monday", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("thursday", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
        ("sunday", Weekday::Sun),
    ];
    let lower = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(full, _)| lower == *full || (lower.len() == 3 && full.starts_with(&lower)))
        .map(|&(_, day)| day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(tz: &str, hours: &str, days: &[&str]) -> BusinessClock {
        BusinessClock::new(&ClockConfig {
            timezone: tz.into(),
            hours: hours.into(),
            workdays: days.iter().map(|d| d.to_string()).collect(),
        })
        .unwrap()
    }

    /// UTC nanoseconds of a calendar time.
    fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        let t = Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        t.timestamp() as u64 * NS
    }

    const WEEK: [&str; 5] = ["Mon", "Tue", "Wed", "Thu", "Fri"];

    #[test]
    fn utc_weekdays_and_weekend() {
        let c = BusinessClock::new(&ClockConfig::default()).unwrap();
        // 2024-06-05 is a Wednesday.
        assert!(!c.is_off_hours(ts(2024, 6, 5, 8, 0)));
        assert!(!c.is_off_hours(ts(2024, 6, 5, 17, 59)));
        assert!(c.is_off_hours(ts(2024, 6, 5, 18, 0)));
        assert!(c.is_off_hours(ts(2024, 6, 5, 7, 59)));
        // Saturday and Sunday at noon.
        assert!(c.is_off_hours(ts(2024, 6, 8, 12, 0)));
        assert!(c.is_off_hours(ts(2024, 6, 9, 12, 0)));
        assert_eq!(c.hour_of_day(ts(2024, 6, 5, 23, 30)), 23);
    }

    #[test]
    fn berlin_follows_daylight_saving() {
        let c = clock("Europe/Berlin", "08:00-18:00", &WEEK);
        // Winter (CET, +1): 07:30 UTC is 08:30 local.
        assert_eq!(c.hour_of_day(ts(2024, 1, 10, 7, 30)), 8);
        assert!(!c.is_off_hours(ts(2024, 1, 10, 7, 30)));
        // Summer (CEST, +2): 06:30 UTC is 08:30 local, 16:30 UTC is 18:30 local.
        assert_eq!(c.hour_of_day(ts(2024, 7, 10, 6, 30)), 8);
        assert!(!c.is_off_hours(ts(2024, 7, 10, 6, 30)));
        assert!(c.is_off_hours(ts(2024, 7, 10, 16, 30)));
        // Transition day, Sunday 2024-03-31: clocks jump 02:00 -> 03:00 at 01:00 UTC.
        assert_eq!(c.hour_of_day(ts(2024, 3, 31, 0, 59)), 1);
        assert_eq!(c.hour_of_day(ts(2024, 3, 31, 1, 0)), 3);
        // Monday after: 06:00 UTC is 08:00 CEST, business.
        assert!(!c.is_off_hours(ts(2024, 4, 1, 6, 0)));
        assert!(c.is_off_hours(ts(2024, 4, 1, 5, 59)));
        // Autumn back, 2024-10-27 01:00 UTC: 02:xx local twice.
        assert_eq!(c.hour_of_day(ts(2024, 10, 27, 0, 30)), 2);
        assert_eq!(c.hour_of_day(ts(2024, 10, 27, 1, 30)), 2);
        assert_eq!(c.hour_of_day(ts(2024, 10, 27, 2, 30)), 3);
    }

    #[test]
    fn fixed_offsets() {
        let c = clock("-05:30", "09:00-17:00", &WEEK);
        // 14:00 UTC Wednesday is 08:30 local: before hours.
        assert!(c.is_off_hours(ts(2024, 6, 5, 14, 0)));
        assert!(!c.is_off_hours(ts(2024, 6, 5, 14, 30)));
        assert_eq!(c.hour_of_day(ts(2024, 6, 5, 14, 30)), 9);
        // 02:00 UTC Saturday is 20:30 Friday local.
        assert_eq!(c.hour_of_day(ts(2024, 6, 8, 2, 0)), 20);
        let plus = clock("+02:00", "08:00-18:00", &WEEK);
        assert_eq!(plus.hour_of_day(ts(2024, 6, 5, 23, 0)), 1);
    }

    #[test]
    fn overnight_shift_belongs_to_its_start_day() {
        let c = clock("UTC", "22:00-06:00", &["Mon", "Tue", "Wed", "Thu", "Fri"]);
        // Friday 23:00 and Saturday 03:00 are Friday's shift.
        assert!(!c.is_off_hours(ts(2024, 6, 7, 23, 0)));
        assert!(!c.is_off_hours(ts(2024, 6, 8, 3, 0)));
        // Saturday 23:00 and Monday 03:00 (Sunday's shift) are off.
        assert!(c.is_off_hours(ts(2024, 6, 8, 23, 0)));
        assert!(c.is_off_hours(ts(2024, 6, 10, 3, 0)));
        // Daytime is off.
        assert!(c.is_off_hours(ts(2024, 6, 5, 12, 0)));
        assert!(c.is_off_hours(ts(2024, 6, 5, 6, 0)));
    }

    #[test]
    fn all_day_and_names() {
        let c = clock("utc", "00:00-24:00", &["monday", "SAT"]);
        assert!(!c.is_off_hours(ts(2024, 6, 8, 23, 59)));
        assert!(!c.is_off_hours(ts(2024, 6, 10, 0, 0)));
        assert!(c.is_off_hours(ts(2024, 6, 9, 12, 0)));
    }

    /// The arithmetic (and the hourly offset cache) agrees with chrono's calendar, also across
    /// daylight saving transitions and for out-of-order times.
    #[test]
    fn local_time_agrees_with_chrono() {
        use chrono::{Datelike, Timelike};
        let zones = [
            "UTC",
            "-05:30",
            "+14:00",
            "Europe/Berlin",
            "America/St_Johns",
            "Australia/Lord_Howe",
            "Asia/Kathmandu",
        ];
        for tz in zones {
            let c = clock(tz, "08:00-18:00", &WEEK);
            let zone = parse_zone(tz).unwrap();
            let check = |secs: u64| {
                let utc = DateTime::<Utc>::from_timestamp(secs as i64, 0).unwrap();
                let offset = match zone {
                    Zone::Fixed(s) => s,
                    Zone::Named(tz) => tz
                        .offset_from_utc_datetime(&utc.naive_utc())
                        .fix()
                        .local_minus_utc(),
                };
                let local = utc.naive_utc() + chrono::TimeDelta::seconds(i64::from(offset));
                let got = c.local(secs * NS);
                let want = (local.hour() * 60 + local.minute()) as u16;
                assert_eq!(got.minute_of_day, want, "{tz} {utc}");
                assert_eq!(got.weekday, local.weekday(), "{tz} {utc}");
            };
            // The first day after the epoch: local time before 1970 west of UTC.
            for secs in (0..2 * 86_400).step_by(1_799) {
                check(secs);
            }
            // Steps of 7 min 13 s over most of a year with its transitions, and every fifth
            // probe three days back, so the offset cache is missed too.
            let (mut secs, end) = (ts(2024, 3, 20, 0, 0) / NS, ts(2024, 11, 20, 0, 0) / NS);
            let mut step = 0u64;
            while secs < end {
                step += 1;
                check(if step.is_multiple_of(5) {
                    secs - 86_400 * 3
                } else {
                    secs
                });
                secs += 433;
            }
        }
    }

    #[test]
    fn errors_name_the_bad_value() {
        let bad = |tz: &str, hours: &str, day: &str| {
            BusinessClock::new(&ClockConfig {
                timezone: tz.into(),
                hours: hours.into(),
                workdays: vec![day.into()],
            })
            .unwrap_err()
            .to_string()
        };
        let e = bad("Europe/Berlyn", "08:00-18:00", "Mon");
        assert!(e.contains("timezone") && e.contains("Europe/Berlyn"), "{e}");
        let e = bad("+25:00", "08:00-18:00", "Mon");
        assert!(e.contains("+25:00"), "{e}");
        let e = bad("UTC", "8-18", "Mon");
        assert!(e.contains("hours") && e.contains("8-18"), "{e}");
        let e = bad("UTC", "08:00-18:60", "Mon");
        assert!(e.contains("08:00-18:60"), "{e}");
        let e = bad("UTC", "09:00-09:00", "Mon");
        assert!(e.contains("09:00-09:00"), "{e}");
        let e = bad("UTC", "08:00-18:00", "Funday");
        assert!(e.contains("workdays") && e.contains("Funday"), "{e}");
    }
}
