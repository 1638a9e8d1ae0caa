//! The provider port: whoever delivers a rendered message (SES, SNS, a webhook client, the local
//! outbox). Errors say whether a retry may help; the runtime never retries a permanent one.

use async_trait::async_trait;

use crate::engine::Outgoing;
use crate::profile::Device;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Throttled, timed out, or the provider failed: try again later (the ledger stops duplicates).
    #[error("provider busy or unreachable: {0}")]
    Retryable(String),
    /// The provider refused for good (invalid number, disabled endpoint, rejected address).
    #[error("provider rejected the message: {0}")]
    Permanent(String),
    /// A push refused for good on every device it was tried on, the provider saying some of
    /// them are disabled (uninstalled apps): `disabled_devices` holds their tokens, which the
    /// runtime marks, and only those (another device may have refused this message alone, or
    /// never been tried). `reason` is one refusal's, as [`SendError::Permanent`]'s.
    #[error("provider rejected the message: {reason}")]
    PushRefused {
        reason: String,
        disabled_devices: Vec<String>,
    },
    /// A push no device took, one of them failing for a passing reason: try again later, as
    /// [`SendError::Retryable`]; the provider said the devices in `disabled_devices` are
    /// disabled (uninstalled apps), which the runtime marks now, whatever the retry finds.
    #[error("provider busy or unreachable: {reason}")]
    PushRetryable {
        reason: String,
        disabled_devices: Vec<String>,
    },
}

/// What a provider answered for an accepted message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Receipt {
    pub provider_id: Option<String>,
    /// Push device tokens the provider reported disabled (uninstalled apps): the runtime marks
    /// them so they are not tried again.
    pub disabled_devices: Vec<String>,
    /// When the message went out, when that was before this call: a local outbox that holds
    /// the line already (written before a crash, the send not recorded) says when it wrote it.
    pub sent_at: Option<jiff::Timestamp>,
}

/// A page of the provider's SMS opt-out list (see [`Sender::opted_out_page`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptOutPage {
    pub numbers: Vec<String>,
    /// The token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// The error code SNS answers a push to a disabled endpoint (an uninstalled app) with.
pub const ENDPOINT_DISABLED: &str = "EndpointDisabled";

/// Held as `Arc<dyn Sender>` and called through it. There is deliberately no forwarding impl for
/// `Arc<T>`: method calls would pick it, and every call would box its future twice.
#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError>;

    /// Registers a push device with the provider and returns its handle (an SNS endpoint ARN);
    /// for a `revived` device (its handle disabled by the provider, its token sent again by the
    /// app), enables its handle again. Providers without such a step return `None`.
    async fn register(&self, _device: &Device) -> Result<Option<String>, SendError> {
        Ok(None)
    }

    /// Deletes a push device's handle at the provider (its SNS endpoint, which holds its token):
    /// a user's erasure leaves no token of hers there. A handle gone already is no error, so a
    /// repeat deletes nothing and succeeds; `Permanent` when the provider refuses for good (not
    /// this deployment's to delete). Providers without handles have nothing to delete.
    async fn unregister(&self, _device: &Device) -> Result<(), SendError> {
        Ok(())
    }

    /// One page of the phone numbers that replied STOP to the provider's SMS (SNS keeps this
    /// list, a page of up to 100 numbers a request, and sends no event for it): the first page
    /// for `token` `None`, else the page `token` names. Providers without such a list return an
    /// empty last page.
    async fn opted_out_page(&self, _token: Option<&str>) -> Result<OptOutPage, SendError> {
        Ok(OptOutPage::default())
    }

    /// Whether in-app messages, which the runtime puts in the user's inbox itself, should also be
    /// handed to this sender (the local outbox shows them; SES and SNS have nothing to do).
    fn wants_in_app(&self) -> bool {
        false
    }
}

/// A sender that keeps what it was given, for tests and simulation.
#[derive(Default, Clone)]
pub struct RecordingSender {
    sent: std::sync::Arc<std::sync::Mutex<Vec<Outgoing>>>,
}

impl RecordingSender {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn sent(&self) -> Vec<Outgoing> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Sender for RecordingSender {
    async fn send(&self, message: &Outgoing) -> Result<Receipt, SendError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message.clone());
        Ok(Receipt::default())
    }
}
