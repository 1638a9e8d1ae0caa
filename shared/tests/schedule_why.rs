//! Why a schedule journey did (or did not) send a user its message: a run keeps no trace of a
//! user its `where` leaves out, so `GET /v1/users/{id}` judges each schedule journey's runs
//! against her profile as it is now (`schedules`). Through the real `Api` handler, over the
//! harness's runtime and store.

mod support;

use http::StatusCode;
use serde_json::{json, Value};

use support::view::{api, user_view};
use support::*;
use waymark::api::Api;

/// Every Monday at 09:00 in Paris, to the free plan; once a user.
const DIGEST: &str = r#"
id: digest
name: Weekly digest
trigger:
  schedule: {cron: "0 9 * * mon", timezone: Europe/Paris, where: "profile.plan == 'free'"}
reentry: never
steps:
  - id: digest
    send: {email: {subject: "Your week", text: "Picks"}}
"#;

/// A `where` that reads a secret/// A `where` that reads a secret: its value is never shown.
const VIP: &str = r#"
id: vip
name: VIP
trigger:
  schedule: {cron: "0 10 * * *", timezone: user, where: "profile.vip_token == 'gold-7'"}
reentry: after_exit
steps:
  - id: hello
    send: {email: {subject: "Hello", text: "VIP"}}
"#;

/// A birthday: the answer is as of now.
const BIRTHDAY: &str = r#"
id: birthday
name: Birthday
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC, where: "anniversary(profile.birthday)"}
reentry: after_exit
steps:
  - id: wish
    send: {email: {subject: "Happy birthday", text: "x"}}
"#;

/// The view's answer for `journey`.
async fn answer(api: &Api, user: &str, journey: &str) -> Value {
    let (status, v, text) = user_view(api, user).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    v["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["journey"] == journey)
        .cloned()
        .unwrap_or_else(|| panic!("no answer for {journey}: {text}"))
}

/// The scheduler's minutes up to `t` (each schedule run in them started), then what they queued.
async fn run_to(h: &Harness, t: &str) {
    let t = at(t);
    h.clock.set(t);
    tick(&h.rt, &h.store).await.expect("the scheduler");
    h.advance_to(t).await;
}

fn identify(at: &str, user: &str, traits: Value) -> String {
    json!({"at": at, "type": "identify", "userId": user, "traits": traits}).to_string()
}

/// The scene: ann and dan on the digest (free and premium), the first run on Monday 7 December.
async fn scene() -> Harness {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(DIGEST).await;
    let script = [
        identify(
            "2026-12-01T09:00:00Z",
            "ann",
            json!({"email": "ann@example.com", "plan": "free"}),
        ),
        identify(
            "2026-12-01T09:00:00Z",
            "dan",
            json!({"email": "dan@example.com", "plan": "premium"}),
        ),
    ]
    .join("\n");
    h.play(&script).await;
    run_to(&h, "2026-12-07T08:00:00Z").await;
    h.advance_to(at("2026-12-07T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-07T08:00:00Z ann email digest: Your week"]
    );
    h
}

/// A user the `where` leaves out: what each path it reads held, the runs' times, in the
/// schedule's zone.
#[tokio::test]
async fn a_user_the_schedules_where_leaves_out_is_told_what_it_read() {
    let h = scene().await;
    let api = api(&h);
    assert_eq!(
        answer(&api, "dan", "digest").await,
        json!({
            "journey": "digest", "version": 1, "at": "2026-12-07T12:00:00Z",
            "cron": "0 9 * * mon", "timezone": "Europe/Paris", "where": "profile.plan == 'free'",
            "last_run": "2026-12-07T08:00:00Z", "next_run": "2026-12-14T08:00:00Z",
            "matches": false, "reason": "condition",
            "detail": "`where: profile.plan == 'free'` is false now (profile.plan = \"premium\"): the runs leave the user out while it is; the next run, at 2026-12-14T08:00:00Z, reads it again"
        })
    );
    // The timeline has nothing of it (no run writes for a user it leaves out): the answer is
    // apart from it.
    let (_, v, _) = user_view(&api, "dan").await;
    assert_eq!(v["timeline"], json!([]));
    // ann entered at that run.
    let ann = answer(&api, "ann", "digest").await;
    assert_eq!(
        (&ann["reason"], &ann["enrollment"], &ann["detail"]),
        (
            &json!("entered"),
            &json!("digest:ann:1"),
            &json!("entered at the run of 2026-12-07T08:00:00Z (version 1); no longer in it: completed at 2026-12-07T08:00:00Z")
        ),
        "{ann}"
    );
}

/// A user who matches but whom the entry rule refuses (`reentry: never`), and one who came to
/// match after the last run: she is told the next run enters her, and what changed.
#[tokio::test]
async fn a_matching_user_is_told_the_rule_that_keeps_her_out_or_the_run_that_enters_her() {
    let h = scene().await;
    run_to(&h, "2026-12-14T08:00:00Z").await;
    h.advance_to(at("2026-12-14T12:00:00Z")).await;
    // dan moves to the free plan after the second run.
    h.play(&identify(
        "2026-12-14T13:00:00Z",
        "dan",
        json!({"plan": "free"}),
    ))
    .await;
    h.advance_to(at("2026-12-14T14:00:00Z")).await;
    let api = api(&h);
    let ann = answer(&api, "ann", "digest").await;
    assert_eq!(
        (
            &ann["matches"],
            &ann["reason"],
            &ann["enrollment"],
            &ann["detail"]
        ),
        (
            &json!(true),
            &json!("reentry"),
            &json!("digest:ann:1"),
            &json!("`reentry: never`, and the user entered on 2026-12-07T08:00:00Z")
        ),
        "{ann}"
    );
    assert_eq!(ann["last_run"], "2026-12-14T08:00:00Z", "{ann}");
    let dan = answer(&api, "dan", "digest").await;
    assert_eq!(
        (&dan["matches"], &dan["reason"], &dan["detail"]),
        (
            &json!(true),
            &json!("next_run"),
            &json!("the `where` holds now and no rule keeps the user out: the next run, at 2026-12-21T08:00:00Z, enters them; not entered at the last run (2026-12-14T08:00:00Z): profile.plan was set after it, at 2026-12-14T13:00:00Z")
        ),
        "{dan}"
    );
    // and it does
    run_to(&h, "2026-12-21T08:00:00Z").await;
    assert_eq!(
        h.outbox().last().map(String::as_str),
        Some("2026-12-21T08:00:00Z dan email digest: Your week")
    );
}

/// A run minutes old that has not read her page yet is not said to have left her out: it
/// still may enter her, and does.
#[tokio::test]
async fn a_run_still_reading_the_profiles_may_enter_a_matching_user() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(DIGEST).await;
    h.play(&identify(
        "2026-12-01T09:00:00Z",
        "ann",
        json!({"email": "ann@example.com", "plan": "free"}),
    ))
    .await;
    // The scheduler starts the run of Monday 09:00 in Paris; no page of it is read yet.
    h.clock.set(at("2026-12-07T08:01:00Z"));
    tick(&h.rt, &h.store).await.expect("the scheduler");
    let api = api(&h);
    let ann = answer(&api, "ann", "digest").await;
    assert_eq!(
        (&ann["reason"], &ann["matches"], &ann["last_run"]),
        (
            &json!("running"),
            &json!(true),
            &json!("2026-12-07T08:00:00Z")
        ),
        "{ann}"
    );
    h.advance_to(at("2026-12-07T08:02:00Z")).await;
    assert_eq!(answer(&api, "ann", "digest").await["reason"], "entered");
}

/// After an outage the scheduler starts the runs it missed late: a run it has not started yet
/// is not said to have left her out.
#[tokio::test]
async fn a_run_the_scheduler_has_not_started_yet_may_enter_a_matching_user() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(DIGEST).await;
    h.play(&identify(
        "2026-12-01T09:00:00Z",
        "ann",
        json!({"email": "ann@example.com", "plan": "free"}),
    ))
    .await;
    run_to(&h, "2026-12-01T09:00:00Z").await;
    // The scheduler is down from then until an hour past Monday's run.
    h.clock.set(at("2026-12-07T09:00:00Z"));
    let api = api(&h);
    let ann = answer(&api, "ann", "digest").await;
    assert_eq!(ann["reason"], "running", "{ann}");
    assert!(
        ann["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the run of 2026-12-07T08:00:00Z has not started yet")),
        "{ann}"
    );
    // It catches up, a day of minutes a tick, and the run enters her.
    for _ in 0..7 {
        tick(&h.rt, &h.store).await.expect("the scheduler");
    }
    h.advance_to(at("2026-12-07T09:00:00Z")).await;
    assert_eq!(answer(&api, "ann", "digest").await["reason"], "entered");
}

/// What a visitor she turned out to be entered counts for the answer as it does for the runs'
/// entry rule: every id her profile lists, whatever became of the visitor's own profile.
#[tokio::test]
async fn a_visitor_she_turned_out_to_be_counts_as_the_runs_count_it() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(DIGEST).await;
    h.play(
        &json!({"at": "2026-12-01T09:00:00Z", "type": "identify", "anonymousId": "d1",
            "traits": {"email": "d1@example.com", "plan": "free"}})
        .to_string(),
    )
    .await;
    run_to(&h, "2026-12-07T08:00:00Z").await;
    h.advance_to(at("2026-12-07T12:00:00Z")).await;
    h.play(&identify(
        "2026-12-08T09:00:00Z",
        "ann",
        json!({"email": "ann@example.com", "plan": "free"}),
    ))
    .await;
    h.play(
        &json!({"at": "2026-12-08T09:01:00Z", "type": "identify", "userId": "ann",
            "anonymousId": "d1", "traits": {}})
        .to_string(),
    )
    .await;
    h.advance_to(at("2026-12-08T10:00:00Z")).await;
    // The visitor's profile is gone (ann's still lists the id): the runs' entry rule reads
    // the visitor's enrollment all the same.
    use waymark::store::Store as _;
    h.store
        .delete(
            &waymark::runtime::profile_key("anon:d1"),
            waymark::store::Expect::Any,
        )
        .await
        .expect("deleted");
    let api = api(&h);
    let ann = answer(&api, "ann", "digest").await;
    assert_eq!(
        (&ann["reason"], &ann["enrollment"]),
        (&json!("reentry"), &json!("digest:anon:d1:1")),
        "{ann}"
    );
    run_to(&h, "2026-12-14T08:00:00Z").await;
    h.advance_to(at("2026-12-14T12:00:00Z")).await;
    assert!(
        !h.outbox().iter().any(|m| m.contains(" ann ")),
        "{:?}",
        h.outbox()
    );
}

/// A `where` that reads a secret (a token, by its key) names the path, never its value; one
/// that reads the date is judged at the next run's minute; the cron of `timezone: user` is read in
/// her zone.
#[tokio::test]
async fn a_secret_the_where_reads_is_not_shown_and_a_date_is_judged_at_the_next_run() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(VIP).await;
    h.publish(BIRTHDAY).await;
    h.play(&identify(
        "2026-12-01T09:00:00Z",
        "ann",
        json!({"email": "ann@example.com", "vip_token": "tok-5f3a-secret",
            "timezone": "Asia/Tokyo", "birthday": "1990-12-25"}),
    ))
    .await;
    h.advance_to(at("2026-12-02T12:00:00Z")).await;
    let api = api(&h);
    let (_, _, text) = user_view(&api, "ann").await;
    let vip = answer(&api, "ann", "vip").await;
    assert_eq!(
        (&vip["timezone"], &vip["last_run"], &vip["next_run"]),
        (
            &json!("Asia/Tokyo"),
            &json!("2026-12-02T01:00:00Z"),
            &json!("2026-12-03T01:00:00Z")
        ),
        "10:00 in Tokyo: {vip}"
    );
    assert_eq!(
        vip["detail"],
        "`where: profile.vip_token == 'gold-7'` is false now (profile.vip_token set (not shown)): the runs leave the user out while it is; the next run, at 2026-12-03T01:00:00Z, reads it again"
    );
    // The token is in her profile (the view shows the profile as it is), but no answer shows it.
    let schedules =
        serde_json::to_string(&serde_json::from_str::<Value>(&text).expect("JSON")["schedules"])
            .expect("JSON");
    assert!(!schedules.contains("tok-5f3a"), "{schedules}");
    let birthday = answer(&api, "ann", "birthday").await;
    assert_eq!(
        (&birthday["as_of_now"], &birthday["matches"], &birthday["detail"]),
        (
            &json!(true),
            &json!(false),
            &json!("the next run, at 2026-12-03T09:00:00Z, leaves the user out: `where: anniversary(profile.birthday)` is false at its minute (profile.birthday = \"1990-12-25\"), with the profile as it is now; each run judges it at its own minute")
        ),
        "{birthday}"
    );
}

/// A closed journey is told only to a user still in it (its runs enter no one), a stopped one
/// to no one: every journey ever published would otherwise be in every view for good; a user
/// with no profile is a 404 as before.
#[tokio::test]
async fn a_closed_or_stopped_schedule_journey_is_left_out_unless_she_is_in_it() {
    let h = scene().await;
    h.publish(&DIGEST.replace("reentry: never", "reentry: never\nstatus: closed"))
        .await;
    let api = api(&h);
    for user in ["ann", "dan"] {
        let (_, v, text) = user_view(&api, user).await;
        assert!(v.get("schedules").is_none(), "{text}");
    }
    h.publish(&DIGEST.replace("reentry: never", "reentry: never\nstatus: stopped"))
        .await;
    let (_, v, text) = user_view(&api, "dan").await;
    assert!(v.get("schedules").is_none(), "{text}");
    let (status, v, text) = user_view(&api, "nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(v.get("schedules").is_none(), "{text}");
}
