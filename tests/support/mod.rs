//! The test bench: a Waymark stack made in moto from template.yaml, the three functions' handlers
//! wired as the binaries wire them (same config reader, same SSM secrets, same clients, each
//! with a probe that counts its requests), and a driver that plays Lambda's part: API Gateway
//! requests, the SQS event source mapping, and the scheduler's minute.
//!
//! Time is a `ManualClock`. moto runs SQS `DelaySeconds` on the wall clock, so the probe moves
//! each message's delay into virtual time: it records when the message would become visible and
//! sends it with no delay; the driver hands a message to the engine only once the manual clock
//! has reached that time. The queues, their receive counts and their redrive policies are moto's.

#![allow(dead_code)] // each test file uses part of the bench

pub mod policy;
pub mod template;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use waymark::api::Api;
use waymark::aws::{self, handlers, Clients, Config, Secrets};
use waymark::clock::{Clock, ManualClock};
use waymark::event::Limits;
use waymark::runtime::Runtime;

use template::Bindings;

pub const WRITE_KEY: &str = "wk_test_0123456789";
pub const ADMIN_KEY: &str = "ak_test_0123456789";
pub const SIGNING_SECRET: &str = "test-signing-secret-0123456789abcdef";
pub const SENDER_DOMAIN: &str = "waymark.test";
pub const PUBLIC_BASE_URL: &str = "https://hooks.waymark.test";

/// The moto server `make test` started, or `None` (and a note) when there is none.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("WAYMARK_MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            eprintln!("skipped: WAYMARK_MOTO_ENDPOINT not set");
            None
        }
    }
}

/// SDK configuration pointing every service at moto.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .timeout_config(waymark::aws::timeouts())
        .load()
        .await
}

// ------------------------------------------------------------------------------------ probe

/// When each message sent to SQS becomes visible, in virtual time, by message body.
#[derive(Debug)]
pub struct VirtualDelays {
    clock: ManualClock,
    visible_at: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl VirtualDelays {
    fn record(&self, body: &str, delay: i64) {
        let at = self.clock.now() + SignedDuration::from_secs(delay);
        lock(&self.visible_at)
            .entry(body.to_string())
            .or_default()
            .push_back(at);
    }

    /// When a received message becomes visible (the first unclaimed record for its body).
    fn take(&self, body: &str) -> Option<Timestamp> {
        lock(&self.visible_at).get_mut(body)?.pop_front()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct ProbeState {
    /// The function's role as template.yaml gives it, and the calls it did not allow.
    policy: policy::Policy,
    denied: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<String, u64>>,
    emails: Mutex<Vec<Value>>,
    publishes: Mutex<Vec<BTreeMap<String, String>>>,
    delays: Arc<VirtualDelays>,
}

/// An SDK interceptor on one function's clients: refuses, as AWS would, a request the
/// function's role in template.yaml does not allow (and keeps it for the harness to fail the
/// test), counts attempts by `Service.Operation`, keeps the SES SendEmail and SNS Publish
/// requests, and moves SQS delays into virtual time.
#[derive(Debug, Clone)]
pub struct Probe(Arc<ProbeState>);

impl Probe {
    fn new(delays: Arc<VirtualDelays>, policy: policy::Policy) -> Self {
        Probe(Arc::new(ProbeState {
            policy,
            denied: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            emails: Mutex::new(Vec::new()),
            publishes: Mutex::new(Vec::new()),
            delays,
        }))
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.0.counts).clone()
    }

    pub fn reset(&self) {
        lock(&self.0.counts).clear();
    }

    /// The requests the function's role does not allow, as `action on resource`.
    pub fn denied(&self) -> Vec<String> {
        lock(&self.0.denied).clone()
    }

    /// The JSON bodies of the SES v2 SendEmail requests made.
    pub fn emails(&self) -> Vec<Value> {
        lock(&self.0.emails).clone()
    }

    /// The SNS Publish requests made, each as its form parameters (`TargetArn`,
    /// `MessageAttributes.entry.1.Name`, ...): what moto's model does not keep of a push.
    pub fn publishes(&self) -> Vec<BTreeMap<String, String>> {
        lock(&self.0.publishes).clone()
    }
}

/// The parameters of an AWS query-protocol body (`a=1&b=x%20y`).
fn form_params(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A Publish request's message attributes, by name (the query protocol numbers its entries).
pub fn publish_attributes(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    params
        .iter()
        .filter_map(|(k, name)| {
            let n = k
                .strip_prefix("MessageAttributes.entry.")?
                .strip_suffix(".Name")?;
            let value = params.get(&format!("MessageAttributes.entry.{n}.Value.StringValue"))?;
            Some((name.clone(), value.clone()))
        })
        .collect()
}

fn operation(cfg: &ConfigBag) -> (String, String) {
    cfg.load::<Metadata>()
        .map(|m| (m.service().to_string(), m.name().to_string()))
        .unwrap_or_default()
}

impl Intercept for Probe {
    fn name(&self) -> &'static str {
        "waymark-test-probe"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op) = operation(cfg);
        *lock(&self.0.counts)
            .entry(format!("{service}.{op}"))
            .or_insert(0) += 1;
        Ok(())
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, op) = operation(cfg);
        if op != "SendMessageBatch" && op != "SendMessage" {
            return Ok(());
        }
        let request = context.request_mut();
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut body: Value = serde_json::from_slice(bytes)?;
        let mut entries: Vec<&mut Value> = match body.get_mut("Entries") {
            Some(Value::Array(a)) => a.iter_mut().collect(),
            _ => vec![&mut body],
        };
        for entry in entries.iter_mut() {
            let delay = entry
                .get("DelaySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let text = entry
                .get("MessageBody")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            self.0.delays.record(&text, delay);
            if let Some(m) = entry.as_object_mut() {
                m.remove("DelaySeconds");
            }
        }
        let new = serde_json::to_vec(&body)?;
        request
            .headers_mut()
            .insert("content-length", new.len().to_string());
        *request.body_mut() = SdkBody::from(new);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, op) = operation(cfg);
        let body = context.request().body().bytes().unwrap_or_default();
        for call in self.0.policy.calls(&service, &op, body) {
            if !self.0.policy.allows(&call) {
                let what = format!(
                    "{} on {}",
                    call.action,
                    call.resource.as_deref().unwrap_or("(any resource)")
                );
                lock(&self.0.denied).push(what.clone());
                return Err(format!("AccessDenied: template.yaml does not allow {what}").into());
            }
        }
        if op == "SendEmail" {
            if let Some(bytes) = context.request().body().bytes() {
                lock(&self.0.emails).push(serde_json::from_slice(bytes)?);
            }
        }
        if op == "Publish" {
            if let Some(bytes) = context.request().body().bytes() {
                lock(&self.0.publishes).push(form_params(bytes));
            }
        }
        Ok(())
    }
}

/// A function's clients, each with the function's probe.
fn probed_clients(sdk: &SdkConfig, probe: &Probe) -> Clients {
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(probe.clone())
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(probe.clone())
                .build(),
        ),
        ses: aws_sdk_sesv2::Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(sdk)
                .interceptor(probe.clone())
                .retry_config(waymark::aws::provider_retries())
                .timeout_config(waymark::aws::provider_timeouts())
                .build(),
        ),
        sns: aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(sdk)
                .interceptor(probe.clone())
                .retry_config(waymark::aws::provider_retries())
                .timeout_config(waymark::aws::provider_timeouts())
                .build(),
        ),
    }
}

// ------------------------------------------------------------------------------------ stack

/// The resources of template.yaml, made in moto under unique names.
pub struct Stack {
    pub name: String,
    pub template: Value,
    pub bindings: Bindings,
}

impl Stack {
    pub async fn create(sdk: &SdkConfig, test: &str) -> Stack {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("wm-{test}-{}", nanos % 1_000_000_000_000);
        let template = template::load();
        let mut b = Bindings::pseudo();

        // Parameters.
        for (k, v) in [
            ("SenderIdentity", SENDER_DOMAIN.to_string()),
            ("SenderAddress", format!("Waymark <hello@{SENDER_DOMAIN}>")),
            ("WriteKeysParameter", format!("/{name}/write-keys")),
            ("AdminKeysParameter", format!("/{name}/admin-keys")),
            ("SigningSecretParameter", format!("/{name}/signing-secret")),
            (
                "WebhookSecretsParameter",
                format!("/{name}/webhook-secrets"),
            ),
            ("FrequencyCaps", String::new()),
            // The examples' topics (examples/journeys/waymark.yaml), as `waymark publish
            // examples/journeys` prints the parameter for `sam deploy`.
            (
                "SubscriptionTopics",
                r#"{"offers":{"name":"Offers and upgrades","default":"subscribed"}}"#.to_string(),
            ),
            ("PublicBaseUrl", PUBLIC_BASE_URL.to_string()),
            ("AlarmTopic", String::new()),
            ("Api", format!("{name}-api")),
        ] {
            b.refs.insert(k.into(), v);
        }
        // The others take their defaults, as `sam deploy` gives them.
        for (k, p) in template["Parameters"].as_object().into_iter().flatten() {
            if let Some(default) = p.get("Default").and_then(|d| b.resolve(&template, d)) {
                b.refs.entry(k.clone()).or_insert(default);
            }
        }

        // The table, as the template declares it.
        let table = format!("{name}-table");
        let props = template::properties(&template, "Table");
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let mut create = ddb.create_table().table_name(&table);
        for a in props["AttributeDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a["AttributeName"].as_str().unwrap_or_default())
                    .attribute_type(ScalarAttributeType::from(
                        a["AttributeType"].as_str().unwrap_or_default(),
                    ))
                    .build()
                    .expect("attribute definition"),
            );
        }
        for k in props["KeySchema"].as_array().into_iter().flatten() {
            create = create.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                    .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                    .build()
                    .expect("key schema"),
            );
        }
        for g in props["GlobalSecondaryIndexes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mut index = GlobalSecondaryIndex::builder()
                .index_name(g["IndexName"].as_str().unwrap_or_default())
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            g["Projection"]["ProjectionType"].as_str().unwrap_or("ALL"),
                        ))
                        .build(),
                );
            for k in g["KeySchema"].as_array().into_iter().flatten() {
                index = index.key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(k["AttributeName"].as_str().unwrap_or_default())
                        .key_type(KeyType::from(k["KeyType"].as_str().unwrap_or_default()))
                        .build()
                        .expect("index key schema"),
                );
            }
            create = create.global_secondary_indexes(index.build().expect("index"));
        }
        create
            .billing_mode(BillingMode::from(
                props["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST"),
            ))
            .send()
            .await
            .expect("create the table in moto");
        if let Some(ttl) = props.get("TimeToLiveSpecification") {
            ddb.update_time_to_live()
                .table_name(&table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl["AttributeName"].as_str().unwrap_or("ttl"))
                        .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                        .build()
                        .expect("ttl"),
                )
                .send()
                .await
                .expect("turn TTL on in moto");
        }
        b.refs.insert("Table".into(), table.clone());
        b.attrs.insert(
            "Table.Arn".into(),
            format!("arn:aws:dynamodb:us-east-1:123456789012:table/{table}"),
        );

        // The queues: those without a redrive policy first (they are the dead-letter queues).
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let mut queues: Vec<(String, Value)> = template["Resources"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["Type"] == "AWS::SQS::Queue")
            .map(|(k, r)| (k.clone(), r["Properties"].clone()))
            .collect();
        queues.sort_by_key(|(_, p)| p.get("RedrivePolicy").is_some());
        for (logical, props) in queues {
            let queue_name = format!("{name}-{logical}");
            let mut create = sqs.create_queue().queue_name(&queue_name);
            for (k, v) in props.as_object().into_iter().flatten() {
                let value = if k == "RedrivePolicy" {
                    let mut policy = serde_json::Map::new();
                    for (pk, pv) in v.as_object().into_iter().flatten() {
                        let resolved = b
                            .resolve(&template, pv)
                            .unwrap_or_else(|| panic!("{logical}: cannot resolve {pk}"));
                        policy.insert(
                            pk.clone(),
                            resolved
                                .parse::<i64>()
                                .map(Value::from)
                                .unwrap_or(Value::String(resolved)),
                        );
                    }
                    Value::Object(policy).to_string()
                } else {
                    b.resolve(&template, v)
                        .unwrap_or_else(|| panic!("{logical}: cannot resolve {k}"))
                };
                create = create.attributes(QueueAttributeName::from(k.as_str()), value);
            }
            let url = create
                .send()
                .await
                .unwrap_or_else(|e| panic!("create {logical} in moto: {e:?}"))
                .queue_url()
                .unwrap_or_default()
                .to_string();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("queue attributes")
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .cloned()
                .unwrap_or_default();
            b.refs.insert(logical.clone(), url);
            b.attrs.insert(format!("{logical}.Arn"), arn);
            b.attrs.insert(format!("{logical}.QueueName"), queue_name);
        }

        // SNS: the feedback topic and one platform application per push service.
        let sns = aws_sdk_sns::Client::new(sdk);
        let topic = sns
            .create_topic()
            .name(format!("{name}-feedback"))
            .send()
            .await
            .expect("create the feedback topic");
        b.refs.insert(
            "FeedbackTopic".into(),
            topic.topic_arn().unwrap_or_default().to_string(),
        );
        for (param, platform) in [
            ("ApnsPlatformApplicationArn", "APNS"),
            ("FcmPlatformApplicationArn", "GCM"),
        ] {
            let app = sns
                .create_platform_application()
                .name(format!("{name}-{platform}"))
                .platform(platform)
                .attributes("PlatformCredential", "test-credential")
                .send()
                .await
                .expect("create a platform application");
            b.refs.insert(
                param.into(),
                app.platform_application_arn()
                    .unwrap_or_default()
                    .to_string(),
            );
        }

        // SES: moto refuses unverified senders; the configuration set is bound by name.
        let ses = aws_sdk_sesv2::Client::new(sdk);
        if let Err(e) = ses
            .create_email_identity()
            .email_identity(SENDER_DOMAIN)
            .send()
            .await
        {
            // Another test made it first.
            let code = aws_sdk_sesv2::error::ProvideErrorMetadata::code(&e).unwrap_or("");
            assert_eq!(code, "AlreadyExistsException", "verify the sender: {e:?}");
        }
        let configuration_set = format!("{name}-config");
        let _ = ses
            .create_configuration_set()
            .configuration_set_name(&configuration_set)
            .send()
            .await;
        b.refs.insert("ConfigurationSet".into(), configuration_set);

        // SSM: the keys and the signing secret, as an operator would store them.
        let ssm = aws_sdk_ssm::Client::new(sdk);
        for (param, value) in [
            ("WriteKeysParameter", WRITE_KEY),
            ("AdminKeysParameter", ADMIN_KEY),
            ("SigningSecretParameter", SIGNING_SECRET),
        ] {
            ssm.put_parameter()
                .name(b.refs[param].clone())
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .send()
                .await
                .expect("put an SSM parameter");
        }

        Stack {
            name,
            template,
            bindings: b,
        }
    }

    pub fn url(&self, logical: &str) -> String {
        self.bindings.refs[logical].clone()
    }

    /// A function's environment variables, from the template.
    pub fn environment(&self, function: &str) -> BTreeMap<String, String> {
        self.bindings.environment(&self.template, function)
    }

    /// A queue's `maxReceiveCount`, from the template.
    pub fn max_receive_count(&self, logical: &str) -> i64 {
        template::properties(&self.template, logical)["RedrivePolicy"]["maxReceiveCount"]
            .as_i64()
            .expect("maxReceiveCount")
    }

    pub fn visibility_timeout(&self, logical: &str) -> i64 {
        template::properties(&self.template, logical)["VisibilityTimeout"]
            .as_i64()
            .unwrap_or(30)
    }
}

// ---------------------------------------------------------------------------------- harness

/// A message the driver took from moto and holds until its (virtual) time.
#[derive(Debug, Clone)]
struct InFlight {
    queue: &'static str,
    message_id: String,
    receipt: String,
    body: String,
    visible_at: Timestamp,
    attributes: HashMap<String, String>,
}

pub struct Probes {
    pub intake: Probe,
    pub engine: Probe,
    pub scheduler: Probe,
}

impl Probes {
    pub fn reset(&self) {
        self.intake.reset();
        self.engine.reset();
        self.scheduler.reset();
    }

    /// The requests a function made that its role does not allow, by function.
    pub fn denied(&self) -> Vec<String> {
        [
            ("intake", &self.intake),
            ("engine", &self.engine),
            ("scheduler", &self.scheduler),
        ]
        .into_iter()
        .flat_map(|(f, p)| p.denied().into_iter().map(move |d| format!("{f}: {d}")))
        .collect()
    }
}

/// Every test over the stack checks, at its end, that each function made only requests its
/// role in template.yaml allows.
impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let denied = self.probes.denied();
        assert!(
            denied.is_empty(),
            "template.yaml's roles do not allow what the functions did:\n{}",
            denied.join("\n")
        );
    }
}

pub struct Harness {
    pub endpoint: String,
    pub sdk: SdkConfig,
    pub stack: Stack,
    pub clock: ManualClock,
    pub api: Api,
    pub engine: Runtime,
    pub scheduler: Runtime,
    pub probes: Probes,
    /// The driver's own client (Lambda's event source mapping), not counted.
    sqs: aws_sdk_sqs::Client,
    held: Vec<InFlight>,
    /// Messages the engine failed: when SQS lets them be received again.
    retry_at: HashMap<String, Timestamp>,
    delays: Arc<VirtualDelays>,
    /// Messages the engine was handed, over the whole test.
    pub delivered: usize,
    /// What each engine invocation has left before its timeout, as Lambda says (none: no limit).
    pub time_left: Option<std::time::Duration>,
    /// Instead: how many messages each invocation may start (a batch cut short at a chosen
    /// message, whatever the machine's speed).
    pub messages_per_invocation: Option<usize>,
}

/// The queues the engine consumes, by logical id.
const ENGINE_QUEUES: [&str; 2] = ["EventsQueue", "StepsQueue"];

impl Harness {
    /// A fresh stack and the three functions over it, or `None` without moto.
    pub async fn new(test: &str, start: Timestamp) -> Option<Harness> {
        let endpoint = moto_endpoint()?;
        let sdk = sdk_config(&endpoint).await;
        let stack = Stack::create(&sdk, test).await;
        let clock = ManualClock::new(start);
        let delays = Arc::new(VirtualDelays {
            clock: clock.clone(),
            visible_at: Mutex::new(HashMap::new()),
        });
        let policy =
            |function: &str| policy::Policy::of(&stack.template, &stack.bindings, function);
        let probes = Probes {
            intake: Probe::new(delays.clone(), policy("IntakeFunction")),
            engine: Probe::new(delays.clone(), policy("EngineFunction")),
            scheduler: Probe::new(delays.clone(), policy("SchedulerFunction")),
        };

        // Each function as its binary builds it: config from its template environment,
        // secrets from SSM, one set of clients.
        let function = |logical: &str, probe: &Probe| {
            let env = stack.environment(logical);
            let config = Config::from_lookup(|k| env.get(k).cloned())
                .unwrap_or_else(|e| panic!("{logical}: {e}"));
            (config, probed_clients(&sdk, probe))
        };
        let (config, clients) = function("IntakeFunction", &probes.intake);
        let mut secrets = Secrets::load(&config, &sdk).await.expect("intake secrets");
        let keys = secrets.keys.take().expect("intake has keys");
        let signer = secrets.signer.clone().expect("intake has a signer");
        let intake = aws::runtime(&config, &clients, &secrets, Arc::new(clock.clone()));
        let api = Api {
            runtime: Arc::new(intake),
            keys,
            signer,
            limits: Limits::default(),
        };
        let (config, clients) = function("EngineFunction", &probes.engine);
        let secrets = Secrets::load(&config, &sdk).await.expect("engine secrets");
        assert!(secrets.keys.is_none(), "the engine is given no API keys");
        let engine = aws::runtime(&config, &clients, &secrets, Arc::new(clock.clone()));
        let (config, clients) = function("SchedulerFunction", &probes.scheduler);
        let secrets = Secrets::load(&config, &sdk)
            .await
            .expect("scheduler secrets");
        let scheduler = aws::runtime(&config, &clients, &secrets, Arc::new(clock.clone()));

        Some(Harness {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            endpoint,
            sdk,
            stack,
            clock,
            api,
            engine,
            scheduler,
            probes,
            held: Vec::new(),
            retry_at: HashMap::new(),
            delays,
            delivered: 0,
            time_left: None,
            messages_per_invocation: None,
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---------------------------------------------------------------- API Gateway

    /// One HTTP API request through the intake handler, as API Gateway (payload 2.0) sends it.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let (encoded, query) = path.split_once('?').unwrap_or((path, ""));
        // As an HTTP API hands it over: the route it matched with each of its parameters, and
        // the path decoded (`%23` is `#` in `rawPath`).
        let (route_key, parameters) = route_of(method, encoded)
            .unwrap_or_else(|| (format!("{method} {encoded}"), HashMap::new()));
        let raw_path = percent_encoding::percent_decode_str(encoded)
            .decode_utf8_lossy()
            .into_owned();
        let raw_path = raw_path.as_str();
        let mut req = ApiGatewayV2httpRequest::default();
        req.version = Some("2.0".into());
        req.route_key = Some(route_key.clone());
        req.request_context.route_key = Some(route_key);
        req.path_parameters = parameters;
        req.raw_path = Some(raw_path.to_string());
        req.raw_query_string = Some(query.to_string());
        req.headers
            .insert("host", "api.waymark.test".parse().expect("header"));
        req.headers
            .insert("content-type", "application/json".parse().expect("header"));
        if let Some(k) = key {
            req.headers.insert(
                "authorization",
                format!("Bearer {k}").parse().expect("header"),
            );
        }
        req.request_context.stage = Some("$default".into());
        req.request_context.http.method = method.parse().expect("method");
        req.request_context.http.path = Some(raw_path.to_string());
        req.body = body.map(str::to_string);
        req.is_base64_encoded = false;
        let payload = serde_json::to_string(&req).expect("API Gateway payload");
        let request = lambda_http::request::from_str(&payload).expect("lambda_http parses it");
        let response = handlers::intake(&self.api, request).await;
        let status = response.status().as_u16();
        let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn publish_journey(&self, id: &str, yaml: &str) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/journeys/{id}"),
                Some(yaml),
                Some(ADMIN_KEY),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "publish {id}: {status} {body}"
        );
    }

    pub async fn identify(&self, user: &str, traits: Value) {
        let body = json!({"userId": user, "traits": traits}).to_string();
        let (status, out) = self
            .call("POST", "/v1/identify", Some(&body), Some(WRITE_KEY))
            .await;
        assert_eq!(status, 200, "identify {user}: {out}");
    }

    pub async fn track(&self, user: &str, event: &str, message_id: &str, properties: Value) {
        let body = json!({"userId": user, "event": event, "messageId": message_id, "properties": properties})
            .to_string();
        let (status, out) = self
            .call("POST", "/v1/track", Some(&body), Some(WRITE_KEY))
            .await;
        assert_eq!(status, 200, "track {event} for {user}: {out}");
    }

    /// `GET /v1/users/{id}` with the admin key.
    pub async fn user(&self, user: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/v1/users/{user}"), None, Some(ADMIN_KEY))
            .await;
        assert_eq!(status, 200, "user {user}: {body}");
        body
    }

    // ------------------------------------------------------------ SQS event source mapping

    /// Takes every message moto will give from the engine's queues and holds it until its time.
    async fn collect(&mut self) {
        for queue in ENGINE_QUEUES {
            let url = self.stack.url(queue);
            loop {
                let out = self
                    .sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(0)
                    .visibility_timeout(900)
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send()
                    .await
                    .expect("receive from moto");
                if out.messages().is_empty() {
                    break;
                }
                for m in out.messages() {
                    let id = m.message_id().unwrap_or_default().to_string();
                    let body = m.body().unwrap_or_default().to_string();
                    let visible_at = self
                        .retry_at
                        .remove(&id)
                        .or_else(|| self.delays.take(&body))
                        .unwrap_or_else(|| self.clock.now());
                    let attributes = m
                        .attributes()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect();
                    self.held.push(InFlight {
                        queue,
                        message_id: id,
                        receipt: m.receipt_handle().unwrap_or_default().to_string(),
                        body,
                        visible_at,
                        attributes,
                    });
                }
            }
        }
    }

    /// Hands the engine every message due by now, ten at a time per queue, as Lambda does:
    /// deletes what it handled and lets SQS deliver the reported failures again after the
    /// queue's visibility timeout (virtual time). Returns the failures' message ids.
    pub async fn deliver_due(&mut self) -> Vec<String> {
        let mut failed_ids = Vec::new();
        while let Some(failed) = self.deliver_batch().await {
            failed_ids.extend(failed);
        }
        failed_ids
    }

    /// Delivers one batch of what is due (up to ten messages of one queue) to the engine, as
    /// the event source mapping does; the ids it reported failed, or `None` when nothing is due.
    pub async fn deliver_batch(&mut self) -> Option<Vec<String>> {
        let mut failed_ids = Vec::new();
        {
            self.collect().await;
            let now = self.clock.now();
            let queue = self
                .held
                .iter()
                .find(|m| m.visible_at <= now)
                .map(|m| m.queue)?;
            let mut batch = Vec::new();
            let mut rest = Vec::new();
            for m in std::mem::take(&mut self.held) {
                if m.queue == queue && m.visible_at <= now && batch.len() < 10 {
                    batch.push(m);
                } else {
                    rest.push(m);
                }
            }
            self.held = rest;
            let arn = self.stack.bindings.attrs[&format!("{queue}.Arn")].clone();
            let mut event = SqsEvent::default();
            event.records = batch
                .iter()
                .map(|m| {
                    let mut r = SqsMessage::default();
                    r.message_id = Some(m.message_id.clone());
                    r.receipt_handle = Some(m.receipt.clone());
                    r.body = Some(m.body.clone());
                    r.attributes = m.attributes.clone();
                    r.event_source = Some("aws:sqs".into());
                    r.event_source_arn = Some(arn.clone());
                    r.aws_region = Some("us-east-1".into());
                    r
                })
                .collect();
            self.delivered += batch.len();
            let payload = serde_json::to_value(&event).expect("SQS event");
            let budget = match self.messages_per_invocation {
                Some(n) => handlers::Budget::Messages(n),
                None => handlers::Budget::Time(self.time_left),
            };
            let out = handlers::engine_within(&self.engine, payload, budget)
                .await
                .expect("the engine answers an SQS batch");
            let response: SqsBatchResponse = serde_json::from_value(out).expect("a batch response");
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            let url = self.stack.url(queue);
            let visibility = self.stack.visibility_timeout(queue);
            for m in batch {
                if failed.contains(&m.message_id) {
                    self.sqs
                        .change_message_visibility()
                        .queue_url(&url)
                        .receipt_handle(&m.receipt)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .expect("change visibility");
                    self.retry_at.insert(
                        m.message_id.clone(),
                        now + SignedDuration::from_secs(visibility),
                    );
                    failed_ids.push(m.message_id);
                } else {
                    self.sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(&m.receipt)
                        .send()
                        .await
                        .expect("delete a handled message");
                }
            }
        }
        Some(failed_ids)
    }

    /// Runs the queues until `until`: delivers what is due, then moves the clock to the next
    /// message's time, and so on; the clock ends at `until`.
    pub async fn run_until(&mut self, until: Timestamp) -> Vec<String> {
        let mut failed = Vec::new();
        loop {
            failed.extend(self.deliver_due().await);
            let next = self
                .held
                .iter()
                .map(|m| m.visible_at)
                .filter(|t| *t <= until)
                .min();
            match next {
                Some(t) => {
                    if t > self.clock.now() {
                        self.clock.set(t);
                    }
                }
                None => break,
            }
        }
        if until > self.clock.now() {
            self.clock.set(until);
        }
        failed
    }

    pub async fn advance(&mut self, d: SignedDuration) -> Vec<String> {
        let until = self.clock.now() + d;
        self.run_until(until).await
    }

    /// The scheduler's minute: its handler with an EventBridge Scheduler event.
    pub async fn tick(&self) -> Value {
        let mut event = EventBridgeEvent::<Value>::default();
        event.version = Some("0".into());
        event.id = Some(format!("tick-{}", self.clock.now().as_second()));
        event.detail_type = "Scheduled Event".into();
        event.source = "aws.scheduler".into();
        event.region = Some("us-east-1".into());
        event.detail = json!({});
        let mut payload = serde_json::to_value(&event).expect("scheduled event");
        payload["time"] = json!(self.clock.now().to_string());
        handlers::scheduler(&self.scheduler, payload, None)
            .await
            .expect("the scheduler ticks")
    }

    // ---------------------------------------------------------------- moto inspection

    /// moto's model dump (`/moto-api/data.json`). moto builds it by checking each model
    /// attribute for JSON and then encoding them all, so an attribute another test's requests
    /// change in between fails the dump with a 500 (seen: a DynamoDB item's key); the dump is
    /// then asked for again.
    pub async fn moto_data(&self) -> Value {
        let hostport = self
            .endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut last = String::new();
        for _ in 0..20 {
            let mut s = tokio::net::TcpStream::connect(&hostport)
                .await
                .expect("connect to moto");
            s.write_all(
                format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes(),
            )
            .await
            .expect("ask moto");
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.expect("read moto's answer");
            let at = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("an HTTP answer");
            if let Ok(data) = serde_json::from_slice(&raw[at + 4..]) {
                return data;
            }
            last = String::from_utf8_lossy(&raw[..at.min(200)]).into_owned();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("moto's data.json never read as JSON; its last answer began: {last}")
    }

    /// The emails moto's SES accepted for `address`.
    pub async fn emails_to(&self, address: &str) -> Vec<Value> {
        let data = self.moto_data().await;
        data.pointer("/ses/Message")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| {
                m.pointer("/destinations/ToAddresses")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == address))
            })
            .cloned()
            .collect()
    }

    /// The messages moto's SNS published to a platform endpoint.
    pub async fn pushes_to(&self, endpoint_arn: &str) -> Vec<Value> {
        let data = self.moto_data().await;
        data.pointer("/sns/PlatformEndpoint")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e["arn"] == endpoint_arn)
            .flat_map(|e| {
                e["messages"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(_, m)| {
                        serde_json::from_str(m.as_str().unwrap_or("")).unwrap_or(Value::Null)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The SNS endpoint the engine registered for a user's first device.
    pub async fn endpoint_of(&self, user: &str) -> String {
        let view = self.user(user).await;
        view.pointer("/profile/devices/0/endpoint")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{user} has no registered device: {view}"))
            .to_string()
    }

    /// Every message body in a queue (receives them; they stay in flight).
    pub async fn drain(&self, logical: &str) -> Vec<String> {
        let url = self.stack.url(logical);
        let mut out = Vec::new();
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .visibility_timeout(900)
                .send()
                .await
                .expect("receive");
            if r.messages().is_empty() {
                return out;
            }
            out.extend(
                r.messages()
                    .iter()
                    .map(|m| m.body().unwrap_or_default().to_string()),
            );
        }
    }

    /// Sends a raw message body to a queue (not through Waymark: for poison tests).
    pub async fn send_raw(&self, logical: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(self.stack.url(logical))
            .message_body(body)
            .send()
            .await
            .expect("send a raw message");
    }
}

/// The cart journey of the examples.
pub fn cart_journey() -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/journeys/cart_abandonment.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The properties of a cart the examples abandon.
pub fn cart(id: &str) -> Value {
    json!({
        "cart_id": id,
        "total": 89.9,
        "currency": "EUR",
        "items": [
            {"name": "Trail shoes", "price": 79.9, "stock": 3},
            {"name": "Running socks", "price": 10.0, "stock": 40}
        ]
    })
}

pub fn at(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// The route of `api::ROUTES` (template.yaml's) that an HTTP API matches `method` and the
/// percent-encoded `path` to: its route key and its path parameters, decoded, as API Gateway
/// hands them to the function.
fn route_of(method: &str, path: &str) -> Option<(String, HashMap<String, String>)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    waymark::api::ROUTES.iter().find_map(|route| {
        let (m, template) = route.split_once(' ')?;
        let names: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        if m != method || names.len() != segments.len() {
            return None;
        }
        let mut parameters = HashMap::new();
        for (name, segment) in names.iter().zip(&segments) {
            match name.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                Some(n) if !segment.is_empty() => {
                    let value = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
                    parameters.insert(n.to_string(), value.into_owned());
                }
                None if name == segment => {}
                _ => return None,
            }
        }
        Some((route.to_string(), parameters))
    })
}
