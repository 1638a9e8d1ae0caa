//! The AWS adapters (DynamoDB store, SQS queue, SES/SNS sender), the typed configuration the
//! Lambda functions read once at cold start, and the handlers the three functions run. Never
//! decides anything about journeys: that is the runtime's and the engine's job.

pub mod dynamo;
pub mod handlers;
pub mod secrets;
pub mod send;
pub mod sqs;

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::auth::{AuthError, Keys, Signer};
use crate::clock::Clock;
use crate::runtime::{self, Runtime};

pub use dynamo::DynamoStore;
pub use send::{AwsSender, SenderSettings};
pub use sqs::SqsQueue;

/// How long a warm function trusts its list of published journeys.
pub const CATALOG_TTL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("SSM parameter {name} could not be read: {reason}")]
    Parameter { name: String, reason: String },
    #[error("{0}")]
    Keys(#[from] AuthError),
    #[error("FREQUENCY_CAPS: {0}")]
    Caps(String),
    #[error("SHARDS: {0}")]
    Shards(String),
    #[error("SUBSCRIPTION_TOPICS: {0}")]
    Topics(#[from] crate::topic::TopicsParameterError),
}

/// A secret given directly (tests, `WRITE_KEYS`) or by the name of an SSM parameter
/// (`WRITE_KEYS_PARAM`, read once with decryption).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Value(String),
    Parameter(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
            SecretSource::Parameter(name) => f.debug_tuple("Parameter").field(name).finish(),
        }
    }
}

/// Everything the functions read from their environment, once.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub table_name: String,
    pub events_queue_url: String,
    pub steps_queue_url: String,
    pub sender: SenderSettings,
    /// Base URL of the API for unsubscribe links (`PUBLIC_BASE_URL`).
    pub public_base_url: Option<String>,
    pub write_keys: Option<SecretSource>,
    pub admin_keys: Option<SecretSource>,
    pub signing_secret: Option<SecretSource>,
    /// The SSM parameter holding the webhook secrets (`WEBHOOK_SECRETS_PARAM`), read by the
    /// sender when a call needs one (see [`secrets::SsmSecrets`]).
    pub webhook_secrets: Option<String>,
    /// Frequency caps across journeys (`FREQUENCY_CAPS`, e.g. `push=3/1d,email=2/1d`).
    pub caps: std::collections::BTreeMap<crate::journey::Channel, runtime::Cap>,
    /// Subscription topics, each one's name and default (`SUBSCRIPTION_TOPICS`, JSON as
    /// [`crate::topic::Topics::parameter`] writes it: `waymark publish` prints it).
    pub topics: crate::topic::Topics,
    /// Timer and fold partitions to write with (`SHARDS`, 1 to 256; unset: the default 16):
    /// see [`crate::shards`].
    pub shards: Option<u32>,
}

impl Config {
    /// Reads `TABLE_NAME`, `EVENTS_QUEUE_URL`, `STEPS_QUEUE_URL` (required) and the optional
    /// `SENDER_ADDRESS`, `SES_CONFIGURATION_SET`, `APNS_PLATFORM_APPLICATION_ARN`,
    /// `FCM_PLATFORM_APPLICATION_ARN`, `PUBLIC_BASE_URL`, `FREQUENCY_CAPS`,
    /// `SUBSCRIPTION_TOPICS`, `SHARDS`, and the secrets `WRITE_KEYS` /
    /// `ADMIN_KEYS` / `SIGNING_SECRET` or their SSM parameter names `*_PARAM`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Config::from_env`] over any source of variables (the tests read template.yaml's).
    /// Blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
        // `NAME` (the value itself) wins over `NAME_PARAM` (an SSM parameter name).
        let secret = |value: &str, parameter: &str| {
            var(value)
                .map(SecretSource::Value)
                .or_else(|| var(parameter).map(SecretSource::Parameter))
        };
        Ok(Config {
            table_name: required("TABLE_NAME")?,
            events_queue_url: required("EVENTS_QUEUE_URL")?,
            steps_queue_url: required("STEPS_QUEUE_URL")?,
            sender: SenderSettings {
                from: var("SENDER_ADDRESS"),
                configuration_set: var("SES_CONFIGURATION_SET"),
                apns_application: var("APNS_PLATFORM_APPLICATION_ARN"),
                fcm_application: var("FCM_PLATFORM_APPLICATION_ARN"),
            },
            public_base_url: var("PUBLIC_BASE_URL"),
            write_keys: secret("WRITE_KEYS", "WRITE_KEYS_PARAM"),
            admin_keys: secret("ADMIN_KEYS", "ADMIN_KEYS_PARAM"),
            signing_secret: secret("SIGNING_SECRET", "SIGNING_SECRET_PARAM"),
            webhook_secrets: var("WEBHOOK_SECRETS_PARAM"),
            caps: runtime::parse_caps(&var("FREQUENCY_CAPS").unwrap_or_default())
                .map_err(ConfigError::Caps)?,
            topics: crate::topic::Topics::parse_parameter(
                &var("SUBSCRIPTION_TOPICS").unwrap_or_default(),
            )?,
            shards: var("SHARDS")
                .map(|v| parse_shards(&v))
                .transpose()
                .map_err(ConfigError::Shards)?,
        })
    }
}

/// A shard count as `SHARDS` gives it: a whole number from 1 to [`crate::shards::MAX`].
fn parse_shards(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=crate::shards::MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v:?} is not a valid count of partitions: write a whole number from 1 to {}",
            crate::shards::MAX
        )),
    }
}

/// The secrets, resolved.
#[derive(Default)]
pub struct Secrets {
    pub keys: Option<Keys>,
    pub signer: Option<Arc<Signer>>,
    /// The webhook secrets' port (read when a call needs them, not at cold start).
    pub webhook: Option<Arc<dyn crate::secrets::WebhookSecrets>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("keys", &self.keys)
            .field("signer", &self.signer.as_ref().map(|_| "<redacted>"))
            .field(
                "webhook",
                &self.webhook.as_ref().map(|_| "<read when needed>"),
            )
            .finish()
    }
}

impl Secrets {
    /// Resolves the configured secrets, reading SSM parameters (with decryption) where named.
    /// A function asks only for what its role may read: the engine has no key parameters.
    pub async fn load(config: &Config, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let ssm = aws_sdk_ssm::Client::new(sdk);
        let write = resolve(&ssm, config.write_keys.as_ref()).await?;
        let admin = resolve(&ssm, config.admin_keys.as_ref()).await?;
        let signing = resolve(&ssm, config.signing_secret.as_ref()).await?;
        let keys = match (write, admin) {
            (None, None) => None,
            (w, a) => Some(Keys::parse(
                w.as_deref().unwrap_or(""),
                a.as_deref().unwrap_or(""),
            )?),
        };
        let webhook = config.webhook_secrets.clone().map(|name| {
            Arc::new(secrets::SsmSecrets::ssm(ssm.clone(), name))
                as Arc<dyn crate::secrets::WebhookSecrets>
        });
        Ok(Secrets {
            keys,
            signer: signing.map(|s| Arc::new(Signer::new(s.into_bytes()))),
            webhook,
        })
    }
}

async fn resolve(
    ssm: &aws_sdk_ssm::Client,
    source: Option<&SecretSource>,
) -> Result<Option<String>, ConfigError> {
    match source {
        None => Ok(None),
        Some(SecretSource::Value(v)) => Ok(Some(v.clone())),
        Some(SecretSource::Parameter(name)) => {
            let out = ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| ConfigError::Parameter {
                    name: name.clone(),
                    reason: error_code(&e),
                })?;
            out.parameter()
                .and_then(|p| p.value())
                .map(|v| Some(v.to_string()))
                .ok_or_else(|| ConfigError::Parameter {
                    name: name.clone(),
                    reason: "it has no value".into(),
                })
        }
    }
}

/// The service clients, built once per cold start and shared by every invocation.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Clients {
    pub fn new(sdk: &SdkConfig) -> Self {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::from_conf(
                aws_sdk_sesv2::config::Builder::from(sdk)
                    .retry_config(provider_retries())
                    .timeout_config(provider_timeouts())
                    .build(),
            ),
            sns: aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(sdk)
                    .retry_config(provider_retries())
                    .timeout_config(provider_timeouts())
                    .build(),
            ),
        }
    }
}

/// The SDK configuration from the environment (Region, credentials, `AWS_ENDPOINT_URL`), with
/// [`timeouts`].
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .load()
        .await
}

/// SES and SNS calls are made once: an attempt that timed out (or failed with a 5xx) may have
/// been accepted, and the SDK's own retry would send the message again at once. The runtime
/// retries a failed send later, after its claim in the ledger, as it does any passing failure.
pub fn provider_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(1)
}

/// How long one SES or SNS call may take: 10 s (an SMS publish can take a few).
pub fn provider_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(10))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build()
}

/// How long one AWS call may take: an attempt 4 s, the call with its retries 10 s. The SDK sets
/// none but a connect timeout, so a response that never comes would hold its message until
/// the Lambda's own timeout and lose the whole batch's answer (every message of it received
/// once more); this way it fails that message alone, retried like any other passing failure.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(4))
        .operation_timeout(std::time::Duration::from_secs(10))
        .build()
}

/// The runtime over the AWS adapters, as the Lambda functions run it: waits up to the default
/// hop limit (30 minutes) ride the queue, longer ones become timers; the journey list is
/// cached for [`CATALOG_TTL`].
pub fn runtime(
    config: &Config,
    clients: &Clients,
    secrets: &Secrets,
    clock: Arc<dyn Clock>,
) -> Runtime {
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb.clone(),
        config.table_name.clone(),
    ));
    let queue = Arc::new(SqsQueue::new(
        clients.sqs.clone(),
        config.events_queue_url.clone(),
        config.steps_queue_url.clone(),
    ));
    let mut sender = AwsSender::new(
        clients.ses.clone(),
        clients.sns.clone(),
        config.sender.clone(),
    );
    if let Some(webhook) = &secrets.webhook {
        sender = sender.with_secrets(webhook.clone());
    }
    let sender = Arc::new(sender);
    let runtime_config = runtime_config(config, secrets);
    Runtime::new(store, queue, sender, clock, CATALOG_TTL, runtime_config)
}

/// The runtime's settings in a deployment, from the functions' environment.
fn runtime_config(config: &Config, secrets: &Secrets) -> runtime::Config {
    runtime::Config {
        public_url: config.public_base_url.clone(),
        signer: secrets.signer.clone(),
        caps: config.caps.clone(),
        topics: config.topics.clone(),
        // A topic neither the stack's parameter nor the journey's published version declares
        // (a version published before versions kept it) sends only to users who said yes.
        undeclared_topic: crate::topic::TopicDefault::OptIn,
        timer_shards: config.shards.unwrap_or(crate::shards::DEFAULT),
        ..runtime::Config::default()
    }
}

/// The error code of a failed AWS call (never its message: messages can quote addresses).
pub(crate) fn error_code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> String {
    match e {
        SdkError::ServiceError(s) => s
            .err()
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", s.raw().status().as_u16())),
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "timeout".into(),
        SdkError::DispatchFailure(_) => "connection failed".into(),
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        _ => "unknown error".into(),
    }
}

/// Whether a failed AWS call may succeed if tried again later: throttling, timeouts, connection
/// failures and 5xx answers.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            status >= 500
                || status == 429
                || code.contains("Throttl")
                || code.contains("TooManyRequests")
                || code.contains("LimitExceeded")
                || code.contains("InternalServer")
                || code.contains("InternalError")
                || code.contains("ServiceUnavailable")
                || code == "ProvisionedThroughputExceededException"
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let base = [
            ("TABLE_NAME", "t"),
            ("EVENTS_QUEUE_URL", "e"),
            ("STEPS_QUEUE_URL", "s"),
        ];
        Config::from_lookup(|name| {
            base.iter()
                .chain(vars)
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn shards_are_a_whole_number_from_1_to_256_and_default_to_16() {
        assert_eq!(with(&[]).map(|c| c.shards).ok(), Some(None));
        assert_eq!(with(&[("SHARDS", " ")]).map(|c| c.shards).ok(), Some(None));
        assert_eq!(
            with(&[("SHARDS", "64")]).map(|c| c.shards).ok(),
            Some(Some(64))
        );
        for bad in ["0", "257", "-1", "sixteen", "1.5"] {
            let err = with(&[("SHARDS", bad)]).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("SHARDS: ") && e.contains("from 1 to 256")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn topics_are_read_as_publish_prints_them() {
        let c = with(&[(
            "SUBSCRIPTION_TOPICS",
            r#"{"newsletter":{"name":"Newsletter","default":"opt_in"}}"#,
        )])
        .expect("topics");
        assert_eq!(c.topics.display_name("newsletter"), "Newsletter");
        assert!(with(&[]).expect("none").topics.is_empty());
        // A deployment fails closed on a topic declared nowhere.
        let secrets = Secrets {
            keys: None,
            signer: None,
            webhook: None,
        };
        assert_eq!(
            runtime_config(&c, &secrets).undeclared_topic,
            crate::topic::TopicDefault::OptIn
        );
        let err = with(&[("SUBSCRIPTION_TOPICS", "newsletter")])
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("SUBSCRIPTION_TOPICS: must be a JSON object")),
            "{err:?}"
        );
    }
}
