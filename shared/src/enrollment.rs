//! Enrollments: one user's way through one version of one journey: where it is, what it waits
//! for, and the effects its last transition still owes (the outbox). Pure data.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Effect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    /// Ended by an `exit_when` event.
    Exited,
    /// Reached an `exit` step or the end of its steps.
    Completed,
    /// Held out by a split: receives nothing.
    HeldOut,
    /// An anonymous user's enrollment that went on under the user it turned out to be.
    Merged,
}

/// What a due wake-up does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// The step's wait is over: go on to the next step.
    Continue,
    /// Run the step again (a send deferred by quiet hours).
    Rerun,
    /// A `wait_for` timed out: go to its `on_timeout`.
    Timeout,
    /// Run the send step again, now that a late identify had time to give the address it
    /// lacked (see [`crate::engine::ADDRESS_GRACE`]).
    Recheck,
}

/// The one wake-up an active enrollment may have pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The step visit this wake-up belongs to; a wake-up with another `seq` is stale.
    pub seq: u64,
    pub at: Timestamp,
    pub resume: Resume,
    /// For a `wait_until` with a `date`: the time its path read when the wait was set, read in
    /// UTC (so that the same value reads the same whatever her zone). The step taken again
    /// (an identify, her zone changed, a year gone by) that reads it still waited for that
    /// date: its time, past now, came during the wait, and `if_past` does not apply. `None`
    /// for other waits, and for enrollments stored before it was kept (judged as a date read
    /// anew).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<Timestamp>,
    /// For a send held by quiet hours or for an address ([`Resume::Rerun`],
    /// [`Resume::Recheck`]): when the user reached it (see [`Held`]). `None` for other waits,
    /// and for holds stored before it was kept (a `wait_for` after the send then begins at the
    /// wake-up, as it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// For a `wait_until` with a `date` another journey may set as the same event is taken
    /// ([`crate::engine::SetMeanwhile`]), found missing or past before it ran: not judged yet,
    /// its date is read again once the event's journeys have run ([`Resume::Rerun`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_again: bool,
}

/// When the user reached a send that is held (quiet hours, an address awaited), in the
/// journey's own time: a hold the journey file did not write does not move when a `wait_for`
/// after the send begins, so an event that happened while the send was held meets it. The
/// events that wait must not hear are kept meanwhile in [`Enrollment::wait_heard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The time of the trigger, the event or the wake-up that led to the send.
    pub since: Timestamp,
    /// Whether that `wait_for` hears only the events strictly after `since` (a previous
    /// enrollment's end, a late reply's stand-in).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after: bool,
}

/// An event an enrollment keeps: the trigger it entered with (templates and steps' conditions
/// read it as `event` and `trigger`), or the one that met its latest `wait_for` (`waited`). Its
/// properties are an event's, bounded at intake ([`crate::event::MAX_EVENT_BYTES`]), so an
/// enrollment holding both stays far below a DynamoDB item's 400 KB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent {
    pub event: String,
    pub message_id: String,
    pub at: Timestamp,
    /// Shared, not copied, by every clone of the enrollment (it is read, never changed).
    #[serde(default)]
    pub properties: Arc<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// `{journey}:{user}:{n}`.
    pub id: Arc<str>,
    pub user_id: Arc<str>,
    pub journey: Arc<str>,
    /// The journey version entered with; the enrollment finishes on it.
    pub version: u32,
    /// 1 for the user's first entry into this journey, 2 for the second… (with a key: for
    /// that key).
    pub n: u32,
    /// The value of the journey's `enrollment_key` in the trigger event: the user is in the
    /// journey once per value at a time, each in a record of its own. `None` for a journey
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Arc<str>>,
    pub trigger: TriggerEvent,
    /// The event that met the latest `wait_for` this enrollment passed (`waited.*` in later
    /// steps); `None` before any was met, and again after a `wait_for` timed out. Enrollments
    /// stored before it was kept have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited: Option<TriggerEvent>,
    pub entered_at: Timestamp,
    pub status: Status,
    /// The current step.
    pub step: String,
    /// Counts step visits; the send ledger key is (enrollment, step, seq).
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// When the current step is a `wait_for`, the event it waits for (with `paths`, their
    /// events joined by ` or `: [`crate::journey::WaitFor::events_label`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// When that `wait_for` began in the journey's own time, if before the engine got to it (a
    /// backlog, a send before it held by quiet hours or for an address): the time of what led
    /// there. Absent, it began when its timeout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_began: Option<Timestamp>,
    /// The events (messageIds) that wait must not hear again: the one that led to it, and those
    /// received earlier that met the waits before it in the same transition. While a send is
    /// held ([`Pending::held`]), those the `wait_for` after it must not hear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_heard: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<Timestamp>,
    /// The instant of the local time of day at which a `wait_until` for a time last went on: a
    /// wait for that time reached again within its minute (a loop back) waits for the next
    /// one, as the time came once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_came: Option<Timestamp>,
    /// The `wait_until` steps that went on at [`Enrollment::time_came`]: another wait for the
    /// same time, reached within its minute, goes on too (none: a record written before this
    /// was kept, read as every step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_came_at: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Effects of the last transition, replayed if the message that caused it comes again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Effect>,
    /// The timeline entries of the last transition (written with the outbox's outcomes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox_timeline: Vec<crate::timeline::Entry>,
    /// The id of the message (event or wake-up) whose transition produced `outbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_cause: Option<String>,
    /// Outboxes of earlier transitions that could not be performed before a later transition
    /// was made (a provider down): performed, oldest first, by whoever touches the enrollment
    /// next, each under its own cause.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Carried>,
    /// The trigger messages of the user's earlier enrollments of this journey (the latest
    /// [`EARLIER_TRIGGERS`]), so that a trigger that entered the user, failed before it was
    /// marked handled and comes back after a later entry replaced its record, does not enter
    /// them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_triggers: Vec<String>,
    /// For a `repeated` trigger: the latest occurrence its count took (later than the trigger
    /// when the trigger arrived late); the next entry counts only occurrences after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_until: Option<Timestamp>,
    /// What the journey's `split` steps chose for this enrollment (each split once), so that
    /// its conversion is counted for its path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<crate::timeline::SplitChoice>,
    /// The split choices the user's earlier enrollments of this journey were counted on in its
    /// stats, carried from each enrollment to the next that takes its record, and whether a
    /// conversion of hers was: a split's stats count a person once on her path (or the
    /// holdout) and her conversion once, however often she enters again, so that a path that
    /// keeps her enrolled longer than the holdout does is not compared by entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted: Vec<Counted>,
    /// The user's enrollment of the journey before this one, whose record this one took: a
    /// goal event that happened in its window but arrives after this entry still converts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Previous>>,
    /// The in-app messages its sends made that an exit withdraws from the inbox (those without
    /// `keep_after_exit`; the latest [`IN_APP_KEPT`]), so that an exit reads the inbox only
    /// for an enrollment that put something there, and those it took from a visitor's
    /// enrollment that ended at her login ([`Enrollment::take_in_app`]). Emptied when it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_app: Vec<InAppSent>,
}

/// An in-app message an enrollment's send made (see [`Enrollment::in_app`]): its inbox id is
/// the send's ledger key, `{enrollment}#{step}#{seq}`, in `user`'s inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InAppSent {
    /// The user it went to: the enrollment's user then (a visitor's, for one sent before a
    /// login moved the enrollment to the user she turned out to be).
    pub user: Arc<str>,
    pub step: Arc<str>,
    pub seq: u64,
    /// The enrollment whose send made it, when not the one that remembers it (a visitor's
    /// that ended at her login, whose messages the user's own enrollment took); none for its
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Arc<str>>,
}

impl InAppSent {
    /// The enrollment whose send made it, remembered by enrollment `owner`.
    pub fn sent_by<'a>(&'a self, owner: &'a str) -> &'a str {
        self.enrollment.as_deref().unwrap_or(owner)
    }
}

/// How many in-app messages an enrollment remembers for its exit to withdraw (see
/// [`Enrollment::in_app`]): a loop that sends more keeps the latest (the older ones are most
/// likely read or expired), so that its record stays small.
pub const IN_APP_KEPT: usize = 16;

/// A split choice an earlier enrollment of the user was counted on (see
/// [`Enrollment::counted`]): the split step, the path (none for the holdout), and whether her
/// conversion was counted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub converted: bool,
}

/// Notes in `list` that she was counted on `path` of split `step` (and her conversion on it,
/// when `converted`; a conversion noted stays noted).
fn note_counted(list: &mut Vec<Counted>, step: &str, path: Option<&str>, converted: bool) {
    match list
        .iter_mut()
        .find(|c| c.step == step && c.path.as_deref() == path)
    {
        Some(c) => c.converted |= converted,
        None => list.push(Counted {
            step: step.to_string(),
            path: path.map(str::to_string),
            converted,
        }),
    }
}

/// What an enrollment keeps of the one before it (see [`Enrollment::previous`]): enough to
/// credit it a late conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    pub id: Arc<str>,
    pub version: u32,
    pub trigger_at: Timestamp,
    pub entered_at: Timestamp,
    /// The step it ended on (where its conversion is shown).
    pub step: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<crate::timeline::SplitChoice>,
}

/// What a value's enrollments of a journey with an `enrollment_key` leave once the value's
/// record is gone (an ended one's goes days after its end, so that a user's partition does not
/// keep one a booking): the latest one's id and number, so that the value's next enrollment
/// takes `n + 1`, never an id its ledger entries and timeline records still name, and what the
/// entry rule reads of it. Kept in a record of its own, which an event's read of her
/// enrollments does not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastEntry {
    pub id: Arc<str>,
    pub n: u32,
    pub entered_at: Timestamp,
    /// When its trigger was (`reentry: after` counts from it).
    pub trigger_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

impl LastEntry {
    /// What enrollment `e` leaves.
    pub fn of(e: &Enrollment) -> Self {
        LastEntry {
            id: e.id.clone(),
            n: e.n,
            entered_at: e.entered_at,
            trigger_at: e.trigger.at,
            ended_at: e.ended_at,
        }
    }
}

/// How many earlier trigger messages an enrollment remembers (see
/// [`Enrollment::earlier_triggers`]): more entries than this between a trigger's first handling
/// and its last redelivery (SQS keeps a message for days at most) are not expected.
pub const EARLIER_TRIGGERS: usize = 16;

/// Ends the cause of a merge transition ([`Enrollment::merge_id_of`]).
const MERGE_SUFFIX: &str = ":merge";
/// Ends the cause of a late exit ([`Enrollment::late_exit_id_of`]).
const LATE_EXIT_SUFFIX: &str = ":late-exit";
/// Ends the cause of a late reply ([`Enrollment::late_reply_id_of`]).
const LATE_REPLY_SUFFIX: &str = ":late-reply";
/// Marks the cause of a date wait moved by another journey's `update`
/// ([`Enrollment::moved_id_of`]).
pub(crate) const MOVED: &str = ":moved";

/// An earlier transition's outbox, carried past later transitions until it is performed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The enrollment that made it (an earlier one of the same user and journey, after a
    /// re-entry).
    pub enrollment: String,
    /// The id of the message whose transition made it.
    pub cause: String,
    pub effects: Vec<Effect>,
    pub timeline: Vec<crate::timeline::Entry>,
    /// An exit event of the journey came since: its sends are recorded as skipped (`exited`) unless they
    /// went out already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_sends: bool,
}

impl Enrollment {
    /// Whether the time of day `at` came for the `wait_until` step `step` already (see
    /// [`Enrollment::time_came`]): a loop back to it within its minute waits for the next.
    pub fn time_came_for(&self, step: &str, at: Timestamp) -> bool {
        self.time_came == Some(at)
            && (self.time_came_at.is_empty() || self.time_came_at.iter().any(|s| s == step))
    }

    /// Notes that the time of day `at` came for the `wait_until` step `step`.
    pub fn note_time_came(&mut self, step: &str, at: Timestamp) {
        if self.time_came != Some(at) {
            self.time_came = Some(at);
            self.time_came_at.clear();
        }
        if !self.time_came_at.iter().any(|s| s == step) {
            self.time_came_at.push(step.to_string());
        }
    }

    /// The properties of the event its latest `wait_for` met (`waited.*`): null when none was
    /// met (or the latest timed out).
    pub fn waited_properties(&self) -> &Value {
        static NONE: Value = Value::Null;
        self.waited.as_ref().map_or(&NONE, |w| &*w.properties)
    }

    /// When the current `wait_for`, whose timeout is `timeout`, began: the events it hears
    /// happened then or after.
    pub fn wait_began(&self, timeout: jiff::SignedDuration) -> Option<Timestamp> {
        self.wait_began.or_else(|| {
            self.pending
                .map(|p| p.at.checked_sub(timeout).unwrap_or(p.at))
        })
    }

    /// `{journey}:{user}:{n}`, or with a key `{journey}:{user}:{key}:{n}` (the key's `%`, `#`
    /// and `:` escaped, since a ledger key is `{enrollment}#{step}#{seq}` and an id's parts
    /// are joined by `:`).
    pub fn id_for(journey: &str, user: &str, key: Option<&str>, n: u32) -> String {
        match key {
            None => crate::store::join(&[journey, ":", user, ":", &n.to_string()]),
            Some(k) => {
                crate::store::join(&[journey, ":", user, ":", &escape_key(k), ":", &n.to_string()])
            }
        }
    }

    /// The name of the record holding the user's enrollment of `journey` for `key`: the
    /// journey's id alone without a key (as before keys), else `{journey}#{key}` (a journey id
    /// has no `#`).
    pub fn record_of(journey: &str, key: Option<&str>) -> String {
        match key {
            None => journey.to_string(),
            Some(k) => crate::store::join(&[journey, "#", &escape_key(k)]),
        }
    }

    /// The journey a record name ([`Enrollment::record_of`]) is of.
    pub fn journey_of_record(record: &str) -> &str {
        // (A byte search: a record name is short, and `#` is one byte in UTF-8.)
        match record.bytes().position(|b| b == b'#') {
            Some(i) => &record[..i],
            None => record,
        }
    }

    /// The name of the record that holds this enrollment.
    pub fn record(&self) -> String {
        Self::record_of(&self.journey, self.key.as_deref())
    }

    pub fn is_active(&self) -> bool {
        self.status == Status::Active
    }

    /// Whether a send of this enrollment waits for the user's address (see
    /// [`crate::engine::ADDRESS_GRACE`]).
    pub fn waits_for_address(&self) -> bool {
        self.is_active() && self.pending.is_some_and(|p| p.resume == Resume::Recheck)
    }

    /// Whether it waits for a time to come (a `wait`, a `wait_until`, quiet hours), rather than
    /// for an event or an address: a `wait_until` date may move when the profile does (see
    /// `engine::date_moved`).
    pub fn waits_for_time(&self) -> bool {
        self.is_active()
            && self.waiting_for.is_none()
            && self
                .pending
                .is_some_and(|p| matches!(p.resume, Resume::Continue | Resume::Rerun))
    }

    /// Takes `prev`'s place in the record of the user's enrollment in the journey (a re-entry,
    /// or a merged anonymous user's enrollment going on as the user's): numbered no lower
    /// than it, so the user's next enrollment gets an id of its own (sends are claimed by
    /// enrollment id), and remembering the triggers that entered it and the ones before.
    pub fn follow(&mut self, prev: &Enrollment) {
        for c in Self::counted_after(prev) {
            self.note_counted(&c.step, c.path.as_deref(), c.converted);
        }
        self.follow_counted(prev);
    }

    /// [`Enrollment::follow`], for an enrollment made counting what `prev` was counted on
    /// already ([`Enrollment::counted_after`], which a re-entry hands to
    /// `engine::enter_after`): the rest of taking its place, without working that out again
    /// (what the enrollment's steps noted since only adds to it).
    pub fn follow_counted(&mut self, prev: &Enrollment) {
        self.n = self.n.max(prev.n);
        // Kept for a late goal, unless it converted already.
        self.previous = prev.converted_at.is_none().then(|| {
            Box::new(Previous {
                id: prev.id.clone(),
                version: prev.version,
                trigger_at: prev.trigger.at,
                entered_at: prev.entered_at,
                step: prev.step.clone(),
                splits: prev.splits.clone(),
            })
        });
        let mut earlier = prev.earlier_triggers.clone();
        earlier.push(prev.trigger.message_id.clone());
        for t in std::mem::take(&mut self.earlier_triggers) {
            if !earlier.contains(&t) {
                earlier.push(t);
            }
        }
        let extra = earlier.len().saturating_sub(EARLIER_TRIGGERS);
        earlier.drain(..extra);
        self.earlier_triggers = earlier;
    }

    /// The split choices an enrollment that follows `prev` inherits as counted (see
    /// [`Enrollment::counted`]): `prev`'s own and those it inherited, each converted when a
    /// conversion of hers was counted on it (`prev`'s, made after its choice).
    pub fn counted_after(prev: &Enrollment) -> Vec<Counted> {
        let mut out = prev.counted.clone();
        for c in &prev.splits {
            let converted = prev
                .converted_at
                .is_some_and(|at| c.at.is_none_or(|chosen| chosen <= at));
            note_counted(&mut out, &c.step, c.path.as_deref(), converted);
        }
        out
    }

    /// Whether an earlier enrollment of hers was counted on `path` of split `step`.
    pub fn counted_on(&self, step: &str, path: Option<&str>) -> Option<&Counted> {
        self.counted
            .iter()
            .find(|c| c.step == step && c.path.as_deref() == path)
    }

    /// Notes that she was counted on `path` of split `step` (and her conversion on it, when
    /// `converted`).
    pub fn note_counted(&mut self, step: &str, path: Option<&str>, converted: bool) {
        note_counted(&mut self.counted, step, path, converted);
    }

    /// Takes the in-app messages `messages` that enrollment `from` remembered (a visitor's that
    /// ended at her login because this one, the user's, is in the journey): this one's exit
    /// withdraws them with its own. They count as older than its own (it is the one the
    /// journey goes on with), so that past [`IN_APP_KEPT`] they are the first it forgets. Says
    /// whether the list changed; taking the same messages again changes nothing.
    pub fn take_in_app(&mut self, from: &str, messages: &[InAppSent]) -> bool {
        let own = self.id.clone();
        let mut taken: Vec<InAppSent> = Vec::new();
        for m in messages {
            let by = m.sent_by(from);
            let same = |x: &InAppSent| x.sent_by(&own) == by && x.step == m.step && x.seq == m.seq;
            if self.in_app.iter().chain(&taken).any(same) {
                continue;
            }
            taken.push(InAppSent {
                user: m.user.clone(),
                step: m.step.clone(),
                seq: m.seq,
                enrollment: (by != &*own).then(|| Arc::from(by)),
            });
        }
        if taken.is_empty() {
            return false;
        }
        let before = self.in_app.clone();
        taken.append(&mut self.in_app);
        let extra = taken.len().saturating_sub(IN_APP_KEPT);
        taken.drain(..extra);
        self.in_app = taken;
        self.in_app != before
    }

    /// The id a wake-up for `seq` carries, used as its outbox cause.
    pub fn wake_id(&self, seq: u64) -> String {
        Self::wake_id_of(&self.id, seq)
    }

    /// The id a wake-up for `seq` of enrollment `id` carries.
    pub fn wake_id_of(id: &str, seq: u64) -> String {
        let mut digits = [0; 20];
        crate::store::join(&["wake:", id, ":", crate::store::decimal(seq, &mut digits)])
    }

    /// The cause of the transition in which message `cause` merges an anonymous user's
    /// enrollment into the user it turned out to be: a cause of its own, since that message
    /// may have made an earlier transition of the enrollment (the anonymous user's trigger,
    /// retried, finishing a login that failed half-way), and a transition's timeline record is
    /// keyed by its cause.
    pub fn merge_id_of(cause: &str) -> String {
        crate::store::join(&[cause, MERGE_SUFFIX])
    }

    /// The message whose merge `cause` is (see [`Enrollment::merge_id_of`]), or `cause` itself.
    pub fn merging_message(cause: &str) -> &str {
        cause.strip_suffix(MERGE_SUFFIX).unwrap_or(cause)
    }

    /// The cause of the exit that message `cause` applies to an enrollment it gave a user,
    /// when the user did the journey's exit event after its trigger: a transition of its own
    /// after the one `cause` made.
    pub fn late_exit_id_of(cause: &str) -> String {
        crate::store::join(&[cause, LATE_EXIT_SUFFIX])
    }

    /// The cause of the step a moved enrollment's `wait_for` takes when message `cause` (the
    /// move) finds its user did the event waited for since the wait began: a transition of its
    /// own, apart from a late exit's.
    pub fn late_reply_id_of(cause: &str) -> String {
        crate::store::join(&[cause, LATE_REPLY_SUFFIX])
    }

    /// Whether `message_id` is a late reply's stand-in ([`Enrollment::late_reply_id_of`]) for
    /// an event the profile's history holds under its own id.
    pub fn is_late_reply(message_id: &str) -> bool {
        message_id.ends_with(LATE_REPLY_SUFFIX)
    }

    /// The cause of the transition in which message `cause`, through enrollment `by`'s
    /// `update` step (empty: the pass once every journey the event reached has run), moves the
    /// date this enrollment's `wait_until` waits for: a cause of its own, since `cause` may
    /// have made a transition of this enrollment too (an event it listens to), and so may
    /// another journey's update under the same message, and a transition's timeline record is
    /// keyed by its cause.
    pub fn moved_id_of(cause: &str, by: &str) -> String {
        if by.is_empty() {
            crate::store::join(&[cause, MOVED])
        } else {
            crate::store::join(&[cause, MOVED, ":", by])
        }
    }

    /// Whether a transition made under `made_by` was message `cause`'s own doing on this
    /// enrollment (under its id, or as its late exit): not the merge it made (a login's), after
    /// which the message still owes the moved enrollment its own transition (the purchase a
    /// moved `wait_for` waits for, sent as the login itself).
    pub fn made_by_itself(made_by: &str, cause: &str) -> bool {
        made_by == cause
            || made_by.strip_suffix(LATE_EXIT_SUFFIX) == Some(cause)
            || made_by.strip_suffix(LATE_REPLY_SUFFIX) == Some(cause)
    }

    /// When the enrollment hears the user from: its trigger, or, for a `repeated` trigger
    /// that arrived late, the latest occurrence its count took ([`Enrollment::counted_until`]),
    /// when the count was made. An exit, goal or `wait_for` event from before it is not heard:
    /// the same events give the same enrollment in whatever order they arrive.
    pub fn hears_from(&self) -> Timestamp {
        self.counted_until
            .map_or(self.trigger.at, |c| c.max(self.trigger.at))
    }

    /// Whether message `id` entered the user in this enrollment, or in one before it that
    /// this one keeps the trigger of: a retry of it is neither entered nor refused again.
    pub fn entered_by(&self, id: &str) -> bool {
        self.trigger.message_id == id || self.earlier_triggers.iter().any(|t| t == id)
    }

    /// Whether message `cause` made a transition of this enrollment itself (see
    /// [`Enrollment::made_by_itself`]).
    pub fn transitioned_by_itself(&self, cause: &str) -> bool {
        self.outbox_cause
            .as_deref()
            .is_some_and(|c| Self::made_by_itself(c, cause))
            || self
                .carried
                .iter()
                .any(|c| Self::made_by_itself(&c.cause, cause))
    }

    /// Whether a transition made under `made_by` was made by message `cause`: under its id, as
    /// its merge ([`Enrollment::merge_id_of`]), as its late exit
    /// ([`Enrollment::late_exit_id_of`]), or as a late exit of its merge. Not a date it moved
    /// ([`Enrollment::moved_id_of`]): that transition is another journey's doing, and the
    /// message may still owe this enrollment its own (an exit, a goal, a `wait_for`).
    pub fn made_by(made_by: &str, cause: &str) -> bool {
        let mut m = made_by;
        loop {
            if m == cause {
                return true;
            }
            match m
                .strip_suffix(LATE_EXIT_SUFFIX)
                .or_else(|| m.strip_suffix(LATE_REPLY_SUFFIX))
                .or_else(|| m.strip_suffix(MERGE_SUFFIX))
            {
                Some(shorter) => m = shorter,
                None => return false,
            }
        }
    }
}

/// A key as ids and record names hold it: `%`, `#` and `:` escaped (an id's parts are
/// joined by `:`, so that user `t:1` with key `B` and user `t` with key `1:B` differ).
pub(crate) fn escape_key(k: &str) -> std::borrow::Cow<'_, str> {
    if !k.contains(['%', '#', ':']) {
        return std::borrow::Cow::Borrowed(k);
    }
    std::borrow::Cow::Owned(
        k.replace('%', "%25")
            .replace('#', "%23")
            .replace(':', "%3A"),
    )
}

#[cfg(test)]
mod tests {
    use super::Enrollment;

    /// A re-entry's enrollment, made counting what the one before was counted on
    /// ([`Enrollment::counted_after`]), takes its place with `follow_counted` just as `follow`
    /// would have (which works that out again): the same enrollment, a split it took since
    /// noted, and a conversion the one before had on a path it had been counted on before.
    #[test]
    fn a_re_entry_follows_the_one_before_as_follow_does() {
        let prev: Enrollment = serde_json::from_value(serde_json::json!({
            "id": "j:ann:2", "user_id": "ann", "journey": "j", "version": 1, "n": 2,
            "trigger": {"event": "e", "message_id": "m2", "at": "2026-12-01T10:00:00Z"},
            "entered_at": "2026-12-01T10:00:00Z", "status": "completed", "step": "end", "seq": 4,
            "converted_at": "2026-12-01T12:00:00Z",
            "splits": [{"step": "s", "path": "a", "at": "2026-12-01T11:00:00Z"},
                       {"step": "late", "path": "b", "at": "2026-12-01T13:00:00Z"}],
            "counted": [{"step": "old", "path": "x", "converted": false}],
            "earlier_triggers": ["m1"]
        }))
        .expect("an enrollment");
        let mut made = prev.clone();
        made.id = "j:ann:3".into();
        made.n = 3;
        made.converted_at = None;
        made.splits = Vec::new();
        made.earlier_triggers = Vec::new();
        made.trigger.message_id = "m3".into();
        made.counted = Enrollment::counted_after(&prev);
        // A split its first steps took, noted since it was made.
        made.note_counted("new", None, false);
        let mut by_follow = made.clone();
        by_follow.follow(&prev);
        let mut once = made;
        once.follow_counted(&prev);
        assert_eq!(once, by_follow);
        let counted: Vec<(&str, Option<&str>, bool)> = once
            .counted
            .iter()
            .map(|c| (c.step.as_str(), c.path.as_deref(), c.converted))
            .collect();
        assert_eq!(
            counted,
            [
                ("old", Some("x"), false),
                ("s", Some("a"), true),
                ("late", Some("b"), false),
                ("new", None, false)
            ]
        );
        assert_eq!(once.earlier_triggers, ["m1", "m2"]);
        assert!(
            once.previous.is_none(),
            "it converted: no late goal to keep it for"
        );
    }

    /// An enrollment as stored before `waited` was kept (waiting at a `wait_for`) loads, with
    /// nothing waited for; one that keeps a trigger and a waited event of the largest size
    /// intake takes stays far below a DynamoDB item's 400 KB.
    #[test]
    fn an_enrollment_stored_before_waited_loads_and_one_with_both_events_stays_small() {
        let old = r#"{"id":"rating:ann:1","user_id":"ann","journey":"rating","version":1,"n":1,
            "trigger":{"event":"order_delivered","message_id":"d-ann","at":"2026-12-01T19:00:00Z",
            "properties":{"order_id":"o-1"}},"entered_at":"2026-12-01T19:00:00Z","status":"active",
            "step":"wait_rating","seq":1,"pending":{"seq":1,"at":"2026-12-01T21:00:00Z",
            "resume":"timeout"},"waiting_for":"rating_submitted"}"#;
        let e: Enrollment = serde_json::from_str(old).expect("an old enrollment loads");
        assert_eq!(e.waited, None);
        assert!(e.waited_properties().is_null());
        assert_eq!(e.trigger.properties["order_id"], "o-1");
        // Nothing waited for: stored as before.
        let stored = serde_json::to_value(&e).expect("serializes");
        assert!(stored.get("waited").is_none(), "{stored}");

        // The largest properties intake takes, twice.
        let big = std::sync::Arc::new(serde_json::json!({
            "blob": "x".repeat(crate::event::MAX_EVENT_BYTES)
        }));
        let mut full = e.clone();
        full.trigger.properties = big.clone();
        full.waited = Some(super::TriggerEvent {
            event: "rating_submitted".into(),
            message_id: "r-ann".into(),
            at: "2026-12-01T19:30:00Z".parse().expect("time"),
            properties: big,
        });
        let text = serde_json::to_string(&full).expect("serializes");
        assert!(text.len() < 100 * 1024, "{} bytes", text.len());
        let back: Enrollment = serde_json::from_str(&text).expect("loads");
        assert_eq!(back, full);
    }

    /// A send held by quiet hours as stored before the hold kept when the user reached it loads
    /// with none (its `wait_for` begins at the wake-up, as it did); one that keeps it writes it
    /// back, and a wait that is no hold writes nothing more than before.
    #[test]
    fn a_hold_stored_before_it_kept_when_the_user_reached_it_loads() {
        let old = r#"{"id":"b:dan:1","user_id":"dan","journey":"b","version":1,"n":1,
            "trigger":{"event":"signed_up","message_id":"s-dan","at":"2026-12-01T22:00:00Z"},
            "entered_at":"2026-12-01T22:00:00Z","status":"active","step":"reminder_1","seq":2,
            "pending":{"seq":2,"at":"2026-12-03T08:00:00Z","resume":"rerun"}}"#;
        let e: Enrollment = serde_json::from_str(old).expect("an old enrollment loads");
        let pending = e.pending.expect("pending");
        assert_eq!(pending.held, None);
        let stored = serde_json::to_value(&e).expect("serializes");
        assert!(stored["pending"].get("held").is_none(), "{stored}");

        let mut held = e.clone();
        if let Some(p) = held.pending.as_mut() {
            p.held = Some(super::Held {
                since: "2026-12-02T22:00:00Z".parse().expect("time"),
                after: false,
            });
        }
        held.wait_heard = vec!["w-dan".into()];
        let text = serde_json::to_string(&held).expect("serializes");
        assert!(
            text.contains(r#""held":{"since":"2026-12-02T22:00:00Z"}"#),
            "{text}"
        );
        let back: Enrollment = serde_json::from_str(&text).expect("loads");
        assert_eq!(back, held);
    }

    /// A visitor's messages taken at her login go before the enrollment's own (older), so that
    /// past the bound they are the first forgotten; the same step and visit of another
    /// enrollment is another message; taking them again changes nothing.
    #[test]
    fn the_in_app_messages_taken_at_a_login_keep_within_the_bound() {
        use super::{InAppSent, IN_APP_KEPT};
        let text = r#"{"id":"cart:lee:1","user_id":"lee","journey":"cart","version":1,"n":1,
            "trigger":{"event":"cart_abandoned","message_id":"c-lee","at":"2026-12-01T09:00:00Z"},
            "entered_at":"2026-12-01T09:00:00Z","status":"active","step":"wait","seq":20}"#;
        let mut lee: Enrollment = serde_json::from_str(text).expect("an enrollment");
        let sent = |user: &str, step: &str, seq: u64| InAppSent {
            user: user.into(),
            step: step.into(),
            seq,
            enrollment: None,
        };
        lee.in_app = (1..IN_APP_KEPT as u64)
            .map(|i| sent("lee", "tip", i))
            .collect();
        let visitors: Vec<InAppSent> = (1..=3).map(|i| sent("anon:v", "tip", i)).collect();
        assert!(lee.take_in_app("cart:anon:v:1", &visitors));
        let told: Vec<String> = lee
            .in_app
            .iter()
            .map(|m| format!("{}#{}#{}", m.sent_by(&lee.id), m.step, m.seq))
            .collect();
        let mut expected = vec!["cart:anon:v:1#tip#3".to_string()];
        expected.extend((1..IN_APP_KEPT).map(|i| format!("cart:lee:1#tip#{i}")));
        assert_eq!(told, expected);
        assert_eq!(lee.in_app[0].user.as_ref(), "anon:v");
        let before = lee.clone();
        assert!(!lee.take_in_app("cart:anon:v:1", &visitors));
        assert_eq!(lee, before);
        // room for them all: all taken, once
        lee.in_app.truncate(1);
        assert!(lee.take_in_app("cart:anon:v:1", &visitors));
        assert_eq!(lee.in_app.len(), 3);
        assert!(!lee.take_in_app("cart:anon:v:1", &visitors));
    }

    /// A journey without a key keeps its ids and its record's name; a keyed enrollment's hold
    /// its value, `#` and `%` escaped, and the record's name leads back to the journey.
    #[test]
    fn keyed_ids_and_records_hold_the_value_escaped() {
        assert_eq!(Enrollment::id_for("cart", "ann", None, 2), "cart:ann:2");
        assert_eq!(Enrollment::record_of("cart", None), "cart");
        assert_eq!(
            Enrollment::id_for("trip", "ann", Some("B1"), 1),
            "trip:ann:B1:1"
        );
        assert_eq!(
            Enrollment::id_for("trip", "ann", Some("a#1%"), 1),
            "trip:ann:a%231%25:1"
        );
        for key in [None, Some("B1"), Some("a#b"), Some("")] {
            let record = Enrollment::record_of("trip", key);
            assert_eq!(Enrollment::journey_of_record(&record), "trip", "{key:?}");
        }
        assert_eq!(Enrollment::record_of("trip", Some("a#b")), "trip#a%23b");
        // `:` too: another user and key never make the same id.
        assert_eq!(Enrollment::id_for("j", "t", Some("1:B"), 1), "j:t:1%3AB:1");
        assert_ne!(
            Enrollment::id_for("j", "t:1", Some("B"), 1),
            Enrollment::id_for("j", "t", Some("1:B"), 1)
        );
        assert_ne!(
            Enrollment::record_of("trip", Some("a#b")),
            Enrollment::record_of("trip", Some("a%23b"))
        );
    }

    #[test]
    fn a_message_made_its_merge_its_late_exit_and_its_merges_late_exit() {
        let merge = Enrollment::merge_id_of("m1");
        for made in [
            "m1".to_string(),
            merge.clone(),
            Enrollment::late_exit_id_of("m1"),
            Enrollment::late_exit_id_of(&merge),
            Enrollment::late_reply_id_of(&merge),
        ] {
            assert!(Enrollment::made_by(&made, "m1"), "{made}");
            assert!(!Enrollment::made_by(&made, "m2"), "{made}");
        }
        // Its own transitions of an enrollment, apart from what its merge did there.
        for (made, own) in [
            ("m1".to_string(), true),
            (Enrollment::late_exit_id_of("m1"), true),
            (Enrollment::late_reply_id_of("m1"), true),
            (merge.clone(), false),
            (Enrollment::late_exit_id_of(&merge), false),
            (Enrollment::late_reply_id_of(&merge), false),
        ] {
            assert_eq!(Enrollment::made_by_itself(&made, "m1"), own, "{made}");
        }
        // A late exit and a late reply of one move are transitions apart.
        assert_ne!(
            Enrollment::late_exit_id_of(&merge),
            Enrollment::late_reply_id_of(&merge)
        );
        assert!(Enrollment::made_by(
            &Enrollment::late_exit_id_of(&merge),
            &merge
        ));
        assert!(!Enrollment::made_by("m1", &merge));
        assert!(!Enrollment::made_by("m1:merged", "m1"));
    }
}
