//! One run: the real `Runtime` as two engine workers and a scheduler, each with its own skewed
//! clock and fault-injecting ports over one store, one simulated SQS and one provider; a driver
//! that feeds the workload through intake, hands out batches (two at a time, interleaved) and
//! moves the virtual clock until everything is quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use waymark::auth::Signer;
use waymark::clock::{Clock, ManualClock};
use waymark::event::{self, Kind, Limits};
use waymark::journey::{Channel, Journey};
use waymark::queue::{Message, QueueName};
use waymark::runtime::{Cap, Config, Handled, RunError, Runtime};
use waymark::store::{Expect, Key, MemoryStore, Record, Store};

use crate::lab::{lock, Lab, Rates, Shared};
use crate::ports::{FaultyQueue, FaultySender, FaultyStore, SkewedClock, StoreFaults};
use crate::rng::Rng;
use crate::script::{Line, Workload};

pub const ENGINE_A: usize = 0;
pub const ENGINE_B: usize = 1;
pub const SCHEDULER: usize = 2;
/// Worker clocks differ from the true time by up to this much.
pub const MAX_SKEW_MS: i64 = 3_000;
/// How many port calls one message takes, roughly: crash points are drawn within this.
const CALLS_PER_MESSAGE: u32 = 30;

/// An event intake accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub user: String,
    pub kind: Kind,
    pub event: Option<String>,
    pub timestamp: Timestamp,
}

/// Something that must never happen, by class.
#[derive(Debug, Clone)]
pub struct Violation {
    pub class: &'static str,
    pub detail: String,
}

pub struct World {
    pub lab: Shared,
    pub clock: ManualClock,
    pub store: MemoryStore,
    pub workers: Vec<Runtime>,
    pub accepted: BTreeMap<String, Accepted>,
    /// When each event message was first handled successfully.
    pub handled: BTreeMap<String, Timestamp>,
    pub violations: Vec<Violation>,
    pub redrives: usize,
    pub steps: u64,
    pub checkpoints: u32,
    /// Wake-ups found queued more than once for one pending visit, at the checkpoints.
    pub extra_wakeups: u64,
    /// When the scheduler last ran (it may start the schedules of the minute it runs in).
    pub last_tick: Option<Timestamp>,
    /// The minutes each scheduler run finished (from, until: its cursor before and after) and
    /// its own minute: a schedule's firing it reached once a later one was due is not started.
    pub scheduler_runs: Vec<(i64, i64, i64)>,
    /// The (journey, step) of every in-app send of the journeys.
    pub in_app_steps: BTreeSet<(String, String)>,
}

/// engine-b writes timers and timeline records over more shards than the default and than the
/// others (a deployment part-way through raising `Shards`): the scheduler, configured with 2,
/// must still sweep, fold and count what it wrote, through the high-water mark engine-b notes
/// under faults like any other write.
pub const ENGINE_B_SHARDS: u32 = 20;

pub fn config() -> Config {
    let mut caps = BTreeMap::new();
    let per = |s: &str| s.parse().expect("a valid duration");
    caps.insert(
        Channel::Push,
        Cap {
            max: 3,
            per: per("1d"),
        },
    );
    caps.insert(
        Channel::Sms,
        Cap {
            max: 2,
            per: per("7d"),
        },
    );
    Config {
        // Fewer shards than the default, which the scheduler sweeps all the same (16 at least,
        // and as many as engine-b writes with: see [`ENGINE_B_SHARDS`]).
        timer_shards: 2,
        caps,
        public_url: Some("https://waymark.test".into()),
        signer: Some(Arc::new(Signer::new("fault-harness-secret"))),
        ..Config::default()
    }
}

impl World {
    pub async fn new(seed: u64, rates: Rates, start: Timestamp, journeys: &[Journey]) -> Self {
        let lab: Shared = Arc::new(Mutex::new(Lab::new(
            seed,
            rates,
            &["engine-a", "engine-b", "scheduler"],
        )));
        let clock = ManualClock::new(start);
        let store = MemoryStore::new();
        let mut workers = Vec::new();
        for worker in [ENGINE_A, ENGINE_B, SCHEDULER] {
            let offset = {
                let mut lab = lock(&lab);
                SignedDuration::from_millis(lab.rng.between(-MAX_SKEW_MS, MAX_SKEW_MS))
            };
            workers.push(Runtime::new(
                Arc::new(FaultyStore::new(
                    store.clone(),
                    StoreFaults {
                        lab: lab.clone(),
                        worker,
                    },
                )),
                Arc::new(FaultyQueue {
                    lab: lab.clone(),
                    worker,
                    clock: clock.clone(),
                }),
                Arc::new(FaultySender {
                    lab: lab.clone(),
                    worker,
                    clock: clock.clone(),
                }),
                Arc::new(SkewedClock {
                    base: clock.clone(),
                    offset,
                }),
                std::time::Duration::ZERO,
                if worker == ENGINE_B {
                    Config {
                        timer_shards: ENGINE_B_SHARDS,
                        ..config()
                    }
                } else {
                    config()
                },
            ));
        }
        for j in journeys {
            workers[ENGINE_A]
                .catalog
                .publish(j, &workers[ENGINE_A].config.topics, start)
                .await
                .expect("publish with faults off");
        }
        // The scheduler has run since the stack was deployed: its cursor exists before any timer.
        workers[SCHEDULER]
            .tick()
            .await
            .expect("a first tick with faults off");
        lock(&lab).enabled = true;
        World {
            lab,
            clock,
            store,
            workers,
            accepted: BTreeMap::new(),
            handled: BTreeMap::new(),
            violations: Vec::new(),
            redrives: 0,
            steps: 0,
            checkpoints: 0,
            extra_wakeups: 0,
            last_tick: None,
            scheduler_runs: Vec::new(),
            in_app_steps: journeys
                .iter()
                .flat_map(|j| {
                    j.steps.iter().filter_map(|s| {
                        let send = s.send.as_ref()?;
                        (send.template()?.channel() == Channel::InApp)
                            .then(|| (j.id.clone(), s.id.clone()))
                    })
                })
                .collect(),
        }
    }

    pub fn violation(&mut self, class: &'static str, detail: String) {
        self.violations.push(Violation { class, detail });
    }

    /// Intake: validates the request as the API does and queues the event.
    fn intake(&mut self, line: &Line) {
        let now = self.clock.now();
        let body = serde_json::to_vec(&line.body).unwrap_or_default();
        match event::parse_single(line.kind, &body, now, &Limits::default()) {
            Ok(e) => {
                self.accepted
                    .entry(e.message_id.clone())
                    .or_insert_with(|| Accepted {
                        user: e.user_id.clone(),
                        kind: e.kind,
                        event: e.event.clone(),
                        timestamp: e.timestamp,
                    });
                lock(&self.lab).enqueue(
                    QueueName::Events,
                    Message::Event(std::sync::Arc::new(e)),
                    now,
                );
            }
            Err(errors) => self.violation(
                "harness",
                format!(
                    "intake rejected scripted message {}: {errors:?}",
                    line.message_id
                ),
            ),
        }
    }

    fn take_batch(&self, now: Timestamp) -> Vec<(u64, Message)> {
        let mut lab = lock(&self.lab);
        let first = if lab.rng.chance(0.5) {
            QueueName::Events
        } else {
            QueueName::Steps
        };
        let other = match first {
            QueueName::Events => QueueName::Steps,
            QueueName::Steps => QueueName::Events,
        };
        let size = lab.rng.between(1, 10) as usize;
        let batch = lab.receive(first, size, now);
        if batch.is_empty() {
            lab.receive(other, size, now)
        } else {
            batch
        }
    }

    /// One engine invocation: the real batch handler, with a crash point maybe.
    async fn run_batch(
        &self,
        worker: usize,
        batch: &[(u64, Message)],
    ) -> (Vec<Result<Handled, RunError>>, bool) {
        if batch.is_empty() {
            return (Vec::new(), false);
        }
        let expected = CALLS_PER_MESSAGE * batch.len() as u32;
        lock(&self.lab).begin_batch(worker, expected);
        let messages: Vec<Message> = batch.iter().map(|(_, m)| m.clone()).collect();
        let results = self.workers[worker].handle_batch(&messages).await;
        let dead = lock(&self.lab).end_batch(worker);
        (results, dead)
    }

    /// Deletes what succeeded; what failed (all of it, if the worker died) comes back later.
    fn settle(
        &mut self,
        batch: &[(u64, Message)],
        results: Vec<Result<Handled, RunError>>,
        dead: bool,
    ) {
        let now = self.clock.now();
        if crate::lab::trace() >= 2 {
            for ((_, m), r) in batch.iter().zip(&results) {
                eprintln!("{now} {} dead={dead}: {m:?} -> {r:?}", m.id());
            }
        }
        for ((id, m), r) in batch.iter().zip(results) {
            match (&r, dead) {
                (Ok(handled), false) => {
                    lock(&self.lab).ack(*id);
                    // Applied (not only queued again for later): an event, or a retry of one.
                    let event = match m {
                        Message::Retry { message, .. } => message.as_ref(),
                        m => m,
                    };
                    if let (Handled::Done, Message::Event(e)) = (handled, event) {
                        self.handled.entry(e.message_id.clone()).or_insert(now);
                    }
                }
                (Err(RunError::Poison(why)), _) => {
                    self.violation("poison", format!("{} was poison: {why}", m.id()));
                    lock(&self.lab).nack(*id);
                }
                _ => lock(&self.lab).nack(*id),
            }
        }
    }

    /// The scheduler's minute. The real scheduler runs every minute; the driver runs it only when
    /// a timer is near or the schedule journey fires, and first moves its cursor over the idle
    /// minutes in between, as the runs it skipped would have (they had no timer to move and
    /// started no schedule). A run that failed leaves the cursor behind: the next catches up.
    async fn tick(&mut self) {
        let now = self.clock.now();
        self.last_tick = Some(now);
        if crate::lab::trace() >= 3 {
            eprintln!("tick at {now}");
        }
        let earliest = lock(&self.lab)
            .timers
            .values()
            .filter_map(Message::due)
            .min();
        let idle_until = (now.as_second().div_euclid(60) - 1)
            .min(earliest.map_or(i64::MAX, |t| t.as_second().div_euclid(60)));
        let key = Key::new("SCHED", "cursor");
        if let Ok(Some(r)) = self.store.get(&key).await {
            let cursor: i64 = r.parse().unwrap_or(i64::MAX);
            // Not past a minute the schedule journey fires at for some user.
            // (The cursor is the next minute the scheduler sweeps.)
            let idle_until = idle_until.min(next_firing(cursor) - 1);
            if cursor < idle_until {
                let moved = Record::new(key, r.version + 1, &idle_until).expect("a cursor");
                let _ = self.store.put(&moved, Expect::Version(r.version)).await;
            }
        }
        let from = cursor(&self.store).await;
        let minute = self.workers[SCHEDULER]
            .clock
            .now()
            .as_second()
            .div_euclid(60);
        lock(&self.lab).begin_batch(SCHEDULER, 12);
        let _ = self.workers[SCHEDULER].tick().await;
        lock(&self.lab).end_batch(SCHEDULER);
        if let (Some(from), Some(until)) = (from, cursor(&self.store).await) {
            self.scheduler_runs.push((from, until, minute));
        }
    }

    /// When the scheduler should next run: a minute before the earliest timer or at the next
    /// minute the schedule journey fires, at most a minute after its last run, at least every
    /// six hours while timers wait.
    fn tick_at(&self, last: Timestamp) -> Option<Timestamp> {
        let lab = lock(&self.lab);
        let earliest = lab.timers.values().filter_map(Message::due).min()?;
        // Also at the next minute the schedule journey fires at, so that the scheduler sees it
        // without catching up the hours before it (see `World::tick`).
        // Once every worker's clock has reached it (they are up to `MAX_SKEW_MS` behind).
        let firing = Timestamp::from_second(
            next_firing(last.as_second().div_euclid(60) + 1).saturating_mul(60),
        )
        .map(|t| t + SignedDuration::from_millis(MAX_SKEW_MS + 1_000))
        .unwrap_or(Timestamp::MAX);
        let at = (earliest - SignedDuration::from_secs(60))
            .min(firing)
            .max(last + SignedDuration::from_secs(60));
        Some(at.min(last + SignedDuration::from_hours(6)))
    }

    /// Feeds the workload and drains everything until quiet.
    pub async fn run(&mut self, workload: &Workload, rng: &mut Rng) {
        let horizon = workload.start + SignedDuration::from_hours(24 * 30);
        let mut next = 0usize;
        // As if the scheduler had run the minute before the workload starts.
        let before = workload.start - SignedDuration::from_secs(60);
        loop {
            self.steps += 1;
            let now = self.clock.now();
            if crate::lab::trace() >= 1 && self.steps.is_multiple_of(1000) {
                let lab = lock(&self.lab);
                eprintln!(
                    "step {} at {now}: {} queued, {} timers, {} calls, op {}",
                    self.steps,
                    lab.sqs.entries.len(),
                    lab.timers.len(),
                    lab.calls.len(),
                    lab.op
                );
            }
            if self.steps > 400_000 || now > horizon {
                let cursor = cursor(&self.store).await;
                let lab = lock(&self.lab);
                let timers: Vec<String> = lab
                    .timers
                    .iter()
                    .take(3)
                    .map(|(k, m)| {
                        format!(
                            "{}/{} {}",
                            k.pk,
                            k.sk,
                            m.due().map(|t| t.to_string()).unwrap_or_default()
                        )
                    })
                    .collect();
                let queued = lab.sqs.entries.len();
                drop(lab);
                self.violation(
                    "unsettled",
                    format!(
                        "still busy after {} steps, at {now}: {queued} queued, scheduler cursor at minute {cursor:?}, timers {timers:?}",
                        self.steps
                    ),
                );
                return;
            }
            while next < workload.lines.len() && workload.lines[next].at <= now {
                let line = workload.lines[next].clone();
                self.intake(&line);
                next += 1;
            }
            if self
                .tick_at(self.last_tick.unwrap_or(before))
                .is_some_and(|t| t <= now)
            {
                self.tick().await;
            }
            let a = self.take_batch(now);
            let b = match rng.below(3) {
                0 => Vec::new(),
                1 => self.take_batch(now),
                _ => {
                    let partners = lock(&self.lab).receive_partners(&a, 10, now);
                    if partners.is_empty() {
                        self.take_batch(now)
                    } else {
                        partners
                    }
                }
            };
            if !a.is_empty() || !b.is_empty() {
                if rng.chance(0.01) {
                    self.checkpoints += 1;
                    self.extra_wakeups += crate::check::wakeups(self, false);
                }
                let ((ra, da), (rb, db)) =
                    tokio::join!(self.run_batch(ENGINE_A, &a), self.run_batch(ENGINE_B, &b));
                self.settle(&a, ra, da);
                self.settle(&b, rb, db);
                // Handling takes time: the clock moves on by the batch's run time.
                let took = SignedDuration::from_millis(rng.between(20, 400));
                self.clock.set(now + took);
                continue;
            }
            let visible = lock(&self.lab).sqs.next_visible();
            let candidates = [
                workload.lines.get(next).map(|l| l.at),
                visible,
                self.tick_at(self.last_tick.unwrap_or(before)),
            ];
            match candidates.into_iter().flatten().min() {
                // Lambda's batching window (up to a second) gathers what arrives together.
                Some(t) if Some(t) == visible => {
                    let window = SignedDuration::from_millis(rng.between(0, 1_000));
                    self.clock.set(t.max(now) + window);
                }
                Some(t) => self.clock.set(t.max(now)),
                None => {
                    let letters = lock(&self.lab).sqs.dead_letters.len();
                    if letters > 0 && self.redrives < 3 {
                        self.redrives += 1;
                        lock(&self.lab).redrive(now);
                        continue;
                    }
                    return;
                }
            }
        }
    }
}

/// The first minute from `from` at which the soak's schedule journey (09:00 in each user's time
/// zone, UTC for users who name none) fires for some user. The driver lets the scheduler skip
/// idle minutes, but not that one.
fn next_firing(from: i64) -> i64 {
    let Ok(at) = Timestamp::from_second(from.saturating_mul(60)) else {
        return i64::MAX;
    };
    crate::script::ZONES
        .iter()
        .filter_map(|z| jiff::tz::TimeZone::get(z).ok())
        .chain([jiff::tz::TimeZone::UTC])
        .filter_map(|tz| {
            let today = at.to_zoned_datetime(tz.clone()).date();
            [Ok(today), today.tomorrow()]
                .into_iter()
                .flatten()
                .filter_map(|d| d.at(9, 0, 0, 0).to_zoned_datetime(tz.clone()).ok())
                .map(|z| z.timestamp())
                .find(|t| *t >= at)
        })
        .min()
        .map_or(i64::MAX, |t| t.as_second().div_euclid(60))
}

/// The scheduler's cursor: the next minute it sweeps (none before its first run).
pub async fn cursor(store: &MemoryStore) -> Option<i64> {
    store
        .get(&Key::new("SCHED", "cursor"))
        .await
        .ok()
        .flatten()
        .and_then(|r| r.parse::<i64>().ok())
}
