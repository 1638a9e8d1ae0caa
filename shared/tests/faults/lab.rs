//! The shared state of one run: the seeded dice, the fault rates, every worker's crash point, a
//! simulated SQS (visibility timeouts, duplicates, reordering, a dead-letter queue), and the facts
//! the invariants are checked against (provider calls, exits, lost counters). Decides faults;
//! never performs an effect itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};
use waymark::engine::Outgoing;
use waymark::journey::Channel;
use waymark::queue::{Message, QueueName};
use waymark::store::Key;

use crate::rng::Rng;

/// SQS settings from template.yaml: `VisibilityTimeout: 180`, `maxReceiveCount: 5`.
pub const VISIBILITY: SignedDuration = SignedDuration::from_secs(180);
pub const MAX_RECEIVES: u32 = 5;

/// How often each kind of fault happens in one run (picked per seed).
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Per batch: the worker dies at a random port call (before or after it takes effect).
    pub crash: f64,
    /// Per store call: unavailable, a lost reply to an applied write, a spurious conflict.
    pub store: f64,
    /// Per queue send: unavailable, or sent but the reply lost.
    pub queue: f64,
    /// Per provider call: throttled (not accepted).
    pub throttle: f64,
    /// Per provider call: accepted, but the reply timed out.
    pub timeout: f64,
    /// Per provider call: rejected for good.
    pub reject: f64,
    /// Per port call: let the other worker run first (interleaves concurrent handlers).
    pub pause: f64,
    /// Per queued message: the chance of each extra copy (SQS at-least-once delivery).
    pub duplicate: f64,
}

impl Rates {
    pub fn none() -> Self {
        Rates {
            crash: 0.0,
            store: 0.0,
            queue: 0.0,
            throttle: 0.0,
            timeout: 0.0,
            reject: 0.0,
            pause: 0.0,
            duplicate: 0.0,
        }
    }

    /// A mix that differs from seed to seed: some runs calm, some stormy.
    pub fn pick(rng: &mut Rng) -> Self {
        Rates {
            crash: *rng.pick(&[0.0, 0.05, 0.1, 0.2]),
            store: *rng.pick(&[0.0, 0.002, 0.005, 0.01]),
            queue: *rng.pick(&[0.0, 0.01, 0.03]),
            throttle: *rng.pick(&[0.0, 0.02, 0.05]),
            timeout: *rng.pick(&[0.0, 0.01, 0.03]),
            reject: *rng.pick(&[0.0, 0.01]),
            pause: *rng.pick(&[0.1, 0.3, 0.5]),
            duplicate: *rng.pick(&[0.1, 0.25, 0.4]),
        }
    }
}

/// The kind of port call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Read,
    /// A write; `conditional` when it carries a condition, `versioned` when on a version.
    Write {
        conditional: bool,
        versioned: bool,
    },
    QueueSend,
    ProviderSend,
    Register,
}

/// What a wrapper must do to the call it is about to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// The worker crashed earlier in this batch: nothing it does takes effect.
    Dead,
    /// The worker dies at this call, before or after the call takes effect.
    Crash {
        after: bool,
    },
    /// The service was unavailable (`after`: the write happened, the reply was lost).
    Unavailable {
        after: bool,
    },
    /// A conditional write failed its condition (`after`: the write happened on an earlier
    /// attempt whose reply was lost, and the SDK's retry then failed the condition).
    Conflict {
        after: bool,
    },
    Throttled,
    TimeoutAccepted,
    Rejected,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub pause: bool,
    pub fault: Option<Injected>,
}

/// One worker (an engine Lambda instance, or the scheduler) and its current batch.
#[derive(Debug, Default)]
pub struct Worker {
    pub name: String,
    pub calls: u32,
    pub crash_at: Option<u32>,
    pub dead: bool,
    /// Sends the provider accepted whose ledger `done` record has not been written yet.
    pub awaiting_done: BTreeSet<String>,
}

/// One call to the provider.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    pub ledger_key: String,
    pub enrollment: String,
    pub journey: String,
    pub user: String,
    pub step: String,
    pub channel: Channel,
    /// True (virtual) time of the call.
    pub at: Timestamp,
    /// Global order of port calls, to order the call against enrollment writes.
    pub op: u64,
    /// Whether the provider took the message (it went out).
    pub accepted: bool,
}

/// A message on the simulated SQS.
#[derive(Debug, Clone)]
pub struct Queued {
    pub queue: QueueName,
    pub message: Message,
    pub visible_at: Timestamp,
    pub receives: u32,
}

#[derive(Debug, Default)]
pub struct Sqs {
    next_id: u64,
    pub entries: BTreeMap<u64, Queued>,
    pub dead_letters: Vec<Queued>,
}

impl Sqs {
    pub fn next_visible(&self) -> Option<Timestamp> {
        self.entries.values().map(|q| q.visible_at).min()
    }

    /// Every message on the queues or the dead-letter queues.
    pub fn all(&self) -> impl Iterator<Item = &Message> {
        self.entries
            .values()
            .chain(self.dead_letters.iter())
            .map(|q| &q.message)
    }
}

/// Counts of what happened in a run, by kind.
pub type Counts = BTreeMap<&'static str, u64>;

pub struct Lab {
    pub rng: Rng,
    pub rates: Rates,
    /// Off while journeys are published and while the final state is read.
    pub enabled: bool,
    pub workers: Vec<Worker>,
    pub op: u64,
    pub faults: Counts,
    pub sqs: Sqs,
    /// Live timer records (as the store holds them), by key.
    pub timers: BTreeMap<Key, Message>,
    pub calls: Vec<ProviderCall>,
    /// Accepted-then-crashed windows per ledger key: the provider took the message but the
    /// ledger never heard of it, so a retry may send it again.
    pub windows: BTreeMap<String, u32>,
    /// The port-call order at which each enrollment was first stored as exited.
    pub exits: BTreeMap<String, u64>,
    /// Port calls made so far by live workers, and a crash forced at one of them (its number,
    /// and whether after the call took effect).
    pub calls_made: u64,
    pub crash_at_call: Option<(u64, bool)>,
}

pub type Shared = Arc<Mutex<Lab>>;

/// `WAYMARK_TRACE`: 0 quiet, 1 progress, 2 every handled message, 3 timer and cursor writes.
pub fn trace() -> u8 {
    static LEVEL: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        std::env::var("WAYMARK_TRACE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

pub fn lock(lab: &Shared) -> MutexGuard<'_, Lab> {
    lab.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lab {
    pub fn new(seed: u64, rates: Rates, workers: &[&str]) -> Self {
        Lab {
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(7)),
            rates,
            enabled: false,
            workers: workers
                .iter()
                .map(|n| Worker {
                    name: n.to_string(),
                    ..Worker::default()
                })
                .collect(),
            op: 0,
            faults: Counts::new(),
            sqs: Sqs::default(),
            timers: BTreeMap::new(),
            calls: Vec::new(),
            windows: BTreeMap::new(),
            exits: BTreeMap::new(),
            calls_made: 0,
            crash_at_call: None,
        }
    }

    pub fn count(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_insert(0) += 1;
    }

    /// A batch starts: the worker is alive and may be given a crash point among its next
    /// `expected_calls` port calls.
    pub fn begin_batch(&mut self, worker: usize, expected_calls: u32) {
        let crash = self.enabled && self.rng.chance(self.rates.crash);
        let at = 1 + self.rng.below(u64::from(expected_calls.max(1))) as u32;
        let w = &mut self.workers[worker];
        w.calls = 0;
        w.dead = false;
        w.crash_at = crash.then_some(at);
        w.awaiting_done.clear();
    }

    /// A batch ends: sends the ledger never recorded are windows.
    /// Returns whether the worker died.
    pub fn end_batch(&mut self, worker: usize) -> bool {
        let w = &mut self.workers[worker];
        let awaiting = std::mem::take(&mut w.awaiting_done);
        let dead = w.dead;
        for key in awaiting {
            *self.windows.entry(key).or_insert(0) += 1;
        }
        dead
    }

    /// Decides the fate of the next port call of `worker`.
    pub fn plan(&mut self, worker: usize, port: Port) -> Plan {
        self.op += 1;
        if !self.enabled {
            return Plan {
                pause: false,
                fault: None,
            };
        }
        let pause = self.rng.chance(self.rates.pause);
        if self.workers[worker].dead {
            return Plan {
                pause,
                fault: Some(Injected::Dead),
            };
        }
        self.workers[worker].calls += 1;
        self.calls_made += 1;
        let forced = self
            .crash_at_call
            .filter(|(n, _)| *n == self.calls_made)
            .map(|(_, after)| after);
        if forced.is_some() || self.workers[worker].crash_at == Some(self.workers[worker].calls) {
            self.workers[worker].dead = true;
            let after = matches!(
                port,
                Port::Write { .. } | Port::QueueSend | Port::ProviderSend
            ) && forced.unwrap_or_else(|| self.rng.chance(0.5));
            self.count(if after {
                "crash.after-call"
            } else {
                "crash.before-call"
            });
            return Plan {
                pause,
                fault: Some(Injected::Crash { after }),
            };
        }
        let r = self.rates;
        let fault = match port {
            Port::Read => self.rng.chance(r.store).then(|| {
                self.count("store.unavailable");
                Injected::Unavailable { after: false }
            }),
            Port::Write {
                conditional,
                versioned,
            } => {
                if self.rng.chance(r.store) {
                    let mut options = vec![
                        ("store.unavailable", Injected::Unavailable { after: false }),
                        ("store.reply-lost", Injected::Unavailable { after: true }),
                    ];
                    if conditional {
                        options.push((
                            "store.conflict-after-write",
                            Injected::Conflict { after: true },
                        ));
                    }
                    if versioned {
                        options.push((
                            "store.spurious-conflict",
                            Injected::Conflict { after: false },
                        ));
                    }
                    let (kind, f) = *self.rng.pick(&options);
                    self.count(kind);
                    Some(f)
                } else {
                    None
                }
            }
            Port::QueueSend => self.rng.chance(r.queue).then(|| {
                let after = self.rng.chance(0.5);
                self.count(if after {
                    "queue.reply-lost"
                } else {
                    "queue.unavailable"
                });
                Injected::Unavailable { after }
            }),
            Port::ProviderSend => {
                if self.rng.chance(r.throttle) {
                    self.count("provider.throttled");
                    Some(Injected::Throttled)
                } else if self.rng.chance(r.timeout) {
                    self.count("provider.timeout-after-accept");
                    Some(Injected::TimeoutAccepted)
                } else if self.rng.chance(r.reject) {
                    self.count("provider.rejected");
                    Some(Injected::Rejected)
                } else {
                    None
                }
            }
            Port::Register => self.rng.chance(r.throttle).then(|| {
                self.count("provider.throttled");
                Injected::Throttled
            }),
        };
        Plan { pause, fault }
    }

    /// Puts messages on the simulated SQS; each may come 1 to 3 times (at-least-once delivery).
    pub fn enqueue(&mut self, queue: QueueName, message: Message, at: Timestamp) {
        let mut copies = 1;
        while copies < 3 && self.enabled && self.rng.chance(self.rates.duplicate) {
            copies += 1;
        }
        for i in 0..copies {
            let jitter = if i == 0 {
                SignedDuration::ZERO
            } else {
                self.count("sqs.duplicate-delivery");
                SignedDuration::from_millis(self.rng.between(0, 30_000))
            };
            self.sqs.next_id += 1;
            self.sqs.entries.insert(
                self.sqs.next_id,
                Queued {
                    queue,
                    message: message.clone(),
                    visible_at: at + jitter,
                    receives: 0,
                },
            );
        }
    }

    /// Receives up to `max` visible messages of `queue`, in no particular order; they stay
    /// invisible for the visibility timeout.
    pub fn receive(&mut self, queue: QueueName, max: usize, now: Timestamp) -> Vec<(u64, Message)> {
        let mut visible: Vec<u64> = self
            .sqs
            .entries
            .iter()
            .filter(|(_, q)| q.queue == queue && q.visible_at <= now)
            .map(|(id, _)| *id)
            .collect();
        self.rng.shuffle(&mut visible);
        visible.truncate(max);
        visible
            .into_iter()
            .filter_map(|id| {
                let q = self.sqs.entries.get_mut(&id)?;
                q.visible_at = now + VISIBILITY;
                q.receives += 1;
                Some((id, q.message.clone()))
            })
            .collect()
    }

    /// Receives, for a second worker, the visible messages about the same users as `batch`:
    /// handled side by side, they race (identify against track, an exit against a send).
    pub fn receive_partners(
        &mut self,
        batch: &[(u64, Message)],
        max: usize,
        now: Timestamp,
    ) -> Vec<(u64, Message)> {
        let users: BTreeSet<&str> = batch.iter().map(|(_, m)| m.user_id()).collect();
        let taken: BTreeSet<u64> = batch.iter().map(|(id, _)| *id).collect();
        let mut partners: Vec<u64> = self
            .sqs
            .entries
            .iter()
            .filter(|(id, q)| {
                q.visible_at <= now && !taken.contains(id) && users.contains(q.message.user_id())
            })
            .map(|(id, _)| *id)
            .collect();
        self.rng.shuffle(&mut partners);
        partners.truncate(max);
        partners
            .into_iter()
            .filter_map(|id| {
                let q = self.sqs.entries.get_mut(&id)?;
                q.visible_at = now + VISIBILITY;
                q.receives += 1;
                Some((id, q.message.clone()))
            })
            .collect()
    }

    /// The handler succeeded: the message is deleted.
    pub fn ack(&mut self, id: u64) {
        self.sqs.entries.remove(&id);
    }

    /// The handler failed: the message comes back after its visibility timeout, or goes to the
    /// dead-letter queue after `MAX_RECEIVES` receives.
    pub fn nack(&mut self, id: u64) {
        let dead = self
            .sqs
            .entries
            .get(&id)
            .is_some_and(|q| q.receives >= MAX_RECEIVES);
        if dead {
            if let Some(q) = self.sqs.entries.remove(&id) {
                self.count("sqs.dead-lettered");
                self.sqs.dead_letters.push(q);
            }
        }
    }

    /// What an operator does after the dead-letter alarm: sends the dead letters back.
    pub fn redrive(&mut self, now: Timestamp) -> usize {
        let letters = std::mem::take(&mut self.sqs.dead_letters);
        let n = letters.len();
        for q in letters {
            self.sqs.next_id += 1;
            self.sqs.entries.insert(
                self.sqs.next_id,
                Queued {
                    visible_at: now,
                    receives: 0,
                    ..q
                },
            );
        }
        n
    }

    pub fn provider_call(&mut self, o: &Outgoing, at: Timestamp, accepted: bool) {
        self.calls.push(ProviderCall {
            ledger_key: o.ledger_key(),
            enrollment: o.enrollment.to_string(),
            journey: o.journey.to_string(),
            user: o.user_id.to_string(),
            step: o.step.to_string(),
            channel: o.channel,
            at,
            op: self.op,
            accepted,
        });
    }

    pub fn window(&mut self, ledger_key: String) {
        *self.windows.entry(ledger_key).or_insert(0) += 1;
    }
}
