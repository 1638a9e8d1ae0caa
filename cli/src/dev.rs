//! `waymark dev`: the whole engine on a laptop. The shared API handler behind a local HTTP server,
//! the runtime over the redb store and queue, a worker that delivers due messages and runs the
//! scheduler's tick, and a watcher that re-publishes journey files as they change. Decides
//! nothing itself: everything a journey does happens in the same runtime as in Lambda.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as RealDuration, Instant, SystemTime};

use anyhow::{Context, Result};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use waymark::api::Api;
use waymark::clock::{Clock, ManualClock, ScaledClock};
use waymark::dsl;
use waymark::event::{Limits, MAX_BATCH_BYTES};
use waymark::journey::{Journey, JourneyStatus, TriggerKind};
use waymark::local::{self, LocalQueue, RedbStore};
use waymark::outbox::{OutboxSender, Sink};
use waymark::queue::Message;
use waymark::runtime::{Config, Handled, RunError, Runtime};

use crate::data::{self, DataDir, Secrets};

/// `println!` that a closed console cannot stop (`waymark dev | head`, a closed terminal): the
/// engine goes on, and so does its shutdown, whether anyone reads what it prints.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

use crate::settings;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The folder of journey files (and its optional waymark.yaml).
    #[arg(long)]
    pub journeys: PathBuf,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// How much faster than real time the engine's clock runs (60: a minute a second).
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    pub speed: f64,
    /// Where the store, keys, clock and outbox live.
    #[arg(long, default_value = ".waymark")]
    pub data: PathBuf,
    /// Where sent messages are written as JSON lines (default: DATA/outbox.jsonl).
    #[arg(long)]
    pub outbox: Option<PathBuf>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_SPEED => Ok(v),
        _ => Err(format!(
            "`{s}` is not a speed: write a number above 0 and at most {MAX_SPEED}, e.g. 60"
        )),
    }
}

/// A million times real time: a year in about half a minute.
const MAX_SPEED: f64 = 1_000_000.0;

/// The engine's settings in `waymark dev`, before the journey set's caps and the API's address.
fn engine_config() -> Config {
    Config {
        // Every wait rides the queue, one message due at its time (the local queue holds any
        // delay, on disk, so it survives a restart): on time at any speed, where a timer in
        // the store would wait for the scheduler's tick (which runs `TICK_MIN_REAL` apart, an
        // hour and more of virtual time at --speed 86400).
        hop_limit: WAITS_RIDE_THE_QUEUE,
        // Its store outlives a run: a version published before versions kept their topic's
        // declaration, its topic since dropped from waymark.yaml, sends only to users who
        // said yes, as a deployment does.
        undeclared_topic: waymark::topic::TopicDefault::OptIn,
        ..Config::default()
    }
}

/// Longer than any wait (a year, a date a year ahead at most, quiet hours and retries on top).
const WAITS_RIDE_THE_QUEUE: SignedDuration = SignedDuration::from_hours(24 * 400);

/// How often the scheduler's tick runs, in virtual time, and at least this much real time apart.
const TICK_EVERY: SignedDuration = SignedDuration::from_secs(30);
const TICK_MIN_REAL: RealDuration = RealDuration::from_millis(50);
/// A message that failed comes back after this much real time.
const RETRY_AFTER_REAL: RealDuration = RealDuration::from_secs(5);
/// The longest the worker sleeps, so it saves the clock and notices shutdown promptly.
const MAX_NAP: RealDuration = RealDuration::from_secs(1);

pub async fn run(args: DevArgs) -> Result<()> {
    if let Some(message) = settings::given_as_journeys(&args.journeys) {
        anyhow::bail!("{message}");
    }
    if !args.journeys.is_dir() {
        anyhow::bail!(
            "{} is not a folder: pass the folder of your journey files to --journeys",
            args.journeys.display()
        );
    }
    // Before anything is written: a port in use leaves no data folder behind.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}: pass another --port (`make dev PORT=8081`), or stop what listens there",
                args.port
            )
        })?;
    let data = DataDir::new(&args.data);
    data.create()?;
    let settings = settings::load(&args.journeys).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the settings file has errors:\n{}", lines.join("\n"))
    })?;
    let secrets = data::secrets(&data)?;

    let db = local::open(&data.store())?;
    // Where the last run stopped: as saved, or as the engine's last durable commit was
    // stamped, whichever is later (a crash can leave the saved clock behind).
    let stopped_at = data.saved_clock().max(local::stored_clock(&db));
    let origin = clock_start(stopped_at, Timestamp::now());
    let clock = Arc::new(ScaledClock::new(origin, args.speed));

    let store = Arc::new(RedbStore::new(db.clone()));
    let lease = SignedDuration::try_from(RETRY_AFTER_REAL.mul_f64(args.speed))
        .unwrap_or(SignedDuration::from_hours(1));
    let queue = LocalQueue::new(db.clone(), clock.clone()).with_lease(lease);
    // What the last run had taken when it stopped (a crash) comes first, in its order; only
    // the message it had in hand is charged an attempt. Its leases are judged at the time it
    // stopped: the clock may have jumped to the wall clock since, past all of them.
    let in_hand = std::fs::read_to_string(data.in_hand())
        .ok()
        .and_then(|l| local::InHand::from_line(&l));
    match queue.release_leases(in_hand, stopped_at.unwrap_or(origin)) {
        Ok(0) => {}
        Ok(n) => tracing::info!(messages = n, "messages the last run had taken run first"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot give back the messages the last run had taken; they run when their lease ends")
        }
    }
    let outbox = args.outbox.clone().unwrap_or_else(|| data.outbox());
    // There from the start (empty until the first message), so `tail -f` can follow it at once,
    // and an outbox that cannot be written says so now rather than at the first send.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&outbox)
        .with_context(|| format!("cannot write the outbox {}", outbox.display()))?;
    // A message's line waits in the store until the batch that sent it is committed to disk,
    // then goes to the outbox with the batch's others (see `deliver`).
    let sender = Arc::new(
        OutboxSender::new(Sink::File(outbox.clone()), clock.clone(), true)
            .for_store(&local::store_id(&db)?)
            .staged(Arc::new(local::StagedLines::new(db.clone()))),
    );

    let url = format!("http://{}", listener.local_addr()?);
    data.save_url(&url)?;

    let signer = Arc::new(secrets.signer.clone());
    let config = Config {
        caps: settings.caps,
        topics: settings.topics,
        public_url: Some(url.clone()),
        signer: Some(signer.clone()),
        ..engine_config()
    };
    let runtime = Arc::new(Runtime::new(
        store.clone(),
        Arc::new(queue.clone()),
        sender.clone(),
        clock.clone(),
        RealDuration::from_secs(1),
        config,
    ));

    // The engine worker's own runtime writes through a deferred store and queue: its writes and
    // the messages it queues (a wait's wake-up) reach the disk with the commit before the
    // batch's outbox lines, or the queue's acknowledgement of the message that made them (two
    // disk commits a batch rather than one a write). The API's writes (unsubscribes, publishes)
    // and the events it queues stay durable as they return.
    // It reads journeys through the API's catalog: a journey the watcher or the API publishes
    // is the one the next message runs on.
    let engine = Arc::new(
        Runtime::new(
            Arc::new(RedbStore::deferred(db.clone())),
            Arc::new(queue.clone().deferred()),
            runtime.sender.clone(),
            clock.clone(),
            RealDuration::from_secs(1),
            runtime.config.clone(),
        )
        .sharing_catalog(&runtime),
    );

    let mut watcher = Watcher::new(&args.journeys);
    let published = watcher.publish_changes(&runtime).await;

    let century = SignedDuration::from_hours(24 * 366 * 100);
    let api = Arc::new(Api {
        runtime: runtime.clone(),
        keys: secrets.keys.clone(),
        signer,
        // The engine's clock is not the client's: accept any event time.
        limits: Limits {
            max_past: century,
            max_future: century,
        },
    });

    print_banner(
        &args,
        &data,
        &outbox,
        &url,
        &secrets,
        clock.now(),
        &published,
        &runtime.config.caps,
        &runtime.config.topics,
    );
    match queue.dead_letters() {
        Ok(dead) if !dead.is_empty() => say!(
            "{} message(s) wait in the dead letters (the engine gave up on them): see them with `waymark dead-letters --data {}`, fix the cause, then add `--redrive`\n",
            dead.len(),
            data.root().display()
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the dead letters"),
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(Served {
        api,
        queue: queue.clone(),
    });
    let worker = tokio::spawn(work(
        engine,
        sender,
        queue,
        store,
        clock.clone(),
        data,
        stop_rx.clone(),
    ));
    let watch_task = tokio::spawn(watch_files(watcher, runtime, stop_rx.clone()));

    let app = axum::Router::new()
        .route(DEAD_LETTERS_PATH, axum::routing::get(list_dead_letters))
        .route(REDRIVE_PATH, axum::routing::post(redrive_dead_letters))
        .fallback(forward)
        .with_state(state);
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    });
    tokio::spawn(async move {
        shutdown_signal().await;
        say!("stopping…");
        let _ = stop_tx.send(true);
    });
    server.await.context("the HTTP server failed")?;
    worker.await.context("the worker task failed")?;
    watch_task.await.context("the file watcher failed")?;
    Ok(())
}

/// What the local HTTP server serves: the API Lambda serves, and the dev engine's dead letters.
struct Served {
    api: Arc<Api>,
    queue: LocalQueue,
}

/// The dead letters of a running `waymark dev`, as JSON lines (admin key): `waymark
/// dead-letters` reads them here, since the store is the running engine's while it runs.
const DEAD_LETTERS_PATH: &str = "/dev/dead-letters";
/// Moves them back to the queue (admin key); answers `{"moved": n}`.
const REDRIVE_PATH: &str = "/dev/dead-letters/redrive";

fn answer(status: http::StatusCode, content_type: &str, body: String) -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// `None` when the request carries the admin key; the 401 otherwise.
fn refuse_unless_admin(
    state: &Served,
    headers: &http::HeaderMap,
) -> Option<axum::response::Response> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.api.keys.role(auth) == Some(waymark::auth::Role::Admin) {
        return None;
    }
    Some(answer(
        http::StatusCode::UNAUTHORIZED,
        "application/json",
        waymark::api::UNAUTHORIZED.into(),
    ))
}

fn unavailable(e: impl std::fmt::Display) -> axum::response::Response {
    answer(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "application/json",
        serde_json::json!({"error": format!("the dead letters cannot be read: {e}")}).to_string(),
    )
}

async fn list_dead_letters(
    axum::extract::State(state): axum::extract::State<Arc<Served>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    if let Some(refused) = refuse_unless_admin(&state, &headers) {
        return refused;
    }
    match state.queue.dead_letters() {
        Ok(dead) => {
            let lines: String = dead
                .iter()
                .map(|d| format!("{}\n", dead_letter_line(d)))
                .collect();
            answer(http::StatusCode::OK, "application/x-ndjson", lines)
        }
        Err(e) => unavailable(e),
    }
}

async fn redrive_dead_letters(
    axum::extract::State(state): axum::extract::State<Arc<Served>>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    if let Some(refused) = refuse_unless_admin(&state, &headers) {
        return refused;
    }
    match state.queue.redrive().await {
        Ok(moved) => answer(
            http::StatusCode::OK,
            "application/json",
            serde_json::json!({ "moved": moved }).to_string(),
        ),
        Err(e) => unavailable(e),
    }
}

/// A dead letter as `waymark dead-letters` prints it: when, how many attempts, why, and the
/// message itself.
fn dead_letter_line(d: &local::DeadLetter) -> serde_json::Value {
    let message = serde_json::from_str::<serde_json::Value>(&d.body)
        .unwrap_or_else(|_| serde_json::Value::String(d.body.clone()));
    serde_json::json!({
        "died_at": d.died_at.to_string(),
        "attempts": d.attempts,
        "reason": d.reason,
        "message": message,
    })
}

/// Any other route: the request as plain `http` types into the same handler Lambda runs.
async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<Served>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let api = &state.api;
    let (parts, body) = req.into_parts();
    // Read up to one byte past the largest batch: a body over it is refused as the API
    // refuses one (a 413 naming `body`, with CORS on an event route) without reading the rest.
    let body = match axum::body::to_bytes(body, MAX_BATCH_BYTES + 1).await {
        Ok(b) => b,
        Err(_) => return waymark::api::too_large_at(parts.uri.path()).map(axum::body::Body::from),
    };
    let response = api.handle(http::Request::from_parts(parts, body)).await;
    response.map(axum::body::Body::from)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Delivers due messages to the runtime, runs the scheduler's tick, and sleeps in real time
/// until the next thing is due or the API enqueues something.
async fn work(
    runtime: Arc<Runtime>,
    outbox: Arc<OutboxSender>,
    queue: LocalQueue,
    store: Arc<RedbStore>,
    clock: Arc<ScaledClock>,
    data: DataDir,
    mut stop: watch::Receiver<bool>,
) {
    let arrivals = queue.arrivals();
    // Opened once: each message's note is one write over the last.
    let note = InHandNote::at(data.root());
    let tick_every = TICK_EVERY.max(
        SignedDuration::try_from(TICK_MIN_REAL.mul_f64(speed_of(&clock))).unwrap_or(TICK_EVERY),
    );
    let mut next_tick = clock.now();
    let mut saved_at = Instant::now();
    let mut purged_at = Instant::now();
    // What a crashed run left staged goes out first.
    flush(&outbox, clock.now());
    while !*stop.borrow() {
        if saved_at.elapsed() >= MAX_NAP {
            save_clock(&data, clock.now());
            saved_at = Instant::now();
        }
        let now = clock.now();
        if now >= next_tick {
            if let Err(e) = runtime.tick().await {
                tracing::warn!(error = %e, "scheduler tick failed; trying again shortly");
            }
            next_tick = now + tick_every;
        }
        match queue.take_due(now).await {
            Ok(batch) if !batch.is_empty() => {
                deliver(&runtime, &outbox, &queue, batch, data.root(), &note).await;
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the local queue"),
        }
        if purged_at.elapsed() >= RealDuration::from_secs(60) {
            if let Err(e) = store.purge_expired(clock.now()).await {
                tracing::warn!(error = %e, "cannot purge expired records");
            }
            purged_at = Instant::now();
        }
        let next_due = match queue.next_due() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the local queue");
                None
            }
        };
        // Anything staged outside a batch (a line a failed flush left), before a nap.
        flush(&outbox, clock.now());
        let wake_at = next_due.map_or(next_tick, |d| d.min(next_tick));
        let nap = clock.real(wake_at - clock.now()).min(MAX_NAP);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = arrivals.notified() => {}
            _ = stop.changed() => {}
        }
    }
    save_clock(&data, clock.now());
    flush(&outbox, clock.now());
    // The engine's deferred writes since the last acknowledgement, on disk before we go.
    if let Err(e) = queue.sync().await {
        tracing::warn!(error = %e, "cannot flush the engine's last writes; their messages will run again");
    }
}

/// Commits the engine's writes to disk and writes the outbox lines they staged (see
/// [`OutboxSender::flush`]); a failure leaves the lines staged for the next flush.
fn flush(outbox: &OutboxSender, now: Timestamp) {
    if let Err(e) = outbox.flush(now) {
        tracing::warn!(error = %e, "cannot write the outbox; its lines wait in the store and are written at the next try");
    }
}

/// Where a run's virtual clock starts: where the last run stopped (`stopped_at`), or the real
/// time `now` if that is later (a first run, or a restart after the real time passed the
/// stopped clock: the waits due in between end at once), so that it never runs behind the
/// wall clock, which a backend's events are stamped by.
fn clock_start(stopped_at: Option<Timestamp>, now: Timestamp) -> Timestamp {
    stopped_at.map_or(now, |t| t.max(now))
}

/// The clock's speed, from how much virtual time a real second makes.
fn speed_of(clock: &ScaledClock) -> f64 {
    let real = clock.real(SignedDuration::from_secs(3600)).as_secs_f64();
    if real > 0.0 {
        3600.0 / real
    } else {
        1.0
    }
}

fn save_clock(data: &DataDir, now: Timestamp) {
    if let Err(e) = data.save_clock(now) {
        tracing::warn!(error = %format!("{e:#}"), "cannot save the virtual clock");
    }
}

/// `waymark dead-letters`: prints the dead letters of a `waymark dev` as JSON lines
/// (`died_at`, `attempts`, `reason`, `message`); with `redrive`, moves them back to its queue.
/// Reads the store when the engine is stopped, and asks the engine when it runs.
pub async fn dead_letters(data: &Path, redrive: bool) -> Result<bool> {
    let data = DataDir::new(data);
    if !data.store().is_file() {
        anyhow::bail!(
            "no `waymark dev` data in {}: pass the folder given to `waymark dev --data`",
            data.root().display()
        );
    }
    let db = match local::open(&data.store()) {
        Ok(db) => db,
        Err(local::LocalError::InUse { .. }) => {
            return dead_letters_of_running(&data, redrive).await
        }
        Err(e) => return Err(e.into()),
    };
    // Redriven messages are due at the virtual time the engine stopped at: at once when it
    // starts again.
    let at = data.saved_clock().unwrap_or_else(Timestamp::now);
    let queue = LocalQueue::new(db, Arc::new(ManualClock::new(at)));
    let dead = queue.dead_letters()?;
    let mut out = std::io::stdout().lock();
    for d in &dead {
        if !printed(writeln!(out, "{}", dead_letter_line(d)))? {
            break;
        }
    }
    if redrive {
        let moved = queue.redrive().await?;
        say_err!(
            "{moved} message(s) moved back to the queue: they run when `waymark dev --data {}` starts",
            data.root().display()
        );
    } else if dead.is_empty() {
        say_err!("no dead letters");
    }
    Ok(true)
}

/// Whether a write to stdout went through: `false` when the reader is gone (`| head`), which
/// is no error; any other failure is.
pub(crate) fn printed(written: std::io::Result<()>) -> std::io::Result<bool> {
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// `waymark dead-letters` while `waymark dev` runs on `data`: the same lines, from the engine.
async fn dead_letters_of_running(data: &DataDir, redrive: bool) -> Result<bool> {
    let Some(url) = data.saved_url() else {
        anyhow::bail!(
            "{} is in use by another process, which did not say where it listens: stop it and run this again",
            data.store().display()
        );
    };
    let client = crate::remote::ApiClient::new(Some(&url), Some(&data::admin_key(data)?))?;
    let ask = |method, path| ask_running(&client, &url, method, path);
    let lines = ask(http::Method::GET, DEAD_LETTERS_PATH).await?;
    printed(std::io::stdout().lock().write_all(&lines))?;
    if redrive {
        let answer: serde_json::Value =
            serde_json::from_slice(&ask(http::Method::POST, REDRIVE_PATH).await?)
                .context("the redrive's answer is not JSON")?;
        say_err!(
            "{} message(s) moved back to the queue of the running `waymark dev`: they run now",
            answer["moved"].as_u64().unwrap_or(0)
        );
    } else if lines.is_empty() {
        say_err!("no dead letters");
    }
    Ok(true)
}

/// One request to the `waymark dev` at `url`; its body when it succeeded.
async fn ask_running(
    client: &crate::remote::ApiClient,
    url: &str,
    method: http::Method,
    path: &str,
) -> Result<bytes::Bytes> {
    let (status, body) = client.call(method, path, None).await.with_context(|| {
        format!("the store is in use, and the `waymark dev` at {url} did not answer")
    })?;
    if !status.is_success() {
        anyhow::bail!(
            "the `waymark dev` at {url} refused: {}",
            crate::remote::refusal(status, &body)
        );
    }
    Ok(body)
}

/// What becomes of a delivered message once the runtime has handled it.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Handled: acknowledge it.
    Done,
    /// It can never succeed, or has failed on its last attempt: keep it with why.
    Dead(String),
    /// Leave it to come back after the lease (as SQS redelivers after its visibility timeout).
    Retry,
}

fn verdict(result: &Result<Handled, RunError>, attempt: u32, max_attempts: u32) -> Verdict {
    match result {
        // Applied, or queued again for later by the runtime itself (its retry is a message of
        // its own): either way this delivery is done.
        Ok(_) => Verdict::Done,
        Err(RunError::Poison(why)) => Verdict::Dead(why.clone()),
        Err(e) if attempt >= max_attempts => {
            Verdict::Dead(format!("failed {attempt} times; the last time: {e}"))
        }
        Err(_) => Verdict::Retry,
    }
}

/// Hands a batch to the runtime; writes the outbox lines its sends staged (one disk commit of
/// the batch's writes, then the lines and one flush of the outbox file: group commit), then
/// acknowledges what succeeded, moves to the dead letters what can never succeed or failed its
/// last attempt, and leaves the rest to come back after the lease. A crash at any point neither
/// loses a message nor writes one twice: before the commit, the batch's writes and lines are
/// lost together and its messages run again; after it, the next start writes the staged lines
/// the outbox does not hold yet, and the messages run again find their sends in the ledger.
async fn deliver(
    runtime: &Arc<Runtime>,
    outbox: &OutboxSender,
    queue: &LocalQueue,
    batch: Vec<local::Delivery>,
    data: &Path,
    note: &InHandNote,
) {
    let items: Vec<(Message, local::InHand)> = batch
        .iter()
        .map(|d| (d.message.clone(), local::InHand::of(d)))
        .collect();
    let rt = runtime.clone();
    let note = note.clone();
    let handled = guarded(
        items,
        move |(message, in_hand): (Message, local::InHand)| {
            let rt = rt.clone();
            let note = note.clone();
            async move {
                note.holds(in_hand);
                rt.handle(&message).await
            }
        },
    )
    .await;
    // A message that makes the engine panic can never succeed: it is kept with the panic's
    // message, and the worker goes on with the rest (a panic stopped it for good before).
    let results = handled.into_iter().map(|r| match r {
        Ok(result) => result,
        Err(Failed::Panicked(why)) => Err(RunError::Poison(format!(
            "the engine panicked handling it: {why}"
        ))),
        Err(Failed::Cancelled) => Err(RunError::Retry("the engine's task was cancelled".into())),
    });
    flush(outbox, runtime.clock.now());
    let mut done = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    for (d, result) in batch.iter().zip(results) {
        match verdict(&result, d.attempt, queue.max_attempts()) {
            Verdict::Done => done.push(d.receipt),
            Verdict::Dead(why) => {
                say_err!(
                    "message {} moved to the dead letters: {why} (list them with `waymark dead-letters --data {}`; `--redrive` runs them again)",
                    d.message.id(),
                    data.display()
                );
                dead.push((d.receipt, why));
            }
            Verdict::Retry => {
                if let Err(e) = &result {
                    tracing::warn!(id = %d.message.id(), attempt = d.attempt, error = %e, "message will be retried");
                }
            }
        }
    }
    if let Err(e) = queue.ack(&done).await {
        tracing::warn!(error = %e, "cannot acknowledge handled messages; they will run again (harmlessly)");
    }
    if let Err(e) = queue.dead_letter(&dead).await {
        tracing::warn!(error = %e, "cannot move messages to the dead letters; they will be tried again");
    }
}

/// Why [`guarded`] has no result for an item.
#[derive(Debug, PartialEq)]
enum Failed {
    Panicked(String),
    Cancelled,
}

/// Handles `items` one after another in a task of its own, one result an item: when handling
/// one panics, that one gets the panic and a new task goes on with the items after it, so no
/// item is handled twice and the worker never stops.
async fn guarded<T, R, F, Fut>(items: Vec<T>, handle: F) -> Vec<Result<R, Failed>>
where
    T: Clone + Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let failed = |e: tokio::task::JoinError| {
        if !e.is_panic() {
            return Failed::Cancelled;
        }
        let payload = e.into_panic();
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".into());
        Failed::Panicked(why)
    };
    let items = Arc::new(items);
    let handle = Arc::new(handle);
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut out = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let (some, handle, into) = (items.clone(), handle.clone(), done.clone());
        let run = tokio::spawn(async move {
            for item in some.iter().skip(start) {
                let result = handle(item.clone()).await;
                into.lock().unwrap_or_else(|p| p.into_inner()).push(result);
            }
        })
        .await;
        let finished = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
        start += finished.len();
        out.extend(finished.into_iter().map(Ok));
        match run {
            Ok(()) => break,
            Err(e) => {
                out.push(Err(failed(e)));
                start += 1;
            }
        }
    }
    out
}

/// Where the worker notes the message it has in hand (its lease, and where it was before the
/// take), just before handling it
/// (a write with no flush: it outlives a crash of the process, not of the machine), so that
/// the next start charges a crash to that message alone (see
/// [`LocalQueue::release_leases`]).
#[derive(Clone)]
struct InHandNote(Option<Arc<std::fs::File>>);

impl InHandNote {
    fn at(data: &Path) -> InHandNote {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(DataDir::new(data).in_hand());
        match file {
            Ok(f) => InHandNote(Some(Arc::new(f))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot note the message in hand; a crash is charged to none");
                InHandNote(None)
            }
        }
    }

    fn holds(&self, in_hand: local::InHand) {
        if let Some(f) = &self.0 {
            let line = in_hand.to_line();
            // One write of a fixed-width line at the start of the file, no truncation needed.
            #[cfg(unix)]
            let written = std::os::unix::fs::FileExt::write_all_at(&**f, line.as_bytes(), 0);
            #[cfg(not(unix))]
            let written = {
                use std::io::{Seek, Write};
                let mut f = &**f;
                f.seek(std::io::SeekFrom::Start(0))
                    .and_then(|_| f.write_all(line.as_bytes()))
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot note the message in hand");
            }
        }
    }
}

/// What a publish pass did, for the banner.
pub struct Published {
    pub ok: Vec<(String, u32)>,
    pub failed: usize,
    /// Journeys published before whose file has errors now: the published version runs on.
    pub kept: Vec<(String, u32)>,
    /// Journeys published before (by an earlier run, or `waymark publish`) that no file in the
    /// folder gives now: they keep enrolling users all the same.
    pub without_file: Vec<(String, u32)>,
    /// An event that enrolls users in some journey, for the example request: one whose
    /// journey reads none of its properties where there is one (the request sends none), and
    /// whether it is such.
    pub example_event: Option<(String, bool)>,
}

/// Watches a journey folder by modification times.
struct Watcher {
    dir: PathBuf,
    seen: BTreeMap<PathBuf, Option<SystemTime>>,
    /// Which file each journey id came from, to refuse a second file with the same id.
    owners: BTreeMap<String, PathBuf>,
    /// The files refused because their id came from another file, by that id: read again
    /// once the id is free (its file removed, or given another id), though none of them
    /// changed.
    refused: BTreeMap<String, std::collections::BTreeSet<PathBuf>>,
    /// Journeys of removed files not told yet: a file still settling may bring them back (a
    /// file renamed and changed at once).
    removed: Vec<(PathBuf, String)>,
    /// The settings file read (`waymark.yaml`, else `waymark.yml`) and its time, when last
    /// looked at (`None`: not yet).
    settings_seen: Option<Option<(PathBuf, Option<SystemTime>)>>,
    /// The settings files beside it that nothing reads (a `waymark.json`, a `waymark.yml`
    /// beside `waymark.yaml`), warned of once each: at start, or when one appears.
    unread_seen: std::collections::BTreeSet<String>,
    /// Files not published because another file gives the same id and none publishes it yet
    /// (told once; read again when the clash is over).
    held: std::collections::BTreeSet<PathBuf>,
}

/// The `id` a journey file with errors names, when it can be read as YAML at all; else its
/// name without the extension (`cart_abandonment.yaml` with a YAML syntax error is most
/// likely journey `cart_abandonment`).
fn id_in(file: &Path) -> Option<String> {
    declared_id(file).or_else(|| file.file_stem()?.to_str().map(str::to_string))
}

/// The `id` a journey file gives, when it can be read as YAML at all.
fn declared_id(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let name = file.display().to_string();
    let read =
        dsl::parse_located::<serde_json::Value>(&name, &text, &[], str::to_string).ok()??;
    read.value.get("id")?.as_str().map(str::to_string)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Watcher {
    fn new(dir: &Path) -> Self {
        Watcher {
            dir: dir.to_path_buf(),
            seen: BTreeMap::new(),
            owners: BTreeMap::new(),
            refused: BTreeMap::new(),
            removed: Vec::new(),
            settings_seen: None,
            unread_seen: Default::default(),
            held: Default::default(),
        }
    }

    /// Publishes every new or changed journey file; prints what happened.
    async fn publish_changes(&mut self, runtime: &Runtime) -> Published {
        let first = self.seen.is_empty() && self.settings_seen.is_none();
        let mut out = Published {
            ok: Vec::new(),
            failed: 0,
            kept: Vec::new(),
            without_file: Vec::new(),
            example_event: None,
        };
        // The ids of the files that do not load, where their `id` can be read.
        let mut invalid: BTreeMap<String, PathBuf> = BTreeMap::new();
        let settings_now = settings::path_in(&self.dir).map(|p| {
            let at = mtime(&p);
            (p, at)
        });
        if let Some(seen) = self.settings_seen.as_ref().filter(|s| **s != settings_now) {
            // The file that changed by its name (`waymark.yml` is read where there is no
            // `waymark.yaml`); one removed, by the name it had.
            let name = settings_now
                .as_ref()
                .or(seen.as_ref())
                .and_then(|(p, _)| p.file_name())
                .map_or_else(
                    || format!("{}.yaml", dsl::SETTINGS_STEM),
                    |n| n.to_string_lossy().into_owned(),
                );
            // Checked now, as a journey file is, rather than at the next start, which a file
            // with errors would stop.
            match settings::load(&self.dir) {
                // Changed back (an edit undone): nothing to restart for.
                Ok(s) if s.caps == runtime.config.caps && s.topics == runtime.config.topics => {
                    say!(
                        "{name} changed: its caps are the ones in use ({})",
                        caps_text(&s.caps)
                    )
                }
                Ok(s) if s.caps == runtime.config.caps => say!(
                    "{name} changed: restart `waymark dev` to apply its topics ({}; in use: {})",
                    topics_text(&s.topics),
                    topics_text(&runtime.config.topics)
                ),
                Ok(s) => say!(
                    "{name} changed: restart `waymark dev` to apply its caps ({}; in use: {})",
                    caps_text(&s.caps),
                    caps_text(&runtime.config.caps)
                ),
                Err(errors) => {
                    for e in errors {
                        say_err!("{e}");
                    }
                    say_err!("{name} has errors: the caps in use stay as they were, and `waymark dev` will not start again until they are fixed");
                }
            }
        }
        self.settings_seen = Some(settings_now);
        // A settings file beside it that is not read (`validate` refuses it): its caps and
        // topics do not apply. Told at start, and as one appears while dev runs.
        let unread = settings::unread_in(&self.dir);
        for w in unread
            .iter()
            .filter(|w| !self.unread_seen.contains(&w.file))
        {
            say_err!("{}", crate::warning(w));
        }
        self.unread_seen = unread.into_iter().map(|w| w.file).collect();

        let files = match dsl::journey_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                if first {
                    say_err!("cannot read {}: {e}", self.dir.display());
                }
                return out;
            }
        };
        // An id that more than one file gives, and no file publishes yet (at start: which one
        // an earlier run kept, and the published version came from, is not known): none of
        // them is published, and the published version, if any, runs on. (Once one publishes
        // it, a second file with its id is refused: see `publish`.)
        // Read only when a file came, went or changed since the last look (this runs each
        // second): otherwise no clash began or ended.
        let mut clashing: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let changed = files.len() != self.seen.len()
            || files.iter().any(|f| self.seen.get(f) != Some(&mtime(f)));
        if changed {
            for file in &files {
                if let Some(id) = declared_id(file) {
                    clashing.entry(id).or_default().push(file.clone());
                }
            }
            clashing.retain(|id, files| files.len() > 1 && !self.owners.contains_key(id));
            // A file held back by a clash that is over is read again (one removed is told as
            // removed, below).
            let over: Vec<PathBuf> = self
                .held
                .iter()
                .filter(|f| !clashing.values().any(|all| all.contains(f)))
                .cloned()
                .collect();
            for f in over {
                self.held.remove(&f);
                if files.contains(&f) {
                    self.seen.remove(&f);
                }
            }
        }
        // The journeys of removed files: told after the others publish, which may bring the
        // same id from a file of another name (a file renamed).
        let mut removed: Vec<(PathBuf, String)> = std::mem::take(&mut self.removed);
        let mut settling_any = false;
        for gone in self
            .seen
            .keys()
            .filter(|p| !files.contains(p))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.seen.remove(&gone);
            let ids: Vec<String> = self
                .owners
                .iter()
                .filter(|(_, f)| **f == gone)
                .map(|(id, _)| id.clone())
                .collect();
            self.owners.retain(|_, f| *f != gone);
            for id in &ids {
                self.free(id);
            }
            if ids.is_empty() {
                say!("{} removed", gone.display());
            }
            removed.extend(ids.into_iter().map(|id| (gone.clone(), id)));
        }
        for file in files {
            let m = mtime(&file);
            if self.seen.get(&file) == Some(&m) {
                continue;
            }
            // A file changed within the last moment may be still being written (a slow writer,
            // a sync tool): it is read at a later look, once it has been left alone a while, so
            // that no half-written journey is published as a version users enter.
            let settling = m
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age < SETTLE);
            if settling && !first {
                settling_any = true;
                continue;
            }
            self.seen.insert(file.clone(), m);
            // Refused for its id before, it is judged anew now.
            self.refused.retain(|_, files| {
                files.remove(&file);
                !files.is_empty()
            });
            // (`clashing` was read from the files at this look: this one's id is in it.)
            if let Some((id, all)) = clashing.iter().find(|(_, all)| all.contains(&file)) {
                let others: Vec<String> = all
                    .iter()
                    .filter(|f| **f != file)
                    .map(|f| f.display().to_string())
                    .collect();
                let (line, column) = std::fs::read_to_string(&file)
                    .map_or((1, 1), |text| dsl::key_position(&text, "id"));
                say_err!(
                    "{}:{line}:{column}: id: journey id `{id}` is also used by {}: give each journey its own id (none of them is published until then)",
                    file.display(),
                    others.join(", ")
                );
                out.failed += 1;
                invalid.insert(id.clone(), file.clone());
                self.held.insert(file.clone());
                continue;
            }
            // A topic the running settings do not declare is an error, as `validate` says.
            let loaded = dsl::load_file(&file).and_then(|j| {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let name = file.display().to_string();
                let topics = &runtime.config.topics;
                match dsl::undeclared_topic(&name, &text, &j, topics, dsl::TopicsFrom::Settings) {
                    Some(e) => Err(vec![e]),
                    None => Ok(j),
                }
            });
            if loaded.is_ok() {
                for w in dsl::advice_for(std::slice::from_ref(&file)) {
                    say_err!("{}", crate::warning(&w));
                }
            }
            match loaded {
                Ok(j) => match self.publish(runtime, &file, &j, first).await {
                    Some(version) => {
                        if let Some(TriggerKind::Event { events, .. }) = j.trigger.kind() {
                            let bare = dsl::trigger_event_fields(&j).is_empty();
                            let first = events.names().first();
                            if let Some(event) = first.filter(|_| {
                                out.example_event.as_ref().is_none_or(|(_, b)| !b && bare)
                            }) {
                                out.example_event = Some((event.to_string(), bare));
                            }
                        }
                        let label = match j.status {
                            JourneyStatus::Active => j.id.clone(),
                            other => format!("{} ({})", j.id, other.as_str()),
                        };
                        out.ok.push((label, version));
                    }
                    None => {
                        out.failed += 1;
                        // Refused (its `enrollment_key` changed) or not stored: the published
                        // version runs on, and the file is there. (Refused for an id another
                        // file gives, the id has its file.)
                        if !self.owners.contains_key(&j.id) {
                            invalid.insert(j.id.clone(), file.clone());
                        }
                    }
                },
                Err(errors) => {
                    out.failed += 1;
                    crate::print_errors(&errors);
                    if let Some(id) = id_in(&file) {
                        invalid.insert(id, file.clone());
                    }
                }
            }
        }
        if settling_any {
            self.removed = removed;
            removed = Vec::new();
        }
        for (gone, id) in removed {
            match self.owners.get(&id) {
                Some(now) => say!(
                    "{} removed: journey `{id}` now comes from {}",
                    gone.display(),
                    now.display()
                ),
                None => say!(
                    "{} removed: journey `{id}` stays published and keeps enrolling; {}",
                    gone.display(),
                    to_end(&id)
                ),
            }
        }
        if first {
            // Journeys published before (by an earlier run, or `waymark publish`) whose file is
            // gone or does not load: they enroll all the same, so the banner says so.
            match runtime.catalog.heads().await {
                Ok(heads) => {
                    for h in heads {
                        if h.status != JourneyStatus::Active || self.owners.contains_key(&h.id) {
                            continue;
                        }
                        if let Some(file) = invalid.get(&h.id) {
                            say!(
                                "journey `{}` (version {}) runs on as published: its file {} has errors (above); fixed, it publishes a new version",
                                h.id,
                                h.version,
                                file.display()
                            );
                            out.kept.push((h.id.clone(), h.version));
                        } else {
                            say!(
                                "journey `{}` (version {}) is published but no valid file in {} has its id: it keeps enrolling; {}",
                                h.id,
                                h.version,
                                self.dir.display(),
                                to_end(&h.id)
                            );
                            out.without_file.push((h.id.clone(), h.version));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the published journeys"),
            }
        }
        out
    }

    /// Forgets having read the files refused because `id` came from another file, so that
    /// they are read again (later in this look, or at the next): the id is free now.
    fn free(&mut self, id: &str) {
        for file in self.refused.remove(id).unwrap_or_default() {
            if file.is_file() {
                self.seen.remove(&file);
            }
        }
    }

    async fn publish(
        &mut self,
        runtime: &Runtime,
        file: &Path,
        j: &Journey,
        first: bool,
    ) -> Option<u32> {
        if let Some(other) = self.owners.get(&j.id).filter(|f| f.as_path() != file) {
            // At the `id:`, as `waymark validate` says it.
            let (line, column) =
                std::fs::read_to_string(file).map_or((1, 1), |text| dsl::key_position(&text, "id"));
            say_err!(
                "{}:{line}:{column}: id: journey id `{}` is also used by {}: give each journey its own id",
                file.display(),
                j.id,
                other.display()
            );
            self.refused
                .entry(j.id.clone())
                .or_default()
                .insert(file.to_path_buf());
            return None;
        }
        // An id this file gave before and no longer does (its `id:` changed) leaves that
        // journey published, enrolling users as before: say so, as for a removed file.
        for was in self
            .owners
            .iter()
            .filter(|(id, f)| f.as_path() == file && **id != j.id)
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
        {
            say!(
                "{}: the id is now `{}`, and journey `{was}` stays published and keeps enrolling; {}",
                file.display(),
                j.id,
                to_end(&was)
            );
        }
        match runtime.catalog.key_change(j).await {
            Ok(Some(why)) => {
                say_err!("{}: {why}", file.display());
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                say_err!("journey {}: not published: {e}", j.id);
                return None;
            }
        }
        let freed: Vec<String> = self
            .owners
            .iter()
            .filter(|(id, f)| f.as_path() == file && **id != j.id)
            .map(|(id, _)| id.clone())
            .collect();
        self.owners.retain(|_, f| f.as_path() != file);
        self.owners.insert(j.id.clone(), file.to_path_buf());
        for id in &freed {
            self.free(id);
        }
        match runtime
            .catalog
            .publish(j, &runtime.config.topics, runtime.clock.now())
            .await
        {
            Ok((version, created)) => {
                let note = match j.status {
                    JourneyStatus::Active => "",
                    JourneyStatus::Closed => ", closed: no new entries, enrolled users finish",
                    JourneyStatus::Stopped => ", stopped: no new entries, enrolled users exit now",
                };
                if created && !first {
                    say!("journey {}: now version {version}{note}", j.id);
                } else if created && version > 1 {
                    // At start: the file is not what was published last (an edit while
                    // stopped, or a `waymark publish` since): say it replaced it.
                    say!(
                        "journey {}: {} differs from the published version {}: now version {version}{note}",
                        j.id,
                        file.display(),
                        version - 1
                    );
                } else if !first {
                    say!("journey {}: unchanged (version {version})", j.id);
                }
                Some(version)
            }
            Err(e) => {
                say_err!("journey {}: not published: {e}", j.id);
                None
            }
        }
    }
}

/// How long a changed journey file must be left alone before it is published.
const SETTLE: RealDuration = RealDuration::from_millis(800);

/// How to end a journey whose file is gone, for the console.
pub(crate) fn to_end(id: &str) -> String {
    format!("to end it, keep a file with `id: {id}` and `status: closed` (no new entries) or `status: stopped` (enrolled users exit)")
}

async fn watch_files(mut watcher: Watcher, runtime: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RealDuration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        watcher.publish_changes(&runtime).await;
    }
}

/// Caps as people read them: `push 3 per 1d, sms 2 per 7d`, or `none`.
fn caps_text(caps: &BTreeMap<waymark::journey::Channel, waymark::runtime::Cap>) -> String {
    if caps.is_empty() {
        return "none".to_string();
    }
    caps.iter()
        .map(|(channel, cap)| format!("{channel} {} per {}", cap.max, cap.per))
        .collect::<Vec<_>>()
        .join(", ")
}

fn topics_text(topics: &waymark::topic::Topics) -> String {
    if topics.is_empty() {
        return "none".to_string();
    }
    topics
        .0
        .iter()
        .map(|(id, t)| match t.default {
            waymark::topic::TopicDefault::Subscribed => id.clone(),
            waymark::topic::TopicDefault::OptIn => format!("{id} (opt_in)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::too_many_arguments)]
fn print_banner(
    args: &DevArgs,
    data: &DataDir,
    outbox: &Path,
    url: &str,
    secrets: &Secrets,
    now: Timestamp,
    published: &Published,
    caps: &BTreeMap<waymark::journey::Channel, waymark::runtime::Cap>,
    topics: &waymark::topic::Topics,
) {
    let journeys: Vec<String> =
        published
            .ok
            .iter()
            .map(|(id, v)| format!("{id} v{v}"))
            .chain(
                published
                    .kept
                    .iter()
                    .map(|(id, v)| format!("{id} v{v} (as published; its file has errors)")),
            )
            .chain(published.without_file.iter().map(|(id, v)| {
                format!("{id} v{v} (published earlier; no file: it keeps enrolling)")
            }))
            .collect();
    say!(
        "waymark dev: {} journey(s) from {}{}{}",
        published.ok.len() + published.kept.len(),
        args.journeys.display(),
        match published.without_file.len() {
            0 => String::new(),
            n => format!(", and {n} published earlier that no file there has (above)"),
        },
        if published.failed > 0 {
            format!(
                " ({} file(s) with errors, above; fix them and they publish)",
                published.failed
            )
        } else {
            String::new()
        }
    );
    if !journeys.is_empty() {
        say!("  journeys   {}", journeys.join(", "));
    }
    say!(
        "  time       {} (virtual, {}× real time)",
        now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        args.speed
    );
    say!(
        "  caps       {}",
        if caps.is_empty() {
            "none (a waymark.yaml in the journeys folder sets them)".to_string()
        } else {
            format!("{} per user, across journeys", caps_text(caps))
        }
    );
    say!(
        "  topics     {}",
        if topics.is_empty() {
            "none (a waymark.yaml in the journeys folder declares them)".to_string()
        } else {
            topics_text(topics)
        }
    );
    // The names only: the values never leave the sender (`{{ secrets.NAME }}` in a webhook).
    let found: Vec<String> = waymark::secrets::LocalSecrets::from_env()
        .names()
        .map(str::to_string)
        .collect();
    say!(
        "  secrets    {}",
        if found.is_empty() {
            format!(
                "none (a webhook's {{{{ secrets.NAME }}}} reads {}NAME from this shell)",
                waymark::secrets::ENV_PREFIX
            )
        } else {
            format!(
                "{} (from {}*; values not shown)",
                found.join(", "),
                waymark::secrets::ENV_PREFIX
            )
        }
    );
    say!("  API        {url}");
    say!("  write key  {}", secrets.write_shown);
    say!("  admin key  {}", secrets.admin_shown);
    say!("  outbox     {} (also printed here)", outbox.display());
    say!(
        "  data       {} (delete it to start over)",
        data.root().display()
    );
    let quote = |s: &str| {
        if secrets.write_is_plain {
            s.to_string()
        } else {
            format!("\"{s}\"")
        }
    };
    let event = published
        .example_event
        .as_ref()
        .map_or("signed_up", |(e, _)| e.as_str());
    say!();
    say!("Send an event:");
    say!(
        "  curl -s -u {}: {url}/v1/identify -H 'content-type: application/json' -d '{{\"userId\":\"ann\",\"traits\":{{\"email\":\"ann@example.com\"}}}}'",
        quote(&secrets.write_shown)
    );
    say!(
        "  curl -s -u {}: {url}/v1/track -H 'content-type: application/json' -d '{{\"userId\":\"ann\",\"event\":\"{event}\",\"properties\":{{}}}}'",
        quote(&secrets.write_shown)
    );
    say!("See what happened to a user:");
    let admin = if secrets.admin_is_plain {
        secrets.admin_shown.clone()
    } else {
        format!("\"{}\"", secrets.admin_shown)
    };
    say!("  curl -s -H \"authorization: Bearer {admin}\" {url}/v1/users/ann");
    say!("An inbox token for a user's in-app messages:");
    say!("  waymark token ann --data {}", data.root().display());
    say!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every wait of a journey rides dev's queue, due at its end, none the scheduler's tick:
    /// the hop limit is longer than the longest wait.
    #[test]
    fn every_wait_rides_the_local_queue() {
        let longest = waymark::duration::Duration::MAX.to_jiff() + SignedDuration::from_hours(24);
        assert!(engine_config().hop_limit > longest);
    }

    #[test]
    fn speed_must_be_positive() {
        assert_eq!(positive("60"), Ok(60.0));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert!(positive("fast").is_err());
        assert!(positive("1e300").is_err());
    }

    #[test]
    fn a_message_that_cannot_succeed_or_failed_its_last_attempt_is_dead_lettered() {
        let poison = Err(RunError::Poison("journey `j` is not published".into()));
        let failed = || Err(RunError::Retry("the outbox is not writable".into()));
        assert_eq!(verdict(&Ok(Handled::Done), 5, 5), Verdict::Done);
        // Poison at once, with its reason.
        assert_eq!(
            verdict(&poison, 1, 5),
            Verdict::Dead("journey `j` is not published".into())
        );
        // A passing failure is retried until its last attempt, which keeps its error.
        assert_eq!(verdict(&failed(), 1, 5), Verdict::Retry);
        assert_eq!(verdict(&failed(), 4, 5), Verdict::Retry);
        match verdict(&failed(), 5, 5) {
            Verdict::Dead(why) => {
                assert!(why.contains("failed 5 times"), "{why}");
                assert!(why.contains("the outbox is not writable"), "{why}");
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }

    /// A batch in which one message makes the engine panic: that one gets the panic's
    /// message, the others their results.
    #[tokio::test]
    async fn only_the_item_that_panics_gets_the_panic() {
        static HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let handle = |i: u32| async move {
            HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(i != 3, "item {i} is poison");
            i * 10
        };
        let out = guarded(vec![1, 2, 3, 4, 3, 5], handle).await;
        assert_eq!(out[0], Ok(10));
        assert_eq!(out[1], Ok(20));
        assert_eq!(out[2], Err(Failed::Panicked("item 3 is poison".into())));
        assert_eq!(out[3], Ok(40));
        assert_eq!(out[4], Err(Failed::Panicked("item 3 is poison".into())));
        assert_eq!(out[5], Ok(50));
        assert_eq!(guarded(vec![1, 2], handle).await, [Ok(10), Ok(20)]);
        // Each item is handled once, the ones before a panic too.
        assert_eq!(HANDLED.load(std::sync::atomic::Ordering::SeqCst), 8);
    }

    #[test]
    fn a_reader_that_went_away_is_no_error() {
        let gone = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(matches!(printed(Err(gone)), Ok(false)));
        assert!(matches!(printed(Ok(())), Ok(true)));
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(printed(Err(full)).is_err());
    }

    /// A restart goes on from where the last run's clock stopped, ahead of the real time as a
    /// sped-up clock is; behind it (stopped longer than it had run ahead), from the real time.
    #[test]
    fn the_clock_starts_where_it_stopped_or_at_the_real_time_if_later() {
        let now = Timestamp::from_second(1_800_000_000).expect("ts");
        let hours = |h: i64| SignedDuration::from_hours(h);
        assert_eq!(clock_start(None, now), now, "a first run");
        assert_eq!(clock_start(Some(now + hours(5)), now), now + hours(5));
        assert_eq!(clock_start(Some(now - hours(5)), now), now);
    }

    #[test]
    fn speed_is_recovered_from_the_clock() {
        let c = ScaledClock::new(Timestamp::now(), 3600.0);
        assert!((speed_of(&c) - 3600.0).abs() < 1e-6);
    }
}
