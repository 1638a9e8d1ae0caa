//! Fault-injecting adapters: the real in-memory store, a simulated SQS and a recording provider,
//! each asking the lab what goes wrong with every call. They wrap; they never decide journeys.

use std::collections::BTreeMap;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use waymark::clock::{Clock, ManualClock};
use waymark::engine::Outgoing;
use waymark::enrollment::{Enrollment, Status};
use waymark::profile::Device;
use waymark::provider::{Receipt, SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueError, QueueName};
use waymark::runtime::Ledger;
use waymark::store::{
    Counts, Expect, Hooked, Hooks, Key, MemoryStore, Page, Record, Store, StoreError,
};

use crate::lab::{lock, Injected, Lab, Plan, Port, Shared};

fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(why.into())
}

async fn pause_if(plan: Plan) {
    if plan.pause {
        tokio::task::yield_now().await;
    }
}

/// A worker's clock: the true virtual time plus the worker's own skew.
pub struct SkewedClock {
    pub base: ManualClock,
    pub offset: SignedDuration,
}

impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        let t = self.base.now();
        t.checked_add(self.offset).unwrap_or(t)
    }
}

/// The in-memory store behind faults: unavailable, replies lost after a write, spurious
/// conflicts, and a crash at one chosen call.
pub type FaultyStore = Hooked<StoreFaults>;

/// What a worker's [`FaultyStore`] asks the lab at each call.
pub struct StoreFaults {
    pub lab: Shared,
    pub worker: usize,
}

impl StoreFaults {
    async fn plan_read(&self) -> Result<(), StoreError> {
        let plan = lock(&self.lab).plan(self.worker, Port::Read);
        pause_if(plan).await;
        match plan.fault {
            None => Ok(()),
            Some(Injected::Dead) => Err(unavailable("worker crashed")),
            Some(_) => Err(unavailable("injected: store unavailable")),
        }
    }

    /// Plans a write; `Err` when it must fail before taking effect, else the fault to apply after.
    async fn before_write(&self, expect: Expect) -> Result<Option<Injected>, StoreError> {
        let port = Port::Write {
            conditional: expect != Expect::Any,
            versioned: matches!(expect, Expect::Version(_)),
        };
        let plan = lock(&self.lab).plan(self.worker, port);
        pause_if(plan).await;
        match plan.fault {
            Some(Injected::Dead) => Err(unavailable("worker crashed")),
            Some(Injected::Crash { after: false })
            | Some(Injected::Unavailable { after: false }) => {
                Err(unavailable("injected: store unavailable"))
            }
            Some(Injected::Conflict { after: false }) => Err(StoreError::Conflict),
            other => Ok(other),
        }
    }

    /// A write faulted as one on `expect`: `write` is made, unless planned to fail before; once
    /// it took effect, `applied` keeps the lab's view current, and the reply may then be lost.
    async fn write(
        &self,
        expect: Expect,
        write: impl std::future::Future<Output = Result<(), StoreError>> + Send,
        applied: impl FnOnce(&mut Lab) + Send,
    ) -> Result<(), StoreError> {
        let after = self.before_write(expect).await?;
        write.await?;
        applied(&mut lock(&self.lab));
        reply_after(after)
    }

    /// A read, failed or paused as planned, before `read` is made.
    async fn read<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        self.plan_read().await?;
        read.await
    }
}

fn reply_after(fault: Option<Injected>) -> Result<(), StoreError> {
    match fault {
        Some(Injected::Crash { after: true }) | Some(Injected::Unavailable { after: true }) => Err(
            unavailable("injected: the write happened, its reply was lost"),
        ),
        Some(Injected::Conflict { after: true }) => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

impl Lab {
    /// Keeps the lab's view of the store current after a write took effect.
    fn applied_put(&mut self, worker: usize, record: &Record) {
        self.op += 1;
        let key = &record.key;
        if crate::lab::trace() >= 3 && (key.pk.starts_with("T#") || key.pk == "SCHED") {
            eprintln!(
                "put by {} {}/{} {}",
                self.workers[worker].name,
                key.pk,
                key.sk,
                record
                    .body
                    .json()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            );
        }
        if key.pk.starts_with("T#") {
            if let Ok(m) = record.parse::<Message>() {
                self.timers.insert(key.clone(), m);
            }
            return;
        }
        if !key.pk.starts_with("U#") {
            return;
        }
        if let Some(ledger_key) = key.sk.strip_prefix("L#") {
            if let Ok(Ledger::Done { .. }) = record.parse::<Ledger>() {
                self.workers[worker].awaiting_done.remove(ledger_key);
            }
        } else if key.sk.starts_with("E#") {
            /// Only what the lab needs of an enrollment (parsing all of it is slow in debug).
            #[derive(Clone, serde::Deserialize)]
            struct Head {
                id: String,
                status: Status,
            }
            let head = match record.body.typed::<Enrollment>() {
                Some(e) => Some(Head {
                    id: e.id.to_string(),
                    status: e.status,
                }),
                None => record.parse::<Head>().ok(),
            };
            if let Some(e) = head {
                if e.status == Status::Exited {
                    let op = self.op;
                    self.exits.entry(e.id).or_insert(op);
                }
            }
        }
    }

    fn applied_delete(&mut self, key: &Key) {
        self.op += 1;
        if crate::lab::trace() >= 3 && key.pk.starts_with("T#") {
            eprintln!("delete {}/{}", key.pk, key.sk);
        }
        if key.pk.starts_with("T#") {
            self.timers.remove(key);
        }
    }
}

#[async_trait]
impl Hooks for StoreFaults {
    async fn get(&self, inner: &MemoryStore, key: &Key) -> Result<Option<Record>, StoreError> {
        self.read(inner.get(key)).await
    }

    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        self.write(expect, inner.put(record, expect), |lab| {
            lab.applied_put(self.worker, record)
        })
        .await
    }

    /// Faulted as a put of `record`.
    async fn put_unless_sealed(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        let write = inner.put_unless_sealed(record, expect, seal);
        self.write(expect, write, |lab| lab.applied_put(self.worker, record))
            .await
    }

    async fn delete(
        &self,
        inner: &MemoryStore,
        key: &Key,
        expect: Expect,
    ) -> Result<(), StoreError> {
        self.write(expect, inner.delete(key, expect), |lab| {
            lab.applied_delete(key)
        })
        .await
    }

    async fn query(
        &self,
        inner: &MemoryStore,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<Record>, StoreError> {
        self.read(inner.query(pk, prefix)).await
    }

    async fn pending(
        &self,
        inner: &MemoryStore,
        part: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.read(inner.pending(part, limit)).await
    }

    async fn fold(
        &self,
        inner: &MemoryStore,
        records: &[Key],
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        // A conditional write (each record must still be listed), like a put if absent.
        let write = inner.fold(records, counters);
        self.write(Expect::Absent, write, |lab| lab.op += 1).await
    }

    async fn fold_part(
        &self,
        inner: &MemoryStore,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        // A conditional write (the record must still be listed, at this part), as a fold.
        let write = inner.fold_part(record, part, last, counters);
        self.write(Expect::Absent, write, |lab| lab.op += 1).await
    }

    async fn counters(
        &self,
        inner: &MemoryStore,
        key: &Key,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        self.read(inner.counters(key)).await
    }

    async fn scan(
        &self,
        inner: &MemoryStore,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(inner.scan(sk, segment, segments, start, limit))
            .await
    }
}

/// The simulated SQS as a worker sees it: sends may fail before or after they happen.
pub struct FaultyQueue {
    pub lab: Shared,
    pub worker: usize,
    pub clock: ManualClock,
}

#[async_trait]
impl Queue for FaultyQueue {
    async fn send(&self, queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        let plan = lock(&self.lab).plan(self.worker, Port::QueueSend);
        pause_if(plan).await;
        match plan.fault {
            Some(Injected::Dead) => return Err(QueueError::Unavailable("worker crashed".into())),
            Some(Injected::Crash { after: false })
            | Some(Injected::Unavailable { after: false }) => {
                return Err(QueueError::Unavailable(
                    "injected: queue unavailable".into(),
                ))
            }
            _ => {}
        }
        let now = self.clock.now();
        let mut lab = lock(&self.lab);
        for m in messages {
            let at = now + SignedDuration::from_secs(i64::from(m.delay_secs));
            lab.enqueue(queue, m.message.clone(), at);
        }
        match plan.fault {
            Some(Injected::Crash { after: true }) | Some(Injected::Unavailable { after: true }) => {
                Err(QueueError::Unavailable(
                    "injected: sent, but the reply was lost".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The provider: records every call; throttles, times out after accepting, rejects.
pub struct FaultySender {
    pub lab: Shared,
    pub worker: usize,
    pub clock: ManualClock,
}

#[async_trait]
impl Sender for FaultySender {
    async fn send(&self, o: &Outgoing) -> Result<Receipt, SendError> {
        let plan = lock(&self.lab).plan(self.worker, Port::ProviderSend);
        pause_if(plan).await;
        let now = self.clock.now();
        let mut lab = lock(&self.lab);
        match plan.fault {
            Some(Injected::Dead) | Some(Injected::Crash { after: false }) => {
                Err(SendError::Retryable("worker crashed".into()))
            }
            Some(Injected::Crash { after: true }) => {
                lab.provider_call(o, now, true);
                lab.window(o.ledger_key());
                Err(SendError::Retryable(
                    "worker crashed after the provider accepted".into(),
                ))
            }
            Some(Injected::TimeoutAccepted) => {
                lab.provider_call(o, now, true);
                lab.window(o.ledger_key());
                Err(SendError::Retryable("injected: provider timed out".into()))
            }
            Some(Injected::Throttled) => {
                lab.provider_call(o, now, false);
                Err(SendError::Retryable("injected: throttled".into()))
            }
            Some(Injected::Rejected) => {
                lab.provider_call(o, now, false);
                Err(SendError::Permanent("injected: address rejected".into()))
            }
            Some(_) | None => {
                lab.provider_call(o, now, true);
                lab.workers[self.worker]
                    .awaiting_done
                    .insert(o.ledger_key());
                Ok(Receipt {
                    provider_id: Some(format!("msg-{}", lab.calls.len())),
                    ..Receipt::default()
                })
            }
        }
    }

    async fn register(&self, device: &Device) -> Result<Option<String>, SendError> {
        let plan = lock(&self.lab).plan(self.worker, Port::Register);
        pause_if(plan).await;
        match plan.fault {
            None => Ok(Some(format!("arn:aws:sns:endpoint/{}", device.token))),
            Some(_) => Err(SendError::Retryable("injected: register failed".into())),
        }
    }
}
