//! Cron schedules (five fields, minute precision) for schedule triggers, evaluated in any time zone.
//!
//! A schedule is `"minute hour day-of-month month day-of-week"`, each field `*`, a number, a name
//! (`jan`..`dec`, `sun`..`sat`), a range (`1-5`, `mon-fri`), a step (`*/15`, `0-30/10`, `5/20`) or a
//! comma list of those; or one of the macros `@hourly`, `@daily`, `@weekly`, `@monthly` (and
//! `@yearly`, `@annually`, `@midnight`). Day of week runs 0-7, 0 and 7 both Sunday.
//!
//! Day of month and day of week combine as in Vixie cron: when both fields are restricted (neither
//! starts with `*`) a day matches if it matches either; otherwise it must match both (and a `*`
//! field matches every day). This module only computes times; it never reads a clock.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How far ahead [`Cron::next_after`] looks.
const HORIZON_DAYS: i64 = 366;

/// A parsed cron schedule. Equality compares the text as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cron {
    source: String,
    /// Bit `n` set: minute `n` matches (0-59).
    minutes: u64,
    /// Bit `n` set: hour `n` matches (0-23).
    hours: u32,
    /// Bit `n` set: day of month `n` matches (1-31).
    days: u32,
    /// Bit `n` set: month `n` matches (1-12).
    months: u16,
    /// Bit `n` set: weekday `n` matches, Sunday = 0 (0-6).
    weekdays: u8,
    /// The day-of-month field starts with `*`.
    days_star: bool,
    /// The day-of-week field starts with `*`.
    weekdays_star: bool,
}

/// Why a string is not a cron schedule; the message names the field and says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    pub message: String,
}

impl CronError {
    fn new(message: String) -> Self {
        CronError { message }
    }
}

/// One of the five fields, for parsing and messages.
struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    /// Names for values, lower case, the first for `min`.
    names: &'static [&'static str],
    allowed: &'static str,
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allowed: "0-59",
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allowed: "0-23",
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allowed: "1-31",
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    allowed: "1-12 or jan-dec",
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    allowed: "0-7 (0 and 7 are Sunday) or sun-sat",
};

const SYNTAX: &str =
    "*, a number, a range like 1-5, a step like */15 or 0-30/10, or a list like 1,3,5";
const SHAPE: &str =
    "a cron schedule has five fields, \"minute hour day-of-month month day-of-week\", \
                     like \"0 9 * * mon-fri\", or is one of @hourly, @daily, @weekly, @monthly, @yearly";

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let text = s.trim();
        let expanded = if let Some(name) = text.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "hourly" => "0 * * * *",
                "daily" | "midnight" => "0 0 * * *",
                "weekly" => "0 0 * * 0",
                "monthly" => "0 0 1 * *",
                "yearly" | "annually" => "0 0 1 1 *",
                _ => {
                    return Err(CronError::new(format!(
                        "\"{s}\" is not a cron schedule: the macros are @hourly, @daily (also @midnight), \
                         @weekly, @monthly and @yearly (also @annually); otherwise write five fields, like \"0 9 * * mon-fri\""
                    )))
                }
            }
        } else {
            text
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            let n = fields.len();
            let hint = if n == 6 {
                " (seconds and years are not supported: schedules have minute precision)"
            } else {
                ""
            };
            let what = if n == 0 {
                "is empty".to_string()
            } else {
                format!("has {n} field{}", plural(n))
            };
            return Err(CronError::new(format!("\"{s}\" {what}{hint}: {SHAPE}")));
        };
        let err = |e: String| CronError::new(format!("\"{s}\": {e}"));
        let minutes = parse_field(minute, &MINUTE).map_err(err)?;
        let hours = parse_field(hour, &HOUR).map_err(err)?;
        let days = parse_field(day, &DAY).map_err(err)?;
        let months = parse_field(month, &MONTH).map_err(err)?;
        let weekdays = parse_field(weekday, &WEEKDAY).map_err(err)?;
        // Sunday is both 0 and 7.
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        let cron = Cron {
            source: s.to_string(),
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days: u32::try_from(days).unwrap_or(0),
            months: u16::try_from(months).unwrap_or(0),
            weekdays: u8::try_from(weekdays).unwrap_or(0),
            days_star: day.starts_with('*'),
            weekdays_star: weekday.starts_with('*'),
        };
        cron.check_fires(s)?;
        Ok(cron)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Parses one field into a bit set of its values.
fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        set |= parse_item(item, field).map_err(|problem| {
            let (name, allowed) = (field.name, field.allowed);
            format!(
                "the {name} field \"{text}\": {problem}; it allows {allowed}, written as {SYNTAX}"
            )
        })?;
    }
    Ok(set)
}

/// Parses one comma-separated item: `*`, `n`, `a-b`, each optionally with `/step`.
fn parse_item(item: &str, field: &Field) -> Result<u64, String> {
    if item.is_empty() {
        return Err("a list item is empty".to_string());
    }
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u8 = step
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("the step \"{step}\" is not a whole number from 1"))?;
            (range, Some(step))
        }
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (field.min, field.max)
    } else if let Some((a, b)) = range.split_once('-') {
        if a.is_empty() || b.is_empty() {
            return Err(format!("the range \"{range}\" is missing a number"));
        }
        let lo = parse_value(a, field)?;
        let hi = parse_value(b, field)?;
        if lo > hi {
            let (min, max) = (field.min, field.max);
            return Err(format!(
                "the range \"{range}\" goes from high to low: write ranges low to high, \
                 like \"{a}-{max},{min}-{b}\""
            ));
        }
        (lo, hi)
    } else {
        let v = parse_value(range, field)?;
        // "5/15" counts from 5 to the end of the range.
        if step.is_some() {
            (v, field.max)
        } else {
            (v, v)
        }
    };
    let step = step.unwrap_or(1);
    let mut set = 0u64;
    let mut v = lo;
    while v <= hi {
        set |= 1 << v;
        match v.checked_add(step) {
            Some(next) => v = next,
            None => break,
        }
    }
    Ok(set)
}

/// A number or a name, in range.
fn parse_value(text: &str, field: &Field) -> Result<u8, String> {
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        return u8::try_from(i)
            .map(|i| i + field.min)
            .map_err(|_| format!("\"{text}\" is not allowed"));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let or_name = if field.names.is_empty() {
            ""
        } else {
            " or a name"
        };
        return Err(format!("\"{text}\" is not a number{or_name}"));
    }
    match text.parse::<u8>() {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        _ => Err(format!("{text} is out of range")),
    }
}

/// The largest day each month can have, leap years included.
const MONTH_DAYS: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl Cron {
    /// Rejects schedules that can never fire, like the 30th of February.
    fn check_fires(&self, s: &str) -> Result<(), CronError> {
        if !self.days_star && !self.weekdays_star {
            // Either field may match; day of week always eventually does.
            return Ok(());
        }
        let fires = (1..=12u8).any(|m| {
            self.months & (1 << m) != 0
                && (1..=MONTH_DAYS[usize::from(m - 1)]).any(|d| self.days & (1 << d) != 0)
        });
        if fires {
            Ok(())
        } else {
            Err(CronError::new(format!(
                "\"{s}\" never fires: none of the months in the month field has any of the days in the \
                 day-of-month field (February has at most 29 days; April, June, September and November 30)"
            )))
        }
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn month_matches(&self, month: i8) -> bool {
        self.months & (1 << month) != 0
    }

    /// Whether the schedule fires in the minute of local time `t` (seconds are ignored).
    pub fn matches(&self, t: DateTime) -> bool {
        self.month_matches(t.month())
            && self.day_matches(t.date())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
    }

    /// Whether the schedule fires at the minute `at` in zone `tz`: its local time matches, and
    /// is not the second pass of a local time the night the clocks go back (a DST fold fires
    /// once, at the earlier instant, as [`Cron::next_after`] says).
    pub fn fires_at(&self, at: Timestamp, tz: &TimeZone) -> bool {
        let local = tz.to_datetime(at);
        if !self.matches(local) {
            return false;
        }
        let minute = |t: Timestamp| t.as_second().div_euclid(60);
        tz.to_ambiguous_timestamp(local)
            .earlier()
            .is_ok_and(|first| minute(first) == minute(at))
    }

    /// The first instant strictly after `after` whose local time in `tz` matches; `None` if there is
    /// none within 366 days. A local time that doesn't exist (a DST gap) is skipped; a local time
    /// that happens twice (a DST fold) fires once, at the earlier instant.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let horizon = after
            .checked_add(SignedDuration::from_hours(HORIZON_DAYS * 24))
            .ok()?;
        // A day of slack: the local date at the horizon, whatever the offsets in between.
        let last_date = tz.to_datetime(horizon).date().tomorrow().ok()?;
        // Local time maps to instants monotonically once gaps are skipped and folds take the
        // earlier instant, so the first match whose instant is after `after` is the answer. The
        // current local minute (or any before it) maps to an instant at or before `after`.
        let start = tz.to_datetime(after);
        let mut cursor = next_minute(start.date(), start.hour(), start.minute())?;
        loop {
            let local = self.next_local_match(cursor, last_date)?;
            let ambiguous = tz.to_ambiguous_timestamp(local);
            if !matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
                let at = ambiguous.earlier().ok()?;
                if at > horizon {
                    return None;
                }
                if at > after {
                    return Some(at);
                }
            }
            cursor = next_minute(local.date(), local.hour(), local.minute())?;
        }
    }

    /// Whether the schedule fires in `tz` after `at` and at or before `by`: a run at `at` that
    /// starts at `by` (a scheduler catching up) is not its latest.
    pub fn fires_again_by(&self, at: Timestamp, by: Timestamp, tz: &TimeZone) -> bool {
        by > at && self.next_after(at, tz).is_some_and(|next| next <= by)
    }

    /// The latest minute at or before `at` at which the schedule fires in `tz` (a minute
    /// [`Cron::fires_at`] holds for: a local time the clocks skip never, one they pass twice at
    /// its first pass); `None` if there is none within the 366 days before. A schedule's last
    /// run, as the user's view tells it.
    pub fn last_at_or_before(&self, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let at = Timestamp::from_second(at.as_second().div_euclid(60) * 60).ok()?;
        // A day of slack: the local date at `at`, whatever the offsets in between.
        let mut date = tz.to_datetime(at).date().tomorrow().ok()?;
        for _ in 0..=HORIZON_DAYS + 2 {
            if self.month_matches(date.month()) && self.day_matches(date) {
                // Local times map to instants in order once gaps are skipped and folds take
                // their first pass: the day's first match at or before `at`, from the day's
                // end, is the latest.
                for hour in (0..24i8).rev().filter(|h| self.hours & (1 << h) != 0) {
                    for minute in (0..60i8).rev().filter(|m| self.minutes & (1 << m) != 0) {
                        let ambiguous = tz.to_ambiguous_timestamp(date.at(hour, minute, 0, 0));
                        if matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
                            continue;
                        }
                        match ambiguous.earlier() {
                            Ok(t) if t <= at => return Some(t),
                            _ => {}
                        }
                    }
                }
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    /// The first local minute at or after `from` that matches, jumping over months, days and hours
    /// that cannot; `None` past `last`.
    fn next_local_match(&self, from: DateTime, last: Date) -> Option<DateTime> {
        let (mut date, mut hour, mut minute) = (from.date(), from.hour(), from.minute());
        loop {
            if date > last {
                return None;
            }
            if !self.month_matches(date.month()) {
                date = first_of_next_month(date)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.tomorrow().ok()?;
                (hour, minute) = (0, 0);
                continue;
            }
            match next_bit(u64::from(self.hours), hour) {
                None => {
                    date = date.tomorrow().ok()?;
                    (hour, minute) = (0, 0);
                    continue;
                }
                Some(h) if h != hour => (hour, minute) = (h, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, minute) {
                Some(m) => return Some(date.at(hour, m, 0, 0)),
                None => {
                    let next = next_minute(date, hour, 59)?;
                    (date, hour, minute) = (next.date(), next.hour(), next.minute());
                }
            }
        }
    }
}

/// The lowest set bit of `set` at or above `from`.
fn next_bit(set: u64, from: i8) -> Option<i8> {
    let from = u32::try_from(from).ok()?;
    let rest = set.checked_shr(from)?;
    if rest == 0 {
        return None;
    }
    i8::try_from(from + rest.trailing_zeros()).ok()
}

/// The local minute after `hour:minute` on `date`.
fn next_minute(date: Date, hour: i8, minute: i8) -> Option<DateTime> {
    if minute < 59 {
        Some(date.at(hour, minute + 1, 0, 0))
    } else if hour < 23 {
        Some(date.at(hour + 1, 0, 0, 0))
    } else {
        Some(date.tomorrow().ok()?.at(0, 0, 0, 0))
    }
}

fn first_of_next_month(date: Date) -> Option<Date> {
    let (year, month) = if date.month() == 12 {
        (date.year().checked_add(1)?, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    Date::new(year, month, 1).ok()
}

impl fmt::Display for Cron {
    /// The schedule as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Cron {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Cron;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cron schedule like \"0 9 * * mon-fri\" or \"@daily\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cron, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for Cron {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cron".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A cron schedule, read in the schedule's `timezone` (UTC when it names \
                            none, whatever the journey's `timezone`): five fields, \"minute hour \
                            day-of-month month day-of-week\", each *, a number, a name (jan-dec, sun-sat), \
                            a range (1-5), a step (*/15) or a list (1,3,5); or @hourly, @daily (also \
                            @midnight), @weekly, @monthly, @yearly (also @annually).",
            "examples": ["0 9 * * mon-fri", "*/15 * * * *", "@daily"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn cron(s: &str) -> Cron {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// The last run before a time: across a month, and on the nights the clocks change (a
    /// skipped local time never ran; a doubled one ran at its first pass).
    #[test]
    fn the_last_run_is_the_latest_minute_the_schedule_fired() {
        let paris = tz("Europe/Paris");
        let c = cron("0 9 * * mon");
        // Thursday 3 December 2026, 10:00 in Paris: Monday 30 November at 09:00 (08:00Z).
        assert_eq!(
            c.last_at_or_before(ts("2026-12-03T09:00:00Z"), &paris),
            Some(ts("2026-11-30T08:00:00Z"))
        );
        // At the minute itself, seconds in: that run.
        assert_eq!(
            c.last_at_or_before(ts("2026-11-30T08:00:30Z"), &paris),
            Some(ts("2026-11-30T08:00:00Z"))
        );
        assert_eq!(
            c.last_at_or_before(ts("2026-11-30T07:59:59Z"), &paris),
            Some(ts("2026-11-23T08:00:00Z"))
        );
        // 02:30 on 29 March 2026 does not happen in Paris: the run before is the 28th's.
        assert_eq!(
            cron("30 2 * * *").last_at_or_before(ts("2026-03-29T12:00:00Z"), &paris),
            Some(ts("2026-03-28T01:30:00Z"))
        );
        // 01:30 on 1 November 2026 in New York happens twice: it ran at the first (05:30Z).
        let ny = tz("America/New_York");
        assert_eq!(
            cron("30 1 * * *").last_at_or_before(ts("2026-11-01T06:45:00Z"), &ny),
            Some(ts("2026-11-01T05:30:00Z"))
        );
        // The 30th of February never comes.
        let feb = "0 0 30 2 *".parse::<Cron>();
        assert!(feb.is_err());
        assert_eq!(
            cron("0 0 29 2 *").last_at_or_before(ts("2027-03-01T00:00:00Z"), &TimeZone::UTC),
            None,
            "no 29 February within the year before"
        );
    }

    #[test]
    fn a_local_time_that_happens_twice_fires_once() {
        // 2027-11-07, New York: 01:30 EDT (05:30Z), then again 01:30 EST (06:30Z).
        let c = cron("30 1 * * sun");
        let ny = tz("America/New_York");
        assert!(c.fires_at(ts("2027-11-07T05:30:00Z"), &ny));
        assert!(c.fires_at(ts("2027-11-07T05:30:59Z"), &ny));
        assert!(!c.fires_at(ts("2027-11-07T06:30:00Z"), &ny));
        assert!(
            c.fires_at(ts("2027-11-14T06:30:00Z"), &ny),
            "a week later, EST"
        );
        assert!(!c.fires_at(ts("2027-11-07T05:31:00Z"), &ny));
    }

    /// Every matching minute in the 366 days from `from`, by brute force.
    fn brute_next(c: &Cron, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let mut t = Timestamp::from_second(after.as_second().div_euclid(60) * 60 + 60).unwrap();
        let horizon = after
            .checked_add(SignedDuration::from_hours(366 * 24))
            .unwrap();
        while t <= horizon {
            let local = tz.to_datetime(t);
            // In a fold, fire only at the earlier of the two instants.
            if c.matches(local) && tz.to_ambiguous_timestamp(local).earlier().unwrap() == t {
                return Some(t);
            }
            t = t.checked_add(SignedDuration::from_mins(1)).unwrap();
        }
        None
    }

    #[test]
    fn parses_fields() {
        // (schedule, minutes, hours, days, months, weekdays)
        let all_min = (1u64 << 60) - 1;
        let cases: &[(&str, u64, u32, u32, u16, u8)] = &[
            (
                "* * * * *",
                all_min,
                (1 << 24) - 1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                0x7f,
            ),
            (
                "*/15 * * * *",
                1 | 1 << 15 | 1 << 30 | 1 << 45,
                (1 << 24) - 1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                0x7f,
            ),
            (
                "0 9 * * mon-fri",
                1,
                1 << 9,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                0b0111110,
            ),
            (
                "0,30 8-10 1,15 jan,JUL 0",
                1 | 1 << 30,
                0b111 << 8,
                1 << 1 | 1 << 15,
                1 << 1 | 1 << 7,
                1,
            ),
            (
                "5/20 0-6/3 */10 feb-apr 7",
                1 << 5 | 1 << 25 | 1 << 45,
                1 | 1 << 3 | 1 << 6,
                1 << 1 | 1 << 11 | 1 << 21 | 1 << 31,
                0b11100,
                1,
            ),
            (
                "59 23 31 12 5-7",
                1 << 59,
                1 << 23,
                1 << 31,
                1 << 12,
                1 | 1 << 5 | 1 << 6,
            ),
            (
                "0 0 * * sun,sat",
                1,
                1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                1 | 1 << 6,
            ),
            (
                "@hourly",
                1,
                (1 << 24) - 1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                0x7f,
            ),
            (
                "@daily",
                1,
                1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                0x7f,
            ),
            (
                "@weekly",
                1,
                1,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                1,
            ),
            ("@monthly", 1, 1, 1 << 1, ((1u16 << 12) - 1) << 1, 0x7f),
            ("@YEARLY", 1, 1, 1 << 1, 1 << 1, 0x7f),
            (
                "  0   9 *\t* 1  ",
                1,
                1 << 9,
                ((1u32 << 31) - 1) << 1,
                ((1u16 << 12) - 1) << 1,
                1 << 1,
            ),
        ];
        for &(text, minutes, hours, days, months, weekdays) in cases {
            let c = cron(text);
            assert_eq!(c.minutes, minutes, "{text} minutes");
            assert_eq!(c.hours, hours, "{text} hours");
            assert_eq!(c.days, days, "{text} days");
            assert_eq!(c.months, months, "{text} months");
            assert_eq!(c.weekdays, weekdays, "{text} weekdays");
        }
    }

    #[test]
    fn rejects_with_the_field_and_what_it_allows() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["is empty", "five fields"]),
            ("0 9 * *", &["has 4 fields", "five fields"]),
            (
                "0 0 9 * * *",
                &["has 6 fields", "seconds and years are not supported"],
            ),
            (
                "60 * * * *",
                &["minute field \"60\"", "out of range", "0-59"],
            ),
            ("0 24 * * *", &["hour field \"24\"", "0-23"]),
            ("0 0 0 * *", &["day-of-month field \"0\"", "1-31"]),
            ("0 0 32 * *", &["day-of-month", "1-31"]),
            ("0 0 * 13 *", &["month field \"13\"", "1-12 or jan-dec"]),
            (
                "0 0 * * 8",
                &[
                    "day-of-week field \"8\"",
                    "0-7 (0 and 7 are Sunday) or sun-sat",
                ],
            ),
            (
                "0 0 * * monday",
                &["day-of-week", "\"monday\" is not a number or a name"],
            ),
            (
                "0 0 * january *",
                &["month field", "not a number or a name"],
            ),
            ("x * * * *", &["minute field \"x\"", "not a number", "*/15"]),
            (
                "*/0 * * * *",
                &["minute", "step \"0\" is not a whole number from 1"],
            ),
            ("*/x * * * *", &["minute", "step \"x\""]),
            (
                "1,,2 * * * *",
                &["minute field \"1,,2\"", "a list item is empty"],
            ),
            (
                "0 22-2 * * *",
                &[
                    "hour field \"22-2\": the range \"22-2\" goes from high to low",
                    "\"22-23,0-2\"",
                ],
            ),
            ("0 0 * * fri-mon", &["day-of-week", "\"fri-7,0-mon\""]),
            ("5- * * * *", &["minute", "is missing a number"]),
            ("-5 * * * *", &["minute", "is missing a number"]),
            ("0 0 * * mon-", &["day-of-week", "is missing a number"]),
            ("1-2-3 * * * *", &["minute", "not a number"]),
            (
                "@reboot",
                &["@hourly, @daily (also @midnight), @weekly, @monthly and @yearly (also @annually)"],
            ),
            ("@", &["@hourly"]),
            ("0 0 30 2 *", &["never fires", "February"]),
            ("0 0 31 4,6,9,11 *", &["never fires"]),
            ("0 0 -1 * *", &["day-of-month", "is missing a number"]),
            ("0 0 1.5 * *", &["day-of-month", "not a number"]),
            ("0 0 * * 1/", &["day-of-week", "the step \"\""]),
            ("999999999999 * * * *", &["minute", "out of range"]),
        ];
        for &(text, fragments) in cases {
            let err = text.parse::<Cron>().expect_err(text);
            for fragment in fragments {
                assert!(
                    err.message.contains(fragment),
                    "{text:?}: {:?} lacks {fragment:?}",
                    err.message
                );
            }
        }
    }

    #[test]
    fn matches_local_minutes() {
        // (schedule, local time, matches)
        let cases: &[(&str, DateTime, bool)] = &[
            ("0 9 * * mon-fri", date(2026, 3, 2).at(9, 0, 0, 0), true), // Monday
            ("0 9 * * mon-fri", date(2026, 3, 2).at(9, 0, 59, 999), true), // seconds ignored
            ("0 9 * * mon-fri", date(2026, 3, 2).at(9, 1, 0, 0), false),
            ("0 9 * * mon-fri", date(2026, 3, 7).at(9, 0, 0, 0), false), // Saturday
            ("*/15 * * * *", date(2026, 1, 1).at(13, 45, 0, 0), true),
            ("*/15 * * * *", date(2026, 1, 1).at(13, 46, 0, 0), false),
            ("0 0 * * 7", date(2026, 3, 1).at(0, 0, 0, 0), true), // Sunday as 7
            ("0 0 * * 0", date(2026, 3, 1).at(0, 0, 0, 0), true), // Sunday as 0
            ("0 0 * dec *", date(2026, 12, 25).at(0, 0, 0, 0), true),
            ("0 0 * dec *", date(2026, 11, 25).at(0, 0, 0, 0), false),
            // Both day fields restricted: either matches.
            ("0 0 13 * fri", date(2026, 3, 13).at(0, 0, 0, 0), true), // Friday the 13th
            ("0 0 13 * fri", date(2026, 3, 6).at(0, 0, 0, 0), true),  // a Friday
            ("0 0 13 * fri", date(2026, 4, 13).at(0, 0, 0, 0), true), // a Monday, the 13th
            ("0 0 13 * fri", date(2026, 4, 14).at(0, 0, 0, 0), false),
            // One day field is `*`-based: both must match.
            ("0 0 * * fri", date(2026, 4, 13).at(0, 0, 0, 0), false),
            ("0 0 13 * *", date(2026, 3, 6).at(0, 0, 0, 0), false),
            ("0 0 */2 * fri", date(2026, 3, 13).at(0, 0, 0, 0), true), // odd day and Friday
            ("0 0 */2 * fri", date(2026, 3, 6).at(0, 0, 0, 0), false), // even day
            ("0 0 */2 * fri", date(2026, 3, 7).at(0, 0, 0, 0), false), // odd day, Saturday
            ("@monthly", date(2026, 2, 1).at(0, 0, 0, 0), true),
            ("@monthly", date(2026, 2, 2).at(0, 0, 0, 0), false),
            ("@weekly", date(2026, 3, 1).at(0, 0, 0, 0), true),
            ("@hourly", date(2026, 3, 1).at(17, 0, 0, 0), true),
            ("@hourly", date(2026, 3, 1).at(17, 30, 0, 0), false),
            ("0 0 29 2 *", date(2028, 2, 29).at(0, 0, 0, 0), true),
        ];
        for &(text, t, want) in cases {
            assert_eq!(cron(text).matches(t), want, "{text} at {t}");
        }
    }

    #[test]
    fn next_after_in_time_zones() {
        // (schedule, time zone, after, next)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "*/15 * * * *",
                "UTC",
                "2026-01-01T10:07:00Z",
                Some("2026-01-01T10:15:00Z"),
            ),
            (
                "*/15 * * * *",
                "UTC",
                "2026-01-01T10:15:00Z",
                Some("2026-01-01T10:30:00Z"),
            ), // strictly after
            (
                "*/15 * * * *",
                "UTC",
                "2026-01-01T10:14:59.999Z",
                Some("2026-01-01T10:15:00Z"),
            ),
            (
                "*/15 * * * *",
                "UTC",
                "2026-01-01T23:59:00Z",
                Some("2026-01-02T00:00:00Z"),
            ),
            (
                "* * * * *",
                "UTC",
                "2026-01-01T10:15:30Z",
                Some("2026-01-01T10:16:00Z"),
            ),
            (
                "0 9 * * mon-fri",
                "Europe/Paris",
                "2026-01-02T09:00:00+01:00",
                Some("2026-01-05T08:00:00Z"),
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2026-06-01T12:00:00Z",
                Some("2026-06-01T13:00:00Z"),
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2026-06-01T14:00:00Z",
                Some("2026-06-02T13:00:00Z"),
            ),
            (
                "@yearly",
                "UTC",
                "2026-01-01T00:00:00Z",
                Some("2027-01-01T00:00:00Z"),
            ),
            (
                "@monthly",
                "Asia/Tokyo",
                "2026-01-31T15:00:00Z",
                Some("2026-02-28T15:00:00Z"),
            ),
            (
                "0 0 31 * *",
                "UTC",
                "2026-01-31T00:00:00Z",
                Some("2026-03-31T00:00:00Z"),
            ),
            ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", None), // next in 2028
            (
                "0 0 29 2 *",
                "UTC",
                "2027-03-01T00:00:00Z",
                Some("2028-02-29T00:00:00Z"),
            ),
            (
                "0 0 13 * fri",
                "UTC",
                "2026-03-10T00:00:00Z",
                Some("2026-03-13T00:00:00Z"),
            ),
            (
                "30 5 * * *",
                "Asia/Kolkata",
                "2026-05-01T00:00:00Z",
                Some("2026-05-02T00:00:00Z"),
            ),
            (
                "0 0 1 1 *",
                "Pacific/Kiritimati",
                "2026-06-01T00:00:00Z",
                Some("2026-12-31T10:00:00Z"),
            ),
            // DST gap in New York, 2026-03-08 02:00 -> 03:00: 02:30 doesn't exist that day.
            (
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                Some("2026-03-09T06:30:00Z"),
            ),
            (
                "30 2 8 3 *",
                "America/New_York",
                "2026-03-01T00:00:00Z",
                None,
            ), // 2027-03-08 is past a year
            (
                "*/30 * * * *",
                "America/New_York",
                "2026-03-08T06:45:00Z",
                Some("2026-03-08T07:00:00Z"),
            ), // 01:45 EST -> 03:00 EDT
            // DST fold in New York, 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 fires once, in EDT.
            (
                "30 1 * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                Some("2026-11-01T05:30:00Z"),
            ),
            (
                "30 1 * * *",
                "America/New_York",
                "2026-11-01T05:30:00Z",
                Some("2026-11-02T06:30:00Z"),
            ),
            (
                "*/20 * * * *",
                "America/New_York",
                "2026-11-01T05:50:00Z",
                Some("2026-11-01T07:00:00Z"),
            ), // 01:50 EDT -> 02:00 EST
            (
                "*/20 * * * *",
                "America/New_York",
                "2026-11-01T06:10:00Z",
                Some("2026-11-01T07:00:00Z"),
            ), // 01:10 EST
            // Lord Howe goes back half an hour on 2026-04-05 at 02:00 (+11 -> +10:30).
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T12:00:00Z",
                Some("2026-04-04T14:45:00Z"),
            ),
            (
                "45 1 * * *",
                "Australia/Lord_Howe",
                "2026-04-04T14:45:00Z",
                Some("2026-04-05T15:15:00Z"),
            ),
            // Samoa skipped 2011-12-30 entirely (-10 -> +14).
            (
                "0 12 * * *",
                "Pacific/Apia",
                "2011-12-29T20:00:00Z",
                Some("2011-12-29T22:00:00Z"),
            ),
            (
                "0 12 * * *",
                "Pacific/Apia",
                "2011-12-29T22:00:00Z",
                Some("2011-12-30T22:00:00Z"),
            ),
            ("0 12 30 12 *", "Pacific/Apia", "2011-12-29T00:00:00Z", None),
        ];
        for &(text, zone, after, want) in cases {
            let got = cron(text).next_after(ts(after), &tz(zone));
            assert_eq!(got, want.map(ts), "{text} in {zone} after {after}");
        }
    }

    #[test]
    fn next_after_agrees_with_brute_force() {
        let schedules = [
            "*/7 * * * *",
            "30 1,2,3 * * *",
            "0 2 * * sun",
            "15 0-3 1,8 mar,nov *",
            "59 23 * * *",
            "0 0 13 * fri",
            "0 12 */3 * mon",
            "45 1 * 3,4,10,11 *",
        ];
        let zones = [
            "UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "America/Sao_Paulo",
        ];
        let starts = [
            "2026-03-08T05:55:00Z",
            "2026-03-29T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-11-01T05:20:00Z",
            "2026-11-01T06:20:00Z",
            "2026-04-04T14:40:00Z",
            "2026-10-03T15:50:00Z",
        ];
        for s in schedules {
            let c = cron(s);
            for z in zones {
                let tz = tz(z);
                for start in starts {
                    // Follow a few firings, each from the last.
                    let mut after = ts(start);
                    for _ in 0..3 {
                        let want = brute_next(&c, after, &tz);
                        let got = c.next_after(after, &tz);
                        assert_eq!(got, want, "{s} in {z} after {after}");
                        match got {
                            Some(t) => after = t,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn next_after_is_none_past_a_year_and_at_the_end_of_time() {
        let leap = cron("0 0 29 2 *");
        assert_eq!(
            leap.next_after(ts("2028-03-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
        assert_eq!(
            cron("* * * * *").next_after(Timestamp::MAX, &TimeZone::UTC),
            None
        );
        assert!(cron("* * * * *")
            .next_after(Timestamp::MIN, &TimeZone::UTC)
            .is_some());
    }

    #[test]
    fn displays_and_serializes_as_written() {
        let c = cron("0 9 * * MON-FRI");
        assert_eq!(c.to_string(), "0 9 * * MON-FRI");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"0 9 * * MON-FRI\"");
        let back: Cron = serde_json::from_str("\"0 9 * * MON-FRI\"").unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<Cron>("\"0 25 * * *\"").unwrap_err();
        assert!(err.to_string().contains("hour field \"25\""), "{err}");
        let err = serde_json::from_str::<Cron>("5").unwrap_err();
        assert!(err.to_string().contains("a cron schedule like"), "{err}");
        let schema = schemars::schema_for!(Cron);
        assert_eq!(schema.as_value()["type"], "string");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<Cron>();
        }

        #[test]
        fn parse_never_panics_on_cron_like_text(s in "[0-9*/,\\- a-z@]{0,30}") {
            if let Err(e) = s.parse::<Cron>() {
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn the_last_run_fires_and_the_next_comes_after(
            m in "(\\*|\\*/[1-9]|[0-5]?[0-9])",
            h in "(\\*|\\*/[1-5]|1?[0-9]|2[0-3])",
            dom in "(\\*|[1-9]|1[0-9]|2[0-8])",
            dow in "(\\*|[0-7]|mon-fri)",
            secs in 1_700_000_000i64..1_900_000_000,
            zone in prop::sample::select(
                vec!["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata"],
            ),
        ) {
            let c: Cron = format!("{m} {h} {dom} * {dow}").parse().unwrap();
            let tz = tz(zone);
            let at = Timestamp::from_second(secs).unwrap();
            let last = c.last_at_or_before(at, &tz);
            let last = last.expect("a schedule on days 1-28 fired within a year");
            prop_assert!(last <= at);
            prop_assert!(c.fires_at(last, &tz), "{last} in {zone}");
            // Nothing fired between it and `at`: the next run after it is after `at`.
            let next = c.next_after(last, &tz).expect("a next run");
            prop_assert!(next > at, "{last} then {next}, at {at} in {zone}");
        }

        #[test]
        fn next_after_matches_and_is_later(
            m in "(\\*|\\*/[1-9]|[0-5]?[0-9])",
            h in "(\\*|\\*/[1-5]|1?[0-9]|2[0-3])",
            dom in "(\\*|[1-9]|1[0-9]|2[0-8])",
            dow in "(\\*|[0-7]|mon-fri)",
            secs in 1_700_000_000i64..1_900_000_000,
            zone in prop::sample::select(
                vec!["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata"],
            ),
        ) {
            let c: Cron = format!("{m} {h} {dom} * {dow}").parse().unwrap();
            let tz = tz(zone);
            let after = Timestamp::from_second(secs).unwrap();
            let next = c.next_after(after, &tz);
            let next = next.expect("a schedule on days 1-28 fires within a year");
            prop_assert!(next > after);
            prop_assert!(c.matches(tz.to_datetime(next)));
        }
    }
}
