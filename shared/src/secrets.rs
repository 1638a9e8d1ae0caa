//! Webhook secrets (`{{ secrets.NAME }}`): the marker a secret renders to, the port that gives
//! the values, and their substitution into a call right before it goes out. A value is never put
//! into anything stored, logged or written to the outbox: only the sender's request holds it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::{Duration, Instant};

/// Opens a secret's marker in a rendered webhook: a private-use character, then the name.
pub const OPEN: char = '\u{E000}';
/// Closes a secret's marker.
pub const CLOSE: char = '\u{E001}';

/// The variable a webhook's `url`, `headers` and `body` read secrets from.
pub const ROOT: &str = "secrets";

/// The environment variable prefix `waymark dev` and `waymark simulate` read a secret from
/// (`WAYMARK_SECRET_REWARDS_KEY` for `{{ secrets.REWARDS_KEY }}`).
pub const ENV_PREFIX: &str = "WAYMARK_SECRET_";

/// How a secret's name is written, for the messages that refuse one.
pub const NAME_ADVICE: &str =
    "a secret's name is capital letters, digits and `_`, like `{{ secrets.REWARDS_API_KEY }}`";

/// Why `secrets` is refused outside a webhook's `url`, `headers` and `body`.
pub const ONLY_IN_WEBHOOKS: &str = "`secrets` is read only in a webhook's `url` (after its host), `headers` and `body`, where the sender puts the value in right before the call: a message, a condition or a profile update would store it or show it to the user";

/// Whether `name` is a secret's name: `[A-Z0-9_]+`, at most 128 characters (as an environment
/// variable's suffix and a JSON key both carry it).
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The marker that stands for the secret `name` in a rendered webhook.
pub fn marker(name: &str) -> String {
    format!("{OPEN}{name}{CLOSE}")
}

/// The marker-bearing pieces of `text`: each marker's byte range and name, in order. A marker
/// is `OPEN`, a name ([`is_name`]) and `CLOSE`; any other use of `OPEN` is not one.
fn all_markers(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(OPEN).map(|i| i + from) {
        let name_start = i + OPEN.len_utf8();
        match text[name_start..].find(CLOSE) {
            Some(len) if is_name(&text[name_start..name_start + len]) => {
                let end = name_start + len + CLOSE.len_utf8();
                out.push((i..end, &text[name_start..name_start + len]));
                from = end;
            }
            _ => from = name_start,
        }
    }
    out
}

/// The names among `read` (the secrets a call's template reads, see
/// [`crate::engine::Content::Webhook`]) that `text` holds markers for, in order (repeats kept).
pub fn names<'t, S: AsRef<str>>(text: &'t str, read: &[S]) -> Vec<&'t str> {
    markers(text, read)
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// The markers in `text` of the secrets `read` names: their byte ranges and names. Text that
/// looks like the marker of another name is not one.
fn markers<'t, S: AsRef<str>>(text: &'t str, read: &[S]) -> Vec<(std::ops::Range<usize>, &'t str)> {
    if read.is_empty() || !text.contains(OPEN) {
        return Vec::new();
    }
    all_markers(text)
        .into_iter()
        .filter(|(_, name)| read.iter().any(|r| r.as_ref() == *name))
        .collect()
}

/// `text` with each marker of a secret `read` names replaced by what `with` makes of its name.
fn replace<E, S: AsRef<str>>(
    text: &str,
    read: &[S],
    mut with: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (range, name) in markers(text, read) {
        out.push_str(&text[last..range.start]);
        out.push_str(&with(name)?);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// `text` as people read it (the outbox, `waymark why`): each marker of a secret `read` names
/// shown as the `{{ secrets.NAME }}` it was written as.
pub fn shown<'t, S: AsRef<str>>(text: &'t str, read: &[S]) -> Cow<'t, str> {
    if markers(text, read).is_empty() {
        return Cow::Borrowed(text);
    }
    let shown: Result<String, std::convert::Infallible> =
        replace(text, read, |name| Ok(format!("{{{{ {ROOT}.{name} }}}}")));
    Cow::Owned(shown.unwrap_or_else(|never| match never {}))
}

/// `text` with a harmless stand-in (`x`) for each marker of a secret `read` names, for the
/// checks a rendered URL goes through before its secrets are in it.
pub fn stood_in<'t, S: AsRef<str>>(text: &'t str, read: &[S]) -> Cow<'t, str> {
    if markers(text, read).is_empty() {
        return Cow::Borrowed(text);
    }
    let out: Result<String, std::convert::Infallible> = replace(text, read, |_| Ok("x".into()));
    Cow::Owned(out.unwrap_or_else(|never| match never {}))
}

// ---------------------------------------------------------------------------------------------
// The port

/// Why a secret's value could not be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretsError {
    /// Where the values are kept could not be read now (SSM unreachable, throttled): a retry
    /// may pass.
    #[error("webhook secrets could not be read: {0}")]
    Unavailable(String),
}

/// Gives webhook secrets' values by name; `None` for a name it has no value for.
#[async_trait]
pub trait WebhookSecrets: Send + Sync {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretsError>;
}

/// Secrets held in memory: `waymark dev` and `waymark simulate` read them from the environment
/// (`WAYMARK_SECRET_<NAME>`), tests give them directly.
#[derive(Clone, Default)]
pub struct LocalSecrets {
    values: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for LocalSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalSecrets {
    /// The given names and values.
    pub fn new<N: Into<String>, V: Into<String>>(values: impl IntoIterator<Item = (N, V)>) -> Self {
        LocalSecrets {
            values: Arc::new(
                values
                    .into_iter()
                    .map(|(n, v)| (n.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The process's `WAYMARK_SECRET_<NAME>` variables.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// The `WAYMARK_SECRET_<NAME>` variables among `vars` (a name [`is_name`] refuses is left
    /// out: no template could read it).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        LocalSecrets::new(vars.into_iter().filter_map(|(k, v)| {
            let name = k.strip_prefix(ENV_PREFIX)?;
            is_name(name).then(|| (name.to_string(), v))
        }))
    }

    /// The names it has values for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

#[async_trait]
impl WebhookSecrets for LocalSecrets {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretsError> {
        Ok(self.values.get(name).cloned())
    }
}

// ---------------------------------------------------------------------------------------------
// Values read from one place, kept for a while

/// Reads every secret's value at once from where a deployment keeps them (the AWS adapter's
/// SSM parameter): `None` when that place does not exist (no secret is set yet).
#[async_trait]
pub trait ReadAll: Send + Sync {
    async fn read_all(&self) -> Result<Option<BTreeMap<String, String>>, SecretsError>;
}

/// How long the values read are used before they are read again (a rotated value takes
/// effect within it).
pub const SECRETS_TTL: Duration = Duration::from_secs(5 * 60);

/// How soon what was *not* found is looked for again: a name the values read lack (an operator
/// may have added it since) or the whole place, not there yet; and, after a failed read, how
/// long the values read before serve before the next try.
pub const RECHECK_AFTER: Duration = Duration::from_secs(30);

/// The values [`ReadAll`] gives, read when a call first needs one, again after
/// [`SECRETS_TTL`], and before a name they lack is said to have no value when they are older
/// than [`RECHECK_AFTER`]. One read at a time: a caller that needs a read waits for the one
/// under way (one whose value is merely due for a re-read takes the value it has instead),
/// and a caller whose value is fresh waits for none. A failed read keeps the values read
/// before, and is not tried again for [`RECHECK_AFTER`].
pub struct CachedSecrets<R> {
    source: R,
    state: std::sync::Mutex<CacheState>,
    /// Held by the one read under way.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct CacheState {
    read: Option<LastRead>,
    /// No read before this (a read failed); and why it failed.
    retry_at: Option<Instant>,
    failed: Option<SecretsError>,
}

/// The values read last, when, and whether their place existed then.
struct LastRead {
    values: Arc<BTreeMap<String, String>>,
    at: Instant,
    found: bool,
}

impl<R> std::fmt::Debug for CachedSecrets<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSecrets").finish_non_exhaustive()
    }
}

/// What the values held say of a name: an answer, or that a read is needed first (with the
/// value held, if any, served while another caller reads).
enum Held {
    Answer(Result<Option<String>, SecretsError>),
    ReadFirst(Option<String>),
}

impl<R: ReadAll> CachedSecrets<R> {
    pub fn new(source: R) -> Self {
        CachedSecrets {
            source,
            state: std::sync::Mutex::new(CacheState::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The place the values are read from.
    pub fn source(&self) -> &R {
        &self.source
    }

    fn held(&self, name: &str, now: Instant) -> Held {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let backing_off = state.retry_at.is_some_and(|at| now < at);
        let Some(LastRead { values, at, found }) = &state.read else {
            return match (&state.failed, backing_off) {
                (Some(e), true) => Held::Answer(Err(e.clone())),
                _ => Held::ReadFirst(None),
            };
        };
        let age = now.saturating_duration_since(*at);
        let value = values.get(name).cloned();
        let ttl = if *found { SECRETS_TTL } else { RECHECK_AFTER };
        let due = age >= ttl || (value.is_none() && age >= RECHECK_AFTER);
        if !due || backing_off {
            Held::Answer(Ok(value))
        } else {
            Held::ReadFirst(value)
        }
    }
}

#[async_trait]
impl<R: ReadAll> WebhookSecrets for CachedSecrets<R> {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretsError> {
        let held = match self.held(name, Instant::now()) {
            Held::Answer(a) => return a,
            Held::ReadFirst(held) => held,
        };
        // A value held while another caller reads: that one, not a wait on the read.
        let _reading = match (held, self.reading.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(value), Err(_)) => return Ok(Some(value)),
            (None, Err(_)) => self.reading.lock().await,
        };
        // The read this caller waited for may have settled it.
        if let Held::Answer(a) = self.held(name, Instant::now()) {
            return a;
        }
        let read = self.source.read_all().await;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match read {
            Ok(values) => {
                let found = values.is_some();
                let values = Arc::new(values.unwrap_or_default());
                let value = values.get(name).cloned();
                *state = CacheState {
                    read: Some(LastRead {
                        values,
                        at: Instant::now(),
                        found,
                    }),
                    retry_at: None,
                    failed: None,
                };
                Ok(value)
            }
            Err(e) => {
                state.retry_at = Some(Instant::now() + RECHECK_AFTER);
                state.failed = Some(e.clone());
                match &state.read {
                    // The values read before serve until a read passes.
                    Some(LastRead { values, .. }) => {
                        tracing::warn!(error = %e, "webhook secrets not read again; the values read before are used");
                        Ok(values.get(name).cloned())
                    }
                    None => Err(e),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Substitution

/// Why a call's secrets could not be put in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubstituteError {
    /// No value for a secret the call reads: the call does not go out.
    #[error("the secret `{name}` has no value: {where_set}")]
    Missing { name: String, where_set: String },
    /// A value the part it lands in cannot carry (a line break in a header).
    #[error("the secret `{name}` cannot go in {part}: {why}")]
    Unusable {
        name: String,
        part: String,
        why: String,
    },
    #[error(transparent)]
    Unavailable(#[from] SecretsError),
}

impl From<SubstituteError> for crate::provider::SendError {
    /// A missing or unfit secret refuses this call for good (the user's webhook is skipped,
    /// saying which secret), as `waymark dev` and `waymark simulate` have it: their values are
    /// the process's environment, which no retry changes; values that could not be read now
    /// may be read on a retry. (The deployed sender retries a missing secret too: its values
    /// are an SSM parameter an operator may add it to.)
    fn from(e: SubstituteError) -> Self {
        match e {
            SubstituteError::Unavailable(_) => {
                crate::provider::SendError::Retryable(format!("webhook: {e}"))
            }
            _ => crate::provider::SendError::Permanent(format!("webhook: {e}")),
        }
    }
}

/// Every character but the unreserved ones (`A-Z a-z 0-9 - . _ ~`), percent-encoded: safe in a
/// URL's path and query alike, and in a form body.
const URL_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A webhook call as the sender makes it, its secrets put in.
#[derive(Clone, PartialEq)]
pub struct Call {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

/// Shows the header names and the body's length: the URL, the headers' values and the body
/// hold the secrets' values.
impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("url", &"(not shown)")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(String::len))
            .finish()
    }
}

/// The call of `url`, `headers` and `body` (as rendered, with markers) with each secret's value
/// from `secrets` put in, encoded for where it lands: percent-encoded in the URL, JSON-string
/// escaped in a JSON body (a marker there is always inside a string: the engine checked the
/// body is JSON with the markers in it), percent-encoded in a form body, as it is in another
/// body; a header takes it as it is, and refuses one with a line break. Only the markers of
/// the secrets `read` names (those the journey's template reads) are put in: any other text
/// goes out as it is. `where_set` says where a missing secret is set, for the error.
pub async fn substitute(
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
    read: &[String],
    secrets: &dyn WebhookSecrets,
    where_set: &str,
) -> Result<Call, SubstituteError> {
    let mut wanted: Vec<&str> = names(url, read);
    for v in headers.values() {
        wanted.extend(names(v, read));
    }
    if let Some(b) = body {
        wanted.extend(names(b, read));
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mut values = BTreeMap::new();
    for name in wanted {
        match secrets.secret(name).await? {
            Some(v) => {
                values.insert(name, v);
            }
            None => {
                return Err(SubstituteError::Missing {
                    name: name.to_string(),
                    where_set: where_set.to_string(),
                })
            }
        }
    }
    let value = |name: &str| -> &str { values.get(name).map_or("", String::as_str) };
    let url = replace(url, read, |name| {
        Ok::<_, SubstituteError>(
            percent_encoding::utf8_percent_encode(value(name), URL_UNSAFE).to_string(),
        )
    })?;
    let mut sent = BTreeMap::new();
    for (k, v) in headers {
        let v = replace(v, read, |name| {
            let value = value(name);
            match crate::webhook::header_value_problem(value) {
                Some(_) => Err(SubstituteError::Unusable {
                    name: name.to_string(),
                    part: format!("the header `{k}`"),
                    why: "its value has a line break or another control character, which no header value carries".into(),
                }),
                None => Ok(value.to_string()),
            }
        })?;
        sent.insert(k.clone(), v);
    }
    let media = crate::webhook::body_media(headers);
    let body = body
        .map(|b| {
            replace(b, read, |name| {
                let value = value(name);
                Ok::<_, SubstituteError>(match media {
                    crate::webhook::BodyMedia::Json => {
                        let quoted = serde_json::Value::String(value.to_string()).to_string();
                        quoted[1..quoted.len() - 1].to_string()
                    }
                    crate::webhook::BodyMedia::Form => {
                        percent_encoding::utf8_percent_encode(value, URL_UNSAFE).to_string()
                    }
                    crate::webhook::BodyMedia::Other => value.to_string(),
                })
            })
        })
        .transpose()?;
    Ok(Call {
        url,
        headers: sent,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_name_is_capitals_digits_and_underscores() {
        for good in ["API_KEY", "K", "REWARDS_2", "_X"] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "api_key", "API-KEY", "API KEY", "KÉ", &"A".repeat(129)] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn markers_are_found_shown_and_stood_in_for() {
        let text = format!(
            "Bearer {} and {}{OPEN}nope{CLOSE}",
            marker("A"),
            marker("B_2")
        );
        let read = ["A", "B_2"];
        assert_eq!(names(&text, &read), vec!["A", "B_2"]);
        assert_eq!(
            shown(&text, &read),
            format!("Bearer {{{{ secrets.A }}}} and {{{{ secrets.B_2 }}}}{OPEN}nope{CLOSE}")
        );
        assert_eq!(
            stood_in(&text, &read),
            format!("Bearer x and x{OPEN}nope{CLOSE}")
        );
        assert!(matches!(shown("plain", &read), Cow::Borrowed("plain")));
        // The marker of a secret the call's template does not read is text.
        assert_eq!(names(&text, &["B_2"]), vec!["B_2"]);
        assert_eq!(
            shown(&text, &["B_2"]),
            format!(
                "Bearer {} and {{{{ secrets.B_2 }}}}{OPEN}nope{CLOSE}",
                marker("A")
            )
        );
        assert!(matches!(shown(&text, &[] as &[&str]), Cow::Borrowed(_)));
    }

    #[test]
    fn the_local_adapter_reads_waymark_secret_variables() {
        let secrets = LocalSecrets::from_vars(
            [
                ("WAYMARK_SECRET_REWARDS_KEY", "sk_live_1"),
                ("WAYMARK_SECRET_lower", "no"),
                ("HOME", "/root"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(secrets.names().collect::<Vec<_>>(), vec!["REWARDS_KEY"]);
        let got = futures_lite(secrets.secret("REWARDS_KEY"));
        assert_eq!(got, Ok(Some("sk_live_1".to_string())));
        assert_eq!(futures_lite(secrets.secret("HOME")), Ok(None));
        assert!(!format!("{secrets:?}").contains("sk_live_1"));
    }

    /// One read's answer: the names and values, `None` for no place.
    type Answer = Result<Option<Vec<(&'static str, &'static str)>>, SecretsError>;

    /// A place whose reads give `script`'s answers in turn (the last one again after), each
    /// read taking a second.
    struct Scripted {
        script: std::sync::Mutex<std::collections::VecDeque<Answer>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = Answer>) -> CachedSecrets<Scripted> {
            CachedSecrets::new(Scripted {
                script: std::sync::Mutex::new(script.into_iter().collect()),
                reads: Default::default(),
            })
        }
    }

    #[async_trait]
    impl ReadAll for Scripted {
        async fn read_all(&self) -> Result<Option<BTreeMap<String, String>>, SecretsError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut script = self.script.lock().expect("script");
            let next = if script.len() > 1 {
                script.pop_front()
            } else {
                script.front().cloned()
            };
            next.expect("an answer").map(|v| {
                v.map(|v| {
                    v.into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
            })
        }
    }

    fn reads(s: &CachedSecrets<Scripted>) -> usize {
        s.source().reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn after(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    fn down() -> SecretsError {
        SecretsError::Unavailable("throttled".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_secret_added_after_a_read_is_found_within_30_seconds() {
        // The place does not exist yet, then holds A, then A and K.
        let s = Scripted::new([
            Ok(None),
            Ok(Some(vec![("A", "a")])),
            Ok(Some(vec![("A", "a"), ("K", "k")])),
        ]);
        assert_eq!(s.secret("A").await, Ok(None));
        after(10).await;
        assert_eq!(s.secret("A").await, Ok(None), "not looked for again yet");
        assert_eq!(reads(&s), 1);
        after(25).await;
        assert_eq!(s.secret("A").await, Ok(Some("a".into())));
        assert_eq!(reads(&s), 2);
        // K, missing from a read 10 seconds old, is not read for again yet; at 30 it is.
        after(10).await;
        assert_eq!(s.secret("K").await, Ok(None));
        assert_eq!(reads(&s), 2);
        after(25).await;
        assert_eq!(s.secret("K").await, Ok(Some("k".into())));
        assert_eq!(reads(&s), 3);
        // A value held is used for 5 minutes, then read again.
        after(60).await;
        assert_eq!(s.secret("A").await, Ok(Some("a".into())));
        assert_eq!(reads(&s), 3);
        after(SECRETS_TTL.as_secs()).await;
        assert_eq!(s.secret("A").await, Ok(Some("a".into())));
        assert_eq!(reads(&s), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_keeps_the_values_and_is_not_tried_again_for_30_seconds() {
        let s = Scripted::new([
            Ok(Some(vec![("A", "old")])),
            Err(down()),
            Ok(Some(vec![("A", "new")])),
        ]);
        assert_eq!(s.secret("A").await, Ok(Some("old".into())));
        after(SECRETS_TTL.as_secs()).await;
        assert_eq!(
            s.secret("A").await,
            Ok(Some("old".into())),
            "the read failed"
        );
        assert_eq!(reads(&s), 2);
        after(10).await;
        for _ in 0..5 {
            assert_eq!(s.secret("A").await, Ok(Some("old".into())));
            // Nor for a name they lack.
            assert_eq!(s.secret("B").await, Ok(None));
        }
        assert_eq!(reads(&s), 2, "no read while it backs off");
        after(25).await;
        assert_eq!(s.secret("A").await, Ok(Some("new".into())));
        assert_eq!(reads(&s), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_read_that_fails_fails_the_call_and_backs_off() {
        let s = Scripted::new([Err(down()), Ok(Some(vec![("A", "a")]))]);
        assert_eq!(s.secret("A").await, Err(down()));
        assert_eq!(s.secret("A").await, Err(down()));
        assert_eq!(reads(&s), 1);
        after(31).await;
        assert_eq!(s.secret("A").await, Ok(Some("a".into())));
        assert_eq!(reads(&s), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn callers_share_one_read_and_a_held_value_waits_for_none() {
        let s = Arc::new(Scripted::new([Ok(Some(vec![("A", "a")]))]));
        let calls = (0..4).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.secret("A").await })
        });
        for call in calls.collect::<Vec<_>>() {
            assert_eq!(call.await.expect("joined"), Ok(Some("a".into())));
        }
        assert_eq!(reads(&s), 1, "one read for the four");
        // Due again: one caller reads (a second), the others take the value held meanwhile.
        after(SECRETS_TTL.as_secs()).await;
        let reader = {
            let s = s.clone();
            tokio::spawn(async move { s.secret("A").await })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        assert_eq!(s.secret("A").await, Ok(Some("a".into())));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "did not wait on the read"
        );
        assert_eq!(reader.await.expect("joined"), Ok(Some("a".into())));
        assert_eq!(reads(&s), 2);
    }

    /// Runs a future that does not wait on anything.
    fn futures_lite<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn headers(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn read(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_the_secrets_the_template_reads_are_put_in() {
        let secrets = LocalSecrets::new([("KEY", "sk_live_1")]);
        // A call rendered with a marker in its data (by an engine that let data hold one) and
        // no secret of its template's: the text goes out as it is, no value in it.
        let url = format!("https://api.example.com/?q={}", marker("KEY"));
        for read in [read(&[]), read(&["OTHER"])] {
            let call = futures_lite(substitute(
                &url,
                &headers(&[("X-Name", marker("KEY"))]),
                Some(&marker("KEY")),
                &read,
                &secrets,
                "set it",
            ))
            .expect("nothing to put in");
            assert_eq!(call.url, url, "{read:?}");
            assert_eq!(call.headers["X-Name"], marker("KEY"));
            assert_eq!(call.body, Some(marker("KEY")));
        }
        let call = futures_lite(substitute(
            &url,
            &BTreeMap::new(),
            None,
            &read(&["KEY"]),
            &secrets,
            "set it",
        ))
        .expect("put in");
        assert_eq!(call.url, "https://api.example.com/?q=sk_live_1");
    }

    #[test]
    fn each_value_is_encoded_for_where_it_lands() {
        let secrets = LocalSecrets::new([("TOKEN", r#"a "quoted" \ value/&=ü"#), ("KEY", "sk 1")]);
        let url = format!(
            "https://api.example.com/v1/{}?key={}",
            marker("KEY"),
            marker("TOKEN")
        );
        let body = format!(r#"{{"token": "{}", "n": 1}}"#, marker("TOKEN"));
        let call = futures_lite(substitute(
            &url,
            &headers(&[("Authorization", format!("Bearer {}", marker("KEY")))]),
            Some(&body),
            &read(&["KEY", "TOKEN"]),
            &secrets,
            "set it",
        ))
        .expect("substituted");
        assert_eq!(
            call.url,
            "https://api.example.com/v1/sk%201?key=a%20%22quoted%22%20%5C%20value%2F%26%3D%C3%BC"
        );
        assert_eq!(call.headers["Authorization"], "Bearer sk 1");
        // Its Debug shows no value.
        let shown = format!("{call:?}");
        assert!(
            !shown.contains("sk 1") && !shown.contains("quoted"),
            "{shown}"
        );
        let json: serde_json::Value =
            serde_json::from_str(call.body.as_deref().expect("body")).expect("JSON");
        assert_eq!(json["token"], r#"a "quoted" \ value/&=ü"#);
        // A form body is percent-encoded; a text body takes the value as it is.
        for (media, want) in [
            ("application/x-www-form-urlencoded", "k=sk%201"),
            ("text/plain", "k=sk 1"),
        ] {
            let call = futures_lite(substitute(
                "https://api.example.com/",
                &headers(&[("Content-Type", media.to_string())]),
                Some(&format!("k={}", marker("KEY"))),
                &read(&["KEY"]),
                &secrets,
                "set it",
            ))
            .expect("substituted");
            assert_eq!(call.body.as_deref(), Some(want), "{media}");
        }
    }

    #[test]
    fn a_secret_missing_or_unfit_for_its_header_stops_the_call() {
        let secrets = LocalSecrets::new([("BROKEN", "a\r\nX-Evil: 1")]);
        let err = futures_lite(substitute(
            "https://api.example.com/",
            &headers(&[("X-Key", marker("BROKEN"))]),
            None,
            &read(&["BROKEN"]),
            &secrets,
            "set it",
        ))
        .expect_err("a line break");
        assert!(
            matches!(&err, SubstituteError::Unusable { name, .. } if name == "BROKEN"),
            "{err}"
        );
        assert!(!err.to_string().contains("X-Evil"), "{err}");
        let err = futures_lite(substitute(
            &format!("https://api.example.com/?k={}", marker("GONE")),
            &BTreeMap::new(),
            None,
            &read(&["GONE"]),
            &secrets,
            "set WAYMARK_SECRET_GONE",
        ))
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "the secret `GONE` has no value: set WAYMARK_SECRET_GONE"
        );
    }
}
