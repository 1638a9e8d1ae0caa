//! The journey model: what a journey file says, as Rust types (the JSON Schema is generated from
//! these, so the schema and the parser cannot drift). Parsing with positions lives in `dsl`;
//! this module never performs I/O.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, ValuePath};
use crate::cron::Cron;
use crate::duration::{DateOffset, Duration};

/// How many enrollments of one journey with an `enrollment_key` a user may be in at once: a
/// trigger past it enters her in nothing, so that her records stay few.
pub const MAX_KEYED: usize = 20;

/// One journey, as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("if" = {"properties": {"trigger": {"required": ["schedule"]}}, "required": ["trigger"]}, "then" = {"required": ["reentry"]}))]
pub struct Journey {
    /// Stable identifier: lowercase letters, digits, `_` and `-`.
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,64}$"))]
    pub id: String,
    /// Human-readable name.
    #[schemars(regex(pattern = r"\S"))]
    pub name: String,
    /// What enrolls a user.
    pub trigger: Trigger,
    /// Whether a user may enter again: `never` (the default), `after_exit`, or `{after: 7d}` since
    /// the last entry. A user is never enrolled twice at the same time (with an
    /// `enrollment_key`: twice for the same value). A `schedule` journey must name it
    /// (`after_exit` to enter users at every run).
    #[serde(default)]
    pub reentry: Reentry,
    /// With an `event` trigger: a path of the trigger event (`event.booking_id`) whose value
    /// keys her enrollment, so that she is in the journey once per value at a time (a round
    /// trip's two bookings, each reminded), at most 20 at once ([`MAX_KEYED`]); `reentry` then
    /// applies to each value apart. A trigger without a value there (missing, null, empty, not
    /// a string or number) enters her in nothing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "enrollment_key"
    )]
    #[schemars(with = "Option<ValuePath>")]
    pub enrollment_key: Option<ValuePath>,
    /// Events that end the enrollment at once, whatever step it is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_when: Vec<EventMatch>,
    /// An event that counts as a conversion when it happens within a window after entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
    /// Sends that fall inside this local-time window are deferred to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// IANA time zone used when the profile has no `timezone` trait (else a schedule trigger's
    /// named zone, else UTC). Not a schedule's: a schedule without its own `timezone` runs in
    /// UTC, whatever this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Transactional journeys ignore frequency caps and quiet hours.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactional: bool,
    /// The subscription topic its messages belong to, declared in `waymark.yaml`'s `topics`
    /// (`newsletter`): a user unsubscribed from it (or not opted in to an `opt_in` topic) gets
    /// none of them, whatever her channels' choices, and its email's unsubscribe link
    /// unsubscribes her from this topic alone. Not in a `transactional` journey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,64}$"))]
    pub topic: Option<String>,
    /// `active` (the default) enrolls users; `closed` enrolls no one new while enrolled users
    /// finish; `stopped` enrolls no one and ends every enrollment at once (within the
    /// scheduler's next minute), sending nothing more (a kill switch). Publishing the change
    /// applies it to every version.
    #[serde(default, skip_serializing_if = "JourneyStatus::is_active")]
    pub status: JourneyStatus,
    /// The steps, run in file order unless a step names where to go next.
    #[schemars(length(min = 1, max = MAX_STEPS))]
    pub steps: Vec<Step>,
}

/// What enrolls a user. Exactly one of `event`, `trait_changed`, `repeated`, `inactive`,
/// `schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_trigger)]
pub struct Trigger {
    /// Enter when the user does this event, or any of a list of events
    /// (`[cart_abandoned, checkout_abandoned]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventNames>,
    /// With `event` or `trait_changed`: enter only when this condition holds on `event.*` (the
    /// trigger event; `trigger.*` here is that same event) and `profile.*` (`waited.*` is
    /// empty: nothing was waited for yet).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// Enter when an identify changes this profile trait: sets it for the first time, gives it
    /// another value, or removes it (`null`). The trigger event is the identify, its properties
    /// `{trait, from, to}` (`from` missing when it was not set, `to` when it was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"))]
    pub trait_changed: Option<String>,
    /// Enter when the user has done an event at least `times` times within a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<Repeated>,
    /// Enter when the user has done none of a set of events for a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive: Option<Inactive>,
    /// Enter every user matching a condition on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// The most steps a journey holds: more is refused by validation, before the steps' graph is
/// walked (a journey's steps are read where a request's stack is small).
pub const MAX_STEPS: usize = 1_000;

/// How many steps one transition may take before it must wait: validation refuses a journey
/// whose steps could run longer without a wait, and the engine ends an enrollment that does
/// (a journey that slipped past it) with a reason that says so.
pub const MAX_STEPS_PER_TRANSITION: usize = 256;

/// The most event names one trigger lists.
pub const MAX_TRIGGER_EVENTS: usize = 20;

/// An event trigger's events: one name (`event: cart_abandoned`) or several
/// (`event: [cart_abandoned, checkout_abandoned]`), any of which enters. One is written back as
/// a name, so a journey published before lists were taken keeps its digest (no new version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNames(Vec<String>);

impl EventNames {
    pub fn one(name: impl Into<String>) -> Self {
        Self(vec![name.into()])
    }

    /// The names, in the order written.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether `event` is one of them.
    pub fn contains(&self, event: &str) -> bool {
        self.0.iter().any(|n| n == event)
    }

    /// The names as a reader writes them: `a`, or `a or b`.
    pub fn describe(&self) -> String {
        self.0.join(" or ")
    }
}

impl Serialize for EventNames {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for EventNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = EventNames;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event name, or a list of event names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventNames, E> {
                Ok(EventNames::one(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EventNames, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(EventNames(names))
            }
        }
        d.deserialize_any(Names)
    }
}

impl JsonSchema for EventNames {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventNames".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An event name, or a list of event names any of which enters.",
            "anyOf": [
                {"type": "string", "pattern": "\\S", "maxLength": 200},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": "\\S", "maxLength": 200},
                    "minItems": 1,
                    "maxItems": MAX_TRIGGER_EVENTS,
                    "uniqueItems": true
                }
            ],
            "examples": ["cart_abandoned", ["cart_abandoned", "checkout_abandoned"]]
        })
    }
}

/// The kind of trigger, once validated.
#[derive(Debug, Clone, Copy)]
pub enum TriggerKind<'a> {
    Event {
        events: &'a EventNames,
        condition: Option<&'a Condition>,
    },
    TraitChanged {
        name: &'a str,
        condition: Option<&'a Condition>,
    },
    Repeated(&'a Repeated),
    Inactive(&'a Inactive),
    Schedule(&'a Schedule),
}

impl Trigger {
    /// The trigger's kind; `None` when the file named none or several (validation reports it).
    pub fn kind(&self) -> Option<TriggerKind<'_>> {
        let set = usize::from(self.event.is_some())
            + usize::from(self.trait_changed.is_some())
            + usize::from(self.repeated.is_some())
            + usize::from(self.inactive.is_some())
            + usize::from(self.schedule.is_some());
        if set != 1 {
            return None;
        }
        // Called for every journey on every event: no allocation.
        if let Some(name) = &self.trait_changed {
            return Some(TriggerKind::TraitChanged {
                name,
                condition: self.condition.as_ref(),
            });
        }
        match (&self.event, &self.repeated, &self.inactive, &self.schedule) {
            (Some(events), ..) => Some(TriggerKind::Event {
                events,
                condition: self.condition.as_ref(),
            }),
            (_, Some(r), ..) => Some(TriggerKind::Repeated(r)),
            (_, _, Some(i), _) => Some(TriggerKind::Inactive(i)),
            (.., Some(s)) => Some(TriggerKind::Schedule(s)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeated {
    #[schemars(regex(pattern = r"\S"), length(max = 200))]
    pub event: String,
    /// How many times (2 to 32: a profile keeps the latest 32 occurrences of an event).
    #[schemars(range(min = 2, max = 32))]
    pub times: u32,
    /// Within this window, counted back from the latest occurrence.
    pub within: Duration,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inactive {
    /// Any of these events re-arms the user's inactivity timer.
    #[schemars(length(min = 1), inner(regex(pattern = r"\S"), length(max = 200)))]
    pub events: Vec<String>,
    /// How long without any of them.
    #[serde(rename = "for")]
    pub duration: Duration,
    /// Only users whose profile matches when the time has passed (`event.inactive_since` is
    /// the one event field).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five-field cron expression, e.g. `"0 10 * * mon"`.
    pub cron: Cron,
    /// `user` evaluates the cron in each user's time zone; an IANA name (default `UTC`, whatever
    /// the journey's `timezone`) in that zone.
    #[serde(default = "default_utc")]
    pub timezone: String,
    /// Only users whose profile matches.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Schedule {
    /// Whether its `where` reads the date or the clock (`anniversary`, `days_until`,
    /// `days_since`, `now()`, `ago()`): each run judges it at its own minute.
    pub fn reads_the_clock(&self) -> bool {
        self.condition.as_ref().is_some_and(|c| c.reads_the_clock())
    }
}

/// An `enrollment_key` as written: a path, with advice of its own when it is none (a
/// [`ValuePath`]'s speaks of a `wait_until`'s `date`, and offers `profile.*`, which a key is not).
fn enrollment_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ValuePath>, D::Error> {
    use serde::de::Error;
    let written = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    ValuePath::parse(&written)
        .map(Some)
        .map_err(|_| D::Error::custom(key_not_a_path(&written)))
}

/// Why `written` is not an `enrollment_key`, and what to write instead.
fn key_not_a_path(written: &str) -> String {
    const TAKES: &str =
        "`enrollment_key` takes a path of the trigger event's properties, like event.booking_id";
    let bare = written
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .trim();
    let word = !bare.is_empty()
        && !bare.starts_with(|c: char| c.is_ascii_digit())
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if word {
        format!("`{bare}` is not a path: {TAKES}; write `enrollment_key: event.{bare}`")
    } else if bare.is_empty() {
        format!("empty: {TAKES}")
    } else {
        format!("`{bare}` is not a path: {TAKES}")
    }
}

fn default_utc() -> String {
    "UTC".to_string()
}

/// Whether a journey enrolls users, and whether its enrolled users go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JourneyStatus {
    /// Enrolls users and runs them through.
    #[default]
    Active,
    /// Enrolls no one new; users already enrolled finish.
    Closed,
    /// Enrolls no one; every enrolled user exits at once, and nothing more is sent.
    Stopped,
}

impl JourneyStatus {
    pub fn is_active(&self) -> bool {
        *self == JourneyStatus::Active
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            JourneyStatus::Active => "active",
            JourneyStatus::Closed => "closed",
            JourneyStatus::Stopped => "stopped",
        }
    }
}

/// Whether and when a user may enter the journey again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Once per user, ever.
    #[default]
    Never,
    /// Again once the previous enrollment has ended.
    AfterExit,
    /// Again once this long has passed since the last entry (and the last enrollment ended):
    /// its weeks and days are calendar days in the user's zone, its hours, minutes and seconds
    /// exact time (`24h` is 24 hours also across a change of the clocks), as a `wait_until`'s
    /// offset is.
    After(#[schemars(with = "Duration")] DateOffset),
}

/// An event or a trait change, optionally with a condition, as `exit_when` names them. Exactly
/// one of `event` and `trait_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_listened)]
pub struct EventMatch {
    /// A track event (`order_completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"), length(max = 200))]
    pub event: Option<String>,
    /// An identify's change of this profile trait, as a `trait_changed` trigger watches one:
    /// `event.*` is `{trait, from, to}` (`from` missing when it was not set, `to` when it was
    /// removed) and `profile.*` the profile after the identify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"))]
    pub trait_changed: Option<String>,
    /// Only an event for which this condition holds: `event.*` is the event that came,
    /// `trigger.*` the enrollment's trigger event, `waited.*` the event its latest `wait_for`
    /// met, and `profile.*` the user's profile.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// What an exit or a goal listens to, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listened<'a> {
    /// A track event, by name.
    Event(&'a str),
    /// An identify's change of a profile trait, by the trait's name.
    TraitChanged(&'a str),
}

impl Listened<'_> {
    /// How an exit's reason and the timeline name it: the event's name, or `trait_changed
    /// plan` (as the file writes it, `{trait_changed: plan}`).
    pub fn label(&self) -> String {
        match self {
            Listened::Event(name) => (*name).to_string(),
            Listened::TraitChanged(name) => format!("trait_changed {name}"),
        }
    }
}

/// Which of `event` and `trait_changed` is set: `None` when neither or both (validation says so).
fn listened<'a>(
    event: &'a Option<String>,
    trait_changed: &'a Option<String>,
) -> Option<Listened<'a>> {
    match (event, trait_changed) {
        (Some(e), None) => Some(Listened::Event(e)),
        (None, Some(t)) => Some(Listened::TraitChanged(t)),
        _ => None,
    }
}

impl EventMatch {
    /// A match of the event `name`, with `condition`.
    pub fn event(name: &str, condition: Option<Condition>) -> EventMatch {
        EventMatch {
            event: Some(name.to_string()),
            trait_changed: None,
            condition,
        }
    }

    /// What it listens to (`None`: neither or both named, which validation refuses).
    pub fn listened(&self) -> Option<Listened<'_>> {
        listened(&self.event, &self.trait_changed)
    }

    /// Whether it listens to the track event `name`.
    pub fn names_event(&self, name: &str) -> bool {
        self.listened() == Some(Listened::Event(name))
    }

    /// Whether it listens to an identify's change of trait `name`.
    pub fn watches(&self, name: &str) -> bool {
        self.listened() == Some(Listened::TraitChanged(name))
    }

    /// How an exit's reason and the timeline name it (see [`Listened::label`]).
    pub fn label(&self) -> String {
        self.listened().map(|l| l.label()).unwrap_or_default()
    }
}

/// A conversion: an event, or an identify's change of a trait, within a window after entry.
/// Exactly one of `event` and `trait_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_listened)]
pub struct Goal {
    /// A track event (`order_completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"), length(max = 200))]
    pub event: Option<String>,
    /// An identify's change of this profile trait (`event.*` is `{trait, from, to}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"))]
    pub trait_changed: Option<String>,
    /// Only an event for which this condition holds: `event.*` is the event that came,
    /// `trigger.*` the enrollment's trigger event, `waited.*` the event its latest `wait_for`
    /// met, and `profile.*` the user's profile.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// The conversion window after entry.
    pub within: Duration,
}

impl Goal {
    /// What it listens to (`None`: neither or both named, which validation refuses).
    pub fn listened(&self) -> Option<Listened<'_>> {
        listened(&self.event, &self.trait_changed)
    }

    /// Whether it listens to the track event `name`.
    pub fn names_event(&self, name: &str) -> bool {
        self.listened() == Some(Listened::Event(name))
    }

    /// Whether it listens to an identify's change of trait `name`.
    pub fn watches(&self, name: &str) -> bool {
        self.listened() == Some(Listened::TraitChanged(name))
    }

    /// How an exit's reason and the timeline name it (see [`Listened::label`]).
    pub fn label(&self) -> String {
        self.listened().map(|l| l.label()).unwrap_or_default()
    }

    /// Its event and condition, as an exit's are written.
    pub fn as_match(&self) -> EventMatch {
        EventMatch {
            event: self.event.clone(),
            trait_changed: self.trait_changed.clone(),
            condition: self.condition.clone(),
        }
    }
}

/// Whether a [`Marker`] is an exit's or the goal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    Exit,
    Goal,
}

impl MarkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkKind::Exit => "exit",
            MarkKind::Goal => "goal",
        }
    }
}

/// An exit or a goal of a journey version that an event may meet with no enrollment to judge
/// it for ([`Journey::markers`]): its event, its `where` and the version's default zone (its
/// dates' zone). Versions that share one share its mark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub kind: MarkKind,
    pub event: String,
    #[serde(rename = "where")]
    pub condition: Condition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl Marker {
    /// The key of `Profile::marks` an event meeting it is noted under, in journey `journey`:
    /// its kind, the journey, and a digest of its event, `where` and zone (so that a version
    /// whose exit reads otherwise is not moved by another's mark).
    pub fn key(&self, journey: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.event.as_str(),
            self.condition.source(),
            self.zone().unwrap_or_default(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        crate::store::join(&[self.kind.as_str(), ":", journey, ":", &digest])
    }

    /// The journey a key [`Marker::key`] made names (`None` for a key it did not make, such
    /// as the journey-wide `exit:<journey>` of before).
    pub fn journey_of_key(key: &str) -> Option<&str> {
        let (_, rest) = key.split_once(':')?;
        let (journey, digest) = rest.rsplit_once(':')?;
        (digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(journey)
    }

    /// The order and the identity lists of markers are kept in.
    pub fn sort_key(&self) -> (MarkKind, &str, &str, Option<&str>) {
        (
            self.kind,
            self.event.as_str(),
            self.condition.source(),
            self.zone(),
        )
    }

    /// The zone its `where` reads dates in: none for a `where` that does not read the clock,
    /// whatever zone it was stored with (a head written before [`Journey::markers`] left the
    /// zone out of those still holds it), so its marks keep one key.
    fn zone(&self) -> Option<&str> {
        self.zone
            .as_deref()
            .filter(|_| self.condition.reads_the_clock())
    }
}

/// A local-time window, e.g. `{start: "21:00", end: "08:00"}` (may wrap past midnight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

/// A time of day, `"HH:MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    pub hour: u8,
    pub minute: u8,
}

impl TimeOfDay {
    pub fn minutes(&self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }
}

/// What a time of day written another way most likely means, as `"HH:MM"`: `9am`, `9:30 PM`,
/// `21:00:00`, `0900`, `9`, `9.30`, `9h30`.
fn time_suggestion(s: &str) -> Option<String> {
    let t: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
        .replace(['.', 'h'], ":");
    let (t, half) = if let Some(t) = t.strip_suffix("am").or_else(|| t.strip_suffix("a:m:")) {
        (t, Some(0))
    } else if let Some(t) = t.strip_suffix("pm").or_else(|| t.strip_suffix("p:m:")) {
        (t, Some(12))
    } else {
        (t.as_str(), None)
    };
    let t = t.trim_end_matches(':');
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = t.split(':').collect();
    let (h, m): (&str, &str) = match parts.as_slice() {
        [h] if digits(h) => (h, "0"),
        [hm] if (3..=4).contains(&hm.len()) && hm.bytes().all(|b| b.is_ascii_digit()) => {
            hm.split_at(hm.len() - 2)
        }
        [h, m] if digits(h) && digits(m) => (h, m),
        [h, m, sec] if digits(h) && digits(m) && sec.bytes().all(|b| b == b'0') => (h, m),
        _ => return None,
    };
    let (mut hour, minute): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    if let Some(offset) = half {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = hour % 12 + offset;
    }
    (hour <= 23 && minute <= 59).then(|| format!("{hour:02}:{minute:02}"))
}

impl TryFrom<String> for TimeOfDay {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || match time_suggestion(&s) {
            Some(better) => {
                format!("\"{s}\" is not a time of day: write \"{better}\" (24-hour \"HH:MM\")")
            }
            None => format!(
                "\"{s}\" is not a time of day: write it as \"HH:MM\", e.g. \"09:00\" or \"21:30\""
            ),
        };
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if !(1..=2).contains(&h.len()) || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let hour: u8 = h.parse().map_err(|_| bad())?;
        let minute: u8 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 || m.len() != 2 {
            return Err(bad());
        }
        Ok(TimeOfDay { hour, minute })
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        format!("{:02}:{:02}", t.hour, t.minute)
    }
}

impl JsonSchema for TimeOfDay {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeOfDay".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$",
            "description": "A local time of day, \"HH:MM\" (\"9:00\" is 09:00)."
        })
    }
}

/// One step. Exactly one of the action fields (`wait`, `wait_until`, `wait_for`, `branch`,
/// `split`, `send`, `update`, `exit`) is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_action)]
pub struct Step {
    /// Unique within the journey: lowercase letters, digits, `_` and `-`.
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,64}$"))]
    pub id: String,
    /// The step to go to afterwards (default: the next one in the file; after the last, exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Wait this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    /// Wait until the next local time of day, optionally on given weekdays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<WaitUntil>,
    /// Wait for an event, with a timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,
    /// Ordered cases; the first whose condition holds wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// Weighted paths chosen by a stable hash of (user, journey, step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// Send a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Send>,
    /// Set or unset profile traits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    /// End the journey here: `exit: true`, the only value it takes (`waymark validate` refuses
    /// `exit: false`, which is no action: a step goes on unless it is an `exit: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [true, null]))]
    pub exit: Option<bool>,
}

/// A step's action, once validated.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    Wait(Duration),
    WaitUntil(&'a WaitUntil),
    WaitFor(&'a WaitFor),
    Branch(&'a Branch),
    Split(&'a Split),
    Send(&'a Send),
    Update(&'a Update),
    Exit,
}

impl Step {
    /// Every action field the step sets (validation requires exactly one).
    pub fn actions(&self) -> Vec<Action<'_>> {
        let mut out = Vec::with_capacity(1);
        if let Some(d) = self.wait {
            out.push(Action::Wait(d));
        }
        if let Some(w) = &self.wait_until {
            out.push(Action::WaitUntil(w));
        }
        if let Some(w) = &self.wait_for {
            out.push(Action::WaitFor(w));
        }
        if let Some(b) = &self.branch {
            out.push(Action::Branch(b));
        }
        if let Some(s) = &self.split {
            out.push(Action::Split(s));
        }
        if let Some(s) = &self.send {
            out.push(Action::Send(s));
        }
        if let Some(u) = &self.update {
            out.push(Action::Update(u));
        }
        if self.exit == Some(true) {
            out.push(Action::Exit);
        }
        out
    }

    /// The step's one action. A validated journey always has one; an unvalidated step with none
    /// or several is treated as an exit.
    pub fn action(&self) -> Action<'_> {
        // Called for every step the engine runs: count, then pick, with no allocation.
        let set = usize::from(self.wait.is_some())
            + usize::from(self.wait_until.is_some())
            + usize::from(self.wait_for.is_some())
            + usize::from(self.branch.is_some())
            + usize::from(self.split.is_some())
            + usize::from(self.send.is_some())
            + usize::from(self.update.is_some())
            + usize::from(self.exit == Some(true));
        if set != 1 {
            return Action::Exit;
        }
        if let Some(d) = self.wait {
            Action::Wait(d)
        } else if let Some(w) = &self.wait_until {
            Action::WaitUntil(w)
        } else if let Some(w) = &self.wait_for {
            Action::WaitFor(w)
        } else if let Some(b) = &self.branch {
            Action::Branch(b)
        } else if let Some(s) = &self.split {
            Action::Split(s)
        } else if let Some(s) = &self.send {
            Action::Send(s)
        } else if let Some(u) = &self.update {
            Action::Update(u)
        } else {
            Action::Exit
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitUntil {
    /// Local time of day in the user's time zone: the next one (with `date`: on that day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeOfDay>,
    /// Only on these weekdays (`mon` … `sun`); any day when empty. Not with `date`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<Weekday>,
    /// A time read from the trigger event (`event.appointment_at`, also as
    /// `trigger.appointment_at`), the event an earlier `wait_for` met (`waited.*`) or the
    /// profile (`profile.renewal_at`): an RFC 3339 time, a local date and time (`2026-12-10T15:00:00`) or
    /// a `YYYY-MM-DD` date (midnight) in the user's time zone, or seconds since 1970 (as the
    /// `date` template filter reads it). A user without one leaves the journey (`ended`); one
    /// already past goes on at once, unless `if_past` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<ValuePath>,
    /// With `date`: this long before it. Days and weeks are calendar days in the user's zone
    /// (`1d`: the day before an appointment, at the same local time); hours, minutes and seconds
    /// are exact (`24h`: 24 hours before a flight, also across a change of the clocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<DateOffset>,
    /// With `date`: this long after it, counted as `before` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<DateOffset>,
    /// With `date`: what it does when the time it waits for is past when the step is reached
    /// (or when the date moves): `go_on` at once (the default), `exit` the journey, or go to a
    /// step (its id). Past counts from the date itself, or from the time waited for when that
    /// is later (`after`): a reminder the day before an appointment two hours ahead still goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_past: Option<IfPast>,
}

impl WaitUntil {
    /// The time of day it waits for: its `time`, midnight when it names none.
    pub fn time_or_midnight(&self) -> TimeOfDay {
        self.time.unwrap_or(TimeOfDay { hour: 0, minute: 0 })
    }

    /// What a `date` wait waits for, as the timeline and the flowchart say it
    /// (`event.starts_at - 1d at 09:00`); `None` for a wait on the time of day alone.
    pub fn date_text(&self) -> Option<String> {
        let path = self.date.as_ref()?;
        let mut text = path.source().to_string();
        // As written (`- 1440m`), or as stored for a version read back (`- 24h`): `- 24h` is 24
        // hours, `- 1d` the calendar day.
        if let Some(b) = &self.before {
            text.push_str(" - ");
            text.push_str(b.as_str());
        } else if let Some(a) = &self.after {
            text.push_str(" + ");
            text.push_str(a.as_str());
        }
        if let Some(t) = self.time {
            text.push_str(" at ");
            text.push_str(&String::from(t));
        }
        Some(text)
    }
}

/// What a `wait_until` date already past does (`if_past`): `exit`, `go_on`, a step's id, or
/// with a tolerance, `{by_more_than: 1d, then: exit}`: a date past by no more than that goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct IfPast {
    /// Only a date past by more than this counts as past; one past by less goes on at once.
    pub by_more_than: Option<Duration>,
    pub then: PastThen,
}

/// Where a `wait_until` whose date is past goes.
#[derive(Debug, Clone, PartialEq)]
pub enum PastThen {
    /// On to the next step at once, as a date past does without `if_past`.
    GoOn,
    /// Out of the journey (`ended`, counted as an exit).
    Exit,
    /// To this step.
    Goto(String),
}

impl PastThen {
    fn from_word(word: &str) -> PastThen {
        match word {
            "go_on" => PastThen::GoOn,
            "exit" => PastThen::Exit,
            step => PastThen::Goto(step.to_string()),
        }
    }

    /// As a journey file writes it: `go_on`, `exit`, or the step's id.
    pub fn as_str(&self) -> &str {
        match self {
            PastThen::GoOn => "go_on",
            PastThen::Exit => "exit",
            PastThen::Goto(step) => step,
        }
    }
}

impl IfPast {
    /// The step it goes to, when it names one.
    pub fn goto(&self) -> Option<&str> {
        match &self.then {
            PastThen::Goto(step) => Some(step),
            _ => None,
        }
    }

    /// As the timeline and the flowchart say it: `exit`, `missed`, `exit if past by more than 1d`.
    pub fn text(&self) -> String {
        match self.by_more_than {
            None => self.then.as_str().to_string(),
            Some(d) => format!("{} if past by more than {d}", self.then.as_str()),
        }
    }
}

impl Serialize for IfPast {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.by_more_than {
            None => serializer.serialize_str(self.then.as_str()),
            Some(d) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("by_more_than", &d)?;
                map.serialize_entry("then", self.then.as_str())?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for IfPast {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["by_more_than", "then"];
        /// A key of the map form, read so that an unknown one is named at its own place.
        enum Field {
            ByMoreThan,
            Then,
        }
        impl<'de> Deserialize<'de> for Field {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Key;
                impl serde::de::Visitor<'_> for Key {
                    type Value = Field;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("`by_more_than` or `then`")
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
                        match v {
                            "by_more_than" => Ok(Field::ByMoreThan),
                            "then" => Ok(Field::Then),
                            other => Err(E::unknown_field(other, FIELDS)),
                        }
                    }
                }
                d.deserialize_identifier(Key)
            }
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IfPast;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`go_on`, `exit`, a step's id, or `{by_more_than: 1d, then: exit}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IfPast, E> {
                Ok(IfPast {
                    by_more_than: None,
                    then: PastThen::from_word(v),
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<IfPast, A::Error> {
                use serde::de::Error;
                let (mut by_more_than, mut then) = (None, None);
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::ByMoreThan => by_more_than = Some(map.next_value::<Duration>()?),
                        Field::Then => {
                            then = Some(PastThen::from_word(&map.next_value::<String>()?));
                        }
                    }
                }
                Ok(IfPast {
                    by_more_than,
                    then: then.ok_or_else(|| A::Error::missing_field("then"))?,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for IfPast {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IfPast".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let duration = generator.subschema_for::<Duration>();
        let then = schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9_-]{1,64}$",
            "description": "`go_on`: on to the next step at once; `exit`: out of the journey (counted as an exit); anything else: the id of the step to go to.",
            "examples": ["exit", "go_on", "missed_it"]
        });
        schemars::json_schema!({
            "description": "What a `wait_until` `date` already past does: `go_on` (the default), `exit`, or a step's id; with `by_more_than`, only a date past by more than that counts as past (one past by less goes on at once). Past counts from the date itself, or from the time waited for when that is later (`after`).",
            "oneOf": [
                then,
                {
                    "type": "object",
                    "properties": {
                        "by_more_than": duration,
                        "then": then
                    },
                    "required": ["then"],
                    "additionalProperties": false
                }
            ],
            "examples": ["exit", {"by_more_than": "1d", "then": "exit"}]
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub fn to_jiff(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as W;
        match self {
            Weekday::Mon => W::Monday,
            Weekday::Tue => W::Tuesday,
            Weekday::Wed => W::Wednesday,
            Weekday::Thu => W::Thursday,
            Weekday::Fri => W::Friday,
            Weekday::Sat => W::Saturday,
            Weekday::Sun => W::Sunday,
        }
    }
}

/// A wait for an event (`event`, with its `where` and `on_event`), or for whichever of several
/// comes first (`paths`, each with its own), with a timeout. Exactly one of `event` and `paths`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_waited)]
pub struct WaitFor {
    /// The track event waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"\S"), length(max = 200))]
    pub event: Option<String>,
    /// Only an event for which this condition holds: `event.*` is the event that came,
    /// `trigger.*` the enrollment's trigger event (`where: "event.order_id ==
    /// trigger.order_id"`), `waited.*` the event an earlier `wait_for` met, and `profile.*` the
    /// user's profile.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// How long to wait for the event.
    pub timeout: Duration,
    /// Where to go when the event comes (default: the step's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_event: Option<String>,
    /// Where to go on timeout (default: the step's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    /// Instead of `event`, `where` and `on_event`: several events, each with its own path. The
    /// first to come (in the journey's own time) that meets its path's `where` meets the wait,
    /// and the user goes to that path's `goto`; each event at most once in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub paths: Option<Vec<WaitPath>>,
}

/// One path of a `wait_for` that waits for several events: the event, its `where`, and the
/// step it leads to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitPath {
    #[schemars(regex(pattern = r"\S"), length(max = 200))]
    pub event: String,
    /// Only an event for which this condition holds (read as a `wait_for`'s `where` is).
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// The step to go to when this event meets the wait.
    pub goto: String,
}

/// One way a `wait_for` is met: its `event`, `where` and `on_event` (`goto` `None`: the step's
/// `next`), or one of its `paths`.
#[derive(Debug, Clone, Copy)]
pub struct WaitWay<'a> {
    pub event: &'a str,
    pub condition: Option<&'a Condition>,
    pub goto: Option<&'a str>,
}

impl WaitFor {
    /// The ways the wait is met, in file order (a validated one has `event` or `paths`).
    pub fn ways(&self) -> impl Iterator<Item = WaitWay<'_>> {
        let single = self.event.as_deref().map(|event| WaitWay {
            event,
            condition: self.condition.as_ref(),
            goto: self.on_event.as_deref(),
        });
        single
            .into_iter()
            .chain(self.paths.iter().flatten().map(|p| WaitWay {
                event: &p.event,
                condition: p.condition.as_ref(),
                goto: Some(p.goto.as_str()),
            }))
    }

    /// The way `event` meets the wait, if it names it (the first, in an unvalidated list that
    /// names it twice).
    pub fn way_for(&self, event: &str) -> Option<WaitWay<'_>> {
        self.ways().find(|w| w.event == event)
    }

    /// What it waits for, as an enrollment keeps it and the timeline says it: the event's name,
    /// or the paths' events joined by ` or ` (`session_started or order_placed`).
    pub fn events_label(&self) -> String {
        let names: Vec<&str> = self.ways().map(|w| w.event).collect();
        names.join(" or ")
    }

    /// Whether it waits for several events, each with its path (`paths`).
    pub fn has_paths(&self) -> bool {
        self.paths.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    #[schemars(length(min = 1))]
    pub cases: Vec<Case>,
    /// Where to go when no case holds (default: the step's `next`).
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub when: Condition,
    pub goto: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Weighted paths; weights are relative.
    #[schemars(length(min = 1))]
    pub paths: Vec<SplitPath>,
    /// Percentage of users (0–100) held out: they receive nothing and exit, counted as holdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub holdout: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitPath {
    /// A name for the path (lowercase letters, digits, `_`, `-`), shown in timelines and in the
    /// stats, which count who took it and converted (`step.<split>.path.<name>.entered`,
    /// `.converted`); default: the `goto` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9_-]{1,64}$"))]
    pub name: Option<String>,
    pub weight: u32,
    pub goto: String,
}

/// A message on one channel (exactly one of `email`, `sms`, `push`, `in_app`, `webhook`), with an
/// optional fallback used when the user cannot be reached on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = one_channel)]
pub struct Send {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<InAppTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookTemplate>,
    /// Used when the user has no address, device or subscription for the first channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<Send>>,
    /// The message in other languages, by locale (`fr`, `pt-br`): a user whose
    /// `profile.locale` is that locale, or has its language (`fr-CA` takes `fr`), gets that
    /// send (its channel is this one's; it may have a fallback of its own) instead of this.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub locales: BTreeMap<String, Send>,
    /// How long the journey's quiet hours may hold this message (`15m`: a "class starts in 15
    /// minutes" push): one they would hold longer is skipped when it is due (`quiet_hours`),
    /// and the journey goes on. Unset, a held message waits for their end, however long.
    /// Written on the step's own send: its fallback and locales follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_within: Option<Duration>,
}

/// A locale as `locales` keys are written and matched: lower case, `-` between its parts
/// (`pt_BR` is `pt-br`).
pub fn locale_key(locale: &str) -> String {
    locale.trim().to_ascii_lowercase().replace('_', "-")
}

/// The channels Waymark sends on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Push,
    InApp,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::InApp,
        Channel::Webhook,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::InApp => "in_app",
            Channel::Webhook => "webhook",
        }
    }
    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One channel's template, once validated.
#[derive(Debug, Clone, Copy)]
pub enum Template<'a> {
    Email(&'a EmailTemplate),
    Sms(&'a SmsTemplate),
    Push(&'a PushTemplate),
    InApp(&'a InAppTemplate),
    Webhook(&'a WebhookTemplate),
}

impl<'a> Template<'a> {
    /// Whether this message goes to a user who unsubscribed from its channel, in a journey that
    /// is `transactional` or not: only a transactional journey's email that is not marketing
    /// mail (a receipt, a password reset), since an email unsubscribe is an opt-out of
    /// marketing mail. Everything else honours the opt-out.
    pub fn ignores_unsubscribe(&self, transactional: bool) -> bool {
        transactional && matches!(self, Template::Email(e) if !e.marketing)
    }

    pub fn channel(&self) -> Channel {
        match self {
            Template::Email(_) => Channel::Email,
            Template::Sms(_) => Channel::Sms,
            Template::Push(_) => Channel::Push,
            Template::InApp(_) => Channel::InApp,
            Template::Webhook(_) => Channel::Webhook,
        }
    }

    /// Every template string with the name of its field, for validation and rendering.
    pub fn fields(&self) -> Vec<(&'static str, &'a str)> {
        let mut out: Vec<(&'static str, &'a str)> = Vec::new();
        match *self {
            Template::Email(e) => {
                out.push(("subject", &e.subject));
                if let Some(h) = &e.html {
                    out.push(("html", h));
                }
                if let Some(t) = &e.text {
                    out.push(("text", t));
                }
            }
            Template::Sms(s) => out.push(("body", &s.body)),
            Template::Push(p) => {
                if let Some(t) = &p.title {
                    out.push(("title", t));
                }
                if let Some(b) = &p.body {
                    out.push(("body", b));
                }
            }
            Template::InApp(p) => {
                out.push(("title", &p.title));
                out.push(("body", &p.body));
            }
            Template::Webhook(w) => {
                out.push(("url", &w.url));
                if let Some(b) = &w.body {
                    out.push(("body", b));
                }
            }
        }
        out
    }
}

impl Send {
    /// Every channel template the step sets (validation requires exactly one).
    pub fn templates(&self) -> Vec<Template<'_>> {
        let mut out = Vec::with_capacity(1);
        if let Some(t) = &self.email {
            out.push(Template::Email(t));
        }
        if let Some(t) = &self.sms {
            out.push(Template::Sms(t));
        }
        if let Some(t) = &self.push {
            out.push(Template::Push(t));
        }
        if let Some(t) = &self.in_app {
            out.push(Template::InApp(t));
        }
        if let Some(t) = &self.webhook {
            out.push(Template::Webhook(t));
        }
        out
    }

    /// The first channel's template (a validated send has exactly one).
    pub fn template(&self) -> Option<Template<'_>> {
        self.templates().into_iter().next()
    }

    /// The send for a user whose `profile.locale` is `locale`: the variant for that locale, else
    /// for its language, else this one.
    pub fn for_locale(&self, locale: Option<&str>) -> &Send {
        self.localized(locale).0
    }

    /// [`Send::for_locale`], with the `locales` key it chose (`None`: this send itself).
    pub fn localized(&self, locale: Option<&str>) -> (&Send, Option<&str>) {
        let Some(locale) = locale.filter(|_| !self.locales.is_empty()) else {
            return (self, None);
        };
        // The whole tag, then with its last part off, and so on (RFC 4647's lookup):
        // `zh-hant-tw` finds `zh-hant`, then `zh`.
        let key = locale_key(locale);
        let mut tag = key.as_str();
        loop {
            if let Some((k, send)) = self.locales.get_key_value(tag) {
                return (send, Some(k.as_str()));
            }
            match tag.rsplit_once('-') {
                Some((shorter, _)) => tag = shorter,
                None => return (self, None),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Marketing email carries a one-click `List-Unsubscribe` header and link (default true).
    #[serde(default = "yes")]
    pub marketing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsTemplate {
    pub body: String,
    /// `transactional` or `promotional` (default: the journey's kind, `transactional` in a
    /// `transactional: true` journey, else `promotional`).
    #[serde(default)]
    #[schemars(transform = no_fixed_default)]
    pub sms_type: SmsType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmsType {
    Transactional,
    #[default]
    Promotional,
}

/// A push notification: a title, a body (either may be left out: APNs and FCM show an alert
/// with one line), optional data, and how long the push services may hold it for a device that
/// is off; or, `silent`, data alone, which shows nothing and wakes the app in the background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = alert_or_silent)]
pub struct PushTemplate {
    /// The alert's bold first line; leave it out for a body alone ("Your order is on its way").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The alert's text; leave it out for a title alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A data-only push (`silent: true`, with `data` and no `title` or `body`): no alert, no
    /// sound; the app is woken in the background with the data (APNs `content-available`, an
    /// FCM data message).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
    /// String values are templates too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// How long after it is sent APNs and FCM may still deliver it to a device that was off or
    /// out of reach (`4h`: a cart reminder that must not arrive after the next message); at most
    /// 4 weeks, FCM's limit. Unset: each service's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Duration>,
}

/// The longest time to live FCM accepts for a message, and so a push's longest `expires`.
pub const PUSH_EXPIRES_MAX: Duration = Duration::from_secs(28 * 86_400);

/// An in-app message: a title, a body and optional data, kept in the user's inbox until it
/// `expires` (a duration after it is sent; 400 days when unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InAppTemplate {
    pub title: String,
    pub body: String,
    /// String values are templates too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// How long after it is sent the message stays in the inbox (`7d`: a week's offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Duration>,
    /// Keep the message in the inbox when the enrollment ends by an `exit_when` event or the
    /// journey is stopped (a receipt, a confirmation). Unset, an exit withdraws it unless the
    /// user has read it. Written on the send's own `in_app` (or its fallback's): its `locales`
    /// follow it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_after_exit: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTemplate {
    pub url: String,
    #[serde(default = "post")]
    #[schemars(extend("enum" = ["POST", "PUT", "PATCH", "GET", "DELETE"]))]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn post() -> String {
    "POST".to_string()
}

/// Profile changes: traits to set (JSON values) and traits to remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub set: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
}

/// A number as an `enrollment_key` value: one text for one value however written, so that
/// one value makes one record. A whole number is written as an integer (`1.0` and `1e3` are `1`
/// and `1000`, as the integers are, up to 2^64, past which JSON's integers are floats too), as
/// `0` for `-0.0`; another as its shortest spelling (`1.5`, `1e300`).
fn number_key(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f == 0.0 => "0".to_string(),
        // 2^64: any whole float below it has an exact integer spelling of at most 20 digits.
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 => {
            format!("{f:.0}")
        }
        _ => n.to_string(),
    }
}

/// The longest `enrollment_key` value taken, in bytes of UTF-8 as an id writes it (escaped:
/// see [`crate::enrollment::Enrollment::id_for`]). It is part of the enrollment's id, which
/// some store keys hold twice (a wake-up's timeline record, `T#{id}#wake:{id}:{seq}`): with
/// the longest user id (256 bytes, `anon:` before a visitor's), journey id and step id (64),
/// every such key stays within DynamoDB's 1,024 bytes of sort key.
pub const MAX_KEY_BYTES: usize = 128;

impl Journey {
    /// The value of its `enrollment_key` in a trigger event's properties: `None` for a journey
    /// without one; else the value as text (a string as it is, a number as [`number_key`]
    /// writes it: `1.0` as `1`), or why the event has none that keys an enrollment.
    pub fn key_of(&self, properties: &serde_json::Value) -> Option<Result<String, String>> {
        let path = self.enrollment_key.as_ref()?;
        let scope = crate::condition::Scope {
            event: properties,
            trigger: properties,
            waited: &serde_json::Value::Null,
            profile: &serde_json::Value::Null,
            now: jiff::Timestamp::UNIX_EPOCH,
            zone: None,
        };
        let name = path.source();
        Some(match path.lookup(&scope) {
            None | Some(serde_json::Value::Null) => Err(format!(
                "`enrollment_key: {name}`: the trigger event has no `{name}`, and an enrollment of this journey is one per value"
            )),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Err(format!(
                "`enrollment_key: {name}`: the trigger event's `{name}` is empty"
            )),
            Some(serde_json::Value::String(s))
                if crate::enrollment::escape_key(s).len() > MAX_KEY_BYTES =>
            {
                Err(format!(
                    "`enrollment_key: {name}`: the trigger event's `{name}` is longer than {MAX_KEY_BYTES} bytes in an id (UTF-8, `%`, `#` and `:` written `%25`, `%23` and `%3A`)"
                ))
            }
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(number_key(n)),
            Some(other) => Err(format!(
                "`enrollment_key: {name}`: the trigger event's `{name}` is {}, not a string or a number",
                match other {
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Array(_) => "a list",
                    _ => "an object",
                }
            )),
        })
    }

    /// The zone a user without `profile.timezone` is in: the journey's `timezone`, else a
    /// schedule trigger's named zone (not `user`), else none (UTC). The schedule's `where`, the
    /// steps' conditions, waits and quiet hours all read this one, so a run at 09:00 in Sydney
    /// and the branch after it see the same day.
    pub fn default_zone(&self) -> Option<&str> {
        self.timezone.as_deref().or(match self.trigger.kind() {
            Some(TriggerKind::Schedule(s)) if s.timezone != "user" => Some(s.timezone.as_str()),
            _ => None,
        })
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step that follows `id` when it names none: its `next`, else the next in file order.
    pub fn next_of(&self, id: &str) -> Option<&str> {
        self.next_at(self.steps.iter().position(|s| s.id == id)?)
    }

    /// [`Journey::next_of`] the step at `i` in the file (with an id written twice, each its own).
    pub fn next_at(&self, i: usize) -> Option<&str> {
        let step = self.steps.get(i)?;
        if let Some(n) = &step.next {
            return Some(n);
        }
        self.steps.get(i + 1).map(|s| s.id.as_str())
    }

    /// The first step.
    pub fn first(&self) -> Option<&str> {
        self.steps.first().map(|s| s.id.as_str())
    }

    /// A short content hash, so that publishing the same file twice makes no new version.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Whether a step of it changes profile traits (`update`).
    pub fn updates_profile(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.action(), Action::Update(_)))
    }

    /// The traits its `update` steps set or unset, step by step (a trait two steps name comes
    /// twice).
    pub fn updated_traits(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .filter_map(|s| match s.action() {
                Action::Update(u) => Some(u),
                _ => None,
            })
            .flat_map(|u| {
                u.set
                    .keys()
                    .map(String::as_str)
                    .chain(u.unset.iter().map(String::as_str))
            })
    }

    /// The profile trait whose change enters a user (a `trait_changed` trigger).
    pub fn watched_trait(&self) -> Option<&str> {
        match self.trigger.kind() {
            Some(TriggerKind::TraitChanged { name, .. }) => Some(name),
            _ => None,
        }
    }

    /// Every profile trait whose change the journey listens to: its `trait_changed` trigger's,
    /// its exits' and its goal's (the profile notes their changes: see
    /// `Profile::apply_watching`).
    pub fn watched_traits(&self) -> impl Iterator<Item = &str> {
        self.watched_trait()
            .into_iter()
            .chain(self.watched_once_entered())
    }

    /// The profile traits whose change the journey listens to once entered: its exits' and its
    /// goal's (those enrolled on this version listen to them while a later version is the
    /// latest: see `Head::watched_by_versions`).
    pub fn watched_once_entered(&self) -> impl Iterator<Item = &str> {
        let exits = self.exit_when.iter().filter_map(|m| match m.listened() {
            Some(Listened::TraitChanged(t)) => Some(t),
            _ => None,
        });
        let goal = self.goal.as_ref().and_then(|g| match g.listened() {
            Some(Listened::TraitChanged(t)) => Some(t),
            _ => None,
        });
        exits.chain(goal)
    }

    /// Whether the journey listens, once entered, to an identify's change of trait `name` (an
    /// exit, the goal).
    pub fn listens_to_change(&self, name: &str) -> bool {
        self.exit_when.iter().any(|m| m.watches(name))
            || self.goal.as_ref().is_some_and(|g| g.watches(name))
    }

    /// Whether the journey names `event` anywhere: its trigger (an event, a `repeated` count,
    /// an `inactive` set) or what it listens to once entered.
    pub fn names_event(&self, event: &str) -> bool {
        let triggered = match self.trigger.kind() {
            Some(TriggerKind::Event { events, .. }) => events.contains(event),
            Some(TriggerKind::Repeated(r)) => r.event == event,
            Some(TriggerKind::Inactive(i)) => i.events.iter().any(|e| e == event),
            Some(TriggerKind::TraitChanged { .. } | TriggerKind::Schedule(_)) | None => false,
        };
        triggered || self.listens_to(event)
    }

    /// The track events the journey listens to once entered: its exits', its goal's and its
    /// waits' (those enrolled on this version listen to them while a later version is the
    /// latest: see `Head::listening_by_versions`). One may come more than once.
    pub fn events_once_entered(&self) -> impl Iterator<Item = &str> {
        let exits = self.exit_when.iter().filter_map(|m| m.event.as_deref());
        let goal = self.goal.as_ref().and_then(|g| g.event.as_deref());
        let waits = self
            .steps
            .iter()
            .filter_map(|s| s.wait_for.as_ref())
            .flat_map(|w| w.ways().map(|w| w.event));
        exits.chain(goal).chain(waits)
    }

    /// Its exits and its goal that name a track event with a `where` judged on the event alone
    /// (not reading `trigger.*` nor `waited.*`): an event meeting one is noted on the profile
    /// for an enrollment found later (see `Profile::marks`).
    pub fn markers(&self) -> Vec<Marker> {
        let zone = self.default_zone().map(str::to_string);
        let of = |kind: MarkKind, m: &EventMatch| {
            let event = m.event.clone()?;
            let condition = m.condition.clone().filter(|c| !c.reads_enrollment())?;
            // The zone only for a `where` that reads dates (`days_since(…)`): another's mark
            // is the same whatever the version's zone.
            let zone = zone.clone().filter(|_| condition.reads_the_clock());
            Some(Marker {
                kind,
                event,
                condition,
                zone,
            })
        };
        let exits = self.exit_when.iter().filter_map(|m| of(MarkKind::Exit, m));
        let goal = self
            .goal
            .as_ref()
            .and_then(|g| of(MarkKind::Goal, &g.as_match()));
        exits.chain(goal).collect()
    }

    /// Whether the journey listens to `event` after entry (exit, goal, wait_for).
    pub fn listens_to(&self, event: &str) -> bool {
        self.exit_when.iter().any(|m| m.names_event(event))
            || self.goal.as_ref().is_some_and(|g| g.names_event(event))
            || self.steps.iter().any(|s| {
                s.wait_for
                    .as_ref()
                    .is_some_and(|w| w.way_for(event).is_some())
            })
    }
}

/// Makes `schema` hold exactly one of `fields` set (not null), as the journey file's checks
/// want of a trigger, a step and a send.
fn exactly_one(schema: &mut schemars::Schema, fields: &[&str]) {
    let one_of: Vec<serde_json::Value> = fields
        .iter()
        .map(|f| {
            serde_json::json!({
                "required": [f],
                "properties": {*f: {"not": {"type": "null"}}}
            })
        })
        .collect();
    schema.insert("oneOf".into(), one_of.into());
}

fn one_trigger(schema: &mut schemars::Schema) {
    exactly_one(
        schema,
        &["event", "trait_changed", "repeated", "inactive", "schedule"],
    );
}

fn one_listened(schema: &mut schemars::Schema) {
    exactly_one(schema, &["event", "trait_changed"]);
}

fn one_waited(schema: &mut schemars::Schema) {
    exactly_one(schema, &["event", "paths"]);
}

fn one_action(schema: &mut schemars::Schema) {
    exactly_one(
        schema,
        &[
            "wait",
            "wait_until",
            "wait_for",
            "branch",
            "split",
            "send",
            "update",
            "exit",
        ],
    );
}

/// A push is an alert with a `title` or a `body` (a null one is none), or `silent: true` with
/// `data` and neither, as `waymark validate` holds.
fn alert_or_silent(schema: &mut schemars::Schema) {
    let line = |f: &str| serde_json::json!({"required": [f], "properties": {f: {"not": {"type": "null"}}}});
    schema.insert(
        "if".into(),
        serde_json::json!({"required": ["silent"], "properties": {"silent": {"const": true}}}),
    );
    schema.insert(
        "then".into(),
        serde_json::json!({
            "required": ["data"],
            "properties": {
                "title": {"type": "null"},
                "body": {"type": "null"},
                "data": {"minProperties": 1},
            },
        }),
    );
    schema.insert(
        "else".into(),
        serde_json::json!({"anyOf": [line("title"), line("body")]}),
    );
}

/// Leaves out the `default` a field's type gives the schema, when the default a file gets
/// depends on the rest of it (an SMS's `sms_type` is its journey's kind), as its description says.
fn no_fixed_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

fn one_channel(schema: &mut schemars::Schema) {
    exactly_one(schema, &["email", "sms", "push", "in_app", "webhook"]);
}

/// The JSON Schema of a journey file, generated from these types.
pub fn schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Journey);
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locale_finds_its_variant_by_ever_shorter_tags() {
        let send = |title: &str| Send {
            email: None,
            sms: None,
            push: Some(PushTemplate {
                title: Some(title.into()),
                body: Some(".".into()),
                silent: false,
                data: Default::default(),
                expires: None,
            }),
            in_app: None,
            webhook: None,
            fallback: None,
            locales: BTreeMap::new(),
            send_within: None,
        };
        let mut s = send("default");
        for k in ["zh", "zh-hant", "pt-br"] {
            s.locales.insert(k.into(), send(k));
        }
        for (user, chose) in [
            ("zh-Hant-TW", Some("zh-hant")),
            ("zh_Hans_CN", Some("zh")),
            ("zh", Some("zh")),
            ("pt-BR", Some("pt-br")),
            ("pt-PT", None),
            ("fr", None),
        ] {
            assert_eq!(s.localized(Some(user)).1, chose, "{user}");
        }
    }

    #[test]
    fn a_time_of_day_is_h_mm_or_hh_mm() {
        for (text, ok) in [
            ("09:00", Some((9, 0))),
            ("9:00", Some((9, 0))),
            ("23:59", Some((23, 59))),
            ("+8:00", None),
            ("8:0", None),
            ("24:00", None),
            ("009:00", None),
            ("9:+5", None),
            ("9h00", None),
        ] {
            let got = TimeOfDay::try_from(text.to_string())
                .ok()
                .map(|t| (t.hour, t.minute));
            assert_eq!(got, ok, "{text}");
        }
    }

    /// A time written another common way is refused with the `HH:MM` it means.
    #[test]
    fn a_time_written_another_way_is_told_as_hh_mm() {
        for (text, meant) in [
            ("9am", Some("09:00")),
            ("9 PM", Some("21:00")),
            ("12am", Some("00:00")),
            ("12pm", Some("12:00")),
            ("9:30pm", Some("21:30")),
            ("9.30", Some("09:30")),
            ("9h30", Some("09:30")),
            ("0900", Some("09:00")),
            ("21", Some("21:00")),
            ("21:00:00", Some("21:00")),
            ("21:00:30", None),
            ("13pm", None),
            ("25", None),
            ("noon", None),
        ] {
            let err = TimeOfDay::try_from(text.to_string()).expect_err(text);
            match meant {
                Some(m) => assert!(err.contains(&format!("write \"{m}\"")), "{text}: {err}"),
                None => assert!(err.contains("e.g. \"09:00\""), "{text}: {err}"),
            }
        }
    }
}
