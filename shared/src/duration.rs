//! Durations as journey files write them: "90s", "30m", "4h", "14d", "2w", "1h30m".
//!
//! A duration is a whole number of seconds, from one second to a year (366 days). It is written as
//! one or more components, largest unit first, each a whole number and a unit: `w` (weeks), `d`
//! (days), `h` (hours), `m` (minutes) or `s` (seconds). Months and years are not units: their
//! length varies. Parsing never panics; a bad duration gets a message saying what to write instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The units, largest first, with their length in seconds.
const UNITS: [(char, u64); 5] = [
    ('w', 604_800),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// The length of a day, `d`, in seconds.
const DAY_SECS: u64 = 86_400;
/// The shortest duration, one second.
const MIN_SECS: u64 = 1;
/// The longest duration, a (leap) year of 366 days.
const MAX_SECS: u64 = 366 * 86_400;

/// The examples every generic error message ends with.
const EXAMPLES: &str = "write it like \"30m\", \"4h\" or \"14d\"";

/// A length of time between one second and 366 days, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    secs: u64,
}

impl Duration {
    /// The shortest duration a journey file can write, `"1s"`.
    pub const MIN: Duration = Duration { secs: MIN_SECS };
    /// The longest duration a journey file can write, `"366d"`.
    pub const MAX: Duration = Duration { secs: MAX_SECS };

    /// A duration of `s` seconds. Not range-checked: that is for parsing journey files.
    pub const fn from_secs(s: u64) -> Self {
        Duration { secs: s }
    }

    pub const fn as_secs(&self) -> u64 {
        self.secs
    }

    /// The same length of time as a jiff duration, for timestamp arithmetic.
    pub fn to_jiff(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(i64::try_from(self.secs).unwrap_or(i64::MAX))
    }
}

/// Why a string is not a duration; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DurationError {
    pub message: String,
}

impl DurationError {
    fn new(message: String) -> Self {
        DurationError { message }
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, DurationError> {
        match parse_exact(s) {
            Ok(secs) => check_range(s, secs),
            Err(problem) => Err(DurationError::new(explain(s, problem))),
        }
    }
}

/// What is wrong with a string that does not have the duration syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Empty,
    Negative,
    /// Digits at the end with no unit after them.
    NoUnit,
    /// A unit repeated, or a smaller unit before a larger one.
    Order,
    /// Too large to count, even before the range check.
    Overflow,
    /// Anything else.
    Syntax,
}

/// Parses the strict syntax, returning the total number of seconds.
fn parse_exact(s: &str) -> Result<u64, Problem> {
    let (days, exact) = parse_parts(s)?;
    days.checked_add(exact).ok_or(Problem::Overflow)
}

/// Parses the strict syntax, returning the seconds of its weeks and days apart from those of
/// its hours, minutes and seconds.
fn parse_parts(s: &str) -> Result<(u64, u64), Problem> {
    if s.is_empty() {
        return Err(Problem::Empty);
    }
    if s.starts_with('-') {
        return Err(Problem::Negative);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    // The seconds of the weeks and days, then of the hours, minutes and seconds.
    let mut totals: [u64; 2] = [0, 0];
    let mut overflow = false;
    // Index into `UNITS` that the next component's unit must be at or after.
    let mut next_unit = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(Problem::Syntax);
        }
        let digits = &s[start..i];
        let Some(&unit) = bytes.get(i) else {
            return Err(Problem::NoUnit);
        };
        i += 1;
        let Some(idx) = UNITS.iter().position(|&(c, _)| c as u8 == unit) else {
            return Err(Problem::Syntax);
        };
        if idx < next_unit {
            return Err(Problem::Order);
        }
        next_unit = idx + 1;
        let n = digits.parse::<u64>().ok();
        let total = &mut totals[usize::from(UNITS[idx].1 < DAY_SECS)];
        match n
            .and_then(|n| n.checked_mul(UNITS[idx].1))
            .and_then(|v| total.checked_add(v))
        {
            Some(t) => *total = t,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(Problem::Overflow);
    }
    Ok((totals[0], totals[1]))
}

fn check_range(s: &str, secs: u64) -> Result<Duration, DurationError> {
    if secs < MIN_SECS {
        return Err(DurationError::new(format!(
            "\"{s}\" is too short: a duration is at least one second, \"1s\""
        )));
    }
    if secs > MAX_SECS {
        return Err(DurationError::new(format!(
            "\"{s}\" is too long: a duration is at most a year, \"366d\""
        )));
    }
    Ok(Duration { secs })
}

/// What to write for a number `n` given as a duration with no unit.
pub fn no_unit(n: &str) -> String {
    format!("has no unit: write \"{n}s\", \"{n}m\", \"{n}h\" or \"{n}d\" (units: w, d, h, m, s)")
}

/// The message for a string that does not parse, with a concrete suggestion where one is clear.
fn explain(s: &str, problem: Problem) -> String {
    match problem {
        Problem::Empty => format!("a duration can't be empty: {EXAMPLES}"),
        Problem::Negative => {
            format!("\"{s}\" is negative: a duration is at least \"1s\"; {EXAMPLES}")
        }
        Problem::Overflow => {
            format!("\"{s}\" is too long: a duration is at most a year, \"366d\"")
        }
        Problem::NoUnit if s.bytes().all(|b| b.is_ascii_digit()) => {
            format!("\"{s}\" {}", no_unit(s))
        }
        Problem::Order => match suggestion(s) {
            Some(better) => format!(
                "\"{s}\" is not a duration: write each unit once, largest first, like \"{better}\""
            ),
            None => format!(
                "\"{s}\" is not a duration: write each unit once, largest first, like \"1h30m\""
            ),
        },
        // `M` is minutes in no duration syntax Waymark knows, and months in many: not `1m`.
        Problem::NoUnit | Problem::Syntax if has_unit(s, &["m"]) && s.trim().ends_with('M') => {
            format!(
                "\"{s}\" is not a duration: for minutes write a lower-case \"m\"; for months, \
                 which vary in length, write days or weeks, like \"30d\" or \"4w\""
            )
        }
        Problem::NoUnit | Problem::Syntax => match suggestion(s) {
            Some(better) => format!("\"{s}\" is not a duration: write \"{better}\""),
            None if has_unit(s, &["mo", "y", "month", "months", "year", "years"]) => format!(
                "\"{s}\" is not a duration: months and years vary in length; \
                 write days or weeks, like \"30d\" or \"52w\""
            ),
            None if has_unit(s, &["ms"]) => {
                format!("\"{s}\" is not a duration: the shortest duration is one second, \"1s\"")
            }
            None => format!("\"{s}\" is not a duration: {EXAMPLES}"),
        },
    }
}

/// Whether `s` is a number followed by one of `units` (case-insensitive, spaces allowed).
fn has_unit(s: &str, units: &[&str]) -> bool {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let unit = t[digits..].trim().to_ascii_lowercase();
    units.contains(&unit.as_str())
}

/// A canonical spelling of what `s` most likely means, if `s` is a near miss: upper case,
/// spaces, units out of order, or a fraction that comes out to whole seconds ("1.5h").
fn suggestion(s: &str) -> Option<String> {
    let squeezed: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if squeezed.is_empty() {
        return None;
    }
    let secs = parse_exact(&squeezed)
        .ok()
        .or_else(|| parse_any_order(&squeezed))
        .or_else(|| parse_fraction(&squeezed))
        .or_else(|| parse_word(&squeezed))
        .or_else(|| parse_iso(&squeezed))?;
    (MIN_SECS..=MAX_SECS)
        .contains(&secs)
        .then(|| Duration { secs }.to_string())
}

/// An ISO 8601 duration in weeks, days, hours, minutes and seconds ("p1d", "pt30m",
/// "p1dt12h"; lower-cased); months and years, which vary, are not read.
fn parse_iso(s: &str) -> Option<u64> {
    let s = s.strip_prefix('p')?;
    let (date, time) = s.split_once('t').unwrap_or((s, ""));
    let mut total: u64 = 0;
    let mut any = false;
    for (part, units) in [(date, "wd"), (time, "hms")] {
        let mut rest = part;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: u64 = rest.get(..digits)?.parse().ok()?;
            let unit = char::from(*rest.as_bytes().get(digits)?);
            if !units.contains(unit) {
                return None;
            }
            let &(_, unit_secs) = UNITS.iter().find(|&&(c, _)| c == unit)?;
            total = total.checked_add(n.checked_mul(unit_secs)?)?;
            any = true;
            rest = &rest[digits + 1..];
        }
    }
    any.then_some(total)
}

/// A number and a unit spelled as a word: "30mins", "2days", "1hour" (spaces already gone).
fn parse_word(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s.get(..digits)?.parse().ok()?;
    let unit = match &s[digits..] {
        "sec" | "secs" | "second" | "seconds" => 's',
        "min" | "mins" | "minute" | "minutes" => 'm',
        "hr" | "hrs" | "hour" | "hours" => 'h',
        "day" | "days" => 'd',
        "wk" | "wks" | "week" | "weeks" => 'w',
        _ => return None,
    };
    let &(_, unit_secs) = UNITS.iter().find(|&&(c, _)| c == unit)?;
    n.checked_mul(unit_secs)
}

/// Components in any order, each unit at most once: "30m1h".
fn parse_any_order(s: &str) -> Option<u64> {
    let mut seen = [false; UNITS.len()];
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        let unit = rest.as_bytes().get(digits).copied()?;
        let idx = UNITS.iter().position(|&(c, _)| c as u8 == unit)?;
        if std::mem::replace(&mut seen[idx], true) {
            return None;
        }
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

/// One decimal component that comes out to whole seconds: "1.5h" is 5400 seconds.
fn parse_fraction(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let &(_, unit_secs) = UNITS.iter().find(|&&(c, _)| c == unit)?;
    let number = &s[..s.len() - 1];
    let (whole, frac) = number.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scale = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let frac: u64 = frac.parse().ok()?;
    let frac_secs = frac.checked_mul(unit_secs)?;
    if frac_secs % scale != 0 {
        return None;
    }
    whole.checked_mul(unit_secs)?.checked_add(frac_secs / scale)
}

impl Duration {
    /// Appends the canonical spelling (what `Display` writes) to `out` without going through
    /// the formatting machinery: a wait step's timeline reason is spelled at every wait.
    pub fn push_to(&self, out: &mut String) {
        if self.secs == 0 {
            out.push_str("0s");
            return;
        }
        let mut rest = self.secs;
        // Weeks only for a whole number of them: "30d" stays "30d", not "4w2d".
        let whole_weeks = (self.secs / 86_400).is_multiple_of(7);
        for (unit, len) in UNITS {
            if unit == 'w' && !whole_weeks {
                continue;
            }
            let n = rest / len;
            if n > 0 {
                push_component(out, n, unit);
                rest %= len;
            }
        }
    }
}

/// Appends `n` and its unit (`30m`) without going through the formatting machinery.
fn push_component(out: &mut String, n: u64, unit: char) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n;
    while v > 0 {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
    out.push(unit);
}

impl fmt::Display for Duration {
    /// The canonical spelling: largest units first, zero components left out, weeks only when
    /// the days make whole weeks ("1h30m", "2w", "30d", "2w3h").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(16);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"30m\", \"4h\" or \"14d\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Matches the syntax (not the range): one to five components, largest unit first, each once.
const PATTERN: &str = "^([0-9]+w([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?\
                       |[0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?\
                       |[0-9]+h([0-9]+m)?([0-9]+s)?\
                       |[0-9]+m([0-9]+s)?\
                       |[0-9]+s)$";

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "description": "A duration from one second to a year: whole numbers with units w, d, h, m, s, \
                            largest first, e.g. \"90s\", \"30m\", \"4h\", \"14d\", \"2w\", \"1h30m\".",
            "examples": ["30m", "4h", "14d", "1h30m"]
        })
    }
}

/// How far a `wait_until` moves the date it reads (`before: 1d`, `after: 36h`).
///
/// Its weeks and days (`w`, `d`) are calendar days in the zone the wait reads its date in: `1d`
/// is the day before at the same local time, also across a change of the clocks. Its hours,
/// minutes and seconds, whatever their size (`24h`, `1440m`, `36h`), are exact elapsed time, as
/// a `wait`'s are. A mixed one, `1d2h`, is a calendar day, then 2 hours exactly. From one second
/// to a year, as a [`Duration`].
///
/// Two offsets are equal, and serialize the same, when they mean the same (`7d` and `1w`,
/// `1440m` and `24h`), whatever their spelling: a journey's digest holds its serialization. The
/// spelling is kept for the timeline and the flowchart, until it is stored and read back.
#[derive(Debug, Clone)]
pub struct DateOffset {
    /// The calendar days of its weeks and days.
    days: u64,
    /// The exact seconds of its hours, minutes and seconds.
    secs: u64,
    /// As the journey file wrote it (`1440m`), or as it was stored (`24h`), for display only.
    written: Box<str>,
}

impl PartialEq for DateOffset {
    /// By meaning: `7d` is `1w`, `24h` is not `1d`.
    fn eq(&self, other: &Self) -> bool {
        (self.days, self.secs) == (other.days, other.secs)
    }
}

impl Eq for DateOffset {}

impl std::hash::Hash for DateOffset {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.days, self.secs).hash(state);
    }
}

impl DateOffset {
    /// The calendar days it moves by (its `w` and `d`).
    pub fn days(&self) -> u64 {
        self.days
    }

    /// The exact seconds it moves by after its days (its `h`, `m` and `s`).
    pub fn exact_secs(&self) -> u64 {
        self.secs
    }

    /// As written (`24h`, `1d`, `1440m`); read back from a stored journey, as stored
    /// ([`DateOffset::canonical`]).
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The spelling it is stored, compared and digested by: its calendar days as a
    /// [`Duration`] spells them (`1w`, `9d`), then its exact time in hours, minutes and seconds
    /// whatever its size (`1h30m`, `24h`, `36h`). `7d` is `1w` and `1440m` is `24h`, never `1d`.
    ///
    /// Where its exact time is under a day, what it means is what the same text meant before
    /// hours and days were told apart (a `Duration`, whose whole days were calendar days), and
    /// this is the spelling that `Duration` was stored as, so a journey published then keeps
    /// its digest. Where it is a day or more, the meaning changed, and so does the spelling:
    /// that `Duration` wrote `24h` as `1d`.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(16);
        if self.days > 0 {
            Duration::from_secs(self.days.saturating_mul(DAY_SECS)).push_to(&mut out);
        }
        let mut rest = self.secs;
        for (unit, len) in UNITS {
            if len >= DAY_SECS {
                continue;
            }
            let n = rest / len;
            if n > 0 {
                push_component(&mut out, n, unit);
                rest %= len;
            }
        }
        out
    }
}

impl FromStr for DateOffset {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, DurationError> {
        let (days, secs) = parse_parts(s).map_err(|p| DurationError::new(explain(s, p)))?;
        let total = days
            .checked_add(secs)
            .ok_or_else(|| DurationError::new(explain(s, Problem::Overflow)))?;
        check_range(s, total)?;
        Ok(DateOffset {
            days: days / DAY_SECS,
            secs,
            written: s.into(),
        })
    }
}

impl fmt::Display for DateOffset {
    /// As written ([`DateOffset::as_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl Serialize for DateOffset {
    /// Canonical ([`DateOffset::canonical`]): a journey's digest changes with what its offsets
    /// mean, never with their spelling alone, and one stored and read again keeps its meaning
    /// (`24h` stays exact, `1d` a calendar day). A journey stored before hours and days were
    /// told apart holds `1d` for a `24h` it was written with, and `1d12h` for a `36h`: read as
    /// the calendar day, then 12 hours, they mean what they meant then.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for DateOffset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DateOffset;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"1d\", \"3d\" or \"24h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateOffset, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for DateOffset {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DateOffset".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "description": "How far to move a date, from one second to a year, written as a duration: \
                            weeks and days (w, d) are calendar days in the user's time zone (\"1d\" is \
                            the day before or after at the same local time), hours, minutes and seconds \
                            (h, m, s) exact time (\"24h\" is 24 hours, also across a change of the \
                            clocks); \"1d2h\" is a calendar day, then 2 hours.",
            "examples": ["1d", "3d", "24h", "30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_journey_files_write() {
        let cases: &[(&str, u64)] = &[
            ("1s", 1),
            ("90s", 90),
            ("30m", 1_800),
            ("4h", 14_400),
            ("14d", 1_209_600),
            ("2w", 1_209_600),
            ("1h30m", 5_400),
            ("1w2d3h4m5s", 604_800 + 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
            ("1d12h", 129_600),
            ("2h0m", 7_200),
            ("0h1s", 1),
            ("007m", 420),
            ("366d", 31_622_400),
            ("52w2d", 31_622_400),
            ("8784h", 31_622_400),
            ("527040m", 31_622_400),
        ];
        for &(text, secs) in cases {
            let d: Duration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(d.as_secs(), secs, "{text}");
        }
    }

    #[test]
    fn displays_canonically() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (90, "1m30s"),
            (5_400, "1h30m"),
            (86_400, "1d"),
            (1_209_600, "2w"),
            (691_261, "8d1m1s"),
            (2_592_000, "30d"),
            (1_220_400, "2w3h"),
            (31_449_600, "52w"),
            (31_622_400, "366d"),
        ];
        for &(secs, text) in cases {
            assert_eq!(Duration::from_secs(secs).to_string(), text);
        }
    }

    #[test]
    fn rejects_with_a_message_saying_what_to_write() {
        // (input, a fragment the message must contain)
        let cases: &[(&str, &str)] = &[
            ("", "can't be empty"),
            (
                "30 minutes",
                "\"30 minutes\" is not a duration: write \"30m\"",
            ),
            ("thirty minutes", "write it like \"30m\", \"4h\" or \"14d\""),
            ("90", "write \"90s\", \"90m\""),
            ("0s", "at least one second"),
            ("0m0s", "at least one second"),
            ("367d", "at most a year, \"366d\""),
            ("53w", "at most a year"),
            ("99999999999999999999999s", "at most a year"),
            ("18446744073709551615w", "at most a year"),
            ("-5m", "negative"),
            ("30m1h", "largest first, like \"1h30m\""),
            ("1h1h", "largest first"),
            ("5ms", "shortest duration is one second"),
            ("1.5h", "write \"1h30m\""),
            ("0.5m", "write \"30s\""),
            ("1.3333s", "write it like"),
            ("4H", "write \"4h\""),
            ("1h 30m", "write \"1h30m\""),
            (" 4h", "write \"4h\""),
            ("1mo", "months and years vary"),
            (
                "1M",
                "for months, which vary in length, write days or weeks",
            ),
            ("30 mins", "write \"30m\""),
            ("30min", "write \"30m\""),
            ("2 days", "write \"2d\""),
            ("1 hour", "write \"1h\""),
            ("2 years", "months and years vary"),
            ("1y", "months and years vary"),
            ("h", "write it like"),
            ("1x", "write it like"),
            ("1h30", "is not a duration"),
            ("PT1H", "write \"1h\""),
            ("P1D", "write \"1d\""),
            ("P1DT12H", "write \"1d12h\""),
            ("PT90M", "write \"1h30m\""),
            ("P1M", "write it like"),
            ("+5m", "write it like"),
            ("5m\u{e9}", "write it like"),
        ];
        for &(text, fragment) in cases {
            let err = text.parse::<Duration>().expect_err(text);
            assert!(
                err.message.contains(fragment),
                "{text:?}: {:?} does not contain {fragment:?}",
                err.message
            );
        }
    }

    #[test]
    fn converts_to_jiff() {
        assert_eq!(
            Duration::from_secs(5_400).to_jiff(),
            jiff::SignedDuration::from_mins(90)
        );
        assert_eq!(Duration::from_secs(u64::MAX).to_jiff().as_secs(), i64::MAX);
    }

    #[test]
    fn orders_by_length() {
        let a: Duration = "90m".parse().unwrap();
        let b: Duration = "2h".parse().unwrap();
        assert!(a < b);
        assert_eq!(
            "2w".parse::<Duration>().unwrap(),
            "14d".parse::<Duration>().unwrap()
        );
        assert_eq!(Duration::MIN.to_string(), "1s");
        assert_eq!(Duration::MAX.to_string(), "366d");
    }

    #[test]
    fn serializes_as_its_canonical_string() {
        let d: Duration = serde_json::from_str("\"90m\"").unwrap();
        assert_eq!(d.as_secs(), 5_400);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");

        let err = serde_json::from_str::<Duration>("\"thirty minutes\"").unwrap_err();
        assert!(err.to_string().contains("write it like \"30m\""), "{err}");
        let err = serde_json::from_str::<Duration>("\"30 minutes\"").unwrap_err();
        assert!(err.to_string().contains("write \"30m\""), "{err}");
        let err = serde_json::from_str::<Duration>("30").unwrap_err();
        assert!(err.to_string().contains("a duration like \"30m\""), "{err}");
    }

    #[test]
    fn schema_is_a_patterned_string() {
        let schema = schemars::schema_for!(Duration);
        let v = schema.as_value();
        assert_eq!(v["type"], "string");
        assert_eq!(v["pattern"], PATTERN);
        assert!(v["description"]
            .as_str()
            .is_some_and(|d| d.contains("1h30m")));
    }

    #[test]
    fn a_date_offset_keeps_its_days_apart_from_its_exact_time_and_serializes_canonically() {
        // (written, calendar days, exact seconds, canonical)
        let cases: &[(&str, u64, u64, &str)] = &[
            ("1d", 1, 0, "1d"),
            ("7d", 7, 0, "1w"),
            ("2w", 14, 0, "2w"),
            ("14d", 14, 0, "2w"),
            ("1w2d", 9, 0, "9d"),
            ("24h", 0, 86_400, "24h"),
            ("1440m", 0, 86_400, "24h"),
            ("86400s", 0, 86_400, "24h"),
            ("36h", 0, 129_600, "36h"),
            ("1d2h", 1, 7_200, "1d2h"),
            ("1d120m", 1, 7_200, "1d2h"),
            ("1d24h", 1, 86_400, "1d24h"),
            ("2w3h", 14, 10_800, "2w3h"),
            ("30m", 0, 1_800, "30m"),
            ("90m", 0, 5_400, "1h30m"),
            ("3600s", 0, 3_600, "1h"),
            ("1h0m", 0, 3_600, "1h"),
            ("1h1s", 0, 3_601, "1h1s"),
            ("366d", 366, 0, "366d"),
            ("52w2d", 366, 0, "366d"),
            ("8784h", 0, 31_622_400, "8784h"),
        ];
        for &(text, days, secs, canonical) in cases {
            let o: DateOffset = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((o.days(), o.exact_secs()), (days, secs), "{text}");
            // Said as written; stored canonically, and read back as the same offset.
            assert_eq!(o.to_string(), text);
            assert_eq!(o.as_str(), text);
            assert_eq!(o.canonical(), canonical, "{text}");
            let stored = serde_json::to_string(&o).unwrap();
            assert_eq!(stored, format!("\"{canonical}\""));
            let back: DateOffset = serde_json::from_str(&stored).unwrap();
            assert_eq!(back, o);
            assert_eq!(back.as_str(), canonical);
            assert_eq!(canonical.parse::<DateOffset>(), Ok(o));
        }
        // Equal by meaning, whatever the spelling.
        assert_eq!(
            "7d".parse::<DateOffset>().unwrap(),
            "1w".parse::<DateOffset>().unwrap()
        );
        assert_ne!(
            "24h".parse::<DateOffset>().unwrap(),
            "1d".parse::<DateOffset>().unwrap()
        );
        // The same range and messages as a duration.
        for (text, fragment) in [
            ("0d", "at least one second"),
            ("367d", "at most a year"),
            ("8785h", "at most a year"),
            ("1 day", "write \"1d\""),
            ("18446744073709551615w1s", "at most a year"),
        ] {
            let err = text.parse::<DateOffset>().expect_err(text);
            assert!(err.message.contains(fragment), "{text}: {}", err.message);
        }
    }

    /// A journey stored before hours and days were told apart holds its offset as the canonical
    /// `Duration`, whose whole days were calendar days and the rest exact time: `1d` for a `24h`
    /// or `1d` written, `1d12h` for a `36h`. Read now, it means what it meant then.
    #[test]
    fn an_offset_stored_as_a_duration_reads_as_it_meant_then() {
        for (stored, days, secs) in [
            ("1d", 1, 0),
            ("1d12h", 1, 43_200),
            ("1w", 7, 0),
            ("9d", 9, 0),
            ("2w3h", 14, 10_800),
            ("1h30m", 0, 5_400),
            ("366d", 366, 0),
        ] {
            let o: DateOffset = serde_json::from_str(&format!("\"{stored}\"")).unwrap();
            assert_eq!((o.days(), o.exact_secs()), (days, secs), "{stored}");
            // and is stored again as it was: the journey keeps its digest
            assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{stored}\""));
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(s in "\\PC*") {
            let _ = s.parse::<Duration>();
        }

        #[test]
        fn never_panics_on_duration_like_strings(s in "[-+ .0-9wdhmsyoWDHMS]{0,12}") {
            if let Err(e) = s.parse::<Duration>() {
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn display_round_trips(secs in MIN_SECS..=MAX_SECS) {
            let d = Duration::from_secs(secs);
            let text = d.to_string();
            prop_assert_eq!(text.parse::<Duration>(), Ok(d));
        }

        /// Where its exact time is under a day, an offset means what the same text meant as a
        /// `Duration` before hours and days were told apart, and is stored as that was (a
        /// journey deployed again unchanged keeps its digest); any offset's canonical spelling
        /// reads back as the same offset, and is its own canonical spelling.
        #[test]
        fn an_offset_is_stored_as_its_duration_was_where_it_means_the_same(
            w in 0u64..53, d in 0u64..7, h in 0u64..48, m in 0u64..120, s in 0u64..120,
            drop in 0u8..32,
        ) {
            // Leave components out at random: `1w2d`, `90m`, `1d3h`.
            let parts = [(w, 'w'), (d, 'd'), (h, 'h'), (m, 'm'), (s, 's')];
            let text: String = parts
                .iter()
                .enumerate()
                .filter(|(i, _)| drop & (1 << i) == 0)
                .map(|(_, (n, u))| format!("{n}{u}"))
                .collect();
            let Ok(offset) = text.parse::<DateOffset>() else {
                // Empty, zero or past a year: a duration too.
                prop_assert!(text.parse::<Duration>().is_err(), "{}", text);
                return Ok(());
            };
            let duration = text.parse::<Duration>().expect("a duration");
            let canonical = offset.canonical();
            if offset.exact_secs() < DAY_SECS {
                prop_assert_eq!(&canonical, &duration.to_string());
            } else {
                prop_assert_ne!(&canonical, &duration.to_string());
            }
            let back = canonical.parse::<DateOffset>().expect("reads back");
            prop_assert_eq!(&back, &offset);
            prop_assert_eq!(back.canonical(), canonical);
        }

        #[test]
        fn parse_then_display_is_canonical(
            w in 0u64..3, d in 0u64..7, h in 0u64..24, m in 0u64..60, s in 0u64..60,
        ) {
            let text = format!("{w}w{d}d{h}h{m}m{s}s");
            let secs = w * 604_800 + d * 86_400 + h * 3_600 + m * 60 + s;
            match text.parse::<Duration>() {
                Ok(parsed) => {
                    prop_assert_eq!(parsed.as_secs(), secs);
                    prop_assert_eq!(parsed.to_string().parse::<Duration>(), Ok(parsed));
                }
                Err(_) => prop_assert_eq!(secs, 0),
            }
        }
    }
}
