//! `waymark dev` end to end: start it at 3600× speed, send events over HTTP with the generated
//! keys, see the push land in the outbox, then restart it on the same data folder and find the
//! user, and the wait that was pending, still there.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{
    basic, data_with_a_dead_letter, dead_letter_lines, http, http_with_headers, run, start,
    start_with_env, text, wait_for, waymark, Dev, TempDir,
};

const JOURNEY: &str = "\
id: welcome
name: Welcome
trigger:
  event: signed_up
steps:
  - id: wait_a_bit
    wait: 30m
  - id: hello
    send:
      push:
        title: \"Welcome, {{ profile.first_name }}\"
        body: \"Glad you are here.\"
  - id: wait_longer
    wait: 3h
  - id: tips
    send:
      push:
        title: \"Three tips\"
        body: \"...\"
";

/// A fresh folder for a test: `journeys/` with the one journey file `name` holding `text`, and
/// the path `data/` for the server's state.
fn folder(test: &str, name: &str, text: &str) -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = TempDir::new(test);
    let journeys = dir.path().join("journeys");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join(name), text).expect("write journey");
    (dir, journeys, data)
}

/// `GET /v1/journeys`'s list, as the admin sees it.
fn journeys_of(dev: &Dev, admin_key: &str) -> serde_json::Value {
    let (status, body) = http(
        "GET",
        &format!("{}/v1/journeys", dev.url),
        &[("authorization", &format!("Bearer {admin_key}"))],
        "",
    )
    .expect("list journeys");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["journeys"].clone()
}

fn keys(data: &Path) -> (String, String) {
    let text = std::fs::read_to_string(data.join("keys.json")).expect("keys.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("keys.json is JSON");
    let get = |k: &str| v[k].as_str().expect("key").to_string();
    (get("write_key"), get("admin_key"))
}

fn pushes(outbox: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["channel"] == "push")
        .collect()
}

fn wait_for_push(outbox: &Path, step: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(p) = pushes(outbox).into_iter().find(|p| p["step"] == step) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no `{step}` push in {} within {within:?}",
            outbox.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A console no one reads any more (`waymark dev | head`, a closed terminal) stops neither the
/// engine nor its shutdown: the messages still reach the outbox, and SIGTERM still stops it.
#[test]
fn dev_goes_on_when_its_console_is_closed() {
    let (_dir, journeys, data) = folder("dev-console", "welcome.yaml", JOURNEY);
    let outbox = data.join("outbox.jsonl");
    let mut child = waymark()
        .args(["dev", "--port", "0", "--speed", "3600", "--journeys"])
        .arg(&journeys)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start waymark dev");
    // Read up to the URL line, then close the console.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("API").map(|u| u.trim().to_string()))
        .expect("waymark dev printed its URL");
    drop(lines);
    let mut dev = Dev {
        child,
        url,
        printed: Default::default(),
    };
    let (write_key, _) = keys(&data);
    let auth = basic(&write_key);
    let json = ("content-type", "application/json");
    for (path, body) in [
        (
            "identify",
            r#"{"userId":"ann","traits":{"first_name":"Ann","push_tokens":[{"platform":"fcm","token":"tok-ann"}]}}"#,
        ),
        (
            "track",
            r#"{"userId":"ann","event":"signed_up","messageId":"signup-ann"}"#,
        ),
    ] {
        let (status, body) = http(
            "POST",
            &format!("{}/v1/{path}", dev.url),
            &[("authorization", &auth), json],
            body,
        )
        .expect(path);
        assert_eq!(status, 200, "{body}");
    }
    // The push is echoed to the closed console first, then written: both sends go out.
    wait_for_push(&outbox, "hello", Duration::from_secs(20));
    wait_for_push(&outbox, "tips", Duration::from_secs(40));
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &dev.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if dev.child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waymark dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_runs_a_journey_and_keeps_its_state_across_restarts() {
    let (dir, journeys, data) = folder("dev", "welcome.yaml", JOURNEY);
    let outbox = data.join("outbox.jsonl");

    // given a fresh dev server, whose outbox is there to follow before any message
    let dev = start(&journeys, &data);
    assert_eq!(
        std::fs::read_to_string(&outbox).ok().as_deref(),
        Some(""),
        "the outbox is made, empty, at start"
    );
    let (write_key, admin_key) = keys(&data);
    let auth = basic(&write_key);
    let json = ("content-type", "application/json");

    // when a user is identified with a push token and signs up
    let identify = r#"{"userId":"ann","traits":{"first_name":"Ann","push_tokens":[{"platform":"fcm","token":"tok-ann"}]}}"#;
    let (status, body) = http(
        "POST",
        &format!("{}/v1/identify", dev.url),
        &[("authorization", &auth), json],
        identify,
    )
    .expect("identify");
    assert_eq!(status, 200, "{body}");
    let track = r#"{"userId":"ann","event":"signed_up","messageId":"signup-ann","properties":{}}"#;
    let (status, body) = http(
        "POST",
        &format!("{}/v1/track", dev.url),
        &[("authorization", &auth), json],
        track,
    )
    .expect("track");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(
        "POST",
        &format!("{}/v1/track", dev.url),
        &[("authorization", "Bearer wrong"), json],
        track,
    )
    .expect("track");
    assert_eq!(status, 401);

    // then the push goes out after the 30-minute wait (half a second at 3600×)
    let hello = wait_for_push(&outbox, "hello", Duration::from_secs(20));
    assert_eq!(hello["user_id"], "ann");
    assert_eq!(hello["content"]["title"], "Welcome, Ann");

    // when the server stops before the 3-hour wait is over, and starts again
    drop(dev);
    let before_restart = pushes(&outbox).len();
    let dev = start(&journeys, &data);
    assert_eq!(keys(&data), (write_key, admin_key.clone()), "keys are kept");

    // then the user is still there
    let (status, body) = http(
        "GET",
        &format!("{}/v1/users/ann", dev.url),
        &[("authorization", &format!("Bearer {admin_key}"))],
        "",
    )
    .expect("get user");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("user JSON");
    assert_eq!(view["profile"]["traits"]["first_name"], "Ann", "{body}");

    // and the pending wait still ends in its push, exactly once in all
    let tips = wait_for_push(&outbox, "tips", Duration::from_secs(20));
    assert_eq!(tips["content"]["title"], "Three tips");
    assert!(pushes(&outbox).len() >= before_restart);
    let hellos = pushes(&outbox)
        .iter()
        .filter(|p| p["step"] == "hello")
        .count();
    assert_eq!(
        hellos, 1,
        "the first push is not sent again after the restart"
    );

    // and an inbox token minted from the dev data opens the user's inbox
    let out = waymark()
        .args(["token", "ann", "--data"])
        .arg(&data)
        .output()
        .expect("waymark token");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (status, body) = http(
        "GET",
        &format!("{}/v1/users/ann/inbox", dev.url),
        &[("x-waymark-user-token", &token)],
        "",
    )
    .expect("inbox");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(
        "GET",
        &format!("{}/v1/users/bob/inbox", dev.url),
        &[("x-waymark-user-token", &token)],
        "",
    )
    .expect("inbox");
    assert_eq!(status, 401, "ann's token does not open bob's inbox");

    // when ann signs up again (the journey's `reentry` is `never`), `waymark why` says why she
    // is not welcomed twice, beside what happened the first time
    let again =
        r#"{"userId":"ann","event":"signed_up","messageId":"signup-ann-2","properties":{}}"#;
    let (status, body) = http(
        "POST",
        &format!("{}/v1/track", dev.url),
        &[("authorization", &auth), json],
        again,
    )
    .expect("track");
    assert_eq!(status, 200, "{body}");
    let why = || {
        let out = waymark()
            .args(["why", "ann", "--journey", "welcome", "--api", &dev.url])
            .env("WAYMARK_ADMIN_KEY", &admin_key)
            .output()
            .expect("waymark why");
        assert!(out.status.success(), "{}", support::text(&out.stderr));
        support::text(&out.stdout)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut story = why();
    while !story.contains("not entered on signed_up: reentry") {
        assert!(Instant::now() < deadline, "no refusal in:\n{story}");
        std::thread::sleep(Duration::from_millis(200));
        story = why();
    }
    assert!(story.starts_with("ann in welcome\n"), "{story}");
    assert!(
        story.contains("): completed"),
        "the enrollment's state: {story}"
    );
    assert!(story.contains("hello: sent push"), "{story}");
    assert!(
        story.contains("(`reentry: never`, and the user entered on"),
        "the reason in full: {story}"
    );
    // A journey that does not exist is an error, not an empty story; a user known only by
    // an anonymous id gets the way to their events.
    let out = waymark()
        .args(["why", "ann", "--journey", "welcom", "--api", &dev.url])
        .env("WAYMARK_ADMIN_KEY", &admin_key)
        .output()
        .expect("waymark why");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        support::text(&out.stderr).contains("no journey `welcom`: the journeys are welcome"),
        "{}",
        support::text(&out.stderr)
    );

    // `why` and `stats` with neither a URL nor a key ask the `waymark dev` of the data folder
    // (the URL it noted at start, its admin key), and tell its story as with both given
    let beside_dev = |args: &[&str]| {
        waymark()
            .args(args)
            .arg("--data")
            .arg(&data)
            .env_remove("WAYMARK_API_URL")
            .env_remove("WAYMARK_ADMIN_KEY")
            .output()
            .expect("waymark")
    };
    let out = beside_dev(&["why", "ann", "--journey", "welcome"]);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert_eq!(support::text(&out.stdout), why(), "the same story");
    let out = beside_dev(&["stats", "welcome"]);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert!(
        support::text(&out.stdout).contains("hello"),
        "the step's figures: {}",
        support::text(&out.stdout)
    );
    drop(dev);
    // once it has stopped, the answer says so and what to do
    let out = beside_dev(&["why", "ann"]);
    assert_eq!(out.status.code(), Some(1));
    let err = support::text(&out.stderr);
    assert!(
        err.contains("no `waymark dev` answers there") && err.contains("dev.url"),
        "{err}"
    );
    // a folder no `waymark dev` ran on: how to give the API, or start one
    let empty = dir.path().join("no-dev");
    let out = waymark()
        .args(["why", "ann", "--data"])
        .arg(&empty)
        .env_remove("WAYMARK_API_URL")
        .env_remove("WAYMARK_ADMIN_KEY")
        .output()
        .expect("waymark why");
    assert_eq!(out.status.code(), Some(1));
    let err = support::text(&out.stderr);
    assert!(
        err.contains("pass --api URL") && err.contains("make dev"),
        "{err}"
    );
}

#[test]
fn dev_merges_an_anonymous_user_who_logs_in_and_their_journey_goes_on() {
    let dir = TempDir::new("dev-merge");
    let journeys = dir.path().join("journeys");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    // A 4-hour first wait (4 s at 3600x): the login comes well within it, however busy the
    // machine.
    let journey = JOURNEY.replace("wait: 30m", "wait: 4h");
    std::fs::write(journeys.join("welcome.yaml"), journey).expect("write journey");
    let outbox = data.join("outbox.jsonl");
    let dev = start(&journeys, &data);
    let (write_key, admin_key) = keys(&data);
    let auth = basic(&write_key);
    let json = ("content-type", "application/json");
    let post = |path: &str, body: &str| {
        let (status, reply) = http(
            "POST",
            &format!("{}{path}", dev.url),
            &[("authorization", &auth), json],
            body,
        )
        .expect(path);
        assert_eq!(status, 200, "{reply}");
    };

    // given someone who signs up in the app before logging in (anonymousId only)
    post(
        "/v1/track",
        r#"{"anonymousId":"phone-1","event":"signed_up","messageId":"signup-anon","properties":{}}"#,
    );
    // when they log in within the first wait, on a device that registered its push token
    post(
        "/v1/identify",
        r#"{"userId":"cho","anonymousId":"phone-1","messageId":"login-cho","traits":{"first_name":"Cho","push_tokens":[{"platform":"fcm","token":"tok-cho"}]}}"#,
    );

    // then the journey they entered anonymously goes on as theirs: the push reaches their device
    let hello = wait_for_push(&outbox, "hello", Duration::from_secs(20));
    assert_eq!(hello["user_id"], "cho");
    assert_eq!(hello["content"]["title"], "Welcome, Cho");

    // and `waymark why` tells the whole story under the user
    let deadline = Instant::now() + Duration::from_secs(20);
    let story = loop {
        let out = waymark()
            .args(["why", "cho", "--journey", "welcome", "--api", &dev.url])
            .env("WAYMARK_ADMIN_KEY", &admin_key)
            .output()
            .expect("waymark why");
        assert!(out.status.success(), "{}", support::text(&out.stderr));
        let story = support::text(&out.stdout);
        if story.contains("hello: sent push") {
            break story;
        }
        assert!(Instant::now() < deadline, "no push in:\n{story}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        story.contains("entered v1 on signed_up"),
        "the anonymous entry: {story}"
    );
    assert!(
        story.contains("anon:phone-1 turned out to be cho: goes on as cho"),
        "the merge: {story}"
    );
    drop(dev);
}

/// A schedule journey's run keeps nothing of a user its `where` leaves out: `waymark why`
/// judges it against her profile as it is now, with what the `where` read, against `waymark
/// dev` as against the deployed API (one handler).
#[test]
fn why_tells_a_user_the_schedules_where_leaves_out_what_it_read() {
    // The weekday three days from now: the test's minutes of virtual time (dev runs an hour a
    // second here) hold no run of it, whenever the test runs (with a fixed Monday, a start in
    // the minutes before a Monday's 09:00 saw a run happen).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 1970-01-01 was a Thursday.
    let dow = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"][((now / 86_400 + 3) % 7) as usize];
    let digest = format!(
        "\
id: digest
name: Weekly digest
trigger:
  schedule: {{cron: \"0 9 * * {dow}\", timezone: Europe/Paris, where: \"profile.plan == 'free'\"}}
reentry: after_exit
steps:
  - id: digest
    send: {{email: {{subject: \"Your week\", text: \"Picks\"}}}}
"
    );
    let (_dir, journeys, data) = folder("dev-why-schedule", "digest.yaml", &digest);
    let dev = start(&journeys, &data);
    let (write_key, admin_key) = keys(&data);
    let (status, body) = http(
        "POST",
        &format!("{}/v1/identify", dev.url),
        &[
            ("authorization", &basic(&write_key)),
            ("content-type", "application/json"),
        ],
        r#"{"userId":"dan","traits":{"email":"dan@example.com","plan":"premium"}}"#,
    )
    .expect("identify");
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let story = loop {
        let out = waymark()
            .args(["why", "dan", "--api", &dev.url])
            .env("WAYMARK_ADMIN_KEY", &admin_key)
            .output()
            .expect("waymark why");
        let story = support::text(&out.stdout);
        if out.status.success() && story.contains("premium") {
            break story;
        }
        assert!(
            Instant::now() < deadline,
            "no answer in:\n{story}{}",
            support::text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(story.starts_with("dan in digest\n"), "{story}");
    // Published just now: no run of it happened yet, so no last run.
    assert!(
        story.contains(&format!(
            "\n  schedule `0 9 * * {dow}` in Europe/Paris: next run "
        )),
        "{story}"
    );
    assert!(
        story.contains(": left out of the runs: condition (`where: profile.plan == 'free'` is false now (profile.plan = \"premium\")"),
        "{story}"
    );
    drop(dev);
}

#[test]
fn dev_republishes_a_changed_journey() {
    let dir = TempDir::new("dev-watch");
    let journeys = dir.path().join("journeys");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    let file = journeys.join("welcome.yaml");
    std::fs::write(&file, JOURNEY).expect("write journey");
    let dev = start(&journeys, &data);
    let (_, admin_key) = keys(&data);
    let head = || {
        journeys_of(&dev, &admin_key)
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["id"] == "welcome")
            .cloned()
            .unwrap_or_default()
    };
    let version = || head()["version"].as_u64().unwrap_or(0);
    assert_eq!(version(), 1);
    assert_eq!(head()["status"], "active");
    // Modification times can be coarse: make sure the new one differs.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, JOURNEY.replace("wait: 30m", "wait: 45m")).expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(15);
    while version() != 2 {
        assert!(
            Instant::now() < deadline,
            "the changed file was not re-published"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A journey is closed or stopped by saying so in its file: a new version, listed with it.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        &file,
        format!(
            "{}status: stopped\n",
            JOURNEY.replace("wait: 30m", "wait: 45m")
        ),
    )
    .expect("rewrite");
    let deadline = Instant::now() + Duration::from_secs(15);
    while version() != 3 {
        assert!(Instant::now() < deadline, "the stop was not published");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(head()["status"], "stopped");

    // `publish` and `stats` talk to the same API
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(
        other.join("goodbye.yaml"),
        JOURNEY.replace("id: welcome", "id: goodbye"),
    )
    .expect("write");
    let publish = |key: &str| {
        waymark()
            .arg("publish")
            .arg(&other)
            .args(["--api", &dev.url, "--key", key])
            .output()
            .expect("waymark publish")
    };
    let out = publish(&admin_key);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert_eq!(
        support::text(&out.stdout),
        "journey goodbye: version 1 (created)\n"
    );
    let out = publish(&admin_key);
    assert_eq!(
        support::text(&out.stdout),
        "journey goodbye: version 1 (unchanged)\n"
    );
    // What `validate` warns of, `publish` says too (and publishes).
    let advised = dir.path().join("advised");
    std::fs::create_dir_all(&advised).expect("mkdir");
    std::fs::write(
        advised.join("vip.yaml"),
        "id: vip\nname: VIP\ntrigger: {event: ordered}\nsteps:\n  - id: br\n    branch: {cases: [{when: \"event.vip == true\", goto: vip}]}\n  - id: regular\n    send: {sms: {body: regular}}\n  - id: vip\n    send: {sms: {body: vip}}\n",
    )
    .expect("write");
    let out = waymark()
        .arg("publish")
        .arg(&advised)
        .args(["--api", &dev.url, "--key", &admin_key])
        .output()
        .expect("waymark publish");
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert!(
        support::text(&out.stderr).contains("warning: step `regular` runs on into `vip`"),
        "{}",
        support::text(&out.stderr)
    );
    // A folder's caps are checked, and said not to travel with the journeys.
    std::fs::write(
        other.join("waymark.yaml"),
        "caps:\n  push: {max: 1, per: 1x}\n",
    )
    .expect("write");
    let out = publish(&admin_key);
    assert_eq!(out.status.code(), Some(1));
    let err = support::text(&out.stderr);
    assert!(
        err.contains("waymark.yaml:2:") && err.contains("nothing published"),
        "{err}"
    );
    std::fs::write(
        other.join("waymark.yaml"),
        "caps:\n  push: {max: 1, per: 1d}\n",
    )
    .expect("write");
    let out = publish(&admin_key);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let err = support::text(&out.stderr);
    assert!(
        err.contains("caps are not published") && err.contains("FrequencyCaps=push=1/1d"),
        "{err}"
    );
    let out = publish("wk_wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        support::text(&out.stderr).contains("401"),
        "{}",
        support::text(&out.stderr)
    );

    let out = waymark()
        .args(["stats", "welcome", "--api", &dev.url])
        .env("WAYMARK_ADMIN_KEY", &admin_key)
        .output()
        .expect("waymark stats");
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    let table = support::text(&out.stdout);
    assert!(
        table.starts_with("welcome v3 (stopped), all versions: entered 0"),
        "{table}"
    );
    assert!(table.contains("wait_a_bit"), "{table}");

    // A version published through the API since the file's is replaced by the file when dev
    // starts again, and dev says so.
    std::fs::remove_file(other.join("goodbye.yaml")).expect("rm");
    std::fs::write(
        other.join("welcome.yaml"),
        format!(
            "{}status: stopped\n",
            JOURNEY.replace("wait: 30m", "wait: 50m")
        ),
    )
    .expect("write");
    let out = publish(&admin_key);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert_eq!(version(), 4);
    // A journey whose file left the folder published stays published, and `publish` says so,
    // as dev does (its file renamed with a new `id:`, both would enroll).
    let err = support::text(&out.stderr);
    assert!(
        err.contains(&format!(
            "note: journey `goodbye` (version 1) is published but no file in {} has its id: it keeps enrolling (unless another folder you publish gives it); to end it, keep a file with `id: goodbye` and `status: closed`",
            other.display()
        )),
        "{err}"
    );
    assert!(!err.contains("journey `welcome`"), "{err}");
    drop(dev);
    let dev = start(&journeys, &data);
    let said = format!(
        "journey welcome: {} differs from the published version 4: now version 5, stopped: no new entries, enrolled users exit now",
        file.display()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !dev.printed().contains(&said) {
        assert!(Instant::now() < deadline, "{:#?}", dev.printed());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(dev);
}

/// A journey left without a file keeps enrolling users, so dev says so whenever that happens:
/// a file's `id:` changed, a file removed (unless its journey now comes from another file, as
/// after a rename), and at start for every published journey no file has.
#[test]
fn dev_says_which_journeys_are_left_published_without_a_file() {
    let (_dir, journeys, data) = folder("dev-orphans", "a.yaml", JOURNEY);
    let dev = start(&journeys, &data);
    let a = journeys.join("a.yaml");
    let b = journeys.join("b.yaml");
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&a, JOURNEY.replace("id: welcome", "id: hello")).expect("rewrite");
    wait_for(
        &dev,
        &format!(
            "{}: the id is now `hello`, and journey `welcome` stays published and keeps enrolling; to end it, keep a file with `id: welcome` and `status: closed`",
            a.display()
        ),
    );
    std::fs::rename(&a, &b).expect("rename");
    wait_for(
        &dev,
        &format!(
            "{} removed: journey `hello` now comes from {}",
            a.display(),
            b.display()
        ),
    );
    // saved under a new name with a change at once: the new file settles after the old one
    // is seen gone, and the journey is told as moved, not as left behind
    let c = journeys.join("c.yaml");
    std::fs::remove_file(&b).expect("rm");
    // (written again and again for longer than a look apart, so that a look sees b gone while
    // c is still being written)
    for _ in 0..8 {
        std::fs::write(
            &c,
            JOURNEY
                .replace("id: welcome", "id: hello")
                .replace("wait: 30m", "wait: 40m"),
        )
        .expect("write");
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for(
        &dev,
        &format!(
            "{} removed: journey `hello` now comes from {}",
            b.display(),
            c.display()
        ),
    );
    let left = format!("{} removed: journey `hello` stays published", b.display());
    assert!(
        !dev.printed().iter().any(|l| l.contains(&left)),
        "{:#?}",
        dev.printed()
    );
    std::fs::remove_file(&c).expect("rm");
    wait_for(
        &dev,
        &format!(
            "{} removed: journey `hello` stays published and keeps enrolling",
            c.display()
        ),
    );
    drop(dev);
    let dev = start(&journeys, &data);
    for id in ["hello", "welcome"] {
        wait_for(
            &dev,
            &format!(
                "journey `{id}` (version {}) is published but no valid file in {} has its id: it keeps enrolling",
                if id == "hello" { 2 } else { 1 },
                journeys.display()
            ),
        );
    }
    // The banner lists them with the folder's journeys, marked, and counts them apart.
    wait_for(
        &dev,
        &format!(
            "waymark dev: 0 journey(s) from {}, and 2 published earlier that no file there has (above)",
            journeys.display()
        ),
    );
    wait_for(
        &dev,
        "  journeys   hello v2 (published earlier; no file: it keeps enrolling), welcome v1 (published earlier; no file: it keeps enrolling)",
    );
    drop(dev);
}

/// A journey file written slowly (a sync tool, a slow writer) is published once, whole, when it
/// has been left alone a moment: not each valid-looking state on the way.
#[test]
fn dev_publishes_a_slowly_written_file_once_it_is_whole() {
    let (_dir, journeys, data) = folder("dev-settle", "welcome.yaml", JOURNEY);
    let dev = start(&journeys, &data);
    let (_, admin_key) = keys(&data);
    let file = journeys.join("welcome.yaml");
    std::thread::sleep(Duration::from_millis(1100));
    // Three valid journeys on the way to the whole one (its first wait alone, then a title
    // changed twice), each left for less than a look apart but less than the settling time.
    let states = [
        JOURNEY.lines().take(7).collect::<Vec<_>>().join("\n") + "\n",
        JOURNEY.replace("Three tips", "One tip"),
        JOURNEY.replace("Three tips", "Two tips"),
    ];
    for state in &states {
        std::fs::write(&file, state).expect("write");
        std::thread::sleep(Duration::from_millis(450));
    }
    std::fs::write(&file, JOURNEY.replace("Three tips", "Four tips")).expect("write");
    let latest = || {
        journeys_of(&dev, &admin_key)[0]["version"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while latest() < 2 {
        assert!(Instant::now() < deadline, "{:#?}", dev.printed());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(latest(), 2, "{:#?}", dev.printed());
    let said: Vec<String> = dev
        .printed()
        .into_iter()
        .filter(|l| l.contains("now version"))
        .collect();
    assert_eq!(said, ["journey welcome: now version 2"]);
    drop(dev);
}

/// `waymark dead-letters` while `waymark dev` runs on the folder: the store is the engine's, so
/// the command asks the engine (with the folder's admin key) and prints the same lines; a
/// redrive runs the messages at once.
#[test]
fn dead_letters_are_listed_and_redriven_while_dev_runs() {
    let dir = TempDir::new("dev-dead-letters");
    let data = data_with_a_dead_letter(&dir);
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), JOURNEY).expect("write journey");
    let dev = start(&journeys, &data);
    let data_arg = data.display().to_string();

    let lines = dead_letter_lines(&data);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["attempts"], 5);
    assert_eq!(lines[0]["message"]["user_id"], "ann", "{}", lines[0]);

    // The engine's dead letters are for its admin key only.
    let (write_key, _) = keys(&data);
    for auth in [String::new(), basic(&write_key)] {
        let (status, body) = http(
            "GET",
            &format!("{}/dev/dead-letters", dev.url),
            &[("authorization", &auth)],
            "",
        )
        .expect("request");
        assert_eq!(status, 401, "{body}");
    }

    let out = run(&["dead-letters", "--data", &data_arg, "--redrive"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 message(s) moved back to the queue of the running"),
        "{}",
        text(&out.stderr)
    );
    // It runs at once: a wake-up for an enrollment that does not exist can never succeed, so
    // it comes back, now with the engine's own reason instead of "taken 5 times".
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Some(l) = dead_letter_lines(&data).pop() {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the redriven message did not run"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(line["reason"], "no enrollment welcome:ann:1", "{line}");
    assert_eq!(line["attempts"], 1, "{line}");
    drop(dev);

    // Stopped, the folder is read directly again: the same letter.
    assert_eq!(dead_letter_lines(&data), vec![line]);
}

#[test]
fn identical_events_without_a_message_id_are_each_counted() {
    let (_dir, journeys, data) = folder(
        "dev-repeats",
        "binge.yaml",
        "id: binge\nname: Binge\ntrigger:\n  repeated: {event: episode_watched, times: 3, within: 7d}\n\
         steps:\n  - id: offer\n    send:\n      push: {title: \"Upgrade?\", body: \"...\"}\n",
    );
    let outbox = data.join("outbox.jsonl");
    let dev = start(&journeys, &data);
    let (write_key, _) = keys(&data);
    let auth = basic(&write_key);
    let json = ("content-type", "application/json");
    let post = |route: &str, body: &str| {
        let (status, text) = http(
            "POST",
            &format!("{}/v1/{route}", dev.url),
            &[("authorization", &auth), json],
            body,
        )
        .expect(route);
        assert_eq!(status, 200, "{text}");
    };
    post(
        "identify",
        r#"{"userId":"vic","traits":{"push_tokens":[{"platform":"fcm","token":"tok-vic"}]}}"#,
    );
    // The same body three times, as a backend that sends no messageId (nor timestamp) does:
    // three episodes watched, not one sent three times.
    for _ in 0..3 {
        post(
            "track",
            r#"{"userId":"vic","event":"episode_watched","properties":{"series":"Dark"}}"#,
        );
    }
    let offer = wait_for_push(&outbox, "offer", Duration::from_secs(20));
    assert_eq!(offer["user_id"], "vic");
}

#[test]
fn an_oversized_batch_is_refused_in_the_apis_shape() {
    let (_dir, journeys, data) = folder("dev-big", "welcome.yaml", JOURNEY);
    let dev = start(&journeys, &data);
    let (write_key, _) = keys(&data);
    let auth = basic(&write_key);
    let json = ("content-type", "application/json");
    // A batch over the limit is refused naming the field and the limit, as the API refuses.
    let item = r#"{"type":"track","userId":"vic","event":"episode_watched","properties":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;
    let big = format!("{{\"batch\":[{}]}}", vec![item; 6_000].join(","));
    assert!(big.len() > 600 * 1024);
    // With `code`, `message` and, on an event route (a browser's one-letter path too), the
    // CORS header, as every other refusal has them.
    for (route, content_type) in [("batch", json), ("b", ("content-type", "text/plain"))] {
        let (status, head, text) = http_with_headers(
            "POST",
            &format!("{}/v1/{route}", dev.url),
            &[("authorization", &auth), content_type],
            &big,
        )
        .expect("batch");
        assert_eq!(status, 413, "{text}");
        assert!(
            head.contains("\r\naccess-control-allow-origin: *"),
            "{route}: {head}"
        );
        let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON body");
        assert_eq!(body["errors"][0]["field"], "body", "{text}");
        assert_eq!(body["code"], "invalid_request", "{text}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("512000 bytes (500 KB)")),
            "{text}"
        );
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("body: ")),
            "{text}"
        );
    }
}

/// A journey whose file has errors at a start runs on as published, and the banner says so
/// and counts it, rather than telling of a journey with no file.
#[test]
fn dev_says_a_journey_whose_file_has_errors_runs_on_as_published() {
    let (_dir, journeys, data) = folder("dev-kept", "welcome.yaml", JOURNEY);
    let dev = start(&journeys, &data);
    wait_for(&dev, "waymark dev: 1 journey(s) from");
    drop(dev);
    let file = journeys.join("welcome.yaml");
    let runs_on = format!(
        "journey `welcome` (version 1) runs on as published: its file {} has errors (above)",
        file.display()
    );
    std::fs::write(&file, JOURNEY.replace("wait: 30m", "wait: 30 minutes")).expect("write");
    let dev = start(&journeys, &data);
    wait_for(&dev, &runs_on);
    wait_for(&dev, "waymark dev: 1 journey(s) from");
    wait_for(&dev, "welcome v1 (as published; its file has errors)");
    assert!(
        !dev.printed().iter().any(|l| l.contains("no valid file")),
        "{:#?}",
        dev.printed()
    );
    drop(dev);
    // A file that is not even YAML any more is known by its name.
    std::fs::write(&file, format!("{JOURNEY}\n  bad: [unclosed")).expect("write");
    let dev = start(&journeys, &data);
    wait_for(&dev, &runs_on);
}

/// Two files giving one id at start: neither is published (an earlier run kept the first of
/// them, and which one the published version came from is not known), and the published
/// version runs on; once one of them is gone, the other publishes. A `waymark.yaml` with errors
/// saved while dev runs is told at once, not at the next start.
#[test]
fn dev_publishes_neither_of_two_files_with_one_id_at_start() {
    let (_dir, journeys, data) = folder("dev-clash", "welcome.yaml", JOURNEY);
    let dev = start(&journeys, &data);
    wait_for(&dev, "waymark dev: 1 journey(s) from");
    // A draft copy, sorted before the original, refused while dev runs, at its `id:` (on its
    // second line here), as `waymark validate` tells it.
    let copy = journeys.join("a_copy.yaml");
    std::fs::write(
        &copy,
        format!(
            "# a draft\n{}",
            JOURNEY.replace("Glad you are here.", "DRAFT")
        ),
    )
    .expect("write");
    wait_for(
        &dev,
        &format!(
            "{}:2:1: id: journey id `welcome` is also used by {}: give each journey its own id",
            copy.display(),
            journeys.join("welcome.yaml").display()
        ),
    );
    std::fs::write(
        journeys.join("waymark.yaml"),
        "caps:\n  email: {max: 0, per: 1x}\n",
    )
    .expect("write");
    wait_for(&dev, "waymark.yaml has errors");
    wait_for(&dev, "caps.email.per");
    drop(dev);
    std::fs::remove_file(journeys.join("waymark.yaml")).expect("rm");

    let dev = start(&journeys, &data);
    wait_for(&dev, &format!(
        "{}:2:1: id: journey id `welcome` is also used by {}: give each journey its own id (none of them is published until then)",
        copy.display(),
        journeys.join("welcome.yaml").display()
    ));
    wait_for(&dev, "welcome v1 (as published; its file has errors)");
    let (_, admin) = keys(&data);
    assert_eq!(journeys_of(&dev, &admin)[0]["version"], 1);
    assert!(
        !dev.printed().iter().any(|l| l.contains("now version 2")),
        "{:#?}",
        dev.printed()
    );
    // The draft goes (and is told gone): the original is published again as it was (no new
    // version).
    std::fs::remove_file(&copy).expect("rm");
    wait_for(&dev, &format!("{} removed", copy.display()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(journeys_of(&dev, &admin)[0]["version"], 1);
    // And the draft alone is a new version.
    std::fs::remove_file(journeys.join("welcome.yaml")).expect("rm");
    std::fs::write(&copy, JOURNEY.replace("Glad you are here.", "DRAFT")).expect("write");
    wait_for(&dev, "journey welcome: now version 2");
}

/// A file refused because another file publishes its id is read again once that file is gone,
/// though it did not change: the journey now comes from it, not left without a file.
#[test]
fn dev_publishes_a_refused_copy_once_the_file_with_its_id_is_gone() {
    let (_dir, journeys, data) = folder("dev-refused-copy", "a.yaml", JOURNEY);
    let a = journeys.join("a.yaml");
    let b = journeys.join("b.yaml");
    let dev = start(&journeys, &data);
    wait_for(&dev, "waymark dev: 1 journey(s) from");
    std::fs::write(&b, JOURNEY.replace("Glad you are here.", "A copy.")).expect("write");
    wait_for(
        &dev,
        &format!(
            "{}:1:1: id: journey id `welcome` is also used by {}: give each journey its own id",
            b.display(),
            a.display()
        ),
    );
    std::fs::remove_file(&a).expect("rm");
    wait_for(
        &dev,
        &format!(
            "{} removed: journey `welcome` now comes from {}",
            a.display(),
            b.display()
        ),
    );
    wait_for(&dev, "journey welcome: now version 2");
    assert!(
        !dev.printed().iter().any(|l| l.contains("stays published")),
        "{:#?}",
        dev.printed()
    );
    drop(dev);
}

/// A port in use fails at once, saying which flag to change, and leaves no data folder behind.
#[test]
fn dev_on_a_port_in_use_says_so_and_writes_nothing() {
    let (_dir, journeys, data) = folder("dev-port", "welcome.yaml", JOURNEY);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = waymark()
        .args(["dev", "--journeys"])
        .arg(&journeys)
        .args(["--port", &port, "--data"])
        .arg(&data)
        .output()
        .expect("waymark dev");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("--port"),
        "{err}"
    );
    assert!(!data.exists(), "{} was created", data.display());
}

/// `dev --journeys journeys/waymark.yaml`: refused before anything is written, saying that the
/// file holds the folder's settings and to pass the folder.
#[test]
fn dev_given_the_settings_file_says_to_pass_its_folder() {
    let (_dir, journeys, data) = folder("dev-settings-file", "welcome.yaml", JOURNEY);
    let settings = journeys.join("waymark.yaml");
    std::fs::write(&settings, "caps:\n  push: {max: 3, per: 1d}\n").expect("write");
    let out = waymark()
        .args(["dev", "--port", "0", "--journeys"])
        .arg(&settings)
        .arg("--data")
        .arg(&data)
        .output()
        .expect("waymark dev");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {} holds the settings of the folder {dir} (its caps and topics), not a journey: pass the folder instead, `--journeys {dir}`, which runs its journeys with these settings\n",
            settings.display(),
            dir = journeys.display()
        )
    );
    assert!(!data.exists(), "{} was created", data.display());
}

/// A settings file nothing reads (a `waymark.yml` beside `waymark.yaml`, a `waymark.json`) is
/// warned of at start, and as one appears while dev runs: its caps and topics do not apply.
/// Each is told once.
#[test]
fn dev_warns_of_a_settings_file_it_does_not_read_at_start_and_when_one_appears() {
    let (_dir, journeys, data) = folder("dev-unread-settings", "welcome.yaml", JOURNEY);
    std::fs::write(
        journeys.join("waymark.yaml"),
        "caps:\n  push: {max: 3, per: 1d}\n",
    )
    .expect("write");
    let yml = journeys.join("waymark.yml");
    std::fs::write(&yml, "caps:\n  sms: {max: 1, per: 1d}\n").expect("write");
    let dev = start(&journeys, &data);
    let warned = |file: &Path| {
        format!(
            "{}:1:1: warning: this settings file is not read",
            file.display()
        )
    };
    wait_for(&dev, &warned(&yml));

    // when a waymark.json appears while it runs, it is warned of too
    let json = journeys.join("waymark.json");
    std::fs::write(&json, r#"{"caps": {"email": {"max": 1, "per": "1d"}}}"#).expect("write");
    wait_for(&dev, &warned(&json));
    std::thread::sleep(Duration::from_millis(2500));
    let printed = dev.printed();
    for file in [&yml, &json] {
        assert_eq!(
            printed
                .iter()
                .filter(|l| l.starts_with(&warned(file)))
                .count(),
            1,
            "{printed:#?}"
        );
    }
    drop(dev);
}

#[test]
fn dev_shows_its_caps_and_tells_a_changed_waymark_yaml_from_one_changed_back() {
    let (_dir, journeys, data) = folder("dev-caps", "welcome.yaml", JOURNEY);
    let settings = journeys.join("waymark.yaml");
    let caps =
        "caps:\n  push: {max: 3, per: 1d}\ntopics:\n  offers: {name: Offers, default: opt_in}\n";
    std::fs::write(&settings, caps).expect("write");

    // given a dev server on a folder whose waymark.yaml caps pushes and declares a topic,
    // started with a webhook secret in its environment, its banner says so (the secret's
    // name, never its value)
    let dev = start_with_env(
        &journeys,
        &data,
        &[("WAYMARK_SECRET_REWARDS_KEY", "sk_live_banner_9f2")],
    );
    let said = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(line) = dev.printed().into_iter().find(|l| l.contains(what)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "never printed `{what}`: {:?}",
                dev.printed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(
        said("  caps ").trim(),
        "caps       push 3 per 1d per user, across journeys"
    );
    assert_eq!(said("  topics ").trim(), "topics     offers (opt_in)");
    assert_eq!(
        said("  secrets ").trim(),
        "secrets    REWARDS_KEY (from WAYMARK_SECRET_*; values not shown)"
    );
    assert!(
        dev.printed()
            .iter()
            .all(|l| !l.contains("sk_live_banner_9f2")),
        "{:?}",
        dev.printed()
    );

    // when the file's caps change, it says they apply at a restart, and which are in use
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&settings, caps.replace("max: 3", "max: 5")).expect("rewrite");
    assert_eq!(
        said("waymark.yaml changed"),
        "waymark.yaml changed: restart `waymark dev` to apply its caps (push 5 per 1d; in use: push 3 per 1d)"
    );

    // when the edit is undone, there is nothing to restart for
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&settings, caps).expect("restore");
    assert_eq!(
        said("are the ones in use"),
        "waymark.yaml changed: its caps are the ones in use (push 3 per 1d)"
    );

    // when the settings are read from waymark.yml (no waymark.yaml beside it), a change is
    // told by that name
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        journeys.join("waymark.yml"),
        caps.replace("max: 3", "max: 4"),
    )
    .expect("write");
    std::fs::remove_file(&settings).expect("rm");
    assert_eq!(
        said("waymark.yml changed"),
        "waymark.yml changed: restart `waymark dev` to apply its caps (push 4 per 1d; in use: push 3 per 1d)"
    );
    drop(dev);
}

/// A journey keeps its `enrollment_key` for good: a file that changes it while dev runs, or
/// before a restart, is refused with the reason and what to do, and the published version
/// runs on; the file changed back publishes nothing new.
#[test]
fn dev_refuses_a_journey_file_that_changes_its_enrollment_key() {
    let keyed = JOURNEY.replace(
        "trigger:\n  event: signed_up\n",
        "trigger:\n  event: signed_up\nenrollment_key: event.account_id\n",
    );
    let (_dir, journeys, data) = folder("dev-key", "welcome.yaml", &keyed);
    let file = journeys.join("welcome.yaml");
    let dev = start(&journeys, &data);
    wait_for(&dev, "waymark dev: 1 journey(s) from");
    let (_, admin_key) = keys(&data);
    let version = |dev: &Dev| {
        journeys_of(dev, &admin_key)
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| j["id"] == "welcome")
            .and_then(|j| j["version"].as_u64())
    };
    assert_eq!(version(&dev), Some(1));
    let refusal = format!(
        "{}: `enrollment_key` is `event.account_id` in the published version 1 of journey `welcome` and `event.plan_id` here: a journey keeps its key for good",
        file.display()
    );

    // changed while dev runs: refused, version 1 runs on
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, keyed.replace("event.account_id", "event.plan_id")).expect("rewrite");
    wait_for(&dev, &refusal);
    assert_eq!(version(&dev), Some(1));

    // removed: refused too (`none` here)
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, JOURNEY).expect("rewrite");
    wait_for(
        &dev,
        "`event.account_id` in the published version 1 of journey `welcome` and none here",
    );
    assert_eq!(version(&dev), Some(1));
    drop(dev);

    // changed before a restart: refused at start, and version 1 still listed, running on
    // with its file there (not told as left without one)
    std::fs::write(&file, keyed.replace("event.account_id", "event.plan_id")).expect("rewrite");
    let dev = start(&journeys, &data);
    wait_for(&dev, &refusal);
    assert_eq!(version(&dev), Some(1));
    wait_for(
        &dev,
        &format!(
            "journey `welcome` (version 1) runs on as published: its file {} has errors (above)",
            file.display()
        ),
    );
    assert!(
        !dev.printed().iter().any(|l| l.contains("no valid file")),
        "{:#?}",
        dev.printed()
    );

    // the key as published again: the same journey, no new version
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, &keyed).expect("rewrite");
    wait_for(&dev, "journey welcome: unchanged (version 1)");
    assert_eq!(version(&dev), Some(1));
}
