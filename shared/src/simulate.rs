//! Deterministic simulation: the real runtime over the in-memory store, a virtual queue and a
//! virtual clock, driven by a script of timestamped events. Instant and repeatable, so a journey
//! can be tested in CI before it ships.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::{Clock, ManualClock};
use crate::cron::Cron;
use crate::enrollment::{Enrollment, Status};
use crate::event::{self, Limits};
use crate::journey::{Journey, TriggerKind};
use crate::outbox::{OutboxLine, OutboxSender};
use crate::queue::{Message, Outbound, Queue, QueueError, QueueName};
use crate::runtime::{Config, Runtime};
use crate::store::{MemoryStore, Store};
use crate::timeline::Entry;

/// Queued messages by due time, each time's in arrival order. Most messages share their due
/// time with others (a batch's events, the wake-ups of one scheduler minute), so a send finds
/// its time's bucket and appends, instead of placing each message in one big ordered map.
type Entries = BTreeMap<Timestamp, Vec<Message>>;

/// A queue that delivers each message at its due time on a virtual clock.
#[derive(Clone)]
pub struct DelayQueue {
    clock: Arc<dyn Clock>,
    entries: Arc<Mutex<Entries>>,
}

impl DelayQueue {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        DelayQueue {
            clock,
            entries: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the next message is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.lock().keys().next().copied()
    }

    /// Takes every message due at or before `now`, in due order (arrival order within a time).
    pub fn take_due(&self, now: Timestamp) -> Vec<Message> {
        let mut entries = self.lock();
        let mut out = Vec::new();
        while let Some(e) = entries.first_entry() {
            if *e.key() > now {
                break;
            }
            let bucket = e.remove();
            if out.is_empty() {
                out = bucket;
            } else {
                out.extend(bucket);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[async_trait]
impl Queue for DelayQueue {
    async fn send(&self, _queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        let now = self.clock.now();
        let mut entries = self.lock();
        for m in messages {
            let due = now + SignedDuration::from_secs(i64::from(m.delay_secs));
            entries.entry(due).or_default().push(m.message.clone());
        }
        Ok(())
    }
}

/// One line of a script: a Segment-style event with the time it happens.
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptLine {
    pub at: Timestamp,
    #[serde(flatten)]
    pub payload: serde_json::Map<String, Value>,
    /// Where it is in the script (1-based), for errors.
    #[serde(skip)]
    pub line: usize,
    /// The event, once [`parse_script`] has checked it (the run sends it as it is).
    #[serde(skip)]
    pub checked: Option<Arc<event::Event>>,
}

/// What is wrong with a script line's `at` that jiff reads: an offset of a day or more
/// ([`event::offset_past_a_day`], as the API tells it of an event's times).
fn at_problem(line: &str) -> Option<String> {
    let raw: serde_json::Map<String, Value> = serde_json::from_str(line).ok()?;
    let text = raw.get("at")?.as_str()?;
    let problem = event::offset_past_a_day(text)?;
    Some(format!("at: {problem}, like \"2027-03-14T09:00:00Z\""))
}

/// How many bad lines a script's error lists before it says how many more there are.
const MOST_LISTED: usize = 20;

impl ScriptLine {
    /// The event the line sends, checked as the HTTP API checks one.
    fn event(&self) -> Result<event::Event, String> {
        let call = match self.payload.get("type").and_then(Value::as_str) {
            None => event::Call::Track,
            Some(t) => event::Call::parse(t).ok_or_else(|| {
                format!(
                    "type: `{t}` is not a kind of event here: write \"track\", \"identify\", \"page\", \"screen\", \"alias\" or \"group\""
                )
            })?,
        };
        let body = serde_json::to_vec(&self.payload).map_err(|e| e.to_string())?;
        // Two identical lines at the same time are two events, as two requests are.
        let place = format!("line {}", self.line);
        // Its `timestamp` is judged against its `at` (when the engine receives it) as the
        // deployed API judges it against its clock: an event the API would refuse (a month
        // old, or more than an hour ahead) is a script error, not a run that cannot happen.
        event::parse_call_at(call, &body, self.at, &Limits::default(), &place).map_err(|errs| {
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// The fields of a script line that say how and when this one delivery of an event came, not
/// what the event is: `at` (when the engine receives it), `sentAt` (when the sender's library
/// sent this attempt: a retry sends it anew) and `receivedAt` (a relay's stamp of this
/// delivery). A retry of an event repeats every other field, `timestamp` and
/// `originalTimestamp` too: the sender stamps those once, when the event happens.
const DELIVERY_FIELDS: &[&str] = &["at", "sentAt", "receivedAt"];

/// A line's event as a retry of it repeats it: its fields without [`DELIVERY_FIELDS`].
fn own_fields(payload: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    payload
        .iter()
        .filter(|(k, _)| !DELIVERY_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An earlier line of a (user, `messageId`): where it is, what kind of event, and its own
/// fields ([`own_fields`]).
struct FirstLine {
    line: usize,
    what: String,
    fields: serde_json::Map<String, Value>,
}

/// What a script line says when its `messageId` is one an earlier line of the same user sent
/// with another event: the engine would take it for a retry of that one and drop it, with no
/// trace. The same event again (a retry: the same fields but for [`DELIVERY_FIELDS`]) is what
/// a repeated id is for, and passes. `first_of` holds each (user, id)'s first line.
fn reused_message_id(
    e: &event::Event,
    payload: &serde_json::Map<String, Value>,
    line: usize,
    first_of: &mut HashMap<(String, String), FirstLine>,
) -> Option<String> {
    let what = match &e.event {
        Some(name) => format!("{} `{name}`", e.kind.as_str()),
        None => e.kind.as_str().to_string(),
    };
    let user = if e.user_id.is_empty() {
        e.anonymous_id.clone().unwrap_or_default()
    } else {
        e.user_id.clone()
    };
    let first = first_of
        .entry((user, e.message_id.clone()))
        .or_insert_with(|| FirstLine {
            line,
            what: what.clone(),
            fields: own_fields(payload),
        });
    let id = &e.message_id;
    let was = &first.what;
    let advice =
        "give each event its own messageId (a repeated one is for the same event sent again)";
    if first.what != what {
        return Some(format!(
            "line {line}: messageId `{id}` is line {}'s, a {was}: this {what} would be taken for its retry and dropped; {advice}",
            first.line
        ));
    }
    let fields = own_fields(payload);
    if fields == first.fields {
        return None;
    }
    // The fields written differently, in name order, on one side or both.
    let differ: std::collections::BTreeSet<&str> = fields
        .keys()
        .chain(first.fields.keys())
        .map(String::as_str)
        .filter(|k| fields.get(*k) != first.fields.get(*k))
        .collect();
    let verb = if differ.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    let differ: Vec<String> = differ.iter().map(|k| format!("`{k}`")).collect();
    Some(format!(
        "line {line}: messageId `{id}` is line {}'s, a {was} whose {} {verb}: this one would be taken for its retry and dropped; {advice}",
        first.line,
        differ.join(" and ")
    ))
}

/// Reads a script of JSON lines, and checks each event as the HTTP API would: every error
/// names its line, and a script with any is refused whole, before anything runs.
pub fn parse_script(text: &str) -> Result<Vec<ScriptLine>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut first_of = HashMap::new();
    // A byte order mark an editor saved first (Notepad's "UTF-8 with BOM") is no part of the
    // first line's JSON, as the API reads a body.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let mut parsed: ScriptLine = match serde_json::from_str(line) {
            Ok(p) => p,
            Err(e) => {
                // serde_json places the error within the line ("at line 1 column 17"): the
                // column is said once, after the script's line.
                let text = e.to_string();
                let place = format!(" at line {} column {}", e.line(), e.column());
                let what = text.strip_suffix(place.as_str()).unwrap_or(&text);
                let at = if e.column() > 0 {
                    format!(", column {}", e.column())
                } else {
                    String::new()
                };
                errors.push(format!(
                    "line {}{at}: {what} (each line is a JSON object with \"at\" (RFC 3339) and a track, identify, page, screen, alias or group body)",
                    i + 1
                ));
                continue;
            }
        };
        parsed.line = i + 1;
        if let Some(problem) = at_problem(line) {
            errors.push(format!("line {}: {problem}", i + 1));
            continue;
        }
        // `at` is when the engine receives it: an event without a `timestamp` happened then,
        // unless its `originalTimestamp` says otherwise, as the API reads one (`sentAt` only
        // corrects a timestamp sent with it). Two identical lines at different times are two
        // events, not a retry: an event without a `messageId` takes its id from when and where
        // it was received.
        match parsed.event() {
            Ok(e) => {
                if let Some(said) = reused_message_id(&e, &parsed.payload, i + 1, &mut first_of) {
                    errors.push(said);
                }
                parsed.checked = Some(Arc::new(e));
            }
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
        out.push(parsed);
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(MOST_LISTED);
        errors.truncate(MOST_LISTED);
        if more > 0 {
            errors.push(format!("and {more} more bad line(s)"));
        }
        return Err(errors.join("\n"));
    }
    out.sort_by_key(|l| l.at);
    Ok(out)
}

/// One line of simulation output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// A timeline fact.
    Timeline {
        user_id: String,
        #[serde(flatten)]
        entry: Entry,
    },
    /// A message that went out.
    Message(OutboxLine),
}

impl Output {
    pub fn at(&self) -> Timestamp {
        match self {
            Output::Timeline { entry, .. } => entry.at,
            Output::Message(m) => m.at,
        }
    }
}

/// Runs `journeys` against `script` and returns every timeline fact and message, in time order.
/// Runs until nothing is pending, or `horizon` after the last scripted event.
pub async fn run(
    journeys: &[Journey],
    script: &[ScriptLine],
    config: Config,
    horizon: SignedDuration,
) -> Result<Vec<Output>, String> {
    Ok(run_to_horizon(journeys, script, config, horizon)
        .await?
        .outputs)
}

/// What a simulation printed, and whether it stopped at its horizon with something still to
/// happen.
#[derive(Debug)]
pub struct Simulated {
    pub outputs: Vec<Output>,
    /// When the run stopped at its horizon (`horizon` after the last scripted event) with a
    /// wake-up or a message still due after it (a wait past the horizon). A schedule's next run
    /// alone is not counted: schedules run for ever.
    pub cut: Option<Cut>,
}

/// A run stopped at its horizon with something due after it ([`Simulated::cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub horizon: Timestamp,
    /// How many enrollments still wait past the horizon.
    pub waiting: usize,
    /// When the first of their waits ends (else the next message due: a retry, say).
    pub next_due: Timestamp,
}

/// [`run`], also telling whether the run stopped at its horizon with something still due.
pub async fn run_to_horizon(
    journeys: &[Journey],
    script: &[ScriptLine],
    config: Config,
    horizon: SignedDuration,
) -> Result<Simulated, String> {
    Ok(
        run_stepping(journeys, script, config, horizon, Stepping::Jumping)
            .await?
            .0,
    )
}

/// How the virtual clock goes over the minutes between the things a script makes happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stepping {
    /// To the next thing due: a scripted event, a queued message, the scheduler's minute before
    /// a timer is due, or a minute a schedule's cron may match in. The scheduler's other
    /// minutes do nothing that shows (their stats fold is not printed), and are skipped.
    Jumping,
    /// Through every minute when there are schedule triggers, the scheduler running at each
    /// (as deployed): what [`Stepping::Jumping`] is checked against.
    #[cfg_attr(not(test), allow(dead_code))]
    EveryMinute,
}

/// [`run_to_horizon`], stepping as told; also how many times the scheduler ran.
async fn run_stepping(
    journeys: &[Journey],
    script: &[ScriptLine],
    config: Config,
    horizon: SignedDuration,
    stepping: Stepping,
) -> Result<(Simulated, u64), String> {
    let start = script
        .first()
        .map(|l| l.at)
        .unwrap_or_else(|| Timestamp::UNIX_EPOCH);
    let clock = Arc::new(ManualClock::new(start));
    // Keeps the order records were first written in: the facts of one instant are listed in
    // the order they happened.
    let store = MemoryStore::keeping_write_order();
    let queue = DelayQueue::new(clock.clone());
    let (sender, lines) = OutboxSender::memory(clock.clone());
    // The virtual scheduler ticks only when something is due, so each tick catches up fully.
    let config = Config {
        max_catch_up_minutes: i64::MAX / 2,
        tick_budget: None,
        ..config
    };
    let rt = Runtime::new(
        Arc::new(store.clone()),
        Arc::new(queue.clone()),
        Arc::new(sender),
        clock.clone(),
        std::time::Duration::from_secs(0),
        config,
    );
    for j in journeys {
        rt.catalog
            .publish(j, &rt.config.topics, start)
            .await
            .map_err(|e| e.to_string())?;
    }
    rt.start_minutes_at(start)
        .await
        .map_err(|e| e.to_string())?;
    let end = script.last().map(|l| l.at).unwrap_or(start) + horizon;
    let timers = Timers::new(rt.config.timer_shards, start, end);
    let has_schedules = journeys
        .iter()
        .any(|j| matches!(j.trigger.kind(), Some(TriggerKind::Schedule(_))));

    let mut next_line = 0usize;
    let mut steps = 0u64;
    // A scheduler run is due (a timer's minute, or a minute of schedule triggers), and the
    // minute of the last run.
    let mut tick_wanted = false;
    let mut ticked: Option<i64> = None;
    let mut ticks = 0u64;
    // The scheduler's first minute not run (or skipped, having nothing to do) yet.
    let mut next_minute = start.as_second().div_euclid(60);
    let mut cut = None;
    loop {
        steps += 1;
        if steps > 5_000_000 {
            return Err("simulation did not settle after 5,000,000 steps".into());
        }
        let now = clock.now();
        // Everything due now: scripted events first, then queued messages.
        let mut progressed = false;
        while next_line < script.len() && script[next_line].at <= now {
            let line = &script[next_line];
            next_line += 1;
            let ev = match &line.checked {
                Some(e) => e.clone(),
                None => Arc::new(
                    line.event()
                        .map_err(|e| format!("script line {}: {e}", line.line))?,
                ),
            };
            queue
                .send(
                    QueueName::Events,
                    &[Outbound {
                        message: Message::Event(ev),
                        delay_secs: 0,
                    }],
                )
                .await
                .map_err(|e| e.to_string())?;
            progressed = true;
        }
        let due = queue.take_due(now);
        if !due.is_empty() {
            for (m, r) in due.iter().zip(rt.handle_batch(&due).await) {
                if let Err(e) = r {
                    return Err(format!("message {} failed: {e}", m.id()));
                }
            }
            continue;
        }
        if progressed {
            continue;
        }
        // The scheduler's run, once the events due at this instant are in: a schedule at
        // 09:00 sees the user an identify at 09:00:00 made, and the first minute of a script
        // has its run then, not a minute late.
        let minute_now = now.as_second().div_euclid(60);
        let new_minute = match stepping {
            Stepping::EveryMinute => ticked.is_none_or(|m| m < minute_now),
            // A minute that has something to run is asked for (`tick_wanted`).
            Stepping::Jumping => ticked.is_none(),
        };
        if tick_wanted || (has_schedules && new_minute) {
            tick_wanted = false;
            ticked = Some(minute_now);
            ticks += 1;
            rt.tick().await.map_err(|e| e.to_string())?;
            next_minute = next_minute.max(minute_now + 1);
            // A timer the sweep could not move (it never should) must not stall the clock.
            let stuck = timers
                .next(&store)
                .is_some_and(|d| d - SignedDuration::from_secs(60) <= now)
                && queue.next_due().is_none_or(|d| d > now)
                && script.get(next_line).is_none_or(|l| l.at > now);
            if stuck {
                return Err(format!(
                    "a timer due by {now} was not moved by the scheduler"
                ));
            }
            continue;
        }
        // Nothing due now: jump to the next thing that will happen. The scheduler ticks a
        // minute before a timer is due; when schedule triggers exist, it runs at the start of
        // each minute (as deployed), of which those that move a timer or may start a run are
        // stopped at, the others skipped.
        let next_timer = timers.next(&store);
        let timer_tick = next_timer.map(|d| d - SignedDuration::from_secs(60));
        let soonest = [
            script.get(next_line).map(|l| l.at),
            queue.next_due(),
            timer_tick,
        ]
        .into_iter()
        .flatten()
        .min();
        let schedule_tick = match (has_schedules, stepping) {
            (false, _) => None,
            (true, Stepping::EveryMinute) => Some(now.as_second().div_euclid(60) + 1),
            (true, Stepping::Jumping) => {
                let from = next_minute.max(ceil_minute(now));
                // The minute before a timer's: the scheduler moves it to the queue then.
                let timer_minute = next_timer.map(|d| d.as_second().div_euclid(60) - 1);
                let until = soonest.map_or(end, |s| s.min(end));
                let run = next_schedule_minute(&rt, journeys, from, until).await?;
                [timer_minute, run]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|m| m.max(from))
            }
        }
        .map(|m| Timestamp::from_second(m.saturating_mul(60)))
        .transpose()
        .map_err(|e| e.to_string())?;
        let Some(t) = [soonest, schedule_tick].into_iter().flatten().min() else {
            break;
        };
        if t > end {
            // A wake-up or a message past the horizon (a timer is due a minute after its
            // tick): the timeline stops short of it.
            let next_due = [
                queue.next_due(),
                timer_tick.map(|x| x + SignedDuration::from_secs(60)),
            ]
            .into_iter()
            .flatten()
            .min();
            cut = next_due.map(|next| cut_at(&store, end, next));
            break;
        }
        let t = t.max(now);
        // The minutes that start before `t` have nothing to run (`schedule_tick` is the first
        // that may): a later run must not catch them up.
        if has_schedules && stepping == Stepping::Jumping && ceil_minute(t) > next_minute {
            next_minute = ceil_minute(t);
            rt.skip_minutes_to(next_minute)
                .await
                .map_err(|e| e.to_string())?;
        }
        clock.set(t);
        tick_wanted = timer_tick.is_some_and(|x| x <= t) || schedule_tick.is_some_and(|x| x <= t);
    }

    // Which script line caused each record: facts at one instant are listed in the order
    // their events came (the script's), not in the order of their ids.
    let line_of: HashMap<&str, usize> = script
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.checked.as_ref().map(|e| (e.message_id.as_str(), i)))
        .collect();
    // A cause is an event's id, or one made from it (`<id>:merge`, `<id>:late-exit`,
    // `<id>:moved…`): the longest part of it up to a `:` that is a line's id. The facts of a
    // date wait the event moved (`:moved`) follow the event's own (what its transition did
    // moved them): (line, moved). The others come in the order they were written (a login's
    // merge before what the event then did as the user).
    let line_of_cause = |cause: &str| -> Option<(usize, bool)> {
        line_of.get(cause).map(|l| (*l, false)).or_else(|| {
            cause.rmatch_indices(':').find_map(|(i, _)| {
                let moved = cause[i..].starts_with(crate::enrollment::MOVED);
                line_of.get(&cause[..i]).map(|l| (*l, moved))
            })
        })
    };
    let cause_line = |sk: &str| -> Option<(usize, bool)> {
        if let Some(id) = sk.strip_prefix("D#").or_else(|| sk.strip_prefix("R#")) {
            return line_of_cause(id);
        }
        // `T#<enrollment>#<cause>`: ids may hold `#`, so each split is tried.
        let tail = sk.strip_prefix("T#")?;
        tail.match_indices('#')
            .find_map(|(i, _)| line_of_cause(&tail[i + 1..]))
    };
    // A date wait moved by what a wake-up's transition did (an `update` step after a wait)
    // follows that transition's own facts too: told by its cause, whatever caused that.
    let moved = |sk: &str| {
        sk.rmatch_indices(crate::enrollment::MOVED)
            .next()
            .is_some_and(|(i, _)| {
                let rest = &sk[i + crate::enrollment::MOVED.len()..];
                rest.is_empty() || rest.starts_with(':')
            })
    };
    type Order = Option<(Option<(usize, bool)>, bool, Option<u64>)>;
    let mut out: Vec<(Order, Output)> = Vec::new();
    for r in store.dump() {
        // Timeline records, and the refused entries kept with an event or a message.
        let facts = ["T#", "D#", "R#"].iter().any(|p| r.key.sk.starts_with(p));
        if !facts || !r.key.pk.starts_with("U#") {
            continue;
        }
        let user = r.key.pk.trim_start_matches("U#").to_string();
        let entries: Vec<Entry> = r
            .parse::<Option<Vec<Entry>>>()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let order = Some((
            cause_line(&r.key.sk),
            moved(&r.key.sk),
            store.first_written(&r.key),
        ));
        out.extend(entries.into_iter().map(|entry| {
            (
                order,
                Output::Timeline {
                    user_id: user.clone(),
                    entry,
                },
            )
        }));
    }
    out.extend(
        lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .map(|m| (None, Output::Message(m))),
    );
    // Stable, deterministic order: by time, then user, then facts before messages, then the
    // script line that caused them (facts of wake-ups first, as they were queued first), then
    // the order their records were first written in (of two wake-ups, the send before the
    // skip its cap caused); the entries of one record in their own order.
    out.sort_by(|(la, a), (lb, b)| {
        fn key(o: &Output) -> (Timestamp, &str, u8) {
            match o {
                Output::Timeline { user_id, .. } => (o.at(), user_id.as_str(), 0),
                Output::Message(m) => (o.at(), &*m.user_id, 1),
            }
        }
        key(a).cmp(&key(b)).then(la.cmp(lb))
    });
    Ok((
        Simulated {
            outputs: out.into_iter().map(|(_, o)| o).collect(),
            cut,
        },
        ticks,
    ))
}

/// The first minute starting at or after `t`.
fn ceil_minute(t: Timestamp) -> i64 {
    let s = t.as_second();
    s.div_euclid(60) + i64::from(s.rem_euclid(60) != 0 || t.subsec_nanosecond() != 0)
}

/// The first minute starting at or after `start` whose local time in `tz` matches `cron`
/// (seconds ignored, as the scheduler reads it: a local time passed twice matches twice),
/// looking at the offsets `tz` has until `until`. Each stretch of one offset is searched at
/// that offset, from its start.
fn first_match(cron: &Cron, tz: &TimeZone, start: Timestamp, until: Timestamp) -> Option<i64> {
    let mut from = start;
    let mut offset = tz.to_offset(start);
    let mut changes = tz.following(start);
    loop {
        let change = changes.next();
        let to = change.as_ref().map(|c| c.timestamp());
        // From the minute before: at an offset with seconds (a zone's old local mean time)
        // a local minute's first instant may lie within it, and its minute match here.
        let mut after = from - SignedDuration::from_secs(60);
        loop {
            let Some(at) = cron.next_after(after, &TimeZone::fixed(offset)) else {
                // `Cron::next_after` looks a year ahead (a cron of 29 February may match
                // later): a minute past that is looked at again then (the scheduler runs,
                // and starts nothing).
                let year = after + SignedDuration::from_hours(365 * 24);
                if to.is_none_or(|to| to > year) {
                    return Some(ceil_minute(year));
                }
                break;
            };
            let minute = ceil_minute(at);
            let minute_at = Timestamp::from_second(minute.saturating_mul(60)).ok()?;
            if to.is_some_and(|to| minute_at >= to) {
                break;
            }
            if minute_at >= from {
                return Some(minute);
            }
            after = at;
        }
        let change = change?;
        if change.timestamp() > until {
            return None;
        }
        from = change.timestamp();
        offset = change.offset();
    }
}

/// The first minute from `from` on (by its number since the epoch) in which the scheduler
/// may start a run of one of `journeys`' schedule triggers, looking no further than `until`.
/// A minute too many is harmless (the scheduler runs, and starts nothing); one too few would
/// skip a run. The scheduler starts a run when the cron matches the minute's local time in
/// the schedule's zone, or (`timezone: user`) in some user's zone, the journey's own or UTC,
/// every zone while the zones in use are not all known (`Runtime::start_schedules`); each
/// zone is searched stretch by stretch of the offset it has ([`first_match`]).
async fn next_schedule_minute(
    rt: &Runtime,
    journeys: &[Journey],
    from: i64,
    until: Timestamp,
) -> Result<Option<i64>, String> {
    let start = Timestamp::from_second(from.saturating_mul(60)).map_err(|e| e.to_string())?;
    if until < start {
        return Ok(None);
    }
    // Read when a `timezone: user` schedule needs them (`None`: not all known yet).
    let mut in_use: Option<Option<Vec<TimeZone>>> = None;
    let mut first: Option<i64> = None;
    for j in journeys {
        let Some(TriggerKind::Schedule(s)) = j.trigger.kind() else {
            continue;
        };
        let zones: Vec<TimeZone> = if s.timezone == "user" {
            if in_use.is_none() {
                let names = rt.zones_in_use().await.map_err(|e| e.to_string())?;
                in_use = Some(
                    names.map(|names| names.iter().filter_map(|n| TimeZone::get(n).ok()).collect()),
                );
            }
            let users = match in_use.as_ref().and_then(Option::as_ref) {
                Some(zones) => zones.as_slice(),
                None => crate::zones::every_zone(),
            };
            let own = j.timezone.as_deref().and_then(|n| TimeZone::get(n).ok());
            users
                .iter()
                .cloned()
                .chain(own)
                .chain([TimeZone::UTC])
                .collect()
        } else {
            TimeZone::get(&s.timezone).into_iter().collect()
        };
        for tz in &zones {
            if let Some(minute) = first_match(&s.cron, tz, start, until) {
                first = Some(first.map_or(minute, |f| f.min(minute)));
            }
        }
    }
    Ok(first)
}

/// How a run stopped at `horizon` with messages still due (the first at `next_message`): the
/// enrollments still waiting past it, and when the first of their waits ends (a wait rides on
/// hops of the queue, so its next message may be due before it ends).
fn cut_at(store: &MemoryStore, horizon: Timestamp, next_message: Timestamp) -> Cut {
    let ends: Vec<Timestamp> = store
        .dump()
        .iter()
        .filter(|r| r.key.pk.starts_with("U#") && r.key.sk.starts_with("E#"))
        .filter_map(|r| r.parse_shared::<Enrollment>().ok())
        .filter(|e| e.status == Status::Active)
        .filter_map(|e| e.pending.as_ref().map(|p| p.at))
        .filter(|at| *at > horizon)
        .collect();
    Cut {
        horizon,
        waiting: ends.len(),
        next_due: ends.iter().copied().min().unwrap_or(next_message),
    }
}

/// Finds the earliest timer in the store. Timers are kept in partitions named by their due
/// minute, `T#<minute>#<shard>`; while every minute has the same number of digits (8, from
/// 1989 to 2160), key order is time order and the earliest timer is in the first minute's
/// partitions, at most one a shard. Outside those years, every timer partition is read.
struct Timers {
    partitions: usize,
}

impl Timers {
    fn new(shards: u32, start: Timestamp, end: Timestamp) -> Self {
        let minute = |t: Timestamp| t.as_second().div_euclid(60);
        // The longest wait is a year; a week more for quiet hours and time zones.
        let last = end + SignedDuration::from_hours(24 * 373);
        let same_width = minute(start) >= 10_000_000 && minute(last) < 100_000_000;
        Timers {
            partitions: if same_width {
                shards.max(1) as usize
            } else {
                usize::MAX
            },
        }
    }

    fn next(&self, store: &MemoryStore) -> Option<Timestamp> {
        store
            .first_partitions("T#", self.partitions)
            .iter()
            .filter_map(|r| r.parse::<Message>().ok().and_then(|m| m.due()))
            .min()
    }
}

/// Convenience for tests: the current store of a fresh simulation is not exposed, so callers
/// compare outputs. Returns only the messages.
pub fn messages(out: &[Output]) -> Vec<&OutboxLine> {
    out.iter()
        .filter_map(|o| match o {
            Output::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[allow(dead_code)]
fn _assert_store_is_object_safe(_: &dyn Store) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, Key, Record, Store};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_script_is_checked_whole_before_it_runs_and_each_error_names_its_line() {
        let script = [
            r#"{"at":"2027-03-13T12:00:00Z","type":"identify","userId":"ny","traits":{"timezone":"Mars/Olympus"}}"#,
            "",
            "# a comment",
            r#"{"at":"2027-03-14T00:00:00Z","type":"track","userId":"ny"}"#,
            r#"{"at":"2027-03-14T00:00:00Z","type":"groups","userId":"ny","event":"x"}"#,
            r#"{"at":"2027-03-14T00:00:00Z","userId":"ok","event":"x"}"#,
            r#"{"at":"2027-03-14"}"#,
            // Stamped a year after it is received: the API would refuse it.
            r#"{"at":"2027-03-14T00:00:00Z","userId":"ok","event":"x","timestamp":"2028-03-14T00:00:00Z"}"#,
            // No UTC offset is 25 hours (jiff reads it).
            r#"{"at":"2027-03-14T00:00:00+25:00","userId":"ok","event":"x"}"#,
            r#"{"at":"2027-03-14T00:00:00-23:59","userId":"ok","event":"x"}"#,
        ]
        .join("\n");
        let e = parse_script(&script).expect_err("bad lines");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(
            lines[5].starts_with(
                "line 9: at: \"2027-03-14T00:00:00+25:00\" has a UTC offset of 25 hours, and one is at most 23:59: write the offset of the place meant, like \"+01:00\""
            ),
            "{e}"
        );
        assert!(
            lines[4].starts_with("line 8: timestamp: is 366 days ahead"),
            "{e}"
        );
        assert!(lines[0].starts_with("line 1: traits.timezone: "), "{e}");
        assert!(lines[1].starts_with("line 4: event: is required"), "{e}");
        assert!(lines[2].starts_with("line 5: type: `groups`"), "{e}");
        assert!(
            lines[3].starts_with("line 7, column 18: failed to find time"),
            "{e}"
        );
        // Good lines keep their place for later errors, and are sorted by time.
        let good = parse_script(&script.lines().skip(5).take(1).collect::<String>())
            .expect("one good line");
        assert_eq!(good.len(), 1);
        let many = vec![r#"{"at":"2027-03-14T00:00:00Z","userId":"x"}"#; 25].join("\n");
        let e = parse_script(&many).expect_err("bad lines");
        assert_eq!(e.lines().count(), MOST_LISTED + 1, "{e}");
        assert!(e.ends_with("and 5 more bad line(s)"), "{e}");
    }

    /// A near miss of a field an event has is refused with the field meant; fields Waymark does
    /// not read but Segment's libraries send pass.
    #[test]
    fn a_misspelt_field_is_told_and_other_fields_pass() {
        let e = parse_script(
            r#"{"at":"2027-03-14T00:00:00Z","userId":"x","event":"viewed","propertes":{"price":3}}"#,
        )
        .expect_err("misspelt");
        assert_eq!(
            e,
            "line 1: propertes: is not a field of an event: did you mean `properties`?"
        );
        let e = parse_script(r#"{"at":"2027-03-14T00:00:00Z","user_id":"x","event":"viewed"}"#)
            .expect_err("misspelt");
        assert!(e.contains("did you mean `userId`?"), "{e}");
        let sent = r#"{"at":"2027-03-14T00:00:00Z","userId":"x","event":"viewed","_metadata":{"nodeVersion":"20"},"writeKey":"k","integrations":{}}"#;
        assert_eq!(parse_script(sent).expect("Segment's own fields").len(), 1);
    }

    #[test]
    fn a_script_line_that_is_not_json_says_where_in_the_line() {
        let e =
            parse_script("\n{\"at\": \"2027-03-14T00:00:00Z\", \"userId\" 1}").expect_err("bad");
        assert!(e.starts_with("line 2, column 41: expected `:`"), "{e}");
        assert!(!e.contains("at line 1"), "{e}");
    }

    /// A script saved with a byte order mark reads as the same script: its first line is not
    /// "expected value". One inside a line is no mark of the file's, and stays an error.
    #[test]
    fn a_script_saved_with_a_byte_order_mark_reads_as_without() {
        let script = "{\"at\":\"2027-03-14T00:00:00Z\",\"userId\":\"kim\",\"event\":\"a\"}\n{\"at\":\"2027-03-14T00:01:00Z\",\"userId\":\"kim\",\"event\":\"b\"}\n";
        let marked = parse_script(&format!("\u{FEFF}{script}")).expect("a marked script");
        let events = |lines: &[ScriptLine]| -> Vec<(usize, Option<String>)> {
            lines
                .iter()
                .map(|l| (l.line, l.checked.as_ref().and_then(|e| e.event.clone())))
                .collect()
        };
        assert_eq!(
            events(&marked),
            events(&parse_script(script).expect("the script"))
        );
        let e = parse_script(&format!("{script}\u{FEFF}{script}")).expect_err("a mark inside");
        assert!(e.starts_with("line 3, column 1: "), "{e}");
    }

    #[test]
    fn identical_lines_are_events_of_their_own_and_a_message_id_is_one_event() {
        let line = r#"{"at":"2027-03-14T00:00:00Z","userId":"kim","event":"episode_watched"}"#;
        let ids = |script: &str| -> Vec<String> {
            parse_script(script)
                .expect("good")
                .iter()
                .filter_map(|l| l.checked.as_ref().map(|e| e.message_id.clone()))
                .collect()
        };
        let three = ids(&[line; 3].join("\n"));
        assert_eq!(three.len(), 3);
        assert!(
            three[0] != three[1] && three[1] != three[2] && three[0] != three[2],
            "{three:?}"
        );
        // The same script again gives the same ids: a simulation repeats exactly.
        assert_eq!(three, ids(&[line; 3].join("\n")));
        let with_id =
            r#"{"at":"2027-03-14T00:00:00Z","userId":"kim","event":"e","messageId":"m-1"}"#;
        assert_eq!(ids(&[with_id; 2].join("\n")), ["m-1", "m-1"]);
    }

    /// A line that reuses an earlier line's `messageId` for another event of the same user
    /// would be dropped as its retry: an error, like other bad lines. Another user's, or the
    /// same event again, passes.
    #[test]
    fn a_message_id_reused_for_another_event_is_a_bad_line() {
        let script = [
            r#"{"at":"2026-12-01T09:00:00Z","userId":"nia","event":"balance_updated","messageId":"txn-881"}"#,
            r#"{"at":"2026-12-01T09:00:01Z","userId":"nia","event":"balance_updated","messageId":"txn-881"}"#,
            r#"{"at":"2026-12-01T09:00:01Z","userId":"ola","event":"promo_eligible","messageId":"txn-881"}"#,
            r#"{"at":"2026-12-01T09:00:02Z","userId":"nia","event":"promo_eligible","messageId":"txn-881"}"#,
            r#"{"at":"2026-12-01T09:00:03Z","type":"identify","userId":"nia","traits":{"plan":"x"},"messageId":"txn-881"}"#,
        ]
        .join("\n");
        let e = parse_script(&script).expect_err("a reused id");
        assert_eq!(
            e,
            "line 4: messageId `txn-881` is line 1's, a track `balance_updated`: this track `promo_eligible` would be taken for its retry and dropped; give each event its own messageId (a repeated one is for the same event sent again)\n\
             line 5: messageId `txn-881` is line 1's, a track `balance_updated`: this identify would be taken for its retry and dropped; give each event its own messageId (a repeated one is for the same event sent again)"
        );
    }

    /// A line copied from another and edited, its `messageId` kept: the same kind and event
    /// with other properties or another `timestamp` is another event, which the engine would
    /// drop as the first's retry, so it is a bad line naming both lines and what differs. A
    /// retry (the same fields, sent again at another `at` with another `sentAt`) passes.
    #[test]
    fn a_message_id_reused_for_the_same_event_with_another_payload_is_a_bad_line() {
        let script = [
            r#"{"at":"2026-12-01T09:00:00Z","userId":"ann","event":"appointment_booked","messageId":"b-1","timestamp":"2026-12-01T08:59:00Z","properties":{"starts_at":"2026-12-03T10:00:00Z"}}"#,
            r#"{"at":"2026-12-01T09:00:05Z","userId":"ann","event":"appointment_booked","messageId":"b-1","timestamp":"2026-12-01T08:59:00Z","sentAt":"2026-12-01T09:00:04Z","properties":{"starts_at":"2026-12-03T10:00:00Z"}}"#,
            r#"{"at":"2026-12-02T09:00:00Z","userId":"ann","event":"appointment_booked","messageId":"b-1","timestamp":"2026-12-01T08:59:00Z","properties":{"starts_at":"2026-12-09T10:00:00Z"}}"#,
            r#"{"at":"2026-12-02T10:00:00Z","userId":"ann","event":"appointment_booked","messageId":"b-1","timestamp":"2026-12-02T10:00:00Z","properties":{"starts_at":"2026-12-10T10:00:00Z"}}"#,
        ]
        .join("\n");
        let e = parse_script(&script).expect_err("a reused id");
        assert_eq!(
            e,
            "line 3: messageId `b-1` is line 1's, a track `appointment_booked` whose `properties` differs: this one would be taken for its retry and dropped; give each event its own messageId (a repeated one is for the same event sent again)\n\
             line 4: messageId `b-1` is line 1's, a track `appointment_booked` whose `properties` and `timestamp` differ: this one would be taken for its retry and dropped; give each event its own messageId (a repeated one is for the same event sent again)"
        );
        let retried = script.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_script(&retried).expect("a retry").len(), 2);
    }

    #[test]
    fn a_lines_time_is_read_as_the_api_reads_an_event_received_at_its_at() {
        let when = |fields: &str| -> Timestamp {
            let line = format!(
                r#"{{"at":"2026-12-05T10:00:00Z","userId":"a","event":"order_completed"{fields}}}"#
            );
            let parsed = parse_script(&line).expect("good");
            let e = parsed[0].checked.as_ref().expect("checked");
            // The same body, received over the API at the line's `at`.
            let body = serde_json::to_vec(&parsed[0].payload).expect("json");
            let api = event::parse_call(
                event::Call::Track,
                &body,
                at("2026-12-05T10:00:00Z"),
                &Limits::default(),
            )
            .expect("the API takes it");
            assert_eq!(e.timestamp, api.timestamp, "{fields}");
            e.timestamp
        };
        assert_eq!(when(""), at("2026-12-05T10:00:00Z"));
        assert_eq!(
            when(r#","timestamp":"2026-12-05T09:00:00Z""#),
            at("2026-12-05T09:00:00Z")
        );
        // Segment's `originalTimestamp` stands for a missing `timestamp`.
        assert_eq!(
            when(r#","originalTimestamp":"2026-12-05T09:00:00Z""#),
            at("2026-12-05T09:00:00Z")
        );
        // `sentAt` corrects a timestamp the device's clock made, and nothing without one.
        assert_eq!(
            when(r#","sentAt":"2026-12-06T10:00:00Z""#),
            at("2026-12-05T10:00:00Z")
        );
        assert_eq!(
            when(r#","timestamp":"2026-12-06T09:00:00Z","sentAt":"2026-12-06T10:00:00Z""#),
            at("2026-12-05T09:00:00Z")
        );
    }

    async fn put_timer(store: &MemoryStore, due: Timestamp, shard: u32, user: &str) {
        let m = Message::Wake {
            user_id: user.into(),
            journey: "j".into(),
            enrollment: format!("j:{user}:1").into(),
            seq: 1,
            at: due,
        };
        let minute = due.as_second().div_euclid(60);
        let key = Key::new(format!("T#{minute}#{shard}"), m.id());
        let record = Record::new(key, 1, &m).expect("record");
        store.put(&record, Expect::Absent).await.expect("put");
    }

    #[tokio::test]
    async fn the_delay_queue_hands_out_by_due_time_then_arrival() {
        let clock = Arc::new(ManualClock::new(at("2026-12-01T12:00:00Z")));
        let q = DelayQueue::new(clock.clone());
        let stop = |user: &str| Message::Stop {
            user_id: user.into(),
            journey: "j".into(),
            enrollment: format!("j:{user}:1"),
        };
        let out = |user: &str, delay_secs: u32| Outbound {
            message: stop(user),
            delay_secs,
        };
        let users = |ms: Vec<Message>| -> Vec<String> {
            ms.iter().map(|m| m.user_id().to_string()).collect()
        };
        q.send(
            QueueName::Events,
            &[
                out("a", 60),
                out("b", 60),
                out("c", 0),
                out("d", 60),
                out("e", 30),
            ],
        )
        .await
        .expect("send");
        clock.set(at("2026-12-01T12:00:30Z"));
        q.send(QueueName::Events, &[out("f", 0), out("g", 30)])
            .await
            .expect("send");
        assert_eq!(q.len(), 7);
        assert_eq!(q.next_due(), Some(at("2026-12-01T12:00:00Z")));
        assert_eq!(users(q.take_due(at("2026-12-01T12:00:29Z"))), ["c"]);
        assert_eq!(
            users(q.take_due(at("2026-12-01T12:01:00Z"))),
            ["e", "f", "a", "b", "d", "g"]
        );
        assert!(q.is_empty());
        assert_eq!(q.next_due(), None);
    }

    #[tokio::test]
    async fn the_next_timer_is_the_earliest_whatever_the_shards_and_key_order() {
        let store = MemoryStore::new();
        // Users' records sort before and after the timer partitions.
        let profile = Record::new(Key::new("U#a", "P"), 1, &"a").expect("record");
        store.put(&profile, Expect::Absent).await.expect("put");
        put_timer(&store, at("2026-12-01T14:30:40Z"), 3, "late").await;
        put_timer(&store, at("2026-12-01T12:05:10Z"), 11, "b").await;
        put_timer(&store, at("2026-12-01T12:05:02Z"), 2, "c").await;
        put_timer(&store, at("2026-12-02T09:00:00Z"), 0, "d").await;
        let timers = Timers::new(16, at("2026-12-01T10:00:00Z"), at("2026-12-02T10:00:00Z"));
        assert_eq!(timers.next(&store), Some(at("2026-12-01T12:05:02Z")));
        // Minutes of another width (before 1989): every timer partition is read.
        let old = MemoryStore::new();
        put_timer(&old, at("1988-12-31T23:00:00Z"), 0, "a").await;
        // More later minutes than shards, all sorting before the earlier minute's key.
        for i in 0..20 {
            let due = at("1989-01-06T00:00:00Z") + SignedDuration::from_mins(i);
            put_timer(&old, due, 0, &format!("u{i}")).await;
        }
        let timers = Timers::new(16, at("1988-12-31T00:00:00Z"), at("1989-01-07T00:00:00Z"));
        assert_eq!(timers.next(&old), Some(at("1988-12-31T23:00:00Z")));
        assert_eq!(
            Timers::new(16, at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z"))
                .next(&MemoryStore::new()),
            None
        );
    }
}

#[cfg(test)]
mod stepping {
    use super::*;

    fn journey(text: &str) -> Journey {
        crate::dsl::parse("j.yaml", text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Schedules in users' zones (one, in Kathmandu at +05:45, known only part way), in
    /// Paris at 02:30 on October's Sundays (passed twice the night the clocks go back) and on
    /// 29 February, a wait long enough to be a timer, and an inactivity check.
    fn journeys(wait: &str) -> Vec<Journey> {
        vec![
            journey(
                "id: morning\nname: M\ntrigger:\n  schedule: {cron: \"0 9 * * *\", timezone: user, where: \"profile.plan == 'pro'\"}\nreentry: after_exit\ntimezone: Europe/London\nsteps:\n  - id: hi\n    send:\n      sms: {body: \"Morning {{ profile.name }}\"}\n",
            ),
            journey(
                "id: night\nname: N\ntrigger:\n  schedule: {cron: \"30 2 * 10 sun\", timezone: Europe/Paris}\nreentry: after_exit\nsteps:\n  - id: hi\n    send:\n      sms: {body: \"Night\"}\n",
            ),
            journey(
                "id: leap\nname: L\ntrigger:\n  schedule: {cron: \"15 12 29 2 *\"}\nreentry: after_exit\nsteps:\n  - id: hi\n    send:\n      sms: {body: \"Leap\"}\n",
            ),
            journey(&format!(
                "id: later\nname: Y\ntrigger: {{event: signed_up}}\nsteps:\n  - id: wait\n    wait: {wait}\n  - id: hi\n    send:\n      sms: {{body: \"Later\"}}\n"
            )),
            journey(
                "id: away\nname: A\ntrigger:\n  inactive: {events: [app_opened], for: 6d}\nsteps:\n  - id: hi\n    send:\n      sms: {body: \"Away\"}\n",
            ),
        ]
    }

    fn script(lines: &[String]) -> Vec<ScriptLine> {
        parse_script(&lines.join("\n")).expect("script")
    }

    /// Ann, Kai and Bob from `day` at `time`; Kai signs up and opens the app.
    fn users(day: &str, time: &str) -> Vec<String> {
        vec![
            format!(
                r#"{{"at":"{day}T{time}Z","type":"identify","userId":"ann","traits":{{"phone":"+33600000001","name":"Ann","timezone":"Europe/Paris","plan":"pro"}}}}"#
            ),
            format!(
                r#"{{"at":"{day}T{time}Z","type":"identify","userId":"kai","traits":{{"phone":"+64210000002","name":"Kai","timezone":"Pacific/Auckland","plan":"pro"}}}}"#
            ),
            format!(r#"{{"at":"{day}T{time}Z","userId":"kai","event":"signed_up"}}"#),
            format!(r#"{{"at":"{day}T{time}Z","userId":"kai","event":"app_opened"}}"#),
            format!(
                r#"{{"at":"{day}T{time}Z","type":"identify","userId":"bob","traits":{{"phone":"+14150000003","name":"Bob","plan":"pro"}}}}"#
            ),
        ]
    }

    fn lines(s: &Simulated) -> Vec<String> {
        s.outputs
            .iter()
            .map(|o| serde_json::to_string(o).expect("json"))
            .collect()
    }

    /// When each message with `body` went out.
    fn sent(s: &Simulated, body: &str) -> Vec<String> {
        messages(&s.outputs)
            .iter()
            .filter(|m| serde_json::to_string(m).expect("json").contains(body))
            .map(|m| m.at.to_string())
            .collect()
    }

    /// Jumping over the minutes with nothing to do prints what stepping through each prints
    /// (the scheduler running at each), with the scheduler running a few times a day. Two
    /// weeks, whose events are days apart: a zone joins in the middle, Paris's clocks go
    /// back, a wait and an inactivity check end.
    #[tokio::test]
    async fn a_gap_jumped_prints_what_stepping_each_minute_prints() {
        let journeys = journeys("12d");
        let mut lines_of = users("2027-10-24", "08:59:30");
        lines_of.extend([
            r#"{"at":"2027-10-28T03:14:00Z","type":"identify","userId":"raj","traits":{"phone":"+97798000004","name":"Raj","timezone":"Asia/Kathmandu","plan":"pro"}}"#.to_string(),
            r#"{"at":"2027-10-28T03:14:00Z","userId":"raj","event":"app_opened"}"#.to_string(),
            r#"{"at":"2027-11-02T10:00:00Z","type":"identify","userId":"ann","traits":{"plan":"free"}}"#.to_string(),
            r#"{"at":"2027-11-06T12:00:00Z","userId":"kai","event":"app_opened"}"#.to_string(),
        ]);
        let script = script(&lines_of);
        let horizon = SignedDuration::from_hours(24);
        let run = |stepping| run_stepping(&journeys, &script, Config::default(), horizon, stepping);
        let (jumped, ticks) = run(Stepping::Jumping).await.expect("jumped");
        let (stepped, minutes) = run(Stepping::EveryMinute).await.expect("stepped");
        assert_eq!(lines(&jumped), lines(&stepped));
        assert_eq!(jumped.cut, stepped.cut);
        // Paris's 02:30 twice on 31 October, and the run once, at its first.
        assert_eq!(
            sent(&jumped, "Night"),
            ["2027-10-31T00:30:00Z"].repeat(4),
            "{:#?}",
            lines(&jumped)
        );
        assert_eq!(sent(&jumped, "Later"), ["2027-11-05T08:59:30Z"]);
        // From the morning he came (09:00 in Kathmandu, a minute after), to the horizon.
        assert_eq!(sent(&jumped, "Morning Raj").len(), 11);
        assert_eq!(
            sent(&jumped, "Away"),
            ["2027-10-30T08:59:30Z", "2027-11-03T03:14:00Z"]
        );
        assert!(minutes > 20_000, "{minutes}");
        assert!(ticks < 200, "{ticks} scheduler runs");
    }

    /// A year between two events, and a wait of a year: the 29 February a cron names (beyond
    /// the year `Cron::next_after` looks ahead), the wait's end and the inactivity check's,
    /// each at its time.
    #[tokio::test]
    async fn a_year_between_events_is_jumped() {
        // No run every morning, each a scan of every profile: a year of them is slow.
        let mut journeys = journeys("365d");
        journeys.retain(|j| j.id.as_str() != "morning");
        let mut lines_of = users("2027-02-27", "08:59:30");
        lines_of.push(
            r#"{"at":"2028-03-05T12:00:00Z","userId":"kai","event":"app_opened"}"#.to_string(),
        );
        let script = script(&lines_of);
        let (run, ticks) = run_stepping(
            &journeys,
            &script,
            Config::default(),
            SignedDuration::from_hours(24),
            Stepping::Jumping,
        )
        .await
        .expect("run");
        assert_eq!(sent(&run, "Leap"), ["2028-02-29T12:15:00Z"].repeat(3));
        assert_eq!(sent(&run, "Later"), ["2028-02-27T08:59:30Z"]);
        assert_eq!(sent(&run, "Away"), ["2027-03-05T08:59:30Z"]);
        // Its Sundays of October, 29 February, the wait and the check: not one a minute.
        assert!(ticks < 100, "{ticks} scheduler runs");
    }
}
