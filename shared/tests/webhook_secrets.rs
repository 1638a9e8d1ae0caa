//! `{{ secrets.NAME }}` in a webhook: validate allows it only in a call's URL (after its host),
//! headers and body; the engine stores a marker, never the value; the sender (here the local
//! outbox, as `waymark dev` and `waymark simulate` run it) needs a value for each, and a call
//! missing one is skipped saying which.

mod support;

use std::sync::{Arc, Mutex};

use support::view::{api, user_view};
use support::Harness;
use waymark::engine::Content;
use waymark::outbox::{OutboxLine, OutboxSender};
use waymark::secrets::{marker, LocalSecrets};
use waymark::timeline::What;

const REWARD: &str = r#"
id: reward
name: Reward grant
trigger: {event: level_up}
steps:
  - id: grant
    send:
      webhook:
        url: "https://rewards.example.com/v1/grants?user={{ user_id | urlencode }}&key={{ secrets.URL_KEY }}"
        headers: {Authorization: "Bearer {{ secrets.REWARDS_KEY }}"}
        body: '{"user": {{ user_id | tojson }}, "sig": "{{ secrets.SIGNING }}", "name": {{ profile.name | tojson }}}'
  - id: settle
    wait: 3d
  - id: audit
    send:
      webhook:
        url: "https://audit.example.com/log"
        headers: {X-Audit-Key: "{{ secrets.AUDIT_KEY }}"}
"#;

/// The values: none of them may be found in anything stored, shown or written.
const VALUES: [(&str, &str); 3] = [
    ("REWARDS_KEY", "sk_live_rewards_9f2c"),
    ("URL_KEY", "uk_live_7a1b"),
    // Plain: a quote or a backslash would be escaped in a dump, and not found even if there.
    ("SIGNING", "sig_live_55d0"),
];

/// A harness whose outbox takes its secrets from `secrets`, and the outbox's lines.
fn harness(secrets: LocalSecrets) -> (Harness, Arc<Mutex<Vec<OutboxLine>>>) {
    let h = Harness::new("2026-03-01T00:00:00Z");
    let (sender, lines) = OutboxSender::memory(h.clock.clone());
    let sender = sender.with_secrets(Arc::new(secrets));
    let store = Arc::new(h.store.clone());
    (h.with(store, Arc::new(sender)), lines)
}

#[tokio::test]
async fn a_secret_reaches_no_record_no_view_and_no_outbox_line() {
    let (h, lines) = harness(LocalSecrets::new(VALUES));
    h.publish(REWARD).await;
    h.play(
        r#"{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"zoë/1","traits":{"name":"Zoë"}}
{"at":"2026-03-01T01:00:00Z","userId":"zoë/1","event":"level_up","properties":{"level":12}}"#,
    )
    .await;
    // The enrollment is waiting (`settle`): its record still holds the transition's outbox.
    let stored = format!("{:?}", h.store.dump());
    let (status, _, view) = user_view(&api(&h), "zo%C3%AB%2F1").await;
    assert!(status.is_success(), "{status}: {view}");
    let outbox: Vec<String> = lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|l| serde_json::to_string(l).expect("a line"))
        .collect();
    for (name, value) in VALUES {
        for (place, text) in [("store", &stored), ("user view", &view)] {
            assert!(!text.contains(value), "{name}'s value in the {place}");
        }
        assert!(
            outbox.iter().all(|l| !l.contains(value)),
            "{name}'s value in the outbox: {outbox:?}"
        );
    }
    // The record keeps the marker; the outbox shows it as it was written.
    assert!(stored.contains("REWARDS_KEY"), "the marker is kept");
    let sent = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sent.len(), 1, "{outbox:?}");
    let Content::Webhook {
        url, headers, body, ..
    } = sent[0].content.as_ref()
    else {
        panic!("a webhook: {:?}", sent[0].content);
    };
    assert_eq!(
        url,
        "https://rewards.example.com/v1/grants?user=zo%C3%AB/1&key={{ secrets.URL_KEY }}"
    );
    assert_eq!(headers["Authorization"], "Bearer {{ secrets.REWARDS_KEY }}");
    let body: serde_json::Value =
        serde_json::from_str(body.as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["sig"], "{{ secrets.SIGNING }}");
    assert_eq!(body["name"], "Zoë");
}

#[tokio::test]
async fn a_call_missing_a_secret_is_skipped_naming_it() {
    let (h, lines) = harness(LocalSecrets::new(VALUES));
    h.publish(REWARD).await;
    h.play(r#"{"at":"2026-03-01T01:00:00Z","userId":"ann","event":"level_up","properties":{}}"#)
        .await;
    h.advance_to(support::at("2026-03-05T00:00:00Z")).await;
    // `grant` went out; `audit` reads `AUDIT_KEY`, which has no value.
    assert_eq!(lines.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    assert_eq!(
        skips(&h, "ann").await,
        [(
            "audit".to_string(),
            "rejected".to_string(),
            "webhook: the secret `AUDIT_KEY` has no value: set it in the environment of `waymark dev` or `waymark simulate` as `WAYMARK_SECRET_<NAME>` (`WAYMARK_SECRET_API_KEY` for `{{ secrets.API_KEY }}`)".to_string()
        )]
    );
}

/// `user`'s skipped sends: step, reason and detail.
async fn skips(h: &Harness, user: &str) -> Vec<(String, String, String)> {
    let view = h.rt.user(user).await.expect("user");
    view.timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Skipped { reason, detail, .. } => Some((
                e.step.as_deref().unwrap_or_default().to_string(),
                reason.clone(),
                detail.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

/// A user's data that holds a marker does not name a secret for the sender to put in: the call
/// is skipped as `render_error`.
#[tokio::test]
async fn data_holding_a_marker_names_no_secret() {
    let (h, lines) = harness(LocalSecrets::new(VALUES));
    h.publish(REWARD).await;
    let name = serde_json::to_string(&marker("REWARDS_KEY")).expect("text");
    h.play(&format!(
        r#"{{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"eve","traits":{{"name":{name}}}}}
{{"at":"2026-03-01T01:00:00Z","userId":"eve","event":"level_up","properties":{{}}}}"#
    ))
    .await;
    assert!(lines.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    let skipped = skips(&h, "eve").await;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].1, "render_error", "{skipped:?}");
    assert!(
        skipped[0]
            .2
            .contains("which marks a secret: data cannot name a secret"),
        "{skipped:?}"
    );
}

/// A call that reads no secret takes the user's data as it is, the marker's character too:
/// the sender puts no value in (it puts in only the secrets the template reads).
#[tokio::test]
async fn a_call_reading_no_secret_sends_a_marker_in_data_as_text() {
    let (h, lines) = harness(LocalSecrets::new(VALUES));
    h.publish(
        r#"
id: plain
name: Plain call
trigger: {event: level_up}
steps:
  - id: tell
    send:
      webhook:
        url: "https://crm.example.com/users/{{ user_id | urlencode }}"
        body: '{"name": {{ profile.name | tojson }}}'
"#,
    )
    .await;
    let name = serde_json::to_string(&marker("REWARDS_KEY")).expect("text");
    h.play(&format!(
        r#"{{"at":"2026-03-01T00:00:00Z","type":"identify","userId":"eve","traits":{{"name":{name}}}}}
{{"at":"2026-03-01T01:00:00Z","userId":"eve","event":"level_up","properties":{{}}}}"#
    ))
    .await;
    assert_eq!(skips(&h, "eve").await, []);
    let sent = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sent.len(), 1);
    let Content::Webhook { body, secrets, .. } = sent[0].content.as_ref() else {
        panic!("a webhook: {:?}", sent[0].content);
    };
    assert!(secrets.is_empty(), "{secrets:?}");
    let body: serde_json::Value =
        serde_json::from_str(body.as_deref().expect("a body")).expect("JSON");
    assert_eq!(body["name"], marker("REWARDS_KEY"), "as it was, no value");
}

/// The problems `waymark validate` finds in `file`, as it prints them.
fn problems(file: &str) -> Vec<String> {
    match waymark::dsl::parse("hook.yaml", file) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn validate_allows_a_secret_only_in_a_webhook_call() {
    assert_eq!(problems(REWARD), Vec::<String>::new());
    // In a branch of the call, with whitespace control: still alone in its tag.
    let branched = r#"
id: hook
name: Hook
trigger: {event: a}
steps:
  - id: call
    send:
      webhook:
        url: "https://api.example.com/v1/{% if event.eu %}eu{% endif %}?k={{- secrets.K -}}"
        headers: {X-Key: "{% if profile.vip %}{{ secrets.VIP_KEY }}{% else %}{{ secrets.KEY }}{% endif %}"}
"#;
    assert_eq!(problems(branched), Vec::<String>::new());
    let only = "`secrets` is read only in a webhook's `url` (after its host), `headers` and `body`";
    for (file, want) in [
        // A message's text: with the line and column of `secrets`.
        (
            "id: hook\nname: Hook\ntrigger: {event: a}\nsteps:\n  - id: mail\n    send: {sms: {body: \"code {{ secrets.KEY }}\"}}\n",
            format!("hook.yaml:6:33: steps[0].send.sms.body: {only}"),
        ),
        (
            "id: hook\nname: Hook\ntrigger: {event: a}\nsteps:\n  - id: note\n    send: {in_app: {title: \"Hi\", body: \"{{ secrets.KEY }}\"}}\n",
            format!("hook.yaml:6:44: steps[0].send.in_app.body: {only}"),
        ),
        // A condition.
        (
            "id: hook\nname: Hook\ntrigger: {event: a, where: \"secrets.KEY == 'x'\"}\nsteps:\n  - id: call\n    send: {webhook: {url: \"https://api.example.com/\"}}\n",
            format!("hook.yaml:3:29: trigger.where: unknown name \"secrets\": {only}"),
        ),
        // A profile update.
        (
            "id: hook\nname: Hook\ntrigger: {event: a}\nsteps:\n  - id: keep\n    update: {set: {token: \"{{ secrets.KEY }}\"}}\n",
            format!("hook.yaml:6:31: steps[0].update.set.token: {only}"),
        ),
    ] {
        let got = problems(file);
        assert!(
            got.iter().any(|p| p.starts_with(&want)),
            "want {want}\n got {got:?}"
        );
    }
    // In a call: alone in its tag, a name in capitals, never choosing the host.
    let call = |url: &str, header: &str| {
        format!("id: hook\nname: Hook\ntrigger: {{event: a}}\nsteps:\n  - id: call\n    send:\n      webhook:\n        url: \"{url}\"\n        headers: {{X-Key: \"{header}\"}}\n")
    };
    for (file, want) in [
        (
            call("https://api.example.com/", "{{ secrets.KEY | urlencode }}"),
            "hook.yaml:9:30: steps[0].send.webhook.headers.X-Key: a secret is written alone in its tag, like `{{ secrets.API_KEY }}`, with no filter or expression",
        ),
        (
            call("https://api.example.com/", "{{ 'Bearer ' ~ secrets.KEY }}"),
            "hook.yaml:9:42: steps[0].send.webhook.headers.X-Key: a secret is written alone in its tag",
        ),
        (
            call("https://api.example.com/", "{{ secrets.api_key }}"),
            "hook.yaml:9:30: steps[0].send.webhook.headers.X-Key: `api_key` is not a secret's name: a secret's name is capital letters, digits and `_`",
        ),
        (
            call("https://{{ secrets.HOST }}/x", "1"),
            "hook.yaml:8:9: steps[0].send.webhook.url: `https://{{ secrets.HOST }}/x` has data in its host",
        ),
        (
            call("{{ profile.hook_url }}", "{{ secrets.KEY }}"),
            "hook.yaml:8:9: steps[0].send.webhook.url: a call that carries a secret goes only to a host the journey writes out",
        ),
        // A block that would change, drop or repeat the marker.
        (
            call("https://api.example.com/", "{% filter upper %}{{ secrets.KEY }}{% endfilter %}"),
            "hook.yaml:9:48: steps[0].send.webhook.headers.X-Key: a secret is not read inside a `{% filter %}` block",
        ),
        (
            call("https://api.example.com/", "{% set x %}{{ secrets.KEY }}{% endset %}{{ x|urlencode }}"),
            "hook.yaml:9:41: steps[0].send.webhook.headers.X-Key: a secret is not read inside a `{% set %}` block",
        ),
        (
            call("https://api.example.com/", "{% macro k() %}{{ secrets.KEY }}{% endmacro %}{{ k() }}"),
            "hook.yaml:9:45: steps[0].send.webhook.headers.X-Key: a secret is not read inside a `{% macro %}` block",
        ),
    ] {
        let got = problems(&file);
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "want {want}\n got {got:?}"
        );
    }
    // Blocks that leave it alone: a `set` of a value, a filter closed before it.
    for header in [
        "{% set k = 1 %}{{ secrets.KEY }}",
        "{% filter upper %}x{% endfilter %}{{ secrets.KEY }}",
    ] {
        let file = format!("id: hook\nname: Hook\ntrigger: {{event: a}}\nsteps:\n  - id: call\n    send:\n      webhook:\n        url: \"https://api.example.com/\"\n        headers: {{X-Key: \"{header}\"}}\n");
        assert_eq!(problems(&file), Vec::<String>::new(), "{header}");
    }
    // The body's media type is written out: a template or a secret is refused.
    for value in ["{{ secrets.TYPE }}", "{{ profile.media }}"] {
        let file = format!("id: hook\nname: Hook\ntrigger: {{event: a}}\nsteps:\n  - id: call\n    send:\n      webhook:\n        url: \"https://api.example.com/\"\n        headers: {{Content-Type: \"{value}\"}}\n        body: \"k={{{{ secrets.KEY }}}}\"\n");
        let got = problems(&file);
        assert!(
            got.iter().any(|p| p.contains("steps[0].send.webhook.headers.Content-Type: `Content-Type` is written out, not a template")),
            "{value}: {got:?}"
        );
    }
}
