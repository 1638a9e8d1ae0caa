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

/// API Gateway answers browsers' preflights itself (template.yaml's `CorsConfiguration`), so it
/// must allow what the handler allows `waymark dev`'s browsers: the methods and headers of the
/// event calls and of a web app's inbox calls (its user's token in `X-Waymark-User-Token`).
#[test]
fn api_gateway_allows_browsers_what_the_handler_does() {
    let template = support::template::load();
    let cors = &template["Resources"]["Api"]["Properties"]["CorsConfiguration"];
    let list = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let split = |s: &str| -> BTreeSet<String> {
        s.split(',')
            .map(|x| x.trim().to_ascii_lowercase())
            .collect()
    };
    assert_eq!(
        list(&cors["AllowMethods"]),
        split(waymark::api::CORS_METHODS)
    );
    assert_eq!(
        list(&cors["AllowHeaders"]),
        split(waymark::api::CORS_HEADERS)
    );
    assert_eq!(list(&cors["AllowOrigins"]), split("*"));
}
