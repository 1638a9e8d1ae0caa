//! A profile's bounds: a user whose identifies bring more traits (or whose logins bring more
//! anonymous ids) than one stored profile can hold keeps working, her timeline says what was
//! not kept, and her profile stays well under DynamoDB's 400 KB item; and what an identify's
//! `200` warned of (a phone that is no number, a zone that is none) is in her timeline too.

mod support;

use serde_json::{json, Value};

use support::{at, Harness};
use waymark::event::{self, Call, Limits};
use waymark::profile::{MAX_ANONYMOUS_IDS, MAX_TRAIT_BYTES};
use waymark::runtime::describe;
use waymark::timeline::What;

/// DynamoDB's largest item.
const ITEM_LIMIT: usize = 400 * 1024;

const WELCOME: &str = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send:
      email: {subject: "Welcome {{ profile.first_name }}", text: "Hi"}
"#;

/// Sends `body` as the HTTP API takes it (a trait left out with a warning, not refused), and
/// handles it.
async fn send(h: &Harness, call: Call, body: Value) {
    let bytes = serde_json::to_vec(&body).expect("body");
    let (ev, _warnings) = event::parse_call_warned(call, &bytes, h.now(), &Limits::default())
        .unwrap_or_else(|e| panic!("refused: {e:?}"));
    h.deliver(ev).await;
}

/// The profile facts of a user's timeline (what was not kept), one line each.
async fn not_kept(h: &Harness, user: &str) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter(|e| matches!(e.what, What::NotKept { .. }))
        .inspect(|e| assert!(e.journey.is_empty(), "in no journey: {e:?}"))
        .map(|e| describe(&e.what))
        .collect()
}

async fn profile_bytes(h: &Harness, user: &str) -> usize {
    let view = h.rt.user(user).await.expect("user");
    serde_json::to_vec(&view.profile.expect("a profile"))
        .expect("json")
        .len()
}

#[tokio::test]
async fn a_user_identified_past_the_bounds_keeps_working_and_is_told_what_was_not_kept() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(WELCOME).await;
    send(
        &h,
        Call::Identify,
        json!({"userId": "ann", "messageId": "i-0", "traits": {"email": "ann@example.com", "first_name": "Ann"}}),
    )
    .await;
    // An app that sends a new batch of large traits with each identify: 60 of 400 characters
    // (27 KB, under the 32 KB an event takes), ten times: far past what a profile keeps.
    let filler = "x".repeat(400);
    for i in 0..10 {
        let traits: serde_json::Map<String, Value> = (0..60)
            .map(|j| (format!("t{i}_{j:02}"), Value::String(filler.clone())))
            .collect();
        send(
            &h,
            Call::Identify,
            json!({"userId": "ann", "messageId": format!("bulk-{i}"), "traits": traits}),
        )
        .await;
    }
    let told = not_kept(&h, "ann").await;
    assert!(!told.is_empty(), "the timeline says what was not kept");
    assert!(
        told.iter()
            .all(|t| t.starts_with("not kept: traits.t") && t.contains("the profile keeps at most")),
        "{told:?}"
    );
    // Each identify past the bound names the first 20 it did not keep, and counts the rest.
    assert!(told.iter().any(|t| t.contains(" and 40 more")), "{told:?}");
    let bytes = profile_bytes(&h, "ann").await;
    // Its traits' bound and a little more: far under DynamoDB's item.
    assert!(
        bytes < MAX_TRAIT_BYTES + 8 * 1024,
        "the profile takes {bytes} bytes"
    );
    // A trait she has is still updated, a new one past the bound is not kept, and an opt-in
    // and address (kept whatever the bounds) are taken.
    send(
        &h,
        Call::Identify,
        json!({"userId": "ann", "messageId": "i-1", "traits": {"first_name": "Annie", "bio": "y".repeat(500), "email": "annie@example.com", "subscriptions": {"sms": false}}}),
    )
    .await;
    let view = h.rt.user("ann").await.expect("user");
    let p = view.profile.expect("profile");
    assert_eq!(p.traits["first_name"], json!("Annie"));
    assert_eq!(p.traits.get("bio"), None);
    assert_eq!(p.traits["email"], json!("annie@example.com"));
    assert_eq!(p.traits["subscriptions"], json!({"sms": false}));
    assert!(
        not_kept(&h, "ann")
            .await
            .iter()
            .any(|t| t.starts_with("not kept: traits.bio (")),
        "the last identify's refusal is told"
    );
    // Her events are handled and her messages go out.
    send(
        &h,
        Call::Track,
        json!({"userId": "ann", "messageId": "s-1", "event": "signed_up"}),
    )
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let out = h.outbox();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].ends_with("ann email hello: Welcome Annie"),
        "{out:?}"
    );
    assert!(profile_bytes(&h, "ann").await < ITEM_LIMIT);
}

#[tokio::test]
async fn an_identifys_refused_traits_are_told_in_the_timeline() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(WELCOME).await;
    send(
        &h,
        Call::Identify,
        json!({"userId": "bo", "messageId": "i-1", "traits": {"first_name": "Bo", "phone": "06 12 34", "timezone": "Tokyo time", "email": "bo@example"}}),
    )
    .await;
    let view = h.rt.user("bo").await.expect("user");
    let p = view.profile.expect("profile");
    assert_eq!(p.traits.get("phone"), None, "left out");
    assert_eq!(p.traits["first_name"], json!("Bo"), "the rest is applied");
    let mut facts: Vec<(Vec<String>, Option<String>, String)> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::NotKept {
                fields,
                value,
                reason,
                ..
            } => Some((fields.clone(), value.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    facts.sort();
    assert_eq!(facts.len(), 3, "{facts:?}");
    assert_eq!(facts[0].0, ["traits.email"]);
    assert_eq!(
        facts[0].1.as_deref(),
        Some("(not shown)"),
        "an address is not shown"
    );
    assert_eq!(facts[1].0, ["traits.phone"]);
    assert_eq!(facts[1].1.as_deref(), Some("(not shown)"));
    assert!(facts[1].2.contains("E.164"), "{facts:?}");
    assert_eq!(facts[2].0, ["traits.timezone"]);
    assert_eq!(facts[2].1.as_deref(), Some("\"Tokyo time\""));
    assert!(facts[2].2.contains("IANA"), "{facts:?}");
}

#[tokio::test]
async fn a_user_seen_with_more_anonymous_ids_than_a_profile_keeps_goes_on() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(WELCOME).await;
    send(
        &h,
        Call::Identify,
        json!({"userId": "cy", "messageId": "i-0", "traits": {"email": "cy@example.com", "first_name": "Cy"}}),
    )
    .await;
    // A visitor per browser she ever logged in from, one more than a profile keeps.
    for i in 0..=MAX_ANONYMOUS_IDS {
        send(
            &h,
            Call::Identify,
            json!({"userId": "cy", "anonymousId": format!("d{i}"), "messageId": format!("l-{i}"), "traits": {}}),
        )
        .await;
    }
    let view = h.rt.user("cy").await.expect("user");
    let p = view.profile.expect("profile");
    assert_eq!(p.anonymous_ids.len(), MAX_ANONYMOUS_IDS);
    let last = format!("d{MAX_ANONYMOUS_IDS}");
    assert!(!p.anonymous_ids.contains(&last));
    let visitor = h.rt.user(&format!("anon:{last}")).await.expect("visitor");
    assert!(visitor.profile.is_none_or(|v| v.merged_into.is_none()));
    let told = not_kept(&h, "cy").await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].starts_with(&format!("not kept: anonymousId = \"{last}\" (the profile lists at most {MAX_ANONYMOUS_IDS} anonymous ids")),
        "{told:?}"
    );
    // Her event with that id is hers all the same.
    send(
        &h,
        Call::Track,
        json!({"userId": "cy", "anonymousId": last, "messageId": "s-1", "event": "signed_up"}),
    )
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let out = h.outbox();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].ends_with("cy email hello: Welcome Cy"), "{out:?}");
}
