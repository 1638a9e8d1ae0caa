//! Erasing a user (`DELETE /v1/users/{id}`): everything kept about her goes, records keyed by her
//! data too; her journey sends nothing more; an event queued before the erasure is dropped, one
//! sent after it makes a new profile; a second erasure finds nothing left and answers the same.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use waymark::engine::Outgoing;
use waymark::event::{self, Call, Limits};
use waymark::profile::Device;
use waymark::provider::{Receipt, SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::store::{Expect, Hooked, Hooks, MemoryStore, Part, Record, Store, StoreError};

use support::faulty::faulty_harness;
use support::{at, Harness};

const NUDGE: &str = r#"
id: cart_nudge
name: Cart nudge
trigger: {event: cart_abandoned}
steps:
  - id: first
    send:
      email: {subject: "Your cart", text: "Still there"}
  - id: wait
    wait: 2h
  - id: second
    send:
      email: {subject: "Last call", text: "Going soon"}
"#;

fn script(lines: &[&str]) -> String {
    lines.join("\n")
}

/// An event as the API would queue it, received now.
fn event_now(h: &Harness, call: Call, body: serde_json::Value) -> event::Event {
    event::parse_call(
        call,
        &serde_json::to_vec(&body).expect("json"),
        h.now(),
        &Limits::default(),
    )
    .expect("an event")
}

/// Every record that names `user` in its key or its body.
fn records_about(h: &Harness, user: &str) -> Vec<Record> {
    h.store
        .dump()
        .into_iter()
        .filter(|r| {
            let body = r.body.json().map(|b| b.to_vec()).unwrap_or_default();
            r.key.pk.contains(user) || String::from_utf8_lossy(&body).contains(user)
        })
        .collect()
}

#[tokio::test]
async fn an_erased_user_leaves_nothing_behind_and_is_sent_nothing_more() {
    // given ann, a visitor before she logged in, with an email, a phone and a device, in the
    // middle of a journey (its first email sent, its second two hours away)
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"v-ann","event":"viewed","messageId":"m0"}"#,
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","anonymousId":"v-ann","messageId":"m1","traits":{"email":"ann@example.com","phone":"+447700900123","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
    assert!(h.store.dump().iter().any(|r| r.key.pk.starts_with("N#")));
    assert!(h.store.dump().iter().any(|r| r.key.pk.starts_with("D#")));
    // and an event of hers received now, still on the queue as the erasure runs
    let queued = event_now(
        &h,
        Call::Track,
        serde_json::json!({"userId": "ann", "event": "cart_abandoned", "messageId": "m3"}),
    );
    h.queue
        .send(
            QueueName::Events,
            &[Outbound {
                message: Message::Event(Arc::new(queued)),
                delay_secs: 30,
            }],
        )
        .await
        .expect("queue");

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then her enrollment, timeline, ledger, dedup markers, cap windows, the visitor she was,
    // her device claim and phone record are gone; her profile is a bare mark
    assert_eq!(erased.enrollments, 1, "{erased:?}");
    assert_eq!(erased.anonymous, 1, "{erased:?}");
    assert_eq!(erased.claims, 2, "{erased:?}");
    assert!(!erased.remaining);
    let left = records_about(&h, "ann");
    let keys: Vec<String> = left
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P", "U#anon:v-ann/P"], "{left:?}");
    for r in &left {
        let p: waymark::profile::Profile = r.parse().expect("a profile");
        assert!(p.is_erasure_mark(), "{p:?}");
        assert!(r.expires.is_some(), "the mark is kept for a while only");
    }
    let view = h.rt.user("ann").await.expect("user");
    assert!(view.profile.is_none() && view.enrollments.is_empty() && view.timeline.is_empty());
    // her counts stay in the journey's stats (folded before her records went)
    assert!(erased.folded > 0, "{erased:?}");
    let stats = h.rt.stats("cart_nudge").await.expect("stats");
    assert!(stats.values().any(|n| *n > 0), "{stats:?}");

    // when the queued event arrives and her wait would have ended
    h.advance_to(at("2026-12-01T13:00:00Z")).await;

    // then nothing more went out, and nothing of her came back
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P", "U#anon:v-ann/P"]);

    // when the erasure is asked again
    let again = h.rt.erase("ann").await.expect("erase again");

    // then it finds nothing left to do
    assert_eq!(
        again,
        waymark::erase::Erasure::default(),
        "a second erasure deletes nothing"
    );
}

/// A stats counter, 0 when the journey never counted it.
fn count(stats: &std::collections::BTreeMap<String, i64>, name: &str) -> i64 {
    stats.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn her_erasure_ends_her_enrollment_in_the_stats_too() {
    // given ann waiting in a journey, counted as waiting there
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    h.rt.fold_stats().await.expect("fold");
    let before = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&before, "step.wait.waiting"), 1, "{before:?}");

    // when she is erased, and the stats are folded
    let erased = h.rt.erase("ann").await.expect("erase");
    h.rt.fold_stats().await.expect("fold");

    // then her enrollment reads as ended where she was: no one waits, one exit, and her
    // entry and email are still counted
    assert_eq!(erased.enrollments, 1, "{erased:?}");
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.exited"), 1, "{s:?}");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.sent.email"), 1, "{s:?}");
    // and the record that ended it went with the rest of her partition
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);

    // when she is erased again, then nothing is counted twice
    h.rt.erase("ann").await.expect("erase again");
    h.rt.fold_stats().await.expect("fold");
    assert_eq!(h.rt.stats("cart_nudge").await.expect("stats"), s);
}

#[tokio::test]
async fn her_enrollments_are_read_once_for_the_check_of_a_send_under_way_and_their_end() {
    // given ann waiting in a journey
    let (h, faulty) = faulty_harness();
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    faulty.take_queried();

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then her enrollment was read once (the check that no send of hers is under way read
    // it, and the erasure ended it from that read), and it went
    assert_eq!(erased.enrollments, 1, "{erased:?}");
    let queried = faulty.take_queried();
    assert_eq!(queried.get("E#"), Some(&1), "{queried:?}");
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);
}

#[tokio::test]
async fn what_her_enrollment_still_owed_the_timeline_is_counted_at_her_erasure() {
    // given ann waiting in a journey whose entry's timeline record was never written (the
    // worker stopped after its email went out): her enrollment still owes it
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    let timeline: Vec<waymark::store::Key> = h
        .store
        .dump()
        .into_iter()
        .filter(|r| r.key.pk == "U#ann" && r.key.sk.starts_with("T#"))
        .map(|r| {
            assert!(r.pending.is_some(), "not folded yet: {r:?}");
            r.key
        })
        .collect();
    assert_eq!(timeline.len(), 1, "{timeline:?}");
    waymark::store::Store::delete_many(&h.store, &timeline)
        .await
        .expect("delete");

    // when she is erased, and the stats are folded
    h.rt.erase("ann").await.expect("erase");
    h.rt.fold_stats().await.expect("fold");

    // then her entry, her email and her end are counted, once each, and no one waits
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.sent.email"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.entered"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);
}

#[tokio::test]
async fn a_transition_past_what_one_stats_fold_takes_does_not_hold_her_erasure_up() {
    // given a journey of 60 emails in a row, no wait between them: the one transition that
    // sends them all makes one timeline record of 121 counters, past the 100 one fold changes
    let steps: String = (0..60)
        .map(|i| {
            format!(
                "  - id: mail_{i}\n    send:\n      email: {{subject: \"N{i}\", text: \"Hi\"}}\n"
            )
        })
        .collect();
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(&format!(
        "id: burst\nname: Burst\ntrigger: {{event: signed_up}}\nsteps:\n{steps}"
    ))
    .await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"m2"}"#,
    ]))
    .await;
    assert_eq!(h.outbox().len(), 60);

    // when she is erased (her records folded into the stats before they go)
    let erased = h.rt.erase("ann").await.expect("erase");

    // then the erasure is done, and her emails are counted, once each
    assert!(!erased.remaining, "{erased:?}");
    let s = h.rt.stats("burst").await.expect("stats");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    for i in 0..60 {
        assert_eq!(count(&s, &format!("step.mail_{i}.sent.email")), 1, "{s:?}");
    }
    assert_eq!(count(&s, "completed"), 1, "{s:?}");
    h.rt.fold_stats().await.expect("fold");
    assert_eq!(h.rt.stats("burst").await.expect("stats"), s);
}

#[tokio::test]
async fn an_event_sent_after_the_erasure_makes_a_new_profile() {
    // given ann, erased
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#)
        .await;
    h.rt.erase("ann").await.expect("erase");

    // when she signs up again a minute later
    h.play(r#"{"at":"2026-12-01T10:01:00Z","type":"identify","userId":"ann","messageId":"m2","traits":{"email":"ann@new.example.com"}}"#)
        .await;

    // then she is a new user, knowing nothing of before
    let view = h.rt.user("ann").await.expect("user");
    let p = view.profile.expect("a new profile");
    assert_eq!(p.traits["email"], "ann@new.example.com");
    let ids: Vec<&str> = p
        .history
        .get("$identify")
        .into_iter()
        .flatten()
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(ids, ["m2"], "{p:?}");
    assert_eq!(p.history.len(), 1, "{p:?}");
}

#[tokio::test]
async fn a_large_partition_is_erased_over_several_requests() {
    // given a user with more records than one request deletes (dedup markers of her events)
    let h = Harness::new("2026-12-01T10:00:00Z");
    let lines: Vec<String> = (0..1_100)
        .map(|i| {
            format!(
                r#"{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"bob","event":"e","messageId":"m{i}"}}"#
            )
        })
        .collect();
    h.play(&lines.join("\n")).await;

    // when she is erased
    let first = h.rt.erase("bob").await.expect("erase");

    // then the first request stops at its bound, and the second finishes
    assert!(first.remaining, "{first:?}");
    assert_eq!(first.records, waymark::erase::DELETES_PER_REQUEST);
    assert!(h.rt.user("bob").await.expect("user").profile.is_none());
    let second = h.rt.erase("bob").await.expect("erase again");
    assert!(!second.remaining, "{second:?}");
    assert_eq!(first.records + second.records, 1_100);
    let keys: Vec<String> = records_about(&h, "bob")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#bob/P"]);
}

#[tokio::test]
async fn the_api_erases_with_an_admin_key_only_and_answers_a_repeat_the_same() {
    use bytes::Bytes;
    use http::{Method, Request, StatusCode};
    use waymark::api::Api;
    use waymark::auth::{Keys, Signer};

    // given ann, known, and the API over the same store
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#)
        .await;
    let api = Api {
        runtime: Arc::new(h.rt),
        keys: Keys::parse("write-key", "admin-key").expect("keys"),
        signer: Arc::new(Signer::new("secret")),
        limits: Limits::default(),
    };
    let call = |method: Method, key: &str| {
        Request::builder()
            .method(method)
            .uri("/v1/users/ann")
            .header("authorization", format!("Bearer {key}"))
            .body(Bytes::new())
            .expect("a request")
    };

    // when a write key asks, then it is refused and ann is still there
    let refused = api.handle(call(Method::DELETE, "write-key")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let found = api.handle(call(Method::GET, "admin-key")).await;
    assert_eq!(found.status(), StatusCode::OK);

    // when an admin key asks, twice, then both answer 200 and she is a 404 after
    for _ in 0..2 {
        let erased = api.handle(call(Method::DELETE, "admin-key")).await;
        assert_eq!(erased.status(), StatusCode::OK, "{:?}", erased.body());
        let body: serde_json::Value = serde_json::from_slice(erased.body()).expect("json");
        assert_eq!(body["erased"], true, "{body}");
    }
    let gone = api.handle(call(Method::GET, "admin-key")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

/// Her mark gone, as its time to live ends (the memory store keeps it: removed by hand).
async fn mark_expires(h: &Harness, user: &str) {
    use waymark::store::{Expect, Key, Store};
    h.store
        .delete(&Key::new(format!("U#{user}"), "P"), Expect::Any)
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_pending_inactivity_check_does_not_bring_her_back_after_her_mark_expires() {
    // given ann, active, so that an inactivity journey checks on her in 30 days
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(
        r#"
id: winback
name: Win back
trigger:
  inactive:
    events: [app_opened]
    for: 30d
steps:
  - id: ping
    send:
      webhook:
        url: "https://crm.example.com/users/{{ user_id }}"
"#,
    )
    .await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"m2"}"#,
    ]))
    .await;

    // when she is erased, and her mark expires 15 days later
    h.rt.erase("ann").await.expect("erase");
    h.advance_to(at("2026-12-17T10:00:00Z")).await;
    mark_expires(&h, "ann").await;

    // then the check, due later, enters no one: nothing goes out and she is not back
    h.advance_to(at("2027-01-02T10:00:00Z")).await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    assert!(
        records_about(&h, "ann").is_empty(),
        "{:?}",
        records_about(&h, "ann")
    );
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());
}

#[tokio::test]
async fn erasing_an_unknown_user_leaves_only_a_mark_that_expires() {
    // given no one called zoe
    let h = Harness::new("2026-12-01T10:00:00Z");

    // when she is erased (twice: a repeat must not keep it either)
    for _ in 0..2 {
        h.rt.erase("zoe").await.expect("erase");
    }

    // then only her mark is left, and it is kept for a while only
    let left = records_about(&h, "zoe");
    let keys: Vec<String> = left
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#zoe/P"], "{left:?}");
    let p: waymark::profile::Profile = left[0].parse().expect("a profile");
    assert!(p.is_erasure_mark(), "{p:?}");
    let expires = left[0].expires.expect("the mark is kept for a while only");
    assert_eq!(
        expires,
        (h.now() + waymark::erase::MARK_KEPT_FOR).as_second(),
        "{left:?}"
    );
}

#[tokio::test]
async fn an_unsubscribe_or_a_bounce_after_the_erasure_leaves_the_mark_as_it_is() {
    use waymark::journey::Channel;

    // given ann, erased
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com","phone":"+447700900123"}}"#)
        .await;
    h.rt.erase("ann").await.expect("erase");
    let before = records_about(&h, "ann");

    // when a link in an email she got before is followed, and a bounce and a complaint come
    h.rt.unsubscribe("ann", Channel::Email)
        .await
        .expect("unsubscribe");
    h.rt.suppress("ann", Channel::Email, "bounce")
        .await
        .expect("bounce");
    h.rt.suppress("ann", Channel::Sms, "complaint")
        .await
        .expect("complaint");

    // then her mark is untouched: still bare, still expiring (an opt-out of no one is kept for
    // no one)
    let left = records_about(&h, "ann");
    assert_eq!(left.len(), 1, "{left:?}");
    let p: waymark::profile::Profile = left[0].parse().expect("a profile");
    assert!(p.is_erasure_mark(), "{p:?}");
    assert!(left[0].expires.is_some(), "{left:?}");
    assert_eq!(left[0].version, before[0].version, "{left:?}");

    // when her mark has expired, and links in emails she got before are followed (a channel's
    // and a topic's)
    mark_expires(&h, "ann").await;
    h.rt.unsubscribe("ann", Channel::Email)
        .await
        .expect("unsubscribe");
    h.rt.unsubscribe_topic("ann", "newsletter")
        .await
        .expect("unsubscribe from a topic");

    // then she is still no one: no profile is written for her (a new one starts subscribed)
    let left = records_about(&h, "ann");
    assert!(left.is_empty(), "{left:?}");
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());
}

#[tokio::test]
async fn a_visitor_too_large_for_one_request_is_finished_by_the_next_and_her_journey_ends_first() {
    // given bob, who as a visitor sent more events than one request deletes, then logged in,
    // and is in the middle of a journey (its second email two hours away)
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    let mut lines: Vec<String> = (0..1_100)
        .map(|i| {
            format!(
                r#"{{"at":"2026-12-01T10:00:00Z","type":"track","anonymousId":"v-bob","event":"e","messageId":"m{i}"}}"#
            )
        })
        .collect();
    lines.push(r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"bob","anonymousId":"v-bob","messageId":"i1","traits":{"email":"bob@example.com"}}"#.into());
    lines.push(r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"bob","event":"cart_abandoned","messageId":"c1"}"#.into());
    h.play(&lines.join("\n")).await;
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());

    // when he is erased
    let first = h.rt.erase("bob").await.expect("erase");

    // then the first request stops at its bound in the visitor's partition, his journey
    // already ended: nothing more goes out before the next request
    assert!(first.remaining, "{first:?}");
    assert_eq!(first.enrollments, 1, "{first:?}");
    // and his profile is the mark already, naming only the visitor left for the next request
    let mark = mark_of(&h, "bob");
    assert!(mark.is_erasure_mark(), "{mark:?}");
    assert_eq!(mark.erasure_left.visitors, ["v-bob"], "{mark:?}");
    assert!(h.rt.user("bob").await.expect("user").profile.is_none());
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());

    // when the erasure is asked again, then it finishes the visitor's partition too
    let second = h.rt.erase("bob").await.expect("erase again");
    assert!(!second.remaining, "{second:?}");
    let mut keys: Vec<String> = records_about(&h, "bob")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    keys.sort();
    assert_eq!(keys, ["U#anon:v-bob/P", "U#bob/P"]);
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
}

/// A push provider that gives each device a handle, as SNS an endpoint (`endpoint/{token}`),
/// and keeps the handles it was told to delete; each delete answers the next outcome queued
/// (none queued: deleted).
/// Each message sent is kept (its user, step and channel); records set to land on the next
/// delete are written to the store just after it (another worker's writes meanwhile); a mark
/// set to land on the next send is written in place of its user's profile, her enrollments
/// deleted, as the provider takes it (an erasure running meanwhile).
#[derive(Default)]
struct PushProvider {
    deleted: Mutex<Vec<String>>,
    outcomes: Mutex<VecDeque<Result<(), SendError>>>,
    sent: Mutex<Vec<String>>,
    land_on_delete: Mutex<Option<(waymark::store::MemoryStore, Vec<Record>)>>,
    erase_on_send: Mutex<Option<(waymark::store::MemoryStore, Record)>>,
}

impl PushProvider {
    fn deleted(&self) -> Vec<String> {
        self.deleted.lock().expect("deleted").clone()
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().expect("sent").clone()
    }

    fn answer_next(&self, outcome: Result<(), SendError>) {
        self.outcomes.lock().expect("outcomes").push_back(outcome);
    }
}

#[async_trait]
impl Sender for PushProvider {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let line = format!(
            "{} {} {}",
            message.user_id,
            message.step,
            message.channel.as_str()
        );
        self.sent.lock().expect("sent").push(line);
        let erasure = self.erase_on_send.lock().expect("erasure").take();
        if let Some((store, mark)) = erasure {
            use waymark::store::{Expect, Store};
            for r in store.dump() {
                if r.key.pk == mark.key.pk && r.key.sk.starts_with("E#") {
                    store.delete(&r.key, Expect::Any).await.expect("deleted");
                }
            }
            store.put(&mark, Expect::Any).await.expect("marked");
        }
        Ok(Receipt::default())
    }

    async fn register(&self, device: &Device) -> Result<Option<String>, SendError> {
        Ok(Some(format!("endpoint/{}", device.token)))
    }

    async fn unregister(&self, device: &Device) -> Result<(), SendError> {
        let outcome = self
            .outcomes
            .lock()
            .expect("outcomes")
            .pop_front()
            .unwrap_or(Ok(()));
        if outcome.is_ok() {
            let endpoint = device.endpoint.clone().unwrap_or_default();
            self.deleted.lock().expect("deleted").push(endpoint);
        }
        let landing = self.land_on_delete.lock().expect("landing").take();
        if let Some((store, records)) = landing {
            use waymark::store::{Expect, Store};
            for r in records {
                store.put(&r, Expect::Any).await.expect("landed");
            }
        }
        outcome
    }
}

/// The push device claim of `token` (its record in a `D#` partition).
fn claim_of(h: &Harness, token: &str) -> Option<Record> {
    h.store
        .dump()
        .into_iter()
        .find(|r| r.key.pk.starts_with("D#") && r.key.sk == format!("T#{token}").as_str())
}

/// Her profile's stored devices' tokens.
fn devices_of(h: &Harness, user: &str) -> Vec<String> {
    h.store
        .dump()
        .into_iter()
        .find(|r| r.key.pk == format!("U#{user}").as_str() && r.key.sk == "P")
        .and_then(|r| r.parse::<waymark::profile::Profile>().ok())
        .map(|p| p.devices.into_iter().map(|d| d.token).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn her_push_endpoints_are_deleted_with_her_but_not_one_another_user_holds() {
    // given ann, who used the app as a visitor on her iPhone, then logged in with her Android
    // phone and a tablet; and bob, with his own phone
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:00:00Z","type":"screen","anonymousId":"v-ann","name":"Home","messageId":"s1","context":{"device":{"type":"ios","token":"t-visit"}}}"#,
        r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","anonymousId":"v-ann","messageId":"i1","traits":{"email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t-ann"},{"platform":"fcm","token":"t-tablet"}]}}"#,
        r#"{"at":"2026-12-01T09:02:00Z","type":"identify","userId":"bob","messageId":"i2","traits":{"push_tokens":[{"platform":"fcm","token":"t-bob"}]}}"#,
    ]))
    .await;
    assert_eq!(devices_of(&h, "ann"), ["t-ann", "t-tablet", "t-visit"]);
    // and bob logs in on her tablet just as her erasure begins: his claim of it lands as her
    // profile is marked, so the profile the erasure goes by still lists it
    let claim = claim_of(&h, "t-tablet").expect("the tablet is claimed");
    let bobs = Record::of(
        claim.key.clone(),
        claim.version + 1,
        serde_json::json!({"user": "bob", "at": "2026-12-01T09:03:00Z"}),
    );
    *faulty.land_before_write_of.lock().expect("landing") = Some(("P".into(), vec![bobs]));

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then the endpoints of her phone and of the iPhone she used as a visitor are deleted, and
    // with them their claims; the tablet's, bob's now, and bob's phone's are not
    let mut deleted = provider.deleted();
    deleted.sort();
    assert_eq!(deleted, ["endpoint/t-ann", "endpoint/t-visit"]);
    assert_eq!(erased.endpoints, 2, "{erased:?}");
    assert_eq!((erased.endpoints_left, erased.endpoints_refused), (0, 0));
    assert!(!erased.remaining, "{erased:?}");
    assert!(claim_of(&h, "t-ann").is_none() && claim_of(&h, "t-visit").is_none());
    let tablet = claim_of(&h, "t-tablet").expect("bob's claim of the tablet");
    assert!(
        String::from_utf8_lossy(&tablet.body.json().expect("json")).contains("bob"),
        "{tablet:?}"
    );
    assert!(claim_of(&h, "t-bob").is_some());
    assert_eq!(devices_of(&h, "bob"), ["t-bob"]);

    // when the erasure is asked again, then there is no endpoint left to delete
    let again = h.rt.erase("ann").await.expect("erase again");
    assert_eq!(again, waymark::erase::Erasure::default());
    assert_eq!(provider.deleted().len(), 2);
}

#[tokio::test]
async fn a_push_endpoint_the_provider_could_not_delete_now_is_deleted_by_the_next_request() {
    // given ann with a phone, in the middle of a journey, and SNS throttling the first delete
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#,
        r#"{"at":"2026-12-01T09:02:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c1"}"#,
    ]))
    .await;
    provider.answer_next(Err(SendError::Retryable(
        "SNS DeleteEndpoint: Throttling".into(),
    )));

    // when she is erased
    let first = h.rt.erase("ann").await.expect("erase");

    // then her journey has ended and her records are gone, her profile is the mark, but the
    // endpoint is left, named by the mark (nothing else of hers) and her claim: the request
    // says to come again
    assert_eq!(first.enrollments, 1, "{first:?}");
    assert_eq!((first.endpoints, first.endpoints_left), (0, 1), "{first:?}");
    assert!(first.remaining, "{first:?}");
    let mark = mark_of(&h, "ann");
    assert!(mark.is_erasure_mark(), "{mark:?}");
    assert_eq!(endpoints_left_on(&mark), ["endpoint/t-ann"]);
    assert!(claim_of(&h, "t-ann").is_some());
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .filter(|r| r.key.pk.starts_with("U#"))
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);

    // when the same request comes again, then it deletes the endpoint and finishes
    let second = h.rt.erase("ann").await.expect("erase again");
    assert_eq!(
        (second.endpoints, second.endpoints_left),
        (1, 0),
        "{second:?}"
    );
    assert!(!second.remaining, "{second:?}");
    assert_eq!(provider.deleted(), ["endpoint/t-ann"]);
    assert!(claim_of(&h, "t-ann").is_none());
    let left = records_about(&h, "ann");
    assert_eq!(left.len(), 1, "{left:?}");
    let p: waymark::profile::Profile = left[0].parse().expect("a profile");
    assert_eq!(
        p,
        waymark::profile::Profile::erased("ann", p.erased_at.expect("erased"))
    );
}

/// Her profile's record as stored (her mark, after an erasure).
fn mark_of(h: &Harness, user: &str) -> waymark::profile::Profile {
    h.store
        .dump()
        .into_iter()
        .find(|r| r.key.pk == format!("U#{user}").as_str() && r.key.sk == "P")
        .and_then(|r| r.parse().ok())
        .expect("her profile's record")
}

/// The endpoints an erasure left on her mark for the next request.
fn endpoints_left_on(p: &waymark::profile::Profile) -> Vec<String> {
    p.erasure_left
        .endpoints
        .iter()
        .filter_map(|d| d.endpoint.clone())
        .collect()
}

#[tokio::test]
async fn while_a_push_endpoint_waits_for_the_next_request_she_is_erased_all_the_same() {
    // given ann with an email and a phone, in the middle of a journey (its first email sent),
    // an event of hers received now still on the queue, and SNS throttling the first delete
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#,
        r#"{"at":"2026-12-01T09:02:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c1"}"#,
    ]))
    .await;
    assert_eq!(provider.sent(), ["ann first email"]);
    let queued = event_now(
        &h,
        Call::Track,
        serde_json::json!({"userId": "ann", "event": "cart_abandoned", "messageId": "c2"}),
    );
    h.queue
        .send(
            QueueName::Events,
            &[Outbound {
                message: Message::Event(Arc::new(queued)),
                delay_secs: 30,
            }],
        )
        .await
        .expect("queue");
    provider.answer_next(Err(SendError::Retryable(
        "SNS DeleteEndpoint: Throttling".into(),
    )));

    // when she is erased, and the answer is the 202 "send the same DELETE again"
    let first = h.rt.erase("ann").await.expect("erase");
    assert!(first.remaining && first.endpoints_left == 1, "{first:?}");

    // then her profile is the mark already, and she is no one (the API's 404)
    let mark = mark_of(&h, "ann");
    assert!(mark.is_erasure_mark(), "{mark:?}");
    assert!(
        mark.traits.is_empty() && mark.devices.is_empty(),
        "{mark:?}"
    );
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());

    // when the queued event arrives and the journey's wait would have ended
    h.advance_to(at("2026-12-01T12:00:00Z")).await;

    // then nothing of it was applied, nothing more went out, and she is still no one
    assert_eq!(provider.sent(), ["ann first email"]);
    assert!(mark_of(&h, "ann").is_erasure_mark());
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());

    // when she sends an event after the erasure, before the erasure is asked again
    h.play(r#"{"at":"2026-12-01T12:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c3"}"#)
        .await;

    // then it makes a new profile that knows nothing of before: no address, no device, and
    // nothing goes out to her old ones
    let view = h.rt.user("ann").await.expect("user");
    let p = view.profile.expect("a new profile");
    assert!(p.traits.is_empty() && p.devices.is_empty(), "{p:?}");
    assert!(p.erasure_left.is_empty(), "not shown: {p:?}");
    h.advance_to(at("2026-12-01T15:00:00Z")).await;
    assert_eq!(provider.sent(), ["ann first email"]);

    // when the erasure is asked again, then it deletes the endpoint the mark kept, and finishes
    let second = h.rt.erase("ann").await.expect("erase again");
    assert_eq!(
        (second.endpoints, second.endpoints_left),
        (1, 0),
        "{second:?}"
    );
    assert!(!second.remaining, "{second:?}");
    assert_eq!(provider.deleted(), ["endpoint/t-ann"]);
    assert!(claim_of(&h, "t-ann").is_none());
    let mark = mark_of(&h, "ann");
    assert_eq!(
        mark,
        waymark::profile::Profile::erased("ann", mark.erased_at.expect("erased"))
    );
}

#[tokio::test]
async fn a_device_another_user_registers_as_her_erasure_deletes_its_endpoint_is_registered_again() {
    // given ann with a phone, whose endpoint SNS deletes just as bob logs in on it: his claim
    // and his profile (naming the same endpoint: SNS gives one token one) land meanwhile
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.play(r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#)
        .await;
    let claim = claim_of(&h, "t-ann").expect("her claim");
    let bobs_claim = Record::of(
        claim.key.clone(),
        claim.version + 1,
        serde_json::json!({"user": "bob", "at": "2026-12-01T09:02:00Z"}),
    );
    let bobs_profile = Record::of(
        waymark::store::Key::new("U#bob", "P"),
        1,
        serde_json::json!({"user_id": "bob", "devices": [{"platform": "fcm", "token": "t-ann", "endpoint": "endpoint/t-ann", "registered_at": "2026-12-01T09:02:00Z"}]}),
    );
    *provider.land_on_delete.lock().expect("landing") =
        Some((faulty.inner.clone(), vec![bobs_claim, bobs_profile]));

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then the race is counted, the claim is bob's, and his device forgets the dead endpoint
    assert_eq!(erased.endpoints_taken_over, 1, "{erased:?}");
    assert_eq!(erased.claims, 0, "{erased:?}");
    let tablet = claim_of(&h, "t-ann").expect("bob's claim");
    assert!(
        String::from_utf8_lossy(&tablet.body.json().expect("json")).contains("bob"),
        "{tablet:?}"
    );
    let bob = mark_of(&h, "bob");
    assert_eq!(bob.devices.len(), 1, "{bob:?}");
    assert_eq!(bob.devices[0].endpoint, None, "{bob:?}");

    // when bob's app identifies him again, then his device has an endpoint again
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"bob","messageId":"b2","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#)
        .await;
    let bob = mark_of(&h, "bob");
    assert_eq!(
        bob.devices[0].endpoint.as_deref(),
        Some("endpoint/t-ann"),
        "{bob:?}"
    );
}

#[tokio::test]
async fn a_push_endpoint_the_provider_refuses_to_delete_does_not_hold_up_the_erasure() {
    // given ann with a phone whose endpoint SNS will not let this deployment delete
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.play(r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#)
        .await;
    provider.answer_next(Err(SendError::Permanent(
        "SNS DeleteEndpoint: AuthorizationError".into(),
    )));

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then the refusal is counted (and logged for an operator), and the erasure is done
    assert_eq!(erased.endpoints_refused, 1, "{erased:?}");
    assert!(!erased.remaining, "{erased:?}");
    assert!(claim_of(&h, "t-ann").is_none());
    let left = records_about(&h, "ann");
    assert_eq!(left.len(), 1, "{left:?}");
    let p: waymark::profile::Profile = left[0].parse().expect("a profile");
    assert!(p.is_erasure_mark(), "{p:?}");
}

#[tokio::test]
async fn an_identify_applied_as_her_erasure_runs_is_erased_with_her() {
    // given ann with a phone app, whose new tablet identifies her just as the erasure deletes
    // her phone's endpoint: received after the erasure began, it is applied to the profile the
    // erasure marked (a new device, its claim and endpoint, a new phone number and its record)
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.play(r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"push_tokens":[{"platform":"fcm","token":"t-ann"}]}}"#)
        .await;
    let profile = h
        .store
        .dump()
        .into_iter()
        .find(|r| r.key.pk == "U#ann" && r.key.sk == "P")
        .expect("her profile");
    let mut body: serde_json::Value =
        serde_json::from_slice(&profile.body.json().expect("json")).expect("a profile");
    body["erased_at"] = serde_json::json!(h.now());
    body["traits"]["phone"] = serde_json::json!("+447700900999");
    body["devices"]
        .as_array_mut()
        .expect("her devices")
        .push(serde_json::json!({"platform": "fcm", "token": "t-new", "endpoint": "endpoint/t-new", "registered_at": "2026-12-01T10:00:00Z"}));
    // (the marked version, and the one the identify wrote on it)
    let landed = Record::of(profile.key.clone(), profile.version + 2, body);
    // (a device claim's key, as this tablet's identify would write it anywhere)
    let scratch = Harness::new("2026-12-01T10:00:00Z");
    scratch
        .play(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","messageId":"i2","traits":{"push_tokens":[{"platform":"fcm","token":"t-new"}]}}"#)
        .await;
    let claim = claim_of(&scratch, "t-new").expect("a claim");
    let phone = Record::of(
        waymark::store::Key::new("N#+447700900999", "U"),
        1,
        serde_json::json!("ann"),
    );
    *provider.land_on_delete.lock().expect("landing") =
        Some((faulty.inner.clone(), vec![landed, claim, phone]));

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then what the identify brought went with her: the tablet's endpoint and claim, and the
    // new number's record; her profile is the mark
    assert!(!erased.remaining, "{erased:?}");
    let mut deleted = provider.deleted();
    deleted.sort();
    assert_eq!(deleted, ["endpoint/t-ann", "endpoint/t-new"]);
    assert!(claim_of(&h, "t-ann").is_none() && claim_of(&h, "t-new").is_none());
    let left = records_about(&h, "ann");
    let keys: Vec<String> = left
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"], "{left:?}");
    assert!(mark_of(&h, "ann").is_erasure_mark());
}

#[tokio::test]
async fn a_step_under_way_as_she_is_erased_does_not_bring_her_back() {
    // given a journey whose first steps email her, put a message in her inbox and update her
    // profile, all in one transition; and ann, whose erasure ends her enrollment and marks her
    // profile while the provider takes the email (the transition committed before it)
    let (h, faulty) = faulty_harness();
    let provider = Arc::new(PushProvider::default());
    let h = h.with(Arc::new(faulty.clone()), provider.clone());
    h.publish(
        r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send:
      email: {subject: "Welcome", text: "Hi"}
  - id: code
    send: {in_app: {title: "Your code", body: "1234"}}
  - id: tag
    update: {set: {welcomed: true}}
  - id: later
    wait: 1d
  - id: again
    send:
      email: {subject: "A day in", text: "Hi again"}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T09:01:00Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com"}}"#)
        .await;
    // (as the step runs: after the event that triggers it was received)
    let erased_at = at("2026-12-01T10:02:00Z");
    let mark = Record::of(
        waymark::store::Key::new("U#ann", "P"),
        // (any version: the erasure's write on the one it read)
        100,
        waymark::profile::Profile::erased_leaving("ann", erased_at, Default::default()),
    )
    .expiring(erased_at + waymark::erase::MARK_KEPT_FOR);
    *provider.erase_on_send.lock().expect("erasure") = Some((faulty.inner.clone(), mark));

    // when she signs up (the email goes out as she is erased)
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s1"}"#)
        .await;
    h.advance_to(at("2026-12-02T12:00:00Z")).await;

    // then her mark stays the mark, expiring, and the transition kept nothing of hers: no
    // timeline record, no inbox item (its rendered body); nothing more went out
    assert_eq!(provider.sent(), ["ann hello email"]);
    let p = mark_of(&h, "ann");
    assert!(p.is_erasure_mark(), "{p:?}");
    let left = records_about(&h, "ann");
    let profile = left
        .iter()
        .find(|r| r.key.pk == "U#ann" && r.key.sk == "P")
        .expect("her mark");
    assert!(profile.expires.is_some(), "{profile:?}");
    let kept: Vec<String> = left
        .iter()
        .filter(|r| r.key.sk.starts_with("T#") || r.key.sk.starts_with("I#"))
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert!(kept.is_empty(), "{kept:?}");
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());
}

/// A provider that, while it takes a message, has the user erased by another worker (an admin's
/// `DELETE` handled at that very moment).
/// With `fails`, the send then fails (the provider throttled it).
#[derive(Default)]
struct ErasingProvider {
    eraser: Mutex<Option<Arc<waymark::runtime::Runtime>>>,
    fails: bool,
    /// What the erasure made at that moment answered.
    erased: Mutex<Vec<Result<(), waymark::runtime::RunError>>>,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Sender for ErasingProvider {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let eraser = self.eraser.lock().expect("eraser").take();
        if let Some(rt) = eraser {
            let answer = rt.erase(&message.user_id).await.map(|_| ());
            self.erased.lock().expect("erased").push(answer);
        }
        if self.fails {
            return Err(SendError::Retryable("throttled".into()));
        }
        let line = format!("{} {}", message.user_id, message.step);
        self.sent.lock().expect("sent").push(line);
        Ok(Receipt::default())
    }
}

/// The erasure made while the send is under way was asked to come again.
fn erasure_waited(provider: &ErasingProvider) {
    let erased = provider.erased.lock().expect("erased");
    assert!(
        matches!(erased.as_slice(), [Err(waymark::runtime::RunError::Retry(why))] if why == waymark::erase::SEND_UNDER_WAY),
        "{erased:?}"
    );
}

/// Another worker over `store`, on the harness's queue and clock.
fn another_worker(h: &Harness, store: Arc<dyn waymark::store::Store>) -> waymark::runtime::Runtime {
    let (sender, _) = waymark::outbox::OutboxSender::memory(h.clock.clone());
    waymark::runtime::Runtime::new(
        store,
        Arc::new(h.queue.clone()),
        Arc::new(sender),
        h.clock.clone(),
        std::time::Duration::from_secs(0),
        waymark::runtime::Config::default(),
    )
}

#[tokio::test]
async fn a_send_going_out_as_she_is_erased_counts_as_sent_not_as_skipped() {
    // given ann, whose erasure (another worker's) runs while the provider takes her first
    // email: its claim in the send ledger was taken, and it goes out
    let h = Harness::new("2026-12-01T10:00:00Z");
    let provider = Arc::new(ErasingProvider::default());
    let eraser = Arc::new(another_worker(&h, Arc::new(h.store.clone())));
    *provider.eraser.lock().expect("eraser") = Some(eraser);
    let store = h.store.clone();
    let h = h.with(Arc::new(store), provider.clone());
    h.publish(NUDGE).await;

    // when she enters the journey (the email goes out as she is erased), and the stats fold
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    // (the erasure asked during the send is asked to come again, and is, after it)
    erasure_waited(&provider);
    h.rt.erase("ann").await.expect("erase");
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    h.rt.fold_stats().await.expect("fold");

    // then the email that went out is counted as sent, not as skipped for her erasure; her
    // entry and her end are counted once, and nothing more went out
    assert_eq!(*provider.sent.lock().expect("sent"), ["ann first"]);
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "step.first.sent.email"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.skipped.erased"), 0, "{s:?}");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    // and the record its worker wrote after her erasure goes with the next request
    h.rt.erase("ann").await.expect("erase again");
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);
    h.rt.fold_stats().await.expect("fold");
    assert_eq!(h.rt.stats("cart_nudge").await.expect("stats"), s);
}

/// The send under way as she is erased fails (the provider throttled it): its worker writes
/// nothing (its retry finds her erased), so the erasure, asked to come again, records the
/// transition once the claim has lapsed, the email skipped (`erased`): her entry, her end and
/// her wait are counted, none twice. (Before, the erasure left the record to the worker and
/// deleted the claim: the entry was never counted, the wait's `waiting` went to -1.)
#[tokio::test]
async fn a_send_that_fails_as_she_is_erased_is_counted_skipped_once_the_erasure_comes_again() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    let provider = Arc::new(ErasingProvider {
        fails: true,
        ..ErasingProvider::default()
    });
    let eraser = Arc::new(another_worker(&h, Arc::new(h.store.clone())));
    *provider.eraser.lock().expect("eraser") = Some(eraser);
    let store = h.store.clone();
    let h = h.with(Arc::new(store), provider.clone());
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    erasure_waited(&provider);
    // (answered before anything of hers changed: her profile, her enrollment and her wait are
    // there as they were)
    let view = h.rt.user("ann").await.expect("user");
    assert!(
        view.profile
            .as_ref()
            .is_some_and(|p| p.traits.get("email").is_some() && p.erased_at.is_none()),
        "{:?}",
        view.profile
    );
    assert!(view.enrollments.iter().any(|e| e.is_active()));
    // the claim lapses (2 minutes); then the erasure again
    h.advance_to(at("2026-12-01T10:10:00Z")).await;
    h.rt.erase("ann").await.expect("erase");
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    h.rt.fold_stats().await.expect("fold");
    assert!(provider.sent.lock().expect("sent").is_empty());
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    assert_eq!(count(&s, "step.first.skipped.erased"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.sent.email"), 0, "{s:?}");
    h.rt.erase("ann").await.expect("erase again");
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    // (her mark, and the ledger's record of the email her erasure skipped, kept as long as the
    // mark for a worker that would claim it late)
    assert_eq!(keys, ["U#ann/L#cart_nudge:ann:1#first#1", "U#ann/P"]);
}

/// What another worker does right after the first write of an enrollment record: handle a
/// message, or erase a user.
enum Then {
    Handle(Arc<waymark::runtime::Runtime>, Message),
    Erase(Arc<waymark::runtime::Runtime>, &'static str),
}

/// Has another worker handle a message (or erase a user) right after the first write of an
/// enrollment record (`E#`) goes through a store; with `on_read`, right after the first read of
/// a user's enrollments instead (before the worker commits what it read them for).
struct HandleAfterEnrollmentWrite {
    then: Mutex<Option<Then>>,
    on_read: bool,
}

impl HandleAfterEnrollmentWrite {
    async fn then(&self) {
        let then = self.then.lock().expect("then").take();
        match then {
            Some(Then::Handle(rt, message)) => {
                rt.handle(&message).await.expect("handled");
            }
            Some(Then::Erase(rt, user)) => {
                rt.erase(user).await.expect("erased");
            }
            None => {}
        }
    }
}

#[async_trait]
impl Hooks for HandleAfterEnrollmentWrite {
    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        inner.put(record, expect).await?;
        if record.key.sk.starts_with("E#") && !self.on_read {
            self.then().await;
        }
        Ok(())
    }
    async fn query(
        &self,
        inner: &MemoryStore,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<Record>, StoreError> {
        let read = inner.query(pk, prefix).await?;
        if prefix == "E#" && self.on_read {
            self.then().await;
        }
        Ok(read)
    }
    async fn partitions_between(
        &self,
        inner: &MemoryStore,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        inner.partitions_between(from, to).await
    }
}

#[tokio::test]
async fn a_worker_that_picks_up_her_ended_enrollment_first_says_she_was_erased() {
    // given ann in a journey whose first email could not go out yet (the send ledger was
    // unavailable: her enrollment still owes it, and its message is retried later)
    let (h, faulty) = faulty_harness();
    h.publish(NUDGE).await;
    *faulty.fail_write_of.lock().expect("fail") = Some("L#".into());
    h.play(&script(&[
        r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    let e: waymark::enrollment::Enrollment = h
        .store
        .dump()
        .into_iter()
        .find(|r| r.key.pk == "U#ann" && r.key.sk.starts_with("E#"))
        .expect("her enrollment")
        .parse()
        .expect("an enrollment");
    assert!(!e.outbox.is_empty(), "{e:?}");
    let pending = e.pending.as_ref().expect("waiting");
    let wake = Message::Wake {
        user_id: "ann".into(),
        journey: e.record().into(),
        enrollment: e.id.clone(),
        seq: pending.seq,
        at: pending.at,
    };

    // when she is erased as her wait ends, and another worker (its wake-up on the queue
    // already) reads her enrollment right after the erasure ended it, before the erasure goes on
    h.clock.set(pending.at);
    let store = Arc::new(Hooked::new(
        h.store.clone(),
        HandleAfterEnrollmentWrite {
            then: Mutex::new(Some(Then::Handle(
                Arc::new(another_worker(&h, Arc::new(h.store.clone()))),
                wake,
            ))),
            on_read: false,
        },
    ));
    let eraser = another_worker(&h, store);
    eraser.erase("ann").await.expect("erase");
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    h.rt.fold_stats().await.expect("fold");

    // then the email that never went out is counted skipped because she was erased, not as
    // cancelled by an exit event, and nothing went out
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "step.first.skipped.erased"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.skipped.exited"), 0, "{s:?}");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
}
/// Has her erased before a store's next write of an event's dedup marker (`D#`): an event
/// applied as her erasure runs, whose marker lands after the erasure cleared her partition.
struct EraseBeforeMarker {
    eraser: Mutex<Option<Arc<waymark::runtime::Runtime>>>,
}

#[async_trait]
impl Hooks for EraseBeforeMarker {
    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        if record.key.sk.starts_with("D#") {
            let eraser = self.eraser.lock().expect("eraser").take();
            if let Some(rt) = eraser {
                rt.erase("ann").await.expect("erased");
            }
        }
        inner.put(record, expect).await
    }
}

#[tokio::test]
async fn the_dedup_marker_of_an_event_applied_as_she_is_erased_is_kept_until_it_expires() {
    // given ann, known, and a track of hers being applied by a worker
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(NUDGE).await;
    h.play(r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"m1","traits":{"email":"ann@example.com"}}"#)
        .await;
    let track = event_now(
        &h,
        Call::Track,
        serde_json::json!({"userId": "ann", "event": "page_viewed", "messageId": "m2"}),
    );

    // when her erasure runs between the worker's reading of her profile and its writing of
    // the event's dedup marker
    let store = Arc::new(Hooked::new(
        h.store.clone(),
        EraseBeforeMarker {
            eraser: Mutex::new(Some(Arc::new(another_worker(
                &h,
                Arc::new(h.store.clone()),
            )))),
        },
    ));
    let worker = another_worker(&h, store.clone());
    worker
        .handle(&Message::Event(Arc::new(track)))
        .await
        .expect("handled");
    assert!(store.eraser.lock().expect("eraser").is_none(), "not erased");

    // then the marker is kept beside her mark (README's list of what the erasure keeps names
    // it): her id and the event's messageId, no trait, expiring as a marker does
    let kept: Vec<Record> = h
        .store
        .query("U#ann", "")
        .await
        .expect("query")
        .into_iter()
        .filter(|r| r.key.sk != "P")
        .collect();
    let keys: Vec<String> = kept.iter().map(|r| r.key.sk.to_string()).collect();
    assert_eq!(keys, ["D#m2"]);
    let body = String::from_utf8_lossy(&kept[0].body.json().expect("json")).to_string();
    assert!(!body.contains("ann@example.com"), "{body}");
    let expires = kept[0].expires.expect("an expiry");
    let fifteen_days = h.now() + jiff::SignedDuration::from_hours(24 * 15);
    assert!(expires <= fifteen_days.as_second() + 1, "{expires}");

    // and her DELETE sent again clears it
    h.rt.erase("ann").await.expect("erase again");
    let keys: Vec<String> = records_about(&h, "ann")
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    assert_eq!(keys, ["U#ann/P"]);
}

/// The login queued for `user` (with the visitor `anonymous_id`), received now.
fn login_now(h: &Harness, user: &str, anonymous_id: &str, id: &str) -> Message {
    Message::Event(Arc::new(event_now(
        h,
        Call::Identify,
        serde_json::json!({"userId": user, "anonymousId": anonymous_id, "messageId": id, "traits": {"first_name": "Ann"}}),
    )))
}

/// The keys of the records that name `user`, sorted.
fn keys_about(h: &Harness, user: &str) -> Vec<String> {
    let mut keys: Vec<String> = records_about(h, user)
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_visitor_her_login_received_before_her_erasure_names_is_erased_with_her() {
    // given a visitor with an email, in the middle of a journey (its first email sent, its
    // second two hours away), and ann, who has no link to the visitor yet
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"a1","traits":{"first_name":"Ann"}}"#,
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","anonymousId":"v-ann","messageId":"m1","traits":{"email":"ann-visitor@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","anonymousId":"v-ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
    // and her login as that visitor, received now, still on the queue as her erasure runs
    let login = login_now(&h, "ann", "v-ann", "l1");
    h.queue
        .send(
            QueueName::Events,
            &[Outbound {
                message: login.clone(),
                delay_secs: 30,
            }],
        )
        .await
        .expect("queue");

    // when she is erased (her profile does not name the visitor: not found), and the login
    // arrives after, and the visitor's wait would have ended
    let erased = h.rt.erase("ann").await.expect("erase");
    assert_eq!(erased.anonymous, 0, "{erased:?}");
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    h.rt.fold_stats().await.expect("fold");

    // then the login is dropped, and the visitor it named as hers is erased too: her second
    // email never goes out, her profile is a mark (no email kept), and nothing else of her is
    // left; her enrollment is counted as ended where it was
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
    let visitor = mark_of(&h, "anon:v-ann");
    assert!(visitor.is_erasure_mark(), "{visitor:?}");
    assert!(h
        .rt
        .user("anon:v-ann")
        .await
        .expect("user")
        .profile
        .is_none());
    assert!(h.rt.user("ann").await.expect("user").profile.is_none());
    assert_eq!(keys_about(&h, "ann"), ["U#ann/P", "U#anon:v-ann/P"]);
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "entered"), 1, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    assert_eq!(count(&s, "step.first.sent.email"), 1, "{s:?}");

    // when the login comes again (a redelivery)
    h.rt.handle(&login).await.expect("handled again");
    h.rt.fold_stats().await.expect("fold");

    // then nothing changes, and nothing is counted twice
    assert_eq!(keys_about(&h, "ann"), ["U#ann/P", "U#anon:v-ann/P"]);
    assert!(mark_of(&h, "anon:v-ann").is_erasure_mark());
    assert_eq!(h.rt.stats("cart_nudge").await.expect("stats"), s);
    assert_eq!(h.outbox().len(), 1, "{:?}", h.outbox());
}

#[tokio::test]
async fn a_login_sent_after_her_erasure_merges_the_visitor_into_her_new_profile() {
    // given a visitor with an email, in the middle of a journey, and ann, erased before she
    // logs in as that visitor
    let h = Harness::new("2026-12-01T09:00:00Z");
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"a1","traits":{"first_name":"Ann"}}"#,
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","anonymousId":"v-ann","messageId":"m1","traits":{"email":"ann-visitor@example.com"}}"#,
        r#"{"at":"2026-12-01T10:01:00Z","type":"track","anonymousId":"v-ann","event":"cart_abandoned","messageId":"m2"}"#,
    ]))
    .await;
    h.rt.erase("ann").await.expect("erase");

    // when she logs in as the visitor a minute after her erasure
    h.play(r#"{"at":"2026-12-01T10:02:00Z","type":"identify","userId":"ann","anonymousId":"v-ann","messageId":"l1","traits":{"first_name":"Ann"}}"#)
        .await;
    h.advance_to(at("2026-12-01T13:00:00Z")).await;

    // then the visitor is merged into her new profile as any visitor at a login, and her
    // journey goes on as hers
    let p =
        h.rt.user("ann")
            .await
            .expect("user")
            .profile
            .expect("a new profile");
    assert_eq!(p.traits["email"], "ann-visitor@example.com", "{p:?}");
    assert_eq!(h.outbox().len(), 2, "{:?}", h.outbox());
    assert!(
        h.outbox()[1].contains(" ann email second"),
        "{:?}",
        h.outbox()
    );
}

/// A provider that, while it takes the first message, has another worker handle `then` (a
/// message queued meanwhile), keeping what that answered.
#[derive(Default)]
struct HandlingProvider {
    then: Mutex<Option<(Arc<waymark::runtime::Runtime>, Message)>>,
    answered: Mutex<Vec<Result<waymark::runtime::Handled, waymark::runtime::RunError>>>,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Sender for HandlingProvider {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let then = self.then.lock().expect("then").take();
        if let Some((rt, m)) = then {
            let answer = rt.handle(&m).await;
            self.answered.lock().expect("answered").push(answer);
        }
        let line = format!("{} {}", message.user_id, message.step);
        self.sent.lock().expect("sent").push(line);
        Ok(Receipt::default())
    }
}

#[tokio::test]
async fn a_login_that_names_a_visitor_whose_email_is_going_out_waits_for_it() {
    // given a visitor with an email, and ann, with no link to her yet; her login as that
    // visitor is received, and queued behind others, when she is erased
    let h = Harness::new("2026-12-01T09:00:00Z");
    let provider = Arc::new(HandlingProvider::default());
    let store = h.store.clone();
    let worker = Arc::new(another_worker(&h, Arc::new(h.store.clone())));
    let h = h.with(Arc::new(store), provider.clone());
    h.publish(NUDGE).await;
    h.play(&script(&[
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","messageId":"a1","traits":{"first_name":"Ann"}}"#,
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","anonymousId":"v-ann","messageId":"m1","traits":{"email":"ann-visitor@example.com"}}"#,
    ]))
    .await;
    let login = login_now(&h, "ann", "v-ann", "l1");
    h.rt.erase("ann").await.expect("erase");
    *provider.then.lock().expect("then") = Some((worker, login.clone()));

    // when the visitor abandons a cart, and another worker handles the login while the
    // visitor's first email is going out
    h.play(r#"{"at":"2026-12-01T10:01:00Z","type":"track","anonymousId":"v-ann","event":"cart_abandoned","messageId":"m2"}"#)
        .await;

    // then the login's handling is to be tried again, nothing of the visitor's changed
    let answered = provider.answered.lock().expect("answered").clone();
    assert!(
        matches!(
            answered.as_slice(),
            [Ok(waymark::runtime::Handled::Retried { attempt: 1, .. })]
        ),
        "{answered:?}"
    );
    let view = h.rt.user("anon:v-ann").await.expect("user");
    assert!(
        view.profile
            .as_ref()
            .is_some_and(|p| p.traits.get("email").is_some() && p.erased_at.is_none()),
        "{:?}",
        view.profile
    );

    // when it is (minutes later, the email gone out), and the visitor's wait would have ended
    h.advance_to(at("2026-12-01T13:00:00Z")).await;
    h.rt.fold_stats().await.expect("fold");

    // then the visitor is erased: her first email counted as sent, her second never sent,
    // her enrollment counted as ended
    assert_eq!(*provider.sent.lock().expect("sent"), ["anon:v-ann first"]);
    assert!(mark_of(&h, "anon:v-ann").is_erasure_mark());
    let s = h.rt.stats("cart_nudge").await.expect("stats");
    assert_eq!(count(&s, "step.first.sent.email"), 1, "{s:?}");
    assert_eq!(count(&s, "step.first.skipped.erased"), 0, "{s:?}");
    assert_eq!(count(&s, "exited"), 1, "{s:?}");
    assert_eq!(count(&s, "step.wait.waiting"), 0, "{s:?}");
    assert_eq!(keys_about(&h, "ann"), ["U#ann/P", "U#anon:v-ann/P"]);
}

const WELCOME: &str = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send:
      email: {subject: "Welcome", text: "Hi"}
  - id: code
    send: {in_app: {title: "Your code", body: "1234"}}
  - id: later
    wait: 1d
  - id: again
    send:
      email: {subject: "A day in", text: "Hi again"}
"#;

/// Her records' keys, `pk/sk`, in the store's order.
fn keys_of(h: &Harness, user: &str) -> Vec<String> {
    records_about(h, user)
        .iter()
        .map(|r| format!("{}/{}", r.key.pk, r.key.sk))
        .collect()
}

/// `WELCOME` published and ann identified, then a worker over a store that has another worker
/// erase her right after this one writes her enrollment (`on_read`: right after it reads her
/// enrollments), its outbox in memory; she signs up, and a day and more goes by.
async fn ann_signs_up_as_another_worker_erases_her(
    on_read: bool,
) -> (Harness, Arc<Mutex<Vec<waymark::outbox::OutboxLine>>>) {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com"}}"#)
        .await;
    let store = Arc::new(Hooked::new(
        h.store.clone(),
        HandleAfterEnrollmentWrite {
            then: Mutex::new(Some(Then::Erase(
                Arc::new(another_worker(&h, Arc::new(h.store.clone()))),
                "ann",
            ))),
            on_read,
        },
    ));
    let (sender, lines) = waymark::outbox::OutboxSender::memory(h.clock.clone());
    let h = h.with(store, Arc::new(sender));
    h.play(r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s1"}"#)
        .await;
    h.advance_to(at("2026-12-02T12:00:00Z")).await;
    (h, lines)
}

/// A transition committed just before her erasure and performed after it (its worker stalled
/// between its commit and its sends' claims while the erasure ended her enrollment, recorded
/// its sends skipped, `erased`, and cleared her partition) sends nothing: the ledger's records
/// of the sends the erasure skipped are kept (not her data: no address, no content), and its
/// claims find them. They expire with her mark, and a second DELETE keeps them too. (Before,
/// they went with her partition: the claims found none, and the email and the in-app message
/// went out after her erasure.)
#[tokio::test]
async fn a_transition_committed_as_she_is_erased_sends_nothing_after() {
    // given a journey whose first steps email her and put a message in her inbox, and a worker
    // over a store that has another worker erase her right after it commits her entry (before
    // it claims its sends); when she signs up, and a day and more goes by
    let (h, lines) = ann_signs_up_as_another_worker_erases_her(false).await;

    // then nothing went out, and nothing is in her inbox
    let sent = lines.lock().expect("lines").clone();
    assert!(sent.is_empty(), "{sent:?}");
    let keys = keys_of(&h, "ann");
    assert!(!keys.iter().any(|k| k.contains("/I#")), "{keys:?}");
    // and once the next DELETE clears what the worker wrote after (its timeline record), her
    // mark is left, and the ledger's two records of the sends her erasure skipped
    h.rt.erase("ann").await.expect("erase again");
    let left = records_about(&h, "ann");
    let keys = keys_of(&h, "ann");
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[2], "U#ann/P", "{keys:?}");
    assert!(
        keys[..2].iter().all(|k| k.starts_with("U#ann/L#")),
        "{keys:?}"
    );
    let mark = left.iter().find(|r| r.key.sk == "P").expect("her mark");
    assert!(mark
        .parse::<waymark::profile::Profile>()
        .expect("a profile")
        .is_erasure_mark());
    for r in left.iter().filter(|r| r.key.sk.starts_with("L#")) {
        // each holds nothing of hers (no address, no content) but that her erasure skipped it
        let body = r.body.json().expect("json");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a ledger record");
        assert_eq!(
            body,
            serde_json::json!({
                "state": "done",
                "outcome": {
                    "outcome": "skipped",
                    "reason": "erased",
                    "detail": "the user was erased before the message could go out",
                },
            }),
            "{r:?}"
        );
        // and goes with her mark (15 days after the erasure, as the mark)
        let expires = r.expires.expect("an expiry");
        let mark_expires = mark.expires.expect("the mark's expiry");
        assert!(expires <= mark_expires, "{expires} {mark_expires}");
        assert_eq!(
            expires,
            (at("2026-12-01T10:01:00Z") + waymark::erase::MARK_KEPT_FOR).as_second()
        );
    }
}

/// The ledger's records her erasure kept are read past, however many: the rest of her
/// partition goes all the same, and so does a record of a send skipped `erased` that an earlier
/// build kept 400 days (it is not kept past her mark).
#[tokio::test]
async fn the_records_kept_for_late_claims_do_not_hold_up_the_rest_of_her_erasure() {
    use waymark::runtime::{Ledger, Outcome};
    use waymark::store::{Expect, Key, Store};
    // given ann, with 150 records of sends an erasure of hers skipped (a request that stopped
    // half-way), one such of an earlier build, and 150 sends that went out
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.play(r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com"}}"#)
        .await;
    let skipped = Ledger::Done {
        outcome: Outcome::Skipped {
            reason: "erased".into(),
            detail: Some("the user was erased before the message could go out".into()),
        },
    };
    let sent = Ledger::Done {
        outcome: Outcome::Sent {
            at: h.now(),
            to: None,
        },
    };
    let put = |sk: String, body: &Ledger, kept_for: jiff::SignedDuration| {
        let record = Record::new(Key::new("U#ann", sk), 1, body)
            .expect("a record")
            .expiring(h.now() + kept_for);
        let store = h.store.clone();
        async move { store.put(&record, Expect::Absent).await.expect("put") }
    };
    for i in 0..150 {
        put(
            format!("L#e{i:03}#a#1"),
            &skipped,
            waymark::erase::MARK_KEPT_FOR,
        )
        .await;
        put(format!("L#e{i:03}#b#1"), &sent, waymark::runtime::KEEP_FOR).await;
    }
    put("L#old#a#1".into(), &skipped, waymark::runtime::KEEP_FOR).await;
    let hers = h
        .store
        .dump()
        .iter()
        .filter(|r| r.key.pk == "U#ann" && r.key.sk != "P")
        .count();

    // when she is erased
    let erased = h.rt.erase("ann").await.expect("erase");

    // then all is gone in one request but her mark and the 150 records kept
    assert!(!erased.remaining, "{erased:?}");
    assert_eq!(erased.records, hers - 150, "{erased:?}");
    let keys = keys_of(&h, "ann");
    assert_eq!(keys.len(), 151, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k == "U#ann/P" || (k.starts_with("U#ann/L#e") && k.ends_with("#a#1"))),
        "{keys:?}"
    );
}

/// A worker that read her profile and enrollments before her erasure marked them, and commits
/// her entry after the erasure ended her enrollments (it never saw this one, and recorded none
/// of its sends), sends nothing: each send's claim is made only while her profile is not
/// sealed (the erasure seals it from its first write on), and a send whose claim finds it
/// sealed is recorded `skipped` (`erased`), as the erasure records those it skips, and counted
/// so. (Before, its claim found no record and the email and the in-app message went out after
/// her erasure.)
#[tokio::test]
async fn an_entry_committed_after_her_erasure_ended_her_enrollments_sends_nothing() {
    // given a journey whose first steps email her and put a message in her inbox, and a worker
    // over a store that has another worker erase her right after it read her enrollments
    // (before it commits her entry); when she signs up, and a day and more goes by
    let (h, lines) = ann_signs_up_as_another_worker_erases_her(true).await;
    h.rt.fold_stats().await.expect("fold");

    // then nothing went out, nothing is in her inbox
    let sent = lines.lock().expect("lines").clone();
    assert!(sent.is_empty(), "{sent:?}");
    let keys = keys_of(&h, "ann");
    assert!(!keys.iter().any(|k| k.contains("/I#")), "{keys:?}");
    // and the entry the erasure never saw was committed after it (the race this closes)
    assert!(keys.iter().any(|k| k.contains("/E#welcome")), "{keys:?}");
    assert!(mark_of(&h, "ann").is_erasure_mark());
    // and its sends are recorded skipped because she was erased, as the erasure records those
    // it skips (kept as long as her mark), and counted so
    let ledger: Vec<Record> = records_about(&h, "ann")
        .into_iter()
        .filter(|r| r.key.sk.starts_with("L#"))
        .collect();
    assert_eq!(ledger.len(), 2, "{keys:?}");
    for r in &ledger {
        let body = r.body.json().expect("json");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a ledger record");
        assert_eq!(body["outcome"]["reason"], "erased", "{r:?}");
        assert_eq!(
            r.expires,
            Some((at("2026-12-01T10:01:00Z") + waymark::erase::MARK_KEPT_FOR).as_second())
        );
    }
    let s = h.rt.stats("welcome").await.expect("stats");
    assert_eq!(count(&s, "step.hello.skipped.erased"), 1, "{s:?}");
    assert_eq!(count(&s, "step.code.skipped.erased"), 1, "{s:?}");
    assert_eq!(count(&s, "step.hello.sent"), 0, "{s:?}");
}

/// A profile made on her mark by an event sent after her erasure is a new one's: its sends go
/// out (the seal is the erasure's, from its first write to its mark, not her new profile's).
#[tokio::test]
async fn a_new_profile_made_after_her_erasure_is_sent_to() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(WELCOME).await;
    h.play(r#"{"at":"2026-12-01T10:00:10Z","type":"identify","userId":"ann","messageId":"i1","traits":{"email":"ann@example.com"}}"#)
        .await;
    h.rt.erase("ann").await.expect("erase");
    assert!(h
        .store
        .dump()
        .iter()
        .any(|r| r.key.pk == "U#ann" && r.key.sk == "P" && r.sealed));

    h.play(&script(&[
        r#"{"at":"2026-12-01T11:00:00Z","type":"identify","userId":"ann","messageId":"i2","traits":{"email":"ann@example.org"}}"#,
        r#"{"at":"2026-12-01T11:01:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s2"}"#,
    ]))
    .await;

    let profile = h
        .store
        .dump()
        .into_iter()
        .find(|r| r.key.pk == "U#ann" && r.key.sk == "P")
        .expect("her new profile");
    assert!(!profile.sealed, "{profile:?}");
    assert_eq!(
        h.outbox(),
        [
            "2026-12-01T11:01:00Z ann email hello: Welcome",
            "2026-12-01T11:01:00Z ann in_app code: Your code"
        ]
    );
}
