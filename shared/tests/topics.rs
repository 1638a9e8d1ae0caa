//! Subscription topics: a journey's `topic` skips the users unsubscribed from it (or not opted
//! in to an `opt_in` topic) and no one else, each topic's choice is the latest stated and only
//! narrows at a login, a topic journey's unsubscribe link stops that topic alone, and
//! `waymark validate` refuses a topic the folder does not declare.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use support::{journey, Harness};
use waymark::api::Api;
use waymark::auth::{Keys, Signer};
use waymark::dsl::TopicsFrom::Settings;
use waymark::engine::Content;
use waymark::event::Limits;
use waymark::runtime::{Config, Runtime};
use waymark::timeline::What;
use waymark::topic::Topics;

const SECRET: &str = "topics-secret";

/// A newsletter (subscribed by default), offers (`opt_in`) and, with no topic, order updates:
/// each an email when `ordered`.
const NEWSLETTER: &str = r#"
id: digest
name: Weekly digest
topic: newsletter
trigger: {event: ordered}
reentry: after_exit
steps:
  - id: digest_email
    send: {email: {subject: "This week", text: "News. Stop: {{ unsubscribe_url }}"}}
"#;

const OFFERS: &str = r#"
id: offers
name: Offers
topic: offers
trigger: {event: ordered}
reentry: after_exit
steps:
  - id: offer_email
    send: {email: {subject: "20% off", text: "Deal"}}
"#;

const ORDERS: &str = r#"
id: order_updates
name: Order updates
trigger: {event: ordered}
reentry: after_exit
steps:
  - id: update_email
    send: {email: {subject: "Your order", text: "On its way"}}
"#;

fn topics() -> Topics {
    Topics::parse_parameter(
        r#"{"newsletter": {"name": "The Weekly Newsletter"}, "offers": {"name": "Offers", "default": "opt_in"}}"#,
    )
    .expect("topics")
}

fn config() -> Config {
    Config {
        topics: topics(),
        public_url: Some("https://hooks.example.com".into()),
        signer: Some(Arc::new(Signer::new(SECRET))),
        ..Config::default()
    }
}

async fn harness() -> Harness {
    let h = Harness::with_config("2026-12-01T09:00:00Z", config());
    for j in [NEWSLETTER, OFFERS, ORDERS] {
        h.publish(j).await;
    }
    h
}

/// The subjects of the emails `user` got.
fn subjects(h: &Harness, user: &str) -> Vec<String> {
    h.lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| &*l.user_id == user)
        .filter_map(|l| match &*l.content {
            Content::Email { subject, .. } => Some(subject.clone()),
            _ => None,
        })
        .collect()
}

/// The skips in `user`'s timeline: `step: reason (detail)`.
async fn skips(h: &Harness, user: &str) -> Vec<String> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => Some(format!(
                "{}: {reason} ({})",
                e.step.as_deref().unwrap_or("-"),
                detail.as_deref().unwrap_or("")
            )),
            _ => None,
        })
        .collect()
}

async fn subscriptions(h: &Harness, user: &str) -> Value {
    let view = h.rt.user(user).await.expect("user");
    view.profile
        .and_then(|p| p.traits.get("subscriptions").cloned())
        .unwrap_or(Value::Null)
}

fn identify(at: &str, user: &str, traits: Value) -> String {
    json!({"at": at, "type": "identify", "userId": user, "traits": traits}).to_string()
}

fn ordered(at: &str, user: &str) -> String {
    json!({"at": at, "type": "track", "userId": user, "event": "ordered"}).to_string()
}

/// Unsubscribed from the newsletter, she still gets order updates (no topic), and offers once
/// she opted in; the newsletter's send is skipped saying which topic and since when.
#[tokio::test]
async fn a_topic_opt_out_skips_only_that_topics_journeys() {
    let h = harness().await;
    h.play(
        &[
            identify(
                "2026-12-01T09:00:00Z",
                "ann",
                json!({"email": "ann@example.com",
            "subscriptions": {"topics": {"newsletter": false, "offers": true}}}),
            ),
            identify(
                "2026-12-01T09:00:00Z",
                "bob",
                json!({"email": "bob@example.com"}),
            ),
            ordered("2026-12-01T10:00:00Z", "ann"),
            ordered("2026-12-01T10:00:00Z", "bob"),
        ]
        .join("\n"),
    )
    .await;
    let mut ann = subjects(&h, "ann");
    ann.sort();
    assert_eq!(ann, ["20% off", "Your order"]);
    assert_eq!(
        skips(&h, "ann").await,
        ["digest_email: topic_opted_out (unsubscribed from topic `newsletter` (The Weekly Newsletter): `subscriptions.topics.newsletter` is false, since 2026-12-01T09:00:00Z)"]
    );
    // Bob said nothing: the newsletter goes, the opt_in offers do not.
    let mut bob = subjects(&h, "bob");
    bob.sort();
    assert_eq!(bob, ["This week", "Your order"]);
    assert_eq!(
        skips(&h, "bob").await,
        ["offer_email: topic_not_opted_in (not opted in to topic `offers` (Offers), which is `opt_in`: it reaches a user once an identify states `subscriptions: {topics: {offers: true}}`)"]
    );
    // The stats count each reason.
    h.rt.fold_stats().await.expect("fold");
    let digest = h.rt.stats("digest").await.expect("stats");
    assert_eq!(
        digest.get("step.digest_email.skipped.topic_opted_out"),
        Some(&1),
        "{digest:?}"
    );
    let offers = h.rt.stats("offers").await.expect("stats");
    assert_eq!(
        offers.get("step.offer_email.skipped.topic_not_opted_in"),
        Some(&1),
        "{offers:?}"
    );
}

/// A topic she is subscribed to does not lift her channel's opt-out: both must let it go.
#[tokio::test]
async fn the_channel_opt_out_still_applies_to_a_topic_journey() {
    let h = harness().await;
    h.play(
        &[
            identify(
                "2026-12-01T09:00:00Z",
                "cy",
                json!({"email": "cy@example.com",
            "subscriptions": {"email": false, "topics": {"newsletter": true}}}),
            ),
            ordered("2026-12-01T10:00:00Z", "cy"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(subjects(&h, "cy"), Vec::<String>::new());
    let skipped = skips(&h, "cy").await;
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("digest_email: opted_out (`subscriptions.email` is false")),
        "{skipped:?}"
    );
}

/// Each topic's choice is the latest stated, by the identify's `timestamp`: one stated earlier
/// that arrives late changes nothing, and other topics and channels are left as they were.
#[tokio::test]
async fn the_latest_stated_choice_wins_per_topic() {
    let h = harness().await;
    let stamped = |at: &str, stamp: &str, traits: Value| {
        json!({"at": at, "type": "identify", "userId": "dee", "timestamp": stamp, "traits": traits})
            .to_string()
    };
    h.play(&[
        stamped("2026-12-01T09:00:00Z", "2026-12-01T09:00:00Z",
            json!({"email": "dee@example.com", "subscriptions": {"sms": false, "topics": {"offers": true}}})),
        stamped("2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z",
            json!({"subscriptions": {"topics": {"newsletter": false}}})),
        // Stated at 09:30, arriving after the 10:00 opt-out: not taken.
        stamped("2026-12-01T10:05:00Z", "2026-12-01T09:30:00Z",
            json!({"subscriptions": {"topics": {"newsletter": true}}})),
    ].join("\n"))
    .await;
    assert_eq!(
        subscriptions(&h, "dee").await,
        json!({"sms": false, "topics": {"offers": true, "newsletter": false}})
    );
    // Stated later: taken.
    h.play(&stamped(
        "2026-12-01T11:00:00Z",
        "2026-12-01T11:00:00Z",
        json!({"subscriptions": {"topics": {"newsletter": true}}}),
    ))
    .await;
    assert_eq!(
        subscriptions(&h, "dee").await,
        json!({"sms": false, "topics": {"offers": true, "newsletter": true}})
    );
    h.play(&ordered("2026-12-01T12:00:00Z", "dee")).await;
    assert_eq!(subjects(&h, "dee").len(), 3);
}

/// At a login, consent only narrows, topic by topic: the visitor's `false` stands over the
/// user's `true`, the user's `false` over the visitor's `true`, and a topic only the visitor
/// spoke for is taken.
#[tokio::test]
async fn a_login_merge_only_narrows_topics() {
    let h = harness().await;
    let anon = |at: &str, traits: Value| {
        json!({"at": at, "type": "identify", "anonymousId": "dev-1", "traits": traits}).to_string()
    };
    h.play(&[
        identify("2026-12-01T09:00:00Z", "eve", json!({"email": "eve@example.com",
            "subscriptions": {"topics": {"newsletter": true, "offers": false}}})),
        anon("2026-12-01T09:10:00Z", json!({"subscriptions": {"topics": {"newsletter": false, "offers": true, "tips": true}}})),
        json!({"at": "2026-12-01T09:20:00Z", "type": "identify", "userId": "eve",
            "anonymousId": "dev-1", "traits": {}}).to_string(),
    ].join("\n"))
    .await;
    assert_eq!(
        subscriptions(&h, "eve").await,
        json!({"topics": {"newsletter": false, "offers": false, "tips": true}})
    );
    h.play(&ordered("2026-12-01T10:00:00Z", "eve")).await;
    assert_eq!(subjects(&h, "eve"), ["Your order"]);
}

/// An `opt_in` topic sends nothing until she says yes, then it does.
#[tokio::test]
async fn an_opt_in_topic_waits_for_a_yes() {
    let h = harness().await;
    h.play(
        &[
            identify(
                "2026-12-01T09:00:00Z",
                "fay",
                json!({"email": "fay@example.com"}),
            ),
            ordered("2026-12-01T10:00:00Z", "fay"),
            identify(
                "2026-12-01T11:00:00Z",
                "fay",
                json!({"subscriptions": {"topics": {"offers": true}}}),
            ),
            ordered("2026-12-01T12:00:00Z", "fay"),
        ]
        .join("\n"),
    )
    .await;
    let offers: Vec<String> = subjects(&h, "fay")
        .into_iter()
        .filter(|s| s == "20% off")
        .collect();
    assert_eq!(offers, ["20% off"]);
    let skipped = skips(&h, "fay").await;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].starts_with("offer_email: topic_not_opted_in"));
}

/// The API over the harness, with the same topics and signing key as its runtime.
fn api(h: &Harness) -> Api {
    let rt = Runtime::new(
        Arc::new(h.store.clone()),
        Arc::new(h.queue.clone()),
        Arc::new(waymark::provider::RecordingSender::new()),
        h.clock.clone(),
        std::time::Duration::ZERO,
        config(),
    )
    .sharing_catalog(&h.rt);
    Api {
        runtime: Arc::new(rt),
        keys: Keys::parse("wk_write_1", "wk_admin_1").expect("keys"),
        signer: Arc::new(Signer::new(SECRET)),
        limits: Limits::default(),
    }
}

async fn call(
    api: &Api,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = api
        .handle(req.body(Bytes::from(body.to_string())).expect("request"))
        .await;
    (
        res.status(),
        String::from_utf8_lossy(res.body()).to_string(),
    )
}

/// The path and query of the unsubscribe link in the email `user` got with `subject`.
fn link_in(h: &Harness, user: &str, subject: &str) -> String {
    let lines = h.lines.lock().expect("lines");
    let url = lines
        .iter()
        .filter(|l| &*l.user_id == user)
        .find_map(|l| match &*l.content {
            Content::Email {
                subject: s,
                unsubscribe_url: Some(u),
                ..
            } if s == subject => Some(u.clone()),
            _ => None,
        })
        .expect("an email with its unsubscribe link");
    url.strip_prefix("https://hooks.example.com")
        .expect("the deployment's address")
        .to_string()
}

/// A newsletter email's link names the topic on its page, and its one-click POST stops the
/// newsletter alone: her email and the order updates still go. The page's second button
/// stops all email.
#[tokio::test]
async fn a_topic_journeys_link_unsubscribes_from_that_topic_only() {
    let h = harness().await;
    let api = api(&h);
    h.play(
        &[
            identify(
                "2026-12-01T09:00:00Z",
                "gil",
                json!({"email": "gil@example.com"}),
            ),
            ordered("2026-12-01T10:00:00Z", "gil"),
        ]
        .join("\n"),
    )
    .await;
    let link = link_in(&h, "gil", "This week");
    let html = ("accept", "text/html");
    let (status, page) = call(&api, Method::GET, &link, &[html], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Unsubscribe from The Weekly Newsletter"),
        "{page}"
    );
    assert!(page.contains("name=\"all\" value=\"email\""), "{page}");
    assert_eq!(
        subscriptions(&h, "gil").await,
        Value::Null,
        "opening it changes nothing"
    );

    let one_click = ("content-type", "application/x-www-form-urlencoded");
    let (status, text) = call(
        &api,
        Method::POST,
        &link,
        &[one_click],
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON"),
        json!({"unsubscribed": true, "topic": "newsletter"})
    );
    assert_eq!(
        subscriptions(&h, "gil").await,
        json!({"topics": {"newsletter": false}})
    );
    h.play(&ordered("2026-12-01T11:00:00Z", "gil")).await;
    assert_eq!(
        subjects(&h, "gil"),
        ["This week", "Your order", "Your order"],
        "the newsletter stops, order updates go on"
    );

    // The page's second button: all email.
    let (status, page) = call(&api, Method::POST, &link, &[html, one_click], "all=email").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("You are unsubscribed"), "{page}");
    assert_eq!(
        subscriptions(&h, "gil").await,
        json!({"email": false, "topics": {"newsletter": false}})
    );
}

/// Sorted, so that the journeys one event moves may send in any order.
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Segment's libraries send every cached trait again with every identify, stamped anew: the
/// choices the app stated before (`email: true`, the newsletter's and the `opt_in` offers'
/// `true`), sent again after she followed a link (the newsletter's, the offers', then the
/// page's "all email"), are no new statement and do not subscribe her again.
#[tokio::test]
async fn the_apps_choices_sent_again_do_not_undo_an_unsubscribe_link() {
    let h = harness().await;
    let api = api(&h);
    let again = |at: &str| {
        identify(
            at,
            "ivy",
            json!({"email": "ivy@example.com", "subscriptions": {"email": true,
                "topics": {"newsletter": true, "offers": true}}}),
        )
    };
    h.play(
        &[
            again("2026-12-01T09:00:00Z"),
            ordered("2026-12-01T10:00:00Z", "ivy"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        sorted(subjects(&h, "ivy")),
        ["20% off", "This week", "Your order"]
    );
    let one_click = ("content-type", "application/x-www-form-urlencoded");
    for subject in ["This week", "20% off"] {
        let link = link_in(&h, "ivy", subject);
        let (status, _) = call(
            &api,
            Method::POST,
            &link,
            &[one_click],
            "List-Unsubscribe=One-Click",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    h.play(
        &[
            again("2026-12-01T10:30:00Z"),
            ordered("2026-12-01T11:00:00Z", "ivy"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        subscriptions(&h, "ivy").await,
        json!({"email": true, "topics": {"newsletter": false, "offers": false}})
    );
    assert_eq!(
        subjects(&h, "ivy")[3..],
        ["Your order"],
        "only the order update goes"
    );
    assert_eq!(
        skips(&h, "ivy").await,
        [
            "digest_email: topic_opted_out (unsubscribed from topic `newsletter` (The Weekly Newsletter): `subscriptions.topics.newsletter` is false, since 2026-12-01T10:00:00Z)",
            "offer_email: topic_opted_out (unsubscribed from topic `offers` (Offers): `subscriptions.topics.offers` is false, since 2026-12-01T10:00:00Z)",
        ]
    );

    // The page's second button, all email: her cached `email: true` does not undo it either.
    let link = link_in(&h, "ivy", "This week");
    let html = ("accept", "text/html");
    let (status, _) = call(&api, Method::POST, &link, &[html, one_click], "all=email").await;
    assert_eq!(status, StatusCode::OK);
    h.play(
        &[
            again("2026-12-01T11:30:00Z"),
            ordered("2026-12-01T12:00:00Z", "ivy"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        subscriptions(&h, "ivy").await,
        json!({"email": false, "topics": {"newsletter": false, "offers": false}})
    );
    assert_eq!(subjects(&h, "ivy").len(), 4, "no email goes");
}

/// A changed choice from the app is a new statement: after the newsletter's link stopped it,
/// she unticks the box and ticks it again, and the newsletter goes again.
#[tokio::test]
async fn a_changed_choice_from_the_app_subscribes_her_again_after_a_link() {
    let h = harness().await;
    let api = api(&h);
    let newsletter = |at: &str, yes: bool| {
        identify(
            at,
            "jo",
            json!({"email": "jo@example.com", "subscriptions": {"topics": {"newsletter": yes}}}),
        )
    };
    h.play(
        &[
            newsletter("2026-12-01T09:00:00Z", true),
            ordered("2026-12-01T10:00:00Z", "jo"),
        ]
        .join("\n"),
    )
    .await;
    let link = link_in(&h, "jo", "This week");
    let one_click = ("content-type", "application/x-www-form-urlencoded");
    let (status, _) = call(
        &api,
        Method::POST,
        &link,
        &[one_click],
        "List-Unsubscribe=One-Click",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.play(
        &[
            newsletter("2026-12-01T10:30:00Z", true),
            ordered("2026-12-01T11:00:00Z", "jo"),
            newsletter("2026-12-01T11:30:00Z", false),
            newsletter("2026-12-01T11:40:00Z", true),
            ordered("2026-12-01T12:00:00Z", "jo"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        subscriptions(&h, "jo").await,
        json!({"topics": {"newsletter": true}})
    );
    assert_eq!(
        sorted(subjects(&h, "jo")[2..].to_vec()),
        ["This week", "Your order", "Your order"],
        "the cached yes at 10:30 sent nothing at 11:00; her ticking it again at 11:40 did at 12:00"
    );
    let digest: Vec<String> = skips(&h, "jo")
        .await
        .into_iter()
        .filter(|s| s.starts_with("digest_email"))
        .collect();
    assert_eq!(digest.len(), 1, "the 11:00 newsletter: {digest:?}");
}

/// A link made before topics (its token binds no topic) unsubscribes from email, as it did.
#[tokio::test]
async fn an_old_token_still_unsubscribes_from_email() {
    let h = harness().await;
    let api = api(&h);
    h.play(&identify(
        "2026-12-01T09:00:00Z",
        "hal",
        json!({"email": "hal@example.com"}),
    ))
    .await;
    let token = Signer::new(SECRET).unsubscribe_token("hal", "email", "digest");
    let link = format!("/v1/unsubscribe?token={token}");
    let (status, page) = call(&api, Method::GET, &link, &[("accept", "text/html")], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Stop receiving these emails?"), "{page}");
    let (status, text) = call(&api, Method::POST, &link, &[], "List-Unsubscribe=One-Click").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("JSON"),
        json!({"unsubscribed": true, "channel": "email"})
    );
    assert_eq!(subscriptions(&h, "hal").await, json!({"email": false}));
    h.play(&ordered("2026-12-01T10:00:00Z", "hal")).await;
    assert_eq!(subjects(&h, "hal"), Vec::<String>::new());
}

/// `waymark validate` refuses a topic the folder's `waymark.yaml` does not declare, at its
/// line and column with the declared one it is nearest to, and a topic on a transactional
/// journey.
#[test]
fn validate_refuses_an_undeclared_topic_and_a_transactional_one() {
    let text = NEWSLETTER.replace("topic: newsletter", "topic: newsleter");
    let j = journey(&text);
    let err = waymark::dsl::undeclared_topic("digest.yaml", &text, &j, &topics(), Settings)
        .expect("undeclared");
    assert_eq!(
        err.to_string(),
        "digest.yaml:4:8: topic: topic `newsleter` is not declared in the folder's waymark.yaml (it declares `newsletter`, `offers`): did you mean `newsletter`? declare it there under `topics`, like `topics: {newsleter: {name: Newsletter}}` (`default: opt_in` for a topic that sends only to users who said yes)"
    );
    assert_eq!(
        waymark::dsl::undeclared_topic(
            "digest.yaml",
            NEWSLETTER,
            &journey(NEWSLETTER),
            &topics(),
            Settings
        ),
        None
    );
    let none = waymark::dsl::undeclared_topic(
        "d.yaml",
        NEWSLETTER,
        &journey(NEWSLETTER),
        &Topics::default(),
        Settings,
    )
    .expect("none declared");
    assert!(
        none.message.contains("(it declares none)"),
        "{}",
        none.message
    );

    let receipt = NEWSLETTER.replace(
        "topic: newsletter",
        "topic: newsletter\ntransactional: true",
    );
    let errs = waymark::dsl::parse("r.yaml", &receipt).expect_err("transactional topic");
    assert_eq!(
        (errs[0].line, errs[0].column, errs[0].path.as_str()),
        (4, 1, "topic")
    );
    assert!(
        errs[0]
            .message
            .starts_with("a transactional journey belongs to no topic"),
        "{}",
        errs[0].message
    );
    // A topic per message is not a field: the journey holds it.
    let per_message = NEWSLETTER.replace("send: {email:", "send: {topic: newsletter, email:");
    let errs = waymark::dsl::parse("m.yaml", &per_message).expect_err("send.topic");
    assert!(
        errs[0]
            .message
            .contains("a subscription topic is the journey's"),
        "{}",
        errs[0].message
    );
}

/// A deployment refuses to publish a journey whose topic its `SubscriptionTopics` lacks: an
/// `opt_in` topic it was not told of would otherwise go to everyone.
#[tokio::test]
async fn the_api_refuses_a_journey_whose_topic_the_deployment_lacks() {
    let h = harness().await;
    let api = api(&h);
    let admin = ("authorization", "Bearer wk_admin_1");
    let text = NEWSLETTER.replace("topic: newsletter", "topic: tips");
    let (status, body) = call(&api, Method::PUT, "/v1/journeys/digest", &[admin], &text).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["errors"][0]["field"], json!("topic"), "{body}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("topic `tips` is not declared in this deployment")),
        "{body}"
    );
    let (status, body) = call(
        &api,
        Method::PUT,
        "/v1/journeys/digest",
        &[admin],
        NEWSLETTER,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A deploy that loses the `SubscriptionTopics` parameter (a `sam deploy` without the
/// override) keeps each published journey's topic as it was declared when it was published:
/// an `opt_in` topic still waits for a yes, a `subscribed` one still sends.
#[tokio::test]
async fn a_deploy_without_the_topics_keeps_each_versions_declaration() {
    let h = Harness::with_config("2026-12-01T09:00:00Z", config());
    let api = api(&h);
    let admin = ("authorization", "Bearer wk_admin_1");
    for (id, text) in [("digest", NEWSLETTER), ("offers", OFFERS)] {
        let uri = format!("/v1/journeys/{id}");
        let (status, body) = call(&api, Method::PUT, &uri, &[admin], text).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Deployed again with the parameter's default (''): no topics declared.
    let (sender, lines) = waymark::outbox::OutboxSender::memory(h.clock.clone());
    let redeployed = Config {
        topics: Topics::default(),
        undeclared_topic: waymark::topic::TopicDefault::OptIn,
        ..config()
    };
    let rt = Runtime::new(
        Arc::new(h.store.clone()),
        Arc::new(h.queue.clone()),
        Arc::new(sender),
        h.clock.clone(),
        std::time::Duration::ZERO,
        redeployed,
    );
    let h = Harness { rt, lines, ..h };
    h.play(
        &[
            identify(
                "2026-12-01T10:00:00Z",
                "gus",
                json!({"email": "gus@example.com"}),
            ),
            ordered("2026-12-01T10:05:00Z", "gus"),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(subjects(&h, "gus"), ["This week"]);
    assert_eq!(
        skips(&h, "gus").await,
        ["offer_email: topic_not_opted_in (not opted in to topic `offers` (Offers), which is `opt_in`: it reaches a user once an identify states `subscriptions: {topics: {offers: true}}`)"]
    );
}

/// Past the topics' bound, her no for a new topic is kept in place of her oldest yes, and the
/// timeline says which choice was dropped and why.
#[tokio::test]
async fn a_no_past_the_topics_bound_is_kept_and_the_dropped_yes_told() {
    let h = harness().await;
    let yeses: serde_json::Map<String, Value> = (0..waymark::profile::MAX_TOPICS)
        .map(|i| (format!("t{i:03}"), Value::Bool(true)))
        .collect();
    h.play(
        &[
            identify(
                "2026-12-01T09:00:00Z",
                "hal",
                json!({"subscriptions": {"topics": yeses}}),
            ),
            identify(
                "2026-12-01T10:00:00Z",
                "hal",
                json!({"subscriptions": {"topics": {"newsletter": false}}}),
            ),
        ]
        .join("\n"),
    )
    .await;
    assert_eq!(
        subscriptions(&h, "hal").await["topics"]["newsletter"],
        json!(false)
    );
    let view = h.rt.user("hal").await.expect("user");
    let told: Vec<(Vec<String>, String)> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::NotKept { fields, reason, .. } => Some((fields.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, ["traits.subscriptions.topics.t000"]);
    assert!(
        told[0].1.contains("choices for at most 100 topics"),
        "{told:?}"
    );
}
