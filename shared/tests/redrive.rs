//! A message handled once and then redriven from a dead-letter queue (its batch failed after
//! it was handled, five times, and an operator redrives the queue): a queue keeps a message a
//! week, its dead-letter queue until 14 days after it was sent (`template.yaml`), so it may come
//! back a week and more after it was handled. It does nothing again: its duplicate marker
//! outlives it.

mod support;

use support::*;

/// An unkeyed journey entered again after each exit: a visit a welcome.
const WELCOME: &str = r#"
id: welcome
name: Welcome back
trigger: {event: visited}
reentry: after_exit
steps:
  - id: hello
    send:
      email: {subject: "Welcome back", text: "Hi"}
"#;

/// Counts purchases on the profile and thanks for each, two of them; subscribing is the goal.
const LOYALTY: &str = r#"
id: loyalty
name: Loyalty
trigger: {event: joined}
goal: {event: subscribed, within: 30d}
steps:
  - id: first
    wait_for: {event: purchased, timeout: 30d}
  - id: count
    update: {set: {orders: "{{ (profile.orders | default(0)) + 1 }}"}}
  - id: thanks
    send:
      email: {subject: "Thanks for order {{ profile.orders }}", text: "Hi"}
  - id: second
    wait_for: {event: purchased, timeout: 30d}
  - id: count_again
    update: {set: {orders: "{{ (profile.orders | default(0)) + 1 }}"}}
  - id: thanks_again
    send:
      email: {subject: "Thanks again: order {{ profile.orders }}", text: "Hi"}
"#;

const ANN: &str = r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","messageId":"id-ann","traits":{"email":"ann@example.com"}}"#;

/// A `event` track of ann at `at`, message `id`.
fn track(at: &str, event: &str, id: &str) -> String {
    format!(r#"{{"at":"{at}","type":"track","userId":"ann","event":"{event}","messageId":"{id}"}}"#)
}

/// Deletes the records of `user` whose expiry has passed, as DynamoDB's TTL does.
async fn expire(h: &Harness, user: &str) {
    use waymark::store::{Expect, Store};
    let now = h.now().as_second();
    let pk = format!("U#{user}");
    for r in h.store.query(&pk, "").await.expect("query") {
        if r.expires.is_some_and(|t| t <= now) {
            h.store.delete(&r.key, Expect::Any).await.expect("delete");
        }
    }
}

/// Delivers the script's line `line` again now, as a redrive from a dead-letter queue does:
/// the same message, received now.
async fn redrive(h: &Harness, line: &str) {
    let script = waymark::simulate::parse_script(line).expect("script");
    let limits = waymark::event::Limits {
        max_past: jiff::SignedDuration::from_hours(24 * 30),
        max_future: jiff::SignedDuration::from_hours(1),
    };
    let body = serde_json::to_vec(&script[0].payload).expect("payload");
    let again = waymark::event::parse_call(waymark::event::Call::Track, &body, h.now(), &limits)
        .expect("event");
    h.deliver(again).await;
}

/// A visit redriven 10 days after it entered her, after she entered 17 times more (more than
/// an enrollment remembers earlier triggers of), enters her no second time.
#[tokio::test]
async fn a_trigger_redriven_after_many_entries_enters_no_second_time() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(WELCOME).await;
    let first = track("2026-12-01T09:00:00Z", "visited", "v0");
    let mut script = vec![ANN.to_string(), first.clone()];
    for i in 1..18 {
        let at = format!("2026-12-{:02}T{:02}:00:00Z", 2 + i / 3, 9 + i % 3);
        script.push(track(&at, "visited", &format!("v{i}")));
    }
    h.play(&script.join("\n")).await;
    assert_eq!(h.outbox().len(), 18);
    h.advance_to(at("2026-12-11T09:00:00Z")).await;
    expire(&h, "ann").await;
    redrive(&h, &first).await;
    h.advance_to(at("2026-12-12T00:00:00Z")).await;
    assert_eq!(h.outbox().len(), 18, "{:#?}", h.outbox());
}

/// A purchase redriven 10 days after it moved her on (counted, thanked), when her goal
/// converted her since, is not counted, nor thanked, again.
#[tokio::test]
async fn an_event_redriven_after_it_moved_a_wait_moves_nothing_again() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(LOYALTY).await;
    let purchase = track("2026-12-01T10:00:00Z", "purchased", "p1");
    h.play(
        &[
            ANN.to_string(),
            track("2026-12-01T09:00:00Z", "joined", "j1"),
            purchase.clone(),
            track("2026-12-02T09:00:00Z", "subscribed", "s1"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:00:00Z ann email thanks: Thanks for order 1"]
    );
    h.advance_to(at("2026-12-11T09:00:00Z")).await;
    expire(&h, "ann").await;
    redrive(&h, &purchase).await;
    h.advance_to(at("2026-12-12T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-01T10:00:00Z ann email thanks: Thanks for order 1"]
    );
}
