//! How far a user is along each published `repeated` and `inactive` trigger, judged when her
//! view is asked for (`GET /v1/users/{id}`, `waymark why`): a count short of its `times`, or an
//! inactivity check not due yet, is no refusal and leaves no timeline fact, so the answer is
//! worked out from what the view reads anyway: her profile (its event history and
//! `inactivity_checks`), her enrollments and the published journeys. Pure: it reads no clock
//! and no store, and never writes.

use std::cell::OnceCell;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::catalog::Published;
use crate::condition::Scope;
use crate::duration::Duration;
use crate::engine;
use crate::enrollment::Enrollment;
use crate::journey::{Inactive, JourneyStatus, Reentry, Repeated, TriggerKind};
use crate::profile::Profile;

/// How long after an inactivity check's time it is told as `due` rather than as done: the
/// scheduler moves a timer onto the queue in the minute before it is due, and the engine takes
/// it from there.
pub const CHECK_GRACE: SignedDuration = SignedDuration::from_mins(5);

/// How recent an event is told as maybe not applied yet (on its way through the queue).
const JUST_SENT: SignedDuration = SignedDuration::from_mins(5);

/// Where a user stands with one journey's `repeated` or `inactive` trigger, as judged at `at`.
/// Not a timeline fact: nothing happened; it is what her profile and enrollments say now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerAnswer {
    pub journey: String,
    /// The latest version, the one the trigger is judged by.
    pub version: u32,
    /// When it was judged (the API's clock).
    pub at: Timestamp,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// What the trigger holds of her: its kind (`trigger`) and its own fields.
    #[serde(flatten)]
    pub state: TriggerState,
    /// `repeated`: `counting` (short of its count), `count_made` (the count holds, and no
    /// event is being judged: her next one enters her while it holds). `inactive`: `pending`
    /// (a check is armed and not due, or looks again from her latest activity), `due` (its
    /// time came minutes ago), `checked` (her check found her inactive: what it did is in the
    /// timeline; none pending), `no_activity` (she did none of the events: never checked),
    /// `no_check` (activity, no check armed). Both: `enrolled`, `reentry`, `closed` (told to a
    /// user still in it, and of an `inactive` journey to all it still checks), `no_profile`,
    /// `merged`.
    pub reason: String,
    /// Why, in full: the count and when it changes, or the check and what it will read.
    pub detail: String,
    /// The enrollment the reason is about (the one in the way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Arc<str>>,
}

/// The trigger's own part of a [`TriggerAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum TriggerState {
    Repeated {
        event: String,
        times: u32,
        within: Duration,
        /// The occurrences that count now, oldest first: those of the last `within`, after
        /// `after`.
        #[serde(default)]
        counted: Vec<Timestamp>,
        /// Only occurrences after this count: the latest her last entry counted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Timestamp>,
        /// When the earliest counted occurrence leaves the window (an occurrence after this
        /// instant is not counted with it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drops_out_at: Option<Timestamp>,
    },
    Inactive {
        events: Vec<String>,
        #[serde(rename = "for")]
        duration: Duration,
        /// Her latest occurrence of any of the events, as her profile keeps it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_activity: Option<Timestamp>,
        /// Her check's time, as her profile keeps it (`inactivity_checks`): when the check that
        /// an activity armed is due.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check_at: Option<Timestamp>,
        /// When she is inactive for the `for` if she does none of the events before: the
        /// check at `check_at` looks again from her latest activity, so the later of the two.
        /// Only while a check is pending.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enters_at: Option<Timestamp>,
        /// Whether the `where` holds now, her profile as it is now (it is read when the time
        /// has passed, as she is then); none without a `where` or a pending check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matches: Option<bool>,
    },
}

/// Where `user` stands at `now` with each published `repeated` and `inactive` journey (not a
/// stopped one, nor a closed one unless she is still in it or it is `inactive` and checked
/// still): `journeys` the latest version of
/// each, `profile` hers (none: no profile), `enrollments` hers and those of the anonymous
/// visitors she turned out to be, as her view lists them.
pub fn answers(
    journeys: &[Arc<Published>],
    user: &str,
    profile: Option<&Profile>,
    enrollments: &[Enrollment],
    now: Timestamp,
) -> Vec<TriggerAnswer> {
    // Her profile as conditions read it: built once, for the first `where` judged.
    let profile_scope = OnceCell::new();
    journeys
        .iter()
        .filter(|p| match p.journey.status {
            JourneyStatus::Stopped => false,
            // Still in it, or checked for its inactivity while it is closed (the engine looks
            // again for a year, and enters her when it opens again).
            JourneyStatus::Closed => {
                enrollments
                    .iter()
                    .any(|e| *e.journey == *p.journey.id && *e.user_id == *user && e.is_active())
                    || (matches!(p.journey.trigger.kind(), Some(TriggerKind::Inactive(_)))
                        && crate::runtime::still_checked(p, now))
            }
            _ => true,
        })
        .filter_map(|p| {
            let judge = Judge {
                p,
                user,
                profile,
                enrollments,
                now,
                profile_scope: &profile_scope,
            };
            match p.journey.trigger.kind() {
                Some(TriggerKind::Repeated(r)) => Some(judge.repeated(r)),
                Some(TriggerKind::Inactive(i)) => Some(judge.inactive(i)),
                _ => None,
            }
        })
        .collect()
}

/// One journey's answer in the making.
struct Judge<'a> {
    p: &'a Published,
    user: &'a str,
    profile: Option<&'a Profile>,
    enrollments: &'a [Enrollment],
    now: Timestamp,
    /// Her profile as conditions read it, built when first needed.
    profile_scope: &'a OnceCell<Value>,
}

impl Judge<'_> {
    fn answer(&self, condition: Option<String>, state: TriggerState) -> TriggerAnswer {
        TriggerAnswer {
            journey: self.p.journey.id.clone(),
            version: self.p.version,
            at: self.now,
            condition,
            state,
            reason: String::new(),
            detail: String::new(),
            enrollment: None,
        }
    }

    /// Her latest own enrollment of the journey (her view lists one a journey).
    fn hers(&self) -> Option<&Enrollment> {
        let j = &self.p.journey.id;
        self.enrollments
            .iter()
            .filter(|e| *e.journey == **j && *e.user_id == *self.user)
            .max_by_key(|e| e.trigger.at)
    }

    /// What keeps her out whatever the trigger holds: the journey's status, no profile, a
    /// merge, her enrollment in it, the entry rule at `at` (hers, or a visitor's she turned
    /// out to be). `(reason, detail, enrollment)`.
    fn kept_out(&self, at: Timestamp) -> Option<(&'static str, String, Option<Arc<str>>)> {
        let j = &self.p.journey;
        if !j.status.is_active() {
            let status = j.status.as_str();
            let mut detail = format!("the journey's `status: {status}`: no one enters it");
            let e = self.hers().filter(|e| e.is_active());
            if let Some(e) = e {
                detail.push_str(&format!(
                    "; the user's enrollment finishes its path (at step `{}` now)",
                    e.step
                ));
            }
            return Some(("closed", detail, e.map(|e| e.id.clone())));
        }
        let Some(profile) = self.profile else {
            return Some((
                "no_profile",
                "the user has no profile: the trigger counts what her profile keeps (an event or an identify makes one)".into(),
                None,
            ));
        };
        if let Some(into) = &profile.merged_into {
            return Some((
                "merged",
                format!("this anonymous user turned out to be `{into}`: its events are that user's, and count there (GET /v1/users/{into})"),
                None,
            ));
        }
        if let Some(e) = self.hers() {
            if e.is_active() {
                return Some((
                    "enrolled",
                    format!(
                        "in the journey since {} (on version {}, at step `{}`): one enrollment a user at a time",
                        e.entered_at, e.version, e.step
                    ),
                    Some(e.id.clone()),
                ));
            }
            if let Some(why) = engine::reentry_refusal(j, e, at, profile) {
                return Some(("reentry", why, Some(e.id.clone())));
            }
        }
        // What the visitors she turned out to be entered counts as hers (`never`, `after`).
        let visitor = self
            .enrollments
            .iter()
            .filter(|e| *e.journey == *j.id && *e.user_id != *self.user)
            .filter(|_| j.reentry != Reentry::AfterExit)
            .max_by_key(|e| e.trigger.at)?;
        engine::reentry_refusal(j, visitor, at, profile).map(|why| {
            (
                "reentry",
                format!(
                    "{why} (as the anonymous visitor `{}` she turned out to be)",
                    visitor.user_id
                ),
                Some(visitor.id.clone()),
            )
        })
    }

    fn repeated(&self, r: &Repeated) -> TriggerAnswer {
        let within = r.within.to_jiff();
        // Only occurrences after the latest her last entry counted (as the engine counts).
        let after = self.hers().map(Enrollment::hears_from);
        // The span that ends now: an occurrence now counts these with it.
        let counted: Vec<Timestamp> = self
            .profile
            .and_then(|p| p.history.get(&r.event))
            .into_iter()
            .flatten()
            .map(|(t, _)| *t)
            .filter(|t| *t >= self.now - within && after.is_none_or(|a| *t > a))
            .collect();
        let drops_out_at = counted.iter().min().map(|t| *t + within);
        let n = counted.len();
        let times = r.times as usize;
        let mut a = self.answer(
            r.condition.as_ref().map(|c| c.source().to_string()),
            TriggerState::Repeated {
                event: r.event.clone(),
                times: r.times,
                within: r.within,
                counted: counted.clone(),
                after,
                drops_out_at,
            },
        );
        let mut count = format!("{n} of {times} {} within {}", r.event, r.within);
        match (counted.iter().min(), drops_out_at) {
            (Some(first), Some(out)) => count.push_str(&format!(
                ": the earliest counted, at {first}, drops out at {out}"
            )),
            _ => count.push_str(": none counted"),
        }
        if let Some(at) = after {
            count.push_str(&format!(
                " (only those after {at} count: the latest her last entry counted)"
            ));
        }
        let judged = match &r.condition {
            Some(c) => format!(
                "; `where: {}` is judged on the {} that makes the count",
                c.source(),
                r.event
            ),
            None => String::new(),
        };
        if let Some((reason, why, enrollment)) = self.kept_out(self.now) {
            a.reason = reason.into();
            a.detail = format!("{why}; {count}");
            a.enrollment = enrollment;
            return a;
        }
        if n >= times {
            a.reason = "count_made".into();
            a.detail = format!("{count}: {}", self.count_made(r, &counted));
            return a;
        }
        a.reason = "counting".into();
        let more = times - n;
        a.detail = match drops_out_at {
            Some(out) => format!(
                "{count}; {more} more by {out} {} the count (later, the earliest no longer counts with them){judged}",
                if more == 1 { "makes" } else { "make" }
            ),
            None => format!(
                "{count}; {times} within {} make the count{judged}",
                r.within
            ),
        };
        a
    }

    /// Why a count that holds has not entered her, and what does: a count is judged only when
    /// one of its events comes (no timer, no enrollment's end, no reopening, no merge judges it
    /// again), so the one that made it was refused, or none made it (a visitor's history taken
    /// at a login, occurrences from before the journey's publishing, ...). `counted`: oldest
    /// first.
    fn count_made(&self, r: &Repeated, counted: &[Timestamp]) -> String {
        let event = &r.event;
        // Her next one counts with those still in the window then: the count holds with it
        // until the one that leaves it one short drops out.
        let n = counted.len();
        let until = (n + 1)
            .checked_sub(r.times as usize)
            .and_then(|k| counted.get(k))
            .map(|t| *t + r.within.to_jiff());
        let next = match until {
            Some(u) => format!("her next {event} before {u} enters her"),
            None => format!("her next {event} enters her"),
        };
        let condition = match &r.condition {
            Some(c) => format!(" if `where: {}` holds on it", c.source()),
            None => String::new(),
        };
        let mut said = format!(
            "the count holds, and no {event} is being judged: a count is judged only when a {event} comes (not when an enrollment ends, the journey opens again, a `reentry: after` period passes, or a login brings a visitor's history), so {next}{condition}; the timeline's `not_entered` says why the {event} that made it did not enter her, if one did (none does when the count came from a visitor's history or from before the journey was published)"
        );
        // One stamped minutes ago may still be on its way through the queue.
        if let Some(t) = counted.last().filter(|t| **t > self.now - JUST_SENT) {
            said.push_str(&format!(
                "; the {event} at {t} came minutes ago: if it is not applied yet, it is judged when it is"
            ));
        }
        said
    }

    fn inactive(&self, i: &Inactive) -> TriggerAnswer {
        let wait = i.duration.to_jiff();
        let j = &self.p.journey;
        let last = self.profile.and_then(|p| p.last_of(&i.events));
        let check_at = self
            .profile
            .and_then(|p| p.inactivity_checks.get(&j.id))
            .copied();
        // Her check came and went before her latest activity, which armed none (it came with
        // a visitor's history at a login, or the journey had been closed a year): no check looks
        // from it (but one refused for her enrollment or a closure, which the view cannot see).
        let unseen = matches!((check_at, last), (Some(c), Some(l)) if c <= self.now && l > c);
        // The check looks again from her latest activity when it is due: she enters when both
        // have come, if she does none of the events before.
        let enters_at = match (check_at, last) {
            _ if unseen => None,
            (Some(c), Some(l)) => Some(c.max(l + wait)),
            (c, _) => c,
        };
        let pending = enters_at.filter(|t| *t > self.now);
        let events = i.events.join(", ");
        // Her `where` now, with `event.inactive_since` as the check will read it.
        let judged = match (&i.condition, self.profile, pending) {
            (Some(c), Some(profile), Some(_)) => {
                let props = json!({"inactive_since": last.map(|t| t.to_string())});
                let profile_scope = self.profile_scope.get_or_init(|| profile.scope());
                let scope = Scope {
                    event: &props,
                    trigger: &props,
                    waited: &Value::Null,
                    profile: profile_scope,
                    now: self.now,
                    zone: j.default_zone(),
                };
                let holds = c.eval(&scope);
                let said = match holds {
                    true => format!("`where: {}` holds now", c.source()),
                    false => c.why_false_now(&scope),
                };
                Some((holds, said))
            }
            _ => None,
        };
        let mut a = self.answer(
            i.condition.as_ref().map(|c| c.source().to_string()),
            TriggerState::Inactive {
                events: i.events.clone(),
                duration: i.duration,
                last_activity: last,
                check_at,
                enters_at: pending,
                matches: judged.as_ref().map(|(holds, _)| *holds),
            },
        );
        let activity = match last {
            Some(t) => format!("her latest of {events} at {t}"),
            None => format!("she has done none of {events}"),
        };
        if let Some((reason, why, enrollment)) = self.kept_out(pending.unwrap_or(self.now)) {
            a.reason = reason.into();
            a.detail = format!("{why}; {activity}");
            a.detail.push_str(&self.checked_while_kept_out(
                i,
                reason,
                pending,
                enrollment.as_deref(),
            ));
            a.enrollment = enrollment;
            return a;
        }
        if unseen {
            let c = check_at.unwrap_or(self.now);
            a.reason = "no_check".into();
            a.detail = format!(
                "{activity} came after her check at {c} and armed none (it came with a visitor's history at a login, or while the journey had been closed over a year): no check is pending, unless the one at {c} was refused because she was still in the journey or the journey was closed (that one looks again {} after it, then from her latest activity); her next of {events} arms a check for {} after it",
                i.duration, i.duration
            );
            return a;
        }
        let Some(enters_at) = enters_at else {
            let (reason, detail) = match last {
                None => (
                    "no_activity",
                    format!(
                        "{activity} (as far as her profile keeps them, from the journey's first publishing on): a user who never did any is never checked; her first arms a check for {} after it",
                        i.duration
                    ),
                ),
                Some(_) => (
                    "no_check",
                    format!(
                        "{activity} armed no check (it came before the journey was published, or from a visitor's history): her next one arms a check for {} after it",
                        i.duration
                    ),
                ),
            };
            a.reason = reason.into();
            a.detail = detail;
            return a;
        };
        if enters_at > self.now {
            a.reason = "pending".into();
            a.detail = match check_at {
                Some(c) if c < enters_at && c > self.now => format!(
                    "{activity}: her check at {c} looks again from it and enters her at {enters_at} if she does none of {events} before"
                ),
                Some(c) if c < enters_at => format!(
                    "{activity}: her check at {c} found it, and looks again at {enters_at}: it enters her then if she does none of {events} before"
                ),
                // Due later than a `for` after her latest: it came that late (a phone's
                // offline queue, a backfill), and its check waits a settle from its coming.
                Some(c) if last.is_some_and(|l| l + wait < c) => {
                    // The settle is the `for` itself when that is shorter.
                    let settle = wait.min(crate::runtime::CHECK_SETTLE);
                    let spelled = |d: SignedDuration| {
                        crate::duration::Duration::from_secs(
                            u64::try_from(d.as_secs()).unwrap_or(0),
                        )
                    };
                    let came = c - settle;
                    let late = last.map_or(SignedDuration::ZERO, |l| came.duration_since(l));
                    format!(
                        "{activity}, which came late (it happened {} before it came, at about {came}): her check waits until {c}, {} after it came, for the rest of her late events, and enters her then if her latest of {events} is still from before {}",
                        spelled(late),
                        spelled(settle),
                        c - wait
                    )
                }
                _ => format!(
                    "{activity}: her check is due at {enters_at}, and enters her then if she does none of {events} before"
                ),
            };
            match (&judged, &i.condition) {
                (Some((_, said)), _) => a
                    .detail
                    .push_str(&format!("; {said} (it is read then, as she is then)")),
                (None, None) => {}
                (None, Some(c)) => a
                    .detail
                    .push_str(&format!("; `where: {}` is read then", c.source())),
            }
            return a;
        }
        // Her latest entry was this inactivity's (since her latest activity): the check came
        // and entered her, as the timeline says, though its time is minutes ago.
        let entered = self.hers().is_some_and(|e| {
            e.trigger.event == "inactive"
                && e.trigger
                    .properties
                    .get("inactive_since")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .is_some_and(|since| last.is_some_and(|l| since >= l))
        });
        if self.now < enters_at + CHECK_GRACE && !entered {
            a.reason = "due".into();
            a.detail = format!(
                "{activity}: her check came due at {enters_at}, minutes ago: the engine takes it from the queue, and enters her if she is still inactive"
            );
            return a;
        }
        a.reason = "checked".into();
        a.detail = format!(
            "{activity}: her check at {enters_at} found her inactive for {} (the timeline says what it did: entered, or not entered and why); refused because she was still in the journey or it was closed, it looks again {} later, or when `reentry: after` lets her in; otherwise none is pending: her next of {events} arms one",
            i.duration,
            i.duration
        );
        a
    }

    /// What her inactivity check does, kept out for `reason` (see [`Judge::kept_out`]): the
    /// engine judges the trigger's `where` first (false: not entered, and nothing looks again
    /// until her next activity), then the entry rules; one refused for her enrollment or a
    /// closure looks again a `for` later, one refused by `reentry: after` when that lets her in.
    /// `pending`: when her pending check enters her, none pending.
    fn checked_while_kept_out(
        &self,
        i: &Inactive,
        reason: &str,
        pending: Option<Timestamp>,
        blocking: Option<&str>,
    ) -> String {
        let j = &self.p.journey;
        let f = i.duration;
        let condition = match &i.condition {
            Some(c) => format!(
                " (each check judges `where: {}` first: false, she is not entered, and none looks again until her next activity)",
                c.source()
            ),
            None => String::new(),
        };
        let check = match pending {
            Some(t) if t > self.now => format!("her check at {t}"),
            _ => "a check".to_string(),
        };
        match reason {
            "closed" if crate::runtime::still_checked(self.p, self.now) => format!(
                "; {check} that finds it closed looks again {f} later, and so on while it is closed (for a year from its closing): the first after it opens again enters her if she is still inactive{condition}; her activity while it is closed arms a check as when it is open"
            ),
            "closed" => "; closed over a year ago, no check looks again: her next activity after it opens again arms one".to_string(),
            "enrolled" => format!(
                "; {check} that finds her still in it looks again {f} later: the first after her enrollment has ended enters her if she is still inactive{condition}"
            ),
            "reentry" if pending.is_some() => {
                // From the entry in the way: hers, or a visitor's she turned out to be.
                let in_the_way = blocking
                    .and_then(|id| self.enrollments.iter().find(|e| *e.id == *id))
                    .or_else(|| self.hers());
                let again = match (in_the_way, self.profile) {
                    (Some(e), Some(profile)) => engine::reentry_again(j, e.trigger.at, profile),
                    _ => None,
                };
                match again {
                    Some(again) => format!(
                        "; {check} looks again at {again}, when `reentry: after` lets her in, and enters her then if she is still inactive{condition}"
                    ),
                    None => format!(
                        "; {check} is refused, and none looks again after it: her next activity arms one"
                    ),
                }
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(text: &str) -> Arc<Published> {
        let journey = crate::dsl::parse("j.yaml", text).expect("a journey");
        Arc::new(Published {
            version: 1,
            digest: String::new(),
            published_at: at("2026-11-01T00:00:00Z"),
            journey,
            topic: None,
        })
    }

    const BADGE: &str = r#"
id: badge
name: Five lessons
trigger:
  repeated: {event: lesson_completed, times: 5, within: 7d}
reentry: after_exit
steps:
  - id: send
    send: {email: {subject: "x", text: "y"}}
"#;

    const WINBACK: &str = r#"
id: winback
name: Win back
trigger:
  inactive: {events: [app_opened, lesson_completed], for: 14d, where: "profile.plan == 'free'"}
reentry: never
steps:
  - id: send
    send: {email: {subject: "x", text: "y"}}
"#;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a time")
    }

    /// Thursday 10 December 2026, noon UTC.
    fn now() -> Timestamp {
        at("2026-12-10T12:00:00Z")
    }

    /// Ann's profile: her plan, the times of her events (`event` → times), her checks.
    fn profile(events: &[(&str, &[&str])], checks: &[(&str, &str)]) -> Profile {
        let history: serde_json::Map<String, Value> = events
            .iter()
            .map(|(e, times)| {
                let list: Vec<Value> = times.iter().map(|t| json!([t, format!("m-{t}")])).collect();
                (e.to_string(), Value::Array(list))
            })
            .collect();
        let checks: serde_json::Map<String, Value> = checks
            .iter()
            .map(|(j, t)| (j.to_string(), json!(t)))
            .collect();
        serde_json::from_value(json!({
            "user_id": "ann", "traits": {"plan": "free"},
            "history": history, "inactivity_checks": checks,
        }))
        .expect("a profile")
    }

    fn enrollment(
        journey: &str,
        at: &str,
        status: &str,
        counted_until: Option<&str>,
    ) -> Enrollment {
        serde_json::from_value(json!({
            "id": format!("{journey}:ann:1"), "user_id": "ann", "journey": journey,
            "version": 1, "n": 1, "entered_at": at, "status": status, "step": "send", "seq": 1,
            "trigger": {"event": "lesson_completed", "message_id": "m", "at": at},
            "counted_until": counted_until,
        }))
        .expect("an enrollment")
    }

    fn one(text: &str, p: Option<&Profile>, e: &[Enrollment]) -> TriggerAnswer {
        let mut all = answers(&[published(text)], "ann", p, e, now());
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// The occurrences of the last `within` count, older ones do not; the count says when the
    /// earliest drops out and how many more make it.
    #[test]
    fn a_count_short_of_its_times_says_which_occurrences_count_and_until_when() {
        let lessons: &[&str] = &[
            "2026-12-01T10:00:00Z", // more than 7d ago: out of the window
            "2026-12-04T09:00:00Z",
            "2026-12-05T09:00:00Z",
            "2026-12-09T09:00:00Z",
        ];
        let ann = profile(&[("lesson_completed", lessons)], &[]);
        let a = one(BADGE, Some(&ann), &[]);
        assert_eq!(a.reason, "counting", "{a:?}");
        assert_eq!(
            a.detail,
            "3 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-04T09:00:00Z, drops out at 2026-12-11T09:00:00Z; 2 more by 2026-12-11T09:00:00Z make the count (later, the earliest no longer counts with them)"
        );
        let v = serde_json::to_value(&a).expect("JSON");
        assert_eq!(
            v,
            json!({
                "journey": "badge", "version": 1, "at": "2026-12-10T12:00:00Z",
                "trigger": "repeated", "event": "lesson_completed", "times": 5, "within": "1w",
                "counted": ["2026-12-04T09:00:00Z", "2026-12-05T09:00:00Z", "2026-12-09T09:00:00Z"],
                "drops_out_at": "2026-12-11T09:00:00Z",
                "reason": "counting", "detail": a.detail,
            })
        );
        // It reads back (the CLI's `why`).
        assert_eq!(serde_json::from_value::<TriggerAnswer>(v).expect("back"), a);
        // None at all.
        let a = one(BADGE, Some(&profile(&[], &[])), &[]);
        assert_eq!(
            (a.reason.as_str(), a.detail.as_str()),
            (
                "counting",
                "0 of 5 lesson_completed within 1w: none counted; 5 within 1w make the count"
            )
        );
    }

    /// Only occurrences after her last entry's count count toward the next; the `where` is
    /// named, judged on the event that makes the count; a count that holds without entering
    /// her says why it may not have.
    #[test]
    fn a_count_after_an_entry_with_a_where_or_made_is_told_so() {
        let lessons: &[&str] = &[
            "2026-12-04T09:00:00Z",
            "2026-12-05T09:00:00Z",
            "2026-12-06T09:00:00Z",
            "2026-12-07T09:00:00Z",
            "2026-12-08T09:00:00Z",
            "2026-12-09T09:00:00Z",
        ];
        let ann = profile(&[("lesson_completed", lessons)], &[]);
        let entered = enrollment(
            "badge",
            "2026-12-07T09:00:00Z",
            "completed",
            Some("2026-12-08T09:00:00Z"),
        );
        let with_where = BADGE.replace("within: 7d}", "within: 7d, where: \"event.score > 80\"}");
        let a = one(&with_where, Some(&ann), std::slice::from_ref(&entered));
        assert_eq!(a.reason, "counting", "{a:?}");
        assert_eq!(a.condition.as_deref(), Some("event.score > 80"));
        assert_eq!(
            a.detail,
            "1 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-09T09:00:00Z, drops out at 2026-12-16T09:00:00Z (only those after 2026-12-08T09:00:00Z count: the latest her last entry counted); 4 more by 2026-12-16T09:00:00Z make the count (later, the earliest no longer counts with them); `where: event.score > 80` is judged on the lesson_completed that makes the count"
        );
        // Without the entry, six count: the count holds, and no event is being judged: her
        // next lesson enters her while five count with it (until the third drops out), its
        // `where` holding; the timeline says why the one that made it did not.
        let a = one(&with_where, Some(&ann), &[]);
        assert_eq!(a.reason, "count_made", "{a:?}");
        assert_eq!(
            a.detail,
            "6 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-04T09:00:00Z, drops out at 2026-12-11T09:00:00Z: the count holds, and no lesson_completed is being judged: a count is judged only when a lesson_completed comes (not when an enrollment ends, the journey opens again, a `reentry: after` period passes, or a login brings a visitor's history), so her next lesson_completed before 2026-12-13T09:00:00Z enters her if `where: event.score > 80` holds on it; the timeline's `not_entered` says why the lesson_completed that made it did not enter her, if one did (none does when the count came from a visitor's history or from before the journey was published)"
        );
        // In the journey: the entry rule keeps her out, the count told too.
        let active = enrollment("badge", "2026-12-07T09:00:00Z", "active", None);
        let a = one(BADGE, Some(&ann), &[active]);
        assert_eq!(
            (a.reason.as_str(), a.enrollment.as_deref()),
            ("enrolled", Some("badge:ann:1"))
        );
        assert!(
            a.detail.contains("; 2 of 5 lesson_completed"),
            "{}",
            a.detail
        );
        // `reentry: never`.
        let never = BADGE.replace("reentry: after_exit", "reentry: never");
        let a = one(&never, Some(&ann), &[entered]);
        assert_eq!(a.reason, "reentry", "{a:?}");
        assert!(
            a.detail.starts_with(
                "`reentry: never`, and the user entered on 2026-12-07T09:00:00Z; 1 of 5"
            ),
            "{}",
            a.detail
        );
    }

    /// A check armed and not due: when it enters her (looking again from her latest activity),
    /// and whether the `where` holds now.
    #[test]
    fn a_pending_check_says_when_she_enters_and_what_the_where_reads_now() {
        // Armed by the app_opened of 1 December; a lesson since.
        let ann = profile(
            &[
                ("app_opened", &["2026-12-01T08:00:00Z"]),
                ("lesson_completed", &["2026-12-03T08:00:00Z"]),
            ],
            &[("winback", "2026-12-15T08:00:00Z")],
        );
        let a = one(WINBACK, Some(&ann), &[]);
        assert_eq!(a.reason, "pending", "{a:?}");
        assert_eq!(
            a.detail,
            "her latest of app_opened, lesson_completed at 2026-12-03T08:00:00Z: her check at 2026-12-15T08:00:00Z looks again from it and enters her at 2026-12-17T08:00:00Z if she does none of app_opened, lesson_completed before; `where: profile.plan == 'free'` holds now (it is read then, as she is then)"
        );
        assert_eq!(
            serde_json::to_value(&a.state).expect("JSON"),
            json!({
                "trigger": "inactive", "events": ["app_opened", "lesson_completed"], "for": "2w",
                "last_activity": "2026-12-03T08:00:00Z", "check_at": "2026-12-15T08:00:00Z",
                "enters_at": "2026-12-17T08:00:00Z", "matches": true,
            })
        );
        // The check is armed by her latest activity: due then.
        let bo = profile(
            &[("app_opened", &["2026-12-03T08:00:00Z"])],
            &[("winback", "2026-12-17T08:00:00Z")],
        );
        let a = one(&WINBACK.replace("'free'", "'pro'"), Some(&bo), &[]);
        assert_eq!(a.reason, "pending");
        assert!(
            a.detail.ends_with("her check is due at 2026-12-17T08:00:00Z, and enters her then if she does none of app_opened, lesson_completed before; `where: profile.plan == 'pro'` is false now (profile.plan = \"free\") (it is read then, as she is then)"),
            "{}",
            a.detail
        );
    }

    /// No check pending: she never did any of the events (never checked), her check came due
    /// minutes ago, or it was done.
    #[test]
    fn no_pending_check_says_why() {
        // (her events and their times, her checks, the reason, the detail)
        type Case<'a> = (
            &'a [(&'a str, &'a [&'a str])],
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                &[],
                &[],
                "no_activity",
                "she has done none of app_opened, lesson_completed (as far as her profile keeps them, from the journey's first publishing on): a user who never did any is never checked; her first arms a check for 2w after it",
            ),
            (
                &[("app_opened", &["2026-11-26T11:58:00Z"])],
                &[("winback", "2026-12-10T11:58:00Z")],
                "due",
                "her latest of app_opened, lesson_completed at 2026-11-26T11:58:00Z: her check came due at 2026-12-10T11:58:00Z, minutes ago: the engine takes it from the queue, and enters her if she is still inactive",
            ),
            (
                &[("app_opened", &["2026-11-20T08:00:00Z"])],
                &[("winback", "2026-12-04T08:00:00Z")],
                "checked",
                "her latest of app_opened, lesson_completed at 2026-11-20T08:00:00Z: her check at 2026-12-04T08:00:00Z found her inactive for 2w (the timeline says what it did: entered, or not entered and why); refused because she was still in the journey or it was closed, it looks again 2w later, or when `reentry: after` lets her in; otherwise none is pending: her next of app_opened, lesson_completed arms one",
            ),
            (
                &[("app_opened", &["2026-12-09T08:00:00Z"])],
                &[],
                "no_check",
                "her latest of app_opened, lesson_completed at 2026-12-09T08:00:00Z armed no check (it came before the journey was published, or from a visitor's history): her next one arms a check for 2w after it",
            ),
        ];
        for (events, checks, reason, detail) in cases {
            let a = one(WINBACK, Some(&profile(events, checks)), &[]);
            assert_eq!((a.reason.as_str(), a.detail.as_str()), (*reason, *detail));
            let TriggerState::Inactive {
                enters_at, matches, ..
            } = a.state
            else {
                panic!("an inactive answer: {a:?}");
            };
            assert_eq!((enters_at, matches), (None, None), "{reason}");
        }
    }

    /// A check whose time came minutes ago and that entered her is told as done, as her
    /// timeline has it, not as due; an entry of an earlier inactivity leaves it due.
    #[test]
    fn a_check_that_entered_her_minutes_ago_is_told_as_done() {
        let ann = profile(
            &[("app_opened", &["2026-11-26T11:58:00Z"])],
            &[("winback", "2026-12-10T11:58:00Z")],
        );
        let after_exit = WINBACK.replace("reentry: never", "reentry: after_exit");
        assert_eq!(one(&after_exit, Some(&ann), &[]).reason, "due");
        let mut entered = enrollment("winback", "2026-12-10T11:58:00Z", "completed", None);
        entered.trigger.event = "inactive".into();
        entered.trigger.properties = Arc::new(json!({"inactive_since": "2026-11-26T11:58:00Z"}));
        let a = one(&after_exit, Some(&ann), std::slice::from_ref(&entered));
        assert_eq!(a.reason, "checked", "{a:?}");
        entered.trigger.properties = Arc::new(json!({"inactive_since": "2026-11-01T00:00:00Z"}));
        assert_eq!(one(&after_exit, Some(&ann), &[entered]).reason, "due");
    }

    /// A count that holds and did not enter her is judged again by her next event only (made
    /// while she was in the journey, since ended, no event is on its way): the view says so,
    /// and says an event may not be applied yet only when one came minutes ago.
    #[test]
    fn a_count_made_says_her_next_event_is_what_enters_her() {
        let made: &[&str] = &[
            "2026-12-04T09:00:00Z",
            "2026-12-05T09:00:00Z",
            "2026-12-06T09:00:00Z",
            "2026-12-07T09:00:00Z",
            "2026-12-08T09:00:00Z",
        ];
        let ended = enrollment("badge", "2026-12-01T09:00:00Z", "completed", None);
        let ann = profile(&[("lesson_completed", made)], &[]);
        let a = one(BADGE, Some(&ann), std::slice::from_ref(&ended));
        assert_eq!(a.reason, "count_made", "{a:?}");
        assert!(
            a.detail.contains(
                ": the count holds, and no lesson_completed is being judged: a count is judged only when a lesson_completed comes"
            ) && a
                .detail
                .contains("so her next lesson_completed before 2026-12-12T09:00:00Z enters her;"),
            "{}",
            a.detail
        );
        assert!(
            !a.detail.contains("applied") && !a.detail.contains("`where"),
            "{}",
            a.detail
        );
        // The fifth came two minutes ago: it may be on its way.
        let just: &[&str] = &[
            "2026-12-04T09:00:00Z",
            "2026-12-05T09:00:00Z",
            "2026-12-06T09:00:00Z",
            "2026-12-07T09:00:00Z",
            "2026-12-10T11:58:00Z",
        ];
        let a = one(
            BADGE,
            Some(&profile(&[("lesson_completed", just)], &[])),
            &[ended],
        );
        assert!(
            a.detail.ends_with(
                "; the lesson_completed at 2026-12-10T11:58:00Z came minutes ago: if it is not applied yet, it is judged when it is"
            ),
            "{}",
            a.detail
        );
    }

    /// A check whose time has passed is pending only when it looks again from an activity it
    /// saw (told in the past tense); an activity after it armed none (a visitor's at a login,
    /// or while the journey had been closed over a year): no check is pending.
    #[test]
    fn a_past_check_is_pending_only_when_it_saw_her_latest_activity() {
        // Her check on 8 December found her active since its arming (3 December): it looks
        // again 2w after.
        let seen = profile(
            &[("app_opened", &["2026-12-03T08:00:00Z"])],
            &[("winback", "2026-12-08T08:00:00Z")],
        );
        let a = one(WINBACK, Some(&seen), &[]);
        assert_eq!(a.reason, "pending", "{a:?}");
        assert!(
            a.detail.starts_with(
                "her latest of app_opened, lesson_completed at 2026-12-03T08:00:00Z: her check at 2026-12-08T08:00:00Z found it, and looks again at 2026-12-17T08:00:00Z: it enters her then if she does none of app_opened, lesson_completed before;"
            ),
            "{}",
            a.detail
        );
        // Her check on 1 December came before her activity of 5 December, which armed none:
        // nothing is due on 19 December.
        let unseen = profile(
            &[("app_opened", &["2026-12-05T08:00:00Z"])],
            &[("winback", "2026-12-01T08:00:00Z")],
        );
        let a = one(WINBACK, Some(&unseen), &[]);
        assert_eq!(a.reason, "no_check", "{a:?}");
        assert_eq!(
            a.detail,
            "her latest of app_opened, lesson_completed at 2026-12-05T08:00:00Z came after her check at 2026-12-01T08:00:00Z and armed none (it came with a visitor's history at a login, or while the journey had been closed over a year): no check is pending, unless the one at 2026-12-01T08:00:00Z was refused because she was still in the journey or the journey was closed (that one looks again 2w after it, then from her latest activity); her next of app_opened, lesson_completed arms a check for 2w after it"
        );
        let TriggerState::Inactive {
            enters_at, matches, ..
        } = a.state
        else {
            panic!("an inactive answer: {a:?}");
        };
        assert_eq!((enters_at, matches), (None, None));
    }

    /// Kept out when her pending check comes: what the check does then, as the engine does it
    /// (the `where` first; `reentry: after` looks again when it lets her in; her enrollment
    /// or a closure a `for` later), and a closed journey is told to a user it still checks.
    #[test]
    fn a_check_kept_out_says_when_it_looks_again() {
        let ann = profile(
            &[("app_opened", &["2026-12-01T08:00:00Z"])],
            &[("winback", "2026-12-15T08:00:00Z")],
        );
        let after = WINBACK.replace("reentry: never", "reentry: {after: 30d}");
        let entered = enrollment("winback", "2026-11-20T08:00:00Z", "completed", None);
        let a = one(&after, Some(&ann), std::slice::from_ref(&entered));
        assert_eq!(a.reason, "reentry", "{a:?}");
        assert!(
            a.detail.ends_with(
                "; her check at 2026-12-15T08:00:00Z looks again at 2026-12-20T08:00:00Z, when `reentry: after` lets her in, and enters her then if she is still inactive (each check judges `where: profile.plan == 'free'` first: false, she is not entered, and none looks again until her next activity)"
            ),
            "{}",
            a.detail
        );
        assert!(!a.detail.contains("no rule keeps her out"), "{}", a.detail);
        // The entry of a visitor she turned out to be: looked at again when it lets her in.
        let mut visitors = entered.clone();
        visitors.id = "winback:anon:d1:1".into();
        visitors.user_id = "anon:d1".into();
        let a = one(&after, Some(&ann), &[visitors]);
        assert_eq!(a.reason, "reentry", "{a:?}");
        assert!(
            a.detail.contains("(as the anonymous visitor `anon:d1` she turned out to be)")
                && a.detail.contains(
                    "; her check at 2026-12-15T08:00:00Z looks again at 2026-12-20T08:00:00Z, when `reentry: after` lets her in"
                ),
            "{}",
            a.detail
        );
        // Still in it: a `for` later.
        let active = enrollment("winback", "2026-11-20T08:00:00Z", "active", None);
        let a = one(&after, Some(&ann), &[active]);
        assert_eq!(a.reason, "enrolled", "{a:?}");
        assert!(
            a.detail.contains("; her check at 2026-12-15T08:00:00Z that finds her still in it looks again 2w later: the first after her enrollment has ended enters her if she is still inactive"),
            "{}",
            a.detail
        );
        // Closed, and she is not in it: told, the engine checks her still.
        let closed = WINBACK.replace("reentry: never", "reentry: never\nstatus: closed");
        let a = one(&closed, Some(&ann), &[]);
        assert_eq!(
            (a.reason.as_str(), &a.enrollment),
            ("closed", &None),
            "{a:?}"
        );
        assert!(
            a.detail.contains("; her check at 2026-12-15T08:00:00Z that finds it closed looks again 2w later, and so on while it is closed (for a year from its closing): the first after it opens again enters her if she is still inactive"),
            "{}",
            a.detail
        );
    }

    /// A stopped journey is told to no one, a closed `repeated` one only to a user still in it
    /// (a closed `inactive` one to all it still checks: above); no
    /// profile, or a schedule or event journey, is not judged here.
    #[test]
    fn what_is_judged_and_for_whom() {
        let ann = profile(&[], &[]);
        let stopped = BADGE.replace(
            "reentry: after_exit",
            "reentry: after_exit\nstatus: stopped",
        );
        let closed = BADGE.replace("reentry: after_exit", "reentry: after_exit\nstatus: closed");
        let event = BADGE.replace(
            "repeated: {event: lesson_completed, times: 5, within: 7d}",
            "event: signed_up",
        );
        let j = [published(&stopped), published(&closed), published(&event)];
        assert_eq!(answers(&j, "ann", Some(&ann), &[], now()), []);
        let active = enrollment("badge", "2026-12-07T09:00:00Z", "active", None);
        let a = answers(&j, "ann", Some(&ann), &[active], now());
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].reason, "closed");
        assert_eq!(one(WINBACK, None, &[]).reason, "no_profile");
    }
}
