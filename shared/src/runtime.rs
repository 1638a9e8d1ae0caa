//! The runtime: applies queue messages (events, wake-ups, entries) through the engine and performs
//! the effects over the ports. Every enrollment change is a conditional write that also stores the
//! transition's effects (the outbox); a message that comes again replays them, and the send ledger,
//! keyed by (enrollment, step, visit), makes sure no message goes out twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Signer;
use crate::catalog::{Catalog, Published};
use crate::clock::Clock;
use crate::duration::Duration;
use crate::engine::{self, Ctx, Effect, Outgoing, Transition};
use crate::enrollment::{escape_key, Carried, Enrollment, LastEntry, Status, TriggerEvent};
use crate::event::{Event, Kind};
use crate::journey::{Channel, Journey, JourneyStatus, Listened, MarkKind, Reentry, TriggerKind};
use crate::profile::{Address, Profile};
use crate::provider::{Receipt, SendError, Sender};
use crate::queue::{Message, Outbound, Queue, QueueError, QueueName, ScanJob, MAX_DELAY_SECS};
use crate::store::{join, segment_of, Expect, Handle, Key, Page, Part, Record, Store, StoreError};
use crate::timeline::{Entry, What};
use crate::topic::{Declared, TopicDefault, Topics};

/// How a message failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// Worth another try later (store or provider busy, lost a race): leave it on the queue.
    #[error("retry later: {0}")]
    Retry(String),
    /// Can never succeed (unreadable, or names a journey version that does not exist): to the DLQ.
    #[error("poison message: {0}")]
    Poison(String),
    /// Lost a conditional write to a concurrent writer: run the message again.
    #[error("conditional write lost: {0}")]
    Conflict(String),
    /// Not to be tried again before `at`: a send that a retry finds inside the user's quiet
    /// hours (a provider outage that ran into her night). [`Runtime::handle`] queues the
    /// message for then without counting an attempt; elsewhere it is a [`RunError::Retry`].
    #[error("held until {at}: {why}")]
    Later { why: String, at: Timestamp },
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(m) => RunError::Poison(m),
            StoreError::TooLarge(m) => RunError::Poison(m),
            StoreError::Conflict => RunError::Conflict("the record changed".into()),
            other => RunError::Retry(other.to_string()),
        }
    }
}

impl From<QueueError> for RunError {
    fn from(e: QueueError) -> Self {
        RunError::Retry(e.to_string())
    }
}

/// At most `max` messages on a channel per `per`, across journeys.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub max: u32,
    pub per: Duration,
}

/// Parses caps written `push=3/1d,email=2/1d` (channel=max/period; empty for none).
pub fn parse_caps(text: &str) -> Result<BTreeMap<Channel, Cap>, String> {
    let mut caps = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad =
            || format!("`{part}` is not a cap: write it as channel=max/period, e.g. push=3/1d");
        let (channel, rule) = part.split_once('=').ok_or_else(bad)?;
        let (max, per) = rule.split_once('/').ok_or_else(bad)?;
        let channel = Channel::parse(channel.trim()).ok_or_else(bad)?;
        let max: u32 = max.trim().parse().map_err(|_| bad())?;
        // As `waymark.yaml`'s `caps` refuses `max: 0` (the CLI's settings).
        if max == 0 {
            return Err(format!(
                "`{part}`: a max of 0 would skip every {channel} message as `capped`: a cap limits how many go out, it does not switch a channel off; write 1 or more, e.g. {channel}=1/{}, and to send no {channel}, take it out of the journeys' sends, or let each user say no with an opt-out or a subscription topic",
                per.trim()
            ));
        }
        let per: Duration = per
            .trim()
            .parse()
            .map_err(|e: crate::duration::DurationError| format!("`{part}`: {}", e.message))?;
        caps.insert(channel, Cap { max, per });
    }
    Ok(caps)
}

/// Caps written as [`parse_caps`] reads them (the stack's `FrequencyCaps` parameter).
pub fn caps_parameter(caps: &BTreeMap<Channel, Cap>) -> String {
    caps.iter()
        .map(|(channel, cap)| format!("{channel}={}/{}", cap.max, cap.per))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Clone)]
pub struct Config {
    /// Waits up to this long ride the queue, in hops of its longest delay ([`Queue::max_delay_secs`]:
    /// SQS's 15 minutes; `waymark dev`'s queue takes a wait in one); longer ones become timers.
    pub hop_limit: SignedDuration,
    /// Timer partitions per minute (spreads a million timers due in one minute).
    pub timer_shards: u32,
    pub caps: BTreeMap<Channel, Cap>,
    /// The subscription topics journeys name (`waymark.yaml`'s `topics`; a deployment's
    /// `SUBSCRIPTION_TOPICS`): each one's default and the name people read.
    pub topics: Topics,
    /// How a send takes a journey's topic that neither `topics` nor the journey's published
    /// version declares (see [`crate::topic::Declared`]): `opt_in` in a deployment (the AWS
    /// functions, `waymark dev`), so a consent never given is never assumed; `subscribed` (the
    /// default) in a simulation or test given no settings, where nothing reaches anyone.
    pub undeclared_topic: TopicDefault,
    /// Base URL of the API, for unsubscribe links; with `signer`.
    pub public_url: Option<String>,
    pub signer: Option<Arc<Signer>>,
    /// How long a send claim keeps others off before it counts as abandoned.
    pub claim_lease: SignedDuration,
    /// How long message ids are remembered for dedup (a handled event's duplicate marker, and
    /// the refusals kept with it): never less than a message can come back for
    /// ([`MESSAGES_COME_BACK_FOR`], 15 days), a shorter one is taken as that.
    pub dedup_for: SignedDuration,
    /// The most minutes one scheduler tick catches up on (a scheduler that was off a long time
    /// catches up over several ticks).
    pub max_catch_up_minutes: i64,
    /// How long one scheduler tick may spend catching up (wall time, not the clock's): once
    /// it is spent, the tick keeps the minutes it finished and leaves the rest to the next, so
    /// that a long catch-up is not cut off by the function's timeout (then every run would start
    /// over and none would finish). `None`: no limit (the simulation, for the same output on
    /// any machine).
    pub tick_budget: Option<std::time::Duration>,
    /// At most this many records a scan page (schedule runs, stop sweeps); DynamoDB also stops
    /// a page at 1 MB read.
    pub scan_page: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hop_limit: SignedDuration::from_mins(30),
            timer_shards: crate::shards::DEFAULT,
            caps: BTreeMap::new(),
            topics: Topics::default(),
            undeclared_topic: TopicDefault::Subscribed,
            public_url: None,
            signer: None,
            claim_lease: SignedDuration::from_secs(120),
            dedup_for: MESSAGES_COME_BACK_FOR,
            max_catch_up_minutes: 24 * 60,
            // Two thirds of the scheduler function's 30 s timeout (template.yaml).
            tick_budget: Some(std::time::Duration::from_secs(20)),
            scan_page: 1_000,
        }
    }
}

/// The ledger's record of one send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Ledger {
    /// Someone is sending it now; others keep off until `until`.
    Claimed { until: Timestamp },
    /// Done, with what happened.
    Done { outcome: Outcome },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Went out at `at`; `to`, the address it went to when that is not the one it was made for
    /// (tried again after she changed hers: [`Runtime::judged_late`]), so that a repeat reads
    /// where it went from the ledger.
    Sent {
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Address>,
    },
    Skipped {
        reason: String,
        detail: Option<String>,
    },
}

pub fn profile_key(user: &str) -> Key {
    /// The profile's sort key, made once (a profile is read or written a few times a message).
    static P: std::sync::OnceLock<Part> = std::sync::OnceLock::new();
    Key::new(
        user_partition(user),
        P.get_or_init(|| Part::from("P")).clone(),
    )
}
/// The partition of everything about one user. A message is about one user, and handling it
/// makes that user's keys a few dozen times: the last partition made is kept (one per thread)
/// and shared while the user is the same.
pub(crate) fn user_partition(user: &str) -> Part {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Part>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some(p) if p.strip_prefix("U#") == Some(user) => p.clone(),
            _ => {
                let p = Part::join(&["U#", user]);
                *last = Some(p.clone());
                p
            }
        }
    })
}
/// The key of the user's enrollment record `record` ([`Enrollment::record_of`]: a journey's id,
/// or `{journey}#{key}` for a keyed enrollment).
fn enrollment_key(user: &str, record: &str) -> Key {
    Key::new(user_partition(user), Part::join(&["E#", record]))
}
/// Where the value's [`LastEntry`] of the user's keyed record `record` is kept:
/// `K#{journey}#{value}`, beside the record, under a prefix that an event's read of her
/// enrollments (`E#`) does not cover.
fn last_entry_key(user: &str, record: &str) -> Key {
    Key::new(user_partition(user), Part::join(&["K#", record]))
}
/// The key of enrollment `e`'s record: [`enrollment_key`] of [`Enrollment::record`], joined in
/// one piece (an enrollment is written a few times a message).
fn enrollment_key_of(e: &Enrollment) -> Key {
    let record = match e.key.as_deref() {
        None => Part::join(&["E#", &*e.journey]),
        Some(k) => Part::join(&["E#", &*e.journey, "#", &escape_key(k)]),
    };
    Key::new(user_partition(&e.user_id), record)
}
fn dedup_key(user: &str, id: &str) -> Key {
    Key::new(user_partition(user), Part::join(&["D#", id]))
}
pub(crate) fn ledger_key(o: &Outgoing) -> Key {
    Key::new(user_partition(&o.user_id), o.ledger_key_with("L#"))
}
fn cap_key(user: &str, channel: Channel) -> Key {
    Key::new(user_partition(user), Part::join(&["C#", channel.as_str()]))
}
fn inbox_key(o: &Outgoing) -> Key {
    Key::new(user_partition(&o.user_id), o.ledger_key_with("I#"))
}
/// The key of the timeline record of the transition that `cause` made of `enrollment`:
/// `T#{enrollment}#{cause}`. A cause can hold several ids (a date wait moved by a wake-up's
/// `update`, `wake:{id}:{seq}:moved:{id}`, moved again by the update it then reaches), so one
/// that would pass DynamoDB's sort key is shortened ([`crate::store::fitted`]); the
/// enrollment's id stays whole, as a conversion looks its records up by it.
pub(crate) fn timeline_key(user: &str, enrollment: &str, cause: &str) -> Key {
    let room = crate::store::MAX_SORT_KEY_BYTES.saturating_sub(enrollment.len() + "T##".len());
    Key::new(
        user_partition(user),
        Part::join(&["T#", enrollment, "#", &crate::store::fitted(cause, room)]),
    )
}
/// Joins a message's id and the enrollment whose later `update` overwrote what another one set
/// as it was taken: the cause of the record telling the other one (see
/// [`Runtime::tell_overwritten`]).
const OVERWRITTEN: &str = ":overwritten:";

/// Where the refused entries of message `message_id` (a schedule's or an inactivity check's,
/// which made no event) are kept ([`Runtime::keep_refusal`]).
fn refusal_key(user: &str, message_id: &str) -> Key {
    Key::new(user_partition(user), join(&["R#", message_id]))
}
/// The marker saying that scan page message `id` of `job` was read ([`Runtime::scan_page`]).
fn scan_marker_key(job: &ScanJob, id: &str) -> Key {
    Key::new(join(&["SCAN#", &job.id()]), id)
}
/// A timer: message `id`, due in `minute`, kept in that minute's partition `shard`.
fn timer_key(minute: i64, shard: u32, id: String) -> Key {
    Key::new(timer_partition(minute, shard), id)
}
/// Whose a push device is: the user who registered it last (see [`Runtime::claim_device`]).
/// Kept in one of [`DEVICE_PARTITIONS`] partitions by a hash of the token (a partition a device
/// would be a store partition a user more, for a record of a few bytes), under its token
/// (APNs 64 characters, FCM about 160) or, for one longer than a sort key may hold
/// (DynamoDB: 1 KB), its SHA-256; the prefixes keep the two apart.
pub(crate) fn device_key(token: &str) -> Key {
    const LONGEST: usize = 512;
    let mut digits = [0; 20];
    let shard = crate::store::decimal(u64::from(segment_of(token, DEVICE_PARTITIONS)), &mut digits);
    let pk = Part::join(&["D#", shard]);
    if token.len() <= LONGEST {
        return Key::new(pk, Part::join(&["T#", token]));
    }
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(66);
    hex.push_str("H#");
    for b in hash {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 15)]));
    }
    Key::new(pk, hex)
}

/// The partitions device holders are kept in: a claim is a write to one, so 16 take 16,000
/// claims a second in DynamoDB (1,000 writes a second a partition key).
const DEVICE_PARTITIONS: u32 = 16;

/// What brings push devices to a profile update ([`Runtime::update_profile_with`]), and when
/// it happened (the time a device new to the user is claimed at).
#[derive(Debug, Clone, Copy)]
enum Registering {
    /// An identify: its `push_tokens` and its device's `context.device.token`. Every device of
    /// the user that has no endpoint yet (or was revived) is registered.
    Identify(Timestamp),
    /// Another event (a track, a page, a screen) whose device sent its token as
    /// `context.device.token`: registered only when the event changed the user's devices, and
    /// claimed only once registered (the provider down leaves it out, the event going on).
    Device(Timestamp),
}

impl Registering {
    fn at(self) -> Timestamp {
        match self {
            Registering::Identify(at) | Registering::Device(at) => at,
        }
    }
}

/// A push device's holder (see [`device_key`]) and when the event that registered it to her
/// happened: an identify older than that (a retry, one delivered late) does not take it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceHolder {
    pub(crate) user: String,
    at: Timestamp,
}
/// The record of the users given a phone number (see [`PhoneHolders`]).
pub(crate) fn phone_key(phone: &str) -> Key {
    Key::new(Part::join(&["N#", phone]), "U")
}

/// How many users a number's record keeps (see [`PhoneHolders`]): a number is one person's, a
/// household's or a shop's, and a record must stay small.
pub const MAX_PHONE_HOLDERS: usize = 10;

/// The users given a phone number (an identify's `phone`, an `update` step's), the latest
/// [`MAX_PHONE_HOLDERS`], oldest first: the SMS opt-out sync suppresses each who still has it
/// ([`Runtime::sync_sms_opt_outs`]). A record written before several were kept holds one
/// user's id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum PhoneHolders {
    One(String),
    Many(Vec<String>),
}

impl PhoneHolders {
    pub(crate) fn into_users(self) -> Vec<String> {
        match self {
            PhoneHolders::One(u) => vec![u],
            PhoneHolders::Many(users) => users,
        }
    }
}
/// A journey's counters as one item (folds before 2026-12-03 wrote it; it is still read).
pub fn stats_key(journey: &str) -> Key {
    Key::new(Part::join(&["S#", journey]), "C")
}
/// A journey's counters folded from fold partition `shard`: each partition adds to its own, so
/// the partitions fold at once without their transactions conflicting on one item.
pub fn stats_shard_key(journey: &str, shard: u32) -> Key {
    Key::new(
        Part::join(&["S#", journey]),
        Part::join(&["C#", &shard.to_string()]),
    )
}
/// Every item a journey's counters are the sum of, with `shards` fold partitions.
pub fn stats_keys(journey: &str, shards: u32) -> Vec<Key> {
    std::iter::once(stats_key(journey))
        .chain((0..shards.max(1)).map(|s| stats_shard_key(journey, s)))
        .collect()
}
fn timer_partition(minute: i64, shard: u32) -> Part {
    let (mut m, mut s) = ([0; 20], [0; 20]);
    let sign = if minute < 0 { "-" } else { "" };
    Part::join(&[
        "T#",
        sign,
        crate::store::decimal(minute.unsigned_abs(), &mut m),
        "#",
        crate::store::decimal(u64::from(shard), &mut s),
    ])
}

/// How many times the sweep puts off a timer it cannot read, an hour each, before keeping it
/// under [`DEAD_TIMERS`] ([`Runtime::put_off`]): a day, longer than a rollout.
const TIMER_PUT_OFFS: u64 = 24;

/// Where the sweep keeps the timers it cannot move to their queue ([`Runtime::put_off`]).
pub const DEAD_TIMERS: &str = "DEAD#T";

tokio::task_local! {
    /// When the sends of the message being handled must have started by ([`sending_until`]).
    static SENDS_UNTIL: tokio::time::Instant;
}

/// Runs `f` (the handling of one message) starting no send after `until`: a send that could
/// not finish before its invocation ends is not begun (one cut off after its provider took
/// it, but before the ledger says so, would go out again with the message's redelivery). The
/// sends left go out with the message's retry.
pub async fn sending_until<F: std::future::Future>(until: tokio::time::Instant, f: F) -> F::Output {
    SENDS_UNTIL.scope(until, f).await
}

/// Whether the message being handled may start no more sends ([`sending_until`]); checked
/// again by a sender between a push's devices, and between a webhook's secrets and its call.
pub(crate) fn out_of_sending_time() -> bool {
    SENDS_UNTIL
        .try_with(|until| tokio::time::Instant::now() >= *until)
        .unwrap_or(false)
}

/// Why a claimed send was given back: its invocation is ending ([`Runtime::give_back`]).
fn not_begun(o: &Outgoing) -> RunError {
    RunError::Retry(format!(
        "send {} not begun: its invocation is ending",
        o.ledger_key()
    ))
}

/// What becomes of a send tried again late ([`Runtime::judged_late`]).
enum Late {
    /// Held until the user's quiet hours end.
    Hold { until: Timestamp, why: String },
    /// Skipped, for `reason` (an opt-out, a suppression or her address gone since it was made,
    /// or quiet hours longer than its `send_within`), which the detail explains.
    Skip { reason: String, detail: String },
    /// Sent now, to `to`: her address on its channel as her profile has it now, which changed
    /// since it was made (another email or phone; for a push, her devices not disabled now).
    Readdressed { to: Address },
}

/// Why the sweep cannot move a timer to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// This engine cannot read it: a newer engine may.
    Unreadable,
    /// Its queue refuses its message: it always will.
    Refused,
}

/// What every [`timer_partition`] of `minute` starts with.
fn timer_partition_prefix(minute: i64) -> String {
    join(&["T#", &minute.to_string(), "#"])
}
/// How long a send's ledger entry, a transition's timeline record and an in-app message in the
/// user's inbox are kept (DynamoDB's TTL then deletes them; the stats keep the timeline's
/// counts). Longer than any wait (a year) plus quiet hours and retries: while an enrollment
/// waits, its last transition's timeline record says that transition's outbox was performed,
/// and its ledger entries that its sends went out.
pub const KEEP_FOR: SignedDuration = SignedDuration::from_hours(24 * 400);
const _: () = assert!(
    KEEP_FOR.as_secs() > crate::duration::Duration::MAX.as_secs() as i64 + 30 * 86_400,
    "records an active enrollment relies on must outlive its longest wait"
);
/// How much longer than [`KEEP_FOR`] a keyed value's [`LastEntry`] is kept after its ended
/// enrollment's record (see [`Runtime::kept_until`]): DynamoDB deletes an expired item some
/// time after its expiry, in no set order, and returns it until then, so what names the
/// enrollment's id must go well before the number it took is forgotten.
const KEYED_TTL_SLACK: SignedDuration = SignedDuration::from_hours(24 * 30);
/// How long after it was sent a message can still come: a queue keeps it a week, its
/// dead-letter queue until 14 days after it was sent (`template.yaml`), from where it can be
/// redriven; and a day more. A handled message's duplicate marker lives that long at least
/// ([`Runtime::remembered_for`]): redriven, it does nothing again. An ended keyed enrollment's
/// record outlives its trigger by that too ([`Runtime::kept_until`]): a trigger that failed
/// after it entered, before it was marked handled, and comes back then finds the enrollment it
/// made, and enters nothing.
const MESSAGES_COME_BACK_FOR: SignedDuration = SignedDuration::from_hours(24 * 15);
const CURSOR: (&str, &str) = ("SCHED", "cursor");
/// Where the SMS opt-out sync is in the provider's list (see [`Runtime::sync_sms_opt_outs`]).
const OPT_OUTS: (&str, &str) = ("SCHED", "sms-opt-outs");
/// Partition of the markers saying which stopped journey version's enrollments were swept.
const STOPS: &str = "STOPS";
/// How many times a message that failed for a passing reason is queued again (see
/// [`Runtime::handle`]).
pub const RETRY_ATTEMPTS: u32 = 10;

/// How long after its failure a message's `attempt`th retry comes: `first` (a failed send's
/// claim lease, so that the claim has lapsed: 2 minutes), then twice as long each time, at most
/// an hour, and up to a fifth more, the same for the same message and attempt (many messages
/// failing together, say throttled by a provider, come back spread out).
pub fn retry_delay(message_id: &str, attempt: u32, first: SignedDuration) -> SignedDuration {
    let first = first.as_secs().clamp(1, 3600);
    let base = (first << attempt.saturating_sub(1).min(12)).min(3600);
    let spread = i64::from(segment_of(
        &join(&[message_id, "#", &attempt.to_string()]),
        1000,
    ));
    SignedDuration::from_secs(base + base * spread / 5000)
}

/// The segments a scan job is read in, in parallel (DynamoDB parallel scan).
const SCAN_SEGMENTS: u32 = 4;
/// Timers a sweep sends and deletes before it looks at its time again (see `sweep_minute`).
const SWEEP_CHUNK: usize = 500;
/// Timer deletes a sweep has in flight at once.
const DELETES_AT_ONCE: usize = 50;

/// What a sweep of one minute's timers did: how many it moved, and whether it got to the end.
struct Swept {
    moved: usize,
    finished: bool,
}

/// Waits shorter than this never become timers (see `schedule`).
const MIN_TIMER_SECS: i64 = 300;

/// Whether a journey that is not active now (closed or stopped) still has its inactivity
/// checks looked at again, for the day it opens again: for a year from the version that closed
/// it; after that, a user's next activity arms her check.
pub(crate) fn still_checked(p: &Published, now: Timestamp) -> bool {
    now.duration_since(p.published_at) < SignedDuration::from_hours(24 * 366)
}

/// How long after an activity is received the inactivity check it arms comes, at the soonest:
/// one stamped a `for` ago or more (a phone flushing its offline queue one request an event,
/// oldest first; a backfill) would otherwise be judged at once, before the rest of the queue,
/// on its way, is applied, and would enter a user whose latest activity came a second later.
/// Five minutes: the rest of a flushed queue lands within seconds, and an event of it whose
/// delivery failed comes back from the events queue within its visibility timeout (180 s); a
/// check that comes five minutes late is nothing to a `for` of days (a shorter `for` waits
/// its own length at most: see [`inactivity_check_at`]).
pub const CHECK_SETTLE: SignedDuration = SignedDuration::from_mins(5);

/// When the inactivity check armed by an activity that `happened` and was `received` is due,
/// for a `for` of `wait`: `wait` after it happened, and no sooner than [`CHECK_SETTLE`] (or
/// `wait`, if shorter) after it was received. The same for each delivery of the event (its
/// times are in it), so a retry finds the check its first delivery kept in the profile.
pub fn inactivity_check_at(
    happened: Timestamp,
    received: Timestamp,
    wait: SignedDuration,
) -> Timestamp {
    (happened + wait).max(received + wait.min(CHECK_SETTLE))
}

fn minute_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

/// `name` as an `Arc`: the one an entry of `entries` holds already, else a new one.
fn shared(entries: &[Entry], field: impl Fn(&Entry) -> Option<&Arc<str>>, name: &str) -> Arc<str> {
    entries
        .iter()
        .filter_map(field)
        .find(|n| n.as_ref() == name)
        .cloned()
        .unwrap_or_else(|| Arc::from(name))
}

/// What a withdrawal says of an in-app message whose send had not written it yet.
const NOT_IN_INBOX_YET: &str = "it had not reached the inbox yet: it is kept out of it";

/// An in-app message as the inbox shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub id: String,
    pub at: Timestamp,
    pub journey: String,
    pub step: String,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// When it leaves the inbox (the template's `expires` after `at`); none: kept 400 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// When the app first said its user opened it (it stays listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    /// When the app said its user dismissed it: no longer listed, and kept until it would have
    /// expired, so a retried send cannot put it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissed_at: Option<Timestamp>,
    /// When the journey took it back, unread: its enrollment ended by an exit event (or the
    /// journey was stopped). No longer listed, and kept as a dismissed one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<Timestamp>,
    /// Why it was withdrawn: how its enrollment ended (`exit_when order_completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_reason: Option<String>,
    /// A withdrawn record written in the message's place before its send wrote it (see
    /// [`Runtime::withdraw`]): it never reached the inbox, and has no content. The send that
    /// finds it is skipped, and an app has no such message to mark.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placeholder: bool,
}

impl InboxItem {
    /// Whether the inbox lists it at `now`: not dismissed, withdrawn or expired.
    fn listed(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
            && self.dismissed_at.is_none()
            && self.withdrawn_at.is_none()
    }
}

/// What an app reports of an in-app message it showed its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxMark {
    /// Opened: listed still, with `read_at`.
    Read,
    /// Dismissed: no longer listed.
    Dismissed,
}

/// Attempts at recording a message that went out before its failure is the message's (and its
/// retry sends it again).
const DONE_ATTEMPTS: usize = 4;
/// How long those attempts may go on (the message's share of its invocation; a store call
/// takes up to 10 seconds with its own retries).
const DONE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Attempts at marking an inbox message while other marks of it race.
const MARK_ATTEMPTS: usize = 5;

/// What `GET /v1/users/{id}` shows.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    /// When it was read: the time its `schedules` and `triggers` are judged at, and against
    /// which an enrollment's pending wake-up is due or overdue (a backlog, a scheduler not
    /// running: `waymark why` says so).
    pub at: Timestamp,
    pub profile: Option<Profile>,
    pub enrollments: Vec<Enrollment>,
    pub timeline: Vec<Entry>,
    /// What each published schedule journey's runs do with the user, judged now: a run keeps
    /// no trace of a user its `where` leaves out ([`crate::scheduled`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::scheduled::ScheduleAnswer>,
    /// Where the user stands with each published `repeated` and `inactive` journey's trigger,
    /// judged now: a count short of its `times`, or a check not due yet, leaves no timeline
    /// fact ([`crate::progress`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<crate::progress::TriggerAnswer>,
    /// The `enrollment_key` of each journey her enrollments shown are keyed by (`journey` id
    /// to its path as written, `event.booking_id`), which names each enrollment's `key` value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub enrollment_keys: BTreeMap<String, String>,
}

pub struct Runtime {
    pub store: Handle,
    pub queue: Arc<dyn Queue>,
    pub sender: Arc<dyn Sender>,
    pub clock: Arc<dyn Clock>,
    /// Shared with another runtime of the same store by [`Runtime::sharing_catalog`].
    pub catalog: Arc<Catalog>,
    pub config: Config,
    /// The time zones this process has noted as in use ([`crate::zones`]).
    pub(crate) zones: crate::zones::Seen,
    /// Whether this process's shard count is under the high-water mark ([`crate::shards`]).
    pub(crate) shards_noted: crate::shards::Noted,
    /// The `update` steps performed as each event in hand is taken, by user and message: a
    /// later one's write of a trait an earlier one set to another value (the same event
    /// reaches both journeys; the later one stands) is told in the earlier one's timeline
    /// (see [`Runtime::tell_overwritten`]).
    written: std::sync::Mutex<HashMap<(String, String), Vec<Written>>>,
    /// The events in hand, by user and message, whose date waits are read again once all the
    /// journeys they reach have run (some of those journeys have `update` steps: see
    /// `engine::SetMeanwhile`): an `update` performed as one is taken leaves the user's date
    /// waits to that last pass, rather than moving them to what it alone set (a second journey
    /// of the same event may set the same date to another value, which stands).
    read_last: std::sync::Mutex<HashSet<(String, String)>>,
}

/// An `update` step an enrollment performed as an event was taken (see [`Runtime::written`]).
#[derive(Debug, Clone)]
struct Written {
    journey: String,
    enrollment: String,
    step: Option<Arc<str>>,
    at: Timestamp,
    /// The traits it wrote: the value set, `None` for one it unset.
    traits: Vec<(String, Option<Value>)>,
}

/// While an event is taken, the `update` steps its transitions perform are noted
/// ([`Runtime::written`]); dropped when it is done, or has failed.
struct Taking<'a> {
    written: &'a std::sync::Mutex<HashMap<(String, String), Vec<Written>>>,
    read_last: &'a std::sync::Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.written.lock() {
            w.remove(&self.key);
        }
        if let Ok(mut r) = self.read_last.lock() {
            r.remove(&self.key);
        }
    }
}

/// Until when an ended keyed enrollment is kept ([`Runtime::kept_until`]).
struct Kept {
    /// Its record.
    record: Timestamp,
    /// Its value's [`LastEntry`] (`None`: for good).
    last_entry: Option<Timestamp>,
}

/// A loaded enrollment with the record version it was read at. The enrollment is the one its
/// record holds (shared, not copied).
struct Loaded {
    enrollment: Arc<Enrollment>,
    version: u64,
    /// Just written by this worker's [`Runtime::commit`] (its outbox cannot have been
    /// performed yet); false when read from the store.
    fresh: bool,
    /// Its outbox is performed (the stored record keeps it until the next transition replaces
    /// it): it owes nothing more, as if the outbox were empty.
    performed: bool,
}

impl Loaded {
    fn read(r: &Record) -> Result<Self, StoreError> {
        Ok(Loaded {
            enrollment: r.parse_shared()?,
            version: r.version,
            fresh: false,
            performed: false,
        })
    }

    /// Whether the last transition's outbox is still owed.
    fn owes_current(&self) -> bool {
        let e = &self.enrollment;
        !self.performed && (!e.outbox.is_empty() || !e.outbox_timeline.is_empty())
    }

    /// Whether a send is still owed (the last transition's or a carried one).
    fn owes_sends(&self) -> bool {
        let sends = |effects: &[Effect]| effects.iter().any(|e| matches!(e, Effect::Send(_)));
        (!self.performed && sends(&self.enrollment.outbox))
            || self
                .enrollment
                .carried
                .iter()
                .any(|c| !c.cancel_sends && sends(&c.effects))
    }
}

/// The earlier of a time a message is held to and another (`why` goes with the time kept).
fn earliest(
    held: Option<(String, Timestamp)>,
    why: String,
    at: Timestamp,
) -> Option<(String, Timestamp)> {
    match held {
        Some((w, a)) if a <= at => Some((w, a)),
        _ => Some((why, at)),
    }
}

/// A scan page's marker (`SCAN#<job>` / the page message's id): a worker is reading it (until
/// its claim lapses), or it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum PageMark {
    Reading { until: Timestamp },
    Read { selected: u64 },
}

/// What [`Runtime::handle`] did with a message that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Applied.
    Done,
    /// Not applied yet: it failed for a passing reason (or is a retry not due yet), and its
    /// `attempt`th retry is queued for `at`.
    Retried { attempt: u32, at: Timestamp },
}

/// What one scheduler minute did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Timers moved onto the queue.
    pub moved: usize,
    /// Schedule-triggered journeys whose run started (a scan of the profiles, page by page).
    pub schedules: usize,
    /// Timeline records counted in the stats.
    pub folded: usize,
    /// Newly stopped journeys whose sweep started (a scan that stops each active enrollment).
    pub stops: usize,
}

/// What one run of [`Runtime::sync_sms_opt_outs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptOutSync {
    /// Users whose SMS was newly suppressed.
    pub newly: usize,
    /// Pages of the provider's list read.
    pub pages: usize,
    /// Whether the pass over the list ended in this run (the next starts an hour after it
    /// started).
    pub done: bool,
}

/// The sync's place in the provider's opt-out list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OptOutCursor {
    /// The page to read next while a pass is under way; none between passes.
    next: Option<String>,
    /// The minute the latest pass started.
    started: Option<i64>,
}

/// An enrollment after [`Runtime::settle`], and what it could not perform, by cause.
struct Settled {
    loaded: Loaded,
    failed: Vec<(String, RunError)>,
}

/// One transition's outbox, as [`Runtime::perform`] takes it.
struct Unit<'a> {
    user: &'a str,
    journey: &'a str,
    /// The enrollment's record ([`Enrollment::record_of`]): its wake-ups name it.
    record: &'a str,
    /// The enrollment that made it (wake-ups and the timeline record are its).
    enrollment: &'a str,
    cause: &'a str,
    effects: &'a [Effect],
    timeline: &'a [Entry],
    cancel_sends: bool,
    /// Whether this is the unit's performance in a later handling than its transition's (a
    /// unit carried, or an outbox owed since): its sends' entries then say when each went out
    /// (the ledger's time), not the step's.
    late: bool,
    /// The enrollment's live wait (seq, at), when `enrollment` is the stored enrollment: a
    /// wake-up for any other is stale (the enrollment went on past it) and is not queued again.
    live: Option<Option<(u64, Timestamp)>>,
    /// Set when every effect but the sends was performed (its wake-ups are queued), so that a
    /// unit kept for its failed sends does not queue them again at each retry: each copy of a
    /// wake-up whose time had passed came at once and performed the kept unit again, a storm
    /// of fresh messages for as long as a provider was down.
    others_done: &'a std::sync::atomic::AtomicBool,
}

/// Whether an effect queues or cancels a wake-up (done once, not again when its unit's sends
/// are retried).
fn is_wake_up(e: &Effect) -> bool {
    matches!(e, Effect::Wake { .. } | Effect::Cancel { .. })
}

/// A place a send takes in its user's frequency cap for the channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CapPlace {
    /// The send's ledger key: its retries share the place.
    send: String,
    at: Timestamp,
}

impl CapPlace {
    /// The places of a cap record; a record written before places were kept by send (a list
    /// of send times) reads as places of unknown sends.
    fn read(r: &Record) -> Result<Vec<CapPlace>, StoreError> {
        if let Some(places) = r.body.typed::<Vec<CapPlace>>() {
            return Ok(places.clone());
        }
        #[derive(Clone, Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Places(Vec<CapPlace>),
            Times(Vec<Timestamp>),
        }
        Ok(match r.parse::<Stored>()? {
            Stored::Places(p) => p,
            Stored::Times(t) => t
                .into_iter()
                .map(|at| CapPlace {
                    send: String::new(),
                    at,
                })
                .collect(),
        })
    }
}

impl Runtime {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        sender: Arc<dyn Sender>,
        clock: Arc<dyn Clock>,
        catalog_ttl: std::time::Duration,
        config: Config,
    ) -> Self {
        Runtime {
            catalog: Arc::new(Catalog::new(store.clone(), catalog_ttl)),
            store: Handle::new(store),
            queue,
            sender,
            clock,
            config,
            zones: Default::default(),
            shards_noted: Default::default(),
            written: Default::default(),
            read_last: Default::default(),
        }
    }

    /// This runtime reading journeys through `other`'s catalog: a journey `other` publishes
    /// is the one this runs from the next message on, not once its cached list of latest
    /// versions runs out (`waymark dev`'s engine worker and its API, two runtimes of one
    /// store: at `--speed 86400` a second of a stale list is a day).
    pub fn sharing_catalog(mut self, other: &Runtime) -> Self {
        self.catalog = other.catalog.clone();
        self
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Handles a batch of messages, one result each.
    pub async fn handle_batch(&self, messages: &[Message]) -> Vec<Result<Handled, RunError>> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(self.handle(m).await);
        }
        out
    }

    /// Handles one message; conflicts with concurrent writers are retried here a few times.
    ///
    /// A message that fails for a passing reason (`RunError::Retry`: a provider throttling or
    /// down, the store throttled) is queued again as a [`Message::Retry`], 2, 4, 8 … up to 60
    /// minutes later ([`RETRY_ATTEMPTS`] times, about six hours), and counts as handled: a
    /// provider outage longer than SQS's five receives no longer strands a send in the
    /// dead-letter queue. After the last retry, or when the retry cannot be queued, the error
    /// stands and the queue's own redelivery (then its dead-letter queue) takes over.
    pub async fn handle(&self, message: &Message) -> Result<Handled, RunError> {
        let (inner, attempt) = match message {
            Message::Retry {
                attempt,
                at,
                message: inner,
            } => {
                // Not due yet: hop on (a long backoff rides timers, as a long wait does).
                if *at > self.now() + SignedDuration::from_secs(1) {
                    self.schedule(message.clone(), *at).await?;
                    return Ok(Handled::Retried {
                        attempt: *attempt,
                        at: *at,
                    });
                }
                (inner.as_ref(), *attempt)
            }
            m => (m, 0),
        };
        let why = match self.handle_resolving_conflicts(inner).await {
            Ok(()) => return Ok(Handled::Done),
            Err(RunError::Later { why, at }) => {
                // Held, not failed: back at `at`, with the attempts it had.
                let again = Message::Retry {
                    attempt,
                    at,
                    message: Box::new(inner.clone()),
                };
                return match self.schedule(again, at).await {
                    Ok(()) => {
                        tracing::info!(message_id = %inner.id(), user = inner.user_id(), %at, reason = %why, "message held; taken again later");
                        Ok(Handled::Retried { attempt, at })
                    }
                    Err(e) => {
                        tracing::warn!(message_id = %inner.id(), error = %e, "a held message could not be queued for later");
                        Err(RunError::Retry(why))
                    }
                };
            }
            Err(RunError::Retry(why)) if attempt < RETRY_ATTEMPTS => why,
            Err(e) => return Err(e),
        };
        let next = attempt + 1;
        let at = self.now() + retry_delay(&inner.id(), next, self.config.claim_lease);
        let again = Message::Retry {
            attempt: next,
            at,
            message: Box::new(inner.clone()),
        };
        match self.schedule(again, at).await {
            Ok(()) => {
                tracing::warn!(message_id = %inner.id(), user = inner.user_id(), attempt = next, %at, error = %why, "message failed; retried later");
                Ok(Handled::Retried { attempt: next, at })
            }
            Err(e) => {
                tracing::warn!(message_id = %inner.id(), error = %e, "a retry could not be queued");
                Err(RunError::Retry(why))
            }
        }
    }

    async fn handle_resolving_conflicts(&self, message: &Message) -> Result<(), RunError> {
        let mut last = RunError::Retry("not attempted".into());
        for _ in 0..4 {
            match self.handle_once(message).await {
                Err(RunError::Conflict(why)) => {
                    last = RunError::Retry(format!("conditional write lost, repeatedly: {why}"));
                }
                other => return other,
            }
        }
        Err(last)
    }

    async fn handle_once(&self, message: &Message) -> Result<(), RunError> {
        let now = self.now();
        if let Some(due) = message.due() {
            // Not due yet: hop again (a wait longer than one queue delay).
            if due > now + SignedDuration::from_secs(1) {
                return self.schedule(message.clone(), due).await;
            }
        }
        match message {
            Message::Event(e) => self.apply_event(e, None).await,
            Message::Wake {
                user_id,
                journey,
                enrollment,
                seq,
                ..
            } => self.wake(user_id, journey, enrollment, *seq).await,
            Message::Enter {
                user_id,
                journey,
                cause,
                at,
                version: run_version,
            } => {
                let trigger = TriggerEvent {
                    event: cause.split(':').next().unwrap_or("schedule").to_string(),
                    message_id: message.id(),
                    at: *at,
                    properties: Arc::new(Value::Object(Default::default())),
                };
                let mut enrollments = self.load_enrollments(user_id).await?;
                if self
                    .replay(&mut enrollments, journey, &message.id())
                    .await?
                {
                    return Ok(());
                }
                let (profile, version) = self.load_profile(user_id).await?;
                if version.is_none() {
                    // Selected from a profile, none now: an erasure's mark that expired since.
                    return Ok(());
                }
                if profile.merged_into.is_some() {
                    // An anonymous user that turned out to be someone: that user enters.
                    return Ok(());
                }
                if profile.is_erasure_mark() || profile.erased_after(*at) {
                    // Selected before her erasure, or no one now.
                    return Ok(());
                }
                // The latest version this worker knows of, or the run's own when that is
                // later (this worker's cached list predates a publish made just before the
                // run: a new journey, or a closed one opened again).
                let latest = self.catalog.latest(journey).await?;
                let p = match (latest, run_version) {
                    (Some(l), Some(v)) if l.version >= *v => l,
                    (_, Some(v)) => match self.catalog.version(journey, *v).await? {
                        Some(p) => p,
                        None => {
                            return Err(RunError::Retry(format!(
                                "version {v} of journey {journey}, whose run this entry is of, cannot be read yet"
                            )))
                        }
                    },
                    (Some(l), None) => l,
                    (None, None) => {
                        return Err(RunError::Poison(format!(
                            "journey `{journey}` is not published"
                        )))
                    }
                };
                // A run's entry that comes once she entered at a later run (an old message
                // redelivered late, past the triggers her enrollment remembers; a catch-up's
                // runs read out of order) does not enter her again, whatever the entry rule
                // would let (`after_exit`); the rule's own refusals come first.
                let stale = enrollments.get(journey.as_str()).and_then(|l| {
                    let e = &l.enrollment;
                    (p.journey.status.is_active()
                        && !e.is_active()
                        && *at <= e.trigger.at
                        && engine::reentry_refusal(&p.journey, e, *at, &profile).is_none())
                    .then_some(e)
                });
                if let Some(e) = stale {
                    let detail = format!(
                        "the user entered at the run of {} already, a later one than this run ({at}): a run's entry that comes late enters no one again",
                        e.trigger.at
                    );
                    let refused =
                        self.refusal(&p.journey, &trigger.event, Some(&e.id), "reentry", detail);
                    return self
                        .keep_refusal(user_id, &message.id(), Some(refused))
                        .await;
                }
                let refused = self
                    .try_enter(&p, journey, &profile, &mut enrollments, trigger, None, &[])
                    .await?;
                self.keep_refusal(user_id, &message.id(), refused).await
            }
            Message::Stop {
                user_id,
                journey,
                enrollment,
            } => {
                self.stop_enrollment(user_id, journey, enrollment, &message.id())
                    .await
            }
            Message::Scan {
                job,
                segment,
                segments,
                start,
            } => {
                self.scan_page(job, *segment, *segments, start.as_ref(), &message.id())
                    .await
            }
            // `handle` takes a retry's message out; one inside another is not made.
            Message::Retry { .. } => Err(RunError::Poison(
                "a retry of a retry: not a message this engine makes".into(),
            )),
            Message::Inactivity {
                user_id,
                journey,
                since,
                at,
            } => {
                let Some(p) = self.catalog.latest(journey).await? else {
                    return Err(RunError::Poison(format!(
                        "journey `{journey}` is not published"
                    )));
                };
                let Some(TriggerKind::Inactive(i)) = p.journey.trigger.kind() else {
                    return Ok(());
                };
                let (profile, version) = self.load_profile(user_id).await?;
                if version.is_none() {
                    // A check is armed only for a user with a profile: none now is an
                    // erasure's mark that expired since (she is no one, and enters nothing).
                    return Ok(());
                }
                if profile.merged_into.is_some() {
                    // Its activity is the identified user's now, who has checks of their own.
                    return Ok(());
                }
                // Active since (the activity armed no check of its own while this one was
                // pending), or armed under a version whose `for` was shorter: look again when
                // the `for` published now has passed since the latest activity. Compared with
                // the check's own time, not the clock's: a check may come a little early.
                let from = profile
                    .last_of(&i.events)
                    .filter(|t| t > since)
                    .unwrap_or(*since);
                if profile.erased_after(from) || profile.is_erasure_mark() {
                    // Armed by activity the erasure took: she is someone new since.
                    return Ok(());
                }
                let due = from + i.duration.to_jiff();
                if due > *at {
                    if !p.journey.status.is_active() && !still_checked(&p, now) {
                        return Ok(());
                    }
                    let again = Message::Inactivity {
                        user_id: user_id.clone(),
                        journey: journey.clone(),
                        since: from,
                        at: due,
                    };
                    return self.schedule(again, due).await;
                }
                // One inactivity, one id, whichever check finds it (a check armed by the
                // latest activity, or an earlier one looking again from it): the second to
                // come is the same trigger, and enters no one twice.
                let cause = Message::Inactivity {
                    user_id: user_id.clone(),
                    journey: journey.clone(),
                    since: from,
                    at: *at,
                }
                .id();
                // Her trigger is the check's time, as a schedule's entry is its run's (not
                // when a backlog let a worker handle it): an exit or goal event she did since,
                // applied after this, comes after her trigger. (Never later than now: a check
                // may come a little early.)
                let trigger = TriggerEvent {
                    event: "inactive".into(),
                    message_id: cause.clone(),
                    at: (*at).min(now),
                    properties: Arc::new(serde_json::json!({"inactive_since": from.to_string()})),
                };
                let mut enrollments = self.load_enrollments(user_id).await?;
                if self.replay(&mut enrollments, journey, &cause).await? {
                    return Ok(());
                }
                // Its `where`, read as she is now: false, she is not entered, and her next
                // activity arms a check again.
                if let Some(c) = &i.condition {
                    let profile_scope = profile.scope();
                    let scope = crate::condition::Scope {
                        event: &trigger.properties,
                        trigger: &trigger.properties,
                        waited: &Value::Null,
                        profile: &profile_scope,
                        now,
                        zone: p.journey.default_zone(),
                    };
                    if !c.eval(&scope) {
                        let detail = c.why_false(&scope);
                        let refused =
                            self.refusal(&p.journey, "inactive", None, "condition", detail);
                        return self.keep_refusal(user_id, &cause, Some(refused)).await;
                    }
                }
                let refused = self
                    .enter_or_refuse(&p, journey, &profile, &mut enrollments, trigger, None, &[])
                    .await?;
                let again = refused.as_ref().and_then(|r| r.again);
                let refused = refused.map(|r| r.entry);
                let reason = refused.as_ref().and_then(|r| match &r.what {
                    What::NotEntered { reason, .. } => Some(reason.as_str()),
                    _ => None,
                });
                // Still in the journey, or the journey closed or stopped for now: looked at
                // again a `for` later, where she is still inactive then (she would arm no check
                // by herself: she does nothing), so that she enters once her enrollment has
                // ended or the journey is open again. (A journey closed over a year checks no
                // one: her next activity arms a check again.)
                let later = match reason {
                    Some("enrolled") => Some(now + i.duration.to_jiff()),
                    Some("closed" | "stopped") if still_checked(&p, now) => {
                        Some(now + i.duration.to_jiff())
                    }
                    // Not yet (`reentry: after`): looked at again when she may enter, where
                    // she is still inactive then (no activity would arm a check of its own
                    // otherwise), whoever's entry is in the way (hers, or a visitor's she
                    // turned out to be).
                    Some("reentry") => again.filter(|again| *again > now),
                    _ => None,
                };
                if let Some(again) = later {
                    let check = Message::Inactivity {
                        user_id: user_id.clone(),
                        journey: journey.clone(),
                        since: from,
                        at: again,
                    };
                    self.schedule(check, again).await?;
                }
                self.keep_refusal(user_id, &cause, refused).await
            }
        }
    }

    /// Settles the journey's enrollment (see [`Runtime::settle`]) and says whether `cause`
    /// already produced a transition of it (the message came back: nothing more to do).
    /// The enrollment `record` of `user` read again into `enrollments` (after a settle that
    /// did not finish: what it performed changed the stored record).
    async fn reload_enrollment(
        &self,
        user: &str,
        record: &str,
        enrollments: &mut BTreeMap<String, Loaded>,
    ) -> Result<(), RunError> {
        match self.store.get(&enrollment_key(user, record)).await? {
            Some(r) => {
                enrollments.insert(record.to_string(), Loaded::read(&r)?);
            }
            None => {
                enrollments.remove(record);
            }
        }
        Ok(())
    }

    async fn replay(
        &self,
        enrollments: &mut BTreeMap<String, Loaded>,
        journey: &str,
        cause: &str,
    ) -> Result<bool, RunError> {
        let Some(l) = enrollments.remove(journey) else {
            return Ok(false);
        };
        let (l, done) = self.settle_for(l, cause, false).await?;
        enrollments.insert(journey.to_string(), l);
        Ok(done)
    }

    /// Settles an enrollment on behalf of the message `cause`, and says whether that message
    /// already made a transition of it. Fails when what `cause` itself owes cannot be performed
    /// (its message is retried); what other messages owe and cannot be performed now stays in
    /// the enrollment, to be carried past this message's transition.
    /// `then_commits`: the caller goes on to commit a transition of it (see [`Runtime::settle`]).
    async fn settle_for(
        &self,
        l: Loaded,
        cause: &str,
        then_commits: bool,
    ) -> Result<(Loaded, bool), RunError> {
        let e = &l.enrollment;
        let done = e
            .outbox_cause
            .as_deref()
            .is_some_and(|c| Enrollment::made_by(c, cause))
            || e.carried
                .iter()
                .any(|c| Enrollment::made_by(&c.cause, cause));
        let settled = self.settle(l, then_commits).await?;
        for (owed_by, err) in settled.failed {
            if Enrollment::made_by(&owed_by, cause) {
                return Err(err);
            }
            tracing::warn!(
                user = %settled.loaded.enrollment.user_id,
                journey = %settled.loaded.enrollment.journey,
                cause = %owed_by,
                error = %err,
                "an earlier transition's effects cannot be performed yet; carried on"
            );
        }
        Ok((settled.loaded, done))
    }

    /// Performs what an enrollment's transitions still owe (its carried outboxes, oldest first,
    /// then the last transition's outbox), then removes what was performed with a conditional
    /// write. An outbox left full means the message that made it failed or crashed half-way:
    /// whoever touches the enrollment next performs it first, so a later transition never drops
    /// an earlier one's sends or wake-up. Repeating it is safe (ledger, stale wake-ups, timeline
    /// written once). What cannot be performed now is kept, and said in `failed`.
    ///
    /// The last transition's outbox is written last of all as its timeline record, so a stored
    /// timeline record for (enrollment, cause) says the outbox was performed. An active
    /// enrollment's performed outbox is therefore left in the stored record (its next transition
    /// replaces it) rather than cleared with a write of its own; whoever loads it reads that
    /// record instead of performing it again, and clears it then unless it goes on to commit
    /// (`then_commits`: a wake-up). An ended enrollment's is cleared at once, so that the
    /// user's later events need no such read.
    async fn settle(&self, l: Loaded, then_commits: bool) -> Result<Settled, RunError> {
        let e = &l.enrollment;
        let owes_current = l.owes_current();
        if !owes_current && e.carried.is_empty() {
            return Ok(Settled {
                loaded: l,
                failed: Vec::new(),
            });
        }
        let mut failed = Vec::new();
        let mut kept = Vec::new();
        let mut carried_changed = false;
        let record = e.record();
        for c in &e.carried {
            let others_done = std::sync::atomic::AtomicBool::new(false);
            let unit = Unit {
                user: &e.user_id,
                journey: &e.journey,
                record: &record,
                enrollment: &c.enrollment,
                cause: &c.cause,
                effects: &c.effects,
                timeline: &c.timeline,
                cancel_sends: c.cancel_sends,
                late: true,
                live: (*c.enrollment == *e.id).then(|| e.pending.map(|p| (p.seq, p.at))),
                others_done: &others_done,
            };
            if let Err(err) = self.perform(unit).await {
                failed.push((c.cause.clone(), err));
                let mut c = c.clone();
                if others_done.into_inner() && c.effects.iter().any(is_wake_up) {
                    c.effects.retain(|e| !is_wake_up(e));
                    carried_changed = true;
                }
                kept.push(c);
            } else {
                carried_changed = true;
            }
        }
        let mut current_done = true;
        // Whether the current outbox's timeline record is stored (it was performed in full).
        let mut recorded = false;
        // Whether this call performed it (else the stored timeline record said it was).
        let mut performed_now = false;
        let mut strip_current = false;
        if owes_current {
            let cause = e.outbox_cause.clone().unwrap_or_default();
            if !l.fresh
                && !e.outbox_timeline.is_empty()
                && self
                    .store
                    .get(&timeline_key(&e.user_id, &e.id, &cause))
                    .await?
                    .is_some()
            {
                recorded = true;
            } else {
                let cur_done = std::sync::atomic::AtomicBool::new(false);
                let unit = Unit {
                    user: &e.user_id,
                    journey: &e.journey,
                    record: &record,
                    enrollment: &e.id,
                    cause: &cause,
                    effects: &e.outbox,
                    timeline: &e.outbox_timeline,
                    cancel_sends: false,
                    late: !l.fresh,
                    live: Some(e.pending.map(|p| (p.seq, p.at))),
                    others_done: &cur_done,
                };
                match self.perform(unit).await {
                    Ok(r) => {
                        recorded = r;
                        performed_now = true;
                    }
                    Err(err) => {
                        failed.push((cause, err));
                        current_done = false;
                        strip_current = cur_done.into_inner() && e.outbox.iter().any(is_wake_up);
                    }
                }
            }
        }
        let left_in_place =
            current_done && recorded && e.is_active() && (performed_now || then_commits);
        if !carried_changed && !strip_current && (!current_done || left_in_place) {
            let mut loaded = l;
            loaded.performed |= current_done;
            loaded.fresh = false;
            return Ok(Settled { loaded, failed });
        }
        let read_at = l.version;
        let mut next = Enrollment::clone(&l.enrollment);
        next.carried = kept;
        if current_done || l.performed {
            next.outbox = Vec::new();
            next.outbox_timeline = Vec::new();
        } else if strip_current {
            next.outbox.retain(|e| !is_wake_up(e));
        }
        let version = read_at + 1;
        let next = Arc::new(next);
        let mut record = Record::shared(enrollment_key_of(&next), version, next.clone());
        if let Some(kept) = self.kept_until(&next).await? {
            // Read from the store, it may have ended before its value's last entry was kept
            // (a record of an earlier build, kept longer): kept now, before the record's own
            // time is shortened. One this worker just committed has it already.
            if !l.fresh {
                self.keep_last_entry(&next, kept.last_entry).await?;
            }
            record = record.expiring(kept.record);
        }
        self.store.put(&record, Expect::Version(read_at)).await?;
        Ok(Settled {
            loaded: Loaded {
                enrollment: next,
                version,
                fresh: false,
                performed: false,
            },
            failed,
        })
    }

    /// The user's profile as stored (shared with the store, not copied), and its version.
    pub(crate) async fn load_profile(
        &self,
        user: &str,
    ) -> Result<(Arc<Profile>, Option<u64>), RunError> {
        let (p, version, _) = self.load_profile_sealed(user).await?;
        Ok((p, version))
    }

    /// As [`Runtime::load_profile`], and whether the record is sealed (her erasure is under
    /// way, or she is its mark: see [`Runtime::update_profile_with`]).
    async fn load_profile_sealed(
        &self,
        user: &str,
    ) -> Result<(Arc<Profile>, Option<u64>, bool), RunError> {
        match self.store.get(&profile_key(user)).await? {
            Some(r) => Ok((r.parse_shared()?, Some(r.version), r.sealed)),
            None => Ok((Arc::new(Profile::new(user)), None, false)),
        }
    }

    /// The user's enrollment records, by record name ([`Enrollment::record_of`]: the journey's
    /// id, or `{journey}#{key}` for each key of a keyed journey).
    async fn load_enrollments(&self, user: &str) -> Result<BTreeMap<String, Loaded>, RunError> {
        let mut out = BTreeMap::new();
        for r in self.store.query(&user_partition(user), "E#").await? {
            let l = Loaded::read(&r)?;
            out.insert(l.enrollment.record(), l);
        }
        Ok(out)
    }

    /// Changes a profile with a conditional write, retrying on conflict.
    pub(crate) async fn update_profile(
        &self,
        user: &str,
        f: impl Fn(&mut Profile),
    ) -> Result<Arc<Profile>, RunError> {
        Ok(self.update_profile_with(user, f, None).await?.0)
    }

    /// As [`Runtime::update_profile`], with the version of the profile as it left it (the one
    /// read when the change made none).
    pub(crate) async fn update_profile_versioned(
        &self,
        user: &str,
        f: impl Fn(&mut Profile),
    ) -> Result<(Arc<Profile>, u64), RunError> {
        self.update_profile_with(user, f, None).await
    }

    /// Changes a profile with a conditional write, retrying on conflict; with `registering`
    /// (an event that may bring push devices, see [`Registering`]), its push devices that have
    /// no endpoint yet are registered with the provider first, so the one write stores their
    /// endpoints too (registering is idempotent: a retry or a replay registers the same token
    /// again and gets the same endpoint), and a device new to the user is claimed for her (see
    /// [`Runtime::claim_device`]), or left out when another user registered it since.
    async fn update_profile_with(
        &self,
        user: &str,
        f: impl Fn(&mut Profile),
        registering: Option<Registering>,
    ) -> Result<(Arc<Profile>, u64), RunError> {
        // Endpoints registered by this call, by token (a conflict's retry does not ask again).
        let mut registered: Vec<(String, Option<String>)> = Vec::new();
        // The provider could not register an identify's device now: the profile is written all
        // the same (its traits must not wait for the provider), and the message is retried after.
        let mut unavailable: Option<String> = None;
        for _ in 0..8 {
            let (before, version, was_sealed) = self.load_profile_sealed(user).await?;
            let mut p = Profile::clone(&before);
            f(&mut p);
            // Sealed from the write that marks her for erasure (sets `erased_at`) on, through
            // every write before the erasure leaves its bare mark (sealed too, see
            // [`Runtime::erase`]): no send of hers is claimed meanwhile or after
            // ([`Runtime::deliver`]). A profile made on the mark (an event received after the
            // erasure) is a new one's, and is not.
            let sealed = (p.erased_at.is_some() && p.erased_at != before.erased_at)
                || (was_sealed && !before.is_erasure_mark());
            // Another event than an identify registers only what it changed: a device the
            // user has (the app sends its token with every event) costs no provider call.
            let registering = registering.filter(|r| match r {
                Registering::Identify(_) => true,
                Registering::Device(_) => p.devices != before.devices,
            });
            if let Some(r) = registering {
                let at = r.at();
                let identify = matches!(r, Registering::Identify(_));
                // An identify's devices are claimed first and written whatever the provider
                // says (without an endpoint while it is down, the event retried); another
                // event's are claimed only once registered, and only those written.
                if identify {
                    self.claim_devices(user, &mut p, &before, at).await?;
                }
                // Devices left as they were before this event (a registration that failed for
                // now, of another event's device or of a disabled one's endpoint).
                let mut undone = Vec::new();
                for d in p
                    .devices
                    .iter_mut()
                    .filter(|d| d.endpoint.is_none() || d.revived)
                {
                    if let Some((_, ep)) = registered.iter().find(|(t, _)| *t == d.token) {
                        d.endpoint = ep.clone();
                        d.revived = false;
                        continue;
                    }
                    if unavailable.is_some() {
                        continue;
                    }
                    let ep = match self.sender.register(d).await {
                        Ok(ep) => ep,
                        // Enabling a disabled endpoint again can wait: the device stays
                        // disabled (pushes do not go to an endpoint still disabled), and a
                        // later event that sends its token tries again.
                        Err(
                            SendError::Retryable(m) | SendError::PushRetryable { reason: m, .. },
                        ) if d.revived => {
                            tracing::warn!(user, reason = %m, "a disabled push endpoint could not be enabled again now; a later event sending its token tries again");
                            undone.push(d.token.clone());
                            continue;
                        }
                        // Another event's device waits for the next event that sends its
                        // token (the app sends it with each): this one's journeys go on.
                        Err(
                            SendError::Retryable(m) | SendError::PushRetryable { reason: m, .. },
                        ) if !identify => {
                            tracing::warn!(user, reason = %m, "a push device could not be registered now; the next event sending its token tries again");
                            undone.push(d.token.clone());
                            continue;
                        }
                        Err(
                            SendError::Retryable(m) | SendError::PushRetryable { reason: m, .. },
                        ) => {
                            unavailable = Some(m);
                            continue;
                        }
                        Err(SendError::Permanent(m) | SendError::PushRefused { reason: m, .. }) => {
                            tracing::warn!(user, reason = %m, "push device could not be registered");
                            None
                        }
                    };
                    registered.push((d.token.clone(), ep.clone()));
                    d.endpoint = ep;
                    d.revived = false;
                }
                for token in &undone {
                    match before.devices.iter().find(|b| b.token == *token) {
                        Some(b) => {
                            if let Some(d) = p.devices.iter_mut().find(|d| d.token == *token) {
                                *d = b.clone();
                            }
                        }
                        None => p.devices.retain(|d| d.token != *token),
                    }
                }
                if !identify {
                    self.claim_devices(user, &mut p, &before, at).await?;
                }
            }
            let (written, written_version) = match version {
                Some(v) if p == *before => (before, v),
                _ => {
                    let expect = version.map(Expect::Version).unwrap_or(Expect::Absent);
                    let p = Arc::new(p);
                    let next = version.unwrap_or(0) + 1;
                    let record = Record::shared(profile_key(user), next, p.clone()).sealing(sealed);
                    match self.store.put(&record, expect).await {
                        Ok(()) => (p, next),
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            // Noted whether or not this call changed it: a retry after a failed note notes it.
            self.note_zone(&written).await?;
            return match unavailable {
                Some(m) => Err(RunError::Retry(m)),
                None => Ok((written, written_version)),
            };
        }
        Err(RunError::Conflict("profile busy".into()))
    }

    /// Claims for `user` (see [`Runtime::claim_device`]) the devices of `p`, her profile as
    /// the event at `at` leaves it, that it brought to her (not in `before`), and leaves out of
    /// `p` those another user registered after `at`. A device she had and registered again
    /// (its `registered_at` moved) needs no claim: the claim reads that time in her profile.
    async fn claim_devices(
        &self,
        user: &str,
        p: &mut Profile,
        before: &Profile,
        at: Timestamp,
    ) -> Result<(), RunError> {
        let mut taken = Vec::new();
        for d in &p.devices {
            if !before.devices.iter().any(|b| b.token == d.token)
                && !self.claim_device(user, &d.token, at).await?
            {
                taken.push(d.token.clone());
            }
        }
        p.devices.retain(|d| !taken.contains(&d.token));
        Ok(())
    }

    /// Records that the push device `token` is `user`'s, and takes it off the profile of the
    /// user who had it before (and of the user that one was merged into): a phone that a second
    /// person logs in on gets her pushes, no longer his. One conditional write for a device no
    /// one had; a read and his profile's write more when it moves.
    /// `at`: when the identify that brings it happened. `false` when another user registered
    /// the device after that (this identify is a retry, or came late): it stays theirs.
    async fn claim_device(&self, user: &str, token: &str, at: Timestamp) -> Result<bool, RunError> {
        let key = device_key(token);
        let mine = DeviceHolder {
            user: user.to_string(),
            at,
        };
        let (mut version, mut expect) = (1, Expect::Absent);
        for _ in 0..4 {
            let record = Record::of(key.clone(), version, mine.clone());
            match self.store.put(&record, expect).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
            (version, expect) = (1, Expect::Absent);
            let Some(r) = self.store.get(&key).await? else {
                continue;
            };
            let holder: DeviceHolder = r.parse()?;
            if holder.user == user {
                return Ok(true);
            }
            // Registered to the holder after this identify: at the claim, or by a later
            // identify of the holder's that sent the token again (no claim then: it was hers).
            let (theirs, stored) = self.load_profile(&holder.user).await?;
            let again = theirs
                .devices
                .iter()
                .find(|d| d.token == token)
                .and_then(|d| d.registered_at);
            if holder.at > at || again.is_some_and(|t| t > at) {
                return Ok(false);
            }
            // Boxed: its profile write is this function's caller (no device is registered
            // there, so it comes back no further).
            Box::pin(self.disown_device(theirs, stored.is_some(), token)).await?;
            (version, expect) = (r.version + 1, Expect::Version(r.version));
        }
        Err(RunError::Conflict(format!(
            "push device claimed by several users at once ({user})"
        )))
    }

    /// Takes the push device `token` off its holder's profile (`owner`, as read, `stored` when
    /// it is), and off the profile of the user the holder was merged into (who took its
    /// devices).
    async fn disown_device(
        &self,
        mut owner: Arc<Profile>,
        mut stored: bool,
        token: &str,
    ) -> Result<(), RunError> {
        for _ in 0..2 {
            if stored && owner.devices.iter().any(|d| d.token == token) {
                let user = owner.user_id.as_str();
                tracing::info!(
                    user,
                    "push device registered by another user: taken off this one"
                );
                self.update_profile(user, |p| p.devices.retain(|d| d.token != token))
                    .await?;
            }
            let Some(into) = owner.merged_into.clone() else {
                break;
            };
            let (p, version) = self.load_profile(&into).await?;
            (owner, stored) = (p, version.is_some());
        }
        Ok(())
    }

    /// Applies an event to its user. `from`: the anonymous user it was sent as, when that user
    /// was merged into this one (the event may have entered journeys as theirs already).
    async fn apply_event(&self, e: &Event, from: Option<&str>) -> Result<(), RunError> {
        let user = e.user_id.as_str();
        if self
            .store
            .get(&dedup_key(user, &e.message_id))
            .await?
            .is_some()
        {
            tracing::debug!(user, message_id = %e.message_id, "duplicate event ignored");
            return Ok(());
        }
        let active = self.catalog.active_watching().await?;
        let journeys = &active.journeys;
        // The inactivity checks this event may arm (journeys whose `inactive` trigger names it),
        // also while a journey is closed or stopped (for a year: see `still_checked`), so that
        // she is checked when it opens again.
        let now = self.now();
        let arms: Vec<(&str, &[String], SignedDuration)> = match e.event.as_deref() {
            Some(name) => journeys
                .iter()
                .filter(|p| p.journey.status.is_active() || still_checked(p, now))
                .filter_map(|p| match p.journey.trigger.kind() {
                    Some(TriggerKind::Inactive(i)) if i.events.iter().any(|x| x == name) => Some((
                        p.journey.id.as_str(),
                        i.events.as_slice(),
                        i.duration.to_jiff(),
                    )),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        // The exits and goals with a `where` that this event may meet, noted in the profile
        // whether the user is in their journey or not (see `Profile::marks`), of every version
        // of an active journey (users finish on the version they entered: an older version's
        // exit the latest dropped still ends hers). Not one that reads `trigger.*` or
        // `waited.*`: with no enrollment to read, it cannot be judged (`'C1' != null` would
        // mark an exit that the enrollment a login moves, whose trigger was C1, never met),
        // and the mark keeps no properties to judge it by later (see `Journey::markers`).
        let markable: Vec<&crate::catalog::ActiveMarker> = match e.event.as_deref() {
            Some(name) => active
                .markers
                .iter()
                .filter(|m| m.marker.event == name)
                .collect(),
            None => Vec::new(),
        };
        // The history keeps the events some journey names (a trigger, an exit, a goal, a reply
        // a wait is for, also of an older version someone may be on); one no journey names
        // leaves none, so a profile does not grow, nor every write of it cost more, with each
        // new event name an app sends.
        let remember = e.event.as_deref().is_none_or(|name| {
            journeys.iter().any(|p| p.journey.names_event(name))
                || active
                    .events_by_versions
                    .binary_search_by(|x| x.as_str().cmp(name))
                    .is_ok()
        });
        // The traits journeys watch: an identify's change of one is a `trait_changed` trigger
        // (a closed or stopped journey's too, which refuses it, saying so), or an exit or a
        // goal of those enrolled (a closed journey's users finish it), on the version they
        // entered: an older version's too, whose exit the latest may have dropped (its notes
        // kept as well, for a retried identify).
        let mut watched: Vec<&str> = journeys
            .iter()
            .flat_map(|p| p.journey.watched_traits())
            .chain(active.watched_by_versions.iter().map(String::as_str))
            .collect();
        watched.sort_unstable();
        watched.dedup();
        // The watched traits this identify changed, as its profile update found them.
        let changed = std::sync::Mutex::new(Vec::new());
        let now = self.now();
        // An anonymous user that turned out to be someone: the event is theirs.
        let merged_into = std::sync::Mutex::new(None);
        // An identified user seen with an anonymous id for the first time: merged below.
        let unmerged = std::sync::atomic::AtomicBool::new(false);
        // One seen with a new anonymous id when she has as many as a profile keeps: not merged.
        let crowded = std::sync::atomic::AtomicBool::new(false);
        // The identify's traits the profile did not keep, past its bounds.
        let past_bounds = std::sync::Mutex::new(Vec::new());
        // Whether the profile knew this event already (its history keeps the messageIds of
        // the events journeys name): sent before as a visitor she turned out to be, maybe.
        let known = std::sync::atomic::AtomicBool::new(false);
        // The event changed the user's zone (an identify's, or the one her device sent with any
        // event): her waits for a time of day are read again below.
        let zone_moved = std::sync::atomic::AtomicBool::new(false);
        let anonymous_id = e
            .anonymous_id
            .as_deref()
            .filter(|_| !user.starts_with(crate::event::ANONYMOUS_PREFIX));
        // Received before the user was erased (queued as the erasure ran): dropped, so that it
        // does not bring back what the erasure took.
        let before_erasure = std::sync::atomic::AtomicBool::new(false);
        let mut profile = self
            .update_profile_with(
                user,
                |p| {
                    let erased = p.erased_after(e.received_at);
                    before_erasure.store(erased, std::sync::atomic::Ordering::Relaxed);
                    if erased {
                        return;
                    }
                    if let Some(into) = &p.merged_into {
                        if let Ok(mut m) = merged_into.lock() {
                            *m = Some(into.clone());
                        }
                        return;
                    }
                    if let Some(a) = anonymous_id {
                        let seen = p.has_seen_anonymous(a);
                        let room = p.has_room_for_anonymous();
                        unmerged.store(!seen && room, std::sync::atomic::Ordering::Relaxed);
                        crowded.store(!seen && !room, std::sync::atomic::Ordering::Relaxed);
                    }
                    let seen_before = e.event.as_deref().is_some_and(|name| {
                        p.history
                            .get(name)
                            .is_some_and(|l| l.iter().any(|(_, id)| *id == e.message_id))
                    });
                    known.store(seen_before, std::sync::atomic::Ordering::Relaxed);
                    let zone = p.traits.get("timezone").cloned();
                    let (not_kept, changes) = p.apply_watching(e, remember, &watched, now);
                    if let Ok(mut past) = past_bounds.lock() {
                        *past = not_kept;
                    }
                    if let Ok(mut c) = changed.lock() {
                        *c = changes;
                    }
                    let moved = p.traits.get("timezone") != zone.as_ref();
                    zone_moved.store(moved, std::sync::atomic::Ordering::Relaxed);
                    if !markable.is_empty() {
                        let profile = p.scope();
                        for m in &markable {
                            // Marked for an enrollment it may find later (events out of
                            // order, a login): one that reads it is left out above.
                            let scope = crate::condition::Scope {
                                event: &e.properties,
                                trigger: &Value::Null,
                                waited: &Value::Null,
                                profile: &profile,
                                now,
                                zone: m.marker.zone.as_deref(),
                            };
                            if m.marker.condition.eval(&scope) {
                                p.mark(&m.key, e.timestamp);
                            }
                        }
                    }
                    if !p.marks.is_empty() {
                        p.keep_marks(&active.mark_keys, |j| active.version_of(j));
                    }
                    // The latest activity arms a check unless one is pending already (that one
                    // will look again from the latest activity when it is due). One that comes
                    // after its own `for` has passed (a phone offline for days sending its
                    // queue) arms one only when it happened after the last check's time: one
                    // from before it, that check judged her spell without it, and her
                    // inactivity went on as the checks saw it (each such late event would
                    // enter her again at once); one after it starts a spell no check saw.
                    // Its check is due a settle after it came, not at once (see
                    // `inactivity_check_at`): the burst's other late events, newer ones among
                    // them, arm none while it is pending, and it looks from the latest of
                    // them. Her first activity ever arms one whatever its age (an import of
                    // history).
                    for (journey, events, wait) in &arms {
                        let armable = match p.inactivity_checks.get(*journey) {
                            None => true,
                            Some(at) => {
                                *at <= now && (e.timestamp > *at || e.timestamp + *wait > now)
                            }
                        };
                        if p.last_of(events) == Some(e.timestamp) && armable {
                            p.inactivity_checks.insert(
                                journey.to_string(),
                                inactivity_check_at(e.timestamp, e.received_at, *wait),
                            );
                        }
                    }
                },
                // An identify's new push devices are registered before the profile is written,
                // and so is the device whose token another event's device sent.
                if e.kind == Kind::Identify {
                    Some(Registering::Identify(e.timestamp))
                } else {
                    e.push_device().map(|_| Registering::Device(e.timestamp))
                },
            )
            .await?
            .0;
        if before_erasure.into_inner() {
            // A login (or an alias) among them names a visitor who was her, which her erasure
            // could not find: erased too, as the visitors merged into her are.
            if let Some(a) = anonymous_id {
                self.erase_visitor_named(user, a).await?;
            }
            tracing::info!(message_id = %e.message_id, "an event received before its user was erased is dropped");
            return Ok(());
        }
        if let Some(into) = merged_into.into_inner().unwrap_or_else(|p| p.into_inner()) {
            tracing::debug!(user, into, message_id = %e.message_id, "event of a merged anonymous user");
            // What it still owes as the anonymous user's (this event retried after failing
            // half-way, its enrollment merged since or missed by the merge) is performed first:
            // nothing else would touch that enrollment again.
            for (_, l) in self.load_enrollments(user).await? {
                self.settle_for(l, &e.message_id, false).await?;
            }
            let theirs = Event {
                user_id: into,
                ..e.clone()
            };
            return Box::pin(self.apply_event(&theirs, Some(user))).await;
        }
        let merging = unmerged.into_inner();
        let mut past_bounds = past_bounds.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut changed = changed.into_inner().unwrap_or_else(|p| p.into_inner());
        if let (Some(a), true) = (anonymous_id, merging) {
            let merged = self
                .merge_anonymous(&profile, a, &e.message_id, &changed)
                .await?;
            profile = merged.profile;
            past_bounds.extend(merged.not_taken);
            // A login's changes are judged on her profile as the merge leaves it.
            if let Some(rebased) = merged.changes {
                changed = rebased;
            }
        }
        // What the event brought that her profile did not keep: told in her timeline with the
        // event (and logged with it, below), as the `200`'s warnings told the app.
        let crowded = anonymous_id.filter(|_| crowded.into_inner());
        let not_kept = self.not_kept(e, past_bounds, crowded);
        // The same event sent before as the visitor she turned out to be (a retry that added
        // her userId): done then, under the visitor's id. Looked up only for an event her
        // history knows (an event of hers that failed half-way is not the visitor's), or a
        // named event that is the merge itself (her history did not have the visitor's yet).
        let look = known.into_inner() || (merging && e.event.is_some());
        if let Some(a) = anonymous_id.filter(|_| look) {
            let visitor = join(&[crate::event::ANONYMOUS_PREFIX, a]);
            if self
                .store
                .get(&dedup_key(&visitor, &e.message_id))
                .await?
                .is_some()
            {
                tracing::debug!(user, visitor = %visitor, message_id = %e.message_id, "event handled as the visitor's: duplicate ignored");
                return Ok(());
            }
        }
        if e.kind == Kind::Identify && e.traits.contains_key("phone") {
            // Remember whose number this is, so that an SMS opt-out can be traced to the user.
            if let Some(phone) = profile.traits.get("phone").and_then(Value::as_str) {
                self.note_phone_holder(phone, user).await?;
            }
        }
        let mut enrollments = self.load_enrollments(user).await?;
        // An identify's changes of watched traits as exits and goals read them (`event.*` is
        // `{trait, from, to}`), for those enrolled.
        let trait_changes: Vec<engine::TraitChanged> = changed
            .iter()
            .map(|(name, change)| (name.clone(), Arc::new(change.properties(name))))
            .collect();

        // The journeys the event reaches (its trigger, an exit, a goal or a wait hears it; an
        // identify's, those whose `trait_changed` trigger watches a trait it changed), and the
        // traits their `update` steps may set as it is taken: a date a `wait_until` reads
        // from one, missing or past before they ran, is read again once they have (see
        // `engine::SetMeanwhile`). Decided by the journeys' files, not by what runs.
        let reached = |j: &Journey| match e.event.as_deref() {
            Some(name) => {
                j.listens_to(name)
                    || matches!(j.trigger.kind(), Some(TriggerKind::Event { events, .. }) if events.contains(name))
                    || matches!(j.trigger.kind(), Some(TriggerKind::Repeated(r)) if r.event == name)
            }
            None => j
                .watched_trait()
                .is_some_and(|t| changed.iter().any(|(name, _)| name == t)),
        };
        let set_meanwhile: Vec<engine::SetMeanwhile> = journeys
            .iter()
            .filter(|p| reached(&p.journey))
            .flat_map(|p| {
                p.journey.updated_traits().map(|name| engine::SetMeanwhile {
                    journey: p.journey.id.clone(),
                    name: name.to_string(),
                })
            })
            .collect();

        // The updates its transitions perform, noted while it is taken (see `Runtime::written`).
        let key = (user.to_string(), e.message_id.clone());
        if let Ok(mut w) = self.written.lock() {
            w.insert(key.clone(), Vec::new());
        }
        if !set_meanwhile.is_empty() {
            if let Ok(mut r) = self.read_last.lock() {
                r.insert(key.clone());
            }
        }
        let _taking = Taking {
            written: &self.written,
            read_last: &self.read_last,
            key,
        };

        // Users already enrolled: replay an interrupted transition, or apply goal/exit/wait_for
        // (and an identify's trait changes that an exit or a goal watches).
        let names: Vec<String> = enrollments.keys().cloned().collect();
        // An exit's or a wait's `where` that kept the event from moving an enrollment: kept
        // with the event, for the user's timeline, as a refused entry is.
        let mut unmet: Vec<Entry> = Vec::new();
        // The earliest time a send the event's transitions owe is held to (quiet hours): the
        // message is taken again then, once all else it does is done.
        let mut held: Option<(String, Timestamp)> = None;
        for j in names {
            // Done when this message made its own transition of it already (a retry); a move
            // it made by merging (the login that brought it here) is not that: the event is
            // still owed to it (a purchase sent as the login meets a moved `wait_for`).
            let own = enrollments
                .get(&j)
                .is_some_and(|l| l.enrollment.transitioned_by_itself(&e.message_id));
            let replayed = match self.replay(&mut enrollments, &j, &e.message_id).await {
                Ok(done) => done,
                // A send this message's transition of it owes is held by the user's quiet
                // hours: the rest of the event (other journeys, its triggers) goes on now, and
                // the message comes back for the send then.
                Err(RunError::Later { why, at }) => {
                    self.reload_enrollment(user, &j, &mut enrollments).await?;
                    held = earliest(held, why, at);
                    continue;
                }
                Err(err) => return Err(err),
            };
            if replayed && own {
                continue;
            }
            let Some(l) = enrollments.get(&j) else {
                continue;
            };
            // An identify may bring the address a send is waiting for (see
            // `engine::address_arrived`).
            let address = e.kind == Kind::Identify && l.enrollment.waits_for_address();
            // Or move the date a `wait_until` waits for (see `engine::date_moved`).
            let timed = e.kind == Kind::Identify && l.enrollment.waits_for_time();
            let name = e.event.as_deref();
            if name.is_none() && !address && !timed && trait_changes.is_empty() {
                continue;
            }
            // (`j` names the record: with an `enrollment_key`, one of several of the journey,
            // each judging the event on its own.)
            let journey = Enrollment::journey_of_record(&j);
            let Some(p) = self.catalog.version(journey, l.enrollment.version).await? else {
                tracing::warn!(
                    journey,
                    version = l.enrollment.version,
                    "enrollment names an unknown journey version"
                );
                continue;
            };
            // Or change a trait an exit or the goal of the version she is in watches (or the
            // goal of the enrollment before a re-entry: `convert_previous` judges it).
            let changes = trait_changes
                .iter()
                .any(|(t, _)| p.journey.listens_to_change(t))
                || (l.enrollment.previous.is_some() && !trait_changes.is_empty());
            if name.is_none() && !address && !timed && !changes {
                continue;
            }
            // (The enrollment before a re-entry may convert on its own version's goal, which
            // `convert_previous` judges.)
            if name.is_some_and(|name| !p.journey.listens_to(name))
                && l.enrollment.previous.is_none()
            {
                continue;
            }
            let stopped = journeys
                .iter()
                .any(|l| l.journey.id == journey && l.journey.status == JourneyStatus::Stopped);
            let unsub = self.unsubscribe_url(user, &p.journey);
            let ctx = Ctx {
                journey: &p.journey,
                version: p.version,
                profile: &profile,
                now: self.now(),
                unsubscribe_url: unsub.as_deref(),
                topics: self.declared(&p),
                set_meanwhile: &set_meanwhile,
            };
            let exits = stopped
                || engine::exits_on(&ctx, &l.enrollment, e)
                || engine::exits_on_change(&ctx, &l.enrollment, e, &trait_changes);
            let next = if stopped && l.enrollment.is_active() {
                engine::stop(&ctx, &l.enrollment)
            } else if name.is_some() {
                let next = match engine::on_event(&ctx, &l.enrollment, e) {
                    Some(t) => Some(t),
                    None => self.convert_previous(&l.enrollment, e, &[], &ctx).await?,
                };
                // One goal event converts one enrollment of a journey: an event that brought
                // a login (its userId with the visitor's anonymousId) may have converted the
                // visitor's as the merge ended it, in this delivery or an earlier one.
                let converts = next.as_ref().is_some_and(|t| {
                    t.timeline
                        .iter()
                        .any(|x| matches!(x.what, What::Converted { .. }))
                });
                match self.visitor_converted(e, &j, converts).await? {
                    Some(at) => engine::on_event_converted(&ctx, &l.enrollment, e, Some(at)),
                    None => next,
                }
            } else {
                // An identify: its trait changes first (an exit, the goal), then the address or
                // the date it brings to the enrollment still active after them.
                let changed = match engine::on_trait_changes(&ctx, &l.enrollment, e, &trait_changes)
                {
                    Some(t) => Some(t),
                    // A change stamped in the window of the enrollment before a re-entry.
                    None if !trait_changes.is_empty() => {
                        self.convert_previous(&l.enrollment, e, &trait_changes, &ctx)
                            .await?
                    }
                    None => None,
                };
                let after = changed.as_ref().map_or(&*l.enrollment, |t| &t.enrollment);
                let then = if !after.is_active() {
                    None
                } else if address {
                    engine::address_arrived(&ctx, after)
                } else {
                    engine::date_moved_by(&ctx, after, Some("an identify"))
                };
                match (changed, then) {
                    (Some(mut t), Some(more)) => {
                        t.enrollment = more.enrollment;
                        t.effects.extend(more.effects);
                        t.timeline.extend(more.timeline);
                        Some(t)
                    }
                    (t, more) => t.or(more),
                }
            };
            // No exit took the event: an exit's or the wait's `where` that kept it from taking
            // it, if one did (none when the wait took it).
            if !exits && name.is_some() {
                unmet.extend(engine::unmet(&ctx, &l.enrollment, e));
            }
            if !exits && name.is_none() {
                unmet.extend(engine::unmet_changes(
                    &ctx,
                    &l.enrollment,
                    e,
                    &trait_changes,
                ));
            }
            let t = match next {
                Some(mut t) => {
                    self.credit_conversion(&mut t, e.timestamp, &profile.anonymous_ids)
                        .await?;
                    Some(t)
                }
                // Ended already, but still owing a send (a provider down): the exit event
                // cancels it all the same.
                None if exits && l.owes_sends() => {
                    let mut enrollment = Enrollment::clone(&l.enrollment);
                    enrollment.outbox.clear();
                    enrollment.outbox_timeline.clear();
                    Some(Transition {
                        enrollment,
                        effects: Vec::new(),
                        timeline: Vec::new(),
                    })
                }
                None => None,
            };
            if let Some(t) = t {
                let committed = self.commit(t, &e.message_id, Some(l), exits).await?;
                match self.settle_for(committed, &e.message_id, false).await {
                    Ok((settled, _)) => {
                        enrollments.insert(j.clone(), settled);
                    }
                    // As above: held, the rest goes on.
                    Err(RunError::Later { why, at }) => {
                        self.reload_enrollment(user, &j, &mut enrollments).await?;
                        held = earliest(held, why, at);
                    }
                    Err(err) => return Err(err),
                }
            }
        }

        // Her zone changed: a wait for a time of day (or a date with a time) follows her, also
        // one an identify's loop above did not see (a track's device zone, an enrollment that
        // came with the login). So does a wait the login moved to her when the login came with
        // another event than an identify (whose loop above read them): it was timed in the
        // visitor's zone. Nothing moves when the waits agree with her zone already.
        let waiting = enrollments.values().any(|l| l.enrollment.waits_for_time());
        let login = merging && e.kind != Kind::Identify;
        if (zone_moved.into_inner() || login) && waiting {
            self.move_date_waits(&profile, "", &e.message_id, None)
                .await?;
        }

        // A journey's goal the user reaches after logging in, for a journey she was in only as
        // the anonymous visitor she turned out to be (it ended before the login, so it stayed
        // hers): that enrollment converts.
        if let Some(name) = e.event.as_deref() {
            if !profile.anonymous_ids.is_empty() {
                self.convert_anonymous_past(&profile, &enrollments, journeys, e, name)
                    .await?;
            }
        }

        // Triggers.
        let mut refusals: Vec<Entry> = unmet;
        refusals.extend(not_kept);
        if let Some(name) = e.event.as_deref() {
            let scope_event = e.properties.clone();
            let scope_profile = profile.scope();
            for p in journeys.iter() {
                // With an `enrollment_key`, the trigger's value of it names the record of her
                // enrollment (one per value); without one, or a trigger without a value, the
                // journey's id (the latter enters nothing, below).
                let keyed = match p.journey.trigger.kind() {
                    Some(TriggerKind::Event { events, .. }) if events.contains(name) => {
                        p.journey.key_of(&scope_event)
                    }
                    _ => None,
                };
                let record = match &keyed {
                    Some(Ok(k)) => Enrollment::record_of(&p.journey.id, Some(k)),
                    _ => p.journey.id.clone(),
                };
                // This very message entered the user before (it is retried, its outbox was
                // performed above): nothing to judge again, neither the `where` (her profile
                // may hold what the journey's own `update` set since) nor the entry rules.
                let entered_by_it = enrollments
                    .get(&record)
                    .is_some_and(|l| l.enrollment.entered_by(&e.message_id));
                if entered_by_it {
                    continue;
                }
                // In the trigger's own `where`, the trigger is the event: `trigger.*` is
                // `event.*`, and nothing was waited for.
                let scope = crate::condition::Scope {
                    event: &scope_event,
                    trigger: &scope_event,
                    waited: &Value::Null,
                    profile: &scope_profile,
                    now: e.timestamp,
                    zone: p.journey.default_zone(),
                };
                // The trigger's `where`, when it is false for this event (the user did the
                // trigger's event but does not enter: kept as a refusal, with what its paths
                // held).
                let refused_by = |c: Option<&'_ crate::condition::Condition>| {
                    c.filter(|c| p.journey.status.is_active() && !c.eval(&scope))
                        .map(|c| (c.source().to_string(), c.values(&scope)))
                };
                let mut counted_until = None;
                let (enter, unmet) = match p.journey.trigger.kind() {
                    Some(TriggerKind::Event { events, condition }) if events.contains(name) => {
                        let unmet = refused_by(condition);
                        (unmet.is_none(), unmet)
                    }
                    Some(TriggerKind::Repeated(r)) if r.event == name => {
                        // Short of its count, the user has not done the trigger yet: nothing
                        // to refuse. At the count, its `where` decides.
                        counted_until = profile.done_times_within(
                            name,
                            e.timestamp,
                            r.within.to_jiff(),
                            r.times as usize,
                            enrollments
                                .get(&p.journey.id)
                                .map(|l| l.enrollment.hears_from()),
                        );
                        let counted = counted_until.is_some();
                        let unmet = counted.then(|| refused_by(r.condition.as_ref())).flatten();
                        (counted && unmet.is_none(), unmet)
                    }
                    Some(TriggerKind::Inactive(i)) => {
                        let wait = i.duration.to_jiff();
                        let at = inactivity_check_at(e.timestamp, e.received_at, wait);
                        // Armed by this event (above), or by an earlier delivery of it that
                        // stopped before its timer was stored: the timer is stored again.
                        if arms.iter().any(|(j, ..)| *j == p.journey.id)
                            && profile.inactivity_checks.get(&p.journey.id) == Some(&at)
                        {
                            let m = Message::Inactivity {
                                user_id: user.to_string(),
                                journey: p.journey.id.clone(),
                                since: e.timestamp,
                                at,
                            };
                            // Applied late (a backlog on the events queue), the settle is
                            // counted from now: the rest of her burst is in that backlog too.
                            // The check judges by its own time, whenever it comes.
                            let settled = self.now() + wait.min(CHECK_SETTLE);
                            self.schedule(m, at.max(settled)).await?;
                        }
                        (false, None)
                    }
                    _ => (false, None),
                };
                if let Some((source, values)) = unmet {
                    refusals.push(self.refusal(
                        &p.journey,
                        name,
                        None,
                        "condition",
                        where_was_false(&source, &values),
                    ));
                } else if let (true, Some(Err(detail))) = (enter, &keyed) {
                    if p.journey.status.is_active() {
                        refusals.push(self.refusal(
                            &p.journey,
                            name,
                            None,
                            "no_key",
                            detail.clone(),
                        ));
                    } else {
                        let status = p.journey.status.as_str();
                        refusals.push(self.refusal(
                            &p.journey,
                            name,
                            None,
                            status,
                            format!("the journey's `status: {status}`: no one enters it"),
                        ));
                    }
                } else if enter && !self.entered_as(from, &record, e).await? {
                    let trigger = TriggerEvent {
                        event: name.to_string(),
                        message_id: e.message_id.clone(),
                        at: e.timestamp,
                        properties: scope_event.clone(),
                    };
                    refusals.extend(
                        self.try_enter(
                            p,
                            &record,
                            &profile,
                            &mut enrollments,
                            trigger,
                            counted_until,
                            &set_meanwhile,
                        )
                        .await?,
                    );
                }
            }
        }

        // An identify's changes of watched traits: the `trait_changed` journeys watching each
        // enter the user, the identify their trigger event, `{trait, from, to}` its properties.
        // Only an identify's changes do: not a journey's `update` step (journeys would trigger
        // one another, in loops), nor the traits a login brings from the visitor she was.
        for (name, change) in &changed {
            let properties = Arc::new(change.properties(name));
            let scope_profile = profile.scope();
            for p in journeys.iter() {
                let Some(TriggerKind::TraitChanged {
                    name: watched,
                    condition,
                }) = p.journey.trigger.kind()
                else {
                    continue;
                };
                // Entered by this very identify before (it is retried): judged once.
                if watched != name
                    || enrollments
                        .get(&p.journey.id)
                        .is_some_and(|l| l.enrollment.entered_by(&e.message_id))
                {
                    continue;
                }
                let scope = crate::condition::Scope {
                    event: &properties,
                    trigger: &properties,
                    waited: &Value::Null,
                    profile: &scope_profile,
                    now: e.timestamp,
                    zone: p.journey.default_zone(),
                };
                let unmet = condition.filter(|c| p.journey.status.is_active() && !c.eval(&scope));
                if let Some(c) = unmet {
                    let detail = where_was_false(c.source(), &c.values(&scope));
                    refusals.push(self.refusal(
                        &p.journey,
                        TRAIT_CHANGE,
                        None,
                        "condition",
                        detail,
                    ));
                } else if !self.entered_as(from, &p.journey.id, e).await? {
                    let trigger = TriggerEvent {
                        event: TRAIT_CHANGE.to_string(),
                        message_id: e.message_id.clone(),
                        at: e.timestamp,
                        properties: properties.clone(),
                    };
                    refusals.extend(
                        self.try_enter(
                            p,
                            &p.journey.id,
                            &profile,
                            &mut enrollments,
                            trigger,
                            None,
                            &set_meanwhile,
                        )
                        .await?,
                    );
                }
            }
        }

        // Every journey the event reached ran on the profile as it came with the event, so one
        // that entered after another's `update` changed a date it waits for reads the old
        // date, and one that found it missing or past waits to read it again (see
        // `engine::SetMeanwhile`): date waits are read again once all have run (an enrollment
        // waiting before the update was moved by it already, and is left alone). Decided by
        // the journeys' files, not by what ran, so a message that comes again after a crash
        // does it too.
        if !set_meanwhile.is_empty() {
            // The updates this pass itself performs (a wait it moves on into an `update`) move
            // the others' date waits at once, as outside an event.
            if let Ok(mut r) = self.read_last.lock() {
                r.remove(&(user.to_string(), e.message_id.clone()));
            }
            // What moved them: the updates the event's transitions performed, by journey; or,
            // when this handling performed none (a retry, after an earlier one performed them
            // and stopped), the journeys whose updates may have.
            let performed: BTreeSet<String> = self
                .written
                .lock()
                .ok()
                .and_then(|w| {
                    let list = w.get(&(user.to_string(), e.message_id.clone()))?;
                    Some(
                        list.iter()
                            .filter(|w| !w.traits.is_empty())
                            .map(|w| w.journey.clone())
                            .collect(),
                    )
                })
                .unwrap_or_default();
            let names: Vec<String> = if performed.is_empty() {
                let may: BTreeSet<&str> =
                    set_meanwhile.iter().map(|s| s.journey.as_str()).collect();
                may.into_iter().map(str::to_string).collect()
            } else {
                performed.into_iter().collect()
            };
            let by = match names.as_slice() {
                [] => None,
                [one] => Some(format!("journey {one}'s update")),
                many => Some(format!("the updates of journeys {}", many.join(", "))),
            };
            let (fresh, _) = self.load_profile(user).await?;
            self.move_date_waits(&fresh, "", &e.message_id, by.as_deref())
                .await?;
        }

        // Not handled yet while a send it owes is held: no marker, so that its retry then
        // performs the send (the rest it did is found done).
        if let Some((why, at)) = held {
            return Err(RunError::Later { why, at });
        }
        // The marker that the event was handled keeps the entries it was refused (for the
        // user's timeline, as long as the marker lives): no write of their own.
        log_refusals(user, &refusals);
        let dedup = Record::of(dedup_key(user, &e.message_id), 1, refusals)
            .expiring(self.now() + self.remembered_for());
        self.store.put(&dedup, Expect::Any).await?;
        Ok(())
    }

    /// Whether `e` entered the journey's `record` ([`Enrollment::record_of`]) as the anonymous
    /// user `from` already (it was handled as theirs until a fault stopped it, and comes again
    /// after they were merged): it enters once. A continuation moved to the user is found by
    /// the user's own entry check instead.
    async fn entered_as(
        &self,
        from: Option<&str>,
        record: &str,
        e: &Event,
    ) -> Result<bool, RunError> {
        let Some(anon) = from else {
            return Ok(false);
        };
        Ok(match self.store.get(&enrollment_key(anon, record)).await? {
            Some(r) => Loaded::read(&r)?.enrollment.trigger.message_id == e.message_id,
            None => false,
        })
    }

    /// The anonymous user `anon:<anonymous_id>` turned out to be `user` (an event carried both
    /// ids, for the first time): the anonymous profile is marked (its later events are `user`'s),
    /// its active enrollments go on as `user`'s ([`engine::merge`]; one that `user` is in
    /// already ends), and what it knew is taken into `user`'s profile, which then lists the
    /// anonymous id, so the next event with both ids does nothing of this. Each step is
    /// idempotent, so a message that comes again finishes what a crash interrupted. An anonymous
    /// id merged into someone else before stays theirs. Returns `user`'s profile.
    async fn merge_anonymous(
        &self,
        profile: &Profile,
        anonymous_id: &str,
        cause: &str,
        changes: &[(String, crate::profile::TraitChange)],
    ) -> Result<MergedVisitor, RunError> {
        let user = profile.user_id.as_str();
        let anon = join(&[crate::event::ANONYMOUS_PREFIX, anonymous_id]);
        let theirs = self
            .update_profile(&anon, |p| {
                if p.merged_into.is_none() {
                    p.merged_into = Some(user.to_string());
                }
            })
            .await?;
        let ours = theirs.merged_into.as_deref() == Some(user);
        let now = self.now();
        if ours {
            self.merge_caps(&anon, user).await?;
            let mut mine = self.load_enrollments(user).await?;
            let visitors = self.load_enrollments(&anon).await?;
            // What the visitor's enrollments converted, and when: one goal event converts one
            // enrollment of the journey, the first (a guest order does not convert hers again).
            // By record: with an `enrollment_key`, her enrollment for the same value.
            let converted: BTreeMap<String, Timestamp> = visitors
                .iter()
                .filter_map(|(j, l)| l.enrollment.converted_at.map(|at| (j.clone(), at)))
                .collect();
            // The visitor's keyed enrollments moved to her so far, by journey.
            let mut moved: HashMap<String, usize> = HashMap::new();
            for (j, l) in visitors {
                let active = l.enrollment.is_active();
                let (l, _) = self.settle_for(l, cause, active).await?;
                if !active {
                    continue;
                }
                let journey = Enrollment::journey_of_record(&j);
                let Some(p) = self.catalog.version(journey, l.enrollment.version).await? else {
                    tracing::warn!(
                        journey,
                        version = l.enrollment.version,
                        "enrollment names an unknown journey version"
                    );
                    continue;
                };
                let mut ends = self
                    .ends_at_login(
                        &p.journey,
                        mine.get(&j).map(|m| &*m.enrollment),
                        profile,
                        &l.enrollment,
                    )
                    .await?;
                // With an `enrollment_key`, hers at once stay within the bound, those the
                // login moves to her counted.
                if ends.is_none() && l.enrollment.key.is_some() {
                    let hers_at_once = mine
                        .values()
                        .filter(|m| &*m.enrollment.journey == journey && m.enrollment.is_active())
                        .count()
                        + moved.get(journey).copied().unwrap_or(0);
                    if hers_at_once >= crate::journey::MAX_KEYED {
                        ends = Some(format!(
                            "{user} is in this journey {hers_at_once} times at once already, the most a user may be"
                        ));
                    } else {
                        *moved.entry(journey.to_string()).or_default() += 1;
                    }
                }
                let hers = mine.get(&j).and_then(|m| m.enrollment.converted_at);
                self.merge_enrollment(profile, ends, l, &p, cause, hers)
                    .await?;
            }
            // Its pending inactivity checks become the user's (its own are dropped when due):
            // queued for the user before the profile that takes them is written, so a crash
            // between cannot lose one (a check queued twice is one timer). One of hers that is
            // pending keeps hers (it looks again from her latest activity, the visitor's
            // included); one that has passed does not: it saw none of the visitor's activity,
            // which armed nothing of hers, and no check would look at it.
            for (journey, at) in theirs.inactivity_checks.iter() {
                if !profile.takes_visitors_check(journey, *at, now) {
                    continue;
                }
                let Some(p) = self.catalog.latest(journey).await? else {
                    continue;
                };
                let Some(TriggerKind::Inactive(i)) = p.journey.trigger.kind() else {
                    continue;
                };
                // The activity that armed it: its time less the `for`, or, armed by late
                // activity (due a settle after it came, so later), the visitor's latest
                // before that. (A later one came while it was pending: it looks from that.)
                let wait = i.duration.to_jiff();
                let since = theirs
                    .last_of(&i.events)
                    .filter(|t| *t <= *at - wait)
                    .unwrap_or(*at - wait);
                let m = Message::Inactivity {
                    user_id: user.to_string(),
                    journey: journey.clone(),
                    since,
                    at: *at,
                };
                self.schedule(m, *at).await?;
            }
            // Her own active enrollments (a visitor's moved to her was judged as it moved)
            // that the visitor's exit events end: before the profile that lists the anonymous
            // id is written, so that a retry after a failure here merges, and exits, again.
            let mut absorbed = profile.clone();
            absorbed.absorb(&theirs);
            let active = std::mem::take(&mut mine)
                .into_values()
                .filter(|l| l.enrollment.is_active());
            self.exit_on_the_visitors_events(&absorbed, active, &converted, cause)
                .await?;
            tracing::info!(user, anonymous = %anon, "anonymous user merged");
        } else {
            tracing::info!(user, anonymous = %anon, into = theirs.merged_into.as_deref().unwrap_or(""), "anonymous id merged into another user before; not merged again");
        }
        // The visitor's traits past her profile's bounds (see `Profile::absorb`).
        let not_taken = std::sync::Mutex::new(Vec::new());
        // The identify's changes of watched traits, as the merge leaves her profile.
        let rebased = std::sync::Mutex::new(None);
        let merged = self
            .update_profile(user, |p| {
                if p.has_seen_anonymous(anonymous_id) {
                    return;
                }
                if ours {
                    let left = p.absorb(&theirs);
                    // The visitor's pending checks in place of her past ones (queued above).
                    for (journey, at) in theirs.inactivity_checks.iter() {
                        if p.takes_visitors_check(journey, *at, now) {
                            p.inactivity_checks.insert(journey.clone(), *at);
                        }
                    }
                    if let Ok(mut n) = not_taken.lock() {
                        *n = left;
                    }
                    let mut changes = changes.to_vec();
                    p.rebase_changes(&theirs, &mut changes);
                    if let Ok(mut r) = rebased.lock() {
                        *r = Some(changes);
                    }
                }
                p.note_anonymous(anonymous_id, ours);
            })
            .await?;
        Ok(MergedVisitor {
            profile: merged,
            not_taken: not_taken.into_inner().unwrap_or_else(|p| p.into_inner()),
            changes: rebased.into_inner().unwrap_or_else(|p| p.into_inner()),
        })
    }

    /// The timeline facts of what `e` brought that the user's profile did not keep: each trait
    /// the intake left out (`Event::refused`), the traits past the profile's bounds
    /// (`past_bounds`, the first [`NOT_KEPT_NAMED`] named), and an anonymous id not merged for
    /// the same reason (`crowded`). Facts of the profile: in no journey.
    fn not_kept(&self, e: &Event, past_bounds: Vec<String>, crowded: Option<&str>) -> Vec<Entry> {
        // Nearly every event keeps all it brought: no entry, and no reason spelled out.
        if e.refused.is_empty() && past_bounds.is_empty() && crowded.is_none() {
            return Vec::new();
        }
        let at = self.now();
        let fact = |what| Entry {
            at,
            journey: Arc::from(""),
            enrollment: Arc::from(""),
            step: None,
            what,
        };
        let mut out: Vec<Entry> = e
            .refused
            .iter()
            .map(|r| {
                fact(What::NotKept {
                    fields: vec![r.field.clone()],
                    more: 0,
                    value: Some(r.value.clone()),
                    reason: r.reason.clone(),
                })
            })
            .collect();
        // A topic's choice dropped past the topics' bound, apart from the traits past theirs.
        let (topics, traits): (Vec<String>, Vec<String>) = past_bounds
            .into_iter()
            .partition(|k| k.starts_with("subscriptions.topics."));
        // (Each reason is spelled out only for an entry that says it.)
        let reasons = [
            (traits, crate::profile::past_the_bounds as fn() -> String),
            (topics, crate::profile::past_the_topics),
        ];
        for (past, reason) in reasons {
            if past.is_empty() {
                continue;
            }
            let reason = reason();
            let more = past.len().saturating_sub(NOT_KEPT_NAMED);
            out.push(fact(What::NotKept {
                fields: past
                    .iter()
                    .take(NOT_KEPT_NAMED)
                    .map(|k| join(&["traits.", k]))
                    .collect(),
                more,
                value: None,
                reason,
            }));
        }
        if let Some(a) = crowded {
            out.push(fact(What::NotKept {
                fields: vec!["anonymousId".into()],
                more: 0,
                value: Some(crate::condition::shown("anonymousId", &Value::String(a.into()))),
                reason: format!(
                    "the profile lists at most {} anonymous ids: this one is not merged into the user (its visitor's traits and journeys stay its own), the event is hers",
                    crate::profile::MAX_ANONYMOUS_IDS
                ),
            }));
        }
        out
    }

    /// The user's own active enrollments whose exit event the visitor she turned out to be did
    /// since their trigger (the order placed as a guest before logging in) exit now: the login
    /// is when the engine learns the order was hers, as a moved enrollment does
    /// ([`Runtime::merge_enrollment`]). `converted`: when the visitor's enrollment of each
    /// journey converted, if it did (the guest order that converted it converts hers no more).
    async fn exit_on_the_visitors_events(
        &self,
        profile: &Profile,
        enrollments: impl Iterator<Item = Loaded>,
        converted: &BTreeMap<String, Timestamp>,
        cause: &str,
    ) -> Result<(), RunError> {
        let now = self.now();
        for l in enrollments {
            let journey = &l.enrollment.journey;
            let Some(p) = self.catalog.version(journey, l.enrollment.version).await? else {
                continue;
            };
            let Some(late) = late_exit(&p.journey, profile, &l.enrollment, cause, now) else {
                continue;
            };
            // Read again: a visitor's enrollment that ended at this login gave it its in-app
            // messages since it was loaded (one read, only for an enrollment that exits).
            let id = l.enrollment.id.clone();
            let record = l.enrollment.record();
            let Some(r) = self
                .store
                .get(&enrollment_key(&l.enrollment.user_id, &record))
                .await?
            else {
                continue;
            };
            let l = Loaded::read(&r)?;
            if l.enrollment.id != id || !l.enrollment.is_active() {
                continue;
            }
            let ctx = Ctx {
                journey: &p.journey,
                version: p.version,
                profile,
                now,
                unsubscribe_url: None,
                topics: self.declared(&p),
                set_meanwhile: &[],
            };
            let theirs = converted.get(&record).copied();
            let Some(t) = engine::on_late_exit(&ctx, &l.enrollment, &late, theirs) else {
                continue;
            };
            let committed = self.commit(t, &late.message_id, Some(&l), true).await?;
            self.settle_for(committed, &late.message_id, false).await?;
        }
        Ok(())
    }

    /// An active enrollment `l` of an anonymous user that turned out to be `into`: it exits if
    /// `into` did the journey's exit event since its trigger (the order placed from another
    /// device), ends when `ends` says why (see [`ends_at_merge`]), and goes on as `into`'s
    /// otherwise ([`engine::merge`]). `converted`: when `into`'s own enrollment of the journey
    /// converted, if it did (her order that converted it converts this one no more).
    async fn merge_enrollment(
        &self,
        into: &Profile,
        ends: Option<String>,
        l: Loaded,
        p: &Published,
        cause: &str,
        converted: Option<Timestamp>,
    ) -> Result<(), RunError> {
        let journey = &p.journey;
        let now = self.now();
        let ctx = Ctx {
            journey,
            version: l.enrollment.version,
            profile: into,
            now,
            unsubscribe_url: None,
            topics: self.declared(p),
            set_meanwhile: &[],
        };
        let exit = late_exit(journey, into, &l.enrollment, cause, now)
            .filter(|_| ends.is_none())
            .and_then(|late| {
                // Her change of a trait the goal watches converts it first, as where the
                // enrollment moves to her (`exit_moved`): the exit does not take it away.
                let changes = engine::late_changes(&ctx, &l.enrollment);
                let goal = engine::convert_moved_change(&ctx, &l.enrollment, &changes, converted)
                    .map(|(_, t)| t);
                let e = goal.as_ref().map_or(&*l.enrollment, |t| &t.enrollment);
                let exit = engine::on_late_exit(&ctx, e, &late, converted);
                // (No exit: it moves to her, and converts there.)
                Some(match goal {
                    Some(g) => followed_by(g, exit?),
                    None => exit?,
                })
            });
        let (t, exits) = match exit {
            Some(mut t) if t.enrollment.converted_at != l.enrollment.converted_at => {
                let at = t.enrollment.converted_at.unwrap_or(now);
                self.credit_conversion(&mut t, at, &[]).await?;
                (t, true)
            }
            Some(t) => (t, true),
            None => match engine::merge(&ctx, &l.enrollment, &into.user_id, ends) {
                Some(t) => (t, false),
                None => return Ok(()),
            },
        };
        let cause = Enrollment::merge_id_of(cause);
        let committed = self.commit(t, &cause, Some(&l), exits).await?;
        self.settle_for(committed, &cause, false).await?;
        Ok(())
    }

    /// Writes the continuation of a merged anonymous user's enrollment under the user it turned
    /// out to be ([`Effect::Move`]) and schedules its wake-up, unless that user is active in the
    /// journey, for its key if it has one (then it is dropped: one enrollment at a time). Safe
    /// to repeat: a continuation written already is only settled (its wake-up scheduled, if a
    /// crash came first). Says whether it went on (false: dropped).
    async fn move_in(&self, next: &Enrollment, from: &str, cause: &str) -> Result<bool, RunError> {
        let prev = match self.store.get(&enrollment_key_of(next)).await? {
            Some(r) => Some(Loaded::read(&r)?),
            None => None,
        };
        // When the user's own enrollment that this one replaces converted, if it did.
        let converted = prev
            .as_ref()
            .filter(|l| l.enrollment.id != next.id)
            .and_then(|l| l.enrollment.converted_at);
        match prev {
            // Moved in before: perform what it still owes (its wake-up).
            Some(l) if l.enrollment.id == next.id => {
                self.settle_for(l, cause, false).await?;
            }
            Some(l) if l.enrollment.is_active() => {
                tracing::info!(user = %next.user_id, journey = %next.journey, enrollment = %next.id, "entered the journey since the merge: the anonymous enrollment does not go on");
                // Her enrollment goes on in its place: it withdraws the visitor's messages too.
                self.hand_over(&next.user_id, &next.record(), &next.id, &next.in_app)
                    .await?;
                return Ok(false);
            }
            prev => self.write_moved(next, from, cause, prev.as_ref()).await?,
        }
        // The user's exit event applied while the merge ran: it did not find this enrollment
        // (not written yet), so the profile, read again now that it is, must show the event.
        self.exit_moved(next, from, cause, converted).await?;
        Ok(true)
    }

    /// Ends a moved-in enrollment that is still active when its user did the journey's exit
    /// event since its trigger ([`Runtime::move_in`]). `converted`: when the user's own
    /// enrollment it replaced converted, if it did (see [`engine::on_late_exit`]).
    async fn exit_moved(
        &self,
        next: &Enrollment,
        from: &str,
        cause: &str,
        converted: Option<Timestamp>,
    ) -> Result<(), RunError> {
        let profile = self.load_profile(&next.user_id).await?.0;
        let Some(r) = self.store.get(&enrollment_key_of(next)).await? else {
            return Ok(());
        };
        let l = Loaded::read(&r)?;
        if l.enrollment.id != next.id || !l.enrollment.is_active() {
            return Ok(());
        }
        let Some(p) = self
            .catalog
            .version(&next.journey, l.enrollment.version)
            .await?
        else {
            return Ok(());
        };
        let now = self.now();
        let unsub = self.unsubscribe_url(&next.user_id, &p.journey);
        let ctx = Ctx {
            journey: &p.journey,
            version: p.version,
            profile: &profile,
            now,
            unsubscribe_url: unsub.as_deref(),
            topics: self.declared(&p),
            set_meanwhile: &[],
        };
        // Her changes since the trigger of a trait an exit or the goal watches (the identify
        // that made her a subscriber as herself, before the login): noted on her profile.
        let changes = engine::late_changes(&ctx, &l.enrollment);
        // Her change of a trait the goal watches converts it first, whatever else ends it or
        // moves it on below (as at an entry, and as an identify that both meets the goal and
        // an exit does): the exit does not take the conversion away.
        let goal = engine::convert_moved_change(&ctx, &l.enrollment, &changes, converted)
            .map(|(c, t)| (c.message_id.clone(), c.at, t));
        let e = goal
            .as_ref()
            .map_or(&*l.enrollment, |(_, _, t)| &t.enrollment);
        let by_change = engine::exit_late_change(&ctx, e, &changes);
        let by_event = late_exit(&p.journey, &profile, e, cause, now);
        // Her exit event since the trigger ends it, or her change of a trait an exit watches
        // (the earlier of the two); else the event its `wait_for` waits for, done by her since
        // the wait began (the purchase made from her phone while the laptop's visitor waited
        // for it), meets it; else the goal's conversion alone.
        // (its cause, when, the transition, whether it exits)
        let (cause_id, at, t, exits) = match (by_event, by_change) {
            (by_event, Some((c, t)))
                if by_event.as_ref().is_none_or(|late| c.at < late.timestamp) =>
            {
                (c.message_id.clone(), c.at, Some(t), true)
            }
            (Some(late), _) => {
                let t = engine::on_late_exit(&ctx, e, &late, converted);
                (late.message_id, late.timestamp, t, true)
            }
            (None, _) => match late_reply(&p.journey, &profile, e, cause, now) {
                Some(late) => {
                    let mut t = engine::on_event(&ctx, e, &late);
                    // A goal with a `where` met when its event came (the profile's mark),
                    // as an entry finds one: the late reply carries no properties.
                    if let (Some(t), Some(goal)) = (
                        t.as_mut(),
                        p.journey
                            .goal
                            .as_ref()
                            .filter(|g| g.condition.is_some() && g.event.is_some()),
                    ) {
                        let inclusive = !goal.names_event(&e.trigger.event);
                        let marked = goal.event.as_deref().and_then(|name| {
                            profile.marked_after(
                                &p.journey,
                                MarkKind::Goal,
                                name,
                                e.trigger.at,
                                inclusive,
                            )
                        });
                        if let Some(at) = marked {
                            engine::convert_late(&ctx, t, at);
                        }
                    }
                    (late.message_id, late.timestamp, t, false)
                }
                None => (String::new(), now, None, false),
            },
        };
        // The conversion, followed by what ended it or moved it on, if anything did: under the
        // cause of the latter, else of the change that converted it.
        let (cause_id, at, mut t, exits) = match (goal, t) {
            (Some((_, _, g)), Some(t)) => (cause_id, at, followed_by(g, t), exits),
            (Some((id, at, g)), None) => (id, at, g, false),
            (None, Some(t)) => (cause_id, at, t, exits),
            (None, None) => return Ok(()),
        };
        if t.enrollment.converted_at != l.enrollment.converted_at {
            // Credited to the last message before the conversion, the visitor's among them
            // (the profile lists the visitor only once the merge is over).
            let mut anonymous = profile.anonymous_ids.clone();
            if let Some(a) = from.strip_prefix(crate::event::ANONYMOUS_PREFIX) {
                if !anonymous.iter().any(|x| x == a) {
                    anonymous.push(a.to_string());
                }
            }
            let at = t.enrollment.converted_at.unwrap_or(at);
            self.credit_conversion(&mut t, at, &anonymous).await?;
        }
        // Under a cause of its own: the move's timeline record is (enrollment, cause) already.
        let committed = self.commit(t, &cause_id, Some(&l), exits).await?;
        self.settle_for(committed, &cause_id, false).await?;
        Ok(())
    }

    /// Gives `messages`, the in-app messages the visitor's enrollment `from` remembered, to
    /// `user`'s enrollment in `record` (of the journey, for the same key) when it is active and
    /// another one (see [`engine::HandOver`]), with a conditional write of it that leaves the
    /// rest as it is (a transition of it under way loses its write and is made again, with
    /// them). Safe to repeat: messages it has are not taken again. One that is not active keeps
    /// nothing: the messages stay in the inbox, as its own did when it ended.
    async fn hand_over(
        &self,
        user: &str,
        record: &str,
        from: &str,
        messages: &[crate::enrollment::InAppSent],
    ) -> Result<(), RunError> {
        if messages.is_empty() {
            return Ok(());
        }
        let journey = Enrollment::journey_of_record(record);
        let key = enrollment_key(user, record);
        for _ in 0..MARK_ATTEMPTS {
            let Some(r) = self.store.get(&key).await? else {
                return Ok(());
            };
            let l = Loaded::read(&r)?;
            if *l.enrollment.id == *from {
                return Ok(());
            }
            if !l.enrollment.is_active() {
                tracing::info!(user, journey, enrollment = %from, "the user's enrollment of the journey is over: the visitor's in-app messages stay in the inbox");
                return Ok(());
            }
            let mut next = Enrollment::clone(&l.enrollment);
            if !next.take_in_app(from, messages) {
                return Ok(());
            }
            let record = Record::shared(key.clone(), l.version + 1, Arc::new(next));
            match self.store.put(&record, Expect::Version(l.version)).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Retry(format!(
            "enrollment {user}/{journey} kept changing while it took {from}'s in-app messages"
        )))
    }

    /// [`Runtime::move_in`]'s write: the continuation, owing its wake-up, over `prev` (an ended
    /// enrollment of the journey) or where there was none.
    async fn write_moved(
        &self,
        next: &Enrollment,
        from: &str,
        cause: &str,
        prev: Option<&Loaded>,
    ) -> Result<(), RunError> {
        let effects = next
            .pending
            .map(|p| Effect::Wake {
                seq: p.seq,
                at: p.at,
            })
            .into_iter()
            .collect();
        let timeline = vec![Entry {
            at: self.now(),
            journey: next.journey.clone(),
            enrollment: next.id.clone(),
            step: Some(Arc::from(next.step.as_str())),
            what: What::Merged {
                from: from.to_string(),
                into: next.user_id.to_string(),
                ended: false,
                reason: None,
            },
        }];
        let mut enrollment = next.clone();
        match prev {
            Some(l) => enrollment.follow(&l.enrollment),
            // Her value whose record is gone: numbered no lower than its last enrollment, so
            // that her next one of the value takes an id of its own.
            None if next.key.is_some() => {
                if let Some(last) = self.last_entry(&next.user_id, &next.record()).await? {
                    enrollment.n = enrollment.n.max(last.n);
                }
            }
            None => {}
        }
        let t = Transition {
            enrollment,
            effects,
            timeline,
        };
        let committed = self.commit(t, cause, prev, false).await?;
        self.settle_for(committed, cause, false).await?;
        Ok(())
    }

    /// What a send of version `p` knows of topics: this runtime's declarations, the one `p`
    /// was published with, and how to take a topic neither declares.
    fn declared<'a>(&'a self, p: &'a Published) -> Declared<'a> {
        Declared {
            running: &self.config.topics,
            published: p.topic.as_ref(),
            otherwise: self.config.undeclared_topic,
        }
    }

    /// The signed one-click link of `journey`'s emails to `user`: it unsubscribes her from the
    /// journey's topic when it has one, else from email.
    fn unsubscribe_url(&self, user: &str, journey: &Journey) -> Option<String> {
        let (base, signer) = (
            self.config.public_url.as_ref()?,
            self.config.signer.as_ref()?,
        );
        let token = match &journey.topic {
            Some(topic) => signer.topic_unsubscribe_token(user, "email", &journey.id, topic),
            None => signer.unsubscribe_token(user, "email", &journey.id),
        };
        Some(format!(
            "{}/v1/unsubscribe?token={token}",
            base.trim_end_matches('/')
        ))
    }

    /// Whether the latest version of `journey` is stopped (it applies to every version).
    async fn stopped(&self, journey: &str) -> Result<bool, RunError> {
        Ok(self
            .catalog
            .active()
            .await?
            .iter()
            .any(|p| p.journey.id == journey && p.journey.status == JourneyStatus::Stopped))
    }

    /// Enrolls the user in the journey's `record` ([`Enrollment::record_of`]: its id, or, with
    /// an `enrollment_key`, the trigger's value of it) unless entry rules say no.
    #[allow(clippy::too_many_arguments)]
    async fn try_enter(
        &self,
        p: &Published,
        record: &str,
        profile: &Profile,
        enrollments: &mut BTreeMap<String, Loaded>,
        trigger: TriggerEvent,
        counted_until: Option<Timestamp>,
        set_meanwhile: &[engine::SetMeanwhile],
    ) -> Result<Option<Entry>, RunError> {
        let refused = self
            .enter_or_refuse(
                p,
                record,
                profile,
                enrollments,
                trigger,
                counted_until,
                set_meanwhile,
            )
            .await?;
        Ok(refused.map(|r| r.entry))
    }

    /// [`Runtime::try_enter`], saying of a refusal by `reentry: after` when she may enter
    /// again (from the entry in the way: hers, what a keyed value's left, or a visitor's she
    /// turned out to be).
    #[allow(clippy::too_many_arguments)]
    async fn enter_or_refuse(
        &self,
        p: &Published,
        record: &str,
        profile: &Profile,
        enrollments: &mut BTreeMap<String, Loaded>,
        trigger: TriggerEvent,
        counted_until: Option<Timestamp>,
        set_meanwhile: &[engine::SetMeanwhile],
    ) -> Result<Option<Refused>, RunError> {
        let j = &p.journey;
        let now = self.now();
        let existing = enrollments.get(record);
        // This very message enrolled the user before (its outbox was replayed by the caller),
        // whatever the journey's status has become since (stopped while it was retried): it is
        // neither entered again nor refused. A message that only moved or ended the enrollment
        // (an exit event that is also the trigger) did not: the rules below decide whether it
        // enters the user again.
        if existing.is_some_and(|l| l.enrollment.entered_by(&trigger.message_id)) {
            return Ok(None);
        }
        if !j.status.is_active() {
            let status = j.status.as_str();
            return Ok(Some(Refused::of(self.refusal(
                j,
                &trigger.event,
                None,
                status,
                format!("the journey's `status: {status}`: no one enters it"),
            ))));
        }
        if let Some(l) = existing {
            let e = &l.enrollment;
            if e.is_active() {
                let detail = match &e.key {
                    Some(k) => format!(
                        "in the journey for `{}` {k} since {} (on version {}, at step `{}`): one enrollment a value at a time",
                        j.enrollment_key.as_ref().map_or("enrollment_key", |k| k.source()),
                        e.entered_at,
                        e.version,
                        e.step
                    ),
                    None => format!(
                        "in the journey since {} (on version {}, at step `{}`): one enrollment a user at a time",
                        e.entered_at, e.version, e.step
                    ),
                };
                return Ok(Some(Refused::of(self.refusal(
                    j,
                    &trigger.event,
                    Some(&e.id),
                    "enrolled",
                    detail,
                ))));
            }
            if let Some(detail) = engine::reentry_refusal(j, e, trigger.at, profile) {
                let detail = self.judged_at(j, detail, trigger.at);
                let entry = self.refusal(j, &trigger.event, Some(&e.id), "reentry", detail);
                let again = engine::reentry_again(j, e.trigger.at, profile);
                return Ok(Some(Refused { entry, again }));
            }
        }
        // With an `enrollment_key`, a value whose record is gone (an ended enrollment's goes
        // days after its end) is judged by what its last enrollment left, and numbered on from
        // it: one GetItem, for a keyed journey's value she has no record of.
        let left = match existing {
            None if j.enrollment_key.is_some() => self.last_entry(&profile.user_id, record).await?,
            _ => None,
        };
        if let Some(last) = &left {
            let refused = engine::reentry_refusal_after(
                j,
                last.entered_at,
                last.trigger_at,
                trigger.at,
                profile,
            );
            if let Some(detail) = refused {
                let detail = self.judged_at(j, detail, trigger.at);
                let entry = self.refusal(j, &trigger.event, Some(&last.id), "reentry", detail);
                let again = engine::reentry_again(j, last.trigger_at, profile);
                return Ok(Some(Refused { entry, again }));
            }
        }
        if j.enrollment_key.is_some() {
            // Within the bound on her enrollments of the journey at once (hers of this value, if
            // any, has ended: see above).
            let journey = j.id.as_str();
            let active = enrollments
                .values()
                .filter(|l| &*l.enrollment.journey == journey && l.enrollment.is_active())
                .count();
            if active >= crate::journey::MAX_KEYED {
                let detail = format!(
                    "in the journey {active} times at once already (for as many values of `enrollment_key`), the most a user may be: she enters it again for a new value once one of those ends"
                );
                return Ok(Some(Refused::of(self.refusal(
                    j,
                    &trigger.event,
                    None,
                    "too_many",
                    detail,
                ))));
            }
        }
        if let Some((detail, id, again)) = self
            .visitor_refusal(j, record, profile, trigger.at, None)
            .await?
        {
            let entry = self.refusal(j, &trigger.event, Some(&id), "reentry", detail);
            return Ok(Some(Refused { entry, again }));
        }
        let n = existing
            .map(|l| l.enrollment.n)
            .or(left.as_ref().map(|l| l.n))
            .map_or(1, |n| n + 1);
        let unsub = self.unsubscribe_url(&profile.user_id, j);
        let ctx = Ctx {
            journey: j,
            version: p.version,
            profile,
            now,
            unsubscribe_url: unsub.as_deref(),
            topics: self.declared(p),
            set_meanwhile,
        };
        let trigger_event = trigger.event.clone();
        let cause = trigger.message_id.clone();
        let ended = match existing {
            Some(l) => l.enrollment.ended_at,
            None => left.and_then(|l| l.ended_at),
        };
        // The split choices her earlier enrollments were counted on: not counted again.
        let counted = existing
            .map(|l| Enrollment::counted_after(&l.enrollment))
            .unwrap_or_default();
        let mut t = engine::enter_after(&ctx, &profile.user_id, n, trigger, ended, counted);
        t.enrollment.counted_until = counted_until;
        // From her trigger, or the latest occurrence a late one's count took with it.
        let heard_from = t.enrollment.hears_from();
        // The goal event (or change) the enrollment before converted on: counted once, by
        // that one (a re-entry's trigger applied after the order that converted it).
        let converted_before = existing.and_then(|l| l.enrollment.converted_at);
        if let Some(l) = existing {
            // Counted on what the one before was already (`counted`, above).
            t.enrollment.follow_counted(&l.enrollment);
        }
        // A goal reached after the trigger but applied before it (events out of order).
        // (A trait change's goal: below, from the profile's notes of its changes.)
        let event_goal = j.goal.as_ref().and_then(|g| match g.listened() {
            Some(Listened::Event(name)) => Some((g, name)),
            _ => None,
        });
        if let Some(at) = event_goal.and_then(|(g, name)| {
            let first = |from: Timestamp, inclusive: bool| match g.condition {
                None => profile.first_after(name, from, &cause, inclusive),
                Some(_) => profile.marked_after(j, MarkKind::Goal, name, from, inclusive),
            };
            match first(heard_from, name != trigger_event) {
                // The one the enrollment before converted on: the next after it, if any (a
                // condition's mark keeps only the latest time, so there is none then).
                Some(at) if converted_before == Some(at) => first(at, false),
                found => found,
            }
        }) {
            if converted_before != Some(at) {
                engine::convert_late(&ctx, &mut t, at);
            }
        }
        // A goal on a trait's change that an identify stamped after the trigger but applied
        // before it made (its note kept on the profile: `Profile::trait_changes`).
        let changes = engine::late_changes(&ctx, &t.enrollment);
        engine::convert_late_change(&ctx, &mut t, &changes, converted_before);
        // An exit that happened after the trigger but was applied before it (events out of
        // order): an exit event, or an identify's change of a trait an exit watches (the
        // earlier of the two). (what it was, when, the exit)
        // An enrollment whose steps all ran at entry (a send, then its end) meets it as one
        // still on its last step: it came before the end, and before the messages went out.
        let reopened = engine::reopened_at_entry(&t.enrollment);
        let judged = reopened.as_ref().unwrap_or(&t.enrollment);
        let by_event = late_exit(j, profile, judged, &cause, now).and_then(|late| {
            let exit = engine::exit_late(&ctx, judged, &late)?;
            let what = format!(
                "the exit event {}",
                late.event.as_deref().unwrap_or_default()
            );
            Some((what, late.timestamp, exit))
        });
        let by_change = engine::exit_late_change(&ctx, judged, &changes).map(|(c, exit)| {
            let what = format!("the change of {} by identify {}", c.change.0, c.message_id);
            (what, c.at, exit)
        });
        let late = match (by_event, by_change) {
            (Some(e), Some(c)) => Some(if c.1 < e.1 { c } else { e }),
            (e, c) => e.or(c),
        };
        if let Some((what, exit_at, exit)) = late {
            // Nothing the entry scheduled may go out: keep only the exit's own effects, and
            // say of each message dropped that it was skipped, and why. (Nor did it complete.)
            let mut timeline = t.timeline;
            if reopened.is_some() {
                timeline.retain(|e| !matches!(e.what, What::Completed));
            }
            for e in &t.effects {
                let Effect::Send(o) = e else {
                    continue;
                };
                timeline.push(Entry {
                    at: now,
                    journey: o.journey.clone(),
                    enrollment: o.enrollment.clone(),
                    step: Some(o.step.clone()),
                    what: What::Skipped {
                        channel: o.channel,
                        reason: "exited".into(),
                        detail: Some(format!(
                            "{what} (at {exit_at}) came before the message could go out: it arrived before its trigger",
                        )),
                    },
                });
            }
            timeline.extend(exit.timeline);
            let effects = exit
                .effects
                .into_iter()
                // Its in-app messages are the entry's, dropped above: none reached the inbox.
                .filter(|e| !matches!(e, Effect::Withdraw(_)))
                .chain(
                    t.effects
                        .into_iter()
                        .filter(|e| matches!(e, Effect::UpdateProfile(_))),
                )
                .collect();
            t = Transition {
                enrollment: exit.enrollment,
                effects,
                timeline,
            };
        }
        let committed = self.commit(t, &cause, existing, false).await?;
        let (settled, _) = self.settle_for(committed, &cause, false).await?;
        enrollments.insert(record.to_string(), settled);
        Ok(None)
    }

    /// [`ends_at_merge`], and also when one of the other visitors `into` turned out to be was
    /// in `j` (an enrollment ended before that visitor's login): her entry rule counts those
    /// as her own entries do.
    async fn ends_at_login(
        &self,
        j: &Journey,
        hers: Option<&Enrollment>,
        into: &Profile,
        theirs: &Enrollment,
    ) -> Result<Option<String>, RunError> {
        if let Some(why) = ends_at_merge(j, hers, into, theirs) {
            return Ok(Some(why));
        }
        // With an `enrollment_key`, her value whose record is gone: what its last enrollment
        // left (not read for `after_exit`, which it cannot refuse).
        if hers.is_none() && theirs.key.is_some() && j.reentry != Reentry::AfterExit {
            if let Some(last) = self.last_entry(&into.user_id, &theirs.record()).await? {
                let refused = engine::reentry_refusal_after(
                    j,
                    last.entered_at,
                    last.trigger_at,
                    theirs.trigger.at,
                    into,
                );
                if let Some(why) = refused {
                    let user = &into.user_id;
                    return Ok(Some(format!(
                        "{user} may not be in this journey again: {why}"
                    )));
                }
            }
        }
        let refused = self
            .visitor_refusal(
                j,
                &theirs.record(),
                into,
                theirs.trigger.at,
                Some(&theirs.user_id),
            )
            .await?;
        Ok(refused
            .map(|(why, ..)| format!("{} may not be in this journey again: {why}", into.user_id)))
    }

    /// Why `j`'s entry rule refuses `profile` an entry on a trigger at `at` because of what
    /// she did as an anonymous visitor she turned out to be (an enrollment that ended before
    /// the login stayed the visitor's: the same person on the same phone is not welcomed
    /// twice), with that enrollment's id and, for `reentry: after`, when it lets her in.
    /// `moving`: the visitor whose enrollment is being moved to her now, not read. One read for
    /// all her anonymous ids, none for `after_exit`.
    async fn visitor_refusal(
        &self,
        j: &Journey,
        record: &str,
        profile: &Profile,
        at: Timestamp,
        moving: Option<&str>,
    ) -> Result<Option<(String, Arc<str>, Option<Timestamp>)>, RunError> {
        if j.reentry == Reentry::AfterExit {
            return Ok(None);
        }
        // With an `enrollment_key`, what a value's enrollment left once its record is gone
        // too, in the same read.
        let keyed = j.enrollment_key.is_some();
        let keys: Vec<Key> = profile
            .anonymous_ids
            .iter()
            .map(|a| join(&[crate::event::ANONYMOUS_PREFIX, a]))
            .filter(|visitor| Some(visitor.as_str()) != moving)
            .flat_map(|visitor| {
                let left = keyed.then(|| last_entry_key(&visitor, record));
                std::iter::once(enrollment_key(&visitor, record)).chain(left)
            })
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        // The visitor's latest entry decides (the records come in no set order).
        let mut latest: Option<(String, LastEntry)> = None;
        for r in self.store.get_many(&keys).await? {
            let last = match r.key.sk.starts_with("K#") {
                true => r.parse::<LastEntry>()?,
                false => LastEntry::of(&Loaded::read(&r)?.enrollment),
            };
            if latest
                .as_ref()
                .is_none_or(|(_, l)| last.trigger_at > l.trigger_at)
            {
                let visitor = r.key.pk.strip_prefix("U#").unwrap_or_default();
                latest = Some((visitor.to_string(), last));
            }
        }
        Ok(latest.and_then(|(visitor, e)| {
            engine::reentry_refusal_after(j, e.entered_at, e.trigger_at, at, profile).map(
                |detail| {
                    let detail = self.judged_at(
                        j,
                        format!(
                            "{detail} (as the anonymous visitor `{visitor}` she turned out to be)"
                        ),
                        at,
                    );
                    let again = engine::reentry_again(j, e.trigger_at, profile);
                    (detail, e.id.clone(), again)
                },
            )
        }))
    }

    /// The timeline fact of a trigger that did not enter `j`: why, and the enrollment that
    /// stood in the way, if one did.
    /// A `reentry: after` refusal's `detail`, saying the time it judged when that is not now:
    /// a trigger counts from when it happened (its `timestamp`, or a schedule run's minute),
    /// not from when it came.
    fn judged_at(&self, j: &Journey, detail: String, at: Timestamp) -> String {
        if !matches!(j.reentry, Reentry::After(_)) || at == self.now() {
            return detail;
        }
        format!("{detail}; judged at the trigger's time, {at}")
    }

    fn refusal(
        &self,
        j: &Journey,
        trigger: &str,
        blocking: Option<&str>,
        reason: &str,
        detail: String,
    ) -> Entry {
        Entry {
            at: self.now(),
            journey: Arc::from(j.id.as_str()),
            enrollment: Arc::from(blocking.unwrap_or_default()),
            step: None,
            what: What::NotEntered {
                trigger: trigger.to_string(),
                reason: reason.to_string(),
                detail: Some(detail),
            },
        }
    }

    /// How long a handled message's id is remembered ([`Config::dedup_for`]): as long as the
    /// message can come back ([`MESSAGES_COME_BACK_FOR`]) at least, so that one redriven from
    /// a dead-letter queue days after it was handled finds its marker and does nothing again
    /// (a later enrollment's `wait_for` would hear it again, an unkeyed journey's trigger
    /// past the earlier triggers an enrollment remembers would enter again).
    fn remembered_for(&self) -> SignedDuration {
        self.config.dedup_for.max(MESSAGES_COME_BACK_FOR)
    }

    /// Keeps the refused entries of a message that made no event (a schedule or an
    /// inactivity check) for the user's timeline, as an event keeps them in its dedup marker.
    async fn keep_refusal(
        &self,
        user: &str,
        message_id: &str,
        refusal: Option<Entry>,
    ) -> Result<(), RunError> {
        let Some(entry) = refusal else {
            return Ok(());
        };
        log_refusals(user, std::slice::from_ref(&entry));
        let record = Record::of(refusal_key(user, message_id), 1, vec![entry])
            .expiring(self.now() + self.remembered_for());
        self.store.put(&record, Expect::Any).await?;
        Ok(())
    }

    /// Stores a transition (state and outbox) with a conditional write over `prev` (the
    /// enrollment record as loaded, if there is one). What `prev` still owed is carried in the
    /// new record; when the transition exits the enrollment (or `exit_event`: its cause is an
    /// event the journey exits on), the carried sends are cancelled.
    async fn commit(
        &self,
        t: Transition,
        cause: &str,
        prev: Option<&Loaded>,
        exit_event: bool,
    ) -> Result<Loaded, RunError> {
        let mut e = t.enrollment;
        let mut carried = Vec::new();
        if let Some(l) = prev {
            let p = &l.enrollment;
            carried.extend(p.carried.iter().cloned());
            if l.owes_current() {
                carried.push(Carried {
                    enrollment: p.id.to_string(),
                    cause: p.outbox_cause.clone().unwrap_or_default(),
                    effects: p.outbox.clone(),
                    timeline: p.outbox_timeline.clone(),
                    cancel_sends: false,
                });
            }
        }
        // The user's exit event stops what any enrollment of this journey still owes (an
        // earlier one's last email as much as this one's).
        if exit_event || e.status == Status::Exited {
            for c in &mut carried {
                c.cancel_sends = true;
            }
        }
        e.carried = carried;
        e.outbox = t.effects;
        e.outbox_timeline = t.timeline;
        e.outbox_cause = Some(cause.to_string());
        let (version, expect) = match prev {
            Some(l) => (l.version + 1, Expect::Version(l.version)),
            None => (1, Expect::Absent),
        };
        let e = Arc::new(e);
        let mut record = Record::shared(enrollment_key_of(&e), version, e.clone());
        if let Some(kept) = self.kept_until(&e).await? {
            // Before the record that may expire: its value's next enrollment numbers on from
            // it once the record is gone (a write lost here leaves the record as it was, and
            // the message is retried).
            self.keep_last_entry(&e, kept.last_entry).await?;
            record = record.expiring(kept.record);
        }
        self.store.put(&record, expect).await?;
        Ok(Loaded {
            enrollment: e,
            version,
            fresh: true,
            performed: false,
        })
    }

    /// Until when an ended enrollment of a journey with an `enrollment_key` is kept (a record
    /// a value would otherwise pile up in her partition, one a booking, each read at each of
    /// her events): its record as long as its trigger's dedup marker lives after its end (or
    /// after now, when it is written later than its end), and
    /// as long as its trigger can still come back from a dead-letter queue (a redelivered or
    /// redriven trigger finds it: [`MESSAGES_COME_BACK_FOR`]) and no shorter than its goal's window after its entry (a
    /// late goal converts it); its value's [`LastEntry`] [`KEEP_FOR`] and [`KEYED_TTL_SLACK`]
    /// after that, and so after anything its id names (its ledger entries, timeline records,
    /// inbox messages and wake-ups are written while its record lives, and kept [`KEEP_FOR`]
    /// at most): the value's next enrollment finds the record or the last entry and takes
    /// `n + 1`, never this id (were both gone first, it would be `n = 1` again, and its sends
    /// found done in the ledger). The last entry is also what the entry rule reads once the
    /// record is gone, and it outlives any rule's reading (`after: d` is at most a year, from
    /// a trigger stamped up to 30 days back); with `reentry: never` it is kept for good. `None`
    /// (the record kept) for an active one, and for a journey without a key (one record a
    /// user).
    async fn kept_until(&self, e: &Enrollment) -> Result<Option<Kept>, RunError> {
        if e.key.is_none() || e.is_active() {
            return Ok(None);
        }
        let Some(p) = self.catalog.latest(&e.journey).await? else {
            return Ok(None);
        };
        let j = &p.journey;
        // From its end, or from now when it is written later than that (a settle, a late
        // exit): a record written with what it still owes must outlive the retries of the
        // message writing it, and one written already past its time would go at once.
        let ended = e.ended_at.unwrap_or(e.entered_at);
        let mut record = ended.max(self.now()) + self.remembered_for();
        // A goal converts the enrollment by its own version's (a later version's goal, or
        // none, does not shorten the window it entered with), and the latest version's
        // window is kept too.
        let own = if p.version == e.version {
            None
        } else {
            self.catalog.version(&e.journey, e.version).await?
        };
        for g in [
            j.goal.as_ref(),
            own.as_ref().and_then(|o| o.journey.goal.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            record = record.max(e.entered_at + g.within.to_jiff());
        }
        let last_entry = match &j.reentry {
            Reentry::Never => None,
            Reentry::AfterExit | Reentry::After(_) => {
                Some(record.max(self.now()) + KEEP_FOR + KEYED_TTL_SLACK)
            }
        };
        Ok(Some(Kept { record, last_entry }))
    }

    /// Keeps what ended keyed enrollment `e` leaves of its value ([`LastEntry`]) until `until`
    /// (`None`: for good), unless a later enrollment of the value is kept there already: a
    /// read, and a conditional write when it changes (a worker that lost its race with the
    /// value's next enrollments never takes the number back).
    async fn keep_last_entry(
        &self,
        e: &Enrollment,
        until: Option<Timestamp>,
    ) -> Result<(), RunError> {
        let key = last_entry_key(&e.user_id, &e.record());
        let last = LastEntry::of(e);
        for _ in 0..MARK_ATTEMPTS {
            let stored = self.store.get(&key).await?;
            if let Some(r) = &stored {
                let kept: LastEntry = r.parse()?;
                let long_enough = match (r.expires, until) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(at), Some(until)) => at >= until.as_second(),
                };
                if kept.n > last.n || (kept == last && long_enough) {
                    return Ok(());
                }
            }
            let (version, expect) = Expect::replacing(stored.as_ref());
            let mut record = Record::of(key.clone(), version, last.clone());
            if let Some(at) = until {
                record = record.expiring(at);
            }
            match self.store.put(&record, expect).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Retry(format!(
            "the last entry of {} kept changing while it was written",
            e.record()
        )))
    }

    /// What the value of keyed record `record` left of her enrollments of it
    /// ([`Runtime::keep_last_entry`]): read when the record is gone, one GetItem.
    async fn last_entry(&self, user: &str, record: &str) -> Result<Option<LastEntry>, RunError> {
        Ok(match self.store.get(&last_entry_key(user, record)).await? {
            Some(r) => Some(r.parse()?),
            None => None,
        })
    }

    /// Performs one transition's outbox. Safe to repeat: sends go through the ledger, wake-ups
    /// are recognised when stale, and the timeline record is written once (and counted once, by
    /// the fold). A send that cannot be made now does not hold back the other effects; the
    /// timeline record waits until every send has its outcome. Says whether a timeline record
    /// is stored (there is none for a transition with nothing to record).
    async fn perform(&self, u: Unit<'_>) -> Result<bool, RunError> {
        // The transition's entries, with room for an outcome entry for each send.
        let sends = u
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Send(_)))
            .count();
        let mut entries = Vec::with_capacity(u.timeline.len() + sends);
        entries.extend_from_slice(u.timeline);
        let mut failed = None;
        // The profile as an `update` effect left it.
        let mut updated = None;
        let wake = |seq: u64, at: Timestamp| Message::Wake {
            user_id: u.user.into(),
            journey: u.record.into(),
            enrollment: u.enrollment.into(),
            seq,
            at,
        };
        for (i, effect) in u.effects.iter().enumerate() {
            match effect {
                Effect::Send(o) => {
                    let due = u.timeline.last().map_or_else(|| self.now(), |t| t.at);
                    let outcome = match self.deliver(o, u.cancel_sends, due).await {
                        Ok(outcome) => outcome,
                        Err(err) => {
                            failed.get_or_insert(err);
                            continue;
                        }
                    };
                    let now = self.now();
                    // The step's time; performed late (retried through a provider outage, or
                    // after a crash), when it went out, as the outbox line says, or now.
                    let step_at = u.timeline.last().map_or(now, |t| t.at);
                    let when = match (&outcome, u.late) {
                        (_, false) => step_at,
                        (Outcome::Sent { at, .. }, true) => *at,
                        (Outcome::Skipped { .. }, true) => now,
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
                    let entry = Entry {
                        at: when.max(step_at),
                        journey: shared(&entries, |x| Some(&x.journey), &o.journey),
                        enrollment: shared(&entries, |x| Some(&x.enrollment), &o.enrollment),
                        step: Some(shared(&entries, |x| x.step.as_ref(), &o.step)),
                        what,
                    };
                    // Right after the step's own entries (its visit, its wake-up after a
                    // deferral, a fallback), so the timeline reads in order.
                    let at = entries
                        .iter()
                        .rposition(|x| {
                            x.step.as_deref() == Some(&*o.step)
                                && matches!(
                                    x.what,
                                    What::Step | What::Woke { .. } | What::FellBack { .. }
                                )
                        })
                        .map(|i| i + 1)
                        .unwrap_or(entries.len());
                    entries.insert(at, entry);
                }
                Effect::Wake { seq, at } => {
                    if u.live.is_some_and(|l| l != Some((*seq, *at))) {
                        // Stale: the enrollment went on past this wait.
                        continue;
                    }
                    self.schedule(wake(*seq, *at), *at).await?
                }
                Effect::Cancel { seq, at } => self.cancel_timer(&wake(*seq, *at), *at).await?,
                Effect::Move(next) => {
                    if !Box::pin(self.move_in(next, u.user, u.cause)).await? {
                        // Not gone on after all (the user entered the journey between the merge
                        // and this write): the anonymous enrollment ended here, its wait with it.
                        for e in entries.iter_mut() {
                            if let What::Merged {
                                ended,
                                reason,
                                into,
                                ..
                            } = &mut e.what
                            {
                                *ended = true;
                                *reason = Some(format!("{into} is in this journey already"));
                            }
                        }
                        if let Some(last) = entries.last().cloned() {
                            entries.push(Entry {
                                what: What::Woke {
                                    how: "merged".into(),
                                },
                                ..last
                            });
                        }
                    }
                }
                Effect::Withdraw(w) => {
                    // At the exit's time (its entries'), the same when performed again.
                    let at = u.timeline.last().map_or_else(|| self.now(), |t| t.at);
                    for m in &w.messages {
                        let Some(what) = self.withdraw(u.journey, w, m).await? else {
                            continue;
                        };
                        // Said of the enrollment that sent it (a visitor's it took, at a login).
                        let by = m.sent_by(&w.enrollment);
                        entries.push(Entry {
                            at,
                            journey: shared(&entries, |x| Some(&x.journey), u.journey),
                            enrollment: shared(&entries, |x| Some(&x.enrollment), by),
                            step: Some(m.step.clone()),
                            what,
                        });
                    }
                }
                Effect::HandOver(h) => {
                    self.hand_over(&h.to, u.record, &h.enrollment, &h.messages)
                        .await?;
                }
                Effect::UpdateProfile(up) => {
                    // At the transition's time (its entries'; an update step always has one),
                    // so that performed again (a retry of this transition) it leaves what was
                    // set since.
                    let at = u.timeline.first().map(|e| e.at);
                    // The traits it left as they were (set after its step ran).
                    let left = std::sync::Mutex::new(Vec::new());
                    let p = self
                        .update_profile(u.user, |p| {
                            // Erased since the transition was committed: her mark stays the
                            // mark (written, it would become a profile that never expires).
                            if p.is_erasure_mark() {
                                return;
                            }
                            let stands = p.apply_update(&up.set, &up.unset, at);
                            for (k, t) in &stands {
                                tracing::info!(user = %u.user, enrollment = %u.enrollment, trait_name = %k, set_at = %t, "update left a trait set after its step ran");
                            }
                            if let Ok(mut l) = left.lock() {
                                *l = stands.into_iter().map(|(k, _)| k).collect();
                            }
                        })
                        .await?;
                    if p.is_erasure_mark() {
                        return self.performed_after_erasure(&u, &u.effects[..i]).await;
                    }
                    let left = left.into_inner().unwrap_or_else(|p| p.into_inner());
                    self.tell_overwritten(&u, up, &left).await?;
                    // A number it gave her is hers for an SMS opt-out, as an identify's is.
                    if up.set.contains_key("phone") {
                        if let Some(phone) = p.traits.get("phone").and_then(Value::as_str) {
                            self.note_phone_holder(phone, u.user).await?;
                        }
                    }
                    updated = Some(p);
                }
            }
        }
        u.others_done
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(err) = failed {
            return Err(err);
        }
        // Performed as an event is taken that other journeys' updates may follow, the date
        // waits are left to the event's last pass, which reads them on the profile as all of
        // them left it: moved now, a wait would follow a value a later update replaces, and go
        // at once on a date it made past (see `Runtime::read_last`).
        let read_last = self
            .read_last
            .lock()
            .map(|r| r.contains(&(u.user.to_string(), u.cause.to_string())))
            .unwrap_or(false);
        if let Some(profile) = updated.filter(|_| !read_last) {
            let by = format!("journey {}'s update", u.journey);
            self.move_date_waits(&profile, u.enrollment, u.cause, Some(&by))
                .await?;
        }
        if entries.is_empty() {
            return Ok(false);
        }
        let key = timeline_key(u.user, u.enrollment, u.cause);
        self.note_shards().await?;
        let record = Record::of(key, 1, entries)
            .expiring(self.now() + KEEP_FOR)
            .pending_in(crate::stats::fold_partition(
                u.user,
                self.config.timer_shards,
            ));
        match self.store.put(&record, Expect::Absent).await {
            Ok(()) => {
                let written = record.body.typed::<Vec<Entry>>();
                for en in written.into_iter().flatten() {
                    tracing::info!(user = %u.user, journey = %en.journey, step = en.step.as_deref().unwrap_or(""), "{}", describe(&en.what));
                }
                Ok(true)
            }
            // Written before (this is a repeat): it is listed for the fold, or counted already.
            Err(StoreError::Conflict) => Ok(true),
            Err(err) => Err(err.into()),
        }
    }

    /// Notes the `update` `up` of unit `u` performed as its event is taken (`left`: the traits
    /// it left as they were), and tells the enrollments whose update of the same event set one
    /// of its traits to another value before it that theirs did not stand: a timeline record of
    /// theirs, an `updated` entry whose `failed` says which journey set what (journeys run in a
    /// fixed order, below, and the last write stands). Nothing outside an event's handling
    /// (a wake-up's update, a date moved), and no request unless one was overwritten.
    async fn tell_overwritten(
        &self,
        u: &Unit<'_>,
        up: &crate::journey::Update,
        left: &[String],
    ) -> Result<(), RunError> {
        let key = (u.user.to_string(), u.cause.to_string());
        let traits: Vec<(String, Option<Value>)> = up
            .set
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone()).filter(|v| !v.is_null())))
            .chain(up.unset.iter().map(|k| (k.clone(), None)))
            .filter(|(k, _)| !left.contains(k))
            .collect();
        // Its step: the one whose `updated` entry names these traits.
        let step = u
            .timeline
            .iter()
            .rev()
            .find(|e| match &e.what {
                What::Updated { set, unset, .. } => traits
                    .iter()
                    .any(|(k, _)| set.contains(k) || unset.contains(k)),
                _ => false,
            })
            .and_then(|e| e.step.clone());
        let overwritten: Vec<(Written, BTreeMap<String, String>)> = {
            let Ok(mut all) = self.written.lock() else {
                return Ok(());
            };
            let Some(earlier) = all.get_mut(&key) else {
                return Ok(());
            };
            let mut out = Vec::new();
            for w in earlier.iter().filter(|w| w.enrollment != u.enrollment) {
                let mut failed = BTreeMap::new();
                for (k, v) in &traits {
                    let theirs = w.traits.iter().find(|(t, _)| t == k);
                    if theirs.is_some_and(|(_, was)| was != v) {
                        let what = match v {
                            Some(v) => format!("set it to {}", crate::condition::shown(k, v)),
                            None => "unset it".to_string(),
                        };
                        let by = step
                            .as_deref()
                            .map_or(String::new(), |s| format!(" (step `{s}`)"));
                        failed.insert(
                            k.clone(),
                            format!(
                                "journey {}'s update{by}, run after this one as the same event was taken, {what}: that stands",
                                u.journey
                            ),
                        );
                    }
                }
                if !failed.is_empty() {
                    out.push((w.clone(), failed));
                }
            }
            earlier.push(Written {
                journey: u.journey.to_string(),
                enrollment: u.enrollment.to_string(),
                step: step.clone(),
                at: u.timeline.first().map_or_else(|| self.now(), |e| e.at),
                traits,
            });
            out
        };
        for (w, failed) in overwritten {
            let entry = Entry {
                at: w.at,
                journey: Arc::from(w.journey.as_str()),
                enrollment: Arc::from(w.enrollment.as_str()),
                step: w.step.clone(),
                what: What::Updated {
                    set: Vec::new(),
                    unset: Vec::new(),
                    failed,
                },
            };
            let cause = join(&[u.cause, OVERWRITTEN, u.enrollment]);
            let key = timeline_key(u.user, &w.enrollment, &cause);
            self.note_shards().await?;
            let record = Record::of(key, 1, vec![entry])
                .expiring(self.now() + KEEP_FOR)
                .pending_in(crate::stats::fold_partition(
                    u.user,
                    self.config.timer_shards,
                ));
            match self.store.put(&record, Expect::Absent).await {
                // Written before: this is a repeat.
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// A transition committed before its user's erasure and performed as it ran, found her
    /// mark (its `update`, the one effect that reads her profile): what it put in her
    /// partition before, after the erasure may have cleared it, goes (the inbox items of its
    /// in-app sends `done`), and the rest of it is not performed (no later send, no wake-up,
    /// no timeline record: each would be kept up to [`KEEP_FOR`]). Nothing to record.
    async fn performed_after_erasure(
        &self,
        u: &Unit<'_>,
        done: &[Effect],
    ) -> Result<bool, RunError> {
        let inbox: Vec<Key> = done
            .iter()
            .filter_map(|e| match e {
                Effect::Send(o) if o.channel == Channel::InApp => Some(inbox_key(o)),
                _ => None,
            })
            .collect();
        if !inbox.is_empty() {
            self.store.delete_many(&inbox).await?;
        }
        tracing::info!(user = %u.user, journey = %u.journey, enrollment = %u.enrollment, "a transition performed as its user was erased stops: nothing more of it is performed or kept");
        Ok(false)
    }

    /// The goal event `e` (named `name`) of a journey `profile`'s user has no enrollment of
    /// reaches the enrollment one of her anonymous ids ended in before her login (an active one
    /// went on as hers at the login): within its window, it converts there, in the anonymous
    /// partition, where the user's view reads it. One batched read of them, for goal events
    /// only (and a GetItem of the anonymous profile, when it has such an enrollment). Safe to
    /// repeat: what the message owes that enrollment is performed first, and a converted
    /// enrollment does not convert again.
    async fn convert_anonymous_past(
        &self,
        profile: &Profile,
        enrollments: &BTreeMap<String, Loaded>,
        journeys: &[Arc<Published>],
        e: &Event,
        name: &str,
    ) -> Result<(), RunError> {
        // Each anonymous id's enrollment of each journey with this goal the user is not in,
        // read in one call; and, of one with an `enrollment_key`, those of each value she has
        // no enrollment for (a query of each anonymous partition, for such a goal only).
        let goals = journeys
            .iter()
            .map(|p| &p.journey)
            .filter(|j| j.goal.as_ref().is_some_and(|g| g.names_event(name)));
        let visitors = || {
            profile
                .anonymous_ids
                .iter()
                .map(|a| join(&[crate::event::ANONYMOUS_PREFIX, a]))
        };
        let mut keys: Vec<Key> = Vec::new();
        let mut records = Vec::new();
        for j in goals {
            if j.enrollment_key.is_none() {
                if !enrollments.contains_key(&j.id) {
                    keys.extend(visitors().map(|anon| enrollment_key(&anon, &j.id)));
                }
                continue;
            }
            let prefix = join(&["E#", &j.id, "#"]);
            for anon in visitors() {
                for r in self.store.query(&user_partition(&anon), &prefix).await? {
                    let record = r.key.sk.strip_prefix("E#").unwrap_or_default();
                    if !enrollments.contains_key(record) {
                        records.push(r);
                    }
                }
            }
        }
        if keys.is_empty() && records.is_empty() {
            return Ok(());
        }
        if !keys.is_empty() {
            records.extend(self.store.get_many(&keys).await?);
        }
        for r in records {
            let l = Loaded::read(&r)?;
            if l.enrollment.is_active() || l.enrollment.status == Status::Merged {
                continue;
            }
            // A shared device: the id may have turned out to be someone else first.
            let (theirs, _) = self.load_profile(&l.enrollment.user_id).await?;
            if theirs.merged_into.as_deref() != Some(profile.user_id.as_str()) {
                continue;
            }
            let (l, done) = self.settle_for(l, &e.message_id, false).await?;
            if done {
                continue;
            }
            let journey = &l.enrollment.journey;
            let Some(v) = self.catalog.version(journey, l.enrollment.version).await? else {
                continue;
            };
            let ctx = Ctx {
                journey: &v.journey,
                version: v.version,
                profile,
                now: self.now(),
                unsubscribe_url: None,
                topics: self.declared(&v),
                set_meanwhile: &[],
            };
            let Some(mut t) = engine::on_event(&ctx, &l.enrollment, e) else {
                continue;
            };
            self.credit_conversion(&mut t, e.timestamp, &[]).await?;
            let committed = self.commit(t, &e.message_id, Some(&l), false).await?;
            self.settle_for(committed, &e.message_id, false).await?;
        }
        Ok(())
    }

    /// When the visitor `e`'s anonymousId names converted her enrollment in `record` on `e`
    /// itself (the merge `e` brought ended it on its goal event), if `converts` (this event
    /// is about to convert the user's own) and it did: one GetItem, for conversions only.
    async fn visitor_converted(
        &self,
        e: &Event,
        record: &str,
        converts: bool,
    ) -> Result<Option<Timestamp>, RunError> {
        let Some(a) = e.anonymous_id.as_deref() else {
            return Ok(None);
        };
        if !converts || e.user_id.starts_with(crate::event::ANONYMOUS_PREFIX) {
            return Ok(None);
        }
        let anon = join(&[crate::event::ANONYMOUS_PREFIX, a]);
        let Some(r) = self.store.get(&enrollment_key(&anon, record)).await? else {
            return Ok(None);
        };
        let visitor = Loaded::read(&r)?.enrollment;
        Ok(visitor.converted_at.filter(|at| *at == e.timestamp))
    }

    /// [`engine::convert_previous`] for a track event, [`engine::convert_previous_change`] for
    /// an identify's `changes`, under the version the previous enrollment entered with (read
    /// only when the event happened in the time it could convert).
    async fn convert_previous(
        &self,
        e: &Enrollment,
        event: &Event,
        changes: &[engine::TraitChanged],
        ctx: &Ctx<'_>,
    ) -> Result<Option<Transition>, RunError> {
        let Some(prev) = e.previous.as_deref() else {
            return Ok(None);
        };
        if event.timestamp < prev.trigger_at || event.timestamp >= e.hears_from() {
            return Ok(None);
        }
        let judge = |ctx: &Ctx<'_>| match event.event {
            Some(_) => engine::convert_previous(ctx, e, event),
            None => engine::convert_previous_change(ctx, e, event, changes),
        };
        if prev.version == ctx.version {
            return Ok(judge(ctx));
        }
        let Some(p) = self.catalog.version(&e.journey, prev.version).await? else {
            return Ok(None);
        };
        let ctx = Ctx {
            journey: &p.journey,
            version: p.version,
            ..*ctx
        };
        Ok(judge(&ctx))
    }

    /// Credits a conversion in `t` (of its enrollment, or of the one before it) to the step of the last message its enrollment sent the
    /// user at or before `at` (the goal event's time), read from the enrollment's timeline
    /// records: one query, for conversions only, and one more when the enrollment began as one
    /// of the user's `anonymous` ids' (its messages before the login are recorded there).
    async fn credit_conversion(
        &self,
        t: &mut Transition,
        at: Timestamp,
        anonymous: &[String],
    ) -> Result<(), RunError> {
        // The enrollment converted: this one, or the one before it (`convert_previous`).
        let Some((id, last)) = t.timeline.iter_mut().find_map(|x| match &mut x.what {
            What::Converted { last_message, .. } => Some((x.enrollment.clone(), last_message)),
            _ => None,
        }) else {
            return Ok(());
        };
        let e = &t.enrollment;
        let prefix = join(&["T#", &id, "#"]);
        let mut partitions = vec![user_partition(&e.user_id)];
        for a in anonymous {
            let anon = join(&[crate::event::ANONYMOUS_PREFIX, a]);
            if id.starts_with(&*join(&[&e.journey, ":", &anon, ":"])) {
                partitions.push(user_partition(&anon));
            }
        }
        let mut records = Vec::new();
        for p in &partitions {
            records.extend(self.store.query(p, &prefix).await?);
        }
        let mut latest: Option<(Timestamp, String)> = None;
        for r in records {
            let entries = r.parse_shared::<Vec<Entry>>()?;
            for x in entries.iter().filter(|x| x.at <= at) {
                if let (What::Sent { .. }, Some(step)) = (&x.what, &x.step) {
                    if latest.as_ref().is_none_or(|(t, _)| x.at >= *t) {
                        latest = Some((x.at, step.to_string()));
                    }
                }
            }
        }
        *last = latest.map(|(_, step)| step);
        Ok(())
    }

    /// A journey's `update` step (of enrollment `except`) changed the user's profile: the
    /// user's other enrollments waiting for a `wait_until` date follow what it now reads, as
    /// after an identify (see [`engine::date_moved`]). Safe to repeat: a wait already at its
    /// date is left alone.
    async fn move_date_waits(
        &self,
        profile: &Profile,
        except: &str,
        cause: &str,
        by: Option<&str>,
    ) -> Result<(), RunError> {
        let user = profile.user_id.as_str();
        let cause = Enrollment::moved_id_of(cause, except);
        for (j, l) in self.load_enrollments(user).await? {
            if &*l.enrollment.id == except || !l.enrollment.waits_for_time() {
                continue;
            }
            let journey = Enrollment::journey_of_record(&j);
            let Some(p) = self.catalog.version(journey, l.enrollment.version).await? else {
                continue;
            };
            let unsub = self.unsubscribe_url(user, &p.journey);
            let ctx = Ctx {
                journey: &p.journey,
                version: p.version,
                profile,
                now: self.now(),
                unsubscribe_url: unsub.as_deref(),
                topics: self.declared(&p),
                set_meanwhile: &[],
            };
            if let Some(t) = engine::date_moved_by(&ctx, &l.enrollment, by) {
                let committed = self.commit(t, &cause, Some(&l), false).await?;
                Box::pin(self.settle_for(committed, &cause, false)).await?;
            }
        }
        Ok(())
    }

    /// Takes in-app message `m` of an ended enrollment out of its user's inbox, unless she read
    /// it (see [`engine::Withdrawal`]); what the timeline says of it, if anything. Safe to
    /// repeat: a message withdrawn already is found so, a read one stays read. One that has
    /// not reached the inbox yet but may (its send claimed by a worker that was under way when
    /// the exit came) is kept out by a withdrawn record in its place: the send finds one there
    /// and leaves it as it is.
    async fn withdraw(
        &self,
        journey: &str,
        w: &engine::Withdrawal,
        m: &crate::enrollment::InAppSent,
    ) -> Result<Option<What>, RunError> {
        let now = self.now();
        let by = m.sent_by(&w.enrollment);
        let id = engine::send_key_with("", by, &m.step, m.seq).to_string();
        let key = Key::new(
            user_partition(&m.user),
            engine::send_key_with("I#", by, &m.step, m.seq),
        );
        let withdrawn = |detail: Option<&str>| What::Withdrawn {
            reason: w.reason.clone(),
            detail: detail.map(str::to_string),
        };
        let ledger = Key::new(
            user_partition(&m.user),
            engine::send_key_with("L#", by, &m.step, m.seq),
        );
        for _ in 0..MARK_ATTEMPTS {
            // The ledger first, the inbox second: a send writes the inbox, then its ledger's
            // `Done`, so a `Done` read here means the inbox read after it shows what it wrote.
            let done = match self.store.get(&ledger).await? {
                Some(l) => matches!(l.parse::<Ledger>()?, Ledger::Done { .. }),
                None => false,
            };
            let Some(r) = self.store.get(&key).await? else {
                // Not in the inbox: its send was skipped (a cap, an opt-out, the exit itself),
                // or it went out and expired.
                if done {
                    return Ok(None);
                }
                // Else it may still come: a placeholder keeps its place.
                let item = InboxItem {
                    id: id.clone(),
                    at: now,
                    journey: journey.to_string(),
                    step: m.step.to_string(),
                    title: String::new(),
                    body: String::new(),
                    data: BTreeMap::new(),
                    expires_at: None,
                    read_at: None,
                    dismissed_at: None,
                    withdrawn_at: Some(now),
                    withdrawn_reason: Some(w.reason.clone()),
                    placeholder: true,
                };
                let record = Record::new(key.clone(), 1, &item)?.expiring(now + KEEP_FOR);
                match self.store.put(&record, Expect::Absent).await {
                    Ok(()) => return Ok(Some(withdrawn(Some(NOT_IN_INBOX_YET)))),
                    // The send wrote it meanwhile: looked at again.
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let mut item: InboxItem = r.parse()?;
            // Performed before (a retry of the exit's effects), saying what it said then.
            if item.withdrawn_at.is_some() {
                return Ok(Some(withdrawn(
                    item.placeholder.then_some(NOT_IN_INBOX_YET),
                )));
            }
            // Gone from the inbox already (dismissed, expired).
            if !item.listed(now) {
                return Ok(None);
            }
            // She saw it: it stays, as she left it.
            if let Some(read) = item.read_at {
                return Ok(Some(What::NotWithdrawn {
                    reason: "read".into(),
                    detail: Some(format!(
                        "read at {read}: only unread messages are withdrawn"
                    )),
                }));
            }
            item.withdrawn_at = Some(now);
            item.withdrawn_reason = Some(w.reason.clone());
            let record = Record::new(key.clone(), r.version + 1, &item)?
                .expiring(item.expires_at.unwrap_or(item.at + KEEP_FOR));
            match self.store.put(&record, Expect::Version(r.version)).await {
                Ok(()) => return Ok(Some(withdrawn(None))),
                // Marked by her app meanwhile (read, dismissed): looked at again.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Retry(format!(
            "inbox message {id} kept changing while it was withdrawn"
        )))
    }

    /// Sends one message at most once: claim in the ledger, check caps, call the provider, record.
    /// A `cancelled` send (its enrollment exited before it could go out), or one of a journey
    /// stopped since, is claimed and recorded as skipped, unless the ledger says it went out
    /// already.
    ///
    /// A send that is not the journey's first try (its provider was down, or its worker died)
    /// and now falls inside the user's quiet hours is held to their end ([`RunError::Later`]),
    /// or skipped when that is longer after `due` (when its step ran) than its `send_within`;
    /// one whose user changed her address on its channel since goes to the one she has now
    /// ([`Runtime::judged_late`]).
    async fn deliver(
        &self,
        o: &Outgoing,
        cancelled: bool,
        due: Timestamp,
    ) -> Result<Outcome, RunError> {
        let now = self.now();
        let key = ledger_key(o);
        let claim = |version: u64| {
            Record::new(
                key.clone(),
                version,
                &Ledger::Claimed {
                    until: now + self.config.claim_lease,
                },
            )
        };
        // Claim first; the ledger is read only when someone claimed before (a repeat). The
        // claim is written only while her profile is not sealed (her erasure under way, or its
        // mark): in the same request, so that a transition that read her profile before her
        // erasure marked it, committed after the erasure ended her enrollments (which never saw
        // it), sends nothing. No profile at all (a user known only by her enrollments, a mark
        // expired) seals nothing; nor does a profile made on the mark by an event received
        // after the erasure (a new one's).
        let profile = profile_key(&o.user_id);
        let claimed = self
            .store
            .put_unless_sealed(&claim(1)?, Expect::Absent, &profile)
            .await;
        let claim_version = match claimed {
            Ok(()) => 1,
            Err(StoreError::Sealed) => return self.skip_as_erased(o, &key, None).await,
            Err(StoreError::Conflict) => {
                let Some(r) = self.store.get(&key).await? else {
                    return Err(RunError::Retry(format!(
                        "send {} changed while it was claimed",
                        o.ledger_key()
                    )));
                };
                match r.parse::<Ledger>()? {
                    Ledger::Done { outcome } => return Ok(outcome),
                    Ledger::Claimed { until } if until > now => {
                        return Err(RunError::Retry(format!(
                            "send {} is claimed by another worker",
                            o.ledger_key()
                        )))
                    }
                    // A claim whose worker gave up (its lease ran out): take it over.
                    Ledger::Claimed { .. } => {
                        match self
                            .store
                            .put_unless_sealed(
                                &claim(r.version + 1)?,
                                Expect::Version(r.version),
                                &profile,
                            )
                            .await
                        {
                            Ok(()) => r.version + 1,
                            Err(StoreError::Sealed) => {
                                return self.skip_as_erased(o, &key, Some(r.version)).await
                            }
                            Err(StoreError::Conflict) => {
                                return Err(RunError::Retry(format!(
                                    "send {} was claimed concurrently",
                                    o.ledger_key()
                                )))
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };

        let skipped = cancelled || self.stopped(&o.journey).await?;
        if skipped {
            // An earlier attempt may have taken a place in the cap before it failed: this send
            // will not go out, so the place is given back. Also under a first claim: an
            // attempt that took a place may have lost its claim since (its worker died, and the
            // one that took the claim over gave it back too late in its invocation to send).
            self.uncount_cap(o).await?;
        }
        let late = match skipped {
            true => None,
            false => self.judged_late(o, now, due).await?,
        };
        // Her address changed since the message was made: it goes to the one she has now, as
        // made otherwise (its content stays), and what records it (the outbox) says where.
        let readdressed;
        let went_to = match &late {
            Some(Late::Readdressed { to }) => Some(to.clone()),
            _ => None,
        };
        let o = match &late {
            Some(Late::Readdressed { to }) => {
                tracing::info!(user = %o.user_id, send = %o.ledger_key(), channel = %o.channel, "a send tried again goes to the user's address as her profile has it now, changed since it was made");
                readdressed = Outgoing {
                    to: to.clone(),
                    ..o.clone()
                };
                &readdressed
            }
            _ => o,
        };
        let outcome = if cancelled {
            Outcome::Skipped {
                reason: "exited".into(),
                detail: Some("an exit event came before the message could go out".into()),
            }
        } else if skipped {
            Outcome::Skipped {
                reason: "stopped".into(),
                detail: Some("the journey was stopped before the message could go out".into()),
            }
        } else if let Some(Late::Skip { reason, detail }) = late {
            // Its place in the cap, if an earlier attempt took one, is given back.
            self.uncount_cap(o).await?;
            Outcome::Skipped {
                reason,
                detail: Some(detail),
            }
        } else if let Some(Late::Hold { until, why }) = late {
            let later = RunError::Later { why, at: until };
            return self.give_back(&key, claim_version, later).await;
        } else if out_of_sending_time() {
            return self.give_back(&key, claim_version, not_begun(o)).await;
        } else {
            match self.send_now(o, now).await? {
                Some(Outcome::Sent { at, .. }) => Outcome::Sent { at, to: went_to },
                Some(outcome) => outcome,
                None => return self.give_back(&key, claim_version, not_begun(o)).await,
            }
        };
        let done = Record::new(
            key,
            claim_version + 1,
            &Ledger::Done {
                outcome: outcome.clone(),
            },
        )?
        .expiring(now + KEEP_FOR);
        // A message that went out and is not recorded would go out again on the retry: its
        // record is tried a few more times here first (the store's own retries are spent).
        let began = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.put(&done, Expect::Version(claim_version)).await {
                Ok(()) => return Ok(outcome),
                Err(StoreError::Unavailable(why))
                    if attempt < DONE_ATTEMPTS
                        && began.elapsed() < DONE_RETRY_FOR
                        && matches!(outcome, Outcome::Sent { .. }) =>
                {
                    tracing::warn!(send = %o.ledger_key(), error = %why, attempt, "a sent message's record failed; trying again");
                }
                // An attempt applied though its answer was lost (also inside the store's own
                // retries): recorded after all.
                Err(StoreError::Conflict) => {
                    let recorded = self.store.get(&done.key).await?;
                    let Some(r) = recorded else {
                        // The claim went with her data: her erasure cleared her partition while
                        // this worker sent (nothing else deletes a claim held). What happened is
                        // what this worker did: its timeline record says it, and is counted.
                        tracing::info!(user = %o.user_id, send = %o.ledger_key(), "a send's claim went with its user's erasure as it was made; recorded in its timeline alone");
                        return Ok(outcome);
                    };
                    if r.version == claim_version + 1 {
                        if let Ledger::Done { .. } = r.parse::<Ledger>()? {
                            return Ok(outcome);
                        }
                    }
                    return Err(StoreError::Conflict.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send `o`, whose claim found its user's profile sealed (her erasure under way, or its
    /// mark), recorded in the ledger (at `key`, replacing the lapsed claim at `claimed` if
    /// there is one) as her erasure records the sends it skips (`erased`, kept as long as her
    /// mark): it never goes out. A record written meanwhile is read by the retry.
    async fn skip_as_erased(
        &self,
        o: &Outgoing,
        key: &Key,
        claimed: Option<u64>,
    ) -> Result<Outcome, RunError> {
        let (version, expect) = match claimed {
            Some(v) => (v + 1, Expect::Version(v)),
            None => (1, Expect::Absent),
        };
        let record = crate::erase::erased_send_record(key.clone(), version, self.now())?;
        match self.store.put(&record, expect).await {
            Ok(()) => {
                tracing::info!(user = %o.user_id, send = %o.ledger_key(), "a send of a user erased since its transition read her profile is skipped");
                Ok(crate::erase::erased_send())
            }
            Err(StoreError::Conflict) => Err(RunError::Retry(format!(
                "send {} changed as it was recorded skipped for its user's erasure",
                o.ledger_key()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// What becomes of a send tried at `now`, later than its step ran (`due`: its provider was
    /// down, its worker died, a later event performs what it owed): skipped when the user, as
    /// her profile reads now, unsubscribed from the journey's topic or the channel, or the
    /// address was suppressed, since it was made (a link clicked, a bounce, STOP); else held
    /// when it falls inside the journey's quiet hours in her zone (where her profile says she
    /// is now, as a wait finds it; not where the message was made) to their end, or skipped
    /// when its `send_within` does not allow that long; else sent to her address as her
    /// profile has it now, when that changed since ([`Late::Readdressed`]). `None` at its
    /// first try (the engine judged all this when its step ran), and when it goes out as made.
    async fn judged_late(
        &self,
        o: &Outgoing,
        now: Timestamp,
        due: Timestamp,
    ) -> Result<Option<Late>, RunError> {
        // The engine judged it at `due`; within the same minute it is that judgement.
        if now < due + SignedDuration::from_secs(60) {
            return Ok(None);
        }
        let Some(p) = self.catalog.version(&o.journey, o.version).await? else {
            return Ok(None);
        };
        let j = &p.journey;
        // An in-app message reaches her inbox whatever she said since, at any hour.
        if o.channel == Channel::InApp {
            return Ok(None);
        }
        let send = j.step(&o.step).and_then(|s| s.send.as_ref());
        let (profile, _) = self.load_profile(&o.user_id).await?;
        let readdressed = match self.address_now(o, &p, send, &profile, due) {
            Ok(to) => to.map(|to| Late::Readdressed { to }),
            Err(skip) => return Ok(Some(skip)),
        };
        // (`o.transactional` is its journey version's flag: the engine copies it to each send.)
        if o.transactional {
            return Ok(readdressed);
        }
        let Some(q) = j.quiet_hours.as_ref() else {
            return Ok(readdressed);
        };
        // Where she is now, as a wait finds it (`engine::Ctx::timezone`): a message made in
        // Paris and tried again after she moved to New York keeps New York's night.
        let tz = crate::template::zone_of(
            profile.traits.get("timezone").and_then(Value::as_str),
            j.default_zone(),
        );
        let Some(until) = crate::engine::quiet_until(now, &tz, q) else {
            return Ok(readdressed);
        };
        if let Some(within) = send.and_then(|s| s.send_within) {
            let held = until.as_second() - due.as_second();
            if held > i64::try_from(within.as_secs()).unwrap_or(i64::MAX) {
                return Ok(Some(Late::Skip {
                    reason: "quiet_hours".into(),
                    detail: crate::engine::held_too_long_detail(
                        &tz,
                        due,
                        Some((now, "tried again after its first try failed")),
                        q,
                        until,
                        within,
                    ),
                }));
            }
        }
        let hours = format!("{}–{}", String::from(q.start), String::from(q.end));
        Ok(Some(Late::Hold {
            until,
            why: format!(
                "send {} tried again inside quiet hours {hours}: held until they end",
                o.ledger_key()
            ),
        }))
    }

    /// Where a send made earlier goes, as her profile reads now: `Some` of her address on its
    /// channel when that changed since it was made (another email address or phone number, as
    /// an identify set it; for a push, her devices that are not disabled now: one the provider
    /// disabled since is not tried again, and one she registered since is), `None` when it is
    /// the one it was made for (and for an in-app message or a webhook, which go to her user
    /// id). The skip, as the engine judges a send, when she takes it no more: unsubscribed from
    /// the journey's topic, or from the channel (unless the message is a transactional
    /// journey's non-marketing email), the channel's address suppressed (a bounce, a complaint,
    /// STOP, every push device disabled), or gone (no `email` or `phone` trait, no device).
    fn address_now(
        &self,
        o: &Outgoing,
        p: &Published,
        send: Option<&crate::journey::Send>,
        profile: &Profile,
        due: Timestamp,
    ) -> Result<Option<Address>, Late> {
        if matches!(o.channel, Channel::InApp | Channel::Webhook) {
            return Ok(None);
        }
        let skip = |reason: &str, detail: Option<String>| Late::Skip {
            reason: reason.to_string(),
            detail: format!(
                "{} since the message was made; not sent when tried again",
                detail.unwrap_or_else(|| reason.replace('_', " "))
            ),
        };
        // Made before her erasure (or with it). A profile made after it, by an event she sent
        // since, keeps when she was erased: its own sends, made after, go out.
        if profile.erased_after(due) {
            return Err(skip("erased", Some("the user's data was erased".into())));
        }
        if let Some(topic) = &p.journey.topic {
            if let Some(t) = crate::topic::standing(profile, &self.declared(p), topic) {
                return Err(skip(t.reason, Some(t.detail)));
            }
        }
        // The template that went out: the step's first channel's, or its fallback's.
        let exempt = std::iter::successors(send, |s| s.fallback.as_deref())
            .filter_map(|s| s.template())
            .find(|t| t.channel() == o.channel)
            .is_some_and(|t| t.ignores_unsubscribe(p.journey.transactional));
        match profile.address_for(o.channel, exempt) {
            Ok(to) if to == o.to => Ok(None),
            Ok(to) => Ok(Some(to)),
            Err(why @ crate::profile::Unreachable::NoAddress) => {
                let what = profile
                    .unreachable_detail(o.channel, why)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                Err(Late::Skip {
                    reason: why.as_str().to_string(),
                    detail: format!(
                        "no address since the message was made{what}; not sent when tried again"
                    ),
                })
            }
            Err(why) => Err(skip(
                why.as_str(),
                profile.unreachable_detail(o.channel, why),
            )),
        }
    }

    /// Gives back the claim (its ledger entry `key`, at `claim_version`) of a send that does
    /// not go out now, and fails with `why`, which says when it is tried again: held to the end
    /// of quiet hours ([`RunError::Later`]), or too late in its invocation to call the provider
    /// and record it ([`not_begun`]). The message's retry claims it again.
    async fn give_back(
        &self,
        key: &Key,
        claim_version: u64,
        why: RunError,
    ) -> Result<Outcome, RunError> {
        self.store
            .delete(key, Expect::Version(claim_version))
            .await?;
        Err(why)
    }

    /// Checks the caps and calls the provider for a claimed send; what happened, `None` when
    /// the invocation ran out before the provider could be called (nothing went out, its cap
    /// place is given back), or an error when it may be tried again (nothing went out).
    async fn send_now(&self, o: &Outgoing, now: Timestamp) -> Result<Option<Outcome>, RunError> {
        if let Some(skip) = self.check_cap(o, now).await? {
            return Ok(Some(skip));
        }
        // The cap's read and write may have taken long (a slow store, retried conflicts): a
        // provider call begun now could be cut off after the provider took it, and the
        // message's redelivery would send it again.
        if out_of_sending_time() {
            self.uncount_cap(o).await?;
            return Ok(None);
        }
        let sent = match self.put_in_inbox(o, now).await {
            // Withdrawn before it got there: it is not sent, and its cap place is given back.
            Ok(Some(skip)) => {
                self.uncount_cap(o).await?;
                return Ok(Some(skip));
            }
            Ok(None) => self.call_provider(o).await,
            Err(e) => Err(e),
        };
        let err = match sent {
            Ok(receipt) => {
                // It went out: nothing after this may fail the send, or its retry would send it
                // again. A device left unmarked is marked by the next push it refuses.
                if let Err(e) = self.disable_devices(o, &receipt.disabled_devices).await {
                    tracing::warn!(user = %o.user_id, error = %e, "push devices the provider disabled were not marked; the next push to them marks them");
                }
                // When it went out: now, or earlier for a message the provider holds from an
                // attempt that crashed before recording it (`waymark dev`'s outbox line).
                let at = receipt.sent_at.filter(|t| *t <= now).unwrap_or(now);
                return Ok(Some(Outcome::Sent { at, to: None }));
            }
            Err(err) => err,
        };
        // Nothing went out: the send gives its cap place back.
        self.uncount_cap(o).await?;
        match err {
            SendError::Permanent(reason) => Ok(Some(Outcome::Skipped {
                reason: "rejected".into(),
                detail: Some(reason),
            })),
            // Only the devices the provider said are disabled: another may have refused this
            // message alone, or had no endpoint to try.
            SendError::PushRefused {
                reason,
                disabled_devices,
            } => {
                self.disable_devices(o, &disabled_devices).await?;
                Ok(Some(Outcome::Skipped {
                    reason: "rejected".into(),
                    detail: Some(reason),
                }))
            }
            // The claim is left to expire; the redelivery tries again.
            SendError::Retryable(why) => Err(RunError::Retry(why)),
            // Tried again, but the devices the provider said are disabled are marked now: the
            // retry may never come (the outage outlasts it), and a dead token would be tried
            // by every later push until one went out or all refused.
            SendError::PushRetryable {
                reason,
                disabled_devices,
            } => {
                if let Err(e) = self.disable_devices(o, &disabled_devices).await {
                    tracing::warn!(user = %o.user_id, error = %e, "push devices the provider disabled were not marked; the retry's push to them marks them");
                }
                Err(RunError::Retry(reason))
            }
        }
    }

    /// Marks push devices the provider reported disabled, so no later message tries them.
    async fn disable_devices(&self, o: &Outgoing, tokens: &[String]) -> Result<(), RunError> {
        if tokens.is_empty() {
            return Ok(());
        }
        tracing::info!(user = %o.user_id, devices = tokens.len(), "push devices disabled by the provider");
        let now = self.now();
        self.update_profile(&o.user_id, |p| {
            for d in p.devices.iter_mut().filter(|d| tokens.contains(&d.token)) {
                d.disabled = true;
                d.disabled_at = Some(now);
            }
        })
        .await
        .map(|_| ())
    }

    /// Puts an in-app message in its user's inbox (nothing for another channel), where absent:
    /// `Some(skip)` when its enrollment withdrew it first (a placeholder is there, see
    /// [`Runtime::withdraw`]).
    async fn put_in_inbox(
        &self,
        o: &Outgoing,
        now: Timestamp,
    ) -> Result<Option<Outcome>, SendError> {
        if o.channel != Channel::InApp {
            return Ok(None);
        }
        let crate::engine::Content::InApp {
            title,
            body,
            data,
            expires,
        } = o.content.as_ref()
        else {
            return Err(SendError::Permanent(
                "in-app message without in-app content".into(),
            ));
        };
        let expires_at = expires.map(|e| now + e.to_jiff());
        let item = InboxItem {
            id: o.ledger_key(),
            at: now,
            journey: o.journey.to_string(),
            step: o.step.to_string(),
            title: title.clone(),
            body: body.clone(),
            data: data.clone(),
            expires_at,
            read_at: None,
            dismissed_at: None,
            withdrawn_at: None,
            withdrawn_reason: None,
            placeholder: false,
        };
        let record = Record::new(inbox_key(o), 1, &item)
            .map_err(|e| SendError::Permanent(e.to_string()))?
            .expiring(expires_at.unwrap_or(now + KEEP_FOR));
        let retry = |e: StoreError| SendError::Retryable(e.to_string());
        match self.store.put(&record, Expect::Absent).await {
            Ok(()) => Ok(None),
            // Already there: an earlier attempt of this send put it (the user may have read or
            // dismissed it since; it stays as she left it), or its enrollment's exit withdrew
            // it before it got there.
            Err(StoreError::Conflict) => {
                let Some(r) = self.store.get(&inbox_key(o)).await.map_err(retry)? else {
                    return Err(SendError::Retryable(format!(
                        "inbox message {} changed while it was written",
                        o.ledger_key()
                    )));
                };
                let there: InboxItem =
                    r.parse().map_err(|e| SendError::Permanent(e.to_string()))?;
                if !there.placeholder {
                    return Ok(None);
                }
                // As an owed send at the exit (or the stop) is, when its claim came first.
                let stopped = there.withdrawn_reason.as_deref() == Some(engine::STOPPED_REASON);
                Ok(Some(if stopped {
                    Outcome::Skipped {
                        reason: "stopped".into(),
                        detail: Some(
                            "the journey was stopped before the message reached the inbox".into(),
                        ),
                    }
                } else {
                    Outcome::Skipped {
                        reason: "exited".into(),
                        detail: Some(
                            "an exit event came before the message reached the inbox".into(),
                        ),
                    }
                }))
            }
            Err(e) => Err(retry(e)),
        }
    }

    async fn call_provider(&self, o: &Outgoing) -> Result<Receipt, SendError> {
        if o.channel == Channel::InApp && !self.sender.wants_in_app() {
            return Ok(Receipt::default());
        }
        self.sender.send(o).await
    }

    /// `Some(skip)` when a frequency cap stops the send; otherwise counts it against the cap.
    /// A send holds one place whatever number of attempts it takes: places are kept by ledger
    /// key.
    async fn check_cap(&self, o: &Outgoing, now: Timestamp) -> Result<Option<Outcome>, RunError> {
        if o.transactional {
            return Ok(None);
        }
        let Some(cap) = self.config.caps.get(&o.channel) else {
            return Ok(None);
        };
        let send = o.ledger_key();
        let window = CapWindow::ending(now, cap.per, o.timezone.as_deref());
        self.change_cap(&cap_key(&o.user_id, o.channel), |places| {
            if places.iter().any(|p| p.send == send) {
                return (None, false); // an earlier attempt of this send took its place
            }
            // The places her window holds count; the others stay while they may count in
            // another zone's (her zone changed, or another journey's default is behind):
            // a zone's day is not the record's to forget.
            let holding: Vec<CapPlace> = places
                .iter()
                .filter(|p| window.holds(p.at))
                .cloned()
                .collect();
            if holding.len() >= cap.max as usize {
                // The place that frees first for this send: the (len - max + 1)th oldest's.
                let mut times: Vec<Timestamp> = holding.iter().map(|p| p.at).collect();
                times.sort();
                let frees = times
                    .get(holding.len() - cap.max as usize)
                    .and_then(|at| CapWindow::leaves_at(*at, cap.per, o.timezone.as_deref()))
                    .map(|at| format!("; a place frees at {at}"))
                    .unwrap_or_default();
                let skip = Outcome::Skipped {
                    reason: "capped".into(),
                    detail: Some(format!(
                        "at most {} {} per {}: taken by {}{frees}",
                        cap.max,
                        o.channel,
                        cap.per,
                        taken_by(&holding, &o.user_id)
                    )),
                };
                return (Some(skip), false);
            }
            places.retain(|p| CapWindow::may_count(p.at, now, cap.per));
            places.push(CapPlace {
                send: send.clone(),
                at: now,
            });
            (None, true)
        })
        .await
    }

    /// Changes the cap record `key` (its places; none when there is none yet) with `f`, which
    /// answers what to return and whether the places changed: written then, on the version
    /// read, again on a conflict.
    async fn change_cap<T>(
        &self,
        key: &Key,
        mut f: impl FnMut(&mut Vec<CapPlace>) -> (T, bool),
    ) -> Result<T, RunError> {
        for _ in 0..8 {
            let current = self.store.get(key).await?;
            let (version, expect) = Expect::replacing(current.as_ref());
            let mut places = match &current {
                Some(r) => CapPlace::read(r)?,
                None => Vec::new(),
            };
            let (answer, changed) = f(&mut places);
            if !changed {
                return Ok(answer);
            }
            match self
                .store
                .put(&Record::new(key.clone(), version, &places)?, expect)
                .await
            {
                Ok(()) => return Ok(answer),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Conflict("cap busy".into()))
    }

    /// The places an anonymous visitor's sends took in the caps, joined to the user she turned
    /// out to be: one person on one phone is capped as one. One read a capped channel; a write
    /// only where the visitor had places (kept by send, so a retried merge adds none twice).
    async fn merge_caps(&self, anon: &str, user: &str) -> Result<(), RunError> {
        let now = self.now();
        for (channel, cap) in &self.config.caps {
            let Some(theirs) = self.store.get(&cap_key(anon, *channel)).await? else {
                continue;
            };
            let mut theirs = CapPlace::read(&theirs)?;
            theirs.retain(|p| CapWindow::may_count(p.at, now, cap.per));
            if theirs.is_empty() {
                continue;
            }
            self.change_cap(&cap_key(user, *channel), |places| {
                let before = places.len();
                for p in &theirs {
                    // Places of unknown sends (written before places were kept by send) are
                    // told apart by their time.
                    if !places
                        .iter()
                        .any(|x| x.send == p.send && (!p.send.is_empty() || x.at == p.at))
                    {
                        places.push(p.clone());
                    }
                }
                ((), places.len() > before)
            })
            .await?;
        }
        Ok(())
    }

    /// Gives back the place a send took in the cap (the provider did not take it).
    async fn uncount_cap(&self, o: &Outgoing) -> Result<(), RunError> {
        if o.transactional || !self.config.caps.contains_key(&o.channel) {
            return Ok(());
        }
        let send = o.ledger_key();
        self.change_cap(&cap_key(&o.user_id, o.channel), |places| {
            let i = places.iter().position(|p| p.send == send);
            if let Some(i) = i {
                places.remove(i);
            }
            ((), i.is_some())
        })
        .await
    }

    async fn wake(
        &self,
        user: &str,
        record: &str,
        enrollment_id: &str,
        seq: u64,
    ) -> Result<(), RunError> {
        // A wake-up names the enrollment's record: its journey, or `{journey}#{key}`.
        let journey = Enrollment::journey_of_record(record);
        let Some(r) = self.store.get(&enrollment_key(user, record)).await? else {
            // Her enrollments went with her data: a wake-up already queued is stale.
            if self.load_profile(user).await?.0.erased_at.is_some() {
                tracing::debug!(journey, seq, "wake-up of an erased user dropped");
                return Ok(());
            }
            // An ended keyed enrollment's record goes once its time is kept (see
            // `Runtime::kept_until`): a wake-up for it is stale.
            if record != journey {
                tracing::debug!(
                    journey,
                    seq,
                    "wake-up of an expired keyed enrollment dropped"
                );
                return Ok(());
            }
            return Err(RunError::Poison(format!("no enrollment {enrollment_id}")));
        };
        let loaded = Loaded::read(&r)?;
        let cause = Enrollment::wake_id_of(enrollment_id, seq);
        let (loaded, done) = self.settle_for(loaded, &cause, true).await?;
        if &*loaded.enrollment.id != enrollment_id {
            return Ok(()); // an earlier enrollment's wake-up
        }
        if done {
            return Ok(()); // this wake-up's transition is done
        }
        let e = &loaded.enrollment;
        let Some(p) = self.catalog.version(journey, e.version).await? else {
            return Err(RunError::Poison(format!(
                "journey `{journey}` version {} does not exist",
                e.version
            )));
        };
        let profile = self.load_profile(user).await?.0;
        if let Some(into) = profile.merged_into.as_deref() {
            // An anonymous user merged since this enrollment's last step: entered while the merge
            // ran (after it looked), it goes on as the user's from here.
            if e.is_active() && e.pending.is_some_and(|p| p.seq == seq) {
                let theirs = self.load_profile(into).await?.0;
                let hers = match self.store.get(&enrollment_key(into, record)).await? {
                    Some(r) => Some(Loaded::read(&r)?.enrollment),
                    None => None,
                };
                let ends = self
                    .ends_at_login(&p.journey, hers.as_deref(), &theirs, e)
                    .await?;
                let converted = hers.as_ref().and_then(|h| h.converted_at);
                return self
                    .merge_enrollment(&theirs, ends, loaded, &p, &cause, converted)
                    .await;
            }
        }
        let unsub = self.unsubscribe_url(user, &p.journey);
        let ctx = Ctx {
            journey: &p.journey,
            version: p.version,
            profile: &profile,
            now: self.now(),
            unsubscribe_url: unsub.as_deref(),
            topics: self.declared(&p),
            set_meanwhile: &[],
        };
        // A stopped journey ends the enrollment at its next step (this one), whatever version
        // it is on, and nothing it still owes from earlier transitions goes out.
        let stopped = e.pending.is_some_and(|p| p.seq == seq) && self.stopped(journey).await?;
        let t = if stopped {
            engine::stop(&ctx, e)
        } else {
            engine::wake(&ctx, e, seq)
        };
        let Some(t) = t else {
            tracing::debug!(user, journey, seq, "stale wake-up dropped");
            return Ok(());
        };
        let committed = self.commit(t, &cause, Some(&loaded), stopped).await?;
        self.settle_for(committed, &cause, false).await.map(|_| ())
    }

    /// Makes `message` arrive at `at`: on the queue (hopping in 15-minute steps up to the hop
    /// limit) or as a timer the scheduler sweeps.
    pub async fn schedule(&self, message: Message, at: Timestamp) -> Result<(), RunError> {
        let now = self.now();
        let delay = secs_until(now, at);
        // A timer must land in a minute the scheduler has not swept yet (it sweeps up to a minute
        // ahead), so short waits always ride the queue, whatever the hop limit.
        if delay <= self.config.hop_limit.as_secs().max(MIN_TIMER_SECS) {
            let delay_secs = hop_secs(delay, self.queue.max_delay_secs());
            let q = message.queue();
            self.queue
                .send(
                    q,
                    &[Outbound {
                        message,
                        delay_secs,
                    }],
                )
                .await?;
            return Ok(());
        }
        let id = message.id();
        let key = timer_key(minute_of(at), segment_of(&id, self.config.timer_shards), id);
        self.note_shards().await?;
        self.store
            .put(&Record::new(key, 1, &message)?, Expect::Any)
            .await?;
        Ok(())
    }

    pub(crate) async fn cancel_timer(
        &self,
        message: &Message,
        at: Timestamp,
    ) -> Result<(), RunError> {
        // A wake-up due within two minutes may already be on the queue (the sweep runs a minute
        // ahead): there it is recognised as stale. Further out it may be a timer: delete it.
        if (at - self.now()).as_secs() <= 120 {
            return Ok(());
        }
        let id = message.id();
        let key = timer_key(minute_of(at), segment_of(&id, self.config.timer_shards), id);
        self.store.delete(&key, Expect::Any).await?;
        Ok(())
    }

    /// The scheduler's minute: moves timers due by the end of the next minute onto the queue,
    /// starts the runs of schedule-triggered journeys and the sweeps of newly stopped ones
    /// (scans the engine reads page by page: see [`Message::Scan`]), and folds new timeline
    /// records into the stats.
    pub async fn tick(&self) -> Result<Tick, RunError> {
        self.tick_within(self.config.tick_budget, None).await
    }

    /// Starts the scheduler's minutes at `at`'s minute, if it has not run yet (a simulation's
    /// first minute is its script's: no run for the minute before it).
    pub async fn start_minutes_at(&self, at: Timestamp) -> Result<(), RunError> {
        let record = Record::new(Key::new(CURSOR.0, CURSOR.1), 1, &minute_of(at))?;
        match self.store.put(&record, Expect::Absent).await {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts the scheduler's minutes before `minute` as run, if they are not: a simulation
    /// that jumps over minutes in which the scheduler has nothing to do (no timer to move, no
    /// schedule's cron matching) marks them so, and its next run does not catch them up as it
    /// would missed minutes (judged by what is known then, not at their time).
    pub(crate) async fn skip_minutes_to(&self, minute: i64) -> Result<(), RunError> {
        let key = Key::new(CURSOR.0, CURSOR.1);
        let cursor = self.store.get(&key).await?;
        if let Some(r) = &cursor {
            if r.parse::<i64>()? >= minute {
                return Ok(());
            }
        }
        let (version, expect) = Expect::replacing(cursor.as_ref());
        self.store
            .put(&Record::new(key, version, &minute)?, expect)
            .await?;
        Ok(())
    }

    /// [`Runtime::tick`], catching up for at most `budget` of wall time (see
    /// [`Config::tick_budget`]; the Lambda function passes what its invocation has left), and
    /// folding the stats until about `fold_until` (see [`Runtime::fold_stats_within`]).
    pub async fn tick_within(
        &self,
        budget: Option<std::time::Duration>,
        fold_until: Option<std::time::Instant>,
    ) -> Result<Tick, RunError> {
        let now = self.now();
        let now_minute = minute_of(now);
        let cursor_key = Key::new(CURSOR.0, CURSOR.1);
        let cursor = self.store.get(&cursor_key).await?;
        let from = match &cursor {
            Some(r) => r.parse::<i64>()?,
            None => now_minute - 1,
        };
        let to = (now_minute + 1).min(from + self.config.max_catch_up_minutes.max(1));
        // Every partition some function has written timers and fold listings to.
        let shards = self.shards_in_use().await?;
        let started = std::time::Instant::now();
        let mut moved = 0usize;
        let mut schedules = 0usize;
        // The first minute not done: the coming minute's timers are swept early, and again
        // next time.
        let mut next = from;
        let mut failed = None;
        let until = budget.map(|b| started + b);
        // Where the store can tell in one read, only the minutes' partitions that hold timers
        // are read (`waymark dev` at high speed sweeps hours of minutes a tick).
        let holding = match self.timer_partitions(from, to).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the timer partitions; reading each");
                None
            }
        };
        for minute in from..=to {
            let swept = async {
                let swept = self
                    .sweep_minute(minute, shards, until, holding.as_ref())
                    .await?;
                moved += swept.moved;
                if !swept.finished {
                    return Ok(false);
                }
                if minute <= now_minute {
                    schedules += self.start_schedules(minute, now_minute).await?;
                }
                Ok::<bool, RunError>(true)
            };
            match swept.await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        minute,
                        moved,
                        "scheduler out of time within a minute's timers; the next run goes on"
                    );
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            next = (minute + 1).min(now_minute + 1);
            if minute < to && budget.is_some_and(|b| started.elapsed() >= b) {
                tracing::warn!(
                    minute,
                    behind = now_minute - minute,
                    "scheduler catch-up out of time; the next run goes on"
                );
                break;
            }
        }
        // A run that failed partway keeps the minutes it finished too: the next starts there
        // rather than all over again (under throttling, a run that must get every minute of a
        // long catch-up right in one go may never finish).
        if next > from || failed.is_none() {
            let (version, expect) = Expect::replacing(cursor.as_ref());
            let record = Record::new(cursor_key, version, &next)?;
            match (self.store.put(&record, expect).await, &failed) {
                (Ok(()), _) | (Err(StoreError::Conflict), None) => {}
                (Err(e), None) => return Err(e.into()),
                (Err(e), Some(_)) => {
                    tracing::warn!(error = %e, minute = next, "scheduler progress not kept")
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let stops = self.sweep_stopped().await?;
        let folded = self.fold_partitions(shards, fold_until).await?;
        Ok(Tick {
            moved,
            schedules,
            folded,
            stops,
        })
    }

    /// Starts a scan job: one [`Message::Scan`] for the first page of each of its segments,
    /// which the engine reads in parallel (DynamoDB parallel scan), page after page.
    async fn start_scan(&self, job: ScanJob) -> Result<(), RunError> {
        let pages: Vec<Outbound> = (0..SCAN_SEGMENTS)
            .map(|segment| Outbound {
                message: Message::Scan {
                    job: job.clone(),
                    segment,
                    segments: SCAN_SEGMENTS,
                    start: None,
                },
                delay_secs: 0,
            })
            .collect();
        self.queue.send(QueueName::Steps, &pages).await?;
        Ok(())
    }

    /// Reads one page of a scan job (see [`Message::Scan`]) and queues a message for each
    /// record it selects, then the next page. A page read before (its message came again) is
    /// not read again, so a repeated page cannot start a second chain of pages.
    async fn scan_page(
        &self,
        job: &ScanJob,
        segment: u32,
        segments: u32,
        start: Option<&Key>,
        id: &str,
    ) -> Result<(), RunError> {
        let marker = scan_marker_key(job, id);
        let Some(claimed) = self.claim_page(&marker).await? else {
            return Ok(()); // read already
        };
        let sk = match job {
            ScanJob::Schedule { .. } => Some("P".to_string()),
            ScanJob::Stop { journey, keyed, .. } => {
                // Published active again since: the rest of the sweep stops here (each `Stop`
                // queued already checks the same). Keyed records are read user by user.
                let head = self.catalog.head(journey).await?;
                head.is_some_and(|h| h.status == JourneyStatus::Stopped)
                    .then(|| match keyed {
                        true => "P".to_string(),
                        false => join(&["E#", journey]),
                    })
            }
        };
        let page = match sk {
            Some(sk) => {
                self.store
                    .scan(&sk, segment, segments, start, self.config.scan_page)
                    .await?
            }
            None => Page::default(),
        };
        let selected = match job {
            ScanJob::Schedule {
                journey,
                minute,
                until,
                version,
            } => {
                self.scheduled_entries(journey, *minute, *until, *version, &page.records)
                    .await?
            }
            ScanJob::Stop {
                journey,
                keyed: true,
                ..
            } => {
                let prefix = join(&["E#", journey, "#"]);
                let mut stops = Vec::new();
                for r in &page.records {
                    for e in self.store.query(&r.key.pk, &prefix).await? {
                        let Ok(e) = e.parse::<Enrollment>() else {
                            continue;
                        };
                        if e.is_active() {
                            stops.push(Outbound {
                                message: Message::Stop {
                                    user_id: e.user_id.to_string(),
                                    journey: e.record(),
                                    enrollment: e.id.to_string(),
                                },
                                delay_secs: 0,
                            });
                        }
                    }
                }
                stops
            }
            ScanJob::Stop { .. } => page
                .records
                .iter()
                .filter_map(|r| r.parse::<Enrollment>().ok())
                .filter(Enrollment::is_active)
                .map(|e| Outbound {
                    message: Message::Stop {
                        user_id: e.user_id.to_string(),
                        journey: e.record(),
                        enrollment: e.id.to_string(),
                    },
                    delay_secs: 0,
                })
                .collect(),
        };
        for chunk in selected.chunks(100) {
            if let Some(first) = chunk.first() {
                self.queue.send(first.message.queue(), chunk).await?;
            }
        }
        if page.next.is_none() && matches!(job, ScanJob::Schedule { .. }) {
            self.zones_segment_read(job, segment, segments).await?;
        }
        if let Some(next) = page.next {
            let more = Outbound {
                message: Message::Scan {
                    job: job.clone(),
                    segment,
                    segments,
                    start: Some(next),
                },
                delay_secs: 0,
            };
            self.queue.send(QueueName::Steps, &[more]).await?;
        }
        let done = Record::new(
            marker,
            claimed + 1,
            &PageMark::Read {
                selected: selected.len() as u64,
            },
        )?
        .expiring(self.now() + SignedDuration::from_hours(48));
        match self.store.put(&done, Expect::Version(claimed)).await {
            // Another worker took the page over after this one's claim lapsed: it marks it.
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(job = %job.id(), segment, selected = selected.len(), "scan page read");
        Ok(())
    }

    /// Claims a scan page for this worker (see [`PageMark`]): its marker's version, or `None`
    /// when the page was read already. A page another worker is reading is a retry for later
    /// (then read, or its claim lapsed and this worker takes it over), so two deliveries of one
    /// page never start two chains of pages.
    async fn claim_page(&self, marker: &Key) -> Result<Option<u64>, RunError> {
        let now = self.now();
        let claim = |version: u64| -> Result<Record, RunError> {
            Ok(Record::new(
                marker.clone(),
                version,
                &PageMark::Reading {
                    until: now + self.config.claim_lease,
                },
            )?
            .expiring(now + SignedDuration::from_hours(48)))
        };
        let (version, expect) = match self.store.get(marker).await? {
            None => (1, Expect::Absent),
            Some(r) => match r.parse::<PageMark>()? {
                PageMark::Read { .. } => return Ok(None),
                PageMark::Reading { until } if until > now => {
                    return Err(RunError::Retry(format!(
                        "scan page {} is being read until {until}",
                        marker.sk
                    )))
                }
                PageMark::Reading { .. } => (r.version + 1, Expect::Version(r.version)),
            },
        };
        match self.store.put(&claim(version)?, expect).await {
            Ok(()) => Ok(Some(version)),
            Err(StoreError::Conflict) => Err(RunError::Retry(format!(
                "scan page {} was claimed at the same time",
                marker.sk
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the active enrollments of each newly stopped journey now, rather than at their
    /// next step: a scan of its enrollments sends a `Stop` message for each (a wake-up would
    /// run the step when this engine's catalog had not seen the stop yet). Once per stopped
    /// version, remembered in the store; an enrollment the scan misses still ends at its next
    /// step. Returns the sweeps started.
    async fn sweep_stopped(&self) -> Result<usize, RunError> {
        let journeys = self.catalog.active().await?;
        let mut started = 0;
        for p in journeys
            .iter()
            .filter(|p| p.journey.status == JourneyStatus::Stopped)
        {
            let key = Key::new(STOPS, p.journey.id.as_str());
            let marker = self.store.get(&key).await?;
            if let Some(r) = &marker {
                if r.parse::<u32>()? >= p.version {
                    continue;
                }
            }
            self.start_scan(ScanJob::Stop {
                journey: p.journey.id.clone(),
                version: p.version,
                keyed: false,
            })
            .await?;
            // A journey with an `enrollment_key` keeps a record per value: each profile's are
            // read too.
            if p.journey.enrollment_key.is_some() {
                self.start_scan(ScanJob::Stop {
                    journey: p.journey.id.clone(),
                    version: p.version,
                    keyed: true,
                })
                .await?;
            }
            started += 1;
            let version = marker.as_ref().map(|r| r.version + 1).unwrap_or(1);
            self.store
                .put(&Record::new(key, version, &p.version)?, Expect::Any)
                .await?;
            tracing::info!(journey = %p.journey.id, "journey stopped: its enrollments end now");
        }
        Ok(started)
    }

    /// Ends one enrollment of a stopped journey at once (see [`Runtime::sweep_stopped`]).
    /// Nothing happens when the journey is active again (the head says so, read from the
    /// store, not this engine's cache) or the enrollment ended or was replaced.
    async fn stop_enrollment(
        &self,
        user: &str,
        record: &str,
        enrollment_id: &str,
        cause: &str,
    ) -> Result<(), RunError> {
        // A stop names the enrollment's record: its journey, or `{journey}#{key}`.
        let journey = Enrollment::journey_of_record(record);
        let Some(r) = self.store.get(&enrollment_key(user, record)).await? else {
            return Ok(());
        };
        let loaded = Loaded::read(&r)?;
        let (loaded, done) = self.settle_for(loaded, cause, true).await?;
        let e = &loaded.enrollment;
        if done || &*e.id != enrollment_id || !e.is_active() {
            return Ok(());
        }
        let stopped = self
            .catalog
            .head(journey)
            .await?
            .is_some_and(|h| h.status == JourneyStatus::Stopped);
        if !stopped {
            return Ok(());
        }
        let Some(p) = self.catalog.version(journey, e.version).await? else {
            return Err(RunError::Poison(format!(
                "journey `{journey}` version {} does not exist",
                e.version
            )));
        };
        // Stopping reads nothing of the profile.
        let profile = Profile::new(user);
        let ctx = Ctx {
            journey: &p.journey,
            version: p.version,
            profile: &profile,
            now: self.now(),
            unsubscribe_url: None,
            topics: self.declared(&p),
            set_meanwhile: &[],
        };
        let Some(t) = engine::stop(&ctx, e) else {
            return Ok(());
        };
        let committed = self.commit(t, cause, Some(&loaded), true).await?;
        self.settle_for(committed, cause, false).await.map(|_| ())
    }

    /// The timer partitions of minutes `from..=to` that hold timers, when the store can list
    /// them in one read ([`Store::partitions_between`]); `None`: each is read.
    async fn timer_partitions(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Option<HashSet<Part>>, RunError> {
        let (low, high) = (timer_partition_prefix(from), timer_partition_prefix(to + 1));
        // The names compare as text: only minutes written with as many digits.
        if from < 0 || low.len() != high.len() {
            return Ok(None);
        }
        Ok(self
            .store
            .partitions_between(&low, &high)
            .await?
            .map(|parts| parts.into_iter().collect()))
    }

    /// Moves the timers due in `minute` to their queues, shard by shard, [`SWEEP_CHUNK`] at a
    /// time: each chunk is sent (ten to a request, the requests at once) and then deleted
    /// ([`DELETES_AT_ONCE`] at once). Past `until`, after a chunk, it stops: the minute is not
    /// finished, and the next run takes up its remaining timers (a minute whose timers all come
    /// due together, the end of the night's quiet hours, may take more than one run's time; sent
    /// and not yet deleted, a timer is sent again, which its message's handling recognises).
    /// Only the partitions of `holding` are read, when the store could list them.
    async fn sweep_minute(
        &self,
        minute: i64,
        shards: u32,
        until: Option<std::time::Instant>,
        holding: Option<&HashSet<Part>>,
    ) -> Result<Swept, RunError> {
        let now = self.now();
        let mut moved = 0;
        // Each shard's name ([`timer_partition`]) in one buffer: the sweep asks after every
        // shard of every minute, most of them empty, and makes no string for those.
        let mut name = timer_partition_prefix(minute);
        let prefix = name.len();
        let mut digits = [0; 20];
        for shard in 0..shards {
            name.truncate(prefix);
            name.push_str(crate::store::decimal(u64::from(shard), &mut digits));
            if holding.is_some_and(|h| !h.contains(name.as_str())) {
                continue;
            }
            let pk = Part::from(name.as_str());
            let timers = self.store.query(&pk, "").await?;
            for chunk in timers.chunks(SWEEP_CHUNK) {
                // Each queue's messages, with the timers they come from.
                let mut events = (Vec::new(), Vec::new());
                let mut steps = (Vec::new(), Vec::new());
                for r in chunk {
                    let m = match r.parse::<Message>() {
                        Ok(m) => m,
                        Err(e) => {
                            self.put_off(r, minute, shard, Trouble::Unreadable, &e)
                                .await?;
                            continue;
                        }
                    };
                    let due = m.due().unwrap_or(now);
                    let delay = secs_until(now, due).min(i64::from(MAX_DELAY_SECS));
                    let (to, from) = match m.queue() {
                        QueueName::Events => (&mut events.0, &mut events.1),
                        QueueName::Steps => (&mut steps.0, &mut steps.1),
                    };
                    to.push(Outbound {
                        message: m,
                        delay_secs: delay as u32,
                    });
                    from.push(r);
                }
                moved += events.0.len() + steps.0.len();
                let batches: Vec<(QueueName, &[Outbound], &[&Record])> =
                    [(QueueName::Events, &events), (QueueName::Steps, &steps)]
                        .into_iter()
                        .flat_map(|(q, (msgs, records))| {
                            msgs.chunks(10)
                                .zip(records.chunks(10))
                                .map(move |(c, r)| (q, c, r))
                        })
                        .collect();
                let sends = batches.iter().map(|(q, c, _)| self.queue.send(*q, c));
                for ((q, messages, records), sent) in batches.iter().zip(join_all(sends).await) {
                    match sent {
                        Ok(()) => {}
                        // Refused for what one of them holds: sent one by one, and a timer
                        // whose message the queue refuses alone is kept aside, not dropped,
                        // and holds up no other.
                        Err(QueueError::Rejected(_)) => {
                            for (m, r) in messages.iter().zip(records.iter()) {
                                match self.queue.send(*q, std::slice::from_ref(m)).await {
                                    Ok(()) => {}
                                    Err(QueueError::Rejected(why)) => {
                                        moved -= 1;
                                        self.put_off(r, minute, shard, Trouble::Refused, &why)
                                            .await?;
                                    }
                                    Err(e) => return Err(e.into()),
                                }
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                for some in chunk.chunks(DELETES_AT_ONCE) {
                    let deletes = some.iter().map(|r| self.store.delete(&r.key, Expect::Any));
                    for deleted in join_all(deletes).await {
                        deleted?;
                    }
                }
                if until.is_some_and(|u| std::time::Instant::now() >= u) {
                    return Ok(Swept {
                        moved,
                        finished: false,
                    });
                }
            }
        }
        Ok(Swept {
            moved,
            finished: true,
        })
    }

    /// Keeps a timer the sweep cannot move to its queue, rather than delete it with its
    /// minute's others (its enrollment would wait for ever) or stop the sweep at its minute
    /// (every other timer would wait). One this engine cannot read (a newer engine wrote it,
    /// during a rollout) is put off an hour, for the engine then running, up to
    /// [`TIMER_PUT_OFFS`] times (its record's version counts them); then, or at once for one
    /// whose message the queue refuses (sent again, refused again), it is kept under
    /// [`DEAD_TIMERS`] for an operator, with its body. Logged as an error each time.
    async fn put_off(
        &self,
        r: &Record,
        minute: i64,
        shard: u32,
        trouble: Trouble,
        e: &(dyn std::fmt::Display + Sync),
    ) -> Result<(), RunError> {
        // A timer is written at version 1: each put-off adds one.
        let put_offs = r.version.saturating_sub(1);
        if trouble == Trouble::Unreadable && put_offs < TIMER_PUT_OFFS {
            // Past every minute this tick sweeps, so that the next tick finds it.
            let later = (minute + 60).max(minute_of(self.now()) + 2);
            let kept = Record {
                key: Key::new(timer_partition(later, shard), r.key.sk.clone()),
                version: r.version + 1,
                body: r.body.clone(),
                expires: r.expires,
                pending: r.pending.clone(),
                parts_counted: 0,
                sealed: false,
            };
            self.note_shards().await?;
            self.store.put(&kept, Expect::Any).await?;
            tracing::error!(error = %e, timer = %r.key.sk, minute, to_minute = later, put_offs, "unreadable timer put off an hour, not dropped");
            return Ok(());
        }
        let dead = Record {
            key: Key::new(DEAD_TIMERS, r.key.sk.clone()),
            version: put_offs,
            body: r.body.clone(),
            expires: None,
            pending: None,
            parts_counted: 0,
            sealed: false,
        };
        self.store.put(&dead, Expect::Any).await?;
        tracing::error!(error = %e, timer = %r.key.sk, minute, put_offs, trouble = ?trouble, "timer the sweep cannot move kept under {DEAD_TIMERS}");
        Ok(())
    }

    /// Starts a run (a scan of the profiles) of each schedule-triggered journey whose cron
    /// fires at `minute`: in its zone, or in some user's for `timezone: user`. Returns the runs
    /// started. `now_minute` is the scheduler's current minute: a run `minute` missed (the
    /// scheduler was down, or `waymark dev` stopped) is started only if it is the latest the
    /// cron named by then, unless the schedule's `where` reads the date or the clock (each day
    /// is judged: a birthday on a day missed); and none before the journey was first published.
    async fn start_schedules(&self, minute: i64, now_minute: i64) -> Result<usize, RunError> {
        let at =
            Timestamp::from_second(minute * 60).map_err(|e| RunError::Poison(e.to_string()))?;
        let now =
            Timestamp::from_second(now_minute * 60).map_err(|e| RunError::Poison(e.to_string()))?;
        let journeys = self.catalog.active().await?;
        let mut started = 0;
        // The UTC offsets users are in at `at`, for `timezone: user` schedules, and their zones
        // (none: not known yet): read when one needs them (every zone's offset until the zones
        // in use are known).
        let mut offsets: Option<BTreeSet<i32>> = None;
        let mut zones: Option<Vec<jiff::tz::TimeZone>> = None;
        for p in journeys.iter() {
            let Some(TriggerKind::Schedule(s)) = p.journey.trigger.kind() else {
                continue;
            };
            if !p.journey.status.is_active() {
                continue;
            }
            // No run before the journey was published (a catch-up reaching back before it), as
            // far as its latest version tells (the user's view says the same: `scheduled`).
            if p.version == 1 && p.published_at > at {
                continue;
            }
            // Catching up: the runs a later one, due by now, makes stale are not started.
            let latest_only = minute < now_minute && !s.reads_the_clock();
            let stale = |tz: &jiff::tz::TimeZone| latest_only && s.cron.fires_again_by(at, now, tz);
            let fires = if s.timezone == "user" {
                // Most minutes are 09:00 where no user is: no scan of every profile for them.
                if offsets.is_none() {
                    let names = self.zones_in_use().await?;
                    offsets = Some(match &names {
                        Some(names) => {
                            crate::zones::offsets_of(names.iter().map(String::as_str), at)
                        }
                        None => crate::zones::every_offset(at),
                    });
                    zones = names.map(|names| {
                        names
                            .iter()
                            .filter_map(|n| jiff::tz::TimeZone::get(n).ok())
                            .collect()
                    });
                }
                // Users without a valid zone are in the journey's.
                let own_zone = p
                    .journey
                    .timezone
                    .as_deref()
                    .and_then(|n| jiff::tz::TimeZone::get(n).ok());
                let own = own_zone.as_ref().map(|tz| tz.to_offset(at).seconds());
                let somewhere = offsets.iter().flatten().chain(own.as_ref()).any(|o| {
                    let offset =
                        jiff::tz::Offset::from_seconds(*o).unwrap_or(jiff::tz::Offset::UTC);
                    s.cron.matches(offset.to_datetime(at))
                });
                // Catching up, with the zones known: only where this is some zone's latest
                // run (each user's is picked out as the run reads her: `scheduled_entries`).
                match (&zones, latest_only) {
                    (Some(zones), true) if somewhere => zones
                        .iter()
                        .chain(own_zone.as_ref())
                        .chain([&jiff::tz::TimeZone::UTC])
                        .any(|tz| s.cron.fires_at(at, tz) && !stale(tz)),
                    _ => somewhere,
                }
            } else {
                jiff::tz::TimeZone::get(&s.timezone)
                    .is_ok_and(|tz| s.cron.fires_at(at, &tz) && !stale(&tz))
            };
            if !fires {
                continue;
            }
            self.start_scan(ScanJob::Schedule {
                journey: p.journey.id.clone(),
                minute,
                // A user's own latest run is told as the run reads her.
                until: (latest_only && s.timezone == "user").then_some(now_minute),
                version: Some(p.version),
            })
            .await?;
            started += 1;
        }
        Ok(started)
    }

    /// The users among `profiles` that the schedule of `journey` enters at `minute`, as
    /// `Enter` messages (none when the journey is no longer an active schedule journey); with
    /// `until` (a run started late, catching up), only those whose own zone's cron names no
    /// later minute by then.
    async fn scheduled_entries(
        &self,
        journey: &str,
        minute: i64,
        until: Option<i64>,
        version: Option<u32>,
        records: &[Record],
    ) -> Result<Vec<Outbound>, RunError> {
        let at =
            Timestamp::from_second(minute * 60).map_err(|e| RunError::Poison(e.to_string()))?;
        let until = until
            .map(|u| Timestamp::from_second(u * 60))
            .transpose()
            .map_err(|e| RunError::Poison(e.to_string()))?;
        // An anonymous user merged into another enters as that user.
        let profiles: Vec<Arc<Profile>> = records
            .iter()
            .filter_map(|r| r.parse_shared::<Profile>().ok())
            .filter(|p| p.merged_into.is_none())
            // An erased user's mark is no one.
            .filter(|p| !p.is_erasure_mark())
            .collect();
        // Every run notes the zones it reads, run or not (see `zones_segment_read`).
        for profile in &profiles {
            self.note_zone(profile).await?;
        }
        // The version the run was started for (stored versions never change: any worker's
        // cache reads it), unless a later one this worker knows of closed or stopped it.
        let latest = self.catalog.latest(journey).await?;
        if latest
            .as_ref()
            .is_some_and(|l| !l.journey.status.is_active() && version.is_none_or(|v| l.version > v))
        {
            return Ok(Vec::new());
        }
        let p = match version {
            Some(v) => match self.catalog.version(journey, v).await? {
                Some(p) => p,
                None => {
                    return Err(RunError::Retry(format!(
                        "version {v} of journey {journey}, whose run this page is of, cannot be read yet"
                    )))
                }
            },
            None => match latest {
                Some(p) => p,
                None => return Ok(Vec::new()),
            },
        };
        let Some(TriggerKind::Schedule(s)) = p.journey.trigger.kind() else {
            return Ok(Vec::new());
        };
        if !p.journey.status.is_active() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for profile in profiles {
            if s.timezone == "user" {
                let tz = crate::template::zone_of(
                    profile.traits.get("timezone").and_then(Value::as_str),
                    p.journey.timezone.as_deref(),
                );
                if !s.cron.fires_at(at, &tz) {
                    continue;
                }
                // A later run of hers was due by the time this one started: that one enters
                // her (unless the `where` reads the date: each day is judged).
                let later = until.filter(|_| !s.reads_the_clock());
                if later.is_some_and(|by| s.cron.fires_again_by(at, by, &tz)) {
                    continue;
                }
            }
            // A user without a zone of her own is in the journey's, else the schedule's own.
            let zone = p.journey.default_zone();
            let scope = crate::condition::Scope {
                event: &Value::Null,
                trigger: &Value::Null,
                waited: &Value::Null,
                profile: &profile.scope(),
                now: at,
                zone,
            };
            if s.condition.as_ref().is_some_and(|c| !c.eval(&scope)) {
                continue;
            }
            out.push(Outbound {
                message: Message::Enter {
                    user_id: profile.user_id.clone(),
                    journey: p.journey.id.clone(),
                    cause: format!("schedule:{minute}"),
                    at,
                    version: Some(p.version),
                },
                delay_secs: 0,
            });
        }
        Ok(out)
    }

    /// Suppresses SMS for every known user whose number is on the provider's opt-out list (people
    /// who replied STOP), a page of the list at a time. A pass over the list starts when none is
    /// under way and the last one started an hour ago or more; a pass under way goes on from the
    /// page it reached, reading pages until the list ends or `budget` is spent (one page at
    /// least), so a list of any length is read in full over as many runs (scheduler minutes) as
    /// it takes, each within the function's timeout.
    pub async fn sync_sms_opt_outs(
        &self,
        budget: Option<std::time::Duration>,
    ) -> Result<OptOutSync, RunError> {
        let key = Key::new(OPT_OUTS.0, OPT_OUTS.1);
        let stored = self.store.get(&key).await?;
        let cursor: OptOutCursor = match &stored {
            Some(r) => r.parse()?,
            None => OptOutCursor::default(),
        };
        let now = minute_of(self.now());
        let (mut token, pass) = match (cursor.next, cursor.started) {
            (Some(t), started) => (Some(t), started.unwrap_or(now)),
            (None, Some(started)) if now - started < 60 => return Ok(OptOutSync::default()),
            (None, _) => (None, now),
        };
        let began = std::time::Instant::now();
        let mut sync = OptOutSync::default();
        let mut failed = None;
        let mut reset = false;
        loop {
            let page = match self.sender.opted_out_page(token.as_deref()).await {
                Ok(page) => page,
                Err(SendError::Permanent(m) | SendError::PushRefused { reason: m, .. })
                    if token.is_some() =>
                {
                    // A page token the provider no longer takes: the next pass starts over.
                    tracing::warn!(error = %m, "SMS opt-out list: page refused, the pass starts over");
                    token = None;
                    reset = true;
                    break;
                }
                Err(
                    SendError::Retryable(m)
                    | SendError::PushRetryable { reason: m, .. }
                    | SendError::Permanent(m)
                    | SendError::PushRefused { reason: m, .. },
                ) => {
                    failed = Some(RunError::Retry(m));
                    break;
                }
            };
            match self.suppress_opted_out(&page.numbers).await {
                Ok(n) => sync.newly += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            sync.pages += 1;
            token = page.next;
            if token.is_none() {
                sync.done = true;
                break;
            }
            if budget.is_some_and(|b| began.elapsed() >= b) {
                break;
            }
        }
        // The pages read are kept, even by a run that failed after them; one that read none
        // leaves the cursor as it was.
        if sync.pages > 0 || reset {
            let (version, expect) = Expect::replacing(stored.as_ref());
            let cursor = OptOutCursor {
                next: token,
                started: Some(pass),
            };
            match self
                .store
                .put(&Record::new(key, version, &cursor)?, expect)
                .await
            {
                // Another run moved it meanwhile: it goes on from there.
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(failed.unwrap_or(e.into())),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(sync),
        }
    }

    /// Notes that `user` was given `phone` (see [`PhoneHolders`]): added to the number's
    /// record unless there already, the oldest past [`MAX_PHONE_HOLDERS`] dropped; a
    /// conditional write, so that two users given the number at once are both kept.
    async fn note_phone_holder(&self, phone: &str, user: &str) -> Result<(), RunError> {
        let key = phone_key(phone);
        for _ in 0..8 {
            let stored = self.store.get(&key).await?;
            let mut users = match &stored {
                Some(r) => r.parse::<PhoneHolders>()?.into_users(),
                None => Vec::new(),
            };
            if users.iter().any(|u| u == user) {
                return Ok(());
            }
            users.push(user.to_string());
            let past = users.len().saturating_sub(MAX_PHONE_HOLDERS);
            users.drain(..past);
            let (version, expect) = Expect::replacing(stored.as_ref());
            let record = Record::of(key.clone(), version, PhoneHolders::Many(users));
            match self.store.put(&record, expect).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::Conflict("phone number's record busy".into()))
    }

    /// Suppresses SMS for the known users of `numbers` (opted out at the provider) whose phone
    /// it still is (each user a number's record keeps); returns how many were not suppressed
    /// already.
    async fn suppress_opted_out(&self, numbers: &[String]) -> Result<usize, RunError> {
        let mut newly = 0;
        // One read for the page's numbers (BatchGetItem); most are nobody's here.
        let keys: Vec<Key> = numbers.iter().map(|n| phone_key(n)).collect();
        let mut owners: Vec<(Key, String)> = Vec::new();
        for r in self.store.get_many(&keys).await? {
            for user in r.parse::<PhoneHolders>()?.into_users() {
                owners.push((r.key.clone(), user));
            }
        }
        // And one for the profiles of the numbers someone has.
        let profile_keys: Vec<Key> = owners.iter().map(|(_, u)| profile_key(u)).collect();
        let mut profiles: HashMap<Key, Arc<Profile>> = HashMap::with_capacity(owners.len());
        for r in self.store.get_many(&profile_keys).await? {
            let p: Arc<Profile> = r.parse_shared()?;
            profiles.insert(r.key, p);
        }
        for ((number, user), key) in owners.into_iter().zip(&profile_keys) {
            // A number whose owner has no profile is nobody's to suppress.
            let Some(profile) = profiles.get(key) else {
                continue;
            };
            let current = profile.traits.get("phone").and_then(Value::as_str);
            if current.is_none_or(|phone| phone_key(phone) != number)
                || profile.suppressed.contains_key(&Channel::Sms)
            {
                continue;
            }
            self.suppress(&user, Channel::Sms, "sms opt-out (replied STOP)")
                .await?;
            newly += 1;
        }
        Ok(newly)
    }

    /// Marks a channel suppressed for a user (bounce, complaint, SMS opt-out, disabled endpoint).
    pub async fn suppress(
        &self,
        user: &str,
        channel: Channel,
        reason: &str,
    ) -> Result<(), RunError> {
        self.suppress_address(user, channel, reason, &[])
            .await
            .map(|_| ())
    }

    /// Marks a channel suppressed for a user for a notice about `addresses` (a bounce's or a
    /// complaint's recipients): only while one of them is still her address on that channel
    /// (an email's compared whole and without regard to case), since a late notice about the
    /// address she had before must not stop the one she has now. A notice naming no address
    /// (`addresses` empty) suppresses whatever her address. Returns whether it suppressed.
    pub async fn suppress_address(
        &self,
        user: &str,
        channel: Channel,
        reason: &str,
        addresses: &[String],
    ) -> Result<bool, RunError> {
        // A login that merges the visitor between the read and the write (it took its copy of
        // her profile without the suppression): read again, following it.
        for _ in 0..MERGED_RETRIES {
            if let Some(done) = self
                .suppress_address_once(user, channel, reason, addresses)
                .await?
            {
                return Ok(done);
            }
        }
        Err(merged_busy(user))
    }

    /// [`Runtime::suppress_address`], once: `None` when a login merged the profile it read
    /// into a user before it could write (nothing written).
    async fn suppress_address_once(
        &self,
        user: &str,
        channel: Channel,
        reason: &str,
        addresses: &[String],
    ) -> Result<Option<bool>, RunError> {
        // A bounce or complaint is about an address: it reaches the user a merged visitor
        // turned out to be only when that user has the same address (the visitor's typo of
        // it must not stop the user's own); an email's whatever its case, as a notice's address
        // is compared below.
        let merged = self.merged_user(user).await?;
        let trait_name = match channel {
            Channel::Email => Some("email"),
            Channel::Sms => Some("phone"),
            _ => None,
        };
        let same_address = trait_name.is_some_and(|t| {
            match (merged.given.traits.get(t), merged.now.traits.get(t)) {
                (Some(Value::String(given)), Some(Value::String(now)))
                    if channel == Channel::Email =>
                {
                    given.eq_ignore_ascii_case(now)
                }
                (given, now) => given == now,
            }
        });
        let (user, target) = if same_address {
            (merged.id.as_str(), &merged.now)
        } else {
            (user, &merged.given)
        };
        let about = |p: &Profile| {
            addresses.is_empty()
                || trait_name
                    .and_then(|t| p.traits.get(t))
                    .and_then(Value::as_str)
                    .is_some_and(|current| {
                        addresses.iter().any(|a| match channel {
                            Channel::Email => a.eq_ignore_ascii_case(current),
                            _ => a == current,
                        })
                    })
        };
        // Not hers (any more): nothing written, not even a profile for a user unknown here.
        if !about(target) {
            return Ok(Some(false));
        }
        let written = self
            .update_profile(user, |p| {
                // An erased user's: about an address no longer known, kept for no one
                // (written, the mark would become a profile that never expires). And an
                // identify may have changed her address since the read above.
                if p.is_erasure_mark() || !about(p) || merged_since(target, p) {
                    return;
                }
                p.suppress(channel, reason);
            })
            .await?;
        if merged_since(target, &written) {
            return Ok(None);
        }
        Ok(Some(!written.is_erasure_mark() && about(&written)))
    }

    /// The user `user` is now: itself, or, for an anonymous visitor merged into a user at a
    /// login, that user (followed through a few merges, should a user be merged again), with
    /// the two profiles read on the way.
    async fn merged_user(&self, user: &str) -> Result<Merged, RunError> {
        let (given, version) = self.load_profile(user).await?;
        let mut merged = Merged {
            id: user.to_string(),
            now: given.clone(),
            given,
            known: version.is_some(),
        };
        for _ in 0..4 {
            match merged.now.merged_into.clone() {
                Some(into) if into != merged.id => {
                    let (now, version) = self.load_profile(&into).await?;
                    merged.now = now;
                    merged.known = version.is_some();
                    merged.id = into;
                }
                _ => break,
            }
        }
        Ok(merged)
    }

    /// Turns a channel's subscription off (an unsubscribe link was followed).
    pub async fn unsubscribe(&self, user: &str, channel: Channel) -> Result<(), RunError> {
        let now = self.now();
        self.update_merged_user(user, |p| {
            // A link in a message sent before her erasure: she is no one now, nothing to keep
            // (written, the mark would become a profile that never expires).
            if p.is_erasure_mark() {
                return;
            }
            let subs = p
                .traits
                .entry("subscriptions".to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = subs {
                if m.insert(channel.as_str().to_string(), Value::Bool(false))
                    != Some(Value::Bool(false))
                {
                    p.subscription_changed(channel.as_str(), now);
                }
            }
            p.subscription_stated(channel.as_str(), now);
            p.trait_times.insert("subscriptions".into(), now);
        })
        .await
    }

    /// Turns a subscription topic off (a topic journey's unsubscribe link was followed): her
    /// choices for the channels and the other topics are left as they are.
    pub async fn unsubscribe_topic(&self, user: &str, topic: &str) -> Result<(), RunError> {
        let now = self.now();
        // As for a channel: nothing kept for an erasure's mark.
        self.update_merged_user(user, |p| {
            if !p.is_erasure_mark() {
                p.unsubscribe_topic(topic, now);
            }
        })
        .await
    }

    /// Changes the profile of the user `user` is now, by `f`: a link in a message the visitor
    /// got before logging in reaches the user she turned out to be ([`Runtime::merged_user`];
    /// the anonymous profile is no one's any more), also when the login merges her between
    /// the read and the write (its merge took its copy of her profile without the change:
    /// read again, following it). A user unknown here (a link in a message sent before her
    /// erasure, followed after her mark expired) is no one: nothing is kept (written, she would
    /// be a profile again, and a new one would not start subscribed).
    async fn update_merged_user(
        &self,
        user: &str,
        f: impl Fn(&mut Profile),
    ) -> Result<(), RunError> {
        for _ in 0..MERGED_RETRIES {
            let merged = self.merged_user(user).await?;
            if !merged.known {
                tracing::info!(user = %merged.id, "an unsubscribe of a user unknown here is not kept");
                return Ok(());
            }
            let written = self
                .update_profile(&merged.id, |p| {
                    if !merged_since(&merged.now, p) {
                        f(p);
                    }
                })
                .await?;
            if !merged_since(&merged.now, &written) {
                return Ok(());
            }
        }
        Err(merged_busy(user))
    }

    /// The profile, enrollments and timeline of a user.
    pub async fn user(&self, user: &str) -> Result<UserView, RunError> {
        let mut view = UserView {
            at: self.now(),
            profile: None,
            enrollments: Vec::new(),
            timeline: Vec::new(),
            schedules: Vec::new(),
            triggers: Vec::new(),
            enrollment_keys: BTreeMap::new(),
        };
        self.read_user_into(user, &mut view).await?;
        // What happened to the anonymous users it turned out to be, before they were merged.
        let anonymous: Vec<String> = view
            .profile
            .as_ref()
            .map(|p| p.anonymous_ids.clone())
            .unwrap_or_default();
        let mut visitors: Vec<Enrollment> = Vec::new();
        for a in anonymous {
            let mut theirs = UserView {
                at: view.at,
                profile: None,
                enrollments: Vec::new(),
                timeline: Vec::new(),
                schedules: Vec::new(),
                triggers: Vec::new(),
                enrollment_keys: BTreeMap::new(),
            };
            let anon = join(&[crate::event::ANONYMOUS_PREFIX, &a]);
            self.read_user_into(&anon, &mut theirs).await?;
            if theirs
                .profile
                .as_ref()
                .is_none_or(|p| p.merged_into.as_deref() != Some(user))
            {
                // Not shown as hers, but the entry rules count every id her profile lists
                // (`visitor_refusal`): so do the schedules' answers.
                visitors.extend(theirs.enrollments);
                continue;
            }
            // An enrollment that went on as the user's is shown once, as it is now; the
            // merge it went through once (both sides record it, each for its own timeline).
            let ours: Vec<Arc<str>> = view.enrollments.iter().map(|e| e.id.clone()).collect();
            let went_on = |e: &Entry| matches!(e.what, What::Merged { ended: false, .. });
            let told: Vec<Arc<str>> = view
                .timeline
                .iter()
                .filter(|e| went_on(e))
                .map(|e| e.enrollment.clone())
                .collect();
            view.enrollments.extend(
                theirs
                    .enrollments
                    .into_iter()
                    .filter(|e| !ours.contains(&e.id)),
            );
            view.timeline.extend(
                theirs
                    .timeline
                    .into_iter()
                    .filter(|e| !(went_on(e) && told.contains(&e.enrollment))),
            );
        }
        view.timeline.sort_by_key(|e| e.at);
        // No read of its own but the published journeys (cached): her profile and
        // enrollments are those just read. None for a user unknown (the API's 404).
        if view.profile.is_none() && view.enrollments.is_empty() {
            return Ok(view);
        }
        visitors.extend(view.enrollments.iter().cloned());
        let journeys = self.catalog.active().await?;
        // A journey keeps its `enrollment_key` for good: the latest version's names the
        // values of all of hers.
        view.enrollment_keys = journeys
            .iter()
            .filter(|p| {
                view.enrollments
                    .iter()
                    .any(|e| e.key.is_some() && *e.journey == *p.journey.id)
            })
            .filter_map(|p| {
                let key = p.journey.enrollment_key.as_ref()?;
                Some((p.journey.id.clone(), key.source().to_string()))
            })
            .collect();
        // No read of their own: her profile's history and checks, and the enrollments.
        view.triggers = crate::progress::answers(
            &journeys,
            user,
            view.profile.as_ref(),
            &visitors,
            self.now(),
        );
        let schedules = journeys
            .iter()
            .any(|p| matches!(p.journey.trigger.kind(), Some(TriggerKind::Schedule(_))));
        if !schedules {
            return Ok(view);
        }
        // The scheduler's cursor (one read, only with a schedule journey to judge): a run it
        // has not started yet is not over.
        let unstarted = match self.store.get(&Key::new(CURSOR.0, CURSOR.1)).await? {
            Some(r) => Timestamp::from_second(r.parse::<i64>()?.saturating_mul(60)).ok(),
            None => None,
        };
        view.schedules = crate::scheduled::answers(
            &journeys,
            user,
            view.profile.as_ref(),
            &visitors,
            self.now(),
            unstarted,
        );
        Ok(view)
    }

    /// Adds one user's partition (profile, enrollments, timeline) to `view`.
    async fn read_user_into(&self, user: &str, view: &mut UserView) -> Result<(), RunError> {
        for r in self.store.query(&user_partition(user), "").await? {
            match r.key.sk.split('#').next() {
                Some("P") => {
                    let mut p: Profile = r.parse()?;
                    // An erasure's mark: nothing is known of her.
                    if p.is_erasure_mark() {
                        continue;
                    }
                    // Its notes of trait changes are bookkeeping for retries, not her data
                    // (one may hold an address the app removed).
                    p.trait_changes = Default::default();
                    // Nor is what an erasure of her before left for its next request: the
                    // handles of devices of before, kept until they are deleted.
                    p.erasure_left = Default::default();
                    view.profile = Some(p);
                }
                Some("E") => {
                    let mut e: Enrollment = r.parse()?;
                    e.outbox.clear();
                    e.outbox_timeline.clear();
                    e.carried.clear();
                    view.enrollments.push(e);
                }
                Some("T") => view.timeline.extend(r.parse::<Vec<Entry>>()?),
                // Refused entries, kept with the event (its dedup marker) or the message.
                Some("D" | "R") => view
                    .timeline
                    .extend(r.parse::<Option<Vec<Entry>>>()?.unwrap_or_default()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The in-app messages of a user, newest first (dismissed, withdrawn and expired ones left
    /// out).
    pub async fn inbox(&self, user: &str) -> Result<Vec<InboxItem>, RunError> {
        let mut items: Vec<InboxItem> = Vec::new();
        let now = self.now();
        for u in &self.inbox_users(user).await? {
            for r in self.store.query(&user_partition(u), "I#").await? {
                let item: InboxItem = r.parse()?;
                // Expired: DynamoDB's TTL deletes it within a day or two; it is gone already.
                if item.listed(now) {
                    items.push(item);
                }
            }
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.at));
        Ok(items)
    }

    /// Marks the in-app message `id` of a user read or dismissed, as her app reports; the
    /// message as it is now, or `None` when she has no such message (or it expired). Marking
    /// again changes nothing (the first time is kept).
    pub async fn mark_inbox(
        &self,
        user: &str,
        id: &str,
        mark: InboxMark,
    ) -> Result<Option<InboxItem>, RunError> {
        // No message has an id past the longest sort key (DynamoDB would refuse the read).
        if "I#".len() + id.len() > crate::store::MAX_SORT_KEY_BYTES {
            return Ok(None);
        }
        let now = self.now();
        for u in &self.inbox_users(user).await? {
            let key = Key::new(user_partition(u), Part::join(&["I#", id]));
            for _ in 0..MARK_ATTEMPTS {
                let Some(r) = self.store.get(&key).await? else {
                    break;
                };
                let mut item: InboxItem = r.parse()?;
                if item.expires_at.is_some_and(|e| e <= now) {
                    return Ok(None);
                }
                // Withdrawn before it reached the inbox: no app listed it, so none has it.
                if item.placeholder {
                    return Ok(None);
                }
                // Dismissed or withdrawn: gone from the inbox, nothing more to mark (an app
                // that listed it before the exit learns why from `withdrawn_at`).
                if item.dismissed_at.is_some() || item.withdrawn_at.is_some() {
                    return Ok(Some(item));
                }
                let field = match mark {
                    InboxMark::Read => &mut item.read_at,
                    InboxMark::Dismissed => &mut item.dismissed_at,
                };
                if field.is_some() {
                    return Ok(Some(item));
                }
                *field = Some(now);
                // Kept as long as it was to be (none is kept past 400 days).
                let record = Record::new(key.clone(), r.version + 1, &item)?
                    .expiring(item.expires_at.unwrap_or(item.at + KEEP_FOR));
                match self.store.put(&record, Expect::Version(r.version)).await {
                    Ok(()) => return Ok(Some(item)),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if self.store.get(&key).await?.is_some() {
                return Err(RunError::Retry(format!(
                    "inbox message {id} kept changing while it was marked"
                )));
            }
        }
        Ok(None)
    }

    /// The users whose in-app messages are `user`'s: she, and the anonymous users she turned
    /// out to be.
    async fn inbox_users(&self, user: &str) -> Result<Vec<String>, RunError> {
        let mut users = vec![user.to_string()];
        // In-app messages sent to the anonymous users it turned out to be.
        if let Some(r) = self.store.get(&profile_key(user)).await? {
            let p: Arc<Profile> = r.parse_shared()?;
            // Read at once (DynamoDB: one BatchGetItem a hundred), not one after another: an
            // app that starts a new anonymous id at each logout gives her many.
            let keys: Vec<Key> = p
                .anonymous_ids
                .iter()
                .map(|a| profile_key(&join(&[crate::event::ANONYMOUS_PREFIX, a])))
                .collect();
            for r in self.store.get_many(&keys).await? {
                let anon = r.parse_shared::<Profile>()?;
                // Seen with this user, but merged into someone else before: not hers.
                if anon.merged_into.as_deref() == Some(user) {
                    users.push(anon.user_id.clone());
                }
            }
        }
        Ok(users)
    }
}

/// How many times a change of the user a visitor is now ([`Runtime::merged_user`]) is read
/// again when a login merged the profile it read before it could write: a profile is merged
/// once, so the second read follows the merge; a third covers the user merged in turn.
const MERGED_RETRIES: usize = 3;

/// Whether `p`, the profile as a write finds it, was merged into a user since `read` was read
/// (a login between the read and the write: its merge took its copy of `read` already, and a
/// change written on `p` would be read by no one).
fn merged_since(read: &Profile, p: &Profile) -> bool {
    p.merged_into.is_some() && p.merged_into != read.merged_into
}

/// [`MERGED_RETRIES`] merges of `user`'s profile in a row, each between a read and a write.
fn merged_busy(user: &str) -> RunError {
    RunError::Conflict(format!(
        "the profile of {user} was merged again and again while it was being changed"
    ))
}

/// A user as [`Runtime::merged_user`] finds her: the id she has now, the profile asked about
/// (`given`) and hers (`now`; the same when no merge came between).
struct Merged {
    id: String,
    given: Arc<Profile>,
    now: Arc<Profile>,
    /// Whether `now` was read from the store (a user unknown here has none).
    known: bool,
}

/// The sends that hold a cap's places, for the reason a send was capped: `journey/step at
/// time`, oldest first; a keyed journey's (`enrollment_key`) with the value of the enrollment
/// that sent it, `flights/booked (key B1) at time`, so that one value's send is not read as
/// another's. `user`: the user whose cap it is.
fn taken_by(places: &[CapPlace], user: &str) -> String {
    let mut taken: Vec<(Timestamp, String)> = places
        .iter()
        .map(|p| {
            // The ledger key: `{journey}:{user}:{n}#{step}#{seq}`, or for a keyed journey
            // `{journey}:{user}:{key}:{n}#{step}#{seq}` (the key escaped: no `:` in it).
            let mut parts = p.send.rsplitn(3, '#');
            let (_seq, step, enrollment) = (parts.next(), parts.next(), parts.next());
            let journey = enrollment.and_then(|e| e.split(':').next());
            let key = enrollment.zip(journey).and_then(|(e, j)| {
                let rest = e.strip_prefix(j)?.strip_prefix(':')?;
                let rest = rest.strip_prefix(user)?.strip_prefix(':')?;
                let (key, _n) = rest.rsplit_once(':')?;
                Some(
                    key.replace("%3A", ":")
                        .replace("%23", "#")
                        .replace("%25", "%"),
                )
            });
            let what = match (journey, step, key) {
                (Some(j), Some(s), Some(k)) => format!("{j}/{s} (key {k})"),
                (Some(j), Some(s), None) => format!("{j}/{s}"),
                // Kept before places named their sends.
                _ => "a send".to_string(),
            };
            (p.at, what)
        })
        .collect();
    taken.sort();
    let mut shown: Vec<String> = taken
        .iter()
        .take(CAP_TAKERS_SHOWN)
        .map(|(at, what)| format!("{what} at {at}"))
        .collect();
    if taken.len() > CAP_TAKERS_SHOWN {
        shown.push(format!("and {} more", taken.len() - CAP_TAKERS_SHOWN));
    }
    shown.join(", ")
}

/// How many of the sends holding a cap a capped send's reason names (the oldest, then how
/// many more).
const CAP_TAKERS_SHOWN: usize = 3;

/// Which earlier sends a cap of `per` counts at `now`: a window of whole days is the user's
/// calendar days in `zone`, today and the `N - 1` before (`1d`: since local midnight), so a
/// daily message is never capped by yesterday's, whatever second of the minute each went out
/// and across a change of the clocks; other windows are exact time, ending at `now`.
struct CapWindow {
    since: Timestamp,
    /// Whether a send at `since` itself counts (a day's first instant does; the instant a
    /// rolling window has just left does not).
    inclusive: bool,
}

impl CapWindow {
    fn ending(now: Timestamp, per: Duration, zone: Option<&str>) -> Self {
        let rolling = CapWindow {
            since: now - per.to_jiff(),
            inclusive: false,
        };
        let secs = per.as_secs();
        if !secs.is_multiple_of(86_400) || secs == 0 {
            return rolling;
        }
        let tz = crate::template::zone_of(zone, None);
        let days_back = (secs / 86_400 - 1) as i64;
        now.to_zoned_datetime(tz.clone())
            .date()
            .checked_sub(jiff::Span::new().days(days_back))
            .ok()
            .and_then(|d| d.to_zoned_datetime(tz).ok())
            .map(|z| CapWindow {
                since: z.timestamp(),
                inclusive: true,
            })
            .unwrap_or(rolling)
    }

    fn holds(&self, at: Timestamp) -> bool {
        at > self.since || (self.inclusive && at == self.since)
    }

    /// Whether a send at `at` may still count at `now` or later in the window of `per` of
    /// some zone: a rolling window reaches back `per`; a window of days reaches back to a
    /// local midnight, less than a day before `now` plus `per` in any zone, and the hours
    /// its days the clocks went back on were longer: it is given a day and three hours more
    /// than `per`. A cap record keeps these places whatever the zone of the send that writes it,
    /// so that one in a zone behind (her zone changed, or another journey's default zone for
    /// a user with none) still counts the sends of its day.
    fn may_count(at: Timestamp, now: Timestamp, per: Duration) -> bool {
        let secs = per.as_secs();
        let reach = if secs.is_multiple_of(86_400) && secs != 0 {
            per.to_jiff() + SignedDuration::from_hours(27)
        } else {
            per.to_jiff()
        };
        at > now - reach
    }

    /// When a send at `at` leaves the window of [`CapWindow::ending`]: `per` after it for
    /// exact time, the local midnight `per`'s days after its day for whole days.
    fn leaves_at(at: Timestamp, per: Duration, zone: Option<&str>) -> Option<Timestamp> {
        let secs = per.as_secs();
        if !secs.is_multiple_of(86_400) || secs == 0 {
            return at.checked_add(per.to_jiff()).ok();
        }
        let tz = crate::template::zone_of(zone, None);
        at.to_zoned_datetime(tz.clone())
            .date()
            .checked_add(jiff::Span::new().days((secs / 86_400) as i64))
            .ok()?
            .to_zoned_datetime(tz)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// `next`, what ended or moved on an enrollment, after `first`, the conversion it was given
/// just before (on the same enrollment): one transition, the conversion's entries first.
fn followed_by(mut first: Transition, next: Transition) -> Transition {
    first.enrollment = next.enrollment;
    first.effects.extend(next.effects);
    first.timeline.extend(next.timeline);
    first
}

/// A trigger that did not enter: its timeline fact, and, refused by `reentry: after`, when
/// the entry in the way lets her in.
struct Refused {
    entry: Entry,
    again: Option<Timestamp>,
}

impl Refused {
    /// A refusal that says nothing of when she may enter.
    fn of(entry: Entry) -> Self {
        Refused { entry, again: None }
    }
}

/// An exit event of `j` that `profile` did at or after `enrollment`'s trigger (of an
/// enrollment it is being given; from when it hears her, [`Enrollment::hears_from`]; for an
/// exit with a `where`, one that met it, as `Profile::marks` keeps), as an event to apply to
/// that enrollment: its exit came first.
fn late_exit(
    j: &Journey,
    profile: &Profile,
    enrollment: &Enrollment,
    cause: &str,
    now: Timestamp,
) -> Option<Event> {
    let trigger = &enrollment.trigger;
    let from = enrollment.hears_from();
    // (Not a trait change: an entry finds those in the profile's notes, `engine::late_changes`.)
    let (name, exit_at) = j.exit_when.iter().find_map(|m| {
        let Some(Listened::Event(name)) = m.listened() else {
            return None;
        };
        match m.condition {
            None => profile.seen_after(name, from, &trigger.message_id, name != trigger.event),
            // Its `where` was met when it came (`Profile::marks`).
            Some(_) => profile.marked_after(j, MarkKind::Exit, name, from, name != trigger.event),
        }
        .map(|t| (name, t))
    })?;
    Some(found_event(
        profile,
        name,
        Enrollment::late_exit_id_of(cause),
        exit_at,
        now,
    ))
}

/// An event the user's profile shows she did at `at` (its history or its marks), handed to
/// the engine under a cause of its own: it carries no properties (an empty object, as the
/// engine's own history finds one: a late reply is `waited` as that one is), and happened when
/// it happened, whatever this worker's clock says.
fn found_event(
    profile: &Profile,
    name: &str,
    message_id: String,
    at: Timestamp,
    now: Timestamp,
) -> Event {
    Event {
        kind: Kind::Track,
        message_id,
        user_id: profile.user_id.clone(),
        anonymous_id: None,
        event: Some(name.to_string()),
        properties: Arc::new(Value::Object(serde_json::Map::new())),
        traits: Default::default(),
        context: Default::default(),
        timestamp: at,
        received_at: now,
        refused: Vec::new(),
    }
}

/// Why an anonymous visitor's active enrollment `theirs` of `j` ends when the visitor turns out
/// to be `into` rather than go on as hers, if it does: she is in the journey (`hers` is
/// active), or her own entry's rule forbids this one too (she was welcomed already,
/// `reentry: never`).
fn ends_at_merge(
    j: &Journey,
    hers: Option<&Enrollment>,
    into: &Profile,
    theirs: &Enrollment,
) -> Option<String> {
    let hers = hers?;
    let into_id = &into.user_id;
    if hers.is_active() {
        return Some(format!("{into_id} is in this journey already"));
    }
    engine::reentry_refusal(j, hers, theirs.trigger.at, into)
        .map(|why| format!("{into_id} may not be in this journey again: {why}"))
}

/// The trigger event a `trait_changed` journey's enrollment keeps, and its refusals name: the
/// identify that changed the trait.
const TRAIT_CHANGE: &str = "identify";

/// A refused trigger's detail when its `where` was false: the condition, and what the paths it
/// reads held (`values`, as [`crate::condition::Condition::values`] shows them).
fn where_was_false(source: &str, values: &str) -> String {
    match values {
        "" => format!("`where: {source}` was false at this event"),
        values => format!("`where: {source}` was false at this event ({values})"),
    }
}

/// The event a moved enrollment's `wait_for` waits for, when its user did it since the wait
/// began (and before the move, so no delivery of it reached this enrollment): a late reply, as
/// the history keeps it (no properties: a `wait_for` with a `where` is not met this way).
fn late_reply(
    j: &Journey,
    profile: &Profile,
    e: &Enrollment,
    cause: &str,
    now: Timestamp,
) -> Option<Event> {
    let waiting = e.waiting_for.as_deref()?;
    let w = j.step(&e.step)?.wait_for.as_ref()?;
    if w.events_label() != waiting {
        return None;
    }
    let pending = e.pending?;
    let began = e.wait_began(w.timeout.to_jiff())?;
    // Not the message that made the move (a login that is itself the event waited for): that
    // event reaches the moved enrollment as it is applied to her, once.
    let except = [
        e.trigger.message_id.as_str(),
        Enrollment::merging_message(cause),
    ];
    // Nor an event the wait was led to by, or that met a wait before it (`wait_heard`).
    let except: Vec<&str> = except
        .into_iter()
        .chain(e.wait_heard.iter().map(String::as_str))
        .collect();
    // The first of its events with no `where` (the file's first at the same instant).
    let (at, name) = w
        .ways()
        .filter(|way| way.condition.is_none())
        .filter_map(|way| {
            profile
                .first_after_but(way.event, began, &except, true)
                .map(|at| (at, way.event))
        })
        .min_by_key(|(at, _)| *at)?;
    (at <= now && at <= pending.at)
        .then(|| found_event(profile, name, Enrollment::late_reply_id_of(cause), at, now))
}

/// Whole seconds from `now` until `at` for a queue's delay, rounded up (0 when past): a
/// message must not come before its time (a wake-up at the end of quiet hours a fraction of a
/// second early would send inside them), while a fraction of a second late is no one's loss.
fn secs_until(now: Timestamp, at: Timestamp) -> i64 {
    let d = at - now;
    let whole = d.as_secs();
    if d.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole.max(0)
    }
}

/// The delay of one hop towards a time `delay` seconds away on a queue whose longest delay is
/// `longest`: all of it when it fits; else a hop that leaves at least 2 s for the next, since a
/// message within a second of its time is handled as due (`handle_once`), which would take
/// one a second early.
fn hop_secs(delay: i64, longest: u32) -> u32 {
    match u32::try_from(delay) {
        Ok(d) if d <= longest => d,
        Ok(d) => longest.min(d - 2),
        Err(_) if delay < 0 => 0,
        Err(_) => longest,
    }
}

/// What merging an anonymous visitor into a user gave: her profile, and the visitor's traits
/// not taken (past the profile's bounds).
struct MergedVisitor {
    profile: Arc<Profile>,
    not_taken: Vec<String>,
    /// The identify's changes of watched traits as the merge left her profile
    /// ([`Profile::rebase_changes`]); `None` when it merged nothing.
    changes: Option<Vec<(String, crate::profile::TraitChange)>>,
}

/// How many of the traits an identify or a merge brought past the profile's bounds its
/// timeline fact names (the rest counted in `more`).
const NOT_KEPT_NAMED: usize = 20;

fn log_refusals(user: &str, refusals: &[Entry]) {
    for r in refusals {
        tracing::info!(user, journey = %r.journey, "{}", describe(&r.what));
    }
}

/// Why a conversion is credited to no message, in [`describe`]: the enrollment sent none at or
/// before the goal event's time.
const CREDITED_TO_NONE: &str = "credited to no message: none went out before it";

/// A one-line description of a timeline fact, for logs (ids and reasons only: no addresses).
pub fn describe(w: &What) -> String {
    match w {
        What::Entered {
            version, trigger, ..
        } => format!("entered v{version} on {trigger}"),
        What::Step => "step".into(),
        What::Waiting { until, why } => format!("waiting until {until} ({why})"),
        What::Woke { how } => format!("woke ({how})"),
        What::Branched { on, to, held } => match held {
            Some(held) => format!("branched to {to} on {on} ({held})"),
            None => format!("branched to {to} on {on}"),
        },
        What::Split { path, .. } => format!("split to {path}"),
        What::Sent {
            channel,
            locale: None,
            ..
        } => format!("sent {channel}"),
        What::Sent {
            channel,
            locale: Some(l),
            ..
        } => format!("sent {channel} (in {l})"),
        What::Skipped {
            channel, reason, ..
        } => format!("skipped {channel}: {reason}"),
        What::FellBack {
            from, to, reason, ..
        } => format!("fell back from {from} to {to}: {reason}"),
        What::Updated { set, unset, failed } => {
            // What changed, then what was left as it was and why.
            let mut parts = Vec::new();
            if !set.is_empty() {
                parts.push(format!("set {}", set.join(", ")));
            }
            if !unset.is_empty() {
                parts.push(format!("unset {}", unset.join(", ")));
            }
            if !failed.is_empty() {
                let kept: Vec<String> = failed
                    .iter()
                    .map(|(k, why)| format!("`{k}` ({why})"))
                    .collect();
                parts.push(format!("not {}", kept.join(", ")));
            }
            if parts.is_empty() {
                "profile updated".into()
            } else {
                format!("profile updated: {}", parts.join("; "))
            }
        }
        What::Converted {
            event,
            splits,
            last_message,
            goal_at,
        } => {
            let mut text = format!("converted on {event}");
            // When the goal happened (if not when it was processed), and, credited to none,
            // why: a message shown before this line went out after the goal.
            match (goal_at, last_message) {
                (Some(at), Some(step)) => text.push_str(&format!(" (at {at}), credited to {step}")),
                (None, Some(step)) => text.push_str(&format!(", credited to {step}")),
                (Some(at), None) => text.push_str(&format!(" (at {at}; {CREDITED_TO_NONE})")),
                (None, None) => text.push_str(&format!(" ({CREDITED_TO_NONE})")),
            }
            if !splits.is_empty() {
                let paths: Vec<String> = splits
                    .iter()
                    .map(|c| format!("{}: {}", c.step, c.path.as_deref().unwrap_or("holdout")))
                    .collect();
                text.push_str(&format!(" ({})", paths.join(", ")));
            }
            text
        }
        What::Exited { event } => format!("exited on {event}"),
        What::Stopped => "exited: the journey was stopped".into(),
        What::Withdrawn { reason, .. } => format!("in-app message withdrawn: {reason}"),
        What::NotWithdrawn { reason, .. } => format!("in-app message kept: {reason}"),
        What::Ended { reason } => format!("ended: {reason}"),
        What::Completed => "completed".into(),
        What::HeldOut { .. } => "held out".into(),
        What::Merged {
            from,
            into,
            ended: false,
            ..
        } => format!("{from} turned out to be {into}: goes on as {into}"),
        What::Merged {
            from,
            into,
            reason: Some(reason),
            ..
        } => format!("{from} turned out to be {into}: ended, {reason}"),
        // Recorded before merges kept their reason: the one reason there was then.
        What::Merged { from, into, .. } => {
            format!("{from} turned out to be {into}, who is in this journey already: ended")
        }
        What::NotEntered {
            trigger, reason, ..
        } => format!("not entered on {trigger}: {reason}"),
        // Before the wait began: its times, no user data.
        What::Unmet {
            event,
            by,
            detail: Some(d),
        } if d.starts_with(engine::BEFORE_THE_WAIT) => {
            format!("heard {event}, which its {by} did not take: it {d}")
        }
        What::Unmet { event, by, .. } => {
            format!("heard {event}, which its {by} did not take: its `where` was false")
        }
        What::NotKept {
            fields,
            more,
            value,
            reason,
        } => {
            let mut named = fields.join(", ");
            if *more > 0 {
                named.push_str(&format!(" and {more} more"));
            }
            match value {
                Some(v) => format!("not kept: {named} = {v} ({reason})"),
                None => format!("not kept: {named} ({reason})"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A send's record in the ledger says where it went when that is not where it was made
    /// for; one stored before it said so, or sent where it was made for, says nothing of it.
    #[test]
    fn a_sends_ledger_record_says_where_it_went_when_readdressed() {
        let before = r#"{"state":"done","outcome":{"outcome":"sent","at":"2026-12-01T10:00:00Z"}}"#;
        let read: Ledger = serde_json::from_str(before).expect("a ledger record");
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().expect("a time");
        assert_eq!(
            read,
            Ledger::Done {
                outcome: Outcome::Sent { at, to: None }
            }
        );
        assert_eq!(serde_json::to_string(&read).expect("json"), before);
        let readdressed = Ledger::Done {
            outcome: Outcome::Sent {
                at,
                to: Some(Address::One("ann@new.example".into())),
            },
        };
        let json = serde_json::to_string(&readdressed).expect("json");
        assert!(json.contains(r#""to":"ann@new.example""#), "{json}");
        assert_eq!(
            serde_json::from_str::<Ledger>(&json).expect("read"),
            readdressed
        );
    }

    /// An enrollment's record key, joined in one piece, is the one its record name gives:
    /// without a key, and with one that needs escaping.
    #[test]
    fn an_enrollment_is_keyed_by_its_record_name() {
        for key in [None, Some("b1"), Some("a#b:c%d")] {
            let e: Enrollment = serde_json::from_value(serde_json::json!({
                "id": "trip:ann:1", "user_id": "ann", "journey": "trip", "key": key,
                "version": 1, "n": 1, "entered_at": "2026-12-01T10:00:00Z", "status": "active",
                "step": "wait", "seq": 1,
                "trigger": {"event": "booked", "message_id": "m", "at": "2026-12-01T10:00:00Z"},
            }))
            .expect("an enrollment");
            assert_eq!(
                enrollment_key_of(&e),
                enrollment_key("ann", &e.record()),
                "{key:?}"
            );
        }
    }

    /// A timer partition's name, written without the formatting machinery, is the one a
    /// stored timer is under: `T#{minute}#{shard}`, for any minute and shard, and the sweep
    /// names it the same from its minute's prefix.
    #[test]
    fn a_timer_partition_is_named_by_its_minute_and_shard() {
        for minute in [0, 7, 10, 29_412_345, -1, -600, i64::MAX, i64::MIN] {
            for shard in [0, 9, 10, 31, 99, 100, 1_000, u32::MAX] {
                let name = format!("T#{minute}#{shard}");
                assert_eq!(timer_partition(minute, shard).as_str(), name);
                let mut digits = [0; 20];
                let shard = crate::store::decimal(u64::from(shard), &mut digits);
                assert_eq!(join(&[&timer_partition_prefix(minute), shard]), name);
            }
        }
    }

    /// A cap record keeps a place as long as a window of some zone may count it (27 hours more
    /// than `per` for days, `per` for a rolling window), and no longer: it stays small.
    #[test]
    fn a_cap_record_keeps_places_while_some_zone_may_count_them() {
        let at = |s: &str| s.parse::<Timestamp>().expect("time");
        let d = |s: &str| s.parse::<Duration>().expect("duration");
        let now = at("2026-12-03T16:00:00Z");
        // It is 23:00 in Bangkok (UTC+7): her day, since 2026-12-02T17:00Z, holds a send of
        // 23 hours before, whatever zone the latest send was judged in.
        let bangkok_day = at("2026-12-02T17:00:00Z");
        assert!(CapWindow::ending(now, d("1d"), Some("Asia/Bangkok")).holds(bangkok_day));
        assert!(CapWindow::may_count(bangkok_day, now, d("1d")));
        assert!(CapWindow::may_count(
            at("2026-12-01T13:00:01Z"),
            now,
            d("1d")
        ));
        assert!(!CapWindow::may_count(
            at("2026-12-01T13:00:00Z"),
            now,
            d("1d")
        ));
        assert!(!CapWindow::may_count(
            at("2026-11-25T13:00:00Z"),
            now,
            d("7d")
        ));
        assert!(CapWindow::may_count(
            at("2026-12-03T04:00:01Z"),
            now,
            d("12h")
        ));
        assert!(!CapWindow::may_count(
            at("2026-12-03T04:00:00Z"),
            now,
            d("12h")
        ));
    }

    /// A capped send says when a place frees: the next local midnight for whole days (in her
    /// zone), the place's time plus the length for a rolling window.
    #[test]
    fn a_cap_place_leaves_at_local_midnight_or_after_the_rolling_length() {
        let at = |s: &str| s.parse::<Timestamp>().expect("time");
        let d = |s: &str| s.parse::<Duration>().expect("duration");
        let sent = at("2026-12-01T10:30:00Z");
        // Auckland is UTC+13 in December: 10:30Z is 23:30 there, her day ends at 11:00Z.
        assert_eq!(
            CapWindow::leaves_at(sent, d("1d"), Some("Pacific/Auckland")),
            Some(at("2026-12-01T11:00:00Z"))
        );
        assert_eq!(
            CapWindow::leaves_at(sent, d("2d"), None),
            Some(at("2026-12-03T00:00:00Z"))
        );
        assert_eq!(
            CapWindow::leaves_at(sent, d("12h"), Some("Pacific/Auckland")),
            Some(at("2026-12-01T22:30:00Z"))
        );
        // Whichever way it is computed, the window no longer holds the place then.
        let later = CapWindow::ending(
            at("2026-12-01T11:00:00Z"),
            d("1d"),
            Some("Pacific/Auckland"),
        );
        assert!(!later.holds(sent));
        let before = CapWindow::ending(
            at("2026-12-01T10:59:59Z"),
            d("1d"),
            Some("Pacific/Auckland"),
        );
        assert!(before.holds(sent));
    }

    /// A hop short of its time leaves the next at least 2 s, so that no message is handled a
    /// second before its time (one within a second of it is taken as due).
    #[test]
    fn a_hop_leaves_the_next_more_than_a_second() {
        assert_eq!(hop_secs(0, 900), 0);
        assert_eq!(hop_secs(900, 900), 900);
        assert_eq!(hop_secs(901, 900), 899);
        assert_eq!(hop_secs(902, 900), 900);
        assert_eq!(hop_secs(5_000, 900), 900);
        assert_eq!(hop_secs(-3, 900), 0);
        assert_eq!(hop_secs(i64::MAX, 900), 900);
    }

    /// A queue's delay never brings a message before its time: a fraction of a second rounds
    /// up (a wake-up at the end of quiet hours came 0.37 s early in `waymark dev`, inside them).
    #[test]
    fn a_delay_rounds_up_to_the_whole_second() {
        let at = |s: &str| s.parse::<Timestamp>().expect("time");
        let due = at("2026-12-01T08:00:00Z");
        assert_eq!(secs_until(at("2026-12-01T07:59:59.63Z"), due), 1);
        assert_eq!(secs_until(at("2026-12-01T07:59:30Z"), due), 30);
        assert_eq!(secs_until(at("2026-12-01T07:59:29.999Z"), due), 31);
        assert_eq!(secs_until(due, due), 0);
        assert_eq!(secs_until(at("2026-12-01T08:00:00.5Z"), due), 0);
        assert_eq!(secs_until(at("2026-12-01T08:01:00Z"), due), 0);
    }

    /// The longest `enrollment_key` value taken, in the id of the longest user (a visitor's,
    /// `anon:` and 256 bytes), journey and step ids and the largest counts, keeps every key
    /// holding the id, twice in a wake-up's timeline record, within DynamoDB's 1,024 bytes of
    /// sort key; one byte more, after escaping (`#` is 3), is refused.
    #[test]
    fn keyed_ids_keep_store_keys_within_their_limits() {
        let journey = crate::dsl::parse(
            "j.yaml",
            &format!(
                "id: {}\nname: J\ntrigger: {{event: booked}}\nenrollment_key: event.b\nsteps:\n  - id: s\n    send: {{email: {{subject: x, text: y}}}}\n",
                "j".repeat(64)
            ),
        )
        .expect("parse");
        let key_of = |v: &str| journey.key_of(&serde_json::json!({ "b": v }));
        let longest = "a".repeat(crate::journey::MAX_KEY_BYTES);
        assert_eq!(key_of(&longest), Some(Ok(longest.clone())));
        for over in [
            "a".repeat(crate::journey::MAX_KEY_BYTES + 1),
            "#".repeat(crate::journey::MAX_KEY_BYTES / 3 + 1),
            "é".repeat(crate::journey::MAX_KEY_BYTES / 2 + 1),
        ] {
            assert!(matches!(key_of(&over), Some(Err(_))), "{over}");
        }
        let user = format!("anon:{}", "u".repeat(256));
        let id = Enrollment::id_for(&journey.id, &user, Some(&longest), u32::MAX);
        let wake = Enrollment::wake_id_of(&id, u64::MAX);
        let record = Enrollment::record_of(&journey.id, Some(&longest));
        let keys = [
            enrollment_key(&user, &record),
            timeline_key(&user, &id, &wake),
            timeline_key(
                &user,
                &id,
                &Enrollment::late_exit_id_of(&Enrollment::merge_id_of(&wake)),
            ),
            Key::new(
                user_partition(&user),
                crate::engine::send_key_with("L#", &id, &"s".repeat(64), u64::MAX),
            ),
            Key::new(
                user_partition(&user),
                crate::engine::send_key_with("I#", &id, &"s".repeat(64), u64::MAX),
            ),
        ];
        for k in keys {
            assert!(k.sk.len() <= 1024, "{} bytes: {}", k.sk.len(), k.sk);
            assert!(k.pk.len() <= 2048, "{}", k.pk);
        }
    }

    /// Every key the engine writes, made from the longest inputs it takes (a visitor's id,
    /// `anon:` and 256 bytes; a 100-byte message id; 64-byte journey and step ids; the longest
    /// `enrollment_key` value; the largest counts), stays within DynamoDB's 2,048 bytes of
    /// partition key and 1,024 of sort key: DynamoDB refuses a longer one, and the message that
    /// writes it ends in the dead-letter queue. A transition's cause can hold ids without bound
    /// (a date wait moved by a wake-up's `update`, `wake:{id}:{seq}:moved:{id}`, moved again by
    /// the update it reaches, and so on): its timeline record's key is shortened.
    #[test]
    fn every_key_the_engine_writes_fits_dynamodb_at_the_longest_inputs() {
        use crate::event::{ANONYMOUS_PREFIX, MAX_ID_BYTES, MAX_MESSAGE_ID_BYTES};
        use crate::store::{MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
        let user = join(&[ANONYMOUS_PREFIX, &"u".repeat(MAX_ID_BYTES)]);
        let journey = "j".repeat(64);
        let step = "s".repeat(64);
        let value = "v".repeat(crate::journey::MAX_KEY_BYTES);
        let message_id = "m".repeat(MAX_MESSAGE_ID_BYTES);
        let id = Enrollment::id_for(&journey, &user, Some(&value), u32::MAX);
        let other = Enrollment::id_for(&journey, &user, Some(&"o".repeat(128)), u32::MAX - 1);
        let record = Enrollment::record_of(&journey, Some(&value));
        let at: Timestamp = "2026-12-01T09:00:00Z".parse().expect("time");
        let wake = |id: &str| Message::Wake {
            user_id: user.as_str().into(),
            journey: record.as_str().into(),
            enrollment: id.into(),
            seq: u64::MAX,
            at,
        };
        let job = ScanJob::Stop {
            journey: journey.clone(),
            version: u32::MAX,
            keyed: true,
        };
        let mut messages = vec![
            wake(&id),
            wake(&other),
            Message::Inactivity {
                user_id: user.clone(),
                journey: journey.clone(),
                since: Timestamp::MIN,
                at,
            },
            Message::Enter {
                user_id: user.clone(),
                journey: journey.clone(),
                cause: format!("schedule:{}", i64::MIN),
                at,
                version: None,
            },
            Message::Stop {
                user_id: user.clone(),
                journey: record.clone(),
                enrollment: id.clone(),
            },
            Message::Scan {
                job: job.clone(),
                segment: u32::MAX,
                segments: u32::MAX,
                start: Some(enrollment_key(&user, &record)),
            },
        ];
        let retries: Vec<Message> = messages
            .iter()
            .map(|m| Message::Retry {
                attempt: u32::MAX,
                at,
                message: Box::new(m.clone()),
            })
            .collect();
        messages.extend(retries);

        let mut keys = vec![
            profile_key(&user),
            enrollment_key(&user, &journey),
            enrollment_key(&user, &record),
            last_entry_key(&user, &record),
            dedup_key(&user, &message_id),
            Key::new(
                user_partition(&user),
                engine::send_key_with("L#", &id, &step, u64::MAX),
            ),
            Key::new(
                user_partition(&user),
                engine::send_key_with("I#", &id, &step, u64::MAX),
            ),
            device_key(&"t".repeat(512)),
            device_key(&"t".repeat(5000)),
            phone_key("+123456789012345"),
            stats_key(&journey),
            stats_shard_key(&journey, u32::MAX),
            Key::new(STOPS, journey.as_str()),
        ];
        keys.extend(Channel::ALL.iter().map(|c| cap_key(&user, *c)));
        for m in &messages {
            keys.push(timer_key(i64::MIN, u32::MAX, m.id()));
            keys.push(Key::new(DEAD_TIMERS, m.id()));
            keys.push(refusal_key(&user, &m.id()));
            keys.push(scan_marker_key(&job, &m.id()));
        }
        // The causes of transitions: a message's id, and those made from it (a login's merge,
        // a late exit or reply, a date wait moved by an identify or by another enrollment's
        // update), three deep.
        type Made = Box<dyn Fn(&str) -> String>;
        let (by_id, by_other) = (id.clone(), other.clone());
        let made: Vec<Made> = vec![
            Box::new(Enrollment::merge_id_of),
            Box::new(Enrollment::late_exit_id_of),
            Box::new(Enrollment::late_reply_id_of),
            Box::new(|c| Enrollment::moved_id_of(c, "")),
            Box::new(move |c| Enrollment::moved_id_of(c, &by_id)),
            Box::new(move |c| Enrollment::moved_id_of(c, &by_other)),
        ];
        let mut causes: Vec<String> = std::iter::once(message_id.clone())
            .chain(messages.iter().map(Message::id))
            .collect();
        let mut last = causes.clone();
        for _ in 0..3 {
            last = last
                .iter()
                .flat_map(|c| made.iter().map(move |f| f(c)))
                .collect();
            causes.extend(last.iter().cloned());
        }
        for cause in &causes {
            keys.push(timeline_key(&user, &id, cause));
            keys.push(timeline_key(&user, &other, cause));
        }
        for k in &keys {
            assert!(
                k.pk.len() <= MAX_PARTITION_KEY_BYTES,
                "{} bytes: {}",
                k.pk.len(),
                k.pk
            );
            assert!(
                k.sk.len() <= MAX_SORT_KEY_BYTES,
                "{} bytes: {}",
                k.sk.len(),
                k.sk
            );
        }
        // A key that fits is as it was; a timeline record's is still found by its enrollment.
        let short = timeline_key("ann", "cart:ann:1", "wake:cart:ann:1:2:moved:plan:ann:1");
        assert_eq!(
            short.sk.as_str(),
            "T#cart:ann:1#wake:cart:ann:1:2:moved:plan:ann:1"
        );
        let moved = Enrollment::moved_id_of(&Enrollment::wake_id_of(&other, 9), &other);
        let long = timeline_key(&user, &id, &moved);
        assert!(
            long.sk.starts_with(&*join(&["T#", &id, "#wake:"])),
            "{}",
            long.sk
        );
        assert_ne!(long, timeline_key(&user, &id, &join(&[&moved, "x"])));
    }

    /// A device's key holds a token as it is when it fits a key, and a hash of one that does
    /// not (an identify with such a token is not refused by the store).
    #[test]
    fn a_device_key_fits_whatever_the_token() {
        let key = device_key("tok-1");
        assert!(key.pk.starts_with("D#"), "{key:?}");
        assert_eq!(key.sk.as_str(), "T#tok-1");
        let long = "x".repeat(3000);
        let key = device_key(&long);
        assert_eq!(key.sk.len(), 2 + 64);
        assert!(key.sk.starts_with("H#"), "{key:?}");
        assert_ne!(device_key(&format!("{long}y")), key);
        // The partitions are few: a device does not make one of its own.
        let partitions: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| device_key(&format!("tok-{i}")).pk.to_string())
            .collect();
        assert_eq!(partitions.len(), DEVICE_PARTITIONS as usize);
    }

    #[test]
    fn retries_come_2_4_8_minutes_apart_up_to_an_hour_spread_by_up_to_a_fifth() {
        let lease = Config::default().claim_lease;
        let base = [2, 4, 8, 16, 32, 60, 60, 60, 60, 60];
        for id in ["wake:cart:ann:1:3", "m-1", "m-2"] {
            for (attempt, minutes) in (1..=RETRY_ATTEMPTS).zip(base) {
                let d = retry_delay(id, attempt, lease).as_secs();
                let min = minutes * 60;
                assert!(
                    d >= min && d <= min + min / 5,
                    "{id} attempt {attempt}: {d} s"
                );
                assert_eq!(
                    retry_delay(id, attempt, lease).as_secs(),
                    d,
                    "the same each time"
                );
            }
        }
        // spread: different messages do not all come back at the same second
        let firsts: std::collections::BTreeSet<i64> = (0..50)
            .map(|i| retry_delay(&format!("m-{i}"), 1, lease).as_secs())
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }
    use crate::clock::ManualClock;
    use crate::simulate::DelayQueue;
    use crate::store::MemoryStore;

    /// When the tests below happen.
    const START: &str = "2026-12-01T10:00:00Z";

    /// A runtime over memory at [`START`] with `sender`, and `journey` (a file's text) published;
    /// its store too.
    async fn memory_runtime(
        sender: Arc<dyn Sender>,
        journey: Option<&str>,
    ) -> (Runtime, MemoryStore) {
        let start: Timestamp = START.parse().expect("time");
        let clock = Arc::new(ManualClock::new(start));
        let store = MemoryStore::new();
        let rt = Runtime::new(
            Arc::new(store.clone()),
            Arc::new(DelayQueue::new(clock.clone())),
            sender,
            clock,
            std::time::Duration::ZERO,
            Config::default(),
        );
        if let Some(text) = journey {
            let j = crate::dsl::parse("j.yaml", text).expect("journey");
            rt.catalog
                .publish(&j, &rt.config.topics, start)
                .await
                .expect("publish");
        }
        (rt, store)
    }

    /// A message carrying `user`'s event at [`START`]: a track of `name`, or an identify.
    fn event_of(user: &str, kind: Kind, id: &str, name: Option<&str>, traits: Value) -> Message {
        let start: Timestamp = START.parse().expect("time");
        Message::Event(std::sync::Arc::new(Event {
            kind,
            message_id: id.into(),
            user_id: user.into(),
            anonymous_id: None,
            event: name.map(str::to_string),
            properties: Default::default(),
            traits: traits.as_object().cloned().unwrap_or_default(),
            context: Default::default(),
            timestamp: start,
            received_at: start,
            refused: Vec::new(),
        }))
    }

    use crate::profile::Address;
    use crate::provider::ENDPOINT_DISABLED;

    /// A push to `o` refused by each of its devices in `disabled` as disabled (an uninstalled
    /// app), and by the others for this message alone, as the SNS sender answers it.
    fn refused(o: &Outgoing, disabled: &[&str]) -> SendError {
        let tokens: Vec<String> = match &o.to {
            Address::Devices(d) => d
                .iter()
                .filter(|d| disabled.contains(&d.token.as_str()))
                .map(|d| d.token.clone())
                .collect(),
            Address::One(_) => Vec::new(),
        };
        if tokens.is_empty() {
            SendError::Permanent("SNS Publish (push): InvalidParameter".into())
        } else {
            SendError::PushRefused {
                reason: format!("SNS Publish (push): {ENDPOINT_DISABLED}"),
                disabled_devices: tokens,
            }
        }
    }

    /// A push provider for which every device is disabled (an uninstalled app).
    struct Uninstalled;

    #[async_trait::async_trait]
    impl Sender for Uninstalled {
        async fn send(&self, o: &Outgoing) -> Result<Receipt, SendError> {
            Err(refused(o, &["t1"]))
        }
    }

    #[tokio::test]
    async fn a_disabled_push_endpoint_is_recorded_and_not_tried_again() {
        let (rt, _) = memory_runtime(
            Arc::new(Uninstalled),
            Some("id: j\nname: J\ntrigger: {event: go}\nreentry: after_exit\nsteps:\n  - id: p\n    send: {push: {title: t, body: b}, fallback: {email: {subject: s, text: t}}}\n"),
        )
        .await;
        let event =
            |kind, id: &str, name: Option<&str>, traits| event_of("ann", kind, id, name, traits);
        let identify = event(
            Kind::Identify,
            "i1",
            None,
            serde_json::json!({"email": "ann@example.com", "push_tokens": [{"platform": "fcm", "token": "t1"}]}),
        );
        for r in rt
            .handle_batch(&[identify, event(Kind::Track, "g1", Some("go"), Value::Null)])
            .await
        {
            r.expect("handled");
        }
        let view = rt.user("ann").await.expect("user");
        let profile = view.profile.expect("profile");
        assert!(
            profile.devices.iter().all(|d| d.disabled),
            "{:?}",
            profile.devices
        );
        assert!(view.timeline.iter().any(|e| matches!(&e.what, What::Skipped { reason, detail, .. }
            if reason == "rejected" && detail.as_deref().is_some_and(|d| d.contains(ENDPOINT_DISABLED)))));
        // The next message for this user falls back to email instead of trying the dead device.
        for r in rt
            .handle_batch(&[event(Kind::Track, "g2", Some("go"), Value::Null)])
            .await
        {
            r.expect("handled");
        }
        let view = rt.user("ann").await.expect("user");
        assert!(view
            .timeline
            .iter()
            .any(|e| matches!(&e.what, What::FellBack { reason, .. } if reason == "suppressed")));
    }

    /// A push provider for which Ann's Android phone is disabled (her app uninstalled there),
    /// and which refuses this message to her iPhone alone; it keeps the devices of each push.
    #[derive(Default)]
    struct AndroidUninstalled {
        tried: std::sync::Mutex<Vec<Vec<String>>>,
    }

    #[async_trait::async_trait]
    impl Sender for AndroidUninstalled {
        async fn send(&self, o: &Outgoing) -> Result<Receipt, SendError> {
            if let Address::Devices(d) = &o.to {
                let mut tokens: Vec<String> = d.iter().map(|d| d.token.clone()).collect();
                tokens.sort();
                self.tried.lock().expect("lock").push(tokens);
            }
            Err(refused(o, &["android"]))
        }
    }

    /// A push that every device refused marks disabled the devices the provider said are, and
    /// only those: her iPhone, which refused that one message, is tried by the next push.
    #[tokio::test]
    async fn a_push_refused_by_every_device_marks_only_the_disabled_ones() {
        let sender = Arc::new(AndroidUninstalled::default());
        let (rt, _) = memory_runtime(
            sender.clone(),
            Some("id: j\nname: J\ntrigger: {event: go}\nreentry: after_exit\nsteps:\n  - id: p\n    send: {push: {title: t, body: b}, fallback: {email: {subject: s, text: t}}}\n"),
        )
        .await;
        let event =
            |kind, id: &str, name: Option<&str>, traits| event_of("ann", kind, id, name, traits);
        let identify = event(
            Kind::Identify,
            "i1",
            None,
            serde_json::json!({"email": "ann@example.com", "push_tokens": [
                {"platform": "apns", "token": "iphone"},
                {"platform": "fcm", "token": "android"}
            ]}),
        );
        for r in rt
            .handle_batch(&[identify, event(Kind::Track, "g1", Some("go"), Value::Null)])
            .await
        {
            r.expect("handled");
        }
        let view = rt.user("ann").await.expect("user");
        let disabled: Vec<(&str, bool)> = view
            .profile
            .as_ref()
            .expect("profile")
            .devices
            .iter()
            .map(|d| (d.token.as_str(), d.disabled))
            .collect();
        assert!(
            disabled.contains(&("iphone", false)) && disabled.contains(&("android", true)),
            "{disabled:?}"
        );
        assert!(view
            .timeline
            .iter()
            .any(|e| matches!(&e.what, What::Skipped { reason, .. } if reason == "rejected")));
        // The next message goes to her iPhone, not to email as if she had no device left.
        for r in rt
            .handle_batch(&[event(Kind::Track, "g2", Some("go"), Value::Null)])
            .await
        {
            r.expect("handled");
        }
        assert_eq!(
            *sender.tried.lock().expect("lock"),
            [vec!["android", "iphone"], vec!["iphone"]]
        );
        let view = rt.user("ann").await.expect("user");
        assert!(!view
            .timeline
            .iter()
            .any(|e| matches!(&e.what, What::FellBack { reason, .. } if reason == "suppressed")));
    }

    /// A push provider whose endpoints are disabled and cannot be enabled again for now.
    struct DisabledForNow;

    #[async_trait::async_trait]
    impl Sender for DisabledForNow {
        async fn send(&self, o: &Outgoing) -> Result<Receipt, SendError> {
            Err(refused(o, &["t1"]))
        }
        async fn register(
            &self,
            device: &crate::profile::Device,
        ) -> Result<Option<String>, SendError> {
            if device.revived {
                return Err(SendError::Retryable(
                    "SNS SetEndpointAttributes: Throttled".into(),
                ));
            }
            Ok(Some(format!("ep-{}", device.token)))
        }
    }

    /// An identify that sends a disabled device's token again is applied even when its endpoint
    /// cannot be enabled again now: the device stays disabled (not marked good while its
    /// endpoint is not), and a later event sending the token tries the endpoint again. One
    /// stamped before the provider disabled it (a stale one) does not make it good.
    #[tokio::test]
    async fn a_revive_that_fails_for_now_does_not_fail_the_identify() {
        let (rt, _) = memory_runtime(
            Arc::new(DisabledForNow),
            Some("id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - id: p\n    send: {push: {title: t, body: b}}\n"),
        )
        .await;
        let event = |kind, id: &str, name: Option<&str>| {
            let device = serde_json::json!({"push_tokens": [{"platform": "fcm", "token": "t1"}]});
            let traits = if kind == Kind::Identify {
                device
            } else {
                Value::Null
            };
            event_of("ann", kind, id, name, traits)
        };
        for r in rt
            .handle_batch(&[
                event(Kind::Identify, "i1", None),
                event(Kind::Track, "g1", Some("go")),
            ])
            .await
        {
            r.expect("handled");
        }
        let view = rt.user("ann").await.expect("user");
        let d = &view.profile.expect("profile").devices[0];
        assert!(
            d.disabled && d.endpoint.as_deref() == Some("ep-t1"),
            "{d:?}"
        );

        let disabled = d.clone();

        // Stamped when the provider disabled it, no later: nothing changes.
        rt.handle(&event(Kind::Identify, "i0", None))
            .await
            .expect("handled");
        let view = rt.user("ann").await.expect("user");
        assert_eq!(view.profile.expect("profile").devices, [disabled]);

        let later = {
            let Message::Event(e) = event(Kind::Identify, "i2", None) else {
                unreachable!("an event")
            };
            let mut e = Event::clone(&e);
            e.timestamp += SignedDuration::from_mins(1);
            Message::Event(Arc::new(e))
        };
        let handled = rt.handle(&later).await;
        assert!(
            matches!(handled, Ok(Handled::Done)),
            "not retried: {handled:?}"
        );
        let view = rt.user("ann").await.expect("user");
        let d = &view.profile.expect("profile").devices[0];
        assert!(d.disabled && !d.revived, "{d:?}");
        assert_eq!(d.endpoint.as_deref(), Some("ep-t1"));
    }

    use crate::profile::Device;

    /// A push provider that cannot register devices while `down`, and registers them after.
    struct Registrar {
        down: std::sync::atomic::AtomicBool,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Sender for Registrar {
        async fn send(&self, _: &Outgoing) -> Result<Receipt, SendError> {
            Ok(Receipt::default())
        }
        async fn register(&self, device: &Device) -> Result<Option<String>, SendError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.calls.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) {
                return Err(SendError::Retryable("SNS throttled".into()));
            }
            Ok(Some(format!("arn:endpoint/{}", device.token)))
        }
    }

    #[tokio::test]
    async fn an_identify_registers_its_device_before_the_profile_is_written_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let sender = Arc::new(Registrar {
            down: true.into(),
            calls: 0.into(),
        });
        let (rt, store) = memory_runtime(sender.clone(), None).await;
        let identify = |id: &str, user: &str| {
            let traits = serde_json::json!({"email": "a@example.com", "push_tokens": [{"platform": "fcm", "token": "t1"}]});
            event_of(user, Kind::Identify, id, None, traits)
        };
        let stored = |user: &'static str| {
            let store = store.clone();
            async move {
                let r = store
                    .get(&profile_key(user))
                    .await
                    .expect("read")
                    .expect("profile");
                (r.version, r.parse::<Profile>().expect("profile"))
            }
        };
        // The provider is down: the traits are stored at once, the message comes back later.
        let handled = rt.handle(&identify("i1", "ann")).await.expect("handled");
        assert!(matches!(handled, Handled::Retried { .. }), "{handled:?}");
        let (version, p) = stored("ann").await;
        assert_eq!(version, 1);
        assert_eq!(
            p.traits.get("email"),
            Some(&serde_json::json!("a@example.com"))
        );
        assert_eq!(p.devices[0].endpoint, None);
        // Back up: the redelivery registers the device and stores its endpoint.
        sender.down.store(false, SeqCst);
        rt.handle(&identify("i1", "ann")).await.expect("handled");
        let (version, p) = stored("ann").await;
        assert_eq!(version, 2);
        assert_eq!(p.devices[0].endpoint.as_deref(), Some("arn:endpoint/t1"));
        // A new user's identify: registered first, so the profile is written once, endpoint
        // and all.
        let calls = sender.calls.load(SeqCst);
        rt.handle(&identify("i2", "bob")).await.expect("handled");
        let (version, p) = stored("bob").await;
        assert_eq!(version, 1, "one write");
        assert_eq!(p.devices[0].endpoint.as_deref(), Some("arn:endpoint/t1"));
        assert_eq!(sender.calls.load(SeqCst), calls + 1);
    }

    /// A track whose device sends its token (`context.device.token`, as Segment's mobile
    /// libraries do) registers it as an identify's `push_tokens` does: with the provider before
    /// the profile's one write, claimed for the user. The same token with her next events asks
    /// the provider nothing and writes nothing; a provider down leaves the device out of the
    /// write and unclaimed, and the event goes on (not retried): her next event registers it.
    #[tokio::test]
    async fn a_tracks_device_token_is_registered_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let sender = Arc::new(Registrar {
            down: true.into(),
            calls: 0.into(),
        });
        let (rt, store) = memory_runtime(sender.clone(), None).await;
        let track = |id: &str| {
            let Message::Event(e) =
                event_of("ann", Kind::Track, id, Some("app_opened"), Value::Null)
            else {
                unreachable!("an event")
            };
            let mut e = Event::clone(&e);
            let context = serde_json::json!({"device": {"type": "android", "token": "t1"}});
            e.context = context.as_object().cloned().unwrap_or_default();
            Message::Event(Arc::new(e))
        };
        let stored = || {
            let store = store.clone();
            async move {
                let r = store
                    .get(&profile_key("ann"))
                    .await
                    .expect("read")
                    .expect("profile");
                (r.version, r.parse::<Profile>().expect("profile"))
            }
        };
        // The provider is down: her profile is written without the device, which no one
        // claims, and the event is done (its journeys do not wait for the provider).
        let handled = rt.handle(&track("o1")).await.expect("handled");
        assert!(matches!(handled, Handled::Done), "{handled:?}");
        let (version, p) = stored().await;
        assert_eq!((version, p.devices.len()), (1, 0));
        let holder = store.get(&device_key("t1")).await.expect("read");
        assert!(holder.is_none(), "not claimed while not written");
        // Back up: her next event registers the device, in one more write.
        sender.down.store(false, SeqCst);
        rt.handle(&track("o2")).await.expect("handled");
        let (version, p) = stored().await;
        assert_eq!(version, 2);
        assert_eq!(
            (&*p.devices[0].platform, p.devices[0].endpoint.as_deref()),
            ("fcm", Some("arn:endpoint/t1"))
        );
        let holder = store.get(&device_key("t1")).await.expect("read");
        assert!(holder.is_some(), "claimed for her");
        // Her next events send the token again: no provider call, no profile write.
        let calls = sender.calls.load(SeqCst);
        for id in ["o3", "o4"] {
            rt.handle(&track(id)).await.expect("handled");
        }
        assert_eq!(sender.calls.load(SeqCst), calls);
        assert_eq!(stored().await.0, 2);
    }

    /// Out of order on a shared phone: Ann has had its token for a day; Bob's track of 11:00
    /// arrives after Ann's of 12:00, which came more than a day after her registration and
    /// registered it again: the phone stays Ann's, its latest user's.
    #[tokio::test]
    async fn a_shared_phone_stays_its_latest_users_when_events_come_out_of_order() {
        let sender = Arc::new(Registrar {
            down: false.into(),
            calls: 0.into(),
        });
        let (rt, _) = memory_runtime(sender, None).await;
        let track = |user: &str, id: &str, at: &str| {
            let Message::Event(e) =
                event_of(user, Kind::Track, id, Some("app_opened"), Value::Null)
            else {
                unreachable!("an event")
            };
            let mut e = Event::clone(&e);
            let context = serde_json::json!({"device": {"type": "android", "token": "t1"}});
            e.context = context.as_object().cloned().unwrap_or_default();
            e.timestamp = at.parse().expect("time");
            Message::Event(Arc::new(e))
        };
        let tokens = |user: &'static str| {
            let rt = &rt;
            async move {
                let view = rt.user(user).await.expect("user");
                view.profile
                    .map(|p| p.devices.into_iter().map(|d| d.token).collect::<Vec<_>>())
                    .unwrap_or_default()
            }
        };
        rt.handle(&track("ann", "a1", "2026-12-01T09:00:00Z"))
            .await
            .expect("handled");
        rt.handle(&track("ann", "a2", "2026-12-02T12:00:00Z"))
            .await
            .expect("handled");
        rt.handle(&track("bob", "b1", "2026-12-02T11:00:00Z"))
            .await
            .expect("handled");
        assert_eq!(tokens("ann").await, ["t1"]);
        assert_eq!(tokens("bob").await, Vec::<String>::new());
    }

    /// A track that sends a disabled device's token a day after the provider disabled it, its
    /// endpoint not enabled again for now: the device stays disabled (no push to it, the
    /// channel unreachable for a fallback), and the event goes on.
    #[tokio::test]
    async fn a_tracks_revive_that_fails_for_now_leaves_the_device_disabled() {
        let (rt, store) = memory_runtime(Arc::new(DisabledForNow), None).await;
        let mut p = Profile::new("ann");
        p.devices.push(Device {
            platform: "fcm".into(),
            token: "t1".into(),
            endpoint: Some("ep-t1".into()),
            disabled: true,
            revived: false,
            registered_at: None,
            disabled_at: Some(START.parse().expect("time")),
            source: crate::profile::DeviceSource::Context,
        });
        let record = Record::shared(profile_key("ann"), 1, Arc::new(p.clone()));
        store.put(&record, Expect::Absent).await.expect("put");
        let Message::Event(e) = event_of("ann", Kind::Track, "o1", Some("app_opened"), Value::Null)
        else {
            unreachable!("an event")
        };
        let mut e = Event::clone(&e);
        let context = serde_json::json!({"device": {"type": "android", "token": "t1"}});
        e.context = context.as_object().cloned().unwrap_or_default();
        e.timestamp += SignedDuration::from_hours(25);
        let handled = rt.handle(&Message::Event(Arc::new(e))).await;
        assert!(matches!(handled, Ok(Handled::Done)), "{handled:?}");
        let view = rt.user("ann").await.expect("user");
        assert_eq!(view.profile.expect("profile").devices, p.devices);
    }

    #[test]
    fn cap_records_of_send_times_still_read() {
        let key = Key::new("U#ann", "C#push");
        let old = Record::new(key.clone(), 3, &vec!["2026-12-01T10:00:00Z"]).expect("json");
        let places = CapPlace::read(&old).expect("the old form reads");
        assert_eq!(places.len(), 1);
        assert_eq!(places[0].send, "");
        let new = Record::new(key, 4, &places).expect("json");
        assert_eq!(CapPlace::read(&new).expect("the new form reads").len(), 1);
    }

    #[test]
    fn a_users_partition_is_shared_while_the_user_is_the_same() {
        let (a, again) = (user_partition("ann"), user_partition("ann"));
        assert_eq!(a.as_str(), "U#ann");
        assert!(
            std::ptr::eq(a.as_str(), again.as_str()),
            "shared, not made again"
        );
        // Another user, a user whose id is the first's with more after it, and back.
        assert_eq!(user_partition("bob").as_str(), "U#bob");
        assert_eq!(user_partition("ann2").as_str(), "U#ann2");
        assert_eq!(user_partition("ann").as_str(), "U#ann");
        assert_eq!(profile_key("zoë").pk.as_str(), "U#zoë");
    }

    /// A capped send names the sends holding the cap, oldest first, three at most, whatever a
    /// user id holds; a place kept before places named their sends is "a send".
    #[test]
    fn a_caps_places_are_named_by_journey_and_step() {
        let t = |m: i64| Timestamp::from_second(1_796_000_000 + m * 60).expect("time");
        let place = |send: &str, m: i64| CapPlace {
            send: send.to_string(),
            at: t(m),
        };
        let places = [
            place("promo:ann#1:1#offer#2", 3),
            place("cart:ann#1:1#push_reminder#2", 1),
            place("", 2),
        ];
        assert_eq!(
            taken_by(&places, "ann#1"),
            format!(
                "cart/push_reminder at {}, a send at {}, promo/offer at {}",
                t(1),
                t(2),
                t(3)
            )
        );
        let many: Vec<CapPlace> = (0..5).map(|m| place("j:u:1#s#1", m)).collect();
        assert!(
            taken_by(&many, "u").ends_with(", and 2 more"),
            "{}",
            taken_by(&many, "u")
        );
        // A keyed journey's send names its enrollment's value (unescaped), whatever the user
        // id holds.
        let keyed = [
            place("flights:a:b:B1:1#booked#1", 1),
            place("flights:a:b:B%3A2:1#booked#1", 2),
        ];
        assert_eq!(
            taken_by(&keyed, "a:b"),
            format!(
                "flights/booked (key B1) at {}, flights/booked (key B:2) at {}",
                t(1),
                t(2)
            )
        );
    }

    #[test]
    fn a_cap_of_days_counts_the_users_calendar_days() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let per = |s: &str| s.parse::<Duration>().expect("duration");
        let paris = Some("Europe/Paris");
        let in_cap_window = |at, now, per, zone| CapWindow::ending(now, per, zone).holds(at);
        // Yesterday's 09:00 digest went out 4 s later in its minute than today's.
        let now = t("2026-12-02T08:00:03Z");
        assert!(!in_cap_window(
            t("2026-12-01T08:00:07Z"),
            now,
            per("1d"),
            paris
        ));
        // Today's, at local midnight or after, counts; so does yesterday's for 2d.
        assert!(in_cap_window(
            t("2026-12-01T23:00:00Z"),
            now,
            per("1d"),
            paris
        ));
        assert!(!in_cap_window(
            t("2026-12-01T22:59:59Z"),
            now,
            per("1d"),
            paris
        ));
        assert!(in_cap_window(
            t("2026-12-01T08:00:07Z"),
            now,
            per("2d"),
            paris
        ));
        // The morning the clocks go forward: midnight was still winter time.
        let spring = t("2026-03-29T07:00:03Z");
        assert!(!in_cap_window(
            t("2026-03-28T08:00:07Z"),
            spring,
            per("1d"),
            paris
        ));
        assert!(in_cap_window(
            t("2026-03-28T23:00:00Z"),
            spring,
            per("1d"),
            paris
        ));
        // Hours are exact, ending now.
        assert!(in_cap_window(
            t("2026-12-02T07:00:04Z"),
            now,
            per("1h"),
            paris
        ));
        assert!(!in_cap_window(
            t("2026-12-02T07:00:03Z"),
            now,
            per("1h"),
            paris
        ));
        // No zone: UTC days.
        assert!(!in_cap_window(
            t("2026-12-01T23:59:59Z"),
            now,
            per("1d"),
            None
        ));
    }

    #[test]
    fn caps_written_as_the_parameter_read_back_the_same() {
        let caps = parse_caps("push=3/1d, email=2/7d,sms=1/12h").expect("caps");
        let text = caps_parameter(&caps);
        assert_eq!(parse_caps(&text), Ok(caps));
        assert_eq!(caps_parameter(&BTreeMap::new()), "");
    }

    #[test]
    fn caps_parse_and_explain_mistakes() {
        let caps = parse_caps("push=3/1d, email=2/7d").expect("valid");
        assert_eq!(caps.get(&Channel::Push).map(|c| c.max), Some(3));
        assert_eq!(
            caps.get(&Channel::Email).map(|c| c.per.as_secs()),
            Some(7 * 86_400)
        );
        assert!(parse_caps("").expect("empty").is_empty());
        for bad in ["push=3", "pigeon=1/1d", "push=x/1d", "push=3/1 day"] {
            assert!(parse_caps(bad).is_err(), "{bad}");
        }
        // As `waymark.yaml` refuses `max: 0`: a cap does not switch a channel off.
        assert_eq!(
            parse_caps("email=2/7d, push=0/1d"),
            Err("`push=0/1d`: a max of 0 would skip every push message as `capped`: a cap limits how many go out, it does not switch a channel off; write 1 or more, e.g. push=1/1d, and to send no push, take it out of the journeys' sends, or let each user say no with an opt-out or a subscription topic".to_string())
        );
    }

    /// A number's record keeps the latest [`MAX_PHONE_HOLDERS`] users given it, each once, and
    /// reads one written before several were kept (one user's id) as that user.
    #[tokio::test]
    async fn a_numbers_record_keeps_its_latest_users_and_reads_an_old_one() {
        let sender = Arc::new(crate::provider::RecordingSender::new());
        let (rt, store) = memory_runtime(sender, None).await;
        let key = phone_key("+15550001");
        store
            .put(&Record::of(key.clone(), 1, "old".to_string()), Expect::Any)
            .await
            .expect("an old record");
        let users = || async {
            store
                .get(&key)
                .await
                .expect("get")
                .expect("the record")
                .parse::<PhoneHolders>()
                .expect("its users")
                .into_users()
        };
        assert_eq!(users().await, ["old"]);
        rt.note_phone_holder("+15550001", "u0").await.expect("note");
        assert_eq!(users().await, ["old", "u0"]);
        for i in 1..=MAX_PHONE_HOLDERS {
            rt.note_phone_holder("+15550001", &format!("u{i}"))
                .await
                .expect("note");
        }
        rt.note_phone_holder("+15550001", "u5")
            .await
            .expect("again");
        let latest: Vec<String> = (1..=MAX_PHONE_HOLDERS).map(|i| format!("u{i}")).collect();
        assert_eq!(users().await, latest);
    }
}
