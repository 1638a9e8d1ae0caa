//! The `date` filter: a time from a profile or an event, formatted for a message in the user's
//! own time zone (`{{ profile.trial_ends_at | date("%A %-d %B") }}`). Reads no clock: the same
//! input renders the same text.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// What `date` prints without a format: the day, as ISO 8601 writes it.
const DEFAULT_FORMAT: &str = "%Y-%m-%d";

/// `value | date(format, tz=zone)`: `value` is RFC 3339 text (`2026-12-24T18:00:00Z`), a day
/// (`2026-12-24`), a local date and time (`2026-12-24T18:00:00`, read in the zone), seconds
/// since 1970, or milliseconds since 1970 (a number from 1e11 on: `Date.now()`). It is shown in `tz` when given, else in the user's zone (`profile.timezone`,
/// else the journey's `timezone`, else UTC); `format` takes strftime's directives (`%Y-%m-%d`
/// when absent). Nothing (an absent trait) prints as nothing, as an absent value does anywhere
/// else in a template.
pub fn date(
    state: &State<'_, '_>,
    value: Value,
    format: Option<&str>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let tz_name: Option<&str> = kwargs.get("tz")?;
    kwargs.assert_all_used()?;
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
    let format = format.unwrap_or(DEFAULT_FORMAT);
    jiff::fmt::strtime::format(format, &zoned)
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

/// Text as a time in `tz`: RFC 3339 (shown in `tz`), or a local date and time or a day (read in
/// `tz`). Shared with the direct renderer, so both read the same texts the same way.
pub(crate) fn zoned_text(text: &str, tz: &TimeZone) -> Option<ZonedDateTime> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts.to_zoned_datetime(tz.clone()));
    }
    // A local time the clocks skip is the first instant after the gap, as for a `wait_until`
    // time of day (`engine::local_instant`).
    let local = match text.parse::<DateTime>() {
        Ok(dt) => dt,
        Err(_) => text.parse::<Date>().ok()?.at(0, 0, 0, 0),
    };
    crate::engine::local_instant(tz, local).map(|t| t.to_zoned_datetime(tz.clone()))
}

/// Why the fixed arguments of a `date` call cannot work (a `format` jiff cannot format with, a
/// `tz` that is no IANA zone), said as the filter would say it at every send, with what to write
/// instead. Read by `template::check` from the call's string literals, so `waymark validate`
/// refuses what would make every message `render_error`.
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
    // Whether a format can be applied does not depend on the time it is given: a time that
    // every directive can show stands for all.
    let sample = Timestamp::UNIX_EPOCH.to_zoned_datetime(TimeZone::UTC);
    jiff::fmt::strtime::format(format, &sample)
        .err()
        .map(|e| {
            format!(
                "date: cannot format with `{format}`: {e}; write strftime's directives, like '%A %-d %B, %H:%M' (`%%` for a `%` sign)"
            )
        })
}

/// `format` applied to a time: what the filter prints.
pub(crate) fn format(format: Option<&str>, zoned: &ZonedDateTime) -> Option<String> {
    jiff::fmt::strtime::format(format.unwrap_or(DEFAULT_FORMAT), zoned).ok()
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
                "date: takes a format and `tz=`, not `zone=`",
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
