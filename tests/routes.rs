//! The deployed API answers every route intake handles: API Gateway only invokes the intake
//! function for the routes template.yaml lists, so a route added to the handler (`api::ROUTES`)
//! and not to the template would be a 404 in AWS while every local test passes.

mod support;

use std::collections::BTreeSet;

use waymark::api::ROUTES;

#[test]
fn the_template_gives_api_gateway_every_route_the_intake_handler_answers() {
    let template = support::template::load();
    let events = support::template::properties(&template, "IntakeFunction")
        .get("Events")
        .and_then(|e| e.as_object())
        .expect("IntakeFunction has Events");
    let deployed: BTreeSet<String> = events
        .values()
        .filter(|e| e["Type"] == "HttpApi")
        .map(|e| {
            let p = &e["Properties"];
            format!(
                "{} {}",
                p["Method"].as_str().unwrap_or_default(),
                p["Path"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let handled: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        deployed,
        handled,
        "only in template.yaml: {:?}; only in the handler: {:?}",
        deployed.difference(&handled).collect::<Vec<_>>(),
        handled.difference(&deployed).collect::<Vec<_>>()
    );
}
