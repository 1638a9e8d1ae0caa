//! A provider outage of hours: the sends that fail are retried with their backoff, a bounded
//! number of deliveries, and go out once each, in the journey's order, when the provider is back.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use support::{at, journey, next_timer, tick};
use waymark::clock::{Clock, ManualClock};
use waymark::engine::Outgoing;
use waymark::event::{self, Limits};
use waymark::provider::{Receipt, SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::runtime::{Config, Runtime};
use waymark::simulate::DelayQueue;
use waymark::store::MemoryStore;

/// A provider that is down while `down` is set (for `only` that channel, if given), and records
/// what it sends.
struct Provider {
    clock: Arc<ManualClock>,
    down: AtomicBool,
    only: Option<waymark::journey::Channel>,
    calls: AtomicUsize,
    sent: Mutex<Vec<(Timestamp, String)>>,
    /// When the messages it takes went out already, if it says so (as `waymark dev`'s outbox
    /// does of a line written before a crash).
    already: Mutex<Option<Timestamp>>,
    /// The push tokens whose app was uninstalled: each push to one is answered as SNS answers
    /// a disabled endpoint (also while down, beside the other devices' passing failure).
    uninstalled: Mutex<Vec<String>>,
    /// The tokens of each push it was given (the devices of `to` not marked disabled).
    tried: Mutex<Vec<Vec<String>>>,
    /// Where each message it took went, by step.
    addressed: Mutex<Vec<(String, waymark::profile::Address)>>,
}

#[async_trait]
impl Sender for Provider {
    async fn send(&self, m: &Outgoing) -> Result<Receipt, SendError> {
        self.calls.fetch_add(1, SeqCst);
        let tokens: Vec<String> = match &m.to {
            waymark::profile::Address::Devices(d) => d
                .iter()
                .filter(|d| !d.disabled)
                .map(|d| d.token.clone())
                .collect(),
            waymark::profile::Address::One(_) => Vec::new(),
        };
        if m.channel == waymark::journey::Channel::Push {
            let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            tried.push(tokens.clone());
        }
        let uninstalled = self.uninstalled.lock().unwrap_or_else(|p| p.into_inner());
        let disabled: Vec<String> = tokens
            .into_iter()
            .filter(|t| uninstalled.contains(t))
            .collect();
        if self.down.load(SeqCst) && self.only.is_none_or(|c| c == m.channel) {
            if !disabled.is_empty() {
                return Err(SendError::PushRetryable {
                    reason: "the provider is down".into(),
                    disabled_devices: disabled,
                });
            }
            return Err(SendError::Retryable("the provider is down".into()));
        }
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.push((self.clock.now(), m.step.to_string()));
        let mut addressed = self.addressed.lock().unwrap_or_else(|p| p.into_inner());
        addressed.push((m.step.to_string(), m.to.clone()));
        Ok(Receipt {
            sent_at: *self.already.lock().unwrap_or_else(|p| p.into_inner()),
            disabled_devices: disabled,
            ..Receipt::default()
        })
    }
}

const CART: &str = r#"
id: cart
name: Cart
trigger: {event: cart_abandoned}
steps:
  - id: wait_30m
    wait: 30m
  - id: push_reminder
    send: {push: {title: t, body: b}}
  - id: wait_4h
    wait: 4h
  - id: low_stock_email
    send: {email: {subject: s, text: t}}
"#;

/// A runtime over the in-memory store, a delay queue and `provider`, with `journey` published
/// and ann identified (an email address and a push device) and abandoning a cart at 09:00.
struct World {
    clock: Arc<ManualClock>,
    store: MemoryStore,
    queue: DelayQueue,
    provider: Arc<Provider>,
    rt: Runtime,
}

impl World {
    async fn new(
        journey_text: &str,
        config: Config,
        only: Option<waymark::journey::Channel>,
    ) -> World {
        let clock = Arc::new(ManualClock::new(at("2026-12-01T09:00:00Z")));
        let store = MemoryStore::new();
        let queue = DelayQueue::new(clock.clone());
        let provider = Arc::new(Provider {
            clock: clock.clone(),
            down: AtomicBool::new(true),
            only,
            calls: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
            already: Mutex::new(None),
            uninstalled: Mutex::new(Vec::new()),
            tried: Mutex::new(Vec::new()),
            addressed: Mutex::new(Vec::new()),
        });
        let rt = Runtime::new(
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            provider.clone(),
            clock.clone(),
            std::time::Duration::ZERO,
            config,
        );
        rt.catalog
            .publish(&journey(journey_text), &rt.config.topics, clock.now())
            .await
            .expect("publish");
        let limits = Limits::default();
        let identify = br#"{"userId":"ann","messageId":"i1","traits":{"email":"ann@example.com","push_tokens":[{"platform":"fcm","token":"t1"}]}}"#;
        let cart = br#"{"userId":"ann","event":"cart_abandoned","messageId":"c1"}"#;
        for (call, body) in [
            (event::Call::Identify, &identify[..]),
            (event::Call::Track, &cart[..]),
        ] {
            let e = event::parse_call(call, body, clock.now(), &limits).expect("event");
            let out = Outbound {
                message: Message::Event(Arc::new(e)),
                delay_secs: 0,
            };
            queue.send(QueueName::Events, &[out]).await.expect("queue");
        }
        World {
            clock,
            store,
            queue,
            provider,
            rt,
        }
    }

    /// Handles everything due until `end`, the provider coming back at `back` (the clock
    /// stops there too); at most 20,000 deliveries. Returns (deliveries, those before `back`).
    async fn run(&self, back: Timestamp, end: Timestamp) -> (usize, usize) {
        let (mut deliveries, mut while_down) = (0usize, 0usize);
        while deliveries < 20_000 {
            let now = self.clock.now();
            if now >= back {
                self.provider.down.store(false, SeqCst);
            }
            let due = self.queue.take_due(now);
            if due.is_empty() {
                let timer = next_timer(&self.store).map(|t| t - SignedDuration::from_secs(60));
                let Some(next) = [self.queue.next_due(), timer]
                    .into_iter()
                    .flatten()
                    .min()
                    .filter(|t| *t <= end)
                else {
                    break;
                };
                let next = if now < back && next > back {
                    back
                } else {
                    next
                };
                self.clock.set(next.max(now));
                tick(&self.rt, &self.store).await.expect("tick");
                continue;
            }
            for m in &due {
                deliveries += 1;
                if now < back {
                    while_down += 1;
                }
                // A failure here is the queue's to redeliver; the runtime queues its own retries.
                let _ = self.rt.handle(m).await;
            }
        }
        (deliveries, while_down)
    }

    /// What the provider took, step by step, with when.
    fn sent(&self) -> Vec<(Timestamp, String)> {
        self.provider
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues an identify of ann's with `traits` (JSON), stamped now.
    async fn identify(&self, message_id: &str, traits: &str) {
        let body = format!(r#"{{"userId":"ann","messageId":"{message_id}","traits":{traits}}}"#);
        let e = event::parse_call(
            event::Call::Identify,
            body.as_bytes(),
            self.clock.now(),
            &Limits::default(),
        )
        .expect("event");
        let out = Outbound {
            message: Message::Event(Arc::new(e)),
            delay_secs: 0,
        };
        self.queue
            .send(QueueName::Events, &[out])
            .await
            .expect("queue");
    }

    /// Ann's skipped entries: (step, reason, detail).
    async fn skipped(&self) -> Vec<(String, String, String)> {
        let view = self.rt.user("ann").await.expect("ann");
        view.timeline
            .iter()
            .filter_map(|e| match &e.what {
                waymark::timeline::What::Skipped { reason, detail, .. } => Some((
                    e.step.as_deref().unwrap_or("").to_string(),
                    reason.clone(),
                    detail.clone().unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Ann's refused entries.
    async fn refusals(&self) -> Vec<waymark::timeline::Entry> {
        let view = self.rt.user("ann").await.expect("ann");
        view.timeline
            .into_iter()
            .filter(|e| matches!(e.what, waymark::timeline::What::NotEntered { .. }))
            .collect()
    }

    /// When the timeline says each message of ann's went out, by step.
    async fn stamped(&self) -> Vec<(String, Timestamp)> {
        let view = self.rt.user("ann").await.expect("ann");
        view.timeline
            .iter()
            .filter(|e| matches!(e.what, waymark::timeline::What::Sent { .. }))
            .map(|e| (e.step.as_deref().unwrap_or("").to_string(), e.at))
            .collect()
    }
}

/// Waits on the queue (as in `waymark dev`) and as timers in the store (as deployed).
#[tokio::test]
async fn an_outage_of_hours_is_retried_with_backoff_not_in_a_storm() {
    for (name, config) in [
        (
            "waits on the queue",
            Config {
                hop_limit: SignedDuration::from_hours(24 * 400),
                ..Config::default()
            },
        ),
        ("waits as timers", Config::default()),
    ] {
        let world = World::new(CART, config, None).await;
        // Eight hours of outage (past the push at 09:30 and the email at 13:30), then a day
        // with the provider back.
        let back = at("2026-12-01T17:00:00Z");
        let (deliveries, while_down) = world.run(back, at("2026-12-02T17:00:00Z")).await;
        assert!(
            deliveries < 20_000,
            "{name}: a storm of {deliveries} deliveries, the clock stuck at {}",
            world.clock.now()
        );
        // Each failed message's backoff chain (and the waits' 15-minute hops), not thousands.
        assert!(
            while_down < 100,
            "{name}: {while_down} deliveries during the outage"
        );
        let steps: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
        assert_eq!(
            steps,
            ["push_reminder", "low_stock_email"],
            "{name}: each once, in the journey's order"
        );
        // The timeline says when they went out, not when their steps ran.
        let stamped = world.stamped().await;
        assert_eq!(stamped.len(), 2, "{name}");
        assert!(
            stamped.iter().all(|(_, t)| *t >= back),
            "{name}: {stamped:?}"
        );
    }
}

/// A push and an email of one step visit each: the email's provider down for an hour. When the
/// visit's outbox is performed again, the timeline says when each went out: the push at its
/// step, the email when the provider took it.
#[tokio::test]
async fn a_send_performed_again_keeps_the_time_it_went_out() {
    let both = r#"
id: both
name: Both
trigger: {event: cart_abandoned}
steps:
  - id: wait_30m
    wait: 30m
  - id: push_reminder
    send: {push: {title: t, body: b}}
  - id: email_reminder
    send: {email: {subject: s, text: t}}
"#;
    let world = World::new(
        both,
        Config::default(),
        Some(waymark::journey::Channel::Email),
    )
    .await;
    let back = at("2026-12-01T10:30:00Z");
    world.run(back, at("2026-12-01T18:00:00Z")).await;
    let sent = world.sent();
    let [(push_at, push), (email_at, email)] = sent.as_slice() else {
        panic!("two sends: {sent:?}");
    };
    assert_eq!(
        (push.as_str(), email.as_str()),
        ("push_reminder", "email_reminder")
    );
    assert_eq!(*push_at, at("2026-12-01T09:30:00Z"));
    assert!(*email_at >= back, "{email_at}");
    assert_eq!(
        world.stamped().await,
        [
            ("push_reminder".to_string(), *push_at),
            ("email_reminder".to_string(), *email_at)
        ]
    );
}

/// An `update` step whose transition is performed again (its email's provider down) leaves the
/// traits an identify set after the step ran; an identify from before the step, arriving late,
/// does not undo the step either.
#[tokio::test]
async fn an_update_performed_again_leaves_what_was_set_since() {
    let trial = r#"
id: trial
name: Trial
trigger: {event: cart_abandoned}
steps:
  - id: mark
    update: {set: {plan: trial, coupon: WELCOME}}
  - id: tell
    send: {email: {subject: s, text: t}}
"#;
    let world = World::new(trial, Config::default(), None).await;
    let back = at("2026-12-01T10:00:00Z");
    // The step ran at 09:00; its email waits for the provider.
    world.run(back, at("2026-12-01T09:10:00Z")).await;
    assert!(world.sent().is_empty());
    let limits = Limits::default();
    for body in [
        &br#"{"userId":"ann","messageId":"i2","timestamp":"2026-12-01T09:10:00Z","traits":{"plan":"paid"}}"#[..],
        // Stamped before the step, received after it.
        &br#"{"userId":"ann","messageId":"i0","timestamp":"2026-12-01T08:59:00Z","traits":{"coupon":"OLD"}}"#[..],
    ] {
        let e = event::parse_call(event::Call::Identify, body, world.clock.now(), &limits)
            .expect("event");
        let out = Outbound {
            message: Message::Event(Arc::new(e)),
            delay_secs: 0,
        };
        world
            .queue
            .send(QueueName::Events, &[out])
            .await
            .expect("queue");
    }
    world.run(back, at("2026-12-01T12:00:00Z")).await;
    let steps: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
    assert_eq!(steps, ["tell"]);
    let view = world.rt.user("ann").await.expect("ann");
    let traits = view.profile.expect("a profile").traits;
    assert_eq!(traits.get("plan"), Some(&serde_json::json!("paid")));
    assert_eq!(traits.get("coupon"), Some(&serde_json::json!("WELCOME")));
}

/// A send performed late that the provider says went out earlier (`waymark dev`'s outbox line
/// written before a crash) is stamped with when it went out, not when it was performed again.
#[tokio::test]
async fn a_send_performed_late_is_stamped_when_the_provider_says_it_went_out() {
    let world = World::new(
        CART,
        Config::default(),
        Some(waymark::journey::Channel::Push),
    )
    .await;
    let went_out = at("2026-12-01T09:40:00Z");
    *world.provider.already.lock().expect("lock") = Some(went_out);
    let back = at("2026-12-01T10:30:00Z");
    world.run(back, at("2026-12-01T18:00:00Z")).await;
    let stamped = world.stamped().await;
    assert_eq!(
        stamped.first(),
        Some(&("push_reminder".to_string(), went_out))
    );
}

/// The event that entered a user, retried after its send failed, is not refused entry when the
/// journey was stopped in between: it entered her, and the stop ends the enrollment.
#[tokio::test]
async fn a_retried_trigger_is_not_refused_by_a_stop_since() {
    let now = r#"
id: now
name: Now
trigger: {event: cart_abandoned}
steps:
  - id: push_now
    send: {push: {title: t, body: b}}
"#;
    let world = World::new(now, Config::default(), None).await;
    let back = at("2026-12-01T10:00:00Z");
    world.run(back, at("2026-12-01T09:05:00Z")).await;
    let stopped = format!("{now}status: stopped\n");
    world
        .rt
        .catalog
        .publish(
            &journey(&stopped),
            &world.rt.config.topics,
            world.clock.now(),
        )
        .await
        .expect("stop");
    world.run(back, at("2026-12-01T12:00:00Z")).await;
    let refused = world.refusals().await;
    assert!(refused.is_empty(), "{refused:?}");
}

/// The event that entered a user, retried after its send failed, is not refused by its own
/// trigger's `where` once the journey's `update` changed what it reads.
#[tokio::test]
async fn a_retried_trigger_is_not_refused_by_its_own_update() {
    let once = r#"
id: once
name: Once
trigger: {event: cart_abandoned, where: "not exists(profile.nudged)"}
steps:
  - id: mark
    update: {set: {nudged: true}}
  - id: push_now
    send: {push: {title: t, body: b}}
"#;
    let world = World::new(once, Config::default(), None).await;
    world
        .run(at("2026-12-01T10:00:00Z"), at("2026-12-01T12:00:00Z"))
        .await;
    let steps: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
    assert_eq!(steps, ["push_now"]);
    let refused = world.refusals().await;
    assert!(refused.is_empty(), "{refused:?}");
}

/// A send its provider could not take before the user's quiet hours began does not go out in
/// her night when the provider comes back: the push due at 20:58 (quiet hours 21:00–08:00, her
/// zone UTC), with the provider down until 22:00, goes out at 08:00 the next morning, its retry
/// held there without using up its attempts; with `send_within: 1h`, which quiet hours would
/// overrun, it is skipped (`quiet_hours`), as it would have been when due inside them. (Before,
/// the retry sent it at about 22:00.)
#[tokio::test]
async fn a_send_retried_into_quiet_hours_waits_for_their_end() {
    let night = r#"
id: night
name: Night
trigger: {event: cart_abandoned}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: wait
    wait: 718m
  - id: push_reminder
    send: {push: {title: t, body: b}}
"#;
    let world = World::new(night, Config::default(), None).await;
    world
        .run(at("2026-12-01T22:00:00Z"), at("2026-12-02T12:00:00Z"))
        .await;
    assert_eq!(
        world.sent(),
        [(at("2026-12-02T08:00:00Z"), "push_reminder".to_string())]
    );
    assert_eq!(
        world.stamped().await,
        [("push_reminder".to_string(), at("2026-12-02T08:00:00Z"))]
    );

    let within = night.replace(
        "send: {push: {title: t, body: b}}",
        "send: {push: {title: t, body: b}, send_within: 1h}",
    );
    let world = World::new(&within, Config::default(), None).await;
    world
        .run(at("2026-12-01T22:00:00Z"), at("2026-12-02T12:00:00Z"))
        .await;
    assert!(world.sent().is_empty(), "{:?}", world.sent());
    let view = world.rt.user("ann").await.expect("ann");
    let skipped: Vec<(String, String)> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            waymark::timeline::What::Skipped { reason, detail, .. } => {
                Some((reason.clone(), detail.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect();
    // Said as the engine says a send due inside quiet hours that `send_within` skips, with
    // when it was tried again.
    assert_eq!(skipped, [("quiet_hours".to_string(), "due at 2026-12-01T20:58:00Z; tried again after its first try failed at 2026-12-01T21:00:12Z, 21:00 in her zone then (UTC): inside quiet hours 21:00–08:00, which hold it until 08:00 there (2026-12-02T08:00:00Z), 11h2m after it was due, more than its `send_within: 1h`".to_string())]);
}

/// A send tried again late is judged against quiet hours where she is then, not where the
/// message was made: the push due at 20:58 in Paris (quiet hours 21:00–08:00, the journey's
/// zone), with the provider down until 22:10 Paris; she says at 20:59, before its first retry
/// (21:00 Paris), that she is in New York, where it is 15:00, day: it goes out when the provider
/// is back, at the retry after 22:10 Paris (16:10 in New York). (Before, its retry was held to
/// 08:00 Paris, the zone the message was made in.) Had she stayed in Paris, it waits for 08:00
/// there.
#[tokio::test]
async fn a_send_retried_late_keeps_quiet_hours_where_she_is_now() {
    let night = r#"
id: night
name: Night
trigger: {event: cart_abandoned}
timezone: Europe/Paris
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: wait
    wait: 658m
  - id: push_reminder
    send: {push: {title: t, body: b}}
"#;
    // 22:10 in Paris.
    let back = at("2026-12-01T21:10:00Z");
    for (moved, expected) in [
        (true, None),
        // 08:00 in Paris.
        (false, Some(at("2026-12-02T07:00:00Z"))),
    ] {
        let world = World::new(night, Config::default(), None).await;
        // The push is due at 20:58 Paris (19:58Z); its provider is down.
        world.run(back, at("2026-12-01T19:59:00Z")).await;
        assert_eq!(world.provider.calls.load(SeqCst), 1);
        assert!(world.sent().is_empty(), "{:?}", world.sent());
        if moved {
            let limits = Limits::default();
            let body =
                br#"{"userId":"ann","messageId":"i2","traits":{"timezone":"America/New_York"}}"#;
            let e = event::parse_call(event::Call::Identify, body, world.clock.now(), &limits)
                .expect("event");
            let out = Outbound {
                message: Message::Event(Arc::new(e)),
                delay_secs: 0,
            };
            world
                .queue
                .send(QueueName::Events, &[out])
                .await
                .expect("queue");
        }
        world.run(back, at("2026-12-02T12:00:00Z")).await;
        let sent = world.sent();
        let [(sent_at, step)] = sent.as_slice() else {
            panic!("moved {moved}: one send: {sent:?}");
        };
        assert_eq!(step, "push_reminder");
        match expected {
            Some(t) => assert_eq!(*sent_at, t, "moved {moved}"),
            // Its retry after the provider came back, in New York's afternoon.
            None => assert!(
                *sent_at >= back && *sent_at < at("2026-12-01T23:00:00Z"),
                "moved {moved}: {sent_at}"
            ),
        }
    }
}

/// A push to two devices, one uninstalled (SNS answers its endpoint disabled) while the other
/// one's provider is down (a passing failure): the push is tried again, and the uninstalled
/// device is marked disabled at once, not only when the push goes out or every device refuses
/// (before, its mark was lost with the retry: an outage that outlasts the retries never marks
/// it). The push goes out once, when the provider is back.
#[tokio::test]
async fn a_device_disabled_beside_one_to_retry_is_marked_at_once() {
    let world = World::new(
        CART,
        Config::default(),
        Some(waymark::journey::Channel::Push),
    )
    .await;
    world
        .provider
        .uninstalled
        .lock()
        .expect("lock")
        .push("t2".into());
    let limits = Limits::default();
    let body = br#"{"userId":"ann","messageId":"i2","traits":{"push_tokens":[{"platform":"fcm","token":"t1"},{"platform":"apns","token":"t2"}]}}"#;
    let e =
        event::parse_call(event::Call::Identify, body, world.clock.now(), &limits).expect("event");
    let out = Outbound {
        message: Message::Event(Arc::new(e)),
        delay_secs: 0,
    };
    world
        .queue
        .send(QueueName::Events, &[out])
        .await
        .expect("queue");
    let back = at("2026-12-01T11:00:00Z");
    // The push's first try, at 09:30, and a retry or two.
    world.run(back, at("2026-12-01T09:40:00Z")).await;
    assert!(world.sent().is_empty(), "{:?}", world.sent());
    let tried = world.provider.tried.lock().expect("lock").clone();
    assert!(
        tried.first().is_some_and(|t| t.contains(&"t2".to_string())),
        "{tried:?}"
    );
    let view = world.rt.user("ann").await.expect("ann");
    let devices: Vec<(String, bool)> = view
        .profile
        .expect("a profile")
        .devices
        .iter()
        .map(|d| (d.token.clone(), d.disabled))
        .collect();
    assert_eq!(
        devices,
        [("t1".to_string(), false), ("t2".to_string(), true)],
        "while the provider is down"
    );
    world.run(back, at("2026-12-01T18:00:00Z")).await;
    let steps: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
    assert_eq!(steps, ["push_reminder", "low_stock_email"]);
}

/// A send held by quiet hours holds back only itself: the same event's other journeys go on.
/// ann's cart event enters `a_thanks` (a push, quiet from 09:01) and `z_receipt` (a
/// transactional email). The push provider is down at 09:00, so the push fails before the
/// receipt's journey is reached; its retry, inside the quiet hours, holds the push to 20:00
/// and enters the receipt at once, which is sent then, not at 20:00. The push goes out once,
/// at 20:00. (Before, the held push stopped the event: the receipt waited for 20:00 too.)
#[tokio::test]
async fn a_held_send_does_not_hold_back_the_events_other_journeys() {
    let thanks = r#"
id: a_thanks
name: Thanks
trigger: {event: cart_abandoned}
quiet_hours: {start: "09:01", end: "20:00"}
steps:
  - id: thanks_push
    send: {push: {title: t, body: b}}
"#;
    let receipt = r#"
id: z_receipt
name: Receipt
trigger: {event: cart_abandoned}
transactional: true
steps:
  - id: receipt_email
    send: {email: {subject: s, text: t}}
"#;
    let world = World::new(
        thanks,
        Config::default(),
        Some(waymark::journey::Channel::Push),
    )
    .await;
    world
        .rt
        .catalog
        .publish(
            &journey(receipt),
            &world.rt.config.topics,
            world.clock.now(),
        )
        .await
        .expect("publish");
    world
        .run(at("2026-12-01T09:30:00Z"), at("2026-12-01T21:00:00Z"))
        .await;
    let sent = world.sent();
    let receipt_at = sent
        .iter()
        .find(|(_, step)| step == "receipt_email")
        .map(|(t, _)| *t);
    assert!(
        receipt_at.is_some_and(|t| t < at("2026-12-01T09:30:00Z")),
        "the receipt goes out at the push's first retry, not with the held push: {sent:?}"
    );
    let pushes: Vec<Timestamp> = sent
        .iter()
        .filter(|(_, step)| step == "thanks_push")
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(pushes, [at("2026-12-01T20:00:00Z")], "{sent:?}");
    assert_eq!(
        sent.iter()
            .filter(|(_, step)| step == "receipt_email")
            .count(),
        1,
        "{sent:?}"
    );
}

/// A send tried again after its provider was down is judged against her profile as it is
/// then: ann unsubscribes from push (an identify's `subscriptions`) while the push due at 09:30
/// waits for its provider, and it is skipped (`opted_out`) when the provider is back, not sent.
/// (Before, a retry sent the message as it was made, whatever she had chosen since.)
#[tokio::test]
async fn a_send_tried_again_after_she_opted_out_is_skipped() {
    let world = World::new(CART, Config::default(), None).await;
    world
        .run(at("2026-12-01T09:40:00Z"), at("2026-12-01T09:35:00Z"))
        .await;
    assert!(world.sent().is_empty(), "{:?}", world.sent());
    let limits = Limits::default();
    let body = br#"{"userId":"ann","messageId":"i2","traits":{"subscriptions":{"push":false}}}"#;
    let e = event::parse_call(event::Call::Identify, &body[..], world.clock.now(), &limits)
        .expect("event");
    world
        .queue
        .send(
            QueueName::Events,
            &[Outbound {
                message: Message::Event(Arc::new(e)),
                delay_secs: 0,
            }],
        )
        .await
        .expect("queue");
    world
        .run(at("2026-12-01T09:40:00Z"), at("2026-12-01T12:00:00Z"))
        .await;
    assert!(
        world.sent().iter().all(|(_, step)| step != "push_reminder"),
        "{:?}",
        world.sent()
    );
    let view = world.rt.user("ann").await.expect("ann");
    let skipped: Vec<(String, String)> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            waymark::timeline::What::Skipped { reason, .. } => {
                Some((e.step.as_deref().unwrap_or("").to_string(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [("push_reminder".to_string(), "opted_out".to_string())]
    );
}

/// A send tried again goes to her address on its channel as her profile has it then: the
/// email made at 09:00 for ann@example.com waits for its provider; she says at 09:01 that her
/// address is ann@new.example, and the retry sends it there. (Before, it went to the address
/// it was made for, which may no longer be hers.) Had she removed her address, it is skipped
/// (`no_address`), as the engine skips a send to a user without one.
#[tokio::test]
async fn a_send_tried_again_goes_to_her_address_now() {
    let welcome = r#"
id: welcome
name: Welcome
trigger: {event: cart_abandoned}
steps:
  - id: hello
    send: {email: {subject: s, text: t}}
"#;
    let back = at("2026-12-01T09:30:00Z");
    for (traits, expected) in [
        (r#"{"email":"ann@new.example"}"#, Some("ann@new.example")),
        (r#"{"email":null}"#, None),
    ] {
        let world = World::new(welcome, Config::default(), None).await;
        // Made at 09:00 for ann@example.com; its provider is down.
        world.run(back, at("2026-12-01T09:00:30Z")).await;
        assert_eq!(world.provider.calls.load(SeqCst), 1, "{traits}");
        assert!(world.sent().is_empty(), "{:?}", world.sent());
        world.clock.set(at("2026-12-01T09:01:00Z"));
        world.identify("i2", traits).await;
        world.run(back, at("2026-12-01T12:00:00Z")).await;
        let addressed = world.provider.addressed.lock().expect("lock").clone();
        match expected {
            Some(to) => {
                assert_eq!(
                    addressed,
                    [(
                        "hello".to_string(),
                        waymark::profile::Address::One(to.into())
                    )],
                    "{traits}"
                );
                assert_eq!(world.stamped().await.len(), 1, "{traits}");
                assert!(world.skipped().await.is_empty(), "{traits}");
                // Her timeline's `sent` says where it went, the new address, and the message's
                // id, its send's ledger key; the ledger keeps where it went, for a repeat of
                // the transition to say the same.
                let view = world.rt.user("ann").await.expect("ann");
                let sent: Vec<(String, Option<waymark::profile::Address>)> = view
                    .timeline
                    .iter()
                    .filter_map(|e| match &e.what {
                        waymark::timeline::What::Sent { id, to, .. } => {
                            Some((id.clone(), to.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                let id = "welcome:ann:1#hello#1";
                assert_eq!(
                    sent,
                    [(
                        id.to_string(),
                        Some(waymark::profile::Address::One(to.into()))
                    )],
                    "{traits}"
                );
                let key = waymark::store::Key::new("U#ann", format!("L#{id}").as_str());
                let ledger = waymark::store::Store::get(&world.store, &key)
                    .await
                    .expect("get")
                    .expect("the send's ledger record");
                assert_eq!(
                    ledger.parse::<waymark::runtime::Ledger>().expect("ledger"),
                    waymark::runtime::Ledger::Done {
                        outcome: waymark::runtime::Outcome::Sent {
                            at: world.stamped().await[0].1,
                            to: Some(waymark::profile::Address::One(to.into())),
                        }
                    },
                    "{traits}"
                );
            }
            None => {
                assert!(addressed.is_empty(), "{traits}: {addressed:?}");
                assert_eq!(
                    world.skipped().await,
                    [(
                        "hello".to_string(),
                        "no_address".to_string(),
                        "no address since the message was made (no `email` trait: an identify sets it); not sent when tried again".to_string()
                    )],
                    "{traits}"
                );
            }
        }
    }
}

/// A push tried again goes only to her devices not disabled now: at its first try (09:30, the
/// provider down) SNS answers t2 disabled (marked then) and t1 failed for a passing reason;
/// its retry tries t1 alone, and t2 keeps the time it was disabled, so the token sent again as
/// `context.device.token` a day after that brings it back then. (Before, each retry tried t2
/// again, and SNS's refusal moved its `disabled_at` on, up to the retries' six hours.)
#[tokio::test]
async fn a_push_tried_again_skips_the_devices_disabled_since() {
    let world = World::new(
        CART,
        Config::default(),
        Some(waymark::journey::Channel::Push),
    )
    .await;
    world
        .provider
        .uninstalled
        .lock()
        .expect("lock")
        .push("t2".into());
    world
        .identify(
            "i2",
            r#"{"push_tokens":[{"platform":"fcm","token":"t1"},{"platform":"apns","token":"t2"}]}"#,
        )
        .await;
    let back = at("2026-12-01T11:00:00Z");
    world.run(back, at("2026-12-01T18:00:00Z")).await;
    let tried = world.provider.tried.lock().expect("lock").clone();
    let (first, retries) = tried.split_first().expect("a first try");
    assert_eq!(first, &["t1".to_string(), "t2".to_string()]);
    assert!(!retries.is_empty());
    assert!(
        retries.iter().all(|t| t == &["t1".to_string()]),
        "{tried:?}"
    );
    let view = world.rt.user("ann").await.expect("ann");
    let devices: Vec<(String, bool, Option<Timestamp>)> = view
        .profile
        .expect("a profile")
        .devices
        .iter()
        .map(|d| (d.token.clone(), d.disabled, d.disabled_at))
        .collect();
    assert_eq!(
        devices,
        [
            ("t1".to_string(), false, None),
            ("t2".to_string(), true, Some(at("2026-12-01T09:30:00Z")))
        ]
    );
    let steps: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
    assert_eq!(steps, ["push_reminder", "low_stock_email"]);
}

/// A user erased who comes back (an identify after her erasure makes her a new profile, which
/// keeps when she was erased) is a new user: a send of hers made after the erasure and tried
/// again after its provider was down goes out. (Before, every retry of hers more than a minute
/// late was skipped `erased`, for the mark's time kept on her new profile.)
#[tokio::test]
async fn a_send_tried_again_for_a_user_back_after_her_erasure_goes_out() {
    let welcome = r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: hello
    send: {email: {subject: s, text: t}}
"#;
    let world = World::new(welcome, Config::default(), None).await;
    // Her first identify (and a cart no journey hears), then her erasure.
    world
        .run(at("2026-12-01T10:00:00Z"), at("2026-12-01T09:01:00Z"))
        .await;
    world.clock.set(at("2026-12-01T09:02:00Z"));
    for _ in 0..10 {
        if !world.rt.erase("ann").await.expect("erase").remaining {
            break;
        }
    }
    // She signs up again at 09:05; the email's provider is down until 09:30.
    world.clock.set(at("2026-12-01T09:05:00Z"));
    world.identify("i2", r#"{"email":"ann@example.org"}"#).await;
    let e = event::parse_call(
        event::Call::Track,
        br#"{"userId":"ann","event":"signed_up","messageId":"s2"}"#,
        world.clock.now(),
        &Limits::default(),
    )
    .expect("event");
    world
        .queue
        .send(
            QueueName::Events,
            &[Outbound {
                message: Message::Event(Arc::new(e)),
                delay_secs: 0,
            }],
        )
        .await
        .expect("queue");
    world
        .run(at("2026-12-01T09:30:00Z"), at("2026-12-01T12:00:00Z"))
        .await;
    let sent: Vec<String> = world.sent().into_iter().map(|(_, step)| step).collect();
    assert_eq!(sent, ["hello"], "skipped: {:?}", world.skipped().await);
}
