//! Delivery under duplicates and disorder: every queue message may come 1–3 times, in any order
//! among those due, and scripted events arrive a few seconds late and out of order. Whatever
//! happens, no message goes out twice for the same enrollment and step visit, nothing goes out
//! after an enrollment's exit, and users who should get a message get it exactly once. Some
//! carts are abandoned anonymously and the user logs in later (identity merge), before or after
//! the push, with the order (if any) placed logged in, before or after the login. Some book a
//! round trip (a journey with an `enrollment_key`: an enrollment per flight), and may cancel
//! the return flight.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::json;

use support::{at, example_journey, journey, next_timer, tick};
use waymark::clock::{Clock, ManualClock};
use waymark::engine::Outgoing;
use waymark::event::{self, Kind, Limits};
use waymark::journey::Channel;
use waymark::provider::{Receipt, SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueError, QueueName};
use waymark::runtime::{Config, RunError, Runtime};
use waymark::store::MemoryStore;
use waymark::timeline::What;

/// A queue that keeps every message with its due time; the test decides how often and in which
/// order each is delivered.
#[derive(Clone)]
struct TestQueue {
    clock: Arc<ManualClock>,
    pending: Arc<Mutex<Vec<(Timestamp, Message)>>>,
}

impl TestQueue {
    fn new(clock: Arc<ManualClock>) -> Self {
        TestQueue {
            clock,
            pending: Arc::default(),
        }
    }

    fn push(&self, due: Timestamp, message: Message) {
        self.lock().push((due, message));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Timestamp, Message)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_due(&self, now: Timestamp) -> Vec<Message> {
        let mut pending = self.lock();
        let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(t, _)| *t <= now);
        *pending = later;
        due.into_iter().map(|(_, m)| m).collect()
    }

    fn next_due(&self) -> Option<Timestamp> {
        self.lock().iter().map(|(t, _)| *t).min()
    }
}

#[async_trait]
impl Queue for TestQueue {
    async fn send(&self, _queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        let now = self.clock.now();
        for m in messages {
            let due = now + SignedDuration::from_secs(i64::from(m.delay_secs));
            self.push(due, m.message.clone());
        }
        Ok(())
    }
}

/// A provider that records each call with the time it was made.
#[derive(Clone)]
struct ClockedSender {
    clock: Arc<ManualClock>,
    calls: Arc<Mutex<Vec<(Timestamp, Outgoing)>>>,
}

impl ClockedSender {
    fn calls(&self) -> Vec<(Timestamp, Outgoing)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Sender for ClockedSender {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((self.clock.now(), message.clone()));
        Ok(Receipt::default())
    }
}

/// A small deterministic generator for the delivery order (splitmix64).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// One user of the generated script.
#[derive(Debug, Clone)]
struct User {
    device: bool,
    timezone: Option<&'static str>,
    /// Cart abandoned this many minutes after 01:00, worth this much.
    cart: Option<(i64, u32)>,
    /// Order placed this many minutes after the cart (or after 01:00 without one).
    order: Option<i64>,
    /// Signed up this many minutes after 01:00.
    signup: Option<i64>,
    /// Registration completed this many minutes after signing up.
    registered: Option<i64>,
    /// Seconds each track event arrives after it happened (0–5).
    lateness: Vec<i64>,
    /// The cart was abandoned anonymously (`anonymousId` only), and the user logged in (an
    /// event with both ids) this many minutes after it.
    anonymous: Option<i64>,
    /// A round trip booked this many minutes after 01:00 (two `flight_booked` at once, one
    /// enrollment each of a journey with an `enrollment_key`), and whether the return flight
    /// was cancelled an hour later.
    flights: Option<(i64, bool)>,
}

fn user() -> impl Strategy<Value = User> {
    (
        any::<bool>(),
        prop::sample::select(vec![None, Some("Europe/Paris"), Some("America/New_York")]),
        prop::option::weighted(0.8, (0i64..600, 1u32..200)),
        prop::option::weighted(0.4, -30i64..360),
        prop::option::weighted(0.7, 0i64..600),
        prop::option::weighted(0.4, 0i64..(3 * 24 * 60)),
        prop::collection::vec(0i64..=5, 5),
        prop::option::weighted(0.3, 0i64..240),
        prop::option::weighted(0.5, (0i64..600, any::<bool>())),
    )
        .prop_map(
            |(device, timezone, cart, order, signup, registered, lateness, anonymous, flights)| {
                User {
                    device,
                    timezone,
                    cart,
                    order,
                    signup,
                    registered: signup.and(registered),
                    lateness,
                    anonymous: cart.and(anonymous),
                    flights,
                }
            },
        )
}

/// A check-in reminder for each booked flight, a day before it; a cancellation ends its own
/// booking's.
const FLIGHTS: &str = r#"
id: flights
name: Flights
trigger: {event: flight_booked}
enrollment_key: event.booking_id
reentry: after_exit
exit_when:
  - event: flight_cancelled
    where: "event.booking_id == trigger.booking_id"
steps:
  - id: opens
    wait_until: {date: event.departs_at, before: 1d}
  - id: check_in
    send:
      email: {subject: "Check in for {{ trigger.booking_id }}", text: "."}
"#;

const START: &str = "2026-12-01T00:00:00Z";

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// The scripted events: (delivered at, event). Identifies first, then tracks a few seconds late.
fn script(users: &[User]) -> Vec<(Timestamp, Message)> {
    let start = at(START);
    let base = start + minutes(60);
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut add = |happened: Timestamp, late: i64, payload: serde_json::Value, kind: Kind| {
        let delivered = happened + SignedDuration::from_secs(late);
        let mut payload = payload;
        payload["timestamp"] = json!(happened.to_string());
        let body = serde_json::to_vec(&payload).expect("payload");
        let ev = event::parse_single(kind, &body, delivered, &limits)
            .unwrap_or_else(|e| panic!("bad generated event {payload}: {e:?}"));
        out.push((delivered, Message::Event(std::sync::Arc::new(ev))));
    };
    for (i, u) in users.iter().enumerate() {
        let id = format!("u{i}");
        let mut traits = json!({"email": format!("{id}@example.com"), "first_name": id});
        if u.device {
            traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("t-{id}")}]);
        }
        if let Some(tz) = u.timezone {
            traits["timezone"] = json!(tz);
        }
        add(
            start,
            0,
            json!({"userId": id, "messageId": format!("id-{id}"), "traits": traits}),
            Kind::Identify,
        );
        let track = |event: &str, n: &str, properties: serde_json::Value| json!({"userId": id, "event": event, "messageId": format!("{event}-{id}-{n}"), "properties": properties});
        if let Some((m, total)) = u.cart {
            let properties = json!({"cart_id": format!("c-{id}"), "total": total, "currency": "EUR",
                "items": [{"name": "Thing", "price": total, "stock": 3}]});
            let mut cart = track("cart_abandoned", "1", properties);
            if let Some(login) = u.anonymous {
                let device = format!("d{i}");
                if let Some(o) = cart.as_object_mut() {
                    o.remove("userId");
                    o.insert("anonymousId".into(), json!(device));
                }
                add(
                    base + minutes(m + login),
                    u.lateness[4],
                    json!({"userId": id, "anonymousId": device, "event": "logged_in", "messageId": format!("login-{id}")}),
                    Kind::Track,
                );
            }
            add(base + minutes(m), u.lateness[0], cart, Kind::Track);
        }
        if let Some(m) = u.order {
            let cart = u.cart.map(|(c, _)| c).unwrap_or(0);
            let when = base + minutes(cart + m);
            add(
                when.max(start + minutes(1)),
                u.lateness[1],
                track(
                    "order_completed",
                    "1",
                    json!({"order_id": format!("o-{id}")}),
                ),
                Kind::Track,
            );
        }
        if let Some((m, cancelled)) = u.flights {
            let booked = base + minutes(m);
            for (leg, days, late) in [("out", 2, u.lateness[0]), ("ret", 4, u.lateness[1])] {
                let booking = format!("F-{id}-{leg}");
                let departs = booked + SignedDuration::from_hours(24 * days);
                add(
                    booked,
                    late,
                    track(
                        "flight_booked",
                        leg,
                        json!({"booking_id": booking, "departs_at": departs.to_string()}),
                    ),
                    Kind::Track,
                );
            }
            if cancelled {
                add(
                    booked + minutes(60),
                    u.lateness[2],
                    track(
                        "flight_cancelled",
                        "ret",
                        json!({"booking_id": format!("F-{id}-ret")}),
                    ),
                    Kind::Track,
                );
            }
        }
        if let Some(m) = u.signup {
            add(
                base + minutes(m),
                u.lateness[2],
                track("signed_up", "1", json!({})),
                Kind::Track,
            );
            if let Some(r) = u.registered {
                add(
                    base + minutes(m + r),
                    u.lateness[3],
                    track("registration_completed", "1", json!({})),
                    Kind::Track,
                );
            }
        }
    }
    out
}

struct World {
    rt: Runtime,
    store: MemoryStore,
    queue: TestQueue,
    clock: Arc<ManualClock>,
    sender: ClockedSender,
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(at(START)));
        let store = MemoryStore::new();
        let queue = TestQueue::new(clock.clone());
        let sender = ClockedSender {
            clock: clock.clone(),
            calls: Arc::default(),
        };
        let rt = Runtime::new(
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            Arc::new(sender.clone()),
            clock.clone(),
            std::time::Duration::from_secs(0),
            Config::default(),
        );
        let files = ["cart_abandonment", "banking_onboarding"]
            .map(example_journey)
            .into_iter()
            .chain([FLIGHTS.to_string()]);
        for file in files {
            rt.catalog
                .publish(&journey(&file), &rt.config.topics, at(START))
                .await
                .expect("publish");
        }
        World {
            rt,
            store,
            queue,
            clock,
            sender,
        }
    }

    /// Delivers everything until `until`: each due message 1–3 times, shuffled, in batches of 1–4;
    /// a message that fails comes back 30 seconds later, as from SQS after its visibility timeout.
    async fn run(&self, dice: &mut Dice, until: Timestamp) -> Result<(), TestCaseError> {
        for _ in 0..200_000 {
            let now = self.clock.now();
            let due = self.queue.take_due(now);
            if !due.is_empty() {
                let mut deliveries = Vec::new();
                for m in due {
                    for _ in 0..=dice.below(3) {
                        deliveries.push(m.clone());
                    }
                }
                dice.shuffle(&mut deliveries);
                while !deliveries.is_empty() {
                    let n = (1 + dice.below(4)).min(deliveries.len());
                    let batch: Vec<Message> = deliveries.drain(..n).collect();
                    for (m, r) in batch.iter().zip(self.rt.handle_batch(&batch).await) {
                        match r {
                            Ok(_) => {}
                            Err(RunError::Poison(why)) => {
                                return Err(TestCaseError::fail(format!(
                                    "{} is poison at {now}: {why}",
                                    m.id()
                                )))
                            }
                            Err(_) => self
                                .queue
                                .push(now + SignedDuration::from_secs(30), m.clone()),
                        }
                    }
                }
                continue;
            }
            let timer_tick = next_timer(&self.store).map(|d| {
                (d - SignedDuration::from_secs(60)).min(now + SignedDuration::from_hours(24))
            });
            let Some(next) = [self.queue.next_due(), timer_tick]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= until)
            else {
                return Ok(());
            };
            let next = next.max(now);
            self.clock.set(next);
            if timer_tick.is_some_and(|t| t <= next) {
                let moved = tick(&self.rt, &self.store)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("tick: {e}")))?;
                if moved == 0 && self.queue.next_due().is_none_or(|d| d > next) {
                    self.clock.set(next + SignedDuration::from_secs(60));
                }
            }
        }
        Err(TestCaseError::fail("did not settle"))
    }
}

fn check(users: Vec<User>, seed: u64) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(check_async(users, seed))
}

async fn check_async(users: Vec<User>, seed: u64) -> Result<(), TestCaseError> {
    let world = World::new().await;
    let mut dice = Dice(seed);
    let events = script(&users);
    let last = events.iter().map(|(t, _)| *t).max().unwrap_or(at(START));
    for (t, m) in events {
        world.queue.push(t, m);
    }
    world
        .run(&mut dice, last + SignedDuration::from_hours(8 * 24))
        .await?;

    let calls = world.sender.calls();

    // At most one provider call per (enrollment, step, visit).
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for (_, o) in &calls {
        *per_key.entry(o.ledger_key()).or_default() += 1;
    }
    for (key, n) in &per_key {
        prop_assert!(*n == 1, "{key} went to the provider {n} times");
    }

    for (i, u) in users.iter().enumerate() {
        let id = format!("u{i}");
        let view = world
            .rt
            .user(&id)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;

        // Nothing goes out after an enrollment's exit.
        for e in &view.timeline {
            if let What::Exited { .. } = e.what {
                for (sent_at, o) in calls.iter().filter(|(_, o)| *o.enrollment == *e.enrollment) {
                    prop_assert!(
                        *sent_at <= e.at,
                        "{} {} sent at {sent_at}, after the exit at {}",
                        o.enrollment,
                        o.step,
                        e.at
                    );
                }
            }
        }

        let sent = |journey: &str, step: &str, channel: Option<Channel>| {
            calls
                .iter()
                .filter(|(_, o)| {
                    *o.user_id == *id
                        && &*o.journey == journey
                        && &*o.step == step
                        && channel.is_none_or(|c| o.channel == c)
                })
                .count()
        };

        // A cart abandoned and never an order: one push (with a device) and one email.
        if u.cart.is_some() && u.order.is_none() {
            let pushes = sent("cart_abandonment", "push_reminder", Some(Channel::Push));
            let emails = sent("cart_abandonment", "low_stock_email", Some(Channel::Email));
            if u.anonymous.is_some() {
                // The push at 30 minutes reaches the device only if the login came first.
                prop_assert!(pushes <= usize::from(u.device), "{} pushes: {:?}", id, u);
            } else {
                prop_assert_eq!(pushes, usize::from(u.device), "{} pushes: {:?}", id, u);
            }
            prop_assert_eq!(emails, 1, "{} emails: {:?}", id, u);
        }

        // Each flight booked gets its reminder once, whatever the order and the repeats of the
        // two bookings; the cancelled return flight none.
        if let Some((_, cancelled)) = u.flights {
            for (leg, want) in [("out", 1), ("ret", usize::from(!cancelled))] {
                let booking = format!("flights:{id}:F-{id}-{leg}:");
                let got = calls
                    .iter()
                    .filter(|(_, o)| o.enrollment.starts_with(&*booking) && &*o.step == "check_in")
                    .count();
                prop_assert_eq!(got, want, "{} {}: {:?}", id, leg, u);
            }
        }

        // Signed up and never registered: both reminders, once each (the second by email
        // without a device).
        if u.signup.is_some() && u.registered.is_none() {
            prop_assert_eq!(
                sent("banking_onboarding", "reminder_1", Some(Channel::Push)),
                usize::from(u.device),
                "{} reminder_1: {:?}",
                id,
                u
            );
            prop_assert_eq!(
                sent("banking_onboarding", "reminder_2", None),
                1,
                "{} reminder_2: {:?}",
                id,
                u
            );
        }
    }
    Ok(())
}

#[test]
fn duplicated_and_reordered_deliveries_never_send_twice_or_after_an_exit() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (prop::collection::vec(user(), 1..=6), any::<u64>());
    if let Err(e) = runner.run(&strategy, |(users, seed)| check(users, seed)) {
        panic!("{e}");
    }
}

/// A provider that also takes in-app messages and fails its first call (the network gone after
/// the inbox was written), then sends.
#[derive(Clone, Default)]
struct FirstCallFails {
    calls: Arc<Mutex<usize>>,
}

#[async_trait]
impl Sender for FirstCallFails {
    async fn send(&self, _message: &Outgoing) -> Result<Receipt, SendError> {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *calls += 1;
        if *calls == 1 {
            return Err(SendError::Retryable("connection reset".into()));
        }
        Ok(Receipt::default())
    }

    fn wants_in_app(&self) -> bool {
        true
    }
}

/// A send retried after its in-app message reached the inbox (the provider call after it
/// failed) leaves the message as the user left it in between: dismissed stays dismissed.
#[tokio::test]
async fn a_retried_send_does_not_bring_back_a_dismissed_in_app_message() {
    use waymark::runtime::InboxMark;
    let base = support::Harness::new("2026-12-01T09:00:00Z");
    let sender = FirstCallFails::default();
    let store = Arc::new(base.store.clone());
    let h = base.with(store, Arc::new(sender.clone()));
    h.publish(
        r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: guide
    send:
      in_app: {title: "Welcome", body: "Start here"}
"#,
    )
    .await;
    h.play(r#"{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s-ann"}"#)
        .await;
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    assert_eq!(
        inbox.len(),
        1,
        "written before the provider failed: {inbox:?}"
    );
    assert_eq!(*sender.calls.lock().expect("calls"), 1, "not retried yet");
    let dismissed =
        h.rt.mark_inbox("ann", &inbox[0].id, InboxMark::Dismissed)
            .await
            .expect("marked");
    assert!(dismissed.is_some_and(|m| m.dismissed_at.is_some()));

    h.advance_to(at("2026-12-01T10:00:00Z")).await;
    assert_eq!(
        *sender.calls.lock().expect("calls"),
        2,
        "the send was retried and went through"
    );
    let inbox = h.rt.inbox("ann").await.expect("inbox");
    assert!(inbox.is_empty(), "dismissed stays dismissed: {inbox:?}");
}

/// A store write that fails once, wherever it falls in a cart user's journey (before it is
/// applied, or applied with its answer lost), sends neither message twice and loses neither:
/// in particular the record of a message that went out, written after the provider took it,
/// is tried again at once rather than left to the retry that would send it again.
#[tokio::test]
async fn one_failed_write_anywhere_sends_nothing_twice() {
    for applied in [false, true] {
        let mut writes = 0;
        for n in 0..150 {
            let (base, faulty) = support::faulty::faulty_harness();
            // Every call to the provider counted (the local outbox would hide a repeat).
            let sender = ClockedSender {
                clock: base.clock.clone(),
                calls: Arc::default(),
            };
            let h = base.with(Arc::new(faulty.clone()), Arc::new(sender.clone()));
            h.publish(&example_journey("cart_abandonment")).await;
            *faulty.fault.lock().expect("fault") = Some((n, applied));
            h.play(r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com","first_name":"Ann","timezone":"Europe/Paris","push_tokens":[{"platform":"fcm","token":"t-ann"}]}}
{"at":"2026-12-01T09:01:00Z","type":"track","userId":"ann","event":"cart_abandoned","messageId":"c-1","properties":{"cart_id":"c-1","total":10,"items":[{"name":"Shoes","price":10,"stock":2}]}}
"#).await;
            h.advance_through_faults(at("2026-12-02T09:00:00Z")).await;
            let calls = sender.calls();
            for channel in [Channel::Push, Channel::Email] {
                let count = calls.iter().filter(|(_, o)| o.channel == channel).count();
                assert_eq!(
                    count, 1,
                    "write {n} failed (applied: {applied}): {channel:?} sent {count} times"
                );
            }
            if *faulty.fired.lock().expect("fired") {
                writes = n + 1;
            }
        }
        // Each of the journey's writes was failed once in turn (18 puts, the email's record
        // among the last), and the range reaches past the last of them.
        assert!(
            (10..150).contains(&writes),
            "{writes} writes failed in turn"
        );
    }
}
