//! The timeline: what happened to a user in each journey and why, one entry per fact, and the
//! per-step counters (stats) that follow from it. Stats are derived from entries, never kept apart.

use crate::counter::{Counter, StepCounter, Took};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::journey::Channel;
use crate::profile::Address;

/// One fact of a user's timeline. The journey and enrollment names are shared (`Arc`) by the
/// entries of a transition rather than copied into each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    /// The journey the fact is about; empty, and left out, for a fact of the profile, in no
    /// journey ([`What::NotKept`]; entries stored before have it as `""`).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub journey: Arc<str>,
    /// The enrollment the fact is about; for a refused entry, the one that stood in the way
    /// (empty, and left out, when none did).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub enrollment: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Arc<str>>,
    #[serde(flatten)]
    pub what: What,
}

/// One fact, with its reason where there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What {
    /// Entered the journey (on this version, because of this event); `detail`, for an
    /// `inactive` trigger, what its check judged: her latest activity when it read her profile,
    /// and how long before.
    Entered {
        version: u32,
        trigger: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Reached a step.
    Step,
    /// Waiting until `until`, because of `why` (`wait 30m`, `wait_until 09:00`, `wait_for app_opened`, `quiet hours`).
    Waiting { until: Timestamp, why: String },
    /// A wait ended (`timeout` for a `wait_for` that timed out, `event` for one that got its event).
    Woke { how: String },
    /// A branch picked a path: the case's condition (or `else`) and where it went, with what
    /// the paths read held (that case's, or every case's for `else`; see
    /// [`crate::condition::Condition::values`]).
    Branched {
        on: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<String>,
    },
    /// A split picked a path; `again` when she took it before: the enrollment came back to
    /// this split in a loop, or an earlier enrollment of hers took it (the same path, as the
    /// split is stable: the stats count who took each path, once).
    Split {
        path: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        again: bool,
    },
    /// A message went out (in the send's `locales` variant `locale`, when one was chosen):
    /// `id`, the message's id, its send's ledger key `{enrollment}#{step}#{visit}` (what makes
    /// the send once, and the `id` of its line in `waymark dev`'s outbox), and `to`, the address
    /// it went to (an email address, a phone number, the push devices; a send tried again after
    /// she changed it goes to the one she has then). Entries stored before have neither: an
    /// empty `id` and no `to`, both left out.
    Sent {
        channel: Channel,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locale: Option<Arc<str>>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Address>,
    },
    /// A message was not sent, and why (`no_address`, `opted_out`, `suppressed`, `capped`, `rejected`, `exited`).
    Skipped {
        channel: Channel,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The first channel could not reach the user; the fallback was used.
    FellBack {
        from: Channel,
        to: Channel,
        reason: String,
        /// What about the first channel stood in the way (since when an opt-out holds, what
        /// suppressed the address), where there is more to say than `reason`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Profile traits were changed. A `set` value written as a template that could not be
    /// rendered is left as it was, with why (`failed`: trait -> reason).
    Updated {
        set: Vec<String>,
        unset: Vec<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        failed: BTreeMap<String, String>,
    },
    /// The goal event happened within its window (`event`: its name, or `trait_changed plan`
    /// for a goal on an identify's change of `plan`); `splits`: the paths the user's splits took,
    /// so each path (and the holdout) has its own conversions in the stats; `last_message`:
    /// the step of the last message this enrollment sent the user before the goal event, the
    /// step the conversion is credited to (none when none had gone out); `goal_at`: when the
    /// goal event happened (its `timestamp`), when that is not the entry's `at` (the event
    /// arrived late, or out of order), so a message shown before the entry is seen to have gone
    /// out after the goal (left out when the same, and in entries stored before it was kept).
    Converted {
        event: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        splits: Vec<SplitChoice>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        goal_at: Option<Timestamp>,
    },
    /// Ended by an `exit_when` event (`event`: its name), or an identify's change of a trait an
    /// `exit_when` watches (`trait_changed plan`).
    Exited { event: String },
    /// Ended because the journey was stopped (`status: stopped`).
    Stopped,
    /// The step's in-app message, unread, was taken out of the user's inbox because the
    /// enrollment ended (`reason`: `exit_when order_completed`, `journey stopped`); `detail`
    /// says so when it had not reached the inbox yet (it is kept out of it).
    Withdrawn {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The step's in-app message stays in the inbox although the enrollment exited, and why
    /// (`read`: she had opened it, `detail` saying when).
    NotWithdrawn {
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Ended before the journey's end because a step could not be taken, and why (a
    /// `wait_until` whose `date` the user does not have), or because the user was erased
    /// ([`crate::erase::ERASED_REASON`]). Counted as an exit.
    Ended { reason: String },
    /// Reached an exit step or the end.
    Completed,
    /// Held out by a split; `again` when she was held out by it before (an earlier enrollment
    /// of hers: the stats count her in the holdout once, as [`What::Split`]'s `again`).
    HeldOut {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        again: bool,
    },
    /// The anonymous user `from` turned out to be `into` (an event carried both ids): the
    /// enrollment goes on as `into`'s, or, when `into` was in the journey already or her entry
    /// rule refuses this one (`ended`, `reason` saying which), it ends here (counted as an exit).
    Merged {
        from: String,
        into: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ended: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Did the journey's trigger but did not enter, and why: `condition` (its `where` was
    /// false), `enrolled` (in the journey already), `reentry` (its `reentry` rule), `closed`
    /// or `stopped` (the journey's status), `no_key` (its `enrollment_key` read no value) or
    /// `too_many` (the bound on one user's keyed enrollments at once).
    NotEntered {
        trigger: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// An event the enrollment listens for came (or an identify changed a trait an exit
    /// watches: `event` is `trait_changed plan`), and the `where` of the part that names it
    /// (`by`: `exit_when`, `wait_for`) was false, so it moved nothing: `detail` is the
    /// condition and what it read; or the event happened before the wait began, or before the
    /// enrollment's trigger (`by`: also `goal`), and `detail` says when each was. Kept with the
    /// event, as a refused entry is.
    Unmet {
        event: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// What an event brought that the user's profile did not keep, and why (the rest of the
    /// event was applied): an identify's trait whose value is no address, zone or locale
    /// (`fields`: `traits.phone`; `value` as sent, cut short, an address not shown), the
    /// traits past the profile's bounds (`more`: how many past those `fields` lists), or an
    /// anonymous id past them (`anonymousId`: not merged). A fact of the profile, in no
    /// journey (`journey` is empty, and left out); kept with the event, as a refused entry is.
    NotKept {
        fields: Vec<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        more: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        reason: String,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a `split` step chose for an enrollment: a path by its name, or the holdout (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitChoice {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// When it was chosen (kept on the enrollment; enrollments stored before had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// [`chosen_by`], less the choices an earlier enrollment of hers had a conversion counted on
/// (`counted`, see [`crate::enrollment::Enrollment::counted`]): a split's stats count her
/// conversion once on her path.
pub fn credited(
    splits: &[SplitChoice],
    counted: &[crate::enrollment::Counted],
    at: Timestamp,
) -> Vec<SplitChoice> {
    let mut out = chosen_by(splits, at);
    out.retain(|c| {
        !counted
            .iter()
            .any(|k| k.converted && k.step == c.step && k.path == c.path)
    });
    out
}

/// The choices a conversion at `at` credits: those made by then (a goal event stamped before a
/// split, arriving late, is no path's of it), without their times (as the timeline shows them).
pub fn chosen_by(splits: &[SplitChoice], at: Timestamp) -> Vec<SplitChoice> {
    splits
        .iter()
        .filter(|c| c.at.is_none_or(|chosen| chosen <= at))
        .map(|c| SplitChoice {
            at: None,
            ..c.clone()
        })
        .collect()
}

fn is_empty(s: &Arc<str>) -> bool {
    s.is_empty()
}

/// What an entry adds to the counters.
enum Fact<'a> {
    Entered,
    Step,
    Waiting,
    Woke,
    Sent(Channel),
    Skipped(&'a str),
    Split(&'a str),
    /// With the step the conversion is credited to (its last message's), if any.
    Converted(&'a [SplitChoice], Option<&'a str>),
    Exited,
    Completed,
    /// Whether she was held out by this split before (not counted in its holdout again).
    HeldOut(bool),
    Uncounted,
}

impl What {
    fn fact(&self) -> Fact<'_> {
        match self {
            What::Entered { .. } => Fact::Entered,
            What::Step => Fact::Step,
            What::Waiting { .. } => Fact::Waiting,
            What::Woke { .. } => Fact::Woke,
            What::Sent { channel, .. } => Fact::Sent(*channel),
            What::Skipped { reason, .. } => Fact::Skipped(reason),
            What::Converted {
                splits,
                last_message,
                ..
            } => Fact::Converted(splits, last_message.as_deref()),
            What::Exited { .. }
            | What::Stopped
            | What::Ended { .. }
            | What::Merged { ended: true, .. } => Fact::Exited,
            What::Completed => Fact::Completed,
            What::HeldOut { again } => Fact::HeldOut(*again),
            What::Split { path, again: false } => Fact::Split(path),
            What::Split { again: true, .. } => Fact::Uncounted,
            What::Branched { .. }
            | What::FellBack { .. }
            | What::Updated { .. }
            // What an exit did to the inbox: the exit is counted by its own entry.
            | What::Withdrawn { .. }
            | What::NotWithdrawn { .. }
            // The enrollment goes on under the identified user: nothing ends or starts.
            | What::Merged { ended: false, .. }
            // Kept with the event that was refused, not in the folded timeline.
            | What::NotEntered { .. }
            | What::Unmet { .. }
            // A fact of the profile, in no journey.
            | What::NotKept { .. } => Fact::Uncounted,
        }
    }
}

/// Counter changes for a set of entries: journey → counter name ([`Counter`]) → delta.
pub fn counters(entries: &[Entry]) -> BTreeMap<String, BTreeMap<String, i64>> {
    tally(
        entries
            .iter()
            .map(|e| (&*e.journey, e.step.as_deref(), e.what.fact())),
    )
}

/// The part of a stored entry that the counters read (the rest is skipped, not built).
#[derive(Deserialize)]
struct Counted<'a> {
    /// Left out of a fact of the profile, in no journey.
    #[serde(default, borrow)]
    journey: Cow<'a, str>,
    #[serde(default, borrow)]
    step: Option<Cow<'a, str>>,
    #[serde(borrow)]
    what: Cow<'a, str>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    path: Option<Cow<'a, str>>,
    /// A split (or holdout) she took before, in a loop or an earlier enrollment: not counted
    /// again.
    #[serde(default)]
    again: bool,
    /// A conversion's split paths: such a record is counted from its entries (conversions are
    /// few), so only whether they are there is read here.
    #[serde(default)]
    splits: Option<serde::de::IgnoredAny>,
    /// A conversion's credited step: such a record is counted from its entries too.
    #[serde(default)]
    last_message: Option<serde::de::IgnoredAny>,
}

/// [`counters`] of a stored timeline record (a JSON list of entries), read without building
/// the entries: the stats fold reads every record once. An entry kind this fast path does not
/// name (one added to [`What`] later) sends the record through [`counters`] itself, so the
/// counts never depend on this list being complete.
pub fn counters_of_json(body: &[u8]) -> Result<BTreeMap<String, BTreeMap<String, i64>>, String> {
    let list: Vec<Counted<'_>> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut facts = Vec::with_capacity(list.len());
    for c in &list {
        let fact = match c.what.as_ref() {
            "entered" => Fact::Entered,
            "step" => Fact::Step,
            "waiting" => Fact::Waiting,
            "woke" => Fact::Woke,
            "sent" => Fact::Sent(c.channel.ok_or("a `sent` entry without its channel")?),
            "skipped" => Fact::Skipped(
                c.reason
                    .as_deref()
                    .ok_or("a `skipped` entry without its reason")?,
            ),
            "converted" if c.splits.is_none() && c.last_message.is_none() => {
                Fact::Converted(&[], None)
            }
            "split" if c.again => Fact::Uncounted,
            "split" => Fact::Split(
                c.path
                    .as_deref()
                    .ok_or("a `split` entry without its path")?,
            ),
            "exited" | "stopped" | "ended" => Fact::Exited,
            "completed" => Fact::Completed,
            "held_out" => Fact::HeldOut(c.again),
            "branched" | "fell_back" | "updated" | "not_entered" | "unmet" | "not_kept"
            | "withdrawn" | "not_withdrawn" => Fact::Uncounted,
            _ => {
                let entries: Vec<Entry> =
                    serde_json::from_slice(body).map_err(|e| e.to_string())?;
                return Ok(counters(&entries));
            }
        };
        facts.push((c.journey.as_ref(), c.step.as_deref(), fact));
    }
    Ok(tally(facts))
}

fn tally<'a>(
    facts: impl IntoIterator<Item = (&'a str, Option<&'a str>, Fact<'a>)>,
) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    tally_into(&mut out, facts);
    out.retain(|_, c| {
        c.retain(|_, d| *d != 0);
        !c.is_empty()
    });
    out
}

/// Adds [`counters`] of `entries` into `out` (zeros included). A counter already in `out`
/// costs no allocation: the stats fold adds every timeline record into one total.
pub fn count_into(entries: &[Entry], out: &mut BTreeMap<String, BTreeMap<String, i64>>) {
    tally_into(
        out,
        entries
            .iter()
            .map(|e| (&*e.journey, e.step.as_deref(), e.what.fact())),
    );
}

/// At most how many counters [`count_into`] adds for `entries`, per journey.
pub fn most_counters(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| match e.what.fact() {
            // The journey's counter and the step's.
            Fact::Exited | Fact::HeldOut(_) => 2,
            Fact::Converted(splits, step) => 1 + splits.len() + usize::from(step.is_some()),
            _ => 1,
        })
        .sum()
}

fn tally_into<'a>(
    out: &mut BTreeMap<String, BTreeMap<String, i64>>,
    facts: impl IntoIterator<Item = (&'a str, Option<&'a str>, Fact<'a>)>,
) {
    // A counter's name is built here and copied only when the counter is new.
    let mut name = String::with_capacity(64);
    for (journey, step, fact) in facts {
        let c = match out.get_mut(journey) {
            Some(c) => c,
            None => out.entry(journey.to_string()).or_default(),
        };
        let step = step.unwrap_or_default();
        // The few facts of splits count out of line (`add_split`): the loop stays small.
        if let Fact::Split(_) | Fact::Converted(..) | Fact::HeldOut(_) = fact {
            add_split(c, &mut name, step, &fact);
            continue;
        }
        let mut add = |counter: Counter<'_>, d: i64| add_to(c, &mut name, counter, d);
        let at = |what| Counter::Step(step, what);
        match fact {
            Fact::Entered => add(Counter::Entered, 1),
            Fact::Step => add(at(StepCounter::Entered), 1),
            Fact::Waiting => add(at(StepCounter::Waiting), 1),
            Fact::Woke => add(at(StepCounter::Waiting), -1),
            Fact::Sent(channel) => add(at(StepCounter::Sent(channel.as_str())), 1),
            Fact::Skipped(reason) => add(at(StepCounter::Skipped(reason)), 1),
            Fact::Exited => {
                add(Counter::Exited, 1);
                if !step.is_empty() {
                    add(at(StepCounter::Exited), 1);
                }
            }
            Fact::Completed => add(Counter::Completed, 1),
            Fact::Split(_) | Fact::Converted(..) | Fact::HeldOut(_) | Fact::Uncounted => {}
        }
    }
}

/// Adds `d` to `counter` (its name built in `name`, copied only when the counter is new).
/// Inlined: the stats fold adds every timeline entry through it.
#[inline(always)]
fn add_to(c: &mut BTreeMap<String, i64>, name: &mut String, counter: Counter<'_>, d: i64) {
    counter.write(name);
    match c.get_mut(name.as_str()) {
        Some(n) => *n += d,
        None => {
            c.insert(name.clone(), d);
        }
    }
}

/// The counters of a split's facts: the path taken or the holdout, and a conversion (with
/// the paths its enrollment took, and the step it is credited to).
#[inline(never)]
fn add_split(c: &mut BTreeMap<String, i64>, name: &mut String, step: &str, fact: &Fact<'_>) {
    let mut add = |counter: Counter<'_>| add_to(c, name, counter, 1);
    match fact {
        Fact::Split(path) => add(Counter::Step(step, StepCounter::Path(path, Took::Entered))),
        // The journey's count is of enrollments (its entered ones end so); the split's, of
        // people.
        Fact::HeldOut(again) => {
            add(Counter::HeldOut);
            if !step.is_empty() && !again {
                add(Counter::Step(step, StepCounter::Holdout(Took::Entered)));
            }
        }
        Fact::Converted(splits, credited) => {
            add(Counter::Converted);
            if let Some(s) = credited {
                add(Counter::Step(s, StepCounter::Converted));
            }
            for s in splits.iter() {
                let took = match &s.path {
                    Some(path) => StepCounter::Path(path, Took::Converted),
                    None => StepCounter::Holdout(Took::Converted),
                };
                add(Counter::Step(&s.step, took));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: Option<&str>, what: What) -> Entry {
        Entry {
            at: "2026-12-01T10:00:00Z".parse().expect("timestamp"),
            journey: "cart \"abandonment\"".into(),
            enrollment: "e1".into(),
            step: step.map(Arc::from),
            what,
        }
    }

    /// Fails to compile when a kind is added to `What`, and the test below fails until
    /// `every_kind` has an entry of it.
    fn kind_number(w: &What) -> usize {
        match w {
            What::Entered { .. } => 0,
            What::Step => 1,
            What::Waiting { .. } => 2,
            What::Woke { .. } => 3,
            What::Branched { .. } => 4,
            What::Split { .. } => 5,
            What::Sent { .. } => 6,
            What::Skipped { .. } => 7,
            What::FellBack { .. } => 8,
            What::Updated { .. } => 9,
            What::Converted { .. } => 10,
            What::Exited { .. } => 11,
            What::Completed => 12,
            What::HeldOut { .. } => 13,
            What::Stopped => 14,
            What::NotEntered { .. } => 15,
            What::Merged { .. } => 16,
            What::Ended { .. } => 17,
            What::Unmet { .. } => 18,
            What::NotKept { .. } => 19,
            What::Withdrawn { .. } => 20,
            What::NotWithdrawn { .. } => 21,
        }
    }

    /// A `sent` entry says the message's id (its send's ledger key, its outbox line's `id`)
    /// and where it went; one stored before it said them reads, and is written back, as it was.
    #[test]
    fn a_sent_entry_says_its_id_and_address_and_one_stored_before_reads() {
        let before = r#"{"at":"2026-12-01T10:00:00Z","journey":"j","enrollment":"j:ann:1","step":"push","what":"sent","channel":"push","locale":"es"}"#;
        let e: Entry = serde_json::from_str(before).expect("an entry");
        assert_eq!(
            e.what,
            What::Sent {
                channel: Channel::Push,
                locale: Some("es".into()),
                id: String::new(),
                to: None,
            }
        );
        assert_eq!(serde_json::to_string(&e).expect("json"), before);
        let now = r#"{"at":"2026-12-01T10:00:00Z","journey":"j","enrollment":"j:ann:1","step":"push","what":"sent","channel":"push","id":"j:ann:1#push#2","to":[{"platform":"fcm","token":"t1"}]}"#;
        let e: Entry = serde_json::from_str(now).expect("an entry");
        let What::Sent { id, to, .. } = &e.what else {
            panic!("not sent: {e:?}");
        };
        assert_eq!(id, "j:ann:1#push#2");
        assert!(
            matches!(to, Some(Address::Devices(d)) if d.len() == 1 && d[0].token == "t1"),
            "{to:?}"
        );
        assert_eq!(serde_json::to_string(&e).expect("json"), now);
    }

    #[test]
    fn counters_read_from_stored_json_equal_those_of_the_entries() {
        let at: Timestamp = "2026-12-01T10:30:00Z".parse().expect("timestamp");
        let entries = vec![
            entry(
                None,
                What::Entered {
                    version: 2,
                    trigger: "cart_abandoned".into(),
                    detail: None,
                },
            ),
            entry(Some("wait"), What::Step),
            entry(
                Some("wait"),
                What::Waiting {
                    until: at,
                    why: "wait 30m".into(),
                },
            ),
            entry(
                Some("wait"),
                What::Woke {
                    how: "timeout".into(),
                },
            ),
            entry(
                Some("b"),
                What::Branched {
                    on: "else".into(),
                    to: "push".into(),
                    held: Some("event.total = 10".into()),
                },
            ),
            entry(
                Some("s"),
                What::Split {
                    path: "a".into(),
                    again: false,
                },
            ),
            entry(
                Some("push"),
                What::FellBack {
                    from: Channel::Push,
                    to: Channel::Email,
                    reason: "no_address".into(),
                    detail: None,
                },
            ),
            entry(
                Some("push"),
                What::Sent {
                    channel: Channel::Email,
                    locale: None,
                    id: "j:u1:1#push#4".into(),
                    to: Some(Address::One("u1@example.com".into())),
                },
            ),
            // Where a push went: its devices, a list of objects the fast path skips.
            entry(
                Some("push"),
                What::Sent {
                    channel: Channel::Push,
                    locale: Some("es".into()),
                    id: "j:u1:1#push#5".into(),
                    to: Some(Address::Devices(vec![serde_json::from_value(
                        serde_json::json!({"platform": "apns", "token": "t1", "endpoint": "arn:e"}),
                    )
                    .expect("device")])),
                },
            ),
            // Stored before a `sent` said its id and where it went.
            entry(
                Some("push"),
                What::Sent {
                    channel: Channel::Sms,
                    locale: None,
                    id: String::new(),
                    to: None,
                },
            ),
            entry(
                Some("sms"),
                What::Skipped {
                    channel: Channel::Sms,
                    reason: "opted_out".into(),
                    detail: Some("STOP \u{e9}".into()),
                },
            ),
            entry(
                Some("sms"),
                What::Skipped {
                    channel: Channel::Sms,
                    reason: "capped".into(),
                    detail: None,
                },
            ),
            entry(
                Some("up"),
                What::Updated {
                    set: vec!["vip".into()],
                    unset: vec![],
                    failed: BTreeMap::new(),
                },
            ),
            entry(
                None,
                What::Converted {
                    event: "order_completed".into(),
                    splits: vec![],
                    last_message: Some("push".into()),
                    goal_at: None,
                },
            ),
            entry(
                Some("wait"),
                What::Exited {
                    event: "order_completed".into(),
                },
            ),
            entry(None, What::Completed),
            entry(Some("s"), What::HeldOut { again: false }),
            entry(Some("push"), What::Stopped),
            entry(
                Some("day_before"),
                What::Ended {
                    reason: "event.starts_at is missing".into(),
                },
            ),
            entry(
                Some("wait"),
                What::Merged {
                    from: "anon:d1".into(),
                    into: "u1".into(),
                    ended: false,
                    reason: None,
                },
            ),
            entry(
                Some("email"),
                What::Merged {
                    from: "anon:d2".into(),
                    into: "u1".into(),
                    ended: true,
                    reason: Some("u1 is in this journey already".into()),
                },
            ),
            entry(
                None,
                What::NotEntered {
                    trigger: "cart_abandoned".into(),
                    reason: "enrolled".into(),
                    detail: Some("in the journey already".into()),
                },
            ),
            entry(
                Some("wait"),
                What::Unmet {
                    event: "order_completed".into(),
                    by: "exit_when".into(),
                    detail: Some("`where: event.total > 10` was false (event.total = 5)".into()),
                },
            ),
            Entry {
                journey: "".into(),
                enrollment: "".into(),
                ..entry(
                    None,
                    What::NotKept {
                        fields: vec!["traits.k1".into()],
                        more: 3,
                        value: None,
                        reason: "the profile keeps at most 1000 traits".into(),
                    },
                )
            },
            // A split came back to in a loop: counted once, with the first.
            entry(
                Some("s"),
                What::Split {
                    path: "a".into(),
                    again: true,
                },
            ),
            entry(
                Some("nudge"),
                What::Withdrawn {
                    reason: "exit_when order_completed".into(),
                    detail: None,
                },
            ),
            entry(
                Some("guide"),
                What::NotWithdrawn {
                    reason: "read".into(),
                    detail: Some("read at 2026-12-01T09:00:00Z".into()),
                },
            ),
        ];
        let kinds: std::collections::BTreeSet<usize> =
            entries.iter().map(|e| kind_number(&e.what)).collect();
        assert_eq!(kinds.len(), 22, "every kind of entry is in the test");
        let json = serde_json::to_vec(&entries).expect("json");
        let want = counters(&entries);
        assert_eq!(counters_of_json(&json), Ok(want.clone()));
        // The same through the fast path (no conversion in the record sends it through the
        // entries): a split come back to is not counted again.
        let again = [
            entry(
                Some("s"),
                What::Split {
                    path: "a".into(),
                    again: false,
                },
            ),
            entry(
                Some("s"),
                What::Split {
                    path: "a".into(),
                    again: true,
                },
            ),
        ];
        let counted = counters(&again);
        assert_eq!(
            counters_of_json(&serde_json::to_vec(&again).expect("json")),
            Ok(counted.clone())
        );
        assert_eq!(
            counted["cart \"abandonment\""].get("step.s.path.a.entered"),
            Some(&1)
        );
        let j = &want["cart \"abandonment\""];
        assert_eq!(j.get("step.s.path.a.entered"), Some(&1));
        assert_eq!(j.get("step.push.sent.email"), Some(&1));
        assert_eq!(j.get("step.sms.skipped.opted_out"), Some(&1));
        assert_eq!(j.get("step.wait.exited"), Some(&1));
        assert_eq!(
            j.get("step.push.exited"),
            Some(&1),
            "stopped counts as exited"
        );
        assert_eq!(
            j.get("step.day_before.exited"),
            Some(&1),
            "ended counts as exited"
        );
        assert_eq!(
            j.get("step.email.exited"),
            Some(&1),
            "merged into a user in the journey already counts as exited"
        );
        assert_eq!(
            j.get("exited"),
            Some(&4),
            "exited, stopped, ended and merged-and-ended; a merge that goes on ends nothing"
        );
        assert_eq!(
            j.get("step.wait.waiting"),
            None,
            "waited and woke: none waiting"
        );
        assert_eq!(j.get("step.s.path.a.entered"), Some(&1));
        assert_eq!(j.get("step.s.holdout.entered"), Some(&1));
        assert_eq!(j.get("held_out"), Some(&1));
    }

    /// A conversion counts for the split path (or holdout) its enrollment took, and for the
    /// step of the message it is credited to, whether the record is counted from its entries
    /// or from its JSON.
    #[test]
    fn a_conversion_counts_for_its_split_paths_and_its_message() {
        let converted = |splits: Vec<SplitChoice>| {
            let credited = (!splits.is_empty()).then(|| "offer".to_string());
            entry(
                Some("offer"),
                What::Converted {
                    event: "subscription_upgraded".into(),
                    splits,
                    last_message: credited,
                    goal_at: None,
                },
            )
        };
        let entries = vec![
            converted(vec![SplitChoice {
                step: "copy_test".into(),
                path: Some("features".into()),
                at: None,
            }]),
            converted(vec![
                SplitChoice {
                    step: "copy_test".into(),
                    path: None,
                    at: None,
                },
                SplitChoice {
                    step: "channel_test".into(),
                    path: Some("sms".into()),
                    at: None,
                },
            ]),
            converted(vec![]),
        ];
        let json = serde_json::to_vec(&entries).expect("json");
        let want = counters(&entries);
        assert_eq!(counters_of_json(&json), Ok(want.clone()));
        let j = &want["cart \"abandonment\""];
        assert_eq!(j.get("converted"), Some(&3));
        assert_eq!(j.get("step.copy_test.path.features.converted"), Some(&1));
        assert_eq!(j.get("step.copy_test.holdout.converted"), Some(&1));
        assert_eq!(j.get("step.channel_test.path.sms.converted"), Some(&1));
        assert_eq!(j.get("step.offer.converted"), Some(&2));
        // The fold's chunk limits are judged on at most this many counters.
        assert_eq!(most_counters(&entries), 3 + 4 + 1);
        assert!(j.len() <= most_counters(&entries));
    }

    /// A fact of the profile, in no journey, leaves `journey` out, as it does `enrollment` and
    /// `step` (it was `"journey": ""`); one stored before, with it, reads as it did, and both
    /// are counted alike (as nothing).
    #[test]
    fn a_fact_of_the_profile_leaves_its_journey_out() {
        let not_kept = Entry {
            journey: "".into(),
            enrollment: "".into(),
            ..entry(
                None,
                What::NotKept {
                    fields: vec!["traits.timezone".into()],
                    more: 0,
                    value: Some("\"Europe/Pariss\"".into()),
                    reason: "no such time zone".into(),
                },
            )
        };
        let json = serde_json::to_value(&not_kept).expect("json");
        assert_eq!(json.get("journey"), None, "{json}");
        assert_eq!(json.get("enrollment"), None, "{json}");
        let read: Entry = serde_json::from_value(json.clone()).expect("read");
        assert_eq!(read, not_kept);
        let mut before = json;
        before["journey"] = "".into();
        let read: Entry = serde_json::from_value(before.clone()).expect("read before");
        assert_eq!(read, not_kept);
        for record in [vec![not_kept.clone()], vec![read]] {
            let body = serde_json::to_vec(&record).expect("json");
            assert_eq!(counters_of_json(&body), Ok(BTreeMap::new()));
        }
        let body = serde_json::to_vec(&[before]).expect("json");
        assert_eq!(counters_of_json(&body), Ok(BTreeMap::new()));
    }

    #[test]
    fn a_stored_record_that_is_not_a_timeline_is_an_error() {
        assert!(counters_of_json(b"{}").is_err());
        assert!(counters_of_json(br#"[{"journey":"j","what":"teleported"}]"#).is_err());
        assert!(counters_of_json(br#"[{"journey":"j","what":"sent"}]"#).is_err());
    }
}
