//! Journey files: parsing YAML or JSON with positions, and validating a journey so that every
//! error names the file, line and column and says what to write instead. Never touches a store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde::Serialize;

use crate::journey::{Action, Journey, Template, TriggerKind, WaitFor, WaitWay};
use crate::{shape, template};

/// One problem in a journey file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// Where in the journey, e.g. `steps[2].send.email.subject`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() && self.path != "." {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Positions of every node, by path (`steps[0].wait`).
#[derive(Debug, Default)]
struct Positions {
    by_path: HashMap<String, (usize, usize)>,
    /// Where each value itself starts (for a mapping entry, after its key).
    values: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// The position of `path`, or of its nearest ancestor that has one.
    fn find(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.by_path.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.by_path.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A problem [`to_json`] finds in the file's shape: the part's path, what to say, and, where the
/// path does not place it (a key that is not a word, which has no path), its own line and
/// column.
type ShapeError = (String, String, Option<(usize, usize)>);

fn to_json(
    node: &MarkedYaml<'_>,
    path: &str,
    pos: &mut Positions,
    errors: &mut Vec<ShapeError>,
) -> serde_json::Value {
    use serde_json::Value;
    let start = node.span.start;
    pos.by_path
        .entry(path.to_string())
        .or_insert((start.line(), start.col() + 1));
    pos.values
        .insert(path.to_string(), (start.line(), start.col() + 1));
    match &node.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| to_json(n, &format!("{path}[{i}]"), pos, errors))
                .collect(),
        ),
        YamlData::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.iter() {
                let key = match &k.data {
                    YamlData::Value(s) => match scalar(s) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    YamlData::Representation(text, _, _) => text.to_string(),
                    YamlData::Mapping(inner) => {
                        errors.push((path.to_string(), unquoted_template(path, inner), None));
                        continue;
                    }
                    _ => {
                        // At the key itself (`? [a, b]`): the map's path is where the map starts.
                        let ks = k.span.start;
                        errors.push((
                            path.to_string(),
                            "a key must be a plain word".into(),
                            Some((ks.line(), ks.col() + 1)),
                        ));
                        continue;
                    }
                };
                let p = child(path, &key);
                // A key's own position is more useful than its value's for "unknown field".
                let ks = k.span.start;
                pos.by_path.insert(p.clone(), (ks.line(), ks.col() + 1));
                let value = to_json(v, &p, pos, errors);
                out.insert(key, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => to_json(inner, path, pos, errors),
        YamlData::Alias(_) => {
            errors.push((
                path.to_string(),
                "YAML aliases are not supported: write the value out".into(),
                None,
            ));
            Value::Null
        }
        YamlData::BadValue => {
            errors.push((path.to_string(), "this value cannot be read".into(), None));
            Value::Null
        }
    }
}

/// A map whose key is a map: `body: {{ profile.first_name }}`, a template left unquoted, which
/// YAML reads as a map in a map. What to write: the value in quotes, in single quotes when the
/// template holds a double one (`default("there")`), or, when YAML cut it apart (at a comma) so
/// that it cannot be told again, the whole template as written.
fn unquoted_template(path: &str, inner: &saphyr::AnnotatedMapping<'_, MarkedYaml<'_>>) -> String {
    let words: Option<Vec<String>> = inner
        .iter()
        .map(|(k, v)| match (&k.data, &v.data) {
            (YamlData::Value(Scalar::String(s)), YamlData::Value(Scalar::Null)) => {
                Some(s.to_string())
            }
            _ => None,
        })
        .collect();
    let said = "YAML reads a value that starts with `{` as a map, and a template's `{{ }}` as a map in a map";
    let Some([one]) = words.as_deref() else {
        return format!(
            "{said}: put the whole template, as written, in quotes (`\"…\"`, or `'…'` when it holds a `\"`)"
        );
    };
    let template = format!("{{{{ {one} }}}}");
    let quoted = if template.contains('"') {
        format!("'{}'", template.replace('\'', "''"))
    } else {
        format!("\"{template}\"")
    };
    let key = path.rsplit('.').next().unwrap_or(path);
    let written = if key.is_empty() || key.ends_with(']') {
        quoted
    } else {
        format!("{key}: {quoted}")
    };
    format!("{said}: put the template in quotes, `{written}`")
}

fn scalar(s: &Scalar<'_>) -> serde_json::Value {
    use serde_json::Value;
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

fn path_of(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// How many problems of its shape one read of a file finds at most (each is found by reading
/// the file again past the ones before it): a file with more ends its list with
/// [`READ_STOPPED`], so that a count of them is told as the least there are.
pub const MAX_PROBLEMS_READ: usize = 200;

/// What the last problem of a file's list says when the read stopped at [`MAX_PROBLEMS_READ`].
pub const READ_STOPPED: &str =
    "the read of this file stopped here, after 200 problems: there are more; fix these and validate it again";

/// How many problems of one file a command prints: the rest are counted, in a line that says
/// how many more there are (the file's first problems are the ones to fix first).
pub const MAX_ERRORS_SHOWN: usize = 20;

/// Takes the value at `path` (as [`path_of`] writes it) out of its object, so that the rest
/// of the file can be read past it, or stands in a good value for it (see [`stand_in`]) where
/// taking it out would leave a required field missing or move a list's other items (and their
/// problems' positions with them). `false` when it can do neither: the whole file, a list item
/// with no stand-in, or a value already stood in for.
fn take_out(value: &mut serde_json::Value, path: &str, message: &str) -> bool {
    // A choice that takes no value written with one (`reentry: {after_exit: true}`): read as
    // the choice written bare, as meant.
    if message.ends_with(", expected unit") {
        if let Some((part, choice)) = path.rsplit_once('.') {
            if let Some(v) = value_at_mut(value, part).filter(|v| v.is_object()) {
                *v = serde_json::Value::String(choice.to_string());
                return true;
            }
        }
    }
    let good = stand_in(path, message);
    // A list item (`weekdays[1]`) is stood in for where it is, or kept.
    if let Some((list, index)) = path
        .strip_suffix(']')
        .and_then(|p| p.rsplit_once('['))
        .and_then(|(list, i)| Some((list, i.parse::<usize>().ok()?)))
    {
        let item = value_at_mut(value, list).and_then(|l| l.get_mut(index));
        return match (good, item) {
            (Some(good), Some(v)) if v.as_str() != Some(good) => {
                *v = serde_json::Value::String(good.to_string());
                true
            }
            _ => false,
        };
    }
    let (parent, key) = match path.rsplit_once('.') {
        Some((parent, key)) => (Some(parent), key),
        None => (None, path),
    };
    if key.is_empty() || key.contains('[') {
        return false;
    }
    let holder = match parent {
        Some(parent) => value_at_mut(value, parent),
        None => Some(value),
    };
    let Some(object) = holder.and_then(serde_json::Value::as_object_mut) else {
        return false;
    };
    match (good, object.get_mut(key)) {
        // A number or a truth value too (`date: 5`): taken out, it would leave what goes with
        // it (a `before`) wrongly said to lack it.
        (Some(good), Some(v))
            if (v.is_string() || v.is_number() || v.is_boolean()) && v.as_str() != Some(good) =>
        {
            *v = serde_json::Value::String(good.to_string());
            true
        }
        _ => object.remove(key).is_some(),
    }
}

/// A good value to read in place of the bad one at `path` (serde's `message` about it): for a
/// condition, a duration or a time of day that is required where it stands (a branch case's
/// `when`, a wait's `timeout`, quiet hours' `start`), or a path that others go with (a
/// `wait_until`'s `date`), one of its kind; for a choice, the first
/// of those `message` lists (a weekday in a list of them).
fn stand_in<'a>(path: &str, message: &'a str) -> Option<&'a str> {
    // A field that does not belong (a step's `timeout`) is taken out, whatever its name: a good
    // value would not belong either, and its problem would be listed twice.
    if message.starts_with("unknown field `") {
        return None;
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    let key = key.split('[').next().unwrap_or(key);
    match key {
        "when" | "where" => return Some("exists(event.x)"),
        "wait" | "timeout" | "within" | "before" | "after" | "by_more_than" => return Some("1h"),
        // An `if_past`'s: what it does is its own choice, so the strictest (`go_on` with
        // `by_more_than` would be a problem of its own).
        "then" => return Some("exit"),
        "start" | "end" | "time" => return Some("00:00"),
        "cron" => return Some("0 9 * * *"),
        // A `wait_until`'s, whose `before`, `after` and `time` go with it.
        "date" => return Some("event.x"),
        _ => {}
    }
    let (_, expected) = message
        .strip_prefix("unknown variant `")?
        .split_once("`, expected ")?;
    expected.split('`').nth(1)
}

/// [`value_at`], to change it.
fn value_at_mut<'a>(
    value: &'a mut serde_json::Value,
    path: &str,
) -> Option<&'a mut serde_json::Value> {
    let mut v = value;
    for step in path_steps(path)? {
        v = match step {
            PathStep::Key(k) => v.get_mut(k)?,
            PathStep::Index(i) => v.get_mut(i)?,
        };
    }
    Some(v)
}

/// One step of a path as [`path_of`] writes them: a key, or a list index.
enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// `steps[0].send` as its steps: `steps`, `0`, `send`. `None` for an index that is no number.
fn path_steps(path: &str) -> Option<Vec<PathStep<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(PathStep::Key(key));
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            out.push(PathStep::Index(index.trim_end_matches(']').parse().ok()?));
        }
    }
    Some(out)
}

/// The quote that closed the scalar before the parser's complaint at `line` and `column` (1-based):
/// the last character other than a space before it, on that line or the ones above. saphyr says
/// "double-quoted" for a single-quoted scalar too, so the text decides which it was.
fn quote_before(text: &str, line: usize, column: usize) -> Option<char> {
    // The parser does not count a byte order mark as a column of the first line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().take(line).collect();
    let (last, above) = lines.split_last()?;
    let here: String = last.chars().take(column.saturating_sub(1)).collect();
    std::iter::once(here.as_str())
        .chain(above.iter().rev().copied())
        .find_map(|l| l.trim_end().chars().last())
        .filter(|c| *c == '\'' || *c == '"')
}

/// What the YAML parser's commonest complaints mean for a journey file, and what to write;
/// `quote` is the one that closed the scalar before the complaint ([`quote_before`]).
fn yaml_advice(info: &str, quote: Option<char>) -> &'static str {
    if info.contains("found a tab") || info.contains("tabs") {
        "; YAML indents with spaces only: replace the tab on this line or the one before with spaces"
    } else if info.contains("did not find expected '-' indicator") {
        "; a key here is indented less than the list item above it: indent it as far as the item's first key (the `id:` after `- `)"
    } else if info.contains("did not find expected key") {
        "; a line here is indented differently from the keys beside it (line it up with them), or a text starts with `[`, `{` or a quote and goes on after it (put the whole text in quotes)"
    } else if info.contains("':' must be followed by a valid YAML whitespace") {
        "; write a space after the `:` (a tab is not one)"
    } else if info.contains("'-' must be followed by a valid YAML whitespace") {
        "; write a space after the `-` of a list item (a tab is not one)"
    } else if info.contains("mapping values are not allowed") {
        "; a value holds `: ` (or a key is indented wrongly): put text with a colon in quotes"
    } else if info.contains("invalid Unicode character escape code") {
        "; `\\uD800` to `\\uDFFF` are halves of a character written in two (UTF-16): write both halves one after the other (`\\uD83C\\uDF89`), or the character as one escape (`\\U0001F389`) or as itself"
    } else if info.contains("did not find expected hexadecimal number") {
        "; in double quotes `\\u` takes four hex digits (`\\u00e9`) and `\\U` eight: write a backslash itself as `\\\\`, or put the text in single quotes"
    } else if info.contains("-quoted scalar") && quote == Some('\'') {
        // `name: 'Bob's journey'`: the apostrophe ends the text.
        "; a text in single quotes ends at its next `'`: write an apostrophe inside it as `''` (`'Bob''s journey'`), or put the text in double quotes (`\"Bob's journey\"`)"
    } else if info.contains("-quoted scalar") {
        // `body: "Hi {{ name | default("friend") }}"`: the inner quote ends the text.
        "; a text in double quotes ends at its next `\"`: inside it write single quotes (`default('friend')`), or `\\\"`"
    } else {
        ""
    }
}

/// Where [`join_surrogates`] shortened a text: each joined pair's line and 1-based column in the
/// text read, two characters shorter than it was written.
#[derive(Debug, Default)]
struct Joined {
    at: Vec<(usize, usize)>,
}

impl Joined {
    /// The column in the file as written of `column` on `line` of the text read.
    fn original(&self, line: usize, column: usize) -> usize {
        let before = self
            .at
            .iter()
            .filter(|&&(l, c)| l == line && c < column)
            .count();
        column + 2 * before
    }

    fn map_back(&self, positions: &mut Positions) {
        if self.at.is_empty() {
            return;
        }
        for (line, column) in positions
            .by_path
            .values_mut()
            .chain(positions.values.values_mut())
        {
            *column = self.original(*line, *column);
        }
    }
}

/// The double-quoted text starting at character `start` of `text`, its UTF-16 surrogate pairs
/// (`\ud83c\udf89`) written as YAML's eight-digit escape (`\U0001F389`); `None` when there is
/// none to join there (a half without its other half stays, and saphyr says so).
fn join_surrogates(text: &str, start: usize, joined: &mut Joined) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.get(start) != Some(&'"') {
        return None;
    }
    let hex4 = |at: usize| -> Option<u32> {
        let digits: String = chars.get(at..at + 4)?.iter().collect();
        if digits.chars().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(&digits, 16).ok()
        } else {
            None
        }
    };
    let (mut line, mut column) = (1, 1);
    for &c in &chars[..start] {
        if c == '\n' {
            (line, column) = (line + 1, 1);
        } else {
            column += 1;
        }
    }
    let before = joined.at.len();
    let mut out: String = chars[..=start].iter().collect();
    let mut i = start + 1;
    column += 1;
    while let Some(&c) = chars.get(i) {
        if c == '"' {
            break;
        }
        if c == '\\' {
            let pair = (chars.get(i + 1) == Some(&'u'))
                .then(|| hex4(i + 2))
                .flatten()
                .filter(|high| (0xD800..0xDC00).contains(high))
                .zip(
                    (chars.get(i + 6) == Some(&'\\') && chars.get(i + 7) == Some(&'u'))
                        .then(|| hex4(i + 8))
                        .flatten()
                        .filter(|low| (0xDC00..0xE000).contains(low)),
                );
            if let Some((high, low)) = pair {
                let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                out.push_str(&format!("\\U{code:08X}"));
                joined.at.push((line, column));
                i += 12;
                column += 10;
                continue;
            }
            // Any other escape, `\\` and `\"` among them, is kept as written.
            out.push(c);
            i += 1;
            column += 1;
            let Some(&next) = chars.get(i) else { break };
            if next == '\n' {
                (line, column) = (line + 1, 0);
            }
            out.push(next);
            i += 1;
            column += 1;
            continue;
        }
        if c == '\n' {
            (line, column) = (line + 1, 0);
        }
        out.push(c);
        i += 1;
        column += 1;
    }
    if joined.at.len() == before {
        return None;
    }
    out.extend(&chars[i..]);
    Some(out)
}

/// The parser's "duplicated key in mapping" at `line` and `column` (1-based, where the second
/// writing of the key starts) in words: which key, and the line of its first writing when it is
/// found (the same key at the same column above, within the same map, or before it on the line).
fn duplicated_key(text: &str, info: &str, line: usize, column: usize) -> Option<String> {
    if !info.contains("duplicated key") {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let here: Vec<char> = lines.get(line.checked_sub(1)?)?.chars().collect();
    let col = column.checked_sub(1)?;
    let key = key_at(&here.get(col..)?.iter().collect::<String>())?;
    let written_before = |before: &str| {
        before
            .split(['{', ','])
            .skip(1)
            .any(|part| key_at(part.trim_start()).as_deref() == Some(key.as_str()))
    };
    let mut first = written_before(&here[..col].iter().collect::<String>()).then_some(line);
    if first.is_none() {
        for (i, l) in lines[..line - 1].iter().enumerate().rev() {
            let trimmed = l.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let chars: Vec<char> = l.chars().collect();
            // A line less indented than the key (other than a list item's `- `) ends its map.
            let Some(prefix) = chars.get(..col) else {
                break;
            };
            if !prefix.iter().all(|c| *c == ' ' || *c == '-') {
                break;
            }
            let rest: String = chars[col..].iter().collect();
            if rest.starts_with(' ') {
                continue;
            }
            if key_at(&rest).as_deref() == Some(key.as_str()) {
                first = Some(i + 1);
                break;
            }
            if prefix.contains(&'-') {
                // The first key of the list item: the map starts here.
                break;
            }
        }
    }
    let first = first
        .map(|l| format!(" (first on line {l})"))
        .unwrap_or_default();
    Some(format!(
        "`{key}` is written twice in this map{first}: a key is written once, so keep one of them"
    ))
}

/// The key a map entry written at the start of `s` has (`wait` for `wait: 1h`, `a b` for
/// `"a b": 1`).
fn key_at(s: &str) -> Option<String> {
    let key = match s.chars().next()? {
        q @ ('"' | '\'') => s[1..].split(q).next()?,
        _ => s.split(':').next()?.trim_end(),
    };
    (!key.is_empty()).then(|| key.to_string())
}

/// For an unknown field `X` (serde's `message`) at `path`: when the object holding it has a key
/// with nothing under it (`send:` on its own line), `X` was most likely meant under that key and
/// indented too little. The advice says so.
fn empty_sibling(value: &serde_json::Value, path: &str, message: &str) -> Option<String> {
    let field = message.strip_prefix("unknown field `")?.split('`').next()?;
    let parent = match path.rsplit_once('.') {
        Some((parent, _)) => value_at(value, parent)?,
        None => value,
    };
    let (key, _) = parent
        .as_object()?
        .iter()
        .find(|(k, v)| v.is_null() && fields_of(k).contains(&field))?;
    Some(format!(
        "`{key}:` has nothing under it: if `{field}` belongs to it, indent `{field}:` further than `{key}:`"
    ))
}

/// The fields a key of a journey file holds, for the keys that hold a map of them: what a
/// field beside an empty one of these may have been meant under. Kept here rather than read
/// from `journey::schema()` (generating the schema would link schemars into every Lambda); a
/// test holds the two together.
fn fields_of(key: &str) -> &'static [&'static str] {
    match key {
        "trigger" => &[
            "event",
            "inactive",
            "repeated",
            "schedule",
            "trait_changed",
            "where",
        ],
        "repeated" => &["event", "times", "where", "within"],
        "inactive" => &["events", "for", "where"],
        "schedule" => &["cron", "timezone", "where"],
        "goal" => &["event", "trait_changed", "where", "within"],
        "quiet_hours" => &["end", "start"],
        "wait_until" => &["after", "before", "date", "if_past", "time", "weekdays"],
        "if_past" => &["by_more_than", "then"],
        "wait_for" => &[
            "event",
            "on_event",
            "on_timeout",
            "paths",
            "timeout",
            "where",
        ],
        "branch" => &["cases", "else"],
        "split" => &["holdout", "paths"],
        "send" | "fallback" => &[
            "email",
            "fallback",
            "in_app",
            "locales",
            "push",
            "send_within",
            "sms",
            "webhook",
        ],
        "update" => &["set", "unset"],
        "email" => &["html", "marketing", "subject", "text"],
        "sms" => &["body", "sms_type"],
        "push" => &["body", "data", "expires", "silent", "title"],
        "in_app" => &["body", "data", "expires", "keep_after_exit", "title"],
        "webhook" => &["body", "headers", "method", "url"],
        _ => &[],
    }
}

/// The value at a path as [`path_of`] writes them (`steps[0].send`).
fn value_at<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut v = value;
    for step in path_steps(path)? {
        v = match step {
            PathStep::Key(k) => v.get(k)?,
            PathStep::Index(i) => v.get(i)?,
        };
    }
    Some(v)
}

/// The field other tools' words for it mean here (`goto: b` is `next: b`), where spelling
/// alone does not lead to it.
fn meant_by(field: &str) -> &'static [&'static str] {
    match field.to_ascii_lowercase().as_str() {
        "goto" | "go_to" | "go" | "then" | "jump" | "next_step" | "to" => &["next", "then"],
        // An `if_past`'s tolerance: `after` there would read as the wait's own `after`.
        "after" | "over" | "older_than" | "tolerance" | "grace" | "more_than" => &["by_more_than"],
        "delay" | "sleep" | "pause" => &["wait"],
        // A wait for whichever of several events comes first (Braze's Action Paths).
        "any" | "any_of" | "first_of" | "action_paths" | "cases" | "branches" => &["paths"],
        "if" | "condition" | "filter" => &["where", "when"],
        "message" | "channel" | "action" => &["send"],
        "set_traits" | "traits" | "set_attributes" => &["update"],
        "conversion" | "conversion_event" | "conversions" | "converts_on" => &["goal"],
        "ignore_frequency_capping"
        | "ignore_frequency_caps"
        | "ignore_caps"
        | "bypass_frequency_capping" => &["transactional"],
        // Customer.io's and Braze's words for a subscription topic.
        "subscription_topic" | "subscription_group" | "subscription" | "topics" => &["topic"],
        _ => &[],
    }
}

/// Whether a field is other tools' word for a frequency cap (`frequency_cap`, `rate_limit`),
/// which a journey does not hold: `waymark.yaml` does. Only words that say a cap: a journey's
/// `limit` or `frequency` may mean something else (a most number of entries, how often it
/// runs), and is told the nearest field as any other unknown one is.
fn is_a_cap(field: &str) -> bool {
    matches!(
        field.to_ascii_lowercase().replace('-', "_").as_str(),
        "caps"
            | "capping"
            | "frequency_cap"
            | "frequency_caps"
            | "frequency_capping"
            | "freq_cap"
            | "freq_caps"
            | "message_limit"
            | "message_limits"
            | "max_messages"
    )
}

/// Whether a field is other tools' word for a delivery rate limit (`rate_limit`, `throttle`):
/// Pinpoint's `MessagesPerSecond` and Braze's rate limiting set how fast messages go out, not how
/// many one user gets, and Waymark has no such limit.
pub fn is_a_rate_limit(field: &str) -> bool {
    matches!(
        field.to_ascii_lowercase().replace('-', "_").as_str(),
        "rate_limit"
            | "rate_limits"
            | "rate_limiting"
            | "throttle"
            | "throttling"
            | "messages_per_second"
            | "send_rate"
    )
}

/// What a rate limit written in a journey or in `waymark.yaml` is told.
pub const RATE_LIMIT_ADVICE: &str = "Waymark has no delivery rate limit (messages a second): sends go out as the engine reaches them, within the sending quotas of your SES and SNS accounts (a throttled send is retried, never dropped); at most so many messages per user and channel is a frequency cap, set in `waymark.yaml` beside the journey files, like `caps: {push: {max: 3, per: 1d}}`";

/// A split's `holdout` or a path's `weight` written as a fraction or a percentage (`holdout:
/// 0.1`, `weight: 50%`, serde's `message` about it at `path`): both are whole numbers, the
/// holdout a percentage and the weights relative shares, which a percentage writes as well.
/// The advice is the percentage meant (`0.1` is `10`), not the fraction's whole part (`0`, a
/// weight never taken).
fn share_advice(path: &str, message: &str) -> Option<String> {
    let key = path.rsplit('.').next()?;
    let what = match key {
        "holdout" => "`holdout` is the percentage of the users who reach the split that get none of its paths, a whole number from 0 to 100",
        "weight" if path.contains(".split.paths[") => "a path's `weight` is its share against the other paths' weights, a whole number (`50` and `50`, or `1` and `1`, split evenly; a path of weight 0 is never taken)",
        _ => return None,
    };
    let given = message
        .strip_prefix("invalid type: ")?
        .rsplit_once(", expected u")?
        .0;
    let (shown, number, percent_sign) = if let Some(n) = given.strip_prefix("floating point `") {
        let n = n.trim_end_matches('`');
        (
            format!("`{n}` is not a whole number"),
            n.parse::<f64>().ok()?,
            false,
        )
    } else {
        let text = given.strip_prefix("string ")?;
        let bare = text.trim_matches('"').trim();
        let percent = bare.strip_suffix('%');
        let n = percent.unwrap_or(bare).trim().parse::<f64>().ok()?;
        (
            format!("{text} is text, not a number"),
            n,
            percent.is_some(),
        )
    };
    if !(0.0..=100.0).contains(&number) {
        return None;
    }
    // A number below one written bare may be a fraction of one (`0.1` for 10%); one written
    // with `%` is a percentage as it stands (`0.5%` is half of one percent, never 50).
    let fraction = !percent_sign && number > 0.0 && number < 1.0;
    let scaled = (number * 100.0 * 1e6).round() / 1e6;
    let advice = match key {
        "holdout" if number > 0.0 && number < 1.0 => {
            let least = "`holdout: 1`, the least above none (a holdout is whole percents)";
            if fraction && scaled >= 1.0 {
                format!(
                    "write `holdout: {}` if `{number}` is a fraction of the users ({scaled}%), or {least} if it is {number}%",
                    scaled.round()
                )
            } else if fraction {
                format!(
                    "write {least}: `{number}` is {scaled}% as a fraction of the users, and {number}% as a percentage; or `holdout: 0` for none"
                )
            } else {
                format!("write {least}, or `holdout: 0` for none")
            }
        }
        "holdout" => format!("write `holdout: {}`", number.floor()),
        _ => {
            let whole = if fraction {
                scaled.round()
            } else {
                number.floor()
            };
            let as_percent = if fraction {
                format!(" (`{number}` is {scaled}%)")
            } else {
                String::new()
            };
            if whole >= 1.0 || number == 0.0 {
                format!("write `weight: {whole}`{as_percent}")
            } else {
                // Never 0 for a share that was meant to be taken: a weight of 0 never is.
                format!(
                    "write `weight: 1`{as_percent}, and the other paths' weights that many times larger as their shares are"
                )
            }
        }
    };
    Some(format!("{shown}: {what}: {advice}"))
}

/// What to say of the map at `path` in `value`, where serde read a choice of one key (an enum:
/// `reentry: {after: 30d}`) and found several (`message`: "invalid value: map, expected map
/// with a single key"): the keys that are no choice (at the first of them, whose path is
/// returned) or, all being choices, that one goes. The choices are those serde lists for a
/// key no choice has.
fn one_choice<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    path: &str,
    message: &str,
) -> Option<(String, String)> {
    if message != "invalid value: map, expected map with a single key" {
        return None;
    }
    let keys: Vec<String> = value_at(value, path)?
        .as_object()?
        .keys()
        .cloned()
        .collect();
    let expected = choices_at::<T>(value, path)?;
    let choices: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let expected = expected.strip_prefix("one of ").unwrap_or(&expected);
    let part = path.rsplit('.').next().unwrap_or(path);
    let named = |ks: &[&String]| {
        ks.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown: Vec<&String> = keys
        .iter()
        .filter(|k| !choices.contains(&k.as_str()))
        .collect();
    let said = match unknown.first() {
        Some(first) => (
            child(path, first),
            format!(
                "{} {} no choice of `{part}`, which takes one, written alone: write one of {expected}",
                named(&unknown),
                if unknown.len() == 1 { "is" } else { "are" }
            ),
        ),
        None => (
            path.to_string(),
            format!(
                "{} are choices of `{part}`, which takes one, written alone: write one of {expected}",
                named(&keys.iter().collect::<Vec<_>>())
            ),
        ),
    };
    Some(said)
}

/// The choices serde lists for the part at `path` of `value`, a choice of one (an enum, like
/// `status` or `reentry`), as it lists them (`one of `a`, `b``, or `` `a` or `b` ``): found by
/// reading the value with a choice no part has in its place. `None` when the part is no choice.
fn choices_at<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    path: &str,
) -> Option<String> {
    let mut probe = value.clone();
    *value_at_mut(&mut probe, path)? = serde_json::json!({ "\u{1}": null });
    let e = serde_path_to_error::deserialize::<_, T>(&probe).err()?;
    (path_of(e.path()) == path).then_some(())?;
    let listed = e.inner().to_string();
    Some(
        listed
            .strip_prefix("unknown variant `\u{1}`, expected ")?
            .to_string(),
    )
}

/// What to say of a value that is no choice where a choice goes (serde: "invalid type: null,
/// expected string or map", for `status:` with nothing after it, or `status: 3`): what it is,
/// and the choices to write.
fn not_a_choice<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    path: &str,
    message: &str,
) -> Option<String> {
    let found = message
        .strip_prefix("invalid type: ")?
        .strip_suffix(", expected string or map")?;
    let expected = choices_at::<T>(value, path)?;
    let expected = expected.strip_prefix("one of ").unwrap_or(&expected);
    let found = match found {
        "null" | "unit value" => "empty (`null`, or nothing after the colon)".to_string(),
        other => shape::found_words(other),
    };
    Some(format!(
        "this is {found}, where one of its choices goes: write one of {expected}"
    ))
}

/// Turns serde's messages into advice a journey author can act on.
fn explain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once("`, expected ") {
            // serde writes "one of `a`, `b`" for several names and "`a` or `b`" for two.
            let names = expected.split('`').skip(1).step_by(2);
            let expected_list = expected.strip_prefix("one of ").unwrap_or(expected);
            // Quiet hours are a journey's own choice: none apply where it sets none.
            if matches!(
                field.to_ascii_lowercase().as_str(),
                "ignore_quiet_hours" | "bypass_quiet_hours" | "skip_quiet_hours"
            ) {
                return format!(
                    "unknown field `{field}`: quiet hours apply only to a journey that sets `quiet_hours`: leave `quiet_hours` out and its messages go at any hour (a journey of receipts or password resets may be `transactional: true`, which also ignores the frequency caps and lets its emails that say `marketing: false` reach users who unsubscribed from email); write one of {expected_list}"
                );
            }
            // Caps are the folder's, across journeys: `waymark.yaml` sets them (a journey's
            // fields are the ones with `trigger`; `waymark.yaml`'s own are told as written).
            if is_a_rate_limit(field) && names.clone().any(|n| n == "trigger") {
                return format!(
                    "unknown field `{field}`: {RATE_LIMIT_ADVICE}; write one of {expected_list}"
                );
            }
            if is_a_cap(field) && names.clone().any(|n| n == "trigger") {
                return format!(
                    "unknown field `{field}`: frequency caps are not a journey's: they apply across journeys, per user and channel, and are set in `waymark.yaml` beside the journey files, like `caps: {{push: {{max: 3, per: 1d}}}}` (a journey of receipts or password resets that should ignore them may be `transactional: true`); write one of {expected_list}"
                );
            }
            // A topic is a journey's, for all its messages: its unsubscribe link is made once
            // for the enrollment.
            if matches!(field, "topic" | "subscription_topic" | "subscription_group")
                && !names.clone().any(|n| n == "topic")
            {
                return format!(
                    "unknown field `{field}`: a subscription topic is the journey's, for all of its messages (their unsubscribe link unsubscribes from it): write `topic: newsletter` beside the journey's `name`; a message of another topic belongs in a journey of its own; write one of {expected_list}"
                );
            }
            let guess = closest(field, names.clone())
                .or_else(|| {
                    meant_by(field)
                        .iter()
                        .copied()
                        .find(|m| names.clone().any(|n| n == *m))
                })
                .map(|n| match n {
                    // Quiet hours and caps are let go together, for a journey's receipts.
                    "transactional" => "did you mean `transactional: true`, for a journey of receipts or password resets? It ignores the frequency caps, and also quiet hours, and lets its emails that say `marketing: false` reach users who unsubscribed from email; a marketing journey keeps the caps. ".to_string(),
                    n => format!("did you mean `{n}`? "),
                })
                .unwrap_or_default();
            return format!("unknown field `{field}`: {guess}write one of {expected_list}");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            // A name in other letters or in full (`Mon`, `monday`) is the short one meant.
            let lower = value.to_ascii_lowercase();
            let guess = names
                .iter()
                .copied()
                .find(|n| lower == *n)
                .or_else(|| closest(value, names.iter().copied()))
                .or_else(|| {
                    names
                        .iter()
                        .copied()
                        .find(|n| n.len() >= 3 && lower.starts_with(*n))
                })
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            let expected = expected.strip_prefix("one of ").unwrap_or(expected);
            return format!("`{value}` is not a choice here: {guess}write one of {expected}");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        if let Some((n, expected)) = rest.split_once("`, expected u") {
            if let Ok(bits) = expected.parse::<u32>() {
                if n.starts_with('-') {
                    return format!("`{n}` cannot be used here: write a whole number, 0 or more");
                }
                // Too large for the count it is.
                let max = 1u128.checked_shl(bits).map_or(u128::MAX, |m| m - 1);
                return format!("`{n}` is too large here: write at most {max}");
            }
        }
    }
    // A count given as a fraction or as text (`holdout: 10.5`, `times: "3"`).
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((given, expected)) = rest.rsplit_once(", expected u") {
            if expected.bytes().all(|b| b.is_ascii_digit()) {
                let (given, like) = match given.strip_prefix("floating point `") {
                    Some(n) => {
                        let n = n.trim_end_matches('`');
                        let whole = n.split('.').next().unwrap_or("0");
                        (format!("`{n}` is not a whole number"), whole.to_string())
                    }
                    None => match given.strip_prefix("string ") {
                        Some(text) => {
                            let bare = text.trim_matches('"').trim();
                            let like = bare
                                .parse::<u64>()
                                .map(|n| n.to_string())
                                .unwrap_or_else(|_| "3".into());
                            (format!("{text} is text, not a number"), like)
                        }
                        None => (format!("{given} is not a number"), "3".into()),
                    },
                };
                return format!(
                    "{given}: write a whole number, 0 or more, without quotes, like `{like}`"
                );
            }
        }
    }
    // One value where a list was written (`event: [a, b]`), or a map.
    if let Some(found) = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.strip_suffix(", expected a string"))
        .filter(|f| *f == "sequence" || *f == "map")
    {
        return format!(
            "this is {}, where one value goes: write a single name or text here",
            shape::found_words(found)
        );
    }
    // `data: {k: null}`, `k: ~`, or `k:` with nothing after it: no value where text goes.
    if matches!(
        message
            .strip_prefix("invalid type: ")
            .and_then(|r| r.strip_suffix(", expected a string")),
        Some("null" | "unit value")
    ) {
        return "this is empty (`null`, or nothing after the colon), where text goes: write the text (in quotes, `\"\"`, for empty text), or take the key out if it needs no value".into();
    }
    // `id: 123`, `name: true`: YAML reads an unquoted number or truth value as one, where
    // text goes; in quotes it is that text.
    if let Some((what, v)) = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.strip_suffix(", expected a string"))
        .and_then(|given| {
            let (kind, v) = given.split_once(" `")?;
            let what = match kind {
                "integer" | "floating point" => "a number",
                "boolean" => "a truth value",
                _ => return None,
            };
            Some((what, v.strip_suffix('`')?))
        })
    {
        return format!("`{v}` is read as {what}, where text goes: put it in quotes, `\"{v}\"`");
    }
    // A trigger's events written as a map, a number or a truth value.
    if let Some(found) = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.strip_suffix(", expected an event name, or a list of event names"))
    {
        return format!(
            "this is {}, where an event's name goes: write `event: cart_abandoned`, or a list of names any of which enters, `event: [cart_abandoned, checkout_abandoned]`",
            shape::found_words(found)
        );
    }
    // `exit: yes`, `exit: 1`: YAML's true and false are the only truth values.
    if let Some(given) = message
        .strip_prefix("invalid type: ")
        .and_then(|r| r.strip_suffix(", expected a boolean"))
    {
        let shown = given
            .strip_prefix("string ")
            .or_else(|| given.strip_prefix("integer "))
            .or_else(|| given.strip_prefix("floating point "))
            .unwrap_or(given);
        let bare = shown.trim_matches(['"', '`']).to_ascii_lowercase();
        let meant = match bare.as_str() {
            "yes" | "y" | "on" | "true" | "1" => Some("true"),
            "no" | "n" | "off" | "false" | "0" => Some("false"),
            _ => None,
        };
        return match meant {
            Some(b) => format!("{shown} is not a truth value here: write `{b}` (no quotes)"),
            None => format!("{shown} is not a truth value: write `true` or `false` (no quotes)"),
        };
    }
    // `wait: 30`: a number with no unit where a duration goes.
    if let Some(n) = message.strip_prefix("invalid type: ").and_then(|r| {
        let (given, expected) = r.split_once(", expected ")?;
        expected.starts_with("a duration").then_some(())?;
        given
            .strip_prefix("integer `")
            .or_else(|| given.strip_prefix("floating point `"))
            .map(|n| n.trim_end_matches('`'))
    }) {
        return format!("`{n}` {}", crate::duration::no_unit(n));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return format!("missing field `{field}`: add `{field}: ...` here");
    }
    message.to_string()
}

/// A document parsed from YAML or JSON text, with the position of every node, so that checks made
/// after parsing can still name the file, line and column.
pub struct Located<T> {
    pub value: T,
    file: String,
    positions: Positions,
}

impl<T> Located<T> {
    /// An error at `path` (`caps.pigeon`, `steps[2].send`), at the position of the nearest node.
    pub fn error(&self, path: &str, message: impl Into<String>) -> FileError {
        let (line, column) = self.positions.find(path);
        FileError {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Parses YAML (or JSON) text into `T`; `None` for an empty file. Every error names the file, line
/// and column; a value of the wrong shape is shown how it is written, from `examples` (see
/// [`shape::EXAMPLES`]), and `advise` may add what to write instead to serde's other messages.
pub fn parse_located<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    examples: &[(&str, &'static str)],
    advise: impl Fn(&str) -> String,
) -> Result<Option<Located<T>>, Vec<FileError>> {
    match read_located(file, text, examples, advise, false)? {
        None => Ok(None),
        Some(read) if read.errors.is_empty() => Ok(Some(read.located)),
        Some(read) => Err(read.errors),
    }
}

/// A file read past its problems ([`read_located`]): the value it reads as once the values at
/// fault (`altered`, their paths) were taken out or stood in for, and those problems.
struct Read<T> {
    located: Located<T>,
    errors: Vec<FileError>,
    altered: Vec<String>,
}

/// [`parse_located`], going on past each problem it can step over, so that one run lists them
/// all: `Err` only when the file cannot be read as a `T` at all. With `map`, a file that is a
/// list is refused at once (serde would read a list of a struct's values in order as one).
fn read_located<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    examples: &[(&str, &'static str)],
    advise: impl Fn(&str) -> String,
    map: bool,
) -> Result<Option<Read<T>>, Vec<FileError>> {
    let err = |line, column, path: &str, message: String| FileError {
        file: file.to_string(),
        line,
        column,
        path: path.to_string(),
        message,
    };
    // JSON writers escape a character beyond the first 65,536 as two halves (`\ud83c\udf89`,
    // Python's `json.dumps` by default), which YAML does not read: joined into YAML's one
    // escape (`\U0001F389`) in each double-quoted text saphyr stops at, positions mapped back.
    let mut joined = Joined::default();
    let mut read_text = std::borrow::Cow::Borrowed(text);
    let loaded = loop {
        match MarkedYaml::load_from_str(&read_text) {
            Err(e) if e.info().contains("invalid Unicode character escape code") => {
                match join_surrogates(&read_text, e.marker().index(), &mut joined) {
                    Some(next) => read_text = std::borrow::Cow::Owned(next),
                    None => break Err(e),
                }
            }
            other => break other,
        }
    };
    let docs = loaded.map_err(|e| {
        let (line, column) = (e.marker().line(), e.marker().col() + 1);
        let column = joined.original(line, column);
        let message = match duplicated_key(text, e.info(), line, column) {
            Some(said) => said,
            None => {
                let quote = quote_before(text, line, column);
                // saphyr's words say "double-quoted" for either quote: told as written.
                let info = match quote {
                    Some('\'') => e.info().replace("double-quoted", "single-quoted"),
                    _ => e.info().to_string(),
                };
                format!(
                    "not valid YAML or JSON: {info}{}",
                    yaml_advice(e.info(), quote)
                )
            }
        };
        vec![err(line, column, "", message)]
    })?;
    let Some(doc) = docs.first() else {
        return Ok(None);
    };
    if let Some(second) = docs.get(1) {
        // At the `---` that starts the second document, or where its text starts.
        let starts = second.span.start.line();
        let line = (1..=starts)
            .rev()
            .find(|&n| {
                text.lines()
                    .nth(n - 1)
                    .is_some_and(|l| l.starts_with("---"))
            })
            .unwrap_or(starts);
        return Err(vec![err(
            line,
            1,
            "",
            "one document per file: split the documents separated by `---` into their own files"
                .into(),
        )]);
    }
    let mut positions = Positions::default();
    let mut shape_errors = Vec::new();
    let value = to_json(doc, "", &mut positions, &mut shape_errors);
    joined.map_back(&mut positions);
    if !shape_errors.is_empty() {
        return Err(shape_errors
            .into_iter()
            .map(|(p, m, at)| {
                let (l, c) = at
                    .map(|(l, c)| (l, joined.original(l, c)))
                    .unwrap_or_else(|| positions.find(&p));
                err(l, c, &p, m)
            })
            .collect());
    }
    if value.is_null() {
        return Ok(None);
    }
    // serde stops at the first problem. To list more in one run, the value at fault is taken
    // out and the file read again, until it reads or a problem cannot be stepped over (a
    // required field taken out, a list item, the whole file).
    // A journey's list of the fields' values in order reads as a map (serde takes a sequence for a
    // struct), but no reader could tell which value is which.
    if map && value.is_array() {
        let (l, c) = positions.find("");
        return Err(vec![err(
            l,
            c,
            "",
            "the file holds a list, where a map of fields goes: write one `key: value` a line"
                .into(),
        )]);
    }
    let mut value = value;
    let mut errors = Vec::new();
    let mut taken_out: Vec<String> = Vec::new();
    let mut stopped_at = None;
    let parsed = loop {
        let e = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => break Some(parsed),
            Err(e) => e,
        };
        let p = path_of(e.path());
        if errors.len() >= MAX_PROBLEMS_READ {
            stopped_at = Some(positions.find(&p));
            break None;
        }
        let message = e.inner().to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            let full = if p.is_empty() {
                field.to_string()
            } else {
                format!("{p}.{field}")
            };
            if taken_out.contains(&full) {
                // Its own problem is listed already.
                break None;
            }
        }
        if p.is_empty() {
            let plain = shape::plain(&message);
            let found = plain
                .strip_prefix("invalid type: ")
                .and_then(|r| r.split_once(", expected a map"))
                .map(|(f, _)| f);
            if let Some(found) = found {
                let (l, c) = positions.find("");
                errors.push(err(
                    l,
                    c,
                    "",
                    format!(
                        "the file holds {}, where a map of fields goes: write one `key: value` a line",
                        shape::found_words(found)
                    ),
                ));
                break None;
            }
        }
        let under_empty = empty_sibling(&value, &p, &message);
        // A choice written with keys more than its one (`reentry: {after: 1d, extra: 1}`):
        // serde says only "expected map with a single key". Told at the first key that is no
        // choice, naming the choices.
        if let Some((at, said)) = one_choice::<T>(&value, &p, &shape::plain(&message)) {
            let (l, c) = positions.find(&at);
            errors.push(err(
                l,
                c,
                &p,
                shape::with_valued_choices(examples, &p, said),
            ));
            if !take_out(&mut value, &p, &message) {
                break None;
            }
            taken_out.push(p);
            continue;
        }
        // A choice written as no choice (`status:` with nothing after it): its choices.
        let chosen = not_a_choice::<T>(&value, &p, &shape::plain(&message))
            .map(|said| (p.clone(), shape::with_valued_choices(examples, &p, said)));
        let (shown, mut advice) = chosen
            .or_else(|| shape::advise(examples, &p, &message))
            .unwrap_or_else(|| {
                let plain = shape::plain(&message);
                let explained = share_advice(&p, &plain).unwrap_or_else(|| explain(&plain));
                (
                    p.clone(),
                    advise(&shape::with_valued_choices(examples, &p, explained)),
                )
            });
        if let Some(hint) = under_empty {
            advice = format!("{advice}; {hint}");
        }
        // A condition's problem is at a character of its text: pointed at there in the file.
        let (l, c) = at_character(&advice)
            .and_then(|n| scalar_char_position(text, &positions, &shown, n.saturating_sub(1)))
            .unwrap_or_else(|| positions.find(&shown));
        errors.push(err(l, c, &shown, advice));
        if !take_out(&mut value, &p, &message) {
            break None;
        }
        taken_out.push(p);
    };
    // In the file's order, whatever order they were found in; the read's stop last, at the
    // problem it did not read past.
    errors.sort_by_key(|e| (e.line, e.column));
    if let Some((l, c)) = stopped_at {
        errors.push(err(l, c, "", READ_STOPPED.to_string()));
    }
    let Some(parsed) = parsed else {
        return Err(errors);
    };
    Ok(Some(Read {
        located: Located {
            value: parsed,
            file: file.to_string(),
            positions,
        },
        errors,
        altered: taken_out,
    }))
}

/// Parses and validates one journey from text. `file` is used in error messages only.
pub fn parse(file: &str, text: &str) -> Result<Journey, Vec<FileError>> {
    let Some(read) = read_located::<Journey>(file, text, shape::EXAMPLES, str::to_string, true)?
    else {
        return Err(vec![FileError {
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message:
                "the file is empty: a journey needs at least `id`, `name`, `trigger` and `steps`"
                    .into(),
        }]);
    };
    let Read {
        mut located,
        errors: mut found,
        altered,
    } = read;
    // A fixed phone number written for people (`+1 415 555 0123`) is kept as E.164, as an
    // identify's is (`event::normalized_trait`); a rendered one is, when it is rendered.
    for step in located.value.steps.iter_mut() {
        if let Some(u) = step.update.as_mut() {
            for (k, v) in u.set.iter_mut() {
                if v.as_str().is_some_and(template::is_template) {
                    continue;
                }
                if let Some(n) = crate::event::normalized_trait(k, v) {
                    *v = n;
                }
            }
        }
    }
    // An SMS of a transactional journey (a code, a receipt) goes on the transactional route
    // unless it says `sms_type`; the others' stay promotional. Resolved here, so a journey
    // that is not transactional, or says its route, serializes (and digests) as before.
    if located.value.transactional {
        for (i, step) in located.value.steps.iter_mut().enumerate() {
            if let Some(send) = step.send.as_mut() {
                route_unsaid_sms(
                    send,
                    &format!("steps[{i}].send"),
                    &located.positions,
                    crate::journey::SmsType::Transactional,
                );
            }
        }
    }
    let journey = &located.value;
    let pos = &located.positions;
    let err = |line, column, path: &str, message: String| FileError {
        file: file.to_string(),
        line,
        column,
        path: path.to_string(),
        message,
    };
    let mut problems = validate(journey);
    if matches!(journey.trigger.kind(), Some(TriggerKind::Schedule(_)))
        && !pos.by_path.contains_key("reentry")
    {
        // `never`, the default, would reach each user at the first run alone, and record at
        // every later run that it did not enter them: the journey says which it means.
        problems.push(problem(
            "trigger.schedule",
            "a schedule runs again and again: say whether a user enters at each run with `reentry: after_exit` (or `reentry: {after: 7d}`), or once ever with `reentry: never`",
        ));
    }
    // `weekdays: []` reads as no list at all, every day: a list that names no day is refused
    // rather than read as its opposite.
    for (i, step) in journey.steps.iter().enumerate() {
        let path = format!("steps[{i}].wait_until.weekdays");
        if let Action::WaitUntil(w) = step.action() {
            if w.weekdays.is_empty() && pos.by_path.contains_key(&path) {
                problems.push(problem(
                    path,
                    "`weekdays: []` names no day: list the days it waits for (`weekdays: [mon, fri]`), or leave `weekdays` out to wait for any day",
                ));
            }
        }
    }
    // The values read past (taken out, or stood in for) have their problem listed already.
    // So have the problems a value taken out makes for what held it (a step left with no
    // action "does nothing").
    problems.retain(|p| {
        !altered.iter().any(|a| {
            p.path == *a
                || p.path.starts_with(&format!("{a}."))
                || (!p.path.is_empty() && a.starts_with(&format!("{}.", p.path)))
        })
    });
    if problems.is_empty() && found.is_empty() {
        Ok(located.value)
    } else {
        // The problems of reading first (in the file's order), then the journey's own.
        found.extend(problems.into_iter().map(|p| {
            let (l, c) = problem_position(text, pos, &p);
            err(l, c, &p.path, p.message)
        }));
        Err(found)
    }
}

/// Gives every SMS of `send` (its fallbacks' and its locales' too) that does not say its
/// `sms_type` in the file the route `kind`.
fn route_unsaid_sms(
    send: &mut crate::journey::Send,
    path: &str,
    pos: &Positions,
    kind: crate::journey::SmsType,
) {
    if let Some(sms) = send.sms.as_mut() {
        if !pos.by_path.contains_key(&format!("{path}.sms.sms_type")) {
            sms.sms_type = kind;
        }
    }
    if let Some(fallback) = send.fallback.as_deref_mut() {
        route_unsaid_sms(fallback, &format!("{path}.fallback"), pos, kind);
    }
    for (locale, variant) in send.locales.iter_mut() {
        route_unsaid_sms(variant, &format!("{path}.locales.{locale}"), pos, kind);
    }
}

/// Where in the file a journey's problem is: at its path, at the character or line of its text
/// it names.
fn problem_position(text: &str, pos: &Positions, p: &Problem) -> (usize, usize) {
    match (p.template_at, p.template_line) {
        (Some(at), line) => scalar_char_position(text, pos, &p.path, at).unwrap_or_else(|| {
            line.map_or_else(
                || pos.find(&p.path),
                |t| template_position(text, pos, &p.path, t),
            )
        }),
        // Known to the line alone: where that line of the template starts. In a folded block
        // (`>`) or a string written over several lines, one line of the template is several
        // of the file, and this is the first of them, the nearest line that surely holds
        // part of it (the checks give the character wherever they know it).
        (None, Some(t)) => template_position(text, pos, &p.path, t),
        (None, None) => pos.find(&p.path),
    }
}

/// The character (1-based) a condition's problem names at the end of its message:
/// `... (at character 34)`.
fn at_character(message: &str) -> Option<usize> {
    let rest = message.strip_suffix(')')?;
    let (_, n) = rest.rsplit_once("(at character ")?;
    n.parse().ok()
}

/// The file position of character `offset` (0-based) of the text of the scalar at `path`: on its
/// line in a plain or quoted scalar, or on the line of a block (`|`, `>`) or a plain scalar
/// written over several lines that holds it (each line break in the text is one character, as
/// it reads: a line break or a space). Escapes in quotes count as the one character they
/// write. `None` when the scalar cannot be followed that far.
fn scalar_char_position(
    text: &str,
    pos: &Positions,
    path: &str,
    offset: usize,
) -> Option<(usize, usize)> {
    let &(vl, mut vc) = pos.values.get(path)?;
    let lines: Vec<&str> = text.lines().collect();
    let first: Vec<char> = lines.get(vl.checked_sub(1)?)?.chars().collect();
    // A tag (`!!str`) is no part of the text.
    if first.get(vc.checked_sub(1)?) == Some(&'!') {
        let tag = first
            .iter()
            .skip(vc - 1)
            .take_while(|c| !c.is_whitespace())
            .count();
        let gap = first
            .iter()
            .skip(vc - 1 + tag)
            .take_while(|c| c.is_whitespace())
            .count();
        vc += tag + gap;
    }
    let opening = *first.get(vc.checked_sub(1)?)?;
    let indent = |l: &str| l.chars().take_while(|c| *c == ' ').count();
    let blank = |n: usize| lines.get(n).is_some_and(|l| l.trim().is_empty());
    // A block scalar's value is placed at its first line of text, its header (`|`, `>-`) on
    // the line before; or at the header.
    let block = match opening {
        '|' | '>' => Some((vl, opening == '>')),
        _ => vl
            .checked_sub(2)
            .and_then(|n| lines.get(n))
            .and_then(|l| block_header(l))
            .map(|h| (vl - 1, h == '>')),
    };
    if let Some((from, folded)) = block {
        let mut left = offset;
        let mut block: Option<usize> = None;
        // Just past the last line of text: a problem at the text's end (after its final line
        // break) is pointed at there.
        let mut end = None;
        let mut after_text = false;
        for (n, line) in lines.iter().enumerate().skip(from) {
            if line.trim().is_empty() {
                // Folded, a line break and the blank lines after it are a line break each
                // blank line: the break before the first was counted with its line.
                if !(folded && after_text) {
                    left = left.checked_sub(1)?;
                }
                after_text = false;
                continue;
            }
            let i = *block.get_or_insert(indent(line));
            if indent(line) < i {
                break;
            }
            let len = line.chars().count() - i;
            if left <= len {
                return Some((n + 1, i + left + 1));
            }
            left -= len + 1;
            end = Some((n + 1, i + len + 1));
            after_text = true;
        }
        return end.filter(|_| left == 0);
    }
    match opening {
        '"' | '\'' => {
            // (line index, char index) walking the quoted text.
            let (mut n, mut c) = (vl - 1, vc);
            let mut left = offset;
            loop {
                let chars: Vec<char> = lines.get(n)?.chars().collect();
                // A `\` ending a line in double quotes joins it to the next: no character.
                let mut joined = false;
                while let Some(&ch) = chars.get(c) {
                    if ch == opening && !(opening == '\'' && chars.get(c + 1) == Some(&'\'')) {
                        // The text ends here: a problem at its end points at the closing quote.
                        return (left == 0).then_some((n + 1, c + 1));
                    }
                    if opening == '"' && ch == '\\' && c + 1 == chars.len() {
                        joined = true;
                        break;
                    }
                    // Spaces ending a line that folds into the next are no part of the text.
                    if ch.is_whitespace() && chars[c..].iter().all(|c| c.is_whitespace()) {
                        break;
                    }
                    if left == 0 {
                        return Some((n + 1, c + 1));
                    }
                    left -= 1;
                    c += match (opening, ch) {
                        ('"', '\\') => match chars.get(c + 1) {
                            Some('x') => 4,
                            Some('u') => 6,
                            Some('U') => 10,
                            _ => 2,
                        },
                        ('\'', '\'') => 2,
                        _ => 1,
                    };
                }
                n += 1;
                if !joined {
                    // The line break folds into one space; followed by blank lines, into a line
                    // break for each of them.
                    let mut blanks = 0;
                    while blank(n) {
                        blanks += 1;
                        n += 1;
                    }
                    left = left.checked_sub(blanks.max(1))?;
                }
                let next = lines.get(n)?;
                c = next.chars().take_while(|c| c.is_whitespace()).count();
            }
        }
        _ => {
            // A plain scalar: from its start, then on each line after it indented past its
            // key, each line without the spaces around it, blank lines folding as in `>`.
            let key_indent = pos.by_path.get(path).map_or(0, |&(_, c)| c - 1);
            let mut left = offset;
            let trimmed = first.iter().rev().skip_while(|c| c.is_whitespace()).count();
            let len = trimmed.saturating_sub(vc - 1);
            if left <= len {
                return Some((vl, vc + left));
            }
            left = left.checked_sub(len + 1)?;
            let mut end = (left == 0).then_some((vl, vc + len));
            let mut after_text = true;
            for (n, line) in lines.iter().enumerate().skip(vl) {
                if line.trim().is_empty() {
                    if !after_text {
                        left = left.checked_sub(1)?;
                    }
                    after_text = false;
                    continue;
                }
                let i = line.chars().take_while(|c| c.is_whitespace()).count();
                if indent(line) <= key_indent && i == indent(line) {
                    break;
                }
                let len = line.trim_end().chars().count() - i;
                if left <= len {
                    return Some((n + 1, i + left + 1));
                }
                left -= len + 1;
                end = (left == 0).then_some((n + 1, i + len + 1));
                after_text = true;
            }
            end
        }
    }
}

/// The block scalar a file line's header opens (`key: |`, `- >-`, `key: |2 # note`): `|` or
/// `>`.
fn block_header(line: &str) -> Option<char> {
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let line = line.trim_end();
    let i = line.rfind(['|', '>'])?;
    let (before, after) = (&line[..i], &line[i + 1..]);
    let header = after.chars().all(|c| matches!(c, '-' | '+' | '0'..='9'))
        && (before.ends_with(": ") || before.ends_with("- ") || before.trim().is_empty());
    header.then(|| line[i..].chars().next()).flatten()
}

/// The place in `source` (0-based, in characters) of a template problem known to the column.
fn template_char(source: &str, e: &template::TemplateError) -> Option<usize> {
    let (line, column) = (e.line?, e.column?);
    let before: usize = source
        .split('\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column.checked_sub(1)?)
}

/// The file position of line `line` (1-based) of the template at `path`: a block scalar (`|` or
/// `>`) starts on the line after its indicator.
fn template_position(text: &str, pos: &Positions, path: &str, line: usize) -> (usize, usize) {
    let Some(&(vl, vc)) = pos.values.get(path) else {
        return pos.find(path);
    };
    let source_line = text.lines().nth(vl.saturating_sub(1)).unwrap_or("");
    let at = source_line
        .chars()
        .skip(vc.saturating_sub(1))
        .collect::<String>();
    // A block scalar's value is placed at its first line of text; a folded one (`>`) says so
    // on the line before.
    let folded_below = vl > 1
        && text
            .lines()
            .nth(vl.saturating_sub(2))
            .is_some_and(is_folded_header);
    if folded_below {
        folded_position(text, vl, line).unwrap_or((vl, vc))
    } else if at.starts_with('>') {
        folded_position(text, vl + 1, line).unwrap_or((vl, vc))
    } else if at.starts_with('|') {
        let first = vl + 1;
        let target = first + line.saturating_sub(1);
        let indent = text
            .lines()
            .nth(target.saturating_sub(1))
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0);
        (target, indent + 1)
    } else if let Some(quote) = at
        .chars()
        .next()
        .filter(|c| line > 1 && (*c == '"' || *c == '\''))
    {
        quoted_position(text, (vl, vc), quote, line).unwrap_or((vl, vc))
    } else {
        (vl + line.saturating_sub(1), vc)
    }
}

/// The file position where line `target` (1-based) of a folded block scalar's (`>`) value
/// starts, its text from file line `first` on: its lines are joined into one, but a blank line
/// breaks it. `None` if the file ends first.
fn folded_position(text: &str, first: usize, target: usize) -> Option<(usize, usize)> {
    let mut line = 1;
    let mut block_indent = None;
    // Whether the line before was more indented, and whether it was blank.
    let (mut after_more, mut after_blank) = (false, true);
    for (n, source) in text.lines().enumerate().skip(first.saturating_sub(1)) {
        if source.trim().is_empty() {
            line += 1;
            after_blank = true;
            continue;
        }
        let indent = source.len() - source.trim_start().len();
        let block = *block_indent.get_or_insert(indent);
        if indent < block {
            // Past the block's end.
            return None;
        }
        // A more indented line keeps the line breaks around it.
        let more = indent > block;
        if (more || after_more) && !after_blank {
            line += 1;
        }
        if line >= target {
            return Some((n + 1, indent + 1));
        }
        (after_more, after_blank) = (more, false);
    }
    None
}

/// Whether a file line ends with a folded block scalar's header: `key: >`, `- >`, with
/// `-`/`+` and an indentation digit after it, and a comment after that, allowed.
fn is_folded_header(line: &str) -> bool {
    block_header(line) == Some('>')
}

/// The file position where line `target` (1-based) of a quoted scalar's value starts, the
/// scalar opening with `quote` at `start`: a line of the value begins after a `\n` escape (in
/// double quotes) or a blank source line (a line break folded into the value), not at each
/// source line, so JSON's `"Hi\n\n{{ x }}"` has its third line on the source's first. `None`
/// if the scalar ends first.
fn quoted_position(
    text: &str,
    start: (usize, usize),
    quote: char,
    target: usize,
) -> Option<(usize, usize)> {
    let (first, column) = start;
    let mut line = 1;
    for (n, source) in text.lines().enumerate().skip(first.saturating_sub(1)) {
        let n = n + 1;
        let chars: Vec<char> = source.chars().collect();
        let mut c = if n == first {
            column
        } else {
            if source.trim().is_empty() {
                line += 1;
                continue;
            }
            chars.iter().take_while(|c| c.is_whitespace()).count()
        };
        if line >= target {
            return Some((n, c + 1));
        }
        while let Some(&ch) = chars.get(c) {
            // A line break the escape writes: `\n`, or `\u000a`/`\x0a` (JSON writes either).
            let escaped_break = match (quote, ch) {
                ('"', '\\') => {
                    let next: String = chars.iter().skip(c + 1).take(5).collect();
                    if next.starts_with('n') {
                        Some(2)
                    } else if next.eq_ignore_ascii_case("u000a") {
                        Some(6)
                    } else if next.to_ascii_lowercase().starts_with("x0a") {
                        Some(4)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if let Some(width) = escaped_break {
                line += 1;
                c += width;
                if line >= target {
                    // At the end of the source line, the value's line starts on the next.
                    if c < chars.len() {
                        return Some((n, c + 1));
                    }
                    break;
                }
                continue;
            }
            match (quote, ch, chars.get(c + 1)) {
                ('"', '\\', _) | ('\'', '\'', Some('\'')) => c += 2,
                (q, ch, _) if ch == q => return None,
                _ => c += 1,
            }
        }
    }
    None
}

/// Reads and parses one journey file.
pub fn load_file(path: &Path) -> Result<Journey, Vec<FileError>> {
    let name = path.display().to_string();
    let text = read_text(path)?;
    parse(&name, &text)
}

/// Where a journey's topics are declared, for the error of one that is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicsFrom {
    /// The folder's `waymark.yaml` (`validate`, `simulate`, `dev`, `publish`).
    Settings,
    /// A deployed stack's `SubscriptionTopics` parameter (the API's publish).
    Deployment,
}

/// The error of a journey whose `topic` is not among `topics` (`file` and `text` are the
/// journey's, for the position), with the declared one it is nearest to: a journey may not
/// name a topic no one declared, whose default and name nothing says.
pub fn undeclared_topic(
    file: &str,
    text: &str,
    journey: &Journey,
    topics: &crate::topic::Topics,
    from: TopicsFrom,
) -> Option<FileError> {
    let topic = journey.topic.as_deref()?;
    if topics.get(topic).is_some() || !crate::topic::valid_id(topic) {
        return None;
    }
    let declared: Vec<&str> = topics.0.keys().map(String::as_str).collect();
    let guess = closest(topic, declared.iter().copied())
        .map(|t| format!("did you mean `{t}`? "))
        .unwrap_or_default();
    let known = if declared.is_empty() {
        "it declares none".to_string()
    } else {
        format!(
            "it declares {}",
            declared
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let message = match from {
        TopicsFrom::Settings => format!(
            "topic `{topic}` is not declared in the folder's waymark.yaml ({known}): {guess}declare it there under `topics`, like `topics: {{{topic}: {{name: Newsletter}}}}` (`default: opt_in` for a topic that sends only to users who said yes)"
        ),
        TopicsFrom::Deployment => format!(
            "topic `{topic}` is not declared in this deployment ({known}): {guess}declare it in waymark.yaml, and pass the stack the SubscriptionTopics parameter `waymark publish` prints for it (sam deploy --parameter-overrides), then publish again"
        ),
    };
    let (line, column) = value_position(text, "topic");
    Some(FileError {
        file: file.to_string(),
        line,
        column,
        path: "topic".into(),
        message,
    })
}

/// Where the value at top-level `key` is written (else the key, else the file's start).
fn value_position(text: &str, key: &str) -> (usize, usize) {
    match read_located::<serde::de::IgnoredAny>("", text, &[], str::to_string, false) {
        Ok(Some(read)) => {
            let pos = &read.located.positions;
            pos.values
                .get(key)
                .or_else(|| pos.by_path.get(key))
                .copied()
                .unwrap_or((1, 1))
        }
        _ => (1, 1),
    }
}

/// The errors of the journey files under `paths` (each once, as [`files_of`] reads them)
/// whose `topic` is not declared in `topics_of` their folder (`None`: the folder's settings
/// have errors of their own, told elsewhere). A file that does not load is left to
/// [`load_set`]'s errors.
pub fn undeclared_topics(
    paths: &[PathBuf],
    topics_of: impl Fn(&Path) -> Option<crate::topic::Topics>,
) -> Vec<FileError> {
    let mut out = Vec::new();
    // Each folder's topics read once.
    let mut declared: BTreeMap<PathBuf, Option<crate::topic::Topics>> = BTreeMap::new();
    for f in files_of(paths).0 {
        let dir = folder_of(&f);
        let topics = declared
            .entry(dir.to_path_buf())
            .or_insert_with(|| topics_of(dir));
        let Some(topics) = topics else {
            continue;
        };
        let name = f.display().to_string();
        let Ok(text) = read_text(&f) else { continue };
        let Ok(journey) = parse(&name, &text) else {
            continue;
        };
        out.extend(undeclared_topic(
            &name,
            &text,
            &journey,
            topics,
            TopicsFrom::Settings,
        ));
    }
    out
}

/// A journey folder's file as text: one that is not UTF-8 is an error at its first byte that
/// is not, saying to save it as UTF-8.
fn read_text(path: &Path) -> Result<String, Vec<FileError>> {
    let name = path.display().to_string();
    let error = |line, column, message| {
        vec![FileError {
            file: name.clone(),
            line,
            column,
            path: String::new(),
            message,
        }]
    };
    let bytes =
        std::fs::read(path).map_err(|e| error(1, 1, format!("cannot read the file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Every byte before it is UTF-8, so the text up to it can be counted in characters.
        let before = String::from_utf8_lossy(good);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        error(
            line,
            column,
            "this is not UTF-8 text (saved in another encoding, such as Latin-1 or Windows-1252): save the file as UTF-8".to_string(),
        )
    })
}

/// Where the file's top-level key `key` is written (1, 1 when it cannot be told).
pub fn key_position(text: &str, key: &str) -> (usize, usize) {
    match read_located::<serde::de::IgnoredAny>("", text, &[], str::to_string, false) {
        Ok(Some(read)) => read
            .located
            .positions
            .by_path
            .get(key)
            .copied()
            .unwrap_or((1, 1)),
        _ => (1, 1),
    }
}

/// The name of the optional settings file in a journey folder (frequency caps); not a journey.
pub const SETTINGS_STEM: &str = "waymark";

/// The folder whose settings file applies to a journey path: the path itself when it is a
/// folder, else the folder the file is in (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    if path.is_dir() {
        return path;
    }
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The journey files of a folder, sorted by name: its `*.yaml`, `*.yml` and `*.json` files, the
/// extension in any case (`Promo.YAML`, as a file named on its own is read whatever its
/// extension), but not `waymark.yaml` nor a hidden file (`.draft.yaml`, and the `._welcome.yaml`
/// a Mac writes beside a file on a foreign disk, which is no text). `waymark dev` watches the
/// same files.
pub fn journey_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_journey_file_name(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a folder's file named `path` is one of its journeys ([`journey_files`]).
fn is_journey_file_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    !hidden
        && path.file_stem().and_then(|s| s.to_str()) != Some(SETTINGS_STEM)
        && matches!(extension.as_deref(), Some("yaml" | "yml" | "json"))
}

/// The journey files `paths` name (a folder stands for its [`journey_files`]), each once: a
/// path naming a file already among them (the folder's file named on its own too, or through
/// `./`, `..` or a symlink: compared as canonical paths) is left out, the first kept; with an
/// error for each folder that cannot be read.
pub fn files_of(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<FileError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for p in paths {
        let named = if p.is_dir() {
            match journey_files(p) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(FileError {
                        file: p.display().to_string(),
                        line: 1,
                        column: 1,
                        path: String::new(),
                        message: format!("cannot read the folder: {e}"),
                    });
                    continue;
                }
            }
        } else {
            vec![p.clone()]
        };
        for f in named {
            // A file that cannot be resolved (missing) is kept as named, for its error.
            if seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())) {
                files.push(f);
            }
        }
    }
    (files, errors)
}

/// Loads every journey of a folder (or single files), collecting all errors; journey ids must be
/// unique across the set. A file named twice ([`files_of`]) is read once.
pub fn load_set(paths: &[PathBuf]) -> Result<Vec<Journey>, Vec<FileError>> {
    let mut journeys = Vec::new();
    let (files, mut errors) = files_of(paths);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        match load_file(&f) {
            Ok(j) => {
                let name = f.display().to_string();
                if let Some(other) = seen.insert(j.id.clone(), name.clone()) {
                    let (line, column) = std::fs::read_to_string(&f)
                        .map_or((1, 1), |text| key_position(&text, "id"));
                    errors.push(FileError {
                        file: name,
                        line,
                        column,
                        path: "id".into(),
                        message: format!(
                            "journey id `{}` is also used by {other}: give each journey its own id",
                            j.id
                        ),
                    });
                } else {
                    journeys.push(j);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(journeys)
    } else {
        Err(errors)
    }
}

struct Problem {
    path: String,
    message: String,
    /// For a template problem: the line inside the template.
    template_line: Option<usize>,
    /// For a template problem known to the character: that character's place in the template
    /// (0-based, a line break one character).
    template_at: Option<usize>,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
        template_line: None,
        template_at: None,
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The candidate nearest to `name` (a misspelling of it), if one is near enough.
/// What to write for a time zone name the database does not have: the name it is closest to
/// (`Europe/Pariss`: `Europe/Paris`), or `otherwise`.
pub(crate) fn zone_advice(name: &str, otherwise: &str) -> String {
    // RFC 3339's `Z` is UTC, not the `NZ` a letter away.
    if name.trim().eq_ignore_ascii_case("z") {
        return "did you mean `UTC`? (`Z` is how a time written in UTC ends)".to_string();
    }
    let db = jiff::tz::db();
    let names: Vec<String> = db.available().map(|n| n.as_str().to_string()).collect();
    // Letters' case aside first (`europe/paris`), then near misses.
    let lower = name.to_ascii_lowercase();
    names
        .iter()
        .find(|n| n.to_ascii_lowercase() == lower)
        .map(String::as_str)
        .or_else(|| closest(name, names.iter().map(String::as_str)))
        .map(|n| format!("did you mean `{n}`?"))
        .unwrap_or_else(|| otherwise.to_string())
}

pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // Nothing written is near every short name (`GB` for an empty zone): no guess.
    if name.trim().is_empty() {
        return None;
    }
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The steps a step may go to next, with the path of the field that names each.
fn successors(j: &Journey, i: usize) -> Vec<(String, Option<String>)> {
    let s = &j.steps[i];
    let base = format!("steps[{i}]");
    // By place, not by id: with an id written twice (an error of its own), each step's own.
    let default_next = || j.next_at(i).map(str::to_string);
    let mut out = Vec::new();
    match s.action() {
        Action::Exit => {}
        Action::Branch(b) => {
            for (k, c) in b.cases.iter().enumerate() {
                out.push((
                    format!("{base}.branch.cases[{k}].goto"),
                    Some(c.goto.clone()),
                ));
            }
            out.push((
                format!("{base}.branch.else"),
                b.otherwise.clone().or_else(default_next),
            ));
        }
        Action::Split(sp) => {
            for (k, p) in sp.paths.iter().enumerate() {
                out.push((
                    format!("{base}.split.paths[{k}].goto"),
                    Some(p.goto.clone()),
                ));
            }
        }
        Action::WaitFor(w) => {
            if w.event.is_some() {
                out.push((
                    format!("{base}.wait_for.on_event"),
                    w.on_event.clone().or_else(default_next),
                ));
            }
            for (k, p) in w.paths.iter().flatten().enumerate() {
                out.push((
                    format!("{base}.wait_for.paths[{k}].goto"),
                    Some(p.goto.clone()),
                ));
            }
            out.push((
                format!("{base}.wait_for.on_timeout"),
                w.on_timeout.clone().or_else(default_next),
            ));
        }
        Action::WaitUntil(w) => {
            out.push((format!("{base}.next"), default_next()));
            if let Some(p) = w.if_past.as_ref().filter(|p| p.goto().is_some()) {
                let at = if p.by_more_than.is_some() {
                    format!("{base}.wait_until.if_past.then")
                } else {
                    format!("{base}.wait_until.if_past")
                };
                out.push((at, p.goto().map(str::to_string)));
            }
        }
        _ => out.push((format!("{base}.next"), default_next())),
    }
    out
}

/// A `wait_until` `before` a date with no `if_past`: a date already past when she reaches it
/// goes on at once (`go_on`, the default), so a reminder ahead of an appointment would go out
/// after it. Advice, not an error: going on may be what is meant (`if_past: go_on` says so).
fn reminders_after_the_date(j: &Journey) -> Vec<Problem> {
    let mut said = Vec::new();
    for (i, step) in j.steps.iter().enumerate() {
        let Some(w) = &step.wait_until else { continue };
        let (Some(date), Some(before), None) = (&w.date, &w.before, &w.if_past) else {
            continue;
        };
        said.push(problem(
            format!("steps[{i}].wait_until"),
            format!(
                "a `{date}` already past when she reaches this wait goes on at once (`if_past` is `go_on` unless written), so what follows this wait `before: {before}` the date would go out after it: write `if_past: exit` to end her journey then (or `if_past: <step id>` to go elsewhere), or `if_past: go_on` if going on is meant"
            ),
        ));
    }
    said
}

/// A send's `send_within` that no quiet hours ever hold to: in a journey without them or a
/// transactional one (which sends at any hour), or on an in-app message (which waits in the
/// inbox, held by none).
fn send_within_not_applied(j: &Journey) -> Vec<Problem> {
    let mut said = Vec::new();
    for (i, step) in j.steps.iter().enumerate() {
        let Some(send) = step.send.as_ref().filter(|s| s.send_within.is_some()) else {
            continue;
        };
        let inbox = send
            .template()
            .is_some_and(|t| t.channel() == crate::journey::Channel::InApp);
        let why = if j.transactional {
            "a transactional journey sends at any hour: no quiet hours hold this message, so `send_within` is not applied. Remove it, or `transactional: true` if the journey's messages can wait for the morning"
        } else if j.quiet_hours.is_none() {
            "this journey has no `quiet_hours`: nothing holds this message, so `send_within` is not applied. Remove it, or give the journey quiet hours (`quiet_hours: {start: \"21:00\", end: \"08:00\"}`)"
        } else if inbox {
            "an in-app message waits in the inbox and quiet hours do not hold it, so `send_within` is not applied: remove it"
        } else {
            continue;
        };
        said.push(problem(format!("steps[{i}].send.send_within"), why));
    }
    said
}

/// Advice on a valid journey file: what it says that its writer may not mean (see
/// [`runs_into_a_sibling`]; quiet hours in a transactional journey, which sends at any hour;
/// a `send_within` no quiet hours hold to, [`send_within_not_applied`];
/// Segment's payload paths, [`segment_paths`]; JavaScript's `${first_name}` in a template's
/// text, [`placeholders_in_text`]; an exit's or goal's `where` that
/// [`wheres_judged_only_by_the_enrollment`]; a number in quotes ordered against a path, which
/// compares text, [`crate::condition::Condition::numbers_compared_as_text`]; `lower(…)` compared
/// with text that has upper-case letters, which it never matches,
/// [`crate::condition::Condition::text_in_the_wrong_case`]).
/// Empty when the file does not parse or is not valid: its errors say more. Reads the file's
/// text again; `validate`, `simulate`, `publish` and `waymark dev` print it as warnings.
pub fn advice(file: &str, text: &str) -> Vec<FileError> {
    let Ok(Some(read)) = read_located::<Journey>(file, text, shape::EXAMPLES, str::to_string, true)
    else {
        return Vec::new();
    };
    if !read.errors.is_empty() || !validate(&read.located.value).is_empty() {
        return Vec::new();
    }
    let j = &read.located.value;
    let mut said = runs_into_a_sibling(j);
    if let Some(TriggerKind::TraitChanged { name, condition }) = j.trigger.kind() {
        // `reentry: never`, the default, spends the one entry on the first change: most often
        // the sign-up's identify that sets the trait. Advice, not an error (as a schedule's
        // missing `reentry` is): one entry at the first set may be what is meant.
        if condition.is_none() && !read.located.positions.by_path.contains_key("reentry") {
            said.push(problem(
                "trigger.trait_changed",
                format!(
                    "with no `where` and no `reentry`, a user enters this journey once ever (`reentry: never`, the default), at the first change of `{name}`: most often the sign-up's identify that first sets it (`event.from` missing). Write `reentry: after_exit` (or `reentry: {{after: 30d}}`) to enter at each change, a `where` on `event.from` and `event.to` for the changes meant, or `reentry: never` if once at the first change is meant"
                ),
            ));
        }
        if let Some(why) = changed_outside_identifies(name) {
            said.push(problem("trigger.trait_changed", why));
        }
    }
    // A daily schedule that enters again while `days_until(…) <= 3` holds enters her on each
    // of those days: `==` names the one day.
    if let Some(TriggerKind::Schedule(sc)) = j.trigger.kind() {
        // A schedule with no `timezone` of its own runs in UTC, whatever the journey's (which is
        // the zone of a user with none): a Paris digest at `0 9` would go out at 10:00 there.
        let own_zone = read
            .located
            .positions
            .by_path
            .contains_key("trigger.schedule.timezone");
        if let (false, Some(zone)) = (own_zone, j.timezone.as_deref()) {
            said.push(problem(
                "trigger.schedule",
                format!(
                    "this schedule names no `timezone`, so its cron `{}` runs in UTC, not in the journey's `timezone: {zone}` (that one is the zone of a user with none, for her waits, quiet hours and dates): write `timezone: {zone}` under `schedule:` to run it in {zone}, `timezone: user` to run it in each user's zone, or `timezone: UTC` to keep UTC and silence this",
                    sc.cron
                ),
            ));
        }
        let again = !matches!(j.reentry, crate::journey::Reentry::Never);
        if let (true, Some(c)) = (again, sc.condition.as_ref()) {
            if let Some(call) = days_compared_as_a_range(c.source()) {
                said.push(problem(
                    "trigger.schedule.where",
                    format!(
                        "`{call}` holds on several days in a row, and with `reentry` letting her in again each run while it holds enters her again on each of them (once her enrollment has ended): compare it with `==` to enter her on one day (`{} == 3`), or keep `reentry: never`",
                        call.split_whitespace().next().unwrap_or("days_until(…)")
                    ),
                ));
            }
        }
    }
    // A count's `where` is judged on the event that makes the count, not on each one counted
    // (the profile keeps when they happened, not their properties).
    if let Some(TriggerKind::Repeated(r)) = j.trigger.kind() {
        let reads_event = r.condition.as_ref().is_some_and(|c| {
            c.paths()
                .iter()
                .any(|p| p.starts_with("event.") || p.starts_with("event["))
        });
        if reads_event {
            said.push(problem(
                "trigger.repeated.where",
                format!(
                    "this `where` is judged only on the `{}` that makes the count of {}: the earlier ones count whatever their properties. To count only some (`rating <= 2`), have the app send them under an event name of their own (`low_rating_given`) and count that",
                    r.event, r.times
                ),
            ));
        }
    }
    said.extend(wheres_judged_only_by_the_enrollment(j));
    if j.transactional && j.quiet_hours.is_some() {
        said.push(problem(
            "quiet_hours",
            "a transactional journey sends at any hour, so these quiet hours are not applied: remove `quiet_hours`, or `transactional: true` if its messages can wait for the morning",
        ));
    }
    said.extend(send_within_not_applied(j));
    said.extend(reminders_after_the_date(j));
    // `event.properties.amount` is most likely Segment's shape; an app may send such an object.
    said.extend(segment_paths(j));
    said.extend(placeholders_in_text(j));
    for (path, c, _) in all_conditions(j) {
        let mut found = c.numbers_compared_as_text();
        found.extend(c.text_in_the_wrong_case());
        for (at, message) in found {
            said.push(Problem {
                path: path.clone(),
                message,
                template_line: None,
                template_at: Some(at),
            });
        }
    }
    said.into_iter()
        .map(|p| {
            let (line, column) = problem_position(text, &read.located.positions, &p);
            FileError {
                file: read.located.file.clone(),
                line,
                column,
                path: p.path,
                message: p.message,
            }
        })
        .collect()
}

/// The first `days_until(…)`/`days_since(…)` in a condition's text compared with `<`, `<=`,
/// `>`, `>=` or `!=` (either side), as written: a range of days rather than one day.
fn days_compared_as_a_range(source: &str) -> Option<String> {
    const RANGE: [&str; 5] = ["<=", ">=", "!=", "<", ">"];
    for name in ["days_until(", "days_since("] {
        let mut from = 0;
        while let Some(at) = source[from..].find(name).map(|i| from + i) {
            let open = at + name.len();
            let close = open + source[open..].find(')')?;
            let after = source[close + 1..].trim_start();
            let before = source[..at].trim_end();
            let op = RANGE
                .iter()
                .find(|op| after.starts_with(**op) || before.ends_with(**op));
            if let Some(op) = op {
                let call = &source[at..=close];
                return Some(if after.starts_with(*op) {
                    let rest: String = after[op.len()..]
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '-' || *c == '.')
                        .collect();
                    format!("{call} {op} {rest}").trim_end().to_string()
                } else {
                    call.to_string()
                });
            }
            from = close + 1;
        }
    }
    None
}

/// The exits' and the goal's `where` that read `trigger.*` or `waited.*`: an event the
/// enrollment does not hear itself (one that came before its trigger, or that the user sent as
/// herself before a login moved a visitor's enrollment to her) is not judged by them, as there
/// was no enrollment to compare with and the profile keeps no properties to compare later.
/// (Not one on a trait's change: the profile notes the change itself, judged as the identify
/// comes by the enrollments it reaches, or at entry by one whose trigger came later.)
fn wheres_judged_only_by_the_enrollment(j: &Journey) -> Vec<Problem> {
    let exits = j.exit_when.iter().enumerate().filter_map(|(k, x)| {
        x.event.as_ref()?;
        Some((
            format!("exit_when[{k}].where"),
            x.condition.as_ref()?,
            "end",
        ))
    });
    let goal = j
        .goal
        .as_ref()
        .filter(|g| g.event.is_some())
        .and_then(|g| g.condition.as_ref())
        .map(|c| ("goal.where".to_string(), c, "convert"));
    exits
        .chain(goal)
        .filter(|(_, c, _)| c.reads_enrollment())
        .map(|(path, _, does)| Problem {
            path,
            message: format!(
                "this `where` reads the enrollment (`trigger.*` or `waited.*`), so only an event the enrollment hears itself is judged by it: one the user sent before she entered (events out of order), or as herself before a login moved an anonymous visitor's enrollment to her, does not {does} it (there was no trigger to compare with, and the profile keeps when an event happened, not what it said)"
            ),
            template_line: None,
            template_at: None,
        })
        .collect()
}

/// [`advice`] for every journey file of `paths` (each once, as [`load_set`] reads them) that
/// can be read.
pub fn advice_for(paths: &[PathBuf]) -> Vec<FileError> {
    let mut out = Vec::new();
    for f in files_of(paths).0 {
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.extend(advice(&f.display().to_string(), &text));
        }
    }
    out
}

/// The paths of a branch, a split or a `wait_for` that run on, in file order, into a message or
/// an update another of its paths starts with: a user on such a path gets that path's message
/// too (in Braze's or Customer.io's canvas, paths stay apart unless they are joined). An
/// explicit `next:` is taken as meant: a join, or an end.
fn runs_into_a_sibling(j: &Journey) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut warned = BTreeSet::new();
    for (i, s) in j.steps.iter().enumerate() {
        let kind = match s.action() {
            Action::Branch(_) => "branch",
            Action::Split(_) => "split",
            Action::WaitFor(_) => "wait_for",
            Action::WaitUntil(w) if w.if_past.as_ref().is_some_and(|p| p.goto().is_some()) => {
                "wait_until"
            }
            _ => continue,
        };
        let mut targets: Vec<String> = successors(j, i)
            .into_iter()
            .filter_map(|(_, t)| t)
            .collect();
        targets.dedup();
        for t in &targets {
            let mut at = j.steps.iter().position(|x| x.id == *t);
            while let Some(k) = at {
                let step = &j.steps[k];
                let runs_on = step.next.is_none()
                    && matches!(
                        step.action(),
                        Action::Wait(_)
                            | Action::WaitUntil(_)
                            | Action::Send(_)
                            | Action::Update(_)
                    );
                let Some(next) = j.next_at(k).filter(|_| runs_on) else {
                    break;
                };
                if next != t && targets.iter().any(|o| o == next) && sends_or_updates(j, next) {
                    if warned.insert(k) {
                        out.push(problem(
                            format!("steps[{k}]"),
                            format!(
                                "step `{}` runs on into `{next}`, the next step in the file, which the {kind} `{}` goes to on another path: a user on the path through `{t}` gets that path's `{next}` too. End this path here (`next:` a later step, or an `exit` step), or write `next: {next}` if that is meant",
                                step.id, s.id
                            ),
                        ));
                    }
                    break;
                }
                at = Some(k + 1).filter(|n| *n < j.steps.len() && *n > i);
            }
        }
    }
    out
}

/// Whether step `id` is itself a message or a profile update: running on into a step another
/// path starts with by a wait (a shared "wait, then the rest" that one path reaches after a
/// message of its own, an A/B control that skips one) or a decision is taken as a join.
fn sends_or_updates(j: &Journey, id: &str) -> bool {
    j.steps
        .iter()
        .find(|x| x.id == id)
        .is_some_and(|s| matches!(s.action(), Action::Send(_) | Action::Update(_)))
}

/// Whether a step always waits: a `wait_until` with a `date` goes on at once when its date is
/// past, as it is at the second pass of a loop unless the date moved meanwhile.
fn is_blocking(a: Action<'_>) -> bool {
    match a {
        Action::Wait(_) | Action::WaitFor(_) => true,
        Action::WaitUntil(w) => w.date.is_none(),
        _ => false,
    }
}

/// Whether some step of `j` waits for a date.
fn date_waits(j: &Journey) -> bool {
    j.steps
        .iter()
        .any(|s| matches!(s.action(), Action::WaitUntil(w) if w.date.is_some()))
}

/// An `enrollment_key` keys an enrollment by a value of the event that enters her: a journey
/// triggered by an event, reading that event.
fn validate_enrollment_key(j: &Journey, key: &crate::condition::ValuePath, out: &mut Vec<Problem>) {
    let trigger = match j.trigger.kind() {
        Some(TriggerKind::Event { .. }) | None => None,
        Some(TriggerKind::TraitChanged { .. }) => Some("a `trait_changed`"),
        Some(TriggerKind::Repeated(_)) => Some("a `repeated`"),
        Some(TriggerKind::Inactive(_)) => Some("an `inactive`"),
        Some(TriggerKind::Schedule(_)) => Some("a `schedule`"),
    };
    if let Some(trigger) = trigger {
        out.push(problem(
            "enrollment_key",
            format!(
                "`enrollment_key` keys an enrollment by a value of the event that triggers it, and {trigger} trigger enters her on no event of her own with such a value: use `trigger: {{event: <name>}}` with it, or leave `enrollment_key` out (one enrollment at a time)"
            ),
        ));
        return;
    }
    let source = key.source();
    if !(source.starts_with("event.") || source.starts_with("trigger.")) {
        out.push(problem(
            "enrollment_key",
            format!(
                "`{source}` is not a value of the trigger event: write a path of its properties, e.g. `enrollment_key: event.booking_id`"
            ),
        ));
    }
}

/// Semantic checks on a parsed journey. Returns problems with the path they are at.
fn validate(j: &Journey) -> Vec<Problem> {
    let mut out = Vec::new();
    if !valid_id(&j.id) {
        out.push(problem(
            "id",
            format!(
                "journey id `{}` must be 1–64 lowercase letters, digits, `_` or `-`, e.g. `cart_abandonment`",
                j.id
            ),
        ));
    }
    if j.name.trim().is_empty() {
        out.push(problem("name", "give the journey a name people will read"));
    }
    if let Some(q) = j.quiet_hours.as_ref().filter(|q| q.start == q.end) {
        out.push(problem(
            "quiet_hours.end",
            format!(
                "quiet hours from {0} to {0} hold no time: write an end other than the start (the night from 21:00 to 08:00 is `start: \"21:00\", end: \"08:00\"`), or leave `quiet_hours` out",
                String::from(q.start)
            ),
        ));
    }
    if let Some(topic) = &j.topic {
        if !crate::topic::valid_id(topic) {
            out.push(problem(
                "topic",
                format!("topic `{topic}` must be 1–64 lowercase letters, digits, `_` or `-`, as `waymark.yaml` declares it under `topics`, e.g. `newsletter`"),
            ));
        } else if j.transactional {
            // A receipt is owed whatever the user chose to hear about: a topic would let an
            // unsubscribe stop it, or say it could when it cannot.
            out.push(problem(
                "topic",
                "a transactional journey belongs to no topic: its receipts and password resets are owed whatever topics a user unsubscribed from; leave `topic` out, or `transactional: true` if these are marketing messages a user may stop",
            ));
        }
    }
    if let Some(key) = &j.enrollment_key {
        validate_enrollment_key(j, key, &mut out);
    }
    if let Some(tz) = &j.timezone {
        if jiff::tz::TimeZone::get(tz).is_err() {
            out.push(problem(
                "timezone",
                format!(
                    "`{tz}` is not an IANA time zone: {}",
                    zone_advice(tz, "write e.g. `Europe/Paris` or `UTC`")
                ),
            ));
        }
    }
    match j.trigger.kind() {
        None => out.push(problem(
            "trigger",
            "a trigger needs exactly one of `event`, `trait_changed`, `repeated`, `inactive` or `schedule`",
        )),
        Some(TriggerKind::Repeated(r)) => {
            if r.times < 2 {
                out.push(problem(
                    "trigger.repeated.times",
                    "`times` must be at least 2 (for a single event, use `trigger: {event: ...}`)",
                ));
            } else if r.times as usize > crate::profile::HISTORY_PER_EVENT {
                out.push(problem(
                    "trigger.repeated.times",
                    format!(
                        "`times` can be at most {}: a profile keeps the latest {} occurrences of an event, so a higher count could never be made",
                        crate::profile::HISTORY_PER_EVENT,
                        crate::profile::HISTORY_PER_EVENT
                    ),
                ));
            }
        }
        Some(TriggerKind::Inactive(i)) => {
            if i.events.is_empty() {
                out.push(problem(
                    "trigger.inactive.events",
                    "list the events that count as activity, e.g. `[app_opened]`",
                ));
            }
        }
        Some(TriggerKind::Schedule(s)) => {
            if s.timezone != "user" && jiff::tz::TimeZone::get(&s.timezone).is_err() {
                out.push(problem(
                    "trigger.schedule.timezone",
                    format!(
                        "`{}` is not a time zone: {}",
                        s.timezone,
                        zone_advice(
                            &s.timezone,
                            "write `user` (each user's own) or an IANA name such as `UTC`"
                        )
                    ),
                ));
            }
        }
        Some(TriggerKind::TraitChanged { name, .. }) => {
            if let Some(why) = watched_trait_problem(name) {
                out.push(problem("trigger.trait_changed", why));
            }
        }
        Some(TriggerKind::Event { events, .. }) => {
            let names = events.names();
            if names.is_empty() {
                out.push(problem(
                    "trigger.event",
                    "the list names no event: write one, `event: cart_abandoned`, or several, `event: [cart_abandoned, checkout_abandoned]`",
                ));
            } else if names.len() > crate::journey::MAX_TRIGGER_EVENTS {
                out.push(problem(
                    "trigger.event",
                    format!(
                        "a trigger lists at most {} events, this one {}: have the app send one name for what they have in common",
                        crate::journey::MAX_TRIGGER_EVENTS,
                        names.len()
                    ),
                ));
            }
            for (k, name) in names.iter().enumerate() {
                if names[..k].contains(name) {
                    out.push(problem(
                        format!("trigger.event[{k}]"),
                        format!("`{name}` is listed twice: write each event once"),
                    ));
                }
            }
        }
    }
    if j.trigger.condition.is_some()
        && j.trigger.event.is_none()
        && j.trigger.trait_changed.is_none()
    {
        out.push(problem(
            "trigger.where",
            "`where` here goes with `event` or `trait_changed`; for other triggers put it inside them",
        ));
    }
    validate_event_names(j, &mut out);
    if j.steps.is_empty() {
        out.push(problem("steps", "a journey needs at least one step"));
        return out;
    }
    if j.steps.len() > crate::journey::MAX_STEPS {
        out.push(problem(
            "steps",
            format!(
                "a journey holds at most {} steps, and this one has {}: one `update` step sets and unsets many traits at once (`update: {{set: {{a: 1, b: 2}}}}`), and a long program is better split into journeys, each entered by an event of its own",
                crate::journey::MAX_STEPS,
                j.steps.len()
            ),
        ));
        return out;
    }

    // Whether the steps' graph can be judged (reachability, loops): not while two steps share
    // an id, a step does not do one thing, or a step names one that is not there; other
    // problems (a template, a condition) leave it as it is, and its problems are told with
    // theirs.
    let mut graph_broken = false;
    // A step named that is not there: the loops among the steps that are can still be told,
    // but not which steps are reached (the missing one may have been meant to reach them).
    let mut target_missing = false;
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for (i, s) in j.steps.iter().enumerate() {
        if !valid_id(&s.id) {
            out.push(problem(
                format!("steps[{i}].id"),
                format!(
                    "step id `{}` must be 1–64 lowercase letters, digits, `_` or `-`, e.g. `push_reminder`",
                    s.id
                ),
            ));
        }
        if !ids.insert(&s.id) {
            graph_broken = true;
            out.push(problem(
                format!("steps[{i}].id"),
                format!(
                    "step id `{}` is used twice: give each step its own id",
                    s.id
                ),
            ));
        }
    }

    for (i, s) in j.steps.iter().enumerate() {
        let base = format!("steps[{i}]");
        let actions = s.actions();
        // `exit: false` beside an action is no action: read as "go on", it says what every
        // step does unless it is an `exit: true`, and read as "exit after it", it does not do
        // that; refused, as the schema refuses it, rather than kept in the file ambiguous. A
        // step with it alone does nothing (below).
        if s.exit == Some(false) && !actions.is_empty() {
            out.push(problem(
                format!("{base}.exit"),
                format!("`exit: false` is no action, and a step goes on to the next unless it is an `exit: true`: take the line out; to end the journey after this step, add a step after it, `- {{id: {}_done, exit: true}}` (or point its `next` at one)", s.id),
            ));
        }
        if actions.len() != 1 {
            graph_broken = true;
            out.push(problem(
                base.clone(),
                if actions.is_empty() {
                    format!("step `{}` does nothing: give it one of `wait`, `wait_until`, `wait_for`, `branch`, `split`, `send`, `update` or `exit: true`", s.id)
                } else {
                    format!("step `{}` has {} actions: a step does one thing; split it into several steps", s.id, actions.len())
                },
            ));
            continue;
        }
        match s.action() {
            Action::Send(send) => {
                let base = format!("{base}.send");
                validate_send(send, &base, &mut out);
                if !j.transactional {
                    validate_marketing(send, &base, &mut out);
                }
            }
            Action::WaitUntil(w) => {
                validate_wait_until(j, w, &format!("{base}.wait_until"), &mut out)
            }
            Action::Split(sp) => {
                if sp.paths.is_empty() || sp.paths.iter().all(|p| p.weight == 0) {
                    out.push(problem(
                        format!("{base}.split.paths"),
                        "a split needs paths with weights above 0",
                    ));
                }
                if sp.holdout.is_some_and(|h| h > 100) {
                    out.push(problem(
                        format!("{base}.split.holdout"),
                        "holdout is a percentage from 0 to 100",
                    ));
                }
                // A path's name is part of its stats counters
                // (`step.<split>.path.<name>.converted`): an id, one per path.
                let mut names = BTreeSet::new();
                for (k, p) in sp.paths.iter().enumerate() {
                    let name = p.name.as_deref().unwrap_or(&p.goto);
                    if p.name.as_deref().is_some_and(|n| !valid_id(n)) {
                        out.push(problem(
                            format!("{base}.split.paths[{k}].name"),
                            format!(
                                "path name `{name}` must be 1–64 lowercase letters, digits, `_` or `-` (it names the path's stats counters), e.g. `short_copy`"
                            ),
                        ));
                    } else if !names.insert(name) {
                        out.push(problem(
                            format!("{base}.split.paths[{k}]"),
                            format!(
                                "two paths of this split are named `{name}`, and their stats would be counted together: give this one a `name` of its own"
                            ),
                        ));
                    }
                }
            }
            Action::Branch(b) if b.cases.is_empty() => out.push(problem(
                format!("{base}.branch.cases"),
                "a branch needs at least one case `{when: ..., goto: ...}`",
            )),
            Action::Update(u) if u.set.is_empty() && u.unset.is_empty() => out.push(problem(
                format!("{base}.update"),
                "an update needs `set` or `unset`",
            )),
            _ => {}
        }
        if let Action::Update(u) = s.action() {
            // A fixed value of a trait Waymark sends to or formats by is checked as an identify
            // checks it, with the words the run would use for a rendered one (`null` removes the
            // trait, so it always passes).
            for (k, v) in &u.set {
                if v.is_null() || v.as_str().is_some_and(template::is_template) {
                    continue;
                }
                if let Some(why) = crate::event::identify_trait_problem(k, v) {
                    out.push(problem(format!("{base}.update.set.{k}"), why));
                }
            }
            // A trait nothing reads as meant, or one the profile keeps in its own way.
            for (k, v) in &u.set {
                if let Some(why) = update_name_problem(k, Some(v)) {
                    out.push(problem(format!("{base}.update.set.{k}"), why));
                }
            }
            for (n, k) in u.unset.iter().enumerate() {
                if let Some(why) = update_name_problem(k, None) {
                    out.push(problem(format!("{base}.update.unset[{n}]"), why));
                }
            }
            // A trait both set and unset: the update would remove it, the `set` in vain.
            for (n, k) in u.unset.iter().enumerate() {
                if u.set.contains_key(k) {
                    out.push(problem(
                        format!("{base}.update.unset[{n}]"),
                        format!("`{k}` is both in `set` (`set: {{{k}: ...}}`) and in `unset` (`unset[{n}]`) of this update, which would remove it, the value set for nothing: keep it in one of them, `set` to give it that value, `unset` to remove it"),
                    ));
                }
            }
            for (k, src) in update_templates(u) {
                if let Err(e) = template::check_offering(src, &template::SCOPE_OUTSIDE_EMAIL) {
                    out.push(Problem {
                        path: format!("{base}.update.set.{k}"),
                        template_at: template_char(src, &e),
                        message: e.message,
                        template_line: Some(e.line.unwrap_or(1)),
                    });
                }
            }
        }
        // A `next` no path takes: the journey ends at an exit, a split goes where its paths
        // say, a branch with an `else` where its cases and `else` say.
        if s.next.is_some() {
            let ignored = match s.action() {
                Action::Exit => Some("an `exit` step ends the journey"),
                Action::Split(_) => Some("a `split` goes where its paths' `goto` say"),
                Action::Branch(b) if b.otherwise.is_some() => {
                    Some("a `branch` with an `else` goes where its cases and `else` say")
                }
                _ => None,
            };
            if let Some(why) = ignored {
                out.push(problem(
                    format!("steps[{i}].next"),
                    format!("{why}, so this `next` would never be taken: remove it"),
                ));
            }
        }
        for (field, target) in successors(j, i) {
            if let Some(t) = target {
                if j.step(&t).is_none() {
                    target_missing = true;
                    // Not the step itself: a step that names where to go next means another.
                    let others = j
                        .steps
                        .iter()
                        .map(|s| s.id.as_str())
                        .filter(|id| *id != s.id);
                    let hint = closest(&t, others)
                        .map(|c| format!(": did you mean `{c}`?"))
                        .unwrap_or_else(|| {
                            let mut ids: Vec<String> = Vec::new();
                            for s in &j.steps {
                                let id = format!("`{}`", s.id);
                                if !ids.contains(&id) {
                                    ids.push(id);
                                }
                            }
                            format!(": write one of {}", ids.join(", "))
                        });
                    out.push(problem(field, format!("no step is called `{t}`{hint}")));
                }
            }
        }
    }
    validate_event_reads(j, &mut out);
    // A wait that says neither, or both, of its forms has no ways out to follow.
    if !validate_wait_forms(j, &mut out) {
        graph_broken = true;
    }
    validate_waits_against_exits(j, &mut out);
    validate_condition_templates(j, &mut out);
    if graph_broken {
        return out;
    }
    let index: HashMap<&str, usize> = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    if !target_missing {
        validate_reachable(j, &index, &mut out);
        validate_waited_reads(j, &index, &mut out);
    }
    let before = out.len();
    validate_loops(j, &index, &mut out);
    if out.len() == before {
        validate_runs(j, &index, &mut out);
    }
    out
}

/// Every step reached from the first: one that is not is refused.
fn validate_reachable(j: &Journey, index: &HashMap<&str, usize>, out: &mut Vec<Problem>) {
    let mut seen = vec![false; j.steps.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        for (_, t) in successors(j, i) {
            if let Some(&k) = t.as_deref().and_then(|t| index.get(t)) {
                stack.push(k);
            }
        }
    }
    for (i, s) in j.steps.iter().enumerate() {
        if !seen[i] {
            out.push(problem(
                format!("steps[{i}].id"),
                format!(
                    "step `{}` can never be reached: point a `next`, `goto` or `on_*` at it, or remove it",
                    s.id
                ),
            ));
        }
    }
}

/// A cycle through steps that never wait would spin forever: refused (the steps named that
/// are not there left out). A depth-first walk with a stack of its own: a long run of steps
/// without a wait would take a frame each of the thread's.
fn validate_loops(j: &Journey, index: &HashMap<&str, usize>, out: &mut Vec<Problem>) {
    // 0 new, 1 on the walk's path, 2 done.
    let mut state = vec![0u8; j.steps.len()];
    // The ways out of a step that does not wait into one that does not either (a step named
    // twice, a branch's case and its `else`, is one way).
    let ways = |i: usize| -> Vec<usize> {
        let mut targets: Vec<usize> = Vec::new();
        if is_blocking(j.steps[i].action()) {
            return targets;
        }
        for (_, t) in successors(j, i) {
            if let Some(&k) = t.as_deref().and_then(|t| index.get(t)) {
                if !targets.contains(&k) && !is_blocking(j.steps[k].action()) {
                    targets.push(k);
                }
            }
        }
        targets
    };
    for root in 0..j.steps.len() {
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        // Each step on the path, its ways out and how many of them were followed.
        let mut path: Vec<(usize, Vec<usize>, usize)> = vec![(root, ways(root), 0)];
        while let Some((i, targets, next)) = path.last_mut() {
            let i = *i;
            let Some(&k) = targets.get(*next) else {
                state[i] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            if state[k] == 1 {
                out.push(problem(
                    format!("steps[{i}]"),
                    format!(
                        "steps `{}` → `{}` form a loop with no wait{}: add a `wait`, a `wait_for` or a `wait_until` for a time of day (`wait_until: {{time: \"09:00\"}}`) step inside the loop",
                        j.steps[i].id, j.steps[k].id,
                        if date_waits(j) {
                            " (a `wait_until` with a `date` goes on at once when the date is past, as it is when the loop comes back to it, so it does not count)"
                        } else {
                            ""
                        }
                    ),
                ));
            } else if state[k] == 0 {
                state[k] = 1;
                path.push((k, ways(k), 0));
            }
        }
    }
}

/// A run of steps with no wait longer than the engine takes at a time
/// ([`MAX_STEPS_PER_TRANSITION`](crate::journey::MAX_STEPS_PER_TRANSITION), the step it stops
/// on counted) is refused, saying before which step a wait would do. Run once no loop without a
/// wait was found: the steps that do not wait then make no cycle.
fn validate_runs(j: &Journey, index: &HashMap<&str, usize>, out: &mut Vec<Problem>) {
    const MAX: usize = crate::journey::MAX_STEPS_PER_TRANSITION;
    let n = j.steps.len();
    // The longest run from each step, the step itself counted, and the step it goes on to.
    let mut longest: Vec<Option<(usize, Option<usize>)>> = vec![None; n];
    let ways = |i: usize| -> Vec<usize> {
        if is_blocking(j.steps[i].action()) {
            return Vec::new();
        }
        successors(j, i)
            .into_iter()
            .filter_map(|(_, t)| t.as_deref().and_then(|t| index.get(t)).copied())
            .collect()
    };
    for root in 0..n {
        // Depth first, with a stack of its own: a step is done once all its ways are.
        let mut stack = vec![(root, false)];
        while let Some((i, expanded)) = stack.pop() {
            if longest[i].is_some() {
                continue;
            }
            let targets = ways(i);
            if expanded {
                let best = targets
                    .iter()
                    .filter_map(|&k| longest[k].map(|(len, _)| (len, k)))
                    .fold(None, |best: Option<(usize, usize)>, (len, k)| match best {
                        Some((b, _)) if b >= len => best,
                        _ => Some((len, k)),
                    });
                longest[i] = Some(match best {
                    Some((len, k)) => (len + 1, Some(k)),
                    None => (1, None),
                });
            } else {
                stack.push((i, true));
                stack.extend(
                    targets
                        .into_iter()
                        .filter(|&k| longest[k].is_none())
                        .map(|k| (k, false)),
                );
            }
        }
    }
    let Some(start) = (0..n)
        .filter(|&i| longest[i].is_some_and(|(len, _)| len > MAX))
        .max_by_key(|&i| (longest[i].map(|(len, _)| len), std::cmp::Reverse(i)))
    else {
        return;
    };
    // The step a run from `start` would stop on: a wait just before it keeps the run within.
    let mut at = start;
    for _ in 1..MAX {
        match longest[at].and_then(|(_, next)| next) {
            Some(next) => at = next,
            None => break,
        }
    }
    let len = longest[start].map_or(0, |(len, _)| len);
    out.push(problem(
        format!("steps[{at}]"),
        format!(
            "from `{}`, {len} steps can run one after another without a wait, and the engine takes at most {MAX} at a time (it would end the enrollment here): put a `wait` (`wait: 1m` will do) just before `{}`, or fewer steps (one `update` sets many traits at once)",
            j.steps[start].id, j.steps[at].id
        ),
    ));
}

/// A message's `data` values, by their field (`data.deeplink`).
fn data_sources(data: &BTreeMap<String, String>) -> Vec<(String, &str)> {
    data.iter()
        .map(|(k, v)| (format!("data.{k}"), v.as_str()))
        .collect()
}

/// Every template text of a message, by its field (`subject`, `data.deeplink`).
fn template_sources<'a>(t: Template<'a>) -> Vec<(String, &'a str)> {
    let mut fields = t.fields();
    let data: Vec<(String, &str)> = match t {
        Template::Push(p) => data_sources(&p.data),
        Template::InApp(p) => data_sources(&p.data),
        Template::Webhook(w) => w
            .headers
            .iter()
            .map(|(k, v)| (format!("headers.{k}"), v.as_str()))
            .collect(),
        _ => Vec::new(),
    };
    fields
        .drain(..)
        .map(|(k, v)| (k.to_string(), v))
        .chain(data)
        .collect()
}

/// What changes the trait `name` outside identifies, which no `trait_changed` journey sees:
/// only an identify's change enters. `None` for a trait only identifies (and journeys'
/// `update` steps, which enter no one either, as the README says) change.
fn changed_outside_identifies(name: &str) -> Option<String> {
    match name {
        "subscriptions" => Some(
            "only an identify that states `subscriptions` enters this journey: the unsubscribe link, an SMS STOP reply and a journey's `update` change the user's choices too, and enter no one here".into(),
        ),
        "timezone" | "locale" => Some(format!(
            "only an identify enters this journey, with `{name}` in its traits or in its device's `context.{name}`: the `context.{name}` a device sends with any other event (a track) changes the profile too, and enters no one here"
        )),
        _ => None,
    }
}

/// Why a `trait_changed` trigger cannot watch the trait `name`, if it cannot: an empty name, a
/// name the profile keeps for itself, the devices an identify registers (no trait holds them),
/// or a name with a dot (one flat name, where `profile.address.city` reads inside `address`:
/// a change inside a trait is a change of the whole trait, watched by its own name).
fn watched_trait_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some(
            "name the trait whose change enters a user, as `profile.<name>` reads it, like `trait_changed: plan`"
                .into(),
        );
    }
    if name.starts_with("subscriptions.") || name.starts_with("stated:") {
        return Some(format!(
            "`{name}` is a name Waymark keeps for itself, never a trait an identify changes: watch `subscriptions` whole, which enters a user when an identify states her choices (the unsubscribe link and an SMS STOP reply change them outside identifies, and enter no one)"
        ));
    }
    if matches!(name, "push_tokens" | "devices") {
        return Some(format!(
            "an identify's `{name}` registers push devices and is kept as no trait, so it never changes one: watch a trait, like `trait_changed: plan`"
        ));
    }
    // A path that reads the trait (`profile.plan`) or its change's event (`event.plan`), where
    // the trait's own name is meant.
    for prefix in ["profile.", "event."] {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if !rest.is_empty() && !rest.contains('.') {
            let reads = if prefix == "profile." {
                "is the path that reads the trait"
            } else {
                "is a path of an event (in a `where`, `event.from` and `event.to` are the trait's old and new values)"
            };
            return Some(format!(
                "`{name}` {reads}, and a trait is watched by its name alone: drop the `{prefix}` prefix, `trait_changed: {rest}`"
            ));
        }
    }
    match name.split('.').find(|p| !p.is_empty()) {
        Some(top) if name.contains('.') => Some(format!(
            "`{name}` with a dot is one flat trait name, which `profile.{name}` does not read: watch the whole trait, `trait_changed: {top}` (a change inside it is a change of it), and read the part in `where`, like `event.to.{}`",
            name.rsplit('.').find(|p| !p.is_empty()).unwrap_or(top)
        )),
        None => Some(format!(
            "`{name}` is no trait name: watch one that `profile.<name>` reads, like `trait_changed: plan`"
        )),
        _ => None,
    }
}

/// Why an update may not set (`value` given) or unset the trait `name`, if it may not: a name
/// the profile keeps for itself (`subscriptions.email`, `stated:…`: when each channel's choice
/// was made), a trait an identify handles in its own way (`push_tokens` registers devices,
/// `subscriptions` records each channel's choice and when; an update would only store, or
/// remove, the plain value), or a name with a dot or brackets, which is one flat name:
/// `profile.address.city` reads a `city` inside an `address` object, `profile.tags[0]` the first
/// item of a list `tags`, not it. Other names stand: one with a space, a quote or a `-` is read
/// in brackets, `profile['first name']`, as the condition language says when it meets one.
fn update_name_problem(name: &str, value: Option<&serde_json::Value>) -> Option<String> {
    let verb = if value.is_some() { "set" } else { "unset" };
    if name.trim().is_empty() {
        return Some(format!(
            "a trait needs a name: {verb} one that `profile.<name>` reads, like `plan`"
        ));
    }
    if name.starts_with("subscriptions.") || name.starts_with("stated:") {
        return Some(format!(
            "`{name}` is a name Waymark keeps for itself (when a channel's choice was made), and no step can {verb} it: a user's choice for a channel comes with an identify's `subscriptions`, like {{\"subscriptions\": {{\"email\": false}}}}, or the unsubscribe link"
        ));
    }
    match name {
        "push_tokens" | "devices" => {
            return Some(format!(
                "an update does not register or remove push devices, it would only {verb} a trait `{name}` that no send reads: an identify's `push_tokens` registers them, like {{\"push_tokens\": [{{\"platform\": \"fcm\", \"token\": \"...\"}}]}}"
            ));
        }
        "subscriptions" => {
            return Some(format!(
                "an update does not record a user's choices: it would {verb} the whole `subscriptions` trait, undoing the other channels' opt-outs, with no time to judge later choices by; an identify's `subscriptions` sets them, channel by channel, like {{\"subscriptions\": {{\"email\": false}}}}"
            ));
        }
        _ => {}
    }
    if template::is_template(name) {
        let value = if value.is_some() {
            "; its value may be one, like `plan: \"{{ event.plan }}\"`"
        } else {
            ""
        };
        return Some(format!(
            "`{name}` is a template, but a trait's name is not one: it is fixed text, the trait {verb} under that very name; name the trait, like `plan`{value}"
        ));
    }
    if name.contains(['[', ']']) {
        return Some(bracketed_name_problem(name, value));
    }
    if !name.contains('.') {
        return None;
    }
    // The path that reads the trait (`profile.plan`), where its name is meant.
    if let Some(rest) = name
        .strip_prefix("profile.")
        .filter(|r| !r.is_empty() && !r.contains('.'))
    {
        let written = match value {
            Some(v) => format!(
                "`set: {{{rest}: {}}}`",
                serde_json::to_string(v)
                    .ok()
                    .filter(|t| t.chars().count() <= 60)
                    .unwrap_or_else(|| "...".to_string())
            ),
            None => format!("`unset: [{rest}]`"),
        };
        return Some(format!(
            "`{name}` is the path that reads the trait, and an update names the trait alone: drop the `profile.` prefix, {written}"
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    let unreadable = format!(
        "`{name}` with a dot is one flat trait name, and `profile.{name}` does not read it (it reads {})",
        match parts.as_slice() {
            [first, .., last] if !first.is_empty() && !last.is_empty() =>
                format!("a `{last}` inside the trait `{first}`"),
            _ => "nothing".to_string(),
        }
    );
    if parts.iter().any(|p| p.is_empty()) {
        return Some(format!(
            "{unreadable}: write a name without dots, like `{}`",
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("_")
        ));
    }
    let top = parts[0];
    let Some(value) = value else {
        return Some(format!(
            "{unreadable}: `unset` takes a whole trait, `unset: [{top}]` removes all of `{top}`; to drop only a part of it, `set` `{top}` again without that part"
        ));
    };
    // The value as written, nested under the parts after the first: `{city: "Paris"}` (a
    // template in it is rendered there as anywhere in an update).
    let inner = &parts[1..];
    let shown = serde_json::to_string(value)
        .ok()
        .filter(|t| t.chars().count() <= 60)
        .unwrap_or_else(|| "...".to_string());
    let nested = inner
        .iter()
        .rev()
        .fold(shown, |v, k| format!("{{{k}: {v}}}"));
    Some(format!(
        "{unreadable}: write it nested, `{top}: {nested}` (an update sets the whole `{top}`), and read it as `profile.{name}`"
    ))
}

/// One part of a path written in a trait's name: `.city` or `['city']`, or `[0]`.
#[derive(Debug, PartialEq)]
enum NamePart<'a> {
    Key(&'a str),
    Index(usize),
}

/// The parts of a name written as a path with brackets (`items[0]`, `address['city']`,
/// `a.b[2]`): its first word, then its parts; `None` when it does not read as one.
fn bracketed_parts(name: &str) -> Option<(&str, Vec<NamePart<'_>>)> {
    let word_end = |s: &str| s.find(['.', '[']).unwrap_or(s.len());
    let end = word_end(name);
    let (top, mut rest) = name.split_at(end);
    if top.is_empty() || top.contains(']') {
        return None;
    }
    let mut parts = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = word_end(after);
            let key = &after[..end];
            if key.is_empty() || key.contains(']') {
                return None;
            }
            parts.push(NamePart::Key(key));
            rest = &after[end..];
        } else {
            let inner = rest.strip_prefix('[')?;
            let close = inner.find(']')?;
            let within = &inner[..close];
            let part = match within.chars().next() {
                Some(q @ ('\'' | '"')) => {
                    let key = within.strip_prefix(q)?.strip_suffix(q)?;
                    if key.is_empty() || key.contains(q) {
                        return None;
                    }
                    NamePart::Key(key)
                }
                _ if !within.is_empty() && within.chars().all(|c| c.is_ascii_digit()) => {
                    NamePart::Index(within.parse().ok()?)
                }
                _ => return None,
            };
            parts.push(part);
            rest = &inner[close + 1..];
        }
    }
    (!parts.is_empty()).then_some((top, parts))
}

/// Whether a condition reads the key `k` after a dot (`profile.k`), as a word, rather than in
/// brackets (`profile['first name']`).
fn reads_after_a_dot(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Why an update may not set or unset a trait whose name has brackets (`items[0]`): it is one
/// flat name, which `profile.items[0]` (the list's first item) does not read, however much it
/// looks like that path; what to write instead, the whole trait.
fn bracketed_name_problem(name: &str, value: Option<&serde_json::Value>) -> String {
    let verb = if value.is_some() { "set" } else { "unset" };
    if let Some(rest) = name.strip_prefix("profile.").filter(|r| !r.is_empty()) {
        let inner = bracketed_name_problem(rest, value);
        return format!(
            "`{name}` is a path that reads the profile, and an update names the trait alone, without the `profile.` prefix; and {inner}"
        );
    }
    let Some((top, parts)) = bracketed_parts(name) else {
        let word: Vec<&str> = name
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|p| !p.is_empty())
            .collect();
        let like = if word.is_empty() {
            "`plan`".to_string()
        } else {
            format!("`{}`", word.join("_"))
        };
        return format!(
            "`{name}` with brackets is one flat trait name, which no path reads as written (a condition reads `profile.items[0]` as the first item of the list `items`): {verb} a name without brackets, like {like}"
        );
    };
    let reads = match parts.as_slice() {
        [NamePart::Index(i)] => format!("the item [{i}] of the list `{top}`"),
        [.., NamePart::Index(i)] => format!("the item [{i}] of a list inside the trait `{top}`"),
        [.., NamePart::Key(k)] => format!("a `{k}` inside the trait `{top}`"),
        [] => "nothing".to_string(),
    };
    let read_as = parts
        .iter()
        .fold(format!("profile.{top}"), |p, part| match part {
            NamePart::Key(k) if reads_after_a_dot(k) => format!("{p}.{k}"),
            NamePart::Key(k) => format!("{p}['{k}']"),
            NamePart::Index(i) => format!("{p}[{i}]"),
        });
    let unreadable = format!(
        "`{name}` with brackets is one flat trait name, and `{read_as}` does not read it (it reads {reads})"
    );
    let Some(value) = value else {
        return format!(
            "{unreadable}: `unset` takes a whole trait, `unset: [{top}]` removes all of `{top}`; to drop only a part of it, `set` `{top}` again without that part"
        );
    };
    let shown = serde_json::to_string(value)
        .ok()
        .filter(|t| t.chars().count() <= 60)
        .unwrap_or_else(|| "...".to_string());
    let nested = parts.iter().rev().fold(shown, |v, part| match part {
        NamePart::Key(k) if reads_after_a_dot(k) => format!("{{{k}: {v}}}"),
        NamePart::Key(k) => format!(
            "{{{}: {v}}}",
            serde_json::to_string(k).unwrap_or_else(|_| k.to_string())
        ),
        NamePart::Index(0) => format!("[{v}]"),
        NamePart::Index(_) => format!("[..., {v}]"),
    });
    let whole = if parts.iter().any(|p| matches!(p, NamePart::Index(_))) {
        "an update sets a whole trait, a list with all its items in order"
    } else {
        "an update sets a whole trait"
    };
    format!(
        "{unreadable}: write the whole `{top}`, `{top}: {nested}` ({whole}), and read the part as `{read_as}`"
    )
}

/// The `set` values of an update that are templates (rendered when the step runs), by trait.
fn update_templates(u: &crate::journey::Update) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for (k, v) in &u.set {
        templates_in(v, k.clone(), &mut out);
    }
    out
}

/// The template texts in a value, with their paths below it (`address.city`, `tags[0]`): the
/// templates inside an update's objects and lists are rendered too.
fn templates_in<'a>(v: &'a serde_json::Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        serde_json::Value::String(s) if template::is_template(s) => out.push((path, s)),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                templates_in(v, format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                templates_in(v, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every template text a step renders, by its path below the step: each field of its message
/// and of the fallbacks (`send.fallback.email.text`), and each update value that is a template
/// (`update.set.plan`).
fn step_templates(step: &crate::journey::Step) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    match step.action() {
        Action::Send(send) => {
            let variants = send
                .locales
                .iter()
                .map(|(k, v)| (format!("send.locales.{k}"), v));
            for (mut base, send) in std::iter::once(("send".to_string(), send)).chain(variants) {
                let mut next = Some(send);
                while let Some(send) = next {
                    if let Some(t) = send.template() {
                        for (field, src) in template_sources(t) {
                            out.push((format!("{base}.{}.{field}", t.channel()), src));
                        }
                    }
                    next = send.fallback.as_deref();
                    base.push_str(".fallback");
                }
            }
        }
        Action::Update(u) => {
            out.extend(
                update_templates(u)
                    .into_iter()
                    .map(|(k, src)| (format!("update.set.{k}"), src)),
            );
        }
        _ => {}
    }
    out
}

/// Where a journey names an event, for what its problems say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Trigger,
    Exit,
    Goal,
    Wait,
}

/// Every event name the journey listens for must be one the API accepts (not empty nor only
/// spaces, at most [`crate::event::MAX_EVENT_NAME_CHARS`] characters): another could never be
/// heard, and the trigger, exit, goal or wait naming it would never happen. Nor a Segment
/// call's type (`identify`, `page`): see [`call_type_problem`]. An exit and a goal name an
/// event or a trait whose change they watch (`trait_changed`), one of the two.
fn validate_event_names(j: &Journey, out: &mut Vec<Problem>) {
    let mut names: Vec<(String, &str, Listener, Option<&crate::condition::Condition>)> = Vec::new();
    if let Some(events) = &j.trigger.event {
        let condition = j.trigger.condition.as_ref();
        match events.names() {
            [one] => names.push(("trigger.event".into(), one, Listener::Trigger, condition)),
            many => {
                for (k, e) in many.iter().enumerate() {
                    names.push((
                        format!("trigger.event[{k}]"),
                        e,
                        Listener::Trigger,
                        condition,
                    ));
                }
            }
        }
    }
    if let Some(r) = &j.trigger.repeated {
        names.push((
            "trigger.repeated.event".into(),
            &r.event,
            Listener::Trigger,
            r.condition.as_ref(),
        ));
    }
    if let Some(i) = &j.trigger.inactive {
        for (k, e) in i.events.iter().enumerate() {
            names.push((
                format!("trigger.inactive.events[{k}]"),
                e,
                Listener::Trigger,
                i.condition.as_ref(),
            ));
        }
    }
    let listened = j
        .exit_when
        .iter()
        .enumerate()
        .map(|(k, x)| {
            let at = format!("exit_when[{k}]");
            (
                at,
                &x.event,
                &x.trait_changed,
                Listener::Exit,
                x.condition.as_ref(),
            )
        })
        .chain(j.goal.as_ref().map(|g| {
            let at = "goal".to_string();
            (
                at,
                &g.event,
                &g.trait_changed,
                Listener::Goal,
                g.condition.as_ref(),
            )
        }));
    for (at, event, trait_changed, listener, condition) in listened {
        match (event, trait_changed) {
            (Some(e), None) => names.push((format!("{at}.event"), e, listener, condition)),
            (None, Some(t)) => {
                if let Some(why) = watched_trait_problem(t) {
                    out.push(problem(format!("{at}.trait_changed"), why));
                }
            }
            (Some(_), Some(_)) => out.push(problem(
                format!("{at}.trait_changed"),
                match listener {
                    Listener::Goal => "write one of `event` (a track event the app sends) and `trait_changed` (a profile trait an identify changes), not both: a journey has one goal, so keep the one that is the conversion (the other can end the enrollment, in `exit_when`)",
                    _ => "write one of `event` (a track event the app sends) and `trait_changed` (a profile trait an identify changes), not both: for either, list two (`exit_when: [{event: account_closed}, {trait_changed: plan}]`)",
                },
            )),
            (None, None) => out.push(problem(
                at,
                "name what it listens to: `event: order_completed` (a track event the app sends), or `trait_changed: plan` (a profile trait an identify changes)",
            )),
        }
    }
    for (i, step) in j.steps.iter().enumerate() {
        if let Action::WaitFor(w) = step.action() {
            for (path, way) in wait_ways(i, w) {
                names.push((
                    format!("{path}.event"),
                    way.event,
                    Listener::Wait,
                    way.condition,
                ));
            }
        }
    }
    for (path, name, listener, condition) in names {
        if crate::event::shows_nothing(name) {
            out.push(problem(
                path,
                "name the event, e.g. `order_completed`: the API refuses an event whose name is empty or shows as nothing (spaces, a zero-width space), so this one could never come",
            ));
        } else if name.chars().count() > crate::event::MAX_EVENT_NAME_CHARS {
            out.push(problem(
                path,
                format!(
                    "an event name is at most {} characters (the API refuses a longer one, so this one, {} characters, could never come)",
                    crate::event::MAX_EVENT_NAME_CHARS,
                    name.chars().count()
                ),
            ));
        } else if let Some(why) = call_type_problem(name, listener, condition) {
            out.push(problem(path, why));
        }
    }
}

/// Why `name`, a Segment call's type, is no event a journey hears, if it is one: an identify
/// (`identify`, `$identify` as a profile's history lists them) changes the profile and an
/// `alias` merges a visitor into a user, and neither comes as a track event, so an exit, goal,
/// trigger or wait on it would never happen;
/// `page`, `screen` and `group` calls come as the events `page_viewed`, `screen_viewed` and
/// `group_joined`; `track` is the type of every track event. An error, not advice: an app has no
/// reason to name a track after a call's type, and a file that does most likely meant the call,
/// which would silently never fire. For an identify the problem says what does: an exit or a
/// goal on the trait's change (`trait_changed`), named after the `profile.*` trait its `where`
/// reads when it reads one.
fn call_type_problem(
    name: &str,
    listener: Listener,
    condition: Option<&crate::condition::Condition>,
) -> Option<String> {
    let call = name.trim().trim_start_matches('$').to_ascii_lowercase();
    // The track event a call comes as, and what it carries among its properties.
    let viewed = match call.as_str() {
        "identify" | "alias" => None,
        "page" => Some(("page_viewed", "its `name` and `category`")),
        "screen" => Some(("screen_viewed", "its `name` and `category`")),
        "group" => Some(("group_joined", "the group's `group_id` and its traits")),
        "track" => {
            return Some(format!(
                "`{name}` is the type of a Segment call, not an event's name: name the event the app tracks (its `event`), e.g. `order_completed`"
            ))
        }
        _ => return None,
    };
    if let Some((viewed, carries)) = viewed {
        return Some(format!(
            "a `{call}` call comes as the track event `{viewed}` ({carries} among its properties), never as `{name}`: write `{viewed}`"
        ));
    }
    if call == "alias" {
        // An alias merges a visitor into a user: an identify with no traits, which changes
        // none, so no `trait_changed` either.
        let head = format!(
            "an alias is no track event: an `alias` call says that an anonymous visitor (`previousId`) is a known user (`userId`), and merges the visitor into her, as an identify of her with no traits would; no event `{name}` comes, so this"
        );
        let instead =
            "have the app track an event when a visitor signs up or logs in (`signed_up`)";
        return Some(match listener {
            Listener::Exit => format!(
                "{head} exit would never happen. To exit when she becomes known, {instead} and write `exit_when: [{{event: signed_up}}]`"
            ),
            Listener::Goal => format!(
                "{head} goal would never be reached. To convert when she becomes known, {instead} and write `goal: {{event: signed_up, within: 7d}}`"
            ),
            Listener::Trigger => format!(
                "{head} trigger would never enter anyone. To enter when she becomes known, {instead} and write `trigger: {{event: signed_up}}`"
            ),
            Listener::Wait => format!(
                "{head} wait would always time out. To wait until she becomes known, {instead} and wait for that"
            ),
        });
    }
    // The trait the `where` reads on the profile, most likely the one whose change is meant.
    let read = condition.and_then(|c| {
        c.paths().iter().find_map(|p| {
            root_field(p, "profile")
                .filter(|f| !f.is_empty())
                .map(str::to_string)
        })
    });
    let (t, to) = match &read {
        Some(t) => (t.as_str(), "event.to == true"),
        None => ("plan", "event.to == 'pro'"),
    };
    let head = format!(
        "an identify is no track event: no event `{name}` comes when the app identifies a user (an identify changes her profile), so this"
    );
    let instead = format!(
        "`{{trait_changed: {t}, where: \"{to}\"}}` (its `where` reads the change as `event.from` and `event.to`, and `profile.*` as the identify left it)"
    );
    Some(match listener {
        Listener::Exit => format!(
            "{head} exit would never happen. To exit when an identify changes a trait, write {instead}"
        ),
        Listener::Goal => format!(
            "{head} goal would never be reached. To convert when an identify changes a trait, write `goal: {{trait_changed: {t}, where: \"{to}\", within: 7d}}` (its `where` reads the change as `event.from` and `event.to`)"
        ),
        Listener::Trigger => format!(
            "{head} trigger would never enter anyone. To enter when an identify changes a trait, write `trigger: {{trait_changed: {t}, where: \"{to}\"}}`"
        ),
        Listener::Wait => format!(
            "{head} wait would always time out. A wait cannot wait for a trait's change: have the app send a track event when it happens (`subscribed`) and wait for that, or `wait` a while and `branch` on `profile.{t}`"
        ),
    })
}

/// A `wait_for` whose event is also an unconditional `exit_when` event can never take its event
/// path: the exit ends the enrollment first. The file would promise a step that never runs.
fn validate_waits_against_exits(j: &Journey, out: &mut Vec<Problem>) {
    for (i, step) in j.steps.iter().enumerate() {
        let Action::WaitFor(w) = step.action() else {
            continue;
        };
        for (path, way) in wait_ways(i, w) {
            if j.exit_when
                .iter()
                .any(|x| x.names_event(way.event) && x.condition.is_none())
            {
                out.push(problem(
                    format!("{path}.event"),
                    format!(
                        "`{}` is also in `exit_when`, which ends the enrollment before this wait can take its event path: wait for another event, or give the exit a `where` that this case does not meet",
                        way.event
                    ),
                ));
            }
        }
    }
}

/// A `wait_for` waits for one `event` (its `where` and `on_event` beside it) or for `paths`
/// (each its own `event`, `where` and `goto`): one of the two, a list that names some event,
/// each event once. Whether each says which ways it is met by (`event`, or `paths` listing some).
fn validate_wait_forms(j: &Journey, out: &mut Vec<Problem>) -> bool {
    let mut ways_told = true;
    const EXAMPLE: &str = "`paths: [{event: session_started, goto: tip}, {event: order_placed, where: \"event.total > 50\", goto: thanks}]`";
    for (i, step) in j.steps.iter().enumerate() {
        let Action::WaitFor(w) = step.action() else {
            continue;
        };
        let base = format!("steps[{i}].wait_for");
        let Some(paths) = &w.paths else {
            if w.event.is_none() {
                ways_told = false;
                out.push(problem(
                    base,
                    format!("name the event it waits for: `event: app_opened`, or several, each with the step it leads to: {EXAMPLE}"),
                ));
            }
            continue;
        };
        if let Some(event) = &w.event {
            ways_told = false;
            out.push(problem(
                format!("{base}.paths"),
                format!("write one of `event` (one event, with its `where` and `on_event`) and `paths` (several, each with its own `where` and `goto`), not both: to wait for `{event}` too, make it one of the paths (`{{event: {event}, goto: ...}}`)"),
            ));
            continue;
        }
        if paths.is_empty() {
            ways_told = false;
            out.push(problem(
                format!("{base}.paths"),
                format!("`paths: []` names no event, so the wait would always time out: list the events it waits for, each with the step it leads to ({EXAMPLE}), or `wait` a while instead"),
            ));
        }
        if w.condition.is_some() {
            out.push(problem(
                format!("{base}.where"),
                "with `paths`, each path has its own `where`: move this one into the path it is for",
            ));
        }
        if w.on_event.is_some() {
            out.push(problem(
                format!("{base}.on_event"),
                "with `paths`, the event that meets the wait goes to its own path's `goto`: remove `on_event`, or write it as the `goto` of each path that goes there",
            ));
        }
        for (k, p) in paths.iter().enumerate() {
            if let Some(first) = paths[..k].iter().position(|o| o.event == p.event) {
                out.push(problem(
                    format!("{base}.paths[{k}].event"),
                    format!("`{}` is waited for already by `paths[{first}]`: an event meets the wait once, by one path: write one path for it (an `or` in its `where` takes either case; a `branch` after it on `waited.*` tells them apart)", p.event),
                ));
            }
        }
    }
    ways_told
}

/// The ways a `wait_for` (step `i`'s) is met, each with where it is written: the step's
/// `wait_for` for its `event`, `wait_for.paths[k]` for each of its `paths`.
fn wait_ways(i: usize, w: &WaitFor) -> Vec<(String, WaitWay<'_>)> {
    let base = format!("steps[{i}].wait_for");
    // `ways` gives the `event` first, when there is one, then the paths.
    let single = usize::from(w.event.is_some());
    w.ways()
        .enumerate()
        .map(|(k, way)| {
            let path = match k.checked_sub(single) {
                None => base.clone(),
                Some(n) => format!("{base}.paths[{n}]"),
            };
            (path, way)
        })
        .collect()
}

/// One place a journey reads the trigger event: where in the file, the property (`event.total`
/// is `total`; `event` whole is ``), and the line inside the template when it is one.
struct EventRead {
    path: String,
    /// As written: `event`, or `trigger` (the same event, as conditions on other events name it).
    root: &'static str,
    field: String,
    template_line: Option<usize>,
    /// Inside a template, where it reads it (in characters), when that can be told.
    template_at: Option<usize>,
}

/// Every place a journey reads the trigger event's properties: its templates first, then its
/// `wait_until` dates, then its conditions (the trigger's or the schedule's `where`, its
/// branches), each in step order.
fn event_reads(j: &Journey) -> Vec<EventRead> {
    let mut reads = Vec::new();
    let mut dates: Vec<(String, &str)> = Vec::new();
    let mut conditions: Vec<(String, &crate::condition::Condition)> = Vec::new();
    match j.trigger.kind() {
        Some(
            TriggerKind::Event {
                condition: Some(c), ..
            }
            | TriggerKind::TraitChanged {
                condition: Some(c), ..
            },
        ) => conditions.push(("trigger.where".into(), c)),
        Some(TriggerKind::Schedule(crate::journey::Schedule {
            condition: Some(c), ..
        })) => conditions.push(("trigger.schedule.where".into(), c)),
        Some(TriggerKind::Inactive(crate::journey::Inactive {
            condition: Some(c), ..
        })) => conditions.push(("trigger.inactive.where".into(), c)),
        _ => {}
    }
    for (i, step) in j.steps.iter().enumerate() {
        match step.action() {
            Action::Branch(b) => {
                for (k, case) in b.cases.iter().enumerate() {
                    conditions.push((format!("steps[{i}].branch.cases[{k}].when"), &case.when));
                }
            }
            Action::WaitUntil(crate::journey::WaitUntil { date: Some(d), .. }) => {
                dates.push((format!("steps[{i}].wait_until.date"), d.source()));
            }
            _ => {}
        }
        for (path, src) in step_templates(step) {
            for root in ["event", "trigger"] {
                for (field, line) in template::fields_of(src, root) {
                    reads.push(EventRead {
                        path: format!("steps[{i}].{path}"),
                        root,
                        template_at: template::place_of_use(src, root, Some(&field)),
                        field,
                        template_line: Some(line),
                    });
                }
            }
        }
    }
    let paths = dates
        .into_iter()
        .map(|(path, p)| (path, vec![p.to_string()]))
        .chain(conditions.into_iter().map(|(path, c)| (path, c.paths())));
    for (path, read) in paths {
        for p in read {
            for root in ["event", "trigger"] {
                if let Some(field) = root_field(&p, root) {
                    reads.push(EventRead {
                        path: path.clone(),
                        root,
                        field: field.to_string(),
                        template_line: None,
                        template_at: None,
                    });
                }
            }
        }
    }
    // An event's `where` reads the trigger as `trigger.*` (its `event.*` is the event that came).
    for (path, c, on_event) in all_conditions(j) {
        if !on_event {
            continue;
        }
        for p in c.paths() {
            if let Some(field) = root_field(&p, "trigger") {
                reads.push(EventRead {
                    path: path.clone(),
                    root: "trigger",
                    field: field.to_string(),
                    template_line: None,
                    template_at: None,
                });
            }
        }
    }
    reads
}

/// The trigger event's properties a journey reads (`event.total` → `total`): in its trigger's
/// `where`, its branches, its `wait_until` dates and its templates. An example request that
/// sends none of them suits only a journey that reads none.
pub fn trigger_event_fields(j: &Journey) -> BTreeSet<String> {
    event_reads(j).into_iter().map(|r| r.field).collect()
}

/// The property of `root` (`event`, `trigger`) a condition path reads (`event.items.0.name` →
/// `items`; `event` whole → ``), or `None` for a path that is not `root`'s.
fn root_field<'p>(path: &'p str, root: &str) -> Option<&'p str> {
    match path.strip_prefix(root)? {
        "" => Some(""),
        rest => {
            let f = rest.strip_prefix('.')?;
            Some(f.split('.').next().unwrap_or(f))
        }
    }
}

/// Where `source` (a condition, a `date` or a template, which `reads` the paths given) writes a
/// path in Segment's payload shape, `event.properties.amount` or `profile.traits.plan`, which
/// reads a property named `properties` (a trait named `traits`): Waymark's `event.*` are the
/// event's properties, `profile.*` the user's traits, so it finds nothing unless the app does
/// send such an object (a forwarded payload). The byte offset in `source` of the first one (the
/// first place it is written where `code` says an expression is read, not in a string or a
/// template's text) and what to write instead; the others of the text are named after it, in
/// text order, each once, at most [`MORE_SEGMENT_PATHS`] of them, as the unknown variables of a
/// template are. One read in brackets, `event['properties'].amount`, is taken as meant.
pub(crate) fn segment_shape(
    source: &str,
    reads: &[String],
    code: impl Fn(usize) -> bool,
) -> Option<(usize, String)> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    // (offset, as written, what to write instead, the full warning)
    let mut found: Vec<(usize, String, String, String)> = Vec::new();
    for (prefix, root, what, name, kind, example) in [
        (
            "event.properties",
            "event",
            "the event's properties",
            "properties",
            "property",
            "amount",
        ),
        (
            "profile.traits",
            "profile",
            "the user's traits",
            "traits",
            "trait",
            "plan",
        ),
    ] {
        let read = reads.iter().any(|p| {
            p.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        });
        if !read {
            continue;
        }
        for (at, _) in source.match_indices(prefix) {
            let before = source[..at].chars().next_back();
            let after = source[at + prefix.len()..].chars().next();
            if before.is_some_and(|c| word(c) || c == '.') || after.is_some_and(word) || !code(at) {
                continue;
            }
            let rest: String = source[at + prefix.len()..]
                .chars()
                .take_while(|c| word(*c) || *c == '.')
                .collect();
            let rest = rest.trim_end_matches('.');
            let written = format!("{prefix}{rest}");
            let instead = if rest.is_empty() {
                format!("read a {kind} by its own path, `{root}.<name>` (`{root}.{example}`)")
            } else {
                format!("write `{root}{rest}`")
            };
            let message = format!(
                "`{written}` is Segment's payload shape, but here `{root}.*` are {what} themselves: it reads a {kind} named `{name}`, which is missing unless the app sends one; {instead} (a {kind} that really is named `{name}` is read as `{root}['{name}']{rest}`, which is not warned of)"
            );
            found.push((at, written, instead, message));
        }
    }
    found.sort_by_key(|(at, ..)| *at);
    let mut named: Vec<String> = Vec::new();
    found.retain(|(_, written, ..)| {
        let new = !named.contains(written);
        named.push(written.clone());
        new
    });
    let mut found = found.into_iter();
    let (at, _, _, mut message) = found.next()?;
    let others: Vec<(usize, String, String, String)> = found.collect();
    if !others.is_empty() {
        let mut also: Vec<String> = others
            .iter()
            .take(MORE_SEGMENT_PATHS)
            .map(|(_, written, instead, _)| format!("`{written}` ({instead})"))
            .collect();
        if others.len() > MORE_SEGMENT_PATHS {
            also.push(format!("and {} more", others.len() - MORE_SEGMENT_PATHS));
        }
        message.push_str(&format!(
            "; also in Segment's payload shape in this text: {}",
            also.join(", ")
        ));
    }
    Some((at, message))
}

/// How many more of a text's paths in Segment's payload shape its warning names after the first,
/// so that a pasted payload does not fill the screen (as for a template's unknown variables).
const MORE_SEGMENT_PATHS: usize = 5;

/// Whether byte `at` of a condition or a path is outside its quoted strings.
fn outside_quotes(source: &str, at: usize) -> bool {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in source.char_indices() {
        if i >= at {
            break;
        }
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
    }
    quote.is_none()
}

/// Every template of a journey whose text holds JavaScript's `${first_name}`, which is sent as
/// written: advice, at the placeholder, since a text may mean a `$` and braces.
fn placeholders_in_text(j: &Journey) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, step) in j.steps.iter().enumerate() {
        for (path, source) in step_templates(step) {
            if let Some((at, message)) = template::placeholder_in_text(source) {
                out.push(Problem {
                    path: format!("steps[{i}].{path}"),
                    message,
                    template_line: None,
                    template_at: Some(source[..at].chars().count()),
                });
            }
        }
    }
    out
}

/// Every condition, `wait_until` date and template of a journey that writes a path in
/// Segment's payload shape ([`segment_shape`]), pointed at where it does: advice, since an app
/// may send a `properties` object of its own.
fn segment_paths(j: &Journey) -> Vec<Problem> {
    let mut conditions: Vec<(String, Option<&crate::condition::Condition>)> = Vec::new();
    match j.trigger.kind() {
        Some(
            TriggerKind::Event { condition, .. } | TriggerKind::TraitChanged { condition, .. },
        ) => conditions.push(("trigger.where".into(), condition)),
        Some(TriggerKind::Repeated(r)) => {
            conditions.push(("trigger.repeated.where".into(), r.condition.as_ref()))
        }
        Some(TriggerKind::Inactive(i)) => {
            conditions.push(("trigger.inactive.where".into(), i.condition.as_ref()))
        }
        Some(TriggerKind::Schedule(s)) => {
            conditions.push(("trigger.schedule.where".into(), s.condition.as_ref()))
        }
        None => {}
    }
    for (k, x) in j.exit_when.iter().enumerate() {
        conditions.push((format!("exit_when[{k}].where"), x.condition.as_ref()));
    }
    if let Some(g) = &j.goal {
        conditions.push(("goal.where".into(), g.condition.as_ref()));
    }
    let mut read: Vec<(String, &str, Vec<String>, usize)> = Vec::new();
    let mut templates: Vec<(String, &str)> = Vec::new();
    for (i, step) in j.steps.iter().enumerate() {
        match step.action() {
            Action::Branch(b) => {
                for (k, case) in b.cases.iter().enumerate() {
                    conditions.push((
                        format!("steps[{i}].branch.cases[{k}].when"),
                        Some(&case.when),
                    ));
                }
            }
            Action::WaitFor(w) => {
                for (path, way) in wait_ways(i, w) {
                    conditions.push((format!("{path}.where"), way.condition));
                }
            }
            // A date's place in the file is past the space written before it.
            Action::WaitUntil(crate::journey::WaitUntil { date: Some(d), .. }) => read.push((
                format!("steps[{i}].wait_until.date"),
                d.source(),
                vec![d.source().to_string()],
                d.leading(),
            )),
            _ => {}
        }
        for (path, src) in step_templates(step) {
            templates.push((format!("steps[{i}].{path}"), src));
        }
    }
    let conditions = conditions
        .into_iter()
        .filter_map(|(path, c)| c.map(|c| (path, c.source(), c.paths(), 0)));
    let mut out = Vec::new();
    for (path, source, paths, leading) in conditions.chain(read) {
        if let Some((at, message)) = segment_shape(source, &paths, |at| outside_quotes(source, at))
        {
            out.push(Problem {
                path,
                message,
                template_line: None,
                template_at: Some(leading + source[..at].chars().count()),
            });
        }
    }
    for (path, source) in templates {
        if let Some((at, message)) = template::segment_shape(source) {
            out.push(Problem {
                path,
                message,
                template_line: None,
                template_at: Some(source[..at].chars().count()),
            });
        }
    }
    out
}

/// Where a journey that no event starts reads `event.*` in its messages, its branches, its
/// dates or its schedule's `where`: those fields are always empty there, which a file should
/// not promise.
fn validate_event_reads(j: &Journey, out: &mut Vec<Problem>) {
    let (fields, why): (&[&str], &str) = match j.trigger.kind() {
        Some(TriggerKind::Schedule(_)) => (&[], "starts on a schedule: it has no trigger event"),
        Some(TriggerKind::Inactive(_)) => (
            &["inactive_since"],
            "starts on inactivity: its trigger event holds only `inactive_since`",
        ),
        Some(TriggerKind::TraitChanged { .. }) => (
            &["trait", "from", "to"],
            "starts on a trait's change: its trigger event holds only `trait`, `from` and `to`",
        ),
        _ => return,
    };
    // Reading `event` whole is fine where it holds something.
    let readable = |f: &str| fields.contains(&f) || (f.is_empty() && !fields.is_empty());
    let say = |root: &str, f: &str| {
        let written = if f.is_empty() {
            root.to_string()
        } else {
            format!("{root}.{f}")
        };
        format!("this journey {why}, so `{written}` is always empty here: read the profile instead (`profile.{}`)", if f.is_empty() { "first_name" } else { f })
    };
    for r in event_reads(j) {
        if !readable(&r.field) {
            out.push(Problem {
                message: say(r.root, &r.field),
                path: r.path,
                template_line: r.template_line,
                template_at: r.template_at,
            });
        }
    }
}

/// Every condition of a journey, where it is in the file, and whether it is judged on an event
/// that comes to an enrollment (an `exit_when`'s, a goal's or a `wait_for`'s `where`, where
/// `event.*` is that event and `trigger.*` the enrollment's trigger).
fn all_conditions(j: &Journey) -> Vec<(String, &crate::condition::Condition, bool)> {
    let mut out = Vec::new();
    match j.trigger.kind() {
        Some(
            TriggerKind::Event {
                condition: Some(c), ..
            }
            | TriggerKind::TraitChanged {
                condition: Some(c), ..
            },
        ) => out.push(("trigger.where".to_string(), c, false)),
        Some(TriggerKind::Repeated(crate::journey::Repeated {
            condition: Some(c), ..
        })) => out.push(("trigger.repeated.where".to_string(), c, false)),
        Some(TriggerKind::Schedule(crate::journey::Schedule {
            condition: Some(c), ..
        })) => out.push(("trigger.schedule.where".to_string(), c, false)),
        Some(TriggerKind::Inactive(crate::journey::Inactive {
            condition: Some(c), ..
        })) => out.push(("trigger.inactive.where".to_string(), c, false)),
        _ => {}
    }
    for (k, x) in j.exit_when.iter().enumerate() {
        if let Some(c) = &x.condition {
            out.push((format!("exit_when[{k}].where"), c, true));
        }
    }
    if let Some(c) = j.goal.as_ref().and_then(|g| g.condition.as_ref()) {
        out.push(("goal.where".to_string(), c, true));
    }
    for (i, step) in j.steps.iter().enumerate() {
        if let Some(w) = &step.wait_for {
            for (path, way) in wait_ways(i, w) {
                if let Some(c) = way.condition {
                    out.push((format!("{path}.where"), c, true));
                }
            }
        }
        if let Some(b) = &step.branch {
            for (k, case) in b.cases.iter().enumerate() {
                out.push((
                    format!("steps[{i}].branch.cases[{k}].when"),
                    &case.when,
                    false,
                ));
            }
        }
    }
    out
}

/// A `{{ }}` in a condition: a condition is no template, and reads its paths directly (a
/// `where: "event.order_id == '{{ event.order_id }}'"` compares with that very text, and is
/// always false). Told at the `{{`, with the condition written with paths when that can be
/// made: in an event's `where`, a template's `event.*` meant the trigger (`trigger.*`).
fn validate_condition_templates(j: &Journey, out: &mut Vec<Problem>) {
    for (path, c, on_event) in all_conditions(j) {
        let src = c.source();
        let Some(&(byte, _, _)) = template_paths(src).first() else {
            continue;
        };
        let advice = match paths_for_templates(src, on_event) {
            Some(written) => format!("write `{written}`"),
            None if on_event => {
                "write the path without `{{ }}` and its quotes, like `event.order_id == trigger.order_id`".to_string()
            }
            None => {
                "write the path without `{{ }}` and its quotes, like `profile.plan == event.plan`".to_string()
            }
        };
        let whose = if on_event {
            "; here `event.*` is the event that came and `trigger.*` the one the user entered with"
        } else {
            ""
        };
        out.push(Problem {
            path,
            message: format!(
                "`{{{{ }}}}` is for messages: a condition reads paths directly, and this one would compare with the text `{{{{ ... }}}}` itself: {advice}{whose}"
            ),
            template_line: None,
            template_at: Some(src[..byte].chars().count()),
        });
    }
}

/// Each `{{ path }}` in a condition's text: where its `{{` and its `}}` are, and the path. Only
/// a path is a template written by mistake: other text between braces (`event.note contains
/// '{{'`, `'{{ hi }} there'`) is text a string may well hold.
fn template_paths(src: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = src[from..].find("{{").map(|o| from + o) {
        let Some(close) = src[open + 2..].find("}}").map(|c| open + 2 + c) else {
            break;
        };
        // The innermost `{{` before this `}}`: an earlier one is text of its own.
        let open = open + src[open..close].rfind("{{").unwrap_or(0);
        let inner = src[open + 2..close].trim();
        if template_is_path(inner) {
            out.push((open, close, inner));
        }
        from = close + 2;
    }
    out
}

/// Whether the text of a `{{ }}` reads a path: it starts with one of a template's roots
/// (`event.total | round`), or is written as a path is (`usr.name`, `items[0]`).
fn template_is_path(inner: &str) -> bool {
    const ROOTS: &[&str] = &["event", "profile", "trigger", "waited", "journey"];
    let head = inner
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    if ROOTS.contains(&head) {
        return true;
    }
    inner.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
}

/// `src` with each `{{ path }}` (quoted or not) written as the path, `event.` read as
/// `trigger.` in an event's `where`; `None` when that is no condition.
fn paths_for_templates(src: &str, on_event: bool) -> Option<String> {
    let mut written = String::with_capacity(src.len());
    let mut done = 0;
    for (open, close, inner) in template_paths(src) {
        let mut before = &src[done..open];
        let mut after = &src[close + 2..];
        // The quotes around a template written as text go with it.
        for q in ['\'', '"'] {
            if before.ends_with(q) && after.starts_with(q) {
                before = &before[..before.len() - 1];
                after = &after[1..];
            }
        }
        let path = match inner.strip_prefix("event") {
            Some(field) if on_event && (field.is_empty() || field.starts_with(['.', '['])) => {
                format!("trigger{field}")
            }
            _ => inner.to_string(),
        };
        written.push_str(before);
        written.push_str(&path);
        done = src.len() - after.len();
    }
    written.push_str(&src[done..]);
    crate::condition::Condition::parse(&written).ok()?;
    Some(written)
}

/// Where `waited.*` is read in a step that no `wait_for` precedes on any way from the first
/// step (nor, in an `exit_when` or a goal, in a journey with no `wait_for`; nor in the
/// trigger's `where`): it is always missing there.
fn validate_waited_reads(j: &Journey, index: &HashMap<&str, usize>, out: &mut Vec<Problem>) {
    // The steps a way reaches after a `wait_for` met its event.
    let mut after_wait = vec![false; j.steps.len()];
    let mut todo: Vec<usize> = Vec::new();
    for (i, s) in j.steps.iter().enumerate() {
        if let Some(w) = &s.wait_for {
            for way in w.ways() {
                let met = way.goto.or_else(|| j.next_at(i));
                todo.extend(met.and_then(|id| index.get(id).copied()));
            }
        }
    }
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut after_wait[i], true) {
            continue;
        }
        // A later `wait_for` passes on what it met; its timeout clears `waited`, so only its
        // met way is after a met wait (and that one is seeded above).
        if matches!(j.steps[i].action(), Action::WaitFor(_)) {
            continue;
        }
        for (_, next) in successors(j, i) {
            todo.extend(next.and_then(|id| index.get(id.as_str()).copied()));
        }
    }
    let any_wait = j.steps.iter().any(|s| s.wait_for.is_some());
    const ADVICE: &str = "`waited.*` is the event a `wait_for` before this step met (missing when it timed out): put a `wait_for` before it, or read `event.*` (the trigger) or `profile.*`";
    // (path, the line inside a template, its character there when that can be told, known)
    let mut reads: Vec<(String, Option<usize>, Option<usize>, bool)> = Vec::new();
    for (path, c, _) in all_conditions(j) {
        if !c
            .paths()
            .iter()
            .any(|p| p == "waited" || p.starts_with("waited.") || p.starts_with("waited["))
        {
            continue;
        }
        let known = if let Some(i) = step_index(&path) {
            after_wait[i]
        } else {
            !path.starts_with("trigger") && any_wait
        };
        reads.push((path, None, None, known));
    }
    for (i, step) in j.steps.iter().enumerate() {
        for (path, src) in step_templates(step) {
            if let Some((field, line)) = template::fields_of(src, "waited").first() {
                let at = template::place_of_use(src, "waited", Some(field));
                reads.push((format!("steps[{i}].{path}"), Some(*line), at, after_wait[i]));
            }
        }
        if let Some(d) = step.wait_until.as_ref().and_then(|w| w.date.as_ref()) {
            if d.source().starts_with("waited") {
                reads.push((
                    format!("steps[{i}].wait_until.date"),
                    None,
                    None,
                    after_wait[i],
                ));
            }
        }
    }
    for (path, template_line, template_at, known) in reads {
        if known {
            continue;
        }
        let message = if path.starts_with("trigger") {
            "`waited.*` is always missing in the trigger's `where`: nothing was waited for before the user entered; read `event.*` or `profile.*`".to_string()
        } else if !any_wait {
            format!("this journey has no `wait_for`, so `waited.*` is always missing: {ADVICE}")
        } else {
            format!("no way to this step passes a `wait_for` that met its event (a timeout leaves it missing), so `waited.*` is always missing here: {ADVICE}")
        };
        out.push(Problem {
            path,
            message,
            template_line,
            template_at,
        });
    }
}

/// The step a problem's path is in (`steps[3].send...` → 3).
fn step_index(path: &str) -> Option<usize> {
    path.strip_prefix("steps[")?.split(']').next()?.parse().ok()
}

/// What is wrong with a webhook's URL template, as far as its fixed text shows: it must be an
/// http(s) URL with a host. A URL that starts with a template tag is the profile's or the
/// event's to give, and is checked when the message is rendered for its user.
fn webhook_url_problem(url: &str) -> Option<String> {
    let named = |why: String| {
        if url.trim().is_empty() {
            format!("the URL {why}")
        } else {
            format!("`{url}` {why}")
        }
    };
    let fixed = url.split('{').next().unwrap_or_default();
    if fixed.len() == url.len() {
        return crate::webhook::webhook_url_problem(url).map(named);
    }
    if fixed.is_empty() {
        return None;
    }
    let lower = fixed.to_ascii_lowercase();
    let scheme_ok = ["https://", "http://"].iter().any(|s| lower.starts_with(s));
    // Data in the scheme or the host: a user's data would choose where the call goes.
    if let Some(why) = crate::webhook::template_host_problem(url) {
        let partial = ["https://", "http://"]
            .iter()
            .any(|s| lower.len() < s.len() && s.starts_with(&lower));
        if scheme_ok || partial {
            return Some(named(why));
        }
    }
    if !scheme_ok {
        return Some(named(format!(
            "is not an https:// (or http://) URL: {}",
            crate::webhook::WEBHOOK_URL_ADVICE
        )));
    }
    // Scheme, host and port all fixed (a template only in the path or the query): they are
    // checked as a whole URL's are.
    let after_scheme = fixed.find("://").map_or(fixed, |i| &fixed[i + 3..]);
    let authority = after_scheme
        .find(['/', '?', '#'])
        .map(|end| &after_scheme[..end])?;
    let whole = format!("{}{authority}/", &fixed[..fixed.len() - after_scheme.len()]);
    crate::webhook::webhook_url_problem(&whole).map(named)
}

/// Why `unsubscribe_url` is refused in a message of `channel`, and what stands for it there.
fn unsubscribe_outside_email(channel: crate::journey::Channel) -> String {
    use crate::journey::Channel;
    let instead = match channel {
        Channel::Sms => "an SMS user opts out by replying STOP",
        Channel::Push => "a push user turns notifications off in the device's settings",
        Channel::InApp => "an in-app message is the app's own: let the app offer its settings",
        Channel::Webhook | Channel::Email => {
            "a system a webhook calls unsubscribes a user with an identify `subscriptions: {email: false}`"
        }
    };
    format!("`unsubscribe_url` is an email's link, and it unsubscribes from email: leave it out here ({instead})")
}

/// A `wait_until` is a `time` (with `weekdays`), or a `date` (with `before` or `after`,
/// `time` and `if_past`).
fn validate_wait_until(
    j: &Journey,
    w: &crate::journey::WaitUntil,
    base: &str,
    out: &mut Vec<Problem>,
) {
    if w.date.is_none() {
        if w.if_past.is_some() {
            out.push(problem(
                format!("{base}.if_past"),
                "`if_past` says what a `date` already past does: add `date: event.appointment_at` (or a profile.* time), or leave `if_past` out (a time of day is never past: it waits for the next one)",
            ));
        }
        if w.time.is_none() {
            out.push(problem(
                base,
                "a wait_until needs a `time` (`time: \"09:00\"`) or a `date` (`date: event.appointment_at`)",
            ));
        }
        for (field, set) in [("before", w.before.is_some()), ("after", w.after.is_some())] {
            if !set {
                continue;
            }
            out.push(problem(
                format!("{base}.{field}"),
                format!("`{field}` moves a `date`: add `date: event.appointment_at` (or a profile.* time), or use `wait`"),
            ));
        }
        return;
    }
    if !w.weekdays.is_empty() {
        out.push(problem(
            format!("{base}.weekdays"),
            "`weekdays` goes with `time` alone; a `date` names its day",
        ));
    }
    if w.before.is_some() && w.after.is_some() {
        out.push(problem(
            format!("{base}.after"),
            "give `before` or `after`, not both",
        ));
    }
    if let Some(p) = &w.if_past {
        validate_if_past(j, p, &format!("{base}.if_past"), out);
    }
}

/// An `if_past` that does something: `go_on` with a tolerance is what a past date does anyway,
/// and `exit` or `go_on` is the choice, not a step of that name.
fn validate_if_past(j: &Journey, p: &crate::journey::IfPast, base: &str, out: &mut Vec<Problem>) {
    use crate::journey::PastThen;
    let then = if p.by_more_than.is_some() {
        format!("{base}.then")
    } else {
        base.to_string()
    };
    if p.by_more_than.is_some() && p.then == PastThen::GoOn {
        out.push(problem(
            then.clone(),
            "`go_on` is what a date past by any time does without `if_past`, so `by_more_than` changes nothing: write `then: exit` (or a step's id) for a date past by more than it, or leave `if_past` out",
        ));
    }
    let word = p.then.as_str();
    if p.goto().is_none() {
        // A step named `exit` that is an `exit: true` step is left the same way.
        if let Some(s) = j.steps.iter().find(|s| s.id == word) {
            if !(p.then == PastThen::Exit && matches!(s.action(), Action::Exit)) {
                out.push(problem(
                    then,
                    format!(
                        "`{word}` here is the choice (`exit` leaves the journey, `go_on` goes to the next step), not the step named `{word}`: to go to that step, give it another id and write that id here"
                    ),
                ));
            }
        }
    }
}

/// An email of a journey that is not `transactional: true` is marketing mail, whatever it
/// says: `marketing: false` would only take its one-click unsubscribe away (which mailbox
/// providers require of bulk mail), so it is refused with what to write instead.
fn validate_marketing(send: &crate::journey::Send, base: &str, out: &mut Vec<Problem>) {
    let variants = send
        .locales
        .iter()
        .map(|(k, v)| (format!("{base}.locales.{k}"), v));
    let fallback = send
        .fallback
        .iter()
        .map(|f| (format!("{base}.fallback"), &**f));
    for (path, s) in std::iter::once((base.to_string(), send))
        .chain(variants)
        .chain(fallback)
    {
        if s.templates()
            .iter()
            .any(|t| matches!(t, Template::Email(e) if !e.marketing))
        {
            out.push(problem(
                format!("{path}.email.marketing"),
                "`marketing: false` is for the receipts of a `transactional: true` journey: this journey's email is marketing mail and keeps its unsubscribe link; add `transactional: true` to the journey for a receipt or a password reset, or leave `marketing` out",
            ));
        }
    }
}

/// Whether `key` is one a push's `data` may not use: FCM's reserved words (`from`,
/// `message_type`, any beginning with `google` or `gcm`) and APNs' `aps`.
fn reserved_push_key(key: &str) -> bool {
    matches!(key, "from" | "message_type" | "aps")
        || key.starts_with("google")
        || key.starts_with("gcm")
}

fn validate_send(send: &crate::journey::Send, base: &str, out: &mut Vec<Problem>) {
    let templates = send.templates();
    if templates.len() != 1 {
        out.push(problem(
            base,
            "a send names exactly one channel: `email`, `sms`, `push`, `in_app` or `webhook`",
        ));
        return;
    }
    let t = templates[0];
    let channel_path = format!("{base}.{}", t.channel());
    if let Template::Email(e) = t {
        if e.html.is_none() && e.text.is_none() {
            out.push(problem(
                channel_path.clone(),
                "an email needs an `html` or a `text` body (or both)",
            ));
        }
    }
    if let Template::Push(p) = t {
        if p.silent {
            // Data alone, by design: an alert's line would contradict it (APNs refuses a
            // background push with an alert), and with no data it would tell the app nothing.
            for (field, text) in [("title", &p.title), ("body", &p.body)] {
                if text.is_some() {
                    out.push(problem(
                        format!("{channel_path}.{field}"),
                        format!(
                            "a silent push shows nothing, so it has no `{field}`: leave out `title` and `body` for a data-only push that wakes the app in the background, or leave out `silent: true` for an alert"
                        ),
                    ));
                }
            }
            if p.data.is_empty() {
                out.push(problem(
                    format!("{channel_path}.silent"),
                    "a silent push carries its `data` alone, which the app reads in the background: add it, like `data: {sync: inbox}`",
                ));
            }
        } else if p.title.is_none() && p.body.is_none() {
            out.push(problem(
                channel_path.clone(),
                "a push needs a `title` or a `body` (or both), which its alert shows; a data-only \
                 push that shows nothing and wakes the app in the background is written \
                 `silent: true` with its `data`",
            ));
        }
        // Keys the push services keep for themselves: FCM refuses a message with one (after
        // SNS took it, so it would be recorded sent and never arrive), APNs' `aps` is the
        // alert itself.
        for key in p.data.keys().filter(|k| reserved_push_key(k)) {
            out.push(problem(
                format!("{channel_path}.data.{key}"),
                format!(
                    "`{key}` is a key the push services keep for themselves (FCM refuses `from`, `message_type` and keys beginning with `google` or `gcm`; APNs' `aps` is the alert): name it otherwise, like `app_{key}`"
                ),
            ));
        }
        if p.expires
            .is_some_and(|e| e > crate::journey::PUSH_EXPIRES_MAX)
        {
            out.push(problem(
                format!("{channel_path}.expires"),
                "FCM holds a push for at most 4 weeks: write `4w` or less",
            ));
        }
    }
    if let Template::Webhook(w) = t {
        if let Some(why) = webhook_url_problem(&w.url) {
            out.push(problem(format!("{channel_path}.url"), why));
        }
        if !matches!(
            w.method.as_str(),
            "POST" | "PUT" | "PATCH" | "GET" | "DELETE"
        ) {
            out.push(problem(
                format!("{channel_path}.method"),
                "method must be POST, PUT, PATCH, GET or DELETE",
            ));
        }
        if w.method == "GET" && w.body.is_some() {
            out.push(problem(
                format!("{channel_path}.body"),
                "a GET carries no body (many servers drop or refuse it): write `method: POST`, or put the values in the URL",
            ));
        }
        for (name, value) in &w.headers {
            let path = format!("{channel_path}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if let Some(why) = crate::webhook::header_name_problem(name) {
                out.push(problem(path, why));
            } else if matches!(
                lower.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                out.push(problem(
                    path,
                    format!("`{name}` is the HTTP client's to set from the URL and the body: leave it out"),
                ));
            } else if lower == "content-type" && template::is_template(value) {
                // The body's encoding (and how a secret's value is escaped in it) is decided
                // by it, for every user alike.
                out.push(problem(
                    path,
                    "`Content-Type` is written out, not a template (or a secret): it says how the body is encoded, and so how a secret's value is escaped in it, for every user alike",
                ));
            } else if lower == "idempotency-key" && !template::is_template(value) {
                out.push(problem(
                    path,
                    "a fixed key is every user's and every message's, so a receiver that drops repeats drops all but the first: leave it out (Waymark gives each message its own, the same on every retry)",
                ));
            } else if !template::is_template(value) {
                if let Some(why) = crate::webhook::header_value_problem(value) {
                    out.push(problem(path, why));
                }
            }
        }
    }
    // Fixed text that is blank is empty whatever the data: every user's message would be
    // skipped as empty (`render_error`), as the engine skips one rendered empty.
    let blank = |text: &str| !template::is_template(text) && text.trim().is_empty();
    if let Template::Sms(s) = t {
        if blank(&s.body) {
            out.push(problem(
                format!("{channel_path}.body"),
                "this SMS's body is blank, and so empty for every user: each send would be skipped (an empty SMS is not sent); write its text",
            ));
        }
    }
    if let Template::Email(e) = t {
        if blank(&e.subject) {
            out.push(problem(
                format!("{channel_path}.subject"),
                "this email's subject is blank, and so empty for every user: each send would be skipped (an email is not sent without a subject); write its subject",
            ));
        }
        let bodies: Vec<(&str, &str)> = [("html", &e.html), ("text", &e.text)]
            .into_iter()
            .filter_map(|(field, text)| text.as_deref().map(|t| (field, t)))
            .collect();
        if let (true, Some((field, _))) = (bodies.iter().all(|(_, t)| blank(t)), bodies.first()) {
            let what = if bodies.len() == 2 {
                "its `html` and its `text` are blank"
            } else {
                "its body is blank"
            };
            out.push(problem(
                format!("{channel_path}.{field}"),
                format!(
                    "this email has no body for any user: {what}, so each send would be skipped (an email with nothing to read is not sent); write its text"
                ),
            ));
        }
    }
    if let Template::InApp(p) = t {
        if blank(&p.title) && blank(&p.body) {
            out.push(problem(
                format!("{channel_path}.title"),
                "this in-app message shows nothing for any user: its `title` and its `body` are blank, so each send would be skipped (an empty message is not sent); write its text",
            ));
        }
    }
    if let Template::Push(p) = t {
        let parts: Vec<(&str, &str)> = [("title", &p.title), ("body", &p.body)]
            .into_iter()
            .filter_map(|(field, text)| text.as_deref().map(|t| (field, t)))
            .collect();
        let all_blank = !p.silent && !parts.is_empty() && parts.iter().all(|(_, t)| blank(t));
        if let (true, Some((field, _))) = (all_blank, parts.first()) {
            let what = if parts.len() == 2 {
                "its `title` and its `body` are blank"
            } else if *field == "title" {
                "its `title` is blank and it has no `body`"
            } else {
                "its `body` is blank and it has no `title`"
            };
            out.push(problem(
                format!("{channel_path}.{field}"),
                format!(
                    "this push shows nothing for any user: {what}, so each send would be skipped (an empty push is not sent); write the text its alert shows"
                ),
            ));
        }
    }
    // A body whose fixed text alone is longer than SNS sends would skip every user's message.
    if let Template::Sms(s) = t {
        let most = crate::engine::SMS_MOST_CHARACTERS;
        if let Some((at, count)) = template::fixed_text_past(&s.body, most) {
            out.push(Problem {
                path: format!("{channel_path}.body"),
                message: format!(
                    "this SMS is at least {count} characters whatever the data, and SNS sends at most {most} (here is the {}st): every user's message would be skipped; shorten it, or send a link to the full text",
                    most + 1
                ),
                template_line: None,
                template_at: Some(at),
            });
        }
    }
    // `unsubscribe_url` is an email's alone: another channel's advice does not offer it.
    // `secrets` is a webhook call's alone.
    let offered: &[&str] = match t {
        Template::Email(_) => &template::SCOPE,
        Template::Webhook(_) => &template::SCOPE_WEBHOOK,
        _ => &template::SCOPE_OUTSIDE_EMAIL,
    };
    if let Template::Webhook(w) = t {
        // A call with a secret goes only to the host the journey writes out.
        let reads_secret = template_sources(t)
            .iter()
            .any(|(_, src)| template::reads(src, crate::secrets::ROOT).is_some());
        // (Data in a host written in part is refused above already.)
        if reads_secret
            && !crate::webhook::host_written_out(&w.url)
            && crate::webhook::template_host_problem(&w.url).is_none()
        {
            out.push(problem(
                format!("{channel_path}.url"),
                crate::webhook::SECRET_HOST_ADVICE,
            ));
        }
    }
    for (field, src) in template_sources(t) {
        if let Err(e) = template::check_offering(src, offered) {
            out.push(Problem {
                path: format!("{channel_path}.{field}"),
                template_at: template_char(src, &e),
                message: e.message,
                template_line: Some(e.line.unwrap_or(1)),
            });
        } else if let Some(line) = (!matches!(t, Template::Email(_)))
            .then(|| template::reads(src, "unsubscribe_url"))
            .flatten()
        {
            out.push(Problem {
                path: format!("{channel_path}.{field}"),
                message: unsubscribe_outside_email(t.channel()),
                template_line: Some(line),
                template_at: template::place_of_use(src, "unsubscribe_url", None),
            });
        }
    }
    for (key, variant) in &send.locales {
        let path = format!("{base}.locales.{key}");
        let written = crate::journey::locale_key(key);
        // BCP 47's shape: a language of 2 or 3 letters, then parts of 1 to 8 letters or digits.
        let language = written.split('-').next().unwrap_or_default();
        let well_formed = (2..=35).contains(&written.len())
            && (2..=3).contains(&language.len())
            && language.chars().all(|c| c.is_ascii_lowercase())
            && written.split('-').all(|p| {
                (1..=8).contains(&p.len())
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
        if !well_formed {
            out.push(problem(
                path.clone(),
                format!("`{key}` is not a language tag: write the language's code, like `en`, `fr` or `pt-br` (BCP 47, as `profile.locale` holds it)"),
            ));
        } else if written != *key {
            out.push(problem(
                path.clone(),
                format!("a locale is written in lower case with `-` between its parts, like `fr` or `pt-br`: write `{written}`"),
            ));
        }
        if !variant.locales.is_empty() {
            out.push(problem(
                format!("{path}.locales"),
                "a locale's send has no locales of its own",
            ));
        }
        let channel = variant.template().map(|v| v.channel());
        if channel.is_some() && channel != Some(t.channel()) {
            out.push(problem(
                path.clone(),
                format!(
                    "a locale's send uses the same channel as the send it translates: `{}`",
                    t.channel()
                ),
            ));
        }
        // One rule for every language: the send's own `in_app` says whether an exit keeps it.
        let keeps = |s: &crate::journey::Send| s.in_app.as_ref().is_some_and(|p| p.keep_after_exit);
        for (at, s) in std::iter::once((path.clone(), variant)).chain(
            variant
                .fallback
                .iter()
                .map(|f| (format!("{path}.fallback"), &**f)),
        ) {
            if keeps(s) {
                out.push(problem(
                    format!("{at}.in_app.keep_after_exit"),
                    "`keep_after_exit` is written once, on the send's own `in_app` (or its fallback's): its locales follow it",
                ));
            }
        }
        // Silent or an alert is the send's, in every language: a translation that shows what
        // the send does not (or the reverse) would make one push two kinds of message.
        let silent = |s: &crate::journey::Send| s.push.as_ref().map(|p| p.silent);
        if let (Some(own), Some(theirs)) = (silent(send), silent(variant)) {
            if own != theirs {
                out.push(problem(
                    format!("{path}.push.silent"),
                    if own {
                        "a locale's push is silent as the send it translates is: write `silent: true` here too, with its `data` and no `title` or `body`"
                    } else {
                        "a locale's push is an alert as the send it translates is: leave `silent` out here, or write `silent: true` on the send itself for a data-only push in every language"
                    },
                ));
            }
        }
        if variant.send_within.is_some() {
            out.push(problem(
                format!("{path}.send_within"),
                "`send_within` is written once, on the step's own send: its locales follow it",
            ));
        }
        validate_send(variant, &path, out);
    }
    if let Some(fb) = &send.fallback {
        if fb.send_within.is_some() {
            out.push(problem(
                format!("{base}.fallback.send_within"),
                "`send_within` is written once, on the step's own send: its fallback follows it",
            ));
        }
        if !fb.locales.is_empty() {
            out.push(problem(
                format!("{base}.fallback.locales"),
                "a fallback is translated with the send: give each locale's send its own `fallback`",
            ));
        }
        if fb.fallback.is_some() {
            out.push(problem(
                format!("{base}.fallback.fallback"),
                "one fallback channel is allowed",
            ));
        }
        if fb.template().map(|f| f.channel()) == Some(t.channel()) {
            out.push(problem(
                format!("{base}.fallback"),
                "the fallback must use another channel than the first",
            ));
        }
        validate_send(fb, &format!("{base}.fallback"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CART: &str = r#"id: cart
name: Cart
trigger:
  event: cart_abandoned
reentry: after_exit
exit_when:
  - event: order_completed
steps:
  - id: wait_30m
    wait: 30m
  - id: push
    send:
      push:
        title: "Still thinking?"
        body: "{{ event.items | length }} items in your cart"
"#;

    /// An empty name gets no guess (every name of two letters was as near).
    #[test]
    fn an_empty_name_is_near_nothing() {
        assert_eq!(closest("", ["GB", "NZ", "Europe/Paris"].into_iter()), None);
        assert_eq!(zone_advice(" ", "write a zone"), "write a zone");
        assert_eq!(
            closest("Europe/Pariss", ["GB", "Europe/Paris"].into_iter()),
            Some("Europe/Paris")
        );
    }

    /// A template inside an update's object or list is checked as any other, at its place.
    #[test]
    fn a_template_nested_in_an_update_is_checked_at_its_place() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: u\n    update:\n      set:\n        home:\n          city: \"{{ evnt.city }}\"\n";
        let errors = parse("j.yaml", text).expect_err("an unknown variable");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "steps[0].update.set.home.city");
        // At the unknown name itself.
        assert_eq!((errors[0].line, errors[0].column), (9, 21));
    }

    /// A schedule that enters again while `days_until(…) <= 3` holds is advised on: it enters
    /// her on each of those days; `==`, or `reentry: never`, nothing to say.
    #[test]
    fn a_schedule_entering_again_over_a_range_of_days_is_advised_on() {
        let text = |cond: &str, reentry: &str| {
            format!("id: j\nname: J\ntrigger:\n  schedule:\n    cron: \"0 9 * * *\"\n    where: \"{cond}\"\n{reentry}steps:\n  - id: s\n    exit: true\n")
        };
        for (cond, call) in [
            (
                "days_until(profile.trial_ends_at) <= 3",
                "days_until(profile.trial_ends_at) <= 3",
            ),
            (
                "exists(profile.x) and days_since(profile.signed_up_at) >= 7",
                "days_since(profile.signed_up_at) >= 7",
            ),
            (
                "3 > days_until(profile.renews_on)",
                "days_until(profile.renews_on)",
            ),
            (
                "days_until(profile.trial_ends_at) != 0",
                "days_until(profile.trial_ends_at) != 0",
            ),
        ] {
            let said = advice("j.yaml", &text(cond, "reentry: after_exit\n"));
            assert_eq!(said.len(), 1, "{cond}: {said:?}");
            assert_eq!(said[0].path, "trigger.schedule.where");
            assert!(
                said[0]
                    .message
                    .starts_with(&format!("`{call}` holds on several days")),
                "{cond}: {}",
                said[0].message
            );
            parse("j.yaml", &text(cond, "reentry: after_exit\n")).expect("valid");
        }
        assert!(advice(
            "j.yaml",
            &text(
                "days_until(profile.trial_ends_at) == 3",
                "reentry: after_exit\n"
            )
        )
        .is_empty());
        assert!(advice(
            "j.yaml",
            &text("days_until(profile.trial_ends_at) <= 3", "reentry: never\n")
        )
        .is_empty());
    }

    /// A schedule with no `timezone` of its own runs in UTC even when the journey names one:
    /// advised, with what to write either way; a schedule that names its zone is not.
    #[test]
    fn a_schedule_without_its_own_zone_in_a_journey_with_one_is_advised() {
        let text = |journey_zone: &str, schedule_zone: &str| {
            format!(
                "id: j\nname: J\n{journey_zone}trigger:\n  schedule:\n    cron: \"0 9 * * *\"\n{schedule_zone}reentry: after_exit\nsteps:\n  - id: w\n    wait: 1h\n"
            )
        };
        let said = advice("j.yaml", &text("timezone: Europe/Paris\n", ""));
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].path, "trigger.schedule");
        assert_eq!((said[0].line, said[0].column), (5, 3), "{}", said[0]);
        assert_eq!(
            said[0].message,
            "this schedule names no `timezone`, so its cron `0 9 * * *` runs in UTC, not in the journey's `timezone: Europe/Paris` (that one is the zone of a user with none, for her waits, quiet hours and dates): write `timezone: Europe/Paris` under `schedule:` to run it in Europe/Paris, `timezone: user` to run it in each user's zone, or `timezone: UTC` to keep UTC and silence this"
        );
        parse("j.yaml", &text("timezone: Europe/Paris\n", "")).expect("valid");
        for (journey_zone, schedule_zone) in [
            ("timezone: Europe/Paris\n", "    timezone: UTC\n"),
            ("timezone: Europe/Paris\n", "    timezone: user\n"),
            ("timezone: Europe/Paris\n", "    timezone: Europe/Paris\n"),
            ("", ""),
        ] {
            let said = advice("j.yaml", &text(journey_zone, schedule_zone));
            assert!(said.is_empty(), "{journey_zone}{schedule_zone}: {said:?}");
        }
    }

    /// Each error's advice is the one that fits what was written: an `enrollment_key` that is
    /// no path gets the key's (not a `date`'s, nor `profile.*`, which a key is not); a trait
    /// watched or set by the path that reads it gets its name without the prefix; a goal with
    /// two listeners is told it holds one; `group` and `alias` are told what they are.
    #[test]
    fn a_refused_file_is_told_what_fits_what_it_wrote() {
        let journey = |head: &str, steps: &str| {
            format!("id: t\nname: T\n{head}reentry: after_exit\nsteps:\n  - id: a\n{steps}")
        };
        let wait = "    wait: 1h\n";
        for (text, says, not) in [
            (
                journey("trigger: {event: booked}\nenrollment_key: booking_id\n", wait),
                "enrollment_key: `booking_id` is not a path: `enrollment_key` takes a path of the trigger event's properties, like event.booking_id; write `enrollment_key: event.booking_id`",
                "profile.",
            ),
            (
                journey("trigger: {event: booked}\nenrollment_key: 12\n", wait),
                "enrollment_key: `12` is not a path: `enrollment_key` takes a path of the trigger event's properties",
                "date",
            ),
            (
                journey("trigger: {trait_changed: profile.plan}\n", wait),
                "trigger.trait_changed: `profile.plan` is the path that reads the trait, and a trait is watched by its name alone: drop the `profile.` prefix, `trait_changed: plan`",
                "trait_changed: profile`",
            ),
            (
                journey("trigger: {trait_changed: event.plan}\n", wait),
                "trigger.trait_changed: `event.plan` is a path of an event (in a `where`, `event.from` and `event.to` are the trait's old and new values), and a trait is watched by its name alone: drop the `event.` prefix, `trait_changed: plan`",
                "trait_changed: event`",
            ),
            (
                journey(
                    "trigger: {event: go}\nexit_when: [{trait_changed: profile.plan}]\n",
                    wait,
                ),
                "exit_when[0].trait_changed: `profile.plan` is the path that reads the trait, and a trait is watched by its name alone: drop the `profile.` prefix, `trait_changed: plan`",
                "trait_changed: profile`",
            ),
            (
                journey(
                    "trigger: {event: go}\ngoal: {trait_changed: profile.plan, within: 7d}\n",
                    wait,
                ),
                "goal.trait_changed: `profile.plan` is the path that reads the trait, and a trait is watched by its name alone: drop the `profile.` prefix, `trait_changed: plan`",
                "trait_changed: profile`",
            ),
            (
                journey("trigger: {event: go}\n", "    update: {set: {profile.plan: pro}}\n"),
                "steps[0].update.set.profile.plan: `profile.plan` is the path that reads the trait, and an update names the trait alone: drop the `profile.` prefix, `set: {plan: \"pro\"}`",
                "profile.profile",
            ),
            (
                journey("trigger: {event: go}\n", "    update: {unset: [profile.plan]}\n"),
                "steps[0].update.unset[0]: `profile.plan` is the path that reads the trait, and an update names the trait alone: drop the `profile.` prefix, `unset: [plan]`",
                "profile.profile",
            ),
            (
                journey(
                    "trigger: {event: go}\ngoal: {event: paid, trait_changed: plan, within: 7d}\n",
                    wait,
                ),
                "goal.trait_changed: write one of `event` (a track event the app sends) and `trait_changed` (a profile trait an identify changes), not both: a journey has one goal, so keep the one that is the conversion (the other can end the enrollment, in `exit_when`)",
                "list two",
            ),
            (
                journey("trigger: {event: group}\n", wait),
                "trigger.event: a `group` call comes as the track event `group_joined` (the group's `group_id` and its traits among its properties), never as `group`: write `group_joined`",
                "`name`",
            ),
            (
                journey("trigger: {event: alias}\n", wait),
                "trigger.event: an alias is no track event: an `alias` call says that an anonymous visitor (`previousId`) is a known user (`userId`), and merges the visitor into her, as an identify of her with no traits would; no event `alias` comes, so this trigger would never enter anyone. To enter when she becomes known, have the app track an event when a visitor signs up or logs in (`signed_up`) and write `trigger: {event: signed_up}`",
                "trait_changed",
            ),
        ] {
            let e = all_errors(&text);
            assert!(e.contains(says), "{text}\n{e}");
            assert!(!e.contains(not), "{text}\n{e}");
        }
        // An exit's two listeners are still told to list two.
        let e = all_errors(&journey(
            "trigger: {event: go}\nexit_when: [{event: paid, trait_changed: plan}]\n",
            wait,
        ));
        assert!(e.contains("for either, list two"), "{e}");
        // What it advises is valid.
        for fixed in [
            journey(
                "trigger: {event: booked}\nenrollment_key: event.booking_id\n",
                wait,
            ),
            journey("trigger: {trait_changed: plan}\n", wait),
            journey("trigger: {event: go}\n", "    update: {set: {plan: pro}}\n"),
            journey("trigger: {event: group_joined}\n", wait),
        ] {
            parse("j.yaml", &fixed).expect(&fixed);
        }
    }

    /// A message part whose fixed text is blank is empty for every user, and every send of it
    /// would be skipped: refused, as other parts that fail whatever the data are. One whose
    /// text comes from the data, or that another part fills, is not.
    #[test]
    fn a_message_blank_whatever_the_data_is_refused() {
        let journey = |send: &str| {
            format!("id: t\nname: T\ntrigger: {{event: go}}\nreentry: after_exit\nsteps:\n  - id: a\n    send: {send}\n")
        };
        for (send, at, says) in [
            (
                "{push: {title: \"\"}}",
                "j.yaml:7:19: steps[0].send.push.title:",
                "this push shows nothing for any user: its `title` is blank and it has no `body`, so each send would be skipped (an empty push is not sent); write the text its alert shows",
            ),
            (
                "{push: {body: \" \"}}",
                "j.yaml:7:19: steps[0].send.push.body:",
                "its `body` is blank and it has no `title`",
            ),
            (
                "{push: {title: \"\", body: \"  \"}}",
                "j.yaml:7:19: steps[0].send.push.title:",
                "its `title` and its `body` are blank",
            ),
            (
                "{sms: {body: \"  \"}}",
                "j.yaml:7:18: steps[0].send.sms.body:",
                "this SMS's body is blank, and so empty for every user: each send would be skipped (an empty SMS is not sent); write its text",
            ),
            (
                "{email: {subject: \" \", text: \"Hi\"}}",
                "j.yaml:7:20: steps[0].send.email.subject:",
                "this email's subject is blank, and so empty for every user: each send would be skipped (an email is not sent without a subject); write its subject",
            ),
            (
                "{email: {subject: \"Hi\", html: \"\", text: \" \"}}",
                "j.yaml:7:35: steps[0].send.email.html:",
                "this email has no body for any user: its `html` and its `text` are blank",
            ),
            (
                "{email: {subject: \"Hi\", text: \"\"}}",
                "j.yaml:7:35: steps[0].send.email.text:",
                "this email has no body for any user: its body is blank",
            ),
            (
                "{in_app: {title: \"\", body: \" \"}}",
                "j.yaml:7:21: steps[0].send.in_app.title:",
                "this in-app message shows nothing for any user: its `title` and its `body` are blank",
            ),
        ] {
            let e = all_errors(&journey(send));
            assert!(e.starts_with(at), "{send}: {e}");
            assert!(e.contains(says), "{send}: {e}");
        }
        for fine in [
            "{push: {title: \"\", body: \"Come back\"}}",
            "{push: {title: \"{{ event.title }}\"}}",
            "{sms: {body: \"{{ event.text }}\"}}",
            "{sms: {body: \"Hi\"}}",
            "{email: {subject: \"{{ event.title }}\", text: \"{{ event.text }}\"}}",
            "{email: {subject: \"Hi\", html: \"\", text: \"Hello\"}}",
            "{in_app: {title: \"\", body: \"Hello\"}}",
            "{in_app: {title: \"{{ event.title }}\", body: \"\"}}",
        ] {
            parse("j.yaml", &journey(fine)).expect(fine);
        }
    }

    /// Each piece of advice's path, line, column and what it says to write.
    fn advised_at(said: &[FileError]) -> Vec<(&str, usize, usize, &str)> {
        said.iter()
            .map(|e| {
                (
                    e.path.as_str(),
                    e.line,
                    e.column,
                    e.message.rsplit("write ").next().unwrap_or(""),
                )
            })
            .collect()
    }

    /// A number in quotes ordered against a path compares text (`"7.00"` after `"50"`): advised
    /// on at the operator, with `number(…)` to write; `==`, or a number unquoted, nothing to say.
    #[test]
    fn a_number_in_quotes_ordered_against_a_path_is_advised_on() {
        let text = |cond: &str| {
            format!("id: j\nname: J\ntrigger: {{event: balance_updated, where: '{cond}'}}\nsteps:\n  - id: s\n    branch:\n      cases:\n        - when: \"profile.tier >= '2'\"\n          goto: s2\n  - id: s2\n    exit: true\n")
        };
        let advised = advice("j.yaml", &text("event.balance < \"50\""));
        let said = advised_at(&advised);
        assert_eq!(
            said,
            [
                ("trigger.where", 3, 57, "number(event.balance) < 50"),
                (
                    "steps[0].branch.cases[0].when",
                    8,
                    31,
                    "number(profile.tier) >= 2"
                ),
            ]
        );
        let quiet = advice("j.yaml", &text("event.balance == \"50\""));
        assert_eq!(quiet.len(), 1, "{quiet:?}");
        let quiet = advice("j.yaml", &text("number(event.balance) < 50"));
        assert_eq!(quiet.len(), 1, "{quiet:?}");
    }

    /// `lower(…)` compared with text that has upper-case letters never matches: advised on at
    /// the operator, with what to write; text in lower case, nothing to say.
    #[test]
    fn lower_compared_with_upper_case_text_is_advised_on() {
        let text = |cond: &str| {
            format!("id: j\nname: J\ntrigger: {{event: signed_up, where: \"{cond}\"}}\nsteps:\n  - id: s\n    branch:\n      cases:\n        - when: \"upper(profile.plan) in ['pro', 'TEAM']\"\n          goto: s2\n  - id: s2\n    exit: true\n")
        };
        let advised = advice("j.yaml", &text("lower(event.country) == 'DE'"));
        let said = advised_at(&advised);
        assert_eq!(
            said,
            [
                ("trigger.where", 3, 58, "lower(event.country) == 'de'"),
                (
                    "steps[0].branch.cases[0].when",
                    8,
                    38,
                    "upper(profile.plan) in ['PRO', 'TEAM']"
                ),
            ]
        );
        let quiet = advice("j.yaml", &text("lower(event.country) == 'de'"));
        assert_eq!(quiet.len(), 1, "{quiet:?}");
    }

    /// A count's `where` that reads the event is advised on: only the event that makes the
    /// count is judged by it; one on the profile only, nothing to say.
    #[test]
    fn a_repeated_triggers_where_on_the_event_is_advised_on() {
        let text = |cond: &str| {
            format!("id: j\nname: J\ntrigger:\n  repeated:\n    event: ride_rated\n    times: 3\n    within: 30d\n    where: \"{cond}\"\nsteps:\n  - id: s\n    exit: true\n")
        };
        let said = advice("j.yaml", &text("event.stars <= 2"));
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].path, "trigger.repeated.where");
        assert!(
            said[0].message.starts_with(
                "this `where` is judged only on the `ride_rated` that makes the count of 3:"
            ),
            "{}",
            said[0].message
        );
        parse("j.yaml", &text("event.stars <= 2")).expect("valid");
        assert!(advice("j.yaml", &text("profile.plan == 'pro'")).is_empty());
    }

    /// A trait_changed journey with neither `where` nor `reentry` spends its one entry on the
    /// first change, the sign-up's: advised on, not refused; either said, nothing to say.
    #[test]
    fn a_trait_changed_journey_with_no_where_nor_reentry_is_advised_on() {
        let text = |more: &str| {
            format!("id: j\nname: J\ntrigger:\n  trait_changed: plan\n{more}steps:\n  - id: s\n    exit: true\n")
        };
        let said = advice("j.yaml", &text(""));
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].path, "trigger.trait_changed");
        assert!(said[0].message.contains("once ever"), "{}", said[0].message);
        assert!(
            said[0].message.contains("`reentry: after_exit`"),
            "{}",
            said[0].message
        );
        parse("j.yaml", &text("")).expect("valid");
        for more in [
            "  where: \"event.to == 'pro'\"\n",
            "reentry: never\n",
            "reentry: after_exit\n",
            "reentry: {after: 30d}\n",
        ] {
            assert!(advice("j.yaml", &text(more)).is_empty(), "{more}");
        }
    }

    /// A trait_changed journey on `subscriptions`, `timezone` or `locale` is advised on what
    /// enters no one (changes outside identifies); other traits, nothing to say.
    #[test]
    fn a_trait_changed_journey_on_a_trait_changed_outside_identifies_is_advised_on() {
        let text = |name: &str| {
            format!("id: j\nname: J\ntrigger:\n  trait_changed: {name}\nreentry: after_exit\nsteps:\n  - id: s\n    exit: true\n")
        };
        for (name, says) in [
            ("subscriptions", "the unsubscribe link, an SMS STOP reply"),
            (
                "timezone",
                "`context.timezone` a device sends with any other event",
            ),
            (
                "locale",
                "`context.locale` a device sends with any other event",
            ),
        ] {
            parse("j.yaml", &text(name)).expect("valid");
            let said = advice("j.yaml", &text(name));
            assert_eq!(said.len(), 1, "{name}: {said:?}");
            assert_eq!(said[0].path, "trigger.trait_changed");
            assert!(said[0].message.contains(says), "{}", said[0].message);
        }
        assert!(advice("j.yaml", &text("plan")).is_empty());
        // the name Waymark keeps for itself steers to `subscriptions`, saying what it misses
        let kept = parse("j.yaml", &text("subscriptions.email")).expect_err("kept name");
        assert!(
            kept[0].message.contains(
                "the unsubscribe link and an SMS STOP reply change them outside identifies"
            ),
            "{}",
            kept[0].message
        );
    }

    /// A branch's path that runs on into a step another of its paths goes to is advised on,
    /// at the step that runs on; a path joined by an explicit `next:` is not.
    #[test]
    fn a_path_that_runs_on_into_a_sibling_path_is_advised_on() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: br\n    branch: {cases: [{when: \"event.vip == true\", goto: vip}]}\n  - id: regular\n    send: {sms: {body: regular}}\n  - id: vip\n    send: {sms: {body: vip}}\n";
        let said = advice("j.yaml", text);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!((said[0].line, said[0].path.as_str()), (7, "steps[1]"));
        assert!(
            said[0].message.starts_with("step `regular` runs on into `vip`, the next step in the file, which the branch `br` goes to on another path"),
            "{}",
            said[0].message
        );
        assert!(
            said[0].message.contains("write `next: vip`"),
            "{}",
            said[0].message
        );
        // Joined on purpose, or ended: nothing to say.
        for fix in ["    next: vip\n", "    next: end\n"] {
            let fixed = text.replace(
                "    send: {sms: {body: regular}}\n",
                &format!("    send: {{sms: {{body: regular}}}}\n{fix}"),
            ) + "  - id: end\n    exit: true\n";
            assert!(advice("j.yaml", &fixed).is_empty(), "{fix}");
        }
        // A split's and a wait_for's paths alike.
        let split = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: pick\n    split: {paths: [{weight: 1, goto: a}, {weight: 1, goto: b}]}\n  - id: a\n    send: {sms: {body: a}}\n  - id: b\n    send: {sms: {body: b}}\n";
        assert_eq!(advice("j.yaml", split).len(), 1);
        let wait_for = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: w\n    wait_for: {event: paid, timeout: 1d, on_event: thanks, on_timeout: nudge}\n  - id: nudge\n    send: {sms: {body: pay}}\n  - id: thanks\n    send: {sms: {body: thanks}}\n";
        assert_eq!(advice("j.yaml", wait_for).len(), 1);
        // Running on into another path's wait is taken as a join (an A/B control that skips
        // a message, then both wait and go on).
        let control = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: pick\n    split: {paths: [{weight: 1, goto: push}, {weight: 1, goto: later}]}\n  - id: push\n    send: {sms: {body: a}}\n  - id: later\n    wait: 4h\n  - id: email\n    send: {sms: {body: b}}\n";
        assert!(advice("j.yaml", control).is_empty());
        // Running on into a path that only waits and ends is harmless.
        let ends = wait_for.replace("    send: {sms: {body: thanks}}\n", "    exit: true\n");
        assert!(advice("j.yaml", &ends).is_empty());
        // Quiet hours a transactional journey does not apply.
        let receipt = "id: j\nname: J\ntransactional: true\nquiet_hours: {start: \"21:00\", end: \"08:00\"}\ntrigger: {event: e}\nsteps:\n  - id: s\n    send: {sms: {body: code}}\n";
        let said = advice("j.yaml", receipt);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!((said[0].line, said[0].path.as_str()), (4, "quiet_hours"));
        assert!(
            said[0].message.contains("not applied"),
            "{}",
            said[0].message
        );
        // An invalid file gets its errors, not advice.
        assert!(advice("j.yaml", &text.replace("goto: vip", "goto: nowhere")).is_empty());
    }

    /// An exit's or a goal's `where` that reads `trigger.*` or `waited.*` is advised on: an
    /// event the enrollment does not hear itself (before a login moved it) is not judged by it.
    #[test]
    fn an_exit_or_goal_where_reading_the_enrollment_is_advised_on() {
        let text = "id: j\nname: J\ntrigger: {event: cart_created}\nexit_when:\n  - {event: cart_checked_out, where: \"event.cart_id == trigger.cart_id\"}\n  - {event: cart_emptied, where: \"event.total == 0\"}\ngoal: {event: order_paid, where: \"event.cart_id == trigger.cart_id\", within: 7d}\nsteps:\n  - id: s\n    send: {sms: {body: come back}}\n";
        let said = advice("j.yaml", text);
        let at: Vec<(usize, &str)> = said.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            at,
            [(5, "exit_when[0].where"), (7, "goal.where")],
            "{said:?}"
        );
        assert!(
            said[0].message.contains(
                "before a login moved an anonymous visitor's enrollment to her, does not end it"
            ),
            "{}",
            said[0].message
        );
        assert!(
            said[1].message.contains("does not convert it"),
            "{}",
            said[1].message
        );
        // Reading only the event and the profile: nothing to say.
        let plain = text.replace("trigger.cart_id", "profile.cart_id");
        assert!(advice("j.yaml", &plain).is_empty());
    }

    #[test]
    fn parses_a_good_journey() {
        let j = parse("cart.yaml", CART).expect("valid");
        assert_eq!(j.id, "cart");
        assert_eq!(j.steps.len(), 2);
        assert_eq!(j.next_of("wait_30m"), Some("push"));
    }

    /// An update refuses, at the key, a trait name that reads as a path but is one flat name,
    /// one the profile keeps for itself, and one an identify handles in its own way (devices,
    /// subscription choices), in `set` and `unset` alike, saying what to write instead.
    #[test]
    fn an_update_refuses_trait_names_it_cannot_set_as_meant() {
        let text = |update: &str| {
            format!(
                "id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: u\n    update:\n{update}"
            )
        };
        let cases = [
            (
                "      set:\n        address.city: Paris\n",
                "j.yaml:8:9: steps[0].update.set.address.city: `address.city` with a dot is one flat trait name, and `profile.address.city` does not read it (it reads a `city` inside the trait `address`): write it nested, `address: {city: \"Paris\"}` (an update sets the whole `address`), and read it as `profile.address.city`",
            ),
            (
                "      set: {plan: gold, \"a.b.c\": 3}\n",
                "`a: {b: {c: 3}}`",
            ),
            (
                "      set: {\"address.city\": \"{{ event.city | title }}\"}\n",
                "write it nested, `address: {city: \"{{ event.city | title }}\"}`",
            ),
            (
                "      set: {\"address.\": x}\n",
                "(it reads nothing): write a name without dots, like `address`",
            ),
            (
                "      unset: [plan, address.city]\n",
                "j.yaml:7:21: steps[0].update.unset[1]: `address.city` with a dot is one flat trait name, and `profile.address.city` does not read it (it reads a `city` inside the trait `address`): `unset` takes a whole trait, `unset: [address]` removes all of `address`",
            ),
            (
                "      set: {\"a[0]\": 5}\n",
                "j.yaml:7:13: steps[0].update.set.a[0]: `a[0]` with brackets is one flat trait name, and `profile.a[0]` does not read it (it reads the item [0] of the list `a`): write the whole `a`, `a: [5]` (an update sets a whole trait, a list with all its items in order), and read the part as `profile.a[0]`",
            ),
            (
                "      set:\n        \"address['city']\": Paris\n",
                "j.yaml:8:9: steps[0].update.set.address['city']: `address['city']` with brackets is one flat trait name, and `profile.address.city` does not read it (it reads a `city` inside the trait `address`): write the whole `address`, `address: {city: \"Paris\"}`",
            ),
            (
                "      set: {'a.b[2]': x}\n      unset: [plan]\n",
                "`a.b[2]` with brackets is one flat trait name, and `profile.a.b[2]` does not read it (it reads the item [2] of a list inside the trait `a`): write the whole `a`, `a: {b: [..., \"x\"]}`",
            ),
            (
                "      set: {'c[\"first name\"]': 1}\n",
                "`c[\"first name\"]` with brackets is one flat trait name, and `profile.c['first name']` does not read it (it reads a `first name` inside the trait `c`): write the whole `c`, `c: {\"first name\": 1}` (an update sets a whole trait), and read the part as `profile.c['first name']`",
            ),
            (
                "      unset: [\"tags[0]\"]\n",
                "steps[0].update.unset[0]: `tags[0]` with brackets is one flat trait name, and `profile.tags[0]` does not read it (it reads the item [0] of the list `tags`): `unset` takes a whole trait, `unset: [tags]` removes all of `tags`",
            ),
            (
                "      set: {\"profile.tags[0]\": a}\n",
                "`profile.tags[0]` is a path that reads the profile, and an update names the trait alone, without the `profile.` prefix; and `tags[0]` with brackets is one flat trait name",
            ),
            (
                "      set: {\"tags]\": a}\n",
                "`tags]` with brackets is one flat trait name, which no path reads as written (a condition reads `profile.items[0]` as the first item of the list `items`): set a name without brackets, like `tags`",
            ),
            (
                "      set: {\"stated:email\": x}\n",
                "steps[0].update.set.stated:email: `stated:email` is a name Waymark keeps for itself (when a channel's choice was made), and no step can set it: a user's choice for a channel comes with an identify's `subscriptions`",
            ),
            (
                "      set:\n        subscriptions.email: y\n",
                "j.yaml:8:9: steps[0].update.set.subscriptions.email: `subscriptions.email` is a name Waymark keeps for itself",
            ),
            (
                "      unset: [subscriptions.sms]\n",
                "steps[0].update.unset[0]: `subscriptions.sms` is a name Waymark keeps for itself (when a channel's choice was made), and no step can unset it",
            ),
            (
                "      set: {push_tokens: []}\n",
                "steps[0].update.set.push_tokens: an update does not register or remove push devices, it would only set a trait `push_tokens` that no send reads: an identify's `push_tokens` registers them",
            ),
            (
                "      unset: [devices]\n",
                "steps[0].update.unset[0]: an update does not register or remove push devices",
            ),
            (
                "      set: {\"\": 1}\n",
                "a trait needs a name: set one that `profile.<name>` reads, like `plan`",
            ),
            (
                "      set: {plan: \"{{ event.p }}\", email: x@example.com}\n      unset: [name, email]\n",
                "j.yaml:8:21: steps[0].update.unset[1]: `email` is both in `set` (`set: {email: ...}`) and in `unset` (`unset[1]`) of this update, which would remove it, the value set for nothing: keep it in one of them, `set` to give it that value, `unset` to remove it",
            ),
            (
                "      set: {\"{{ event.k }}\": 1}\n",
                "j.yaml:7:13: steps[0].update.set.{{ event.k }}: `{{ event.k }}` is a template, but a trait's name is not one: it is fixed text, the trait set under that very name; name the trait, like `plan`; its value may be one, like `plan: \"{{ event.plan }}\"`",
            ),
            (
                "      unset: [\"{% if x %}a{% endif %}\"]\n",
                "steps[0].update.unset[0]: `{% if x %}a{% endif %}` is a template, but a trait's name is not one: it is fixed text, the trait unset under that very name; name the trait, like `plan`",
            ),
            (
                "      unset: [\"  \"]\n",
                "steps[0].update.unset[0]: a trait needs a name: unset one",
            ),
            (
                "      set: {subscriptions: {email: false}}\n",
                "steps[0].update.set.subscriptions: an update does not record a user's choices: it would set the whole `subscriptions` trait, undoing the other channels' opt-outs",
            ),
            (
                "      unset: [subscriptions]\n",
                "steps[0].update.unset[0]: an update does not record a user's choices: it would unset the whole `subscriptions` trait",
            ),
        ];
        for (update, said) in cases {
            let errors = parse("j.yaml", &text(update)).expect_err(update);
            assert_eq!(errors.len(), 1, "{update}: {errors:?}");
            assert!(
                errors[0].to_string().contains(said),
                "{update}: {}",
                errors[0]
            );
        }
        // Written as the advice says, it is valid.
        for fixed in [
            "      set: {address: {city: \"Paris\"}, subscriber: true, stated_at: x}\n",
            "      unset: [address]\n",
            "      set: {address: \"{{ {'city': event.city | title} }}\"}\n",
            "      set: {a: [5], tags: [a, b], \"first name\": Ann}\n",
        ] {
            parse("j.yaml", &text(fixed)).expect(fixed);
        }
    }

    #[test]
    fn an_update_of_an_address_is_checked_as_an_identify_is() {
        let text = |set: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: u\n    update:\n      set: {set}\n")
        };
        let e = first_error(&text("{phone: \"not a phone\"}"));
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.to_string()
                .contains("steps[0].update.set.phone: must be an E.164 number"),
            "{e}"
        );
        let e = first_error(&text("{timezone: Mars/Olympus}"));
        assert!(
            e.to_string().contains("must be an IANA time zone name"),
            "{e}"
        );
        let e = first_error(&text("{email: nope}"));
        assert!(e.to_string().contains("ada@example.com"), "{e}");
        // A locale as the run refuses a rendered one, and an identify its trait.
        let e = first_error(&text("{locale: French}"));
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.to_string().contains(
                "steps[0].update.set.locale: must be a locale tag like fr-FR, en or pt_BR, not a language's name: did you mean `fr`?"
            ),
            "{e}"
        );
        let e = first_error(&text("{locale: 42}"));
        assert!(
            e.to_string()
                .contains("steps[0].update.set.locale: must be a locale tag"),
            "{e}"
        );
        for fine in ["fr-FR", "en", "pt_BR"] {
            parse("j.yaml", &text(&format!("{{locale: {fine}}}"))).expect(fine);
        }
        // A template is checked when it renders; other traits as written.
        parse(
            "j.yaml",
            &text("{email: \"{{ event.mail }}\", phone: \"+14155550123\", plan: gold}"),
        )
        .expect("valid");
        // `null` removes the trait, as an identify's does: no address to check.
        parse(
            "j.yaml",
            &text("{email: null, phone: null, timezone: null, locale: null}"),
        )
        .expect("valid");
    }

    #[test]
    fn a_schedule_journey_says_whether_users_enter_at_each_run() {
        let text = |reentry: &str| {
            format!("id: digest\nname: Digest\ntrigger:\n  schedule: {{cron: \"0 9 * * mon\"}}\n{reentry}steps:\n  - id: hi\n    send: {{push: {{title: Hi, body: \".\"}}}}\n")
        };
        let e = first_error(&text(""));
        assert_eq!((e.line, e.path.as_str()), (4, "trigger.schedule"), "{e}");
        assert!(e.to_string().contains("`reentry: after_exit`"), "{e}");
        assert!(e.to_string().contains("`reentry: never`"), "{e}");
        for written in [
            "reentry: never\n",
            "reentry: after_exit\n",
            "reentry: {after: 7d}\n",
        ] {
            parse("j.yaml", &text(written)).expect("reentry said");
        }
    }

    /// A `next` no path would take is an error, and with an id written twice each step's own
    /// `next` is checked where it is written, its advice naming each id once.
    #[test]
    fn a_next_never_taken_is_an_error_and_each_step_is_checked_where_it_is() {
        let text = "id: n\nname: N\ntrigger: {event: e}\nsteps:\n  - id: a\n    wait: 1h\n  - id: b\n    wait: 1h\n    next: zzz\n  - id: a\n    exit: true\n    next: b\n";
        let errs = parse("j.yaml", text).expect_err("invalid");
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            all,
            [
                "j.yaml:10:5: steps[2].id: step id `a` is used twice: give each step its own id",
                "j.yaml:9:5: steps[1].next: no step is called `zzz`: write one of `a`, `b`",
                "j.yaml:12:5: steps[2].next: an `exit` step ends the journey, so this `next` would never be taken: remove it",
            ]
        );
    }

    /// A bad cron is stood in for, so the schedule's other problems are listed in the same run.
    #[test]
    fn a_bad_cron_does_not_hide_a_bad_schedule_zone() {
        let text = "id: j\nname: J\ntrigger:\n  schedule: {cron: \"0 25 * * mon\", timezone: Mars/Olympus}\nreentry: after_exit\nsteps:\n  - id: s\n    exit: true\n";
        let errs = parse("j.yaml", text).expect_err("two problems");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["trigger.schedule.cron", "trigger.schedule.timezone"],
            "{errs:?}"
        );
    }

    #[test]
    fn an_email_may_carry_its_unsubscribe_link() {
        let email = CART.replace(
            "      push:\n        title: \"Still thinking?\"\n        body: \"{{ event.items | length }} items in your cart\"\n",
            "      email:\n        subject: \"Still thinking?\"\n        text: \"Unsubscribe: {{ unsubscribe_url }}\"\n",
        );
        assert!(email.contains("{{ unsubscribe_url }}"));
        parse("cart.yaml", &email).expect("valid");
    }

    #[test]
    fn an_unknown_variable_is_told_the_variables_of_its_channel() {
        let offer = "use one of profile, event, trigger, waited, journey, user_id, now";
        for (send, offered) in [
            (
                r#"{email: {subject: "Hi {{ usr.name }}", text: "."}}"#,
                ", unsubscribe_url (",
            ),
            (r#"{sms: {body: "Hi {{ usr.name }}"}}"#, " ("),
            (r#"{push: {title: "Hi {{ usr.name }}", body: "."}}"#, " ("),
            (r#"{in_app: {title: "Hi {{ usr.name }}", body: "."}}"#, " ("),
            (
                r#"{webhook: {url: "https://x.example/hook", body: "{{ usr.name }}"}}"#,
                ", secrets (",
            ),
            (r#"{push: {title: "Hi", body: "{{ unsubscribe }}"}}"#, " ("),
        ] {
            let text = format!(
                "id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: hi\n    send: {send}\n"
            );
            let e = first_error(&text).message;
            assert!(e.contains(&format!("{offer}{offered}")), "{send}: {e}");
        }
        // An update's values are no email either.
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: u\n    update: {set: {plan: \"{{ usr.plan }}\"}}\n";
        let e = first_error(text).message;
        assert!(e.contains(&format!("{offer} (")), "{e}");
    }

    #[test]
    fn a_push_may_expire_after_up_to_four_weeks() {
        let j = parse("cart.yaml", &format!("{CART}        expires: 4w\n")).expect("valid");
        let Some(send) = j.steps.get(1).and_then(|s| s.send.as_ref()) else {
            panic!("the second step is the push");
        };
        let Some(Template::Push(p)) = send.template() else {
            panic!("a push: {send:?}");
        };
        assert_eq!(p.expires, Some(crate::journey::PUSH_EXPIRES_MAX));
    }

    /// A push may have a title alone or a body alone, in a locale too; with neither, it is
    /// refused at the push, saying what its alert needs.
    #[test]
    fn a_push_needs_a_title_or_a_body_not_both() {
        let text = |push: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: s\n    send:\n      push: {push}\n      locales:\n        fr: {{push: {{body: \"En route\"}}}}\n")
        };
        for push in [
            "{title: \"Order {{ trigger.order_id }} delivered\"}",
            "{body: \"On its way\", data: {tab: orders}}",
        ] {
            let j = parse("j.yaml", &text(push)).unwrap_or_else(|e| panic!("{push}: {e:?}"));
            let Some(Template::Push(p)) = j.steps[0].send.as_ref().and_then(|s| s.template())
            else {
                panic!("a push");
            };
            assert_eq!(p.title.is_some(), push.contains("title"), "{push}");
            assert_eq!(p.body.is_some(), push.contains("body"), "{push}");
        }
        let errs = parse("j.yaml", &text("{data: {tab: orders}}")).expect_err("neither");
        let said: Vec<_> = errs
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [(
                "steps[0].send.push",
                7,
                "a push needs a `title` or a `body` (or both), which its alert shows; a data-only push that shows nothing and wakes the app in the background is written `silent: true` with its `data`"
            )]
        );
    }

    /// A data-only push is said so, `silent: true` with its `data`, in a locale too; with a
    /// `title` or a `body` it is refused at each (an alert is not silent), and with no data at
    /// `silent` (it would tell the app nothing).
    #[test]
    fn a_silent_push_is_data_alone() {
        let text = |push: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: s\n    send:\n      push: {push}\n      locales:\n        fr: {{push: {{silent: true, data: {{sync: boite}}}}}}\n")
        };
        let j = parse(
            "j.yaml",
            &text("{silent: true, data: {sync: inbox, order: \"{{ trigger.order_id }}\"}}"),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let Some(Template::Push(p)) = j.steps[0].send.as_ref().and_then(|s| s.template()) else {
            panic!("a push");
        };
        assert!(p.silent);
        assert_eq!((p.title.as_deref(), p.body.as_deref()), (None, None));
        assert_eq!(p.data.len(), 2);
        let said = |push: &str| -> Vec<(String, usize, String)> {
            parse("j.yaml", &text(push))
                .expect_err(push)
                .into_iter()
                .map(|e| (e.path, e.line, e.message))
                .collect()
        };
        let alert = |field: &str| {
            format!("a silent push shows nothing, so it has no `{field}`: leave out `title` and `body` for a data-only push that wakes the app in the background, or leave out `silent: true` for an alert")
        };
        assert_eq!(
            said("{silent: true, title: Hi, body: There, data: {sync: inbox}}"),
            [
                ("steps[0].send.push.title".to_string(), 7, alert("title")),
                ("steps[0].send.push.body".to_string(), 7, alert("body")),
            ]
        );
        assert_eq!(
            said("{silent: true}"),
            [(
                "steps[0].send.push.silent".to_string(),
                7,
                "a silent push carries its `data` alone, which the app reads in the background: add it, like `data: {sync: inbox}`".to_string()
            )]
        );
        // `silent: false` is an alert like any other, and needs its line.
        assert_eq!(
            said("{silent: false, data: {sync: inbox}}")[0].0,
            "steps[0].send.push"
        );
    }

    /// A push's data keys the push services keep for themselves are refused at each (FCM would
    /// refuse the message after SNS took it; APNs' `aps` is the alert), and a locale's push is
    /// silent exactly when the send it translates is.
    #[test]
    fn a_push_keeps_off_reserved_data_keys_and_its_locales_keep_its_kind() {
        let said = |text: &str| -> Vec<(String, usize)> {
            parse("j.yaml", text)
                .expect_err(text)
                .into_iter()
                .map(|e| (e.path, e.line))
                .collect()
        };
        let push = |data: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: s\n    send:\n      push:\n        title: Hi\n        data: {data}\n")
        };
        assert_eq!(
            said(&push(
                "{from: a, message_type: b, google.x: c, gcm_y: d, aps: e, order: f}"
            )),
            // each at its key, in the keys' order
            ["aps", "from", "gcm_y", "google.x", "message_type"]
                .iter()
                .map(|k| (format!("steps[0].send.push.data.{k}"), 9))
                .collect::<Vec<_>>()
        );
        assert!(parse("j.yaml", &push("{order: f, fromage: g, apps: h}")).is_ok());
        let locales = |own: &str, fr: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: s\n    send:\n      push: {own}\n      locales:\n        fr: {{push: {fr}}}\n")
        };
        let silent = "{silent: true, data: {sync: inbox}}";
        let alert = "{title: Bonjour}";
        assert_eq!(
            said(&locales(silent, alert)),
            [("steps[0].send.locales.fr.push.silent".to_string(), 9)]
        );
        assert_eq!(
            said(&locales(alert, silent)),
            [("steps[0].send.locales.fr.push.silent".to_string(), 9)]
        );
        assert!(parse("j.yaml", &locales(silent, silent)).is_ok());
        assert!(parse("j.yaml", &locales(alert, alert)).is_ok());
    }

    /// `{{ }}` in a condition is refused at the `{{`, with the condition written with paths:
    /// in an event's `where`, the template's `event.*` meant the trigger (`trigger.*`).
    #[test]
    fn a_template_in_a_condition_is_refused_with_the_paths_to_write() {
        let text = "id: j\nname: J\ntrigger: {event: order_delivered}\nsteps:\n  - id: w\n    wait_for:\n      event: rating_submitted\n      where: \"event.order_id == '{{ event.order_id }}'\"\n      timeout: 2h\n  - id: b\n    branch: {cases: [{when: \"profile.plan == '{{ event.plan }}'\", goto: w}]}\n";
        let errs = parse("j.yaml", text).expect_err("templates in conditions");
        let said: Vec<(&str, usize, usize)> = errs
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        // At the `{{`: line 8's condition starts at column 15, and its `{{` is 19 characters
        // in; line 11's starts at column 30, its `{{` 17 characters in.
        assert_eq!(
            said,
            [
                ("steps[0].wait_for.where", 8, 34),
                ("steps[1].branch.cases[0].when", 11, 47),
            ],
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("a condition reads paths directly")
                && errs[0]
                    .message
                    .contains("write `event.order_id == trigger.order_id`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1]
                .message
                .contains("write `profile.plan == event.plan`"),
            "{}",
            errs[1]
        );
        // Written with paths, the same journey is valid.
        let fixed = text
            .replace("'{{ event.order_id }}'", "trigger.order_id")
            .replace("'{{ event.plan }}'", "event.plan");
        parse("j.yaml", &fixed).expect("valid with paths");
    }

    /// Braces in a condition's string are text unless what they hold is a path: a note that
    /// holds `{{` is compared as written; `{{ usr.name }}` is still refused, with advice that
    /// says to write the path.
    #[test]
    fn braces_in_a_conditions_text_are_refused_only_around_a_path() {
        let text = |cond: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e, where: \"{cond}\"}}\nsteps:\n  - id: s\n    exit: true\n")
        };
        for cond in [
            "event.note contains '{{'",
            "event.note == '}} {{'",
            "event.note == '{{ hello world }}'",
            "event.note contains '{{' and event.tag == '{{ - }}'",
        ] {
            parse("j.yaml", &text(cond)).unwrap_or_else(|e| panic!("{cond}: {e:?}"));
        }
        for (cond, at, advice) in [
            (
                "event.note contains '{{' and profile.plan == '{{ event.plan }}'",
                46,
                "write `event.note contains '{{' and profile.plan == event.plan`",
            ),
            (
                "profile.plan == '{{ usr.plan }}'",
                17,
                "write the path without `{{ }}` and its quotes, like `profile.plan == event.plan`",
            ),
            (
                "profile.plan == '{{ event.plan | lower }}'",
                17,
                "write the path without `{{ }}`",
            ),
        ] {
            let e = first_error(&text(cond));
            assert_eq!(e.path, "trigger.where", "{cond}: {e}");
            // The condition starts at column 29.
            assert_eq!((e.line, e.column), (3, 29 + at), "{cond}: {e}");
            assert!(e.message.contains(advice), "{cond}: {e}");
            assert!(!e.message.contains("event.total >= 50"), "{cond}: {e}");
        }
    }

    /// `waited.*` where no `wait_for` that met its event comes before is always missing:
    /// refused, with what to do. After one, on any way, it is fine.
    #[test]
    fn waited_where_no_wait_for_comes_before_is_refused() {
        let journey =
            |steps: &str| format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n{steps}");
        let ok = journey("  - id: w\n    wait_for: {event: r, timeout: 1h, on_timeout: t}\n  - id: b\n    branch: {cases: [{when: \"waited.stars >= 4\", goto: t}]}\n  - id: t\n    send: {sms: {body: \"{{ waited.stars | default('-') }} {{ trigger.id }}\"}}\n");
        parse("j.yaml", &ok).expect("waited after a wait_for, on some way");
        for (steps, path, says) in [
            (
                "  - id: s\n    send: {sms: {body: \"{{ waited.stars }}\"}}\n",
                "steps[0].send.sms.body",
                "this journey has no `wait_for`",
            ),
            (
                "  - id: b\n    branch: {cases: [{when: \"waited.stars >= 4\", goto: w}]}\n  - id: w\n    wait_for: {event: r, timeout: 1h}\n",
                "steps[0].branch.cases[0].when",
                "no way to this step passes a `wait_for` that met its event",
            ),
            (
                "  - id: w\n    wait_for: {event: r, timeout: 1h, on_event: done, on_timeout: t}\n  - id: t\n    update: {set: {stars: \"{{ waited.stars }}\"}}\n  - id: done\n    exit: true\n",
                "steps[1].update.set.stars",
                "a timeout leaves it missing",
            ),
        ] {
            let e = first_error(&journey(steps));
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(says), "{e}");
            assert!(e.message.contains("put a `wait_for` before it"), "{e}");
        }
        let e = first_error("id: j\nname: J\ntrigger: {event: e, where: \"waited.x == 1\"}\nsteps:\n  - id: w\n    wait_for: {event: r, timeout: 1h}\n");
        assert_eq!(e.path, "trigger.where", "{e}");
        assert!(
            e.message
                .contains("nothing was waited for before the user entered"),
            "{e}"
        );
    }

    /// A `trait_changed` trigger's `where` is checked as any trigger's: `waited.*` is always
    /// missing there, and `{{ }}` is no path.
    #[test]
    fn a_trait_changed_triggers_where_is_checked_for_waited_and_templates() {
        let text = |cond: &str| {
            format!("id: j\nname: J\ntrigger:\n  trait_changed: plan\n  where: \"{cond}\"\nsteps:\n  - id: w\n    wait_for: {{event: r, timeout: 1h}}\n")
        };
        parse("j.yaml", &text("event.to == 'pro'")).expect("valid");
        let e = first_error(&text("waited.x == 1"));
        assert_eq!(e.path, "trigger.where", "{e}");
        assert!(
            e.message
                .contains("nothing was waited for before the user entered"),
            "{e}"
        );
        let e = first_error(&text("event.to == '{{ profile.plan }}'"));
        assert_eq!(e.path, "trigger.where", "{e}");
        assert!(
            e.message.contains("a condition reads paths directly"),
            "{e}"
        );
    }

    /// A `wait_for` after a met one passes `waited` on only on its own met way: its timeout
    /// clears it, so a step reached only by that timeout reads it missing.
    #[test]
    fn waited_after_a_later_wait_for_times_out_is_refused() {
        let text = |timeout_to: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: a\n    wait_for: {{event: r, timeout: 1h, on_event: b, on_timeout: done}}\n  - id: b\n    wait_for: {{event: s, timeout: 1h, on_event: done, on_timeout: {timeout_to}}}\n  - id: t\n    send: {{sms: {{body: \"{{{{ waited.stars }}}}\"}}}}\n  - id: done\n    exit: true\n")
        };
        let e = first_error(&text("t"));
        assert_eq!(e.path, "steps[2].send.sms.body", "{e}");
        assert!(e.message.contains("a timeout leaves it missing"), "{e}");
        // Met, `b` goes on to `t`: fine.
        let met = text("done").replace(
            "on_event: done, on_timeout: done",
            "on_event: t, on_timeout: done",
        );
        parse("j.yaml", &met).expect("waited after b met its event");
    }

    /// `trigger.*` in a journey no event starts is as empty as `event.*` there.
    #[test]
    fn trigger_in_a_schedule_journey_is_refused_like_event() {
        let e = first_error("id: j\nname: J\ntrigger: {schedule: {cron: \"0 9 * * *\", timezone: UTC}}\nreentry: after_exit\nsteps:\n  - id: s\n    send: {sms: {body: \"{{ trigger.total }}\"}}\n");
        assert_eq!(e.path, "steps[0].send.sms.body", "{e}");
        assert!(
            e.message.contains("`trigger.total` is always empty here"),
            "{e}"
        );
    }

    fn first_error(text: &str) -> FileError {
        parse("j.yaml", text).expect_err("should fail").remove(0)
    }

    /// Every problem `parse` finds in `text`, one a line.
    fn all_errors(text: &str) -> String {
        let errs = parse("j.yaml", text).expect_err("invalid");
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A `repeated` count is a whole number from 2 to the occurrences a profile keeps: a
    /// higher one could never be made, and text or a fraction says to write a number.
    #[test]
    fn a_repeated_count_is_a_whole_number_a_profile_can_hold() {
        let text = |times: &str| {
            format!(
                "id: j\nname: J\ntrigger:\n  repeated: {{event: v, times: {times}, within: 7d}}\nsteps:\n  - id: s\n    exit: true\n"
            )
        };
        assert!(parse("j.yaml", &text("32")).is_ok());
        for (times, needle) in [
            ("33", "`times` can be at most 32: a profile keeps the latest 32 occurrences of an event, so a higher count could never be made"),
            ("1", "`times` must be at least 2"),
            ("\"3\"", "\"3\" is text, not a number: write a whole number, 0 or more, without quotes, like `3`"),
            ("2.5", "`2.5` is not a whole number: write a whole number, 0 or more, without quotes, like `2`"),
        ] {
            let e = first_error(&text(times));
            assert_eq!(e.line, 4, "{e}");
            assert!(e.to_string().contains(needle), "{times}: {e}");
        }
    }

    /// A split's holdout and weights written as fractions or percentages are advised the
    /// percentage meant, a whole number: `0.1` is `10`, not `0` (a weight never taken).
    #[test]
    fn a_splits_fraction_or_percentage_is_advised_as_a_whole_percentage() {
        let text = |holdout: &str, weight: &str| {
            format!(
                "id: j\nname: J\ntrigger: {{event: t}}\nsteps:\n  - id: s\n    split:\n      holdout: {holdout}\n      paths:\n        - {{weight: {weight}, goto: e}}\n  - id: e\n    exit: true\n"
            )
        };
        for (holdout, weight, path, needle) in [
            // Below one and bare: a fraction of the users, or a percentage; both are named.
            ("0.1", "1", "steps[0].split.holdout", "`0.1` is not a whole number: `holdout` is the percentage of the users who reach the split that get none of its paths, a whole number from 0 to 100: write `holdout: 10` if `0.1` is a fraction of the users (10%), or `holdout: 1`, the least above none (a holdout is whole percents) if it is 0.1%"),
            ("0.004", "1", "steps[0].split.holdout", "write `holdout: 1`, the least above none (a holdout is whole percents): `0.004` is 0.4% as a fraction of the users, and 0.004% as a percentage; or `holdout: 0` for none"),
            ("10%", "1", "steps[0].split.holdout", "\"10%\" is text, not a number: `holdout` is the percentage of the users who reach the split that get none of its paths, a whole number from 0 to 100: write `holdout: 10`"),
            // Written with `%`, a percentage as it stands: never 100 times it.
            ("0.5%", "1", "steps[0].split.holdout", "write `holdout: 1`, the least above none (a holdout is whole percents), or `holdout: 0` for none"),
            // A weight is never advised 0, the path never taken.
            ("10", "0.004", "steps[0].split.paths[0].weight", "write `weight: 1` (`0.004` is 0.4%), and the other paths' weights"),
            ("10", "0.5%", "steps[0].split.paths[0].weight", "write `weight: 1`, and the other paths' weights"),
            ("10", "0.5", "steps[0].split.paths[0].weight", "`0.5` is not a whole number: a path's `weight` is its share against the other paths' weights, a whole number (`50` and `50`, or `1` and `1`, split evenly; a path of weight 0 is never taken): write `weight: 50` (`0.5` is 50%)"),
            ("10", "50%", "steps[0].split.paths[0].weight", "write `weight: 50`"),
        ] {
            let e = first_error(&text(holdout, weight));
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(needle), "{holdout} {weight}: {e}");
            assert!(!e.message.contains("like `"), "{e}");
            assert!(!e.message.contains("holdout: 50"), "{e}");
            assert!(!e.message.contains("weight: 0"), "{e}");
        }
    }

    /// `fields_of` is the schema's, key for key: a field added to a journey type fails here
    /// until the list has it.
    #[test]
    fn the_keys_holding_fields_are_the_schemas() {
        let schema = crate::journey::schema();
        for (key, definition) in [
            ("trigger", "Trigger"),
            ("repeated", "Repeated"),
            ("inactive", "Inactive"),
            ("schedule", "Schedule"),
            ("goal", "Goal"),
            ("quiet_hours", "QuietHours"),
            ("wait_until", "WaitUntil"),
            ("wait_for", "WaitFor"),
            ("branch", "Branch"),
            ("split", "Split"),
            ("send", "Send"),
            ("fallback", "Send"),
            ("update", "Update"),
            ("email", "EmailTemplate"),
            ("sms", "SmsTemplate"),
            ("push", "PushTemplate"),
            ("in_app", "InAppTemplate"),
            ("webhook", "WebhookTemplate"),
        ] {
            let fields: Vec<&str> = schema
                .pointer(&format!("/$defs/{definition}/properties"))
                .and_then(serde_json::Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(fields_of(key), fields.as_slice(), "{key}");
        }
        assert!(fields_of("id").is_empty());
    }

    #[test]
    fn yaml_mistakes_say_what_to_write() {
        let text = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n  send:\n    email: {subject: s}\n";
        let e = first_error(text);
        assert!(
            e.message
                .contains("indent it as far as the item's first key"),
            "{}",
            e.message
        );
        let text = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n\tsend:\n      email: {subject: s}\n";
        let e = first_error(text);
        assert!(e.message.contains("spaces"), "{}", e.message);
    }

    /// saphyr says "after double-quoted scalar" for a single-quoted one too: the advice follows
    /// the quote the file wrote.
    #[test]
    fn an_apostrophe_in_single_quotes_is_advised_as_yaml_escapes_it() {
        for text in [
            "id: j\nname: 'Bob's journey'\ntrigger: {event: t}\nsteps:\n  - id: a\n    exit: true\n",
            "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n      sms: {body: 'It's here'}\n",
            // A file saved with a byte order mark: the mark is no column of its first line.
            "\u{feff}name: 'Bob's journey'\nid: j\ntrigger: {event: t}\nsteps:\n  - id: a\n    exit: true\n",
        ] {
            let e = first_error(text);
            assert!(
                e.message.contains("a text in single quotes ends at its next `'`: write an apostrophe inside it as `''`"),
                "{}",
                e.message
            );
            assert!(!e.message.contains("double quotes ends"), "{}", e.message);
            assert!(
                e.message
                    .contains("invalid trailing content after single-quoted scalar"),
                "{}",
                e.message
            );
        }
        let text = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n      sms: {body: \"Hi {{ name | default(\"friend\") }}\"}\n";
        let e = first_error(text);
        assert!(
            e.message.contains(
                "a text in double quotes ends at its next `\"`: inside it write single quotes"
            ),
            "{}",
            e.message
        );
    }

    /// `body: {{ profile.first_name }}` is a map in a map to YAML: the advice is the quotes.
    #[test]
    fn an_unquoted_template_is_advised_its_quotes() {
        let e = first_error("id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n      sms:\n        body: {{ profile.first_name }}\n");
        assert_eq!((e.path.as_str(), e.line), ("steps[0].send.sms.body", 8));
        assert!(
            e.message
                .ends_with("put the template in quotes, `body: \"{{ profile.first_name }}\"`"),
            "{}",
            e.message
        );
        let e = first_error("id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    update: {set: {tags: [{{ event.tag }}]}}\n");
        assert!(
            e.message
                .ends_with("put the template in quotes, `\"{{ event.tag }}\"`"),
            "{}",
            e.message
        );
        // A `"` in it: single quotes, which the advice, pasted in, parses with.
        let unquoted = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n      sms:\n        body: {{ profile.first_name | default(\"there\") }}\n";
        let e = first_error(unquoted);
        let advised = "body: '{{ profile.first_name | default(\"there\") }}'";
        assert!(
            e.message
                .ends_with(&format!("put the template in quotes, `{advised}`")),
            "{}",
            e.message
        );
        let fixed = unquoted.replace(
            "body: {{ profile.first_name | default(\"there\") }}",
            advised,
        );
        parse("j.yaml", &fixed).expect("the advice is valid");
        // Cut apart at a comma, it cannot be told again: no other template stands for it.
        let e = first_error("id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n      sms:\n        body: {{ event.total | round(2, 1) }}\n");
        assert!(
            e.message.ends_with("put the whole template, as written, in quotes (`\"…\"`, or `'…'` when it holds a `\"`)"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("profile.first_name"), "{}", e.message);
    }

    #[test]
    fn a_field_under_an_empty_key_is_said_to_want_indenting() {
        let text = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    send:\n    email: {subject: s, text: t}\n";
        let e = first_error(text);
        assert!(
            e.message.contains("`send:` has nothing under it: if `email` belongs to it, indent `email:` further than `send:`"),
            "{}",
            e.message
        );
        // An empty key that may stay empty, beside a misspelt field that is not its: no hint.
        let text = "id: j\nname: J\ntrigger: {event: t}\ntimezone:\nexit_whn: [{event: x}]\nsteps:\n  - id: a\n    exit: true\n";
        let e = first_error(text);
        assert!(!e.message.contains("nothing under it"), "{}", e.message);
        let text = "id: j\nname: J\ntrigger:\nevent: t\nsteps:\n  - id: a\n    exit: true\n";
        let errors = parse("j.yaml", text).expect_err("should fail");
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("`trigger:` has nothing under it")),
            "{errors:?}"
        );
    }

    /// One read lists every problem it can step over, not only the first serde meets: a bad
    /// `where`, a zone, a required `when` (stood in for) and a `goto`, in the file's order.
    /// `exit` takes `true` alone, as the schema says: `exit: false` beside an action is
    /// refused at it, and alone the step does nothing.
    #[test]
    fn exit_false_is_refused_beside_an_action_and_alone() {
        let text = |step: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: hi\n{step}")
        };
        let errors = parse(
            "j.yaml",
            &text("    send: {push: {title: Hi, body: There}}\n    exit: false\n"),
        )
        .expect_err("exit: false beside a send");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "j.yaml:7:5: steps[0].exit: `exit: false` is no action, and a step goes on to the next unless it is an `exit: true`: take the line out; to end the journey after this step, add a step after it, `- {id: hi_done, exit: true}` (or point its `next` at one)"
        );
        let errors = parse("j.yaml", &text("    exit: false\n")).expect_err("exit: false alone");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().starts_with("j.yaml:5:5: steps[0]: step `hi` does nothing: give it one of `wait`, `wait_until`, `wait_for`, `branch`, `split`, `send`, `update` or `exit: true`"),
            "{}",
            errors[0]
        );
        // As the fix says, both read.
        parse(
            "j.yaml",
            &text("    send: {push: {title: Hi, body: There}}\n"),
        )
        .expect("send");
        parse(
            "j.yaml",
            &text("    send: {push: {title: Hi, body: There}}\n  - {id: hi_done, exit: true}\n"),
        )
        .expect("send, then exit");
    }

    /// A read that stops before the file's end says so last, at the problem it stopped at,
    /// with the number it stopped at.
    #[test]
    fn a_read_that_stops_says_so_last() {
        assert!(READ_STOPPED.contains(&format!("after {MAX_PROBLEMS_READ} problems")));
        let steps: String = (0..MAX_PROBLEMS_READ + 3)
            .map(|i| format!("  - id: s{i}\n    wait: {i}x\n"))
            .collect();
        let errors = parse(
            "j.yaml",
            &format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n{steps}"),
        )
        .expect_err("bad waits");
        assert_eq!(errors.len(), MAX_PROBLEMS_READ + 1);
        let last = &errors[MAX_PROBLEMS_READ];
        assert_eq!(
            (last.line, last.message.as_str()),
            (5 + 2 * MAX_PROBLEMS_READ + 1, READ_STOPPED)
        );
        // Below it, every problem is listed, and none says the read stopped.
        let steps: String = (0..25)
            .map(|i| format!("  - id: s{i}\n    wait: {i}x\n"))
            .collect();
        let errors = parse(
            "j.yaml",
            &format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n{steps}"),
        )
        .expect_err("bad waits");
        assert_eq!(errors.len(), 25);
        assert!(errors.iter().all(|e| e.message != READ_STOPPED));
    }

    #[test]
    fn one_read_lists_the_problems_of_the_whole_file() {
        let text = "id: v8\nname: v8\ntrigger: {event: t, where: \"event.total >= 50 and\"}\ntimezone: Europe/Pariss\nsteps:\n  - id: s\n    branch:\n      cases:\n        - {when: \"profile.plan = 'pro'\", goto: nowhere}\n";
        let errors = parse("v8.yaml", text).expect_err("four problems");
        let found: Vec<(&str, usize)> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("trigger.where", 3),
                ("steps[0].branch.cases[0].when", 9),
                ("timezone", 4),
                ("steps[0].branch.cases[0].goto", 9),
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn one_read_steps_over_a_time_of_day_and_each_bad_item_of_a_list() {
        let text = "id: welcome\nname: Welcome\ntrigger: {event: signed_up}\nreentry: {after: 30 days}\nquiet_hours: {start: \"9pm\", end: \"08:00\"}\nsteps:\n  - id: morning\n    wait_until: {time: \"09:00\", weekdays: [monday, Friday]}\n  - id: hello\n    send: {email: {subject: \"Hi\", text: \"Hello\"}}\n";
        let errors = parse("welcome.yaml", text).expect_err("four problems");
        let found: Vec<(&str, usize, usize)> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            found,
            [
                ("reentry.after", 4, 11),
                ("quiet_hours.start", 5, 15),
                ("steps[0].wait_until.weekdays[0]", 8, 44),
                ("steps[0].wait_until.weekdays[1]", 8, 52),
            ],
            "{errors:#?}"
        );
        assert!(
            errors[3].message.contains("did you mean `fri`?"),
            "{}",
            errors[3]
        );
    }

    /// A `wait_until`'s bad `date` is read as a good one to go on: its `before` (or `after`,
    /// `time`) is not then said to lack the `date` that is there.
    #[test]
    fn a_bad_date_is_its_only_problem_not_its_befores() {
        for date in ["\"{{ profile.trial_ends_at }}\"", "5", "\"2026-12-24\""] {
            let text = format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: a\n    wait_until: {{date: {date}, before: 3d}}\n");
            let errors = parse("j.yaml", &text).expect_err("a bad date");
            let found: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(found, ["steps[0].wait_until.date"], "{date}: {errors:#?}");
        }
        // Without a `date`, `before` is still said to want one.
        let errors = parse(
            "j.yaml",
            "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: a\n    wait_until: {before: 3d}\n",
        )
        .expect_err("no date");
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("`before` moves a `date`")),
            "{errors:#?}"
        );
    }

    /// `Hi ${first_name}` compiles and would be sent as written: warned of, at the placeholder;
    /// a price before a value, a string in a tag and a raw block are not.
    #[test]
    fn a_javascript_placeholder_in_a_templates_text_is_warned_of() {
        let text = "id: j\nname: J\ntrigger: {event: paid}\nsteps:\n  - id: s\n    send:\n      sms: {body: \"Hi ${first_name}, ${{ event.total }} {{ '${x}' }}\"}\n  - id: u\n    update: {set: {note: \"{% raw %}${y}{% endraw %}\"}}\n";
        parse("j.yaml", text).expect("valid");
        let said = advice("j.yaml", text);
        let found: Vec<(&str, usize, usize)> = said
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(found, [("steps[0].send.sms.body", 7, 23)], "{said:#?}");
        assert_eq!(
            said[0].message,
            "`${first_name}` is JavaScript's, sent here as it is written: a value is written `{{ profile.first_name }}` (a trait is `profile.*`, the event's property `event.*`)"
        );
    }

    /// Every Segment payload path of one text is warned of, not the first alone: the first at
    /// its place, the others named after it in text order, each once, at most 5 (as a
    /// template's unknown variables are), so that one run of validate tells them all.
    #[test]
    fn each_segment_payload_path_of_a_text_is_named() {
        let text = "id: j\nname: J\ntrigger: {event: paid, where: \"event.properties.amount > 0 and profile.traits.vip\"}\nsteps:\n  - id: s\n    send: {sms: {body: \"Payment of {{ event.properties.amount }} failed for {{ profile.traits.first_name }} ({{ event.properties.amount }})\"}}\n";
        let said = advice("j.yaml", text);
        let found: Vec<(&str, usize, usize)> = said
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            found,
            [("trigger.where", 3, 32), ("steps[0].send.sms.body", 6, 39)],
            "{said:#?}"
        );
        for e in &said {
            assert!(e.message.contains("write `event.amount`"), "{e}");
        }
        assert!(
            said[0]
                .message
                .ends_with("; also in Segment's payload shape in this text: `profile.traits.vip` (write `profile.vip`)"),
            "{}",
            said[0]
        );
        assert!(
            said[1]
                .message
                .ends_with("; also in Segment's payload shape in this text: `profile.traits.first_name` (write `profile.first_name`)"),
            "{}",
            said[1]
        );
        // A pasted payload: five named, the rest counted.
        let body: Vec<String> = (1..=8)
            .map(|n| format!("{{{{ event.properties.p{n} }}}}"))
            .collect();
        let text = format!(
            "id: j\nname: J\ntrigger: {{event: paid}}\nsteps:\n  - id: s\n    send: {{sms: {{body: \"{}\"}}}}\n",
            body.join(" ")
        );
        let said = advice("j.yaml", &text);
        assert_eq!(said.len(), 1, "{said:#?}");
        assert!(
            said[0].message.contains("`event.properties.p1` is Segment's payload shape")
                && said[0].message.ends_with(
                    "in this text: `event.properties.p2` (write `event.p2`), `event.properties.p3` (write `event.p3`), `event.properties.p4` (write `event.p4`), `event.properties.p5` (write `event.p5`), `event.properties.p6` (write `event.p6`), and 2 more"
                ),
            "{}",
            said[0]
        );
    }

    /// Segment's payload paths (`event.properties.amount`, `profile.traits.plan`) pass every
    /// parser and most likely never match: warned of where they are written, with Waymark's
    /// path. An app may really send a `properties` object, so the file stays valid.
    #[test]
    fn segments_payload_paths_are_warned_of_with_waymarks() {
        let text = "id: j\nname: J\ntrigger: {event: paid, where: \"event.properties.amount > 50\"}\nsteps:\n  - id: b\n    branch:\n      cases:\n        - {when: \"profile.traits.plan == 'pro'\", goto: s}\n  - id: w\n    wait_until: {date: event.properties.renews_at}\n  - id: s\n    send:\n      sms: {body: \"Hi {{ profile.traits.first_name }}\"}\n  - id: u\n    update: {set: {last: \"{{ event.properties }}\"}}\n";
        parse("j.yaml", text).expect("an app may send a `properties` object: valid");
        let mut said = advice("j.yaml", text);
        // (The branch's `else` running on into `s` is warned of too.)
        said.retain(|e| e.path != "steps[1]");
        let found: Vec<(&str, usize, usize)> = said
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            found,
            [
                ("trigger.where", 3, 32),
                ("steps[0].branch.cases[0].when", 8, 19),
                ("steps[1].wait_until.date", 10, 24),
                ("steps[2].send.sms.body", 13, 26),
                ("steps[3].update.set.last", 15, 30),
            ],
            "{said:#?}"
        );
        for (e, instead) in said.iter().zip([
            "write `event.amount`",
            "write `profile.plan`",
            "write `event.renews_at`",
            "write `profile.first_name`",
            "read a property by its own path, `event.<name>` (`event.amount`)",
        ]) {
            assert!(e.message.contains(instead), "{e}");
            assert!(e.message.contains("Segment's payload shape"), "{e}");
        }
        assert!(
            said[0].message.contains(
                "a property that really is named `properties` is read as `event['properties'].amount`"
            ),
            "{}",
            said[0]
        );
        // A property really named `properties`, in brackets, and one that only starts so.
        let text = "id: j\nname: J\ntrigger: {event: paid, where: \"event['properties'].amount > 50 and event.properties_v2 > 1\"}\nsteps:\n  - id: s\n    send:\n      sms: {body: \"Hi {{ event['properties'].name }} {{ profile.traitsx }}\"}\n";
        parse("j.yaml", text).expect("valid");
        assert!(advice("j.yaml", text).is_empty());
        // Pointed at the expression, not at the same words in text or in a string before it.
        let text = "id: j\nname: J\ntrigger: {event: paid, where: \"event.note != 'event.properties.x' and event.properties.amount > 5\"}\nsteps:\n  - id: s\n    send:\n      sms: {body: \"event.properties: {{ 'event.properties' }} {{ event.properties.total }}\"}\n  - id: w\n    wait_until: {date: event.properties}\n";
        let mut said = advice("j.yaml", text);
        said.sort_by_key(|e| (e.line, e.column));
        let found: Vec<(&str, usize, usize)> = said
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(
            found,
            [
                ("trigger.where", 3, 71),
                ("steps[0].send.sms.body", 7, 66),
                ("steps[1].wait_until.date", 9, 24),
            ],
            "{said:#?}"
        );
        assert!(!said[2].message.contains("write `event`"), "{}", said[2]);
        // A date written after spaces, in quotes: pointed at the path, not the spaces.
        let spaced = text.replace(
            "date: event.properties}",
            "date: \"   event.properties.renews_at\"}",
        );
        let at = advice("j.yaml", &spaced)
            .into_iter()
            .find(|e| e.path == "steps[1].wait_until.date")
            .map(|e| (e.line, e.column));
        assert_eq!(at, Some((9, 28)));
        // A journey no event starts is told that `event.*` is empty there, once.
        let text = "id: j\nname: J\ntrigger: {inactive: {events: [app_opened], for: 7d, where: \"event.properties.plan == 'pro'\"}}\nsteps:\n  - id: s\n    send:\n      sms: {body: Hi}\n";
        let errors = parse("j.yaml", text).expect_err("event.* is empty");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(!errors[0].message.contains("Segment"), "{}", errors[0]);
    }

    #[test]
    fn a_field_that_does_not_belong_is_listed_once_whatever_its_name() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: a\n    wait: 1h\n    timeout: 2h\n    time: \"09:00\"\n";
        let errors = parse("j.yaml", text).expect_err("two fields too many");
        let found: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(found, ["steps[0].timeout", "steps[0].time"], "{errors:#?}");
    }

    #[test]
    fn a_step_naming_a_missing_step_is_not_pointed_at_itself() {
        let text = "id: j\nname: J\ntrigger: {event: t}\nsteps:\n  - id: a\n    wait: 1h\n    next: c\n  - id: b\n    exit: true\n";
        let e = first_error(text);
        assert!(e.message.contains("did you mean `b`?"), "{}", e.message);
    }

    /// A journey's `limit` (a most number of entries, say) or `frequency` is no word for a
    /// frequency cap only: it is told the journey's fields as any unknown field is, not sent
    /// to `waymark.yaml`'s caps.
    #[test]
    fn a_journeys_limit_is_told_its_fields_not_caps() {
        for field in ["limit", "limits", "frequency", "cap"] {
            let text = CART.replace("name: Cart\n", &format!("name: Cart\n{field}: 1000\n"));
            let e = first_error(&text);
            let ordinary = first_error(&CART.replace("name: Cart\n", "name: Cart\nzzz: 1000\n"));
            assert_eq!(
                e.message.replace(&format!("`{field}`"), "`zzz`"),
                ordinary.message,
                "{field}"
            );
            assert!(!e.message.contains("waymark.yaml"), "{}", e.message);
        }
    }

    #[test]
    fn errors_carry_line_column_and_advice() {
        let cases: Vec<(String, usize, &str)> = vec![
            (CART.replace("wait: 30m", "wait: 30 minutes"), 10, "30m"),
            (
                CART.replace("    wait: 30m", "    wiat: 30m"),
                10,
                "unknown field `wiat`",
            ),
            (
                CART.replace("{{ event.items | length }}", "{{ cart.items }}"),
                15,
                "unknown variable `cart`",
            ),
            (
                CART.replace("{{ event.items | length }}", "{{ event.items "),
                15,
                "template error",
            ),
            (
                CART.replace(
                    "  - id: wait_30m\n    wait: 30m\n",
                    "  - id: wait_30m\n    wait: 30m\n    next: psuh\n",
                ),
                11,
                "did you mean `push`",
            ),
            (
                CART.replace(
                    "event: cart_abandoned",
                    "event: x\n  schedule: {cron: '0 9 * * *'}",
                ),
                3,
                "exactly one of",
            ),
            (
                CART.replace("    wait: 30m", "    wiat: 30m"),
                10,
                "did you mean `wait`?",
            ),
            // A list where a map goes: the error names the part and shows how it is written.
            (
                CART.replace(
                    "    wait: 30m\n",
                    "    branch:\n      - when: \"event.total > 100\"\n        goto: push_reminder\n",
                ),
                10,
                "steps[0].branch: this is a list, where a map goes: write it like `branch: {cases:",
            ),
            (
                CART.replace("  event: cart_abandoned\n", "  event: {name: cart_abandoned}\n"),
                4,
                "trigger.event: this is a map, where an event's name goes: write `event: cart_abandoned`, or a list",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\ntimezone: Europe/Pariss\n"),
                3,
                "`Europe/Pariss` is not an IANA time zone: did you mean `Europe/Paris`?",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\ntimezone: America/New_Yrok\n"),
                3,
                "did you mean `America/New_York`?",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\ntimezone: Z\n"),
                3,
                "`Z` is not an IANA time zone: did you mean `UTC`?",
            ),
            (
                CART.replace(
                    "name: Cart\n",
                    "name: Cart\nquiet_hours: {start: \"21:00\", end: \"21:00\"}\n",
                ),
                3,
                "quiet hours from 21:00 to 21:00 hold no time: write an end other than the start",
            ),
            // A weekday in full or capitalised, a choice mistyped or unknown.
            (
                format!("{CART}  - id: morning\n    wait_until: {{time: \"09:00\", weekdays: [Monday]}}\n"),
                17,
                "`Monday` is not a choice here: did you mean `mon`? write one of `mon`, `tue`",
            ),
            (
                CART.replace("reentry: after_exit", "reentry: after_exti"),
                5,
                "did you mean `after_exit`?",
            ),
            (
                CART.replace("reentry: after_exit", "reentry: always"),
                5,
                "`always` is not a choice here: write one of `never`, `after_exit`, `after: <duration>` (like `reentry: {after: 30d}`)",
            ),
            (
                CART.replace("reentry: after_exit", "reentry: {aftr: 30d}"),
                5,
                "did you mean `after: <duration>`? write one of `never`, `after_exit`, `after: <duration>` (like `reentry: {after: 30d}`)",
            ),
            (
                CART.replace("reentry: after_exit", "reentry: after"),
                5,
                "`after` needs a value: write it like `reentry: {after: 30d}`",
            ),
            (CART.replace("wait: 30m", "wait: 1M"), 10, "for months, which vary in length"),
            // Other tools' spellings and YAML's other truth values, with what to write.
            (CART.replace("wait: 30m", "wait: 30"), 10, "`30` has no unit: write \"30s\", \"30m\""),
            (CART.replace("wait: 30m", "wait: P1D"), 10, "write \"1d\""),
            (
                CART.replace("  - id: wait_30m\n    wait: 30m\n", "  - id: wait_30m\n    wait: 30m\n    goto: push_reminder\n"),
                11,
                "unknown field `goto`: did you mean `next`?",
            ),
            (
                format!("{CART}  - id: done\n    exit: yes\n"),
                17,
                "\"yes\" is not a truth value here: write `true` (no quotes)",
            ),
            (
                format!("{CART}  - id: done\n    exit: 0\n"),
                17,
                "`0` is not a truth value here: write `false` (no quotes)",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\nquiet_hours: {start: 9pm, end: \"08:00:00\"}\n"),
                3,
                "\"9pm\" is not a time of day: write \"21:00\"",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\nquiet_hours: {start: \"21:00\", end: \"08:00:00\"}\n"),
                3,
                "\"08:00:00\" is not a time of day: write \"08:00\"",
            ),
            // Other tools' words for a goal and for a journey that skips quiet hours and caps.
            (
                CART.replace("name: Cart\n", "name: Cart\nconversion: {event: paid, within: 7d}\n"),
                3,
                "unknown field `conversion`: did you mean `goal`?",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\nignore_quiet_hours: true\n"),
                3,
                "unknown field `ignore_quiet_hours`: quiet hours apply only to a journey that sets `quiet_hours`: leave `quiet_hours` out and its messages go at any hour (a journey of receipts or password resets may be `transactional: true`, which also ignores the frequency caps and lets its emails that say `marketing: false` reach users who unsubscribed from email)",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\nignore_frequency_capping: true\n"),
                3,
                "did you mean `transactional: true`, for a journey of receipts or password resets? It ignores the frequency caps, and also quiet hours, and lets its emails that say `marketing: false` reach users who unsubscribed from email",
            ),
            // Caps are the folder's: a journey's cap is told where they are set.
            (
                CART.replace("name: Cart\n", "name: Cart\nfrequency_cap: {push: {max: 1, per: 1d}}\n"),
                3,
                "unknown field `frequency_cap`: frequency caps are not a journey's: they apply across journeys, per user and channel, and are set in `waymark.yaml` beside the journey files, like `caps: {push: {max: 3, per: 1d}}`",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\ncaps: {push: {max: 1, per: 1d}}\n"),
                3,
                "unknown field `caps`: frequency caps are not a journey's",
            ),
            (
                CART.replace("name: Cart\n", "name: Cart\nFreq-Cap: {push: 1}\n"),
                3,
                "unknown field `Freq-Cap`: frequency caps are not a journey's",
            ),
            // A rate limit (messages a second) is not told it is a per-user cap.
            (
                CART.replace("name: Cart\n", "name: Cart\nRate-Limit: {push: 1}\n"),
                3,
                "unknown field `Rate-Limit`: Waymark has no delivery rate limit (messages a second): sends go out as the engine reaches them, within the sending quotas of your SES and SNS accounts",
            ),
            (
                CART.replace("name: Cart\n", "name: \"Cart \"abandoned\" reminders\"\n"),
                2,
                "inside it write single quotes",
            ),
            (
                CART.replace(
                    "    wait: 30m\n",
                    "    split:\n      paths: [{name: a, weight: -5, goto: push}]\n",
                ),
                11,
                "`-5` cannot be used here: write a whole number, 0 or more",
            ),
            // The unsubscribe link is email's: in a push it would unsubscribe from email.
            (
                CART.replace("{{ event.items | length }}", "stop: {{ unsubscribe_url }}"),
                15,
                "leave it out here (a push user turns notifications off",
            ),
            (
                CART.replace(
                    "    wait: 30m\n",
                    "    split:\n      holdout: 10.5\n      paths: [{name: a, weight: 5, goto: push}]\n",
                ),
                11,
                "`10.5` is not a whole number: `holdout` is the percentage of the users who reach the split that get none of its paths, a whole number from 0 to 100: write `holdout: 10`",
            ),
            // FCM keeps a push 4 weeks at most.
            (
                format!("{CART}        expires: 5w\n"),
                16,
                "at most 4 weeks: write `4w` or less",
            ),
        ];
        for (text, line, needle) in cases {
            let e = first_error(&text);
            assert_eq!(e.line, line, "{e}");
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
            assert!(e.to_string().starts_with("j.yaml:"), "{e}");
        }
    }

    /// A `trait_changed` trigger names one trait an identify changes, takes a `where` on its
    /// `event.from` and `event.to`, and a misspelt key or name is told where it is.
    #[test]
    fn a_trait_changed_trigger_is_checked_like_the_others() {
        let text = |trigger: &str| {
            format!(
                "id: j\nname: J\ntrigger:\n{trigger}steps:\n  - id: s\n    send: {{email: {{subject: \"{{{{ event.to }}}}\", text: .}}}}\n"
            )
        };
        let good = text(
            "  trait_changed: plan\n  where: \"event.from == 'free' and event.to == 'pro'\"\n",
        );
        let j = parse("j.yaml", &good).expect("valid");
        assert!(matches!(
            j.trigger.kind(),
            Some(TriggerKind::TraitChanged {
                name: "plan",
                condition: Some(_)
            })
        ));
        assert_eq!(j.watched_trait(), Some("plan"));
        assert!(!j.names_event("plan"));
        for (trigger, at, message) in [
            (
                "  trait_change: plan\n",
                "j.yaml:4:3: trigger.trait_change:",
                "did you mean `trait_changed`?",
            ),
            (
                "  trait_changed: \"\"\n",
                "j.yaml:4:3: trigger.trait_changed:",
                "name the trait whose change enters a user",
            ),
            (
                "  trait_changed: address.city\n",
                "j.yaml:4:3: trigger.trait_changed:",
                "watch the whole trait, `trait_changed: address`",
            ),
            (
                "  trait_changed: push_tokens\n",
                "j.yaml:4:3: trigger.trait_changed:",
                "registers push devices",
            ),
            (
                "  trait_changed: plan\n  event: upgraded\n",
                "j.yaml:3:1: trigger:",
                "exactly one of `event`, `trait_changed`",
            ),
            (
                "  trait_changed: plan\n  where: \"event.total > 0\"\n",
                "j.yaml:5:3: trigger.where:",
                "its trigger event holds only `trait`, `from` and `to`, so `event.total` is always empty here",
            ),
        ] {
            let e = first_error(&text(trigger)).to_string();
            assert!(e.starts_with(at), "{e}: should start with {at}");
            assert!(e.contains(message), "{e}: should say {message}");
        }
    }

    #[test]
    fn unreachable_steps_and_loops_without_wait_are_errors() {
        let text = r#"id: j
name: J
trigger: {event: e}
steps:
  - id: a
    branch:
      cases: [{when: "profile.x == 1", goto: b}]
      else: b
  - id: b
    update: {set: {seen: true}}
    next: a
  - id: orphan
    exit: true
"#;
        let all = all_errors(text);
        assert!(all.contains("`orphan` can never be reached"), "{all}");
        // once, though the branch's case and its `else` both go round it
        assert_eq!(all.matches("loop with no wait").count(), 1, "{all}");
        // Each of the waits it names breaks the loop: a `wait_until` for a time of day too.
        assert!(
            all.contains("steps `b` → `a` form a loop with no wait: add a `wait`, a `wait_for` or a `wait_until` for a time of day (`wait_until: {time: \"09:00\"}`) step inside the loop"),
            "{all}"
        );
        let looped = text.replace("  - id: orphan\n    exit: true\n", "");
        for wait in [
            "wait: 1d",
            "wait_for: {event: e, timeout: 1d}",
            "wait_until: {time: \"09:00\"}",
        ] {
            let fixed = looped.replace(
                "    next: a\n",
                "    next: w\n  - id: w\n    WAIT\n    next: a\n",
            );
            let fixed = fixed.replace("WAIT", wait);
            parse("j.yaml", &fixed).expect(wait);
        }
    }

    /// A run of steps with no wait longer than the engine takes at a time is refused, naming the
    /// bound and the step a wait before would keep it within; with that wait it is taken.
    #[test]
    fn a_run_of_steps_longer_than_the_engine_takes_is_an_error() {
        let journey = |updates: usize, wait_before: Option<usize>| {
            let mut text = String::from("id: j\nname: J\ntrigger: {event: e}\nsteps:\n");
            for i in 0..updates {
                if wait_before == Some(i) {
                    text.push_str("  - {id: w, wait: 1m}\n");
                }
                text.push_str(&format!("  - {{id: u{i}, update: {{set: {{n: {i}}}}}}}\n"));
            }
            text.push_str("  - id: mail\n    send:\n      email: {subject: s, text: t}\n");
            text
        };
        let errs = parse("j.yaml", &journey(300, None)).expect_err("too long a run");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[255]", "{errs:?}");
        assert!(
            errs[0].message.contains("from `u0`, 301 steps can run one after another without a wait, and the engine takes at most 256 at a time")
                && errs[0].message.contains("just before `u255`"),
            "{errs:?}"
        );
        parse("j.yaml", &journey(300, Some(255))).expect("a wait where it said");
        // 255 steps and the email: the most one transition takes.
        parse("j.yaml", &journey(255, None)).expect("256 steps");
        parse("j.yaml", &journey(256, None)).expect_err("257 steps");
    }

    /// `marketing: false` is for a transactional journey's receipts: elsewhere it would take
    /// a marketing email's unsubscribe link away, so it is refused where it is written.
    #[test]
    fn marketing_false_needs_a_transactional_journey() {
        let journey = |transactional: &str| {
            format!(
                "id: j\nname: J\n{transactional}trigger: {{event: e}}\nsteps:\n  - id: s\n    send:\n      email: {{subject: s, text: t, marketing: false}}\n      locales:\n        fr: {{email: {{subject: s, text: t, marketing: false}}}}\n"
            )
        };
        let errs = parse("j.yaml", &journey("")).expect_err("invalid");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "steps[0].send.email.marketing",
                "steps[0].send.locales.fr.email.marketing"
            ],
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("add `transactional: true`"),
            "{errs:?}"
        );
        parse("j.yaml", &journey("transactional: true\n")).expect("a receipt");
    }

    /// An SMS that does not say its `sms_type` takes the journey's kind: a transactional
    /// journey's (its fallback's and locales' too) goes on the transactional route, any other
    /// on the promotional one; one that says its type keeps it, and a journey that changes
    /// nothing keeps its digest.
    #[test]
    fn an_sms_takes_its_journeys_kind_unless_it_says() {
        use crate::journey::SmsType::{Promotional, Transactional};
        let journey = |transactional: &str, said: &str| {
            format!(
                "id: j\nname: J\n{transactional}trigger: {{event: e}}\nsteps:\n  - id: code\n    send:\n      sms: {{body: c{said}}}\n      locales:\n        pt-br: {{sms: {{body: p}}}}\n  - id: promo\n    send:\n      push: {{title: t, body: b}}\n      fallback: {{sms: {{body: o, sms_type: promotional}}}}\n"
            )
        };
        let types = |j: &Journey| {
            let code = j.steps[0].send.as_ref().expect("send");
            let promo = j.steps[1].send.as_ref().expect("send");
            let sms = |s: &crate::journey::Send| s.sms.as_ref().expect("sms").sms_type;
            [
                sms(code),
                sms(&code.locales["pt-br"]),
                sms(promo.fallback.as_deref().expect("fallback")),
            ]
        };
        let receipt = parse("j.yaml", &journey("transactional: true\n", "")).expect("valid");
        assert_eq!(types(&receipt), [Transactional, Transactional, Promotional]);
        let said = parse(
            "j.yaml",
            &journey("transactional: true\n", ", sms_type: promotional"),
        )
        .expect("valid");
        assert_eq!(types(&said), [Promotional, Transactional, Promotional]);
        let marketing = parse("j.yaml", &journey("", "")).expect("valid");
        assert_eq!(types(&marketing), [Promotional, Promotional, Promotional]);
        let written = parse("j.yaml", &journey("", ", sms_type: promotional")).expect("valid");
        assert_eq!(marketing.digest(), written.digest());
    }

    /// An SMS whose fixed text alone is over SNS's 1,600 characters (a bank's terms pasted
    /// in) would be skipped for every user: refused at the character past the limit. Text that
    /// may not print (an `if`'s) and what the data prints are not counted.
    #[test]
    fn an_sms_longer_than_sns_sends_whatever_the_data_is_refused() {
        let journey = |body: &str| {
            format!("id: j\nname: J\ntrigger: {{event: e}}\nsteps:\n  - id: s\n    send: {{sms: {{body: \"{body}\"}}}}\n")
        };
        let long = "a".repeat(1_700);
        let errs = parse("j.yaml", &journey(&long)).expect_err("too long");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].line, errs[0].column, errs[0].path.as_str()),
            (6, 25 + 1_600, "steps[0].send.sms.body")
        );
        assert!(
            errs[0].message.starts_with("this SMS is at least 1700 characters whatever the data, and SNS sends at most 1600"),
            "{}",
            errs[0].message
        );
        // The fixed text around a template's expressions counts; the expressions do not.
        let templated = format!("{{{{ profile.first_name }}}}, {}", "b".repeat(1_599));
        let errs = parse("j.yaml", &journey(&templated)).expect_err("too long");
        assert_eq!(
            errs[0].column,
            25 + "{{ profile.first_name }}, ".len() + 1_598
        );
        assert!(
            errs[0].message.contains("at least 1601 characters"),
            "{errs:?}"
        );
        for fits in [
            "c".repeat(1_600),
            format!("{{{{ profile.first_name }}}} {}", "d".repeat(1_599)),
            format!("{{% if profile.vip %}}{long}{{% endif %}}Hi"),
        ] {
            parse("j.yaml", &journey(&fits)).expect("within what SNS sends");
        }
    }

    /// A template's problem and a loop with no wait are told in one reading: only ids used
    /// twice keep the graph's checks back (a step named that is not there, only the check of
    /// which steps are reached).
    #[test]
    fn a_loop_is_told_with_a_templates_problem() {
        let text = r#"id: j
name: J
trigger: {event: e}
steps:
  - id: a
    send: {push: {title: "{{ evnt.x }}", body: "."}}
  - id: b
    branch:
      cases: [{when: "event.x > 1", goto: a}]
      else: a
"#;
        let all = all_errors(text);
        assert!(all.contains("unknown variable `evnt`"), "{all}");
        assert!(all.contains("loop with no wait"), "{all}");
    }

    /// A step named that is not there and a loop with no wait among the others are told in
    /// one reading; which steps are reached is not (the missing step may be meant to reach
    /// them).
    #[test]
    fn a_loop_is_told_with_a_missing_step() {
        let text = r#"id: j
name: J
trigger: {event: e}
steps:
  - id: thanks
    send: {push: {title: "Thanks", body: "."}}
    next: thanks
  - id: other
    send: {push: {title: "Other", body: "."}}
    next: wff
"#;
        let all = all_errors(text);
        assert!(all.contains("no step is called `wff`"), "{all}");
        assert!(
            all.contains("steps `thanks` → `thanks` form a loop with no wait"),
            "{all}"
        );
        assert!(!all.contains("can never be reached"), "{all}");
    }

    #[test]
    fn a_journey_no_event_starts_cannot_promise_event_fields() {
        let schedule = r#"id: digest
name: Digest
trigger:
  schedule: {cron: "0 9 * * mon", where: "event.plan == 'free'"}
reentry: never
steps:
  - id: pick
    branch:
      cases: [{when: "profile.plan == 'pro'", goto: done}]
      else: mail
  - id: mail
    send:
      sms: {body: "Hi {{ profile.first_name }}"}
      fallback:
        email:
          subject: "Your week"
          text: "Hello\n{{ event.total }} this week"
  - id: done
    exit: true
"#;
        let errs = parse("digest.yaml", schedule).expect_err("event.* on a schedule");
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(
            all[0].starts_with("digest.yaml:17:28:")
                && all[0].contains("steps[1].send.fallback.email.text: this journey starts on a schedule: it has no trigger event, so `event.total` is always empty here: read the profile instead (`profile.total`)"),
            "{all:#?}"
        );
        assert!(
            all[1].contains("trigger.schedule.where: this journey starts on a schedule")
                && all[1].contains("`event.plan`"),
            "{all:#?}"
        );
        assert!(parse(
            "digest.yaml",
            &schedule
                .replace("event.plan", "profile.plan")
                .replace("event.total", "profile.total")
        )
        .is_ok());

        // Inactivity: only `inactive_since` is there.
        let inactive = r#"id: churn
name: Churn
trigger:
  inactive: {events: [app_opened], for: 14d}
steps:
  - id: offer
    branch:
      cases: [{when: "event.plan == 'pro'", goto: mail}]
      else: mail
  - id: mail
    send:
      sms: {body: "Away since {{ event.inactive_since | date }}"}
"#;
        let errs = parse("churn.yaml", inactive).expect_err("event.plan");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[0].branch.cases[0].when");
        assert!(
            errs[0].message.contains("holds only `inactive_since`"),
            "{}",
            errs[0]
        );
        // Its `where` too; `event.inactive_since` and the profile are there.
        let filtered = inactive.replace(
            "for: 14d}",
            "for: 14d, where: \"event.plan == 'pro' and event.inactive_since < ago('1d') and profile.plan == 'pro'\"}",
        );
        let errs = parse("churn.yaml", &filtered).expect_err("event.plan");
        let at: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            at,
            ["trigger.inactive.where", "steps[0].branch.cases[0].when"],
            "{errs:?}"
        );
        // An event starts the cart journey: its fields are all there to read.
        assert!(parse("cart.yaml", CART).is_ok());
    }

    #[test]
    fn a_webhooks_url_must_be_http_with_a_host_as_far_as_its_fixed_text_shows() {
        for (url, ok) in [
            ("https://api.example.com/hooks/{{ user_id }}", true),
            ("http://10.0.0.2:8080/x", true),
            ("{{ profile.webhook_url }}", true),
            ("https://{{ profile.shop }}.example.com/hook", false),
            ("HTTPS://API.EXAMPLE.COM", true),
            ("not a url", false),
            ("ftp://files.example.com/x", false),
            ("api.example.com/{{ user_id }}", false),
            ("https://", false),
            ("https:///path", false),
            ("", false),
            ("  ", false),
            ("http://ex.example:99999/x", false),
            ("http://ex.example:8080/x", true),
            ("http://[::1]:8080/x", true),
            ("http://ex.example:/x", true),
            ("https://x.example:0/h", false),
            ("http://0:0/", false),
            ("http://user:pw@hooks.example:0/h", false),
            ("http://user:pw@hooks.example:8080/h", true),
            (
                "https://x.example:99999/h?u={{ user_id | urlencode }}",
                false,
            ),
            ("https:///h?u={{ user_id }}", false),
            ("https://x.example:8443/h?u={{ user_id }}", true),
            ("https://x.example:{{ profile.port }}/h", false),
            // Data in the scheme could write a host of its own first.
            ("http{{ profile.tls }}://api.example.com/x", false),
            ("https:/{{ profile.rest }}", false),
        ] {
            assert_eq!(
                webhook_url_problem(url).is_none(),
                ok,
                "{url}: {:?}",
                webhook_url_problem(url)
            );
        }
        let journey = "id: hook\nname: Hook\ntrigger: {event: e}\nsteps:\n  - id: call\n    send:\n      webhook: {url: \"api.example.com/hook\", body: \"{{ user_id | tojson }}\"}\n";
        let errs = parse("hook.yaml", journey).expect_err("bad url");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[0].send.webhook.url");
        assert_eq!(errs[0].line, 7);
        assert!(
            errs[0].message.contains("write it like `https://"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn the_trigger_events_fields_a_journey_reads() {
        let example = |name: &str| {
            let path = format!(
                "{}/../examples/journeys/{name}.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("example");
            trigger_event_fields(&parse(&path, &text).expect("valid example"))
        };
        // The trigger's `where`, the push's body and data, the email's loop.
        let cart: Vec<String> = example("cart_abandonment").into_iter().collect();
        assert_eq!(cart, ["cart_id", "currency", "items", "total"]);
        // A `wait_until` date and the reminder's texts.
        let appointment: Vec<String> = example("appointment_reminder").into_iter().collect();
        assert_eq!(appointment, ["advisor", "branch", "starts_at"]);
        assert!(example("banking_onboarding").is_empty());
        // `trigger.*` in the wait's `where` and the emails' texts (`waited.*` is the rating's).
        let rating: Vec<String> = example("reorder_rating").into_iter().collect();
        assert_eq!(rating, ["order_id", "restaurant"]);
    }

    #[test]
    fn a_sends_locales_are_checked_like_the_send() {
        let text = r#"id: j
name: J
trigger: {event: e}
steps:
  - id: hello
    send:
      push: {title: "Hello", body: "."}
      locales:
        fr: {push: {title: "Bonjour {{ profil.first_name }}", body: "."}}
        pt_BR: {push: {title: "Olá", body: "."}}
        de: {sms: {body: "Hallo"}}
        english: {push: {title: "Hi", body: "."}}
"#;
        let errs = parse("j.yaml", text).expect_err("bad locales");
        let said: Vec<(&str, usize)> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            said,
            [
                ("steps[0].send.locales.de", 11),
                ("steps[0].send.locales.english", 12),
                ("steps[0].send.locales.fr.push.title", 9),
                ("steps[0].send.locales.pt_BR", 10),
            ],
            "{errs:?}"
        );
        assert!(errs[0].message.contains("same channel"), "{errs:?}");
        assert!(
            errs[1].message.contains("is not a language tag"),
            "{errs:?}"
        );
        assert!(errs[2].message.contains("profil"), "{errs:?}");
        assert!(errs[3].message.contains("write `pt-br`"), "{errs:?}");
        let fixed = text
            .replace("profil.", "profile.")
            .replace("pt_BR", "pt-br")
            .replace("english", "en")
            .replace(
                "{sms: {body: \"Hallo\"}}",
                "{push: {title: \"Hallo\", body: \".\"}}",
            );
        assert!(
            parse("j.yaml", &fixed).is_ok(),
            "{:?}",
            parse("j.yaml", &fixed).err()
        );
    }

    #[test]
    fn keep_after_exit_is_an_in_app_messages_written_once_for_its_locales() {
        let text = r#"id: j
name: J
trigger: {event: e}
exit_when: [{event: bought}]
steps:
  - id: saved
    send:
      in_app: {title: "Saved", body: ".", keep_after_exit: true}
      locales:
        fr: {in_app: {title: "Gardé", body: ".", keep_after_exit: true}}
  - id: nudge
    send:
      push: {title: "Hi", body: ".", keep_after_exit: true}
"#;
        let errs = parse("j.yaml", text).expect_err("misplaced");
        let said: Vec<(&str, usize)> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            said,
            [
                ("steps[1].send.push.keep_after_exit", 13),
                ("steps[0].send.locales.fr.in_app.keep_after_exit", 10),
            ],
            "{errs:?}"
        );
        assert!(
            errs[1].message.contains("its locales follow it"),
            "{errs:?}"
        );
        let fixed = text
            .replace(r#"body: ".", keep_after_exit: true}}"#, r#"body: "."}}"#)
            .replace(
                r#"push: {title: "Hi", body: ".", keep_after_exit: true}"#,
                r#"push: {title: "Hi", body: "."}"#,
            );
        let j = parse("j.yaml", &fixed).expect("valid");
        let Some(crate::journey::Action::Send(send)) = j.step("saved").map(|s| s.action()) else {
            panic!("a send");
        };
        assert!(send.in_app.as_ref().is_some_and(|p| p.keep_after_exit));
    }

    #[test]
    fn a_wait_before_a_date_with_no_if_past_is_told_a_past_date_goes_on() {
        let journey = |if_past: &str| {
            format!(
                r#"id: j
name: J
trigger: {{event: booked}}
steps:
  - id: day_before
    wait_until: {{date: event.starts_at, before: 1d{if_past}}}
  - id: remind
    send:
      sms: {{body: "See you tomorrow"}}
  - id: after
    wait_until: {{date: event.starts_at, after: 1d}}
"#
            )
        };
        let said = advice("j.yaml", &journey(""));
        let at: Vec<(&str, usize)> = said.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(at, [("steps[0].wait_until", 6)], "{said:?}");
        assert!(
            said[0].message.contains("`event.starts_at` already past")
                && said[0].message.contains("`before: 1d`")
                && said[0].message.contains("if_past: exit"),
            "{said:?}"
        );
        // Any `if_past` written says what is meant; a wait `after` a date is no reminder.
        for written in [", if_past: exit", ", if_past: go_on", ", if_past: remind"] {
            assert_eq!(advice("j.yaml", &journey(written)), [], "{written}");
        }
    }

    #[test]
    fn send_within_is_a_duration_on_the_steps_own_send_where_quiet_hours_hold() {
        let text = r#"id: j
name: J
trigger: {event: e}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - id: remind
    send:
      push: {title: "Soon", body: "."}
      send_within: 15m
  - id: inbox
    send:
      in_app: {title: "Soon", body: "."}
      send_within: 15m
"#;
        let j = parse("j.yaml", text).expect("valid");
        let Some(crate::journey::Action::Send(send)) = j.step("remind").map(|s| s.action()) else {
            panic!("a send");
        };
        assert_eq!(send.send_within, Some("15m".parse().expect("duration")));
        // Only the in-app message's is not applied: nothing holds it.
        let said = advice("j.yaml", text);
        let at: Vec<(&str, usize, usize)> = said
            .iter()
            .map(|e| (e.path.as_str(), e.line, e.column))
            .collect();
        assert_eq!(at, [("steps[1].send.send_within", 13, 7)], "{said:?}");
        assert!(said[0].message.contains("in-app"), "{said:?}");
        // Nor in a journey without quiet hours, or a transactional one: each says what to write.
        let push_only = text.split("  - id: inbox").next().expect("text");
        for (journey, says) in [
            (
                push_only.replace("quiet_hours: {start: \"21:00\", end: \"08:00\"}\n", ""),
                "give the journey quiet hours",
            ),
            (
                push_only.replace("quiet_hours:", "transactional: true\nquiet_hours:"),
                "transactional",
            ),
        ] {
            let said = advice("j.yaml", &journey);
            let within: Vec<_> = said
                .iter()
                .filter(|e| e.path == "steps[0].send.send_within")
                .collect();
            assert_eq!(within.len(), 1, "{said:?}");
            assert!(within[0].message.contains(says), "{said:?}");
        }
        // A bad duration, and one on a fallback or a locale's send, are errors where written.
        let errs = parse(
            "j.yaml",
            &text.replace(
                "send_within: 15m\n  - id: inbox",
                "send_within: soon\n  - id: inbox",
            ),
        )
        .expect_err("bad duration");
        assert_eq!(
            (errs[0].path.as_str(), errs[0].line, errs[0].column),
            ("steps[0].send.send_within", 9, 7),
            "{errs:?}"
        );
        assert!(errs[0].message.contains("\"30m\""), "{errs:?}");
        let nested = text.replace(
            "      send_within: 15m\n  - id: inbox",
            "      fallback: {sms: {body: soon}, send_within: 15m}\n      locales:\n        fr: {push: {title: Bientôt, body: .}, send_within: 15m}\n  - id: inbox",
        );
        let errs = parse("j.yaml", &nested).expect_err("misplaced");
        let said: Vec<(&str, usize)> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            said,
            [
                ("steps[0].send.locales.fr.send_within", 11),
                ("steps[0].send.fallback.send_within", 9),
            ],
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .all(|e| e.message.contains("on the step's own send")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_split_paths_names_are_ids_one_per_path() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: ab\n    split:\n      paths:\n        - {name: Short Copy, weight: 1, goto: a}\n        - {weight: 1, goto: a}\n        - {weight: 1, goto: a}\n  - id: a\n    exit: true\n";
        let errs = parse("j.yaml", text).expect_err("bad names");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].path, "steps[0].split.paths[0].name");
        assert_eq!(errs[0].line, 8, "{errs:?}");
        assert!(errs[0].message.contains("e.g. `short_copy`"), "{errs:?}");
        assert_eq!(errs[1].path, "steps[0].split.paths[2]");
        assert_eq!(errs[1].line, 10, "{errs:?}");
        assert!(errs[1].message.contains("named `a`"), "{errs:?}");
        let fixed = text
            .replace("name: Short Copy, ", "name: short_copy, ")
            .replace(
                "- {weight: 1, goto: a}\n  - id: a",
                "- {name: again, weight: 1, goto: a}\n  - id: a",
            );
        assert!(
            parse("j.yaml", &fixed).is_ok(),
            "{:?}",
            parse("j.yaml", &fixed).err()
        );
    }

    #[test]
    fn an_updates_template_values_are_checked_like_a_messages() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: keep\n    update:\n      set:\n        plan: \"{{ evnt.plan }}\"\n        n: 1\n";
        let errs = parse("j.yaml", text).expect_err("unknown variable");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[0].update.set.plan");
        assert_eq!(errs[0].line, 8);
        assert!(
            errs[0].message.contains("unknown variable `evnt`"),
            "{}",
            errs[0]
        );
        assert!(parse("j.yaml", &text.replace("evnt", "event")).is_ok());
        // On a schedule there is no event to copy from.
        let scheduled = text.replace("evnt", "event").replace(
            "trigger: {event: e}",
            "trigger: {schedule: {cron: \"0 9 * * *\"}}",
        );
        let errs = parse("j.yaml", &scheduled).expect_err("event on a schedule");
        assert_eq!(errs[0].path, "steps[0].update.set.plan");
    }

    #[test]
    fn a_wait_until_is_a_time_or_a_date() {
        let with = |wait: &str, trigger: &str| {
            format!(
                "id: w\nname: W\ntrigger: {trigger}\nsteps:\n  - id: w\n    wait_until: {wait}\n  - id: hi\n    send: {{push: {{title: Hi, body: \".\"}}}}\n"
            )
        };
        let event = "{event: booked}";
        for good in [
            r#"{time: "09:00"}"#,
            r#"{time: "09:00", weekdays: [mon]}"#,
            "{date: event.starts_at}",
            "{date: profile.renews_on, before: 3d}",
            r#"{date: event.starts_at, after: 2h, time: "18:00"}"#,
        ] {
            if let Err(e) = parse("w.yaml", &with(good, event)) {
                panic!("{good}: {e:?}");
            }
        }
        for (bad, path, needle) in [
            ("{weekdays: [mon]}", "steps[0].wait_until", "needs a `time`"),
            // An empty list would read as none, every day.
            (
                r#"{time: "09:00", weekdays: []}"#,
                "steps[0].wait_until.weekdays",
                "`weekdays: []` names no day",
            ),
            (
                r#"{time: "09:00", before: 1d}"#,
                "steps[0].wait_until.before",
                "moves a `date`",
            ),
            (
                "{date: event.starts_at, weekdays: [mon]}",
                "steps[0].wait_until.weekdays",
                "a `date` names its day",
            ),
            (
                "{date: event.starts_at, before: 1d, after: 1h}",
                "steps[0].wait_until.after",
                "not both",
            ),
            (
                "{date: starts_at}",
                "steps[0].wait_until.date",
                "write event.starts_at or profile.starts_at",
            ),
            // A fixed date, however YAML reads it, is not read as a condition ("a number is
            // not a condition by itself").
            (
                r#"{date: "2026-11-27", time: "08:00"}"#,
                "steps[0].wait_until.date",
                "a fixed date cannot be written here",
            ),
            (
                "{date: 2026-11-27T08:00:00Z}",
                "steps[0].wait_until.date",
                "a fixed date cannot be written here",
            ),
            (
                "{date: 1795000000}",
                "steps[0].wait_until.date",
                "a fixed date cannot be written here",
            ),
            (
                "{date: now()}",
                "steps[0].wait_until.date",
                "write `wait: 3d`",
            ),
        ] {
            let errs = parse("w.yaml", &with(bad, event)).expect_err(bad);
            assert_eq!(errs[0].path, path, "{bad}: {errs:?}");
            assert_eq!(errs[0].line, 6, "{bad}: {errs:?}");
            assert!(errs[0].message.contains(needle), "{bad}: {}", errs[0]);
        }
        // A schedule journey has no trigger event to read a date from.
        let errs = parse(
            "w.yaml",
            &with(
                "{date: event.starts_at}",
                r#"{schedule: {cron: "0 9 * * *"}}"#,
            ),
        )
        .expect_err("event.* in a schedule journey");
        assert_eq!(errs[0].path, "steps[0].wait_until.date", "{errs:?}");
    }

    /// `if_past` on a `wait_until` date: a choice or a step, bare or with a tolerance; each
    /// mistake named where it is written (file:line:col), with what to write instead.
    #[test]
    fn a_wait_until_if_past_is_a_choice_or_a_step() {
        let with = |wait: &str| {
            format!(
                "id: w\nname: W\ntrigger: {{event: booked}}\nsteps:\n  - id: w\n    wait_until: {wait}\n  - id: hi\n    send: {{push: {{title: Hi, body: \".\"}}}}\n    next: done\n  - id: missed\n    send: {{push: {{title: Missed, body: \".\"}}}}\n  - id: done\n    exit: true\n"
            )
        };
        let read =
            |wait: &str| parse("w.yaml", &with(wait)).unwrap_or_else(|e| panic!("{wait}: {e:?}"));
        use crate::journey::{IfPast, PastThen};
        let if_past = |wait: &str| {
            read(wait).steps[0]
                .wait_until
                .clone()
                .and_then(|w| w.if_past)
        };
        let d = |s: &str| s.parse::<crate::duration::Duration>().expect("duration");
        // `missed` must be reached by some way: the journey names it in every case but the
        // last, where `hi` goes there instead (`next: missed`).
        for (wait, want) in [
            (
                "{date: event.starts_at, before: 1d, if_past: missed}",
                IfPast {
                    by_more_than: None,
                    then: PastThen::Goto("missed".into()),
                },
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 2h, then: missed}}",
                IfPast {
                    by_more_than: Some(d("2h")),
                    then: PastThen::Goto("missed".into()),
                },
            ),
        ] {
            assert_eq!(if_past(wait), Some(want.clone()), "{wait}");
            // Written back as it was read (a published journey is stored as JSON).
            let j = read(wait);
            let json = serde_json::to_value(&j).expect("json");
            let back: Journey = serde_json::from_value(json).expect("read back");
            assert_eq!(back, j);
        }
        let reached = |wait: &str| with(wait).replace("    next: done\n", "    next: missed\n");
        for (wait, want) in [
            ("exit", PastThen::Exit),
            ("go_on", PastThen::GoOn),
            ("{by_more_than: 1d, then: exit}", PastThen::Exit),
        ] {
            let text = reached(&format!("{{date: profile.renews_on, if_past: {wait}}}"));
            let j = parse("w.yaml", &text).unwrap_or_else(|e| panic!("{wait}: {e:?}"));
            let got = j.steps[0]
                .wait_until
                .as_ref()
                .and_then(|w| w.if_past.clone());
            assert_eq!(got.map(|p| p.then), Some(want), "{wait}");
        }
        for (wait, path, needle) in [
            (
                r#"{time: "09:00", if_past: exit}"#,
                "steps[0].wait_until.if_past",
                "add `date: event.appointment_at`",
            ),
            (
                "{date: event.starts_at, if_past: mised}",
                "steps[0].wait_until.if_past",
                "no step is called `mised`: did you mean `missed`?",
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 1d, then: mised}}",
                "steps[0].wait_until.if_past.then",
                "no step is called `mised`: did you mean `missed`?",
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 1d, then: go_on}}",
                "steps[0].wait_until.if_past.then",
                "write `then: exit`",
            ),
            (
                "{date: event.starts_at, if_past: {after: 1d, then: exit}}",
                "steps[0].wait_until.if_past.after",
                "unknown field `after`: did you mean `by_more_than`?",
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 1d, goto: missed}}",
                "steps[0].wait_until.if_past.goto",
                "unknown field `goto`: did you mean `then`?",
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 1d}}",
                "steps[0].wait_until.if_past",
                "missing field `then`",
            ),
            (
                "{date: event.starts_at, if_past: {by_more_than: 30, then: exit}}",
                "steps[0].wait_until.if_past.by_more_than",
                "no unit",
            ),
            (
                "{date: event.starts_at, if_past: [exit]}",
                "steps[0].wait_until.if_past",
                "`{by_more_than: 1d, then: exit}`",
            ),
        ] {
            let errs = parse("w.yaml", &reached(wait)).expect_err(wait);
            let e = errs
                .iter()
                .find(|e| e.path == path)
                .unwrap_or_else(|| panic!("{wait}: {errs:?}"));
            // At the key the path ends with, in the step's line.
            let key = path.rsplit('.').next().unwrap_or(path);
            let column = with(wait)
                .lines()
                .nth(5)
                .and_then(|l| l.find(key))
                .map(|c| c + 1);
            assert_eq!((e.line, Some(e.column)), (6, column), "{wait}: {e}");
            assert!(e.message.contains(needle), "{wait}: {e}");
            // Nothing else is said wrong (a key taken out may leave `then` missing).
            assert!(
                errs.iter()
                    .all(|e| e.path.starts_with("steps[0].wait_until.if_past")),
                "{wait}: {errs:?}"
            );
        }
        // A step named as the choice is not gone to: the file says which is meant.
        let named = "id: w\nname: W\ntrigger: {event: booked}\nsteps:\n  - id: w\n    wait_until: {date: event.starts_at, if_past: go_on}\n  - id: hi\n    send: {push: {title: Hi, body: \".\"}}\n    next: go_on\n  - id: go_on\n    exit: true\n";
        let errs = parse("w.yaml", named).expect_err("a step named go_on");
        assert_eq!(errs[0].path, "steps[0].wait_until.if_past", "{errs:?}");
        assert!(
            errs[0].message.contains("give it another id"),
            "{}",
            errs[0]
        );
        // A step named `exit` that exits is left the same way either word is read.
        assert!(parse("w.yaml", &named.replace("go_on", "exit")).is_ok());
        // A loop back through the step it names has no wait: the date is past again there.
        let looped = "id: w\nname: W\ntrigger: {event: booked}\nsteps:\n  - id: w\n    wait_until: {date: event.starts_at, if_past: missed}\n  - id: hi\n    send: {push: {title: Hi, body: \".\"}}\n    next: done\n  - id: missed\n    send: {push: {title: Missed, body: \".\"}}\n    next: w\n  - id: done\n    exit: true\n";
        let errs = parse("w.yaml", looped).expect_err("a loop through a past date");
        assert!(
            errs.iter().any(|e| e
                .message
                .contains("steps `missed` → `w` form a loop with no wait")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_wait_for_an_event_the_journey_exits_on_is_an_error() {
        let text = r#"id: wf
name: WF
trigger: {event: signed_up}
exit_when:
  - event: cancelled
steps:
  - id: w
    wait_for: {event: cancelled, timeout: 1d, on_event: sorry, on_timeout: done}
  - id: sorry
    send: {push: {title: Sorry, body: "."}}
  - id: done
    exit: true
"#;
        let errs = parse("wf.yaml", text).expect_err("unreachable event path");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[0].wait_for.event");
        assert_eq!(errs[0].line, 8);
        assert!(
            errs[0]
                .message
                .contains("`cancelled` is also in `exit_when`"),
            "{}",
            errs[0]
        );
        // An exit with a condition leaves the other cases to the wait.
        let conditional = text.replace(
            "  - event: cancelled\n",
            "  - event: cancelled\n    where: \"event.reason == 'fraud'\"\n",
        );
        assert!(parse("wf.yaml", &conditional).is_ok());
    }

    /// A `wait_for` with `paths`: each path's step must exist, each event comes once, the list
    /// names some event, `event` and `paths` are not both written (nor `where` or `on_event`
    /// beside `paths`), and a path's event that an exit always takes first is refused as the
    /// single event is.
    #[test]
    fn a_wait_for_with_paths_is_checked_path_by_path() {
        let with = |wait: &str| {
            format!("id: j\nname: J\ntrigger: {{event: go}}\nexit_when: [{{event: cancelled}}]\nsteps:\n  - id: w\n    wait_for:\n{wait}      timeout: 1d\n      on_timeout: done\n  - id: tip\n    send: {{sms: {{body: \"tip {{{{ waited.x | default('-') }}}}\"}}}}\n    next: done\n  - id: thanks\n    send: {{sms: {{body: thanks}}}}\n  - id: done\n    exit: true\n")
        };
        let ok = with("      paths:\n        - {event: session_started, goto: tip}\n        - {event: order_placed, where: \"event.total > 50 and event.id == trigger.id\", goto: thanks}\n");
        let j = parse("j.yaml", &ok).expect("valid");
        let w = j.steps[0].wait_for.as_ref().expect("a wait_for");
        assert_eq!(w.events_label(), "session_started or order_placed");
        for (wait, path, line, needle) in [
            (
                "      paths:\n        - {event: session_started, goto: tpi}\n        - {event: order_placed, goto: thanks}\n",
                "steps[0].wait_for.paths[0].goto",
                9,
                "no step is called `tpi`: did you mean `tip`?",
            ),
            (
                "      paths:\n        - {event: session_started, goto: tip}\n        - {event: session_started, where: \"event.x == 1\", goto: thanks}\n",
                "steps[0].wait_for.paths[1].event",
                10,
                "`session_started` is waited for already by `paths[0]`",
            ),
            (
                "      any:\n        - {event: session_started, goto: tip}\n",
                "steps[0].wait_for.any",
                8,
                "did you mean `paths`?",
            ),
            (
                "      paths: []\n",
                "steps[0].wait_for.paths",
                8,
                "`paths: []` names no event",
            ),
            (
                "      event: session_started\n      paths:\n        - {event: order_placed, goto: thanks}\n",
                "steps[0].wait_for.paths",
                9,
                "write one of `event` (one event, with its `where` and `on_event`) and `paths`",
            ),
            (
                "      on_event: tip\n",
                "steps[0].wait_for",
                7,
                "name the event it waits for: `event: app_opened`, or several",
            ),
            (
                "      where: \"event.total > 50\"\n      paths:\n        - {event: order_placed, goto: thanks}\n        - {event: session_started, goto: tip}\n",
                "steps[0].wait_for.where",
                8,
                "with `paths`, each path has its own `where`",
            ),
            (
                "      on_event: tip\n      paths:\n        - {event: order_placed, goto: thanks}\n        - {event: session_started, goto: tip}\n",
                "steps[0].wait_for.on_event",
                8,
                "remove `on_event`",
            ),
            (
                "      paths:\n        - {event: session_started, goto: tip}\n        - {event: cancelled, goto: thanks}\n",
                "steps[0].wait_for.paths[1].event",
                10,
                "`cancelled` is also in `exit_when`",
            ),
            (
                "      paths:\n        - {event: session_started, goto: tip}\n        - {event: identify, goto: thanks}\n",
                "steps[0].wait_for.paths[1].event",
                10,
                "an identify is no track event",
            ),
            (
                "      paths:\n        - {event: session_started, where: \"event.total >\", goto: tip}\n        - {event: order_placed, goto: thanks}\n",
                "steps[0].wait_for.paths[0].where",
                9,
                "",
            ),
        ] {
            let errs = parse("j.yaml", &with(wait)).expect_err(wait);
            assert_eq!(errs.len(), 1, "{wait}: {errs:?}");
            assert_eq!(errs[0].path, path, "{}", errs[0]);
            assert_eq!(errs[0].line, line, "{}", errs[0]);
            assert!(errs[0].message.contains(needle), "{}", errs[0]);
        }
    }

    /// `waited.*` after a wait with `paths` is known on each path's way, as after `on_event`,
    /// and missing on the timeout's.
    #[test]
    fn waited_after_a_wait_for_with_paths_is_known_on_its_paths_only() {
        let text = "id: j\nname: J\ntrigger: {event: go}\nsteps:\n  - id: w\n    wait_for:\n      paths:\n        - {event: a, goto: one}\n        - {event: b, goto: two}\n      timeout: 1d\n      on_timeout: late\n  - id: one\n    send: {sms: {body: \"{{ waited.x }}\"}}\n    next: done\n  - id: two\n    send: {sms: {body: \"{{ waited.y }}\"}}\n    next: done\n  - id: late\n    send: {sms: {body: \"{{ waited.z }}\"}}\n  - id: done\n    exit: true\n";
        let errs = parse("j.yaml", text).expect_err("waited on the timeout's way");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "steps[3].send.sms.body");
        assert!(
            errs[0]
                .message
                .contains("no way to this step passes a `wait_for` that met its event"),
            "{}",
            errs[0]
        );
        parse("j.yaml", &text.replace("{{ waited.z }}", "{{ trigger.z }}"))
            .expect("waited read on the paths' ways only");
    }

    #[test]
    fn json_files_parse_too() {
        let text =
            r#"{"id":"j","name":"J","trigger":{"event":"e"},"steps":[{"id":"a","wait":"1h"}]}"#;
        assert!(parse("j.json", text).is_ok());
    }

    /// Python's `json.dumps` (and other JSON writers) write a character past U+FFFF as two
    /// escaped UTF-16 halves, which YAML's reader refuses on their own.
    #[test]
    fn json_escapes_of_a_character_in_two_halves_read_as_the_character() {
        let text = r#"{"id": "j", "name": "Sale \ud83c\udf89 \uD83D\uDED2!", "trigger": {"event": "e"}, "steps": [{"id": "a", "send": {"push": {"title": "\ud83c\udf89", "body": "Hi \\ud83c\\udf89 \u00e9"}}}]}"#;
        let journey = parse("j.json", text).expect("reads");
        assert_eq!(journey.name, "Sale \u{1F389} \u{1F6D2}!");
        let shown = serde_json::to_string(&journey).expect("json");
        assert!(shown.contains("\"title\":\"\u{1F389}\""), "{shown}");
        // An escaped backslash is a backslash: its `u` is text, not an escape.
        assert!(shown.contains(r#"Hi \\ud83c\\udf89 é"#), "{shown}");

        // Positions after a joined pair on the same line are those of the file as written: as
        // for a text of the same length in its place.
        for json in [
            r#"{"id": "j", "name": "\ud83c\udf89", "trigger": {"event": "e", "where": "event.total >>> 1"}, "steps": [{"id": "a", "wait": "1h"}]}"#,
            r#"{"id": "j", "name": "\ud83c\udf89 \ud83c\udf89", "trigger": {"event": "e"}, "steps": [{"id": "a", "wat": "1h"}]}"#,
            "{\"id\": \"j\",\n \"name\": \"\\ud83c\\udf89\", \"trigger\": {\"event\": \"e\"}, \"steps\": [{\"id\": \"a\", \"wait\": \"1 hour\"}]}",
        ] {
            let same_length = json.replace(r"\ud83c\udf89", "ABCDEFGHIJKL");
            let (e, plain) = (first_error(json), first_error(&same_length));
            assert_eq!((e.line, e.column), (plain.line, plain.column), "{e}");
            assert!(e.line > 1 || e.column > 30, "{e}");
        }

        // A half without its other half is still refused, with what to write.
        let json = "{\"id\": \"j\", \"name\": \"\\ud83c\\udf89\", \"trigger\": {\"event\": \"\\ud83c x\"}, \"steps\": [{\"id\": \"a\", \"wait\": \"1h\"}]}";
        let e = first_error(json);
        let at = json.find("\"\\ud83c x").expect("in text") + 1;
        assert_eq!((e.line, e.column), (1, at), "{e}");
        assert!(e.message.contains("halves of a character"), "{e}");
        assert!(!e.message.contains("ends at its next"), "{e}");
    }

    #[test]
    fn bad_yaml_reports_position() {
        let e = first_error("id: j\nname: [unclosed\n");
        assert!(e.message.contains("not valid YAML"), "{e}");
        assert!(e.line >= 2, "{e}");
    }

    #[test]
    fn a_key_written_twice_is_named_with_its_first_line() {
        let head = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n";
        for (steps, at, says) in [
            (
                "  - id: a\n    wait: 1h\n    wait: 2h\n",
                (7, 5),
                "`wait` is written twice in this map (first on line 6)",
            ),
            (
                "  - id: a\n    id: b\n    wait: 2h\n",
                (6, 5),
                "`id` is written twice in this map (first on line 5)",
            ),
            (
                "  - id: a\n    wait_until: {time: \"09:00\", time: \"10:00\"}\n",
                (6, 33),
                "`time` is written twice in this map (first on line 6)",
            ),
            (
                "  - id: a\n    wait: 1h\nname: K\n",
                (7, 1),
                "`name` is written twice in this map (first on line 2)",
            ),
            // Another map's key of the same name is not the first writing.
            (
                "  - id: a\n    wait: 1h\n  - id: b\n    \"wait\": 1h\n    wait: 2h\n",
                (9, 5),
                "`wait` is written twice in this map (first on line 8)",
            ),
        ] {
            let e = first_error(&format!("{head}{steps}"));
            assert_eq!((e.line, e.column), at, "{steps}: {e}");
            assert!(e.message.starts_with(says), "{steps}: {e}");
            assert!(e.message.ends_with("keep one of them"), "{steps}: {e}");
        }
    }

    #[test]
    fn an_event_name_the_api_refuses_is_an_error_wherever_it_is_named() {
        let long = "e".repeat(201);
        let text = format!(
            "id: j\nname: J\ntrigger: {{event: \"  \"}}\nexit_when: [{{event: \"\"}}]\ngoal: {{event: \" \", within: 1d}}\nsteps:\n  - id: a\n    wait_for: {{event: {long}, timeout: 1h}}\n"
        );
        let errs = parse("j.yaml", &text).expect_err("blank names");
        let at: Vec<(&str, usize)> = errs.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            at,
            [
                ("trigger.event", 3),
                ("exit_when[0].event", 4),
                ("goal.event", 5),
                ("steps[0].wait_for.event", 8)
            ]
        );
        assert!(
            errs[0].message.contains("empty or shows as nothing"),
            "{}",
            errs[0]
        );
        assert!(errs[3].message.contains("at most 200"), "{}", errs[3]);
        let inactive = "id: j\nname: J\ntrigger:\n  inactive: {events: [app_opened, \" \"], for: 1d}\nsteps: [{id: a, wait: 1h}]\n";
        assert_eq!(first_error(inactive).path, "trigger.inactive.events[1]");
        let repeated = "id: j\nname: J\ntrigger:\n  repeated: {event: \"\\u200B\", times: 2, within: 1d}\nsteps: [{id: a, wait: 1h}]\n";
        assert_eq!(first_error(repeated).path, "trigger.repeated.event");
    }

    #[test]
    fn a_step_id_too_long_is_told_its_length() {
        let text = format!(
            "id: j\nname: J\ntrigger: {{event: e}}\nsteps: [{{id: {}, wait: 1h}}]\n",
            "a".repeat(65)
        );
        let e = first_error(&text);
        assert!(e.message.contains("1–64"), "{e}");
    }

    #[test]
    fn a_conditions_problem_is_pointed_at_in_its_text() {
        let head = "id: j\nname: J\ntrigger:\n  event: e\n";
        let tail = "steps: [{id: a, wait: 1h}]\n";
        // (where's value as written, line and column of the problem)
        let cases = [
            // Quoted: the closing quote, where the text ends too early.
            ("  where: \"event.total > 0 and profile.age >\"\n", (5, 44)),
            // Escapes count as the character they write.
            (
                "  where: \"event.x == \\\"a\\\" and event.y >< 3\"\n",
                (5, 41),
            ),
            ("  where: event.total > 0 and profile.age >< 3\n", (5, 43)),
            // Plain, over two lines.
            (
                "  where: event.total > 0 and\n    profile.age >< 3\n",
                (6, 18),
            ),
            // Folded and literal blocks.
            (
                "  where: >-\n    event.total > 0 and\n    profile.age >< 3\n",
                (7, 18),
            ),
            (
                "  where: |\n    event.total > 0 and\n    profile.age >\n",
                (7, 18),
            ),
            // A tag is no part of the text.
            ("  where: !!str event.total >< 3\n", (5, 29)),
            // A `\` ending a quoted line joins the next to it.
            (
                "  where: \"event.total > 0 and \\\n    profile.age >< 3\"\n",
                (6, 18),
            ),
            // A blank line in quotes or a folded block is one line break.
            (
                "  where: \"event.total > 0 and\n\n    profile.age >< 3\"\n",
                (7, 18),
            ),
            (
                "  where: >-\n    event.total > 0 and\n\n    profile.age >< 3\n",
                (8, 18),
            ),
            // Spaces ending a plain line are no part of it.
            (
                "  where: event.total > 0 and   \n    profile.age >< 3\n",
                (6, 18),
            ),
            ("  where: event.total > 0 and   \n    >< 3\n", (6, 5)),
            // Nor a quoted line's, where it folds.
            (
                "  where: \"event.total > 0 and   \n    profile.age >< 3\"\n",
                (6, 18),
            ),
            // A literal block keeps its blank lines and its deeper indentation.
            (
                "  where: |\n    event.total > 0 and\n\n    profile.age >< 3\n",
                (8, 18),
            ),
            (
                "  where: |\n    event.total > 0 and\n      profile.age >< 3\n",
                (7, 20),
            ),
            // A template's test, told at its `is`, and a `none`, told where it is.
            ("  where: \"event.from is none\"\n", (5, 22)),
            (
                "  where: event.total > 0 and\n    profile.x is not defined\n",
                (6, 15),
            ),
            ("  where: 'event.from == none'\n", (5, 25)),
        ];
        for (condition, at) in cases {
            let text = format!("{head}{condition}{tail}");
            let e = first_error(&text);
            assert_eq!(e.path, "trigger.where", "{condition}");
            assert_eq!((e.line, e.column), at, "{condition}: {e}");
        }
        let json = r#"{"id": "j", "name": "J", "trigger": {"event": "e", "where": "event.total >>> 1"}, "steps": [{"id": "a", "wait": "1h"}]}"#;
        let e = first_error(json);
        assert_eq!((e.line, e.column), (1, 75), "{e}");
    }

    /// A template's problem is told at the file line (and character) that holds the bad text,
    /// also where one line of the template is several of the file: a folded block (`>`) joins
    /// its lines, and so do a string in quotes and a plain one written over several lines.
    /// Each kind of template problem, on the third line of the text.
    #[test]
    fn a_templates_problem_is_told_at_its_line_in_a_folded_block() {
        let head = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: s\n    send:\n      push:\n        title: Hi\n";
        // (what the third line holds, the bad text's start in it, what the message says)
        let cases = [
            (
                "and {{ event.n | titel }} more",
                "titel",
                "unknown filter `titel`",
            ),
            ("and {{ event.n + }} more", "}}", "template error"),
            ("and {{ evnt.n }} more", "evnt", "unknown variable `evnt`"),
            (
                "and {{ journey.nmae }} more",
                "journey",
                "`journey` has no field `nmae`",
            ),
            (
                "at {{ event.at | date('%H:%M', tz='Europe/Pariss') }}",
                "tz=",
                "is not an IANA time zone",
            ),
            ("and {% include 'x' %} more", "{%", "loads another template"),
            (
                "and {{ unsubscribe_url }} more",
                "unsubscribe_url",
                "unsubscribe",
            ),
        ];
        let styles = [
            (
                "> folded",
                "        body: >\n          first line\n          second line\n          {}\n",
            ),
            (
                "|- literal",
                "        body: |-\n          first line\n          second line\n          {}\n",
            ),
            (
                "double quotes",
                "        body: \"first line\n          second line\n          {}\"\n",
            ),
            (
                "plain",
                "        body: first line\n          second line\n          {}\n",
            ),
        ];
        for (style, body) in styles {
            for (third, bad, says) in cases {
                let text = format!("{head}{}", body.replace("{}", third));
                let errors = parse("j.yaml", &text).expect_err(third);
                let e = errors
                    .iter()
                    .find(|e| e.message.contains(says))
                    .unwrap_or_else(|| panic!("{style}: {third}: {errors:?}"));
                let line = text.lines().position(|l| l.contains(third)).expect("third") + 1;
                let column = "          ".len() + third.find(bad).expect("bad text") + 1;
                assert_eq!((e.line, e.column), (line, column), "{style}: {third}: {e}");
            }
        }
    }

    /// An `{% if %}` a message's text never closes is told at the file line and column of its
    /// tag, with the `{% endif %}` to add, not at the text's last line.
    #[test]
    fn a_block_left_open_in_a_template_is_told_where_it_opens() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: s\n    send:\n      email:\n        subject: Hi\n        text: |\n          Hello {{ profile.first_name }},\n          {% if event.total > 100 %}free shipping!\n          See you soon.\n          The team\n";
        let errors = parse("j.yaml", text).expect_err("an open block");
        let e = errors
            .iter()
            .find(|e| e.path.ends_with("text"))
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!((e.line, e.column), (11, 11), "{e}");
        assert!(e.message.contains("add `{% endif %}`"), "{e}");
    }

    #[test]
    fn a_second_document_is_pointed_at_where_it_starts() {
        let text =
            "---\nid: j\nname: J\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n---\nid: k\n";
        let e = first_error(text);
        assert_eq!(e.line, 6, "{e}");
        assert!(e.message.starts_with("one document per file"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_utf8_says_where_and_how_to_save_it() {
        let dir = std::env::temp_dir().join(format!("waymark-dsl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("latin1.yaml");
        std::fs::write(&file, b"id: j\nname: Caf\xe9\n").expect("write");
        let e = load_file(&file).expect_err("not UTF-8").remove(0);
        assert_eq!((e.line, e.column), (2, 10), "{e}");
        assert!(e.message.ends_with("save the file as UTF-8"), "{e}");
        // A journey id another file has is pointed at where this file writes it.
        let (a, b) = (dir.join("a.yaml"), dir.join("b.yaml"));
        std::fs::write(
            &a,
            "id: j\nname: J\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n",
        )
        .expect("write");
        std::fs::write(
            &b,
            "# the same id\n\nname: K\nid: j\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n",
        )
        .expect("write");
        let errs = load_set(&[a, b]).expect_err("the same id");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((errs[0].line, errs[0].column), (4, 1), "{}", errs[0]);
        assert!(errs[0].message.contains("is also used by"), "{}", errs[0]);
    }

    /// A file named twice (on its own beside its folder, through `./`, `..` or a symlink) is
    /// one journey, not a journey whose id is "also used by" itself; two files with one id
    /// are still refused.
    #[test]
    fn a_file_named_twice_is_loaded_once() {
        let dir = std::env::temp_dir().join(format!("waymark-dsl-twice-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        let a = dir.join("a.yaml");
        let journey = "id: j\nname: J\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n";
        std::fs::write(&a, journey).expect("write");
        let mut paths = vec![
            dir.clone(),
            a.clone(),
            dir.join(".").join("a.yaml"),
            dir.join("sub").join("..").join("a.yaml"),
        ];
        #[cfg(unix)]
        {
            let link = dir.join("sub").join("link.yaml");
            std::os::unix::fs::symlink(&a, &link).expect("symlink");
            paths.push(link);
        }
        let loaded = load_set(&paths);
        let (files, _) = files_of(&paths);
        // Its topic undeclared: told once.
        let t = dir.join("sub").join("t.yaml");
        std::fs::write(&t, journey.replace("name: J\n", "name: J\ntopic: news\n")).expect("write");
        let undeclared = undeclared_topics(&[t.clone(), t], |_| Some(Default::default()));
        // A copy under another name is another file.
        std::fs::write(dir.join("sub").join("copy.yaml"), journey).expect("write");
        let copy = load_set(&[dir.clone(), dir.join("sub")]);
        let _ = std::fs::remove_dir_all(&dir);
        let loaded = loaded.expect("one journey");
        assert_eq!(loaded.len(), 1);
        assert_eq!(files, [a], "the first naming is kept");
        assert_eq!(undeclared.len(), 1, "{undeclared:?}");
        let errs = copy.expect_err("the same id");
        assert!(errs[0].message.contains("is also used by"), "{}", errs[0]);
    }

    /// A folder's journeys are its YAML and JSON files whatever the extension's case, as a file
    /// named on its own is read; a hidden file (a draft, a Mac's `._` companion, which is no
    /// text) is none of them, and does not break the folder. Named on its own, it is read.
    #[test]
    fn a_folder_skips_hidden_files_and_reads_an_extension_in_any_case() {
        let dir = std::env::temp_dir().join(format!("waymark-dsl-hidden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let journey = |id: &str| {
            format!("id: {id}\nname: N\ntrigger: {{event: go}}\nreentry: after_exit\nsteps:\n  - id: a\n    wait: 1h\n")
        };
        std::fs::write(dir.join("welcome.yaml"), journey("welcome")).expect("write");
        std::fs::write(dir.join("Promo.YAML"), journey("upper")).expect("write");
        std::fs::write(dir.join("Other.Json"), "{\"id\": \"json\", \"name\": \"N\", \"trigger\": {\"event\": \"go\"}, \"reentry\": \"after_exit\", \"steps\": [{\"id\": \"a\", \"wait\": \"1h\"}]}").expect("write");
        std::fs::write(dir.join(".draft.yaml"), journey("hidden")).expect("write");
        std::fs::write(
            dir.join("._welcome.yaml"),
            b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02",
        )
        .expect("write");
        std::fs::write(dir.join("notes.txt"), "not a journey").expect("write");
        let files = journey_files(&dir);
        let loaded = load_set(std::slice::from_ref(&dir));
        let named = load_set(&[dir.join(".draft.yaml")]);
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = files
            .expect("readable")
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["Other.Json", "Promo.YAML", "welcome.yaml"]);
        let ids: Vec<String> = loaded.expect("valid").into_iter().map(|j| j.id).collect();
        assert_eq!(ids, ["json", "upper", "welcome"]);
        assert_eq!(named.expect("named").len(), 1);
    }

    #[test]
    fn a_value_of_the_wrong_kind_says_what_to_write() {
        // A choice that takes no value, written with one: one problem, saying how to write it.
        let errs = parse(
            "j.yaml",
            "id: j\nname: J\ntrigger: {event: e}\nreentry: {after_exit: true}\nsteps: [{id: a, wait: 1h}]\n",
        )
        .expect_err("a value");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].message,
            "`after_exit` takes no value: write `reentry: after_exit`"
        );
        // A choice written with a key more: the key named, and the choices, as where it is
        // written alone; the rest of the file read on.
        let errs = parse(
            "j.yaml",
            "id: j\nname: J\ntrigger: {event: e}\nreentry: {after: 1d, extra: 1}\nsteps: [{id: a, wait: 3x}]\n",
        )
        .expect_err("a key more");
        let told: Vec<(usize, usize, &str, &str)> = errs
            .iter()
            .map(|e| (e.line, e.column, e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(told.len(), 2, "{errs:?}");
        assert_eq!(
            told[0],
            (
                4,
                22,
                "reentry",
                "`extra` is no choice of `reentry`, which takes one, written alone: write one of `never`, `after_exit`, `after: <duration>` (like `reentry: {after: 30d}`)"
            )
        );
        assert_eq!(told[1].2, "steps[0].wait", "{errs:?}");
        let e = first_error(
            "id: j\nname: J\ntrigger: {event: e}\nreentry: {after: 1d, after_exit: null}\nsteps: [{id: a, wait: 1h}]\n",
        );
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (4, 1, "`after: <duration>`, `after_exit` are choices of `reentry`, which takes one, written alone: write one of `never`, `after_exit`, `after: <duration>` (like `reentry: {after: 30d}`)")
        );
        // A choice left empty or written as a number or a list: the choices to write, at the
        // key (the status is said on its own line; a file that leaves it out is `active`).
        for (text, at, said) in [
            (
                "status:\n",
                (4, 1),
                "status: this is empty (`null`, or nothing after the colon), where one of its choices goes: write one of `active`, `closed`, `stopped`",
            ),
            (
                "status: 3\n",
                (4, 1),
                "status: this is the number 3, where one of its choices goes: write one of `active`, `closed`, `stopped`",
            ),
            (
                "status: [closed]\n",
                (4, 1),
                "status: this is a list, where one of its choices goes: write one of `active`, `closed`, `stopped`",
            ),
            (
                "reentry: ~\n",
                (4, 1),
                "reentry: this is empty (`null`, or nothing after the colon), where one of its choices goes: write one of `never`, `after_exit`, `after: <duration>` (like `reentry: {after: 30d}`)",
            ),
        ] {
            let errs = parse(
                "j.yaml",
                &format!("id: j\nname: J\ntrigger: {{event: e}}\n{text}steps: [{{id: a, wait: 1h}}]\n"),
            )
            .expect_err(text);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].to_string(), format!("j.yaml:{}:{}: {said}", at.0, at.1));
        }
        // A key that is not a word (YAML's complex key) is told where it is, not at 1:1.
        let e = first_error(
            "id: j\nname: J\n? [a, b]\n: 1\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n",
        );
        assert_eq!(
            (e.line, e.column, e.message.as_str()),
            (3, 3, "a key must be a plain word")
        );
        let e = first_error(
            "id: j\nname: J\ntrigger: {trait_changed: [a, b]}\nsteps: [{id: a, wait: 1h}]\n",
        );
        assert_eq!(
            e.message,
            "this is a list, where one value goes: write a single name or text here"
        );
        // A number or a truth value where text goes: quoted, it is that text.
        for (text, said) in [
            (
                "id: 123\nname: J\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n",
                "`123` is read as a number, where text goes: put it in quotes, `\"123\"`",
            ),
            (
                "id: j\nname: 1.5\ntrigger: {event: e}\nsteps: [{id: a, wait: 1h}]\n",
                "`1.5` is read as a number, where text goes: put it in quotes, `\"1.5\"`",
            ),
            (
                "id: j\nname: J\ntrigger: {event: e}\nsteps: [{id: a, send: {push: {title: t, body: b, data: {k: true}}}}]\n",
                "`true` is read as a truth value, where text goes: put it in quotes, `\"true\"`",
            ),
        ] {
            let e = first_error(text);
            assert_eq!(e.message, said, "{text}");
        }
        // Nothing where text goes (`null`, `~`, or no value after the colon): told so, where it
        // is, with what to write instead (was serde's `invalid type: null, expected a
        // string`).
        for (text, line, column) in [
            (
                "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: a\n    send:\n      push:\n        title: t\n        body: b\n        data: {k: null}\n",
                10,
                16,
            ),
            (
                "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: a\n    send:\n      in_app:\n        title: t\n        body: b\n        data:\n          deeplink:\n",
                11,
                11,
            ),
        ] {
            let e = first_error(text);
            assert_eq!(
                (e.line, e.column, e.message.as_str()),
                (line, column, "this is empty (`null`, or nothing after the colon), where text goes: write the text (in quotes, `\"\"`, for empty text), or take the key out if it needs no value"),
                "{text}"
            );
        }
        // A trigger's event may be a list (any of them enters), but not a map.
        let e =
            first_error("id: j\nname: J\ntrigger: {event: {a: 1}}\nsteps: [{id: a, wait: 1h}]\n");
        assert_eq!(
            e.message,
            "this is a map, where an event's name goes: write `event: cart_abandoned`, or a list of names any of which enters, `event: [cart_abandoned, checkout_abandoned]`"
        );
        for (text, found) in [
            ("\"just a string\"\n", "the text \"just a string\""),
            ("[j1, J]\n", "a list"),
            // A list of every field's value in order is no journey either.
            (
                r#"["j1","J",{"event":"x"},"never",[],null,null,null,false,"active",[{"id":"a","wait":"1h"}]]"#,
                "a list",
            ),
        ] {
            let e = first_error(text);
            assert_eq!(
                e.message,
                format!("the file holds {found}, where a map of fields goes: write one `key: value` a line"),
                "{text}"
            );
        }
    }
}
