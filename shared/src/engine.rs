//! The engine: given a journey, an enrollment, the profile and an input (entry, wake-up or event),
//! it returns the next enrollment state, the effects to perform and the timeline of why. Pure: no
//! I/O, no clock, no randomness; the same inputs always give the same transition.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::Scope;
use crate::enrollment::{Enrollment, Held, Pending, Resume, Status, TriggerEvent};
use crate::event::Event;
use crate::journey::{
    Action, Channel, EmailTemplate, EventMatch, Journey, PastThen, QuietHours, Reentry, Send,
    SmsType, Template, TimeOfDay, TriggerKind, Update, WaitFor, WaitUntil, WaitWay, Weekday,
};
use crate::profile::{Address, Profile, Unreachable};
use crate::template;
use crate::timeline::{Entry, What};
use crate::topic::{self, Declared};
use crate::webhook::{header_name_problem, header_value_problem, webhook_url_problem};

use crate::journey::MAX_STEPS_PER_TRANSITION;

/// How long after its trigger a send that can reach the user on none of its channels for want
/// of an address (no email, no phone, no device) waits for one before it is skipped, when no
/// identify of the user has been applied yet: the first one, which gives the address, may be
/// applied just after the event (events arrive out of order: a sign-up's identify and its
/// first order, handled by two workers at once).
pub const ADDRESS_GRACE: SignedDuration = SignedDuration::from_mins(2);

/// The most events (messageIds) an enrollment keeps for its `wait_for` not to hear
/// ([`Enrollment::wait_heard`]); past it the oldest are dropped. A loop (a send held for the
/// night, a `wait_for`, back to the send) would otherwise add one each time round.
pub const MAX_WAIT_HEARD: usize = 64;

/// `heard` as a `wait_for` beginning at `began` keeps it: without the events `user`'s history
/// holds from before then (the wait hears none of those anyway), and the latest
/// [`MAX_WAIT_HEARD`] of the rest.
fn heard_from(mut heard: Vec<String>, user: &Profile, began: Timestamp) -> Vec<String> {
    heard.retain(|id| {
        !user
            .history
            .iter()
            .any(|(_, l)| l.iter().any(|(t, x)| x == id && *t < began))
    });
    let over = heard.len().saturating_sub(MAX_WAIT_HEARD);
    heard.drain(..over);
    heard
}

/// A rendered message, ready for a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Content {
    Email {
        subject: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        html: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// One-click unsubscribe link (RFC 8058) for marketing email.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unsubscribe_url: Option<String>,
    },
    Sms {
        body: String,
        sms_type: SmsType,
    },
    /// A push's title and body; either may be empty (none written, or none for this user),
    /// and is then left out of the alert. A `silent` one has neither: its data alone, with no
    /// alert, wakes the app in the background.
    Push {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        title: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        silent: bool,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        data: BTreeMap<String, String>,
        /// How long the push services may hold it for an unreachable device (the template's
        /// `expires`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<crate::duration::Duration>,
    },
    InApp {
        title: String,
        body: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        data: BTreeMap<String, String>,
        /// How long after it is sent it stays in the inbox (the template's `expires`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<crate::duration::Duration>,
    },
    Webhook {
        url: String,
        method: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// The names of the secrets the journey's `url`, `headers` and `body` read (`{{
        /// secrets.NAME }}`), sorted: the sender puts a value in for these markers alone, and
        /// any other text that looks like a marker goes out as it is (a call rendered before
        /// the engine kept this, by an engine that let data hold the marker's character,
        /// names none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<String>,
    },
}

/// A message the engine decided to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub enrollment: Arc<str>,
    pub journey: Arc<str>,
    pub version: u32,
    pub user_id: Arc<str>,
    pub step: Arc<str>,
    pub seq: u64,
    pub channel: Channel,
    pub to: Address,
    /// The rendered message, shared with the outbox line or the provider's request made of it.
    pub content: Arc<Content>,
    /// Transactional messages ignore frequency caps.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactional: bool,
    /// The send's `locales` key the message was written in (`es`), when the user's locale chose
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<Arc<str>>,
    /// The user's time zone when the message was made (IANA name; as waits find it): a cap
    /// `per` whole days counts the user's calendar days, also across a change of the clocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Arc<str>>,
}

impl Outgoing {
    /// The send ledger key: (enrollment, step, visit).
    pub fn ledger_key(&self) -> String {
        self.ledger_key_with("").to_string()
    }

    /// The ledger key after `prefix` (the store's key kinds: `L#`, `I#`).
    pub fn ledger_key_with(&self, prefix: &str) -> crate::store::Part {
        send_key_with(prefix, &self.enrollment, &self.step, self.seq)
    }
}

/// A send's key, `{enrollment}#{step}#{visit}`, after `prefix` (the store's key kinds: `L#`
/// for its ledger, `I#` for its inbox message; none for the inbox message's id).
pub fn send_key_with(prefix: &str, enrollment: &str, step: &str, seq: u64) -> crate::store::Part {
    let mut digits = [0; 20];
    let seq = crate::store::decimal(seq, &mut digits);
    crate::store::Part::join(&[prefix, enrollment, "#", step, "#", seq])
}

/// What the adapters must do for a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Send a rendered message (shared, not copied, by every copy of the outbox that holds it).
    Send(Arc<Outgoing>),
    /// Wake the enrollment at `at` for visit `seq`.
    Wake { seq: u64, at: Timestamp },
    /// The wake-up for `seq` at `at` is no longer wanted.
    Cancel { seq: u64, at: Timestamp },
    /// Change the user's profile traits, newer wins per trait against the time of the
    /// transition (its timeline's, kept with it: stored as it always was, so that an engine
    /// rolled back still reads it).
    UpdateProfile(Update),
    /// Go on as this enrollment, under the user an anonymous user turned out to be (see
    /// [`merge`]): it is written there, unless that user has an enrollment of the journey that
    /// is active, and its wake-up is scheduled there.
    Move(Box<Enrollment>),
    /// Take the in-app messages an enrollment that exited (or was stopped) sent out of the
    /// inbox, those the user has not read.
    Withdraw(Withdrawal),
    /// Give the in-app messages an anonymous visitor's enrollment that ended at her login
    /// remembered to the user's own enrollment of the journey, if it is active (see
    /// [`merge`]).
    HandOver(HandOver),
}

/// The in-app messages an anonymous visitor's enrollment remembered when it ended at her login
/// because the user she turned out to be is in the journey: that user's own enrollment, which
/// goes on, takes them ([`crate::enrollment::Enrollment::take_in_app`]), so that her exit
/// withdraws the visitor's unread nudges (moved to her inbox with the login) with her own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandOver {
    /// The visitor's enrollment, whose sends made them.
    pub enrollment: Arc<str>,
    /// The user she turned out to be.
    pub to: Arc<str>,
    pub messages: Vec<crate::enrollment::InAppSent>,
}

/// The in-app messages an enrollment withdraws when it ends by an `exit_when` event or a stop
/// (see [`Effect::Withdraw`]): the user did what the journey exits on, so its nudges are over.
/// One she has read stays (she saw it: taking it away would be a message vanishing under her
/// eyes); one she dismissed or that expired is gone already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub enrollment: Arc<str>,
    pub messages: Vec<crate::enrollment::InAppSent>,
    /// Why: how the enrollment ended (`exit_when order_completed`, `journey stopped`).
    pub reason: String,
}

/// The result of one engine call.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub enrollment: Enrollment,
    pub effects: Vec<Effect>,
    pub timeline: Vec<Entry>,
}

/// What the engine reads besides the enrollment.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub journey: &'a Journey,
    pub version: u32,
    pub profile: &'a Profile,
    pub now: Timestamp,
    /// The signed unsubscribe link for this user and journey, when the deployment has one.
    pub unsubscribe_url: Option<&'a str>,
    /// What is known of the journey's topic: the running declarations, the one its version
    /// was published with, and how to take a topic neither declares.
    pub topics: Declared<'a>,
    /// The traits the other journeys the event being taken reaches may set or unset with an
    /// `update` step as it is taken (empty outside an event's handling): a `wait_until` date
    /// read from one is judged on the profile as they leave it (see [`SetMeanwhile`]).
    pub set_meanwhile: &'a [SetMeanwhile],
}

/// A profile trait another journey's `update` step may set or unset while the event that
/// moved an enrollment is taken (the journey runs on the same event, before or after it). A
/// `wait_until` reached then whose date it holds, found missing or past on the profile as the
/// event came, is not judged yet: it waits [`READ_AGAIN_AFTER`] at most, and is read again
/// once the event's journeys have all run (see [`date_moved`]), on the date they left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMeanwhile {
    /// The journey whose `update` step names it.
    pub journey: String,
    /// The trait (`due_at` for `profile.due_at`).
    pub name: String,
}

/// How long a `wait_until` whose date another journey may set as the same event is taken
/// (see [`SetMeanwhile`]) waits at most: its date is read again when the event's journeys have
/// run, in the same handling; this wake-up reads it again should that handling stop before
/// (a fault; the event, retried, reads it again too).
pub const READ_AGAIN_AFTER: SignedDuration = SignedDuration::from_mins(10);

impl Ctx<'_> {
    /// The user's time zone: the profile's, else the journey's default, else UTC.
    pub fn timezone(&self) -> TimeZone {
        template::zone_of(
            self.profile.traits.get("timezone").and_then(Value::as_str),
            self.journey.default_zone(),
        )
    }
}

/// What a `wait_until` on the time of day alone waits for after `now` in zone `tz`: its time
/// (midnight when it names none) and the instant.
fn next_time_of_day(w: &WaitUntil, now: Timestamp, tz: &TimeZone) -> (TimeOfDay, Timestamp) {
    let time = w.time_or_midnight();
    (time, next_local_time(now, tz, time, &w.weekdays))
}

/// How late a transition may be taken for a `wait_until` reached within its minute in the
/// journey's own time to go on at once (see [`at_its_minute`]), when that time is an app's
/// event's stamp: a queue's lag and a few retries.
const AT_ITS_MINUTE_LATE: SignedDuration = SignedDuration::from_mins(15);
/// The same when that time is the engine's own (a schedule's run, a wake-up's due time): a
/// long scan or a backlog, not an outage of days (a `weekdays: [mon]` wait reached on Monday
/// and taken on Wednesday waits for the next Monday).
const ENGINE_AT_ITS_MINUTE_LATE: SignedDuration = SignedDuration::from_hours(3);

/// The instant of a `wait_until`'s time of day (midnight when it names none) today in zone
/// `tz`, when `now` is within its minute on one of its weekdays: the wall clock reads 09:00
/// for `09:00` (for a time the clocks skip, the minute after the gap; in the hour the clocks go
/// back, either pass's: the wall clock reads 01:30 at both). A wait reached then goes on at
/// once, as quiet hours that end at 09:00 are over at 09:00.
fn at_its_minute(w: &WaitUntil, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let time = w.time_or_midnight();
    let date = now.to_zoned_datetime(tz.clone()).date();
    let day_ok = w.weekdays.is_empty() || w.weekdays.iter().any(|d| d.to_jiff() == date.weekday());
    if !day_ok {
        return None;
    }
    let dt = date.at(time.hour as i8, time.minute as i8, 0, 0);
    let within = |at: Timestamp| at <= now && now < at + SignedDuration::from_mins(1);
    let first = local_instant(tz, dt)?;
    if within(first) {
        return Some(first);
    }
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Fold { .. } => ambiguous.later().ok().filter(|at| within(*at)),
        _ => None,
    }
}

/// The first pass of the local time `at` shows in `tz`: `at` itself but in the hour the clocks
/// go back, where 01:30 EST is the 01:30 EDT an hour before. A time of day that came at its
/// first pass that night has come: its second does not come again for the same wait.
fn first_pass(tz: &TimeZone, at: Timestamp) -> Timestamp {
    local_instant(tz, tz.to_datetime(at)).unwrap_or(at)
}

/// Whether an event matches an `event`/`where` pair of `enrollment` (an `exit_when`, a goal, a
/// `wait_for`): its `where` reads the event as `event.*`, the enrollment's trigger as
/// `trigger.*` and what its latest `wait_for` met as `waited.*` (missing without an
/// enrollment: a late goal credited to the enrollment before, whose trigger is not kept).
pub fn matches(
    m: &EventMatch,
    event: &Event,
    profile: &Value,
    ctx: &Ctx<'_>,
    enrollment: Option<&Enrollment>,
) -> bool {
    event
        .event
        .as_deref()
        .is_some_and(|name| m.names_event(name))
        && m.condition
            .as_ref()
            .is_none_or(|c| c.eval(&event_scope(event, profile, ctx, enrollment)))
}

/// What a `where` on an event of `enrollment` reads (see [`matches`]).
fn event_scope<'a>(
    event: &'a Event,
    profile: &'a Value,
    ctx: &Ctx<'a>,
    enrollment: Option<&'a Enrollment>,
) -> Scope<'a> {
    static NONE: Value = Value::Null;
    Scope {
        event: &event.properties,
        trigger: enrollment.map_or(&NONE, |e| &*e.trigger.properties),
        waited: enrollment.map_or(&NONE, Enrollment::waited_properties),
        profile,
        now: ctx.now,
        zone: ctx.journey.default_zone(),
    }
}

/// Enrolls a user: the `n`th entry of `user_id` into the journey, because of `trigger`.
pub fn enter(ctx: &Ctx<'_>, user_id: &str, n: u32, trigger: TriggerEvent) -> Transition {
    enter_after(ctx, user_id, n, trigger, None, Vec::new())
}

/// [`enter`] for a user whose previous enrollment in the journey ended at `ended` (a trigger
/// that arrived late may be stamped before it): the events a `wait_for` of this one hears are
/// from after that end, not those the previous enrollment heard. `counted`: the split choices
/// her earlier enrollments were counted on ([`Enrollment::counted`]), so that a split she took
/// before is not counted again.
pub fn enter_after(
    ctx: &Ctx<'_>,
    user_id: &str,
    n: u32,
    trigger: TriggerEvent,
    ended: Option<Timestamp>,
    counted: Vec<crate::enrollment::Counted>,
) -> Transition {
    let j = ctx.journey;
    let first = j.first().unwrap_or_default().to_string();
    // Keyed by its trigger's value of the journey's `enrollment_key` (the runtime enters no one
    // on a trigger without one).
    let key: Option<Arc<str>> = j
        .key_of(&trigger.properties)
        .and_then(Result::ok)
        .map(Arc::from);
    let enrollment = Enrollment {
        id: Enrollment::id_for(&j.id, user_id, key.as_deref(), n).into(),
        user_id: user_id.into(),
        journey: j.id.as_str().into(),
        version: ctx.version,
        n,
        key,
        entered_at: ctx.now,
        trigger,
        waited: None,
        status: Status::Active,
        step: first.clone(),
        seq: 0,
        pending: None,
        waiting_for: None,
        wait_began: None,
        wait_heard: Vec::new(),
        converted_at: None,
        time_came: None,
        time_came_at: Vec::new(),
        ended_at: None,
        end_reason: None,
        outbox: Vec::new(),
        outbox_timeline: Vec::new(),
        outbox_cause: None,
        carried: Vec::new(),
        earlier_triggers: Vec::new(),
        counted_until: None,
        splits: Vec::new(),
        counted,
        previous: None,
        in_app: Vec::new(),
    };
    let at = enrollment.trigger.at;
    let mut run = Run::new(ctx, enrollment).moved_at(at, Mover::Trigger);
    if let Some(ended) = ended.filter(|e| *e >= at) {
        // Strictly after that end: an event at its instant may be the one that ended it.
        run.since = ended.min(ctx.now);
        run.after_known = true;
    }
    run.log(
        None,
        What::Entered {
            version: ctx.version,
            trigger: run.enrollment.trigger.event.clone(),
            detail: inactivity_judged(j, &run.enrollment.trigger),
        },
    );
    run.go(Some(first));
    run.finish()
}

/// What an `inactive` trigger's check judged, for the entry's timeline fact: her latest of the
/// events as her profile had it when the check read it (`inactive_since`, its trigger's one
/// field), and how long she had been inactive then. `None` for any other trigger.
fn inactivity_judged(j: &Journey, trigger: &TriggerEvent) -> Option<String> {
    let Some(TriggerKind::Inactive(i)) = j.trigger.kind() else {
        return None;
    };
    if trigger.event != "inactive" {
        return None;
    }
    let since: Timestamp = trigger
        .properties
        .get("inactive_since")?
        .as_str()?
        .parse()
        .ok()?;
    // To the minute: a check comes seconds after its time.
    let secs = u64::try_from(trigger.at.duration_since(since).as_secs()).unwrap_or(0);
    let quiet = crate::duration::Duration::from_secs(secs - secs % 60);
    Some(format!(
        "her check at {} read her profile: her latest of {} was at {since}, {quiet} before (`for: {}`)",
        trigger.at,
        i.events.join(", "),
        i.duration
    ))
}

/// A due wake-up for visit `seq`. `None` when it is stale (the enrollment moved on or ended).
pub fn wake(ctx: &Ctx<'_>, enrollment: &Enrollment, seq: u64) -> Option<Transition> {
    let pending = enrollment.pending?;
    if !enrollment.is_active() || pending.seq != seq {
        return None;
    }
    // A wake-up may arrive a little early (queues count whole seconds): it acts at its due time,
    // so a wait that ends at 08:00 is never judged at 07:59:59.
    let due = Ctx {
        now: ctx.now.max(pending.at),
        ..*ctx
    };
    let ctx = &due;
    let mut run = Run::new(ctx, resumed(enrollment)).moved_at(pending.at, Mover::WakeUp);
    run.held_over();
    run.enrollment.pending = None;
    let step = run.enrollment.step.clone();
    match pending.resume {
        Resume::Continue => {
            run.log(Some(&step), What::Woke { how: "time".into() });
            // A date waited for is past now: a loop back to this wait within the transition
            // would find it past again (see `passed_dates`). A time of day came: a loop back
            // to a wait for it within its minute waits for the next (see `at_its_minute`).
            match ctx.journey.step(&step).map(|s| s.action()) {
                Some(Action::WaitUntil(w)) if w.date.is_some() => {
                    run.passed_dates.push(step.clone());
                }
                Some(Action::WaitUntil(_)) => run.enrollment.note_time_came(&step, pending.at),
                _ => {}
            }
            let next = ctx.journey.next_of(&step).map(str::to_string);
            run.go(next);
        }
        Resume::Rerun | Resume::Recheck => {
            let how = if pending.resume == Resume::Rerun {
                // A date more than a year ahead is waited for a year at a time.
                match ctx.journey.step(&step).map(|s| s.action()) {
                    // Read again after the other journeys the event reached: their run did
                    // not (a fault stopped it), so this wake-up does.
                    Some(Action::WaitUntil(_)) if pending.read_again => "its date read again",
                    Some(Action::WaitUntil(_)) => "a year on",
                    _ => "quiet hours over",
                }
            } else {
                "address grace over"
            };
            run.log(Some(&step), What::Woke { how: how.into() });
            run.again_waiting(step, pending);
        }
        Resume::Timeout => {
            run.log(
                Some(&step),
                What::Woke {
                    how: "timeout".into(),
                },
            );
            run.enrollment.waiting_for = None;
            // Nothing met this wait: `waited.*` is missing after it, not an earlier wait's.
            run.enrollment.waited = None;
            let next = ctx
                .journey
                .step(&step)
                .and_then(|s| s.wait_for.as_ref())
                .and_then(|w| w.on_timeout.clone())
                .or_else(|| ctx.journey.next_of(&step).map(str::to_string));
            run.go(next);
        }
    }
    Some(run.finish())
}

/// The anonymous user of `enrollment` turned out to be `into` (an event carried both ids).
/// With `goes_on`, the enrollment goes on as `into`'s: this one ends, and the effects carry its
/// continuation ([`Effect::Move`]: the same id, step and wake-up time), so that it is
/// active under one user at a time. Without (`into` is in the journey already), it ends, and
/// its wait is cancelled, `ends` saying why, and its in-app messages go to `into`'s enrollment
/// ([`Effect::HandOver`]). `None` when it has ended already.
pub fn merge(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    into: &str,
    ends: Option<String>,
) -> Option<Transition> {
    let goes_on = ends.is_none();
    if !enrollment.is_active() {
        return None;
    }
    let mut run = Run::new(ctx, resumed(enrollment));
    let step = run.enrollment.step.clone();
    let what = What::Merged {
        from: enrollment.user_id.to_string(),
        into: into.to_string(),
        ended: !goes_on,
        reason: ends.clone(),
    };
    if goes_on {
        let mut next = resumed(enrollment);
        next.user_id = Arc::from(into);
        next.carried.clear();
        // A visit of its own, so that its wake-up is another message than the one cancelled
        // here (a timer is keyed by the message: a repeated cancel must not reach the new one).
        next.seq += 1;
        if let Some(p) = next.pending.as_mut() {
            p.seq = next.seq;
        }
        // The wake-up it had here is not wanted here any more; the continuation has its own.
        if let Some(p) = run.enrollment.pending.take() {
            run.effects.push(Effect::Cancel {
                seq: p.seq,
                at: p.at,
            });
        }
        run.effects.push(Effect::Move(Box::new(next)));
        run.enrollment.status = Status::Merged;
        run.enrollment.end_reason = Some(format!("goes on as {into}"));
    } else {
        run.cancel_pending(&step, "merged");
        // The user she turned out to be is in the journey: its messages are hers now, and her
        // enrollment withdraws them at her exit with its own.
        let messages = std::mem::take(&mut run.enrollment.in_app);
        if !messages.is_empty() {
            run.effects.push(Effect::HandOver(HandOver {
                enrollment: run.enrollment.id.clone(),
                to: Arc::from(into),
                messages,
            }));
        }
        run.enrollment.status = Status::Exited;
        run.enrollment.end_reason = ends;
    }
    run.enrollment.ended_at = Some(ctx.now);
    run.enrollment.waiting_for = None;
    run.log(Some(&step), what);
    Some(run.finish())
}

/// The `end_reason` of an enrollment its journey's stop ended (and of its withdrawal).
pub const STOPPED_REASON: &str = "journey stopped";

/// The journey was stopped: the enrollment ends at once, whatever step it is on, and its wait
/// is cancelled. `None` when it has ended already.
pub fn stop(ctx: &Ctx<'_>, enrollment: &Enrollment) -> Option<Transition> {
    if !enrollment.is_active() {
        return None;
    }
    let mut run = Run::new(ctx, resumed(enrollment));
    let step = run.enrollment.step.clone();
    run.cancel_pending(&step, "stopped");
    run.enrollment.status = Status::Exited;
    run.enrollment.ended_at = Some(ctx.now);
    run.enrollment.end_reason = Some(STOPPED_REASON.into());
    run.enrollment.waiting_for = None;
    run.log(Some(&step), What::Stopped);
    run.withdraw_in_app();
    Some(run.finish())
}

/// An identify reached a user whose send waits for an address (see [`ADDRESS_GRACE`]): when
/// one of the send's channels has an address now, the send runs at once instead of at the
/// grace's end, and its wake-up is cancelled. `None` when the enrollment is not waiting for an
/// address, or still lacks one.
pub fn address_arrived(ctx: &Ctx<'_>, enrollment: &Enrollment) -> Option<Transition> {
    if !enrollment.waits_for_address() {
        return None;
    }
    let step = ctx.journey.step(&enrollment.step)?;
    let Action::Send(send) = step.action() else {
        return None;
    };
    let locale = ctx.profile.traits.get("locale").and_then(Value::as_str);
    let localized = Localized::of(send, locale);
    let transactional = ctx.journey.transactional;
    if wants_address(ctx.profile, &localized, transactional) {
        return None;
    }
    // An address for one of its channels, or the identify said why none will do (an opt-out).
    let reached = [
        localized.send.template(),
        localized.fallback.and_then(|f| f.template()),
    ]
    .into_iter()
    .flatten()
    .any(|t| {
        ctx.profile
            .address_for(t.channel(), t.ignores_unsubscribe(transactional))
            .is_ok()
    });
    let how = if reached {
        "address arrived"
    } else {
        "an identify came: no address to wait for"
    };
    let mut run = Run::new(ctx, resumed(enrollment));
    run.held_over();
    let step = run.enrollment.step.clone();
    run.cancel_pending(&step, how);
    run.again(step);
    Some(run.finish())
}

/// An identify, or another journey's `update` step, reached a user waiting on a `wait_until`
/// date: when what the date is read from has changed (`profile.renews_on` set to another day,
/// or the user's zone for a date with a `time`), the wait is taken again from the new date: on
/// at once when it is past, ended when it is gone, or waiting until the new time, its old
/// wake-up cancelled. A wait on the time of day alone moves when the user's zone has changed
/// (the next 09:00 where she is now), and so does a send deferred by quiet hours (to their end
/// where she is now, or at once where it is day). `None` when the enrollment waits on no date
/// or time, or they lead to the wake-up it has.
pub fn date_moved(ctx: &Ctx<'_>, enrollment: &Enrollment) -> Option<Transition> {
    date_moved_by(ctx, enrollment, None)
}

/// [`date_moved`], `by` saying what changed the profile when it is known (`an identify`,
/// `journey plan's update`): the timeline's `woke` says it (`woke (the date it waits for
/// moved: journey plan's update)`).
pub fn date_moved_by(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    by: Option<&str>,
) -> Option<Transition> {
    if !enrollment.waits_for_time() {
        return None;
    }
    let pending = enrollment.pending?;
    let w = match ctx.journey.step(&enrollment.step)?.action() {
        Action::WaitUntil(w) => w,
        // A send deferred by quiet hours: they are the user's local hours, so the deferral
        // follows her to another zone (on at once where it is day, or to the end of the
        // night there). Not when it is due already (its wake-up is on its way).
        Action::Send(_) => {
            let q = ctx.journey.quiet_hours.as_ref()?;
            if pending.resume != Resume::Rerun || pending.at <= ctx.now {
                return None;
            }
            let tz = ctx.timezone();
            if quiet_until(ctx.now, &tz, q) == Some(pending.at) {
                return None;
            }
            // Not the end of quiet hours she is in now, yet the end of a night in her zone
            // (the night the clocks go back, quiet hours from 01:15 held a send at 01:20 until
            // 07:00, and the repeated hour brings 01:05 again, outside them): her zone did not
            // change, nor does the send's hold.
            let just_before = pending.at - SignedDuration::from_secs(1);
            if quiet_until(just_before, &tz, q) == Some(pending.at) {
                return None;
            }
            return Some(again_in_her_zone(ctx, enrollment));
        }
        _ => return None,
    };
    if w.date.is_none() {
        // The time of day alone: the next one in the user's zone, which may have changed (she
        // travels). Not when it is due already (its wake-up is on its way).
        if pending.resume != Resume::Continue || pending.at <= ctx.now {
            return None;
        }
        let tz = ctx.timezone();
        if next_time_of_day(w, ctx.now, &tz).1 == pending.at {
            return None;
        }
        // Not the next one from now, yet one of its times in her zone (the night the clocks
        // go back, a wait that had that night's 01:30 already waits for tomorrow's while the
        // repeated hour brings 01:30 again): her zone did not change, nor does the wait.
        let just_before = pending.at - SignedDuration::from_secs(1);
        if next_time_of_day(w, just_before, &tz).1 == pending.at {
            return None;
        }
        return Some(again_in_her_zone(ctx, enrollment));
    }
    // A date: not when its wake-up is due already (on its way: it goes on, or reads the date
    // again a year on, itself). Taken again here, a time that came while the wake-up was on
    // its way would be judged past.
    if pending.at <= ctx.now {
        return None;
    }
    let mut run = Run::new(ctx, resumed(enrollment));
    let same = match date_wait(w, &run.scope(), &ctx.timezone(), ctx.now) {
        // Still more than a year ahead: the yearly reading finds it.
        DateWait::Year { .. } => pending.resume == Resume::Rerun,
        DateWait::Until(at) => pending.resume == Resume::Continue && pending.at == at,
        // Past now, or gone: the step decides at once.
        DateWait::Past { .. } | DateWait::Missing => false,
    };
    // One not judged yet (see `SetMeanwhile`) is judged now, whatever it reads.
    if same && !pending.read_again {
        return None;
    }
    let step = run.enrollment.step.clone();
    let how = if pending.read_again {
        "its date read again"
    } else {
        "the date it waits for moved"
    };
    let how = match by {
        Some(by) => format!("{how}: {by}"),
        None => how.to_string(),
    };
    run.cancel_pending(&step, &how);
    run.again_waiting(step, pending);
    Some(run.finish())
}

/// The enrollment's step taken again in the user's new zone, its wake-up for the old one's
/// time cancelled.
fn again_in_her_zone(ctx: &Ctx<'_>, enrollment: &Enrollment) -> Transition {
    let mut run = Run::new(ctx, resumed(enrollment));
    run.held_over();
    let step = run.enrollment.step.clone();
    run.cancel_pending(&step, "the user's time zone changed");
    run.again(step);
    run.finish()
}

/// Whether `event` is one the journey exits on (`exit_when`), for this enrollment: sends it
/// still owes must not go out after it, even when its steps had already ended.
pub fn exits_on(ctx: &Ctx<'_>, enrollment: &Enrollment, event: &Event) -> bool {
    if event.event.is_none() || event.timestamp < enrollment.hears_from() {
        return false;
    }
    let profile = ctx.profile.scope();
    ctx.journey
        .exit_when
        .iter()
        .any(|m| matches(m, event, &profile, ctx, Some(enrollment)))
}

/// The goal's event happened at `at`, after the trigger, but reached the engine before the
/// trigger did (events out of order): the new enrollment converts in its entry transition `t`,
/// its messages going out all the same (nothing went out before the goal, so none is credited).
pub fn convert_late(ctx: &Ctx<'_>, t: &mut Transition, at: Timestamp) {
    let Some(goal) = &ctx.journey.goal else {
        return;
    };
    let e = &mut t.enrollment;
    let deadline = e
        .entered_at
        .checked_add(goal.within.to_jiff())
        .unwrap_or(e.entered_at);
    if e.converted_at.is_some() || at < e.hears_from() || at > deadline {
        return;
    }
    e.converted_at = Some(at);
    t.timeline.push(Entry {
        at: ctx.now,
        journey: e.journey.clone(),
        enrollment: e.id.clone(),
        step: Some(Arc::from(e.step.as_str())),
        what: What::Converted {
            event: goal.label(),
            splits: crate::timeline::credited(&e.splits, &e.counted, at),
            last_message: None,
            goal_at: (at != ctx.now).then_some(at),
        },
    });
}

/// A goal event that happened before `enrollment`'s trigger, in the window of the enrollment
/// before it (see [`Enrollment::previous`]), arriving only now (events out of order): that one
/// converts, credited in this transition of `enrollment` (whose record holds what is left of
/// it). `ctx.journey` is the version the previous enrollment entered with. `None` when the
/// event converts nothing.
pub fn convert_previous(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
) -> Option<Transition> {
    let goal = ctx.journey.goal.as_ref()?;
    previous_in_window(goal, enrollment, event.timestamp)?;
    if !matches(&goal.as_match(), event, &ctx.profile.scope(), ctx, None) {
        return None;
    }
    Some(previous_converted(ctx, goal, enrollment, event.timestamp))
}

/// [`convert_previous`] for an identify's `changes` of the trait the goal watches (`goal:
/// {trait_changed: plan}`): one stamped in the window of the enrollment before `enrollment`,
/// arriving only now, converts that one. Its `where` reads no `trigger.*` or `waited.*` (the
/// previous enrollment's are not kept), as for a late goal event.
pub fn convert_previous_change(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    identify: &Event,
    changes: &[TraitChanged],
) -> Option<Transition> {
    let goal = ctx.journey.goal.as_ref()?;
    goal.trait_changed.as_ref()?;
    previous_in_window(goal, enrollment, identify.timestamp)?;
    let profile = ctx.profile.scope();
    change_meets(&goal.as_match(), changes, &profile, ctx, None)?;
    Some(previous_converted(
        ctx,
        goal,
        enrollment,
        identify.timestamp,
    ))
}

/// The enrollment before `enrollment`, when `at` is in its goal's window: at or after its
/// trigger, before `enrollment` hears her, within `goal.within` of its entry.
fn previous_in_window<'e>(
    goal: &crate::journey::Goal,
    enrollment: &'e Enrollment,
    at: Timestamp,
) -> Option<&'e crate::enrollment::Previous> {
    let prev = enrollment.previous.as_deref()?;
    let deadline = prev
        .entered_at
        .checked_add(goal.within.to_jiff())
        .unwrap_or(prev.entered_at);
    (at >= prev.trigger_at && at < enrollment.hears_from() && at <= deadline).then_some(prev)
}

/// The enrollment before `enrollment` converts on its goal at `at` (see [`convert_previous`]).
fn previous_converted(
    ctx: &Ctx<'_>,
    goal: &crate::journey::Goal,
    enrollment: &Enrollment,
    at: Timestamp,
) -> Transition {
    // Converted once: nothing more to keep of it (a repeat of the event finds none).
    let mut next = resumed(enrollment);
    let prev = next.previous.take();
    let entry = prev.map(|prev| {
        // Counted on its paths unless a conversion of hers was already; noted for the
        // enrollments that follow (this one inherited its choices as not converted).
        let splits = crate::timeline::credited(&prev.splits, &next.counted, at);
        for c in &splits {
            next.note_counted(&c.step, c.path.as_deref(), true);
        }
        Entry {
            at: ctx.now,
            journey: next.journey.clone(),
            enrollment: prev.id.clone(),
            step: Some(Arc::from(prev.step.as_str())),
            what: What::Converted {
                event: goal.label(),
                splits,
                // The runtime credits it (it knows which messages went out).
                last_message: None,
                goal_at: (at != ctx.now).then_some(at),
            },
        }
    });
    Transition {
        enrollment: next,
        effects: Vec::new(),
        timeline: entry.into_iter().collect(),
    }
}

/// An exit event that happened after the trigger but reached the engine before it (events out
/// of order; its `where`, if it has one, was met when it came: see `Profile::marks`): the new
/// enrollment exits at once. `None` when it has ended already.
pub fn exit_late(ctx: &Ctx<'_>, enrollment: &Enrollment, event: &Event) -> Option<Transition> {
    let name = event.event.as_deref()?;
    if !enrollment.is_active() || event.timestamp < enrollment.hears_from() {
        return None;
    }
    let mut run = Run::new(ctx, resumed(enrollment));
    run.exit(name);
    Some(run.finish())
}

/// `enrollment`, just entered, as still on its last step when its steps all ran at entry and
/// it completed there (a send, then its end): an exit that happened after its trigger but was
/// applied before it ([`exit_late`], [`exit_late_change`]) ends it as it ends one that waits.
/// `None` for any other (active, or ended otherwise).
pub fn reopened_at_entry(enrollment: &Enrollment) -> Option<Enrollment> {
    if enrollment.status != Status::Completed || enrollment.ended_at != Some(enrollment.entered_at)
    {
        return None;
    }
    let mut e = enrollment.clone();
    e.status = Status::Active;
    e.ended_at = None;
    e.end_reason = None;
    Some(e)
}

/// A change of a trait an exit or the goal watches, made by an identify stamped at or after an
/// enrollment's trigger but applied before the trigger came (events out of order), as the
/// profile noted it (`Profile::trait_changes`): found at entry ([`late_changes`]).
#[derive(Debug, Clone)]
pub struct LateChange {
    /// The trait, and the change as an exit's `where` reads it (`{trait, from, to}`).
    pub change: TraitChanged,
    /// The identify's stamp.
    pub at: Timestamp,
    /// The identify's messageId.
    pub message_id: String,
}

/// The changes noted on the profile that `enrollment`, just entered, would have heard had its
/// trigger come first: of a trait its version's exits or goal watch, by an identify stamped at
/// or after its trigger (not the identify that entered it), oldest first. A note written
/// before notes kept the identify's stamp is left out.
pub fn late_changes(ctx: &Ctx<'_>, enrollment: &Enrollment) -> Vec<LateChange> {
    let mut out: Vec<LateChange> = Vec::new();
    // A profile with no notes (the most, and any without a watched trait) has none to find.
    if ctx.profile.trait_changes.is_empty() {
        return out;
    }
    let mut watched: Vec<&str> = ctx.journey.watched_once_entered().collect();
    watched.sort_unstable();
    watched.dedup();
    for name in watched {
        let Some(notes) = ctx.profile.trait_changes.get(name) else {
            continue;
        };
        for c in notes {
            let Some(at) = c.at else {
                continue;
            };
            // One at the trigger's own instant counts: processed after the trigger it would
            // have reached her too (`changes_reach`), as an exit or goal event of that instant.
            if at < enrollment.hears_from() || enrollment.entered_by(&c.message_id) {
                continue;
            }
            out.push(LateChange {
                change: (name.to_string(), Arc::new(c.properties(name))),
                at,
                message_id: c.message_id.clone(),
            });
        }
    }
    out.sort_by_key(|c| c.at);
    out
}

/// The first of `changes` (oldest first) that meets `m`, an exit or the goal, for `enrollment`.
fn late_change_meets<'c>(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    m: &EventMatch,
    changes: &'c [LateChange],
    skip: Option<Timestamp>,
) -> Option<&'c LateChange> {
    let profile = ctx.profile.scope();
    changes.iter().filter(|c| Some(c.at) != skip).find(|c| {
        change_meets(
            m,
            std::slice::from_ref(&c.change),
            &profile,
            ctx,
            Some(enrollment),
        )
        .is_some()
    })
}

/// The goal watching a trait's change, met by one of `changes` ([`late_changes`]): the new
/// enrollment converts in its entry transition `t`, as for a goal event that came first
/// ([`convert_late`]); not on the change the enrollment before it converted on (`converted`:
/// counted once).
pub fn convert_late_change(
    ctx: &Ctx<'_>,
    t: &mut Transition,
    changes: &[LateChange],
    converted: Option<Timestamp>,
) {
    let Some(goal) = &ctx.journey.goal else {
        return;
    };
    if goal.trait_changed.is_none() {
        return;
    }
    // Not the change the enrollment before converted on: the first other one.
    if let Some(c) = late_change_meets(ctx, &t.enrollment, &goal.as_match(), changes, converted) {
        let at = c.at;
        if converted != Some(at) {
            convert_late(ctx, t, at);
        }
    }
}

/// The goal watching a trait's change, met by one of `changes` ([`late_changes`]), for an
/// enrollment a login moved to the user: the change that met it, and its conversion. `None`
/// when none meets it, it converted already, or the user's own enrollment it replaced converted
/// on that change (`converted`: counted once).
pub fn convert_moved_change<'c>(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    changes: &'c [LateChange],
    converted: Option<Timestamp>,
) -> Option<(&'c LateChange, Transition)> {
    let goal = ctx.journey.goal.as_ref()?;
    goal.trait_changed.as_ref()?;
    if enrollment.converted_at.is_some() {
        return None;
    }
    let c = late_change_meets(ctx, enrollment, &goal.as_match(), changes, converted)?;
    if converted == Some(c.at) {
        return None;
    }
    let mut t = Run::new(ctx, resumed(enrollment)).finish();
    convert_late(ctx, &mut t, c.at);
    t.enrollment.converted_at.is_some().then_some((c, t))
}

/// An exit watching a trait's change, met by one of `changes` ([`late_changes`]): the new
/// enrollment exits at once, as on a late exit event ([`exit_late`]), its reason and timeline
/// naming it as the identify would have (`trait_changed plan`). The change that met it, and
/// the exit's transition. `None` when none meets one, or it has ended already.
pub fn exit_late_change<'c>(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    changes: &'c [LateChange],
) -> Option<(&'c LateChange, Transition)> {
    if !enrollment.is_active() {
        return None;
    }
    let (m, c) = changes.iter().find_map(|c| {
        ctx.journey
            .exit_when
            .iter()
            .filter(|m| m.trait_changed.is_some())
            .find(|m| {
                late_change_meets(ctx, enrollment, m, std::slice::from_ref(c), None).is_some()
            })
            .map(|m| (m, c))
    })?;
    let mut run = Run::new(ctx, resumed(enrollment));
    run.exit(&m.label());
    Some((c, run.finish()))
}

/// An event for a user already enrolled: goal, exit and `wait_for`. `None` when it changes nothing.
pub fn on_event(ctx: &Ctx<'_>, enrollment: &Enrollment, event: &Event) -> Option<Transition> {
    event_of(ctx, enrollment, event, false, None)
}

/// [`on_event`] when the person's other enrollment of the journey converted at `converted`
/// (a merge the event brought converted the visitor's): an event of that instant does not
/// convert this one too (one order, one conversion).
pub fn on_event_converted(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
    converted: Option<Timestamp>,
) -> Option<Transition> {
    event_of(ctx, enrollment, event, false, converted)
}

/// [`on_event`] for an exit found after the fact (see `Profile::marks`): the user's exit event
/// that happened after the trigger, found when an anonymous enrollment moved to her. Its
/// `where`, if it has one, was met when the event came; the event handed here carries no
/// properties to read it on again. `converted` is when the person's other enrollment of the
/// journey converted, if it did (the visitor's she turned out to be, or hers): an exit event
/// of that instant is the goal event that converted it, and does not convert this one too
/// (one order, one conversion).
pub fn on_late_exit(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
    converted: Option<Timestamp>,
) -> Option<Transition> {
    event_of(ctx, enrollment, event, true, converted)
}

fn event_of(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
    exit_met: bool,
    converted: Option<Timestamp>,
) -> Option<Transition> {
    let j = ctx.journey;
    let name = event.event.as_deref()?;
    // Only what happened after the trigger (the count it made) counts.
    if event.timestamp < enrollment.hears_from() {
        return None;
    }
    let profile = ctx.profile.scope();
    let mut run = Run::new(ctx, resumed(enrollment))
        .moved_at(event.timestamp, Mover::Event(&event.message_id));
    let mut changed = false;

    if let Some(goal) = &j.goal {
        let m = goal.as_match();
        let deadline = enrollment
            .entered_at
            .checked_add(goal.within.to_jiff())
            .unwrap_or(enrollment.entered_at);
        if run.enrollment.converted_at.is_none()
            && converted != Some(event.timestamp)
            && event.timestamp <= deadline
            && matches(&m, event, &profile, ctx, Some(enrollment))
        {
            run.convert(event.timestamp, name.to_string());
            changed = true;
        }
    }
    if !run.enrollment.is_active() {
        return changed.then(|| run.finish());
    }

    let exits = if exit_met {
        j.exit_when.iter().any(|m| m.names_event(name))
    } else {
        j.exit_when
            .iter()
            .any(|m| matches(m, event, &profile, ctx, Some(enrollment)))
    };
    if exits {
        run.exit(name);
        return Some(run.finish());
    }

    if let Some((w, way)) = wait_taking(j, &run.enrollment, name) {
        let step = run.enrollment.step.clone();
        let m = EventMatch::event(way.event, way.condition.cloned());
        // An event from before the wait began, delivered late, is not the one waited for (it
        // would not have been, delivered on time).
        let began = run.enrollment.wait_began(w.timeout.to_jiff());
        if began.is_some_and(|b| event.timestamp < b) {
            return changed.then(|| run.finish());
        }
        // Nor one from after its timeout (stamped ahead of the clock, or reaching an engine
        // whose timeout's wake-up is late): the timeout decides.
        let timeout = run
            .enrollment
            .pending
            .filter(|p| p.resume == Resume::Timeout);
        if timeout.is_some_and(|p| event.timestamp > p.at) {
            return changed.then(|| run.finish());
        }
        if matches(&m, event, &profile, ctx, Some(enrollment)) {
            // A wait with several paths says which event met it, and so which path is taken.
            let how = if w.has_paths() {
                format!("event: {name}")
            } else {
                "event".to_string()
            };
            run.cancel_pending(&step, &how);
            run.enrollment.waiting_for = None;
            // Later steps read it as `waited.*`.
            run.enrollment.waited = Some(TriggerEvent {
                event: name.to_string(),
                message_id: event.message_id.clone(),
                at: event.timestamp,
                properties: event.properties.clone(),
            });
            let next = way
                .goto
                .map(str::to_string)
                .or_else(|| j.next_of(&step).map(str::to_string));
            run.go(next);
            return Some(run.finish());
        }
    }
    changed.then(|| run.finish())
}

/// The `wait_for` `enrollment` waits at, and its way that an event named `name` would meet it
/// by: `None` when it waits for no such event.
fn wait_taking<'j>(
    j: &'j Journey,
    enrollment: &Enrollment,
    name: &str,
) -> Option<(&'j WaitFor, WaitWay<'j>)> {
    let waiting = enrollment.waiting_for.as_deref()?;
    let w = j.step(&enrollment.step)?.wait_for.as_ref()?;
    let way = w.way_for(name)?;
    (waiting == w.events_label()).then_some((w, way))
}

/// One change of a profile trait an identify made, as exits and goals that watch the trait read
/// it: the trait's name, and `{trait, from, to}` (their `event.*`).
pub type TraitChanged = (String, Arc<Value>);

/// Whether an identify's `changes` meet `m` (an `exit_when`, a goal written as one) for
/// `enrollment`: one of them is of the trait it watches, and its `where` holds on it (as
/// `event.*`, with `profile.*` the profile after the identify). The change that met it.
fn change_meets<'c>(
    m: &EventMatch,
    changes: &'c [TraitChanged],
    profile: &Value,
    ctx: &Ctx<'_>,
    enrollment: Option<&Enrollment>,
) -> Option<&'c TraitChanged> {
    changes.iter().find(|(name, properties)| {
        m.watches(name)
            && m.condition
                .as_ref()
                .is_none_or(|c| c.eval(&change_scope(properties, profile, ctx, enrollment)))
    })
}

/// What a `where` on a trait change of `enrollment` reads: the change as `event.*` (and no
/// `trigger.*` or `waited.*` without an enrollment, as [`event_scope`]).
fn change_scope<'a>(
    change: &'a Value,
    profile: &'a Value,
    ctx: &Ctx<'a>,
    enrollment: Option<&'a Enrollment>,
) -> Scope<'a> {
    static NONE: Value = Value::Null;
    Scope {
        event: change,
        trigger: enrollment.map_or(&NONE, |e| &*e.trigger.properties),
        waited: enrollment.map_or(&NONE, Enrollment::waited_properties),
        profile,
        now: ctx.now,
        zone: ctx.journey.default_zone(),
    }
}

/// Whether the identify `identify` is one that trait changes of `enrollment` may come with:
/// after the trigger, and not the very identify that entered it (a journey entered on the
/// change of `plan` that exits on it is not left by its own trigger).
fn changes_reach(enrollment: &Enrollment, identify: &Event) -> bool {
    identify.timestamp >= enrollment.hears_from() && !enrollment.entered_by(&identify.message_id)
}

/// Whether an identify's `changes` are one the journey exits on (an `exit_when` with
/// `trait_changed`), for this enrollment: as [`exits_on`] for an event, sends it still owes
/// must not go out after it.
pub fn exits_on_change(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    identify: &Event,
    changes: &[TraitChanged],
) -> bool {
    if changes.is_empty() || !changes_reach(enrollment, identify) {
        return false;
    }
    let profile = ctx.profile.scope();
    ctx.journey
        .exit_when
        .iter()
        .any(|m| change_meets(m, changes, &profile, ctx, Some(enrollment)).is_some())
}

/// An identify's changes of profile traits (`changes`, as the profile update found them: see
/// `Profile::apply_watching`) for a user already enrolled: the goal and the exits that watch one
/// of them (`{trait_changed: plan, where: "event.to == 'pro'"}`), as an event meets a goal or an
/// exit. The exit's reason and the timeline name it `trait_changed plan`. `None` when they
/// change nothing.
pub fn on_trait_changes(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    identify: &Event,
    changes: &[TraitChanged],
) -> Option<Transition> {
    if changes.is_empty() || !changes_reach(enrollment, identify) {
        return None;
    }
    let j = ctx.journey;
    let profile = ctx.profile.scope();
    let mut run = Run::new(ctx, resumed(enrollment))
        .moved_at(identify.timestamp, Mover::Event(&identify.message_id));
    let mut changed = false;
    if let Some(goal) = &j.goal {
        let deadline = enrollment
            .entered_at
            .checked_add(goal.within.to_jiff())
            .unwrap_or(enrollment.entered_at);
        if run.enrollment.converted_at.is_none()
            && identify.timestamp <= deadline
            && change_meets(&goal.as_match(), changes, &profile, ctx, Some(enrollment)).is_some()
        {
            run.convert(identify.timestamp, goal.label());
            changed = true;
        }
    }
    if !run.enrollment.is_active() {
        return changed.then(|| run.finish());
    }
    let exit = j
        .exit_when
        .iter()
        .find(|m| change_meets(m, changes, &profile, ctx, Some(enrollment)).is_some());
    if let Some(m) = exit {
        run.exit(&m.label());
        return Some(run.finish());
    }
    changed.then(|| run.finish())
}

/// The exits watching a trait an identify changed whose `where` was false for the change (when
/// no exit took it): each an [`What::Unmet`] entry, as [`unmet`] says of an event's.
pub fn unmet_changes(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    identify: &Event,
    changes: &[TraitChanged],
) -> Vec<Entry> {
    if changes.is_empty() || !enrollment.is_active() || !changes_reach(enrollment, identify) {
        return Vec::new();
    }
    let j = ctx.journey;
    let profile = ctx.profile.scope();
    if j.exit_when
        .iter()
        .any(|m| change_meets(m, changes, &profile, ctx, Some(enrollment)).is_some())
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for m in &j.exit_when {
        let Some(c) = m.condition.as_ref() else {
            continue;
        };
        for (name, properties) in changes.iter().filter(|(name, _)| m.watches(name)) {
            let scope = change_scope(properties, &profile, ctx, Some(enrollment));
            out.push(Entry {
                at: ctx.now,
                journey: enrollment.journey.clone(),
                enrollment: enrollment.id.clone(),
                step: Some(Arc::from(enrollment.step.as_str())),
                what: What::Unmet {
                    event: format!("trait_changed {name}"),
                    by: "exit_when".to_string(),
                    detail: Some(c.why_false(&scope)),
                },
            });
        }
    }
    out
}

/// How the detail of an [`What::Unmet`] entry for an event that happened before the wait that
/// names it began, or before the enrollment's trigger, starts (see [`unmet`]).
pub const BEFORE_THE_WAIT: &str = "happened at ";

/// What `event` would have done to `enrollment` but for a `where` that was false: an
/// `exit_when` naming it (when no other exit took it), or the `wait_for` the enrollment waits
/// at for it (in its window), each an [`What::Unmet`] entry saying the condition and what it
/// read; or that `wait_for` again, when the event happened before the wait began (stamped by
/// a clock behind, or delivered late): its entry says when each was; so does one for the exit
/// (else the goal) naming an event that happened before the enrollment's trigger (a real-time
/// stamp against a sped-up dev clock, a phone's clock behind). Empty when an exit or the
/// wait took the event, or nothing listens for it (a goal it met is said by its own entry).
/// Of a journey with an `enrollment_key`, a `where` comparing the key's place on the event
/// and the trigger says nothing of an event for another value of the key (see
/// [`for_another_key`]): a cancellation of one booking is not unmet at each other booking's.
pub fn unmet(ctx: &Ctx<'_>, enrollment: &Enrollment, event: &Event) -> Vec<Entry> {
    let j = ctx.journey;
    let Some(name) = event.event.as_deref() else {
        return Vec::new();
    };
    if !enrollment.is_active() {
        return Vec::new();
    }
    if event.timestamp < enrollment.hears_from() {
        // Before the enrollment: no exit of it, nor its goal or its wait, hears the event;
        // said for the exit (else the goal) and the wait that name it, as support asks why
        // she was still emailed after she ordered.
        return before_the_trigger(ctx, enrollment, event, name)
            .into_iter()
            .chain(before_the_wait(ctx, enrollment, event, name))
            .collect();
    }
    // Of a keyed journey, a `where` that tells its enrollments apart by the key is not unmet
    // by an event for another value of it (a cancellation of booking B1 at B2's enrollment):
    // that event was never about this one.
    let another = |c: &crate::condition::Condition| for_another_key(j, enrollment, event, c);
    let profile = ctx.profile.scope();
    let scope = event_scope(event, &profile, ctx, Some(enrollment));
    let said = |by: &str, c: &crate::condition::Condition| {
        let detail = c.why_false(&scope);
        Entry {
            at: ctx.now,
            journey: enrollment.journey.clone(),
            enrollment: enrollment.id.clone(),
            step: Some(Arc::from(enrollment.step.as_str())),
            what: What::Unmet {
                event: name.to_string(),
                by: by.to_string(),
                detail: Some(detail),
            },
        }
    };
    if j.exit_when
        .iter()
        .any(|m| matches(m, event, &profile, ctx, Some(enrollment)))
    {
        return Vec::new();
    }
    let mut out: Vec<Entry> = j
        .exit_when
        .iter()
        .filter(|m| m.names_event(name))
        .filter_map(|m| m.condition.as_ref())
        .filter(|c| !another(c))
        .map(|c| said("exit_when", c))
        .collect();
    if let Some((w, way)) = wait_taking(j, enrollment, name) {
        let began = enrollment.wait_began(w.timeout.to_jiff());
        let timeout = enrollment.pending.filter(|p| p.resume == Resume::Timeout);
        let in_window = began.is_none_or(|b| event.timestamp >= b)
            && timeout.is_none_or(|p| event.timestamp <= p.at);
        out.extend(before_the_wait(ctx, enrollment, event, name));
        if in_window {
            match way.condition {
                // The wait takes the event: it moved the enrollment.
                None => return Vec::new(),
                Some(c) if c.eval(&scope) => return Vec::new(),
                Some(c) if another(c) => {}
                Some(c) => out.push(said("wait_for", c)),
            }
        }
    }
    out
}

/// The [`What::Unmet`] entry of an event (named `name`) that happened before `enrollment`'s
/// trigger, which its exits and goal therefore do not take: `by: exit_when` when an exit
/// names it, else `goal` when the goal does (and has not converted the enrollment yet), its
/// detail saying when each was, in the words of [`BEFORE_THE_WAIT`]. One entry for the event
/// however many name it; none for an event of another value of the journey's key (see
/// [`for_another_key`]), nor for one nothing of the two names.
fn before_the_trigger(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
    name: &str,
) -> Option<Entry> {
    let j = ctx.journey;
    let about = |c: Option<&crate::condition::Condition>| {
        c.is_none_or(|c| !for_another_key(j, enrollment, event, c))
    };
    let exit = j
        .exit_when
        .iter()
        .any(|m| m.names_event(name) && about(m.condition.as_ref()));
    let goal = || {
        enrollment.converted_at.is_none()
            && j.goal
                .as_ref()
                .is_some_and(|g| g.names_event(name) && about(g.condition.as_ref()))
    };
    let by = if exit {
        "exit_when"
    } else if goal() {
        "goal"
    } else {
        return None;
    };
    Some(Entry {
        at: ctx.now,
        journey: enrollment.journey.clone(),
        enrollment: enrollment.id.clone(),
        step: Some(Arc::from(enrollment.step.as_str())),
        what: What::Unmet {
            event: name.to_string(),
            by: by.to_string(),
            detail: Some(format!(
                "{BEFORE_THE_WAIT}{}, before the enrollment's trigger at {}: an enrollment's exits and goal hear the events from its trigger on",
                event.timestamp,
                enrollment.hears_from()
            )),
        },
    })
}

/// The [`What::Unmet`] entry of the `wait_for` `enrollment` waits at for `event` (named
/// `name`) when the event happened before the wait began: the wait does not take it, and its
/// entry says when each was. `None` for any other event.
fn before_the_wait(
    ctx: &Ctx<'_>,
    enrollment: &Enrollment,
    event: &Event,
    name: &str,
) -> Option<Entry> {
    let (w, way) = wait_taking(ctx.journey, enrollment, name)?;
    if way
        .condition
        .is_some_and(|c| for_another_key(ctx.journey, enrollment, event, c))
    {
        return None;
    }
    let began = enrollment
        .wait_began(w.timeout.to_jiff())
        .filter(|b| event.timestamp < *b)?;
    Some(Entry {
        at: ctx.now,
        journey: enrollment.journey.clone(),
        enrollment: enrollment.id.clone(),
        step: Some(Arc::from(enrollment.step.as_str())),
        what: What::Unmet {
            event: name.to_string(),
            by: "wait_for".to_string(),
            detail: Some(format!(
                "{BEFORE_THE_WAIT}{}, before the wait began at {began}: a wait hears the events from when the user reached it",
                event.timestamp
            )),
        },
    })
}

/// Whether `event` is, for condition `c` of keyed journey `j`, about another of the user's
/// enrollments than `enrollment`: `c` holds only when the key's place on the event equals
/// the trigger's ([`crate::condition::Condition::requires_same_key`]: `event.booking_id ==
/// trigger.booking_id`, alone or in an `and`), and the event holds there a value of the key (as an entry reads one:
/// `1.0` is `1`) other than the enrollment's. An event with no value there, or the same one,
/// is about it: its `where` being false is worth an [`What::Unmet`] entry.
fn for_another_key(
    j: &Journey,
    enrollment: &Enrollment,
    event: &Event,
    c: &crate::condition::Condition,
) -> bool {
    let (Some(key), Some(ours)) = (j.enrollment_key.as_ref(), enrollment.key.as_deref()) else {
        return false;
    };
    c.requires_same_key(key)
        && matches!(j.key_of(&event.properties), Some(Ok(theirs)) if theirs != ours)
}

/// Why `j`'s entry rule refuses `profile`, whose last entry was `e`, another entry on a trigger
/// at `at`, if it does.
///
/// `after:` runs from the last entry's trigger to this one's: the times the user did them, or
/// the minutes a schedule's cron named, so that neither a late event nor a scheduler a few
/// seconds later one week than the last moves it (on purpose, a trigger that arrives days late
/// counts from when it happened, as the API took it); whole days are days in the user's zone
/// ([`reentry_zone`]: the same local time N days on), so a weekly schedule with `after: 7d`
/// enters every week across a change of the clocks.
pub fn reentry_refusal(
    j: &Journey,
    e: &Enrollment,
    at: Timestamp,
    profile: &Profile,
) -> Option<String> {
    reentry_refusal_after(j, e.entered_at, e.trigger.at, at, profile)
}

/// [`reentry_refusal`] for a last entry known by when it entered and when its trigger was (a
/// keyed value's [`crate::enrollment::LastEntry`], once its enrollment's record is gone).
pub fn reentry_refusal_after(
    j: &Journey,
    entered_at: Timestamp,
    trigger_at: Timestamp,
    at: Timestamp,
    profile: &Profile,
) -> Option<String> {
    match &j.reentry {
        Reentry::Never => Some(format!(
            "`reentry: never`, and the user entered on {entered_at}"
        )),
        Reentry::AfterExit => None,
        Reentry::After(d) => {
            let again = reentry_from(trigger_at, d, &reentry_zone(j, profile));
            (again > at).then(|| format!("`reentry: after {d}`: may enter again from {again}"))
        }
    }
}

/// When `j`'s `reentry: after` lets `profile` in again after an entry whose trigger was at
/// `trigger_at`; `None` for the other rules (`never` never does, `after_exit` at its end).
pub fn reentry_again(j: &Journey, trigger_at: Timestamp, profile: &Profile) -> Option<Timestamp> {
    match &j.reentry {
        Reentry::After(d) => Some(reentry_from(trigger_at, d, &reentry_zone(j, profile))),
        Reentry::Never | Reentry::AfterExit => None,
    }
}

/// When `reentry: after d` lets a user whose last entry's trigger was at `last` in again: its
/// weeks and days on in `zone` (the same local time), then its hours, minutes and seconds
/// exactly (`24h` is 24 hours also across a change of the clocks).
pub fn reentry_from(
    last: Timestamp,
    d: &crate::duration::DateOffset,
    zone: &jiff::tz::TimeZone,
) -> Timestamp {
    let exact = jiff::SignedDuration::from_secs(i64::try_from(d.exact_secs()).unwrap_or(i64::MAX));
    let days = i64::try_from(d.days()).unwrap_or(i64::MAX);
    let on = if days == 0 {
        last
    } else {
        last.to_zoned_datetime(zone.clone())
            .checked_add(jiff::Span::new().days(days))
            .map(|z| z.timestamp())
            .unwrap_or_else(|_| last + jiff::SignedDuration::from_hours(24 * days))
    };
    on.checked_add(exact).unwrap_or(on)
}

/// The zone whose days `reentry: after` counts for `profile` in `j`: a schedule's own zone
/// when its cron runs in one, else the user's (the journey's default zone, then UTC).
pub fn reentry_zone(j: &Journey, profile: &Profile) -> jiff::tz::TimeZone {
    match j.trigger.kind() {
        Some(TriggerKind::Schedule(s)) if s.timezone != "user" => {
            crate::template::zone_of(Some(&s.timezone), None)
        }
        _ => crate::template::zone_of(
            profile.traits.get("timezone").and_then(Value::as_str),
            j.default_zone(),
        ),
    }
}

/// An SMS body with each no-break or other typographic space (`currency`'s `89,90\u{a0}€`,
/// `fr`'s `1\u{202f}234`, `es`'s `a.\u{202f}m.`, or one in a user's own data) an ordinary
/// space. None of them is in the GSM 03.38 alphabet: one alone makes SNS send the whole
/// message as UCS-2, in parts of 70 characters instead of 160, so that it costs double.
fn plain_spaces(body: String) -> String {
    // Unicode's space separators (Zs) but the ASCII one: whitespace that is no control
    // character and no line or paragraph separator.
    let typographic = |c: char| {
        c.is_whitespace() && c != ' ' && !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !body.contains(typographic) {
        return body;
    }
    body.chars()
        .map(|c| if typographic(c) { ' ' } else { c })
        .collect()
}

/// A subject as one line: each run of line breaks (and other control characters) in what a
/// user's data brought into it (`hello\r\nBcc: ...`) is one space. A subject is a header: a
/// line break in it would start another.
fn one_line(subject: String) -> String {
    if !subject.chars().any(char::is_control) {
        return subject;
    }
    let mut out = String::with_capacity(subject.len());
    let mut gap = false;
    for c in subject.chars() {
        if c.is_control() {
            gap = true;
            continue;
        }
        if std::mem::take(&mut gap) && !out.is_empty() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// The path a user lands on in a split: a stable hash of (user, journey, step) into 0..10000.
pub fn bucket(user_id: &str, journey: &str, step: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{journey}\u{0}{step}\u{0}{user_id}").as_bytes());
    let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    n % 10_000
}

/// The next instant strictly after `now` at local `time` on one of `weekdays` (any day if empty).
pub fn next_local_time(
    now: Timestamp,
    tz: &TimeZone,
    time: TimeOfDay,
    weekdays: &[Weekday],
) -> Timestamp {
    let local = now.to_zoned_datetime(tz.clone());
    let mut date = local.date();
    // Today and the next seven days, and one more for a week with a day the clocks skip.
    for _ in 0..9 {
        let day_ok = weekdays.is_empty() || weekdays.iter().any(|d| d.to_jiff() == date.weekday());
        if day_ok {
            let dt = date.at(time.hour as i8, time.minute as i8, 0, 0);
            let ambiguous = tz.to_ambiguous_timestamp(dt);
            // A day the clocks skip whole (Apia's 30 December 2011) has no such time: the next
            // day that has it does (the next Friday, for a Friday wait: weekdays are judged
            // on the days her wall clock shows).
            if let Some(ts) = on_its_day(tz, dt) {
                if ts > now {
                    return ts;
                }
            }
            // In the hour the clocks go back the time comes twice. Its second pass counts only
            // when the wall clock has not reached it yet (at 01:10 in the second pass, 01:30 is
            // twenty minutes away, not a day); once it has (01:30:05 in the first pass, a loop
            // back to this wait), the time came today, as a schedule fires once.
            let fold = matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Fold { .. });
            if fold && local.datetime() < dt {
                if let Ok(ts) = ambiguous.later() {
                    if ts > now {
                        return ts;
                    }
                }
            }
        }
        match date.tomorrow() {
            Ok(d) => date = d,
            Err(_) => break,
        }
    }
    now
}

/// The instant of a local time of day on a day in `tz`: in the hour the clocks go back, its first
/// pass; a time the clocks skip (02:30 on a spring night in Paris) is the first instant after the
/// gap (03:00 there), not as far past it as the gap is long. When the gap swallows the rest of
/// that day (Apia moved across the date line, and 30 December 2011 never happened there), the
/// time is the same time on the next day that has it (09:00 on the 31st), not the midnight after
/// the gap: that would be another day's time, a second one on the 31st for a daily wait.
pub fn local_instant(tz: &TimeZone, dt: jiff::civil::DateTime) -> Option<Timestamp> {
    let mut dt = dt;
    // No zone has skipped more than a day at once; a few tries bound the search.
    for _ in 0..3 {
        if let Some(at) = on_its_day(tz, dt) {
            return Some(at);
        }
        dt = dt.checked_add(jiff::Span::new().days(1)).ok()?;
    }
    None
}

/// [`local_instant`] on `dt`'s own day only: none when the first instant after a gap holding
/// `dt` falls on another local day.
fn on_its_day(tz: &TimeZone, dt: jiff::civil::DateTime) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    let at = match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Gap { .. } => {
            let before_gap = ambiguous.earlier().ok()?;
            tz.following(before_gap).next().map(|t| t.timestamp())?
        }
        _ => ambiguous.compatible().ok()?,
    };
    (tz.to_datetime(at).date() == dt.date()).then_some(at)
}

/// If `now` falls in the quiet window (user's local time), the instant the window ends.
pub fn quiet_until(now: Timestamp, tz: &TimeZone, q: &QuietHours) -> Option<Timestamp> {
    let local = now.to_zoned_datetime(tz.clone());
    let minute = local.time().hour() as u32 * 60 + local.time().minute() as u32;
    let (start, end) = (q.start.minutes(), q.end.minutes());
    let inside = if start <= end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    };
    if !inside || start == end {
        return None;
    }
    Some(next_local_time(now, tz, q.end, &[]))
}

/// When a `wait_until` with a `date` ends: the time its path reads (an RFC 3339 time, a local
/// date and time or a `YYYY-MM-DD` date in `tz`, or seconds or milliseconds since 1970), moved by `before`
/// or `after`, then to `time` on its local day when the step names one. `None` when the step
/// has no `date`, or the user no such value, or it is not a time.
pub fn date_target(w: &WaitUntil, scope: &Scope<'_>, tz: &TimeZone) -> Option<Timestamp> {
    date_moved_to(w, date_read(w, scope, tz)?, tz)
}

/// The profile trait a path reads (`due_at` of `profile.due_at`, `profile.due_at.day` or
/// `profile["due_at"]`); `None` for a path of the event or the enrollment.
fn profile_trait(source: &str) -> Option<&str> {
    let rest = source.strip_prefix("profile")?;
    if let Some(rest) = rest.strip_prefix('.') {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        return Some(rest[..end].trim()).filter(|n| !n.is_empty());
    }
    let rest = rest.strip_prefix('[')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// Journeys `by` as the timeline names them: "journey a", "journeys a and b".
fn journeys_named(by: &[&str]) -> String {
    match by {
        [one] => format!("journey {one}"),
        [first @ .., last] => format!("journeys {} and {last}", first.join(", ")),
        [] => String::new(),
    }
}

/// The time a `wait_until`'s `date` path reads, as it is (before `before`, `after` and `time`).
fn date_read(w: &WaitUntil, scope: &Scope<'_>, tz: &TimeZone) -> Option<Timestamp> {
    let path = w.date.as_ref()?;
    // Read as the templates' `date` filter reads a time, so a message shows the time waited for.
    match path.lookup(scope)? {
        Value::String(s) => Some(template::zoned_text(s.trim(), tz)?.timestamp()),
        Value::Number(n) => template::epoch_number(n.as_f64()?),
        _ => None,
    }
}

/// The time a `wait_until` waits for, from the time `at` its `date` read: moved by `before` or
/// `after`, then to `time` on its local day.
fn date_moved_to(w: &WaitUntil, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    // Weeks and days are the user's calendar days (`before: 1d` is the day before, at the same
    // local time, also across a change of the clocks: a local time the clocks skip that day is
    // the first instant after the gap, as for a time of day); hours, minutes and seconds are
    // exact time, whatever their size (`before: 24h` is 24 hours before, a check-in opening);
    // `1d2h` is the calendar day, then 2 hours.
    let shift = |d: &crate::duration::DateOffset, sign: i64| {
        let days = i64::try_from(d.days()).ok()?;
        let secs = i64::try_from(d.exact_secs()).ok()?;
        let moved = if days == 0 {
            // No day in it: exact time (a time in the hour the clocks go back keeps its pass).
            at
        } else {
            let local = at
                .to_zoned_datetime(tz.clone())
                .datetime()
                .checked_add(jiff::Span::new().days(sign * days))
                .ok()?;
            local_instant(tz, local)?
        };
        moved
            .checked_add(SignedDuration::from_secs(sign * secs))
            .ok()
    };
    let at = match (&w.before, &w.after) {
        (Some(b), _) => shift(b, -1)?,
        (None, Some(a)) => shift(a, 1)?,
        (None, None) => at,
    };
    match w.time {
        Some(time) => {
            let day = at.to_zoned_datetime(tz.clone()).date();
            local_instant(tz, day.at(time.hour as i8, time.minute as i8, 0, 0))
        }
        None => Some(at),
    }
}

/// What a `wait_until` with a `date` does at `now`: wait until its time, or a year when the time
/// is further (no wait outlives the 400-day records a waiting enrollment relies on: the step is
/// read again each year), go on (the time is past), or end the enrollment (no such time).
enum DateWait {
    Until(Timestamp),
    Year {
        at: Timestamp,
        target: Timestamp,
    },
    /// The time waited for, `at`, is past; `date` is the time the path read.
    Past {
        at: Timestamp,
        date: Timestamp,
    },
    Missing,
}

fn date_wait(w: &WaitUntil, scope: &Scope<'_>, tz: &TimeZone, now: Timestamp) -> DateWait {
    let Some(date) = date_read(w, scope, tz) else {
        return DateWait::Missing;
    };
    let Some(target) = date_moved_to(w, date, tz) else {
        return DateWait::Missing;
    };
    let year = now
        .checked_add(crate::duration::Duration::MAX.to_jiff())
        .unwrap_or(now);
    if target > year {
        DateWait::Year { at: year, target }
    } else if target > now {
        DateWait::Until(target)
    } else {
        DateWait::Past { at: target, date }
    }
}

/// What a `wait_until` whose time `at` is past does when she `reached` it (in the journey's own
/// time: [`Run::reached`]; `date`: the time its path read),
/// by its `if_past`. Past counts from the later of the date and the time waited for: from the
/// appointment itself for a reminder `before` it (booked two hours ahead, the reminder the day
/// before still goes: the appointment is to come), from the time waited for when it is later
/// (`after: 3d`: three days after a trial ended). Only a time past by more than `by_more_than`
/// counts, and only one that was past when the user reached the wait, or read from a date that
/// moved while she waited: a time that `came` during the wait (its wake-up late, her zone
/// changed) is not past, it came.
fn past_outcome(
    w: &WaitUntil,
    at: Timestamp,
    date: Timestamp,
    reached: Timestamp,
    came: bool,
) -> PastOutcome<'_> {
    let Some(if_past) = w.if_past.as_ref().filter(|p| p.then != PastThen::GoOn) else {
        return PastOutcome::GoOn { not_past: None };
    };
    if came {
        return PastOutcome::GoOn {
            not_past: Some("it came during the wait".into()),
        };
    }
    let from = at.max(date);
    // Named when it is the date itself, later than the time waited for.
    let named = (date > at).then(|| {
        let path = w.date.as_ref().map(|p| p.source()).unwrap_or("date");
        format!("{path} ({date})")
    });
    let past_by = reached.duration_since(from);
    // Reached within the minute of the `time` waited for (09:00:30 for 09:00 on the day): that
    // time is now, not past, as a `time` alone reached then goes on (see [`at_its_minute`]).
    if let Some(time) = w.time.filter(|_| from == at) {
        if past_by > SignedDuration::ZERO && past_by < SignedDuration::from_mins(1) {
            return PastOutcome::GoOn {
                not_past: Some(format!("it is {}", String::from(time))),
            };
        }
    }
    let tolerance = if_past.by_more_than;
    if past_by <= tolerance.map_or(SignedDuration::ZERO, |d| d.to_jiff()) {
        let not_past = match (named, tolerance) {
            (Some(n), _) if past_by <= SignedDuration::ZERO => Some(format!("{n} is not")),
            (Some(n), Some(d)) => Some(format!("{n} is past by no more than {d}")),
            (None, Some(d)) => Some(format!("by no more than {d}")),
            (_, None) => None,
        };
        return PastOutcome::GoOn { not_past };
    }
    let mut by = String::new();
    if let Some(d) = tolerance {
        by.push_str(" by more than ");
        d.push_to(&mut by);
    }
    match &if_past.then {
        // After "already past: {at}": the time waited for is not said twice.
        PastThen::Goto(step) => PastOutcome::Goto {
            step,
            past: match named {
                Some(n) => format!("{n} was past{by}"),
                None => format!("past{by}"),
            },
        },
        _ => PastOutcome::Exit {
            past: format!("{} was past{by}", named.unwrap_or_else(|| at.to_string())),
        },
    }
}

/// What [`past_outcome`] decided.
enum PastOutcome<'a> {
    /// On at once; `not_past` says why `if_past` did not apply, when it did not.
    GoOn { not_past: Option<String> },
    /// Out of the journey, `past` saying what was past.
    Exit { past: String },
    /// To `step`, `past` saying what was past (after the time waited for, said already).
    Goto { step: &'a str, past: String },
}

/// The longest SMS SNS sends, in characters (one `Publish`; it is split into parts).
pub const SMS_MOST_CHARACTERS: usize = 1_600;

/// What quiet hours do to a send with `send_within` due during them.
enum Night {
    /// Held until they end (within its `send_within`).
    Held,
    /// Skipped: what would go out would be held longer.
    Skipped,
    /// Not held: what would go out is an in-app message, or nothing goes out.
    Unheld,
}

/// A send as it goes to one user: the variant in her language (`locales`), and what it falls
/// back to: the variant's own fallback, or else the send's (in the send's language), so a
/// translation that names no fallback does not leave its readers without one.
struct Localized<'a> {
    send: &'a Send,
    /// The `locales` key of `send`, if a variant was chosen.
    locale: Option<&'a str>,
    fallback: Option<&'a Send>,
    /// The `locales` key the fallback was written under, if any.
    fallback_locale: Option<&'a str>,
    /// Whether an exit keeps the message in the inbox (`keep_after_exit`), when it is an
    /// in-app message: the send's own `in_app` says, for every locale; the fallback's, when
    /// the fallback is one.
    keep_after_exit: (bool, bool),
}

impl<'a> Localized<'a> {
    fn of(send: &'a Send, user_locale: Option<&str>) -> Self {
        let (variant, locale) = send.localized(user_locale);
        let (fallback, fallback_locale) = match variant.fallback.as_deref() {
            Some(own) => (Some(own), locale),
            None => (send.fallback.as_deref(), None),
        };
        let keeps = |s: Option<&Send>| {
            s.and_then(|s| s.in_app.as_ref())
                .is_some_and(|p| p.keep_after_exit)
        };
        Localized {
            send: variant,
            locale,
            fallback,
            fallback_locale,
            keep_after_exit: (keeps(Some(send)), keeps(send.fallback.as_deref())),
        }
    }
}

/// Whether `send` reaches `profile` on none of its channels for want of an address (rather
/// than an opt-out or a disabled device, which no identify is awaited for).
fn wants_address(profile: &Profile, send: &Localized<'_>, transactional: bool) -> bool {
    let no_address = |t: Option<Template<'_>>| {
        t.is_some_and(|t| {
            profile.address_for(t.channel(), t.ignores_unsubscribe(transactional))
                == Err(Unreachable::NoAddress)
        })
    };
    let fallback = send.fallback.and_then(|f| f.template());
    no_address(send.send.template()) && (fallback.is_none() || no_address(fallback))
}

/// A copy of the enrollment for its next transition: its state, without the last transition's
/// outbox (a transition starts with none; the runtime carries what the old one still owes).
fn resumed(e: &Enrollment) -> Enrollment {
    Enrollment {
        id: e.id.clone(),
        user_id: e.user_id.clone(),
        journey: e.journey.clone(),
        version: e.version,
        n: e.n,
        key: e.key.clone(),
        trigger: e.trigger.clone(),
        waited: e.waited.clone(),
        entered_at: e.entered_at,
        status: e.status,
        step: e.step.clone(),
        seq: e.seq,
        pending: e.pending,
        waiting_for: e.waiting_for.clone(),
        wait_began: e.wait_began,
        wait_heard: e.wait_heard.clone(),
        converted_at: e.converted_at,
        time_came: e.time_came,
        time_came_at: e.time_came_at.clone(),
        ended_at: e.ended_at,
        end_reason: e.end_reason.clone(),
        outbox: Vec::new(),
        outbox_timeline: Vec::new(),
        outbox_cause: None,
        carried: e.carried.clone(),
        earlier_triggers: e.earlier_triggers.clone(),
        counted_until: e.counted_until,
        splits: e.splits.clone(),
        counted: e.counted.clone(),
        previous: e.previous.clone(),
        in_app: e.in_app.clone(),
    }
}

/// What moved a transition (see [`Run::moved_at`]).
#[derive(Clone, Copy)]
enum Mover<'a> {
    /// The enrollment's trigger (its messageId is the enrollment's).
    Trigger,
    /// An event, by its messageId.
    Event(&'a str),
    /// A wake-up: no event.
    WakeUp,
}

/// [`Run::heard`] over the run's fields, so that the user can be read beside it.
fn heard_in<'h>(
    heard: &'h mut Option<Vec<String>>,
    enrollment: &Enrollment,
    mover: Mover<'_>,
) -> &'h mut Vec<String> {
    heard.get_or_insert_with(|| {
        let mut heard = enrollment.wait_heard.clone();
        match mover {
            Mover::Trigger => heard.push(enrollment.trigger.message_id.clone()),
            Mover::Event(id) => heard.push(id.to_string()),
            Mover::WakeUp => {}
        }
        heard
    })
}

/// One transition being built.
struct Run<'a> {
    ctx: &'a Ctx<'a>,
    enrollment: Enrollment,
    effects: Vec<Effect>,
    timeline: Vec<Entry>,
    /// The profile as the steps of this transition see it (after its own updates): made when a
    /// step first reads it (a transition that only waits never does).
    profile: std::cell::OnceCell<Value>,
    /// The user as this transition's `update` steps left them, if one ran: where a later send
    /// of the transition goes (an `update` that sets `email` then an email).
    updated: Option<Profile>,
    /// The journey and enrollment names, shared by this transition's timeline entries.
    names: (Arc<str>, Arc<str>),
    /// The `wait_until` date steps this transition went on from at once (their date past): one
    /// reached again would go round its loop, sending at each pass, until the step bound.
    passed_dates: Vec<String>,
    /// The `wait_until` step this transition takes again and the date it read when its wait
    /// was set (see [`Pending::date`]): read the same now, its time came during the wait.
    waited_date: Option<(String, Timestamp)>,
    /// When the user reached this transition's steps in the journey's own time: the time of
    /// what moved them (the trigger, the event, the wake-up's due time), `now` at the latest. A
    /// `wait_for` begins then, so that an engine behind its queue (a backlog, a retry) waits for
    /// the events that happened since, as one on time would have.
    since: Timestamp,
    /// Whether `since` is the engine's own time (a wake-up's due time, a schedule's run) rather
    /// than an app's event's stamp.
    since_is_engines: bool,
    /// What moved the user: the event a `wait_for` this transition reaches must not hear.
    mover: Mover<'a>,
    /// The events a `wait_for` this transition reaches must not hear (messageIds): those the
    /// enrollment's wait heard, the one that moved the user, and those received earlier that
    /// met a wait at once on the way. Made by the first `wait_for` reached (see [`Run::heard`]).
    heard: Option<Vec<String>>,
    /// Whether a `wait_for` this transition reaches hears only events strictly after `since`:
    /// the event that moved the user is a late reply's stand-in for one the profile's history
    /// holds under its own id, or `since` is a previous enrollment's end.
    after_known: bool,
    /// The held send this transition takes again (quiet hours over, an address arrived), if
    /// it is one: a `wait_for` this transition reaches begins when the user reached that send,
    /// not at the end of a hold the journey file did not write (see [`Held`]).
    held: Option<HeldSend>,
}

/// Why a send is skipped (`quiet_hours`) that quiet hours `q` would hold from `due` until
/// `until`, longer than its `send_within`, judged in the user's zone `tz`: when it was due and
/// how long the hold would be. `tried`: when a try after the first found it inside them and
/// why it was tried then (a late send: its provider was down; a held send judged again: she
/// moved). Then `tz` is her zone at that try, not necessarily hers when it was due, so the
/// due time is said in UTC and the hours of the try in `tz`: "due at 17:00 local time" of a
/// send due at 22:00 where she was, said in the zone she moved to, contradicted the night.
pub fn held_too_long_detail(
    tz: &TimeZone,
    due: Timestamp,
    tried: Option<(Timestamp, &str)>,
    q: &QuietHours,
    until: Timestamp,
    within: crate::duration::Duration,
) -> String {
    let local = |at: Timestamp| {
        let t = at.to_zoned_datetime(tz.clone()).time();
        format!("{:02}:{:02}", t.hour(), t.minute())
    };
    let held = crate::duration::Duration::from_secs(
        u64::try_from(until.as_second() - due.as_second()).unwrap_or(0),
    );
    let hours = format!("{}–{}", String::from(q.start), String::from(q.end));
    match tried {
        None => format!(
            "due at {} local time ({due}); quiet hours {hours} would hold it until {} ({until}), {held} later, more than its `send_within: {within}`",
            local(due),
            local(until),
        ),
        Some((at, why)) => format!(
            "due at {due}; {why} at {at}, {} in her zone then ({}): inside quiet hours {hours}, which hold it until {} there ({until}), {held} after it was due, more than its `send_within: {within}`",
            local(at),
            tz.iana_name().unwrap_or("her profile's zone"),
            local(until),
        ),
    }
}

/// A held send a transition takes again (see [`Run::held`]).
struct HeldSend {
    /// When the user reached it.
    held: Held,
    /// Its step, and why it was held: what a `wait_for` met by an event of the hold says.
    step: String,
    resume: Resume,
}

impl<'a> Run<'a> {
    fn new(ctx: &'a Ctx<'a>, mut enrollment: Enrollment) -> Self {
        enrollment.outbox.clear();
        enrollment.outbox_timeline.clear();
        enrollment.outbox_cause = None;
        Run {
            ctx,
            names: (enrollment.journey.clone(), enrollment.id.clone()),
            enrollment,
            effects: Vec::new(),
            timeline: Vec::new(),
            profile: std::cell::OnceCell::new(),
            updated: None,
            passed_dates: Vec::new(),
            waited_date: None,
            since: ctx.now,
            since_is_engines: true,
            mover: Mover::WakeUp,
            heard: None,
            after_known: false,
            held: None,
        }
    }

    /// Takes over the enrollment's held send, if its wake-up is one's (see [`Run::held`]): the
    /// events its `wait_for` must not hear were kept with it (`wait_heard`).
    fn held_over(&mut self) {
        let Some(p) = self.enrollment.pending else {
            return;
        };
        if let Some(held) = p.held {
            self.held = Some(HeldSend {
                held,
                step: self.enrollment.step.clone(),
                resume: p.resume,
            });
        }
    }

    /// The transition was moved by what happened at `at`: the trigger, an event or a wake-up.
    fn moved_at(mut self, at: Timestamp, mover: Mover<'a>) -> Self {
        self.since = at.min(self.ctx.now);
        // A wake-up's due time and a schedule's or inactivity's entry are the engine's own; an
        // app's event's (or event trigger's) time is its stamp.
        self.since_is_engines = match mover {
            Mover::WakeUp => true,
            Mover::Event(_) => false,
            Mover::Trigger => matches!(
                self.ctx.journey.trigger.kind(),
                Some(
                    crate::journey::TriggerKind::Schedule(_)
                        | crate::journey::TriggerKind::Inactive(_)
                )
            ),
        };
        self.after_known = match mover {
            Mover::Event(id) => Enrollment::is_late_reply(id),
            Mover::Trigger | Mover::WakeUp => false,
        };
        self.mover = mover;
        self
    }

    /// The events a `wait_for` must not hear: what the enrollment's wait heard stays heard (a
    /// loop back to a wait for the same event), with the event that moves it now. Made when a
    /// transition first reaches a `wait_for` (most never do).
    fn heard(&mut self) -> &mut Vec<String> {
        heard_in(&mut self.heard, &self.enrollment, self.mover)
    }

    /// The user as the steps of this transition see them, for addresses and the time zone.
    fn user(&self) -> &Profile {
        self.updated.as_ref().unwrap_or(self.ctx.profile)
    }

    /// The user's time zone as this transition's steps see it (after its own updates).
    fn timezone(&self) -> TimeZone {
        template::zone_of(
            self.current_trait("timezone"),
            self.ctx.journey.default_zone(),
        )
    }

    /// Converts the enrollment at `at` (its goal `event` met, by its label), in its current
    /// step's timeline.
    fn convert(&mut self, at: Timestamp, event: String) {
        self.enrollment.converted_at = Some(at);
        let step = self.enrollment.step.clone();
        self.log(
            Some(&step),
            What::Converted {
                event,
                splits: crate::timeline::credited(
                    &self.enrollment.splits,
                    &self.enrollment.counted,
                    at,
                ),
                // The runtime credits it (it knows which messages went out).
                last_message: None,
                goal_at: (at != self.ctx.now).then_some(at),
            },
        );
    }

    fn log(&mut self, step: Option<&str>, what: What) {
        // A step's entries come together: they share its name.
        let step = step.map(
            |s| match self.timeline.last().and_then(|e| e.step.as_ref()) {
                Some(last) if **last == *s => last.clone(),
                _ => Arc::from(s),
            },
        );
        self.timeline.push(Entry {
            at: self.ctx.now,
            journey: self.names.0.clone(),
            enrollment: self.names.1.clone(),
            step,
            what,
        });
    }

    fn finish(mut self) -> Transition {
        if self.enrollment.waiting_for.is_none() {
            self.enrollment.wait_began = None;
            // A held send keeps them for the `wait_for` after it.
            let held = self.enrollment.pending.is_some_and(|p| p.held.is_some());
            if !held {
                self.enrollment.wait_heard.clear();
            }
        }
        Transition {
            enrollment: self.enrollment,
            effects: self.effects,
            timeline: self.timeline,
        }
    }

    fn cancel_pending(&mut self, step: &str, how: &str) {
        if let Some(p) = self.enrollment.pending.take() {
            self.effects.push(Effect::Cancel {
                seq: p.seq,
                at: p.at,
            });
            self.log(Some(step), What::Woke { how: how.into() });
        }
    }

    /// Remembers a split's choice (a path, or the holdout): the first, since a user always
    /// lands on the same path of a split. Made when she reached it in the journey's own time
    /// (the trigger, event or wake-up that led there; not before the trigger), so that a goal
    /// after that, taken before the engine got there (events out of order, a queue's lag),
    /// credits the path.
    fn chose(&mut self, step: &str, path: Option<&str>) {
        if !self.enrollment.splits.iter().any(|c| c.step == step) {
            let at = self.since.max(self.enrollment.trigger.at).min(self.ctx.now);
            self.enrollment.splits.push(crate::timeline::SplitChoice {
                step: step.to_string(),
                path: path.map(str::to_string),
                at: Some(at),
            });
        }
    }

    /// When she reached the step in the journey's own time (`since`), if the engine takes it
    /// no later than [`AT_ITS_MINUTE_LATE`] after (an app's event's stamp: a queue's lag and a
    /// few retries), or [`ENGINE_AT_ITS_MINUTE_LATE`] (a schedule's run, a wake-up's due time);
    /// an event that arrives in the evening, or days late, is judged at the clock.
    fn reached(&self) -> Option<Timestamp> {
        let late = if self.since_is_engines {
            ENGINE_AT_ITS_MINUTE_LATE
        } else {
            AT_ITS_MINUTE_LATE
        };
        (self.ctx.now - self.since <= late).then_some(self.since)
    }

    fn after(&self, d: SignedDuration) -> Timestamp {
        self.ctx.now.checked_add(d).unwrap_or(self.ctx.now)
    }

    fn wait(&mut self, step: &str, at: Timestamp, resume: Resume, why: String) {
        let seq = self.enrollment.seq;
        self.enrollment.pending = Some(Pending {
            seq,
            at,
            resume,
            date: None,
            held: None,
            read_again: false,
        });
        self.effects.push(Effect::Wake { seq, at });
        self.log(Some(step), What::Waiting { until: at, why });
    }

    /// Holds a send until `at` (quiet hours, an address awaited: `resume` says which), noting
    /// when the user reached it and the events a `wait_for` after it must not hear (see
    /// [`Held`]): kept from the hold this transition takes again, if it does.
    fn hold(&mut self, step: &str, at: Timestamp, resume: Resume, why: String) {
        let held = self.held.as_ref().map_or(
            Held {
                since: self.since,
                after: self.after_known,
            },
            |h| h.held,
        );
        let heard = std::mem::take(self.heard());
        self.enrollment.wait_heard = heard_from(heard, self.user(), held.since);
        self.wait(step, at, resume, why);
        if let Some(p) = self.enrollment.pending.as_mut() {
            p.held = Some(held);
        }
    }

    /// The other journeys that may set the profile trait `path` reads as the event being taken
    /// reaches them (see [`SetMeanwhile`]), in order, once each: none when `path` is not the
    /// profile's.
    fn set_meanwhile(&self, path: &crate::condition::ValuePath) -> Vec<&'a str> {
        let Some(name) = profile_trait(path.source()) else {
            return Vec::new();
        };
        let mut by: Vec<&'a str> = Vec::new();
        for s in self.ctx.set_meanwhile {
            if s.name == name && s.journey != self.ctx.journey.id && !by.contains(&&*s.journey) {
                by.push(&s.journey);
            }
        }
        by
    }

    /// Notes on the wait just set for `w` the date it read (see [`Pending::date`]).
    fn waits_for_date(&mut self, w: &WaitUntil) {
        let date = date_read(w, &self.scope(), &TimeZone::UTC);
        if let Some(p) = self.enrollment.pending.as_mut() {
            p.date = date;
        }
    }

    /// Ends the enrollment before its end, for `reason` (a step it cannot take).
    fn end(&mut self, step: &str, reason: String) {
        // No exit event of the user's: what it sent is still hers to read.
        self.enrollment.in_app.clear();
        self.enrollment.status = Status::Exited;
        self.enrollment.ended_at = Some(self.ctx.now);
        self.enrollment.end_reason = Some(reason.clone());
        self.log(Some(step), What::Ended { reason });
    }

    /// Ends the enrollment on its exit event `name`, cancelling what is pending and withdrawing
    /// its in-app messages.
    fn exit(&mut self, name: &str) {
        let step = self.enrollment.step.clone();
        self.cancel_pending(&step, "exited");
        self.enrollment.status = Status::Exited;
        self.enrollment.ended_at = Some(self.ctx.now);
        self.enrollment.end_reason = Some(format!("exit_when {name}"));
        self.enrollment.waiting_for = None;
        self.log(
            Some(&step),
            What::Exited {
                event: name.to_string(),
            },
        );
        self.withdraw_in_app();
    }

    /// Notes an in-app message this send step made, for an exit to withdraw (see
    /// [`Enrollment::in_app`]).
    fn sent_in_app(&mut self, step: &str) {
        let e = &mut self.enrollment;
        let seq = e.seq;
        // The same visit sent again (a send rechecked after its address grace) is one message
        // (one of its own: a visitor's it took may have the same step and visit).
        if e.in_app
            .iter()
            .any(|m| m.enrollment.is_none() && m.seq == seq && *m.step == *step)
        {
            return;
        }
        if e.in_app.len() >= crate::enrollment::IN_APP_KEPT {
            e.in_app.remove(0);
        }
        e.in_app.push(crate::enrollment::InAppSent {
            user: e.user_id.clone(),
            step: Arc::from(step),
            seq,
            enrollment: None,
        });
    }

    /// The enrollment ended by an exit or a stop (its `end_reason` says which): the in-app
    /// messages it sent are withdrawn, unless read ([`Effect::Withdraw`]). Nothing when it sent
    /// none: an exit reads the inbox only for a journey that uses it.
    fn withdraw_in_app(&mut self) {
        let messages = std::mem::take(&mut self.enrollment.in_app);
        if messages.is_empty() {
            return;
        }
        self.effects.push(Effect::Withdraw(Withdrawal {
            enrollment: self.enrollment.id.clone(),
            messages,
            reason: self.enrollment.end_reason.clone().unwrap_or_default(),
        }));
    }

    fn complete(&mut self) {
        // Done as the journey says: its messages stay (nothing is left to withdraw them).
        self.enrollment.in_app.clear();
        self.enrollment.status = Status::Completed;
        self.enrollment.ended_at = Some(self.ctx.now);
        self.enrollment.end_reason = Some("completed".into());
        let step = self.enrollment.step.clone();
        self.log(Some(&step), What::Completed);
    }

    fn profile(&self) -> &Value {
        self.profile.get_or_init(|| self.ctx.profile.scope())
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            event: &self.enrollment.trigger.properties,
            trigger: &self.enrollment.trigger.properties,
            waited: self.enrollment.waited_properties(),
            profile: self.profile(),
            now: self.ctx.now,
            zone: self.ctx.journey.default_zone(),
        }
    }

    /// Runs steps from `start` until one waits or the journey ends.
    fn go(&mut self, start: Option<String>) {
        self.steps(start, false);
    }

    /// Takes the step the enrollment waited on again (quiet hours over, an address arrived, a
    /// far date's year gone by): the step was entered already, so it is not logged (nor
    /// counted in `step.<id>.entered`) a second time.
    fn again(&mut self, step: String) {
        self.steps(Some(step), true);
    }

    /// [`Run::again`] for the step whose wait was `pending`: a `wait_until` that reads the
    /// date it waited for finds its time come, not past (see [`Pending::date`]).
    fn again_waiting(&mut self, step: String, pending: Pending) {
        self.waited_date = pending.date.map(|d| (step.clone(), d));
        self.again(step);
    }

    fn steps(&mut self, start: Option<String>, again: bool) {
        let j = self.ctx.journey;
        let mut current = start;
        let mut entered = again;
        for _ in 0..MAX_STEPS_PER_TRANSITION {
            let Some(id) = current.take() else {
                self.complete();
                return;
            };
            let Some(step) = j.step(&id) else {
                self.complete();
                return;
            };
            self.enrollment.step = id.clone();
            self.enrollment.seq += 1;
            if !std::mem::take(&mut entered) {
                self.log(Some(&id), What::Step);
            }
            let default_next = || j.next_of(&id).map(str::to_string);
            match step.action() {
                Action::Wait(d) => {
                    let at = self.after(d.to_jiff());
                    let mut why = String::with_capacity(16);
                    why.push_str("wait ");
                    d.push_to(&mut why);
                    self.wait(&id, at, Resume::Continue, why);
                    return;
                }
                Action::WaitUntil(w) => {
                    let tz = self.timezone();
                    let (Some(path), Some(date)) = (&w.date, w.date_text()) else {
                        let now = self.ctx.now;
                        // Reached within the minute it waits for: that time is now (once: a
                        // loop back within the minute waits for the next). Reached then in the
                        // journey's own time (`since`: a 09:00 schedule's entry an engine a
                        // little behind its queue, or a retry, takes at 09:01) counts as well as
                        // the clock, up to [`AT_ITS_MINUTE_LATE`] ago: an event stamped 09:00
                        // that arrives in the evening, or days late, waits for the next 09:00.
                        // (A schedule's entry or a wake-up, the engine's own time, up to a few
                        // hours: a long scan; an app's event's stamp, minutes: [`Run::reached`].)
                        // Reached just before it and taken after it (an event stamped 08:59:50
                        // taken at 09:01:10): that time came since she reached the wait.
                        let reached = self.reached();
                        let came = reached
                            .and_then(|since| {
                                at_its_minute(w, since, &tz).or_else(|| {
                                    let (_, at) = next_time_of_day(w, since, &tz);
                                    (at <= now).then_some(at)
                                })
                            })
                            .or_else(|| at_its_minute(w, now, &tz))
                            .filter(|at| {
                                !self.enrollment.time_came_for(&id, *at)
                                    && !self.enrollment.time_came_for(&id, first_pass(&tz, *at))
                            });
                        if let Some(at) = came {
                            self.enrollment.note_time_came(&id, at);
                            let time = String::from(w.time_or_midnight());
                            let why = format!("wait_until {time}");
                            self.log(Some(&id), What::Waiting { until: now, why });
                            self.log(
                                Some(&id),
                                What::Woke {
                                    how: format!("it is {time}"),
                                },
                            );
                            current = default_next();
                            continue;
                        }
                        let (time, at) = next_time_of_day(w, now, &tz);
                        let why = format!("wait_until {}", String::from(time));
                        self.wait(&id, at, Resume::Continue, why);
                        return;
                    };
                    let why = format!("wait_until {date}");
                    let judged = date_wait(w, &self.scope(), &tz, self.ctx.now);
                    // Missing or past on the profile as the event came, while another journey
                    // the event reaches may set it: judged once they have all run.
                    // (Not a date read again that it waited for: its time came meanwhile.)
                    let taken_again = self.waited_date.as_ref().is_some_and(|(s, _)| *s == id);
                    if let (DateWait::Missing | DateWait::Past { .. }, false) =
                        (&judged, taken_again)
                    {
                        let by = self.set_meanwhile(path);
                        if !by.is_empty() {
                            let found = match judged {
                                DateWait::Missing => "missing",
                                _ => "past",
                            };
                            let why = format!(
                                "{why}: {path} {found} for now; {}, which this event reaches too, may set it: read again once it has run",
                                journeys_named(&by)
                            );
                            let at = self.after(READ_AGAIN_AFTER);
                            self.wait(&id, at, Resume::Rerun, why);
                            if let Some(p) = self.enrollment.pending.as_mut() {
                                p.read_again = true;
                            }
                            return;
                        }
                    }
                    match judged {
                        DateWait::Missing => {
                            // What it held, as the timeline shows values (an address not).
                            let held = w.date.as_ref().and_then(|d| d.shown(&self.scope()));
                            let reason = match held {
                                None => format!("{why}: {path} is missing"),
                                Some(v) => format!(
                                    "{why}: {path} = {v} is not a time (write an RFC 3339 time, a local date and time, a YYYY-MM-DD day or seconds since 1970)"
                                ),
                            };
                            self.end(&id, reason);
                            return;
                        }
                        DateWait::Year { at, target } => {
                            let why = format!("{why} ({target}: a year at a time)");
                            self.wait(&id, at, Resume::Rerun, why);
                            self.waits_for_date(w);
                            return;
                        }
                        DateWait::Until(at) => {
                            self.wait(&id, at, Resume::Continue, why);
                            self.waits_for_date(w);
                            return;
                        }
                        DateWait::Past { at, date } => {
                            // Come round a loop to a date still past: it would go round again
                            // and again, each pass sending what the loop sends.
                            if self.passed_dates.contains(&id) {
                                self.end(
                                    &id,
                                    format!("{why}: {path} ({at}) was past again when the journey came back to this step; a loop needs a `wait` or `wait_for` in it"),
                                );
                                return;
                            }
                            self.passed_dates.push(id.clone());
                            let now = self.ctx.now;
                            // Taken again reading the date it waited for: that time came
                            // during the wait (a wake-up late, her zone changed).
                            let read = date_read(w, &self.scope(), &TimeZone::UTC);
                            let came = self
                                .waited_date
                                .take()
                                .is_some_and(|(step, d)| step == id && read == Some(d));
                            let mut how = format!("already past: {at}");
                            // Past when she reached the wait, in the journey's own time: a
                            // time that came while the engine was behind (a queue's lag, a
                            // retry) came during the wait.
                            let reached = self.reached().map_or(now, |since| since.min(now));
                            let came = came || at > reached;
                            match past_outcome(w, at, date, reached, came) {
                                // Booked for tomorrow, reminded a day before: go on now.
                                PastOutcome::GoOn { not_past } => {
                                    if let Some(n) = not_past {
                                        how.push_str("; ");
                                        how.push_str(&n);
                                    }
                                    current = default_next();
                                }
                                // An appointment last week: no reminder.
                                PastOutcome::Exit { past } => {
                                    self.end(&id, format!("{why}: {past} (if_past: exit)"));
                                    return;
                                }
                                PastOutcome::Goto { step, past } => {
                                    how = format!("{how}; {past} (if_past: {step})");
                                    current = Some(step.to_string());
                                }
                            }
                            self.log(Some(&id), What::Waiting { until: now, why });
                            self.log(Some(&id), What::Woke { how });
                        }
                    }
                }
                Action::WaitFor(w) => {
                    // The wait begins when the user reached it (see `since`): the events it
                    // hears are those from then on, and one it waits for (with no `where`: the
                    // profile keeps when, not what) that happened since and was received
                    // before meets it at once, each once (`heard`). Its timeout runs from now,
                    // so that a user whom a late engine reaches still has all of it. After a
                    // held send (quiet hours, an address awaited), it begins when the user
                    // reached that send: a hold the file did not write does not make her deaf.
                    let (began, after_known) = match &self.held {
                        Some(h) => (h.held.since, h.held.after),
                        None => (self.since, self.after_known),
                    };
                    let at = self.after(w.timeout.to_jiff());
                    let user = self.updated.as_ref().unwrap_or(self.ctx.profile);
                    let heard = heard_in(&mut self.heard, &self.enrollment, self.mover);
                    if after_known {
                        // Strictly after `since`: the events at its instant are heard already
                        // (kept with the wait, for a late reply to leave them too).
                        for way in w.ways() {
                            let at_since: Vec<String> = user
                                .history
                                .get(way.event)
                                .into_iter()
                                .flatten()
                                .filter(|(t, id)| *t == began && !heard.contains(id))
                                .map(|(_, id)| id.clone())
                                .collect();
                            heard.extend(at_since);
                        }
                    }
                    // The first of them in the journey's own time (the file's first at the same
                    // instant), of the ways with no `where`.
                    let met = {
                        let ids: Vec<&str> = heard.iter().map(String::as_str).collect();
                        w.ways()
                            .filter(|way| way.condition.is_none())
                            .filter_map(|way| {
                                user.first_from_but(way.event, began, &ids)
                                    .map(|(t, id)| (t, id, way))
                            })
                            .min_by_key(|(t, _, _)| *t)
                    };
                    let why = format!("wait_for {}", w.events_label());
                    if let Some((t, id_met, way)) = met {
                        self.log(Some(&id), What::Waiting { until: at, why });
                        // One that came while the send before was held says so.
                        let how = match self.held.take().filter(|_| t < self.since) {
                            Some(h) => {
                                let held = match h.resume {
                                    Resume::Recheck => "waited for an address",
                                    _ => "was held for quiet hours",
                                };
                                format!("event: {} at {t}, while {} {held}", way.event, h.step)
                            }
                            None => {
                                format!("event: {} at {t}, received before the wait", way.event)
                            }
                        };
                        self.log(Some(&id), What::Woke { how });
                        // What follows goes on from that event (or now, for one stamped ahead
                        // of the clock).
                        self.since = t.min(self.ctx.now);
                        self.since_is_engines = false;
                        self.after_known = false;
                        // The profile keeps when it happened, not what it said: `waited.*`
                        // is that event with no properties.
                        self.enrollment.waited = Some(TriggerEvent {
                            event: way.event.to_string(),
                            message_id: id_met.clone(),
                            at: t,
                            properties: Arc::new(Value::Object(serde_json::Map::new())),
                        });
                        self.heard().push(id_met);
                        current = way.goto.map(str::to_string).or_else(default_next);
                        continue;
                    }
                    self.enrollment.waiting_for = Some(w.events_label());
                    self.enrollment.wait_began = (began < self.ctx.now).then_some(began);
                    let heard = std::mem::take(self.heard());
                    self.enrollment.wait_heard = heard_from(heard, self.user(), began);
                    self.wait(&id, at, Resume::Timeout, why);
                    return;
                }
                Action::Branch(b) => {
                    let scope = self.scope();
                    let hit = b.cases.iter().find(|c| c.when.eval(&scope)).map(|c| {
                        (
                            c.when.source().to_string(),
                            Some(c.goto.clone()),
                            c.when.values(&scope),
                        )
                    });
                    let (on, to, held) = hit.unwrap_or_else(|| {
                        (
                            "else".to_string(),
                            b.otherwise.clone().or_else(default_next),
                            crate::condition::values_of(b.cases.iter().map(|c| &c.when), &scope),
                        )
                    });
                    self.log(
                        Some(&id),
                        What::Branched {
                            on,
                            to: to.clone().unwrap_or_else(|| "(end)".into()),
                            held: (!held.is_empty()).then_some(held),
                        },
                    );
                    current = to;
                }
                Action::Split(s) => {
                    // Back at a split she took before (a loop): the path she took, which the
                    // stats count her on, not a new hash: her user id may have changed since
                    // (a visitor who logged in). A path the journey no longer has is chosen
                    // again.
                    let taken = self
                        .enrollment
                        .splits
                        .iter()
                        .find(|c| c.step == id)
                        .and_then(|c| c.path.as_deref())
                        .and_then(|name| {
                            s.paths
                                .iter()
                                .find(|p| p.name.as_deref().unwrap_or(&p.goto) == name)
                        });
                    if let Some(p) = taken {
                        let path = p.name.clone().unwrap_or_else(|| p.goto.clone());
                        self.log(Some(&id), What::Split { path, again: true });
                        current = Some(p.goto.clone());
                        continue;
                    }
                    let b = bucket(&self.enrollment.user_id, &j.id, &id);
                    let holdout = u32::from(s.holdout.unwrap_or(0)) * 100;
                    if b < holdout {
                        let again = self.enrollment.counted_on(&id, None).is_some();
                        self.chose(&id, None);
                        self.enrollment.status = Status::HeldOut;
                        self.enrollment.ended_at = Some(self.ctx.now);
                        self.enrollment.end_reason = Some("holdout".into());
                        self.log(Some(&id), What::HeldOut { again });
                        return;
                    }
                    let total: u64 = s.paths.iter().map(|p| u64::from(p.weight)).sum();
                    // Rescale the non-holdout part of the bucket onto the weights.
                    let span = u64::from(10_000 - holdout).max(1);
                    let point = u64::from(b - holdout) * total / span;
                    let mut acc = 0u64;
                    let mut chosen = s.paths.last();
                    for p in &s.paths {
                        acc += u64::from(p.weight);
                        if point < acc {
                            chosen = Some(p);
                            break;
                        }
                    }
                    let Some(p) = chosen else {
                        self.complete();
                        return;
                    };
                    let path = p.name.clone().unwrap_or_else(|| p.goto.clone());
                    // Taken before in a loop, or by an earlier enrollment of hers.
                    let again = self.enrollment.splits.iter().any(|c| c.step == id)
                        || self.enrollment.counted_on(&id, Some(&path)).is_some();
                    self.chose(&id, Some(&path));
                    self.log(Some(&id), What::Split { path, again });
                    current = Some(p.goto.clone());
                }
                Action::Send(own) => {
                    // In the user's language when the send has it (`locales`).
                    let send = Localized::of(own, self.current_trait("locale"));
                    if !j.transactional {
                        if let Some(q) = &j.quiet_hours {
                            let quiet = quiet_until(self.ctx.now, &self.timezone(), q);
                            // An in-app message interrupts no one: it waits in the inbox until
                            // she opens the app (as Braze's quiet hours leave in-app messages
                            // alone). Judged on the channel that would go out (a push's in-app
                            // fallback, for a user with no device), on the first when none
                            // would.
                            let inbox = || {
                                self.going_out(&send)
                                    .or_else(|| send.send.template())
                                    .is_some_and(|t| t.channel() == Channel::InApp)
                            };
                            if let Some(until) = quiet.filter(|_| !inbox()) {
                                // Held longer than the send allows: skipped now, and on; or
                                // sent now, when nothing would go out (skipped for the true
                                // reason).
                                let night = match own.send_within {
                                    Some(within) => {
                                        self.held_too_long(&id, &send, q, until, within)
                                    }
                                    None => Night::Held,
                                };
                                match night {
                                    Night::Held => {
                                        self.hold(&id, until, Resume::Rerun, "quiet hours".into());
                                        return;
                                    }
                                    Night::Skipped => {
                                        current = default_next();
                                        continue;
                                    }
                                    Night::Unheld => {}
                                }
                            }
                        }
                    }
                    if let Some(until) = self.address_grace(&send) {
                        self.hold(&id, until, Resume::Recheck, "waiting for an address".into());
                        return;
                    }
                    self.send(&id, &send);
                    current = default_next();
                }
                Action::Update(u) => {
                    let (mut u, mut failed) = self.resolve(u);
                    let mut user = self
                        .updated
                        .take()
                        .unwrap_or_else(|| self.ctx.profile.clone());
                    let now = self.ctx.now;
                    // A trait set after now (by an identify whose device's clock runs ahead)
                    // stands, and the step says so.
                    for (k, t) in user.apply_update(&u.set, &u.unset, Some(now)) {
                        u.set.remove(&k);
                        u.unset.retain(|x| *x != k);
                        failed.insert(
                            k,
                            format!(
                                "a newer value stands (set at {t}): the trait is left as it was"
                            ),
                        );
                    }
                    self.updated = Some(user);
                    self.profile();
                    if let Some(Value::Object(p)) = self.profile.get_mut() {
                        for (k, v) in &u.set {
                            p.insert(k.clone(), v.clone());
                        }
                        for k in &u.unset {
                            p.remove(k);
                        }
                    }
                    self.log(
                        Some(&id),
                        What::Updated {
                            set: u.set.keys().cloned().collect(),
                            unset: u.unset.clone(),
                            failed,
                        },
                    );
                    self.effects.push(Effect::UpdateProfile(u));
                    current = default_next();
                }
                Action::Exit => {
                    self.complete();
                    return;
                }
            }
        }
        // Bounded (validation refuses a journey that could run longer): the enrollment ends,
        // saying where, rather than looping or passing for completed.
        match current {
            None => self.complete(),
            Some(next) => {
                let step = self.enrollment.step.clone();
                self.end(
                    &step,
                    format!(
                        "{MAX_STEPS_PER_TRANSITION} steps ran without a wait, the most the engine takes at a time: `{next}` was not taken; put a `wait` between them"
                    ),
                );
            }
        }
    }

    /// Skips the send due now that quiet hours `q` would hold until `until`, longer than its
    /// `send_within`: `quiet_hours`, on the channel that would go out, saying when it was due
    /// and until when it would have waited. No frequency cap place is taken (nothing is sent).
    /// Doing nothing: [`Night::Held`] when the hold is within it, [`Night::Unheld`] when what
    /// would go out is an in-app message or nothing.
    ///
    /// A send held already and judged again (her zone changed during the hold) was due when
    /// the user reached it ([`Held::since`]): the hold is measured from then, not from the
    /// change, so a move does not stretch it past `send_within`. A later send of the same
    /// transition (the held one skipped) is due now.
    fn held_too_long(
        &mut self,
        step: &str,
        send: &Localized<'_>,
        q: &QuietHours,
        until: Timestamp,
        within: crate::duration::Duration,
    ) -> Night {
        let due = self
            .held
            .as_ref()
            .filter(|h| h.step == step)
            .map_or(self.ctx.now, |h| h.held.since.min(self.ctx.now));
        let held = u64::try_from(until.as_second() - due.as_second()).unwrap_or(0);
        if held <= within.as_secs() {
            return Night::Held;
        }
        // What would go out now (not in-app: that is never held): nothing at all is skipped for
        // its own reason, not the night.
        let Some(t) = self.going_out(send) else {
            return Night::Unheld;
        };
        let tried = (due < self.ctx.now).then_some((self.ctx.now, "judged again while held"));
        let detail = held_too_long_detail(&self.timezone(), due, tried, q, until, within);
        self.log(
            Some(step),
            What::Skipped {
                channel: t.channel(),
                reason: "quiet_hours".into(),
                detail: Some(detail),
            },
        );
        Night::Skipped
    }

    /// The template of `send` that would go out now: its own when it reaches the user, else
    /// its fallback's when that does; none when neither does or she is unsubscribed from the
    /// journey's topic.
    fn going_out<'s>(&self, send: &Localized<'s>) -> Option<Template<'s>> {
        if let Some(topic) = &self.ctx.journey.topic {
            if topic::standing(self.user(), &self.ctx.topics, topic).is_some() {
                return None;
            }
        }
        let transactional = self.ctx.journey.transactional;
        let reaches = |t: &Template<'_>| {
            self.user()
                .address_for(t.channel(), t.ignores_unsubscribe(transactional))
                .is_ok()
        };
        let first = send.send.template()?;
        if reaches(&first) {
            return Some(first);
        }
        send.fallback.and_then(|f| f.template()).filter(reaches)
    }

    /// Until when a send that can reach the user on none of its channels for want of an
    /// address waits for one: [`ADDRESS_GRACE`] after its trigger, if that is still to come.
    fn address_grace(&self, send: &Localized<'_>) -> Option<Timestamp> {
        let trigger = self.enrollment.trigger.at;
        let until = trigger + ADDRESS_GRACE;
        // The time first: most sends come long after their trigger, and an address is a copy.
        if !(trigger <= self.ctx.now && self.ctx.now < until) {
            return None;
        }
        // Only for a user no identify has reached yet (the race: a new user's first identify
        // and first event); one identified without the address is skipped at once. A schedule
        // or an inactivity check is no event of the user's, with no identify racing it.
        if self.ctx.profile.identified()
            || matches!(
                self.ctx.journey.trigger.kind(),
                Some(
                    crate::journey::TriggerKind::Schedule(_)
                        | crate::journey::TriggerKind::Inactive(_)
                )
            )
        {
            return None;
        }
        wants_address(self.user(), send, self.ctx.journey.transactional).then_some(until)
    }

    fn send(&mut self, step: &str, send: &Localized<'_>) {
        let Some(first) = send.send.template() else {
            return;
        };
        // The journey's topic first: a user unsubscribed from it gets none of its messages, on
        // any channel (the fallback is the same message). A transactional journey has none.
        if let Some(topic) = &self.ctx.journey.topic {
            if let Some(skip) = topic::standing(self.user(), &self.ctx.topics, topic) {
                self.log(
                    Some(step),
                    What::Skipped {
                        channel: first.channel(),
                        reason: skip.reason.into(),
                        detail: Some(skip.detail),
                    },
                );
                return;
            }
        }
        let mut locale = send.locale;
        // Whether the fallback's template is the one rendered (a render error says so).
        let mut fell_back = false;
        let transactional = self.ctx.journey.transactional;
        let chosen = match self
            .user()
            .address_for(first.channel(), first.ignores_unsubscribe(transactional))
        {
            Ok(to) => Some((first, to)),
            Err(why) => {
                let fallback = send.fallback.and_then(|f| f.template());
                match fallback.map(|t| {
                    let exempt = t.ignores_unsubscribe(transactional);
                    (t, self.user().address_for(t.channel(), exempt))
                }) {
                    Some((t, Err(also))) => {
                        // Neither reaches the user: the skip names both reasons.
                        // Each channel's own detail (since when an opt-out holds, what
                        // suppressed the address), where there is one.
                        let user = self.user();
                        let said =
                            |c: Channel, why: Unreachable| match user.unreachable_detail(c, why) {
                                Some(d) => format!("{} ({d})", why.as_str()),
                                None => why.as_str().to_string(),
                            };
                        let own = user.unreachable_detail(first.channel(), why);
                        let fallback =
                            format!("fallback {}: {}", t.channel(), said(t.channel(), also));
                        let detail = match own {
                            Some(own) => format!("{own}; {fallback}"),
                            None => fallback,
                        };
                        self.skip(step, first.channel(), why, Some(detail));
                        None
                    }
                    Some((t, Ok(to))) => {
                        locale = send.fallback_locale;
                        fell_back = true;
                        let detail = self.user().unreachable_detail(first.channel(), why);
                        self.log(
                            Some(step),
                            What::FellBack {
                                from: first.channel(),
                                to: t.channel(),
                                reason: why.as_str().into(),
                                detail,
                            },
                        );
                        Some((t, to))
                    }
                    _ => {
                        self.skip(step, first.channel(), why, None);
                        None
                    }
                }
            }
        };
        let Some((t, to)) = chosen else { return };
        // A variant's text is in her language; the default text's dates are English.
        let language = locale.and(self.current_trait("locale"));
        match self.render(t, language) {
            Ok(content) => {
                let e = &self.enrollment;
                self.effects.push(Effect::Send(Arc::new(Outgoing {
                    enrollment: e.id.clone(),
                    journey: e.journey.clone(),
                    version: e.version,
                    user_id: e.user_id.clone(),
                    step: Arc::from(step),
                    seq: e.seq,
                    channel: t.channel(),
                    to,
                    content: Arc::new(content),
                    transactional: self.ctx.journey.transactional,
                    locale: locale.map(Arc::from),
                    timezone: self.timezone().iana_name().map(Arc::from),
                })));
                let keep = if fell_back {
                    send.keep_after_exit.1
                } else {
                    send.keep_after_exit.0
                };
                if t.channel() == Channel::InApp && !keep {
                    self.sent_in_app(step);
                }
            }
            Err(err) => {
                self.timeline.push(Entry {
                    at: self.ctx.now,
                    journey: self.names.0.clone(),
                    enrollment: self.names.1.clone(),
                    step: Some(Arc::from(step)),
                    what: What::Skipped {
                        channel: t.channel(),
                        reason: "render_error".into(),
                        // Which template failed: a `locales` variant's, the fallback's.
                        detail: Some(match (locale, fell_back) {
                            (Some(l), false) => format!("locales.{l}: {}", err.message),
                            (Some(l), true) => {
                                format!("locales.{l}: fallback: {}", err.message)
                            }
                            (None, true) => format!("fallback: {}", err.message),
                            (None, false) => err.message,
                        }),
                    },
                });
            }
        }
    }

    fn skip(&mut self, step: &str, channel: Channel, why: Unreachable, detail: Option<String>) {
        let detail = detail.or_else(|| self.user().unreachable_detail(channel, why));
        self.log(
            Some(step),
            What::Skipped {
                channel,
                reason: why.as_str().into(),
                detail,
            },
        );
    }

    /// A text trait as this transition's steps see it (after its own updates), without making
    /// the profile's template view when no step has.
    fn current_trait(&self, name: &str) -> Option<&str> {
        self.current_traits().get(name).and_then(Value::as_str)
    }

    /// The profile's traits as this transition's `update` steps left them, if one ran.
    fn current_traits(&self) -> &serde_json::Map<String, Value> {
        match self.profile.get() {
            Some(Value::Object(updated)) => updated,
            _ => &self.ctx.profile.traits,
        }
    }

    /// What templates see at this point of the transition: rendered straight from the profile
    /// (as this transition's `update` steps left it, if one ran) and the event where a
    /// template allows it.
    fn template_context(&self) -> template::Context<'_> {
        template::Context::new(self.template_scope())
    }

    /// What a template of this enrollment sees; its text in no variant's language.
    fn template_scope(&self) -> template::Scope<'_> {
        let j = self.ctx.journey;
        template::Scope {
            traits: self.current_traits(),
            profile_user_id: &self.ctx.profile.user_id,
            user_id: &self.enrollment.user_id,
            event: &self.enrollment.trigger.properties,
            trigger: &self.enrollment.trigger.properties,
            waited: self.enrollment.waited_properties(),
            journey_id: &j.id,
            journey_name: &j.name,
            journey_version: u64::from(self.enrollment.version),
            journey_timezone: j.default_zone(),
            now: self.ctx.now,
            unsubscribe_url: self.ctx.unsubscribe_url,
            language: None,
        }
    }

    /// The update with each `set` value written as a template (`"{{ event.plan }}"`) rendered
    /// to its text, or, when it is one expression whose value is a number, a truth value, a
    /// list or an object, to that value ([`template::Context::evaluate`]); one that cannot be
    /// rendered is left out, with why. A `null` set removes the
    /// trait, as an identify's `null` does: it is moved to `unset`.
    ///
    /// An `email`, `phone`, `timezone` or `locale`, rendered or fixed, is kept as an identify
    /// keeps it and left out, with why, when an identify would refuse it ([`checked_trait`]):
    /// validation refuses a fixed bad one, but a journey stored before that check (or by a path
    /// that skipped it) still has it.
    fn resolve(&self, u: &Update) -> (Update, BTreeMap<String, String>) {
        let mut failed = BTreeMap::new();
        let as_is = |k: &String, v: &Value| {
            !(v.is_null()
                || holds_template(v)
                || (is_checked_trait(k) && crate::event::identify_trait_problem(k, v).is_some()))
        };
        if u.set.iter().all(|(k, v)| as_is(k, v)) {
            return (u.clone(), failed);
        }
        let ctx = self.template_context();
        let mut set = serde_json::Map::new();
        let mut unset = u.unset.clone();
        for (k, v) in &u.set {
            if v.is_null() {
                if !unset.contains(k) {
                    unset.push(k.clone());
                }
                continue;
            }
            let value = match v
                .as_str()
                .filter(|s| is_checked_trait(k) && template::is_template(s))
            {
                // An address, a zone or a locale is text.
                Some(source) => match ctx.render(source, false) {
                    // Nothing to copy: no address, zone or locale is empty text.
                    Ok(text) if text.trim().is_empty() => Err(
                        "its value is missing for this user: the trait is left as it was".into(),
                    ),
                    Ok(text) => Ok(Value::String(text)),
                    Err(e) => Err(e.message),
                },
                // A template, or an object or a list with templates inside: rendered, one
                // expression keeping its value's type.
                None if holds_template(v) => match rendered_within(&ctx, v) {
                    Ok(value) => Ok(value),
                    // Nothing to copy (the event or the profile has no such value): the trait
                    // is left as it was, rather than overwritten with empty text.
                    Err(Unrendered::Missing) => Err(if v.is_string() {
                        "its value is missing for this user: the trait is left as it was"
                    } else {
                        "a value inside it is missing for this user: the trait is left as it was"
                    }
                    .into()),
                    Err(Unrendered::Failed(why)) => Err(why),
                },
                None => Ok(v.clone()),
            };
            match value.and_then(|value| checked_trait(k, value)) {
                Ok(value) => {
                    set.insert(k.clone(), value);
                }
                Err(why) => {
                    failed.insert(k.clone(), why);
                }
            }
        }
        let resolved = Update { set, unset };
        (resolved, failed)
    }

    /// The message `t` makes for this user; an error names the part whose template failed
    /// (`text: …`, `data.url: …`), so the timeline's `render_error` says where to look.
    fn render(
        &self,
        t: Template<'_>,
        language: Option<&str>,
    ) -> Result<Content, template::TemplateError> {
        let unsubscribe_url = self.ctx.unsubscribe_url.map(str::to_string);
        let ctx = template::Context::new(template::Scope {
            language,
            ..self.template_scope()
        });
        let named = |field: &str, r: Result<String, template::TemplateError>| {
            r.map_err(|mut e| {
                e.message = format!("{field}: {}", e.message);
                e
            })
        };
        let text = |field: &str, s: &str| named(field, ctx.render(s, false));
        let data = |part: &str,
                    m: &BTreeMap<String, String>|
         -> Result<BTreeMap<String, String>, template::TemplateError> {
            m.iter()
                .map(|(k, v)| Ok((k.clone(), text(&format!("{part}.{k}"), v)?)))
                .collect()
        };
        Ok(match t {
            Template::Email(e) => {
                let subject = one_line(text("subject", &e.subject)?);
                let html = e
                    .html
                    .as_deref()
                    .map(|h| named("html", ctx.render(h, true)))
                    .transpose()?;
                let body_text = e.text.as_deref().map(|s| text("text", s)).transpose()?;
                // A part blank for this user's data (`{{ event.title }}` of an event without
                // one) is not sent: an email with no subject or no body is not sent at all
                // (SES takes no message without a subject, and an inbox line with none, or a
                // mail that opens blank, reads as broken or as spam); a blank one of the two
                // bodies is left out, so that a client showing HTML shows the text instead.
                let blank =
                    |part: &Option<String>| part.as_deref().is_none_or(|p| p.trim().is_empty());
                let subject_blank = subject.trim().is_empty();
                let bodies_blank = blank(&html) && blank(&body_text);
                if let Some(message) = empty_email(e, subject_blank, bodies_blank) {
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message,
                    });
                }
                Content::Email {
                    subject,
                    html: html.filter(|h| !h.trim().is_empty()),
                    text: body_text.filter(|t| !t.trim().is_empty()),
                    unsubscribe_url: if e.marketing { unsubscribe_url } else { None },
                }
            }
            Template::Sms(s) => {
                let body = plain_spaces(text("body", &s.body)?);
                // What SNS would refuse for this user, said here: it takes at most 1,600
                // characters a message (sent in parts of 160 GSM or 70 other characters).
                let length = body.chars().count();
                let too = if body.trim().is_empty() {
                    Some("body: the SMS is empty for this user".to_string())
                } else if length > SMS_MOST_CHARACTERS {
                    Some(format!(
                        "body: the SMS is {length} characters for this user; SNS sends at most {SMS_MOST_CHARACTERS}: shorten it"
                    ))
                } else {
                    None
                };
                if let Some(message) = too {
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message,
                    });
                }
                Content::Sms {
                    body,
                    sms_type: s.sms_type,
                }
            }
            Template::Push(p) => {
                let title = p
                    .title
                    .as_deref()
                    .map(|t| text("title", t))
                    .transpose()?
                    .unwrap_or_default();
                let body = p
                    .body
                    .as_deref()
                    .map(|b| text("body", b))
                    .transpose()?
                    .unwrap_or_default();
                // Nothing to show (both blank for this user's data): not sent, as an SMS. A
                // silent push shows nothing by design: its data is the message.
                if !p.silent && title.trim().is_empty() && body.trim().is_empty() {
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message: "the push is empty for this user".into(),
                    });
                }
                Content::Push {
                    title,
                    body,
                    silent: p.silent,
                    data: data("data", &p.data)?,
                    expires: p.expires,
                }
            }
            Template::InApp(p) => {
                let title = text("title", &p.title)?;
                let body = text("body", &p.body)?;
                // Nothing for the inbox to show (both blank for this user's data): not sent,
                // as a push.
                if title.trim().is_empty() && body.trim().is_empty() {
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message: "the in-app message is empty for this user: its title and its body rendered empty".into(),
                    });
                }
                Content::InApp {
                    title,
                    body,
                    data: data("data", &p.data)?,
                    expires: p.expires,
                }
            }
            Template::Webhook(w) => {
                // A secret renders as its marker: the sender puts the value in, for the names
                // the call reads alone.
                let reads_secrets = template::reads_secrets(&w.url)
                    || w.headers.values().any(|v| template::reads_secrets(v))
                    || w.body.as_deref().is_some_and(template::reads_secrets);
                let mut secrets = Vec::new();
                let mut call = |field: &str, s: &str| {
                    let rendered = ctx.render_webhook(s, reads_secrets).map(|(text, names)| {
                        secrets.extend(names);
                        text
                    });
                    named(field, rendered)
                };
                let headers = w
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), call(&format!("headers.{k}"), v)?)))
                    .collect::<Result<BTreeMap<_, _>, template::TemplateError>>()?;
                // A header HTTP cannot carry (a rendered value with a line break) is this
                // user's message failing, here, as the deployed sender would refuse it.
                for (name, value) in &headers {
                    if let Some(why) =
                        header_name_problem(name).or_else(|| header_value_problem(value))
                    {
                        return Err(template::TemplateError {
                            line: None,
                            column: None,
                            message: format!("headers.{name}: {why}"),
                        });
                    }
                }
                // A URL the deployed sender could not call (the profile's `ftp://` address, an
                // empty one) is this user's message failing, here, as for a header.
                let url = call("url", &w.url)?;
                let body = w.body.as_deref().map(|b| call("body", b)).transpose()?;
                secrets.sort_unstable();
                secrets.dedup();
                // Checked with a stand-in for each secret (the sender checks it again, the
                // values in).
                let checked = crate::secrets::stood_in(&url, &secrets);
                if let Some(why) = webhook_url_problem(&checked)
                    .or_else(|| crate::webhook::host_problem(&w.url, &checked))
                {
                    // Without the URL itself, which may carry the user's token or address.
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message: format!("url: the URL {why}"),
                    });
                }
                // A secret goes only where the journey wrote the host out: never to a host the
                // user's data gives (`waymark validate` says so first).
                if !secrets.is_empty() && !crate::webhook::host_written_out(&w.url) {
                    return Err(template::TemplateError {
                        line: None,
                        column: None,
                        message: format!("url: {}", crate::webhook::SECRET_HOST_ADVICE),
                    });
                }
                // A body that goes out as JSON (the step names no other `Content-Type`) and is
                // not (a value with a quote, a missing one leaving `"m": ,`): the receiver could
                // not read it, so it fails here, saying where.
                // (`application/json`, or a `+json` type; not NDJSON, several values a body.)
                let json = crate::webhook::body_media(&headers) == crate::webhook::BodyMedia::Json;
                if let Some(b) = body.as_deref().filter(|_| json) {
                    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(b) {
                        // A secret outside a string is a marker where a value belongs.
                        let secret = if !crate::secrets::names(b, &secrets).is_empty() {
                            ", and a secret goes inside a JSON string: `\"{{ secrets.NAME }}\"`"
                        } else {
                            ""
                        };
                        return Err(template::TemplateError {
                            line: None,
                            column: None,
                            message: format!(
                                "body: is not JSON as rendered for this user ({e}): build it with `tojson`, like `{{\"user\": {{{{ user_id | tojson }}}}}}`{secret}"
                            ),
                        });
                    }
                }
                Content::Webhook {
                    url,
                    method: w.method.clone(),
                    headers,
                    body,
                    secrets,
                }
            }
        })
    }
}

/// What to say of the email `e` whose subject, or both bodies, rendered blank for this user
/// (the parts it has named, as written); `None` when it has both a subject and a body.
fn empty_email(e: &EmailTemplate, subject_blank: bool, bodies_blank: bool) -> Option<String> {
    let (bodies, all) = match (e.html.is_some(), e.text.is_some()) {
        (true, true) => (
            "its html and its text",
            "its subject, its html and its text",
        ),
        (true, false) => ("its html", "its subject and its html"),
        _ => ("its text", "its subject and its text"),
    };
    match (subject_blank, bodies_blank) {
        (true, true) => Some(format!(
            "the email is empty for this user: {all} rendered empty"
        )),
        (true, false) => Some(
            "subject: the email's subject is empty for this user, and an email is not sent without one: give it some fixed text, or a `default('...')`".into(),
        ),
        (false, true) => Some(format!(
            "the email has no body for this user: {bodies} rendered empty"
        )),
        (false, false) => None,
    }
}

/// Whether an update's value of trait `k` is checked as an identify's is: an address, a zone or
/// a locale, which Waymark sends to or formats by.
fn is_checked_trait(k: &str) -> bool {
    matches!(k, "email" | "phone" | "timezone" | "locale")
}

/// `value`, resolved, as an update writes trait `k`: an address, a zone or a locale as an
/// identify keeps it ([`crate::event::normalized_trait`]: `+1 415 555-0123` as E.164), or why
/// an identify would refuse it; any other trait's as it is.
fn checked_trait(k: &str, value: Value) -> Result<Value, String> {
    if !is_checked_trait(k) {
        return Ok(value);
    }
    let value = crate::event::normalized_trait(k, &value).unwrap_or(value);
    match crate::event::identify_trait_problem(k, &value) {
        Some(why) => Err(why),
        None => Ok(value),
    }
}

/// Whether a value holds a template: itself, or a text inside it.
fn holds_template(v: &Value) -> bool {
    match v {
        Value::String(s) => template::is_template(s),
        Value::Object(m) => m.values().any(holds_template),
        Value::Array(a) => a.iter().any(holds_template),
        _ => false,
    }
}

/// Why [`rendered_within`] made no value.
enum Unrendered {
    /// A template's value is missing for this user (as a whole value's would be).
    Missing,
    /// A template failed to render: why.
    Failed(String),
}

/// A value with each template in it rendered (itself, or the texts inside an object or a
/// list): one that is one expression keeps its value's type, any other is text.
fn rendered_within(ctx: &template::Context<'_>, v: &Value) -> Result<Value, Unrendered> {
    Ok(match v {
        Value::String(s) if template::is_template(s) => match ctx.evaluate(s) {
            Some(Ok(Some(value))) => value,
            Some(Ok(None)) => return Err(Unrendered::Missing),
            Some(Err(e)) => return Err(Unrendered::Failed(e.message)),
            None => Value::String(
                ctx.render(s, false)
                    .map_err(|e| Unrendered::Failed(e.message))?,
            ),
        },
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), rendered_within(ctx, v)?)))
                .collect::<Result<_, Unrendered>>()?,
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| rendered_within(ctx, v))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `wait_for` keeps of the events it must not hear those from its beginning on (and those
    /// the history no longer holds, which it cannot tell), the latest [`MAX_WAIT_HEARD`].
    #[test]
    fn a_wait_keeps_the_latest_heard_events_from_its_beginning() {
        let t = |h: i64| {
            "2026-12-01T00:00:00Z".parse::<Timestamp>().expect("time")
                + SignedDuration::from_hours(h)
        };
        let mut user = Profile::new("ann");
        user.history.insert(
            "app_opened".into(),
            vec![(t(1), "before".into()), (t(2), "at".into())],
        );
        let heard = vec!["before".to_string(), "at".into(), "forgotten".into()];
        assert_eq!(heard_from(heard, &user, t(2)), ["at", "forgotten"]);
        let many: Vec<String> = (0..MAX_WAIT_HEARD + 3).map(|n| format!("e{n}")).collect();
        let kept = heard_from(many.clone(), &user, t(2));
        assert_eq!(kept, many[3..]);
    }
}
