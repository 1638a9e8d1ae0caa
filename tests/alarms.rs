//! Alarms in template.yaml for the failures that leave no trace a user would look at: every
//! dead-letter queue has an alarm on its depth, every HTTP API one on its 5xx answers (events a
//! client gives up on never reach Waymark), and every function a schedule invokes one on its
//! failures and one on its silence (a scheduler that fails or stops strands every long wait,
//! schedule trigger and stats fold, and its minutes go to no queue). Read from the template, so
//! a queue, an API or a scheduled function added without its alarms fails here.

mod support;

use serde_json::{json, Value};

/// Whether `v` names resource `logical` (`!Ref X`, or `!GetAtt X.Attribute`).
fn names(v: &Value, logical: &str) -> bool {
    v["Ref"] == logical
        || v["Fn::GetAtt"]
            .as_str()
            .and_then(|a| a.strip_prefix(logical))
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The queues some redrive policy or dead-letter config sends failed messages to.
fn dead_letter_queues(template: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "deadLetterTargetArn" || k == "TargetArn" {
                        if let Some(arn) = v["Fn::GetAtt"].as_str() {
                            if let Some(queue) = arn.strip_suffix(".Arn") {
                                out.push(queue.to_string());
                            }
                        }
                    }
                    walk(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&template["Resources"], &mut out);
    out.retain(|q| template["Resources"][q.as_str()]["Type"] == "AWS::SQS::Queue");
    out.sort();
    out.dedup();
    out
}

/// The logical ids of the resources `keep` holds for.
fn resources_where(template: &Value, keep: impl Fn(&Value) -> bool) -> Vec<String> {
    template["Resources"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| keep(r))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The resources of type `kind`, by logical id.
fn of_type(template: &Value, kind: &str) -> Vec<String> {
    resources_where(template, |r| r["Type"] == kind)
}

/// The functions an EventBridge schedule invokes.
fn scheduled_functions(template: &Value) -> Vec<String> {
    resources_where(template, |r| {
        r["Type"] == "AWS::Serverless::Function"
            && r["Properties"]["Events"].as_object().is_some_and(|e| {
                e.values()
                    .any(|e| e["Type"] == "ScheduleV2" || e["Type"] == "Schedule")
            })
    })
}

/// What `template` (as JSON, see `support::template::load`) leaves without its alarm.
fn unwatched(template: &Value) -> Vec<String> {
    let alarms: Vec<&Value> = of_type(template, "AWS::CloudWatch::Alarm")
        .iter()
        .map(|name| &template["Resources"][name.as_str()]["Properties"])
        .collect();
    let watched = |metric: &str, logical: &str, how: &dyn Fn(&Value) -> bool| {
        alarms.iter().any(|a| {
            a["MetricName"] == metric
                && a["Dimensions"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| names(&d["Value"], logical)))
                && a["AlarmActions"].to_string().contains("AlarmTopic")
                && how(a)
        })
    };
    let mut out = Vec::new();
    for queue in dead_letter_queues(template) {
        if !watched("ApproximateNumberOfMessagesVisible", &queue, &|a| {
            a["ComparisonOperator"] == "GreaterThanThreshold" && a["Threshold"] == 0
        }) {
            out.push(format!("{queue}: no alarm when a message lands in it"));
        }
    }
    for api in of_type(template, "AWS::Serverless::HttpApi") {
        if !watched("5xx", &api, &|a| {
            a["ComparisonOperator"] == "GreaterThanThreshold" && a["Threshold"] == 0
        }) {
            out.push(format!("{api}: no alarm when it answers 5xx"));
        }
    }
    for function in scheduled_functions(template) {
        if !watched("Errors", &function, &|a| {
            a["ComparisonOperator"] == "GreaterThanThreshold"
        }) {
            out.push(format!("{function}: no alarm when it fails"));
        }
        if !watched("Invocations", &function, &|a| {
            a["ComparisonOperator"] == "LessThanThreshold" && a["TreatMissingData"] == "breaching"
        }) {
            out.push(format!("{function}: no alarm when it stops running"));
        }
    }
    out
}

#[test]
fn every_dead_letter_queue_and_scheduled_function_has_its_alarms() {
    let template = support::template::load();
    assert_eq!(
        dead_letter_queues(&template),
        [
            "EventsDeadLetterQueue",
            "FeedbackDeadLetterQueue",
            "StepsDeadLetterQueue"
        ]
    );
    assert_eq!(scheduled_functions(&template), ["SchedulerFunction"]);
    assert_eq!(of_type(&template, "AWS::Serverless::HttpApi"), ["Api"]);
    assert_eq!(unwatched(&template), Vec::<String>::new());
}

/// The check itself finds what is missing (a dead-letter queue nobody watches, an API without
/// its 5xx alarm, a scheduled function watched for failures but not for silence), so the test
/// above is not vacuous.
#[test]
fn the_check_finds_an_unwatched_queue_and_a_silent_scheduler() {
    let topic =
        json!({"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]});
    let template = json!({"Resources": {
        "Work": {"Type": "AWS::SQS::Queue", "Properties": {
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": "WorkDlq.Arn"}}}},
        "WorkDlq": {"Type": "AWS::SQS::Queue"},
        "Http": {"Type": "AWS::Serverless::HttpApi"},
        "Tick": {"Type": "AWS::Serverless::Function", "Properties": {
            "Events": {"Minute": {"Type": "ScheduleV2"}}}},
        "TickErrors": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "MetricName": "Errors", "ComparisonOperator": "GreaterThanThreshold",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "Tick"}}],
            "AlarmActions": topic}}
    }});
    assert_eq!(
        unwatched(&template),
        [
            "WorkDlq: no alarm when a message lands in it",
            "Http: no alarm when it answers 5xx",
            "Tick: no alarm when it stops running"
        ]
    );
}
