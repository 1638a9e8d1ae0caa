//! The published JSON Schema (`schema/journey.schema.json`) is generated from the Rust types; this
//! test fails when they drift. Regenerate with `WAYMARK_BLESS=1 cargo test -p waymark-shared --test schema`.

use std::path::Path;

#[test]
fn published_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/journey.schema.json");
    let generated =
        serde_json::to_string_pretty(&waymark::journey::schema()).expect("schema") + "\n";
    if std::env::var_os("WAYMARK_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "schema/journey.schema.json is out of date: run WAYMARK_BLESS=1 cargo test -p waymark-shared --test schema"
    );
}

#[test]
fn schema_describes_every_step_action() {
    let schema = waymark::journey::schema().to_string();
    for action in [
        "wait",
        "wait_until",
        "wait_for",
        "branch",
        "split",
        "send",
        "update",
        "exit",
    ] {
        assert!(
            schema.contains(&format!("\"{action}\"")),
            "schema lacks `{action}`"
        );
    }
}
