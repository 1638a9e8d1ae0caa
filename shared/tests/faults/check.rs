//! The invariants, checked against the store's final records, the provider's call log and the
//! workload's own record of what users did. Reads only.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use waymark::engine::Effect;
use waymark::enrollment::{Enrollment, Status};
use waymark::event::Kind;
use waymark::journey::Channel;
use waymark::profile::Profile;
use waymark::queue::Message;
use waymark::runtime::stats_keys;
use waymark::store::Store;
use waymark::timeline::{self, Entry, What};

use crate::lab::lock;
use crate::script::Workload;
use crate::world::{World, MAX_SKEW_MS};

pub const CART: &str = "cart_abandonment";
pub const ONBOARDING: &str = "banking_onboarding";
pub const PURCHASE: &str = "post_purchase";
pub const CHURN: &str = "telecom_churn";
pub const UPSELL: &str = "streaming_upsell";
pub const DIGEST: &str = "daily_digest";
pub const PLAN: &str = "plan_watch";

/// One timeline record: the entries one transition wrote.
pub struct TimelineRecord {
    /// The user whose partition holds it.
    pub user: String,
    pub enrollment: String,
    pub cause: String,
    pub entries: Vec<Entry>,
}

/// The store's final contents, parsed.
#[derive(Default)]
pub struct Facts {
    pub profiles: BTreeMap<String, Profile>,
    pub enrollments: Vec<Enrollment>,
    pub timelines: Vec<TimelineRecord>,
    pub dedup: BTreeSet<(String, String)>,
}

impl Facts {
    pub fn gather(world: &World) -> Facts {
        let mut f = Facts::default();
        for r in world.store.dump() {
            let Some(user) = r.key.pk.strip_prefix("U#") else {
                continue;
            };
            let user = user.to_string();
            let sk = r.key.sk.as_str();
            if sk == "P" {
                if let Ok(p) = r.parse::<Profile>() {
                    f.profiles.insert(user, p);
                }
            } else if sk.starts_with("E#") {
                if let Ok(e) = r.parse::<Enrollment>() {
                    f.enrollments.push(e);
                }
            } else if let Some(rest) = sk.strip_prefix("T#") {
                let (enrollment, cause) = rest.rsplit_once('#').unwrap_or((rest, ""));
                f.timelines.push(TimelineRecord {
                    user: user.clone(),
                    enrollment: enrollment.to_string(),
                    cause: cause.to_string(),
                    entries: r.parse().unwrap_or_default(),
                });
            } else if let Some(id) = sk.strip_prefix("D#") {
                f.dedup.insert((user, id.to_string()));
            }
        }
        f
    }

    /// Who `user` is: the user an anonymous one was merged into, or itself.
    pub fn owner<'a>(&'a self, user: &'a str) -> &'a str {
        self.profiles
            .get(user)
            .and_then(|p| p.merged_into.as_deref())
            .unwrap_or(user)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.timelines.iter().flat_map(|t| t.entries.iter())
    }

    /// The trigger message of each enrollment, from the record its `entered` fact is in.
    pub fn triggers(&self) -> BTreeMap<String, String> {
        self.timelines
            .iter()
            .filter(|t| {
                t.entries
                    .iter()
                    .any(|e| matches!(e.what, What::Entered { .. }))
            })
            .map(|t| (t.enrollment.clone(), t.cause.clone()))
            .collect()
    }
}

/// Figures a run reports besides its violations.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Provider calls beyond the first for one ledger key.
    pub duplicates: u64,
    /// Accepted-then-crashed windows (the provider took it, the ledger never heard).
    pub windows: u64,
    /// Sends still in flight when their enrollment's exit was stored (same instant).
    pub raced: u64,
    /// Sends that should have happened and did not.
    pub losses: u64,
    /// Timeline records still waiting to be counted when the run ended (the last fold under
    /// faults did not get to them; the check's own fold does).
    pub unfolded: u64,
    /// Wake-ups found more than once for one pending visit.
    pub extra_wakeups: u64,
    /// Mid-run checks of the pending wake-ups.
    pub checkpoints: u64,
    /// Anonymous users' enrollments that went on as the user's at a merge, and those that
    /// ended there (the user in the journey already).
    pub merged_on: u64,
    pub merged_ended: u64,
    /// In-app messages the ledger says were sent (each checked to be in its inbox).
    pub in_app: u64,
    /// Digest entries (the schedule journey's).
    pub digests: u64,
}

/// Counts the merges the run made (a figure, not an invariant: the oracles above hold for the
/// merged users too).
pub fn merges(facts: &Facts, fig: &mut Figures) {
    for t in facts
        .timelines
        .iter()
        .filter(|t| t.user.starts_with("anon:"))
    {
        for e in &t.entries {
            match e.what {
                What::Merged { ended: false, .. } => fig.merged_on += 1,
                What::Merged { ended: true, .. } => fig.merged_ended += 1,
                _ => {}
            }
        }
    }
}

/// At most one provider call per (enrollment, step, visit), except after a window.
pub fn sends(world: &mut World, fig: &mut Figures) {
    let lab = lock(&world.lab);
    let mut by_key: BTreeMap<&str, Vec<Timestamp>> = BTreeMap::new();
    for c in lab.calls.iter().filter(|c| c.accepted) {
        by_key.entry(&c.ledger_key).or_default().push(c.at);
    }
    fig.windows = lab.windows.values().map(|n| u64::from(*n)).sum();
    let mut found = Vec::new();
    for (key, times) in by_key {
        let extra = times.len() as u64 - 1;
        fig.duplicates += extra;
        let windows = u64::from(lab.windows.get(key).copied().unwrap_or(0));
        if extra > windows {
            found.push(format!(
                "{key} went to the provider {} times ({windows} accepted-then-crashed windows): at {times:?}",
                times.len()
            ));
        }
    }
    drop(lab);
    for d in found {
        world.violation("duplicate-send", d);
    }
}

/// Every accepted event applied once: in the profile's history once, deduplicated, and no
/// enrollment entered twice for one trigger or ended twice.
pub fn events_once(world: &mut World, facts: &Facts) {
    let mut found = Vec::new();
    for (id, a) in &world.accepted {
        let name = match a.kind {
            Kind::Identify => "$identify".to_string(),
            Kind::Track => a.event.clone().unwrap_or_default(),
        };
        // An anonymous user's event is the user's it was merged into (applied as theirs, or
        // taken into their profile by the merge).
        let owner = facts.owner(&a.user);
        let seen = facts
            .profiles
            .get(owner)
            .and_then(|p| p.history.get(&name))
            .map(|h| h.iter().filter(|(_, m)| m == id).count())
            .unwrap_or(0);
        if seen != 1 {
            found.push((
                "event-applied",
                format!("{id} ({name}) is {seen} times in {owner}'s history"),
            ));
        }
        if !facts.dedup.contains(&(a.user.clone(), id.clone()))
            && !facts.dedup.contains(&(owner.to_string(), id.clone()))
        {
            found.push((
                "event-applied",
                format!("{id} of {} has no dedup record", a.user),
            ));
        }
    }
    let mut entered: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut ends: BTreeMap<&str, BTreeMap<&'static str, u32>> = BTreeMap::new();
    for t in &facts.timelines {
        for e in &t.entries {
            let kind = match e.what {
                What::Entered { .. } => {
                    entered
                        .entry((e.journey.to_string(), t.cause.clone()))
                        .or_default()
                        .push(e.enrollment.to_string());
                    "entered"
                }
                What::Exited { .. } => "exited",
                What::Completed => "completed",
                What::Converted { .. } => "converted",
                _ => continue,
            };
            *ends
                .entry(&e.enrollment)
                .or_default()
                .entry(kind)
                .or_insert(0) += 1;
        }
    }
    for ((journey, cause), list) in entered {
        if list.len() > 1 {
            found.push((
                "enrolled-twice",
                format!("{cause} entered {journey} {} times: {list:?}", list.len()),
            ));
        }
    }
    for (enrollment, kinds) in ends {
        if kinds.values().any(|n| *n > 1)
            || (kinds.contains_key("exited") && kinds.contains_key("completed"))
        {
            found.push(("enrollment-ended-twice", format!("{enrollment}: {kinds:?}")));
        }
    }
    // A send deferred by quiet hours runs again once, when they end: once per user the
    // enrollment belongs to (an anonymous user's quiet hours end in UTC; the user it turns out
    // to be may have a time zone where they are not over yet).
    let mut deferred: BTreeMap<(&str, &str, &str), Vec<Timestamp>> = BTreeMap::new();
    for t in &facts.timelines {
        for e in &t.entries {
            if let What::Waiting { until, why } = &e.what {
                if why == "quiet hours" {
                    deferred
                        .entry((&t.user, &e.enrollment, e.step.as_deref().unwrap_or("")))
                        .or_default()
                        .push(*until);
                }
            }
        }
    }
    for ((_, enrollment, step), untils) in deferred {
        if untils.len() > 1 {
            found.push((
                "quiet-hours-spin",
                format!(
                    "{enrollment} deferred {step} for quiet hours {} times, until {:?}",
                    untils.len(),
                    untils.iter().collect::<BTreeSet<_>>()
                ),
            ));
        }
    }
    for (class, d) in found {
        world.violation(class, d);
    }
}

/// Every active enrollment has its pending wake-up somewhere: on the queue, as a timer, or owed
/// by the outbox of a transition whose message will come again.
pub fn wakeups(world: &mut World, at_end: bool) -> u64 {
    let records = world.store.dump();
    let enrollments: Vec<Enrollment> = records
        .iter()
        .filter(|r| r.key.pk.starts_with("U#") && r.key.sk.starts_with("E#"))
        .filter_map(|r| r.parse().ok())
        .collect();
    // (enrollment, cause) of every stored timeline record: that transition's outbox was
    // performed in full, so it owes nothing even when left in the enrollment record.
    let recorded: BTreeSet<(String, String)> = records
        .iter()
        .filter(|r| r.key.pk.starts_with("U#"))
        .filter_map(|r| r.key.sk.strip_prefix("T#"))
        .filter_map(|rest| rest.rsplit_once('#'))
        .map(|(e, c)| (e.to_string(), c.to_string()))
        .collect();
    let lab = lock(&world.lab);
    let mut wakes: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for m in lab.sqs.all().chain(lab.timers.values()) {
        // A message queued again by the runtime (a retry) is that message, later.
        let m = match m {
            Message::Retry { message, .. } => message.as_ref(),
            m => m,
        };
        if let Message::Wake {
            enrollment, seq, ..
        } = m
        {
            *wakes.entry((enrollment.to_string(), *seq)).or_insert(0) += 1;
        }
        ids.insert(m.id());
    }
    let mut found = Vec::new();
    let mut extra = 0;
    for e in enrollments.iter().filter(|e| e.status == Status::Active) {
        let Some(p) = e.pending else {
            found.push(format!(
                "{} is active at step {} with nothing pending",
                e.id, e.step
            ));
            continue;
        };
        let copies = wakes.get(&(e.id.to_string(), p.seq)).copied().unwrap_or(0);
        extra += copies.saturating_sub(1);
        let owed = e
            .outbox
            .iter()
            .any(|f| matches!(f, Effect::Wake { seq, .. } if *seq == p.seq))
            && e.outbox_cause.as_ref().is_some_and(|c| {
                // Made by a message still to come (as itself, or as its merge).
                ids.iter().any(|id| Enrollment::made_by(c, id))
                    && !recorded.contains(&(e.id.to_string(), c.clone()))
            });
        if copies == 0 && !owed {
            found.push(format!(
                "{} is active at step {} waiting for visit {} at {}, but no wake-up is queued, no timer holds one and no message will replay it{}",
                e.id,
                e.step,
                p.seq,
                p.at,
                if at_end { " (after draining)" } else { "" }
            ));
        }
    }
    drop(lab);
    for d in found {
        world.violation("lost-wakeup", d);
    }
    extra
}

/// No message goes out after its enrollment exited, nor after an exit event was applied.
pub fn no_send_after_exit(world: &mut World, facts: &Facts, fig: &mut Figures) {
    let skew = SignedDuration::from_millis(2 * MAX_SKEW_MS);
    let exited_at: BTreeMap<&str, Timestamp> = facts
        .entries()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| (&*e.enrollment, e.at))
        .collect();
    let triggers = facts.triggers();
    let mut found = Vec::new();
    let lab = lock(&world.lab);
    for c in lab.calls.iter().filter(|c| c.accepted) {
        if let Some(x) = exited_at.get(c.enrollment.as_str()) {
            if c.at > *x + skew {
                found.push((
                    "sent-after-exit",
                    format!(
                        "{} ({}) went out at {} but {} exited at {x}",
                        c.ledger_key, c.channel, c.at, c.enrollment
                    ),
                ));
            }
        }
        if lab.exits.get(&c.enrollment).is_some_and(|op| c.op > *op) {
            fig.raced += 1;
        }
        // The cart journey exits on order_completed: an order after the trigger that was
        // applied before the send must have stopped it.
        if c.journey != CART {
            continue;
        }
        let Some(trigger) = triggers
            .get(&c.enrollment)
            .and_then(|id| world.accepted.get(id))
        else {
            continue;
        };
        for (id, a) in &world.accepted {
            if a.user != c.user
                || a.event.as_deref() != Some("order_completed")
                || a.timestamp <= trigger.timestamp
            {
                continue;
            }
            if let Some(applied) = world.handled.get(id) {
                if c.at > *applied {
                    // Applied before the trigger itself: the entry's late-exit check had to see it.
                    let trigger_id = triggers
                        .get(&c.enrollment)
                        .map(String::as_str)
                        .unwrap_or("");
                    let late = world.handled.get(trigger_id).is_some_and(|t| applied <= t);
                    let class = if late {
                        "late-exit-ignored"
                    } else {
                        "exit-ignored"
                    };
                    found.push((class, format!(
                        "{} ({}) went out at {} although order_completed {id} (at {}, after the trigger at {}) had been applied at {applied}",
                        c.ledger_key, c.channel, c.at, a.timestamp, trigger.timestamp
                    )));
                }
            }
        }
    }
    drop(lab);
    for (class, d) in found {
        world.violation(class, d);
    }
}

/// After one more fold (the scheduler's next minute, now free of faults), the stats counters
/// equal the counters of every timeline record, and no record waits to be counted.
pub async fn stats(world: &mut World, facts: &Facts, fig: &mut Figures) {
    let scheduler = &world.workers[crate::world::SCHEDULER];
    match scheduler.fold_stats().await {
        Ok(n) => fig.unfolded = n as u64,
        Err(e) => world.violation("stats-unfolded", format!("the final fold failed: {e}")),
    }
    // Every fold partition a worker may have listed a record in, whatever it was configured with.
    let mut left = 0;
    for shard in 0..waymark::shards::MAX {
        left += world
            .store
            .pending(&format!("F#{shard}"), usize::MAX)
            .await
            .map(|r| r.len())
            .unwrap_or(0);
    }
    if left > 0 {
        world.violation(
            "stats-unfolded",
            format!("{left} timeline records still wait to be counted after the final fold"),
        );
    }
    let all: Vec<Entry> = facts.entries().cloned().collect();
    let expected = timeline::counters(&all);
    for journey in [CART, ONBOARDING, PURCHASE, CHURN, UPSELL, DIGEST] {
        let mut want = expected.get(journey).cloned().unwrap_or_default();
        want.retain(|_, d| *d != 0);
        let keys = stats_keys(journey, waymark::shards::MAX);
        let mut have = world.store.counters_sum(&keys).await.unwrap_or_default();
        have.retain(|_, d| *d != 0);
        if have != want {
            let diff: Vec<String> = want
                .keys()
                .chain(have.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| want.get(*k) != have.get(*k))
                .map(|k| format!("{k}: stats {:?}, timelines {:?}", have.get(k), want.get(k)))
                .collect();
            world.violation("stats-mismatch", format!("{journey}: {}", diff.join("; ")));
        }
    }
}

/// Users who abandoned a cart and never ordered got the push and the email; users who signed up
/// and never registered got both reminders: a provider call, or a recorded rejection or cap.
pub fn nothing_lost(world: &mut World, workload: &Workload, facts: &Facts, fig: &mut Figures) {
    let lab = lock(&world.lab);
    let accepted: BTreeSet<(String, String)> = lab
        .calls
        .iter()
        .filter(|c| c.accepted)
        .map(|c| (c.enrollment.clone(), c.step.clone()))
        .collect();
    drop(lab);
    let excused: BTreeSet<(&str, &str)> = facts
        .entries()
        .filter(|e| matches!(&e.what, What::Skipped { reason, .. } if reason == "rejected" || reason == "capped"))
        .filter_map(|e| Some((&*e.enrollment, e.step.as_deref()?)))
        .collect();
    // Enrollments that never recorded their end and are no longer the user's current one: a
    // re-entry was written over them before their last transition was performed.
    let ended: BTreeSet<&str> = facts
        .entries()
        .filter(|e| matches!(e.what, What::Completed | What::Exited { .. }))
        .map(|e| &*e.enrollment)
        .collect();
    let current: BTreeSet<&str> = facts.enrollments.iter().map(|e| &*e.id).collect();
    // When each user's first identify (address, phone, device) was applied: a send made before
    // then (that identify failed and was retried after the user's next event) found no address.
    let skew = SignedDuration::from_millis(2 * MAX_SKEW_MS);
    let known_from: BTreeMap<&str, Timestamp> = workload
        .users
        .iter()
        .filter_map(|u| Some((u.id.as_str(), *world.handled.get(&u.identify)? + skew)))
        .collect();
    let unreachable: BTreeSet<(&str, &str)> = facts
        .timelines
        .iter()
        .flat_map(|t| t.entries.iter().map(move |e| (t.user.as_str(), e)))
        .filter(|(user, e)| {
            matches!(&e.what, What::Skipped { reason, .. } if reason == "no_address")
                && known_from.get(user).is_none_or(|from| e.at < *from)
        })
        .filter_map(|(_, e)| Some((&*e.enrollment, e.step.as_deref()?)))
        .collect();
    let mut found: Vec<(&'static str, String)> = Vec::new();
    for u in &workload.users {
        let mut expect = |journey: &str, steps: &[(&str, bool)]| {
            if !facts
                .enrollments
                .iter()
                .any(|e| *e.user_id == *u.id && *e.journey == *journey)
            {
                found.push(("lost-send", format!("{} never entered {journey}", u.id)));
                return;
            }
            // Every enrollment of the user, not only the latest: from the timeline.
            let ids: BTreeSet<&str> = facts
                .entries()
                .filter(|e| &*e.journey == journey && e.enrollment.contains(&format!(":{}:", u.id)))
                .map(|e| &*e.enrollment)
                .collect();
            // The anonymous cart that went on as the user's (its push found no device, if it
            // came before the login; its email comes after the login, at the user's address).
            let anonymous: BTreeSet<&str> = match &u.anonymous {
                Some((device, _)) => facts
                    .entries()
                    .filter(|e| {
                        &*e.journey == journey && e.enrollment.contains(&format!(":anon:{device}:"))
                    })
                    .filter(|e| matches!(e.what, What::Merged { ended: false, .. }))
                    .map(|e| &*e.enrollment)
                    .collect(),
                None => BTreeSet::new(),
            };
            for id in ids.into_iter().chain(anonymous.iter().copied()) {
                for (step, wanted) in steps {
                    // An anonymous cart's push was not due to the user's device.
                    let due = *wanted && (*step != "push_reminder" || !anonymous.contains(id));
                    if due
                        && !accepted.contains(&(id.to_string(), step.to_string()))
                        && !excused.contains(&(id, step))
                        && !unreachable.contains(&(id, step))
                    {
                        let overwritten = !ended.contains(id) && !current.contains(id);
                        found.push((
                            if overwritten {
                                "outbox-overwritten"
                            } else {
                                "lost-send"
                            },
                            format!(
                                "{} ({id}) never got {step}{}",
                                u.id,
                                if overwritten {
                                    " (its enrollment record was replaced before it ended)"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                }
            }
        };
        if u.carts.iter().any(|c| c.2) && u.orders.is_empty() {
            expect(
                CART,
                &[("push_reminder", u.has_device), ("low_stock_email", true)],
            );
        }
        if !u.orders.is_empty() {
            // Every order that entered confirmed by SMS (transactional: no cap), to a phone.
            expect(PURCHASE, &[("confirmation_sms", u.has_phone)]);
        }
        if !u.opened.is_empty() {
            // Fourteen days after the last app open: the retention offer, by SMS or by email.
            expect(CHURN, &[("retention_offer", true)]);
        }
        if !u.signed_up.is_empty() && u.registered.is_empty() {
            expect(
                ONBOARDING,
                &[("reminder_1", u.has_device), ("reminder_2", true)],
            );
        }
    }
    fig.losses += found.len() as u64;
    for (class, d) in found {
        world.violation(class, d);
    }
}

/// The upsell journey's `repeated` trigger (3 episodes within 7 days, free plan, `reentry:
/// never`): a user enters at most once; only a free viewer with three episodes within seven
/// days (by the events' own times, whatever order they arrived in) enters; and such a viewer
/// whose plan was known before the first episode was applied does enter.
pub fn upsell(world: &mut World, workload: &Workload, facts: &Facts) {
    let within = SignedDuration::from_hours(7 * 24);
    let skew = SignedDuration::from_millis(2 * MAX_SKEW_MS);
    let mut found = Vec::new();
    for u in &workload.users {
        let entered: BTreeSet<&str> = facts
            .entries()
            .filter(|e| &*e.journey == UPSELL && matches!(e.what, What::Entered { .. }))
            .filter(|e| e.enrollment.contains(&format!(":{}:", u.id)))
            .map(|e| &*e.enrollment)
            .collect();
        let times: Vec<Timestamp> = u.watched.iter().map(|(_, t)| *t).collect();
        let qualifies = times.iter().any(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t <= *start + within)
                .count()
                >= 3
        });
        let free = u.free == Some(true);
        let plan_known_first = world.handled.get(&u.identify).is_some_and(|known| {
            u.watched
                .iter()
                .filter_map(|(id, _)| world.handled.get(id))
                .all(|applied| *applied > *known + skew)
        });
        if entered.len() > 1 {
            found.push(format!(
                "{} entered {UPSELL} {} times: {entered:?}",
                u.id,
                entered.len()
            ));
        }
        let may_enter = free && qualifies;
        if !entered.is_empty() && !may_enter {
            found.push(format!(
                "{} entered {UPSELL} without three episodes within seven days on the free plan (plan {:?}, episodes at {times:?})",
                u.id, u.free
            ));
        }
        if entered.is_empty() && free && qualifies && plan_known_first {
            found.push(format!(
                "{} never entered {UPSELL} with episodes at {times:?} on the free plan",
                u.id
            ));
        }
    }
    for d in found {
        world.violation("upsell-trigger", d);
    }
}

/// The `trait_changed: plan` journey (`reentry: never`): a viewer's first identify sets her
/// plan, a change from none, so she enters it once, on that identify, however often it was
/// delivered or retried after failing half-way (its profile written, its entry not made); no
/// one else's plan changes, and no one else enters.
pub fn plan_change(world: &mut World, workload: &Workload, facts: &Facts) {
    let mut found = Vec::new();
    for u in &workload.users {
        let entries: Vec<&str> = facts
            .enrollments
            .iter()
            .filter(|e| &*e.journey == PLAN && *e.user_id == *u.id)
            .map(|e| e.trigger.message_id.as_str())
            .collect();
        let expected: Vec<&str> = match u.free {
            Some(_) => vec![u.identify.as_str()],
            None => Vec::new(),
        };
        if entries != expected {
            found.push(format!(
                "{} entered {PLAN} on {entries:?}, where her plan's changes were {expected:?}",
                u.id
            ));
        }
    }
    for d in found {
        world.violation("plan-change-trigger", d);
    }
}

/// The schedule journey (09:00 in each free viewer's zone, UTC without one). A viewer enters
/// only at firings of her zone (the entry's cause names its minute) that the scheduler reached
/// (by its last run: a run may start a minute's schedules and then fail to move its cursor),
/// none more than `SCAN_LATE` before her plan was known (a firing's scan reads profiles when its
/// pages are read, which retries may make late); and at every firing from an hour after her
/// plan was known to an hour before the scheduler's cursor (the next minute it sweeps), but a
/// firing the scheduler reached only once her next one was due too (its runs failed in between,
/// and it caught up): that one is not started, the later one enters her. (At most one entry a
/// firing: the generic check, one entry per cause.)
pub async fn digest(world: &mut World, workload: &Workload, facts: &Facts, fig: &mut Figures) {
    const SCAN_LATE: SignedDuration = SignedDuration::from_hours(12);
    let Some(cursor) = crate::world::cursor(&world.store)
        .await
        .and_then(|m| Timestamp::from_second(m * 60).ok())
    else {
        world.violation("harness", "no scheduler cursor".to_string());
        return;
    };
    let reached = world.last_tick.unwrap_or(cursor).max(cursor);
    let hour = SignedDuration::from_hours(1);
    let mut found = Vec::new();
    for u in workload.users.iter().filter(|u| u.free == Some(true)) {
        let Some(known) = world.handled.get(&u.identify).copied() else {
            continue;
        };
        let zone = u
            .timezone
            .as_deref()
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        // Every 09:00 in the user's zone from the day before the plan to the scheduler's last run.
        let mut firings = BTreeSet::new();
        let Ok(mut day) = (known - SCAN_LATE)
            .to_zoned_datetime(zone.clone())
            .date()
            .yesterday()
        else {
            continue;
        };
        loop {
            let Ok(at) = day
                .at(9, 0, 0, 0)
                .to_zoned_datetime(zone.clone())
                .map(|z| z.timestamp())
            else {
                break;
            };
            if at > reached {
                break;
            }
            firings.insert(at);
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        let entered: BTreeSet<Timestamp> = facts
            .timelines
            .iter()
            .filter(|t| t.user == u.id)
            .filter(|t| {
                t.entries
                    .iter()
                    .any(|e| &*e.journey == DIGEST && matches!(e.what, What::Entered { .. }))
            })
            .filter_map(|t| t.cause.rsplit_once("schedule:"))
            .filter_map(|(_, m)| m.parse::<i64>().ok())
            .filter_map(|m| Timestamp::from_second(m * 60).ok())
            .collect();
        fig.digests += entered.len() as u64;
        for at in &entered {
            let zone = u.timezone.as_deref().unwrap_or("UTC");
            let why = if *at < known - SCAN_LATE {
                format!("more than {SCAN_LATE:#} before the plan was known ({known})")
            } else if !firings.contains(at) {
                format!("not 09:00 in {zone} by the scheduler's last run ({reached})")
            } else {
                continue;
            };
            found.push(format!("{} entered {DIGEST} at {at}: {why}", u.id));
        }
        // Reached once her next 09:00 was due: the run that finished its minute was at or
        // after that one's.
        let stale = |at: Timestamp| {
            let minute = at.as_second().div_euclid(60);
            let Some(run) = world
                .scheduler_runs
                .iter()
                .rev()
                .find(|(from, until, _)| *from <= minute && minute < *until)
                .map(|(_, _, run)| *run)
            else {
                return false;
            };
            zone.to_datetime(at)
                .date()
                .tomorrow()
                .ok()
                .and_then(|d| d.at(9, 0, 0, 0).to_zoned_datetime(zone.clone()).ok())
                .is_some_and(|next| next.timestamp().as_second().div_euclid(60) <= run)
        };
        for at in firings
            .iter()
            .filter(|t| **t > known + hour && **t < cursor - hour && !stale(**t))
        {
            if !entered.contains(at) {
                found.push(format!(
                    "{} did not enter {DIGEST} at {at} (plan known at {known}, scheduler's cursor at {cursor})",
                    u.id
                ));
            }
        }
    }
    // Nobody else is on the free plan.
    for u in workload.users.iter().filter(|u| u.free != Some(true)) {
        let n = facts
            .entries()
            .filter(|e| &*e.journey == DIGEST && matches!(e.what, What::Entered { .. }))
            .filter(|e| e.enrollment.contains(&format!(":{}:", u.id)))
            .count();
        if n > 0 {
            found.push(format!(
                "{} entered {DIGEST} {n} times, not on the free plan",
                u.id
            ));
        }
    }
    for d in found {
        world.violation("digest-entries", d);
    }
}

/// In-app messages (post-purchase's feedback request, onboarding's setup guide) go to the
/// user's inbox, not to the provider: every one the ledger says was sent is in the inbox of the
/// user whose partition holds its ledger record.
pub fn inbox(world: &mut World, fig: &mut Figures) {
    let records = world.store.dump();
    let delivered: BTreeSet<(String, String)> = records
        .iter()
        .filter_map(|r| {
            let rest = r.key.sk.strip_prefix("I#")?;
            Some((r.key.pk.to_string(), rest.to_string()))
        })
        .collect();
    let mut found = Vec::new();
    for r in &records {
        let Some(rest) = r.key.sk.strip_prefix("L#") else {
            continue;
        };
        // L#{journey}:{user}:{n}#{step}#{visit}
        let mut parts = rest.rsplitn(3, '#');
        let (_visit, step, enrollment) = (parts.next(), parts.next(), parts.next());
        let journey = enrollment.and_then(|e| e.split(':').next());
        let (Some(journey), Some(step)) = (journey, step) else {
            continue;
        };
        if !world
            .in_app_steps
            .contains(&(journey.to_string(), step.to_string()))
        {
            continue;
        }
        let sent = matches!(
            r.parse::<waymark::runtime::Ledger>(),
            Ok(waymark::runtime::Ledger::Done {
                outcome: waymark::runtime::Outcome::Sent { .. }
            })
        );
        fig.in_app += u64::from(sent);
        if sent && !delivered.contains(&(r.key.pk.to_string(), rest.to_string())) {
            found.push(format!(
                "{} {rest}: sent by the ledger, not in the inbox",
                r.key.pk
            ));
        }
    }
    for d in found {
        world.violation("lost-in-app", d);
    }
}

/// A send skipped as "capped" had its cap really used up: at least that many messages on the
/// channel went out to the user within the cap's window before it (for a cap of days, the
/// user's calendar days; throttled or failed attempts
/// are not sends).
pub fn caps(world: &mut World, workload: &Workload, facts: &Facts) {
    let config = crate::world::config();
    let zone_of = |user: &str| {
        workload
            .users
            .iter()
            .find(|u| u.id == user)
            .and_then(|u| u.timezone.as_deref())
            .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC)
    };
    let lab = lock(&world.lab);
    let mut found = Vec::new();
    for (user, e) in facts
        .timelines
        .iter()
        .flat_map(|t| t.entries.iter().map(move |e| (t.user.as_str(), e)))
    {
        let What::Skipped {
            channel, reason, ..
        } = &e.what
        else {
            continue;
        };
        let Some(cap) = config.caps.get(channel).filter(|_| reason == "capped") else {
            continue;
        };
        // The entry carries the transition's time; the send was tried then or a little later.
        // A place in the cap carries the clock of the worker that took it, up to
        // `MAX_SKEW_MS` off the true time the provider saw (two quiet-hours sends deferred to
        // 08:00 on consecutive days are a day apart within that).
        let skew = SignedDuration::from_millis(crate::world::MAX_SKEW_MS);
        // A cap of whole days counts the user's calendar days: from local midnight `N - 1`
        // days back (`runtime::in_cap_window`); other caps the exact time before.
        let secs = cap.per.as_secs();
        let start = if secs > 0 && secs % 86_400 == 0 {
            let zone = zone_of(user);
            e.at.to_zoned_datetime(zone.clone())
                .date()
                .checked_sub(jiff::Span::new().days((secs / 86_400 - 1) as i64))
                .ok()
                .and_then(|d| d.to_zoned_datetime(zone).ok())
                .map(|z| z.timestamp())
                .unwrap_or(e.at - cap.per.to_jiff())
        } else {
            e.at - cap.per.to_jiff()
        };
        let (from, to) = (start - skew, e.at + SignedDuration::from_hours(1));
        let sent = lab
            .calls
            .iter()
            .filter(|c| c.accepted && c.user == user && c.channel == *channel)
            .filter(|c| c.at > from && c.at <= to)
            .count();
        if sent < cap.max as usize {
            found.push(format!(
                "{} skipped {channel} at {} as capped, but only {sent} went out to {user} in the {} before (cap {})",
                e.enrollment, e.at, cap.per, cap.max
            ));
        }
    }
    drop(lab);
    for d in found {
        world.violation("cap-miscounted", d);
    }
}

/// Push to a user without a device is skipped; the oracles rely on channels being what the
/// journeys say, so a quick sanity check of the call log.
pub fn channels(world: &mut World) {
    let lab = lock(&world.lab);
    let odd: Vec<String> = lab
        .calls
        .iter()
        .filter(|c| {
            !matches!(
                (c.journey.as_str(), c.step.as_str(), c.channel),
                (CART, "push_reminder", Channel::Push)
                    | (CART, "low_stock_email", Channel::Email)
                    | (ONBOARDING, "reminder_1", Channel::Push)
                    | (ONBOARDING, "reminder_2", Channel::Push | Channel::Email)
                    | (PURCHASE, "confirmation_sms", Channel::Sms)
                    | (PURCHASE, "feedback_request", Channel::InApp)
                    | (CHURN, "retention_offer", Channel::Sms | Channel::Email)
                    | (UPSELL, "offer_features" | "offer_momentum", Channel::Push)
                    | (DIGEST, "digest", Channel::Email)
            )
        })
        .map(|c| format!("{} on {}", c.ledger_key, c.channel))
        .collect();
    drop(lab);
    for d in odd {
        world.violation("harness", format!("unexpected provider call {d}"));
    }
}

/// Debug aid: sends that went out within five seconds of their enrollment's exit.
pub fn near_races(world: &World, facts: &Facts) -> (usize, usize) {
    let exited_at: BTreeMap<&str, Timestamp> = facts
        .entries()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| (&*e.enrollment, e.at))
        .collect();
    let lab = lock(&world.lab);
    let near = lab
        .calls
        .iter()
        .filter(|c| c.accepted)
        .filter(|c| {
            exited_at
                .get(c.enrollment.as_str())
                .is_some_and(|x| (*x - c.at).abs() < SignedDuration::from_secs(5))
        })
        .count();
    (near, lab.exits.len())
}
