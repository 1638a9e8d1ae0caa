//! SMS opt-outs: the sync that reads the provider's list of numbers that replied STOP, a page at
//! a time, keeping its place between runs, and suppresses SMS for the users whose phone each is.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use support::Harness;
use waymark::engine::Outgoing;
use waymark::journey::Channel;
use waymark::provider::{OptOutPage, Receipt, SendError, Sender};
use waymark::runtime::{Config, OptOutSync, Runtime};

/// A provider whose opt-out list comes in pages (`p1`, `p2`, …), failing where told to.
#[derive(Clone, Default)]
struct PagedList {
    pages: Vec<Vec<&'static str>>,
    /// The tokens asked for, in order (`None` for the first page).
    asked: Arc<Mutex<Vec<Option<String>>>>,
    /// The next request fails with this.
    fail: Arc<Mutex<Option<SendError>>>,
}

#[async_trait]
impl Sender for PagedList {
    async fn send(&self, _: &Outgoing) -> Result<Receipt, SendError> {
        Ok(Receipt::default())
    }

    async fn opted_out_page(&self, token: Option<&str>) -> Result<OptOutPage, SendError> {
        self.asked
            .lock()
            .expect("asked")
            .push(token.map(str::to_string));
        if let Some(e) = self.fail.lock().expect("fail").take() {
            return Err(e);
        }
        let at = match token {
            None => 0,
            Some(t) => t
                .strip_prefix('p')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n < self.pages.len())
                .ok_or_else(|| SendError::Permanent(format!("no page {t}")))?,
        };
        Ok(OptOutPage {
            numbers: self.pages[at].iter().map(|n| n.to_string()).collect(),
            next: (at + 1 < self.pages.len()).then(|| format!("p{}", at + 1)),
        })
    }
}

const USERS: &str = r#"
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"ann","traits":{"phone":"+15550001"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"dan","traits":{"phone":"+15550002"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"bob","traits":{"phone":"+15550003"}}
{"at":"2026-12-01T09:00:00Z","type":"identify","userId":"cy","traits":{"phone":"+15550004"}}
{"at":"2026-12-01T09:00:01Z","type":"identify","userId":"dan","traits":{"phone":"+15550099"}}
"#;

/// A harness whose provider is `list`, with the users of [`USERS`] identified.
async fn harness(list: &PagedList) -> Harness {
    let base = Harness::new("2026-12-01T09:00:00Z");
    let rt = Runtime::new(
        Arc::new(base.store.clone()),
        Arc::new(base.queue.clone()),
        Arc::new(list.clone()),
        base.clock.clone(),
        std::time::Duration::from_secs(0),
        Config::default(),
    );
    let h = Harness { rt, ..base };
    h.play(USERS).await;
    h
}

async fn suppressed(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    for user in ["ann", "bob", "cy", "dan"] {
        let view = h.rt.user(user).await.expect("user");
        if view
            .profile
            .is_some_and(|p| p.suppressed.contains_key(&Channel::Sms))
        {
            out.push(user.to_string());
        }
    }
    out
}

fn asked(list: &PagedList) -> Vec<Option<String>> {
    list.asked.lock().expect("asked").clone()
}

fn sync(newly: usize, pages: usize, done: bool) -> OptOutSync {
    OptOutSync { newly, pages, done }
}

fn later(h: &Harness, minutes: i64) {
    h.clock
        .set(h.now() + jiff::SignedDuration::from_mins(minutes));
}

/// A run with no time to spare reads one page and keeps its place; the runs after it go on
/// from there until the list ends; the next pass starts an hour after the last one started.
/// dan's old number is on the list, but it is not his phone any more.
#[tokio::test]
async fn a_long_opt_out_list_is_read_a_page_a_run_from_where_the_last_run_stopped() {
    let list = PagedList {
        pages: vec![
            vec!["+15550001", "+15550002", "+15559999"],
            vec!["+15550003"],
            vec!["+15550004"],
        ],
        ..Default::default()
    };
    let h = harness(&list).await;
    let none = Some(std::time::Duration::ZERO);
    let run = || h.rt.sync_sms_opt_outs(none);
    assert_eq!(run().await.ok(), Some(sync(1, 1, false)));
    assert_eq!(suppressed(&h).await, ["ann"]);
    later(&h, 1);
    assert_eq!(run().await.ok(), Some(sync(1, 1, false)));
    assert_eq!(suppressed(&h).await, ["ann", "bob"]);
    later(&h, 1);
    assert_eq!(run().await.ok(), Some(sync(1, 1, true)));
    assert_eq!(suppressed(&h).await, ["ann", "bob", "cy"]);
    // Between passes, nothing is read.
    later(&h, 57);
    assert_eq!(run().await.ok(), Some(sync(0, 0, false)));
    assert_eq!(
        asked(&list),
        [None, Some("p1".to_string()), Some("p2".to_string())]
    );

    // An hour after the pass started, the next, with time to read it all: nothing new.
    later(&h, 1);
    assert_eq!(
        h.rt.sync_sms_opt_outs(None).await.ok(),
        Some(sync(0, 3, true))
    );
    assert_eq!(asked(&list).len(), 6);
}

/// A first page that fails is asked for again by the next run, and so is a later one; a page
/// token the provider refuses ends the pass, and the next starts from the first page an hour
/// after it began.
#[tokio::test]
async fn a_failed_page_is_read_again_and_a_refused_token_starts_over() {
    let list = PagedList {
        pages: vec![vec!["+15550001"], vec!["+15550003"], vec!["+15550004"]],
        ..Default::default()
    };
    let h = harness(&list).await;
    let none = Some(std::time::Duration::ZERO);
    let run = || h.rt.sync_sms_opt_outs(none);
    let fail = |e: SendError| *list.fail.lock().expect("fail") = Some(e);
    fail(SendError::Retryable("throttled".into()));
    assert!(run().await.is_err());
    later(&h, 1);
    assert_eq!(run().await.ok(), Some(sync(1, 1, false)));
    fail(SendError::Retryable("throttled".into()));
    assert!(run().await.is_err());
    assert_eq!(run().await.ok(), Some(sync(1, 1, false)));
    assert_eq!(suppressed(&h).await, ["ann", "bob"]);
    assert_eq!(
        asked(&list),
        [None, None, Some("p1".to_string()), Some("p1".to_string())]
    );

    fail(SendError::Permanent("token expired".into()));
    assert_eq!(run().await.ok(), Some(sync(0, 0, false)));
    later(&h, 30);
    assert_eq!(run().await.ok(), Some(sync(0, 0, false)));
    later(&h, 30);
    assert_eq!(
        h.rt.sync_sms_opt_outs(None).await.ok(),
        Some(sync(1, 3, true))
    );
    assert_eq!(suppressed(&h).await, ["ann", "bob", "cy"]);
    assert_eq!(
        asked(&list)[5..],
        [None, Some("p1".to_string()), Some("p2".to_string())]
    );
}

/// Whom of `users` SMS is suppressed for.
async fn suppressed_of(h: &Harness, users: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for user in users {
        let view = h.rt.user(user).await.expect("user");
        if view
            .profile
            .is_some_and(|p| p.suppressed.contains_key(&Channel::Sms))
        {
            out.push(user.to_string());
        }
    }
    out
}

/// A journey that keeps the phone number a checkout gave.
const PHONE_FROM_CHECKOUT: &str = r#"
id: checkout_phone
name: Phone from checkout
trigger: {event: checkout}
steps:
  - id: keep_phone
    update: {set: {phone: "{{ event.phone }}"}}
"#;

/// A number a journey's `update` step gave a user is traced to her, as an identify's is: her
/// STOP suppresses her SMS.
#[tokio::test]
async fn a_stop_reaches_the_user_an_update_step_gave_the_number() {
    let list = PagedList {
        pages: vec![vec!["+15550006"]],
        ..Default::default()
    };
    let h = harness(&list).await;
    h.publish(PHONE_FROM_CHECKOUT).await;
    h.play(
        r#"{"at":"2026-12-01T09:10:00Z","type":"track","userId":"eli","event":"checkout","properties":{"phone":"+15550006"}}"#,
    )
    .await;
    let view = h.rt.user("eli").await.expect("user");
    assert_eq!(
        view.profile.and_then(|p| p.traits.get("phone").cloned()),
        Some(serde_json::json!("+15550006"))
    );
    assert_eq!(
        h.rt.sync_sms_opt_outs(None).await.ok(),
        Some(sync(1, 1, true))
    );
    assert_eq!(suppressed_of(&h, &["eli"]).await, ["eli"]);
}

/// A number several users were given (a household's: two by an identify, one by a journey's
/// `update`) suppresses each who still has it when it replies STOP; one who changed her number
/// since is left alone.
#[tokio::test]
async fn a_stop_reaches_every_user_still_holding_a_shared_number() {
    let list = PagedList {
        pages: vec![vec!["+15550005"]],
        ..Default::default()
    };
    let h = harness(&list).await;
    h.publish(PHONE_FROM_CHECKOUT).await;
    h.play(
        r#"
{"at":"2026-12-01T09:10:00Z","type":"identify","userId":"fay","traits":{"phone":"+15550005"}}
{"at":"2026-12-01T09:11:00Z","type":"identify","userId":"gus","traits":{"phone":"+15550005"}}
{"at":"2026-12-01T09:12:00Z","type":"identify","userId":"hal","traits":{"phone":"+15550005"}}
{"at":"2026-12-01T09:13:00Z","type":"identify","userId":"hal","traits":{"phone":"+15550007"}}
{"at":"2026-12-01T09:14:00Z","type":"track","userId":"ivo","event":"checkout","properties":{"phone":"+15550005"}}
{"at":"2026-12-01T09:15:00Z","type":"identify","userId":"fay","traits":{"phone":"+15550005"}}
"#,
    )
    .await;
    assert_eq!(
        h.rt.sync_sms_opt_outs(None).await.ok(),
        Some(sync(3, 1, true))
    );
    assert_eq!(
        suppressed_of(&h, &["fay", "gus", "hal", "ivo"]).await,
        ["fay", "gus", "ivo"]
    );
}
