//! Each example journey's digest, pinned (`examples/expected/digests.txt`): publishing a journey
//! file that did not change makes no new version only while its digest stays, so a release that
//! changed how an unchanged journey serializes would start every deployed journey again on a new
//! version. After an intended change to an example, bless it with `WAYMARK_BLESS=1`.

use std::path::PathBuf;

fn digests(dir: &std::path::Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples/journeys")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "waymark.yaml")
        })
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&f).expect("read");
        let j = waymark::dsl::parse(&name, &text).expect("a valid example");
        out.push_str(&format!("{name} {}\n", j.digest()));
    }
    out
}

#[test]
fn example_journeys_keep_their_digests() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("WAYMARK_DIGEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("examples/journeys"));
    let got = digests(&dir);
    if std::env::var_os("WAYMARK_DIGEST_DIR").is_some() {
        print!("{got}");
        return;
    }
    let pinned = root.join("examples/expected/digests.txt");
    if std::env::var_os("WAYMARK_BLESS").is_some() {
        std::fs::write(&pinned, &got).expect("bless");
    }
    let want = std::fs::read_to_string(&pinned).unwrap_or_default();
    assert_eq!(
        got, want,
        "an example journey's digest moved: see this file's header"
    );
}
