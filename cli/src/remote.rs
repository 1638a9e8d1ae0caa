//! `waymark publish`, `waymark stats` and `waymark why`: the admin API of a running Waymark
//! (deployed or `waymark dev`) over HTTP(S). Validates locally first; prints what the API answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use waymark::dsl;
use waymark::enrollment::{Enrollment, Pending, Resume, Status};
use waymark::journey::JourneyStatus;
use waymark::progress::{TriggerAnswer, TriggerState};
use waymark::runtime::describe;
use waymark::scheduled::ScheduleAnswer;
use waymark::timeline::{Entry, What};

const TIMEOUT: Duration = Duration::from_secs(30);

/// An admin client for one API.
pub struct ApiClient {
    base: String,
    key: String,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The `dev.url` file the URL was read from, when it was (for a request that finds no one
    /// listening: that `waymark dev` has stopped).
    from_dev: Option<PathBuf>,
    /// The data folder the admin key was read from, when it was (for a 401: the `waymark dev`
    /// listening at the URL runs on another data folder, with another key).
    key_from: Option<PathBuf>,
}

impl ApiClient {
    /// The client `publish`, `why` and `stats` use: the API at `api` with the admin key `key`
    /// where given (flag or environment), else the `waymark dev` that runs on the data folder
    /// `data` (the URL it notes in `dev.url` when it starts, and the admin key it runs with).
    pub fn of(api: Option<&str>, key: Option<&str>, data: &Path) -> Result<Self> {
        let dir = crate::data::DataDir::new(data);
        let Some(api) = api else {
            let Some(url) = dir.saved_url() else {
                if key.is_some() {
                    return Self::new(None, key);
                }
                bail!(
                    "no API URL: pass --api URL or set WAYMARK_API_URL, with the admin key as --key KEY or WAYMARK_ADMIN_KEY; or start `waymark dev` (`make dev`): run beside it, this reads where it listens and its admin key from its data folder ({}; another with --data DIR)",
                    data.display()
                );
            };
            let (key, key_from) = match key {
                Some(key) => (key.to_string(), None),
                None => (crate::data::admin_key(&dir)?, Some(data.to_path_buf())),
            };
            let mut client = Self::new(Some(&url), Some(&key))?;
            client.from_dev = Some(data.join("dev.url"));
            client.key_from = key_from;
            return Ok(client);
        };
        // The dev's own URL given without a key: its key, as above.
        let dev_key = match (key, dir.saved_url()) {
            (None, Some(url)) if same_base(&url, api) => crate::data::admin_key(&dir).ok(),
            _ => None,
        };
        let mut client = Self::new(Some(api), key.or(dev_key.as_deref()))?;
        if dev_key.is_some() {
            client.key_from = Some(data.to_path_buf());
        }
        Ok(client)
    }

    /// A client of the API at `base` with the admin key `key`; either missing is an error that
    /// says where it comes from (the flag, or its environment variable).
    pub fn new(base: Option<&str>, key: Option<&str>) -> Result<Self> {
        let Some(base) = base else {
            bail!("no API URL: pass --api URL or set WAYMARK_API_URL (`waymark dev` serves http://127.0.0.1:8080; a deployed stack's is its ApiUrl output)");
        };
        let Some(key) = key else {
            bail!("no admin key: pass --key KEY or set WAYMARK_ADMIN_KEY (`waymark dev` prints one and keeps it in keys.json in its data folder, .waymark/ unless --data says another; a deployed stack takes the keys you stored for its AdminKeysParameter)");
        };
        let key = key.to_string();
        let base = base.trim_end_matches('/').to_string();
        let uri: http::Uri = base
            .parse()
            .with_context(|| format!("`{base}` is not a URL: write it like https://abc.execute-api.eu-west-1.amazonaws.com"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("`{base}` is not an http:// or https:// URL"),
        };
        // Ring, chosen explicitly: the workspace also builds rustls with aws-lc-rs (for the AWS
        // SDK), and with two providers compiled in rustls will not pick one by itself.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) if https => {
                return Err(e).context("cannot load this system's root certificates for https")
            }
            // Plain http needs no roots.
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .context("TLS setup")?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(ApiClient {
            base,
            key: key.to_string(),
            http: Client::builder(TokioExecutor::new()).build(connector),
            from_dev: None,
            key_from: None,
        })
    }

    /// Sends a request; returns the status and body whatever the status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(StatusCode, Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.key))
            .header(http::header::ACCEPT, "application/json");
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).context("building the request")?;
        let response = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .with_context(|| format!("{method} {url}: no answer within {}s", TIMEOUT.as_secs()))?
            .map_err(|e| match &self.from_dev {
                Some(file) if e.is_connect() => anyhow::Error::new(e).context(format!(
                    "{method} {url}: no `waymark dev` answers there (the URL {} noted when it started): start it (`make dev`), or pass --api URL",
                    file.display()
                )),
                _ => anyhow::Error::new(e).context(format!("{method} {url}")),
            })?;
        let status = response.status();
        if let (StatusCode::UNAUTHORIZED, Some(data)) = (status, &self.key_from) {
            // The key is the data folder's, and the server there does not take it: another
            // `waymark dev` (another data folder) listens at the URL, or a server that is none.
            bail!(
                "{method} {url}: {status}: what listens there does not take the admin key of the data folder {} (its keys.json): a `waymark dev` running on another data folder? Pass that one's --data DIR, or --key KEY",
                data.display()
            );
        }
        let bytes = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .with_context(|| format!("{method} {url}: the answer stalled"))?
            .with_context(|| format!("{method} {url}: reading the answer"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Why the API said no, in a line or a few.
pub fn refusal(status: StatusCode, body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return format!("{status}: {}", String::from_utf8_lossy(body).trim());
    };
    let mut out = format!(
        "{status}: {}",
        v.get("error").and_then(Value::as_str).unwrap_or("refused")
    );
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        for e in errors {
            let line = match (e.get("line"), e.get("column"), e.get("message")) {
                (Some(l), Some(c), Some(m)) => format!(
                    "line {l}:{c}: {}{}",
                    e.get("path")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .map(|p| format!("{p}: "))
                        .unwrap_or_default(),
                    m.as_str().unwrap_or_default()
                ),
                (_, _, Some(m)) => format!(
                    "{}: {}",
                    e.get("field").and_then(Value::as_str).unwrap_or("request"),
                    m.as_str().unwrap_or_default()
                ),
                _ => e.to_string(),
            };
            out.push_str("\n  ");
            out.push_str(&line);
        }
    }
    if let Some(hint) = v.get("hint").and_then(Value::as_str) {
        out.push_str("\n  ");
        out.push_str(hint);
    }
    if status == StatusCode::UNAUTHORIZED {
        out.push_str("\n  (this needs the admin key: --key or WAYMARK_ADMIN_KEY)");
    }
    out
}

/// The journey files under `paths` (folders expand to their journey files), each once.
fn files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let (files, errors) = dsl::files_of(paths);
    if let Some(e) = errors.first() {
        bail!("{}: {}", e.file, e.message);
    }
    Ok(files)
}

/// Validates every journey, then publishes each. Returns whether all were published.
/// A folder's `waymark.yaml` is checked with its journeys (and a journey file's folder's, as
/// `validate` checks it); its caps and topics are not published (a deployed Waymark reads them
/// from its stack's `FrequencyCaps` and `SubscriptionTopics` parameters), and the console says
/// so, with the values to pass. A settings file given as a journey is refused, saying to pass
/// its folder. The API is connected to (`client`) only once the files are found good, so that
/// a bad file is told as such, not as an API not given.
pub async fn publish(
    client: impl FnOnce() -> Result<ApiClient>,
    paths: &[PathBuf],
) -> Result<bool> {
    // Read as a journey, a settings file's every key would be an error of a journey's.
    for p in paths {
        let instead = |dir: &Path, read: bool| {
            format!(
                "pass the folder instead, `waymark publish {}`{}",
                crate::shell_word(&dir.display().to_string()),
                if read {
                    ", which publishes its journeys, checked against these settings"
                } else {
                    ""
                }
            )
        };
        if let Some(message) = crate::settings::given_as_journey(p, instead) {
            bail!("{message}");
        }
    }
    let mut errors = dsl::load_set(paths).err().unwrap_or_default();
    errors.extend(dsl::undeclared_topics(paths, crate::settings::topics_of));
    // The settings of a folder, or of a journey file's folder, checked as `validate` checks
    // them.
    let checked = crate::settings::check_for(paths, &[]);
    errors.extend(checked.errors);
    // What `validate` warns of, before anything is published.
    let mut advice = dsl::advice_for(paths);
    advice.extend(checked.advice);
    for w in crate::in_file_order(&advice) {
        say_err!("{}", crate::warning(w));
    }
    let mut caps_notes = Vec::new();
    for (dir, s) in &checked.read {
        let file = crate::settings::path_in(dir).unwrap_or_else(|| dir.clone());
        if !s.caps.is_empty() {
            caps_notes.push(format!(
                "{}: caps are not published with the journeys: a deployed Waymark takes them from its stack's FrequencyCaps parameter (sam deploy --parameter-overrides FrequencyCaps={})",
                file.display(),
                waymark::runtime::caps_parameter(&s.caps)
            ));
        }
        // The deployment refuses a journey whose topic its parameter lacks.
        if !s.topics.is_empty() {
            caps_notes.push(format!(
                "{}: topics are not published with the journeys: a deployed Waymark takes them from its stack's SubscriptionTopics parameter, and refuses a journey whose topic it lacks (sam deploy --parameter-overrides 'SubscriptionTopics={}')",
                file.display(),
                s.topics.parameter()
            ));
        }
    }
    if !errors.is_empty() {
        crate::print_errors(&errors);
        bail!("{}: nothing published", crate::error_count(&errors));
    }
    let client = &client()?;
    for note in caps_notes {
        say_err!("{note}");
    }
    let mut all_ok = true;
    let mut ids = std::collections::BTreeSet::new();
    for file in files_of(paths)? {
        let (ok, id) = publish_one(client, &file).await?;
        all_ok &= ok;
        ids.insert(id);
    }
    // As `waymark dev` says at each start: a journey whose file went (deleted, or its `id:`
    // changed) stays published and enrolls users as before (after a rename, next to the
    // renamed one: each user would get both journeys' messages).
    let folders: Vec<&PathBuf> = paths.iter().filter(|p| p.is_dir()).collect();
    if !folders.is_empty() {
        // A note only: what was published stands, so a list the API cannot give now is said,
        // not an error of the publish (exit 0 when every file was published).
        let left = match left_published(client, &ids).await {
            Ok(left) => left,
            Err(e) => {
                say_err!("note: could not list the published journeys to find any left without a file ({e:#}); what was published stands");
                Vec::new()
            }
        };
        for (id, version) in left {
            say_err!(
                "note: journey `{id}` (version {version}) is published but no file in {} has its id: it keeps enrolling (unless another folder you publish gives it); {}",
                folders
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::dev::to_end(&id)
            );
        }
    }
    Ok(all_ok)
}

/// The active journeys (id, latest version) the API lists that are not among `ids`.
async fn left_published(
    client: &ApiClient,
    ids: &std::collections::BTreeSet<String>,
) -> Result<Vec<(String, u32)>> {
    #[derive(Deserialize)]
    struct Listed {
        journeys: Vec<Head>,
    }
    /// What of a listed journey is read here (a deployment of another build lists more).
    #[derive(Deserialize)]
    struct Head {
        id: String,
        version: u32,
        #[serde(default)]
        status: waymark::journey::JourneyStatus,
    }
    let (status, body) = client.call(Method::GET, "/v1/journeys", None).await?;
    if !status.is_success() {
        bail!("{}", refusal(status, &body));
    }
    let listed: Listed = serde_json::from_slice(&body)
        .with_context(|| format!("unexpected answer {}", String::from_utf8_lossy(&body)))?;
    Ok(listed
        .journeys
        .into_iter()
        .filter(|h| h.status == waymark::journey::JourneyStatus::Active && !ids.contains(&h.id))
        .map(|h| (h.id, h.version))
        .collect())
}

#[derive(Deserialize)]
struct PublishAnswer {
    version: u32,
    created: bool,
}

/// Publishes one file: whether it was published, and its journey's id.
async fn publish_one(client: &ApiClient, file: &Path) -> Result<(bool, String)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let journey = dsl::parse(&file.display().to_string(), &text)
        .map_err(|_| anyhow::anyhow!("{} changed while publishing", file.display()))?;
    let path = format!("/v1/journeys/{}", journey.id);
    let content_type = if file.extension().is_some_and(|e| e == "json") {
        "application/json"
    } else {
        "application/yaml"
    };
    let (status, body) = client
        .call(Method::PUT, &path, Some((content_type, Bytes::from(text))))
        .await?;
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        // The same for every file: stop at the first.
        bail!("{}", refusal(status, &body));
    }
    if !status.is_success() {
        say_err!(
            "journey {} ({}): {}",
            journey.id,
            file.display(),
            refusal(status, &body)
        );
        return Ok((false, journey.id));
    }
    let answer: PublishAnswer = serde_json::from_slice(&body).with_context(|| {
        format!(
            "journey {}: unexpected answer {}",
            journey.id,
            String::from_utf8_lossy(&body)
        )
    })?;
    crate::print_out(&format!(
        "journey {}: version {} ({})\n",
        journey.id,
        answer.version,
        if answer.created {
            "created"
        } else {
            "unchanged"
        }
    ))?;
    Ok((true, journey.id))
}

/// `GET /v1/journeys/{id}/stats`, as the API shapes it.
pub use waymark::api::{JourneyStats as Stats, StepStats};

pub async fn stats(client: &ApiClient, journey: &str) -> Result<String> {
    let (status, body) = client
        .call(Method::GET, &format!("/v1/journeys/{journey}/stats"), None)
        .await?;
    if !status.is_success() {
        bail!("{}", refusal(status, &body));
    }
    let s: Stats = serde_json::from_slice(&body)
        .with_context(|| format!("unexpected answer {}", String::from_utf8_lossy(&body)))?;
    Ok(table(&s))
}

fn tally(m: &BTreeMap<String, i64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The stats as a text table, one row per step, then a table per split.
pub fn table(s: &Stats) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        "step",
        "entered",
        "waiting",
        "sent",
        "skipped",
        "exited",
        "converted",
    ]
    .map(String::from)
    .to_vec()];
    for st in &s.steps {
        rows.push(vec![
            if st.earlier {
                format!("{} (earlier version)", st.id)
            } else {
                st.id.clone()
            },
            st.entered.to_string(),
            st.waiting.to_string(),
            tally(&st.sent),
            tally(&st.skipped),
            st.exited.to_string(),
            st.converted.to_string(),
        ]);
    }
    let status = match s.status {
        JourneyStatus::Active => String::new(),
        other => format!(" ({})", other.as_str()),
    };
    // The figures are every version's (a user finishes on the version she entered with); the
    // version is the one published now, whose steps come first.
    let mut out = format!(
        "{} v{}{status}, all versions: entered {}, converted {}, exited {}, completed {}, held out {}\n",
        s.journey, s.version, s.entered, s.converted, s.exited, s.completed, s.held_out
    );
    // Names and lists to the left, numbers to the right.
    out.push_str(&lay_out(&rows, "", |i| matches!(i, 1 | 2 | 5 | 6)));
    for st in s.steps.iter().filter(|st| !st.paths.is_empty()) {
        out.push_str(&split_table(st));
    }
    out
}

/// Rows as columns as wide as their widest cell, each line after `indent`; `right(i)` says
/// which columns are numbers (aligned right).
fn lay_out(rows: &[Vec<String>], indent: &str, right: impl Fn(usize) -> bool) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        widths.resize(widths.len().max(r.len()), 0);
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::from(indent);
        for (i, (c, w)) in r.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - c.chars().count());
            if right(i) {
                line.push_str(&pad);
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&pad);
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A split's paths and holdout: who took each, who of them converted, and the rate (an A/B
/// test's result, the holdout's being what the paths are measured against).
fn split_table(st: &StepStats) -> String {
    let mut rows: Vec<Vec<String>> = vec![["path", "entered", "converted", "rate"]
        .map(String::from)
        .to_vec()];
    let named = st.paths.iter().map(|(n, p)| (n.clone(), *p));
    let holdout = st.holdout.map(|p| ("(holdout)".to_string(), p));
    for (name, p) in named.chain(holdout) {
        let rate = if p.entered > 0 {
            format!("{:.1}%", 100.0 * p.converted as f64 / p.entered as f64)
        } else {
            "-".into()
        };
        rows.push(vec![
            name,
            p.entered.to_string(),
            p.converted.to_string(),
            rate,
        ]);
    }
    format!("split {}:\n{}", st.id, lay_out(&rows, "  ", |i| i > 0))
}

/// `GET /v1/users/{id}`, the parts `why` reads.
#[derive(Debug, Deserialize)]
pub struct UserView {
    /// When the view was read (absent from an older API's answer): a pending wake-up before it
    /// is overdue.
    #[serde(default)]
    pub at: Option<jiff::Timestamp>,
    #[serde(default)]
    pub enrollments: Vec<Enrollment>,
    #[serde(default)]
    pub timeline: Vec<Entry>,
    /// What each schedule journey's runs do with the user, judged when the view was asked for
    /// (absent from an older API's answer).
    #[serde(default)]
    pub schedules: Vec<ScheduleAnswer>,
    /// Where the user stands with each `repeated` and `inactive` trigger, judged when the view
    /// was asked for (absent from an older API's answer).
    #[serde(default)]
    pub triggers: Vec<TriggerAnswer>,
    /// The `enrollment_key` path of each journey of her keyed enrollments (absent from an
    /// older API's answer).
    #[serde(default)]
    pub enrollment_keys: BTreeMap<String, String>,
}

pub async fn why(client: &ApiClient, user: &str, journey: Option<&str>) -> Result<String> {
    let path = format!(
        "/v1/users/{}",
        percent_encoding::utf8_percent_encode(user, waymark::api::PATH_SEGMENT)
    );
    let (status, body) = client.call(Method::GET, &path, None).await?;
    if !status.is_success() {
        bail!("{}", refusal(status, &body));
    }
    let view: UserView = serde_json::from_slice(&body)
        .with_context(|| format!("unexpected answer {}", String::from_utf8_lossy(&body)))?;
    if let Some(j) = journey {
        let mentioned = view.enrollments.iter().any(|e| *e.journey == *j)
            || view.timeline.iter().any(|e| *e.journey == *j)
            || view.schedules.iter().any(|s| s.journey == j)
            || view.triggers.iter().any(|t| t.journey == j);
        if !mentioned {
            // Nothing about the user there: say so only of a journey that exists.
            let (status, body) = client.call(Method::GET, "/v1/journeys", None).await?;
            if !status.is_success() {
                bail!("{}", refusal(status, &body));
            }
            let list: Value = serde_json::from_slice(&body)
                .with_context(|| format!("unexpected answer {}", String::from_utf8_lossy(&body)))?;
            let ids: Vec<&str> = list["journeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|h| h["id"].as_str())
                .collect();
            if !ids.contains(&j) {
                bail!("no journey `{j}`: the journeys are {}", ids.join(", "));
            }
        }
    }
    Ok(story(user, &view, journey))
}

/// What happened to a user in each journey (or in `journey`) and why, in time order: their
/// enrollments, then one line a timeline fact, with its reason in full.
pub fn story(user: &str, view: &UserView, journey: Option<&str>) -> String {
    type Told<'a> = (
        Vec<&'a Enrollment>,
        Vec<&'a Entry>,
        Option<&'a ScheduleAnswer>,
        Option<&'a TriggerAnswer>,
    );
    let mut journeys: BTreeMap<&str, Told<'_>> = BTreeMap::new();
    for e in &view.enrollments {
        journeys.entry(&e.journey).or_default().0.push(e);
    }
    for e in &view.timeline {
        journeys.entry(&e.journey).or_default().1.push(e);
    }
    for s in &view.schedules {
        journeys.entry(&s.journey).or_default().2 = Some(s);
    }
    for t in &view.triggers {
        journeys.entry(&t.journey).or_default().3 = Some(t);
    }
    // What her profile did not keep (an identify's bad phone, the traits past its bounds) is in
    // no journey, and bears on every journey's sends: told with each.
    journeys.retain(|j, _| j.is_empty() || journey.is_none_or(|want| want == *j));
    if journeys.keys().all(|j| j.is_empty()) && journey.is_some() {
        journeys.clear();
    }
    if journeys.is_empty() {
        return match journey {
            Some(j) => format!("{user}: nothing in journey {j}\n"),
            // Refusals are kept 15 days (with the event's dedup marker): older ones are gone.
            None => format!(
                "{user}: in no journey, and no journey's trigger refused them in the last 15 days\n"
            ),
        };
    }
    let mut out = String::new();
    for (j, (enrollments, mut entries, schedule, trigger)) in journeys {
        if j.is_empty() {
            out.push_str(&format!("{user}'s profile\n"));
        } else {
            out.push_str(&format!("{user} in {j}\n"));
        }
        for e in enrollments {
            let state = match e.status {
                Status::Active => format!("active at step {}", e.step),
                Status::Exited => "exited".into(),
                Status::Completed => "completed".into(),
                Status::HeldOut => "held out".into(),
                Status::Merged => "merged".into(),
            };
            let ended = match (e.ended_at, e.end_reason.as_deref()) {
                // "completed, at ...: completed" says it twice.
                (Some(at), Some(why)) if why != state => format!(", {}: {why}", seconds(at)),
                (Some(at), _) => format!(", {}", seconds(at)),
                _ => String::new(),
            };
            let waiting = match (e.status, e.pending) {
                (Status::Active, Some(p)) => waiting(e, p, view.at),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  enrollment {} (v{}, entered {} on {}): {state}{waiting}{ended}\n",
                e.id,
                e.version,
                seconds(e.entered_at),
                e.trigger.event
            ));
            // A keyed journey's enrollments (a booking each) told apart by their value.
            if let Some(key) = &e.key {
                let line = match view.enrollment_keys.get(&*e.journey) {
                    Some(path) => {
                        let name = ["event.", "trigger."]
                            .iter()
                            .find_map(|root| path.strip_prefix(root))
                            .unwrap_or(path);
                        format!("    key: {name} = {key}\n")
                    }
                    None => format!("    key: {key}\n"),
                };
                out.push_str(&line);
            }
        }
        entries.sort_by_key(|e| e.at);
        // Several enrollments of the journey (re-entries, a visitor's before a login): each
        // line says whose it is.
        // (A refusal's enrollment is the one that stood in the way, not its own: untagged.)
        let refusal = |e: &Entry| matches!(e.what, What::NotEntered { .. });
        let several = entries
            .iter()
            .filter(|e| !refusal(e))
            .map(|e| &*e.enrollment)
            .filter(|id| !id.is_empty())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1;
        for e in entries {
            let step = e.step.as_deref().unwrap_or("-");
            let step = if several && !e.enrollment.is_empty() && !refusal(e) {
                format!("[{}] {step}", e.enrollment)
            } else {
                step.to_string()
            };
            let detail = match &e.what {
                // Said in full by `describe` already ("it happened at ..."): not twice.
                What::Unmet {
                    detail: Some(d), ..
                } if d.starts_with(waymark::engine::BEFORE_THE_WAIT) => String::new(),
                What::Skipped {
                    detail: Some(d), ..
                }
                | What::NotEntered {
                    detail: Some(d), ..
                }
                | What::Unmet {
                    detail: Some(d), ..
                }
                | What::FellBack {
                    detail: Some(d), ..
                }
                | What::Withdrawn {
                    detail: Some(d), ..
                }
                | What::NotWithdrawn {
                    detail: Some(d), ..
                }
                | What::Entered {
                    detail: Some(d), ..
                } => format!(" ({d})"),
                What::Sent { id, to, .. } => sent_detail(id, to.as_ref()),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {}  {step}: {}{detail}\n",
                seconds(e.at),
                describe(&e.what)
            ));
        }
        if let Some(s) = schedule {
            out.push_str(&schedule_lines(s));
        }
        if let Some(t) = trigger {
            out.push_str(&trigger_lines(t));
        }
    }
    out
}

/// Where a message went and its id (its line's in `waymark dev`'s outbox): ` (to
/// ann@example.com; id cart:ann:1#push#2)`, a push's devices by their platforms (`to 2 devices:
/// fcm, apns`); nothing for an entry stored before a `sent` said them.
fn sent_detail(id: &str, to: Option<&waymark::profile::Address>) -> String {
    use waymark::profile::Address;
    let mut said = Vec::new();
    match to {
        Some(Address::One(a)) => said.push(format!("to {a}")),
        Some(Address::Devices(d)) => said.push(format!(
            "to {} device{}: {}",
            d.len(),
            if d.len() == 1 { "" } else { "s" },
            d.iter()
                .map(|d| d.platform.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => {}
    }
    if !id.is_empty() {
        said.push(format!("id {id}"));
    }
    if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join("; "))
    }
}

/// A `repeated` or `inactive` trigger's answer, after the journey's facts: the trigger, then
/// where the user stands with it as judged when the view was asked for (not a fact of the
/// timeline: a count short of its times, or a check not due, leaves none).
fn trigger_lines(t: &TriggerAnswer) -> String {
    let condition = match &t.condition {
        Some(c) => format!(", where `{c}`"),
        None => String::new(),
    };
    let trigger = match &t.state {
        TriggerState::Repeated {
            event,
            times,
            within,
            ..
        } => format!("repeated {event} {times} times within {within}{condition}"),
        TriggerState::Inactive {
            events, duration, ..
        } => format!("inactive {} for {duration}{condition}", events.join(", ")),
    };
    format!(
        "  trigger: {trigger}\n  as of {}: {} ({})\n",
        seconds(t.at),
        t.reason,
        t.detail
    )
}

/// A schedule journey's answer, after the journey's facts: its runs, then what they do with
/// the user as judged when the view was asked for (not a fact of the timeline: no run keeps
/// one of a user its `where` leaves out).
fn schedule_lines(s: &ScheduleAnswer) -> String {
    let mut runs = Vec::new();
    if let Some(at) = s.last_run {
        runs.push(format!("last run {}", seconds(at)));
    }
    if let Some(at) = s.next_run {
        runs.push(format!("next run {}", seconds(at)));
    }
    let runs = match runs.is_empty() {
        true => String::new(),
        false => format!(": {}", runs.join(", ")),
    };
    let verdict = match (s.reason.as_str(), s.matches) {
        ("entered", _) => "entered".to_string(),
        ("next_run", _) => "matches: the next run enters them".to_string(),
        ("running", _) => "matches: the run still reading the profiles enters them".to_string(),
        (reason, Some(true)) => format!("matches, not entered: {reason}"),
        (reason, Some(false)) => format!("left out of the runs: {reason}"),
        (reason, None) => format!("not in the runs: {reason}"),
    };
    format!(
        "  schedule `{}` in {}{runs}\n  as of {}: {verdict} ({})\n",
        s.cron,
        s.timezone,
        seconds(s.at),
        s.detail
    )
}

/// How long a wake-up may be past its time and still be on time: the scheduler sweeps each
/// minute's timers in the minute after, and the wake-up then takes the steps queue.
const ON_TIME: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// What an active enrollment's pending wake-up `p` waits for, and, as of `now` (the view's
/// time), whether it is overdue: past its time by more than [`ON_TIME`], the engine (a backlog,
/// the scheduler not running) has not woken the user yet, and "waiting until" would read as
/// still to come.
fn waiting(e: &Enrollment, p: Pending, now: Option<jiff::Timestamp>) -> String {
    let what = match (p.resume, e.waiting_for.as_deref()) {
        (Resume::Continue, _) => "waiting".to_string(),
        (Resume::Timeout, Some(event)) => format!("waiting for {event}"),
        (Resume::Timeout, None) => "waiting for an event".to_string(),
        (Resume::Rerun, _) => "send held".to_string(),
        (Resume::Recheck, _) => "waiting for an address".to_string(),
    };
    let late = now.map(|now| now.duration_since(p.at));
    let when = match late {
        Some(by) if by > ON_TIME => format!(
            " (overdue by {}: the engine has not woken them yet: a backlog, the scheduler not running, or a wake-up that failed and sits in a dead-letter queue)",
            rounded(by)
        ),
        Some(by) if by >= jiff::SignedDuration::ZERO => " (due now)".to_string(),
        _ => String::new(),
    };
    format!(", {what} until {}{when}", seconds(p.at))
}

/// A length of time to the minute, as a journey writes one: `12m`, `2h5m`, `3d4h`.
fn rounded(d: jiff::SignedDuration) -> String {
    let minutes = d.as_secs().max(0) / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts = [(days, "d"), (hours, "h"), (minutes, "m")];
    let said: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if said.is_empty() {
        "0m".into()
    } else {
        said
    }
}

/// A time to the second, as a person reads it in a story (the API keeps the nanoseconds).
fn seconds(at: jiff::Timestamp) -> String {
    jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", at).unwrap_or_else(|_| at.to_string())
}

/// Whether two API base URLs name the same place (a trailing `/` aside).
fn same_base(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a loopback port answering every request with `401` (as a `waymark dev` on
    /// another data folder answers a key it does not know); its URL.
    fn refusing_server() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = r#"{"error":"unauthorized"}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    /// A server on a loopback port that takes every `PUT` (a journey published, version 1)
    /// and answers every other request `500`; its URL.
    fn listless_server() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = vec![0u8; 65536];
                let n = stream.read(&mut buf).unwrap_or(0);
                let (status, body) = if buf[..n].starts_with(b"PUT ") {
                    ("200 OK", r#"{"version":1,"created":true}"#)
                } else {
                    (
                        "500 Internal Server Error",
                        r#"{"error":"the store is down"}"#,
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    /// Publishing a folder succeeds when every file was published, even when the list of
    /// published journeys (for the note of those left without a file) cannot be read.
    #[test]
    fn a_publish_stands_when_the_list_for_its_note_fails() {
        let url = listless_server();
        let dir = std::env::temp_dir().join(format!("waymark-listless-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("a.yaml"),
            "id: a\nname: A\ntrigger: {event: e}\nsteps:\n  - id: w\n    wait: 1h\n",
        )
        .expect("write");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = ApiClient::new(Some(&url), Some("k")).expect("a client");
        let published = runtime.block_on(publish(|| Ok(client), std::slice::from_ref(&dir)));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(published.expect("published"), "every file was published");
    }

    /// A 401 to the key read from a data folder says the server there runs on another one
    /// (its `dev.url` is stale); a 401 to a key given by hand is the server's own answer.
    #[test]
    fn a_key_from_a_data_folder_refused_says_the_server_runs_on_another() {
        let url = refusing_server();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let ask =
            |client: &ApiClient| runtime.block_on(client.call(Method::GET, "/v1/users/ann", None));
        let mut client = ApiClient::new(Some(&url), Some("k")).expect("a client");
        client.from_dev = Some(PathBuf::from(".waymark/dev.url"));
        client.key_from = Some(PathBuf::from(".waymark"));
        let e = format!("{:#}", ask(&client).expect_err("refused"));
        assert!(e.contains("401"), "{e}");
        assert!(e.contains("admin key of the data folder .waymark"), "{e}");
        assert!(e.contains("--data DIR"), "{e}");

        client.key_from = None;
        let (status, body) = ask(&client).expect("an answer");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(refusal(status, &body).contains("this needs the admin key"));
    }

    #[test]
    fn why_tells_each_journey_with_its_enrollments_and_the_reasons_in_full() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [{
                "id": "cart:ann:1", "user_id": "ann", "journey": "cart", "version": 2, "n": 1,
                "trigger": {"event": "cart_abandoned", "message_id": "m1", "at": "2026-12-01T10:00:00Z", "properties": {}},
                "entered_at": "2026-12-01T10:00:00Z", "status": "active", "step": "wait_4h", "seq": 3
            }, {
                "id": "cart:ann:0", "user_id": "ann", "journey": "cart", "version": 1, "n": 0,
                "trigger": {"event": "cart_abandoned", "message_id": "m0", "at": "2026-11-01T10:00:00Z", "properties": {}},
                "entered_at": "2026-11-01T10:00:00.5Z", "status": "completed", "step": "email", "seq": 5,
                "ended_at": "2026-11-01T14:30:00.25Z", "end_reason": "completed"
            }],
            "timeline": [
                {"at": "2026-12-01T10:20:00.123456789Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "what": "not_entered", "trigger": "cart_abandoned", "reason": "enrolled",
                 "detail": "in the journey since 2026-12-01T10:00:00Z"},
                {"at": "2026-12-01T10:00:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "what": "entered", "version": 2, "trigger": "cart_abandoned"},
                {"at": "2026-12-01T10:30:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "step": "push", "what": "skipped", "channel": "push", "reason": "no_address"},
                {"at": "2026-12-01T10:30:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "step": "push", "what": "sent", "channel": "email", "id": "cart:ann:1#push#2",
                 "to": "ann@example.com"},
                {"at": "2026-12-01T10:31:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "step": "nudge", "what": "sent", "channel": "push", "locale": "es",
                 "id": "cart:ann:1#nudge#3",
                 "to": [{"platform": "fcm", "token": "t1"}, {"platform": "apns", "token": "t2"}]},
                {"at": "2026-12-01T10:32:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "step": "sms", "what": "sent", "channel": "sms"},
                {"at": "2026-12-01T09:00:00Z", "journey": "digest", "what": "not_entered",
                 "trigger": "schedule", "reason": "closed", "detail": "the journey's `status: closed`: no one enters it"}
            ]
        }))
        .expect("a user view");
        assert_eq!(
            story("ann", &view, None),
            "ann in cart\n\
             \x20 enrollment cart:ann:1 (v2, entered 2026-12-01T10:00:00Z on cart_abandoned): active at step wait_4h\n\
             \x20 enrollment cart:ann:0 (v1, entered 2026-11-01T10:00:00Z on cart_abandoned): completed, 2026-11-01T14:30:00Z\n\
             \x20 2026-12-01T10:00:00Z  -: entered v2 on cart_abandoned\n\
             \x20 2026-12-01T10:20:00Z  -: not entered on cart_abandoned: enrolled (in the journey since 2026-12-01T10:00:00Z)\n\
             \x20 2026-12-01T10:30:00Z  push: skipped push: no_address\n\
             \x20 2026-12-01T10:30:00Z  push: sent email (to ann@example.com; id cart:ann:1#push#2)\n\
             \x20 2026-12-01T10:31:00Z  nudge: sent push (in es) (to 2 devices: fcm, apns; id cart:ann:1#nudge#3)\n\
             \x20 2026-12-01T10:32:00Z  sms: sent sms\n\
             ann in digest\n\
             \x20 2026-12-01T09:00:00Z  -: not entered on schedule: closed (the journey's `status: closed`: no one enters it)\n"
        );
        assert!(story("ann", &view, Some("digest")).starts_with("ann in digest\n"));
        assert_eq!(
            story("ann", &view, Some("onboarding")),
            "ann: nothing in journey onboarding\n"
        );
    }

    /// A keyed journey's enrollments (a booking each) each say their value, and a wake-up past
    /// its time as of the view says it is overdue, not still to come.
    #[test]
    fn why_tells_each_enrollments_key_and_a_wake_up_overdue() {
        let enrollment = |b: &str, at: &str, resume: &str| {
            serde_json::json!({
                "id": format!("checkin:ann:{b}:1"), "user_id": "ann", "journey": "checkin",
                "version": 1, "n": 1, "key": b,
                "trigger": {"event": "flight_booked", "message_id": b, "at": "2026-12-01T09:00:00Z",
                            "properties": {"booking_id": b}},
                "entered_at": "2026-12-01T09:00:00Z", "status": "active", "step": "opens", "seq": 1,
                "pending": {"seq": 1, "at": at, "resume": resume},
                "waiting_for": "payment_received"
            })
        };
        let view: UserView = serde_json::from_value(serde_json::json!({
            "at": "2026-12-04T10:42:30Z",
            "enrollments": [
                enrollment("B1", "2026-12-04T10:30:00Z", "continue"),
                enrollment("B2", "2026-12-04T10:41:00Z", "continue"),
                enrollment("B3", "2026-12-07T10:30:00Z", "timeout"),
                enrollment("B4", "2026-12-01T10:30:00Z", "rerun")
            ],
            "timeline": [],
            "enrollment_keys": {"checkin": "event.booking_id"}
        }))
        .expect("a user view");
        assert_eq!(
            story("ann", &view, None),
            "ann in checkin\n\
             \x20 enrollment checkin:ann:B1:1 (v1, entered 2026-12-01T09:00:00Z on flight_booked): active at step opens, waiting until 2026-12-04T10:30:00Z (overdue by 12m: the engine has not woken them yet: a backlog, the scheduler not running, or a wake-up that failed and sits in a dead-letter queue)\n\
             \x20   key: booking_id = B1\n\
             \x20 enrollment checkin:ann:B2:1 (v1, entered 2026-12-01T09:00:00Z on flight_booked): active at step opens, waiting until 2026-12-04T10:41:00Z (due now)\n\
             \x20   key: booking_id = B2\n\
             \x20 enrollment checkin:ann:B3:1 (v1, entered 2026-12-01T09:00:00Z on flight_booked): active at step opens, waiting for payment_received until 2026-12-07T10:30:00Z\n\
             \x20   key: booking_id = B3\n\
             \x20 enrollment checkin:ann:B4:1 (v1, entered 2026-12-01T09:00:00Z on flight_booked): active at step opens, send held until 2026-12-01T10:30:00Z (overdue by 3d12m: the engine has not woken them yet: a backlog, the scheduler not running, or a wake-up that failed and sits in a dead-letter queue)\n\
             \x20   key: booking_id = B4\n"
        );
        // An older API's answer: no time to judge by, no path to name.
        let mut older = view;
        older.at = None;
        older.enrollment_keys.clear();
        assert!(
            story("ann", &older, None).starts_with(
                "ann in checkin\n\
                 \x20 enrollment checkin:ann:B1:1 (v1, entered 2026-12-01T09:00:00Z on flight_booked): active at step opens, waiting until 2026-12-04T10:30:00Z\n\
                 \x20   key: B1\n"
            ),
            "{}",
            story("ann", &older, None)
        );
    }

    /// With the lines of several enrollments of one journey (a re-entry, a visitor's before a
    /// login), each line says whose it is.
    #[test]
    fn why_tells_whose_line_it_is_when_a_journey_has_several_enrollments() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [],
            "timeline": [
                {"at": "2026-12-01T10:00:00Z", "journey": "cart", "enrollment": "cart:anon:d1:1",
                 "step": "wait", "what": "step"},
                {"at": "2026-12-01T10:05:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "step": "wait", "what": "step"},
                {"at": "2026-12-01T10:06:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "what": "not_entered", "trigger": "cart_abandoned", "reason": "enrolled"}
            ]
        }))
        .expect("a user view");
        assert_eq!(
            story("ann", &view, None),
            "ann in cart\n\
             \x20 2026-12-01T10:00:00Z  [cart:anon:d1:1] wait: step\n\
             \x20 2026-12-01T10:05:00Z  [cart:ann:1] wait: step\n\
             \x20 2026-12-01T10:06:00Z  -: not entered on cart_abandoned: enrolled\n"
        );
    }

    /// What an identify brought that her profile did not keep (a phone that is no number, the
    /// traits past the profile's bounds) is told first, in no journey, also beside one asked for.
    #[test]
    fn why_tells_what_her_profile_did_not_keep() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [],
            "timeline": [
                {"at": "2026-12-01T10:00:00Z", "journey": "cart", "enrollment": "cart:ann:1",
                 "what": "entered", "version": 1, "trigger": "cart_abandoned"},
                {"at": "2026-12-01T09:00:00Z", "journey": "", "what": "not_kept",
                 "fields": ["traits.phone"], "value": "(not shown)",
                 "reason": "must be an E.164 number"},
                {"at": "2026-12-01T09:00:00Z", "journey": "", "what": "not_kept",
                 "fields": ["traits.k1", "traits.k2"], "more": 3,
                 "reason": "the profile keeps at most 1000 traits"}
            ]
        }))
        .expect("a user view");
        let profile = "ann's profile\n\
             \x20 2026-12-01T09:00:00Z  -: not kept: traits.phone = (not shown) (must be an E.164 number)\n\
             \x20 2026-12-01T09:00:00Z  -: not kept: traits.k1, traits.k2 and 3 more (the profile keeps at most 1000 traits)\n";
        let cart = "ann in cart\n\
             \x20 2026-12-01T10:00:00Z  -: entered v1 on cart_abandoned\n";
        assert_eq!(story("ann", &view, None), format!("{profile}{cart}"));
        assert_eq!(
            story("ann", &view, Some("cart")),
            format!("{profile}{cart}")
        );
        assert_eq!(
            story("ann", &view, Some("onboarding")),
            "ann: nothing in journey onboarding\n"
        );
    }

    /// An event an exit did not take because it happened before the trigger (or a wait, before
    /// it began) is told with its times once; a `where` that was false, with what it read.
    #[test]
    fn why_tells_an_event_from_before_the_trigger_once() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [],
            "timeline": [
                {"at": "2026-12-01T10:05:00Z", "journey": "cart", "enrollment": "cart:bob:1",
                 "step": "wait_30m", "what": "unmet", "event": "order_completed", "by": "exit_when",
                 "detail": "happened at 2026-12-01T09:50:00Z, before the enrollment's trigger at 2026-12-01T10:00:00Z: an enrollment's exits and goal hear the events from its trigger on"},
                {"at": "2026-12-01T10:06:00Z", "journey": "cart", "enrollment": "cart:bob:1",
                 "step": "wait_30m", "what": "unmet", "event": "order_completed", "by": "exit_when",
                 "detail": "`where: event.total > 10` was false (event.total = 5)"}
            ]
        }))
        .expect("a user view");
        assert_eq!(
            story("bob", &view, None),
            "bob in cart\n\
             \x20 2026-12-01T10:05:00Z  wait_30m: heard order_completed, which its exit_when did not take: it happened at 2026-12-01T09:50:00Z, before the enrollment's trigger at 2026-12-01T10:00:00Z: an enrollment's exits and goal hear the events from its trigger on\n\
             \x20 2026-12-01T10:06:00Z  wait_30m: heard order_completed, which its exit_when did not take: its `where` was false (`where: event.total > 10` was false (event.total = 5))\n"
        );
    }

    /// A schedule journey's answer is told after the journey's facts, apart from them: its
    /// runs, and what they do with the user as judged when the view was asked for; a user the
    /// `where` leaves out, of whom no run kept anything, has it alone.
    #[test]
    fn why_tells_what_a_schedules_runs_do_with_the_user_judged_now() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [],
            "timeline": [
                {"at": "2026-12-07T08:00:00Z", "journey": "digest", "enrollment": "digest:ann:1",
                 "what": "entered", "version": 1, "trigger": "schedule"}
            ],
            "schedules": [{
                "journey": "digest", "version": 1, "at": "2026-12-14T14:00:00.5Z",
                "cron": "0 9 * * mon", "timezone": "Europe/Paris", "where": "profile.plan == 'free'",
                "last_run": "2026-12-14T08:00:00Z", "next_run": "2026-12-21T08:00:00Z",
                "matches": true, "reason": "reentry", "enrollment": "digest:ann:1",
                "detail": "`reentry: never`, and the user entered on 2026-12-07T08:00:00Z"
            }, {
                "journey": "vip", "version": 2, "at": "2026-12-14T14:00:00.5Z",
                "cron": "0 10 * * *", "timezone": "Asia/Tokyo", "where": "profile.vip_token == 'gold'",
                "last_run": "2026-12-14T01:00:00Z", "next_run": "2026-12-15T01:00:00Z",
                "matches": false, "reason": "condition",
                "detail": "`where: profile.vip_token == 'gold'` is false now (profile.vip_token set (not shown)): the runs leave the user out while it is; the next run, at 2026-12-15T01:00:00Z, reads it again"
            }, {
                "journey": "old", "version": 3, "at": "2026-12-14T14:00:00.5Z",
                "cron": "0 9 * * *", "timezone": "UTC", "last_run": "2026-12-14T09:00:00Z",
                "reason": "closed", "detail": "the journey's `status: closed`: its runs enter no one"
            }]
        }))
        .expect("a user view");
        let digest = "ann in digest\n\
             \x20 2026-12-07T08:00:00Z  -: entered v1 on schedule\n\
             \x20 schedule `0 9 * * mon` in Europe/Paris: last run 2026-12-14T08:00:00Z, next run 2026-12-21T08:00:00Z\n\
             \x20 as of 2026-12-14T14:00:00Z: matches, not entered: reentry (`reentry: never`, and the user entered on 2026-12-07T08:00:00Z)\n";
        let old = "ann in old\n\
             \x20 schedule `0 9 * * *` in UTC: last run 2026-12-14T09:00:00Z\n\
             \x20 as of 2026-12-14T14:00:00Z: not in the runs: closed (the journey's `status: closed`: its runs enter no one)\n";
        let vip = "ann in vip\n\
             \x20 schedule `0 10 * * *` in Asia/Tokyo: last run 2026-12-14T01:00:00Z, next run 2026-12-15T01:00:00Z\n\
             \x20 as of 2026-12-14T14:00:00Z: left out of the runs: condition (`where: profile.vip_token == 'gold'` is false now (profile.vip_token set (not shown)): the runs leave the user out while it is; the next run, at 2026-12-15T01:00:00Z, reads it again)\n";
        assert_eq!(story("ann", &view, None), format!("{digest}{old}{vip}"));
        assert_eq!(story("ann", &view, Some("vip")), vip);
    }

    /// A run minutes old that may still enter the user is told as such, not as the next run's.
    #[test]
    fn why_tells_a_run_still_reading_the_profiles() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [], "timeline": [],
            "schedules": [{
                "journey": "digest", "version": 1, "at": "2026-12-14T08:01:00Z",
                "cron": "0 9 * * mon", "timezone": "Europe/Paris",
                "last_run": "2026-12-14T08:00:00Z", "next_run": "2026-12-21T08:00:00Z",
                "matches": true, "reason": "running", "detail": "…"
            }]
        }))
        .expect("a user view");
        assert_eq!(
            story("ann", &view, None),
            "ann in digest\n\
             \x20 schedule `0 9 * * mon` in Europe/Paris: last run 2026-12-14T08:00:00Z, next run 2026-12-21T08:00:00Z\n\
             \x20 as of 2026-12-14T08:01:00Z: matches: the run still reading the profiles enters them (…)\n"
        );
    }

    /// A count short of its times, or an inactivity check not due, leaves no timeline fact:
    /// `why` tells where the user stands with each such trigger, judged when asked, as it
    /// tells a schedule's runs (and not "in no journey" of a user four lessons into five).
    #[test]
    fn why_tells_a_count_short_of_its_times_and_a_pending_inactivity_check() {
        let view: UserView = serde_json::from_value(serde_json::json!({
            "enrollments": [], "timeline": [],
            "triggers": [{
                "journey": "five_lessons_badge", "version": 1, "at": "2026-12-10T12:00:00.25Z",
                "trigger": "repeated", "event": "lesson_completed", "times": 5, "within": "1w",
                "counted": ["2026-12-04T09:00:00Z", "2026-12-05T09:00:00Z",
                            "2026-12-09T09:00:00Z", "2026-12-10T09:00:00Z"],
                "drops_out_at": "2026-12-11T09:00:00Z",
                "reason": "counting",
                "detail": "4 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-04T09:00:00Z, drops out at 2026-12-11T09:00:00Z; 1 more by 2026-12-11T09:00:00Z makes the count (later, the earliest no longer counts with them)"
            }, {
                "journey": "inactive_winback", "version": 2, "at": "2026-12-10T12:00:00.25Z",
                "where": "profile.plan == 'free'",
                "trigger": "inactive", "events": ["app_opened", "lesson_completed"], "for": "2w",
                "last_activity": "2026-12-10T09:00:00Z", "check_at": "2026-12-18T09:00:00Z",
                "enters_at": "2026-12-24T09:00:00Z", "matches": true,
                "reason": "pending", "detail": "…"
            }]
        }))
        .expect("a user view");
        let badge = "lea in five_lessons_badge\n\
             \x20 trigger: repeated lesson_completed 5 times within 1w\n\
             \x20 as of 2026-12-10T12:00:00Z: counting (4 of 5 lesson_completed within 1w: the earliest counted, at 2026-12-04T09:00:00Z, drops out at 2026-12-11T09:00:00Z; 1 more by 2026-12-11T09:00:00Z makes the count (later, the earliest no longer counts with them))\n";
        let winback = "lea in inactive_winback\n\
             \x20 trigger: inactive app_opened, lesson_completed for 2w, where `profile.plan == 'free'`\n\
             \x20 as of 2026-12-10T12:00:00Z: pending (…)\n";
        assert_eq!(story("lea", &view, None), format!("{badge}{winback}"));
        assert_eq!(story("lea", &view, Some("inactive_winback")), winback);
    }

    /// A user with nothing to show is told how far back refusals reach (they are kept 15
    /// days), not that no trigger ever refused them.
    #[test]
    fn why_of_a_user_with_nothing_kept_says_how_far_back_it_looked() {
        let view: UserView =
            serde_json::from_value(serde_json::json!({"enrollments": [], "timeline": []}))
                .expect("a user view");
        assert_eq!(
            story("bo", &view, None),
            "bo: in no journey, and no journey's trigger refused them in the last 15 days\n"
        );
    }

    #[test]
    fn stats_table_lines_up() {
        let s: Stats = serde_json::from_value(serde_json::json!({
            "journey": "cart", "version": 2, "entered": 10, "converted": 3, "exited": 2,
            "completed": 4, "held_out": 0,
            "steps": [
                {"id": "wait_30m", "entered": 10, "waiting": 2, "sent": {}, "skipped": {}, "exited": 0},
                {"id": "push", "entered": 8, "waiting": 0, "sent": {"push": 7}, "skipped": {"capped": 1}, "exited": 1, "converted": 3}
            ]
        }))
        .expect("stats");
        assert_eq!(
            table(&s),
            "cart v2, all versions: entered 10, converted 3, exited 2, completed 4, held out 0\n\
             step      entered  waiting  sent    skipped   exited  converted\n\
             wait_30m       10        2  -       -              0          0\n\
             push            8        0  push 7  capped 1       1          3\n"
        );
    }

    #[test]
    fn a_splits_paths_get_a_table_of_their_own() {
        let s: Stats = serde_json::from_value(serde_json::json!({
            "journey": "upsell", "version": 1, "entered": 120, "converted": 17, "exited": 0,
            "completed": 108, "held_out": 12,
            "steps": [
                {"id": "copy_test", "entered": 120, "waiting": 0, "exited": 0,
                 "paths": {"features": {"entered": 54, "converted": 5},
                           "momentum": {"entered": 54, "converted": 9},
                           "unused": {"entered": 0, "converted": 0}},
                 "holdout": {"entered": 12, "converted": 3}},
                {"id": "offer", "entered": 54, "waiting": 0, "sent": {"push": 54}, "exited": 0}
            ]
        }))
        .expect("stats");
        assert_eq!(
            table(&s),
            "upsell v1, all versions: entered 120, converted 17, exited 0, completed 108, held out 12\n\
             step       entered  waiting  sent     skipped  exited  converted\n\
             copy_test      120        0  -        -             0          0\n\
             offer           54        0  push 54  -             0          0\n\
             split copy_test:\n  \
               path       entered  converted   rate\n  \
               features        54          5   9.3%\n  \
               momentum        54          9  16.7%\n  \
               unused           0          0      -\n  \
               (holdout)       12          3  25.0%\n"
        );
    }

    #[test]
    fn an_earlier_versions_steps_are_marked() {
        let s: Stats = serde_json::from_value(serde_json::json!({
            "journey": "ver", "version": 2, "entered": 5, "converted": 0, "exited": 0,
            "completed": 5, "held_out": 0,
            "steps": [
                {"id": "mail_v2", "entered": 3, "waiting": 0, "sent": {"push": 3}, "exited": 0},
                {"id": "mail", "entered": 2, "waiting": 0, "sent": {"push": 2}, "exited": 0,
                 "earlier": true}
            ]
        }))
        .expect("stats");
        assert_eq!(
            table(&s),
            "ver v2, all versions: entered 5, converted 0, exited 0, completed 5, held out 0\n\
             step                    entered  waiting  sent    skipped  exited  converted\n\
             mail_v2                       3        0  push 3  -             0          0\n\
             mail (earlier version)        2        0  push 2  -             0          0\n"
        );
    }

    #[test]
    fn a_refusals_hint_is_shown() {
        let body = serde_json::json!({"error": "no user `dev4`",
            "hint": "events sent with anonymousId `dev4` are kept under the user `anon:dev4`: GET /v1/users/anon:dev4"});
        let r = refusal(StatusCode::NOT_FOUND, body.to_string().as_bytes());
        assert_eq!(
            r,
            "404 Not Found: no user `dev4`\n  events sent with anonymousId `dev4` are kept under the user `anon:dev4`: GET /v1/users/anon:dev4"
        );
    }

    #[test]
    fn refusals_list_the_file_errors() {
        let body = serde_json::json!({"error": "invalid journey", "errors": [
            {"file": "j.yaml", "line": 3, "column": 5, "path": "steps[0].wait", "message": "bad"}
        ]});
        let r = refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            body.to_string().as_bytes(),
        );
        assert!(r.contains("line 3:5: steps[0].wait: bad"), "{r}");
    }

    #[test]
    fn urls_must_be_http() {
        assert!(ApiClient::new(Some("ftp://x"), Some("k")).is_err());
        assert!(ApiClient::new(Some("http://127.0.0.1:1/"), Some("k")).is_ok());
        let e = ApiClient::new(Some("http://127.0.0.1:1/"), None)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("WAYMARK_ADMIN_KEY")));
        let e = ApiClient::new(None, Some("k")).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("WAYMARK_API_URL")));
    }
}
