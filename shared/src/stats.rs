//! Journey stats: the per-journey counters, folded from the timeline records. Each timeline
//! record is written listed under a fold partition; the scheduler's minute folds listed records
//! into the counters, taking each off its partition and adding its counts in one transaction, so
//! every record is counted exactly once whatever fails or is retried. Each partition adds to
//! counter items of its own, so the partitions fold at once; a journey's stats are their sum.

use std::collections::{BTreeMap, HashSet};

use futures_util::future::join_all;

use crate::runtime::{stats_keys, stats_shard_key, RunError, Runtime};
use crate::store::{
    segment_of, Body, Counts, Key, Part, StoreError, FOLD_MAX_COUNTERS, FOLD_MAX_ITEMS,
};
use crate::timeline;

/// Records read from a fold partition at a time.
const PAGE: usize = 500;
/// Pages folded per partition in one go; the rest waits for the next minute. (The scheduler
/// function also stops at its invocation's deadline, see `Runtime::fold_stats_within`.)
const MAX_PAGES: usize = 200;

/// The fold partition a user's timeline records are listed under.
pub fn fold_partition(user: &str, shards: u32) -> Part {
    partition_name(segment_of(user, shards))
}

/// `F#{shard}`: the names of the first 64 shards are made once and shared.
fn partition_name(shard: u32) -> Part {
    static NAMES: std::sync::OnceLock<Vec<Part>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..64u32)
            .map(|i| Part::join(&["F#", &i.to_string()]))
            .collect()
    });
    match names.get(shard as usize) {
        Some(name) => name.clone(),
        None => Part::join(&["F#", &shard.to_string()]),
    }
}

/// Records and the sum of their counts, folded together.
#[derive(Default)]
struct Chunk {
    keys: Vec<Key>,
    /// The records' bodies, to count them one at a time if the chunk's fold conflicts.
    bodies: Vec<Body>,
    counters: BTreeMap<String, Counts>,
}

/// The records a fold run has taken off a partition ([`Runtime::fold_listed`]).
type Done = HashSet<Key, foldhash::fast::RandomState>;

/// What [`Runtime::fold_listed`] did: the records it counted, those it looked at (not in
/// `done`), and whether it stopped for time.
#[derive(Default)]
struct Walked {
    folded: usize,
    fresh: usize,
    stopped: bool,
}

/// At most what one record adds to a chunk: its journeys, and how many counters per journey.
struct Size<'a> {
    journeys: Vec<&'a str>,
    counters: usize,
}

impl Chunk {
    /// Whether a record of this size can join without passing the store's limits (judged on
    /// the most it could add, so a chunk may close a little early, never late).
    fn fits(&self, size: &Size<'_>) -> bool {
        let new_journeys = size
            .journeys
            .iter()
            .filter(|j| !self.counters.contains_key(**j))
            .count();
        let counters_fit = size.journeys.iter().all(|j| {
            self.counters.get(*j).map_or(0, BTreeMap::len) + size.counters <= FOLD_MAX_COUNTERS
        });
        self.keys.len() + 1 + self.counters.len() + new_journeys <= FOLD_MAX_ITEMS && counters_fit
    }

    /// The counters to add (to fold partition `shard`'s items), without the ones that came to
    /// nothing.
    fn into_counters(self, shard: u32) -> (Vec<Key>, Vec<Body>, Vec<(Key, Counts)>) {
        let counters = self
            .counters
            .into_iter()
            .filter_map(|(j, mut c)| {
                c.retain(|_, d| *d != 0);
                (!c.is_empty()).then(|| (stats_shard_key(&j, shard), c))
            })
            .collect();
        (self.keys, self.bodies, counters)
    }
}

/// What one record's body adds: counted from its entries as they are, or read from its JSON.
enum Counted<'a> {
    Entries(&'a [timeline::Entry]),
    Json(BTreeMap<String, Counts>),
}

impl Counted<'_> {
    fn of<'a>(key: &Key, body: &'a Body) -> Counted<'a> {
        if let Some(entries) = body.typed::<Vec<timeline::Entry>>() {
            return Counted::Entries(entries);
        }
        let counts = body
            .json()
            .map_err(|e| e.to_string())
            .and_then(|b| timeline::counters_of_json(&b));
        Counted::Json(counts.unwrap_or_else(|e| {
            // Nothing in it can be counted; it is taken off the list all the same.
            tracing::error!(pk = %key.pk, sk = %key.sk, error = %e, "a timeline record that cannot be read is folded without counts");
            BTreeMap::new()
        }))
    }

    fn size(&self) -> Size<'_> {
        match self {
            Counted::Entries(entries) => {
                let mut journeys: Vec<&str> = Vec::with_capacity(1);
                for e in entries.iter() {
                    if !journeys.contains(&&*e.journey) {
                        journeys.push(&e.journey);
                    }
                }
                Size {
                    journeys,
                    counters: timeline::most_counters(entries),
                }
            }
            Counted::Json(counts) => Size {
                journeys: counts.keys().map(String::as_str).collect(),
                counters: counts.values().map(BTreeMap::len).max().unwrap_or(0),
            },
        }
    }

    fn add_into(&self, total: &mut BTreeMap<String, Counts>) {
        match self {
            Counted::Entries(entries) => timeline::count_into(entries, total),
            Counted::Json(counts) => {
                for (j, c) in counts {
                    let t = total.entry(j.clone()).or_default();
                    for (k, d) in c {
                        *t.entry(k.clone()).or_insert(0) += d;
                    }
                }
            }
        }
    }
}

impl Runtime {
    /// A journey's counters, as of the last fold (the scheduler folds each minute): the sum of
    /// its counter items (one per fold partition, and the one folds wrote before), read in one
    /// request where the store allows ([`crate::store::Store::counters_sum`]).
    pub async fn stats(&self, journey: &str) -> Result<BTreeMap<String, i64>, RunError> {
        let keys = stats_keys(journey, self.shards_in_use().await?);
        Ok(self.store.counters_sum(&keys).await?)
    }

    /// Folds the listed timeline records of every partition into the counters. Returns how many
    /// records were counted.
    pub async fn fold_stats(&self) -> Result<usize, RunError> {
        self.fold_stats_within(None).await
    }

    /// [`Runtime::fold_stats`] until about `until` (wall time): each partition folds one chunk
    /// (a transaction) at least, then more while time is left; what is left stays listed for the
    /// next minute. The scheduler function folds so until what its invocation has left less what
    /// it keeps for later, so that a large backlog (a campaign that entered a million users) is
    /// folded over several minutes instead of running the function past its timeout.
    pub async fn fold_stats_within(
        &self,
        until: Option<std::time::Instant>,
    ) -> Result<usize, RunError> {
        let shards = self.shards_in_use().await?;
        self.fold_partitions(shards, until).await
    }

    /// [`Runtime::fold_stats_within`] over fold partitions `0..shards`.
    pub(crate) async fn fold_partitions(
        &self,
        shards: u32,
        until: Option<std::time::Instant>,
    ) -> Result<usize, RunError> {
        let out_of_time = || until.is_some_and(|u| std::time::Instant::now() >= u);
        // The partitions at once: each adds to counter items of its own.
        let folds = (0..shards).map(|shard| self.fold_partition(shard, &out_of_time));
        let mut folded = 0;
        for f in join_all(folds).await {
            folded += f?;
        }
        Ok(folded)
    }

    async fn fold_partition(
        &self,
        shard: u32,
        out_of_time: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, RunError> {
        let part = partition_name(shard);
        let mut folded = 0;
        // The records this run has taken off the partition, when another page follows:
        // DynamoDB's index lags its table, so the next page may list some again, and a chunk
        // holding one would conflict and fall back to a transaction a record.
        let mut done = Done::default();
        for _ in 0..MAX_PAGES {
            let records = self.store.pending(&part, PAGE).await?;
            let full = records.len() >= PAGE;
            let walked = self
                .fold_listed(records, shard, &mut done, full, out_of_time)
                .await?;
            folded += walked.folded;
            if walked.stopped {
                return Ok(folded);
            }
            // A page of only what was taken already: the index has yet to catch up.
            if !full || walked.fresh == 0 || out_of_time() {
                break;
            }
        }
        Ok(folded)
    }

    /// Folds those of `records` still listed under a fold partition (an erased user's timeline
    /// records, counted before they are deleted, so that the journeys' stats keep them); one
    /// already folded (the scheduler's minute got there first) is skipped. Returns how many
    /// were counted.
    pub(crate) async fn fold_records(
        &self,
        records: &[crate::store::Record],
    ) -> Result<usize, RunError> {
        let mut by_shard: BTreeMap<u32, Vec<&crate::store::Record>> = BTreeMap::new();
        for r in records {
            let shard = r
                .pending
                .as_ref()
                .and_then(|part| part.strip_prefix("F#"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(shard) = shard {
                by_shard.entry(shard).or_default().push(r);
            }
        }
        let mut folded = 0;
        let mut done = Done::default();
        for (shard, records) in by_shard {
            let records = records.into_iter().cloned();
            // (Before her records are deleted: all of it, whatever the time.)
            folded += self
                .fold_listed(records, shard, &mut done, false, &|| false)
                .await?
                .folded;
        }
        Ok(folded)
    }

    /// Folds `records`, listed under fold partition `shard`, but those in `done`: in chunks a
    /// transaction each, and a record past what one takes alone, in parts
    /// ([`Runtime::fold_alone`]). With `note_done`, each record folded (or tried) is added to
    /// `done`. Stops once `out_of_time` after a fold, the chunk being gathered left listed.
    async fn fold_listed(
        &self,
        records: impl IntoIterator<Item = crate::store::Record>,
        shard: u32,
        done: &mut Done,
        note_done: bool,
        out_of_time: &(dyn Fn() -> bool + Sync),
    ) -> Result<Walked, RunError> {
        let mut walked = Walked::default();
        let mut chunk = Chunk::default();
        for r in records {
            if done.contains(&r.key) {
                continue;
            }
            walked.fresh += 1;
            let counted = Counted::of(&r.key, &r.body);
            let size = counted.size();
            if !Chunk::default().fits(&size) {
                // Past what one fold takes: this record alone, in parts.
                if note_done {
                    done.insert(r.key.clone());
                }
                walked.folded += self
                    .fold_alone(&r.key, r.parts_counted, &counted, shard, out_of_time)
                    .await?;
                if out_of_time() {
                    walked.stopped = true;
                    return Ok(walked);
                }
                continue;
            }
            if !chunk.keys.is_empty() && !chunk.fits(&size) {
                let taken = std::mem::take(&mut chunk);
                if note_done {
                    done.extend(taken.keys.iter().cloned());
                }
                walked.folded += self.fold_chunk(taken, shard).await?;
                if out_of_time() {
                    walked.stopped = true;
                    return Ok(walked);
                }
            }
            counted.add_into(&mut chunk.counters);
            chunk.keys.push(r.key);
            chunk.bodies.push(r.body);
        }
        if !chunk.keys.is_empty() {
            if note_done {
                done.extend(chunk.keys.iter().cloned());
            }
            walked.folded += self.fold_chunk(chunk, shard).await?;
        }
        Ok(walked)
    }

    /// Folds one record whose counts may be past what one fold takes (more than
    /// [`FOLD_MAX_COUNTERS`] for a journey: a transition that ran through many steps): in one
    /// transaction if they fit after all, else in parts ([`parts_of`]), each its own
    /// transaction ([`crate::store::Store::fold_part`]), in order. The record notes how many
    /// of its parts are counted, so a fold that stops between parts (a crash, a timeout) is
    /// finished by the next from the part it stopped at (`from`: the count of parts the store
    /// read with the record, [`crate::store::Record::parts_counted`]; the parts before it are
    /// not sent again), and each part is counted once: a part counted already (by another run,
    /// or since the record was read: the `fold` index lags) conflicts, and is passed. Once
    /// `out_of_time`, it stops after the next part it counts (so each run counts one part at
    /// least), and the record stays listed for the next run to go on from there. Returns 1
    /// when this call took the record off its partition.
    async fn fold_alone(
        &self,
        key: &Key,
        from: u32,
        counted: &Counted<'_>,
        shard: u32,
        out_of_time: &(dyn Fn() -> bool + Sync),
    ) -> Result<usize, RunError> {
        let mut one = Chunk::default();
        counted.add_into(&mut one.counters);
        let (_, _, counters) = one.into_counters(shard);
        let parts = parts_of(counters);
        if let [counters] = parts.as_slice() {
            return match self.store.fold(std::slice::from_ref(key), counters).await {
                Ok(()) => Ok(1),
                Err(StoreError::Conflict) => Ok(0),
                Err(e) => Err(e.into()),
            };
        }
        let last = parts.len() - 1;
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        if from > last {
            // Counted past its parts: a build that parted it otherwise (see `parts_of`).
            tracing::error!(pk = %key.pk, sk = %key.sk, counted = from, parts = parts.len(), "a timeline record counted past its parts cannot be finished: left listed");
            return Ok(0);
        }
        let mut folded = 0;
        for (i, counters) in parts.iter().enumerate().skip(from) {
            let part = u32::try_from(i).unwrap_or(u32::MAX);
            match self.store.fold_part(key, part, i == last, counters).await {
                Ok(()) if i == last => folded = 1,
                Ok(()) if out_of_time() => break,
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(StoreError::TooLarge(why)) => return self.skip_too_large(key, i, &why).await,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(folded)
    }

    /// A record whose item the store refuses to note a count of parts on (past DynamoDB's
    /// 400 KB with it: listed by an earlier build, before a listed item kept room for `fp`):
    /// it can never be folded in parts, and left listed it would fail its partition every
    /// minute, the records behind it never counted. It is taken off its partition without its
    /// counts (the parts before `part` stay counted), with an error naming it. Returns 0: no
    /// record counted.
    async fn skip_too_large(&self, key: &Key, part: usize, why: &str) -> Result<usize, RunError> {
        tracing::error!(
            pk = %key.pk,
            sk = %key.sk,
            part,
            why,
            "a timeline record too large to fold in parts (listed by an earlier build without room for its count of parts, `fp`): taken off its fold partition, its counts from this part on not counted"
        );
        match self.store.fold(std::slice::from_ref(key), &[]).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Folds a chunk in one transaction; if some record of it was folded meanwhile (another
    /// scheduler run, or an index that lagged), folds the others one at a time.
    async fn fold_chunk(&self, chunk: Chunk, shard: u32) -> Result<usize, RunError> {
        let (keys, bodies, counters) = chunk.into_counters(shard);
        match self.store.fold(&keys, &counters).await {
            Ok(()) => return Ok(keys.len()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        let mut folded = 0;
        for (key, body) in keys.into_iter().zip(bodies) {
            let mut one = Chunk::default();
            Counted::of(&key, &body).add_into(&mut one.counters);
            let (_, _, counters) = one.into_counters(shard);
            match self.store.fold(std::slice::from_ref(&key), &counters).await {
                Ok(()) => folded += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(folded)
    }
}

/// One record's counter changes (one key a journey) in parts that each fit one fold with the
/// record's own write: at most [`FOLD_MAX_COUNTERS`] counters a key, at most
/// [`FOLD_MAX_ITEMS`] less one keys a part, and a key at most once a part (a transaction
/// writes an item once). The `n`th hundred of each key's counters goes in the `n`th round of
/// parts. The same changes always make the same parts, so a fold that stopped between parts
/// is finished by the next part by part.
///
/// Not pinned: the parts are the folding build's. A record's changes come from its stored body
/// (a put of it starts its parts over), so they differ between two runs only when the build
/// between them counts a timeline otherwise (`timeline::count_into`, another counter name) or
/// parts it otherwise (this function, [`FOLD_MAX_COUNTERS`], [`FOLD_MAX_ITEMS`]). A record left
/// between parts (its run stopped: a crash, a timeout, its time budget) and finished by such a
/// build is finished with that build's parts from the number reached: a change can be counted
/// twice or not at all, at that record alone, and nothing detects it (the store keeps the
/// number of parts counted, `fp`, not which changes they held). Before deploying such a build,
/// the records of the `fold` index that carry `fp` are those half folded.
fn parts_of(counters: Vec<(Key, Counts)>) -> Vec<Vec<(Key, Counts)>> {
    let mut rounds: Vec<Vec<(Key, Counts)>> = Vec::new();
    for (key, counts) in counters {
        let mut counts = counts.into_iter().peekable();
        let mut round = 0;
        while counts.peek().is_some() {
            let piece: Counts = counts.by_ref().take(FOLD_MAX_COUNTERS).collect();
            if rounds.len() <= round {
                rounds.push(Vec::new());
            }
            rounds[round].push((key.clone(), piece));
            round += 1;
        }
    }
    let mut parts: Vec<Vec<(Key, Counts)>> = Vec::new();
    for round in rounds {
        let mut round = round.into_iter().peekable();
        while round.peek().is_some() {
            parts.push(round.by_ref().take(FOLD_MAX_ITEMS - 1).collect());
        }
    }
    if parts.is_empty() {
        parts.push(Vec::new());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::clock::ManualClock;
    use crate::journey::Channel;
    use crate::outbox::OutboxSender;
    use crate::runtime::Config;
    use crate::simulate::DelayQueue;
    use crate::store::{Expect, Hooked, Hooks, MemoryStore, Record, Store};
    use crate::timeline::{Entry, What};

    fn entry(user: &str, step: &str, what: What) -> Entry {
        Entry {
            at: "2026-12-01T10:00:00Z".parse().expect("time"),
            journey: "cart".into(),
            enrollment: format!("cart:{user}:1").into(),
            step: Some(step.into()),
            what,
        }
    }

    /// A runtime over a new in-memory store, with `shards` fold partitions.
    fn runtime(shards: u32) -> (MemoryStore, Runtime) {
        let store = MemoryStore::new();
        (store.clone(), runtime_over(Arc::new(store), shards))
    }

    /// A runtime over `store`, with `shards` fold partitions.
    fn runtime_over(store: Arc<dyn Store>, shards: u32) -> Runtime {
        let clock = Arc::new(ManualClock::new(
            "2026-12-01T10:00:00Z".parse().expect("time"),
        ));
        let (sender, _) = OutboxSender::memory(clock.clone());
        let config = Config {
            timer_shards: shards,
            ..Config::default()
        };
        Runtime::new(
            store,
            Arc::new(DelayQueue::new(clock.clone())),
            Arc::new(sender),
            clock,
            std::time::Duration::from_secs(1),
            config,
        )
    }

    /// Notes the parts of parted folds sent to an in-memory store, and whether each was
    /// counted.
    #[derive(Default)]
    struct NotingParts {
        sent: std::sync::Mutex<Vec<(u32, bool)>>,
    }

    #[async_trait::async_trait]
    impl Hooks for NotingParts {
        async fn fold_part(
            &self,
            inner: &MemoryStore,
            record: &Key,
            part: u32,
            last: bool,
            counters: &[(Key, Counts)],
        ) -> Result<(), StoreError> {
            let got = inner.fold_part(record, part, last, counters).await;
            self.sent.lock().expect("sent").push((part, got.is_ok()));
            got
        }
    }

    #[tokio::test]
    async fn many_records_fold_in_chunks_within_the_store_limits_and_count_once() {
        // given 250 users' timeline records listed in one fold partition, one written as JSON
        let (store, rt) = runtime(1);
        for i in 0..250 {
            let user = format!("u{i}");
            let mut entries = vec![
                entry(&user, "wait", What::Step),
                entry(
                    &user,
                    "push",
                    What::Sent {
                        channel: Channel::Push,
                        locale: None,
                        id: String::new(),
                        to: None,
                    },
                ),
            ];
            if i % 50 == 0 {
                entries.push(entry(
                    &user,
                    "push",
                    What::Exited {
                        event: "order_completed".into(),
                    },
                ));
            }
            let key = Key::new(Part::join(&["U#", &user]), "T#1");
            let record = if i == 7 {
                Record {
                    key,
                    version: 1,
                    body: serde_json::to_vec(&entries).expect("json").into(),
                    expires: None,
                    pending: None,
                    parts_counted: 0,
                    sealed: false,
                }
            } else {
                Record::of(key, 1, entries)
            };
            store
                .put(&record.pending_in(fold_partition(&user, 1)), Expect::Absent)
                .await
                .expect("put");
        }
        // when the stats are folded (the in-memory store refuses a fold past DynamoDB's limits)
        let folded = rt.fold_stats().await.expect("fold");
        // then every record is counted once, and none is left listed
        assert_eq!(folded, 250);
        assert!(store
            .pending("F#0", 1000)
            .await
            .expect("pending")
            .is_empty());
        let stats = rt.stats("cart").await.expect("stats");
        assert_eq!(stats.get("step.wait.entered"), Some(&250));
        assert_eq!(stats.get("step.push.sent.push"), Some(&250));
        assert_eq!(stats.get("exited"), Some(&5));
        assert_eq!(stats.get("step.push.exited"), Some(&5));
        assert_eq!(rt.fold_stats().await.expect("fold again"), 0);
    }

    #[tokio::test]
    async fn a_fold_out_of_time_folds_a_transaction_a_partition_and_leaves_the_rest_listed() {
        // given 600 users' timeline records listed in two fold partitions
        let (store, rt) = runtime(2);
        for i in 0..600 {
            let user = format!("u{i}");
            let key = Key::new(Part::join(&["U#", &user]), "T#1");
            let record = Record::of(key, 1, vec![entry(&user, "wait", What::Step)]);
            store
                .put(&record.pending_in(fold_partition(&user, 2)), Expect::Absent)
                .await
                .expect("put");
        }
        let listed = |part: &'static str| {
            let store = store.clone();
            async move { store.pending(part, 1000).await.expect("pending").len() }
        };
        let (first, second) = (listed("F#0").await, listed("F#1").await);
        assert!(first > 200 && second > 200, "{first} / {second}");
        // when the fold has no time at all: one transaction in each partition
        let folded = rt
            .fold_stats_within(Some(std::time::Instant::now()))
            .await
            .expect("fold");
        let (first_left, second_left) = (listed("F#0").await, listed("F#1").await);
        assert!(first_left < first && second_left < second);
        assert_eq!(folded, first - first_left + second - second_left);
        assert!(folded <= 2 * FOLD_MAX_ITEMS, "{folded}");
        // then the next minutes fold the rest, each record once
        let mut minutes = 1;
        while listed("F#0").await + listed("F#1").await > 0 {
            rt.fold_stats_within(Some(std::time::Instant::now()))
                .await
                .expect("fold");
            minutes += 1;
            assert!(minutes < 20);
        }
        assert!(minutes >= 3, "{minutes}");
        let stats = rt.stats("cart").await.expect("stats");
        assert_eq!(stats.get("step.wait.entered"), Some(&600));
        // each partition added to its own counter item; the journey's stats are their sum,
        // with the single item folds wrote before they had one each
        let shard = |s: u32| {
            let store = store.clone();
            async move {
                let c = store
                    .counters(&stats_shard_key("cart", s))
                    .await
                    .expect("counters");
                c.get("step.wait.entered").copied().unwrap_or(0)
            }
        };
        assert_eq!(
            (shard(0).await, shard(1).await),
            (first as i64, second as i64)
        );
        let legacy = crate::runtime::stats_key("cart");
        let earlier: Counts = [("step.wait.entered".to_string(), 5)].into();
        store.fold(&[], &[(legacy, earlier)]).await.expect("fold");
        let stats = rt.stats("cart").await.expect("stats");
        assert_eq!(stats.get("step.wait.entered"), Some(&605));
    }

    /// One transition's entries that ran through `sends` send steps without a wait: a visit
    /// and a message at each, two counters a step.
    fn long_run(user: &str, sends: usize) -> Vec<Entry> {
        let mut entries = vec![Entry {
            step: None,
            ..entry(
                user,
                "",
                What::Entered {
                    version: 1,
                    trigger: "cart_abandoned".into(),
                    detail: None,
                },
            )
        }];
        for i in 0..sends {
            let step = format!("send_{i}");
            entries.push(entry(user, &step, What::Step));
            entries.push(entry(
                user,
                &step,
                What::Sent {
                    channel: Channel::Email,
                    locale: None,
                    id: String::new(),
                    to: None,
                },
            ));
        }
        entries.push(entry(user, "send_0", What::Completed));
        entries
    }

    /// A runtime over one fold partition holding the long run of `sends` steps of `ann`, as
    /// JSON (as DynamoDB hands it back) or not, and a record of one step of each of `others`.
    async fn with_long_run(sends: usize, json: bool, others: &[&str]) -> (MemoryStore, Runtime) {
        let (store, rt) = runtime(1);
        let key = Key::new("U#ann", "T#1");
        let entries = long_run("ann", sends);
        let record = if json {
            Record {
                key,
                version: 1,
                body: serde_json::to_vec(&entries).expect("json").into(),
                expires: None,
                pending: None,
                parts_counted: 0,
                sealed: false,
            }
        } else {
            Record::of(key, 1, entries)
        };
        store
            .put(&record.pending_in(fold_partition("ann", 1)), Expect::Absent)
            .await
            .expect("put");
        for user in others {
            let key = Key::new(Part::join(&["U#", user]), "T#1");
            let record = Record::of(key, 1, vec![entry(user, "send_0", What::Step)]);
            store
                .put(&record.pending_in(fold_partition(user, 1)), Expect::Absent)
                .await
                .expect("put");
        }
        (store, rt)
    }

    /// What the stats read once `ann`'s long run of `sends` steps and one step of `others`
    /// more users are counted, each once.
    fn counted_once(sends: usize, others: usize) -> BTreeMap<String, i64> {
        let mut want = timeline::counters(&long_run("ann", sends))
            .remove("cart")
            .expect("cart");
        *want.entry("step.send_0.entered".into()).or_insert(0) += others as i64;
        want
    }

    #[tokio::test]
    async fn a_record_past_what_one_fold_takes_is_folded_in_parts_and_counted_once() {
        for json in [false, true] {
            // given a transition that ran through 120 sends without a wait (241 counters, past
            // the 100 one fold changes at a key), listed with other users' records
            let (store, rt) = with_long_run(120, json, &["bob", "cy"]).await;
            assert!(counted_once(120, 0).len() > 2 * FOLD_MAX_COUNTERS);

            // when the stats are folded
            let folded = rt.fold_stats().await.expect("fold");

            // then every record is counted, each once, and none is left listed
            assert_eq!(folded, 3, "json: {json}");
            assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
            let stats = rt.stats("cart").await.expect("stats");
            assert_eq!(stats, counted_once(120, 2), "json: {json}");
            assert_eq!(rt.fold_stats().await.expect("fold again"), 0);
            assert_eq!(rt.stats("cart").await.expect("stats"), stats);
        }
    }

    /// A record an earlier build listed without room for its count of parts (`fp`) is refused
    /// by the store when a fold in parts notes one on it (DynamoDB: a `ValidationError`, the
    /// item past 400 KB): the fold takes it off its partition uncounted, with an error naming
    /// it, and counts the partition's other records (was: the error failed the partition every
    /// minute, for ever, none of its records counted).
    #[tokio::test]
    async fn a_record_too_large_to_fold_in_parts_is_skipped_and_the_others_counted() {
        // given ann's long run of 120 sends (three parts), its body past 400 KB even deflated
        // (a noise no compression shrinks much), written as an earlier build wrote it (the
        // memory store takes any size), listed with bob's and cy's records
        let (store, rt) = with_long_run(120, false, &["bob", "cy"]).await;
        let key = Key::new("U#ann", "T#1");
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: String = (0..700 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        [(x % 64) as usize],
                )
            })
            .collect();
        let mut entries = long_run("ann", 120);
        entries[2].what = What::Sent {
            channel: Channel::Email,
            locale: Some(noise.into()),
            id: String::new(),
            to: None,
        };
        let record = Record::of(key.clone(), 2, entries).pending_in(fold_partition("ann", 1));
        store.put(&record, Expect::Version(1)).await.expect("put");
        // (the store refuses the first part's count of parts on it)
        let mut one = Chunk::default();
        Counted::of(&key, &record.body).add_into(&mut one.counters);
        let parts = parts_of(one.into_counters(0).2);
        assert!(parts.len() > 1, "{parts:?}");
        let refused = store.fold_part(&key, 0, false, &parts[0]).await;
        assert!(
            matches!(&refused, Err(StoreError::TooLarge(why)) if why.contains("U#ann")),
            "{refused:?}"
        );

        // when the stats are folded
        let folded = rt.fold_stats().await.expect("fold");

        // then bob's and cy's records are counted, ann's is taken off the partition uncounted,
        // and the next minute has nothing left to fold
        assert_eq!(folded, 2);
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
        let stats = rt.stats("cart").await.expect("stats");
        assert_eq!(stats.get("step.send_0.entered"), Some(&2), "{stats:?}");
        assert_eq!(rt.fold_stats().await.expect("fold again"), 0);
    }

    #[tokio::test]
    async fn a_fold_stopped_between_parts_is_finished_by_the_next_each_part_counted_once() {
        // given a record of 120 sends whose first part of three was counted by a fold that
        // stopped there (a crash, a timeout)
        let (store, rt) = with_long_run(120, false, &[]).await;
        let key = Key::new("U#ann", "T#1");
        let record = store.get(&key).await.expect("get").expect("the record");
        let mut one = Chunk::default();
        Counted::of(&key, &record.body).add_into(&mut one.counters);
        let parts = parts_of(one.into_counters(0).2);
        assert_eq!(parts.len(), 3, "{parts:?}");
        store
            .fold_part(&key, 0, false, &parts[0])
            .await
            .expect("the first part");
        // (a part is counted only in its turn: again, or ahead of the one before, it conflicts)
        for (part, last) in [(0, false), (2, true)] {
            let again = store.fold_part(&key, part, last, &parts[part as usize]);
            assert_eq!(again.await, Err(StoreError::Conflict), "part {part}");
        }
        assert_eq!(store.pending("F#0", 10).await.expect("pending").len(), 1);

        // when the next minute folds
        let folded = rt.fold_stats().await.expect("fold");

        // then it counts the parts left, and the record is counted once in all
        assert_eq!(folded, 1);
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
        assert_eq!(rt.stats("cart").await.expect("stats"), counted_once(120, 0));
        assert_eq!(rt.fold_stats().await.expect("fold again"), 0);
    }

    #[tokio::test]
    async fn a_fold_resumed_between_parts_sends_only_the_parts_left() {
        for erasure in [false, true] {
            // given a record of 120 sends whose first part of three was counted by a fold
            // that stopped there
            let (store, _) = with_long_run(120, false, &[]).await;
            let key = Key::new("U#ann", "T#1");
            let record = store.get(&key).await.expect("get").expect("the record");
            let mut one = Chunk::default();
            Counted::of(&key, &record.body).add_into(&mut one.counters);
            let parts = parts_of(one.into_counters(0).2);
            assert_eq!(parts.len(), 3, "{parts:?}");
            store
                .fold_part(&key, 0, false, &parts[0])
                .await
                .expect("the first part");
            let noting = Arc::new(Hooked::new(store.clone(), NotingParts::default()));
            let rt = runtime_over(noting.clone(), 1);

            // when the next minute's fold (or her erasure, before it deletes the record) goes on
            let folded = if erasure {
                let records = store.query("U#ann", "T#").await.expect("query");
                rt.fold_records(&records).await.expect("fold")
            } else {
                rt.fold_stats().await.expect("fold")
            };

            // then it sends the two parts left, each counted, and not the first again (a
            // transaction refused, its write units spent for nothing)
            assert_eq!(folded, 1, "erasure: {erasure}");
            assert_eq!(
                *noting.sent.lock().expect("sent"),
                [(1, true), (2, true)],
                "erasure: {erasure}"
            );
            assert_eq!(rt.stats("cart").await.expect("stats"), counted_once(120, 0));
        }
    }

    #[tokio::test]
    async fn a_fold_out_of_time_stops_between_a_records_parts_and_the_next_goes_on_from_there() {
        // given a record of 120 sends, folded in three parts, and a fold with no time at all
        let (store, rt) = with_long_run(120, false, &[]).await;
        let key = Key::new("U#ann", "T#1");
        let record = store.get(&key).await.expect("get").expect("the record");
        let mut one = Chunk::default();
        Counted::of(&key, &record.body).add_into(&mut one.counters);
        let parts = parts_of(one.into_counters(0).2);
        assert_eq!(parts.len(), 3, "{parts:?}");
        let counted = |n: usize| {
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for (_, c) in parts.iter().take(n).flatten() {
                for (k, d) in c {
                    *want.entry(k.clone()).or_insert(0) += d;
                }
            }
            want.retain(|_, d| *d != 0);
            want
        };

        // when each minute's fold is out of time from the start
        for minute in 1..=2 {
            let folded = rt
                .fold_stats_within(Some(std::time::Instant::now()))
                .await
                .expect("fold");

            // then it counts one part and stops there, the record still listed
            assert_eq!(folded, 0, "minute {minute}");
            assert_eq!(store.pending("F#0", 10).await.expect("pending").len(), 1);
            assert_eq!(rt.stats("cart").await.expect("stats"), counted(minute));
        }
        // and the third goes on from the part the second reached: the record counted once
        let folded = rt
            .fold_stats_within(Some(std::time::Instant::now()))
            .await
            .expect("fold");
        assert_eq!(folded, 1);
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
        assert_eq!(rt.stats("cart").await.expect("stats"), counted_once(120, 0));
        assert_eq!(rt.fold_stats().await.expect("fold again"), 0);
    }

    #[tokio::test]
    async fn an_erasure_folds_a_record_past_what_one_fold_takes() {
        // given a user's long run, listed, as her erasure reads it
        let (store, rt) = with_long_run(120, false, &[]).await;
        let records = store.query("U#ann", "T#").await.expect("query");

        // when her erasure folds her records before it deletes them
        let folded = rt.fold_records(&records).await.expect("fold");

        // then it is counted, once
        assert_eq!(folded, 1);
        assert_eq!(rt.stats("cart").await.expect("stats"), counted_once(120, 0));
        assert_eq!(rt.fold_records(&records).await.expect("fold again"), 0);
        assert_eq!(rt.stats("cart").await.expect("stats"), counted_once(120, 0));
    }

    #[test]
    fn a_records_parts_each_fit_one_fold_and_hold_every_change_once() {
        let key = |j: usize| stats_shard_key(&format!("j{j}"), 0);
        let counts = |n: usize| -> Counts { (0..n).map(|i| (format!("c{i:03}"), 1)).collect() };
        // 250 counters of one journey: three parts, one key each
        let parts = parts_of(vec![(key(0), counts(250))]);
        assert_eq!(
            parts.iter().map(|p| p[0].1.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        // 150 journeys of 3 counters and one of 150: no part past the store's limits, no key
        // twice in a part, and every change in exactly one part
        let mut changes: Vec<(Key, Counts)> = (0..150).map(|j| (key(j), counts(3))).collect();
        changes.push((key(150), counts(150)));
        let parts = parts_of(changes.clone());
        let mut seen: BTreeMap<Key, Counts> = BTreeMap::new();
        for p in &parts {
            crate::store::check_fold(&[Key::new("U#ann", "T#1")], p).expect("fits one fold");
            let keys: HashSet<&Key> = p.iter().map(|(k, _)| k).collect();
            assert_eq!(keys.len(), p.len(), "a key twice in a part");
            for (k, c) in p {
                for (name, d) in c {
                    assert!(seen
                        .entry(k.clone())
                        .or_default()
                        .insert(name.clone(), *d)
                        .is_none());
                }
            }
        }
        assert_eq!(seen, changes.into_iter().collect());
        assert_eq!(parts_of(Vec::new()), [Vec::new()]);
    }

    #[test]
    fn fold_partitions_are_named_by_shard_past_the_shared_names_too() {
        for shard in [0, 1, 15, 63, 64, 1000] {
            assert_eq!(partition_name(shard).as_str(), format!("F#{shard}"));
        }
        let user = "ann";
        assert_eq!(
            fold_partition(user, 16).as_str(),
            format!("F#{}", segment_of(user, 16))
        );
    }

    #[test]
    fn a_chunk_closes_before_the_store_limits() {
        let mut chunk = Chunk::default();
        let size = Size {
            journeys: vec!["cart"],
            counters: 3,
        };
        // Records and counter keys together: 98 records and one journey's key leave room for
        // one more record, not two.
        for i in 0..98 {
            assert!(chunk.fits(&size), "record {i}");
            chunk.keys.push(Key::new(format!("U#{i}"), "T#1"));
            chunk.counters.entry("cart".into()).or_default();
        }
        assert!(chunk.fits(&size));
        chunk.keys.push(Key::new("U#98", "T#1"));
        assert!(!chunk.fits(&size));
        // Counters per key: a journey's counters plus the most a record adds stay within 100.
        let mut chunk = Chunk::default();
        let counts: Counts = (0..97).map(|i| (format!("c{i}"), 1)).collect();
        chunk.counters.insert("cart".into(), counts);
        assert!(chunk.fits(&size));
        let bigger = Size {
            journeys: vec!["cart"],
            counters: 4,
        };
        assert!(!chunk.fits(&bigger));
    }
}
