//! Webhook secrets (`{{ secrets.NAME }}`): the marker a secret renders to, the port that gives
//! the values, and their substitution into a call right before it goes out. A value is never put
//! into anything stored, logged or written to the outbox: only the sender's request holds it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

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
fn markers(text: &str) -> Vec<(std::ops::Range<usize>, &str)> {
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

/// The names of the secrets `text` holds markers for, in order (repeats kept).
pub fn names(text: &str) -> Vec<&str> {
    markers(text).into_iter().map(|(_, name)| name).collect()
}

/// `text` with each marker replaced by what `with` makes of its name.
fn replace<E>(text: &str, mut with: impl FnMut(&str) -> Result<String, E>) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (range, name) in markers(text) {
        out.push_str(&text[last..range.start]);
        out.push_str(&with(name)?);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// `text` as people read it (the outbox, `waymark why`): each marker shown as the
/// `{{ secrets.NAME }}` it was written as.
pub fn shown(text: &str) -> Cow<'_, str> {
    if !text.contains(OPEN) {
        return Cow::Borrowed(text);
    }
    let shown: Result<String, std::convert::Infallible> =
        replace(text, |name| Ok(format!("{{{{ {ROOT}.{name} }}}}")));
    Cow::Owned(shown.unwrap_or_else(|never| match never {}))
}

/// `text` with a harmless stand-in (`x`) for each marker, for the checks a rendered URL goes
/// through before its secrets are in it.
pub fn stood_in(text: &str) -> Cow<'_, str> {
    if !text.contains(OPEN) {
        return Cow::Borrowed(text);
    }
    let out: Result<String, std::convert::Infallible> = replace(text, |_| Ok("x".into()));
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
    /// saying which secret); values that could not be read now may be read on a retry.
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
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

/// The call of `url`, `headers` and `body` (as rendered, with markers) with each secret's value
/// from `secrets` put in, encoded for where it lands: percent-encoded in the URL, JSON-string
/// escaped in a JSON body (a marker there is always inside a string: the engine checked the
/// body is JSON with the markers in it), percent-encoded in a form body, as it is in another
/// body; a header takes it as it is, and refuses one with a line break. `where_set` says where
/// a missing secret is set, for the error.
pub async fn substitute(
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
    secrets: &dyn WebhookSecrets,
    where_set: &str,
) -> Result<Call, SubstituteError> {
    let mut wanted: Vec<&str> = names(url);
    for v in headers.values() {
        wanted.extend(names(v));
    }
    if let Some(b) = body {
        wanted.extend(names(b));
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
    let url = replace(url, |name| {
        Ok::<_, SubstituteError>(
            percent_encoding::utf8_percent_encode(value(name), URL_UNSAFE).to_string(),
        )
    })?;
    let mut sent = BTreeMap::new();
    for (k, v) in headers {
        let v = replace(v, |name| {
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
            replace(b, |name| {
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
        assert_eq!(names(&text), vec!["A", "B_2"]);
        assert_eq!(
            shown(&text),
            format!("Bearer {{{{ secrets.A }}}} and {{{{ secrets.B_2 }}}}{OPEN}nope{CLOSE}")
        );
        assert_eq!(stood_in(&text), format!("Bearer x and x{OPEN}nope{CLOSE}"));
        assert!(matches!(shown("plain"), Cow::Borrowed("plain")));
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
            &secrets,
            "set it",
        ))
        .expect("substituted");
        assert_eq!(
            call.url,
            "https://api.example.com/v1/sk%201?key=a%20%22quoted%22%20%5C%20value%2F%26%3D%C3%BC"
        );
        assert_eq!(call.headers["Authorization"], "Bearer sk 1");
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
