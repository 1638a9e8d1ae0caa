//! What the three Lambda functions do with an invocation: intake answers HTTP, engine applies
//! SQS batches (and SES feedback from SNS), scheduler ticks. The binaries and the integration
//! tests call these very functions. Thin: the runtime and the API do the work.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::Value;

use super::send::{tag_decode, USER_TAG};
use crate::api::Api;
use crate::journey::Channel;
use crate::queue::{Message, Outbound, QueueName};
use crate::runtime::{OptOutSync, RunError, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Neither SQS records nor SNS records.
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    /// Failed as a whole: Lambda retries the invocation (then its dead-letter queue).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// intake: an API Gateway request (as `lambda_http` gives it) through the API.
pub async fn intake<B: AsRef<[u8]>>(
    api: &Api,
    mut request: http::Request<B>,
) -> http::Response<Bytes> {
    path_from_route(&mut request);
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, Bytes::copy_from_slice(body.as_ref()));
    api.handle(request).await
}

/// API Gateway's HTTP APIs hand over the path decoded (`rawPath`: an inbox message id's `%23`
/// arrives as `#`, and the URI lambda_http builds from it ends there, the rest read as a
/// fragment; a user id's `%2F` arrives as `/`), but each path parameter whole, cut where the
/// route's template cuts it. So a templated route's path is written again from its template
/// and its parameters, each percent-encoded, as the API's router reads them. Left as it is
/// where the request names no such route (a test's, `waymark dev`'s) or lacks a parameter.
fn path_from_route<B>(request: &mut http::Request<B>) {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let Some(RequestContext::ApiGatewayV2(ctx)) = request.request_context_ref() else {
        return;
    };
    let Some((_, template)) = ctx.route_key.as_deref().and_then(|k| k.split_once(' ')) else {
        return;
    };
    if !template.contains('{') {
        return;
    }
    let params = request.path_parameters();
    let mut path = String::new();
    for segment in template.split('/').skip(1) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => match params.first(name) {
                Some(value) => path.extend(utf8_percent_encode(value, NON_ALPHANUMERIC)),
                None => return,
            },
            None => path.push_str(segment),
        }
    }
    if let Some(query) = request.uri().query() {
        path.push('?');
        path.push_str(query);
    }
    let mut parts = request.uri().clone().into_parts();
    let Ok(path) = http::uri::PathAndQuery::try_from(path) else {
        return;
    };
    parts.path_and_query = Some(path);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// engine: an SQS batch from the events or steps queue, or an SNS delivery of SES feedback.
/// Returns the batch response for SQS (`ReportBatchItemFailures`), `null` for SNS.
/// `time_left`: what the invocation has before its timeout (Lambda's deadline), so that a batch
/// stops starting messages in time (see [`apply_batch`]).
pub async fn engine(
    runtime: &Runtime,
    event: Value,
    time_left: Option<std::time::Duration>,
) -> Result<Value, HandlerError> {
    engine_within(runtime, event, Budget::Time(time_left)).await
}

/// How much of an invocation a batch may take: whether it may start another message.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Until [`MESSAGE_RESERVE`] before the invocation's end, this long from now (`None`: no
    /// end).
    Time(Option<std::time::Duration>),
    /// This many messages (a test's batch cut short at a chosen message).
    Messages(usize),
}

/// [`engine`] with a [`Budget`].
pub async fn engine_within(
    runtime: &Runtime,
    event: Value,
    budget: Budget,
) -> Result<Value, HandlerError> {
    let source = event
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
        .unwrap_or("");
    match source {
        "aws:sqs" => {
            let event: SqsEvent = serde_json::from_value(event).map_err(|e| {
                HandlerError::Unrecognised(format!("an SQS event that does not parse: {e}"))
            })?;
            let response = apply_batch(runtime, event, budget).await;
            serde_json::to_value(response)
                .map_err(|e| HandlerError::Unrecognised(format!("batch response: {e}")))
        }
        "aws:sns" => {
            let event: SnsEvent = serde_json::from_value(event).map_err(|e| {
                HandlerError::Unrecognised(format!("an SNS event that does not parse: {e}"))
            })?;
            apply_feedback(runtime, &event).await?;
            Ok(Value::Null)
        }
        // An empty SQS batch cannot happen; anything else is a wrong trigger.
        _ => Err(HandlerError::Unrecognised(
            "expected SQS or SNS records".into(),
        )),
    }
}

/// What a batch leaves of its invocation when it starts a message: room for at least one send
/// ([`SEND_TAKES`]) and the answer ([`RESPONSE_RESERVE`]).
pub const MESSAGE_RESERVE: std::time::Duration = std::time::Duration::from_secs(20);

/// The longest one provider call may take (a webhook's timeout, 10 seconds, and the writes
/// around it): a message starts no send with less than this, and [`RESPONSE_RESERVE`], left
/// of its invocation ([`crate::runtime::sending_until`]).
const SEND_TAKES: std::time::Duration = std::time::Duration::from_secs(11);

/// How long sending a batch's unstarted messages back may take (its share of the
/// [`MESSAGE_RESERVE`] the last message started with).
const SEND_BACK_LIMIT: std::time::Duration = std::time::Duration::from_secs(4);

/// What a message that runs long leaves of its invocation: the batch's response, and the
/// sending back of its unstarted messages, still go out before the function times out. A
/// message may run long: several sends of one transition, or an event entering several
/// journeys, each wait for their provider. It starts no send it could not finish by then
/// (its sends left go out with its retry), and is given up there, reported for SQS to deliver
/// again, only if something else hangs.
const RESPONSE_RESERVE: std::time::Duration = std::time::Duration::from_secs(5);

/// Applies a batch, one message after another; the messages that failed (or could not be read)
/// are reported so that SQS keeps them, and moves them to the dead-letter queue after
/// `maxReceiveCount` receives. With less than [`MESSAGE_RESERVE`] of the invocation to go, the
/// messages not yet started are sent back to their queue as new messages (a timeout would lose
/// the whole batch's response, and every message in it would come back, done or not): reported
/// instead, each would spend one of its receives without having failed, and a slow batch (a
/// webhook that hangs to its timeout) could send the others to the dead-letter queue unstarted.
/// They are reported when that send fails or takes longer than [`SEND_BACK_LIMIT`], and when
/// the batch started no message at all (an invocation with no time for one: sent back, they
/// would come back forever; reported, they reach the dead-letter queue and its alarm).
pub async fn apply_batch(runtime: &Runtime, event: SqsEvent, budget: Budget) -> SqsBatchResponse {
    // Tokio's clock: the same as the system's, and a test's when it pauses it.
    let began = tokio::time::Instant::now();
    let mut started = 0;
    let may_start = |started: usize| match budget {
        Budget::Time(t) => t.is_none_or(|t| began.elapsed() + MESSAGE_RESERVE <= t),
        Budget::Messages(n) => started < n,
    };
    let mut failures = Vec::new();
    let mut ids = Vec::with_capacity(event.records.len());
    let mut messages = Vec::with_capacity(event.records.len());
    for record in event.records {
        let Some(id) = record.message_id else {
            tracing::error!("an SQS record without a message id: cannot report it");
            continue;
        };
        match serde_json::from_str::<Message>(record.body.as_deref().unwrap_or("")) {
            Ok(m) => {
                ids.push(id);
                messages.push(m);
            }
            Err(e) => {
                tracing::error!(message_id = %id, reason = %e, "unreadable message; left for the dead-letter queue");
                failures.push(id);
            }
        }
    }
    let mut unstarted: Vec<(String, &Message)> = Vec::new();
    for (id, m) in ids.into_iter().zip(&messages) {
        if !may_start(started) {
            unstarted.push((id, m));
            continue;
        }
        started += 1;
        // A message that panics (a bug met by one user's data) fails alone: the rest of its
        // batch goes on, as a poison message's does. What it wrote is conditional, so its
        // redelivery, or the dead-letter queue's, starts from what is stored.
        // On the heap: the message's future is large (the whole runtime's state machine), and
        // it is moved into the sending time's scope and the timeout below; kept inline, each
        // move is a copy on the stack (a debug build's tests overflowed 2 MiB threads).
        let handling = std::panic::AssertUnwindSafe(Box::pin(runtime.handle(m))).catch_unwind();
        let handled = match budget {
            Budget::Time(Some(t)) => {
                let end = began + t;
                let handling = crate::runtime::sending_until(
                    end.checked_sub(RESPONSE_RESERVE + SEND_TAKES)
                        .unwrap_or(began),
                    handling,
                );
                // Given up a few seconds before the invocation ends (nothing it sends is in
                // flight then): like a crash there, what it did is in the store,
                // conditional, and its redelivery goes on from it.
                let left = t.saturating_sub(began.elapsed() + RESPONSE_RESERVE);
                match tokio::time::timeout(left, handling).await {
                    Ok(handled) => handled,
                    Err(_) => {
                        tracing::warn!(message_id = %id, user = m.user_id(), "message still running as the invocation ends; given up, SQS will deliver it again");
                        failures.push(id);
                        continue;
                    }
                }
            }
            _ => handling.await,
        };
        let handled = match handled {
            Ok(handled) => handled,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with no message".into());
                tracing::error!(message_id = %id, user = m.user_id(), panic = %why, "message panicked; SQS will deliver it again, then to the dead-letter queue");
                failures.push(id);
                continue;
            }
        };
        match handled {
            Ok(_) => {}
            Err(e) => {
                match &e {
                    RunError::Poison(_) => {
                        tracing::error!(message_id = %id, user = m.user_id(), error = %e, "poison message; left for the dead-letter queue")
                    }
                    _ => {
                        tracing::warn!(message_id = %id, user = m.user_id(), error = %e, "message failed; SQS will deliver it again")
                    }
                }
                failures.push(id);
            }
        }
    }
    if started == 0 {
        for (id, _) in &unstarted {
            tracing::warn!(message_id = %id, "not started: the invocation had no time for a message; SQS will deliver it again");
        }
        failures.extend(unstarted.into_iter().map(|(id, _)| id));
    } else {
        let ids: Vec<String> = unstarted.iter().map(|(id, _)| id.clone()).collect();
        match tokio::time::timeout(SEND_BACK_LIMIT, send_back(runtime, unstarted)).await {
            Ok(left) => failures.extend(left),
            Err(_) => {
                tracing::warn!(
                    messages = ids.len(),
                    "sending unstarted messages back took too long; SQS will deliver them again"
                );
                failures.extend(ids);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}

/// Sends messages a batch did not start back to their queues, due at once; the ids of those
/// that could not be sent (left for SQS to deliver again).
async fn send_back(runtime: &Runtime, unstarted: Vec<(String, &Message)>) -> Vec<String> {
    let mut left = Vec::new();
    for queue in [QueueName::Events, QueueName::Steps] {
        let (ids, outbound): (Vec<String>, Vec<Outbound>) = unstarted
            .iter()
            .filter(|(_, m)| m.queue() == queue)
            .map(|(id, m)| {
                let again = Outbound {
                    message: (*m).clone(),
                    delay_secs: 0,
                };
                (id.clone(), again)
            })
            .unzip();
        if ids.is_empty() {
            continue;
        }
        match runtime.queue.send(queue, &outbound).await {
            Ok(()) => {
                for id in &ids {
                    tracing::warn!(message_id = %id, "not started: the invocation's time is nearly up; sent back to its queue");
                }
            }
            Err(e) => {
                for id in &ids {
                    tracing::warn!(message_id = %id, error = %e, "not started: the invocation's time is nearly up; SQS will deliver it again");
                }
                left.extend(ids);
            }
        }
    }
    left
}

/// What an SES notice asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Stop emailing the user at `addresses` (the recipients the notice names; none when it
    /// names none): a hard bounce or a complaint.
    Suppress {
        user: String,
        reason: &'static str,
        addresses: Vec<String>,
    },
    /// Nothing to do (a soft bounce, a delivery, another event type).
    Ignore(String),
}

/// Reads one SES notice (event publishing's `eventType` or identity notifications'
/// `notificationType`). The user comes from the `user_id` tag the sender set; the addresses
/// from the bounce's or complaint's recipients, or else the message's destination.
pub fn feedback(notice: &Value) -> Feedback {
    let kind = notice
        .get("eventType")
        .or_else(|| notice.get("notificationType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let (reason, recipients) = match kind {
        "Bounce" => {
            let bounce = notice
                .pointer("/bounce/bounceType")
                .and_then(Value::as_str)
                .unwrap_or("");
            if bounce != "Permanent" {
                return Feedback::Ignore(format!("a {} bounce", bounce.to_lowercase()));
            }
            ("bounce", "/bounce/bouncedRecipients")
        }
        "Complaint" => ("complaint", "/complaint/complainedRecipients"),
        other => return Feedback::Ignore(format!("a `{other}` notice")),
    };
    let tag = notice
        .pointer(&format!("/mail/tags/{USER_TAG}/0"))
        .and_then(Value::as_str);
    let Some(user) = tag.and_then(tag_decode).filter(|u| !u.is_empty()) else {
        return Feedback::Ignore(format!("a {reason} without a {USER_TAG} tag"));
    };
    let listed = |pointer: &str, field: Option<&str>| -> Vec<String> {
        let items = notice.pointer(pointer).and_then(Value::as_array);
        items
            .into_iter()
            .flatten()
            .filter_map(|r| match field {
                Some(f) => r.get(f),
                None => Some(r),
            })
            .filter_map(Value::as_str)
            .map(bare_address)
            .filter(|a| !a.is_empty())
            .collect()
    };
    let mut addresses = listed(recipients, Some("emailAddress"));
    if addresses.is_empty() {
        addresses = listed("/mail/destination", None);
    }
    Feedback::Suppress {
        user,
        reason,
        addresses,
    }
}

/// The address of a recipient as SES may write it, `Ann <ann@example.com>` or the address alone.
fn bare_address(recipient: &str) -> String {
    let r = recipient.trim();
    match (r.rfind('<'), r.rfind('>')) {
        (Some(open), Some(close)) if open < close => r[open + 1..close].trim().to_string(),
        _ => r.to_string(),
    }
}

/// Marks email suppressed for bounced and complaining users. A notice that cannot be read is
/// logged and dropped (retrying cannot help); a store failure fails the invocation so Lambda
/// retries it and finally keeps it in the feedback dead-letter queue.
pub async fn apply_feedback(runtime: &Runtime, event: &SnsEvent) -> Result<(), RunError> {
    for record in &event.records {
        let id = &record.sns.message_id;
        let notice: Value = match serde_json::from_str(&record.sns.message) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(sns_message_id = %id, reason = %e, "SNS message is not JSON; dropped");
                continue;
            }
        };
        match feedback(&notice) {
            Feedback::Suppress {
                user,
                reason,
                addresses,
            } => {
                if runtime
                    .suppress_address(&user, Channel::Email, reason, &addresses)
                    .await?
                {
                    tracing::info!(user = %user, reason, "email suppressed");
                } else {
                    // A late notice about the address she had before (she has another now).
                    tracing::info!(sns_message_id = %id, user = %user, reason, "SES notice ignored: about an address that is not the user's now");
                }
            }
            Feedback::Ignore(why) => {
                tracing::info!(sns_message_id = %id, "SES notice ignored: {why}");
            }
        }
    }
    Ok(())
}

/// scheduler: one minute's tick (an EventBridge Scheduler invocation; its payload only names
/// the time, which the runtime's clock already knows).
pub async fn scheduler(
    runtime: &Runtime,
    event: Value,
    time_left: Option<std::time::Duration>,
) -> Result<Value, HandlerError> {
    if let Ok(e) = serde_json::from_value::<EventBridgeEvent<Value>>(event) {
        tracing::debug!(id = e.id.as_deref().unwrap_or(""), time = ?e.time, "scheduled event");
    }
    let began = std::time::Instant::now();
    let budget = catch_up_budget(runtime.config.tick_budget, time_left);
    let fold_until = time_left.map(|t| began + t.saturating_sub(AFTER_FOLD));
    let tick = runtime.tick_within(budget, fold_until).await?;
    tracing::info!(
        timers = tick.moved,
        schedules = tick.schedules,
        folded = tick.folded,
        stops = tick.stops,
        "tick"
    );
    // SMS opt-outs (SNS sends no event for them: it keeps a list): a pass over the list starts
    // once an hour and goes on, minute after minute, until it has read it all.
    let left = time_left.map(|t| t.saturating_sub(began.elapsed()));
    let sync = match runtime.sync_sms_opt_outs(Some(opt_out_budget(left))).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "SMS opt-outs not synced this minute");
            OptOutSync::default()
        }
    };
    Ok(serde_json::json!({
        "timers": tick.moved,
        "schedules": tick.schedules,
        "folded": tick.folded,
        "stops": tick.stops,
        "sms_opted_out": sync.newly,
        "sms_opt_out_pages": sync.pages
    }))
}

/// How long a scheduler invocation reads the SMS opt-out list: [`OPT_OUT_BUDGET`], and no
/// longer than its time left (`left`) less [`OPT_OUT_MARGIN`].
fn opt_out_budget(left: Option<std::time::Duration>) -> std::time::Duration {
    match left {
        Some(l) => OPT_OUT_BUDGET.min(l.saturating_sub(OPT_OUT_MARGIN)),
        None => OPT_OUT_BUDGET,
    }
}

/// How long a scheduler invocation reads the SMS opt-out list at most (a page, up to 100
/// numbers, costs a request to SNS and two reads a known number).
const OPT_OUT_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);
/// What an invocation keeps after the opt-out pages it reads (the last page's numbers, the
/// cursor's write).
const OPT_OUT_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// What a scheduler invocation keeps for the rest of its run (the stop sweeps, the stats fold,
/// the SMS opt-out pages) after catching up.
const AFTER_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);
/// What a scheduler invocation keeps after the stats fold: the SMS opt-out pages and their
/// margin. The fold takes what the catch-up left until then (one transaction a fold partition
/// at least).
const AFTER_FOLD: std::time::Duration = OPT_OUT_BUDGET.saturating_add(OPT_OUT_MARGIN);
// The fold has two seconds at least after a catch-up that took all it may.
const _: () = assert!(AFTER_FOLD.as_secs() + 2 <= AFTER_CATCH_UP.as_secs());

/// How long a scheduler invocation may catch up: the configured budget, and no longer than the
/// invocation's time left (`time_left`, from Lambda's deadline) less [`AFTER_CATCH_UP`], so a
/// function whose timeout was set lower than the budget is not cut off mid catch-up.
fn catch_up_budget(
    configured: Option<std::time::Duration>,
    time_left: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    let left = time_left.map(|t| t.saturating_sub(AFTER_CATCH_UP));
    match (configured, left) {
        (Some(c), Some(l)) => Some(c.min(l)),
        (c, l) => c.or(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn a_scheduler_invocation_catches_up_no_longer_than_its_time_left_allows() {
        let s = std::time::Duration::from_secs;
        assert_eq!(catch_up_budget(Some(s(20)), Some(s(30))), Some(s(20)));
        assert_eq!(catch_up_budget(Some(s(20)), Some(s(15))), Some(s(5)));
        assert_eq!(catch_up_budget(Some(s(20)), Some(s(3))), Some(s(0)));
        assert_eq!(catch_up_budget(None, Some(s(70))), Some(s(60)));
        assert_eq!(catch_up_budget(Some(s(20)), None), Some(s(20)));
        assert_eq!(catch_up_budget(None, None), None);
    }

    #[test]
    fn the_opt_out_sync_reads_for_five_seconds_at_most_and_leaves_three() {
        let s = std::time::Duration::from_secs;
        assert_eq!(opt_out_budget(None), s(5));
        assert_eq!(opt_out_budget(Some(s(20))), s(5));
        assert_eq!(opt_out_budget(Some(s(6))), s(3));
        assert_eq!(opt_out_budget(Some(s(2))), s(0));
    }

    /// A runtime over a new in-memory store with one fold partition, holding `users` timeline
    /// records waiting to be counted.
    async fn with_backlog(users: usize) -> Runtime {
        use crate::clock::Clock;
        use crate::store::{Expect, Key, Part, Record, Store};
        use crate::timeline::{Entry, What};
        use std::sync::Arc;
        let clock = Arc::new(crate::clock::ManualClock::new(
            "2026-12-01T10:00:00Z".parse().expect("time"),
        ));
        let store = crate::store::MemoryStore::new();
        let (sender, _) = crate::outbox::OutboxSender::memory(clock.clone());
        let rt = Runtime::new(
            Arc::new(store.clone()),
            Arc::new(crate::simulate::DelayQueue::new(clock.clone())),
            Arc::new(sender),
            clock.clone(),
            std::time::Duration::from_secs(1),
            crate::runtime::Config {
                timer_shards: 1,
                ..crate::runtime::Config::default()
            },
        );
        for i in 0..users {
            let user = format!("u{i}");
            let entries = vec![Entry {
                at: clock.now(),
                journey: "cart".into(),
                enrollment: format!("cart:{user}:1").into(),
                step: Some("wait".into()),
                what: What::Step,
            }];
            let record = Record::of(Key::new(Part::join(&["U#", &user]), "T#1"), 1, entries)
                .pending_in(crate::stats::fold_partition(&user, 1));
            store.put(&record, Expect::Absent).await.expect("put");
        }
        rt
    }

    /// An invocation with no time left still does the least of each part of its minute (one
    /// fold transaction a partition, one page of SMS opt-outs) and leaves the rest of the
    /// backlog listed for the next; one with time folds the rest.
    #[tokio::test]
    async fn a_scheduler_invocation_out_of_time_folds_one_chunk_and_leaves_the_rest() {
        let rt = with_backlog(250).await;
        let hurried = scheduler(&rt, json!({}), Some(std::time::Duration::ZERO))
            .await
            .expect("tick");
        let first = hurried["folded"].as_u64().expect("folded");
        assert!(first > 0 && first < 250, "one transaction's worth: {first}");
        assert_eq!(hurried["sms_opt_out_pages"], 1);
        let rest = scheduler(&rt, json!({}), Some(std::time::Duration::from_secs(60)))
            .await
            .expect("tick");
        assert_eq!(first + rest["folded"].as_u64().expect("folded"), 250);
        assert_eq!(
            rt.stats("cart").await.expect("stats")["step.wait.entered"],
            250
        );
    }

    /// A provider call that misbehaves for one user: panics (a bug her data meets), or does
    /// not answer (a webhook that hangs).
    enum Misbehaves {
        PanicsFor(&'static str),
        HangsFor(&'static str),
    }

    #[async_trait::async_trait]
    impl crate::provider::Sender for Misbehaves {
        async fn send(
            &self,
            m: &crate::engine::Outgoing,
        ) -> Result<crate::provider::Receipt, crate::provider::SendError> {
            match self {
                Misbehaves::PanicsFor(user) if &*m.user_id == *user => {
                    panic!("a bug met by {}'s message", m.user_id)
                }
                Misbehaves::HangsFor(user) if &*m.user_id == *user => {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                _ => {}
            }
            Ok(crate::provider::Receipt::default())
        }
    }

    /// A runtime whose one journey, entered on `signed_up`, calls a webhook through `sender`.
    async fn runtime_sending_through(sender: Arc<dyn crate::provider::Sender>) -> Runtime {
        runtime_of(sender, HELLO_HOOK).await.0
    }

    /// A journey of one webhook call a user, on `signed_up`.
    const HELLO_HOOK: &str = "id: hi\nname: Hi\ntrigger: {event: signed_up}\nsteps:\n  - id: hello\n    send: {webhook: {url: \"https://hooks.example/{{ user_id }}\"}}\n";

    /// A runtime running `journey` and calling `sender`, and its queue and clock.
    async fn runtime_of(
        sender: Arc<dyn crate::provider::Sender>,
        journey: &str,
    ) -> (
        Runtime,
        crate::simulate::DelayQueue,
        Arc<crate::clock::ManualClock>,
    ) {
        runtime_over(
            Arc::new(crate::store::MemoryStore::new()),
            crate::runtime::Config::default(),
            sender,
            journey,
        )
        .await
    }

    /// [`runtime_of`] over `store`, with `config`.
    async fn runtime_over(
        store: Arc<dyn crate::store::Store>,
        config: crate::runtime::Config,
        sender: Arc<dyn crate::provider::Sender>,
        journey: &str,
    ) -> (
        Runtime,
        crate::simulate::DelayQueue,
        Arc<crate::clock::ManualClock>,
    ) {
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let clock = Arc::new(crate::clock::ManualClock::new(now));
        let queue = crate::simulate::DelayQueue::new(clock.clone());
        let rt = Runtime::new(
            store,
            Arc::new(queue.clone()),
            sender,
            clock.clone(),
            std::time::Duration::ZERO,
            config,
        );
        let journey = crate::dsl::parse("j.yaml", journey).expect("journey");
        rt.catalog
            .publish(&journey, &rt.config.topics, now)
            .await
            .expect("publish");
        (rt, queue, clock)
    }

    /// An SQS record of `user`'s `signed_up`, with the message id `id`.
    fn signed_up(id: &str, user: &str) -> aws_lambda_events::event::sqs::SqsMessage {
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        let body = format!(r#"{{"userId":"{user}","event":"signed_up","messageId":"{id}"}}"#);
        let e = crate::event::parse_call(
            crate::event::Call::Track,
            body.as_bytes(),
            now,
            &crate::event::Limits::default(),
        )
        .expect("event");
        let mut r = aws_lambda_events::event::sqs::SqsMessage::default();
        r.message_id = Some(id.to_string());
        r.body = Some(serde_json::to_string(&Message::Event(Arc::new(e))).expect("json"));
        r
    }

    /// A message that panics fails alone: the batch's other messages are handled, and only
    /// its id is reported for SQS to deliver again (then to the dead-letter queue).
    #[tokio::test]
    async fn a_message_that_panics_fails_alone_in_its_batch() {
        let rt = runtime_sending_through(Arc::new(Misbehaves::PanicsFor("ann"))).await;
        let mut event = SqsEvent::default();
        event.records = vec![signed_up("m-ann", "ann"), signed_up("m-bo", "bo")];
        let response = apply_batch(&rt, event, Budget::Time(None)).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m-ann"]);
        let bo = rt.user("bo").await.expect("bo");
        assert!(
            bo.timeline
                .iter()
                .any(|e| matches!(e.what, crate::timeline::What::Sent { .. })),
            "{:?}",
            bo.timeline
        );
    }

    /// A message still running as the invocation nears its end is given up and reported, and
    /// the batch answers in time (the clock is tokio's, paused: the hang takes no real time).
    #[tokio::test(start_paused = true)]
    async fn a_message_running_past_the_invocation_is_given_up_and_reported() {
        let (rt, queue, _) = runtime_of(Arc::new(Misbehaves::HangsFor("ann")), HELLO_HOOK).await;
        let mut event = SqsEvent::default();
        event.records = vec![signed_up("m-ann", "ann"), signed_up("m-bo", "bo")];
        let began = tokio::time::Instant::now();
        let budget = Budget::Time(Some(std::time::Duration::from_secs(30)));
        let response = apply_batch(&rt, event, budget).await;
        assert!(began.elapsed() <= std::time::Duration::from_secs(25));
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m-ann"]);
        // Bo's message, not started with too little time left, is back on its queue.
        let back: Vec<String> = queue
            .take_due("2026-12-01T10:00:00Z".parse().expect("time"))
            .iter()
            .map(|m| m.user_id().to_string())
            .collect();
        assert_eq!(back, ["bo"]);
    }

    /// A provider call that takes its time for the URLs that say `slow`, and notes each call.
    struct Slow(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl crate::provider::Sender for Slow {
        async fn send(
            &self,
            m: &crate::engine::Outgoing,
        ) -> Result<crate::provider::Receipt, crate::provider::SendError> {
            if let crate::engine::Content::Webhook { url, .. } = m.content.as_ref() {
                self.0.lock().expect("calls").push(url.clone());
                if url.contains("slow") {
                    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
                }
            }
            Ok(crate::provider::Receipt::default())
        }
    }

    /// A message whose first send took most of the invocation begins no other that could not
    /// finish in time (one cut off mid-call would go out twice): it is retried later, and the
    /// batch reports no failure.
    #[tokio::test(start_paused = true)]
    async fn a_message_begins_no_send_it_could_not_finish_in_time() {
        let slow = Arc::new(Slow(Default::default()));
        let (rt, queue, clock) = runtime_of(
            slow.clone(),
            "id: hi\nname: Hi\ntrigger: {event: signed_up}\nsteps:\n  - id: first\n    send: {webhook: {url: \"https://hooks.example/slow\"}}\n  - id: second\n    send: {webhook: {url: \"https://hooks.example/fast\"}}\n",
        )
        .await;
        let mut event = SqsEvent::default();
        event.records = vec![signed_up("m-ann", "ann")];
        let budget = Budget::Time(Some(std::time::Duration::from_secs(30)));
        let response = apply_batch(&rt, event, budget).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(
            *slow.0.lock().expect("calls"),
            ["https://hooks.example/slow"]
        );
        // Its retry, a few minutes on, sends the rest, and only the rest.
        clock.set("2026-12-01T10:10:00Z".parse().expect("time"));
        for m in queue.take_due(crate::clock::Clock::now(&*clock)) {
            rt.handle(&m).await.expect("the retry");
        }
        assert_eq!(
            *slow.0.lock().expect("calls"),
            ["https://hooks.example/slow", "https://hooks.example/fast"]
        );
        let view = rt.user("ann").await.expect("ann");
        let sent = view
            .timeline
            .iter()
            .filter(|e| matches!(e.what, crate::timeline::What::Sent { .. }))
            .count();
        assert_eq!(sent, 2, "{:?}", view.timeline);
    }

    /// Makes the first read of a frequency cap in a [`MemoryStore`](crate::store::MemoryStore)
    /// take 15 seconds (a throttled table).
    #[derive(Default)]
    struct SlowCap {
        slowed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl crate::store::Hooks for SlowCap {
        async fn get(
            &self,
            inner: &crate::store::MemoryStore,
            key: &crate::store::Key,
        ) -> Result<Option<crate::store::Record>, crate::store::StoreError> {
            use crate::store::Store as _;
            if key.sk.starts_with("C#")
                && !self.slowed.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                tokio::time::sleep(std::time::Duration::from_secs(15)).await;
            }
            inner.get(key).await
        }
    }

    /// A send whose frequency cap took so long to check that too little of the invocation is
    /// left calls no provider (a call cut off after the provider took it would go out again):
    /// its claim and its cap place are given back, and its retry sends it once.
    #[tokio::test(start_paused = true)]
    async fn a_send_slowed_by_its_cap_calls_no_provider_late_in_its_invocation() {
        use crate::store::Store as _;
        let slow = Arc::new(Slow(Default::default()));
        let store = crate::store::MemoryStore::new();
        let config = crate::runtime::Config {
            caps: crate::runtime::parse_caps("webhook=3/1d").expect("caps"),
            ..Default::default()
        };
        let (rt, queue, clock) = runtime_over(
            Arc::new(crate::store::Hooked::new(
                store.clone(),
                SlowCap::default(),
            )),
            config,
            slow.clone(),
            "id: hi\nname: Hi\ntrigger: {event: signed_up}\nsteps:\n  - id: only\n    send: {webhook: {url: \"https://hooks.example/fast\"}}\n",
        )
        .await;
        let mut event = SqsEvent::default();
        event.records = vec![signed_up("m-ann", "ann")];
        let budget = Budget::Time(Some(std::time::Duration::from_secs(30)));
        let response = apply_batch(&rt, event, budget).await;
        assert!(response.batch_item_failures.is_empty());
        assert!(
            slow.0.lock().expect("calls").is_empty(),
            "the provider was called"
        );
        let ann = crate::runtime::user_partition("ann");
        let held = |prefix: &'static str| {
            let store = store.clone();
            let ann = ann.clone();
            async move { store.query(&ann, prefix).await.expect("query") }
        };
        assert!(held("L#").await.is_empty(), "the claim was kept");
        for cap in held("C#").await {
            let places: serde_json::Value = cap.parse().expect("places");
            assert_eq!(places, json!([]), "the cap place was kept");
        }

        // Its retry, a few minutes on, sends it, once.
        clock.set("2026-12-01T10:10:00Z".parse().expect("time"));
        for m in queue.take_due(crate::clock::Clock::now(&*clock)) {
            rt.handle(&m).await.expect("the retry");
        }
        assert_eq!(
            *slow.0.lock().expect("calls"),
            ["https://hooks.example/fast"]
        );
        let view = rt.user("ann").await.expect("ann");
        let sent = view
            .timeline
            .iter()
            .filter(|e| matches!(e.what, crate::timeline::What::Sent { .. }))
            .count();
        assert_eq!(sent, 1, "{:?}", view.timeline);
    }

    #[test]
    fn ses_notices() {
        let bounce = |kind: &str| {
            json!({"eventType": "Bounce", "bounce": {"bounceType": kind},
                   "mail": {"tags": {"user_id": ["ann_40example_2ecom"], "journey": ["cart"]}}})
        };
        assert_eq!(
            feedback(&bounce("Permanent")),
            Feedback::Suppress {
                user: "ann@example.com".into(),
                reason: "bounce",
                addresses: vec![]
            }
        );
        assert!(matches!(
            feedback(&bounce("Transient")),
            Feedback::Ignore(_)
        ));
        let complaint = json!({"notificationType": "Complaint", "complaint": {},
                               "mail": {"tags": {"user_id": ["bob"]}}});
        assert_eq!(
            feedback(&complaint),
            Feedback::Suppress {
                user: "bob".into(),
                reason: "complaint",
                addresses: vec![]
            }
        );
        assert!(matches!(
            feedback(&json!({"eventType": "Complaint", "mail": {}})),
            Feedback::Ignore(_)
        ));
        assert!(matches!(
            feedback(&json!({"eventType": "Delivery"})),
            Feedback::Ignore(_)
        ));
    }

    /// A notice names the address it is about: the bounced or complaining recipients, or else
    /// the message's destination.
    #[test]
    fn ses_notices_name_their_addresses() {
        let tags = json!({"user_id": ["ann"]});
        let cases = [
            (
                json!({"eventType": "Bounce",
                       "bounce": {"bounceType": "Permanent",
                                  "bouncedRecipients": [{"emailAddress": "old@x.test", "action": "failed"}]},
                       "mail": {"destination": ["Ann <old@x.test>", "cc@x.test"], "tags": tags}}),
                vec!["old@x.test"],
            ),
            (
                json!({"notificationType": "Complaint",
                       "complaint": {"complainedRecipients": [{"emailAddress": "Ann <Old@X.test>"}]},
                       "mail": {"destination": ["other@x.test"], "tags": tags}}),
                vec!["Old@X.test"],
            ),
            (
                json!({"eventType": "Complaint", "complaint": {},
                       "mail": {"destination": ["Ann <old@x.test>"], "tags": tags}}),
                vec!["old@x.test"],
            ),
            (
                json!({"eventType": "Complaint", "complaint": {"complainedRecipients": []},
                       "mail": {"tags": tags}}),
                vec![],
            ),
        ];
        for (notice, addresses) in cases {
            match feedback(&notice) {
                Feedback::Suppress {
                    user, addresses: a, ..
                } => {
                    assert_eq!(user, "ann");
                    assert_eq!(a, addresses, "{notice}");
                }
                other => panic!("{other:?}: {notice}"),
            }
        }
    }
}
