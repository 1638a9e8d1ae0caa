//! The webhook secrets port on AWS: one SSM parameter (a SecureString holding a JSON object of
//! names and values), read with decryption when a call first needs it and again after
//! [`SECRETS_TTL`], so that a rotated value takes effect. Never logs a value.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::secrets::{SecretsError, WebhookSecrets};

/// How long the values read are used before the parameter is read again.
pub const SECRETS_TTL: Duration = Duration::from_secs(5 * 60);

/// The values read, and when.
struct Read {
    at: Instant,
    values: Arc<BTreeMap<String, String>>,
}

/// The webhook secrets in the SSM parameter `name`.
pub struct SsmSecrets {
    ssm: aws_sdk_ssm::Client,
    name: String,
    read: Mutex<Option<Read>>,
}

impl std::fmt::Debug for SsmSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmSecrets")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SsmSecrets {
    pub fn new(ssm: aws_sdk_ssm::Client, name: String) -> Self {
        SsmSecrets {
            ssm,
            name,
            read: Mutex::new(None),
        }
    }

    /// The parameter's names and values; a parameter that does not exist holds none.
    async fn fetch(&self) -> Result<BTreeMap<String, String>, SecretsError> {
        let unavailable =
            |why: String| SecretsError::Unavailable(format!("SSM parameter {}: {why}", self.name));
        let out = match self
            .ssm
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if super::error_code(&e) == "ParameterNotFound" => return Ok(BTreeMap::new()),
            Err(e) => return Err(unavailable(super::error_code(&e))),
        };
        let text = out.parameter().and_then(|p| p.value()).unwrap_or_default();
        // Never the text itself in the error: it is the secrets.
        serde_json::from_str::<BTreeMap<String, String>>(text).map_err(|_| {
            unavailable(
                "is not a JSON object of names and text values, like {\"API_KEY\": \"...\"}".into(),
            )
        })
    }
}

#[async_trait]
impl WebhookSecrets for SsmSecrets {
    async fn secret(&self, name: &str) -> Result<Option<String>, SecretsError> {
        let mut read = self.read.lock().await;
        let fresh = read.as_ref().is_some_and(|r| r.at.elapsed() < SECRETS_TTL);
        if !fresh {
            match self.fetch().await {
                Ok(values) => {
                    *read = Some(Read {
                        at: Instant::now(),
                        values: Arc::new(values),
                    });
                }
                // The values read before serve until the parameter can be read again.
                Err(e) if read.is_some() => {
                    tracing::warn!(error = %e, "webhook secrets not read again; the values read before are used");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(read.as_ref().and_then(|r| r.values.get(name).cloned()))
    }
}
