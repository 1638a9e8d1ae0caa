//! The store port: versioned records under (partition, sort) keys, conditional writes, atomic
//! counters and segment scans; and the in-memory adapter. Knows nothing of journeys.

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod hooked;
pub use hooked::{Hooked, Hooks};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: Part,
    pub sk: Part,
}

impl Key {
    pub fn new(pk: impl Into<Part>, sk: impl Into<Part>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One part of a key (or a fold partition's name): an immutable string that is shared, not
/// copied, when a record or key is cloned (the in-memory store keeps and hands out several
/// copies of every key).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Part(Arc<str>);

impl Part {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parts of a key joined into one, in a single allocation (hot paths): they are joined
    /// in a buffer kept by the thread, then copied into the shared string.
    pub fn join(parts: &[&str]) -> Part {
        thread_local! {
            static BUF: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(128));
        }
        BUF.with(|buf| match buf.try_borrow_mut() {
            Ok(mut b) => {
                b.clear();
                for p in parts {
                    b.push_str(p);
                }
                Part(Arc::from(b.as_str()))
            }
            Err(_) => Part::from(join(parts)),
        })
    }
}

impl std::ops::Deref for Part {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Part {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Part {
    fn from(s: &str) -> Self {
        Part(Arc::from(s))
    }
}

impl From<String> for Part {
    fn from(s: String) -> Self {
        Part(Arc::from(s))
    }
}

impl From<&String> for Part {
    fn from(s: &String) -> Self {
        Part(Arc::from(s.as_str()))
    }
}

impl PartialEq<str> for Part {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Part {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Part {
    fn eq(&self, other: &String) -> bool {
        &*self.0 == other.as_str()
    }
}

/// A record's body: the value it was written with, or the JSON a durable store read back.
///
/// The in-memory store keeps a typed body as it is, so a record read back as the type it was
/// written with is a clone, with no JSON on the way; a durable store writes [`Body::json`]. A
/// body read as another type goes through JSON, exactly as it would from a durable store.
#[derive(Clone)]
pub enum Body {
    Json(bytes::Bytes),
    Typed(Arc<dyn Stored>),
}

/// A value a typed [`Body`] can hold: anything that serializes, shareable between threads.
pub trait Stored: std::any::Any + Send + Sync {
    fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    fn as_any(&self) -> &dyn std::any::Any;
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

impl<T: Serialize + std::any::Any + Send + Sync> Stored for T {
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Body {
    /// The body as JSON (what a durable store writes): shared when it is JSON already.
    pub fn json(&self) -> Result<bytes::Bytes, StoreError> {
        match self {
            Body::Json(b) => Ok(b.clone()),
            Body::Typed(v) => v
                .to_json()
                .map(bytes::Bytes::from)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
        }
    }

    /// The typed value, when the body holds a `T`.
    pub fn typed<T: 'static>(&self) -> Option<&T> {
        match self {
            Body::Typed(v) => v.as_any().downcast_ref::<T>(),
            Body::Json(_) => None,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Self {
        Body::Json(b.into())
    }
}

impl From<bytes::Bytes> for Body {
    fn from(b: bytes::Bytes) -> Self {
        Body::Json(b)
    }
}

/// Two bodies are equal when they say the same in JSON.
impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        if let (Body::Typed(a), Body::Typed(b)) = (self, other) {
            if Arc::ptr_eq(a, b) {
                return true;
            }
        }
        match (self.json(), other.json()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.json() {
            Ok(b) => write!(f, "{}", String::from_utf8_lossy(&b)),
            Err(e) => write!(f, "<{e}>"),
        }
    }
}

/// One stored item: a body with a version number, an optional expiry (epoch seconds) and
/// an optional fold partition: a record written with one is listed there (see
/// [`Store::pending`]) until [`Store::fold`] counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: Key,
    pub version: u64,
    /// Shared, so that handing a record out of a store does not copy its body.
    pub body: Body,
    pub expires: Option<i64>,
    pub pending: Option<Part>,
    /// How many parts of a listed record's fold are counted ([`Store::fold_part`]), as the
    /// store read it (0: none, or not listed), so that a fold goes on from there. A put
    /// ignores it: a put starts the parts over.
    pub parts_counted: u32,
    /// Sealed: a write of another record can be made on the condition that this one is not
    /// ([`Store::put_unless_sealed`]). Written and read back with the record (a put replaces
    /// it, as it does the body).
    pub sealed: bool,
}

impl Record {
    /// A record holding a copy of `body`.
    pub fn new<T>(key: Key, version: u64, body: &T) -> Result<Self, StoreError>
    where
        T: Serialize + Clone + Send + Sync + 'static,
    {
        Ok(Self::of(key, version, body.clone()))
    }

    /// A record holding `body` itself.
    pub fn of<T>(key: Key, version: u64, body: T) -> Self
    where
        T: Serialize + Send + Sync + 'static,
    {
        Record {
            key,
            version,
            body: Body::Typed(Arc::new(body)),
            expires: None,
            pending: None,
            parts_counted: 0,
            sealed: false,
        }
    }

    /// A record holding `body`, shared with whoever else holds it.
    pub fn shared<T>(key: Key, version: u64, body: Arc<T>) -> Self
    where
        T: Serialize + Send + Sync + 'static,
    {
        Record {
            key,
            version,
            body: Body::Typed(body),
            expires: None,
            pending: None,
            parts_counted: 0,
            sealed: false,
        }
    }

    /// Lists the record under fold partition `part` until it is folded.
    pub fn pending_in(mut self, part: impl Into<Part>) -> Self {
        self.pending = Some(part.into());
        self
    }

    /// The record sealed (`true`) or not ([`Record::sealed`]).
    pub fn sealing(mut self, sealed: bool) -> Self {
        self.sealed = sealed;
        self
    }

    pub fn expiring(mut self, at: jiff::Timestamp) -> Self {
        self.expires = Some(at.as_second());
        self
    }

    /// The body as a shared `T`: the very value when it holds one (no copy), else read from
    /// its JSON.
    pub fn parse_shared<T>(&self) -> Result<Arc<T>, StoreError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if let Body::Typed(v) = &self.body {
            if let Ok(t) = v.clone().into_any().downcast::<T>() {
                return Ok(t);
            }
        }
        let json = self.body.json()?;
        serde_json::from_slice(&json).map(Arc::new).map_err(|e| {
            StoreError::Corrupt(format!("record {}/{}: {e}", self.key.pk, self.key.sk))
        })
    }

    /// The body as a `T`: a clone when it holds one, else read from its JSON.
    pub fn parse<T: DeserializeOwned + Clone + 'static>(&self) -> Result<T, StoreError> {
        if let Some(v) = self.body.typed::<T>() {
            return Ok(v.clone());
        }
        let json = self.body.json()?;
        serde_json::from_slice(&json).map_err(|e| {
            StoreError::Corrupt(format!("record {}/{}: {e}", self.key.pk, self.key.sk))
        })
    }
}

/// The condition a write needs to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Only if no record has this key.
    Absent,
    /// Only if the record is at this version.
    Version(u64),
}

impl Expect {
    /// The version a write replacing `stored` (read just before; `None`: there was none) takes,
    /// and the condition that nothing changed it meanwhile.
    pub fn replacing(stored: Option<&Record>) -> (u64, Expect) {
        match stored {
            Some(r) => (r.version + 1, Expect::Version(r.version)),
            None => (1, Expect::Absent),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The condition did not hold: someone else wrote first.
    #[error("conditional write lost: the record changed")]
    Conflict,
    /// The store could not be reached or throttled; try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A record could not be read or written as JSON, or the store refuses the request as
    /// invalid (DynamoDB's ValidationException: a key or an item past its bounds): it can never
    /// succeed.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The write would take an item past DynamoDB's [`MAX_ITEM_BYTES`] (DynamoDB refuses it,
    /// in a transaction as a `ValidationError` among its cancellation reasons): it can never
    /// succeed. What [`Store::fold_part`] meets on a record an earlier build listed without the
    /// room for its count of parts ([`FOLD_PROGRESS_BYTES`]); the stats fold skips that record.
    #[error("item too large: {0}")]
    TooLarge(String),
    /// The record a write was conditioned on is sealed ([`Store::put_unless_sealed`]): nothing
    /// was written, and nothing will be while it is.
    #[error("conditional write refused: the record it depends on is sealed")]
    Sealed,
}

/// Named counter changes.
pub type Counts = BTreeMap<String, i64>;

/// The most records and counter keys one [`Store::fold`] takes (DynamoDB's TransactWriteItems
/// takes 100 actions).
pub const FOLD_MAX_ITEMS: usize = 100;
/// The most counters one [`Store::fold`] changes at one key (one UpdateItem expression).
pub const FOLD_MAX_COUNTERS: usize = 100;

/// Held as `Arc<dyn Store>` and called through it. There is deliberately no forwarding impl for
/// `Arc<T>`: method calls would pick it, and every call would box its future twice.
#[async_trait]
pub trait Store: std::any::Any + Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError>;
    /// Several records at once (missing keys are left out).
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(r) = self.get(k).await? {
                out.push(r);
            }
        }
        Ok(out)
    }
    async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError>;
    /// Writes `record` on `expect`, as [`Store::put`] does, only while the record at `seal` (of
    /// another key) is not sealed ([`Record::sealed`]; no record there is none): the check and
    /// the write are one, all or nothing (DynamoDB: one TransactWriteItems, a Put and a
    /// ConditionCheck). `Conflict` when `expect` does not hold, whatever `seal` holds; else
    /// `Sealed` when the record at `seal` is; either way nothing was written.
    async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError>;
    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError>;
    /// Every record in partition `pk` whose sort key starts with `prefix`, in sort-key order.
    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError>;
    /// The first `limit` records of [`Store::query`]: a caller that deletes what it read pages
    /// through a partition of any size this way, a bounded read at a time (DynamoDB: Query with
    /// `Limit`).
    async fn query_first(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut records = self.query(pk, prefix).await?;
        records.truncate(limit);
        Ok(records)
    }
    /// Deletes every record of `keys`, whatever is stored there (a key with no record is no
    /// error), in as few requests as the store allows (DynamoDB: BatchWriteItem, 25 a request).
    /// Not atomic: on an error some may be deleted, and repeating it is safe.
    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        for key in keys {
            self.delete(key, Expect::Any).await?;
        }
        Ok(())
    }
    /// The partitions whose names lie in `[from, to)`, by byte order, that hold a record, when
    /// the store can list them in one read; `None` when it cannot (DynamoDB hashes its
    /// partitions), and the caller queries each partition it wants. `waymark dev`'s scheduler
    /// at high speed sweeps hours of timer minutes a tick, nearly all of them empty.
    async fn partitions_between(
        &self,
        _from: &str,
        _to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        Ok(None)
    }
    /// Up to `limit` records still listed under fold partition `part` (in no set order). May
    /// lag the writes a little (DynamoDB's index is eventually consistent).
    async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError>;
    /// All or nothing: takes every record of `records` off its fold partition and adds each
    /// counter change to the named counters at its key (creating them at zero). `Conflict` when
    /// any of the records is no longer listed (folded already, or gone), and then nothing
    /// changed. At most [`FOLD_MAX_ITEMS`] records and counter keys together, at most
    /// [`FOLD_MAX_COUNTERS`] counters per key.
    async fn fold(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError>;
    /// Part `part` of the fold of one record whose counts are past what one [`Store::fold`]
    /// takes: all or nothing, adds `counters` and notes on `record` that its parts up to this
    /// one are counted, when it is listed and exactly its parts before `part` are counted
    /// (`Conflict` otherwise, and nothing changed); the `last` part takes it off its fold
    /// partition, as [`Store::fold`] does. So each part of a record is counted once, in order,
    /// whatever fails between parts. A put of the record starts its parts over. At most
    /// [`FOLD_MAX_ITEMS`] less one counter keys, at most [`FOLD_MAX_COUNTERS`] counters per key.
    async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError>;
    /// The counters kept at `key`.
    async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError>;
    /// The counters kept at `keys` added up, name by name (each distinct key counted once):
    /// what several fold partitions counted for one journey, in as few requests as the store
    /// allows (DynamoDB: one BatchGetItem for up to 100 keys).
    async fn counters_sum(&self, keys: &[Key]) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut total = BTreeMap::new();
        for key in distinct(keys) {
            add_to(&mut total, self.counters(key).await?);
        }
        Ok(total)
    }
    /// One page of part `segment` of `segments` of the records whose sort key is `sk` (all
    /// partitions; segments fan a scan out in parallel), from just after `start` (`None`: from
    /// the beginning). A page holds at most `limit` records; a store may stop sooner (DynamoDB
    /// reads at most 1 MB a page, and `limit` caps the items it reads, matching or not), so a
    /// page may be empty and still have a `next`.
    async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError>;
}

/// Each key of `keys` once, in their order.
pub(crate) fn distinct(keys: &[Key]) -> impl Iterator<Item = &Key> {
    let mut seen = HashSet::with_capacity(keys.len());
    keys.iter().filter(move |k| seen.insert(*k))
}

/// Adds `counters` to `total`, name by name.
fn add_to(total: &mut BTreeMap<String, i64>, counters: BTreeMap<String, i64>) {
    for (name, n) in counters {
        *total.entry(name).or_insert(0) += n;
    }
}

/// One page of a [`Store::scan`]: its records, and where the next page starts (`None`: this
/// was the last).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Record>,
    pub next: Option<Key>,
}

/// The parts of a key (or an id) joined into one string: on the engine's hot paths, where
/// `format!` costs several times as much.
pub fn join(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// The longest partition key DynamoDB takes, in bytes of UTF-8; a longer one is refused.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// The longest sort key DynamoDB takes (the `fold` index's too), in bytes of UTF-8.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// How long the digest [`fitted`] ends a shortened tail with: `~` and 64 hex digits.
pub const FITTED_DIGEST_BYTES: usize = 1 + 64;

/// `tail` as the end of a key that has `room` bytes left for it: itself when it fits (so a
/// key that fits is never changed, and records stored under one keep it), else as much of its
/// start as leaves room for `~` and the hex SHA-256 of the whole tail, cut on a character,
/// then those. The same tail always makes the same key, two tails two keys. `room` should be at
/// least [`FITTED_DIGEST_BYTES`]: with less, the tail is the digest alone, and longer than
/// `room`.
pub fn fitted(tail: &str, room: usize) -> std::borrow::Cow<'_, str> {
    if tail.len() <= room {
        return std::borrow::Cow::Borrowed(tail);
    }
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut cut = room.saturating_sub(FITTED_DIGEST_BYTES);
    while !tail.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + FITTED_DIGEST_BYTES);
    out.push_str(&tail[..cut]);
    out.push('~');
    for b in Sha256::digest(tail.as_bytes()) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    std::borrow::Cow::Owned(out)
}

/// `n` in decimal: a number in a key or an id without a `String` of its own (`to_string`
/// allocates, and goes through the formatting machinery). One under 100 (a shard, a visit) is
/// read from a table; a larger one is written at the end of `digits`.
pub fn decimal(n: u64, digits: &mut [u8; 20]) -> &str {
    const SMALL: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    match n {
        0..=9 => &SMALL[2 * n as usize + 1..2 * n as usize + 2],
        10..=99 => &SMALL[2 * n as usize..2 * n as usize + 2],
        _ => std::str::from_utf8(decimal_bytes(n, digits)).unwrap_or_default(),
    }
}

/// `n`'s decimal digits (ASCII), written at the end of `digits`.
fn decimal_bytes(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// A scan page from up to `limit + 1` records read in key order: `limit` of them, and a `next`
/// when there was one more (the adapters that read their own order).
pub fn page_of(mut records: Vec<Record>, limit: usize) -> Page {
    let limit = limit.max(1);
    if records.len() <= limit {
        return Page {
            records,
            next: None,
        };
    }
    records.truncate(limit);
    let next = records.last().map(|r| r.key.clone());
    Page { records, next }
}

/// A stable segment number for a partition key (FNV-1a), shared by the adapters' scans.
pub fn segment_of(pk: &str, segments: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in pk.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % segments.max(1)
}

/// Checks a write's condition against what is stored.
pub fn check(current: Option<u64>, expect: Expect) -> Result<(), StoreError> {
    match (expect, current) {
        (Expect::Any, _) => Ok(()),
        (Expect::Absent, None) => Ok(()),
        (Expect::Version(v), Some(c)) if v == c => Ok(()),
        _ => Err(StoreError::Conflict),
    }
}

/// Refuses a [`Store::fold`] past [`FOLD_MAX_ITEMS`] or [`FOLD_MAX_COUNTERS`], as DynamoDB
/// refuses such a transaction: the local stores check it too, so tests and `waymark dev` catch a
/// fold that would fail on AWS.
pub fn check_fold(records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
    if records.len() + counters.len() > FOLD_MAX_ITEMS
        || counters.iter().any(|(_, c)| c.len() > FOLD_MAX_COUNTERS)
    {
        return Err(StoreError::Unavailable(format!(
            "a fold of {} records and {} counter keys is past the store's limits",
            records.len(),
            counters.len()
        )));
    }
    check_keys(records)?;
    counters.iter().try_for_each(|(key, _)| check_key(key))
}

/// The largest item DynamoDB stores, in bytes: its attribute names and values counted.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The most bytes a number attribute's value counts for in an item's size (DynamoDB counts a
/// byte per two significant digits, and one).
pub const MAX_NUMBER_BYTES: usize = 21;

/// The room a listed record's item keeps for the count of its fold's parts (`fp`, a number),
/// which [`Store::fold_part`] adds to the item when a record too large for one fold is counted
/// in parts: a record listed is taken only if its item stays within [`MAX_ITEM_BYTES`] with it
/// ([`listed_item_refused`]). Taken without that room, the item could not be folded in parts
/// (DynamoDB refuses the update that would take it past its bound), and its fold partition
/// would fail every minute on it, counting nothing behind it.
pub const FOLD_PROGRESS_BYTES: usize = "fp".len() + MAX_NUMBER_BYTES;

/// The error for a listed record whose item, of `size` bytes (names and values as the DynamoDB
/// adapter writes them, `fp` not counted), leaves less than [`FOLD_PROGRESS_BYTES`] under
/// [`MAX_ITEM_BYTES`]; `None` when it leaves that room. Both the DynamoDB adapter and the local
/// store refuse such a write up front, as a [`StoreError::Corrupt`] (it can never succeed).
pub fn listed_item_refused(pk: &str, sk: &str, size: usize) -> Option<StoreError> {
    (size + FOLD_PROGRESS_BYTES > MAX_ITEM_BYTES).then(|| {
        StoreError::Corrupt(format!(
            "DynamoDB would refuse the item {}/{} once a part of its stats fold is counted: {size} bytes and {FOLD_PROGRESS_BYTES} for its count of parts (`fp`), past its {MAX_ITEM_BYTES}",
            shown_part(pk),
            shown_part(sk),
        ))
    })
}

/// The size of an item as the DynamoDB adapter writes it (`pk`, `sk`, `v`, the body as `b`, or
/// deflated as `z`, `ttl`, `f`, and `fp` once a part of its fold is counted, or as the room a
/// listed record keeps for it: `parts_folded`),
/// names and values counted, when that is past [`MAX_ITEM_BYTES`]. A body is deflated to
/// measure it only when it is past the bound as it is (rare), so a write costs no more than a
/// few additions.
pub(crate) fn item_past_bound(
    pk: &str,
    sk: &str,
    expires: bool,
    pending: Option<&str>,
    parts_folded: bool,
    body: &[u8],
) -> Option<usize> {
    const NUMBER: usize = MAX_NUMBER_BYTES;
    let fixed = "pk".len()
        + pk.len()
        + "sk".len()
        + sk.len()
        + "v".len()
        + NUMBER
        + "b".len()
        + if expires { "ttl".len() + NUMBER } else { 0 }
        + pending.map_or(0, |p| "f".len() + p.len())
        + if parts_folded { FOLD_PROGRESS_BYTES } else { 0 };
    if fixed + body.len() <= MAX_ITEM_BYTES {
        return None;
    }
    let stored = deflated_len(body).unwrap_or(body.len()).min(body.len());
    (fixed + stored > MAX_ITEM_BYTES).then_some(fixed + stored)
}

/// The error of a write the local store refuses as DynamoDB would: `pk`/`sk` at `size` bytes.
#[cfg(feature = "local")]
pub(crate) fn refused_item(pk: &str, sk: &str, size: usize) -> StoreError {
    StoreError::Corrupt(format!(
        "DynamoDB would refuse the item {}/{}: {size} bytes, past its {MAX_ITEM_BYTES}",
        shown_part(pk),
        shown_part(sk),
    ))
}

/// [`StoreError::TooLarge`] for a write that would take the item `pk`/`sk` to `size` bytes, past
/// [`MAX_ITEM_BYTES`] (a [`Store::fold_part`] noting its count of parts).
pub(crate) fn too_large_item(pk: &str, sk: &str, size: usize) -> StoreError {
    StoreError::TooLarge(format!(
        "DynamoDB would refuse the item {}/{}: {size} bytes, past its {MAX_ITEM_BYTES}",
        shown_part(pk),
        shown_part(sk),
    ))
}

/// How long `body` is deflated as the DynamoDB adapter stores a large body (raw DEFLATE, level 6).
pub(crate) fn deflated_len(body: &[u8]) -> Option<usize> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(body).ok()?;
    z.finish().ok().map(|z| z.len())
}

/// Refuses a key DynamoDB refuses, on any call that names it (a read too): an empty part, a
/// partition key past [`MAX_PARTITION_KEY_BYTES`], a sort key past [`MAX_SORT_KEY_BYTES`]. The
/// local stores check it (two length comparisons), so tests and `waymark dev` catch a key that
/// would fail on AWS; the error is the DynamoDB adapter's for a ValidationException.
pub fn check_key(key: &Key) -> Result<(), StoreError> {
    check_partition(&key.pk)?;
    if key.sk.is_empty() || key.sk.len() > MAX_SORT_KEY_BYTES {
        return Err(refused_key(
            "sort",
            &key.sk,
            MAX_SORT_KEY_BYTES,
            Some(&key.pk),
        ));
    }
    Ok(())
}

/// [`check_key`] for each of `keys`.
/// The checks of [`Store::put_unless_sealed`]'s `seal` every store makes before it writes: a
/// key DynamoDB takes, and not `record`'s own (DynamoDB refuses a transaction that names one
/// item twice).
pub fn check_seal(record: &Record, seal: &Key) -> Result<(), StoreError> {
    check_key(seal)?;
    if *seal == record.key {
        return Err(StoreError::Corrupt(format!(
            "a write conditioned on its own record's seal: {}/{}",
            seal.pk, seal.sk
        )));
    }
    Ok(())
}

pub fn check_keys(keys: &[Key]) -> Result<(), StoreError> {
    keys.iter().try_for_each(check_key)
}

/// Refuses a partition key (or a fold partition: the `fold` index's partition key) DynamoDB
/// refuses: empty, or past [`MAX_PARTITION_KEY_BYTES`].
pub fn check_partition(pk: &str) -> Result<(), StoreError> {
    if pk.is_empty() || pk.len() > MAX_PARTITION_KEY_BYTES {
        return Err(refused_key("partition", pk, MAX_PARTITION_KEY_BYTES, None));
    }
    Ok(())
}

/// [`check_key`] for a record written, and its fold partition.
pub fn check_record(record: &Record) -> Result<(), StoreError> {
    check_key(&record.key)?;
    record.pending.as_deref().map_or(Ok(()), check_partition)
}

/// The error for a key part DynamoDB refuses, naming it (its start, when it is long) and, for a
/// sort key, its partition.
#[cold]
fn refused_key(which: &str, part: &str, max: usize, pk: Option<&str>) -> StoreError {
    let why = if part.is_empty() {
        "empty".to_string()
    } else {
        format!("{} bytes, past DynamoDB's {max}", part.len())
    };
    let of = pk.map(|pk| format!(" of partition {}", shown_part(pk)));
    StoreError::Corrupt(format!(
        "DynamoDB would refuse the {which} key {}{}: {why}",
        shown_part(part),
        of.unwrap_or_default()
    ))
}

/// A key part as an error message shows it: in backticks, its first 80 bytes and `…` when it
/// is longer (a refused one can be kilobytes).
pub(crate) fn shown_part(part: &str) -> String {
    const SHOWN: usize = 80;
    let mut cut = part.len().min(SHOWN);
    while !part.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut < part.len() {
        format!("`{}…`", &part[..cut])
    } else {
        format!("`{part}`")
    }
}

/// A fast hasher with a fixed seed, so that the in-memory store behaves the same in every run.
type Fixed = foldhash::fast::FixedState;

#[derive(Default)]
struct Tables {
    /// Partition key -> sort key -> record: a hash lookup for the partition, then a short
    /// ordered map for its sort keys (queries read one partition in sort-key order).
    records: HashMap<Part, BTreeMap<Part, Record>, Fixed>,
    /// The partition keys of `records`, in order (dumps, scans, [`MemoryStore::first_partitions`]).
    order: BTreeSet<Part>,
    counters: HashMap<Key, BTreeMap<String, i64>, Fixed>,
    /// Fold partition -> keys of the records listed there (in no particular order: a fold
    /// counts them all, whichever come first).
    pending: HashMap<Part, HashSet<Key, Fixed>, Fixed>,
    /// When each key was first written, counted in writes, if the store keeps it
    /// ([`MemoryStore::keeping_write_order`]).
    first_written: Option<HashMap<Key, u64, Fixed>>,
}

impl Tables {
    fn get(&self, key: &Key) -> Option<&Record> {
        self.records.get(&key.pk)?.get(&key.sk)
    }

    fn version(&self, key: &Key) -> Option<u64> {
        self.get(key).map(|r| r.version)
    }

    fn unlist(&mut self, part: &str, key: &Key) {
        if let Some(keys) = self.pending.get_mut(part) {
            keys.remove(key);
            if keys.is_empty() {
                self.pending.remove(part);
            }
        }
    }

    /// Writes `record` if `expect` holds for what is stored under its key: one lookup of the
    /// partition and one of the sort key, whether the record is new or replaces another.
    fn put(&mut self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        check_record(record)?;
        let key = &record.key;
        // A put replaces the whole item, the parts of its fold counted included.
        let mut written = record.clone();
        written.parts_counted = 0;
        let replaced = match self.records.get_mut(&key.pk) {
            Some(partition) => match partition.entry(key.sk.clone()) {
                btree_map::Entry::Occupied(mut stored) => {
                    check(Some(stored.get().version), expect)?;
                    Some(std::mem::replace(stored.get_mut(), written))
                }
                btree_map::Entry::Vacant(slot) => {
                    check(None, expect)?;
                    slot.insert(written);
                    None
                }
            },
            None => {
                check(None, expect)?;
                self.order.insert(key.pk.clone());
                self.records
                    .insert(key.pk.clone(), BTreeMap::from([(key.sk.clone(), written)]));
                None
            }
        };
        if let Some(first) = &mut self.first_written {
            let next = first.len() as u64;
            first.entry(key.clone()).or_insert(next);
        }
        let listed = record.pending.as_ref();
        if let Some(part) = listed {
            if let Some(keys) = self.pending.get_mut(part) {
                keys.insert(key.clone());
            } else {
                let mut keys = HashSet::with_hasher(Fixed::default());
                keys.insert(key.clone());
                self.pending.insert(part.clone(), keys);
            }
        }
        if let Some(part) = replaced
            .and_then(|old| old.pending)
            .filter(|p| Some(p) != listed)
        {
            self.unlist(&part, key);
        }
        Ok(())
    }

    /// [`Store::put_unless_sealed`]: what `expect` says first, then the seal.
    fn put_unless_sealed(
        &mut self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        check_seal(record, seal)?;
        check_record(record)?;
        check(self.version(&record.key), expect)?;
        if self.get(seal).is_some_and(|r| r.sealed) {
            return Err(StoreError::Sealed);
        }
        self.put(record, expect)
    }

    fn remove(&mut self, key: &Key) {
        let Some(partition) = self.records.get_mut(&key.pk) else {
            return;
        };
        let old = partition.remove(&key.sk);
        if partition.is_empty() {
            self.records.remove(&key.pk);
            self.order.remove(&key.pk);
        }
        if let Some(part) = old.and_then(|o| o.pending) {
            self.unlist(&part, key);
        }
    }

    /// Every record, in key order.
    fn all(&self) -> Vec<&Record> {
        self.order
            .iter()
            .filter_map(|pk| self.records.get(pk))
            .flat_map(|p| p.values())
            .collect()
    }
}

/// The in-memory store: for tests and simulation. It refuses the keys DynamoDB refuses
/// ([`check_key`]), but not an item past [`MAX_ITEM_BYTES`]: it keeps bodies as values, and
/// measuring one would serialize every write; only a [`Store::fold_part`] that notes a count of
/// parts on an item is measured ([`StoreError::TooLarge`]), as DynamoDB and the redb store
/// refuse one past the bound.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Tables>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that also notes the order in which keys are first written
    /// ([`MemoryStore::first_written`]): the simulation lists the facts of one instant in the
    /// order they happened.
    pub fn keeping_write_order() -> Self {
        let store = Self::default();
        store.lock().first_written = Some(HashMap::default());
        store
    }

    /// Where `key` came in the order of first writes, if this store keeps it and `key` was
    /// written.
    pub fn first_written(&self, key: &Key) -> Option<u64> {
        self.lock().first_written.as_ref()?.get(key).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The records of the first `limit` partitions, in key order, whose key starts with
    /// `prefix` (the simulation finds its next timer with it, without reading every record).
    pub fn first_partitions(&self, prefix: &str, limit: usize) -> Vec<Record> {
        let t = self.lock();
        t.order
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|pk| pk.starts_with(prefix))
            .take(limit)
            .filter_map(|pk| t.records.get(pk))
            .flat_map(|p| p.values().cloned())
            .collect()
    }

    /// Every record, for tests and invariant checks.
    pub fn dump(&self) -> Vec<Record> {
        self.lock().all().into_iter().cloned().collect()
    }
}

/// The in-memory store's operations, synchronous: [`Handle`] calls them directly (no boxed
/// future per call), and the [`Store`] impl wraps them.
impl MemoryStore {
    fn get_now(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        check_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    fn get_many_now(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        check_keys(keys)?;
        let t = self.lock();
        Ok(keys.iter().filter_map(|k| t.get(k).cloned()).collect())
    }

    fn delete_now(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        check_key(key)?;
        let mut t = self.lock();
        check(t.version(key), expect)?;
        t.remove(key);
        Ok(())
    }

    fn partitions_between_now(&self, from: &str, to: &str) -> Vec<Part> {
        if from >= to {
            return Vec::new();
        }
        let t = self.lock();
        t.order
            .range::<str, _>((
                std::ops::Bound::Included(from),
                std::ops::Bound::Excluded(to),
            ))
            .filter(|pk| t.records.get(*pk).is_some_and(|p| !p.is_empty()))
            .cloned()
            .collect()
    }

    fn query_now(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        check_partition(pk)?;
        let t = self.lock();
        let Some(partition) = t.records.get(pk) else {
            return Ok(Vec::new());
        };
        Ok(partition
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(sk, _)| sk.starts_with(prefix))
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn pending_now(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        check_partition(part)?;
        let t = self.lock();
        let Some(keys) = t.pending.get(part) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .iter()
            .filter_map(|k| t.get(k).cloned())
            .take(limit)
            .collect())
    }

    fn fold_now(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
        check_fold(records, counters)?;
        let mut t = self.lock();
        if records
            .iter()
            .any(|k| t.get(k).is_none_or(|r| r.pending.is_none()))
        {
            return Err(StoreError::Conflict);
        }
        for k in records {
            let Some(r) = t.records.get_mut(&k.pk).and_then(|p| p.get_mut(&k.sk)) else {
                continue;
            };
            r.parts_counted = 0;
            let Some(part) = r.pending.take() else {
                continue;
            };
            t.unlist(&part, k);
        }
        for (key, deltas) in counters {
            let c = t.counters.entry(key.clone()).or_default();
            for (k, d) in deltas {
                *c.entry(k.clone()).or_insert(0) += d;
            }
        }
        Ok(())
    }

    fn fold_part_now(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        check_fold(std::slice::from_ref(record), counters)?;
        let mut t = self.lock();
        let Some(r) = t
            .records
            .get_mut(&record.pk)
            .and_then(|p| p.get_mut(&record.sk))
            .filter(|r| r.pending.is_some() && r.parts_counted == part)
        else {
            return Err(StoreError::Conflict);
        };
        if last {
            r.parts_counted = 0;
            if let Some(from) = r.pending.take() {
                t.unlist(&from, record);
            }
        } else {
            // The count of parts is an attribute of the record's item (`fp`): refused as
            // DynamoDB refuses it, when the item would pass its bound with it (a record an
            // earlier build listed without keeping room for it). Measured here alone: a rare
            // write, where a body serialized costs nothing that matters.
            let body = r.body.json()?;
            let pending = r.pending.as_deref();
            if let Some(size) = item_past_bound(
                &record.pk,
                &record.sk,
                r.expires.is_some(),
                pending,
                true,
                &body,
            ) {
                return Err(too_large_item(&record.pk, &record.sk, size));
            }
            r.parts_counted = part + 1;
        }
        for (key, deltas) in counters {
            let c = t.counters.entry(key.clone()).or_default();
            for (k, d) in deltas {
                *c.entry(k.clone()).or_insert(0) += d;
            }
        }
        Ok(())
    }

    fn counters_now(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        check_key(key)?;
        Ok(self.lock().counters.get(key).cloned().unwrap_or_default())
    }

    fn counters_sum_now(&self, keys: &[Key]) -> Result<BTreeMap<String, i64>, StoreError> {
        check_keys(keys)?;
        let t = self.lock();
        let mut total = BTreeMap::new();
        for key in distinct(keys) {
            for (name, n) in t.counters.get(key).into_iter().flatten() {
                *total.entry(name.clone()).or_insert(0) += n;
            }
        }
        Ok(total)
    }

    fn scan_now(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Page {
        use std::ops::Bound;
        let t = self.lock();
        let from = match start {
            Some(k) => Bound::Excluded(k.pk.as_str()),
            None => Bound::Unbounded,
        };
        let records: Vec<Record> = t
            .order
            .range::<str, _>((from, Bound::Unbounded))
            .filter(|pk| segment_of(pk, segments) == segment)
            .filter_map(|pk| t.records.get(pk)?.get(sk).cloned())
            .take(limit.max(1) + 1)
            .collect();
        page_of(records, limit)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        self.get_now(key)
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        self.get_many_now(keys)
    }

    async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        self.lock().put(record, expect)
    }

    async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        self.lock().put_unless_sealed(record, expect, seal)
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        self.delete_now(key, expect)
    }

    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        self.query_now(pk, prefix)
    }

    async fn partitions_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        Ok(Some(self.partitions_between_now(from, to)))
    }

    async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.pending_now(part, limit)
    }

    async fn fold(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
        self.fold_now(records, counters)
    }

    async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        self.fold_part_now(record, part, last, counters)
    }

    async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        self.counters_now(key)
    }

    async fn counters_sum(&self, keys: &[Key]) -> Result<BTreeMap<String, i64>, StoreError> {
        self.counters_sum_now(keys)
    }

    async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        Ok(self.scan_now(sk, segment, segments, start, limit))
    }
}

/// The store as the runtime holds it: the in-memory store is called directly, with no boxed
/// future per call (every call through `Arc<dyn Store>` boxes one: the simulation and the
/// benchmark make about 30 a user); any other store through its trait object. It has the
/// `Store` methods the runtime calls, and only those.
#[derive(Clone)]
pub struct Handle {
    store: Arc<dyn Store>,
    memory: Option<MemoryStore>,
}

impl Handle {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let any: Arc<dyn std::any::Any + Send + Sync> = store.clone();
        let memory = any
            .downcast::<MemoryStore>()
            .ok()
            .map(|m| MemoryStore::clone(&m));
        Handle { store, memory }
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        match &self.memory {
            Some(m) => m.get_now(key),
            None => self.store.get(key).await,
        }
    }

    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        match &self.memory {
            Some(m) => m.get_many_now(keys),
            None => self.store.get_many(keys).await,
        }
    }

    pub async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => m.lock().put(record, expect),
            None => self.store.put(record, expect).await,
        }
    }

    pub async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => m.lock().put_unless_sealed(record, expect, seal),
            None => self.store.put_unless_sealed(record, expect, seal).await,
        }
    }

    pub async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => m.delete_now(key, expect),
            None => self.store.delete(key, expect).await,
        }
    }

    pub async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        match &self.memory {
            Some(m) => m.query_now(pk, prefix),
            None => self.store.query(pk, prefix).await,
        }
    }

    pub async fn query_first(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        match &self.memory {
            Some(m) => {
                let mut records = m.query_now(pk, prefix)?;
                records.truncate(limit);
                Ok(records)
            }
            None => self.store.query_first(pk, prefix, limit).await,
        }
    }

    pub async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => {
                check_keys(keys)?;
                let mut t = m.lock();
                for key in keys {
                    t.remove(key);
                }
                Ok(())
            }
            None => self.store.delete_many(keys).await,
        }
    }

    pub async fn partitions_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        match &self.memory {
            Some(m) => Ok(Some(m.partitions_between_now(from, to))),
            None => self.store.partitions_between(from, to).await,
        }
    }

    pub async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        match &self.memory {
            Some(m) => m.pending_now(part, limit),
            None => self.store.pending(part, limit).await,
        }
    }

    pub async fn fold(
        &self,
        records: &[Key],
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => m.fold_now(records, counters),
            None => self.store.fold(records, counters).await,
        }
    }

    pub async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        match &self.memory {
            Some(m) => m.fold_part_now(record, part, last, counters),
            None => self.store.fold_part(record, part, last, counters).await,
        }
    }

    pub async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        match &self.memory {
            Some(m) => m.counters_now(key),
            None => self.store.counters(key).await,
        }
    }

    pub async fn counters_sum(&self, keys: &[Key]) -> Result<BTreeMap<String, i64>, StoreError> {
        match &self.memory {
            Some(m) => m.counters_sum_now(keys),
            None => self.store.counters_sum(keys).await,
        }
    }

    pub async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        match &self.memory {
            Some(m) => Ok(m.scan_now(sk, segment, segments, start, limit)),
            None => self.store.scan(sk, segment, segments, start, limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A number written by [`decimal`] reads as `to_string` writes it.
    #[test]
    fn decimal_writes_what_to_string_does() {
        let large = [1_234_567, u64::from(u32::MAX), u64::MAX];
        for n in (0..=1_000).chain(large) {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string());
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Doc {
        name: String,
        n: u32,
    }

    /// The same fields as `Doc`, another type: it can only be read through JSON.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Head {
        name: String,
    }

    fn doc() -> Doc {
        Doc {
            name: "ann".into(),
            n: 3,
        }
    }

    #[test]
    fn key_parts_join_order_and_serialize_as_plain_strings() {
        let long = "x".repeat(300);
        for parts in [&["U#", "ann"][..], &["T#", &long, "#", "é"][..], &[][..]] {
            assert_eq!(Part::join(parts).as_str(), join(parts));
        }
        let (a, b) = (
            Key::new("U#ann", "E#j"),
            Key::new(Part::join(&["U#", "bob"]), "A"),
        );
        assert!(a < b, "keys order as their strings do");
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            r#"{"pk":"U#ann","sk":"E#j"}"#
        );
        let back: Key = serde_json::from_str(r#"{"pk":"U#ann","sk":"E#j"}"#).expect("key");
        assert_eq!(back, a);
        // A clone shares the string.
        let c = a.clone();
        assert!(std::ptr::eq(a.pk.as_str(), c.pk.as_str()));
    }

    #[test]
    fn a_shared_record_reads_back_as_the_same_value() {
        let body = Arc::new(doc());
        let r = Record::shared(Key::new("U#ann", "P"), 1, body.clone());
        let back = r.parse_shared::<Doc>().expect("shared");
        assert!(Arc::ptr_eq(&back, &body), "no copy");
        // Another type goes through JSON; so does a JSON body.
        assert_eq!(
            r.parse_shared::<serde_json::Value>()
                .expect("json")
                .as_ref(),
            &serde_json::json!({"name": "ann", "n": 3})
        );
        let json = Record {
            body: Body::Json(serde_json::to_vec(&doc()).expect("json").into()),
            ..r
        };
        assert_eq!(json.parse_shared::<Doc>().expect("parsed").as_ref(), &doc());
    }

    #[test]
    fn a_typed_record_reads_back_without_json() {
        let r = Record::new(Key::new("U#ann", "P"), 1, &doc()).expect("record");
        assert_eq!(r.body.typed::<Doc>(), Some(&doc()));
        assert_eq!(r.parse::<Doc>(), Ok(doc()));
        assert_eq!(r.body.typed::<Head>(), None);
    }

    #[test]
    fn a_typed_record_read_as_another_type_goes_through_json() {
        let r = Record::of(Key::new("U#ann", "P"), 1, doc());
        assert_eq!(r.parse::<Head>(), Ok(Head { name: "ann".into() }));
        assert_eq!(
            r.parse::<serde_json::Value>(),
            Ok(serde_json::json!({"name": "ann", "n": 3}))
        );
        assert!(matches!(r.parse::<Vec<u8>>(), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn typed_and_json_bodies_say_the_same() {
        let typed = Record::of(Key::new("U#ann", "P"), 1, doc());
        let json = typed.body.json().expect("json");
        assert_eq!(&json[..], br#"{"name":"ann","n":3}"#);
        // As a durable store reads it back.
        let read_back = Record {
            body: json.into(),
            ..typed.clone()
        };
        assert_eq!(read_back.body.typed::<Doc>(), None);
        assert_eq!(read_back.parse::<Doc>(), Ok(doc()));
        // Equality and debug output compare what the bodies say, not how they are held.
        assert_eq!(typed, read_back);
        assert_eq!(format!("{:?}", typed.body), r#"{"name":"ann","n":3}"#);
        let other = Record::of(Key::new("U#ann", "P"), 1, Doc { n: 4, ..doc() });
        assert_ne!(typed, other);
    }

    #[tokio::test]
    async fn the_memory_store_hands_back_the_typed_body() {
        let store = MemoryStore::new();
        let key = Key::new("U#ann", "P");
        store
            .put(&Record::of(key.clone(), 1, doc()), Expect::Absent)
            .await
            .expect("put");
        let got = store.get(&key).await.expect("get").expect("stored");
        assert_eq!(got.body.typed::<Doc>(), Some(&doc()));
    }

    /// A tail that fits is kept as it is; a longer one is shortened to exactly its room (less
    /// where a character would be cut), keeping its start, and two tails that differ past the
    /// cut make two keys.
    #[test]
    fn a_fitted_tail_is_itself_when_it_fits_and_its_start_and_digest_when_not() {
        assert!(matches!(
            fitted("m-1:moved", 100),
            std::borrow::Cow::Borrowed("m-1:moved")
        ));
        let fits = "x".repeat(300);
        assert_eq!(fitted(&fits, 300), fits);
        let long = format!("{}:moved:{}", "w".repeat(400), "e".repeat(400));
        let got = fitted(&long, 300);
        assert_eq!(got.len(), 300);
        assert!(
            got.starts_with(&"w".repeat(300 - FITTED_DIGEST_BYTES)),
            "{got}"
        );
        assert_eq!(got.as_bytes()[300 - FITTED_DIGEST_BYTES], b'~');
        assert_eq!(fitted(&long, 300), got, "stable");
        assert_ne!(fitted(&format!("{long}f"), 300), got);
        // Cut on a character: `é` is two bytes.
        let accented = "é".repeat(400);
        let got = fitted(&accented, 300);
        assert!(got.len() <= 300 && got.len() >= 299, "{}", got.len());
        assert!(got.starts_with('é'));
    }

    proptest::proptest! {
        #[test]
        fn a_fitted_tail_never_passes_its_room(tail in "\\PC{0,700}", room in FITTED_DIGEST_BYTES..600usize) {
            let got = fitted(&tail, room);
            proptest::prop_assert!(got.len() <= room);
            if tail.len() <= room {
                proptest::prop_assert_eq!(&*got, tail.as_str());
            }
        }
    }
}
