//! Engine benchmarks: step transitions per second, for the pure engine alone and for the runtime
//! over the in-memory store (100,000 users through the cart journey on a virtual clock).
//! `make bench` runs them; the README quotes the figures with the machine they came from.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jiff::{SignedDuration, Timestamp};
use waymark::clock::ManualClock;
use waymark::engine::{self, Ctx};
use waymark::enrollment::TriggerEvent;
use waymark::event::{Event, Kind};
use waymark::outbox::OutboxSender;
use waymark::profile::Profile;
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::runtime::{Config, Runtime};
use waymark::simulate::DelayQueue;
use waymark::store::MemoryStore;

/// As in the binaries (`waymark`, the Lambda functions).
#[global_allocator]
static ALLOC: waymark::alloc::Mimalloc = waymark::alloc::Mimalloc;

const CART: &str = include_str!("../../examples/journeys/cart_abandonment.yaml");

fn start() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().expect("timestamp")
}

fn profile(user: &str) -> Profile {
    let mut p = Profile::new(user);
    p.traits
        .insert("email".into(), format!("{user}@example.com").into());
    p.traits.insert("first_name".into(), "Ann".into());
    p.devices.push(waymark::profile::Device {
        platform: "fcm".into(),
        token: format!("tok-{user}"),
        endpoint: None,
        disabled: false,
        revived: false,
        registered_at: None,
        disabled_at: None,
        source: Default::default(),
    });
    p
}

fn cart_event() -> serde_json::Value {
    serde_json::json!({"cart_id": "c1", "total": 89.9, "currency": "EUR",
        "items": [{"name": "Trail shoes", "price": 79.9, "stock": 3}, {"name": "Socks", "price": 10, "stock": 40}]})
}

/// The pure engine: enter, wake after 30 minutes (push), wake after 4 hours (email).
fn pure(c: &mut Criterion) {
    let journey = waymark::dsl::parse("cart.yaml", CART).expect("valid journey");
    let p = profile("u1");
    // The trigger's properties as the runtime hands them over: parsed once, shared.
    let properties = std::sync::Arc::new(cart_event());
    let mut g = c.benchmark_group("engine");
    // 5 step transitions per user: wait_30m, push_reminder, wait_4h, low_stock_email, end.
    g.throughput(Throughput::Elements(5));
    g.bench_function("cart_user_pure", |b| {
        b.iter(|| {
            let t0 = start();
            let ctx = Ctx {
                journey: &journey,
                version: 1,
                profile: &p,
                now: t0,
                unsubscribe_url: None,
                topics: waymark::topic::Declared::NONE,
                set_meanwhile: &[],
            };
            let trigger = TriggerEvent {
                event: "cart_abandoned".into(),
                message_id: "m1".into(),
                at: t0,
                properties: properties.clone(),
            };
            let t = engine::enter(&ctx, "u1", 1, trigger);
            let ctx = Ctx {
                now: t0 + SignedDuration::from_mins(30),
                ..ctx
            };
            let t = engine::wake(&ctx, &t.enrollment, t.enrollment.seq).expect("due");
            let ctx = Ctx {
                now: t0 + SignedDuration::from_mins(270),
                ..ctx
            };
            engine::wake(&ctx, &t.enrollment, t.enrollment.seq).expect("due")
        })
    });
    g.finish();
}

/// The runtime over the in-memory store: N users through the cart journey, on a virtual clock.
async fn run_users(n: usize) -> (usize, std::time::Duration) {
    let clock = Arc::new(ManualClock::new(start()));
    let store = MemoryStore::new();
    let queue = DelayQueue::new(clock.clone());
    let (sender, lines) = OutboxSender::memory(clock.clone());
    let rt = Runtime::new(
        Arc::new(store.clone()),
        Arc::new(queue.clone()),
        Arc::new(sender),
        clock.clone(),
        std::time::Duration::from_secs(3600),
        Config::default(),
    );
    let journey = waymark::dsl::parse("cart.yaml", CART).expect("valid journey");
    rt.catalog
        .publish(&journey, &rt.config.topics, start())
        .await
        .expect("publish");
    // The users' events are made before the clock starts: the figure is the engine's, not the
    // script's.
    let mut batch = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("u{i}");
        let mut identify = serde_json::Map::new();
        identify.insert("email".into(), format!("{user}@example.com").into());
        identify.insert(
            "push_tokens".into(),
            serde_json::json!([{"platform": "fcm", "token": format!("t{i}")}]),
        );
        for (kind, name, props, traits) in [
            (Kind::Identify, None, serde_json::Map::new(), identify),
            (
                Kind::Track,
                Some("cart_abandoned".to_string()),
                cart_event().as_object().cloned().unwrap_or_default(),
                serde_json::Map::new(),
            ),
        ] {
            batch.push(Outbound {
                message: Message::Event(std::sync::Arc::new(Event {
                    kind,
                    message_id: format!("{user}-{kind:?}"),
                    user_id: user.clone(),
                    anonymous_id: None,
                    event: name,
                    properties: std::sync::Arc::new(serde_json::Value::Object(props)),
                    traits,
                    context: Default::default(),
                    timestamp: start(),
                    received_at: start(),
                    refused: Vec::new(),
                })),
                delay_secs: 0,
            });
        }
    }
    let began = Instant::now();
    queue.send(QueueName::Events, &batch).await.expect("queue");
    // The queue holds the events now (shared with the batch, as the in-memory queue shares every
    // message it is given; SQS would hold serialized copies).
    drop(batch);
    let mut now = start();
    let end = start() + SignedDuration::from_hours(6);
    while now <= end {
        loop {
            let due = queue.take_due(now);
            if due.is_empty() {
                break;
            }
            // Ten at a time, as SQS hands them to the engine; each batch is dropped once handled.
            let mut due = due.into_iter();
            loop {
                let chunk: Vec<Message> = due.by_ref().take(10).collect();
                if chunk.is_empty() {
                    break;
                }
                for r in rt.handle_batch(&chunk).await {
                    r.expect("handled");
                }
            }
        }
        rt.tick().await.expect("tick");
        now += SignedDuration::from_secs(60);
        clock.set(now);
    }
    let sent = lines.lock().map(|l| l.len()).unwrap_or(0);
    (sent, began.elapsed())
}

/// The process's peak resident memory so far (`VmHWM`), as Linux reports it.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}

fn runtime(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let users: usize = std::env::var("WAYMARK_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // One measured pass, reported the way the README quotes it.
    let (sent, took) = rt.block_on(run_users(users));
    assert_eq!(sent, users * 2, "every user gets a push and an email");
    let transitions = users * 5;
    println!(
        "runtime/cart_{users}_users: {transitions} step transitions and {sent} messages in {:.2} s = {:.0} transitions/s (one core, in-memory store), peak memory {}",
        took.as_secs_f64(),
        transitions as f64 / took.as_secs_f64(),
        peak_memory()
    );
    let mut g = c.benchmark_group("runtime");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000 * 5));
    g.bench_function("cart_1000_users_memory_store", |b| {
        b.iter(|| rt.block_on(run_users(1_000)))
    });
    g.finish();
}

criterion_group!(benches, pure, runtime);
criterion_main!(benches);
