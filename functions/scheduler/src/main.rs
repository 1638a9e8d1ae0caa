//! scheduler: every minute, moves the timers that are due onto the queue and starts scheduled
//! journeys. Reads its configuration once, then hands every invocation to
//! `waymark::aws::handlers::scheduler`.

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
    // The scheduler sends nothing itself and reads no secrets.
    let clients = Clients::new(&sdk);
    Ok(aws::runtime(
        &config,
        &clients,
        &Secrets::default(),
        Arc::new(SystemClock),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let runtime = init().await?;
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // What this invocation has left before its timeout: the catch-up stops in time.
        let time_left = event
            .context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .ok();
        handlers::scheduler(runtime, event.payload, time_left)
            .await
            .map_err(Error::from)
    }))
    .await
}
