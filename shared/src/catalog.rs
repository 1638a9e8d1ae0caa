//! The journey catalog: published journey versions in the store. Publishing a changed journey
//! makes a new version; enrolled users finish on theirs. Latest versions are cached briefly,
//! fixed versions forever (they never change).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::journey::{Journey, JourneyStatus, Marker};
use crate::store::{Expect, Key, Record, Store, StoreError};
use crate::topic::{Topic, Topics};

/// One published version of a journey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub version: u32,
    pub digest: String,
    pub published_at: Timestamp,
    pub journey: Journey,
    /// The declaration (name, default) of the journey's topic when this version was published,
    /// kept beside the journey (not in it, nor in its digest): a send whose running
    /// configuration has lost the topic takes this one, so an `opt_in` topic stays `opt_in`
    /// (see [`crate::topic::Declared`]). `None`: no topic, none declared then, or a version
    /// published before declarations were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
}

/// The pointer to a journey's latest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub id: String,
    pub name: String,
    /// The latest version's status (heads stored before it existed read as `active`).
    #[serde(default)]
    pub status: JourneyStatus,
    pub version: u32,
    pub digest: String,
    pub published_at: Timestamp,
    /// The profile traits whose change an exit or the goal of a version that was this
    /// journey's head watches (each once, sorted). Users finish on the version they entered, so
    /// an identify's change of one is computed, and noted for its retries, while the latest
    /// version watches it no more (see `Catalog::active_watching`). Each publish keeps the
    /// previous head's, adds its own, and for a head that names none (it may predate this
    /// list) its version's; read with the heads, it costs no request. It only grows: the
    /// traits are few, and a version's last enrollment may end any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_by_versions: Vec<String>,
    /// What the versions that were this journey's head listen to once entered, as
    /// [`Head::watched_by_versions`] keeps their traits: an event one of them names is kept in
    /// the profile's history, and one meeting an exit's or the goal's `where` is marked, for
    /// an enrollment found later (events out of order, a login), while the latest version
    /// names it no more. `None`: a head stored before it existed (a publish over it reads
    /// every version up to the one it names). Bounded: the oldest versions' are dropped past [`LISTED_MARKERS`]
    /// and [`LISTED_EVENTS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listening_by_versions: Option<Listening>,
    /// The latest version's [`Published::topic`]: a publish of the same journey under another
    /// declaration makes a new version holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
}

/// The track events journey versions listen to once entered, and the exits and goals among them
/// that an event may meet with no enrollment to judge it for (see [`Head::listening_by_versions`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listening {
    /// Their exits', goals' and waits' events (each once, the newest version's first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Their markers (each once, the newest version's first: see [`Marker::sort_key`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<Marker>,
}

/// How many markers a head lists, newest first (see [`Listening::bounded`]): past it the oldest
/// versions' are dropped, so that a journey edited over and over (every save under `waymark
/// dev` is a version) does not leave every event judged by, and every profile marked for, all
/// the `where`s it ever had. An enrollment on a version whose marker was dropped finds no mark
/// for an exit or goal event that came before its trigger or its login.
pub const LISTED_MARKERS: usize = 32;

/// How many events a head lists, newest first (see [`LISTED_MARKERS`]).
pub const LISTED_EVENTS: usize = 128;

impl Listening {
    /// What `journey` (one version) listens to once entered.
    pub fn of(journey: &Journey) -> Listening {
        let mut l = Listening {
            events: journey.events_once_entered().map(str::to_string).collect(),
            markers: journey.markers(),
        };
        l.tidy();
        l
    }

    /// Adds what `older` (versions before those listed) listens to, after what is listed.
    pub fn extend(&mut self, older: &Listening) {
        self.events.extend(older.events.iter().cloned());
        self.markers.extend(older.markers.iter().cloned());
        self.tidy();
    }

    /// Keeps the first (newest) [`LISTED_EVENTS`] events and [`LISTED_MARKERS`] markers, and
    /// never fewer than `own`'s (the version being published: its users need them all).
    pub fn bounded(mut self, own: &Listening) -> Listening {
        self.events.truncate(LISTED_EVENTS.max(own.events.len()));
        self.markers.truncate(LISTED_MARKERS.max(own.markers.len()));
        self
    }

    /// Each once, where it first comes (the newest version's first).
    fn tidy(&mut self) {
        let mut seen = BTreeSet::new();
        self.events.retain(|e| seen.insert(e.clone()));
        let mut seen = BTreeSet::new();
        self.markers.retain(|m| {
            let (kind, event, condition, zone) = m.sort_key();
            seen.insert((
                kind,
                event.to_string(),
                condition.to_string(),
                zone.map(str::to_string),
            ))
        });
    }
}

/// A marker of an active journey, with the key of `Profile::marks` it notes an event under.
#[derive(Debug, Clone)]
pub struct ActiveMarker {
    pub journey: String,
    pub marker: Marker,
    pub key: String,
}

const INDEX: &str = "JOURNEYS";

/// How many versions a first publish over a head stored before it listed what its versions
/// listen to reads at once ([`Catalog::listening_after`]).
const OLD_VERSION_READS: usize = 8;

/// How many versions past the head a publish looks for a free one (each a publish given up
/// after writing its version).
const MAX_ABANDONED: u32 = 64;

fn head_key(id: &str) -> Key {
    Key::new(INDEX, id)
}

fn version_key(id: &str, version: u32) -> Key {
    Key::new(format!("J#{id}"), format!("V#{version:08}"))
}

type Latest = Arc<Vec<Arc<Published>>>;

/// The latest version of every journey, and the traits every version that was a head watches
/// once entered (the union of the heads' [`Head::watched_by_versions`]).
#[derive(Clone)]
pub struct Active {
    pub journeys: Latest,
    pub watched_by_versions: Arc<Vec<String>>,
    /// The events any version of a journey listens to once entered (each once, sorted), as
    /// the heads list them ([`Head::listening_by_versions`]) and the latest versions name them.
    pub events_by_versions: Arc<Vec<String>>,
    /// The markers of every version of the journeys whose status is `active` (new users may
    /// enter, and be found to have met one first).
    pub markers: Arc<Vec<ActiveMarker>>,
    /// The keys of `Profile::marks` some version of a listed journey (active or not: a closed
    /// journey's users finish it) may read (sorted): a mark under another is dropped.
    pub mark_keys: Arc<Vec<String>>,
}

impl Active {
    /// The latest version of journey `id` this list knows, if it knows the journey.
    pub fn version_of(&self, id: &str) -> Option<u32> {
        self.journeys
            .iter()
            .find(|p| p.journey.id == id)
            .map(|p| p.version)
    }
}

pub struct Catalog {
    store: Arc<dyn Store>,
    ttl: Duration,
    latest: Mutex<Option<(Instant, Arc<Active>)>>,
    versions: Mutex<HashMap<(String, u32), Arc<Published>>>,
}

impl Catalog {
    /// `ttl`: how long the list of latest versions is cached (Lambda: a minute at most).
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Catalog {
            store,
            ttl,
            latest: Mutex::new(None),
            versions: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `journey` as a new version unless it is unchanged, with the declaration `topics`
    /// (the publisher's: its `waymark.yaml`, a deployment's parameter) gives its topic. The
    /// same journey with its topic declared otherwise than in the latest version (another
    /// default or name; one published before declarations were kept) is a new version, its
    /// digest the same. Returns (version, whether new).
    pub async fn publish(
        &self,
        journey: &Journey,
        topics: &Topics,
        now: Timestamp,
    ) -> Result<(u32, bool), StoreError> {
        let digest = journey.digest();
        let topic = journey
            .topic
            .as_deref()
            .and_then(|t| topics.get(t))
            .cloned();
        for _ in 0..5 {
            let head = self.store.get(&head_key(&journey.id)).await?;
            let current = head.as_ref().map(|r| r.parse::<Head>()).transpose()?;
            if let Some(h) = &current {
                if h.digest == digest && h.topic == topic {
                    return Ok((h.version, false));
                }
            }
            let first = current.as_ref().map(|h| h.version + 1).unwrap_or(1);
            let version = self
                .write_version(journey, &digest, topic.as_ref(), first, now)
                .await?;
            let watched_by_versions = self.watched_after(current.as_ref(), journey).await?;
            let listening_by_versions =
                Some(self.listening_after(current.as_ref(), journey).await?);
            let new_head = Head {
                id: journey.id.clone(),
                name: journey.name.clone(),
                status: journey.status,
                version,
                digest: digest.clone(),
                published_at: now,
                watched_by_versions,
                listening_by_versions,
                topic: topic.clone(),
            };
            let (rv, expect) = Expect::replacing(head.as_ref());
            match self
                .store
                .put(&Record::new(head_key(&journey.id), rv, &new_head)?, expect)
                .await
            {
                Ok(()) => {
                    self.invalidate();
                    return Ok((version, true));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// The traits a head publishing `journey` over `current` lists in
    /// [`Head::watched_by_versions`]: the current head's, `journey`'s own, and, when the
    /// current head lists none (a head stored before the list existed lists none), those of
    /// the version it names.
    async fn watched_after(
        &self,
        current: Option<&Head>,
        journey: &Journey,
    ) -> Result<Vec<String>, StoreError> {
        let mut watched: BTreeSet<String> =
            journey.watched_once_entered().map(str::to_string).collect();
        if let Some(h) = current {
            watched.extend(h.watched_by_versions.iter().cloned());
            if h.watched_by_versions.is_empty() {
                if let Some(p) = self.version(&h.id, h.version).await? {
                    watched.extend(p.journey.watched_once_entered().map(str::to_string));
                }
            }
        }
        Ok(watched.into_iter().collect())
    }

    /// What a head publishing `journey` over `current` lists in
    /// [`Head::listening_by_versions`]: the current head's, `journey`'s own, and, when the
    /// current head lists nothing (stored before the list existed), every version's up to it.
    async fn listening_after(
        &self,
        current: Option<&Head>,
        journey: &Journey,
    ) -> Result<Listening, StoreError> {
        let own = Listening::of(journey);
        let mut listening = own.clone();
        if let Some(h) = current {
            match &h.listening_by_versions {
                Some(l) => listening.extend(l),
                // A head stored before the list existed: every version up to it (users may be
                // on any), read once here, not on each event; newest first.
                // At most `OLD_VERSION_READS` at a time: a head of hundreds of versions would
                // otherwise send as many reads to the store at once.
                None => {
                    let versions: Vec<_> = futures_util::stream::iter(
                        (1..=h.version).rev().map(|v| self.version(&h.id, v)),
                    )
                    .buffered(OLD_VERSION_READS)
                    .try_collect()
                    .await?;
                    for p in versions.into_iter().flatten() {
                        listening.extend(&Listening::of(&p.journey));
                    }
                }
            }
        }
        Ok(listening.bounded(&own))
    }

    /// Writes `journey` (its topic declared as `topic`) as the first free version from `first`
    /// on, and returns its number. A version record there already is this journey's when its
    /// digest and declaration are (an earlier attempt of this publish, which failed before its
    /// head was written); another's (a publish that failed half-way and was given up, or one
    /// running at the same moment) is left to it, and the next number is tried: a head must
    /// never name a version holding other content.
    async fn write_version(
        &self,
        journey: &Journey,
        digest: &str,
        topic: Option<&Topic>,
        first: u32,
        now: Timestamp,
    ) -> Result<u32, StoreError> {
        let mut version = first;
        for _ in 0..MAX_ABANDONED {
            let published = Published {
                version,
                digest: digest.to_string(),
                published_at: now,
                journey: journey.clone(),
                topic: topic.cloned(),
            };
            let key = version_key(&journey.id, version);
            match self
                .store
                .put(&Record::new(key.clone(), 1, &published)?, Expect::Absent)
                .await
            {
                Ok(()) => return Ok(version),
                Err(StoreError::Conflict) => {
                    let there = match self.store.get(&key).await? {
                        Some(r) => r.parse::<Published>()?,
                        // Written, then gone: taken as another's.
                        None => {
                            version += 1;
                            continue;
                        }
                    };
                    if there.digest == digest && there.topic.as_ref() == topic {
                        return Ok(version);
                    }
                    tracing::warn!(journey = %journey.id, version, "a version another publish wrote is not the head's; publishing as the next");
                    version += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Forget the cached list of latest versions.
    pub fn invalidate(&self) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// One journey's head as stored now (not cached).
    /// Why `journey` may not be published over its published versions, if so: its
    /// `enrollment_key` is not theirs (added, changed or removed). The key names the records
    /// her enrollments are in, and the entry rule, a stop's sweep and a login read those of
    /// the latest version's key alone: an active enrollment of the old key would be missed,
    /// and a trigger enter her twice for one booking.
    pub async fn key_change(&self, journey: &Journey) -> Result<Option<String>, StoreError> {
        let Some(head) = self.head(&journey.id).await? else {
            return Ok(None);
        };
        let Some(p) = self.version(&journey.id, head.version).await? else {
            return Ok(None);
        };
        let said = |j: &Journey| j.enrollment_key.as_ref().map(|k| k.source().to_string());
        let (was, now) = (said(&p.journey), said(journey));
        if was == now {
            return Ok(None);
        }
        let show = |k: &Option<String>| {
            k.as_deref()
                .map_or("none".to_string(), |k| format!("`{k}`"))
        };
        Ok(Some(format!(
            "`enrollment_key` is {} in the published version {} of journey `{}` and {} here: a journey keeps its key for good (its enrollments are kept by it); publish this as a new journey, with another `id`, and close or stop this one",
            show(&was),
            head.version,
            journey.id,
            show(&now)
        )))
    }

    pub async fn head(&self, id: &str) -> Result<Option<Head>, StoreError> {
        match self.store.get(&head_key(id)).await? {
            Some(r) => Ok(Some(r.parse()?)),
            None => Ok(None),
        }
    }

    /// Every journey's head (id, name, latest version).
    pub async fn heads(&self) -> Result<Vec<Head>, StoreError> {
        self.store
            .query(INDEX, "")
            .await?
            .iter()
            .map(Record::parse)
            .collect()
    }

    /// The latest version of every journey.
    pub async fn active(&self) -> Result<Latest, StoreError> {
        Ok(self.active_watching().await?.journeys.clone())
    }

    /// The latest version of every journey, and the traits whose change an exit or the goal of
    /// any of their versions that was a head watches: those enrolled on an older version
    /// listen to its exits and goal while the latest watches other traits, or none.
    /// (Shared: read a few times a message, it is one count to copy, not five.)
    pub async fn active_watching(&self) -> Result<Arc<Active>, StoreError> {
        if let Some((at, active)) = &*self.latest.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < self.ttl {
                return Ok(active.clone());
            }
        }
        let heads = self.heads().await?;
        let watched: BTreeSet<&str> = heads
            .iter()
            .flat_map(|h| h.watched_by_versions.iter().map(String::as_str))
            .collect();
        let watched_by_versions = Arc::new(watched.into_iter().map(str::to_string).collect());
        // On a cold start each is a read: all at once, not one after the other.
        let versions = futures_util::future::try_join_all(
            heads.iter().map(|h| self.version(&h.id, h.version)),
        )
        .await?;
        let journeys: Vec<Arc<Published>> = versions.into_iter().flatten().collect();
        let (events_by_versions, markers, mark_keys) = listening(&heads, &journeys);
        let active = Arc::new(Active {
            journeys: Arc::new(journeys),
            watched_by_versions,
            events_by_versions: Arc::new(events_by_versions),
            markers: Arc::new(markers),
            mark_keys: Arc::new(mark_keys),
        });
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), active.clone()));
        Ok(active)
    }

    /// One version of a journey (`None` if it was never published).
    pub async fn version(
        &self,
        id: &str,
        version: u32,
    ) -> Result<Option<Arc<Published>>, StoreError> {
        let k = (id.to_string(), version);
        if let Some(p) = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
        {
            return Ok(Some(p.clone()));
        }
        let Some(r) = self.store.get(&version_key(id, version)).await? else {
            return Ok(None);
        };
        let p = Arc::new(r.parse::<Published>()?);
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, p.clone());
        Ok(Some(p))
    }

    /// The latest version of one journey.
    pub async fn latest(&self, id: &str) -> Result<Option<Arc<Published>>, StoreError> {
        Ok(self
            .active()
            .await?
            .iter()
            .find(|p| p.journey.id == id)
            .cloned())
    }
}

/// What every version of the journeys of `heads` listens to once entered (`latest`: their
/// latest versions, which a head stored before the list existed leaves to name theirs): the
/// events, the markers of the journeys whose status is `active`, and the keys of all of their
/// markers (sorted).
fn listening(
    heads: &[Head],
    latest: &[Arc<Published>],
) -> (Vec<String>, Vec<ActiveMarker>, Vec<String>) {
    let mut events = Vec::new();
    let mut markers = Vec::new();
    let mut keys = Vec::new();
    for p in latest {
        let Some(h) = heads.iter().find(|h| h.id == p.journey.id) else {
            continue;
        };
        let mut l = Listening::of(&p.journey);
        if let Some(theirs) = &h.listening_by_versions {
            l.extend(theirs);
        }
        events.extend(l.events);
        let of = l.markers.into_iter().map(|marker| ActiveMarker {
            key: marker.key(&h.id),
            journey: h.id.clone(),
            marker,
        });
        if p.journey.status.is_active() {
            let of: Vec<ActiveMarker> = of.collect();
            keys.extend(of.iter().map(|m| m.key.clone()));
            markers.extend(of);
        } else {
            keys.extend(of.map(|m| m.key));
        }
    }
    events.sort_unstable();
    events.dedup();
    keys.sort_unstable();
    keys.dedup();
    (events, markers, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Hooked, Hooks, MemoryStore};

    const J: &str = "id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - id: mail\n    send: {email: {subject: s, text: t}}\n";

    fn journey(subject: &str) -> Journey {
        crate::dsl::parse(
            "j.yaml",
            &J.replace("subject: s", &format!("subject: {subject}")),
        )
        .expect("journey")
    }

    /// A publish of `j` that wrote its version record, then failed before its head write.
    async fn half_published(store: &MemoryStore, j: &Journey, version: u32, now: Timestamp) {
        let published = Published {
            version,
            digest: j.digest(),
            published_at: now,
            journey: j.clone(),
            topic: None,
        };
        let record = Record::new(version_key(&j.id, version), 1, &published).expect("record");
        store.put(&record, Expect::Absent).await.expect("put");
    }

    #[tokio::test]
    async fn a_head_names_only_the_version_holding_what_was_published() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let store = MemoryStore::new();
        let catalog = Catalog::new(Arc::new(store.clone()), Duration::ZERO);
        catalog
            .publish(&journey("one"), &Topics::default(), now)
            .await
            .expect("v1");
        // X was given up half-way; the fixed Y is published next.
        let (x, y) = (journey("X abandoned"), journey("Y fixed"));
        half_published(&store, &x, 2, now).await;
        assert_eq!(
            catalog
                .publish(&y, &Topics::default(), now)
                .await
                .expect("Y"),
            (3, true)
        );
        let running = catalog.latest("j").await.expect("read").expect("a head");
        assert_eq!((running.version, &running.journey), (3, &y));
        let head = catalog.head("j").await.expect("read").expect("a head");
        assert_eq!((head.version, head.digest), (3, y.digest()));

        // The retry of a publish that failed half-way takes the version it wrote.
        let z = journey("Z");
        half_published(&store, &z, 4, now).await;
        assert_eq!(
            catalog
                .publish(&z, &Topics::default(), now)
                .await
                .expect("Z"),
            (4, true)
        );
        let running = catalog.latest("j").await.expect("read").expect("a head");
        assert_eq!((running.version, &running.journey), (4, &z));
    }

    const WATCHING: &str = "id: j\nname: J\ntrigger: {event: go}\nexit_when: [{trait_changed: subscriber}]\ngoal: {trait_changed: plan, within: 7d}\nsteps:\n  - id: mail\n    send: {email: {subject: s, text: t}}\n";

    #[tokio::test]
    async fn a_head_keeps_the_traits_every_version_watched_once_entered() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let store = MemoryStore::new();
        let catalog = Catalog::new(Arc::new(store.clone()), Duration::ZERO);
        let watching = crate::dsl::parse("j.yaml", WATCHING).expect("journey");
        catalog
            .publish(&watching, &Topics::default(), now)
            .await
            .expect("v1");
        catalog
            .publish(&journey("v2"), &Topics::default(), now)
            .await
            .expect("v2");
        let head = catalog.head("j").await.expect("read").expect("a head");
        assert_eq!(head.version, 2);
        assert_eq!(head.watched_by_versions, ["plan", "subscriber"]);
        let active = catalog.active_watching().await.expect("active");
        assert_eq!(*active.watched_by_versions, ["plan", "subscriber"]);
        assert_eq!(active.journeys[0].version, 2);

        // A head stored before the list existed (it names none): the version it names is read.
        let store = MemoryStore::new();
        let catalog = Catalog::new(Arc::new(store.clone()), Duration::ZERO);
        half_published(&store, &watching, 1, now).await;
        let old = Head {
            id: "j".into(),
            name: "J".into(),
            status: JourneyStatus::Active,
            version: 1,
            digest: watching.digest(),
            published_at: now,
            watched_by_versions: Vec::new(),
            listening_by_versions: None,
            topic: None,
        };
        let text = serde_json::to_string(&old).expect("JSON");
        assert!(!text.contains("watched"), "{text}");
        let record = Record::new(head_key("j"), 1, &old).expect("record");
        store.put(&record, Expect::Absent).await.expect("head");
        assert_eq!(
            catalog
                .publish(&journey("v2"), &Topics::default(), now)
                .await,
            Ok((2, true))
        );
        let head = catalog.head("j").await.expect("read").expect("a head");
        assert_eq!(head.watched_by_versions, ["plan", "subscriber"]);
    }

    /// A `wait_for` with `paths` listens to each path's event: the engine hears any of them
    /// for a user at the wait (an event no version listens to reaches no enrollment).
    #[tokio::test]
    async fn a_head_lists_every_event_a_wait_with_paths_waits_for() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), Duration::ZERO);
        let text = "id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - id: w\n    wait_for:\n      paths:\n        - {event: session_started, goto: d}\n        - {event: order_placed, where: \"event.total > 50\", goto: d}\n      timeout: 1d\n  - id: d\n    exit: true\n";
        let j = crate::dsl::parse("j.yaml", text).expect("journey");
        assert!(j.listens_to("order_placed") && j.names_event("session_started"));
        assert!(!j.listens_to("go"));
        catalog
            .publish(&j, &Topics::default(), now)
            .await
            .expect("published");
        let head = catalog.head("j").await.expect("read").expect("a head");
        let listening = head.listening_by_versions.expect("listed");
        assert_eq!(listening.events, ["session_started", "order_placed"]);
        assert!(listening.markers.is_empty());
    }

    const LISTENING: &str = "id: j\nname: J\ntrigger: {event: go}\nexit_when: [{event: cancelled}, {event: refunded, where: \"event.total > 10\"}, {event: moved, where: \"event.cart == trigger.cart\"}]\ngoal: {event: paid, where: \"event.total > 0\", within: 7d}\nsteps:\n  - id: w\n    wait_for: {event: replied, timeout: 1d}\n";

    /// A head keeps the events every version that was the head listens to once entered, and
    /// their exits' and goals' `where` an event alone is judged by (not one reading
    /// `trigger.*`); the active list has them, each marked under a key of its own.
    #[tokio::test]
    async fn a_head_keeps_the_events_every_version_listened_to_once_entered() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), Duration::ZERO);
        let v1 = crate::dsl::parse("j.yaml", LISTENING).expect("journey");
        catalog
            .publish(&v1, &Topics::default(), now)
            .await
            .expect("v1");
        let v2 = LISTENING
            .replace("total > 10", "total > 100")
            .replace("exit_when: [{event: cancelled}, ", "exit_when: [");
        let v2 = crate::dsl::parse("j.yaml", &v2).expect("journey");
        catalog
            .publish(&v2, &Topics::default(), now)
            .await
            .expect("v2");
        let head = catalog.head("j").await.expect("read").expect("a head");
        let listening = head.listening_by_versions.expect("listed");
        assert_eq!(
            listening.events,
            ["refunded", "moved", "paid", "replied", "cancelled"]
        );
        let markers: Vec<(&str, &str, &str)> = listening
            .markers
            .iter()
            .map(|m| (m.kind.as_str(), m.event.as_str(), m.condition.source()))
            .collect();
        assert_eq!(
            markers,
            [
                ("exit", "refunded", "event.total > 100"),
                ("goal", "paid", "event.total > 0"),
                ("exit", "refunded", "event.total > 10"),
            ]
        );
        let active = catalog.active_watching().await.expect("active");
        let mut events = listening.events.clone();
        events.sort_unstable();
        assert_eq!(*active.events_by_versions, events);
        let keys: std::collections::BTreeSet<&str> =
            active.markers.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(keys
            .iter()
            .all(|k| k.starts_with("exit:j:") || k.starts_with("goal:j:")));
    }

    /// A journey published over and over with a new `where` each time lists the newest
    /// versions' markers only, up to [`LISTED_MARKERS`], and never drops the latest's own.
    #[tokio::test]
    async fn a_head_lists_the_newest_versions_markers_only() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), Duration::ZERO);
        let n = LISTED_MARKERS + 8;
        for over in 0..n {
            let text = LISTENING.replace("total > 10", &format!("total > {}", 1000 + over));
            let j = crate::dsl::parse("j.yaml", &text).expect("journey");
            catalog
                .publish(&j, &Topics::default(), now)
                .await
                .expect("publish");
        }
        let head = catalog.head("j").await.expect("read").expect("a head");
        let listening = head.listening_by_versions.expect("listed");
        assert_eq!(listening.markers.len(), LISTED_MARKERS);
        let sources: Vec<&str> = listening
            .markers
            .iter()
            .map(|m| m.condition.source())
            .collect();
        assert_eq!(sources[0], format!("event.total > {}", 1000 + n - 1));
        assert!(!sources.contains(&"event.total > 1000"), "{sources:?}");
        let active = catalog.active_watching().await.expect("active");
        assert_eq!(active.markers.len(), LISTED_MARKERS);
        assert_eq!(active.mark_keys.len(), LISTED_MARKERS);
    }

    /// A head stored before the list existed, over two versions (the first exits on
    /// `cancelled`, the second no more): a publish over it lists what both listen to.
    #[tokio::test]
    async fn a_publish_over_a_head_without_the_list_reads_every_version() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let store = MemoryStore::new();
        let catalog = Catalog::new(Arc::new(store.clone()), Duration::ZERO);
        let v1 = crate::dsl::parse("j.yaml", LISTENING).expect("journey");
        let v2 = LISTENING.replace("exit_when: [{event: cancelled}, ", "exit_when: [");
        let v2 = crate::dsl::parse("j.yaml", &v2).expect("journey");
        half_published(&store, &v1, 1, now).await;
        half_published(&store, &v2, 2, now).await;
        let old = Head {
            id: "j".into(),
            name: "J".into(),
            status: JourneyStatus::Active,
            version: 2,
            digest: v2.digest(),
            published_at: now,
            watched_by_versions: Vec::new(),
            listening_by_versions: None,
            topic: None,
        };
        let record = Record::new(head_key("j"), 1, &old).expect("record");
        store.put(&record, Expect::Absent).await.expect("head");
        let v3 = crate::dsl::parse(
            "j.yaml",
            &LISTENING
                .replace("exit_when: [{event: cancelled}, ", "exit_when: [")
                .replace("total > 0", "total > 1"),
        )
        .expect("journey");
        assert_eq!(
            catalog.publish(&v3, &Topics::default(), now).await,
            Ok((3, true))
        );
        let head = catalog.head("j").await.expect("read").expect("a head");
        let listening = head.listening_by_versions.expect("listed");
        assert!(
            listening.events.iter().any(|e| e == "cancelled"),
            "{:?}",
            listening.events
        );
    }

    /// Makes a [`MemoryStore`]'s reads take a moment, counting how many run at once.
    #[derive(Default)]
    struct Gauged {
        reading: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Hooks for Gauged {
        async fn get(&self, inner: &MemoryStore, key: &Key) -> Result<Option<Record>, StoreError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.reading.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.reading.fetch_sub(1, SeqCst);
            inner.get(key).await
        }
    }

    /// The same over a head of many versions: it reads them all, a few at a time.
    #[tokio::test]
    async fn a_publish_over_a_head_without_the_list_reads_a_few_versions_at_a_time() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let store = MemoryStore::new();
        let gauged = Arc::new(Hooked::new(store.clone(), Gauged::default()));
        let catalog = Catalog::new(gauged.clone(), Duration::ZERO);
        let n = 30;
        // Only the first exits on `cancelled`.
        let v1 = crate::dsl::parse("j.yaml", LISTENING).expect("journey");
        half_published(&store, &v1, 1, now).await;
        let mut last = v1;
        for v in 2..=n {
            let text = LISTENING
                .replace("exit_when: [{event: cancelled}, ", "exit_when: [")
                .replace("total > 0", &format!("total > {v}"));
            last = crate::dsl::parse("j.yaml", &text).expect("journey");
            half_published(&store, &last, v, now).await;
        }
        let old = Head {
            id: "j".into(),
            name: "J".into(),
            status: JourneyStatus::Active,
            version: n,
            digest: last.digest(),
            published_at: now,
            watched_by_versions: Vec::new(),
            listening_by_versions: None,
            topic: None,
        };
        let record = Record::new(head_key("j"), 1, &old).expect("record");
        store.put(&record, Expect::Absent).await.expect("head");
        assert_eq!(
            catalog
                .publish(&journey("new"), &Topics::default(), now)
                .await,
            Ok((n + 1, true))
        );
        let most = gauged.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=OLD_VERSION_READS).contains(&most), "{most} at once");
        let head = catalog.head("j").await.expect("read").expect("a head");
        let listening = head.listening_by_versions.expect("listed");
        assert!(
            listening.events.iter().any(|e| e == "cancelled"),
            "{:?}",
            listening.events
        );
    }

    /// A version keeps its topic's declaration as published, outside the journey's digest; the
    /// same file published under another declaration is a new version holding it.
    #[tokio::test]
    async fn a_version_keeps_its_topics_declaration() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let catalog = Catalog::new(Arc::new(MemoryStore::new()), Duration::ZERO);
        let j = crate::dsl::parse("j.yaml", &J.replace("steps:", "topic: offers\nsteps:"))
            .expect("journey");
        let opt_in =
            Topics::parse_parameter(r#"{"offers": {"name": "Offers", "default": "opt_in"}}"#)
                .expect("topics");
        assert_eq!(
            catalog.publish(&j, &opt_in, now).await.expect("v1"),
            (1, true)
        );
        let v1 = catalog.version("j", 1).await.expect("read").expect("v1");
        assert_eq!(v1.topic.as_ref(), opt_in.get("offers"));
        assert_eq!(v1.digest, j.digest());
        assert_eq!(
            catalog.publish(&j, &opt_in, now).await.expect("same"),
            (1, false)
        );
        // Declared otherwise (or not at all, as a library's runtime may publish): a new version.
        let subscribed =
            Topics::parse_parameter(r#"{"offers": {"name": "Offers"}}"#).expect("topics");
        assert_eq!(
            catalog.publish(&j, &subscribed, now).await.expect("v2"),
            (2, true)
        );
        let v2 = catalog.latest("j").await.expect("read").expect("v2");
        assert_eq!(v2.topic.as_ref(), subscribed.get("offers"));
        assert_eq!(v2.digest, v1.digest);
        // A journey with no topic keeps none, whatever is declared.
        let plain = journey("plain");
        catalog.publish(&plain, &opt_in, now).await.expect("v3");
        let v3 = catalog.latest("j").await.expect("read").expect("v3");
        assert_eq!(v3.topic, None);
    }
}
