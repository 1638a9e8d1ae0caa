//! The queue port on two SQS standard queues (events, steps): messages go out in
//! `SendMessageBatch` calls of at most 10 entries and 256 KB, each entry with its own delay;
//! entries SQS fails for its own reasons are sent again a few times. Never reads a message.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;

use crate::queue::{Outbound, Queue, QueueError, QueueName, MAX_DELAY_SECS};

/// Entries per SendMessageBatch.
const BATCH_ENTRIES: usize = 10;
/// Bytes per SendMessageBatch (the sum of the bodies) and per message.
const BATCH_BYTES: usize = 256 * 1024;
/// Attempts for entries SQS failed on its side (not the sender's fault).
const ATTEMPTS: u32 = 4;
/// The errors of a whole SendMessageBatch that are about what its messages hold: sending them
/// again can never succeed. Every other error is about the queue or the account.
const CONTENT_CODES: [&str; 3] = [
    "InvalidMessageContents",
    "BatchRequestTooLong",
    "AWS.SimpleQueueService.BatchRequestTooLong",
];

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    events_url: String,
    steps_url: String,
}

impl SqsQueue {
    pub fn new(
        client: Client,
        events_url: impl Into<String>,
        steps_url: impl Into<String>,
    ) -> Self {
        SqsQueue {
            client,
            events_url: events_url.into(),
            steps_url: steps_url.into(),
        }
    }

    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Events => &self.events_url,
            QueueName::Steps => &self.steps_url,
        }
    }

    /// Sends one batch, sending again the entries that failed on SQS's side.
    async fn send_batch(&self, url: &str, batch: Vec<(String, u32)>) -> Result<(), QueueError> {
        let mut pending: Vec<(usize, String, u32)> = batch
            .into_iter()
            .enumerate()
            .map(|(i, (body, delay))| (i, body, delay))
            .collect();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let entries = pending
                .iter()
                .map(|(i, body, delay)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(i32::try_from(*delay).unwrap_or(0))
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    // Refused as a whole: for what the messages hold (the API answers the
                    // request 400), or for the stack (no such queue, access denied, its KMS
                    // key: the API answers 503, and the senders retry until it is fixed).
                    let code = super::error_code(&e);
                    if !super::is_transient(&e) && CONTENT_CODES.contains(&code.as_str()) {
                        QueueError::Rejected(format!("SQS SendMessageBatch: {code}"))
                    } else {
                        QueueError::Unavailable(format!("SQS SendMessageBatch: {code}"))
                    }
                })?;
            if out.failed().is_empty() {
                return Ok(());
            }
            if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                return Err(QueueError::Rejected(format!(
                    "SQS refused a message: {}",
                    f.code()
                )));
            }
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            tracing::warn!(
                failed = failed.len(),
                code = out.failed().first().map(|f| f.code()).unwrap_or(""),
                "SQS failed part of a batch; sending those again"
            );
            pending.retain(|(i, _, _)| failed.contains(&i.to_string().as_str()));
        }
        Err(QueueError::Unavailable(format!(
            "SQS failed {} message(s) after {ATTEMPTS} attempts",
            pending.len()
        )))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: QueueName, messages: &[Outbound]) -> Result<(), QueueError> {
        let url = self.url(queue);
        // Every message is checked before any is sent: a refusal of one (the API answers it
        // 400) must not leave the others of its request queued.
        let mut bodies = Vec::with_capacity(messages.len());
        for m in messages {
            let body = serde_json::to_string(&m.message)
                .map_err(|e| QueueError::Rejected(format!("message {}: {e}", m.message.id())))?;
            if let Some(refused) = crate::queue::refused_body(&m.message, &body) {
                return Err(refused);
            }
            bodies.push((body, m.delay_secs));
        }
        let mut batch: Vec<(String, u32)> = Vec::with_capacity(BATCH_ENTRIES);
        let mut bytes = 0;
        for (body, delay_secs) in bodies {
            if batch.len() == BATCH_ENTRIES || bytes + body.len() > BATCH_BYTES {
                self.send_batch(url, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += body.len();
            batch.push((body, delay_secs.min(MAX_DELAY_SECS)));
        }
        if !batch.is_empty() {
            self.send_batch(url, batch).await?;
        }
        Ok(())
    }
}
