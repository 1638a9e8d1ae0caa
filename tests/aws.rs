//! Waymark on (moto's) AWS: the three functions' handlers, wired as the Lambda binaries wire
//! them, over a stack made from template.yaml. Each test reads as a journey: who does what when,
//! and what went out (read back from moto's SES and SNS).

mod support;

use std::collections::BTreeMap;

use aws_lambda_events::event::sns::{SnsEvent, SnsMessage, SnsRecord};
use serde_json::{json, Value};
use support::{at, cart, cart_journey, mins, Harness, PUBLIC_BASE_URL};
use waymark::aws::send::tag_encode;
use waymark::aws::{handlers, DynamoStore, SqsQueue};
use waymark::queue::{Message, Outbound, Queue, QueueName};
use waymark::store::{Expect, Key, Record, Store, StoreError};

/// 10:00 in Paris: the cart journey's quiet hours (21:00–08:00) stay out of the way.
const T0: &str = "2026-12-01T09:00:00Z";

/// Identifies a shopper with an email address and an FCM token, both unique to the test (moto
/// keeps one SNS endpoint per token across platform applications, and one SES outbox).
async fn identify_shopper(h: &Harness, user: &str) -> String {
    let unique = format!(
        "{}-{}",
        h.stack.name,
        user.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    );
    let email = format!("{unique}@shoppers.test");
    h.identify(
        user,
        json!({
            "email": email,
            "first_name": user,
            "timezone": "Europe/Paris",
            "push_tokens": [{"platform": "fcm", "token": format!("fcm-token-{unique}")}]
        }),
    )
    .await;
    email
}

/// Posts an event body as an app would (with the write key); it must be accepted.
async fn post(h: &Harness, path: &str, body: Value) {
    let (status, out) = h
        .call(
            "POST",
            path,
            Some(&body.to_string()),
            Some(support::WRITE_KEY),
        )
        .await;
    assert_eq!(status, 200, "{path}: {out}");
}

fn gcm(push: &Value) -> Value {
    serde_json::from_str(push["GCM"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

#[tokio::test]
async fn cart_abandonment_push_after_30_minutes_then_email_after_4_hours() {
    let Some(mut h) = Harness::new("cart", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let email = identify_shopper(&h, "ann").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    assert!(h.deliver_due().await.is_empty());

    // The identify registered the device with SNS (the FCM platform application).
    let endpoint = h.endpoint_of("ann").await;
    assert!(endpoint.contains(":endpoint/GCM/"), "{endpoint}");
    let view = h.user("ann").await;
    assert_eq!(view["enrollments"][0]["journey"], "cart_abandonment");

    // The 30-minute wait rides the steps queue (two 15-minute hops).
    h.run_until(t0 + mins(29)).await;
    assert!(
        h.pushes_to(&endpoint).await.is_empty(),
        "no push before 30 minutes"
    );
    h.run_until(t0 + mins(30)).await;
    let pushes = h.pushes_to(&endpoint).await;
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let message = &gcm(&pushes[0])["fcmV1Message"]["message"];
    assert_eq!(
        message["notification"]["title"],
        "You left something in your cart"
    );
    assert_eq!(
        message["notification"]["body"],
        "2 item(s) are waiting for you, ann."
    );
    assert_eq!(message["data"]["deeplink"], "shop://cart/c-1001");
    // The push's `expires: 4h` went to SNS as FCM's time to live.
    let publish = h
        .probes
        .engine
        .publishes()
        .into_iter()
        .find(|p| p.get("TargetArn") == Some(&endpoint))
        .expect("the push's Publish request");
    assert_eq!(
        support::publish_attributes(&publish),
        BTreeMap::from([("AWS.SNS.MOBILE.FCM.TTL".to_string(), "14400".to_string())]),
        "{publish:?}"
    );

    // The 4-hour wait is a timer: nothing moves until the scheduler sweeps its minute.
    let due = t0 + mins(30 + 240);
    h.run_until(due).await;
    assert!(
        h.emails_to(&email).await.is_empty(),
        "no email before the sweep"
    );
    let tick = h.tick().await;
    assert_eq!(tick["timers"], 1, "{tick}");
    assert!(h.deliver_due().await.is_empty());

    let emails = h.emails_to(&email).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let sent = &emails[0];
    assert_eq!(
        sent["subject"],
        "Still in your cart, and some of it may not last"
    );
    assert_eq!(sent["source"], "Waymark <hello@waymark.test>");
    let body = sent["body"].as_str().unwrap_or_default();
    assert!(
        // The shopper has no locale: English.
        body.contains("Trail shoes (€79.90): only 3 left"),
        "{body}"
    );

    // moto keeps neither headers nor tags, so they are checked on the request SES was sent.
    let requests = h.probes.engine.emails();
    assert_eq!(requests.len(), 1);
    let simple = &requests[0]["Content"]["Simple"];
    let headers: BTreeMap<String, String> = simple["Headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h["Name"].as_str().unwrap_or_default().to_string(),
                h["Value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let link = headers["List-Unsubscribe"]
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    assert!(
        link.starts_with(&format!("{PUBLIC_BASE_URL}/v1/unsubscribe?token=")),
        "{link}"
    );
    assert_eq!(
        headers["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    let tags: BTreeMap<&str, &str> = requests[0]["EmailTags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["Name"].as_str().unwrap_or(""),
                t["Value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(tags["user_id"], "ann");
    assert_eq!(tags["journey"], tag_encode("cart_abandonment"));
    // The message's id, as ann's timeline's `sent` says it.
    let ids: Vec<String> = emails_sent_ids(&h.user("ann").await);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(tags["message_id"], tag_encode(&ids[0]));
    assert!(requests[0]["ConfigurationSetName"]
        .as_str()
        .is_some_and(|c| c.ends_with("-config")));

    // Following the link (one click) unsubscribes from email.
    let path = link.trim_start_matches(PUBLIC_BASE_URL);
    let (status, answer) = h.call("POST", path, None, None).await;
    assert_eq!(status, 200, "{answer}");
    let view = h.user("ann").await;
    assert_eq!(view["profile"]["traits"]["subscriptions"]["email"], false);

    // The journey's counters, folded from the timeline records by the scheduler's minute (a
    // DynamoDB transaction per fold) and kept in DynamoDB.
    h.tick().await;
    let (status, stats) = h
        .call(
            "GET",
            "/v1/journeys/cart_abandonment/stats",
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["entered"], 1, "{stats}");
    assert_eq!(stats["completed"], 1, "{stats}");
    assert_eq!(stats["steps"][1]["id"], "push_reminder", "{stats}");
    assert_eq!(stats["steps"][1]["sent"]["push"], 1, "{stats}");
    assert_eq!(stats["steps"][3]["sent"]["email"], 1, "{stats}");
}

#[tokio::test]
async fn an_anonymous_cart_goes_on_as_the_user_who_logs_in() {
    let Some(mut h) = Harness::new("merge", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    // A shopper abandons a cart before logging in; the push at 30 minutes finds no device.
    post(
        &h,
        "/v1/track",
        json!({"anonymousId": "browser-7", "event": "cart_abandoned", "messageId": "cart-anon-1", "properties": cart("c-1004")}),
    )
    .await;
    h.run_until(t0 + mins(45)).await;
    // They log in: the identify carries both ids.
    let email = format!("{}-dan@shoppers.test", h.stack.name);
    post(
        &h,
        "/v1/identify",
        json!({"userId": "dan", "anonymousId": "browser-7", "messageId": "login-dan", "traits": {"email": email, "first_name": "Dan"}}),
    )
    .await;
    h.deliver_due().await;
    // The 4-hour wait moved with the enrollment: its timer, now the user's, is swept on time.
    h.run_until(t0 + mins(30 + 240)).await;
    let tick = h.tick().await;
    assert_eq!(tick["timers"], 1, "{tick}");
    h.deliver_due().await;
    let emails = h.emails_to(&email).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    // Dan's view tells the merge once, with the enrollment as it went on; the anonymous user's
    // own view keeps its side (its record marked merged, its own `merged` fact).
    let merged = |view: &Value| -> Vec<Value> {
        view["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["what"] == "merged")
            .cloned()
            .collect()
    };
    let statuses = |view: &Value| -> Vec<Value> {
        view["enrollments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["status"].clone())
            .collect()
    };
    let view = h.user("dan").await;
    let told = merged(&view);
    assert_eq!(told.len(), 1, "{view}");
    assert_eq!(told[0]["from"], "anon:browser-7", "{view}");
    assert_eq!(view["profile"]["anonymous_ids"][0], "browser-7", "{view}");
    assert_eq!(statuses(&view), [json!("completed")], "{view}");
    let anon = h.user("anon:browser-7").await;
    assert_eq!(merged(&anon).len(), 1, "{anon}");
    assert_eq!(statuses(&anon), [json!("merged")], "{anon}");
}

#[tokio::test]
async fn an_order_in_between_stops_the_email() {
    let Some(mut h) = Harness::new("order", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let ann = identify_shopper(&h, "ann").await;
    let bob = identify_shopper(&h, "bob").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.track("bob", "cart_abandoned", "cart-bob-1", cart("c-1002"))
        .await;
    h.run_until(t0 + mins(30)).await;
    let bob_endpoint = h.endpoint_of("bob").await;
    assert_eq!(h.pushes_to(&bob_endpoint).await.len(), 1);

    // A second cart while he is enrolled enters him no second time, and his timeline says why
    // (kept in DynamoDB with the event's dedup marker).
    h.track("bob", "cart_abandoned", "cart-bob-2", cart("c-1003"))
        .await;
    assert!(h.deliver_due().await.is_empty());
    let view = h.user("bob").await;
    let refused: Vec<&Value> = view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"] == "not_entered")
        .collect();
    assert_eq!(refused.len(), 1, "{view}");
    assert_eq!(refused[0]["reason"], "enrolled", "{view}");
    assert_eq!(refused[0]["enrollment"], "cart_abandonment:bob:1", "{view}");
    assert_eq!(refused[0]["trigger"], "cart_abandoned", "{view}");

    // Bob orders an hour in: he leaves the journey and his timer is cancelled.
    h.run_until(t0 + mins(60)).await;
    h.track(
        "bob",
        "order_completed",
        "order-bob-1",
        json!({"order_id": "A-2002", "total": 25}),
    )
    .await;
    assert!(h.deliver_due().await.is_empty());
    let view = h.user("bob").await;
    assert_eq!(view["enrollments"][0]["status"], "exited", "{view}");

    h.run_until(t0 + mins(270)).await;
    let tick = h.tick().await;
    assert_eq!(tick["timers"], 1, "only Ann's timer is left: {tick}");
    h.deliver_due().await;
    assert_eq!(h.emails_to(&ann).await.len(), 1);
    assert!(h.emails_to(&bob).await.is_empty());
}

/// A user with the longest id intake takes (256 bytes) has her renewal reminder's date wait
/// moved by another journey's `update`, reached after a wait in an enrollment keyed by the
/// longest value: the moved wait's timeline record, whose cause holds that enrollment's id
/// twice (`wake:{id}:{seq}:moved:{id}`), is under a key DynamoDB takes (1,024 bytes of sort key
/// at most). Nothing fails or ends in a dead-letter queue, and the reminder goes out on the
/// new date.
#[tokio::test]
async fn a_wait_moved_for_the_longest_ids_is_recorded_and_goes_on() {
    let Some(mut h) = Harness::new("longids", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    let plan = format!("plan_{}", "p".repeat(59));
    let renewal = format!("renewal_{}", "r".repeat(56));
    h.publish_journey(
        &plan,
        &format!(
            "id: {plan}\nname: Plan\ntrigger: {{event: plan_extended}}\nenrollment_key: event.order\nsteps:\n  - id: settle\n    wait: 4m\n  - id: record\n    update: {{set: {{renews_on: \"{{{{ trigger.next }}}}\"}}}}\n"
        ),
    )
    .await;
    h.publish_journey(
        &renewal,
        &format!(
            "id: {renewal}\nname: Renewal\ntrigger: {{event: subscribed}}\nsteps:\n  - id: day_before\n    wait_until: {{date: profile.renews_on, before: 1d}}\n  - id: remind\n    send: {{email: {{subject: \"Renewal tomorrow\", text: \"See you.\"}}}}\n"
        ),
    )
    .await;
    let user = "u".repeat(256);
    let email = format!("{}-long@shoppers.test", h.stack.name);
    h.identify(
        &user,
        json!({"email": email, "timezone": "Europe/Paris", "renews_on": "2027-06-01"}),
    )
    .await;
    h.track(&user, "subscribed", "sub-1", json!({})).await;
    h.track(
        &user,
        "plan_extended",
        "plan-1",
        json!({"order": "o".repeat(128), "next": "2026-12-03"}),
    )
    .await;
    assert_eq!(h.run_until(t0 + mins(10)).await, Vec::<String>::new());

    // The update after the wait moved the reminder's wait to 2026-12-02 00:00 in Paris.
    let view = h.user(&user).await;
    let moved: Vec<&Value> = view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["journey"] == renewal.as_str() && e["what"] == "waiting")
        .collect();
    assert_eq!(moved.len(), 2, "{view}");
    assert_eq!(moved[1]["until"], "2026-12-01T23:00:00Z", "{view}");

    h.run_until(at("2026-12-01T23:00:00Z")).await;
    let tick = h.tick().await;
    assert_eq!(tick["timers"], 1, "{tick}");
    assert_eq!(h.deliver_due().await, Vec::<String>::new());
    assert_eq!(h.emails_to(&email).await.len(), 1);
    assert!(h.drain("EventsDeadLetterQueue").await.is_empty());
    assert!(h.drain("StepsDeadLetterQueue").await.is_empty());
}

/// The endpoints SNS holds under the stack's FCM platform application.
async fn fcm_endpoints(h: &Harness) -> Vec<String> {
    let sns = aws_sdk_sns::Client::new(&h.sdk);
    let app = &h.stack.bindings.refs["FcmPlatformApplicationArn"];
    let mut out = Vec::new();
    let mut next = None;
    loop {
        let page = sns
            .list_endpoints_by_platform_application()
            .platform_application_arn(app)
            .set_next_token(next)
            .send()
            .await
            .expect("list the application's endpoints");
        out.extend(
            page.endpoints()
                .iter()
                .filter_map(|e| e.endpoint_arn().map(str::to_string)),
        );
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            return out;
        }
    }
}

/// Erasing a user on DynamoDB and SNS (`DELETE /v1/users/{id}`, the intake's role): her journey
/// sends nothing more, her records go, and so does her device's SNS endpoint (which holds its
/// token); what she does after it starts a new profile.
#[tokio::test]
async fn an_erased_user_is_sent_nothing_more_and_her_records_are_gone() {
    let Some(mut h) = Harness::new("erase", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let ann = identify_shopper(&h, "ann").await;
    let bob = identify_shopper(&h, "bob").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.track("bob", "cart_abandoned", "cart-bob-1", cart("c-1002"))
        .await;
    h.run_until(t0 + mins(30)).await;
    let ann_endpoint = h.endpoint_of("ann").await;
    let bob_endpoint = h.endpoint_of("bob").await;
    assert_eq!(h.pushes_to(&ann_endpoint).await.len(), 1);
    let before = fcm_endpoints(&h).await;
    assert!(before.contains(&ann_endpoint) && before.contains(&bob_endpoint));

    // a write key may not erase; the admin key does, and again is no error
    let (status, refused) = h
        .call("DELETE", "/v1/users/ann", None, Some(support::WRITE_KEY))
        .await;
    assert_eq!(status, 401, "{refused}");
    let (status, erased) = h
        .call("DELETE", "/v1/users/ann", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["deleted"]["endpoints"], 1, "{erased}");
    // her endpoint is gone from SNS; bob's is not
    let after = fcm_endpoints(&h).await;
    assert!(!after.contains(&ann_endpoint), "{after:?}");
    assert!(after.contains(&bob_endpoint), "{after:?}");
    let (status, again) = h
        .call("DELETE", "/v1/users/ann", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["deleted"]["endpoints"], 0, "{again}");
    let (status, gone) = h
        .call("GET", "/v1/users/ann", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(status, 404, "{gone}");

    // nothing of hers is left in the table but the bare mark; bob's are untouched
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&h.sdk),
        h.stack.bindings.refs["Table"].clone(),
    );
    let hers = store.query("U#ann", "").await.expect("query");
    assert_eq!(
        hers.iter()
            .map(|r| r.key.sk.to_string())
            .collect::<Vec<_>>(),
        ["P"],
        "only the mark is left: {hers:?}"
    );

    // her email 4 hours on does not go out; bob's does
    h.run_until(t0 + mins(270)).await;
    h.tick().await;
    h.deliver_due().await;
    assert!(h.emails_to(&ann).await.is_empty());
    assert_eq!(h.emails_to(&bob).await.len(), 1);
}

/// Stopping a journey: the scheduler starts a scan of the journey's enrollments; the engine
/// reads its pages from DynamoDB and queues a stop for each active one on the steps queue, then
/// ends them, and nothing more goes out.
#[tokio::test]
async fn a_stopped_journey_ends_its_enrollments_and_sends_nothing_more() {
    let Some(mut h) = Harness::new("stop", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let ann = identify_shopper(&h, "ann").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.run_until(t0 + mins(60)).await;
    let endpoint = h.endpoint_of("ann").await;
    assert_eq!(h.pushes_to(&endpoint).await.len(), 1);

    // An hour in (ann's email is a DynamoDB timer 3.5 hours away), the journey is stopped.
    h.publish_journey(
        "cart_abandonment",
        &format!("{}status: stopped\n", cart_journey()),
    )
    .await;
    // (the functions see it once their 30-second journey cache runs out)
    h.scheduler.catalog.invalidate();
    h.engine.catalog.invalidate();
    let tick = h.tick().await;
    assert_eq!(tick["stops"], 1, "{tick}");
    h.deliver_due().await;
    let view = h.user("ann").await;
    assert_eq!(view["enrollments"][0]["status"], "exited", "{view}");
    assert_eq!(
        view["enrollments"][0]["end_reason"], "journey stopped",
        "{view}"
    );
    assert_eq!(h.tick().await["stops"], 0, "once per stopped version");
    h.run_until(t0 + mins(300)).await;
    assert!(
        h.emails_to(&ann).await.is_empty(),
        "no email after the stop"
    );
}

#[tokio::test]
async fn a_repeated_message_id_enrolls_nobody_twice() {
    let Some(mut h) = Harness::new("dedup", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    identify_shopper(&h, "ann").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.deliver_due().await;
    // The same event again, in another batch, and twice in one batch.
    h.run_until(t0 + mins(1)).await;
    for _ in 0..2 {
        h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
            .await;
    }
    assert!(h.deliver_due().await.is_empty());
    h.run_until(t0 + mins(31)).await;

    let view = h.user("ann").await;
    assert_eq!(
        view["enrollments"].as_array().map(Vec::len),
        Some(1),
        "{view}"
    );
    let endpoint = h.endpoint_of("ann").await;
    assert_eq!(h.pushes_to(&endpoint).await.len(), 1);
    h.tick().await;
    let (_, stats) = h
        .call(
            "GET",
            "/v1/journeys/cart_abandonment/stats",
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(stats["entered"], 1, "{stats}");
}

/// A push endpoint SNS disabled (APNs or FCM refused its token once: an expired certificate)
/// comes back when the app sends the token again: the device is marked good and its endpoint
/// enabled again, so the next push goes out instead of being refused for good.
#[tokio::test]
async fn a_disabled_push_endpoint_is_enabled_again_when_the_app_sends_its_token() {
    let Some(mut h) = Harness::new("revive", at(T0)).await else {
        return;
    };
    let Some(moto) = support::moto_endpoint() else {
        return;
    };
    let sns = aws_sdk_sns::Client::new(&support::sdk_config(&moto).await);
    let t0 = h.now();
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    identify_shopper(&h, "ann").await;
    h.deliver_due().await;
    let endpoint = h.endpoint_of("ann").await;
    let enabled = |sns: aws_sdk_sns::Client, endpoint: String| async move {
        let out = sns
            .get_endpoint_attributes()
            .endpoint_arn(&endpoint)
            .send()
            .await
            .expect("endpoint attributes");
        out.attributes()
            .and_then(|a| a.get("Enabled"))
            .cloned()
            .unwrap_or_default()
    };
    // The platform refused the token: SNS disables the endpoint.
    sns.set_endpoint_attributes()
        .endpoint_arn(&endpoint)
        .attributes("Enabled", "false")
        .send()
        .await
        .expect("disable the endpoint");
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.run_until(t0 + mins(31)).await;
    assert!(h.pushes_to(&endpoint).await.is_empty());
    let view = h.user("ann").await;
    assert_eq!(view["profile"]["devices"][0]["disabled"], true, "{view}");

    // The app starts again and sends its token, as every identify does.
    identify_shopper(&h, "ann").await;
    h.deliver_due().await;
    let view = h.user("ann").await;
    assert!(
        view["profile"]["devices"][0].get("disabled").is_none(),
        "{view}"
    );
    assert_eq!(view["profile"]["devices"][0]["endpoint"], endpoint.as_str());
    assert_eq!(enabled(sns.clone(), endpoint.clone()).await, "true");

    // Her first cart's journey ends (the email four hours after the push); her next cart's
    // push goes out.
    h.run_until(t0 + mins(270)).await;
    h.tick().await;
    h.deliver_due().await;
    h.track("ann", "cart_abandoned", "cart-ann-2", cart("c-1002"))
        .await;
    h.run_until(t0 + mins(270 + 31)).await;
    assert_eq!(h.pushes_to(&endpoint).await.len(), 1);
}

/// An in-app message on Lambda and DynamoDB: in the inbox as the engine wrote it, then read and
/// dismissed through intake as an app reports them (conditional writes on the stored item).
#[tokio::test]
async fn an_in_app_message_is_read_and_dismissed_through_the_api() {
    let Some(mut h) = Harness::new("inbox", at(T0)).await else {
        return;
    };
    h.publish_journey(
        "welcome",
        r#"
id: welcome
name: Welcome
trigger: {event: signed_up}
steps:
  - id: guide
    send:
      in_app:
        title: "Welcome, {{ profile.first_name }}"
        body: "Start here"
        expires: 7d
"#,
    )
    .await;
    h.identify("ann", json!({"first_name": "Ann"})).await;
    h.track("ann", "signed_up", "signup-ann", json!({})).await;
    h.run_until(h.now() + mins(1)).await;

    let (status, listed) = h
        .call("GET", "/v1/users/ann/inbox", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["unread"], 1, "{listed}");
    assert_eq!(listed["messages"][0]["title"], "Welcome, Ann", "{listed}");
    let id = listed["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/v1/users/ann/inbox/{}", id.replace('#', "%23"));

    let (status, read) = h
        .call(
            "POST",
            &format!("{path}/read"),
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["read_at"], h.now().to_string(), "{read}");
    let (_, listed) = h
        .call("GET", "/v1/users/ann/inbox", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(listed["unread"], 0, "{listed}");
    assert_eq!(
        listed["messages"][0]["read_at"],
        h.now().to_string(),
        "{listed}"
    );

    let (status, dismissed) = h
        .call("DELETE", &path, None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(status, 200, "{dismissed}");
    let (_, listed) = h
        .call("GET", "/v1/users/ann/inbox", None, Some(support::ADMIN_KEY))
        .await;
    assert_eq!(listed["messages"], json!([]), "{listed}");
    let (status, missing) = h
        .call(
            "DELETE",
            "/v1/users/ann/inbox/welcome:ann:1%23nothing%231",
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["errors"][0]["field"], "id", "{missing}");
    // The HTTP API hands the path over decoded (`%2F` as `/`, `%23` as `#`): the route's
    // parameters say where each one ends, so a user id holding them is one user.
    let (status, nobody) = h
        .call(
            "GET",
            "/v1/users/a%2Fb%23c%25d",
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(status, 404, "{nobody}");
    assert_eq!(nobody["message"], "no user `a/b#c%d`", "{nobody}");
}

/// An A/B test on Lambda and DynamoDB: the split's paths and holdout, and who of them
/// converted, folded from the timeline records as the stored JSON holds them.
#[tokio::test]
async fn a_splits_paths_and_holdout_are_counted_with_their_conversions() {
    let Some(mut h) = Harness::new("split", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/journeys/streaming_upsell.yaml");
    let upsell = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    h.publish_journey("streaming_upsell", &upsell).await;
    // kim lands on `momentum`, bea in the holdout (a stable hash of user, journey and step).
    for user in ["kim", "bea"] {
        let token = format!("fcm-token-{}-{user}", h.stack.name);
        h.identify(
            user,
            json!({"plan": "free", "push_tokens": [{"platform": "fcm", "token": token}]}),
        )
        .await;
        for n in 1..=3 {
            h.track(
                user,
                "episode_watched",
                &format!("ep-{user}-{n}"),
                json!({"series": "Night Harbour"}),
            )
            .await;
        }
    }
    h.run_until(t0 + mins(10)).await;
    h.track("kim", "subscription_upgraded", "up-kim", json!({}))
        .await;
    h.track("bea", "subscription_upgraded", "up-bea", json!({}))
        .await;
    h.run_until(t0 + mins(20)).await;
    h.tick().await;
    let (_, stats) = h
        .call(
            "GET",
            "/v1/journeys/streaming_upsell/stats",
            None,
            Some(support::ADMIN_KEY),
        )
        .await;
    assert_eq!(stats["entered"], 2, "{stats}");
    assert_eq!(stats["converted"], 2, "{stats}");
    let split = &stats["steps"][0];
    assert_eq!(split["id"], "copy_test", "{stats}");
    assert_eq!(
        split["paths"],
        json!({"features": {"entered": 0, "converted": 0},
               "momentum": {"entered": 1, "converted": 1}}),
        "{stats}"
    );
    assert_eq!(
        split["holdout"],
        json!({"entered": 1, "converted": 1}),
        "{stats}"
    );
    // kim's conversion is credited to the push she got (read back from her timeline records
    // on DynamoDB); bea, held out, got none to credit.
    let credited: Vec<(String, i64)> = stats["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or_default().to_string(),
                        s["converted"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        credited,
        [
            ("copy_test".to_string(), 0),
            ("offer_features".to_string(), 0),
            ("offer_momentum".to_string(), 1),
            ("done".to_string(), 0),
        ],
        "{stats}"
    );
}

/// An invocation near its timeout starts no more messages: it sends the rest back to their
/// queue as new messages, rather than time out and lose the whole batch's answer, and rather
/// than report them (each report spends one of SQS's five receives, so a run of slow batches
/// would send messages that never failed to the dead-letter queue unstarted). An invocation
/// with no time for any message reports them all: sent back, they would come back forever.
#[tokio::test]
async fn a_batch_near_its_timeout_sends_the_rest_back_to_their_queue() {
    let Some(mut h) = Harness::new("deadline", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    identify_shopper(&h, "ann").await;
    identify_shopper(&h, "bob").await;
    h.deliver_due().await;
    let enrolled = |view: Value| {
        view["enrollments"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    };

    // Time for one message of the two: the other is sent back, not reported.
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.track("bob", "cart_abandoned", "cart-bob-1", cart("c-1002"))
        .await;
    h.messages_per_invocation = Some(1);
    assert_eq!(h.deliver_batch().await, Some(Vec::new()), "sent back");
    let first = [enrolled(h.user("ann").await), enrolled(h.user("bob").await)];
    assert_eq!(first.iter().filter(|e| **e).count(), 1, "{first:?}");
    // Its copy comes as a new message, and is applied.
    assert_eq!(h.deliver_batch().await, Some(Vec::new()));
    assert!(enrolled(h.user("ann").await) && enrolled(h.user("bob").await));
    assert!(h.drain("EventsDeadLetterQueue").await.is_empty());

    // No time for a message at all: reported for SQS to deliver again.
    h.messages_per_invocation = None;
    identify_shopper(&h, "cy").await;
    h.deliver_due().await;
    h.track("cy", "cart_abandoned", "cart-cy-1", cart("c-1003"))
        .await;
    h.time_left = Some(handlers::MESSAGE_RESERVE - std::time::Duration::from_secs(1));
    let failed = h.deliver_batch().await.unwrap_or_default();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(!enrolled(h.user("cy").await), "not started");
    // The next invocation, with time to spare, applies it.
    h.time_left = Some(std::time::Duration::from_secs(30));
    h.advance(mins(4)).await;
    assert!(enrolled(h.user("cy").await));
}

/// A message that keeps failing backs off past the queue's longest delay and waits as a
/// timer; the scheduler sends it back to its own queue when due. For an event that is the events
/// queue, which the scheduler's role must allow (the probes refuse what template.yaml does not).
#[tokio::test]
async fn an_events_long_retry_comes_back_through_the_scheduler() {
    let Some(mut h) = Harness::new("long-retry", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    identify_shopper(&h, "ann").await;
    h.deliver_due().await;
    // The cart event's fifth retry, due in 40 minutes: past the 30 minutes a queue hop may wait.
    let event = waymark::event::parse_call(
        waymark::event::Call::Track,
        json!({"userId": "ann", "event": "cart_abandoned", "messageId": "cart-ann-late",
               "properties": cart("c-1001")})
        .to_string()
        .as_bytes(),
        h.now(),
        &waymark::event::Limits::default(),
    )
    .expect("a valid event");
    let due = h.now() + mins(40);
    let retry = Message::Retry {
        attempt: 5,
        at: due,
        message: Box::new(Message::Event(std::sync::Arc::new(event))),
    };
    h.send_raw(
        "EventsQueue",
        &serde_json::to_string(&retry).expect("a message"),
    )
    .await;
    h.deliver_due().await;
    assert!(
        h.user("ann").await["enrollments"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "not applied before it is due"
    );
    h.run_until(due).await;
    h.tick().await;
    h.deliver_due().await;
    let view = h.user("ann").await;
    assert_eq!(
        view["enrollments"][0]["journey"], "cart_abandonment",
        "{view}"
    );
}

#[tokio::test]
async fn a_poison_message_fails_alone_and_ends_in_the_dead_letter_queue() {
    let Some(mut h) = Harness::new("poison", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    identify_shopper(&h, "ann").await;
    h.send_raw("EventsQueue", "{ this is not a message").await;
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    // A well-formed wake-up for an enrollment that does not exist.
    let ghost = json!({"type": "wake", "user_id": "ghost", "journey": "cart_abandonment",
                       "enrollment": "nope", "seq": 1, "at": T0})
    .to_string();
    h.send_raw("StepsQueue", &ghost).await;

    let failed = h.deliver_due().await;
    assert_eq!(
        failed.len(),
        2,
        "the unreadable and the poison message: {failed:?}"
    );
    let view = h.user("ann").await;
    assert_eq!(
        view["enrollments"][0]["journey"], "cart_abandonment",
        "the rest of the batch went through"
    );

    // SQS delivers them again after each visibility timeout, until maxReceiveCount.
    let max = h.stack.max_receive_count("EventsQueue");
    assert_eq!(max, h.stack.max_receive_count("StepsQueue"));
    let mut failures = failed.len();
    for _ in 0..(max + 2) {
        failures += h.advance(mins(4)).await.len();
    }
    assert_eq!(
        failures as i64,
        2 * max,
        "each failed on every one of its receives"
    );
    let dead = h.drain("EventsDeadLetterQueue").await;
    assert_eq!(dead, vec!["{ this is not a message".to_string()]);
    let dead = h.drain("StepsDeadLetterQueue").await;
    assert_eq!(dead, vec![ghost]);
}

#[tokio::test]
async fn ses_bounces_and_complaints_suppress_email() {
    let Some(mut h) = Harness::new("bounce", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let email = identify_shopper(&h, "ann:shop.1").await;
    let bob_email = identify_shopper(&h, "bob").await;
    h.deliver_due().await;

    let out = handlers::engine(
        &h.engine,
        feedback_event(
            &h,
            &[
                ses_notice(
                    "Bounce",
                    "ann:shop.1",
                    &email,
                    json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "General"}}),
                ),
                ses_notice(
                    "Bounce",
                    "bob",
                    &bob_email,
                    json!({"bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull"}}),
                ),
            ],
        ),
        None,
    )
    .await
    .expect("the engine takes SNS feedback");
    assert_eq!(out, Value::Null);

    let ann = h.user("ann:shop.1").await;
    assert_eq!(ann["profile"]["suppressed"]["email"], "bounce", "{ann}");
    let bob = h.user("bob").await;
    assert!(
        bob["profile"]["suppressed"].get("email").is_none(),
        "a soft bounce suppresses nothing: {bob}"
    );

    // Ann's cart journey still pushes, but the email is skipped.
    let t0 = h.now();
    h.track("ann:shop.1", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.run_until(t0 + mins(270)).await;
    h.tick().await;
    h.deliver_due().await;
    assert!(h.emails_to(&email).await.is_empty());
    let view = h.user("ann:shop.1").await;
    let skipped =
        view["timeline"].as_array().into_iter().flatten().any(|e| {
            e["what"] == "skipped" && e["channel"] == "email" && e["reason"] == "suppressed"
        });
    assert!(skipped, "{view}");
}

/// A bounce and a complaint about the address ann had before, arriving after she changed it,
/// leave her new address alone: her cart email goes to it.
#[tokio::test]
async fn a_late_bounce_or_complaint_of_an_old_address_leaves_the_new_one_alone() {
    let Some(mut h) = Harness::new("oldbounce", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    let old = identify_shopper(&h, "ann").await;
    h.deliver_due().await;
    let new = format!("{}-new@shoppers.test", h.stack.name);
    h.identify("ann", json!({"email": new})).await;
    h.deliver_due().await;

    let out = handlers::engine(
        &h.engine,
        feedback_event(
            &h,
            &[
                ses_notice(
                    "Bounce",
                    "ann",
                    &old,
                    json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                                      "bouncedRecipients": [{"emailAddress": old, "action": "failed"}]}}),
                ),
                ses_notice(
                    "Complaint",
                    "ann",
                    &old,
                    json!({"complaint": {"complainedRecipients": [{"emailAddress": old}]}}),
                ),
            ],
        ),
        None,
    )
    .await
    .expect("the engine takes SNS feedback");
    assert_eq!(out, Value::Null);

    let ann = h.user("ann").await;
    assert_eq!(ann["profile"]["traits"]["email"], new.as_str(), "{ann}");
    assert!(
        ann["profile"]["suppressed"].get("email").is_none(),
        "a notice about her old address: {ann}"
    );

    let t0 = h.now();
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.run_until(t0 + mins(270)).await;
    h.tick().await;
    h.deliver_due().await;
    assert_eq!(h.emails_to(&new).await.len(), 1);
    let view = h.user("ann").await;
    let skipped =
        view["timeline"].as_array().into_iter().flatten().any(|e| {
            e["what"] == "skipped" && e["channel"] == "email" && e["reason"] == "suppressed"
        });
    assert!(!skipped, "{view}");
}

/// An SES event publishing notice about `user`'s message to `address`, as SES writes it.
fn ses_notice(kind: &str, user: &str, address: &str, extra: Value) -> Value {
    let mut n = json!({
        "eventType": kind,
        "mail": {"timestamp": "2026-12-01T09:00:00.000Z", "source": "hello@waymark.test",
                 "messageId": "0100-ses", "destination": [address],
                 "tags": {"user_id": [tag_encode(user)], "journey": ["cart_5fabandonment"]}}
    });
    if let (Some(n), Some(extra)) = (n.as_object_mut(), extra.as_object()) {
        n.extend(extra.clone());
    }
    n
}

/// SES notices as the FeedbackTopic subscription delivers them to the engine.
fn feedback_event(h: &Harness, notices: &[Value]) -> Value {
    let records = notices
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut m = SnsMessage::default();
            m.sns_message_type = "Notification".into();
            m.message_id = format!("sns-{i}");
            m.topic_arn = h.stack.bindings.refs["FeedbackTopic"].clone();
            m.timestamp = Default::default();
            m.message = n.to_string();
            let mut r = SnsRecord::default();
            r.event_source = "aws:sns".into();
            r.event_version = "1.0".into();
            r.sns = m;
            r
        })
        .collect();
    let mut event = SnsEvent::default();
    event.records = records;
    serde_json::to_value(&event).unwrap_or_default()
}

/// An SMS opt-out that SNS reports suppresses the number on the scheduler's hourly sync (a pass
/// over SNS's list, a page at a time; moto's list is one page).
#[tokio::test]
async fn sms_opt_outs_reported_by_sns_suppress_the_number() {
    let Some(mut h) = Harness::new("optout", at(T0)).await else {
        return;
    };
    let t0 = h.now();
    // moto keeps a fixed list of opted-out numbers; +447420500600 is on it, +33612345678 is not.
    h.identify("ann", json!({"phone": "+447420500600"})).await;
    h.identify("bob", json!({"phone": "+33612345678"})).await;
    h.deliver_due().await;
    // The scheduler's first minute starts a pass over the list (then one an hour).
    h.run_until(t0 + mins(60)).await;
    let out = h.tick().await;
    assert_eq!(out["sms_opted_out"], 1, "{out}");
    assert_eq!(out["sms_opt_out_pages"], 1, "{out}");
    let ann = h.user("ann").await;
    assert!(
        ann["profile"]["suppressed"]["sms"]
            .as_str()
            .is_some_and(|r| r.contains("opt-out")),
        "{ann}"
    );
    let bob = h.user("bob").await;
    assert!(bob["profile"]["suppressed"]["sms"].is_null(), "{bob}");
    // The pass is over: the minutes after it read nothing, until an hour after it started.
    h.run_until(t0 + mins(119)).await;
    assert_eq!(h.tick().await["sms_opt_out_pages"], 0);
    // Already suppressed: the next hour's pass changes nothing.
    h.run_until(t0 + mins(120)).await;
    let out = h.tick().await;
    assert_eq!(out["sms_opted_out"], 0, "{out}");
    assert_eq!(out["sms_opt_out_pages"], 1, "{out}");
}

/// The AWS requests one enrolled user costs on the cart journey, by phase, function and
/// operation; infra/README.md explains the figures and the bound.
#[tokio::test]
async fn requests_per_enrolled_user_on_the_cart_journey() {
    /// The bound infra/README.md documents: Waymark's own requests for one user, without the
    /// scheduler's per-minute sweep (a fixed cost whatever the number of users).
    const MAX_PER_USER: u64 = 39;
    let Some(mut h) = Harness::new("count", at(T0)).await else {
        return;
    };
    h.publish_journey("cart_abandonment", &cart_journey()).await;
    // Warm the functions' journey caches, as a warm function has them.
    identify_shopper(&h, "warm").await;
    h.deliver_due().await;
    h.run_until(h.now() + mins(1)).await;
    h.probes.reset();

    // One user, each event in its own batch: nothing is shared with other users.
    let t0 = h.now();
    let mut phases: Vec<(&str, BTreeMap<String, u64>)> = Vec::new();
    let mut take = |h: &Harness, phase: &'static str| {
        let mut all = BTreeMap::new();
        for (function, probe) in [
            ("intake", &h.probes.intake),
            ("engine", &h.probes.engine),
            ("scheduler", &h.probes.scheduler),
        ] {
            for (op, n) in probe.counts() {
                all.insert(format!("{function:<9} {op}"), n);
            }
        }
        h.probes.reset();
        phases.push((phase, all));
    };
    let email = identify_shopper(&h, "ann").await;
    h.deliver_due().await;
    take(&h, "identify");
    h.track("ann", "cart_abandoned", "cart-ann-1", cart("c-1001"))
        .await;
    h.deliver_due().await;
    take(&h, "cart_abandoned: enroll, wait 30m");
    h.run_until(t0 + mins(15)).await;
    take(&h, "15 min: the wake-up hops again");
    h.run_until(t0 + mins(30)).await;
    take(&h, "30 min: push, wait 4h (timer)");
    h.run_until(t0 + mins(270)).await;
    h.tick().await;
    take(&h, "4h30: the scheduler's sweep");
    h.deliver_due().await;
    take(&h, "4h30: email, journey completed");
    assert_eq!(h.emails_to(&email).await.len(), 1);

    // The sweep's Query, GetItem (cursors, journeys) and PutItem (cursors) are the scheduler's
    // fixed cost per minute, and its ListPhoneNumbersOptedOut and BatchGetItem the SMS opt-out
    // pass's, once an hour (a page of SNS's list and its numbers, whoever is enrolled); its
    // DeleteItem and SendMessageBatch are this user's timer.
    let fixed = |phase: &str, op: &str| {
        if !phase.contains("sweep") {
            None
        } else if op.ends_with(".Query") || op.ends_with(".GetItem") || op.ends_with(".PutItem") {
            Some("per minute")
        } else if op.ends_with(".ListPhoneNumbersOptedOut") || op.ends_with(".BatchGetItem") {
            Some("per hour")
        } else {
            None
        }
    };
    let mut total = 0;
    let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    for (phase, counts) in &phases {
        lines.push(phase.to_string());
        for (op, n) in counts {
            let note = fixed(phase, op)
                .map(|every| format!("  ({every}, not per user)"))
                .unwrap_or_default();
            lines.push(format!("    {op:<42} {n:>3}{note}"));
            if fixed(phase, op).is_none() {
                total += n;
                *by_op
                    .entry(op.split_whitespace().last().unwrap_or("").to_string())
                    .or_insert(0) += n;
            }
        }
    }
    lines.push("per user, by operation:".into());
    for (op, n) in &by_op {
        lines.push(format!("    {op:<42} {n:>3}"));
    }
    lines.push(format!("per user: {total}"));
    println!("{}", lines.join("\n"));
    assert!(
        total <= MAX_PER_USER,
        "{total} requests per user, over the documented {MAX_PER_USER}:\n{}",
        lines.join("\n")
    );
}

/// A send's claim on DynamoDB: one TransactWriteItems, its Put conditioned as any write and a
/// ConditionCheck that her profile is not sealed (her erasure under way, or its mark). Written
/// when her profile is live, or when she has none; `Conflict` when the claim's own condition
/// fails (whatever her profile), `Sealed` when only her profile's does, and then nothing is
/// written. The seal is written and read back with the record, and a put without it drops it.
#[tokio::test]
async fn a_claim_is_written_unless_her_profile_is_sealed_on_dynamodb() {
    let Some(endpoint) = support::moto_endpoint() else {
        return;
    };
    let sdk = support::sdk_config(&endpoint).await;
    let stack = support::Stack::create(&sdk, "seal").await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.bindings.refs["Table"].clone(),
    );
    let profile = Key::new("U#ann", "P");
    let claim = |sk: &str, version: u64| {
        Record::new(Key::new("U#ann", sk), version, &json!({"state": "claimed"})).expect("record")
    };

    // No profile at all (a user known only by her enrollments): the claim is written.
    store
        .put_unless_sealed(&claim("L#a", 1), Expect::Absent, &profile)
        .await
        .expect("a claim with no profile");
    // A live profile: written.
    let live = Record::new(profile.clone(), 1, &json!({"user_id": "ann"})).expect("record");
    store.put(&live, Expect::Absent).await.expect("profile");
    assert_eq!(
        store.get(&profile).await.expect("get").map(|r| r.sealed),
        Some(false)
    );
    store
        .put_unless_sealed(&claim("L#b", 1), Expect::Absent, &profile)
        .await
        .expect("a claim on a live profile");
    // The claim's own condition fails: a conflict.
    assert_eq!(
        store
            .put_unless_sealed(&claim("L#b", 1), Expect::Absent, &profile)
            .await,
        Err(StoreError::Conflict)
    );
    // A lapsed claim taken over on its version: written.
    store
        .put_unless_sealed(&claim("L#b", 2), Expect::Version(1), &profile)
        .await
        .expect("a claim taken over");

    // Her profile sealed (her erasure's mark): read back sealed.
    let mark = Record::new(
        profile.clone(),
        2,
        &json!({"user_id": "ann", "erased_at": "2026-12-01T10:00:00Z"}),
    )
    .expect("record")
    .sealing(true);
    store.put(&mark, Expect::Version(1)).await.expect("mark");
    assert_eq!(store.get(&profile).await, Ok(Some(mark.clone())));
    // A new claim, and a take-over, are refused as sealed, and write nothing.
    assert_eq!(
        store
            .put_unless_sealed(&claim("L#c", 1), Expect::Absent, &profile)
            .await,
        Err(StoreError::Sealed)
    );
    assert_eq!(store.get(&Key::new("U#ann", "L#c")).await, Ok(None));
    assert_eq!(
        store
            .put_unless_sealed(&claim("L#b", 3), Expect::Version(2), &profile)
            .await,
        Err(StoreError::Sealed)
    );
    assert_eq!(
        store
            .get(&Key::new("U#ann", "L#b"))
            .await
            .expect("get")
            .map(|r| r.version),
        Some(2)
    );
    // Both conditions failing is a conflict: the ledger says what the send came to.
    assert_eq!(
        store
            .put_unless_sealed(&claim("L#b", 1), Expect::Absent, &profile)
            .await,
        Err(StoreError::Conflict)
    );

    // A profile written over the mark without the seal (a new one's) is not sealed: claims go.
    let new = Record::new(profile.clone(), 3, &json!({"user_id": "ann"})).expect("record");
    store
        .put(&new, Expect::Version(2))
        .await
        .expect("new profile");
    assert_eq!(
        store.get(&profile).await.expect("get").map(|r| r.sealed),
        Some(false)
    );
    store
        .put_unless_sealed(&claim("L#c", 1), Expect::Absent, &profile)
        .await
        .expect("a claim on her new profile");
}

#[tokio::test]
async fn the_store_keeps_its_contract_on_dynamodb() {
    let Some(endpoint) = support::moto_endpoint() else {
        return;
    };
    let sdk = support::sdk_config(&endpoint).await;
    let stack = support::Stack::create(&sdk, "store").await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        stack.bindings.refs["Table"].clone(),
    );
    let key = Key::new("U#ann", "P");
    let r1 = Record::new(key.clone(), 1, &json!({"n": 1})).expect("record");
    store.put(&r1, Expect::Absent).await.expect("first write");
    assert_eq!(
        store.put(&r1, Expect::Absent).await,
        Err(StoreError::Conflict)
    );
    let r2 = Record::new(key.clone(), 2, &json!({"n": 2})).expect("record");
    assert_eq!(
        store.put(&r2, Expect::Version(7)).await,
        Err(StoreError::Conflict)
    );
    store
        .put(&r2, Expect::Version(1))
        .await
        .expect("versioned write");
    let expiring = Record::new(Key::new("U#ann", "D#m1"), 1, &Value::Null)
        .expect("record")
        .expiring(at("2027-01-01T00:00:00Z"));
    store.put(&expiring, Expect::Any).await.expect("write");
    assert_eq!(store.get(&key).await, Ok(Some(r2.clone())));
    assert_eq!(
        store
            .get(&expiring.key)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.expires),
        Some(at("2027-01-01T00:00:00Z").as_second())
    );
    assert_eq!(
        store.delete(&key, Expect::Version(1)).await,
        Err(StoreError::Conflict)
    );

    // A rendered marketing email in an enrollment's outbox: tens of KB of HTML, stored
    // deflated (DynamoDB bills writes per KB) and read back whole, by GetItem and by Query.
    let rows = "<tr><td class=\"name\">Trail shoes</td><td class=\"price\">79.90 EUR</td></tr>\n"
        .repeat(800);
    let big = Record::new(
        Key::new("U#ann", "E#newsletter"),
        1,
        &json!({"outbox": [{"html": rows, "text": "Trail shoes 79.90 EUR\n".repeat(800)}]}),
    )
    .expect("record");
    let json_len = big.body.json().expect("json").len();
    store.put(&big, Expect::Absent).await.expect("large write");
    assert_eq!(store.get(&big.key).await, Ok(Some(big.clone())));
    let item = aws_sdk_dynamodb::Client::new(&sdk)
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("U#ann".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("E#newsletter".into()),
        )
        .send()
        .await
        .expect("raw get")
        .item
        .expect("the item");
    assert!(
        !item.contains_key("b"),
        "a large body is not stored as it is"
    );
    let stored = item
        .get("z")
        .and_then(|z| z.as_b().ok())
        .map(|z| z.as_ref().len());
    assert!(
        stored.is_some_and(|n| n * 10 < json_len),
        "{json_len} bytes of JSON stored as {stored:?}"
    );
    let found = store.query("U#ann", "E#news").await.expect("query");
    assert_eq!(found, vec![big.clone()]);
    store
        .delete(&big.key, Expect::Version(1))
        .await
        .expect("delete");

    // 150 keys (and a repeated one, and a missing one) through BatchGetItem's 100-key pages.
    let mut keys = Vec::new();
    for i in 0..150 {
        let k = Key::new(format!("U#u{i:03}"), "P");
        store
            .put(
                &Record::new(k.clone(), 1, &json!({"i": i})).expect("record"),
                Expect::Any,
            )
            .await
            .expect("write");
        keys.push(k);
    }
    keys.push(keys[0].clone());
    keys.push(Key::new("U#nobody", "P"));
    let mut got = store.get_many(&keys).await.expect("get_many");
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got.len(), 150);

    // Prefix queries, in sort-key order.
    for sk in ["E#b", "E#a", "L#x", "T#1"] {
        store
            .put(
                &Record::new(Key::new("U#ann", sk), 1, &json!(sk)).expect("record"),
                Expect::Any,
            )
            .await
            .expect("write");
    }
    let e: Vec<String> = store
        .query("U#ann", "E#")
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.key.sk.to_string())
        .collect();
    assert_eq!(e, ["E#a", "E#b"]);
    assert_eq!(store.query("U#ann", "").await.expect("query").len(), 6);

    // Folds: records listed under a fold partition (the `fold` index), counted in one
    // transaction with counters whose names DynamoDB would not take as attribute names.
    let (t1, t2) = (Key::new("U#ann", "T#f1"), Key::new("U#bob", "T#f2"));
    for k in [&t1, &t2] {
        let r = Record::new(k.clone(), 1, &json!([]))
            .expect("record")
            .pending_in("F#3");
        store.put(&r, Expect::Absent).await.expect("write");
    }
    let mut listed: Vec<Key> = store
        .pending("F#3", 10)
        .await
        .expect("pending")
        .into_iter()
        .map(|r| r.key)
        .collect();
    listed.sort();
    assert_eq!(listed, [t1.clone(), t2.clone()]);
    assert_eq!(
        store
            .get(&t1)
            .await
            .expect("get")
            .and_then(|r| r.pending)
            .as_deref(),
        Some("F#3")
    );
    let c = Key::new("S#cart", "C");
    let deltas = BTreeMap::from([
        ("entered".to_string(), 2),
        ("step.wait_30m.entered".to_string(), 1),
    ]);
    store
        .fold(std::slice::from_ref(&t1), &[(c.clone(), deltas.clone())])
        .await
        .expect("fold");
    // Folding t1 again, even with t2, fails as a whole and changes nothing.
    assert_eq!(
        store
            .fold(&[t2.clone(), t1.clone()], &[(c.clone(), deltas.clone())])
            .await,
        Err(StoreError::Conflict)
    );
    store
        .fold(std::slice::from_ref(&t2), &[(c.clone(), deltas.clone())])
        .await
        .expect("fold");
    let counters = store.counters(&c).await.expect("counters");
    assert_eq!(counters["entered"], 4);
    assert_eq!(counters["step.wait_30m.entered"], 2);
    assert_eq!(store.get(&c).await, Ok(None), "counters are not a record");
    // A journey's counter items added up in one read: a second item, a key named twice, a
    // missing key and a record without counters.
    let c1 = Key::new("S#cart", "C#1");
    let t3 = Key::new("U#cid", "T#f3");
    store
        .put(
            &Record::new(t3.clone(), 1, &json!([]))
                .expect("record")
                .pending_in("F#1"),
            Expect::Absent,
        )
        .await
        .expect("write");
    store
        .fold(
            std::slice::from_ref(&t3),
            &[(c1.clone(), BTreeMap::from([("entered".to_string(), 5)]))],
        )
        .await
        .expect("fold");
    let sum = store
        .counters_sum(&[
            c.clone(),
            c1.clone(),
            c.clone(),
            Key::new("S#none", "C"),
            t1.clone(),
        ])
        .await
        .expect("counters_sum");
    assert_eq!(
        sum,
        BTreeMap::from([
            ("entered".to_string(), 9),
            ("step.wait_30m.entered".to_string(), 2)
        ])
    );
    assert!(store.pending("F#3", 10).await.expect("pending").is_empty());
    assert_eq!(
        store.get(&t1).await.expect("get").map(|r| r.pending),
        Some(None),
        "a folded record stays, off the list"
    );

    // A record folded in parts: each part in its turn only (the record notes how many are
    // counted), the last taking it off the list; a put of the record starts its parts over.
    let t4 = Key::new("U#dee", "T#f4");
    let listed_t4 = |version| {
        Record::new(t4.clone(), version, &json!([]))
            .expect("record")
            .pending_in("F#4")
    };
    store
        .put(&listed_t4(1), Expect::Absent)
        .await
        .expect("write");
    let c4 = Key::new("S#burst", "C#4");
    let part = |n: u32, last: bool| {
        let (store, t4, c4) = (store.clone(), t4.clone(), c4.clone());
        async move {
            let deltas = BTreeMap::from([("sent".to_string(), 1_i64 << n)]);
            store.fold_part(&t4, n, last, &[(c4, deltas)]).await
        }
    };
    assert_eq!(part(1, false).await, Err(StoreError::Conflict));
    part(0, false).await.expect("part 0");
    assert_eq!(part(0, false).await, Err(StoreError::Conflict));
    assert_eq!(part(2, true).await, Err(StoreError::Conflict));
    part(1, false).await.expect("part 1");
    let listed = store.pending("F#4", 10).await.expect("pending");
    // (read with the count of its parts counted, for the next fold to go on from)
    assert_eq!(
        listed.iter().map(|r| r.parts_counted).collect::<Vec<_>>(),
        [2]
    );
    let read = store.get(&t4).await.expect("get").expect("the record");
    assert_eq!(read.parts_counted, 2);
    part(2, true).await.expect("part 2");
    assert!(store.pending("F#4", 10).await.expect("pending").is_empty());
    assert_eq!(part(2, true).await, Err(StoreError::Conflict));
    assert_eq!(store.counters(&c4).await.expect("counters")["sent"], 7);
    let stored = store.get(&t4).await.expect("get").expect("the record");
    assert_eq!(
        (stored.version, stored.pending, stored.parts_counted),
        (1, None, 0)
    );
    store
        .put(&listed_t4(2), Expect::Version(1))
        .await
        .expect("write");
    part(0, true).await.expect("part 0 of the new record");
    assert_eq!(store.counters(&c4).await.expect("counters")["sent"], 8);

    // A listed record whose item leaves no room for the count of its parts (`fp`) under
    // 400 KB is refused by the adapter, before DynamoDB sees it: taken, a fold in parts
    // could not note its progress on it, and its partition would fail every minute.
    let (body, fixed) = near_400_kb();
    let near = |under: usize| {
        let sk = format!("T#{}", "x".repeat(409_600 - under - fixed - 2));
        Record::new(Key::new("U#ann", sk), 1, &body)
            .expect("record")
            .pending_in("F#0")
    };
    let r = near(10);
    let got = store.put(&r, Expect::Absent).await;
    assert!(
        matches!(&got, Err(StoreError::Corrupt(why)) if why.contains("`fp`")),
        "{got:?}"
    );
    assert_eq!(store.get(&r.key).await.expect("get"), None);

    // Segments split the profiles (the 150 and Ann's) between them; pages of at most 10 items
    // read go on from each other's last key.
    let mut seen = Vec::new();
    let mut pages = 0;
    for segment in 0..4 {
        let mut start: Option<Key> = None;
        loop {
            let page = store
                .scan("P", segment, 4, start.as_ref(), 10)
                .await
                .expect("scan");
            pages += 1;
            assert!(page.records.len() <= 10);
            seen.extend(page.records.into_iter().map(|r| r.key.pk));
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
    }
    assert!(pages > 4, "{pages} pages: the scan was not paged");
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!((before, seen.len()), (151, 151));
}

/// A JSON body the DynamoDB adapter stores deflated, and the size of a listed record's item
/// holding it less its sort key: `pk` and `U#ann`, `sk`, `v` and a number at most, `z` and
/// the deflated body, `f` and `F#0`.
fn near_400_kb() -> (String, usize) {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let body: String = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x >> 58) as u8)
        })
        .collect();
    let json = serde_json::to_vec(&body).expect("json");
    let stored = miniz_oxide::deflate::compress_to_vec(&json, 6).len();
    assert!(stored < json.len());
    (body, 2 + 5 + 2 + 1 + 21 + 1 + stored + 1 + 3)
}

#[tokio::test]
async fn the_queue_sends_in_batches_of_ten_and_256_kb() {
    let Some(endpoint) = support::moto_endpoint() else {
        return;
    };
    let sdk = support::sdk_config(&endpoint).await;
    let stack = support::Stack::create(&sdk, "queue").await;
    let client = aws_sdk_sqs::Client::new(&sdk);
    let queue = SqsQueue::new(client, stack.url("EventsQueue"), stack.url("StepsQueue"));
    let wake = |i: u64, pad: usize| Outbound {
        message: Message::Wake {
            user_id: "x".repeat(pad).into(),
            journey: "j".into(),
            enrollment: format!("e{i}").into(),
            seq: i,
            at: at(T0),
        },
        delay_secs: 0,
    };
    let small: Vec<Outbound> = (0..23).map(|i| wake(i, 1)).collect();
    queue.send(QueueName::Steps, &small).await.expect("send");
    // Three messages of 100 KB: two batches by size.
    let big: Vec<Outbound> = (100..103).map(|i| wake(i, 100 * 1024)).collect();
    queue.send(QueueName::Steps, &big).await.expect("send big");
    let too_big = [wake(200, 300 * 1024)];
    assert!(queue.send(QueueName::Steps, &too_big).await.is_err());

    let reader = aws_sdk_sqs::Client::new(&sdk);
    let mut n = 0;
    loop {
        let out = reader
            .receive_message()
            .queue_url(stack.url("StepsQueue"))
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let parsed: Message = serde_json::from_str(m.body().unwrap_or("")).expect("a Message");
            assert!(matches!(parsed, Message::Wake { .. }));
            n += 1;
        }
    }
    assert_eq!(n, 26);
}

/// A webhook receiver on a loopback port: answers one call with each status in turn, then
/// hands back the requests it read (head and body).
async fn webhook_receiver<const N: usize>(
    statuses: [&'static str; N],
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for status in statuses {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.expect("read");
            seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(answer.as_bytes()).await.expect("write");
        }
        seen
    });
    (addr, server)
}

/// A send whose receiver is down for a while, end to end over SQS and DynamoDB: the webhook
/// answers 503 twice; the engine queues the message that owes it again itself (a retry on the
/// steps queue, its delay in SQS), so the Lambda reports no failure and SQS's five receives
/// are never used up; the third call, minutes later, goes through, with the same
/// Idempotency-Key each time.
#[tokio::test]
async fn a_send_that_fails_is_retried_by_the_engine_through_sqs_until_it_goes_through() {
    let Some(mut h) = Harness::new("retry", at(T0)).await else {
        return;
    };
    let (addr, server) = webhook_receiver([
        "503 Service Unavailable",
        "503 Service Unavailable",
        "200 OK",
    ])
    .await;
    let t0 = h.now();
    h.publish_journey(
        "crm_sync",
        &format!(
            "id: crm_sync\nname: CRM sync\ntrigger: {{event: signed_up}}\nsteps:\n  - id: tell_crm\n    send:\n      webhook:\n        url: \"http://{addr}/users/{{{{ user_id }}}}\"\n        method: POST\n        body: '{{\"plan\": \"{{{{ event.plan }}}}\"}}'\n"
        ),
    )
    .await;
    h.track("ann", "signed_up", "signup-ann", json!({"plan": "pro"}))
        .await;
    let failed = h.run_until(t0 + mins(30)).await;
    assert!(failed.is_empty(), "SQS saw no failure: {failed:?}");
    let seen = server.await.expect("the receiver saw three calls");
    let keys: Vec<&str> = seen
        .iter()
        .filter_map(|r| r.lines().find(|l| l.starts_with("idempotency-key: ")))
        .collect();
    assert_eq!(keys.len(), 3, "{seen:?}");
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert!(seen[2].ends_with(r#"{"plan": "pro"}"#), "{}", seen[2]);
    let view = h.user("ann").await;
    let sent = view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"] == "sent" && e["channel"] == "webhook")
        .count();
    assert_eq!(sent, 1, "{view}");
}

#[tokio::test]
async fn webhooks_say_whether_a_retry_may_help() {
    use waymark::provider::{SendError, Sender};

    let (addr, server) =
        webhook_receiver(["200 OK", "503 Service Unavailable", "404 Not Found"]).await;
    let conf =
        |b: aws_sdk_sesv2::config::Builder| b.region(aws_config::Region::new("us-east-1")).build();
    let sender = waymark::aws::AwsSender::new(
        aws_sdk_sesv2::Client::from_conf(conf(
            aws_sdk_sesv2::config::Builder::new()
                .behavior_version(aws_config::BehaviorVersion::latest()),
        )),
        aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::new()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .build(),
        ),
        Default::default(),
    );
    let hook = |n: u32| waymark::engine::Outgoing {
        enrollment: "e1".into(),
        journey: "j".into(),
        version: 1,
        user_id: "ann".into(),
        step: "notify".into(),
        seq: u64::from(n),
        channel: waymark::journey::Channel::Webhook,
        to: waymark::profile::Address::One("ann".into()),
        content: std::sync::Arc::new(waymark::engine::Content::Webhook {
            url: format!("http://{addr}/hooks/cart"),
            method: "post".into(),
            headers: BTreeMap::from([("x-waymark".to_string(), "1".to_string())]),
            body: Some(r#"{"user":"ann"}"#.into()),
            secrets: Vec::new(),
        }),
        transactional: false,
        locale: None,
        timezone: None,
    };
    assert!(sender.send(&hook(1)).await.is_ok());
    assert!(matches!(
        sender.send(&hook(2)).await,
        Err(SendError::Retryable(_))
    ));
    assert!(matches!(
        sender.send(&hook(3)).await,
        Err(SendError::Permanent(_))
    ));
    let seen = server.await.expect("server");
    assert!(
        seen[0].starts_with("POST /hooks/cart HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("x-waymark: 1"));
    assert!(seen[0].ends_with(r#"{"user":"ann"}"#), "{}", seen[0]);
    // the send's ledger key, so that the receiver can drop a repeat
    assert!(
        seen[0].contains(&format!("idempotency-key: {}\r\n", hook(1).ledger_key())),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains(&format!("idempotency-key: {}\r\n", hook(2).ledger_key())),
        "{}",
        seen[1]
    );
}

/// The deployed sender puts a webhook's secrets in right before the call, encoded for where
/// each lands, and only there; a call missing one is retried, one whose header value would
/// break the request is refused for good, neither calling.
#[tokio::test]
async fn the_webhook_sender_puts_secrets_in_the_request_alone() {
    use waymark::provider::{SendError, Sender};
    use waymark::secrets::{marker, LocalSecrets};

    let (addr, server) = webhook_receiver(["200 OK"]).await;
    let conf = aws_sdk_sesv2::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let sns = aws_sdk_sns::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let sender = waymark::aws::AwsSender::new(
        aws_sdk_sesv2::Client::from_conf(conf),
        aws_sdk_sns::Client::from_conf(sns),
        Default::default(),
    )
    .with_secrets(std::sync::Arc::new(LocalSecrets::new([
        ("KEY", "sk_live_1"),
        ("SIG", "a \"b\" \\ c&d"),
        ("BROKEN", "x\r\nX-Evil: 1"),
    ])));
    let hook = |n: u64, header: &str| waymark::engine::Outgoing {
        enrollment: "e1".into(),
        journey: "j".into(),
        version: 1,
        user_id: "ann".into(),
        step: "notify".into(),
        seq: n,
        channel: waymark::journey::Channel::Webhook,
        to: waymark::profile::Address::One("ann".into()),
        content: std::sync::Arc::new(waymark::engine::Content::Webhook {
            url: format!("http://{addr}/grants?sig={}", marker("SIG")),
            method: "POST".into(),
            headers: BTreeMap::from([(
                "authorization".to_string(),
                format!("Bearer {}", marker(header)),
            )]),
            body: Some(format!(r#"{{"sig":"{}"}}"#, marker("SIG"))),
            secrets: vec!["SIG".to_string(), header.to_string()],
        }),
        transactional: false,
        locale: None,
        timezone: None,
    };
    // A secret missing is retried (an operator may add it to the parameter); one that would
    // break the request is refused for good.
    match sender.send(&hook(2, "GONE")).await {
        Err(SendError::Retryable(why)) => assert!(why.contains("`GONE` has no value"), "{why}"),
        other => panic!("GONE: {other:?}"),
    }
    match sender.send(&hook(2, "BROKEN")).await {
        Err(SendError::Permanent(why)) => {
            assert!(why.contains("`BROKEN` cannot go in"), "{why}");
            assert!(!why.contains("X-Evil"), "{why}");
        }
        other => panic!("BROKEN: {other:?}"),
    }
    assert!(sender.send(&hook(1, "KEY")).await.is_ok());
    let seen = server.await.expect("server");
    assert_eq!(seen.len(), 1, "the refused calls made no request");
    assert!(
        seen[0].starts_with("POST /grants?sig=a%20%22b%22%20%5C%20c%26d HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("authorization: Bearer sk_live_1\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].ends_with(r#"{"sig":"a \"b\" \\ c&d"}"#),
        "{}",
        seen[0]
    );
}

/// The engine's webhook secrets come from one SSM SecureString, a JSON object: read when first
/// needed, and none at all while the parameter does not exist.
#[tokio::test]
async fn webhook_secrets_are_read_from_one_ssm_parameter() {
    use waymark::secrets::WebhookSecrets;
    let Some(endpoint) = support::moto_endpoint() else {
        return;
    };
    let sdk = support::sdk_config(&endpoint).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = format!("/hooks-{}/webhook-secrets", std::process::id());
    let secrets = waymark::aws::secrets::SsmSecrets::ssm(ssm.clone(), name.clone());
    assert_eq!(secrets.secret("KEY").await, Ok(None), "no parameter yet");
    ssm.put_parameter()
        .name(&name)
        .value(r#"{"KEY": "sk_live_1", "OTHER": "o"}"#)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put the parameter");
    // A parameter not found is looked for again after 30 seconds: a fresh adapter reads it now.
    let secrets = waymark::aws::secrets::SsmSecrets::ssm(ssm, name);
    assert_eq!(secrets.secret("KEY").await, Ok(Some("sk_live_1".into())));
    assert_eq!(secrets.secret("NONE").await, Ok(None));
}

/// The `id`s of the emails' `sent` entries of a user's timeline (`GET /v1/users/{id}`).
fn emails_sent_ids(view: &serde_json::Value) -> Vec<String> {
    view["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["what"] == "sent" && e["channel"] == "email")
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}
