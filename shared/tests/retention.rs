//! What the store keeps, and for how long: a transition's timeline record, a send's ledger
//! entry and an in-app message in the inbox expire 400 days after they are written (`runtime::KEEP_FOR`, longer than any wait, so
//! an enrollment still waiting can rely on them), an event's dedup marker after 15 days (as long as a
//! message can come back from a dead-letter queue), and a
//! profile or an enrollment never. The stats keep their counts once the timeline is gone.

mod support;

use jiff::SignedDuration;
use support::{at, Harness, REMIND};
use waymark::runtime::KEEP_FOR;
use waymark::store::{Expect, Store};

/// [`REMIND`], then an in-app message.
fn remind_and_card() -> String {
    format!(
        "{REMIND}  - id: card\n    send:\n      in_app: {{title: \"Still there?\", body: \"Hi\"}}\n"
    )
}

#[tokio::test]
async fn timeline_ledger_and_inbox_records_expire_after_400_days_and_the_stats_stay() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(&remind_and_card()).await;
    h.play(
        r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}
{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up"}"#,
    )
    .await;
    let (from, to) = (at("2026-12-01T10:00:00Z"), at("2026-12-01T12:05:00Z"));
    h.advance_to(to).await;
    assert_eq!(h.outbox().len(), 2, "the email and the in-app message");

    let records: Vec<_> = h
        .store
        .dump()
        .into_iter()
        .filter(|r| r.key.pk.as_str() == "U#ann")
        .collect();
    let expiry = |prefix: &str| -> Vec<Option<i64>> {
        records
            .iter()
            .filter(|r| r.key.sk.starts_with(prefix))
            .map(|r| r.expires)
            .collect()
    };
    let within = |e: &Option<i64>, keep: SignedDuration| {
        e.is_some_and(|e| ((from + keep).as_second()..=(to + keep).as_second()).contains(&e))
    };
    let timeline = expiry("T#");
    assert_eq!(
        timeline.len(),
        2,
        "entering, and waking to send: {timeline:?}"
    );
    assert!(timeline.iter().all(|e| within(e, KEEP_FOR)), "{timeline:?}");
    let ledger = expiry("L#");
    assert_eq!(ledger.len(), 2, "the email's and the in-app message's");
    assert!(ledger.iter().all(|e| within(e, KEEP_FOR)), "{ledger:?}");
    let inbox = expiry("I#");
    assert_eq!(inbox.len(), 1);
    assert!(inbox.iter().all(|e| within(e, KEEP_FOR)), "{inbox:?}");
    let dedup = expiry("D#");
    assert!(!dedup.is_empty());
    assert!(
        dedup
            .iter()
            .all(|e| within(e, SignedDuration::from_hours(24 * 15))),
        "{dedup:?}"
    );
    assert_eq!(expiry("P"), [None], "the profile is kept");
    assert_eq!(expiry("E#"), [None], "the enrollment is kept");

    // The timeline records expire (as DynamoDB's TTL deletes them, once folded): the stats
    // keep what they counted.
    h.rt.fold_stats().await.expect("fold");
    let before = h.rt.stats("remind").await.expect("stats");
    assert_eq!(before.get("completed"), Some(&1), "{before:?}");
    for r in records.iter().filter(|r| r.key.sk.starts_with("T#")) {
        h.store.delete(&r.key, Expect::Any).await.expect("delete");
    }
    assert_eq!(h.rt.stats("remind").await.expect("stats"), before);
}

/// An in-app message whose template says `expires: 1d` leaves the inbox a day after it is sent
/// (the inbox stops showing it at once; the store's expiry deletes it), while one without stays.
#[tokio::test]
async fn an_in_app_message_leaves_the_inbox_when_it_expires() {
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(
        r#"
id: offer
name: Offer
trigger: {event: signed_up}
steps:
  - id: flash
    send:
      in_app: {title: "Today only", body: "20% off", expires: 1d}
  - id: welcome
    send:
      in_app: {title: "Welcome", body: "Hi"}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up"}"#)
        .await;
    let titles = |items: Vec<waymark::runtime::InboxItem>| -> Vec<String> {
        items.into_iter().map(|i| i.title).collect()
    };
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    let flash = inbox.iter().find(|i| i.title == "Today only").cloned();
    assert_eq!(
        flash.and_then(|i| i.expires_at),
        Some(at("2026-12-02T10:00:00Z"))
    );
    assert_eq!(titles(inbox), ["Today only", "Welcome"]);
    let expiry: Vec<Option<i64>> = h
        .store
        .dump()
        .iter()
        .filter(|r| r.key.sk.starts_with("I#"))
        .map(|r| r.expires)
        .collect();
    assert!(
        expiry.contains(&Some(at("2026-12-02T10:00:00Z").as_second())),
        "{expiry:?}"
    );

    h.advance_to(at("2026-12-02T09:59:00Z")).await;
    assert_eq!(titles(h.rt.inbox("ann").await.expect("inbox")).len(), 2);
    h.advance_to(at("2026-12-02T10:00:00Z")).await;
    assert_eq!(titles(h.rt.inbox("ann").await.expect("inbox")), ["Welcome"]);
}
