//! The offline commands: `validate`, `simulate`, `render`, `token` (and `publish`'s checks,
//! before it asks an API anything), as a user runs them.

mod support;

use std::path::Path;

use support::{data_with_a_dead_letter, dead_letter_lines, run, text, waymark, TempDir};

const WELCOME: &str = "\
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
        title: \"Welcome, {{ profile.first_name | default('there') }}\"
        body: \"Glad you are here.\"
";

/// `wait` misspelled on line 7, column 5.
const BROKEN: &str = "\
id: broken
name: Broken
trigger:
  event: signed_up
steps:
  - id: first
    wiat: 30m
";

const SCRIPT: &str = r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","traits":{"first_name":"Ann","push_tokens":[{"platform":"fcm","token":"tok-ann"}]}}
{"at":"2026-12-01T10:01:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"m-1","properties":{}}
"#;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/journeys")
}

#[test]
fn validate_accepts_good_files_and_counts_them() {
    let dir = TempDir::new("validate-ok");
    dir.write("welcome.yaml", WELCOME);
    dir.write("waymark.yaml", "caps:\n  push: {max: 3, per: 1d}\n");
    let out = run(&["validate", &dir.path().display().to_string()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: 1 journey");
}

/// A settings file named with its extension in upper case is read as the folder's settings,
/// as a journey file's extension is read in any case (it was read as neither).
#[test]
fn validate_reads_a_settings_file_whose_extension_is_in_upper_case() {
    let dir = TempDir::new("validate-upper-settings");
    dir.write("welcome.yaml", WELCOME);
    let settings = dir.write("waymark.YAML", "caps:\n  pigeon: {max: 3, per: 1d}\n");
    let folder = dir.path().display().to_string();
    let out = run(&["validate", &folder]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:3: caps.pigeon: unknown channel",
            settings.display()
        )),
        "{err}"
    );
    // Beside the lower-case name, it is the one not read, and said to be.
    dir.write("waymark.YAML", "caps:\n  push: {max: 3, per: 1d}\n");
    dir.write("waymark.yaml", "caps:\n  push: {max: 2, per: 1d}\n");
    let err = text(&run(&["validate", &folder]).stderr);
    assert!(
        err.contains(&format!("{}:1:1: this settings file is not read: its folder's settings are read from waymark.yaml beside it", settings.display())),
        "{err}"
    );
}

/// A file with more errors than are shown says how many more there are, and the count is all
/// of them; a file whose read stopped before its end is counted as "at least".
#[test]
fn validate_says_how_many_errors_it_does_not_show() {
    let dir = TempDir::new("validate-many");
    let steps = |n: usize| -> String {
        (0..n)
            .map(|i| format!("  - id: s{i}\n    wait: {i}x\n"))
            .collect()
    };
    let many = dir.write(
        "many.yaml",
        &format!(
            "id: many\nname: M\ntrigger: {{event: e}}\nsteps:\n{}",
            steps(25)
        ),
    );
    let out = run(&["validate", &many.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 22, "{err}");
    assert!(
        lines[19].contains("steps[19].wait: \"19x\" is not a duration"),
        "{err}"
    );
    assert_eq!(
        &lines[20..],
        [
            format!(
                "{}: and 5 more error(s), not shown (20 of 25 shown): fix these and validate it again",
                many.display()
            )
            .as_str(),
            "25 error(s)"
        ],
        "{err}"
    );
    // Past the most one read finds, the count is the least there are.
    let huge = dir.write(
        "huge.yaml",
        &format!(
            "id: huge\nname: H\ntrigger: {{event: e}}\nsteps:\n{}",
            steps(230)
        ),
    );
    let out = run(&["validate", &huge.display().to_string()]);
    let err = text(&out.stderr);
    assert!(
        err.ends_with(&format!(
            "{}: and at least 180 more error(s), not shown (20 shown; its read stopped after 200): fix these and validate it again\nat least 200 error(s)\n",
            huge.display()
        )),
        "{err}"
    );
    // A file with 20 errors or fewer is listed whole, as before.
    let few = dir.write(
        "few.yaml",
        &format!(
            "id: few\nname: F\ntrigger: {{event: e}}\nsteps:\n{}",
            steps(3)
        ),
    );
    let err = text(&run(&["validate", &few.display().to_string()]).stderr);
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(err.ends_with("\n3 error(s)\n"), "{err}");
}

/// A journey file named beside its folder, or twice through `./`, is one journey: not a second
/// one whose id is "also used by" itself.
#[test]
fn validate_reads_a_file_named_twice_once() {
    let dir = TempDir::new("validate-twice");
    let file = dir.write("welcome.yaml", WELCOME);
    let folder = dir.path().display().to_string();
    let again = dir.path().join(".").join("welcome.yaml");
    let out = run(&[
        "validate",
        &folder,
        &file.display().to_string(),
        &again.display().to_string(),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: 1 journey");
}

/// A journey's `topic` is checked against its folder's `waymark.yaml`: one it does not declare
/// fails at its line and column with the declared one it is nearest to, whether the folder or
/// the file is named; declared, it passes.
#[test]
fn validate_refuses_a_topic_the_folder_does_not_declare() {
    let dir = TempDir::new("validate-topic");
    let file = dir.write(
        "welcome.yaml",
        &WELCOME.replace("name: Welcome\n", "name: Welcome\ntopic: newsleter\n"),
    );
    let settings = dir.write(
        "waymark.yaml",
        "topics:\n  newsletter: {name: Newsletter}\n",
    );
    for path in [dir.path().display().to_string(), file.display().to_string()] {
        let out = run(&["validate", &path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let err = text(&out.stderr);
        let prefix = format!(
            "{}:3:8: topic: topic `newsleter` is not declared",
            file.display()
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains("did you mean `newsletter`?")),
            "{path}: {err}"
        );
    }
    std::fs::write(&settings, "topics:\n  newsleter: {name: Newsletter}\n").expect("write");
    let out = run(&["validate", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A journey file named on its own is judged with its folder's settings, as the folder's
/// journeys are: errors of the settings file are told at its own path, line and column (once,
/// with other files of the folder, or the folder, named too), and a settings file beside it
/// that nothing reads is warned of.
#[test]
fn validate_of_a_journey_file_checks_its_folders_settings() {
    let dir = TempDir::new("validate-file-settings");
    let file = dir.write(
        "welcome.yaml",
        &WELCOME.replace("name: Welcome\n", "name: Welcome\ntopic: offers\n"),
    );
    let other = dir.write("other.yaml", &WELCOME.replace("id: welcome", "id: other"));
    let settings = dir.write(
        "waymark.yaml",
        "caps:\n  pigeon: {max: 3, per: 1d}\ntopics:\n  offers: {name: Offers}\n",
    );
    let told = format!("{}:2:3: caps.pigeon: unknown channel", settings.display());
    let (file, other, folder) = (
        file.display().to_string(),
        other.display().to_string(),
        dir.path().display().to_string(),
    );
    for args in [
        vec!["validate", &file],
        vec!["validate", &file, &other],
        vec!["validate", &folder, &file],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert_eq!(err.matches(&told).count(), 1, "{args:?}: {err}");
        // A file named with its folder is read once (its id not told as taken by itself).
        assert!(err.ends_with("\n1 error(s)\n"), "{args:?}: {err}");
    }
    // Fixed, the file's topic is judged by it; a waymark.json beside it is warned of.
    std::fs::write(&settings, "topics:\n  offers: {name: Offers}\n").expect("write");
    let json = dir.write(
        "waymark.json",
        r#"{"caps": {"push": {"max": 3, "per": "1d"}}}"#,
    );
    let out = run(&["validate", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: 1 journey");
    assert!(
        text(&out.stderr).starts_with(&format!(
            "{}:1:1: warning: this settings file is not read",
            json.display()
        )),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&settings, "topics:\n  news: {name: News}\n").expect("write");
    let out = run(&["validate", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("topic `offers` is not declared"),
        "{}",
        text(&out.stderr)
    );
}

/// A folder with no journey file (its journeys in a subfolder, or none yet) fails `validate`
/// and `simulate`, saying where journeys are read: a CI step that checks nothing does not pass.
#[test]
fn validate_and_simulate_fail_on_a_folder_with_no_journey() {
    let dir = TempDir::new("validate-none");
    std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
    dir.write("sub/welcome.yaml", WELCOME);
    let script = dir.write("events.jsonl", SCRIPT);
    let folder = dir.path().display().to_string();
    let out = run(&["validate", &folder]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no journey files") && err.contains("not those of its subfolders"),
        "{err}"
    );
    let out = run(&[
        "simulate",
        "--journeys",
        &folder,
        "--events",
        &script.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no journey files"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
}

/// The settings file named on its own is checked as settings, not read as a journey.
#[test]
fn validate_checks_a_settings_file_named_on_its_own() {
    let dir = TempDir::new("validate-settings-file");
    let good = dir.write("waymark.yaml", "caps:\n  push: {max: 3, per: 1d}\n");
    let out = run(&["validate", &good.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: the settings");
    let journey = dir.write("welcome.yaml", WELCOME);
    let out = run(&[
        "validate",
        &good.display().to_string(),
        &journey.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: 1 journey");
    std::fs::write(&good, "caps:\n  pigeon: {max: 3, per: 1d}\n").expect("write");
    let out = run(&["validate", &good.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("pigeon") && !err.contains("missing field `id`"),
        "{err}"
    );
}

/// A settings file named on its own is the file checked: `waymark.yml` alone is read and its
/// errors told; beside a `waymark.yaml` (which the folder's settings are read from) or named
/// `waymark.json` (which nothing reads, not even as a journey), it is refused, saying which
/// file is read, instead of "ok" for a file whose caps never apply.
#[test]
fn validate_checks_the_settings_file_it_is_given_and_refuses_one_never_read() {
    let dir = TempDir::new("validate-settings-named");
    let yml = dir.write("waymark.yml", "caps:\n  pigeon: {max: 3, per: 1d}\n");
    let out = run(&["validate", &yml.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}:2:3: caps.pigeon: unknown channel",
            yml.display()
        )),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&yml, "caps:\n  push: {max: 3, per: 1d}\n").expect("write");
    let out = run(&["validate", &yml.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: the settings");
    // A good waymark.yaml beside it is what the folder reads.
    dir.write("waymark.yaml", "caps:\n  sms: {max: 2, per: 7d}\n");
    let out = run(&["validate", &yml.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1:1: this settings file is not read: its folder's settings are read from waymark.yaml beside it (waymark.yaml, else waymark.yml): keep one settings file\n1 error(s)\n",
            yml.display()
        )
    );
    let json = dir.write(
        "waymark.json",
        r#"{"caps": {"push": {"max": 3, "per": "1d"}}}"#,
    );
    let out = run(&["validate", &json.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1:1: this settings file is not read (nor as a journey): a folder's settings are read from waymark.yaml or waymark.yml: move what it says into waymark.yaml beside it\n1 error(s)\n",
            json.display()
        )
    );
    let alone = TempDir::new("validate-settings-json");
    let json = alone.write(
        "waymark.json",
        r#"{"caps": {"push": {"max": 3, "per": "1d"}}}"#,
    );
    let out = run(&["validate", &json.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1:1: this settings file is not read (nor as a journey): a folder's settings are read from waymark.yaml or waymark.yml: rename it waymark.yaml\n1 error(s)\n",
            json.display()
        )
    );
}

/// A folder named to `validate` whose settings file is one nothing reads (a `waymark.json`, or a
/// `waymark.yml` beside the `waymark.yaml` that is read) fails, naming that file and what to
/// write instead, as when the file is named on its own: not "ok" for caps that never apply.
/// `simulate`, which runs all the same, warns of it.
#[test]
fn validate_of_a_folder_refuses_a_settings_file_never_read() {
    let dir = TempDir::new("validate-folder-settings-unread");
    dir.write("welcome.yaml", WELCOME);
    let folder = dir.path().display().to_string();
    let json = dir.write(
        "waymark.json",
        r#"{"caps": {"push": {"max": 3, "per": "1d"}}}"#,
    );
    let out = run(&["validate", &folder]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:1:1: this settings file is not read (nor as a journey): a folder's settings are read from waymark.yaml or waymark.yml: rename it waymark.yaml\n1 error(s)\n",
            json.display()
        )
    );
    // Named on its own as well: told once.
    let out = run(&["validate", &folder, &json.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr).matches("is not read").count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let _yaml = dir.write("waymark.yaml", "caps:\n  sms: {max: 2, per: 7d}\n");
    let yml = dir.write("waymark.yml", "caps:\n  push: {max: 3, per: 1d}\n");
    let out = run(&["validate", &folder]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{json}:1:1: this settings file is not read (nor as a journey): a folder's settings are read from waymark.yaml or waymark.yml: move what it says into waymark.yaml beside it\n\
             {yml}:1:1: this settings file is not read: its folder's settings are read from waymark.yaml beside it (waymark.yaml, else waymark.yml): keep one settings file\n\
             2 error(s)\n",
            json = json.display(),
            yml = yml.display()
        )
    );
    // `simulate` runs on the one read, and warns of the others.
    let script = dir.write("events.jsonl", SCRIPT);
    let out = run(&[
        "simulate",
        "--journeys",
        &folder,
        "--events",
        &script.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:1:1: warning: this settings file is not read",
            yml.display()
        )),
        "{err}"
    );
    // The one read alone: ok.
    std::fs::remove_file(&json).expect("rm");
    std::fs::remove_file(&yml).expect("rm");
    let out = run(&["validate", &folder]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// `simulate --journeys waymark.yaml`: the folder's settings file where journeys go is not
/// read as a journey (every key of it an error of a journey's), but refused, saying that it
/// holds the folder's settings and to pass the folder; one its folder does not read (a
/// `waymark.json`) is said to be not read as well.
#[test]
fn simulate_given_the_settings_file_says_to_pass_its_folder() {
    let dir = TempDir::new("simulate-settings-file");
    dir.write("welcome.yaml", WELCOME);
    let settings = dir.write("waymark.yaml", "caps:\n  push: {max: 3, per: 1d}\n");
    let script = dir.write("events.jsonl", SCRIPT).display().to_string();
    let folder = dir.path().display().to_string();
    let simulate = |journeys: &Path| {
        run(&[
            "simulate",
            "--journeys",
            &journeys.display().to_string(),
            "--events",
            &script,
        ])
    };
    let out = simulate(&settings);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {} holds the settings of the folder {folder} (its caps and topics), not a journey: pass the folder instead, `--journeys {folder}`, which runs its journeys with these settings\n",
            settings.display()
        )
    );
    let json = dir.write(
        "waymark.json",
        r#"{"caps": {"sms": {"max": 1, "per": "1d"}}}"#,
    );
    let out = simulate(&json);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "is a settings file of the folder {folder}, not a journey: pass the folder instead, `--journeys {folder}`; and this settings file is not read"
        )) && !err.contains("unknown field"),
        "{err}"
    );
    // The folder runs.
    let out = simulate(dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// stderr a pipe whose reader is gone (`waymark validate … 2>&1 | head -0`): what cannot be
/// told is lost, but the command neither panics (exit 101) nor loses its exit status.
#[test]
fn a_closed_error_console_keeps_the_exit_status() {
    let dir = TempDir::new("closed-stderr");
    let good = dir.write("welcome.yaml", WELCOME).display().to_string();
    let broken = dir.write("broken.yaml", BROKEN).display().to_string();
    let missing = dir.path().join("missing.yaml").display().to_string();
    // A valid file with a warning (on stderr), a file with errors, a path that is not there,
    // and a simulation that cannot run.
    let warned = dir
        .write(
            "vip.yaml",
            "id: vip\nname: VIP\ntrigger: {event: ordered}\nsteps:\n  - id: br\n    branch: {cases: [{when: \"event.vip == true\", goto: vip}]}\n  - id: regular\n    send: {sms: {body: regular}}\n  - id: vip\n    send: {sms: {body: vip}}\n",
        )
        .display()
        .to_string();
    let script = dir.write("events.jsonl", SCRIPT).display().to_string();
    for (args, code) in [
        (vec!["validate", &good], 0),
        (vec!["validate", &warned], 0),
        (vec!["validate", &broken], 1),
        (vec!["validate", &missing], 1),
        (vec!["render", &missing], 1),
        (
            vec!["simulate", "--journeys", &broken, "--events", &script],
            2,
        ),
    ] {
        let mut child = waymark()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run waymark");
        // The reader goes before the command writes anything.
        drop(child.stderr.take());
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(code), "{args:?}");
    }
}

/// A folder with no journey file fails `validate` also beside a path that holds one: a
/// misnamed folder in a CI step is not passed over.
#[test]
fn validate_fails_on_an_empty_folder_among_several_paths() {
    let dir = TempDir::new("validate-some-none");
    std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
    let file = dir.write("welcome.yaml", WELCOME).display().to_string();
    let empty = dir.path().join("empty").display().to_string();
    for paths in [[&file, &empty], [&empty, &file]] {
        let out = run(&["validate", paths[0], paths[1]]);
        assert_eq!(out.status.code(), Some(1), "{paths:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("{empty}: no journey files")),
            "{paths:?}: {err}"
        );
        assert!(text(&out.stdout).is_empty(), "{paths:?}");
    }
}

#[test]
fn validate_reports_file_line_col_and_fails() {
    let dir = TempDir::new("validate-bad");
    let good = dir.write("welcome.yaml", WELCOME);
    let bad = dir.write("broken.yaml", BROKEN);
    let out = run(&[
        "validate",
        &good.display().to_string(),
        &bad.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let prefix = format!("{}:7:5: ", bad.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains("wiat")),
        "expected a line starting {prefix:?} naming the field, got:\n{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

/// A filter given what it cannot take would fail every message at send time: `validate`
/// refuses it, at the filter's file position, saying how to write it.
#[test]
fn validate_refuses_a_filter_given_the_wrong_arguments() {
    let dir = TempDir::new("validate-filter-arguments");
    let file = dir.write(
        "code.yaml",
        "id: code\nname: Code\ntrigger:\n  event: signed_up\nsteps:\n  - id: hello\n    send:\n      push:\n        title: Hello\n        body: |\n          Hi {{ profile.first_name }},\n          your code is {{ event.code | replace('-') }}\n",
    );
    let name = file.display().to_string();
    let out = run(&["validate", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // Line 12, at `replace`.
    let column = "          your code is {{ event.code | ".len() + 1;
    let said = format!("{name}:12:{column}: ");
    assert!(
        err.lines().any(|l| l.starts_with(&said)
            && l.contains("the filter `replace` takes two or three arguments")
            && l.contains("replace('old', 'new')")),
        "expected a line starting {said:?}, got:\n{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

/// A currency code or a locale written as text that cannot be one would print wrong in every
/// message: `validate` refuses each, at the argument's file position, with the nearest code.
#[test]
fn validate_refuses_a_currency_that_cannot_be() {
    let dir = TempDir::new("validate-currency");
    let file = dir.write(
        "price.yaml",
        "id: price\nname: Price\ntrigger:\n  event: price_dropped\nsteps:\n  - id: push\n    send:\n      push:\n        title: Price drop\n        body: \"Now {{ event.price | currency('EURO') }}\"\n  - id: inbox\n    send:\n      in_app:\n        title: Price drop\n        body: \"Now {{ event.price | currency(event.currency, locale='German') }}\"\n",
    );
    let name = file.display().to_string();
    let out = run(&["validate", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let code = format!(
        "{name}:10:{}: ",
        "        body: \"Now {{ event.price | currency(".len() + 1
    );
    let locale = format!(
        "{name}:15:{}: ",
        "        body: \"Now {{ event.price | currency(event.currency, locale=".len() + 1
    );
    assert!(
        err.lines().any(|l| l.starts_with(&code)
            && l.contains("'EURO' is not an ISO 4217 currency code: did you mean 'EUR'?")),
        "expected a line starting {code:?}, got:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with(&locale) && l.contains("'German' is not a locale tag")),
        "expected a line starting {locale:?}, got:\n{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

/// `now()` (a condition's) and a Python method in a template would fail every send:
/// `validate` refuses them, in a profile update's value too, at their file position.
#[test]
fn validate_refuses_a_value_called_as_a_function() {
    let dir = TempDir::new("validate-value-called");
    let file = dir.write(
        "stamp.yaml",
        "id: stamp\nname: Stamp\ntrigger:\n  event: go\nsteps:\n  - id: stamp\n    update:\n      set:\n        seen_at: \"{{ now() }}\"\n  - id: hello\n    send:\n      in_app:\n        title: Hi\n        body: \"Hi {{ profile.name.upper() }}\"\n",
    );
    let name = file.display().to_string();
    let out = run(&["validate", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // Line 9, at `now`; line 14, at `upper`.
    let now = format!("{name}:9:{}: ", "        seen_at: \"{{ ".len() + 1);
    let upper = format!(
        "{name}:14:{}: ",
        "        body: \"Hi {{ profile.name.".len() + 1
    );
    assert!(
        err.lines().any(|l| l.starts_with(&now)
            && l.contains("`now` is a value, not a function")
            && l.contains("write `{{ now }}`")),
        "expected a line starting {now:?}, got:\n{err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with(&upper)
            && l.contains("`profile.name` has no method `upper()`")
            && l.contains("write `{{ profile.name | upper }}`")),
        "expected a line starting {upper:?}, got:\n{err}"
    );
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn validate_checks_the_settings_file_too() {
    let dir = TempDir::new("validate-settings");
    dir.write("welcome.yaml", WELCOME);
    let settings = dir.write("waymark.yaml", "caps:\n  push: {max: 3, per: often}\n");
    let out = run(&["validate", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", settings.display())),
        "got:\n{err}"
    );
}

#[test]
fn validate_accepts_the_examples() {
    if !examples().is_dir() {
        return;
    }
    let out = run(&["validate", &examples().display().to_string()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok: "));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

/// A branch's path that runs on, in file order, into another path's step passes `validate`
/// with a warning at the step that runs on, saying how to end or join it.
#[test]
fn validate_warns_of_a_path_that_runs_into_another() {
    let dir = TempDir::new("validate-runs-on");
    let file = dir.write(
        "vip.yaml",
        "id: vip\nname: VIP\ntrigger: {event: ordered}\nsteps:\n  - id: br\n    branch: {cases: [{when: \"event.vip == true\", goto: vip}]}\n  - id: regular\n    send: {sms: {body: regular}}\n  - id: vip\n    send: {sms: {body: vip}}\n",
    );
    let name = file.display().to_string();
    let out = run(&["validate", &name]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: 1 journey");
    let err = text(&out.stderr);
    let said = format!("{name}:7:5: warning: step `regular` runs on into `vip`");
    assert!(err.contains(&said), "{err}");
    // `simulate` says so too, on stderr, its timeline on stdout as it is.
    let script = dir.write(
        "events.jsonl",
        r#"{"at":"2026-12-01T10:00:00Z","userId":"ann","event":"ordered","messageId":"o1"}"#,
    );
    let out = run(&[
        "simulate",
        "--journeys",
        &dir.path().display().to_string(),
        "--events",
        &script.display().to_string(),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&said), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("warning"));
}

#[test]
fn simulate_prints_the_timeline_as_json_lines() {
    let dir = TempDir::new("simulate");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), WELCOME).expect("write");
    let events = dir.write("events.jsonl", SCRIPT);
    let out = run(&[
        "simulate",
        "--journeys",
        &journeys.display().to_string(),
        "--events",
        &events.display().to_string(),
        "--horizon",
        "1d",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert!(!lines.is_empty());
    let push: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["type"] == "message" && l["channel"] == "push")
        .collect();
    assert_eq!(push.len(), 1, "one push, got:\n{stdout}");
    assert_eq!(push[0]["user_id"], "ann");
    assert_eq!(push[0]["at"], "2026-12-01T10:31:00Z");
}

/// A wait that ends after the horizon is said on stderr (the timeline would otherwise stop short
/// of it with nothing said); a run that ends with nothing left to happen says nothing.
#[test]
fn simulate_says_when_it_stops_at_its_horizon_with_a_wait_still_to_end() {
    let dir = TempDir::new("simulate-horizon");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), WELCOME).expect("write");
    let events = dir.write("events.jsonl", SCRIPT);
    let simulate = |horizon: &str| {
        run(&[
            "simulate",
            "--journeys",
            &journeys.display().to_string(),
            "--events",
            &events.display().to_string(),
            "--horizon",
            horizon,
        ])
    };
    // given a 30-minute wait after the last line, and a horizon of 10 minutes
    let out = simulate("10m");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("\"message\""));
    assert!(
        text(&out.stderr).contains(
            "note: the simulation stopped at its horizon, 2026-12-01T10:11:00Z (10m after the last script line), with 1 enrollment still waiting, until 2026-12-01T10:31:00Z: what comes after the horizon is not in the timeline"
        ),
        "{}",
        text(&out.stderr)
    );
    // and with a horizon past it, the push is in the timeline and nothing is said
    let out = simulate("1h");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"message\""));
    assert!(
        !text(&out.stderr).contains("horizon"),
        "{}",
        text(&out.stderr)
    );
}

/// `--journeys FILE` runs that journey with its folder's `waymark.yaml`, as `validate` checks
/// it: its topic is declared there and its push cap applies, so the run is the one of the
/// folder it is alone in.
#[test]
fn simulate_of_one_journey_file_goes_by_its_folders_settings() {
    let dir = TempDir::new("simulate-file-settings");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    let file = journeys.join("twice.yaml");
    std::fs::write(
        &file,
        "id: twice\nname: Twice\ntopic: news\ntrigger: {event: signed_up}\nsteps:\n  - id: hello\n    send: {push: {title: Hello, body: Hello.}}\n  - id: again\n    send: {push: {title: Again, body: Again.}}\n",
    )
    .expect("write");
    std::fs::write(
        journeys.join("waymark.yaml"),
        "caps:\n  push: {max: 1, per: 1d}\ntopics:\n  news: {name: News}\n",
    )
    .expect("write");
    let events = dir.write("events.jsonl", SCRIPT);
    let simulate = |path: &Path| {
        run(&[
            "simulate",
            "--journeys",
            &path.display().to_string(),
            "--events",
            &events.display().to_string(),
            "--horizon",
            "1d",
        ])
    };
    let out = run(&["validate", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let of_file = simulate(&file);
    assert!(
        of_file.status.success(),
        "stderr: {}",
        text(&of_file.stderr)
    );
    let timeline = text(&of_file.stdout);
    assert!(
        timeline.lines().any(|l| l.contains("\"step\":\"again\"")
            && l.contains("\"reason\":\"capped\"")
            && l.contains("at most 1 push per 1d")),
        "{timeline}"
    );
    let of_folder = simulate(&journeys);
    assert!(of_folder.status.success(), "{}", text(&of_folder.stderr));
    assert_eq!(timeline, text(&of_folder.stdout));
}

/// `--stats`: the funnel a script makes, as `waymark stats` shows a deployed journey's, with
/// the A/B split's paths and their conversion rates.
#[test]
fn simulate_prints_the_stats_of_a_run() {
    let examples = examples();
    let events = examples.join("../events/streaming_upsell.jsonl");
    let out = run(&[
        "simulate",
        "--journeys",
        &examples.display().to_string(),
        "--events",
        &events.display().to_string(),
        "--stats",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "streaming_upsell v1, all versions: entered 2, converted 2, exited 0, completed 1, held out 1\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "split copy_test:\n  \
             path       entered  converted    rate\n  \
             features         0          0       -\n  \
             momentum         1          1  100.0%\n  \
             (holdout)        1          1  100.0%\n"
        ),
        "{stdout}"
    );
    // A journey of the set that no one entered says so in one line.
    assert!(
        stdout.contains("\ncart_abandonment v1: no one entered\n"),
        "{stdout}"
    );
}

/// A journey's test in CI: `--bless` writes the expected timeline, `--expect` checks the next
/// run against it and fails with a diff once the journey changes what it does.
#[test]
fn simulate_checks_the_timeline_against_an_expected_file() {
    let dir = TempDir::new("simulate-expect");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), WELCOME).expect("write");
    let events = dir.write("events.jsonl", SCRIPT);
    let expected = dir.path().join("welcome.expected.jsonl");
    let simulate = |extra: &[&str]| {
        let mut args = vec![
            "simulate".to_string(),
            "--journeys".to_string(),
            journeys.display().to_string(),
            "--events".to_string(),
            events.display().to_string(),
            "--horizon".to_string(),
            "1d".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    };
    let file = expected.display().to_string();

    // No file yet: the error says how to make one (exit 2: the check cannot run, as opposed
    // to a timeline that differs, exit 1).
    let out = simulate(&["--expect", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--bless"),
        "{}",
        text(&out.stderr)
    );

    // --bless writes what the plain command prints.
    let out = simulate(&["--expect", &file, "--bless"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let printed = simulate(&[]);
    assert_eq!(
        std::fs::read_to_string(&expected).expect("the expected file"),
        text(&printed.stdout)
    );

    // The same journey: it passes, quietly on stdout.
    let out = simulate(&["--expect", &file]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("as expected"),
        "{}",
        text(&out.stderr)
    );

    // The wait changed from 30m to 1h: the push moves, the check fails and shows where.
    std::fs::write(
        journeys.join("welcome.yaml"),
        WELCOME.replace("wait: 30m", "wait: 1h"),
    )
    .expect("write");
    let out = simulate(&["--expect", &file]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let diff = text(&out.stdout);
    assert!(diff.contains("(expected)"), "{diff}");
    assert!(
        diff.lines().any(|l| l.starts_with('-')
            && l.contains("\"channel\":\"push\"")
            && l.contains("10:31:00Z")),
        "the push at 10:31 is missing:\n{diff}"
    );
    assert!(
        diff.lines().any(|l| l.starts_with('+')
            && l.contains("\"channel\":\"push\"")
            && l.contains("11:01:00Z")),
        "the push at 11:01 is new:\n{diff}"
    );
    assert!(
        text(&out.stderr).contains("differs"),
        "{}",
        text(&out.stderr)
    );

    // --bless needs --expect.
    let out = simulate(&["--bless"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn simulate_reports_a_bad_script_line() {
    let dir = TempDir::new("simulate-bad");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), WELCOME).expect("write");
    let events = dir.write(
        "events.jsonl",
        "{\"at\":\"2026-12-01T10:00:00Z\"}\nnot json\n",
    );
    let out = run(&[
        "simulate",
        "--journeys",
        &journeys.display().to_string(),
        "--events",
        &events.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "a script that cannot run");
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
}

/// Runs `waymark args`, reads the first line it prints and closes its stdout, as `| head -1`
/// does; returns that line, its exit status and its stderr.
fn run_read_one_line(args: &[&str]) -> (String, std::process::ExitStatus, String) {
    use std::io::BufRead as _;
    let mut child = waymark()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run waymark");
    let mut first = String::new();
    {
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("read a line");
    }
    let out = child.wait_with_output().expect("wait");
    (first, out.status, text(&out.stderr))
}

/// `waymark simulate … | head` and `waymark render … | head`: output longer than a pipe holds
/// (64 KiB), its reader gone after a line. The command ends quietly with status 0, as
/// `git log | head` does: not "error: writing output: Broken pipe" (exit 2), nor a panic
/// (exit 101).
#[test]
fn output_into_a_reader_that_stops_early_ends_quietly() {
    let dir = TempDir::new("closed-stdout");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    std::fs::write(journeys.join("welcome.yaml"), WELCOME).expect("write");
    let script: String = (0..400)
        .map(|i| {
            format!(
                "{{\"at\":\"2026-12-01T10:00:00Z\",\"type\":\"identify\",\"userId\":\"u{i}\",\"traits\":{{\"push_tokens\":[{{\"platform\":\"fcm\",\"token\":\"tok-{i}\"}}]}}}}\n\
                 {{\"at\":\"2026-12-01T10:01:00Z\",\"userId\":\"u{i}\",\"event\":\"signed_up\",\"messageId\":\"m-{i}\"}}\n"
            )
        })
        .collect();
    let events = dir.write("events.jsonl", &script);
    let simulate = [
        "simulate",
        "--journeys",
        &journeys.display().to_string(),
        "--events",
        &events.display().to_string(),
    ]
    .map(str::to_string);
    let full = run(&simulate.each_ref().map(String::as_str));
    assert!(full.status.success(), "{}", text(&full.stderr));
    assert!(full.stdout.len() > 256 * 1024, "{}", full.stdout.len());
    // Steps enough for a flowchart past 64 KiB, with a wait every 100 (the engine's bound).
    let steps: String = (0..990)
        .map(|i| {
            let wait = if i % 100 == 99 {
                format!("  - id: wait_{i}\n    wait: 1m\n")
            } else {
                String::new()
            };
            format!("  - id: step_number_{i}\n    send: {{push: {{title: A push title that says enough {i}, body: Hello.}}}}\n{wait}")
        })
        .collect();
    let big = dir.write(
        "big.yaml",
        &format!("id: big\nname: Big\ntrigger: {{event: signed_up}}\nsteps:\n{steps}"),
    );
    let render = ["render".to_string(), big.display().to_string()];
    let full = run(&render.each_ref().map(String::as_str));
    assert!(full.status.success(), "{}", text(&full.stderr));
    assert!(full.stdout.len() > 64 * 1024, "{}", full.stdout.len());
    for args in [&simulate[..], &render[..]] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (first, status, stderr) = run_read_one_line(&args);
        assert!(!first.is_empty(), "{args:?}");
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn render_prints_a_mermaid_flowchart() {
    let dir = TempDir::new("render");
    let file = dir.write("welcome.yaml", WELCOME);
    let out = run(&["render", &file.display().to_string()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let m = text(&out.stdout);
    assert!(m.starts_with("flowchart TD\n"), "{m}");
    assert!(m.contains("wait 30m"), "{m}");
    assert!(m.contains("push: Welcome"), "{m}");

    let bad = dir.write("broken.yaml", BROKEN);
    let out = run(&["render", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(":7:5:"));
}

/// `render` given a folder (as `validate` and `simulate` take one) says it renders one file,
/// and gives the command that renders each of its journey files (`.yaml`, `.yml`, `.json`, not
/// `waymark.yaml`), each path quoted as a shell needs it: not an OS error shaped as a file's
/// line and column. Each command, run by a shell, renders its file.
#[test]
fn render_given_a_folder_names_its_journey_files() {
    let tmp = TempDir::new("render-folder");
    let folder = tmp.path().join("my journeys");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let write = |name: &str, text: &str| {
        let p = folder.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let welcome = write("welcome.yaml", WELCOME);
    let theirs = write("it's.yml", &WELCOME.replace("id: welcome", "id: theirs"));
    let json = write(
        "welcome.json",
        r#"{"id": "hello", "name": "Hello", "trigger": {"event": "signed_up"},
            "steps": [{"id": "hi", "send": {"push": {"title": "Hi", "body": "Hello."}}}]}"#,
    );
    write("waymark.yaml", "caps:\n  push: {max: 3, per: 1d}\n");
    let out = run(&["render", &folder.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is a folder, and render prints one journey file's flowchart"),
        "{err}"
    );
    let commands: Vec<&str> = err
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("waymark render "))
        .collect();
    let quoted = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    assert_eq!(
        commands,
        [quoted(&theirs), quoted(&json), quoted(&welcome)],
        "{err}"
    );
    assert!(!err.contains("waymark.yaml"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    assert!(text(&out.stdout).is_empty());
    for command in commands {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("\"$WAYMARK\" render {command}"))
            .env("WAYMARK", env!("CARGO_BIN_EXE_waymark"))
            .output()
            .expect("run sh");
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("flowchart TD\n"), "{command}");
    }

    let empty = TempDir::new("render-empty-folder");
    let out = run(&["render", &empty.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("holds no journey file"),
        "{}",
        text(&out.stderr)
    );
}

/// `publish` and `render` given a folder's settings file where a journey file goes do not read
/// it as a journey (every key of it an error of a journey's): they say what it is and what to
/// pass instead, as `simulate --journeys` does; `publish` before it asks the API anything.
#[test]
fn publish_and_render_given_the_settings_file_say_what_to_pass() {
    let dir = TempDir::new("settings-as-journey");
    let welcome = dir.write("welcome.yaml", WELCOME);
    let settings = dir.write("waymark.yaml", "caps:\n  push: {max: 3, per: 1d}\n");
    let folder = dir.path().display().to_string();
    let (shown, data) = (
        settings.display().to_string(),
        dir.path().join(".waymark").display().to_string(),
    );
    let publish = |file: &str| {
        run(&[
            "publish",
            file,
            "--api",
            "http://127.0.0.1:9",
            "--key",
            "wk_x",
            "--data",
            &data,
        ])
    };
    let out = publish(&shown);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {shown} holds the settings of the folder {folder} (its caps and topics), not a journey: pass the folder instead, `waymark publish {folder}`, which publishes its journeys, checked against these settings\n"
        )
    );
    let out = run(&["render", &shown]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {shown} holds the settings of the folder {folder} (its caps and topics), not a journey: render its journey file instead, `waymark render {}`\n",
            welcome.display()
        )
    );
    // One its folder does not read: said so too, with why.
    let json = dir
        .write("waymark.json", r#"{"caps": {}}"#)
        .display()
        .to_string();
    for out in [publish(&json), run(&["render", &json])] {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "error: {json} is a settings file of the folder {folder}, not a journey: "
            )) && err.contains("; and this settings file is not read")
                && !err.contains("unknown field"),
            "{err}"
        );
    }
}

/// `publish` with no API given (nor a `waymark dev` running) tells a bad file as such, before
/// it says there is no API to publish to: the files are checked first.
#[test]
fn publish_checks_the_files_before_it_needs_an_api() {
    let dir = TempDir::new("publish-files-first");
    dir.write("welcome.yaml", WELCOME);
    let settings = dir.write("waymark.yaml", "caps:\n  push: {max: 0, per: 1d}\n");
    let data = dir.path().join(".waymark").display().to_string();
    let folder = dir.path().display().to_string();
    let out = run(&["publish", &folder, "--data", &data]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:10: caps.push.max: `max: 0`",
            settings.display()
        )) && err.ends_with("error: 1 error(s): nothing published\n")
            && !err.contains("no API URL"),
        "{err}"
    );
    // Good files, and no API: that is said.
    std::fs::write(&settings, "caps:\n  push: {max: 1, per: 1d}\n").expect("write");
    let out = run(&["publish", &folder, "--data", &data]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("no API URL"),
        "{}",
        text(&out.stderr)
    );
}

/// `publish` of a journey file checks its folder's settings as `validate` does: their errors
/// are told and nothing is published (its topic was left unchecked, silently), and a settings
/// file beside it that nothing reads is warned of; a folder named with such a file is refused,
/// as `validate` refuses it.
#[test]
fn publish_of_a_journey_file_checks_its_folders_settings() {
    let dir = TempDir::new("publish-file-settings");
    let file = dir
        .write(
            "welcome.yaml",
            &WELCOME.replace("name: Welcome\n", "name: Welcome\ntopic: offers\n"),
        )
        .display()
        .to_string();
    let settings = dir.write(
        "waymark.yaml",
        "caps:\n  pigeon: {max: 3, per: 1d}\ntopics:\n  offers: {name: Offers}\n",
    );
    let data = dir.path().join(".waymark").display().to_string();
    let publish = |path: &str| {
        run(&[
            "publish",
            path,
            "--api",
            "http://127.0.0.1:9",
            "--key",
            "wk_x",
            "--data",
            &data,
        ])
    };
    let out = publish(&file);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:3: caps.pigeon: unknown channel",
            settings.display()
        )) && err.ends_with("error: 1 error(s): nothing published\n"),
        "{err}"
    );
    // Fixed, but for a topic it does not declare: the file's topic is judged by it.
    std::fs::write(&settings, "topics:\n  news: {name: News}\n").expect("write");
    let out = publish(&file);
    let err = text(&out.stderr);
    assert!(
        err.contains("topic `offers` is not declared") && err.contains("nothing published"),
        "{err}"
    );
    // A waymark.json beside it: warned of beside a file, refused beside a folder named.
    std::fs::write(&settings, "topics:\n  offers: {name: Offers}\n").expect("write");
    let json = dir.write("waymark.json", r#"{"caps": {}}"#);
    let warned = format!(
        "{}:1:1: warning: this settings file is not read",
        json.display()
    );
    let out = publish(&file);
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&warned) && !err.contains("nothing published"),
        "{err}"
    );
    let out = publish(&dir.path().display().to_string());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:1:1: this settings file is not read",
            json.display()
        )) && err.ends_with("error: 1 error(s): nothing published\n"),
        "{err}"
    );
}

#[test]
fn token_needs_dev_keys() {
    let dir = TempDir::new("token");
    let out = run(&["token", "ann", "--data", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("waymark dev"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dead_letters_are_listed_then_redriven_to_the_queue() {
    let dir = TempDir::new("dead-letters");
    let data = data_with_a_dead_letter(&dir);
    let data_arg = data.display().to_string();

    // Listed as JSON lines: when, how many attempts, why, and the message itself.
    let lines = dead_letter_lines(&data);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["attempts"], 5);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("taken 5 times"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[0]["message"]["type"], "wake", "{}", lines[0]);
    assert_eq!(lines[0]["message"]["user_id"], "ann");

    // Redriven: back in the queue, and no longer a dead letter.
    let out = run(&["dead-letters", "--data", &data_arg, "--redrive"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("1 message(s) moved back to the queue"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["dead-letters", "--data", &data_arg]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "");
    assert!(text(&out.stderr).contains("no dead letters"));
    let db = waymark::local::open(&data.join("store.redb")).expect("store");
    let q = waymark::local::LocalQueue::new(db, std::sync::Arc::new(waymark::clock::SystemClock));
    assert_eq!(q.len().expect("len"), 1, "the message is queued again");
}

#[test]
fn dead_letters_needs_a_dev_data_folder() {
    let dir = TempDir::new("dead-letters-none");
    let out = run(&["dead-letters", "--data", &dir.path().display().to_string()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no `waymark dev` data"),
        "{}",
        text(&out.stderr)
    );
}

/// The journey an exploratory tester wrote: a fixed date where `wait_until.date` takes a path.
const BLACK_FRIDAY: &str = "\
id: black_friday
name: Black Friday teaser
trigger: {event: signed_up}
steps:
  - id: wait_bf
    wait_until: {date: \"2026-11-27\", time: \"08:00\"}
  - id: teaser
    send: {email: {subject: \"It's on\", text: \"Black Friday starts now\"}}
";

#[test]
fn validate_says_a_wait_until_date_is_a_path_and_what_to_do_with_a_fixed_one() {
    let dir = TempDir::new("validate-date");
    let file = dir.write("black_friday.yaml", BLACK_FRIDAY);
    let out = run(&["validate", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:6:18: steps[0].wait_until.date: `2026-11-27` is a fixed date, and a fixed date cannot be written here: `date` takes a path to a time on the trigger event (event.*, also trigger.*), the event a wait_for met (waited.*) or the profile, like event.starts_at or profile.trial_ends_at. Send the date on the trigger event, or keep it on the profile (an `update` step before this one can set it: `update: {{set: {{sale_starts_at: \"2026-11-27\"}}}}`, then `date: profile.sale_starts_at`)\n1 error(s)\n",
            file.display()
        )
    );
    // What it says to write validates.
    let fixed = BLACK_FRIDAY.replace(
        "  - id: wait_bf\n    wait_until: {date: \"2026-11-27\",",
        "  - id: mark\n    update: {set: {sale_starts_at: \"2026-11-27\"}}\n  - id: wait_bf\n    wait_until: {date: profile.sale_starts_at,",
    );
    dir.write("black_friday.yaml", &fixed);
    let out = run(&["validate", &file.display().to_string()]);
    assert!(out.status.success(), "{fixed}\n{}", text(&out.stderr));
}
