//! Why a `repeated` or `inactive` journey has not sent a user its message yet: a count short of
//! its times, or an inactivity check not due, leaves no timeline fact, so `GET /v1/users/{id}`
//! tells where she stands with each such trigger (`triggers`), from her profile as it is now.
//! Through the real `Api` handler, over the harness's runtime and store.

mod support;

use http::StatusCode;
use serde_json::{json, Value};

use support::view::{api, user_view};
use support::*;
use waymark::api::Api;

/// A badge after five lessons in a week.
const BADGE: &str = r#"
id: five_lessons_badge
name: Five lessons
trigger:
  repeated: {event: lesson_completed, times: 5, within: 7d}
reentry: after_exit
steps:
  - id: badge
    send: {email: {subject: "Five lessons!", text: "x"}}
"#;

/// A win-back after two weeks without a lesson or an app opening, once a user.
const WINBACK: &str = r#"
id: inactive_winback
name: Win back
trigger:
  inactive: {events: [app_opened, lesson_completed], for: 14d}
reentry: never
steps:
  - id: miss_you
    send: {email: {subject: "We miss you", text: "x"}}
"#;

/// The view's answer for `journey`.
async fn answer(api: &Api, user: &str, journey: &str) -> Value {
    let (status, v, text) = user_view(api, user).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    v["triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["journey"] == journey)
        .cloned()
        .unwrap_or_else(|| panic!("no answer for {journey}: {text}"))
}

/// Lea, four lessons into five (one a day), and Bo, who only signed up.
async fn scene() -> Harness {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(BADGE).await;
    h.publish(WINBACK).await;
    let mut script = vec![
        json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": "lea", "traits": {"email": "lea@example.com"}}),
        json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "userId": "bo", "traits": {"email": "bo@example.com"}}),
    ];
    for day in 1..=4 {
        script.push(json!({"at": format!("2026-12-0{day}T10:00:00Z"), "userId": "lea", "event": "lesson_completed"}));
    }
    h.play(&script_of(&script)).await;
    h.advance_to(at("2026-12-04T12:00:00Z")).await;
    h
}

/// Four of five: which count, until when; her inactivity check armed by the latest lesson.
/// Before, her view had nothing of either journey.
#[tokio::test]
async fn a_user_short_of_a_count_is_told_it_and_her_pending_check() {
    let h = scene().await;
    let api = api(&h);
    assert_eq!(
        answer(&api, "lea", "five_lessons_badge").await,
        json!({
            "journey": "five_lessons_badge", "version": 1, "at": "2026-12-04T12:00:00Z",
            "trigger": "repeated", "event": "lesson_completed", "times": 5, "within": "1w",
            "counted": ["2026-12-01T10:00:00Z", "2026-12-02T10:00:00Z", "2026-12-03T10:00:00Z", "2026-12-04T10:00:00Z"],
            "drops_out_at": "2026-12-08T10:00:00Z",
            "reason": "counting",
            "detail": "4 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-01T10:00:00Z, drops out at 2026-12-08T10:00:00Z; 1 more by 2026-12-08T10:00:00Z makes the count (later, the earliest no longer counts with them)"
        })
    );
    assert_eq!(
        answer(&api, "lea", "inactive_winback").await,
        json!({
            "journey": "inactive_winback", "version": 1, "at": "2026-12-04T12:00:00Z",
            "trigger": "inactive", "events": ["app_opened", "lesson_completed"], "for": "2w",
            "last_activity": "2026-12-04T10:00:00Z", "check_at": "2026-12-15T10:00:00Z",
            "enters_at": "2026-12-18T10:00:00Z",
            "reason": "pending",
            "detail": "her latest of app_opened, lesson_completed at 2026-12-04T10:00:00Z: her check at 2026-12-15T10:00:00Z looks again from it and enters her at 2026-12-18T10:00:00Z if she does none of app_opened, lesson_completed before"
        })
    );
    // Bo did none of them: never checked.
    let bo = answer(&api, "bo", "inactive_winback").await;
    assert_eq!(bo["reason"], "no_activity", "{bo}");
    assert!(bo.get("check_at").is_none(), "{bo}");
    assert_eq!(
        answer(&api, "bo", "five_lessons_badge").await["reason"],
        "counting"
    );
    // Nothing of it is in the timeline: the answer is apart from it.
    let (_, v, _) = user_view(&api, "lea").await;
    assert_eq!(v["timeline"], json!([]));
    // An unknown user is a 404, as before.
    let (status, v, text) = user_view(&api, "nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(v.get("triggers").is_none(), "{text}");
}

/// The fifth lesson enters her, and the count starts again after it; the check, when it comes,
/// enters her in the win-back, and `reentry: never` is what keeps her out after.
#[tokio::test]
async fn after_the_count_and_the_check_the_entry_rules_are_told() {
    let h = scene().await;
    h.play(&script_of(&[
        json!({"at": "2026-12-05T10:00:00Z", "userId": "lea", "event": "lesson_completed"}),
    ]))
    .await;
    h.advance_to(at("2026-12-05T12:00:00Z")).await;
    let early = api(&h);
    let badge = answer(&early, "lea", "five_lessons_badge").await;
    assert_eq!(
        (&badge["reason"], &badge["counted"], &badge["after"]),
        (
            &json!("counting"),
            &json!([]),
            &json!("2026-12-05T10:00:00Z")
        ),
        "{badge}"
    );
    // Two weeks and more without a lesson: the check (looking again from the fifth) enters her.
    h.advance_to(at("2026-12-20T12:00:00Z")).await;
    assert!(
        h.outbox().iter().any(|l| l.contains("lea email miss_you")),
        "{:?}",
        h.outbox()
    );
    let later = api(&h);
    let winback = answer(&later, "lea", "inactive_winback").await;
    assert_eq!(winback["reason"], "reentry", "{winback}");
    assert!(
        winback["detail"].as_str().is_some_and(
            |d| d.starts_with("`reentry: never`, and the user entered on 2026-12-19T10:00:00Z")
        ),
        "{winback}"
    );
}

/// Two days without a workout, a nudge.
const STREAK: &str = r#"
id: streak_broken
name: Streak broken
trigger:
  inactive: {events: [workout_completed], for: 2d}
reentry: after_exit
steps:
  - id: nudge
    send: {email: {subject: "Your streak ended", text: "x"}}
"#;

/// Late history, one request an event (a phone flushing its offline queue): uma's one workout
/// ten days ago, amy's ten, six and one day ago. While the check waits its settle, the view
/// says when it comes and what it will read; after it, uma's entry says what her check read,
/// and amy, active a day ago, is pending, as the timeline (no entry) has it.
#[tokio::test]
async fn late_history_is_told_pending_until_its_check_and_the_entry_says_what_it_read() {
    let h = Harness::new("2026-12-10T12:00:00Z");
    h.publish(STREAK).await;
    let mut script = Vec::new();
    for user in ["amy", "uma"] {
        script.push(
            json!({"at": "2026-12-10T12:00:00Z", "type": "identify", "userId": user,
            "traits": {"email": format!("{user}@example.com")}}),
        );
    }
    let workout = |at: &str, user: &str, n: u32, stamp: &str| {
        json!({"at": at, "userId": user, "event": "workout_completed",
            "messageId": format!("{user}-{n}"), "timestamp": stamp})
    };
    script.push(workout(
        "2026-12-10T12:00:00Z",
        "uma",
        1,
        "2026-11-30T12:00:00Z",
    ));
    script.push(workout(
        "2026-12-10T12:00:00Z",
        "amy",
        1,
        "2026-11-30T12:00:00Z",
    ));
    script.push(workout(
        "2026-12-10T12:00:00.020Z",
        "amy",
        2,
        "2026-12-04T12:00:00Z",
    ));
    script.push(workout(
        "2026-12-10T12:00:00.040Z",
        "amy",
        3,
        "2026-12-09T12:00:00Z",
    ));
    h.play(&script_of(&script)).await;
    h.advance_to(at("2026-12-10T12:01:00Z")).await;
    let settling = api(&h);
    assert_eq!(
        answer(&settling, "uma", "streak_broken").await,
        json!({
            "journey": "streak_broken", "version": 1, "at": "2026-12-10T12:01:00Z",
            "trigger": "inactive", "events": ["workout_completed"], "for": "2d",
            "last_activity": "2026-11-30T12:00:00Z", "check_at": "2026-12-10T12:05:00Z",
            "enters_at": "2026-12-10T12:05:00Z",
            "reason": "pending",
            "detail": "her latest of workout_completed at 2026-11-30T12:00:00Z, which came late (it happened 10d before it came, at about 2026-12-10T12:00:00Z): her check waits until 2026-12-10T12:05:00Z, 5m after it came, for the rest of her late events, and enters her then if her latest of workout_completed is still from before 2026-12-08T12:05:00Z"
        })
    );
    let amy = answer(&settling, "amy", "streak_broken").await;
    assert_eq!(
        (&amy["reason"], &amy["check_at"], &amy["enters_at"]),
        (
            &json!("pending"),
            &json!("2026-12-10T12:05:00Z"),
            &json!("2026-12-11T12:00:00Z")
        ),
        "{amy}"
    );
    // A minute after her check entered her: told as done, as her timeline has it (not as
    // a check come due that the engine has still to take).
    h.advance_to(at("2026-12-10T12:06:00Z")).await;
    let uma = answer(&api(&h), "uma", "streak_broken").await;
    assert_eq!(uma["reason"], "checked", "{uma}");
    h.advance_to(at("2026-12-10T13:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-10T12:05:00Z uma email nudge: Your streak ended"]
    );
    let after = api(&h);
    let (_, v, text) = user_view(&after, "uma").await;
    let entered: Vec<&Value> = v["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"] == "entered")
        .collect();
    assert_eq!(
        entered,
        [
            &json!({"at": "2026-12-10T12:05:00Z", "journey": "streak_broken",
            "enrollment": "streak_broken:uma:1", "what": "entered", "version": 1,
            "trigger": "inactive",
            "detail": "her check at 2026-12-10T12:05:00Z read her profile: her latest of workout_completed was at 2026-11-30T12:00:00Z, 10d5m before (`for: 2d`)"})
        ],
        "{text}"
    );
    assert_eq!(
        answer(&after, "uma", "streak_broken").await["reason"],
        "checked"
    );
    // amy: no entry, and a check pending from her latest workout, as the timeline has it.
    let (_, v, text) = user_view(&after, "amy").await;
    assert!(
        !v["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["what"] == "entered"),
        "{text}"
    );
    let amy = answer(&after, "amy", "streak_broken").await;
    assert_eq!(
        (&amy["reason"], &amy["detail"]),
        (
            &json!("pending"),
            &json!("her latest of workout_completed at 2026-12-09T12:00:00Z: her check at 2026-12-10T12:05:00Z found it, and looks again at 2026-12-11T12:00:00Z: it enters her then if she does none of workout_completed before")
        ),
        "{amy}"
    );
}
