//! The webhook secrets port on AWS: one SSM parameter (a SecureString holding a JSON object of
//! names and values), read with decryption through [`CachedSecrets`]: when a call first needs
//! it, again after [`crate::secrets::SECRETS_TTL`] so that a rotated value takes effect, and
//! sooner for a secret it lacked. Never logs a value.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::secrets::{CachedSecrets, ReadAll, SecretsError};

/// The webhook secrets in an SSM parameter, kept for a while.
pub type SsmSecrets = CachedSecrets<SsmParameter>;

impl SsmSecrets {
    /// The secrets in the SSM parameter `name`.
    pub fn ssm(ssm: aws_sdk_ssm::Client, name: String) -> Self {
        CachedSecrets::new(SsmParameter { ssm, name })
    }
}

/// The SSM parameter `name`, a SecureString holding a JSON object of names and values.
pub struct SsmParameter {
    ssm: aws_sdk_ssm::Client,
    name: String,
}

impl std::fmt::Debug for SsmParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsmParameter")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ReadAll for SsmParameter {
    /// The parameter's names and values; `None` for a parameter that does not exist.
    async fn read_all(&self) -> Result<Option<BTreeMap<String, String>>, SecretsError> {
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
            Err(e) if super::error_code(&e) == "ParameterNotFound" => return Ok(None),
            Err(e) => return Err(unavailable(super::error_code(&e))),
        };
        let text = out.parameter().and_then(|p| p.value()).unwrap_or_default();
        // Never the text itself in the error: it is the secrets.
        serde_json::from_str::<BTreeMap<String, String>>(text)
            .map(Some)
            .map_err(|_| {
                unavailable(
                    "is not a JSON object of names and text values, like {\"API_KEY\": \"...\"}"
                        .into(),
                )
            })
    }
}
