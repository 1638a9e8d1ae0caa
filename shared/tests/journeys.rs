//! Journeys, feature by feature: given a journey file and a script of timed events, these messages
//! go out at these times (and the timeline says why).

mod support;

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde_json::json;

use support::*;
use waymark::api::PathStats;
use waymark::engine::{self, Content, Ctx};
use waymark::enrollment::TriggerEvent;
use waymark::journey::{Channel, JourneyStatus, SmsType};
use waymark::profile::{Address, Profile};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::runtime::{describe, Cap, Config, Handled};
use waymark::store::{Expect, Key, Record, Store};
use waymark::timeline::{self, What};

fn entered(w: &What) -> bool {
    matches!(w, What::Entered { .. })
}

/// The refused entries among `entries`: `"<at> <journey> [<enrollment in the way>] on
/// <trigger>: <reason>: <detail>"`.
fn refusals<'a>(entries: impl IntoIterator<Item = &'a timeline::Entry>) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|e| match &e.what {
            What::NotEntered {
                trigger,
                reason,
                detail,
            } => Some(format!(
                "{} {} [{}] on {trigger}: {reason}: {}",
                e.at,
                e.journey,
                e.enrollment,
                detail.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn event_trigger_enters_only_when_its_condition_holds() {
    let journey = r#"
id: cart
name: Cart
trigger:
  event: cart_abandoned
  where: "event.total > 0 and profile.country == 'FR'"
steps:
  - id: push
    send:
      push:
        title: "{{ event.total }} EUR in your cart"
        body: "Come back"
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"country":"FR","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"country":"DE","push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cat","traits":{"country":"FR","push_tokens":[{"platform":"fcm","token":"t-cat"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c-ann","properties":{"total":50}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"cart_abandoned","messageId":"c-bob","properties":{"total":50}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cat","event":"cart_abandoned","messageId":"c-cat","properties":{"total":0}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:00Z ann push push: 50 EUR in your cart"]
    );
    for (user, held) in [
        ("bob", r#"event.total = 50, profile.country = "DE""#),
        ("cat", r#"event.total = 0, profile.country = "FR""#),
    ] {
        assert_eq!(facts(&out, user, entered), Vec::<String>::new(), "{user}");
        // and the timeline says why: the profile's country for bob, the total for cat
        assert_eq!(
            refusals(entries(&out, user)),
            [format!("2026-12-01T10:00:00Z cart [] on cart_abandoned: condition: `where: event.total > 0 and profile.country == 'FR'` was false at this event ({held})")],
            "{user}"
        );
    }
    assert_eq!(refusals(entries(&out, "ann")), Vec::<String>::new());
}

/// A branch with no `else` goes, when no case holds, where its step's `next:` says, not to the
/// step after it in the file (README: "left out: the step's `next:` when it has one").
#[tokio::test]
async fn a_branch_without_else_goes_to_its_steps_next_when_no_case_holds() {
    let journey = r#"
id: tiers
name: Tiers
trigger: {event: go}
reentry: after_exit
steps:
  - id: pick
    branch:
      cases: [{when: "profile.vip == true", goto: vip}]
    next: regular
  - id: vip
    send: {push: {title: "vip"}}
    next: done
  - id: regular
    send: {push: {title: "regular"}}
  - id: done
    wait: 1h
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"vip":true,"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"vip":false,"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"go","messageId":"g-ann"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"go","messageId":"g-bob"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push vip: vip",
            "2026-12-01T10:00:00Z bob push regular: regular",
        ]
    );
}

#[tokio::test]
async fn an_event_trigger_listing_several_events_enters_on_any_of_them() {
    let journey = r#"
id: abandoned
name: Abandoned
trigger:
  event: [cart_abandoned, checkout_abandoned]
  where: "event.total > 0"
reentry: after_exit
steps:
  - id: wait
    wait: 1h
  - id: push
    send:
      push:
        title: "{{ event.total }} EUR left at {{ trigger.step | default('cart') }}"
        body: "Come back"
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cat","traits":{"push_tokens":[{"platform":"fcm","token":"t-cat"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c-ann","properties":{"total":50}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"checkout_abandoned","messageId":"k-bob","properties":{"total":70,"step":"payment"}}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"bob","event":"cart_abandoned","messageId":"c-bob","properties":{"total":70}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cat","event":"checkout_abandoned","messageId":"k-cat","properties":{"total":0}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cat","event":"cart_viewed","messageId":"v-cat","properties":{"total":9}}
"#;
    let out = sim(&[journey], script).await;
    // Either event enters; one enrollment at a time, whichever event came; a listed event
    // whose `where` is false enters no one, and an event not listed is not heard.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T11:00:00Z ann push push: 50 EUR left at cart",
            "2026-12-01T11:00:00Z bob push push: 70 EUR left at payment",
        ]
    );
    assert_eq!(
        refusals(entries(&out, "bob")),
        ["2026-12-01T10:10:00Z abandoned [abandoned:bob:1] on cart_abandoned: enrolled: in the journey since 2026-12-01T10:00:00Z (on version 1, at step `wait`): one enrollment a user at a time"]
    );
    assert_eq!(
        refusals(entries(&out, "cat")),
        [
            r#"2026-12-01T10:00:00Z abandoned [] on checkout_abandoned: condition: `where: event.total > 0` was false at this event (event.total = 0)"#
        ]
    );

    // The list is checked: each name as a trigger's event is, none twice, at least one.
    for (trigger, path, said) in [
        ("[a, a]", "trigger.event[1]", "`a` is listed twice"),
        ("[]", "trigger.event", "the list names no event"),
        ("[a, \"\"]", "trigger.event[1]", "name the event"),
    ] {
        let text = format!(
            "id: j\nname: J\ntrigger: {{event: {trigger}}}\nsteps: [{{id: a, wait: 1h}}]\n"
        );
        let errs = waymark::dsl::parse("j.yaml", &text).expect_err(trigger);
        assert!(
            errs.iter()
                .any(|e| e.path == path && e.message.starts_with(said)),
            "{trigger}: {errs:?}"
        );
    }
    // A single name is written back as a name: a journey published before lists were taken
    // keeps its digest.
    let one = waymark::dsl::parse(
        "j.yaml",
        "id: j\nname: J\ntrigger: {event: a}\nsteps: [{id: a, wait: 1h}]\n",
    )
    .expect("valid");
    assert_eq!(
        serde_json::to_value(&one.trigger).expect("json"),
        json!({"event": "a"})
    );
    let many = waymark::dsl::parse("abandoned.yaml", journey).expect("valid");
    assert_eq!(
        waymark::render::mermaid(&many)
            .lines()
            .find(|l| l.contains("on cart_abandoned")),
        Some(
            r#"    trigger(["on cart_abandoned or checkout_abandoned where event.total #gt; 0"])"#
        )
    );
}

#[tokio::test]
async fn repeated_trigger_enters_on_the_third_time_within_the_window() {
    let journey = r#"
id: upsell
name: Upsell
trigger:
  repeated:
    event: episode_watched
    times: 3
    within: 7d
    where: "profile.plan == 'free'"
steps:
  - id: offer
    send:
      push:
        title: "Go Premium, {{ profile.first_name }}"
        body: "{{ event.series }} in 4K"
"#;
    // kim: three episodes in three days (free) → enters on the third.
    // lee: three in three hours, but premium → the `where` on the profile keeps him out.
    // max: three over ten days (free): never three within seven days.
    // bea: three in three days (free) → enters on the third, as kim does.
    let out = sim(&[journey], &example_events("streaming_upsell")).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-03T20:00:00Z kim push offer: Go Premium, Kim",
            "2026-12-03T21:00:00Z bea push offer: Go Premium, Bea"
        ]
    );
    for user in ["lee", "max"] {
        assert_eq!(facts(&out, user, entered), Vec::<String>::new(), "{user}");
    }
    // lee did the trigger once, at his third episode: one refusal, not one per episode; max
    // never did it (never three within seven days), so nothing is refused.
    let refused = |w: &What| matches!(w, What::NotEntered { .. });
    assert_eq!(
        facts(&out, "lee", refused).len(),
        1,
        "{:?}",
        facts(&out, "lee", refused)
    );
    assert_eq!(facts(&out, "max", refused), Vec::<String>::new());
}

/// A `repeated` trigger that may enter again counts only what came after the last entry: five
/// episodes make one offer, not one on each of the third, fourth and fifth; six make two. An
/// episode that arrives late and completes a count uses up the later one it counted with: three
/// episodes make one offer, also when the second arrives stamped before the first.
#[tokio::test]
async fn a_repeated_trigger_counts_again_from_the_last_entry() {
    let journey = r#"
id: upsell
name: Upsell
trigger:
  repeated: {event: episode_watched, times: 3, within: 7d}
reentry: after_exit
steps:
  - id: offer
    send: {push: {title: "Go Premium", body: "."}}
"#;
    // Each user her own device (a device is the user's who registered it last).
    let mut script = String::new();
    for (user, episodes) in [("five", 5), ("six", 6)] {
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T09:00:00Z\",\"type\":\"identify\",\"userId\":\"{user}\",\"traits\":{{\"push_tokens\":[{{\"platform\":\"fcm\",\"token\":\"t-{user}\"}}]}}}}\n"
        ));
        for i in 0..episodes {
            script.push_str(&format!(
                "{{\"at\":\"2026-12-01T{:02}:00:00Z\",\"userId\":\"{user}\",\"event\":\"episode_watched\",\"messageId\":\"{user}{i}\"}}\n",
                10 + i
            ));
        }
    }
    script.push_str(
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"late","traits":{"push_tokens":[{"platform":"fcm","token":"t-late"}]}}
{"at":"2026-12-01T10:00:00Z","userId":"late","event":"episode_watched","messageId":"late1"}
{"at":"2026-12-01T10:01:00Z","userId":"late","event":"episode_watched","messageId":"late2","timestamp":"2026-12-01T09:30:00Z"}
{"at":"2026-12-01T12:00:00Z","userId":"late","event":"episode_watched","messageId":"late3"}
{"at":"2026-12-01T13:00:00Z","userId":"late","event":"episode_watched","messageId":"late4"}
"#,
    );
    let out = sim(&[journey.replace("times: 3", "times: 2").as_str()], &script).await;
    assert_eq!(
        outbox_of(&out, "late"),
        [
            "2026-12-01T10:01:00Z late push offer: Go Premium",
            "2026-12-01T13:00:00Z late push offer: Go Premium"
        ]
    );
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox_of(&out, "five"),
        ["2026-12-01T12:00:00Z five push offer: Go Premium"]
    );
    assert_eq!(
        outbox_of(&out, "six"),
        [
            "2026-12-01T12:00:00Z six push offer: Go Premium",
            "2026-12-01T15:00:00Z six push offer: Go Premium"
        ]
    );
}

/// `round` and `abs` on a value the event does not have print nothing and the message goes
/// out; a price sent as text is rounded as the number it says; text that is no number skips
/// the message, and the skip names the part of the message and why.
#[tokio::test]
async fn numeric_filters_forgive_missing_values_and_name_what_failed() {
    let journey = r#"
id: receipt
name: Receipt
trigger: {event: paid}
reentry: after_exit
steps:
  - id: note
    send:
      push: {title: "Paid", body: "Total {{ event.total | round(2) }} {{ event.currency }}"}
"#;
    // Each user her own device (a device is the user's who registered it last).
    let mut script = String::new();
    for (user, props) in [
        ("none", "{}"),
        ("text", r#"{"total": "19.987", "currency": "EUR"}"#),
        ("word", r#"{"total": "soon"}"#),
    ] {
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T09:00:00Z\",\"type\":\"identify\",\"userId\":\"{user}\",\"traits\":{{\"push_tokens\":[{{\"platform\":\"fcm\",\"token\":\"t-{user}\"}}]}}}}\n{{\"at\":\"2026-12-01T10:00:00Z\",\"userId\":\"{user}\",\"event\":\"paid\",\"properties\":{props}}}\n"
        ));
    }
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox_of(&out, "none"),
        ["2026-12-01T10:00:00Z none push note: Paid"]
    );
    assert_eq!(
        outbox_of(&out, "text"),
        ["2026-12-01T10:00:00Z text push note: Paid"]
    );
    assert!(outbox_of(&out, "word").is_empty());
    let skipped: Vec<String> = entries(&out, "word")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => {
                Some(format!("{reason}: {}", detail.as_deref().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].starts_with("render_error: body: ")
            && skipped[0].contains("round: soon (string) is not a number"),
        "{skipped:?}"
    );
    let bodies: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            waymark::simulate::Output::Message(m) if &*m.user_id == "text" => {
                serde_json::to_value(&m.content).ok()
            }
            _ => None,
        })
        .map(|c| c["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(bodies, ["Total 19.99 EUR"]);
}

/// `currency` writes the amount as each user's locale writes money (an identify's `locale`),
/// prints nothing for an amount the event lacks, reads a price sent as text, never fails for
/// a code it does not know, and skips the message, saying why, for an amount that is no number.
#[tokio::test]
async fn currency_writes_money_in_each_users_locale_and_names_what_failed() {
    let journey = r#"
id: refund
name: Refund
trigger: {event: refunded}
steps:
  - id: note
    send:
      push: {title: "Refund", body: "Refunded: {{ event.amount | currency(event.currency) }}"}
"#;
    let mut script = String::new();
    for (user, locale, props) in [
        ("de", "de-DE", r#"{"amount": "1234.5", "currency": "EUR"}"#),
        ("fr", "fr-FR", r#"{"amount": 1234.5, "currency": "eur"}"#),
        ("ch", "de-CH", r#"{"amount": -1234.5, "currency": "CHF"}"#),
        ("jp", "ja-JP", r#"{"amount": 1234.5, "currency": "JPY"}"#),
        ("us", "en-US", r#"{"amount": 5, "currency": "XYZ"}"#),
        ("none", "en-US", r#"{"currency": "EUR"}"#),
        ("word", "en-US", r#"{"amount": "soon", "currency": "EUR"}"#),
    ] {
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T09:00:00Z\",\"type\":\"identify\",\"userId\":\"{user}\",\"traits\":{{\"locale\":\"{locale}\",\"push_tokens\":[{{\"platform\":\"fcm\",\"token\":\"t-{user}\"}}]}}}}\n{{\"at\":\"2026-12-01T10:00:00Z\",\"userId\":\"{user}\",\"event\":\"refunded\",\"properties\":{props}}}\n"
        ));
    }
    let out = sim(&[journey], &script).await;
    let body = |user: &str| -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                waymark::simulate::Output::Message(m) if &*m.user_id == user => {
                    serde_json::to_value(&m.content).ok()
                }
                _ => None,
            })
            .map(|c| c["body"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(body("de"), ["Refunded: 1.234,50\u{a0}€"]);
    assert_eq!(body("fr"), ["Refunded: 1\u{202f}234,50\u{a0}€"]);
    assert_eq!(body("ch"), ["Refunded: CHF-1'234.50"]);
    assert_eq!(body("jp"), ["Refunded: ￥1,235"]);
    assert_eq!(body("us"), ["Refunded: XYZ\u{a0}5.00"]);
    assert_eq!(body("none"), ["Refunded: "]);
    assert!(body("word").is_empty());
    let skipped: Vec<String> = entries(&out, "word")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => {
                Some(format!("{reason}: {}", detail.as_deref().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].starts_with("render_error: body: ")
            && skipped[0].contains("currency: soon (string) is not a number"),
        "{skipped:?}"
    );
}

/// Events that arrive out of order (a device offline for two days sends its episodes late)
/// still make three within seven days: nia enters when the last of them arrives, although the
/// one that arrived first is the latest.
#[tokio::test]
async fn repeated_trigger_counts_events_that_arrive_out_of_order() {
    let journey = r#"
id: upsell
name: Upsell
trigger:
  repeated:
    event: episode_watched
    times: 3
    within: 7d
steps:
  - id: offer
    send:
      push:
        title: "Go Premium"
        body: "First month free"
"#;
    let script = r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"nia","traits":{"push_tokens":[{"platform":"fcm","token":"t-nia"}]}}
{"at":"2026-12-03T20:00:00Z","type":"track","userId":"nia","event":"episode_watched","messageId":"e-3"}
{"at":"2026-12-03T20:05:00Z","type":"track","userId":"nia","event":"episode_watched","messageId":"e-1","timestamp":"2026-12-01T20:00:00Z"}
{"at":"2026-12-03T20:10:00Z","type":"track","userId":"nia","event":"episode_watched","messageId":"e-2","timestamp":"2026-12-02T20:00:00Z"}
{"at":"2026-12-03T20:15:00Z","type":"track","userId":"nia","event":"episode_watched","messageId":"e-0","timestamp":"2026-11-20T20:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-03T20:10:00Z nia push offer: Go Premium"]
    );
}

/// A late occurrence that completes a count hears her from the latest occurrence counted with
/// it, as the count made in order does: a payment that succeeded before the count was made
/// (between the failures) neither ends the enrollment nor converts it, in either order.
#[tokio::test]
async fn a_late_occurrence_completing_a_count_hears_her_from_the_latest_counted() {
    let journey = r#"
id: dunning
name: Dunning
trigger:
  repeated:
    event: payment_failed
    times: 3
    within: 7d
exit_when: [{event: payment_succeeded}]
goal: {event: payment_succeeded, within: 7d}
steps:
  - id: remind
    send: {sms: {body: "Update your card"}}
  - id: pause
    wait: 2d
  - id: again
    send: {sms: {body: "Last reminder"}}
"#;
    let identify = r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"pia","traits":{"phone":"+447700900456"}}"#;
    let in_order = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-1"}
{"at":"2026-12-02T10:00:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-2"}
{"at":"2026-12-02T12:00:00Z","type":"track","userId":"pia","event":"payment_succeeded","messageId":"s-1"}
{"at":"2026-12-03T10:00:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-3"}
"#;
    // The first failure arrives last, and completes the count.
    let first_last = r#"
{"at":"2026-12-02T10:00:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-2"}
{"at":"2026-12-02T12:00:00Z","type":"track","userId":"pia","event":"payment_succeeded","messageId":"s-1"}
{"at":"2026-12-03T10:00:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-3"}
{"at":"2026-12-03T10:05:00Z","type":"track","userId":"pia","event":"payment_failed","messageId":"f-1","timestamp":"2026-12-01T10:00:00Z"}
"#;
    // With the exit alone, and with the goal too.
    let exit_only = journey.replace("goal: {event: payment_succeeded, within: 7d}\n", "");
    assert_ne!(exit_only, journey);
    for journey in [&exit_only, journey] {
        for (order, script, sent_at, again_at) in [
            ("in order", in_order, "2026-12-03T10:00", "2026-12-05T10:00"),
            (
                "first last",
                first_last,
                "2026-12-03T10:05",
                "2026-12-05T10:05",
            ),
        ] {
            let out = sim(&[journey], &format!("{identify}{script}")).await;
            assert_eq!(
                outbox(&out),
                [
                    format!("{sent_at}:00Z pia sms remind: Update your card"),
                    format!("{again_at}:00Z pia sms again: Last reminder"),
                ],
                "{order}: {journey}"
            );
            let ended = facts(&out, "pia", |w| {
                matches!(w, What::Converted { .. } | What::Exited { .. })
            });
            assert_eq!(ended, Vec::<String>::new(), "{order}: {journey}");
        }
    }
}

#[tokio::test]
async fn inactive_trigger_enters_after_the_last_activity_and_each_activity_rearms_it() {
    let journey = r#"
id: churn
name: Churn
trigger:
  inactive:
    events: [app_opened, data_used]
    for: 3d
steps:
  - id: offer
    send:
      sms:
        body: "We miss you, {{ profile.first_name }}"
"#;
    let script = r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"hal","traits":{"first_name":"Hal","phone":"+447700900123"}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"first_name":"Ivy","phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-ivy-1"}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"hal","event":"app_opened","messageId":"open-hal-1"}
{"at":"2026-12-02T12:00:00Z","type":"track","userId":"hal","event":"data_used","messageId":"data-hal-1"}
"#;
    let out = sim(&[journey], script).await;
    // ivy: 3 days after her only activity. hal: 3 days after his last one; the check armed by
    // his first activity (due 2026-12-04T09:00) does nothing.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-04T09:00:00Z ivy sms offer: We miss you, Ivy",
            "2026-12-05T12:00:00Z hal sms offer: We miss you, Hal",
        ]
    );
    assert_eq!(
        facts(&out, "hal", entered),
        ["2026-12-05T12:00:00Z churn/-: entered v1 on inactive"]
    );
}

/// The telecom churn journey in short: an SMS offer after 3 days without activity.
const CHURN: &str = r#"
id: churn
name: Churn
trigger:
  inactive:
    events: [app_opened, data_used]
    for: 3d
steps:
  - id: offer
    send: {sms: {body: "We miss you"}}
"#;

#[tokio::test]
async fn an_inactivity_check_that_enters_no_one_says_why_in_the_users_timeline() {
    // `reentry: never` (the default): ivy is offered once; her next inactivity is refused.
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHURN).await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-05T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-09T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-04T09:00:00Z ivy sms offer: We miss you"]
    );
    let ivy = h.rt.user("ivy").await.expect("ivy");
    assert_eq!(
        refusals(&ivy.timeline),
        ["2026-12-08T09:00:00Z churn [churn:ivy:1] on inactive: reentry: `reentry: never`, and the user entered on 2026-12-04T09:00:00Z"]
    );
}

/// An inactive trigger's `where` is read when the time has passed, as she is then: a prepaid
/// user is offered, a contract user is not, and her timeline says why.
#[tokio::test]
async fn an_inactive_trigger_enters_only_users_its_where_matches() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHURN.replace(
        "    for: 3d\n",
        "    for: 3d\n    where: \"profile.plan == 'prepaid' and event.inactive_since < now()\"\n",
    ))
    .await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456","plan":"contract"}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"hal","traits":{"phone":"+447700900123","plan":"contract"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"hal","event":"app_opened","messageId":"open-2"}
{"at":"2026-12-02T09:00:00Z","type":"identify","userId":"hal","traits":{"plan":"prepaid"}}
"#,
    )
    .await;
    h.advance_to(at("2026-12-06T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-04T09:00:00Z hal sms offer: We miss you"]
    );
    let ivy = h.rt.user("ivy").await.expect("ivy");
    assert_eq!(
        refusals(&ivy.timeline),
        ["2026-12-04T09:00:00Z churn [] on inactive: condition: `where: profile.plan == 'prepaid' and event.inactive_since < now()` was false (profile.plan = \"contract\", event.inactive_since = \"2026-12-01T09:00:00Z\")"]
    );
}

/// `anniversary()` in a schedule's `where`: the user's day in her zone; one without a zone is
/// in the schedule's named zone (20:00 in Los Angeles on 2 December is already the 3rd in UTC).
#[tokio::test]
async fn a_birthday_schedule_reads_the_users_day_or_the_schedules_zone() {
    let journey = r#"
id: bday
name: B
trigger:
  schedule: {cron: "0 20 * * *", timezone: America/Los_Angeles, where: "anniversary(profile.birthday)"}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "Happy birthday", text: x}}
"#;
    let script = r#"
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"lou","traits":{"email":"lou@x.com","birthday":"1990-12-03"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"ama","traits":{"email":"ama@x.com","birthday":"1990-12-03","timezone":"Asia/Tokyo"}}
"#;
    let out = sim_with(
        &[journey],
        script,
        Config::default(),
        SignedDuration::from_hours(24 * 4),
    )
    .await;
    // lou: 20:00 in Los Angeles on the 3rd (04:00Z on the 4th). ama: the run at 20:00 Los
    // Angeles on the 2nd is 13:00 on the 3rd in Tokyo, her birthday.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-03T04:00:00Z ama email s: Happy birthday",
            "2026-12-04T04:00:00Z lou email s: Happy birthday",
        ]
    );
}

/// `days_until()` and `days_since()` in a daily schedule's `where`: a user enters on the one
/// day, in her zone, that is 3 days before her trial ends (7 days after she signed up), and on
/// no other run, though `reentry: after_exit` would let each run enter her again. Each run
/// reads the profile as it is then: a trial extended before its reminder is reminded of later.
#[tokio::test]
async fn a_daily_schedule_enters_a_user_a_set_number_of_days_before_or_after_her_date() {
    let trial = r#"
id: trial
name: Trial ending
trigger:
  schedule: {cron: "0 9 * * *", timezone: user, where: "days_until(profile.trial_ends_at) == 3"}
reentry: after_exit
timezone: Europe/London
steps:
  - id: s
    send: {email: {subject: "3 days left", text: x}}
"#;
    let week = r#"
id: week
name: A week in
trigger:
  schedule: {cron: "0 9 * * *", timezone: user, where: "days_since(profile.signed_up_at) == 7"}
reentry: after_exit
timezone: Europe/London
steps:
  - id: s
    send: {email: {subject: "A week in", text: x}}
"#;
    let script = r#"
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com","trial_ends_at":"2026-12-06","signed_up_at":"2026-11-28T15:00:00-05:00"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"kai","traits":{"email":"kai@x.com","trial_ends_at":"2026-12-08T10:00:00Z","timezone":"Pacific/Auckland"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@x.com","trial_ends_at":"2026-12-02"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"cat","traits":{"email":"cat@x.com"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"dan","traits":{"email":"dan@x.com","trial_ends_at":"soon","signed_up_at":1795000000}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"eve","traits":{"email":"eve@x.com","trial_ends_at":"2026-12-09"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"fay","traits":{"email":"fay@x.com","trial_ends_at":1796731200}}
{"at":"2026-12-05T12:00:00Z","type":"identify","userId":"eve","traits":{"trial_ends_at":"2026-12-12"}}
"#;
    let out = sim_with(
        &[trial, week],
        script,
        Config::default(),
        SignedDuration::from_hours(24 * 7),
    )
    .await;
    // ann: 09:00 in London on the 3rd. kai: 09:00 in Auckland on the 5th, three days before
    // the 8th her trial's end is written on (20:00Z on the 4th). bob's 3 days before were
    // before the runs; cat has no date, dan no trial's end that reads as one (his sign-up,
    // seconds since 1970, is the 18th of November). eve's trial moved from the 9th to the 12th
    // on the 5th, before the run of the 6th: she hears on the 9th. fay's trial ends at
    // 1796731200, seconds since 1970 as Stripe sends them: 12:00Z on the 8th.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-03T09:00:00Z ann email s: 3 days left",
            "2026-12-04T20:00:00Z kai email s: 3 days left",
            "2026-12-05T09:00:00Z ann email s: A week in",
            "2026-12-05T09:00:00Z fay email s: 3 days left",
            "2026-12-09T09:00:00Z eve email s: 3 days left",
        ]
    );
}

/// A schedule in a named zone, and no journey `timezone`: a user without a zone of her own is in
/// the schedule's zone for the whole journey, so the branch after the run that entered her
/// reads the same day as its `where` did, a wait for a time of day is the schedule's 10:00, and
/// a message's `date` prints the time there (`journey.timezone` names the zone).
#[tokio::test]
async fn a_schedule_in_a_named_zone_is_the_default_zone_of_its_steps() {
    let trial = r#"
id: trial
name: Trial ending
trigger:
  schedule: {cron: "0 9 * * *", timezone: Australia/Sydney, where: "days_until(profile.trial_ends_at) == 3"}
reentry: never
steps:
  - id: check
    branch:
      cases:
        - when: "days_until(profile.trial_ends_at) == 3"
          goto: ten
      else: other_day
  - id: ten
    wait_until: {time: "10:00"}
  - id: three
    send: {email: {subject: "3 days left, {{ now | date('%d %H:%M') }} {{ journey.timezone }}", text: x}}
    next: done
  - id: other_day
    send: {email: {subject: "another day", text: x}}
  - id: done
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com","trial_ends_at":"2026-12-06"}}
"#;
    let out = sim_with(
        &[trial],
        script,
        Config::default(),
        SignedDuration::from_hours(24 * 4),
    )
    .await;
    // 09:00 in Sydney on the 3rd is 22:00Z on the 2nd; 10:00 there is 23:00Z.
    assert_eq!(
        outbox(&out),
        ["2026-12-02T23:00:00Z ann email three: 3 days left, 03 10:00 Australia/Sydney"]
    );
}

#[tokio::test]
async fn a_schedule_run_that_does_not_enter_a_matching_user_says_why() {
    // The daily digest, `reentry: never` (the default): the second day's run enters no one.
    let out = sim_with(
        &[&DIGEST.replace("TZ", "UTC")],
        &digest_script("2026-12-01T06:00:00Z"),
        Config::default(),
        SignedDuration::from_hours(40),
    )
    .await;
    assert_eq!(outbox(&out).len(), 3, "{:?}", outbox(&out));
    for user in ["ann", "bob", "cat"] {
        assert_eq!(
            refusals(entries(&out, user)),
            [format!("2026-12-02T09:00:00Z digest [digest:{user}:1] on schedule: reentry: `reentry: never`, and the user entered on 2026-12-01T09:00:00Z")],
            "{user}"
        );
    }
    // dan's plan does not match the schedule's `where`: not a refusal, nothing kept
    assert_eq!(refusals(entries(&out, "dan")), Vec::<String>::new());
}

#[tokio::test]
async fn an_active_user_has_one_inactivity_check_pending_not_one_per_event() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHURN).await;
    // ivy uses data every two hours for a day and a half, then goes quiet
    let mut script = vec![
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ivy",
        "traits": {"phone": "+447700900456"}})
        .to_string(),
    ];
    let first = at("2026-12-01T09:00:00Z");
    let mut last = first;
    for n in 0..18 {
        last = first + SignedDuration::from_hours(2 * n);
        script.push(track(
            &last.to_string(),
            "ivy",
            "data_used",
            &format!("d-{n}"),
        ));
    }
    h.play(&script.join("\n")).await;
    let checks = || {
        h.store
            .dump()
            .iter()
            .filter(|r| r.key.pk.starts_with("T#") && r.key.sk.starts_with("inactive:"))
            .count()
    };
    // then one check waits in the timer index (armed by the first activity), not eighteen
    assert_eq!(checks(), 1);
    // and when it is due it looks again from the latest activity: she is offered 3 days after it
    h.advance_to(at("2026-12-09T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [format!(
            "{} ivy sms offer: We miss you",
            last + SignedDuration::from_hours(72)
        )]
    );
    assert_eq!(checks(), 0);
}

/// A phone offline for days sends its queued activity late, stamped when it happened: each
/// event whose `for` has passed already would enter her again at once, one win-back a late
/// event. The burst arms one check: its first event from after the last check (a spell no
/// check saw), due a settle (5 minutes) after it came, when it looks from the latest of them;
/// the others arm none while it is pending. One from before the last check
/// arms nothing (that check judged the spell). Her first activity ever arms a check whatever
/// its age (an import of history is checked), and a late one still inside its `for` arms one
/// as usual.
#[tokio::test]
async fn late_activity_whose_for_has_passed_does_not_enter_her_again_at_once() {
    let h = Harness::new("2026-12-01T00:00:00Z");
    h.publish(&CHURN.replace("steps:", "reentry: after_exit\nsteps:"))
        .await;
    h.play(
        r#"
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"joe","traits":{"phone":"+447700900789"}}
{"at":"2026-12-01T00:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-10T00:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2","timestamp":"2026-12-05T00:00:00Z"}
{"at":"2026-12-10T00:00:01Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-3","timestamp":"2026-12-05T01:00:00Z"}
{"at":"2026-12-10T00:00:02Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-4","timestamp":"2026-12-06T00:00:00Z"}
{"at":"2026-12-10T00:00:00Z","type":"track","userId":"joe","event":"app_opened","messageId":"open-joe","timestamp":"2026-12-05T00:00:00Z"}
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"kim","traits":{"phone":"+447700900111"}}
{"at":"2026-12-01T00:00:00Z","type":"track","userId":"kim","event":"app_opened","messageId":"open-kim-1"}
{"at":"2026-12-10T00:00:00Z","type":"track","userId":"kim","event":"app_opened","messageId":"open-kim-2","timestamp":"2026-12-03T00:00:00Z"}
{"at":"2026-12-12T00:00:00Z","type":"track","userId":"ivy","event":"data_used","messageId":"data-1","timestamp":"2026-12-11T00:00:00Z"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    let mut sent = h.outbox();
    sent.sort();
    assert_eq!(
        sent,
        [
            "2026-12-04T00:00:00Z ivy sms offer: We miss you",
            "2026-12-04T00:00:00Z kim sms offer: We miss you",
            // quiet since the 6th, as her late events say: one win-back, not three, a settle
            // after they came (the check looks from the latest of them)
            "2026-12-10T00:05:00Z ivy sms offer: We miss you",
            "2026-12-10T00:05:00Z joe sms offer: We miss you",
            "2026-12-14T00:00:00Z ivy sms offer: We miss you",
        ]
    );
}

/// A fitness app's streak nudge: two days without a workout.
const STREAK: &str = r#"
id: streak_broken
name: Streak broken
trigger:
  inactive: {events: [workout_completed], for: 2d}
reentry: after_exit
exit_when:
  - event: workout_completed
steps:
  - id: nudge
    send: {sms: {body: "Your streak ended"}}
"#;

/// A phone flushing its offline queue, or a backfill, one request an event, within 40 ms, each
/// stamped when it happened: amy's oldest first (10, 6 and 1 day ago), gus's out of order (10,
/// 1 and 5 days ago). The engine handles what is due between the requests (as the harness
/// does), so a check due at once would run before the next event is applied: the check her
/// first ever activity arms waits a settle after it came, and then looks from her latest
/// activity, a day ago. Not entered (she is active), and entered once when she has been quiet
/// two days since her latest workout.
#[tokio::test]
async fn late_activity_sent_one_request_an_event_is_judged_from_her_latest_not_at_once() {
    let h = Harness::new("2026-12-10T12:00:00Z");
    h.publish(STREAK).await;
    let mut script = Vec::new();
    for user in ["amy", "gus"] {
        script.push(
            json!({"at": "2026-12-10T12:00:00Z", "type": "identify", "userId": user,
            "traits": {"phone": "+447700900456"}}),
        );
    }
    let flush = |user: &str, stamps: [&str; 3]| -> Vec<serde_json::Value> {
        stamps
            .iter()
            .enumerate()
            .map(|(n, stamp)| {
                json!({"at": format!("2026-12-10T12:00:01.0{}0Z", 2 * n), "type": "track",
                "userId": user, "event": "workout_completed", "messageId": format!("{user}-{n}"),
                "timestamp": stamp})
            })
            .collect()
    };
    script.extend(flush(
        "amy",
        [
            "2026-11-30T12:00:00Z",
            "2026-12-04T12:00:00Z",
            "2026-12-09T12:00:00Z",
        ],
    ));
    script.extend(flush(
        "gus",
        [
            "2026-11-30T12:00:00Z",
            "2026-12-09T12:00:00Z",
            "2026-12-05T12:00:00Z",
        ],
    ));
    script.sort_by_key(|l| l["at"].as_str().map(str::to_string));
    h.play(&script_of(&script)).await;
    h.advance_to(at("2026-12-10T13:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new(), "active a day ago: none");
    for user in ["amy", "gus"] {
        let view = h.rt.user(user).await.expect("user");
        assert!(
            !view.timeline.iter().any(|e| entered(&e.what)),
            "{user}: {:?}",
            view.timeline
        );
    }
    h.advance_to(at("2026-12-14T00:00:00Z")).await;
    let mut sent = h.outbox();
    sent.sort();
    assert_eq!(
        sent,
        [
            "2026-12-11T12:00:00Z amy sms nudge: Your streak ended",
            "2026-12-11T12:00:00Z gus sms nudge: Your streak ended",
        ],
        "two days after her latest workout, once"
    );
}

/// Late history with nothing newer is a user inactive indeed: uma's one workout, ten days ago,
/// enters her, a settle (5 minutes) after it came rather than at once; vic's two, ten and six
/// days ago, one request each, enter him once, from the later. Each entry says what its check
/// read: her latest activity, and how long before.
#[tokio::test]
async fn late_activity_with_nothing_newer_enters_once_after_the_settle() {
    let h = Harness::new("2026-12-10T12:00:00Z");
    h.publish(STREAK).await;
    h.play(
        r#"
{"at":"2026-12-10T12:00:00Z","type":"identify","userId":"uma","traits":{"phone":"+447700900456"}}
{"at":"2026-12-10T12:00:00Z","type":"identify","userId":"vic","traits":{"phone":"+447700900123"}}
{"at":"2026-12-10T12:00:00Z","type":"track","userId":"uma","event":"workout_completed","messageId":"uma-1","timestamp":"2026-11-30T12:00:00Z"}
{"at":"2026-12-10T12:00:00Z","type":"track","userId":"vic","event":"workout_completed","messageId":"vic-1","timestamp":"2026-11-30T12:00:00Z"}
{"at":"2026-12-10T12:00:00.020Z","type":"track","userId":"vic","event":"workout_completed","messageId":"vic-2","timestamp":"2026-12-04T12:00:00Z"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-10T12:04:59Z")).await;
    assert_eq!(
        h.outbox(),
        Vec::<String>::new(),
        "not at once: a settle after"
    );
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-10T12:05:00Z uma sms nudge: Your streak ended",
            "2026-12-10T12:05:00Z vic sms nudge: Your streak ended",
        ]
    );
    assert_eq!(
        judged(&h, "uma").await,
        ["2026-12-10T12:05:00Z her check at 2026-12-10T12:05:00Z read her profile: her latest of workout_completed was at 2026-11-30T12:00:00Z, 10d5m before (`for: 2d`)"]
    );
    assert_eq!(
        judged(&h, "vic").await,
        ["2026-12-10T12:05:00Z her check at 2026-12-10T12:05:00Z read her profile: her latest of workout_completed was at 2026-12-04T12:00:00Z, 6d5m before (`for: 2d`)"]
    );
}

/// Each of the user's entries: `"<at> <detail>"` (for an `inactive` trigger, what its check
/// judged).
async fn judged(h: &Harness, user: &str) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Entered { detail, .. } => {
                Some(format!("{} {}", e.at, detail.as_deref().unwrap_or("-")))
            }
            _ => None,
        })
        .collect()
}

/// An exit's or a wait's `where` that keeps an event from moving an enrollment is in her
/// timeline, with what it read: "why did she get the nudge after she opened the app?". Not
/// when another exit took the event; an event from before the wait began says that instead.
#[tokio::test]
async fn an_event_a_where_kept_from_moving_the_enrollment_says_why() {
    let journey = r#"
id: cartx
name: Cart
trigger: {event: cart}
goal: {event: order, within: 1d}
exit_when:
  - {event: order, where: "event.total > 10"}
  - {event: order, where: "event.channel == 'shop'"}
steps:
  - id: w
    wait_for: {event: app_opened, where: "event.screen == 'home'", timeout: 1d, on_event: thanks, on_timeout: nudge}
  - id: nudge
    send: {sms: {body: "nudge"}}
    next: done
  - id: thanks
    send: {sms: {body: "thanks"}}
  - id: done
    exit: true
"#;
    let paid = r#"
id: paid
name: Paid
trigger: {event: invoice}
exit_when: [{event: order, where: "event.total > 100"}]
steps:
  - id: w
    wait_for: {event: order, timeout: 1d, on_event: thanks}
  - id: thanks
    send: {sms: {body: "thanks"}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"w","traits":{"phone":"+447700900789"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"w","event":"invoice"}
{"at":"2026-12-01T10:30:00Z","type":"track","userId":"w","event":"order","properties":{"total":5}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"phone":"+447700900123"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"v","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"u","event":"cart"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"v","event":"cart"}
{"at":"2026-12-01T10:30:00Z","type":"track","userId":"u","event":"order","properties":{"total":5,"channel":"app"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"u","event":"app_opened","properties":{"screen":"settings"}}
{"at":"2026-12-01T11:30:00Z","type":"track","userId":"u","event":"app_opened","timestamp":"2026-12-01T09:30:00Z","properties":{"screen":"settings"}}
{"at":"2026-12-01T10:30:00Z","type":"track","userId":"v","event":"order","properties":{"total":5,"channel":"shop"}}
"#;
    let out = sim(&[journey, paid], script).await;
    let unmet = |w: &What| matches!(w, What::Unmet { .. });
    assert_eq!(
        facts(&out, "u", unmet),
        [
            "2026-12-01T10:30:00Z cartx/w: heard order, which its exit_when did not take: its `where` was false",
            "2026-12-01T10:30:00Z cartx/w: heard order, which its exit_when did not take: its `where` was false",
            "2026-12-01T11:00:00Z cartx/w: heard app_opened, which its wait_for did not take: its `where` was false",
            "2026-12-01T11:30:00Z cartx/w: heard app_opened, which its wait_for did not take: it happened at 2026-12-01T09:30:00Z, before the wait began at 2026-12-01T10:00:00Z: a wait hears the events from when the user reached it",
        ]
    );
    assert_eq!(
        details(&out, "u"),
        [
            "`where: event.total > 10` was false (event.total = 5)",
            "`where: event.channel == 'shop'` was false (event.channel = \"app\")",
            "`where: event.screen == 'home'` was false (event.screen = \"settings\")",
            "happened at 2026-12-01T09:30:00Z, before the wait began at 2026-12-01T10:00:00Z: a wait hears the events from when the user reached it",
        ]
    );
    // u's order converted her (the goal takes any order), and did not exit her: both said.
    assert_eq!(
        facts(&out, "u", |w| matches!(w, What::Converted { .. })).len(),
        1
    );
    // w's order is the one her wait is for: it moved her (the exit's `where` held it back from
    // ending her, but the event did not move nothing).
    assert_eq!(facts(&out, "w", unmet), Vec::<String>::new());
    assert_eq!(
        outbox_of(&out, "w"),
        ["2026-12-01T10:30:00Z w sms thanks: thanks"]
    );
    // v's order met the second exit: she exited, and nothing is unmet.
    assert_eq!(facts(&out, "v", unmet), Vec::<String>::new());
    assert_eq!(
        facts(&out, "v", |w| matches!(w, What::Exited { .. })),
        ["2026-12-01T10:30:00Z cartx/w: exited on order"]
    );
}

/// An exit event stamped before the enrollment's trigger (a real-time stamp against a sped-up
/// dev clock, a phone's clock behind) ends nothing, and her timeline says so: "why was she
/// emailed after she ordered?". One entry for the event (the exit's, though the goal names it
/// too); the goal's when no exit names it; none when nothing names it, nor for an event after
/// the trigger that an exit took.
#[tokio::test]
async fn an_exit_event_from_before_the_trigger_says_why_it_ended_nothing() {
    let cart = r#"
id: cart
name: Cart
trigger: {event: cart_abandoned}
exit_when: [{event: order_completed}]
goal: {event: order_completed, within: 7d}
steps:
  - id: wait_30m
    wait: 30m
  - id: reminder
    send: {sms: {body: "Your cart"}}
"#;
    let goal_only = r#"
id: browse
name: Browse
trigger: {event: cart_abandoned}
goal: {event: order_completed, within: 7d}
steps:
  - id: wait_30m
    wait: 30m
  - id: nudge
    send: {sms: {body: "Still browsing?"}}
"#;
    let deaf = r#"
id: deaf
name: Deaf
trigger: {event: cart_abandoned}
exit_when: [{event: app_opened}]
steps:
  - id: wait_30m
    wait: 30m
  - id: hello
    send: {sms: {body: "Hello"}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"phone":"+447700900123"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"cart_abandoned"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned"}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"bob","event":"order_completed","timestamp":"2026-12-01T09:50:00Z"}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"ann","event":"order_completed"}
"#;
    let out = sim(&[cart, goal_only, deaf], script).await;
    let unmet = |w: &What| matches!(w, What::Unmet { .. });
    assert_eq!(
        facts(&out, "bob", unmet),
        [
            "2026-12-01T10:05:00Z browse/wait_30m: heard order_completed, which its goal did not take: it happened at 2026-12-01T09:50:00Z, before the enrollment's trigger at 2026-12-01T10:00:00Z: an enrollment's exits and goal hear the events from its trigger on",
            "2026-12-01T10:05:00Z cart/wait_30m: heard order_completed, which its exit_when did not take: it happened at 2026-12-01T09:50:00Z, before the enrollment's trigger at 2026-12-01T10:00:00Z: an enrollment's exits and goal hear the events from its trigger on",
        ]
    );
    // Not exited, as documented: the reminders still go out.
    assert_eq!(
        outbox_of(&out, "bob"),
        [
            "2026-12-01T10:30:00Z bob sms nudge: Still browsing?",
            "2026-12-01T10:30:00Z bob sms reminder: Your cart",
            "2026-12-01T10:30:00Z bob sms hello: Hello",
        ]
    );
    // ann's order came after her trigger: it exited and converted her, nothing unmet.
    assert_eq!(facts(&out, "ann", unmet), Vec::<String>::new());
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Exited { .. })),
        ["2026-12-01T10:05:00Z cart/wait_30m: exited on order_completed"]
    );
}

/// A check armed under a version whose `for` was shorter waits, when it comes due, until the
/// `for` of the version published now has passed since the latest activity.
#[tokio::test]
async fn an_inactivity_check_waits_for_a_longer_for_published_since_it_was_armed() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHURN).await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
"#,
    )
    .await;
    // armed for 3 days; then the team makes it 5
    h.publish(&CHURN.replace("for: 3d", "for: 5d")).await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new(), "not 3 days: 5");
    h.advance_to(at("2026-12-09T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-06T09:00:00Z ivy sms offer: We miss you"]
    );
}

/// An inactive user whom `reentry: after` turns away is looked at again when she may enter:
/// still inactive then, she enters (a churner who opened the app once after the offer gets the
/// next one, not none).
#[tokio::test]
async fn an_inactive_user_refused_by_reentry_after_is_checked_again_when_she_may_enter() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHURN.replace("steps:", "reentry: {after: 10d}\nsteps:"))
        .await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-05T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2"}
{"at":"2026-12-10T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-3"}
"#,
    )
    .await;
    h.advance_to(at("2027-01-10T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-04T09:00:00Z ivy sms offer: We miss you",
            // refused on the 8th and the 13th (10 days from the 4th), entered when that
            // allowed, once: the check looking again and the one the 10th armed find the
            // same inactivity (since the 10th), not two
            "2026-12-14T09:00:00Z ivy sms offer: We miss you",
        ]
    );
}

/// As above, turned away by `reentry: after` because of the entry of the visitor she turned out
/// to be: looked at again when that entry lets her in, and entered then if still inactive.
#[tokio::test]
async fn an_inactive_user_refused_for_a_visitors_entry_is_checked_again_when_she_may_enter() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHURN.replace("steps:", "reentry: {after: 10d}\nsteps:"))
        .await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","anonymousId":"ivy-phone","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"ivy-phone","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-05T08:00:00Z","type":"identify","userId":"ivy","anonymousId":"ivy-phone","traits":{"phone":"+447700900456"}}
{"at":"2026-12-05T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2"}
"#,
    )
    .await;
    h.advance_to(at("2027-01-10T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-04T09:00:00Z anon:ivy-phone sms offer: We miss you",
            // refused on the 8th for the visitor's entry (10 days from the 4th), looked at
            // again when that allowed
            "2026-12-14T09:00:00Z ivy sms offer: We miss you",
        ]
    );
    let ivy = h.rt.user("ivy").await.expect("ivy");
    let refused = "churn [churn:anon:ivy-phone:1] on inactive: reentry: `reentry: after 10d`: may enter again from 2026-12-14T09:00:00Z (as the anonymous visitor `anon:ivy-phone` she turned out to be)";
    assert_eq!(
        refusals(&ivy.timeline),
        [
            // the visitor's check, which the login made hers (judged at its own time), and the
            // one her activity armed
            format!("2026-12-05T08:00:00Z {refused}; judged at the trigger's time, 2026-12-04T09:00:00Z"),
            format!("2026-12-08T09:00:00Z {refused}"),
        ]
    );
}

/// An inactive user whose check comes due while she is still in the journey (her one activity
/// during a long win-back armed it) is looked at again a `for` later: once her enrollment has
/// ended she enters again (`reentry: after_exit`), though she never does anything again.
#[tokio::test]
async fn an_inactive_user_still_enrolled_when_her_check_comes_is_checked_again_after() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHURN.replace(
        "steps:\n  - id: offer\n    send: {sms: {body: \"We miss you\"}}",
        "reentry: after_exit\nsteps:\n  - id: offer\n    send: {sms: {body: \"We miss you\"}}\n  - id: later\n    wait: 5d\n  - id: again\n    send: {sms: {body: \"Still here\"}}",
    ))
    .await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-05T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-04T09:00:00Z ivy sms offer: We miss you",
            // the check the 5th armed came on the 8th, while she was in the journey (until
            // the 9th): refused, and looked at again 3 days on, when she had left
            "2026-12-09T09:00:00Z ivy sms again: Still here",
            "2026-12-11T09:00:00Z ivy sms offer: We miss you",
            "2026-12-16T09:00:00Z ivy sms again: Still here",
        ]
    );
    let ivy = h.rt.user("ivy").await.expect("ivy");
    assert_eq!(
        refusals(&ivy.timeline),
        ["2026-12-08T09:00:00Z churn [churn:ivy:1] on inactive: enrolled: in the journey since 2026-12-04T09:00:00Z (on version 1, at step `later`): one enrollment a user at a time"]
    );
}

/// A check that comes due while the journey is closed is looked at again: when the journey is
/// opened again, the user who stayed inactive all along enters.
#[tokio::test]
async fn an_inactive_user_checked_while_the_journey_is_closed_enters_when_it_opens_again() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHURN).await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
"#,
    )
    .await;
    h.publish(&format!("{CHURN}status: closed\n")).await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new(), "closed: no one enters");
    h.publish(CHURN).await;
    h.advance_to(at("2026-12-09T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-07T09:00:00Z ivy sms offer: We miss you"],
        "looked at again 3 days after the refused check, the journey open again"
    );
}

/// Her activity while the journey is closed arms a check as when it is open: once it is open
/// again, she who stayed inactive since enters, though her earlier check had come and gone.
#[tokio::test]
async fn an_activity_while_the_journey_is_closed_arms_her_check_for_when_it_opens() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    let churn = CHURN.replace("steps:", "reentry: after_exit\nsteps:");
    h.publish(&churn).await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    h.publish(&format!("{churn}status: closed\n")).await;
    h.play(
        r#"
{"at":"2026-12-06T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-07T00:00:00Z")).await;
    h.publish(&churn).await;
    h.advance_to(at("2026-12-12T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-04T09:00:00Z ivy sms offer: We miss you",
            "2026-12-09T09:00:00Z ivy sms offer: We miss you",
        ]
    );
}

/// A check handed over a little before its time (the sweep and the queue count whole seconds;
/// an event's time has milliseconds) is the check all the same: the user enters, and no check
/// comes back again and again until the clock passes its time.
#[tokio::test]
async fn an_inactivity_check_a_little_early_enters_the_user() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHURN).await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:01Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1","timestamp":"2026-12-01T09:00:00.500Z"}
"#,
    )
    .await;
    let early = at("2026-12-04T09:00:00Z");
    h.advance_to(early).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let check = Message::Inactivity {
        user_id: "ivy".into(),
        journey: "churn".into(),
        since: at("2026-12-01T09:00:00.500Z"),
        at: at("2026-12-04T09:00:00.500Z"),
    };
    for r in h.rt.handle_batch(&[check]).await {
        r.expect("handled");
    }
    assert_eq!(
        h.outbox(),
        ["2026-12-04T09:00:00Z ivy sms offer: We miss you"]
    );
    assert!(h.queue.take_due(early).is_empty(), "no check sent back");
}

/// A check handled late (a backlog on the queue) is the check of its due time: her exit and
/// goal events from between that time and the check's handling, applied after it (the app's
/// own backlog), come after her trigger and count, as they would had the check come on time.
#[tokio::test]
async fn an_inactivity_check_handled_late_hears_the_exit_and_goal_since_its_time() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHURN.replace(
        "steps:\n  - id: offer",
        "exit_when: [{event: app_opened}]\ngoal: {event: app_opened, within: 7d}\nsteps:\n  - id: pause\n    wait: 1h\n  - id: offer",
    ))
    .await;
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ivy","traits":{"phone":"+447700900456"}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-1"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-04T08:50:00Z")).await;
    // The check, due at 09:00, handled at 09:20; her 09:10 app_opened applied at 09:21.
    h.clock.set(at("2026-12-04T09:20:00Z"));
    h.advance_to(at("2026-12-04T09:20:00Z")).await;
    h.play(
        r#"
{"at":"2026-12-04T09:21:00Z","type":"track","userId":"ivy","event":"app_opened","messageId":"open-2","timestamp":"2026-12-04T09:10:00Z"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new(), "she came back at 09:10");
    let ivy = h.rt.user("ivy").await.expect("ivy");
    let facts: Vec<String> = ivy.timeline.iter().map(fact).collect();
    assert_eq!(
        facts[3..],
        [
            "2026-12-04T09:21:00Z churn/pause: converted on app_opened (at 2026-12-04T09:10:00Z; credited to no message: none went out before it)",
            "2026-12-04T09:21:00Z churn/pause: woke (exited)",
            "2026-12-04T09:21:00Z churn/pause: exited on app_opened",
        ]
    );
    assert_eq!(
        judged(&h, "ivy").await,
        ["2026-12-04T09:20:00Z her check at 2026-12-04T09:00:00Z read her profile: her latest of app_opened, data_used was at 2026-12-01T09:00:00Z, 3d before (`for: 3d`)"]
    );
}

/// The night the clocks go back, a local time happens twice: a schedule at that time enters
/// its users once, at the first (in the user's zone and in a fixed one alike).
#[tokio::test]
async fn a_schedule_fires_once_on_the_night_the_clocks_go_back() {
    let journey = |zone: &str| {
        format!(
            r#"
id: weekly_{id}
name: Weekly
trigger:
  schedule: {{cron: "30 1 * * sun", timezone: {zone}}}
reentry: after_exit
steps:
  - id: digest
    send: {{email: {{subject: "Digest", text: "."}}}}
"#,
            id = if zone == "user" { "user" } else { "fixed" }
        )
    };
    let script = r#"
{"at":"2027-11-06T12:00:00Z","type":"identify","userId":"ny","traits":{"email":"ny@example.com","timezone":"America/New_York"}}
"#;
    let out = sim_with(
        &[&journey("user"), &journey("America/New_York")],
        script,
        Config::default(),
        SignedDuration::from_hours(48),
    )
    .await;
    assert_eq!(
        outbox(&out),
        [
            "2027-11-07T05:30:00Z ny email digest: Digest",
            "2027-11-07T05:30:00Z ny email digest: Digest",
        ]
    );
}

const DIGEST: &str = r#"
id: digest
name: Daily digest
trigger:
  schedule:
    cron: "0 9 * * *"
    timezone: TZ
    where: "profile.plan == 'free'"
reentry: never
steps:
  - id: digest
    send:
      email:
        subject: "Your digest, {{ profile.first_name }}"
        text: "Today's picks"
"#;

/// Four users: two in their own zones, one with none (UTC), one the `where` leaves out.
fn digest_script(first_at: &str) -> String {
    let users = [
        ("ann", "Ann", Some("Europe/Paris"), "free"),
        ("bob", "Bob", Some("America/New_York"), "free"),
        ("cat", "Cat", None, "free"),
        ("dan", "Dan", Some("Europe/Paris"), "premium"),
    ];
    users
        .iter()
        .map(|(id, name, tz, plan)| {
            let mut traits =
                json!({"first_name": name, "email": format!("{id}@example.com"), "plan": plan});
            if let Some(tz) = tz {
                traits["timezone"] = json!(tz);
            }
            json!({"at": first_at, "type": "identify", "userId": id, "traits": traits}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn schedule_trigger_enters_matching_users_at_nine_in_the_journeys_zone_or_their_own() {
    let cases = [
        (
            "UTC",
            vec![
                "2026-12-01T09:00:00Z ann email digest: Your digest, Ann",
                "2026-12-01T09:00:00Z bob email digest: Your digest, Bob",
                "2026-12-01T09:00:00Z cat email digest: Your digest, Cat",
            ],
        ),
        (
            "user",
            vec![
                "2026-12-01T08:00:00Z ann email digest: Your digest, Ann",
                "2026-12-01T09:00:00Z cat email digest: Your digest, Cat",
                "2026-12-01T14:00:00Z bob email digest: Your digest, Bob",
            ],
        ),
    ];
    // The scheduler must not depend on which minute the script starts at, nor on how many
    // profiles a page of the run's scan holds (one: each segment's pages follow each other).
    for start in ["2026-12-01T06:00:00Z", "2026-12-01T06:01:00Z"] {
        for (tz, expected) in &cases {
            for scan_page in [1_000, 1] {
                let journey = DIGEST.replace("TZ", tz);
                let out = sim_with(
                    &[&journey],
                    &digest_script(start),
                    Config {
                        scan_page,
                        ..Config::default()
                    },
                    SignedDuration::from_hours(20),
                )
                .await;
                assert_eq!(
                    &outbox(&out),
                    expected,
                    "timezone {tz}, script from {start}, {scan_page} a page"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_schedule_in_users_zones_scans_only_at_their_zones_once_a_run_has_read_every_profile() {
    let h = Harness::new("2026-12-01T00:00:00Z");
    h.publish(&DIGEST.replace("TZ", "user")).await;
    h.play(&digest_script("2026-12-01T00:00:00Z")).await;
    // The scheduler's minutes, one by one, and what each minute's messages do.
    let run = |from: &str, to: &str| {
        let (from, to) = (at(from), at(to));
        let h = &h;
        async move {
            let mut t = from;
            while t < to {
                h.clock.set(t);
                h.rt.tick().await.expect("tick");
                h.advance_to(t).await;
                t += SignedDuration::from_mins(1);
            }
        }
    };
    let runs = |day: &str| -> Vec<String> {
        let mut minutes: Vec<String> = h
            .store
            .dump()
            .iter()
            .filter_map(|r| r.key.pk.strip_prefix("SCAN#schedule:digest:"))
            .filter_map(|m| m.parse::<i64>().ok())
            .filter_map(|m| jiff::Timestamp::from_second(m * 60).ok())
            .map(|t| t.to_string())
            .filter(|t| t.starts_with(day))
            .collect();
        minutes.sort();
        minutes.dedup();
        minutes
    };
    // The first run, before any run has read every profile: 00:00 UTC, 09:00 in Tokyo, where
    // no one is yet (every zone counts). It reads every profile: from then on, runs only where
    // the users are (Paris, New York, and UTC for cat, who names no zone); none at 03:15 UTC,
    // 09:00 in Kathmandu.
    run("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z").await;
    assert_eq!(
        runs("2026-12-01"),
        [
            "2026-12-01T00:00:00Z",
            "2026-12-01T08:00:00Z",
            "2026-12-01T09:00:00Z",
            "2026-12-01T14:00:00Z"
        ]
    );
    // A user in Tokyo comes in the second day, after its last run: the identify notes the zone,
    // and the next 09:00 in Tokyo (00:00 UTC) has a run.
    run("2026-12-02T00:00:00Z", "2026-12-02T15:00:00Z").await;
    h.play(r#"{"at":"2026-12-02T15:00:00Z","type":"identify","userId":"eve","traits":{"first_name":"Eve","email":"eve@example.com","plan":"free","timezone":"Asia/Tokyo"}}"#)
        .await;
    run("2026-12-02T15:00:00Z", "2026-12-03T00:05:00Z").await;
    assert_eq!(
        runs("2026-12-02"),
        [
            "2026-12-02T08:00:00Z",
            "2026-12-02T09:00:00Z",
            "2026-12-02T14:00:00Z"
        ]
    );
    assert_eq!(runs("2026-12-03"), ["2026-12-03T00:00:00Z"]);
    assert!(
        h.outbox()
            .contains(&"2026-12-03T00:00:00Z eve email digest: Your digest, Eve".to_string()),
        "{:?}",
        h.outbox()
    );
    // The partition the scheduler reads every minute holds the zones, not every run's markers
    // (eight runs, four segments each).
    let mut zones: Vec<String> = h
        .store
        .dump()
        .iter()
        .filter(|r| r.key.pk == "ZONES")
        .map(|r| r.key.sk.to_string())
        .collect();
    zones.sort();
    assert_eq!(
        zones,
        [
            "#complete",
            "America/New_York",
            "Asia/Tokyo",
            "Europe/Paris"
        ]
    );
}

#[tokio::test]
async fn a_schedule_in_users_zones_scans_only_at_minutes_when_it_fires_somewhere() {
    let h = Harness::new("2026-12-01T03:13:00Z");
    h.publish(&DIGEST.replace("TZ", "user")).await;
    let mut started = Vec::new();
    // 09:00 is 03:15 UTC in Kathmandu (+05:45), and in no zone at 03:13, 03:14 or 03:16
    for minute in ["03:13", "03:15", "03:16"] {
        h.clock.set(at(&format!("2026-12-01T{minute}:00Z")));
        started.push(h.rt.tick().await.expect("tick").schedules);
    }
    assert_eq!(started, [0, 1, 0]);
}

#[tokio::test]
async fn schedule_trigger_enters_each_user_in_their_own_zone_to_the_hour() {
    // The zone logic alone (see the test above for the exact minute).
    let journey = DIGEST.replace("TZ", "user");
    let out = sim_with(
        &[&journey],
        &digest_script("2026-12-01T06:00:00Z"),
        Config::default(),
        SignedDuration::from_hours(20),
    )
    .await;
    let hours: Vec<String> = waymark::simulate::messages(&out)
        .iter()
        .map(|m| format!("{} {}", m.at.strftime("%Y-%m-%dT%H"), m.user_id))
        .collect();
    assert_eq!(
        hours,
        [
            "2026-12-01T08 ann",
            "2026-12-01T09 cat",
            "2026-12-01T14 bob"
        ]
    );
}

/// A daily digest in the schedule's zone and in each user's, and a birthday greeting that reads
/// the date: ann in Berlin (born on 3 December), bob in no zone (UTC: born on the 6th).
async fn publish_missed_runs_journeys(h: &Harness) {
    for (id, schedule) in [
        ("utc", r#"{cron: "0 9 * * *", timezone: UTC}"#),
        ("own", r#"{cron: "0 9 * * *", timezone: user}"#),
        (
            "bday",
            r#"{cron: "0 9 * * *", timezone: user, where: "anniversary(profile.birthday)"}"#,
        ),
    ] {
        h.publish(&format!(
            r#"
id: {id}
name: {id}
trigger:
  schedule: {schedule}
reentry: after_exit
steps:
  - id: s
    send: {{email: {{subject: "{id}", text: "."}}}}
"#
        ))
        .await;
    }
    h.play(
        r#"{"at":"2026-12-01T07:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com","timezone":"Europe/Berlin","birthday":"1990-12-03"}}
{"at":"2026-12-01T07:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@x.com","birthday":"1990-12-06"}}"#,
    )
    .await;
}

/// The scheduler is down (or `waymark dev` stopped) from `h.now()` until `until`: it then catches
/// up, a day of minutes a run, and the engine handles what the runs queued. Returns the runs
/// started.
async fn down_until(h: &Harness, until: &str) -> usize {
    let until = at(until);
    h.clock.set(until);
    let minute = until.as_second() / 60;
    let mut started = 0;
    for _ in 0..10 {
        started += h.rt.tick().await.expect("tick").schedules;
        let cursor = h
            .store
            .get(&Key::new("SCHED", "cursor"))
            .await
            .expect("cursor")
            .and_then(|r| r.parse::<i64>().ok());
        if cursor.is_some_and(|c| c > minute) {
            break;
        }
    }
    h.advance_to(until).await;
    started
}

/// Catching up after days down, a schedule whose `where` reads no date starts only the latest
/// of the runs it missed (in its zone, or in each user's own): a daily digest goes out once,
/// not once a day missed; one whose `where` reads the date judges every day missed (a birthday
/// on one of them is wished). Whether or not the zones users are in are known yet.
#[tokio::test]
async fn a_catch_up_starts_only_the_latest_missed_run_unless_the_where_reads_the_date() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    publish_missed_runs_journeys(&h).await;
    h.rt.tick().await.expect("the first minute");
    // Down from 07:00 on the 1st, before any run (no zone known: every minute some zone's 09:00
    // is in starts a run, and each user's latest is picked out as it reads her), to 10:00 on the
    // 4th.
    down_until(&h, "2026-12-04T10:00:00Z").await;
    let mut sent = h.outbox();
    sent.sort();
    assert_eq!(
        sent,
        [
            "2026-12-04T10:00:00Z ann email s: bday",
            "2026-12-04T10:00:00Z ann email s: own",
            "2026-12-04T10:00:00Z ann email s: utc",
            "2026-12-04T10:00:00Z bob email s: own",
            "2026-12-04T10:00:00Z bob email s: utc",
        ]
    );
    // Down again until the 7th, the zones known now: only the latest runs are started (the
    // digest's at 09:00 UTC, and in Berlin and UTC for the users' own), and every run of the
    // birthday's (Berlin's and UTC's 09:00 of the 5th, 6th and 7th).
    let started = down_until(&h, "2026-12-07T10:00:00Z").await;
    let mut sent = h.outbox().split_off(5);
    sent.sort();
    assert_eq!(
        sent,
        [
            "2026-12-07T10:00:00Z ann email s: own",
            "2026-12-07T10:00:00Z ann email s: utc",
            "2026-12-07T10:00:00Z bob email s: bday",
            "2026-12-07T10:00:00Z bob email s: own",
            "2026-12-07T10:00:00Z bob email s: utc",
        ]
    );
    assert_eq!(started, 1 + 2 + 6);
}

/// A catch-up reaching back before a journey was published starts none of its runs from then:
/// a daily digest at 09:00 published at 10:00 has its first run the next morning, as the user's
/// view says (its `last_run` is none until then).
#[tokio::test]
async fn a_catch_up_starts_no_run_from_before_the_journey_was_published() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.rt.tick().await.expect("the first minute");
    // The scheduler's next run comes at 10:00, just after the digest is published.
    h.clock.set(at("2026-12-01T10:00:00Z"));
    h.publish(
        r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "digest", text: "."}}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com"}}"#)
        .await;
    assert_eq!(down_until(&h, "2026-12-01T10:00:00Z").await, 0);
    assert_eq!(h.outbox(), Vec::<String>::new());
    down_until(&h, "2026-12-02T09:00:00Z").await;
    assert_eq!(h.outbox(), ["2026-12-02T09:00:00Z ann email s: digest"]);
}

/// A run's pages are judged by the version the scheduler started the run for, whatever the
/// reading worker's cached list says: a digest published fifteen seconds before its 09:00 run,
/// not yet in the list an engine instance read at 08:59, still enters the users of the pages
/// that instance reads, and its entries enter them by the run's version. (Before, such a page
/// found no journey, entered no one, and was marked read: its users missed the run, with no
/// error; and an entry handled there was poison, `journey not published`.)
#[tokio::test]
async fn a_run_started_just_after_a_publish_enters_the_users_a_stale_worker_reads() {
    use waymark::clock::Clock;
    let h = Harness::new("2026-12-01T08:59:00Z");
    let (sender, worker_lines) = waymark::outbox::OutboxSender::memory(h.clock.clone());
    let worker = waymark::runtime::Runtime::new(
        std::sync::Arc::new(h.store.clone()),
        std::sync::Arc::new(h.queue.clone()),
        std::sync::Arc::new(sender),
        h.clock.clone(),
        std::time::Duration::from_secs(3600),
        Config::default(),
    );
    assert!(worker
        .catalog
        .latest("digest")
        .await
        .expect("read")
        .is_none());
    h.clock.set(at("2026-12-01T08:59:45Z"));
    h.publish(
        r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "digest", text: "."}}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T08:59:45Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com"}}"#)
        .await;
    h.clock.set(at("2026-12-01T09:00:00Z"));
    h.rt.tick().await.expect("the 09:00 minute");
    let mut scanned = 0;
    let mut entries = 0;
    for _ in 0..100 {
        let due = h.queue.take_due(h.clock.now());
        if due.is_empty() {
            break;
        }
        for m in &due {
            // The run's pages, and the entries they queue, are handled by the worker with the
            // stale list; the rest as usual.
            let rt = match m {
                Message::Scan { .. } => {
                    scanned += 1;
                    &worker
                }
                Message::Enter { .. } => {
                    entries += 1;
                    &worker
                }
                _ => &h.rt,
            };
            rt.handle(m).await.expect("handled");
        }
    }
    assert!(scanned > 0, "the run's pages were read by the worker");
    assert!(entries > 0, "the run's entries were handled by the worker");
    // Sent by the worker that handled the entry.
    let mut sent = h.outbox();
    sent.extend(
        worker_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(line),
    );
    assert_eq!(sent, ["2026-12-01T09:00:00Z ann email s: digest"]);
}

/// A schedule run's entry redelivered late (a dead-letter queue redriven days on), once the
/// later runs that entered her have pushed it out of the triggers her enrollment remembers,
/// does not enter her again, though `reentry: after_exit` lets each run in: a run enters her
/// only after the one she last entered at, and her timeline says why.
#[tokio::test]
async fn a_schedule_runs_entry_redelivered_after_later_runs_enters_no_one() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(
        r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "digest", text: "."}}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com"}}"#)
        .await;
    // The entries of 20 daily runs, as the runs' scans queue them.
    let enter = |day: i64| {
        let at = at("2026-12-01T09:00:00Z") + SignedDuration::from_hours(24 * day);
        let minute = at.as_second() / 60;
        (
            at,
            Message::Enter {
                user_id: "ann".into(),
                journey: "digest".into(),
                cause: format!("schedule:{minute}"),
                at,
                version: None,
            },
        )
    };
    let deliver = |message: Message| async {
        h.queue
            .send(
                QueueName::Events,
                &[Outbound {
                    message,
                    delay_secs: 0,
                }],
            )
            .await
            .expect("queue");
        h.advance_to(h.now()).await;
    };
    for day in 0..20 {
        let (at, message) = enter(day);
        h.advance_to(at).await;
        deliver(message).await;
    }
    assert_eq!(h.outbox().len(), 20);
    // The first run's entry comes again.
    h.advance_to(at("2026-12-21T10:00:00Z")).await;
    deliver(enter(0).1).await;
    assert_eq!(h.outbox().len(), 20, "{:?}", h.outbox());
    let ann = h.rt.user("ann").await.expect("ann");
    assert_eq!(
        refusals(&ann.timeline),
        ["2026-12-21T10:00:00Z digest [digest:ann:20] on schedule: reentry: the user entered at the run of 2026-12-20T09:00:00Z already, a later one than this run (2026-12-01T09:00:00Z): a run's entry that comes late enters no one again"]
    );
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

const ANN: &str = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann","email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#;

#[tokio::test]
async fn wait_sends_exactly_thirty_minutes_later() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: wait_30m
    wait: 30m
  - id: hello
    send:
      push: {title: "Welcome, {{ profile.first_name }}", body: "."}
"#;
    let script = format!(
        "{ANN}\n{}",
        r#"{"at":"2026-12-01T10:00:07Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}"#
    );
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:30:07Z ann push hello: Welcome, Ann"]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Waiting { .. })),
        ["2026-12-01T10:00:07Z welcome/wait_30m: waiting until 2026-12-01T10:30:07Z (wait 30m)"]
    );
}

#[tokio::test]
async fn a_long_wait_after_days_without_timers_ends_on_time() {
    let journey = r#"
id: promo
name: Promo
trigger: {event: visited}
reentry: after_exit
steps:
  - id: wait_1h
    wait: 1h
  - id: offer
    send: {push: {title: "Offer", body: "."}}
"#;
    let script = [
        shopper("ann"),
        track("2026-12-01T10:00:00Z", "ann", "visited", "v-1"),
        track("2026-12-04T10:00:00Z", "ann", "visited", "v-2"),
    ]
    .join("\n");
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T11:00:00Z ann push offer: Offer",
            "2026-12-04T11:00:00Z ann push offer: Offer",
        ]
    );
}

#[tokio::test]
async fn wait_until_waits_for_the_next_local_time_on_the_given_weekdays() {
    let journey = r#"
id: morning
name: Morning
JOURNEY_TZ
trigger: {event: signed_up}
steps:
  - id: until_nine
    wait_until:
      time: "09:00"
      WEEKDAYS
  - id: hello
    send:
      push: {title: "Good morning", body: "."}
"#;
    // 2026-12-01 is a Tuesday.
    let cases = [
        // (profile timezone, weekdays, journey timezone, signed up at, push at)
        (
            "America/New_York",
            "",
            "",
            "2026-12-01T15:00:00Z",
            "2026-12-02T14:00:00Z",
        ), // 10:00 NY: tomorrow
        (
            "America/New_York",
            "",
            "",
            "2026-12-01T12:00:00Z",
            "2026-12-01T14:00:00Z",
        ), // 07:00 NY: today
        (
            "America/New_York",
            "",
            "",
            "2026-12-01T14:00:00Z",
            "2026-12-01T14:00:00Z",
        ), // 09:00 sharp: now (its minute)
        (
            "Europe/Paris",
            "weekdays: [mon]",
            "",
            "2026-12-01T10:00:00Z",
            "2026-12-07T08:00:00Z",
        ),
        (
            "Europe/Paris",
            "weekdays: [tue, fri]",
            "",
            "2026-12-01T07:00:00Z",
            "2026-12-01T08:00:00Z",
        ),
        (
            "Europe/Paris",
            "weekdays: [tue, fri]",
            "",
            "2026-12-01T09:00:00Z",
            "2026-12-04T08:00:00Z",
        ),
        (
            "",
            "",
            "timezone: Asia/Tokyo",
            "2026-12-01T10:00:00Z",
            "2026-12-02T00:00:00Z",
        ), // journey's zone
        ("", "", "", "2026-12-01T10:00:00Z", "2026-12-02T09:00:00Z"), // UTC
    ];
    for (tz, weekdays, journey_tz, signed_up, expected) in cases {
        let text = journey
            .replace("JOURNEY_TZ", journey_tz)
            .replace("WEEKDAYS", weekdays);
        let traits = if tz.is_empty() {
            json!({"push_tokens": [{"platform": "fcm", "token": "t-ann"}]})
        } else {
            json!({"timezone": tz, "push_tokens": [{"platform": "fcm", "token": "t-ann"}]})
        };
        let script = script_of(&[
            json!({"at": "2026-12-01T06:00:00Z", "type": "identify", "userId": "ann", "traits": traits}),
            json!({"at": signed_up, "type": "track", "userId": "ann", "event": "signed_up", "messageId": "s-ann"}),
        ]);
        let out = sim(&[&text], &script).await;
        assert_eq!(
            outbox(&out),
            [format!("{expected} ann push hello: Good morning")],
            "zone {tz:?} {weekdays:?} {journey_tz:?}, signed up {signed_up}"
        );
    }
}

/// An appointment reminder: a day before the time the booking event carries, at 09:00 on that
/// day in the user's zone; a renewal reminder three days before a profile date.
#[tokio::test]
async fn wait_until_a_date_from_the_event_or_the_profile() {
    let reminder = r#"
id: reminder
name: Reminder
trigger: {event: appointment_booked}
steps:
  - id: day_before
    wait_until: {date: event.starts_at, before: 1d, time: "09:00"}
  - id: remind
    send:
      push: {title: "See you tomorrow", body: "."}
"#;
    let renewal = r#"
id: renewal
name: Renewal
trigger: {event: plan_changed}
steps:
  - id: three_days_before
    wait_until: {date: profile.renews_on, before: 3d}
  - id: tell
    send:
      push: {title: "Renewal soon", body: "."}
"#;
    let device = |user: &str| json!([{"platform": "fcm", "token": format!("t-{user}")}]);
    let script = script_of(&[
        // Paris; the appointment is on 2026-12-10 at 15:00 Paris: reminded 2026-12-09 09:00 Paris.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"timezone": "Europe/Paris", "push_tokens": device("ann")}}),
        json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": "ann", "event": "appointment_booked",
               "messageId": "b-ann", "properties": {"starts_at": "2026-12-10T15:00:00+01:00"}}),
        // Booked at 10:00 for 16:00 the same day: the day before is past, reminded at once.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "bob",
               "traits": {"push_tokens": device("bob")}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "bob", "event": "appointment_booked",
               "messageId": "b-bob", "properties": {"starts_at": "2026-12-01T16:00:00Z"}}),
        // No time in the event: no reminder, and the timeline says why.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "cat",
               "traits": {"push_tokens": device("cat")}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "cat", "event": "appointment_booked",
               "messageId": "b-cat", "properties": {"starts_at": "soon"}}),
        // A profile date (a calendar date, midnight in New York) three days ahead of it.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "dan",
               "traits": {"timezone": "America/New_York", "renews_on": "2026-12-20", "push_tokens": device("dan")}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "dan", "event": "plan_changed",
               "messageId": "p-dan"}),
        // Seconds since 1970: 2026-12-15T00:00:00Z.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "eve",
               "traits": {"renews_on": 1_797_292_800, "push_tokens": device("eve")}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "eve", "event": "plan_changed",
               "messageId": "p-eve"}),
        // No renewal date at all.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "fay",
               "traits": {"push_tokens": device("fay")}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "fay", "event": "plan_changed",
               "messageId": "p-fay"}),
    ]);
    let out = sim(&[reminder, renewal], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z bob push remind: See you tomorrow",
            "2026-12-09T08:00:00Z ann push remind: See you tomorrow",
            "2026-12-12T00:00:00Z eve push tell: Renewal soon",
            "2026-12-17T05:00:00Z dan push tell: Renewal soon",
        ]
    );
    let why = |user: &str| -> Vec<String> {
        entries(&out, user)
            .iter()
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("waiting") || d.starts_with("woke") || d.starts_with("ended"))
            .collect()
    };
    assert_eq!(
        why("ann"),
        [
            "waiting until 2026-12-09T08:00:00Z (wait_until event.starts_at - 1d at 09:00)",
            "woke (time)"
        ]
    );
    assert_eq!(
        why("bob"),
        [
            "waiting until 2026-12-01T10:00:00Z (wait_until event.starts_at - 1d at 09:00)",
            "woke (already past: 2026-11-30T09:00:00Z)"
        ]
    );
    assert_eq!(
        why("cat"),
        ["ended: wait_until event.starts_at - 1d at 09:00: event.starts_at = \"soon\" is not a time (write an RFC 3339 time, a local date and time, a YYYY-MM-DD day or seconds since 1970)"]
    );
    assert_eq!(
        why("fay"),
        ["ended: wait_until profile.renews_on - 3d: profile.renews_on is missing"]
    );
    let cat = entries(&out, "cat");
    assert!(
        matches!(cat.last().map(|e| &e.what), Some(What::Ended { .. })),
        "{cat:?}"
    );
}

/// Seconds since 1970 sent as text (`"1797638400"`, as billing systems and CSV imports send
/// them) are the time the number is, for the wait and for the message that shows it; so are
/// milliseconds (from 1e11 on).
#[tokio::test]
async fn wait_until_reads_seconds_since_1970_sent_as_text() {
    let topup = r#"
id: topup
name: Top-up
trigger: {event: topup_done}
steps:
  - id: until
    wait_until: {date: event.expires_at, before: 2d, time: "10:00", if_past: exit}
  - id: remind
    send: {sms: {body: "Credit ends {{ event.expires_at | date('%-d %B %H:%M') }}"}}
"#;
    let script = script_of(&[
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"phone": "+33612345671", "timezone": "Europe/Paris"}}),
        // 2026-12-19T00:00:00Z: 01:00 in Paris on the 19th.
        json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": "ann", "event": "topup_done",
               "messageId": "t-ann", "properties": {"expires_at": "1797638400"}}),
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "bob",
               "traits": {"phone": "+33612345672", "timezone": "Europe/Paris"}}),
        json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": "bob", "event": "topup_done",
               "messageId": "t-bob", "properties": {"expires_at": "1797638400000"}}),
    ]);
    let out = sim(&[topup], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-17T09:00:00Z ann sms remind: Credit ends 19 December 01:00",
            "2026-12-17T09:00:00Z bob sms remind: Credit ends 19 December 01:00",
        ]
    );
}

/// A renewal reminder three days before `profile.renews_on`.
const RENEWAL: &str = r#"
id: renewal
name: Renewal
trigger: {event: plan_changed}
steps:
  - id: three_days_before
    wait_until: {date: profile.renews_on, before: 3d, time: "09:00"}
  - id: tell
    send:
      push: {title: "Renewal soon", body: "."}
"#;

/// Writes the renewal day an extension carries.
const PLAN: &str = r#"
id: plan
name: Plan
trigger: {event: plan_extended}
steps:
  - id: record
    update:
      set:
        renews_on: "{{ event.renews_on }}"
        plan_note: "{{ event.note }}"
"#;

/// The script lines that put each of `users` in the renewal journey: an identify with a
/// renewal day (2026-12-20) and a push device, then `plan_changed`.
fn on_renewal(users: &[&str]) -> Vec<serde_json::Value> {
    let mut script = Vec::new();
    for user in users {
        script.push(
            json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": user,
               "traits": {"renews_on": "2026-12-20",
                          "push_tokens": [{"platform": "fcm", "token": format!("t-{user}")}]}}),
        );
        script.push(
            json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": user,
               "event": "plan_changed", "messageId": format!("p-{user}")}),
        );
    }
    script
}

/// How the renewal reminder's wait went for `user`: its `waiting` and `woke` entries, described.
fn renewal_waits(out: &[waymark::simulate::Output], user: &str) -> Vec<String> {
    entries(out, user)
        .iter()
        .filter(|e| &*e.journey == "renewal")
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("waiting") || d.starts_with("woke"))
        .collect()
}

/// `waiting until <at>` for the renewal reminder's wait.
fn renewal_waiting(at: &str) -> String {
    format!("waiting until {at} (wait_until profile.renews_on - 3d at 09:00)")
}

/// A wait for the time of day alone follows the user's zone: she moves from Los Angeles to
/// Tokyo while waiting for 09:00, and the morning push comes at 09:00 in Tokyo, not at 02:00
/// there. An identify that leaves her zone alone leaves the wait alone; one that comes when the
/// wake-up is due moves nothing.
#[tokio::test]
async fn a_wait_for_the_time_of_day_follows_the_users_zone() {
    const MORNING: &str = r#"
id: morning
name: Morning tip
trigger: {event: signed_up}
steps:
  - id: nine_am
    wait_until: {time: "09:00"}
  - id: tip
    send: {push: {title: "Good morning", body: "Your first tip"}}
"#;
    let script = script_of(&[
        json!({"at": "2026-12-01T00:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"timezone": "America/Los_Angeles", "push_tokens": [{"platform": "fcm", "token": "t-ann"}]}}),
        json!({"at": "2026-12-01T00:00:00Z", "type": "identify", "userId": "bob",
               "traits": {"timezone": "America/Los_Angeles", "push_tokens": [{"platform": "fcm", "token": "t-bob"}]}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "ann", "event": "signed_up"}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "bob", "event": "signed_up"}),
        // Ann flies to Tokyo: 21:00 there, so 09:00 tomorrow, Tokyo time.
        json!({"at": "2026-12-01T12:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"timezone": "Asia/Tokyo"}}),
        // Bob changes his name only.
        json!({"at": "2026-12-01T12:00:00Z", "type": "identify", "userId": "bob",
               "traits": {"first_name": "Bob"}}),
        // Cy's phone says where she is with any event (Segment's mobile libraries send
        // `context.timezone`): Tokyo too.
        json!({"at": "2026-12-01T00:00:00Z", "type": "identify", "userId": "cy",
               "traits": {"push_tokens": [{"platform": "fcm", "token": "t-cy"}]},
               "context": {"timezone": "America/Los_Angeles"}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "cy", "event": "signed_up",
               "context": {"timezone": "America/Los_Angeles"}}),
        json!({"at": "2026-12-01T12:00:00Z", "type": "track", "userId": "cy", "event": "app_opened",
               "context": {"timezone": "Asia/Tokyo"}}),
        // Dee signs up on her phone before logging in, and logs in from Tokyo.
        json!({"at": "2026-12-01T00:00:00Z", "type": "identify", "anonymousId": "dee-phone",
               "traits": {"timezone": "America/Los_Angeles",
                          "push_tokens": [{"platform": "fcm", "token": "t-dee"}]}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "anonymousId": "dee-phone",
               "event": "signed_up"}),
        json!({"at": "2026-12-01T12:00:00Z", "type": "identify", "userId": "dee",
               "anonymousId": "dee-phone", "traits": {"timezone": "Asia/Tokyo"}}),
    ]);
    let out = sim(&[MORNING], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T17:00:00Z bob push tip: Good morning",
            "2026-12-02T00:00:00Z ann push tip: Good morning",
            "2026-12-02T00:00:00Z cy push tip: Good morning",
            "2026-12-02T00:00:00Z dee push tip: Good morning",
        ]
    );
    let waits = |user: &str| -> Vec<String> {
        entries(&out, user)
            .iter()
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("waiting") || d.starts_with("woke"))
            .collect()
    };
    assert_eq!(
        waits("ann"),
        [
            "waiting until 2026-12-01T17:00:00Z (wait_until 09:00)",
            "woke (the user's time zone changed)",
            "waiting until 2026-12-02T00:00:00Z (wait_until 09:00)",
            "woke (time)",
        ]
    );
    assert_eq!(
        waits("bob"),
        [
            "waiting until 2026-12-01T17:00:00Z (wait_until 09:00)",
            "woke (time)",
        ]
    );
}

/// A profile date that changes while the user waits for it moves the wait: the renewal
/// reminder follows the new renewal day, goes at once when the new day makes it past, and an
/// identify that changes nothing it reads leaves the wait alone.
#[tokio::test]
async fn a_profile_date_that_changes_moves_the_wait() {
    let mut script = on_renewal(&["dan", "eve", "fay", "gus"]);
    script.extend([
        // dan renews later: reminded three days before the new day.
        json!({"at": "2026-12-05T10:00:00Z", "type": "identify", "userId": "dan",
               "traits": {"renews_on": "2027-01-10"}}),
        // eve's identify changes her name only.
        json!({"at": "2026-12-05T10:00:00Z", "type": "identify", "userId": "eve",
               "traits": {"first_name": "Eve"}}),
        // fay's renewal comes forward to the 17th: three days before is past, reminded now.
        json!({"at": "2026-12-14T12:00:00Z", "type": "identify", "userId": "fay",
               "traits": {"renews_on": "2026-12-17"}}),
        // gus moves to Tokyo: 09:00 there on the same day.
        json!({"at": "2026-12-05T10:00:00Z", "type": "identify", "userId": "gus",
               "traits": {"timezone": "Asia/Tokyo"}}),
    ]);
    let script = script_of(&script);
    let out = sim(&[RENEWAL], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-14T12:00:00Z fay push tell: Renewal soon",
            "2026-12-17T00:00:00Z gus push tell: Renewal soon",
            "2026-12-17T09:00:00Z eve push tell: Renewal soon",
            "2027-01-07T09:00:00Z dan push tell: Renewal soon",
        ]
    );
    let why = |user: &str| renewal_waits(&out, user);
    assert_eq!(
        why("dan"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (the date it waits for moved: an identify)".to_string(),
            renewal_waiting("2027-01-07T09:00:00Z"),
            "woke (time)".to_string(),
        ]
    );
    assert_eq!(
        why("eve"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (time)".to_string(),
        ]
    );
    assert_eq!(
        why("fay"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (the date it waits for moved: an identify)".to_string(),
            renewal_waiting("2026-12-14T12:00:00Z"),
            "woke (already past: 2026-12-14T09:00:00Z)".to_string(),
        ]
    );
    // The wait was entered once, whatever moved it.
    for user in ["dan", "fay", "gus"] {
        let steps = entries(&out, user)
            .iter()
            .filter(|e| {
                matches!(e.what, What::Step) && e.step.as_deref() == Some("three_days_before")
            })
            .count();
        assert_eq!(steps, 1, "{user}");
    }
}

/// Another journey's `update` step that changes the date a wait reads moves the wait, as an
/// identify does: the renewal reminder follows the day the plan journey wrote, and a user whose
/// plan journey writes something else keeps hers.
#[tokio::test]
async fn an_update_step_that_changes_a_date_moves_another_journeys_wait() {
    let mut script = on_renewal(&["hal", "ivy"]);
    script.extend([
        // hal's plan is extended: the journey writes the new renewal day.
        json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": "hal",
               "event": "plan_extended", "properties": {"renews_on": "2026-12-30", "note": "x"}}),
        // ivy's extension writes the same day: her wait stays.
        json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": "ivy",
               "event": "plan_extended", "properties": {"renews_on": "2026-12-20", "note": "y"}}),
    ]);
    let script = script_of(&script);
    let out = sim(&[RENEWAL, PLAN], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-17T09:00:00Z ivy push tell: Renewal soon",
            "2026-12-27T09:00:00Z hal push tell: Renewal soon",
        ]
    );
    let why = |user: &str| renewal_waits(&out, user);
    assert_eq!(
        why("hal"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (the date it waits for moved: journey plan's update)".to_string(),
            renewal_waiting("2026-12-27T09:00:00Z"),
            "woke (time)".to_string(),
        ]
    );
    assert_eq!(
        why("ivy"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (time)".to_string(),
        ]
    );
}

/// One event enters two journeys: one writes the renewal day, the other waits for it. Whichever
/// runs first, the wait ends on the day written (journeys run in the order of their ids).
#[tokio::test]
async fn a_date_written_by_a_journey_the_same_event_entered_is_the_one_waited_for() {
    let renewal = RENEWAL.replace(
        "trigger: {event: plan_changed}",
        "trigger: {event: plan_extended}",
    );
    for (plan_id, renewal_id) in [("a_plan", "z_renewal"), ("z_plan", "a_renewal")] {
        let plan = PLAN.replace("id: plan\n", &format!("id: {plan_id}\n"));
        let renewal = renewal.replace("id: renewal\n", &format!("id: {renewal_id}\n"));
        let script = script_of(&[
            json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "hal",
                   "traits": {"renews_on": "2026-12-20",
                              "push_tokens": [{"platform": "fcm", "token": "t-hal"}]}}),
            json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": "hal",
                   "event": "plan_extended", "messageId": "x-hal",
                   "properties": {"renews_on": "2026-12-30", "note": "x"}}),
        ]);
        let out = sim(&[&plan, &renewal], &script).await;
        assert_eq!(
            outbox(&out),
            ["2026-12-27T09:00:00Z hal push tell: Renewal soon"],
            "{plan_id} and {renewal_id}"
        );
    }
}

/// One event enters two journeys: one writes the renewal day, the other waits for it, and the
/// user had no renewal day before (hal), or one past (ivy): whichever journey runs first, the
/// wait reads the day written, not what the profile held as the event came (hal's reminder was
/// lost, "profile.renews_on is missing"; ivy's went at once, for the old day).
#[tokio::test]
async fn a_date_missing_or_past_before_a_journey_the_same_event_entered_writes_it_is_waited_for() {
    let renewal = RENEWAL.replace(
        "trigger: {event: plan_changed}",
        "trigger: {event: plan_extended}",
    );
    for (plan_id, renewal_id) in [("a_plan", "z_renewal"), ("z_plan", "a_renewal")] {
        let plan = PLAN.replace("id: plan\n", &format!("id: {plan_id}\n"));
        let renewal = renewal.replace("id: renewal\n", &format!("id: {renewal_id}\n"));
        let mut script = Vec::new();
        for (user, traits) in [
            ("hal", json!({})),
            ("ivy", json!({"renews_on": "2026-11-01"})),
            ("jon", json!({"renews_on": "2026-12-20"})),
        ] {
            let mut traits = traits;
            traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("t-{user}")}]);
            script.push(json!({"at": "2026-12-01T08:00:00Z", "type": "identify",
                               "userId": user, "traits": traits}));
            script.push(
                json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": user,
                               "event": "plan_extended", "messageId": format!("x-{user}"),
                               "properties": {"renews_on": "2026-12-30", "note": "x"}}),
            );
        }
        let out = sim(&[&plan, &renewal], &script_of(&script)).await;
        let case = format!("{plan_id} and {renewal_id}");
        assert_eq!(
            outbox(&out),
            [
                "2026-12-27T09:00:00Z hal push tell: Renewal soon",
                "2026-12-27T09:00:00Z ivy push tell: Renewal soon",
                "2026-12-27T09:00:00Z jon push tell: Renewal soon",
            ],
            "{case}"
        );
        // hal's wait says why it did not end at once, and what it read once the plan was written.
        let waits: Vec<String> = entries(&out, "hal")
            .iter()
            .filter(|e| *e.journey == *renewal_id)
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("waiting") || d.starts_with("woke") || d.starts_with("ended"))
            .collect();
        if plan_id == "a_plan" {
            assert_eq!(
                waits,
                [
                    "waiting until 2026-12-05T10:10:00Z (wait_until profile.renews_on - 3d at 09:00: profile.renews_on missing for now; journey a_plan, which this event reaches too, may set it: read again once it has run)".to_string(),
                    "woke (its date read again: journey a_plan's update)".to_string(),
                    renewal_waiting("2026-12-27T09:00:00Z"),
                    "woke (time)".to_string(),
                ],
                "{case}"
            );
        }
    }
}

/// One event enters the renewal journey and two that write its renewal day, to different
/// values (the journey whose id sorts last runs last, and its day stands). The wait reads the
/// day once both have run: hal had none, ivy one past, jon one to come. Before, it was read
/// after each update in turn: a first writer's past day sent the reminder at once, naming
/// that day, a first writer's text that is no day ended it, and the day that stood was never
/// waited for.
#[tokio::test]
async fn a_date_two_journeys_of_the_same_event_write_is_read_once_both_have_run() {
    let renewal = RENEWAL.replace(
        "trigger: {event: plan_changed}",
        "trigger: {event: plan_extended}",
    );
    // b_plan writes the old day the event carries (past, or no day at all), c_plan the new one.
    let first = PLAN
        .replace("id: plan\n", "id: b_plan\n")
        .replace("{{ event.renews_on }}", "{{ event.old_renews_on }}");
    let last = PLAN.replace("id: plan\n", "id: c_plan\n");
    for (renewal_id, old) in [("a_renewal", "2026-11-01"), ("z_renewal", "soon")] {
        let renewal = renewal.replace("id: renewal\n", &format!("id: {renewal_id}\n"));
        let mut script = Vec::new();
        for (user, traits) in [
            ("hal", json!({})),
            ("ivy", json!({"renews_on": "2026-11-01"})),
            ("jon", json!({"renews_on": "2026-12-20"})),
        ] {
            let mut traits = traits;
            traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("t-{user}")}]);
            script.push(json!({"at": "2026-12-01T08:00:00Z", "type": "identify",
                               "userId": user, "traits": traits}));
            script.push(
                json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": user,
                       "event": "plan_extended", "messageId": format!("x-{user}"),
                       "properties": {"renews_on": "2026-12-30", "old_renews_on": old,
                                      "note": "x"}}),
            );
        }
        let out = sim(&[&first, &last, &renewal], &script_of(&script)).await;
        let case = format!("{renewal_id}, first writer's day {old}");
        assert_eq!(
            outbox(&out),
            [
                "2026-12-27T09:00:00Z hal push tell: Renewal soon",
                "2026-12-27T09:00:00Z ivy push tell: Renewal soon",
                "2026-12-27T09:00:00Z jon push tell: Renewal soon",
            ],
            "{case}"
        );
        for user in ["hal", "ivy", "jon"] {
            let ended: Vec<String> = entries(&out, user)
                .iter()
                .filter(|e| *e.journey == *renewal_id)
                .map(|e| describe(&e.what))
                .filter(|d| d.starts_with("ended") || d.contains("already past"))
                .collect();
            assert!(ended.is_empty(), "{case}, {user}: {ended:?}");
        }
    }
}

/// `user`'s skipped sends in a simulation's output, as `<step> <reason>: <detail>`.
fn skips_of(out: &[waymark::simulate::Output], user: &str) -> Vec<String> {
    entries(out, user)
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => Some(format!(
                "{} {reason}: {}",
                e.step.as_deref().unwrap_or("-"),
                detail.as_deref().unwrap_or("")
            )),
            _ => None,
        })
        .collect()
}

/// A write failing anywhere while the event that enters both journeys is taken (the message is
/// retried): the wait that found no renewal day still reads the one the plan journey wrote,
/// and the reminder goes once, on that day.
#[tokio::test]
async fn a_write_failing_while_a_missing_date_waits_to_be_read_again_loses_nothing() {
    let renewal = RENEWAL
        .replace(
            "trigger: {event: plan_changed}",
            "trigger: {event: plan_extended}",
        )
        .replace("id: renewal\n", "id: z_renewal\n");
    let plan = PLAN.replace("id: plan\n", "id: a_plan\n");
    for applied in [false, true] {
        for n in 0.. {
            let (h, faulty) = support::faulty::faulty_harness();
            h.publish(&renewal).await;
            h.publish(&plan).await;
            h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"hal","traits":{"push_tokens":[{"platform":"fcm","token":"t-hal"}]}}
"#)
            .await;
            h.advance_to(at("2026-12-05T10:00:00Z")).await;
            *faulty.fault.lock().expect("fault") = Some((n, applied));
            h.play(r#"
{"at":"2026-12-05T10:00:00Z","type":"track","userId":"hal","event":"plan_extended","messageId":"x-hal","properties":{"renews_on":"2026-12-30","note":"x"}}
"#)
            .await;
            let fired = *faulty.fired.lock().expect("fired");
            *faulty.fault.lock().expect("fault") = None;
            h.advance_to(at("2026-12-28T00:00:00Z")).await;
            tick(&h.rt, &h.store).await.expect("tick");
            let case = format!("write {n} failing (applied: {applied})");
            assert_eq!(
                h.outbox(),
                ["2026-12-27T09:00:00Z hal push tell: Renewal soon"],
                "{case}"
            );
            if !fired {
                break;
            }
        }
    }
}

/// The same with a `wait_for` before the date wait: the event that meets it is the one another
/// journey writes the date from (a payment, and the journey that records when it is due). Every
/// user is reminded on the day written: one with no day before (bob), one whose day was past
/// (cat) and one whose day was ahead (ann).
#[tokio::test]
async fn a_date_wait_reached_by_the_event_another_journey_writes_the_date_from_reads_it() {
    const DUE: &str = r#"
id: e
name: E
trigger: {event: start}
steps:
  - id: wf
    wait_for: {event: paid, timeout: 1d, on_event: wu, on_timeout: done}
  - id: wu
    wait_until: {date: profile.due_at}
  - id: remind
    send:
      email: {subject: "E due {{ profile.due_at }}", text: "x"}
  - id: done
    exit: true
"#;
    const RECORD: &str = r#"
id: a
name: A
trigger: {event: paid}
steps:
  - id: set_due
    update: {set: {due_at: "{{ event.due }}"}}
"#;
    let mut script = Vec::new();
    for (user, due) in [
        ("ann", Some("2026-12-10T10:00:00Z")),
        ("bob", None),
        ("cat", Some("2026-11-01T10:00:00Z")),
    ] {
        let mut traits = json!({"email": format!("{user}@example.com")});
        if let Some(due) = due {
            traits["due_at"] = json!(due);
        }
        script.push(json!({"at": "2026-12-01T10:00:00Z", "type": "identify",
                           "userId": user, "traits": traits}));
        script.push(
            json!({"at": "2026-12-01T10:01:00Z", "type": "track", "userId": user,
                           "event": "start", "messageId": format!("s-{user}")}),
        );
        script.push(
            json!({"at": "2026-12-01T10:05:00Z", "type": "track", "userId": user,
                           "event": "paid", "messageId": format!("p-{user}"),
                           "properties": {"due": "2026-12-03T10:00:00Z"}}),
        );
    }
    let out = sim(&[DUE, RECORD], &script_of(&script)).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-03T10:00:00Z ann email remind: E due 2026-12-03T10:00:00Z",
            "2026-12-03T10:00:00Z bob email remind: E due 2026-12-03T10:00:00Z",
            "2026-12-03T10:00:00Z cat email remind: E due 2026-12-03T10:00:00Z",
        ]
    );
}

/// Two journeys one event enters set one trait to different values: the one that runs last
/// (by id) stands, and the other's timeline says its value did not, naming the journey and
/// the value that stands; a trait both set alike is no conflict. An update of another event
/// says nothing of it.
#[tokio::test]
async fn an_update_overwritten_by_a_journey_the_same_event_entered_says_so() {
    let silver = r#"
id: b
name: B
trigger: {event: order}
reentry: after_exit
steps:
  - id: count_b
    update: {set: {orders: 1, tier: silver}}
"#;
    let gold = r#"
id: z
name: Z
trigger: {event: order}
reentry: after_exit
steps:
  - id: count_z
    update: {set: {orders: 1, tier: gold}}
"#;
    let script = script_of(&[
        json!({"at": "2026-12-01T10:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"email": "ann@example.com"}}),
        json!({"at": "2026-12-01T10:01:00Z", "type": "track", "userId": "ann",
               "event": "order", "messageId": "o-1"}),
    ]);
    let out = sim(&[silver, gold], &script).await;
    let updated = |journey: &str| -> Vec<String> {
        entries(&out, "ann")
            .iter()
            .filter(|e| &*e.journey == journey)
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("profile updated"))
            .collect()
    };
    assert_eq!(
        updated("b"),
        [
            "profile updated: set orders, tier".to_string(),
            "profile updated: not `tier` (journey z's update (step `count_z`), run after this one as the same event was taken, set it to \"gold\": that stands)".to_string(),
        ]
    );
    assert_eq!(updated("z"), ["profile updated: set orders, tier"]);
    // The profile holds what the last one set.
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(silver).await;
    h.publish(gold).await;
    h.play(&script).await;
    let view = h.rt.user("ann").await.expect("user");
    let profile = view.profile.expect("profile");
    assert_eq!(profile.traits.get("tier"), Some(&json!("gold")));
}

/// Two journeys the same event reaches each write the renewal day: the wait moves once, to the
/// day that stands (the last journey's), read once both have run, and the timeline names both
/// updates. (It moved after each in turn until 2026-12-08: a first writer's past day sent the
/// reminder at once.)
#[tokio::test]
async fn two_updates_of_one_event_move_a_wait_twice_and_the_timeline_says_so() {
    let first = PLAN.replace("id: plan\n", "id: plan_a\n");
    let second = PLAN
        .replace("id: plan\n", "id: plan_b\n")
        .replace("\"{{ event.renews_on }}\"", "\"2027-01-02\"");
    let mut script = on_renewal(&["hal"]);
    script.push(
        json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": "hal",
                       "event": "plan_extended", "messageId": "x-hal",
                       "properties": {"renews_on": "2026-12-30", "note": "x"}}),
    );
    let out = sim(&[RENEWAL, &first, &second], &script_of(&script)).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-30T09:00:00Z hal push tell: Renewal soon"]
    );
    assert_eq!(
        renewal_waits(&out, "hal"),
        [
            renewal_waiting("2026-12-17T09:00:00Z"),
            "woke (the date it waits for moved: the updates of journeys plan_a, plan_b)"
                .to_string(),
            renewal_waiting("2026-12-30T09:00:00Z"),
            "woke (time)".to_string(),
        ]
    );
}

/// The same event moves a date wait (another journey's `update`, handled first) and ends that
/// wait's journey (its `exit_when`): the exit still applies, once the moved enrollment is read
/// again, so no reminder goes out for a plan that changed.
#[tokio::test]
async fn an_event_that_moves_a_date_wait_and_exits_its_journey_still_exits_it() {
    // `account` sorts before `renewal`: its update runs before renewal's exit is looked at.
    let account = r#"
id: account
name: Account
trigger: {event: plan_changed}
steps:
  - id: await_extension
    wait_for: {event: plan_extended, timeout: 30d, on_event: record, on_timeout: done}
  - id: record
    update:
      set: {renews_on: "2026-12-30"}
  - id: done
    exit: true
"#;
    let renewal = RENEWAL.replace(
        "trigger: {event: plan_changed}",
        "trigger: {event: plan_changed}\nexit_when: [{event: plan_extended}]",
    );
    let mut script = on_renewal(&["hal"]);
    script.push(
        json!({"at": "2026-12-05T10:00:00Z", "type": "track", "userId": "hal",
                       "event": "plan_extended", "messageId": "x-hal"}),
    );
    let out = sim(&[account, &renewal], &script_of(&script)).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    let ended: Vec<String> = entries(&out, "hal")
        .iter()
        .filter(|e| &*e.journey == "renewal")
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("exited"))
        .collect();
    assert_eq!(ended, ["exited on plan_extended"]);
}

/// A write failing anywhere while an `update` moves another journey's date wait (before it is
/// applied, or with its reply lost; the message is retried): the reminder goes once, on the
/// new day, and the stats count the wait as over.
#[tokio::test]
async fn a_write_failing_anywhere_in_a_date_move_loses_nothing_and_sends_nothing_twice() {
    for applied in [false, true] {
        for n in 0.. {
            let (h, faulty) = support::faulty::faulty_harness();
            h.publish(RENEWAL).await;
            h.publish(PLAN).await;
            h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"hal","traits":{"renews_on":"2026-12-20","push_tokens":[{"platform":"fcm","token":"t-hal"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"hal","event":"plan_changed","messageId":"p-hal"}
"#)
            .await;
            // The faults fall on the extension's handling only.
            h.advance_to(at("2026-12-05T10:00:00Z")).await;
            *faulty.fault.lock().expect("fault") = Some((n, applied));
            h.play(r#"
{"at":"2026-12-05T10:00:00Z","type":"track","userId":"hal","event":"plan_extended","messageId":"x-hal","properties":{"renews_on":"2026-12-30","note":"x"}}
"#)
            .await;
            let fired = *faulty.fired.lock().expect("fired");
            *faulty.fault.lock().expect("fault") = None;
            h.advance_to(at("2026-12-28T00:00:00Z")).await;
            tick(&h.rt, &h.store).await.expect("tick");
            let case = format!("write {n} failing (applied: {applied})");
            assert_eq!(
                h.outbox(),
                ["2026-12-27T09:00:00Z hal push tell: Renewal soon"],
                "{case}"
            );
            let view = h.rt.user("hal").await.expect("user");
            let moved = view
                .timeline
                .iter()
                .filter(|e| {
                    describe(&e.what) == "woke (the date it waits for moved: journey plan's update)"
                })
                .count();
            assert_eq!(moved, 1, "{case}");
            h.rt.fold_stats().await.expect("fold");
            let s = h.rt.stats("renewal").await.expect("stats");
            assert_eq!(
                s.get("step.three_days_before.waiting")
                    .copied()
                    .unwrap_or(0),
                0,
                "{case}: {s:?}"
            );
            assert_eq!(s.get("completed"), Some(&1), "{case}: {s:?}");
            if !fired {
                break;
            }
        }
    }
}

/// A conversion is credited to the step of the last message the user got before the goal
/// event (last touch): not to a message skipped, nor to one sent after the event happened
/// (an order that arrives late), and to none when no message had gone out.
#[tokio::test]
async fn a_conversion_is_credited_to_the_last_message_before_it() {
    let winback = r#"
id: winback
name: Winback
trigger: {event: cart_abandoned}
goal: {event: order_completed, within: 7d}
steps:
  - id: nudge
    send: {push: {title: "Still there?", body: "."}}
  - id: wait_1d
    wait: 1d
  - id: reminder
    send: {email: {subject: "Your cart", text: "."}}
  - id: wait_2d
    wait: 2d
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(winback).await;
    let mut script = Vec::new();
    for user in ["amy", "ben", "cal", "dee", "eve", "ned"] {
        let mut traits = json!({});
        if user != "cal" {
            traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("t-{user}")}]);
        }
        if user != "cal" && user != "ned" {
            traits["email"] = json!(format!("{user}@example.com"));
        }
        script.push(
            json!({"at": "2026-12-01T09:30:00Z", "type": "identify", "userId": user,
                           "traits": traits}),
        );
        script.push(
            json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": user,
                           "event": "cart_abandoned", "messageId": format!("c-{user}")}),
        );
    }
    let order = |user: &str, at: &str| {
        json!({"at": at, "type": "track", "userId": user, "event": "order_completed",
               "messageId": format!("o-{user}")})
    };
    script.extend([
        // After the push: the push's.
        order("amy", "2026-12-01T12:00:00Z"),
        // After the email: the email's.
        order("ben", "2026-12-02T12:00:00Z"),
        // Nothing reached cal.
        order("cal", "2026-12-02T12:00:00Z"),
        // ned had no email: still the push's.
        order("ned", "2026-12-02T12:00:00Z"),
    ]);
    // dee ordered in the evening; the app sent it the next day, after the email went.
    let mut late = order("dee", "2026-12-02T12:00:00Z");
    late["timestamp"] = json!("2026-12-01T20:00:00Z");
    script.push(late);
    h.play(&script_of(&script)).await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    tick(&h.rt, &h.store).await.expect("tick");

    let mut credited = BTreeMap::new();
    for user in ["amy", "ben", "cal", "dee", "eve", "ned"] {
        let view = h.rt.user(user).await.expect("user");
        let said: Vec<String> = view
            .timeline
            .iter()
            .filter(|e| matches!(e.what, What::Converted { .. }))
            .map(|e| describe(&e.what))
            .collect();
        credited.insert(user, said.join("; "));
    }
    let on = "converted on order_completed";
    assert_eq!(
        credited,
        BTreeMap::from([
            ("amy", format!("{on}, credited to nudge")),
            ("ben", format!("{on}, credited to reminder")),
            (
                "cal",
                format!("{on} (credited to no message: none went out before it)")
            ),
            (
                "dee",
                format!("{on} (at 2026-12-01T20:00:00Z), credited to nudge")
            ),
            ("eve", String::new()),
            ("ned", format!("{on}, credited to nudge")),
        ])
    );

    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats("winback").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(winback), 1, &counters);
    assert_eq!(stats.converted, 5);
    let converted: Vec<(&str, i64)> = stats
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.converted))
        .collect();
    assert_eq!(
        converted,
        [
            ("nudge", 3),
            ("wait_1d", 0),
            ("reminder", 1),
            ("wait_2d", 0)
        ]
    );
}

/// The stats of a journey whose newer version renamed its steps still list the earlier
/// version's steps (after the latest's, marked earlier): the steps' sends add up to the
/// journey's, whichever version each user entered on.
#[tokio::test]
async fn stats_keep_the_steps_of_earlier_versions() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    let v1 = r#"
id: ver
name: Ver
trigger: {event: go}
steps:
  - id: mail
    send: {push: {title: "v1", body: "."}}
"#;
    h.publish(v1).await;
    let script = |users: &[&str], at: &str| {
        users
            .iter()
            .flat_map(|u| {
                [
                    format!(r#"{{"at":"{at}","type":"identify","userId":"{u}","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-{u}"}}]}}}}"#),
                    format!(r#"{{"at":"{at}","type":"track","userId":"{u}","event":"go","messageId":"go-{u}"}}"#),
                ]
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    h.play(&script(&["a", "b"], "2026-12-01T09:00:00Z")).await;
    let v2 = v1
        .replace("id: mail", "id: mail_v2")
        .replace("\"v1\"", "\"v2\"");
    assert_eq!(h.publish(&v2).await, 2);
    h.play(&script(&["c", "d", "e"], "2026-12-01T10:00:00Z"))
        .await;
    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats("ver").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(&v2), 2, &counters);
    let steps: Vec<(&str, i64, bool)> = stats
        .steps
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.sent.get("push").copied().unwrap_or(0),
                s.earlier,
            )
        })
        .collect();
    assert_eq!(steps, [("mail_v2", 3, false), ("mail", 2, true)]);
    assert_eq!(stats.entered, 5);
}

/// `GET /v1/journeys/{id}/stats` lists the steps only earlier versions have in their flows'
/// order: each where the latest version that has it lists it, newer versions' first. After a v3
/// that renames v2's `wait_4h` and drops its `low_stock_email`, and a v2 that renamed v1's
/// `hello`: `wait_4h`, `low_stock_email`, then `hello`. (Before, they came in their counters'
/// order, by name: `hello`, `low_stock_email`, `wait_4h`.)
#[tokio::test]
async fn stats_list_the_steps_of_earlier_versions_in_their_flows_order() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    let v1 = r#"
id: ver
name: Ver
trigger: {event: go}
steps:
  - id: hello
    send: {push: {title: "hi", body: "."}}
  - id: wait_4h
    wait: 4h
  - id: low_stock_email
    send: {push: {title: "low", body: "."}}
"#;
    h.publish(v1).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"a","traits":{"push_tokens":[{"platform":"fcm","token":"t-a"}]}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"a","event":"go","messageId":"go-a"}
"#)
    .await;
    h.advance_to("2026-12-01T14:00:00Z".parse().expect("timestamp"))
        .await;
    let v2 = v1.replace("id: hello", "id: welcome");
    assert_eq!(h.publish(&v2).await, 2);
    let v3 = r#"
id: ver
name: Ver
trigger: {event: go}
steps:
  - id: welcome
    send: {push: {title: "hi", body: "."}}
  - id: wait_1h
    wait: 1h
"#;
    assert_eq!(h.publish(v3).await, 3);
    h.rt.fold_stats().await.expect("fold");
    let api = support::view::api(&h);
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri("/v1/journeys/ver/stats")
        .header(
            "authorization",
            format!("Bearer {}", support::view::ADMIN_KEY),
        )
        .body(bytes::Bytes::new())
        .expect("a request");
    let res = api.handle(req).await;
    let text = String::from_utf8_lossy(res.body()).to_string();
    assert_eq!(res.status(), http::StatusCode::OK, "{text}");
    let stats: waymark::api::JourneyStats = serde_json::from_str(&text).expect("stats");
    let steps: Vec<(&str, i64, bool)> = stats
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.entered, s.earlier))
        .collect();
    assert_eq!(
        steps,
        [
            ("welcome", 0, false),
            ("wait_1h", 0, false),
            ("wait_4h", 1, true),
            ("low_stock_email", 1, true),
            ("hello", 1, true),
        ]
    );
}

/// A reminder prints the appointment's time in the zone its wait used: the user's, else the
/// journey's default (not UTC), so "see you at 15:00" and the 09:00 reminder agree.
#[tokio::test]
async fn a_reminder_shows_a_time_in_the_zone_its_wait_used() {
    let reminder = r#"
id: reminder
name: Reminder
timezone: Europe/Paris
trigger: {event: appointment_booked}
steps:
  - id: day_before
    wait_until: {date: event.starts_at, before: 1d, time: "09:00"}
  - id: remind
    send:
      push: {title: "See you at {{ event.starts_at | date('%H:%M') }}", body: "."}
"#;
    let device = |user: &str| json!([{"platform": "fcm", "token": format!("t-{user}")}]);
    let script = script_of(&[
        // No zone of her own: the journey's (Paris).
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"push_tokens": device("ann")}}),
        json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": "ann", "event": "appointment_booked",
               "messageId": "b-ann", "properties": {"starts_at": "2026-12-10T14:00:00Z"}}),
        // His own zone (Tokyo) comes first.
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "bob",
               "traits": {"timezone": "Asia/Tokyo", "push_tokens": device("bob")}}),
        json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": "bob", "event": "appointment_booked",
               "messageId": "b-bob", "properties": {"starts_at": "2026-12-10T14:00:00Z"}}),
    ]);
    let out = sim(&[reminder], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-09T00:00:00Z bob push remind: See you at 23:00",
            "2026-12-09T08:00:00Z ann push remind: See you at 15:00",
        ]
    );
}

/// `before: 1d` is the user's day before, also across a change of the clocks: an appointment
/// at 00:30 on the Monday after the clocks go forward is reminded on the Sunday at 09:00 (24
/// hours before is still Saturday night), and one at 23:30 on the Sunday after they go back
/// on the Saturday (24 hours before is already Sunday).
#[tokio::test]
async fn before_a_day_is_the_calendar_day_before_across_a_change_of_the_clocks() {
    let reminder = r#"
id: reminder
name: Reminder
trigger: {event: appointment_booked}
steps:
  - id: day_before
    wait_until: {date: event.starts_at, before: 1d, time: "09:00"}
  - id: remind
    send:
      push: {title: "Tomorrow at {{ event.starts_at | date('%H:%M') }}", body: "."}
"#;
    let booked = |user: &str, day: &str, starts_at: &str| {
        vec![
            json!({"at": format!("{day}T08:00:00Z"), "type": "identify", "userId": user,
                   "traits": {"timezone": "America/New_York",
                              "push_tokens": [{"platform": "fcm", "token": format!("t-{user}")}]}}),
            json!({"at": format!("{day}T09:00:00Z"), "type": "track", "userId": user,
                   "event": "appointment_booked", "messageId": format!("b-{user}"),
                   "properties": {"starts_at": starts_at}}),
        ]
    };
    let mut lines = booked("spring", "2027-03-01", "2027-03-15T04:30:00Z"); // Mon 00:30 EDT
    lines.extend(booked("fall", "2027-11-01", "2027-11-08T04:30:00Z")); // Sun 23:30 EST
    let out = sim(&[reminder], &script_of(&lines)).await;
    assert_eq!(
        outbox(&out),
        [
            // Sun 2027-03-14 09:00 EDT; Sat 2027-11-06 09:00 EDT.
            "2027-03-14T13:00:00Z spring push remind: Tomorrow at 00:30",
            "2027-11-06T13:00:00Z fall push remind: Tomorrow at 23:30",
        ]
    );
}

/// In `before` and `after`, hours, minutes and seconds are exact time whatever their size
/// (`24h`, `1440m`, `86400s`: check-in opening 24 hours before a flight), while days are the
/// user's calendar days (`1d`: the day before at the same local time), also across a change of
/// the clocks: Ava in New York flies the morning after the US clocks go forward, Ben in London
/// the morning after the UK's do; Cleo's survey goes 24 hours after a stay that ended the day
/// before New York's clocks go back. A mixed `1d2h` is the calendar day, then 2 hours. The
/// timeline says the offset as written.
#[tokio::test]
async fn before_in_hours_is_exact_time_and_in_days_the_calendar_day_across_a_change_of_the_clocks()
{
    let journey = |id: &str, offset: &str| {
        format!(
            r#"
id: {id}
name: {id}
trigger: {{event: flight_booked}}
steps:
  - id: until_{id}
    wait_until: {{date: event.departs_at, {offset}}}
  - id: {id}
    send:
      push: {{title: "{offset}", body: "."}}
"#
        )
    };
    let journeys = [
        journey("h24", "before: 24h"),
        journey("m1440", "before: 1440m"),
        journey("s86400", "before: 86400s"),
        journey("d1", "before: 1d"),
        journey("d1h2", "before: 1d2h"),
        journey("after_h24", "after: 24h"),
        journey("after_d1", "after: 1d"),
    ];
    let journeys: Vec<&str> = journeys.iter().map(String::as_str).collect();
    let booked = |user: &str, day: &str, zone: &str, departs_at: &str| {
        vec![
            json!({"at": format!("{day}T10:00:00Z"), "type": "identify", "userId": user,
                   "traits": {"timezone": zone,
                              "push_tokens": [{"platform": "apns", "token": format!("t-{user}")}]}}),
            json!({"at": format!("{day}T12:00:00Z"), "type": "track", "userId": user,
                   "event": "flight_booked", "messageId": format!("b-{user}"),
                   "properties": {"departs_at": departs_at}}),
        ]
    };
    let mut lines = booked(
        "ava",
        "2026-03-01",
        "America/New_York",
        "2026-03-08T10:00:00-04:00",
    );
    lines.extend(booked(
        "ben",
        "2026-03-01",
        "Europe/London",
        "2026-03-29T10:00:00+01:00",
    ));
    lines.extend(booked(
        "cleo",
        "2026-10-20",
        "America/New_York",
        "2026-10-31T12:00:00-04:00",
    ));
    let out = sim(&journeys, &script_of(&lines)).await;
    let sent = |user: &str| {
        let mut lines = outbox_of(&out, user);
        lines.sort_by(|a, b| {
            a.split_once(' ')
                .map(|x| x.1)
                .cmp(&b.split_once(' ').map(|x| x.1))
        });
        lines
    };
    // Ava departs 14:00Z (10:00 EDT); the day before was still EST.
    assert_eq!(
        sent("ava"),
        [
            "2026-03-09T14:00:00Z ava push after_d1: after: 1d",
            "2026-03-09T14:00:00Z ava push after_h24: after: 24h",
            "2026-03-07T15:00:00Z ava push d1: before: 1d", // 10:00 EST
            "2026-03-07T13:00:00Z ava push d1h2: before: 1d2h", // 10:00 EST, then 2 hours
            "2026-03-07T14:00:00Z ava push h24: before: 24h", // 09:00 EST
            "2026-03-07T14:00:00Z ava push m1440: before: 1440m",
            "2026-03-07T14:00:00Z ava push s86400: before: 86400s",
        ]
    );
    // Ben departs 09:00Z (10:00 BST); the day before was still GMT.
    assert_eq!(
        sent("ben"),
        [
            "2026-03-30T09:00:00Z ben push after_d1: after: 1d",
            "2026-03-30T09:00:00Z ben push after_h24: after: 24h",
            "2026-03-28T10:00:00Z ben push d1: before: 1d", // 10:00 GMT
            "2026-03-28T08:00:00Z ben push d1h2: before: 1d2h",
            "2026-03-28T09:00:00Z ben push h24: before: 24h", // 09:00 GMT
            "2026-03-28T09:00:00Z ben push m1440: before: 1440m",
            "2026-03-28T09:00:00Z ben push s86400: before: 86400s",
        ]
    );
    // Cleo's date is 16:00Z (12:00 EDT) on the Saturday; New York's clocks go back that night.
    let cleo = sent("cleo");
    assert_eq!(
        cleo[..2],
        [
            "2026-11-01T17:00:00Z cleo push after_d1: after: 1d", // 12:00 EST
            "2026-11-01T16:00:00Z cleo push after_h24: after: 24h", // 11:00 EST
        ]
    );
    let why: Vec<String> = entries(&out, "ava")
        .iter()
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("waiting"))
        .collect();
    for (until, written) in [
        ("2026-03-07T14:00:00Z", "- 24h"),
        ("2026-03-07T14:00:00Z", "- 1440m"),
        ("2026-03-07T14:00:00Z", "- 86400s"),
        ("2026-03-07T15:00:00Z", "- 1d"),
        ("2026-03-07T13:00:00Z", "- 1d2h"),
        ("2026-03-09T14:00:00Z", "+ 24h"),
    ] {
        let want = format!("waiting until {until} (wait_until event.departs_at {written})");
        assert!(why.contains(&want), "{want} not in {why:#?}");
    }
}

/// A journey's digest, which decides whether publishing it makes a new version, holds what its
/// `before` and `after` mean, not how they are spelled: `7d` is `1w` and `90m` is `1h30m`, as they
/// were before hours and days were told apart, so a journey published then and deployed again
/// unchanged is no new version; `24h` is not `1d`, whose meaning it no longer shares. A version
/// read back keeps its meaning and digest, and says its offset the way it was stored.
#[test]
fn a_wait_until_offset_enters_the_digest_by_its_meaning_not_its_spelling() {
    use waymark::duration::Duration;
    use waymark::journey::Journey;
    let file = |offset: &str| {
        journey(&format!(
            r#"
id: checkin
name: Check-in
trigger: {{event: flight_booked}}
steps:
  - id: until_checkin
    wait_until: {{date: event.departs_at, {offset}}}
  - id: checkin
    send:
      push: {{title: "Check in", body: "."}}
"#
        ))
    };
    let digest = |offset: &str| file(offset).digest();
    // The digests these files had before b13c5bc, when `before` was a `Duration`, stored as
    // `1w`, `1h30m` and `1d` (taken from a build of b13c5bc^).
    for (offset, before) in [
        ("before: 7d", "d7129e56c91ba82e"),
        ("before: 1w", "d7129e56c91ba82e"),
        ("before: 90m", "8eb353bff3e22a9d"),
        ("before: 1d", "39538f81011a8d15"),
    ] {
        assert_eq!(digest(offset), before, "{offset}");
    }
    for (a, b) in [
        ("before: 7d", "before: 1w"),
        ("before: 90m", "before: 1h30m"),
        ("before: 60m", "before: 1h"),
        ("before: 3600s", "before: 1h"),
        ("before: 1d120m", "before: 1d2h"),
        ("before: 1440m", "before: 24h"),
        ("before: 86400s", "before: 24h"),
        ("after: 14d", "after: 2w"),
    ] {
        assert_eq!(digest(a), digest(b), "{a} and {b} mean the same");
    }
    for (a, b) in [
        ("before: 24h", "before: 1d"),
        ("before: 1440m", "before: 1d"),
        ("before: 36h", "before: 1d12h"),
        ("after: 48h", "after: 2d"),
        ("before: 1d", "after: 1d"),
    ] {
        assert_ne!(digest(a), digest(b), "{a} and {b} do not mean the same");
    }
    // (as written, as stored, whether it means what it did before hours and days were told
    // apart: then it is stored as the `Duration` was)
    for (written, stored, as_before) in [
        ("7d", "1w", true),
        ("1w", "1w", true),
        ("14d", "2w", true),
        ("1w2d", "9d", true),
        ("90m", "1h30m", true),
        ("60m", "1h", true),
        ("3600s", "1h", true),
        ("1d", "1d", true),
        ("1d2h", "1d2h", true),
        ("1d120m", "1d2h", true),
        ("2w3h", "2w3h", true),
        ("366d", "366d", true),
        ("24h", "24h", false),
        ("1440m", "24h", false),
        ("86400s", "24h", false),
        ("36h", "36h", false),
        ("1d24h", "1d24h", false),
        ("8784h", "8784h", false),
    ] {
        let fresh = file(&format!("before: {written}"));
        let json = serde_json::to_value(&fresh).expect("serializes");
        assert_eq!(
            json["steps"][0]["wait_until"]["before"], stored,
            "{written}"
        );
        let duration = written.parse::<Duration>().expect("a duration").to_string();
        assert_eq!(duration == stored, as_before, "{written}: {duration}");
        // Read back as the catalog reads a version: the same meaning, the same digest.
        let back: Journey = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, fresh, "{written}");
        assert_eq!(back.digest(), fresh.digest(), "{written}");
        let date_text = |j: &Journey| j.steps[0].wait_until.as_ref().and_then(|w| w.date_text());
        // Said as written when read from the file, as stored when read back.
        assert_eq!(
            date_text(&fresh),
            Some(format!("event.departs_at - {written}"))
        );
        assert_eq!(
            date_text(&back),
            Some(format!("event.departs_at - {stored}"))
        );
    }
}

/// A date more than a year ahead (the longest wait) is waited for a year at a time, and read
/// again each year.
#[tokio::test]
async fn a_wait_until_date_years_ahead_is_waited_for_a_year_at_a_time() {
    let journey = r#"
id: anniversary
name: Anniversary
trigger: {event: joined}
steps:
  - id: until_then
    wait_until: {date: event.anniversary_at}
  - id: congratulate
    send:
      push: {title: "Happy anniversary", body: "."}
"#;
    let script = script_of(&[
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"push_tokens": [{"platform": "fcm", "token": "t-ann"}]}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "ann", "event": "joined",
               "messageId": "j-ann", "properties": {"anniversary_at": "2029-01-15T10:00:00Z"}}),
    ]);
    let out = sim_with(
        &[journey],
        &script,
        Config::default(),
        SignedDuration::from_hours(24 * 800),
    )
    .await;
    assert_eq!(
        outbox(&out),
        ["2029-01-15T10:00:00Z ann push congratulate: Happy anniversary"]
    );
    let waits: Vec<String> = entries(&out, "ann")
        .iter()
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("waiting") || d.starts_with("woke"))
        .collect();
    assert_eq!(
        waits,
        [
            "waiting until 2027-12-02T10:00:00Z (wait_until event.anniversary_at (2029-01-15T10:00:00Z: a year at a time))",
            "woke (a year on)",
            "waiting until 2028-12-02T10:00:00Z (wait_until event.anniversary_at (2029-01-15T10:00:00Z: a year at a time))",
            "woke (a year on)",
            "waiting until 2029-01-15T10:00:00Z (wait_until event.anniversary_at)",
            "woke (time)",
        ]
    );
}

/// The forms a `wait_until` date may take, read in the user's zone where they carry none.
#[test]
fn a_wait_until_date_reads_times_dates_and_seconds() {
    use waymark::condition::Scope;
    use waymark::engine::date_target;
    use waymark::journey::WaitUntil;
    let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("zone");
    let wait = |w: serde_json::Value| -> WaitUntil {
        serde_json::from_value(w).unwrap_or_else(|e| panic!("{e}"))
    };
    let target = |w: &WaitUntil, value: serde_json::Value| {
        let event = json!({ "at": value });
        let profile = json!({});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: at("2026-01-01T00:00:00Z"),
            zone: None,
        };
        date_target(w, &scope, &paris)
    };
    let plain = wait(json!({"date": "event.at"}));
    let cases = [
        (json!("2026-12-10T15:00:00Z"), Some("2026-12-10T15:00:00Z")),
        (
            json!("2026-12-10T15:00:00+01:00"),
            Some("2026-12-10T14:00:00Z"),
        ),
        (json!("2026-12-10T15:00:00"), Some("2026-12-10T14:00:00Z")), // Paris local
        (json!("2026-12-10"), Some("2026-12-09T23:00:00Z")),          // Paris midnight
        // In the spring gap: the first instant after it, 03:00 (as a `time` in the gap is).
        (json!("2026-03-29T02:30:00"), Some("2026-03-29T01:00:00Z")),
        (json!(1_797_292_800), Some("2026-12-15T00:00:00Z")),
        (json!(1.5), Some("1970-01-01T00:00:01.5Z")),
        (json!(1e300), None),
        (json!("next week"), None),
        (json!(true), None),
        (json!(null), None),
    ];
    for (value, want) in cases {
        assert_eq!(target(&plain, value.clone()), want.map(at), "{value}");
    }
    let later = wait(json!({"date": "event.at", "after": "2h"}));
    assert_eq!(
        target(&later, json!("2026-12-10T15:00:00Z")),
        Some(at("2026-12-10T17:00:00Z"))
    );
    // Less than a day is exact time: 30 minutes after 02:30 in the second pass of the hour the
    // clocks go back (01:30Z) is 02:00Z, not 30 minutes after the first pass.
    let soon = wait(json!({"date": "event.at", "after": "30m"}));
    assert_eq!(
        target(&soon, json!("2026-10-25T01:30:00Z")),
        Some(at("2026-10-25T02:00:00Z"))
    );
    // `before` crosses midnight in Paris, then `time` sets the hour on that local day.
    let evening_before = wait(json!({"date": "event.at", "before": "1d", "time": "18:00"}));
    assert_eq!(
        target(&evening_before, json!("2026-12-10T00:30:00+01:00")),
        Some(at("2026-12-09T17:00:00Z"))
    );
    // A published version keeps the offset as written, so `24h` stays exact time when the
    // catalog reads it back; a version stored before, which holds `1d` for a `24h` it was
    // written with, still reads (as the calendar day it has waited for since).
    let exact = wait(json!({"date": "event.at", "before": "24h"}));
    let stored = serde_json::to_value(&exact).expect("serializes");
    assert_eq!(stored["before"], "24h");
    assert_eq!(wait(stored), exact);
    let calendar = wait(json!({"date": "event.at", "before": "1d"}));
    assert_ne!(calendar, exact);
    // In Paris the clocks go forward in the night to 2026-03-29.
    assert_eq!(
        target(&exact, json!("2026-03-29T12:00:00+02:00")),
        Some(at("2026-03-28T10:00:00Z"))
    );
    assert_eq!(
        target(&calendar, json!("2026-03-29T12:00:00+02:00")),
        Some(at("2026-03-28T11:00:00Z"))
    );
}

/// A `wait_for` is met by an event from its own time: one that happened before the wait began
/// (and arrived late) is not the event waited for, as it would not have been on time; one that
/// happened within the wait and arrived late is; one stamped after its timeout (a device
/// clock ahead) is not: the timeout decides.
#[tokio::test]
async fn wait_for_takes_only_an_event_from_after_the_wait_began() {
    let journey = r#"
id: ask
name: Ask
trigger: {event: go}
steps:
  - id: first
    wait: 1h
  - id: reply
    wait_for: {event: reply, timeout: 2h, on_event: thanks, on_timeout: nudge}
  - id: thanks
    send: {push: {title: "Thanks", body: "."}}
    next: done
  - id: nudge
    send: {push: {title: "Nudge", body: "."}}
  - id: done
    exit: true
"#;
    let line = |user: &str| {
        format!(
            r#"{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"{user}","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-{user}"}}]}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"go","messageId":"go-{user}"}}"#
        )
    };
    let script = format!(
        r#"{}
{}
{}
{{"at":"2026-12-01T11:30:00Z","type":"track","userId":"early","event":"reply","messageId":"r1","timestamp":"2026-12-01T10:30:00Z"}}
{{"at":"2026-12-01T11:40:00Z","type":"track","userId":"within","event":"reply","messageId":"r2","timestamp":"2026-12-01T11:20:00Z"}}
{{"at":"2026-12-01T12:30:00Z","type":"track","userId":"ahead","event":"reply","messageId":"r3","timestamp":"2026-12-01T13:20:00Z"}}
"#,
        line("early"),
        line("within"),
        line("ahead")
    );
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T11:40:00Z within push thanks: Thanks",
            "2026-12-01T13:00:00Z ahead push nudge: Nudge",
            "2026-12-01T13:00:00Z early push nudge: Nudge",
        ]
    );
}

/// A `wait_for` with `paths` waits for whichever of its events comes first, each leading to its
/// own step (Braze's Action Paths, Customer.io's Wait Until): each path is taken by its event,
/// the timeout by none; the first that meets the wait wins, and a later one changes nothing
/// (nor does the same event delivered again); a path's `where` that is false leaves the wait to
/// the others; an event that happened within the wait and arrives late meets it, one from
/// before the wait does not; `waited.*` is the event that met it.
#[tokio::test]
async fn a_wait_for_with_paths_goes_where_the_first_event_to_come_leads() {
    let journey = r#"
id: act
name: Act
trigger: {event: go}
steps:
  - id: act
    wait_for:
      paths:
        - {event: session_started, goto: tip}
        - {event: order_placed, where: "event.total > 50", goto: thanks}
      timeout: 1d
      on_timeout: nudge
  - id: nudge
    send: {sms: {body: "nudge"}}
    next: done
  - id: tip
    send: {sms: {body: "tip {{ waited.screen | default('-') }}"}}
    next: done
  - id: thanks
    send: {sms: {body: "thanks {{ waited.total }}"}}
  - id: done
    exit: true
"#;
    let users = [
        "tip", "thanks", "nudge", "first", "unmet", "late", "early", "again",
    ];
    let mut script: Vec<String> = Vec::new();
    for (n, user) in users.iter().enumerate() {
        script.push(format!(
            r#"{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"{user}","traits":{{"phone":"+4477009001{n:02}"}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"go","messageId":"go-{user}"}}"#
        ));
    }
    script.push(
        r#"{"at":"2026-12-01T11:00:00Z","type":"track","userId":"tip","event":"session_started","properties":{"screen":"home"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"thanks","event":"order_placed","properties":{"total":60}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"first","event":"order_placed","properties":{"total":80}}
{"at":"2026-12-01T11:30:00Z","type":"track","userId":"first","event":"session_started"}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"unmet","event":"order_placed","properties":{"total":10}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"unmet","event":"session_started","properties":{"screen":"cart"}}
{"at":"2026-12-01T12:30:00Z","type":"track","userId":"late","event":"order_placed","messageId":"l1","timestamp":"2026-12-01T11:00:00Z","properties":{"total":70}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"early","event":"session_started","messageId":"e1","timestamp":"2026-12-01T09:30:00Z"}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"again","event":"order_placed","messageId":"a1","properties":{"total":90}}
{"at":"2026-12-01T11:10:00Z","type":"track","userId":"again","event":"order_placed","messageId":"a1","properties":{"total":90}}"#
            .to_string(),
    );
    let out = sim(&[journey], &script.join("\n")).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T11:00:00Z again sms thanks: thanks 90",
            "2026-12-01T11:00:00Z first sms thanks: thanks 80",
            "2026-12-01T11:00:00Z thanks sms thanks: thanks 60",
            "2026-12-01T11:00:00Z tip sms tip: tip home",
            "2026-12-01T12:00:00Z unmet sms tip: tip cart",
            "2026-12-01T12:30:00Z late sms thanks: thanks 70",
            "2026-12-02T10:00:00Z early sms nudge: nudge",
            "2026-12-02T10:00:00Z nudge sms nudge: nudge",
        ]
    );
    let waits = |w: &What| matches!(w, What::Waiting { .. } | What::Woke { .. });
    assert_eq!(
        facts(&out, "thanks", waits),
        [
            "2026-12-01T10:00:00Z act/act: waiting until 2026-12-02T10:00:00Z (wait_for session_started or order_placed)",
            "2026-12-01T11:00:00Z act/act: woke (event: order_placed)",
        ]
    );
    assert_eq!(
        facts(&out, "nudge", waits)[1],
        "2026-12-02T10:00:00Z act/act: woke (timeout)"
    );
    let unmet = |w: &What| matches!(w, What::Unmet { .. });
    assert_eq!(
        facts(&out, "unmet", unmet),
        ["2026-12-01T11:00:00Z act/act: heard order_placed, which its wait_for did not take: its `where` was false"]
    );
    assert_eq!(
        details(&out, "unmet"),
        ["`where: event.total > 50` was false (event.total = 10)"]
    );
    assert_eq!(
        facts(&out, "early", unmet),
        ["2026-12-01T11:00:00Z act/act: heard session_started, which its wait_for did not take: it happened at 2026-12-01T09:30:00Z, before the wait began at 2026-12-01T10:00:00Z: a wait hears the events from when the user reached it"]
    );
}

/// A wait with `paths` met by an event received before the wait (events delivered out of
/// order) takes the one that happened first in the journey's own time, whatever the order they
/// were received in, and a path whose `where` reads the event is not met from the history.
#[tokio::test]
async fn a_wait_for_with_paths_takes_the_first_event_received_before_it_by_when_it_happened() {
    let journey = r#"
id: back
name: Back
trigger: {event: go}
steps:
  - id: w
    wait_for:
      paths:
        - {event: app_opened, goto: opened}
        - {event: registered, goto: joined}
        - {event: paid, where: "event.total > 0", goto: paid}
      timeout: 1d
      on_timeout: done
  - id: opened
    send: {sms: {body: "opened"}}
    next: done
  - id: joined
    send: {sms: {body: "joined"}}
    next: done
  - id: paid
    send: {sms: {body: "paid"}}
  - id: done
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"r","traits":{"phone":"+447700900201"}}
{"at":"2026-12-01T10:20:00Z","type":"track","userId":"r","event":"app_opened","timestamp":"2026-12-01T10:10:00Z"}
{"at":"2026-12-01T10:21:00Z","type":"track","userId":"r","event":"registered","timestamp":"2026-12-01T10:05:00Z"}
{"at":"2026-12-01T10:30:00Z","type":"track","userId":"r","event":"go","timestamp":"2026-12-01T10:00:00Z"}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"p","traits":{"phone":"+447700900202"}}
{"at":"2026-12-01T10:20:00Z","type":"track","userId":"p","event":"paid","timestamp":"2026-12-01T10:05:00Z","properties":{"total":5}}
{"at":"2026-12-01T10:30:00Z","type":"track","userId":"p","event":"go","timestamp":"2026-12-01T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox(&out), ["2026-12-01T10:30:00Z r sms joined: joined"]);
    assert_eq!(
        facts(&out, "r", |w| matches!(w, What::Woke { .. })),
        ["2026-12-01T10:30:00Z back/w: woke (event: registered at 2026-12-01T10:05:00Z, received before the wait)"]
    );
    assert_eq!(
        facts(&out, "p", |w| matches!(w, What::Woke { .. })),
        ["2026-12-02T10:30:00Z back/w: woke (timeout)"]
    );
}

/// A `wait_for` begins when the user reached it in the journey's own time (the trigger's time,
/// the event's, the wake-up's due time), not when a lagging engine got there: an order handled
/// two hours late still hears the app open three minutes after it, as simulate and an engine on
/// time do. And an app open received before the order (delivered out of order) that happened
/// after it meets the wait at once; one from before the order does not.
#[tokio::test]
async fn a_wait_for_begins_at_the_users_time_not_a_lagging_engines() {
    let journey = example_journey("post_purchase");
    let order = |user: &str, at: &str, ts: &str| {
        format!(
            r#"{{"at":"{at}","type":"track","userId":"{user}","event":"order_completed","messageId":"o-{user}","timestamp":"{ts}","properties":{{"order_id":"A-{user}","total":10,"currency":"EUR"}}}}"#
        )
    };
    let opened = |user: &str, at: &str, ts: &str| {
        format!(
            r#"{{"at":"{at}","type":"track","userId":"{user}","event":"app_opened","messageId":"a-{user}","timestamp":"{ts}"}}"#
        )
    };
    let script = [
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"late","traits":{"phone":"+14155550100"}}"#.to_string(),
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"before","traits":{"phone":"+14155550101"}}"#.to_string(),
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"earlier","traits":{"phone":"+14155550102"}}"#.to_string(),
        // late: both handled at 12:00, the order (10:00) first, the app open (10:03) after it
        order("late", "2026-12-01T12:00:00Z", "2026-12-01T10:00:00Z"),
        opened("late", "2026-12-01T12:00:00Z", "2026-12-01T10:03:00Z"),
        // before: the app open (10:03) is handled first, the order (10:00) a minute later
        opened("before", "2026-12-01T12:00:00Z", "2026-12-01T10:03:00Z"),
        order("before", "2026-12-01T12:01:00Z", "2026-12-01T10:00:00Z"),
        // earlier: an app open from before the order does not answer the wait
        opened("earlier", "2026-12-01T12:00:00Z", "2026-12-01T09:57:00Z"),
        order("earlier", "2026-12-01T12:01:00Z", "2026-12-01T10:00:00Z"),
    ]
    .join("\n");
    let out = sim(&[&journey], &script).await;
    let feedback = |user: &str| {
        outbox_of(&out, user)
            .into_iter()
            .filter(|l| l.contains("feedback_request"))
            .count()
    };
    assert_eq!(feedback("late"), 1, "{:#?}", outbox(&out));
    assert_eq!(feedback("before"), 1, "{:#?}", outbox(&out));
    assert_eq!(feedback("earlier"), 0, "{:#?}", outbox(&out));
    let woke = facts(&out, "before", |w| matches!(w, What::Woke { .. }));
    assert_eq!(
        woke,
        ["2026-12-01T12:01:00Z post_purchase/wait_app_open: woke (event: app_opened at 2026-12-01T10:03:00Z, received before the wait)"],
    );
    // the timeout runs from when the engine got to the wait: the user has all of it
    let waiting = facts(&out, "earlier", |w| matches!(w, What::Waiting { .. }));
    assert_eq!(
        waiting,
        ["2026-12-01T12:01:00Z post_purchase/wait_app_open: waiting until 2026-12-15T12:01:00Z (wait_for app_opened)"],
    );
}

/// A send held by quiet hours does not make the `wait_for` after it deaf: the wait begins when
/// the user reached the held send, so what she did during the night meets it at once. Dan, who
/// registered at 23:00 while the first reminder was held, gets the reminder (the file says send,
/// then wait) and the guide at 08:00, not the second reminder two days later and no guide.
#[tokio::test]
async fn a_wait_for_after_a_send_held_by_quiet_hours_hears_what_came_during_the_hold() {
    let journey = example_journey("banking_onboarding");
    let script = r#"
{"at":"2026-12-01T22:00:00Z","type":"identify","userId":"dan","traits":{"first_name":"Dan","timezone":"Europe/London","push_tokens":[{"platform":"apns","token":"apns-token-dan"}]}}
{"at":"2026-12-01T22:00:00Z","type":"track","userId":"dan","event":"signed_up","messageId":"signup-dan"}
{"at":"2026-12-02T23:00:00Z","type":"track","userId":"dan","event":"registration_completed","messageId":"registered-dan"}
"#;
    let out = sim(&[&journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-03T08:00:00Z dan push reminder_1: Finish opening your account",
            "2026-12-03T08:00:00Z dan in_app account_setup_guide: Set up your account",
        ]
    );
    assert_eq!(
        facts(&out, "dan", |w| matches!(w, What::Woke { .. })),
        [
            "2026-12-02T22:00:00Z banking_onboarding/wait_registration_1: woke (timeout)",
            "2026-12-03T08:00:00Z banking_onboarding/reminder_1: woke (quiet hours over)",
            "2026-12-03T08:00:00Z banking_onboarding/wait_registration_2: woke (event: registration_completed at 2026-12-02T23:00:00Z, while reminder_1 was held for quiet hours)",
        ]
    );
}

/// The event that led to a held send is not heard again by the `wait_for` after it (a loop
/// back to a wait for the same event), while another one of the night is: Ann's one upload
/// thanks her once, Bob's second upload, during the hold, is thanked at 08:00 too.
#[tokio::test]
async fn a_held_send_keeps_the_event_that_led_to_it_from_the_wait_after_it() {
    let journey = r#"
id: kyc
name: KYC
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: kyc_started}
steps:
  - id: wait_doc
    wait_for: {event: uploaded, timeout: 1d, on_event: got, on_timeout: done}
  - id: got
    send: {push: {title: "Got it", body: "."}}
  - id: wait_more
    wait_for: {event: uploaded, timeout: 1d, on_event: again, on_timeout: done}
  - id: again
    send: {push: {title: "Got another", body: "."}}
  - id: done
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T20:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T20:00:00Z","type":"identify","userId":"bob","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T20:00:00Z","type":"track","userId":"ann","event":"kyc_started","messageId":"k-ann"}
{"at":"2026-12-01T20:00:00Z","type":"track","userId":"bob","event":"kyc_started","messageId":"k-bob"}
{"at":"2026-12-01T22:00:00Z","type":"track","userId":"ann","event":"uploaded","messageId":"u1-ann"}
{"at":"2026-12-01T22:00:00Z","type":"track","userId":"bob","event":"uploaded","messageId":"u1-bob"}
{"at":"2026-12-01T23:00:00Z","type":"track","userId":"bob","event":"uploaded","messageId":"u2-bob"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-02T08:00:00Z ann push got: Got it",
            "2026-12-02T08:00:00Z bob push got: Got it",
            "2026-12-02T08:00:00Z bob push again: Got another",
        ]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(
            w,
            What::Waiting { .. } | What::Woke { .. } | What::Completed
        ))[3..],
        [
            "2026-12-02T08:00:00Z kyc/got: woke (quiet hours over)",
            "2026-12-02T08:00:00Z kyc/wait_more: waiting until 2026-12-03T08:00:00Z (wait_for uploaded)",
            "2026-12-03T08:00:00Z kyc/wait_more: woke (timeout)",
            "2026-12-03T08:00:00Z kyc/done: completed",
        ]
    );
}

/// A loop that goes back to a send each time she opens the app keeps no more events from its
/// `wait_for` than that wait could hear: Ann opens it every night for 80 nights, and each
/// nudge, held until the morning, goes out once; her enrollment keeps only the last night's
/// opening (the events from before a wait began are dropped, and never more than
/// [`engine::MAX_WAIT_HEARD`]).
#[tokio::test]
async fn a_loop_through_a_held_send_keeps_its_heard_events_bounded() {
    let h = Harness::new("2026-12-01T20:00:00Z");
    h.publish(
        r#"
id: nudges
name: Nudges
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: kyc_started}
steps:
  - id: wait_open
    wait_for: {event: app_opened, timeout: 2d, on_event: nudge, on_timeout: done}
  - id: nudge
    send: {push: {title: "Upload your ID", body: "."}}
    next: wait_open
  - id: done
    exit: true
"#,
    )
    .await;
    let mut script = vec![
        r#"{"at":"2026-12-01T20:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#.to_string(),
        r#"{"at":"2026-12-01T20:00:00Z","type":"track","userId":"ann","event":"kyc_started","messageId":"k-ann"}"#.to_string(),
    ];
    let nights = 80;
    let first = at("2026-12-01T22:00:00Z");
    for n in 0..nights {
        let t = first + SignedDuration::from_hours(24 * n);
        script.push(
            json!({"at": t.to_string(), "type": "track", "userId": "ann", "event": "app_opened", "messageId": format!("o{n}")})
                .to_string(),
        );
    }
    h.play(&script.join("\n")).await;
    h.advance_to(first + SignedDuration::from_hours(24 * nights))
        .await;
    let out = h.outbox();
    assert_eq!(out.len(), nights as usize, "{out:?}");
    assert!(
        out.iter().all(|l| l.contains("T08:00:00Z ann push nudge")),
        "{out:?}"
    );
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(view.enrollments.len(), 1);
    assert_eq!(view.enrollments[0].wait_heard, [format!("o{}", nights - 1)]);
}

/// A send held by quiet hours as stored before holds kept when the user reached the send (no
/// `held`, no `wait_heard`) wakes as it did: it goes out at the night's end, and the `wait_for`
/// after it begins then, so Ann's second upload, made during the hold, does not meet it, while
/// her third, after it, does.
#[tokio::test]
async fn a_hold_stored_before_holds_kept_their_time_wakes_into_its_wait_for_as_it_did() {
    let h = Harness::new("2026-12-01T20:00:00Z");
    h.publish(
        r#"
id: kyc
name: KYC
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: kyc_started}
steps:
  - id: wait_doc
    wait_for: {event: uploaded, timeout: 1d, on_event: got, on_timeout: done}
  - id: got
    send: {push: {title: "Got it", body: "."}}
  - id: wait_more
    wait_for: {event: uploaded, timeout: 1d, on_event: again, on_timeout: done}
  - id: again
    send: {push: {title: "Got another", body: "."}}
  - id: done
    exit: true
"#,
    )
    .await;
    h.play(
        r#"
{"at":"2026-12-01T20:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T20:00:00Z","type":"track","userId":"ann","event":"kyc_started","messageId":"k-ann"}
{"at":"2026-12-01T22:00:00Z","type":"track","userId":"ann","event":"uploaded","messageId":"u1-ann"}
"#,
    )
    .await;
    let stored = h
        .store
        .dump()
        .into_iter()
        .find(|r| r.key.pk.contains("ann") && r.key.sk.starts_with("E#"))
        .expect("her enrollment");
    let mut old: serde_json::Value = stored.parse().expect("enrollment");
    assert_eq!(old["pending"]["resume"], "rerun", "{old}");
    assert!(old["pending"].get("held").is_some(), "{old}");
    old["pending"]
        .as_object_mut()
        .expect("pending")
        .remove("held");
    old.as_object_mut()
        .expect("enrollment")
        .remove("wait_heard");
    h.store
        .put(
            &Record::new(stored.key.clone(), stored.version + 1, &old).expect("record"),
            Expect::Version(stored.version),
        )
        .await
        .expect("the enrollment as stored before");
    h.play(
        r#"
{"at":"2026-12-01T23:00:00Z","type":"track","userId":"ann","event":"uploaded","messageId":"u2-ann"}
{"at":"2026-12-02T09:00:00Z","type":"track","userId":"ann","event":"uploaded","messageId":"u3-ann"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-03T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-02T08:00:00Z ann push got: Got it",
            "2026-12-02T09:00:00Z ann push again: Got another",
        ]
    );
}

/// A send held for the user's address (her first identify racing her first event) does not
/// make the `wait_for` after it deaf either: the verification that came before the address
/// meets it once the welcome goes out.
#[tokio::test]
async fn a_wait_for_after_a_send_held_for_an_address_hears_what_came_meanwhile() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send: {email: {subject: "Hello", text: "."}}
  - id: wait_verify
    wait_for: {event: verified, timeout: 1d, on_event: thanks, on_timeout: nudge}
  - id: thanks
    send: {email: {subject: "Thanks", text: "."}}
    next: end
  - id: nudge
    send: {email: {subject: "Verify", text: "."}}
  - id: end
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"dee","event":"signed_up","messageId":"s-dee"}
{"at":"2026-12-01T10:00:30Z","type":"track","userId":"dee","event":"verified","messageId":"v-dee"}
{"at":"2026-12-01T10:01:00Z","type":"identify","userId":"dee","traits":{"email":"dee@example.com"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:01:00Z dee email hello: Hello",
            "2026-12-01T10:01:00Z dee email thanks: Thanks",
        ]
    );
    assert_eq!(
        facts(&out, "dee", |w| matches!(w, What::Woke { .. })),
        [
            "2026-12-01T10:01:00Z welcome/hello: woke (address arrived)",
            "2026-12-01T10:01:00Z welcome/wait_verify: woke (event: verified at 2026-12-01T10:00:30Z, while hello waited for an address)",
        ]
    );
}

/// An event a `wait_for` waits for that happened before the wait began (a vendor's clock two
/// seconds behind, or an upload stamped before the reminder's wait) leaves an `unmet` entry
/// saying when each was: "why is she still reminded?" has an answer.
#[tokio::test]
async fn an_event_from_before_the_wait_began_says_so() {
    let journey = r#"
id: kyc
name: KYC
trigger: {event: kyc_started}
steps:
  - id: wait_doc
    wait_for: {event: uploaded, timeout: 1h, on_event: thanks, on_timeout: remind}
  - id: remind
    send: {push: {title: "Upload your ID", body: "."}}
    next: wait_doc
  - id: thanks
    send: {push: {title: "Thanks", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"kai","traits":{"push_tokens":[{"platform":"fcm","token":"t-kai"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"kai","event":"kyc_started","messageId":"k1"}
{"at":"2026-12-01T10:00:30Z","type":"track","userId":"kai","event":"uploaded","timestamp":"2026-12-01T09:59:58Z","messageId":"d1"}
{"at":"2026-12-01T11:00:30Z","type":"track","userId":"kai","event":"uploaded","timestamp":"2026-12-01T10:59:00Z","messageId":"d2"}
{"at":"2026-12-01T11:10:00Z","type":"track","userId":"kai","event":"uploaded","messageId":"d3"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        facts(&out, "kai", |w| matches!(w, What::Unmet { .. })),
        [
            "2026-12-01T10:00:30Z kyc/wait_doc: heard uploaded, which its wait_for did not take: it happened at 2026-12-01T09:59:58Z, before the wait began at 2026-12-01T10:00:00Z: a wait hears the events from when the user reached it",
            "2026-12-01T11:00:30Z kyc/wait_doc: heard uploaded, which its wait_for did not take: it happened at 2026-12-01T10:59:00Z, before the wait began at 2026-12-01T11:00:00Z: a wait hears the events from when the user reached it",
        ]
    );
    // the one in the wait met it
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T11:00:00Z kai push remind: Upload your ID",
            "2026-12-01T11:10:00Z kai push thanks: Thanks",
        ]
    );
}

/// A late engine's user still has all of a `wait_for`'s timeout after the message before it
/// goes out: an email sent two hours late is followed by the SMS an hour after it, not at once.
#[tokio::test]
async fn a_late_engines_wait_for_still_gives_the_whole_timeout() {
    let journey = r#"
id: nudge
name: Nudge
trigger: {event: signed_up}
steps:
  - id: mail
    send: {email: {subject: "Welcome", text: "Click the link"}}
  - id: click
    wait_for: {event: clicked, timeout: 1h, on_event: done, on_timeout: text}
  - id: text
    send: {sms: {body: "Did you see our email?"}}
  - id: done
    exit: true
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","phone":"+14155550100"}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s1","timestamp":"2026-12-01T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T12:00:00Z ann email mail: Welcome",
            "2026-12-01T13:00:00Z ann sms text: Did you see our email?",
        ]
    );
}

/// A loop: each tap is answered with a ping, and the wait is there again.
const NAG: &str = r#"
id: nag
name: Nag
trigger: {event: go}
steps:
  - id: listen
    wait_for: {event: tap, timeout: 1h, on_event: ping, on_timeout: done}
  - id: ping
    send: {push: {title: "Ping", body: "."}}
    next: listen
  - id: done
    exit: true
"#;

/// An event received before a `wait_for` meets it once: a loop back to the same wait within the
/// transition waits for a later one, rather than going round on the same event.
#[tokio::test]
async fn an_event_received_before_the_wait_meets_a_loop_once() {
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"tap","messageId":"t1","timestamp":"2026-12-01T10:01:00Z"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"tap","messageId":"t2","timestamp":"2026-12-01T10:02:00Z"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"tap","messageId":"t3","timestamp":"2026-12-01T10:02:00Z"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"tap","messageId":"t4","timestamp":"2026-12-01T10:30:00Z"}
{"at":"2026-12-01T10:11:00Z","type":"track","userId":"ann","event":"go","messageId":"g1","timestamp":"2026-12-01T10:00:00Z"}
"#;
    // t1, t2 and t3 (the same second as t2), and t4 (stamped ahead of the engine's clock, as a
    // phone's may be) each meet the wait once
    let out = sim(&[NAG], script).await;
    assert_eq!(
        outbox(&out),
        vec!["2026-12-01T10:11:00Z ann push ping: Ping"; 4]
    );
}

/// An event a wait heard stays heard: a tap that met the wait live is not heard again by the
/// wait the loop comes back to after a second tap stamped the same second.
#[tokio::test]
async fn an_event_a_wait_heard_live_is_not_heard_again_by_the_loops_next_wait() {
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"go","messageId":"g1"}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"ann","event":"tap","messageId":"tA"}
{"at":"2026-12-01T10:06:00Z","type":"track","userId":"ann","event":"tap","messageId":"tB","timestamp":"2026-12-01T10:05:00Z"}
"#;
    let out = sim(&[NAG], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:05:00Z ann push ping: Ping",
            "2026-12-01T10:06:00Z ann push ping: Ping",
        ]
    );
}

/// A user who enters again with a trigger stamped before her previous enrollment ended (it
/// arrived late) does not have her new `wait_for` met by the event the previous one heard.
#[tokio::test]
async fn a_new_entry_does_not_hear_what_the_previous_enrollment_heard() {
    let journey = r#"
id: thanks
name: Thanks
trigger: {event: go}
reentry: after_exit
steps:
  - id: listen
    wait_for: {event: tap, timeout: 1h, on_event: ping, on_timeout: done}
  - id: ping
    send: {push: {title: "Ping", body: "."}}
  - id: done
    exit: true
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"go","messageId":"g1"}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"ann","event":"tap","messageId":"t1"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"go","messageId":"g2","timestamp":"2026-12-01T10:02:00Z"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox(&out), ["2026-12-01T10:05:00Z ann push ping: Ping"]);
    let woke = facts(&out, "ann", |w| matches!(w, What::Woke { .. }));
    assert_eq!(
        woke,
        [
            "2026-12-01T10:05:00Z thanks/listen: woke (event)",
            "2026-12-01T11:10:00Z thanks/listen: woke (timeout)",
        ]
    );
}

#[tokio::test]
async fn wait_for_takes_the_event_path_when_the_event_matches_else_the_timeout_path() {
    let journey = r#"
id: activation
name: Activation
trigger: {event: signed_up}
steps:
  - id: wait_home
    wait_for:
      event: app_opened
      where: "event.screen == 'home'"
      timeout: 1d
      on_event: thanks
      on_timeout: nudge
  - id: nudge
    send:
      push: {title: "Open the app", body: "."}
    next: done
  - id: thanks
    send:
      push: {title: "Welcome home", body: "."}
  - id: done
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cat","traits":{"push_tokens":[{"platform":"fcm","token":"t-cat"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"signed_up","messageId":"s-bob"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cat","event":"signed_up","messageId":"s-cat"}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"o-ann","properties":{"screen":"home"}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"bob","event":"app_opened","messageId":"o-bob","properties":{"screen":"settings"}}
"#;
    let out = sim(&[journey], script).await;
    let cases = [
        ("ann", "2026-12-01T12:00:00Z ann push thanks: Welcome home"), // the event, as awaited
        ("bob", "2026-12-02T10:00:00Z bob push nudge: Open the app"),  // the event, but not `where`
        ("cat", "2026-12-02T10:00:00Z cat push nudge: Open the app"),  // no event: timeout
    ];
    for (user, expected) in cases {
        assert_eq!(outbox_of(&out, user), [expected], "{user}");
    }
}

/// Food delivery: after `order_delivered`, wait for the rating of that order (the rating's
/// `event.order_id` matched to the trigger's `trigger.order_id`), then branch on what it said
/// (`waited.stars`) and answer with a coupon or an apology that quote it.
const RATING: &str = r#"
id: rating
name: Rating
trigger: {event: order_delivered}
steps:
  - id: wait_rating
    wait_for:
      event: rating_submitted
      where: "event.order_id == trigger.order_id"
      timeout: 2h
      on_timeout: nudge
  - id: stars
    branch:
      cases:
        - when: "waited.stars >= 4"
          goto: coupon
      else: apology
  - id: coupon
    send:
      push: {title: "{{ waited.stars }} stars for {{ trigger.order_id }}: 10% off", body: "{{ event.restaurant }}"}
    next: done
  - id: apology
    send:
      push: {title: "Sorry about {{ trigger.order_id }} ({{ waited.stars }} stars)", body: "."}
    next: done
  - id: nudge
    send:
      push: {title: "How was {{ event.restaurant }}?", body: "."}
  - id: done
    exit: true
"#;

fn delivered(user: &str, order: &str) -> String {
    json!({"at": "2026-12-01T19:00:00Z", "type": "track", "userId": user, "event": "order_delivered",
        "messageId": format!("d-{user}"), "properties": {"order_id": order, "restaurant": "Pho 24"}})
    .to_string()
}

/// A push with a body alone and one with a title alone go out with just that line (APNs and
/// FCM show an alert with one).
#[tokio::test]
async fn a_push_goes_out_with_a_title_alone_or_a_body_alone() {
    const ONE_LINE: &str = r#"
id: one_line
name: One line
trigger: {event: order_delivered}
steps:
  - id: on_its_way
    send:
      push: {body: "{{ event.restaurant }} is on its way"}
  - id: delivered
    send:
      push: {title: "Order {{ trigger.order_id }} delivered", data: {tab: orders}}
"#;
    let script = [shopper("ann"), delivered("ann", "o-1")].join("\n");
    let out = sim(&[ONE_LINE], &script).await;
    let contents: Vec<_> = messages_to(&out, "ann")
        .iter()
        .map(|m| match &*m.content {
            Content::Push { title, body, .. } => (title.clone(), body.clone()),
            other => panic!("a push: {other:?}"),
        })
        .collect();
    assert_eq!(
        contents,
        [
            (String::new(), "Pho 24 is on its way".to_string()),
            ("Order o-1 delivered".to_string(), String::new()),
        ]
    );
}

/// A silent push goes out as data alone (no title, no body; the outbox line and the
/// simulation's message say `silent`), is recorded as sent, and is held by quiet hours as any
/// push is (the app may show something of its own when it wakes).
#[tokio::test]
async fn a_silent_push_goes_out_as_data_alone_and_waits_for_quiet_hours_to_end() {
    const SILENT: &str = r#"
id: sync
name: Sync
trigger: {event: order_delivered}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: refresh
    send:
      push: {silent: true, data: {sync: orders, order: "{{ event.order_id }}"}}
"#;
    // Paris is UTC+1 in December: Ann's order arrives at 20:00 local, Bob's at 22:30.
    let script = [
        json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": "ann", "traits": {"timezone": "Europe/Paris", "push_tokens": [{"platform": "apns", "token": "t-ann"}]}}).to_string(),
        json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": "bob", "traits": {"timezone": "Europe/Paris", "push_tokens": [{"platform": "fcm", "token": "t-bob"}]}}).to_string(),
        json!({"at": "2026-12-01T19:00:00Z", "type": "track", "userId": "ann", "event": "order_delivered", "messageId": "d-ann", "properties": {"order_id": "o-1"}}).to_string(),
        json!({"at": "2026-12-01T21:30:00Z", "type": "track", "userId": "bob", "event": "order_delivered", "messageId": "d-bob", "properties": {"order_id": "o-2"}}).to_string(),
    ]
    .join("\n");
    let out = sim(&[SILENT], &script).await;
    for (user, order, at) in [
        ("ann", "o-1", "2026-12-01T19:00:00Z"),
        ("bob", "o-2", "2026-12-02T07:00:00Z"), // 08:00 local, the end of quiet hours
    ] {
        let sent = messages_to(&out, user);
        assert_eq!(sent.len(), 1, "{user}: {sent:?}");
        assert_eq!(sent[0].at.to_string(), at, "{user}");
        assert_eq!(
            *sent[0].content,
            Content::Push {
                title: String::new(),
                body: String::new(),
                silent: true,
                data: BTreeMap::from([
                    ("order".to_string(), order.to_string()),
                    ("sync".to_string(), "orders".to_string()),
                ]),
                expires: None,
            },
            "{user}"
        );
        let line = serde_json::to_value(sent[0]).unwrap_or_default();
        assert_eq!(line["content"]["silent"], true, "{user}: {line}");
        assert!(line["content"].get("title").is_none(), "{user}: {line}");
        assert!(
            waymark::outbox::summary(sent[0])
                .ends_with(&format!(r#"push → user {user} (sync/refresh): silent, data {{"order":"{order}","sync":"orders"}}"#)),
            "{}",
            waymark::outbox::summary(sent[0])
        );
        assert_eq!(
            facts(&out, user, |w| matches!(w, What::Sent { .. })).len(),
            1,
            "{user}"
        );
    }
    assert_eq!(
        facts(
            &out,
            "bob",
            |w| matches!(w, What::Waiting { why, .. } if why == "quiet hours")
        ),
        ["2026-12-01T21:30:00Z sync/refresh: waiting until 2026-12-02T07:00:00Z (quiet hours)"]
    );
}

fn rated(at: &str, user: &str, id: &str, order: &str, stars: u32) -> String {
    json!({"at": at, "type": "track", "userId": user, "event": "rating_submitted", "messageId": id,
        "properties": {"order_id": order, "stars": stars}})
    .to_string()
}

#[tokio::test]
async fn a_branch_after_a_wait_for_reads_the_event_it_waited_for() {
    let mut script = Vec::new();
    for user in ["ann", "bob", "cat", "dan"] {
        script.push(shopper(user));
    }
    script.push(delivered("ann", "o-1"));
    script.push(delivered("bob", "o-2"));
    script.push(delivered("cat", "o-3"));
    script.push(delivered("dan", "o-4"));
    script.push(rated("2026-12-01T19:30:00Z", "ann", "r-ann", "o-1", 5));
    script.push(rated("2026-12-01T19:40:00Z", "bob", "r-bob", "o-2", 2));
    // cat rates an older order: not the one this enrollment waits for.
    script.push(rated("2026-12-01T19:50:00Z", "cat", "r-cat", "o-0", 5));
    let out = sim(&[RATING], &script.join("\n")).await;
    let cases = [
        (
            "ann",
            "2026-12-01T19:30:00Z ann push coupon: 5 stars for o-1: 10% off",
        ),
        (
            "bob",
            "2026-12-01T19:40:00Z bob push apology: Sorry about o-2 (2 stars)",
        ),
        (
            "cat",
            "2026-12-01T21:00:00Z cat push nudge: How was Pho 24?",
        ),
        (
            "dan",
            "2026-12-01T21:00:00Z dan push nudge: How was Pho 24?",
        ),
    ];
    for (user, expected) in cases {
        assert_eq!(outbox_of(&out, user), [expected], "{user}");
    }
    // `event.*` in a step is still the trigger's: the coupon's body names the restaurant.
    let ann = messages_to(&out, "ann");
    assert!(
        matches!(&*ann[0].content, Content::Push { body, .. } if body == "Pho 24"),
        "{:?}",
        ann[0].content
    );
    // The branch says what it read, as for an event's values.
    for (user, why) in [
        (
            "ann",
            "branched to coupon on waited.stars >= 4 (waited.stars = 5)",
        ),
        ("bob", "branched to apology on else (waited.stars = 2)"),
    ] {
        assert_eq!(
            facts(&out, user, |w| matches!(w, What::Branched { .. })),
            [format!(
                "{} rating/stars: {why}",
                &outbox_of(&out, user)[0][..20]
            )],
            "{user}"
        );
    }
    // cat's rating of another order did not meet the wait, and her timeline says why.
    assert_eq!(
        details(&out, "cat"),
        [
            r#"`where: event.order_id == trigger.order_id` was false (event.order_id = "o-0", trigger.order_id = "o-3")"#
        ]
    );
}

/// A branch on `lower(event.country) == 'de'` routes "DE", "de" and "De" alike; a country
/// that is not text (a number) or is missing is null to `lower(…)`, and goes to `else`.
#[tokio::test]
async fn a_branch_on_lower_routes_text_whatever_its_case() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: by_country
    branch:
      cases:
        - {when: "lower(event.country) == 'de'", goto: german}
      else: other
  - id: german
    send: {push: {title: "Willkommen", body: "."}}
    next: done
  - id: other
    send: {push: {title: "Welcome", body: "."}}
  - id: done
    exit: true
"#;
    let users = [
        ("ann", json!("DE")),
        ("bob", json!("de")),
        ("cat", json!("De")),
        ("dan", json!("FR")),
        ("eve", json!(49)),
        ("fay", serde_json::Value::Null),
    ];
    let mut script = Vec::new();
    for (user, country) in &users {
        script.push(format!(
            r#"{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"{user}","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-{user}"}}]}}}}"#
        ));
        script.push(format!(
            r#"{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"signed_up","messageId":"s-{user}","properties":{{"country":{country}}}}}"#
        ));
    }
    let out = sim(&[journey], &script.join("\n")).await;
    for (user, title, why) in [
        (
            "ann",
            "german: Willkommen",
            r#"german on lower(event.country) == 'de' (event.country = "DE")"#,
        ),
        (
            "bob",
            "german: Willkommen",
            r#"german on lower(event.country) == 'de' (event.country = "de")"#,
        ),
        (
            "cat",
            "german: Willkommen",
            r#"german on lower(event.country) == 'de' (event.country = "De")"#,
        ),
        (
            "dan",
            "other: Welcome",
            r#"other on else (event.country = "FR")"#,
        ),
        (
            "eve",
            "other: Welcome",
            "other on else (event.country = 49)",
        ),
        (
            "fay",
            "other: Welcome",
            "other on else (event.country missing)",
        ),
    ] {
        assert_eq!(
            outbox_of(&out, user),
            [format!("2026-12-01T10:00:00Z {user} push {title}")],
            "{user}"
        );
        assert_eq!(
            facts(&out, user, |w| matches!(w, What::Branched { .. })),
            [format!(
                "2026-12-01T10:00:00Z welcome/by_country: branched to {why}"
            )],
            "{user}"
        );
    }
}

/// A `wait_for` that times out leaves `waited.*` missing for the steps after it, also when an
/// earlier `wait_for` of the enrollment was met: they read what the latest wait met, not an
/// older wait's event.
#[tokio::test]
async fn waited_is_missing_after_a_wait_for_times_out() {
    let journey = r#"
id: two_waits
name: Two waits
trigger: {event: order_delivered}
steps:
  - id: first
    wait_for: {event: rating_submitted, timeout: 1h}
  - id: after_first
    branch:
      cases:
        - {when: "exists(waited.stars)", goto: heard}
      else: second
  - id: heard
    send: {push: {title: "first: {{ waited.stars }}", body: "."}}
  - id: second
    wait_for: {event: tip_added, timeout: 1h}
  - id: after_second
    branch:
      cases:
        - {when: "exists(waited.stars)", goto: stale}
      else: gone
  - id: stale
    send: {push: {title: "still {{ waited.stars }}", body: "."}}
    next: done
  - id: gone
    send: {push: {title: "nothing waited: {{ waited.stars | default('-') }}", body: "."}}
  - id: done
    exit: true
"#;
    let script = [
        shopper("ann"),
        delivered("ann", "o-1"),
        rated("2026-12-01T19:10:00Z", "ann", "r-1", "o-1", 4),
    ];
    let out = sim(&[journey], &script.join("\n")).await;
    assert_eq!(
        outbox_of(&out, "ann"),
        [
            "2026-12-01T19:10:00Z ann push heard: first: 4",
            "2026-12-01T20:10:00Z ann push gone: nothing waited: -",
        ]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Branched { .. })),
        [
            "2026-12-01T19:10:00Z two_waits/after_first: branched to heard on exists(waited.stars) (waited.stars = 4)",
            "2026-12-01T20:10:00Z two_waits/after_second: branched to gone on else (waited.stars missing)",
        ]
    );
}

/// The awaited event delivered twice (the same messageId: a queue's redelivery) moves the
/// enrollment once: one coupon.
#[tokio::test]
async fn the_awaited_event_delivered_twice_answers_once() {
    let rating = rated("2026-12-01T19:30:00Z", "ann", "r-ann", "o-1", 5);
    let script = [
        shopper("ann"),
        delivered("ann", "o-1"),
        rating.clone(),
        rating,
    ];
    let out = sim(&[RATING], &script.join("\n")).await;
    assert_eq!(
        outbox_of(&out, "ann"),
        ["2026-12-01T19:30:00Z ann push coupon: 5 stars for o-1: 10% off"]
    );
}

/// An `update` step's values read `waited.*` and `trigger.*` too.
#[tokio::test]
async fn an_update_keeps_what_the_awaited_event_said() {
    let journey = r#"
id: keep_rating
name: Keep rating
trigger: {event: order_delivered}
steps:
  - id: wait_rating
    wait_for: {event: rating_submitted, where: "event.order_id == trigger.order_id", timeout: 2h}
  - id: keep
    update: {set: {last_stars: "{{ waited.stars }}", last_rated_order: "{{ trigger.order_id }}"}}
  - id: check
    branch:
      cases:
        - {when: "profile.last_stars == 5", goto: five}
  - id: five
    send: {push: {title: "five for {{ profile.last_rated_order }}", body: "."}}
"#;
    let script = [
        shopper("ann"),
        delivered("ann", "o-1"),
        rated("2026-12-01T19:30:00Z", "ann", "r-ann", "o-1", 5),
    ];
    let out = sim(&[journey], &script.join("\n")).await;
    assert_eq!(
        outbox_of(&out, "ann"),
        ["2026-12-01T19:30:00Z ann push five: five for o-1"]
    );
}

/// An `exit_when`'s `where` reads the enrollment's trigger: cancelling another order leaves
/// the user in the journey; cancelling the order she entered with ends it. A goal's `where`
/// likewise converts on this order only.
#[tokio::test]
async fn exit_when_and_goal_where_read_the_trigger() {
    let journey = r#"
id: follow
name: Follow
trigger: {event: order_placed}
exit_when:
  - {event: order_cancelled, where: "event.order_id == trigger.order_id"}
goal: {event: order_reviewed, where: "event.order_id == trigger.order_id", within: 1d}
steps:
  - id: later
    wait: 1h
  - id: ask
    send: {push: {title: "Review {{ trigger.order_id }}", body: "."}}
"#;
    let ev = |at: &str, user: &str, event: &str, id: &str, order: &str| {
        json!({"at": at, "type": "track", "userId": user, "event": event, "messageId": id,
            "properties": {"order_id": order}})
        .to_string()
    };
    let script = [
        shopper("ann"),
        shopper("bob"),
        ev(
            "2026-12-01T10:00:00Z",
            "ann",
            "order_placed",
            "p-ann",
            "o-1",
        ),
        ev(
            "2026-12-01T10:00:00Z",
            "bob",
            "order_placed",
            "p-bob",
            "o-2",
        ),
        // ann cancels an older order, then reviews another one: neither is this enrollment's.
        ev(
            "2026-12-01T10:10:00Z",
            "ann",
            "order_cancelled",
            "c-ann",
            "o-0",
        ),
        ev(
            "2026-12-01T10:20:00Z",
            "ann",
            "order_reviewed",
            "v-ann-0",
            "o-0",
        ),
        ev(
            "2026-12-01T12:00:00Z",
            "ann",
            "order_reviewed",
            "v-ann",
            "o-1",
        ),
        // bob cancels his.
        ev(
            "2026-12-01T10:10:00Z",
            "bob",
            "order_cancelled",
            "c-bob",
            "o-2",
        ),
    ];
    let out = sim(&[journey], &script.join("\n")).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T11:00:00Z ann push ask: Review o-1"]
    );
    assert_eq!(
        facts(&out, "bob", |w| matches!(w, What::Exited { .. })),
        ["2026-12-01T10:10:00Z follow/later: exited on order_cancelled"]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(
            w,
            What::Exited { .. } | What::Converted { .. }
        )),
        ["2026-12-01T12:00:00Z follow/ask: converted on order_reviewed, credited to ask"]
    );
    assert_eq!(
        details(&out, "ann"),
        [
            r#"`where: event.order_id == trigger.order_id` was false (event.order_id = "o-0", trigger.order_id = "o-1")"#
        ]
    );
}

/// The pure engine: an enrollment stored before `waited` was kept (its JSON has no such
/// field), waiting for the rating, is met by it and branches on what it said; the same
/// enrollment timed out branches with `waited.*` missing.
#[test]
fn an_enrollment_stored_before_waited_was_kept_branches_on_the_event_that_meets_its_wait() {
    let j = journey(RATING);
    let profile = Profile::new("ann");
    let ctx = |now: &str| Ctx {
        journey: &j,
        version: 1,
        profile: &profile,
        now: at(now),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    };
    let old = r#"{"id":"rating:ann:1","user_id":"ann","journey":"rating","version":1,"n":1,
        "trigger":{"event":"order_delivered","message_id":"d-ann","at":"2026-12-01T19:00:00Z",
        "properties":{"order_id":"o-1","restaurant":"Pho 24"}},"entered_at":"2026-12-01T19:00:00Z",
        "status":"active","step":"wait_rating","seq":1,"pending":{"seq":1,
        "at":"2026-12-01T21:00:00Z","resume":"timeout"},"waiting_for":"rating_submitted"}"#;
    let waiting: waymark::enrollment::Enrollment = serde_json::from_str(old).expect("loads");
    let rating: waymark::event::Event = serde_json::from_value(json!({
        "kind": "track", "message_id": "r-ann", "user_id": "ann", "event": "rating_submitted",
        "properties": {"order_id": "o-1", "stars": 5},
        "timestamp": "2026-12-01T19:30:00Z", "received_at": "2026-12-01T19:30:00Z"
    }))
    .expect("an event");
    let met = engine::on_event(&ctx("2026-12-01T19:30:00Z"), &waiting, &rating).expect("met");
    let branched: Vec<String> = met
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Branched { .. }))
        .map(|e| describe(&e.what))
        .collect();
    assert_eq!(
        branched,
        ["branched to coupon on waited.stars >= 4 (waited.stars = 5)"]
    );
    let waited = met.enrollment.waited.as_ref().expect("kept");
    assert_eq!(
        (waited.event.as_str(), waited.message_id.as_str()),
        ("rating_submitted", "r-ann")
    );
    // The same rating again (a redelivery) finds the wait over: nothing moves.
    assert!(engine::on_event(&ctx("2026-12-01T19:31:00Z"), &met.enrollment, &rating).is_none());
    // Timed out instead: on to the nudge, with nothing waited for.
    let timed_out = engine::wake(&ctx("2026-12-01T21:00:00Z"), &waiting, 1).expect("due");
    assert_eq!(timed_out.enrollment.waited, None);
    assert!(
        timed_out
            .timeline
            .iter()
            .any(|e| e.step.as_deref() == Some("nudge")),
        "{:?}",
        timed_out.timeline
    );
}

/// In the trigger's own `where`, `trigger.*` is the event itself.
#[tokio::test]
async fn in_the_triggers_where_trigger_is_the_event() {
    let journey = r#"
id: big
name: Big
trigger: {event: order_delivered, where: "trigger.order_id == event.order_id and trigger.order_id == 'o-1'"}
steps:
  - id: hi
    send: {push: {title: "{{ trigger.order_id }}", body: "."}}
"#;
    let script = [
        shopper("ann"),
        shopper("bob"),
        delivered("ann", "o-1"),
        delivered("bob", "o-2"),
    ];
    let out = sim(&[journey], &script.join("\n")).await;
    assert_eq!(outbox(&out), ["2026-12-01T19:00:00Z ann push hi: o-1"]);
}

#[tokio::test]
async fn branch_takes_the_first_case_that_holds_else_the_else_path() {
    let journey = r#"
id: thanks
name: Thanks
trigger: {event: order_completed}
steps:
  - id: size
    branch:
      cases:
        - when: "event.total >= 100"
          goto: big
        - when: "event.total >= 50"
          goto: medium
      else: small
  - id: big
    send: {push: {title: "Big order", body: "."}}
    next: done
  - id: medium
    send: {push: {title: "Medium order", body: "."}}
    next: done
  - id: small
    send: {push: {title: "Small order", body: "."}}
  - id: done
    exit: true
"#;
    let cases = [
        // (total, message title, branch fact): 150 holds both cases; the first wins.
        // Each with what the condition read: the case's, or every case's for `else`.
        (
            150,
            "Big order",
            "branched to big on event.total >= 100 (event.total = 150)",
        ),
        (
            60,
            "Medium order",
            "branched to medium on event.total >= 50 (event.total = 60)",
        ),
        (
            10,
            "Small order",
            "branched to small on else (event.total = 10)",
        ),
    ];
    for (total, title, why) in cases {
        let script = format!(
            "{ANN}\n{}",
            json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "ann", "event": "order_completed", "messageId": "o-1", "properties": {"total": total}})
        );
        let out = sim(&[journey], &script).await;
        let step = title.split(' ').next().unwrap_or_default().to_lowercase();
        assert_eq!(
            outbox(&out),
            [format!("2026-12-01T10:00:00Z ann push {step}: {title}")],
            "total {total}"
        );
        assert_eq!(
            facts(&out, "ann", |w| matches!(w, What::Branched { .. })),
            [format!("2026-12-01T10:00:00Z thanks/size: {why}")],
            "total {total}"
        );
    }
}

const AB: &str = r#"
id: ab
name: A/B
trigger: {event: signed_up}
steps:
  - id: copy_test
    split:
      holdout: 10
      paths:
        - {name: features, weight: 70, goto: features}
        - {name: momentum, weight: 30, goto: momentum}
  - id: features
    send: {push: {title: "features", body: "."}}
    next: done
  - id: momentum
    send: {push: {title: "momentum", body: "."}}
  - id: done
    exit: true
"#;

#[tokio::test]
async fn split_sends_a_user_down_the_same_path_on_every_run() {
    let script: String = (0..40)
        .flat_map(|i| {
            let user = format!("user-{i}");
            [
                json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": user, "traits": {"push_tokens": [{"platform": "fcm", "token": format!("t-{i}")}]}}),
                json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": user, "event": "signed_up", "messageId": format!("s-{i}")}),
            ]
        })
        .map(|l| l.to_string() + "\n")
        .collect();
    let path_of = |out: &[waymark::simulate::Output]| -> BTreeMap<String, String> {
        (0..40)
            .map(|i| {
                let user = format!("user-{i}");
                let path = entries(out, &user)
                    .iter()
                    .find_map(|e| match &e.what {
                        What::Split { path, .. } => Some(path.clone()),
                        What::HeldOut { .. } => Some("holdout".to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("{user} was neither split nor held out"));
                (user, path)
            })
            .collect()
    };
    let first = sim(&[AB], &script).await;
    let second = sim(&[AB], &script).await;
    assert_eq!(path_of(&first), path_of(&second));
    assert_eq!(outbox(&first), outbox(&second));
    // And the message each user got is the one of their path; the held-out got none.
    for (user, path) in path_of(&first) {
        let got: Vec<String> = messages_to(&first, &user)
            .iter()
            .map(|m| headline(&m.content))
            .collect();
        if path == "holdout" {
            assert!(got.is_empty(), "{user} is held out but got {got:?}");
        } else {
            assert_eq!(got, [path], "{user}");
        }
    }
}

/// The pure engine's reading of a time-of-day wait when the user's zone changes: moved to the
/// next such time in her new zone while it is still ahead, left alone once it is due (its
/// wake-up is on its way), and left alone when the zone gives the same time.
#[test]
fn a_time_of_day_wait_moves_with_the_zone_only_while_it_is_ahead() {
    let j = journey(
        r#"
id: morning
name: Morning tip
trigger: {event: signed_up}
steps:
  - id: nine_am
    wait_until: {time: "09:00"}
  - id: tip
    send: {push: {title: "Good morning", body: "Your first tip"}}
"#,
    );
    let profile_in = |zone: &str| {
        let mut p = Profile::new("ann");
        p.traits.insert("timezone".into(), json!(zone));
        p
    };
    fn ctx<'a>(j: &'a waymark::journey::Journey, profile: &'a Profile, now: &str) -> Ctx<'a> {
        Ctx {
            journey: j,
            version: 1,
            profile,
            now: at(now),
            unsubscribe_url: None,
            topics: waymark::topic::Declared::NONE,
            set_meanwhile: &[],
        }
    }
    let los_angeles = profile_in("America/Los_Angeles");
    let trigger = TriggerEvent {
        event: "signed_up".into(),
        message_id: "s-ann".into(),
        at: at("2026-12-01T10:00:00Z"),
        properties: std::sync::Arc::new(json!({})),
    };
    let entered = engine::enter(
        &ctx(&j, &los_angeles, "2026-12-01T10:00:00Z"),
        "ann",
        1,
        trigger,
    );
    let waiting = entered.enrollment;
    assert_eq!(
        waiting.pending.map(|p| p.at),
        Some(at("2026-12-01T17:00:00Z")),
        "09:00 in Los Angeles"
    );
    let tokyo = profile_in("Asia/Tokyo");
    // Ahead: moved to 09:00 in Tokyo.
    let moved =
        engine::date_moved(&ctx(&j, &tokyo, "2026-12-01T12:00:00Z"), &waiting).expect("moved");
    assert_eq!(
        moved.enrollment.pending.map(|p| p.at),
        Some(at("2026-12-02T00:00:00Z"))
    );
    // Due already (the zone's news came with the wake-up on its way): left alone.
    assert!(engine::date_moved(&ctx(&j, &tokyo, "2026-12-01T17:00:30Z"), &waiting).is_none());
    // The same zone: nothing to move.
    assert!(engine::date_moved(&ctx(&j, &los_angeles, "2026-12-01T12:00:00Z"), &waiting).is_none());
}

/// A loop whose only wait is for a date: `validate` refuses it (the date is past when the loop
/// comes back), and the engine, given one anyway (a journey stored before that check), sends
/// once and ends the enrollment saying why when the loop comes back to the past date, instead
/// of sending at every pass until its step bound.
#[test]
fn a_loop_through_a_past_date_sends_once_and_ends_saying_why() {
    const LOOP: &str = r#"
id: l
name: L
trigger: {event: go}
steps:
  - id: w
    wait_until: {date: event.d}
  - id: s
    send: {email: {subject: "x", text: "y"}}
    next: w
"#;
    let errs = waymark::dsl::parse("l.yaml", LOOP).expect_err("a loop through a date wait");
    let all = errs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all.contains("steps `s` → `w` form a loop with no wait (a `wait_until` with a `date` goes on at once"),
        "{all}"
    );
    let mut j = journey(&LOOP.replace("    next: w\n", ""));
    j.steps[1].next = Some("w".into());
    let mut profile = Profile::new("a");
    profile
        .traits
        .insert("email".into(), json!("a@example.com"));
    let ctx = Ctx {
        journey: &j,
        version: 1,
        profile: &profile,
        now: at("2026-03-02T01:00:00Z"),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    };
    let trigger = TriggerEvent {
        event: "go".into(),
        message_id: "go-1".into(),
        at: ctx.now,
        properties: std::sync::Arc::new(json!({"d": "2026-01-01"})),
    };
    let t = engine::enter(&ctx, "a", 1, trigger);
    let sends = t
        .effects
        .iter()
        .filter(|e| matches!(e, engine::Effect::Send(_)))
        .count();
    assert_eq!(sends, 1);
    let ended: Vec<String> = t
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Ended { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        ["wait_until event.d: event.d (2026-01-01T00:00:00Z) was past again when the journey came back to this step; a loop needs a `wait` or `wait_for` in it"]
    );
    assert!(!t.enrollment.is_active());

    // Entered while the date is ahead: it waits, and when woken it sends once and ends,
    // rather than going round once more.
    let trigger = TriggerEvent {
        event: "go".into(),
        message_id: "go-2".into(),
        at: ctx.now,
        properties: std::sync::Arc::new(json!({"d": "2026-03-10"})),
    };
    let t = engine::enter(&ctx, "a", 2, trigger);
    assert!(t
        .effects
        .iter()
        .all(|e| !matches!(e, engine::Effect::Send(_))));
    let woken = Ctx {
        now: at("2026-03-10T00:00:00Z"),
        ..ctx
    };
    let w = engine::wake(&woken, &t.enrollment, t.enrollment.seq).expect("due");
    let sends = w
        .effects
        .iter()
        .filter(|e| matches!(e, engine::Effect::Send(_)))
        .count();
    assert_eq!(sends, 1);
    assert!(!w.enrollment.is_active());
}
/// A journey that runs more steps without a wait than the engine takes at a time (validation
/// refuses one; this one had its wait taken out after) ends saying so, at the step it stopped
/// on, rather than passing for completed with the rest of it never run.
#[test]
fn a_run_past_the_engines_bound_ends_saying_why() {
    let mut text = String::from("id: j\nname: J\ntrigger: {event: go}\nsteps:\n");
    for i in 0..300 {
        if i == 150 {
            text.push_str("  - {id: w, wait: 1m}\n");
        }
        text.push_str(&format!("  - {{id: u{i}, update: {{set: {{n: {i}}}}}}}\n"));
    }
    text.push_str("  - id: mail\n    send:\n      email: {subject: s, text: t}\n");
    let mut j = journey(&text);
    j.steps.retain(|s| s.id != "w");
    let mut profile = Profile::new("a");
    profile
        .traits
        .insert("email".into(), json!("a@example.com"));
    let ctx = Ctx {
        journey: &j,
        version: 1,
        profile: &profile,
        now: at("2026-03-02T10:00:00Z"),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    };
    let trigger = TriggerEvent {
        event: "go".into(),
        message_id: "go-1".into(),
        at: ctx.now,
        properties: std::sync::Arc::new(json!({})),
    };
    let t = engine::enter(&ctx, "a", 1, trigger);
    assert!(t
        .effects
        .iter()
        .all(|e| !matches!(e, engine::Effect::Send(_))));
    let ended: Vec<(Option<String>, String)> = t
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Ended { reason } => Some((e.step.as_deref().map(str::to_string), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        [(
            Some("u255".to_string()),
            "256 steps ran without a wait, the most the engine takes at a time: `u256` was not taken; put a `wait` between them".to_string()
        )]
    );
    assert!(!t.enrollment.is_active());
    assert!(t
        .timeline
        .iter()
        .all(|e| !matches!(e.what, What::Completed)));
}

/// A reminder the morning before an appointment that leaves the journey when the appointment
/// itself is past (`if_past: exit`), and the renewal notices that read `if_past` with a
/// tolerance or a step to go to.
const IF_PAST: &str = r#"
id: reminder
name: Reminder
trigger: {event: appointment_booked}
steps:
  - id: day_before
    wait_until: {date: event.starts_at, before: 1d, time: "09:00", if_past: exit}
  - id: remind
    send: {email: {subject: "See you tomorrow", text: "."}}
"#;

/// The engine's outcomes on the date `starts_at` (or the profile's `renews_on`) at `now`: what
/// went out, the wait's entries, and whether the enrollment is still waiting.
fn if_past_outcome(
    text: &str,
    starts_at: Option<&str>,
    traits: serde_json::Value,
    now: &str,
) -> (Vec<String>, Vec<String>, bool) {
    let j = journey(text);
    let mut profile = Profile::new("ann");
    profile
        .traits
        .insert("email".into(), json!("ann@example.com"));
    if let serde_json::Value::Object(t) = traits {
        profile.traits.extend(t);
    }
    let ctx = Ctx {
        journey: &j,
        version: 1,
        profile: &profile,
        now: at(now),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    };
    let properties = match starts_at {
        Some(s) => json!({ "starts_at": s }),
        None => json!({}),
    };
    let trigger = TriggerEvent {
        event: j.trigger.event.as_ref().expect("an event trigger").names()[0].clone(),
        message_id: "b-ann".into(),
        at: ctx.now,
        properties: std::sync::Arc::new(properties),
    };
    let t = engine::enter(&ctx, "ann", 1, trigger);
    let sent = t
        .effects
        .iter()
        .filter_map(|e| match e {
            engine::Effect::Send(s) => Some(s.step.to_string()),
            _ => None,
        })
        .collect();
    let said = t
        .timeline
        .iter()
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("waiting") || d.starts_with("woke") || d.starts_with("ended"))
        .collect();
    (sent, said, t.enrollment.is_active())
}

/// `if_past` judges a date with a `time` as a `time` alone is judged: reached within the minute
/// it waits for (09:00:30 for 09:00 on the day), it is that time, not past, and goes on at once;
/// a minute on, it is past. (Before, 09:00:30 ended the journey, "was past".)
#[test]
fn if_past_takes_a_time_reached_within_its_minute_as_now() {
    let journey = r#"
id: ipt
name: Ipt
trigger: {event: got}
steps:
  - id: w
    wait_until: {date: event.starts_at, time: "09:00", if_past: exit}
  - id: s
    send: {email: {subject: "s", text: "."}}
"#;
    let (sent, said, _) = if_past_outcome(
        journey,
        Some("2026-12-01"),
        json!({"timezone": "UTC"}),
        "2026-12-01T09:00:30Z",
    );
    assert_eq!(sent, ["s"], "{said:?}");
    assert_eq!(
        said,
        [
            "waiting until 2026-12-01T09:00:30Z (wait_until event.starts_at at 09:00)".to_string(),
            "woke (already past: 2026-12-01T09:00:00Z; it is 09:00)".to_string(),
        ]
    );
    let (sent, said, _) = if_past_outcome(
        journey,
        Some("2026-12-01"),
        json!({"timezone": "UTC"}),
        "2026-12-01T09:01:00Z",
    );
    assert!(sent.is_empty(), "{said:?}");
    assert_eq!(
        said,
        ["ended: wait_until event.starts_at at 09:00: 2026-12-01T09:00:00Z was past (if_past: exit)".to_string()]
    );
}

/// `if_past` decides what a `wait_until` date already past does, judged on the date itself
/// (not the day before it that the reminder waits for): booked two hours ahead, the reminder
/// still goes at once; an appointment last week ends the journey, counted as an exit, with the
/// timeline saying why. With `by_more_than`, a date past by less goes on; with a step's id,
/// a date past goes there. Each for an `after` wait too, judged from the time it waits for.
#[test]
fn a_wait_until_date_already_past_does_what_if_past_says() {
    let now = "2026-12-01T10:00:00Z";
    let reminder = |starts_at: &str| if_past_outcome(IF_PAST, Some(starts_at), json!({}), now);
    // Later today: the morning before is past, the appointment is not: reminded at once.
    assert_eq!(
        reminder("2026-12-01T16:00:00Z"),
        (
            vec!["remind".to_string()],
            vec![
                "waiting until 2026-12-01T10:00:00Z (wait_until event.starts_at - 1d at 09:00)"
                    .to_string(),
                "woke (already past: 2026-11-30T09:00:00Z; event.starts_at (2026-12-01T16:00:00Z) is not)".to_string(),
            ],
            false
        )
    );
    // Last week: no reminder; the user leaves, saying why.
    assert_eq!(
        reminder("2026-11-24T10:00:00Z"),
        (
            vec![],
            vec!["ended: wait_until event.starts_at - 1d at 09:00: event.starts_at (2026-11-24T10:00:00Z) was past (if_past: exit)".to_string()],
            false
        )
    );
    // An hour ago, which no tolerance forgives.
    let (sent, said, _) = reminder("2026-12-01T09:00:00Z");
    assert!(sent.is_empty(), "{said:?}");
    // Next week: it waits, as without `if_past`.
    let (sent, said, waiting) = reminder("2026-12-08T10:00:00Z");
    assert!(sent.is_empty() && waiting, "{said:?}");
    assert_eq!(
        said,
        ["waiting until 2026-12-07T09:00:00Z (wait_until event.starts_at - 1d at 09:00)"]
    );
    // Without `if_past`, a date long past goes on at once, as it always has.
    let (sent, said, _) = if_past_outcome(
        &IF_PAST.replace(", if_past: exit", ""),
        Some("2026-11-24T10:00:00Z"),
        json!({}),
        now,
    );
    assert_eq!(sent, ["remind"]);
    assert_eq!(said[1], "woke (already past: 2026-11-23T09:00:00Z)");

    // A renewal day (midnight, UTC), with a tolerance of a day.
    let renewal = |if_past: &str, renews_on: &str| {
        // `late` is there when `if_past` goes to it (a step nothing reaches is refused).
        let late = if if_past.contains("late") {
            "    next: done\n  - id: late\n    send: {email: {subject: \"Renewed a while ago\", text: \".\"}}\n"
        } else {
            ""
        };
        let text = format!(
            r#"
id: renewal
name: Renewal
trigger: {{event: plan_changed}}
steps:
  - id: on_the_day
    wait_until: {{date: profile.renews_on, if_past: {if_past}}}
  - id: tell
    send: {{email: {{subject: "Renewed", text: "."}}}}
{late}  - id: done
    exit: true
"#
        );
        if_past_outcome(&text, None, json!({ "renews_on": renews_on }), now)
    };
    let tolerant = "{by_more_than: 1d, then: exit}";
    // Past by ten hours, within the day: on at once, saying why it went on.
    let (sent, said, _) = renewal(tolerant, "2026-12-01");
    assert_eq!(sent, ["tell"]);
    assert_eq!(
        said[1],
        "woke (already past: 2026-12-01T00:00:00Z; by no more than 1d)"
    );
    // A year ago: out.
    let (sent, said, _) = renewal(tolerant, "2025-12-01");
    assert!(sent.is_empty(), "{said:?}");
    assert_eq!(
        said,
        ["ended: wait_until profile.renews_on: 2025-12-01T00:00:00Z was past by more than 1d (if_past: exit)"]
    );
    // To a step of its own, and from there on as the file says (`late` runs on to `done`).
    let (sent, said, waiting) = renewal("{by_more_than: 1d, then: late}", "2025-12-01");
    assert_eq!(sent, ["late"]);
    assert!(!waiting);
    assert_eq!(
        said[1],
        "woke (already past: 2025-12-01T00:00:00Z; past by more than 1d (if_past: late))"
    );
    let (sent, _, _) = renewal("late", "2026-12-01");
    assert_eq!(sent, ["late"], "no tolerance: ten hours is past");

    // Three days after a trial ended: past counts from the time waited for, not the end.
    let survey = |trial_ended: &str| {
        if_past_outcome(
            r#"
id: survey
name: Survey
trigger: {event: trial_over}
steps:
  - id: three_days_after
    wait_until: {date: profile.trial_ended_at, after: 3d, if_past: {by_more_than: 2d, then: exit}}
  - id: ask
    send: {email: {subject: "How was it?", text: "."}}
"#,
            None,
            json!({ "trial_ended_at": trial_ended }),
            now,
        )
    };
    // Ended four days ago: the survey is a day late, within two: asked now.
    let (sent, said, _) = survey("2026-11-27T10:00:00Z");
    assert_eq!(sent, ["ask"]);
    assert_eq!(
        said[1],
        "woke (already past: 2026-11-30T10:00:00Z; by no more than 2d)"
    );
    // Ended a month ago: out.
    let (sent, said, _) = survey("2026-11-01T10:00:00Z");
    assert!(sent.is_empty(), "{said:?}");
    assert_eq!(
        said,
        ["ended: wait_until profile.trial_ended_at + 3d: 2026-11-04T10:00:00Z was past by more than 2d (if_past: exit)"]
    );
}

/// A date that moves into the past while the user waits is judged by `if_past` as one past
/// when she reached the wait: her renewal day set to last year ends the journey (the wait's
/// wake-up cancelled), set to earlier today (within the tolerance) it goes on at once.
#[test]
fn a_wait_until_date_moved_into_the_past_does_what_if_past_says() {
    let j = journey(
        r#"
id: renewal
name: Renewal
trigger: {event: plan_changed}
steps:
  - id: three_days_before
    wait_until: {date: profile.renews_on, before: 3d, time: "09:00", if_past: {by_more_than: 1d, then: exit}}
  - id: tell
    send: {email: {subject: "Renewal soon", text: "."}}
"#,
    );
    let profile_renewing = |renews_on: &str| {
        let mut p = Profile::new("ann");
        p.traits.insert("renews_on".into(), json!(renews_on));
        p.traits.insert("email".into(), json!("ann@example.com"));
        p
    };
    fn ctx<'a>(j: &'a waymark::journey::Journey, profile: &'a Profile, now: &str) -> Ctx<'a> {
        Ctx {
            journey: j,
            version: 1,
            profile,
            now: at(now),
            unsubscribe_url: None,
            topics: waymark::topic::Declared::NONE,
            set_meanwhile: &[],
        }
    }
    let before = profile_renewing("2026-12-20");
    let trigger = TriggerEvent {
        event: "plan_changed".into(),
        message_id: "p-ann".into(),
        at: at("2026-12-01T10:00:00Z"),
        properties: std::sync::Arc::new(json!({})),
    };
    let entered = engine::enter(&ctx(&j, &before, "2026-12-01T10:00:00Z"), "ann", 1, trigger);
    let waiting = entered.enrollment;
    assert_eq!(
        waiting.pending.map(|p| p.at),
        Some(at("2026-12-17T09:00:00Z"))
    );
    let said = |t: &engine::Transition| -> Vec<String> {
        t.timeline
            .iter()
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("woke") || d.starts_with("ended"))
            .collect()
    };
    let sends = |t: &engine::Transition| {
        t.effects
            .iter()
            .filter(|e| matches!(e, engine::Effect::Send(_)))
            .count()
    };
    // An identify sets it to last year's: out, the wake-up cancelled.
    let last_year = profile_renewing("2025-12-05");
    let moved =
        engine::date_moved(&ctx(&j, &last_year, "2026-12-05T10:00:00Z"), &waiting).expect("moved");
    assert_eq!(
        said(&moved),
        [
            "woke (the date it waits for moved)",
            "ended: wait_until profile.renews_on - 3d at 09:00: profile.renews_on (2025-12-05T00:00:00Z) was past by more than 1d (if_past: exit)",
        ]
    );
    assert_eq!(sends(&moved), 0);
    assert!(!moved.enrollment.is_active());
    assert!(moved.effects.iter().any(|e| matches!(
        e,
        engine::Effect::Cancel { at: when, .. } if *when == at("2026-12-17T09:00:00Z")
    )));
    // Set to today (midnight, ten hours ago): within the day, reminded at once.
    let today = profile_renewing("2026-12-05");
    let moved =
        engine::date_moved(&ctx(&j, &today, "2026-12-05T10:00:00Z"), &waiting).expect("moved");
    assert_eq!(
        said(&moved),
        [
            "woke (the date it waits for moved)",
            "woke (already past: 2026-12-02T09:00:00Z; profile.renews_on (2026-12-05T00:00:00Z) is past by no more than 1d)",
        ]
    );
    assert_eq!(sends(&moved), 1);
    // Set to a later day: it waits for that, as without `if_past`.
    let later = profile_renewing("2027-01-10");
    let moved =
        engine::date_moved(&ctx(&j, &later, "2026-12-05T10:00:00Z"), &waiting).expect("moved");
    assert_eq!(
        moved.enrollment.pending.map(|p| p.at),
        Some(at("2027-01-07T09:00:00Z"))
    );
}

/// Through the runtime: an identify that moves the renewal day a user waits for into last
/// year ends her enrollment, and the journey's stats count her as exited at the wait, as
/// any other exit; `waymark why` reads the reason from her enrollment.
#[tokio::test]
async fn a_date_moved_long_past_exits_and_is_counted_as_an_exit() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    let text = RENEWAL.replace(
        r#"time: "09:00"}"#,
        r#"time: "09:00", if_past: {by_more_than: 1d, then: exit}}"#,
    );
    assert!(text.contains("if_past"), "{text}");
    h.publish(&text).await;
    let mut script = on_renewal(&["ann", "bob"]);
    script.push(
        json!({"at": "2026-12-05T10:00:00Z", "type": "identify", "userId": "ann",
           "traits": {"renews_on": "2025-12-20"}}),
    );
    h.play(&script_of(&script)).await;
    h.advance_to(at("2026-12-18T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-17T09:00:00Z bob push tell: Renewal soon"]
    );
    // What `GET /v1/users/ann` (and `waymark why`) shows: the reason, on the enrollment and
    // in the timeline.
    let why = "wait_until profile.renews_on - 3d at 09:00: profile.renews_on (2025-12-20T00:00:00Z) was past by more than 1d (if_past: exit)";
    let ann = h.rt.user("ann").await.expect("user view");
    let reasons: Vec<Option<&str>> = ann
        .enrollments
        .iter()
        .map(|e| e.end_reason.as_deref())
        .collect();
    assert_eq!(reasons, [Some(why)]);
    let ended: Vec<String> = ann
        .timeline
        .iter()
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("woke") || d.starts_with("ended"))
        .collect();
    assert_eq!(
        ended,
        [
            "woke (the date it waits for moved: an identify)".to_string(),
            format!("ended: {why}")
        ]
    );
    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats("renewal").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(&text), 1, &counters);
    assert_eq!((stats.entered, stats.exited, stats.completed), (2, 1, 1));
    let wait = stats
        .steps
        .iter()
        .find(|s| s.id == "three_days_before")
        .expect("the wait's figures");
    assert_eq!(wait.exited, 1);
}

#[test]
fn split_shares_follow_the_weights_and_the_holdout_is_ten_percent() {
    let j = journey(AB);
    let profile_of = Profile::new;
    let mut shares: BTreeMap<String, i64> = BTreeMap::new();
    const USERS: i64 = 2_000;
    for i in 0..USERS {
        let user = format!("user-{i}");
        let profile = profile_of(&user);
        let ctx = Ctx {
            journey: &j,
            version: 1,
            profile: &profile,
            now: at("2026-12-01T10:00:00Z"),
            unsubscribe_url: None,
            topics: waymark::topic::Declared::NONE,
            set_meanwhile: &[],
        };
        let trigger = TriggerEvent {
            event: "signed_up".into(),
            message_id: format!("s-{i}"),
            at: ctx.now,
            properties: std::sync::Arc::new(json!({})),
        };
        let t = engine::enter(&ctx, &user, 1, trigger);
        let path = t
            .timeline
            .iter()
            .find_map(|e| match &e.what {
                What::Split { path, .. } => Some(path.clone()),
                What::HeldOut { .. } => Some("holdout".to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{user} was neither split nor held out"));
        // The holdout is the first 10% of the stable hash's range.
        let held_by_hash = engine::bucket(&user, "ab", "copy_test") < 1_000;
        assert_eq!(held_by_hash, path == "holdout", "{user}");
        *shares.entry(path).or_default() += 1;
    }
    // Expected: 10% held out; the other 90% split 70/30, i.e. 63% and 27%. Within 3 points.
    for (path, expected_pct) in [("holdout", 10), ("features", 63), ("momentum", 27)] {
        let got = shares.get(path).copied().unwrap_or(0);
        let expected = USERS * expected_pct / 100;
        assert!(
            (got - expected).abs() <= USERS * 3 / 100,
            "{path}: {got} of {USERS}, expected about {expected} ({shares:?})"
        );
    }
}

#[tokio::test]
async fn send_renders_each_channel_with_the_profile_the_event_and_the_journey() {
    // Transactional, so that its `marketing: false` email carries no unsubscribe link.
    let journey = r#"
id: welcome
name: Welcome
transactional: true
trigger: {event: signed_up}
steps:
  - id: by_email
    send:
      email:
        subject: "Welcome, {{ profile.first_name }}"
        html: "<p>Hi {{ profile.first_name }}: {{ journey.name }} v{{ journey.version }}, {{ event.plan }} plan</p>"
        text: "Hi {{ profile.first_name }}: {{ journey.name }} v{{ journey.version }}, {{ event.plan }} plan"
        marketing: false
  - id: by_sms
    send:
      sms:
        body: "{{ profile.first_name }}, your {{ event.plan }} plan is ready"
        sms_type: transactional
  - id: by_push
    send:
      push:
        title: "{{ journey.name }}"
        body: "{{ profile.first_name }} on {{ event.plan }}"
        data:
          deeplink: "app://plans/{{ event.plan }}"
        expires: 4h
  - id: by_in_app
    send:
      in_app:
        title: "Hello {{ profile.first_name }}"
        body: "Start with {{ event.plan }}"
        data:
          journey: "{{ journey.id }}"
  - id: by_webhook
    send:
      webhook:
        url: "https://crm.example.com/users/{{ user_id }}"
        method: PUT
        headers:
          x-journey: "{{ journey.id }}"
        body: '{"plan": "{{ event.plan }}"}'
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(journey).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann & Bo","email":"ann@example.com","phone":"+33612345678","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann","properties":{"plan":"pro"}}
"#).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;

    let sent = h.lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let by_channel: BTreeMap<Channel, (Address, Content)> = sent
        .iter()
        .map(|m| (m.channel, (m.to.clone(), Content::clone(&m.content))))
        .collect();
    assert_eq!(
        sent.len(),
        5,
        "every channel reaches the local outbox (in-app also lands in the inbox): {sent:?}"
    );
    assert_eq!(
        by_channel[&Channel::Email],
        (
            Address::One("ann@example.com".into()),
            Content::Email {
                subject: "Welcome, Ann & Bo".into(),
                html: Some("<p>Hi Ann &amp; Bo: Welcome v1, pro plan</p>".into()),
                text: Some("Hi Ann & Bo: Welcome v1, pro plan".into()),
                unsubscribe_url: None,
            }
        )
    );
    assert_eq!(
        by_channel[&Channel::Sms],
        (
            Address::One("+33612345678".into()),
            Content::Sms {
                body: "Ann & Bo, your pro plan is ready".into(),
                sms_type: SmsType::Transactional,
            }
        )
    );
    let (to, content) = &by_channel[&Channel::Push];
    assert!(
        matches!(to, Address::Devices(d) if d.len() == 1 && d[0].token == "t-ann"),
        "{to:?}"
    );
    assert_eq!(
        content,
        &Content::Push {
            title: "Welcome".into(),
            body: "Ann & Bo on pro".into(),
            silent: false,
            data: BTreeMap::from([("deeplink".to_string(), "app://plans/pro".to_string())]),
            expires: Some(waymark::duration::Duration::from_secs(14_400)),
        }
    );
    // The call as the deployed sender makes it: with the JSON content type and the send's
    // ledger key as its idempotency key, which the step did not name.
    let hook = sent
        .iter()
        .find(|m| m.channel == Channel::Webhook)
        .expect("a webhook line");
    assert_eq!(hook.id, "welcome:ann:1#by_webhook#5");
    assert_eq!(
        by_channel[&Channel::Webhook].1,
        Content::Webhook {
            url: "https://crm.example.com/users/ann".into(),
            method: "PUT".into(),
            headers: BTreeMap::from([
                ("x-journey".to_string(), "welcome".to_string()),
                ("Content-Type".to_string(), "application/json".to_string()),
                (
                    "Idempotency-Key".to_string(),
                    "welcome:ann:1#by_webhook#5".to_string()
                ),
            ]),
            body: Some(r#"{"plan": "pro"}"#.into()),
            secrets: Vec::new(),
        }
    );
    // In-app messages land in the user's inbox rather than with a provider.
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(
        (
            inbox[0].title.as_str(),
            inbox[0].body.as_str(),
            inbox[0].step.as_str()
        ),
        ("Hello Ann & Bo", "Start with pro", "by_in_app")
    );
    assert_eq!(
        inbox[0].data,
        BTreeMap::from([("journey".to_string(), "welcome".to_string())])
    );
}

#[tokio::test]
async fn send_falls_back_to_the_second_channel_when_the_first_cannot_reach_the_user() {
    let journey = r#"
id: reminder
name: Reminder
trigger: {event: signed_up}
steps:
  - id: remind
    send:
      push: {title: "Finish signing up", body: "."}
      fallback:
        email: {subject: "Finish signing up (email)", text: "."}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cat","traits":{"first_name":"Cat"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"signed_up","messageId":"s-bob"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cat","event":"signed_up","messageId":"s-cat"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push remind: Finish signing up",
            "2026-12-01T10:00:00Z bob email remind: Finish signing up (email)",
        ]
    );
    let why = |w: &What| matches!(w, What::FellBack { .. } | What::Skipped { .. });
    assert_eq!(
        facts(&out, "bob", why),
        ["2026-12-01T10:00:00Z reminder/remind: fell back from push to email: no_address"]
    );
    assert_eq!(
        facts(&out, "cat", why),
        ["2026-12-01T10:00:00Z reminder/remind: skipped push: no_address"]
    );
}

#[tokio::test]
async fn send_that_cannot_reach_the_user_is_skipped_with_a_reason_and_the_journey_goes_on() {
    let journey = r#"
id: multi
name: Multi
trigger: {event: signed_up}
steps:
  - id: text_them
    send: {sms: {body: "Welcome (sms)"}}
  - id: mail_them
    send: {email: {subject: "Welcome (email)", text: "."}}
  - id: push_them
    send: {push: {title: "Welcome (push)", body: "."}}
"#;
    // No phone; email opted out; a device.
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","subscriptions":{"email":false},"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:00Z ann push push_them: Welcome (push)"]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(
            w,
            What::Skipped { .. } | What::Completed
        )),
        [
            "2026-12-01T10:00:00Z multi/text_them: skipped sms: no_address",
            "2026-12-01T10:00:00Z multi/mail_them: skipped email: opted_out",
            "2026-12-01T10:00:00Z multi/push_them: completed",
        ]
    );
}

/// A send that can reach the user on none of its channels for want of an address, for a user
/// no identify has reached yet, waits two minutes after its trigger for one: the sign-up's
/// identify with the phone, applied just after the order (two workers, out of order), still
/// gets the order its SMS, as soon as that identify is applied. A user who never gives one,
/// or whose identify brings no phone, is skipped then; a user identified without a phone, or
/// opted out, is skipped at once; an old event (replayed late) is not waited for.
#[tokio::test]
async fn a_send_with_no_address_yet_waits_briefly_for_a_late_identify() {
    let journey = r#"
id: confirm
name: Confirm
transactional: true
trigger: {event: order_completed}
steps:
  - id: sms
    send: {sms: {body: "Thanks for order {{ event.order_id }}"}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"dan","traits":{"phone":"+15550100","subscriptions":{"sms":false}}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"fay","traits":{"email":"fay@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"fay","event":"order_completed","messageId":"o-fay","properties":{"order_id":"F1"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o-ann","properties":{"order_id":"A1"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"order_completed","messageId":"o-bob","properties":{"order_id":"B1"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"dan","event":"order_completed","messageId":"o-dan","properties":{"order_id":"D1"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"gil","event":"order_completed","messageId":"o-gil","properties":{"order_id":"G1"}}
{"at":"2026-12-01T10:00:40Z","type":"identify","userId":"ann","traits":{"phone":"+15550101"}}
{"at":"2026-12-01T10:01:00Z","type":"identify","userId":"gil","traits":{"email":"gil@example.com"}}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"eve","event":"order_completed","messageId":"o-eve","timestamp":"2026-12-01T08:00:00Z","properties":{"order_id":"E1"}}
"#;
    let out = sim(&[journey], script).await;
    // ann's phone arrives 40 seconds after her order: the SMS goes out then, not at the
    // grace's end.
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:40Z ann sms sms: Thanks for order A1"]
    );
    let why = |w: &What| matches!(w, What::Waiting { .. } | What::Skipped { .. });
    assert_eq!(
        facts(&out, "ann", |w| matches!(
            w,
            What::Waiting { .. } | What::Woke { .. } | What::Sent { .. }
        )),
        [
            "2026-12-01T10:00:00Z confirm/sms: waiting until 2026-12-01T10:02:00Z (waiting for an address)",
            "2026-12-01T10:00:40Z confirm/sms: woke (address arrived)",
            "2026-12-01T10:00:40Z confirm/sms: sent sms",
        ]
    );
    // gil's identify brings an email, which an SMS cannot use: she waits on.
    assert_eq!(
        facts(&out, "gil", why),
        [
            "2026-12-01T10:00:00Z confirm/sms: waiting until 2026-12-01T10:02:00Z (waiting for an address)",
            "2026-12-01T10:02:00Z confirm/sms: skipped sms: no_address",
        ]
    );
    assert_eq!(
        facts(&out, "bob", why),
        [
            "2026-12-01T10:00:00Z confirm/sms: waiting until 2026-12-01T10:02:00Z (waiting for an address)",
            "2026-12-01T10:02:00Z confirm/sms: skipped sms: no_address",
        ]
    );
    assert_eq!(
        facts(&out, "dan", why),
        ["2026-12-01T10:00:00Z confirm/sms: skipped sms: opted_out"]
    );
    assert_eq!(
        facts(&out, "eve", why),
        ["2026-12-01T10:05:00Z confirm/sms: skipped sms: no_address"]
    );
    assert_eq!(
        facts(&out, "fay", why),
        ["2026-12-01T10:00:00Z confirm/sms: skipped sms: no_address"]
    );
}

/// A send waiting for an address that an identify settles without one (she opted out of push
/// and gave no email) says so, not that an address arrived.
#[tokio::test]
async fn a_wait_for_an_address_settled_by_an_opt_out_says_so() {
    let journey = r#"
id: hello
name: Hello
trigger: {event: signed_up}
steps:
  - id: hi
    send:
      push: {title: "Hi", body: "."}
      fallback: {email: {subject: "Hi", text: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"hal","event":"signed_up","messageId":"s-hal"}
{"at":"2026-12-01T10:00:30Z","type":"identify","userId":"hal","traits":{"subscriptions":{"push":false}}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    assert_eq!(
        facts(&out, "hal", |w| matches!(
            w,
            What::Waiting { .. } | What::Woke { .. } | What::Skipped { .. }
        )),
        [
            "2026-12-01T10:00:00Z hello/hi: waiting until 2026-12-01T10:02:00Z (waiting for an address)",
            "2026-12-01T10:00:30Z hello/hi: woke (an identify came: no address to wait for)",
            "2026-12-01T10:00:30Z hello/hi: skipped push: opted_out",
        ]
    );
}

/// A schedule enters a user no identify has reached (only her events): no identify races a
/// schedule, so a send with no address is skipped at once, not held for one.
#[tokio::test]
async fn a_schedule_does_not_wait_for_an_address() {
    let journey = r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC}
reentry: never
steps:
  - id: mail
    send: {email: {subject: "Digest", text: "."}}
"#;
    let script = r#"{"at":"2026-12-01T08:00:00Z","type":"track","userId":"dan","event":"visited","messageId":"v-dan"}"#;
    let out = sim_with(
        &[journey],
        script,
        Config::default(),
        SignedDuration::from_hours(2),
    )
    .await;
    assert_eq!(
        facts(&out, "dan", |w| matches!(
            w,
            What::Waiting { .. } | What::Skipped { .. }
        )),
        ["2026-12-01T09:00:00Z digest/mail: skipped email: no_address"]
    );
}

#[tokio::test]
async fn update_sets_a_trait_that_a_later_branch_and_the_stored_profile_see() {
    let vip = r#"
id: vip
name: VIP
trigger: {event: order_completed}
steps:
  - id: mark
    update:
      set: {tier: gold}
  - id: route
    branch:
      cases:
        - when: "profile.tier == 'gold'"
          goto: welcome
      else: done
  - id: welcome
    send: {push: {title: "Welcome to {{ profile.tier }}", body: "."}}
  - id: done
    exit: true
"#;
    // A second journey reads the stored profile an hour later.
    let perks = r#"
id: perks
name: Perks
trigger:
  event: app_opened
  where: "profile.tier == 'gold'"
steps:
  - id: perk
    send: {push: {title: "A perk for you", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o-ann"}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"a-ann"}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"bob","event":"app_opened","messageId":"a-bob"}
"#;
    let out = sim(&[vip, perks], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push welcome: Welcome to gold",
            "2026-12-01T11:00:00Z ann push perk: A perk for you",
        ]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Updated { .. })),
        ["2026-12-01T10:00:00Z vip/mark: profile updated: set tier"]
    );
}

/// A `set` value written as a template takes the event's or the profile's data into the profile
/// (as text, or as a single expression's value); other values are set as written; one that cannot be rendered is left alone and
/// the timeline says why.
#[tokio::test]
async fn update_renders_a_set_value_written_as_a_template() {
    let journey = r#"
id: remember
name: Remember
trigger: {event: order_completed}
steps:
  - id: keep
    update:
      set:
        last_order: "{{ event.order_id }}"
        last_order_day: "{{ event.at | date }}"
        greeting: "Hi {{ profile.first_name | default('there') }}"
        orders_seen: 1
        note: "plain text"
        broken: "{{ event.at | date }}x{{ event.nope | date }}"
  - id: thanks
    send: {push: {title: "Order {{ profile.last_order }} of {{ profile.last_order_day }}", body: "{{ profile.greeting }}"}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o-1","properties":{"order_id":"A-17","at":"2026-12-01T10:00:00Z","nope":"soon"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"a-1"}
"#;
    // A later journey reads what the update stored.
    let later = r#"
id: later
name: Later
trigger: {event: app_opened}
steps:
  - id: show
    send: {push: {title: "{{ profile.last_order }}|{{ profile.greeting }}|{{ profile.orders_seen + 1 }}|{{ profile.note }}|{{ profile.broken }}", body: "."}}
"#;
    let out = sim(&[journey, later], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push thanks: Order A-17 of 2026-12-01",
            "2026-12-01T11:00:00Z ann push show: A-17|Hi Ann|2|plain text|",
        ]
    );
    let updated: Vec<&What> = support::entries(&out, "ann")
        .into_iter()
        .map(|e| &e.what)
        .filter(|w| matches!(w, What::Updated { .. }))
        .collect();
    let [What::Updated { set, failed, .. }] = updated.as_slice() else {
        panic!("one update: {updated:?}");
    };
    assert_eq!(
        set,
        &[
            "greeting",
            "last_order",
            "last_order_day",
            "note",
            "orders_seen"
        ]
    );
    assert_eq!(failed.keys().collect::<Vec<_>>(), ["broken"]);
    assert!(failed["broken"].contains("is not a time"), "{failed:?}");
}

/// A set value that is one `{{ expression }}` keeps its value's type: a total a branch compares
/// with a number, a counter that counts, a list; text stays text, and so does a value with
/// anything around its expression.
#[tokio::test]
async fn update_keeps_the_type_of_a_value_that_is_one_expression() {
    let journey = r##"
id: orders
name: Orders
trigger: {event: order_completed}
reentry: after_exit
steps:
  - id: keep
    update:
      set:
        last_total: "{{ event.total }}"
        orders: "{{ (profile.orders | default(0)) + 1 }}"
        skus: "{{- event.skus -}}"
        vip: "{{ event.total > 100 }}"
        code: "{{ event.code }}"
        label: "#{{ event.total }}"
        email: "{{ event.email }}"
        address: "{{ {'city': event.city} }}"
        braced: "{{ event.code }}}"
        coupon: "{{ event.coupon }}"
  - id: big_or_small
    branch:
      cases:
        - {when: "profile.last_total > 100 and profile.vip == true", goto: big}
      else: small
  - id: big
    send: {push: {title: "big {{ profile.orders }} {{ profile.skus | length }} {{ profile.code }}{{ profile.label }}", body: "."}}
    next: done
  - id: small
    send: {push: {title: "small {{ profile.orders }}", body: "."}}
  - id: done
    exit: true
"##;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o-1","properties":{"total":500,"skus":["a","b"],"code":"007","email":"ann@example.com","city":"Paris","coupon":"SAVE10"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o-2","properties":{"total":5,"skus":[],"code":"008","email":"ann@example.com"}}
"#;
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(journey).await;
    h.play(script).await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T10:00:00Z ann push big: big 1 2 007#500",
            "2026-12-01T11:00:00Z ann push small: small 2",
        ]
    );
    let view = h.rt.user("ann").await.expect("ann");
    let traits = &view.profile.expect("a profile").traits;
    assert_eq!(traits["last_total"], json!(5));
    assert_eq!(traits["orders"], json!(2));
    assert_eq!(traits["skus"], json!([]));
    assert_eq!(traits["vip"], json!(false));
    assert_eq!(traits["code"], json!("008"));
    assert_eq!(traits["label"], json!("#5"));
    assert_eq!(traits["email"], json!("ann@example.com"));
    // A map made in the expression (its braces close with `}}` too) is an object; a brace
    // after the expression makes text.
    assert_eq!(traits["address"], json!({"city": null}));
    assert_eq!(traits["braced"], json!("008}"));
    // A value the second order does not have leaves the first's, and the timeline says why.
    assert_eq!(traits["coupon"], json!("SAVE10"));
    let failed = left_alone(&view.timeline);
    assert_eq!(failed, ["coupon"]);
}

/// A property sent as `null` is a value the event does not have: through `upper`, `trim`,
/// `title`, `~` or `length` it prints as a missing one does (nothing, 0), not `None`, and
/// `default` stands in for it.
#[tokio::test]
async fn a_null_property_prints_as_a_missing_one_through_filters() {
    let journey = r#"
id: coupon
name: Coupon
trigger: {event: checkout_started}
reentry: after_exit
steps:
  - id: mail
    send:
      email:
        subject: "Your code: {{ event.coupon_code | upper }}"
        text: "Code {{ event.coupon_code | trim | default('WELCOME10', true) }} / Hi {{ event.first_name | title }} / {{ 'ref-' ~ event.ref }} / {{ event.coupon_code | lower }}{{ event.ref | capitalize }}{{ event.ref | replace('a', 'b') }}{{ event.ref | string }} / {{ event.items | length }}"
"#;
    let mut script = String::new();
    for (user, props) in [
        (
            "nulls",
            r#"{"coupon_code":null,"first_name":null,"ref":null,"items":null}"#,
        ),
        ("absent", "{}"),
    ] {
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"identify\",\"userId\":\"{user}\",\"traits\":{{\"email\":\"{user}@example.com\"}}}}\n{{\"at\":\"2026-12-01T10:01:00Z\",\"type\":\"track\",\"userId\":\"{user}\",\"event\":\"checkout_started\",\"properties\":{props}}}\n"
        ));
    }
    let out = sim(&[journey], &script).await;
    for user in ["nulls", "absent"] {
        let sent = messages_to(&out, user);
        assert_eq!(sent.len(), 1, "{user}: {:?}", entries(&out, user));
        let Content::Email { subject, text, .. } = &*sent[0].content else {
            panic!("{user}: an email: {:?}", sent[0].content);
        };
        assert_eq!(subject, "Your code: ", "{user}");
        assert_eq!(
            text.as_deref(),
            Some("Code WELCOME10 / Hi  / ref- /  / 0"),
            "{user}"
        );
    }
}

/// `set: {trait: null}` in an update removes the trait, as an identify's `null` does: the
/// templates and conditions after it, and a later journey reading the stored profile, see it
/// missing, and the timeline lists it as unset.
#[tokio::test]
async fn update_set_to_null_removes_the_trait_as_identify_does() {
    let journey = r#"
id: forget
name: Forget
trigger: {event: forget_nick}
steps:
  - id: clear
    update: {set: {nick: null, plan: "{{ event.plan }}"}}
  - id: tell
    send: {push: {title: "Hi {{ profile.nick | default('friend') }}{% if profile.nick is defined %} (kept){% endif %}", body: "{{ profile.plan }}"}}
"#;
    let later = r#"
id: later
name: Later
trigger:
  event: app_opened
  where: "not exists(profile.nick)"
steps:
  - id: show
    send: {push: {title: "Later {{ profile.nick | default('friend') }}|{{ profile.nick | upper }}|{{ profile.nick | length }}", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"nick":"annie","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"forget_nick","messageId":"f-1","properties":{"plan":"pro"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"a-1"}
"#;
    let out = sim(&[journey, later], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push tell: Hi friend",
            "2026-12-01T11:00:00Z ann push show: Later friend||0",
        ]
    );
    let updated: Vec<&What> = entries(&out, "ann")
        .into_iter()
        .map(|e| &e.what)
        .filter(|w| matches!(w, What::Updated { .. }))
        .collect();
    let [What::Updated { set, unset, failed }] = updated.as_slice() else {
        panic!("one update: {updated:?}");
    };
    assert_eq!(
        (set.as_slice(), unset.as_slice()),
        (&["plan".to_string()][..], &["nick".to_string()][..])
    );
    assert!(failed.is_empty(), "{failed:?}");
}

/// A rendered address or time zone is checked as an identify checks it: a bad one is left out
/// (the timeline's `updated` says why), so nothing goes to an address the API would refuse.
#[tokio::test]
async fn update_leaves_out_an_address_an_identify_would_refuse() {
    let journey = r#"
id: contact
name: Contact
trigger: {event: contact_changed}
steps:
  - id: keep
    update:
      set:
        email: "{{ event.mail }}"
        phone: "{{ event.phone }}"
        timezone: "{{ event.tz }}"
  - id: tell
    send: {email: {subject: "Updated", text: "."}, fallback: {sms: {body: "Updated"}}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","timezone":"Europe/Paris"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"first_name":"Bob"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"contact_changed","messageId":"c-1","properties":{"mail":"nope","phone":"+14155550123","tz":"Mars/Olympus"}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"bob","event":"contact_changed","messageId":"c-2","properties":{"mail":"bob@example.com","phone":"not a phone","tz":"Asia/Tokyo"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann email tell: Updated",
            "2026-12-01T11:00:00Z bob email tell: Updated",
        ]
    );
    for (user, address) in [("ann", "ann@example.com"), ("bob", "bob@example.com")] {
        let sent = messages_to(&out, user);
        assert_eq!(json!(sent[0].to), json!(address), "{user}");
    }
    for (user, bad) in [("ann", vec!["email", "timezone"]), ("bob", vec!["phone"])] {
        let updated: Vec<&What> = support::entries(&out, user)
            .into_iter()
            .map(|e| &e.what)
            .filter(|w| matches!(w, What::Updated { .. }))
            .collect();
        let [What::Updated { failed, .. }] = updated.as_slice() else {
            panic!("one update: {updated:?}");
        };
        assert_eq!(failed.keys().collect::<Vec<_>>(), bad, "{user}");
    }
}

/// A fixed address, zone or locale an identify would refuse, in a journey stored without the
/// check validation makes (published before it, or written by another path), is left out at
/// run time as a rendered one is: the profile keeps the old value, and the timeline's `updated`
/// says why in the same words. A fixed one written for people is kept as an identify keeps it.
#[tokio::test]
async fn update_leaves_out_a_fixed_address_zone_or_locale_stored_unchecked() {
    let fixed = r#"
id: fixed
name: Fixed
trigger: {event: moved}
steps:
  - id: keep
    update:
      set: {email: "new@example.com", phone: "+14155550199", timezone: "Asia/Tokyo", locale: "fr-FR", plan: "pro"}
"#;
    let rendered = r#"
id: rendered
name: Rendered
trigger: {event: moved_rendered}
steps:
  - id: keep
    update:
      set: {email: "{{ event.mail }}", phone: "{{ event.phone }}", timezone: "{{ event.tz }}", locale: "{{ event.locale }}", plan: "pro"}
"#;
    let look = r#"
id: look
name: Look
trigger: {event: look}
steps:
  - id: show
    send: {email: {subject: "{{ profile.email }}|{{ profile.phone }}|{{ profile.timezone }}|{{ profile.locale }}|{{ profile.plan }}", text: "."}}
"#;
    // As stored: the values validation (and the file's reading) would have refused or kept
    // otherwise, put in the model directly.
    let with_set = |text: &str, set: serde_json::Value| {
        let mut j = journey(text);
        let serde_json::Value::Object(set) = set else {
            panic!("an object: {set}");
        };
        j.steps[0]
            .update
            .as_mut()
            .expect("an update")
            .set
            .extend(set);
        j
    };
    let bad = json!({"email": "not-an-address", "phone": "call me", "timezone": "Mars/Olympus", "locale": "French"});
    let journeys = [
        with_set(fixed, bad.clone()),
        journey(rendered),
        with_set(
            &fixed
                .replace("id: fixed", "id: for_people")
                .replace("moved", "moved_spaced"),
            json!({"email": " new@example.com ", "phone": "+1 415 555-0199"}),
        ),
        journey(look),
    ];
    assert_eq!(
        journeys[0].steps[0]
            .update
            .as_ref()
            .map(|u| &u.set["timezone"]),
        Some(&json!("Mars/Olympus"))
    );
    let mut lines = Vec::new();
    for (user, event, properties) in [
        ("ann", "moved", json!({})),
        (
            "cat",
            "moved_rendered",
            json!({"mail": bad["email"], "phone": bad["phone"], "tz": bad["timezone"], "locale": bad["locale"]}),
        ),
        ("bob", "moved_spaced", json!({})),
    ] {
        lines.push(json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": user, "traits": {"email": format!("{user}@example.com"), "phone": "+14155550100", "timezone": "Europe/Paris", "locale": "en-GB"}}));
        lines.push(json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": user, "event": event, "messageId": format!("m-{user}"), "properties": properties}));
        lines.push(json!({"at": "2026-12-01T11:00:00Z", "type": "track", "userId": user, "event": "look", "messageId": format!("l-{user}")}));
    }
    let script = waymark::simulate::parse_script(&script_of(&lines)).expect("script");
    let out = waymark::simulate::run(&journeys, &script, Config::default(), HORIZON)
        .await
        .expect("runs");
    // The profile keeps the old values (the later journey reads them from the store).
    for (user, shown) in [
        ("ann", "ann@example.com|+14155550100|Europe/Paris|en-GB|pro"),
        ("cat", "cat@example.com|+14155550100|Europe/Paris|en-GB|pro"),
        ("bob", "new@example.com|+14155550199|Asia/Tokyo|fr-FR|pro"),
    ] {
        assert_eq!(
            outbox_of(&out, user),
            [format!("2026-12-01T11:00:00Z {user} email show: {shown}")]
        );
    }
    let updated = |user: &str| {
        let updated: Vec<(Vec<String>, BTreeMap<String, String>)> = entries(&out, user)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Updated { set, failed, .. } => Some((set.clone(), failed.clone())),
                _ => None,
            })
            .collect();
        let [one] = updated.as_slice() else {
            panic!("{user}: one update: {updated:?}");
        };
        one.clone()
    };
    let (set, failed) = updated("ann");
    assert_eq!(set, ["plan"]);
    assert_eq!(
        failed.keys().collect::<Vec<_>>(),
        ["email", "locale", "phone", "timezone"]
    );
    assert!(
        failed["timezone"].starts_with("must be an IANA time zone name"),
        "{failed:?}"
    );
    assert!(
        failed["locale"].contains("did you mean `fr`?"),
        "{failed:?}"
    );
    // In the words a rendered value's refusal uses.
    assert_eq!(updated("cat"), (set, failed));
    let (set, failed) = updated("bob");
    assert_eq!(set, ["email", "locale", "phone", "plan", "timezone"]);
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn exit_step_ends_the_journey_and_no_later_step_runs() {
    let journey = r#"
id: onboarding
name: Onboarding
trigger: {event: signed_up}
steps:
  - id: hello
    send: {push: {title: "Hello", body: "."}}
  - id: check
    branch:
      cases:
        - when: "profile.plan == 'pro'"
          goto: pro_tips
  - id: stop
    exit: true
  - id: pro_tips
    send: {push: {title: "Pro tips", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"plan":"free","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"plan":"pro","push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"signed_up","messageId":"s-bob"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push hello: Hello",
            "2026-12-01T10:00:00Z bob push hello: Hello",
            "2026-12-01T10:00:00Z bob push pro_tips: Pro tips",
        ]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Completed)),
        ["2026-12-01T10:00:00Z onboarding/stop: completed"]
    );
}

// ---------------------------------------------------------------------------------------------
// Entry rules
// ---------------------------------------------------------------------------------------------

/// `reentry: after` runs from the last entry's trigger to this one's, whole days as days in
/// the user's zone: a weekly schedule with `after: 7d` enters every week across a change of the
/// clocks (New York's on 2026-03-08 made the Monday after an hour shorter than a week), and a
/// trigger that arrives late is judged by when the user did it, not when it arrived.
#[tokio::test]
async fn reentry_after_days_counts_the_users_days_from_trigger_to_trigger() {
    let weekly = r#"
id: weekly
name: Weekly digest
trigger:
  schedule: {cron: "0 9 * * mon", timezone: user}
reentry: {after: 7d}
steps:
  - id: mail
    send: {email: {subject: "Your week", text: "hi"}}
"#;
    let script = r#"{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","timezone":"America/New_York"}}"#;
    let out = sim_with(
        &[weekly],
        script,
        Config::default(),
        SignedDuration::from_hours(20 * 24),
    )
    .await;
    // 09:00 in New York each Monday: 14:00 UTC before the change, 13:00 after.
    assert_eq!(
        facts(&out, "ann", entered),
        [
            "2026-03-02T14:00:00Z weekly/-: entered v1 on schedule",
            "2026-03-09T13:00:00Z weekly/-: entered v1 on schedule",
            "2026-03-16T13:00:00Z weekly/-: entered v1 on schedule",
        ]
    );
    assert_eq!(refusals(entries(&out, "ann")), Vec::<String>::new());
    // The same in the schedule's own zone, for a user who names none (whose own days are UTC's).
    let fixed = weekly.replace("timezone: user", "timezone: America/New_York");
    let script = r#"{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@example.com"}}"#;
    let out = sim_with(
        &[&fixed],
        script,
        Config::default(),
        SignedDuration::from_hours(20 * 24),
    )
    .await;
    assert_eq!(
        facts(&out, "bob", entered),
        [
            "2026-03-02T14:00:00Z weekly/-: entered v1 on schedule",
            "2026-03-09T13:00:00Z weekly/-: entered v1 on schedule",
            "2026-03-16T13:00:00Z weekly/-: entered v1 on schedule",
        ]
    );

    let promo = r#"
id: promo
name: Promo
trigger: {event: visited}
reentry: {after: 1d}
steps:
  - id: offer
    send: {push: {title: "Offer", body: "."}}
"#;
    // v-2 happened at 09:00 on the 1st, an hour before v-1, and arrived the next day at 11:00,
    // a day and an hour after v-1: a day from trigger to trigger had not passed.
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-1"}
{"at":"2026-12-02T11:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-2","timestamp":"2026-12-01T09:00:00Z"}
{"at":"2026-12-02T12:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-3"}
"#;
    let out = sim(&[promo], script).await;
    assert_eq!(
        facts(&out, "ann", entered),
        [
            "2026-12-01T10:00:00Z promo/-: entered v1 on visited",
            "2026-12-02T12:00:00Z promo/-: entered v1 on visited",
        ]
    );
    assert_eq!(
        refusals(entries(&out, "ann")),
        ["2026-12-02T11:00:00Z promo [promo:ann:1] on visited: reentry: `reentry: after 1d`: may enter again from 2026-12-02T10:00:00Z; judged at the trigger's time, 2026-12-01T09:00:00Z"]
    );
}

/// `reentry: {after: 24h}` is 24 hours, also across the night the clocks go back, where
/// `after: 1d` is the next day at the same local time (25 hours then); `48h` is 48 hours. The
/// refusal says the length as written.
#[tokio::test]
async fn reentry_after_hours_is_elapsed_time_and_after_days_calendar_days() {
    let journey = |id: &str, after: &str| {
        format!(
            r#"
id: {id}
name: R
trigger: {{event: go_{id}}}
reentry: {{after: {after}}}
timezone: Europe/Berlin
steps:
  - id: s
    send: {{in_app: {{title: "r", body: "x"}}}}
"#
        )
    };
    let (days, hours, two_days) = (
        journey("days", "1d"),
        journey("hours", "24h"),
        journey("two", "48h"),
    );
    // Berlin's clocks go back in the night of 25 October 2026.
    let script = r#"
{"at":"2026-10-01T00:00:00Z","type":"identify","userId":"u","traits":{"timezone":"Europe/Berlin"}}
{"at":"2026-10-24T10:00:00Z","type":"track","userId":"u","event":"go_days","messageId":"d1"}
{"at":"2026-10-24T10:00:00Z","type":"track","userId":"u","event":"go_hours","messageId":"h1"}
{"at":"2026-10-24T10:00:00Z","type":"track","userId":"u","event":"go_two","messageId":"t1"}
{"at":"2026-10-25T09:59:59Z","type":"track","userId":"u","event":"go_hours","messageId":"h2"}
{"at":"2026-10-25T10:00:00Z","type":"track","userId":"u","event":"go_hours","messageId":"h3"}
{"at":"2026-10-25T10:30:00Z","type":"track","userId":"u","event":"go_days","messageId":"d2"}
{"at":"2026-10-25T11:00:00Z","type":"track","userId":"u","event":"go_days","messageId":"d3"}
{"at":"2026-10-26T10:00:00Z","type":"track","userId":"u","event":"go_two","messageId":"t2"}
"#;
    let out = sim(&[&days, &hours, &two_days], script).await;
    assert_eq!(
        facts(&out, "u", entered)[3..],
        [
            "2026-10-25T10:00:00Z hours/-: entered v1 on go_hours",
            "2026-10-25T11:00:00Z days/-: entered v1 on go_days",
            "2026-10-26T10:00:00Z two/-: entered v1 on go_two",
        ]
    );
    assert_eq!(
        refusals(entries(&out, "u")),
        [
            "2026-10-25T09:59:59Z hours [hours:u:1] on go_hours: reentry: `reentry: after 24h`: may enter again from 2026-10-25T10:00:00Z",
            "2026-10-25T10:30:00Z days [days:u:1] on go_days: reentry: `reentry: after 1d`: may enter again from 2026-10-25T11:00:00Z",
        ]
    );
}

/// One order converts one enrollment: a re-entry's trigger stamped before an order, applied
/// after the order converted the enrollment before it (that one's window open still), does
/// not convert the new enrollment on the same order too. (Before, the new one found the order
/// in her history and converted as well: one order, two conversions in the stats.)
#[tokio::test]
async fn an_order_that_converted_the_enrollment_before_does_not_convert_a_late_reentry() {
    let journey = r#"
id: g
name: G
trigger: {event: cart}
reentry: after_exit
goal: {event: order, within: 7d}
steps:
  - id: s
    send: {email: {subject: "x", text: "x"}}
"#;
    let script = r#"
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"cy","traits":{"email":"cy@x.com"}}
{"at":"2026-05-01T10:00:00Z","userId":"cy","event":"cart","messageId":"c-cy-1"}
{"at":"2026-05-02T10:21:00Z","userId":"cy","event":"order","messageId":"o-cy","timestamp":"2026-05-02T10:20:00Z"}
{"at":"2026-05-02T10:25:00Z","userId":"cy","event":"cart","messageId":"c-cy-2","timestamp":"2026-05-02T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    let conversions: Vec<String> = entries(&out, "cy")
        .into_iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    assert_eq!(conversions, ["g:cy:1"]);
    let entered: Vec<String> = entries(&out, "cy")
        .into_iter()
        .filter(|e| matches!(e.what, What::Entered { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    assert_eq!(entered, ["g:cy:1", "g:cy:2"]);

    // A second order after the re-entry's trigger converts it: the first one's conversion is
    // not the only goal looked at. (Before, the first order after the trigger was the one
    // looked at, and it was the enrollment before's: none converted the re-entry.)
    let script = r#"
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"cy","traits":{"email":"cy@x.com"}}
{"at":"2026-05-01T10:00:00Z","userId":"cy","event":"cart","messageId":"c-cy-1"}
{"at":"2026-05-02T10:21:00Z","userId":"cy","event":"order","messageId":"o-cy","timestamp":"2026-05-02T10:20:00Z"}
{"at":"2026-05-02T10:23:00Z","userId":"cy","event":"order","messageId":"o-cy-2","timestamp":"2026-05-02T10:22:00Z"}
{"at":"2026-05-02T10:25:00Z","userId":"cy","event":"cart","messageId":"c-cy-2","timestamp":"2026-05-02T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    // (Each written when it was found: the first at its order, the second at the late cart.)
    let conversions: Vec<(String, jiff::Timestamp)> = entries(&out, "cy")
        .into_iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| (e.enrollment.to_string(), e.at))
        .collect();
    assert_eq!(
        conversions,
        [
            ("g:cy:1".to_string(), at("2026-05-02T10:21:00Z")),
            ("g:cy:2".to_string(), at("2026-05-02T10:25:00Z"))
        ]
    );
}

/// As for an order, so for a goal on a trait's change: the change that converted the
/// enrollment before is skipped, and the next one, after the late re-entry's trigger, converts
/// it. (Before, the first change after its trigger was the only one looked at.)
#[tokio::test]
async fn a_trait_change_after_the_one_the_enrollment_before_converted_on_converts_a_late_reentry() {
    let journey = r#"
id: g
name: G
trigger: {event: cart}
reentry: after_exit
goal: {trait_changed: tier, within: 7d}
steps:
  - id: s
    send: {email: {subject: "x", text: "x"}}
"#;
    let script = r#"
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"cy","traits":{"email":"cy@x.com","tier":"a"}}
{"at":"2026-05-01T10:00:00Z","userId":"cy","event":"cart","messageId":"c-cy-1"}
{"at":"2026-05-02T10:21:00Z","type":"identify","userId":"cy","messageId":"i-cy-1","timestamp":"2026-05-02T10:20:00Z","traits":{"tier":"b"}}
{"at":"2026-05-02T10:23:00Z","type":"identify","userId":"cy","messageId":"i-cy-2","timestamp":"2026-05-02T10:22:00Z","traits":{"tier":"c"}}
{"at":"2026-05-02T10:25:00Z","userId":"cy","event":"cart","messageId":"c-cy-2","timestamp":"2026-05-02T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    let conversions: Vec<String> = entries(&out, "cy")
        .into_iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    assert_eq!(conversions, ["g:cy:1", "g:cy:2"]);
}

/// A goal event that happened in an enrollment's window but arrives after the user entered
/// again (an order placed offline) converts that enrollment, credited to its last message and
/// counted for its split path, once however often it is delivered.
#[tokio::test]
async fn a_late_goal_converts_the_enrollment_before_a_reentry() {
    let journey = r#"
id: g
name: G
trigger: {event: cart}
reentry: after_exit
goal: {event: order, within: 7d}
steps:
  - id: ab
    split:
      paths:
        - {name: a, weight: 50, goto: s}
        - {name: b, weight: 50, goto: s}
  - id: s
    send: {email: {subject: "x", text: "x"}}
"#;
    // bee's order of 05-02 10:00 reaches the engine after her second cart (05-02 12:00);
    // cy's, the same order, before any second cart.
    let script = r#"
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"bee","traits":{"email":"bee@x.com"}}
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"cy","traits":{"email":"cy@x.com"}}
{"at":"2026-05-01T10:00:00Z","userId":"bee","event":"cart","messageId":"c-bee-1"}
{"at":"2026-05-01T10:00:00Z","userId":"cy","event":"cart","messageId":"c-cy-1"}
{"at":"2026-05-02T12:00:00Z","userId":"bee","event":"cart","messageId":"c-bee-2"}
{"at":"2026-05-03T10:00:00Z","userId":"bee","event":"order","messageId":"o-bee","timestamp":"2026-05-02T10:00:00Z"}
{"at":"2026-05-03T10:01:00Z","userId":"bee","event":"order","messageId":"o-bee","timestamp":"2026-05-02T10:00:00Z"}
{"at":"2026-05-03T10:02:00Z","userId":"bee","event":"order","messageId":"o-bee-again","timestamp":"2026-05-02T11:00:00Z"}
{"at":"2026-05-03T10:00:00Z","userId":"cy","event":"order","messageId":"o-cy","timestamp":"2026-05-02T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    let converted = |w: &What| matches!(w, What::Converted { .. });
    let conversions = |user: &str| -> Vec<(String, String)> {
        entries(&out, user)
            .into_iter()
            .filter(|e| converted(&e.what))
            .map(|e| {
                let what = waymark::runtime::describe(&e.what);
                (e.enrollment.to_string(), what)
            })
            .collect()
    };
    let path = |user: &str| {
        let b = waymark::engine::bucket(user, "g", "ab");
        if b < 5_000 {
            "a"
        } else {
            "b"
        }
    };
    assert_eq!(
        conversions("bee"),
        [(
            "g:bee:1".to_string(),
            format!(
                "converted on order (at 2026-05-02T10:00:00Z), credited to s (ab: {})",
                path("bee")
            )
        )]
    );
    assert_eq!(
        conversions("cy"),
        [(
            "g:cy:1".to_string(),
            format!(
                "converted on order (at 2026-05-02T10:00:00Z), credited to s (ab: {})",
                path("cy")
            )
        )]
    );
}

/// The enrollment before a re-entry converts on its own version's goal, though the version
/// published since names another goal event (the late `order` is v1's goal, not v2's).
#[tokio::test]
async fn a_late_goal_converts_on_the_earlier_enrollments_own_version() {
    let v1 = r#"
id: g
name: G
trigger: {event: cart}
reentry: after_exit
goal: {event: order, within: 7d}
steps:
  - id: s
    send: {email: {subject: "x", text: "x"}}
"#;
    let h = Harness::new("2026-05-01T00:00:00Z");
    h.publish(v1).await;
    h.play(
        r#"
{"at":"2026-05-01T00:00:00Z","type":"identify","userId":"bee","traits":{"email":"bee@x.com"}}
{"at":"2026-05-01T10:00:00Z","userId":"bee","event":"cart","messageId":"c-1"}
"#,
    )
    .await;
    h.publish(&v1.replace("event: order", "event: purchase"))
        .await;
    h.play(
        r#"
{"at":"2026-05-02T12:00:00Z","userId":"bee","event":"cart","messageId":"c-2"}
{"at":"2026-05-03T10:00:00Z","userId":"bee","event":"order","messageId":"o-1","timestamp":"2026-05-02T10:00:00Z"}
{"at":"2026-05-03T10:01:00Z","userId":"bee","event":"order","messageId":"o-2","timestamp":"2026-05-02T11:00:00Z"}
"#,
    )
    .await;
    h.advance_to(at("2026-05-04T00:00:00Z")).await;
    let view = h.rt.user("bee").await.expect("bee");
    let converted: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| format!("{} {}", e.enrollment, describe(&e.what)))
        .collect();
    assert_eq!(
        converted,
        ["g:bee:1 converted on order (at 2026-05-02T10:00:00Z), credited to s"]
    );
}

#[tokio::test]
async fn reentry_rules_and_at_most_one_active_enrollment() {
    let journey = r#"
id: promo
name: Promo
trigger: {event: visited}
reentry: REENTRY
steps:
  - id: wait_20m
    wait: 20m
  - id: offer
    send: {push: {title: "Offer", body: "."}}
"#;
    // The 10:10 visit comes while ann is enrolled (waiting): it never enrolls her again.
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-1"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-2"}
{"at":"2026-12-02T10:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-3"}
{"at":"2026-12-04T10:00:00Z","type":"track","userId":"ann","event":"visited","messageId":"v-4"}
"#;
    // The 10:10 visit, in every case: ann's first enrollment is waiting.
    let enrolled = "2026-12-01T10:10:00Z promo [promo:ann:1] on visited: enrolled: in the journey since 2026-12-01T10:00:00Z (on version 1, at step `wait_20m`): one enrollment a user at a time";
    let cases = [
        // (reentry, the visits that enroll ann, the visits refused and why)
        (
            "never",
            vec!["2026-12-01T10:00:00Z"],
            vec![
                enrolled,
                "2026-12-02T10:00:00Z promo [promo:ann:1] on visited: reentry: `reentry: never`, and the user entered on 2026-12-01T10:00:00Z",
                "2026-12-04T10:00:00Z promo [promo:ann:1] on visited: reentry: `reentry: never`, and the user entered on 2026-12-01T10:00:00Z",
            ],
        ),
        (
            "after_exit",
            vec![
                "2026-12-01T10:00:00Z",
                "2026-12-02T10:00:00Z",
                "2026-12-04T10:00:00Z",
            ],
            vec![enrolled],
        ),
        // Two days after the last entry: not on the 2nd (one day), again on the 4th (three).
        (
            "{after: 2d}",
            vec!["2026-12-01T10:00:00Z", "2026-12-04T10:00:00Z"],
            vec![
                enrolled,
                "2026-12-02T10:00:00Z promo [promo:ann:1] on visited: reentry: `reentry: after 2d`: may enter again from 2026-12-03T10:00:00Z",
            ],
        ),
    ];
    for (reentry, visits, refused) in cases {
        let out = sim(&[&journey.replace("REENTRY", reentry)], script).await;
        let offers: Vec<String> = visits
            .iter()
            .map(|t| {
                let sent_at = at(t) + SignedDuration::from_mins(20);
                format!("{sent_at} ann push offer: Offer")
            })
            .collect();
        assert_eq!(outbox(&out), offers, "reentry {reentry}");
        let entries: Vec<String> = visits
            .iter()
            .map(|t| format!("{t} promo/-: entered v1 on visited"))
            .collect();
        assert_eq!(facts(&out, "ann", entered), entries, "reentry {reentry}");
        assert_eq!(
            refusals(support::entries(&out, "ann")),
            refused,
            "reentry {reentry}"
        );
    }
}

/// An event that is both the trigger and an exit (each order restarts the follow-up): it ends
/// the enrollment it finds and, as `reentry` allows, starts the next one, for that order.
#[tokio::test]
async fn an_event_that_exits_the_journey_can_enter_it_again_as_reentry_allows() {
    let journey = r#"
id: review
name: Review
trigger: {event: order_completed}
reentry: REENTRY
exit_when:
  - event: order_completed
steps:
  - id: wait_1d
    wait: 1d
  - id: ask
    send: {push: {title: "How was order {{ event.order_id }}?", body: "."}}
"#;
    let order = |at: &str, id: &str| {
        json!({"at": at, "type": "track", "userId": "ann", "event": "order_completed",
            "messageId": id, "properties": {"order_id": id}})
        .to_string()
    };
    let script = [
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#.to_string(),
        order("2026-12-01T10:00:00Z", "A"),
        order("2026-12-01T15:00:00Z", "B"),
    ]
    .join("\n");

    let out = sim(&[&journey.replace("REENTRY", "after_exit")], &script).await;
    assert_eq!(
        outbox(&out),
        vec!["2026-12-02T15:00:00Z ann push ask: How was order B?"]
    );
    assert_eq!(
        facts(&out, "ann", |w| entered(w)
            || matches!(w, What::Exited { .. })),
        vec![
            "2026-12-01T10:00:00Z review/-: entered v1 on order_completed",
            "2026-12-01T15:00:00Z review/wait_1d: exited on order_completed",
            "2026-12-01T15:00:00Z review/-: entered v1 on order_completed",
        ]
    );
    assert_eq!(
        refusals(support::entries(&out, "ann")),
        Vec::<String>::new()
    );

    // `reentry: never`: B ends the first and says why it starts no second.
    let out = sim(&[&journey.replace("REENTRY", "never")], &script).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    assert_eq!(
        refusals(support::entries(&out, "ann")),
        vec!["2026-12-01T15:00:00Z review [review:ann:1] on order_completed: reentry: `reentry: never`, and the user entered on 2026-12-01T10:00:00Z"]
    );
}

// ---------------------------------------------------------------------------------------------
// Exits and goals
// ---------------------------------------------------------------------------------------------

const CART: &str = r#"
id: cart
name: Cart
trigger: {event: cart_abandoned}
reentry: after_exit
exit_when:
  - event: order_completed
goal:
  event: order_completed
  within: 7d
steps:
  - id: wait_30m
    wait: 30m
  - id: push_reminder
    send: {push: {title: "Still thinking?", body: "."}}
  - id: wait_4h
    wait: 4h
  - id: low_stock_email
    send: {email: {subject: "Almost gone", text: "."}}
"#;

fn shopper(user: &str) -> String {
    json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": user, "traits": {
        "email": format!("{user}@example.com"),
        "push_tokens": [{"platform": "fcm", "token": format!("t-{user}")}],
    }})
    .to_string()
}

fn track(at: &str, user: &str, event: &str, id: &str) -> String {
    json!({"at": at, "type": "track", "userId": user, "event": event, "messageId": id}).to_string()
}

#[tokio::test]
async fn exit_when_ends_the_journey_at_once_from_any_step_and_cancels_the_pending_wait() {
    let cases = [
        // (user, ordered at, messages, exit facts)
        (
            "ann",
            None,
            vec![
                "2026-12-01T10:30:00Z ann push push_reminder: Still thinking?",
                "2026-12-01T14:30:00Z ann email low_stock_email: Almost gone",
            ],
            vec![],
        ),
        (
            "bob",
            Some("2026-12-01T10:10:00Z"),
            vec![],
            vec![
                "2026-12-01T10:10:00Z cart/wait_30m: woke (exited)",
                "2026-12-01T10:10:00Z cart/wait_30m: exited on order_completed",
            ],
        ),
        (
            "cat",
            Some("2026-12-01T11:00:00Z"),
            vec!["2026-12-01T10:30:00Z cat push push_reminder: Still thinking?"],
            vec![
                "2026-12-01T11:00:00Z cart/wait_4h: woke (exited)",
                "2026-12-01T11:00:00Z cart/wait_4h: exited on order_completed",
            ],
        ),
    ];
    let mut script = Vec::new();
    for (user, ordered, ..) in &cases {
        script.push(shopper(user));
        script.push(track(
            "2026-12-01T10:00:00Z",
            user,
            "cart_abandoned",
            &format!("c-{user}"),
        ));
        if let Some(t) = ordered {
            script.push(track(t, user, "order_completed", &format!("o-{user}")));
        }
    }
    let out = sim(&[CART], &script.join("\n")).await;
    for (user, _, messages, exits) in cases {
        assert_eq!(outbox_of(&out, user), messages, "{user}");
        let exit = |w: &What| {
            matches!(w, What::Exited { .. }) || matches!(w, What::Woke { how } if how == "exited")
        };
        assert_eq!(facts(&out, user, exit), exits, "{user}");
    }
}

/// A goal event that happened after the trigger but arrived before it (events out of order)
/// converts the enrollment when the trigger arrives; the messages still go out. One from before
/// the trigger does not.
#[tokio::test]
async fn a_goal_that_arrives_before_its_trigger_still_converts() {
    let journey = r#"
id: g
name: G
trigger: {event: cart}
goal: {event: conv, within: 1d}
steps:
  - id: hi
    send: {push: {title: "Hi", body: "."}}
"#;
    // Each user her own device (a device is the user's who registered it last).
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"late","traits":{"push_tokens":[{"platform":"fcm","token":"t-late"}]}}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"late","event":"conv","messageId":"c1"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"late","event":"cart","messageId":"k1","timestamp":"2026-12-01T10:00:00Z"}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"early","traits":{"push_tokens":[{"platform":"fcm","token":"t-early"}]}}
{"at":"2026-12-01T09:55:00Z","type":"track","userId":"early","event":"conv","messageId":"c2"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"early","event":"cart","messageId":"k2","timestamp":"2026-12-01T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    let converted = |w: &What| matches!(w, What::Converted { .. });
    assert_eq!(
        facts(&out, "late", converted),
        ["2026-12-01T10:10:00Z g/hi: converted on conv (at 2026-12-01T10:05:00Z; credited to no message: none went out before it)"]
    );
    assert_eq!(facts(&out, "early", converted), Vec::<String>::new());
    assert_eq!(
        outbox_of(&out, "late"),
        ["2026-12-01T10:10:00Z late push hi: Hi"]
    );
}

/// A goal event stamped before the journey's push but processed after it (a client's batch sent
/// late) converts the enrollment credited to no message: its `converted` entry, after the push
/// in the timeline, says when the goal happened (`goal_at`) and why no message is credited, and
/// the stats count it as any conversion. (Before, it said "converted on order_completed" at the
/// time it was processed, after the push: it read as a conversion the push should have had.)
#[tokio::test]
async fn a_goal_processed_after_a_message_it_happened_before_says_when_it_happened() {
    let journey = r#"
id: cart
name: Cart
trigger: {event: cart_abandoned}
goal: {event: order_completed, within: 1d}
steps:
  - id: wait
    wait: 3m
  - id: push
    send: {push: {title: "Still there?", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-07T18:00:00Z","type":"identify","userId":"dan","traits":{"push_tokens":[{"platform":"fcm","token":"t-dan"}]}}
{"at":"2026-12-07T18:16:00Z","type":"track","userId":"dan","event":"cart_abandoned","messageId":"k1"}
{"at":"2026-12-07T18:22:12Z","type":"track","userId":"dan","event":"order_completed","messageId":"o1","timestamp":"2026-12-07T18:16:31Z"}
"#;
    let out = sim(&[journey], script).await;
    let told = |w: &What| matches!(w, What::Sent { .. } | What::Converted { .. });
    assert_eq!(
        facts(&out, "dan", told),
        [
            "2026-12-07T18:19:00Z cart/push: sent push",
            "2026-12-07T18:22:12Z cart/push: converted on order_completed (at 2026-12-07T18:16:31Z; credited to no message: none went out before it)",
        ]
    );
    let entries: Vec<timeline::Entry> = entries(&out, "dan").into_iter().cloned().collect();
    let converted = entries
        .iter()
        .find(|e| matches!(e.what, What::Converted { .. }))
        .expect("a conversion");
    let json = serde_json::to_value(converted).expect("json");
    assert_eq!(json["goal_at"], "2026-12-07T18:16:31Z", "{json}");
    assert!(json.get("last_message").is_none(), "{json}");
    // Counted as before, through the stats fold's fast path as through the entries.
    let counted = timeline::counters(&entries);
    assert_eq!(counted["cart"].get("converted"), Some(&1));
    assert_eq!(
        timeline::counters_of_json(&serde_json::to_vec(&entries).expect("json")),
        Ok(counted)
    );
    // A goal processed when it happened says no time; one credited says it.
    let now = |last_message: Option<&str>, goal_at: Option<&str>| {
        describe(&What::Converted {
            event: "order_completed".into(),
            splits: vec![],
            last_message: last_message.map(String::from),
            goal_at: goal_at.map(|t| t.parse().expect("timestamp")),
        })
    };
    assert_eq!(
        now(None, None),
        "converted on order_completed (credited to no message: none went out before it)"
    );
    assert_eq!(
        now(Some("push"), Some("2026-12-07T18:20:00Z")),
        "converted on order_completed (at 2026-12-07T18:20:00Z), credited to push"
    );
}

/// A split reached by a trigger the engine takes late is chosen at the trigger's time, the
/// journey's own: a goal that happened after the trigger but arrived before it credits the path
/// she took. (Before, the choice was stamped when the engine got to it, 10:10, after the 10:05
/// goal, so the conversion counted for the journey and for no path.)
#[tokio::test]
async fn a_goal_that_arrives_before_its_trigger_credits_the_path_of_a_split() {
    let journey = r#"
id: g
name: G
trigger: {event: cart}
goal: {event: conv, within: 1d}
steps:
  - id: pick
    split: {paths: [{name: a, weight: 1, goto: hi}]}
  - id: hi
    send: {push: {title: "Hi", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"late","traits":{"push_tokens":[{"platform":"fcm","token":"t-late"}]}}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"late","event":"conv","messageId":"c1"}
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"late","event":"cart","messageId":"k1","timestamp":"2026-12-01T10:00:00Z"}
"#;
    let out = sim(&[journey], script).await;
    let splits: Vec<Vec<(String, Option<String>)>> = entries(&out, "late")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Converted { splits, .. } => Some(
                splits
                    .iter()
                    .map(|c| (c.step.clone(), c.path.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(splits, [[("pick".to_string(), Some("a".to_string()))]]);
}

/// An order at the very instant of the cart ends the journey and converts it whichever of the
/// two the engine gets first (SQS keeps no order), with or without a `where`; a goal that is the
/// trigger's own event is not met by the trigger itself.
#[tokio::test]
async fn an_exit_and_goal_at_the_triggers_instant_count_in_either_order() {
    let plain = r#"
id: cart
name: Cart
trigger: {event: cart}
exit_when: [{event: order}]
goal: {event: order, within: 7d}
steps:
  - id: wait
    wait: 30m
  - id: nudge
    send: {push: {title: "Nudge", body: "."}}
"#;
    let with_where = r#"
id: cartw
name: Cart where
trigger: {event: cart}
exit_when: [{event: order, where: "event.total > 0"}]
goal: {event: order, where: "event.total > 0", within: 7d}
steps:
  - id: wait
    wait: 30m
  - id: nudge
    send: {push: {title: "Nudge", body: "."}}
"#;
    let again = r#"
id: again
name: Buy again
trigger: {event: order}
goal: {event: order, within: 30d}
steps:
  - id: thanks
    send: {push: {title: "Thanks", body: "."}}
"#;
    // Each user her own device (a device is the user's who registered it last).
    let mut script = String::new();
    for (user, first, second) in [("x", "cart", "order"), ("y", "order", "cart")] {
        script.push_str(&format!(
            r#"{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"{user}","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-{user}"}}]}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"{first}","messageId":"{user}1","properties":{{"total":5}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"{second}","messageId":"{user}2","properties":{{"total":5}}}}
"#
        ));
    }
    let out = sim(&[plain, with_where, again], &script).await;
    for user in ["x", "y"] {
        for journey in ["cart", "cartw"] {
            let facts_of = |w: &What| matches!(w, What::Converted { .. } | What::Exited { .. });
            let got: Vec<String> = facts(&out, user, facts_of)
                .into_iter()
                .filter(|f| f.contains(&format!(" {journey}/")))
                .collect();
            assert_eq!(got.len(), 2, "{user} in {journey}: {got:?}");
        }
        assert_eq!(
            outbox_of(&out, user),
            [format!("2026-12-01T10:00:00Z {user} push thanks: Thanks")],
            "{user}: no nudge for a cart ordered at once"
        );
        let converted_again = facts(&out, user, |w| matches!(w, What::Converted { .. }))
            .into_iter()
            .filter(|f| f.contains(" again/"))
            .count();
        assert_eq!(converted_again, 0, "{user}: an order is not its own goal");
    }
}

#[tokio::test]
async fn goal_counts_a_conversion_within_its_window_even_after_the_journey_completed() {
    let journey = r#"
id: goal
name: Goal
trigger: {event: cart_abandoned}
goal:
  event: order_completed
  within: 7d
steps:
  - id: wait_1h
    wait: 1h
  - id: offer
    send: {push: {title: "Offer", body: "."}}
"#;
    let cases = [
        // (user, ordered at, conversion facts)
        (
            "ann",
            "2026-12-01T10:30:00Z",
            vec!["2026-12-01T10:30:00Z goal/wait_1h: converted on order_completed (credited to no message: none went out before it)"],
        ), // still enrolled
        (
            "bob",
            "2026-12-03T10:00:00Z",
            vec![
                "2026-12-03T10:00:00Z goal/offer: converted on order_completed, credited to offer",
            ],
        ), // completed, in window, after the offer went out
        ("cat", "2026-12-09T10:00:00Z", vec![]), // after the 7-day window
    ];
    let mut script = Vec::new();
    for (user, ordered, _) in &cases {
        script.push(shopper(user));
        script.push(track(
            "2026-12-01T10:00:00Z",
            user,
            "cart_abandoned",
            &format!("c-{user}"),
        ));
        script.push(track(
            ordered,
            user,
            "order_completed",
            &format!("o-{user}"),
        ));
    }
    let out = sim(&[journey], &script.join("\n")).await;
    for (user, _, converted) in cases {
        assert_eq!(
            facts(&out, user, |w| matches!(w, What::Converted { .. })),
            converted,
            "{user}"
        );
        // A goal is not an exit: everyone still gets the offer.
        assert_eq!(
            outbox_of(&out, user),
            [format!("2026-12-01T11:00:00Z {user} push offer: Offer")]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Quiet hours and frequency caps
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn quiet_hours_defer_a_late_send_to_the_morning_unless_transactional() {
    let journey = r#"
id: late
name: Late
trigger: {event: signed_up}
transactional: TRANSACTIONAL
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: wait_30m
    wait: 30m
  - id: hello
    send: {push: {title: "Hello", body: "."}}
"#;
    // Paris is UTC+1 in December: signed up at 22:30 local, the send falls at 23:00 local.
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"Europe/Paris","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T21:30:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
"#;
    let cases = [
        ("false", "2026-12-02T07:00:00Z"), // 08:00 local
        ("true", "2026-12-01T22:00:00Z"),  // 23:00 local, as scheduled
    ];
    for (transactional, expected) in cases {
        let out = sim(&[&journey.replace("TRANSACTIONAL", transactional)], script).await;
        assert_eq!(
            outbox(&out),
            [format!("{expected} ann push hello: Hello")],
            "transactional {transactional}"
        );
    }
    let out = sim(&[&journey.replace("TRANSACTIONAL", "false")], script).await;
    assert_eq!(
        facts(
            &out,
            "ann",
            |w| matches!(w, What::Waiting { why, .. } if why == "quiet hours")
        ),
        ["2026-12-01T22:00:00Z late/hello: waiting until 2026-12-02T07:00:00Z (quiet hours)"]
    );
}

/// `send_within` judges the channel that would go out: a push that falls back to an in-app
/// message for a user with no device goes out now (quiet hours leave in-app messages alone),
/// and one that reaches her on no channel is skipped for that, not for the night. Only what
/// quiet hours would hold past it is skipped as `quiet_hours`.
#[tokio::test]
async fn send_within_judges_the_channel_that_would_go_out() {
    let journey = r#"
id: class
name: Class
trigger: {event: class_booked}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: remind
    send:
      push: {title: "Class in 15 minutes", body: "."}
      fallback:
        in_app: {title: "Class in 15 minutes", body: "."}
      send_within: 15m
  - id: alarm
    send:
      push: {title: "Alarm", body: "."}
      send_within: 15m
"#;
    // All in Berlin (UTC+1), booked at 06:45 local: ida has no device, pat has one.
    let script = r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ida","traits":{"timezone":"Europe/Berlin"}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"pat","traits":{"timezone":"Europe/Berlin","push_tokens":[{"platform":"fcm","token":"t-pat"}]}}
{"at":"2026-12-03T05:45:00Z","userId":"ida","event":"class_booked"}
{"at":"2026-12-03T05:45:00Z","userId":"pat","event":"class_booked"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox_of(&out, "ida"),
        ["2026-12-03T05:45:00Z ida in_app remind: Class in 15 minutes"]
    );
    assert_eq!(outbox_of(&out, "pat"), Vec::<String>::new());
    let skips = |user: &str| -> Vec<String> {
        entries(&out, user)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Skipped {
                    channel, reason, ..
                } => Some(format!(
                    "{} {channel}: {reason}",
                    e.step.as_deref().unwrap_or("-")
                )),
                _ => None,
            })
            .collect()
    };
    assert_eq!(skips("ida"), ["alarm push: no_address"]);
    assert_eq!(
        skips("pat"),
        ["remind push: quiet_hours", "alarm push: quiet_hours"]
    );
}

/// A send with `send_within` that quiet hours would hold longer is skipped when it is due
/// (`quiet_hours`, saying when it was due and until when it was held): a "starts in 15 minutes"
/// push does not go out after the class began. It takes no frequency cap place, the journey
/// goes on, and the stats count it as a skip. One held less long still waits for their end.
#[tokio::test]
async fn a_send_quiet_hours_would_hold_past_its_send_within_is_skipped() {
    let h = Harness::with_config("2026-12-01T08:00:00Z", {
        let mut config = Config::default();
        config.caps.insert(
            Channel::Push,
            Cap {
                max: 1,
                per: "1d".parse().expect("duration"),
            },
        );
        config
    });
    h.publish(
        r#"
id: class
name: Class
trigger: {event: class_booked}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: until
    wait_until: {date: event.starts_at, before: 15m, if_past: exit}
  - id: remind
    send:
      push: {title: "{{ event.class_name }} starts in 15 minutes", body: "."}
      send_within: 15m
  - id: later
    wait: 3h
  - id: recording
    send: {push: {title: "The recording of {{ event.class_name }}", body: "."}}
"#,
    )
    .await;
    // Both in Berlin (UTC+1): yu's class at 07:00, its reminder due at 06:45, 1h15m before the
    // night ends; zoe's at 08:05, due at 07:50, 10 minutes before.
    h.play(
        r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"yu","traits":{"timezone":"Europe/Berlin","push_tokens":[{"platform":"fcm","token":"t-yu"}]}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"zoe","traits":{"timezone":"Europe/Berlin","push_tokens":[{"platform":"fcm","token":"t-zoe"}]}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"yu","event":"class_booked","properties":{"class_name":"Yoga","starts_at":"2026-12-03T07:00:00+01:00"},"messageId":"b-yu"}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"zoe","event":"class_booked","properties":{"class_name":"Pilates","starts_at":"2026-12-03T08:05:00+01:00"},"messageId":"b-zoe"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-04T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            // zoe's reminder at the night's end (08:00 local); her recording, the same day, is
            // capped: the reminder took the day's place.
            "2026-12-03T07:00:00Z zoe push remind: Pilates starts in 15 minutes",
            // yu's reminder took none: her recording goes out.
            "2026-12-03T08:45:00Z yu push recording: The recording of Yoga",
        ]
    );
    let yu = h.rt.user("yu").await.expect("user").timeline;
    let got: Vec<String> = yu
        .iter()
        .filter(|e| matches!(e.what, What::Skipped { .. } | What::Sent { .. }))
        .map(|e| {
            let detail = match &e.what {
                What::Skipped {
                    detail: Some(d), ..
                } => format!(" ({d})"),
                _ => String::new(),
            };
            let step = e.step.as_deref().unwrap_or("-");
            format!("{} {step}: {}{detail}", e.at, describe(&e.what))
        })
        .collect();
    assert_eq!(
        got,
        [
            "2026-12-03T05:45:00Z remind: skipped push: quiet_hours (due at 06:45 local time (2026-12-03T05:45:00Z); quiet hours 21:00–08:00 would hold it until 08:00 (2026-12-03T07:00:00Z), 1h15m later, more than its `send_within: 15m`)",
            "2026-12-03T08:45:00Z recording: sent push",
        ]
    );
    let zoe = h.rt.user("zoe").await.expect("user").timeline;
    let got: Vec<String> = zoe
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, .. } => {
                Some(format!("{} {reason}", e.step.as_deref().unwrap_or("-")))
            }
            What::Waiting { why, .. } if why == "quiet hours" => {
                Some(format!("{} held", e.step.as_deref().unwrap_or("-")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, ["remind held", "recording capped"]);
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("class").await.expect("stats");
    assert_eq!(stats.get("step.remind.entered"), Some(&2), "{stats:?}");
    assert_eq!(
        stats.get("step.remind.skipped.quiet_hours"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.get("step.remind.sent.push"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("step.recording.sent.push"), Some(&1), "{stats:?}");
}

/// A send that reaches the user on neither its channel nor its fallback says both reasons.
#[tokio::test]
async fn a_skip_names_the_fallbacks_reason_too() {
    let journey = r#"
id: promo
name: Promo
trigger: {event: go}
steps:
  - id: offer
    send: {sms: {body: "Offer"}, fallback: {email: {subject: "Offer", text: "."}}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"phone":"+14155550123","email":"u@example.com","subscriptions":{"sms":false,"email":false}}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"u","event":"go","messageId":"g1"}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"v","traits":{"subscriptions":{"sms":false}}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"v","event":"go","messageId":"g2"}
"#;
    let out = sim(&[journey], script).await;
    let skip = |user: &str| -> Vec<(String, Option<String>)> {
        entries(&out, user)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Skipped { reason, detail, .. } => Some((reason.clone(), detail.clone())),
                _ => None,
            })
            .collect()
    };
    // Each with its own detail: since when an opt-out holds.
    let since = "since 2026-12-01T09:00:00Z";
    assert_eq!(
        skip("u"),
        [(
            "opted_out".to_string(),
            Some(format!(
                "`subscriptions.sms` is false, {since}; fallback email: opted_out (`subscriptions.email` is false, {since})"
            ))
        )]
    );
    assert_eq!(
        skip("v"),
        [(
            "opted_out".to_string(),
            Some("`subscriptions.sms` is false, since 2026-12-01T10:00:00Z; fallback email: no_address (no `email` trait: an identify sets it)".to_string())
        )]
    );
}

/// A send deferred by quiet hours reads, when it goes out, right after its own wake-up: before
/// the steps the same transition goes on to.
#[tokio::test]
async fn a_deferred_sends_outcome_follows_its_wake_up_in_the_timeline() {
    let journey = r#"
id: q
name: Q
trigger: {event: go}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: p1
    send: {push: {title: Hi, body: "."}}
  - id: w
    wait: 1h
  - id: p2
    send: {push: {title: Again, body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T07:00:00Z","type":"identify","userId":"a","traits":{"push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-12-01T07:30:00Z","type":"track","userId":"a","event":"go","messageId":"g1"}
"#;
    let out = sim(&[journey], script).await;
    let morning: Vec<String> = entries(&out, "a")
        .into_iter()
        .filter(|e| {
            e.at == "2026-12-01T08:00:00Z"
                .parse::<jiff::Timestamp>()
                .expect("time")
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.step.as_deref().unwrap_or("-"),
                describe(&e.what)
            )
        })
        .collect();
    assert_eq!(
        morning,
        [
            "p1: woke (quiet hours over)",
            "p1: sent push",
            "w: step",
            "w: waiting until 2026-12-01T09:00:00Z (wait 1h)",
        ]
    );
}

/// A send deferred by quiet hours, or held for an address that then arrives, is one user
/// entering its step once: the stats' `step.<id>.entered` is a funnel, not a count of tries.
#[tokio::test]
async fn a_step_taken_again_after_a_deferral_is_entered_once() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(
        r#"
id: late
name: Late
trigger: {event: signed_up}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: hello
    send: {push: {title: "Hello", body: "."}}
"#,
    )
    .await;
    // ann signs up at 22:30 Paris (deferred to 08:00); bob at 11:00 UTC (sent at once); cat
    // has no device when she signs up and gets one a minute later (held, then sent).
    h.play(
        r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"Europe/Paris","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"bob","event":"signed_up","messageId":"s-bob"}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"cat","event":"signed_up","messageId":"s-cat"}
{"at":"2026-12-01T12:01:00Z","type":"identify","userId":"cat","traits":{"push_tokens":[{"platform":"fcm","token":"t-cat"}]}}
{"at":"2026-12-01T21:30:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-02T12:00:00Z")).await;
    for user in ["ann", "bob", "cat"] {
        let timeline = h.rt.user(user).await.expect("user").timeline;
        let steps: Vec<_> = timeline
            .iter()
            .filter(|e| matches!(e.what, What::Step))
            .collect();
        assert_eq!(steps.len(), 1, "{user}: {timeline:?}");
        assert!(
            timeline.iter().any(|e| matches!(e.what, What::Sent { .. })),
            "{user}: {timeline:?}"
        );
    }
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("late").await.expect("stats");
    assert_eq!(stats.get("step.hello.entered"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("step.hello.sent.push"), Some(&3), "{stats:?}");
    assert_eq!(
        stats.get("step.hello.waiting").copied().unwrap_or(0),
        0,
        "{stats:?}"
    );
}

/// A send in the user's language: the locale itself, else its language, else the send as
/// written; a device's locale counts as the profile's. A date's names are in the text's
/// language: a variant's in hers, the text as written's in English.
#[tokio::test]
async fn a_send_goes_out_in_the_users_language() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send:
      push: {title: "Welcome, {{ profile.first_name }} ({{ now | date('%B') }})", body: "."}
      locales:
        fr: {push: {title: "Bienvenue, {{ profile.first_name }} ({{ now | date('%B') }})", body: "."}}
        pt-br: {push: {title: "Bem-vindo, {{ profile.first_name }} ({{ now | date('%B') }})", body: "."}}
        pt: {push: {title: "Bem-vindo (pt), {{ profile.first_name }} ({{ now | date('%B') }})", body: "."}}
"#;
    let mut script = Vec::new();
    for (user, traits, context) in [
        ("ann", json!({"locale": "fr-CA"}), json!({})),
        ("bob", json!({"locale": "pt_BR"}), json!({})),
        ("cat", json!({"locale": "pt-PT"}), json!({})),
        ("dan", json!({"locale": "de-DE"}), json!({})),
        ("eve", json!({}), json!({"locale": "fr-FR"})),
        ("fay", json!({}), json!({})),
    ] {
        let mut traits = traits;
        traits["first_name"] = json!(user);
        traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("t-{user}")}]);
        script.push(
            json!({"at": "2026-12-01T10:00:00Z", "type": "identify", "userId": user,
                           "traits": traits, "context": context}),
        );
        script.push(
            json!({"at": "2026-12-01T10:01:00Z", "type": "track", "userId": user,
                           "event": "signed_up", "messageId": format!("s-{user}")}),
        );
    }
    let script = script_of(&script);
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:01:00Z ann push hello: Bienvenue, ann (décembre)",
            "2026-12-01T10:01:00Z bob push hello: Bem-vindo, bob (dezembro)",
            "2026-12-01T10:01:00Z cat push hello: Bem-vindo (pt), cat (dezembro)",
            // No German variant: the English text's month is English, not `Dezember`.
            "2026-12-01T10:01:00Z dan push hello: Welcome, dan (December)",
            "2026-12-01T10:01:00Z eve push hello: Bienvenue, eve (décembre)",
            "2026-12-01T10:01:00Z fay push hello: Welcome, fay (December)",
        ]
    );
    // Why each got the language it did: the timeline and the message name the variant.
    for (user, locale) in [
        ("ann", Some("fr")),
        ("bob", Some("pt-br")),
        ("cat", Some("pt")),
        ("dan", None),
        ("eve", Some("fr")),
        ("fay", None),
    ] {
        let sent: Vec<String> = entries(&out, user)
            .iter()
            .map(|e| describe(&e.what))
            .filter(|d| d.starts_with("sent"))
            .collect();
        let said = match locale {
            Some(l) => format!("sent push (in {l})"),
            None => "sent push".to_string(),
        };
        assert_eq!(sent, [said], "{user}");
        let lines = messages_to(&out, user);
        assert_eq!(lines.len(), 1, "{user}");
        assert_eq!(lines[0].locale.as_deref(), locale, "{user}");
    }
}

/// A translation that names no fallback of its own falls back as the send does: a French user
/// with no device gets the send's fallback email (as written, in no locale), as an English user
/// does; a translation with its own fallback uses that one, in its language.
#[tokio::test]
async fn a_translation_without_a_fallback_falls_back_as_the_send_does() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send:
      push: {title: "Welcome", body: "."}
      fallback: {email: {subject: "Welcome by email", text: "."}}
      locales:
        fr: {push: {title: "Bienvenue", body: "."}}
        es:
          push: {title: "Bienvenido", body: "."}
          fallback: {email: {subject: "Bienvenido por email", text: "."}}
"#;
    let mut script = Vec::new();
    for (user, locale) in [("ann", "fr-CA"), ("bob", "en-US"), ("cat", "es")] {
        script.push(
            json!({"at": "2026-12-01T10:00:00Z", "type": "identify", "userId": user,
                           "traits": {"locale": locale, "email": format!("{user}@x.com")}}),
        );
        script.push(
            json!({"at": "2026-12-01T10:01:00Z", "type": "track", "userId": user,
                           "event": "signed_up", "messageId": format!("s-{user}")}),
        );
    }
    let out = sim(&[journey], &script_of(&script)).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:01:00Z ann email hello: Welcome by email",
            "2026-12-01T10:01:00Z bob email hello: Welcome by email",
            "2026-12-01T10:01:00Z cat email hello: Bienvenido por email",
        ]
    );
    for (user, locale) in [("ann", None), ("bob", None), ("cat", Some("es"))] {
        let lines = messages_to(&out, user);
        assert_eq!(lines.len(), 1, "{user}");
        assert_eq!(lines[0].locale.as_deref(), locale, "{user}");
    }
}

/// An app that never sends `timezone` as a trait still gets its users' quiet hours right:
/// Segment's mobile libraries put the device's zone in every call's `context.timezone`.
#[tokio::test]
async fn quiet_hours_follow_the_devices_zone_unless_the_app_named_one() {
    let journey = r#"
id: late
name: Late
trigger: {event: signed_up}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: hello
    send: {push: {title: "Hello", body: "."}}
"#;
    // All sign up at 03:30 UTC: 22:30 the evening before in New York (quiet), 12:30 in Tokyo.
    // ann's device is in New York; bob named Tokyo himself, his device says New York; cat's
    // device sends a zone that is not one (UTC, 03:30: quiet until 08:00 UTC).
    let script = r#"
{"at":"2026-12-01T03:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"apns","token":"t-ann"}]},"context":{"timezone":"America/New_York"}}
{"at":"2026-12-01T03:30:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann","context":{"timezone":"America/New_York"}}
{"at":"2026-12-01T03:00:00Z","type":"identify","userId":"bob","traits":{"timezone":"Asia/Tokyo","push_tokens":[{"platform":"apns","token":"t-bob"}]},"context":{"timezone":"America/New_York"}}
{"at":"2026-12-01T03:30:00Z","type":"track","userId":"bob","event":"signed_up","messageId":"s-bob","context":{"timezone":"America/New_York"}}
{"at":"2026-12-01T03:00:00Z","type":"identify","userId":"cat","traits":{"push_tokens":[{"platform":"apns","token":"t-cat"}]},"context":{"timezone":"GMT+2 Summer"}}
{"at":"2026-12-01T03:30:00Z","type":"track","userId":"cat","event":"signed_up","messageId":"s-cat"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T03:30:00Z bob push hello: Hello",
            "2026-12-01T08:00:00Z cat push hello: Hello",
            "2026-12-01T13:00:00Z ann push hello: Hello",
        ]
    );
}

/// A device's zone that is no zone is not taken as hers, and her timeline says so: her quiet
/// hours stay on the zone she had (here none: UTC), and what she was sent then has its reason.
#[tokio::test]
async fn a_devices_zone_that_is_no_zone_is_kept_in_her_timeline_as_not_kept() {
    let journey = r#"
id: late
name: Late
trigger: {event: signed_up}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: hello
    send: {push: {title: "Hello", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T03:00:00Z","type":"identify","userId":"cat","traits":{"push_tokens":[{"platform":"apns","token":"t-cat"}]}}
{"at":"2026-12-01T03:30:00Z","type":"track","userId":"cat","event":"signed_up","messageId":"s-cat","context":{"timezone":"Mars/Olympus"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox(&out), ["2026-12-01T08:00:00Z cat push hello: Hello"]);
    let said = facts(&out, "cat", |w| matches!(w, What::NotKept { .. }));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("2026-12-01T03:30:00Z /-: not kept: context.timezone = ")
            && said[0].contains("must be an IANA time zone name")
            && said[0].ends_with("not taken as the user's)"),
        "{said:?}"
    );
}

#[tokio::test]
async fn frequency_cap_across_journeys_skips_the_second_push_and_says_so() {
    let welcome = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send: {push: {title: "Welcome", body: "."}}
"#;
    let tips = r#"
id: tips
name: Tips
trigger: {event: signed_up}
steps:
  - id: wait_1h
    wait: 1h
  - id: tip
    send: {push: {title: "A tip", body: "."}}
  - id: wait_1d
    wait: 1d
  - id: another_tip
    send: {push: {title: "Another tip", body: "."}}
"#;
    let mut config = Config::default();
    config.caps.insert(
        Channel::Push,
        Cap {
            max: 1,
            per: "1d".parse().expect("duration"),
        },
    );
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
"#;
    let out = sim_with(&[welcome, tips], script, config, HORIZON).await;
    // The day after, the cap has room again.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ann push hello: Welcome",
            "2026-12-02T11:00:00Z ann push another_tip: Another tip",
        ]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Skipped { .. })),
        ["2026-12-01T11:00:00Z tips/tip: skipped push: capped"]
    );
    // and it says which send took the place
    assert_eq!(
        details(&out, "ann"),
        ["at most 1 push per 1d: taken by welcome/hello at 2026-12-01T10:00:00Z; a place frees at 2026-12-02T00:00:00Z"]
    );
}

/// Quiet hours are the user's local night: a send they deferred follows her to another zone,
/// going out at once where it is day (Los Angeles) or at the end of the night there (Tokyo).
#[tokio::test]
async fn a_send_deferred_by_quiet_hours_follows_the_user_to_another_zone() {
    let journey = r#"
id: q
name: Q
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: t}
steps:
  - id: s
    send: {push: {title: "p", body: "."}}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cat","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-cat"}]}}
{"at":"2026-12-01T22:00:00Z","userId":"ann","event":"t","messageId":"t-ann"}
{"at":"2026-12-01T22:00:00Z","userId":"bob","event":"t","messageId":"t-bob"}
{"at":"2026-12-01T22:00:00Z","userId":"cat","event":"t","messageId":"t-cat"}
{"at":"2026-12-01T22:10:00Z","type":"identify","userId":"ann","traits":{"timezone":"America/Los_Angeles"}}
{"at":"2026-12-01T22:10:00Z","type":"identify","userId":"bob","traits":{"timezone":"Asia/Tokyo"}}
{"at":"2026-12-01T22:10:00Z","type":"identify","userId":"cat","traits":{"first_name":"Cat"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            // 14:10 in Los Angeles
            "2026-12-01T22:10:00Z ann push s: p",
            // 08:00 in Tokyo
            "2026-12-01T23:00:00Z bob push s: p",
            // cat stayed: 08:00 UTC
            "2026-12-02T08:00:00Z cat push s: p",
        ]
    );
    assert_eq!(
        facts(&out, "bob", |w| matches!(
            w,
            What::Waiting { .. } | What::Woke { .. }
        )),
        [
            "2026-12-01T22:00:00Z q/s: waiting until 2026-12-02T08:00:00Z (quiet hours)",
            "2026-12-01T22:10:00Z q/s: woke (the user's time zone changed)",
            "2026-12-01T22:10:00Z q/s: waiting until 2026-12-01T23:00:00Z (quiet hours)",
            "2026-12-01T23:00:00Z q/s: woke (quiet hours over)",
        ]
    );
}

/// A held send judged again after the user moved to another zone is measured from when it was
/// due, not from the move: Ann's nudge, due at 22:00 UTC with `send_within: 12h`, is held to
/// 08:00 (10h); at 02:00 she is in New York, where the night ends at 13:00 UTC, 15h after it
/// was due, so it is skipped then, not sent 11h after the move. Bob, who stays, gets his at 08:00.
/// The skip says when the send was due in UTC and the hour of the judgement in her new zone,
/// 21:00, inside the night (it said "due at 17:00 local time", New York's hour of 22:00 UTC,
/// outside the 21:00–08:00 it said held it).
#[tokio::test]
async fn send_within_after_a_move_during_the_hold_counts_from_when_the_send_was_due() {
    let journey = r#"
id: q
name: Q
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: t}
steps:
  - id: s
    send: {push: {title: "p", body: "."}, send_within: 12h}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-bob"}]}}
{"at":"2026-12-01T22:00:00Z","userId":"ann","event":"t","messageId":"t-ann"}
{"at":"2026-12-01T22:00:00Z","userId":"bob","event":"t","messageId":"t-bob"}
{"at":"2026-12-02T02:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"America/New_York"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox(&out), ["2026-12-02T08:00:00Z bob push s: p"]);
    let skipped: Vec<String> = entries(&out, "ann")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Skipped {
                detail: Some(d), ..
            } => Some(format!("{} {d}", e.at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        ["2026-12-02T02:00:00Z due at 2026-12-01T22:00:00Z; judged again while held at 2026-12-02T02:00:00Z, 21:00 in her zone then (America/New_York): inside quiet hours 21:00–08:00, which hold it until 08:00 there (2026-12-02T13:00:00Z), 15h after it was due, more than its `send_within: 12h`"]
    );
}

/// After a held send judged again is skipped, the next send is due when the user reaches it,
/// not when the skipped one was: Ann's first nudge, due at 22:00 UTC, is skipped when she moves
/// to New York at 02:00 (15h later than it was due, past its 12h); her second, reached then,
/// would be held 11h, to 08:00 there (13:00 UTC), within its own 12h: it goes out then.
#[tokio::test]
async fn a_send_after_a_held_one_skipped_is_judged_from_when_it_is_due() {
    let journey = r#"
id: q
name: Q
quiet_hours: {start: "21:00", end: "08:00"}
trigger: {event: t}
steps:
  - id: s
    send: {push: {title: "p", body: "."}, send_within: 12h}
  - id: again
    send: {push: {title: "second", body: "."}, send_within: 12h}
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"UTC","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T22:00:00Z","userId":"ann","event":"t","messageId":"t-ann"}
{"at":"2026-12-02T02:00:00Z","type":"identify","userId":"ann","traits":{"timezone":"America/New_York"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-02T13:00:00Z ann push again: second"]
    );
}

/// In the hour the clocks go back, a time of day that comes again later that hour is twenty
/// minutes away, not a day: a New York user at 01:10 EST (the second 01:00–02:00) waiting until
/// 01:30, and quiet hours ending at 01:30.
#[tokio::test]
async fn a_wait_in_the_repeated_hour_ends_at_its_second_pass() {
    let wait = r#"
id: w
name: W
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "01:30"}
  - id: s
    send: {email: {subject: "s", text: "x"}}
"#;
    let quiet = r#"
id: q
name: Q
trigger: {event: t}
quiet_hours: {start: "23:00", end: "01:30"}
steps:
  - id: s
    send: {push: {title: "p", body: "."}}
"#;
    let script = r#"{"at":"2026-10-01T00:00:00Z","type":"identify","userId":"ny","traits":{"email":"a@x.com","timezone":"America/New_York","push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-11-01T06:10:00Z","userId":"ny","event":"t"}
"#;
    let out = sim(&[wait, quiet], script).await;
    assert_eq!(
        outbox_of(&out, "ny"),
        [
            "2026-11-01T06:30:00Z ny push s: p",
            "2026-11-01T06:30:00Z ny email s: s"
        ]
    );
}

/// A wait for a time that the night the clocks go back has had already (reached at 01:45 EDT,
/// after the first 01:30) waits for the next day's, and an identify in the repeated hour that
/// does not change her zone leaves it there: her zone is the same, so is her wait. (Before, the
/// identify at 01:10 EST found the wait "moved", the next 01:30 being twenty minutes away
/// then, said her time zone changed, and sent the email that night.)
#[tokio::test]
async fn an_identify_in_the_repeated_hour_leaves_a_wait_for_tomorrow_alone() {
    let wait = r#"
id: w
name: W
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "01:30"}
  - id: s
    send: {email: {subject: "s", text: "x"}}
"#;
    let script = r#"{"at":"2026-10-01T00:00:00Z","type":"identify","userId":"ny","traits":{"email":"a@x.com","timezone":"America/New_York"}}
{"at":"2026-11-01T05:45:00Z","userId":"ny","event":"t"}
{"at":"2026-11-01T06:10:00Z","type":"identify","userId":"ny","traits":{"first_name":"A"}}
"#;
    let out = sim(&[wait], script).await;
    assert_eq!(
        outbox_of(&out, "ny"),
        ["2026-11-02T06:30:00Z ny email s: s"]
    );
    let woke = facts(&out, "ny", |w| matches!(w, What::Woke { .. }));
    assert_eq!(
        woke,
        ["2026-11-02T06:30:00Z w/until: woke (time)"],
        "{woke:?}"
    );
}

/// A send held by quiet hours that begin in the hour the clocks go back (01:15–07:00 in London:
/// held at 01:20 BST until 07:00) stays held when an identify that does not change her zone
/// comes in the repeated hour, before the wall clock is back at 01:15 (01:05 GMT): her zone did
/// not change, nor does the night's end. (Before, the identify found her outside quiet hours at
/// 01:05 GMT, said her time zone changed, and sent the push then, in the middle of the night.)
#[tokio::test]
async fn an_identify_in_the_repeated_hour_leaves_a_send_held_for_quiet_hours_alone() {
    let quiet = r#"
id: q
name: Q
trigger: {event: t}
quiet_hours: {start: "01:15", end: "07:00"}
steps:
  - id: s
    send: {push: {title: "p", body: "."}}
"#;
    let script = r#"{"at":"2026-10-01T00:00:00Z","type":"identify","userId":"lo","traits":{"timezone":"Europe/London","push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-10-25T00:20:00Z","userId":"lo","event":"t"}
{"at":"2026-10-25T01:05:00Z","type":"identify","userId":"lo","traits":{"first_name":"A"}}
"#;
    let out = sim(&[quiet], script).await;
    assert_eq!(outbox_of(&out, "lo"), ["2026-10-25T07:00:00Z lo push s: p"]);
    let woke = facts(&out, "lo", |w| matches!(w, What::Woke { .. }));
    assert_eq!(
        woke,
        ["2026-10-25T07:00:00Z q/s: woke (quiet hours over)"],
        "{woke:?}"
    );
}

/// On the night the clocks go forward, a time of day the clocks skip is the first instant after
/// the gap, not as far past it as the gap is long: a Paris user waiting until 02:30 (alone, and
/// on the day of a date), for a local date and time of 02:30 that night or a day after 02:30
/// the night before, and quiet hours ending at 02:30, all go on at 03:00 CEST.
#[tokio::test]
async fn a_time_the_clocks_skip_is_the_first_instant_after_the_gap() {
    let wait = r#"
id: w
name: W
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "02:30"}
  - id: s
    send: {email: {subject: "s", text: "x"}}
"#;
    let on_date = r#"
id: d
name: D
trigger: {event: t}
steps:
  - id: until
    wait_until: {date: event.day, time: "02:30"}
  - id: s
    send: {sms: {body: "d"}}
"#;
    let quiet = r#"
id: q
name: Q
trigger: {event: t}
quiet_hours: {start: "22:00", end: "02:30"}
steps:
  - id: s
    send: {push: {title: "p", body: "."}}
"#;
    // A local date and time in the gap, and a day's shift that lands in it, alike.
    let local = r#"
id: l
name: L
trigger: {event: t}
steps:
  - id: until
    wait_until: {date: event.local}
  - id: local
    send: {email: {subject: "l", text: "x"}}
"#;
    let shifted = r#"
id: a
name: A
trigger: {event: t}
steps:
  - id: until
    wait_until: {date: event.before, after: 1d}
  - id: after
    send: {email: {subject: "a", text: "x"}}
"#;
    let script = r#"{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"pa","traits":{"email":"a@x.com","phone":"+33612345678","timezone":"Europe/Paris","push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-03-28T22:00:00Z","userId":"pa","event":"t","properties":{"day":"2026-03-29","local":"2026-03-29T02:30:00","before":"2026-03-28T02:30:00+01:00"}}
"#;
    let out = sim(&[wait, on_date, quiet, local, shifted], script).await;
    let mut sent = outbox_of(&out, "pa");
    sent.sort();
    assert_eq!(
        sent,
        [
            "2026-03-29T01:00:00Z pa email after: a",
            "2026-03-29T01:00:00Z pa email local: l",
            "2026-03-29T01:00:00Z pa email s: s",
            "2026-03-29T01:00:00Z pa push s: p",
            "2026-03-29T01:00:00Z pa sms s: d",
        ]
    );
}

/// A day the clocks skip whole (Samoa moved across the date line: in Apia, Thursday 29 December
/// 2011 23:59:59 -10:00 was followed by Saturday 31 December 00:00:00 +14:00) has no 09:00: a
/// daily wait for it goes on at 09:00 on the Saturday, once (not at the midnight after the gap
/// too, a second send that day), a Friday wait at 09:00 on the next Friday there is (not on
/// Saturday's midnight), and a date that names the skipped day, with a `time`, or as a local
/// date and time, is that time on the Saturday: all forms agree.
#[tokio::test]
async fn a_day_the_clocks_skip_whole_has_its_time_on_the_next_day_that_has_it() {
    let daily = r#"
id: daily
name: Daily
trigger: {event: go}
steps:
  - id: w
    wait_until: {time: "09:00"}
  - id: s
    send: {email: {subject: "daily", text: "x"}}
  - id: b
    branch: {cases: [{when: "exists(profile.timezone)", goto: w}], else: e}
  - id: e
    exit: true
"#;
    let friday = r#"
id: fri
name: Fri
trigger: {event: go}
steps:
  - id: w
    wait_until: {time: "09:00", weekdays: [fri]}
  - id: s
    send: {email: {subject: "friday", text: "x"}}
"#;
    let on_date = r#"
id: d
name: D
trigger: {event: go}
steps:
  - id: w
    wait_until: {date: event.day, time: "09:00"}
  - id: s
    send: {email: {subject: "on the day", text: "x"}}
"#;
    let local = r#"
id: l
name: L
trigger: {event: go}
steps:
  - id: w
    wait_until: {date: event.local}
  - id: s
    send: {email: {subject: "local", text: "x"}}
"#;
    let script = r#"{"at":"2011-12-27T00:00:00Z","type":"identify","userId":"ap","traits":{"email":"a@x.com","timezone":"Pacific/Apia"}}
{"at":"2011-12-29T12:00:00Z","userId":"ap","event":"go","properties":{"day":"2011-12-30","local":"2011-12-30T09:00:00"}}
"#;
    let out = sim_with(
        &[daily, friday, on_date, local],
        script,
        Config::default(),
        SignedDuration::from_hours(8 * 24),
    )
    .await;
    let sent = outbox_of(&out, "ap");
    let daily: Vec<_> = sent
        .iter()
        .filter(|l| l.ends_with(": daily"))
        .take(3)
        .collect();
    assert_eq!(
        daily,
        [
            // Thursday 09:00 -10:00, Saturday 09:00 +14:00, Sunday 09:00 +14:00.
            "2011-12-29T19:00:00Z ap email s: daily",
            "2011-12-30T19:00:00Z ap email s: daily",
            "2011-12-31T19:00:00Z ap email s: daily",
        ],
        "{sent:#?}"
    );
    let mut others: Vec<_> = sent.iter().filter(|l| !l.ends_with(": daily")).collect();
    others.sort();
    assert_eq!(
        others,
        [
            "2011-12-30T19:00:00Z ap email s: local",
            "2011-12-30T19:00:00Z ap email s: on the day",
            // Friday 6 January 2012, 09:00 +14:00.
            "2012-01-05T19:00:00Z ap email s: friday",
        ],
        "{sent:#?}"
    );
}

/// A schedule run comes once the events of its instant are in: the script's first minute has
/// its run then (the Tokyo user's 09:00), not a minute late, and a user an identify made at the
/// very minute of the run (09:00:00 in UTC) is entered by it; the minute before the script has
/// none.
#[tokio::test]
async fn a_schedule_run_sees_the_events_of_its_own_minute() {
    let digest = r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: user}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "digest", text: "{{ now }}"}}
"#;
    let script = r#"{"at":"2026-03-02T00:00:00Z","type":"identify","userId":"tokyo","traits":{"email":"t@x.com","timezone":"Asia/Tokyo"}}
{"at":"2026-03-02T09:00:00Z","type":"identify","userId":"utc","traits":{"email":"u@x.com","timezone":"UTC"}}
"#;
    // A schedule for the minute before the script begins has no run.
    let before = r#"
id: before
name: Before
trigger:
  schedule: {cron: "59 23 * * *", timezone: UTC}
reentry: after_exit
steps:
  - id: s
    send: {email: {subject: "before", text: "x"}}
"#;
    let out = sim_with(
        &[digest, before],
        script,
        Config::default(),
        SignedDuration::from_hours(1),
    )
    .await;
    assert_eq!(
        outbox_of(&out, "tokyo"),
        ["2026-03-02T00:00:00Z tokyo email s: digest"]
    );
    assert_eq!(
        outbox_of(&out, "utc"),
        ["2026-03-02T09:00:00Z utc email s: digest"]
    );
}

/// An exit that happened after the trigger but arrived before it ends the enrollment at once;
/// the message its first step would have sent is not sent, and the timeline says so, as a skip
/// with its reason, counted in the stats.
#[tokio::test]
async fn a_message_an_early_exit_keeps_from_going_out_is_a_skip() {
    let journey = r#"
id: l
name: L
trigger: {event: go}
exit_when: [{event: stop}]
steps:
  - id: m
    send: {email: {subject: "e", text: "x"}}
  - id: wf
    wait_for: {event: reply, timeout: 1h}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"m1","traits":{"email":"m1@x.com"}}
{"at":"2026-12-01T10:20:00Z","userId":"m1","event":"stop","timestamp":"2026-12-01T10:10:00Z","messageId":"a"}
{"at":"2026-12-01T10:30:00Z","userId":"m1","event":"go","timestamp":"2026-12-01T10:00:00Z","messageId":"b"}
"#;
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(journey).await;
    h.play(script).await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    let view = h.rt.user("m1").await.expect("m1");
    let skipped: Vec<String> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => Some(format!(
                "{}: {reason}: {}",
                e.step.as_deref().unwrap_or(""),
                detail.as_deref().unwrap_or("")
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        ["m: exited: the exit event stop (at 2026-12-01T10:10:00Z) came before the message could go out: it arrived before its trigger"]
    );
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("l").await.expect("stats");
    assert_eq!(stats.get("step.m.skipped.exited"), Some(&1), "{stats:?}");
}

/// Two bookings stamped alike (a batch sent without timestamps): the second replaces the first
/// (the booking is the trigger and an exit), and its reminder goes out; the first booking is
/// not taken for an exit of the second's enrollment.
#[tokio::test]
async fn two_bookings_at_one_instant_leave_one_reminder() {
    let journey = include_str!("../../examples/journeys/appointment_reminder.yaml");
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bo","traits":{"phone":"+14155550100","timezone":"Europe/Paris"}}
{"at":"2026-12-01T10:00:00Z","userId":"bo","event":"appointment_booked","messageId":"b1","properties":{"starts_at":"2026-12-10T14:00:00Z","advisor":"Ann","branch":"Lyon"}}
{"at":"2026-12-01T10:00:00Z","userId":"bo","event":"appointment_booked","messageId":"b2","properties":{"starts_at":"2026-12-11T14:00:00Z","advisor":"Ann","branch":"Lyon"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox_of(&out, "bo"),
        ["2026-12-10T08:00:00Z bo sms reminder: Reminder: your meeting with Ann at our Lyon branch is tomorrow at 15:00. Reply STOP to opt out."]
    );
}

/// The wall clock reads 01:30 twice the night the clocks go back: a wait for 01:30 reached within
/// that minute at either pass goes on at once (New York at 01:30:20 EDT and at 01:30:20 EST; Lord
/// Howe, whose clocks go back half an hour, at 01:45:20 of its second pass), as README says of a
/// wait reached within its minute; before, the second pass's waited a whole day. Still once a
/// night: a loop that had the first pass and comes back to the wait at the second (an hour on)
/// waits for the next day's.
#[tokio::test]
async fn a_wait_reached_within_its_minute_at_the_second_pass_goes_on_at_once() {
    let wait = |time: &str| {
        format!(
            r#"
id: w{t}
name: W
trigger: {{event: t}}
steps:
  - id: until
    wait_until: {{time: "{time}"}}
  - id: s
    send: {{email: {{subject: "at {time}", text: "x"}}}}
"#,
            t = time.replace(':', "")
        )
    };
    let looping = r#"
id: loop
name: Loop
trigger: {event: l}
steps:
  - id: until
    wait_until: {time: "01:30"}
  - id: s
    send: {email: {subject: "loop", text: "x"}}
  - id: hour
    wait: 1h
  - id: again
    branch: {cases: [{when: "exists(profile.timezone)", goto: until}]}
"#;
    let script = r#"{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"first","traits":{"email":"f@x.com","timezone":"America/New_York"}}
{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"second","traits":{"email":"s@x.com","timezone":"America/New_York"}}
{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"howe","traits":{"email":"h@x.com","timezone":"Australia/Lord_Howe"}}
{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"looper","traits":{"email":"l@x.com","timezone":"America/New_York"}}
{"at":"2026-04-04T15:15:20Z","userId":"howe","event":"t"}
{"at":"2026-11-01T05:30:20Z","userId":"first","event":"t"}
{"at":"2026-11-01T05:30:20Z","userId":"looper","event":"l"}
{"at":"2026-11-01T06:30:20Z","userId":"second","event":"t"}
"#;
    let (w0130, w0145) = (wait("01:30"), wait("01:45"));
    let out = sim_with(
        &[&w0130, &w0145, looping],
        script,
        Config::default(),
        SignedDuration::from_hours(30),
    )
    .await;
    let at_0130 = |user: &str| -> Vec<String> {
        outbox_of(&out, user)
            .into_iter()
            .filter(|l| l.ends_with("at 01:30"))
            .collect()
    };
    // 01:30:20 EDT, the first pass.
    assert_eq!(
        at_0130("first"),
        ["2026-11-01T05:30:20Z first email s: at 01:30"]
    );
    // 01:30:20 EST, the second.
    assert_eq!(
        at_0130("second"),
        ["2026-11-01T06:30:20Z second email s: at 01:30"]
    );
    // 01:45:20 +10:30 on 5 April 2026, Lord Howe's second pass (the first was 14:45Z).
    let howe = outbox_of(&out, "howe");
    assert_eq!(
        howe.first().map(String::as_str),
        Some("2026-04-04T15:15:20Z howe email s: at 01:45"),
        "{howe:?}"
    );
    let looped: Vec<_> = outbox_of(&out, "looper").into_iter().take(2).collect();
    assert_eq!(
        looped,
        [
            "2026-11-01T05:30:20Z looper email s: loop",
            "2026-11-02T06:30:00Z looper email s: loop"
        ]
    );
}

/// A wait until a time of day that a journey loops back to, on the night the clocks go back,
/// ends once at that time, not again at its second pass an hour later; a date in milliseconds
/// (JavaScript's `Date.now()`) is waited for as the time it is.
#[tokio::test]
async fn a_looping_wait_in_the_repeated_hour_ends_once_and_milliseconds_are_times() {
    let nightly = r#"
id: nightly
name: Nightly
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "01:30"}
  - id: s
    send: {push: {title: "n", body: "."}}
  - id: again
    branch:
      cases:
        - {when: "exists(profile.loop)", goto: until}
"#;
    let at_ms = r#"
id: ms
name: Ms
trigger: {event: booked}
steps:
  - id: until
    wait_until: {date: event.at_ms}
  - id: s
    send: {push: {title: "ms", body: "."}}
"#;
    let script = r#"{"at":"2026-10-01T00:00:00Z","type":"identify","userId":"ny","traits":{"loop":true,"timezone":"America/New_York","push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-10-31T12:00:00Z","userId":"ny","event":"t"}
{"at":"2026-10-31T12:00:00Z","userId":"ny","event":"booked","properties":{"at_ms":1793616000000}}
"#;
    let out = sim_with(
        &[nightly, at_ms],
        script,
        Config::default(),
        SignedDuration::from_hours(72),
    )
    .await;
    let sent: Vec<String> = outbox_of(&out, "ny");
    assert_eq!(
        sent,
        [
            // 01:30 EDT on the night of the change, then 01:30 EST the next night.
            "2026-11-01T05:30:00Z ny push s: n",
            "2026-11-02T06:30:00Z ny push s: n",
            // 1793616000000 ms = 2026-11-02T10:40:00Z.
            "2026-11-02T10:40:00Z ny push s: ms",
            "2026-11-03T06:30:00Z ny push s: n",
        ]
    );
}

/// A user unsubscribed from email still gets a transactional journey's email (a receipt), not a
/// marketing one, in that journey or another; an SMS opt-out stands for transactional messages too (STOP covers every
/// message).
#[tokio::test]
async fn a_receipt_reaches_a_user_unsubscribed_from_email() {
    let receipt = r#"
id: receipt
name: Receipt
transactional: true
trigger: {event: order_completed}
reentry: after_exit
steps:
  - id: mail
    send: {email: {subject: "Your receipt", text: ".", marketing: false}}
  - id: text
    send: {sms: {body: "Paid.", sms_type: transactional}}
  - id: upsell
    send: {email: {subject: "You might also like", text: ".", marketing: true}}
"#;
    let promo = r#"
id: promo
name: Promo
trigger: {event: order_completed}
reentry: after_exit
steps:
  - id: mail
    send: {email: {subject: "More deals", text: ".", marketing: true}}
"#;
    // The 09:30 identify touches push alone: the email and SMS opt-outs still date from 09:00.
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ula","traits":{"email":"ula@example.com","phone":"+14155550100","subscriptions":{"email":false,"sms":false}}}
{"at":"2026-12-01T09:30:00Z","type":"identify","userId":"ula","traits":{"subscriptions":{"push":true,"email":false}}}
{"at":"2026-12-01T10:00:00Z","userId":"ula","event":"order_completed"}
"#;
    let out = sim(&[receipt, promo], script).await;
    assert_eq!(
        outbox_of(&out, "ula"),
        ["2026-12-01T10:00:00Z ula email mail: Your receipt"]
    );
    let skipped = facts(&out, "ula", |w| matches!(w, What::Skipped { .. }));
    assert_eq!(
        skipped,
        [
            "2026-12-01T10:00:00Z promo/mail: skipped email: opted_out",
            "2026-12-01T10:00:00Z receipt/text: skipped sms: opted_out",
            // Marketing mail in a transactional journey honours the unsubscribe.
            "2026-12-01T10:00:00Z receipt/upsell: skipped email: opted_out"
        ]
    );
    // The skip says since when the opt-out holds.
    let details: Vec<String> = entries(&out, "ula")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Skipped { detail, .. } => detail.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        details,
        [
            "`subscriptions.email` is false, since 2026-12-01T09:00:00Z",
            "`subscriptions.sms` is false, since 2026-12-01T09:00:00Z",
            "`subscriptions.email` is false, since 2026-12-01T09:00:00Z"
        ]
    );
}

/// A phone number an `update` step sets, fixed or rendered, written for people, is kept as the
/// E.164 number it is, as an identify's is: the SMS goes to it.
#[tokio::test]
async fn an_update_keeps_a_phone_number_as_e164() {
    let fixed = r#"
id: fixed
name: Fixed
trigger: {event: a}
steps:
  - id: set
    update: {set: {phone: "+1 (415) 555-0100"}}
  - id: text
    send: {sms: {body: "a", sms_type: transactional}}
"#;
    let rendered = r#"
id: rendered
name: Rendered
trigger: {event: b}
steps:
  - id: set
    update: {set: {phone: "{{ event.phone }}"}}
  - id: text
    send: {sms: {body: "b", sms_type: transactional}}
"#;
    let script = r#"{"at":"2026-12-01T10:00:00Z","userId":"pat","event":"a"}
{"at":"2026-12-01T10:00:00Z","userId":"quin","event":"b","properties":{"phone":"+44 20 7946 0958"}}
"#;
    let out = sim(&[fixed, rendered], script).await;
    let to: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            waymark::simulate::Output::Message(m) => Some(format!(
                "{} {}",
                m.user_id,
                serde_json::to_value(&m.to).unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(to, [r#"pat "+14155550100""#, r#"quin "+442079460958""#]);
}

/// A webhook header HTTP cannot carry: a fixed name or value is a validation error; a rendered
/// value with a line break skips this user's message (`render_error`, naming the header), as
/// the deployed sender would refuse it, rather than showing `sent` in dev and simulate.
#[tokio::test]
async fn webhook_headers_http_cannot_carry_are_caught() {
    let bad_name = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: call
    send: {webhook: {url: "https://hooks.example/a", headers: {"X Bad": "1"}}}
"#;
    let errors = waymark::dsl::parse("hook.yaml", bad_name).expect_err("bad header name");
    assert!(
        errors[0].message.contains("is not an HTTP header name"),
        "{errors:?}"
    );
    let rendered = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: call
    send: {webhook: {url: "https://hooks.example/a", headers: {"X-Note": "{{ event.note }}"}}}
"#;
    let script = r#"{"at":"2026-12-01T10:00:00Z","userId":"ok","event":"a","properties":{"note":"fine"}}
{"at":"2026-12-01T10:00:00Z","userId":"bad","event":"a","properties":{"note":"a\r\nX-Injected: 1"}}
"#;
    let out = sim(&[rendered], script).await;
    assert_eq!(outbox_of(&out, "ok").len(), 1);
    assert!(outbox_of(&out, "bad").is_empty());
    let skipped = facts(&out, "bad", |w| matches!(w, What::Skipped { .. }));
    assert_eq!(
        skipped,
        ["2026-12-01T10:00:00Z hook/call: skipped webhook: render_error"]
    );
}

/// A webhook URL the deployed sender could not call: written whole in the journey, a validation
/// error (empty, a port that is not one); rendered from the profile for one user (`ftp://`,
/// empty, no host), that user's message is skipped as `render_error`, the same in dev and
/// simulate as on AWS, where it would fail for good. A `GET` with a body, a `Host` header and a
/// fixed `Idempotency-Key` are validation errors too.
/// Quiet hours hold the messages that interrupt (a push at night), not an in-app message,
/// which waits in the inbox until she opens the app.
#[tokio::test]
async fn quiet_hours_leave_in_app_messages_alone() {
    let journey = r#"
id: guide
name: Guide
trigger: {event: registered}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: inbox
    send: {in_app: {title: "Set up your account", body: "."}}
  - id: nudge
    send: {push: {title: "Welcome", body: "."}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"timezone":"Europe/London","push_tokens":[{"platform":"fcm","token":"t"}]}}
{"at":"2026-12-01T23:30:00Z","userId":"u","event":"registered"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox_of(&out, "u"),
        [
            "2026-12-01T23:30:00Z u in_app inbox: Set up your account",
            "2026-12-02T08:00:00Z u push nudge: Welcome",
        ]
    );
}

/// Quiet hours judge the channel that would go out, with or without a `send_within`: a push
/// that falls back to an in-app message for a user with no device goes to her inbox at once,
/// not at the night's end; for a user with a device the push waits.
#[tokio::test]
async fn quiet_hours_leave_a_push_s_in_app_fallback_alone() {
    let journey = |within: &str| {
        format!(
            r#"
id: q
name: Q
trigger: {{event: go}}
quiet_hours: {{start: "21:00", end: "08:00"}}
timezone: Europe/Paris
steps:
  - id: nudge
    send:
      push: {{title: "Hi", body: "x"}}
      fallback:
        in_app: {{title: "Hi", body: "x"}}{within}
"#
        )
    };
    // 23:00 in Paris: ida has no device, pat has one.
    let script = r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ida","traits":{"email":"ida@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"pat","traits":{"push_tokens":[{"platform":"fcm","token":"t-pat"}]}}
{"at":"2026-12-01T22:00:00Z","userId":"ida","event":"go","messageId":"g1"}
{"at":"2026-12-01T22:00:00Z","userId":"pat","event":"go","messageId":"g2"}
"#;
    for within in ["", "\n      send_within: 12h"] {
        let out = sim(&[&journey(within)], script).await;
        assert_eq!(
            outbox(&out),
            [
                "2026-12-01T22:00:00Z ida in_app nudge: Hi",
                "2026-12-02T07:00:00Z pat push nudge: Hi",
            ],
            "send_within: {within:?}"
        );
    }
}

/// A message that fails to render in a `locales` variant says which: the default's template
/// and the variant's are different texts.
#[tokio::test]
async fn a_render_error_in_a_locale_names_the_locale() {
    let journey = r#"
id: offer
name: Offer
trigger: {event: a}
steps:
  - id: push
    send:
      push: {title: t, body: "en {{ event.total }}"}
      fallback:
        email: {subject: "{{ event.total | round }}", text: "."}
      locales:
        fr:
          push: {title: t, body: "fr {{ event.total | round }}"}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"fr","traits":{"locale":"fr-FR","push_tokens":[{"platform":"fcm","token":"t-fr"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"en","traits":{"push_tokens":[{"platform":"fcm","token":"t-en"}]}}
{"at":"2026-12-01T10:00:00Z","userId":"fr","event":"a","properties":{"total":"soon"}}
{"at":"2026-12-01T10:00:00Z","userId":"en","event":"a","properties":{"total":"soon"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"mail","traits":{"email":"m@example.com"}}
{"at":"2026-12-01T10:00:00Z","userId":"mail","event":"a","properties":{"total":"soon"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(outbox_of(&out, "en").len(), 1);
    // No device: the fallback's template is the one that failed.
    let said = details(&out, "mail");
    assert!(
        said.iter().any(|d| d.starts_with("fallback: subject: ")),
        "{said:?}"
    );
    let said = details(&out, "fr");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("locales.fr: body: "), "{said:?}");
}

/// A line break a user's data brings into an email's subject (a header) does not start another
/// header: each run of them is one space.
#[tokio::test]
async fn a_line_break_in_data_is_a_space_in_an_email_subject() {
    let journey = r#"
id: hi
name: Hi
trigger: {event: a}
steps:
  - id: mail
    send: {email: {subject: "Hi {{ event.subj }}", text: "x"}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"email":"u@example.com"}}
{"at":"2026-12-01T10:00:00Z","userId":"u","event":"a","properties":{"subj":"hello\r\nBcc: evil@example.com\n"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox_of(&out, "u"),
        ["2026-12-01T10:00:00Z u email mail: Hi hello Bcc: evil@example.com"]
    );
}

/// A webhook body that goes out as JSON but is not, as rendered for a user (a quote in a value
/// put in by hand, a missing value leaving `"m": ,`), skips her message saying where, rather
/// than the receiver getting what it cannot read; built with `tojson` it goes out. A body the
/// step says is something else is left as it is.
#[tokio::test]
async fn a_webhook_body_that_is_not_json_as_rendered_is_caught() {
    let journey = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: by_hand
    send: {webhook: {url: "https://hooks.example/a", body: '{"x": "{{ event.x }}", "m": {{ event.m }}}'}}
  - id: built
    send: {webhook: {url: "https://hooks.example/b", body: '{"x": {{ event.x | tojson }}, "m": {{ event.m | tojson }}}'}}
  - id: csv
    send: {webhook: {url: "https://hooks.example/c", headers: {Content-Type: text/csv}, body: '{{ event.x }},{{ event.m }}'}}
  - id: lines
    send:
      webhook:
        url: "https://hooks.example/d"
        headers: {Content-Type: "application/x-ndjson"}
        body: "{\"a\": 1}\n{\"b\": 2}"
  - id: typed
    send: {webhook: {url: "https://hooks.example/e", headers: {Content-Type: "Application/JSON; charset=utf-8"}, body: '{{ event.m }}'}}
"#;
    let script = r#"{"at":"2026-12-01T10:00:00Z","userId":"u","event":"a","properties":{"x":"say \"zq\""}}
"#;
    let out = sim(&[journey], script).await;
    // `built`, `csv` and `lines` (NDJSON is not one JSON value) went out; `typed`, JSON in
    // other letters, rendered empty, did not.
    assert_eq!(outbox_of(&out, "u").len(), 3, "{:?}", outbox_of(&out, "u"));
    let said = details(&out, "u");
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[0].starts_with("body: is not JSON as rendered for this user ("),
        "{said:?}"
    );
    assert!(!said[0].contains("zq"), "no data in the reason: {said:?}");
}

/// A user's data in a webhook's URL does not choose where the call, its API key and body with
/// it, goes (a trait set through the app's write key): data in the host is refused by
/// `waymark validate`, and a journey published before that goes out only to the host written.
#[tokio::test]
async fn data_in_a_webhooks_url_cannot_send_it_to_another_host() {
    let journey = r#"
id: crm
name: CRM sync
trigger: {event: order_completed}
steps:
  - id: sync
    send:
      webhook:
        url: "https://{{ profile.region | urlencode }}.api.crm.example/v1/orders"
        headers: {Authorization: "Bearer sk_live_SECRET"}
        body: '{"user": {{ user_id | tojson }}}'
"#;
    let errors = waymark::dsl::parse("crm.yaml", journey).expect_err("data in the host");
    assert_eq!(errors[0].path, "steps[0].send.webhook.url");
    assert!(
        errors[0].message.contains("has data in its host"),
        "{errors:?}"
    );
    let in_path = journey.replace(
        "https://{{ profile.region | urlencode }}.api.crm.example/v1/orders",
        "https://api.crm.example/v1/{{ profile.region | urlencode }}/orders",
    );
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"eu","traits":{"region":"eu-west"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"evil","traits":{"region":"@attacker.example/x"}}
{"at":"2026-12-01T10:00:00Z","userId":"eu","event":"order_completed"}
{"at":"2026-12-01T10:00:00Z","userId":"evil","event":"order_completed"}
"#;
    let out = sim(&[&in_path], script).await;
    assert_eq!(outbox_of(&out, "eu").len(), 1);
    // In the path, the value stays there: the call goes to the host written.
    let evil = outbox_of(&out, "evil");
    assert_eq!(evil.len(), 1, "{evil:?}");
    assert!(evil[0].contains("https://api.crm.example/v1/"), "{evil:?}");
}

#[tokio::test]
async fn webhook_urls_and_headers_the_sender_cannot_use_are_caught() {
    for (url, why) in [
        ("", "the URL is empty"),
        ("http://hooks.example:99999/a", "a port that is not one"),
    ] {
        let journey = format!(
            "id: hook\nname: Hook\ntrigger: {{event: a}}\nsteps:\n  - id: call\n    send: {{webhook: {{url: \"{url}\"}}}}\n"
        );
        let errors = waymark::dsl::parse("hook.yaml", &journey).expect_err(url);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "steps[0].send.webhook.url");
        assert!(errors[0].message.contains(why), "{errors:?}");
    }
    let misused = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: call
    send:
      webhook:
        url: "https://hooks.example/a"
        method: GET
        headers: {Host: "evil.example", Idempotency-Key: "mine", X-Key: "fine"}
        body: "{{ user_id | tojson }}"
"#;
    let errors = waymark::dsl::parse("hook.yaml", misused).expect_err("misused webhook");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "steps[0].send.webhook.body",
            "steps[0].send.webhook.headers.Host",
            "steps[0].send.webhook.headers.Idempotency-Key",
        ],
        "{errors:?}"
    );
    let rendered = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: call
    send: {webhook: {url: "{{ profile.hook }}", headers: {Idempotency-Key: "{{ user_id }}"}}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ok","traits":{"hook":"https://hooks.example/a"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ftp","traits":{"hook":"ftp://files.example/a"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"port","traits":{"hook":"http://hooks.example:99999/a"}}
{"at":"2026-12-01T10:00:00Z","userId":"ok","event":"a"}
{"at":"2026-12-01T10:00:00Z","userId":"ftp","event":"a"}
{"at":"2026-12-01T10:00:00Z","userId":"port","event":"a"}
{"at":"2026-12-01T10:00:00Z","userId":"none","event":"a"}
"#;
    let out = sim(&[rendered], script).await;
    assert_eq!(outbox_of(&out, "ok").len(), 1);
    // the reason says what is wrong, without the URL (it may carry the user's token)
    let detail: Vec<String> = entries(&out, "ftp")
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { detail, .. } => detail.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        detail,
        ["url: the URL is not an https:// (or http://) URL: write it like `https://api.example.com/hooks/order?user={{ user_id | urlencode }}`"]
    );
    for user in ["ftp", "port", "none"] {
        assert!(outbox_of(&out, user).is_empty(), "{user}");
        let skipped = facts(&out, user, |w| matches!(w, What::Skipped { .. }));
        assert_eq!(
            skipped,
            ["2026-12-01T10:00:00Z hook/call: skipped webhook: render_error"],
            "{user}"
        );
    }
}

/// Facts of one instant are listed in the order their events came in the script, whatever
/// their messageIds spell: the cart's entry, then the order's exit.
#[tokio::test]
async fn facts_of_one_instant_are_listed_in_the_scripts_order() {
    let journey = r#"
id: cart
name: Cart
trigger: {event: cart_abandoned}
exit_when: [{event: order_completed}]
steps:
  - id: wait_30m
    wait: 30m
  - id: reminder
    send: {email: {subject: "Your cart", text: "Come back"}}
"#;
    let script = r#"{"at":"2026-01-01T00:00:00Z","type":"identify","userId":"x","traits":{"email":"x@example.com"}}
{"at":"2026-01-01T10:00:00Z","userId":"x","event":"cart_abandoned","messageId":"z-cart"}
{"at":"2026-01-01T10:00:00Z","userId":"x","event":"order_completed","messageId":"a-order"}
"#;
    let out = sim(&[journey], script).await;
    let got: Vec<String> = facts(&out, "x", |w| {
        matches!(w, What::Entered { .. } | What::Exited { .. })
    });
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("entered"), "{got:?}");
    assert!(got[1].contains("exited"), "{got:?}");

    // A fact whose cause is made from the event's id (a date wait moved by another journey's
    // `update`) comes after that event's own facts.
    let renew = r#"
id: renew
name: Renew
trigger: {event: renewed}
steps:
  - id: set
    update: {set: {renews_on: "{{ event.next }}"}}
"#;
    let reminder = r#"
id: aaa_reminder
name: Reminder
trigger: {event: signed_up}
steps:
  - id: until
    wait_until: {date: profile.renews_on, before: 1d}
  - id: s
    send: {email: {subject: "renew", text: "."}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"email":"u@example.com","renews_on":"2026-12-20"},"messageId":"i1"}
{"at":"2026-12-01T10:00:00Z","userId":"u","event":"signed_up","messageId":"s1"}
{"at":"2026-12-02T10:00:00Z","userId":"u","event":"renewed","messageId":"r1","properties":{"next":"2026-12-25"}}
"#;
    let out = sim(&[renew, reminder], script).await;
    let got: Vec<String> = facts(&out, "u", |w| {
        matches!(w, What::Updated { .. } | What::Woke { .. })
    })
    .into_iter()
    .filter(|f| f.starts_with("2026-12-02T10:00:00Z"))
    .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("renew/set"), "{got:?}");
    assert!(got[1].contains("aaa_reminder/until"), "{got:?}");

    // Facts of two wake-ups at one instant come in the order they happened: the push that
    // took the day's cap place before the one it kept out (held longer, woken second).
    let held = |id: &str| {
        format!(
            "id: {id}\nname: {id}\ntrigger: {{event: ev_{id}}}\nquiet_hours: {{start: \"21:00\", end: \"08:00\"}}\nsteps:\n  - id: p\n    send: {{push: {{title: x, body: x}}}}\n"
        )
    };
    let (one, two) = (held("one"), held("two"));
    let script = r#"{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"a","traits":{"push_tokens":[{"platform":"fcm","token":"ta"}]}}
{"at":"2026-12-01T22:00:00Z","userId":"a","event":"ev_one"}
{"at":"2026-12-01T23:00:00Z","userId":"a","event":"ev_two"}
"#;
    let mut config = Config::default();
    config.caps.insert(
        Channel::Push,
        Cap {
            max: 1,
            per: "1d".parse().expect("duration"),
        },
    );
    let out = sim_with(&[&one, &two], script, config, HORIZON).await;
    let got: Vec<String> = facts(&out, "a", |w| {
        matches!(w, What::Sent { .. } | What::Skipped { .. })
    });
    assert_eq!(got.len(), 2, "{got:?}");
    let kept_out = if got[0].contains("one/p") {
        "two/p"
    } else {
        "one/p"
    };
    assert!(got[0].contains("sent push"), "{got:?}");
    assert!(
        got[1].contains(kept_out) && got[1].contains("capped"),
        "{got:?}"
    );

    // The event that ends an enrollment and is refused entry by its rule: the exit first.
    let reorder = r#"
id: reorder
name: Reorder
trigger: {event: order_completed}
reentry: {after: 2d}
exit_when: [{event: order_completed}]
steps:
  - {id: w, wait: 1d}
"#;
    let script = r#"{"at":"2026-12-01T10:00:00Z","userId":"a","event":"order_completed","messageId":"o1"}
{"at":"2026-12-01T12:00:00Z","userId":"a","event":"order_completed","messageId":"o2"}
"#;
    let out = sim(&[reorder], script).await;
    let got: Vec<String> = facts(&out, "a", |w| {
        matches!(w, What::Exited { .. } | What::NotEntered { .. })
    });
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("exited"), "{got:?}");
    assert!(got[1].contains("not entered"), "{got:?}");

    // The login that brings a visitor's wait to her, with the very event it waits for: the
    // merge first, then what the event did.
    let waits = r#"
id: wf
name: WF
trigger: {event: trial_started}
steps:
  - id: wait
    wait_for: {event: order_completed, timeout: 1d, on_event: thanks, on_timeout: done}
  - id: thanks
    send: {in_app: {title: thanks, body: "."}}
  - id: done
    exit: true
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","anonymousId":"d1","event":"trial_started","messageId":"t1"}
{"at":"2026-12-01T10:00:00Z","userId":"ann","anonymousId":"d1","event":"order_completed","messageId":"o1"}
"#;
    let out = sim(&[waits], script).await;
    let got: Vec<String> = facts(&out, "ann", |w| {
        matches!(w, What::Merged { .. } | What::Woke { .. })
    });
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("turned out to be"), "{got:?}");
    assert!(got[1].contains("woke"), "{got:?}");

    // A date wait moved by an `update` a wake-up reached: the update first.
    let later = r#"
id: later_update
name: Later update
trigger: {event: set}
steps:
  - {id: w, wait: 1h}
  - {id: u, update: {set: {renews_on: "{{ event.d }}"}}}
"#;
    let script = r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"a","traits":{"renews_on":"2026-12-20T00:00:00Z"}}
{"at":"2026-12-01T10:00:00Z","userId":"a","event":"signed_up","messageId":"s1"}
{"at":"2026-12-01T10:00:00Z","userId":"a","event":"set","messageId":"t1","properties":{"d":"2026-12-25"}}
"#;
    let out = sim(&[later, reminder], script).await;
    let got: Vec<String> = facts(&out, "a", |w| {
        matches!(w, What::Updated { .. } | What::Woke { .. })
    })
    .into_iter()
    .filter(|f| f.starts_with("2026-12-01T11:00:00Z") && !f.contains("woke (time)"))
    .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("later_update/u"), "{got:?}");
    assert!(got[1].contains("aaa_reminder/until"), "{got:?}");
}

/// A daily cap counts the user's calendar days: the daily 09:00 push of a Paris user goes out
/// on the morning the clocks go forward (23 hours after the one before) and on the morning after
/// they go back (25 hours).
#[tokio::test]
async fn a_daily_cap_counts_calendar_days_across_a_change_of_the_clocks() {
    let digest = r#"
id: digest
name: Daily digest
trigger:
  schedule: {cron: "0 9 * * *", timezone: user}
reentry: after_exit
steps:
  - id: p
    send: {push: {title: "Digest", body: "."}}
"#;
    let mut config = Config::default();
    config.caps.insert(
        Channel::Push,
        Cap {
            max: 1,
            per: "1d".parse().expect("duration"),
        },
    );
    for (from, days) in [
        ("2026-03-27", ["03-28", "03-29", "03-30"]),
        ("2026-10-23", ["10-24", "10-25", "10-26"]),
    ] {
        let script = format!(
            r#"{{"at":"{from}T00:00:00Z","type":"identify","userId":"ann","traits":{{"timezone":"Europe/Paris","push_tokens":[{{"platform":"fcm","token":"t"}}]}}}}
{{"at":"{}T12:00:00Z","type":"identify","userId":"ann","traits":{{"first_name":"Ann"}}}}
"#,
            format_args!("2026-{}", days[2])
        );
        let out = sim_with(&[digest], &script, config.clone(), HORIZON).await;
        let sent: Vec<String> = outbox(&out)
            .into_iter()
            .filter(|l| days.iter().any(|d| l.starts_with(&format!("2026-{d}"))))
            .collect();
        assert_eq!(sent.len(), 3, "{from}: {sent:?}");
        assert_eq!(
            facts(&out, "ann", |w| matches!(w, What::Skipped { .. })),
            Vec::<String>::new(),
            "{from}"
        );
    }
}

/// A cap counts a day in the zone of the send it judges, and keeps the places it may count
/// whatever zone the send that last wrote it had: a Tokyo user's two pushes, sent on two Tokyo
/// days (06:30Z and 15:30Z, after Tokyo's midnight at 15:00Z), are both in the New York day she
/// moves to at 15:45Z, so a third at 16:00Z is capped naming both (it went out: the second send
/// had dropped the first's place, its Tokyo day over). The same for a week, and for a user with
/// no zone between journeys of different default zones.
#[tokio::test]
async fn a_cap_keeps_the_places_a_zone_behind_still_counts() {
    let tokyo = r#"
id: tokyo
name: T
trigger: {event: go_t}
reentry: after_exit
timezone: Asia/Tokyo
steps:
  - id: pt
    send: {push: {title: "T", body: "t"}}
"#;
    let ny = r#"
id: ny
name: N
trigger: {event: go_n}
reentry: after_exit
timezone: America/New_York
steps:
  - id: pn
    send: {push: {title: "N", body: "n"}}
"#;
    let travel = |first_day: &str, second_day: &str| {
        format!(
            r#"{{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"tv","traits":{{"timezone":"Asia/Tokyo","push_tokens":[{{"platform":"fcm","token":"t-tv"}}]}}}}
{{"at":"{first_day}T06:30:00Z","type":"track","userId":"tv","event":"go_t","messageId":"t1"}}
{{"at":"{second_day}T15:30:00Z","type":"track","userId":"tv","event":"go_t","messageId":"t2"}}
{{"at":"{second_day}T15:45:00Z","type":"identify","userId":"tv","traits":{{"timezone":"America/New_York"}}}}
{{"at":"{second_day}T16:00:00Z","type":"track","userId":"tv","event":"go_t","messageId":"t3"}}
"#
        )
    };
    let no_zone = r#"
{"at":"2026-12-01T00:00:00Z","type":"identify","userId":"tv","traits":{"push_tokens":[{"platform":"fcm","token":"t-tv"}]}}
{"at":"2026-12-01T06:30:00Z","type":"track","userId":"tv","event":"go_t","messageId":"t1"}
{"at":"2026-12-01T15:30:00Z","type":"track","userId":"tv","event":"go_t","messageId":"t2"}
{"at":"2026-12-01T16:00:00Z","type":"track","userId":"tv","event":"go_n","messageId":"n1"}
"#;
    for (per, script, last, kept_out, frees) in [
        (
            "1d",
            travel("2026-12-01", "2026-12-01"),
            "2026-12-01T15:30:00Z",
            "tokyo/pt",
            "2026-12-02T05:00:00Z",
        ),
        (
            "7d",
            travel("2026-12-01", "2026-12-07"),
            "2026-12-07T15:30:00Z",
            "tokyo/pt",
            "2026-12-08T05:00:00Z",
        ),
        (
            "1d",
            no_zone.to_string(),
            "2026-12-01T15:30:00Z",
            "ny/pn",
            "2026-12-02T05:00:00Z",
        ),
    ] {
        let mut config = Config::default();
        config.caps.insert(
            Channel::Push,
            Cap {
                max: 2,
                per: per.parse().expect("duration"),
            },
        );
        let out = sim_with(&[tokyo, ny], &script, config, HORIZON).await;
        assert_eq!(
            outbox(&out),
            [
                "2026-12-01T06:30:00Z tv push pt: T".to_string(),
                format!("{last} tv push pt: T"),
            ],
            "{per} {kept_out}"
        );
        let per = if per == "7d" { "1w" } else { per };
        assert_eq!(
            details(&out, "tv"),
            [format!(
                "at most 2 push per {per}: taken by tokyo/pt at 2026-12-01T06:30:00Z, tokyo/pt at {last}; a place frees at {frees}"
            )],
            "{kept_out}"
        );
        assert_eq!(
            facts(&out, "tv", |w| matches!(w, What::Skipped { .. })),
            [format!(
                "{}T16:00:00Z {kept_out}: skipped push: capped",
                &last[..10]
            )]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Versions, duplicates and order
// ---------------------------------------------------------------------------------------------

const V1: &str = r#"
id: promo
name: Promo
trigger: {event: signed_up}
steps:
  - id: wait_1h
    wait: 1h
  - id: offer
    send: {push: {title: "Old copy", body: "."}}
"#;

#[tokio::test]
async fn enrolled_users_finish_on_the_version_they_entered_and_new_ones_get_the_latest() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    assert_eq!(h.publish(V1).await, 1);
    h.play(&format!(
        "{}\n{}\n{}",
        shopper("ann"),
        shopper("bob"),
        track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann")
    ))
    .await;
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    assert_eq!(h.publish(&V1.replace("Old copy", "New copy")).await, 2);
    h.play(&track("2026-12-01T10:20:00Z", "bob", "signed_up", "s-bob"))
        .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;

    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T11:00:00Z ann push offer: Old copy",
            "2026-12-01T11:20:00Z bob push offer: New copy",
        ]
    );
    for (user, version) in [("ann", 1), ("bob", 2)] {
        let view = h.rt.user(user).await.expect("user");
        assert_eq!(view.enrollments.len(), 1, "{user}");
        assert_eq!(view.enrollments[0].version, version, "{user}");
    }
}

// ---------------------------------------------------------------------------------------------
// Journey status: closed to new entries, or stopped (the kill switch)
// ---------------------------------------------------------------------------------------------

/// Waits, pushes, waits for an app open (or a day), emails; exits on an order.
const FUNNEL: &str = r#"
id: funnel
name: Funnel
trigger: {event: signed_up}
reentry: after_exit
exit_when:
  - event: order_completed
steps:
  - id: wait_1h
    wait: 1h
  - id: nudge
    send: {push: {title: "Nudge", body: "."}}
  - id: opened
    wait_for: {event: app_opened, timeout: 1d}
  - id: offer
    send: {email: {subject: "Offer", text: "."}}
"#;

fn with_status(text: &str, status: &str) -> String {
    format!("{text}status: {status}\n")
}

#[tokio::test]
async fn a_closed_journey_enrolls_no_one_new_while_enrolled_users_finish() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    assert_eq!(h.publish(FUNNEL).await, 1);
    h.play(&format!(
        "{}\n{}\n{}",
        shopper("ann"),
        shopper("bob"),
        track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann")
    ))
    .await;
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    // when the journey is closed (a new version), then bob's sign-up enrolls no one
    assert_eq!(h.publish(&with_status(FUNNEL, "closed")).await, 2);
    h.play(&track("2026-12-01T10:20:00Z", "bob", "signed_up", "s-bob"))
        .await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    // and ann, enrolled before, gets every message of her path
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T11:00:00Z ann push nudge: Nudge",
            "2026-12-02T11:00:00Z ann email offer: Offer",
        ]
    );
    let bob = h.rt.user("bob").await.expect("bob");
    assert!(bob.enrollments.is_empty());
    // and bob's timeline says why
    assert_eq!(
        refusals(&bob.timeline),
        ["2026-12-01T10:20:00Z funnel [] on signed_up: closed: the journey's `status: closed`: no one enters it"]
    );
    // and published again as active, the journey enrolls again
    assert_eq!(h.publish(FUNNEL).await, 3);
    h.play(&track(
        "2026-12-03T10:00:00Z",
        "bob",
        "signed_up",
        "s-bob-2",
    ))
    .await;
    h.advance_to(at("2026-12-03T12:00:00Z")).await;
    assert_eq!(
        h.outbox().last().map(String::as_str),
        Some("2026-12-03T11:00:00Z bob push nudge: Nudge")
    );
    let heads = h.rt.catalog.heads().await.expect("heads");
    assert_eq!(heads[0].status, JourneyStatus::Active);
}

/// Asserts that `user`'s timeline says the stop ended their enrollment at `step` at `when`
/// (their wait cancelled, then the exit), and nothing else of a stop; returns their view.
async fn assert_stopped(
    h: &Harness,
    journey: &str,
    user: &str,
    step: &str,
    when: &str,
) -> waymark::runtime::UserView {
    let view = h.rt.user(user).await.expect("user");
    let said: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| {
            matches!(e.what, What::Stopped)
                || matches!(&e.what, What::Woke { how } if how == "stopped")
        })
        .map(fact)
        .collect();
    assert_eq!(
        said,
        [
            format!("{when} {journey}/{step}: woke (stopped)"),
            format!("{when} {journey}/{step}: exited: the journey was stopped"),
        ],
        "{user}"
    );
    view
}

#[tokio::test]
async fn a_stopped_journey_ends_every_enrollment_at_once_and_sends_nothing_more() {
    // One enrollment a scan page: the sweep reads page after page.
    let h = Harness::with_config(
        "2026-12-01T09:00:00Z",
        Config {
            scan_page: 1,
            ..Config::default()
        },
    );
    h.publish(FUNNEL).await;
    // ann waits out her first hour; bob has had his nudge and waits for an app open
    h.play(
        &[
            shopper("ann"),
            shopper("bob"),
            shopper("cat"),
            track("2026-12-01T09:00:00Z", "bob", "signed_up", "s-bob"),
            track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann"),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T10:00:00Z bob push nudge: Nudge"]);

    // when the journey is stopped, the scheduler's next minute starts its sweep, which ends
    // both enrollments
    assert_eq!(h.publish(&with_status(FUNNEL, "stopped")).await, 2);
    assert_eq!(
        h.rt.catalog.heads().await.expect("heads")[0].status,
        JourneyStatus::Stopped
    );
    assert_eq!(h.rt.tick().await.expect("tick").stops, 1);
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    for (user, step) in [("ann", "wait_1h"), ("bob", "opened")] {
        let view = assert_stopped(&h, "funnel", user, step, "2026-12-01T10:10:00Z").await;
        let e = &view.enrollments[0];
        assert_eq!(e.version, 1, "{user} stays on the version they entered");
        assert!(!e.is_active(), "{user}");
        assert_eq!(e.end_reason.as_deref(), Some("journey stopped"), "{user}");
    }
    // (once per stopped version)
    assert_eq!(h.rt.tick().await.expect("tick").stops, 0);
    // and the stats count both as exited, none still waiting
    let stats = h.rt.stats("funnel").await.expect("stats");
    assert_eq!(stats.get("exited"), Some(&2), "{stats:?}");
    for waiting in ["step.wait_1h.waiting", "step.opened.waiting"] {
        // (a counter whose changes came in one fold and cancel out is not created)
        assert_eq!(stats.get(waiting).copied().unwrap_or(0), 0, "{stats:?}");
    }
    assert_eq!(stats.get("step.opened.exited"), Some(&1), "{stats:?}");
    assert_eq!(stats.get("step.wait_1h.exited"), Some(&1), "{stats:?}");

    // then bob's app open leads nowhere, cat's sign-up enrolls no one, nothing more goes out
    h.play(
        &[
            track("2026-12-01T10:20:00Z", "bob", "app_opened", "a-bob"),
            track("2026-12-01T10:30:00Z", "cat", "signed_up", "s-cat"),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T10:00:00Z bob push nudge: Nudge"]);
    assert!(h.rt.user("cat").await.expect("cat").enrollments.is_empty());
}

/// Ann enrolled in the funnel at 10:00; the funnel is then stopped and the scheduler's minute
/// starts its sweep (its first pages are queued, not yet read).
async fn ann_in_a_funnel_whose_sweep_started() -> Harness {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(FUNNEL).await;
    h.play(
        &[
            shopper("ann"),
            track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann"),
        ]
        .join("\n"),
    )
    .await;
    h.publish(&with_status(FUNNEL, "stopped")).await;
    assert_eq!(h.rt.tick().await.expect("tick").stops, 1);
    h
}

#[tokio::test]
async fn a_stop_taken_back_before_its_sweep_is_handled_ends_no_one() {
    // Taken back after the sweep read its pages (ann's Stop is queued), or before.
    for pages_read in [true, false] {
        // the scheduler sees the stop and starts its sweep, then the journey is published active
        let h = ann_in_a_funnel_whose_sweep_started().await;
        if pages_read {
            let pages = h.queue.take_due(h.now());
            assert!(
                pages.iter().all(|m| matches!(m, Message::Scan { .. })),
                "{pages:?}"
            );
            // (each page handled twice, as SQS may deliver it: the second time reads nothing)
            for _ in 0..2 {
                for r in h.rt.handle_batch(&pages).await {
                    r.expect("page");
                }
            }
            let stops = h.queue.take_due(h.now());
            assert!(
                matches!(stops.as_slice(), [Message::Stop { user_id, .. }] if user_id == "ann"),
                "{stops:?}"
            );
            h.queue
                .send(
                    QueueName::Steps,
                    &stops
                        .into_iter()
                        .map(|message| Outbound {
                            message,
                            delay_secs: 0,
                        })
                        .collect::<Vec<_>>(),
                )
                .await
                .expect("queue");
        }
        h.publish(FUNNEL).await;
        h.advance_to(at("2026-12-01T12:00:00Z")).await;
        // ann goes on: her Stop, or the sweep's pages, find the journey active again
        assert_eq!(
            h.outbox(),
            ["2026-12-01T11:00:00Z ann push nudge: Nudge"],
            "pages read first: {pages_read}"
        );
        assert!(h.rt.user("ann").await.expect("ann").enrollments[0].is_active());
        // the sweep's four pages are marked read; only those read before the journey was
        // active again selected ann
        let marks: Vec<serde_json::Value> = h
            .store
            .dump()
            .iter()
            .filter(|r| r.key.pk.starts_with("SCAN#"))
            .filter_map(|r| r.parse().ok())
            .collect();
        assert_eq!(marks.len(), 4, "{marks:?}");
        assert!(marks.iter().all(|m| m["state"] == "read"), "{marks:?}");
        let selected: u64 = marks.iter().filter_map(|m| m["selected"].as_u64()).sum();
        assert_eq!(
            selected,
            u64::from(pages_read),
            "pages read first: {pages_read}"
        );
    }
}

#[tokio::test]
async fn a_sweep_page_another_worker_is_reading_waits_and_is_taken_over_if_its_claim_lapses() {
    let h = ann_in_a_funnel_whose_sweep_started().await;
    // another worker claimed every first page of the sweep a minute ago, then died
    let pages = h.queue.take_due(h.now());
    assert_eq!(pages.len(), 4, "{pages:?}");
    let claimed_until = h.now() + SignedDuration::from_mins(1);
    for m in &pages {
        let Message::Scan { job, .. } = m else {
            panic!("{m:?}")
        };
        let marker = Key::new(format!("SCAN#{}", job.id()), m.id());
        let reading = json!({"state": "reading", "until": claimed_until});
        h.store
            .put(
                &Record::new(marker, 1, &reading).expect("record"),
                Expect::Absent,
            )
            .await
            .expect("claim");
    }
    // the pages delivered now wait (a retry), and nothing is stopped twice or early
    for r in h.rt.handle_batch(&pages).await {
        assert!(
            matches!(r, Ok(Handled::Retried { attempt: 1, .. })),
            "{r:?}"
        );
    }
    assert!(h.rt.user("ann").await.expect("ann").enrollments[0].is_active());
    // the retries, two minutes on, find the claims lapsed and read the pages: ann is stopped
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    let view = h.rt.user("ann").await.expect("ann");
    assert!(!view.enrollments[0].is_active(), "{:?}", view.enrollments);
    assert_eq!(
        view.enrollments[0].end_reason.as_deref(),
        Some("journey stopped")
    );
    let read = h
        .store
        .dump()
        .iter()
        .filter(|r| r.key.pk.starts_with("SCAN#"))
        .filter(|r| {
            r.parse::<serde_json::Value>()
                .is_ok_and(|v| v["state"] == "read")
        })
        .count();
    assert_eq!(read, 4, "every page marked read");
}

/// Short waits only (they ride the queue, so no scheduler minute runs in between).
const QUICK: &str = r#"
id: quick
name: Quick
trigger: {event: signed_up}
steps:
  - id: pause
    wait: 10m
  - id: hello
    send: {push: {title: "Hello", body: "."}}
  - id: opened
    wait_for: {event: app_opened, timeout: 10m}
  - id: offer
    send: {email: {subject: "Offer", text: "."}}
"#;

#[tokio::test]
async fn an_enrollment_the_stop_sweep_has_not_reached_ends_at_its_next_step() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(QUICK).await;
    h.play(
        &[
            shopper("ann"),
            shopper("bob"),
            track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann"),
            track("2026-12-01T10:05:00Z", "bob", "signed_up", "s-bob"),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-01T10:12:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T10:10:00Z ann push hello: Hello"]);
    // when the journey is stopped and no scheduler minute runs before their next steps
    h.publish(&with_status(QUICK, "stopped")).await;
    h.play(&track("2026-12-01T10:14:00Z", "ann", "app_opened", "a-ann"))
        .await;
    h.advance_to(at("2026-12-01T11:00:00Z")).await;
    // then ann's app open (which led to the offer) and bob's wake-up each end their enrollment
    assert_eq!(h.outbox(), ["2026-12-01T10:10:00Z ann push hello: Hello"]);
    for (user, step, when) in [
        ("ann", "opened", "2026-12-01T10:14:00Z"),
        ("bob", "pause", "2026-12-01T10:15:00Z"),
    ] {
        assert_stopped(&h, "quick", user, step, when).await;
    }
}

#[test]
fn journey_status_is_checked_when_the_file_is_read() {
    let e = waymark::dsl::parse("f.yaml", &with_status(FUNNEL, "paused")).expect_err("paused");
    let text = e
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("f.yaml:"), "{text}");
    assert!(
        text.contains("active") && text.contains("stopped"),
        "{text}"
    );
    // and an active journey's digest is the same as before the field existed
    let active = journey(&with_status(FUNNEL, "active"));
    assert_eq!(active.digest(), journey(FUNNEL).digest());
}

#[tokio::test]
async fn the_same_message_id_twice_enrolls_once() {
    let journey = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
reentry: after_exit
steps:
  - id: hello
    send: {push: {title: "Welcome", body: "."}}
"#;
    let script = [
        shopper("ann"),
        track("2026-12-01T10:00:00Z", "ann", "signed_up", "s-ann"),
        track("2026-12-01T10:05:00Z", "ann", "signed_up", "s-ann"),
    ]
    .join("\n");
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:00Z ann push hello: Welcome"]
    );
    assert_eq!(
        facts(&out, "ann", entered),
        ["2026-12-01T10:00:00Z welcome/-: entered v1 on signed_up"]
    );
}

/// A track delivered at `at` that happened at `happened`.
fn late(at: &str, happened: &str, user: &str, event: &str, id: &str) -> String {
    json!({"at": at, "timestamp": happened, "type": "track", "userId": user, "event": event, "messageId": id}).to_string()
}

#[tokio::test]
async fn an_exit_delivered_before_its_trigger_still_ends_the_journey_at_once() {
    // ann abandons at 10:00 and orders at 10:02, but the abandonment arrives last, at 10:05.
    let script = [
        shopper("ann"),
        track("2026-12-01T10:02:00Z", "ann", "order_completed", "o-ann"),
        late(
            "2026-12-01T10:05:00Z",
            "2026-12-01T10:00:00Z",
            "ann",
            "cart_abandoned",
            "c-ann",
        ),
    ]
    .join("\n");
    let out = sim(&[CART], &script).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    assert_eq!(
        facts(&out, "ann", |w| matches!(
            w,
            What::Entered { .. } | What::Exited { .. }
        )),
        [
            "2026-12-01T10:05:00Z cart/-: entered v1 on cart_abandoned",
            "2026-12-01T10:05:00Z cart/wait_30m: exited on order_completed",
        ]
    );
}

/// A journey whose steps all run at entry (a send, then its end) still meets an exit that
/// happened after the trigger but was applied before it: nothing goes out, and it ends as
/// exited, not completed (also for an exit on a trait's change).
#[tokio::test]
async fn an_exit_delivered_before_its_trigger_ends_a_journey_that_would_complete_at_entry() {
    let journey = r#"
id: offer
name: Offer
trigger: {event: offer}
reentry: after_exit
exit_when:
  - event: cancelled
  - trait_changed: subscriber
    where: "event.to == true"
steps:
  - id: mail
    send:
      email: {subject: "Our offer", text: "."}
  - id: note
    update: {set: {offered: true}}
"#;
    let script = [
        shopper("ann"),
        shopper("bob"),
        shopper("cat"),
        // ann cancels at 10:00:20, her offer (10:00:00) arrives last.
        late(
            "2026-12-01T10:00:30Z",
            "2026-12-01T10:00:20Z",
            "ann",
            "cancelled",
            "x-ann",
        ),
        late(
            "2026-12-01T10:00:40Z",
            "2026-12-01T10:00:00Z",
            "ann",
            "offer",
            "o-ann",
        ),
        // bob subscribes at 10:00:20, his offer (10:00:00) arrives last.
        identify_late(
            "2026-12-01T10:00:30Z",
            "2026-12-01T10:00:20Z",
            "bob",
            "i-bob",
            json!({"subscriber": true}),
        ),
        late(
            "2026-12-01T10:00:40Z",
            "2026-12-01T10:00:00Z",
            "bob",
            "offer",
            "o-bob",
        ),
        // cat's offer comes in order: she is sent it, and completes.
        track("2026-12-01T10:00:40Z", "cat", "offer", "o-cat"),
    ]
    .join("\n");
    let out = sim(&[journey], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:40Z cat email mail: Our offer"]
    );
    let ends = |w: &What| {
        matches!(
            w,
            What::Exited { .. } | What::Completed | What::Skipped { .. } | What::Updated { .. }
        )
    };
    assert_eq!(
        facts(&out, "ann", ends),
        [
            // Its update stays, as one before a wait does: it ran before the exit happened.
            "2026-12-01T10:00:40Z offer/note: profile updated: set offered",
            "2026-12-01T10:00:40Z offer/mail: skipped email: exited",
            "2026-12-01T10:00:40Z offer/note: exited on cancelled",
        ]
    );
    assert_eq!(
        facts(&out, "bob", ends),
        [
            // Its update stays, as one before a wait does: it ran before the exit happened.
            "2026-12-01T10:00:40Z offer/note: profile updated: set offered",
            "2026-12-01T10:00:40Z offer/mail: skipped email: exited",
            "2026-12-01T10:00:40Z offer/note: exited on trait_changed subscriber",
        ]
    );
    assert_eq!(
        facts(&out, "cat", ends),
        [
            "2026-12-01T10:00:40Z offer/note: profile updated: set offered",
            "2026-12-01T10:00:40Z offer/note: completed",
        ]
    );
}

/// An exit or a goal with a `where` that arrives before its trigger (events out of order) is
/// applied when the trigger comes, as one without: its `where` was judged when it came.
#[tokio::test]
async fn an_exit_or_goal_with_a_where_delivered_before_its_trigger_still_counts() {
    let journey = r#"
id: c
name: C
trigger: {event: cart}
exit_when:
  - {event: cancel, where: "event.k == 1"}
goal: {event: paid, where: "event.total > 10", within: 1d}
steps:
  - id: wait
    wait: 30m
  - id: mail
    send: {push: {title: "Still there?", body: "."}}
"#;
    // Each user her own device (a device is the user's who registered it last).
    let cart = |user: &str| {
        format!(
            r#"{{"at":"2026-12-01T10:10:00Z","type":"track","userId":"{user}","event":"cart","messageId":"k-{user}","timestamp":"2026-12-01T09:55:00Z"}}"#
        )
    };
    let script = format!(
        r#"
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cancels","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-cancels"}}]}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"cancels","event":"cancel","messageId":"x1","properties":{{"k":1}}}}
{}
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"other","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-other"}}]}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"other","event":"cancel","messageId":"x2","properties":{{"k":2}}}}
{{"at":"2026-12-01T10:01:00Z","type":"track","userId":"other","event":"paid","messageId":"p2","properties":{{"total":5}}}}
{}
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"pays","traits":{{"push_tokens":[{{"platform":"fcm","token":"t-pays"}}]}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"pays","event":"paid","messageId":"p3","properties":{{"total":50}}}}
{}
"#,
        cart("cancels"),
        cart("other"),
        cart("pays")
    );
    let out = sim(&[journey], &script).await;
    // Only the user whose cancel met the `where` exits; the others get the push.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:40:00Z other push mail: Still there?",
            "2026-12-01T10:40:00Z pays push mail: Still there?",
        ]
    );
    assert_eq!(
        facts(&out, "cancels", |w| matches!(w, What::Exited { .. })),
        ["2026-12-01T10:10:00Z c/wait: exited on cancel"]
    );
    let converted = |w: &What| matches!(w, What::Converted { .. });
    assert_eq!(
        facts(&out, "pays", converted),
        ["2026-12-01T10:10:00Z c/wait: converted on paid (at 2026-12-01T10:00:00Z; credited to no message: none went out before it)"]
    );
    assert_eq!(facts(&out, "other", converted), Vec::<String>::new());
}

#[tokio::test]
async fn an_exit_that_happened_after_a_late_trigger_ends_the_journey() {
    // ann abandons at 10:00:00 (delivered 5 s late) and orders at 10:00:03 (delivered at 10:00:06).
    let script = [
        shopper("ann"),
        late(
            "2026-12-01T10:00:05Z",
            "2026-12-01T10:00:00Z",
            "ann",
            "cart_abandoned",
            "c-ann",
        ),
        late(
            "2026-12-01T10:00:06Z",
            "2026-12-01T10:00:03Z",
            "ann",
            "order_completed",
            "o-ann",
        ),
    ]
    .join("\n");
    let out = sim(&[CART], &script).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Exited { .. })),
        ["2026-12-01T10:00:06Z cart/wait_30m: exited on order_completed"]
    );
}

// ---------------------------------------------------------------------------------------------
// The cart example, end to end, and its stats
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cart_example_sends_what_the_story_says() {
    let out = sim(
        &[&example_journey("cart_abandonment")],
        &example_events("cart_abandonment"),
    )
    .await;
    // ann (Paris): push after 30 minutes, email 4 hours later; her duplicate event changes nothing.
    // bob (New York): the push falls at 05:40 local, inside quiet hours; he orders before 08:00.
    // cat: a cart worth 0 does not enter.
    // dan abandons a cart before logging in: the push finds no device; the email goes to him.
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:35:00Z ann push push_reminder: You left something in your cart",
            "2026-12-01T14:35:00Z ann email low_stock_email: Still in your cart, and some of it may not last",
            "2026-12-01T15:00:00Z dan email low_stock_email: Still in your cart, and some of it may not last",
        ]
    );
    assert_eq!(
        facts(&out, "anon:browser-7", |w| matches!(w, What::Merged { .. } | What::Skipped { .. })),
        [
            "2026-12-01T11:00:00Z cart_abandonment/push_reminder: skipped push: no_address",
            "2026-12-01T11:15:00Z cart_abandonment/wait_4h: anon:browser-7 turned out to be dan: goes on as dan",
        ]
    );
    let push = messages_to(&out, "ann")[0].content.as_ref();
    assert!(
        matches!(push, Content::Push { body, data, .. }
            if body == "2 item(s) are waiting for you, Ann." && data["deeplink"] == "shop://cart/c-1001"),
        "{push:?}"
    );
    let Content::Email { text, .. } = messages_to(&out, "ann")[1].content.as_ref() else {
        panic!("not an email")
    };
    let text = text.as_deref().unwrap_or_default();
    assert!(
        // Ann's locale is fr-FR: her prices are written as in France.
        text.contains("- Trail shoes (79,90\u{a0}€): only 3 left"),
        "{text}"
    );
    assert!(text.contains("- Running socks (10,00\u{a0}€)\n"), "{text}");
    assert_eq!(
        facts(&out, "bob", outcome),
        [
            "2026-12-01T10:10:00Z cart_abandonment/-: entered v1 on cart_abandoned",
            "2026-12-01T12:00:00Z cart_abandonment/push_reminder: converted on order_completed (credited to no message: none went out before it)",
            "2026-12-01T12:00:00Z cart_abandonment/push_reminder: exited on order_completed",
        ]
    );
    assert_eq!(facts(&out, "cat", entered), Vec::<String>::new());
    assert_eq!(facts(&out, "ann", entered).len(), 1);
}

/// Asserts each (counter, value) of `expected` is in `stats`.
fn has_counters(stats: &BTreeMap<String, i64>, expected: &[(&str, i64)]) {
    for (counter, value) in expected {
        assert_eq!(
            stats.get(*counter).copied(),
            Some(*value),
            "{counter} in {stats:?}"
        );
    }
}

/// An A/B test reads its result from the stats: per path (and for the holdout) how many users
/// took it and how many of them converted.
#[tokio::test]
async fn stats_count_each_split_path_and_its_conversions() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(&example_journey("streaming_upsell")).await;
    h.play(&example_events("streaming_upsell")).await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("streaming_upsell").await.expect("stats");
    // kim took `momentum` and upgraded; bea was held out and upgraded all the same (what the
    // holdout is there to measure); lee is premium already and max's episodes are too far
    // apart: neither entered.
    let expected = [
        ("entered", 2),
        ("held_out", 1),
        ("converted", 2),
        ("step.copy_test.path.momentum.entered", 1),
        ("step.copy_test.path.momentum.converted", 1),
        ("step.copy_test.holdout.entered", 1),
        ("step.copy_test.holdout.converted", 1),
    ];
    has_counters(&stats, &expected);
    assert!(
        !stats.keys().any(|k| k.contains(".path.features.")),
        "no one took `features`: {stats:?}"
    );
    // As `GET /v1/journeys/{id}/stats` shapes them: every path listed, taken or not.
    let shaped =
        waymark::api::journey_stats(&journey(&example_journey("streaming_upsell")), 1, &stats);
    let split = shaped
        .steps
        .iter()
        .find(|s| s.id == "copy_test")
        .expect("the split step");
    let took = |entered, converted| PathStats { entered, converted };
    assert_eq!(split.paths.get("momentum"), Some(&took(1, 1)), "{split:?}");
    assert_eq!(split.paths.get("features"), Some(&took(0, 0)), "{split:?}");
    assert_eq!(split.paths.len(), 2, "{split:?}");
    assert_eq!(split.holdout, Some(took(1, 1)), "{split:?}");
    let offer = shaped
        .steps
        .iter()
        .find(|s| s.id == "offer_momentum")
        .expect("a path's step");
    assert!(
        offer.paths.is_empty() && offer.holdout.is_none(),
        "{offer:?}"
    );
}

/// A split in a loop counts who took each path once, however often she comes back to it: one
/// user who converted is 1 of 1 on her path, not 1 of 3.
#[tokio::test]
async fn a_split_in_a_loop_counts_each_user_once_on_her_path() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(
        r#"
id: lp
name: LP
trigger: {event: go}
goal: {event: buy, within: 7d}
steps:
  - id: sp
    split: {paths: [{name: a, weight: 1, goto: m}]}
  - id: m
    send: {email: {subject: x, text: y}}
  - id: w
    wait: 1d
  - id: b
    branch: {cases: [{when: "profile.n == 1", goto: done}], else: sp}
  - id: done
    exit: true
"#,
    )
    .await;
    h.play(
        r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"a","traits":{"email":"a@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"a","event":"go","messageId":"g1"}
{"at":"2026-12-03T12:00:00Z","type":"identify","userId":"a","traits":{"n":1}}
{"at":"2026-12-03T13:00:00Z","type":"track","userId":"a","event":"buy","messageId":"b1"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-06T00:00:00Z")).await;
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("lp").await.expect("stats");
    has_counters(
        &stats,
        &[
            ("step.sp.path.a.entered", 1),
            ("step.sp.path.a.converted", 1),
            ("step.m.sent.email", 3),
        ],
    );
}

/// A split's stats count people, not entries: a held-out enrollment ends at the split, so a
/// held-out user who triggers the journey three times enters it three times, while one on a
/// path still waiting is refused as enrolled; each is counted once on her path (or the
/// holdout), and her conversion once, so the lift compares like with like (it read 1 of 1
/// against 1 of 3 before). A second purchase in a later enrollment counts no second conversion
/// on the path; the journey's own counters still count every enrollment.
#[tokio::test]
async fn a_split_counts_a_user_who_enters_again_once_on_her_path_and_the_holdout() {
    let journey = r#"
id: sp
name: SP
trigger: {event: go}
reentry: after_exit
goal: {event: bought, within: 2d}
steps:
  - id: ab
    split:
      holdout: 40
      paths:
        - {name: pa, weight: 1, goto: sa}
  - id: sa
    send: {in_app: {title: "A", body: "a"}}
  - id: w
    wait: 1d
"#;
    let path_of = |user: &str| match engine::bucket(user, "sp", "ab") {
        b if b < 4_000 => "holdout",
        _ => "pa",
    };
    let held = (0..100)
        .map(|i| format!("h{i}"))
        .find(|u| path_of(u) == "holdout")
        .expect("a user in the holdout");
    let on_path = (0..100)
        .map(|i| format!("p{i}"))
        .find(|u| path_of(u) == "pa")
        .expect("a user on the path");
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(journey).await;
    let mut script = String::new();
    for u in [&held, &on_path] {
        for (i, t) in ["10:00", "14:00", "18:00"].iter().enumerate() {
            script.push_str(&format!(
                "{{\"at\":\"2026-12-01T{t}:00Z\",\"type\":\"track\",\"userId\":\"{u}\",\"event\":\"go\",\"messageId\":\"g{i}-{u}\"}}\n"
            ));
        }
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T20:00:00Z\",\"type\":\"track\",\"userId\":\"{u}\",\"event\":\"bought\",\"messageId\":\"b1-{u}\"}}\n"
        ));
        // Back a few days later: entered again (the path's wait is over), bought again.
        script.push_str(&format!(
            "{{\"at\":\"2026-12-05T10:00:00Z\",\"type\":\"track\",\"userId\":\"{u}\",\"event\":\"go\",\"messageId\":\"g9-{u}\"}}\n{{\"at\":\"2026-12-05T12:00:00Z\",\"type\":\"track\",\"userId\":\"{u}\",\"event\":\"bought\",\"messageId\":\"b2-{u}\"}}\n"
        ));
    }
    h.play(&script).await;
    h.advance_to(at("2026-12-09T00:00:00Z")).await;
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("sp").await.expect("stats");
    has_counters(
        &stats,
        &[
            // Every enrollment: the held-out user's four, the path user's two.
            ("entered", 6),
            ("held_out", 4),
            ("converted", 4),
            // Each of them once, and her conversion once.
            ("step.ab.holdout.entered", 1),
            ("step.ab.holdout.converted", 1),
            ("step.ab.path.pa.entered", 1),
            ("step.ab.path.pa.converted", 1),
        ],
    );
}

/// A purchase that converts her previous enrollment late (stamped in its window, arriving after
/// she entered again) counts her conversion on the path, and a purchase in the enrollment that
/// followed counts none more there (it counted two before).
#[tokio::test]
async fn a_late_conversion_of_her_previous_enrollment_counts_her_once_on_the_path() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(
        r#"
id: lc
name: LC
trigger: {event: go}
reentry: after_exit
goal: {event: bought, within: 2d}
steps:
  - id: ab
    split: {paths: [{name: pa, weight: 1, goto: sa}]}
  - id: sa
    send: {in_app: {title: "A", body: "a"}}
  - id: w
    wait: 1h
"#,
    )
    .await;
    h.play(
        r#"
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"u","event":"go","messageId":"g1"}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"u","event":"go","messageId":"g2"}
{"at":"2026-12-01T12:30:00Z","type":"track","userId":"u","event":"bought","messageId":"b1","timestamp":"2026-12-01T11:30:00Z"}
{"at":"2026-12-01T13:30:00Z","type":"track","userId":"u","event":"bought","messageId":"b2"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("lc").await.expect("stats");
    has_counters(
        &stats,
        &[
            ("entered", 2),
            ("converted", 2),
            ("step.ab.path.pa.entered", 1),
            ("step.ab.path.pa.converted", 1),
        ],
    );
}

/// A split in a loop keeps her on the path she took, also when she logs in between two passes
/// (her user id changes, so the hash would too): the visitor who took path `b` gets `b`'s
/// messages again after logging in as `ann` (whose own hash is `a`), as the stats count her.
#[tokio::test]
async fn a_split_in_a_loop_keeps_her_path_after_she_logs_in() {
    let journey = r#"
id: s
name: S
trigger: {event: visited}
steps:
  - id: pick
    split:
      holdout: 10
      paths:
        - {name: a, weight: 1, goto: send_a}
        - {name: b, weight: 1, goto: send_b}
  - id: send_a
    send: {in_app: {title: "A", body: "a"}}
    next: wait
  - id: send_b
    send: {in_app: {title: "B", body: "b"}}
  - id: wait
    wait: 1d
    next: pick
"#;
    // Each visitor's id hashes to path b, her login's to elsewhere (ann's to the holdout,
    // eve's to path a): the choice kept, not the hash, makes the test.
    let path_of = |user: &str| match engine::bucket(user, "s", "pick") {
        b if b < 1_000 => "holdout",
        b if b < 5_500 => "a",
        _ => "b",
    };
    let logins = [("v1", "ann", "holdout"), ("v2", "eve", "a")];
    for (visitor, user, hashed) in logins {
        assert_eq!(path_of(&format!("anon:{visitor}")), "b", "{visitor}");
        assert_eq!(path_of(user), hashed, "{user}");
    }
    let script = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"v1","event":"visited","messageId":"m1"}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"v2","event":"visited","messageId":"m2"}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"v1","traits":{"email":"ann@example.com"},"messageId":"m3"}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"eve","anonymousId":"v2","traits":{"email":"eve@example.com"},"messageId":"m4"}
"#;
    let out = sim(&[journey], script).await;
    for (visitor, user, _) in logins {
        // Her first pass is on the visitor's timeline, the next ones on her own.
        let splits: Vec<String> = [format!("anon:{visitor}"), user.to_string()]
            .iter()
            .flat_map(|id| entries(&out, id))
            .filter_map(|e| match &e.what {
                What::Split { path, again } => Some(format!("{} {path} again={again}", e.at)),
                What::HeldOut { .. } => Some(format!("{} held out", e.at)),
                _ => None,
            })
            .collect();
        assert_eq!(
            splits.get(..3),
            Some(
                &[
                    "2026-12-01T10:00:00Z b again=false".to_string(),
                    "2026-12-02T10:00:00Z b again=true".to_string(),
                    "2026-12-03T10:00:00Z b again=true".to_string(),
                ][..]
            ),
            "{user}: {splits:?}"
        );
        let sent = outbox_of(&out, user);
        assert!(
            !sent.is_empty() && sent.iter().all(|m| m.contains("send_b")),
            "{user}: only path b's message: {sent:?}"
        );
    }
}

/// A goal event that arrives late, stamped before the user reached a split, converts the
/// enrollment but is no path's of that split: the A/B result counts only conversions after a
/// path was taken.
#[tokio::test]
async fn a_late_goal_stamped_before_a_split_is_no_paths_conversion() {
    let journey = r#"
id: ab
name: AB
trigger: {event: start}
goal: {event: buy, within: 1d}
steps:
  - id: pause
    wait: 1h
  - id: pick
    split:
      paths:
        - {weight: 1, goto: a, name: a}
        - {weight: 1, goto: b, name: b}
  - id: a
    send: {push: {title: A, body: "."}}
    next: done
  - id: b
    send: {push: {title: B, body: "."}}
  - id: done
    exit: true
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(journey).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"u","traits":{"push_tokens":[{"platform":"fcm","token":"t-u"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"u","event":"start","messageId":"s1"}
{"at":"2026-12-01T11:30:00Z","type":"track","userId":"u","event":"buy","messageId":"b1","timestamp":"2026-12-01T10:15:00Z"}
"#)
    .await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("ab").await.expect("stats");
    assert_eq!(stats.get("converted"), Some(&1), "{stats:?}");
    assert!(
        !stats
            .keys()
            .any(|k| k.contains(".path.") && k.ends_with(".converted")),
        "{stats:?}"
    );
}

#[tokio::test]
async fn stats_counters_equal_what_the_timelines_say() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(&example_journey("cart_abandonment")).await;
    // The example, plus dee, who has no device: her push is skipped, her email goes out.
    let script = format!(
        "{}\n{}\n{}",
        example_events("cart_abandonment"),
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"dee","traits":{"email":"dee@example.com"}}"#,
        r#"{"at":"2026-12-01T10:15:00Z","type":"track","userId":"dee","event":"cart_abandoned","messageId":"cart-dee-1","properties":{"cart_id":"c-1004","total":30,"currency":"EUR","items":[{"name":"Cap","price":30}]}}"#
    );
    h.play(&script).await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;

    let mut all = Vec::new();
    // dan's view includes what happened before his login (as anon:browser-7).
    for user in ["ann", "bob", "cat", "dee", "dan"] {
        all.extend(h.rt.user(user).await.expect("user").timeline);
    }
    let from_timeline = timeline::counters(&all)
        .remove("cart_abandonment")
        .unwrap_or_default();
    // The scheduler's next minute folds the newest timeline records into the counters.
    h.rt.tick().await.expect("tick");
    let mut stats = h.rt.stats("cart_abandonment").await.expect("stats");
    stats.retain(|_, v| *v != 0);
    assert_eq!(stats, from_timeline);

    // Converted: bob, before any message reached him, and dan, credited to the email.
    let expected = [
        ("entered", 4),
        ("converted", 2),
        ("step.low_stock_email.converted", 1),
        ("exited", 1),
        ("completed", 3),
        ("step.push_reminder.sent.push", 1),
        ("step.push_reminder.skipped.no_address", 2),
        ("step.low_stock_email.sent.email", 3),
        ("step.wait_30m.entered", 4),
    ];
    has_counters(&stats, &expected);
}

// ---------------------------------------------------------------------------------------------
// Template errors
// ---------------------------------------------------------------------------------------------

#[test]
fn template_errors_fail_parsing_with_file_line_and_column() {
    let journey = r#"id: cart
name: Cart
trigger:
  event: cart_abandoned
steps:
  - id: push
    send:
      push:
        title: "Still thinking?"
        body: "{{ event.items | length }} items"
  - id: mail
    send:
      email:
        subject: "Your cart"
        html: |
          <p>Hi {{ profile.first_name }}</p>
          <p>{{ event.total }}</p>
"#;
    assert!(waymark::dsl::parse("cart.yaml", journey).is_ok());
    let cases = [
        // (replace, with, file:line:col, the message mentions)
        (
            "{{ event.items | length }}",
            "{{ cart.items }}",
            "cart.yaml:10:19:",
            "unknown variable `cart`",
        ),
        (
            "{{ event.items | length }}",
            "{{ event.items ",
            "cart.yaml:10:32:",
            "template error",
        ),
        (
            "{{ event.items | length }}",
            "{% for i in event.items %}",
            // At the `{% for` left open, not at the text's last stretch (` items`), where
            // MiniJinja finds the end of the text.
            "cart.yaml:10:16:",
            "add `{% endfor %}`",
        ),
        (
            "Still thinking?",
            "{{ basket }}",
            "cart.yaml:9:20:",
            "unknown variable `basket`",
        ),
    ];
    for (from, to, position, needle) in cases {
        let errors = waymark::dsl::parse("cart.yaml", &journey.replace(from, to))
            .expect_err("a bad template must not parse");
        let first = errors[0].to_string();
        assert!(
            first.starts_with(position),
            "{first} should be at {position}"
        );
        assert!(first.contains(needle), "{first} should mention {needle}");
    }
}

#[test]
fn template_errors_in_a_multi_line_template_point_at_the_line() {
    let journey = r#"id: cart
name: Cart
trigger:
  event: cart_abandoned
steps:
  - id: mail
    send:
      email:
        subject: "Your cart"
        html: |
          <p>Hi {{ profile.first_name }}</p>
          <p>{{ basket.total }}</p>
"#;
    let errors = waymark::dsl::parse("cart.yaml", journey).expect_err("unknown variable");
    let first = errors[0].to_string();
    assert!(first.starts_with("cart.yaml:12:"), "{first}");
    assert!(first.contains("unknown variable `basket`"), "{first}");
}

/// In a quoted string the template's lines start after its `\n` escapes and its blank
/// lines, not at each line of the file: JSON journeys write every template so.
#[test]
fn template_errors_in_a_quoted_multi_line_template_point_at_the_line() {
    let json = r#"{
  "id": "tj",
  "name": "TJ",
  "trigger": {"event": "go"},
  "steps": [
    {"id": "m", "send": {"email": {"subject": "x", "text": "Hi\n\nYour cart:\n{{ event.items | lenght }}\nBye"}}}
  ]
}
"#;
    let errors = waymark::dsl::parse("tj.json", json).expect_err("unknown filter");
    let line = json.lines().nth(5).expect("line 6");
    let column = line.find("lenght").expect("the filter") + 1;
    assert_eq!(
        (errors[0].line, errors[0].column),
        (6, column),
        "{}",
        errors[0]
    );
    let yaml = r#"id: ty
name: TY
trigger: {event: go}
steps:
  - id: b
    send:
      email:
        subject: y
        text: "first
          second

          third {{ profile.y | lowerr }}"
"#;
    let errors = waymark::dsl::parse("ty.yaml", yaml).expect_err("unknown filter");
    assert_eq!(
        (errors[0].line, errors[0].column),
        (12, 32),
        "{}",
        errors[0]
    );
    // JSON's `\u000a` breaks a line as `\n` does; a `\n` that ends the file's line starts the
    // template's next line on the file's next; a folded block (`>`) joins its lines but at a
    // blank one.
    let json = "{\"id\": \"c\", \"name\": \"C\", \"trigger\": {\"event\": \"go\"}, \"steps\": [\n  {\"id\": \"m\", \"send\": {\"email\": {\"subject\": \"x\", \"text\": \"Hi\\u000athere\\u000a{{ profile.x | titel }}\"}}}]}\n";
    let errors = waymark::dsl::parse("c.json", json).expect_err("unknown filter");
    let line = json.lines().nth(1).expect("line 2");
    let column = line.find("titel").expect("the filter") + 1;
    assert_eq!(
        (errors[0].line, errors[0].column),
        (2, column),
        "{}",
        errors[0]
    );
    let yaml = r#"id: f
name: F
trigger: {event: go}
steps:
  - id: a
    send:
      email:
        subject: x
        text: >
          Hello there
          my friend

          {{ profile.x | titel }}
  - id: b
    send:
      email:
        subject: y
        text: "first\n
          {{ profile.y | lowerr }}"
"#;
    let errors = waymark::dsl::parse("f.yaml", yaml).expect_err("unknown filters");
    let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(13, 26), (19, 26)], "{errors:?}");
    // A line before a quoted template that ends in `>>` is no folded block's header; a more
    // indented line in a folded block keeps its line breaks.
    let yaml = r#"id: h
name: H
trigger: {event: go}
steps:
  - id: a
    send:
      email:
        subject: "Deals >>"
        text: "Hi\n{{ profile.x | titel }}"
  - id: b
    send:
      email:
        subject: y
        text: >
          Hello
            - item
          {{ profile.y | lowerr }}
"#;
    let errors = waymark::dsl::parse("h.yaml", yaml).expect_err("unknown filters");
    let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(9, 35), (17, 26)], "{errors:?}");
}

/// A scheduler run that catches up hours of minutes (`waymark dev` at high speed runs one every
/// 50 ms of real time, each over an hour and more) reads only the timer partitions that hold
/// timers where the store can list them: one listing, not each minute's sixteen partitions.
#[tokio::test]
async fn a_catch_up_reads_only_the_timer_partitions_that_hold_timers() {
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(
        r#"
id: later
name: Later
trigger: {event: signed_up}
steps:
  - id: two_hours
    wait: 2h
  - id: hello
    send: {push: {title: "Hi", body: "."}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}
"#)
    .await;
    // The scheduler runs at 09:00, then three hours pass before its next run; the wait's
    // timer is in the store for 11:00.
    h.rt.tick().await.expect("tick");
    faulty.take_calls();
    h.clock.set(at("2026-12-01T12:00:00Z"));
    h.rt.tick().await.expect("tick");
    let calls = faulty.take_calls();
    assert_eq!(calls.get("partitions_between"), Some(&1), "{calls:?}");
    // The one partition that holds a timer (it was each of 181 minutes' 16).
    assert_eq!(calls.get("timer query"), Some(&1), "{calls:?}");
    h.advance_to(at("2026-12-01T12:01:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T12:00:00Z ann push hello: Hi"]);
}

/// An update of one field of an object trait is written as `validate` advises for a dotted
/// name (`address.city`): nested, as one expression when it is rendered, and then read as
/// `profile.address.city` by a condition and a template alike.
#[tokio::test]
async fn update_of_a_nested_trait_written_as_validate_advises_is_read_by_its_path() {
    let journey = r#"
id: moved
name: Moved
trigger: {event: moved}
reentry: after_exit
steps:
  - id: keep
    update: {set: {address: "{{ {'city': event.city | title} }}", home: {city: "{{ event.city | title }}", tags: ["{{ event.city }}", 2]}}}
  - id: pick
    branch: {cases: [{when: "profile.address.city == 'Paris'", goto: paris}], else: other}
  - id: paris
    send: {push: {title: "Bienvenue à {{ profile.address.city }}", body: "."}}
    next: done
  - id: other
    send: {push: {title: "Welcome to {{ profile.address.city }}", body: "."}}
  - id: done
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"moved","messageId":"m-1","properties":{"city":"paris"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:00Z ann push paris: Bienvenue à Paris"]
    );
    // Written nested, with the template inside: rendered there.
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(journey).await;
    h.play(script).await;
    let view = h.rt.user("ann").await.expect("ann");
    let traits = view.profile.expect("a profile").traits;
    assert_eq!(
        traits["home"],
        json!({"city": "Paris", "tags": ["paris", 2]})
    );
    // A second move without a city leaves the whole `home` as it was, and says so.
    h.play(r#"
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"moved","messageId":"m-2","properties":{}}
"#)
    .await;
    let view = h.rt.user("ann").await.expect("ann");
    assert_eq!(
        view.profile.expect("a profile").traits["home"],
        json!({"city": "Paris", "tags": ["paris", 2]})
    );
    let failed = left_alone(&view.timeline);
    assert!(failed.contains(&"home".to_string()), "{failed:?}");
}

/// An address copied from an event that does not carry one is missing, as any other value
/// is: the trait is left as it was and the timeline says so, not that it is badly written.
#[tokio::test]
async fn a_missing_address_in_an_update_is_told_as_missing() {
    let journey = r#"
id: contact
name: Contact
trigger: {event: checkout_started}
steps:
  - id: remember
    update: {set: {phone: "{{ event.phone }}", email: "{{ event.email | lower }}"}}
"#;
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(journey).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"phone":"+33612345678","email":"ann@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"checkout_started","messageId":"c-1","properties":{}}
"#)
    .await;
    let view = h.rt.user("ann").await.expect("ann");
    let traits = view.profile.as_ref().expect("a profile").traits.clone();
    assert_eq!(traits["phone"], json!("+33612345678"));
    assert_eq!(traits["email"], json!("ann@example.com"));
    let failed: Vec<(String, String)> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Updated { failed, .. } => Some(failed.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let missing = "its value is missing for this user: the trait is left as it was";
    assert_eq!(
        failed,
        [
            ("email".to_string(), missing.to_string()),
            ("phone".to_string(), missing.to_string())
        ]
    );

    // A locale that is none is left out as an identify's would be.
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(
        r#"
id: lang
name: Lang
trigger: {event: picked}
steps:
  - id: remember
    update: {set: {locale: "{{ event.loc }}"}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"locale":"fr-FR"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"picked","messageId":"p-1","properties":{"loc":"not a locale!!"}}
"#)
    .await;
    let view = h.rt.user("ann").await.expect("ann");
    let traits = view.profile.as_ref().expect("a profile").traits.clone();
    assert_eq!(traits["locale"], json!("fr-FR"));
    assert_eq!(left_alone(&view.timeline), ["locale"]);
}

/// A `date` whose fixed zone or format cannot work would skip every send as `render_error`:
/// `validate` refuses it at its place in the file, with the zone advice `timezone:` gets.
#[test]
fn a_date_filter_with_a_fixed_zone_or_format_that_cannot_work_is_refused() {
    let journey = |body: &str| {
        format!(
            "id: j\nname: J\ntrigger: {{event: booked}}\nsteps:\n  - id: tell\n    send:\n      push:\n        title: Booked\n        body: \"{body}\"\n"
        )
    };
    for (body, said) in [
        (
            "At {{ event.date | date('%H:%M', tz='Europe/Pariss') }}",
            "j.yaml:9:49: steps[0].send.push.body: date: `Europe/Pariss` is not an IANA time zone: did you mean `Europe/Paris`?",
        ),
        (
            "On {{ event.date | date('%') }}",
            "j.yaml:9:40: steps[0].send.push.body: date: cannot format with `%`: ",
        ),
    ] {
        let errors = waymark::dsl::parse("j.yaml", &journey(body)).expect_err(body);
        assert!(errors[0].to_string().starts_with(said), "{}", errors[0]);
    }
    waymark::dsl::parse(
        "j.yaml",
        &journey("At {{ event.date | date('%H:%M', tz='Europe/Paris') }}"),
    )
    .expect("valid");
}

/// What a time condition read is told in full, a day as well as a date and time, in a
/// trigger's refusal and a branch's `held` (a day is no time to a condition: seeing it is
/// what explains the condition); a phone number, however written, is still not shown.
#[tokio::test]
async fn explanations_show_the_days_and_times_a_condition_read_but_not_a_phone_number() {
    let journey = r#"
id: renewal
name: Renewal
trigger:
  event: plan_changed
  where: "profile.renews_on < time('2026-12-01T00:00:00Z') or event.contact == 'x'"
steps:
  - id: pick
    branch:
      cases: [{when: "event.starts_at > time('2027-01-01T00:00:00Z') or profile.renews_on > now()", goto: later}]
      else: soon
  - id: later
    exit: true
  - id: soon
    exit: true
"#;
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"renews_on":"2026-11-01T00:00:00Z"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"renews_on":"2027-02-01"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"plan_changed","messageId":"p-ann","properties":{"starts_at":"2026-12-02","contact":"+33612345678"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"plan_changed","messageId":"p-bob","properties":{"starts_at":"2026-12-02T10:00:00Z","contact":"06 12 34 56 78"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        refusals(entries(&out, "bob")),
        ["2026-12-01T10:00:00Z renewal [] on plan_changed: condition: `where: profile.renews_on < time('2026-12-01T00:00:00Z') or event.contact == 'x'` was false at this event (profile.renews_on = \"2027-02-01\", event.contact set (not shown))"]
    );
    let held: Vec<Option<String>> = entries(&out, "ann")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Branched { held, .. } => Some(held.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        held,
        [Some(
            "event.starts_at = \"2026-12-02\", profile.renews_on = \"2026-11-01T00:00:00Z\""
                .to_string()
        )]
    );
}

/// What a webhook header value may hold, as the refusal says: anything but control characters
/// (text beyond ASCII, `zoë`, passes, as the HTTP client sends it).
#[test]
fn a_header_value_is_refused_for_control_characters_only() {
    assert_eq!(
        waymark::webhook::header_value_problem("my-zoë/shop 1"),
        None
    );
    let why = waymark::webhook::header_value_problem("a\r\nX-Evil: 1").expect("a line break");
    assert!(
        why.contains("no line breaks or other control characters"),
        "{why}"
    );
    assert!(waymark::webhook::header_value_problem("a\u{7f}").is_some());
}

/// `why` says what an update changed, and what it left as it was and why.
#[test]
fn an_update_is_told_with_what_it_set_and_what_it_left() {
    let updated = |set: &[&str], unset: &[&str], failed: &[(&str, &str)]| What::Updated {
        set: set.iter().map(|s| s.to_string()).collect(),
        unset: unset.iter().map(|s| s.to_string()).collect(),
        failed: failed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        describe(&updated(
            &["last_total", "orders"],
            &["coupon"],
            &[("email", "must be an address")]
        )),
        "profile updated: set last_total, orders; unset coupon; not `email` (must be an address)"
    );
    assert_eq!(
        describe(&updated(&["plan"], &[], &[])),
        "profile updated: set plan"
    );
    assert_eq!(describe(&updated(&[], &[], &[])), "profile updated");
}

/// The traits the timeline's `update` steps left as they were (their `failed`), in order.
fn left_alone(timeline: &[waymark::timeline::Entry]) -> Vec<String> {
    timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Updated { failed, .. } => Some(failed.keys().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Two runtimes of one store sharing a catalog (`waymark dev`'s engine worker and its API):
/// what one publishes, the other runs from its next message, whatever its cache's time.
#[tokio::test]
async fn a_runtime_sharing_a_catalog_runs_what_the_other_published_at_once() {
    use std::sync::Arc;
    use waymark::clock::{Clock, ManualClock};
    use waymark::runtime::Runtime;
    let clock = Arc::new(ManualClock::new(at("2026-12-01T10:00:00Z")));
    let store = waymark::store::MemoryStore::new();
    let runtime = |catalog_ttl| {
        let (sender, _) = waymark::outbox::OutboxSender::memory(clock.clone());
        Runtime::new(
            Arc::new(store.clone()),
            Arc::new(waymark::simulate::DelayQueue::new(clock.clone())),
            Arc::new(sender),
            clock.clone(),
            catalog_ttl,
            Config::default(),
        )
    };
    let hour = std::time::Duration::from_secs(3600);
    let api = runtime(hour);
    let engine = runtime(hour).sharing_catalog(&api);
    let on_its_own = runtime(hour);
    let v1 = "id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - {id: w, wait: 1h}\n";
    api.catalog
        .publish(&journey(v1), &api.config.topics, clock.now())
        .await
        .expect("v1");
    for rt in [&engine, &on_its_own] {
        let latest = rt.catalog.latest("j").await.expect("read").expect("j");
        assert_eq!(latest.version, 1);
    }
    let stopped = format!("{v1}status: stopped\n");
    api.catalog
        .publish(&journey(&stopped), &api.config.topics, clock.now())
        .await
        .expect("v2");
    let latest = engine.catalog.latest("j").await.expect("read").expect("j");
    assert_eq!(
        (latest.version, latest.journey.status),
        (2, JourneyStatus::Stopped)
    );
    // A runtime with a catalog of its own reads it once its cache runs out.
    let cached = on_its_own
        .catalog
        .latest("j")
        .await
        .expect("read")
        .expect("j");
    assert_eq!(cached.version, 1);
}

/// An SMS SNS would refuse for this user (empty, or over its 1,600 characters) is skipped as
/// a `render_error` that says why, not sent to be `rejected`.
#[tokio::test]
async fn an_sms_sns_would_refuse_is_a_render_error_that_says_why() {
    let journey = r#"
id: note
name: Note
trigger: {event: noted}
steps:
  - id: tell
    send: {sms: {body: "{{ event.note }}"}}
"#;
    let long = "x".repeat(1_601);
    let script = format!(
        r#"{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"a","traits":{{"phone":"+33612345678"}}}}
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"b","traits":{{"phone":"+33612345679"}}}}
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"c","traits":{{"phone":"+33612345670"}}}}
{{"at":"2026-12-01T10:00:00Z","userId":"a","event":"noted","properties":{{"note":"{long}"}}}}
{{"at":"2026-12-01T10:00:00Z","userId":"b","event":"noted","properties":{{"note":""}}}}
{{"at":"2026-12-01T10:00:00Z","userId":"c","event":"noted","properties":{{"note":"{}"}}}}
"#,
        "y".repeat(1_600)
    );
    let out = sim(&[journey], &script).await;
    let skipped = |user: &str| -> Vec<String> {
        entries(&out, user)
            .iter()
            .filter_map(|e| match &e.what {
                What::Skipped { reason, detail, .. } => {
                    Some(format!("{reason}: {}", detail.as_deref().unwrap_or("")))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        skipped("a"),
        ["render_error: body: the SMS is 1601 characters for this user; SNS sends at most 1600: shorten it"]
    );
    assert_eq!(
        skipped("b"),
        ["render_error: body: the SMS is empty for this user"]
    );
    assert!(skipped("c").is_empty());
    assert_eq!(messages_to(&out, "c").len(), 1);
}

/// An SMS carries no no-break space: `currency` writes `89,90\u{a0}€` for a `de` user and
/// `1\u{202f}234,50\u{a0}€` for a `fr` one, and a user's data may bring a figure space, none
/// of them in the GSM alphabet; one alone would make SNS send the whole SMS as UCS-2, in parts
/// of 70 characters, not 160. Each is a plain space in the body; a push keeps CLDR's spaces.
#[tokio::test]
async fn an_sms_with_a_price_is_sent_in_gsm_spaces() {
    let journey = r#"
id: paid
name: Paid
trigger: {event: paid}
steps:
  - id: tell
    send: {sms: {body: "Total {{ event.total | currency('EUR') }}{{ event.note }}"}}
  - id: push
    send: {push: {title: "Total {{ event.total | currency('EUR') }}"}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"de","traits":{"phone":"+4915112345678","locale":"de","push_tokens":[{"platform":"fcm","token":"t-de"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"fr","traits":{"phone":"+33612345678","locale":"fr","push_tokens":[{"platform":"fcm","token":"t-fr"}]}}
{"at":"2026-12-01T10:00:00Z","userId":"de","event":"paid","properties":{"total":89.9,"note":""}}
{"at":"2026-12-01T10:00:00Z","userId":"fr","event":"paid","properties":{"total":1234.5,"note":"\u2007!\u2028ok"}}
"#;
    let out = sim(&[journey], script).await;
    let sent = |user: &str| -> Vec<String> {
        messages_to(&out, user)
            .iter()
            .map(|m| headline(&m.content))
            .collect()
    };
    assert_eq!(sent("de"), ["Total 89,90 €", "Total 89,90\u{a0}€"]);
    assert_eq!(
        sent("fr"),
        [
            "Total 1 234,50 € !\u{2028}ok",
            "Total 1\u{202f}234,50\u{a0}€"
        ]
    );
}

/// Another `wait_until` for the time that just came, reached within its minute, goes on at once
/// too: only a loop back to the same wait waits for the next. A Paris user enters on Monday
/// afternoon: `morning` wakes her on Tuesday at 09:00, and `tuesday` (09:00 on Tuesdays) is
/// reached then, so the email goes at 09:00 that Tuesday. (Before, the time noted as come for
/// the first wait held the second until the next Tuesday.) Two such waits in a loop go round
/// once a day, not again and again within the minute.
#[tokio::test]
async fn a_second_wait_until_for_the_time_that_came_goes_on_at_once() {
    let chained = r#"
id: c
name: C
trigger: {event: t}
steps:
  - id: morning
    wait_until: {time: "09:00"}
  - id: tuesday
    wait_until: {time: "09:00", weekdays: [tue]}
  - id: s
    send: {email: {subject: "c", text: "x"}}
"#;
    let looped = r#"
id: l
name: L
trigger: {event: go}
steps:
  - id: first
    wait_until: {time: "09:00"}
  - id: second
    wait_until: {time: "09:00"}
  - id: s
    send: {push: {title: "l", body: "."}}
    next: first
"#;
    let script = [
        r#"{"at":"2026-11-30T12:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@x.com","timezone":"Europe/Paris","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#,
        r#"{"at":"2026-11-30T12:00:00Z","userId":"ann","event":"t"}"#,
        r#"{"at":"2026-11-30T12:00:00Z","userId":"ann","event":"go"}"#,
        r#"{"at":"2026-12-02T12:00:00Z","userId":"ann","event":"noop"}"#,
    ]
    .join("\n");
    let out = sim(&[chained, looped], &script).await;
    let mut first_days: Vec<String> = outbox_of(&out, "ann")
        .into_iter()
        .filter(|l| l.as_str() < "2026-12-03")
        .collect();
    first_days.sort();
    assert_eq!(
        first_days,
        [
            "2026-12-01T08:00:00Z ann email s: c",
            "2026-12-01T08:00:00Z ann push s: l",
            "2026-12-02T08:00:00Z ann push s: l",
        ]
    );
}

/// A `wait_until` for a time of day reached during that very minute goes on at once: 09:00 is
/// now, not tomorrow (a schedule at 09:00 whose first step waits for 09:00 in the user's zone;
/// a user reaching it at 09:00:40). From 09:01 on it is tomorrow's, and on a day the
/// `weekdays` leave out, the next one's. A loop back to it in the same minute (a reply at
/// 09:00:20) waits for tomorrow's: the time came once today.
#[tokio::test]
async fn a_wait_until_reached_at_its_minute_goes_on_at_once() {
    let morning = r#"
id: m
name: M
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "09:00"}
  - id: s
    send: {email: {subject: "s", text: "x"}}
"#;
    let weekly = r#"
id: w
name: W
trigger: {event: t}
steps:
  - id: until
    wait_until: {time: "09:00", weekdays: [mon]}
  - id: s
    send: {sms: {body: "w"}}
"#;
    let looped = r#"
id: l
name: L
trigger: {event: go}
steps:
  - id: until
    wait_until: {time: "09:00"}
  - id: s
    send: {push: {title: "l", body: "."}}
  - id: reply
    wait_for: {event: tap, timeout: 1h, on_event: until, on_timeout: done}
  - id: done
    exit: true
"#;
    let scheduled = r#"
id: d
name: D
trigger: {schedule: {cron: "0 9 * * *", timezone: user}}
reentry: never
steps:
  - id: until
    wait_until: {time: "09:00"}
  - id: s
    send: {email: {subject: "d", text: "x"}}
"#;
    // Paris: 09:00 is 08:00Z. 2026-12-01 is a Tuesday.
    let user = |id: &str| {
        format!(
            r#"{{"at":"2026-11-30T12:00:00Z","type":"identify","userId":"{id}","traits":{{"email":"{id}@x.com","phone":"+14155550100","timezone":"Europe/Paris","push_tokens":[{{"platform":"fcm","token":"t-{id}"}}]}}}}"#
        )
    };
    let script = [
        user("sharp"),
        user("late"),
        user("after"),
        user("loop"),
        r#"{"at":"2026-12-01T08:00:00Z","userId":"sharp","event":"t"}"#.to_string(),
        r#"{"at":"2026-12-01T08:00:40Z","userId":"late","event":"t"}"#.to_string(),
        r#"{"at":"2026-12-01T08:01:00Z","userId":"after","event":"t"}"#.to_string(),
        r#"{"at":"2026-12-01T08:00:00Z","userId":"loop","event":"go"}"#.to_string(),
        r#"{"at":"2026-12-01T08:00:20Z","userId":"loop","event":"tap"}"#.to_string(),
    ]
    .join("\n");
    let out = sim(&[morning, weekly, looped], &script).await;
    let cases = [
        (
            "sharp",
            vec![
                "2026-12-01T08:00:00Z sharp email s: s",
                "2026-12-07T08:00:00Z sharp sms s: w",
            ],
        ),
        (
            "late",
            vec![
                "2026-12-01T08:00:40Z late email s: s",
                "2026-12-07T08:00:00Z late sms s: w",
            ],
        ),
        (
            "after",
            vec![
                "2026-12-02T08:00:00Z after email s: s",
                "2026-12-07T08:00:00Z after sms s: w",
            ],
        ),
        (
            "loop",
            vec![
                "2026-12-01T08:00:00Z loop push s: l",
                "2026-12-02T08:00:00Z loop push s: l",
            ],
        ),
    ];
    for (user, expected) in cases {
        assert_eq!(outbox_of(&out, user), expected, "{user}");
    }
    let woke = facts(&out, "sharp", |w| matches!(w, What::Woke { .. }));
    assert_eq!(
        woke[0], "2026-12-01T08:00:00Z m/until: woke (it is 09:00)",
        "{woke:?}"
    );

    let out = sim(&[scheduled], &user("ann")).await;
    assert_eq!(outbox(&out), ["2026-12-01T08:00:00Z ann email s: d"]);

    // The 09:00 run's entry taken at 09:01:05 (an engine behind its queue, or its retry): the
    // user reached the wait at 09:00 in the journey's own time, so it goes on then, not
    // tomorrow.
    let h = Harness::new("2026-11-30T12:00:00Z");
    h.publish(scheduled).await;
    h.play(&user("bea")).await;
    h.clock.set(at("2026-12-01T08:01:05Z"));
    let enter = waymark::queue::Message::Enter {
        user_id: "bea".into(),
        journey: "d".into(),
        cause: "schedule:2026-12-01T08:00:00Z".into(),
        at: at("2026-12-01T08:00:00Z"),
        version: None,
    };
    h.rt.handle(&enter).await.expect("entered");
    h.advance_to(at("2026-12-01T09:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T08:01:05Z bea email s: d"]);
    // A schedule's run is the engine's own time however late it is taken (a long scan).
    let h = Harness::new("2026-11-30T12:00:00Z");
    h.publish(scheduled).await;
    h.play(&user("cal")).await;
    h.clock.set(at("2026-12-01T08:40:00Z"));
    let enter = waymark::queue::Message::Enter {
        user_id: "cal".into(),
        journey: "d".into(),
        cause: "schedule:2026-12-01T08:00:00Z".into(),
        at: at("2026-12-01T08:00:00Z"),
        version: None,
    };
    h.rt.handle(&enter).await.expect("entered");
    h.advance_to(at("2026-12-01T09:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T08:40:00Z cal email s: d"]);

    // After a `wait_for` met at once by an app's event, the journey's time is that event's
    // stamp, bounded as an event's: the app_opened stamped 09:00:30 Paris came an hour before
    // the late run took the entry, so 09:00 is tomorrow's.
    let opened = r#"
id: o
name: O
trigger: {schedule: {cron: "0 9 * * *", timezone: user}}
reentry: never
steps:
  - id: opened
    wait_for: {event: app_opened, timeout: 1d, on_timeout: done}
  - id: until
    wait_until: {time: "09:00"}
  - id: s
    send: {email: {subject: "o", text: "x"}}
  - id: done
    exit: true
"#;
    let h = Harness::new("2026-11-30T12:00:00Z");
    h.publish(opened).await;
    h.play(&[
        user("dee"),
        r#"{"at":"2026-12-01T08:50:00Z","userId":"dee","event":"app_opened","messageId":"a-1","timestamp":"2026-12-01T08:00:30Z"}"#.to_string(),
    ].join("\n"))
    .await;
    h.clock.set(at("2026-12-01T09:00:00Z"));
    let enter = waymark::queue::Message::Enter {
        user_id: "dee".into(),
        journey: "o".into(),
        cause: "schedule:2026-12-01T08:00:00Z".into(),
        at: at("2026-12-01T08:00:00Z"),
        version: None,
    };
    h.rt.handle(&enter).await.expect("entered");
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-02T08:00:00Z dee email s: o"]);

    // A re-entry's journey time is its previous enrollment's end, but what moved it is the
    // app's trigger, delivered late: bounded as an event's. Her first enrollment sends at
    // 09:00 and ends at 09:00:20; the second trigger, stamped 09:00:10, arrives at 11:30.
    let again = r#"
id: ag
name: Ag
trigger: {event: t}
reentry: after_exit
steps:
  - id: until
    wait_until: {time: "09:00"}
  - id: s
    send: {email: {subject: "ag", text: "x"}}
  - id: linger
    wait: 20s
"#;
    let script = [
        user("fen"),
        r#"{"at":"2026-12-01T07:00:00Z","userId":"fen","event":"t","messageId":"t-1"}"#.to_string(),
        r#"{"at":"2026-12-01T10:30:00Z","userId":"fen","event":"t","messageId":"t-2","timestamp":"2026-12-01T08:00:10Z"}"#.to_string(),
    ]
    .join("\n");
    let out = sim(&[again], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T08:00:00Z fen email s: ag",
            "2026-12-02T08:00:00Z fen email s: ag",
        ]
    );

    // A wake-up taken days late (an outage) is not at its minute: a Monday-only wait reached
    // on Monday and taken on Wednesday waits for the next Monday.
    let monday = r#"
id: mo
name: Mo
trigger: {event: t}
steps:
  - id: pause
    wait: 10m
  - id: until
    wait_until: {time: "09:00", weekdays: [mon]}
  - id: s
    send: {email: {subject: "mo", text: "x"}}
"#;
    let h = Harness::new("2026-11-30T06:00:00Z");
    h.publish(monday).await;
    // 2026-11-30 is a Monday: the wake-up is due at 09:00 Paris, and taken on Wednesday.
    h.play(
        &[
            user("eli").replace("2026-11-30T12:00:00Z", "2026-11-30T07:00:00Z"),
            r#"{"at":"2026-11-30T07:50:00Z","userId":"eli","event":"t"}"#.to_string(),
        ]
        .join("\n"),
    )
    .await;
    h.clock.set(at("2026-12-02T14:00:00Z"));
    h.advance_to(at("2026-12-08T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-07T08:00:00Z eli email s: mo"]);

    // Much later (an event stamped 09:00:10 that arrives in the evening, or days later): the
    // next 09:00, not at once at any hour.
    let late = [
        user("dan"),
        user("bea"),
        r#"{"at":"2026-12-04T01:00:00Z","userId":"dan","event":"t","timestamp":"2026-12-01T08:00:10Z"}"#.to_string(),
        r#"{"at":"2026-12-01T20:00:00Z","userId":"bea","event":"t","timestamp":"2026-12-01T08:00:20Z"}"#.to_string(),
    ]
    .join("\n");
    let out = sim(&[morning], &late).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-02T08:00:00Z bea email s: s",
            "2026-12-04T08:00:00Z dan email s: s",
        ]
    );
}

/// A `wait_until` reached just before its time in the journey's own time, and taken just after
/// it (a queue's lag, a retry), goes on at once: that time came since she reached the wait. An
/// event stamped 08:59:50 taken at 09:01:10 is Monday 09:00's, as one stamped 09:00:10 is; one
/// stamped before the wait's time but arriving past the 15 minutes allowed for late stamps
/// waits for the next Monday.
#[tokio::test]
async fn a_wait_until_reached_just_before_its_time_and_taken_after_it_goes_on_at_once() {
    let journey = r#"
id: m
name: M
trigger: {event: go}
timezone: UTC
steps:
  - id: nine
    wait_until: {time: "09:00", weekdays: [mon]}
  - id: hi
    send: {email: {subject: "Monday 9", text: "x"}}
"#;
    // 2026-11-30 is a Monday.
    let script = r#"{"at":"2026-11-30T08:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}
{"at":"2026-11-30T08:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@example.com"}}
{"at":"2026-11-30T08:00:00Z","type":"identify","userId":"cat","traits":{"email":"cat@example.com"}}
{"at":"2026-11-30T08:00:00Z","type":"identify","userId":"dan","traits":{"email":"dan@example.com"}}
{"timestamp":"2026-11-30T08:59:50Z","at":"2026-11-30T09:01:10Z","userId":"ann","event":"go","messageId":"g1"}
{"timestamp":"2026-11-30T09:00:10Z","at":"2026-11-30T09:01:30Z","userId":"bob","event":"go","messageId":"g2"}
{"timestamp":"2026-11-30T08:58:00Z","at":"2026-11-30T09:12:00Z","userId":"cat","event":"go","messageId":"g3"}
{"timestamp":"2026-11-30T08:50:00Z","at":"2026-11-30T09:10:00Z","userId":"dan","event":"go","messageId":"g4"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-11-30T09:01:10Z ann email hi: Monday 9",
            "2026-11-30T09:01:30Z bob email hi: Monday 9",
            "2026-11-30T09:12:00Z cat email hi: Monday 9",
            "2026-12-07T09:00:00Z dan email hi: Monday 9",
        ]
    );
}

/// `if_past` judges a date wait's time past when she reached the wait in the journey's own
/// time: a survey an hour after a trial ended, whose trial-ended event is stamped 10 seconds
/// before that hour and taken a minute after it (a queue's lag), is not past: it goes, where
/// one that was past when she reached it exits.
#[tokio::test]
async fn if_past_judges_a_date_wait_when_she_reached_it_not_when_the_engine_took_it() {
    let journey = r#"
id: s
name: S
trigger: {event: trial_ended}
steps:
  - id: later
    wait_until: {date: event.ended_at, after: 1h, if_past: exit}
  - id: survey
    send: {email: {subject: "How was it?", text: "x"}}
"#;
    let script = r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"bob","traits":{"email":"bob@example.com"}}
{"timestamp":"2026-12-01T09:59:50Z","at":"2026-12-01T10:01:00Z","userId":"ann","event":"trial_ended","messageId":"t1","properties":{"ended_at":"2026-12-01T09:00:00Z"}}
{"timestamp":"2026-12-01T10:00:10Z","at":"2026-12-01T10:01:00Z","userId":"bob","event":"trial_ended","messageId":"t2","properties":{"ended_at":"2026-12-01T09:00:00Z"}}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:01:00Z ann email survey: How was it?"]
    );
    assert_eq!(
        facts(&out, "ann", |w| matches!(w, What::Woke { .. })),
        ["2026-12-01T10:01:00Z s/later: woke (already past: 2026-12-01T10:00:00Z; it came during the wait)"]
    );
    assert_eq!(
        facts(&out, "bob", |w| matches!(w, What::Ended { .. })).len(),
        1
    );
}

/// A push whose title and body are both blank for this user's data (a `default('')` of a
/// missing value) is not sent empty: it is a `render_error`, as an empty SMS is. One line of
/// the two is enough.
#[tokio::test]
async fn a_push_empty_for_this_user_is_a_render_error() {
    let journey = r#"
id: note
name: Note
trigger: {event: noted}
steps:
  - id: tell
    send: {push: {body: "{{ event.note | default('') }}"}}
  - id: both
    send: {push: {title: "{{ event.title | default(' ') }}", body: "{{ event.note | default('') }}"}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"a","traits":{"push_tokens":[{"platform":"fcm","token":"t-a"}]}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"b","traits":{"push_tokens":[{"platform":"fcm","token":"t-b"}]}}
{"at":"2026-12-01T10:00:00Z","userId":"a","event":"noted"}
{"at":"2026-12-01T10:00:00Z","userId":"b","event":"noted","properties":{"note":"Hi"}}
"#;
    let out = sim(&[journey], script).await;
    let skipped = |user: &str| skips_of(&out, user);
    assert_eq!(
        skipped("a"),
        [
            "tell render_error: the push is empty for this user",
            "both render_error: the push is empty for this user",
        ]
    );
    assert!(skipped("b").is_empty(), "{:?}", skipped("b"));
    assert_eq!(messages_to(&out, "b").len(), 2);
}

/// An email whose parts render blank for this user's data (`{{ event.title }}` of an event
/// without one) is not sent empty: with no subject, or with neither body, it is a
/// `render_error` saying which; a blank one of the two bodies is left out, so that a client
/// showing HTML shows the text. An in-app message whose title and body are both blank is not
/// sent either. The same journey sends all of them to a user whose event has a title.
#[tokio::test]
async fn an_email_or_in_app_message_empty_for_this_user_is_a_render_error() {
    let journey = r#"
id: news
name: News
trigger: {event: news}
steps:
  - id: all
    send: {email: {subject: "{{ event.title }}", html: "{{ event.title }}", text: "{{ event.title }}"}}
  - id: no_subject
    send: {email: {subject: "{{ event.title }}", text: "Hello"}}
  - id: no_body
    send: {email: {subject: "Hi", text: "{{ event.title }}"}}
  - id: no_html
    send: {email: {subject: "Hi", html: "{{ event.title }}", text: "Hello"}}
  - id: inbox
    send: {in_app: {title: "{{ event.title }}", body: "{{ event.title | default(' ') }}"}}
"#;
    let script = r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"a","traits":{"email":"a@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"b","traits":{"email":"b@example.com"}}
{"at":"2026-12-01T10:00:00Z","userId":"a","event":"news"}
{"at":"2026-12-01T10:00:00Z","userId":"b","event":"news","properties":{"title":"Sale"}}
"#;
    let out = sim(&[journey], script).await;
    let skipped = |user: &str| skips_of(&out, user);
    assert_eq!(
        skipped("a"),
        [
            "all render_error: the email is empty for this user: its subject, its html and its text rendered empty",
            "no_subject render_error: subject: the email's subject is empty for this user, and an email is not sent without one: give it some fixed text, or a `default('...')`",
            "no_body render_error: the email has no body for this user: its text rendered empty",
            "inbox render_error: the in-app message is empty for this user: its title and its body rendered empty",
        ]
    );
    let sent = messages_to(&out, "a");
    assert_eq!(sent.len(), 1);
    let Content::Email {
        subject,
        html,
        text,
        ..
    } = sent[0].content.as_ref()
    else {
        panic!("an email: {:?}", sent[0].content);
    };
    assert_eq!(
        (subject.as_str(), html.as_deref(), text.as_deref()),
        ("Hi", None, Some("Hello"))
    );
    assert!(skipped("b").is_empty(), "{:?}", skipped("b"));
    assert_eq!(messages_to(&out, "b").len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Trait changes: `trigger: {trait_changed: plan}`
// ---------------------------------------------------------------------------------------------

/// Emails each change of `plan`, saying what it was and what it is (again at every change: an
/// enrollment ends at once).
const PLAN_CHANGED: &str = r#"
id: plan_changed
name: Plan changed
trigger:
  trait_changed: plan
reentry: after_exit
steps:
  - id: note
    send:
      email:
        subject: "{{ event.trait }}: {{ event.from | default('none') }} to {{ event.to | default('none') }}, profile says {{ profile.plan | default('none') }}"
        text: "."
"#;

/// An identify of `user` happening at `at` (and delivered then), with `traits` and an email.
fn identify_at(at: &str, user: &str, id: &str, traits: serde_json::Value) -> String {
    identify_late(at, at, user, id, traits)
}

/// An identify delivered at `at` that happened at `happened`.
fn identify_late(
    at: &str,
    happened: &str,
    user: &str,
    id: &str,
    traits: serde_json::Value,
) -> String {
    let mut t = json!({"email": format!("{user}@example.com")});
    if let (Some(t), Some(more)) = (t.as_object_mut(), traits.as_object()) {
        t.extend(more.clone());
    }
    json!({"at": at, "type": "identify", "userId": user, "messageId": id,
        "timestamp": happened, "traits": t})
    .to_string()
}

#[tokio::test]
async fn a_trait_change_enters_on_first_set_change_and_removal_but_not_on_the_same_value() {
    let script = [
        // first set: from missing
        identify_at(
            "2026-12-01T09:00:00Z",
            "ann",
            "i-1",
            json!({"plan": "free"}),
        ),
        // the same value again, and another trait: no change of `plan`
        identify_at(
            "2026-12-01T10:00:00Z",
            "ann",
            "i-2",
            json!({"plan": "free"}),
        ),
        identify_at(
            "2026-12-01T10:30:00Z",
            "ann",
            "i-3",
            json!({"country": "FR"}),
        ),
        // another value
        identify_at("2026-12-01T11:00:00Z", "ann", "i-4", json!({"plan": "pro"})),
        // removed, then removed again (nothing left to remove)
        identify_at("2026-12-01T12:00:00Z", "ann", "i-5", json!({"plan": null})),
        identify_at("2026-12-01T13:00:00Z", "ann", "i-6", json!({"plan": null})),
    ]
    .join("\n");
    let out = sim(&[PLAN_CHANGED], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T09:00:00Z ann email note: plan: none to free, profile says free",
            "2026-12-01T11:00:00Z ann email note: plan: free to pro, profile says pro",
            "2026-12-01T12:00:00Z ann email note: plan: pro to none, profile says none",
        ]
    );
    // what did not change is no trigger: nothing refused either
    assert_eq!(refusals(entries(&out, "ann")), Vec::<String>::new());
    // the enrollment keeps the identify as its trigger event
    assert_eq!(
        facts(&out, "ann", entered),
        [
            "2026-12-01T09:00:00Z plan_changed/-: entered v1 on identify",
            "2026-12-01T11:00:00Z plan_changed/-: entered v1 on identify",
            "2026-12-01T12:00:00Z plan_changed/-: entered v1 on identify",
        ]
    );
}

#[tokio::test]
async fn an_older_identify_arriving_after_a_newer_one_changes_nothing_and_enters_no_one() {
    let script = [
        identify_at(
            "2026-12-01T09:00:00Z",
            "bob",
            "i-1",
            json!({"plan": "free"}),
        ),
        identify_at("2026-12-01T11:00:00Z", "bob", "i-3", json!({"plan": "pro"})),
        // sent at 10:00 from a phone that was offline: `pro`, set later, stands
        identify_late(
            "2026-12-01T11:05:00Z",
            "2026-12-01T10:00:00Z",
            "bob",
            "i-2",
            json!({"plan": "trial"}),
        ),
    ]
    .join("\n");
    let out = sim(&[PLAN_CHANGED], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T09:00:00Z bob email note: plan: none to free, profile says free",
            "2026-12-01T11:00:00Z bob email note: plan: free to pro, profile says pro",
        ]
    );
    assert_eq!(refusals(entries(&out, "bob")), Vec::<String>::new());
}

#[tokio::test]
async fn a_trait_changed_where_reads_from_and_to_and_says_why_it_was_false() {
    let upgrade = r#"
id: upgrade
name: Upgrade
trigger:
  trait_changed: plan
  where: "event.from == 'free' and event.to == 'pro'"
steps:
  - id: welcome
    send:
      email: {subject: "Welcome to {{ event.to }}, {{ profile.first_name }}", text: "."}
"#;
    let script = [
        identify_at(
            "2026-12-01T09:00:00Z",
            "cat",
            "c-1",
            json!({"plan": "free", "first_name": "Cat"}),
        ),
        identify_at(
            "2026-12-01T09:00:00Z",
            "dan",
            "d-1",
            json!({"plan": "trial", "first_name": "Dan"}),
        ),
        identify_at("2026-12-01T10:00:00Z", "cat", "c-2", json!({"plan": "pro"})),
        identify_at("2026-12-01T10:00:00Z", "dan", "d-2", json!({"plan": "pro"})),
    ]
    .join("\n");
    let out = sim(&[upgrade], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T10:00:00Z cat email welcome: Welcome to pro, Cat"]
    );
    assert_eq!(
        refusals(entries(&out, "dan")),
        [
            r#"2026-12-01T09:00:00Z upgrade [] on identify: condition: `where: event.from == 'free' and event.to == 'pro'` was false at this event (event.from missing, event.to = "trial")"#,
            r#"2026-12-01T10:00:00Z upgrade [] on identify: condition: `where: event.from == 'free' and event.to == 'pro'` was false at this event (event.from = "trial", event.to = "pro")"#,
        ]
    );
    assert_eq!(
        refusals(entries(&out, "cat")),
        [
            r#"2026-12-01T09:00:00Z upgrade [] on identify: condition: `where: event.from == 'free' and event.to == 'pro'` was false at this event (event.from missing, event.to = "free")"#
        ]
    );
}

#[tokio::test]
async fn a_trait_change_follows_the_entry_rules_enrolled_and_reentry() {
    let once = r#"
id: once
name: Once
trigger: {trait_changed: plan}
steps:
  - id: later
    wait: 1d
  - id: note
    send: {email: {subject: "{{ event.to }}", text: "."}}
"#;
    let script = [
        identify_at(
            "2026-12-01T09:00:00Z",
            "eve",
            "e-1",
            json!({"plan": "free"}),
        ),
        // in the journey: one enrollment at a time
        identify_at("2026-12-01T10:00:00Z", "eve", "e-2", json!({"plan": "pro"})),
        // done with it, and `reentry: never`
        identify_at(
            "2026-12-03T10:00:00Z",
            "eve",
            "e-3",
            json!({"plan": "free"}),
        ),
    ]
    .join("\n");
    let out = sim(&[once], &script).await;
    assert_eq!(outbox(&out), ["2026-12-02T09:00:00Z eve email note: free"]);
    let refused = refusals(entries(&out, "eve"));
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(
        refused[0].starts_with("2026-12-01T10:00:00Z once [once:eve:1] on identify: enrolled: in the journey since 2026-12-01T09:00:00Z"),
        "{refused:#?}"
    );
    assert!(
        refused[1].starts_with("2026-12-03T10:00:00Z once [once:eve:1] on identify: reentry:"),
        "{refused:#?}"
    );
}

#[tokio::test]
async fn an_identify_delivered_again_enters_no_one_twice() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(PLAN_CHANGED).await;
    let first = identify_at(
        "2026-12-01T09:00:00Z",
        "fay",
        "f-1",
        json!({"plan": "free"}),
    );
    h.play(&first).await;
    // the same identify again: its marker says it was handled
    h.play(&first).await;
    // and again after its marker is gone (a retry of a delivery that stopped before writing
    // it): its change was noted with it, its entry was made by it, and neither is done again
    h.store
        .delete(&Key::new("U#fay", "D#f-1"), Expect::Any)
        .await
        .expect("delete the marker");
    h.play(&first).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T09:00:00Z fay email note: plan: none to free, profile says free"]
    );
    let view = h.rt.user("fay").await.expect("user");
    assert_eq!(view.enrollments.len(), 1);
}

#[tokio::test]
async fn a_journeys_own_update_of_the_trait_triggers_no_trait_changed_journey() {
    let downgrade = r#"
id: downgrade
name: Downgrade
trigger: {event: subscription_lapsed}
steps:
  - id: back_to_free
    update: {set: {plan: free}}
"#;
    let script = [
        identify_at("2026-12-01T09:00:00Z", "gus", "g-1", json!({"plan": "pro"})),
        track("2026-12-01T10:00:00Z", "gus", "subscription_lapsed", "l-1"),
        // the identify that sends `free` again: her profile says `free` already
        identify_at(
            "2026-12-01T11:00:00Z",
            "gus",
            "g-2",
            json!({"plan": "free"}),
        ),
    ]
    .join("\n");
    let out = sim(&[PLAN_CHANGED, downgrade], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-01T09:00:00Z gus email note: plan: none to pro, profile says pro"]
    );
}

#[tokio::test]
async fn the_traits_a_login_brings_from_the_visitor_are_no_change() {
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"v-1","messageId":"v-i","traits":{"plan":"free"}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"hal","anonymousId":"v-1","messageId":"h-1","traits":{"email":"hal@example.com"}}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"hal","messageId":"h-2","traits":{"plan":"pro"}}
"#;
    let upgrade = r#"
id: upgrade
name: Upgrade
trigger:
  trait_changed: plan
  where: "event.to == 'pro'"
steps:
  - id: welcome
    send: {email: {subject: "{{ event.from | default('none') }} to {{ event.to }}", text: "."}}
"#;
    let out = sim(&[upgrade], script).await;
    // the visitor's own identify was a change (refused by the `where`); the login that made
    // `free` hal's was none; hal's own change from it enters him
    assert_eq!(
        outbox(&out),
        ["2026-12-01T11:00:00Z hal email welcome: free to pro"]
    );
    assert_eq!(refusals(entries(&out, "hal")), Vec::<String>::new());
}

/// A login is judged on her profile as the merge of the visitor she was leaves it: the
/// visitor's `plan: free` sent again with the login is no change, and the visitor's `free`
/// the login makes `pro` is an upgrade from `free`, not a first `pro` from nothing.
#[tokio::test]
async fn a_login_changes_the_traits_the_visitor_had_as_the_merge_leaves_them() {
    let script = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"v-1","messageId":"v-i","traits":{"plan":"free"}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"hal","anonymousId":"v-1","messageId":"h-1","traits":{"email":"hal@example.com","plan":"free"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"v-2","messageId":"w-i","traits":{"plan":"free"}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ida","anonymousId":"v-2","messageId":"i-1","traits":{"email":"ida@example.com","plan":"pro"}}
"#;
    // any change of a known user's plan (the visitors' own, with no address, are refused)
    let any = r#"
id: any_change
name: Any change
trigger:
  trait_changed: plan
  where: "exists(profile.email)"
steps:
  - id: note
    send: {email: {subject: "any: {{ event.from | default('none') }} to {{ event.to }}", text: "."}}
"#;
    let upgrade = r#"
id: upgrade
name: Upgrade
trigger:
  trait_changed: plan
  where: "event.from == 'free' and event.to == 'pro'"
steps:
  - id: welcome
    send: {email: {subject: "upgrade: {{ event.from }} to {{ event.to }}", text: "."}}
"#;
    let out = sim(&[any, upgrade], script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-01T10:00:00Z ida email note: any: free to pro",
            "2026-12-01T10:00:00Z ida email welcome: upgrade: free to pro",
        ]
    );
    // hal's login changed nothing, and nothing was refused him
    assert_eq!(refusals(entries(&out, "hal")), Vec::<String>::new());
}

#[tokio::test]
async fn an_identify_retried_after_its_profile_was_written_still_enters() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(PLAN_CHANGED).await;
    let line = identify_at(
        "2026-12-01T09:00:00Z",
        "fay",
        "f-1",
        json!({"plan": "free"}),
    );
    let payload: serde_json::Value = serde_json::from_str(&line).expect("json");
    let ev = waymark::event::parse_call(
        waymark::event::Call::Identify,
        payload.to_string().as_bytes(),
        h.now(),
        &waymark::event::Limits {
            max_past: SignedDuration::from_hours(24),
            max_future: SignedDuration::from_hours(24),
        },
    )
    .expect("identify");
    // its first delivery wrote her profile, then stopped: the identify changes nothing now
    let mut written = Profile::new("fay");
    let (_, changes) = written.apply_watching(&ev, true, &["plan"], h.now());
    assert_eq!(changes.len(), 1);
    h.store
        .put(
            &Record::new(waymark::runtime::profile_key("fay"), 1, &written).expect("record"),
            Expect::Absent,
        )
        .await
        .expect("profile");
    // delivered again, it finds the change it noted, and enters her
    h.deliver(ev).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T09:00:00Z fay email note: plan: none to free, profile says free"]
    );
}

/// Two identifies of one user handled at once (A: free to pro, B: pro to team): A's entry
/// conflicted and A is run again after B wrote the profile and its own note. A finds its own
/// note and enters her still; and `GET /v1/users/{id}` does not show the notes.
#[tokio::test]
async fn an_identify_run_again_after_another_changed_the_trait_still_enters() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(PLAN_CHANGED).await;
    let parse = |line: String| {
        let payload: serde_json::Value = serde_json::from_str(&line).expect("json");
        waymark::event::parse_call(
            waymark::event::Call::Identify,
            payload.to_string().as_bytes(),
            h.now(),
            &waymark::event::Limits {
                max_past: SignedDuration::from_hours(24),
                max_future: SignedDuration::from_hours(24),
            },
        )
        .expect("identify")
    };
    let free = parse(identify_at(
        "2026-12-01T08:00:00Z",
        "gil",
        "g-0",
        json!({"plan": "free"}),
    ));
    let a = parse(identify_at(
        "2026-12-01T08:30:00Z",
        "gil",
        "g-a",
        json!({"plan": "pro"}),
    ));
    let b = parse(identify_at(
        "2026-12-01T08:30:01Z",
        "gil",
        "g-b",
        json!({"plan": "team"}),
    ));
    // `free` long known; A's profile update, then B's, were written
    let mut written = Profile::new("gil");
    written.apply(&free);
    written.apply_watching(&a, true, &["plan"], h.now());
    written.apply_watching(&b, true, &["plan"], h.now());
    h.store
        .put(
            &Record::new(waymark::runtime::profile_key("gil"), 1, &written).expect("record"),
            Expect::Absent,
        )
        .await
        .expect("profile");
    h.deliver(b).await;
    h.deliver(a).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T09:00:00Z gil email note: plan: pro to team, profile says team",
            "2026-12-01T09:00:00Z gil email note: plan: free to pro, profile says team",
        ]
    );
    let view = h.rt.user("gil").await.expect("user");
    let profile = view.profile.expect("profile");
    assert!(profile.trait_changes.is_empty(), "{profile:?}");
    let stored: Profile = h
        .store
        .get(&waymark::runtime::profile_key("gil"))
        .await
        .expect("get")
        .expect("stored")
        .parse()
        .expect("parse");
    assert!(!stored.trait_changes.is_empty());
}

#[tokio::test]
async fn a_closed_trait_changed_journey_refuses_the_change_saying_so() {
    let closed = with_status(PLAN_CHANGED, "closed");
    let script = identify_at(
        "2026-12-01T09:00:00Z",
        "ivy",
        "v-1",
        json!({"plan": "free"}),
    );
    let out = sim(&[&closed], &script).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    assert_eq!(
        refusals(entries(&out, "ivy")),
        ["2026-12-01T09:00:00Z plan_changed [] on identify: closed: the journey's `status: closed`: no one enters it"]
    );
}

#[tokio::test]
async fn a_trait_changed_journey_exits_and_converts_as_an_event_journey_does() {
    let onboarding = r#"
id: pro_onboarding
name: Pro onboarding
trigger:
  trait_changed: plan
  where: "event.to == 'pro'"
exit_when:
  - event: account_closed
goal:
  event: project_created
  within: 7d
steps:
  - id: later
    wait: 1d
  - id: tips
    send: {email: {subject: "Pro tips", text: "."}}
"#;
    let script = [
        identify_at("2026-12-01T09:00:00Z", "jo", "j-1", json!({"plan": "pro"})),
        identify_at("2026-12-01T09:00:00Z", "kit", "k-1", json!({"plan": "pro"})),
        track("2026-12-01T12:00:00Z", "kit", "account_closed", "k-2"),
        track("2026-12-03T12:00:00Z", "jo", "project_created", "j-2"),
    ]
    .join("\n");
    let out = sim(&[onboarding], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-02T09:00:00Z jo email tips: Pro tips"]
    );
    let ends = |w: &What| matches!(w, What::Exited { .. } | What::Converted { .. });
    assert_eq!(
        facts(&out, "kit", ends),
        ["2026-12-01T12:00:00Z pro_onboarding/later: exited on account_closed"]
    );
    assert_eq!(
        facts(&out, "jo", ends),
        ["2026-12-03T12:00:00Z pro_onboarding/tips: converted on project_created, credited to tips"]
    );
}

#[tokio::test]
async fn a_date_another_trait_changed_journey_updates_is_read_again_after_the_identify() {
    // both enter on the same change: `a_renew` moves the renewal, `b_remind` waits for it
    let renew = r#"
id: a_renew
name: Renew
trigger: {trait_changed: plan}
steps:
  - id: push_back
    update: {set: {renews_on: "2026-12-20"}}
"#;
    let remind = r#"
id: b_remind
name: Remind
trigger: {trait_changed: plan}
steps:
  - id: until_renewal
    wait_until: {date: profile.renews_on, time: "09:00"}
  - id: note
    send: {email: {subject: "Renewal", text: "."}}
"#;
    let script = identify_at(
        "2026-12-01T09:00:00Z",
        "lou",
        "l-1",
        json!({"plan": "pro", "renews_on": "2026-12-10"}),
    );
    let out = sim(&[renew, remind], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-20T09:00:00Z lou email note: Renewal"]
    );
}

/// A survey three days after a trial ended, which a survey already late does not send.
const SURVEY_IF_PAST: &str = r#"
id: survey
name: Survey
trigger: {event: trial_over}
steps:
  - id: later
    wait_until: {date: profile.trial_ended_at, after: 3d, if_past: exit}
  - id: ask
    send: {email: {subject: "How was it?", text: "."}}
"#;

/// `ann` (with an address and `traits`) entered `j` at `now`, and the context at `now`.
fn entered_at(
    j: &waymark::journey::Journey,
    profile: &Profile,
    now: &str,
) -> waymark::enrollment::Enrollment {
    let ctx = Ctx {
        journey: j,
        version: 1,
        profile,
        now: at(now),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    };
    let trigger = TriggerEvent {
        event: j.trigger.event.as_ref().expect("an event trigger").names()[0].clone(),
        message_id: "t-ann".into(),
        at: at(now),
        properties: std::sync::Arc::new(json!({})),
    };
    engine::enter(&ctx, "ann", 1, trigger).enrollment
}

fn ann_with(traits: serde_json::Value) -> Profile {
    let mut p = Profile::new("ann");
    p.traits.insert("email".into(), json!("ann@example.com"));
    if let serde_json::Value::Object(t) = traits {
        p.traits.extend(t);
    }
    p
}

fn ctx_at<'a>(j: &'a waymark::journey::Journey, profile: &'a Profile, now: &str) -> Ctx<'a> {
    Ctx {
        journey: j,
        version: 1,
        profile,
        now: at(now),
        unsubscribe_url: None,
        topics: waymark::topic::Declared::NONE,
        set_meanwhile: &[],
    }
}

fn woke_or_ended(t: &engine::Transition) -> Vec<String> {
    t.timeline
        .iter()
        .map(|e| describe(&e.what))
        .filter(|d| d.starts_with("woke") || d.starts_with("ended"))
        .collect()
}

fn sent_steps(t: &engine::Transition) -> Vec<String> {
    t.effects
        .iter()
        .filter_map(|e| match e {
            engine::Effect::Send(s) => Some(s.step.to_string()),
            _ => None,
        })
        .collect()
}

/// An identify that arrives when the wake-up of a date wait is due but not yet delivered (here
/// five seconds late) leaves the wait to it: the date came during the wait, and the wake-up
/// goes on with it; taken again by the identify, `if_past: exit` would end her.
#[test]
fn an_identify_racing_a_due_date_wake_up_leaves_the_wait_to_it() {
    let j = journey(SURVEY_IF_PAST);
    let p = ann_with(json!({"trial_ended_at": "2026-12-01T10:00:00Z"}));
    let waiting = entered_at(&j, &p, "2026-12-01T10:00:00Z");
    let pending = waiting.pending.expect("waiting");
    assert_eq!(pending.at, at("2026-12-04T10:00:00Z"));
    let late = "2026-12-04T10:00:05Z";
    assert!(engine::date_moved(&ctx_at(&j, &p, late), &waiting).is_none());
    let woke = engine::wake(&ctx_at(&j, &p, late), &waiting, pending.seq).expect("woke");
    assert_eq!(sent_steps(&woke), ["ask"]);
    assert_eq!(woke_or_ended(&woke), ["woke (time)"]);
}

/// A date wait more than a year ahead is read again a year on; that wake-up processed late
/// (an outage), after the date came, finds the same date: it came during the wait, so she goes
/// on, saying so. A date read anew then (moved by the app to a past day) is judged past.
#[test]
fn a_year_long_date_wait_read_again_late_finds_its_date_come() {
    let j = journey(
        r#"
id: renewal
name: Renewal
trigger: {event: plan_changed}
steps:
  - id: on_the_day
    wait_until: {date: profile.renews_on, if_past: exit}
  - id: tell
    send: {email: {subject: "Renewed", text: "."}}
"#,
    );
    let p = ann_with(json!({"renews_on": "2027-12-03T11:00:00Z"}));
    let waiting = entered_at(&j, &p, "2026-12-01T10:00:00Z");
    let pending = waiting.pending.expect("waiting");
    // A year at a time (366 days).
    assert_eq!(pending.at, at("2027-12-02T10:00:00Z"));
    let late = "2027-12-03T13:00:00Z";
    let woke = engine::wake(&ctx_at(&j, &p, late), &waiting, pending.seq).expect("woke");
    assert_eq!(sent_steps(&woke), ["tell"]);
    assert_eq!(
        woke_or_ended(&woke),
        [
            "woke (a year on)",
            "woke (already past: 2027-12-03T11:00:00Z; it came during the wait)",
        ]
    );
    // The app set another day, long past, while no identify told the engine: a date read
    // anew, which `if_past` judges.
    let moved = ann_with(json!({"renews_on": "2027-06-01T11:00:00Z"}));
    let woke = engine::wake(&ctx_at(&j, &moved, late), &waiting, pending.seq).expect("woke");
    assert!(sent_steps(&woke).is_empty());
    assert!(!woke.enrollment.is_active());
    // Stored before the date was kept with the wait: judged as a date read anew, as before.
    let mut stored = waiting.clone();
    let json = serde_json::to_value(stored.pending).expect("json");
    assert_eq!(json["date"], json!("2027-12-03T11:00:00Z"));
    stored.pending =
        serde_json::from_value(json!({"seq": pending.seq, "at": pending.at, "resume": "rerun"}))
            .expect("an old record");
    let woke = engine::wake(&ctx_at(&j, &p, late), &stored, pending.seq).expect("woke");
    assert!(!woke.enrollment.is_active());
}

/// She waits for 09:00 (New York) three days after her trial; at 12:00 UTC that day she
/// reports London, where 09:00 is past. The same date, its time come during the wait: the
/// survey goes at once, as it does without `if_past`, not ended as a date past when reached.
#[test]
fn a_zone_change_that_puts_the_time_waited_for_behind_her_goes_on() {
    let j = journey(&SURVEY_IF_PAST.replace("after: 3d,", r#"after: 3d, time: "09:00","#));
    let p = ann_with(json!({"timezone": "America/New_York", "trial_ended_at": "2026-12-01"}));
    let waiting = entered_at(&j, &p, "2026-12-01T10:00:00Z");
    assert_eq!(
        waiting.pending.map(|p| p.at),
        Some(at("2026-12-04T14:00:00Z"))
    );
    let london = ann_with(json!({"timezone": "Europe/London", "trial_ended_at": "2026-12-01"}));
    let moved =
        engine::date_moved(&ctx_at(&j, &london, "2026-12-04T12:00:00Z"), &waiting).expect("moved");
    assert_eq!(sent_steps(&moved), ["ask"]);
    assert_eq!(
        woke_or_ended(&moved),
        [
            "woke (the date it waits for moved)",
            "woke (already past: 2026-12-04T09:00:00Z; it came during the wait)",
        ]
    );
    // Her trial's end moved to a week earlier at the same time: a date read anew, past.
    let earlier = ann_with(json!({"timezone": "Europe/London", "trial_ended_at": "2026-11-24"}));
    let moved =
        engine::date_moved(&ctx_at(&j, &earlier, "2026-12-04T12:00:00Z"), &waiting).expect("moved");
    assert!(sent_steps(&moved).is_empty());
    assert!(!moved.enrollment.is_active());
}

/// Through the runtime: a device that reports another zone moves the wait (the zone change's
/// own pass, `move_date_waits`), and the time that came there goes at once.
#[tokio::test]
async fn a_device_in_another_zone_sends_a_date_wait_whose_time_came_there() {
    let text = SURVEY_IF_PAST.replace("after: 3d,", r#"after: 3d, time: "09:00","#);
    let script = script_of(&[
        json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"email": "ann@example.com", "timezone": "America/New_York",
                          "trial_ended_at": "2026-12-01"}}),
        json!({"at": "2026-12-01T10:00:00Z", "type": "track", "userId": "ann",
               "event": "trial_over", "messageId": "t-ann"}),
        json!({"at": "2026-12-04T12:00:00Z", "type": "identify", "userId": "ann",
               "traits": {"timezone": "Europe/London"}}),
    ]);
    let out = sim(&[&text], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-04T12:00:00Z ann email ask: How was it?"]
    );
}

/// Text of digits alone is read one way by every reader of dates: 10 digits (or 13) are seconds
/// (milliseconds) since 1970 for `days_until` in a branch as for a wait and the `date` filter
/// (`"1797638400"` is 2026-12-19T00:00Z: 18 days from 1 December; before, `days_until` gave
/// null), and other digits are no time for any of them (`"20261219"`, which a wait and the
/// filter read as a day before, ends the wait saying it is not a time).
#[tokio::test]
async fn every_reader_of_dates_reads_digits_alone_the_same_way() {
    let journey = r#"
id: cmp
name: Cmp
trigger: {event: go}
steps:
  - id: b
    branch: {cases: [{when: "days_until(profile.t1) == 18", goto: yes}], else: no}
  - id: yes
    send: {email: {subject: "t1 in 18 days", text: "{{ profile.t1 | date }}"}}
    next: w
  - id: no
    send: {email: {subject: "t1 no date", text: "x"}}
  - id: w
    wait_until: {date: profile.t2}
  - id: s
    send: {email: {subject: "t2 came", text: "x"}}
"#;
    let script = r#"{"at":"2026-12-01T12:00:00Z","type":"identify","userId":"q","traits":{"email":"q@x.com","timezone":"UTC","t1":"1797638400","t2":"20261219"}}
{"at":"2026-12-01T12:00:00Z","userId":"q","event":"go"}
"#;
    let out = sim(&[journey], script).await;
    assert_eq!(
        outbox_of(&out, "q"),
        ["2026-12-01T12:00:00Z q email yes: t1 in 18 days"]
    );
    let ended: Vec<String> = entries(&out, "q")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Ended { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(ended[0].contains("is not a time"), "{ended:?}");
}

/// Digits that are no time of these days (a phone number sent in the date's place, a
/// postcode) are not a time to wait for: read as seconds they would be a day of the 1970s,
/// past, and the reminder would go out at once. She leaves the journey saying so.
#[tokio::test]
async fn wait_until_refuses_digits_that_are_no_seconds_since_1970() {
    let topup = r#"
id: topup
name: Top-up
trigger: {event: topup_done}
steps:
  - id: until
    wait_until: {date: event.expires_at, before: 2d, time: "10:00"}
  - id: remind
    send: {sms: {body: "Credit ends soon"}}
"#;
    let mut lines = Vec::new();
    for (user, sent) in [("ann", "0612345671"), ("bob", "12345")] {
        lines.push(
            json!({"at": "2026-12-01T08:00:00Z", "type": "identify", "userId": user,
               "traits": {"phone": "+33612345671", "timezone": "Europe/Paris"}}),
        );
        lines.push(
            json!({"at": "2026-12-01T09:00:00Z", "type": "track", "userId": user,
               "event": "topup_done", "messageId": format!("t-{user}"),
               "properties": {"expires_at": sent}}),
        );
    }
    let out = sim(&[topup], &script_of(&lines)).await;
    assert_eq!(outbox(&out), Vec::<String>::new());
    for user in ["ann", "bob"] {
        let ended: Vec<String> = entries(&out, user)
            .into_iter()
            .filter_map(|e| match &e.what {
                What::Ended { reason } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1, "{user}: {ended:?}");
        assert!(ended[0].contains("is not a time"), "{user}: {ended:?}");
    }
}
