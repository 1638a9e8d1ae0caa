//! intake: the HTTP API behind API Gateway. Reads its configuration and keys once, then hands
//! every request to `waymark::aws::handlers::intake`.

use std::sync::Arc;

use anyhow::Context as _;
use lambda_http::{service_fn, Body, Error, Request};
use waymark::api::Api;
use waymark::aws::{self, handlers, Clients, Config, Secrets};
use waymark::clock::SystemClock;
use waymark::event::Limits;

/// mimalloc (`waymark::alloc`): glibc's malloc and free took 30% of the engine's instructions
/// (see README, Measured).
#[global_allocator]
static ALLOC: waymark::alloc::Mimalloc = waymark::alloc::Mimalloc;

async fn init() -> anyhow::Result<Api> {
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let mut secrets = Secrets::load(&config, &sdk).await?;
    let keys = secrets
        .keys
        .take()
        .context("intake needs its API keys: set WRITE_KEYS_PARAM and ADMIN_KEYS_PARAM")?;
    let signer = secrets
        .signer
        .clone()
        .context("intake needs the signing secret: set SIGNING_SECRET_PARAM")?;
    let clients = Clients::new(&sdk);
    let runtime = aws::runtime(&config, &clients, &secrets, Arc::new(SystemClock));
    Ok(Api {
        runtime: Arc::new(runtime),
        keys,
        signer,
        limits: Limits::default(),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let api = init().await?;
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        let response = handlers::intake(api, request).await;
        // lambda_http sends JSON (by its content type) as text, anything else base64-encoded.
        Ok::<_, Error>(response.map(|body| Body::from(body.to_vec())))
    }))
    .await
}
