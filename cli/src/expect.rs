//! Expected timelines: `waymark simulate --expect FILE` compares a run with a file kept next to
//! the journeys (a golden file), and `--bless` writes it.

use std::path::Path;

use anyhow::{Context, Result};
use similar::TextDiff;

/// How a simulated timeline compares with its expected file.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same, line for line.
    Same { lines: usize },
    /// Not the same: a unified diff from the file (`-`) to the run (`+`), and how many lines of
    /// each side are not in the other.
    Differs {
        diff: String,
        missing: usize,
        extra: usize,
    },
}

/// Compares `actual` (the run) with `expected` (the file's text); `file` names it in the diff.
pub fn compare(file: &str, expected: &str, actual: &str) -> Verdict {
    if expected == actual {
        return Verdict::Same {
            lines: actual.lines().count(),
        };
    }
    let diff = TextDiff::from_lines(expected, actual);
    let (mut missing, mut extra) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Delete => missing += 1,
            similar::ChangeTag::Insert => extra += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let text = diff
        .unified_diff()
        .context_radius(1)
        .header(&format!("{file} (expected)"), "simulated")
        .to_string();
    Verdict::Differs {
        diff: text,
        missing,
        extra,
    }
}

/// Reads the expected file, saying how to make it when there is none.
pub fn read(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read {}: write it with --bless, then review it",
            file.display()
        )
    })?;
    // An editor that saved it with a byte order mark first holds the same lines.
    let text = match text.strip_prefix('\u{FEFF}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    // A checkout that turned its line ends into CRLF (git's autocrlf on Windows) holds the same
    // lines: JSON lines carry no raw carriage return of their own.
    let mut text = if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    // An editor that drops the last line's end leaves the same lines.
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Writes the run as the expected file.
pub fn bless(file: &Path, actual: &str) -> Result<()> {
    std::fs::write(file, actual).with_context(|| format!("cannot write {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_the_same() {
        assert_eq!(
            compare("x.jsonl", "a\nb\n", "a\nb\n"),
            Verdict::Same { lines: 2 }
        );
    }

    #[test]
    fn a_file_with_crlf_line_ends_reads_as_the_same_lines() {
        let dir = std::env::temp_dir().join(format!("waymark-expect-crlf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("x.jsonl");
        std::fs::write(&file, "{\"a\":1}\r\n{\"b\":\"x\\r\\n\"}\r\n").expect("write");
        let expected = read(&file).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            compare("x.jsonl", &expected, "{\"a\":1}\n{\"b\":\"x\\r\\n\"}\n"),
            Verdict::Same { lines: 2 }
        );
    }

    #[test]
    fn a_file_without_its_last_line_end_reads_as_the_same_lines() {
        let dir =
            std::env::temp_dir().join(format!("waymark-expect-no-eol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("x.jsonl");
        std::fs::write(&file, "{\"a\":1}\n{\"b\":2}").expect("write");
        let expected = read(&file).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            compare("x.jsonl", &expected, "{\"a\":1}\n{\"b\":2}\n"),
            Verdict::Same { lines: 2 }
        );
    }

    #[test]
    fn a_file_saved_with_a_byte_order_mark_reads_as_the_same_lines() {
        let dir = std::env::temp_dir().join(format!("waymark-expect-bom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("x.jsonl");
        std::fs::write(&file, "\u{FEFF}{\"a\":1}\n{\"b\":2}\n").expect("write");
        let expected = read(&file).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            compare("x.jsonl", &expected, "{\"a\":1}\n{\"b\":2}\n"),
            Verdict::Same { lines: 2 }
        );
    }

    #[test]
    fn a_difference_is_a_unified_diff_with_counts() {
        let Verdict::Differs {
            diff,
            missing,
            extra,
        } = compare("x.jsonl", "a\nb\nc\nd\n", "a\nB\nc\nd\ne\n")
        else {
            panic!("they differ");
        };
        assert_eq!((missing, extra), (1, 2));
        assert!(
            diff.starts_with("--- x.jsonl (expected)\n+++ simulated\n"),
            "{diff}"
        );
        assert!(diff.contains("\n-b\n+B\n"), "{diff}");
        assert!(diff.contains("\n+e\n"), "{diff}");
        // One line of context: `a` around the first change, not the whole file.
        assert!(!diff.contains(" d\n c\n"), "{diff}");
    }
}
