//! The filters and tests a template's source names (`| titel`, `is odd_number`), with their lines,
//! read from its tags without running it: MiniJinja looks them up only at render time, so an
//! unknown one would otherwise fail every send. Reads text only; knows no filter itself.

use std::ops::Range;

/// What a name after `|` (or `{% filter %}`) or after `is` / `is not` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Filter,
    Test,
}

/// One name a template uses, and its line in the template (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub line: usize,
    /// Where the name ends in the source (bytes): its arguments, if any, follow.
    pub end: usize,
}

/// One argument of a filter call (`'%H:%M'`, `tz='Europe/Paris'`, `tz=profile.zone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argument<'a> {
    /// The keyword it is given by (`tz`), if any.
    pub keyword: Option<&'a str>,
    /// The argument's text when it is one string literal and nothing else, quotes and escapes
    /// as written (`'%H:%M'`); `None` for any other expression (`profile.zone`, `'%' ~ x`).
    pub literal: Option<&'a str>,
    /// The line of the argument in the template (1-based).
    pub line: usize,
    /// Where the argument starts in the source (bytes): its keyword, if it has one.
    pub at: usize,
}

/// The arguments of the filter call whose name ends at `end` (see [`Used::end`]): what its
/// parentheses hold, split at their top-level commas. `None` when no `(` follows the name (the
/// filter is used without arguments) or the call is not closed (MiniJinja reports that).
pub fn arguments(source: &str, end: usize) -> Option<Vec<Argument<'_>>> {
    let bytes = source.as_bytes();
    let skip_space = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(end);
    if bytes.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        i = skip_space(i);
        match bytes.get(i) {
            None => return None,
            Some(b')') => return Some(out),
            _ => {}
        }
        let (line, from) = (source[..i].matches('\n').count() + 1, i);
        // `name=` (but not `name ==`) gives the argument by keyword.
        let word_end = word_end(bytes, i);
        let after = skip_space(word_end);
        let keyword = (word_end > i
            && bytes.get(after) == Some(&b'=')
            && bytes.get(after + 1) != Some(&b'='))
        .then(|| &source[i..word_end]);
        if keyword.is_some() {
            i = skip_space(after + 1);
        }
        // The value: up to a comma or the closing parenthesis outside brackets and strings.
        let start = i;
        let mut depth = 0usize;
        let mut strings = 0;
        let mut other = false;
        loop {
            let &c = bytes.get(i)?;
            match c {
                b',' | b')' if depth == 0 => break,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b'\'' | b'"' => {
                    i = string_end(bytes, i)?;
                    strings += 1;
                    continue;
                }
                c if c.is_ascii_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            other = true;
            i += 1;
        }
        let text = source[start..i].trim_end();
        out.push(Argument {
            keyword,
            literal: (strings == 1 && !other).then_some(text),
            line,
            at: from,
        });
        if bytes.get(i) == Some(&b',') {
            i += 1;
        }
    }
}

/// Where the word (letters, digits, `_`) starting at `from` ends.
fn word_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    if bytes
        .get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        while bytes
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            i += 1;
        }
    }
    i
}

/// Just after the string whose opening quote is at `from`; `None` when it is not closed.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let quote = bytes[from];
    let mut i = from + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// What a stretch of a template's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Text printed as written, outside every tag.
    Text,
    /// A `{{ }}` or `{% %}` tag, delimiters included, outside its strings.
    Code,
    /// A string inside a tag, a `{# #}` comment, or what a `{% raw %}` block holds: nothing
    /// in it is a tag, an expression or text another language would read.
    Quoted,
}

/// A template's stretches of [`Part`] and its tags: see [`layout`].
pub type Layout = (Vec<(Range<usize>, Part)>, Vec<Range<usize>>);

/// The source cut into its stretches of [`Part`], in order, covering it whole (byte ranges),
/// and the ranges of its tags (`{{` to `}}`, strings included; an unclosed one runs to the end).
pub fn layout(source: &str) -> Layout {
    let bytes = source.as_bytes();
    let len = bytes.len();
    let mut parts = Vec::new();
    let mut tags = Vec::new();
    let push = |parts: &mut Vec<(Range<usize>, Part)>, from: usize, to: usize, part| {
        let to = to.min(len);
        if from < to {
            parts.push((from..to, part));
        }
    };
    let mut text = 0;
    let mut i = 0;
    while i + 1 < len {
        if bytes[i] != b'{' || !matches!(bytes[i + 1], b'#' | b'{' | b'%') {
            i += 1;
            continue;
        }
        push(&mut parts, text, i, Part::Text);
        if bytes[i + 1] == b'#' {
            let end = find(source, i + 2, "#}").map_or(len, |j| j + 2);
            push(&mut parts, i, end, Part::Quoted);
            i = end;
            text = i;
            continue;
        }
        let close = if bytes[i + 1] == b'{' { b"}}" } else { b"%}" };
        let start = i;
        let mut code = i;
        let mut j = i + 2;
        // Where the tag ends, and where its body does (before its close, if it has one).
        let (end, body_end) = loop {
            if j >= len {
                break (len, len);
            }
            if bytes[j..].starts_with(close) {
                break (j + 2, j);
            }
            let c = bytes[j];
            if c == b'\'' || c == b'"' {
                push(&mut parts, code, j, Part::Code);
                let mut k = j + 1;
                while k < len && bytes[k] != c {
                    k += if bytes[k] == b'\\' { 2 } else { 1 };
                }
                let after = (k + 1).min(len);
                push(&mut parts, j, after, Part::Quoted);
                code = after;
                j = after;
                continue;
            }
            j += 1;
        };
        push(&mut parts, code, end, Part::Code);
        tags.push(start..end);
        i = end;
        text = i;
        // `{% raw %}` ... `{% endraw %}`: what it holds is printed as written, no tag.
        if close == b"%}" && tag_body(&source[start + 2..body_end]) == "raw" {
            let mut at = i;
            let mut inner_end = len;
            while let Some(open) = find(source, at, "{%") {
                let Some(shut) = find(source, open + 2, "%}") else {
                    break;
                };
                if tag_body(&source[open + 2..shut]) == "endraw" {
                    inner_end = open;
                    break;
                }
                at = open + 2;
            }
            push(&mut parts, i, inner_end, Part::Quoted);
            i = inner_end;
            text = i;
        }
    }
    push(&mut parts, text, len, Part::Text);
    (parts, tags)
}

/// The [`Part`] the byte at `at` is in (`Text` past the end).
pub fn part_at(parts: &[(Range<usize>, Part)], at: usize) -> Part {
    parts
        .iter()
        .find(|(r, _)| r.contains(&at))
        .map_or(Part::Text, |(_, p)| *p)
}

/// Every filter and test named in `source`'s `{{ }}` and `{% %}` tags, in order (comments and
/// `{% raw %}` blocks skipped, strings inside tags skipped).
pub fn names(source: &str) -> Vec<Used<'_>> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'#' => {
                i = find(source, i + 2, "#}").map_or(bytes.len(), |j| j + 2);
            }
            b'{' | b'%' => {
                let close = if bytes[i + 1] == b'{' { "}}" } else { "%}" };
                let end = tag(source, i + 2, close, &mut out);
                // `{% raw %}` ... `{% endraw %}`: nothing inside is a tag.
                let body = tag_body(&source[i + 2..end.min(source.len())]);
                i = end + close.len();
                if close == "%}" && body == "raw" {
                    i = raw_end(source, i);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// A tag's text without its whitespace control and spaces (`- raw +` -> `raw`).
fn tag_body(text: &str) -> &str {
    text.trim_matches(['-', '+', ' ', '\t', '\n', '\r'])
}

fn find(source: &str, from: usize, what: &str) -> Option<usize> {
    source.get(from..)?.find(what).map(|j| from + j)
}

/// Just after the `{% endraw %}` that closes a raw block opened before `from`.
fn raw_end(source: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(open) = find(source, at, "{%") {
        let Some(close) = find(source, open + 2, "%}") else {
            break;
        };
        if tag_body(&source[open + 2..close]) == "endraw" {
            return close + 2;
        }
        at = open + 2;
    }
    source.len()
}

/// Reads one tag's tokens from `from` up to its `close` outside strings; returns where `close`
/// starts (the end of the text when it never comes: MiniJinja reports that as a syntax error).
fn tag<'a>(source: &'a str, from: usize, close: &str, out: &mut Vec<Used<'a>>) -> usize {
    let bytes = source.as_bytes();
    let close = close.as_bytes();
    let mut i = from;
    // Whitespace control (`{{-`, `{%+`) is not a token.
    if matches!(bytes.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    // The two tokens before the current one: a word as itself, `|` as itself, anything else as
    // "". A word after `|` is a filter, after `is` or `is not` a test.
    let mut before: [&str; 2] = ["", ""];
    // Tokens read, and the first when it is a word: `{% filter name %}` names a filter.
    let mut count = 0;
    let mut first = "";
    while i < bytes.len() {
        let c = bytes[i];
        if bytes[i..].starts_with(close) {
            return i;
        }
        let token = if c == b'\'' || c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            ""
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &source[start..i];
            let kind = match before {
                [_, "|"] => Some(Kind::Filter),
                ["is", "not"] => Some(Kind::Test),
                [_, "is"] if word != "not" => Some(Kind::Test),
                _ if count == 1 && first == "filter" && close == b"%}" => Some(Kind::Filter),
                _ => None,
            };
            if let Some(kind) = kind {
                out.push(Used {
                    kind,
                    name: word,
                    line: source[..start].matches('\n').count() + 1,
                    end: i,
                });
            }
            if count == 0 {
                first = word;
            }
            word
        } else if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            ""
        } else {
            i += 1;
            if c == b'|' {
                "|"
            } else {
                ""
            }
        };
        before = [before[1], token];
        count += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(source: &str) -> Vec<(Kind, &str, usize)> {
        names(source)
            .into_iter()
            .map(|u| (u.kind, u.name, u.line))
            .collect()
    }

    proptest::proptest! {
        /// Any text, however broken (unclosed tags and strings, multi-byte characters, stray
        /// braces), is read without a panic, and every name found is a word of the text.
        #[test]
        fn any_text_is_read_without_panicking(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{{", "}}", "{%", "%}", "{#", "#}", "|", " is ", " not ", "'", "\"", "\\",
                    "raw", "endraw", "filter", "upper", "x", "é", "🦀", "\n", " ", "-", "+", "{", "}",
                    "date", "(", ")", ",", "=", "tz", "[", "]",
                ]),
                0..40,
            )
        ) {
            let source = parts.concat();
            for used in names(&source) {
                proptest::prop_assert!(source.contains(used.name));
                // A call's arguments, however broken, are read without a panic too.
                for argument in arguments(&source, used.end).unwrap_or_default() {
                    proptest::prop_assert!(argument.literal.is_none_or(|l| source.contains(l)));
                }
                proptest::prop_assert!(used.line >= 1 && used.line <= source.lines().count().max(1));
            }
            // Its layout covers it whole, in order, at character boundaries.
            let (parts, tags) = layout(&source);
            let mut at = 0;
            for (range, _) in &parts {
                proptest::prop_assert_eq!(range.start, at);
                proptest::prop_assert!(source.get(range.clone()).is_some());
                at = range.end;
            }
            proptest::prop_assert_eq!(at, source.len());
            for tag in tags {
                proptest::prop_assert!(source.get(tag).is_some());
            }
        }
    }

    /// Text, tags and what nothing reads as a tag (strings, comments, raw blocks), by place.
    #[test]
    fn a_templates_layout_tells_text_from_tags_and_strings() {
        let source = "Hi ${x} {{ 'a}}' ~ y }}{# {{ z }} #}{% raw %}{{#each}}{% endraw %}{{ w }";
        let (parts, tags) = layout(source);
        let shown: Vec<(&str, Part)> = parts
            .iter()
            .map(|(r, p)| (&source[r.clone()], *p))
            .collect();
        assert_eq!(
            shown,
            [
                ("Hi ${x} ", Part::Text),
                ("{{ ", Part::Code),
                ("'a}}'", Part::Quoted),
                (" ~ y }}", Part::Code),
                ("{# {{ z }} #}", Part::Quoted),
                ("{% raw %}", Part::Code),
                ("{{#each}}", Part::Quoted),
                ("{% endraw %}", Part::Code),
                ("{{ w }", Part::Code),
            ]
        );
        let tags: Vec<&str> = tags.into_iter().map(|r| &source[r]).collect();
        assert_eq!(
            tags,
            ["{{ 'a}}' ~ y }}", "{% raw %}", "{% endraw %}", "{{ w }"]
        );
        assert_eq!(part_at(&parts, 3), Part::Text);
        assert_eq!(part_at(&parts, 13), Part::Quoted);
    }

    #[test]
    fn filters_and_tests_with_their_lines() {
        use Kind::{Filter, Test};
        assert_eq!(
            list("Hi {{ profile.first_name | default('there') | titel }}!"),
            vec![(Filter, "default", 1), (Filter, "titel", 1)]
        );
        assert_eq!(
            list("a\n{% if x is not defined and y is odd_number %}b{% endif %}\n{{ z|upper }}"),
            vec![
                (Test, "defined", 2),
                (Test, "odd_number", 2),
                (Filter, "upper", 3)
            ]
        );
        assert_eq!(
            list("{% if n is divisibleby(3) %}x{% endif %}"),
            vec![(Test, "divisibleby", 1)]
        );
        assert_eq!(
            list("{% filter upper %}hi{% endfilter %}{%- filter lowr -%}x{% endfilter %}"),
            vec![(Filter, "upper", 1), (Filter, "lowr", 1)]
        );
        // Strings, comments and raw blocks name nothing.
        assert_eq!(
            list("{{ 'a | b is c' ~ \"| d\" }}{# {{ x | nope }} #}{% raw %}{{ y | nope }}{% endraw %}{{ w | last }}"),
            vec![(Filter, "last", 1)]
        );
        // `is` inside a word, or `in`, is no test; a loop's `filter` variable is no filter block.
        assert_eq!(
            list("{% for this in items | reverse %}{{ this }}{% endfor %}"),
            vec![(Filter, "reverse", 1)]
        );
        assert_eq!(list("{{ filter }}{% set filter = 1 %}"), vec![]);
        // An unclosed tag ends the scan (MiniJinja reports the syntax error).
        assert_eq!(list("{{ x | upper"), vec![(Filter, "upper", 1)]);
    }
}
