//! The answers moto never gives: throttling, 5xx, rejected recipients, partial batch failures.
//! Canned HTTP answers stand in for DynamoDB, SQS, SES and SNS (the real SDK parses them, no
//! server, SDK retries off), and each adapter must say the right thing: conflict or busy,
//! retry or give up — without an address or a phone number in the error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use jiff::Timestamp;
use serde_json::json;
use waymark::aws::{AwsSender, DynamoStore, SenderSettings, SqsQueue};
use waymark::engine::{Content, Outgoing};
use waymark::journey::{Channel, SmsType};
use waymark::profile::{Address, Device};
use waymark::provider::{SendError, Sender};
use waymark::queue::{Message, Outbound, Queue, QueueError, QueueName};
use waymark::store::{Expect, Key, Record, Store, StoreError};

/// One canned answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, String);

/// Answers requests from a list (the last one repeats) and keeps the request bodies.
#[derive(Debug, Clone, Default)]
struct Canned {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    fn new(answers: Vec<Answer>) -> Self {
        Canned {
            answers: Arc::new(Mutex::new(answers.into())),
            requests: Arc::default(),
        }
    }

    fn client(&self) -> SharedHttpClient {
        let me = self.clone();
        http_client_fn(move |_, _| SharedHttpConnector::new(me.clone()))
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl HttpConnector for Canned {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).to_string())
            .unwrap_or_default();
        if let Ok(mut r) = self.requests.lock() {
            r.push(body);
        }
        let (status, headers, body) = {
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().cloned()
            }
        }
        .unwrap_or((500, vec![], String::new()));
        let mut response = HttpResponse::new(
            status
                .try_into()
                .unwrap_or_else(|_| 500u16.try_into().expect("500")),
            SdkBody::from(body),
        );
        for (k, v) in headers {
            response.headers_mut().insert(k, v);
        }
        HttpConnectorFuture::ready(Ok(response))
    }
}

macro_rules! client {
    ($sdk:ident, $canned:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
                .http_client($canned.client())
                .retry_config(RetryConfig::disabled())
                .build(),
        )
    };
}

const JSON10: (&str, &str) = ("content-type", "application/x-amz-json-1.0");

fn dynamo_error(status: u16, kind: &str) -> Answer {
    (
        status,
        vec![JSON10],
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": "no"})
            .to_string(),
    )
}

/// A service that takes the request and never answers.
#[derive(Debug, Clone, Default)]
struct Hangs;

impl HttpConnector for Hangs {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::new(std::future::pending())
    }
}

/// A call whose answer never comes fails after the functions' timeouts (retried like any
/// passing failure) instead of holding its message, and the batch, until the Lambda's own
/// timeout. (Tokio's clock is paused: the timeouts pass at once.)
#[tokio::test(start_paused = true)]
async fn a_call_that_never_answers_times_out_and_is_retried() {
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(http_client_fn(|_, _| SharedHttpConnector::new(Hangs)))
            .timeout_config(waymark::aws::timeouts())
            .build(),
    );
    let store = DynamoStore::new(client, "t");
    let started = tokio::time::Instant::now();
    let got = store.get(&Key::new("U#ann", "P")).await;
    assert!(
        matches!(&got, Err(StoreError::Unavailable(why)) if why.contains("timeout")),
        "{got:?}"
    );
    assert!(
        started.elapsed() <= std::time::Duration::from_secs(10),
        "the whole call, retries included, is bounded: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dynamodb_errors_are_conflicts_busy_or_corrupt() {
    let cases = [
        (
            dynamo_error(400, "ConditionalCheckFailedException"),
            "conflict",
        ),
        (
            dynamo_error(400, "ProvisionedThroughputExceededException"),
            "busy",
        ),
        (dynamo_error(400, "ThrottlingException"), "busy"),
        (dynamo_error(400, "RequestLimitExceeded"), "busy"),
        (dynamo_error(500, "InternalServerError"), "busy"),
        (dynamo_error(503, "ServiceUnavailable"), "busy"),
        (dynamo_error(400, "ValidationException"), "corrupt"),
        (dynamo_error(400, "ResourceNotFoundException"), "busy"),
    ];
    for (answer, want) in cases {
        let canned = Canned::new(vec![answer.clone()]);
        let store = DynamoStore::new(client!(aws_sdk_dynamodb, canned), "t");
        let record = Record::new(Key::new("U#ann", "P"), 2, &json!({})).expect("record");
        let got = store.put(&record, Expect::Version(1)).await;
        let kind = match &got {
            Err(StoreError::Conflict) => "conflict",
            Err(StoreError::Unavailable(_)) => "busy",
            Err(StoreError::Corrupt(_)) => "corrupt",
            Err(StoreError::TooLarge(_)) => "too large",
            Err(StoreError::Sealed) => "sealed",
            Ok(()) => "ok",
        };
        assert_eq!(kind, want, "{answer:?} gave {got:?}");
        // The condition the runtime asked for went out.
        let request = &canned.requests()[0];
        assert!(
            request.contains(r##""ConditionExpression":"#v = :v""##),
            "{request}"
        );
    }
}

/// A fold part's transaction DynamoDB cancels for an item past 400 KB (the count of parts,
/// `fp`, noted on a record an earlier build listed without room for it: a `ValidationError`
/// among the reasons) is `TooLarge`, which the stats fold skips, not `Unavailable`, which it
/// would retry every minute for ever; a lost condition is still a conflict.
#[tokio::test]
async fn a_fold_part_cancelled_for_an_item_too_large_is_told_apart() {
    let cancelled = |code: &str, message: &str| -> Answer {
        (
            400,
            vec![JSON10],
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
                "CancellationReasons": [{"Code": code, "Message": message}, {"Code": "None"}],
            })
            .to_string(),
        )
    };
    let counts = std::collections::BTreeMap::from([("sent".to_string(), 1)]);
    let counters = [(Key::new("S#j", "C#0"), counts)];
    for (answer, want) in [
        (
            cancelled(
                "ValidationError",
                "Item size to update has exceeded the maximum allowed size",
            ),
            "too large",
        ),
        (
            cancelled("ConditionalCheckFailed", "The conditional request failed"),
            "conflict",
        ),
    ] {
        let canned = Canned::new(vec![answer.clone()]);
        let store = DynamoStore::new(client!(aws_sdk_dynamodb, canned), "t");
        let got = store
            .fold_part(&Key::new("U#ann", "T#1"), 0, false, &counters)
            .await;
        let kind = match &got {
            Err(StoreError::TooLarge(why)) if why.contains("maximum allowed size") => "too large",
            Err(StoreError::Conflict) => "conflict",
            _ => "other",
        };
        assert_eq!(kind, want, "{answer:?} gave {got:?}");
    }
}

#[tokio::test]
async fn unprocessed_keys_are_asked_for_again() {
    let item =
        |pk: &str| json!({"pk": {"S": pk}, "sk": {"S": "P"}, "v": {"N": "1"}, "b": {"B": "e30="}});
    let key = |pk: &str| json!({"pk": {"S": pk}, "sk": {"S": "P"}});
    let first = json!({
        "Responses": {"t": [item("U#a")]},
        "UnprocessedKeys": {"t": {"Keys": [key("U#b")], "ConsistentRead": true}}
    });
    let second = json!({"Responses": {"t": [item("U#b")]}, "UnprocessedKeys": {}});
    let canned = Canned::new(vec![
        (200, vec![JSON10], first.to_string()),
        (200, vec![JSON10], second.to_string()),
    ]);
    let store = DynamoStore::new(client!(aws_sdk_dynamodb, canned), "t");
    let keys = [
        Key::new("U#a", "P"),
        Key::new("U#b", "P"),
        Key::new("U#a", "P"),
    ];
    let got = store.get_many(&keys).await.expect("get_many");
    assert_eq!(got.len(), 2);
    let requests = canned.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].matches("\"pk\"").count(),
        2,
        "the repeated key asked once: {}",
        requests[0]
    );
    assert!(requests[0].contains(r#""ConsistentRead":true"#));
    assert!(requests[1].contains("U#b") && !requests[1].contains("U#a"));
}

fn wake(i: u64) -> Outbound {
    Outbound {
        message: Message::Wake {
            user_id: "ann".into(),
            journey: "cart".into(),
            enrollment: format!("e{i}").into(),
            seq: 1,
            at: Timestamp::UNIX_EPOCH,
        },
        delay_secs: 900,
    }
}

fn batch(failed: serde_json::Value) -> Answer {
    (
        200,
        vec![JSON10],
        json!({"Successful": [], "Failed": failed}).to_string(),
    )
}

#[tokio::test]
async fn sqs_sends_failed_entries_again_and_gives_up_on_sender_faults() {
    // Entry 1 failed on SQS's side: only it goes again, with its delay.
    let canned = Canned::new(vec![
        batch(json!([{"Id": "1", "SenderFault": false, "Code": "InternalError"}])),
        batch(json!([])),
    ]);
    let queue = SqsQueue::new(
        client!(aws_sdk_sqs, canned),
        "https://q/events",
        "https://q/steps",
    );
    queue
        .send(QueueName::Steps, &[wake(0), wake(1)])
        .await
        .expect("sent on the second try");
    let requests = canned.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].contains("https://q/steps") && requests[0].contains("e0"));
    assert!(
        requests[1].contains("e1") && !requests[1].contains("e0"),
        "{}",
        requests[1]
    );
    assert!(
        requests[1].contains(r#""DelaySeconds":900"#),
        "{}",
        requests[1]
    );

    // The sender's fault: no retry.
    let canned = Canned::new(vec![batch(
        json!([{"Id": "0", "SenderFault": true, "Code": "InvalidParameterValue"}]),
    )]);
    let queue = SqsQueue::new(
        client!(aws_sdk_sqs, canned),
        "https://q/events",
        "https://q/steps",
    );
    let got = queue.send(QueueName::Events, &[wake(0)]).await;
    assert!(matches!(got, Err(QueueError::Rejected(_))), "{got:?}");
    assert_eq!(canned.requests().len(), 1);

    // A message SQS would refuse (a character it does not carry), after more than a batch's
    // worth of good ones: refused before any is sent, so none of the request is queued.
    let canned = Canned::new(vec![batch(json!([]))]);
    let queue = SqsQueue::new(
        client!(aws_sdk_sqs, canned),
        "https://q/events",
        "https://q/steps",
    );
    let mut messages: Vec<Outbound> = (0..14).map(wake).collect();
    let mut bad = wake(14);
    if let Message::Wake { user_id, .. } = &mut bad.message {
        *user_id = "ann\u{FFFF}".into();
    }
    messages.push(bad);
    let got = queue.send(QueueName::Events, &messages).await;
    assert!(
        matches!(&got, Err(QueueError::Rejected(m)) if m.contains("U+FFFF")),
        "{got:?}"
    );
    assert_eq!(canned.requests().len(), 0, "nothing sent");

    // SQS keeps failing: unavailable after a few attempts.
    let canned = Canned::new(vec![batch(
        json!([{"Id": "0", "SenderFault": false, "Code": "InternalError"}]),
    )]);
    let queue = SqsQueue::new(
        client!(aws_sdk_sqs, canned),
        "https://q/events",
        "https://q/steps",
    );
    let got = queue.send(QueueName::Events, &[wake(0)]).await;
    assert!(matches!(got, Err(QueueError::Unavailable(_))), "{got:?}");
    assert_eq!(canned.requests().len(), 4);

    // Throttled as a whole: unavailable.
    let canned = Canned::new(vec![(
        400,
        vec![JSON10],
        json!({"__type": "com.amazonaws.sqs#RequestThrottled", "message": "slow down"}).to_string(),
    )]);
    let queue = SqsQueue::new(
        client!(aws_sdk_sqs, canned),
        "https://q/events",
        "https://q/steps",
    );
    let got = queue.send(QueueName::Events, &[wake(0)]).await;
    assert!(matches!(got, Err(QueueError::Unavailable(_))), "{got:?}");

    // Refused as a whole for the stack (the API answers 503, retried), or for what the
    // messages hold (the API answers 400: sent again, they would be refused again).
    for (code, rejected) in [
        ("AccessDenied", false),
        ("QueueDoesNotExist", false),
        ("KmsAccessDenied", false),
        ("InvalidMessageContents", true),
        ("BatchRequestTooLong", true),
    ] {
        let canned = Canned::new(vec![(
            400,
            vec![JSON10],
            json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": "no"}).to_string(),
        )]);
        let queue = SqsQueue::new(
            client!(aws_sdk_sqs, canned),
            "https://q/events",
            "https://q/steps",
        );
        let got = queue.send(QueueName::Events, &[wake(0)]).await;
        assert_eq!(
            matches!(got, Err(QueueError::Rejected(_))),
            rejected,
            "{code}: {got:?}"
        );
        assert!(got.is_err(), "{code}");
    }
}

const ADDRESS: &str = "ann@example.com";
const PHONE: &str = "+15550100";

fn outgoing(channel: Channel, to: Address, content: Content) -> Outgoing {
    Outgoing {
        enrollment: "e1".into(),
        journey: "cart".into(),
        version: 1,
        user_id: "ann".into(),
        step: "s".into(),
        seq: 1,
        channel,
        to,
        content: std::sync::Arc::new(content),
        transactional: false,
        locale: None,
        timezone: None,
    }
}

fn email() -> Outgoing {
    outgoing(
        Channel::Email,
        Address::One(ADDRESS.into()),
        Content::Email {
            subject: "Hi".into(),
            html: Some("<p>Hi</p>".into()),
            text: None,
            unsubscribe_url: None,
        },
    )
}

fn sms() -> Outgoing {
    outgoing(
        Channel::Sms,
        Address::One(PHONE.into()),
        Content::Sms {
            body: "Hi".into(),
            sms_type: SmsType::Transactional,
        },
    )
}

fn push() -> Outgoing {
    outgoing(
        Channel::Push,
        Address::Devices(vec![Device {
            platform: "apns".into(),
            token: "t".into(),
            endpoint: Some("arn:aws:sns:us-east-1:123456789012:endpoint/APNS/app/1".into()),
            disabled: false,
            revived: false,
            registered_at: None,
            disabled_at: None,
            source: Default::default(),
        }]),
        Content::Push {
            title: "T".into(),
            body: "B".into(),
            silent: false,
            data: Default::default(),
            expires: None,
        },
    )
}

fn ses_error(status: u16, kind: &'static str) -> Answer {
    ses_error_saying(
        status,
        kind,
        &format!(
            "Email address is not verified. The following identities failed the check: {ADDRESS}"
        ),
    )
}

fn ses_error_saying(status: u16, kind: &'static str, message: &str) -> Answer {
    (
        status,
        vec![
            ("content-type", "application/json"),
            ("x-amzn-errortype", kind),
        ],
        json!({ "message": message }).to_string(),
    )
}

fn sns_error(status: u16, code: &str) -> Answer {
    (
        status,
        vec![("content-type", "text/xml")],
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>Invalid parameter: PhoneNumber Reason: {PHONE} is not valid</Message>\
             </Error><RequestId>r</RequestId></ErrorResponse>"
        ),
    )
}

fn sender(ses: &Canned, sns: &Canned) -> AwsSender {
    AwsSender::new(
        client!(aws_sdk_sesv2, ses),
        client!(aws_sdk_sns, sns),
        SenderSettings {
            from: Some("Waymark <hello@waymark.test>".into()),
            ..Default::default()
        },
    )
}

/// SES and SNS are called once a send: an attempt that failed with a 5xx or timed out may have
/// been accepted, and the SDK's own retry would send the message again at once (the runtime
/// retries the send later, claimed in its ledger).
#[tokio::test(start_paused = true)]
async fn a_provider_call_is_made_once_whatever_its_failure() {
    let failing = Canned::new(vec![ses_error_saying(500, "InternalFailure", "try again")]);
    let none = Canned::new(vec![]);
    let ses = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(failing.client())
            .retry_config(waymark::aws::provider_retries())
            .timeout_config(waymark::aws::provider_timeouts())
            .build(),
    );
    let sender = AwsSender::new(
        ses,
        client!(aws_sdk_sns, none),
        SenderSettings {
            from: Some("Waymark <hello@waymark.test>".into()),
            ..Default::default()
        },
    );
    let got = sender.send(&email()).await;
    assert!(matches!(got, Err(SendError::Retryable(_))), "{got:?}");
    assert_eq!(
        failing.requests().len(),
        1,
        "SES was called again by the SDK"
    );

    // An answer that never comes: one attempt, then the send is retried by the runtime.
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(http_client_fn(|_, _| SharedHttpConnector::new(Hangs)))
            .retry_config(waymark::aws::provider_retries())
            .timeout_config(waymark::aws::provider_timeouts())
            .build(),
    );
    let sender = AwsSender::new(client!(aws_sdk_sesv2, none), sns, SenderSettings::default());
    let started = tokio::time::Instant::now();
    let got = sender.send(&sms()).await;
    assert!(
        matches!(&got, Err(SendError::Retryable(why)) if why.contains("timeout")),
        "{got:?}"
    );
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(10));
}

/// A push device the app sent again after SNS disabled it: its endpoint is enabled again when
/// it is the current application's; one of another application (re-created after an expired
/// certificate), or one SNS no longer has, is replaced by a new endpoint; a passing failure is
/// retryable.
#[tokio::test]
async fn a_revived_device_gets_its_endpoint_enabled_or_a_new_one() {
    const APP: &str = "arn:aws:sns:us-east-1:123456789012:app/GCM/shop";
    let device = |endpoint: &str| Device {
        platform: "fcm".into(),
        token: "t".into(),
        endpoint: Some(endpoint.into()),
        disabled: false,
        revived: true,
        registered_at: None,
        disabled_at: None,
        source: Default::default(),
    };
    let ok = |body: &str| -> Answer { (200, vec![("content-type", "text/xml")], body.into()) };
    let created = ok(
        "<CreatePlatformEndpointResponse><CreatePlatformEndpointResult>\
        <EndpointArn>arn:aws:sns:us-east-1:123456789012:endpoint/GCM/shop/new</EndpointArn>\
        </CreatePlatformEndpointResult></CreatePlatformEndpointResponse>",
    );
    let enabled = ok(
        "<SetEndpointAttributesResponse><ResponseMetadata><RequestId>r</RequestId>\
        </ResponseMetadata></SetEndpointAttributesResponse>",
    );
    let none = Canned::new(vec![]);
    let sender = |sns: &Canned| {
        AwsSender::new(
            client!(aws_sdk_sesv2, none),
            client!(aws_sdk_sns, sns),
            SenderSettings {
                fcm_application: Some(APP.into()),
                ..Default::default()
            },
        )
    };
    let ours = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/shop/1";
    let theirs = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/shop-old/1";
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<Answer>,
        Result<&'a str, bool>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "ours",
            ours,
            vec![enabled.clone()],
            Ok(ours),
            vec!["SetEndpointAttributes"],
        ),
        (
            "another application's",
            theirs,
            vec![created.clone()],
            Ok("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/shop/new"),
            vec!["CreatePlatformEndpoint"],
        ),
        (
            "deleted",
            ours,
            vec![sns_error(404, "NotFound"), created.clone()],
            Ok("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/shop/new"),
            vec!["SetEndpointAttributes", "CreatePlatformEndpoint"],
        ),
        (
            "throttled",
            ours,
            vec![sns_error(400, "Throttled")],
            Err(true),
            vec!["SetEndpointAttributes"],
        ),
    ];
    for (name, endpoint, answers, want, actions) in cases {
        let sns = Canned::new(answers);
        let got = sender(&sns).register(&device(endpoint)).await;
        match (&got, want) {
            (Ok(Some(ep)), Ok(want)) => assert_eq!(ep, want, "{name}"),
            (Err(SendError::Retryable(_)), Err(true)) => {}
            _ => panic!("{name}: {got:?}"),
        }
        let made: Vec<String> = sns
            .requests()
            .iter()
            .filter_map(|r| {
                r.split('&')
                    .find_map(|kv| kv.strip_prefix("Action="))
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(made, actions, "{name}");
    }
    // A new device while the platform application is disabled: left without an endpoint for
    // now (permanent for this registration), not an identify failing until it is fixed.
    let sns = Canned::new(vec![sns_error(400, "PlatformApplicationDisabled")]);
    let mut new = device(ours);
    (new.endpoint, new.revived) = (None, false);
    let got = sender(&sns).register(&new).await;
    assert!(matches!(got, Err(SendError::Permanent(_))), "{got:?}");
}

#[tokio::test]
async fn provider_errors_say_whether_a_retry_may_help() {
    let none = Canned::new(vec![]);
    let cases: Vec<(&str, Outgoing, Answer, bool)> = vec![
        (
            "SES rejects the address",
            email(),
            ses_error_saying(
                400,
                "MessageRejected",
                &format!("Illegal address: {ADDRESS}"),
            ),
            false,
        ),
        // The sending identity unverified (or a sandbox's unverified recipient): every email
        // fails until the account is fixed, so they wait rather than being dropped.
        (
            "SES identity not verified",
            email(),
            ses_error(400, "MessageRejected"),
            true,
        ),
        (
            "SES MAIL FROM not verified",
            email(),
            ses_error_saying(
                400,
                "MailFromDomainNotVerifiedException",
                "Mail-From domain is not verified",
            ),
            true,
        ),
        (
            "SES bad request",
            email(),
            ses_error(400, "BadRequestException"),
            false,
        ),
        (
            "SES suspended",
            email(),
            ses_error(400, "AccountSuspendedException"),
            true,
        ),
        (
            "SES throttles",
            email(),
            ses_error(429, "TooManyRequestsException"),
            true,
        ),
        (
            "SES quota",
            email(),
            ses_error(400, "LimitExceededException"),
            true,
        ),
        (
            "SES fails",
            email(),
            ses_error(500, "InternalFailure"),
            true,
        ),
        (
            "SMS bad number",
            sms(),
            sns_error(400, "InvalidParameter"),
            false,
        ),
        ("SMS throttled", sms(), sns_error(400, "Throttled"), true),
        ("SMS fails", sms(), sns_error(500, "InternalError"), true),
        (
            "push disabled",
            push(),
            sns_error(400, "EndpointDisabled"),
            false,
        ),
        (
            "push app disabled",
            push(),
            sns_error(400, "PlatformApplicationDisabled"),
            true,
        ),
        (
            "push KMS throttled",
            push(),
            sns_error(400, "KMSThrottling"),
            true,
        ),
    ];
    for (name, message, answer, retryable) in cases {
        let canned = Canned::new(vec![answer]);
        let (ses, sns) = if message.channel == Channel::Email {
            (&canned, &none)
        } else {
            (&none, &canned)
        };
        let got = sender(ses, sns).send(&message).await;
        match (&got, retryable) {
            (Err(SendError::Retryable(why)), true)
            | (
                Err(SendError::Permanent(why) | SendError::PushRefused { reason: why, .. }),
                false,
            ) => {
                assert!(
                    !why.contains(ADDRESS) && !why.contains(PHONE),
                    "{name}: the error names the recipient: {why}"
                );
            }
            _ => panic!("{name}: {got:?}, expected retryable = {retryable}"),
        }
    }
}

/// A push device of Ann's; its SNS endpoint named by the end of its ARN.
fn push_device(platform: &str, token: &str, endpoint: Option<&str>) -> Device {
    Device {
        platform: platform.into(),
        token: token.into(),
        endpoint: endpoint.map(|e| format!("arn:aws:sns:us-east-1:123456789012:endpoint/{e}")),
        disabled: false,
        revived: false,
        registered_at: None,
        disabled_at: None,
        source: Default::default(),
    }
}

/// SNS's answer to a Publish it took.
fn published() -> Answer {
    (
        200,
        vec![("content-type", "text/xml")],
        "<PublishResponse><PublishResult><MessageId>m-1</MessageId></PublishResult>\
         </PublishResponse>"
            .to_string(),
    )
}

/// A service slow to answer: gives `canned`'s answer (and keeps the request) after `after`.
#[derive(Debug, Clone)]
struct Slow {
    after: std::time::Duration,
    canned: Canned,
}

impl HttpConnector for Slow {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let answer = self.canned.call(request);
        let after = self.after;
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(after).await;
            answer.await
        })
    }
}

/// A push to several devices calls no device after the message's sending time (a call cut off
/// by the invocation's end after SNS took it would go out again with the message's
/// redelivery): when the first device's call timed out, the push is retried; when that device
/// took it, slowly, the push is sent, and the other device not tried.
#[tokio::test(start_paused = true)]
async fn a_push_calls_no_device_past_its_sending_time() {
    let none = Canned::new(vec![]);
    let cases = [
        ("the first device timed out", 3600, false),
        ("the first device took it", 6, true),
    ];
    for (name, answers_after, sent) in cases {
        let canned = Canned::new(vec![published()]);
        let slow = Slow {
            after: std::time::Duration::from_secs(answers_after),
            canned: canned.clone(),
        };
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
                .http_client(http_client_fn(move |_, _| {
                    SharedHttpConnector::new(slow.clone())
                }))
                .retry_config(waymark::aws::provider_retries())
                .timeout_config(waymark::aws::provider_timeouts())
                .build(),
        );
        let sender = AwsSender::new(client!(aws_sdk_sesv2, none), sns, SenderSettings::default());
        let mut message = push();
        message.to = Address::Devices(vec![
            push_device("apns", "iphone", Some("APNS/app/1")),
            push_device("fcm", "android", Some("GCM/app/2")),
        ]);
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let got = waymark::runtime::sending_until(until, sender.send(&message)).await;
        match (&got, sent) {
            (Ok(_), true) | (Err(SendError::Retryable(_)), false) => {}
            _ => panic!("{name}: {got:?}"),
        }
        assert_eq!(
            canned.requests().len(),
            1,
            "{name}: the other device was called past the sending time"
        );
    }
}

/// Webhook secrets that take long to read (SSM read cold).
struct SlowSecrets;

#[async_trait::async_trait]
impl waymark::secrets::WebhookSecrets for SlowSecrets {
    async fn secret(&self, _: &str) -> Result<Option<String>, waymark::secrets::SecretsError> {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Ok(Some("sk_live_1".into()))
    }
}

/// A webhook whose secrets took the message's sending time to read is not called (a call cut
/// off by the invocation's end after the receiver took it would be made again with the
/// message's redelivery): retried, nothing went out. With time left, the same call is made.
#[tokio::test]
async fn a_webhook_is_not_called_past_its_sending_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    let none = Canned::new(vec![]);
    let sender = AwsSender::new(
        client!(aws_sdk_sesv2, none),
        client!(aws_sdk_sns, none),
        SenderSettings::default(),
    )
    .with_secrets(Arc::new(SlowSecrets));
    let hook = outgoing(
        Channel::Webhook,
        Address::One("ann".into()),
        Content::Webhook {
            url: format!("http://{addr}/grants"),
            method: "POST".into(),
            headers: std::collections::BTreeMap::from([(
                "authorization".to_string(),
                format!("Bearer {}", waymark::secrets::marker("KEY")),
            )]),
            body: None,
            secrets: vec!["KEY".to_string()],
        },
    );
    let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
    let got = waymark::runtime::sending_until(soon, sender.send(&hook)).await;
    assert!(matches!(got, Err(SendError::Retryable(_))), "{got:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "called past the sending time"
    );
    let later = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let got = waymark::runtime::sending_until(later, sender.send(&hook)).await;
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A push to several devices says which of them SNS answered disabled (an uninstalled app),
/// also when none took it (every device refused, or one is to be tried again), and only those: a device that refused this message alone, or had no
/// endpoint to try, is not one of them, whatever the order of the devices.
#[tokio::test]
async fn a_push_says_which_devices_are_disabled_whoever_answered_first() {
    let iphone = push_device("apns", "iphone", Some("APNS/app/1"));
    let android = push_device("fcm", "android", Some("GCM/app/2"));
    let tablet = push_device("fcm", "tablet", None);
    let published = published();
    let refused = || sns_error(400, "InvalidParameter");
    let disabled = || sns_error(400, "EndpointDisabled");
    // What comes back: Ok(disabled tokens) for a push a device took, Err(Ok(disabled tokens))
    // for one every device refused for good, Err(Err(disabled tokens)) for one to retry.
    type Case = (
        &'static str,
        Vec<Device>,
        Vec<Answer>,
        Result<Vec<&'static str>, Result<Vec<&'static str>, Vec<&'static str>>>,
    );
    let cases: Vec<Case> = vec![
        (
            "iPhone refused, Android disabled",
            vec![iphone.clone(), android.clone(), tablet.clone()],
            vec![refused(), disabled()],
            Err(Ok(vec!["android"])),
        ),
        (
            "Android disabled, iPhone refused",
            vec![tablet.clone(), android.clone(), iphone.clone()],
            vec![disabled(), refused()],
            Err(Ok(vec!["android"])),
        ),
        (
            "both disabled",
            vec![iphone.clone(), android.clone()],
            vec![disabled(), disabled()],
            Err(Ok(vec!["iphone", "android"])),
        ),
        (
            "both refused",
            vec![iphone.clone(), android.clone()],
            vec![refused(), refused()],
            Err(Ok(vec![])),
        ),
        (
            "Android disabled, iPhone took it",
            vec![android.clone(), iphone.clone()],
            vec![disabled(), published],
            Ok(vec!["android"]),
        ),
        (
            "Android disabled, iPhone throttled",
            vec![android.clone(), iphone.clone()],
            vec![disabled(), sns_error(400, "Throttled")],
            Err(Err(vec!["android"])),
        ),
        (
            "iPhone throttled, Android disabled",
            vec![iphone.clone(), android.clone()],
            vec![sns_error(400, "Throttled"), disabled()],
            Err(Err(vec!["android"])),
        ),
        (
            "iPhone throttled, Android refused",
            vec![iphone.clone(), android.clone()],
            vec![sns_error(400, "Throttled"), refused()],
            Err(Err(vec![])),
        ),
    ];
    let none = Canned::new(vec![]);
    for (name, devices, answers, want) in cases {
        let sns = Canned::new(answers);
        let mut message = push();
        message.to = Address::Devices(devices);
        let got = sender(&none, &sns).send(&message).await;
        match (&got, &want) {
            (Ok(receipt), Ok(want)) => assert_eq!(receipt.disabled_devices, *want, "{name}"),
            (
                Err(SendError::PushRefused {
                    disabled_devices, ..
                }),
                Err(Ok(want)),
            ) => assert_eq!(disabled_devices, want, "{name}"),
            (Err(SendError::Permanent(_)), Err(Ok(want))) => {
                assert!(want.is_empty(), "{name}: {got:?}")
            }
            // Tried again, the disabled devices said all the same (lost before when another
            // device's answer was to retry).
            (
                Err(SendError::PushRetryable {
                    disabled_devices, ..
                }),
                Err(Err(want)),
            ) => assert_eq!(disabled_devices, want, "{name}"),
            (Err(SendError::Retryable(_)), Err(Err(want))) => {
                assert!(want.is_empty(), "{name}: {got:?}")
            }
            _ => panic!("{name}: {got:?}, expected {want:?}"),
        }
        assert_eq!(
            sns.requests().len(),
            2,
            "{name}: one call a device with an endpoint"
        );
    }
}

#[tokio::test]
async fn email_requests_carry_the_unsubscribe_headers_and_the_user_tag() {
    let ses = Canned::new(vec![(
        200,
        vec![("content-type", "application/json")],
        r#"{"MessageId": "m-1"}"#.into(),
    )]);
    let none = Canned::new(vec![]);
    let mut message = email();
    message.user_id = "ann@shop".into();
    if let Content::Email {
        unsubscribe_url, ..
    } = std::sync::Arc::make_mut(&mut message.content)
    {
        *unsubscribe_url = Some("https://hooks.test/v1/unsubscribe?token=abc".into());
    }
    let receipt = sender(&ses, &none).send(&message).await.expect("sent");
    assert_eq!(receipt.provider_id.as_deref(), Some("m-1"));
    let body: serde_json::Value = serde_json::from_str(&ses.requests()[0]).expect("a JSON request");
    assert_eq!(
        body["Content"]["Simple"]["Headers"],
        json!([
            {"Name": "List-Unsubscribe", "Value": "<https://hooks.test/v1/unsubscribe?token=abc>"},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}
        ])
    );
    assert_eq!(
        body["EmailTags"],
        json!([
            {"Name": "user_id", "Value": "ann_40shop"},
            {"Name": "journey", "Value": "cart"},
            // The message's id, its send's ledger key `e1#s#1`, as its timeline's `sent` says.
            {"Name": "message_id", "Value": "e1_23s_231"}
        ])
    );
    assert_eq!(body["Destination"]["ToAddresses"], json!([ADDRESS]));
    assert!(body.get("ConfigurationSetName").is_none());
}

/// A From name with a comma or outside ASCII, which the stack takes, reaches SES as one address
/// it reads (a bare comma would end the address, and SES would refuse every email).
#[tokio::test]
async fn the_from_name_reaches_ses_quoted_or_encoded() {
    let none = Canned::new(vec![]);
    for (from, sent) in [
        (
            "Acme, Inc. <hello@waymark.test>",
            r#""Acme, Inc." <hello@waymark.test>"#,
        ),
        (
            "Café <hello@waymark.test>",
            "=?UTF-8?B?Q2Fmw6k=?= <hello@waymark.test>",
        ),
    ] {
        let ses = Canned::new(vec![(
            200,
            vec![("content-type", "application/json")],
            r#"{"MessageId": "m-1"}"#.into(),
        )]);
        let sender = AwsSender::new(
            client!(aws_sdk_sesv2, ses),
            client!(aws_sdk_sns, none),
            SenderSettings {
                from: Some(from.into()),
                ..Default::default()
            },
        );
        sender.send(&email()).await.expect("sent");
        let body: serde_json::Value =
            serde_json::from_str(&ses.requests()[0]).expect("a JSON request");
        assert_eq!(body["FromEmailAddress"], json!(sent), "{from}");
    }
}

#[tokio::test]
async fn an_email_in_a_chosen_language_says_which() {
    let ses = Canned::new(vec![(
        200,
        vec![("content-type", "application/json")],
        r#"{"MessageId": "m-1"}"#.into(),
    )]);
    let none = Canned::new(vec![]);
    let mut message = email();
    message.locale = Some("es".into());
    sender(&ses, &none).send(&message).await.expect("sent");
    let body: serde_json::Value = serde_json::from_str(&ses.requests()[0]).expect("a JSON request");
    assert_eq!(
        body["Content"]["Simple"]["Headers"],
        json!([{"Name": "Content-Language", "Value": "es"}])
    );
}
