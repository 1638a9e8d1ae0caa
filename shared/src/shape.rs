//! How each part of a journey file is written: the example a parse error quotes when a value has
//! the wrong shape (a string where a map goes, a list where a map goes). Knows nothing of serde
//! beyond the wording of its messages, and never reads a file.

/// Each part of a journey that holds a map or a list, by its path with indices written `[]`, and
/// the value that part takes, written the way a journey file writes it. A test puts every one of
/// them into a journey and parses it, so an example here cannot drift from the format.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("trigger", r#"{event: cart_abandoned, where: "event.total > 0"}"#),
    ("trigger.repeated", "{event: episode_watched, times: 3, within: 7d}"),
    ("trigger.inactive", "{events: [app_opened, data_used], for: 14d}"),
    ("trigger.inactive.events", "[app_opened, data_used]"),
    (
        "trigger.schedule",
        r#"{cron: "0 10 * * mon", timezone: user, where: "profile.plan == 'free'"}"#,
    ),
    ("reentry", "{after: 30d}"),
    ("exit_when", "[{event: order_completed}]"),
    ("exit_when[]", r#"{event: order_completed, where: "event.total > 0"}"#),
    ("goal", "{event: order_completed, within: 7d}"),
    ("quiet_hours", r#"{start: "21:00", end: "08:00"}"#),
    (
        "steps",
        "[{id: wait_30m, wait: 30m}, {id: remind, send: {push: {title: Still there?, body: Your cart is waiting}}}]",
    ),
    ("steps[]", "{id: wait_30m, wait: 30m}"),
    (
        "steps[].wait_until",
        r#"{time: "09:00", weekdays: [mon, tue, wed, thu, fri]}"#,
    ),
    ("steps[].wait_until.weekdays", "[mon, tue, wed, thu, fri]"),
    (
        "steps[].wait_for",
        "{event: app_opened, timeout: 14d, on_event: ask_feedback, on_timeout: nudge}",
    ),
    (
        "steps[].branch",
        r#"{cases: [{when: "profile.plan == 'pro'", goto: upsell}], else: nudge}"#,
    ),
    (
        "steps[].branch.cases",
        r#"[{when: "profile.plan == 'pro'", goto: upsell}]"#,
    ),
    (
        "steps[].branch.cases[]",
        r#"{when: "profile.plan == 'pro'", goto: upsell}"#,
    ),
    (
        "steps[].split",
        "{paths: [{name: a, weight: 50, goto: copy_a}, {name: b, weight: 50, goto: copy_b}], holdout: 10}",
    ),
    (
        "steps[].split.paths",
        "[{name: a, weight: 50, goto: copy_a}, {name: b, weight: 50, goto: copy_b}]",
    ),
    ("steps[].split.paths[]", "{name: a, weight: 50, goto: copy_a}"),
    (
        "steps[].send",
        r#"{sms: {body: "Your offer: {{ profile.offer }}"}, fallback: {email: {subject: Your offer, text: "{{ profile.offer }}"}}}"#,
    ),
    (
        "steps[].send.fallback",
        "{email: {subject: Your offer, text: See the app}}",
    ),
    (
        "steps[].send.email",
        r#"{subject: "Hi {{ profile.first_name }}", html: "<p>Hello</p>", text: Hello}"#,
    ),
    ("steps[].send.sms", r#"{body: "Your code: {{ event.code }}"}"#),
    (
        "steps[].send.push",
        r#"{title: Still there?, body: Your cart is waiting, data: {deeplink: "shop://cart"}}"#,
    ),
    (
        "steps[].send.in_app",
        "{title: Set up your account, body: Three steps and you are done}",
    ),
    ("steps[].send.push.data", r#"{deeplink: "shop://cart"}"#),
    ("steps[].send.in_app.data", r#"{screen: "setup"}"#),
    (
        "steps[].send.webhook",
        r#"{url: "https://example.com/hook", method: POST, headers: {X-Source: waymark}, body: "{{ user_id }}"}"#,
    ),
    ("steps[].send.webhook.headers", "{X-Source: waymark}"),
    ("steps[].update", "{set: {plan: pro}, unset: [trial_ends_at]}"),
    ("steps[].update.set", "{plan: pro}"),
    ("steps[].update.unset", "[trial_ends_at]"),
];

/// The choices that take a value, by the pattern of the part that makes them: the choice, and
/// what its value is. The advice listing a part's choices (`reentry: always`) writes these with
/// their value, since the bare name (`reentry: after`) is an error too.
pub const VALUED_CHOICES: &[(&str, &str, &str)] = &[("reentry", "after", "<duration>")];

/// The path's pattern: indices written `[]`, and a send's `fallback` chain read as the send it
/// is (`steps[2].send.fallback.fallback.sms` -> `steps[].send.sms`).
pub fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    while let Some(i) = out.find(".send.fallback.") {
        out.replace_range(i..i + ".send.fallback.".len(), ".send.");
    }
    out
}

/// The example in `examples` for the part at `path`, if it has one.
pub fn example(examples: &[(&str, &'static str)], path: &str) -> Option<&'static str> {
    let p = pattern(path);
    examples
        .iter()
        .find(|(pattern, _)| *pattern == p)
        .map(|(_, e)| *e)
}

/// The example as a line of a journey file: `branch: {...}`, or `- {...}` for an item of a list.
pub fn written(path: &str, example: &str) -> String {
    if path.ends_with(']') {
        return format!("- {example}");
    }
    let name = path.rsplit('.').next().unwrap_or(path);
    let name = name.split('[').next().unwrap_or(name);
    format!("{name}: {example}")
}

/// Serde's "invalid type" message at `path`, made into advice from `examples`: what was found,
/// in a journey author's words, and how the part is written. `None` when the message is of
/// another kind or the part has no example. Returns the path the advice is about: a list where
/// a map goes is read by serde item by item as the map's fields, so its message names the first
/// item (`steps[1].branch[0]`); the advice names the part (`steps[1].branch`) and the list.
pub fn advise(
    examples: &[(&str, &'static str)],
    path: &str,
    message: &str,
) -> Option<(String, String)> {
    let rest = message.strip_prefix("invalid type: ")?;
    // A choice that takes a value written bare (`reentry: after`): serde names the choice as
    // the path's last part.
    // A choice that takes no value written with one (`reentry: {after_exit: true}`).
    if rest.ends_with(", expected unit") {
        let (part, choice) = path.rsplit_once('.')?;
        return Some((
            part.to_string(),
            format!("`{choice}` takes no value: write `{part}: {choice}`"),
        ));
    }
    if rest.starts_with("unit variant, expected newtype variant") {
        let (part, choice) = path.rsplit_once('.')?;
        let example = example(examples, part)?;
        return Some((
            part.to_string(),
            format!(
                "`{choice}` needs a value: write it like `{}`",
                written(part, example)
            ),
        ));
    }
    if let Some(example) = example(examples, path) {
        return Some((path.to_string(), advice(path, example, rest, false)));
    }
    let part = path.trim_end_matches(|c: char| c.is_ascii_digit() || c == '[' || c == ']');
    if part.len() == path.len() {
        return None;
    }
    let example = example(examples, part).filter(|e| e.starts_with('{'))?;
    Some((part.to_string(), advice(part, example, rest, true)))
}

fn advice(path: &str, example: &str, rest: &str, listed: bool) -> String {
    let found = if listed {
        "a list".to_string()
    } else {
        let found = rest.split(", expected").next().unwrap_or(rest);
        found_words(found)
    };
    let wants = if example.starts_with('[') {
        "a list"
    } else if example.starts_with('{') {
        "a map"
    } else {
        "a value"
    };
    format!(
        "this is {found}, where {wants} goes: write it like `{}`",
        written(path, example)
    )
}

/// An advice listing the choices of the part at `path` ("write one of `never`, `after`"), with
/// each choice that takes a value written with it (`after: <duration>`) and the part's example.
pub fn with_valued_choices(
    examples: &[(&str, &'static str)],
    path: &str,
    advice: String,
) -> String {
    let Some(example) = example(examples, path).filter(|_| advice.contains("write one of ")) else {
        return advice;
    };
    let p = pattern(path);
    let mut out = advice;
    let mut changed = false;
    for (_, choice, value) in VALUED_CHOICES.iter().filter(|(part, _, _)| *part == p) {
        let bare = format!("`{choice}`");
        if out.contains(&bare) {
            out = out.replace(&bare, &format!("`{choice}: {value}`"));
            changed = true;
        }
    }
    if changed {
        out.push_str(&format!(" (like `{}`)", written(path, example)));
    }
    out
}

/// Serde's name of what it found (`string "x"`, `map`, `sequence`, `integer `5``), in words.
pub(crate) fn found_words(found: &str) -> String {
    let unquoted = |s: &str| s.trim_matches('`').to_string();
    if let Some(s) = found.strip_prefix("string ") {
        format!("the text {s}")
    } else if found == "map" {
        "a map".to_string()
    } else if found == "sequence" {
        "a list".to_string()
    } else if let Some(n) = found
        .strip_prefix("integer ")
        .or_else(|| found.strip_prefix("floating point "))
    {
        format!("the number {}", unquoted(n))
    } else if let Some(b) = found.strip_prefix("boolean ") {
        format!("`{}`", unquoted(b))
    } else if found == "null" || found == "unit value" {
        "empty".to_string()
    } else {
        found.to_string()
    }
}

/// Serde's Rust-side names for what it expected (`struct Branch`), in words.
pub fn plain(message: &str) -> String {
    match message.find("expected struct ") {
        Some(i) => format!("{}expected a map", &message[..i]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl;
    use crate::journey::Journey;
    use serde_json::{json, Value};

    /// Puts `value` at `pattern` in `doc`, making the maps and lists on the way (index 0 for `[]`).
    fn put(doc: &mut Value, pattern: &str, value: Value) {
        let mut at = doc;
        let segments: Vec<&str> = pattern.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let (name, indexed) = match seg.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (*seg, false),
            };
            let map = at.as_object_mut().expect("a map on the way");
            if last && !indexed {
                map.insert(name.to_string(), value);
                return;
            }
            let slot = map.entry(name.to_string()).or_insert_with(|| {
                if indexed {
                    json!([])
                } else {
                    json!({})
                }
            });
            if indexed {
                let list = slot.as_array_mut().expect("a list on the way");
                if list.is_empty() {
                    list.push(json!({}));
                }
                if last {
                    list[0] = value;
                    return;
                }
                at = &mut list[0];
            } else {
                at = slot;
            }
        }
    }

    fn yaml(text: &str) -> Value {
        dsl::parse_located::<Value>("example", text, &[], str::to_string)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .expect("not empty")
            .value
    }

    #[test]
    fn every_example_parses_where_it_goes() {
        for (pattern, example) in EXAMPLES {
            let mut doc = json!({"id": "j", "name": "J", "trigger": {"event": "e"},
                "steps": [{"id": "a", "wait": "1h"}]});
            // A nested part goes into its parents' examples, as a file would hold it.
            let segments: Vec<&str> = pattern.split('.').collect();
            for n in 1..=segments.len() {
                let prefix = segments[..n].join(".");
                if let Some(e) = EXAMPLES.iter().find(|(p, _)| *p == prefix).map(|(_, e)| e) {
                    put(&mut doc, &prefix, yaml(e));
                }
            }
            let parsed: Result<Journey, _> = serde_json::from_value(doc.clone());
            assert!(parsed.is_ok(), "{pattern}: {example}: {parsed:?} in {doc}");
            // And the line an error quotes is YAML that reads as the same value.
            let line = written(pattern, example);
            let again = yaml(&line);
            let again = match again {
                Value::Array(mut items) => items.remove(0),
                Value::Object(map) => map.into_iter().next().expect("one entry").1,
                other => other,
            };
            assert_eq!(again, yaml(example), "{line}");
        }
    }

    #[test]
    fn a_valued_choice_is_in_its_parts_example() {
        for (part, choice, _) in VALUED_CHOICES {
            let e = example(EXAMPLES, part).unwrap_or_else(|| panic!("{part} has no example"));
            assert!(e.contains(&format!("{choice}: ")), "{part}: {e}");
        }
    }

    #[test]
    fn patterns_drop_indices_and_fallback_chains() {
        assert_eq!(
            pattern("steps[12].branch.cases[3]"),
            "steps[].branch.cases[]"
        );
        assert_eq!(
            pattern("steps[2].send.fallback.fallback.sms"),
            "steps[].send.sms"
        );
        assert_eq!(pattern("steps[2].send.fallback"), "steps[].send.fallback");
        assert_eq!(example(EXAMPLES, "trigger.schedule.cron"), None);
    }

    #[test]
    fn advice_says_what_was_found_and_how_to_write_it() {
        let (p, a) = advise(
            EXAMPLES,
            "steps[0].send.push",
            r#"invalid type: string "hello", expected struct PushTemplate"#,
        )
        .expect("advice");
        assert_eq!(p, "steps[0].send.push");
        assert_eq!(
            a,
            r#"this is the text "hello", where a map goes: write it like `push: {title: Still there?, body: Your cart is waiting, data: {deeplink: "shop://cart"}}`"#
        );
        let (p, a) = advise(
            EXAMPLES,
            "steps[1].branch[0]",
            "invalid type: map, expected a sequence",
        )
        .expect("advice");
        assert_eq!(p, "steps[1].branch");
        assert!(
            a.starts_with("this is a list, where a map goes: write it like `branch: {cases:"),
            "{a}"
        );
        let (_, a) = advise(
            EXAMPLES,
            "exit_when",
            "invalid type: integer `5`, expected a sequence",
        )
        .expect("advice");
        assert!(
            a.starts_with("this is the number 5, where a list goes"),
            "{a}"
        );
        // A wrong item in a list of words is not a list where a map goes.
        assert_eq!(
            advise(
                EXAMPLES,
                "trigger.inactive.events[0]",
                "invalid type: map, expected a string"
            ),
            None
        );
        // Parts without an example keep serde's message (a duration's says how to write one).
        assert_eq!(
            advise(
                EXAMPLES,
                "steps[0].wait",
                "invalid type: integer `5`, expected a duration"
            ),
            None
        );
        assert_eq!(
            plain(r#"invalid type: string "x", expected struct Step"#),
            r#"invalid type: string "x", expected a map"#
        );
    }
}
