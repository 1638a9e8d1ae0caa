//! The `date` filter: a time from a profile or an event, formatted for a message in the user's
//! own time zone and language (`{{ profile.trial_ends_at | date("%A %-d %B") }}` is `mardi 10
//! mars` in French). Month and weekday names come from a table drawn from CLDR
//! (`date/names.rs`, generated); reads no clock and no system locale: the same input renders
//! the same text.

// Generated, and kept as the generator writes it.
#[rustfmt::skip]
mod names;

use std::borrow::Cow;

use jiff::civil::{Date, DateTime};
use jiff::fmt::strtime::{BrokenDownTime, Config, PosixCustom};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

use super::currency::{self, ENGLISH_AT};

/// What `date` prints without a format: the day, as ISO 8601 writes it.
const DEFAULT_FORMAT: &str = "%Y-%m-%d";

/// One locale's words for `date`, as CLDR writes them beside a day (`10 mars`, Russian's
/// `10 марта`): 12 months, the 12 abbreviated, 7 weekdays from Sunday, the 7 abbreviated, then
/// AM and PM, separated by `|`.
#[derive(Debug)]
pub(crate) struct Names(&'static str);

/// How many words a [`Names`] holds.
const WORDS: usize = 12 + 12 + 7 + 7 + 2;

impl Names {
    /// The `i`th word: months from 0, abbreviated from 12, weekdays from 24, abbreviated from
    /// 31, AM at 38 and PM at 39. Empty past the end, which the build's check rules out.
    fn word(&self, i: usize) -> &'static str {
        self.0.split('|').nth(i).unwrap_or_default()
    }

    fn month(&self, month: i8, short: bool) -> &'static str {
        let i = usize::try_from(month - 1).unwrap_or_default();
        self.word(if short { 12 + i } else { i })
    }

    fn weekday(&self, sunday_zero: i8, short: bool) -> &'static str {
        let i = usize::try_from(sunday_zero).unwrap_or_default();
        self.word(if short { 31 + i } else { 24 + i })
    }

    fn meridiem(&self, hour: i8) -> &'static str {
        self.word(if hour < 12 { 38 } else { 39 })
    }

    /// Whether these are the names jiff writes itself (English's), so a format needs no
    /// rewriting.
    fn english(&self) -> bool {
        self.0 == names::LOCALES[ENGLISH_AT].1 .0
    }

    /// Whether AM and PM are written `AM` and `PM`, as jiff writes them.
    fn plain_meridiem(&self) -> bool {
        self.meridiem(0) == "AM" && self.meridiem(12) == "PM"
    }
}

/// The names table follows the currency table's locales in order, each with every word: a
/// table generated from another version of it fails the build.
const _: () = {
    assert!(
        names::LOCALES.len() == currency::COVERED,
        "date/names.rs is not generated from this currency/data.rs: run shared/tools/date_names.mjs"
    );
    let mut i = 0;
    while i < names::LOCALES.len() {
        let (tag, words) = names::LOCALES[i];
        assert!(
            same(tag.as_bytes(), currency::covered_tag(i).as_bytes()),
            "date/names.rs is not generated from this currency/data.rs: run shared/tools/date_names.mjs"
        );
        let (text, mut bars, mut j) = (words.0.as_bytes(), 0, 0);
        while j < text.len() {
            if text[j] == b'|' {
                bars += 1;
            }
            j += 1;
        }
        assert!(bars == WORDS - 1, "a locale of date/names.rs lacks a word");
        i += 1;
    }
};

/// Whether `a` and `b` are the same bytes (`==`, which a constant cannot call).
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The names for a locale tag (`fr-FR`, `de_CH.UTF-8`), found as `currency` finds its locale:
/// the tag, else shortened part by part, else English.
pub(crate) fn names(tag: Option<&str>) -> &'static Names {
    names::LOCALES
        .get(currency::locale_at(tag))
        .map_or(names::LOCALES[ENGLISH_AT].1, |(_, n)| n)
}

/// The context value holding the language of the text being rendered ([`super::Scope`]'s
/// `language`): set only when a `locales` variant was chosen.
pub(crate) const LANGUAGE: &str = "__language";

/// `value | date(format, tz=zone, locale=tag)`: `value` is RFC 3339 text
/// (`2026-12-24T18:00:00Z`), a day (`2026-12-24`), a local date and time
/// (`2026-12-24T18:00:00`, read in the zone), seconds since 1970, or milliseconds since 1970 (a
/// number from 1e11 on: `Date.now()`). It is shown in `tz` when given, else in the user's zone
/// (`profile.timezone`, else the journey's `timezone`, else UTC); `format` takes strftime's
/// directives (`%Y-%m-%d` when absent), whose names (`%A`, `%a`, `%B`, `%b`, `%p`) are written
/// in `locale` when given, else in the text's language (the user's locale in a `locales`
/// variant chosen for her), else English. Nothing (an absent
/// trait) prints as nothing, as an absent value does anywhere else in a template.
pub fn date(
    state: &State<'_, '_>,
    value: Value,
    format: Option<&str>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let tz_name: Option<&str> = kwargs.get("tz")?;
    let locale_arg: Option<Value> = kwargs.get("locale")?;
    kwargs.assert_all_used()?;
    // The arguments are checked whatever the value, so a mistake in them shows at once.
    let tag = match &locale_arg {
        Some(l) if l.is_undefined() || l.is_none() => None,
        Some(l) => Some(l.as_str().ok_or_else(|| {
            invalid(format!(
                "date: `locale=` is a tag like 'fr', not {l} ({})",
                l.kind()
            ))
        })?),
        None => None,
    };
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    let tz = match tz_name {
        Some(name) => TimeZone::get(name).map_err(|_| {
            invalid(format!(
                "date: `{name}` is not an IANA time zone: write one like tz=\"Europe/Paris\""
            ))
        })?,
        None => user_zone(state),
    };
    let zoned = zoned(&value, &tz)?;
    // The language of the text: a `locales` variant's is the user's locale, the default
    // text's English (`None`), so a name never lands in a sentence of another language.
    let own = state.lookup(LANGUAGE);
    let tag = tag.or_else(|| own.as_ref().and_then(Value::as_str));
    let format = format.unwrap_or(DEFAULT_FORMAT);
    written(format, &zoned, names(tag))
        .map_err(|e| invalid(format!("date: cannot format with `{format}`: {e}")))
}

/// The user's time zone as a wait finds it: `profile.timezone`, else `journey.timezone`, else UTC.
fn user_zone(state: &State<'_, '_>) -> TimeZone {
    let zone = |root: &str| state.lookup(root).and_then(|v| v.get_attr("timezone").ok());
    let (profile, journey) = (zone("profile"), zone("journey"));
    zone_of(
        profile.as_ref().and_then(Value::as_str),
        journey.as_ref().and_then(Value::as_str),
    )
}

/// The user's zone: the first of the profile's and the journey's default that names an IANA
/// zone, else UTC. Waits (`engine::Ctx::timezone`) and both renderers' `date` find it here, so a
/// message prints a time in the zone its wait used.
pub(crate) fn zone_of(profile: Option<&str>, journey: Option<&str>) -> TimeZone {
    [profile, journey]
        .into_iter()
        .flatten()
        .find_map(|name| TimeZone::get(name).ok())
        .unwrap_or(TimeZone::UTC)
}

/// `value` as a time in `tz`.
fn zoned(value: &Value, tz: &TimeZone) -> Result<ZonedDateTime, Error> {
    let not_a_time = || {
        invalid(format!(
            "date: {value} is not a time: give RFC 3339 text like 2026-12-24T18:00:00Z, a day like 2026-12-24, or seconds (or milliseconds) since 1970"
        ))
    };
    match value.kind() {
        ValueKind::Number => {
            let n = f64::try_from(value.clone()).map_err(|_| not_a_time())?;
            let ts = epoch_number(n).ok_or_else(not_a_time)?;
            Ok(ts.to_zoned_datetime(tz.clone()))
        }
        ValueKind::String => {
            zoned_text(value.as_str().unwrap_or_default(), tz).ok_or_else(not_a_time)
        }
        _ => Err(not_a_time()),
    }
}

/// A number as a time: seconds since 1970, or milliseconds from 1e11 on (JavaScript's
/// `Date.now()`; as seconds that would be past the year 5000). Shared with `wait_until`'s
/// `date`, so a wait and a message read the same number the same way. `None` out of jiff's
/// range (about ±9,999 years) or not finite.
pub(crate) fn epoch_number(n: f64) -> Option<Timestamp> {
    if !n.is_finite() {
        return None;
    }
    let millis = if n.abs() >= 1e11 {
        n.round()
    } else {
        (n * 1000.0).round()
    };
    Timestamp::from_millisecond(millis as i64).ok()
}

/// Whether text is seconds since 1970 as systems write them now, or milliseconds: 10 digits
/// (2001 to 2286) or 13, the first not a 0. Other digits (a phone number `0612345671`, a
/// postcode, an order number) are no time: read as one they would be a day of the 1970s, past,
/// and a reminder waiting for it would go out at once.
fn epoch_digits(text: &str) -> bool {
    matches!(text.len(), 10 | 13)
        && !text.starts_with('0')
        && text.bytes().all(|b| b.is_ascii_digit())
}

/// Text of digits alone as a time: seconds or milliseconds since 1970 when they are
/// [`epoch_digits`], read as the number they write ([`epoch_number`]); `Some(None)` for other
/// digits (`"20261219"`, which jiff would read as a day, a phone number, a postcode), no time;
/// `None` for text that is not digits alone. The one reading of digits that waits, the `date`
/// filter, `days_until`/`days_since` and `anniversary` share.
pub(crate) fn digits_time(text: &str) -> Option<Option<Timestamp>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        epoch_digits(text)
            .then(|| text.parse::<f64>().ok().and_then(epoch_number))
            .flatten(),
    )
}

/// Text as an instant: RFC 3339 (`2026-12-20T10:00:00+01:00`, also with a space for the `T`),
/// or a date and time with its offset after a space, as Ruby's `Time#to_s`, many SQL exports
/// and log lines write one (`2026-12-20 10:00:00 +0100`, `2026-12-20 10:00:00 +01:00`,
/// `2026-12-20 10:00:00 UTC`, `... GMT`, `... Z`). `None` for text without an offset.
pub(crate) fn instant_text(text: &str) -> Option<Timestamp> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    let (local, offset) = text.rsplit_once(' ')?;
    let local = local.trim_end();
    // A date and a time: a day alone is a day in her zone, not an instant.
    if local.len() <= 10 {
        return None;
    }
    let local: DateTime = local.parse().ok()?;
    spaced_offset(offset)?.to_timestamp(local).ok()
}

/// The offset written after a space: `UTC`, `GMT` or `Z` (any case), or `+HH`, `+HHMM`, `+HH:MM`
/// (or `-`), at most 23:59 as RFC 3339's.
fn spaced_offset(text: &str) -> Option<jiff::tz::Offset> {
    if ["utc", "gmt", "z"]
        .iter()
        .any(|z| text.eq_ignore_ascii_case(z))
    {
        return Some(jiff::tz::Offset::UTC);
    }
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    let colons = text[1..].matches(':').count();
    let well_formed = digits.bytes().all(|b| b.is_ascii_digit())
        && match digits.len() {
            2 => colons == 0,
            4 => colons == 0 || (colons == 1 && text[1..].find(':') == Some(2)),
            _ => false,
        };
    if !well_formed {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

/// Text as a time in `tz`: RFC 3339 (shown in `tz`), or a local date and time or a day (read in
/// `tz`), or seconds or milliseconds since 1970 as digits alone ([`digits_time`]: `"1797638400"`,
/// as billing systems and CSV imports send seconds since 1970; other digits are no time).
/// Shared with the direct renderer and `wait_until`'s `date`, so all read the same texts the
/// same way.
pub(crate) fn zoned_text(text: &str, tz: &TimeZone) -> Option<ZonedDateTime> {
    if let Some(at) = digits_time(text) {
        return Some(at?.to_zoned_datetime(tz.clone()));
    }
    if let Some(ts) = instant_text(text) {
        return Some(ts.to_zoned_datetime(tz.clone()));
    }
    // A local time the clocks skip is the first instant after the gap, as for a `wait_until`
    // time of day (`engine::local_instant`).
    let local = match text.parse::<DateTime>() {
        Ok(dt) => dt,
        Err(_) => match text.parse::<Date>() {
            Ok(day) => day.at(0, 0, 0, 0),
            Err(_) => return None,
        },
    };
    crate::engine::local_instant(tz, local).map(|t| t.to_zoned_datetime(tz.clone()))
}

/// Why the fixed arguments of a `date` call cannot work (a `format` jiff cannot format with, a
/// `tz` that is no IANA zone), said as the filter would say it at every send, with what to write
/// instead. Read by `template::check` from the call's string literals, so `waymark validate`
/// refuses what would make every message `render_error`. (A `locale=` is checked with the
/// other filters' arguments, `template::calls`.)
pub(crate) fn argument_problem(format: Option<&str>, tz: Option<&str>) -> Option<String> {
    if let Some(name) = tz {
        if TimeZone::get(name).is_err() {
            return Some(format!(
                "date: `{name}` is not an IANA time zone: {}",
                crate::dsl::zone_advice(name, "write one like tz='Europe/Paris'")
            ));
        }
    }
    let format = format?;
    // Whether a format can be applied depends neither on the time nor on the locale: a time
    // that every directive can show stands for all.
    let sample = Timestamp::UNIX_EPOCH.to_zoned_datetime(TimeZone::UTC);
    written(format, &sample, names(None))
        .err()
        .map(|e| {
            format!(
                "date: cannot format with `{format}`: {e}; write strftime's directives, like '%A %-d %B, %H:%M' (`%%` for a `%` sign)"
            )
        })
}

/// `format` applied to a time, its names in `names`: what the filter prints.
pub(crate) fn format(format: Option<&str>, zoned: &ZonedDateTime, names: &Names) -> Option<String> {
    written(format.unwrap_or(DEFAULT_FORMAT), zoned, names).ok()
}

/// `format` applied to `zoned` by jiff, after [`localized`]. `%c`, `%x`, `%X` and `%r` are the
/// C locale's forms (`Tue Mar 10 23:59:59 2026`, `03/10/26`, `23:59:59`, `11:59:59 PM`), in
/// English whatever the locale: strftime's own, where jiff's default is Unicode's
/// locale-neutral `2026 M03 10`.
fn written(format: &str, zoned: &ZonedDateTime, names: &Names) -> Result<String, jiff::Error> {
    let config = Config::new().custom(PosixCustom::new());
    BrokenDownTime::from(zoned)
        .to_string_with_config(&config, localized(format, zoned, names).as_bytes())
}

/// `format` with each directive that writes a name (`%A`, `%a`, `%B`, `%b`, `%h`; `%p` and
/// `%P` where the locale's words are not `AM` and `PM`) replaced by that name in `names`, as
/// text jiff writes as it is. A flag applies as jiff applies it (`^` upper case, in every
/// script; `#` turns `%p` to lower case); a width, which jiff ignores for text, is ignored. Any
/// other directive is left whole, so jiff reads (or refuses) it as it would have.
fn localized<'f>(format: &'f str, zoned: &ZonedDateTime, names: &Names) -> Cow<'f, str> {
    if names.english() || !format.contains('%') {
        return Cow::Borrowed(format);
    }
    let plain_meridiem = names.plain_meridiem();
    let bytes = format.as_bytes();
    let mut out = String::with_capacity(format.len() + 16);
    // `format[copied..]` is still to be written.
    let (mut copied, mut at) = (0, 0);
    while let Some(found) = format[at..].find('%') {
        let start = at + found;
        // As jiff reads a directive: a flag unless a letter follows the `%`, a width, colons.
        let mut i = start + 1;
        let flag = match bytes.get(i) {
            Some(b) if !b.is_ascii_alphabetic() && b"_0-^#".contains(b) => {
                i += 1;
                Some(*b)
            }
            _ => None,
        };
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let width_ok = format[i..i + digits]
            .parse::<u16>()
            .map_or(digits == 0, |w| w <= 255);
        i += digits;
        // Colons, which jiff reads before any directive and heeds only in `%:z` and `%:Q`.
        i += bytes[i..]
            .iter()
            .take(3)
            .take_while(|b| **b == b':')
            .count();
        let name = match bytes.get(i) {
            _ if !width_ok => None,
            Some(b'A') => Some(names.weekday(zoned.weekday().to_sunday_zero_offset(), false)),
            Some(b'a') => Some(names.weekday(zoned.weekday().to_sunday_zero_offset(), true)),
            Some(b'B') => Some(names.month(zoned.month(), false)),
            Some(b'b' | b'h') => Some(names.month(zoned.month(), true)),
            Some(b'p' | b'P') if !plain_meridiem => Some(names.meridiem(zoned.hour())),
            _ => None,
        };
        let Some(name) = name else {
            // Not one of them: the whole directive as it is (`%%`, `%-d`, `%.3f` up to its `.`,
            // `%:z` up to its `:`), so that no `%` within it starts another.
            let end = format[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            at = end.max(start + 1);
            continue;
        };
        out.push_str(&format[copied..start]);
        let lower = bytes[i] == b'P' || (bytes[i] == b'p' && flag == Some(b'#'));
        let name: Cow<'_, str> = match flag {
            Some(b'^') => Cow::Owned(name.to_uppercase()),
            _ if lower => Cow::Owned(name.to_lowercase()),
            _ => Cow::Borrowed(name),
        };
        // The generator keeps `%` out of the names; escaped all the same.
        out.push_str(&name.replace('%', "%%"));
        at = i + 1;
        copied = at;
    }
    if copied == 0 {
        return Cow::Borrowed(format);
    }
    out.push_str(&format[copied..]);
    Cow::Owned(out)
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

#[cfg(test)]
mod tests {
    use crate::template::render;
    use serde_json::json;

    fn show(source: &str, profile: serde_json::Value) -> Result<String, String> {
        render(
            source,
            &json!({"profile": profile, "event": {"at": "2026-12-24T18:30:00Z", "day": "2026-12-24", "epoch": 1798137000, "epoch_ms": 1798137000000_i64}}),
            false,
        )
        .map_err(|e| e.message)
    }

    #[test]
    fn a_time_with_its_offset_after_a_space_is_an_instant() {
        use super::instant_text;
        let at = |t: &str| instant_text(t).map(|t| t.to_string());
        // Ruby's `Time#to_s`, SQL exports, log lines.
        for (text, utc) in [
            ("2026-12-20 10:00:00 +0100", "2026-12-20T09:00:00Z"),
            ("2026-12-20 10:00:00 +01:00", "2026-12-20T09:00:00Z"),
            ("2026-12-20 10:00:00 -05", "2026-12-20T15:00:00Z"),
            ("2026-12-20 10:00:00 UTC", "2026-12-20T10:00:00Z"),
            ("2026-12-20 10:00:00 gmt", "2026-12-20T10:00:00Z"),
            ("2026-12-20T10:00:00 Z", "2026-12-20T10:00:00Z"),
            ("2026-12-20 10:00 +00:00", "2026-12-20T10:00:00Z"),
            // RFC 3339 as before.
            ("2026-12-20T10:00:00+01:00", "2026-12-20T09:00:00Z"),
        ] {
            assert_eq!(at(text).as_deref(), Some(utc), "{text}");
        }
        // No offset, or no offset RFC 3339 allows: not an instant.
        for text in [
            "2026-12-20 10:00:00",
            "2026-12-20 +0100",
            "2026-12-20 10:00:00 +2500",
            "2026-12-20 10:00:00 +01:60",
            "2026-12-20 10:00:00 +1",
            "2026-12-20 10:00:00 +010",
            "2026-12-20 10:00:00 +0:100",
            "2026-12-20 10:00:00 CET",
            "2026-12-20 10:00:00 Europe/Paris",
        ] {
            assert_eq!(at(text), None, "{text}");
        }
        // Shown, and waited for, as the instant it is (a wait reads dates as the filter does).
        let paris = json!({"timezone": "Europe/Paris", "due": "2026-12-20 10:00:00 -0500"});
        assert_eq!(
            show("{{ profile.due | date('%Y-%m-%d %H:%M') }}", paris).as_deref(),
            Ok("2026-12-20 16:00")
        );
    }

    #[test]
    fn a_time_is_shown_in_the_users_zone_unless_told_otherwise() {
        let paris = json!({"timezone": "Europe/Paris", "trial_ends_at": "2027-03-28T00:30:00Z"});
        assert_eq!(
            show("{{ event.at | date }}", paris.clone()).as_deref(),
            Ok("2026-12-24")
        );
        assert_eq!(
            show("{{ event.at | date('%A %-d %B at %H:%M') }}", paris.clone()).as_deref(),
            Ok("Thursday 24 December at 19:30")
        );
        assert_eq!(
            show(
                "{{ event.at | date('%H:%M %Z', tz='America/New_York') }}",
                paris.clone()
            )
            .as_deref(),
            Ok("13:30 EST")
        );
        // Across a change of offset: the night the clocks go forward in Paris.
        assert_eq!(
            show(
                "{{ profile.trial_ends_at | date('%-d %b %H:%M %Z') }}",
                paris
            )
            .as_deref(),
            Ok("28 Mar 01:30 CET")
        );
        // No zone in the profile: UTC.
        assert_eq!(
            show("{{ event.at | date('%H:%M') }}", json!({})).as_deref(),
            Ok("18:30")
        );
    }

    #[test]
    fn a_user_without_a_zone_sees_the_journeys_zone() {
        let at = |profile: serde_json::Value, journey: serde_json::Value| {
            render(
                "{{ event.at | date('%H:%M %Z') }}",
                &json!({"profile": profile, "journey": journey, "event": {"at": "2026-12-24T18:30:00Z"}}),
                false,
            )
            .map_err(|e| e.message)
        };
        let paris = json!({"id": "j", "timezone": "Europe/Paris"});
        assert_eq!(at(json!({}), paris.clone()).as_deref(), Ok("19:30 CET"));
        // The user's own zone first; one that is not a zone is passed over, as a wait does.
        assert_eq!(
            at(json!({"timezone": "Asia/Tokyo"}), paris.clone()).as_deref(),
            Ok("03:30 JST")
        );
        assert_eq!(
            at(json!({"timezone": "Mars/Base"}), paris).as_deref(),
            Ok("19:30 CET")
        );
        assert_eq!(
            at(json!({}), json!({"id": "j", "timezone": null})).as_deref(),
            Ok("18:30 UTC")
        );
    }

    #[test]
    fn days_epoch_seconds_and_absent_values() {
        let tokyo = json!({"timezone": "Asia/Tokyo"});
        assert_eq!(
            show("{{ event.day | date('%d/%m/%Y') }}", tokyo.clone()).as_deref(),
            Ok("24/12/2026")
        );
        assert_eq!(
            show("{{ event.epoch | date('%Y-%m-%d %H:%M') }}", tokyo.clone()).as_deref(),
            Ok("2026-12-25 03:30")
        );
        // Milliseconds, as JavaScript's `Date.now()` gives them: the same instant.
        assert_eq!(
            show(
                "{{ event.epoch_ms | date('%Y-%m-%d %H:%M') }}",
                tokyo.clone()
            )
            .as_deref(),
            Ok("2026-12-25 03:30")
        );
        assert_eq!(
            show("[{{ profile.missing | date }}]", tokyo).as_deref(),
            Ok("[]")
        );
    }

    /// Seconds (or milliseconds) since 1970 sent as text, 10 digits (or 13) alone, read as the
    /// number they write; a day written as digits and dashes stays a day, and other digits (a
    /// phone number, a postcode) are no time.
    #[test]
    fn digits_sent_as_text_are_the_number_they_write() {
        let shown = |value: serde_json::Value| {
            render(
                "{{ event.at | date('%Y-%m-%d %H:%M') }}",
                &json!({"profile": {"timezone": "Asia/Tokyo"}, "event": {"at": value}}),
                false,
            )
            .map_err(|e| e.message)
        };
        for sent in [
            json!("1798137000"),
            json!("1798137000000"),
            json!(1798137000),
        ] {
            assert_eq!(
                shown(sent.clone()).as_deref(),
                Ok("2026-12-25 03:30"),
                "{sent}"
            );
        }
        assert_eq!(
            shown(json!("2026-12-24")).as_deref(),
            Ok("2026-12-24 00:00")
        );
        for not_a_time in [
            "+33612345671",
            "-1798137000",
            "17981370.5",
            // a phone number, a postcode, an order number: no time of the 1970s
            "0612345671",
            "12345",
            "179813700",
            "17981370000",
            "0798137000000",
            // eight digits, which jiff reads as a day (ISO 8601's basic format): README's
            // rule is 10 or 13 digits, and a wait and `days_until` read it so too
            "20261225",
        ] {
            let refused = shown(json!(not_a_time)).expect_err(not_a_time);
            assert!(refused.contains("is not a time"), "{not_a_time}: {refused}");
        }
    }

    /// A `date` whose fixed format or zone cannot work fails every render: `check` (so
    /// `waymark validate`) refuses it, at its line, saying what to write; what only a render
    /// knows (an argument that is an expression) is left to it.
    #[test]
    fn fixed_arguments_that_cannot_work_are_refused_by_check() {
        use crate::template::check;
        let refused = [
            (
                "{{ event.at | date('%H:%M', tz='Europe/Pariss') }}",
                1,
                "date: `Europe/Pariss` is not an IANA time zone: did you mean `Europe/Paris`?",
            ),
            (
                "{{ event.at | date(tz=\"Nowhere/Land\") }}",
                1,
                "date: `Nowhere/Land` is not an IANA time zone: write one like tz='Europe/Paris'",
            ),
            (
                "{{ event.at | date('%') }}",
                1,
                "date: cannot format with `%`: ",
            ),
            (
                "Hi\n{% if profile.x %}{{ event.at | date ( '%H:%M %K' ) }}{% endif %}",
                2,
                "date: cannot format with `%H:%M %K`: ",
            ),
            (
                "{{ event.at | upper }}\n{{ event.at | date(\n  '%d',\n  tz='Europe/Parris') }}",
                4,
                "did you mean `Europe/Paris`?",
            ),
            (
                "{% filter date('%') %}{{ event.at }}{% endfilter %}",
                1,
                "date: cannot format with `%`",
            ),
            (
                "{{ event.at | date('%H', zone='UTC') }}",
                1,
                "date: takes a format, `tz=` and `locale=`, not `zone=`",
            ),
            (
                "{{ event.at | date('%H', lang='fr') }}",
                1,
                "not `lang=`: write it like date('%H:%M', tz='Europe/Paris', locale='fr')",
            ),
            (
                "{{ event.at | date('%H', 'UTC') }}",
                1,
                "date: takes one format; give the zone as `tz=`",
            ),
        ];
        for (source, line, said) in refused {
            let e = check(source).expect_err(source);
            assert_eq!(e.line, Some(line), "{source}: {e}");
            assert!(e.message.contains(said), "{source}: {e}");
            // The send would fail all the same.
            let rendered = show(source, json!({"x": true}));
            assert!(rendered.is_err(), "{source}: {rendered:?}");
        }
        assert!(check("{{ event.at | date('%') }}")
            .expect_err("%")
            .message
            .contains("`%%` for a `%` sign"));
        for fine in [
            "{{ event.at | date }}",
            "{{ event.at | date() }}",
            "{{ event.at | date('%A %-d %B, %H:%M %Z', tz='Asia/Tokyo') }}",
            "{{ event.at | date('100%% at %H') }}",
            "{{ event.at | date('\\'%H\\'') }}",
            "{{ 'date(\\'%\\')' }} {{ event.at | date(\"%d, %m (%Y)\") }}",
            // Expressions are known when they render.
            "{{ event.at | date(profile.fmt, tz=profile.zone) }}",
            "{{ event.at | date('%' ~ 'H', tz=['Mars'] | first) }}",
        ] {
            check(fine).expect(fine);
        }
    }

    /// The tester's offer: Jo's `profile.locale` is `fr-FR`, her zone Paris, and the text is
    /// a `locales` variant chosen for her (its language hers).
    fn offer(source: &str, locale: serde_json::Value) -> Result<String, String> {
        render(
            source,
            &json!({"profile": {"timezone": "Europe/Paris", "locale": locale},
                    "__language": locale,
                    "event": {"expires_at": "2026-03-10T22:59:59Z", "morning": "2026-01-04T08:05:00Z"}}),
            false,
        )
        .map_err(|e| e.message)
    }

    /// The default text (no `locales` variant chosen: a German reader of an English-only
    /// journey) writes its names in English, whatever her locale, so that a name never lands
    /// in a sentence of another language; `locale=` still says otherwise.
    #[test]
    fn the_default_texts_names_are_english_whatever_her_locale() {
        let jo = json!({"profile": {"timezone": "Europe/Paris", "locale": "de-DE"},
                        "event": {"expires_at": "2026-03-10T22:59:59Z"}});
        for (source, want) in [
            (
                "{{ event.expires_at | date('%A %-d %B') }}",
                "Tuesday 10 March",
            ),
            (
                "{{ event.expires_at | date('%A %-d %B', locale=profile.locale) }}",
                "Dienstag 10 März",
            ),
        ] {
            assert_eq!(render(source, &jo, false).as_deref(), Ok(want), "{source}");
        }
    }

    /// Month and weekday names, and AM/PM where CLDR has words of its own, in the user's
    /// language, as CLDR writes them beside a day (Russian's `марта`, of March); the rest of
    /// the format as it was.
    #[test]
    fn names_are_written_in_the_users_language() {
        let long = "{{ event.expires_at | date('%A %-d %B %Y, %H:%M') }}";
        let short = "{{ event.expires_at | date('%a %-d %b') }}";
        let period =
            "{{ event.morning | date('%-I:%M %p') }} / {{ event.expires_at | date('%-I:%M %p') }}";
        for (locale, format, want) in [
            ("fr-FR", long, "mardi 10 mars 2026, 23:59"),
            ("fr-FR", short, "mar. 10 mars"),
            (
                "fr",
                "{{ event.morning | date('%A %-d %B') }}",
                "dimanche 4 janvier",
            ),
            ("de-DE", long, "Dienstag 10 März 2026, 23:59"),
            ("de-DE", short, "Di. 10 März"),
            (
                "de-AT",
                "{{ event.morning | date('%-d. %B') }}",
                "4. Jänner",
            ),
            ("es-ES", long, "martes 10 marzo 2026, 23:59"),
            (
                "es",
                "{{ event.expires_at | date('%-d de %B') }}",
                "10 de marzo",
            ),
            ("es", period, "9:05 a.\u{202f}m. / 11:59 p.\u{202f}m."),
            ("es-MX", short, "mar 10 mar"),
            ("ru-RU", long, "вторник 10 марта 2026, 23:59"),
            ("ru", short, "вт 10 мар."),
            (
                "ja-JP",
                "{{ event.expires_at | date('%B%-d日 %A %p%-I時') }}",
                "3月10日 火曜日 午後11時",
            ),
            (
                "zh-Hant-TW",
                "{{ event.expires_at | date('%B %A') }}",
                "3月 星期二",
            ),
            (
                "el",
                "{{ event.expires_at | date('%-d %B') }}",
                "10 Μαρτίου",
            ),
            ("en-GB", period, "9:05 am / 11:59 pm"),
            ("en-GB", short, "Tue 10 Mar"),
            ("en", long, "Tuesday 10 March 2026, 23:59"),
            // AM and PM where the locale's words are those: as jiff writes them.
            ("fr", period, "9:05 AM / 11:59 PM"),
        ] {
            assert_eq!(
                offer(format, json!(locale)).as_deref(),
                Ok(want),
                "{locale}: {format}"
            );
        }
    }

    /// `locale=` overrides the user's; none (or a missing value) is hers, and she with none,
    /// or one the table does not cover (Arabic, a language's name), reads English.
    #[test]
    fn locale_overrides_the_users_and_an_uncovered_one_is_english() {
        let subject = "{{ event.expires_at | date('%A %-d %B') }}";
        for (source, locale, want) in [
            (subject, json!("fr-FR"), "mardi 10 mars"),
            (
                "{{ event.expires_at | date('%A %-d %B', locale='de') }}",
                json!("fr-FR"),
                "Dienstag 10 März",
            ),
            (
                "{{ event.expires_at | date('%A %-d %B', locale=profile.nothing) }}",
                json!("fr-FR"),
                "mardi 10 mars",
            ),
            (
                "{{ event.expires_at | date(locale='ja') }}",
                json!("fr-FR"),
                "2026-03-10",
            ),
            // The region and a POSIX tag's charset are shortened away, as for `currency`.
            (subject, json!("fr_CA.UTF-8"), "mardi 10 mars"),
            (subject, json!("pt-BR"), "terça-feira 10 março"),
            (subject, json!("nb-NO"), "tirsdag 10 mars"),
            (subject, json!("no"), "tirsdag 10 mars"),
            (subject, json!("ar-KW"), "Tuesday 10 March"),
            (subject, json!("French"), "Tuesday 10 March"),
            (subject, json!(5), "Tuesday 10 March"),
            (subject, json!(null), "Tuesday 10 March"),
            (
                "{{ event.expires_at | date('%A', locale='xx-YY') }}",
                json!("fr"),
                "Tuesday",
            ),
        ] {
            assert_eq!(
                offer(source, locale.clone()).as_deref(),
                Ok(want),
                "{source} ({locale})"
            );
        }
        let e = offer("{{ event.expires_at | date('%A', locale=5) }}", json!("fr"))
            .expect_err("a number is no locale");
        assert!(e.contains("`locale=` is a tag like 'fr', not 5"), "{e}");
        // Whatever the value: the call itself is wrong.
        assert!(offer("{{ event.missing | date(locale=['fr']) }}", json!("fr")).is_err());
    }

    /// Flags apply to a name as jiff applies them to its own (`^` in capitals, in any script;
    /// `#` turns `%p` to lower case, `%P` is lower case); a width, which jiff ignores for text,
    /// is ignored; `%%B` is text; what jiff refuses it still refuses.
    #[test]
    fn flags_and_escapes_apply_to_the_locales_names() {
        for (format, locale, want) in [
            ("%^A %^B", "de", "DIENSTAG MÄRZ"),
            ("%^a %^b", "ru", "ВТ МАР."),
            ("%#A %-B %_10b %:B", "fr", "mardi mars mars mars"),
            (
                "%p %P %#p %^P",
                "es",
                "p.\u{202f}m. p.\u{202f}m. p.\u{202f}m. P.\u{202f}M.",
            ),
            ("%p %P %#p %^P", "en-GB", "pm pm pm PM"),
            ("%p %P %#p %^P", "fr", "PM pm pm PM"),
            ("%%B %%%B 100%% %-%%B", "fr", "%B %mars 100% %mars"),
            (
                "%.3f %:z %::z %-d %e %B",
                "fr",
                ".000 +01:00 +01:00:00 10 10 mars",
            ),
            ("é%Bé", "fr", "émarsé"),
        ] {
            let source = format!("{{{{ event.expires_at | date('{format}') }}}}");
            assert_eq!(
                offer(&source, json!(locale)).as_deref(),
                Ok(want),
                "{format} ({locale})"
            );
        }
        for bad in ["%300B", "%", "%^", "%K %B", "%:"] {
            let source = format!("{{{{ event.expires_at | date('{bad}') }}}}");
            for locale in ["en", "fr"] {
                assert!(offer(&source, json!(locale)).is_err(), "{bad} ({locale})");
            }
        }
    }

    /// `%c`, `%x`, `%X` and `%r` are strftime's C locale forms, in English whatever the
    /// locale, not jiff's `2026 M03 10`.
    #[test]
    fn the_locale_directives_are_the_c_locales_forms() {
        for locale in [json!("en"), json!("fr-FR"), json!("ja")] {
            assert_eq!(
                offer(
                    "{{ event.expires_at | date('%c|%x|%X|%r') }}",
                    locale.clone()
                )
                .as_deref(),
                Ok("Tue Mar 10 23:59:59 2026|03/10/26|23:59:59|11:59:59 PM"),
                "{locale}"
            );
            assert_eq!(
                offer("{{ event.morning | date('%c') }}", locale.clone()).as_deref(),
                Ok("Sun Jan  4 09:05:00 2026"),
                "{locale}"
            );
        }
    }

    /// English's names are jiff's own, so an English format is given to jiff unchanged; the
    /// generated table follows the currency table, and each of its tags finds its own names.
    #[test]
    fn the_names_table_is_whole_and_english_is_jiffs() {
        use super::{names, Names};
        let english = names(None);
        assert!(english.english());
        let sample = |i: i8| {
            jiff::civil::date(2026, i, 1)
                .at(i, 0, 0, 0)
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .expect("a time")
        };
        for month in 1..=12 {
            let z = sample(month);
            let jiff = |f: &str| jiff::fmt::strtime::format(f, &z).expect("formats");
            assert_eq!(english.month(month, false), jiff("%B"));
            assert_eq!(english.month(month, true), jiff("%b"));
            assert_eq!(
                english.weekday(z.weekday().to_sunday_zero_offset(), false),
                jiff("%A")
            );
            assert_eq!(
                english.weekday(z.weekday().to_sunday_zero_offset(), true),
                jiff("%a")
            );
        }
        assert!(english.plain_meridiem());
        for (tag, words) in super::names::LOCALES {
            let found: &Names = names(Some(tag));
            assert_eq!(found.0, words.0, "{tag}");
            assert_eq!(found.0.split('|').count(), super::WORDS, "{tag}");
            assert!(found.0.split('|').all(|w| !w.is_empty()), "{tag}");
        }
    }

    /// `waymark validate` takes `locale=` on `date`, and refuses one written as text that is
    /// no tag, at its line and column, as it does for `currency`.
    #[test]
    fn validate_checks_a_dates_locale_as_a_currencys() {
        use crate::template::check;
        for fine in [
            "{{ event.at | date('%A %-d %B', locale='fr') }}",
            "{{ event.at | date(locale='de_CH.UTF-8', tz='Europe/Zurich') }}",
            "{{ event.at | date('%B', locale=profile.locale) }}",
            "{{ event.at | date(locale='xx-YY') }}",
        ] {
            check(fine).expect(fine);
        }
        let e = check("Offre\n  {{ event.at | date('%A', locale='French') }}").expect_err("French");
        assert_eq!((e.line, e.column), (Some(2), Some(35)), "{e}");
        assert!(
            e.message
                .starts_with("date: 'French' is not a locale tag: write one like locale='de-DE'"),
            "{e}"
        );
        let e = check("{{ event.at | date('%A', locale=5) }}").expect_err("5");
        assert!(e.message.contains("locale"), "{e}");
    }

    #[test]
    fn what_is_not_a_time_or_a_zone_says_what_to_write() {
        let e = show("{{ 'soon' | date }}", json!({})).expect_err("not a time");
        assert!(e.contains("is not a time: give RFC 3339 text"), "{e}");
        let e = show("{{ event.at | date(tz='Mars/Olympus') }}", json!({})).expect_err("zone");
        assert!(e.contains("`Mars/Olympus` is not an IANA time zone"), "{e}");
        let e = show("{{ event.at | date(zone='UTC') }}", json!({})).expect_err("unknown kwarg");
        assert!(e.contains("zone"), "{e}");
        // A profile's zone that is not a zone falls back to UTC rather than failing the send.
        assert_eq!(
            show(
                "{{ event.at | date('%H:%M') }}",
                json!({"timezone": "nowhere"})
            )
            .as_deref(),
            Ok("18:30")
        );
    }
}
