//! The engine's queue sources are capped (`ScalingConfig.MaximumConcurrency`, the
//! `EngineConcurrency` parameter): Lambda's concurrency is shared by an account's functions, and
//! an uncapped engine working through a large campaign could take all of it, so that the API
//! answers 429 to the apps sending events and the scheduler's minutes are throttled.

mod support;

use serde_json::Value;

/// Every SQS event source of every function, as (function, event name, its properties).
fn queue_sources(template: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (function, r) in template["Resources"].as_object().into_iter().flatten() {
        for (name, e) in r["Properties"]["Events"].as_object().into_iter().flatten() {
            if e["Type"] == "SQS" {
                out.push((function.clone(), name.clone(), e["Properties"].clone()));
            }
        }
    }
    out
}

#[test]
fn every_queue_source_is_capped_by_the_engine_concurrency_parameter() {
    let template = support::template::load();
    let sources = queue_sources(&template);
    let names: Vec<String> = sources.iter().map(|(f, e, _)| format!("{f}.{e}")).collect();
    assert_eq!(names, ["EngineFunction.Events", "EngineFunction.Steps"]);
    for (function, event, props) in &sources {
        assert_eq!(
            props["ScalingConfig"]["MaximumConcurrency"]["Ref"], "EngineConcurrency",
            "{function}.{event} is not capped"
        );
    }
    let p = &template["Parameters"]["EngineConcurrency"];
    // SQS event sources take 2 to 1,000.
    assert_eq!((&p["MinValue"], &p["MaxValue"]), (&2.into(), &1000.into()));
    let default = p["Default"].as_u64().expect("a default");
    assert!(
        (2..=1000).contains(&default),
        "EngineConcurrency's default {default}"
    );
}

/// The queues keep messages longer than SQS's default 4 days: an engine stopped over a long
/// weekend (its event source disabled, a bad deploy) finds its backlog, events and due steps,
/// waiting. A dead letter expires by the time it was first queued (standard queues), so each
/// dead-letter queue keeps messages a week longer than its source: what dead-letters on the
/// source's last day is still there a week later.
#[test]
fn queues_keep_their_backlog_a_week_and_dead_letters_a_week_more() {
    let template = support::template::load();
    let resources = template["Resources"].as_object().expect("resources");
    let retention = |name: &str| {
        resources[name]["Properties"]["MessageRetentionPeriod"]
            .as_u64()
            .unwrap_or(345_600)
    };
    let mut sources = 0;
    for (name, r) in resources {
        if r["Type"] != "AWS::SQS::Queue" {
            continue;
        }
        let Some(dlq) = r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
            .as_str()
            .and_then(|a| a.strip_suffix(".Arn"))
        else {
            assert!(retention(name) >= 7 * 86_400, "{name}");
            continue;
        };
        sources += 1;
        assert!(
            retention(name) >= 7 * 86_400,
            "{name} keeps its backlog under a week"
        );
        assert!(
            retention(dlq) >= retention(name) + 7 * 86_400,
            "{dlq} keeps a dead letter of {name} under a week"
        );
    }
    assert_eq!(sources, 2);
}
