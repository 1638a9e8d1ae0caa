//! Erasing a user (`DELETE /v1/users/{id}`, the right to erasure): everything kept about her
//! and the records keyed by her data go, her enrollments end first, and a short-lived mark in
//! place of her profile drops what was queued before. Never touches another user's records.

use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;

use crate::enrollment::Enrollment;
use crate::event::ANONYMOUS_PREFIX;
use crate::profile::Profile;
use crate::queue::Message;
use crate::runtime::{
    device_key, phone_key, profile_key, user_partition, DeviceHolder, RunError, Runtime,
};
use crate::store::{Expect, Record, StoreError};

/// How long the mark of an erasure is kept: longer than an event can wait in a queue (SQS
/// keeps a message 14 days at most) or be retried (about six hours).
pub const MARK_KEPT_FOR: SignedDuration = SignedDuration::from_hours(24 * 15);

/// The most records one erasure request deletes; a user with more is finished by the next
/// request (the answer says `remaining`).
pub const DELETES_PER_REQUEST: usize = 1_000;

/// Records read (then deleted) at a time.
const PAGE: usize = 100;

/// What an erasure did (counts only: it names no one and holds nothing of hers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// Enrollments ended and deleted.
    pub enrollments: usize,
    /// Records of her partitions deleted (timeline, ledger, inbox, dedup markers, cap windows,
    /// refusals; her profile's mark not counted).
    pub records: usize,
    /// Timeline records counted in the stats before they went.
    pub folded: usize,
    /// Push device claims and phone records of hers deleted.
    pub claims: usize,
    /// Anonymous users merged into her, erased with her.
    pub anonymous: usize,
    /// The request stopped at its bound ([`DELETES_PER_REQUEST`]): the same request again
    /// finishes it.
    pub remaining: bool,
}

impl Runtime {
    /// Erases `user` (see the module): idempotent, and a request that failed or stopped half-way
    /// is finished by the next (a user unknown is erased already: nothing to do).
    ///
    /// Order, so that a retry always finds what is left: her profile is first marked with the
    /// erasure's time (events received before it are dropped from then on), then her
    /// enrollments end (their timers deleted), then the records keyed by her data that only
    /// the profile names (anonymous ids, devices, phone) go, then the profile becomes the bare
    /// mark, and last the rest of her partition goes, a page at a time, folded into the stats
    /// first. A visitor she was whose erasure stopped at the bound is a bare mark already, and
    /// is finished by the next request.
    pub async fn erase(&self, user: &str) -> Result<Erasure, RunError> {
        let mut out = Erasure::default();
        let mut budget = DELETES_PER_REQUEST;
        for _ in 0..4 {
            match self.erase_one(user, true, &mut out, &mut budget).await {
                Err(RunError::Conflict(_)) => continue,
                other => {
                    other?;
                    tracing::info!(
                        enrollments = out.enrollments,
                        records = out.records,
                        folded = out.folded,
                        claims = out.claims,
                        anonymous = out.anonymous,
                        remaining = out.remaining,
                        "user erased"
                    );
                    return Ok(out);
                }
            }
        }
        Err(RunError::Retry(
            "the user's profile kept changing during the erasure".into(),
        ))
    }

    async fn erase_one(
        &self,
        user: &str,
        follow_anonymous: bool,
        out: &mut Erasure,
        budget: &mut usize,
    ) -> Result<(), RunError> {
        let (stored, _) = self.load_profile(user).await?;
        let at = match stored.erased_at.filter(|_| stored.is_erasure_mark()) {
            // Erased already, or stopped half-way after the mark: what is left goes below.
            Some(at) => at,
            None => {
                // Marked with the erasure's time, her data still in it (what the steps below
                // read). Whatever is queued for her from before is dropped from here on.
                let now = self.now();
                let marked = self
                    .update_profile(user, |p| p.erased_at = Some(now))
                    .await?;
                // Her journeys end before the budget goes on the visitors she was: a request
                // that stops there sends nothing more of hers until the next.
                out.enrollments += self.end_enrollments(user).await?;
                if follow_anonymous {
                    for a in &marked.anonymous_ids {
                        let anon = crate::store::join(&[ANONYMOUS_PREFIX, a]);
                        let (theirs, _) = self.load_profile(&anon).await?;
                        // Merged into her; or a mark already, its erasure stopped half-way
                        // by an earlier request (the bare mark names her no longer).
                        if theirs.merged_into.as_deref() == Some(user) || theirs.is_erasure_mark() {
                            Box::pin(self.erase_one(&anon, false, out, budget)).await?;
                            out.anonymous += 1;
                            if out.remaining {
                                return Ok(());
                            }
                        }
                    }
                }
                out.claims += self.drop_claims(user, &marked).await?;
                now
            }
        };
        out.enrollments += self.end_enrollments(user).await?;
        let stored = self.store.get(&profile_key(user)).await?;
        let version = stored.as_ref().map(|r| r.version);
        let now_stored = match &stored {
            Some(r) => r.parse::<Profile>()?,
            None => Profile::new(user),
        };
        let is_mark = now_stored.is_erasure_mark();
        if !is_mark && now_stored.erased_at != Some(at) {
            // Another erasure marked her since: this one starts over.
            return Err(RunError::Conflict("profile changed".into()));
        }
        // A mark always expires: one written without (a user unknown, whose first mark is
        // already bare) is written again with its time to live.
        if !is_mark || stored.as_ref().is_some_and(|r| r.expires.is_none()) {
            // Her profile becomes the bare mark, on the version read: an event applied
            // meanwhile (received after the erasure began) is a conflict, and the erasure
            // starts over, taking it too.
            let erased_at = now_stored.erased_at.unwrap_or(at);
            let mark = Record::of(
                profile_key(user),
                version.unwrap_or(0) + 1,
                Profile::erased(user, erased_at),
            )
            .expiring(self.now() + MARK_KEPT_FOR);
            let expect = version.map(Expect::Version).unwrap_or(Expect::Absent);
            match self.store.put(&mark, expect).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => {
                    return Err(RunError::Conflict("profile changed".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.erase_partition(user, out, budget).await
    }

    /// Deletes her push device claims and her phone number's record, each only while it is
    /// still hers (a device someone else registered since is theirs). How many went.
    async fn drop_claims(&self, user: &str, profile: &Profile) -> Result<usize, RunError> {
        let mut dropped = 0;
        for d in &profile.devices {
            let key = device_key(&d.token);
            let Some(r) = self.store.get(&key).await? else {
                continue;
            };
            if r.parse::<DeviceHolder>()?.user != user {
                continue;
            }
            match self.store.delete(&key, Expect::Version(r.version)).await {
                Ok(()) => dropped += 1,
                Err(StoreError::Conflict) => {} // claimed by someone else just now
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(phone) = profile.traits.get("phone").and_then(Value::as_str) {
            let key = phone_key(phone);
            if let Some(r) = self.store.get(&key).await? {
                if r.parse::<String>()? == user {
                    match self.store.delete(&key, Expect::Version(r.version)).await {
                        Ok(()) => dropped += 1,
                        Err(StoreError::Conflict) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(dropped)
    }

    /// Ends and deletes each of her enrollments: the timer of an active one's wait is deleted
    /// (one due within two minutes may be on the queue already: it finds no enrollment and is
    /// dropped), and the record goes on its version, so that a transition committed meanwhile
    /// is read again (and its wait's timer deleted too). How many went.
    async fn end_enrollments(&self, user: &str) -> Result<usize, RunError> {
        let mut ended = 0;
        for _ in 0..8 {
            let records = self.store.query(&user_partition(user), "E#").await?;
            if records.is_empty() {
                return Ok(ended);
            }
            for r in records {
                let e: Enrollment = r.parse()?;
                if let (true, Some(p)) = (e.is_active(), e.pending.as_ref()) {
                    let wake = Message::Wake {
                        user_id: e.user_id.clone(),
                        journey: e.journey.clone(),
                        enrollment: e.id.clone(),
                        seq: p.seq,
                        at: p.at,
                    };
                    self.cancel_timer(&wake, p.at).await?;
                }
                match self.store.delete(&r.key, Expect::Version(r.version)).await {
                    Ok(()) => ended += 1,
                    Err(StoreError::Conflict) => {} // read again
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(RunError::Retry(
            "the user's enrollments kept changing during the erasure".into(),
        ))
    }

    /// Deletes every record of her partition but the profile's mark, a page at a time, within
    /// `budget`; timeline records not yet counted are folded into the stats first.
    async fn erase_partition(
        &self,
        user: &str,
        out: &mut Erasure,
        budget: &mut usize,
    ) -> Result<(), RunError> {
        let pk = user_partition(user);
        loop {
            let page = self.store.query_first(&pk, "", PAGE + 1).await?;
            let full = page.len() > PAGE;
            let records: Vec<Record> = page.into_iter().filter(|r| r.key.sk != "P").collect();
            if records.is_empty() {
                return Ok(());
            }
            if *budget == 0 {
                out.remaining = true;
                return Ok(());
            }
            let records: Vec<Record> = records.into_iter().take(*budget).collect();
            out.folded += self.fold_records(&records).await?;
            let keys: Vec<_> = records.iter().map(|r| r.key.clone()).collect();
            self.store.delete_many(&keys).await?;
            out.records += keys.len();
            *budget -= keys.len();
            if !full && *budget > 0 {
                // That page held the rest (a record written meanwhile is read next time).
                return Ok(());
            }
        }
    }
}
