//! What the runs of each schedule journey do with one user, judged when her view is asked for
//! (`GET /v1/users/{id}`, `waymark why`). A run leaves no trace of a user its `where` leaves
//! out (a record per user per run would be a write for every user at every run), so the answer
//! is worked out from what the view reads anyway: her profile as it is now, her enrollments and
//! the published journeys, and the scheduler's cursor. Pure: it reads no clock and no store,
//! and never writes.

use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::Published;
use crate::condition::Scope;
use crate::engine;
use crate::enrollment::Enrollment;
use crate::journey::{JourneyStatus, Reentry, Schedule, TriggerKind};
use crate::profile::{Profile, HISTORY_PER_EVENT};

/// How long after its minute a run may still be going: it starts at the first scheduler minute
/// at or after it and reads the profiles page by page through the queue (1,000 a page, four
/// segments side by side), so a user who matches and was not entered yet within this window
/// may still be: the answer says so (`running`) rather than that the run left her out. A run
/// the scheduler has not started yet (catching up after an outage) is told by its cursor.
pub const RUN_GRACE: SignedDuration = SignedDuration::from_mins(15);

/// What a schedule journey's runs do with the user, as judged at `at`. Not a timeline fact:
/// nothing happened; it is what her profile and enrollments say now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleAnswer {
    pub journey: String,
    /// The latest version, the one the runs read.
    pub version: u32,
    /// When it was judged (the API's clock).
    pub at: Timestamp,
    pub cron: String,
    /// The zone the cron is read in for this user: the schedule's own (UTC when it names none,
    /// whatever the journey's `timezone`), or with `timezone: user` hers (else the journey's,
    /// else UTC).
    pub timezone: String,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The latest minute at or before `at` the cron named in that zone (none in the year before)
    /// while the journey ran: none before its first version was published, none after the
    /// version that closed or stopped it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Timestamp>,
    /// The next minute after `at` it names; none when the journey takes no one (closed, stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Timestamp>,
    /// Whether the `where` holds for her profile now (a schedule without one: true), or, when
    /// it reads the date or the clock, at `next_run`'s minute with her profile as it is now;
    /// none when it was not judged (the journey takes no one, or there is no profile to judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
    /// The `where` reads the date or the clock (`anniversary`, `days_until`, `days_since`,
    /// `now()`, `ago()`): each run judges it at its own minute, so `matches` is judged at
    /// `next_run`'s (at `at` when there is none), the profile as it is now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub as_of_now: bool,
    /// `entered` (at the last run or since), `condition` (the `where` is false), `enrolled`,
    /// `reentry` (the refusals' reasons), `running` (she matches, no rule keeps her out, and
    /// the last run, within [`RUN_GRACE`] of its minute or not started yet, may still be reading
    /// the profiles: it enters her when it reads hers), `next_run` (she matches and no rule keeps her out: the
    /// next run enters her), `closed` (told to a user still in it), `no_profile`, `merged`.
    pub reason: String,
    /// Why, in full: what the `where` read (addresses and secrets not shown, as in a refusal),
    /// the rule that keeps her out, or what changed since the last run.
    pub detail: String,
    /// The enrollment the reason is about: the one she entered, or the one in the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Arc<str>>,
}

/// What each published schedule journey's runs do with `user` at `now` (not a stopped one's,
/// nor a closed one's unless she is still in it): `journeys` the latest
/// version of each journey, `profile` hers (none: no profile), `enrollments` hers and those of
/// the anonymous visitors she turned out to be, as her view lists them, `unstarted` the first
/// minute whose runs the scheduler has not started yet (its cursor; none: not known).
pub fn answers(
    journeys: &[Arc<Published>],
    user: &str,
    profile: Option<&Profile>,
    enrollments: &[Enrollment],
    now: Timestamp,
    unstarted: Option<Timestamp>,
) -> Vec<ScheduleAnswer> {
    journeys
        .iter()
        // A stopped journey has nothing to say to anyone, a closed one only to those still
        // in it: every one ever published would otherwise be in every view for good.
        .filter(|p| match p.journey.status {
            JourneyStatus::Stopped => false,
            JourneyStatus::Closed => enrollments
                .iter()
                .any(|e| *e.journey == *p.journey.id && *e.user_id == *user && e.is_active()),
            _ => true,
        })
        .filter_map(|p| match p.journey.trigger.kind() {
            Some(TriggerKind::Schedule(s)) => {
                Some(answer(p, s, user, profile, enrollments, now, unstarted))
            }
            _ => None,
        })
        .collect()
}

fn answer(
    p: &Published,
    s: &Schedule,
    user: &str,
    profile: Option<&Profile>,
    enrollments: &[Enrollment],
    now: Timestamp,
    unstarted: Option<Timestamp>,
) -> ScheduleAnswer {
    let j = &p.journey;
    let (zone_name, tz) = cron_zone(s, j.timezone.as_deref(), profile);
    let takes = j.status.is_active();
    // Only runs that happened: none before the journey was first published, none after the
    // version that closed or stopped it (as far as the latest version tells: a closed or
    // stopped one stopped the runs when it was published, at the latest).
    let until = match takes {
        true => now,
        false => p.published_at.min(now),
    };
    let last_run = s
        .cron
        .last_at_or_before(until, &tz)
        .filter(|at| !(p.version == 1 && (!takes || p.published_at > *at)));
    let next_run = takes.then(|| s.cron.next_after(now, &tz)).flatten();
    let mut a = ScheduleAnswer {
        journey: j.id.clone(),
        version: p.version,
        at: now,
        cron: s.cron.to_string(),
        timezone: zone_name,
        condition: s.condition.as_ref().map(|c| c.source().to_string()),
        last_run,
        next_run,
        matches: None,
        as_of_now: s.condition.as_ref().is_some_and(|c| c.reads_the_clock()),
        reason: String::new(),
        detail: String::new(),
        enrollment: None,
    };
    // Her latest own enrollment (her view lists one a journey), and the visitors' she turned
    // out to be.
    let hers = enrollments
        .iter()
        .filter(|e| *e.journey == *j.id && *e.user_id == *user)
        .max_by_key(|e| e.trigger.at);
    let next = match next_run {
        Some(at) => format!("the next run, at {at},"),
        None => "the next run".to_string(),
    };
    if !takes {
        let status = j.status.as_str();
        a.reason = status.to_string();
        a.detail = format!("the journey's `status: {status}`: its runs enter no one");
        // A closed journey's users finish their path; a stopped one's are ended.
        let closed = j.status == JourneyStatus::Closed;
        if let Some(e) = hers.filter(|e| closed && e.is_active()) {
            a.detail.push_str(&format!(
                "; the user's enrollment finishes its path (at step `{}` now)",
                e.step
            ));
            a.enrollment = Some(e.id.clone());
        }
        return a;
    }
    let Some(profile) = profile else {
        a.reason = "no_profile".into();
        a.detail = format!(
            "the user has no profile: a run reads the profiles, so none takes them (an event or an identify makes one; {next} reads them again)"
        );
        return a;
    };
    if let Some(into) = &profile.merged_into {
        a.reason = "merged".into();
        a.detail = format!(
            "this anonymous user turned out to be `{into}`: the runs take that user's profile, not this one (GET /v1/users/{into})"
        );
        return a;
    }
    // Entered at the last run, or later (a run that was still going when the view was asked
    // for): the message is hers.
    if let (Some(e), Some(last)) = (hers, last_run) {
        if e.trigger.at >= last {
            a.reason = "entered".into();
            a.enrollment = Some(e.id.clone());
            a.detail = if e.is_active() {
                format!(
                    "entered at the run of {} (version {}); at step `{}` now",
                    e.trigger.at, e.version, e.step
                )
            } else {
                format!(
                    "entered at the run of {} (version {}); {}",
                    e.trigger.at,
                    e.version,
                    no_longer_in(e)
                )
            };
            return a;
        }
    }
    // The `where`, as the run reads it (see the runtime's `scheduled_entries`): her profile,
    // no event, her zone else the journey's else the schedule's own.
    let profile_scope = profile.scope();
    let zone = j.default_zone();
    // A `where` that reads the date or the clock is judged at the minute the verdict is about:
    // the next run's (and the last run's, to explain it), with her profile as it is now.
    let clock_at = next_run.filter(|_| a.as_of_now);
    let scope_at = |at: Timestamp| Scope {
        event: &Value::Null,
        trigger: &Value::Null,
        waited: &Value::Null,
        profile: &profile_scope,
        now: at,
        zone,
    };
    let scope = scope_at(clock_at.unwrap_or(now));
    let holds = s.condition.as_ref().is_none_or(|c| c.eval(&scope));
    a.matches = Some(holds);
    let as_of_now = match (a.as_of_now, clock_at) {
        (true, None) => format!(" (it reads the date or the time: this is as of {now}; each run judges it at its own minute)"),
        _ => String::new(),
    };
    // Whether the last run's minute let her in, as far as the `where` goes.
    let held_then = |last: Timestamp| match (&s.condition, clock_at) {
        (Some(c), Some(_)) => c.eval(&scope_at(last)),
        _ => holds,
    };
    if let (false, Some(c)) = (holds, &s.condition) {
        a.reason = "condition".into();
        a.detail = match clock_at {
            Some(_) => format!(
                "{next} leaves the user out: {}, with the profile as it is now; each run judges it at its own minute",
                c.said_false(&scope, "is false at its minute")
            ),
            None => format!(
                "{}{as_of_now}: the runs leave the user out while it is; {next} reads it again",
                c.why_false_now(&scope)
            ),
        };
        if let Some(e) = hers.filter(|e| e.is_active()) {
            a.detail.push_str(&format!(
                " (the user is in the journey since {}, at step `{}`)",
                e.entered_at, e.step
            ));
            a.enrollment = Some(e.id.clone());
        }
        return a;
    }
    let at = next_run.unwrap_or(now);
    if let Some(e) = hers {
        if e.is_active() {
            a.reason = "enrolled".into();
            a.enrollment = Some(e.id.clone());
            a.detail = format!(
                "in the journey since {} (on version {}, at step `{}`): one enrollment a user at a time: a run while the user is still in it does not enter them again",
                e.entered_at, e.version, e.step
            );
            return a;
        }
        if let Some(why) = engine::reentry_refusal(j, e, at, profile) {
            a.reason = "reentry".into();
            a.enrollment = Some(e.id.clone());
            a.detail = why;
            return a;
        }
    }
    // What the visitors she turned out to be did counts as hers (`never`, `after`).
    let visitor = enrollments
        .iter()
        .filter(|e| *e.journey == *j.id && *e.user_id != *user)
        .filter(|_| j.reentry != Reentry::AfterExit)
        .max_by_key(|e| e.trigger.at);
    if let Some(e) = visitor {
        if let Some(why) = engine::reentry_refusal(j, e, at, profile) {
            a.reason = "reentry".into();
            a.enrollment = Some(e.id.clone());
            a.detail = format!(
                "{why} (as the anonymous visitor `{}` she turned out to be)",
                e.user_id
            );
            return a;
        }
    }
    let matched = match (&s.condition, clock_at) {
        (Some(_), Some(_)) => "the `where` holds at the next run's minute (it reads the date or the time; with the profile as it is now)",
        (Some(_), None) => "the `where` holds now",
        (None, _) => "the schedule has no `where`",
    };
    // A run the scheduler has not started yet (it is catching up after an outage) enters her
    // when it reads her page.
    if let (Some(last), Some(from)) = (last_run, unstarted) {
        if last >= from && held_then(last) {
            a.reason = "running".into();
            a.detail = format!(
                "{matched} and no rule keeps the user out: the run of {last} has not started yet (the scheduler is catching up: it has started the runs before {from}), and enters them when it reads theirs; if not, {next} does{as_of_now}"
            );
            return a;
        }
    }
    // A run a few minutes old may not have read her page yet.
    if let Some(last) = last_run.filter(|l| now < *l + RUN_GRACE && held_then(*l)) {
        a.reason = "running".into();
        a.detail = format!(
            "{matched} and no rule keeps the user out: the run of {last}, less than {} minutes old, may still be reading the profiles page by page, and enters them when it reads theirs; if not, {next} does{as_of_now}",
            RUN_GRACE.as_mins()
        );
        return a;
    }
    a.reason = "next_run".into();
    a.detail = format!("{matched} and no rule keeps the user out: {next} enters them{as_of_now}");
    if let Some(last) = last_run {
        let mut since = since_the_last_run(p, s, profile, hers, last);
        // The entry rule then, as the run read it: her last enrollment, ended by then, or the
        // visitor's she turned out to be.
        let refused = [
            (hers, ""),
            (visitor, " (as the anonymous visitor she turned out to be)"),
        ]
        .into_iter()
        .filter_map(|(e, whose)| Some((e?, whose)))
        .filter(|(e, _)| e.trigger.at < last && e.ended_at.is_some_and(|t| t <= last))
        .find_map(|(e, whose)| {
            engine::reentry_refusal(j, e, last, profile)
                .map(|why| format!("the entry rule refused the user then: {why}{whose}"))
        });
        since.extend(refused);
        if let (Some(c), false) = (&s.condition, held_then(last)) {
            since.insert(
                0,
                format!(
                    "{}, with the profile as it is now",
                    c.said_false(&scope_at(last), "was false at its minute")
                ),
            );
        }
        a.detail.push_str(&format!(
            "; not entered at the last run ({last}): {}",
            match since.as_slice() {
                [] => "nothing it reads changed since, and the entry rule let the user in then"
                    .to_string(),
                said => said.join("; "),
            }
        ));
    }
    a
}

/// How an enrollment ended, for a user no longer in it: `no longer in it: exited at … (exit_when
/// purchase)`.
fn no_longer_in(e: &Enrollment) -> String {
    let status = serde_json::to_value(e.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut out = format!("no longer in it: {status}");
    if let Some(at) = e.ended_at {
        out.push_str(&format!(" at {at}"));
    }
    if let Some(why) = e.end_reason.as_deref().filter(|r| *r != status) {
        out.push_str(&format!(" ({why})"));
    }
    out
}

/// The zone a schedule's cron is read in for `profile`: its own (UTC when it names none, whatever
/// the journey's), or with `timezone: user` hers, else the journey's, else UTC (as the runs
/// read it), with its name.
fn cron_zone(s: &Schedule, journey: Option<&str>, profile: Option<&Profile>) -> (String, TimeZone) {
    let candidates: Vec<&str> = if s.timezone == "user" {
        let hers = profile
            .and_then(|p| p.traits.get("timezone"))
            .and_then(Value::as_str);
        [hers, journey].into_iter().flatten().collect()
    } else {
        vec![s.timezone.as_str()]
    };
    candidates
        .into_iter()
        // Its canonical name, not the trait as written (`asia/tokyo`).
        .find_map(|n| {
            let tz = TimeZone::get(n).ok()?;
            Some((tz.iana_name().unwrap_or(n).to_string(), tz))
        })
        .unwrap_or_else(|| ("UTC".to_string(), TimeZone::UTC))
}

/// What changed since the last run at `last` that can explain why it did not enter a user who
/// matches now: a version published since, a trait the `where` reads (or her zone, for a
/// cron in hers) set since, her last enrollment ended since.
fn since_the_last_run(
    p: &Published,
    s: &Schedule,
    profile: &Profile,
    hers: Option<&Enrollment>,
    last: Timestamp,
) -> Vec<String> {
    let mut out = Vec::new();
    // The first the profile knows of her: no profile keeps when it was made, and a trait's
    // time is when it was last set (every identify that sends it again moves it), so only the
    // events' history tells it, and only while no kind of event has had its oldest forgotten
    // (every identify is kept, the latest HISTORY_PER_EVENT of each kind). Any time she is
    // known by from before the run says she was known then.
    let trimmed = profile
        .history
        .iter()
        .any(|(_, times)| times.len() >= HISTORY_PER_EVENT);
    let first_event = profile
        .history
        .iter()
        .filter_map(|(_, times)| times.first().map(|(at, _)| *at))
        .min();
    let known_before = profile
        .trait_times
        .iter()
        .map(|(_, at)| *at)
        .chain(profile.from_device.iter().map(|(_, d)| d.at))
        .any(|at| at <= last);
    if let Some(first) = first_event.filter(|at| *at > last && !trimmed && !known_before) {
        out.push(format!(
            "the user was not known then (the profile's first event is from {first})"
        ));
    }
    // (A first version published after it has no last run.)
    if p.published_at > last {
        out.push(format!(
            "version {} was published after it, at {} (that run read the one before)",
            p.version, p.published_at
        ));
    }
    let mut traits: Vec<String> = s
        .condition
        .iter()
        .flat_map(|c| c.paths())
        .filter_map(|path| {
            let rest = path.strip_prefix("profile.")?;
            let name = rest.split(['.', '[']).next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect();
    if s.timezone == "user" {
        traits.push("timezone".to_string());
    }
    let mut seen: Vec<String> = Vec::new();
    traits.retain(|t| {
        let first = !seen.contains(t);
        seen.push(t.clone());
        first
    });
    for name in traits {
        if let Some(at) = profile.trait_times.get(&name).filter(|at| **at > last) {
            out.push(format!("profile.{name} was set after it, at {at}"));
            continue;
        }
        // A zone or a locale the device sends (`context.timezone`) sets the trait without a
        // trait time: its time is the device's, while the trait still holds its value.
        let device = profile.from_device.get(&name).filter(|d| {
            d.at > last
                && profile.traits.get(&name).and_then(Value::as_str) == Some(d.value.as_str())
        });
        if let Some(d) = device {
            out.push(format!(
                "profile.{name} was last sent by the user's device after it, at {}",
                d.at
            ));
        }
    }
    if let Some(ended) = hers.and_then(|e| e.ended_at).filter(|at| *at > last) {
        out.push(format!(
            "the user's last enrollment was still going then (it ended at {ended})"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(text: &str, version: u32, at: &str) -> Arc<Published> {
        let journey = crate::dsl::parse("j.yaml", text).expect("a journey");
        Arc::new(Published {
            version,
            digest: String::new(),
            published_at: at.parse().expect("a time"),
            journey,
            topic: None,
        })
    }

    const WEEKLY: &str = r#"
id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * mon", timezone: user, where: "profile.plan == 'free'"}
timezone: America/New_York
reentry: never
steps:
  - id: wait
    wait: 30d
  - id: send
    send: {email: {subject: "x", text: "y"}}
"#;

    fn profile(v: Value) -> Profile {
        serde_json::from_value(v).expect("a profile")
    }

    fn enrollment(user: &str, n: u32, at: &str, status: &str) -> Enrollment {
        serde_json::from_value(serde_json::json!({
            "id": format!("digest:{user}:{n}"), "user_id": user, "journey": "digest",
            "version": 1, "n": n, "entered_at": at, "status": status, "step": "wait", "seq": 1,
            "trigger": {"event": "schedule", "message_id": "m", "at": at},
        }))
        .expect("an enrollment")
    }

    /// Thursday 10 December 2026, noon UTC.
    fn now() -> Timestamp {
        "2026-12-10T12:00:00Z".parse().expect("a time")
    }

    fn one(journeys: &[Arc<Published>], p: Option<&Profile>, e: &[Enrollment]) -> ScheduleAnswer {
        let mut all = answers(journeys, "ann", p, e, now(), None);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// The cron of `timezone: user` is read in hers, else the journey's; a user in the
    /// journey since an earlier run is told so; the visitor she turned out to be counts.
    #[test]
    fn a_matching_user_in_the_journey_or_welcomed_as_a_visitor_is_told_why() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let ann = profile(serde_json::json!({"user_id": "ann", "traits": {"plan": "free"}}));
        // No zone of her own: the journey's, New York (09:00 there is 14:00Z).
        let a = one(
            &j,
            Some(&ann),
            &[enrollment("ann", 1, "2026-11-30T14:00:00Z", "active")],
        );
        assert_eq!(a.timezone, "America/New_York");
        assert_eq!(a.last_run, Some("2026-12-07T14:00:00Z".parse().expect("t")));
        assert_eq!(a.next_run, Some("2026-12-14T14:00:00Z".parse().expect("t")));
        assert_eq!((a.reason.as_str(), a.matches), ("enrolled", Some(true)));
        assert_eq!(
            a.detail,
            "in the journey since 2026-11-30T14:00:00Z (on version 1, at step `wait`): one enrollment a user at a time: a run while the user is still in it does not enter them again"
        );
        assert_eq!(a.enrollment.as_deref(), Some("digest:ann:1"));
        // As the anonymous visitor she turned out to be, she was in it already.
        let visitor = enrollment("anon:d1", 1, "2026-11-23T14:00:00Z", "completed");
        let a = one(&j, Some(&ann), &[visitor]);
        assert_eq!(a.reason, "reentry");
        assert_eq!(
            a.detail,
            "`reentry: never`, and the user entered on 2026-11-23T14:00:00Z (as the anonymous visitor `anon:d1` she turned out to be)"
        );
        // Her own zone, Paris: 09:00 there is 08:00Z.
        let paris = profile(
            serde_json::json!({"user_id": "ann", "traits": {"plan": "free", "timezone": "Europe/Paris"}}),
        );
        let a = one(&j, Some(&paris), &[]);
        assert_eq!(
            (a.timezone.as_str(), a.reason.as_str()),
            ("Europe/Paris", "next_run")
        );
        assert_eq!(a.next_run, Some("2026-12-14T08:00:00Z".parse().expect("t")));
    }

    /// A user who matches, viewed minutes after a run's minute, may still be entered by it:
    /// it reads the profiles page by page through the queue.
    #[test]
    fn a_run_minutes_old_may_still_enter_a_matching_user() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let ann = profile(serde_json::json!({"user_id": "ann", "traits": {"plan": "free"}}));
        // Monday 7 December, 14:00Z is 09:00 in New York: the run is a minute old.
        let minute_on: Timestamp = "2026-12-07T14:01:00Z".parse().expect("a time");
        let a = answers(&j, "ann", Some(&ann), &[], minute_on, None).remove(0);
        assert_eq!((a.reason.as_str(), a.matches), ("running", Some(true)));
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the run of 2026-12-07T14:00:00Z, less than 15 minutes old, may still be reading the profiles page by page, and enters them when it reads theirs; if not, the next run, at 2026-12-14T14:00:00Z, does"
        );
        // A quarter of an hour on, a run that did not enter her left her out.
        let later: Timestamp = "2026-12-07T14:15:00Z".parse().expect("a time");
        let a = answers(&j, "ann", Some(&ann), &[], later, None).remove(0);
        assert_eq!(a.reason, "next_run");
        // Unless the scheduler, catching up after an outage, has not started it yet.
        let behind: Timestamp = "2026-12-07T13:30:00Z".parse().expect("a time");
        let a = answers(&j, "ann", Some(&ann), &[], later, Some(behind)).remove(0);
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the run of 2026-12-07T14:00:00Z has not started yet (the scheduler is catching up: it has started the runs before 2026-12-07T13:30:00Z), and enters them when it reads theirs; if not, the next run, at 2026-12-14T14:00:00Z, does"
        );
    }

    /// A zone her device sent (`context.timezone`) has no trait time: the device's time tells
    /// when it was set.
    #[test]
    fn a_zone_the_device_sent_after_the_last_run_is_told() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let ann = profile(serde_json::json!({"user_id": "ann",
            "traits": {"plan": "free", "timezone": "Europe/Paris"},
            "trait_times": {"plan": "2026-11-02T10:00:00Z"},
            "from_device": {"timezone": {"value": "Europe/Paris", "at": "2026-12-09T10:00:00Z"}}}));
        let a = one(&j, Some(&ann), &[]);
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the next run, at 2026-12-14T08:00:00Z, enters them; not entered at the last run (2026-12-07T08:00:00Z): profile.timezone was last sent by the user's device after it, at 2026-12-09T10:00:00Z"
        );
    }

    /// "Not known then" is said only when the events' history tells it: not from a trait's
    /// time (the last time it was set), nor when a kind of event had its oldest forgotten.
    #[test]
    fn a_user_is_said_unknown_at_the_last_run_only_when_the_history_tells_it() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let why = |p: Value| {
            let a = one(&j, Some(&profile(p)), &[]);
            a.detail
                .split_once("): ")
                .map(|(_, why)| why.to_string())
                .unwrap_or(a.detail)
        };
        // An identify since sent her plan again: she was known long before.
        assert_eq!(
            why(
                serde_json::json!({"user_id": "ann", "traits": {"plan": "free"},
                "trait_times": {"plan": "2026-12-09T10:00:00Z"},
                "history": {"identify": [["2026-11-02T10:00:00Z", "m0"], ["2026-12-09T10:00:00Z", "m1"]]}})
            ),
            "profile.plan was set after it, at 2026-12-09T10:00:00Z"
        );
        // 32 orders kept, the oldest after the run: older ones were forgotten.
        let orders: Vec<Value> = (0..32)
            .map(|i| serde_json::json!([format!("2026-12-08T10:{i:02}:00Z"), format!("o{i}")]))
            .collect();
        assert_eq!(
            why(
                serde_json::json!({"user_id": "ann", "traits": {"plan": "free"},
                "history": {"order": orders}})
            ),
            "nothing it reads changed since, and the entry rule let the user in then"
        );
    }

    const BIRTHDAY: &str = r#"
id: birthday
name: Birthday
trigger:
  schedule: {cron: "0 9 * * *", timezone: UTC, where: "anniversary(profile.birthday)"}
reentry: after_exit
steps:
  - id: wish
    send: {email: {subject: "Happy birthday", text: "x"}}
"#;

    /// A `where` that reads the date is judged at the next run's minute for the verdict, and at
    /// the last run's to explain it, the profile as it is now.
    #[test]
    fn a_where_reading_the_date_is_judged_at_the_runs_minutes() {
        let j = [published(BIRTHDAY, 1, "2026-11-01T00:00:00Z")];
        let born =
            |day: &str| profile(serde_json::json!({"user_id": "ann", "traits": {"birthday": day}}));
        // Her birthday is tomorrow: the next run enters her; the last did not, a day early.
        let a = one(&j, Some(&born("1990-12-11")), &[]);
        assert_eq!((a.reason.as_str(), a.matches), ("next_run", Some(true)));
        assert_eq!(
            a.detail,
            "the `where` holds at the next run's minute (it reads the date or the time; with the profile as it is now) and no rule keeps the user out: the next run, at 2026-12-11T09:00:00Z, enters them; not entered at the last run (2026-12-10T09:00:00Z): `where: anniversary(profile.birthday)` was false at its minute (profile.birthday = \"1990-12-11\"), with the profile as it is now"
        );
        // Her birthday is today, past the run: the next run, tomorrow, leaves her out.
        let a = one(&j, Some(&born("1990-12-10")), &[]);
        assert_eq!((a.reason.as_str(), a.matches), ("condition", Some(false)));
        assert_eq!(
            a.detail,
            "the next run, at 2026-12-11T09:00:00Z, leaves the user out: `where: anniversary(profile.birthday)` is false at its minute (profile.birthday = \"1990-12-10\"), with the profile as it is now; each run judges it at its own minute"
        );
    }

    /// `days_until()` reads the date too: judged at the runs' minutes, as `anniversary()` is.
    #[test]
    fn a_where_counting_days_to_a_date_is_judged_at_the_runs_minutes() {
        let trial = BIRTHDAY.replace(
            "anniversary(profile.birthday)",
            "days_until(profile.trial_ends_at) == 3",
        );
        let j = [published(&trial, 1, "2026-11-01T00:00:00Z")];
        let ends = |day: &str| {
            profile(serde_json::json!({"user_id": "ann", "traits": {"trial_ends_at": day}}))
        };
        // Now, on the 10th, it is 4 days away: the next run, on the 11th, enters her.
        let a = one(&j, Some(&ends("2026-12-14")), &[]);
        assert!(a.as_of_now);
        assert_eq!((a.reason.as_str(), a.matches), ("next_run", Some(true)));
        assert_eq!(
            a.detail,
            "the `where` holds at the next run's minute (it reads the date or the time; with the profile as it is now) and no rule keeps the user out: the next run, at 2026-12-11T09:00:00Z, enters them; not entered at the last run (2026-12-10T09:00:00Z): `where: days_until(profile.trial_ends_at) == 3` was false at its minute (profile.trial_ends_at = \"2026-12-14\"), with the profile as it is now"
        );
        // 3 days away today, past the run: tomorrow's leaves her out.
        let a = one(&j, Some(&ends("2026-12-13")), &[]);
        assert_eq!((a.reason.as_str(), a.matches), ("condition", Some(false)));
    }

    /// Her zone is shown by its canonical name; a detail that never mentions the `where` says
    /// nothing of when it was judged (a cron with no next run within the year: it is judged
    /// now).
    #[test]
    fn her_zone_by_its_name_and_no_as_of_now_where_the_where_is_not_told() {
        let j = [published(
            &WEEKLY
                .replace("profile.plan == 'free'", "profile.since < now()")
                .replace("0 9 * * mon", "0 9 29 2 *"),
            1,
            "2026-11-01T00:00:00Z",
        )];
        let ann = profile(serde_json::json!({"user_id": "ann",
            "traits": {"since": "2026-01-01T00:00:00Z", "timezone": "asia/tokyo"}}));
        let a = one(
            &j,
            Some(&ann),
            &[enrollment("ann", 1, "2026-11-30T00:00:00Z", "active")],
        );
        assert_eq!(a.timezone, "Asia/Tokyo");
        assert_eq!((a.next_run, a.as_of_now), (None, true));
        assert_eq!(a.reason.as_str(), "enrolled");
        assert_eq!(
            a.detail,
            "in the journey since 2026-11-30T00:00:00Z (on version 1, at step `wait`): one enrollment a user at a time: a run while the user is still in it does not enter them again"
        );
    }

    /// A user who entered and is no longer in the journey is told how it ended; one the entry
    /// rule refused at the last run is told the rule.
    #[test]
    fn how_her_enrollment_ended_and_the_rule_that_refused_her_then_are_told() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let ann = profile(serde_json::json!({"user_id": "ann", "traits": {"plan": "free"}}));
        let mut exited = enrollment("ann", 1, "2026-12-07T14:00:00Z", "exited");
        exited.ended_at = Some("2026-12-08T10:00:00Z".parse().expect("t"));
        exited.end_reason = Some("exit_when purchase".into());
        let a = one(&j, Some(&ann), &[exited]);
        assert_eq!(
            a.detail,
            "entered at the run of 2026-12-07T14:00:00Z (version 1); no longer in it: exited at 2026-12-08T10:00:00Z (exit_when purchase)"
        );
        // In again 10 days after her last entry: not at the last run, at the next.
        let after = [published(
            &WEEKLY.replace("reentry: never", "reentry: {after: 10d}"),
            1,
            "2026-11-01T00:00:00Z",
        )];
        let mut done = enrollment("ann", 1, "2026-11-30T14:00:00Z", "completed");
        done.ended_at = Some("2026-12-01T10:00:00Z".parse().expect("t"));
        let a = one(&after, Some(&ann), &[done]);
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the next run, at 2026-12-14T14:00:00Z, enters them; not entered at the last run (2026-12-07T14:00:00Z): the entry rule refused the user then: `reentry: after 10d`: may enter again from 2026-12-10T14:00:00Z"
        );
    }

    /// No profile, or one merged into another user: no run reads it; a closed journey says
    /// the user's enrollment finishes its path.
    #[test]
    fn no_profile_a_merged_visitor_and_a_closed_journey_say_so() {
        let j = [published(WEEKLY, 1, "2026-11-01T00:00:00Z")];
        let a = one(&j, None, &[]);
        assert_eq!((a.reason.as_str(), a.matches), ("no_profile", None));
        let merged = profile(serde_json::json!({"user_id": "anon:d1", "merged_into": "ann"}));
        let a = one(&j, Some(&merged), &[]);
        assert_eq!(a.reason, "merged");
        assert!(a.detail.contains("GET /v1/users/ann"), "{}", a.detail);
        let closed = [published(
            &WEEKLY.replace("reentry: never", "reentry: never\nstatus: closed"),
            2,
            "2026-12-01T00:00:00Z",
        )];
        let ann = profile(serde_json::json!({"user_id": "ann", "traits": {"plan": "free"}}));
        let a = one(
            &closed,
            Some(&ann),
            &[enrollment("ann", 1, "2026-11-30T14:00:00Z", "active")],
        );
        assert_eq!((a.reason.as_str(), a.next_run), ("closed", None));
        assert_eq!(
            a.detail,
            "the journey's `status: closed`: its runs enter no one; the user's enrollment finishes its path (at step `wait` now)"
        );
        // A user first seen after the last run was in none of its pages.
        let new = profile(
            serde_json::json!({"user_id": "ann", "traits": {"plan": "free"},
            "trait_times": {"plan": "2026-12-09T10:00:00Z"},
            "history": {"identify": [["2026-12-09T10:00:00Z", "m1"]]}}),
        );
        let a = one(&j, Some(&new), &[]);
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the next run, at 2026-12-14T14:00:00Z, enters them; not entered at the last run (2026-12-07T14:00:00Z): the user was not known then (the profile's first event is from 2026-12-09T10:00:00Z); profile.plan was set after it, at 2026-12-09T10:00:00Z"
        );
        // A journey published after the last run has not run for her yet.
        let fresh = [published(WEEKLY, 1, "2026-12-08T00:00:00Z")];
        let a = one(&fresh, Some(&ann), &[]);
        assert_eq!(a.last_run, None);
        assert_eq!(
            a.detail,
            "the `where` holds now and no rule keeps the user out: the next run, at 2026-12-14T14:00:00Z, enters them"
        );
        // A journey closed on Tuesday last ran on Monday 30 November, not on the 7th.
        let closed_then = [published(
            &WEEKLY.replace("reentry: never", "reentry: never\nstatus: closed"),
            2,
            "2026-12-01T00:00:00Z",
        )];
        let active = enrollment("ann", 1, "2026-11-30T14:00:00Z", "active");
        let a = one(&closed_then, Some(&ann), &[active]);
        assert_eq!(a.last_run, Some("2026-11-30T14:00:00Z".parse().expect("t")));
        // Closed, with no one in it: nothing to say to her.
        assert_eq!(
            answers(&closed_then, "ann", Some(&ann), &[], now(), None),
            []
        );
        // One published closed ran never.
        let never = [published(
            &WEEKLY.replace("reentry: never", "reentry: never\nstatus: closed"),
            1,
            "2026-11-01T00:00:00Z",
        )];
        let active = enrollment("ann", 1, "2026-10-30T14:00:00Z", "active");
        assert_eq!(one(&never, Some(&ann), &[active]).last_run, None);
    }
}
