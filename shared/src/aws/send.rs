//! The sender port on AWS: email through SES v2, SMS and push through SNS, webhooks over HTTPS.
//! Says whether a failure may pass on a retry; never puts an address, a phone number or a
//! message body in a log line or an error.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{
    Body, Content as SesContent, Destination, EmailContent, Message as SesMessage, MessageHeader,
    MessageTag,
};
use aws_sdk_sns::types::MessageAttributeValue;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::engine::{Content, Outgoing};
use crate::journey::SmsType;
use crate::profile::{Address, Device};
use crate::provider::{OptOutPage, Receipt, SendError, Sender};
use crate::secrets::{substitute, LocalSecrets, SubstituteError, WebhookSecrets};
use crate::webhook::webhook_headers_sent;

/// What the sender needs besides its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderSettings {
    /// The From address (`Waymark <hello@example.com>`); no email without it.
    pub from: Option<String>,
    /// The SES configuration set that publishes bounces and complaints.
    pub configuration_set: Option<String>,
    /// SNS platform applications for APNs and FCM devices; no push registration without them.
    pub apns_application: Option<String>,
    pub fcm_application: Option<String>,
}

/// The SES tag that carries the user id, read back from bounce and complaint notices.
pub const USER_TAG: &str = "user_id";
/// The SES tag that carries the journey id.
pub const JOURNEY_TAG: &str = "journey";
/// The SES tag that carries the message's id, its send's ledger key (the `id` of its timeline
/// `sent` entry): an event SES publishes for the email (a bounce, a delivery) names the message.
pub const MESSAGE_TAG: &str = "message_id";
/// SES takes tag values of at most 256 characters.
const TAG_MAX: usize = 256;

/// A tag value in SES's charset (`[A-Za-z0-9_-]`): every byte outside `[A-Za-z0-9-]` is written
/// `_xx` (hex), so `ann@example.com` is `ann_40example_2ecom` and [`tag_decode`] gives it back.
pub fn tag_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The value [`tag_encode`] was given, if `s` is one of its outputs.
pub fn tag_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maps an SDK error by its code: `permanent` codes refuse this message for good, anything
/// transient may pass later, and the rest (an unknown code, a misconfigured account) is
/// retried too, so the message ends in the dead-letter queue rather than being dropped.
fn send_error<E: ProvideErrorMetadata>(
    service: &str,
    e: &SdkError<E, HttpResponse>,
    permanent: &[&str],
) -> SendError {
    let code = super::error_code(e);
    if !permanent.contains(&code.as_str()) {
        return SendError::Retryable(format!("{service}: {code}"));
    }
    // SES says `MessageRejected` also when the sending identity is not verified (its DNS
    // records removed, or a sandboxed account mailing an address it has not verified): the
    // account's trouble, which its owner fixes, not this message's.
    let unverified = e
        .message()
        .is_some_and(|m| m.to_ascii_lowercase().contains("not verified"));
    if code == "MessageRejected" && unverified {
        return SendError::Retryable(format!(
            "{service}: {code} (an identity is not verified in SES)"
        ));
    }
    SendError::Permanent(format!("{service}: {code}"))
}

/// A push none of its devices took, to be tried again: with the tokens of the devices SNS
/// answered disabled, when there are some, so that the runtime marks them now.
fn retry_marking(reason: String, disabled: Vec<String>) -> SendError {
    if disabled.is_empty() {
        SendError::Retryable(reason)
    } else {
        SendError::PushRetryable {
            reason,
            disabled_devices: disabled,
        }
    }
}

/// SES v2 SendEmail errors about this message or its recipient, which no retry fixes. A
/// suspended account (`AccountSuspendedException`) or a MAIL FROM domain SES cannot check
/// (`MailFromDomainNotVerifiedException`, also when its DNS does not answer) stops every send:
/// those are retried, so the messages wait for the fix, then the dead-letter queue, instead of
/// being recorded as rejected one by one.
const SES_PERMANENT: &[&str] = &["MessageRejected", "BadRequestException"];
/// SNS Publish and CreatePlatformEndpoint errors about this message, number or device, which
/// no retry fixes. A disabled platform application (its APNs or FCM credentials expired) stops
/// every push: retried, as above.
const SNS_PERMANENT: &[&str] = &[
    "EndpointDisabled",
    "InvalidParameter",
    "ParameterValueInvalid",
    "NotFound",
];

/// The From header SES reads as the one address of `from`, as the stack was given it
/// (`hello@example.com` or `Shop <hello@example.com>`). SES v2 reads a bare comma as the end of
/// an address and refuses a character outside ASCII, each for every email, so a display name
/// with an RFC 5322 special (`Acme, Inc.`) is written as a quoted string, and one with a
/// character outside printable ASCII (`Café`) as RFC 2047 encoded words; a name the operator
/// already quoted is taken as its content. Any other shape is passed on as given.
fn from_header(from: &str) -> String {
    let from = from.trim();
    let Some((name, address)) = from
        .strip_suffix('>')
        .and_then(|f| f.split_once('<'))
        .filter(|(name, address)| !name.contains('>') && !address.contains(['<', '>']))
    else {
        return from.to_string();
    };
    let name = unquoted(name.trim());
    if name.is_empty() {
        return address.to_string();
    }
    format!("{} <{address}>", display_name(&name))
}

/// The content of `name` if it is one RFC 5322 quoted string (`"Acme, Inc."`), else `name`.
fn unquoted(name: &str) -> String {
    let Some(inner) = name.strip_prefix('"') else {
        return name.to_string();
    };
    let mut content = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => content.push(escaped),
                None => return name.to_string(),
            },
            '"' if chars.as_str().is_empty() => return content,
            '"' => return name.to_string(),
            c => content.push(c),
        }
    }
    name.to_string()
}

/// RFC 5322 specials, which end an atom: a name holding one is a quoted string.
const SPECIALS: &[char] = &[
    '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '.', '"',
];
/// RFC 2047 caps an encoded word at 75 characters: `=?UTF-8?B?` and `?=` leave 63 for its
/// base64, which carries 45 bytes whole (60 characters).
const ENCODED_WORD_BYTES: usize = 45;

/// A display name as a header phrase: as it is when it is atoms, a quoted string when it holds
/// a special, encoded words (`=?UTF-8?B?...?=`) when it holds a character outside printable
/// ASCII.
fn display_name(name: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    if name.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        if !name.contains(SPECIALS) {
            return name.to_string();
        }
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        return format!("\"{escaped}\"");
    }
    // Words split between characters, so each decodes on its own.
    let mut words = Vec::new();
    let mut start = 0;
    for (i, c) in name.char_indices() {
        if i + c.len_utf8() - start > ENCODED_WORD_BYTES {
            words.push(&name[start..i]);
            start = i;
        }
    }
    words.push(&name[start..]);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", STANDARD.encode(w)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A webhook call as the engine rendered it (see [`Content::Webhook`]).
struct WebhookCall<'a> {
    url: &'a str,
    method: &'a str,
    headers: &'a BTreeMap<String, String>,
    body: Option<&'a str>,
    /// The secrets its template reads: their markers alone get a value.
    secrets: &'a [String],
}

/// How long a webhook may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

pub struct AwsSender {
    ses: aws_sdk_sesv2::Client,
    sns: aws_sdk_sns::Client,
    settings: SenderSettings,
    /// `settings.from` as SES reads it (see [`from_header`]).
    from: Option<String>,
    /// Built on the first webhook (reads the system's root certificates).
    http: OnceLock<Result<HttpClient, String>>,
    /// Webhook secrets' values, put into a call right before it goes out; none configured,
    /// a call with a secret is refused.
    secrets: Option<Arc<dyn WebhookSecrets>>,
}

/// Where the deployed sender takes a webhook secret's value from.
const DEPLOYED_SECRETS_WHERE: &str = "add it to the SSM parameter the stack's `WebhookSecretsParameter` names (a SecureString holding a JSON object of names and values, like `{\"API_KEY\": \"...\"}`); the send is retried, and each retry more than 30 seconds after the last read reads the parameter again";

impl std::fmt::Debug for AwsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSender")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AwsSender {
    pub fn new(
        ses: aws_sdk_sesv2::Client,
        sns: aws_sdk_sns::Client,
        settings: SenderSettings,
    ) -> Self {
        AwsSender {
            ses,
            sns,
            from: settings.from.as_deref().map(from_header),
            settings,
            http: OnceLock::new(),
            secrets: None,
        }
    }

    /// A sender that puts webhook secrets' values from `secrets` into the calls.
    pub fn with_secrets(mut self, secrets: Arc<dyn WebhookSecrets>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    async fn email(
        &self,
        o: &Outgoing,
        to: &str,
        subject: &str,
        html: Option<&str>,
        text: Option<&str>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Receipt, SendError> {
        let Some(from) = &self.from else {
            return Err(SendError::Permanent(
                "email is not configured: no SENDER_ADDRESS".into(),
            ));
        };
        if html.is_none() && text.is_none() {
            return Err(SendError::Permanent(
                "the email has neither HTML nor text".into(),
            ));
        }
        let built = |e: aws_sdk_sesv2::error::BuildError| SendError::Permanent(e.to_string());
        let utf8 = |data: &str| {
            SesContent::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(built)
        };
        let mut message = SesMessage::builder().subject(utf8(subject)?).body(
            Body::builder()
                .set_html(html.map(utf8).transpose()?)
                .set_text(text.map(utf8).transpose()?)
                .build(),
        );
        if let Some(url) = unsubscribe_url {
            // RFC 8058 one-click unsubscribe: mailbox providers POST to the link.
            message = message
                .headers(
                    MessageHeader::builder()
                        .name("List-Unsubscribe")
                        .value(format!("<{url}>"))
                        .build()
                        .map_err(built)?,
                )
                .headers(
                    MessageHeader::builder()
                        .name("List-Unsubscribe-Post")
                        .value("List-Unsubscribe=One-Click")
                        .build()
                        .map_err(built)?,
                );
        }
        if let Some(locale) = o.locale.as_deref() {
            // The language the send's `locales` chose, for mail clients and screen readers.
            message = message.headers(
                MessageHeader::builder()
                    .name("Content-Language")
                    .value(locale)
                    .build()
                    .map_err(built)?,
            );
        }
        let mut request = self
            .ses
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message.build()).build())
            .set_configuration_set_name(self.settings.configuration_set.clone());
        let id = o.ledger_key();
        for (name, value) in [
            (USER_TAG, &*o.user_id),
            (JOURNEY_TAG, &*o.journey),
            (MESSAGE_TAG, id.as_str()),
        ] {
            let value = tag_encode(value);
            if value.len() > TAG_MAX {
                let lost = if name == USER_TAG {
                    "; bounces for this email cannot be matched to the user"
                } else {
                    ""
                };
                tracing::warn!(tag = name, "tag value over 256 characters left off{lost}");
                continue;
            }
            request = request.email_tags(
                MessageTag::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(built)?,
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| send_error("SES SendEmail", &e, SES_PERMANENT))?;
        Ok(Receipt {
            provider_id: out.message_id().map(str::to_string),
            ..Receipt::default()
        })
    }

    async fn sms(&self, to: &str, body: &str, sms_type: SmsType) -> Result<Receipt, SendError> {
        let kind = match sms_type {
            SmsType::Transactional => "Transactional",
            SmsType::Promotional => "Promotional",
        };
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(kind)
            .build()
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let out = self
            .sns
            .publish()
            .phone_number(to)
            .message(body)
            .message_attributes("AWS.SNS.SMS.SMSType", attribute)
            .send()
            .await
            .map_err(|e| send_error("SNS Publish (SMS)", &e, SNS_PERMANENT))?;
        Ok(Receipt {
            provider_id: out.message_id().map(str::to_string),
            ..Receipt::default()
        })
    }

    /// Publishes to every registered device; succeeds if one device took it. The tokens of
    /// the devices SNS answered disabled come back whatever the others answered: in the
    /// receipt, in [`SendError::PushRefused`] when every device refused, or in
    /// [`SendError::PushRetryable`] when none took it and one may take it later.
    async fn push(
        &self,
        devices: &[Device],
        title: &str,
        body: &str,
        data: &BTreeMap<String, String>,
        silent: bool,
        expires: Option<crate::duration::Duration>,
    ) -> Result<Receipt, SendError> {
        let mut receipt = None;
        let mut last = None;
        let mut disabled = Vec::new();
        let mut tried = false;
        for d in devices.iter().filter(|d| !d.disabled) {
            let Some(endpoint) = &d.endpoint else {
                continue;
            };
            // Late in its invocation (the runtime checked before the first device; a device's
            // call may take 10 seconds): another device's call, cut off by the invocation's
            // end after SNS took it, would go out again with the message's redelivery. Taken
            // by a device already, the push has gone out; taken by none, it is tried again.
            if tried && crate::runtime::out_of_sending_time() {
                if receipt.is_none() {
                    return Err(retry_marking(
                        "push not tried on its other devices: the invocation is ending".into(),
                        disabled,
                    ));
                }
                tracing::warn!(platform = %d.platform, "push not tried on its other devices: the invocation is ending");
                break;
            }
            tried = true;
            let payload = push_payload(&d.platform, title, body, data, silent);
            let mut publish = self
                .sns
                .publish()
                .target_arn(endpoint)
                .message_structure("json")
                .message(payload.to_string());
            for (name, value) in push_ttl(&d.platform, expires)
                .into_iter()
                .chain(push_kind(&d.platform, silent))
            {
                let attribute = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| SendError::Permanent(e.to_string()))?;
                publish = publish.message_attributes(name, attribute);
            }
            let result = publish.send().await;
            match result {
                Ok(out) => {
                    receipt.get_or_insert(Receipt {
                        provider_id: out.message_id().map(str::to_string),
                        ..Receipt::default()
                    });
                }
                Err(e) => {
                    let err = send_error("SNS Publish (push)", &e, SNS_PERMANENT);
                    if super::error_code(&e) == crate::provider::ENDPOINT_DISABLED {
                        disabled.push(d.token.clone());
                    }
                    tracing::warn!(platform = %d.platform, error = %err, "push to one device failed");
                    // A retryable failure outranks a permanent one: try the message again.
                    if !matches!(last, Some(SendError::Retryable(_))) {
                        last = Some(err);
                    }
                }
            }
        }
        match (receipt, last) {
            (Some(r), _) => Ok(Receipt {
                disabled_devices: disabled,
                ..r
            }),
            // Refused by every device: those SNS said are disabled are marked, and only those.
            (None, Some(SendError::Permanent(reason))) if !disabled.is_empty() => {
                Err(SendError::PushRefused {
                    reason,
                    disabled_devices: disabled,
                })
            }
            // None took it, one may later: tried again, the disabled ones marked all the same.
            (None, Some(SendError::Retryable(reason))) => Err(retry_marking(reason, disabled)),
            (None, Some(e)) => Err(e),
            (None, None) => Err(SendError::Permanent(
                "no push device is registered with SNS".into(),
            )),
        }
    }

    fn http(&self) -> Result<&HttpClient, SendError> {
        self.http
            .get_or_init(|| {
                // The provider is chosen explicitly: a workspace build may compile rustls with
                // both aws-lc-rs (the SDK) and ring (the CLI), and then rustls picks neither.
                let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(provider)
                    .map_err(|e| format!("no root certificates: {e}"))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(
                    hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build(https),
                )
            })
            .as_ref()
            .map_err(|e| SendError::Retryable(format!("webhook client: {e}")))
    }

    /// Calls a webhook. `Idempotency-Key` is the send's ledger key, the same on every attempt
    /// of one send (unless the journey sets the header itself), so that a receiver can drop the
    /// repeat of a call whose answer was lost.
    async fn webhook(
        &self,
        WebhookCall {
            url,
            method,
            headers,
            body,
            secrets: read,
        }: WebhookCall<'_>,
        idempotency_key: &str,
    ) -> Result<Receipt, SendError> {
        let bad = |what: &str| SendError::Permanent(format!("webhook: {what}"));
        // The secrets' values go in here, and only into this request.
        let none = LocalSecrets::default();
        let secrets: &dyn WebhookSecrets = match &self.secrets {
            Some(s) => s.as_ref(),
            None => &none,
        };
        let call = substitute(url, headers, body, read, secrets, DEPLOYED_SECRETS_WHERE)
            .await
            .map_err(|e| match e {
                // Deployed, a secret is added to the parameter while the engine runs (right
                // after the journey that reads it was published): the send is retried as for a
                // provider outage (about six hours, then the dead-letter queue, whose redrive
                // sends it), not refused for good.
                SubstituteError::Missing { .. } => SendError::Retryable(format!("webhook: {e}")),
                e => SendError::from(e),
            })?;
        let (url, headers, body) = (call.url.as_str(), &call.headers, call.body.as_deref());
        if let Some(why) = crate::webhook::webhook_url_problem(url) {
            return Err(bad(&format!("the URL {why}")));
        }
        let uri: http::Uri = url.parse().map_err(|_| bad("the URL is not valid"))?;
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad("the method is not valid"))?;
        let mut request = http::Request::builder().method(method).uri(uri);
        for (k, v) in webhook_headers_sent(headers, body.is_some(), idempotency_key) {
            request = request.header(k, v);
        }
        let request = request
            .body(http_body_util::Full::new(Bytes::from(
                body.unwrap_or_default().to_string(),
            )))
            .map_err(|_| bad("a header is not valid"))?;
        // Its secrets' reading may have taken long (SSM read cold, up to 10 seconds): a call
        // begun now could be cut off after the receiver took it, and the message's redelivery
        // would call again. Nothing went out: tried again.
        if crate::runtime::out_of_sending_time() {
            return Err(SendError::Retryable(
                "webhook not called: the invocation is ending".into(),
            ));
        }
        let response = tokio::time::timeout(WEBHOOK_TIMEOUT, self.http()?.request(request))
            .await
            .map_err(|_| SendError::Retryable("webhook: timed out".into()))?
            .map_err(|e| {
                SendError::Retryable(if e.is_connect() {
                    "webhook: could not connect".into()
                } else {
                    "webhook: the request failed".into()
                })
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(Receipt::default())
        } else if status.is_server_error()
            || status == http::StatusCode::TOO_MANY_REQUESTS
            || status == http::StatusCode::REQUEST_TIMEOUT
        {
            Err(SendError::Retryable(format!(
                "webhook answered {}",
                status.as_u16()
            )))
        } else {
            Err(SendError::Permanent(format!(
                "webhook answered {}",
                status.as_u16()
            )))
        }
    }
}

/// The SNS message attributes that give a push its time to live (seconds, counted by SNS from
/// the publish): for an APNs device both APNs applications' (the endpoint belongs to one of
/// them), for an FCM device FCM's. None when the template sets no `expires`.
pub fn push_ttl(
    platform: &str,
    expires: Option<crate::duration::Duration>,
) -> Vec<(&'static str, String)> {
    let Some(e) = expires else {
        return Vec::new();
    };
    let secs = e.as_secs().to_string();
    match platform {
        "apns" => vec![
            ("AWS.SNS.MOBILE.APNS.TTL", secs.clone()),
            ("AWS.SNS.MOBILE.APNS_SANDBOX.TTL", secs),
        ],
        _ => vec![("AWS.SNS.MOBILE.FCM.TTL", secs)],
    }
}

/// The SNS message attributes that make a silent push an APNs background notification: push
/// type `background`, priority 5 (Apple refuses priority 10 for one, and SNS would otherwise
/// send 10). None for an alert (SNS sets its push type from the payload) or an FCM device
/// (the FCM message says it itself).
pub fn push_kind(platform: &str, silent: bool) -> Vec<(&'static str, String)> {
    if !silent || platform != "apns" {
        return Vec::new();
    }
    vec![
        ("AWS.SNS.MOBILE.APNS.PUSH_TYPE", "background".to_string()),
        ("AWS.SNS.MOBILE.APNS.PRIORITY", "5".to_string()),
    ]
}

/// The SNS message for one device (`MessageStructure=json`): the APNs payload under `APNS` and
/// `APNS_SANDBOX`, the FCM HTTP v1 message under `GCM`, and a `default`. A silent push is data
/// alone: for APNs a background notification (`aps` holds `content-available: 1` and nothing
/// else), for FCM a data message (no `notification`; for an iOS app on Firebase, the `apns`
/// part FCM passes on makes it a background notification, priority 5, as Firebase requires).
pub fn push_payload(
    platform: &str,
    title: &str,
    body: &str,
    data: &BTreeMap<String, String>,
    silent: bool,
) -> Value {
    if silent {
        return silent_push_payload(platform, data);
    }
    // A title or a body left blank (either may be) is left out: APNs and FCM show the other.
    let mut alert = serde_json::Map::new();
    for (key, text) in [("title", title), ("body", body)] {
        if !text.trim().is_empty() {
            alert.insert(key.into(), json!(text));
        }
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "default".into(),
        json!(if body.trim().is_empty() { title } else { body }),
    );
    match platform {
        "apns" => insert_apns(&mut out, json!({"alert": alert, "sound": "default"}), data),
        _ => {
            let mut message = serde_json::Map::new();
            message.insert("notification".into(), Value::Object(alert));
            if !data.is_empty() {
                message.insert("data".into(), json!(data));
            }
            let fcm = json!({"fcmV1Message": {"message": Value::Object(message)}}).to_string();
            out.insert("GCM".into(), json!(fcm));
        }
    }
    Value::Object(out)
}

/// Writes the APNs payload (`aps` and the data beside it; a data key `aps` would replace the
/// alert, so it is left out) under `APNS` and `APNS_SANDBOX`.
fn insert_apns(
    out: &mut serde_json::Map<String, Value>,
    aps: Value,
    data: &BTreeMap<String, String>,
) {
    let mut apns = serde_json::Map::new();
    apns.insert("aps".into(), aps);
    for (k, v) in data.iter().filter(|(k, _)| k.as_str() != "aps") {
        apns.insert(k.clone(), json!(v));
    }
    let apns = Value::Object(apns).to_string();
    out.insert("APNS".into(), json!(apns));
    out.insert("APNS_SANDBOX".into(), json!(apns));
}

/// [`push_payload`] for a silent push. Its `default` (SNS requires one; a device of either
/// platform gets its own payload) is the data as JSON.
fn silent_push_payload(platform: &str, data: &BTreeMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("default".into(), json!(json!(data).to_string()));
    match platform {
        "apns" => insert_apns(&mut out, json!({"content-available": 1}), data),
        _ => {
            let message = json!({
                "data": data,
                "apns": {
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}},
                },
            });
            let fcm = json!({"fcmV1Message": {"message": message}}).to_string();
            out.insert("GCM".into(), json!(fcm));
        }
    }
    Value::Object(out)
}

#[async_trait]
impl Sender for AwsSender {
    async fn opted_out_page(&self, token: Option<&str>) -> Result<OptOutPage, SendError> {
        let out = self
            .sns
            .list_phone_numbers_opted_out()
            .set_next_token(token.map(str::to_string))
            .send()
            .await
            .map_err(|e| send_error("SNS ListPhoneNumbersOptedOut", &e, &[]))?;
        Ok(OptOutPage {
            numbers: out.phone_numbers().to_vec(),
            next: out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    async fn send(&self, o: &Outgoing) -> Result<Receipt, SendError> {
        match (o.content.as_ref(), &o.to) {
            (
                Content::Email {
                    subject,
                    html,
                    text,
                    unsubscribe_url,
                },
                Address::One(to),
            ) => {
                self.email(
                    o,
                    to,
                    subject,
                    html.as_deref(),
                    text.as_deref(),
                    unsubscribe_url.as_deref(),
                )
                .await
            }
            (Content::Sms { body, sms_type }, Address::One(to)) => {
                self.sms(to, body, *sms_type).await
            }
            (
                Content::Push {
                    title,
                    body,
                    silent,
                    data,
                    expires,
                },
                Address::Devices(devices),
            ) => {
                self.push(devices, title, body, data, *silent, *expires)
                    .await
            }
            (
                Content::Webhook {
                    url,
                    method,
                    headers,
                    body,
                    secrets,
                },
                _,
            ) => {
                let call = WebhookCall {
                    url,
                    method,
                    headers,
                    body: body.as_deref(),
                    secrets,
                };
                self.webhook(call, &o.ledger_key()).await
            }
            (Content::InApp { .. }, _) => Err(SendError::Permanent(
                "in-app messages are kept by the runtime, not sent".into(),
            )),
            _ => Err(SendError::Permanent(format!(
                "a {} message with the wrong kind of address",
                o.channel
            ))),
        }
    }

    async fn unregister(&self, device: &Device) -> Result<(), SendError> {
        let Some(endpoint) = &device.endpoint else {
            return Ok(());
        };
        match self
            .sns
            .delete_endpoint()
            .endpoint_arn(endpoint)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Deleted already (by an earlier request, or by hand): what was asked is done.
            Err(e) if super::error_code(&e) == "NotFound" => Ok(()),
            // Throttling, a 5xx, a timeout, no connection: may pass later (the erasure answers
            // `202` and its next request tries again).
            Err(e) if super::is_transient(&e) => Err(SendError::Retryable(format!(
                "SNS DeleteEndpoint: {}",
                super::error_code(&e)
            ))),
            // Any other answer, a 4xx with a code or without (`InvalidParameter`: an ARN SNS
            // cannot read; `AuthorizationError`: one this deployment may not delete, the role
            // allowing only its platform applications' endpoints), no retry fixes: retried, it
            // would hold the erasure at `202` for ever.
            Err(e) => Err(SendError::Permanent(format!(
                "SNS DeleteEndpoint: {}",
                super::error_code(&e)
            ))),
        }
    }

    async fn register(&self, device: &Device) -> Result<Option<String>, SendError> {
        let application = match device.platform.as_str() {
            "apns" => &self.settings.apns_application,
            "fcm" => &self.settings.fcm_application,
            _ => &None,
        };
        let Some(application) = application else {
            return Ok(None);
        };
        // SNS disabled the endpoint when APNs or FCM refused its token (an expired certificate,
        // an uninstalled app) and keeps it disabled: the app sending the token again means it
        // is good again (AWS's guide to push token management does the same).
        // An endpoint of another application (the app re-created, as after an expired APNs
        // certificate) is not enabled: a new one is made under the current application.
        let ours = device.endpoint.as_deref().filter(|e| {
            let prefix = application.replacen(":app/", ":endpoint/", 1);
            e.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if let (true, Some(endpoint)) = (device.revived, ours) {
            let enabled = self
                .sns
                .set_endpoint_attributes()
                .endpoint_arn(endpoint)
                .attributes("Token", &device.token)
                .attributes("Enabled", "true")
                .send()
                .await;
            match enabled {
                Ok(_) => return Ok(Some(endpoint.to_string())),
                // Deleted, or no longer ours to change: a new one is made below.
                Err(e)
                    if matches!(
                        super::error_code(&e).as_str(),
                        "NotFound" | "AuthorizationError"
                    ) =>
                {
                    tracing::info!(code = %super::error_code(&e), "a disabled endpoint could not be enabled again; making a new one");
                }
                Err(e) => return Err(send_error("SNS SetEndpointAttributes", &e, &[])),
            }
        }
        let out = self
            .sns
            .create_platform_endpoint()
            .platform_application_arn(application)
            .token(&device.token)
            .send()
            .await
            .map_err(|e| {
                // A disabled platform application leaves the device without an endpoint for
                // now (tried again at the user's next identify) rather than fail every
                // identify with a new device until it is fixed.
                if super::error_code(&e) == "PlatformApplicationDisabled" {
                    return SendError::Permanent(
                        "SNS CreatePlatformEndpoint: PlatformApplicationDisabled".into(),
                    );
                }
                send_error("SNS CreatePlatformEndpoint", &e, SNS_PERMANENT)
            })?;
        Ok(out.endpoint_arn().map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::header_safe;

    #[test]
    fn the_from_header_is_one_address_ses_takes() {
        for (given, header) in [
            ("hello@acme.test", "hello@acme.test"),
            ("Acme <hello@acme.test>", "Acme <hello@acme.test>"),
            (
                "  Acme Shop   <hello@acme.test> ",
                "Acme Shop <hello@acme.test>",
            ),
            ("<hello@acme.test>", "hello@acme.test"),
            (
                "Acme, Inc. <hello@acme.test>",
                r#""Acme, Inc." <hello@acme.test>"#,
            ),
            (
                r#"The "Best" Shop <hello@acme.test>"#,
                r#""The \"Best\" Shop" <hello@acme.test>"#,
            ),
            (
                r"Acme\Shop <hello@acme.test>",
                r#""Acme\\Shop" <hello@acme.test>"#,
            ),
            // Quoted by the operator: taken as its content, not quoted twice.
            (
                r#""Acme, Inc." <hello@acme.test>"#,
                r#""Acme, Inc." <hello@acme.test>"#,
            ),
            (
                r#""Say \"hi\"" <hello@acme.test>"#,
                r#""Say \"hi\"" <hello@acme.test>"#,
            ),
            (
                "Café <hello@acme.test>",
                "=?UTF-8?B?Q2Fmw6k=?= <hello@acme.test>",
            ),
            // A shape no header makes right is left for the template to refuse.
            ("Acme <hello@acme.test", "Acme <hello@acme.test"),
        ] {
            assert_eq!(from_header(given), header, "{given}");
        }
    }

    #[test]
    fn a_long_name_outside_ascii_is_encoded_words_of_whole_characters() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let name = "Ünïcödé Ünïcödé Ünïcödé Ünïcödé Ünïcödé Ünïcödé";
        let header = from_header(&format!("{name} <hello@acme.test>"));
        let (words, address) = header.rsplit_once(' ').expect("a name and an address");
        assert_eq!(address, "<hello@acme.test>");
        let mut decoded = String::new();
        for word in words.split(' ') {
            assert!(word.len() <= 75, "{word}");
            let b64 = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .expect("an encoded word");
            let bytes = STANDARD.decode(b64).expect("base64");
            decoded.push_str(&String::from_utf8(bytes).expect("whole characters"));
        }
        assert!(words.split(' ').count() > 1, "{header}");
        assert_eq!(decoded, name);
    }

    #[test]
    fn tags_round_trip_in_the_ses_charset() {
        for s in ["ann", "user-42", "ann@example.com", "a_b", "ünï", ""] {
            let t = tag_encode(s);
            assert!(t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            assert_eq!(tag_decode(&t).as_deref(), Some(s));
        }
        assert_eq!(tag_encode("cart_abandonment"), "cart_5fabandonment");
        assert_eq!(tag_decode("bad_zz"), None);
    }

    #[test]
    fn an_idempotency_key_is_a_header_value_whatever_the_user_id() {
        assert_eq!(header_safe("cart:ann:1#push#2"), "cart:ann:1#push#2");
        assert_eq!(header_safe("j:nl\nuser:1#s#1"), "j:nl%0Auser:1#s#1");
        assert_eq!(header_safe("j:del\u{7f}:1#s#1"), "j:del%7F:1#s#1");
        assert_eq!(
            header_safe("j:zoë/shop 1:1#s#1"),
            "j:zo%C3%AB/shop%201:1#s#1"
        );
        // `%` itself is encoded, so a user id written as an encoding stays another user's key
        assert_eq!(header_safe("j:nl%0Auser:1#s#1"), "j:nl%250Auser:1#s#1");
        for k in ["a\nb", "a\u{7f}b", "zoë", "a b", "a\tb", "\r\n"] {
            assert!(
                http::HeaderValue::from_str(&header_safe(k)).is_ok(),
                "{k:?}"
            );
        }
    }

    #[test]
    fn push_payloads_per_platform() {
        let data = BTreeMap::from([("deeplink".to_string(), "shop://cart/1".to_string())]);
        let fcm = push_payload("fcm", "T", "B", &data, false);
        let gcm: Value =
            serde_json::from_str(fcm["GCM"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            gcm,
            json!({"fcmV1Message": {"message": {"notification": {"title": "T", "body": "B"}, "data": {"deeplink": "shop://cart/1"}}}})
        );
        assert_eq!(fcm["default"], "B");
        let apns = push_payload("apns", "T", "B", &data, false);
        let aps: Value =
            serde_json::from_str(apns["APNS"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(aps["aps"]["alert"], json!({"title": "T", "body": "B"}));
        assert_eq!(aps["deeplink"], "shop://cart/1");
        assert_eq!(apns["APNS"], apns["APNS_SANDBOX"]);
        assert!(apns.get("GCM").is_none());
    }

    /// A push with a body alone, or a title alone: the alert holds only what was written, and
    /// the `default` is what there is.
    #[test]
    fn a_push_with_one_line_leaves_the_other_out() {
        let none = BTreeMap::new();
        for (title, body, alert) in [
            ("", "On its way", json!({"body": "On its way"})),
            ("Delivered", "", json!({"title": "Delivered"})),
            (" ", "On its way", json!({"body": "On its way"})),
            ("Delivered", "\n", json!({"title": "Delivered"})),
        ] {
            let fcm = push_payload("fcm", title, body, &none, false);
            let gcm: Value =
                serde_json::from_str(fcm["GCM"].as_str().unwrap_or_default()).unwrap_or_default();
            assert_eq!(
                gcm,
                json!({"fcmV1Message": {"message": {"notification": alert}}})
            );
            let apns = push_payload("apns", title, body, &none, false);
            let aps: Value =
                serde_json::from_str(apns["APNS"].as_str().unwrap_or_default()).unwrap_or_default();
            assert_eq!(aps["aps"], json!({"alert": alert, "sound": "default"}));
            let one = if body.trim().is_empty() { title } else { body };
            assert_eq!(fcm["default"], one);
            assert_eq!(apns["default"], one);
        }
    }

    /// A silent push is data alone, as Apple and Google document it: for APNs `aps` holds
    /// `content-available: 1` and no alert, sound or badge, sent as push type `background` at
    /// priority 5; for FCM a message with `data` and no `notification`, whose `apns` part makes
    /// it a background notification on an iOS app that uses Firebase.
    #[test]
    fn a_silent_push_is_data_alone_on_each_platform() {
        let data = BTreeMap::from([("sync".to_string(), "inbox".to_string())]);
        let apns = push_payload("apns", "", "", &data, true);
        let aps: Value =
            serde_json::from_str(apns["APNS"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            aps,
            json!({"aps": {"content-available": 1}, "sync": "inbox"})
        );
        assert_eq!(apns["APNS"], apns["APNS_SANDBOX"]);
        assert_eq!(apns["default"], r#"{"sync":"inbox"}"#);
        assert_eq!(
            push_kind("apns", true),
            vec![
                ("AWS.SNS.MOBILE.APNS.PUSH_TYPE", "background".to_string()),
                ("AWS.SNS.MOBILE.APNS.PRIORITY", "5".to_string()),
            ]
        );
        let fcm = push_payload("fcm", "", "", &data, true);
        let gcm: Value =
            serde_json::from_str(fcm["GCM"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            gcm,
            json!({"fcmV1Message": {"message": {
                "data": {"sync": "inbox"},
                "apns": {
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}},
                },
            }}})
        );
        assert!(fcm.get("APNS").is_none());
        assert_eq!(fcm["default"], r#"{"sync":"inbox"}"#);
        // An alert keeps SNS's own push type and priority, and FCM says it itself.
        assert!(push_kind("apns", false).is_empty());
        assert!(push_kind("fcm", true).is_empty());
        // A title or body reaching a silent push (none validates) does not make it an alert.
        let apns = push_payload("apns", "T", "B", &data, true);
        let aps: Value =
            serde_json::from_str(apns["APNS"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(aps["aps"], json!({"content-available": 1}));
    }

    #[test]
    fn push_time_to_live_per_platform() {
        use crate::duration::Duration as Expires;
        assert!(push_ttl("fcm", None).is_empty());
        assert!(push_ttl("apns", None).is_empty());
        let four_hours = Some(Expires::from_secs(14_400));
        assert_eq!(
            push_ttl("fcm", four_hours),
            vec![("AWS.SNS.MOBILE.FCM.TTL", "14400".to_string())]
        );
        assert_eq!(
            push_ttl("apns", four_hours),
            vec![
                ("AWS.SNS.MOBILE.APNS.TTL", "14400".to_string()),
                ("AWS.SNS.MOBILE.APNS_SANDBOX.TTL", "14400".to_string()),
            ]
        );
    }
}
