//! The embedded adapters `waymark dev` runs on: a [`Store`] and a persistent delay [`Queue`] in one
//! redb file, so profiles, enrollments, timers and pending wake-ups survive a restart. Knows
//! nothing of journeys; never used in Lambda.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::queue::{Message, Outbound, Queue, QueueError, QueueName};
use crate::store::{
    check, check_fold, check_key, check_keys, check_partition, check_record, check_seal,
    item_past_bound, listed_item_refused, page_of, refused_item, segment_of, too_large_item,
    Counts, Expect, Key, Page, Part, Record, Store, StoreError, FOLD_PROGRESS_BYTES,
    MAX_ITEM_BYTES,
};

/// Records by (partition, sort key): (version, expiry in epoch seconds or -1, JSON body).
///
/// The key is a redb tuple rather than one `pk + "\0" + sk` string: a tuple compares partition
/// first and cannot be confused by a partition key that itself holds a NUL (user ids come from
/// outside), so a prefix query never reads into a neighbouring partition.
const RECORDS: TableDefinition<(&str, &str), (u64, i64, &[u8])> = TableDefinition::new("records");
/// Counters, one row each: (partition, sort key, counter name) → value.
const COUNTERS: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("counters");
/// Records listed for folding: (fold partition, partition, sort key) → nothing.
const PENDING: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("pending");
/// The fold partition of each listed record: (partition, sort key) → fold partition.
const PENDING_OF: TableDefinition<(&str, &str), &str> = TableDefinition::new("pending_of");
/// The listed records some of whose fold's parts are counted ([`Store::fold_part`]):
/// (partition, sort key) → how many.
const PARTS_FOLDED: TableDefinition<(&str, &str), u32> = TableDefinition::new("parts_folded");
/// The sealed records ([`Record::sealed`]): (partition, sort key) → nothing.
const SEALED: TableDefinition<(&str, &str), ()> = TableDefinition::new("sealed");
/// Queued messages by (due epoch millis, arrival number): (delivery attempts, message JSON).
const QUEUE: TableDefinition<(i64, u64), (u32, &str)> = TableDefinition::new("queue");
/// Messages the engine could not handle, by (when they died in epoch millis, arrival number):
/// (delivery attempts, why, message JSON). `waymark dead-letters` lists and redrives them, as
/// SQS's dead-letter queue keeps what the deployed engine gives up on.
const DEAD: TableDefinition<(i64, u64), (u32, &str, &str)> = TableDefinition::new("dead_letters");
/// Small named numbers (the queue's arrival counter).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `waymark dev`'s outbox lines waiting for the engine's next durable commit, by the order they
/// were staged in: the line's JSON ([`StagedLines`]).
const STAGED: TableDefinition<u64, &str> = TableDefinition::new("outbox_staged");

const NO_EXPIRY: i64 = -1;
const QUEUE_SEQ: &str = "queue_seq";
/// Durable commits made for the engine: [`commit_durably`] (a sync, the outbox's), the queue's
/// acknowledgements and its writer's group commits ([`durable_commits`]).
const SYNCS: &str = "syncs";
/// The store's id ([`store_id`]).
const STORE_ID: &str = "store_id";
/// Where [`LocalQueue::release_leases`] puts the messages it gives back: due before any other
/// (the Unix epoch, a time every clock is past).
const RELEASED: i64 = 0;
/// The latest virtual time of a durable commit, in milliseconds ([`stored_clock`]).
const CLOCK: &str = "clock";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The file is held by another process (another `waymark dev` on the same data folder).
    #[error("{path} is in use by another process (is another `waymark dev` running on this data folder?)")]
    InUse { path: String },
    #[error("cannot open {path}: {message}")]
    Open { path: String, message: String },
}

/// The page cache of the embedded database.
const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// Opens (or creates) the database file and its tables.
pub fn open(path: &Path) -> Result<Arc<Database>, LocalError> {
    let shown = path.display().to_string();
    // redb caches up to 1 GiB by default; a laptop's dev engine needs far less.
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LocalError::InUse {
                path: shown.clone(),
            },
            other => LocalError::Open {
                path: shown.clone(),
                message: other.to_string(),
            },
        })?;
    create_tables(&db).map_err(|e| LocalError::Open {
        path: shown,
        message: e.to_string(),
    })?;
    Ok(Arc::new(db))
}

/// An in-memory database (nothing on disk), for tests.
pub fn open_in_memory() -> Result<Arc<Database>, LocalError> {
    let open_err = |message: String| LocalError::Open {
        path: "(memory)".into(),
        message,
    };
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| open_err(e.to_string()))?;
    create_tables(&db).map_err(|e| open_err(e.to_string()))?;
    Ok(Arc::new(db))
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(PENDING)?;
    txn.open_table(PENDING_OF)?;
    txn.open_table(PARTS_FOLDED)?;
    txn.open_table(SEALED)?;
    txn.open_table(QUEUE)?;
    txn.open_table(DEAD)?;
    txn.open_table(STAGED)?;
    {
        let mut meta = txn.open_table(META)?;
        if meta.get(STORE_ID)?.is_none() {
            let key = crate::auth::generate_key("");
            let id = key
                .get(..16)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_default();
            meta.insert(STORE_ID, id)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// A durable commit: everything written before it (a deferred store's writes included) is on
/// disk when it returns, with `now`, the virtual time it was made at ([`stored_clock`]).
pub fn commit_durably(db: &Database, now: Timestamp) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        count_commit(&mut meta)?;
        note_clock(&mut meta, now)?;
    }
    txn.commit()?;
    Ok(())
}

/// Counts a durable commit of the engine's, in the commit itself ([`durable_commits`]).
fn count_commit(meta: &mut redb::Table<'_, &str, u64>) -> Result<(), redb::Error> {
    let n = meta.get(SYNCS)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(SYNCS, n.wrapping_add(1))?;
    Ok(())
}

/// How many durable commits the engine's side has made in this store's life (each waits for
/// the disk): [`commit_durably`], the queue's acknowledgements and sends. Not the API's own
/// writes (each durable as it returns).
pub fn durable_commits(db: &Database) -> u64 {
    let read = || -> Result<u64, redb::Error> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(SYNCS)?.map(|v| v.value()).unwrap_or(0))
    };
    read().unwrap_or_default()
}

/// `waymark dev`'s outbox lines as they wait in the store ([`crate::outbox::Staging`]): staged
/// by a deferred write among the engine's, so that a line is on disk exactly when the writes
/// that decided it are, and written to the outbox file only after the commit that makes them
/// durable.
pub struct StagedLines {
    db: Arc<Database>,
}

impl StagedLines {
    pub fn new(db: Arc<Database>) -> Self {
        StagedLines { db }
    }
}

impl crate::outbox::Staging for StagedLines {
    fn stage(&self, line: &crate::outbox::OutboxLine) -> Result<(), String> {
        let json = serde_json::to_string(line).map_err(|e| e.to_string())?;
        let write = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut t = txn.open_table(STAGED)?;
                let next = t.last()?.map_or(1, |(k, _)| k.value() + 1);
                t.insert(next, json.as_str())?;
            }
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }

    fn commit(&self, now: Timestamp) -> Result<Option<crate::outbox::Waiting>, String> {
        let waiting = || -> Result<bool, redb::Error> {
            let txn = self.db.begin_read()?;
            Ok(!txn.open_table(STAGED)?.is_empty()?)
        };
        if !waiting().map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let commit = || -> Result<Vec<(u64, String)>, redb::Error> {
            let txn = self.db.begin_write()?;
            let staged = {
                let mut meta = txn.open_table(META)?;
                count_commit(&mut meta)?;
                note_clock(&mut meta, now)?;
                let t = txn.open_table(STAGED)?;
                let mut staged = Vec::new();
                for item in t.iter()? {
                    let (k, v) = item?;
                    staged.push((k.value(), v.value().to_string()));
                }
                staged
            };
            txn.commit()?;
            Ok(staged)
        };
        let staged = commit().map_err(|e| e.to_string())?;
        let through = staged.last().map_or(0, |(k, _)| *k);
        // A line that does not read (none should: the engine wrote it) stays out of the
        // outbox, said, and is let go with the others.
        let lines = staged
            .into_iter()
            .filter_map(|(_, json)| match serde_json::from_str(&json) {
                Ok(line) => Some(line),
                Err(e) => {
                    tracing::error!(error = %e, line = %json, "a staged outbox line does not read; left out");
                    None
                }
            })
            .collect();
        Ok(Some(crate::outbox::Waiting { lines, through }))
    }

    fn release(&self, through: u64) -> Result<(), String> {
        let write = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::None)?;
            {
                let mut t = txn.open_table(STAGED)?;
                let done: Vec<u64> = t
                    .range(..=through)?
                    .map(|item| item.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?;
                for k in done {
                    t.remove(k)?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| e.to_string())
    }
}

/// Keeps the latest virtual time a commit was made at.
fn note_clock(meta: &mut redb::Table<'_, &str, u64>, now: Timestamp) -> Result<(), redb::Error> {
    let millis = u64::try_from(now.as_millisecond()).unwrap_or_default();
    if meta.get(CLOCK)?.is_none_or(|v| v.value() < millis) {
        meta.insert(CLOCK, millis)?;
    }
    Ok(())
}

/// The latest virtual time a durable commit of the engine's was made at (its acknowledgements,
/// and the commit before each message goes to `waymark dev`'s outbox): a restart's clock starts
/// there at least, so that no message is stamped before one sent already.
pub fn stored_clock(db: &Database) -> Option<Timestamp> {
    let txn = db.begin_read().ok()?;
    let meta = txn.open_table(META).ok()?;
    let millis = meta.get(CLOCK).ok()??.value();
    Timestamp::from_millisecond(i64::try_from(millis).ok()?).ok()
}

/// The store's own id, made when the file was created: what `waymark dev`'s outbox lines carry,
/// so that a store started over (its data folder deleted) does not take the sends an earlier
/// store wrote to the same outbox file for its own.
pub fn store_id(db: &Database) -> Result<String, LocalError> {
    let failed = |e: String| LocalError::Open {
        path: "(store id)".into(),
        message: e,
    };
    let txn = db.begin_read().map_err(|e| failed(e.to_string()))?;
    let meta = txn.open_table(META).map_err(|e| failed(e.to_string()))?;
    let id = meta
        .get(STORE_ID)
        .map_err(|e| failed(e.to_string()))?
        .map(|v| v.value())
        .unwrap_or_default();
    Ok(format!("{id:016x}"))
}

/// Maps redb's errors onto a port's "unavailable" error.
trait OrUnavailable<T> {
    fn store(self) -> Result<T, StoreError>;
    fn queue(self) -> Result<T, QueueError>;
}

impl<T, E: Into<redb::Error>> OrUnavailable<T> for Result<T, E> {
    fn store(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Unavailable(format!("local store: {}", e.into())))
    }
    fn queue(self) -> Result<T, QueueError> {
        self.map_err(|e| QueueError::Unavailable(format!("local queue: {}", e.into())))
    }
}

/// Runs blocking database work off the async threads (a commit waits for the disk); `lost`
/// makes the port's error when the task itself fails.
async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
    lost: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(lost(format!("local database task failed: {e}"))),
    }
}

/// A [`Store`] in a redb file. Every conditional check and its write happen in one write
/// transaction, so they are atomic as DynamoDB's conditional writes are.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    durability: Durability,
}

/// A write transaction at the given durability.
fn begin_write(
    db: &Database,
    durability: Durability,
) -> Result<redb::WriteTransaction, StoreError> {
    let mut txn = db.begin_write().store()?;
    txn.set_durability(durability)
        .map_err(|e| StoreError::Unavailable(format!("local store: {e}")))?;
    Ok(txn)
}

fn record_of(pk: &str, sk: &str, (version, expires, body): (u64, i64, &[u8])) -> Record {
    Record {
        key: Key::new(pk, sk),
        version,
        body: bytes::Bytes::copy_from_slice(body).into(),
        expires: (expires != NO_EXPIRY).then_some(expires),
        pending: None,
        parts_counted: 0,
        sealed: false,
    }
}

/// How many parts of a listed record's fold are counted (0: none, or not listed).
fn parts_counted(
    folded: &impl ReadableTable<(&'static str, &'static str), u32>,
    pk: &str,
    sk: &str,
) -> Result<u32, StoreError> {
    Ok(folded.get((pk, sk)).store()?.map_or(0, |v| v.value()))
}

/// Whether the record at (`pk`, `sk`) is sealed.
fn sealed(
    seals: &impl ReadableTable<(&'static str, &'static str), ()>,
    pk: &str,
    sk: &str,
) -> Result<bool, StoreError> {
    Ok(seals.get((pk, sk)).store()?.is_some())
}

/// Notes the record at (`pk`, `sk`) sealed or not, in `txn`.
fn seal(txn: &redb::WriteTransaction, pk: &str, sk: &str, sealed: bool) -> Result<(), StoreError> {
    let mut seals = txn.open_table(SEALED).store()?;
    if sealed {
        seals.insert((pk, sk), ()).store()?;
    } else {
        seals.remove((pk, sk)).store()?;
    }
    Ok(())
}

/// The fold partition a record is listed under, if any.
fn pending_of(
    of: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    pk: &str,
    sk: &str,
) -> Result<Option<Part>, StoreError> {
    Ok(of.get((pk, sk)).store()?.map(|v| Part::from(v.value())))
}

/// Refuses a record DynamoDB would refuse (see [`check_record`]), or whose item, as the DynamoDB
/// adapter writes it, is past [`MAX_ITEM_BYTES`] ([`item_past_bound`]); a listed record also
/// when its item leaves no room for the count of its fold's parts ([`listed_item_refused`]),
/// as the DynamoDB adapter refuses it.
fn check_item(record: &Record, body: &[u8]) -> Result<(), StoreError> {
    check_record(record)?;
    let (pk, sk) = (&record.key.pk, &record.key.sk);
    let pending = record.pending.as_deref();
    let listed = pending.is_some();
    let Some(size) = item_past_bound(pk, sk, record.expires.is_some(), pending, listed, body)
    else {
        return Ok(());
    };
    let without = if listed {
        size - FOLD_PROGRESS_BYTES
    } else {
        size
    };
    if without > MAX_ITEM_BYTES {
        return Err(refused_item(pk, sk, without));
    }
    Err(listed_item_refused(pk, sk, without).unwrap_or_else(|| refused_item(pk, sk, size)))
}

/// Takes a record off its fold partition, if it is on one; says whether it was.
fn unlist(txn: &redb::WriteTransaction, pk: &str, sk: &str) -> Result<bool, StoreError> {
    let mut of = txn.open_table(PENDING_OF).store()?;
    let Some(part) = of.remove((pk, sk)).store()?.map(|v| v.value().to_string()) else {
        return Ok(false);
    };
    let mut pending = txn.open_table(PENDING).store()?;
    pending.remove((part.as_str(), pk, sk)).store()?;
    // Only a listed record has parts of its fold counted.
    txn.open_table(PARTS_FOLDED)
        .store()?
        .remove((pk, sk))
        .store()?;
    Ok(true)
}

/// Adds `counters` to the stored counters, in `txn`.
fn add_counts(txn: &redb::WriteTransaction, counters: &[(Key, Counts)]) -> Result<(), StoreError> {
    let mut t = txn.open_table(COUNTERS).store()?;
    for (key, deltas) in counters {
        for (name, delta) in deltas {
            let k = (key.pk.as_str(), key.sk.as_str(), name.as_str());
            let current = t.get(k).store()?.map(|v| v.value()).unwrap_or(0);
            t.insert(k, current.saturating_add(*delta)).store()?;
        }
    }
    Ok(())
}

impl RedbStore {
    /// Every write is on disk when it returns.
    pub fn new(db: Arc<Database>) -> Self {
        RedbStore {
            db,
            durability: Durability::Immediate,
        }
    }

    /// Writes are made durable by the database's next durable commit rather than one by one:
    /// for `waymark dev`'s engine, whose every message ends in the queue's durable
    /// acknowledgement. A crash loses at most the writes of messages not yet acknowledged, as a
    /// crash a moment earlier would have; the queue delivers those messages again. (Commits reach
    /// the disk in order, so what survives is always a prefix of what was written.)
    pub fn deferred(db: Arc<Database>) -> Self {
        RedbStore {
            db,
            durability: Durability::None,
        }
    }

    /// Writes `record` on `expect` and, with `unless`, only while the record at that key is not
    /// sealed ([`Store::put_unless_sealed`]): checks and write in one transaction.
    async fn write(
        &self,
        record: &Record,
        expect: Expect,
        unless: Option<Key>,
    ) -> Result<(), StoreError> {
        let db = self.db.clone();
        let durability = self.durability;
        let record = record.clone();
        let body = record.body.json()?;
        check_item(&record, &body)?;
        blocking(
            move || -> Result<(), StoreError> {
                let txn = begin_write(&db, durability)?;
                {
                    let mut t = txn.open_table(RECORDS).store()?;
                    let key = (record.key.pk.as_str(), record.key.sk.as_str());
                    let current = t.get(key).store()?.map(|v| v.value().0);
                    // On a lost condition the transaction is dropped, which aborts it.
                    check(current, expect)?;
                    if let Some(k) = &unless {
                        let seals = txn.open_table(SEALED).store()?;
                        if sealed(&seals, &k.pk, &k.sk)? {
                            return Err(StoreError::Sealed);
                        }
                    }
                    let value = (
                        record.version,
                        record.expires.unwrap_or(NO_EXPIRY),
                        body.as_ref(),
                    );
                    t.insert(key, value).store()?;
                }
                // A put replaces the whole item, its listing included (as DynamoDB's does).
                let (pk, sk) = (record.key.pk.as_str(), record.key.sk.as_str());
                unlist(&txn, pk, sk)?;
                seal(&txn, pk, sk, record.sealed)?;
                if let Some(part) = &record.pending {
                    txn.open_table(PENDING_OF)
                        .store()?
                        .insert((pk, sk), part.as_str())
                        .store()?;
                    txn.open_table(PENDING)
                        .store()?
                        .insert((part.as_str(), pk, sk), ())
                        .store()?;
                }
                txn.commit().store()?;
                Ok(())
            },
            StoreError::Unavailable,
        )
        .await
    }

    /// Deletes records whose expiry has passed (DynamoDB's TTL does the same, lazily). Returns
    /// how many went.
    pub async fn purge_expired(&self, now: Timestamp) -> Result<usize, StoreError> {
        let db = self.db.clone();
        let durability = self.durability;
        let now = now.as_second();
        blocking(
            move || -> Result<usize, StoreError> {
                let txn = begin_write(&db, durability)?;
                let gone = {
                    let mut t = txn.open_table(RECORDS).store()?;
                    let mut expired = Vec::new();
                    for item in t.iter().store()? {
                        let (k, v) = item.store()?;
                        let (_, expires, _) = v.value();
                        if expires != NO_EXPIRY && expires <= now {
                            let (pk, sk) = k.value();
                            expired.push((pk.to_string(), sk.to_string()));
                        }
                    }
                    for (pk, sk) in &expired {
                        t.remove((pk.as_str(), sk.as_str())).store()?;
                    }
                    expired
                };
                for (pk, sk) in &gone {
                    unlist(&txn, pk, sk)?;
                    seal(&txn, pk, sk, false)?;
                }
                let gone = gone.len();
                txn.commit().store()?;
                Ok(gone)
            },
            StoreError::Unavailable,
        )
        .await
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        check_key(key)?;
        let db = self.db.clone();
        let key = key.clone();
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(RECORDS).store()?;
                let of = txn.open_table(PENDING_OF).store()?;
                let folded = txn.open_table(PARTS_FOLDED).store()?;
                let seals = txn.open_table(SEALED).store()?;
                let found = t.get((key.pk.as_str(), key.sk.as_str())).store()?;
                match found {
                    Some(v) => {
                        let mut r = record_of(&key.pk, &key.sk, v.value());
                        r.pending = pending_of(&of, &key.pk, &key.sk)?;
                        r.parts_counted = parts_counted(&folded, &key.pk, &key.sk)?;
                        r.sealed = sealed(&seals, &key.pk, &key.sk)?;
                        Ok(Some(r))
                    }
                    None => Ok(None),
                }
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        check_keys(keys)?;
        let db = self.db.clone();
        let keys = keys.to_vec();
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(RECORDS).store()?;
                let of = txn.open_table(PENDING_OF).store()?;
                let folded = txn.open_table(PARTS_FOLDED).store()?;
                let seals = txn.open_table(SEALED).store()?;
                let mut out = Vec::with_capacity(keys.len());
                for key in &keys {
                    if let Some(v) = t.get((key.pk.as_str(), key.sk.as_str())).store()? {
                        let mut r = record_of(&key.pk, &key.sk, v.value());
                        r.pending = pending_of(&of, &key.pk, &key.sk)?;
                        r.parts_counted = parts_counted(&folded, &key.pk, &key.sk)?;
                        r.sealed = sealed(&seals, &key.pk, &key.sk)?;
                        out.push(r);
                    }
                }
                Ok(out)
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        self.write(record, expect, None).await
    }

    async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        check_seal(record, seal)?;
        self.write(record, expect, Some(seal.clone())).await
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        check_key(key)?;
        let db = self.db.clone();
        let durability = self.durability;
        let key = key.clone();
        blocking(
            move || -> Result<(), StoreError> {
                let txn = begin_write(&db, durability)?;
                {
                    let mut t = txn.open_table(RECORDS).store()?;
                    let k = (key.pk.as_str(), key.sk.as_str());
                    let current = t.get(k).store()?.map(|v| v.value().0);
                    check(current, expect)?;
                    t.remove(k).store()?;
                }
                unlist(&txn, &key.pk, &key.sk)?;
                seal(&txn, &key.pk, &key.sk, false)?;
                txn.commit().store()?;
                Ok(())
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        check_partition(pk)?;
        let db = self.db.clone();
        let (pk, prefix) = (pk.to_string(), prefix.to_string());
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(RECORDS).store()?;
                let of = txn.open_table(PENDING_OF).store()?;
                let folded = txn.open_table(PARTS_FOLDED).store()?;
                let seals = txn.open_table(SEALED).store()?;
                let mut out = Vec::new();
                for item in t.range((pk.as_str(), prefix.as_str())..).store()? {
                    let (k, v) = item.store()?;
                    let (p, s) = k.value();
                    if p != pk || !s.starts_with(prefix.as_str()) {
                        break;
                    }
                    let mut r = record_of(p, s, v.value());
                    r.pending = pending_of(&of, p, s)?;
                    r.parts_counted = parts_counted(&folded, p, s)?;
                    r.sealed = sealed(&seals, p, s)?;
                    out.push(r);
                }
                Ok(out)
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn partitions_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        if from >= to {
            return Ok(Some(Vec::new()));
        }
        let db = self.db.clone();
        let (from, to) = (from.to_string(), to.to_string());
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(RECORDS).store()?;
                let mut out: Vec<Part> = Vec::new();
                for item in t.range((from.as_str(), "")..(to.as_str(), "")).store()? {
                    let (k, _) = item.store()?;
                    let (p, _) = k.value();
                    if out.last().is_none_or(|last| last.as_str() != p) {
                        out.push(Part::from(p));
                    }
                }
                Ok(Some(out))
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        check_partition(part)?;
        let db = self.db.clone();
        let part = part.to_string();
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let pending = txn.open_table(PENDING).store()?;
                let t = txn.open_table(RECORDS).store()?;
                let folded = txn.open_table(PARTS_FOLDED).store()?;
                let seals = txn.open_table(SEALED).store()?;
                let mut out = Vec::new();
                for item in pending.range((part.as_str(), "", "")..).store()? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, _) = item.store()?;
                    let (p, pk, sk) = k.value();
                    if p != part {
                        break;
                    }
                    if let Some(v) = t.get((pk, sk)).store()? {
                        let mut r = record_of(pk, sk, v.value());
                        r.pending = Some(Part::from(part.as_str()));
                        r.parts_counted = parts_counted(&folded, pk, sk)?;
                        r.sealed = sealed(&seals, pk, sk)?;
                        out.push(r);
                    }
                }
                Ok(out)
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn fold(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
        check_fold(records, counters)?;
        let db = self.db.clone();
        let durability = self.durability;
        let records = records.to_vec();
        let counters = counters.to_vec();
        blocking(
            move || -> Result<(), StoreError> {
                let txn = begin_write(&db, durability)?;
                for key in &records {
                    // A record no longer listed: drop the transaction (it aborts), change nothing.
                    if !unlist(&txn, &key.pk, &key.sk)? {
                        return Err(StoreError::Conflict);
                    }
                }
                add_counts(&txn, &counters)?;
                txn.commit().store()?;
                Ok(())
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        check_fold(std::slice::from_ref(record), counters)?;
        let db = self.db.clone();
        let durability = self.durability;
        let record = record.clone();
        let counters = counters.to_vec();
        blocking(
            move || -> Result<(), StoreError> {
                let txn = begin_write(&db, durability)?;
                let k = (record.pk.as_str(), record.sk.as_str());
                let listed = txn
                    .open_table(PENDING_OF)
                    .store()?
                    .get(k)
                    .store()?
                    .is_some();
                let done = txn
                    .open_table(PARTS_FOLDED)
                    .store()?
                    .get(k)
                    .store()?
                    .map_or(0, |v| v.value());
                // Not listed, or not at this part: drop the transaction, change nothing.
                if !listed || done != part {
                    return Err(StoreError::Conflict);
                }
                if !last {
                    // The count of parts done is an attribute of the record's item (`fp`):
                    // DynamoDB refuses the part when the item would pass its bound with it. A
                    // record listed since the write kept room for it ([`check_item`]) never
                    // is; one an earlier build listed may be.
                    let pending = txn
                        .open_table(PENDING_OF)
                        .store()?
                        .get(k)
                        .store()?
                        .map(|v| v.value().to_string());
                    let records = txn.open_table(RECORDS).store()?;
                    let past = match records.get(k).store()? {
                        Some(row) => {
                            let (_, expires, body) = row.value();
                            item_past_bound(
                                k.0,
                                k.1,
                                expires != NO_EXPIRY,
                                pending.as_deref(),
                                true,
                                body,
                            )
                        }
                        None => None,
                    };
                    if let Some(size) = past {
                        return Err(too_large_item(k.0, k.1, size));
                    }
                }
                if last {
                    unlist(&txn, k.0, k.1)?;
                } else {
                    txn.open_table(PARTS_FOLDED)
                        .store()?
                        .insert(k, part + 1)
                        .store()?;
                }
                add_counts(&txn, &counters)?;
                txn.commit().store()?;
                Ok(())
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        check_key(key)?;
        let db = self.db.clone();
        let key = key.clone();
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(COUNTERS).store()?;
                let mut out = BTreeMap::new();
                let start = (key.pk.as_str(), key.sk.as_str(), "");
                for item in t.range(start..).store()? {
                    let (k, v) = item.store()?;
                    let (p, s, name) = k.value();
                    if key.pk != p || key.sk != s {
                        break;
                    }
                    out.insert(name.to_string(), v.value());
                }
                Ok(out)
            },
            StoreError::Unavailable,
        )
        .await
    }

    async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let db = self.db.clone();
        let sk = sk.to_string();
        let start = start.cloned();
        let limit = limit.max(1);
        blocking(
            move || -> Result<_, StoreError> {
                let txn = db.begin_read().store()?;
                let t = txn.open_table(RECORDS).store()?;
                let of = txn.open_table(PENDING_OF).store()?;
                let folded = txn.open_table(PARTS_FOLDED).store()?;
                let seals = txn.open_table(SEALED).store()?;
                let mut out = Vec::new();
                // A pass over every record from `start`: fine for a laptop's data; DynamoDB
                // does the same work in parallel.
                let from = match &start {
                    Some(k) => Bound::Excluded((k.pk.as_str(), k.sk.as_str())),
                    None => Bound::Unbounded,
                };
                for item in t.range::<(&str, &str)>((from, Bound::Unbounded)).store()? {
                    let (k, v) = item.store()?;
                    let (p, s) = k.value();
                    if s == sk && segment_of(p, segments) == segment {
                        let mut r = record_of(p, s, v.value());
                        r.pending = pending_of(&of, p, s)?;
                        r.parts_counted = parts_counted(&folded, p, s)?;
                        r.sealed = sealed(&seals, p, s)?;
                        out.push(r);
                        if out.len() > limit {
                            break;
                        }
                    }
                }
                Ok(page_of(out, limit))
            },
            StoreError::Unavailable,
        )
        .await
    }
}

/// A persistent delay queue in the same database: each message waits under its due time (on the
/// runtime's clock), and both queues (events, steps) share it, in due order.
///
/// Delivery is at least once, as SQS's is: [`take_due`](LocalQueue::take_due) leases what is due
/// (it comes back after the lease unless [`ack`](LocalQueue::ack)ed), so a message being handled
/// when the process stops is delivered again on restart; the runtime's dedup and send ledger make
/// that harmless.
#[derive(Clone)]
pub struct LocalQueue {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    lease: SignedDuration,
    max_attempts: u32,
    arrived: Arc<Notify>,
    /// The group-commit writer: sends from many requests share one disk commit.
    writer: std::sync::mpsc::Sender<Sent>,
    /// Sends are written without a disk commit of their own ([`LocalQueue::deferred`]).
    deferred: bool,
}

type Reply = tokio::sync::oneshot::Sender<Result<(), QueueError>>;

/// Messages for the writer thread: their rows (due time, body), when they were sent, and where
/// to answer.
struct Sent {
    rows: Vec<(i64, String)>,
    at: Timestamp,
    reply: Reply,
}

/// How many due messages one `take_due` leases at most (the rest wait for the next call).
const TAKE_LIMIT: usize = 512;

/// How many sends one commit takes at most.
const GROUP_LIMIT: usize = 4096;

/// Starts the thread that writes queued messages: it takes every send waiting at that moment,
/// writes them in one transaction, commits once (one fsync), and answers each sender. Under load
/// many requests share a commit; alone, a send commits by itself as before.
fn spawn_writer(db: Arc<Database>) -> std::sync::mpsc::Sender<Sent> {
    let (tx, rx) = std::sync::mpsc::channel::<Sent>();
    // Weak, so that the database closes when its store and queue are dropped, not when this
    // thread notices.
    let db = Arc::downgrade(&db);
    let write = move |group: &[Sent]| -> Result<(), QueueError> {
        let db = db
            .upgrade()
            .ok_or_else(|| QueueError::Unavailable("local queue: the database is closed".into()))?;
        let txn = db.begin_write().queue()?;
        {
            let mut q = txn.open_table(QUEUE).queue()?;
            let mut meta = txn.open_table(META).queue()?;
            for sent in group {
                queue_rows(&mut q, &mut meta, &sent.rows, sent.at).queue()?;
            }
            count_commit(&mut meta).queue()?;
        }
        txn.commit().queue()
    };
    let spawned = std::thread::Builder::new()
        .name("waymark-queue-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < GROUP_LIMIT {
                    match rx.try_recv() {
                        Ok(more) => group.push(more),
                        Err(_) => break,
                    }
                }
                let result = write(&group);
                for sent in group {
                    let _ = sent.reply.send(result.clone());
                }
            }
        });
    if let Err(e) = spawned {
        // Sends will answer "unavailable" (the receiver is gone) rather than hang.
        tracing::error!(error = %e, "the local queue's writer thread could not start");
    }
    tx
}

/// A message taken from the queue, with the receipt that acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub receipt: Receipt,
    /// Where the message was before this take leased it: a crash can undo the take (it is not
    /// durable), and the message is found there again (see [`LocalQueue::release_leases`]).
    pub taken_from: Receipt,
    pub message: Message,
    /// How many times it has been taken, this one included.
    pub attempt: u32,
}

/// Identifies one leased message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Receipt {
    due_millis: i64,
    seq: u64,
}

/// The message a run has in hand: its lease and where it was before the take, as `waymark dev`
/// notes it before it handles each message, so that a crash is charged to that message alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHand {
    pub lease: Receipt,
    pub taken_from: Receipt,
}

impl InHand {
    pub fn of(d: &Delivery) -> InHand {
        InHand {
            lease: d.receipt,
            taken_from: d.taken_from,
        }
    }

    /// The note as a line of fixed width (written over the last in place).
    pub fn to_line(&self) -> String {
        format!(
            "{:020} {:020} {:020} {:020}\n",
            self.lease.due_millis, self.lease.seq, self.taken_from.due_millis, self.taken_from.seq
        )
    }

    /// The note a [`InHand::to_line`] line holds.
    pub fn from_line(line: &str) -> Option<InHand> {
        let n: Vec<&str> = line.split_whitespace().collect();
        let [d1, s1, d2, s2] = n.as_slice() else {
            return None;
        };
        Some(InHand {
            lease: Receipt {
                due_millis: d1.parse().ok()?,
                seq: s1.parse().ok()?,
            },
            taken_from: Receipt {
                due_millis: d2.parse().ok()?,
                seq: s2.parse().ok()?,
            },
        })
    }
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// Keeps a message as a dead letter, with why, as of `now_ms`.
fn bury(
    dead: &mut redb::Table<'_, (i64, u64), (u32, &str, &str)>,
    meta: &mut redb::Table<'_, &str, u64>,
    now_ms: i64,
    attempts: u32,
    why: &str,
    body: &str,
) -> Result<(), QueueError> {
    let seq = next_seq(meta).queue()?;
    dead.insert((now_ms, seq), (attempts, why, body)).queue()?;
    Ok(())
}

/// Queues a send's rows (due in epoch millis, message JSON), each under the next arrival
/// number, sent at `at`: a restart's clock starts no earlier than that, as a message queued
/// after it would otherwise be due before them.
fn queue_rows(
    q: &mut redb::Table<'_, (i64, u64), (u32, &str)>,
    meta: &mut redb::Table<'_, &str, u64>,
    rows: &[(i64, String)],
    at: Timestamp,
) -> Result<(), redb::Error> {
    for (due, body) in rows {
        let seq = next_seq(meta)?;
        q.insert((*due, seq), (0u32, body.as_str()))?;
    }
    note_clock(meta, at)
}

fn next_seq(meta: &mut redb::Table<'_, &str, u64>) -> Result<u64, redb::Error> {
    let seq = meta.get(QUEUE_SEQ)?.map(|v| v.value()).unwrap_or(0) + 1;
    meta.insert(QUEUE_SEQ, seq)?;
    Ok(seq)
}

impl LocalQueue {
    /// A queue whose delays run on `clock` (the runtime's). Leased messages come back after 30 s
    /// of that clock; a message taken 5 times without success moves to the dead letters (as SQS
    /// moves it to its dead-letter queue).
    pub fn new(db: Arc<Database>, clock: Arc<dyn Clock>) -> Self {
        LocalQueue {
            writer: spawn_writer(db.clone()),
            db,
            clock,
            lease: SignedDuration::from_secs(30),
            max_attempts: 5,
            arrived: Arc::new(Notify::new()),
            deferred: false,
        }
    }

    /// The same queue, whose sends are made durable by the database's next durable commit
    /// rather than each by a commit of its own: for `waymark dev`'s engine, as
    /// [`RedbStore::deferred`] is, since the message whose handling sends them is acknowledged
    /// by a durable commit (a crash before it loses them with the store's writes of that
    /// message, which is delivered again and sends them again). The API's sends (events it
    /// accepted) stay durable before it answers.
    pub fn deferred(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// How long (on the queue's clock) a taken message stays hidden before it is delivered again.
    pub fn with_lease(mut self, lease: SignedDuration) -> Self {
        self.lease = lease.max(SignedDuration::from_millis(1));
        self
    }

    /// Notified whenever a message is sent, so a sleeping worker can look again at once.
    pub fn arrivals(&self) -> Arc<Notify> {
        self.arrived.clone()
    }

    /// When the next message is due (leased ones included: at their lease's end).
    pub fn next_due(&self) -> Result<Option<Timestamp>, QueueError> {
        let txn = self.db.begin_read().queue()?;
        let t = txn.open_table(QUEUE).queue()?;
        let first = t.first().queue()?;
        Ok(first.and_then(|(k, _)| Timestamp::from_millisecond(k.value().0).ok()))
    }

    /// How many messages wait (leased ones included).
    pub fn len(&self) -> Result<usize, QueueError> {
        let txn = self.db.begin_read().queue()?;
        let n = txn.open_table(QUEUE).queue()?.len().queue()?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }

    /// Leases the messages due at or before `now`, in due order, at most 512 at a time.
    /// Unreadable messages and messages out of attempts move to the dead letters (and are
    /// logged).
    pub async fn take_due(&self, now: Timestamp) -> Result<Vec<Delivery>, QueueError> {
        let db = self.db.clone();
        let max_attempts = self.max_attempts;
        let now_ms = millis(now);
        let until = millis(now.checked_add(self.lease).unwrap_or(now));
        blocking(
            move || {
                let mut txn = db.begin_write().queue()?;
                // A lease lost in a crash only means an earlier redelivery; the acknowledgement
                // that follows makes it durable.
                txn.set_durability(Durability::None)
                    .map_err(|e| QueueError::Unavailable(format!("local queue: {e}")))?;
                let mut out = Vec::new();
                {
                    let mut q = txn.open_table(QUEUE).queue()?;
                    let mut meta = txn.open_table(META).queue()?;
                    let mut due = Vec::new();
                    for item in q.range(..=(now_ms, u64::MAX)).queue()?.take(TAKE_LIMIT) {
                        let (k, v) = item.queue()?;
                        let (attempts, body) = v.value();
                        due.push((k.value(), attempts, body.to_string()));
                    }
                    let mut dead = txn.open_table(DEAD).queue()?;
                    for (key, attempts, body) in due {
                        q.remove(key).queue()?;
                        let message: Message = match serde_json::from_str(&body) {
                            Ok(m) => m,
                            Err(e) => {
                                let why = format!("unreadable message: {e}");
                                tracing::error!(reason = %why, "queue message moved to the dead letters");
                                bury(&mut dead, &mut meta, now_ms, attempts, &why, &body)?;
                                continue;
                            }
                        };
                        if attempts >= max_attempts {
                            let why = format!(
                                "taken {attempts} times and never acknowledged (each lease ran out)"
                            );
                            tracing::error!(id = %message.id(), reason = %why, "message moved to the dead letters");
                            bury(&mut dead, &mut meta, now_ms, attempts, &why, &body)?;
                            continue;
                        }
                        let seq = next_seq(&mut meta).queue()?;
                        q.insert((until, seq), (attempts + 1, body.as_str()))
                            .queue()?;
                        out.push(Delivery {
                            receipt: Receipt {
                                due_millis: until,
                                seq,
                            },
                            taken_from: Receipt {
                                due_millis: key.0,
                                seq: key.1,
                            },
                            message,
                            attempt: attempts + 1,
                        });
                    }
                }
                txn.commit().queue()?;
                Ok(out)
            },
            QueueError::Unavailable,
        )
        .await
    }

    /// Gives back, at start, the messages a crashed run had taken (leased until later, as a
    /// worker holds an SQS message hidden): no worker holds them now, and left leased they would
    /// come after messages that arrived after them, for as long as the lease (at `--speed 3600`,
    /// five real seconds are five hours): an identify taken before a crash would be applied
    /// after the cart event that came after it, whose push found no device by then. They are put
    /// ahead of every other message, in the order they were taken. Returns how many.
    ///
    /// A lease the crashed run still held is counted as an attempt only for the message it had
    /// in hand (`in_hand`, as the run noted it): the run takes up to [`TAKE_LIMIT`] messages at
    /// once and handles them one after another, so a crash finds hundreds taken and most never
    /// started (counted, five quick restarts sent them all to the dead letters), while a
    /// message that kills the process each time it is handled still reaches the dead letters.
    /// A take is not durable: when the crash undid it, the message in hand is found where it
    /// was before, uncounted, and is charged there. With no note, none is counted. A lease that
    /// had run out before the crash (the message failed and waits to be taken again) keeps its
    /// count.
    ///
    /// Whether a lease was still held is judged at `stopped_at`, the virtual time the crashed
    /// run stopped at as far as it is known (the later of its saved clock and the store's last
    /// durable commit, [`stored_clock`]), not by this queue's clock: a restart's clock may have
    /// been moved on to the wall clock, past every lease the crashed run held.
    pub fn release_leases(
        &self,
        in_hand: Option<InHand>,
        stopped_at: Timestamp,
    ) -> Result<usize, QueueError> {
        let stopped_at = millis(stopped_at);
        let txn = self.db.begin_write().queue()?;
        let released = {
            let mut q = txn.open_table(QUEUE).queue()?;
            let at = |(due_millis, seq): (i64, u64)| Receipt { due_millis, seq };
            let mut leased = Vec::new();
            // The message in hand where it was before its take, when the crash undid the take.
            let mut undone = None;
            for item in q.iter().queue()? {
                let (k, v) = item.queue()?;
                let (attempts, body) = v.value();
                if attempts > 0 {
                    leased.push((k.value(), attempts, body.to_string()));
                } else if in_hand.is_some_and(|h| h.taken_from == at(k.value())) {
                    undone = Some((k.value(), body.to_string()));
                }
            }
            for (key, attempts, body) in &leased {
                q.remove(*key).queue()?;
                let held = key.0 > stopped_at;
                let attempts = match in_hand {
                    // In hand at the crash: its lease counts.
                    Some(h) if h.lease == at(*key) => *attempts,
                    // In hand, its take undone: charged here.
                    Some(h) if h.taken_from == at(*key) => attempts + 1,
                    _ if held => attempts - 1,
                    _ => *attempts,
                };
                q.insert((RELEASED, key.1), (attempts, body.as_str()))
                    .queue()?;
            }
            if let Some((key, body)) = undone {
                q.insert(key, (1, body.as_str())).queue()?;
            }
            leased.len()
        };
        txn.commit().queue()?;
        Ok(released)
    }

    /// A durable commit: everything written before it (the deferred store's writes included)
    /// is on disk when it returns. For shutdown.
    pub async fn sync(&self) -> Result<(), QueueError> {
        let db = self.db.clone();
        let now = self.clock.now();
        blocking(
            move || commit_durably(&db, now).queue(),
            QueueError::Unavailable,
        )
        .await
    }

    /// Removes handled messages for good.
    pub async fn ack(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let receipts = receipts.to_vec();
        let now = self.clock.now();
        blocking(
            move || {
                let txn = db.begin_write().queue()?;
                {
                    let mut q = txn.open_table(QUEUE).queue()?;
                    for r in &receipts {
                        q.remove((r.due_millis, r.seq)).queue()?;
                    }
                    let mut meta = txn.open_table(META).queue()?;
                    note_clock(&mut meta, now).queue()?;
                    count_commit(&mut meta).queue()?;
                }
                txn.commit().queue()?;
                Ok(())
            },
            QueueError::Unavailable,
        )
        .await
    }

    /// How many times a message is taken before it moves to the dead letters.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Moves leased messages to the dead letters, each with why, in one durable commit. A
    /// receipt whose lease ran out (the message is queued again, or was taken by someone else)
    /// moves nothing: that delivery decides. Returns how many moved.
    pub async fn dead_letter(&self, letters: &[(Receipt, String)]) -> Result<usize, QueueError> {
        if letters.is_empty() {
            return Ok(0);
        }
        let db = self.db.clone();
        let letters = letters.to_vec();
        let now_ms = millis(self.clock.now());
        blocking(
            move || {
                let txn = db.begin_write().queue()?;
                let mut moved = 0;
                {
                    let mut q = txn.open_table(QUEUE).queue()?;
                    let mut dead = txn.open_table(DEAD).queue()?;
                    let mut meta = txn.open_table(META).queue()?;
                    for (r, why) in &letters {
                        let Some(row) = q.remove((r.due_millis, r.seq)).queue()? else {
                            continue;
                        };
                        let (attempts, body) = row.value();
                        bury(&mut dead, &mut meta, now_ms, attempts, why, body)?;
                        moved += 1;
                    }
                }
                txn.commit().queue()?;
                Ok(moved)
            },
            QueueError::Unavailable,
        )
        .await
    }

    /// The dead letters, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let txn = self.db.begin_read().queue()?;
        let t = txn.open_table(DEAD).queue()?;
        let mut out = Vec::new();
        for item in t.iter().queue()? {
            let (k, v) = item.queue()?;
            let (died_ms, _) = k.value();
            let (attempts, reason, body) = v.value();
            out.push(DeadLetter {
                died_at: Timestamp::from_millisecond(died_ms).unwrap_or(Timestamp::UNIX_EPOCH),
                attempts,
                reason: reason.to_string(),
                body: body.to_string(),
            });
        }
        Ok(out)
    }

    /// Moves every dead letter back to the queue, due now and with its attempts starting over,
    /// in one durable commit (once the cause is fixed). Returns how many moved.
    pub async fn redrive(&self) -> Result<usize, QueueError> {
        let db = self.db.clone();
        let now_ms = millis(self.clock.now());
        let moved = blocking(
            move || {
                let txn = db.begin_write().queue()?;
                let mut moved = 0;
                {
                    let mut q = txn.open_table(QUEUE).queue()?;
                    let mut dead = txn.open_table(DEAD).queue()?;
                    let mut meta = txn.open_table(META).queue()?;
                    while let Some((_, v)) = dead.pop_first().queue()? {
                        let (_, _, body) = v.value();
                        let seq = next_seq(&mut meta).queue()?;
                        q.insert((now_ms, seq), (0u32, body)).queue()?;
                        moved += 1;
                    }
                }
                txn.commit().queue()?;
                Ok(moved)
            },
            QueueError::Unavailable,
        )
        .await?;
        if moved > 0 {
            self.arrived.notify_one();
        }
        Ok(moved)
    }
}

/// A message the engine gave up on, kept with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// When it moved to the dead letters (the queue's clock).
    pub died_at: Timestamp,
    /// How many times it had been taken.
    pub attempts: u32,
    pub reason: String,
    /// The message as it was queued (JSON).
    pub body: String,
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, _queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut rows = Vec::with_capacity(messages.len());
        for m in messages {
            let body = serde_json::to_string(&m.message)
                .map_err(|e| QueueError::Rejected(e.to_string()))?;
            // What SQS would refuse, refused here too (answered alike by the API).
            if let Some(refused) = crate::queue::refused_body(&m.message, &body) {
                return Err(refused);
            }
            let due = now
                .checked_add(SignedDuration::from_secs(i64::from(m.delay_secs)))
                .unwrap_or(now);
            rows.push((millis(due), body));
        }
        if self.deferred {
            let db = self.db.clone();
            blocking(
                move || {
                    let mut txn = db.begin_write().queue()?;
                    txn.set_durability(Durability::None)
                        .map_err(|e| QueueError::Unavailable(format!("local queue: {e}")))?;
                    {
                        let mut q = txn.open_table(QUEUE).queue()?;
                        let mut meta = txn.open_table(META).queue()?;
                        queue_rows(&mut q, &mut meta, &rows, now).queue()?;
                    }
                    txn.commit().queue()
                },
                QueueError::Unavailable,
            )
            .await?;
            self.arrived.notify_one();
            return Ok(());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(Sent {
                rows,
                at: now,
                reply,
            })
            .map_err(|_| QueueError::Unavailable("local queue: the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| QueueError::Unavailable("local queue: the writer has stopped".into()))??;
        self.arrived.notify_one();
        Ok(())
    }

    /// Any delay: the queue is a table on disk ordered by due time.
    fn max_delay_secs(&self) -> u32 {
        u32::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{deflated_len, MemoryStore};

    fn rec(pk: &str, sk: &str, version: u64, body: &str) -> Record {
        Record::new(Key::new(pk, sk), version, &body.to_string()).expect("json")
    }

    /// Both adapters, so every test below runs against each.
    fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
        let db = open_in_memory().expect("in-memory redb");
        vec![
            ("memory", Arc::new(MemoryStore::new())),
            ("redb", Arc::new(RedbStore::new(db))),
            (
                "redb deferred",
                Arc::new(RedbStore::deferred(
                    open_in_memory().expect("in-memory redb"),
                )),
            ),
        ]
    }

    #[tokio::test]
    async fn put_absent_writes_once_then_conflicts() {
        for (name, store) in stores() {
            // given an empty store
            let r = rec("U#ann", "P", 1, "first");
            // when written twice with Absent
            store.put(&r, Expect::Absent).await.expect(name);
            let again = store
                .put(&rec("U#ann", "P", 1, "second"), Expect::Absent)
                .await;
            // then the second write is a conflict and the first body stays
            assert_eq!(again, Err(StoreError::Conflict), "{name}");
            let got = store.get(&r.key).await.expect(name).expect(name);
            assert_eq!(got, r, "{name}");
        }
    }

    /// A write conditioned on another record's seal: written while that record is not sealed
    /// (or not there), `Sealed` and nothing written while it is, `Conflict` first when its own
    /// condition fails. The seal is read back, and goes with a put without it or a delete.
    #[tokio::test]
    async fn a_write_unless_sealed_waits_on_the_seal_alone() {
        for (name, store) in stores() {
            let profile = Key::new("U#ann", "P");
            let claim = |sk: &str| rec("U#ann", sk, 1, "claimed");
            store
                .put_unless_sealed(&claim("L#a"), Expect::Absent, &profile)
                .await
                .expect(name);
            let live = rec("U#ann", "P", 1, "live");
            store.put(&live, Expect::Absent).await.expect(name);
            store
                .put_unless_sealed(&claim("L#b"), Expect::Absent, &profile)
                .await
                .expect(name);
            let mark = rec("U#ann", "P", 2, "mark").sealing(true);
            store.put(&mark, Expect::Version(1)).await.expect(name);
            assert_eq!(store.get(&profile).await, Ok(Some(mark.clone())), "{name}");
            assert_eq!(
                store
                    .put_unless_sealed(&claim("L#c"), Expect::Absent, &profile)
                    .await,
                Err(StoreError::Sealed),
                "{name}"
            );
            assert_eq!(store.get(&claim("L#c").key).await, Ok(None), "{name}");
            assert_eq!(
                store
                    .put_unless_sealed(&claim("L#b"), Expect::Absent, &profile)
                    .await,
                Err(StoreError::Conflict),
                "{name}"
            );
            // A record conditioned on its own seal is refused, as DynamoDB refuses it.
            assert!(matches!(
                store
                    .put_unless_sealed(&mark, Expect::Version(2), &profile)
                    .await,
                Err(StoreError::Corrupt(_))
            ));
            // Written over without the seal: not sealed.
            store
                .put(&rec("U#ann", "P", 3, "new"), Expect::Version(2))
                .await
                .expect(name);
            assert_eq!(
                store.get(&profile).await.expect(name).map(|r| r.sealed),
                Some(false),
                "{name}"
            );
            store
                .put_unless_sealed(&claim("L#c"), Expect::Absent, &profile)
                .await
                .expect(name);
            // Deleted while sealed: the seal goes with it.
            store
                .put(&rec("U#bo", "P", 1, "mark").sealing(true), Expect::Absent)
                .await
                .expect(name);
            store
                .delete(&Key::new("U#bo", "P"), Expect::Any)
                .await
                .expect(name);
            store
                .put(&rec("U#bo", "P", 1, "new"), Expect::Absent)
                .await
                .expect(name);
            store
                .put_unless_sealed(&claim("L#d"), Expect::Absent, &Key::new("U#bo", "P"))
                .await
                .expect(name);
        }
    }

    #[tokio::test]
    async fn version_condition_guards_put_and_delete() {
        for (name, store) in stores() {
            // given a record at version 1
            store
                .put(&rec("U#ann", "E#j", 1, "v1"), Expect::Absent)
                .await
                .expect(name);
            // when a writer expects version 2
            let stale = store
                .put(&rec("U#ann", "E#j", 3, "x"), Expect::Version(2))
                .await;
            // then it loses; the writer expecting version 1 wins
            assert_eq!(stale, Err(StoreError::Conflict), "{name}");
            store
                .put(&rec("U#ann", "E#j", 2, "v2"), Expect::Version(1))
                .await
                .expect(name);
            let key = Key::new("U#ann", "E#j");
            assert_eq!(
                store.get(&key).await.expect(name).map(|r| r.version),
                Some(2)
            );
            // and deletes obey the same conditions
            assert_eq!(
                store.delete(&key, Expect::Version(1)).await,
                Err(StoreError::Conflict),
                "{name}"
            );
            store.delete(&key, Expect::Version(2)).await.expect(name);
            assert_eq!(store.get(&key).await.expect(name), None, "{name}");
            assert_eq!(
                store
                    .put(&rec("U#ann", "E#j", 1, "v"), Expect::Version(1))
                    .await,
                Err(StoreError::Conflict),
                "{name}: a version condition on a missing record fails"
            );
        }
    }

    #[tokio::test]
    async fn partitions_between_lists_the_partitions_in_a_range_that_hold_records() {
        for (name, store) in stores() {
            for (pk, sk) in [
                ("T#100#0", "a"),
                ("T#100#0", "b"),
                ("T#100#3", "a"),
                ("T#101#1", "a"),
                ("T#102#2", "a"),
                ("T#103#0", "a"),
                ("U#ann", "P"),
            ] {
                store
                    .put(&rec(pk, sk, 1, sk), Expect::Any)
                    .await
                    .expect(name);
            }
            // A partition whose records are all gone is not listed.
            store
                .delete(&Key::new("T#102#2", "a"), Expect::Any)
                .await
                .expect(name);
            let got = store
                .partitions_between("T#100#", "T#103#")
                .await
                .expect(name)
                .expect("the local stores can list partitions");
            let got: Vec<&str> = got.iter().map(|p| p.as_str()).collect();
            assert_eq!(got, ["T#100#0", "T#100#3", "T#101#1"], "{name}");
            let none = store
                .partitions_between("T#200#", "T#100#")
                .await
                .expect(name);
            assert_eq!(none.map(|v| v.len()), Some(0), "{name}");
        }
    }

    #[tokio::test]
    async fn query_returns_a_partition_prefix_in_sort_order() {
        for (name, store) in stores() {
            // given records in two partitions, one whose name extends the other's
            for (pk, sk) in [
                ("U#ann", "T#0002"),
                ("U#ann", "E#b"),
                ("U#ann", "E#a"),
                ("U#ann", "P"),
                ("U#ann2", "E#c"),
                ("U#an", "E#z"),
                ("U#ann\u{0}x", "E#evil"),
            ] {
                store
                    .put(&rec(pk, sk, 1, sk), Expect::Any)
                    .await
                    .expect(name);
            }
            // when querying one partition's prefix
            let sks = |rs: Vec<Record>| rs.into_iter().map(|r| r.key.sk).collect::<Vec<_>>();
            let got = sks(store.query("U#ann", "E#").await.expect(name));
            // then only that partition's matching records come, in sort-key order
            assert_eq!(got, ["E#a", "E#b"], "{name}");
            let all = sks(store.query("U#ann", "").await.expect(name));
            assert_eq!(all, ["E#a", "E#b", "P", "T#0002"], "{name}");
            assert!(
                store.query("U#nobody", "").await.expect(name).is_empty(),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_fold_past_dynamodbs_limits_is_refused_and_changes_nothing() {
        for (name, store) in stores() {
            // given 100 listed records
            let keys: Vec<Key> = (0..100)
                .map(|i| Key::new(format!("U#{i}"), "T#1"))
                .collect();
            for k in &keys {
                let r = rec(&k.pk, &k.sk, 1, "x").pending_in("F#0");
                store.put(&r, Expect::Absent).await.expect(name);
            }
            let counts: Counts = [("entered".to_string(), 1)].into();
            let stats = (Key::new("S#j", "C"), counts);
            // when all of them and a counter key are folded together (101 items)
            let refused = store.fold(&keys, std::slice::from_ref(&stats)).await;
            // then the store refuses, and every record is still listed
            assert!(
                matches!(refused, Err(StoreError::Unavailable(_))),
                "{name}: {refused:?}"
            );
            assert_eq!(
                store.pending("F#0", 1000).await.expect(name).len(),
                100,
                "{name}"
            );
            // and 99 records with the counter key fold
            store
                .fold(&keys[..99], std::slice::from_ref(&stats))
                .await
                .expect(name);
            assert_eq!(
                store.pending("F#0", 1000).await.expect(name).len(),
                1,
                "{name}"
            );
            // a counter key with more than 100 counters is refused too
            let wide: Counts = (0..101).map(|i| (format!("c{i}"), 1)).collect();
            let refused = store
                .fold(&keys[99..], &[(Key::new("S#j", "C"), wide)])
                .await;
            assert!(
                matches!(refused, Err(StoreError::Unavailable(_))),
                "{name}: {refused:?}"
            );
        }
    }

    /// Whether `got` is the error the DynamoDB adapter gives for a ValidationException, and its
    /// message names `what`.
    fn refused<T: std::fmt::Debug>(got: Result<T, StoreError>, what: &str) -> bool {
        matches!(&got, Err(StoreError::Corrupt(why)) if why.contains(what))
    }

    #[tokio::test]
    async fn keys_dynamodb_refuses_are_refused_on_writes_and_reads() {
        use crate::store::{MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
        let (pk_max, sk_max) = (
            "p".repeat(MAX_PARTITION_KEY_BYTES),
            "s".repeat(MAX_SORT_KEY_BYTES),
        );
        let (pk_over, sk_over) = (format!("{pk_max}p"), format!("{sk_max}s"));
        // One multi-byte character past the bound: bytes are counted, not characters.
        let sk_accented = "é".repeat(MAX_SORT_KEY_BYTES / 2 + 1);
        for (name, store) in stores() {
            // given keys at DynamoDB's bounds, they are written and read back
            let fits = rec(&pk_max, &sk_max, 1, "x").pending_in(pk_max.as_str());
            store.put(&fits, Expect::Absent).await.expect(name);
            assert_eq!(store.get(&fits.key).await.expect(name), Some(fits.clone()));
            assert_eq!(store.query(&pk_max, "").await.expect(name).len(), 1);
            assert_eq!(store.pending(&pk_max, 10).await.expect(name).len(), 1);
            // when a key is one byte past them, or empty, every call naming it is refused
            let bad = [
                (Key::new(pk_over.as_str(), "P"), "partition key `ppp"),
                (Key::new("U#ann", sk_over.as_str()), "sort key `sss"),
                (Key::new("U#ann", sk_accented.as_str()), "1026 bytes"),
                (Key::new("", "P"), "partition key ``: empty"),
                (
                    Key::new("U#ann", ""),
                    "sort key `` of partition `U#ann`: empty",
                ),
            ];
            for (key, what) in &bad {
                let r = rec(&key.pk, &key.sk, 1, "x");
                assert!(
                    refused(store.put(&r, Expect::Any).await, what),
                    "{name} put {what}"
                );
                assert!(refused(store.get(key).await, what), "{name} get {what}");
                let keys = [Key::new("U#ann", "P"), key.clone()];
                assert!(
                    refused(store.get_many(&keys).await, what),
                    "{name} get_many"
                );
                assert!(
                    refused(store.delete(key, Expect::Any).await, what),
                    "{name} delete"
                );
                assert!(
                    refused(store.delete_many(&keys).await, what),
                    "{name} delete_many"
                );
                assert!(refused(store.counters(key).await, what), "{name} counters");
                assert!(refused(store.counters_sum(&keys).await, what), "{name} sum");
                assert!(refused(
                    store.fold(std::slice::from_ref(key), &[]).await,
                    what
                ));
                let counts: Counts = [("entered".to_string(), 1)].into();
                assert!(refused(
                    store.fold(&[], &[(key.clone(), counts)]).await,
                    what
                ));
            }
            assert!(
                refused(store.query(&pk_over, "").await, "partition key"),
                "{name}"
            );
            assert!(refused(store.query("", "").await, "empty"), "{name}");
            // a fold partition is the `fold` index's partition key: the same bounds
            let listed = rec("U#ann", "T#1", 1, "x").pending_in(pk_over.as_str());
            assert!(
                refused(store.put(&listed, Expect::Any).await, "partition key"),
                "{name}"
            );
            let listed = rec("U#ann", "T#1", 1, "x").pending_in("");
            assert!(
                refused(store.put(&listed, Expect::Any).await, "empty"),
                "{name}"
            );
            assert!(
                refused(store.pending(&pk_over, 10).await, "partition key"),
                "{name}"
            );
            // and nothing was written
            assert!(store
                .get(&Key::new("U#ann", "T#1"))
                .await
                .expect(name)
                .is_none());
        }
    }

    /// The redb store refuses an item past DynamoDB's 400 KB as the DynamoDB adapter would
    /// store it: a body that deflates below it is taken, one that does not is refused.
    #[tokio::test]
    async fn an_item_past_400_kb_as_dynamodb_would_store_it_is_refused() {
        let store = RedbStore::new(open_in_memory().expect("in-memory redb"));
        let html = "<tr><td>Trail shoes</td><td>79.90 EUR</td></tr>".repeat(20_000);
        assert!(html.len() > MAX_ITEM_BYTES);
        let r = rec("U#ann", "I#m-1", 1, &html);
        store
            .put(&r, Expect::Absent)
            .await
            .expect("deflates far below 400 KB");
        // Noise of 64 characters deflates by a quarter at most: twice the bound stays past it.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: String = (0..2 * MAX_ITEM_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x >> 58) as u8)
            })
            .collect();
        let r = rec("U#ann", "I#m-2", 1, &noise);
        let got = store.put(&r, Expect::Absent).await;
        let shown = format!("{got:?}");
        assert!(refused(got, "the item `U#ann`/`I#m-2`"), "{shown}");
        assert!(store.get(&r.key).await.expect("get").is_none());
        // Just under the bound, as it is: taken with no deflating.
        let under = "a".repeat(MAX_ITEM_BYTES - 200);
        store
            .put(&rec("U#ann", "I#m-3", 1, &under), Expect::Absent)
            .await
            .expect("under 400 KB");
    }

    /// Noise of `n` characters from a 64-character alphabet (it deflates by a quarter at most).
    fn noise(seed: &mut u64, n: usize) -> String {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                char::from(b'!' + (*seed >> 58) as u8)
            })
            .collect()
    }

    /// A body (a JSON string of noise) whose item the DynamoDB adapter stores deflated, to
    /// some 500 bytes under the bound, and its size as stored.
    fn near_the_bound() -> (String, usize) {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let stored = |body: &str| {
            let json = serde_json::to_vec(body).expect("json");
            deflated_len(&json).expect("deflates")
        };
        let target = MAX_ITEM_BYTES - 500;
        let mut n = MAX_ITEM_BYTES * 4 / 3;
        let mut body = noise(&mut x, n);
        for _ in 0..20 {
            let d = stored(&body);
            if d.abs_diff(target) < 200 {
                break;
            }
            n = n * target / d;
            body = noise(&mut x, n);
        }
        let d = stored(&body);
        assert!(d.abs_diff(target) < 200, "{d}");
        (body, d)
    }

    /// A sort key that leaves the item of `U#ann`/it, listed in `F#0`, with a body of `stored`
    /// bytes, `under` bytes under the bound: `pk` and `U#ann`, `sk`, `v` and a number, `b`, `f`
    /// and `F#0`.
    fn sort_key_leaving(stored: usize, under: usize) -> String {
        let fixed = 2 + 5 + 2 + 1 + 21 + 1 + 1 + 3;
        format!(
            "T#{}",
            "x".repeat(MAX_ITEM_BYTES - under - fixed - stored - 2)
        )
    }

    /// A listed record is taken only if its item keeps room for the count of its fold's parts
    /// (`fp`), which a fold in parts adds: DynamoDB would refuse that update, and the record's
    /// fold partition would fail on it every minute. One taken can be folded in parts.
    #[tokio::test]
    async fn a_listed_record_without_room_for_its_count_of_parts_is_refused() {
        let store = RedbStore::new(open_in_memory().expect("in-memory redb"));
        let (body, d) = near_the_bound();
        let s = Key::new("S#j", "C#0");
        let counts = BTreeMap::from([("sent".to_string(), 1)]);

        // a record 10 bytes under the bound, listed: refused, naming the count of parts
        let r = rec("U#ann", &sort_key_leaving(d, 10), 1, &body).pending_in("F#0");
        let got = store.put(&r, Expect::Absent).await;
        let shown = format!("{got:?}");
        assert!(refused(got, "the item `U#ann`/"), "{shown}");
        assert!(shown.contains("`fp`"), "{shown}");
        assert!(store.get(&r.key).await.expect("get").is_none());
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
        // the same record not listed: taken (no fold will add to it)
        let mut unlisted = r.clone();
        unlisted.pending = None;
        store
            .put(&unlisted, Expect::Absent)
            .await
            .expect("unlisted, under 400 KB");
        store.delete(&r.key, Expect::Any).await.expect("delete");

        // a record leaving just that room, listed: taken, and its fold's first part too
        let r = rec("U#ann", &sort_key_leaving(d, FOLD_PROGRESS_BYTES), 1, &body).pending_in("F#0");
        store.put(&r, Expect::Absent).await.expect("room for `fp`");
        store
            .fold_part(&r.key, 0, false, &[(s.clone(), counts.clone())])
            .await
            .expect("the first part");
        store
            .fold_part(&r.key, 1, true, &[(s.clone(), counts)])
            .await
            .expect("the last part");
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
        assert_eq!(store.counters(&s).await.expect("counters")["sent"], 2);
    }

    /// A part of a parted fold notes on the record's item how many parts are counted (`fp`):
    /// the redb store refuses one that would take the item past DynamoDB's 400 KB, as
    /// DynamoDB refuses the update: a record an earlier build listed without keeping room for
    /// it (written here as that build's store did, the write's check passed by).
    #[tokio::test]
    async fn a_fold_part_that_would_take_its_record_past_400_kb_is_refused() {
        let db = open_in_memory().expect("in-memory redb");
        let store = RedbStore::new(db.clone());
        let (body, d) = near_the_bound();
        let sk = sort_key_leaving(d, 10);
        let r = rec("U#ann", &sk, 1, &body).pending_in("F#0");
        {
            let json = r.body.json().expect("json");
            let txn = db.begin_write().expect("write");
            let (pk, sk) = (r.key.pk.as_str(), r.key.sk.as_str());
            txn.open_table(RECORDS)
                .expect("records")
                .insert((pk, sk), (1, NO_EXPIRY, json.as_ref()))
                .expect("insert");
            txn.open_table(PENDING_OF)
                .expect("pending_of")
                .insert((pk, sk), "F#0")
                .expect("insert");
            txn.open_table(PENDING)
                .expect("pending")
                .insert(("F#0", pk, sk), ())
                .expect("insert");
            txn.commit().expect("commit");
        }
        assert_eq!(store.pending("F#0", 10).await.expect("pending").len(), 1);
        let s = Key::new("S#j", "C#0");
        let counts = BTreeMap::from([("sent".to_string(), 1)]);

        // when a first part of its fold is counted (not its last), it is refused
        let got = store
            .fold_part(&r.key, 0, false, &[(s.clone(), counts.clone())])
            .await;
        assert!(
            matches!(&got, Err(StoreError::TooLarge(why)) if why.contains("the item `U#ann`/")),
            "{got:?}"
        );
        assert!(store.counters(&s).await.expect("counters").is_empty());
        assert_eq!(store.pending("F#0", 10).await.expect("pending").len(), 1);
        // a fold in one part (no count of parts noted) is taken
        store
            .fold_part(&r.key, 0, true, &[(s.clone(), counts)])
            .await
            .expect("the only part");
        assert!(store.pending("F#0", 10).await.expect("pending").is_empty());
    }

    #[tokio::test]
    async fn fold_counts_each_listed_record_once() {
        let d = |pairs: &[(&str, i64)]| {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        for (name, store) in stores() {
            // given two records listed under F#0, one under F#1 and one not listed
            let (a, b, c) = (
                Key::new("U#ann", "T#1"),
                Key::new("U#bob", "T#1"),
                Key::new("U#cat", "T#1"),
            );
            for k in [&a, &b] {
                let r = rec(&k.pk, &k.sk, 1, "x").pending_in("F#0");
                store.put(&r, Expect::Absent).await.expect(name);
            }
            let r = rec(&c.pk, &c.sk, 1, "x").pending_in("F#1");
            store.put(&r, Expect::Absent).await.expect(name);
            store
                .put(&rec("U#dee", "T#1", 1, "x"), Expect::Absent)
                .await
                .expect(name);
            let listed = |rs: Vec<Record>| {
                let mut keys: Vec<Key> = rs.into_iter().map(|r| r.key).collect();
                keys.sort();
                keys
            };
            assert_eq!(
                listed(store.pending("F#0", 10).await.expect(name)),
                vec![a.clone(), b.clone()],
                "{name}"
            );
            assert_eq!(store.pending("F#0", 1).await.expect(name).len(), 1);
            let got = store.get(&a).await.expect(name).expect("a");
            assert_eq!(got.pending.as_deref(), Some("F#0"), "{name}");

            // when a is folded with its counts
            let s = Key::new("S#j", "C");
            store
                .fold(
                    std::slice::from_ref(&a),
                    &[(s.clone(), d(&[("entered", 2), ("waiting", -1)]))],
                )
                .await
                .expect(name);
            // then it is no longer listed, and folding it again changes nothing
            assert_eq!(
                listed(store.pending("F#0", 10).await.expect(name)),
                vec![b.clone()],
                "{name}"
            );
            assert_eq!(
                store
                    .fold(
                        std::slice::from_ref(&a),
                        &[(s.clone(), d(&[("entered", 2)]))]
                    )
                    .await,
                Err(StoreError::Conflict),
                "{name}"
            );
            // a fold naming a record that is not listed changes nothing at all
            assert_eq!(
                store
                    .fold(
                        &[b.clone(), Key::new("U#dee", "T#1")],
                        &[(s.clone(), d(&[("entered", 5)]))]
                    )
                    .await,
                Err(StoreError::Conflict),
                "{name}"
            );
            assert_eq!(
                listed(store.pending("F#0", 10).await.expect(name)),
                vec![b.clone()],
                "{name}"
            );
            store
                .fold(
                    &[b.clone(), c.clone()],
                    &[
                        (s.clone(), d(&[("entered", 1)])),
                        (Key::new("S#k", "C"), d(&[("entered", 9)])),
                    ],
                )
                .await
                .expect(name);
            assert_eq!(
                store.counters(&s).await.expect(name),
                d(&[("entered", 3), ("waiting", -1)]),
                "{name}"
            );
            assert_eq!(
                store.counters(&Key::new("S#k", "C")).await.expect(name),
                d(&[("entered", 9)]),
                "{name}"
            );
            // several counter items added up, name by name; a key named twice counts once, a
            // key with no counters adds nothing
            assert_eq!(
                store
                    .counters_sum(&[
                        s.clone(),
                        Key::new("S#k", "C"),
                        s.clone(),
                        Key::new("S#none", "C")
                    ])
                    .await
                    .expect(name),
                d(&[("entered", 12), ("waiting", -1)]),
                "{name}"
            );
            assert!(store.pending("F#0", 10).await.expect(name).is_empty());
            assert!(store.pending("F#1", 10).await.expect(name).is_empty());
            // a put replaces the listing with the record's own; a delete removes it
            let r = rec(&a.pk, &a.sk, 2, "y").pending_in("F#2");
            store.put(&r, Expect::Version(1)).await.expect(name);
            assert_eq!(store.pending("F#2", 10).await.expect(name).len(), 1);
            store.delete(&a, Expect::Any).await.expect(name);
            assert!(store.pending("F#2", 10).await.expect(name).is_empty());
        }
    }

    #[tokio::test]
    async fn a_records_fold_in_parts_counts_each_part_once_in_order() {
        let d = |n: i64| BTreeMap::from([("sent".to_string(), n)]);
        for (name, store) in stores() {
            // given a listed record, and one not listed
            let (a, s) = (Key::new("U#ann", "T#1"), Key::new("S#j", "C#0"));
            let r = rec(&a.pk, &a.sk, 1, "x").pending_in("F#0");
            store.put(&r, Expect::Absent).await.expect(name);
            store
                .put(&rec("U#dee", "T#1", 1, "x"), Expect::Absent)
                .await
                .expect(name);
            let part = |n: u32, last: bool| {
                let store = store.clone();
                let (a, s) = (a.clone(), s.clone());
                async move { store.fold_part(&a, n, last, &[(s, d(1 << n))]).await }
            };
            let sent = || {
                let store = store.clone();
                let s = s.clone();
                async move {
                    store
                        .counters(&s)
                        .await
                        .expect("counters")
                        .get("sent")
                        .copied()
                }
            };

            // when its parts are counted: only in their turn, each once
            assert_eq!(part(1, false).await, Err(StoreError::Conflict), "{name}");
            part(0, false).await.expect(name);
            assert_eq!(part(0, false).await, Err(StoreError::Conflict), "{name}");
            assert_eq!(part(2, true).await, Err(StoreError::Conflict), "{name}");
            assert_eq!(sent().await, Some(1), "{name}");
            part(1, false).await.expect(name);
            // then it is still listed until its last part
            assert_eq!(store.pending("F#0", 10).await.expect(name).len(), 1);
            part(2, true).await.expect(name);
            assert!(store.pending("F#0", 10).await.expect(name).is_empty());
            assert_eq!(sent().await, Some(1 + 2 + 4), "{name}");
            assert_eq!(part(2, true).await, Err(StoreError::Conflict), "{name}");
            assert_eq!(part(0, true).await, Err(StoreError::Conflict), "{name}");
            // a record not listed has no parts to count
            let dee = Key::new("U#dee", "T#1");
            let none = store.fold_part(&dee, 0, true, &[(s.clone(), d(8))]).await;
            assert_eq!(none, Err(StoreError::Conflict), "{name}");
            assert_eq!(sent().await, Some(7), "{name}");
            // a put of the record starts its parts over
            let r = rec(&a.pk, &a.sk, 2, "y").pending_in("F#0");
            store.put(&r, Expect::Version(1)).await.expect(name);
            part(0, false).await.expect(name);
            let r = rec(&a.pk, &a.sk, 3, "z").pending_in("F#0");
            store.put(&r, Expect::Version(2)).await.expect(name);
            part(0, true).await.expect(name);
            assert!(store.pending("F#0", 10).await.expect(name).is_empty());
            assert_eq!(sent().await, Some(9), "{name}");
        }
    }

    #[tokio::test]
    async fn scan_segments_partition_the_records_with_one_sort_key() {
        for (name, store) in stores() {
            // given forty profiles and other records
            for i in 0..40 {
                let pk = format!("U#user{i}");
                store
                    .put(&rec(&pk, "P", 1, "p"), Expect::Any)
                    .await
                    .expect(name);
                store
                    .put(&rec(&pk, "E#j", 1, "e"), Expect::Any)
                    .await
                    .expect(name);
            }
            // when scanning in four segments, three records a page
            let mut seen = Vec::new();
            let mut pages = 0;
            for seg in 0..4 {
                let mut start: Option<Key> = None;
                loop {
                    let page = store
                        .scan("P", seg, 4, start.as_ref(), 3)
                        .await
                        .expect(name);
                    pages += 1;
                    assert!(page.records.len() <= 3, "{name}");
                    assert!(
                        page.records.iter().all(|r| segment_of(&r.key.pk, 4) == seg),
                        "{name}"
                    );
                    seen.extend(page.records.into_iter().map(|r| r.key.pk));
                    match page.next {
                        Some(next) => start = Some(next),
                        None => break,
                    }
                }
            }
            assert!(pages >= 40 / 3, "{name}: {pages} pages");
            // then every profile comes exactly once, and nothing else
            seen.sort();
            let mut want: Vec<String> = (0..40).map(|i| format!("U#user{i}")).collect();
            want.sort();
            assert_eq!(seen, want, "{name}");
        }
    }

    #[tokio::test]
    async fn expiry_is_kept_and_purged() {
        let store = RedbStore::new(open_in_memory().expect("db"));
        let at = Timestamp::from_second(1_000).expect("ts");
        let old = rec("U#a", "D#1", 1, "x").expiring(at);
        let new = rec("U#a", "D#2", 1, "x").expiring(at + SignedDuration::from_secs(100));
        store.put(&old, Expect::Any).await.expect("put");
        store.put(&new, Expect::Any).await.expect("put");
        store
            .put(&rec("U#a", "P", 1, "x"), Expect::Any)
            .await
            .expect("put");
        assert_eq!(store.get(&old.key).await.expect("get"), Some(old.clone()));
        let gone = store
            .purge_expired(at + SignedDuration::from_secs(1))
            .await
            .expect("purge");
        assert_eq!(gone, 1);
        let left: Vec<Part> = store
            .query("U#a", "")
            .await
            .expect("query")
            .into_iter()
            .map(|r| r.key.sk)
            .collect();
        assert_eq!(left, ["D#2", "P"]);
    }

    fn wake(seq: u64, at: Timestamp) -> Message {
        Message::Wake {
            user_id: "ann".into(),
            journey: "j".into(),
            enrollment: "e1".into(),
            seq,
            at,
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("ts")
    }

    #[tokio::test]
    async fn queue_delivers_in_due_order_and_leases_until_acked() {
        // given a queue on a manual clock with messages due at +10 s, +0 s and +5 s
        let clock = Arc::new(ManualClock::new(ts(0)));
        let q = LocalQueue::new(open_in_memory().expect("db"), clock.clone())
            .with_lease(SignedDuration::from_secs(60));
        for (seq, delay) in [(1, 10), (2, 0), (3, 5)] {
            let message = wake(seq, ts(delay));
            q.send(
                QueueName::Steps,
                &[Outbound {
                    message,
                    delay_secs: delay as u32,
                }],
            )
            .await
            .expect("send");
        }
        assert_eq!(q.next_due().expect("next"), Some(ts(0)));
        // when taking at +5 s
        let got = q.take_due(ts(5)).await.expect("take");
        // then the two due messages come, earliest first, and the third waits
        let seqs = |d: &[Delivery]| {
            d.iter()
                .map(|d| match &d.message {
                    Message::Wake { seq, .. } => *seq,
                    _ => 0,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(&got), [2, 3]);
        assert_eq!(q.next_due().expect("next"), Some(ts(10)));
        // when one is acked and the other is not, the unacked one returns after the lease
        q.ack(&[got[0].receipt]).await.expect("ack");
        assert_eq!(seqs(&q.take_due(ts(10)).await.expect("take")), [1]);
        let again = q.take_due(ts(5 + 60)).await.expect("take");
        assert_eq!(seqs(&again), [3]);
        assert_eq!(again[0].attempt, 2);
    }

    /// A restart gives back what the crashed run had taken, ahead of what came after it and in
    /// the order it was taken, instead of after its lease (hours of a sped-up clock).
    #[tokio::test]
    async fn a_restart_runs_what_the_crashed_run_had_taken_first() {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let db = open_in_memory().expect("db");
        let q =
            LocalQueue::new(db.clone(), clock.clone()).with_lease(SignedDuration::from_hours(5));
        let send = |seq: u64| {
            let q = q.clone();
            async move {
                q.send(
                    QueueName::Steps,
                    &[Outbound {
                        message: wake(seq, ts(0)),
                        delay_secs: 0,
                    }],
                )
                .await
                .expect("send")
            }
        };
        send(1).await;
        send(2).await;
        // the run takes 1 and 2, and crashes with them unacknowledged; 3 comes after
        assert_eq!(q.take_due(ts(0)).await.expect("take").len(), 2);
        clock.set(ts(30));
        send(3).await;
        // a restart's clock starts no earlier than the last message queued
        assert_eq!(stored_clock(&db), Some(ts(30)));
        clock.set(ts(60));
        let restarted =
            LocalQueue::new(db, clock.clone()).with_lease(SignedDuration::from_hours(5));
        assert_eq!(
            restarted
                .release_leases(None, clock.now())
                .expect("release"),
            2
        );
        assert_eq!(
            restarted.next_due().expect("next"),
            Some(Timestamp::UNIX_EPOCH)
        );
        let got = restarted.take_due(ts(60)).await.expect("take");
        let order: Vec<(u64, u32)> = got
            .iter()
            .map(|d| match &d.message {
                Message::Wake { seq, .. } => (*seq, d.attempt),
                _ => (0, 0),
            })
            .collect();
        // the crashed run's lease is not counted against them
        assert_eq!(order, [(1, 1), (2, 1), (3, 1)]);
        assert_eq!(
            restarted
                .release_leases(None, clock.now())
                .expect("release"),
            3,
            "taken again"
        );
    }

    /// Crash after crash, the messages a run held come back uncounted each time; a message
    /// whose lease had run out before the crash (it failed, and waits) keeps its count.
    #[tokio::test]
    async fn crashes_do_not_count_against_the_messages_a_run_held() {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let db = open_in_memory().expect("db");
        let lease = SignedDuration::from_secs(60);
        let q = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        for seq in [1, 2] {
            q.send(
                QueueName::Steps,
                &[Outbound {
                    message: wake(seq, ts(0)),
                    delay_secs: 0,
                }],
            )
            .await
            .expect("send");
        }
        // 1 is taken and fails: its lease runs out at 60 s
        let first = q.take_due(ts(0)).await.expect("take");
        assert_eq!(first.len(), 2);
        let ok = first
            .iter()
            .find(|d| matches!(d.message, Message::Wake { seq: 2, .. }))
            .expect("2");
        q.ack(&[ok.receipt]).await.expect("ack");
        // ten crashes with it taken again each time: never out of attempts
        let mut now = 120;
        for _ in 0..10 {
            clock.set(ts(now));
            let restarted = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
            restarted
                .release_leases(None, clock.now())
                .expect("release");
            let got = restarted.take_due(ts(now)).await.expect("take");
            assert_eq!(got.len(), 1, "not dead-lettered");
            assert_eq!(got[0].attempt, 2, "its failure counts, the crashes do not");
            now += 1;
        }
        // a crash with it in hand counts
        let restarted = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        restarted
            .release_leases(None, clock.now())
            .expect("release");
        let got = restarted.take_due(ts(now)).await.expect("take");
        assert_eq!(got[0].attempt, 2);
        let line = InHand::of(&got[0]).to_line();
        assert_eq!(InHand::from_line(&line), Some(InHand::of(&got[0])));
        let restarted = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        restarted
            .release_leases(InHand::from_line(&line), clock.now())
            .expect("release");
        let got = restarted.take_due(ts(now)).await.expect("take");
        assert_eq!(got[0].attempt, 3, "the crash in its hands is charged");
        now += 1;
        // its lease runs out (it failed again) before the next crash: that counts
        clock.set(ts(now + 120));
        let restarted = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        restarted
            .release_leases(None, clock.now())
            .expect("release");
        let got = restarted.take_due(ts(now + 120)).await.expect("take");
        assert_eq!(got[0].attempt, 4);
    }

    /// A restart long after a crash (its clock moved on to the wall clock, past every lease the
    /// crashed run held) charges only the message in hand, as a quick restart does: the leases
    /// are judged at the time the run stopped, not at the restart's clock.
    #[tokio::test]
    async fn a_late_restart_charges_only_the_message_in_hand() {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let db = open_in_memory().expect("db");
        // `waymark dev --speed 1`'s lease: five seconds
        let lease = SignedDuration::from_secs(5);
        let q = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        for seq in [1, 2, 3] {
            q.send(
                QueueName::Steps,
                &[Outbound {
                    message: wake(seq, ts(0)),
                    delay_secs: 0,
                }],
            )
            .await
            .expect("send");
        }
        // the run takes all three; a durable commit (the API's) keeps the take; it crashes
        // handling the first
        let taken = q.take_due(ts(0)).await.expect("take");
        assert_eq!(taken.len(), 3);
        commit_durably(&db, ts(0)).expect("commit");
        let line = InHand::of(&taken[0]).to_line();
        let in_hand = match &taken[0].message {
            Message::Wake { seq, .. } => *seq,
            _ => 0,
        };
        // the restart, a minute later: its clock is the wall clock
        clock.set(ts(60));
        let stopped_at = stored_clock(&db).expect("a durable commit");
        let restarted = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
        assert_eq!(
            restarted
                .release_leases(InHand::from_line(&line), stopped_at)
                .expect("release"),
            3
        );
        let got = restarted.take_due(ts(60)).await.expect("take");
        let mut attempts: Vec<(u64, u32)> = got
            .iter()
            .map(|d| match &d.message {
                Message::Wake { seq, .. } => (*seq, d.attempt),
                _ => (0, 0),
            })
            .collect();
        attempts.sort_unstable();
        let expected: Vec<(u64, u32)> = [1, 2, 3]
            .into_iter()
            .map(|seq| (seq, if seq == in_hand { 2 } else { 1 }))
            .collect();
        assert_eq!(attempts, expected, "only the message in hand is charged");
    }

    /// The local queue holds a message as long as it is told, so that `waymark dev` (whose hop
    /// limit is longer than any wait) keeps a day's wait as one message due at its time, not a
    /// timer that waits for the scheduler's tick (an hour and more late at high speeds).
    #[tokio::test]
    async fn a_long_wait_rides_the_local_queue_due_at_its_time() {
        let clock = Arc::new(ManualClock::new(ts(1_796_000_000)));
        let db = open_in_memory().expect("db");
        let q = LocalQueue::new(db.clone(), clock.clone());
        assert_eq!(crate::queue::Queue::max_delay_secs(&q), u32::MAX);
        let (sender, lines) = crate::outbox::OutboxSender::memory(clock.clone());
        let config = crate::runtime::Config {
            hop_limit: SignedDuration::from_hours(24 * 400),
            ..crate::runtime::Config::default()
        };
        let rt = crate::runtime::Runtime::new(
            Arc::new(RedbStore::new(db)),
            Arc::new(q.clone()),
            Arc::new(sender),
            clock.clone(),
            std::time::Duration::from_secs(1),
            config,
        );
        let journey = crate::dsl::parse(
            "later.yaml",
            "id: later\nname: Later\ntrigger: {event: go}\nsteps:\n  - {id: w, wait: 1d}\n  - {id: hi, send: {in_app: {title: hi, body: x}}}\n",
        )
        .expect("journey");
        rt.catalog
            .publish(&journey, &rt.config.topics, clock.now())
            .await
            .expect("publish");
        let body = serde_json::json!({"userId": "u", "event": "go", "messageId": "go-1"});
        let go = crate::event::parse_call(
            crate::event::Call::Track,
            body.to_string().as_bytes(),
            clock.now(),
            &crate::event::Limits::default(),
        )
        .expect("event");
        for r in rt.handle_batch(&[Message::Event(Arc::new(go))]).await {
            r.expect("handled");
        }
        let due = clock.now() + SignedDuration::from_hours(24);
        assert_eq!(q.next_due().expect("queue"), Some(due));
        clock.set(due);
        let batch = q.take_due(due).await.expect("queue");
        let messages: Vec<Message> = batch.into_iter().map(|d| d.message).collect();
        for r in rt.handle_batch(&messages).await {
            r.expect("handled");
        }
        let sent = lines.lock().map(|l| l.len()).unwrap_or(0);
        assert_eq!(sent, 1, "the in-app message, at the wait's end");
    }

    /// The local queue refuses what SQS would (a character it does not carry), so that
    /// `waymark dev` answers such an event with the deployed API's 400.
    #[tokio::test]
    async fn queue_refuses_what_sqs_would() {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let q = LocalQueue::new(open_in_memory().expect("db"), clock);
        // (The API reads U+FFFE and U+FFFF as U+FFFD: the text is put in after parsing, as an
        // event made otherwise could hold it.)
        let event = |text: &str| {
            let body = serde_json::json!({"userId": "u", "event": "e", "properties": {"a": "x"}});
            let mut e = crate::event::parse_call(
                crate::event::Call::Track,
                body.to_string().as_bytes(),
                ts(0),
                &crate::event::Limits::default(),
            )
            .expect("event");
            e.properties = Arc::new(serde_json::json!({"a": text}));
            Outbound {
                message: Message::Event(Arc::new(e)),
                delay_secs: 0,
            }
        };
        let refused = q.send(QueueName::Events, &[event("\u{FFFF}")]).await;
        assert!(
            matches!(&refused, Err(QueueError::Rejected(m)) if m.contains("U+FFFF")),
            "{refused:?}"
        );
        q.send(QueueName::Events, &[event("\u{FFFD} fine")])
            .await
            .expect("a character SQS carries");
    }

    async fn one_queued(lease_secs: i64) -> (Arc<ManualClock>, LocalQueue) {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let q = LocalQueue::new(open_in_memory().expect("db"), clock.clone())
            .with_lease(SignedDuration::from_secs(lease_secs));
        q.send(
            QueueName::Steps,
            &[Outbound {
                message: wake(1, ts(0)),
                delay_secs: 0,
            }],
        )
        .await
        .expect("send");
        (clock, q)
    }

    #[tokio::test]
    async fn a_message_out_of_attempts_moves_to_the_dead_letters_and_can_be_redriven() {
        // given a message taken 5 times, never acknowledged
        let (clock, q) = one_queued(1).await;
        for i in 0..5 {
            assert_eq!(
                q.take_due(ts(i * 10)).await.expect("take").len(),
                1,
                "attempt {i}"
            );
        }
        // when the sixth take comes
        assert!(q.take_due(ts(100)).await.expect("take").is_empty());
        // then it is no longer queued, but kept as a dead letter with why
        assert!(q.is_empty().expect("len"));
        let dead = q.dead_letters().expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 5);
        assert!(
            dead[0].reason.contains("taken 5 times"),
            "{}",
            dead[0].reason
        );
        assert_eq!(
            serde_json::from_str::<Message>(&dead[0].body).expect("the message"),
            wake(1, ts(0))
        );
        // when it is redriven, it is due at once with its attempts starting over
        clock.set(ts(200));
        assert_eq!(q.redrive().await.expect("redrive"), 1);
        assert!(q.dead_letters().expect("dead letters").is_empty());
        let again = q.take_due(ts(200)).await.expect("take");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempt, 1);
        assert_eq!(again[0].message, wake(1, ts(0)));
    }

    #[tokio::test]
    async fn a_leased_message_is_dead_lettered_with_its_reason_unless_its_lease_ran_out() {
        // given a leased message
        let (_clock, q) = one_queued(60).await;
        let first = q.take_due(ts(0)).await.expect("take");
        // when the engine gives up on it
        let moved = q
            .dead_letter(&[(first[0].receipt, "journey `j` is not published".into())])
            .await
            .expect("dead letter");
        // then it moves with that reason, and is not delivered again
        assert_eq!(moved, 1);
        assert!(q.take_due(ts(1000)).await.expect("take").is_empty());
        let dead = q.dead_letters().expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "journey `j` is not published");
        assert_eq!(dead[0].attempts, 1);

        // given a message whose lease ran out and which was taken again
        let (_clock, q) = one_queued(60).await;
        let stale = q.take_due(ts(0)).await.expect("take");
        let current = q.take_due(ts(60)).await.expect("take");
        assert_eq!(current.len(), 1);
        // when the first taker gives up on it, nothing moves: the current delivery decides
        let moved = q
            .dead_letter(&[(stale[0].receipt, "gave up".into())])
            .await
            .expect("dead letter");
        assert_eq!(moved, 0);
        assert!(q.dead_letters().expect("dead letters").is_empty());
        q.ack(&[current[0].receipt]).await.expect("ack");
        assert!(q.is_empty().expect("len"));
    }

    #[tokio::test]
    async fn an_unreadable_message_moves_to_the_dead_letters() {
        let clock = Arc::new(ManualClock::new(ts(0)));
        let db = open_in_memory().expect("db");
        let q = LocalQueue::new(db.clone(), clock);
        {
            let txn = db.begin_write().expect("txn");
            txn.open_table(QUEUE)
                .expect("queue")
                .insert((millis(ts(0)), 1), (0u32, "{not a message"))
                .expect("insert");
            txn.commit().expect("commit");
        }
        assert!(q.take_due(ts(0)).await.expect("take").is_empty());
        let dead = q.dead_letters().expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].reason.starts_with("unreadable message"),
            "{}",
            dead[0].reason
        );
        assert_eq!(dead[0].body, "{not a message");
    }

    #[tokio::test]
    async fn store_and_queue_survive_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!(
            "waymark-local-test-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("store.redb");
        let clock = Arc::new(ManualClock::new(ts(0)));
        let id;
        {
            let db = open(&path).expect("open");
            id = store_id(&db).expect("id");
            assert!(matches!(open(&path), Err(LocalError::InUse { .. })));
            RedbStore::new(db.clone())
                .put(&rec("U#ann", "P", 1, "ann"), Expect::Absent)
                .await
                .expect("put");
            LocalQueue::new(db, clock.clone())
                .send(
                    QueueName::Steps,
                    &[Outbound {
                        message: wake(7, ts(60)),
                        delay_secs: 60,
                    }],
                )
                .await
                .expect("send");
        }
        let db = open(&path).expect("reopen");
        // the store keeps its id; another store (a new file) has its own
        assert_eq!(store_id(&db).expect("id"), id);
        let other = open_in_memory().expect("other");
        assert_ne!(store_id(&other).expect("id"), id);
        let got = RedbStore::new(db.clone())
            .get(&Key::new("U#ann", "P"))
            .await
            .expect("get");
        assert_eq!(
            got.map(|r| r.body.json().expect("json").to_vec()),
            Some(b"\"ann\"".to_vec())
        );
        let q = LocalQueue::new(db, clock);
        assert_eq!(q.next_due().expect("next"), Some(ts(60)));
        assert_eq!(
            q.take_due(ts(60)).await.expect("take")[0].message,
            wake(7, ts(60))
        );
        drop(q);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Runs test `test` of this binary again as a child process, with `var` set to `value`
    /// (the child does the crashing part), and waits for how it ended.
    fn run_child(test: &str, var: &str, value: &std::path::Path) -> std::process::ExitStatus {
        std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture"])
            .env(var, value)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run the child")
    }

    /// `waymark dev`'s engine commits to disk twice a batch however many of its messages send
    /// and wait again (the commit before the batch's outbox lines, then the acknowledgement),
    /// where it committed once a send and once a wait's wake-up queued before: a wake-up queued
    /// and a line staged wait for those commits, as the store's writes do.
    #[tokio::test]
    async fn a_batch_of_sends_costs_two_disk_commits_whatever_its_size() {
        use crate::event::{Event, Kind};
        use crate::outbox::{OutboxSender, Sink};
        use crate::runtime::{Config, Runtime};
        const USERS: usize = 20;
        let dir = std::env::temp_dir().join(format!(
            "waymark-batch-commits-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let db = open(&dir.join("store.redb")).expect("open");
        let clock = Arc::new(ManualClock::new(ts(0)));
        let queue = LocalQueue::new(db.clone(), clock.clone());
        let outbox = dir.join("outbox.jsonl");
        let sender = Arc::new(
            OutboxSender::new(Sink::File(outbox.clone()), clock.clone(), false)
                .staged(Arc::new(StagedLines::new(db.clone()))),
        );
        let rt = Runtime::new(
            Arc::new(RedbStore::deferred(db.clone())),
            Arc::new(queue.clone().deferred()),
            sender.clone(),
            clock.clone(),
            std::time::Duration::ZERO,
            Config {
                // Every wait on the queue, as `waymark dev` has it.
                hop_limit: SignedDuration::from_hours(24 * 400),
                ..Config::default()
            },
        );
        let journey = crate::dsl::parse(
            "j.yaml",
            "id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - {id: w1, wait: 30m}\n  - {id: one, send: {sms: {body: one}}}\n  - {id: w2, wait: 30m}\n  - {id: two, send: {sms: {body: two}}}\n",
        )
        .expect("journey");
        rt.catalog
            .publish(&journey, &rt.config.topics, ts(0))
            .await
            .expect("publish");
        let event = |user: usize, kind: Kind| {
            Message::Event(Arc::new(Event {
                kind,
                message_id: format!("{kind:?}-{user}"),
                user_id: format!("u{user}"),
                anonymous_id: None,
                event: (kind == Kind::Track).then(|| "go".to_string()),
                properties: Default::default(),
                traits: serde_json::json!({"phone": format!("+1415555{user:04}")})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                context: Default::default(),
                timestamp: ts(0),
                received_at: ts(0),
                refused: Vec::new(),
            }))
        };
        for user in 0..USERS {
            for kind in [Kind::Identify, Kind::Track] {
                assert!(rt.handle(&event(user, kind)).await.is_ok());
            }
        }
        sender.flush(ts(0)).expect("flush");
        // when each wait's wake-ups come due, and the engine handles them as one batch
        for (wait, step) in [(1, "one"), (2, "two")] {
            let now = ts(wait * 31 * 60);
            clock.set(now);
            let batch = queue.take_due(now).await.expect("take");
            assert_eq!(batch.len(), USERS, "the wake-ups of wait {wait}");
            let before = durable_commits(&db);
            for d in &batch {
                assert!(rt.handle(&d.message).await.is_ok());
            }
            assert_eq!(sender.flush(now).expect("flush"), USERS);
            let receipts: Vec<Receipt> = batch.iter().map(|d| d.receipt).collect();
            queue.ack(&receipts).await.expect("ack");
            // then it took two disk commits, and every message is in the outbox
            assert_eq!(durable_commits(&db) - before, 2, "wait {wait}");
            let text = std::fs::read_to_string(&outbox).expect("outbox");
            let sent = text
                .lines()
                .filter(|l| l.contains(&format!("\"step\":\"{step}\"")))
                .count();
            assert_eq!(sent, USERS, "{step}");
        }
        drop(rt);
        drop(sender);
        drop(queue);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Where [`stage_then_crash`] aborts: before the outbox's flush, after its durable commit,
    /// after its lines are written and flushed to disk (before they are let go), after it.
    const CRASH_POINTS: [&str; 4] = [
        "before flush",
        "after commit",
        "before release",
        "after flush",
    ];

    /// A crash loses the deferred writes since the last durable commit, and an outbox line
    /// staged among them with them; a line reaches `waymark dev`'s outbox only after the commit
    /// that makes the writes before it (the transition, the ledger's claim and record) durable.
    /// At each point of a flush a real crash (this test runs itself again as a child process
    /// that aborts) leaves the store and the outbox such that the restart's flush, and the
    /// message run again when the ledger does not hold its send, put the message in the outbox
    /// once: never lost, never twice.
    #[tokio::test]
    async fn a_crash_at_any_point_of_an_outbox_flush_neither_loses_nor_repeats_a_message() {
        use crate::outbox::{OutboxSender, Sink};
        use crate::provider::Sender;
        const CHILD: &str = "WAYMARK_STAGED_CHILD";
        if let Some(dir) = std::env::var_os(CHILD) {
            stage_then_crash(std::path::Path::new(&dir)).await;
        }
        for point in CRASH_POINTS {
            let dir = std::env::temp_dir().join(format!(
                "waymark-staged-{}-{}",
                std::process::id(),
                Timestamp::now().as_nanosecond()
            ));
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("point"), point).expect("point");
            let child = run_child(
                "local::tests::a_crash_at_any_point_of_an_outbox_flush_neither_loses_nor_repeats_a_message",
                CHILD,
                &dir,
            );
            assert!(!child.success(), "{point}: the child crashed");
            let outbox = dir.join("outbox.jsonl");
            let lines = || {
                std::fs::read_to_string(&outbox)
                    .unwrap_or_default()
                    .matches("j:ann:1#s#2")
                    .count()
            };
            let db = open(&dir.join("store.redb")).expect("reopen");
            let store = RedbStore::new(db.clone());
            let kept = |pk: &'static str| {
                let store = store.clone();
                async move { store.get(&Key::new(pk, "S")).await.expect("get").is_some() }
            };
            let (claim, done, after) = (
                kept("L#claim").await,
                kept("L#done").await,
                kept("L#after").await,
            );
            let before_restart = lines();
            // the line is out only once the writes that decided it are durable
            assert!(
                before_restart == 0 || (claim && done),
                "{point}: a line out before its decision was durable"
            );
            assert_eq!(
                claim,
                point != "before flush",
                "{point}: the flush's commit made the claim durable"
            );
            assert_eq!(claim, done, "{point}: the claim and the record go together");
            assert!(
                !after,
                "{point}: a write after the flush waits for the next commit"
            );
            if claim {
                assert_eq!(stored_clock(&db), Some(ts(90)), "{point}");
            }
            // when the engine starts again: its flush writes what the crash left staged, and
            // the message, run again, sends again what the ledger does not say went out
            let clock = Arc::new(ManualClock::new(ts(100)));
            let staging = Arc::new(StagedLines::new(db.clone()));
            let sender =
                OutboxSender::new(Sink::File(outbox.clone()), clock, false).staged(staging.clone());
            sender.flush(ts(100)).expect("flush");
            if !done {
                sender.send(&sms()).await.expect("sent");
                sender.flush(ts(100)).expect("flush");
            }
            // then it is in the outbox once, and nothing waits any more
            assert_eq!(
                lines(),
                1,
                "{point}: in the outbox once (before the restart: {before_restart})"
            );
            assert!(
                crate::outbox::Staging::commit(&*staging, ts(100))
                    .expect("commit")
                    .is_none(),
                "{point}: nothing left staged"
            );
            drop(sender);
            drop(staging);
            drop(store);
            drop(db);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// An SMS of enrollment `j:ann:1` (ledger key `j:ann:1#s#2`).
    fn sms() -> crate::engine::Outgoing {
        crate::engine::Outgoing {
            enrollment: "j:ann:1".into(),
            journey: "j".into(),
            version: 1,
            user_id: "ann".into(),
            step: "s".into(),
            seq: 2,
            channel: crate::journey::Channel::Sms,
            to: crate::profile::Address::One("+14155550100".into()),
            content: Arc::new(crate::engine::Content::Sms {
                body: "hi".into(),
                sms_type: Default::default(),
            }),
            transactional: false,
            locale: None,
            timezone: None,
        }
    }

    /// A message that kills the process each time it is handled reaches the dead letters after
    /// five starts, though each crash undoes the take that leased it (a take is not durable):
    /// the run's note of the message in hand charges it where it is found. The crashes are
    /// real: this test runs itself again as a child process that takes, notes and aborts.
    #[tokio::test]
    async fn a_message_that_kills_the_process_is_charged_for_each_crash() {
        const CHILD: &str = "WAYMARK_KILLER_CHILD";
        let clock = Arc::new(ManualClock::new(ts(0)));
        let lease = SignedDuration::from_hours(1);
        if let Some(dir) = std::env::var_os(CHILD) {
            let dir = std::path::PathBuf::from(dir);
            let db = open(&dir.join("store.redb")).expect("open");
            let q = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
            let got = q.take_due(ts(1)).await.expect("take");
            if let Some(d) = got.first() {
                std::fs::write(dir.join("in_hand"), InHand::of(d).to_line()).expect("note");
                std::process::abort();
            }
            // Out of attempts, it was dead-lettered by the take; a run that stops commits.
            commit_durably(&db, ts(1)).expect("commit");
            std::process::exit(0);
        }
        let dir = std::env::temp_dir().join(format!(
            "waymark-killer-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        {
            let db = open(&dir.join("store.redb")).expect("open");
            let q = LocalQueue::new(db.clone(), clock.clone());
            let out = Outbound {
                message: wake(1, ts(0)),
                delay_secs: 0,
            };
            q.send(QueueName::Steps, &[out]).await.expect("send");
            commit_durably(&db, ts(0)).expect("commit");
        }
        let mut starts = 0;
        loop {
            let child = run_child(
                "local::tests::a_message_that_kills_the_process_is_charged_for_each_crash",
                CHILD,
                &dir,
            );
            if child.success() {
                break;
            }
            starts += 1;
            assert!(starts <= 10, "still crashing after {starts} starts");
            // The next start: give back what the crashed run had, charging the note's message.
            let db = open(&dir.join("store.redb")).expect("reopen");
            let q = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
            let note = std::fs::read_to_string(dir.join("in_hand")).expect("a note");
            q.release_leases(InHand::from_line(&note), clock.now())
                .expect("release");
            commit_durably(&db, ts(0)).expect("commit");
        }
        // The sixth take found it out of attempts: it is in the dead letters, with why.
        let db = open(&dir.join("store.redb")).expect("reopen");
        let q = LocalQueue::new(db, clock);
        let dead = q.dead_letters().expect("dead letters");
        assert_eq!(starts, 5);
        assert_eq!(dead.len(), 1, "{dead:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Staged lines in the store, with a crash at a point of the flush.
    struct CrashingAt {
        lines: StagedLines,
        point: String,
    }

    impl crate::outbox::Staging for CrashingAt {
        fn stage(&self, line: &crate::outbox::OutboxLine) -> Result<(), String> {
            self.lines.stage(line)
        }
        fn commit(&self, now: Timestamp) -> Result<Option<crate::outbox::Waiting>, String> {
            let waiting = self.lines.commit(now)?;
            if self.point == "after commit" {
                std::process::abort()
            }
            Ok(waiting)
        }
        fn release(&self, through: u64) -> Result<(), String> {
            if self.point == "before release" {
                std::process::abort()
            }
            self.lines.release(through)
        }
    }

    /// The child's part, as the engine does it: a deferred claim, the send (its line staged),
    /// the send's record, then the outbox's flush and another deferred write, with a crash (no
    /// drop, no flush) at the point `dir/point` names.
    async fn stage_then_crash(dir: &std::path::Path) -> ! {
        use crate::outbox::{OutboxSender, Sink};
        use crate::provider::Sender;
        let point = std::fs::read_to_string(dir.join("point")).expect("point");
        let db = open(&dir.join("store.redb")).expect("open");
        let clock = Arc::new(ManualClock::new(ts(90)));
        let deferred = RedbStore::deferred(db.clone());
        let put = |pk: &'static str| {
            let deferred = deferred.clone();
            async move {
                deferred
                    .put(&rec(pk, "S", 1, pk), Expect::Absent)
                    .await
                    .expect("put")
            }
        };
        let sender = OutboxSender::new(Sink::File(dir.join("outbox.jsonl")), clock, false).staged(
            Arc::new(CrashingAt {
                lines: StagedLines::new(db.clone()),
                point: point.clone(),
            }),
        );
        put("L#claim").await;
        sender.send(&sms()).await.expect("sent");
        put("L#done").await;
        if point == "before flush" {
            std::process::abort()
        }
        assert_eq!(sender.flush(ts(90)).expect("flush"), 1);
        put("L#after").await;
        std::process::abort()
    }

    #[tokio::test]
    async fn deferred_writes_are_read_at_once_and_kept_by_the_next_durable_commit() {
        let dir = std::env::temp_dir().join(format!(
            "waymark-deferred-test-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("store.redb");
        let clock = Arc::new(ManualClock::new(ts(0)));
        {
            let db = open(&path).expect("open");
            let deferred = RedbStore::deferred(db.clone());
            for (pk, body) in [("U#ann", "ann"), ("U#bob", "bob")] {
                deferred
                    .put(&rec(pk, "P", 1, body), Expect::Absent)
                    .await
                    .expect("put");
            }
            // Read back at once, through either store.
            let got = RedbStore::new(db.clone())
                .get(&Key::new("U#bob", "P"))
                .await
                .expect("get");
            assert_eq!(
                got.map(|r| r.body.json().expect("json").to_vec()),
                Some(b"\"bob\"".to_vec())
            );
            // Conditions hold across deferred commits.
            assert_eq!(
                deferred
                    .put(&rec("U#ann", "P", 1, "again"), Expect::Absent)
                    .await,
                Err(StoreError::Conflict)
            );
            LocalQueue::new(db, clock.clone())
                .sync()
                .await
                .expect("a durable commit");
        }
        let db = open(&path).expect("reopen");
        let store = RedbStore::new(db);
        for (pk, body) in [("U#ann", "ann"), ("U#bob", "bob")] {
            let got = store.get(&Key::new(pk, "P")).await.expect("get");
            assert_eq!(
                got.map(|r| r.body.json().expect("json").to_vec()),
                Some(format!("\"{body}\"").into_bytes()),
                "{pk}"
            );
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
