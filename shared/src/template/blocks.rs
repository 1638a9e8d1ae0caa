//! A template's block tags (`{% if %}` … `{% endif %}`, `for`, `macro`, …) paired with their
//! ends, to tell which one the template left open: MiniJinja finds that only at the end of the
//! text, and names the text's last stretch. Reads text only (comments, strings and `{% raw %}`
//! blocks skipped); never judges a template MiniJinja reads.

use super::used::{self, Part};

/// The tags that open a block, each closed by `end` and its name (`set` only in its block form,
/// `{% set name %}…{% endset %}`, with no `=`); [`super::fixed_text_past`] reads them too.
pub(super) const OPENERS: [&str; 10] = [
    "if",
    "for",
    "macro",
    "call",
    "filter",
    "with",
    "autoescape",
    "block",
    "set",
    "raw",
];

/// The block tag of `source` that is not closed, as its keyword and the byte offset of its
/// `{%`: the innermost one when several are open. `None` when every block is closed, when a
/// block tag itself is not closed (`{% if x` with no `%}`), or when the ends do not pair with
/// the openings (an `{% endfor %}` where an `if` is open): that is another mistake than a
/// missing end, which MiniJinja's own error tells.
pub fn unclosed(source: &str) -> Option<(&'static str, usize)> {
    let (parts, tags) = used::layout(source);
    let mut open: Vec<(&'static str, usize)> = Vec::new();
    for tag in tags {
        let text = &source[tag.clone()];
        if !text.starts_with("{%") {
            continue;
        }
        let body = text[2..].trim_start_matches(['-', '+']).trim_start();
        let word: &str = body
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let opens = OPENERS.iter().find(|o| **o == word);
        let ends = word
            .strip_prefix("end")
            .and_then(|w| OPENERS.iter().find(|o| **o == w));
        if opens.is_none() && ends.is_none() {
            continue;
        }
        if text.len() < 4 || !text.ends_with("%}") {
            return None;
        }
        if let Some(&kind) = opens {
            if kind == "set" && assigns(source, &parts, tag.clone()) {
                continue;
            }
            open.push((kind, tag.start));
        } else if let Some(&kind) = ends {
            match open.pop() {
                Some((was, _)) if was == kind => {}
                _ => return None,
            }
        }
    }
    open.pop()
}

/// Whether the `{% set %}` tag at `tag` assigns a value (`{% set x = 1 %}`) rather than opening
/// a block: an `=` in its code that is not part of `==`, `!=`, `<=` or `>=`.
fn assigns(
    source: &str,
    parts: &[(std::ops::Range<usize>, Part)],
    tag: std::ops::Range<usize>,
) -> bool {
    let bytes = source.as_bytes();
    tag.clone().any(|i| {
        bytes[i] == b'='
            && used::part_at(parts, i) == Part::Code
            && !matches!(bytes.get(i + 1), Some(b'='))
            && !matches!(
                i.checked_sub(1).and_then(|j| bytes.get(j)),
                Some(b'=' | b'!' | b'<' | b'>')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_left_open_is_the_innermost_one() {
        for (source, expected) in [
            ("{% if a %}x{% endif %}", None),
            ("Hi\n{% if a %}x\nmore", Some(("if", 3))),
            (
                "{% for i in x %}{% if i %}y{% endif %}\n{%- if b -%}\nz",
                Some(("if", 39)),
            ),
            ("{% for i in x %}{% if i %}y{% endfor %}", None),
            ("{% set x = 1 %}{% set y %}a{% endset %}", None),
            ("{% set y | upper %}a", Some(("set", 0))),
            ("{% set x = a == b %}{% if x %}", Some(("if", 20))),
            // Not tags: in a comment, a string, a raw block.
            (
                "{# {% if a %} #}{{ '{% for %}' }}{% raw %}{% if %}{% endraw %}",
                None,
            ),
            // A tag that is not closed itself: MiniJinja's error says so.
            ("{% if a %}x{% endif", None),
            (
                "{% macro m() %}{% call m() %}{% endcall %}",
                Some(("macro", 0)),
            ),
        ] {
            assert_eq!(unclosed(source), expected, "{source}");
        }
    }
}
