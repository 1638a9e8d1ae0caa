//! In-app messages an enrollment withdraws when it ends by an exit event or a stop: the unread
//! ones leave the inbox, read ones and those the send keeps (`keep_after_exit`) stay, and a
//! journey that completes, or sent no in-app message, leaves the inbox alone.

mod support;

use std::sync::Arc;

use jiff::Timestamp;
use waymark::engine::{self, Ctx, Effect};
use waymark::enrollment::TriggerEvent;
use waymark::event::{self, Call, Limits};
use waymark::profile::Profile;
use waymark::runtime::InboxMark;
use waymark::timeline::What;

use support::{at, journey, Harness};

/// A cart nudge in the app, beside a note that the cart is saved (kept, like a receipt), then a
/// day's wait; ordering ends it.
const NUDGE: &str = r#"
id: cart_nudge
name: Cart nudge
trigger: {event: cart_abandoned}
reentry: after_exit
exit_when:
  - event: order_completed
goal: {event: order_completed, within: 7d}
steps:
  - id: offer
    send:
      in_app: {title: "Your cart is waiting", body: "10% off today"}
  - id: saved
    send:
      in_app: {title: "Your cart is saved", body: "For 30 days", keep_after_exit: true}
  - id: wait
    wait: 1d
"#;

fn track(at: &str, user: &str, name: &str, id: &str) -> String {
    format!(
        r#"{{"at":"{at}","type":"track","userId":"{user}","event":"{name}","messageId":"{id}"}}"#
    )
}

/// The titles in a user's inbox, newest first, with whether each was read.
async fn inbox(h: &Harness, user: &str) -> Vec<(String, bool)> {
    h.rt.inbox(user)
        .await
        .expect("inbox")
        .into_iter()
        .map(|m| (m.title, m.read_at.is_some()))
        .collect()
}

/// What the user's timeline says of her in-app messages at the exit: `step: fact (detail)`.
async fn inbox_facts(h: &Harness, user: &str) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter_map(|e| {
            let step = e.step.as_deref().unwrap_or("-");
            match &e.what {
                What::Withdrawn { reason, detail } => Some(format!(
                    "{step}: withdrawn, {reason}{}",
                    detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )),
                What::NotWithdrawn { reason, detail } => Some(format!(
                    "{step}: kept, {reason}{}",
                    detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )),
                _ => None,
            }
        })
        .collect()
}

/// Ann abandons her cart at 10:00: both messages are in her inbox.
async fn ann_nudged() -> Harness {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(NUDGE).await;
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    assert_eq!(
        inbox(&h, "ann").await,
        [
            ("Your cart is waiting".to_string(), false),
            ("Your cart is saved".to_string(), false)
        ]
    );
    h
}

#[tokio::test]
async fn an_exit_withdraws_the_unread_nudge_and_keeps_what_the_send_keeps() {
    let h = ann_nudged().await;
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert_eq!(
        inbox(&h, "ann").await,
        [("Your cart is saved".to_string(), false)],
        "the nudge is over; the saved cart's note stays"
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, exit_when order_completed"]
    );
    // the record stays, saying when and why, so a retried send cannot bring it back
    let all = h.store.dump();
    let offer = all
        .iter()
        .find(|r| r.key.sk.starts_with("I#") && r.key.sk.contains("#offer#"))
        .expect("the offer's record");
    let item: waymark::runtime::InboxItem = offer.parse().expect("an inbox item");
    assert_eq!(item.withdrawn_at, Some(at("2026-12-01T11:00:00Z")));
    assert_eq!(
        item.withdrawn_reason.as_deref(),
        Some("exit_when order_completed")
    );
    // an app that listed it before the exit and marks it read now gets it back as it is
    let marked =
        h.rt.mark_inbox("ann", &item.id, InboxMark::Read)
            .await
            .expect("marked")
            .expect("the message");
    assert_eq!(marked.read_at, None);
    assert!(marked.withdrawn_at.is_some());
    assert_eq!(inbox(&h, "ann").await.len(), 1);
    // the enrollment keeps nothing more to withdraw
    let view = h.rt.user("ann").await.expect("user");
    assert!(view.enrollments[0].in_app.is_empty(), "{view:?}");
}

#[tokio::test]
async fn a_message_she_read_stays_after_the_exit() {
    let h = ann_nudged().await;
    let offer = h.rt.inbox("ann").await.expect("inbox")[0].id.clone();
    h.rt.mark_inbox("ann", &offer, InboxMark::Read)
        .await
        .expect("marked");
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert_eq!(
        inbox(&h, "ann").await,
        [
            ("Your cart is waiting".to_string(), true),
            ("Your cart is saved".to_string(), false)
        ]
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: kept, read (read at 2026-12-01T10:00:00Z: only unread messages are withdrawn)"]
    );
}

#[tokio::test]
async fn a_journey_that_completes_leaves_its_messages_in_the_inbox() {
    let h = ann_nudged().await;
    // the day's wait ends the journey; an order after it exits nothing
    h.advance_to(at("2026-12-02T12:00:00Z")).await;
    h.play(&track(
        "2026-12-02T12:00:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert_eq!(inbox(&h, "ann").await.len(), 2);
    assert!(inbox_facts(&h, "ann").await.is_empty());
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(view.enrollments[0].end_reason.as_deref(), Some("completed"));
    assert!(view.enrollments[0].in_app.is_empty(), "{view:?}");
}

#[tokio::test]
async fn a_stopped_journey_withdraws_its_unread_messages() {
    let h = ann_nudged().await;
    h.publish(&format!("{NUDGE}status: stopped\n")).await;
    assert_eq!(h.rt.tick().await.expect("tick").stops, 1);
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    assert_eq!(
        inbox(&h, "ann").await,
        [("Your cart is saved".to_string(), false)]
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, journey stopped"]
    );
}

/// The exit's effects performed again (its timeline record lost, so its message is retried):
/// the withdrawal finds its own work done, fails nothing and says the same once.
#[tokio::test]
async fn the_exits_withdrawal_performed_again_changes_nothing() {
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(NUDGE).await;
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    let offer = h.rt.inbox("ann").await.expect("inbox")[0].id.clone();
    *faulty.fail_write_of.lock().expect("fault") = Some("T#".into());
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert!(
        faulty.fail_write_of.lock().expect("fault").is_none(),
        "the fault fired"
    );
    // withdrawn before the record failed; her app's read in between changes nothing
    assert_eq!(inbox(&h, "ann").await.len(), 1);
    h.rt.mark_inbox("ann", &offer, InboxMark::Read)
        .await
        .expect("marked");
    // the retry performs the exit's effects again
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(
        inbox(&h, "ann").await,
        [("Your cart is saved".to_string(), false)]
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, exit_when order_completed"]
    );
    let exits =
        h.rt.user("ann")
            .await
            .expect("user")
            .timeline
            .iter()
            .filter(|e| matches!(e.what, What::Exited { .. }))
            .count();
    assert_eq!(exits, 1);
}

/// An in-app message whose send had not reached the inbox when the exit came (a worker still
/// under way with it) is kept out: the send finds the withdrawn record and leaves it.
#[tokio::test]
async fn a_message_still_on_its_way_at_the_exit_is_kept_out_of_the_inbox() {
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(NUDGE).await;
    // the offer's inbox write fails: its send is retried later
    *faulty.fail_write_of.lock().expect("fault") = Some("I#".into());
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    assert!(
        faulty.fail_write_of.lock().expect("fault").is_none(),
        "the fault fired"
    );
    assert!(
        inbox(&h, "ann")
            .await
            .iter()
            .all(|(t, _)| t != "Your cart is waiting"),
        "not in the inbox yet"
    );
    h.play(&track(
        "2026-12-01T10:01:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    h.advance_to(at("2026-12-01T18:00:00Z")).await;
    assert!(
        inbox(&h, "ann")
            .await
            .iter()
            .all(|(t, _)| t != "Your cart is waiting"),
        "{:?}",
        inbox(&h, "ann").await
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, exit_when order_completed (it had not reached the inbox yet: it is kept out of it)"]
    );
    // and its send, owed since, is skipped for the exit
    let view = h.rt.user("ann").await.expect("user");
    let offer: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| e.step.as_deref() == Some("offer"))
        .map(|e| waymark::runtime::describe(&e.what))
        .collect();
    assert!(
        offer.iter().any(|d| d == "skipped in_app: exited"),
        "{offer:?}"
    );
}

/// The engine asks for a withdrawal only of an enrollment that sent an in-app message: a cart
/// journey of push and email exits with no inbox read.
#[test]
fn only_an_enrollment_that_sent_in_app_messages_withdraws_any() {
    let with_push = NUDGE
        .replace(
            r#"in_app: {title: "Your cart is waiting", body: "10% off today"}"#,
            r#"push: {title: "Your cart is waiting", body: "10% off today"}"#,
        )
        .replace(
            r#"in_app: {title: "Your cart is saved", body: "For 30 days", keep_after_exit: true}"#,
            r#"email: {subject: "Your cart is saved", text: "For 30 days"}"#,
        );
    let order: Timestamp = at("2026-12-01T11:00:00Z");
    let limits = Limits::default();
    let body = serde_json::json!({"userId": "ann", "event": "order_completed", "messageId": "o-ann", "timestamp": order.to_string()});
    let order_event = event::parse_call(Call::Track, body.to_string().as_bytes(), order, &limits)
        .expect("an event");
    let mut profile = Profile::new("ann");
    profile
        .traits
        .insert("email".into(), "ann@example.com".into());
    profile.devices =
        serde_json::from_value(serde_json::json!([{"platform": "fcm", "token": "t-ann"}]))
            .expect("devices");
    let withdrawals = |text: &str| {
        let j = journey(text);
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
            event: "cart_abandoned".into(),
            message_id: "c-ann".into(),
            at: ctx.now,
            properties: Arc::new(serde_json::json!({})),
        };
        let entered = engine::enter(&ctx, "ann", 1, trigger);
        let later = Ctx { now: order, ..ctx };
        let exit = engine::on_event(&later, &entered.enrollment, &order_event).expect("an exit");
        assert!(!exit.enrollment.is_active());
        exit.effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Withdraw(w) => Some(
                    w.messages
                        .iter()
                        .map(|m| format!("{}#{}#{} ({})", w.enrollment, m.step, m.seq, w.reason))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        withdrawals(NUDGE),
        [["cart_nudge:ann:1#offer#1 (exit_when order_completed)"]],
        "the offer, not the note the send keeps"
    );
    assert!(withdrawals(&with_push).is_empty());
}

/// A visitor's nudge, sent before she logged in, is in her inbox after the login; her order
/// then withdraws it from where it was put (the visitor's).
#[tokio::test]
async fn a_nudge_sent_before_the_login_is_withdrawn_at_her_exit() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(NUDGE).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"cart_abandoned","messageId":"c-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    assert_eq!(inbox(&h, "lee").await.len(), 2);
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "lee",
        "order_completed",
        "o-lee",
    ))
    .await;
    assert_eq!(
        inbox(&h, "lee").await,
        [("Your cart is saved".to_string(), false)]
    );
    assert_eq!(
        inbox_facts(&h, "lee").await,
        ["offer: withdrawn, exit_when order_completed"]
    );
}

/// `waymark simulate` tells it as the deployed engine does: the order withdraws ann's nudge at
/// its exit, bob's stays.
#[tokio::test]
async fn a_simulation_says_which_nudge_was_withdrawn() {
    let out = support::sim(
        &[NUDGE],
        &[
            track("2026-12-01T10:00:00Z", "ann", "cart_abandoned", "c-ann"),
            track("2026-12-01T10:00:00Z", "bob", "cart_abandoned", "c-bob"),
            track("2026-12-01T11:00:00Z", "ann", "order_completed", "o-ann"),
        ]
        .join("\n"),
    )
    .await;
    let inbox_facts = |user: &str| {
        support::facts(&out, user, |w| {
            matches!(
                w,
                What::Exited { .. } | What::Withdrawn { .. } | What::NotWithdrawn { .. }
            )
        })
    };
    assert_eq!(
        inbox_facts("ann"),
        [
            "2026-12-01T11:00:00Z cart_nudge/wait: exited on order_completed",
            "2026-12-01T11:00:00Z cart_nudge/offer: in-app message withdrawn: exit_when order_completed",
        ]
    );
    assert!(inbox_facts("bob").is_empty());
}

/// The records of ann's offer whose sort key starts with `prefix` (`I#`, `L#`) in `h`'s store.
fn offer_records(h: &Harness, prefix: &str) -> Vec<waymark::store::Record> {
    h.store
        .dump()
        .into_iter()
        .filter(|r| r.key.sk.starts_with(prefix) && r.key.sk.contains("#offer#"))
        .collect()
}

/// Ann's offer on its way at her order (its send claimed, its inbox write failed and owed):
/// the order's exit, unless `faulty` says otherwise, writes its placeholder.
async fn offer_on_its_way() -> (Harness, support::faulty::Faulty) {
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(NUDGE).await;
    *faulty.fail_write_of.lock().expect("fault") = Some("I#".into());
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    assert!(
        faulty.fail_write_of.lock().expect("fault").is_none(),
        "the fault fired"
    );
    (h, faulty)
}

/// The worker sending the offer writes it to the inbox, then its ledger's `Done`, while the
/// exit looks for it (after its inbox read found nothing): the withdrawal still takes it out.
#[tokio::test]
async fn a_message_landing_while_the_exit_looks_for_it_is_withdrawn() {
    // what that worker writes, taken from a send that went through
    let sent = {
        let done = ann_nudged().await;
        [offer_records(&done, "I#"), offer_records(&done, "L#")].concat()
    };
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (h, faulty) = offer_on_its_way().await;
    *faulty.land_after_missed_get.lock().expect("landing") = Some(("I#".into(), sent));
    h.play(&track(
        "2026-12-01T10:01:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert!(
        faulty
            .land_after_missed_get
            .lock()
            .expect("landing")
            .is_none(),
        "the worker's writes landed"
    );
    h.advance_to(at("2026-12-01T18:00:00Z")).await;
    assert_eq!(
        inbox(&h, "ann").await,
        [("Your cart is saved".to_string(), false)]
    );
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, exit_when order_completed"]
    );
}

/// The exit's placeholder is written between the offer's cap check and its inbox write (the
/// worker was past its look at the exit): the send is skipped for the exit, not sent, and its
/// cap place is given back, so the saved cart's note, capped behind it, goes out.
#[tokio::test]
async fn a_send_that_finds_the_exits_placeholder_is_skipped() {
    // the placeholder, as an exit writes it for a message on its way
    let placeholder = {
        let (h, _) = offer_on_its_way().await;
        h.play(&track(
            "2026-12-01T10:01:00Z",
            "ann",
            "order_completed",
            "o-ann",
        ))
        .await;
        offer_records(&h, "I#")
    };
    assert_eq!(placeholder.len(), 1, "{placeholder:?}");
    let item: waymark::runtime::InboxItem = placeholder[0].parse().expect("an inbox item");
    assert!(item.placeholder, "{item:?}");
    let config = waymark::runtime::Config {
        caps: waymark::runtime::parse_caps("in_app=1/1d").expect("caps"),
        ..Default::default()
    };
    let (h, faulty) = support::faulty::faulty_harness_with(config);
    h.publish(NUDGE).await;
    let at_offer = placeholder[0].key.sk.to_string();
    *faulty.land_before_write_of.lock().expect("landing") = Some((at_offer, placeholder));
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    assert!(
        faulty
            .land_before_write_of
            .lock()
            .expect("landing")
            .is_none(),
        "the placeholder landed"
    );
    let view = h.rt.user("ann").await.expect("user");
    let sends: Vec<String> = view
        .timeline
        .iter()
        .filter(|e| matches!(e.what, What::Sent { .. } | What::Skipped { .. }))
        .map(|e| {
            format!(
                "{}: {}",
                e.step.as_deref().unwrap_or("-"),
                waymark::runtime::describe(&e.what)
            )
        })
        .collect();
    assert_eq!(
        sends,
        ["offer: skipped in_app: exited", "saved: sent in_app"],
        "{view:?}"
    );
    assert!(
        h.outbox()
            .iter()
            .all(|l| !l.contains("Your cart is waiting")),
        "{:?}",
        h.outbox()
    );
    assert_eq!(
        inbox(&h, "ann").await,
        [("Your cart is saved".to_string(), false)]
    );
}

/// The exit's effects performed again after it wrote the placeholder: it still says the
/// message had not reached the inbox, and an app has no such message to mark.
#[tokio::test]
async fn the_withdrawal_performed_again_keeps_saying_it_had_not_arrived() {
    let (h, faulty) = offer_on_its_way().await;
    // the exit's timeline record fails: its effects are performed again
    *faulty.fail_write_of.lock().expect("fault") = Some("T#cart_nudge:ann:1#o-ann".into());
    h.play(&track(
        "2026-12-01T10:01:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert!(
        faulty.fail_write_of.lock().expect("fault").is_none(),
        "the fault fired"
    );
    h.advance_to(at("2026-12-01T18:00:00Z")).await;
    assert_eq!(
        inbox_facts(&h, "ann").await,
        ["offer: withdrawn, exit_when order_completed (it had not reached the inbox yet: it is kept out of it)"]
    );
    let item: waymark::runtime::InboxItem = offer_records(&h, "I#")[0].parse().expect("an item");
    assert!(item.placeholder, "{item:?}");
    for mark in [InboxMark::Read, InboxMark::Dismissed] {
        assert_eq!(
            h.rt.mark_inbox("ann", &item.id, mark)
                .await
                .expect("marked"),
            None
        );
    }
}

/// Her phone's visitor abandons a cart at 10:00 and logs in as lee at 10:05; before, lee
/// abandoned one on her laptop at `herself` (none: she never did), and her day's wait is over
/// or not.
async fn lee_logs_in(herself: Option<&str>) -> Harness {
    let h = Harness::new("2026-11-29T09:00:00Z");
    h.publish(NUDGE).await;
    if let Some(t) = herself {
        h.play(&track(t, "lee", "cart_abandoned", "c-lee")).await;
    }
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"cart_abandoned","messageId":"c-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    h
}

/// The withdrawals a user's timeline tells of: `[enrollment] step`.
async fn withdrawn(h: &Harness, user: &str) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter(|e| matches!(e.what, What::Withdrawn { .. }))
        .map(|e| format!("[{}] {}", e.enrollment, e.step.as_deref().unwrap_or("-")))
        .collect()
}

/// Whichever enrollment is hers after the login (her own, still in the journey; the visitor's,
/// moved in over her completed one, or where she had none), her order withdraws every unread
/// nudge, the visitor's included, and leaves what the sends keep and what her completed
/// enrollment sent.
#[tokio::test]
async fn her_order_withdraws_the_visitors_nudge_whichever_enrollment_goes_on() {
    let saved = ("Your cart is saved".to_string(), false);
    let waiting = ("Your cart is waiting".to_string(), false);
    let visitors = "[cart_nudge:anon:phone-1:1] offer";
    for (herself, left, gone) in [
        // in the journey: the visitor's ends at the login, and hers takes its nudge
        (
            Some("2026-12-01T09:30:00Z"),
            vec![saved.clone(), saved.clone()],
            vec![visitors, "[cart_nudge:lee:1] offer"],
        ),
        // completed: the visitor's goes on over it; her old nudge stays
        (
            Some("2026-11-29T10:00:00Z"),
            vec![saved.clone(), waiting.clone(), saved.clone()],
            vec![visitors],
        ),
        // never in it: the visitor's goes on as hers
        (None, vec![saved.clone()], vec![visitors]),
    ] {
        let h = lee_logs_in(herself).await;
        h.play(&track(
            "2026-12-01T11:00:00Z",
            "lee",
            "order_completed",
            "o-lee",
        ))
        .await;
        assert_eq!(inbox(&h, "lee").await, left, "{herself:?}");
        assert_eq!(withdrawn(&h, "lee").await, gone, "{herself:?}");
    }
}

/// The login hands the visitor's nudge to lee's own enrollment: the user view shows it there
/// (and none on the visitor's, ended), the withdrawal at her order is told of the visitor's
/// enrollment, whose message it was, and the stats count each entry, send and end once.
#[tokio::test]
async fn the_user_view_and_the_stats_tell_of_the_nudge_she_took() {
    let h = lee_logs_in(Some("2026-12-01T09:30:00Z")).await;
    let api = support::view::api(&h);
    let (status, v, text) = support::view::user_view(&api, "lee").await;
    assert_eq!(status, 200, "{text}");
    let remembered = |id: &str| {
        v["enrollments"]
            .as_array()
            .expect("enrollments")
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["in_app"].clone())
            .unwrap_or_else(|| panic!("no enrollment {id}: {text}"))
    };
    assert_eq!(
        remembered("cart_nudge:lee:1"),
        serde_json::json!([
            {"user": "anon:phone-1", "step": "offer", "seq": 1, "enrollment": "cart_nudge:anon:phone-1:1"},
            {"user": "lee", "step": "offer", "seq": 1},
        ])
    );
    assert_eq!(
        remembered("cart_nudge:anon:phone-1:1"),
        serde_json::Value::Null
    );
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "lee",
        "order_completed",
        "o-lee",
    ))
    .await;
    let (_, v, _) = support::view::user_view(&api, "lee").await;
    let told: Vec<String> = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| e["what"] == "withdrawn")
        .map(|e| format!("{} {} {}", e["enrollment"], e["step"], e["reason"]))
        .collect();
    assert_eq!(
        told,
        [
            r#""cart_nudge:anon:phone-1:1" "offer" "exit_when order_completed""#,
            r#""cart_nudge:lee:1" "offer" "exit_when order_completed""#,
        ]
    );
    h.rt.tick().await.expect("tick");
    let stats = h.rt.stats("cart_nudge").await.expect("stats");
    for (counter, n) in [
        ("entered", 2),
        // hers on her order, the visitor's at the login
        ("exited", 2),
        ("converted", 1),
        ("step.offer.sent.in_app", 2),
        ("step.saved.sent.in_app", 2),
    ] {
        assert_eq!(stats.get(counter), Some(&n), "{counter}: {stats:?}");
    }
}

/// The visitor ordered as a guest after lee's own cart and before abandoning hers: at the
/// login, lee's enrollment takes the visitor's nudge, then exits on the guest order (the
/// engine learns it was hers), withdrawing both nudges.
#[tokio::test]
async fn a_guest_order_ends_her_enrollment_at_the_login_with_the_nudge_it_took() {
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(NUDGE).await;
    h.play(&track(
        "2026-12-01T09:30:00Z",
        "lee",
        "cart_abandoned",
        "c-lee",
    ))
    .await;
    h.play(r#"
{"at":"2026-12-01T09:45:00Z","type":"track","anonymousId":"phone-1","event":"order_completed","messageId":"o-1"}
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"cart_abandoned","messageId":"c-1"}
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    let saved = ("Your cart is saved".to_string(), false);
    assert_eq!(inbox(&h, "lee").await, [saved.clone(), saved]);
    assert_eq!(
        withdrawn(&h, "lee").await,
        [
            "[cart_nudge:anon:phone-1:1] offer",
            "[cart_nudge:lee:1] offer"
        ]
    );
}

/// Lee abandons a cart on her laptop while her phone's visitor logs in: her enrollment is
/// written after the login found her in no journey and before it moved the visitor's in, so
/// the visitor's does not go on (one enrollment at a time), and hers, which does, takes its
/// nudge: her order withdraws both.
#[tokio::test]
async fn her_enrollment_written_during_the_login_takes_the_visitors_nudge() {
    // what her laptop's cart writes, taken from a run where it went through
    let hers: Vec<waymark::store::Record> = {
        let h = Harness::new("2026-12-01T09:00:00Z");
        h.publish(NUDGE).await;
        h.play(&track(
            "2026-12-01T10:04:00Z",
            "lee",
            "cart_abandoned",
            "c-lee",
        ))
        .await;
        h.store
            .dump()
            .into_iter()
            .filter(|r| r.key.pk == "U#lee" && r.key.sk != "P")
            .collect()
    };
    assert!(hers.iter().any(|r| r.key.sk == "E#cart_nudge"), "{hers:?}");
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(NUDGE).await;
    h.play(r#"
{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"phone-1","event":"cart_abandoned","messageId":"c-1"}
"#)
    .await;
    // they land just before the login ends the visitor's enrollment to move it in
    *faulty.land_before_write_of.lock().expect("landing") = Some(("E#cart_nudge".into(), hers));
    h.play(r#"
{"at":"2026-12-01T10:05:00Z","type":"identify","userId":"lee","anonymousId":"phone-1","messageId":"l-1","traits":{}}
"#)
    .await;
    assert!(
        faulty
            .land_before_write_of
            .lock()
            .expect("landing")
            .is_none(),
        "her enrollment landed"
    );
    assert_eq!(inbox(&h, "lee").await.len(), 4);
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "lee",
        "order_completed",
        "o-lee",
    ))
    .await;
    let saved = ("Your cart is saved".to_string(), false);
    assert_eq!(inbox(&h, "lee").await, [saved.clone(), saved]);
    assert_eq!(
        withdrawn(&h, "lee").await,
        [
            "[cart_nudge:anon:phone-1:1] offer",
            "[cart_nudge:lee:1] offer"
        ]
    );
}

/// An enrollment remembers its latest 16 in-app messages: a journey that sends 17 withdraws
/// the 16 latest at the exit, and the first stays in the inbox.
#[tokio::test]
async fn an_exit_withdraws_the_latest_sixteen_messages() {
    let sends: String = (1..=17)
        .map(|i| {
            format!("  - id: m{i}\n    send:\n      in_app: {{title: \"Tip {i}\", body: \"x\"}}\n")
        })
        .collect();
    let tips = format!(
        "id: tips\nname: Tips\ntrigger: {{event: cart_abandoned}}\nexit_when:\n  - event: order_completed\nsteps:\n{sends}  - id: wait\n    wait: 1d\n"
    );
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(&tips).await;
    h.play(&track(
        "2026-12-01T10:00:00Z",
        "ann",
        "cart_abandoned",
        "c-ann",
    ))
    .await;
    assert_eq!(inbox(&h, "ann").await.len(), 17);
    let view = h.rt.user("ann").await.expect("user");
    assert_eq!(view.enrollments[0].in_app.len(), 16);
    h.play(&track(
        "2026-12-01T11:00:00Z",
        "ann",
        "order_completed",
        "o-ann",
    ))
    .await;
    assert_eq!(inbox(&h, "ann").await, [("Tip 1".to_string(), false)]);
    let gone = withdrawn(&h, "ann").await;
    let expected: Vec<String> = (2..=17).map(|i| format!("[tips:ann:1] m{i}")).collect();
    assert_eq!(gone, expected);
}
