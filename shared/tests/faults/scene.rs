//! Small hand-written scenes for single faults: one runtime over the in-memory store (optionally
//! with one scripted fault), a delay queue and a recording provider on a manual clock. A scene
//! reads as a journey: given these events at these times, these messages go out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use waymark::clock::{Clock, ManualClock};
use waymark::engine::Outgoing;
use waymark::event::{self, Kind, Limits};
use waymark::provider::{Receipt, SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::runtime::{Handled, RunError, Runtime};
use waymark::simulate::DelayQueue;
use waymark::store::{Counts, Expect, Hooked, Hooks, Key, MemoryStore, Record, Store, StoreError};
use waymark::timeline::{self, Entry};

/// Which store call a scripted fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Put,
    /// A query of a partition whose name starts with the prefix.
    Query,
    /// A fold of timeline records into the stats (the prefix is not looked at).
    Fold,
}

/// One fault, on the first call of a kind (for a put, whose sort key starts with `prefix`):
/// before the call takes effect, or after (the reply lost).
#[derive(Debug, Clone)]
pub struct OneFault {
    pub call: Call,
    pub prefix: &'static str,
    pub after: bool,
}

/// The in-memory store, failing once as scripted.
pub type ScriptedStore = Hooked<Script>;

/// The one fault of a [`ScriptedStore`].
#[derive(Default)]
pub struct Script {
    pub fault: Mutex<Option<OneFault>>,
    /// Calls the fault would hit that are let through first.
    pub spare: Mutex<usize>,
}

impl Script {
    /// Whether the scripted fault has happened.
    pub fn fault_taken(&self) -> bool {
        self.fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    fn take(&self, call: Call, key: &Key) -> Option<bool> {
        let mut f = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        let hit = f.as_ref().is_some_and(|f| {
            f.call == call
                && match call {
                    Call::Put => key.sk.starts_with(f.prefix),
                    Call::Query => key.pk.starts_with(f.prefix),
                    Call::Fold => true,
                }
        });
        if hit {
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if *spare > 0 {
                *spare -= 1;
                return None;
            }
        }
        hit.then(|| f.take().map(|f| f.after)).flatten()
    }

    /// `write`, unless the fault is scripted at this call (of `call` at `key`): then it fails
    /// before `write` is made, or after (the reply lost).
    async fn write(
        &self,
        call: Call,
        key: &Key,
        write: impl std::future::Future<Output = Result<(), StoreError>> + Send,
    ) -> Result<(), StoreError> {
        match self.take(call, key) {
            Some(false) => Err(injected()),
            Some(true) => write.await.and(Err(injected())),
            None => write.await,
        }
    }
}

fn injected() -> StoreError {
    StoreError::Unavailable("injected".into())
}

#[async_trait]
impl Hooks for Script {
    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        self.write(Call::Put, &record.key, inner.put(record, expect))
            .await
    }
    /// Scripted as a put of `record`.
    async fn put_unless_sealed(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        let write = inner.put_unless_sealed(record, expect, seal);
        self.write(Call::Put, &record.key, write).await
    }
    async fn query(
        &self,
        inner: &MemoryStore,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<Record>, StoreError> {
        match self.take(Call::Query, &Key::new(pk, "")) {
            Some(_) => Err(injected()),
            None => inner.query(pk, prefix).await,
        }
    }
    async fn fold(
        &self,
        inner: &MemoryStore,
        records: &[Key],
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        let any = Key::new("", "");
        let key = records.first().unwrap_or(&any);
        self.write(Call::Fold, key, inner.fold(records, counters))
            .await
    }
    async fn fold_part(
        &self,
        inner: &MemoryStore,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        let write = inner.fold_part(record, part, last, counters);
        self.write(Call::Fold, record, write).await
    }
}

/// A provider that records each message it takes; the next `throttle` calls are refused as
/// throttled, the next `reject` refused for good, the next `time_out` taken but answered with
/// a timeout.
#[derive(Default)]
pub struct Provider {
    pub calls: Mutex<Vec<(Timestamp, Outgoing)>>,
    pub throttle: Mutex<u32>,
    pub reject: Mutex<u32>,
    pub time_out: Mutex<u32>,
    pub clock: Mutex<Option<ManualClock>>,
}

#[async_trait]
impl Sender for Provider {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let now = self
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Clock::now)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        if *throttle > 0 {
            *throttle -= 1;
            return Err(SendError::Retryable("throttled".into()));
        }
        drop(throttle);
        let mut reject = self.reject.lock().unwrap_or_else(|p| p.into_inner());
        if *reject > 0 {
            *reject -= 1;
            return Err(SendError::Permanent("address rejected".into()));
        }
        drop(reject);
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((now, message.clone()));
        let mut t = self.time_out.lock().unwrap_or_else(|p| p.into_inner());
        if *t > 0 {
            *t -= 1;
            return Err(SendError::Retryable("timed out".into()));
        }
        Ok(Receipt::default())
    }
}

pub struct Scene {
    /// How many times each message (by id) failed and was put back.
    pub failures: Mutex<BTreeMap<String, u32>>,
    /// After how many failed receives a message goes to the dead letters, as SQS's redrive
    /// policy does (none: it comes back for ever).
    pub dead_after: Mutex<Option<u32>>,
    /// Failed receives per delivered message (by id), and the messages given up on.
    receives: Mutex<BTreeMap<String, u32>>,
    pub dead_letters: Mutex<Vec<Message>>,
    /// How many of the next batches are handled at the very end of their invocation, when no
    /// send may begin ([`waymark::runtime::sending_until`] already past).
    ending: Mutex<u32>,
    pub clock: ManualClock,
    pub store: Arc<ScriptedStore>,
    pub queue: DelayQueue,
    pub provider: Arc<Provider>,
    pub rt: Runtime,
}

pub fn at(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 time")
}

impl Scene {
    /// The cart and onboarding example journeys, published at `start`, with the harness's
    /// configuration (push capped at 3 a day).
    pub async fn new(start: Timestamp) -> Scene {
        Scene::with_config(start, crate::world::config()).await
    }

    pub async fn with_config(start: Timestamp, config: waymark::runtime::Config) -> Scene {
        let clock = ManualClock::new(start);
        let store = Arc::new(ScriptedStore::new(MemoryStore::new(), Script::default()));
        let queue = DelayQueue::new(Arc::new(clock.clone()));
        let provider = Arc::new(Provider::default());
        *provider.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock.clone());
        let rt = Runtime::new(
            store.clone(),
            Arc::new(queue.clone()),
            provider.clone(),
            Arc::new(clock.clone()),
            std::time::Duration::ZERO,
            config,
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/journeys");
        for f in ["cart_abandonment.yaml", "banking_onboarding.yaml"] {
            let j = waymark::dsl::load_file(&dir.join(f)).expect("an example journey");
            rt.catalog
                .publish(&j, &rt.config.topics, start)
                .await
                .expect("publish");
        }
        rt.tick().await.expect("the scheduler's first run");
        Scene {
            failures: Mutex::new(BTreeMap::new()),
            dead_after: Mutex::new(None),
            ending: Mutex::new(0),
            receives: Mutex::new(BTreeMap::new()),
            dead_letters: Mutex::new(Vec::new()),
            clock,
            store,
            queue,
            provider,
            rt,
        }
    }

    /// Publishes one more journey, from its YAML text.
    pub async fn publish(&self, yaml: &str) {
        let j = waymark::dsl::parse("extra.yaml", yaml).expect("a valid journey");
        let now = self.clock.now();
        self.rt
            .catalog
            .publish(&j, &self.rt.config.topics, now)
            .await
            .expect("publish");
    }

    /// The provider refuses its next `calls` calls as throttled (it is down for them).
    pub fn throttle(&self, calls: u32) {
        *self
            .provider
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = calls;
    }

    /// The provider refuses its next `calls` calls for good (an address it will not take).
    pub fn reject(&self, calls: u32) {
        *self
            .provider
            .reject
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = calls;
    }

    /// The next `batches` batches are handled as their invocation ends: no send begins.
    pub fn end_invocations(&self, batches: u32) {
        *self.ending.lock().unwrap_or_else(|p| p.into_inner()) = batches;
    }

    pub fn fail_once(&self, fault: OneFault) {
        self.fail_once_after(fault, 0);
    }

    /// As [`Scene::fail_once`], on the call after the first `spare` calls the fault would hit.
    pub fn fail_once_after(&self, fault: OneFault, spare: usize) {
        *self.store.spare.lock().unwrap_or_else(|p| p.into_inner()) = spare;
        *self.store.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault);
    }

    /// Intake: a track or identify body, received now, onto the events queue.
    pub async fn send(&self, kind: Kind, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let e = event::parse_single(kind, &bytes, self.clock.now(), &Limits::default())
            .unwrap_or_else(|errs| panic!("intake rejected {body}: {errs:?}"));
        self.queue
            .send(
                QueueName::Events,
                &[Outbound {
                    message: Message::Event(std::sync::Arc::new(e)),
                    delay_secs: 0,
                }],
            )
            .await
            .expect("queued");
    }

    /// Handles what is due now, one batch; failed messages come back `retry_after` later.
    pub async fn handle_due(&self, retry_after: SignedDuration) -> Vec<Result<Handled, RunError>> {
        let due = self.queue.take_due(self.clock.now());
        if due.is_empty() {
            return Vec::new();
        }
        let ending = {
            let mut left = self.ending.lock().unwrap_or_else(|p| p.into_inner());
            let ending = *left > 0;
            *left = left.saturating_sub(1);
            ending
        };
        let results = if ending {
            let past = tokio::time::Instant::now();
            waymark::runtime::sending_until(past, self.rt.handle_batch(&due)).await
        } else {
            self.rt.handle_batch(&due).await
        };
        for (m, r) in due.iter().zip(&results) {
            // A failure the runtime queued a retry for counts as one (a retry that only hopped
            // on, not due yet, does not), under the id of the message itself.
            let (inner, attempt) = match m {
                Message::Retry {
                    attempt, message, ..
                } => (message.as_ref(), *attempt),
                m => (m, 0),
            };
            let retried = matches!(r, Ok(Handled::Retried { attempt: a, .. }) if *a > attempt);
            if r.is_err() || retried {
                *self
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(inner.id())
                    .or_insert(0) += 1;
            }
            if r.is_err() {
                let receives = {
                    let mut all = self.receives.lock().unwrap_or_else(|p| p.into_inner());
                    let n = all.entry(m.id()).or_insert(0);
                    *n += 1;
                    *n
                };
                let dead_after = *self.dead_after.lock().unwrap_or_else(|p| p.into_inner());
                if dead_after.is_some_and(|d| receives >= d) {
                    self.dead_letters
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(m.clone());
                    continue;
                }
                let delay = u32::try_from(retry_after.as_secs()).unwrap_or(900);
                let again = Outbound {
                    message: m.clone(),
                    delay_secs: delay,
                };
                let q = m.queue();
                self.queue.send(q, &[again]).await.expect("requeued");
            }
        }
        results
    }

    fn next_timer(&self) -> Option<Timestamp> {
        self.store
            .inner
            .dump()
            .iter()
            .filter(|r| r.key.pk.starts_with("T#"))
            .filter_map(|r| r.parse::<Message>().ok().and_then(|m| m.due()))
            .min()
    }

    /// Runs everything due up to `until`: queue messages at their times, the scheduler a minute
    /// before each timer; failed messages come back after SQS's visibility timeout.
    pub async fn run_until(&self, until: Timestamp) {
        for _ in 0..100_000 {
            let now = self.clock.now();
            if !self
                .handle_due(SignedDuration::from_secs(180))
                .await
                .is_empty()
            {
                continue;
            }
            let timer = self.next_timer().map(|t| t - SignedDuration::from_secs(60));
            let next = [self.queue.next_due(), timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => {
                    self.clock.set(t.max(now));
                    if timer.is_some_and(|x| x <= self.clock.now()) {
                        // A failed minute (a scripted fault) is retried by the next one.
                        let _ = self.rt.tick().await;
                    }
                }
                _ => break,
            }
        }
        self.clock.set(until.max(self.clock.now()));
    }

    pub fn calls(&self) -> Vec<(Timestamp, Outgoing)> {
        self.provider
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every timeline entry of a user, in time order.
    pub async fn timeline(&self, user: &str) -> Vec<Entry> {
        self.rt.user(user).await.expect("user view").timeline
    }

    /// The stats a journey's timelines imply, and the stats the store keeps once the scheduler's
    /// next minute has folded what is new.
    pub async fn stats(&self, journey: &str) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
        self.rt.tick().await.expect("the scheduler's next minute");
        let entries: Vec<Entry> = self
            .store
            .inner
            .dump()
            .iter()
            .filter(|r| r.key.pk.starts_with("U#") && r.key.sk.starts_with("T#"))
            .flat_map(|r| r.parse::<Vec<Entry>>().unwrap_or_default())
            .collect();
        let implied = timeline::counters(&entries)
            .remove(journey)
            .unwrap_or_default();
        let mut kept = self.rt.stats(journey).await.expect("stats");
        kept.retain(|_, d| *d != 0);
        (implied, kept)
    }
}
