//! The HTTP API, as plain `http` types: the same handler serves API Gateway (intake Lambda) and
//! `waymark dev`. Segment-compatible intake, read APIs for admins, inbox and unsubscribe.

use crate::counter::{Counter, StepCounter, Took};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{Keys, Role, Signer};
use crate::dsl;
use crate::event::{self, FieldError, Limits};
use crate::journey::{Channel, Journey, JourneyStatus};
use crate::queue::{Message, Outbound, QueueError, QueueName};
use crate::runtime::{InboxMark, RunError, Runtime};

/// What a user id's path segment percent-encodes: all but unreserved characters (RFC 3986).
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every route the API answers (`template.yaml` gives API Gateway each of them; a test checks
/// the two agree), as the 404 lists them.
pub const ROUTES: &[&str] = &[
    "POST /v1/track",
    "POST /v1/identify",
    "POST /v1/page",
    "POST /v1/screen",
    "POST /v1/alias",
    "POST /v1/group",
    "POST /v1/batch",
    // Segment's browser library (analytics.js) posts to one letter a call.
    "POST /v1/t",
    "POST /v1/i",
    "POST /v1/p",
    "POST /v1/s",
    "POST /v1/a",
    "POST /v1/g",
    "POST /v1/b",
    // Segment's Ruby and Java libraries (and its older Android and iOS ones) post batches here.
    "POST /v1/import",
    "GET /v1/users/{userId}",
    "DELETE /v1/users/{userId}",
    "GET /v1/users/{userId}/inbox",
    "POST /v1/users/{userId}/inbox/{id}/read",
    // Only to say that a message id's `#` must be encoded (a raw one cuts the path here).
    "POST /v1/users/{userId}/inbox/{id}",
    "DELETE /v1/users/{userId}/inbox/{id}",
    "GET /v1/journeys",
    "GET /v1/journeys/{id}/stats",
    "PUT /v1/journeys/{id}",
    "GET /v1/unsubscribe",
    "POST /v1/unsubscribe",
];

pub struct Api {
    pub runtime: Arc<Runtime>,
    pub keys: Keys,
    pub signer: Arc<Signer>,
    pub limits: Limits,
}

fn reply(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// The page an unsubscribe link opens: a button that posts back to the same address.
const UNSUBSCRIBE_ASK: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title></head><body><form method=\"post\"><p>Stop receiving these emails?</p><button type=\"submit\">Unsubscribe</button></form></body></html>";

/// The page after the button.
const UNSUBSCRIBED: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribed</title></head><body><p>You are unsubscribed: you will not get these emails again.</p></body></html>";

/// What a topic journey's unsubscribe link asks: to stop that topic (the first button, and
/// the mailbox provider's one-click POST), or all email (the second, which posts `all=email`).
fn topic_ask(name: &str) -> String {
    let name = html_text(name);
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title></head><body><form method=\"post\"><p>Stop receiving {name}?</p><p>You will still get our other emails.</p><button type=\"submit\">Unsubscribe from {name}</button> <button type=\"submit\" name=\"all\" value=\"email\">Unsubscribe from all email</button></form></body></html>"
    )
}

/// The page after a topic's button.
fn topic_done(name: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribed</title></head><body><p>You are unsubscribed from {}: you will not get these emails again. Our other emails still come.</p></body></html>",
        html_text(name)
    )
}

/// `text` safe inside an HTML element (a topic's name is the operator's, but still text).
fn html_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(html: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(html.into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// Whether an unsubscribe POST asks to stop all email (the page's second button, a form field
/// `all=email`, or the same in the address) rather than the link's topic alone. A mailbox
/// provider's one-click POST sends `List-Unsubscribe=One-Click`: the topic.
fn wants_all_email(req: &Request<Bytes>) -> bool {
    let form = std::str::from_utf8(req.body()).unwrap_or_default();
    query_param(req.uri(), "all").as_deref() == Some("email")
        || form.split('&').any(|kv| kv.trim() == "all=email")
}

/// Whether the request comes from a browser (a person pressed the page's button).
fn wants_html(req: &Request<Bytes>) -> bool {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// A refused request: each field and what was wrong (`errors`), and the same in one line as
/// `code` and `message`, the fields Segment's libraries log from an error answer.
fn field_errors(status: StatusCode, errors: &[FieldError]) -> Response<Bytes> {
    reply(
        status,
        &json!({
            "error": "invalid request",
            "code": "invalid_request",
            "message": summary(errors),
            "errors": errors,
        }),
    )
}

/// `field: what was wrong` for each error, joined: one line for a log.
fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// [`summary`] of a batch's first problems of `total` (a batch may hold thousands).
fn summary_of<'a>(errors: impl Iterator<Item = &'a FieldError>, total: usize) -> String {
    let mut said: Vec<String> = errors
        .take(SUMMARISED_AT_MOST)
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    if total > said.len() {
        said.push(format!("and {} more", total - said.len()));
    }
    said.join("; ")
}

/// How many problems a batch's one-line `message` names (the rest are counted).
const SUMMARISED_AT_MOST: usize = 10;
/// How many rejected events, and how many warnings, a batch's answer lists (the rest are
/// counted): an answer stays small, whatever a request holds (a batch of 170,000 bad items
/// made a 36 MB answer, more than a Lambda function may return).
const LISTED_AT_MOST: usize = 100;

/// An answer that is no field's fault (no such route, user or journey; a method the route does
/// not take): `error`, with `code` and `message` as every other refusal has them.
fn refusal(code: &str, message: String) -> serde_json::Value {
    json!({"error": message, "code": code, "message": message})
}

/// The `401`'s body: what a caller must send, and nothing about the keys it sent.
pub const UNAUTHORIZED: &str = r#"{"error":"unauthorized","code":"unauthorized","message":"send a key this server knows: the write key (the admin key for reads and the admin calls) as the Basic-auth user name or as a Bearer token, or for an inbox the user's token in X-Waymark-User-Token"}"#;

fn unauthorized() -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(UNAUTHORIZED.as_bytes()));
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// What the page an unsubscribe link opens says when its token is not one this server signed
/// (most often a link cut when it was copied).
const BAD_UNSUBSCRIBE_LINK: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe link not valid</title></head><body><p>This unsubscribe link is not complete or not valid: it may have been cut when it was copied. Open it again from the email, the whole link, or use the unsubscribe link in the next email.</p></body></html>";

/// The `401` for an unsubscribe link whose token this server did not sign: a page for the
/// person who opened it (`html`), else (a mailbox provider's one-click POST) JSON naming
/// `token`. Neither says more of the token than that it is not valid.
fn bad_unsubscribe_link(html: bool) -> Response<Bytes> {
    const WHY: &str = "is not a valid unsubscribe token (the link may have been cut when it was copied): use the whole link from the email";
    let mut r = if html {
        page(BAD_UNSUBSCRIBE_LINK)
    } else {
        reply(
            StatusCode::UNAUTHORIZED,
            &json!({
                "error": "unauthorized",
                "code": "unauthorized",
                "message": format!("token: {WHY}"),
                "errors": [{"field": "token", "message": WHY}],
            }),
        )
    };
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    r
}

/// The 400 for a path's `userId` no user is kept under (see [`event::unkept_user_id`]), naming
/// the field; `None` for one that may be someone's.
fn unkept_user(user: &str) -> Option<Response<Bytes>> {
    let why = event::unkept_user_id(user)?;
    Some(field_errors(
        StatusCode::BAD_REQUEST,
        &[FieldError::new("userId", why)],
    ))
}

fn internal(e: &RunError) -> Response<Bytes> {
    tracing::error!(error = %e, "request failed");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "error": "temporarily unavailable, retry" }),
    )
}

/// An erasure that could not be made now: a send of hers under way is said as such (an
/// expected answer, not a fault: `code` `send_under_way`, `Retry-After: 60`); anything else is
/// [`internal`].
fn erase_failed(e: &RunError) -> Response<Bytes> {
    match e {
        RunError::Retry(why) if why == crate::erase::SEND_UNDER_WAY => {
            tracing::info!("erasure asked again later: a send of the user's is under way");
            let mut r = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &refusal("send_under_way", why.clone()),
            );
            r.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("60"),
            );
            r
        }
        e => internal(e),
    }
}

/// Per-step figures for `GET /v1/journeys/{id}/stats` (also how `waymark stats` reads them:
/// what an older server leaves out is empty).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct StepStats {
    pub id: String,
    pub entered: i64,
    pub waiting: i64,
    #[serde(default)]
    pub sent: BTreeMap<String, i64>,
    #[serde(default)]
    pub skipped: BTreeMap<String, i64>,
    pub exited: i64,
    /// Conversions credited to this step: the goal events whose last message before them was
    /// this step's (last touch). Absent from older servers: 0.
    #[serde(default)]
    pub converted: i64,
    /// A split's paths by name: who took each and who of them converted (an A/B test's
    /// result). Every path of the split is listed, taken or not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub paths: BTreeMap<String, PathStats>,
    /// A split's holdout, when it has one: the users who got nothing, and who of them
    /// converted all the same (what a path's conversions are measured against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<PathStats>,
    /// A step only earlier versions of the journey have (renamed or removed since): listed
    /// after the latest version's steps, so the steps still add up to the journey's figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub earlier: bool,
}

/// The users a split path (or its holdout) took, and how many of them converted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct PathStats {
    pub entered: i64,
    pub converted: i64,
}

impl StepStats {
    fn set(&mut self, what: StepCounter<'_>, v: i64) {
        match what {
            StepCounter::Entered => self.entered = v,
            StepCounter::Waiting => self.waiting = v,
            StepCounter::Exited => self.exited = v,
            StepCounter::Converted => self.converted = v,
            StepCounter::Sent(channel) => {
                self.sent.insert(channel.to_string(), v);
            }
            StepCounter::Skipped(reason) => {
                self.skipped.insert(reason.to_string(), v);
            }
            StepCounter::Path(path, took) => {
                self.paths.entry(path.to_string()).or_default().set(took, v);
            }
            StepCounter::Holdout(took) => self.holdout.get_or_insert_default().set(took, v),
        }
    }
}

impl PathStats {
    fn set(&mut self, took: Took, v: i64) {
        match took {
            Took::Entered => self.entered = v,
            Took::Converted => self.converted = v,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JourneyStats {
    pub journey: String,
    pub version: u32,
    /// Absent from older servers: active.
    #[serde(default)]
    pub status: JourneyStatus,
    pub entered: i64,
    pub converted: i64,
    pub exited: i64,
    pub completed: i64,
    pub held_out: i64,
    pub steps: Vec<StepStats>,
}

/// Shapes a journey's counters into per-step figures, in the journey's step order; the steps
/// only earlier versions have after them, in the order of their counters' names (see
/// [`order_earlier_steps`]).
pub fn journey_stats(j: &Journey, version: u32, c: &BTreeMap<String, i64>) -> JourneyStats {
    let steps: Vec<StepStats> = j
        .steps
        .iter()
        .map(|s| {
            let mut st = StepStats {
                id: s.id.clone(),
                ..Default::default()
            };
            if let crate::journey::Action::Split(sp) = s.action() {
                for p in &sp.paths {
                    let name = p.name.as_ref().unwrap_or(&p.goto);
                    st.paths.insert(name.clone(), PathStats::default());
                }
                if sp.holdout.is_some_and(|h| h > 0) {
                    st.holdout = Some(PathStats::default());
                }
            }
            st
        })
        .collect();
    let mut out = JourneyStats {
        journey: j.id.clone(),
        version,
        status: j.status,
        entered: 0,
        converted: 0,
        exited: 0,
        completed: 0,
        held_out: 0,
        steps,
    };
    for (name, v) in c {
        let v = *v;
        match Counter::parse(name) {
            Some(Counter::Entered) => out.entered = v,
            Some(Counter::Converted) => out.converted = v,
            Some(Counter::Exited) => out.exited = v,
            Some(Counter::Completed) => out.completed = v,
            Some(Counter::HeldOut) => out.held_out = v,
            // A step the latest version no longer has is listed after its steps, as earlier.
            Some(Counter::Step(step, what)) => {
                let at = match out.steps.iter().position(|s| s.id == step) {
                    Some(i) => i,
                    None => {
                        out.steps.push(StepStats {
                            id: step.to_string(),
                            earlier: true,
                            ..Default::default()
                        });
                        out.steps.len() - 1
                    }
                };
                out.steps[at].set(what, v);
            }
            // A counter this version does not show.
            None => {}
        }
    }
    out
}

/// The steps of `stats` that only earlier versions have (`earlier`), put in the order of their
/// flows: each where the latest of `earlier_versions` (newest first) that has it lists it, that
/// version's after the newer one's. A step none of them has stays last, where it was.
pub fn order_earlier_steps(stats: &mut JourneyStats, earlier_versions: &[&Journey]) {
    let rank = |id: &str| {
        earlier_versions
            .iter()
            .enumerate()
            .find_map(|(v, j)| j.steps.iter().position(|s| s.id == id).map(|i| (v, i)))
            .unwrap_or((usize::MAX, usize::MAX))
    };
    let first = stats
        .steps
        .iter()
        .position(|s| s.earlier)
        .unwrap_or(stats.steps.len());
    stats.steps[first..].sort_by_key(|s| rank(&s.id));
}

/// The call a path other than the call's own name stands for: an analytics.js one-letter path
/// (`t` for `track`, `b` for `batch`), or `import`, where Segment's Ruby and Java libraries and
/// its older Android and iOS ones post their batches (the body is a batch's, `{batch: [...]}`).
fn call_of_path(name: &str) -> Option<&'static str> {
    Some(match name {
        "t" => "track",
        "i" => "identify",
        "p" => "page",
        "s" => "screen",
        "a" => "alias",
        "g" => "group",
        "b" | "import" => "batch",
        _ => return None,
    })
}

/// Whether the path is one of the calls that send events (browsers may call them).
fn is_intake(segments: &[&str]) -> bool {
    matches!(
        segments,
        [
            "v1",
            "track" | "identify" | "page" | "screen" | "alias" | "group" | "batch"
        ]
    )
}

/// The `writeKey` field of a JSON body, if it has one, read as leniently as the body's events
/// are (a byte order mark, Python's `NaN`: [`event::write_key`]).
fn body_write_key(body: &[u8]) -> Option<String> {
    event::write_key(body)
}

/// Whether the path is a user's inbox or one of its messages (a web app reads and marks them
/// with the user's token).
/// The methods [`ROUTES`] serve on a path of these segments (a `{…}` of a route is any one
/// segment); none for a path no route has, which is a 404, not a 405.
fn allowed_methods(segments: &[&str]) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = Vec::new();
    for route in ROUTES {
        let Some((method, path)) = route.split_once(' ') else {
            continue;
        };
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let mut given = segments.iter();
        let fits = loop {
            match (parts.next(), given.next()) {
                (None, None) => break true,
                (Some(p), Some(g)) if p.starts_with('{') || p == *g => continue,
                _ => break false,
            }
        };
        if fits && !methods.contains(&method) {
            methods.push(method);
        }
    }
    methods
}

fn is_inbox(segments: &[&str]) -> bool {
    matches!(segments, ["v1", "users", _, "inbox", ..])
}

/// The methods and headers a browser may use on the calls that answer any page's origin (as
/// template.yaml's `CorsConfiguration` says them to API Gateway).
pub const CORS_METHODS: &str = "GET, POST, DELETE, OPTIONS";
pub const CORS_HEADERS: &str = "content-type, authorization, x-waymark-user-token";

/// The answer to a browser's preflight of an event call or an inbox call.
fn preflight() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        http::HeaderValue::from_static(CORS_METHODS),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        http::HeaderValue::from_static(CORS_HEADERS),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        http::HeaderValue::from_static("86400"),
    );
    r
}

/// An event call's answer, readable by a web page on any origin (a write key ships in apps and
/// can only send; no cookie is read).
fn cors(mut r: Response<Bytes>) -> Response<Bytes> {
    r.headers_mut().insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("*"),
    );
    r
}

/// The 413 for a body over the largest batch, in the shape of every refusal: what to do
/// about it for an event call (`intake`) or any other (a journey's upload). The caller adds
/// CORS on an event route ([`too_large_at`] does).
fn too_large(intake: bool) -> Response<Bytes> {
    let limit = event::MAX_BATCH_BYTES;
    let what = if intake {
        "send the events in smaller batches"
    } else {
        "a journey file is at most that: move long message bodies into fewer, shorter templates"
    };
    let why = format!(
        "is more than {limit} bytes ({} KB), the most a request may carry: {what}",
        limit / 1024
    );
    field_errors(
        StatusCode::PAYLOAD_TOO_LARGE,
        &[FieldError::new("body", why)],
    )
}

/// The 413 for a request to `path` whose body is over the largest batch, for a server that
/// stops reading it there (`waymark dev`): as [`Api::handle`] answers such a body, with CORS
/// on an event route.
pub fn too_large_at(path: &str) -> Response<Bytes> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let intake = match segments.as_slice() {
        ["v1", short] if call_of_path(short).is_some() => true,
        other => is_intake(other),
    };
    if intake {
        cors(too_large(true))
    } else {
        too_large(false)
    }
}

/// An event call's request with its body as sent before any `Content-Encoding`: gzip (and its
/// old name `x-gzip`) is inflated, up to the largest batch accepted; `identity` is the body as
/// it is. Any other encoding is refused, naming the header, as is a body that does not inflate.
fn decoded(req: Request<Bytes>) -> Result<Request<Bytes>, Box<Response<Bytes>>> {
    use std::io::Read;
    let Some(encoding) = req.headers().get(http::header::CONTENT_ENCODING) else {
        return Ok(req);
    };
    let encoding = encoding.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(req),
        "gzip" | "x-gzip" => {
            let (parts, body) = req.into_parts();
            let limit = event::MAX_BATCH_BYTES;
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit + 1));
            let inflated = flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            if inflated.is_err() {
                let why = "is not valid gzip, though Content-Encoding says gzip: send the gzipped JSON, or the JSON without that header";
                return Err(Box::new(field_errors(
                    StatusCode::BAD_REQUEST,
                    &[FieldError::new("body", why)],
                )));
            }
            if out.len() > limit {
                let why = format!(
                    "is more than {limit} bytes ({} KB) once gunzipped; send the events in smaller batches",
                    limit / 1024
                );
                return Err(Box::new(field_errors(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &[FieldError::new("body", why)],
                )));
            }
            Ok(Request::from_parts(parts, Bytes::from(out)))
        }
        other => {
            let why = format!("`{other}` is not supported: send the body as it is, or gzip it (Content-Encoding: gzip)");
            Err(Box::new(field_errors(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &[FieldError::new("Content-Encoding", why)],
            )))
        }
    }
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

impl Api {
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Bytes> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        // Each segment percent-decoded: a user id may hold any character (`zoë`, `a/b`).
        let mut segments: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        for s in path.split('/').filter(|s| !s.is_empty()) {
            let Ok(decoded) = percent_encoding::percent_decode_str(s).decode_utf8() else {
                let why = format!("`{s}` is not UTF-8 once decoded; percent-encode UTF-8 bytes");
                let refused =
                    field_errors(StatusCode::BAD_REQUEST, &[FieldError::new("path", why)]);
                // A browser app reads why its inbox call was refused, as it reads its other
                // refusals (the path's words as written decide which calls answer any origin).
                let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                return if is_inbox(&raw) {
                    // Its preflight too: the browser sends the call only once that passes.
                    cors(if req.method() == Method::OPTIONS {
                        preflight()
                    } else {
                        refused
                    })
                } else {
                    refused
                };
            };
            segments.push(decoded);
        }
        let mut segments: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
        // analytics.js's one-letter paths, and `import`, are the calls they stand for.
        if let ["v1", short] = segments.as_slice() {
            if let Some(call) = call_of_path(short) {
                segments[1] = call;
            }
        }
        let intake = is_intake(&segments);
        // The event calls and the inbox answer any page's origin: a write key and an inbox
        // token ship inside apps, and no cookie is read.
        let open = intake || is_inbox(&segments);
        if open && req.method() == Method::OPTIONS {
            return cors(preflight());
        }
        let req = if intake {
            match decoded(req) {
                Ok(req) if req.body().len() > event::MAX_BATCH_BYTES => {
                    return cors(too_large(true))
                }
                Ok(req) => req,
                Err(refused) => return cors(*refused),
            }
        } else {
            req
        };
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let role = match auth {
            Some(_) => self.keys.role(auth),
            // A browser sends no header (it would need a CORS preflight): Segment's browser
            // library puts the write key in the body.
            None if intake => body_write_key(req.body()).and_then(|k| self.keys.role_of_key(&k)),
            None => None,
        };
        let response = self.route(&req, &path, &segments, auth, role).await;
        if open {
            cors(response)
        } else {
            response
        }
    }

    async fn route(
        &self,
        req: &Request<Bytes>,
        path: &str,
        segments: &[&str],
        auth: Option<&str>,
        role: Option<Role>,
    ) -> Response<Bytes> {
        let method = req.method().clone();
        match (method.clone(), segments) {
            (
                Method::POST,
                ["v1", t @ ("track" | "identify" | "page" | "screen" | "alias" | "group")],
            ) => {
                if role.is_none() {
                    return unauthorized();
                }
                let Some(call) = event::Call::parse(t) else {
                    // Every name the route matches is a call; kept for the compiler.
                    return reply(
                        StatusCode::NOT_FOUND,
                        &refusal("not_found", format!("no route {path}")),
                    );
                };
                let now = self.runtime.clock.now();
                match event::parse_call_warned(call, req.body(), now, &self.limits) {
                    Ok((e, warnings)) => {
                        let mut events = vec![e];
                        if call == event::Call::Alias {
                            self.alias_of_a_user(&mut events, &[0]).await;
                        }
                        self.enqueue(events, Vec::new(), warnings).await
                    }
                    Err(errors) => field_errors(StatusCode::BAD_REQUEST, &errors),
                }
            }
            (Method::POST, ["v1", "batch"]) => {
                if role.is_none() {
                    return unauthorized();
                }
                let now = self.runtime.clock.now();
                match event::parse_batch(req.body(), now, &self.limits) {
                    Ok(mut out) => {
                        self.alias_of_a_user(&mut out.accepted, &out.aliases).await;
                        self.enqueue(out.accepted, out.rejected, out.warnings).await
                    }
                    Err(errors) => field_errors(StatusCode::BAD_REQUEST, &errors),
                }
            }
            (Method::GET, ["v1", "users", user]) => {
                if role != Some(Role::Admin) {
                    return unauthorized();
                }
                if let Some(refused) = unkept_user(user) {
                    return refused;
                }
                match self.runtime.user(user).await {
                    Ok(v) if v.profile.is_none() && v.enrollments.is_empty() => {
                        self.no_user(user).await
                    }
                    Ok(v) => reply(StatusCode::OK, &json!(v)),
                    Err(e) => internal(&e),
                }
            }
            (Method::DELETE, ["v1", "users", user]) => {
                if role != Some(Role::Admin) {
                    return unauthorized();
                }
                if let Some(refused) = unkept_user(user) {
                    return refused;
                }
                // Idempotent: a user erased already (or never known) is erased; one with more
                // records than a request deletes, or push endpoints the provider could not
                // delete now, is finished by the same request again.
                match self.runtime.erase(user).await {
                    Ok(e) if e.remaining => reply(
                        StatusCode::ACCEPTED,
                        &json!({
                            "erased": false,
                            "remaining": true,
                            "message": "part of the user's data is left (records past what one request deletes, or push endpoints SNS could not delete now): send the same DELETE again to finish",
                            "deleted": e,
                        }),
                    ),
                    Ok(e) => reply(StatusCode::OK, &json!({ "erased": true, "deleted": e })),
                    Err(e) => erase_failed(&e),
                }
            }
            (Method::GET, ["v1", "users", user, "inbox"]) => {
                if !self.may_open_inbox(req, user, auth, role) {
                    return unauthorized();
                }
                if let Some(refused) = unkept_user(user) {
                    return refused;
                }
                match self.runtime.inbox(user).await {
                    Ok(items) => {
                        let unread = items.iter().filter(|i| i.read_at.is_none()).count();
                        reply(
                            StatusCode::OK,
                            &json!({ "messages": items, "unread": unread }),
                        )
                    }
                    Err(e) => internal(&e),
                }
            }
            (Method::POST, ["v1", "users", user, "inbox", id, "read"]) => {
                if !self.may_open_inbox(req, user, auth, role) {
                    return unauthorized();
                }
                self.mark_inbox(user, id, InboxMark::Read).await
            }
            // A message id sent with a raw `#`: the client dropped the rest as a fragment.
            // A whole id (its `#` encoded) without `/read`: where marking it read is.
            (Method::POST, ["v1", "users", _, "inbox", id]) => {
                let why = if id.contains('#') {
                    format!("mark `{id}` read with POST /v1/users/{{userId}}/inbox/{{id}}/read (this path has no `/read`), or dismiss it with DELETE /v1/users/{{userId}}/inbox/{{id}}")
                } else {
                    format!(
                        "`{id}` is not a whole message id: percent-encode its `#` as `%23` (a client drops what follows a raw `#`), and mark it read with POST /v1/users/{{userId}}/inbox/{{id}}/read"
                    )
                };
                field_errors(StatusCode::BAD_REQUEST, &[FieldError::new("id", why)])
            }
            (Method::DELETE, ["v1", "users", user, "inbox", id]) => {
                if !self.may_open_inbox(req, user, auth, role) {
                    return unauthorized();
                }
                self.mark_inbox(user, id, InboxMark::Dismissed).await
            }
            (Method::GET, ["v1", "journeys"]) => {
                if role != Some(Role::Admin) {
                    return unauthorized();
                }
                match self.runtime.catalog.heads().await {
                    Ok(heads) => reply(StatusCode::OK, &json!({ "journeys": heads })),
                    Err(e) => internal(&e.into()),
                }
            }
            (Method::GET, ["v1", "journeys", id, "stats"]) => {
                if role != Some(Role::Admin) {
                    return unauthorized();
                }
                self.stats(id).await
            }
            (Method::PUT, ["v1", "journeys", id]) => {
                if role != Some(Role::Admin) {
                    return unauthorized();
                }
                self.publish(id, req.body()).await
            }
            (Method::GET | Method::POST, ["v1", "unsubscribe"]) => {
                let Some(token) = query_param(req.uri(), "token") else {
                    return field_errors(
                        StatusCode::BAD_REQUEST,
                        &[FieldError {
                            field: "token".into(),
                            message: "the unsubscribe link is missing its token".into(),
                        }],
                    );
                };
                let Some(bound) = self.signer.verify_unsubscribe_token(&token) else {
                    return bad_unsubscribe_link(method == Method::GET);
                };
                let channel = Channel::parse(&bound.channel).unwrap_or(Channel::Email);
                // A topic journey's link stops its topic, unless the page's second button asks
                // for all email; a link made before topics stops email.
                let topic = bound.topic.as_deref();
                let name = topic.map(|t| self.runtime.config.topics.display_name(t));
                // Opening the link asks; only a POST unsubscribes (a mailbox provider's one-click
                // POST, RFC 8058, or the page's button): mail scanners that open every link in a
                // message would otherwise unsubscribe its readers.
                if method == Method::GET {
                    return match name {
                        Some(name) => page(topic_ask(name)),
                        None => page(UNSUBSCRIBE_ASK),
                    };
                }
                let (topic, name) = if wants_all_email(req) {
                    (None, None)
                } else {
                    (topic, name)
                };
                let done = match topic {
                    Some(topic) => self.runtime.unsubscribe_topic(&bound.user, topic).await,
                    None => self.runtime.unsubscribe(&bound.user, channel).await,
                };
                match (done, topic) {
                    (Ok(()), _) if wants_html(req) => match name {
                        Some(name) => page(topic_done(name)),
                        None => page(UNSUBSCRIBED),
                    },
                    (Ok(()), Some(topic)) => reply(
                        StatusCode::OK,
                        &json!({"unsubscribed": true, "topic": topic}),
                    ),
                    (Ok(()), None) => reply(
                        StatusCode::OK,
                        &json!({"unsubscribed": true, "channel": channel}),
                    ),
                    (Err(e), _) => internal(&e),
                }
            }
            (_, segments) if !allowed_methods(segments).is_empty() => {
                let allowed = allowed_methods(segments).join(", ");
                let mut r = reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &refusal(
                        "method_not_allowed",
                        format!("{method} is not allowed on {path} (only {allowed})"),
                    ),
                );
                if let Ok(v) = http::HeaderValue::from_str(&allowed) {
                    r.headers_mut().insert(http::header::ALLOW, v);
                }
                r
            }
            _ => {
                let mut body = refusal("not_found", format!("no route {path}"));
                body["routes"] = json!(ROUTES);
                reply(StatusCode::NOT_FOUND, &body)
            }
        }
    }

    /// Whether the request may read and mark `user`'s inbox: an admin key, or her inbox token
    /// (in `X-Waymark-User-Token`, or as a Bearer token).
    fn may_open_inbox(
        &self,
        req: &Request<Bytes>,
        user: &str,
        auth: Option<&str>,
        role: Option<Role>,
    ) -> bool {
        let token = req
            .headers()
            .get("x-waymark-user-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| auth.and_then(|a| a.strip_prefix("Bearer ")));
        role == Some(Role::Admin) || token.is_some_and(|t| self.signer.verify_inbox_token(user, t))
    }

    /// Marks an in-app message read or dismissed: the message as it is now, or a 404 naming
    /// `id` when the user has no such message.
    async fn mark_inbox(&self, user: &str, id: &str, mark: InboxMark) -> Response<Bytes> {
        if let Some(refused) = unkept_user(user) {
            return refused;
        }
        match self.runtime.mark_inbox(user, id, mark).await {
            Ok(Some(item)) => reply(StatusCode::OK, &json!(item)),
            Ok(None) => {
                let why = format!(
                    "`{id}` is not a message in `{user}`'s inbox (or it expired): use a message's `id` as GET /v1/users/{{userId}}/inbox lists it, percent-encoded (`#` is `%23`)"
                );
                let errors = [FieldError::new("id", why)];
                reply(
                    StatusCode::NOT_FOUND,
                    &json!({
                        "error": "no such message",
                        "code": "not_found",
                        "message": summary(&errors),
                        "errors": errors,
                    }),
                )
            }
            Err(e) => internal(&e),
        }
    }

    /// The 404 for a user with no profile and no enrollment; when `user` was sent as an
    /// `anonymousId`, it says where that user is kept.
    async fn no_user(&self, user: &str) -> Response<Bytes> {
        let mut body = refusal("not_found", format!("no user `{user}`"));
        if !user.starts_with(event::ANONYMOUS_PREFIX) {
            let anonymous = format!("{}{user}", event::ANONYMOUS_PREFIX);
            // An anonymous user's first event wrote its profile: one read, not the partition.
            let key = crate::runtime::profile_key(&anonymous);
            let kept = match self.runtime.store.get(&key).await {
                Ok(Some(r)) => r
                    .parse::<crate::profile::Profile>()
                    .is_ok_and(|p| !p.is_erasure_mark()),
                _ => false,
            };
            if kept {
                let path: String =
                    percent_encoding::utf8_percent_encode(&anonymous, PATH_SEGMENT).collect();
                body["hint"] = json!(format!(
                    "events sent with anonymousId `{user}` are kept under the user `{anonymous}`: GET /v1/users/{path}"
                ));
            }
        }
        reply(StatusCode::NOT_FOUND, &body)
    }

    /// An alias whose `previousId` is a known user's id (a profile is kept under it) and no
    /// visitor's (no unmerged `anon:<previousId>` profile): two known users are not merged (as
    /// Braze's and Customer.io's aliases do not), so the alias merges nothing, and the user's
    /// timeline (`not_kept`) says so. The answer does not: a write key ships inside apps, and
    /// an answer that told a known user's id from another would let anyone holding it ask
    /// whether any id is one. A visitor whose anonymous id is also someone's userId (an app
    /// that sends its device id as both) merges as ever. One multi-get for all the aliases of
    /// a request, both keys of each (`aliases`: each alias event's place in `events`). A user
    /// id whose first event is still queued is not known yet, and a store that does not answer
    /// tells nothing: either alias merges as before, into `anon:<previousId>`.
    async fn alias_of_a_user(&self, events: &mut [event::Event], aliases: &[usize]) {
        let previous_ids: Vec<(usize, String)> = aliases
            .iter()
            .filter_map(|&at| Some((at, events.get(at)?.anonymous_id.clone()?)))
            .collect();
        if previous_ids.is_empty() {
            return;
        }
        let visitor = |previous: &str| {
            crate::runtime::profile_key(&format!("{}{previous}", event::ANONYMOUS_PREFIX))
        };
        // Each key once: a batch may alias the same id twice.
        let keys: Vec<crate::store::Key> = previous_ids
            .iter()
            .flat_map(|(_, previous)| [crate::runtime::profile_key(previous), visitor(previous)])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let found = match self.runtime.store.get_many(&keys).await {
            Ok(records) => records,
            Err(err) => {
                // The aliases are taken as they came: a store that does not answer does not
                // lose them.
                tracing::warn!(error = %err, aliases = previous_ids.len(), "alias: could not tell whether previousId is a known user; merged as an anonymous id");
                return;
            }
        };
        let found: std::collections::HashMap<crate::store::Key, crate::store::Record> =
            found.into_iter().map(|r| (r.key.clone(), r)).collect();
        for (at, previous) in previous_ids {
            if !found.contains_key(&crate::runtime::profile_key(&previous)) {
                continue;
            }
            // A visitor kept under the id, not merged yet, is who the alias is about. One that
            // cannot be read is taken for one (merged as before: nothing is lost).
            let a_visitor = found.get(&visitor(&previous)).is_some_and(|r| {
                r.parse_shared::<crate::profile::Profile>()
                    .map_or(true, |p| p.merged_into.is_none())
            });
            if a_visitor {
                continue;
            }
            let Some(e) = events.get_mut(at) else {
                continue;
            };
            e.anonymous_id = None;
            e.refused.push(event::Refused {
                field: "previousId".into(),
                value: crate::condition::shown("previousId", &Value::String(previous.clone())),
                reason: format!("`{previous}` is a known user's userId, not an anonymous id: Waymark merges an anonymous visitor into the user she turned out to be, not two known users; nothing was merged: `{previous}` keeps her profile, journeys and history"),
            });
        }
    }

    /// Queues the accepted events and answers: 200 when none was rejected, else 400 listing
    /// the rejected ones by index. Fields left out of accepted events are listed either way
    /// (`warnings`, each with its batch index), and are in the one-line `message` after the
    /// errors.
    async fn enqueue(
        &self,
        events: Vec<event::Event>,
        rejected: Vec<event::Rejected>,
        warnings: Vec<event::Warning>,
    ) -> Response<Bytes> {
        let accepted = events.len();
        if !events.is_empty() {
            let messages: Vec<Outbound> = events
                .into_iter()
                .map(|e| Outbound {
                    message: Message::Event(std::sync::Arc::new(e)),
                    delay_secs: 0,
                })
                .collect();
            match self.runtime.queue.send(QueueName::Events, &messages).await {
                Ok(()) => {}
                // The queue refused the events for what they are: sent again, they would be
                // refused again (the queue itself failing is a 503, retried).
                Err(QueueError::Rejected(why)) => {
                    tracing::warn!(reason = %why, "the events queue refused a request's events");
                    let why = format!(
                        "could not be queued as it is ({why}), and sending it again will not change that: send fewer or smaller events a request"
                    );
                    return field_errors(StatusCode::BAD_REQUEST, &[FieldError::new("body", why)]);
                }
                Err(e) => return internal(&e.into()),
            }
        }
        let left_out: Vec<FieldError> = warnings
            .iter()
            .map(|w| FieldError::new(w.field.clone(), w.message.clone()))
            .collect();
        let listed_warnings = &warnings[..warnings.len().min(LISTED_AT_MOST)];
        let mut body = if rejected.is_empty() {
            let mut body = json!({"success": true, "accepted": accepted});
            if !warnings.is_empty() {
                body["warnings"] = json!(listed_warnings);
                body["message"] = json!(summary_of(left_out.iter(), left_out.len()));
            }
            body
        } else {
            let errors = rejected.iter().flat_map(|r| r.errors.iter());
            let total = rejected.iter().map(|r| r.errors.len()).sum::<usize>() + left_out.len();
            let message = summary_of(errors.chain(left_out.iter()), total);
            let listed = &rejected[..rejected.len().min(LISTED_AT_MOST)];
            let mut body = json!({"success": false, "accepted": accepted, "rejected": listed,
                "error": "invalid request", "code": "invalid_request", "message": message});
            if rejected.len() > LISTED_AT_MOST {
                body["rejected_count"] = json!(rejected.len());
            }
            if !warnings.is_empty() {
                body["warnings"] = json!(listed_warnings);
            }
            body
        };
        if warnings.len() > LISTED_AT_MOST {
            body["warnings_count"] = json!(warnings.len());
        }
        let status = if rejected.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        reply(status, &body)
    }

    async fn stats(&self, id: &str) -> Response<Bytes> {
        let latest = match self.runtime.catalog.latest(id).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return reply(
                    StatusCode::NOT_FOUND,
                    &refusal("not_found", format!("no journey `{id}`")),
                )
            }
            Err(e) => return internal(&e.into()),
        };
        let c = match self.runtime.stats(id).await {
            Ok(c) => c,
            Err(e) => return internal(&e),
        };
        let mut stats = journey_stats(&latest.journey, latest.version, &c);
        // The steps only earlier versions have, in their flows' order: the versions that name
        // them read, newest first, until each is found (none read when there are none).
        let mut unplaced: BTreeSet<&str> = stats
            .steps
            .iter()
            .filter(|s| s.earlier)
            .map(|s| s.id.as_str())
            .collect();
        let mut earlier = Vec::new();
        for v in (1..latest.version).rev() {
            if unplaced.is_empty() {
                break;
            }
            match self.runtime.catalog.version(id, v).await {
                Ok(Some(p)) => {
                    for s in &p.journey.steps {
                        unplaced.remove(s.id.as_str());
                    }
                    earlier.push(p);
                }
                Ok(None) => {}
                Err(e) => return internal(&e.into()),
            }
        }
        let earlier: Vec<&Journey> = earlier.iter().map(|p| &p.journey).collect();
        order_earlier_steps(&mut stats, &earlier);
        reply(StatusCode::OK, &json!(stats))
    }

    async fn publish(&self, id: &str, body: &[u8]) -> Response<Bytes> {
        let Ok(text) = std::str::from_utf8(body) else {
            return field_errors(
                StatusCode::BAD_REQUEST,
                &[FieldError {
                    field: "body".into(),
                    message: "send the journey file as UTF-8 YAML or JSON".into(),
                }],
            );
        };
        let name = format!("{id}.yaml");
        // A topic this deployment does not declare is refused here, where the operator sees it,
        // rather than found at each send; the version keeps its declaration, for a send whose
        // running parameter has lost it (see `topic::Declared`).
        let parsed = dsl::parse(&name, text).and_then(|j| {
            let topics = &self.runtime.config.topics;
            match dsl::undeclared_topic(&name, text, &j, topics, dsl::TopicsFrom::Deployment) {
                Some(e) => Err(vec![e]),
                None => Ok(j),
            }
        });
        let journey = match parsed {
            Ok(j) => j,
            Err(errors) => {
                // Each problem with its place in the file, and `field` as a request's have it.
                let listed: Vec<serde_json::Value> = errors
                    .iter()
                    .map(|e| {
                        let mut v = json!(e);
                        v["field"] = json!(e.path);
                        v
                    })
                    .collect();
                let message = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"error": "invalid journey", "code": "invalid_journey",
                        "message": message, "errors": listed}),
                );
            }
        };
        if journey.id != id {
            return field_errors(
                StatusCode::BAD_REQUEST,
                &[FieldError {
                    field: "id".into(),
                    message: format!(
                        "the file says id `{}` but the URL says `{id}`: make them the same",
                        journey.id
                    ),
                }],
            );
        }
        match self.runtime.catalog.key_change(&journey).await {
            Ok(Some(message)) => {
                return reply(
                    StatusCode::CONFLICT,
                    &json!({"error": "enrollment_key changed", "code": "enrollment_key_changed",
                        "message": message, "errors": [{"field": "enrollment_key", "message": message}]}),
                );
            }
            Ok(None) => {}
            Err(e) => return internal(&e.into()),
        }
        let now = self.runtime.clock.now();
        match self
            .runtime
            .catalog
            .publish(&journey, &self.runtime.config.topics, now)
            .await
        {
            Ok((version, created)) => reply(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &json!({"id": id, "version": version, "created": created}),
            ),
            Err(e) => internal(&e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An erasure that met a send under way is a `503` that says so, with when to ask again;
    /// another failure is the plain `503`.
    #[test]
    fn an_erasure_waiting_for_a_send_says_so() {
        let r = erase_failed(&RunError::Retry(crate::erase::SEND_UNDER_WAY.into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("60")
        );
        let body: Value = serde_json::from_slice(r.body()).expect("JSON");
        assert_eq!(body["code"], "send_under_way", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("send the same DELETE again")),
            "{body}"
        );
        let r = erase_failed(&RunError::Retry("the store is down".into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_slice(r.body()).expect("JSON");
        assert_eq!(body, json!({"error": "temporarily unavailable, retry"}));
    }
}
