//! Identity: an anonymous user (events with `anonymousId` only) who turns out to be a known user
//! (an event with both `userId` and that `anonymousId`, as Segment's clients send after a
//! login) is merged into them: the journeys they are in go on under the user, what the
//! anonymous profile knew joins the user's, and later anonymous-only events are the user's.

mod support;

use serde_json::json;

use support::faulty::faulty_harness;
use support::{at, example_journey, tick, Harness};
use waymark::enrollment::Status;
use waymark::journey::Channel;
use waymark::runtime::describe;
use waymark::timeline::{Entry, What};

/// An anonymous shopper abandons a cart at 10:00 (the push at 10:30 finds no device), logs in
/// at 11:00, and gets the 14:30 email as the user they turned out to be.
const ANONYMOUS_CART: &str = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"device-1","event":"cart_abandoned","messageId":"cart-1","properties":{"cart_id":"c-1","total":89.9,"currency":"EUR","items":[{"name":"Trail shoes","price":79.9,"stock":3}]}}
"#;
const LOGIN: &str = r#"
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"device-1","messageId":"login-1","traits":{"email":"ann@example.com","first_name":"Ann"}}
"#;
const EMAIL: &str =
    "2026-12-01T14:30:00Z ann email low_stock_email: Still in your cart, and some of it may not last";

async fn cart() -> Harness {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(&example_journey("cart_abandonment")).await;
    h
}

/// A counter that may be left out (a fold leaves out counters that add up to nothing).
fn waiting(s: &std::collections::BTreeMap<String, i64>, name: &str) -> i64 {
    s.get(name).copied().unwrap_or(0)
}

/// Each enrollment in `user`'s view (the merged anonymous users' included): whose it is, and
/// its state, by user.
async fn states(h: &Harness, user: &str) -> Vec<(String, Status)> {
    let view = h.rt.user(user).await.expect("user");
    let mut enrollments = view.enrollments;
    // The anonymous users' own records too (the user's view shows an enrollment that went on
    // as the user's once, as it is now).
    let anonymous = view.profile.map(|p| p.anonymous_ids).unwrap_or_default();
    for a in anonymous {
        let theirs =
            h.rt.user(&format!("anon:{a}"))
                .await
                .expect("anonymous user");
        for e in theirs.enrollments {
            let shown = enrollments
                .iter()
                .any(|x| x.id == e.id && x.user_id == e.user_id);
            if !shown {
                enrollments.push(e);
            }
        }
    }
    let mut states: Vec<(String, Status)> = enrollments
        .iter()
        .map(|e| (e.user_id.to_string(), e.status))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    states
}

/// The states of the cart journey's enrollments once the anonymous one went on as ann's.
fn moved_and_completed() -> Vec<(String, Status)> {
    vec![
        ("ann".to_string(), Status::Completed),
        ("anon:device-1".to_string(), Status::Merged),
    ]
}

/// The journey's counters once every timeline record is folded.
async fn stats(h: &Harness, journey: &str) -> std::collections::BTreeMap<String, i64> {
    h.rt.fold_stats().await.expect("fold");
    h.rt.stats(journey).await.expect("stats")
}

/// The enrollments of `user`'s timeline entries (the merged anonymous users' included) that
/// `what` picks, in time order.
async fn timeline_of(h: &Harness, user: &str, what: impl Fn(&What) -> bool) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter(|e| what(&e.what))
        .map(|e| e.enrollment.to_string())
        .collect()
}

/// The journey's counters say one user entered and completed it.
async fn entered_and_completed_once(h: &Harness, journey: &str) {
    let s = stats(h, journey).await;
    assert_eq!(s.get("entered"), Some(&1), "{s:?}");
    assert_eq!(s.get("completed"), Some(&1), "{s:?}");
}

/// An unsubscribe link from a message the visitor got before logging in, followed after the
/// login, unsubscribes the user she turned out to be (the anonymous profile is no one's now):
/// the cart email is skipped as opted out.
#[tokio::test]
async fn an_unsubscribe_followed_after_the_login_reaches_the_user() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    h.play(LOGIN).await;
    h.rt.unsubscribe("anon:device-1", Channel::Email)
        .await
        .expect("unsubscribed");
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    let view = h.rt.user("ann").await.expect("ann");
    let subscriptions = view.profile.map(|p| p.traits["subscriptions"].clone());
    assert_eq!(subscriptions, Some(json!({"email": false})));
}

/// A login never widens consent: an anonymous visitor's later `subscriptions: {email: true}`
/// does not undo the user's own `email: false`, while the visitor's `sms: false` is taken.
#[tokio::test]
async fn a_login_keeps_the_users_opt_out_and_takes_the_visitors() {
    let h = cart().await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"bob","messageId":"b0","traits":{"email":"bob@example.com","subscriptions":{"email":false,"sms":true}}}
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"dev-9","messageId":"a0","traits":{"subscriptions":{"email":true,"sms":false,"push":true}}}
{"at":"2026-12-01T09:30:00Z","type":"identify","userId":"bob","anonymousId":"dev-9","messageId":"l0"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"cart_abandoned","messageId":"cart-b","properties":{"cart_id":"c-1","total":89.9,"currency":"EUR","items":[{"name":"Trail shoes","price":79.9,"stock":3}]}}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    let view = h.rt.user("bob").await.expect("bob");
    let subscriptions = view.profile.map(|p| p.traits["subscriptions"].clone());
    assert_eq!(
        subscriptions,
        Some(json!({"email": false, "sms": false, "push": true}))
    );
}

/// A journey entered once ever (`reentry: never`) is entered once by a person, whether she
/// was in it as the anonymous visitor or as herself: welcomed on the phone before logging in,
/// ann is not welcomed again as herself; welcomed as herself, the visitor's welcome that the
/// login would move to her ends instead of going on.
#[tokio::test]
async fn once_ever_counts_the_visitor_she_turned_out_to_be() {
    const WELCOME: &str = r#"
id: welcome
name: Welcome
trigger: {event: app_installed}
reentry: never
steps:
  - {id: w, wait: 1h}
  - {id: push, send: {push: {title: "welcome", body: "x"}}}
"#;
    // The visitor's welcome is over before the login; ann's own entry is refused.
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"dev-1","messageId":"i0","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T09:05:00Z","type":"track","anonymousId":"dev-1","event":"app_installed","messageId":"x1"}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-01T11:10:00Z","type":"track","userId":"ann","event":"app_installed","messageId":"x2"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:05:00Z anon:dev-1 push push: welcome"]
    );
    let view = h.rt.user("ann").await.expect("ann");
    let refused: Vec<String> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::NotEntered { reason, detail, .. } => {
                Some(format!("{reason}: {}", detail.as_deref().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        ["reentry: `reentry: never`, and the user entered on 2026-12-01T09:05:00Z (as the anonymous visitor `anon:dev-1` she turned out to be)"]
    );

    // Ann was welcomed as herself; the visitor's welcome, waiting when she logs in, ends.
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"a0","traits":{"push_tokens":[{"platform":"fcm","token":"tok-ann"}]}}
{"at":"2026-12-01T08:00:00Z","type":"track","userId":"ann","event":"app_installed","messageId":"x0"}
{"at":"2026-12-01T09:30:00Z","type":"track","anonymousId":"dev-1","event":"app_installed","messageId":"x1"}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T09:00:00Z ann push push: welcome"]);
    let view = h.rt.user("ann").await.expect("user");
    let anon = view
        .enrollments
        .iter()
        .find(|e| &*e.user_id == "anon:dev-1")
        .expect("the anonymous enrollment, in ann's view");
    assert_eq!(anon.status, Status::Exited);
    assert_eq!(
        anon.end_reason.as_deref(),
        Some("ann may not be in this journey again: `reentry: never`, and the user entered on 2026-12-01T08:00:00Z")
    );
    // and the timeline says the same, not that she is in the journey
    let merged: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Merged { .. }))
        .map(|e| describe(&e.what))
        .collect();
    assert_eq!(
        merged,
        ["anon:dev-1 turned out to be ann: ended, ann may not be in this journey again: `reentry: never`, and the user entered on 2026-12-01T08:00:00Z"]
    );

    // Welcomed as one visitor (over before that login), then as another on a second phone:
    // the second visitor's welcome, waiting at its login, ends too.
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","anonymousId":"dev-1","messageId":"i1","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T08:00:00Z","type":"track","anonymousId":"dev-1","event":"app_installed","messageId":"x1"}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-01T11:00:00Z","type":"identify","anonymousId":"dev-2","messageId":"i2","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev2"}]}}
{"at":"2026-12-01T11:00:00Z","type":"track","anonymousId":"dev-2","event":"app_installed","messageId":"x2"}
{"at":"2026-12-01T11:30:00Z","type":"identify","userId":"ann","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T09:00:00Z anon:dev-1 push push: welcome"]
    );
    let view = h.rt.user("ann").await.expect("user");
    let second = view
        .enrollments
        .iter()
        .find(|e| &*e.user_id == "anon:dev-2")
        .expect("the second visitor's enrollment, in ann's view");
    assert_eq!(second.status, Status::Exited);
    assert_eq!(
        second.end_reason.as_deref(),
        Some("ann may not be in this journey again: `reentry: never`, and the user entered on 2026-12-01T08:00:00Z (as the anonymous visitor `anon:dev-1` she turned out to be)")
    );
}

/// An event sent as a visitor and sent again, the same messageId, with the userId she turned
/// out to be added (a backend's retry) is one event: it does not enter her again.
#[tokio::test]
async fn an_event_sent_again_with_the_users_id_after_the_login_is_a_duplicate() {
    let journey = r#"
id: promo
name: Promo
trigger: {event: promo_requested}
reentry: after_exit
steps:
  - id: one
    send: {in_app: {title: "Your code", body: x}}
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(journey).await;
    h.play(
        r#"
{"at":"2026-12-01T10:00:00Z","anonymousId":"dev-r","event":"promo_requested","messageId":"m-1"}
{"at":"2026-12-01T10:01:00Z","type":"identify","userId":"rita","anonymousId":"dev-r","messageId":"l-1"}
{"at":"2026-12-01T10:02:00Z","userId":"rita","anonymousId":"dev-r","event":"promo_requested","messageId":"m-1","timestamp":"2026-12-01T10:00:00Z"}
{"at":"2026-12-01T10:03:00Z","userId":"rita","anonymousId":"dev-r","event":"promo_requested","messageId":"m-2"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    // the visitor's code, then hers for the second request: not a third for the retry
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T10:00:00Z anon:dev-r in_app one: Your code",
            "2026-12-01T10:03:00Z rita in_app one: Your code",
        ]
    );
}

/// An unsubscribe link followed is a statement of the email choice at that time: an opt-in
/// stated before it, arriving later, does not undo it, and a push opt-out stated before it,
/// arriving later, is still taken (not dropped because email changed since).
#[tokio::test]
async fn an_unsubscribe_link_and_late_identifies_keep_each_channels_latest_choice() {
    let h = Harness::new("2026-12-05T04:00:00Z");
    h.play(r#"{"at":"2026-12-05T04:00:00Z","type":"identify","userId":"kim","traits":{"email":"kim@example.com"}}"#)
        .await;
    h.advance_to(at("2026-12-05T05:00:00Z")).await;
    h.rt.unsubscribe("kim", Channel::Email)
        .await
        .expect("unsubscribe");
    h.play(r#"
{"at":"2026-12-05T05:10:00Z","type":"identify","userId":"kim","traits":{"subscriptions":{"email":true,"push":false}},"timestamp":"2026-12-05T04:50:00Z"}
"#)
    .await;
    let view = h.rt.user("kim").await.expect("kim");
    let subs = view.profile.map(|p| p.traits["subscriptions"].clone());
    assert_eq!(subs, Some(json!({"email": false, "push": false})));

    // Opted out already; the link followed again at 07:00 says it again (nothing changes);
    // an opt-in stated at 06:30 arriving after it does not undo it.
    h.play(r#"{"at":"2026-12-05T06:00:00Z","type":"identify","userId":"kim","traits":{"subscriptions":{"email":false}}}"#)
        .await;
    h.advance_to(at("2026-12-05T07:00:00Z")).await;
    h.rt.unsubscribe("kim", Channel::Email)
        .await
        .expect("unsubscribe");
    h.play(r#"{"at":"2026-12-05T07:10:00Z","type":"identify","userId":"kim","traits":{"subscriptions":{"email":true}},"timestamp":"2026-12-05T06:30:00Z"}"#)
        .await;
    let view = h.rt.user("kim").await.expect("kim");
    let email = view
        .profile
        .map(|p| p.traits["subscriptions"]["email"].clone());
    assert_eq!(email, Some(json!(false)));
}

/// The exit at the login is not lost when its write fails: the login is retried, and merges,
/// and exits, again.
#[tokio::test]
async fn a_guests_exit_at_the_login_survives_a_failed_write() {
    let journey = r#"
id: browse
name: Browse
trigger: {event: product_viewed}
exit_when: [{event: order_completed}]
steps:
  - {id: w, wait: 2h}
  - {id: inapp, send: {in_app: {title: "Still looking?", body: x}}}
"#;
    let (h, faulty) = faulty_harness();
    h.publish(journey).await;
    h.play(
        r#"
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"oscar","traits":{"email":"oscar@example.com"}}
{"at":"2026-12-01T10:01:00Z","userId":"oscar","event":"product_viewed","messageId":"v-1"}
{"at":"2026-12-01T10:05:00Z","anonymousId":"dev-o","event":"order_completed","messageId":"o-1"}
"#,
    )
    .await;
    *faulty.fail_write_of.lock().expect("fail") = Some("E#browse".into());
    h.play(r#"{"at":"2026-12-01T10:06:00Z","type":"identify","userId":"oscar","anonymousId":"dev-o","messageId":"l-1"}"#).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
}

/// The retried visitor event that is itself the first with both ids (so the merge) is a
/// duplicate too.
#[tokio::test]
async fn a_retry_that_is_itself_the_login_is_a_duplicate() {
    let journey = r#"
id: promo
name: Promo
trigger: {event: promo_requested}
reentry: after_exit
steps:
  - id: one
    send: {in_app: {title: "Your code", body: x}}
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(journey).await;
    h.play(
        r#"
{"at":"2026-12-01T10:00:00Z","anonymousId":"dev-r","event":"promo_requested","messageId":"m-1"}
{"at":"2026-12-01T10:02:00Z","userId":"rita","anonymousId":"dev-r","event":"promo_requested","messageId":"m-1","timestamp":"2026-12-01T10:00:00Z"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:00:00Z anon:dev-r in_app one: Your code"]
    );
}

/// An order placed as a guest before logging in ends the user's own journey that exits on it,
/// at the login (when the engine learns the guest was her): no "still looking?" after her order.
#[tokio::test]
async fn a_guests_exit_event_ends_the_users_own_enrollment_at_the_login() {
    let journey = r#"
id: browse
name: Browse
trigger: {event: product_viewed}
exit_when: [{event: order_completed}]
steps:
  - {id: w, wait: 2h}
  - {id: inapp, send: {in_app: {title: "Still looking?", body: x}}}
"#;
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(journey).await;
    h.play(
        r#"
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"oscar","traits":{"email":"oscar@example.com"}}
{"at":"2026-12-01T10:01:00Z","userId":"oscar","event":"product_viewed","messageId":"v-1"}
{"at":"2026-12-01T10:05:00Z","anonymousId":"dev-o","event":"order_completed","messageId":"o-1"}
{"at":"2026-12-01T10:06:00Z","type":"identify","userId":"oscar","anonymousId":"dev-o","messageId":"l-1"}
"#,
    )
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let view = h.rt.user("oscar").await.expect("oscar");
    let exits: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| format!("{} {}", e.at, describe(&e.what)))
        .collect();
    assert_eq!(exits, ["2026-12-01T10:06:00Z exited on order_completed"]);
}

/// A frequency cap counts what the visitor was sent before the login: one person on one
/// phone gets at most two pushes a day, not two as the visitor and two more as herself.
#[tokio::test]
async fn a_cap_counts_the_visitors_sends_after_the_login() {
    let config = waymark::runtime::Config {
        caps: waymark::runtime::parse_caps("push=2/1d").expect("caps"),
        ..waymark::runtime::Config::default()
    };
    let h = Harness::with_config("2026-12-01T07:00:00Z", config);
    h.publish(PING).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"dev-1","messageId":"i0","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"dev-1","event":"ping","messageId":"p1"}
{"at":"2026-12-01T10:10:00Z","type":"track","anonymousId":"dev-1","event":"ping","messageId":"p2"}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-01T11:10:00Z","type":"track","userId":"ann","event":"ping","messageId":"p3"}
"#)
    .await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T10:00:00Z anon:dev-1 push s: for anon:dev-1",
            "2026-12-01T10:10:00Z anon:dev-1 push s: for anon:dev-1"
        ]
    );
    let view = h.rt.user("ann").await.expect("ann");
    let capped = view
        .timeline
        .iter()
        .filter(|e| matches!(&e.what, What::Skipped { reason, .. } if reason == "capped"))
        .count();
    assert_eq!(capped, 1);
}

/// `reentry: {after: 30d}` counts from her latest entry, as herself or as the visitor: in on
/// day 0 as herself and on day 40 as the visitor, she is not entered again on day 50.
#[tokio::test]
async fn a_reentry_wait_counts_from_the_visitors_entry_too() {
    let h = Harness::new("2026-11-01T07:00:00Z");
    h.publish(
        r#"
id: offer
name: Offer
trigger: {event: viewed_pricing}
reentry: {after: 30d}
steps:
  - {id: push, send: {push: {title: "offer", body: "x"}}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-11-01T08:00:00Z","type":"identify","userId":"ann","messageId":"a0","traits":{"push_tokens":[{"platform":"fcm","token":"tok-ann"}]}}
{"at":"2026-11-01T09:00:00Z","type":"track","userId":"ann","event":"viewed_pricing","messageId":"v0"}
{"at":"2026-12-11T09:00:00Z","type":"identify","anonymousId":"dev-1","messageId":"i1","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-11T09:05:00Z","type":"track","anonymousId":"dev-1","event":"viewed_pricing","messageId":"v1"}
{"at":"2026-12-16T09:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-21T09:00:00Z","type":"track","userId":"ann","event":"viewed_pricing","messageId":"v2"}
"#)
    .await;
    h.advance_to(at("2026-12-22T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-11-01T09:00:00Z ann push push: offer",
            "2026-12-11T09:05:00Z anon:dev-1 push push: offer"
        ]
    );
}

/// A bounce of the address a visitor gave before logging in suppresses the user she turned out
/// to be only when the user has that address: a typo of it bounces alone.
#[tokio::test]
async fn a_visitors_bounce_reaches_the_user_only_for_the_same_address() {
    for (visitor_email, user_suppressed) in [
        ("ann@gmial.com", false),
        ("ann@example.com", true),
        // The same address in another case: the same mailbox, as notices are compared.
        ("Ann@Example.com", true),
    ] {
        let h = cart().await;
        h.play(&format!(
            r#"{{"at":"2026-12-01T09:59:00Z","type":"identify","anonymousId":"device-1","messageId":"v-1","traits":{{"email":"{visitor_email}"}}}}"#
        ))
        .await;
        h.play(ANONYMOUS_CART).await;
        h.play(LOGIN).await;
        h.rt.suppress("anon:device-1", Channel::Email, "bounce")
            .await
            .expect("suppressed");
        let view = h.rt.user("ann").await.expect("ann");
        let suppressed = view
            .profile
            .is_some_and(|p| p.suppressed.contains_key(&Channel::Email));
        assert_eq!(suppressed, user_suppressed, "{visitor_email}");
    }
}

/// The same, the visitor's address bouncing before she logs in: the login's merge takes the
/// visitor's suppression only when her address is the visitor's, so a typo's bounce does not
/// stop the cart email to her own address.
#[tokio::test]
async fn a_visitors_bounce_before_the_login_reaches_the_user_only_for_the_same_address() {
    for (visitor_email, user_suppressed) in [
        ("ann@gmial.com", false),
        ("ann@example.com", true),
        ("Ann@Example.com", true),
    ] {
        let h = cart().await;
        h.play(&format!(
            r#"{{"at":"2026-12-01T09:59:00Z","type":"identify","anonymousId":"device-1","messageId":"v-1","traits":{{"email":"{visitor_email}"}}}}"#
        ))
        .await;
        h.play(ANONYMOUS_CART).await;
        h.rt.suppress("anon:device-1", Channel::Email, "bounce")
            .await
            .expect("suppressed");
        h.play(LOGIN).await;
        let view = h.rt.user("ann").await.expect("ann");
        let suppressed = view
            .profile
            .is_some_and(|p| p.suppressed.contains_key(&Channel::Email));
        assert_eq!(suppressed, user_suppressed, "{visitor_email}");
        h.advance_to(at("2026-12-02T00:00:00Z")).await;
        let emailed = h.outbox().iter().any(|l| l == EMAIL);
        assert_eq!(
            emailed,
            !user_suppressed,
            "{visitor_email}: {:?}",
            h.outbox()
        );
    }
}

/// Her own bounce is about her old address: a login whose merge gives her the newer address
/// the visitor gave lifts it, as an identify with that address would.
#[tokio::test]
async fn a_login_that_brings_a_newer_address_lifts_her_old_ones_bounce() {
    let h = cart().await;
    h.play(
        r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"a-1","traits":{"email":"ann@old.example"}}
{"at":"2026-12-01T09:59:00Z","type":"identify","anonymousId":"device-1","messageId":"v-1","traits":{"email":"ann@example.com"}}
"#,
    )
    .await;
    h.rt.suppress("ann", Channel::Email, "bounce")
        .await
        .expect("suppressed");
    h.play(ANONYMOUS_CART).await;
    h.play(
        r#"{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"device-1","messageId":"login-1","traits":{"first_name":"Ann"}}"#,
    )
    .await;
    let view = h.rt.user("ann").await.expect("ann");
    let profile = view.profile.expect("profile");
    assert_eq!(profile.traits["email"], json!("ann@example.com"));
    assert!(!profile.suppressed.contains_key(&Channel::Email));
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
}

/// A bounce or a complaint is about the address it names: one about the address ann had before
/// (arriving late, after an identify changed it) leaves her new one alone, and her cart email
/// goes out; one about the address she has now (whatever its case) suppresses it, as does a
/// notice that names no address.
#[tokio::test]
async fn a_late_bounce_of_her_old_address_leaves_her_new_one_alone() {
    let cases: [(&[&str], bool); 3] = [
        (&["ann@old.example"], false),
        (&["ann@old.example", "Ann@Example.com"], true),
        (&[], true),
    ];
    for (named, suppressed) in cases {
        let h = cart().await;
        h.play(
            r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"id-1","traits":{"email":"ann@old.example"}}
{"at":"2026-12-01T09:30:00Z","type":"identify","userId":"ann","messageId":"id-2","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"cart-1","properties":{"cart_id":"c-1","total":89.9,"currency":"EUR","items":[{"name":"Trail shoes","price":79.9,"stock":3}]}}
"#,
        )
        .await;
        let addresses: Vec<String> = named.iter().map(|a| a.to_string()).collect();
        let done =
            h.rt.suppress_address("ann", Channel::Email, "bounce", &addresses)
                .await
                .expect("the notice");
        assert_eq!(done, suppressed, "{named:?}");
        let view = h.rt.user("ann").await.expect("ann");
        let now = view
            .profile
            .is_some_and(|p| p.suppressed.contains_key(&Channel::Email));
        assert_eq!(now, suppressed, "{named:?}");
        h.advance_to(at("2026-12-02T00:00:00Z")).await;
        let emailed = h.outbox().iter().any(|l| l == EMAIL);
        assert_eq!(emailed, !suppressed, "{named:?}: {:?}", h.outbox());
    }
}

#[tokio::test]
async fn an_anonymous_shopper_who_logs_in_gets_the_rest_of_the_journey_as_the_user() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    h.play(LOGIN).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
    let email = h.lines.lock().expect("lines")[0].clone();
    assert_eq!(
        serde_json::to_value(&email.to).expect("json"),
        json!("ann@example.com")
    );

    // The user's view tells the whole story, the anonymous part included.
    let view = h.rt.user("ann").await.expect("user");
    let profile = view.profile.as_ref().expect("profile");
    assert_eq!(profile.anonymous_ids, ["device-1"]);
    let story: Vec<String> = view
        .timeline
        .iter()
        .map(|e| format!("{} {}", e.step.as_deref().unwrap_or("-"), describe(&e.what)))
        .collect();
    for want in [
        "- entered v1 on cart_abandoned",
        "push_reminder skipped push: no_address",
        "wait_4h anon:device-1 turned out to be ann: goes on as ann",
        "low_stock_email sent email",
        "low_stock_email completed",
    ] {
        assert!(
            story.iter().any(|s| s == want),
            "{want:?} not in {story:#?}"
        );
    }
    assert_eq!(states(&h, "ann").await, moved_and_completed());
    // One enrollment all told: entered once, waited, completed once, none still waiting.
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("entered"), Some(&1), "{s:?}");
    assert_eq!(s.get("completed"), Some(&1), "{s:?}");
    assert_eq!(s.get("exited").copied().unwrap_or(0), 0, "{s:?}");
    assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{s:?}");
    assert_eq!(waiting(&s, "step.wait_30m.waiting"), 0, "{s:?}");
}

#[tokio::test]
async fn an_alias_call_merges_as_an_event_with_both_ids_does() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    // analytics.js's alias() at the login, then an identify of the user alone.
    h.play(r#"
{"at":"2026-12-01T11:00:00Z","type":"alias","previousId":"device-1","userId":"ann","messageId":"alias-1"}
{"at":"2026-12-01T11:00:05Z","type":"identify","userId":"ann","messageId":"id-1","traits":{"email":"ann@example.com","first_name":"Ann"}}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
    assert_eq!(states(&h, "ann").await, moved_and_completed());
}

/// The user's view tells a merge once: the enrollment as it goes on, and one `merged` fact
/// (the anonymous side and the user's side each record it, for their own timelines).
#[tokio::test]
async fn the_users_view_tells_a_merge_once() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    h.play(LOGIN).await;
    let view = h.rt.user("ann").await.expect("user");
    let ids: Vec<&str> = view.enrollments.iter().map(|e| &*e.id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "each enrollment once");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let merged: Vec<&Entry> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Merged { .. }))
        .collect();
    assert_eq!(merged.len(), 1, "{merged:?}");
    // The anonymous user's own view still tells its side.
    let anon = h.rt.user("anon:device-1").await.expect("anon");
    assert!(anon
        .timeline
        .iter()
        .any(|e| matches!(e.what, What::Merged { .. })));
}

#[tokio::test]
async fn a_merged_anonymous_ids_later_events_are_the_users() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    h.play(LOGIN).await;
    // The order is placed from the same browser, with the anonymous id only: it is ann's order,
    // so her journey ends (and converts) and the email does not go out.
    h.play(r#"{"at":"2026-12-01T12:00:00Z","type":"track","anonymousId":"device-1","event":"order_completed","messageId":"order-1","properties":{"total":89.9}}"#)
        .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let view = h.rt.user("ann").await.expect("user");
    let ann = view
        .enrollments
        .iter()
        .find(|e| &*e.user_id == "ann")
        .expect("ann's enrollment");
    assert_eq!(ann.status, Status::Exited);
    assert!(ann.converted_at.is_some());
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
    assert_eq!(s.get("exited"), Some(&1), "{s:?}");
    // The anonymous user got no order of its own.
    let anon = h.rt.user("anon:device-1").await.expect("anon");
    let p = anon.profile.expect("anonymous profile");
    assert_eq!(p.merged_into.as_deref(), Some("ann"));
    assert!(p.history.get("order_completed").is_none());
}

#[tokio::test]
async fn an_order_the_user_placed_elsewhere_before_logging_in_ends_the_anonymous_cart() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    // ann orders from her phone (logged in there) at 10:20, and logs in on the laptop at 11:00.
    h.play(r#"{"at":"2026-12-01T10:20:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"order-1"}"#)
        .await;
    h.play(LOGIN).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        Vec::<String>::new(),
        "no reminder of a cart she ordered"
    );
    assert_eq!(
        states(&h, "ann").await,
        [("anon:device-1".to_string(), Status::Exited)]
    );
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("exited"), Some(&1), "{s:?}");
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
    assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{s:?}");
}

/// A trial started on a laptop before the login waits for a purchase over 0; the purchase is
/// sent as the login itself (both ids): it meets the moved wait (the thanks, not the nudge)
/// and converts. (Only the login's own event can meet this wait: its `where` reads the
/// purchase's properties, which no history keeps.)
#[tokio::test]
async fn the_login_event_meets_the_wait_it_moved() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(
        TRIAL
            .replace(
                "{event: purchase, timeout",
                "{event: purchase, where: \"event.total > 0\", timeout",
            )
            .as_str(),
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-1","event":"trial_started","messageId":"t1"}
{"at":"2026-12-01T10:05:00Z","type":"track","userId":"ann","anonymousId":"dev-1","event":"purchase","messageId":"l1","properties":{"total":5}}
"#)
    .await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:05:00Z ann email thanks: thanks"]
    );
    let s = stats(&h, "wf").await;
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
}

/// A visitor's wait for 09:00 goes to 09:00 where she turns out to live, whatever event the
/// login comes with: an identify, or a page view that carries both ids.
#[tokio::test]
async fn a_wait_the_login_moves_follows_her_zone_whatever_the_login_event() {
    for login in [
        r#"{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","anonymousId":"d1","messageId":"l1"}"#,
        r#"{"at":"2026-12-01T11:00:00Z","type":"page","userId":"ann","anonymousId":"d1","name":"Home","messageId":"l1"}"#,
        r#"{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","anonymousId":"d1","event":"app_opened","messageId":"l1"}"#,
    ] {
        let h = Harness::new("2026-12-01T08:00:00Z");
        h.publish(
            r#"
id: morning
name: Morning
trigger: {event: signed_up}
steps:
  - id: at_nine
    wait_until: {time: "09:00"}
  - id: hello
    send: {email: {subject: morning, text: "."}}
"#,
        )
        .await;
        h.play(&format!(
            r#"
{{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{{"email":"ann@example.com","timezone":"America/New_York"}}}}
{{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"d1","event":"signed_up","messageId":"s1"}}
{login}
"#
        ))
        .await;
        h.advance_to(at("2026-12-03T00:00:00Z")).await;
        assert_eq!(
            h.outbox(),
            ["2026-12-01T14:00:00Z ann email hello: morning"],
            "{login}"
        );
    }
}

/// A trial waiting for a purchase, with a goal of a purchase over 0.
const TRIAL: &str = r#"
id: wf
name: WF
trigger: {event: trial_started}
reentry: after_exit
goal: {event: purchase, where: "event.total > 0", within: 7d}
steps:
  - id: wait
    wait_for: {event: purchase, timeout: 1d, on_event: thanks, on_timeout: nudge}
  - id: thanks
    send: {email: {subject: "thanks", text: "x"}}
    next: done
  - id: nudge
    send: {email: {subject: "nudge", text: "x"}}
  - id: done
    exit: true
"#;

/// She bought from her phone (as herself) while the laptop's visitor waited for a purchase,
/// then logged in on the laptop: the purchase meets the wait the login moved, and its goal,
/// whose `where` was met when the purchase came, converts.
#[tokio::test]
async fn a_purchase_made_as_herself_meets_the_wait_the_login_moves() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(TRIAL).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-03T09:00:00Z","type":"track","anonymousId":"dev-2","event":"trial_started","messageId":"t2"}
{"at":"2026-12-03T09:30:00Z","type":"track","userId":"ann","event":"purchase","messageId":"p2","properties":{"total":5}}
{"at":"2026-12-03T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-03T10:00:00Z ann email thanks: thanks"]
    );
    let s = stats(&h, "wf").await;
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
}

/// A late reply found at the login is `waited` as one found in the history is: an event with
/// no properties, which a template sees defined (not missing, as after a timeout).
#[tokio::test]
async fn a_late_reply_found_at_the_login_is_waited_with_no_properties() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    let journey = TRIAL.replace(
        "subject: \"thanks\"",
        "subject: \"thanks{% if waited is defined %} for {{ waited.total | default('it') }}{% else %}, nothing waited{% endif %}\"",
    );
    assert!(journey.contains("waited is defined"));
    h.publish(&journey).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-03T09:00:00Z","type":"track","anonymousId":"dev-2","event":"trial_started","messageId":"t2"}
{"at":"2026-12-03T09:30:00Z","type":"track","userId":"ann","event":"purchase","messageId":"p2","properties":{"total":5}}
{"at":"2026-12-03T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-03T10:00:00Z ann email thanks: thanks for it"]
    );
}

/// An exit whose `where` reads `trigger.*`, met by an event she sent as herself while only the
/// visitor was in the journey, is not judged without the trigger: `'C1' != null` marked an
/// exit that the enrollment the login moved (its cart C1) never met, and ended it. Such an
/// exit applies to events the enrollment itself hears (see the README's login section).
#[tokio::test]
async fn an_exit_reading_the_trigger_is_not_judged_without_it_before_a_login() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(
        r#"
id: carts
name: Carts
trigger: {event: cart_created}
exit_when:
  - {event: cart_checked_out, where: "event.cart_id != trigger.cart_id"}
steps:
  - {id: later, wait: 1h}
  - {id: nudge, send: {email: {subject: "your cart {{ trigger.cart_id }}", text: "x"}}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"d1","event":"cart_created","messageId":"c1","properties":{"cart_id":"C1"}}
{"at":"2026-12-01T09:10:00Z","type":"track","userId":"ann","event":"cart_checked_out","messageId":"o1","properties":{"cart_id":"C1"}}
{"at":"2026-12-01T09:20:00Z","type":"identify","userId":"ann","anonymousId":"d1","messageId":"l1"}
"#)
    .await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:00:00Z ann email nudge: your cart C1"]
    );
    // After the login, the enrollment judges the event itself: another cart ends it.
    h.play(r#"
{"at":"2026-12-01T12:10:00Z","type":"track","anonymousId":"d2","event":"cart_created","messageId":"c2","properties":{"cart_id":"C2"}}
{"at":"2026-12-01T12:20:00Z","type":"identify","userId":"bob","anonymousId":"d2","messageId":"l2","traits":{"email":"bob@example.com"}}
{"at":"2026-12-01T12:30:00Z","type":"track","userId":"bob","event":"cart_checked_out","messageId":"o2","properties":{"cart_id":"C9"}}
"#)
    .await;
    h.advance_to(at("2026-12-01T15:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:00:00Z ann email nudge: your cart C1"]
    );
}

/// The conversion a late reply makes is credited to the last message before it, the visitor's
/// too: an in-app hello the laptop's visitor got before she bought from her phone.
#[tokio::test]
async fn a_late_replys_conversion_is_credited_to_the_visitors_message() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    let journey = TRIAL.replace(
        "steps:\n  - id: wait\n",
        "steps:\n  - id: hello\n    send: {in_app: {title: \"hi\", body: \".\"}}\n  - id: wait\n",
    );
    assert!(journey.contains("id: hello"));
    h.publish(&journey).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-03T09:00:00Z","type":"track","anonymousId":"dev-2","event":"trial_started","messageId":"t2"}
{"at":"2026-12-03T09:30:00Z","type":"track","userId":"ann","event":"purchase","messageId":"p2","properties":{"total":5}}
{"at":"2026-12-03T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    let s = stats(&h, "wf").await;
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
    assert_eq!(s.get("step.hello.converted"), Some(&1), "{s:?}");
}

/// The login event answers one wait of the enrollment it moves, once: an `app_opened` sent as
/// the login meets the first of two waits for it, and the second waits for the next one.
#[tokio::test]
async fn the_login_event_answers_one_wait_once() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(
        r#"
id: tips
name: Tips
trigger: {event: installed}
steps:
  - {id: w1, wait_for: {event: app_opened, timeout: 1d}}
  - {id: tip1, send: {email: {subject: "tip1", text: "x"}}}
  - {id: w2, wait_for: {event: app_opened, timeout: 2d}}
  - {id: tip2, send: {email: {subject: "tip2", text: "x"}}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"i0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-1","event":"installed","messageId":"t1"}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","anonymousId":"dev-1","event":"app_opened","messageId":"o1"}
"#)
    .await;
    h.advance_to(at("2026-12-02T09:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T10:00:00Z ann email tip1: tip1"]);
}

/// The login is an identify the moved enrollments hear: the address it brings sends at once
/// the welcome waiting for one (not at the grace's end), and the user's own zone moves a wait
/// for a time of day the visitor's device zone had set.
#[tokio::test]
async fn the_login_wakes_the_waits_it_moved_that_it_answers() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(
        r#"
id: now
name: Now
trigger: {event: signup_started}
steps:
  - {id: mail, send: {email: {subject: "welcome {{ profile.first_name }}", text: "x"}}}
"#,
    )
    .await;
    h.publish(
        r#"
id: m
name: M
trigger: {event: go}
steps:
  - {id: w, wait_until: {time: "09:00"}}
  - {id: morning, send: {email: {subject: "morning", text: "x"}}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"a0","traits":{"email":"ann@example.com","timezone":"America/New_York"}}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"dev-1","event":"go","messageId":"g1","context":{"timezone":"Asia/Tokyo"}}
{"at":"2026-12-01T10:30:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-01T11:00:00Z","type":"track","anonymousId":"dev-2","event":"signup_started","messageId":"s2"}
{"at":"2026-12-01T11:00:30Z","type":"identify","userId":"bob","anonymousId":"dev-2","messageId":"b1","traits":{"email":"bob@example.com","first_name":"Bob"}}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T11:00:30Z bob email mail: welcome Bob",
            // 09:00 in New York, not 09:00 in Tokyo (2026-12-02T00:00Z).
            "2026-12-01T14:00:00Z ann email morning: morning",
        ]
    );
}

/// An exit with a `where` the user met under her own id before the login (an order over 10,
/// placed from her phone) ends the anonymous cart the login moves to her, as one without a
/// `where` does: the event's `where` was met when it came, and is not read again on nothing.
#[tokio::test]
async fn an_exit_with_a_where_met_before_the_login_ends_the_moved_enrollment() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(
        r#"
id: ex
name: Ex
trigger: {event: cart_abandoned}
exit_when: [{event: order_completed, where: "event.total > 10"}]
steps:
  - {id: w, wait: 2h}
  - {id: mail, send: {email: {subject: "cart", text: "x"}}}
"#,
    )
    .await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"bob","messageId":"j0","traits":{"email":"bob@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-2","event":"cart_abandoned","messageId":"c2"}
{"at":"2026-12-01T09:10:00Z","type":"track","userId":"bob","event":"order_completed","messageId":"o2","properties":{"total":5}}
{"at":"2026-12-01T09:20:00Z","type":"track","userId":"bob","event":"order_completed","messageId":"o3","properties":{"total":50}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"bob","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        Vec::<String>::new(),
        "no cart email after the order"
    );
    assert_eq!(
        states(&h, "bob").await,
        [("anon:dev-2".to_string(), Status::Exited)]
    );
}

/// A cart reminder whose version 1 exits on an order (`exit`: the exit as written), published
/// again as version 2 with `v2_exit` in its place.
async fn cart_in_two_versions(h: &Harness, exit: &str, v2_exit: &str) {
    let v1 = format!(
        "id: ex\nname: Ex\ntrigger: {{event: cart_abandoned}}\n{exit}steps:\n  - {{id: w, wait: 2h}}\n  - {{id: mail, send: {{email: {{subject: cart, text: x}}}}}}\n"
    );
    assert_eq!(h.publish(&v1).await, 1);
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"bob","messageId":"j0","traits":{"email":"bob@example.com"}}
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"cat","messageId":"k0","traits":{"email":"cat@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-2","event":"cart_abandoned","messageId":"c2"}
"#)
    .await;
    let v2 = v1
        .replace(exit, v2_exit)
        .replace("subject: cart", "subject: cart2");
    assert_eq!(h.publish(&v2).await, 2);
}

/// Bob's cart, entered as a visitor on version 1 (which exits on an order), is moved to him at
/// his login after version 2 dropped the exit: his order, placed as himself before the login,
/// is in his history still (an older version names it), and ends the cart he is in on version 1.
#[tokio::test]
async fn an_older_versions_exit_event_before_the_login_ends_the_moved_enrollment() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    cart_in_two_versions(&h, "exit_when: [{event: order_completed}]\n", "").await;
    h.play(r#"
{"at":"2026-12-01T09:20:00Z","type":"track","userId":"bob","event":"order_completed","messageId":"o3"}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"bob","anonymousId":"dev-2","messageId":"l2"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        Vec::<String>::new(),
        "no cart email after the order"
    );
    assert_eq!(
        states(&h, "bob").await,
        [("anon:dev-2".to_string(), Status::Exited)]
    );
}

/// As above with a `where`: version 2 exits only on orders over 100. Bob's order of 50, placed
/// as himself before his login, met his version 1's `where` (over 10) and ends the cart the
/// login moves to him; Cat's, the same, does not end hers, entered on version 2.
#[tokio::test]
async fn an_older_versions_exit_where_met_before_the_login_ends_only_its_enrollments() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    let exit = |over: u32| {
        format!("exit_when: [{{event: order_completed, where: \"event.total > {over}\"}}]\n")
    };
    cart_in_two_versions(&h, &exit(10), &exit(100)).await;
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-3","event":"cart_abandoned","messageId":"c3"}
{"at":"2026-12-01T09:20:00Z","type":"track","userId":"bob","event":"order_completed","messageId":"o3","properties":{"total":50}}
{"at":"2026-12-01T09:20:00Z","type":"track","userId":"cat","event":"order_completed","messageId":"o4","properties":{"total":50}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"bob","anonymousId":"dev-2","messageId":"l2"}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"cat","anonymousId":"dev-3","messageId":"l3"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T11:00:00Z cat email mail: cart2"]);
    assert_eq!(
        states(&h, "bob").await,
        [("anon:dev-2".to_string(), Status::Exited)]
    );
}

/// A paywall offer sent a day after the hit, which subscribing ends; and a goal of subscribing.
const PAYWALL: &str = "id: offer\nname: Offer\ntrigger: {event: paywall_hit}\nexit_when: [{trait_changed: subscriber, where: \"event.to == true\"}]\nsteps:\n  - {id: w, wait: 1d}\n  - {id: s, send: {email: {subject: offer, text: x}}}\n";
const SUBSCRIBED: &str = "id: sub\nname: Sub\ntrigger: {event: paywall_hit}\ngoal: {trait_changed: subscriber, where: \"event.to == true\", within: 2d}\nsteps:\n  - {id: w, wait: 7d}\n";

/// A visitor hits the paywall at 09:00; as herself (another device) Ann subscribes at 09:20;
/// she logs in at 10:00. The enrollment the login moves to her finds her change on her
/// profile, as it would have heard it had it been hers then: the offer ends unsent, and the
/// goal counts her conversion, at 09:20.
#[tokio::test]
async fn a_trait_change_before_the_login_ends_and_converts_the_moved_enrollment() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(PAYWALL).await;
    h.publish(SUBSCRIBED).await;
    h.play(r#"
{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"a0","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-1","event":"paywall_hit","messageId":"p1"}
{"at":"2026-12-01T09:20:00Z","type":"identify","userId":"ann","messageId":"a1","traits":{"subscriber":true}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
"#)
    .await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new(), "no offer to a subscriber");
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
    assert_eq!(of("sub").converted_at, Some(at("2026-12-01T09:20:00Z")));
}

/// How many marks `user`'s profile keeps.
async fn marks(h: &Harness, user: &str) -> usize {
    let view = h.rt.user(user).await.expect("user");
    view.profile.map(|p| p.marks.len()).unwrap_or_default()
}

/// Ann's order of 50 met version 1's exit (over 10) and is marked; version 2 (over 100) keeps
/// the mark, for whoever is on version 1; once the journey has been published with a new
/// `where` so often that the head lists version 1's no more, her next event drops the mark.
#[tokio::test]
async fn a_mark_no_listed_version_reads_is_dropped() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    let cart = |over: usize| {
        format!("id: ex\nname: Ex\ntrigger: {{event: cart_abandoned}}\nexit_when: [{{event: order_completed, where: \"event.total > {over}\"}}]\nsteps:\n  - {{id: w, wait: 2h}}\n")
    };
    h.publish(&cart(10)).await;
    h.play(r#"{"at":"2026-12-01T08:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o1","properties":{"total":50}}"#)
        .await;
    assert_eq!(marks(&h, "ann").await, 1);
    h.publish(&cart(100)).await;
    h.play(r#"{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o2","properties":{"total":5}}"#)
        .await;
    assert_eq!(marks(&h, "ann").await, 1, "version 1's users may need it");
    for over in 0..waymark::catalog::LISTED_MARKERS {
        h.publish(&cart(1000 + over)).await;
    }
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o3","properties":{"total":5}}"#)
        .await;
    assert_eq!(marks(&h, "ann").await, 0);
}

/// Two engines on one store: `stale`'s list of versions was cached before version 2 added an
/// exit on an order over 100, and handles Ann's next event after the other marked her order of
/// 500. It does not drop the mark of a `where` it does not know (version 2's: not its to
/// judge), and her cart, abandoned before the order and arriving after it, ends at entry on
/// it: no reminder after she ordered.
#[tokio::test]
async fn an_engine_with_an_older_list_of_versions_keeps_the_marks_of_a_newer_one() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    let cart = |exit: &str| {
        format!("id: ex\nname: Ex\ntrigger: {{event: cart_abandoned}}\n{exit}steps:\n  - {{id: w, wait: 2h}}\n  - {{id: s, send: {{email: {{subject: Your cart, text: t}}}}}}\n")
    };
    h.publish(&cart("")).await;
    let (sender, _) = waymark::outbox::OutboxSender::memory(h.clock.clone());
    let stale = waymark::runtime::Runtime::new(
        std::sync::Arc::new(h.store.clone()),
        std::sync::Arc::new(h.queue.clone()),
        std::sync::Arc::new(sender),
        h.clock.clone(),
        std::time::Duration::from_secs(3600),
        waymark::runtime::Config::default(),
    );
    stale.catalog.active_watching().await.expect("its list");
    h.publish(&cart(
        "exit_when: [{event: order_completed, where: \"event.total > 100\"}]\n",
    ))
    .await;
    h.play(r#"{"at":"2026-12-01T07:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T08:00:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"o1","properties":{"total":500}}"#)
        .await;
    assert_eq!(marks(&h, "ann").await, 1);
    let viewed = waymark::event::parse_call(
        waymark::event::Call::Track,
        br#"{"userId":"ann","event":"page_viewed","messageId":"v1","timestamp":"2026-12-01T08:01:00Z"}"#,
        at("2026-12-01T08:01:00Z"),
        &waymark::event::Limits {
            max_past: jiff::SignedDuration::from_hours(24),
            max_future: jiff::SignedDuration::from_hours(24),
        },
    )
    .expect("event");
    h.clock.set(at("2026-12-01T08:01:00Z"));
    stale
        .handle(&waymark::queue::Message::Event(std::sync::Arc::new(viewed)))
        .await
        .expect("handled by the stale engine");
    assert_eq!(marks(&h, "ann").await, 1, "version 2's mark is kept");
    h.play(r#"{"at":"2026-12-01T08:02:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c1","timestamp":"2026-12-01T07:50:00Z"}"#)
        .await;
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(view.enrollments.len(), 1);
    assert_eq!(view.enrollments[0].version, 2);
    assert_eq!(view.enrollments[0].status, Status::Exited);
}

/// A push to whoever pings, saying to whom.
const PING: &str = r#"
id: p
name: P
trigger: {event: ping}
reentry: after_exit
steps:
  - {id: s, send: {push: {title: "for {{ user_id }}", body: "."}}}
"#;

/// A push device is the user's who registered it last: bob logs in on the phone ann used
/// (her login took its anonymous visitor's device) and registers its token; ann's pushes no
/// longer go to his phone, his do (an identify of hers from before his, delivered late, does
/// not take it back); when ann registers it again, it is hers again.
#[tokio::test]
async fn a_push_device_belongs_to_the_user_who_registered_it_last() {
    let h = Harness::new("2026-12-01T07:00:00Z");
    h.publish(PING).await;
    let devices = |user: &'static str| {
        let h = &h;
        async move {
            let view = h.rt.user(user).await.expect("user");
            view.profile
                .map(|p| {
                    p.devices
                        .iter()
                        .map(|d| d.token.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","anonymousId":"dev-1","messageId":"i0","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"bob","anonymousId":"dev-1","messageId":"l2","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T11:30:00Z","type":"identify","userId":"ann","messageId":"late-ann","timestamp":"2026-12-01T10:30:00Z","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"ann","event":"ping","messageId":"p1"}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"bob","event":"ping","messageId":"p2"}
"#)
    .await;
    h.advance_to(at("2026-12-01T12:30:00Z")).await;
    assert_eq!(h.outbox(), ["2026-12-01T12:00:00Z bob push s: for bob"]);
    assert_eq!(devices("ann").await, Vec::<String>::new());
    assert_eq!(devices("bob").await, ["tok-dev1"]);
    // ann takes the phone back.
    h.play(r#"
{"at":"2026-12-01T13:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l3","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T14:00:00Z","type":"track","userId":"bob","event":"ping","messageId":"p3"}
{"at":"2026-12-01T14:00:00Z","type":"track","userId":"ann","event":"ping","messageId":"p4"}
"#)
    .await;
    h.advance_to(at("2026-12-01T14:30:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T12:00:00Z bob push s: for bob",
            "2026-12-01T14:00:00Z ann push s: for ann"
        ]
    );
    assert_eq!(devices("bob").await, Vec::<String>::new());

    // Bob's identify of 15:00 is retried after ann sent the token again at 16:00 (no claim
    // then: it was hers already): the retry does not take the phone from her.
    h.play(r#"
{"at":"2026-12-01T16:00:00Z","type":"identify","userId":"ann","messageId":"l4","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
{"at":"2026-12-01T16:30:00Z","type":"identify","userId":"bob","messageId":"l5","timestamp":"2026-12-01T15:00:00Z","traits":{"push_tokens":[{"platform":"fcm","token":"tok-dev1"}]}}
"#)
    .await;
    h.advance_to(at("2026-12-01T17:00:00Z")).await;
    assert_eq!(devices("ann").await, ["tok-dev1"]);
    assert_eq!(devices("bob").await, Vec::<String>::new());
}

/// ann, with a push device, abandons a cart at 10:00; at 10:05 a visitor (device-2, who will
/// turn out to be ann) abandons another.
const ANN_AND_A_VISITOR_IN_THE_CART: &str = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","first_name":"Ann","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"cart-ann","properties":{"cart_id":"c-9","total":20,"currency":"EUR","items":[{"name":"Cap","price":20,"stock":9}]}}
{"at":"2026-12-01T10:05:00Z","type":"track","anonymousId":"device-2","event":"cart_abandoned","messageId":"cart-anon","properties":{"cart_id":"c-10","total":30,"currency":"EUR","items":[{"name":"Belt","price":30,"stock":9}]}}
"#;

/// ann's own journey only went on: one push, one email. The visitor's push went nowhere (no
/// device) and its email never came: the visitor's enrollment ended because ann is in.
async fn only_anns_cart_went_on(h: &Harness) {
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T10:30:00Z ann push push_reminder: You left something in your cart",
            "2026-12-01T14:30:00Z ann email low_stock_email: Still in your cart, and some of it may not last",
        ]
    );
    let view = h.rt.user("ann").await.expect("user");
    let anon = view
        .enrollments
        .iter()
        .find(|e| &*e.user_id == "anon:device-2")
        .expect("the anonymous enrollment, in ann's view");
    assert_eq!(anon.status, Status::Exited);
    assert_eq!(
        anon.end_reason.as_deref(),
        Some("ann is in this journey already")
    );
}

#[tokio::test]
async fn a_user_already_in_the_journey_keeps_theirs_and_the_anonymous_one_ends() {
    let h = cart().await;
    h.play(ANN_AND_A_VISITOR_IN_THE_CART).await;
    h.play(r#"
{"at":"2026-12-01T10:40:00Z","type":"track","userId":"ann","anonymousId":"device-2","event":"page_viewed","messageId":"page-1"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    only_anns_cart_went_on(&h).await;
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("entered"), Some(&2), "{s:?}");
    assert_eq!(s.get("exited"), Some(&1), "{s:?}");
    assert_eq!(s.get("step.wait_4h.exited"), Some(&1), "{s:?}");
    assert_eq!(s.get("completed"), Some(&1), "{s:?}");
    assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{s:?}");
}

#[tokio::test]
async fn what_the_anonymous_user_did_counts_for_the_users_triggers() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(
        r#"
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
        title: "Go Premium, {{ profile.first_name }}"
        body: "Three episodes this week"
"#,
    )
    .await;
    // Two episodes before logging in (the app registered its push token then), one after.
    h.play(r#"
{"at":"2026-12-01T20:00:00Z","type":"identify","anonymousId":"tv-1","messageId":"i-1","traits":{"push_tokens":[{"platform":"fcm","token":"t-tv"}]}}
{"at":"2026-12-01T20:00:00Z","type":"track","anonymousId":"tv-1","event":"episode_watched","messageId":"e-1"}
{"at":"2026-12-02T20:00:00Z","type":"track","anonymousId":"tv-1","event":"episode_watched","messageId":"e-2"}
{"at":"2026-12-03T19:00:00Z","type":"identify","userId":"kim","anonymousId":"tv-1","messageId":"i-2","traits":{"first_name":"Kim"}}
{"at":"2026-12-03T20:00:00Z","type":"track","userId":"kim","event":"episode_watched","messageId":"e-3"}
"#)
    .await;
    h.advance_to(at("2026-12-04T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-03T20:00:00Z kim push offer: Go Premium, Kim"]
    );
}

#[tokio::test]
async fn an_inactivity_the_anonymous_user_started_is_the_users_after_the_login() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(&example_journey("telecom_churn")).await;
    // The app is opened before logging in (that arms the 14-day check), the login comes a day
    // later, and nothing after: 14 days after the last activity, the user gets the offer.
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"sim-1","event":"app_opened","messageId":"o-1"}
{"at":"2026-12-02T10:00:00Z","type":"identify","userId":"raj","anonymousId":"sim-1","messageId":"l-1","traits":{"first_name":"Raj","phone":"+14155550100"}}
"#)
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-15T10:00:00Z raj sms retention_offer: We miss you, Raj! 10 GB of extra data on us this month: open the app to claim it."]
    );
}

/// The user's own check is long past (it entered him in October); as a visitor he opens the
/// app (that arms the visitor's check), then logs in: the visitor's pending check is his, and
/// 14 days after that activity, `reentry: after 30d` long passed, he gets the offer again.
/// (His stale check once kept the visitor's out, and the visitor's timer, finding its profile
/// merged, checked no one.)
#[tokio::test]
async fn a_visitors_pending_check_is_the_users_when_his_own_is_past() {
    let h = Harness::new("2026-10-01T09:00:00Z");
    h.publish(&example_journey("telecom_churn")).await;
    h.play(r#"
{"at":"2026-10-01T10:00:00Z","type":"identify","userId":"raj","messageId":"i-1","traits":{"first_name":"Raj","phone":"+14155550100"}}
{"at":"2026-10-01T10:00:00Z","type":"track","userId":"raj","event":"app_opened","messageId":"o-1"}
"#)
    .await;
    h.advance_to(at("2026-12-01T09:00:00Z")).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"sim-1","event":"app_opened","messageId":"o-2"}
{"at":"2026-12-02T10:00:00Z","type":"identify","userId":"raj","anonymousId":"sim-1","messageId":"l-1","traits":{"first_name":"Raj"}}
"#)
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    let offer = "raj sms retention_offer: We miss you, Raj! 10 GB of extra data on us this month: open the app to claim it.";
    assert_eq!(
        h.outbox(),
        [
            format!("2026-10-15T10:00:00Z {offer}"),
            format!("2026-12-15T10:00:00Z {offer}"),
        ]
    );
}

#[tokio::test]
async fn an_anonymous_id_is_merged_once_into_the_first_user_it_turns_out_to_be() {
    let h = cart().await;
    h.play(ANONYMOUS_CART).await;
    h.play(LOGIN).await;
    // Someone else logs in on the same browser without a reset: device-1 stays ann's.
    h.play(r#"{"at":"2026-12-01T11:30:00Z","type":"identify","userId":"bob","anonymousId":"device-1","messageId":"login-2","traits":{"email":"bob@example.com"}}"#)
        .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
    let bob = h.rt.user("bob").await.expect("bob");
    assert!(bob.enrollments.is_empty(), "{:?}", bob.enrollments);
    let p = bob.profile.expect("bob's profile");
    // Not his (his profile does not list it as one he turned out to be), and seen once, so
    // not looked up again at his every event.
    assert!(p.anonymous_ids.is_empty(), "{:?}", p.anonymous_ids);
    assert_eq!(p.anonymous_ids_of_others, ["device-1"]);
    h.play(r#"{"at":"2026-12-01T12:00:00Z","type":"track","userId":"bob","anonymousId":"device-1","event":"app_opened","messageId":"bob-open"}"#)
        .await;
    let bob_again = h.rt.user("bob").await.expect("bob");
    let p_again = bob_again.profile.expect("bob's profile");
    assert!(p_again.anonymous_ids.is_empty());
    assert_eq!(p_again.anonymous_ids_of_others, ["device-1"]);
    assert_eq!(p.traits.get("first_name"), None);
    let anon = h.rt.user("anon:device-1").await.expect("anon");
    assert_eq!(
        anon.profile
            .expect("anonymous profile")
            .merged_into
            .as_deref(),
        Some("ann")
    );
    // bob's view does not show ann's anonymous past.
    assert!(bob.timeline.is_empty(), "{:?}", bob.timeline);
}

/// An in-app guide on the first app open.
const WELCOME: &str = r#"
id: welcome
name: Welcome
trigger:
  event: app_opened
steps:
  - id: guide
    send:
      in_app:
        title: "Welcome"
        body: "Here is how to start"
"#;

#[tokio::test]
async fn in_app_messages_sent_before_the_login_are_in_the_users_inbox() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"o-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    let inbox = h.rt.inbox("lee").await.expect("inbox");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
}

/// The guide a visitor got ended before she logged in (so it stayed the anonymous user's);
/// she subscribes after logging in: that enrollment converts, credited to the guide, and the
/// journey counts it. Someone else logging in later on the same phone converts nothing of hers.
#[tokio::test]
async fn a_journey_that_ended_before_the_login_converts_on_the_users_goal() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    let guide = WELCOME.replace(
        "trigger:",
        "goal: {event: subscribed, within: 7d}\ntrigger:",
    );
    h.publish(&guide).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"o-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"max","anonymousId":"phone-1","messageId":"m-1","traits":{}}
{"at":"2026-12-01T12:00:00Z","type":"track","userId":"max","event":"subscribed","messageId":"s-max"}
{"at":"2026-12-02T10:00:00Z","type":"track","userId":"lee","event":"subscribed","messageId":"s-lee"}
{"at":"2026-12-02T10:00:30Z","type":"track","userId":"lee","event":"subscribed","messageId":"s-lee-2"}
"#)
    .await;
    let converted = |view: &waymark::runtime::UserView| -> Vec<String> {
        view.timeline
            .iter()
            .filter(|e| matches!(e.what, What::Converted { .. }))
            .map(|e| describe(&e.what))
            .collect()
    };
    let lee = h.rt.user("lee").await.expect("user");
    assert_eq!(
        converted(&lee),
        ["converted on subscribed, credited to guide"]
    );
    let max = h.rt.user("max").await.expect("user");
    assert!(converted(&max).is_empty(), "{:?}", max.timeline);
    let s = stats(&h, "welcome").await;
    assert_eq!(s.get("converted"), Some(&1), "{s:?}");
    assert_eq!(s.get("step.guide.converted"), Some(&1), "{s:?}");
}

/// A visitor gets the guide before logging in, and subscribes after: the conversion is
/// credited to the message sent while she was anonymous (recorded under her anonymous id).
#[tokio::test]
async fn a_conversion_after_the_login_is_credited_to_a_message_before_it() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    // Still in the journey at the login (a last wait), so it goes on as lee's.
    let tour = format!(
        "{}  - id: settle_in\n    wait: 3d\n",
        WELCOME.replace(
            "trigger:",
            "goal: {event: subscribed, within: 7d}\ntrigger:"
        )
    );
    h.publish(&tour).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"o-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
{"at":"2026-12-02T10:00:00Z","type":"track","userId":"lee","event":"subscribed","messageId":"s-1"}
"#)
    .await;
    let view = h.rt.user("lee").await.expect("user");
    let converted: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Converted { .. }))
        .map(|e| describe(&e.what))
        .collect();
    assert_eq!(converted, ["converted on subscribed, credited to guide"]);
}

#[tokio::test]
async fn an_anonymous_enrollment_the_merge_did_not_see_goes_on_as_the_user_at_its_next_step() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    h.play(ANONYMOUS_CART).await;
    h.advance_to(at("2026-12-01T10:59:00Z")).await;
    *faulty.miss_anonymous_enrollments.lock().expect("miss") = true;
    h.play(LOGIN).await;
    assert!(!*faulty.miss_anonymous_enrollments.lock().expect("miss"));
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
    assert_eq!(states(&h, "ann").await, moved_and_completed());
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("completed"), Some(&1), "{s:?}");
    assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{s:?}");
}

/// The same at the enrollment's wake-up: an anonymous cart the login did not see, while ann is
/// in the journey already, ends at its next step with the reason a merge that saw it gives.
#[tokio::test]
async fn an_anonymous_enrollment_the_merge_did_not_see_ends_at_its_next_step_when_the_user_is_in() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    h.play(ANN_AND_A_VISITOR_IN_THE_CART).await;
    *faulty.miss_anonymous_enrollments.lock().expect("miss") = true;
    h.play(r#"
{"at":"2026-12-01T10:10:00Z","type":"track","userId":"ann","anonymousId":"device-2","event":"page_viewed","messageId":"page-1"}
"#)
    .await;
    assert!(!*faulty.miss_anonymous_enrollments.lock().expect("miss"));
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    only_anns_cart_went_on(&h).await;
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("entered"), Some(&2), "{s:?}");
    assert_eq!(s.get("exited"), Some(&1), "{s:?}");
    assert_eq!(s.get("completed"), Some(&1), "{s:?}");
    assert_eq!(waiting(&s, "step.wait_30m.waiting"), 0, "{s:?}");
    assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{s:?}");
}

#[tokio::test]
async fn an_anonymous_event_that_comes_again_after_the_merge_enters_once() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    // The anonymous cart enters, but its handling fails at the end (its "handled" marker cannot
    // be written): the runtime retries it a few minutes later. Meanwhile ann orders from her
    // phone and logs in on the laptop: the anonymous cart exits on her order.
    *faulty.fail_write_of.lock().expect("fail") = Some("D#cart-1".into());
    h.play(ANONYMOUS_CART).await;
    h.play(r#"
{"at":"2026-12-01T10:00:20Z","type":"track","userId":"ann","event":"order_completed","messageId":"order-1"}
{"at":"2026-12-01T10:00:40Z","type":"identify","userId":"ann","anonymousId":"device-1","messageId":"login-1","traits":{"email":"ann@example.com"}}
"#)
    .await;
    assert!(faulty.fail_write_of.lock().expect("fail").is_none());
    // The retry is ann's event now; it entered as the anonymous user already.
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), Vec::<String>::new());
    assert_eq!(
        states(&h, "ann").await,
        [("anon:device-1".to_string(), Status::Exited)]
    );
    let s = stats(&h, "cart_abandonment").await;
    assert_eq!(s.get("entered"), Some(&1), "{s:?}");
}

/// The guide an anonymous event owes when its handling fails half-way (the store down for a
/// moment, the inbox write lost) goes out when the event is retried, although the login merged
/// the user in between without seeing the enrollment (written at the same time): the retry is
/// the user's event now, and it performs what it owes as the anonymous user first.
#[tokio::test]
async fn what_an_anonymous_event_owes_goes_out_when_it_is_retried_after_the_merge() {
    let (h, faulty) = faulty_harness();
    h.publish(WELCOME).await;
    *faulty.fail_write_of.lock().expect("fail") = Some("I#".into());
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"o-1"}
"#)
    .await;
    assert!(faulty.fail_write_of.lock().expect("fail").is_none());
    assert!(h.rt.inbox("anon:phone-1").await.expect("inbox").is_empty());
    *faulty.miss_anonymous_enrollments.lock().expect("miss") = true;
    h.play(r#"
{"at":"2026-12-01T10:00:30Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    assert!(!*faulty.miss_anonymous_enrollments.lock().expect("miss"));
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    let inbox = h.rt.inbox("lee").await.expect("inbox");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    entered_and_completed_once(&h, "welcome").await;
}

/// A login that fails half-way (the anonymous user marked as ann's, ann's profile not yet
/// written, the anonymous cart's enrollment not seen) leaves the merge to whichever of ann's
/// messages comes next: here the anonymous cart event itself, retried because its own handling
/// failed at the end. The merge it makes is a transition of its own, not a second one under
/// the cause that entered the enrollment: when writing the continuation failed, the entry's
/// timeline record read as the merge's, so the continuation was never written and ann got no
/// email.
#[tokio::test]
async fn the_anonymous_event_that_entered_can_finish_its_users_merge() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    *faulty.fail_write_of.lock().expect("fail") = Some("D#cart-1".into());
    h.play(ANONYMOUS_CART).await;
    assert!(faulty.fail_write_of.lock().expect("fail").is_none());
    // The login: ann's profile (1), the anonymous profile marked (2), ann's profile listing the
    // anonymous id (3, fails), having missed the anonymous enrollments.
    *faulty.miss_anonymous_enrollments.lock().expect("miss") = true;
    *faulty.fault.lock().expect("fault") = Some((2, false));
    h.play(r#"
{"at":"2026-12-01T10:00:20Z","type":"identify","userId":"ann","anonymousId":"device-1","messageId":"login-1","traits":{"email":"ann@example.com","first_name":"Ann"}}
"#)
    .await;
    assert!(*faulty.fired.lock().expect("fired"));
    // The cart event comes back first, as ann's, and merges: it settles the anonymous
    // enrollment (1), writes ann's profile (2), ends the anonymous enrollment as merged (3); the
    // write of its continuation as ann's (4) fails, and the event comes back once more.
    *faulty.fired.lock().expect("fired") = false;
    *faulty.fault.lock().expect("fault") = Some((3, false));
    h.advance_to(at("2026-12-01T10:02:30Z")).await;
    assert!(*faulty.fired.lock().expect("fired"));
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox(), [EMAIL]);
    assert_eq!(states(&h, "ann").await, moved_and_completed());
    entered_and_completed_once(&h, "cart_abandonment").await;
}

#[tokio::test]
async fn a_merge_costs_a_few_store_calls_once_and_later_events_with_both_ids_nothing_more() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    h.play(ANONYMOUS_CART).await;
    h.advance_to(at("2026-12-01T10:59:00Z")).await;
    let track = |at: &str, id: &str, anonymous: bool| {
        let anonymous = if anonymous {
            r#","anonymousId":"device-1""#
        } else {
            ""
        };
        format!(
            r#"{{"at":"{at}","type":"track","userId":"ann"{anonymous},"event":"page_viewed","messageId":"{id}"}}"#
        )
    };
    // Her first event makes her profile.
    h.play(&track("2026-12-01T10:59:10Z", "p-00", false)).await;
    faulty.take_calls();
    // The same event (one that no journey names) from the user alone, as a baseline: it writes
    // its dedup marker and nothing more (the profile keeps only events some journey names).
    h.play(&track("2026-12-01T10:59:30Z", "p-0", false)).await;
    let alone = faulty.take_calls();
    assert_eq!(alone.get("put"), Some(&1), "{alone:?}");
    h.play(LOGIN).await;
    let login = faulty.take_calls();
    // A login on a device never seen anonymously: nothing to move.
    h.play(r#"{"at":"2026-12-01T11:05:00Z","type":"identify","userId":"ann","anonymousId":"device-2","messageId":"login-2","traits":{}}"#)
        .await;
    let fresh = faulty.take_calls();
    h.play(&track("2026-12-01T11:10:00Z", "p-1", true)).await;
    let both = faulty.take_calls();
    h.play(&track("2026-12-01T11:20:00Z", "p-2", false)).await;
    let user_only = faulty.take_calls();
    println!("store calls: event {alone:?}; login moving one enrollment {login:?}; login with nothing to move {fresh:?}; later event with both ids {both:?}");
    assert_eq!(both, user_only, "the anonymous id is known: no lookup");
    assert_eq!(alone, user_only);
    let total = |c: &std::collections::BTreeMap<&str, usize>| c.values().sum::<usize>();
    assert!(total(&fresh) > total(&alone), "{fresh:?}");
    assert!(total(&login) > total(&fresh), "{login:?}");
    // What the README says a login with nothing to move costs.
    assert_eq!(
        total(&fresh) - total(&alone),
        7,
        "{fresh:?} against {alone:?}"
    );
}

/// Not about identity, but about the same faults: a trigger that entered, failed before it was
/// marked handled, and comes back after the user's record moved on to a later enrollment.
#[tokio::test]
async fn a_trigger_that_comes_back_after_a_later_entry_does_not_enter_again() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    h.play(r#"{"at":"2026-12-01T09:30:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}"#)
        .await;
    // The first cart enters; its "handled" marker cannot be written: retried minutes later. In
    // between, ann orders (the journey ends), abandons a second cart (she enters again) and
    // orders again (that one ends too, so nothing stands in the first cart's way).
    *faulty.fail_write_of.lock().expect("fail") = Some("D#cart-1".into());
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"cart-1","properties":{"total":10,"items":[]}}
{"at":"2026-12-01T10:00:20Z","type":"track","userId":"ann","event":"order_completed","messageId":"order-1"}
{"at":"2026-12-01T10:00:40Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"cart-2","properties":{"total":20,"items":[]}}
{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"order_completed","messageId":"order-2"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let entered = timeline_of(&h, "ann", |w| matches!(w, What::Entered { .. })).await;
    assert_eq!(
        entered,
        ["cart_abandonment:ann:1", "cart_abandonment:ann:2"],
        "cart-1 entered once"
    );
}

/// A tip 20 seconds after each app open; an order ends it.
const TIPS: &str = r#"
id: tips
name: Tips
trigger:
  event: app_opened
reentry: after_exit
exit_when:
  - event: order_completed
steps:
  - id: pause
    wait: 20s
  - id: tip
    send:
      in_app:
        title: "A tip"
        body: "Swipe left to save"
"#;

/// The user's enrollments after a merged one are numbered after all of hers: ann entered twice
/// before the anonymous enrollment (its first) went on as hers, so her next is her third, not a
/// second `tips:ann:2`, whose tip the send ledger would take for one sent already.
#[tokio::test]
async fn a_users_enrollment_after_a_merged_one_is_numbered_after_all_of_hers() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(TIPS).await;
    h.play(r#"
{"at":"2026-12-01T09:50:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-0"}
{"at":"2026-12-01T09:55:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"open-2"}
{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","anonymousId":"phone-1","messageId":"login-1","traits":{}}
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-3"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let sent = timeline_of(&h, "ann", |w| matches!(w, What::Sent { .. })).await;
    assert_eq!(
        sent,
        [
            "tips:ann:1",
            "tips:ann:2",
            "tips:anon:phone-1:1",
            "tips:ann:3"
        ]
    );
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    assert_eq!(inbox.len(), 4, "{inbox:?}");
}

/// A continuation that takes the place of the user's ended enrollment keeps what that record
/// knew: the triggers that entered the user (ann's app open `open-1`, retried minutes later
/// because its "handled" marker could not be written, finds the continuation ended by then and
/// does not enter her again) and how many times she entered (her next enrollment is her third,
/// not a second `tips:ann:2` whose tip the send ledger would take for one sent already).
#[tokio::test]
async fn a_merged_enrollment_in_place_of_the_users_ended_one_keeps_her_entries_apart() {
    let (h, faulty) = faulty_harness();
    h.publish(TIPS).await;
    h.play(r#"
{"at":"2026-12-01T09:50:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-0"}
{"at":"2026-12-01T09:50:05Z","type":"track","userId":"ann","event":"order_completed","messageId":"order-0"}
"#)
    .await;
    *faulty.fail_write_of.lock().expect("fail") = Some("D#open-1".into());
    h.play(r#"
{"at":"2026-12-01T09:59:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-1"}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"open-2"}
{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","anonymousId":"phone-1","messageId":"login-1","traits":{}}
"#)
    .await;
    assert!(faulty.fail_write_of.lock().expect("fail").is_none());
    h.play(r#"
{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"open-3"}
"#)
    .await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let entered = timeline_of(&h, "ann", |w| matches!(w, What::Entered { .. })).await;
    assert_eq!(
        entered,
        [
            "tips:ann:1",
            "tips:ann:2",
            "tips:anon:phone-1:1",
            "tips:ann:3"
        ],
        "open-1 entered once"
    );
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    assert_eq!(
        inbox.len(),
        3,
        "ann:2's, the merged one's and ann:3's tips: {inbox:?}"
    );
}

#[tokio::test]
async fn a_write_failing_anywhere_in_the_merge_loses_nothing_and_sends_nothing_twice() {
    // The merge's n-th write fails (the message is retried by the runtime), before or after it
    // is applied, for every n until the merge makes fewer writes than n.
    for applied in [false, true] {
        for n in 0.. {
            let (h, faulty) = faulty_harness();
            h.publish(&example_journey("cart_abandonment")).await;
            h.play(ANONYMOUS_CART).await;
            // The push step is past: the faults fall on the login's handling only.
            h.advance_to(at("2026-12-01T10:59:00Z")).await;
            *faulty.fault.lock().expect("fault") = Some((n, applied));
            h.play(LOGIN).await;
            let fired = *faulty.fired.lock().expect("fired");
            *faulty.fault.lock().expect("fault") = None;
            h.advance_to(at("2026-12-02T00:00:00Z")).await;
            tick(&h.rt, &h.store).await.expect("tick");
            let case = format!("write {n} failing (applied: {applied})");
            assert_eq!(h.outbox(), [EMAIL], "{case}");
            assert_eq!(states(&h, "ann").await, moved_and_completed(), "{case}");
            // The merge's timeline entry, once in each partition's records.
            let merged_in = |pk: &str| -> usize {
                h.store
                    .dump()
                    .into_iter()
                    .filter(|r| r.key.pk.as_str() == pk && r.key.sk.starts_with("T#"))
                    .flat_map(|r| r.parse::<Vec<Entry>>().expect("a timeline record"))
                    .filter(|e| matches!(e.what, What::Merged { .. }))
                    .count()
            };
            assert_eq!(
                (merged_in("U#ann"), merged_in("U#anon:device-1")),
                (1, 1),
                "one entry on each side: {case}"
            );
            let s = stats(&h, "cart_abandonment").await;
            assert_eq!(waiting(&s, "step.wait_4h.waiting"), 0, "{case}: {s:?}");
            assert_eq!(s.get("completed"), Some(&1), "{case}: {s:?}");
            if !fired {
                break;
            }
        }
    }
}

/// A visitor converts as a guest (the order placed before logging in), then logs in: the
/// enrollment converted once, and the journey counts one conversion, whether it was still
/// going (moved to her at the login) or had ended (the guide shown), and whether she orders
/// again as herself or sends the order with the login.
#[tokio::test]
async fn a_guest_conversion_followed_by_a_login_counts_once() {
    let guide = WELCOME.replace(
        "trigger:",
        "goal: {event: subscribed, within: 7d}\ntrigger:",
    );
    let going = format!("{guide}  - id: settle_in\n    wait: 3d\n");
    let guest = r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"app_opened","messageId":"o-1"}
{"at":"2026-12-01T10:02:00Z","type":"track","anonymousId":"phone-1","event":"subscribed","messageId":"s-guest"}
"#;
    let logins = [
        r#"{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}"#,
        r#"{"at":"2026-12-01T10:05:00Z","type":"track","userId":"lee","anonymousId":"phone-1","event":"subscribed","messageId":"l-1"}"#,
    ];
    let again = r#"{"at":"2026-12-02T10:00:00Z","type":"track","userId":"lee","event":"subscribed","messageId":"s-lee"}"#;
    for (name, journey) in [("ended", &guide), ("going", &going)] {
        for (i, login) in logins.iter().enumerate() {
            let h = Harness::new("2026-12-01T09:00:00Z");
            h.publish(journey).await;
            h.play(&format!("{guest}{login}\n{again}\n")).await;
            h.advance_to(at("2026-12-05T00:00:00Z")).await;
            let case = format!("{name}, login {i}");
            let converted = timeline_of(&h, "lee", |w| matches!(w, What::Converted { .. })).await;
            assert_eq!(converted, ["welcome:anon:phone-1:1"], "{case}");
            let s = stats(&h, "welcome").await;
            assert_eq!(s.get("converted"), Some(&1), "{case}: {s:?}");
            assert_eq!(s.get("step.guide.converted"), Some(&1), "{case}: {s:?}");
        }
    }
}

/// An order sent with the login (userId and anonymousId in one call) converts the visitor's
/// enrollment as the merge ends it, and not the user's own enrollment of the journey too, also
/// when the order comes again after a failure.
#[tokio::test]
async fn an_order_sent_with_the_login_converts_one_enrollment() {
    let journey = r#"
id: browse
name: Browse
trigger: {event: product_viewed}
reentry: after_exit
exit_when: [{event: order_completed}]
goal: {event: order_completed, within: 7d}
steps:
  - {id: w, wait: 2h}
  - {id: mail, send: {email: {subject: "Still thinking?", text: x}}}
"#;
    // Once as it comes, once with the order's handling failing at its end (its "handled"
    // marker not written) and the order delivered again: the merge is done by then.
    for retried in [false, true] {
        let (h, faulty) = faulty_harness();
        h.publish(journey).await;
        if retried {
            *faulty.fail_write_of.lock().expect("fail") = Some("D#o-1".into());
        }
        h.play(
            r#"
{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"oscar","traits":{"email":"oscar@example.com"}}
{"at":"2026-12-01T10:01:00Z","userId":"oscar","event":"product_viewed","messageId":"v-1"}
{"at":"2026-12-01T12:30:00Z","anonymousId":"dev-o","event":"product_viewed","messageId":"v-2"}
{"at":"2026-12-01T13:00:00Z","userId":"oscar","anonymousId":"dev-o","event":"order_completed","messageId":"o-1"}
"#,
        )
        .await;
        h.advance_through_faults(at("2026-12-02T00:00:00Z")).await;
        assert!(faulty.fail_write_of.lock().expect("fail").is_none());
        let converted = timeline_of(&h, "oscar", |w| matches!(w, What::Converted { .. })).await;
        assert_eq!(converted, ["browse:anon:dev-o:1"], "retried: {retried}");
        let s = stats(&h, "browse").await;
        assert_eq!(s.get("entered"), Some(&2), "retried: {retried}: {s:?}");
        assert_eq!(s.get("converted"), Some(&1), "retried: {retried}: {s:?}");
    }
}

/// oscar browses as himself and, on the laptop, as a visitor; he orders once, there as a guest
/// (the visitor's journey converts, and exits) or on his phone as himself (his own converts),
/// then logs in on the laptop: the order ends the other journey too, but it is one order: the
/// journey counts one conversion, the first.
#[tokio::test]
async fn one_order_converts_one_enrollment_across_a_login() {
    let journey = r#"
id: browse
name: Browse
trigger: {event: product_viewed}
reentry: after_exit
exit_when: [{event: order_completed}]
goal: {event: order_completed, within: 7d}
steps:
  - {id: w, wait: 2h}
  - {id: inapp, send: {in_app: {title: "Still looking?", body: x}}}
"#;
    let cases = [
        (r#""userId":"oscar""#, "browse:oscar:1"),
        (r#""anonymousId":"dev-o""#, "browse:anon:dev-o:1"),
    ];
    for (who, converted_first) in cases {
        let h = Harness::new("2026-12-01T09:00:00Z");
        h.publish(journey).await;
        h.play(&format!(
            r#"
{{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"oscar","traits":{{"email":"oscar@example.com"}}}}
{{"at":"2026-12-01T10:01:00Z","userId":"oscar","event":"product_viewed","messageId":"v-1"}}
{{"at":"2026-12-01T10:02:00Z","anonymousId":"dev-o","event":"product_viewed","messageId":"v-2"}}
{{"at":"2026-12-01T10:05:00Z",{who},"event":"order_completed","messageId":"o-1"}}
{{"at":"2026-12-01T10:06:00Z","type":"identify","userId":"oscar","anonymousId":"dev-o","messageId":"l-1"}}
"#
        ))
        .await;
        h.advance_to(at("2026-12-02T00:00:00Z")).await;
        assert_eq!(h.outbox(), Vec::<String>::new(), "{who}");
        let converted = timeline_of(&h, "oscar", |w| matches!(w, What::Converted { .. })).await;
        assert_eq!(converted, [converted_first], "{who}");
        let s = stats(&h, "browse").await;
        assert_eq!(s.get("entered"), Some(&2), "{who}: {s:?}");
        assert_eq!(s.get("exited"), Some(&2), "{who}: {s:?}");
        assert_eq!(s.get("converted"), Some(&1), "{who}: {s:?}");
    }
}

/// A visitor hits the paywall; as herself she subscribes (and, in two of the journeys, then
/// cancels a trial or opens the app) before logging in on that device. The enrollment the
/// login moves to her converts on her subscribing whatever else wins after it, an exit on the
/// same change, a later exit event or the `wait_for` reply, as it does when she was herself
/// all along: one journey, one outcome either way.
#[tokio::test]
async fn a_moved_enrollment_converts_on_her_change_whatever_ends_or_moves_it() {
    let head = "trigger: {event: paywall_hit}\ngoal: {trait_changed: subscriber, where: \"event.to == true\", within: 2d}\n";
    let cases = [
        (
            "exit_and_goal",
            "exit_when: [{trait_changed: subscriber, where: \"event.to == true\"}]\nsteps:\n  - {id: w, wait: 1d}\n  - {id: s, send: {email: {subject: offer, text: x}}}\n",
            Some("exit_when trait_changed subscriber"),
        ),
        (
            "exit_event",
            "exit_when: [{event: trial_cancelled}]\nsteps:\n  - {id: w, wait: 1d}\n  - {id: s, send: {email: {subject: offer, text: x}}}\n",
            Some("exit_when trial_cancelled"),
        ),
        (
            "reply",
            "steps:\n  - {id: w, wait_for: {event: app_opened, timeout: 1d}}\n  - {id: s, send: {email: {subject: offer, text: x}}}\n  - {id: w2, wait: 3d}\n",
            None,
        ),
    ];
    for (id, rest, reason) in cases {
        let journey = format!("id: {id}\nname: {id}\n{head}{rest}");
        let mut seen = Vec::new();
        for login in [true, false] {
            let h = Harness::new("2026-12-01T07:00:00Z");
            h.publish(&journey).await;
            let who = if login {
                r#""anonymousId":"dev-1""#
            } else {
                r#""userId":"ann""#
            };
            h.play(&format!(
                r#"
{{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"a0","traits":{{"email":"ann@example.com"}}}}
{{"at":"2026-12-01T09:00:00Z",{who},"event":"paywall_hit","messageId":"p1"}}
{{"at":"2026-12-01T09:20:00Z","type":"identify","userId":"ann","messageId":"a1","traits":{{"subscriber":true}}}}
{{"at":"2026-12-01T09:30:00Z","userId":"ann","event":"trial_cancelled","messageId":"t1"}}
{{"at":"2026-12-01T09:30:00Z","userId":"ann","event":"app_opened","messageId":"o1"}}
"#
            ))
            .await;
            if login {
                h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"l1"}"#)
                    .await;
            }
            h.advance_to(at("2026-12-03T00:00:00Z")).await;
            let view = h.rt.user("ann").await.expect("user");
            let e = view
                .enrollments
                .iter()
                .find(|e| &*e.journey == id)
                .expect("an enrollment");
            assert_eq!(
                e.converted_at,
                Some(at("2026-12-01T09:20:00Z")),
                "{id}, login: {login}"
            );
            assert_eq!(e.end_reason.as_deref(), reason, "{id}, login: {login}");
            seen.push((e.status, h.outbox().len()));
            let s = stats(&h, id).await;
            assert_eq!(s.get("converted"), Some(&1), "{id}, login: {login}: {s:?}");
        }
        assert_eq!(seen[0], seen[1], "{id}: the login changes nothing");
    }
}

/// A change of a visitor's profile (her unsubscribe link, a topic's, a bounce of her address)
/// whose write races her login: the login's merge marks her profile merged and takes its copy
/// of it between the change's read and its write. The change, retried on the conflict, follows
/// the merge and lands on the user she turned out to be, not on the visitor's profile, which no
/// one reads any more.
#[tokio::test]
async fn a_change_of_a_visitor_racing_her_login_reaches_the_user() {
    let before = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"a-1","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T09:30:00Z","type":"identify","anonymousId":"device-1","messageId":"v-1","traits":{"email":"ann@example.com"}}
"#;
    for change in ["unsubscribe", "unsubscribe_topic", "suppress"] {
        // The login as it lands, played on a store of its own from the same events: its
        // profiles are written into hers just before the change's write.
        let twin = Harness::new("2026-12-01T09:00:00Z");
        twin.play(before).await;
        twin.play(LOGIN).await;
        let merged: Vec<_> = twin
            .store
            .dump()
            .into_iter()
            .filter(|r| r.key.sk == "P")
            .collect();
        assert_eq!(merged.len(), 2, "{merged:?}");
        let (h, faulty) = faulty_harness();
        h.play(before).await;
        h.advance_to(at("2026-12-01T11:00:00Z")).await;
        *faulty.land_before_write_of.lock().expect("landing") = Some(("P".into(), merged));
        let visitor = "anon:device-1";
        match change {
            "unsubscribe" => h.rt.unsubscribe(visitor, Channel::Email).await,
            "unsubscribe_topic" => h.rt.unsubscribe_topic(visitor, "newsletter").await,
            _ => {
                h.rt.suppress(visitor, Channel::Email, "bounce")
                    .await
                    .map(|_| ())
            }
        }
        .expect(change);
        assert!(
            faulty
                .land_before_write_of
                .lock()
                .expect("landing")
                .is_none(),
            "{change}: the login landed"
        );
        let ann = h.rt.user("ann").await.expect("ann").profile.expect("hers");
        let subs = ann.traits.get("subscriptions");
        let done = match change {
            "unsubscribe" => subs.and_then(|s| s.get("email")) == Some(&json!(false)),
            "unsubscribe_topic" => {
                subs.and_then(|s| s.pointer("/topics/newsletter")) == Some(&json!(false))
            }
            _ => ann.suppressed.contains_key(&Channel::Email),
        };
        assert!(done, "{change}: {ann:?}");
    }
}
