//! The published JSON Schema (`schema/journey.schema.json`) is generated from the Rust types; this
//! test fails when they drift. Regenerate with `WAYMARK_BLESS=1 cargo test -p waymark-shared --test schema`.

use std::path::Path;

#[test]
fn published_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/journey.schema.json");
    let generated =
        serde_json::to_string_pretty(&waymark::journey::schema()).expect("schema") + "\n";
    if std::env::var_os("WAYMARK_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "schema/journey.schema.json is out of date: run WAYMARK_BLESS=1 cargo test -p waymark-shared --test schema"
    );
}

#[test]
fn schema_describes_every_step_action() {
    let schema = waymark::journey::schema().to_string();
    for action in [
        "wait",
        "wait_until",
        "wait_for",
        "branch",
        "split",
        "send",
        "update",
        "exit",
    ] {
        assert!(
            schema.contains(&format!("\"{action}\"")),
            "schema lacks `{action}`"
        );
    }
}

/// What `waymark validate` refuses by shape, the schema refuses too, so that an editor shows it:
/// exactly one trigger, action, channel and form of a wait (a null one is none), the ranges and
/// forms of counts and ids, the webhook methods, and a schedule's `reentry`.
#[test]
fn the_schema_holds_the_shape_rules_validate_holds() {
    let schema = waymark::journey::schema();
    let defs = &schema["$defs"];
    for (def, fields) in [
        (
            "Trigger",
            &["event", "trait_changed", "repeated", "inactive", "schedule"][..],
        ),
        (
            "Step",
            &[
                "wait",
                "wait_until",
                "wait_for",
                "branch",
                "split",
                "send",
                "update",
                "exit",
            ][..],
        ),
        ("Send", &["email", "sms", "push", "in_app", "webhook"][..]),
        // A wait names one event, or several paths, never both.
        ("WaitFor", &["event", "paths"][..]),
    ] {
        let one_of: Vec<String> = defs[def]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{def} has no oneOf"))
            .iter()
            .map(|o| {
                let f = o["required"][0].as_str().unwrap_or_default().to_string();
                assert_eq!(o["properties"][&f]["not"]["type"], "null", "{def}.{f}");
                f
            })
            .collect();
        assert_eq!(one_of, fields, "{def}");
    }
    assert_eq!(defs["Repeated"]["properties"]["times"]["minimum"], 2);
    assert_eq!(defs["Repeated"]["properties"]["times"]["maximum"], 32);
    assert_eq!(defs["Split"]["properties"]["holdout"]["maximum"], 100);
    assert_eq!(defs["Split"]["properties"]["paths"]["minItems"], 1);
    assert_eq!(defs["WaitFor"]["properties"]["paths"]["minItems"], 1);
    assert_eq!(schema["properties"]["steps"]["minItems"], 1);
    assert_eq!(schema["properties"]["id"]["pattern"], "^[a-z0-9_-]{1,64}$");
    assert_eq!(
        defs["Step"]["properties"]["id"]["pattern"],
        "^[a-z0-9_-]{1,64}$"
    );
    assert_eq!(schema["properties"]["name"]["pattern"], "\\S");
    assert_eq!(defs["Branch"]["properties"]["cases"]["minItems"], 1);
    assert_eq!(defs["Inactive"]["properties"]["events"]["minItems"], 1);
    // A blank trait name is no trait an identify changes.
    assert_eq!(
        defs["Trigger"]["properties"]["trait_changed"]["pattern"],
        "\\S"
    );
    // An event name the API would refuse (blank, over 200 characters) never comes.
    // A trigger's event is one name or a list of them, any of which enters.
    assert_eq!(
        defs["Trigger"]["properties"]["event"]["anyOf"][0]["$ref"],
        "#/$defs/EventNames"
    );
    assert_eq!(defs["EventNames"]["anyOf"][1]["minItems"], 1);
    assert_eq!(defs["EventNames"]["anyOf"][1]["uniqueItems"], true);
    let names = [
        &defs["EventNames"]["anyOf"][0],
        &defs["EventNames"]["anyOf"][1]["items"],
        &defs["Repeated"]["properties"]["event"],
        &defs["Inactive"]["properties"]["events"]["items"],
        &defs["EventMatch"]["properties"]["event"],
        &defs["Goal"]["properties"]["event"],
        &defs["WaitFor"]["properties"]["event"],
        &defs["WaitPath"]["properties"]["event"],
    ];
    for name in names {
        assert_eq!(name["pattern"], "\\S", "{name}");
        assert_eq!(name["maxLength"], 200, "{name}");
    }
    assert_eq!(
        defs["WebhookTemplate"]["properties"]["method"]["enum"],
        serde_json::json!(["POST", "PUT", "PATCH", "GET", "DELETE"])
    );
    assert_eq!(
        schema["if"]["properties"]["trigger"]["required"],
        serde_json::json!(["schedule"])
    );
    assert_eq!(schema["then"]["required"], serde_json::json!(["reentry"]));
    // A push is an alert with a title or a body, or silent with data and neither.
    let push = &defs["PushTemplate"];
    assert_eq!(push["if"]["properties"]["silent"]["const"], true);
    assert_eq!(push["then"]["required"], serde_json::json!(["data"]));
    assert_eq!(push["then"]["properties"]["data"]["minProperties"], 1);
    for f in ["title", "body"] {
        assert_eq!(push["then"]["properties"][f]["type"], "null", "{f}");
    }
    let lines: Vec<_> = push["else"]["anyOf"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| (o["required"][0].clone(), o["properties"].clone()))
        .collect();
    assert_eq!(
        lines,
        ["title", "body"].map(|f| (
            serde_json::json!(f),
            serde_json::json!({f: {"not": {"type": "null"}}})
        ))
    );
    // "9:00" reads as 09:00 in a journey, and the schema says so
    let time = defs["TimeOfDay"]["pattern"].as_str().unwrap_or_default();
    assert_eq!(time, "^([01]?[0-9]|2[0-3]):[0-5][0-9]$");
}

/// Every root a `wait_until.date` may read (`validate` takes `trigger.*` and `waited.*` too),
/// the schema's pattern takes, so that an editor does not mark a valid date.
#[test]
fn the_schema_takes_every_path_a_date_may_read() {
    let schema = waymark::journey::schema();
    let pattern = schema["$defs"]["ValuePath"]["pattern"]
        .as_str()
        .expect("ValuePath has a pattern");
    for root in ["event", "trigger", "waited", "profile"] {
        let path = format!("{root}.starts_at");
        waymark::condition::ValuePath::parse(&path).expect("a date's path");
        assert!(
            pattern.contains(&format!("|{root}|"))
                || pattern.contains(&format!("({root}|"))
                || pattern.contains(&format!("|{root})")),
            "{pattern} leaves out {root}"
        );
    }
}

/// What the schema says of a value, `waymark validate` does: every cron macro a schedule takes
/// is named; an SMS's `sms_type` has no fixed default (a transactional journey's SMS are
/// transactional); a step's `exit` takes `true` alone, as validate refuses `exit: false`.
#[test]
fn the_schema_says_what_validate_takes() {
    let schema = waymark::journey::schema();
    let defs = &schema["$defs"];
    let cron = defs["Cron"]["description"].as_str().unwrap_or_default();
    for name in [
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ] {
        name.parse::<waymark::cron::Cron>().expect(name);
        assert!(cron.contains(name), "{cron} leaves out {name}");
    }
    assert!(cron.contains("UTC when it names none"), "{cron}");
    let sms_type = &defs["SmsTemplate"]["properties"]["sms_type"];
    assert!(sms_type.get("default").is_none(), "{sms_type}");
    assert!(
        sms_type["description"]
            .as_str()
            .is_some_and(|d| d.contains("`transactional` in a\n`transactional: true` journey")),
        "{sms_type}"
    );
    let exit = &defs["Step"]["properties"]["exit"];
    assert_eq!(exit["enum"], serde_json::json!([true, null]), "{exit}");
    let step = |exit: &str| {
        format!("id: j\nname: J\ntrigger: {{event: e}}\nreentry: after_exit\nsteps:\n  - id: a\n    exit: {exit}\n")
    };
    waymark::dsl::parse("j.yaml", &step("true")).expect("exit: true");
    waymark::dsl::parse("j.yaml", &step("false")).expect_err("exit: false");
}
