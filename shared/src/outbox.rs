//! The local outbox: a provider that delivers messages as JSON lines (to a file for `waymark dev`,
//! to memory for `waymark simulate`) instead of to SES and SNS.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::engine::{Content, Outgoing};
use crate::journey::Channel;
use crate::profile::Address;
use crate::provider::{Receipt, SendError, Sender};

/// One delivered message, as the outbox file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxLine {
    pub at: Timestamp,
    pub channel: Channel,
    pub user_id: String,
    pub journey: String,
    pub step: String,
    pub to: Address,
    pub content: Content,
}

/// Where outbox lines go.
#[derive(Clone)]
pub enum Sink {
    File(PathBuf),
    Memory(Arc<Mutex<Vec<OutboxLine>>>),
}

pub struct OutboxSender {
    sink: Sink,
    clock: Arc<dyn Clock>,
    /// Print a one-line summary of each message (for `waymark dev`'s console).
    echo: bool,
}

impl OutboxSender {
    pub fn new(sink: Sink, clock: Arc<dyn Clock>, echo: bool) -> Self {
        OutboxSender { sink, clock, echo }
    }

    /// A sender that keeps lines in memory, and the handle to read them.
    pub fn memory(clock: Arc<dyn Clock>) -> (Self, Arc<Mutex<Vec<OutboxLine>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            OutboxSender::new(Sink::Memory(lines.clone()), clock, false),
            lines,
        )
    }
}

/// The short human summary `waymark dev` prints for a message.
pub fn summary(line: &OutboxLine) -> String {
    let what = match &line.content {
        Content::Email { subject, .. } => format!("subject {subject:?}"),
        Content::Sms { body, .. } => format!("{body:?}"),
        Content::Push { title, .. } | Content::InApp { title, .. } => format!("{title:?}"),
        Content::Webhook { method, url, .. } => format!("{method} {url}"),
    };
    format!(
        "{} {} → user {} ({}/{}): {}",
        line.at.strftime("%Y-%m-%d %H:%M:%S"),
        line.channel,
        line.user_id,
        line.journey,
        line.step,
        what
    )
}

#[async_trait]
impl Sender for OutboxSender {
    fn wants_in_app(&self) -> bool {
        true
    }

    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        let line = OutboxLine {
            at: self.clock.now(),
            channel: message.channel,
            user_id: message.user_id.clone(),
            journey: message.journey.clone(),
            step: message.step.clone(),
            to: message.to.clone(),
            content: message.content.clone(),
        };
        if self.echo {
            println!("{}", summary(&line));
        }
        match &self.sink {
            Sink::Memory(lines) => lines.lock().unwrap_or_else(|p| p.into_inner()).push(line),
            Sink::File(path) => {
                let mut text = serde_json::to_string(&line)
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                text.push('\n');
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| SendError::Retryable(format!("outbox {}: {e}", path.display())))?;
                f.write_all(text.as_bytes())
                    .map_err(|e| SendError::Retryable(format!("outbox {}: {e}", path.display())))?;
            }
        }
        Ok(Receipt::default())
    }
}
