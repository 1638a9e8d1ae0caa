//! The numeric filters `round` and `abs` as a message needs them: a value the user or the event
//! does not have prints nothing (as it does without the filter), and a number sent as text
//! (`"19.99"`, as many apps send prices) is the number it says.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// `value`, or the number its text says; `Err` with `filter`'s name for anything else.
fn number(filter: &str, value: Value) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::Number => Ok(value),
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim();
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::from(i));
            }
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::from(f)),
                _ => Err(not_a_number(filter, &value)),
            }
        }
        _ => Err(not_a_number(filter, &value)),
    }
}

fn not_a_number(filter: &str, value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{filter}: {value} ({}) is not a number", value.kind()),
    )
}

/// Whether `value` is missing: printed as nothing, so passed on as it is.
pub(super) fn missing(value: &Value) -> bool {
    value.is_undefined() || value.is_none()
}

/// MiniJinja's `round(precision, method)`, forgiving as the module says.
pub fn round(
    value: Value,
    precision: Option<i32>,
    method: Option<&str>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if missing(&value) {
        // The arguments are still checked, so a mistake in them shows whatever the data is.
        minijinja::filters::round(Value::from(0), precision, method, kwargs)?;
        return Ok(value);
    }
    minijinja::filters::round(number("round", value)?, precision, method, kwargs)
}

/// MiniJinja's `format` (`"%.2f" | format(event.total)`): given a value the user or the event
/// does not have, it prints nothing, as the value alone would, instead of failing the message
/// (`'string' cannot be formatted in fixed-point notation`, of a value that is not there).
pub fn format(
    state: &mut minijinja::State,
    format_str: &Value,
    args: minijinja::value::Rest<minijinja::value::ValueOrKwargs>,
) -> Result<Value, Error> {
    if args.iter().any(|a| missing(a)) {
        return Ok(Value::UNDEFINED);
    }
    minijinja::filters::format(state, format_str, args)
}

/// MiniJinja's `abs`, forgiving as the module says.
pub fn abs(value: Value) -> Result<Value, Error> {
    if missing(&value) {
        return Ok(value);
    }
    minijinja::filters::abs(number("abs", value)?)
}

#[cfg(test)]
mod tests {
    use crate::template::render;
    use serde_json::json;

    fn show(source: &str, event: serde_json::Value) -> Result<String, String> {
        let ctx = json!({"event": event, "profile": {}, "journey": {"id": "j"}});
        render(source, &ctx, false).map_err(|e| e.message)
    }

    #[test]
    fn a_missing_value_prints_nothing_and_text_is_read_as_a_number() {
        let src = "Total: {{ event.total | round(2) }} ({{ event.delta | abs }})";
        assert_eq!(show(src, json!({})).as_deref(), Ok("Total:  ()"));
        assert_eq!(
            show(src, json!({"total": null, "delta": null})).as_deref(),
            Ok("Total:  ()")
        );
        assert_eq!(
            show(src, json!({"total": "19.987", "delta": "-3"})).as_deref(),
            Ok("Total: 19.99 (3)")
        );
        assert_eq!(
            show(src, json!({"total": 19.987, "delta": -2.5})).as_deref(),
            Ok("Total: 19.99 (2.5)")
        );
        assert_eq!(
            show("{{ event.total | round | default('n/a') }}", json!({})).as_deref(),
            Ok("n/a")
        );
        let e = show(src, json!({"total": "soon"})).expect_err("not a number");
        assert!(e.contains("round: soon (string) is not a number"), "{e}");
        let e = show("{{ event.total | round(method='up') }}", json!({})).expect_err("typo");
        assert!(e.contains("method"), "{e}");
    }

    #[test]
    fn a_format_of_a_missing_value_prints_nothing() {
        let src = r#"Total: {{ "%.2f" | format(event.total) }}"#;
        assert_eq!(show(src, json!({})).as_deref(), Ok("Total: "));
        assert_eq!(show(src, json!({"total": null})).as_deref(), Ok("Total: "));
        assert_eq!(
            show(src, json!({"total": 19.987})).as_deref(),
            Ok("Total: 19.99")
        );
        let dflt = r#"{{ "%.2f" | format(event.total) | default("n/a") }}"#;
        assert_eq!(show(dflt, json!({})).as_deref(), Ok("n/a"));
        // A value there but not a number is still an error that says so.
        assert!(show(src, json!({"total": "soon"})).is_err());
    }
}
