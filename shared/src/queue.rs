//! The queue port and the messages that ride on it: events on the events queue, wake-ups,
//! inactivity checks, stops and scan pages on the steps queue. SQS caps a message's delay at 15
//! minutes.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::store::Key;

/// The longest delay a queue message may carry (SQS `DelaySeconds`).
pub const MAX_DELAY_SECS: u32 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    Events,
    Steps,
}

/// What the engine function consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// An accepted track or identify.
    Event(std::sync::Arc<Event>),
    /// An enrollment's wake-up for step visit `seq`, due at `at`.
    ///
    /// Its names are shared (`Arc`): a wake-up is copied on each hop, into a timer and onto the
    /// queue, and each copy costs a count rather than three strings.
    Wake {
        user_id: std::sync::Arc<str>,
        /// The enrollment's record: its journey's id, or `{journey}#{key}` for an enrollment
        /// of a journey with an `enrollment_key` (see `Enrollment::record_of`).
        journey: std::sync::Arc<str>,
        enrollment: std::sync::Arc<str>,
        seq: u64,
        at: Timestamp,
    },
    /// Enter a user into a journey now (schedule and inactivity triggers).
    Enter {
        user_id: String,
        journey: String,
        /// Why: `schedule 2026-11-24T09:00` or `inactive since …`; also the entry's message id.
        cause: String,
        at: Timestamp,
        /// The version a schedule's run was started for: a worker whose cached list of
        /// journeys is older than it enters by it (a publish just before the run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// Check whether a user has stayed inactive since `since` (armed by an activity when none
    /// is pending; when due, it looks again from the latest activity).
    Inactivity {
        user_id: String,
        journey: String,
        since: Timestamp,
        at: Timestamp,
    },
    /// End an enrollment of a stopped journey now (the stop's scan sends one for each
    /// enrollment active when it reads it).
    Stop {
        user_id: String,
        /// The enrollment's record, as a [`Message::Wake`] names it.
        journey: String,
        enrollment: String,
    },
    /// A message that failed for a passing reason (a provider throttling or down, DynamoDB
    /// throttling), handled again at `at`: its `attempt`th retry, further apart each time (see
    /// `Runtime::handle`).
    Retry {
        attempt: u32,
        at: Timestamp,
        message: Box<Message>,
    },
    /// Read one page of a scan the scheduler started, queue a message for each record the job
    /// selects, and queue the next page: a scan of any size goes on, page by page, in engine
    /// invocations rather than in one scheduler minute.
    Scan {
        job: ScanJob,
        segment: u32,
        segments: u32,
        /// Where the page starts (after this key); none for the first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Key>,
    },
}

/// What a [`Message::Scan`] is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanJob {
    /// A schedule trigger's run at `minute` (minutes since the epoch): enter each profile the
    /// schedule selects. `until`: a `timezone: user` run the scheduler started late, at that
    /// minute (catching up), enters only the users whose own zone's cron names no later
    /// minute by then (a later run enters them).
    Schedule {
        journey: String,
        minute: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
        /// The version the scheduler started the run of: every page is judged by it, whatever
        /// the reading worker's cached list says (a journey published seconds before the run,
        /// not yet in an engine's list, read no one on its pages). `None`: a job queued before
        /// it was kept, judged by the latest version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// A stopped journey version's sweep: stop each active enrollment. `keyed`: the sweep of
    /// the enrollments of a journey with an `enrollment_key` (a record per value: each
    /// profile's are read), apart from the one of its unkeyed records.
    Stop {
        journey: String,
        version: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        keyed: bool,
    },
}

impl ScanJob {
    /// A stable id: `schedule:<journey>:<minute>`, `stop:<journey>:<version>` or
    /// `stop-keyed:<journey>:<version>`.
    pub fn id(&self) -> String {
        match self {
            ScanJob::Schedule {
                journey, minute, ..
            } => format!("schedule:{journey}:{minute}"),
            ScanJob::Stop {
                journey,
                version,
                keyed: false,
            } => format!("stop:{journey}:{version}"),
            ScanJob::Stop {
                journey,
                version,
                keyed: true,
            } => format!("stop-keyed:{journey}:{version}"),
        }
    }
}

impl Message {
    /// The user the message is about (used for logs: an id, never an address).
    pub fn user_id(&self) -> &str {
        match self {
            Message::Event(e) => &e.user_id,
            Message::Wake { user_id, .. } => user_id,
            Message::Enter { user_id, .. }
            | Message::Inactivity { user_id, .. }
            | Message::Stop { user_id, .. } => user_id,
            Message::Retry { message, .. } => message.user_id(),
            // About many users.
            Message::Scan { .. } => "",
        }
    }

    /// When the message is due (events: now).
    pub fn due(&self) -> Option<Timestamp> {
        match self {
            Message::Event(_)
            | Message::Enter { .. }
            | Message::Stop { .. }
            | Message::Scan { .. } => None,
            Message::Wake { at, .. }
            | Message::Inactivity { at, .. }
            | Message::Retry { at, .. } => Some(*at),
        }
    }

    /// A stable id: the same logical message always has the same id.
    pub fn id(&self) -> String {
        match self {
            Message::Event(e) => e.message_id.clone(),
            Message::Wake {
                enrollment, seq, ..
            } => crate::enrollment::Enrollment::wake_id_of(enrollment, *seq),
            Message::Enter {
                journey,
                user_id,
                cause,
                ..
            } => format!("enter:{journey}:{user_id}:{cause}"),
            Message::Inactivity {
                journey,
                user_id,
                since,
                ..
            } => format!("inactive:{journey}:{user_id}:{}", since.as_second()),
            Message::Stop { enrollment, .. } => format!("stop:{enrollment}"),
            Message::Retry {
                attempt, message, ..
            } => format!("retry:{attempt}:{}", message.id()),
            Message::Scan {
                job,
                segment,
                segments,
                start,
            } => {
                let from = start
                    .as_ref()
                    .map(|k| format!("{}|{}", k.pk, k.sk))
                    .unwrap_or_default();
                format!("scan:{}:{segment}/{segments}:{from}", job.id())
            }
        }
    }

    pub fn queue(&self) -> QueueName {
        match self {
            Message::Event(_) | Message::Enter { .. } => QueueName::Events,
            Message::Retry { message, .. } => message.queue(),
            Message::Wake { .. }
            | Message::Inactivity { .. }
            | Message::Stop { .. }
            | Message::Scan { .. } => QueueName::Steps,
        }
    }
}

/// A message to send, with its delay in seconds (at most the queue's
/// [`Queue::max_delay_secs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub message: Message,
    pub delay_secs: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    /// The queue could not take the messages now, or the stack cannot reach it (no such queue,
    /// access denied): sending them again may succeed.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue refused the messages for what they hold (SQS: a sender fault on an entry,
    /// characters it does not carry, over its size): sent again, they are refused again.
    #[error("message rejected: {0}")]
    Rejected(String),
}

/// The most a queued message may hold (SQS's limit, kept by the local queue too).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What an event's message leaves free of [`MAX_MESSAGE_BYTES`]: room for the
/// [`Message::Retry`] that carries it again after a passing failure (about 80 bytes), so that
/// every event taken in can also be retried.
pub const EVENT_HEADROOM_BYTES: usize = 1024;

/// Why SQS would refuse a message body as it is, if it would: a character it does not carry
/// (U+FFFE, U+FFFF; JSON escapes the control characters it also refuses) or more than
/// [`MAX_MESSAGE_BYTES`] (an event: less its [`EVENT_HEADROOM_BYTES`]). The local queue
/// refuses the same, so `waymark dev` answers such an event as the deployed API does.
pub fn refused_body(message: &Message, body: &str) -> Option<QueueError> {
    let most = match message {
        Message::Event(_) => MAX_MESSAGE_BYTES - EVENT_HEADROOM_BYTES,
        _ => MAX_MESSAGE_BYTES,
    };
    if body.len() > most {
        return Some(QueueError::Rejected(format!(
            "message {} is {} bytes, over the {most} a queued {} may hold (SQS takes 256 KB)",
            message.id(),
            body.len(),
            if matches!(message, Message::Event(_)) {
                "event"
            } else {
                "message"
            }
        )));
    }
    body.chars()
        .find(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .map(|c| {
            QueueError::Rejected(format!(
                "message {} holds U+{:04X}, which SQS does not carry",
                message.id(),
                c as u32
            ))
        })
}

/// Held as `Arc<dyn Queue>` and called through it. There is deliberately no forwarding impl for
/// `Arc<T>`: method calls would pick it, and every call would box its future twice.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends messages (an adapter batches them as its service allows). All or error.
    async fn send(&self, queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError>;

    /// The longest delay a message may carry, in seconds: SQS's 15 minutes unless the queue
    /// holds a message as long as it is told (`waymark dev`'s, on disk), so that a wait rides
    /// it in one message, due at its time.
    fn max_delay_secs(&self) -> u32 {
        MAX_DELAY_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event whose message nearly fills SQS's limit is refused: its retry, which wraps it,
    /// would not fit. A smaller one fits, and so does its retry.
    #[test]
    fn an_event_leaves_room_for_the_retry_that_carries_it() {
        let at: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        // As a batch's shared context makes one, each item within 32 KB.
        let event = |padding: usize| {
            let body = r#"{"userId":"ann","event":"big","messageId":"m1"}"#;
            let mut e = crate::event::parse_call(
                crate::event::Call::Track,
                body.as_bytes(),
                at,
                &crate::event::Limits::default(),
            )
            .expect("event");
            e.context
                .insert("padding".into(), "y".repeat(padding).into());
            Message::Event(std::sync::Arc::new(e))
        };
        let retried = |m: Message| Message::Retry {
            attempt: 5,
            at,
            message: Box::new(m),
        };
        let m = event(MAX_MESSAGE_BYTES - 600);
        let body = serde_json::to_string(&m).expect("json");
        assert!(body.len() > MAX_MESSAGE_BYTES - EVENT_HEADROOM_BYTES);
        assert!(body.len() < MAX_MESSAGE_BYTES);
        assert!(
            matches!(refused_body(&m, &body), Some(QueueError::Rejected(why)) if why.contains("event")),
            "{} bytes",
            body.len()
        );
        let m = event(MAX_MESSAGE_BYTES - EVENT_HEADROOM_BYTES - 400);
        let body = serde_json::to_string(&m).expect("json");
        assert_eq!(refused_body(&m, &body), None, "{} bytes", body.len());
        let retry = retried(m);
        let wrapped = serde_json::to_string(&retry).expect("json");
        assert_eq!(
            refused_body(&retry, &wrapped),
            None,
            "{} bytes",
            wrapped.len()
        );
    }
}
