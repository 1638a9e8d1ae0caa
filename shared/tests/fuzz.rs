//! Fuzzing the parsers that take outside input: event payloads, journey files, conditions and
//! templates. None may panic, every error says where the problem is (where the API has a place
//! for it), and hostile shapes (10,000 levels of nesting, floods of traits, invalid UTF-8) are
//! refused without overflowing the stack. Bounded case counts keep this a normal test run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use jiff::Timestamp;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};
use waymark::condition::{Condition, Scope};
use waymark::event::{self, FieldError, Kind, Limits};
use waymark::{dsl, template};

/// Case counts for a normal run; `WAYMARK_FUZZ_SCALE=n` multiplies them for a longer campaign.
fn config(cases: u32) -> Config {
    let scale = std::env::var("WAYMARK_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    Config {
        cases: cases.saturating_mul(scale.max(1)),
        // Failures print their minimal input; nothing is written next to the tests.
        failure_persistence: None,
        ..Config::default()
    }
}

fn now() -> Timestamp {
    "2026-03-02T12:00:00Z".parse().expect("a time")
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("2026-03-02T12:00:00Z")),
        Just(json!("+14155550123")),
        Just(json!("ada@example.com")),
        Just(json!("Europe/Paris")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys that mean something somewhere (event fields, special traits, condition paths), or not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "userId",
            "anonymousId",
            "event",
            "properties",
            "traits",
            "context",
            "timestamp",
            "messageId",
            "type",
            "batch",
            "email",
            "phone",
            "timezone",
            "subscriptions",
            "push_tokens",
            "devices",
            "platform",
            "token",
            "total",
            "items",
            "a",
            "b",
            "x y",
        ])
        .prop_map(str::to_string),
        ".{0,6}",
    ]
}

fn check_field_errors(errors: &[FieldError]) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "an error without a reason");
    for e in errors {
        prop_assert!(!e.field.is_empty(), "error without a field: {e:?}");
        prop_assert!(!e.message.is_empty(), "error without a message: {e:?}");
    }
    Ok(())
}

fn check_single(kind: Kind, body: &[u8]) -> Result<(), TestCaseError> {
    match event::parse_single(kind, body, now(), &Limits::default()) {
        Ok(e) => {
            prop_assert!(!e.user_id.is_empty());
            prop_assert!(!e.message_id.is_empty());
            prop_assert_eq!(e.kind, kind);
            if kind == Kind::Track {
                prop_assert!(e.event.as_deref().is_some_and(|n| !n.is_empty()));
            }
        }
        Err(errors) => {
            check_field_errors(&errors)?;
            if let Ok(text) = std::str::from_utf8(body) {
                if serde_json::from_str::<Value>(text).is_err()
                    && body.len() <= event::MAX_EVENT_BYTES
                {
                    // Not JSON: the one error says where the JSON breaks.
                    prop_assert_eq!(errors.len(), 1);
                    prop_assert!(
                        errors[0].message.contains("line") && errors[0].message.contains("column"),
                        "no position in {:?}",
                        errors[0]
                    );
                }
            } else {
                prop_assert!(
                    errors[0].message.contains("at byte"),
                    "no position in {:?}",
                    errors[0]
                );
            }
        }
    }
    Ok(())
}

fn check_batch(body: &[u8]) -> Result<(), TestCaseError> {
    let items = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("batch").and_then(Value::as_array).map(Vec::len));
    match event::parse_batch(body, now(), &Limits::default()) {
        Ok(out) => {
            let n = items.unwrap_or(0);
            prop_assert_eq!(out.accepted.len() + out.rejected.len(), n);
            let mut seen = std::collections::BTreeSet::new();
            for r in &out.rejected {
                let i = r.index.expect("a batch item has an index");
                prop_assert!(i < n && seen.insert(i), "bad index {i} of {n}");
                check_field_errors(&r.errors)?;
                let prefix = format!("batch[{i}]");
                for e in &r.errors {
                    prop_assert!(
                        e.field.starts_with(&prefix),
                        "{} is not under {prefix}",
                        e.field
                    );
                }
            }
        }
        Err(errors) => check_field_errors(&errors)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn events_from_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512), track in any::<bool>()) {
        let kind = if track { Kind::Track } else { Kind::Identify };
        check_single(kind, &bytes)?;
        check_batch(&bytes)?;
    }

    #[test]
    fn events_from_json_of_the_wrong_shape(
        fields in btree_map(key(), json_value(), 0..10),
        traits in btree_map(key(), json_value(), 0..8),
        track in any::<bool>(),
    ) {
        let mut body: Map<String, Value> = fields.into_iter().collect();
        if !traits.is_empty() {
            body.insert("traits".into(), Value::Object(traits.into_iter().collect()));
        }
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let kind = if track { Kind::Track } else { Kind::Identify };
        check_single(kind, &bytes)?;
    }

    #[test]
    fn batches_of_events_of_the_wrong_shape(
        items in vec(btree_map(key(), json_value(), 0..8), 0..12),
        context in json_value(),
    ) {
        let batch: Vec<Value> = items
            .into_iter()
            .map(|m| Value::Object(m.into_iter().collect()))
            .collect();
        let bytes = serde_json::to_vec(&json!({"batch": batch, "context": context})).expect("JSON");
        check_batch(&bytes)?;
    }
}

// ------------------------------------------------------------------------------- journey files

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/journeys");
    dsl::journey_files(&dir)
        .expect("the examples folder")
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            (name, std::fs::read_to_string(&p).expect("an example"))
        })
        .collect()
}

/// One edit to a journey file's lines.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Indent(usize, usize),
    Dedent(usize),
    Insert(usize, String),
    Truncate(usize),
    Splice(usize, usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        ".{0,20}",
        prop::sample::select(vec![
            "  - id: x",
            "    wait: 30m",
            "wait: 0s",
            "wait: 400d",
            "  exit: true",
            "next: nowhere",
            "    send:",
            "      push: {}",
            "trigger: {event: e, where: \"event.total >>\"}",
            "goto: steps",
            "- !!binary aGk=",
            "&a [1]",
            "*a",
            "{{ profile.",
            "{% for %}",
            "quiet_hours: {start: '25:00', end: '08:00'}",
            "reentry: {after: -1d}",
            "---",
            "id: \"x\\u0000\"",
            "timezone: Mars/Olympus",
            "where: \"((((event.a\"",
        ])
        .prop_map(str::to_string),
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), 1..6usize).prop_map(|(a, n)| Edit::Indent(a, n)),
        any::<usize>().prop_map(Edit::Dedent),
        (any::<usize>(), text.clone()).prop_map(|(a, t)| Edit::Insert(a, t)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<usize>(), text).prop_map(|(a, b, t)| Edit::Splice(a, b, t)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::Indent(i, k) if !lines.is_empty() => {
                lines[i % n] = format!("{}{}", " ".repeat(*k), lines[i % n]);
            }
            Edit::Dedent(i) if !lines.is_empty() => {
                lines[i % n] = lines[i % n].trim_start().to_string();
            }
            Edit::Insert(i, t) => lines.insert(i % (lines.len() + 1), t.clone()),
            Edit::Truncate(i) if !lines.is_empty() => {
                let l = &lines[i % n];
                let cut = l
                    .char_indices()
                    .map(|(k, _)| k)
                    .nth(i % (l.chars().count() + 1))
                    .unwrap_or(l.len());
                lines[i % n] = l[..cut].to_string();
            }
            Edit::Splice(i, at, t) if !lines.is_empty() => {
                let l = &lines[i % n];
                let cut = l
                    .char_indices()
                    .map(|(k, _)| k)
                    .nth(at % (l.chars().count() + 1))
                    .unwrap_or(l.len());
                lines[i % n] = format!("{}{t}{}", &l[..cut], &l[cut..]);
            }
            _ => {}
        }
    }
    lines.join("\n")
}

fn check_journey(text: &str) -> Result<(), TestCaseError> {
    // YAML breaks lines at \r too, as editors do.
    let lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .count()
        .max(1);
    match dsl::parse("fuzz.yaml", text) {
        Ok(j) => {
            prop_assert!(!j.id.is_empty());
            prop_assert!(!j.steps.is_empty());
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert_eq!(&e.file, "fuzz.yaml");
                prop_assert!(e.line >= 1 && e.column >= 1, "no position: {e:?}");
                prop_assert!(
                    e.line <= lines + 1,
                    "line {} of a {lines}-line file: {e:?}",
                    e.line
                );
                prop_assert!(!e.message.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn journey_files_from_arbitrary_text(text in ".{0,400}") {
        check_journey(&text)?;
    }

    #[test]
    fn journey_files_from_mutated_examples(pick in any::<usize>(), edits in vec(edit(), 1..6)) {
        let examples = examples();
        let (_, text) = &examples[pick % examples.len()];
        check_journey(&apply(text, &edits))?;
    }
}

// ---------------------------------------------------------------------------------- conditions

fn path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["event", "profile"]),
        vec(
            prop::sample::select(vec![
                ".a", ".b", ".total", ".items", "[0]", "[7]", "['x y']", ".plan",
            ]),
            1..4,
        ),
    )
        .prop_map(|(root, segs)| format!("{root}{}", segs.concat()))
}

fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "[a-z ]{0,6}".prop_map(|s| format!("'{s}'")),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "true",
            "false",
            "null",
            "[]",
            "[1, 'a', null]",
            "now()",
            "ago('7d')",
            "ago('30m')",
            "time('2026-01-01T00:00:00Z')",
            "'2026-03-01T00:00:00Z'",
        ])
        .prop_map(str::to_string),
    ]
}

fn comparison() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec![
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not in",
        "contains",
        "not contains",
    ]);
    prop_oneof![
        (path(), op.clone(), literal()).prop_map(|(p, o, l)| format!("{p} {o} {l}")),
        (literal(), prop::sample::select(vec!["in", "=="]), path())
            .prop_map(|(l, o, p)| format!("{l} {o} {p}")),
        path().prop_map(|p| format!("exists({p})")),
        (
            prop::sample::select(vec!["days_until", "days_since"]),
            path(),
            op,
            literal()
        )
            .prop_map(|(f, p, o, l)| format!("{f}({p}) {o} {l}")),
        path(),
    ]
}

fn condition_text() -> impl Strategy<Value = String> {
    comparison().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("not {c}")),
            inner.clone().prop_map(|c| format!("({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a} or {b}")),
        ]
    })
}

fn scope_values() -> impl Strategy<Value = (Value, Value)> {
    (
        btree_map(key(), json_value(), 0..8),
        btree_map(key(), json_value(), 0..8),
    )
        .prop_map(|(e, p)| {
            (
                Value::Object(e.into_iter().collect()),
                Value::Object(p.into_iter().collect()),
            )
        })
}

fn check_condition(src: &str, event: &Value, profile: &Value) -> Result<(), TestCaseError> {
    match Condition::parse(src) {
        Ok(c) => {
            prop_assert_eq!(c.source(), src);
            let scope = Scope {
                trigger: &serde_json::Value::Null,
                waited: &serde_json::Value::Null,
                event,
                profile,
                now: now(),
                zone: None,
            };
            let holds = c.eval(&scope);
            prop_assert_eq!(holds, c.eval(&scope), "evaluation is deterministic");
            if let Ok(negated) = Condition::parse(&format!("not ({src})")) {
                prop_assert_eq!(negated.eval(&scope), !holds, "not ({}) must negate it", src);
            }
        }
        Err(e) => {
            prop_assert!(
                e.offset <= src.chars().count(),
                "offset {} past the end of {src:?}",
                e.offset
            );
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn conditions_from_arbitrary_text(src in ".{0,120}", (event, profile) in scope_values()) {
        check_condition(&src, &event, &profile)?;
    }

    #[test]
    fn conditions_from_the_grammar_on_arbitrary_scopes(src in condition_text(), (event, profile) in scope_values()) {
        // Many parse; the rest are refused with a reason (`<` on a boolean, `in` a number...).
        check_condition(&src, &event, &profile)?;
    }
}

// ----------------------------------------------------------------------------------- templates

fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        ".{0,8}",
        prop::sample::select(vec![
            "{{ profile.first_name }}",
            "{{ event.total | default(0) }}",
            "{{ event.items | length }}",
            "{% for i in event.items %}{{ i.name }}{% endfor %}",
            "{% if profile.vip %}VIP{% endif %}",
            "{{ user_id | upper }}",
            "{{ journey.name ~ '!' }}",
            "{{ now }}",
            "{{ unsubscribe_url }}",
            "{{ event.items | join(', ') }}",
            "{{ profile.x.y.z }}",
            "{{ 1 / 0 }}",
            "{{ event.a[0] }}",
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{% endfor %}",
            "{% raw %}",
            "{{ range(5) | list }}",
            "{{ secret }}",
            "{% set x = 1 %}{{ x }}",
            "{{ '%s' | format(profile) }}",
            "\n",
        ])
        .prop_map(str::to_string),
    ];
    vec(piece, 0..8).prop_map(|p| p.concat())
}

fn check_template(src: &str, ctx: &Value, html: bool) -> Result<(), TestCaseError> {
    let lines = src.lines().count().max(1);
    let position = |e: &template::TemplateError| e.line.is_none_or(|l| l >= 1 && l <= lines + 1);
    if let Err(e) = template::check(src) {
        prop_assert!(position(&e), "line {:?} of {lines}: {e}", e.line);
        prop_assert!(!e.message.is_empty());
    }
    if let Err(e) = template::render(src, ctx, html) {
        prop_assert!(position(&e), "line {:?} of {lines}: {e}", e.line);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn templates_from_arbitrary_text(src in ".{0,80}", ctx in json_value(), html in any::<bool>()) {
        check_template(&src, &ctx, html)?;
    }

    #[test]
    fn templates_from_pieces_on_arbitrary_contexts(
        src in template_text(),
        profile in json_value(),
        event in json_value(),
        html in any::<bool>(),
    ) {
        let ctx = json!({"profile": profile, "event": event, "journey": {"id": "j", "name": "J"},
            "user_id": "u1", "now": "2026-03-02T12:00:00Z", "unsubscribe_url": null});
        check_template(&src, &ctx, html)?;
    }
}

// ----------------------------------------------------------------------------- hostile inputs

/// Runs one hostile case in a child process on a 2 MiB thread (the size of a tokio worker's
/// stack, where the Lambda handlers run): a stack overflow aborts a process, so it must not be
/// this one.
fn survives_in_a_child(case: &str) {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            "hostile_case_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WAYMARK_HOSTILE_CASE", case)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("hostile case done"),
        "hostile case `{case}` did not survive ({}):\n{}\n{}",
        out.status,
        stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
        stderr.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
    );
}

const DEEP: usize = 10_000;

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// Each hostile case: the input, and what must come of it (an error, without panicking).
fn run_hostile(case: &str) {
    let limits = Limits::default();
    match case {
        "event-json" => {
            for (o, c) in [("[", "]"), ("{\"a\":", "}")] {
                let body = format!(
                    r#"{{"userId":"u","event":"e","properties":{{"p":{}}}}}"#,
                    nested(o, "1", c, DEEP)
                );
                let errs = event::parse_single(Kind::Track, body.as_bytes(), now(), &limits)
                    .expect_err("too deep");
                assert!(!errs.is_empty());
                let batch = format!(r#"{{"batch":[{}]}}"#, nested(o, "1", c, DEEP));
                let _ = event::parse_batch(batch.as_bytes(), now(), &limits);
            }
        }
        "journey-yaml-flow" => {
            let text = format!(
                "id: deep\nname: Deep\ntrigger: {{event: e}}\nsteps: {}\n",
                nested("[", "x", "]", DEEP)
            );
            let errs = dsl::parse("deep.yaml", &text).expect_err("too deep");
            assert!(errs.iter().all(|e| e.line >= 1));
            println!("{}", errs[0]);
        }
        "journey-yaml-mapping" => {
            let text = format!(
                "id: deep\nname: Deep\ntrigger: {}\nsteps: []\n",
                nested("{a: ", "1", "}", DEEP)
            );
            println!(
                "{}",
                dsl::parse("deep.yaml", &text).expect_err("too deep")[0]
            );
        }
        "journey-json" => {
            let text = format!(
                r#"{{"id": "deep", "steps": {}}}"#,
                nested("[", "1", "]", DEEP)
            );
            println!(
                "{}",
                dsl::parse("deep.json", &text).expect_err("too deep")[0]
            );
        }
        "journey-long-chain" => {
            // Steps that never wait, one after another: refused past the bound, named.
            let chain = |n: usize, wait_every: usize| {
                let mut text = String::from("id: long\nname: Long\ntrigger: {event: e}\nsteps:\n");
                for i in 0..n {
                    if wait_every > 0 && i % wait_every == wait_every - 1 {
                        text.push_str(&format!("  - {{id: s{i}, wait: 1h}}\n"));
                    } else {
                        text.push_str(&format!("  - {{id: s{i}, update: {{set: {{a: {i}}}}}}}\n"));
                    }
                }
                text
            };
            let errs = dsl::parse("long.yaml", &chain(10_000, 0)).expect_err("too many steps");
            assert!(
                errs.iter()
                    .any(|e| e.message.contains("at most 1000 steps")),
                "{errs:?}"
            );
            println!("{}", errs[0]);
            // At the bound, with a wait now and then: taken.
            dsl::parse("long.yaml", &chain(1_000, 10)).expect("a journey of 1000 steps");
        }
        "condition" => {
            Condition::parse(&nested("(", "event.a", ")", DEEP)).expect_err("too long");
            Condition::parse(&nested("(", "event.a", ")", 2_000)).expect_err("too deep");
            Condition::parse(&format!("{}event.a", "not ".repeat(1_000))).expect_err("too deep");
            Condition::parse(&nested("[", "1", "]", 2_000)).expect_err("too deep");
        }
        "template" => {
            for src in [
                nested("{% if true %}", "x", "{% endif %}", DEEP),
                nested("{{ ", "1", " }}", 1).replace('1', &nested("(", "1", ")", DEEP)),
                nested("{% for i in [1] %}", "x", "{% endfor %}", DEEP),
                format!("{{{{ {} }}}}", nested("[", "1", "]", DEEP)),
            ] {
                template::check(&src).expect_err("too deep");
                template::render(&src, &json!({}), false).expect_err("too deep");
            }
        }
        other => panic!("no hostile case `{other}`"),
    }
}

#[test]
#[ignore = "run by the hostile-input tests in a child process (WAYMARK_HOSTILE_CASE)"]
fn hostile_case_in_child() {
    let Ok(case) = std::env::var("WAYMARK_HOSTILE_CASE") else {
        return;
    };
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || run_hostile(&case))
        .expect("a thread");
    handle.join().expect("the case ran to the end");
    println!("hostile case done");
}

#[test]
fn ten_thousand_levels_of_json_in_an_event_are_refused() {
    survives_in_a_child("event-json");
}

#[test]
fn ten_thousand_levels_of_flow_sequences_in_a_journey_are_refused() {
    survives_in_a_child("journey-yaml-flow");
}

#[test]
fn ten_thousand_levels_of_flow_mappings_in_a_journey_are_refused() {
    survives_in_a_child("journey-yaml-mapping");
}

#[test]
fn ten_thousand_levels_of_json_in_a_journey_are_refused() {
    survives_in_a_child("journey-json");
}

#[test]
fn ten_thousand_steps_without_a_wait_are_refused() {
    survives_in_a_child("journey-long-chain");
}

#[test]
fn deeply_nested_conditions_are_refused() {
    survives_in_a_child("condition");
}

#[test]
fn deeply_nested_templates_are_refused() {
    survives_in_a_child("template");
}

/// A flood of keys within the size limit: an identify's traits are taken (the profile's bound
/// applies to them), properties past the bound an event keeps are refused by strict parsing
/// (a script) and cut with a warning naming the field by the HTTP API's; a huge body is refused
/// on its size before it is parsed.
#[test]
fn a_flood_of_keys_is_bounded_and_names_the_field() {
    let limits = Limits::default();
    // More keys than an event keeps, within the size limit.
    let traits: Map<String, Value> = (0..300).map(|i| (format!("t{i}"), json!(i))).collect();
    let body = json!({"userId": "u", "traits": traits}).to_string();
    let e = event::parse_single(Kind::Identify, body.as_bytes(), now(), &limits).expect("taken");
    assert_eq!(e.traits.len(), 300);
    let body = json!({"userId": "u", "event": "e", "properties": traits}).to_string();
    let errs =
        event::parse_single(Kind::Track, body.as_bytes(), now(), &limits).expect_err("too many");
    assert!(
        errs.iter()
            .any(|e| e.field == "properties" && e.message.contains("300")),
        "{errs:?}"
    );
    // A huge body: refused on its size before it is parsed.
    let traits: Map<String, Value> = (0..200_000).map(|i| (format!("t{i}"), json!(i))).collect();
    let body = json!({"userId": "u", "traits": traits}).to_string();
    let started = Instant::now();
    let errs =
        event::parse_single(Kind::Identify, body.as_bytes(), now(), &limits).expect_err("too big");
    assert_eq!(errs[0].field, "body");
    assert!(started.elapsed().as_secs() < 2, "size is checked first");
    // A full batch of events past the key bound: checked item by item, each cut with a warning
    // naming its index.
    let properties: Map<String, Value> = (0..257).map(|i| (format!("{i}"), json!(1))).collect();
    let item = json!({"type": "track", "userId": "u", "event": "e", "properties": properties});
    let n = event::MAX_BATCH_BYTES / item.to_string().len() - 1;
    let body = json!({"batch": vec![item; n]}).to_string();
    let out = event::parse_batch(body.as_bytes(), now(), &limits).expect("a batch");
    assert_eq!(out.accepted.len(), n);
    assert!(out.accepted.iter().all(|e| e
        .properties
        .as_object()
        .is_some_and(|p| p.len() == event::MAX_TRAITS)));
    assert_eq!(out.warnings.len(), n);
    assert!(out
        .warnings
        .iter()
        .enumerate()
        .all(|(i, w)| w.index == Some(i) && w.field == format!("batch[{i}].properties")));
}

#[test]
fn invalid_utf8_is_refused_with_its_byte_position() {
    let limits = Limits::default();
    let mut body = br#"{"userId":"u","event":"e","properties":{"name":""#.to_vec();
    let at = body.len();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}}"#);
    for errs in [
        event::parse_single(Kind::Track, &body, now(), &limits).expect_err("not UTF-8"),
        event::parse_batch(&body, now(), &limits).expect_err("not UTF-8"),
    ] {
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "body");
        assert!(
            errs[0].message.contains(&format!("at byte {at}")),
            "{errs:?}"
        );
    }
    // Text APIs take &str; a lossy conversion of the same bytes is still refused cleanly.
    let text = String::from_utf8_lossy(&body);
    assert!(dsl::parse("bad.yaml", &text).is_err());
    assert!(Condition::parse(&text).is_err());
}
