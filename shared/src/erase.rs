//! Erasing a user (`DELETE /v1/users/{id}`, the right to erasure): everything kept about her
//! and the records keyed by her data go, her enrollments end first, and a short-lived mark in
//! place of her profile drops what was queued before; the provider's handles of her push devices
//! (SNS endpoints, which hold their tokens) are deleted. Never touches another user's records or
//! devices, but for one whose device another user registered as its handle was deleted: his
//! profile forgets the dead handle, for his device to be registered again.

use std::sync::Arc;

use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;

use crate::engine::{Effect, Outgoing};
use crate::enrollment::{Carried, Enrollment, Status};
use crate::event::ANONYMOUS_PREFIX;
use crate::profile::{Device, ErasureLeft, Profile};
use crate::provider::SendError;
use crate::queue::Message;
use crate::runtime::{
    device_key, ledger_key, phone_key, profile_key, timeline_key, user_partition, DeviceHolder,
    Ledger, Outcome, PhoneHolders, RunError, Runtime, KEEP_FOR,
};
use crate::store::{Expect, Record, StoreError};
use crate::timeline::{Entry, What};

/// Why an erasure ended an enrollment: the reason of its timeline's `ended` entry (counted as
/// an exit in the stats).
pub const ERASED_REASON: &str = "user erased";

/// How long the mark of an erasure is kept: longer than an event can wait in a queue (SQS
/// keeps a message 14 days at most) or be retried (about six hours).
pub const MARK_KEPT_FOR: SignedDuration = SignedDuration::from_hours(24 * 15);

/// The most records one erasure request deletes; a user with more is finished by the next
/// request (the answer says `remaining`).
pub const DELETES_PER_REQUEST: usize = 1_000;

/// Records read (then deleted) at a time.
const PAGE: usize = 100;

/// The sends enrollment `e` still owes: its carried outboxes', and its last transition's.
fn owed_sends(e: &Enrollment) -> impl Iterator<Item = &Outgoing> {
    e.carried
        .iter()
        .flat_map(|c| c.effects.iter())
        .chain(
            e.outbox_cause
                .is_some()
                .then_some(&e.outbox)
                .into_iter()
                .flatten(),
        )
        .filter_map(|effect| match effect {
            Effect::Send(o) => Some(o.as_ref()),
            _ => None,
        })
}

/// Whether record `r` of her partition is the send ledger's record of a send her erasure
/// skipped (`erased`, [`Runtime::settle_send_for_erasure`]), kept when the rest of her
/// partition goes: a worker that committed the transition before the erasure ended her
/// enrollment and claims its send after her partition was cleared finds it, and sends nothing
/// (with the record gone, its claim would find none and the message would go out). It holds no
/// data of hers (the send's state and the erasure's reason; its key names her id, the
/// enrollment's, with a keyed journey's value, and the step) and expires with her mark,
/// [`MARK_KEPT_FOR`] from when it was written; one kept longer (an earlier build's,
/// [`KEEP_FOR`]) goes as before.
fn kept_for_late_claims(r: &Record, now: jiff::Timestamp) -> bool {
    let skipped_by_erasure = || {
        matches!(
            r.parse::<Ledger>(),
            Ok(Ledger::Done { outcome: Outcome::Skipped { reason, .. } }) if reason == ERASED_SEND
        )
    };
    r.key.sk.starts_with("L#")
        && r.expires
            .is_some_and(|at| at <= (now + MARK_KEPT_FOR).as_second())
        && skipped_by_erasure()
}

/// The reason of a send's ledger record that her erasure skipped.
const ERASED_SEND: &str = "erased";

/// What a send her erasure skipped came to (`skipped`, [`ERASED_SEND`]): one owed by an
/// enrollment it ended, or one whose claim found her profile sealed ([`Runtime::deliver`]).
pub(crate) fn erased_send() -> Outcome {
    Outcome::Skipped {
        reason: ERASED_SEND.into(),
        detail: Some("the user was erased before the message could go out".into()),
    }
}

/// The send ledger's record at `key` (at `version`) of a send skipped for her erasure
/// ([`erased_send`]), kept when her partition goes, as long as her mark
/// ([`kept_for_late_claims`]).
pub(crate) fn erased_send_record(
    key: crate::store::Key,
    version: u64,
    now: jiff::Timestamp,
) -> Result<Record, StoreError> {
    Ok(Record::new(
        key,
        version,
        &Ledger::Done {
            outcome: erased_send(),
        },
    )?
    .expiring(now + MARK_KEPT_FOR))
}

/// A send of hers is under way in another worker: the erasure is asked again, and then finds
/// what came of it (see [`Runtime::erase`]).
fn send_under_way(user: &str) -> RunError {
    tracing::info!(
        user,
        "an erasure waits for a send of hers under way in another worker"
    );
    RunError::Retry(SEND_UNDER_WAY.into())
}

/// Why an erasure is answered `503` while a send of hers is under way (the API's body says it).
pub const SEND_UNDER_WAY: &str =
    "a message to the user is being sent by another worker: nothing of hers was changed; send the same DELETE again in a minute or two";

/// What an erasure did (counts only: it names no one and holds nothing of hers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// Enrollments ended and deleted.
    pub enrollments: usize,
    /// Records of her partitions deleted (timeline, ledger, inbox, dedup markers, cap windows,
    /// refusals; her profile's mark not counted, nor the ledger's records of the sends the
    /// erasure skipped, kept as long as the mark).
    pub records: usize,
    /// Timeline records counted in the stats before they went.
    pub folded: usize,
    /// Push device claims and phone records of hers deleted.
    pub claims: usize,
    /// Her push devices' provider handles (SNS platform endpoints) deleted.
    pub endpoints: usize,
    /// Handles the provider could not delete now (throttled, unreachable, a 5xx): each is kept
    /// on her mark with its device's claim, and the erasure is `remaining`: the same request
    /// again tries them.
    pub endpoints_left: usize,
    /// Handles the provider refused to delete for good (not this deployment's to delete, or
    /// any other 4xx): logged with the handle for an operator, not tried again.
    pub endpoints_refused: usize,
    /// Handles deleted as another user registered their device (between the check that it was
    /// still hers and the delete of her claim): logged, and his profile's device forgets the
    /// handle, so that his next identify registers it again.
    pub endpoints_taken_over: usize,
    /// Anonymous users merged into her, erased with her.
    pub anonymous: usize,
    /// The request stopped at its bound ([`DELETES_PER_REQUEST`]), or left push endpoints
    /// (`endpoints_left`): the same request again finishes it. Her profile is the mark all the
    /// same: what is left is kept on it, nothing of her data.
    pub remaining: bool,
}

/// What one erasure request carries from user to user and from attempt to attempt: the records
/// it may still delete, and the handles it has deleted (an attempt that lost a race and is
/// tried again, or a device listed twice, does not delete or count one twice).
struct Pass {
    budget: usize,
    unregistered: Vec<String>,
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
    /// time, folded into the stats first. The mark is written by every request: what a request
    /// could not finish (a push handle the provider could not delete now, a visitor she was
    /// whose erasure stopped at the bound) is kept on the mark ([`Profile::erasure_left`]),
    /// nothing else of hers, and the next request finishes it from there.
    pub async fn erase(&self, user: &str) -> Result<Erasure, RunError> {
        // A send of hers that another worker is making now (its claim held): the request is
        // answered `503` before anything of hers changes, to be sent again once that worker
        // recorded what came of it (or its claim lapsed: at most `claim_lease`, 2 minutes).
        // Begun, the erasure could not tell what that send came to, and a worker that fails,
        // times out or holds it would write no record of its transition for the stats.
        // Her enrollments, read once: for this check, then as the first the erasure ends (read
        // again after that, for any a transition wrote meanwhile).
        let enrollments = self.store.query(&user_partition(user), "E#").await?;
        if self.a_send_under_way(&enrollments).await? {
            return Err(send_under_way(user));
        }
        let mut enrollments = Some(enrollments);
        let mut out = Erasure::default();
        let mut pass = Pass {
            budget: DELETES_PER_REQUEST,
            unregistered: Vec::new(),
        };
        for _ in 0..4 {
            // An attempt that lost a race tries every endpoint left again: counted once.
            out.endpoints_left = 0;
            let read = enrollments.take();
            match self.erase_one(user, true, read, &mut out, &mut pass).await {
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
                        endpoints_taken_over = out.endpoints_taken_over,
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

    /// Erases the visitor `anon:{anonymous_id}` that an event of `user` received before her
    /// erasure names as hers (a login or an alias: it carries both ids), which her erasure did
    /// not find (her profile did not list the visitor yet) and which the event, dropped, would
    /// never merge into her: erased as the visitors merged into her are (see
    /// [`Runtime::erase`]), her email and her journeys with it. A visitor merged into another
    /// user is his, and left as it is. Idempotent (the event redelivered finds the visitor's
    /// mark, and finishes what an earlier attempt left); a send of the visitor's under way in
    /// another worker, or an erasure that stopped at its bound, fails the event with a
    /// [`RunError::Retry`], to be handled again.
    pub(crate) async fn erase_visitor_named(
        &self,
        user: &str,
        anonymous_id: &str,
    ) -> Result<(), RunError> {
        let anon = crate::store::join(&[ANONYMOUS_PREFIX, anonymous_id]);
        let (theirs, _) = self.load_profile(&anon).await?;
        if theirs
            .merged_into
            .as_deref()
            .is_some_and(|into| into != user)
        {
            return Ok(());
        }
        tracing::info!(
            user,
            "a visitor named by an event received before the user's erasure is erased with her"
        );
        let erased = match self.erase(&anon).await {
            Err(RunError::Retry(why)) if why == SEND_UNDER_WAY => {
                return Err(RunError::Retry(
                    "a send of a visitor the erased user was is under way: the event that names her is handled again once it is done".into(),
                ));
            }
            other => other?,
        };
        if erased.remaining {
            return Err(RunError::Retry(
                "the erasure of a visitor the user was is not finished yet".into(),
            ));
        }
        Ok(())
    }

    /// Erases `user` as one attempt of a request. `enrollments`: her enrollment records as the
    /// request read them before it changed anything (its check for a send under way), to end
    /// without reading them again.
    async fn erase_one(
        &self,
        user: &str,
        follow_anonymous: bool,
        mut enrollments: Option<Vec<Record>>,
        out: &mut Erasure,
        pass: &mut Pass,
    ) -> Result<(), RunError> {
        let (stored, _) = self.load_profile(user).await?;
        // What this request leaves for the next, kept on the mark.
        let mut left = ErasureLeft::default();
        let from_mark = stored.is_erasure_mark();
        // The erasure's time, and in a first request the version of her profile it marked.
        let (at, marked_version) = match stored.erased_at.filter(|_| from_mark) {
            // Erased already, or stopped half-way after the mark: what an earlier request left
            // (the mark names it) goes here, the rest of her partition below.
            Some(at) => {
                let earlier = &stored.erasure_left;
                if follow_anonymous {
                    left.visitors = self
                        .erase_visitors(user, &earlier.visitors, out, pass)
                        .await?;
                }
                left.endpoints = self
                    .drop_claims(user, &earlier.endpoints, None, out, pass)
                    .await?;
                (at, None)
            }
            None => {
                // Marked with the erasure's time, her data still in it (what the steps below
                // read). Whatever is queued for her from before is dropped from here on.
                let now = self.now();
                let (marked, marked_version) = self
                    .update_profile_versioned(user, |p| p.erased_at = Some(now))
                    .await?;
                // Her journeys end before the budget goes on the visitors she was: a request
                // that stops there sends nothing more of hers until the next.
                out.enrollments += self.end_enrollments(user, enrollments.take()).await?;
                // Hers and the visitors': her profile lists them (and an erasure of her
                // before this profile may have left some), to be followed again.
                if follow_anonymous {
                    let mut visitors = marked.anonymous_ids.clone();
                    for v in &marked.erasure_left.visitors {
                        if !visitors.contains(v) {
                            visitors.push(v.clone());
                        }
                    }
                    left.visitors = self.erase_visitors(user, &visitors, out, pass).await?;
                }
                let mut devices = marked.devices.clone();
                for d in &marked.erasure_left.endpoints {
                    if !devices.iter().any(|x| x.token == d.token) {
                        devices.push(d.clone());
                    }
                }
                let phone = marked.traits.get("phone").and_then(Value::as_str);
                left.endpoints = self.drop_claims(user, &devices, phone, out, pass).await?;
                (now, Some(marked_version))
            }
        };
        out.enrollments += self.end_enrollments(user, enrollments.take()).await?;
        let stored = self.store.get(&profile_key(user)).await?;
        let version = stored.as_ref().map(|r| r.version);
        let now_stored = match &stored {
            Some(r) => r.parse::<Profile>()?,
            None => Profile::new(user),
        };
        let is_mark = now_stored.is_erasure_mark();
        // Another erasure marked her since; or an event sent after the erasure made her a
        // profile again since this request read the mark (her new devices, read by the first
        // branch above, go too); or an event received after the erasure began was applied to
        // the profile this request marked (a device, a visitor merged, a phone: what the steps
        // above went by did not name them): this one starts over, taking them too.
        let changed_since_marked = marked_version.is_some_and(|v| version != Some(v));
        if !is_mark && (from_mark || now_stored.erased_at != Some(at) || changed_since_marked) {
            return Err(RunError::Conflict("profile changed".into()));
        }
        // Her profile becomes the mark, holding what is left for the next request and nothing
        // else, on the version read: an event applied meanwhile (received after the erasure
        // began) is a conflict, and the erasure starts over, taking it too. A mark keeps the
        // expiry it was first written with (one written without, a user unknown's whose first
        // mark is already bare, is given one).
        let erased_at = now_stored.erased_at.unwrap_or(at);
        let mark = Profile::erased_leaving(user, erased_at, left);
        let kept_until = stored
            .as_ref()
            .filter(|_| is_mark)
            .and_then(|r| r.expires)
            .and_then(|s| jiff::Timestamp::from_second(s).ok());
        let expires = kept_until.unwrap_or_else(|| self.now() + MARK_KEPT_FOR);
        for d in &mark.erasure_left.endpoints {
            let endpoint = d.endpoint.as_deref().unwrap_or_default();
            // The last day of the mark: past it, nothing in the store names the endpoint.
            if expires - self.now() < SignedDuration::from_hours(24) {
                tracing::error!(user, platform = %d.platform, endpoint, until = %expires, "a push endpoint of an erased user is still not deleted, and her mark expires within a day: after it, an operator deletes the endpoint");
            } else {
                tracing::warn!(user, platform = %d.platform, endpoint, until = %expires, "a push endpoint of an erased user is kept on her mark for the next erasure request; if none comes before the mark expires, an operator deletes it");
            }
        }
        // Sealed: no send of hers is claimed while it is ([`Runtime::deliver`]). (A mark an
        // earlier build wrote, unsealed, is written again.)
        let sealed = stored.as_ref().is_some_and(|r| r.sealed);
        if !(is_mark && now_stored == mark && kept_until.is_some() && sealed) {
            let record = Record::of(profile_key(user), version.unwrap_or(0) + 1, mark)
                .expiring(expires)
                .sealing(true);
            let expect = version.map(Expect::Version).unwrap_or(Expect::Absent);
            match self.store.put(&record, expect).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => {
                    return Err(RunError::Conflict("profile changed".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.erase_partition(user, out, &mut pass.budget).await
    }

    /// Erases the visitors among `visitors` (anonymous ids) still merged into `user`, or marks
    /// already (an earlier request's erasure of them stopped half-way, and the bare mark names
    /// her no longer). Those the request could not finish (its bound reached, or a push handle
    /// of theirs left) are returned, for her mark to name.
    async fn erase_visitors(
        &self,
        user: &str,
        visitors: &[String],
        out: &mut Erasure,
        pass: &mut Pass,
    ) -> Result<Vec<String>, RunError> {
        let mut left = Vec::new();
        for (i, a) in visitors.iter().enumerate() {
            if out.remaining {
                // The bound reached: the rest wait for the next request.
                left.extend(visitors.iter().skip(i).cloned());
                break;
            }
            let anon = crate::store::join(&[ANONYMOUS_PREFIX, a]);
            let (theirs, _) = self.load_profile(&anon).await?;
            if theirs.merged_into.as_deref() == Some(user) || theirs.is_erasure_mark() {
                let endpoints_left = out.endpoints_left;
                Box::pin(self.erase_one(&anon, false, None, out, pass)).await?;
                out.anonymous += 1;
                if out.remaining || out.endpoints_left > endpoints_left {
                    left.push(a.clone());
                }
            }
        }
        Ok(left)
    }

    /// Deletes her push devices' provider handles and claims, and her phone number's record,
    /// each only while it is still hers (a device someone else registered since is theirs, and
    /// so is its endpoint: SNS gives one token one endpoint). A device's handle goes before its
    /// claim, so that one the provider could not delete now keeps its claim, and is returned
    /// (platform, token and handle only) for her mark to keep: the next request finds it
    /// there, hers still or not (counted in `out`).
    async fn drop_claims(
        &self,
        user: &str,
        devices: &[Device],
        phone: Option<&str>,
        out: &mut Erasure,
        pass: &mut Pass,
    ) -> Result<Vec<Device>, RunError> {
        let mut left: Vec<Device> = Vec::new();
        for d in devices {
            let key = device_key(&d.token);
            let Some(r) = self.store.get(&key).await? else {
                continue;
            };
            if r.parse::<DeviceHolder>()?.user != user {
                continue;
            }
            let mut unregistered = None;
            if let Some(endpoint) = d.endpoint.as_deref() {
                if pass.unregistered.iter().any(|e| e == endpoint) {
                    unregistered = Some(endpoint);
                } else {
                    match self.sender.unregister(d).await {
                        Ok(()) => {
                            out.endpoints += 1;
                            pass.unregistered.push(endpoint.to_string());
                            unregistered = Some(endpoint);
                        }
                        Err(
                            SendError::Retryable(reason) | SendError::PushRetryable { reason, .. },
                        ) => {
                            tracing::warn!(user, platform = %d.platform, %reason, "a push endpoint could not be deleted now; the same erasure request again tries it");
                            out.endpoints_left += 1;
                            left.push(Device {
                                platform: d.platform.clone(),
                                token: d.token.clone(),
                                endpoint: Some(endpoint.to_string()),
                                disabled: false,
                                revived: false,
                                registered_at: None,
                                disabled_at: None,
                                source: Default::default(),
                            });
                            continue;
                        }
                        // Her claim goes all the same (no retry would do better): the log is
                        // what is left of the endpoint's name, for an operator to delete it.
                        Err(
                            SendError::Permanent(reason) | SendError::PushRefused { reason, .. },
                        ) => {
                            tracing::error!(user, platform = %d.platform, endpoint, %reason, "a push endpoint of an erased user was not deleted: the provider refused; an operator deletes it");
                            out.endpoints_refused += 1;
                        }
                    }
                }
            }
            match self.store.delete(&key, Expect::Version(r.version)).await {
                Ok(()) => out.claims += 1,
                // Claimed by someone else just now: after its handle went, his device has none.
                Err(StoreError::Conflict) => {
                    if let Some(endpoint) = unregistered {
                        self.endpoint_taken_over(user, d, endpoint, out).await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(phone) = phone {
            // She leaves her number's record (gone with its last user); another user given the
            // number meanwhile (a conflict) is kept, and she is taken out again.
            let key = phone_key(phone);
            for _ in 0..8 {
                let Some(r) = self.store.get(&key).await? else {
                    break;
                };
                let mut users = r.parse::<PhoneHolders>()?.into_users();
                if !users.iter().any(|u| u == user) {
                    break;
                }
                users.retain(|u| u != user);
                let written = if users.is_empty() {
                    self.store.delete(&key, Expect::Version(r.version)).await
                } else {
                    let record = Record::of(key.clone(), r.version + 1, PhoneHolders::Many(users));
                    self.store.put(&record, Expect::Version(r.version)).await
                };
                match written {
                    Ok(()) => {
                        out.claims += 1;
                        break;
                    }
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(left)
    }

    /// The handle `endpoint` of her device `d` was deleted as another user claimed the device
    /// (between the check that it was hers and the delete of her claim): SNS gives one token one
    /// endpoint, so it was his too. His profile's device forgets it (on its version, as any
    /// profile write), so that his next identify registers the device again and his pushes go
    /// to it from then on. Not caught: his profile written after this look, with the handle his
    /// registration got before the delete; pushes to it are rejected (`NotFound`) until the
    /// device is registered again.
    async fn endpoint_taken_over(
        &self,
        user: &str,
        d: &Device,
        endpoint: &str,
        out: &mut Erasure,
    ) -> Result<(), RunError> {
        let Some(r) = self.store.get(&device_key(&d.token)).await? else {
            return Ok(());
        };
        let holder = r.parse::<DeviceHolder>()?.user;
        if holder == user {
            return Ok(());
        }
        out.endpoints_taken_over += 1;
        tracing::warn!(user, holder = %holder, platform = %d.platform, "a push device was registered by another user as her erasure deleted its endpoint: his device is registered again by his next identify");
        let names = |p: &Profile| {
            p.devices
                .iter()
                .any(|x| x.token == d.token && x.endpoint.as_deref() == Some(endpoint))
        };
        let (theirs, version) = self.load_profile(&holder).await?;
        if version.is_some() && names(&theirs) {
            self.update_profile(&holder, |p| {
                for x in p.devices.iter_mut() {
                    if x.token == d.token && x.endpoint.as_deref() == Some(endpoint) {
                        x.endpoint = None;
                    }
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Ends and deletes each of her enrollments: the timer of an active one's wait is deleted
    /// (one due within two minutes may be on the queue already: it finds no enrollment and is
    /// dropped), an active one is ended first as a transition of its own ([`ERASED_REASON`]),
    /// and what its timeline is still owed is written (see [`Runtime::end_for_erasure`]), so
    /// that the stats count her enrollments as ended; then the record goes on its version, so
    /// that a transition committed meanwhile is read again (and its wait's timer deleted too).
    /// `read`: her enrollment records as the request read them already, if it did (ended
    /// first, instead of reading them again; a change since is a conflict, read again). How
    /// many went.
    async fn end_enrollments(
        &self,
        user: &str,
        mut read: Option<Vec<Record>>,
    ) -> Result<usize, RunError> {
        let mut ended = 0;
        for _ in 0..8 {
            let records = match read.take() {
                Some(records) => records,
                None => self.store.query(&user_partition(user), "E#").await?,
            };
            if records.is_empty() {
                return Ok(ended);
            }
            for r in records {
                let e: Arc<Enrollment> = r.parse_shared()?;
                if let (true, Some(p)) = (e.is_active(), e.pending.as_ref()) {
                    let wake = Message::Wake {
                        user_id: e.user_id.clone(),
                        journey: e.record().into(),
                        enrollment: e.id.clone(),
                        seq: p.seq,
                        at: p.at,
                    };
                    self.cancel_timer(&wake, p.at).await?;
                }
                let Some(version) = self.end_for_erasure(&r, e).await? else {
                    continue; // changed meanwhile: read again
                };
                match self.store.delete(&r.key, Expect::Version(version)).await {
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

    /// Ends enrollment `e` (stored as `r`) for its user's erasure, so that the stats count it
    /// as ended, and returns the version its record is at now (`None`: it changed meanwhile,
    /// to be read again). An active one is ended first, on its version, as a transition of
    /// its own (cause `erase:{enrollment}`): its timeline's `woke` (`erased`) for a wait, and
    /// `ended` ([`ERASED_REASON`]), counted as an exit; what it still owed (its last
    /// transition's outbox, carried ones) is carried with its sends cancelled, so that no
    /// worker that reads it meanwhile sends them. Then every transition whose timeline record
    /// is still owed gets it, written once as any (on its own key, if it is not there yet):
    /// its entries, and for each send what the ledger says it came to, a send that has not gone
    /// out being recorded there first as `skipped` (`erased`), before the enrollment is ended
    /// ([`Runtime::settle_send_for_erasure`]); a transition with a send another worker is
    /// making now is left to that worker's record. No other effect is performed (no wake-up, no update of her
    /// profile). These records are her partition's: the erasure folds them into the stats and
    /// deletes them with the rest, but for the ledger's records of the sends it skipped, kept as
    /// long as her mark for a worker that claims one late ([`kept_for_late_claims`]).
    async fn end_for_erasure(
        &self,
        r: &Record,
        e: Arc<Enrollment>,
    ) -> Result<Option<u64>, RunError> {
        // Her sends still owed are settled in the ledger first, before any worker reads her
        // enrollment ended: one that has not gone out never will (a worker that comes to it
        // finds it skipped, `erased`). One a worker began sending after the request's check
        // ([`Runtime::erase`]: a race of moments) is left to that worker's record.
        for o in owed_sends(&e) {
            self.settle_send_for_erasure(o).await?;
        }
        let (e, version) = if e.is_active() {
            let ended = Arc::new(self.ended_by_erasure(&e));
            let mut record = Record::shared(r.key.clone(), r.version + 1, ended.clone());
            record.expires = r.expires;
            match self.store.put(&record, Expect::Version(r.version)).await {
                Ok(()) => {}
                Err(StoreError::Conflict) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            (ended, r.version + 1)
        } else {
            (e, r.version)
        };
        for c in &e.carried {
            self.record_owed(&e.user_id, &c.enrollment, &c.cause, &c.effects, &c.timeline)
                .await?;
        }
        if let Some(cause) = e.outbox_cause.as_deref() {
            self.record_owed(&e.user_id, &e.id, cause, &e.outbox, &e.outbox_timeline)
                .await?;
        }
        Ok(Some(version))
    }

    /// Active enrollment `e` as its user's erasure ends it (see [`Runtime::end_for_erasure`]).
    fn ended_by_erasure(&self, e: &Enrollment) -> Enrollment {
        let now = self.now();
        let mut ended = e.clone();
        if !e.outbox.is_empty() || !e.outbox_timeline.is_empty() {
            ended.carried.push(Carried {
                enrollment: e.id.to_string(),
                cause: e.outbox_cause.clone().unwrap_or_default(),
                effects: e.outbox.clone(),
                timeline: e.outbox_timeline.clone(),
                cancel_sends: true,
            });
        }
        for c in &mut ended.carried {
            c.cancel_sends = true;
        }
        let step: Arc<str> = Arc::from(e.step.as_str());
        let entry = |what| Entry {
            at: now,
            journey: e.journey.clone(),
            enrollment: e.id.clone(),
            step: Some(step.clone()),
            what,
        };
        let mut timeline = Vec::with_capacity(2);
        if e.pending.is_some() {
            timeline.push(entry(What::Woke {
                how: "erased".into(),
            }));
        }
        timeline.push(entry(What::Ended {
            reason: ERASED_REASON.into(),
        }));
        ended.status = Status::Exited;
        ended.ended_at = Some(now);
        ended.end_reason = Some(ERASED_REASON.into());
        ended.pending = None;
        ended.waiting_for = None;
        ended.in_app.clear();
        ended.outbox = Vec::new();
        ended.outbox_timeline = timeline;
        ended.outbox_cause = Some(crate::store::join(&["erase:", &e.id]));
        ended
    }

    /// Whether a send one of her enrollments (`enrollments`, her `E#` records) owes is claimed
    /// by a worker now (being sent).
    async fn a_send_under_way(&self, enrollments: &[Record]) -> Result<bool, RunError> {
        let now = self.now();
        for r in enrollments {
            let e: Arc<Enrollment> = r.parse_shared()?;
            for o in owed_sends(&e) {
                if let Some(l) = self.store.get(&ledger_key(o)).await? {
                    if matches!(l.parse::<Ledger>()?, Ledger::Claimed { until } if until > now) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// What send `o`, owed by an enrollment her erasure ends, comes to, settled in the send
    /// ledger: what the ledger says it came to; a send no worker claimed, or whose claim
    /// lapsed (its worker gave up), is recorded there as skipped (`erased`), so that no worker
    /// sends it after; `None` for one a worker claimed and may be sending now (its worker
    /// records what happened).
    async fn settle_send_for_erasure(&self, o: &Outgoing) -> Result<Option<Outcome>, RunError> {
        let key = ledger_key(o);
        for _ in 0..8 {
            let now = self.now();
            let stored = self.store.get(&key).await?;
            let expect = match &stored {
                None => Expect::Absent,
                Some(r) => match r.parse::<Ledger>()? {
                    Ledger::Done { outcome } => return Ok(Some(outcome)),
                    Ledger::Claimed { until } if until > now => return Ok(None),
                    Ledger::Claimed { .. } => Expect::Version(r.version),
                },
            };
            let version = stored.as_ref().map_or(1, |r| r.version + 1);
            // Kept when her partition goes, as long as her mark ([`kept_for_late_claims`]).
            let done = erased_send_record(key.clone(), version, now)?;
            match self.store.put(&done, expect).await {
                Ok(()) => return Ok(Some(erased_send())),
                // Claimed or recorded just now: read again.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Retry(format!(
            "send {} kept changing during the erasure",
            o.ledger_key()
        )))
    }

    /// Writes the timeline record a transition (`cause`, of `enrollment`) still owes, unless
    /// it is there already (see [`Runtime::end_for_erasure`]), listed for the stats fold; a
    /// transition one of whose sends a worker may be sending now is left to that worker,
    /// whose record says what became of it.
    async fn record_owed(
        &self,
        user: &str,
        enrollment: &str,
        cause: &str,
        effects: &[Effect],
        timeline: &[Entry],
    ) -> Result<(), RunError> {
        let mut entries = timeline.to_vec();
        let step_at = timeline.last().map_or_else(|| self.now(), |t| t.at);
        for effect in effects {
            let Effect::Send(o) = effect else {
                continue;
            };
            let Some(outcome) = self.settle_send_for_erasure(o).await? else {
                tracing::info!(user, enrollment, "a send of an erased user's enrollment was under way in another worker: its timeline record is left to that worker");
                return Ok(());
            };
            let what = match outcome {
                Outcome::Sent { to, .. } => What::Sent {
                    channel: o.channel,
                    locale: o.locale.clone(),
                    id: o.ledger_key(),
                    to: Some(to.unwrap_or_else(|| o.to.clone())),
                },
                Outcome::Skipped { reason, detail } => What::Skipped {
                    channel: o.channel,
                    reason,
                    detail,
                },
            };
            entries.push(Entry {
                at: step_at,
                journey: o.journey.clone(),
                enrollment: o.enrollment.clone(),
                step: Some(o.step.clone()),
                what,
            });
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.note_shards().await?;
        let record = Record::of(timeline_key(user, enrollment, cause), 1, entries)
            .expiring(self.now() + KEEP_FOR)
            .pending_in(crate::stats::fold_partition(user, self.config.timer_shards));
        match self.store.put(&record, Expect::Absent).await {
            // Written before (by a worker that performed it, or an earlier request).
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every record of her partition but the profile's mark and the send ledger's
    /// records of sends her erasure skipped ([`kept_for_late_claims`]), a page at a time,
    /// within `budget`; timeline records not yet counted are folded into the stats first.
    async fn erase_partition(
        &self,
        user: &str,
        out: &mut Erasure,
        budget: &mut usize,
    ) -> Result<(), RunError> {
        let pk = user_partition(user);
        // The records kept (read again with every page: a page is read from the partition's
        // start, and they are not deleted).
        let mut kept = 0;
        loop {
            let page = self.store.query_first(&pk, "", PAGE + 1 + kept).await?;
            let full = page.len() > PAGE + kept;
            let mut records = Vec::with_capacity(page.len());
            kept = 0;
            for r in page {
                if r.key.sk == "P" {
                    continue;
                }
                if kept_for_late_claims(&r, self.now()) {
                    kept += 1;
                    continue;
                }
                records.push(r);
            }
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
