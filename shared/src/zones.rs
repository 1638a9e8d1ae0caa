//! The time zones users are in: a record per IANA zone some profile's `timezone` names, so that a
//! `timezone: user` schedule scans the profiles only at minutes when its cron matches in one of
//! those zones (three scans a day for users in Paris, New York and no zone), not in every zone
//! on Earth (about forty). A zone is noted when a profile naming it is written, and by every
//! schedule run's scan; until one such scan has read every profile (`#complete`), profiles
//! written before zones were noted may name others, and every zone counts.

use std::collections::{BTreeSet, HashSet};

use jiff::Timestamp;
use serde_json::Value;

use crate::profile::Profile;
use crate::queue::ScanJob;
use crate::runtime::{RunError, Runtime};
use crate::store::{join, Expect, Key, Record, StoreError};

/// The partition of the zones in use: a record per zone (its name), and markers under `#`.
const PARTITION: &str = "ZONES";
/// The partition of one schedule run's segment markers (`READ` and the run's id): apart from
/// the zones, whose Query each minute would otherwise read every run's markers until they
/// expire (a run a day in each zone in use, or one every minute for a `* * * * *` cron).
const READ: &str = "ZONES#read#";
/// Written when a scan has read every profile: the zones listed are all there are.
const COMPLETE: &str = "#complete";

/// The zones this process has noted already (one write a zone, not one a profile).
#[derive(Default)]
pub struct Seen(std::sync::Mutex<HashSet<String>>);

impl Seen {
    fn contains(&self, name: &str) -> bool {
        self.0.lock().map(|s| s.contains(name)).unwrap_or(false)
    }

    fn insert(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_string());
        }
    }
}

/// The UTC offsets (in seconds) of every time zone this machine knows, at `at`, and UTC's.
pub fn every_offset(at: Timestamp) -> BTreeSet<i32> {
    with_utc(every_zone().iter().map(|tz| tz.to_offset(at).seconds()))
}

/// Every time zone this machine knows: looked up by name once a process (about 600 of them),
/// not at every scheduler minute.
pub(crate) fn every_zone() -> &'static [jiff::tz::TimeZone] {
    static EVERY: std::sync::OnceLock<Vec<jiff::tz::TimeZone>> = std::sync::OnceLock::new();
    EVERY.get_or_init(|| {
        jiff::tz::db()
            .available()
            .filter_map(|n| jiff::tz::TimeZone::get(n.as_str()).ok())
            .collect()
    })
}

/// The UTC offsets (in seconds) of `names` at `at` (unknown names left out), and UTC's.
pub fn offsets_of<'a>(names: impl IntoIterator<Item = &'a str>, at: Timestamp) -> BTreeSet<i32> {
    with_utc(
        names
            .into_iter()
            .filter_map(|name| jiff::tz::TimeZone::get(name).ok())
            .map(|tz| tz.to_offset(at).seconds()),
    )
}

/// `offsets` and UTC's: a profile without a valid zone falls back to the journey's or to UTC.
fn with_utc(offsets: impl IntoIterator<Item = i32>) -> BTreeSet<i32> {
    let mut out = BTreeSet::from([0]);
    out.extend(offsets);
    out
}

impl Runtime {
    /// Notes the zone `profile` is in, if it names a valid one this process has not noted.
    pub(crate) async fn note_zone(&self, profile: &Profile) -> Result<(), RunError> {
        let Some(name) = profile.traits.get("timezone").and_then(Value::as_str) else {
            return Ok(());
        };
        if self.zones.contains(name) {
            return Ok(());
        }
        // An unknown name falls back to the journey's zone or UTC, which always count.
        if jiff::tz::TimeZone::get(name).is_ok() {
            let record = Record::of(Key::new(PARTITION, name), 1, self.clock.now());
            match self.store.put(&record, Expect::Absent).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.zones.insert(name);
        Ok(())
    }

    /// The zones users are in, once a scan has read every profile; `None` before.
    pub(crate) async fn zones_in_use(&self) -> Result<Option<Vec<String>>, RunError> {
        let records = self.store.query(PARTITION, "").await?;
        if !records.iter().any(|r| r.key.sk == COMPLETE) {
            return Ok(None);
        }
        Ok(Some(
            records
                .iter()
                .filter(|r| !r.key.sk.starts_with('#'))
                .map(|r| r.key.sk.to_string())
                .collect(),
        ))
    }

    /// A schedule run's scan read the last page of `segment` (every profile of it, each zone
    /// noted): when every segment has, the zones in use are complete.
    pub(crate) async fn zones_segment_read(
        &self,
        job: &ScanJob,
        segment: u32,
        segments: u32,
    ) -> Result<(), RunError> {
        let run = join(&[READ, &job.id()]);
        let done = Record::of(Key::new(run.as_str(), segment.to_string()), 1, true)
            .expiring(self.clock.now() + jiff::SignedDuration::from_hours(48));
        self.store.put(&done, Expect::Any).await?;
        // Written before read: of two segments finishing at once, one sees the other's mark.
        if self.store.query(&run, "").await?.len() >= segments as usize {
            let complete = Record::of(Key::new(PARTITION, COMPLETE), 1, self.clock.now());
            match self.store.put(&complete, Expect::Absent).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
