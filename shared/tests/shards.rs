//! Timer and fold partitions (`Config::timer_shards`, the `Shards` template parameter): the
//! functions write with the count they are configured with; the scheduler sweeps and folds, and
//! the stats are read from, every partition any of them wrote to (the high-water mark), so
//! changing the count, either way, strands no timer, timeline record or counter.

mod support;

use std::sync::Arc;

use support::{at, Harness, REMIND};
use waymark::runtime::{Config, Runtime};
use waymark::store::{Key, Store};

fn with_shards(n: u32) -> Config {
    Config {
        timer_shards: n,
        ..Config::default()
    }
}

/// The shard of each timer in the store (`T#{minute}#{shard}`).
fn timer_shards(h: &Harness) -> Vec<u32> {
    h.store
        .dump()
        .iter()
        .filter_map(|r| r.key.pk.strip_prefix("T#"))
        .filter_map(|pk| pk.rsplit('#').next()?.parse().ok())
        .collect()
}

/// The stored records whose sort key is `sk`, in every partition.
fn records_keyed(h: &Harness, sk: &str) -> Vec<waymark::store::Record> {
    h.store
        .dump()
        .into_iter()
        .filter(|r| r.key.sk.as_str() == sk)
        .collect()
}

async fn mark(h: &Harness) -> Option<u32> {
    h.store
        .get(&Key::new("SCHED", "shards"))
        .await
        .expect("read")
        .map(|r| r.parse().expect("a count"))
}

/// Deployed with 64 partitions, then redeployed with 4 while 40 users wait two hours: the
/// lowered functions sweep the timers, fold the timeline records and read the counters the
/// raised ones wrote, in partitions past their own count and past the default 16.
#[tokio::test]
async fn a_count_lowered_after_a_raise_still_reaches_every_partition_written() {
    let base = Harness::with_config("2026-12-01T10:00:00Z", with_shards(64));
    base.publish(REMIND).await;
    assert_eq!(
        mark(&base).await,
        None,
        "nothing past the default written yet"
    );
    let mut script = String::new();
    for i in 0..40 {
        script.push_str(&format!(
            "{{\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"identify\",\"userId\":\"u{i}\",\"traits\":{{\"email\":\"u{i}@example.com\"}}}}\n\
             {{\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"track\",\"userId\":\"u{i}\",\"event\":\"signed_up\"}}\n"
        ));
    }
    base.play(&script).await;
    let shards = timer_shards(&base);
    assert_eq!(
        shards.len(),
        40,
        "a timer a user: two hours is past the queue's hops"
    );
    assert!(
        shards.iter().any(|s| *s >= 16),
        "some timers past the default partitions: {shards:?}"
    );
    assert_eq!(mark(&base).await, Some(64));

    // The same stack, its functions now configured with 4.
    let lowered = Runtime::new(
        Arc::new(base.store.clone()),
        Arc::new(base.queue.clone()),
        base.rt.sender.clone(),
        base.clock.clone(),
        std::time::Duration::from_secs(0),
        with_shards(4),
    );
    let h = Harness {
        rt: lowered,
        ..base
    };
    assert_eq!(h.rt.shards_in_use().await.expect("shards"), 64);
    h.advance_to(at("2026-12-01T12:05:00Z")).await;
    assert_eq!(h.outbox().len(), 40, "every user's email went out");
    assert!(timer_shards(&h).is_empty(), "no timer left behind");
    h.rt.fold_stats().await.expect("fold");
    let stats = h.rt.stats("remind").await.expect("stats");
    assert_eq!(stats.get("entered"), Some(&40), "{stats:?}");
    assert_eq!(stats.get("completed"), Some(&40), "{stats:?}");
    // Lowering does not lower the mark.
    assert_eq!(mark(&h).await, Some(64));
}

/// A process at the default count, or below it, writes no mark and reads every default
/// partition (a deployment before the count could be set wrote to all 16); one above it notes
/// its count once, before its first write, and never lowers a higher mark.
#[tokio::test]
async fn the_mark_is_written_only_past_the_default_and_only_raised() {
    let low = Harness::with_config("2026-12-01T10:00:00Z", with_shards(4));
    low.publish(REMIND).await;
    low.play(r#"{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"signed_up"}"#)
        .await;
    assert_eq!(mark(&low).await, None);
    assert_eq!(low.rt.shards_in_use().await.expect("shards"), 16);

    let raised = |n: u32| {
        Runtime::new(
            Arc::new(low.store.clone()),
            Arc::new(low.queue.clone()),
            low.rt.sender.clone(),
            low.clock.clone(),
            std::time::Duration::from_secs(0),
            with_shards(n),
        )
    };
    let h24 = Harness {
        rt: raised(24),
        store: low.store.clone(),
        queue: low.queue.clone(),
        clock: low.clock.clone(),
        lines: low.lines.clone(),
    };
    h24.play(r#"{"at":"2026-12-01T10:01:00Z","type":"track","userId":"bob","event":"signed_up"}"#)
        .await;
    assert_eq!(mark(&h24).await, Some(24));
    let h20 = Harness {
        rt: raised(20),
        ..h24
    };
    h20.play(r#"{"at":"2026-12-01T10:02:00Z","type":"track","userId":"cy","event":"signed_up"}"#)
        .await;
    assert_eq!(mark(&h20).await, Some(24));
    assert_eq!(h20.rt.shards_in_use().await.expect("shards"), 24);
}

/// A timer this engine cannot read (a newer engine's, written during a rollout) is put off an
/// hour, body and all, for the engine then running; the minute's other timers go on.
#[tokio::test]
async fn a_timer_the_sweep_cannot_read_is_put_off_not_dropped() {
    use waymark::store::{Body, Expect, Record};
    let h = Harness::new("2026-12-01T10:00:00Z");
    h.publish(REMIND).await;
    h.play(
        "{\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"identify\",\"userId\":\"ann\",\"traits\":{\"email\":\"ann@example.com\"}}\n\
         {\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"track\",\"userId\":\"ann\",\"event\":\"signed_up\"}\n",
    )
    .await;
    // Ann's wait of two hours is a timer at 12:00; beside it, one from a newer engine.
    let minute = at("2026-12-01T12:00:00Z").as_second() / 60;
    let body = br#"{"kind":"from_a_newer_engine","user_id":"bo"}"#;
    let foreign = Record {
        key: Key::new(format!("T#{minute}#0"), "newer:bo"),
        version: 1,
        body: Body::Json(bytes::Bytes::from_static(body)),
        expires: None,
        pending: None,
        parts_counted: 0,
        sealed: false,
    };
    h.store.put(&foreign, Expect::Any).await.expect("put");
    h.advance_to(at("2026-12-01T12:30:00Z")).await;
    assert_eq!(h.lines.lock().expect("lines").len(), 1, "ann's reminder");
    let kept = records_keyed(&h, "newer:bo");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].key.pk.as_str(), format!("T#{}#0", minute + 60));
    assert_eq!(kept[0].body.json().expect("json").as_ref(), &body[..]);
    // Put off an hour at a time for a day (a rollout is over by then), then kept aside, body
    // and all. (The harness ticks for the timers it can read: the scheduler's minutes are
    // run here, an hour a tick.)
    for hour in 1..=26 {
        h.clock
            .set(at("2026-12-01T12:30:00Z") + jiff::SignedDuration::from_hours(hour));
        h.rt.tick().await.expect("tick");
    }
    let kept = records_keyed(&h, "newer:bo");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].key.pk.as_str(), waymark::runtime::DEAD_TIMERS);
    assert_eq!(kept[0].version, 24);
    assert_eq!(kept[0].body.json().expect("json").as_ref(), &body[..]);
}

/// A tick that catches up hours (`waymark dev` at high speed) puts an unreadable timer off
/// past every minute it sweeps, where the next tick finds it.
#[tokio::test]
async fn a_timer_put_off_in_a_long_catch_up_is_swept_again() {
    use waymark::store::{Body, Expect, Record};
    let h = Harness::with_config(
        "2026-12-01T10:00:00Z",
        Config {
            timer_shards: 1,
            ..Config::default()
        },
    );
    h.rt.tick().await.expect("the first minute");
    let minute = at("2026-12-01T12:00:00Z").as_second() / 60;
    let foreign = Record {
        key: Key::new(format!("T#{minute}#0"), "newer:bo"),
        version: 1,
        body: Body::Json(bytes::Bytes::from_static(
            br#"{"kind":"from_a_newer_engine"}"#,
        )),
        expires: None,
        pending: None,
        parts_counted: 0,
        sealed: false,
    };
    h.store.put(&foreign, Expect::Any).await.expect("put");
    // One tick from 10:00 to 14:00.
    h.clock.set(at("2026-12-01T14:00:00Z"));
    h.rt.tick().await.expect("tick");
    let cursor: i64 = h
        .store
        .get(&Key::new("SCHED", "cursor"))
        .await
        .expect("read")
        .expect("a cursor")
        .parse()
        .expect("a minute");
    let kept: Vec<String> = records_keyed(&h, "newer:bo")
        .into_iter()
        .map(|r| r.key.pk.to_string())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let put_to: i64 = kept[0]
        .strip_prefix("T#")
        .and_then(|k| k.strip_suffix("#0"))
        .and_then(|m| m.parse().ok())
        .expect("a timer partition");
    assert!(
        put_to >= cursor,
        "put off to {put_to}, swept up to {cursor}"
    );
}

/// A queue that refuses any message of bo's, as SQS refuses one over its size.
struct RefusesBo(waymark::simulate::DelayQueue);

#[async_trait::async_trait]
impl waymark::queue::Queue for RefusesBo {
    async fn send(
        &self,
        queue: waymark::queue::QueueName,
        messages: &[waymark::queue::Outbound],
    ) -> Result<(), waymark::queue::QueueError> {
        if messages.iter().any(|m| m.message.user_id() == "bo") {
            return Err(waymark::queue::QueueError::Rejected(
                "message is over SQS's size".into(),
            ));
        }
        self.0.send(queue, messages).await
    }
}

/// A timer whose message its queue refuses is kept aside, and the others of its minute (in the
/// same batch to the queue) go on: the sweep does not stop at that minute.
#[tokio::test]
async fn a_timer_its_queue_refuses_is_kept_aside_and_holds_up_no_other() {
    use waymark::clock::ManualClock;
    use waymark::queue::Message;
    use waymark::store::{Expect, MemoryStore, Record};
    let clock = Arc::new(ManualClock::new(at("2026-12-01T10:00:00Z")));
    let store = MemoryStore::new();
    let queue = waymark::simulate::DelayQueue::new(clock.clone());
    let (sender, _) = waymark::outbox::OutboxSender::memory(clock.clone());
    let rt = Runtime::new(
        Arc::new(store.clone()),
        Arc::new(RefusesBo(queue.clone())),
        Arc::new(sender),
        clock.clone(),
        std::time::Duration::ZERO,
        Config {
            timer_shards: 1,
            ..Config::default()
        },
    );
    rt.tick().await.expect("the first minute");
    let due = at("2026-12-01T12:00:00Z");
    let minute = due.as_second() / 60;
    for user in ["ann", "bo", "cy"] {
        let m = Message::Wake {
            user_id: user.into(),
            journey: "remind".into(),
            enrollment: format!("remind:{user}:1").into(),
            seq: 2,
            at: due,
        };
        let record = Record::new(Key::new(format!("T#{minute}#0"), m.id()), 1, &m).expect("record");
        store.put(&record, Expect::Any).await.expect("put");
    }
    clock.set(at("2026-12-01T11:59:00Z"));
    support::tick(&rt, &store).await.expect("the sweep goes on");
    let queued: Vec<String> = queue
        .take_due(at("2026-12-02T00:00:00Z"))
        .iter()
        .map(|m| m.user_id().to_string())
        .collect();
    assert_eq!(queued, ["ann", "cy"]);
    let timers: Vec<(String, String)> = store
        .dump()
        .into_iter()
        .filter(|r| r.key.pk.starts_with("T#"))
        .map(|r| (r.key.pk.to_string(), r.key.sk.to_string()))
        .collect();
    assert!(timers.is_empty(), "{timers:?}");
    // Refused, it would be refused again: kept aside at once.
    let dead: Vec<String> = store
        .dump()
        .into_iter()
        .filter(|r| r.key.pk.as_str() == waymark::runtime::DEAD_TIMERS)
        .map(|r| r.key.sk.to_string())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("bo"), "{dead:?}");
}

/// The fold partitions' listing lags the records as DynamoDB's index may, listing again what
/// the run has just folded: the fold skips those, rather than see its chunk conflict and fold
/// it a record a transaction.
#[tokio::test]
async fn a_fold_skips_what_a_lagging_listing_shows_again() {
    use waymark::store::{Expect, Part, Record};
    use waymark::timeline::{Entry, What};
    let (h, faulty) = support::faulty::faulty_harness();
    let users = 1_200;
    for i in 0..users {
        let user = format!("u{i}");
        let entries = vec![Entry {
            at: h.now(),
            journey: "cart".into(),
            enrollment: format!("cart:{user}:1").into(),
            step: Some("wait".into()),
            what: What::Step,
        }];
        let record = Record::of(Key::new(Part::join(&["U#", &user]), "T#1"), 1, entries)
            .pending_in(Part::from("F#0"));
        faulty
            .inner
            .put(&record, Expect::Absent)
            .await
            .expect("put");
    }
    *faulty.lagging.lock().expect("lagging") = Some(Default::default());
    faulty.take_calls();
    h.rt.tick().await.expect("tick");
    let folds = faulty.take_calls().get("fold").copied().unwrap_or(0);
    let stats = h.rt.stats("cart").await.expect("stats");
    assert_eq!(stats.get("step.wait.entered"), Some(&(users as i64)));
    // A chunk a transaction (at most 100 records each), no record alone.
    assert!(folds <= users / 50, "{folds} fold transactions");
}
