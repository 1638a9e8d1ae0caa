//! `truncate`, the text filter Jinja has and MiniJinja's core does not: a product name or a
//! note cut to fit a push title or an SMS, whole words kept, as Jinja cuts it.

use minijinja::value::Kwargs;
use minijinja::{Error, ErrorKind, Value};

/// Jinja's `truncate(length=255, killwords=false, end='...', leeway=5)` (`leeway` by its name
/// only; 5 is Jinja's default policy): text longer than
/// `length` (plus `leeway`) is cut to `length` characters with `end` at its end, at the last
/// space before the cut unless `killwords`. A value the user or the event does not have prints
/// nothing, as it does without the filter; a number or other value is cut as its text.
pub fn truncate(
    value: Value,
    length: Option<usize>,
    killwords: Option<bool>,
    end: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let length = pick("length", length, kwargs.get("length")?, 255)?;
    let killwords = pick("killwords", killwords, kwargs.get("killwords")?, false)?;
    let end = pick("end", end, kwargs.get("end")?, Value::from("..."))?;
    let Some(end) = end.as_str().map(str::to_string) else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("truncate: its end is text in quotes, not {end}"),
        ));
    };
    let leeway = kwargs.get::<Option<usize>>("leeway")?.unwrap_or(5);
    kwargs.assert_all_used()?;
    if super::number::missing(&value) {
        return Ok(value);
    }
    // A string's text as it is; another value's as it prints.
    let text = value.to_string();
    if text.chars().count() <= length.saturating_add(leeway) {
        return Ok(Value::from(text));
    }
    // A length shorter than its end (Jinja refuses it) is a hard cut with no end.
    let end = if end.chars().count() > length {
        ""
    } else {
        end.as_str()
    };
    let cut: String = text.chars().take(length - end.chars().count()).collect();
    let kept = if killwords {
        cut.as_str()
    } else {
        cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head)
    };
    Ok(Value::from(format!("{kept}{end}")))
}

/// A positional argument, else the keyword of the same name, else the default; both given is
/// an error (Jinja's too).
fn pick<T>(name: &str, positional: Option<T>, keyword: Option<T>, default: T) -> Result<T, Error> {
    match (positional, keyword) {
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("truncate: `{name}` is given twice"),
        )),
        (p, k) => Ok(p.or(k).unwrap_or(default)),
    }
}

#[cfg(test)]
mod tests {
    use crate::template::render;
    use serde_json::json;

    fn show(source: &str) -> Result<String, String> {
        let ctx = json!({"event": {"name": "Trail running shoes, waterproof", "n": 123456,
            "none": null}, "profile": {}, "journey": {"id": "j"}});
        render(source, &ctx, false).map_err(|e| e.message)
    }

    /// As Jinja cuts: whole words unless `killwords`, `end` counted in the length, `leeway`
    /// letting a little more through, keywords or positions, a missing value printing nothing.
    #[test]
    fn truncate_cuts_as_jinja_does() {
        for (template, out) in [
            ("{{ event.name | truncate(20) }}", "Trail running..."),
            (
                "{{ event.name | truncate(20, true) }}",
                "Trail running sho...",
            ),
            (
                "{{ event.name | truncate(20, killwords=true, end='…') }}",
                "Trail running shoes…",
            ),
            (
                "{{ event.name | truncate(length=14, end='') }}",
                "Trail running",
            ),
            (
                "{{ event.name | truncate(29, leeway=2) }}",
                "Trail running shoes, waterproof",
            ),
            (
                "{{ event.name | truncate(29, leeway=0) }}",
                "Trail running shoes,...",
            ),
            // Within the default leeway of 5: as it is.
            (
                "{{ event.name | truncate(29) }}",
                "Trail running shoes, waterproof",
            ),
            (
                "{{ event.name | truncate }}",
                "Trail running shoes, waterproof",
            ),
            ("{{ event.n | truncate(5, true, leeway=0) }}", "12..."),
            ("[{{ event.none | truncate(5) }}]", "[]"),
            ("[{{ event.missing | truncate(5) }}]", "[]"),
            (
                "{{ 'Straße Ünïcødé' | truncate(9, true, '', leeway=0) }}",
                "Straße Ün",
            ),
        ] {
            assert_eq!(show(template).as_deref(), Ok(out), "{template}");
        }
        // Shorter than its end: cut, with none.
        assert_eq!(show("{{ event.name | truncate(2) }}").as_deref(), Ok("Tr"));
        assert!(show("{{ event.name | truncate(5, end=5) }}").is_err());
        assert!(show("{{ event.name | truncate(5, lenght=3) }}").is_err());
        // A length past any text: as it is (no overflow with the leeway).
        assert_eq!(
            show("{{ event.name | truncate(18446744073709551615) }}").as_deref(),
            Ok("Trail running shoes, waterproof")
        );
    }
}
