//! User profiles: traits set by `identify`, recent event history, suppressions, and how (or why
//! not) a user can be reached on each channel. Pure data; the store persists it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, Kind};
use crate::journey::{Channel, Journey, MarkKind, Marker};
use crate::small_map::SmallMap;

/// How many recent occurrences of one event a profile remembers (for `repeated` triggers and
/// for exits that arrive before the entry they should end).
pub const HISTORY_PER_EVENT: usize = 32;
/// The name `identify` calls go by in a profile's [`Profile::history`].
const IDENTIFY: &str = "$identify";

/// A push device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub platform: String,
    pub token: String,
    /// The provider's handle for the device (an SNS platform endpoint ARN), once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The app sent the token of a disabled device again: it is good again, and its endpoint,
    /// which the provider disabled, is to be enabled again (once, by the next registration).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revived: bool,
    /// When the latest identify that sent this token happened (as `push_tokens` or as its
    /// `context.device.token`), or the event that brought the device: whose the device is when
    /// two users' events race for it (see `Runtime::claim_device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    /// When the provider last disabled it (none for a device disabled before this was kept): a
    /// token sent before that does not make it good again, and one sent as
    /// `context.device.token` only a day after it (see [`Profile::apply`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<Timestamp>,
    /// How the app sent its token: an identify's `push_tokens`, or a device's
    /// `context.device.token`.
    #[serde(default, skip_serializing_if = "DeviceSource::is_push_tokens")]
    pub source: DeviceSource,
}

/// How the app sent a push device's token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSource {
    /// An identify's `push_tokens` entry, with its platform (and every device kept before the
    /// source was).
    #[default]
    PushTokens,
    /// The `context.device.token` Segment's mobile libraries send with every call, its platform
    /// told by the device's type or system.
    Context,
}

impl DeviceSource {
    fn is_push_tokens(&self) -> bool {
        *self == DeviceSource::PushTokens
    }
}

/// How much later than a device's `registered_at` an event other than an identify that sends
/// its token as `context.device.token` registers it again (a profile write, once a day of use):
/// whose a shared phone is goes by that time, and so does which of her devices she keeps (see
/// [`MAX_DEVICES`]); sooner, the same token again costs nothing.
pub const DEVICE_SEEN_AGAIN: SignedDuration = SignedDuration::from_hours(24);
/// How long after the provider disabled a device its token sent as `context.device.token`
/// makes it good again: a dead token sent with every event enables its endpoint again at most
/// once a day, not at each event.
pub const REVIVE_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// The most push devices a profile keeps ([`Profile::set_devices`]).
pub const MAX_DEVICES: usize = 10;

/// The most traits a profile keeps. A profile is one DynamoDB item (400 KB at most; past it
/// every write of the user fails, and her events with it): Segment's profiles keep 6,000, spread
/// over many records; one record keeps fewer. An identify's traits are bounded by its size
/// alone ([`crate::event::MAX_EVENT_BYTES`]): past this bound its new traits are not kept.
pub const MAX_PROFILE_TRAITS: usize = 1_000;
/// The most a profile's traits weigh ([`trait_weight`]: their names, values and times, as
/// stored), in bytes: a third of DynamoDB's 400 KB item, leaving the rest for the history,
/// devices, anonymous ids and marks; four times the largest identify (32 KB), two hundred times
/// a usual profile's traits.
pub const MAX_TRAIT_BYTES: usize = 128 * 1024;
/// The most removed traits whose time of removal a profile keeps ([`Profile::apply`]), and
/// what their names may weigh.
pub const MAX_REMOVED_TIMES: usize = 1_000;
pub const MAX_REMOVED_BYTES: usize = 64 * 1024;
/// The most anonymous ids a profile lists (hers, and others' seen with her): as Segment's
/// profiles take 100 merges, after which an anonymous id is no longer merged but the user's
/// events go on.
pub const MAX_ANONYMOUS_IDS: usize = 100;
/// The most a change of a watched trait weighs ([`trait_weight`] of `from` and `to`) for the
/// profile to note it ([`Profile::trait_changes`]), and the most such notes it keeps, in all
/// and per trait: the notes add at most 32 KB to a profile whatever journeys are published,
/// and identifies of one user handled at once (each of which may be run again after a
/// conflict) each find their own.
pub const MAX_CHANGE_BYTES: usize = 1024;
pub const MAX_TRAIT_CHANGES: usize = 32;
pub const MAX_CHANGES_PER_TRAIT: usize = 4;
/// How long a note is kept: a message is retried for at most as long as SQS keeps it.
pub const MAX_CHANGE_AGE: SignedDuration = SignedDuration::from_hours(14 * 24);
/// Traits kept whatever the bounds: the addresses, zone and locale (each checked and small),
/// and consent (an opt-out is never lost).
const ALWAYS_KEPT: [&str; 5] = ["email", "phone", "timezone", "locale", "subscriptions"];
/// The channels whose suppression is about an address, and the trait holding it.
const ADDRESS_TRAITS: [(Channel, &str); 2] = [(Channel::Email, "email"), (Channel::Sms, "phone")];

/// The trait holding a user's address on `channel`, for the channels [`ADDRESS_TRAITS`] lists.
fn address_trait(channel: Channel) -> Option<&'static str> {
    ADDRESS_TRAITS
        .iter()
        .find(|(c, _)| *c == channel)
        .map(|(_, k)| *k)
}
/// The most topics a profile keeps a choice for (`subscriptions.topics`): past it, a no for a
/// new topic takes the place of the yes stated longest ago (an opt-out is kept before an
/// opt-in), and a yes for a new topic, or a no when every choice kept is a no, is not kept;
/// the timeline's `not_kept` names what was dropped. One she has is updated.
pub const MAX_TOPICS: usize = 100;

/// Why a topic's choice was dropped, for the timeline's `not_kept`.
pub fn past_the_topics() -> String {
    format!(
        "the profile keeps choices for at most {MAX_TOPICS} topics: past that a no takes the place of the yes stated longest ago (that topic's default applies to her again), and a new yes, or a no when every choice kept is a no, is not kept"
    )
}

/// Whether `subs` (her `subscriptions` trait) holds a choice for `choice`: a channel
/// (`email`) or a topic (`topics.newsletter`).
fn holds_choice(subs: Option<&Value>, choice: &str) -> bool {
    match choice.strip_prefix("topics.") {
        Some(id) => subs
            .and_then(|s| s.get("topics"))
            .is_some_and(|t| t.get(id).is_some()),
        None => subs.is_some_and(|s| s.get(choice).is_some()),
    }
}

/// Makes room in `topics` (full) for a no: forgets the yes stated longest ago, and its times in
/// `times` (else they would outlive it, unbounded). Returns its topic, or `None` when every
/// choice kept is a no.
fn forget_oldest_yes(
    topics: &mut serde_json::Map<String, Value>,
    times: &mut SmallMap<String, Timestamp>,
    app_choices: &mut SmallMap<String, AppChoice>,
) -> Option<String> {
    let stated = |id: &str| {
        times
            .get(crate::store::join(&["stated:subscriptions.topics.", id]).as_str())
            .copied()
    };
    let oldest = topics
        .iter()
        .filter(|(_, v)| **v == Value::Bool(true))
        .min_by_key(|(id, _)| stated(id))
        .map(|(id, _)| id.clone())?;
    topics.remove(&oldest);
    times.remove(crate::store::join(&["subscriptions.topics.", &oldest]).as_str());
    times.remove(crate::store::join(&["stated:subscriptions.topics.", &oldest]).as_str());
    app_choices.remove(crate::store::join(&["topics.", &oldest]).as_str());
    Some(oldest)
}

/// Why a trait past the bounds was not kept, for the timeline and the logs.
pub fn past_the_bounds() -> String {
    format!(
        "the profile keeps at most {MAX_PROFILE_TRAITS} traits, {} KB of them: a new trait past that is not added, one it has is still updated when it fits",
        MAX_TRAIT_BYTES / 1024
    )
}

/// What trait `name` with `value` weighs against [`MAX_TRAIT_BYTES`]: its name (in `traits`
/// and `trait_times`), its value as JSON, and its time.
pub fn trait_weight(name: &str, value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` to a counter cannot fail; were it to, the name alone is counted.
    let _ = serde_json::to_writer(&mut n, value);
    2 * name.len() + n.0 + 48
}

/// The room a profile's traits take of their bounds, as an identify or a merge fills it.
struct Room {
    count: usize,
    bytes: usize,
}

impl Room {
    fn of(p: &Profile) -> Room {
        Room {
            count: p.traits.len(),
            bytes: p.traits.iter().map(|(k, v)| trait_weight(k, v)).sum(),
        }
    }

    /// Whether trait `name` may hold `value` in place of `old` (what it holds now, if
    /// anything): a new trait within the bounds, one it has when it does not grow past them. A
    /// trait taken is counted.
    fn take(&mut self, name: &str, old: Option<&Value>, value: &Value) -> bool {
        let new = trait_weight(name, value);
        let was = old.map_or(0, |o| trait_weight(name, o));
        let count = self.count + usize::from(old.is_none());
        let bytes = (self.bytes + new).saturating_sub(was);
        let fits = (old.is_some() || count <= MAX_PROFILE_TRAITS)
            && (bytes <= MAX_TRAIT_BYTES || new <= was);
        if fits || ALWAYS_KEPT.contains(&name) {
            self.count = count;
            self.bytes = bytes;
            return true;
        }
        false
    }

    /// Trait `name`, which held `old`, is removed.
    fn free(&mut self, name: &str, old: Option<&Value>) {
        if let Some(o) = old {
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(trait_weight(name, o));
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    /// Everything `identify` set, as the app sent it (`email`, `phone`, `timezone`, …).
    #[serde(default)]
    pub traits: Map<String, Value>,
    /// When each trait was last set, so that an older `identify` arriving late loses.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub trait_times: SmallMap<String, Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Channels this user must not be sent on, with the reason (bounce, complaint, opt-out).
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub suppressed: SmallMap<Channel, String>,
    /// The address each `email` or `sms` suppression is about (her `email` or `phone` when it
    /// was suppressed, [`Profile::suppress`]): that address sent again, also after she removed
    /// it or in another case, does not lift it; another does. None for one suppressed before
    /// these were kept: her address now stands for it.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub suppressed_addresses: SmallMap<Channel, String>,
    /// Per subscription choice (a channel, `email`, or a topic, `topics.newsletter`): the
    /// value the app's identifies last stated for it, and when. Segment's libraries send every
    /// cached trait again on every identify, stamped anew: that same value again is no new
    /// statement, and does not undo a choice made since another way (an unsubscribe link
    /// followed, a login's narrowing); another value is (she unticked, or ticked, the box).
    /// Kept as long as the choice is.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub app_choices: SmallMap<String, AppChoice>,
    /// Recent occurrences of each event: (time, messageId), newest last.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub history: SmallMap<String, Vec<(Timestamp, String)>>,
    /// Per journey with an `inactive` trigger: when the inactivity check that an activity of
    /// this user armed is due. Activity before then arms nothing more (the check, when due,
    /// looks again from the latest activity), so a user has one check pending per journey
    /// rather than one per event.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub inactivity_checks: SmallMap<String, Timestamp>,
    /// On an identified user: the anonymous ids (`anonymousId`) it turned out to be, each merged
    /// into it once (see [`Profile::absorb`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anonymous_ids: Vec<String>,
    /// On an identified user: anonymous ids it was seen with that had turned out to be someone
    /// else before (a shared device: the first to log in keeps it). Not hers; kept so that her
    /// next event with one does not try the merge again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anonymous_ids_of_others: Vec<String>,
    /// On an anonymous user (`anon:<id>`): the user it turned out to be. Its later events are
    /// that user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The traits last taken from an event's `context` (see [`Profile::take_from_device`]):
    /// the value and that event's time.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub from_device: SmallMap<String, FromDevice>,
    /// When an event last met the `where` of a journey's exit or goal ([`crate::journey::Marker::key`]),
    /// whether the user was in the journey or not: an exit or a goal with a `where` that
    /// arrives before its trigger (events out of order) is known by it when the trigger comes
    /// (the history keeps events' times, not their properties).
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub marks: SmallMap<String, Timestamp>,
    /// Per journey whose marks the profile holds: the newest version of it that an engine
    /// which wrote or kept them knew ([`Profile::keep_marks`]). An engine whose list of
    /// versions is older (cached before a publish) does not drop that journey's marks it does
    /// not know: they may be the new version's.
    #[serde(default, skip_serializing_if = "SmallMap::is_empty")]
    pub mark_versions: SmallMap<String, u32>,
    /// Per trait a published `trait_changed` journey watches: the latest changes identifies
    /// made to it, oldest first ([`Profile::apply_watching`]), so that an identify coming
    /// again (retried after it failed half-way, the profile written already, or run again
    /// after a conflict with another identify of hers) still knows what it changed. Not the
    /// user's data: `GET /v1/users/{id}` does not show them.
    #[serde(
        default,
        skip_serializing_if = "SmallMap::is_empty",
        deserialize_with = "one_or_more_notes"
    )]
    pub trait_changes: SmallMap<String, Vec<TraitChange>>,
    /// When the user's data was erased (`DELETE /v1/users/{id}`): an event received before
    /// then (queued as the erasure ran) is dropped, not applied to whoever she is since. A
    /// profile holding only this is the erasure's mark ([`Profile::erased`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<Timestamp>,
    /// What an erasure request could not finish, for the next to (see [`ErasureLeft`]): kept
    /// on the mark, which it does not make any less a mark ([`Profile::is_erasure_mark`]).
    /// Not the user's data: `GET /v1/users/{id}` does not show it.
    #[serde(default, skip_serializing_if = "ErasureLeft::is_empty")]
    pub erasure_left: ErasureLeft,
}

/// What an erasure request left for the next one (the answer's `remaining`), kept on the mark
/// in place of her profile so that nothing of hers stays live in between: the handles of her
/// push devices the provider could not delete now (platform, token and endpoint only: the
/// token names the device's claim, still hers until its endpoint is gone), and the visitors she
/// was whose erasure stopped at the request's bound (their anonymous ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureLeft {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Device>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visitors: Vec<String>,
}

impl ErasureLeft {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.visitors.is_empty()
    }
}

/// What an identify did to a trait: its value before (`None`: not set) and after (`None`:
/// removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitChange {
    /// The identify's messageId.
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
    /// When `from` was set, or with no `from` when she removed the trait, if she did (its
    /// [`Profile::trait_times`]): a login's merge weighs the visitor's value against it
    /// ([`Profile::rebase_changes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_at: Option<Timestamp>,
    /// When the change was noted (the clock's time, not the identify's): a note older than
    /// [`MAX_CHANGE_AGE`] is forgotten. `None` in a note written before notes had times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noted_at: Option<Timestamp>,
    /// The identify's own time (its stamp): an enrollment entered later on a trigger stamped
    /// before it (events out of order) exits or converts on it at entry, as the identify would
    /// have made it had it come after. `None` in a note written before notes kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// [`Profile::trait_changes`] as stored: a list per trait, or (written before it kept several)
/// one change.
fn one_or_more_notes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SmallMap<String, Vec<TraitChange>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Notes {
        More(Vec<TraitChange>),
        One(TraitChange),
    }
    let stored = std::collections::BTreeMap::<String, Notes>::deserialize(d)?;
    Ok(stored
        .into_iter()
        .map(|(k, n)| match n {
            Notes::More(l) => (k, l),
            Notes::One(c) => (k, vec![c]),
        })
        .collect())
}

impl TraitChange {
    /// The trigger event a `trait_changed` journey reads: `{trait, from, to}`, with `from` or
    /// `to` left out when the trait was missing then (so `event.from` reads as missing).
    pub fn properties(&self, name: &str) -> Value {
        let mut m = Map::new();
        m.insert("trait".into(), Value::String(name.to_string()));
        if let Some(v) = &self.from {
            m.insert("from".into(), v.clone());
        }
        if let Some(v) = &self.to {
            m.insert("to".into(), v.clone());
        }
        Value::Object(m)
    }

    fn weight(&self, name: &str) -> usize {
        [&self.from, &self.to]
            .into_iter()
            .flatten()
            .map(|v| trait_weight(name, v))
            .sum()
    }
}

/// Whether a trait holds the same value before and after an identify, as conditions compare
/// (`1` is `1.0`), an email address's case no other address (as [`Profile::apply_remembering`]
/// sees it): an app alternating the forms changes nothing, and enters no one again and again.
fn same_value(name: &str, a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Value::String(x)), Some(Value::String(y))) if name == "email" => {
            x.eq_ignore_ascii_case(y)
        }
        (Some(x), Some(y)) => crate::condition::json_equal(x, y),
        _ => false,
    }
}

/// A subscription choice as an identify last stated it (`subscriptions: {email: true}`), and
/// that identify's time (see [`Profile::app_choices`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChoice {
    pub value: Value,
    pub at: Timestamp,
}

/// A trait's value as a device last sent it in `context`, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromDevice {
    pub value: String,
    pub at: Timestamp,
}

/// Whether a value a device sent looks like what its trait holds.
type Valid = fn(&str) -> bool;

/// The traits a device's `context` supplies (Segment's iOS and Android libraries send both with
/// every call), with what a value must look like to be taken.
const DEVICE_TRAITS: [(&str, Valid); 2] = [
    ("timezone", |z| jiff::tz::TimeZone::get(z).is_ok()),
    ("locale", is_locale_tag),
];

/// A BCP 47 tag as devices send it (`en-US`, `pt_BR`, `zh-Hant-TW`): a language of 2 or 3
/// letters, then parts of 1 to 8 letters or digits, joined by `-` or `_`. A language's name
/// (`French`, `english`) is none: no journey's `locales` variant would ever match it.
fn is_locale_tag(l: &str) -> bool {
    let mut parts = l.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    l.len() <= 35
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The tag of a language written by its English name, as a settings screen may send it
/// (`French` is `fr`).
fn language_code(name: &str) -> Option<&'static str> {
    const NAMES: [(&str, &str); 24] = [
        ("arabic", "ar"),
        ("chinese", "zh"),
        ("czech", "cs"),
        ("danish", "da"),
        ("dutch", "nl"),
        ("english", "en"),
        ("finnish", "fi"),
        ("french", "fr"),
        ("german", "de"),
        ("greek", "el"),
        ("hebrew", "he"),
        ("hindi", "hi"),
        ("hungarian", "hu"),
        ("indonesian", "id"),
        ("italian", "it"),
        ("japanese", "ja"),
        ("korean", "ko"),
        ("norwegian", "nb"),
        ("polish", "pl"),
        ("portuguese", "pt"),
        ("russian", "ru"),
        ("spanish", "es"),
        ("swedish", "sv"),
        ("turkish", "tr"),
    ];
    let name = name.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| *code)
}

/// What is wrong with a device's `context.timezone` or `context.locale` (`name`), or an
/// identify's `locale` trait, so that it is not taken as the user's; `None` when it would be,
/// or `name` is another.
pub fn device_trait_problem(name: &str, value: &Value) -> Option<String> {
    let (_, valid) = DEVICE_TRAITS.iter().find(|(n, _)| *n == name)?;
    if value.as_str().is_some_and(valid) {
        return None;
    }
    Some(match name {
        "timezone" => zone_problem(value.as_str()),
        _ => match value.as_str().and_then(language_code) {
            Some(code) => format!(
                "must be a locale tag like fr-FR, en or pt_BR, not a language's name: did you mean `{code}`?"
            ),
            None => "must be a locale tag like fr-FR, en or pt_BR".to_string(),
        },
    })
}

/// What is wrong with a `timezone` that names no zone: the near name it may have meant
/// (`Europe/Pariss`, `America/New York`), else what a zone name looks like.
pub fn zone_problem(sent: Option<&str>) -> String {
    const EXAMPLE: &str = "e.g. Europe/Paris or America/New_York";
    let advice = match sent {
        // Spaces for underscores, as a city is written (`America/New York`).
        Some(z) if jiff::tz::TimeZone::get(&z.trim().replace(' ', "_")).is_ok() => {
            format!("did you mean `{}`?", z.trim().replace(' ', "_"))
        }
        Some(z) => crate::dsl::zone_advice(z, EXAMPLE),
        None => EXAMPLE.to_string(),
    };
    format!("must be an IANA time zone name, {advice}")
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Address {
    One(String),
    Devices(Vec<Device>),
}

/// Whether a visitor's choice `theirs` is taken over the user's `mine` at a login: consent
/// only narrows (a choice only the visitor made, or her `false` over the user's `true`).
fn narrows(mine: Option<&Value>, theirs: &Value) -> bool {
    matches!(
        (mine, theirs),
        (None, _) | (Some(Value::Bool(true)), Value::Bool(false))
    )
}

/// Why a user could not be reached on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    NoAddress,
    OptedOut,
    Suppressed,
}

impl Unreachable {
    pub fn as_str(&self) -> &'static str {
        match self {
            Unreachable::NoAddress => "no_address",
            Unreachable::OptedOut => "opted_out",
            Unreachable::Suppressed => "suppressed",
        }
    }
}

impl Profile {
    pub fn new(user_id: &str) -> Self {
        Profile {
            user_id: user_id.to_string(),
            ..Default::default()
        }
    }

    /// The mark an erasure leaves in place of the profile: nothing but the user id and when
    /// (see [`Profile::erased_at`]).
    pub fn erased(user_id: &str, at: Timestamp) -> Self {
        Profile {
            user_id: user_id.to_string(),
            erased_at: Some(at),
            ..Default::default()
        }
    }

    /// The mark of an erasure that left `left` for the next request: a mark all the same.
    pub fn erased_leaving(user_id: &str, at: Timestamp, left: ErasureLeft) -> Self {
        Profile {
            erasure_left: left,
            ..Profile::erased(user_id, at)
        }
    }

    /// Whether this is an erasure's mark, nothing known of the user since (what the erasure
    /// left for its next request, [`Profile::erasure_left`], is none of her data).
    pub fn is_erasure_mark(&self) -> bool {
        self.erased_at.is_some_and(|at| {
            *self == Profile::erased_leaving(&self.user_id, at, self.erasure_left.clone())
        })
    }

    /// Whether something received at `at` came before the user's erasure, or with it (and is
    /// dropped).
    pub fn erased_after(&self, at: Timestamp) -> bool {
        self.erased_at.is_some_and(|erased| at <= erased)
    }

    /// What conditions and templates see as `profile`: the traits, plus `user_id`.
    pub fn scope(&self) -> Value {
        let mut m = self.traits.clone();
        m.entry("user_id".to_string())
            .or_insert_with(|| Value::String(self.user_id.clone()));
        Value::Object(m)
    }

    fn subscribed(&self, channel: Channel) -> bool {
        self.traits
            .get("subscriptions")
            .and_then(|s| s.get(channel.as_str()))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// Applies a journey's `update` step that ran at `at`: sets and unsets traits as written,
    /// newer wins per trait as for an identify. A trait set or removed after `at` (an identify
    /// that came after the step, which a retry of the step's transition finds) stands, and is
    /// returned with when it was set; the others take `at` as their time, so an older identify
    /// arriving late does not undo the step. Applying one update twice changes nothing more.
    /// `at` is `None` for an update kept by an engine that did not stamp them: applied as
    /// written, its time not noted. A changed `email` or `phone` lifts that channel's
    /// suppression (a bounce or complaint of the old address), as a new one from an identify
    /// does: another than the suppressed address (an email's in another case is the same).
    pub fn apply_update(
        &mut self,
        set: &Map<String, Value>,
        unset: &[String],
        at: Option<Timestamp>,
    ) -> Vec<(String, Timestamp)> {
        let mut stands = Vec::new();
        // Set after `at`: by an identify (or an update), or by a device whose value it holds
        // now (its zone, its locale).
        let newer = |p: &Profile, k: &str| {
            let at = at?;
            let device = p
                .from_device
                .get(k)
                .filter(|d| p.traits.get(k).and_then(Value::as_str) == Some(d.value.as_str()))
                .map(|d| d.at);
            [p.trait_times.get(k).copied(), device]
                .into_iter()
                .flatten()
                .filter(|t| *t > at)
                .max()
        };
        // Another address than the suppressed one (an email's in another case is none).
        let changed: Vec<Channel> = ADDRESS_TRAITS
            .into_iter()
            .filter(|(c, k)| {
                set.get(*k)
                    .filter(|v| !v.is_null())
                    .is_some_and(|v| !same_value(k, self.suppressed_address(*c).as_ref(), Some(v)))
            })
            .filter(|(_, k)| newer(self, k).is_none())
            .map(|(c, _)| c)
            .collect();
        for (k, v) in set
            .iter()
            .map(|(k, v)| (k, Some(v)))
            .chain(unset.iter().map(|k| (k, None)))
        {
            if let Some(t) = newer(self, k) {
                stands.push((k.clone(), t));
                continue;
            }
            // A null removes the trait, as an identify's does (the engine moves it to `unset`;
            // an update written before that may still carry one).
            match v.filter(|v| !v.is_null()) {
                Some(v) => {
                    self.traits.insert(k.clone(), v.clone());
                }
                None => {
                    self.traits.remove(k);
                }
            }
            if let Some(at) = at {
                self.trait_times.insert(k.clone(), at);
            }
        }
        for channel in changed {
            self.lift_suppression(channel);
        }
        stands
    }

    /// Suppresses `channel` for `reason` (a bounce, a complaint, STOP, a disabled endpoint),
    /// noting the address it is about (her `email` or `phone` now), which only another
    /// address lifts.
    pub fn suppress(&mut self, channel: Channel, reason: &str) {
        self.suppressed.insert(channel, reason.to_string());
        let address = address_trait(channel)
            .and_then(|k| self.traits.get(k))
            .and_then(Value::as_str)
            .map(String::from);
        match address {
            Some(a) => {
                self.suppressed_addresses.insert(channel, a);
            }
            None => {
                self.suppressed_addresses.remove(&channel);
            }
        }
    }

    /// The address `channel`'s suppression is about: the one noted with it, else (suppressed
    /// before these were noted, or naming none) her address now.
    fn suppressed_address(&self, channel: Channel) -> Option<Value> {
        if let Some(a) = self.suppressed_addresses.get(&channel) {
            return Some(Value::String(a.clone()));
        }
        address_trait(channel)
            .and_then(|k| self.traits.get(k))
            .cloned()
    }

    /// Her address on `channel` changed: its suppression, about the one before, is lifted.
    fn lift_suppression(&mut self, channel: Channel) {
        self.suppressed.remove(&channel);
        self.suppressed_addresses.remove(&channel);
    }

    /// What stands behind `why` for this user on `channel`, said for the timeline (which trait
    /// is missing, since when an opt-out holds, what suppressed the address): the answer to
    /// "why did she not get it" without reading the profile.
    pub fn unreachable_detail(&self, channel: Channel, why: Unreachable) -> Option<String> {
        match why {
            Unreachable::NoAddress => match channel {
                Channel::Email => Some("no `email` trait: an identify sets it".into()),
                Channel::Sms => Some("no `phone` trait: an identify sets it".into()),
                Channel::Push => {
                    Some("no push device: an identify registers one with `push_tokens`".into())
                }
                Channel::InApp | Channel::Webhook => None,
            },
            Unreachable::OptedOut => Some(match self.subscription_changed_at(channel.as_str()) {
                Some(at) => format!("`subscriptions.{channel}` is false, since {at}"),
                None => format!("`subscriptions.{channel}` is false"),
            }),
            Unreachable::Suppressed => match self.suppressed.get(&channel) {
                Some(reason) => Some(reason.clone()),
                None if channel == Channel::Push => {
                    Some("every push device is disabled (the provider refused its token)".into())
                }
                None => None,
            },
        }
    }

    /// Notes that the subscription to `channel` changed at `at` (kept in `trait_times` as
    /// `subscriptions.{channel}`, beside the whole object's time).
    pub fn subscription_changed(&mut self, channel: &str, at: Timestamp) {
        self.trait_times
            .insert(crate::store::join(&["subscriptions.", channel]), at);
    }

    /// An identify's `subscriptions` stated at `at`: each channel's choice taken unless one
    /// stated later is known for that channel, and each topic's (`topics: {newsletter: false}`)
    /// the same way, by topic. Returns the topics not kept, past [`MAX_TOPICS`]
    /// (`subscriptions.topics.{id}`).
    fn state_subscriptions(&mut self, stated: &Value, at: Timestamp) -> Vec<String> {
        let Some(channels) = stated.as_object() else {
            return Vec::new();
        };
        let mut merged = self
            .traits
            .get("subscriptions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let whole = self.trait_times.get("subscriptions").copied();
        let mut not_kept = Vec::new();
        for (c, b) in channels {
            if c == "topics" {
                let Some(stated) = b.as_object() else {
                    continue;
                };
                let mut topics = merged
                    .get("topics")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (id, b) in stated {
                    // Full: a no takes a yes's place; a yes, or a no with no yes to replace,
                    // is dropped.
                    let full = !topics.contains_key(id) && topics.len() >= MAX_TOPICS;
                    let a_yes = topics.values().any(|v| *v == Value::Bool(true));
                    if full && (*b != Value::Bool(false) || !a_yes) {
                        not_kept.push(crate::store::join(&["subscriptions.topics.", id]));
                        continue;
                    }
                    let key = crate::store::join(&["topics.", id]);
                    if self.take_choice(&key, topics.get(id), b, at, None) {
                        if full {
                            if let Some(yes) = forget_oldest_yes(
                                &mut topics,
                                &mut self.trait_times,
                                &mut self.app_choices,
                            ) {
                                not_kept.push(crate::store::join(&["subscriptions.topics.", &yes]));
                            }
                        }
                        topics.insert(id.clone(), b.clone());
                    }
                }
                merged.insert("topics".to_string(), Value::Object(topics));
                continue;
            }
            if self.take_choice(c, merged.get(c), b, at, whole) {
                merged.insert(c.clone(), b.clone());
            }
        }
        self.traits
            .insert("subscriptions".to_string(), Value::Object(merged));
        let latest = self.trait_times.get("subscriptions").copied();
        if latest.is_none_or(|t| t < at) {
            self.trait_times.insert("subscriptions".to_string(), at);
        }
        not_kept
    }

    /// Whether the choice `b` for `key` (a channel, or `topics.{id}`), stated at `at`, is
    /// taken over `held`: not when one stated later is known. Notes when it was stated, and
    /// when it changed. `whole` is when any choice was last stated, for profiles from before
    /// each kept its own time.
    fn take_choice(
        &mut self,
        key: &str,
        held: Option<&Value>,
        b: &Value,
        at: Timestamp,
        whole: Option<Timestamp>,
    ) -> bool {
        // The app's value as it stated it before, sent again (every cached trait comes with
        // every identify): no new statement, when the choice changed since another way (an
        // unsubscribe link). The app's latest statement is noted, taken or not.
        let repeated = held != Some(b) && self.app_choices.get(key).is_some_and(|c| c.value == *b);
        if self.app_choices.get(key).is_none_or(|c| c.at <= at) {
            self.app_choices.insert(
                key.to_string(),
                AppChoice {
                    value: b.clone(),
                    at,
                },
            );
        }
        if repeated {
            return false;
        }
        // Profiles from before channels kept their own time: an opt-out is judged by when
        // the channel last changed (a late opt-out is taken), an opt-in also by when any
        // choice was last stated (an opt-out stated again since is not undone by it).
        let last = self.subscription_stated_at(key).or_else(|| {
            let changed = self.subscription_changed_at(key);
            match b {
                Value::Bool(false) => changed,
                _ => changed.max(whole),
            }
        });
        if last.is_some_and(|t| t > at) {
            return false;
        }
        // When each choice last changed: what a skip for its opt-out says
        // (`unreachable_detail`, `topic::standing`).
        if held != Some(b) {
            self.subscription_changed(key, at);
        }
        self.subscription_stated(key, at);
        true
    }

    /// When the choice for topic `id` last changed, if it was noted.
    pub fn topic_changed_at(&self, id: &str) -> Option<Timestamp> {
        self.subscription_changed_at(&crate::store::join(&["topics.", id]))
    }

    /// Turns topic `id` off at `at` (its unsubscribe link was followed), as a statement of the
    /// choice then: one stated later stands.
    pub fn unsubscribe_topic(&mut self, id: &str, at: Timestamp) {
        let key = crate::store::join(&["topics.", id]);
        let subs = self
            .traits
            .entry("subscriptions".to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if !subs.is_object() {
            *subs = Value::Object(Default::default());
        }
        let held = subs.get("topics").and_then(|t| t.get(id)).cloned();
        if self.subscription_stated_at(&key).is_some_and(|t| t > at) {
            return;
        }
        if held != Some(Value::Bool(false)) {
            self.subscription_changed(&key, at);
        }
        self.subscription_stated(&key, at);
        if let Some(subs) = self
            .traits
            .get_mut("subscriptions")
            .and_then(Value::as_object_mut)
        {
            let topics = subs
                .entry("topics".to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !topics.is_object() {
                *topics = Value::Object(Default::default());
            }
            if let Some(topics) = topics.as_object_mut() {
                topics.insert(id.to_string(), Value::Bool(false));
            }
        }
        if self
            .trait_times
            .get("subscriptions")
            .is_none_or(|t| *t < at)
        {
            self.trait_times.insert("subscriptions".into(), at);
        }
    }

    /// Notes that the choice for `channel` was stated at `at` (an identify, an unsubscribe
    /// link): an earlier statement arriving later does not undo it.
    pub fn subscription_stated(&mut self, channel: &str, at: Timestamp) {
        let key = crate::store::join(&["stated:subscriptions.", channel]);
        if self.trait_times.get(key.as_str()).is_none_or(|t| *t < at) {
            self.trait_times.insert(key, at);
        }
    }

    fn subscription_stated_at(&self, channel: &str) -> Option<Timestamp> {
        self.trait_times
            .get(crate::store::join(&["stated:subscriptions.", channel]).as_str())
            .copied()
    }

    /// When the subscription to `channel` last changed, if it was noted.
    fn subscription_changed_at(&self, channel: &str) -> Option<Timestamp> {
        self.trait_times
            .get(crate::store::join(&["subscriptions.", channel]).as_str())
            .copied()
    }

    /// Where to reach the user on `channel`, or why not.
    pub fn address(&self, channel: Channel) -> Result<Address, Unreachable> {
        self.address_for(channel, false)
    }

    /// [`Profile::address`], past the user's unsubscribe from `channel` when `ignore_unsubscribe`
    /// (a transactional journey's non-marketing email: `Template::ignores_unsubscribe`), as
    /// Braze's and Customer.io's transactional email does. A bounce or complaint (suppression)
    /// still stops it.
    pub fn address_for(
        &self,
        channel: Channel,
        ignore_unsubscribe: bool,
    ) -> Result<Address, Unreachable> {
        if !ignore_unsubscribe && !self.subscribed(channel) {
            return Err(Unreachable::OptedOut);
        }
        if self.suppressed.contains_key(&channel) {
            return Err(Unreachable::Suppressed);
        }
        let text = |k: &str| {
            self.traits
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| Address::One(s.to_string()))
                .ok_or(Unreachable::NoAddress)
        };
        match channel {
            Channel::Email => text("email"),
            Channel::Sms => text("phone"),
            Channel::Push => {
                // Where the message goes; not when each device was registered (the profile's
                // own bookkeeping, see `Device::registered_at`).
                let live: Vec<Device> = self
                    .devices
                    .iter()
                    .filter(|d| !d.disabled)
                    .map(|d| Device {
                        registered_at: None,
                        disabled_at: None,
                        source: DeviceSource::default(),
                        ..d.clone()
                    })
                    .collect();
                if live.is_empty() {
                    Err(if self.devices.is_empty() {
                        Unreachable::NoAddress
                    } else {
                        Unreachable::Suppressed
                    })
                } else {
                    Ok(Address::Devices(live))
                }
            }
            Channel::InApp => Ok(Address::One(self.user_id.clone())),
            Channel::Webhook => Ok(Address::One(self.user_id.clone())),
        }
    }

    /// The user's time zone and locale as their device sends them with every call
    /// (`context.timezone`, `context.locale`) become the profile's `timezone` (read by quiet
    /// hours, `wait_until` and the `date` filter) and `locale` (for templates), so the app need
    /// not send them as traits, and a user who travels is followed. A value the app set itself
    /// stands: one an identify named (even earlier, until one removes it with `null`), or one a
    /// journey's `update` set. The latest event's value wins; one that does not look like a
    /// zone or a locale is ignored.
    fn take_from_device(&mut self, event: &Event) {
        for (name, valid) in DEVICE_TRAITS {
            let Some(value) = event.context.get(name).and_then(Value::as_str) else {
                continue;
            };
            let seen = self.from_device.get(name);
            if self.set_by_app(name)
                || seen.is_some_and(|d| d.at > event.timestamp)
                || !valid(value)
            {
                continue;
            }
            self.traits
                .insert(name.to_string(), Value::String(value.to_string()));
            self.from_device.insert(
                name.to_string(),
                FromDevice {
                    value: value.to_string(),
                    at: event.timestamp,
                },
            );
        }
    }

    /// Whether trait `name` holds a value the app set (an identify's, a journey `update`'s), not
    /// the one a device last sent: the app's own value stands; one it removed (`null`) leaves
    /// the device's to come.
    fn set_by_app(&self, name: &str) -> bool {
        self.traits
            .get(name)
            .is_some_and(|c| match self.from_device.get(name) {
                None => true,
                Some(d) => {
                    c.as_str() != Some(d.value.as_str())
                        || self.trait_times.get(name).is_some_and(|t| *t > d.at)
                }
            })
    }

    /// Applies an event: an `identify` sets traits (newer wins per trait) and devices; every event
    /// is remembered in the history. Idempotent: applying the same event twice changes nothing.
    /// Returns the traits not kept, past the profile's bounds ([`MAX_PROFILE_TRAITS`],
    /// [`MAX_TRAIT_BYTES`]).
    pub fn apply(&mut self, event: &Event) -> Vec<String> {
        self.apply_remembering(event, true)
    }

    /// [`Profile::apply`], the event remembered in the history only when `remember` (some
    /// journey reads its kind: an event no journey names would grow the profile, and the cost
    /// of every write of it, with each new name an app sends). An identify is always
    /// remembered. Returns the traits not kept, past the profile's bounds: a new trait
    /// beyond [`MAX_PROFILE_TRAITS`] or [`MAX_TRAIT_BYTES`], or one it has whose new value
    /// would grow it past them, is left as it was (the rest of the identify is applied).
    pub fn apply_remembering(&mut self, event: &Event, remember: bool) -> Vec<String> {
        let mut not_kept = Vec::new();
        if event.kind == Kind::Identify {
            let mut room = Room::of(self);
            // Removals first: the room they make is there for the same identify's new traits
            // whichever order their names come in, so that applying it again keeps the same.
            let (removals, sets): (Vec<_>, Vec<_>) =
                event.traits.iter().partition(|(_, v)| v.is_null());
            for (k, v) in removals.into_iter().chain(sets) {
                if k == "push_tokens" || k == "devices" {
                    self.set_devices(v, event.timestamp);
                    continue;
                }
                let newer = self
                    .trait_times
                    .get(k)
                    .is_none_or(|t| *t <= event.timestamp);
                // A new address lifts its channel's suppression (a bounce, a complaint, STOP);
                // the same one sent again (apps send every trait on every identify) does not.
                let same = |a: &Value| match (a.as_str(), v.as_str()) {
                    // An email address's case is no other address (`Ann@Example.com`).
                    (Some(a), Some(b)) if k == "email" => a.eq_ignore_ascii_case(b),
                    _ => a == v,
                };
                let channel = ADDRESS_TRAITS.iter().find(|(_, t)| t == k).map(|(c, _)| *c);
                if let Some(channel) = channel {
                    // Another than the suppressed address (after she removed it, the same
                    // sent again is no new one).
                    if newer
                        && !v.is_null()
                        && !self.suppressed_address(channel).as_ref().is_some_and(same)
                    {
                        self.lift_suppression(channel);
                    }
                }
                if k == "subscriptions" {
                    // Per channel, newer wins by channel: one channel's choice does not reset
                    // the others, and an opt-out that arrives late is not lost because another
                    // channel changed since (an unsubscribe link followed in between).
                    not_kept.extend(self.state_subscriptions(v, event.timestamp));
                    continue;
                }
                if newer {
                    if v.is_null() {
                        room.free(k, self.traits.get(k));
                        self.traits.remove(k);
                    } else if room.take(k, self.traits.get(k), v) {
                        self.traits.insert(k.clone(), v.clone());
                    } else {
                        not_kept.push(k.clone());
                        continue;
                    }
                    self.trait_times.insert(k.clone(), event.timestamp);
                }
            }
            self.forget_old_removals();
        }
        self.take_from_device(event);
        self.take_device(event);
        let name = match (&event.kind, &event.event) {
            (Kind::Track, Some(name)) if remember => name.clone(),
            (Kind::Identify, _) => IDENTIFY.to_string(),
            _ => return not_kept,
        };
        let list = self.history.get_or_insert_default(name);
        if list.iter().any(|(_, id)| *id == event.message_id) {
            return not_kept;
        }
        let at = list
            .iter()
            .position(|(t, _)| *t > event.timestamp)
            .unwrap_or(list.len());
        list.insert(at, (event.timestamp, event.message_id.clone()));
        if list.len() > HISTORY_PER_EVENT {
            let extra = list.len() - HISTORY_PER_EVENT;
            list.drain(..extra);
        }
        not_kept
    }

    /// [`Profile::apply_remembering`], and for an identify, the traits among `watched` (those a
    /// `trait_changed` journey watches, or an exit or a goal of any version someone may be
    /// enrolled on, each once) whose stored value it changed: set the first
    /// time, given another value, or removed. What it leaves as it was (the same value again,
    /// as conditions compare it, an email address in another case, a trait an identify
    /// stamped later set, one past the profile's bounds) is no change. Each change is noted in
    /// [`Profile::trait_changes`] (one of at most [`MAX_CHANGE_BYTES`]; the latest
    /// [`MAX_CHANGES_PER_TRAIT`] of a trait, [`MAX_TRAIT_CHANGES`] in all, none older than
    /// [`MAX_CHANGE_AGE`] at `now`, and only of watched traits), and the same identify applied
    /// again, changing nothing now, returns the change noted for it (found by its messageId):
    /// so a retried identify enters whom it would have entered, and a duplicate enters no one
    /// twice (the entry itself is judged once per messageId). A change too large to note, or
    /// whose note the bounds dropped before the retry, is returned only the first time (the
    /// retry logs that it found no note). A removal drops the trait's earlier notes: they hold
    /// values the app removed.
    pub fn apply_watching(
        &mut self,
        event: &Event,
        remember: bool,
        watched: &[&str],
        now: Timestamp,
    ) -> (Vec<String>, Vec<(String, TraitChange)>) {
        if !self.trait_changes.is_empty() {
            // A trait no journey (nor a version of one) watches any more keeps no notes, nor does a note outlive
            // the retries of its identify.
            self.trait_changes.retain(|k, l| {
                l.retain(|c| c.noted_at.is_some_and(|t| t + MAX_CHANGE_AGE > now));
                watched.contains(&k.as_str()) && !l.is_empty()
            });
        }
        if event.kind != Kind::Identify || watched.is_empty() {
            return (self.apply_remembering(event, remember), Vec::new());
        }
        // Handled before (its history has its messageId): a retry, or a run again after a
        // conflict.
        let again = self
            .history
            .get(IDENTIFY)
            .is_some_and(|l| l.iter().any(|(_, id)| *id == event.message_id));
        let before: Vec<(Option<Value>, Option<Timestamp>)> = watched
            .iter()
            .map(|n| {
                (
                    self.traits.get(*n).cloned(),
                    self.trait_times.get(*n).copied(),
                )
            })
            .collect();
        let not_kept = self.apply_remembering(event, remember);
        let mut changes = Vec::new();
        for (name, (from, from_at)) in watched.iter().zip(before) {
            let to = self.traits.get(*name);
            if !same_value(name, from.as_ref(), to) {
                let change = TraitChange {
                    message_id: event.message_id.clone(),
                    from,
                    to: to.cloned(),
                    from_at,
                    noted_at: Some(now),
                    at: Some(event.timestamp),
                };
                self.note_change(name, change.clone());
                changes.push((name.to_string(), change));
            } else if let Some(c) = self
                .trait_changes
                .get(*name)
                .and_then(|l| l.iter().find(|c| c.message_id == event.message_id))
            {
                changes.push((name.to_string(), c.clone()));
            } else if again && event.traits.contains_key(*name) {
                tracing::info!(
                    user = %self.user_id,
                    message_id = %event.message_id,
                    watched = %name,
                    "an identify handled again finds no change of a watched trait noted for it: \
                     if it changed the trait the first time, its note is gone (too large, or past \
                     the bounds of the notes) and the trait_changed journeys it entered then are \
                     not entered now"
                );
            }
        }
        (not_kept, changes)
    }

    /// Notes `change` of trait `name` in [`Profile::trait_changes`], within its bounds: the
    /// trait's oldest note past [`MAX_CHANGES_PER_TRAIT`], the oldest of all past
    /// [`MAX_TRAIT_CHANGES`]. A removal drops the trait's earlier notes.
    fn note_change(&mut self, name: &str, change: TraitChange) {
        let removed = change.to.is_none();
        let small = change.weight(name) <= MAX_CHANGE_BYTES;
        let list = self.trait_changes.get_or_insert_default(name.to_string());
        if removed {
            list.clear();
        }
        if small {
            list.push(change);
            if list.len() > MAX_CHANGES_PER_TRAIT {
                list.remove(0);
            }
        }
        if list.is_empty() {
            self.trait_changes.remove(name);
        }
        loop {
            let count: usize = self.trait_changes.iter().map(|(_, l)| l.len()).sum();
            if count <= MAX_TRAIT_CHANGES {
                break;
            }
            let oldest = self
                .trait_changes
                .iter()
                .filter_map(|(k, l)| l.first().map(|c| (c.noted_at, k.clone())))
                .min();
            let Some((_, k)) = oldest else {
                break;
            };
            if let Some(l) = self.trait_changes.get_mut(k.as_str()) {
                l.remove(0);
                if l.is_empty() {
                    self.trait_changes.remove(k.as_str());
                }
            }
        }
    }

    /// A login's `changes` (the identify that brought an anonymous id, applied to her profile
    /// before the merge took the visitor's traits) as the merge leaves her profile: each
    /// trait's `from` becomes what she would have had with `visitor` merged in before the
    /// identify ([`Profile::absorb`]'s rules: the visitor's value when she had none and removed
    /// none later, or one set later than hers), and a change whose `from` is now its `to` is none, dropped with its
    /// note. A visitor's `plan: free` that the login sends again is no change; a visitor's
    /// `free` that the login makes `pro` is a change from `free`, not from nothing.
    pub fn rebase_changes(&mut self, visitor: &Profile, changes: &mut Vec<(String, TraitChange)>) {
        changes.retain_mut(|(name, c)| {
            let mut before = Profile::new(&self.user_id);
            if let Some(v) = &c.from {
                before.traits.insert(name.clone(), v.clone());
            }
            // With no `from`, the time she removed it, if she did: the visitor's older value
            // does not come back.
            if let Some(t) = c.from_at {
                before.trait_times.insert(name.clone(), t);
            }
            before.absorb(visitor);
            c.from = before.traits.get(name.as_str()).cloned();
            c.from_at = before.trait_times.get(name.as_str()).copied();
            let change = !same_value(name, c.from.as_ref(), c.to.as_ref());
            if let Some(l) = self.trait_changes.get_mut(name.as_str()) {
                if change {
                    for n in l.iter_mut().filter(|n| n.message_id == c.message_id) {
                        n.clone_from(c);
                    }
                } else {
                    l.retain(|n| n.message_id != c.message_id);
                    if l.is_empty() {
                        self.trait_changes.remove(name.as_str());
                    }
                }
            }
            change
        });
    }

    /// Whether the anonymous id `a` was seen with this user before (merged into her, or found
    /// someone else's).
    pub fn has_seen_anonymous(&self, a: &str) -> bool {
        self.anonymous_ids.iter().any(|x| x == a)
            || self.anonymous_ids_of_others.iter().any(|x| x == a)
    }

    /// An anonymous visitor's `subscriptions` trait joined to this user's (see
    /// [`Profile::absorb`]): per channel and per topic, `false` on either side wins. Returns
    /// the topics' choices dropped past [`MAX_TOPICS`] (`subscriptions.topics.{id}`).
    fn absorb_subscriptions(&mut self, anonymous: &Profile, theirs: &Value) -> Vec<String> {
        let mut not_kept = Vec::new();
        let Some(theirs) = theirs.as_object() else {
            return not_kept;
        };
        let mine = self
            .traits
            .entry("subscriptions".to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !mine.is_object() {
            *mine = Value::Object(serde_json::Map::new());
        }
        let Some(mine) = mine.as_object_mut() else {
            return not_kept;
        };
        // Topics as channels, topic by topic (`topics.{id}` in the times).
        let mut their_topics = Vec::new();
        let mut taken = Vec::new();
        for (channel, subscribed) in theirs {
            if channel == "topics" {
                their_topics.extend(subscribed.as_object().into_iter().flatten());
                continue;
            }
            if narrows(mine.get(channel), subscribed) {
                mine.insert(channel.clone(), subscribed.clone());
                taken.push(channel.clone());
            }
        }
        if !their_topics.is_empty() {
            let topics = mine
                .entry("topics".to_string())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !topics.is_object() {
                *topics = Value::Object(serde_json::Map::new());
            }
            if let Some(topics) = topics.as_object_mut() {
                for (id, subscribed) in their_topics {
                    if !narrows(topics.get(id), subscribed) {
                        continue;
                    }
                    // Full: her no takes a yes's place, as an identify's does.
                    if !topics.contains_key(id) && topics.len() >= MAX_TOPICS {
                        let yes = (*subscribed == Value::Bool(false))
                            .then(|| {
                                forget_oldest_yes(
                                    topics,
                                    &mut self.trait_times,
                                    &mut self.app_choices,
                                )
                            })
                            .flatten();
                        let dropped = yes.as_deref().unwrap_or(id);
                        not_kept.push(crate::store::join(&["subscriptions.topics.", dropped]));
                        if yes.is_none() {
                            continue;
                        }
                    }
                    topics.insert(id.clone(), subscribed.clone());
                    taken.push(crate::store::join(&["topics.", id]));
                }
            }
        }
        for key in taken {
            // Since when it holds, as the visitor chose it; and when a choice for it was last
            // stated, by either (a later statement of hers still guards it).
            let changed = crate::store::join(&["subscriptions.", &key]);
            if let Some(at) = anonymous.trait_times.get(changed.as_str()) {
                self.trait_times.insert(changed, *at);
            }
            if let Some(at) = anonymous.subscription_stated_at(&key) {
                self.subscription_stated(&key, at);
            }
        }
        // What the app stated on either side, the later: her browser sends the visitor's
        // cached choices again as hers, which are no new statement either.
        for (key, theirs) in anonymous.app_choices.iter() {
            if self
                .app_choices
                .get(key.as_str())
                .is_none_or(|mine| mine.at < theirs.at)
                && holds_choice(self.traits.get("subscriptions"), key)
            {
                self.app_choices.insert(key.clone(), theirs.clone());
            }
        }
        not_kept
    }

    /// Whether the anonymous visitor's inactivity check for `journey`, due at `theirs`, is
    /// this user's once the visitor turns out to be her at `now`: when she has none, or hers
    /// has passed and the visitor's has not (hers saw none of the visitor's activity, which
    /// armed nothing of hers; a pending one of hers looks again from her latest activity, the
    /// visitor's included).
    pub fn takes_visitors_check(&self, journey: &str, theirs: Timestamp, now: Timestamp) -> bool {
        match self.inactivity_checks.get(journey) {
            None => true,
            Some(mine) => *mine <= now && theirs > now,
        }
    }

    /// Takes in what an anonymous profile knew when it turned out to be this user: each trait
    /// this profile never had, or set or removed earlier (newer wins, as with `identify`; a zone or locale its
    /// device sent stays a device's), push devices it does not have, suppressions (each about
    /// an address: the visitor's when her address is the visitor's, hers lifted when the merge
    /// changed her address), pending
    /// inactivity checks, and the event history (for `repeated` and `inactive` triggers).
    /// Idempotent, as [`Profile::apply`] is. Returns the visitor's traits not taken, past the
    /// profile's bounds (as an identify's are: [`Profile::apply_remembering`]).
    pub fn absorb(&mut self, anonymous: &Profile) -> Vec<String> {
        let mut not_kept = Vec::new();
        // A zone or locale the anonymous user's device sent is still a device's: the user's
        // later events may change it (a traveller is followed), and the newer device's wins
        // over the user's own device value. The app's value, on either side, stands.
        for (name, theirs) in anonymous.from_device.iter() {
            let still =
                anonymous.traits.get(name).and_then(Value::as_str) == Some(theirs.value.as_str());
            if !still
                || anonymous.set_by_app(name)
                || self.set_by_app(name)
                || self
                    .from_device
                    .get(name)
                    .is_some_and(|d| d.at >= theirs.at)
            {
                continue;
            }
            self.traits
                .insert(name.clone(), Value::String(theirs.value.clone()));
            self.from_device.insert(name.clone(), theirs.clone());
        }
        // Her addresses before the merge, and those her suppressions are about: a suppression
        // of hers holds unless the merge gives her another address.
        let addresses_before: Vec<(Option<Value>, Option<Value>)> = ADDRESS_TRAITS
            .iter()
            .map(|(c, k)| (self.traits.get(*k).cloned(), self.suppressed_address(*c)))
            .collect();
        let mut room = Room::of(self);
        for (k, v) in &anonymous.traits {
            // Consent is merged by channel, and only ever narrowed: an opt-out on either side
            // stands (an anonymous visitor's `subscriptions: {email: true}` does not undo the
            // user's own `email: false`); a channel only the visitor spoke for is taken.
            if k == "subscriptions" {
                not_kept.extend(self.absorb_subscriptions(anonymous, v));
                continue;
            }
            // Newer wins per trait, her removal too: a trait she removed after the visitor set
            // it (the login's own `null` included) stays removed. The visitor's value is taken
            // when she has no time for the trait (nor a value), or the visitor's time is later.
            // A zone or locale of hers that her device sent has no time of its own: it is as
            // good as none against the visitor's that the app named (the app's value stands);
            // against the visitor's device's, the newer device's won above.
            let has = self.traits.contains_key(k);
            let hers = has && self.set_by_app(k);
            if has && !hers && !anonymous.set_by_app(k) {
                continue;
            }
            let theirs = anonymous.trait_times.get(k);
            let newer = match (hers, self.trait_times.get(k), theirs) {
                (false, None, _) => true,
                (_, Some(mine), Some(theirs)) => theirs > mine,
                _ => false,
            };
            if !newer {
                continue;
            }
            if !room.take(k, self.traits.get(k), v) {
                not_kept.push(k.clone());
                continue;
            }
            self.traits.insert(k.clone(), v.clone());
            if let Some(t) = theirs {
                self.trait_times.insert(k.clone(), *t);
            }
        }
        for (key, at) in anonymous.marks.iter() {
            self.mark(key, *at);
        }
        for (journey, v) in anonymous.mark_versions.iter() {
            let newest = self.mark_versions.get_or_insert_default(journey.clone());
            *newest = (*newest).max(*v);
        }
        for d in &anonymous.devices {
            if !self.devices.iter().any(|x| x.token == d.token) {
                self.devices.push(d.clone());
            }
        }
        self.forget_old_devices();
        // A suppression is about an address (a bounce, STOP): hers is lifted when the merge
        // gave her the visitor's address in place of hers, as an identify with it would; the
        // visitor's is taken only when her address is the visitor's (a typo the visitor gave
        // that bounced must not stop her own), as a bounce after the login is
        // (`Runtime::suppress_address`).
        for ((channel, k), (before, suppressed)) in ADDRESS_TRAITS.iter().zip(&addresses_before) {
            let now = self.traits.get(*k);
            if !same_value(k, before.as_ref(), now) && !same_value(k, suppressed.as_ref(), now) {
                self.lift_suppression(*channel);
            }
        }
        for (channel, why) in anonymous.suppressed.iter() {
            let same_address = address_trait(*channel).is_none_or(|k| {
                same_value(
                    k,
                    anonymous.suppressed_address(*channel).as_ref(),
                    self.traits.get(k),
                )
            });
            if same_address && !self.suppressed.contains_key(channel) {
                self.suppressed.insert(*channel, why.clone());
                if let Some(a) = anonymous.suppressed_addresses.get(channel) {
                    self.suppressed_addresses.insert(*channel, a.clone());
                }
            }
        }
        // A check of inactivity pending for the anonymous user is the user's, unless the user
        // has one of their own for that journey (it looks from the latest activity anyway).
        for (journey, at) in anonymous.inactivity_checks.iter() {
            if !self.inactivity_checks.contains_key(journey) {
                self.inactivity_checks.insert(journey.clone(), *at);
            }
        }
        for (event, seen) in anonymous.history.iter() {
            let list = self.history.get_or_insert_default(event.clone());
            for (at, id) in seen {
                if list.iter().any(|(_, x)| x == id) {
                    continue;
                }
                let i = list.iter().position(|(t, _)| t > at).unwrap_or(list.len());
                list.insert(i, (*at, id.clone()));
            }
            if list.len() > HISTORY_PER_EVENT {
                let extra = list.len() - HISTORY_PER_EVENT;
                list.drain(..extra);
            }
        }
        not_kept
    }

    fn set_devices(&mut self, v: &Value, at: Timestamp) {
        let Some(items) = v.as_array() else { return };
        let mut any = false;
        for item in items {
            let (Some(platform), Some(token)) = (
                item.get("platform").and_then(Value::as_str),
                item.get("token").and_then(Value::as_str),
            ) else {
                continue;
            };
            self.register_device(platform, token, at, DeviceSource::PushTokens, true);
            any = true;
        }
        // A user whose identifies send `push_tokens` keeps her devices from them only: an iOS
        // app on Firebase sends the FCM token there and may let Segment send the APNs token of
        // the same phone as `context.device.token`, which would be a second device.
        if any {
            self.devices
                .retain(|d| d.source == DeviceSource::PushTokens);
        }
        self.forget_old_devices();
    }

    /// The push device whose token the event's device sent (`context.device.token`, see
    /// [`Event::push_device`]), registered as an identify's `push_tokens` entry is, unless she
    /// has a device from `push_tokens` (she keeps those only). An event other than an identify
    /// changes nothing for a device the user has, good and of that platform, registered less
    /// than [`DEVICE_SEEN_AGAIN`] before it: an app sends its token with every event, and each
    /// would write the profile again only to move `registered_at` (which an identify moves).
    fn take_device(&mut self, event: &Event) {
        let Some((platform, token)) = event.push_device() else {
            return;
        };
        self.register_device(
            platform,
            token,
            event.timestamp,
            DeviceSource::Context,
            event.kind == Kind::Identify,
        );
        self.forget_old_devices();
    }

    /// Registers the push device `token` of `platform`, sent by an event at `at` from `source`:
    /// a new one is added (from a device's context, only to a user who has none from
    /// `push_tokens`); one she has takes the platform `push_tokens` names (a device's guess
    /// does not change a device from `push_tokens`), and a new platform is registered again
    /// (its endpoint was the old platform's); a disabled one is good again when the token was
    /// sent after the provider disabled it (a day after, from a device's context), its endpoint
    /// enabled again by the next registration; and with `again` (an identify sent it), or
    /// [`DEVICE_SEEN_AGAIN`] after it was, one she has is registered at `at`.
    fn register_device(
        &mut self,
        platform: &str,
        token: &str,
        at: Timestamp,
        source: DeviceSource,
        again: bool,
    ) {
        let context = source == DeviceSource::Context;
        let Some(d) = self.devices.iter_mut().find(|d| d.token == token) else {
            if context
                && self
                    .devices
                    .iter()
                    .any(|d| d.source == DeviceSource::PushTokens)
            {
                return;
            }
            self.devices.push(Device {
                platform: platform.to_string(),
                token: token.to_string(),
                endpoint: None,
                disabled: false,
                revived: false,
                registered_at: Some(at),
                disabled_at: None,
                source,
            });
            return;
        };
        let mut moved = again;
        if d.platform != platform && !(context && d.source == DeviceSource::PushTokens) {
            d.platform = platform.to_string();
            d.endpoint = None;
            d.revived = false;
            moved = true;
        }
        if !context {
            d.source = DeviceSource::PushTokens;
        }
        if d.disabled {
            let revives = match d.disabled_at {
                None => true,
                Some(off) if context => at >= off + REVIVE_AFTER,
                Some(off) => at > off,
            };
            if revives {
                d.disabled = false;
                d.revived = d.endpoint.is_some();
                moved = true;
            }
        }
        if !d.disabled && d.registered_at.is_none_or(|r| r + DEVICE_SEEN_AGAIN < at) {
            moved = true;
        }
        if moved && d.registered_at.is_none_or(|r| r < at) {
            d.registered_at = Some(at);
        }
    }

    /// Keeps the times of removed traits (each kept so that an older identify arriving late
    /// does not set the trait again) within [`MAX_REMOVED_TIMES`] and [`MAX_REMOVED_BYTES`],
    /// the oldest forgotten first: an app removing ever new names would otherwise grow the
    /// profile past its item's size with names alone.
    /// The times of the choices held in `subscriptions` (`subscriptions.{channel}`,
    /// `subscriptions.topics.{id}` and their `stated:`) are not removed traits: they are kept
    /// as long as the choice is (bounded by the channels and [`MAX_TOPICS`]), else an older
    /// identify arriving late would undo an opt-out.
    /// The app's statements of choices ([`Profile::app_choices`]) are kept as long as the
    /// choice is, too.
    fn forget_old_removals(&mut self) {
        let subs = self.traits.get("subscriptions");
        self.app_choices.retain(|k, _| holds_choice(subs, k));
        let held = |k: &str| {
            k.strip_prefix("stated:")
                .unwrap_or(k)
                .strip_prefix("subscriptions.")
                .is_some_and(|choice| holds_choice(subs, choice))
        };
        let mut removed: Vec<(Timestamp, &String)> = self
            .trait_times
            .iter()
            .filter(|(k, _)| !self.traits.contains_key(*k) && !held(k))
            .map(|(k, t)| (*t, k))
            .collect();
        let mut bytes: usize = removed.iter().map(|(_, k)| k.len() + 32).sum();
        if removed.len() <= MAX_REMOVED_TIMES && bytes <= MAX_REMOVED_BYTES {
            return;
        }
        removed.sort();
        let mut count = removed.len();
        let mut forget = Vec::new();
        for (_, k) in removed {
            if count <= MAX_REMOVED_TIMES && bytes <= MAX_REMOVED_BYTES {
                break;
            }
            count -= 1;
            bytes -= k.len() + 32;
            forget.push(k.clone());
        }
        for k in forget {
            self.trait_times.remove(&k);
        }
    }

    /// Whether another anonymous id seen with her may be merged (or noted as another's): at
    /// most [`MAX_ANONYMOUS_IDS`] are. Past them, her events with a new one are hers all the
    /// same, and that visitor stays apart.
    pub fn has_room_for_anonymous(&self) -> bool {
        self.anonymous_ids.len() + self.anonymous_ids_of_others.len() < MAX_ANONYMOUS_IDS
    }

    /// Notes an anonymous id she was seen with: hers (`ours`, merged into her) or another's.
    /// Every one is kept (up to [`MAX_ANONYMOUS_IDS`], which merging checks first): the entry
    /// rules, conversions and the inbox read them, and one forgotten would be merged again (its
    /// traits, devices and suppressions absorbed again over what changed since).
    pub fn note_anonymous(&mut self, id: &str, ours: bool) {
        if ours {
            self.anonymous_ids.push(id.to_string());
        } else {
            self.anonymous_ids_of_others.push(id.to_string());
        }
    }

    /// Keeps at most [`MAX_DEVICES`]: past them, the devices the provider disabled go first,
    /// then those registered longest ago (an app's tokens rotate, and a reinstall makes a new
    /// one: the old ones would be pushed to on every message, and grow the profile for ever).
    fn forget_old_devices(&mut self) {
        while self.devices.len() > MAX_DEVICES {
            let oldest = self
                .devices
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| (!d.disabled, d.registered_at))
                .map(|(i, _)| i);
            let Some(i) = oldest else { break };
            self.devices.remove(i);
        }
    }

    /// Whether the occurrence of `event` at `at` is one of at least `times` within some span of
    /// `within` (a `repeated` trigger). Any span that holds it counts, not only the one ending
    /// at it: an occurrence that arrives late (a device offline for a while) completes the
    /// count as well as the latest one does.
    ///
    /// Only occurrences after `since` count (the last occurrence the user's last entry into the
    /// journey counted): the episodes that made one offer do not make the next. Returns, when
    /// the count is made, the latest occurrence it took (one stamped later than `at` that
    /// arrived before it, too), for the next entry's `since`.
    pub fn done_times_within(
        &self,
        event: &str,
        at: Timestamp,
        within: SignedDuration,
        times: usize,
        since: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let Some(list) = self.history.get(event) else {
            return (times == 0).then_some(at);
        };
        let counts = |t: &Timestamp| since.is_none_or(|s| *t > s);
        // The best spans start at an occurrence: try each one from `within` before `at` to
        // `at` (the list is in time order).
        list.iter()
            .map(|(t, _)| *t)
            .filter(|t| *t >= at - within && *t <= at && counts(t))
            .find_map(|start| {
                let span = || {
                    list.iter()
                        .map(|(t, _)| *t)
                        .filter(|t| *t >= start && *t <= start + within && counts(t))
                };
                (span().count() >= times).then(|| span().fold(at, Timestamp::max))
            })
    }

    /// Whether an identify of this user has been applied (the history keeps the latest).
    pub fn identified(&self) -> bool {
        self.history.get(IDENTIFY).is_some_and(|l| !l.is_empty())
    }

    /// The latest occurrence of `event` at or after `after`, other than the event `except` (the
    /// trigger itself, by messageId), if any: an event at the trigger's own instant counts, as it
    /// does when it arrives after the trigger ([`crate::engine::on_event`]).
    ///
    /// When `event` is the trigger's own event (`inclusive` false), only later occurrences
    /// count: another occurrence at the trigger's instant (two bookings stamped alike) is not
    /// known to come after it.
    pub fn seen_after(
        &self,
        event: &str,
        after: Timestamp,
        except: &str,
        inclusive: bool,
    ) -> Option<Timestamp> {
        self.occurrences_after(event, after, &[except], inclusive)
            .next_back()
            .map(|(t, _)| t)
    }

    /// [`Profile::first_after`], other than any of the events `except` (by messageId).
    pub fn first_after_but(
        &self,
        event: &str,
        after: Timestamp,
        except: &[&str],
        inclusive: bool,
    ) -> Option<Timestamp> {
        self.occurrences_after(event, after, except, inclusive)
            .next()
            .map(|(t, _)| t)
    }

    /// The first kept occurrence of `event` at `after` or later, other than the events `except`
    /// (by messageId): its time and messageId.
    pub fn first_from_but(
        &self,
        event: &str,
        after: Timestamp,
        except: &[&str],
    ) -> Option<(Timestamp, String)> {
        self.occurrences_after(event, after, except, true)
            .next()
            .map(|(t, id)| (t, id.to_string()))
    }

    /// The kept occurrences of `event` after `after` (at it too when `inclusive`), other than
    /// the events `except` (by messageId), oldest first: their times and messageIds.
    fn occurrences_after<'a>(
        &'a self,
        event: &str,
        after: Timestamp,
        except: &'a [&'a str],
        inclusive: bool,
    ) -> impl DoubleEndedIterator<Item = (Timestamp, &'a str)> + 'a {
        self.history
            .get(event)
            .into_iter()
            .flatten()
            .filter(move |(t, id)| {
                (*t > after || (inclusive && *t == after)) && !except.contains(&id.as_str())
            })
            .map(|(t, id)| (*t, id.as_str()))
    }

    /// Notes that an event at `at` met the `where` of the exit or goal marked under `key` (a
    /// [`crate::journey::Marker::key`]; the latest is kept).
    pub fn mark(&mut self, key: &str, at: Timestamp) {
        if self.marks.get(key).is_none_or(|t| *t < at) {
            self.marks.insert(key.to_string(), at);
        }
    }

    /// Drops the marks under keys not in `keys` (sorted): of `where`s no version a user may be
    /// on has any more (see `Active::mark_keys`), so that marks do not only grow.
    ///
    /// `keys` is what one engine's list of versions names, and `version_of` the latest
    /// version of each journey it knows. A list cached before a publish does not know the new
    /// version's `where`s: a journey's marks are dropped only by an engine that knows as new
    /// a version of it as any that wrote or kept them ([`Profile::mark_versions`]), so a mark
    /// another engine wrote for a version this one has not read yet stays.
    pub fn keep_marks(&mut self, keys: &[String], version_of: impl Fn(&str) -> Option<u32>) {
        let journeys: Vec<String> = self
            .marks
            .iter()
            .filter_map(|(k, _)| Marker::journey_of_key(k))
            .map(str::to_string)
            .collect();
        for j in &journeys {
            if let Some(v) = version_of(j) {
                let newest = self.mark_versions.get_or_insert_default(j.clone());
                *newest = (*newest).max(v);
            }
        }
        let versions = &self.mark_versions;
        let listed = |k: &str| keys.binary_search_by(|x| x.as_str().cmp(k)).is_ok();
        // Of a version newer than this engine knows: not its to judge.
        let newer = |k: &str| {
            Marker::journey_of_key(k).is_some_and(|j| {
                versions
                    .get(j)
                    .is_some_and(|v| *v > version_of(j).unwrap_or(0))
            })
        };
        self.marks.retain(|k, _| listed(k) || newer(k));
        let marks = &self.marks;
        self.mark_versions.retain(|j, _| {
            marks
                .iter()
                .any(|(k, _)| Marker::journey_of_key(k) == Some(j.as_str()))
        });
    }

    /// When an event `event` last met the `where` of one of `journey`'s exits or its goal
    /// (`kind`; of this version of it: [`Journey::markers`]), if at or after `after`
    /// (`inclusive`) or strictly after it. A mark keeps no messageId, so a mark at the trigger's
    /// own instant counts only when the exit or goal is another event than the trigger (else it
    /// may be the trigger itself).
    pub fn marked_after(
        &self,
        journey: &Journey,
        kind: MarkKind,
        event: &str,
        after: Timestamp,
        inclusive: bool,
    ) -> Option<Timestamp> {
        // (Not the journey-wide key marks had before each `where` had its own, `exit:j`: no
        // release wrote it, and a mark under it may have met another version's `where`.)
        journey
            .markers()
            .iter()
            .filter(|m| m.kind == kind && m.event == event)
            .filter_map(|m| self.marks.get(&m.key(&journey.id)).copied())
            .filter(|t| *t > after || (inclusive && *t == after))
            .max()
    }

    /// The first time `event` happened at or after `after`, other than the event `except` (the
    /// trigger itself), if it did (of the recent occurrences the history keeps).
    /// `inclusive` as for [`Profile::seen_after`].
    pub fn first_after(
        &self,
        event: &str,
        after: Timestamp,
        except: &str,
        inclusive: bool,
    ) -> Option<Timestamp> {
        self.first_after_but(event, after, &[except], inclusive)
    }

    /// The latest time any of `events` happened.
    pub fn last_of(&self, events: &[String]) -> Option<Timestamp> {
        events
            .iter()
            .filter_map(|e| self.history.get(e).and_then(|l| l.last().map(|(t, _)| *t)))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_that_changes_an_address_lifts_its_suppression() {
        let mut p = Profile {
            user_id: "ann".into(),
            ..Profile::default()
        };
        let set = |k: &str, v: &str| {
            let mut m = Map::new();
            m.insert(k.into(), Value::String(v.into()));
            m
        };
        p.apply_update(&set("email", "old@example.com"), &[], None);
        p.suppressed.insert(Channel::Email, "bounced".into());
        p.suppressed.insert(Channel::Sms, "opted out".into());
        // The same address again is no new address.
        p.apply_update(&set("email", "old@example.com"), &[], None);
        assert!(p.suppressed.contains_key(&Channel::Email));
        p.apply_update(&set("email", "new@example.com"), &["plan".into()], None);
        assert_eq!(
            p.address(Channel::Email),
            Ok(Address::One("new@example.com".into()))
        );
        assert_eq!(p.address(Channel::Sms), Err(Unreachable::Suppressed));
    }

    /// An update is newer-wins per trait: what was set after its step ran stands (and is
    /// returned), the rest takes the step's time, so an older identify arriving late loses.
    #[test]
    fn an_update_leaves_what_was_set_after_its_step() {
        let t = |s: &str| -> Timestamp { s.parse().expect("time") };
        let mut p = Profile::new("ann");
        p.traits.insert("plan".into(), "paid".into());
        p.trait_times
            .insert("plan".into(), t("2026-12-01T10:01:00Z"));
        p.traits.insert("coupon".into(), "OLD".into());
        let mut set = Map::new();
        set.insert("plan".into(), "trial".into());
        set.insert("tier".into(), "gold".into());
        let at = Some(t("2026-12-01T10:00:00Z"));
        let stands = p.apply_update(&set, &["coupon".into()], at);
        assert_eq!(stands, [("plan".to_string(), t("2026-12-01T10:01:00Z"))]);
        assert_eq!(p.traits.get("plan"), Some(&Value::from("paid")));
        assert_eq!(p.traits.get("tier"), Some(&Value::from("gold")));
        assert_eq!(p.traits.get("coupon"), None);
        assert_eq!(p.trait_times.get("coupon").copied(), at);
        // Performed again: the same profile.
        let before = p.clone();
        p.apply_update(&set, &["coupon".into()], at);
        assert_eq!(p, before);
        // Unstamped (kept by an older engine): applied as written.
        p.apply_update(&set, &[], None);
        assert_eq!(p.traits.get("plan"), Some(&Value::from("trial")));
        // A zone a device sent after the step stands too.
        p.traits.insert("timezone".into(), "Asia/Tokyo".into());
        p.from_device.insert(
            "timezone".into(),
            FromDevice {
                value: "Asia/Tokyo".into(),
                at: t("2026-12-01T10:30:00Z"),
            },
        );
        let stands = p.apply_update(&Map::new(), &["timezone".into()], at);
        assert_eq!(
            stands,
            [("timezone".to_string(), t("2026-12-01T10:30:00Z"))]
        );
        assert_eq!(p.traits.get("timezone"), Some(&Value::from("Asia/Tokyo")));
    }

    /// Each channel's choice is the latest stated for that channel: an opt-out that arrives
    /// late is taken though another channel changed since (an unsubscribe link followed in
    /// between), and an older choice arriving late does not undo a newer one of its channel.
    #[test]
    fn subscriptions_are_newest_by_channel() {
        let identify = |at: &str, traits: Value| Event {
            kind: Kind::Identify,
            message_id: format!("i-{at}"),
            user_id: "kim".into(),
            anonymous_id: None,
            event: None,
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits: traits.as_object().cloned().unwrap_or_default(),
            context: Map::new(),
            timestamp: at.parse().expect("timestamp"),
            received_at: at.parse().expect("timestamp"),
            refused: Vec::new(),
        };
        let mut p = Profile {
            user_id: "kim".into(),
            ..Profile::default()
        };
        let subs = |p: &Profile| p.traits.get("subscriptions").cloned();
        p.apply(&identify(
            "2026-12-05T05:00:00Z",
            serde_json::json!({"email": "kim@example.com", "subscriptions": {"sms": false}}),
        ));
        // stated a minute earlier, arriving later
        p.apply(&identify(
            "2026-12-05T04:59:00Z",
            serde_json::json!({"subscriptions": {"email": false}}),
        ));
        assert_eq!(
            subs(&p),
            Some(serde_json::json!({"sms": false, "email": false}))
        );
        // an unsubscribe link followed (push), then a push choice made before it arrives
        p.subscription_stated("push", "2026-12-05T06:00:00Z".parse().expect("time"));
        p.apply(&identify(
            "2026-12-05T05:50:00Z",
            serde_json::json!({"subscriptions": {"push": true, "in_app": false}}),
        ));
        assert_eq!(
            subs(&p),
            Some(serde_json::json!({"sms": false, "email": false, "in_app": false}))
        );
        // an older sms opt-in, late, does not undo the newer opt-out; a newer one does
        p.apply(&identify(
            "2026-12-05T04:00:00Z",
            serde_json::json!({"subscriptions": {"sms": true}}),
        ));
        assert_eq!(
            subs(&p).and_then(|s| s.get("sms").cloned()),
            Some(Value::Bool(false))
        );
        p.apply(&identify(
            "2026-12-05T07:00:00Z",
            serde_json::json!({"subscriptions": {"sms": true}}),
        ));
        assert_eq!(
            subs(&p).and_then(|s| s.get("sms").cloned()),
            Some(Value::Bool(true))
        );
    }

    /// A profile written before channels kept their own time: an opt-out stated again since
    /// (the whole trait's time) is not undone by an older opt-in arriving late; and a merge
    /// that takes the visitor's opt-out keeps the user's later statement as the guard.
    #[test]
    fn older_profiles_and_merges_keep_the_latest_statement_as_the_guard() {
        let ident = |user: &str, at: &str, traits: Value| Event {
            kind: Kind::Identify,
            message_id: format!("i-{user}-{at}"),
            user_id: user.into(),
            anonymous_id: None,
            event: None,
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits: traits.as_object().cloned().unwrap_or_default(),
            context: Map::new(),
            timestamp: at.parse().expect("time"),
            received_at: at.parse().expect("time"),
            refused: Vec::new(),
        };
        let t = |at: &str| -> Timestamp { at.parse().expect("time") };
        let mut p = Profile {
            user_id: "k".into(),
            ..Profile::default()
        };
        p.traits
            .insert("subscriptions".into(), serde_json::json!({"email": false}));
        p.trait_times
            .insert("subscriptions".into(), t("2026-12-05T03:00:00Z"));
        p.trait_times
            .insert("subscriptions.email".into(), t("2026-12-05T01:00:00Z"));
        p.apply(&ident(
            "k",
            "2026-12-05T02:00:00Z",
            serde_json::json!({"subscriptions": {"email": true}}),
        ));
        assert_eq!(p.traits["subscriptions"]["email"], serde_json::json!(false));
        // a late opt-out of another channel is still taken
        p.apply(&ident(
            "k",
            "2026-12-05T02:30:00Z",
            serde_json::json!({"subscriptions": {"sms": false}}),
        ));
        assert_eq!(p.traits["subscriptions"]["sms"], serde_json::json!(false));

        let mut user = Profile {
            user_id: "k".into(),
            ..Profile::default()
        };
        user.apply(&ident(
            "k",
            "2026-12-05T05:00:00Z",
            serde_json::json!({"subscriptions": {"email": true}}),
        ));
        let mut anon = Profile {
            user_id: "anon:d".into(),
            ..Profile::default()
        };
        anon.apply(&ident(
            "anon:d",
            "2026-12-05T01:00:00Z",
            serde_json::json!({"subscriptions": {"email": false}}),
        ));
        user.absorb(&anon);
        assert_eq!(
            user.traits["subscriptions"]["email"],
            serde_json::json!(false)
        );
        user.apply(&ident(
            "k",
            "2026-12-05T03:00:00Z",
            serde_json::json!({"subscriptions": {"email": true}}),
        ));
        assert_eq!(
            user.traits["subscriptions"]["email"],
            serde_json::json!(false)
        );
    }

    /// A login's merge keeps a suppression only for the address it is about: the visitor's STOP
    /// from another number does not stop hers, the visitor's from the same number does; her own
    /// is lifted when the merge gives her the visitor's newer number.
    #[test]
    fn a_merged_suppression_holds_only_for_its_own_address() {
        let phone = |v: &str| {
            let mut m = Map::new();
            m.insert("phone".into(), Value::String(v.into()));
            m
        };
        let mut visitor = Profile::new("anon:v-1");
        visitor.apply(&ann_identifies(
            "v-i",
            "2026-12-01T09:00:00Z",
            phone("+33611111111"),
        ));
        visitor
            .suppressed
            .insert(Channel::Sms, "sms opt-out (replied STOP)".into());
        let mut ann = Profile::new("ann");
        ann.apply(&ann_identifies(
            "a-i",
            "2026-12-01T10:00:00Z",
            phone("+33622222222"),
        ));
        ann.absorb(&visitor);
        assert_eq!(
            ann.address(Channel::Sms),
            Ok(Address::One("+33622222222".into()))
        );
        let mut ann = Profile::new("ann");
        ann.apply(&ann_identifies(
            "a-i",
            "2026-12-01T10:00:00Z",
            phone("+33611111111"),
        ));
        ann.absorb(&visitor);
        assert_eq!(ann.address(Channel::Sms), Err(Unreachable::Suppressed));
        // Hers, about the number she had before the visitor's newer one.
        let mut ann = Profile::new("ann");
        ann.apply(&ann_identifies(
            "a-i",
            "2026-12-01T08:00:00Z",
            phone("+33622222222"),
        ));
        ann.suppressed.insert(Channel::Sms, "opted out".into());
        let mut visitor = Profile::new("anon:v-2");
        visitor.apply(&ann_identifies(
            "v-i",
            "2026-12-01T09:00:00Z",
            phone("+33633333333"),
        ));
        ann.absorb(&visitor);
        ann.absorb(&visitor);
        assert_eq!(
            ann.address(Channel::Sms),
            Ok(Address::One("+33633333333".into()))
        );
    }

    #[test]
    fn an_identify_lifts_a_suppression_only_with_a_new_address() {
        let identify = |at: &str, traits: Value| Event {
            kind: Kind::Identify,
            message_id: format!("i-{at}"),
            user_id: "ann".into(),
            anonymous_id: None,
            event: None,
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits: traits.as_object().cloned().unwrap_or_default(),
            context: Map::new(),
            timestamp: at.parse().expect("timestamp"),
            received_at: at.parse().expect("timestamp"),
            refused: Vec::new(),
        };
        let mut p = Profile {
            user_id: "ann".into(),
            ..Profile::default()
        };
        p.apply(&identify(
            "2026-12-01T10:00:00Z",
            serde_json::json!({"email": "ann@example.com", "phone": "+33612345678"}),
        ));
        p.suppressed.insert(Channel::Email, "bounced".into());
        p.suppressed.insert(Channel::Sms, "opted out".into());
        // Segment's libraries send every trait on every identify: the same address again
        // (whatever its letters' case).
        p.apply(&identify(
            "2026-12-01T11:00:00Z",
            serde_json::json!({"email": "Ann@Example.com", "phone": "+33612345678", "plan": "pro"}),
        ));
        assert_eq!(p.address(Channel::Email), Err(Unreachable::Suppressed));
        assert_eq!(p.address(Channel::Sms), Err(Unreachable::Suppressed));
        // An older identify with another address is not her address now.
        p.apply(&identify(
            "2026-12-01T09:00:00Z",
            serde_json::json!({"email": "old@example.com"}),
        ));
        assert_eq!(p.address(Channel::Email), Err(Unreachable::Suppressed));
        // A new address is reachable; the number stays suppressed.
        p.apply(&identify(
            "2026-12-01T12:00:00Z",
            serde_json::json!({"email": "ann@new.example"}),
        ));
        assert_eq!(
            p.address(Channel::Email),
            Ok(Address::One("ann@new.example".into()))
        );
        assert_eq!(p.address(Channel::Sms), Err(Unreachable::Suppressed));
        // The suppressed address removed, then sent again (in another case, or by a journey's
        // `update` in lower case) is the same address: only another lifts it.
        p.suppress(Channel::Email, "bounced");
        p.suppress(Channel::Sms, "opted out");
        p.apply(&identify(
            "2026-12-01T13:00:00Z",
            serde_json::json!({"email": null, "phone": null}),
        ));
        p.apply(&identify(
            "2026-12-01T14:00:00Z",
            serde_json::json!({"email": "ANN@new.example", "phone": "+33612345678"}),
        ));
        assert_eq!(p.address(Channel::Email), Err(Unreachable::Suppressed));
        assert_eq!(p.address(Channel::Sms), Err(Unreachable::Suppressed));
        let mut set = Map::new();
        set.insert("email".into(), Value::from("ann@new.example"));
        p.apply_update(&set, &[], "2026-12-01T15:00:00Z".parse().ok());
        assert_eq!(p.address(Channel::Email), Err(Unreachable::Suppressed));
        set.insert("email".into(), Value::from("ann@other.example"));
        p.apply_update(&set, &[], "2026-12-01T16:00:00Z".parse().ok());
        assert_eq!(
            p.address(Channel::Email),
            Ok(Address::One("ann@other.example".into()))
        );
        assert!(p.suppressed_addresses.get(&Channel::Email).is_none());
    }

    #[test]
    fn the_devices_zone_and_locale_are_the_profiles_unless_the_app_named_them() {
        let event = |at: &str, traits: Value, zone: &str| Event {
            kind: if traits.as_object().is_some_and(|t| !t.is_empty()) {
                Kind::Identify
            } else {
                Kind::Track
            },
            message_id: format!("m-{at}"),
            user_id: "ann".into(),
            anonymous_id: None,
            event: Some("opened".into()),
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits: traits.as_object().cloned().unwrap_or_default(),
            context: serde_json::json!({"timezone": zone, "locale": "fr-FR"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            timestamp: at.parse().expect("timestamp"),
            received_at: at.parse().expect("timestamp"),
            refused: Vec::new(),
        };
        let zone = |p: &Profile| {
            p.traits
                .get("timezone")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let none = serde_json::json!({});
        let mut p = Profile::new("ann");
        p.apply(&event("2026-12-01T10:00:00Z", none.clone(), "Europe/Paris"));
        assert_eq!(zone(&p).as_deref(), Some("Europe/Paris"));
        // She travels: the newer event's zone.
        p.apply(&event("2026-12-02T10:00:00Z", none.clone(), "Asia/Tokyo"));
        assert_eq!(zone(&p).as_deref(), Some("Asia/Tokyo"));
        // An older event arriving late, or text that is no zone, changes nothing.
        p.apply(&event("2026-12-01T12:00:00Z", none.clone(), "Europe/Paris"));
        p.apply(&event("2026-12-03T10:00:00Z", none.clone(), "Tokyo time"));
        assert_eq!(zone(&p).as_deref(), Some("Asia/Tokyo"));
        // A journey's `update` set one: it stands.
        let mut updated = p.clone();
        updated
            .traits
            .insert("timezone".into(), Value::String("America/Chicago".into()));
        updated.apply(&event("2026-12-04T10:00:00Z", none.clone(), "Asia/Tokyo"));
        assert_eq!(zone(&updated).as_deref(), Some("America/Chicago"));
        // The app names one in an identify: it stands, whatever the device says after.
        p.apply(&event(
            "2026-12-04T10:00:00Z",
            serde_json::json!({"timezone": "America/New_York"}),
            "Asia/Tokyo",
        ));
        p.apply(&event("2026-12-05T10:00:00Z", none.clone(), "Europe/Paris"));
        assert_eq!(zone(&p).as_deref(), Some("America/New_York"));
        // Until the app removes it: the device's zone is taken again.
        p.apply(&event(
            "2026-12-06T10:00:00Z",
            serde_json::json!({"timezone": null}),
            "Europe/Paris",
        ));
        assert_eq!(zone(&p).as_deref(), Some("Europe/Paris"));
        p.apply(&event("2026-12-07T10:00:00Z", none, "Asia/Tokyo"));
        assert_eq!(zone(&p).as_deref(), Some("Asia/Tokyo"));
        // The locale came along all the way; not one that is no locale.
        assert_eq!(p.traits.get("locale"), Some(&Value::String("fr-FR".into())));
        let mut odd = Profile::new("bob");
        let mut e = event(
            "2026-12-01T10:00:00Z",
            serde_json::json!({}),
            "Europe/Paris",
        );
        e.context
            .insert("locale".into(), Value::String("fr FR; q=1".into()));
        odd.apply(&e);
        assert_eq!(odd.traits.get("locale"), None);
        assert_eq!(zone(&odd).as_deref(), Some("Europe/Paris"));
    }

    fn device_event(user: &str, at: &str, zone: &str) -> Event {
        Event {
            kind: Kind::Track,
            message_id: format!("m-{user}-{at}"),
            user_id: user.into(),
            anonymous_id: None,
            event: Some("opened".into()),
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits: Map::new(),
            context: serde_json::json!({ "timezone": zone })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            timestamp: at.parse().expect("timestamp"),
            received_at: at.parse().expect("timestamp"),
            refused: Vec::new(),
        }
    }

    /// A profile keeps the latest devices its identifies register, the disabled ones going
    /// first: a token rotated or an app reinstalled is not pushed to for ever.
    #[test]
    fn a_profile_keeps_its_latest_devices() {
        let t = |h: i64| -> Timestamp {
            Timestamp::from_second(1_764_583_200 + h * 3600).expect("time")
        };
        let mut p = Profile::new("ann");
        for i in 0..12 {
            let mut tokens = Map::new();
            tokens.insert(
                "push_tokens".into(),
                serde_json::json!([{"platform": "fcm", "token": format!("t{i}")}]),
            );
            p.set_devices(&tokens["push_tokens"], t(i));
            if i == 5 {
                // The provider disabled t3.
                if let Some(d) = p.devices.iter_mut().find(|d| d.token == "t3") {
                    d.disabled = true;
                }
            }
        }
        let kept: Vec<&str> = p.devices.iter().map(|d| d.token.as_str()).collect();
        assert_eq!(
            kept,
            ["t1", "t2", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11"]
        );
        // A device registered again is one of the latest.
        p.set_devices(
            &serde_json::json!([{"platform": "fcm", "token": "t1"}]),
            t(13),
        );
        p.set_devices(
            &serde_json::json!([{"platform": "fcm", "token": "t12"}]),
            t(14),
        );
        let kept: Vec<&str> = p.devices.iter().map(|d| d.token.as_str()).collect();
        assert!(kept.contains(&"t1") && !kept.contains(&"t2"), "{kept:?}");
        assert_eq!(kept.len(), MAX_DEVICES);
        // A login brings the visitor's devices: the latest are kept all the same.
        let mut visitor = Profile::new("anon:d1");
        visitor.set_devices(
            &serde_json::json!([{"platform": "fcm", "token": "v1"}, {"platform": "fcm", "token": "v2"}]),
            t(20),
        );
        p.absorb(&visitor);
        let kept: Vec<&str> = p.devices.iter().map(|d| d.token.as_str()).collect();
        assert_eq!(kept.len(), MAX_DEVICES, "{kept:?}");
        assert!(kept.contains(&"v1") && kept.contains(&"v2"), "{kept:?}");
    }

    /// The token a device sends as `context.device.token` registers it, of the platform its
    /// type or system tells; with a track, a device she has, good and of that platform, changes
    /// nothing (no write), a disabled one is good again; an identify registers it again, as its
    /// `push_tokens` would.
    #[test]
    fn a_devices_token_in_the_context_registers_it() {
        let event = |kind: Kind, at: &str, device: Value| {
            let mut e = ann_identifies("e", at, Map::new());
            e.kind = kind;
            if kind == Kind::Track {
                e.event = Some("app_opened".into());
            }
            e.context = serde_json::json!({"device": device})
                .as_object()
                .cloned()
                .unwrap_or_default();
            e
        };
        let ios = serde_json::json!({"type": "ios", "token": "a1"});
        let mut p = Profile::new("ann");
        p.apply(&event(Kind::Track, "2026-12-01T09:00:00Z", ios.clone()));
        let first = p.devices.clone();
        assert_eq!(first.len(), 1);
        assert_eq!((&*first[0].platform, &*first[0].token), ("apns", "a1"));
        // Sent again with a later track: nothing changes.
        let before = p.clone();
        p.apply_remembering(
            &event(Kind::Track, "2026-12-01T10:00:00Z", ios.clone()),
            false,
        );
        assert_eq!(p, before);
        // Disabled by the provider, then sent again: good again, its endpoint to be enabled.
        p.devices[0].disabled = true;
        p.devices[0].endpoint = Some("ep".into());
        p.apply_remembering(
            &event(Kind::Track, "2026-12-01T11:00:00Z", ios.clone()),
            false,
        );
        assert!(!p.devices[0].disabled && p.devices[0].revived);
        // An identify that sends it registers it again, at its time.
        p.apply(&event(Kind::Identify, "2026-12-01T12:00:00Z", ios));
        assert_eq!(
            p.devices[0].registered_at,
            Some("2026-12-01T12:00:00Z".parse().expect("time"))
        );
        // No token, or one of a platform no one can tell: no device.
        let mut p = Profile::new("ann");
        p.apply(&event(
            Kind::Track,
            "2026-12-01T09:00:00Z",
            serde_json::json!({"type": "ios"}),
        ));
        p.apply(&event(
            Kind::Track,
            "2026-12-01T09:00:00Z",
            serde_json::json!({"token": "x"}),
        ));
        assert!(p.devices.is_empty());
    }

    /// ann's event of `kind` at `at` whose device sends `device` as its `context.device`, with
    /// `push_tokens` for an identify when given.
    fn ann_sends(kind: Kind, at: &str, device: Value, push_tokens: Option<Value>) -> Event {
        let mut traits = Map::new();
        if let Some(t) = push_tokens {
            traits.insert("push_tokens".into(), t);
        }
        let mut e = ann_identifies(&format!("e-{at}"), at, traits);
        e.kind = kind;
        if kind == Kind::Track {
            e.event = Some("app_opened".into());
        }
        e.context = serde_json::json!({"device": device})
            .as_object()
            .cloned()
            .unwrap_or_default();
        e
    }

    /// A disabled device is good again only by a token sent after the provider disabled it: a
    /// stale event queued from before does not revive it, nor, from a device's context, one
    /// less than a day after (a dead token sent with every event would revive it at each);
    /// an identify's `push_tokens` sent after it does.
    #[test]
    fn a_disabled_device_is_revived_only_by_a_token_sent_after() {
        let ios = serde_json::json!({"type": "ios", "token": "a1"});
        let track = |at: &str| ann_sends(Kind::Track, at, ios.clone(), None);
        let t = |at: &str| -> Timestamp { at.parse().expect("time") };
        let mut p = Profile::new("ann");
        p.apply_remembering(&track("2026-12-01T09:00:00Z"), false);
        let disable = |p: &mut Profile, at: &str| {
            p.devices[0].endpoint = Some("ep".into());
            p.devices[0].disabled = true;
            p.devices[0].disabled_at = Some(t(at));
        };
        disable(&mut p, "2026-12-01T12:00:00Z");
        let disabled = p.clone();
        for at in [
            "2026-12-01T11:00:00Z",
            "2026-12-01T13:00:00Z",
            "2026-12-02T11:59:59Z",
        ] {
            p.apply_remembering(&track(at), false);
            assert_eq!(p, disabled, "{at}");
        }
        p.apply_remembering(&track("2026-12-02T12:00:00Z"), false);
        assert!(
            !p.devices[0].disabled && p.devices[0].revived,
            "a day after"
        );
        // Its push_tokens: sent after it was disabled, it is good again; before, it is not.
        disable(&mut p, "2026-12-03T12:00:00Z");
        p.devices[0].revived = false;
        let tokens = serde_json::json!([{"platform": "apns", "token": "a1"}]);
        p.set_devices(&tokens, t("2026-12-03T11:00:00Z"));
        assert!(p.devices[0].disabled);
        p.set_devices(&tokens, t("2026-12-03T12:01:00Z"));
        assert!(!p.devices[0].disabled && p.devices[0].revived);
    }

    /// A device she has, sent again by a track: nothing changes within a day of its
    /// `registered_at`; later, it is registered again at the track's time (whose a shared phone
    /// is, and which devices she keeps, go by it).
    #[test]
    fn a_device_used_a_day_later_is_registered_again() {
        let ios = serde_json::json!({"type": "ios", "token": "a1"});
        let track = |at: &str| ann_sends(Kind::Track, at, ios.clone(), None);
        let mut p = Profile::new("ann");
        p.apply_remembering(&track("2026-12-01T09:00:00Z"), false);
        let before = p.clone();
        p.apply_remembering(&track("2026-12-02T09:00:00Z"), false);
        assert_eq!(p, before, "within a day: free");
        p.apply_remembering(&track("2026-12-02T09:00:01Z"), false);
        assert_eq!(
            p.devices[0].registered_at,
            Some("2026-12-02T09:00:01Z".parse().expect("time"))
        );
    }

    /// A user whose identifies send `push_tokens` keeps her devices from them only: a token
    /// her device's context sends (an iOS app on Firebase: the APNs token beside the FCM one)
    /// is no second device, whichever came first; and the platform `push_tokens` names wins
    /// over the context's guess, a change of platform registering the device again.
    #[test]
    fn push_tokens_devices_are_hers_and_their_platform_wins() {
        let apns = serde_json::json!({"type": "ios", "token": "apns-1"});
        let fcm = serde_json::json!([{"platform": "fcm", "token": "fcm-1"}]);
        let tokens =
            |p: &Profile| -> Vec<String> { p.devices.iter().map(|d| d.token.clone()).collect() };
        // push_tokens first, then the context's token.
        let mut p = Profile::new("ann");
        p.apply(&ann_sends(
            Kind::Identify,
            "2026-12-01T09:00:00Z",
            apns.clone(),
            Some(fcm.clone()),
        ));
        assert_eq!(tokens(&p), ["fcm-1"]);
        p.apply_remembering(
            &ann_sends(Kind::Track, "2026-12-03T09:00:00Z", apns.clone(), None),
            false,
        );
        assert_eq!(tokens(&p), ["fcm-1"]);
        // The context's token first (the upgrade), then push_tokens.
        let mut p = Profile::new("ann");
        p.apply_remembering(
            &ann_sends(Kind::Track, "2026-12-01T09:00:00Z", apns.clone(), None),
            false,
        );
        assert_eq!(tokens(&p), ["apns-1"]);
        assert_eq!(p.devices[0].source, DeviceSource::Context);
        p.apply(&ann_sends(
            Kind::Identify,
            "2026-12-01T10:00:00Z",
            apns,
            Some(fcm),
        ));
        assert_eq!(tokens(&p), ["fcm-1"]);
        assert_eq!(p.devices[0].source, DeviceSource::PushTokens);

        // One token, fcm by push_tokens, ios by the context: fcm it stays, endpoint and all.
        let same = serde_json::json!({"type": "ios", "token": "t"});
        let mut p = Profile::new("ann");
        p.apply(&ann_sends(
            Kind::Identify,
            "2026-12-01T09:00:00Z",
            same.clone(),
            Some(serde_json::json!([{"platform": "fcm", "token": "t"}])),
        ));
        p.devices[0].endpoint = Some("ep-fcm".into());
        let before = p.clone();
        for at in ["2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"] {
            p.apply_remembering(&ann_sends(Kind::Track, at, same.clone(), None), false);
            assert_eq!(p.devices, before.devices, "{at}");
        }
        // A context's device that push_tokens names of another platform: registered again.
        let mut p = Profile::new("ann");
        p.apply_remembering(
            &ann_sends(Kind::Track, "2026-12-01T09:00:00Z", same, None),
            false,
        );
        p.devices[0].endpoint = Some("ep-apns".into());
        p.set_devices(
            &serde_json::json!([{"platform": "fcm", "token": "t"}]),
            "2026-12-01T10:00:00Z".parse().expect("time"),
        );
        let d = &p.devices[0];
        assert_eq!(
            (&*d.platform, d.endpoint.as_deref(), d.source),
            ("fcm", None, DeviceSource::PushTokens)
        );
    }

    /// ann's identify `id` at `at` with `traits`.
    /// A watched trait's change is noted with its identify, so the same identify applied
    /// again returns it; a change too large to note, or of a trait no journey watches any
    /// more, is not kept.
    #[test]
    fn an_identify_applied_again_returns_the_change_it_noted_and_only_a_small_one() {
        let traits = |v: Value| {
            let mut m = Map::new();
            m.insert("plan".into(), v);
            m
        };
        let mut p = Profile::new("ann");
        let first = ann_identifies("i-1", "2026-12-01T09:00:00Z", traits("free".into()));
        let (_, changes) = p.apply_watching(&first, true, &["plan"], now());
        let noted = TraitChange {
            message_id: "i-1".into(),
            from: None,
            to: Some("free".into()),
            from_at: None,
            noted_at: Some(now()),
            at: Some("2026-12-01T09:00:00Z".parse().expect("time")),
        };
        assert_eq!(changes, [("plan".to_string(), noted.clone())]);
        assert_eq!(
            noted.properties("plan"),
            serde_json::json!({"trait": "plan", "to": "free"})
        );
        // again: no change now, the noted one is returned
        assert_eq!(p.apply_watching(&first, true, &["plan"], now()).1, changes);
        // another identify with the same value changes nothing
        let same = ann_identifies("i-2", "2026-12-01T10:00:00Z", traits("free".into()));
        assert!(p.apply_watching(&same, true, &["plan"], now()).1.is_empty());
        // a large value changes it, and is not noted
        let large = Value::String("x".repeat(MAX_CHANGE_BYTES));
        let big = ann_identifies("i-3", "2026-12-01T11:00:00Z", traits(large));
        assert_eq!(p.apply_watching(&big, true, &["plan"], now()).1.len(), 1);
        assert_eq!(noted_ids(&p, "plan"), ["i-1"]);
        assert!(p.apply_watching(&big, true, &["plan"], now()).1.is_empty());
        // (from the large value, the change weighs as much)
        let pro = ann_identifies("i-4", "2026-12-01T12:00:00Z", traits("pro".into()));
        p.apply_watching(&pro, true, &["plan"], now());
        assert_eq!(noted_ids(&p, "plan"), ["i-1"]);
        let back = ann_identifies("i-5", "2026-12-01T12:30:00Z", traits("free".into()));
        p.apply_watching(&back, true, &["plan"], now());
        assert_eq!(noted_ids(&p, "plan"), ["i-1", "i-5"]);
        // no journey watches `plan` any more: its change is forgotten
        let other = ann_identifies("i-6", "2026-12-01T13:00:00Z", Map::new());
        p.apply_watching(&other, true, &[], now());
        assert!(p.trait_changes.is_empty());
    }

    /// A number written another way (`1`, `1.0`) and an email address in another case are the
    /// same value: no change, however often an app alternates them.
    #[test]
    fn another_form_of_the_same_value_is_no_change() {
        use serde_json::json;
        let one = |k: &str, v: Value| {
            let mut m = Map::new();
            m.insert(k.into(), v);
            m
        };
        let mut p = Profile::new("ann");
        let seats = |id: &str, at: &str, v: Value| ann_identifies(id, at, one("seats", v));
        let (_, set) = p.apply_watching(
            &seats("i-1", "2026-12-01T09:00:00Z", json!(1)),
            true,
            &["seats"],
            now(),
        );
        assert_eq!(set.len(), 1);
        for (i, v) in [json!(1.0), json!(1), json!(1.0)].into_iter().enumerate() {
            let id = format!("s-{i}");
            let e = seats(&id, "2026-12-01T10:00:00Z", v);
            assert!(
                p.apply_watching(&e, true, &["seats"], now()).1.is_empty(),
                "{i}"
            );
        }
        let two = seats("s-9", "2026-12-01T11:00:00Z", json!(2.0));
        assert_eq!(p.apply_watching(&two, true, &["seats"], now()).1.len(), 1);

        let email = |id: &str, at: &str, v: &str| ann_identifies(id, at, one("email", v.into()));
        let first = email("e-1", "2026-12-01T09:00:00Z", "ann@example.com");
        assert_eq!(p.apply_watching(&first, true, &["email"], now()).1.len(), 1);
        for (i, v) in ["Ann@Example.com", "ann@example.com", "ANN@EXAMPLE.COM"]
            .into_iter()
            .enumerate()
        {
            let id = format!("c-{i}");
            let e = email(&id, "2026-12-01T10:00:00Z", v);
            assert!(
                p.apply_watching(&e, true, &["email"], now()).1.is_empty(),
                "{v}"
            );
        }
        let other = email("e-2", "2026-12-01T11:00:00Z", "ann@example.org");
        assert_eq!(p.apply_watching(&other, true, &["email"], now()).1.len(), 1);
    }

    /// A login's change rebased on the visitor she was: one the merge makes none is dropped
    /// with its note (the login retried finds none), one from the visitor's value is noted so.
    #[test]
    fn a_logins_change_is_rebased_on_the_visitor_and_its_note_with_it() {
        let plan = |v: &str| {
            let mut m = Map::new();
            m.insert("plan".into(), Value::String(v.into()));
            m
        };
        let mut visitor = Profile::new("anon:v-1");
        visitor.apply(&ann_identifies("v-i", "2026-12-01T09:00:00Z", plan("free")));
        // the login sends `free` again: no change once merged, nor when retried
        let mut p = Profile::new("ann");
        let login = ann_identifies("i-1", "2026-12-01T10:00:00Z", plan("free"));
        let (_, mut changes) = p.apply_watching(&login, true, &["plan"], now());
        assert_eq!(changes.len(), 1);
        p.absorb(&visitor);
        p.rebase_changes(&visitor, &mut changes);
        assert!(changes.is_empty());
        assert!(p.trait_changes.is_empty());
        assert!(p
            .apply_watching(&login, true, &["plan"], now())
            .1
            .is_empty());
        // the login makes it `pro`: a change from the visitor's `free`, noted so
        let mut p = Profile::new("ann");
        let login = ann_identifies("i-2", "2026-12-01T10:00:00Z", plan("pro"));
        let (_, mut changes) = p.apply_watching(&login, true, &["plan"], now());
        p.absorb(&visitor);
        p.rebase_changes(&visitor, &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.from, Some("free".into()));
        assert_eq!(p.apply_watching(&login, true, &["plan"], now()).1, changes);
    }

    /// A trait she removed after the visitor set it stays removed at the login: her removal on
    /// the web, or the login's own `null`; and a change the login makes after her removal is a
    /// change from nothing, not from the visitor's value.
    #[test]
    fn a_trait_she_removed_after_the_visitor_set_it_stays_removed() {
        let traits = |k: &str, v: Value| {
            let mut m = Map::new();
            m.insert(k.into(), v);
            m
        };
        let mut visitor = Profile::new("anon:v-1");
        visitor.apply(&ann_identifies(
            "v-i",
            "2026-12-01T09:00:00Z",
            traits("phone", "+33611111111".into()),
        ));
        visitor.apply(&ann_identifies(
            "v-j",
            "2026-12-01T09:00:00Z",
            traits("plan", "free".into()),
        ));
        // she removes her number on the web, then logs in on the phone
        let mut p = Profile::new("ann");
        p.apply(&ann_identifies(
            "w-1",
            "2026-12-01T10:00:00Z",
            traits("phone", Value::Null),
        ));
        p.absorb(&visitor);
        assert_eq!(p.address(Channel::Sms), Err(Unreachable::NoAddress));
        assert_eq!(
            p.trait_times.get("phone").copied(),
            Some("2026-12-01T10:00:00Z".parse().expect("time"))
        );
        // the login itself removes the plan: no change, and none the merge brings back
        let mut p = Profile::new("ann");
        let login = ann_identifies("i-1", "2026-12-01T11:00:00Z", traits("plan", Value::Null));
        let (_, mut changes) = p.apply_watching(&login, true, &["plan"], now());
        p.absorb(&visitor);
        p.rebase_changes(&visitor, &mut changes);
        assert_eq!(p.traits.get("plan"), None);
        assert!(changes.is_empty());
        // removed on the web, then the login makes it `pro`: a change from nothing
        let mut p = Profile::new("ann");
        p.apply(&ann_identifies(
            "w-2",
            "2026-12-01T10:00:00Z",
            traits("plan", Value::Null),
        ));
        let login = ann_identifies("i-2", "2026-12-01T11:00:00Z", traits("plan", "pro".into()));
        let (_, mut changes) = p.apply_watching(&login, true, &["plan"], now());
        p.absorb(&visitor);
        p.rebase_changes(&visitor, &mut changes);
        assert_eq!(p.traits["plan"], Value::from("pro"));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.from, None);
    }

    /// The clock's time the tests note changes at.
    fn now() -> Timestamp {
        "2026-12-01T14:00:00Z".parse().expect("time")
    }

    /// The messageIds of the changes of `name` the profile notes, oldest first.
    fn noted_ids(p: &Profile, name: &str) -> Vec<String> {
        p.trait_changes
            .get(name)
            .map(|l| l.iter().map(|c| c.message_id.clone()).collect())
            .unwrap_or_default()
    }

    /// Two identifies of one user handled at once (A: free to pro, B: pro to team): A run
    /// again after B finds its own note, not B's. A trait keeps its latest notes, all traits
    /// a bounded number, and none older than their age.
    #[test]
    fn each_identify_run_again_finds_its_own_note_within_the_bounds() {
        let plan = |v: &str| {
            let mut m = Map::new();
            m.insert("plan".into(), Value::String(v.into()));
            m
        };
        let mut p = Profile::new("ann");
        p.apply_watching(
            &ann_identifies("i-0", "2026-12-01T08:00:00Z", plan("free")),
            true,
            &["plan"],
            now(),
        );
        let a = ann_identifies("i-a", "2026-12-01T09:00:00Z", plan("pro"));
        let b = ann_identifies("i-b", "2026-12-01T09:00:01Z", plan("team"));
        let (_, first) = p.apply_watching(&a, true, &["plan"], now());
        p.apply_watching(&b, true, &["plan"], now());
        let (_, again) = p.apply_watching(&a, true, &["plan"], now());
        assert_eq!(again, first);
        assert_eq!(again[0].1.from, Some("free".into()));
        assert_eq!(again[0].1.to, Some("pro".into()));
        // a trait keeps its latest MAX_CHANGES_PER_TRAIT notes
        for i in 0..MAX_CHANGES_PER_TRAIT {
            let e = ann_identifies(
                &format!("n-{i}"),
                "2026-12-01T10:00:00Z",
                plan(&format!("p{i}")),
            );
            p.apply_watching(&e, true, &["plan"], now());
        }
        assert_eq!(noted_ids(&p, "plan"), ["n-0", "n-1", "n-2", "n-3"]);
        // all traits, MAX_TRAIT_CHANGES notes: the oldest go first
        let names: Vec<String> = (0..MAX_TRAIT_CHANGES).map(|i| format!("t{i}")).collect();
        let mut watched: Vec<&str> = names.iter().map(String::as_str).collect();
        watched.push("plan");
        for (i, name) in names.iter().enumerate() {
            let mut traits = Map::new();
            traits.insert(name.clone(), Value::from(1));
            let later = now() + SignedDuration::from_secs(i as i64 + 1);
            let e = ann_identifies(&format!("m-{i}"), "2026-12-01T11:00:00Z", traits);
            p.apply_watching(&e, true, &watched, later);
        }
        let count: usize = p.trait_changes.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(count, MAX_TRAIT_CHANGES);
        assert!(noted_ids(&p, "plan").is_empty());
        // the notes outlive no retry: past their age, forgotten at the next event
        let late = now() + MAX_CHANGE_AGE + SignedDuration::from_hours(1);
        let e = ann_identifies("late", "2026-12-16T15:00:00Z", Map::new());
        p.apply_watching(&e, true, &watched, late);
        assert!(p.trait_changes.is_empty());
    }

    /// A mark is read under the key of the exit (or goal) it met, not under the journey-wide
    /// key marks were noted under before; one met by another version's `where` is not this
    /// version's.
    #[test]
    fn marks_are_read_per_where_only() {
        let j = |over: u32| {
            crate::dsl::parse(
                "j.yaml",
                &format!("id: j\nname: J\ntrigger: {{event: go}}\nexit_when: [{{event: refunded, where: \"event.total > {over}\"}}]\nsteps:\n  - id: w\n    wait: 1d\n"),
            )
            .expect("journey")
        };
        let (v1, v2) = (j(10), j(100));
        let t: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let before: Timestamp = "2026-12-01T09:00:00Z".parse().expect("time");
        let mut p = Profile::new("ann");
        p.mark(&v1.markers()[0].key("j"), t);
        let marked =
            |p: &Profile, j: &Journey| p.marked_after(j, MarkKind::Exit, "refunded", before, true);
        assert_eq!(marked(&p, &v1), Some(t));
        assert_eq!(marked(&p, &v2), None);
        assert_eq!(
            p.marked_after(&v1, MarkKind::Goal, "refunded", before, true),
            None
        );
        // The journey-wide key of before (met, maybe, by version 1's `where`) is not read.
        let mut old = Profile::new("bob");
        old.marks.insert("exit:j".to_string(), t);
        assert_eq!(marked(&old, &v2), None);
    }

    /// Marks are dropped under keys no listed version reads only by an engine that knows a
    /// version of their journey as new as any that wrote or kept them; the journey-wide key
    /// of before, and a journey's marks once none is left, go.
    #[test]
    fn an_older_list_of_versions_does_not_drop_a_newer_ones_marks() {
        let key = |over: u32| {
            crate::dsl::parse(
                "j.yaml",
                &format!("id: j\nname: J\ntrigger: {{event: go}}\nexit_when: [{{event: refunded, where: \"event.total > {over}\"}}]\nsteps:\n  - id: w\n    wait: 1d\n"),
            )
            .expect("journey")
            .markers()[0]
            .key("j")
        };
        assert_eq!(Marker::journey_of_key(&key(1)), Some("j"));
        assert_eq!(Marker::journey_of_key("exit:j"), None);
        let t: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let mut p = Profile::new("ann");
        p.mark(&key(100), t);
        p.marks.insert("exit:j".to_string(), t);
        // Written by an engine that knows version 2 (whose `where` is over 100).
        p.keep_marks(&[key(100)], |j| (j == "j").then_some(2));
        assert_eq!(p.marks.len(), 1);
        assert_eq!(p.mark_versions.get("j"), Some(&2));
        // One that knows version 1 only (over 10) keeps it, and so does one that knows no `j`.
        p.keep_marks(&[key(10)], |j| (j == "j").then_some(1));
        p.keep_marks(&[], |_| None);
        assert_eq!(p.marks.len(), 1);
        assert_eq!(p.mark_versions.get("j"), Some(&2));
        // One that knows version 3 (over 1000) drops it.
        p.keep_marks(&[key(1000)], |j| (j == "j").then_some(3));
        assert!(p.marks.is_empty());
        assert!(p.mark_versions.is_empty());
    }

    /// A version's default zone is part of a marker only when its `where` reads dates: one
    /// published again in another zone reads the marks of the first when it reads none.
    #[test]
    fn a_markers_zone_counts_only_for_a_where_reading_dates() {
        let j = |zone: &str, condition: &str| {
            crate::dsl::parse(
                "j.yaml",
                &format!("id: j\nname: J\ntimezone: {zone}\ntrigger: {{event: go}}\nexit_when: [{{event: refunded, where: \"{condition}\"}}]\nsteps:\n  - id: w\n    wait: 1d\n"),
            )
            .expect("journey")
        };
        let key = |zone: &str, condition: &str| j(zone, condition).markers()[0].key("j");
        let plain = "event.total > 10";
        assert_eq!(key("Europe/Paris", plain), key("America/New_York", plain));
        let dated = "days_since(event.ordered_at) < 2";
        assert_ne!(key("Europe/Paris", dated), key("America/New_York", dated));
    }

    /// A marker stored with a zone its `where` does not read (a head written before zones were
    /// kept only for a `where` reading dates) notes marks under the key the version's own
    /// marker reads, and is listed once with it.
    #[test]
    fn a_stored_markers_stale_zone_does_not_move_its_key() {
        let j = crate::dsl::parse(
            "j.yaml",
            "id: j\nname: J\ntimezone: Europe/Paris\ntrigger: {event: go}\nexit_when: [{event: refunded, where: \"event.total > 10\"}, {event: returned, where: \"days_since(event.ordered_at) < 2\"}]\nsteps:\n  - id: w\n    wait: 1d\n",
        )
        .expect("journey");
        let fresh = j.markers();
        assert_eq!(fresh[0].zone, None);
        let mut stored = fresh[0].clone();
        stored.zone = Some("Europe/Paris".into());
        assert_eq!(stored.key("j"), fresh[0].key("j"));
        assert_eq!(stored.sort_key(), fresh[0].sort_key());
        // A `where` reading dates keeps its zone in the key.
        let mut moved = fresh[1].clone();
        moved.zone = Some("America/New_York".into());
        assert_ne!(moved.key("j"), fresh[1].key("j"));
    }

    /// A removal's note drops the trait's earlier notes: they hold values the app removed.
    #[test]
    fn a_removal_drops_the_traits_earlier_notes() {
        let email = |v: Value| {
            let mut m = Map::new();
            m.insert("email".into(), v);
            m
        };
        let mut p = Profile::new("ann");
        for (id, v) in [("e-1", "a@example.com"), ("e-2", "b@example.com")] {
            let e = ann_identifies(id, "2026-12-01T09:00:00Z", email(v.into()));
            p.apply_watching(&e, true, &["email"], now());
        }
        assert_eq!(noted_ids(&p, "email"), ["e-1", "e-2"]);
        let gone = ann_identifies("e-3", "2026-12-01T10:00:00Z", email(Value::Null));
        p.apply_watching(&gone, true, &["email"], now());
        assert_eq!(noted_ids(&p, "email"), ["e-3"]);
    }

    /// A profile stored with one note per trait reads as a list of one.
    #[test]
    fn one_stored_note_per_trait_reads_as_a_list_of_one() {
        let stored = serde_json::json!({
            "user_id": "ann",
            "trait_changes": {"plan": {"message_id": "i-1", "to": "free"}}
        });
        let read: Profile = serde_json::from_value(stored).expect("profile");
        assert_eq!(noted_ids(&read, "plan"), ["i-1"]);
    }

    fn ann_identifies(id: &str, at: &str, traits: Map<String, Value>) -> Event {
        Event {
            kind: Kind::Identify,
            message_id: id.into(),
            user_id: "ann".into(),
            anonymous_id: None,
            event: None,
            properties: std::sync::Arc::new(Value::Object(Map::new())),
            traits,
            context: Map::new(),
            timestamp: at.parse().expect("time"),
            received_at: at.parse().expect("time"),
            refused: Vec::new(),
        }
    }

    /// Past [`MAX_PROFILE_TRAITS`], a new trait is not kept (and said), one the profile has is
    /// still updated, one removed makes room, and an address or consent is always taken; a
    /// login's visitor brings no more than there is room for.
    #[test]
    fn a_profile_keeps_at_most_its_bound_of_traits() {
        let identify = |id: &str, traits: Map<String, Value>| {
            ann_identifies(id, "2026-12-01T10:00:00Z", traits)
        };
        let numbered = |from: usize, to: usize| -> Map<String, Value> {
            (from..to)
                .map(|i| (format!("k{i}"), Value::from(i)))
                .collect()
        };
        let mut p = Profile::new("ann");
        let mut not_kept = Vec::new();
        for batch in 0..5 {
            let from = batch * 250;
            not_kept.extend(p.apply(&identify(&format!("i{batch}"), numbered(from, from + 250))));
        }
        assert_eq!(p.traits.len(), MAX_PROFILE_TRAITS);
        let past: Vec<String> = (MAX_PROFILE_TRAITS..1250)
            .map(|i| format!("k{i}"))
            .collect();
        assert_eq!(not_kept, past);
        // The same identify again changes nothing, and says the same.
        assert_eq!(p.apply(&identify("i4", numbered(1000, 1250))), past);
        let mut more = Map::new();
        more.insert("k1".into(), Value::from("one"));
        more.insert("new".into(), Value::from(1));
        more.insert("email".into(), Value::from("ann@example.com"));
        more.insert("subscriptions".into(), serde_json::json!({"email": false}));
        assert_eq!(p.apply(&identify("i5", more)), ["new"]);
        assert_eq!(p.traits["k1"], Value::from("one"));
        assert_eq!(p.traits["email"], Value::from("ann@example.com"));
        assert_eq!(p.address(Channel::Email), Err(Unreachable::OptedOut));
        // Those removed make room (the address and consent, taken past the bound, count).
        let mut swap = Map::new();
        for k in ["k2", "k3", "k4"] {
            swap.insert(k.into(), Value::Null);
        }
        swap.insert("new".into(), Value::from(1));
        assert!(p.apply(&identify("i6", swap)).is_empty());
        assert_eq!(p.traits["new"], Value::from(1));
        // A visitor's traits are taken as far as there is room.
        let mut visitor = Profile::new("anon:d1");
        visitor.apply(&identify("v1", numbered(5000, 5003)));
        assert_eq!(p.absorb(&visitor), ["k5000", "k5001", "k5002"]);
        // A profile with room takes them.
        let mut bob = Profile::new("bob");
        assert!(bob.absorb(&visitor).is_empty());
        assert_eq!(bob.traits.len(), 3);
    }

    fn subs(topics: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("subscriptions".into(), topics);
        m
    }

    fn topic(p: &Profile, id: &str) -> Option<Value> {
        p.traits["subscriptions"]["topics"].get(id).cloned()
    }

    /// The times of her choices are not removed traits' times: an app removing ever new trait
    /// names does not make her profile forget when she said no, so a late, older yes is still
    /// refused.
    #[test]
    fn a_choices_times_outlive_the_removals_bound() {
        let identify = ann_identifies;
        let mut p = Profile::new("ann");
        let no = serde_json::json!({"email": false, "topics": {"news": false}});
        p.apply(&identify("no", "2026-12-01T09:00:00Z", subs(no)));
        for n in 0..5 {
            let gone: Map<String, Value> = (0..250)
                .map(|i| (format!("gone-{n}-{i:03}"), Value::Null))
                .collect();
            p.apply(&identify(&format!("g{n}"), "2026-12-01T10:00:00Z", gone));
        }
        for k in [
            "subscriptions.topics.news",
            "stated:subscriptions.topics.news",
            "subscriptions.email",
            "stated:subscriptions.email",
        ] {
            assert!(p.trait_times.contains_key(k), "{k} forgotten");
        }
        let yes = serde_json::json!({"email": true, "topics": {"news": true}});
        p.apply(&identify("late", "2026-12-01T08:00:00Z", subs(yes)));
        assert_eq!(topic(&p, "news"), Some(Value::Bool(false)));
        assert_eq!(p.traits["subscriptions"]["email"], Value::Bool(false));
    }

    /// Past [`MAX_TOPICS`], a no for a new topic takes the place of the yes stated longest
    /// ago, which `not_kept` names; a new yes, or a no when all are no, is dropped and named.
    #[test]
    fn a_topics_no_is_kept_past_the_topics_bound() {
        let identify = ann_identifies;
        let mut p = Profile::new("ann");
        let old = serde_json::json!({"topics": {"old": true}});
        p.apply(&identify("old", "2026-12-01T08:00:00Z", subs(old)));
        let yeses: Map<String, Value> = (1..MAX_TOPICS)
            .map(|i| (format!("t{i:03}"), Value::Bool(true)))
            .collect();
        let many = serde_json::json!({ "topics": yeses });
        assert!(p
            .apply(&identify("many", "2026-12-01T09:00:00Z", subs(many)))
            .is_empty());
        let no = serde_json::json!({"topics": {"late": false}});
        assert_eq!(
            p.apply(&identify("no", "2026-12-01T10:00:00Z", subs(no))),
            ["subscriptions.topics.old"]
        );
        assert_eq!(topic(&p, "late"), Some(Value::Bool(false)));
        assert_eq!(topic(&p, "old"), None);
        assert!(!p
            .trait_times
            .contains_key("stated:subscriptions.topics.old"));
        let yes = serde_json::json!({"topics": {"extra": true}});
        assert_eq!(
            p.apply(&identify("yes", "2026-12-01T11:00:00Z", subs(yes))),
            ["subscriptions.topics.extra"]
        );
        // Every choice a no: a new no is dropped, and said so.
        let nos: Map<String, Value> = (0..MAX_TOPICS)
            .map(|i| (format!("n{i:03}"), Value::Bool(false)))
            .collect();
        let mut bo = Profile::new("ann");
        bo.apply(&identify(
            "nos",
            "2026-12-01T09:00:00Z",
            subs(serde_json::json!({ "topics": nos })),
        ));
        let one_more = serde_json::json!({"topics": {"more": false}});
        assert_eq!(
            bo.apply(&identify("more", "2026-12-01T10:00:00Z", subs(one_more))),
            ["subscriptions.topics.more"]
        );

        // At a login, a visitor's no takes a yes's place too; her yes past the bound is named.
        let mut visitor = Profile::new("anon:v");
        let theirs = serde_json::json!({"topics": {"guest_no": false, "guest_yes": true}});
        visitor.apply(&identify("v", "2026-12-01T12:00:00Z", subs(theirs)));
        let mut full = Profile::new("ann");
        let yeses: Map<String, Value> = (0..MAX_TOPICS)
            .map(|i| (format!("t{i:03}"), Value::Bool(true)))
            .collect();
        full.apply(&identify(
            "y",
            "2026-12-01T09:00:00Z",
            subs(serde_json::json!({ "topics": yeses })),
        ));
        let dropped = full.absorb(&visitor);
        assert_eq!(topic(&full, "guest_no"), Some(Value::Bool(false)));
        assert_eq!(topic(&full, "guest_yes"), None);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped.contains(&"subscriptions.topics.guest_yes".to_string()));
    }

    /// At the bound, an identify that removes one trait and adds another keeps the new one
    /// whatever their names' order, and applied again keeps the same; the times of removed
    /// traits are kept within their own bound, the oldest forgotten first.
    #[test]
    fn an_identify_at_the_bound_is_the_same_applied_again_and_removals_stay_bounded() {
        let identify = ann_identifies;
        let mut p = Profile::new("ann");
        let full: Map<String, Value> = (0..MAX_PROFILE_TRAITS)
            .map(|i| (format!("k{i:04}"), Value::from(i)))
            .collect();
        for (n, chunk) in full.into_iter().collect::<Vec<_>>().chunks(250).enumerate() {
            let part: Map<String, Value> = chunk.iter().cloned().collect();
            assert!(p
                .apply(&identify(&format!("f{n}"), "2026-12-01T10:00:00Z", part))
                .is_empty());
        }
        // `a_new` comes before `k0999` by name.
        let mut swap = Map::new();
        swap.insert("a_new".into(), Value::from(1));
        swap.insert("k0999".into(), Value::Null);
        let once = identify("s", "2026-12-01T11:00:00Z", swap);
        assert!(p.apply(&once).is_empty(), "the removal makes room");
        let after = p.clone();
        assert!(p.apply(&once).is_empty());
        assert_eq!(p, after, "applied again, the same");
        assert_eq!(p.traits["a_new"], Value::from(1));

        // Removing ever new names keeps no more than the bound of their times.
        let mut bob = Profile::new("bob");
        for n in 0..20 {
            let gone: Map<String, Value> = (0..250)
                .map(|i| (format!("{}-{n:02}-{i:03}", "x".repeat(100)), Value::Null))
                .collect();
            bob.apply(&identify(
                &format!("g{n}"),
                &format!("2026-12-01T10:{n:02}:00Z"),
                gone,
            ));
        }
        assert!(bob.traits.is_empty());
        let kept = bob.trait_times.len();
        assert!(kept <= MAX_REMOVED_TIMES, "{kept}");
        let bytes: usize = bob.trait_times.iter().map(|(k, _)| k.len() + 32).sum();
        assert!(bytes <= MAX_REMOVED_BYTES, "{bytes}");
        // The newest are the ones kept.
        assert!(bob.trait_times.iter().any(|(k, _)| k.contains("-19-")));
        assert!(!bob.trait_times.iter().any(|(k, _)| k.contains("-00-")));
        let stored = serde_json::to_vec(&bob).expect("json").len();
        assert!(stored < 100 * 1024, "{stored}");
    }

    /// Past [`MAX_TRAIT_BYTES`], a new trait is not kept, nor a larger value of one it has;
    /// a smaller one is.
    #[test]
    fn a_profiles_traits_weigh_at_most_their_bound() {
        let identify = |id: &str, traits: Value| {
            let traits = traits.as_object().cloned().unwrap_or_default();
            ann_identifies(id, "2026-12-01T10:00:00Z", traits)
        };
        let big = "x".repeat(30_000);
        let mut p = Profile::new("ann");
        let mut not_kept = Vec::new();
        for i in 0..6 {
            not_kept.extend(p.apply(&identify(
                &format!("i{i}"),
                serde_json::json!({format!("b{i}"): big}),
            )));
        }
        assert_eq!(not_kept, ["b4", "b5"]);
        let weight: usize = p.traits.iter().map(|(k, v)| trait_weight(k, v)).sum();
        assert!(weight <= MAX_TRAIT_BYTES, "{weight}");
        let bigger = "x".repeat(45_000);
        assert_eq!(
            p.apply(&identify("g", serde_json::json!({"b0": bigger}))),
            ["b0"]
        );
        assert_eq!(p.traits["b0"], Value::from(big));
        assert!(p
            .apply(&identify("s", serde_json::json!({"b0": "small"})))
            .is_empty());
        assert_eq!(p.traits["b0"], Value::from("small"));
    }

    #[test]
    fn a_devices_zone_stays_a_devices_through_a_login() {
        let zone = |p: &Profile| {
            p.traits
                .get("timezone")
                .and_then(Value::as_str)
                .map(String::from)
        };
        // An anonymous visitor's phone says Paris; she logs in: the zone is hers, and her
        // travels are still followed.
        let mut anon = Profile::new("anon:a1");
        anon.apply(&device_event(
            "anon:a1",
            "2026-12-01T10:00:00Z",
            "Europe/Paris",
        ));
        let mut ann = Profile::new("ann");
        ann.absorb(&anon);
        ann.absorb(&anon);
        assert_eq!(zone(&ann).as_deref(), Some("Europe/Paris"));
        ann.apply(&device_event("ann", "2026-12-02T10:00:00Z", "Asia/Tokyo"));
        assert_eq!(zone(&ann).as_deref(), Some("Asia/Tokyo"));
        // A user whose own device spoke earlier takes the anonymous device's newer zone; one
        // whose device spoke later keeps hers.
        let mut bob = Profile::new("bob");
        bob.apply(&device_event(
            "bob",
            "2026-11-30T10:00:00Z",
            "America/Chicago",
        ));
        bob.absorb(&anon);
        assert_eq!(zone(&bob).as_deref(), Some("Europe/Paris"));
        let mut cat = Profile::new("cat");
        cat.apply(&device_event(
            "cat",
            "2026-12-01T11:00:00Z",
            "America/Chicago",
        ));
        cat.absorb(&anon);
        assert_eq!(zone(&cat).as_deref(), Some("America/Chicago"));
        // The app's own zone stands, on either side.
        let mut dan = Profile::new("dan");
        dan.traits
            .insert("timezone".into(), Value::String("Asia/Dubai".into()));
        dan.absorb(&anon);
        assert_eq!(zone(&dan).as_deref(), Some("Asia/Dubai"));
        let mut named = anon.clone();
        named
            .traits
            .insert("timezone".into(), Value::String("Europe/Lisbon".into()));
        let mut eve = Profile::new("eve");
        eve.absorb(&named);
        eve.apply(&device_event("eve", "2026-12-02T10:00:00Z", "Asia/Tokyo"));
        assert_eq!(zone(&eve).as_deref(), Some("Europe/Lisbon"));
        // The zone the visitor's app named (an identify) wins over the one her own device
        // sent, whenever that was, and her later travels leave it.
        let mut told = Profile::new("anon:a2");
        let mut traits = Map::new();
        traits.insert("timezone".into(), Value::String("Europe/Lisbon".into()));
        let mut named = ann_identifies("v-tz", "2026-12-01T10:00:00Z", traits);
        named.user_id = "anon:a2".into();
        told.apply(&named);
        let mut fay = Profile::new("fay");
        fay.apply(&device_event("fay", "2026-12-01T12:00:00Z", "Asia/Tokyo"));
        fay.absorb(&told);
        fay.absorb(&told);
        assert_eq!(zone(&fay).as_deref(), Some("Europe/Lisbon"));
        fay.apply(&device_event(
            "fay",
            "2026-12-02T10:00:00Z",
            "America/Chicago",
        ));
        assert_eq!(zone(&fay).as_deref(), Some("Europe/Lisbon"));
    }
}
