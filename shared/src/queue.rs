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
    /// schedule selects.
    Schedule { journey: String, minute: i64 },
    /// A stopped journey version's sweep: stop each active enrollment.
    Stop { journey: String, version: u32 },
}

impl ScanJob {
    /// A stable id: `schedule:<journey>:<minute>` or `stop:<journey>:<version>`.
    pub fn id(&self) -> String {
        match self {
            ScanJob::Schedule { journey, minute } => format!("schedule:{journey}:{minute}"),
            ScanJob::Stop { journey, version } => format!("stop:{journey}:{version}"),
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

/// Why SQS would refuse a message body as it is, if it would: a character it does not carry
/// (U+FFFE, U+FFFF; JSON escapes the control characters it also refuses) or more than
/// [`MAX_MESSAGE_BYTES`]. The local queue refuses the same, so `waymark dev` answers such an
/// event as the deployed API does.
pub fn refused_body(id: &str, body: &str) -> Option<QueueError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Some(QueueError::Rejected(format!(
            "message {id} is {} bytes, over SQS's 256 KB",
            body.len()
        )));
    }
    body.chars()
        .find(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        .map(|c| {
            QueueError::Rejected(format!(
                "message {id} holds U+{:04X}, which SQS does not carry",
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
