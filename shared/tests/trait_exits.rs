//! Exits and goals on an identify's change of a profile trait (`exit_when: [{trait_changed:
//! subscriber, where: "event.to == true"}]`): a news site's offer ends when the backend's identify
//! marks her a subscriber, as an exit event would end it; and `waymark validate` refuses an exit
//! on `event: identify`, which no track ever sends, saying what to write.

mod support;

use jiff::SignedDuration;
use serde_json::json;

use support::*;
use waymark::store::{Expect, Record, Store};
use waymark::timeline::What;

/// A paywall offer by email a day after she hits the paywall, which her subscribing ends.
const OFFER: &str = r#"
id: offer
name: Offer
trigger: {event: paywall_hit}
reentry: after_exit
exit_when:
  - trait_changed: subscriber
    where: "event.to == true"
steps:
  - id: w
    wait: 1d
  - id: s
    send: {email: {subject: "Subscribe, {{ profile.first_name }}", text: "."}}
"#;

fn identify(at: &str, user: &str, id: &str, traits: serde_json::Value) -> String {
    let mut t = json!({"email": format!("{user}@example.com"), "first_name": user});
    if let (Some(t), Some(more)) = (t.as_object_mut(), traits.as_object()) {
        t.extend(more.clone());
    }
    json!({"at": at, "type": "identify", "userId": user, "messageId": id, "traits": t}).to_string()
}

fn track(at: &str, user: &str, event: &str, id: &str) -> String {
    json!({"at": at, "userId": user, "event": event, "messageId": id}).to_string()
}

fn ends(w: &What) -> bool {
    matches!(
        w,
        What::Exited { .. } | What::Converted { .. } | What::Completed
    )
}

fn unmet(w: &What) -> bool {
    matches!(w, What::Unmet { .. })
}

#[tokio::test]
async fn subscribing_by_an_identify_ends_the_offer_and_the_same_value_again_does_not() {
    let script = [
        identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})),
        identify(
            "2026-03-01T00:00:00Z",
            "bob",
            "b-0",
            json!({"subscriber": false}),
        ),
        identify(
            "2026-03-01T00:00:00Z",
            "cat",
            "c-0",
            json!({"subscriber": true}),
        ),
        track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"),
        track("2026-03-01T01:00:00Z", "bob", "paywall_hit", "b-1"),
        track("2026-03-01T01:00:00Z", "cat", "paywall_hit", "c-1"),
        // ann subscribes: the exit
        identify(
            "2026-03-01T02:00:00Z",
            "ann",
            "a-2",
            json!({"subscriber": true}),
        ),
        // bob's trait changes, but not to `true`: the `where` keeps him in, and says so
        identify(
            "2026-03-01T02:00:00Z",
            "bob",
            "b-2",
            json!({"subscriber": null}),
        ),
        // cat was one already: the same value again is no change
        identify(
            "2026-03-01T02:00:00Z",
            "cat",
            "c-2",
            json!({"subscriber": true}),
        ),
    ]
    .join("\n");
    let out = sim(&[OFFER], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-03-02T01:00:00Z bob email s: Subscribe, bob",
            "2026-03-02T01:00:00Z cat email s: Subscribe, cat",
        ]
    );
    assert_eq!(
        facts(&out, "ann", ends),
        ["2026-03-01T02:00:00Z offer/w: exited on trait_changed subscriber"]
    );
    let ann = entries(&out, "ann");
    let reason = ann.iter().find_map(|e| match &e.what {
        What::Woke { how } => Some(how.clone()),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("exited"), "the wait was cancelled");
    assert_eq!(
        facts(&out, "bob", unmet),
        ["2026-03-01T02:00:00Z offer/w: heard trait_changed subscriber, which its exit_when did not take: its `where` was false"]
    );
    let said: Vec<&str> = entries(&out, "bob")
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Unmet { detail, .. } => detail.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        ["`where: event.to == true` was false (event.to missing)"]
    );
    assert_eq!(facts(&out, "cat", unmet), Vec::<String>::new());
    assert_eq!(
        facts(&out, "cat", ends),
        ["2026-03-02T01:00:00Z offer/s: completed"]
    );
}

#[tokio::test]
async fn an_exit_on_a_trait_with_no_where_takes_any_change_but_not_an_update_steps() {
    let any = r#"
id: any
name: Any change
trigger: {event: started}
exit_when: [{trait_changed: plan}]
steps:
  - id: set
    update: {set: {plan: pro}}
  - id: w
    wait: 1d
  - id: s
    send: {email: {subject: "still here", text: "."}}
"#;
    let script = [
        identify("2026-03-01T00:00:00Z", "dan", "d-0", json!({})),
        identify("2026-03-01T00:00:00Z", "eve", "e-0", json!({})),
        // the journey's own `update` sets `plan`: no change an exit hears
        track("2026-03-01T01:00:00Z", "dan", "started", "d-1"),
        track("2026-03-01T01:00:00Z", "eve", "started", "e-1"),
        // an identify that sends `pro` again changes nothing; `free` does
        identify("2026-03-01T02:00:00Z", "dan", "d-2", json!({"plan": "pro"})),
        identify(
            "2026-03-01T03:00:00Z",
            "eve",
            "e-2",
            json!({"plan": "free"}),
        ),
    ]
    .join("\n");
    let out = sim(&[any], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-03-02T01:00:00Z dan email s: still here"]
    );
    assert_eq!(
        facts(&out, "eve", ends),
        ["2026-03-01T03:00:00Z any/w: exited on trait_changed plan"]
    );
}

/// A journey entered on the change of `plan` that exits on another change of it: the identify
/// that entered her does not end it, the next one does.
#[tokio::test]
async fn the_identify_that_enters_does_not_exit_on_its_own_change() {
    let trial = r#"
id: trial
name: Trial
trigger:
  trait_changed: plan
  where: "event.to == 'trial'"
exit_when:
  - trait_changed: plan
    where: "event.from == 'trial'"
steps:
  - id: w
    wait: 3d
  - id: s
    send: {email: {subject: "trial ends", text: "."}}
"#;
    let script = [
        identify(
            "2026-03-01T00:00:00Z",
            "fay",
            "f-0",
            json!({"plan": "trial"}),
        ),
        identify(
            "2026-03-01T00:00:00Z",
            "gus",
            "g-0",
            json!({"plan": "trial"}),
        ),
        identify("2026-03-02T00:00:00Z", "gus", "g-1", json!({"plan": "pro"})),
    ]
    .join("\n");
    let out = sim(&[trial], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-03-04T00:00:00Z fay email s: trial ends"]
    );
    assert_eq!(
        facts(&out, "gus", ends),
        ["2026-03-02T00:00:00Z trial/w: exited on trait_changed plan"]
    );
}

#[tokio::test]
async fn a_goal_on_a_trait_change_converts_within_its_window() {
    let offer = r#"
id: offer
name: Offer
trigger: {event: paywall_hit}
goal: {trait_changed: subscriber, where: "event.to == true", within: 2d}
steps:
  - id: s
    send: {email: {subject: "Subscribe", text: "."}}
  - id: w
    wait: 7d
"#;
    let script = [
        identify("2026-03-01T00:00:00Z", "hal", "h-0", json!({})),
        identify("2026-03-01T00:00:00Z", "ida", "i-0", json!({})),
        track("2026-03-01T01:00:00Z", "hal", "paywall_hit", "h-1"),
        track("2026-03-01T01:00:00Z", "ida", "paywall_hit", "i-1"),
        identify(
            "2026-03-02T01:00:00Z",
            "hal",
            "h-2",
            json!({"subscriber": true}),
        ),
        // past the window
        identify(
            "2026-03-04T01:00:00Z",
            "ida",
            "i-2",
            json!({"subscriber": true}),
        ),
    ]
    .join("\n");
    let out = sim(&[offer], &script).await;
    assert_eq!(
        facts(&out, "hal", ends),
        [
            "2026-03-02T01:00:00Z offer/w: converted on trait_changed subscriber, credited to s",
            "2026-03-08T01:00:00Z offer/w: completed",
        ]
    );
    assert_eq!(
        facts(&out, "ida", ends),
        ["2026-03-08T01:00:00Z offer/w: completed"]
    );
}

#[tokio::test]
async fn the_exit_withdraws_the_unread_in_app_offer_and_counts_as_an_exit() {
    let offer = r#"
id: offer
name: Offer
trigger: {event: paywall_hit}
exit_when: [{trait_changed: subscriber, where: "event.to == true"}]
steps:
  - id: nudge
    send: {in_app: {title: "Subscribe", body: "."}}
  - id: w
    wait: 7d
"#;
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(offer).await;
    h.play(&track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"))
        .await;
    assert_eq!(titles(&h, "ann").await, ["Subscribe"]);
    h.play(&identify(
        "2026-03-01T02:00:00Z",
        "ann",
        "a-2",
        json!({"subscriber": true}),
    ))
    .await;
    assert_eq!(titles(&h, "ann").await, Vec::<String>::new());
    let view = h.rt.user("ann").await.expect("user");
    let withdrawn: Vec<String> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Withdrawn { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, ["exit_when trait_changed subscriber"]);
    assert_eq!(
        view.enrollments[0].end_reason.as_deref(),
        Some("exit_when trait_changed subscriber")
    );
    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats("offer").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(offer), 1, &counters);
    assert_eq!(stats.exited, 1, "{counters:?}");
}

/// The titles in `user`'s inbox.
async fn titles(h: &Harness, user: &str) -> Vec<String> {
    h.rt.inbox(user)
        .await
        .expect("inbox")
        .into_iter()
        .map(|m| m.title)
        .collect()
}

/// Ann's identify making her a subscriber, delivered once more after its first delivery wrote
/// her profile, noting the change, and stopped (a Lambda timed out): the retry finds the change
/// only in the note.
async fn redeliver_after_its_profile_write(h: &Harness) {
    let ev = profile_written_only(h).await;
    h.deliver(ev).await;
}

/// Ann's identify making her a subscriber (stamped 02:00) as its first delivery left it: her
/// profile written, the change noted, and nothing else done (a Lambda timed out). Returns the
/// identify, for its retry.
async fn profile_written_only(h: &Harness) -> waymark::event::Event {
    let line = identify(
        "2026-03-01T02:00:00Z",
        "ann",
        "a-2",
        json!({"subscriber": true}),
    );
    let ev = waymark::event::parse_call(
        waymark::event::Call::Identify,
        line.as_bytes(),
        h.now(),
        &waymark::event::Limits {
            max_past: SignedDuration::from_hours(24),
            max_future: SignedDuration::from_hours(24),
        },
    )
    .expect("identify");
    let key = waymark::runtime::profile_key("ann");
    let stored = h.store.get(&key).await.expect("get").expect("a profile");
    let mut written: waymark::profile::Profile = stored.parse().expect("profile");
    let (_, changes) = written.apply_watching(&ev, true, &["subscriber"], h.now());
    assert_eq!(changes.len(), 1);
    h.store
        .put(
            &Record::new(key, stored.version + 1, &written).expect("record"),
            Expect::Version(stored.version),
        )
        .await
        .expect("profile");
    ev
}

/// The identify's first delivery wrote her profile and stopped before the exit was made: run
/// again, it finds the change its first delivery noted (the trait an exit watches keeps notes,
/// as a trigger's does), and she exits still.
#[tokio::test]
async fn a_retried_identify_still_exits() {
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(OFFER).await;
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.play(&track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"))
        .await;
    // its first delivery wrote her profile, noting the change, then stopped; it comes again
    redeliver_after_its_profile_write(&h).await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(
        view.enrollments[0].end_reason.as_deref(),
        Some("exit_when trait_changed subscriber")
    );
}

#[test]
fn validate_refuses_an_exit_on_identify_and_says_to_watch_the_trait() {
    let with = |exit: &str| {
        format!(
            "id: offer\nname: Offer\ntrigger: {{event: paywall_hit}}\nexit_when:\n  - {exit}\nsteps:\n  - id: w\n    wait: 1d\n"
        )
    };
    for (exit, says) in [
        (
            r#"{event: identify, where: "profile.subscriber == true"}"#,
            r#"offer.yaml:5:6: exit_when[0].event: an identify is no track event: no event `identify` comes when the app identifies a user (an identify changes her profile), so this exit would never happen. To exit when an identify changes a trait, write `{trait_changed: subscriber, where: "event.to == true"}`"#,
        ),
        (
            r#"{event: "$identify"}"#,
            r#"exit_when[0].event: an identify is no track event: no event `$identify` comes"#,
        ),
        (
            "{event: page}",
            "a `page` call comes as the track event `page_viewed`",
        ),
        (
            "{event: track}",
            "`track` is the type of a Segment call, not an event's name",
        ),
        (
            "{event: subscribed, trait_changed: subscriber}",
            "exit_when[0].trait_changed: write one of `event` (a track event the app sends) and `trait_changed`",
        ),
        (
            "{where: \"profile.subscriber == true\"}",
            "exit_when[0]: name what it listens to: `event: order_completed` (a track event the app sends), or `trait_changed: plan`",
        ),
        (
            "{trait_changed: address.city}",
            "exit_when[0].trait_changed: `address.city` with a dot is one flat trait name",
        ),
    ] {
        let errors = waymark::dsl::parse("offer.yaml", &with(exit)).expect_err(exit);
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            all.iter().any(|e| e.contains(says)),
            "{exit}: {all:#?}"
        );
    }
    // a goal and a wait on an identify too
    let goal = "id: offer\nname: Offer\ntrigger: {event: paywall_hit}\ngoal: {event: identify, within: 7d}\nsteps:\n  - id: w\n    wait_for: {event: identify, timeout: 1d}\n";
    let errors = waymark::dsl::parse("offer.yaml", goal).expect_err("goal");
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("goal.event: an identify is no track event")
                && e.contains(
                    "goal: {trait_changed: plan, where: \"event.to == 'pro'\", within: 7d}"
                )),
        "{all:#?}"
    );
    assert!(
        all.iter().any(
            |e| e.contains("steps[0].wait_for.event: an identify is no track event")
                && e.contains("wait would always time out")
        ),
        "{all:#?}"
    );
    // what it should be is valid
    journey(OFFER);
}

/// [`OFFER`] as its version 2: the exit on `subscriber` dropped, one on `plan` instead (or
/// none).
fn offer_v2(exit: &str) -> String {
    OFFER
        .replace(
            "exit_when:\n  - trait_changed: subscriber\n    where: \"event.to == true\"\n",
            exit,
        )
        .replace("Subscribe, ", "Subscribe now, ")
}

/// Ann entered version 1, whose exit watches `subscriber`; version 2 watches `plan` instead.
/// Her subscribing still ends her offer, on her version's rule, while Bob, who entered version
/// 2, is kept in by the same change (his version has no such exit) and is sent the offer.
#[tokio::test]
async fn an_older_versions_exit_on_a_trait_still_ends_those_enrolled_on_it() {
    let h = Harness::new("2026-03-01T00:00:00Z");
    assert_eq!(h.publish(OFFER).await, 1);
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.play(&track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"))
        .await;
    let v2 = offer_v2("exit_when: [{trait_changed: plan}]\n");
    assert_eq!(h.publish(&v2).await, 2);
    h.play(&identify("2026-03-01T01:00:00Z", "bob", "b-0", json!({})))
        .await;
    h.play(&track("2026-03-01T01:30:00Z", "bob", "paywall_hit", "b-1"))
        .await;
    h.play(&identify(
        "2026-03-01T02:00:00Z",
        "ann",
        "a-2",
        json!({"subscriber": true}),
    ))
    .await;
    h.play(&identify(
        "2026-03-01T02:00:00Z",
        "bob",
        "b-2",
        json!({"subscriber": true}),
    ))
    .await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-03-02T01:30:00Z bob email s: Subscribe now, bob"]
    );
    let ann = h.rt.user("ann").await.expect("user");
    assert_eq!(
        (
            ann.enrollments[0].version,
            ann.enrollments[0].end_reason.as_deref()
        ),
        (1, Some("exit_when trait_changed subscriber"))
    );
    let bob = h.rt.user("bob").await.expect("user");
    assert_eq!(
        (
            bob.enrollments[0].version,
            bob.enrollments[0].end_reason.as_deref()
        ),
        (2, Some("completed"))
    );
}

/// As [`a_retried_identify_still_exits`], with version 2 (no exit on a trait) published since
/// she entered version 1: the profile keeps the notes of the trait her version's exit watches,
/// and the retry finds its change.
#[tokio::test]
async fn a_retried_identify_still_exits_after_a_version_without_the_exit() {
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(OFFER).await;
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.play(&track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"))
        .await;
    assert_eq!(h.publish(&offer_v2("")).await, 2);
    // its first delivery wrote her profile, noting the change, then stopped; it comes again
    redeliver_after_its_profile_write(&h).await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(
        view.enrollments[0].end_reason.as_deref(),
        Some("exit_when trait_changed subscriber")
    );
}

/// `line` (a script line) stamped at `stamp`: it arrives at its `at`, later than it happened.
fn stamped(line: &str, stamp: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).expect("a script line");
    v["timestamp"] = json!(stamp);
    v.to_string()
}

/// The identify that makes her a subscriber is processed before the paywall hit that enters
/// her, though stamped after it (events out of order): her entry finds its change in the
/// profile's notes and she exits at once, as she would had the identify come second. A change
/// from before her trigger, or one the exit's `where` refuses, keeps her in.
#[tokio::test]
async fn a_trait_change_stamped_after_the_trigger_but_processed_first_exits_at_entry() {
    let script = [
        identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})),
        identify("2026-03-01T00:00:00Z", "bob", "b-0", json!({})),
        identify("2026-03-01T00:00:00Z", "cat", "c-0", json!({})),
        // ann subscribes at 02:00, her paywall hit of 01:00 arrives after it
        identify(
            "2026-03-01T02:00:00Z",
            "ann",
            "a-2",
            json!({"subscriber": true}),
        ),
        stamped(
            &track("2026-03-01T02:05:00Z", "ann", "paywall_hit", "a-1"),
            "2026-03-01T01:00:00Z",
        ),
        // bob subscribed before his paywall hit: no exit on what came before
        identify(
            "2026-03-01T00:30:00Z",
            "bob",
            "b-2",
            json!({"subscriber": true}),
        ),
        track("2026-03-01T01:00:00Z", "bob", "paywall_hit", "b-1"),
        // cat's change does not meet the `where`
        identify(
            "2026-03-01T02:00:00Z",
            "cat",
            "c-2",
            json!({"subscriber": false}),
        ),
        stamped(
            &track("2026-03-01T02:05:00Z", "cat", "paywall_hit", "c-1"),
            "2026-03-01T01:00:00Z",
        ),
    ]
    .join("\n");
    let out = sim(&[OFFER], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-03-02T01:00:00Z bob email s: Subscribe, bob",
            "2026-03-02T02:05:00Z cat email s: Subscribe, cat",
        ]
    );
    assert_eq!(
        facts(&out, "ann", ends),
        ["2026-03-01T02:05:00Z offer/w: exited on trait_changed subscriber"]
    );
    assert_eq!(
        facts(&out, "cat", ends),
        ["2026-03-02T02:05:00Z offer/s: completed"]
    );
}

/// An exit whose `where` reads the trigger (`event.to == trigger.plan`: the plan she started
/// checking out) is judged at entry on the trigger that entered her: Dan's upgrade to the plan
/// of his checkout, processed first, ends it; Eve's to another plan does not.
#[tokio::test]
async fn a_late_change_is_judged_on_the_trigger_that_entered_her() {
    let checkout = r#"
id: checkout
name: Checkout
trigger: {event: checkout_started}
exit_when: [{trait_changed: plan, where: "event.to == trigger.plan"}]
steps:
  - id: w
    wait: 1h
  - id: s
    send: {email: {subject: "Finish your upgrade", text: "."}}
"#;
    let started = |user: &str, id: &str| {
        stamped(
            &json!({"at": "2026-03-01T02:05:00Z", "userId": user, "event": "checkout_started",
                "messageId": id, "properties": {"plan": "pro"}})
            .to_string(),
            "2026-03-01T01:00:00Z",
        )
    };
    let script = [
        identify(
            "2026-03-01T00:00:00Z",
            "dan",
            "d-0",
            json!({"plan": "free"}),
        ),
        identify(
            "2026-03-01T00:00:00Z",
            "eve",
            "e-0",
            json!({"plan": "free"}),
        ),
        identify("2026-03-01T02:00:00Z", "dan", "d-2", json!({"plan": "pro"})),
        identify(
            "2026-03-01T02:00:00Z",
            "eve",
            "e-2",
            json!({"plan": "basic"}),
        ),
        started("dan", "d-1"),
        started("eve", "e-1"),
    ]
    .join("\n");
    let out = sim(&[checkout], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-03-01T03:05:00Z eve email s: Finish your upgrade"]
    );
    assert_eq!(
        facts(&out, "dan", ends),
        ["2026-03-01T02:05:00Z checkout/w: exited on trait_changed plan"]
    );
}

/// The same at the runtime, for a goal too: the subscribing identify, processed before the
/// paywall hit it follows, converts her entry (her offer still goes out, as a goal lets it),
/// and, in a journey that exits on it, ends the entry, counted as an exit, its offer skipped
/// saying why.
#[tokio::test]
async fn a_late_change_converts_and_exits_at_entry_counted_as_the_identify_would_be() {
    let goal = r#"
id: goal
name: Goal
trigger: {event: paywall_hit}
goal: {trait_changed: subscriber, where: "event.to == true", within: 2d}
steps:
  - id: s
    send: {email: {subject: "Subscribe", text: "."}}
  - id: w
    wait: 7d
"#;
    // the offer at once, the wait after it
    let offer = OFFER.replace("  - id: w\n    wait: 1d\n", "") + "  - id: w\n    wait: 1d\n";
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(&offer).await;
    h.publish(goal).await;
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.play(&identify(
        "2026-03-01T02:00:00Z",
        "ann",
        "a-2",
        json!({"subscriber": true}),
    ))
    .await;
    h.play(&stamped(
        &track("2026-03-01T02:05:00Z", "ann", "paywall_hit", "a-1"),
        "2026-03-01T01:00:00Z",
    ))
    .await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-03-01T02:05:00Z ann email s: Subscribe"]);
    let view = h.rt.user("ann").await.expect("user");
    let of = |j: &str| {
        view.enrollments
            .iter()
            .find(|e| *e.journey == *j)
            .expect("an enrollment")
    };
    assert_eq!(
        of("offer").end_reason.as_deref(),
        Some("exit_when trait_changed subscriber")
    );
    assert_eq!(of("goal").converted_at, Some(at("2026-03-01T02:00:00Z")));
    let skipped: Vec<&str> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { detail, .. } => detail.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        ["the change of subscriber by identify a-2 (at 2026-03-01T02:00:00Z) came before the message could go out: it arrived before its trigger"]
    );
    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats("offer").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(&offer), 1, &counters);
    assert_eq!(stats.exited, 1, "{counters:?}");
    let counters = h.rt.stats("goal").await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(goal), 1, &counters);
    assert_eq!(stats.converted, 1, "{counters:?}");
}

/// An identify stamped at the very instant of the paywall hit reaches her whichever of the two
/// is processed first, as an exit or goal event of that instant does: after the trigger, the
/// change ends her offer and converts her goal; before it, her entry finds the change in the
/// profile's notes and does the same. One outcome for both orders.
#[tokio::test]
async fn a_change_at_the_triggers_instant_counts_in_either_order() {
    let goal = r#"
id: goal
name: Goal
trigger: {event: paywall_hit}
goal: {trait_changed: subscriber, where: "event.to == true", within: 2d}
steps:
  - id: w
    wait: 1d
"#;
    for identify_first in [true, false] {
        let h = Harness::new("2026-03-01T00:00:00Z");
        h.publish(OFFER).await;
        h.publish(goal).await;
        h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
            .await;
        let (change_at, hit_at) = if identify_first {
            ("2026-03-01T02:00:00Z", "2026-03-01T02:05:00Z")
        } else {
            ("2026-03-01T02:05:00Z", "2026-03-01T02:00:00Z")
        };
        let change = stamped(
            &identify(change_at, "ann", "a-2", json!({"subscriber": true})),
            "2026-03-01T01:00:00Z",
        );
        let hit = stamped(
            &track(hit_at, "ann", "paywall_hit", "a-1"),
            "2026-03-01T01:00:00Z",
        );
        if identify_first {
            h.play(&change).await;
            h.play(&hit).await;
        } else {
            h.play(&hit).await;
            h.play(&change).await;
        }
        h.advance_to(at("2026-03-03T00:00:00Z")).await;
        assert_eq!(
            h.outbox(),
            Vec::<String>::new(),
            "identify first: {identify_first}"
        );
        let view = h.rt.user("ann").await.expect("user");
        let of = |j: &str| {
            view.enrollments
                .iter()
                .find(|e| *e.journey == *j)
                .expect("an enrollment")
        };
        assert_eq!(
            of("offer").end_reason.as_deref(),
            Some("exit_when trait_changed subscriber"),
            "identify first: {identify_first}"
        );
        assert_eq!(
            of("goal").converted_at,
            Some(at("2026-03-01T01:00:00Z")),
            "identify first: {identify_first}"
        );
    }
}

/// The goal and exit journeys of [`a_late_change_converts_and_exits_at_entry_counted_as_the_identify_would_be`].
fn goal_and_offer() -> (String, String) {
    let goal = r#"
id: goal
name: Goal
trigger: {event: paywall_hit}
goal: {trait_changed: subscriber, where: "event.to == true", within: 2d}
steps:
  - id: s
    send: {email: {subject: "Subscribe", text: "."}}
  - id: w
    wait: 7d
"#;
    let offer = OFFER.replace("  - id: w\n    wait: 1d\n", "") + "  - id: w\n    wait: 1d\n";
    (goal.to_string(), offer)
}

/// The exits and conversions `journey` (version 1, `text`) counts once its timeline is folded.
async fn ended(h: &Harness, id: &str, text: &str) -> (i64, i64) {
    h.rt.fold_stats().await.expect("fold");
    let counters = h.rt.stats(id).await.expect("stats");
    let stats = waymark::api::journey_stats(&journey(text), 1, &counters);
    (stats.exited, stats.converted)
}

/// The subscribing identify's first delivery wrote her profile and stopped; her paywall hit,
/// stamped before it, enters both journeys and ends the offer and converts the goal at entry on
/// the change noted. The identify's retry then finds the enrollments ended or converted by its
/// own change: nothing is counted twice (one exit, one conversion).
#[tokio::test]
async fn a_retried_identify_after_a_late_change_ended_her_entry_counts_nothing_again() {
    let (goal, offer) = goal_and_offer();
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(&offer).await;
    h.publish(&goal).await;
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.advance_to(at("2026-03-01T02:00:00Z")).await;
    let retry = profile_written_only(&h).await;
    h.play(&stamped(
        &track("2026-03-01T02:05:00Z", "ann", "paywall_hit", "a-1"),
        "2026-03-01T01:00:00Z",
    ))
    .await;
    assert_eq!(ended(&h, "offer", &offer).await, (1, 0));
    assert_eq!(ended(&h, "goal", &goal).await, (0, 1));
    h.advance_to(at("2026-03-01T02:10:00Z")).await;
    h.deliver(retry).await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-03-01T02:05:00Z ann email s: Subscribe"]);
    assert_eq!(ended(&h, "offer", &offer).await, (1, 0));
    assert_eq!(ended(&h, "goal", &goal).await, (0, 1));
    let view = h.rt.user("ann").await.expect("user");
    let goal_entry = view
        .enrollments
        .iter()
        .find(|e| *e.journey == *"goal")
        .expect("the goal's enrollment");
    assert_eq!(goal_entry.converted_at, Some(at("2026-03-01T02:00:00Z")));
}

/// A note written before notes kept the identify's stamp (`at` missing) is not judged at
/// entry: when it was is not known, so it may have come before the trigger. Ann's paywall hit,
/// processed after such a note, keeps her in, and her offer goes out.
#[tokio::test]
async fn a_note_with_no_time_is_not_judged_at_entry() {
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(OFFER).await;
    h.play(&identify("2026-03-01T00:00:00Z", "ann", "a-0", json!({})))
        .await;
    h.play(&identify(
        "2026-03-01T02:00:00Z",
        "ann",
        "a-2",
        json!({"subscriber": true}),
    ))
    .await;
    // As a release before notes kept the identify's stamp wrote it.
    let key = waymark::runtime::profile_key("ann");
    let stored = h.store.get(&key).await.expect("get").expect("a profile");
    let mut written: serde_json::Value = stored.parse().expect("profile");
    let notes = written["trait_changes"]["subscriber"]
        .as_array_mut()
        .expect("the notes of subscriber");
    assert_eq!(notes.len(), 1);
    for n in notes.iter_mut() {
        n.as_object_mut().expect("a note").remove("at");
    }
    h.store
        .put(
            &Record::new(key, stored.version + 1, &written).expect("record"),
            Expect::Version(stored.version),
        )
        .await
        .expect("profile");
    h.play(&stamped(
        &track("2026-03-01T02:05:00Z", "ann", "paywall_hit", "a-1"),
        "2026-03-01T01:00:00Z",
    ))
    .await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-03-02T02:05:00Z ann email s: Subscribe, ann"]
    );
}

/// A journey entered on a change of `plan` that exits on any change of it is not ended at
/// entry by the identify that entered it: that change is its trigger, not one after it.
#[tokio::test]
async fn a_trait_changed_entry_is_not_ended_by_its_own_identify_as_a_late_change() {
    let trial = r#"
id: trial
name: Trial
trigger:
  trait_changed: plan
  where: "event.to == 'trial'"
exit_when:
  - trait_changed: plan
steps:
  - id: w
    wait: 3d
  - id: s
    send: {email: {subject: "trial ends", text: "."}}
"#;
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(trial).await;
    h.play(&identify(
        "2026-03-01T00:00:00Z",
        "fay",
        "f-0",
        json!({"plan": "trial"}),
    ))
    .await;
    h.advance_to(at("2026-03-05T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-03-04T00:00:00Z fay email s: trial ends"]);
    let view = h.rt.user("fay").await.expect("user");
    assert_eq!(view.enrollments[0].end_reason.as_deref(), Some("completed"));
}

/// An upgrade her backend stamped in the window of her first trial offer reaches the engine
/// only after she hit the paywall again and re-entered (events out of order): the first
/// enrollment converts, credited to its message, as a late goal event converts it; once, though
/// the identify is delivered twice; the enrollment she is in now does not.
#[tokio::test]
async fn a_late_change_converts_the_enrollment_before_a_reentry() {
    let trial = r#"
id: trial
name: Trial
trigger: {event: paywall_hit}
reentry: after_exit
goal: {trait_changed: plan, where: "event.to == 'pro'", within: 2d}
steps:
  - id: s
    send: {email: {subject: "Go pro", text: "."}}
"#;
    let h = Harness::new("2026-03-01T00:00:00Z");
    h.publish(trial).await;
    h.play(&identify(
        "2026-03-01T00:00:00Z",
        "ann",
        "a-0",
        json!({"plan": "free"}),
    ))
    .await;
    h.play(&track("2026-03-01T01:00:00Z", "ann", "paywall_hit", "a-1"))
        .await;
    h.play(&track("2026-03-02T09:00:00Z", "ann", "paywall_hit", "a-2"))
        .await;
    let upgrade = stamped(
        &identify("2026-03-02T10:00:00Z", "ann", "a-3", json!({"plan": "pro"})),
        "2026-03-01T12:00:00Z",
    );
    h.play(&upgrade).await;
    h.play(&upgrade.replace("2026-03-02T10:00:00Z", "2026-03-02T10:05:00Z"))
        .await;
    h.advance_to(at("2026-03-03T00:00:00Z")).await;
    let view = h.rt.user("ann").await.expect("user");
    let converted: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| format!("{} {}", e.enrollment, waymark::runtime::describe(&e.what)))
        .collect();
    assert_eq!(
        converted,
        ["trial:ann:1 converted on trait_changed plan (at 2026-03-01T12:00:00Z), credited to s"]
    );
    assert_eq!(ended(&h, "trial", trial).await, (0, 1));
}
