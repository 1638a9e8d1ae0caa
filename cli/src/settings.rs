//! `waymark.yaml`, the optional settings file of a journey folder: frequency caps across journeys.
//! Errors name the file, line and column as journey errors do. Never touches the runtime.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde::Deserialize;
use waymark::dsl::{FileError, SETTINGS_STEM};
use waymark::journey::Channel;
use waymark::runtime::Cap;

/// What a settings file says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    /// At most `max` messages per channel per `per`, per user, across journeys.
    pub caps: BTreeMap<Channel, Cap>,
}

/// The file as written; channel names are checked after, so an error can name the key's line
/// (serde's paths lose map keys that are not strings).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default)]
    caps: BTreeMap<String, Cap>,
}

/// The settings file of a journey folder, if it has one (`waymark.yaml` or `waymark.yml`).
pub fn path_in(dir: &Path) -> Option<std::path::PathBuf> {
    ["yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{SETTINGS_STEM}.{ext}")))
        .find(|p| p.is_file())
}

/// Reads a folder's settings; no file means no caps.
pub fn load(dir: &Path) -> Result<Settings, Vec<FileError>> {
    let Some(path) = path_in(dir) else {
        return Ok(Settings::default());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        vec![FileError {
            file: name.clone(),
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("cannot read the settings file: {e}"),
        }]
    })?;
    parse(&name, &text)
}

/// Parses settings text; `file` is for messages only.
pub fn parse(file: &str, text: &str) -> Result<Settings, Vec<FileError>> {
    let err = |(line, column): (usize, usize), path: &str, message: String| FileError {
        file: file.to_string(),
        line,
        column,
        path: path.to_string(),
        message,
    };
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        vec![err(
            (e.marker().line(), e.marker().col() + 1),
            "",
            format!("not valid YAML: {}", e.info()),
        )]
    })?;
    let Some(doc) = docs.first() else {
        return Ok(Settings::default());
    };
    let mut positions = HashMap::new();
    let mut problems = Vec::new();
    let value = to_json(doc, "", &mut positions, &mut problems);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|(path, message)| err(find(&positions, &path), &path, message))
            .collect());
    }
    if value.is_null() {
        return Ok(Settings::default());
    }
    let written: Written = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = explain(&e.inner().to_string());
        vec![err(find(&positions, &path), &path, message)]
    })?;
    let mut caps = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, cap) in written.caps {
        match Channel::parse(&name) {
            Some(channel) => {
                caps.insert(channel, cap);
            }
            None => {
                let path = format!("caps.{name}");
                let channels: Vec<&str> = Channel::ALL.iter().map(Channel::as_str).collect();
                let message = format!(
                    "unknown channel `{name}`: caps are per channel, one of {}",
                    channels.join(", ")
                );
                errors.push(err(find(&positions, &path), &path, message));
            }
        }
    }
    if errors.is_empty() {
        Ok(Settings { caps })
    } else {
        Err(errors)
    }
}

/// The position of `path`, or of its nearest ancestor that has one.
fn find(positions: &HashMap<String, (usize, usize)>, path: &str) -> (usize, usize) {
    let mut p = path.to_string();
    loop {
        if let Some(pos) = positions.get(&p) {
            return *pos;
        }
        match p.rfind(['.', '[']) {
            Some(i) => p.truncate(i),
            None => return positions.get("").copied().unwrap_or((1, 1)),
        }
    }
}

fn explain(message: &str) -> String {
    if message.starts_with("unknown field") {
        return format!("{message} (a settings file holds `caps: {{push: {{max: 3, per: 1d}}}}`)");
    }
    message.to_string()
}

/// YAML to JSON, remembering where each path starts.
fn to_json(
    node: &MarkedYaml<'_>,
    path: &str,
    pos: &mut HashMap<String, (usize, usize)>,
    problems: &mut Vec<(String, String)>,
) -> serde_json::Value {
    use serde_json::Value;
    let start = node.span.start;
    pos.entry(path.to_string())
        .or_insert((start.line(), start.col() + 1));
    match &node.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => Value::String(text.to_string()),
        YamlData::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| to_json(n, &format!("{path}[{i}]"), pos, problems))
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
                    _ => {
                        problems.push((path.to_string(), "a key must be a plain word".into()));
                        continue;
                    }
                };
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let ks = k.span.start;
                pos.insert(p.clone(), (ks.line(), ks.col() + 1));
                let value = to_json(v, &p, pos, problems);
                out.insert(key, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => to_json(inner, path, pos, problems),
        YamlData::Alias(_) => {
            problems.push((
                path.to_string(),
                "YAML aliases are not supported: write the value out".into(),
            ));
            Value::Null
        }
        YamlData::BadValue => {
            problems.push((path.to_string(), "this value cannot be read".into()));
            Value::Null
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use waymark::duration::Duration;

    #[test]
    fn caps_per_channel() {
        let s = parse(
            "waymark.yaml",
            "# caps\ncaps:\n  push: {max: 3, per: 1d}\n  email:\n    max: 2\n    per: 7d\n",
        )
        .expect("valid settings");
        assert_eq!(
            s.caps.get(&Channel::Push),
            Some(&Cap {
                max: 3,
                per: Duration::from_secs(86_400)
            })
        );
        assert_eq!(s.caps.get(&Channel::Email).map(|c| c.max), Some(2));
    }

    #[test]
    fn empty_file_means_no_caps() {
        assert_eq!(parse("w.yaml", "").expect("ok"), Settings::default());
        assert_eq!(
            parse("w.yaml", "# nothing\n").expect("ok"),
            Settings::default()
        );
    }

    #[test]
    fn errors_point_at_the_line() {
        let errs = parse("w.yaml", "caps:\n  push:\n    max: 3\n    per: 3 days\n")
            .expect_err("bad duration");
        assert_eq!((errs[0].line, errs[0].column), (4, 5), "{errs:?}");
        assert_eq!(errs[0].path, "caps.push.per");
        let errs = parse("w.yaml", "caps:\n  fax: {max: 1, per: 1d}\n").expect_err("bad channel");
        assert_eq!((errs[0].line, errs[0].column), (2, 3), "{errs:?}");
        assert!(errs[0].message.contains("push"), "{}", errs[0].message);
        let errs = parse("w.yaml", "capz: {}\n").expect_err("unknown field");
        assert_eq!((errs[0].line, errs[0].column), (1, 1), "{errs:?}");
    }
}
