//! The HTTP API over a test harness: the handler `waymark dev` and the deployed stack serve,
//! with fixed keys, for tests that read the user view as an app's admin would.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use serde_json::Value;
use waymark::api::Api;
use waymark::auth::{Keys, Signer};
use waymark::event::Limits;
use waymark::runtime::{Config, Runtime};

use super::Harness;

pub const WRITE_KEY: &str = "wk_write_3b1f0c9e";
pub const ADMIN_KEY: &str = "wk_admin_a77d2e41";

/// The API as `waymark dev` and the deployed stack serve it, over the harness's store, queue,
/// clock and catalog.
pub fn api(h: &Harness) -> Api {
    let rt = Runtime::new(
        Arc::new(h.store.clone()),
        Arc::new(h.queue.clone()),
        Arc::new(waymark::provider::RecordingSender::new()),
        h.clock.clone(),
        std::time::Duration::ZERO,
        Config::default(),
    )
    .sharing_catalog(&h.rt);
    Api {
        runtime: Arc::new(rt),
        keys: Keys::parse(WRITE_KEY, ADMIN_KEY).expect("keys"),
        signer: Arc::new(Signer::new("secret")),
        limits: Limits::default(),
    }
}

/// `GET /v1/users/{user}` with the admin key: its status and JSON answer (and the text).
pub async fn user_view(api: &Api, user: &str) -> (StatusCode, Value, String) {
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("/v1/users/{user}"))
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .body(Bytes::new())
        .expect("a request");
    let res = api.handle(req).await;
    let text = String::from_utf8_lossy(res.body()).to_string();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (res.status(), v, text)
}
