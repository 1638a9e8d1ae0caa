//! Incoming events: the Segment-compatible track/identify/batch payloads, their validation and limits.
//!
//! This module reads and checks payloads and says what to send instead; it never stores, enqueues
//! or logs them (they carry personal data).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest event, as Segment allows: 32 KB.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest batch body, as Segment allows: 500 KB.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// How deep objects and arrays may nest in `properties`, `traits` and `context` (the field's own
/// object is level 1).
pub const MAX_DEPTH: usize = 10;
/// How many top-level keys an event keeps of its `properties` and `context`: past it the rest
/// are left out with a warning ([`Check::within_keys`]). An identify's `traits` have no such
/// bound of their own: the profile's ([`crate::profile::MAX_PROFILE_TRAITS`]) applies.
pub const MAX_TRAITS: usize = 256;
/// The keys of `context` Waymark reads, kept first when some are left out: the push device
/// (`device`, its platform told by `os` when `device.type` does not, see [`context_device`]) and
/// the user's `timezone` and `locale`.
const CONTEXT_READ: [&str; 4] = ["device", "os", "timezone", "locale"];

/// The longest `userId` or `anonymousId`, in bytes of UTF-8: ids are part of the store's keys,
/// a user's twice in some (DynamoDB takes 1,024 bytes of sort key).
pub(crate) const MAX_ID_BYTES: usize = 256;
pub(crate) const MAX_EVENT_NAME_CHARS: usize = 200;
/// The longest `messageId`, in bytes of UTF-8 (part of the store's keys too).
pub(crate) const MAX_MESSAGE_ID_BYTES: usize = 100;
const MAX_EMAIL_CHARS: usize = 254;
const CHANNELS: [&str; 5] = ["email", "sms", "push", "in_app", "webhook"];
const PLATFORMS: [&str; 2] = ["apns", "fcm"];
/// An anonymous user (sent with `anonymousId` and no `userId`) is kept under this prefix.
pub const ANONYMOUS_PREFIX: &str = "anon:";

/// Why no user is kept under `user`, when its length says so: intake takes a `userId` or an
/// `anonymousId` of at most `MAX_ID_BYTES` bytes, and keeps an anonymous user under
/// [`ANONYMOUS_PREFIX`] and her id. A read or an erasure of a longer one has nothing to find
/// (and a key made of it could be past DynamoDB's bounds, which refuses the read).
pub fn unkept_user_id(user: &str) -> Option<String> {
    let id = user.strip_prefix(ANONYMOUS_PREFIX).unwrap_or(user);
    (id.len() > MAX_ID_BYTES).then(|| {
        format!(
            "is {} bytes in UTF-8; no user is kept under a longer id than intake takes: a userId of at most {MAX_ID_BYTES} bytes, or `{ANONYMOUS_PREFIX}` and an anonymousId of at most {MAX_ID_BYTES}",
            user.len()
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Track,
    Identify,
}

impl Kind {
    /// The Segment `type`: `"track"` or `"identify"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Identify => "identify",
        }
    }
}

/// A Segment call Waymark takes, by its `type`. `track` and `identify` are events as they are;
/// `page` and `screen` are the track events `page_viewed` and `screen_viewed` (the call's `name`
/// and `category` among their properties, as Segment's own destinations map them); `alias` is an
/// identify of `userId` with `previousId` as its anonymous id, which merges that anonymous user
/// into it; `group` is the track event `group_joined`, the group's traits and its `group_id`
/// among its properties (Waymark keeps no groups of its own: a journey can enter, branch or
/// exit on the event, and an `update` step can copy a trait to the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Track,
    Identify,
    Page,
    Screen,
    Alias,
    Group,
}

impl Call {
    /// The call a Segment `type` names, if Waymark takes it.
    pub fn parse(t: &str) -> Option<Call> {
        match t {
            "track" => Some(Call::Track),
            "identify" => Some(Call::Identify),
            "page" => Some(Call::Page),
            "screen" => Some(Call::Screen),
            "alias" => Some(Call::Alias),
            "group" => Some(Call::Group),
            _ => None,
        }
    }
}

/// The track event a `group` call becomes.
pub const GROUP_JOINED: &str = "group_joined";

/// Parse one `POST /v1/{track,identify,page,screen,alias,group}` body (see [`Call`]).
/// Strict: an identify's `email`, `phone` or `timezone` that the HTTP API would leave out with
/// a warning ([`parse_call_warned`]) is an error here, for a script or a test that names what
/// it sends.
pub fn parse_call(
    call: Call,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<Event, Vec<FieldError>> {
    parse_call_at(call, body, received_at, limits, "")
}

/// [`parse_call`] for one of several calls received at the same time, `place` naming which (a
/// script's line): an event without a `messageId` gets an id of its own there.
pub fn parse_call_at(
    call: Call,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
    place: &str,
) -> Result<Event, Vec<FieldError>> {
    let (event, warnings) = parse_call_warned_at(call, body, received_at, limits, place)?;
    let refused: Vec<FieldError> = warnings
        .into_iter()
        .filter(|l| l.strict)
        .map(|l| l.problem)
        .collect();
    if refused.is_empty() {
        Ok(event)
    } else {
        Err(refused)
    }
}

/// [`parse_call`] as the HTTP API takes a call: an identify whose `email` or `phone` trait is
/// not an address is accepted without that trait (the stored one stays), its other traits
/// applied, and each trait left out is returned as a warning naming it (see
/// [`Check::special_traits`]): refusing the whole identify would lose an opt-out sent with it,
/// as Segment's libraries do not send a refused request again.
pub fn parse_call_warned(
    call: Call,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<(Event, Vec<Warning>), Vec<FieldError>> {
    let (event, left_out) = parse_call_warned_at(call, body, received_at, limits, "")?;
    let warnings = left_out.into_iter().map(|e| Warning::left_out(None, e));
    Ok((event, warnings.collect()))
}

fn parse_call_warned_at(
    call: Call,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
    place: &str,
) -> Result<(Event, Vec<LeftOut>), Vec<FieldError>> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(vec![too_big("body", body.len(), MAX_EVENT_BYTES)]);
    }
    let raw = parse_body(body)?;
    let received = Received {
        at: received_at,
        place,
        sent_at: None,
        nth: 0,
    };
    from_call(call, &raw, &Map::new(), received, limits, "")
}

/// When an event was received, and where in its request (`batch[3]`, a script's line; empty
/// for a lone call): what an event without a `messageId` takes its id from. `sent_at`: the
/// batch's `sentAt`, for items without their own (then the event's own, or the batch's).
/// The properties a call puts in its event itself (a page's `name` and `category`, a group's
/// `group_id`): kept first when some are left out, and the `added` of them that the app's own
/// properties did not have not counted among the keys it sent.
#[derive(Clone, Copy, Default)]
struct Own<'a> {
    keys: &'a [&'a str],
    added: usize,
}

/// `nth`: the item's place in its batch (0 for a lone call), what orders the items sent
/// without a time ([`Check::timestamp`]).
#[derive(Clone, Copy)]
struct Received<'a> {
    at: Timestamp,
    place: &'a str,
    sent_at: Option<Timestamp>,
    nth: usize,
}

/// Validates one call's object as the event it is (see [`Call`]).
fn from_call(
    call: Call,
    raw: &Map<String, Value>,
    shared_context: &Map<String, Value>,
    received: Received<'_>,
    limits: &Limits,
    prefix: &str,
) -> Result<(Event, Vec<LeftOut>), Vec<FieldError>> {
    match call {
        Call::Track => from_raw(
            Kind::Track,
            raw,
            shared_context,
            received,
            limits,
            prefix,
            Own::default(),
        ),
        Call::Identify => from_raw(
            Kind::Identify,
            raw,
            shared_context,
            received,
            limits,
            prefix,
            Own::default(),
        ),
        Call::Page | Call::Screen => {
            let mut raw = raw.clone();
            let name = if call == Call::Page {
                "page_viewed"
            } else {
                "screen_viewed"
            };
            raw.insert("event".into(), Value::String(name.into()));
            // A properties value that is not an object is left for the check to name.
            let (name, category) = (raw.get("name").cloned(), raw.get("category").cloned());
            let props = raw
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if props.is_null() {
                *props = Value::Object(Map::new());
            }
            // The call's own `name` and `category` are the page's (Segment's spec): they win
            // over properties of the same names.
            let mut added = 0;
            if let Value::Object(props) = props {
                for (k, v) in [("name", name), ("category", category)] {
                    if let Some(v) = v.filter(|v| !v.is_null()) {
                        added += usize::from(props.insert(k.into(), v).is_none());
                    }
                }
            }
            let own = Own {
                keys: &["name", "category"],
                added,
            };
            from_raw(
                Kind::Track,
                &raw,
                shared_context,
                received,
                limits,
                prefix,
                own,
            )
        }
        Call::Group => {
            let mut check = Check::new(prefix);
            // Blank is missing here (an id's own check would say to leave it out).
            let blank = raw
                .get("groupId")
                .and_then(Value::as_str)
                .is_some_and(|g| g.trim().is_empty());
            let group = if blank {
                None
            } else {
                check.id(raw, "groupId")
            };
            if blank || is_absent(raw.get("groupId")) {
                check.error(
                    "groupId",
                    "is required: the id of the group (a company, an account) the user is in",
                );
            }
            let traits = match raw.get("traits") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(t)) => t.clone(),
                Some(_) => {
                    check.error("traits", "must be an object: the group's traits");
                    Map::new()
                }
            };
            if !check.errors.is_empty() {
                return Err(check.errors);
            }
            let mut raw = raw.clone();
            raw.remove("groupId");
            raw.remove("traits");
            raw.insert("event".into(), Value::String(GROUP_JOINED.into()));
            // The group's traits over any properties the call has, and its id over both.
            let props = raw
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if props.is_null() {
                *props = Value::Object(Map::new());
            }
            let mut added = 0;
            if let Value::Object(props) = props {
                props.extend(traits);
                if let Some(group) = group {
                    added += usize::from(
                        props
                            .insert("group_id".into(), Value::String(group))
                            .is_none(),
                    );
                }
            }
            let own = Own {
                keys: &["group_id"],
                added,
            };
            // A problem of the properties is one of the traits the call sent.
            let sent = if prefix.is_empty() {
                "traits".to_string()
            } else {
                format!("{prefix}.traits")
            };
            let made = sent.replace("traits", "properties");
            let named = |mut e: FieldError| {
                if let Some(rest) = e.field.strip_prefix(made.as_str()) {
                    e.field = format!("{sent}{rest}");
                }
                e
            };
            match from_raw(
                Kind::Track,
                &raw,
                shared_context,
                received,
                limits,
                prefix,
                own,
            ) {
                Ok((mut event, left_out)) => {
                    // The timeline names the field the app sent too.
                    for r in &mut event.refused {
                        if let Some(rest) = r.field.strip_prefix("properties") {
                            r.field = format!("traits{rest}");
                        }
                    }
                    let left_out = left_out
                        .into_iter()
                        .map(|mut l| {
                            l.problem = named(l.problem);
                            l
                        })
                        .collect();
                    Ok((event, left_out))
                }
                Err(errs) => Err(errs.into_iter().map(named).collect()),
            }
        }
        Call::Alias => {
            let mut check = Check::new(prefix);
            let previous = check.id(raw, "previousId");
            if let Some(internal) = previous
                .as_deref()
                .and_then(|p| p.strip_prefix(ANONYMOUS_PREFIX))
            {
                // The id `GET /v1/users` shows for an anonymous user is Waymark's, not the app's.
                check.error(
                    "previousId",
                    format!(
                        r#"is Waymark's id for an anonymous user ("anon:" and the app's anonymousId): send the anonymousId itself, "{internal}""#
                    ),
                );
            }
            if is_absent(raw.get("previousId")) {
                check.error(
                    "previousId",
                    "is required: the anonymous id (anonymousId) that turned out to be userId",
                );
            }
            if is_absent(raw.get("userId")) {
                check.error(
                    "userId",
                    "is required: the user previousId turned out to be",
                );
            }
            if !check.errors.is_empty() {
                return Err(check.errors);
            }
            let mut raw = raw.clone();
            raw.remove("previousId");
            // A user aliased to herself has no other id to merge: her own is no anonymous id.
            let user = raw.get("userId").and_then(|u| match u {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => number_id(n),
                _ => None,
            });
            let itself = previous.is_some() && previous == user;
            if let Some(previous) = previous.clone().filter(|_| !itself) {
                raw.insert("anonymousId".into(), Value::String(previous));
            }
            let (mut event, mut left_out) = from_raw(
                Kind::Identify,
                &raw,
                shared_context,
                received,
                limits,
                prefix,
                Own::default(),
            )?;
            if let (true, Some(previous)) = (itself, previous) {
                let problem = "is userId itself: an alias says an earlier id (an anonymousId) turned out to be userId, and a user is no alias of her own";
                event.refused.push(Refused {
                    field: "previousId".into(),
                    value: crate::condition::shown("previousId", &Value::String(previous)),
                    reason: format!("{problem}; nothing was merged"),
                });
                left_out.push(LeftOut {
                    problem: FieldError::new(check.field("previousId"), problem),
                    instead: "nothing is merged, and her anonymous_ids do not list her own id",
                    strict: false,
                });
            }
            Ok((event, left_out))
        }
    }
}

fn no_properties() -> Arc<Value> {
    Arc::new(Value::Object(Map::new()))
}

/// A validated event, as it travels on the events queue (serde JSON) and into the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: Kind,
    /// `messageId`; if absent, `"auto-"` + hex SHA-256 of the canonical JSON of the raw event, so
    /// that a retried identical request dedups.
    pub message_id: String,
    /// `userId`, or if absent `"anon:"` + `anonymousId`.
    pub user_id: String,
    #[serde(default)]
    pub anonymous_id: Option<String>,
    /// Track only: the event's name.
    #[serde(default)]
    pub event: Option<String>,
    /// Track only: always a JSON object, shared (an enrollment the event starts keeps it as its
    /// trigger's properties, and conditions read it, without a copy).
    #[serde(default = "no_properties")]
    pub properties: Arc<Value>,
    /// Identify only (top-level `traits`; `context.traits` stays in `context`).
    #[serde(default)]
    pub traits: Map<String, Value>,
    #[serde(default)]
    pub context: Map<String, Value>,
    /// `timestamp` if sent, else `received_at`.
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    /// What it was accepted without, for the user's timeline: an identify's traits that are no
    /// address, zone or locale (see [`Check::special_traits`]), and a field of any call spelt
    /// near one Segment's calls carry (`propertes`): what the `200`'s `warnings` said, where the
    /// user's "why" is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

impl Event {
    /// The push device the event's device sent its token for (`context.device.token`, see
    /// [`context_device`]): registered as an identify's `push_tokens` entry would be.
    pub fn push_device(&self) -> Option<(&'static str, &str)> {
        context_device(&self.context).ok().flatten()
    }
}

/// A part of an accepted event that is not kept or does nothing (a trait an identify could not
/// keep, a key past the bound of its properties or context, a push token whose platform cannot
/// be told, a field Waymark does not read): its field (`traits.phone`), its value as the
/// timeline shows values ([`crate::condition::shown`]: cut short, an address not shown), and
/// why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub field: String,
    pub value: String,
    pub reason: String,
}

/// What is wrong with one field, and what to send instead. `field` is a JSON path in Segment's
/// spelling, like `"batch[3].userId"` or `"traits.push_tokens[0].platform"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An event that was not accepted: its position in the batch (`None` outside a batch) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub index: Option<usize>,
    pub errors: Vec<FieldError>,
}

/// How far an event's `timestamp` may lie from the time it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_past: SignedDuration,
    pub max_future: SignedDuration,
}

impl Default for Limits {
    /// 30 days in the past, 1 hour in the future.
    fn default() -> Self {
        Limits {
            max_past: SignedDuration::from_hours(30 * 24),
            max_future: SignedDuration::from_hours(1),
        }
    }
}

/// A field left out of an accepted event (an identify's `email` or `phone` that is not an
/// address, or a `timezone` that is not a zone): its position in the batch (`None` outside a
/// batch), the field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
}

impl Warning {
    /// The warning for a field left out: what was wrong, and what was done instead
    /// (`must not contain spaces; left out: the stored value is unchanged, ...`; after a
    /// question, `did you mean `properties`? Left out: ...`).
    fn left_out(index: Option<usize>, l: LeftOut) -> Warning {
        let message = if l.problem.message.ends_with('?') {
            format!("{} Left out: {}", l.problem.message, l.instead)
        } else {
            format!("{}; left out: {}", l.problem.message, l.instead)
        };
        Warning {
            index,
            field: l.problem.field,
            message,
        }
    }
}

/// A field an accepted event is taken without: what was wrong with it, and what is done
/// instead. When the event is refused all the same, only the problem is said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    problem: FieldError,
    instead: &'static str,
    /// Whether strict parsing (a script, a test) refuses the event for it: not for what a
    /// device says of itself (`context.timezone`), which a script replays as it came.
    strict: bool,
}

/// The events of a batch that passed (with the fields left out of them), and the ones that
/// did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub accepted: Vec<Event>,
    pub rejected: Vec<Rejected>,
    pub warnings: Vec<Warning>,
    /// The accepted events that alias calls made: each one's place in `accepted` (see
    /// [`crate::api`]'s check of an alias's `previousId`).
    pub aliases: Vec<usize>,
}

/// Parse one `POST /v1/track` or `/v1/identify` body. `kind` comes from the route (a `type` in the
/// body is ignored).
pub fn parse_single(
    kind: Kind,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<Event, Vec<FieldError>> {
    let call = match kind {
        Kind::Track => Call::Track,
        Kind::Identify => Call::Identify,
    };
    parse_call(call, body, received_at, limits)
}

/// Parse `POST /v1/batch`: `{"batch":[{type: a [`Call`]'s type, ...}, ...], "context":{...}?}`.
/// Whole-body problems (not JSON, too big, no batch array) are `Err`; per-item problems are
/// collected in `rejected` while valid items are still returned. The batch's `context` is merged
/// under each item's own `context` (the item's keys win).
pub fn parse_batch(
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<BatchOutcome, Vec<FieldError>> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(vec![too_big("body", body.len(), MAX_BATCH_BYTES)]);
    }
    let Body {
        fields: raw,
        rejected: too_deep,
        ..
    } = parse_body_with(body, Some("batch"))?;
    let items = match raw.get("batch") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(vec![FieldError::new(
                "batch",
                r#"is required: send {"batch": [...]} with track, identify, page, screen, alias or group events"#,
            )])
        }
        Some(_) => {
            return Err(vec![FieldError::new(
                "batch",
                "must be an array of track, identify, page, screen, alias or group events",
            )])
        }
    };
    let mut check = Check::new("");
    let shared_context = check.object(&raw, "context");
    let shared_context = check.within_keys("context", shared_context, &CONTEXT_READ, 0, false);
    let sent_at = check.sent_at(&raw);
    if !check.errors.is_empty() {
        return Err(check.errors);
    }

    let mut outcome = BatchOutcome::default();
    outcome
        .warnings
        .extend(check.warnings.drain(..).map(|e| Warning::left_out(None, e)));
    // What the batch's context left out, each event of it left out too: each user's timeline
    // says so (the answer's warning is one, for the batch).
    let batch_refused = std::mem::take(&mut check.refused);
    // Each item nested too deep to read is refused alone (a `null` holds its place).
    let mut too_deep = too_deep.into_iter().peekable();
    for (index, item) in items.iter().enumerate() {
        if let Some(refused) = too_deep.next_if(|r| r.index == Some(index)) {
            outcome.rejected.push(refused);
            continue;
        }
        let prefix = format!("batch[{index}]");
        let received = Received {
            at: received_at,
            place: &prefix,
            sent_at,
            nth: index,
        };
        match parse_item(item, &shared_context, received, limits, &prefix) {
            Ok((mut event, warnings)) => {
                event.refused.extend(batch_refused.iter().cloned());
                if item.get("type").and_then(Value::as_str) == Some("alias") {
                    outcome.aliases.push(outcome.accepted.len());
                }
                outcome.accepted.push(event);
                outcome.warnings.extend(
                    warnings
                        .into_iter()
                        .map(|e| Warning::left_out(Some(index), e)),
                );
            }
            Err(errors) => outcome.rejected.push(Rejected {
                index: Some(index),
                errors,
            }),
        }
    }
    Ok(outcome)
}

/// A body's `writeKey`, read as leniently as its events are ([`parse_body`]): a body the
/// events are taken from is not refused for its key's sake.
pub(crate) fn write_key(body: &[u8]) -> Option<String> {
    // Read from a body refused for a field nested too deep too: that refusal is the answer.
    match read_body(body, None).ok()?.fields.get("writeKey")? {
        Value::String(key) => Some(key.clone()),
        _ => None,
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    Ok(parse_body_with(body, None)?.fields)
}

/// serde_json's recursion limit: how deep arrays and objects may nest in one value it reads.
const JSON_DEPTH: usize = 128;

/// [`parse_body`], and with `items` (a batch's `"batch"`), the elements of that key's array
/// nested past [`JSON_DEPTH`] each refused alone (their index and field: `rejected`), as a
/// `null` in their place, rather than the body refused for them (and the batch's other events
/// lost). A top-level field nested so deep refuses the body, naming it.
fn parse_body_with(body: &[u8], items: Option<&str>) -> Result<Body, Vec<FieldError>> {
    let body = read_body(body, items)?;
    if body.too_deep.is_empty() {
        Ok(body)
    } else {
        Err(body.too_deep)
    }
}

/// A body read as JSON ([`read_body`]).
struct Body {
    /// Its top-level fields, each nested too deep left out.
    fields: Map<String, Value>,
    /// The elements of its `items` array nested too deep (see [`parse_body_with`]).
    rejected: Vec<Rejected>,
    /// The refusals of its top-level fields nested too deep.
    too_deep: Vec<FieldError>,
}

/// [`parse_body_with`], the fields nested too deep said apart.
fn read_body(body: &[u8], items: Option<&str>) -> Result<Body, Vec<FieldError>> {
    let text = std::str::from_utf8(body).map_err(|e| {
        vec![FieldError::new(
            "body",
            format!(
                "is not valid UTF-8 (at byte {}); send UTF-8 encoded JSON",
                e.valid_up_to()
            ),
        )]
    })?;
    // A byte order mark some clients put first is no part of the JSON.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let (read, parsed) = match serde_json::from_str::<Value>(text) {
        Ok(value) => (Cow::Borrowed(text), Ok(value)),
        Err(e) => {
            // Half of a surrogate pair escaped alone (`"\ud83d"`: JavaScript's `JSON.stringify`
            // of a string cut between the two halves of an emoji) is no character: it is read
            // as U+FFFD, as a lenient decoder reads it, rather than losing the whole batch to it.
            let fixed = without_lone_surrogates(text);
            // Python's `json.dumps` writes a float that is no number as `NaN` or `Infinity`,
            // which JSON has no word for: read as null (a value the app did not have), rather
            // than the batch lost (Segment's Python library does not send a refused batch
            // again).
            let fixed = without_non_finite(fixed.as_deref().unwrap_or(text)).or(fixed);
            match fixed {
                Some(fixed) => match serde_json::from_str::<Value>(&fixed) {
                    Ok(value) => (Cow::Owned(fixed), Ok(value)),
                    Err(deep) if too_deep(&deep) => (Cow::Owned(fixed), Err(deep)),
                    Err(_) => (Cow::Borrowed(text), Err(e)),
                },
                None => (Cow::Borrowed(text), Err(e)),
            }
        }
    };
    let (parsed, mut rejected, mut deep) = match parsed {
        Ok(value) => (Ok(value), Vec::new(), Vec::new()),
        Err(e) if too_deep(&e) => {
            let body = parse_too_deep(&read, items)?;
            (Ok(Value::Object(body.fields)), body.rejected, body.too_deep)
        }
        Err(e) => (Err(e), Vec::new(), Vec::new()),
    };
    match parsed {
        Ok(Value::Object(mut map)) => {
            // U+FFFE and U+FFFF are no characters either, and SQS does not carry them: read as
            // U+FFFD, so that one string holding them does not lose the whole batch at the
            // queue (an id holding one is refused, that item alone, as half a pair is).
            if has_noncharacter(text) {
                for value in map.values_mut() {
                    replace_noncharacters(value);
                }
                map = map
                    .into_iter()
                    .map(|(k, v)| (without_noncharacters(k), v))
                    .collect();
                let errors = rejected.iter_mut().flat_map(|r| r.errors.iter_mut());
                for error in errors.chain(deep.iter_mut()) {
                    error.field = without_noncharacters(std::mem::take(&mut error.field));
                }
            }
            Ok(Body {
                fields: map,
                rejected,
                too_deep: deep,
            })
        }
        Ok(_) => Err(vec![FieldError::new("body", "must be a JSON object")]),
        Err(e) => Err(vec![FieldError::new(
            "body",
            format!("is not valid JSON ({e}); send a JSON object"),
        )]),
    }
}

/// Whether serde_json refused a text for nesting past [`JSON_DEPTH`] (its error has no code
/// of its own to match).
fn too_deep(e: &serde_json::Error) -> bool {
    e.is_syntax() && e.to_string().starts_with("recursion limit exceeded")
}

/// A body that nests past [`JSON_DEPTH`] somewhere, read one top-level value at a time (and,
/// for `items`, one element of its array at a time: see [`parse_body_with`]), so that the
/// refusal names the field that nests too deep. Reading a [`RawValue`] only skips over the
/// text, without recursing.
///
/// [`RawValue`]: serde_json::value::RawValue
fn parse_too_deep(text: &str, items: Option<&str>) -> Result<Body, Vec<FieldError>> {
    let fields = match serde_json::from_str::<BTreeMap<String, &RawValue>>(text) {
        Ok(fields) => fields,
        // Not an object, or not JSON: said as for any body.
        Err(_) => {
            return Err(match serde_json::from_str::<&RawValue>(text) {
                Ok(_) => vec![FieldError::new("body", "must be a JSON object")],
                Err(e) => vec![FieldError::new(
                    "body",
                    format!("is not valid JSON ({e}); send a JSON object"),
                )],
            });
        }
    };
    let mut map = Map::new();
    let mut rejected = Vec::new();
    let mut errors = Vec::new();
    for (key, raw) in fields {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => {
                map.insert(key, value);
            }
            Err(_) if items == Some(key.as_str()) => {
                let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
                    errors.push(nested_too_deep(key));
                    continue;
                };
                let mut read = Vec::with_capacity(elements.len());
                for (index, element) in elements.into_iter().enumerate() {
                    match serde_json::from_str::<Value>(element.get()) {
                        Ok(value) => read.push(value),
                        Err(_) => {
                            read.push(Value::Null);
                            let place = match deep_key(element) {
                                Some(field) => format!("{key}[{index}].{field}"),
                                None => format!("{key}[{index}]"),
                            };
                            rejected.push(Rejected {
                                index: Some(index),
                                errors: vec![nested_too_deep(place)],
                            });
                        }
                    }
                }
                map.insert(key, Value::Array(read));
            }
            Err(_) => errors.push(nested_too_deep(key)),
        }
    }
    Ok(Body {
        fields: map,
        rejected,
        too_deep: errors,
    })
}

/// The key of `raw`, an object, whose value nests past [`JSON_DEPTH`] (an event's
/// `properties`); `None` if `raw` is no object.
fn deep_key(raw: &RawValue) -> Option<String> {
    let fields = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()).ok()?;
    fields
        .into_iter()
        .find(|(_, v)| serde_json::from_str::<Value>(v.get()).is_err())
        .map(|(k, _)| k)
}

/// The refusal of `field`, which nests past [`JSON_DEPTH`].
fn nested_too_deep(field: String) -> FieldError {
    FieldError::new(
        field,
        format!("nests more than {JSON_DEPTH} levels deep, too deep to read; flatten it (`properties`, `traits` and `context` take up to {MAX_DEPTH} levels)"),
    )
}

/// Whether `text` holds U+FFFE or U+FFFF, as itself or escaped (`\ufffe`, any case).
fn has_noncharacter(text: &str) -> bool {
    text.contains(['\u{FFFE}', '\u{FFFF}'])
        || text.match_indices("\\u").any(|(i, _)| {
            text.get(i + 2..i + 6).is_some_and(|hex| {
                hex.eq_ignore_ascii_case("fffe") || hex.eq_ignore_ascii_case("ffff")
            })
        })
}

/// `s` with each U+FFFE and U+FFFF written U+FFFD.
fn without_noncharacters(s: String) -> String {
    if s.contains(['\u{FFFE}', '\u{FFFF}']) {
        s.replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}")
    } else {
        s
    }
}

/// Every string in `value`, keys too, [`without_noncharacters`].
fn replace_noncharacters(value: &mut Value) {
    match value {
        Value::String(s) => *s = without_noncharacters(std::mem::take(s)),
        Value::Array(items) => items.iter_mut().for_each(replace_noncharacters),
        Value::Object(map) => {
            let taken = std::mem::take(map);
            *map = taken
                .into_iter()
                .map(|(k, mut v)| {
                    replace_noncharacters(&mut v);
                    (without_noncharacters(k), v)
                })
                .collect();
        }
        _ => {}
    }
}

/// `text` with each `NaN`, `Infinity` and `-Infinity` outside its strings written `null`;
/// `None` when it has none.
fn without_non_finite(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["NaN", "-Infinity", "Infinity"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            changed = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// What an id holding U+FFFD (half a surrogate pair, or a character lost before it was sent) is
/// told.
const NOT_A_CHARACTER: &str = "holds a character that is not one (half of a surrogate pair, U+FFFE, U+FFFF, or U+FFFD): send the id as the app knows it";

/// `text` with each `\uXXXX` escape of half a surrogate pair that has not its other half next
/// to it written `\ufffd`; `None` when it has none.
fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = text.get(at + 2..at + 6)?;
        (bytes.get(at) == Some(&b'\\') && bytes.get(at + 1) == Some(&b'u'))
            .then(|| u16::from_str_radix(hex, 16).ok())
            .flatten()
    };
    let high = |u: u16| (0xD800..0xDC00).contains(&u);
    let low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = String::with_capacity(text.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit(i) {
            Some(u) if high(u) && unit(i + 6).is_some_and(low) => i += 12,
            Some(u) if high(u) || low(u) => {
                out.push_str(&text[last..i]);
                out.push_str("\\ufffd");
                i += 6;
                last = i;
                changed = true;
            }
            Some(_) => i += 6,
            // Another escape (`\\`, `\"`): its second byte is not the start of one.
            None => i += 2,
        }
    }
    out.push_str(&text[last..]);
    changed.then_some(out)
}

fn parse_item(
    item: &Value,
    shared_context: &Map<String, Value>,
    received: Received<'_>,
    limits: &Limits,
    prefix: &str,
) -> Result<(Event, Vec<LeftOut>), Vec<FieldError>> {
    let Value::Object(raw) = item else {
        return Err(vec![FieldError::new(
            prefix,
            "must be an object: a track, identify, page, screen, alias or group event",
        )]);
    };
    let size = serialized_len(item);
    if size > MAX_EVENT_BYTES {
        return Err(vec![too_big(prefix, size, MAX_EVENT_BYTES)]);
    }
    let call = match raw.get("type") {
        Some(Value::String(t)) => match Call::parse(t) {
            Some(call) => call,
            None => {
                return Err(vec![FieldError::new(
                    format!("{prefix}.type"),
                    r#"is unknown: send "track", "identify", "page", "screen", "alias" or "group""#,
                )]);
            }
        },
        None | Some(Value::Null) => {
            return Err(vec![FieldError::new(
                format!("{prefix}.type"),
                r#"is required: send "track", "identify", "page", "screen", "alias" or "group""#,
            )]);
        }
        Some(_) => {
            return Err(vec![FieldError::new(
                format!("{prefix}.type"),
                r#"must be one of the strings "track", "identify", "page", "screen", "alias" or "group""#,
            )]);
        }
    };
    from_call(call, raw, shared_context, received, limits, prefix)
}

/// Validates one event object and builds the [`Event`], collecting every problem found; with
/// it, the traits left out of it ([`Check::special_traits`]). When the event is refused, those
/// are among its errors.
#[allow(clippy::too_many_arguments)]
fn from_raw(
    kind: Kind,
    raw: &Map<String, Value>,
    shared_context: &Map<String, Value>,
    received: Received<'_>,
    limits: &Limits,
    prefix: &str,
    own: Own<'_>,
) -> Result<(Event, Vec<LeftOut>), Vec<FieldError>> {
    let mut check = Check::new(prefix);

    let user = check.id(raw, "userId");
    if user
        .as_deref()
        .is_some_and(|u| u.starts_with(ANONYMOUS_PREFIX))
    {
        check.error(
            "userId",
            r#"must not start with "anon:", which Waymark keeps for anonymous users; send it as anonymousId"#,
        );
    }
    let anonymous_id = check.id(raw, "anonymousId");
    if is_absent(raw.get("userId")) && is_absent(raw.get("anonymousId")) {
        check.error("userId", "one of userId or anonymousId is required");
    }
    let message_id = check.message_id(raw);
    let event = match kind {
        Kind::Track => check.event_name(raw),
        Kind::Identify => None,
    };
    let properties = match kind {
        Kind::Track => {
            let properties = check.object(raw, "properties");
            check.within_keys("properties", properties, own.keys, own.added, false)
        }
        Kind::Identify => Map::new(),
    };
    let traits = match kind {
        Kind::Identify => {
            let mut traits = check.object(raw, "traits");
            for (name, value) in traits.iter_mut() {
                if let Some(v) = normalized_trait(name, value) {
                    *value = v;
                }
            }
            check.special_traits(&mut traits);
            traits
        }
        Kind::Track => Map::new(),
    };
    let own_context = check.object(raw, "context");
    // Each part's depth is already checked; the key count is the merged context's.
    let own_too_many = own_context.len() > MAX_TRAITS;
    let context = if shared_context.is_empty() {
        own_context
    } else {
        let mut merged = shared_context.clone();
        merged.extend(own_context);
        merged
    };
    let merged = !shared_context.is_empty() && !own_too_many;
    let context = check.within_keys("context", context, &CONTEXT_READ, 0, merged);
    // A device's zone or locale that is not one is not taken as the user's: said, not silent.
    for name in ["timezone", "locale"] {
        let Some(value) = context.get(name).filter(|v| !v.is_null()) else {
            continue;
        };
        if let Some(problem) = crate::profile::device_trait_problem(name, value) {
            // Kept in her timeline too (`not_kept`): her waits stay on the zone she had, and
            // the timeline says why.
            check.refused.push(Refused {
                field: format!("context.{name}"),
                value: crate::condition::shown(name, value),
                reason: format!("{problem}; not taken as the user's"),
            });
            let field = check.field(&format!("context.{name}"));
            check.warnings.push(LeftOut {
                problem: FieldError::new(field, problem),
                instead: "not taken as the user's, the rest of the event is applied",
                strict: false,
            });
        }
    }
    // A push token the device sends (`context.device.token`) whose platform cannot be told,
    // or that is no token, registers no device: said, not silent (see [`context_device`]).
    if let Err(problem) = context_device(&context) {
        let value = context
            .get("device")
            .and_then(|d| d.get("token"))
            .unwrap_or(&Value::Null);
        check.refused.push(Refused {
            field: "context.device.token".into(),
            value: crate::condition::shown("token", value),
            reason: format!("{problem}; no push device was registered"),
        });
        let field = check.field("context.device.token");
        check.warnings.push(LeftOut {
            problem: FieldError::new(field, problem),
            instead: "no push device is registered, the rest of the event is applied",
            strict: false,
        });
    }
    // A near miss of a field a call carries (`propertes`, `user_id`) would be dropped as the
    // fields Waymark does not read are: said, and kept in the user's timeline, since the event
    // then does not do what was meant (a trigger's `where` finds no properties).
    for (key, value) in raw {
        if CALL_FIELDS.contains(&key.as_str()) {
            continue;
        }
        if let Some(meant) = near_miss(key) {
            let problem = format!("is not a field of an event: did you mean `{meant}`?");
            check.refused.push(Refused {
                field: key.clone(),
                value: crate::condition::shown(key, value),
                reason: format!("{problem} It was left out"),
            });
            let field = check.field(key);
            check.warnings.push(LeftOut {
                problem: FieldError::new(field, problem),
                instead: "the rest of the event is applied",
                strict: true,
            });
        }
    }
    // Its own `sentAt` is checked whether or not it has a `timestamp` to correct.
    let sent_at = check.sent_at(raw).or(received.sent_at);
    let timestamp = check.timestamp(
        raw,
        Received {
            sent_at,
            ..received
        },
        limits,
    );

    if !check.errors.is_empty() {
        check
            .errors
            .extend(check.warnings.drain(..).map(|l| l.problem));
        return Err(check.errors);
    }
    let user_id = match (user, &anonymous_id) {
        (Some(user), _) => user,
        (None, Some(anonymous)) => format!("{ANONYMOUS_PREFIX}{anonymous}"),
        (None, None) => {
            return Err(vec![FieldError::new(
                check.field("userId"),
                "one of userId or anonymousId is required",
            )])
        }
    };
    let event = Event {
        kind,
        message_id: message_id.unwrap_or_else(|| auto_message_id(kind, raw, received)),
        user_id,
        anonymous_id,
        event,
        properties: Arc::new(Value::Object(properties)),
        traits,
        context,
        timestamp,
        received_at: received.at,
        refused: check.refused,
    };
    Ok((event, check.warnings))
}

/// The fields of Segment's calls that Waymark reads: a field near one of them in spelling is a
/// mistake that changes what the event does (see [`from_raw`]). Those it does not read
/// (`integrations`, `channel`, `version`, `receivedAt`) are left out of it: a field near one
/// of them changes nothing.
const CALL_FIELDS: &[&str] = &[
    "type",
    "userId",
    "anonymousId",
    "event",
    "properties",
    "traits",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "messageId",
    "context",
    "name",
    "category",
    "previousId",
    "groupId",
];

/// Whether `key` is a near miss of a field in [`CALL_FIELDS`], and which: not one that goes on
/// from one or is one of its words (`channelId`, `timestamp_ms`, `propertiesV2`, `message` are a
/// sender's own; `trait`, cut inside the word, is a slip), and
/// a short word only by one letter (`page`, `time`, `user` are two from `name`, `type`,
/// `userId`).
fn near_miss(key: &str) -> Option<&'static str> {
    // Whether `s` starts with `prefix`, in either case.
    let starts = |s: &str, prefix: &str| {
        s.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    // Written in other letters (`userID`, `Properties`): the field meant.
    if let Some(f) = CALL_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        return Some(f);
    }
    // A name that goes on from a field's (`channelId`, `timestamp_ms`), or one of the words a
    // field's name is made of (`message` of `messageId`, `user` of `userId`), is a sender's
    // own; one cut inside a word (`trait`, `even`, `propertie`) is a slip.
    let extends = CALL_FIELDS.iter().any(|f| {
        starts(key, f)
            || (starts(f, key) && f[key.len()..].starts_with(|c: char| c.is_ascii_uppercase()))
    });
    if extends {
        return None;
    }
    // Compared in one case (`Trait` is `trait`).
    static LOWERED: std::sync::LazyLock<Vec<(String, &'static str)>> =
        std::sync::LazyLock::new(|| {
            CALL_FIELDS
                .iter()
                .map(|f| (f.to_ascii_lowercase(), *f))
                .collect()
        });
    let lower = key.to_ascii_lowercase();
    let near = crate::dsl::closest(&lower, LOWERED.iter().map(|(l, _)| l.as_str()))?;
    let (near, field) = LOWERED.iter().find(|(l, _)| l == near)?;
    (key.chars().count() > 5 || crate::dsl::edit_distance(&lower, near) <= 1).then_some(*field)
}

fn is_absent(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

fn too_big(field: &str, size: usize, max: usize) -> FieldError {
    FieldError::new(
        field,
        format!(
            "is {size} bytes; at most {max} bytes ({} KB) are allowed",
            max / 1024
        ),
    )
}

/// What is wrong with `value` as trait `name`, in the words an identify's refusal uses: an
/// address or a zone ([`trait_problem`]), or a locale, which an identify takes as a device's
/// ([`crate::profile::device_trait_problem`]); `None` for a good one or another trait. An
/// identify, `waymark validate` on an `update`'s fixed values and the run's `update` all judge
/// by it.
pub(crate) fn identify_trait_problem(name: &str, value: &Value) -> Option<String> {
    match name {
        "locale" => crate::profile::device_trait_problem(name, value),
        _ => trait_problem(name, value),
    }
}

/// What is wrong with `value` as the trait `name`, for the traits Waymark sends to and
/// schedules by (`email`, `phone`, `timezone`), with an example of a good one; `None` when it
/// is good or the trait is another. An identify's traits and a journey's `update` are checked
/// alike, so no message goes to an address an identify would have refused.
pub fn trait_problem(name: &str, value: &Value) -> Option<String> {
    match name {
        "email" => value
            .as_str()
            .map_or(Some("must be a string"), email_problem)
            .map(|problem| format!("{problem}; send an address like ada@example.com")),
        "phone" => (!value.as_str().is_some_and(is_e164)).then(|| {
            "must be an E.164 number: + then the country code and 8 to 15 digits in all, e.g. +14155550123"
                .to_string()
        }),
        "timezone" => {
            let known = value
                .as_str()
                .is_some_and(|tz| jiff::tz::TimeZone::get(tz).is_ok());
            (!known).then(|| crate::profile::zone_problem(value.as_str()))
        }
        _ => None,
    }
}

/// A trait value as Waymark keeps it, when it differs from the one sent: an email address or a
/// phone number without the spaces around it (a form's `"ada@example.com "`); a phone number
/// written for people (`+1 415 555-0123`, `+33 (0)6 12 34 56 78`) without its spaces, dashes, dots,
/// parentheses and a trunk `(0)`, when what is left is E.164. Applied to an identify's traits
/// and to a journey's rendered `update` values before they are checked ([`trait_problem`]).
pub fn normalized_trait(name: &str, value: &Value) -> Option<Value> {
    let sent = value.as_str()?;
    let text = sent.trim();
    let kept = match name {
        "email" => text.to_string(),
        "phone" if is_e164(text) => text.to_string(),
        "phone" => {
            let compact: String = text
                .replace("(0)", "")
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
                .collect();
            if !is_e164(&compact) {
                return None;
            }
            compact
        }
        _ => return None,
    };
    (kept != sent).then_some(Value::String(kept))
}

/// The push device an event's `context` names, as Segment's mobile libraries send it: the
/// APNs or FCM token as `context.device.token` (analytics-ios and Analytics-Swift once the app
/// registers for remote notifications, Analytics-Kotlin and Android when the app gives it), its
/// platform told by `context.device.type` (`ios`, `android`) or else `context.os.name` (`iOS`,
/// `iPadOS`, `Android`): iOS is `apns`, Android `fcm`. `Ok(None)` when the event has no token
/// (none, or `null`); `Err` with what is wrong when the token is no text, or its platform
/// cannot be told (the event is applied without it, see [`from_raw`]).
pub fn context_device(
    context: &Map<String, Value>,
) -> Result<Option<(&'static str, &str)>, String> {
    let device = context.get("device").and_then(Value::as_object);
    let token = match device.and_then(|d| d.get("token")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) if !t.trim().is_empty() => t.as_str(),
        Some(_) => {
            return Err("must be a non-empty string: the device's push token (APNs or FCM)".into())
        }
    };
    let kind = device.and_then(|d| d.get("type")).and_then(Value::as_str);
    let os = context
        .get("os")
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str);
    let platform = [kind, os].into_iter().flatten().find_map(|name| {
        match name.trim().to_ascii_lowercase().as_str() {
            "ios" | "ipados" => Some("apns"),
            "android" => Some("fcm"),
            _ => None,
        }
    });
    match platform {
        Some(platform) => Ok(Some((platform, token))),
        None => {
            let said = |what: &str, v: Option<&str>| match v {
                Some(v) => format!("{what} is \"{}\"", v.chars().take(40).collect::<String>()),
                None => format!("no {what}"),
            };
            Err(format!(
                "is a push token of a platform Waymark cannot tell ({}, {}): send context.device.type \"ios\" or \"android\" with it, as Segment's mobile libraries do, or the token in an identify's push_tokens, like {{\"push_tokens\": [{{\"platform\": \"apns\", \"token\": \"...\"}}]}}",
                said("context.device.type", kind),
                said("context.os.name", os),
            ))
        }
    }
}

/// Whether a name or an id is made only of spaces and characters that show as nothing
/// (zero-width spaces and joiners, a byte order mark, direction marks, invisible operators, the
/// blank fillers of Hangul, Braille and Mongolian): no user or event is called that.
pub(crate) fn shows_nothing(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_whitespace()
            || matches!(
                c,
                '\u{034F}'
                    | '\u{061C}'
                    | '\u{115F}'
                    | '\u{1160}'
                    | '\u{180E}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{2066}'..='\u{206F}'
                    | '\u{2800}'
                    | '\u{3164}'
                    | '\u{FEFF}'
                    | '\u{FFA0}'
            )
    })
}

/// What a time is written as (`timestamp`, `sentAt`), for the errors that name one.
const TIME_EXAMPLE: &str = r#"an RFC 3339 date-time with an offset, e.g. "2025-01-31T12:00:00Z""#;

/// Which side of the times Waymark reads (jiff's, [`Timestamp::MIN`] to [`Timestamp::MAX`],
/// years -9999 to 9999) a time written as RFC 3339 lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Beyond {
    Before,
    Ahead,
}

impl Beyond {
    /// What is said of a time beyond the range: which end, and the range.
    fn said(self) -> String {
        let end = match self {
            Beyond::Before => "before the earliest",
            Beyond::Ahead => "after the latest",
        };
        format!(
            "is out of range: {end} time Waymark reads (it reads {} to {})",
            Timestamp::MIN,
            Timestamp::MAX
                .checked_sub(SignedDuration::from_nanos(999_999_999))
                .unwrap_or(Timestamp::MAX)
        )
    }
}

/// Which side of the times Waymark reads `text` lies, when it is an RFC 3339 date-time with an
/// offset that [`Timestamp`] does not read (`9999-12-31T23:59:59Z`, or `9999-12-30T23:00:00-05:00`:
/// past the end once at UTC); `None` when it is not written as one.
fn beyond_range(text: &str) -> Option<Beyond> {
    let pieces = jiff::fmt::temporal::Pieces::parse(text).ok()?;
    pieces.time()?;
    pieces.offset()?;
    // Only at the ends: any other refusal is another problem than the range.
    match pieces.date().year() {
        year if year <= -9999 => Some(Beyond::Before),
        year if year >= 9999 => Some(Beyond::Ahead),
        _ => None,
    }
}

/// What is wrong with `text`, a time jiff reads whose UTC offset is 24 hours or more (jiff
/// reads offsets up to 25:59:59, so `+25:00` would be taken as a time a day off): RFC 3339's
/// offset is at most 23:59. `None` for any other text. (A simulation's script line's `at` is
/// told so too.)
pub(crate) fn offset_past_a_day(text: &str) -> Option<String> {
    let offset = jiff::fmt::temporal::Pieces::parse(text)
        .ok()?
        .to_numeric_offset()?;
    let hours = offset.seconds().unsigned_abs() / 3600;
    (hours >= 24).then(|| {
        format!(
            "\"{text}\" has a UTC offset of {hours} hours, and one is at most 23:59: write the offset of the place meant, like \"+01:00\", or the time in UTC with \"Z\""
        )
    })
}

/// Collects the problems of one event, naming fields under `prefix` (`""` or `"batch[3]"`).
struct Check<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
    /// Fields left out of the event, which is accepted without them.
    warnings: Vec<LeftOut>,
    /// The identify's traits among them, for the user's timeline.
    refused: Vec<Refused>,
}

impl<'a> Check<'a> {
    fn new(prefix: &'a str) -> Self {
        Check {
            prefix,
            errors: Vec::new(),
            warnings: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        let field = self.field(name);
        self.errors.push(FieldError::new(field, message));
    }

    /// `userId` or `anonymousId`: a string or a number (made a string, as Segment does).
    fn id(&mut self, raw: &Map<String, Value>, name: &str) -> Option<String> {
        let id = match raw.get(name)? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Number(n) => match number_id(n) {
                Some(id) => id,
                None => {
                    self.error(
                        name,
                        "is a number too large to keep exactly (past 64 bits, or 9×10^15 or more written with an exponent or a fraction): send the id as a string",
                    );
                    return None;
                }
            },
            _ => {
                self.error(name, "must be a string (or a number)");
                return None;
            }
        };
        let chars = id.chars().count();
        if chars == 0 {
            self.error(name, "must not be empty; leave it out or send null instead");
            return None;
        }
        // No user is called that.
        if shows_nothing(&id) {
            self.error(
                name,
                "must not be only spaces; leave it out or send null instead",
            );
            return None;
        }
        if id.chars().any(|c| (c < ' ' && c != '\t') || c == '\u{7f}') {
            self.error(
                name,
                "must not hold control characters (a line break, NUL): send the id as the app knows it",
            );
            return None;
        }
        if id.contains('\u{FFFD}') {
            // Half a surrogate pair, read as U+FFFD (see `without_lone_surrogates`): two ids
            // that differed in the half would be one user.
            self.error(name, NOT_A_CHARACTER);
            return None;
        }
        if id.len() > MAX_ID_BYTES {
            let why = if id.len() == chars {
                format!("is {chars} characters; at most {MAX_ID_BYTES} are allowed")
            } else {
                format!(
                    "is {} bytes in UTF-8 ({chars} characters); at most {MAX_ID_BYTES} bytes are allowed",
                    id.len()
                )
            };
            self.error(name, why);
            return None;
        }
        Some(id)
    }

    fn message_id(&mut self, raw: &Map<String, Value>) -> Option<String> {
        match raw.get("messageId")? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => {
                self.error(
                    "messageId",
                    "must not be empty; leave it out to have one derived from the event",
                );
                None
            }
            Value::String(s) if s.len() > MAX_MESSAGE_ID_BYTES => {
                let chars = s.chars().count();
                let why = if chars == s.len() {
                    format!("is {chars} characters; at most {MAX_MESSAGE_ID_BYTES} are allowed")
                } else {
                    format!(
                        "is {} bytes in UTF-8 ({chars} characters); at most {MAX_MESSAGE_ID_BYTES} bytes are allowed",
                        s.len()
                    )
                };
                self.error("messageId", why);
                None
            }
            Value::String(s) if s.contains('\u{FFFD}') => {
                self.error("messageId", NOT_A_CHARACTER);
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error("messageId", "must be a string, such as a UUID");
                None
            }
        }
    }

    fn event_name(&mut self, raw: &Map<String, Value>) -> Option<String> {
        match raw.get("event") {
            None | Some(Value::Null) => {
                self.error(
                    "event",
                    r#"is required for track: the event's name, e.g. "Order Completed""#,
                );
                None
            }
            Some(Value::String(s)) if shows_nothing(s) => {
                self.error(
                    "event",
                    r#"must not be empty or only spaces (or characters that show as nothing): send the event's name, e.g. "Order Completed""#,
                );
                None
            }
            Some(Value::String(s)) if s.chars().count() > MAX_EVENT_NAME_CHARS => {
                self.error(
                    "event",
                    format!(
                        "is {} characters; at most {MAX_EVENT_NAME_CHARS} are allowed",
                        s.chars().count()
                    ),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(
                    "event",
                    r#"must be a string: the event's name, e.g. "Order Completed""#,
                );
                None
            }
        }
    }

    /// `properties`, `traits` or `context`: an object within the depth limit, or empty if absent.
    fn object(&mut self, raw: &Map<String, Value>, name: &str) -> Map<String, Value> {
        match raw.get(name) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => {
                self.depth(name, map);
                map.clone()
            }
            Some(_) => {
                self.error(name, r#"must be an object, e.g. {"plan": "pro"}"#);
                Map::new()
            }
        }
    }

    /// `properties`, `traits` or `context` nested past [`MAX_DEPTH`] is refused: reading it
    /// (a journey's path, the store's encoding) recurses as deep as it goes.
    fn depth(&mut self, name: &str, map: &Map<String, Value>) {
        let mut path = name.to_string();
        if map_too_deep(map, 1, &mut path) {
            self.error(
                name,
                format!("nests more than {MAX_DEPTH} levels deep (at {path}); flatten it"),
            );
        }
    }

    /// `properties` or `context` (`merged`: once merged with the batch's) with more than
    /// [`MAX_TRAITS`] keys keeps that many, those Waymark reads (`read`) first, then by name;
    /// the rest are left out with a warning naming the field, and said in the user's timeline,
    /// rather than the event refused (Segment's libraries do not send a refused request again).
    /// `added` of the keys are the call's own, not the app's (a group's `group_id`, see [`Own`]):
    /// they are among `read`, and not counted as sent.
    fn within_keys(
        &mut self,
        name: &str,
        map: Map<String, Value>,
        read: &[&str],
        added: usize,
        merged: bool,
    ) -> Map<String, Value> {
        if map.len() <= MAX_TRAITS {
            return map;
        }
        let sent = map.len().saturating_sub(added);
        let mut rest = map;
        let mut kept = Map::new();
        for key in read {
            if let Some((k, v)) = rest.remove_entry(*key) {
                kept.insert(k, v);
            }
        }
        let mut dropped = Vec::new();
        for (k, v) in rest {
            if kept.len() < MAX_TRAITS {
                kept.insert(k, v);
            } else {
                dropped.push(k);
            }
        }
        let once_merged = if merged {
            " once merged with the batch's context"
        } else {
            ""
        };
        let with_own = if added > 0 {
            format!(", {} with those the call adds", sent + added)
        } else {
            String::new()
        };
        let problem =
            format!("has {sent} keys{with_own}{once_merged}; an event keeps at most {MAX_TRAITS}");
        let names: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        let more = if dropped.len() > names.len() {
            ", …"
        } else {
            ""
        };
        self.refused.push(Refused {
            field: name.to_string(),
            value: format!("{}{more}", names.join(", ")),
            reason: format!("{problem}: {} keys were left out", dropped.len()),
        });
        let field = self.field(name);
        self.warnings.push(LeftOut {
            problem: FieldError::new(field, problem),
            instead: "the keys past that many (by name, those Waymark reads kept first), the rest of the event is applied",
            strict: true,
        });
        kept
    }

    /// A call's or a batch's `sentAt`, when it is a time: the sender's clock when it sent the
    /// request, which corrects `timestamp` for that clock ([`Check::timestamp`]). One that is
    /// not an RFC 3339 time is left out with a warning naming it, the timestamps taken as sent
    /// (an error only in a strict reading, a `waymark simulate` script's line): it only
    /// corrects the sender's clock, and refusing the events for it (a batch's: all of them)
    /// would lose them, as Segment's libraries do not send a refused request again.
    fn sent_at(&mut self, raw: &Map<String, Value>) -> Option<Timestamp> {
        let problem = match raw.get("sentAt")? {
            Value::Null => return None,
            Value::String(text) => match (offset_past_a_day(text), text.parse::<Timestamp>()) {
                (Some(problem), _) => problem,
                (None, Ok(sent)) => return Some(sent),
                (None, Err(_)) => match beyond_range(text) {
                    Some(side) => side.said(),
                    None => format!("is not {TIME_EXAMPLE}"),
                },
            },
            _ => format!("must be a string: {TIME_EXAMPLE}"),
        };
        self.warnings.push(LeftOut {
            problem: FieldError::new(self.field("sentAt"), problem),
            instead: "the timestamps are taken as sent, the sender's clock not corrected",
            strict: true,
        });
        None
    }

    /// When the event happened: its `timestamp` (or `originalTimestamp`), corrected for the
    /// sender's clock when it says when it sent the event (`sentAt`, its own or the batch's), as
    /// Segment does: `receivedAt − (sentAt − timestamp)`. A phone whose clock is a day off
    /// still stamps its events with the right times relative to each other and to `sentAt`; only
    /// the offset is wrong, and this takes it out. Without `sentAt`, `timestamp` as it is.
    /// `received.sent_at` is that `sentAt`, already checked ([`Check::sent_at`]). Without a
    /// time, when it was received: the `nth` item of a batch a nanosecond after the one before
    /// it, so that the batch's order is the order they happened (an order sent before its cart
    /// in one request is not taken as after it, as a tie would be).
    fn timestamp(
        &mut self,
        raw: &Map<String, Value>,
        received: Received<'_>,
        limits: &Limits,
    ) -> Timestamp {
        let received_at = received.at;
        let field = if is_absent(raw.get("timestamp")) && !is_absent(raw.get("originalTimestamp")) {
            "originalTimestamp"
        } else {
            "timestamp"
        };
        let text = match raw.get(field) {
            None | Some(Value::Null) => {
                let nth = i64::try_from(received.nth).unwrap_or(i64::MAX);
                return received_at
                    .checked_add(SignedDuration::from_nanos(nth))
                    .unwrap_or(received_at);
            }
            Some(Value::String(s)) => s,
            Some(_) => {
                self.error(field, format!("must be a string: {TIME_EXAMPLE}"));
                return received_at;
            }
        };
        if let Some(problem) = offset_past_a_day(text) {
            self.error(field, problem);
            return received_at;
        }
        let Ok(stamped) = text.parse::<Timestamp>() else {
            let problem = match beyond_range(text) {
                Some(Beyond::Ahead) => format!(
                    "{}; at most {} ahead of the server's clock is tolerated: check the sender's clock",
                    Beyond::Ahead.said(),
                    human(limits.max_future)
                ),
                Some(Beyond::Before) => format!(
                    "{}; Waymark accepts events at most {} old",
                    Beyond::Before.said(),
                    human(limits.max_past)
                ),
                None => format!("is not {TIME_EXAMPLE}"),
            };
            self.error(field, problem);
            return received_at;
        };
        let at = match received.sent_at {
            Some(sent) => received_at
                .checked_sub(sent.duration_since(stamped))
                .unwrap_or(stamped),
            None => stamped,
        };
        let age = received_at.duration_since(at);
        let ahead = at.duration_since(received_at);
        // A time `sentAt` moved: it may be `sentAt` that is wrong, so the error says so.
        let corrected = match received.sent_at {
            Some(sent) if sent != stamped => format!(
                " (once corrected by `sentAt` {sent}, as when it was received less how long before `sentAt` it happened: check `sentAt` too)"
            ),
            _ => String::new(),
        };
        if age > limits.max_past {
            self.error(
                field,
                format!(
                    "is {} before the event was received{corrected}; Waymark accepts events at most {} old",
                    human(age),
                    human(limits.max_past)
                ),
            );
        } else if ahead > limits.max_future {
            self.error(
                field,
                format!(
                    "is {} ahead of the server's clock{corrected}; at most {} is tolerated: check the sender's clock",
                    human(ahead),
                    human(limits.max_future)
                ),
            );
        }
        at
    }

    /// Identify traits with a meaning to Waymark. `null` clears a trait, so it always passes.
    /// An `email` or `phone` that is not an address, or a `timezone` that is not a zone, is
    /// left out, with a warning naming it: the identify is applied without it (the stored value
    /// stays), since refusing it would lose the rest, an opt-out among them. Any other problem
    /// refuses the identify.
    fn special_traits(&mut self, traits: &mut Map<String, Value>) {
        traits.retain(|name, value| {
            let problem = match name.as_str() {
                // The profile keeps when each channel's choice was made under these names.
                n if n.starts_with("subscriptions.") || n.starts_with("stated:") => Some(
                    "is a name Waymark keeps for itself: send a channel's choice inside `subscriptions`, like {\"subscriptions\": {\"email\": false}}".to_string(),
                ),
                "email" | "phone" | "timezone" | "locale" if !value.is_null() => {
                    identify_trait_problem(name, value)
                }
                _ => None,
            };
            let Some(problem) = problem else {
                return true;
            };
            self.refused.push(Refused {
                field: format!("traits.{name}"),
                value: crate::condition::shown(name, value),
                reason: problem.clone(),
            });
            let field = self.field(&format!("traits.{name}"));
            self.warnings.push(LeftOut {
                problem: FieldError::new(field, problem),
                instead: "the stored value is unchanged, the rest of the event is applied",
                strict: true,
            });
            false
        });
        for (name, value) in traits.iter() {
            if value.is_null() {
                continue;
            }
            let field = format!("traits.{name}");
            match name.as_str() {
                "subscriptions" => self.subscriptions(&field, value),
                "push_tokens" | "devices" => self.devices(&field, value),
                _ => {}
            }
        }
    }

    fn subscriptions(&mut self, field: &str, value: &Value) {
        let Some(channels) = value.as_object() else {
            self.error(
                field,
                r#"must be an object of channel to true or false, e.g. {"email": true, "sms": false}"#,
            );
            return;
        };
        for (channel, subscribed) in channels {
            let field = format!("{field}.{channel}");
            if channel == "topics" {
                self.topics(&field, subscribed);
            } else if !CHANNELS.contains(&channel.as_str()) {
                self.error(
                    &field,
                    format!(
                        "is not a channel; use one of {}, or `topics` for subscription topics ({{\"topics\": {{\"newsletter\": false}}}})",
                        CHANNELS.join(", ")
                    ),
                );
            } else if !subscribed.is_boolean() {
                self.error(&field, "must be true or false");
            }
        }
    }

    /// `subscriptions.topics`: each topic's choice, by the topic's id (as `waymark.yaml`
    /// declares it). A topic this deployment does not declare is taken: the choice is the
    /// user's, and a journey of that topic may be published later.
    fn topics(&mut self, field: &str, value: &Value) {
        let Some(topics) = value.as_object() else {
            self.error(
                field,
                r#"must be an object of topic id to true or false, e.g. {"newsletter": false}"#,
            );
            return;
        };
        if topics.len() > crate::profile::MAX_TOPICS {
            self.error(
                field,
                format!(
                    "names {} topics; a profile keeps at most {}",
                    topics.len(),
                    crate::profile::MAX_TOPICS
                ),
            );
            return;
        }
        for (id, subscribed) in topics {
            let field = format!("{field}.{id}");
            if !crate::topic::valid_id(id) {
                self.error(
                    &field,
                    "is not a topic id: 1–64 lowercase letters, digits, `_` or `-`, as `waymark.yaml` declares it",
                );
            } else if !subscribed.is_boolean() {
                self.error(&field, "must be true or false");
            }
        }
    }

    fn devices(&mut self, field: &str, value: &Value) {
        const SHAPE: &str = r#"{"platform": "apns" or "fcm", "token": "..."}"#;
        let Some(items) = value.as_array() else {
            self.error(field, format!("must be an array of {SHAPE}"));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some(device) = item.as_object() else {
                self.error(&field, format!("must be an object {SHAPE}"));
                continue;
            };
            let platform = device.get("platform").and_then(Value::as_str);
            if !platform.is_some_and(|p| PLATFORMS.contains(&p)) {
                self.error(&format!("{field}.platform"), r#"must be "apns" or "fcm""#);
            }
            let token = device.get("token").and_then(Value::as_str);
            if token.is_none_or(str::is_empty) {
                self.error(
                    &format!("{field}.token"),
                    "must be a non-empty string: the device's push token",
                );
            }
        }
    }
}

/// Whether an object or array nested inside `map` (itself at `level`) lies deeper than
/// [`MAX_DEPTH`]; if so `path` is left naming it.
fn map_too_deep(map: &Map<String, Value>, level: usize, path: &mut String) -> bool {
    if level > MAX_DEPTH {
        return true;
    }
    let len = path.len();
    for (key, value) in map {
        path.push('.');
        path.push_str(key);
        if value_too_deep(value, level + 1, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn value_too_deep(value: &Value, level: usize, path: &mut String) -> bool {
    match value {
        Value::Object(map) => map_too_deep(map, level, path),
        Value::Array(items) => {
            if level > MAX_DEPTH {
                return true;
            }
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                if value_too_deep(item, level + 1, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

fn email_problem(email: &str) -> Option<&'static str> {
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Some("is longer than 254 characters");
    }
    if email.chars().any(char::is_whitespace) {
        return Some("must not contain spaces");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some("has no @");
    };
    if domain.contains('@') {
        return Some("has more than one @");
    }
    if local.is_empty() {
        return Some("has nothing before the @");
    }
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    if !domain_ok {
        return Some("needs a domain with a dot after the @");
    }
    None
}

fn is_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A numeric id as text, so that a user whose id one library sends as a number and another as
/// text is one user: an integer is its digits as sent (all of them: `12345678901234567890`
/// stays so, where JavaScript would round it), a whole number written with an exponent or a
/// fraction (`1e3`, `1000.0`) below 9×10^15 is its digits, and any other number is as JSON
/// writes it (`1.5`). `None` for a number that JSON's reading has already rounded: past 64 bits,
/// or written with an exponent or a fraction at 9×10^15 or more (`1e20`), where two users' ids
/// would read as one.
fn number_id(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    match n.as_f64() {
        Some(f) if f.abs() >= 9.0e15 => None,
        Some(f) if f.fract() == 0.0 => Some(format!("{}", f as i64)),
        _ => Some(n.to_string()),
    }
}

/// A duration in its two largest units, e.g. "30 days", "1 hour 30 minutes".
fn human(d: SignedDuration) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let secs = d.as_secs().unsigned_abs();
    for (i, (size, unit)) in UNITS.iter().enumerate() {
        let n = secs / size;
        if n == 0 {
            continue;
        }
        let mut text = plural(n, unit);
        if let Some((next_size, next_unit)) = UNITS.get(i + 1) {
            let rest = (secs % size) / next_size;
            if rest > 0 {
                text.push(' ');
                text.push_str(&plural(rest, next_unit));
            }
        }
        return text;
    }
    "0 seconds".to_string()
}

/// The id of an event sent without a `messageId`: `"auto-"` + hex SHA-256 of the raw event as
/// canonical JSON (keys sorted, no spaces, `type` set to `kind`), the time it was received and
/// its place in the request ([`Received`]). Each event sent is an event of
/// its own, as Segment gives one an id of its own: two identical `app_opened` are two (a
/// client that retries a request and wants it counted once sends a `messageId`, as the
/// analytics libraries do). The id is made at intake, before the event is queued, so the
/// queue's redeliveries carry it.
fn auto_message_id(kind: Kind, raw: &Map<String, Value>, received: Received<'_>) -> String {
    let kind = Value::from(kind.as_str());
    let entries = raw
        .iter()
        .filter(|(key, _)| key.as_str() != "type")
        .map(|(key, value)| (key.as_str(), value))
        .chain([("type", &kind)])
        .collect();
    let mut canonical = String::new();
    write_canonical_object(entries, &mut canonical);
    use std::fmt::Write as _;
    let _ = write!(canonical, "@{}#{}", received.at, received.place);
    let digest = Sha256::digest(canonical.as_bytes());
    let mut id = String::with_capacity(5 + 64);
    id.push_str("auto-");
    for byte in digest {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_canonical_object(mut entries: Vec<(&str, &Value)>, out: &mut String) {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(key).to_string());
        out.push(':');
        write_canonical(value, out);
    }
    out.push('}');
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            write_canonical_object(map.iter().map(|(k, v)| (k.as_str(), v)).collect(), out)
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Size of `value` as compact JSON, without building the string.
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn received() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().expect("valid timestamp")
    }

    fn single(kind: Kind, body: &Value) -> Result<Event, Vec<FieldError>> {
        parse_single(
            kind,
            body.to_string().as_bytes(),
            received(),
            &Limits::default(),
        )
    }

    fn batch(body: &Value) -> Result<BatchOutcome, Vec<FieldError>> {
        parse_batch(body.to_string().as_bytes(), received(), &Limits::default())
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    /// Each warning's place in its batch and field.
    fn places(warnings: &[Warning]) -> Vec<(Option<usize>, &str)> {
        warnings
            .iter()
            .map(|w| (w.index, w.field.as_str()))
            .collect()
    }

    #[test]
    fn ids_are_limited_in_bytes_as_the_store_keys_them() {
        // 128 two-byte letters: 256 bytes, the most.
        let fits = "é".repeat(128);
        let e = single(Kind::Track, &json!({"userId": fits, "event": "e"}));
        assert!(e.is_ok(), "{e:?}");
        // 200 of them: 200 characters, but 400 bytes of key.
        let long = "é".repeat(200);
        let errors =
            single(Kind::Track, &json!({"userId": long, "event": "e"})).expect_err("too long");
        assert_eq!(fields(&errors), ["userId"]);
        assert!(
            errors[0]
                .message
                .contains("400 bytes in UTF-8 (200 characters)"),
            "{errors:?}"
        );
        let errors = single(
            Kind::Track,
            &json!({"anonymousId": "a".repeat(257), "event": "e"}),
        )
        .expect_err("too long");
        assert_eq!(fields(&errors), ["anonymousId"]);
        // A messageId is part of keys too: 60 characters of 4 bytes are 240 bytes.
        let errors = single(
            Kind::Track,
            &json!({"userId": "u", "event": "e", "messageId": "😀".repeat(60)}),
        )
        .expect_err("too long");
        assert_eq!(fields(&errors), ["messageId"]);
    }

    /// An object `levels` deep, counting itself: `nested(1)` is `{"a": 1}`.
    fn nested(levels: usize) -> Value {
        let mut value = json!({"a": 1});
        for _ in 1..levels {
            value = json!({ "a": value });
        }
        value
    }

    fn many_keys(n: usize) -> Value {
        Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect())
    }

    /// A call as the HTTP API takes it: the event and its warnings.
    fn warned(call: Call, body: &Value) -> Result<(Event, Vec<Warning>), Vec<FieldError>> {
        parse_call_warned(
            call,
            body.to_string().as_bytes(),
            received(),
            &Limits::default(),
        )
    }

    /// An identify with more traits than an event keeps of its properties is taken whole: the
    /// profile's own bound applies, with `not_kept`, and an opt-out sent with them is never
    /// one dropped, though the profile is full.
    #[test]
    fn an_identify_with_many_traits_is_taken_and_its_opt_out_kept() {
        let Value::Object(mut traits) = many_keys(300) else {
            unreachable!("many_keys makes an object")
        };
        traits.insert("subscriptions".into(), json!({"email": false}));
        traits.insert("email".into(), json!("ada@example.com"));
        let body = json!({"userId": "u1", "traits": traits});
        let (event, warnings) = warned(Call::Identify, &body).expect("taken");
        assert_eq!(warnings, [], "the profile's bound is the traits' bound");
        assert_eq!(event.traits.len(), 302);
        assert_eq!(event.traits["subscriptions"], json!({"email": false}));
        // Strict parsing (a script) takes it too.
        assert!(single(Kind::Identify, &body).is_ok());

        // A full profile: the new traits are not kept, the opt-out and the address are.
        let mut p = crate::profile::Profile::new("u1");
        let full: Map<String, Value> = (0..crate::profile::MAX_PROFILE_TRAITS)
            .map(|i| (format!("full{i}"), json!(i)))
            .collect();
        p.apply(&single(Kind::Identify, &json!({"userId": "u1", "traits": full})).expect("taken"));
        let not_kept = p.apply(&event);
        assert_eq!(not_kept.len(), 300, "{not_kept:?}");
        assert!(not_kept.iter().all(|k| k.starts_with('k')), "{not_kept:?}");
        assert_eq!(p.traits["subscriptions"]["email"], json!(false));
        assert_eq!(p.traits["email"], json!("ada@example.com"));
    }

    /// Properties or a context with more keys than an event keeps are not refused: the first
    /// [`MAX_TRAITS`] by name are kept (a context's keys Waymark reads first), and the answer's
    /// warning names the field; a script's strict parsing still refuses them.
    #[test]
    fn properties_and_context_past_the_key_bound_are_cut_with_a_warning() {
        let body = json!({"userId": "u1", "event": "A", "properties": many_keys(300)});
        let (event, warnings) = warned(Call::Track, &body).expect("taken");
        assert_eq!(event.properties.as_object().map(Map::len), Some(MAX_TRAITS));
        assert_eq!(places(&warnings), [(None, "properties")]);
        assert!(
            warnings[0].message.contains("has 300 keys")
                && warnings[0].message.contains("left out"),
            "{warnings:?}"
        );
        assert_eq!(event.refused.len(), 1, "{:?}", event.refused);
        assert_eq!(event.refused[0].field, "properties");
        assert!(single(Kind::Track, &body).is_err());

        // `timezone` sorts after every `k…`: kept all the same, as Waymark reads it.
        let Value::Object(mut context) = many_keys(300) else {
            unreachable!("many_keys makes an object")
        };
        context.insert("timezone".into(), json!("Europe/Paris"));
        let body = json!({"userId": "u1", "event": "A", "context": context});
        let (event, warnings) = warned(Call::Track, &body).expect("taken");
        assert_eq!(event.context.len(), MAX_TRAITS);
        assert_eq!(event.context["timezone"], json!("Europe/Paris"));
        assert_eq!(places(&warnings), [(None, "context")]);

        // `os` sorts after every `k…`: kept all the same, as it tells the push token's platform.
        let Value::Object(mut context) = many_keys(300) else {
            unreachable!("many_keys makes an object")
        };
        context.insert("device".into(), json!({"token": "tok-1"}));
        context.insert("os".into(), json!({"name": "iOS"}));
        let body = json!({"userId": "u1", "event": "A", "context": context});
        let (event, warnings) = warned(Call::Track, &body).expect("taken");
        assert_eq!(event.push_device(), Some(("apns", "tok-1")));
        assert_eq!(places(&warnings), [(None, "context")]);

        // A group's traits become its event's properties: the warning names what was sent.
        let body = json!({"userId": "u1", "groupId": "g1", "traits": many_keys(300)});
        let (event, warnings) = warned(Call::Group, &body).expect("taken");
        assert_eq!(event.properties.as_object().map(Map::len), Some(MAX_TRAITS));
        assert_eq!(places(&warnings), [(None, "traits")]);
    }

    /// The keys a call puts in its event itself survive the cut of the app's: a group's
    /// `group_id` and a page's `name` and `category`, though the app's keys sort before them;
    /// the warning counts the keys the app sent, and the timeline names the field it sent.
    #[test]
    fn a_calls_own_keys_are_kept_when_the_apps_are_cut() {
        let keys = |stem: &str| -> Map<String, Value> {
            (0..300)
                .map(|i| (format!("{stem}_{i:03}"), json!(i)))
                .collect()
        };
        let body = json!({"userId": "u1", "groupId": "acme", "traits": keys("crm_field")});
        let (event, warnings) = warned(Call::Group, &body).expect("taken");
        assert_eq!(event.properties["group_id"], json!("acme"));
        assert_eq!(event.properties.as_object().map(Map::len), Some(MAX_TRAITS));
        assert_eq!(places(&warnings), [(None, "traits")]);
        assert!(
            warnings[0]
                .message
                .contains("has 300 keys, 301 with those the call adds;"),
            "{warnings:?}"
        );
        assert_eq!(event.refused.len(), 1, "{:?}", event.refused);
        assert_eq!(event.refused[0].field, "traits");
        assert!(
            event.refused[0].reason.contains("45 keys were left out"),
            "{:?}",
            event.refused
        );

        let body = json!({"userId": "u1", "name": "Pricing", "category": "Docs", "properties": keys("attr")});
        let (event, warnings) = warned(Call::Page, &body).expect("taken");
        assert_eq!(event.properties["name"], json!("Pricing"));
        assert_eq!(event.properties["category"], json!("Docs"));
        assert_eq!(places(&warnings), [(None, "properties")]);
        assert!(
            warnings[0]
                .message
                .contains("has 300 keys, 302 with those the call adds;"),
            "{warnings:?}"
        );
        assert_eq!(event.refused[0].field, "properties");
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let long = |n: usize| "x".repeat(n);
        let track = |extra: Value| {
            let mut body = json!({"userId": "u1", "event": "Signed Up"});
            for (k, v) in extra.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            body
        };
        let identify = |traits: Value| json!({"userId": "u1", "traits": traits});
        let cases: Vec<(&str, Kind, Value, &str)> = vec![
            ("no ids", Kind::Track, json!({"event": "A"}), "userId"),
            (
                "null ids",
                Kind::Track,
                json!({"event": "A", "userId": null, "anonymousId": null}),
                "userId",
            ),
            (
                "userId bool",
                Kind::Track,
                track(json!({"userId": true})),
                "userId",
            ),
            (
                "userId empty",
                Kind::Track,
                track(json!({"userId": ""})),
                "userId",
            ),
            (
                "userId too long",
                Kind::Track,
                track(json!({"userId": long(257)})),
                "userId",
            ),
            (
                "userId reserved prefix",
                Kind::Track,
                track(json!({"userId": "anon:x"})),
                "userId",
            ),
            (
                "anonymousId array",
                Kind::Track,
                track(json!({"anonymousId": []})),
                "anonymousId",
            ),
            (
                "anonymousId too long",
                Kind::Track,
                track(json!({"anonymousId": long(257)})),
                "anonymousId",
            ),
            ("no event", Kind::Track, json!({"userId": "u1"}), "event"),
            (
                "empty event",
                Kind::Track,
                track(json!({"event": ""})),
                "event",
            ),
            (
                "event number",
                Kind::Track,
                track(json!({"event": 5})),
                "event",
            ),
            (
                "event too long",
                Kind::Track,
                track(json!({"event": long(201)})),
                "event",
            ),
            (
                "properties array",
                Kind::Track,
                track(json!({"properties": []})),
                "properties",
            ),
            (
                "properties string",
                Kind::Track,
                track(json!({"properties": "x"})),
                "properties",
            ),
            (
                "properties too deep",
                Kind::Track,
                track(json!({"properties": nested(MAX_DEPTH + 1)})),
                "properties",
            ),
            (
                "array too deep",
                Kind::Track,
                track(json!({"properties": {"a": [[[[[[[[[[1]]]]]]]]]]}})),
                "properties",
            ),
            (
                "properties too many",
                Kind::Track,
                track(json!({"properties": many_keys(MAX_TRAITS + 1)})),
                "properties",
            ),
            (
                "context number",
                Kind::Track,
                track(json!({"context": 5})),
                "context",
            ),
            (
                "context too deep",
                Kind::Track,
                track(json!({"context": nested(MAX_DEPTH + 1)})),
                "context",
            ),
            (
                "messageId number",
                Kind::Track,
                track(json!({"messageId": 7})),
                "messageId",
            ),
            (
                "messageId empty",
                Kind::Track,
                track(json!({"messageId": ""})),
                "messageId",
            ),
            (
                "messageId too long",
                Kind::Track,
                track(json!({"messageId": long(101)})),
                "messageId",
            ),
            (
                "timestamp words",
                Kind::Track,
                track(json!({"timestamp": "yesterday"})),
                "timestamp",
            ),
            (
                "timestamp number",
                Kind::Track,
                track(json!({"timestamp": 1_717_243_200})),
                "timestamp",
            ),
            (
                "timestamp no offset",
                Kind::Track,
                track(json!({"timestamp": "2025-06-01T11:00:00"})),
                "timestamp",
            ),
            (
                "timestamp too old",
                Kind::Track,
                track(json!({"timestamp": "2025-05-02T11:59:59Z"})),
                "timestamp",
            ),
            (
                "timestamp in future",
                Kind::Track,
                track(json!({"timestamp": "2025-06-01T13:00:01Z"})),
                "timestamp",
            ),
            // jiff reads it, as 2025-06-01T11:30:00Z; RFC 3339's offset is at most 23:59.
            (
                "timestamp offset of 25 hours",
                Kind::Track,
                track(json!({"timestamp": "2025-06-02T12:30:00+25:00"})),
                "timestamp",
            ),
            (
                "timestamp offset of -24 hours",
                Kind::Track,
                track(json!({"timestamp": "2025-05-31T12:30:00-24:00"})),
                "timestamp",
            ),
            (
                "originalTimestamp offset of 25 hours",
                Kind::Track,
                track(json!({"originalTimestamp": "2025-06-02T12:30:00+25:00"})),
                "originalTimestamp",
            ),
            (
                "traits string",
                Kind::Identify,
                identify(json!("x")),
                "traits",
            ),
            (
                "traits too deep",
                Kind::Identify,
                identify(nested(MAX_DEPTH + 1)),
                "traits",
            ),
            (
                "email no at",
                Kind::Identify,
                identify(json!({"email": "ada.example.com"})),
                "traits.email",
            ),
            (
                "email two ats",
                Kind::Identify,
                identify(json!({"email": "ada@@example.com"})),
                "traits.email",
            ),
            (
                "email no local",
                Kind::Identify,
                identify(json!({"email": "@example.com"})),
                "traits.email",
            ),
            (
                "email no dot",
                Kind::Identify,
                identify(json!({"email": "ada@localhost"})),
                "traits.email",
            ),
            (
                "email trailing dot",
                Kind::Identify,
                identify(json!({"email": "ada@example."})),
                "traits.email",
            ),
            (
                "email space",
                Kind::Identify,
                identify(json!({"email": "ada lovelace@example.com"})),
                "traits.email",
            ),
            (
                "email too long",
                Kind::Identify,
                identify(json!({"email": format!("{}@example.com", long(243))})),
                "traits.email",
            ),
            (
                "email number",
                Kind::Identify,
                identify(json!({"email": 5})),
                "traits.email",
            ),
            (
                "phone no plus",
                Kind::Identify,
                identify(json!({"phone": "14155550123"})),
                "traits.phone",
            ),
            (
                "phone letters",
                Kind::Identify,
                identify(json!({"phone": "+1 415 CALL NOW"})),
                "traits.phone",
            ),
            (
                "phone spaces without a country code",
                Kind::Identify,
                identify(json!({"phone": "06 12 34 56 78"})),
                "traits.phone",
            ),
            (
                "phone too short",
                Kind::Identify,
                identify(json!({"phone": "+1234567"})),
                "traits.phone",
            ),
            (
                "phone too long",
                Kind::Identify,
                identify(json!({"phone": "+1234567890123456"})),
                "traits.phone",
            ),
            (
                "phone number",
                Kind::Identify,
                identify(json!({"phone": 14155550123_u64})),
                "traits.phone",
            ),
            (
                "timezone unknown",
                Kind::Identify,
                identify(json!({"timezone": "Mars/Olympus_Mons"})),
                "traits.timezone",
            ),
            (
                "timezone number",
                Kind::Identify,
                identify(json!({"timezone": 2})),
                "traits.timezone",
            ),
            (
                "subscriptions array",
                Kind::Identify,
                identify(json!({"subscriptions": ["email"]})),
                "traits.subscriptions",
            ),
            (
                "subscription not bool",
                Kind::Identify,
                identify(json!({"subscriptions": {"email": "yes"}})),
                "traits.subscriptions.email",
            ),
            (
                "subscription unknown",
                Kind::Identify,
                identify(json!({"subscriptions": {"fax": true}})),
                "traits.subscriptions.fax",
            ),
            (
                "push_tokens object",
                Kind::Identify,
                identify(json!({"push_tokens": {"platform": "fcm"}})),
                "traits.push_tokens",
            ),
            (
                "push_tokens item",
                Kind::Identify,
                identify(json!({"push_tokens": ["tok"]})),
                "traits.push_tokens[0]",
            ),
            (
                "push platform",
                Kind::Identify,
                identify(
                    json!({"push_tokens": [{"platform": "apns", "token": "a"}, {"platform": "wns", "token": "b"}]}),
                ),
                "traits.push_tokens[1].platform",
            ),
            (
                "push token empty",
                Kind::Identify,
                identify(json!({"push_tokens": [{"platform": "fcm", "token": ""}]})),
                "traits.push_tokens[0].token",
            ),
            (
                "devices token missing",
                Kind::Identify,
                identify(json!({"devices": [{"platform": "fcm"}]})),
                "traits.devices[0].token",
            ),
            ("body array", Kind::Track, json!([1, 2]), "body"),
            ("body string", Kind::Track, json!("hello"), "body"),
        ];
        for (name, kind, body, field) in cases {
            let errors = single(kind, &body).expect_err(name);
            assert_eq!(fields(&errors), vec![field], "{name}: {errors:?}");
            assert!(!errors[0].message.is_empty(), "{name}");
        }
    }

    #[test]
    fn good_inputs_pass() {
        let cases: Vec<(&str, Kind, Value)> = vec![
            (
                "minimal track",
                Kind::Track,
                json!({"userId": "u1", "event": "A"}),
            ),
            (
                "anonymous track",
                Kind::Track,
                json!({"anonymousId": "a1", "event": "A"}),
            ),
            (
                "null userId with anonymousId",
                Kind::Track,
                json!({"userId": null, "anonymousId": "a1", "event": "A"}),
            ),
            (
                "max lengths",
                Kind::Track,
                json!({"userId": "u".repeat(256), "event": "e".repeat(200), "messageId": "m".repeat(100)}),
            ),
            (
                "max depth",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "properties": nested(MAX_DEPTH), "context": nested(MAX_DEPTH)}),
            ),
            (
                "max keys",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "properties": many_keys(MAX_TRAITS)}),
            ),
            (
                "timestamp at edges",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "timestamp": "2025-05-02T12:00:00Z"}),
            ),
            (
                "timestamp ahead",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "timestamp": "2025-06-01T13:00:00Z"}),
            ),
            (
                "timestamp offset",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "timestamp": "2025-06-01T14:00:00.123+02:00"}),
            ),
            (
                "timestamp offset of 23:59",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "timestamp": "2025-06-02T11:00:00+23:59"}),
            ),
            (
                "identify without traits",
                Kind::Identify,
                json!({"userId": "u1"}),
            ),
            (
                "identify special traits",
                Kind::Identify,
                json!({"userId": "u1", "traits": {
                    "email": "ada.lovelace+news@mail.example.co.uk",
                    "phone": "+14155550123",
                    "timezone": "Europe/Paris",
                    "subscriptions": {"email": true, "sms": false, "push": true, "in_app": true, "webhook": false},
                    "push_tokens": [{"platform": "apns", "token": "abc"}, {"platform": "fcm", "token": "def"}],
                    "devices": [],
                    "plan": "pro",
                }}),
            ),
            (
                "null special traits clear them",
                Kind::Identify,
                json!({"userId": "u1", "traits": {
                    "email": null, "phone": null, "timezone": null, "subscriptions": null, "push_tokens": null,
                }}),
            ),
            (
                "identify ignores event and properties",
                Kind::Identify,
                json!({"userId": "u1", "event": 5, "properties": "x"}),
            ),
            (
                "track ignores traits",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "traits": {"email": "nope"}}),
            ),
            (
                "unknown fields ignored",
                Kind::Track,
                json!({"userId": "u1", "event": "A", "integrations": {"All": true}}),
            ),
        ];
        for (name, kind, body) in cases {
            if let Err(errors) = single(kind, &body) {
                panic!("{name}: {errors:?}");
            }
        }
    }

    #[test]
    fn builds_the_event() {
        let body = json!({
            "userId": "u1",
            "anonymousId": "a1",
            "event": "Order Completed",
            "messageId": "m-1",
            "properties": {"total": 42},
            "context": {"ip": "203.0.113.1"},
            "timestamp": "2025-06-01T11:00:00Z",
        });
        let event = single(Kind::Track, &body).expect("valid");
        assert_eq!(
            event,
            Event {
                kind: Kind::Track,
                message_id: "m-1".into(),
                user_id: "u1".into(),
                anonymous_id: Some("a1".into()),
                event: Some("Order Completed".into()),
                properties: Arc::new(json!({"total": 42})),
                traits: Map::new(),
                context: json!({"ip": "203.0.113.1"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                timestamp: "2025-06-01T11:00:00Z".parse().expect("valid"),
                received_at: received(),
                refused: Vec::new(),
            }
        );
    }

    #[test]
    fn absent_timestamp_is_received_at() {
        let event = single(Kind::Track, &json!({"userId": "u1", "event": "A"})).expect("valid");
        assert_eq!(event.timestamp, received());
    }

    /// Segment's clock-skew correction: a phone whose clock is a day ahead sends an event it
    /// stamped 5 s before sending; it happened 5 s before it was received.
    #[test]
    fn a_senders_clock_is_corrected_by_its_sent_at() {
        let at = |t: &str| t.parse::<Timestamp>().expect("time");
        assert_eq!(received(), at("2025-06-01T12:00:00Z"));
        let event = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "timestamp": "2025-06-02T11:59:55Z",
                "sentAt": "2025-06-02T12:00:00Z"}),
        )
        .expect("valid: the clock's offset is taken out before the limits");
        assert_eq!(event.timestamp, at("2025-06-01T11:59:55Z"));
        // originalTimestamp, as some libraries call it; a clock a day behind.
        let event = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "originalTimestamp": "2025-05-31T11:59:00Z",
                "sentAt": "2025-05-31T12:00:00Z"}),
        )
        .expect("valid");
        assert_eq!(event.timestamp, at("2025-06-01T11:59:00Z"));
        // A null sentAt is none.
        let event = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "timestamp": "2025-06-01T11:00:00Z",
                "sentAt": null}),
        )
        .expect("valid");
        assert_eq!(event.timestamp, at("2025-06-01T11:00:00Z"));
        // A batch's sentAt (analytics-node, analytics-python) corrects items without their own.
        let body = json!({"sentAt": "2025-06-02T12:00:00Z", "batch": [
            {"type": "track", "userId": "u1", "event": "A", "timestamp": "2025-06-02T11:58:00Z"},
            {"type": "track", "userId": "u1", "event": "B", "timestamp": "2025-06-02T11:59:00Z",
                "sentAt": "2025-06-02T11:59:30Z"},
        ]})
        .to_string();
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        let times: Vec<Timestamp> = outcome.accepted.iter().map(|e| e.timestamp).collect();
        assert_eq!(
            times,
            [at("2025-06-01T11:58:00Z"), at("2025-06-01T11:59:30Z")]
        );
    }

    /// A `sentAt` that is not a time is left out with a warning naming it (the call's, the
    /// batch's or an item's), the event taken with its timestamp as sent: refusing it would
    /// lose events for a field that only corrects the sender's clock. A script's line (strict)
    /// is refused for it.
    #[test]
    fn a_sent_at_that_is_not_a_time_is_left_out_with_a_warning() {
        let limits = Limits::default();
        for sent_at in [
            json!("soon"),
            json!(""),
            json!(1748779200),
            json!({"at": 1}),
            // jiff reads it; RFC 3339's offset is at most 23:59.
            json!("2025-06-02T13:00:00+25:00"),
        ] {
            for timestamp in [json!(null), json!("2025-06-01T11:00:00Z")] {
                let body = json!({"userId": "u1", "event": "A", "timestamp": timestamp,
                    "sentAt": sent_at});
                // Strict (a script): an error.
                let errors = single(Kind::Track, &body).expect_err("a bad sentAt");
                assert_eq!(fields(&errors), ["sentAt"], "{body}");
                // As the API takes it: the event, its timestamp as sent, and a warning.
                let (event, warnings) = parse_call_warned(
                    Call::Track,
                    body.to_string().as_bytes(),
                    received(),
                    &limits,
                )
                .expect("taken");
                let want = timestamp
                    .as_str()
                    .map(|t| t.parse::<Timestamp>().expect("time"))
                    .unwrap_or_else(received);
                assert_eq!(event.timestamp, want, "{body}");
                let named: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
                assert_eq!(named, ["sentAt"], "{body}");
            }
            // The batch's: every event taken, one warning.
            let outcome = batch(&json!({"sentAt": sent_at, "batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "track", "userId": "u2", "event": "B"},
            ]}))
            .expect("a batch");
            assert_eq!(outcome.accepted.len(), 2, "{sent_at}");
            let warned = places(&outcome.warnings);
            assert_eq!(warned, [(None, "sentAt")], "{sent_at}");
            // An item's: that item's warning.
            let outcome = batch(&json!({"batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "identify", "userId": "u1", "sentAt": sent_at},
            ]}))
            .expect("a batch");
            assert_eq!(outcome.accepted.len(), 2, "{sent_at}");
            let warned = places(&outcome.warnings);
            assert_eq!(warned, [(Some(1), "batch[1].sentAt")], "{sent_at}");
        }
    }

    /// The traits an identify is taken without travel with it to the engine, for the user's
    /// timeline: each field, its value as the timeline shows values (an address not), and why;
    /// in a batch too, named without the batch's place.
    #[test]
    fn an_identify_carries_the_traits_it_was_taken_without() {
        let body = json!({"userId": "u1", "traits": {
            "phone": "06 12", "timezone": "Mars/Olympus", "stated:x": 1, "plan": "pro"}});
        let (event, warnings) = parse_call_warned(
            Call::Identify,
            body.to_string().as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect("accepted");
        assert_eq!(warnings.len(), 3);
        let refused: Vec<(&str, &str)> = event
            .refused
            .iter()
            .map(|r| (r.field.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                ("traits.phone", "(not shown)"),
                ("traits.stated:x", "1"),
                ("traits.timezone", "\"Mars/Olympus\"")
            ]
        );
        assert!(event.refused[0].reason.contains("E.164"));
        // It goes on the queue with the event.
        let back: Event =
            serde_json::from_str(&serde_json::to_string(&event).expect("json")).expect("event");
        assert_eq!(back.refused, event.refused);
        let batch =
            json!({"batch": [{"type": "identify", "userId": "u2", "traits": {"email": "no"}}]});
        let outcome = parse_batch(batch.to_string().as_bytes(), received(), &Limits::default())
            .expect("a batch");
        assert_eq!(outcome.warnings[0].field, "batch[0].traits.email");
        assert_eq!(outcome.accepted[0].refused[0].field, "traits.email");
        // A good identify carries none.
        let (good, _) = parse_call_warned(
            Call::Identify,
            json!({"userId": "u1", "traits": {"plan": "pro"}})
                .to_string()
                .as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect("accepted");
        assert!(good.refused.is_empty());
        assert!(!serde_json::to_string(&good)
            .expect("json")
            .contains("refused"));
    }

    /// A misspelt field of a call (`propertes`) is a warning in the `200`, travels to the user's
    /// timeline with the event, and refuses a strict parse (a script); the fields Segment's
    /// libraries send that Waymark does not read pass without a word.
    #[test]
    fn a_misspelt_field_is_said_and_kept_for_the_timeline() {
        let body = json!({"userId": "u1", "event": "viewed", "propertes": {"price": 3},
            "_metadata": {"nodeVersion": "20"}, "integrations": {}, "writeKey": "k"});
        let (event, warnings) = parse_call_warned(
            Call::Track,
            body.to_string().as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect("accepted");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].field, "propertes");
        // Said once: "left out" twice was the problem's and the warning's.
        assert_eq!(
            warnings[0].message,
            "is not a field of an event: did you mean `properties`? Left out: the rest of the event is applied",
        );
        assert_eq!(event.refused.len(), 1);
        assert_eq!(event.refused[0].field, "propertes");
        assert_eq!(event.refused[0].value, "an object of 1 key");
        assert_eq!(event.properties.as_object().map(|m| m.len()), Some(0));
        let errors = parse_call(
            Call::Track,
            body.to_string().as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect_err("strict");
        assert_eq!(errors[0].field, "propertes");
        let batch = json!({"batch": [{"type": "identify", "user_id": "u2", "anonymousId": "a",
            "traits": {"plan": "pro"}}]});
        let outcome = parse_batch(batch.to_string().as_bytes(), received(), &Limits::default())
            .expect("a batch");
        assert_eq!(outcome.warnings[0].field, "batch[0].user_id");
        assert!(outcome.warnings[0].message.contains("`userId`"));
        // Short words two letters from a field are a sender's own; one letter is a slip.
        for (key, meant) in [
            ("page", None),
            ("time", None),
            ("user", None),
            ("evnt", Some("event")),
            // A sender's own fields that extend one, and near misses of fields Waymark does
            // not read, which change nothing.
            ("channelId", None),
            ("timestamp_ms", None),
            ("propertiesV2", None),
            ("contextId", None),
            ("message", None),
            ("integrationId", None),
            ("versions", None),
            ("session", None),
            ("recievedAt", None),
            ("timestmp", Some("timestamp")),
            ("messageID", Some("messageId")),
            ("trait", Some("traits")),
            ("Trait", Some("traits")),
            ("Even", Some("event")),
            ("even", Some("event")),
            ("propertie", Some("properties")),
            ("contex", Some("context")),
            ("group", None),
            ("sent", None),
            ("Properties", Some("properties")),
        ] {
            let body = json!({"userId": "u1", "event": "viewed", key: 1});
            let (_, warnings) = parse_call_warned(
                Call::Track,
                body.to_string().as_bytes(),
                received(),
                &Limits::default(),
            )
            .expect("accepted");
            let said: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
            match meant {
                Some(_) => assert_eq!(said, [key], "{key}"),
                None => assert!(said.is_empty(), "{key}: {warnings:?}"),
            }
        }
    }

    /// An identify's email or phone that is not an address is left out with a warning, its
    /// other traits (an opt-out among them) taken; surrounding spaces are trimmed first.
    #[test]
    fn a_bad_address_is_left_out_of_an_identify_and_the_rest_taken() {
        let received = received();
        let limits = Limits::default();
        let call = |body: Value| {
            parse_call_warned(
                Call::Identify,
                body.to_string().as_bytes(),
                received,
                &limits,
            )
        };
        // Spaces around an address are not part of it.
        let (event, warnings) = call(json!({"userId": "u1", "traits": {
            "email": " optx@example.com \n", "phone": "\t+14155550123 "}}))
        .expect("taken");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(event.traits["email"], "optx@example.com");
        assert_eq!(event.traits["phone"], "+14155550123");

        for (email, phone) in [
            (json!("opt x@example.com"), json!("+14155550123")),
            (json!(""), json!("+1")),
            (json!(5), json!("call me")),
        ] {
            let (event, warnings) = call(json!({"userId": "u1", "traits": {
                "email": email, "phone": phone, "first_name": "Changed",
                "subscriptions": {"email": false}}}))
            .expect("taken without the bad address");
            assert_eq!(event.traits.get("email"), None, "{email}");
            assert_eq!(event.traits["first_name"], "Changed");
            assert_eq!(event.traits["subscriptions"], json!({"email": false}));
            let named: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
            let good_phone = phone == json!("+14155550123");
            if good_phone {
                assert_eq!(named, ["traits.email"]);
                assert_eq!(event.traits["phone"], phone);
            } else {
                assert_eq!(named, ["traits.email", "traits.phone"]);
                assert_eq!(event.traits.get("phone"), None);
            }
            assert!(warnings
                .iter()
                .all(|w| w.index.is_none() && w.message.contains("left out")));
            // Strict parsing (scripts, tests) refuses it, naming the same fields.
            let body = json!({"userId": "u1", "traits": {"email": email, "phone": phone}});
            let errors = single(Kind::Identify, &body).expect_err("strict");
            assert_eq!(fields(&errors), named);
        }

        // A zone that is not one is left out the same way (a travelling user's opt-out stands).
        let (event, warnings) = call(json!({"userId": "u1", "traits": {
            "timezone": "Mars/Olympus_Mons", "subscriptions": {"sms": false}}}))
        .expect("taken without the bad zone");
        assert_eq!(event.traits.get("timezone"), None);
        assert_eq!(event.traits["subscriptions"], json!({"sms": false}));
        let warned: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(warned, ["traits.timezone"]);
        // A misspelt zone, or a city written with a space, is told the name it is near.
        for (sent, meant) in [
            ("Europe/Pariss", "Europe/Paris"),
            ("America/New York", "America/New_York"),
            ("Asia/Tokio", "Asia/Tokyo"),
        ] {
            let (event, warnings) = call(json!({"userId": "u1", "traits": {"timezone": sent},
                "context": {"timezone": sent}}))
            .expect("taken without the bad zone");
            assert_eq!(event.traits.get("timezone"), None);
            let told =
                format!("must be an IANA time zone name, did you mean `{meant}`? Left out: ");
            let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
            assert_eq!(fields, ["traits.timezone", "context.timezone"]);
            assert!(
                warnings.iter().all(|w| w.message.starts_with(&told)),
                "{sent}: {warnings:?}"
            );
        }

        // A trait under a name the profile keeps its channels' times by is left out too (it
        // would stand for a channel's choice being made).
        let (event, warnings) = call(json!({"userId": "u1", "traits": {
            "subscriptions.email": "2099-01-01T00:00:00Z", "stated:x": 1, "plan": "pro"}}))
        .expect("taken without them");
        assert_eq!(event.traits.get("subscriptions.email"), None);
        assert_eq!(event.traits["plan"], "pro");
        let warned: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(warned, ["traits.stated:x", "traits.subscriptions.email"]);

        // So is a locale that is not one, and a device's zone or locale that would not be
        // taken as the user's is said, not silently passed over.
        let (event, warnings) = call(
            json!({"userId": "u1", "traits": {"locale": 5, "plan": "pro"},
            "context": {"timezone": "Mars/X", "locale": "fr-FR"}}),
        )
        .expect("taken without the bad locale");
        assert_eq!(event.traits.get("locale"), None);
        assert_eq!(event.traits["plan"], "pro");
        let warned: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(warned, ["traits.locale", "context.timezone"]);
        assert!(
            warnings[1].message
                == "must be an IANA time zone name, e.g. Europe/Paris or America/New_York; left out: not taken as the user's, the rest of the event is applied",
            "{warnings:?}"
        );

        // A language's name, as a settings screen may send it, is no locale tag: no `locales`
        // variant would match it, so it is left out, told the tag it may have meant.
        for (name, code) in [("French", "fr"), ("english", "en")] {
            let (event, warnings) = call(json!({"userId": "u1", "traits": {"locale": name}}))
                .expect("taken without the locale");
            assert_eq!(event.traits.get("locale"), None, "{name}");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert_eq!(warnings[0].field, "traits.locale");
            assert!(
                warnings[0]
                    .message
                    .contains(&format!("did you mean `{code}`?")),
                "{warnings:?}"
            );
        }
        for tag in ["fr-FR", "en", "pt_BR", "zh-Hant-TW", "fil"] {
            let (event, warnings) =
                call(json!({"userId": "u1", "traits": {"locale": tag}})).expect("taken");
            assert_eq!(event.traits["locale"], tag);
            assert!(warnings.is_empty(), "{tag}: {warnings:?}");
        }
        let (event, warnings) = call(json!({"userId": "u1", "context": {"locale": "Deutsch"}}))
            .expect("taken without the device's locale");
        assert_eq!(event.traits.get("locale"), None);
        assert_eq!(warnings[0].field, "context.locale");

        // Anything else wrong still refuses the identify, the address and zone named with it
        // (as problems: nothing of it is applied).
        let errors = call(json!({"userId": "u1", "traits": {"email": "x",
            "timezone": "Mars/Olympus_Mons", "subscriptions": {"email": "no"}}}))
        .expect_err("refused");
        assert!(
            errors.iter().all(|e| !e.message.contains("left out")),
            "{errors:?}"
        );
        let mut named = fields(&errors);
        named.sort_unstable();
        assert_eq!(
            named,
            [
                "traits.email",
                "traits.subscriptions.email",
                "traits.timezone"
            ]
        );
        // A null clears the address, as before: no warning.
        let (event, warnings) =
            call(json!({"userId": "u1", "traits": {"email": null}})).expect("taken");
        assert!(warnings.is_empty());
        assert_eq!(event.traits["email"], Value::Null);

        // In a batch, each warning names its item.
        let outcome = batch(&json!({"batch": [
            {"type": "track", "userId": "u1", "event": "A"},
            {"type": "identify", "userId": "u1", "traits": {"email": "a@b", "plan": "pro"}},
            {"type": "identify", "userId": "u2", "traits": {"email": "x"}, "userIdx": 1, "timestamp": "no"},
        ]}))
        .expect("a batch");
        assert_eq!(outcome.accepted.len(), 2);
        assert_eq!(outcome.accepted[1].traits.get("email"), None);
        assert_eq!(outcome.accepted[1].traits["plan"], "pro");
        let warned = places(&outcome.warnings);
        assert_eq!(warned, [(Some(1), "batch[1].traits.email")]);
        assert_eq!(
            fields(&outcome.rejected[0].errors),
            ["batch[2].timestamp", "batch[2].traits.email"]
        );
    }

    /// A number written for people is kept as E.164 (what SNS sends to and opt-outs list).
    #[test]
    fn phone_numbers_written_for_people_are_kept_as_e164() {
        for (sent, kept) in [
            ("+1 415 555 0123", "+14155550123"),
            ("+1 (415) 555-0123", "+14155550123"),
            ("+33 (0)6 12 34 56 78", "+33612345678"),
            ("+44.20.7946.0958", "+442079460958"),
            ("+14155550123", "+14155550123"),
        ] {
            let event = single(
                Kind::Identify,
                &json!({"userId": "u1", "traits": {"phone": sent, "email": "a@example.com"}}),
            )
            .expect("valid");
            assert_eq!(event.traits["phone"], kept, "{sent}");
        }
    }

    #[test]
    fn limits_are_configurable() {
        let limits = Limits {
            max_past: SignedDuration::from_hours(24 * 365),
            max_future: SignedDuration::ZERO,
        };
        let body = |t: &str| json!({"userId": "u1", "event": "A", "timestamp": t}).to_string();
        let parse = |t: &str| parse_single(Kind::Track, body(t).as_bytes(), received(), &limits);
        assert!(parse("2024-07-01T12:00:00Z").is_ok());
        assert!(parse("2025-06-01T12:00:01Z").is_err());
        let message = &parse("2025-06-01T13:30:00Z").expect_err("ahead")[0].message;
        assert!(message.contains("1 hour 30 minutes"), "{message}");
    }

    #[test]
    fn numbers_are_accepted_as_ids() {
        let event = single(Kind::Track, &json!({"userId": 42, "event": "A"})).expect("valid");
        assert_eq!(event.user_id, "42");
        // An integer is its digits, all of them (JavaScript would make 12345678901234567000
        // of this one); past 64 bits, as JSON writes the number.
        for (sent, kept) in [
            ("12345678901234567890", "12345678901234567890"),
            ("-9007199254740993", "-9007199254740993"),
            ("1e15", "1000000000000000"),
        ] {
            let body = format!(r#"{{"userId": {sent}, "event": "A"}}"#);
            let event = parse_single(Kind::Track, body.as_bytes(), received(), &Limits::default())
                .expect("valid");
            assert_eq!(event.user_id, kept, "{sent}");
        }
        // Past 64 bits, or at 9×10^15 or more with an exponent or a fraction, JSON's reading has
        // rounded the number already: two users (…901 and …902) would be one. Refused, naming
        // the field, for the id to be sent as text.
        for sent in [
            "123456789012345678901",
            "123456789012345678902",
            "1e20",
            "9007199254740993.0",
            "-1e16",
        ] {
            for field in ["userId", "anonymousId"] {
                let body = format!(r#"{{"{field}": {sent}, "event": "A"}}"#);
                let errors =
                    parse_single(Kind::Track, body.as_bytes(), received(), &Limits::default())
                        .expect_err(sent);
                assert_eq!(errors[0].field, field, "{sent}: {errors:?}");
                assert!(
                    errors[0].message.contains("send the id as a string"),
                    "{sent}: {errors:?}"
                );
            }
        }
        // As JavaScript writes them: a whole number is its digits, however it was written.
        let body = br#"{"userId": 1e3, "event": "A"}"#;
        let event = parse_single(Kind::Track, body, received(), &Limits::default()).expect("valid");
        assert_eq!(event.user_id, "1000");
        let event = single(Kind::Track, &json!({"userId": 2.5, "event": "A"})).expect("valid");
        assert_eq!(event.user_id, "2.5");
        for blank in [
            json!({"userId": "  ", "event": "A"}),
            json!({"userId": "u", "event": " \t"}),
            json!({"userId": "\u{200B}", "event": "A"}),
            json!({"anonymousId": "\u{FEFF} \u{200D}", "event": "A"}),
            // An event name that shows as nothing, as an id.
            json!({"userId": "u", "event": "\u{200B}"}),
            json!({"userId": "u", "event": "\u{2060}\u{FEFF}"}),
            json!({"userId": "u", "event": "\u{3164}"}),
            json!({"userId": "\u{2800}\u{180E}", "event": "A"}),
        ] {
            let errors = single(Kind::Track, &blank).expect_err("blank");
            assert!(errors[0].message.contains("only spaces"), "{errors:?}");
        }
        for control in ["nl\nuser", "nul\u{0}", "del\u{7f}"] {
            let errors = single(Kind::Track, &json!({"userId": control, "event": "A"}))
                .expect_err("control");
            assert_eq!(errors[0].field, "userId", "{errors:?}");
            assert!(
                errors[0].message.contains("control characters"),
                "{errors:?}"
            );
        }
        let event = single(Kind::Track, &json!({"anonymousId": 7, "event": "A"})).expect("valid");
        assert_eq!(event.user_id, "anon:7");
        assert_eq!(event.anonymous_id.as_deref(), Some("7"));
    }

    #[test]
    fn user_id_wins_over_anonymous_id() {
        let event = single(
            Kind::Identify,
            &json!({"userId": "u1", "anonymousId": "a1"}),
        )
        .expect("valid");
        assert_eq!(event.user_id, "u1");
        let event = single(Kind::Identify, &json!({"anonymousId": "a1"})).expect("valid");
        assert_eq!(event.user_id, "anon:a1");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let errors = single(
            Kind::Track,
            &json!({"userId": [], "properties": 3, "timestamp": "soon"}),
        )
        .expect_err("invalid");
        assert_eq!(
            fields(&errors),
            vec!["userId", "event", "properties", "timestamp"]
        );
    }

    #[test]
    fn missing_ids_message_says_what_to_send() {
        let errors = single(Kind::Track, &json!({"event": "A"})).expect_err("no ids");
        assert_eq!(
            errors,
            vec![FieldError::new(
                "userId",
                "one of userId or anonymousId is required"
            )]
        );
    }

    #[test]
    fn an_event_without_a_message_id_gets_one_of_its_own() {
        let a = json!({"userId": "u1", "event": "A", "properties": {"x": 1, "y": [1, {"b": 2, "a": 1}]}});
        let reordered = r#"{ "properties": {"y": [1, {"a": 1, "b": 2}], "x": 1}, "event": "A", "userId": "u1" }"#;
        let first = single(Kind::Track, &a).expect("valid").message_id;
        // Made from the request alone: reading it again (the intake retrying its work on the
        // same request) gives the same id, whatever the order of its keys.
        let again = single(Kind::Track, &a).expect("valid").message_id;
        let other_order = parse_single(
            Kind::Track,
            reordered.as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect("valid")
        .message_id;
        assert_eq!(first, again);
        assert_eq!(first, other_order);
        assert!(first.starts_with("auto-"));
        assert_eq!(first.len(), 5 + 64);
        assert!(first[5..].bytes().all(|b| HEX.contains(&b)));

        // The same event sent again a moment later is another event (three `app_opened` are
        // three), not a repeat to drop.
        let later = received() + SignedDuration::from_millis(1);
        let sent_again = parse_single(
            Kind::Track,
            a.to_string().as_bytes(),
            later,
            &Limits::default(),
        )
        .expect("valid")
        .message_id;
        assert_ne!(first, sent_again);

        let other = json!({"userId": "u1", "event": "B", "properties": {"x": 1, "y": [1, {"b": 2, "a": 1}]}});
        assert_ne!(
            first,
            single(Kind::Track, &other).expect("valid").message_id
        );

        // Two identical events in one batch are two events, and neither is the lone one's.
        let mut item = a.clone();
        item["type"] = json!("track");
        let outcome = batch(&json!({"batch": [item.clone(), item]})).expect("valid");
        let ids: Vec<&str> = outcome
            .accepted
            .iter()
            .map(|e| e.message_id.as_str())
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert!(!ids.contains(&first.as_str()));

        // The same body as an identify is another event.
        let identify = json!({"userId": "u1"});
        let as_identify = single(Kind::Identify, &identify).expect("valid").message_id;
        let mut as_track = identify.clone();
        as_track["event"] = json!("A");
        assert_ne!(
            as_identify,
            single(Kind::Track, &as_track).expect("valid").message_id
        );
    }

    #[test]
    fn auto_message_id_matches_a_known_digest() {
        // sha256 of the canonical event, then `@` the time received and `#` its place in the
        // request (none for a lone call).
        let event = single(Kind::Track, &json!({"userId": "u1", "event": "A"})).expect("valid");
        let digest =
            Sha256::digest(br#"{"event":"A","type":"track","userId":"u1"}@2025-06-01T12:00:00Z#"#);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(event.message_id, format!("auto-{hex}"));
    }

    #[test]
    fn explicit_message_id_is_kept() {
        let event = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "messageId": "abc"}),
        )
        .expect("valid");
        assert_eq!(event.message_id, "abc");
    }

    #[test]
    fn invalid_utf8_is_a_body_error() {
        let errors = parse_single(
            Kind::Track,
            b"{\"userId\":\"\xff\",\"event\":\"A\"}",
            received(),
            &Limits::default(),
        )
        .expect_err("invalid UTF-8");
        assert_eq!(fields(&errors), vec!["body"]);
        assert!(errors[0].message.contains("UTF-8"), "{errors:?}");
        let errors = parse_batch(b"\xc3\x28", received(), &Limits::default()).expect_err("bad");
        assert_eq!(fields(&errors), vec!["body"]);
        assert!(errors[0].message.contains("UTF-8"), "{errors:?}");
    }

    /// Half a surrogate pair escaped alone (JavaScript's `JSON.stringify` of a string cut in
    /// the middle of an emoji) is read as U+FFFD, and the batch it is in is accepted whole; a
    /// whole pair, and a backslash written as text before `u`, are left as they are. A byte
    /// Python's `json.dumps` writes a float that is no number as `NaN` or `Infinity`: read as
    /// null, not the whole batch lost; the words inside strings stay as they are.
    #[test]
    fn python_nan_and_infinity_are_null_not_a_lost_batch() {
        let body = r#"{"batch": [
            {"type": "track", "userId": "u1", "event": "A", "properties": {"v": NaN, "w": [Infinity, -Infinity, 1]}},
            {"type": "track", "userId": "u1", "event": "NaN", "properties": {"t": "Infinity \" NaN"}}
        ]}"#;
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        assert_eq!(
            *outcome.accepted[0].properties,
            json!({"v": null, "w": [null, null, 1]})
        );
        assert_eq!(outcome.accepted[1].event.as_deref(), Some("NaN"));
        assert_eq!(
            *outcome.accepted[1].properties,
            json!({"t": "Infinity \" NaN"})
        );
        assert_eq!(without_non_finite(r#"{"t": "NaN"}"#), None);
        // Anything else that is not JSON is still refused, naming the body.
        let errors = parse_batch(br#"{"batch": [nan]}"#, received(), &Limits::default())
            .expect_err("not JSON");
        assert_eq!(errors[0].field, "body");
    }

    /// order mark before the JSON is no part of it.
    #[test]
    fn a_lone_surrogate_is_a_replacement_character_not_a_lost_batch() {
        let body = "\u{FEFF}{\"batch\": [\
            {\"type\": \"track\", \"userId\": \"u1\", \"event\": \"A\", \"properties\": {\"t\": \"a\\ud83d\"}},\
            {\"type\": \"track\", \"userId\": \"u1\", \"event\": \"B\", \"properties\": {\"t\": \"\\ud83d\\ude00 \\\\ud83d\"}},\
            {\"type\": \"track\", \"userId\": \"u1\", \"event\": \"C\", \"properties\": {\"t\": \"\\ude00x\\ud83d\"}}\
        ]}";
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        let texts: Vec<&str> = outcome
            .accepted
            .iter()
            .map(|e| e.properties["t"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            texts,
            ["a\u{FFFD}", "\u{1F600} \\ud83d", "\u{FFFD}x\u{FFFD}"]
        );
        assert_eq!(without_lone_surrogates("{\"t\": \"\\ud83d\\ude00\"}"), None);
        // in an id, half a pair is refused: `a\ud83d` and `a\ud83e` would be one user; a tab
        // is kept
        let body = r#"{"batch": [
            {"type": "track", "userId": "a\ud83d", "event": "A"},
            {"type": "track", "userId": "tab\tuser", "event": "A", "messageId": "m\ud83e"},
            {"type": "track", "userId": "tab\tuser", "event": "A"}
        ]}"#;
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        let refused: Vec<(Option<usize>, String)> = outcome
            .rejected
            .iter()
            .map(|r| (r.index, r.errors[0].field.clone()))
            .collect();
        assert_eq!(
            refused,
            [
                (Some(0), "batch[0].userId".to_string()),
                (Some(1), "batch[1].messageId".to_string())
            ]
        );
        assert_eq!(outcome.accepted.len(), 1);
        assert_eq!(outcome.accepted[0].user_id, "tab\tuser");
    }

    #[test]
    fn malformed_json_is_a_body_error() {
        for body in [&b""[..], b"{", b"{\"userId\": }", b"null"] {
            let errors =
                parse_single(Kind::Track, body, received(), &Limits::default()).expect_err("bad");
            assert_eq!(fields(&errors), vec!["body"]);
        }
    }

    #[test]
    fn oversized_event_is_a_body_error() {
        let body = json!({"userId": "u1", "event": "A", "properties": {"blob": "x".repeat(MAX_EVENT_BYTES)}});
        let errors = single(Kind::Track, &body).expect_err("too big");
        assert_eq!(fields(&errors), vec!["body"]);
        assert!(errors[0].message.contains("32 KB"), "{errors:?}");
    }

    #[test]
    fn batch_keeps_good_items_and_rejects_bad_ones() {
        let body = json!({"batch": [
            {"type": "track", "userId": "u1", "event": "A"},
            {"type": "track", "userId": "u2"},
            {"type": "identify", "userId": "u3", "traits": {"plan": "pro"}},
        ]});
        let outcome = batch(&body).expect("batch parses");
        let users: Vec<_> = outcome
            .accepted
            .iter()
            .map(|e| e.user_id.as_str())
            .collect();
        assert_eq!(users, vec!["u1", "u3"]);
        assert_eq!(outcome.accepted[1].kind, Kind::Identify);
        assert_eq!(
            outcome.rejected,
            vec![Rejected {
                index: Some(1),
                errors: vec![FieldError::new(
                    "batch[1].event",
                    r#"is required for track: the event's name, e.g. "Order Completed""#
                )],
            }]
        );
    }

    /// A batch's items sent without a time happened in the batch's order: an order sent
    /// before a cart in one request is before it, not at the same instant.
    #[test]
    fn batch_items_without_a_time_are_stamped_in_their_order() {
        let body = json!({"batch": [
            {"type": "track", "userId": "u1", "event": "order_completed"},
            {"type": "track", "userId": "u1", "event": "cart_abandoned"},
            {"type": "track", "userId": "u1", "event": "B", "timestamp": "2025-06-01T11:00:00Z"},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        ]});
        let outcome = batch(&body).expect("batch parses");
        let at: Vec<Timestamp> = outcome.accepted.iter().map(|e| e.timestamp).collect();
        assert_eq!(at[0], received());
        assert!(at[0] < at[1] && at[1] < at[3], "{at:?}");
        assert_eq!(
            at[2],
            "2025-06-01T11:00:00Z".parse::<Timestamp>().expect("time")
        );
        // Each still received when the request was.
        assert!(outcome.accepted.iter().all(|e| e.received_at == received()));
    }

    /// U+FFFE and U+FFFF, which SQS does not carry, are read as U+FFFD: one string holding
    /// them (escaped or not) does not lose the batch at the queue; an id holding one is
    /// refused, that item alone.
    #[test]
    fn noncharacters_are_replacement_characters_not_a_lost_batch() {
        let body = "{\"batch\": [\
            {\"type\": \"identify\", \"userId\": \"u1\", \"traits\": {\"first_name\": \"Good\"}},\
            {\"type\": \"track\", \"userId\": \"u2\", \"event\": \"x\", \"properties\": {\"a\": \"\\ufffe\", \"b\\uFFFF\": [\"\u{FFFF}\"]}},\
            {\"type\": \"track\", \"userId\": \"u\\uffff\", \"event\": \"x\"}\
        ]}";
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        let users: Vec<&str> = outcome
            .accepted
            .iter()
            .map(|e| e.user_id.as_str())
            .collect();
        assert_eq!(users, ["u1", "u2"]);
        assert_eq!(
            *outcome.accepted[1].properties,
            json!({"a": "\u{FFFD}", "b\u{FFFD}": ["\u{FFFD}"]})
        );
        let refused: Vec<(Option<usize>, &str)> = outcome
            .rejected
            .iter()
            .map(|r| (r.index, r.errors[0].field.as_str()))
            .collect();
        assert_eq!(refused, [(Some(2), "batch[2].userId")]);
        assert!(!has_noncharacter(r#"{"a": "\\ufffd \u00e9"}"#));
    }

    /// `levels` arrays, one in another, as JSON text: past serde_json's recursion limit
    /// (written as text: `json!` cannot hold what serde_json cannot read back).
    fn deep_text(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// One item nested past serde_json's recursion limit (128 levels) is refused alone, with
    /// its index and field, as other refusals are; the batch's other items are accepted
    /// (was: the whole batch refused as "not valid JSON (recursion limit exceeded)"). Still
    /// with half a surrogate pair, `NaN` and U+FFFF read as ever beside it.
    #[test]
    fn an_item_nested_too_deep_is_refused_alone() {
        let deep = deep_text(JSON_DEPTH + 10);
        let body = format!(
            "{{\"context\": {{\"app\": \"a\\ufffe\"}}, \"batch\": [\
                {{\"type\": \"track\", \"userId\": \"u1\", \"event\": \"A\", \"properties\": {{\"v\": NaN, \"e\": \"\\ud83d\"}}}},\
                {{\"type\": \"track\", \"userId\": \"u2\", \"event\": \"A\", \"properties\": {{\"list\": {deep}}}}},\
                {deep},\
                {{\"type\": \"identify\", \"userId\": \"u3\", \"traits\": {{\"plan\": \"pro\\uFFFF\"}}}}\
            ]}}"
        );
        let outcome =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect("a batch");
        let users: Vec<&str> = outcome
            .accepted
            .iter()
            .map(|e| e.user_id.as_str())
            .collect();
        assert_eq!(users, ["u1", "u3"]);
        assert_eq!(
            *outcome.accepted[0].properties,
            json!({"v": null, "e": "\u{FFFD}"})
        );
        assert_eq!(outcome.accepted[0].context["app"], json!("a\u{FFFD}"));
        assert_eq!(outcome.accepted[1].traits["plan"], json!("pro\u{FFFD}"));
        let refused: Vec<(Option<usize>, Vec<&str>)> = outcome
            .rejected
            .iter()
            .map(|r| (r.index, fields(&r.errors)))
            .collect();
        assert_eq!(
            refused,
            [
                (Some(1), vec!["batch[1].properties"]),
                (Some(2), vec!["batch[2]"])
            ]
        );
        let message = &outcome.rejected[0].errors[0].message;
        assert!(
            message.starts_with("nests more than 128 levels deep") && message.contains("flatten"),
            "{message}"
        );

        // The batch's own context too deep: the whole body, naming it.
        let body = format!("{{\"context\": {{\"x\": {deep}}}, \"batch\": [{{\"type\": \"track\", \"userId\": \"u1\", \"event\": \"A\"}}]}}");
        let errors = parse_batch(body.as_bytes(), received(), &Limits::default())
            .expect_err("context too deep");
        assert_eq!(fields(&errors), ["context"]);
        // Too deep and not JSON further on: said to be not JSON.
        let body = format!("{{\"batch\": [{deep}, {{]}}");
        let errors =
            parse_batch(body.as_bytes(), received(), &Limits::default()).expect_err("not JSON");
        assert!(
            errors[0].message.starts_with("is not valid JSON"),
            "{errors:?}"
        );
        // A body that is no object.
        let errors =
            parse_batch(deep.as_bytes(), received(), &Limits::default()).expect_err("an array");
        assert_eq!(errors, [FieldError::new("body", "must be a JSON object")]);
    }

    /// A single call nested too deep is refused naming the field (was: "not valid JSON
    /// (recursion limit exceeded ...)"); its write key is still read.
    #[test]
    fn a_call_nested_too_deep_names_the_field() {
        let body = format!(
            "{{\"writeKey\": \"k\", \"userId\": \"u1\", \"event\": \"A\", \"properties\": {{\"x\": {}}}}}",
            deep_text(JSON_DEPTH + 1)
        );
        let errors = parse_call(Call::Track, body.as_bytes(), received(), &Limits::default())
            .expect_err("too deep");
        assert_eq!(fields(&errors), ["properties"]);
        assert!(
            errors[0]
                .message
                .starts_with("nests more than 128 levels deep"),
            "{errors:?}"
        );
        assert_eq!(write_key(body.as_bytes()).as_deref(), Some("k"));
    }

    #[test]
    fn batch_items_name_their_fields() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("not an object", json!(5), "batch[0]"),
            (
                "no type",
                json!({"userId": "u1", "event": "A"}),
                "batch[0].type",
            ),
            (
                "type number",
                json!({"type": 1, "userId": "u1", "event": "A"}),
                "batch[0].type",
            ),
            (
                "type unknown",
                json!({"type": "purchase", "userId": "u1"}),
                "batch[0].type",
            ),
            (
                "no ids",
                json!({"type": "track", "event": "A"}),
                "batch[0].userId",
            ),
            (
                "bad token",
                json!({"type": "identify", "userId": "u1", "traits": {"push_tokens": [{"platform": "x", "token": "t"}]}}),
                "batch[0].traits.push_tokens[0].platform",
            ),
            (
                "too big",
                json!({"type": "track", "userId": "u1", "event": "A", "properties": {"blob": big}}),
                "batch[0]",
            ),
        ];
        for (name, item, field) in cases {
            let outcome = batch(&json!({"batch": [item]})).expect(name);
            assert!(outcome.accepted.is_empty(), "{name}");
            assert_eq!(outcome.rejected.len(), 1, "{name}");
            assert_eq!(outcome.rejected[0].index, Some(0), "{name}");
            assert_eq!(fields(&outcome.rejected[0].errors), vec![field], "{name}");
        }
    }

    #[test]
    fn batch_rejects_unknown_types_with_a_hint() {
        let outcome =
            batch(&json!({"batch": [{"type": "screenview", "userId": "u1"}]})).expect("batch");
        let error = &outcome.rejected[0].errors[0];
        assert_eq!(error.field, "batch[0].type");
        assert!(
            error
                .message
                .contains(r#"send "track", "identify", "page", "screen", "alias" or "group""#),
            "{error:?}"
        );
    }

    /// Segment's client libraries send `group` calls in their batches; a refusal would make
    /// them report the whole batch failed (and the legacy Node library throw).
    #[test]
    fn a_group_call_is_the_track_event_group_joined_with_the_groups_traits_and_id() {
        let outcome = batch(&json!({"batch": [
            {"type": "group", "userId": "u1", "messageId": "g1", "groupId": "acme",
             "traits": {"name": "Acme", "plan": "enterprise", "group_id": "not this"}},
            {"type": "group", "anonymousId": "d1", "messageId": "g2", "groupId": 42},
        ]}))
        .expect("batch");
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        let [acme, numbered] = outcome.accepted.as_slice() else {
            panic!("{:?}", outcome.accepted)
        };
        assert_eq!(acme.kind, Kind::Track);
        assert_eq!(acme.event.as_deref(), Some(GROUP_JOINED));
        assert_eq!(
            *acme.properties,
            json!({"name": "Acme", "plan": "enterprise", "group_id": "acme"})
        );
        assert!(acme.traits.is_empty());
        assert_eq!(*numbered.properties, json!({"group_id": "42"}));
        // Without its group, or with traits that are not an object, it is refused by name.
        let outcome = batch(&json!({"batch": [
            {"type": "group", "userId": "u1"},
            {"type": "group", "userId": "u1", "groupId": "acme", "traits": ["Acme"]},
            {"type": "group", "userId": "u1", "groupId": "  "},
        ]}))
        .expect("batch");
        assert!(outcome.accepted.is_empty());
        // A problem of the group's traits names the traits, not the properties they became.
        let deep = (0..40).fold(json!(1), |v, _| json!([v]));
        let nested = batch(&json!({"batch": [
            {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"deep": deep}},
        ]}))
        .expect("batch");
        let errors = &nested.rejected[0].errors;
        assert!(
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.field.starts_with("batch[0].traits")),
            "{errors:?}"
        );
        // A blank group is a missing one: one error, saying it is required.
        let blank = &outcome.rejected[2].errors;
        assert_eq!(fields(blank), vec!["batch[2].groupId"]);
        assert!(blank[0].message.starts_with("is required"), "{blank:?}");
        assert_eq!(
            fields(&outcome.rejected[0].errors),
            vec!["batch[0].groupId"]
        );
        assert_eq!(fields(&outcome.rejected[1].errors), vec!["batch[1].traits"]);
    }

    #[test]
    fn page_and_screen_calls_are_track_events_with_their_name_and_category() {
        let outcome = batch(&json!({"batch": [
            {"type": "page", "userId": "u1", "messageId": "p1", "name": "Pricing", "category": "Docs",
             "properties": {"url": "https://shop.example/pricing"}},
            {"type": "screen", "anonymousId": "d1", "messageId": "s1", "name": "Cart"},
            {"type": "page", "userId": "u1", "messageId": "p2", "properties": {"name": "Stale", "category": "Old", "path": "/"}, "name": "Pricing"},
        ]}))
        .expect("batch");
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        let [page, screen, named] = outcome.accepted.as_slice() else {
            panic!("{:?}", outcome.accepted)
        };
        assert_eq!(page.kind, Kind::Track);
        assert_eq!(page.event.as_deref(), Some("page_viewed"));
        assert_eq!(
            *page.properties,
            json!({"url": "https://shop.example/pricing", "name": "Pricing", "category": "Docs"})
        );
        assert_eq!(screen.event.as_deref(), Some("screen_viewed"));
        assert_eq!(screen.user_id, "anon:d1");
        assert_eq!(*screen.properties, json!({"name": "Cart"}));
        assert_eq!(
            *named.properties,
            json!({"name": "Pricing", "category": "Old", "path": "/"}),
            "the call's own name is the page's (Segment's spec), over a property of that name"
        );
    }

    #[test]
    fn an_alias_call_is_an_identify_of_the_user_with_the_previous_id_as_anonymous_id() {
        let body = json!({"userId": "ann", "previousId": "device-1", "messageId": "a1"});
        let e = parse_call(
            Call::Alias,
            body.to_string().as_bytes(),
            "2026-12-01T10:00:00Z".parse().expect("time"),
            &Limits::default(),
        )
        .expect("alias");
        assert_eq!(e.kind, Kind::Identify);
        assert_eq!(e.user_id, "ann");
        assert_eq!(e.anonymous_id.as_deref(), Some("device-1"));
        assert!(e.traits.is_empty());
        for (body, field) in [
            (json!({"userId": "ann"}), "previousId"),
            (json!({"previousId": "device-1"}), "userId"),
            (
                json!({"userId": "ann", "previousId": "anon:device-1"}),
                "previousId",
            ),
            (
                json!({"userId": "ann", "previousId": {"id": 1}}),
                "previousId",
            ),
        ] {
            let errors = parse_call(
                Call::Alias,
                body.to_string().as_bytes(),
                "2026-12-01T10:00:00Z".parse().expect("time"),
                &Limits::default(),
            )
            .expect_err("bad alias");
            assert_eq!(fields(&errors), vec![field], "{body}");
        }
    }

    /// An alias of a user to herself (`previousId` is `userId`) merges nothing, and is said:
    /// her own id is no anonymous id of hers.
    #[test]
    fn an_alias_of_a_user_to_herself_merges_nothing_and_says_so() {
        let at = "2026-12-01T10:00:00Z".parse().expect("time");
        for body in [
            json!({"userId": "ann", "previousId": "ann", "messageId": "a1"}),
            json!({"userId": 42, "previousId": "42", "messageId": "a1"}),
        ] {
            let (e, warnings) = parse_call_warned(
                Call::Alias,
                body.to_string().as_bytes(),
                at,
                &Limits::default(),
            )
            .expect("accepted");
            assert_eq!(e.anonymous_id, None, "{body}");
            assert_eq!(warnings.len(), 1, "{body}");
            assert_eq!(warnings[0].field, "previousId");
            assert!(
                warnings[0].message.starts_with("is userId itself")
                    && warnings[0].message.contains("left out: nothing is merged"),
                "{}",
                warnings[0].message
            );
            assert_eq!(e.refused.len(), 1);
            assert_eq!(e.refused[0].field, "previousId");
            // A script replays it as the API takes it.
            let strict = parse_call(
                Call::Alias,
                body.to_string().as_bytes(),
                at,
                &Limits::default(),
            )
            .expect("a script's self-alias");
            assert_eq!(strict.anonymous_id, None);
        }
        // In a batch, the warning names its place.
        let batch = json!({"batch": [
            {"type": "track", "userId": "ann", "event": "A"},
            {"type": "alias", "userId": "ann", "previousId": "ann"},
        ]});
        let out = parse_batch(batch.to_string().as_bytes(), at, &Limits::default()).expect("batch");
        assert_eq!(out.accepted.len(), 2);
        assert_eq!(out.accepted[1].anonymous_id, None);
        assert_eq!(out.warnings.len(), 1);
        assert_eq!(out.warnings[0].index, Some(1));
        assert_eq!(out.warnings[0].field, "batch[1].previousId");
    }

    #[test]
    fn whole_batch_problems_are_errors() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("not json", b"nope".to_vec(), "body"),
            ("array body", b"[]".to_vec(), "body"),
            ("no batch", br#"{"events": []}"#.to_vec(), "batch"),
            ("batch object", br#"{"batch": {}}"#.to_vec(), "batch"),
            ("context string", br#"{"batch": [], "context": "x"}"#.to_vec(), "context"),
            (
                "too big",
                json!({"batch": (0..20).map(|_| json!({"type": "track", "userId": "u", "event": "A", "properties": {"p": "x".repeat(30_000)}})).collect::<Vec<_>>()})
                    .to_string()
                    .into_bytes(),
                "body",
            ),
        ];
        for (name, body, field) in cases {
            let errors = parse_batch(&body, received(), &Limits::default()).expect_err(name);
            assert_eq!(fields(&errors), vec![field], "{name}");
        }
    }

    #[test]
    fn empty_batch_is_fine() {
        assert_eq!(batch(&json!({"batch": []})), Ok(BatchOutcome::default()));
    }

    /// A push token sent as Segment's mobile libraries send it (`context.device.token`) is the
    /// event's push device, its platform told by the device's type or its system's name; one
    /// whose platform cannot be told, or that is no token, is left out with a warning and a
    /// `not_kept` entry, the event applied; an event without one has none and says nothing.
    #[test]
    fn a_device_token_in_the_context_is_a_push_device() {
        const TOKEN: &str = "ff15bc0c20c4aa6cd50854ff165fd265c838e5405bfeb9571066395b8c9da449";
        let cases: Vec<(&str, Value, Option<&str>)> = vec![
            (
                "analytics-ios",
                json!({"device": {"type": "ios", "token": TOKEN}, "os": {"name": "iOS"}}),
                Some("apns"),
            ),
            (
                "type alone",
                json!({"device": {"type": "ios", "token": TOKEN}}),
                Some("apns"),
            ),
            (
                "Analytics-Kotlin",
                json!({"device": {"type": "android", "token": TOKEN}, "os": {"name": "Android"}}),
                Some("fcm"),
            ),
            (
                "system name alone",
                json!({"device": {"token": TOKEN}, "os": {"name": "iPadOS"}}),
                Some("apns"),
            ),
            (
                "system name when the type says nothing",
                json!({"device": {"type": "phone", "token": TOKEN}, "os": {"name": "Android"}}),
                Some("fcm"),
            ),
        ];
        for (case, context, platform) in cases {
            for call in [Call::Track, Call::Identify, Call::Screen, Call::Page] {
                let body = json!({"userId": "u1", "event": "app_opened", "name": "Home",
                    "context": context.clone()});
                let (event, warnings) = parse_call_warned(
                    call,
                    body.to_string().as_bytes(),
                    received(),
                    &Limits::default(),
                )
                .expect(case);
                assert_eq!(
                    event.push_device(),
                    platform.map(|p| (p, TOKEN)),
                    "{case} {call:?}"
                );
                assert!(warnings.is_empty(), "{case}: {warnings:?}");
                assert!(event.refused.is_empty(), "{case}");
            }
        }

        // No token, or null: no device, nothing said.
        for context in [
            json!({}),
            json!({"device": {"type": "ios"}, "os": {"name": "iOS"}}),
            json!({"device": {"type": "ios", "token": null}}),
        ] {
            let body = json!({"userId": "u1", "event": "e", "context": context});
            let (event, warnings) = parse_call_warned(
                Call::Track,
                body.to_string().as_bytes(),
                received(),
                &Limits::default(),
            )
            .expect("taken");
            assert_eq!(event.push_device(), None);
            assert!(
                warnings.is_empty() && event.refused.is_empty(),
                "{warnings:?}"
            );
        }

        // A platform that cannot be told, or no token: left out, said, the event taken; a
        // script's strict parsing takes it too (what a device says of itself).
        let left_out: Vec<(Value, &str)> = vec![
            (
                json!({"device": {"token": TOKEN}}),
                "(no context.device.type, no context.os.name)",
            ),
            (
                json!({"device": {"type": "web", "token": TOKEN}, "os": {"name": "Mac OS X"}}),
                r#"(context.device.type is "web", context.os.name is "Mac OS X")"#,
            ),
            (
                json!({"device": {"type": "ios", "token": ""}}),
                "must be a non-empty string",
            ),
            (
                json!({"device": {"type": "android", "token": 42}}),
                "must be a non-empty string",
            ),
        ];
        for (context, told) in left_out {
            let body = json!({"userId": "u1", "event": "e", "context": context});
            let (event, warnings) = parse_call_warned(
                Call::Track,
                body.to_string().as_bytes(),
                received(),
                &Limits::default(),
            )
            .expect("taken without the token");
            assert_eq!(event.push_device(), None);
            assert_eq!(places(&warnings), [(None, "context.device.token")]);
            assert!(
                warnings[0].message.contains(told)
                    && warnings[0].message.ends_with(
                        "left out: no push device is registered, the rest of the event is applied"
                    ),
                "{warnings:?}"
            );
            assert_eq!(event.refused.len(), 1);
            assert_eq!(event.refused[0].field, "context.device.token");
            assert_eq!(event.refused[0].value, "(not shown)");
            assert!(
                single(Kind::Track, &body).is_ok(),
                "strict parsing takes it"
            );
        }

        // In a batch, the batch's context names the device for each of its calls.
        let body = json!({
            "context": {"device": {"type": "android", "token": TOKEN}},
            "batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "track", "userId": "u1", "event": "B", "context": {"device": {"type": "web", "token": "t2"}}},
            ],
        });
        let outcome = batch(&body).expect("valid");
        assert_eq!(outcome.accepted[0].push_device(), Some(("fcm", TOKEN)));
        assert_eq!(outcome.accepted[1].push_device(), None);
        assert_eq!(
            places(&outcome.warnings),
            [(Some(1), "batch[1].context.device.token")]
        );
    }

    #[test]
    fn batch_context_is_merged_under_item_context() {
        let body = json!({
            "context": {"library": {"name": "analytics-go"}, "ip": "198.51.100.1"},
            "batch": [
                {"type": "track", "userId": "u1", "event": "A", "context": {"ip": "203.0.113.9"}},
                {"type": "track", "userId": "u2", "event": "A"},
            ],
        });
        let outcome = batch(&body).expect("valid");
        assert_eq!(outcome.accepted[0].context["ip"], json!("203.0.113.9"));
        assert_eq!(
            outcome.accepted[0].context["library"],
            json!({"name": "analytics-go"})
        );
        assert_eq!(outcome.accepted[1].context["ip"], json!("198.51.100.1"));
    }

    /// A time out of range taken from `originalTimestamp` is refused naming that field.
    #[test]
    fn an_original_timestamp_out_of_range_is_named() {
        for at in ["2025-04-01T12:00:00Z", "2025-06-01T15:00:00Z"] {
            let errors = single(
                Kind::Track,
                &json!({"userId": "u1", "event": "A", "originalTimestamp": at}),
            )
            .expect_err("out of range");
            assert_eq!(fields(&errors), ["originalTimestamp"], "{at}");
        }
    }

    /// A time written as RFC 3339 past the range of times Waymark reads (jiff's: the year 9999,
    /// or once taken to UTC) is refused as out of range, with the range, as other times out of
    /// range are (was: "is not an RFC 3339 date-time"); a `sentAt` so too, left out.
    #[test]
    fn a_time_past_the_range_read_says_out_of_range() {
        for (at, end, limit) in [
            (
                "9999-12-31T23:59:59Z",
                "after the latest",
                "at most 1 hour ahead",
            ),
            (
                "9999-12-30T23:00:00-05:00",
                "after the latest",
                "at most 1 hour ahead",
            ),
            (
                "-009999-01-01T00:00:00Z",
                "before the earliest",
                "at most 30 days old",
            ),
        ] {
            for field in ["timestamp", "originalTimestamp"] {
                let errors = single(
                    Kind::Track,
                    &json!({"userId": "u1", "event": "A", field: at}),
                )
                .expect_err("out of range");
                assert_eq!(fields(&errors), [field], "{at}");
                let message = &errors[0].message;
                assert!(
                    message.starts_with(&format!("is out of range: {end} time Waymark reads (it reads -009999-01-02T01:59:59Z to 9999-12-30T22:00:00Z)"))
                        && message.contains(limit),
                    "{at}: {message}"
                );
            }
        }
        // Still not RFC 3339: said as ever.
        for at in ["9999-13-01T00:00:00Z", "2025-01-31T12:00:00", "soon"] {
            let errors = single(
                Kind::Track,
                &json!({"userId": "u1", "event": "A", "timestamp": at}),
            )
            .expect_err("not a time");
            assert!(
                errors[0].message.starts_with("is not an RFC 3339"),
                "{at}: {errors:?}"
            );
        }
        let (_, warnings) = parse_call_warned(
            Call::Track,
            json!({"userId": "u1", "event": "A", "sentAt": "9999-12-31T23:59:59Z"})
                .to_string()
                .as_bytes(),
            received(),
            &Limits::default(),
        )
        .expect("accepted, sentAt left out");
        assert_eq!(places(&warnings), [(None, "sentAt")]);
        assert!(
            warnings[0]
                .message
                .starts_with("is out of range: after the latest"),
            "{warnings:?}"
        );
    }

    /// A time out of range because `sentAt` moved it says so: `sentAt` may be the wrong one.
    #[test]
    fn a_time_sent_at_moved_out_of_range_says_so() {
        let errors = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "timestamp": "2025-06-01T11:00:00Z",
                "sentAt": "2225-06-01T11:00:00Z"}),
        )
        .expect_err("out of range");
        assert_eq!(fields(&errors), ["timestamp"]);
        assert!(
            errors[0]
                .message
                .contains("once corrected by `sentAt` 2225-06-01T11:00:00Z")
                && errors[0].message.contains("check `sentAt` too"),
            "{}",
            errors[0].message
        );
        // Without sentAt, nothing of it.
        let errors = single(
            Kind::Track,
            &json!({"userId": "u1", "event": "A", "timestamp": "2024-06-01T11:00:00Z"}),
        )
        .expect_err("out of range");
        assert!(
            !errors[0].message.contains("sentAt"),
            "{}",
            errors[0].message
        );
    }

    /// A batch's context merged under an item's is cut to [`MAX_TRAITS`] keys once merged, with
    /// a warning for that item; an item's context nested too deep is refused.
    #[test]
    fn merged_context_is_size_checked_once() {
        let body = json!({
            "context": many_keys(200),
            "batch": [
                {"type": "track", "userId": "u1", "event": "A", "context": {"k1": 0, "x": 1}},
                {"type": "track", "userId": "u2", "event": "A", "context": Value::Object((0..100).map(|i| (format!("own{i}"), json!(i))).collect())},
                {"type": "track", "userId": "u3", "event": "A", "context": nested(MAX_DEPTH + 1)},
            ],
        });
        let outcome = batch(&body).expect("valid");
        assert_eq!(outcome.accepted.len(), 2);
        assert_eq!(outcome.accepted[0].context.len(), 201);
        assert_eq!(outcome.accepted[1].context.len(), MAX_TRAITS);
        assert_eq!(places(&outcome.warnings), [(Some(1), "batch[1].context")]);
        assert!(
            outcome.warnings[0]
                .message
                .contains("has 300 keys once merged with the batch's context"),
            "{:?}",
            outcome.warnings
        );
        let rejected: Vec<_> = outcome
            .rejected
            .iter()
            .map(|r| (r.index, fields(&r.errors)))
            .collect();
        assert_eq!(rejected, vec![(Some(2), vec!["batch[2].context"])]);

        // A batch's context cut on its own is said once in the answer, and in the timeline of
        // each user of the batch (each event's `refused`).
        let body = json!({
            "context": many_keys(300),
            "batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}},
            ],
        });
        let outcome = batch(&body).expect("valid");
        assert_eq!(outcome.accepted.len(), 2);
        assert_eq!(places(&outcome.warnings), [(None, "context")]);
        for event in &outcome.accepted {
            assert_eq!(event.context.len(), MAX_TRAITS);
            let refused: Vec<&str> = event.refused.iter().map(|r| r.field.as_str()).collect();
            assert_eq!(refused, ["context"], "{}", event.user_id);
            assert!(
                event.refused[0].reason.contains("has 300 keys")
                    && event.refused[0].reason.contains("44 keys were left out"),
                "{:?}",
                event.refused
            );
        }
    }

    #[test]
    fn event_round_trips_through_the_queue_format() {
        let event = single(
            Kind::Identify,
            &json!({"userId": "u1", "traits": {"plan": "pro"}, "timestamp": "2025-06-01T11:59:00Z"}),
        )
        .expect("valid");
        let wire = serde_json::to_string(&event).expect("serializes");
        assert!(wire.contains(r#""kind":"identify""#), "{wire}");
        let back: Event = serde_json::from_str(&wire).expect("deserializes");
        assert_eq!(back, event);
    }

    #[test]
    fn human_durations() {
        let cases = [
            (0, "0 seconds"),
            (1, "1 second"),
            (90, "1 minute 30 seconds"),
            (3_600, "1 hour"),
            (30 * 86_400, "30 days"),
            (86_400 + 7_200 + 5, "1 day 2 hours"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(SignedDuration::from_secs(secs)), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_single(Kind::Track, &body, received(), &Limits::default());
            let _ = parse_batch(&body, received(), &Limits::default());
        }

        #[test]
        fn arbitrary_strings_as_fields_never_panic(user in ".{0,300}", event in ".{0,300}", email in ".{0,40}", ts in ".{0,40}") {
            let body = json!({"userId": user, "event": event, "timestamp": ts, "traits": {"email": email, "timezone": ts}});
            let _ = single(Kind::Track, &body);
            let _ = single(Kind::Identify, &body);
        }
    }
}
