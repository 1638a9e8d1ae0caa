//! The queue port and the messages that ride on it: events on the events queue, wake-ups and
//! inactivity checks on the steps queue. SQS caps a message's delay at 15 minutes.

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::Event;

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
    Event(Box<Event>),
    /// An enrollment's wake-up for step visit `seq`, due at `at`.
    Wake {
        user_id: String,
        journey: String,
        enrollment: String,
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
    /// End an enrollment of a stopped journey now (the scheduler sends one for each enrollment
    /// active when it sees the stop).
    Stop {
        user_id: String,
        journey: String,
        enrollment: String,
    },
}

impl Message {
    /// The user the message is about (used for logs: an id, never an address).
    pub fn user_id(&self) -> &str {
        match self {
            Message::Event(e) => &e.user_id,
            Message::Wake { user_id, .. }
            | Message::Enter { user_id, .. }
            | Message::Inactivity { user_id, .. }
            | Message::Stop { user_id, .. } => user_id,
        }
    }

    /// When the message is due (events: now).
    pub fn due(&self) -> Option<Timestamp> {
        match self {
            Message::Event(_) | Message::Enter { .. } | Message::Stop { .. } => None,
            Message::Wake { at, .. } | Message::Inactivity { at, .. } => Some(*at),
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
        }
    }

    pub fn queue(&self) -> QueueName {
        match self {
            Message::Event(_) | Message::Enter { .. } => QueueName::Events,
            Message::Wake { .. } | Message::Inactivity { .. } | Message::Stop { .. } => {
                QueueName::Steps
            }
        }
    }
}

/// A message to send, with its delay in seconds (at most [`MAX_DELAY_SECS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub message: Message,
    pub delay_secs: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("message rejected: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends messages (an adapter batches them as its service allows). All or error.
    async fn send(&self, queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError>;
}

#[async_trait]
impl<T: Queue + ?Sized> Queue for std::sync::Arc<T> {
    async fn send(&self, queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        (**self).send(queue, messages).await
    }
}
