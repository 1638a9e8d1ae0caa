//! Security: who may call what on the HTTP API (keys, inbox tokens, unsubscribe tokens), that
//! nothing personal reaches the logs, and that templates cannot reach outside their scope. The
//! real `Api` and `Runtime` over in-memory adapters.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use waymark::api::Api;
use waymark::auth::{Keys, Signer};
use waymark::clock::{Clock, ManualClock};
use waymark::engine::Content;
use waymark::event::Limits;
use waymark::provider::RecordingSender;
use waymark::queue::Message;
use waymark::runtime::{Config, Runtime};
use waymark::simulate::DelayQueue;
use waymark::store::{Hooked, Hooks, Key, MemoryStore, Record, Store, StoreError};
use waymark::template;
use waymark::timeline::What;

const WRITE_KEY: &str = "wk_write_3b1f0c9e";
const ADMIN_KEY: &str = "wk_admin_a77d2e41";
const SECRET: &str = "signing-secret-5c0ffee";

const ADA_EMAIL: &str = "ada.lovelace@analytical.example";
const ADA_PHONE: &str = "+14155550199";
const ADA_TOKEN: &str = "fcm-device-token-ada-7f3a9";
const ADA_NAME: &str = "Augusta";

/// The API and the engine, as `waymark dev` wires them, over memory.
struct Stack {
    clock: ManualClock,
    store: MemoryStore,
    queue: DelayQueue,
    sender: RecordingSender,
    signer: Arc<Signer>,
    rt: Arc<Runtime>,
    api: Api,
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("an RFC 3339 time")
}

impl Stack {
    async fn new() -> Stack {
        let start = at("2026-03-02T10:00:00Z");
        let clock = ManualClock::new(start);
        let store = MemoryStore::new();
        let queue = DelayQueue::new(Arc::new(clock.clone()));
        let sender = RecordingSender::new();
        let signer = Arc::new(Signer::new(SECRET));
        let config = Config {
            public_url: Some("https://waymark.test".into()),
            signer: Some(signer.clone()),
            ..Config::default()
        };
        let rt = Arc::new(Runtime::new(
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            Arc::new(sender.clone()),
            Arc::new(clock.clone()),
            std::time::Duration::ZERO,
            config,
        ));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/journeys");
        for f in ["cart_abandonment.yaml", "banking_onboarding.yaml"] {
            let j = waymark::dsl::load_file(&dir.join(f)).expect("an example journey");
            rt.catalog
                .publish(&j, &rt.config.topics, start)
                .await
                .expect("publish");
        }
        rt.tick().await.expect("the scheduler's first run");
        let api = Api {
            runtime: rt.clone(),
            keys: Keys::parse(WRITE_KEY, ADMIN_KEY).expect("keys"),
            signer: signer.clone(),
            limits: Limits::default(),
        };
        Stack {
            clock,
            store,
            queue,
            sender,
            signer,
            rt,
            api,
        }
    }

    /// A request through the API, its whole answer (headers too).
    async fn request(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Bytes> {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.api
            .handle(req.body(body.into()).expect("a request"))
            .await
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String) {
        let res = self.request(method, uri, headers, body.to_string()).await;
        (
            res.status(),
            String::from_utf8_lossy(res.body()).to_string(),
        )
    }

    /// A POST with the write key: its status and JSON answer.
    async fn send(&self, route: &str, body: &Value) -> (StatusCode, Value) {
        let auth = format!("Bearer {WRITE_KEY}");
        let (status, text) = self
            .call(
                Method::POST,
                route,
                &[("authorization", &auth)],
                &body.to_string(),
            )
            .await;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn post(&self, route: &str, body: Value) {
        let (status, v) = self.send(route, &body).await;
        assert_eq!(status, StatusCode::OK, "{route}: {v}");
    }

    /// A GET with the admin key.
    async fn admin_get(&self, uri: &str) -> (StatusCode, String) {
        let auth = format!("Bearer {ADMIN_KEY}");
        self.call(Method::GET, uri, &[("authorization", &auth)], "")
            .await
    }

    /// Publishes a journey that names page and screen views (its exits), so that a profile's
    /// history keeps them (it keeps only the events some journey names).
    async fn name_page_and_screen_views(&self) {
        let j = waymark::dsl::parse(
            "views.yaml",
            r#"
id: views
name: Views
trigger: {event: never_sent}
exit_when:
  - event: page_viewed
  - event: screen_viewed
  - event: group_joined
steps:
  - id: done
    exit: true
"#,
        )
        .expect("a journey");
        self.rt
            .catalog
            .publish(&j, &self.rt.config.topics, self.clock.now())
            .await
            .expect("publish");
    }

    /// A user's inbox, read with her token.
    async fn inbox(&self, user: &str, token: &str) -> Value {
        let (status, text) = self
            .call(
                Method::GET,
                &format!("/v1/users/{user}/inbox"),
                &[("x-waymark-user-token", token)],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str(&text).expect("JSON")
    }

    /// A user's `subscriptions` trait, as the admin API shows it (null: subscribed to all).
    async fn subscriptions(&self, user: &str) -> Value {
        let (_, text) = self.admin_get(&format!("/v1/users/{user}")).await;
        let view: Value = serde_json::from_str(&text).expect("JSON");
        view["profile"]["traits"]["subscriptions"].clone()
    }

    /// Runs the engine and the scheduler up to `until`.
    async fn run_until(&self, until: Timestamp) {
        for _ in 0..10_000 {
            let due = self.queue.take_due(self.clock.now());
            if !due.is_empty() {
                for r in self.rt.handle_batch(&due).await {
                    r.expect("handled");
                }
                continue;
            }
            let timer = self
                .store
                .dump()
                .iter()
                .filter(|r| r.key.pk.starts_with("T#"))
                .filter_map(|r| r.parse::<Message>().ok().and_then(|m| m.due()))
                .min()
                .map(|t| t - SignedDuration::from_secs(60));
            match [self.queue.next_due(), timer].into_iter().flatten().min() {
                Some(t) if t <= until => {
                    self.clock.set(t.max(self.clock.now()));
                    if timer.is_some_and(|x| x <= self.clock.now()) {
                        self.rt.tick().await.expect("tick");
                    }
                }
                _ => break,
            }
        }
        self.clock.set(until.max(self.clock.now()));
    }

    /// Ada and Bob identify; Ada signs up and registers (an in-app guide lands in her inbox).
    async fn ada_and_bob(&self) {
        self.post(
            "/v1/identify",
            json!({"userId": "ada", "traits": {"email": ADA_EMAIL, "phone": ADA_PHONE,
                "first_name": ADA_NAME, "push_tokens": [{"platform": "fcm", "token": ADA_TOKEN}]}}),
        )
        .await;
        self.post(
            "/v1/identify",
            json!({"userId": "bob", "traits": {"email": "bob@builder.example", "first_name": "Bob"}}),
        )
        .await;
        self.post("/v1/track", json!({"userId": "ada", "event": "signed_up"}))
            .await;
        self.run_until(self.clock.now() + SignedDuration::from_secs(60))
            .await;
        self.post(
            "/v1/track",
            json!({"userId": "ada", "event": "registration_completed"}),
        )
        .await;
        self.run_until(self.clock.now() + SignedDuration::from_secs(60))
            .await;
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

const UNAUTHORIZED: &str = r#"{"error":"unauthorized","code":"unauthorized","message":"send a key this server knows: the write key (the admin key for reads and the admin calls) as the Basic-auth user name or as a Bearer token, or for an inbox the user's token in X-Waymark-User-Token"}"#;

fn basic(key: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!("Basic {}", STANDARD.encode(format!("{key}:")))
}

#[test]
fn a_write_key_cannot_read_and_an_admin_key_can() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let journey = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/journeys/cart_abandonment.yaml"),
        )
        .expect("a journey file");
        let admin_routes: [(Method, &str, &str); 5] = [
            (Method::GET, "/v1/users/ada", ""),
            (Method::GET, "/v1/users/ada/inbox", ""),
            (Method::GET, "/v1/journeys", ""),
            (Method::GET, "/v1/journeys/cart_abandonment/stats", ""),
            (Method::PUT, "/v1/journeys/cart_abandonment", &journey),
        ];
        let bearer_write = format!("Bearer {WRITE_KEY}");
        let basic_write = basic(WRITE_KEY);
        let refused: [(&str, Option<&str>); 5] = [
            ("write key (Bearer)", Some(&bearer_write)),
            ("write key (Basic, Segment style)", Some(&basic_write)),
            ("no key", None),
            ("wrong key", Some("Bearer wk_guess")),
            ("admin key with a typo", Some("Bearer wk_admin_a77d2e4")),
        ];
        for (who, auth) in refused {
            for (method, route, body) in &admin_routes {
                let headers: Vec<(&str, &str)> =
                    auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
                let (status, text) = s.call(method.clone(), route, &headers, body).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}: {method} {route}");
                assert_eq!(
                    text, UNAUTHORIZED,
                    "{who}: {method} {route} must say nothing more"
                );
            }
        }
        // Intake without a key is refused the same way.
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/track",
                &[],
                r#"{"userId":"x","event":"e"}"#,
            )
            .await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
        );

        let admin = format!("Bearer {ADMIN_KEY}");
        for (method, route, body) in &admin_routes {
            let (status, text) = s
                .call(method.clone(), route, &[("authorization", &admin)], body)
                .await;
            assert!(
                status.is_success(),
                "admin: {method} {route}: {status} {text}"
            );
        }
        let (_, text) = s
            .call(
                Method::GET,
                "/v1/users/ada",
                &[("authorization", &admin)],
                "",
            )
            .await;
        let view: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            view["profile"]["traits"]["email"], ADA_EMAIL,
            "the admin sees the profile"
        );
    });
}

/// A user id may hold any character: its path segment is percent-decoded (and an encoding that
/// is not UTF-8 is a 400 naming the path).
#[test]
fn a_user_id_with_any_characters_is_found_by_its_percent_encoded_path() {
    block_on(async {
        let s = Stack::new().await;
        s.post(
            "/v1/identify",
            json!({"userId": "zoë/shop 1", "traits": {"first_name": "Zoë"}}),
        )
        .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (status, text) = s.admin_get("/v1/users/zo%C3%AB%2Fshop%201").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let view: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(view["profile"]["user_id"], "zoë/shop 1", "{text}");
        let (status, text) = s.admin_get("/v1/users/zo%FF").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["errors"][0]["field"], "path", "{text}");
    });
}

/// A batch of many bad items gets an answer of bounded size: the first 100 rejected items, how
/// many there were, and a message naming the first ten problems (a 340 KB batch of 170,000 bad
/// items once made a 36 MB answer, more than a Lambda function may return). The good items
/// are queued all the same.
#[test]
fn a_batch_of_many_bad_items_gets_a_bounded_answer() {
    block_on(async {
        let s = Stack::new().await;
        let mut items: Vec<Value> = vec![json!(1); 5_000];
        items.push(json!({"type": "track", "userId": "bob", "event": "signed_up"}));
        let body = json!({ "batch": items }).to_string();
        let auth = format!("Bearer {WRITE_KEY}");
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/batch",
                &[("authorization", &auth)],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.len() < 64 * 1024, "{} bytes", text.len());
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["accepted"], 1, "{v}");
        assert_eq!(v["rejected"].as_array().map(Vec::len), Some(100), "{v}");
        assert_eq!(v["rejected_count"], 5_000, "{v}");
        // Shaped as every other refusal: `error`, `code` and `message`.
        assert_eq!(v["error"], "invalid request", "{v}");
        assert_eq!(v["code"], "invalid_request", "{v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.ends_with("; and 4990 more"), "{message}");

        // Warnings alone: a 200 listing the first 100, with their count.
        let items: Vec<Value> = (0..150)
            .map(|i| json!({"type": "identify", "userId": format!("u{i}"), "traits": {"phone": "call me"}}))
            .collect();
        let body = json!({ "batch": items }).to_string();
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/batch",
                &[("authorization", &auth)],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["accepted"], 150, "{v}");
        assert_eq!(v["warnings"].as_array().map(Vec::len), Some(100), "{v}");
        assert_eq!(v["warnings_count"], 150, "{v}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(message.ends_with("; and 140 more"), "{message}");
    });
}

/// Every refusal has the same shape: `error`, a `code` and a one-line `message` (what Segment's
/// libraries log); a journey refused on publishing lists each problem with its `field`, file,
/// line and column.
#[test]
fn refusals_have_one_shape() {
    block_on(async {
        let s = Stack::new().await;
        let admin = format!("Bearer {ADMIN_KEY}");
        let journey = "id: putj\nname: P\ntrigger: {event: e}\nsteps:\n  - id: w\n    wiat: 3m\n";
        let (status, text) = s
            .call(
                Method::PUT,
                "/v1/journeys/putj",
                &[("authorization", &admin)],
                journey,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["code"], "invalid_journey", "{text}");
        assert_eq!(body["errors"][0]["field"], "steps[0].wiat", "{text}");
        assert_eq!(body["errors"][0]["line"], 6, "{text}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.starts_with(
                "putj.yaml:6:5: steps[0].wiat: unknown field `wiat`: did you mean `wait`?"
            )),
            "{text}"
        );
        for (method, uri, status, code) in [
            (
                Method::GET,
                "/v1/users/nobody",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Method::GET,
                "/v1/journeys/nothing/stats",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Method::GET,
                "/v2/elsewhere",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Method::DELETE,
                "/v1/track",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            // Under a known prefix, yet no route's path with any method: not found.
            (
                Method::GET,
                "/v1/users/ann/timeline",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Method::GET,
                "/v1/track/x",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Method::POST,
                "/v1/journeys/cart/stats/x",
                StatusCode::NOT_FOUND,
                "not_found",
            ),
        ] {
            let (got, text) = s.call(method, uri, &[("authorization", &admin)], "").await;
            assert_eq!(got, status, "{uri}: {text}");
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["code"], code, "{uri}: {text}");
            assert_eq!(body["message"], body["error"], "{uri}: {text}");
        }
        // A 405 says which methods the path takes, in its message and its Allow header.
        let res = s
            .request(
                Method::GET,
                "/v1/journeys/cart",
                &[("authorization", &admin)],
                String::new(),
            )
            .await;
        let text = String::from_utf8_lossy(res.body()).to_string();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{text}");
        let allow = res.headers().get("allow").and_then(|v| v.to_str().ok());
        assert_eq!(allow, Some("PUT"), "{text}");
        assert!(text.contains("(only PUT)"), "{text}");
    });
}

/// An anonymous user is kept as `anon:` + its anonymousId; asking for the bare id says so.
#[test]
fn asking_for_an_anonymous_id_points_to_where_the_user_is_kept() {
    block_on(async {
        let s = Stack::new().await;
        s.post(
            "/v1/track",
            json!({"anonymousId": "dev ice/1", "event": "app_opened"}),
        )
        .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (status, text) = s.admin_get("/v1/users/dev%20ice%2F1").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["error"], "no user `dev ice/1`", "{text}");
        assert_eq!(
            body["hint"],
            "events sent with anonymousId `dev ice/1` are kept under the user `anon:dev ice/1`: GET /v1/users/anon%3Adev%20ice%2F1",
            "{text}"
        );
        // And that path finds the user.
        let (status, text) = s.admin_get("/v1/users/anon%3Adev%20ice%2F1").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        // A user nobody sent gets no hint.
        let (status, text) = s.admin_get("/v1/users/nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert!(body.get("hint").is_none(), "{text}");
    });
}

#[test]
fn segments_page_screen_alias_and_group_calls_are_taken() {
    block_on(async {
        let s = Stack::new().await;
        s.name_page_and_screen_views().await;
        s.ada_and_bob().await;
        // A visitor reads the pricing page, then logs in as ada (analytics.js calls alias).
        s.post(
            "/v1/page",
            json!({"anonymousId": "web-1", "name": "Pricing", "properties": {"path": "/pricing"}}),
        )
        .await;
        s.post("/v1/screen", json!({"userId": "bob", "name": "Cart"}))
            .await;
        s.post("/v1/alias", json!({"previousId": "web-1", "userId": "ada"}))
            .await;
        // Her company, by its long path and analytics.js's one-letter one.
        s.post(
            "/v1/group",
            json!({"userId": "ada", "groupId": "acme", "traits": {"plan": "enterprise"}}),
        )
        .await;
        s.post("/v1/g", json!({"userId": "bob", "groupId": "initech"}))
            .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (status, text) = s.admin_get("/v1/users/ada").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let ada: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(ada["profile"]["anonymous_ids"], json!(["web-1"]), "{text}");
        assert!(
            ada["profile"]["history"]["page_viewed"].is_array(),
            "the page view is ada's: {text}"
        );
        assert!(
            ada["profile"]["history"]["group_joined"].is_array(),
            "the group call is ada's: {text}"
        );
        let (_, text) = s.admin_get("/v1/users/bob").await;
        let bob: Value = serde_json::from_str(&text).expect("JSON");
        assert!(
            bob["profile"]["history"]["screen_viewed"].is_array(),
            "{text}"
        );
        assert!(
            bob["profile"]["history"]["group_joined"].is_array(),
            "{text}"
        );
        // Bad calls name their field.
        for (route, body, field) in [
            ("/v1/alias", json!({"userId": "ada"}), "previousId"),
            ("/v1/page", json!({"userId": ["ada"]}), "userId"),
            ("/v1/group", json!({"userId": "ada"}), "groupId"),
        ] {
            let (status, v) = s.send(route, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route}: {v}");
            assert_eq!(v["errors"][0]["field"], field, "{route}: {v}");
        }
    });
}

/// An alias whose `previousId` is a known user's id (not an anonymous id) merges nothing:
/// two known users are not merged, and no phantom `anon:` user is made; an alias of a user to
/// herself merges nothing either. The user's timeline says so (`not_kept`); of the answers,
/// only the self-alias's does (`warnings`): the other would tell a write key who is a user.
#[test]
fn an_alias_of_a_known_user_or_of_herself_merges_nothing_and_says_so() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let (status, v) = s
            .send("/v1/alias", &json!({"previousId": "bob", "userId": "ada"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v.get("warnings").is_none(), "{v}");
        let (status, v) = s
            .send("/v1/alias", &json!({"previousId": "ada", "userId": "ada"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["warnings"][0]["field"], "previousId", "{v}");
        assert!(
            v["warnings"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("is userId itself")),
            "{v}"
        );
        // In a batch too; an anonymous id beside it merges as ever.
        let (status, v) = s
            .send(
                "/v1/batch",
                &json!({"batch": [
                    {"type": "alias", "previousId": "web-9", "userId": "ada"},
                    {"type": "alias", "previousId": "bob", "userId": "ada"},
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v.get("warnings").is_none(), "{v}");
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;

        let (_, text) = s.admin_get("/v1/users/ada").await;
        let ada: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(ada["profile"]["anonymous_ids"], json!(["web-9"]), "{text}");
        let not_kept: Vec<&str> = ada["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["what"] == "not_kept")
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert_eq!(not_kept.len(), 3, "{text}");
        assert!(
            not_kept.iter().all(|r| r.contains("nothing was merged")),
            "{text}"
        );
        assert_eq!(
            not_kept
                .iter()
                .filter(|r| r.starts_with("`bob` is a known user's userId, not an anonymous id"))
                .count(),
            2,
            "{text}"
        );
        // Bob keeps his profile, and no anonymous `anon:bob` was made.
        let (_, text) = s.admin_get("/v1/users/bob").await;
        let bob: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(bob["profile"]["traits"]["first_name"], "Bob", "{text}");
        assert!(bob["profile"].get("merged_into").is_none(), "{text}");
        let (status, text) = s.admin_get("/v1/users/anon%3Abob").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    });
}

/// A write key ships inside apps: the answer to an alias is the same whether its `previousId`
/// is a known user's id or an id nobody has, so it cannot be asked who is a user. The user's
/// timeline (read with the admin key) says why nothing was merged.
#[test]
fn an_alias_does_not_tell_a_write_key_whether_previous_id_is_a_user() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let (known_status, known) = s
            .send("/v1/alias", &json!({"previousId": "bob", "userId": "r-1"}))
            .await;
        let (unknown_status, unknown) = s
            .send(
                "/v1/alias",
                &json!({"previousId": "nobody-7", "userId": "r-2"}),
            )
            .await;
        assert_eq!(known_status, unknown_status);
        assert_eq!(known, unknown, "a known user's id answered otherwise");
        let (status, v) = s
            .send(
                "/v1/batch",
                &json!({"batch": [
                    {"type": "alias", "previousId": "bob", "userId": "r-1"},
                    {"type": "alias", "previousId": "nobody-8", "userId": "r-2"},
                ]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v.get("warnings").is_none(), "{v}");
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (_, text) = s.admin_get("/v1/users/r-1").await;
        let r1: Value = serde_json::from_str(&text).expect("JSON");
        let reasons: Vec<&str> = r1["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["what"] == "not_kept")
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with("`bob` is a known user's userId")),
            "{text}"
        );
    });
}

/// An app may send its device id both as a guest's `userId` and as the `anonymousId` of a
/// visitor's events: aliased, that visitor merges into the user she turned out to be, though
/// a profile is kept under the bare id too.
#[test]
fn a_visitor_whose_anonymous_id_is_also_a_user_id_merges() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        s.post(
            "/v1/identify",
            json!({"userId": "dev-7", "traits": {"first_name": "Guest"}}),
        )
        .await;
        s.post(
            "/v1/track",
            json!({"anonymousId": "dev-7", "event": "viewed_pricing"}),
        )
        .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (status, v) = s
            .send(
                "/v1/alias",
                &json!({"previousId": "dev-7", "userId": "ada"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;

        let (_, text) = s.admin_get("/v1/users/ada").await;
        let ada: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(ada["profile"]["anonymous_ids"], json!(["dev-7"]), "{text}");
        let (_, text) = s.admin_get("/v1/users/anon%3Adev-7").await;
        let visitor: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(visitor["profile"]["merged_into"], "ada", "{text}");
        // The guest kept under the bare id is left as she was.
        let (_, text) = s.admin_get("/v1/users/dev-7").await;
        let guest: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(guest["profile"]["traits"]["first_name"], "Guest", "{text}");
        assert!(guest["profile"].get("merged_into").is_none(), "{text}");
    });
}

/// Counts the single and multi reads of a store over memory.
#[derive(Clone, Default)]
struct CountedReads {
    gets: Arc<Mutex<usize>>,
    /// The number of keys of each multi-get.
    many: Arc<Mutex<Vec<usize>>>,
}

#[async_trait::async_trait]
impl Hooks for CountedReads {
    async fn get(&self, inner: &MemoryStore, key: &Key) -> Result<Option<Record>, StoreError> {
        *self.gets.lock().expect("gets") += 1;
        inner.get(key).await
    }
    async fn get_many(&self, inner: &MemoryStore, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        self.many.lock().expect("many").push(keys.len());
        inner.get_many(keys).await
    }
}

/// A batch's aliases are told from known users with one multi-get (both keys of each alias:
/// the bare id's profile and the visitor's), not a read an alias: a batch may hold thousands.
#[test]
fn a_batchs_aliases_are_checked_in_one_multi_get() {
    block_on(async {
        let clock = ManualClock::new(at("2026-03-02T10:00:00Z"));
        let store = Hooked::new(MemoryStore::new(), CountedReads::default());
        let rt = Arc::new(Runtime::new(
            Arc::new(store.clone()),
            Arc::new(DelayQueue::new(Arc::new(clock.clone()))),
            Arc::new(RecordingSender::new()),
            Arc::new(clock.clone()),
            std::time::Duration::ZERO,
            Config::default(),
        ));
        let api = Api {
            runtime: rt,
            keys: Keys::parse(WRITE_KEY, ADMIN_KEY).expect("keys"),
            signer: Arc::new(Signer::new(SECRET)),
            limits: Limits::default(),
        };
        let batch: Vec<Value> = (0..150)
            .map(|i| json!({"type": "alias", "previousId": format!("device-{i}"), "userId": format!("user-{i}")}))
            .collect();
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/batch")
            .header("authorization", format!("Bearer {WRITE_KEY}"))
            .body(Bytes::from(json!({ "batch": batch }).to_string()))
            .expect("a request");
        let res = api.handle(req).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(res.body())
        );
        assert_eq!(*store.gets.lock().expect("gets"), 0);
        assert_eq!(*store.many.lock().expect("many"), vec![300]);
    });
}

#[test]
fn the_inbox_opens_with_its_users_token_only() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let ada = s.signer.inbox_token("ada");
        let bob = s.signer.inbox_token("bob");
        let mut tampered = ada.clone();
        let last = tampered.pop().expect("a token");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let other_secret = Signer::new("another-secret").inbox_token("ada");
        let bearer_ada = format!("Bearer {ada}");
        let bearer_write = format!("Bearer {WRITE_KEY}");

        let (status, text) = s
            .call(
                Method::GET,
                "/v1/users/ada/inbox",
                &[("x-waymark-user-token", &ada)],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let inbox: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            inbox["messages"].as_array().map(Vec::len),
            Some(1),
            "the in-app guide: {text}"
        );
        let (status, _) = s
            .call(
                Method::GET,
                "/v1/users/ada/inbox",
                &[("authorization", &bearer_ada)],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "the token as a Bearer works too");

        let refused: [(&str, &str, (&str, &str)); 7] = [
            (
                "another user's token",
                "/v1/users/ada/inbox",
                ("x-waymark-user-token", &bob),
            ),
            (
                "Ada's token on Bob's inbox",
                "/v1/users/bob/inbox",
                ("x-waymark-user-token", &ada),
            ),
            (
                "a tampered token",
                "/v1/users/ada/inbox",
                ("x-waymark-user-token", &tampered),
            ),
            (
                "a token under another secret",
                "/v1/users/ada/inbox",
                ("x-waymark-user-token", &other_secret),
            ),
            (
                "an empty token",
                "/v1/users/ada/inbox",
                ("x-waymark-user-token", ""),
            ),
            (
                "not base64",
                "/v1/users/ada/inbox",
                ("x-waymark-user-token", "%%%"),
            ),
            (
                "the write key",
                "/v1/users/ada/inbox",
                ("authorization", &bearer_write),
            ),
        ];
        for (who, route, header) in refused {
            let (status, text) = s.call(Method::GET, route, &[header], "").await;
            assert_eq!(
                (status, text.as_str()),
                (StatusCode::UNAUTHORIZED, UNAUTHORIZED),
                "{who}"
            );
        }

        // Marking a message read or dismissing it takes the same token, and only hers.
        let inbox: Value = serde_json::from_str(&text).expect("JSON");
        let id = inbox["messages"][0]["id"]
            .as_str()
            .expect("an id")
            .to_string();
        let path = format!("/v1/users/ada/inbox/{}", id.replace('#', "%23"));
        let read = format!("{path}/read");
        let marks = [
            (Method::POST, read.as_str()),
            (Method::DELETE, path.as_str()),
        ];
        for (method, route) in &marks {
            for (who, header) in [
                ("Bob's token", ("x-waymark-user-token", bob.as_str())),
                ("a tampered token", ("x-waymark-user-token", &tampered)),
                ("the write key", ("authorization", &bearer_write)),
            ] {
                let (status, text) = s.call(method.clone(), route, &[header], "").await;
                assert_eq!(
                    (status, text.as_str()),
                    (StatusCode::UNAUTHORIZED, UNAUTHORIZED),
                    "{who}: {method} {route}"
                );
            }
            // Bob's own inbox path with his token does not reach Ada's message.
            let bobs = route.replacen("/users/ada/", "/users/bob/", 1);
            let (status, text) = s
                .call(method.clone(), &bobs, &[("x-waymark-user-token", &bob)], "")
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {bobs}: {text}");
        }
        for (method, route) in &marks {
            let (status, text) = s
                .call(method.clone(), route, &[("x-waymark-user-token", &ada)], "")
                .await;
            assert_eq!(status, StatusCode::OK, "{method} {route}: {text}");
        }
    });
}

/// A user id with any characters (`/`, a space, a letter outside ASCII) reaches her inbox and
/// marks her messages through percent-encoded paths: the id of a message holds her id too.
#[test]
fn inbox_paths_take_any_user_id_percent_encoded() {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    block_on(async {
        let s = Stack::new().await;
        let user = "zoë/shop 1%";
        s.post(
            "/v1/identify",
            json!({"userId": user, "traits": {"email": "zoe@example.com"}}),
        )
        .await;
        s.post("/v1/track", json!({"userId": user, "event": "signed_up"}))
            .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        s.post(
            "/v1/track",
            json!({"userId": user, "event": "registration_completed"}),
        )
        .await;
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let token = s.signer.inbox_token(user);
        let header = ("x-waymark-user-token", token.as_str());
        let encoded: String = utf8_percent_encode(user, NON_ALPHANUMERIC).collect();
        let inbox = s.inbox(&encoded, &token).await;
        let id = inbox["messages"][0]["id"]
            .as_str()
            .expect("a message")
            .to_string();
        assert!(id.contains(user), "{id}");
        let id_encoded: String = utf8_percent_encode(&id, NON_ALPHANUMERIC).collect();
        let path = format!("/v1/users/{encoded}/inbox/{id_encoded}");
        let (status, text) = s
            .call(Method::POST, &format!("{path}/read"), &[header], "")
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (status, text) = s.call(Method::DELETE, &path, &[header], "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(s.inbox(&encoded, &token).await["messages"], json!([]));
    });
}

/// A web app reads and marks its user's inbox from any page's origin (CORS, its preflight
/// answered: the user's token is a header); a message id whose `#` was not encoded (the
/// client dropped the rest) is told so.
#[test]
fn a_web_app_reaches_the_inbox_across_origins() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let ada = s.signer.inbox_token("ada");
        let origin = ("origin", "https://app.example");
        let (status, _) = s
            .call(
                Method::OPTIONS,
                "/v1/users/ada/inbox",
                &[
                    origin,
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "x-waymark-user-token"),
                ],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let res = s
            .request(Method::OPTIONS, "/v1/users/ada/inbox/x/read", &[], "")
            .await;
        let allowed = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert!(allowed("access-control-allow-headers").contains("x-waymark-user-token"));
        assert!(allowed("access-control-allow-methods").contains("DELETE"));
        let res = s
            .request(
                Method::GET,
                "/v1/users/ada/inbox",
                &[("x-waymark-user-token", &ada), origin],
                "",
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*")
        );
        // `POST .../inbox/banking_onboarding:ada:1#account_setup_guide#2/read` as a client
        // sends it unencoded: the path ends at the `#`.
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/users/ada/inbox/banking_onboarding:ada:1",
                &[("x-waymark-user-token", &ada)],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["errors"][0]["field"], "id", "{text}");
        assert!(text.contains("%23"), "{text}");
        // A whole id, encoded, without `/read`: told where marking it read is.
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/users/ada/inbox/banking_onboarding:ada:1%23account_setup_guide%232",
                &[("x-waymark-user-token", &ada)],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("has no `/read`"), "{text}");
        assert!(!text.contains("not a whole message id"), "{text}");
    });
}

/// An app reports what its user did with an in-app message: opened (`read_at`, listed still,
/// out of the `unread` count) or dismissed (no longer listed). Marking again keeps the first
/// time; an unknown id is a 404 naming `id`.
#[test]
fn an_app_marks_inbox_messages_read_and_dismisses_them() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let ada = s.signer.inbox_token("ada");
        let token = ("x-waymark-user-token", ada.as_str());
        let before = s.inbox("ada", &ada).await;
        assert_eq!(before["unread"], 1, "{before}");
        let message = &before["messages"][0];
        assert!(message["read_at"].is_null(), "{before}");
        let id = message["id"].as_str().expect("an id").to_string();
        let path = format!("/v1/users/ada/inbox/{}", id.replace('#', "%23"));

        let read_at = s.clock.now();
        let (status, text) = s
            .call(Method::POST, &format!("{path}/read"), &[token], "")
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let marked: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(marked["id"], id.as_str(), "{text}");
        assert_eq!(marked["read_at"], read_at.to_string(), "{text}");

        let after = s.inbox("ada", &ada).await;
        assert_eq!(after["unread"], 0, "{after}");
        assert_eq!(
            after["messages"][0]["read_at"],
            read_at.to_string(),
            "{after}"
        );

        // Read again later: the first time stands.
        s.clock.set(read_at + SignedDuration::from_mins(5));
        let (status, text) = s
            .call(Method::POST, &format!("{path}/read"), &[token], "")
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let again: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(again["read_at"], read_at.to_string(), "{text}");

        let (status, text) = s.call(Method::DELETE, &path, &[token], "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let dismissed: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            dismissed["dismissed_at"],
            s.clock.now().to_string(),
            "{text}"
        );
        let gone = s.inbox("ada", &ada).await;
        assert_eq!(gone["messages"], json!([]), "{gone}");
        assert_eq!(gone["unread"], 0, "{gone}");
        // Dismissing twice is no error (an app retries), nor is reading it once dismissed: it
        // stays as it was.
        let (status, text) = s.call(Method::DELETE, &path, &[token], "").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let after: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(after, dismissed, "{text}");
        s.clock.set(s.clock.now() + SignedDuration::from_mins(1));
        let (status, text) = s
            .call(Method::POST, &format!("{path}/read"), &[token], "")
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let after: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(after, dismissed, "{text}");

        for unknown in [
            "/v1/users/ada/inbox/banking_onboarding:ada:1%23nothing%231",
            "/v1/users/ada/inbox/banking_onboarding:ada:1%23nothing%231/read",
        ] {
            let method = if unknown.ends_with("/read") {
                Method::POST
            } else {
                Method::DELETE
            };
            let (status, text) = s.call(method, unknown, &[token], "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}: {text}");
            let v: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(v["errors"][0]["field"], "id", "{text}");
            assert_eq!(v["code"], "not_found", "{text}");
        }
    });
}

/// A path's `userId` longer than intake takes one names no user: reading, erasing or opening
/// the inbox of one is a 400 naming `userId` (a key made of a long one is past DynamoDB's
/// bounds: it was a 503 as DynamoDB refused the read), and an inbox message id no sort key can
/// hold is no message, a 404 naming `id`. The longest ids intake takes are asked for as before.
#[test]
fn a_user_id_longer_than_intake_takes_is_refused_naming_it() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let admin = format!("Bearer {ADMIN_KEY}");
        let admin = [("authorization", admin.as_str())];
        // Past DynamoDB's 2,048 bytes of partition key, and just past intake's 256 bytes.
        for user in [
            "u".repeat(3000),
            "u".repeat(257),
            format!("anon:{}", "é".repeat(129)),
        ] {
            let encoded: String =
                percent_encoding::utf8_percent_encode(&user, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            for (method, path) in [
                (Method::GET, format!("/v1/users/{encoded}")),
                (Method::DELETE, format!("/v1/users/{encoded}")),
                (Method::GET, format!("/v1/users/{encoded}/inbox")),
                (
                    Method::POST,
                    format!("/v1/users/{encoded}/inbox/m%231/read"),
                ),
                (Method::DELETE, format!("/v1/users/{encoded}/inbox/m%231")),
            ] {
                let (status, text) = s.call(method.clone(), &path, &admin, "").await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{method} {}: {text}",
                    user.len()
                );
                let body: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(body["errors"][0]["field"], "userId", "{text}");
                let why = body["errors"][0]["message"].as_str().unwrap_or_default();
                assert!(
                    why.starts_with(&format!("is {} bytes", user.len())),
                    "{why}"
                );
            }
        }
        // The longest a user may be kept under: no one here, as before.
        for user in ["u".repeat(256), format!("anon:{}", "u".repeat(256))] {
            let (status, text) = s.admin_get(&format!("/v1/users/{user}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        }
        // A message id past DynamoDB's 1,024 bytes of sort key.
        let ada = s.signer.inbox_token("ada");
        let token = [("x-waymark-user-token", ada.as_str())];
        let long = "m".repeat(1100);
        for (method, path) in [
            (Method::POST, format!("/v1/users/ada/inbox/{long}%231/read")),
            (Method::DELETE, format!("/v1/users/ada/inbox/{long}%231")),
        ] {
            let (status, text) = s.call(method.clone(), &path, &token, "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {text}");
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["errors"][0]["field"], "id", "{text}");
        }
        assert_eq!(s.inbox("ada", &ada).await["unread"], 1);
    });
}

/// Segment's browser library (analytics.js) sends unchanged: each call to its one-letter path,
/// the write key in the body, as text/plain with no header (no preflight); its answers are
/// readable by the page (CORS), a preflight is answered, and a wrong key in the body is refused.
#[test]
fn the_browser_library_sends_with_the_write_key_in_the_body() {
    block_on(async {
        let s = Stack::new().await;
        s.name_page_and_screen_views().await;
        let text = ("content-type", "text/plain");
        let call = |path: &'static str, body: Value| {
            let s = &s;
            async move { s.call(Method::POST, path, &[text], &body.to_string()).await }
        };
        let (status, answer) = call(
            "/v1/i",
            json!({"writeKey": WRITE_KEY, "type": "identify", "userId": "web", "messageId": "i-web",
                   "traits": {"email": "web@example.com"}, "sentAt": "2026-12-01T10:00:00Z",
                   "_metadata": {"bundled": ["Segment.io"]}, "context": {"library": {"name": "analytics.js"}}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, answer) = call(
            "/v1/b",
            json!({"writeKey": WRITE_KEY, "sentAt": "2026-12-01T10:00:00Z", "batch": [
                {"type": "track", "userId": "web", "event": "signed_up", "messageId": "t-web", "writeKey": WRITE_KEY},
                {"type": "page", "userId": "web", "name": "Home", "messageId": "p-web", "writeKey": WRITE_KEY}
            ]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, answer) = call(
            "/v1/t",
            json!({"writeKey": "wk_wrong", "userId": "web", "event": "x", "messageId": "t-bad"}),
        )
        .await;
        assert_eq!(
            (status, answer.as_str()),
            (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
        );
        // A body's key opens nothing but the event calls.
        let (status, _) = s
            .call(
                Method::GET,
                "/v1/journeys",
                &[text],
                &json!({"writeKey": ADMIN_KEY}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        s.run_until(s.clock.now() + SignedDuration::from_secs(60))
            .await;
        let (_, view) = s.admin_get("/v1/users/web").await;
        let view: Value = serde_json::from_str(&view).expect("JSON");
        assert_eq!(
            view["profile"]["traits"]["email"], "web@example.com",
            "{view}"
        );
        let history = &view["profile"]["history"];
        assert!(
            history.get("signed_up").is_some() && history.get("page_viewed").is_some(),
            "{view}"
        );

        // The page may read the answer; the preflight a JSON content type or a header brings
        // is answered.
        let res = s
            .api
            .handle(
                Request::builder()
                    .method(Method::POST)
                    .uri("/v1/t")
                    .body(Bytes::from(
                        json!({"writeKey": WRITE_KEY, "userId": "web", "event": "x", "messageId": "t-2"})
                            .to_string(),
                    ))
                    .expect("a request"),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        let pre = s
            .api
            .handle(
                Request::builder()
                    .method(Method::OPTIONS)
                    .uri("/v1/track")
                    .header("origin", "https://shop.example")
                    .header("access-control-request-method", "POST")
                    .body(Bytes::new())
                    .expect("a request"),
            )
            .await;
        assert_eq!(pre.status(), StatusCode::NO_CONTENT);
        assert_eq!(pre.headers()["access-control-allow-origin"], "*");
        assert!(pre.headers()["access-control-allow-headers"]
            .to_str()
            .is_ok_and(|h| h.contains("authorization")));
    });
}

/// A body with no Authorization header is read for its `writeKey` as leniently as for its
/// events: a byte order mark, or a `NaN` Python's `json.dumps` writes, does not make it a 401.
#[test]
fn the_write_key_in_a_lenient_body_is_found() {
    block_on(async {
        let s = Stack::new().await;
        let text = ("content-type", "text/plain");
        for (route, body) in [
            (
                "/v1/t",
                format!(r#"{{"writeKey": "{WRITE_KEY}", "userId": "py", "event": "paid", "messageId": "t-nan", "properties": {{"amount": NaN}}}}"#),
            ),
            (
                "/v1/b",
                format!("\u{FEFF}{{\"writeKey\": \"{WRITE_KEY}\", \"batch\": [{{\"type\": \"track\", \"userId\": \"py\", \"event\": \"paid\", \"messageId\": \"t-bom\", \"properties\": {{\"amount\": Infinity}}}}]}}"),
            ),
        ] {
            let (status, answer) = s.call(Method::POST, route, &[text], &body).await;
            assert_eq!(status, StatusCode::OK, "{route}: {answer}");
        }
        let (status, answer) = s
            .call(
                Method::POST,
                "/v1/t",
                &[text],
                r#"{"writeKey": "wk_wrong", "userId": "py", "event": "paid", "properties": {"amount": NaN}}"#,
            )
            .await;
        assert_eq!(
            (status, answer.as_str()),
            (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
        );
    });
}

/// One item of a batch nested past serde_json's recursion limit (128 levels) is refused alone,
/// its index and field named, and the batch's other items are taken (was: the whole batch a 400
/// "not valid JSON (recursion limit exceeded)", its good items lost); a track so nested, its
/// write key in the body, is a 400 naming `properties` (not a 401).
#[test]
fn an_item_nested_too_deep_is_refused_alone() {
    block_on(async {
        let s = Stack::new().await;
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"{{"writeKey": "{WRITE_KEY}", "batch": [{{"type": "track", "userId": "deep", "event": "paid", "properties": {{"x": {deep}}}}}, {{"type": "track", "userId": "bob", "event": "paid"}}]}}"#
        );
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/batch",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["accepted"], 1, "{v}");
        assert_eq!(v["rejected"][0]["index"], 0, "{v}");
        assert_eq!(
            v["rejected"][0]["errors"][0]["field"], "batch[0].properties",
            "{v}"
        );
        let body = format!(
            r#"{{"writeKey": "{WRITE_KEY}", "userId": "deep", "event": "paid", "properties": {{"x": {deep}}}}}"#
        );
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/track",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["errors"][0]["field"], "properties", "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nests more than 128 levels deep"), "{v}");
    });
}

/// Segment's Ruby and Java libraries (and its older Android and iOS ones) post their batches to
/// `/v1/import`, analytics-java with a trailing `/` and gzipped, the write key as the Basic-auth
/// user name: each is read as a batch, answered 200 and its events taken.
#[test]
fn the_server_libraries_import_path_is_a_batch() {
    block_on(async {
        let s = Stack::new().await;
        let gzip = |body: &[u8]| {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(body).expect("gzip");
            z.finish().expect("gzip")
        };
        let auth = basic(WRITE_KEY);
        let java = json!({"sentAt": "2026-03-02T10:00:00Z", "batch": [
            {"type": "identify", "userId": "jay", "messageId": "i-jay",
             "traits": {"email": "jay@example.com"}},
            {"type": "track", "userId": "jay", "event": "signed_up", "messageId": "t-jay"},
        ], "context": {"library": {"name": "analytics-java"}}});
        let res = s
            .request(
                Method::POST,
                "/v1/import/",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json; charset=utf-8"),
                    ("content-encoding", "gzip"),
                ],
                gzip(java.to_string().as_bytes()),
            )
            .await;
        let text = String::from_utf8_lossy(res.body()).to_string();
        assert_eq!(res.status(), StatusCode::OK, "{text}");
        let ruby = json!({"batch": [
            {"type": "track", "userId": "ruby", "event": "signed_up", "messageId": "t-ruby"},
        ]});
        let (status, text) = s
            .call(
                Method::POST,
                "/v1/import",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                &ruby.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        s.run_until(s.clock.now() + SignedDuration::from_mins(1))
            .await;
        let (_, view) = s.admin_get("/v1/users/jay").await;
        let view: Value = serde_json::from_str(&view).expect("JSON");
        assert_eq!(
            view["profile"]["traits"]["email"], "jay@example.com",
            "{view}"
        );
        assert!(
            view["profile"]["history"].get("signed_up").is_some(),
            "{view}"
        );
        let (_, view) = s.admin_get("/v1/users/ruby").await;
        let view: Value = serde_json::from_str(&view).expect("JSON");
        assert!(
            view["profile"]["history"].get("signed_up").is_some(),
            "{view}"
        );
    });
}

/// A gzipped body (`Content-Encoding: gzip`, as Segment's Python library sends with `gzip=True`)
/// is read as the JSON it holds; one that inflates past the largest batch (a zip bomb) is refused
/// with 413, one that is no gzip with 400, and an encoding Waymark does not read with 415, each
/// naming what to send.
#[test]
fn gzipped_bodies_are_read_and_bombs_refused() {
    block_on(async {
        let s = Stack::new().await;
        let gzip = |body: &[u8]| {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(body).expect("gzip");
            z.finish().expect("gzip")
        };
        let send = |body: Vec<u8>, encoding: &'static str| {
            s.api.handle(
                Request::builder()
                    .method(Method::POST)
                    .uri("/v1/batch")
                    .header("authorization", format!("Bearer {WRITE_KEY}"))
                    .header("content-type", "application/json")
                    .header("content-encoding", encoding)
                    .body(Bytes::from(body))
                    .expect("a request"),
            )
        };
        let batch = json!({"batch": [
            {"type": "identify", "userId": "zed", "traits": {"email": "zed@example.com"}},
            {"type": "track", "userId": "zed", "event": "signed_up"},
        ]});
        let res = send(gzip(batch.to_string().as_bytes()), "gzip").await;
        let text = String::from_utf8_lossy(res.body()).to_string();
        assert_eq!(res.status(), StatusCode::OK, "{text}");
        s.run_until(s.clock.now() + SignedDuration::from_mins(1))
            .await;
        let (_, view) = s.admin_get("/v1/users/zed").await;
        let view: Value = serde_json::from_str(&view).expect("JSON");
        assert_eq!(view["profile"]["traits"]["email"], "zed@example.com");

        // 10 MB of spaces inflate from about 10 KB: refused before they are read whole.
        let mut bomb = b"{\"batch\": [] ".to_vec();
        bomb.extend(std::iter::repeat_n(b' ', 10 << 20));
        bomb.push(b'}');
        let bomb = gzip(&bomb);
        assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
        let res = send(bomb, "gzip").await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(String::from_utf8_lossy(res.body()).contains("once gunzipped"));

        let res = send(batch.to_string().into_bytes(), "gzip").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(res.body()).contains("is not valid gzip"));

        let res = send(batch.to_string().into_bytes(), "br").await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let text = String::from_utf8_lossy(res.body()).to_string();
        assert!(
            text.contains("Content-Encoding") && text.contains("`br`"),
            "{text}"
        );
    });
}

/// Opening the unsubscribe link (a mail scanner fetching every link in a message, or a person)
/// only shows a page whose button posts back; the POST unsubscribes, answering a browser with a
/// page and a mailbox provider's one-click POST with JSON.
#[test]
fn opening_the_unsubscribe_link_asks_and_only_its_post_unsubscribes() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let token = s
            .signer
            .unsubscribe_token("ada", "email", "cart_abandonment");
        let link = format!("/v1/unsubscribe?token={token}");
        let subscribed = || s.subscriptions("ada");
        let html = ("accept", "text/html,application/xhtml+xml");
        for _ in 0..3 {
            let (status, page) = s.call(Method::GET, &link, &[html], "").await;
            assert_eq!(status, StatusCode::OK);
            assert!(page.contains("<form method=\"post\">"), "{page}");
        }
        assert_eq!(
            subscribed().await,
            Value::Null,
            "opening the link changes nothing"
        );
        let (status, page) = s.call(Method::POST, &link, &[html], "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("You are unsubscribed"), "{page}");
        assert_eq!(subscribed().await, json!({"email": false}));
        let one_click = ("content-type", "application/x-www-form-urlencoded");
        let (status, text) = s
            .call(
                Method::POST,
                &link,
                &[one_click],
                "List-Unsubscribe=One-Click",
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("JSON"),
            json!({"unsubscribed": true, "channel": "email"})
        );
    });
}

#[test]
fn an_unsubscribe_token_unsubscribes_its_user_and_channel_only_and_cannot_be_forged() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let valid = s
            .signer
            .unsubscribe_token("ada", "email", "cart_abandonment");
        let (payload, tag) = valid.split_once('.').expect("payload.tag");
        // Bob's name in Ada's signed payload.
        let decoded =
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("UTF-8");
        let swapped = URL_SAFE_NO_PAD.encode(decoded.replace("\"ada\"", "\"bob\""));
        let forged: Vec<(&str, String)> = vec![
            (
                "random",
                "dW5zdWI6WyJhZGEiXQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            ),
            ("payload changed to Bob", format!("{swapped}.{tag}")),
            (
                "signed with another secret",
                Signer::new("guess").unsubscribe_token("bob", "email", "cart_abandonment"),
            ),
            (
                "tag cut short",
                format!("{payload}.{}", &tag[..tag.len() - 4]),
            ),
            ("no tag", payload.to_string()),
            ("the inbox token", s.signer.inbox_token("ada")),
        ];
        for (what, token) in &forged {
            // Opened: a page saying the link is not valid, for the person who opened it.
            let (status, text) = s
                .call(
                    Method::GET,
                    &format!("/v1/unsubscribe?token={token}"),
                    &[],
                    "",
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            assert!(
                text.starts_with("<!doctype html>")
                    && text.contains("This unsubscribe link is not complete or not valid"),
                "{what}: {text}"
            );
            // Posted (a mailbox provider's one-click unsubscribe): JSON naming `token`.
            let (status, text) = s
                .call(
                    Method::POST,
                    &format!("/v1/unsubscribe?token={token}"),
                    &[],
                    "",
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["code"], "unauthorized", "{what}");
            assert_eq!(body["errors"][0]["field"], "token", "{what}");
        }
        for user in ["ada", "bob"] {
            assert_eq!(
                s.subscriptions(user).await,
                Value::Null,
                "{user} is still subscribed to everything"
            );
        }

        let (status, text) = s
            .call(
                Method::POST,
                &format!("/v1/unsubscribe?token={valid}"),
                &[],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(
            s.subscriptions("ada").await,
            json!({"email": false}),
            "Ada: email only"
        );
        assert_eq!(s.subscriptions("bob").await, Value::Null, "Bob untouched");

        // Both abandon a cart: Ada gets the push but not the email, Bob the email.
        for user in ["ada", "bob"] {
            s.post(
                "/v1/track",
                json!({"userId": user, "event": "cart_abandoned",
                "properties": {"cart_id": "c", "total": 10, "currency": "EUR", "items": []}}),
            )
            .await;
        }
        s.run_until(s.clock.now() + SignedDuration::from_hours(6))
            .await;
        let sent: Vec<(String, String)> = s
            .sender
            .sent()
            .iter()
            .filter(|o| &*o.journey == "cart_abandonment")
            .map(|o| (o.user_id.to_string(), o.channel.to_string()))
            .collect();
        assert_eq!(
            sent,
            vec![
                ("ada".to_string(), "push".to_string()),
                ("bob".to_string(), "email".to_string())
            ]
        );
        let timeline = s.rt.user("ada").await.expect("ada").timeline;
        assert!(timeline
            .iter()
            .any(|e| matches!(&e.what, What::Skipped { reason, .. } if reason == "opted_out")));
    });
}

/// A `Write` that appends to a shared buffer, for capturing log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).to_string()
    }
}

#[test]
fn logs_never_carry_addresses_secrets_or_message_bodies() {
    use tracing_subscriber::layer::SubscriberExt;
    let plain = Captured::default();
    let json_lines = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with({
            let w = plain.clone();
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || w.clone())
        })
        .with({
            let w = json_lines.clone();
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(move || w.clone())
        });
    let (sent, tokens) = tracing::subscriber::with_default(subscriber, || {
        block_on(async {
            let s = Stack::new().await;
            s.ada_and_bob().await;
            // The whole cart journey, with a duplicate, a rejected request and reads.
            let cart = json!({"userId": "ada", "messageId": "cart-1", "event": "cart_abandoned",
                "properties": {"cart_id": "c-9", "total": 129.5, "currency": "EUR",
                    "items": [{"name": "Difference engine", "price": 129.5, "stock": 2}]}});
            s.post("/v1/track", cart.clone()).await;
            s.post("/v1/track", cart).await;
            // An address that is not one is left out of an identify (200, warned); a bad push
            // token refuses it.
            let bad = json!({"userId": "ada", "traits": {"email": "not an address",
                "phone": ADA_PHONE, "push_tokens": [{"platform": "blackberry", "token": ADA_TOKEN}]}});
            let (status, _) = s.send("/v1/identify", &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let warned =
                json!({"userId": "ada", "traits": {"email": "not an address", "phone": ADA_PHONE}});
            let (status, _) = s.send("/v1/identify", &warned).await;
            assert_eq!(status, StatusCode::OK);
            s.run_until(s.clock.now() + SignedDuration::from_hours(24))
                .await;
            let admin = format!("Bearer {ADMIN_KEY}");
            s.call(
                Method::GET,
                "/v1/users/ada",
                &[("authorization", &admin)],
                "",
            )
            .await;
            let inbox = s.signer.inbox_token("ada");
            s.call(
                Method::GET,
                "/v1/users/ada/inbox",
                &[("x-waymark-user-token", &inbox)],
                "",
            )
            .await;
            let unsub = s
                .signer
                .unsubscribe_token("ada", "email", "cart_abandonment");
            s.call(
                Method::GET,
                &format!("/v1/unsubscribe?token={unsub}"),
                &[],
                "",
            )
            .await;
            (s.sender.sent(), vec![inbox, unsub])
        })
    });
    let logs = plain.text() + &json_lines.text();
    if std::env::var_os("WAYMARK_SHOW_LOGS").is_some() {
        println!("{logs}");
    }
    assert!(
        logs.contains("ada"),
        "the capture works (user ids are logged)"
    );
    let channels: Vec<String> = sent.iter().map(|o| o.channel.to_string()).collect();
    assert_eq!(
        channels,
        ["push", "email"],
        "the cart journey's push and email went out"
    );

    let mut secret: Vec<String> = vec![
        ADA_EMAIL.into(),
        ADA_PHONE.into(),
        ADA_TOKEN.into(),
        ADA_NAME.into(),
        "bob@builder.example".into(),
        "Difference engine".into(),
        WRITE_KEY.into(),
        ADMIN_KEY.into(),
        SECRET.into(),
    ];
    secret.extend(tokens);
    for o in &sent {
        let texts: Vec<&str> = match o.content.as_ref() {
            Content::Email {
                subject,
                html,
                text,
                unsubscribe_url,
            } => [
                Some(subject),
                html.as_ref(),
                text.as_ref(),
                unsubscribe_url.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect(),
            Content::Sms { body, .. } => vec![body.as_str()],
            Content::Push { title, body, .. } | Content::InApp { title, body, .. } => {
                vec![title.as_str(), body.as_str()]
            }
            Content::Webhook { url, body, .. } => [Some(url), body.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        };
        for t in texts {
            secret.push(t.to_string());
            // Each line of a longer body too, so that no part of it slips into a log line.
            secret.extend(
                t.lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 16)
                    .map(str::to_string),
            );
        }
    }
    for s in &secret {
        assert!(!logs.contains(s.as_str()), "the logs carry {s:?}");
        let escaped = serde_json::to_string(s).expect("JSON");
        assert!(
            !logs.contains(escaped.trim_matches('"')),
            "the JSON logs carry {s:?}"
        );
    }
}

#[test]
fn templates_cannot_read_files_or_the_environment() {
    let ctx = json!({"profile": {"first_name": "Ada"}, "event": {}, "user_id": "ada"});
    let path = std::env::var("PATH").unwrap_or_default();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    // Reaching outside the template: refused.
    for src in [
        "{% include '/etc/passwd' %}",
        "{% include 'Cargo.toml' %}",
        "{% import '/etc/passwd' as p %}{{ p }}",
        "{% from '/etc/passwd' import x %}{{ x }}",
        "{% extends '/etc/passwd' %}",
        "{% include ['/etc/hostname', '/etc/passwd'] %}",
    ] {
        for html in [false, true] {
            let r = template::render(src, &ctx, html);
            assert!(r.is_err(), "{src} rendered {r:?}");
        }
    }
    // Names that would mean the environment elsewhere: unknown here, caught by `check`, and
    // empty if rendered anyway.
    for src in [
        "{{ env }}",
        "{{ env.PATH }}",
        "{{ environ['PATH'] }}",
        "{{ os.environ }}",
        "{{ config }}",
        "{{ __builtins__ }}",
        "{{ lookup('env', 'PATH') }}",
    ] {
        assert!(template::check(src).is_err(), "{src} passes check");
        if let Ok(out) = template::render(src, &ctx, false) {
            assert!(
                (path.is_empty() || !out.contains(&path))
                    && (passwd.is_empty() || !out.contains(passwd.trim())),
                "{src} rendered {out:?}"
            );
        }
    }
    // What the template may see is its own scope; even a dump of it holds nothing else.
    for src in [
        "{{ self }}",
        "{{ debug() }}",
        "{{ namespace() }}",
        "{% for k in profile %}{{ k }}{% endfor %}",
    ] {
        if let Ok(out) = template::render(src, &ctx, false) {
            assert!(
                path.is_empty() || !out.contains(&path),
                "{src} rendered {out:?}"
            );
        }
    }
    // Work is bounded.
    let r = template::render(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        &ctx,
        false,
    );
    assert!(r.is_err(), "an endless render is stopped");
}

/// Rendered templates are kept in a process-wide cache named by their own source text, so an
/// `include` can reach a cached template, but only by spelling out its whole text: it renders
/// exactly what writing that text inline would, and nothing that is not already in the journey.
#[test]
fn an_include_reaches_nothing_beyond_its_own_text() {
    let ctx = json!({"profile": {"first_name": "Ada", "email": ADA_EMAIL}, "event": {}, "user_id": "ada"});
    let other = "Dear {{ profile.first_name }} <{{ profile.email }}>";
    let inline = template::render(other, &ctx, false).expect("renders");
    let src = format!(
        "{{% include {} %}}",
        serde_json::to_string(&format!("t:{other}")).expect("JSON")
    );
    if let Ok(out) = template::render(&src, &ctx, false) {
        assert_eq!(out, inline);
    }
    let never_rendered = "{% include \"t:{{ profile.phone }} was never rendered\" %}";
    assert!(template::render(never_rendered, &ctx, false).is_err());
}

/// An identify whose address is not one is taken without it, with the rest of its traits (an
/// opt-out among them), and the answer names the address left out: Segment's libraries do not
/// send a refused request again, so refusing it would lose the opt-out. Spaces around an
/// address are trimmed; anything else wrong still refuses the call.
#[test]
fn a_bad_address_in_an_identify_is_left_out_and_the_rest_applied() {
    block_on(async {
        let s = Stack::new().await;
        s.ada_and_bob().await;
        let post = |route: &'static str, body: Value| {
            let s = &s;
            async move { s.send(route, &body).await }
        };
        let traits = |user: &'static str| {
            let s = &s;
            async move {
                let (_, text) = s.admin_get(&format!("/v1/users/{user}")).await;
                let view: Value = serde_json::from_str(&text).expect("JSON");
                view["profile"]["traits"].clone()
            }
        };

        // Spaces around the address: trimmed, and taken.
        let (status, v) = post(
            "/v1/identify",
            json!({"userId": "optx", "traits": {"email": " optx@example.com ", "phone": " +14155550123\t"}}),
        )
        .await;
        assert_eq!((status, v.get("warnings")), (StatusCode::OK, None), "{v}");

        // The tester's identifies: the opt-out and the name are applied, the address kept.
        for (user, email) in [("optx", "optx@example.com x"), ("ada", "")] {
            let (status, v) = post(
                "/v1/identify",
                json!({"userId": user, "traits": {"email": email, "first_name": "Changed",
                    "subscriptions": {"email": false}}}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(v["success"], true, "{v}");
            assert_eq!(v["warnings"][0]["field"], "traits.email", "{v}");
            assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{v}");
            assert!(v["warnings"][0].get("index").is_none(), "{v}");
            let message = v["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with("traits.email: ") && message.contains("left out"),
                "{v}"
            );
        }
        s.run_until(s.clock.now() + SignedDuration::from_mins(1))
            .await;
        for (user, kept) in [("optx", "optx@example.com"), ("ada", ADA_EMAIL)] {
            let t = traits(user).await;
            assert_eq!(t["email"], kept, "{user}: {t}");
            assert_eq!(t["first_name"], "Changed", "{user}: {t}");
            assert_eq!(t["subscriptions"]["email"], false, "{user}: {t}");
        }
        assert_eq!(traits("optx").await["phone"], "+14155550123");

        // In a batch, each warning names its item by index.
        let (status, v) = post(
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "bob", "event": "signed_up"},
                {"type": "identify", "userId": "bob", "traits": {"phone": "call me", "plan": "pro"}},
            ]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["accepted"], 2, "{v}");
        assert_eq!(v["warnings"][0]["index"], 1, "{v}");
        assert_eq!(v["warnings"][0]["field"], "batch[1].traits.phone", "{v}");
        // With a rejected item too: a 400 that lists both.
        let (status, v) = post(
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "bob"},
                {"type": "identify", "userId": "bob", "traits": {"email": "bob@"}},
            ]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["rejected"][0]["errors"][0]["field"], "batch[0].event");
        assert_eq!(v["warnings"][0]["field"], "batch[1].traits.email", "{v}");
        assert_eq!(v["code"], "invalid_request");

        // A zone that is not one is left out the same way.
        let (status, v) = post(
            "/v1/identify",
            json!({"userId": "optx", "traits": {"timezone": "Mars/Base", "plan": "pro"}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["warnings"][0]["field"], "traits.timezone", "{v}");

        // Anything else wrong refuses the identify, the bad address and zone named with it.
        let (status, v) = post(
            "/v1/identify",
            json!({"userId": "optx", "traits": {"email": "x", "timezone": "Mars/Base",
                "subscriptions": {"email": true},
                "push_tokens": [{"platform": "blackberry", "token": "t"}]}}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        let mut fields: Vec<&str> = v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "traits.email",
                "traits.push_tokens[0].platform",
                "traits.timezone"
            ],
            "{v}"
        );
        s.run_until(s.clock.now() + SignedDuration::from_mins(1))
            .await;
        assert_eq!(traits("optx").await["subscriptions"]["email"], false);
    });
}

/// A `sentAt` that is not a time is left out with a warning naming it, at the call's level,
/// the batch's and an item's: it only corrects the sender's clock, and refusing the events for
/// it would lose them (Segment's libraries do not send a refused request again). The events
/// are taken, their timestamps as sent.
#[test]
fn a_sent_at_that_is_not_a_time_is_left_out_naming_it() {
    block_on(async {
        let s = Stack::new().await;
        for (n, bad) in [json!("yesterday"), json!(1764583200), json!({"at": "now"})]
            .into_iter()
            .enumerate()
        {
            for (route, body, field) in [
                (
                    "/v1/track",
                    json!({"userId": "u", "event": "e", "sentAt": bad, "messageId": format!("t{n}")}),
                    "sentAt",
                ),
                (
                    "/v1/identify",
                    json!({"userId": "u", "sentAt": bad, "timestamp": "2026-03-02T09:59:00Z",
                        "messageId": format!("i{n}")}),
                    "sentAt",
                ),
                (
                    "/v1/batch",
                    json!({"sentAt": bad, "batch": [{"type": "track", "userId": "u", "event": "e",
                        "messageId": format!("b{n}")}]}),
                    "sentAt",
                ),
                (
                    "/v1/batch",
                    json!({"batch": [{"type": "track", "userId": "u", "event": "e", "sentAt": bad,
                        "messageId": format!("c{n}")}]}),
                    "batch[0].sentAt",
                ),
            ] {
                let (status, v) = s.send(route, &body).await;
                assert_eq!(status, StatusCode::OK, "{route} {body}: {v}");
                assert_eq!(v["accepted"], 1, "{route} {body}: {v}");
                assert_eq!(v["warnings"][0]["field"], field, "{route} {body}: {v}");
                assert!(v["message"].as_str().is_some_and(|m| m.contains(field)));
            }
        }
    });
}

/// A body over the largest batch is a 413 in the shape of every refusal (`code`, `message`,
/// `errors`), readable by a web page on an event route, gzipped or not.
#[test]
fn a_body_over_the_largest_batch_is_a_413_like_every_refusal() {
    block_on(async {
        let s = Stack::new().await;
        let auth = format!("Bearer {WRITE_KEY}");
        let mut big = br#"{"batch": [], "pad": ""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', waymark::event::MAX_BATCH_BYTES));
        big.extend(br#""}"#);
        for route in ["/v1/batch", "/v1/b", "/v1/track", "/v1/identify"] {
            let res = s
                .request(
                    Method::POST,
                    route,
                    &[("authorization", &auth)],
                    big.clone(),
                )
                .await;
            assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{route}");
            assert_eq!(
                res.headers()
                    .get("access-control-allow-origin")
                    .and_then(|v| v.to_str().ok()),
                Some("*"),
                "{route}"
            );
            let v: Value = serde_json::from_slice(res.body()).expect("JSON");
            assert_eq!(v["code"], "invalid_request", "{route}: {v}");
            assert_eq!(v["errors"][0]["field"], "body", "{route}: {v}");
            assert!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("body: ") && m.contains("500 KB")),
                "{route}: {v}"
            );
        }
        // A path that is not UTF-8 once decoded: the inbox's refusal is readable by a page,
        // an admin route's is not.
        for (path, cors) in [("/v1/users/%FF/inbox", true), ("/v1/users/%FF", false)] {
            let origin = [("origin", "https://app.example")];
            let res = s.request(Method::GET, path, &origin, Bytes::new()).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(
                res.headers().contains_key("access-control-allow-origin"),
                cors,
                "{path}"
            );
            if cors {
                // Its preflight passes, so the browser sends the call and reads why.
                let pre = s
                    .request(Method::OPTIONS, path, &origin, Bytes::new())
                    .await;
                assert!(pre.status().is_success(), "{path}: {}", pre.status());
                assert!(
                    pre.headers().contains_key("access-control-allow-headers"),
                    "{path}"
                );
            }
        }
        // What `waymark dev` answers when it stops reading such a body: the same.
        for (path, cors) in [
            ("/v1/batch", true),
            ("/v1/t/", true),
            ("/v1/journeys/x", false),
        ] {
            let res = waymark::api::too_large_at(path);
            assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(
                res.headers().contains_key("access-control-allow-origin"),
                cors,
                "{path}"
            );
            let v: Value = serde_json::from_slice(res.body()).expect("JSON");
            assert_eq!(v["code"], "invalid_request", "{path}: {v}");
            // What to do says what was sent: events, or a journey.
            let message = v["message"].as_str().unwrap_or_default();
            assert_eq!(
                message.contains("send the events in smaller batches"),
                cors,
                "{path}: {message}"
            );
            assert_eq!(
                message.contains("a journey file"),
                !cors,
                "{path}: {message}"
            );
        }
    });
}

/// A queue that refuses every message for what it holds (as SQS refuses a sender fault), or
/// cannot be reached.
struct RefusingQueue(waymark::queue::QueueError);

#[async_trait::async_trait]
impl waymark::queue::Queue for RefusingQueue {
    async fn send(
        &self,
        _queue: waymark::queue::QueueName,
        _messages: &[waymark::queue::Outbound],
    ) -> Result<(), waymark::queue::QueueError> {
        Err(self.0.clone())
    }
}

/// Events the queue refuses for what they hold are a 400 naming the body (sending them again
/// cannot succeed, and Segment's libraries do not); a queue that cannot be reached is a 503,
/// which they retry.
#[test]
fn events_the_queue_refuses_are_a_400_and_a_queue_down_a_503() {
    use waymark::queue::QueueError;
    block_on(async {
        for (refusal, status) in [
            (
                QueueError::Rejected("SQS refused a message: InvalidMessageContents".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                QueueError::Unavailable("SQS SendMessageBatch: AccessDenied".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            let clock = ManualClock::new(at("2026-03-02T10:00:00Z"));
            let rt = Arc::new(Runtime::new(
                Arc::new(MemoryStore::new()),
                Arc::new(RefusingQueue(refusal)),
                Arc::new(RecordingSender::new()),
                Arc::new(clock),
                std::time::Duration::ZERO,
                Config::default(),
            ));
            let api = Api {
                runtime: rt,
                keys: Keys::parse(WRITE_KEY, ADMIN_KEY).expect("keys"),
                signer: Arc::new(Signer::new(SECRET)),
                limits: Limits::default(),
            };
            for (route, body) in [
                ("/v1/track", json!({"userId": "u", "event": "e\u{ffff}"})),
                (
                    "/v1/batch",
                    json!({"batch": [{"type": "track", "userId": "u", "event": "e"}]}),
                ),
            ] {
                let res = api
                    .handle(
                        Request::builder()
                            .method(Method::POST)
                            .uri(route)
                            .header("authorization", format!("Bearer {WRITE_KEY}"))
                            .body(Bytes::from(body.to_string()))
                            .expect("a request"),
                    )
                    .await;
                assert_eq!(res.status(), status, "{route}");
                if status == StatusCode::BAD_REQUEST {
                    let v: Value = serde_json::from_slice(res.body()).expect("JSON");
                    assert_eq!(v["errors"][0]["field"], "body", "{v}");
                    assert_eq!(v["code"], "invalid_request", "{v}");
                    assert!(
                        v["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("InvalidMessageContents")),
                        "{v}"
                    );
                }
            }
        }
    });
}

/// The API's identify, alone or in a batch, is the identify a `trait_changed` journey watches:
/// the same runtime path as `waymark simulate`'s, here through the HTTP handler `waymark dev`
/// and the intake Lambda share; `GET /v1/journeys` lists the journey, and the user's timeline
/// names the identify as her trigger.
#[test]
fn an_identify_through_the_api_or_a_batch_enters_a_trait_changed_journey() {
    block_on(async {
        let s = Stack::new().await;
        let j = waymark::dsl::parse(
            "upgrade.yaml",
            r#"
id: upgrade
name: Upgrade
trigger:
  trait_changed: plan
  where: "event.from == 'free' and event.to == 'pro'"
steps:
  - id: welcome
    send: {email: {subject: "Welcome to {{ event.to }}", text: "."}}
"#,
        )
        .expect("a journey");
        s.rt.catalog
            .publish(&j, &s.rt.config.topics, s.clock.now())
            .await
            .expect("publish");
        s.post(
            "/v1/identify",
            json!({"userId": "ada", "messageId": "i-1", "traits": {"email": ADA_EMAIL, "plan": "free"}}),
        )
        .await;
        s.run_until(s.clock.now()).await;
        s.post(
            "/v1/batch",
            json!({"batch": [{"type": "identify", "userId": "ada", "messageId": "i-2", "traits": {"plan": "pro"}}]}),
        )
        .await;
        s.run_until(s.clock.now()).await;
        let sent: Vec<String> = s
            .sender
            .sent()
            .iter()
            .filter(|o| &*o.journey == "upgrade")
            .map(|o| match &*o.content {
                Content::Email { subject, .. } => format!("{} {subject}", o.user_id),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, ["ada Welcome to pro"]);
        let (status, text) = s.admin_get("/v1/journeys").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains(r#""id":"upgrade""#), "{text}");
        let (_, text) = s.admin_get("/v1/users/ada").await;
        let view: Value = serde_json::from_str(&text).expect("JSON");
        let trigger = view["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["journey"] == "upgrade" && e["what"] == "entered")
            .map(|e| e["trigger"].clone());
        assert_eq!(trigger, Some(json!("identify")), "{text}");
    });
}

/// A version whose `enrollment_key` is not the published one's (added, changed, removed) is
/// refused, `409` naming the field: the key names the records her enrollments are in.
/// Another change of a keyed journey publishes.
#[test]
fn a_publish_that_changes_the_enrollment_key_is_refused() {
    block_on(async {
        let s = Stack::new().await;
        let admin = format!("Bearer {ADMIN_KEY}");
        let text = |key: &str, subject: &str| {
            format!("id: keyj\nname: K\ntrigger: {{event: booked}}\n{key}steps:\n  - id: s\n    send: {{email: {{subject: {subject}, text: y}}}}\n")
        };
        let put = |body: String| {
            let s = &s;
            let admin = &admin;
            async move {
                s.call(
                    Method::PUT,
                    "/v1/journeys/keyj",
                    &[("authorization", admin)],
                    &body,
                )
                .await
            }
        };
        let keyed = "enrollment_key: event.booking_id\n";
        let (status, text1) = put(text(keyed, "a")).await;
        assert_eq!(status, StatusCode::CREATED, "{text1}");
        for (key, says) in [
            ("enrollment_key: event.flight\n", "`event.flight` here"),
            ("", "none here"),
        ] {
            let (status, body) = put(text(key, "a")).await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            let v: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(v["code"], "enrollment_key_changed", "{body}");
            assert_eq!(v["errors"][0]["field"], "enrollment_key", "{body}");
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.contains(says), "{message}");
            assert!(message.contains("new journey"), "{message}");
        }
        let (status, body) = put(text(keyed, "b")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // And an unkeyed journey may not gain one.
        let plain = text("", "a").replace("keyj", "plainj");
        let (status, body) = s
            .call(
                Method::PUT,
                "/v1/journeys/plainj",
                &[("authorization", &admin)],
                &plain,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = s
            .call(
                Method::PUT,
                "/v1/journeys/plainj",
                &[("authorization", &admin)],
                &text(keyed, "a").replace("keyj", "plainj"),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    });
}

/// A path's journey id no journey could have (past the 64 bytes a journey file's `id` may have,
/// up to past DynamoDB's 2,048 bytes of partition key) is answered as any id of no journey is,
/// never with a store's refusal of the key (a 503): its stats are a 404, and publishing it is
/// refused naming `id`: a 422 when the file has the same id (what an id may be), a 400 when the
/// file has another.
#[test]
fn a_journey_id_no_journey_could_have_is_answered_as_unknown() {
    block_on(async {
        let s = Stack::new().await;
        let admin = format!("Bearer {ADMIN_KEY}");
        let admin = [("authorization", admin.as_str())];
        for id in ["j".repeat(3000), "j".repeat(65)] {
            let (status, text) = s
                .call(Method::GET, &format!("/v1/journeys/{id}/stats"), &admin, "")
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{}: {text}", id.len());
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["code"], "not_found", "{text}");
            let file = format!(
                "id: {id}\nname: P\ntrigger: {{event: e}}\nsteps:\n  - id: w\n    wait: 3m\n"
            );
            let (status, text) = s
                .call(Method::PUT, &format!("/v1/journeys/{id}"), &admin, &file)
                .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{}: {text}",
                id.len()
            );
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["errors"][0]["field"], "id", "{text}");
            let why = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(why.contains("must be 1–64 lowercase letters"), "{why}");
            let other = "id: putj\nname: P\ntrigger: {event: e}\nsteps:\n  - id: w\n    wait: 3m\n";
            let (status, text) = s
                .call(Method::PUT, &format!("/v1/journeys/{id}"), &admin, other)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {text}", id.len());
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["errors"][0]["field"], "id", "{text}");
        }
        // Nothing was published.
        let (status, text) = s.admin_get("/v1/journeys").await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        let ids: Vec<&str> = body["journeys"]
            .as_array()
            .map(|js| js.iter().filter_map(|j| j["id"].as_str()).collect())
            .unwrap_or_default();
        assert!(!ids.is_empty(), "{text}");
        assert!(ids.iter().all(|id| id.len() <= 64), "{ids:?}");
    });
}
