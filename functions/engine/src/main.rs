//! engine: consumes the events and steps queues (partial batch responses) and SES feedback from
//! SNS. Reads its configuration once, then hands every invocation to
//! `waymark::aws::handlers::engine`.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use waymark::aws::{self, handlers, Clients, Config, Secrets};
use waymark::clock::SystemClock;
use waymark::runtime::Runtime;

/// mimalloc (`waymark::alloc`): glibc's malloc and free took 30% of the engine's instructions
/// (see README, Measured).
#[global_allocator]
static ALLOC: waymark::alloc::Mimalloc = waymark::alloc::Mimalloc;

async fn init() -> anyhow::Result<Runtime> {
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let secrets = Secrets::load(&config, &sdk).await?;
    if secrets.signer.is_none() || config.public_base_url.is_none() {
        tracing::warn!(
            "no SIGNING_SECRET_PARAM or PUBLIC_BASE_URL: emails go out without unsubscribe links"
        );
    }
    let clients = Clients::new(&sdk);
    Ok(aws::runtime(
        &config,
        &clients,
        &secrets,
        Arc::new(SystemClock),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let runtime = init().await?;
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // What this invocation has left before its timeout: a batch stops starting messages
        // in time.
        let time_left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .ok();
        handlers::engine(runtime, event.payload, time_left)
            .await
            .map_err(Error::from)
    }))
    .await
}
