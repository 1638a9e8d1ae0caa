//! A [`MemoryStore`] behind a test's hooks, for tests that fail, pause, count or interleave
//! store calls at one point. Each [`Store`] call goes to the [`Hooks`] method of its name, whose
//! default forwards it to the memory store; a test writes only the calls it intercepts.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Counts, Expect, Key, MemoryStore, Page, Part, Record, Store, StoreError};

/// What a test does at each store call; every method is given the memory store to forward to.
/// The defaults forward the call unchanged, except [`Hooks::get_many`] and
/// [`Hooks::partitions_between`], which do what [`Store`]'s own defaults do (a get a key, through
/// [`Hooks::get`]; no listing of partitions): a test that wants the memory store's own forwards
/// them.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    async fn get(&self, inner: &MemoryStore, key: &Key) -> Result<Option<Record>, StoreError> {
        inner.get(key).await
    }
    async fn get_many(&self, inner: &MemoryStore, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(r) = self.get(inner, k).await? {
                out.push(r);
            }
        }
        Ok(out)
    }
    async fn put(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
    ) -> Result<(), StoreError> {
        inner.put(record, expect).await
    }
    async fn put_unless_sealed(
        &self,
        inner: &MemoryStore,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        inner.put_unless_sealed(record, expect, seal).await
    }
    async fn delete(
        &self,
        inner: &MemoryStore,
        key: &Key,
        expect: Expect,
    ) -> Result<(), StoreError> {
        inner.delete(key, expect).await
    }
    async fn query(
        &self,
        inner: &MemoryStore,
        pk: &str,
        prefix: &str,
    ) -> Result<Vec<Record>, StoreError> {
        inner.query(pk, prefix).await
    }
    async fn partitions_between(
        &self,
        _inner: &MemoryStore,
        _from: &str,
        _to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        Ok(None)
    }
    async fn pending(
        &self,
        inner: &MemoryStore,
        part: &str,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        inner.pending(part, limit).await
    }
    async fn fold(
        &self,
        inner: &MemoryStore,
        records: &[Key],
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
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
        inner.fold_part(record, part, last, counters).await
    }
    async fn counters(
        &self,
        inner: &MemoryStore,
        key: &Key,
    ) -> Result<BTreeMap<String, i64>, StoreError> {
        inner.counters(key).await
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
        inner.scan(sk, segment, segments, start, limit).await
    }
}

/// A [`MemoryStore`] whose calls go through `hooks`. It derefs to its hooks, so a test reads
/// what they noted through the store it handed out.
#[derive(Clone, Default)]
pub struct Hooked<H> {
    pub inner: MemoryStore,
    pub hooks: H,
}

impl<H> Hooked<H> {
    pub fn new(inner: MemoryStore, hooks: H) -> Self {
        Hooked { inner, hooks }
    }
}

impl<H> std::ops::Deref for Hooked<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hooks
    }
}

/// [`Store::query_first`], [`Store::delete_many`] and [`Store::counters_sum`] are left to the
/// trait's defaults, which call the hooked `query`, `delete` and `counters`.
#[async_trait]
impl<H: Hooks> Store for Hooked<H> {
    async fn get(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        self.hooks.get(&self.inner, key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        self.hooks.get_many(&self.inner, keys).await
    }
    async fn put(&self, record: &Record, expect: Expect) -> Result<(), StoreError> {
        self.hooks.put(&self.inner, record, expect).await
    }
    async fn put_unless_sealed(
        &self,
        record: &Record,
        expect: Expect,
        seal: &Key,
    ) -> Result<(), StoreError> {
        self.hooks
            .put_unless_sealed(&self.inner, record, expect, seal)
            .await
    }
    async fn delete(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        self.hooks.delete(&self.inner, key, expect).await
    }
    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        self.hooks.query(&self.inner, pk, prefix).await
    }
    async fn partitions_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<Part>>, StoreError> {
        self.hooks.partitions_between(&self.inner, from, to).await
    }
    async fn pending(&self, part: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.hooks.pending(&self.inner, part, limit).await
    }
    async fn fold(&self, records: &[Key], counters: &[(Key, Counts)]) -> Result<(), StoreError> {
        self.hooks.fold(&self.inner, records, counters).await
    }
    async fn fold_part(
        &self,
        record: &Key,
        part: u32,
        last: bool,
        counters: &[(Key, Counts)],
    ) -> Result<(), StoreError> {
        self.hooks
            .fold_part(&self.inner, record, part, last, counters)
            .await
    }
    async fn counters(&self, key: &Key) -> Result<BTreeMap<String, i64>, StoreError> {
        self.hooks.counters(&self.inner, key).await
    }
    async fn scan(
        &self,
        sk: &str,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.hooks
            .scan(&self.inner, sk, segment, segments, start, limit)
            .await
    }
}
