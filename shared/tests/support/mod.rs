//! Shared helpers for the journey tests: parse journey files, run them against a script of timed
//! events (through `simulate::run`, or a hand-built `Runtime` when a test needs to reach into the
//! store), and read what went out as one line per message.
#![allow(dead_code)] // each test crate uses its own part of these helpers

pub mod faulty;
pub mod view;

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use waymark::clock::{Clock, ManualClock};
use waymark::dsl;
use waymark::engine::Content;
use waymark::event::{self, Limits};
use waymark::journey::Journey;
use waymark::outbox::{OutboxLine, OutboxSender};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::runtime::{describe, Config, RunError, Runtime};
use waymark::simulate::{self, DelayQueue, Output};
use waymark::store::{Key, MemoryStore, Store};
use waymark::timeline::{Entry, What};

/// How long a simulation runs after the last scripted event (unless nothing is pending).
pub const HORIZON: SignedDuration = SignedDuration::from_hours(30 * 24);

/// A point in time, from RFC 3339.
pub fn at(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a timestamp: {e}"))
}

/// Parses a journey file; panics with the file:line:col errors when it is invalid.
pub fn journey(text: &str) -> Journey {
    dsl::parse("test.yaml", text).unwrap_or_else(|errs| {
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        panic!("invalid journey:\n{}", all.join("\n"))
    })
}

fn example(dir: &str, file: &str) -> String {
    let path = format!("{}/../examples/{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of `examples/journeys/<name>.yaml`.
pub fn example_journey(name: &str) -> String {
    example("journeys", &format!("{name}.yaml"))
}

/// The text of `examples/events/<name>.jsonl`.
pub fn example_events(name: &str) -> String {
    example("events", &format!("{name}.jsonl"))
}

/// A script of events, one JSON object a line, as `waymark simulate` reads it.
pub fn script_of(lines: &[serde_json::Value]) -> String {
    lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `journeys` against `script` with the default configuration for [`HORIZON`].
pub async fn sim(journeys: &[&str], script: &str) -> Vec<Output> {
    sim_with(journeys, script, Config::default(), HORIZON).await
}

/// Runs `journeys` against `script` with `config`, until `horizon` after the last event.
pub async fn sim_with(
    journeys: &[&str],
    script: &str,
    config: Config,
    horizon: SignedDuration,
) -> Vec<Output> {
    let journeys: Vec<Journey> = journeys.iter().map(|t| journey(t)).collect();
    let script = simulate::parse_script(script).unwrap_or_else(|e| panic!("bad script: {e}"));
    simulate::run(&journeys, &script, config, horizon)
        .await
        .unwrap_or_else(|e| panic!("simulation failed: {e}"))
}

/// What a message says in one line: the subject, title, body or request.
pub fn headline(content: &Content) -> String {
    match content {
        Content::Email { subject, .. } => subject.clone(),
        Content::Sms { body, .. } => body.clone(),
        Content::Push { title, .. } | Content::InApp { title, .. } => title.clone(),
        Content::Webhook { method, url, .. } => format!("{method} {url}"),
    }
}

/// `"<at> <user> <channel> <step>: <headline>"`.
pub fn line(m: &OutboxLine) -> String {
    format!(
        "{} {} {} {}: {}",
        m.at,
        m.user_id,
        m.channel,
        m.step,
        headline(&m.content)
    )
}

/// Every message that went out, one line each, in time order.
pub fn outbox(out: &[Output]) -> Vec<String> {
    simulate::messages(out).into_iter().map(line).collect()
}

/// The messages that went out to one user.
pub fn outbox_of(out: &[Output], user: &str) -> Vec<String> {
    simulate::messages(out)
        .into_iter()
        .filter(|m| &*m.user_id == user)
        .map(line)
        .collect()
}

/// The full messages that went out to one user.
pub fn messages_to<'a>(out: &'a [Output], user: &str) -> Vec<&'a OutboxLine> {
    simulate::messages(out)
        .into_iter()
        .filter(|m| &*m.user_id == user)
        .collect()
}

/// The timeline entries of one user, in time order.
pub fn entries<'a>(out: &'a [Output], user: &str) -> Vec<&'a Entry> {
    out.iter()
        .filter_map(|o| match o {
            Output::Timeline { user_id, entry } if user_id == user => Some(entry),
            _ => None,
        })
        .collect()
}

/// `"<at> <journey>/<step>: <fact>"`.
pub fn fact(e: &Entry) -> String {
    format!(
        "{} {}/{}: {}",
        e.at,
        e.journey,
        e.step.as_deref().unwrap_or("-"),
        describe(&e.what)
    )
}

/// The facts of one user that `keep` selects, one line each.
pub fn facts(out: &[Output], user: &str, keep: impl Fn(&What) -> bool) -> Vec<String> {
    entries(out, user)
        .into_iter()
        .filter(|e| keep(&e.what))
        .map(fact)
        .collect()
}

/// The `detail` of each of one user's entries that has one (a skip, a refusal, an unmet
/// `where`, a fallback), in time order.
pub fn details<'a>(out: &'a [Output], user: &str) -> Vec<&'a str> {
    entries(out, user)
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Skipped { detail, .. }
            | What::NotEntered { detail, .. }
            | What::Unmet { detail, .. }
            | What::FellBack { detail, .. } => detail.as_deref(),
            _ => None,
        })
        .collect()
}

/// Entries, exits, conversions, completions, skips and fallbacks: what a journey's outcome is.
pub fn outcome(w: &What) -> bool {
    matches!(
        w,
        What::Entered { .. }
            | What::Exited { .. }
            | What::Converted { .. }
            | What::Completed
            | What::HeldOut { .. }
            | What::Skipped { .. }
            | What::FellBack { .. }
    )
}

/// A journey that waits two hours after `signed_up`, then sends an email.
pub const REMIND: &str = r#"
id: remind
name: Remind
trigger: {event: signed_up}
steps:
  - id: later
    wait: 2h
  - id: nudge
    send:
      email: {subject: "Still there?", text: "Hi"}
"#;

/// A `Runtime` built by hand over the in-memory adapters, driven like `simulate::run` (queue
/// delays and scheduler ticks on a manual clock), for tests that publish between events or read
/// the store afterwards.
pub struct Harness {
    pub rt: Runtime,
    pub store: MemoryStore,
    pub queue: DelayQueue,
    pub clock: Arc<ManualClock>,
    pub lines: Arc<Mutex<Vec<OutboxLine>>>,
}

impl Harness {
    pub fn new(start: &str) -> Self {
        Self::with_config(start, Config::default())
    }

    pub fn with_config(start: &str, config: Config) -> Self {
        let clock = Arc::new(ManualClock::new(at(start)));
        let store = MemoryStore::new();
        let queue = DelayQueue::new(clock.clone());
        let (sender, lines) = OutboxSender::memory(clock.clone());
        let rt = Runtime::new(
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            Arc::new(sender),
            clock.clone(),
            std::time::Duration::from_secs(0),
            config,
        );
        Harness {
            rt,
            store,
            queue,
            clock,
            lines,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// This harness with its runtime going through `store` (a faulty one over the harness's
    /// own) and calling `sender` (one that fails or counts), on the harness's queue and clock.
    #[allow(dead_code)]
    pub fn with(self, store: Arc<dyn Store>, sender: Arc<dyn waymark::provider::Sender>) -> Self {
        let rt = Runtime::new(
            store,
            Arc::new(self.queue.clone()),
            sender,
            self.clock.clone(),
            std::time::Duration::from_secs(0),
            Config::default(),
        );
        Harness { rt, ..self }
    }

    /// Publishes a journey file now; returns its version.
    pub async fn publish(&self, text: &str) -> u32 {
        let (version, _) = self
            .rt
            .catalog
            .publish(&journey(text), &self.rt.config.topics, self.now())
            .await
            .expect("publish");
        version
    }

    /// Plays a script: each event is delivered at its `at`, after everything due before it.
    pub async fn play(&self, script: &str) {
        let lines = simulate::parse_script(script).unwrap_or_else(|e| panic!("bad script: {e}"));
        let limits = Limits {
            max_past: SignedDuration::from_hours(24 * 365),
            max_future: SignedDuration::from_hours(24 * 365),
        };
        for l in lines {
            self.advance_to(l.at).await;
            let call = l
                .payload
                .get("type")
                .and_then(|v| v.as_str())
                .and_then(event::Call::parse)
                .unwrap_or(event::Call::Track);
            let body = serde_json::to_vec(&l.payload).expect("payload");
            let ev = event::parse_call(call, &body, l.at, &limits)
                .unwrap_or_else(|e| panic!("bad event at {}: {e:?}", l.at));
            self.deliver(ev).await;
        }
    }

    /// Queues `ev` on the events queue and handles everything due now.
    pub async fn deliver(&self, ev: event::Event) {
        self.queue
            .send(
                QueueName::Events,
                &[Outbound {
                    message: Message::Event(std::sync::Arc::new(ev)),
                    delay_secs: 0,
                }],
            )
            .await
            .expect("queue");
        self.advance_to(self.now()).await;
    }

    /// Handles everything due up to `until` (queue messages and timers), then sets the clock there.
    pub async fn advance_to(&self, until: Timestamp) {
        self.advance(until, false).await
    }

    /// As [`Harness::advance_to`], over a store that fails on purpose: a scheduler run that
    /// fails is run again a minute later, as the deployed schedule would.
    #[allow(dead_code)]
    pub async fn advance_through_faults(&self, until: Timestamp) {
        self.advance(until, true).await
    }

    async fn advance(&self, until: Timestamp, faults: bool) {
        for _ in 0..1_000_000 {
            let now = self.now();
            let due = self.queue.take_due(now);
            if !due.is_empty() {
                for (m, r) in due.iter().zip(self.rt.handle_batch(&due).await) {
                    if let Err(e) = r {
                        panic!("message {} failed at {now}: {e}", m.id());
                    }
                }
                continue;
            }
            let timer_tick = next_timer(&self.store).map(|d| {
                (d - SignedDuration::from_secs(60)).min(now + SignedDuration::from_hours(24))
            });
            let next = [self.queue.next_due(), timer_tick]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.clock.set(until.max(now));
                return;
            };
            let next = next.max(now);
            self.clock.set(next);
            if timer_tick.is_some_and(|t| t <= next) {
                let moved = match tick(&self.rt, &self.store).await {
                    Ok(moved) => moved,
                    Err(e) if faults => {
                        eprintln!("a scheduler run failed at {next}: {e}");
                        0
                    }
                    Err(e) => panic!("tick: {e}"),
                };
                if moved == 0 && self.queue.next_due().is_none_or(|d| d > next) {
                    self.clock.set(next + SignedDuration::from_secs(60));
                }
            }
        }
        panic!("the harness did not settle");
    }

    /// Every message that went out so far, one line each.
    pub fn outbox(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(line)
            .collect()
    }
}

/// Ticks the scheduler, again at the same instant while its cursor lags behind the clock (a tick
/// catches up at most a day), until it moves a timer or has caught up. Returns the timers moved.
pub async fn tick(rt: &Runtime, store: &MemoryStore) -> Result<usize, RunError> {
    let minute = rt.clock.now().as_second().div_euclid(60);
    let mut moved = 0;
    for _ in 0..400 {
        moved += rt.tick().await?.moved;
        let cursor = store
            .get(&Key::new("SCHED", "cursor"))
            .await?
            .and_then(|r| r.parse::<i64>().ok());
        if moved > 0 || cursor.is_none_or(|c| c > minute) {
            break;
        }
    }
    Ok(moved)
}

/// When the earliest timer in the store is due.
pub fn next_timer(store: &MemoryStore) -> Option<Timestamp> {
    store
        .dump()
        .iter()
        .filter(|r| r.key.pk.starts_with("T#"))
        .filter_map(|r| r.parse::<Message>().ok().and_then(|m| m.due()))
        .min()
}
