//! The timeline: what happened to a user in each journey and why, one entry per fact, and the
//! per-step counters (stats) that follow from it. Stats are derived from entries, never kept apart.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::journey::Channel;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    pub journey: String,
    pub enrollment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(flatten)]
    pub what: What,
}

/// One fact, with its reason where there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What {
    /// Entered the journey (on this version, because of this event).
    Entered { version: u32, trigger: String },
    /// Reached a step.
    Step,
    /// Waiting until `until`, because of `why` (`wait 30m`, `wait_until 09:00`, `wait_for app_opened`, `quiet hours`).
    Waiting { until: Timestamp, why: String },
    /// A wait ended (`timeout` for a `wait_for` that timed out, `event` for one that got its event).
    Woke { how: String },
    /// A branch picked a path: the case's condition (or `else`) and where it went.
    Branched { on: String, to: String },
    /// A split picked a path.
    Split { path: String },
    /// A message went out.
    Sent { channel: Channel },
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
    },
    /// Profile traits were changed.
    Updated {
        set: Vec<String>,
        unset: Vec<String>,
    },
    /// The goal event happened within its window.
    Converted { event: String },
    /// Ended by an `exit_when` event.
    Exited { event: String },
    /// Reached an exit step or the end.
    Completed,
    /// Held out by a split.
    HeldOut,
}

/// Counter changes for a set of entries: journey → counter name → delta.
///
/// Names: `entered`, `converted`, `exited`, `completed`, `held_out` for the journey, and
/// `step.<id>.entered`, `step.<id>.waiting`, `step.<id>.sent.<channel>`,
/// `step.<id>.skipped.<reason>`, `step.<id>.exited` per step.
pub fn counters(entries: &[Entry]) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for e in entries {
        let c = out.entry(e.journey.clone()).or_default();
        let mut add = |k: String, d: i64| *c.entry(k).or_insert(0) += d;
        let step = e.step.clone().unwrap_or_default();
        match &e.what {
            What::Entered { .. } => add("entered".into(), 1),
            What::Step => add(format!("step.{step}.entered"), 1),
            What::Waiting { .. } => add(format!("step.{step}.waiting"), 1),
            What::Woke { .. } => add(format!("step.{step}.waiting"), -1),
            What::Sent { channel } => add(format!("step.{step}.sent.{channel}"), 1),
            What::Skipped { reason, .. } => add(format!("step.{step}.skipped.{reason}"), 1),
            What::Converted { .. } => add("converted".into(), 1),
            What::Exited { .. } => {
                add("exited".into(), 1);
                if !step.is_empty() {
                    add(format!("step.{step}.exited"), 1);
                }
            }
            What::Completed => add("completed".into(), 1),
            What::HeldOut => add("held_out".into(), 1),
            What::Branched { .. }
            | What::Split { .. }
            | What::FellBack { .. }
            | What::Updated { .. } => {}
        }
    }
    out.retain(|_, c| {
        c.retain(|_, d| *d != 0);
        !c.is_empty()
    });
    out
}
