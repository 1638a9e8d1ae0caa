//! Segment compatibility: Segment's own Python library (`segment-analytics-python`, pinned in
//! infra/requirements.txt, installed into .venv/ by `make tools`) sends identify, track, page,
//! screen, alias and group to a real `waymark dev`, in its three ways of sending (background
//! batches, gzip, sync_mode), and the profiles it reads back must hold what was sent. The client
//! side is cli/tests/segment_client.py.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{start, text, TempDir};

/// One journey per event the library's calls become, so each is kept in the profile's history;
/// the group's only enrolls when the group's id and traits arrive as the event's properties.
const JOURNEYS: [(&str, &str); 4] = [
    ("cart_abandoned", ""),
    ("page_viewed", ""),
    ("screen_viewed", ""),
    (
        "group_joined",
        "\n  where: \"event.group_id == 'acme' and event.name == 'Acme' and event.plan == 'enterprise'\"",
    ),
];

/// The workspace's `.venv/bin/python` if it can import the library, or why it cannot.
fn python() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!("no {}", python.display()));
    }
    let out = Command::new(&python)
        .args(["-c", "import segment.analytics.client"])
        .output()
        .expect("run the venv's python");
    if !out.status.success() {
        return Err(format!(
            "{} cannot import segment.analytics: {}",
            python.display(),
            text(&out.stderr).trim()
        ));
    }
    Ok(python)
}

#[test]
fn segments_python_library_is_understood() {
    let python = match python() {
        Ok(p) => p,
        // `make test` sets WAYMARK_MOTO_ENDPOINT, after `make tools` made the venv.
        Err(why) if std::env::var_os("WAYMARK_MOTO_ENDPOINT").is_some() => {
            panic!("{why}: run `make tools` (it installs infra/requirements.txt into .venv/)")
        }
        Err(why) => {
            eprintln!("skipped: {why} (run `make tools` to install segment-analytics-python)");
            return;
        }
    };

    let dir = TempDir::new("segment");
    let journeys = dir.path().join("journeys");
    std::fs::create_dir_all(&journeys).expect("mkdir");
    for (event, filter) in JOURNEYS {
        let yaml = format!(
            "id: on_{event}\nname: On {event}\ntrigger:\n  event: {event}{filter}\n\
             steps:\n  - id: pause\n    wait: 1d\n"
        );
        std::fs::write(journeys.join(format!("{event}.yaml")), yaml).expect("write journey");
    }
    let data = dir.path().join("data");
    let dev = start(&journeys, &data);
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("keys.json")).expect("keys.json"))
            .expect("keys.json is JSON");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/segment_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("WAYMARK_URL", &dev.url)
        .env(
            "WAYMARK_WRITE_KEY",
            keys["write_key"].as_str().expect("write key"),
        )
        .env(
            "WAYMARK_ADMIN_KEY",
            keys["admin_key"].as_str().expect("admin key"),
        )
        .output()
        .expect("run segment_client.py");
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}
