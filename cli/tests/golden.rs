//! `waymark simulate` on every example prints the expected timeline (golden files under
//! `examples/expected/`). After an intended change, regenerate them with
//! `WAYMARK_BLESS=1 cargo test -p waymark-cli --test golden` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn simulate(events: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .arg("simulate")
        .arg("--journeys")
        .arg(root().join("examples/journeys"))
        .arg("--events")
        .arg(events)
        .output()
        .expect("run waymark simulate");
    assert!(
        out.status.success(),
        "waymark simulate {} failed: {}",
        events.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn every_example_matches_its_golden_timeline() {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root().join("examples/events"))
        .expect("examples/events")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "one event script per example journey");
    let bless = std::env::var_os("WAYMARK_BLESS").is_some();
    let mut mismatches = Vec::new();
    for script in scripts {
        let name = script.file_name().expect("file name").to_owned();
        let expected_path = root().join("examples/expected").join(&name);
        let actual = simulate(&script);
        // Deterministic: two runs print the same thing.
        assert_eq!(
            actual,
            simulate(&script),
            "{} is not deterministic",
            script.display()
        );
        if bless {
            std::fs::write(&expected_path, &actual).expect("write golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected == actual {
            // What the README shows: the same check with `--expect` passes.
            let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
                .arg("simulate")
                .arg("--journeys")
                .arg(root().join("examples/journeys"))
                .arg("--events")
                .arg(&script)
                .arg("--expect")
                .arg(&expected_path)
                .output()
                .expect("run waymark simulate --expect");
            assert!(
                out.status.success() && out.stdout.is_empty(),
                "simulate --expect {}: {}{}",
                expected_path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let first = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(expected.lines().count().min(actual.lines().count()));
            mismatches.push(format!(
                "{}: differs from line {} on\n  expected: {}\n  actual:   {}",
                expected_path.display(),
                first + 1,
                expected.lines().nth(first).unwrap_or("(end)"),
                actual.lines().nth(first).unwrap_or("(end)")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden timelines differ (WAYMARK_BLESS=1 to regenerate after reviewing):\n{}",
        mismatches.join("\n")
    );
}
