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

/// Every queue keeps its messages as long as SQS allows (14 days, not the default 4): an engine
/// stopped for a long weekend (its event source disabled, a bad deploy) finds its backlog,
/// events and due steps, waiting; a dead-letter queue keeps them as long as its source does.
#[test]
fn every_queue_keeps_its_messages_fourteen_days() {
    let template = support::template::load();
    let mut queues = Vec::new();
    for (name, r) in template["Resources"].as_object().into_iter().flatten() {
        if r["Type"] == "AWS::SQS::Queue" {
            queues.push(name.clone());
            assert_eq!(
                r["Properties"]["MessageRetentionPeriod"], 1_209_600,
                "{name} keeps its messages for SQS's default 4 days"
            );
        }
    }
    assert!(queues.len() >= 4, "{queues:?}");
}
