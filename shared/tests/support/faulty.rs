//! A store that fails on demand (one write, before or after it is applied; a write of a given
//! key; a missed look at an anonymous user's enrollments), and a harness that runs over it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use waymark::outbox::OutboxSender;
use waymark::runtime::{Config, Runtime};
use waymark::simulate::DelayQueue;
use waymark::store::{
    Counts, Expect, Hooked, Hooks, Key, MemoryStore, Part, Record, Store, StoreError,
};

use super::Harness;

/// What each fold partition's listing held last ([`Faults::lagging`]).
pub type Listings = std::collections::HashMap<String, Vec<Record>>;

/// A store over memory that fails one write: before it is applied, or after (its reply lost).
pub type Faulty = Hooked<Faults>;

/// What a [`Faulty`] store fails, misses or lands, and what it counted.
#[derive(Clone, Default)]
pub struct Faults {
    /// Writes to let through before the failing one, and whether that one is applied.
    pub fault: Arc<Mutex<Option<(usize, bool)>>>,
    pub fired: Arc<Mutex<bool>>,
    /// The next look at an anonymous user's enrollments misses them (as if one were written
    /// just after the look: an anonymous event handled at the same time as the merge).
    pub miss_anonymous_enrollments: Arc<Mutex<bool>>,
    /// The next write of a record whose sort key starts with this fails (the store unavailable).
    pub fail_write_of: Arc<Mutex<Option<String>>>,
    /// Calls made, by kind (`get`, `put`, `query`, `delete`, `partitions_between`; the queries
    /// of timer partitions also as `timer query`).
    pub calls: Arc<Mutex<std::collections::BTreeMap<&'static str, usize>>>,
    /// Records the queries returned, by the sort key prefix they asked for.
    pub queried: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
    /// When set, the fold partitions' listing lags as DynamoDB's index may: each listing
    /// also holds what the one before it listed, folded since or not.
    pub lagging: Arc<Mutex<Option<Listings>>>,
    /// The next get of a record whose sort key starts with this that finds none lands these
    /// records right after it: another worker's writes between two reads of this one.
    pub land_after_missed_get: Arc<Mutex<Option<Landing>>>,
    /// The next write of a record whose sort key starts with this lands these records just
    /// before it: another worker's writes between this one's decision and its write.
    pub land_before_write_of: Arc<Mutex<Option<Landing>>>,
}

/// Records another worker writes at a chosen point ([`Faults::land_after_missed_get`]), and
/// the sort key prefix of the call they land at.
pub type Landing = (String, Vec<Record>);

impl Faults {
    /// Takes `hook`'s records when `sk` is the one it waits for.
    fn landing(hook: &Mutex<Option<Landing>>, sk: &str) -> Vec<Record> {
        let mut hook = hook.lock().expect("landing");
        if hook
            .as_ref()
            .is_some_and(|(prefix, _)| sk.starts_with(prefix.as_str()))
        {
            return hook.take().map(|(_, records)| records).unwrap_or_default();
        }
        Vec::new()
    }

    /// A put of `record`, with `seal` one unless the record there is sealed: counted and
    /// faulted as a put either way.
    async fn write(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
        seal: Option<&Key>,
    ) -> Result<(), StoreError> {
        let put = || async {
            match seal {
                Some(k) => inner.put_unless_sealed(record, expect, k).await,
                None => inner.put(record, expect).await,
            }
        };
        self.count("put");
        let landing = Self::landing(&self.land_before_write_of, &record.key.sk);
        Self::land(inner, landing).await?;
        let fail = {
            let mut fail = self.fail_write_of.lock().expect("fail");
            let hit = fail
                .as_deref()
                .is_some_and(|f| record.key.sk.starts_with(f));
            if hit {
                *fail = None;
            }
            hit
        };
        if fail {
            return Err(StoreError::Unavailable("injected".into()));
        }
        let fail = {
            let mut f = self.fault.lock().expect("fault");
            match *f {
                Some((0, applied)) => {
                    *f = None;
                    Some(applied)
                }
                Some((n, applied)) => {
                    *f = Some((n - 1, applied));
                    None
                }
                None => None,
            }
        };
        match fail {
            Some(applied) => {
                *self.fired.lock().expect("fired") = true;
                if applied {
                    put().await?;
                }
                Err(StoreError::Unavailable("injected".into()))
            }
            None => put().await,
        }
    }

    async fn land(inner: &MemoryStore, records: Vec<Record>) -> Result<(), StoreError> {
        for r in records {
            inner.put(&r, Expect::Any).await?;
        }
        Ok(())
    }

    fn count(&self, kind: &'static str) {
        *self.calls.lock().expect("calls").entry(kind).or_insert(0) += 1;
    }

    /// The records queries returned since the last take, by prefix.
    pub fn take_queried(&self) -> std::collections::BTreeMap<String, usize> {
        std::mem::take(&mut *self.queried.lock().expect("queried"))
    }

    /// The calls counted since the last take.
    pub fn take_calls(&self) -> std::collections::BTreeMap<&'static str, usize> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }
}

#[async_trait]
impl Hooks for Faults {
    async fn get(&self, inner: &MemoryStore, key: &Key) -> Result<Option<Record>, StoreError> {
        self.count("get");
        let got = inner.get(key).await?;
        if got.is_none() {
            let landing = Self::landing(&self.land_after_missed_get, &key.sk);
            Self::land(inner, landing).await?;
        }
        Ok(got)
    }
    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        self.write(inner, record, expect, None).await
    }
    async fn put_unless_sealed(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        self.write(inner, record, expect, Some(seal)).await
    }
    async fn delete(
        &self,
        inner: &MemoryStore,
        key: &Key,
        expect: Expect,
    ) -> Result<(), StoreError> {
        self.count("delete");
        inner.delete(key, expect).await
    }
    async fn query(
        &self,
        inner: &MemoryStore,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<Record>, StoreError> {
        self.count("query");
        if pk.starts_with("T#") {
            self.count("timer query");
        }
        if pk.starts_with("U#anon:") && prefix == "E#" {
            let mut miss = self.miss_anonymous_enrollments.lock().expect("miss");
            if *miss {
                *miss = false;
                return Ok(Vec::new());
            }
        }
        let records = inner.query(pk, prefix).await?;
        *self
            .queried
            .lock()
            .expect("queried")
            .entry(prefix.to_string())
            .or_insert(0) += records.len();
        Ok(records)
    }
    async fn partitions_between(
        &self,
        inner: &MemoryStore,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        self.count("partitions_between");
        inner.partitions_between(from, to).await
    }
    async fn pending(
        &self,
        inner: &MemoryStore,
        part: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let now = inner.pending(part, limit).await?;
        let mut lagging = self.lagging.lock().expect("lagging");
        let Some(by_part) = lagging.as_mut() else {
            return Ok(now);
        };
        let before = by_part.entry(part.to_string()).or_default();
        let stale: Vec<Record> = before
            .iter()
            .filter(|r| !now.iter().any(|n| n.key == r.key))
            .cloned()
            .collect();
        let mut listed = now;
        listed.extend(stale);
        listed.truncate(limit);
        *before = listed.clone();
        Ok(listed)
    }
    async fn fold(
        &self,
        inner: &MemoryStore,
        records: &[Key],
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        self.count("fold");
        inner.fold(records, counters).await
    }
    async fn fold_part(
        &self,
        inner: &MemoryStore,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        self.count("fold");
        inner.fold_part(record, part, last, counters).await
    }
}

/// A harness whose runtime goes through a [`Faulty`] store over the harness's own.
pub fn faulty_harness() -> (Harness, Faulty) {
    faulty_harness_with(Config::default())
}

/// [`faulty_harness`] with `config` (caps, say).
pub fn faulty_harness_with(config: Config) -> (Harness, Faulty) {
    let base = Harness::new("2026-12-01T09:00:00Z");
    let faulty = Hooked::new(base.store.clone(), Faults::default());
    let queue = DelayQueue::new(base.clock.clone());
    let (sender, lines) = OutboxSender::memory(base.clock.clone());
    let rt = Runtime::new(
        Arc::new(faulty.clone()),
        Arc::new(queue.clone()),
        Arc::new(sender),
        base.clock.clone(),
        std::time::Duration::from_secs(0),
        config,
    );
    let h = Harness {
        rt,
        store: base.store.clone(),
        queue,
        clock: base.clock.clone(),
        lines,
    };
    (h, faulty)
}
