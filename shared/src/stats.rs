//! Journey stats: the per-journey counters, folded from the timeline records. Each timeline
//! record is written listed under a fold partition; the scheduler's minute folds listed records
//! into the counters, taking each off its partition and adding its counts in one transaction, so
//! every record is counted exactly once whatever fails or is retried.

use std::collections::BTreeMap;

use crate::runtime::{stats_key, RunError, Runtime};
use crate::store::{join, segment_of, Counts, Key, StoreError, FOLD_MAX_COUNTERS, FOLD_MAX_ITEMS};
use crate::timeline;

/// Records read from a fold partition at a time.
const PAGE: usize = 500;
/// Pages folded per partition in one go; the rest waits for the next minute.
const MAX_PAGES: usize = 20;

/// The fold partition a user's timeline records are listed under.
pub fn fold_partition(user: &str, shards: u32) -> String {
    join(&["F#", &segment_of(user, shards).to_string()])
}

/// Records and their counts, folded together.
#[derive(Default)]
struct Chunk {
    records: Vec<(Key, BTreeMap<String, Counts>)>,
    counters: BTreeMap<String, Counts>,
}

impl Chunk {
    /// Whether a record with these counts can join without passing the store's limits.
    fn fits(&self, counts: &BTreeMap<String, Counts>) -> bool {
        let journeys = self.counters.len()
            + counts
                .keys()
                .filter(|j| !self.counters.contains_key(*j))
                .count();
        let counters_fit = counts.iter().all(|(j, c)| {
            let have = self.counters.get(j);
            let names = c
                .keys()
                .filter(|k| have.is_none_or(|h| !h.contains_key(*k)))
                .count();
            have.map_or(0, BTreeMap::len) + names <= FOLD_MAX_COUNTERS
        });
        self.records.len() + 1 + journeys <= FOLD_MAX_ITEMS && counters_fit
    }

    fn push(&mut self, key: Key, counts: BTreeMap<String, Counts>) {
        add_into(&mut self.counters, &counts);
        self.records.push((key, counts));
    }
}

fn add_into(total: &mut BTreeMap<String, Counts>, counts: &BTreeMap<String, Counts>) {
    for (j, c) in counts {
        // Looked up before inserting, so that a name already there is not copied again.
        let t = match total.get_mut(j) {
            Some(t) => t,
            None => total.entry(j.clone()).or_default(),
        };
        for (k, d) in c {
            match t.get_mut(k) {
                Some(n) => *n += d,
                None => {
                    t.insert(k.clone(), *d);
                }
            }
        }
    }
}

fn as_counters(counts: &BTreeMap<String, Counts>) -> Vec<(Key, Counts)> {
    counts
        .iter()
        .map(|(j, c)| (stats_key(j), c.clone()))
        .collect()
}

impl Runtime {
    /// A journey's counters, as of the last fold (the scheduler folds each minute).
    pub async fn stats(&self, journey: &str) -> Result<BTreeMap<String, i64>, RunError> {
        Ok(self.store.counters(&stats_key(journey)).await?)
    }

    /// Folds the listed timeline records of every partition into the counters. Returns how many
    /// records were counted.
    pub async fn fold_stats(&self) -> Result<usize, RunError> {
        let mut folded = 0;
        for shard in 0..self.config.timer_shards.max(1) {
            folded += self.fold_partition(&format!("F#{shard}")).await?;
        }
        Ok(folded)
    }

    async fn fold_partition(&self, part: &str) -> Result<usize, RunError> {
        let mut folded = 0;
        for _ in 0..MAX_PAGES {
            let records = self.store.pending(part, PAGE).await?;
            let full = records.len() >= PAGE;
            let mut chunk = Chunk::default();
            for r in records {
                let counted = match r.body.typed::<Vec<timeline::Entry>>() {
                    Some(entries) => Ok(timeline::counters(entries)),
                    None => r
                        .body
                        .json()
                        .map_err(|e| e.to_string())
                        .and_then(|b| timeline::counters_of_json(&b)),
                };
                let counts = match counted {
                    Ok(counts) => counts,
                    Err(e) => {
                        // Nothing in it can be counted; take it off the list all the same.
                        tracing::error!(pk = %r.key.pk, sk = %r.key.sk, error = %e, "a timeline record that cannot be read is folded without counts");
                        BTreeMap::new()
                    }
                };
                if !chunk.records.is_empty() && !chunk.fits(&counts) {
                    folded += self.fold_chunk(std::mem::take(&mut chunk)).await?;
                }
                chunk.push(r.key, counts);
            }
            if !chunk.records.is_empty() {
                folded += self.fold_chunk(chunk).await?;
            }
            if !full {
                break;
            }
        }
        Ok(folded)
    }

    /// Folds a chunk in one transaction; if some record of it was folded meanwhile (another
    /// scheduler run, or an index that lagged), folds the others one at a time.
    async fn fold_chunk(&self, chunk: Chunk) -> Result<usize, RunError> {
        let keys: Vec<Key> = chunk.records.iter().map(|(k, _)| k.clone()).collect();
        match self.store.fold(&keys, &as_counters(&chunk.counters)).await {
            Ok(()) => return Ok(keys.len()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        let mut folded = 0;
        for (key, counts) in chunk.records {
            match self
                .store
                .fold(std::slice::from_ref(&key), &as_counters(&counts))
                .await
            {
                Ok(()) => folded += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(folded)
    }
}
