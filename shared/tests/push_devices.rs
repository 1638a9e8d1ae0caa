//! Push devices sent the Segment way: Segment's mobile libraries send the device's APNs or FCM
//! token as `context.device.token` with every call once the app has one, and the event registers
//! it as a push device of its user, as an identify's `push_tokens` entry would; sent again, it
//! costs nothing.

mod support;

use support::faulty::faulty_harness;
use support::{at, example_journey, facts, outbox, sim, Harness};
use waymark::timeline::What;

const IOS: &str = r#""context":{"device":{"type":"ios","token":"apns-ann"},"os":{"name":"iOS"}}"#;
const ANDROID: &str =
    r#""context":{"device":{"type":"android","token":"fcm-ann"},"os":{"name":"Android"}}"#;

/// The cart of `user`, sent from her device with `context`, at 10:00.
fn cart(user: &str, context: &str) -> String {
    format!(
        r#"{{"at":"2026-12-01T10:00:00Z","type":"track","userId":"{user}","event":"cart_abandoned","messageId":"cart-{user}","properties":{{"cart_id":"c-1","total":89.9,"currency":"EUR","items":[{{"name":"Trail shoes","price":79.9,"stock":3}}]}},{context}}}"#
    )
}

const PUSH: &str = "2026-12-01T10:30:00Z ann push push_reminder: You left something in your cart";

/// The repro: an identify without `push_tokens`, then the cart from an iPhone (or an Android
/// phone) whose token rides in the context: the push 30 minutes on reaches it.
#[tokio::test]
async fn a_track_with_the_devices_token_makes_the_push_reachable() {
    for context in [IOS, ANDROID] {
        let script = [
            r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann"}}"#.to_string(),
            cart("ann", context),
        ]
        .join("\n");
        let out = sim(&[&example_journey("cart_abandonment")], &script).await;
        let sent = outbox(&out);
        assert_eq!(sent.first().map(String::as_str), Some(PUSH), "{context}");
    }
}

/// A token whose platform cannot be told registers nothing: the push is skipped for want of an
/// address, and her timeline says what was not kept and why.
#[tokio::test]
async fn a_token_of_no_known_platform_is_not_kept_and_said() {
    let script = [
        r#"{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann"}}"#.to_string(),
        cart("ann", r#""context":{"device":{"token":"tok-x"}}"#),
    ]
    .join("\n");
    let out = sim(&[&example_journey("cart_abandonment")], &script).await;
    let said = facts(&out, "ann", |w| {
        matches!(w, What::NotKept { .. } | What::Skipped { .. })
    });
    assert!(
        said[0].starts_with("2026-12-01T10:00:00Z /-: not kept: context.device.token = (not shown) (is a push token of a platform Waymark cannot tell (no context.device.type, no context.os.name)")
            && said[0].ends_with("no push device was registered)"),
        "{said:?}"
    );
    assert_eq!(
        said[1],
        "2026-12-01T10:30:00Z cart_abandonment/push_reminder: skipped push: no_address"
    );
}

/// The app sends the token with every event: after the first, an event carrying it writes no
/// more than the same event without it (its dedup marker), and reads no more.
#[tokio::test]
async fn the_same_token_again_costs_nothing() {
    let (h, faulty) = faulty_harness();
    h.publish(&example_journey("cart_abandonment")).await;
    let opened = |id: &str, context: &str| {
        format!(
            r#"{{"at":"2026-12-01T09:10:00Z","type":"track","userId":"ann","event":"app_opened","messageId":"{id}"{context}}}"#
        )
    };
    // Her first event brings the device: her profile, and the device's claim.
    h.play(&opened("o-0", &format!(",{IOS}"))).await;
    let first = faulty.take_calls();
    h.play(&opened("o-1", "")).await;
    let without = faulty.take_calls();
    h.play(&opened("o-2", &format!(",{IOS}"))).await;
    let again = faulty.take_calls();
    println!("store calls: first {first:?}; without the token {without:?}; again {again:?}");
    assert_eq!(
        without.get("put"),
        Some(&1),
        "its dedup marker: {without:?}"
    );
    assert_eq!(again, without);
    assert!(first.get("put") > without.get("put"), "{first:?}");
    let view = h.rt.user("ann").await.expect("ann");
    let devices = view.profile.expect("profile").devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (&*devices[0].platform, &*devices[0].token),
        ("apns", "apns-ann")
    );
}

/// A visitor's device (her token sent before she logs in) is hers at the login, as a device
/// her visitor's `push_tokens` registered would be; and a second person logging in on the
/// shared phone takes it: pushes go to whoever registered it last.
#[tokio::test]
async fn a_visitors_device_moves_to_her_and_a_shared_phone_to_its_latest_user() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&example_journey("cart_abandonment")).await;
    h.play(&format!(
        r#"{{"at":"2026-12-01T09:00:00Z","type":"screen","anonymousId":"dev-1","name":"Home","messageId":"s-1",{IOS}}}
{{"at":"2026-12-01T09:30:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"login-1","traits":{{"first_name":"Ann"}}}}
{}"#,
        cart("ann", r#""context":{}"#)
    ))
    .await;
    h.advance_to(at("2026-12-01T10:31:00Z")).await;
    assert_eq!(h.outbox(), [PUSH]);
    let tokens = |p: Option<waymark::profile::Profile>| -> Vec<String> {
        p.map(|p| p.devices.into_iter().map(|d| d.token).collect())
            .unwrap_or_default()
    };
    let ann = h.rt.user("ann").await.expect("ann");
    assert_eq!(tokens(ann.profile), ["apns-ann"]);

    // Bob logs in on her phone: the device is his now, no longer hers.
    h.play(&format!(
        r#"{{"at":"2026-12-01T11:00:00Z","type":"track","userId":"bob","event":"app_opened","messageId":"b-1",{IOS}}}"#
    ))
    .await;
    let ann = h.rt.user("ann").await.expect("ann");
    let bob = h.rt.user("bob").await.expect("bob");
    assert_eq!(tokens(ann.profile), Vec::<String>::new());
    assert_eq!(tokens(bob.profile), ["apns-ann"]);
}
