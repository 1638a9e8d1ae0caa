//! Erasing a user (`DELETE /v1/users/{id}`, the right to erasure): everything kept about her
//! and the records keyed by her data go, her enrollments end first, and a short-lived mark in
//! place of her profile drops what was queued before; the provider's handles of her push devices
//! (SNS endpoints, which hold their tokens) are deleted. Never touches another user's records or
//! devices.

use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;

use crate::enrollment::Enrollment;
use crate::event::ANONYMOUS_PREFIX;
use crate::profile::Profile;
use crate::provider::SendError;
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
    /// Her push devices' provider handles (SNS platform endpoints) deleted.
    pub endpoints: usize,
    /// Handles the provider could not delete now (throttled, unreachable): each device stays on
    /// her profile with its claim, her profile is not made the mark yet, and the erasure is
    /// `remaining`: the same request again tries them.
    pub endpoints_left: usize,
    /// Handles the provider refused to delete for good (not this deployment's to delete):
    /// logged for an operator, not tried again.
    pub endpoints_refused: usize,
    /// Anonymous users merged into her, erased with her.
    pub anonymous: usize,
    /// The request stopped at its bound ([`DELETES_PER_REQUEST`]), or left push endpoints
    /// (`endpoints_left`): the same request again finishes it.
    pub remaining: bool,
}

impl Runtime {
    /// Erases `user` (see the module): idempotent, and a request that failed or stopped half-way
    /// is finished by the next (a user unknown is erased already: nothing to do).
    ///
    /// Order, so that a retry always finds what is left: her profile is first marked with the
    /// erasure's time (events received before it are dropped from then on), then her
    /// enrollments end (their timers deleted), then the records keyed by her data that only
    /// the profile names (anonymous ids, devices and their provider handles, phone) go, then
    /// the profile becomes the bare mark, and last the rest of her partition goes, a page at a
    /// time, folded into the stats first. A visitor she was whose erasure stopped at the bound
    /// is a bare mark already, and is finished by the next request. A push endpoint the
    /// provider could not delete now keeps her profile from becoming the mark (the rest of her
    /// partition goes all the same): the next request finds its device there again.
    pub async fn erase(&self, user: &str) -> Result<Erasure, RunError> {
        let mut out = Erasure::default();
        let mut budget = DELETES_PER_REQUEST;
        for _ in 0..4 {
            // An attempt that lost a race tries every endpoint left again: counted once.
            out.endpoints_left = 0;
            match self.erase_one(user, true, &mut out, &mut budget).await {
                Err(RunError::Conflict(_)) => continue,
                other => {
                    other?;
                    out.remaining |= out.endpoints_left > 0;
                    tracing::info!(
                        enrollments = out.enrollments,
                        records = out.records,
                        folded = out.folded,
                        claims = out.claims,
                        endpoints = out.endpoints,
                        endpoints_left = out.endpoints_left,
                        endpoints_refused = out.endpoints_refused,
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
        // `endpoints_left`: a push endpoint of hers, or of a visitor she was, is left for the
        // next request (her profile, which names its device or the visitor, is not made the
        // mark then).
        let (at, endpoints_left) = match stored.erased_at.filter(|_| stored.is_erasure_mark()) {
            // Erased already, or stopped half-way after the mark: what is left goes below.
            Some(at) => (at, false),
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
                // Hers and the visitors': her profile lists them, to be followed again.
                let left = out.endpoints_left;
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
                self.drop_claims(user, &marked, out).await?;
                (now, out.endpoints_left > left)
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
        let unmarked = !is_mark || stored.as_ref().is_some_and(|r| r.expires.is_none());
        if unmarked && !endpoints_left {
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

    /// Deletes her push devices' provider handles and claims, and her phone number's record,
    /// each only while it is still hers (a device someone else registered since is theirs, and
    /// so is its endpoint: SNS gives one token one endpoint). A device's handle goes before its
    /// claim, so that one the provider could not delete now keeps its claim, and is found
    /// again, hers, by the next request (counted in `out`).
    async fn drop_claims(
        &self,
        user: &str,
        profile: &Profile,
        out: &mut Erasure,
    ) -> Result<(), RunError> {
        for d in &profile.devices {
            let key = device_key(&d.token);
            let Some(r) = self.store.get(&key).await? else {
                continue;
            };
            if r.parse::<DeviceHolder>()?.user != user {
                continue;
            }
            if d.endpoint.is_some() {
                match self.sender.unregister(d).await {
                    Ok(()) => out.endpoints += 1,
                    Err(SendError::Retryable(reason)) => {
                        tracing::warn!(user, platform = %d.platform, %reason, "a push endpoint could not be deleted now; the same erasure request again tries it");
                        out.endpoints_left += 1;
                        continue;
                    }
                    // Her claim goes all the same (no retry would do better): the log is
                    // what is left of the endpoint's name, for an operator to delete it.
                    Err(SendError::Permanent(reason)) => {
                        let endpoint = d.endpoint.as_deref().unwrap_or_default();
                        tracing::error!(user, platform = %d.platform, endpoint, %reason, "a push endpoint of an erased user was not deleted: the provider refused; an operator deletes it");
                        out.endpoints_refused += 1;
                    }
                }
            }
            match self.store.delete(&key, Expect::Version(r.version)).await {
                Ok(()) => out.claims += 1,
                Err(StoreError::Conflict) => {} // claimed by someone else just now
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(phone) = profile.traits.get("phone").and_then(Value::as_str) {
            let key = phone_key(phone);
            if let Some(r) = self.store.get(&key).await? {
                if r.parse::<String>()? == user {
                    match self.store.delete(&key, Expect::Version(r.version)).await {
                        Ok(()) => out.claims += 1,
                        Err(StoreError::Conflict) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
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
