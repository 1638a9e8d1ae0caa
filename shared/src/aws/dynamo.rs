//! The store port on one DynamoDB table (`pk`, `sk` strings): a record is `v` (version, N),
//! `b` (the JSON body, B), `ttl` (expiry, N), `f` (its fold partition, S, while it waits to
//! be counted: the sparse index `fold` on `f`, `sk` lists those) and `s` (BOOL, on a sealed
//! record only); counters are top-level numbers `c_<name>`, changed only by folds
//! (TransactWriteItems).
//! Reads are strongly consistent, because the runtime reads its own writes. Knows nothing of
//! journeys; the key layout is the runtime's (see infra/README.md).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, DeleteRequest, KeysAndAttributes, Put, TransactWriteItem,
    Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use crate::store::{
    listed_item_refused, Counts, Expect, Key, Page, Part, Record, Store, StoreError,
    MAX_NUMBER_BYTES,
};

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_MAX: usize = 100;
/// The most requests one BatchWriteItem takes.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of BatchGetItem for keys DynamoDB left unprocessed before giving up.
const UNPROCESSED_ROUNDS: u32 = 8;

const PK: &str = "pk";
const SK: &str = "sk";
const VERSION: &str = "v";
const BODY: &str = "b";
/// A body stored deflated (raw DEFLATE), in place of [`BODY`]: see [`body_attribute`].
const DEFLATED: &str = "z";
/// Bodies from this size up are deflated when that makes them smaller: DynamoDB bills a write
/// per KB of item, and a rendered email in an enrollment's outbox is tens of KB of HTML that
/// deflates to a fifth or less. Below it an item is one write unit whatever is done.
const DEFLATE_FROM: usize = 1024;
/// A deflated body never inflates past this (DynamoDB's items stop at 400 KB; HTML deflates
/// by ten at most, JSON of repeated keys by some more).
const INFLATED_MAX: usize = 16 << 20;
const TTL: &str = "ttl";
const FOLD: &str = "f";
/// How many parts of a listed record's fold are counted ([`Store::fold_part`]); absent: none.
const PARTS_FOLDED: &str = "fp";
/// On a sealed record ([`Record::sealed`]), `true`; absent on any other.
const SEALED: &str = "s";
/// The sparse global secondary index on (`f`, `sk`); template.yaml declares it.
pub const FOLD_INDEX: &str = "fold";
const COUNTER_PREFIX: &str = "c_";

type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Maps an SDK error: a failed condition is a conflict, a request DynamoDB calls invalid (an
/// item over 400 KB, say) can never succeed, everything else may pass later.
fn store_error<E: ProvideErrorMetadata>(op: &str, e: SdkError<E, HttpResponse>) -> StoreError {
    let code = super::error_code(&e);
    if code == "ConditionalCheckFailedException" {
        return StoreError::Conflict;
    }
    if !super::is_transient(&e) && code == "ValidationException" {
        return StoreError::Corrupt(format!("DynamoDB {op} refused the request: {code}"));
    }
    StoreError::Unavailable(format!("DynamoDB {op}: {code}"))
}

/// A transaction's cancellation reason for an item past DynamoDB's 400 KB (`ValidationError`,
/// "Item size to update has exceeded the maximum allowed size"): its message.
fn item_too_large(reason: &aws_sdk_dynamodb::types::CancellationReason) -> Option<String> {
    let message = reason.message().unwrap_or_default();
    (reason.code() == Some("ValidationError") && message.to_ascii_lowercase().contains("size"))
        .then(|| message.to_string())
}

/// The attribute a record's JSON body is stored under, and what is stored: [`DEFLATED`] when
/// the body is [`DEFLATE_FROM`] bytes or more and deflating shrinks it, else [`BODY`] as it is.
fn body_attribute(json: bytes::Bytes) -> (&'static str, Vec<u8>) {
    if json.len() >= DEFLATE_FROM {
        let z = miniz_oxide::deflate::compress_to_vec(&json, 6);
        if z.len() < json.len() {
            return (DEFLATED, z);
        }
    }
    (BODY, Vec::from(json))
}

/// An item's size as DynamoDB counts it (attribute names and values), at most: a number is
/// counted as the most a number takes ([`MAX_NUMBER_BYTES`]). For the attributes a record is
/// written with (strings, binary, numbers).
fn item_bytes_at_most(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    AttributeValue::N(_) => MAX_NUMBER_BYTES,
                    AttributeValue::Bool(_) => 1,
                    _ => 0,
                }
        })
        .sum()
}

/// The item a record is written as: its key, version, body, expiry, fold partition and seal.
/// A listed record whose item leaves no room for the count of its fold's parts is refused
/// ([`listed_item_refused`]).
fn item_of(record: &Record) -> Result<Item, StoreError> {
    let mut item = key_item(&record.key);
    item.insert(
        VERSION.to_string(),
        AttributeValue::N(record.version.to_string()),
    );
    let (name, body) = body_attribute(record.body.json()?);
    item.insert(name.to_string(), AttributeValue::B(Blob::new(body)));
    if let Some(t) = record.expires {
        item.insert(TTL.to_string(), AttributeValue::N(t.to_string()));
    }
    if record.sealed {
        item.insert(SEALED.to_string(), AttributeValue::Bool(true));
    }
    if let Some(part) = &record.pending {
        item.insert(FOLD.to_string(), AttributeValue::S(part.to_string()));
        // Listed: its fold may count it in parts, noting `fp` on it, which DynamoDB would
        // refuse past 400 KB and leave the fold partition failing on it every minute.
        let size = item_bytes_at_most(&item);
        if let Some(refused) = listed_item_refused(&record.key.pk, &record.key.sk, size) {
            return Err(refused);
        }
    }
    Ok(item)
}

/// What the cancellation `reasons` of a [`Store::put_unless_sealed`] transaction (its Put's,
/// then its ConditionCheck's) say: `Conflict` when the Put's condition failed (whatever the
/// seal), `Sealed` when only the check's did; `None` for any other cancellation (a transaction
/// conflict, throttling: it may pass later).
fn sealed_outcome(reasons: &[aws_sdk_dynamodb::types::CancellationReason]) -> Option<StoreError> {
    let failed = |i: usize| {
        reasons
            .get(i)
            .is_some_and(|r| r.code() == Some("ConditionalCheckFailed"))
    };
    if failed(0) {
        Some(StoreError::Conflict)
    } else if failed(1) {
        Some(StoreError::Sealed)
    } else {
        None
    }
}

fn key_item(key: &Key) -> Item {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.to_string())),
        (SK.to_string(), AttributeValue::S(key.sk.to_string())),
    ])
}

fn string(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A record from an item; `None` for an item that holds no record (counters only).
fn record(item: &Item) -> Result<Option<Record>, StoreError> {
    let (Some(pk), Some(sk)) = (string(item, PK), string(item, SK)) else {
        return Err(StoreError::Corrupt("an item without pk or sk".into()));
    };
    let corrupt = |what: &str| StoreError::Corrupt(format!("item {pk}/{sk}: {what}"));
    let body: bytes::Bytes = if let Some(body) = item.get(BODY) {
        body.as_b()
            .map_err(|_| corrupt("the body is not binary"))?
            .as_ref()
            .to_vec()
            .into()
    } else if let Some(z) = item.get(DEFLATED) {
        let z = z.as_b().map_err(|_| corrupt("the body is not binary"))?;
        miniz_oxide::inflate::decompress_to_vec_with_limit(z.as_ref(), INFLATED_MAX)
            .map_err(|e| corrupt(&format!("the deflated body does not inflate: {e}")))?
            .into()
    } else {
        return Ok(None);
    };
    let version = item
        .get(VERSION)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| corrupt("no version number"))?;
    let expires = match item.get(TTL) {
        None => None,
        Some(v) => Some(
            v.as_n()
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| corrupt("the ttl is not a number"))?,
        ),
    };
    Ok(Some(Record {
        key: Key::new(pk, sk),
        version,
        body: body.into(),
        expires,
        pending: string(item, FOLD).map(Part::from),
        // (One unreadable is read as none: the fold then passes the parts counted, each
        // refused, as it did before it read the count.)
        parts_counted: item
            .get(PARTS_FOLDED)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0),
        sealed: item
            .get(SEALED)
            .is_some_and(|v| v.as_bool().is_ok_and(|b| *b)),
    }))
}

/// The attribute that keeps counter `name`: `c_` and the name with every byte outside
/// `[A-Za-z0-9]` written `_xx` (hex), so `step.wait_30m.entered` is
/// `c_step_2ewait_5f30m_2eentered`. Reversible, and readable in the console.
pub fn counter_attribute(name: &str) -> String {
    let mut out = String::with_capacity(COUNTER_PREFIX.len() + name.len() * 2);
    out.push_str(COUNTER_PREFIX);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The counter name an attribute keeps, if it is a counter attribute.
pub fn counter_name(attribute: &str) -> Option<String> {
    let rest = attribute.strip_prefix(COUNTER_PREFIX)?.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'_' {
            let hex = std::str::from_utf8(rest.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(rest[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Condition expression, names and values for a write's expectation.
struct Condition {
    expression: Option<&'static str>,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

fn condition(expect: Expect) -> Condition {
    match expect {
        Expect::Any => Condition {
            expression: None,
            names: None,
            values: None,
        },
        Expect::Absent => Condition {
            expression: Some("attribute_not_exists(#pk)"),
            names: Some(HashMap::from([("#pk".to_string(), PK.to_string())])),
            values: None,
        },
        Expect::Version(v) => Condition {
            expression: Some("#v = :v"),
            names: Some(HashMap::from([("#v".to_string(), VERSION.to_string())])),
            values: Some(HashMap::from([(
                ":v".to_string(),
                AttributeValue::N(v.to_string()),
            )])),
        },
    }
}

impl DynamoStore {
    /// The item at `key` (strongly consistent), if there is one.
    /// Adds to `items` the updates that add `counters` (a counter key's zeros left out, and a
    /// key of only zeros).
    fn add_counts(
        &self,
        items: &mut Vec<TransactWriteItem>,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        for (key, deltas) in counters {
            let deltas: Vec<(&String, &i64)> = deltas.iter().filter(|(_, d)| **d != 0).collect();
            if deltas.is_empty() {
                continue;
            }
            let mut names = HashMap::with_capacity(deltas.len());
            let mut values = HashMap::with_capacity(deltas.len());
            let mut parts = Vec::with_capacity(deltas.len());
            for (i, (name, delta)) in deltas.iter().enumerate() {
                names.insert(format!("#c{i}"), counter_attribute(name));
                values.insert(format!(":d{i}"), AttributeValue::N(delta.to_string()));
                parts.push(format!("#c{i} :d{i}"));
            }
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key_item(key)))
                .update_expression(format!("ADD {}", parts.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(())
    }

    /// Writes a fold's `items` in one transaction: `Conflict` when a record's condition fails
    /// (no longer listed, or another part of its fold counted), and then nothing changed.
    async fn transact_fold(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| {
                // A record no longer listed fails its condition: the whole fold is cancelled.
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    if c.cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        return StoreError::Conflict;
                    }
                    // An update that would take its item past 400 KB (a fold part's `fp` on a
                    // record an earlier build listed without room for it): never succeeds.
                    if let Some(why) = c.cancellation_reasons().iter().find_map(item_too_large) {
                        return StoreError::TooLarge(format!(
                            "DynamoDB TransactWriteItems refused the update: {why}"
                        ));
                    }
                }
                store_error("TransactWriteItems", e)
            })?;
        Ok(())
    }

    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_item(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    /// The items at `keys` (each distinct key once; missing ones left out), by BatchGetItem:
    /// 100 keys a request, the keys DynamoDB leaves unprocessed asked again with backoff.
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, StoreError> {
        // BatchGetItem refuses a request that names a key twice.
        let unique: Vec<&Key> = crate::store::distinct(keys).collect();
        let mut out = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.iter().map(|k| key_item(k)).collect()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            let mut round = 0;
            while let Some(request) = pending.take() {
                if round > 0 {
                    if round >= UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable(
                            "DynamoDB BatchGetItem: keys still unprocessed after retries".into(),
                        ));
                    }
                    tokio::time::sleep(backoff(round)).await;
                }
                round += 1;
                let mut resp = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                if let Some(items) = resp.responses.as_mut().and_then(|r| r.remove(&self.table)) {
                    out.extend(items);
                }
                pending = resp
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(out)
    }
}

/// Adds the counters an item keeps (its counter attributes) to `total`.
fn add_counters(total: &mut BTreeMap<String, i64>, item: &Item) -> Result<(), StoreError> {
    for (attribute, value) in item {
        let Some(name) = counter_name(attribute) else {
            continue;
        };
        let n = value
            .as_n()
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "counter {name} at {}/{} is not a whole number",
                    string(item, PK).unwrap_or_default(),
                    string(item, SK).unwrap_or_default()
                ))
            })?;
        *total.entry(name).or_insert(0) += n;
    }
    Ok(())
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        match self.get_item(key).await? {
            Some(item) => record(&item),
            None => Ok(None),
        }
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for item in self.batch_get(keys).await? {
            if let Some(r) = record(&item)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        let c = condition(expect);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_of(record)?))
            .set_condition_expression(c.expression.map(str::to_string))
            .set_expression_attribute_names(c.names)
            .set_expression_attribute_values(c.values)
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        let c = condition(expect);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item_of(record)?))
            .set_condition_expression(c.expression.map(str::to_string))
            .set_expression_attribute_names(c.names)
            .set_expression_attribute_values(c.values)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // No item at `seal` holds no `s`: the check passes.
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_item(seal)))
            .condition_expression("attribute_not_exists(#s)")
            .expression_attribute_names("#s", SEALED)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .send()
            .await
            .map_err(|e| {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    if let Some(refused) = sealed_outcome(c.cancellation_reasons()) {
                        return refused;
                    }
                }
                store_error("TransactWriteItems", e)
            })?;
        Ok(())
    }

    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        let c = condition(expect);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_item(key)))
            .set_condition_expression(c.expression.map(str::to_string))
            .set_expression_attribute_names(c.names)
            .set_expression_attribute_values(c.values)
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }

    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        self.query_first(pk, prefix, usize::MAX).await
    }

    async fn query_first(
        &self,
        pk: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(pk.to_string()))]);
        let expression = if prefix.is_empty() {
            "#pk = :pk"
        } else {
            values.insert(":p".to_string(), AttributeValue::S(prefix.to_string()));
            "#pk = :pk AND begins_with(#sk, :p)"
        };
        let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
        if !prefix.is_empty() {
            names.insert("#sk".to_string(), SK.to_string());
        }
        pages(limit, |start, left| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(expression)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                // Every page, for `query`; no more than asked, for `query_first`.
                .set_limit((limit != usize::MAX).then(|| i32::try_from(left).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start);
            async move {
                let resp = request.send().await.map_err(|e| store_error("Query", e))?;
                Ok((resp.items.unwrap_or_default(), resp.last_evaluated_key))
            }
        })
        .await
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<(), StoreError> {
        // BatchWriteItem refuses a request that names a key twice.
        let unique: Vec<&Key> = crate::store::distinct(keys).collect();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            let mut requests = Vec::with_capacity(chunk.len());
            for k in chunk {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key_item(k)))
                    .build()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
            let mut pending = Some(requests);
            let mut round = 0;
            while let Some(request) = pending.take() {
                if round > 0 {
                    if round >= UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable(
                            "DynamoDB BatchWriteItem: deletes still unprocessed after retries"
                                .into(),
                        ));
                    }
                    tokio::time::sleep(backoff(round)).await;
                }
                round += 1;
                let resp = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = resp
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .filter(|r| !r.is_empty())
                    .cloned();
            }
        }
        Ok(())
    }

    async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        pages(limit, |start, left| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(FOLD_INDEX)
                .key_condition_expression("#f = :f")
                .expression_attribute_names("#f", FOLD)
                .expression_attribute_values(":f", AttributeValue::S(part.to_string()))
                .limit(i32::try_from(left).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start);
            async move {
                let resp = request.send().await.map_err(|e| store_error("Query", e))?;
                Ok((resp.items.unwrap_or_default(), resp.last_evaluated_key))
            }
        })
        .await
    }

    async fn fold(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(records.len() + counters.len());
        for key in records {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key_item(key)))
                .update_expression("REMOVE #f")
                .condition_expression("attribute_exists(#f)")
                .expression_attribute_names("#f", FOLD)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        self.add_counts(&mut items, counters)?;
        self.transact_fold(items).await
    }

    async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(1 + counters.len());
        let done = if part == 0 {
            "attribute_not_exists(#p)"
        } else {
            "#p = :p"
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_item(record)))
            .condition_expression(format!("attribute_exists(#f) AND {done}"))
            .expression_attribute_names("#f", FOLD)
            .expression_attribute_names("#p", PARTS_FOLDED);
        if part > 0 {
            update = update.expression_attribute_values(":p", AttributeValue::N(part.to_string()));
        }
        update = if last {
            update.update_expression("REMOVE #f, #p")
        } else {
            update
                .update_expression("SET #p = :n")
                .expression_attribute_values(":n", AttributeValue::N((part + 1).to_string()))
        };
        let update = update
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        items.push(TransactWriteItem::builder().update(update).build());
        self.add_counts(&mut items, counters)?;
        self.transact_fold(items).await
    }

    async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut counters = BTreeMap::new();
        if let Some(item) = self.get_item(key).await? {
            add_counters(&mut counters, &item)?;
        }
        Ok(counters)
    }

    async fn counters_sum(&self, keys: &[Key]) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut total = BTreeMap::new();
        for item in self.batch_get(keys).await? {
            add_counters(&mut total, &item)?;
        }
        Ok(total)
    }

    async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let segments = segments.max(1);
        if segment >= segments {
            return Ok(Page::default());
        }
        let (segment, segments) = (
            i32::try_from(segment).unwrap_or(i32::MAX),
            i32::try_from(segments).unwrap_or(i32::MAX),
        );
        // `Limit` caps the items read (matching or not), so a page never holds more than it.
        let resp = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#sk = :sk")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":sk", AttributeValue::S(sk.to_string()))
            .segment(segment)
            .total_segments(segments)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.map(key_item))
            .send()
            .await
            .map_err(|e| store_error("Scan", e))?;
        let mut records = Vec::new();
        for item in resp.items() {
            if let Some(r) = record(item)? {
                records.push(r);
            }
        }
        let next = match resp.last_evaluated_key() {
            Some(k) if !k.is_empty() => {
                let (Some(pk), Some(sk)) = (string(k, PK), string(k, SK)) else {
                    return Err(StoreError::Corrupt(
                        "a scan's LastEvaluatedKey without pk or sk".into(),
                    ));
                };
                Some(Key::new(pk, sk))
            }
            _ => None,
        };
        Ok(Page { records, next })
    }
}

/// Follows a query's or scan's pages (`LastEvaluatedKey`) and collects their records, up to
/// `limit`. `page` sends one request from a start key with at most so many items left to get,
/// and answers its items and the key to go on from.
async fn pages<F, Fut>(limit: usize, mut page: F) -> Result<Vec<Record>, StoreError>
where
    F: FnMut(Option<Item>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<Item>, Option<Item>), StoreError>>,
{
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    while out.len() < limit {
        let (items, next) = page(start.take(), limit - out.len()).await?;
        for item in &items {
            if let Some(r) = record(item)? {
                out.push(r);
            }
        }
        match next {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// 50 ms, 100 ms, 200 ms … capped at 2 s, for BatchGetItem's unprocessed keys.
fn backoff(round: u32) -> Duration {
    Duration::from_millis((50u64 << round.min(6)).min(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FOLD_PROGRESS_BYTES, MAX_ITEM_BYTES};

    #[test]
    fn counter_attributes_round_trip() {
        for name in [
            "entered",
            "step.wait_30m.entered",
            "step.push.skipped.no_address",
            "é/ü #1",
            "",
        ] {
            let a = counter_attribute(name);
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            assert_eq!(counter_name(&a).as_deref(), Some(name), "{a}");
        }
        assert_eq!(
            counter_attribute("step.wait_30m.entered"),
            "c_step_2ewait_5f30m_2eentered"
        );
        assert_eq!(counter_name("b"), None);
        assert_eq!(counter_name("c_bad_zz"), None);
    }

    /// An adapter whose requests all fail: nothing listens at its endpoint.
    fn unreachable() -> DynamoStore {
        use aws_sdk_dynamodb::config::{retry::RetryConfig, BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(RetryConfig::disabled())
            .build();
        DynamoStore::new(Client::from_conf(config), "waymark")
    }

    /// A listed record whose item, as written, leaves less than the count of its fold's parts
    /// (`fp`) needs under 400 KB is refused before any request: taken, a fold in parts could
    /// not note its progress on it (DynamoDB refuses that update), and its fold partition
    /// would fail on it every minute. The same record not listed goes to DynamoDB.
    #[tokio::test]
    async fn a_listed_record_without_room_for_its_count_of_parts_is_refused_up_front() {
        // Noise from a 64-character alphabet, stored deflated (by a quarter at most).
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let body: String = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x >> 58) as u8)
            })
            .collect();
        let json = serde_json::to_vec(&body).expect("json");
        let (name, stored) = body_attribute(json.into());
        assert_eq!(name, DEFLATED);
        // `pk` and `U#ann`, `sk` and the key, `v` and a number, `z` and the body, `f` and `F#0`
        let fixed = 2 + 5 + 2 + 1 + MAX_NUMBER_BYTES + 1 + stored.len() + 1 + 3;
        let record = |under: usize| {
            let sk = format!("T#{}", "x".repeat(MAX_ITEM_BYTES - under - fixed - 2));
            Record::new(Key::new("U#ann", sk), 1, &body)
                .expect("record")
                .pending_in("F#0")
        };
        let store = unreachable();

        for under in [0, 10, FOLD_PROGRESS_BYTES - 1] {
            let got = store.put(&record(under), Expect::Absent).await;
            assert!(
                matches!(&got, Err(StoreError::Corrupt(why)) if why.contains("`fp`")),
                "{under} bytes under: {got:?}"
            );
        }
        // With that room, or not listed, it is sent (and fails here: no DynamoDB listens).
        let mut unlisted = record(10);
        unlisted.pending = None;
        for r in [record(FOLD_PROGRESS_BYTES), unlisted] {
            let got = store.put(&r, Expect::Absent).await;
            assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
        }
    }

    /// A transaction cancelled for an item past 400 KB (the reason DynamoDB gives a fold
    /// part's `fp` on a record an earlier build listed without room for it) is told apart from
    /// another validation error and from a lost condition: `TooLarge`, not `Unavailable`.
    #[test]
    fn a_transaction_cancelled_for_an_item_too_large_is_told_apart() {
        use aws_sdk_dynamodb::types::CancellationReason;
        let reason = |code: &str, message: &str| {
            CancellationReason::builder()
                .code(code)
                .message(message)
                .build()
        };
        let too_large = "Item size to update has exceeded the maximum allowed size";
        assert_eq!(
            item_too_large(&reason("ValidationError", too_large)).as_deref(),
            Some(too_large)
        );
        assert_eq!(
            item_too_large(&reason("ValidationError", "Invalid UpdateExpression")),
            None
        );
        assert_eq!(item_too_large(&reason("ConditionalCheckFailed", "")), None);
        assert_eq!(item_too_large(&reason("None", "")), None);
    }

    /// A claim's transaction (its Put, then the ConditionCheck of the profile) cancelled: the
    /// Put's condition failing is a conflict whatever the check says; the check's alone, the
    /// profile sealed; anything else, no answer here (it may pass later).
    #[test]
    fn a_claim_cancelled_says_which_condition_failed() {
        use aws_sdk_dynamodb::types::CancellationReason;
        let reason = |code: &str| CancellationReason::builder().code(code).build();
        let (failed, none) = (reason("ConditionalCheckFailed"), reason("None"));
        assert_eq!(
            sealed_outcome(&[failed.clone(), none.clone()]),
            Some(StoreError::Conflict)
        );
        assert_eq!(
            sealed_outcome(&[failed.clone(), failed.clone()]),
            Some(StoreError::Conflict)
        );
        assert_eq!(
            sealed_outcome(&[none.clone(), failed.clone()]),
            Some(StoreError::Sealed)
        );
        assert_eq!(
            sealed_outcome(&[none.clone(), reason("TransactionConflict")]),
            None
        );
        assert_eq!(sealed_outcome(&[]), None);
    }

    #[test]
    fn an_item_without_a_body_holds_no_record() {
        let mut item = key_item(&Key::new("S#j", "C"));
        item.insert("c_entered".into(), AttributeValue::N("3".into()));
        assert_eq!(record(&item), Ok(None));
    }

    #[test]
    fn items_become_records() {
        let mut item = key_item(&Key::new("U#ann", "P"));
        item.insert(VERSION.into(), AttributeValue::N("7".into()));
        item.insert(BODY.into(), AttributeValue::B(Blob::new(b"{}".to_vec())));
        item.insert(TTL.into(), AttributeValue::N("1700000000".into()));
        let r = record(&item).ok().flatten();
        assert_eq!(
            r,
            Some(Record {
                key: Key::new("U#ann", "P"),
                version: 7,
                body: bytes::Bytes::from_static(b"{}").into(),
                expires: Some(1_700_000_000),
                pending: None,
                parts_counted: 0,
                sealed: false,
            })
        );
        item.insert(VERSION.into(), AttributeValue::S("x".into()));
        assert!(matches!(record(&item), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn large_bodies_are_stored_deflated_and_read_back_whole() {
        let html = "<tr><td class=\"item\">Trail shoes</td><td>79.90 EUR</td></tr>".repeat(600);
        let json = serde_json::to_vec(&serde_json::json!({ "html": html })).expect("json");
        let (name, stored) = body_attribute(json.clone().into());
        assert_eq!(name, DEFLATED);
        assert!(
            stored.len() * 10 < json.len(),
            "{} bytes deflated to {}",
            json.len(),
            stored.len()
        );
        let mut item = key_item(&Key::new("U#ann", "E#cart"));
        item.insert(VERSION.into(), AttributeValue::N("2".into()));
        item.insert(name.into(), AttributeValue::B(Blob::new(stored)));
        let r = record(&item).ok().flatten().expect("a record");
        assert_eq!(r.body.json().ok().as_deref(), Some(&json[..]));

        // Small bodies, and bodies deflate cannot shrink, stay as they are.
        assert_eq!(
            body_attribute(bytes::Bytes::from_static(b"{}")),
            (BODY, b"{}".to_vec())
        );
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert_eq!(body_attribute(noise.clone().into()).0, BODY);

        // A deflated body that does not inflate is a corrupt item, not a panic.
        item.insert(
            DEFLATED.into(),
            AttributeValue::B(Blob::new(vec![0xff; 16])),
        );
        assert!(matches!(record(&item), Err(StoreError::Corrupt(_))));
    }
}
