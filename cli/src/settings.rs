//! `waymark.yaml`, the optional settings file of a journey folder: frequency caps across journeys
//! and the subscription topics journeys may name.
//! Errors name the file, line and column as journey errors do. Never touches the runtime.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use waymark::dsl::{self, FileError, SETTINGS_STEM};
use waymark::journey::Channel;
use waymark::runtime::Cap;
use waymark::topic::{Topic, Topics};

/// What a settings file says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    /// At most `max` messages per channel per `per`, per user, across journeys.
    pub caps: BTreeMap<Channel, Cap>,
    /// The subscription topics a journey's `topic` may name, by id.
    pub topics: Topics,
}

/// The file as written; channel names are checked after, so an error can name the key's line
/// (serde's paths lose map keys that are not strings).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default)]
    caps: BTreeMap<String, Cap>,
    #[serde(default)]
    topics: BTreeMap<String, Topic>,
}

/// The settings file of a journey folder, if it has one (`waymark.yaml`, else `waymark.yml`),
/// its extension in any case (`waymark.YAML`), as a journey file's is read: the name written
/// in lower case first, when the folder has it in two cases.
pub fn path_in(dir: &Path) -> Option<std::path::PathBuf> {
    let mut named: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    // The exact lower-case name first, then the others in name order: one is read, always
    // the same.
    named.sort_by_key(|p| {
        (
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| e.chars().any(char::is_uppercase)),
            p.clone(),
        )
    });
    ["yaml", "yml"].iter().find_map(|ext| {
        named
            .iter()
            .find(|p| settings_extension(p).as_deref() == Some(*ext))
            .cloned()
    })
}

/// The extension of a settings file's name, in lower case (`waymark.YAML`: `yaml`), or
/// `None` for a file of another name.
fn settings_extension(path: &Path) -> Option<String> {
    (path.file_stem().and_then(|s| s.to_str()) == Some(SETTINGS_STEM))
        .then(|| path.extension().and_then(|e| e.to_str()))
        .flatten()
        .map(str::to_ascii_lowercase)
}

/// Reads a folder's settings; no file means no caps.
pub fn load(dir: &Path) -> Result<Settings, Vec<FileError>> {
    match path_in(dir) {
        Some(path) => read(&path),
        None => Ok(Settings::default()),
    }
}

/// Checks a settings file named on its own (`waymark validate journeys/waymark.yml`): the
/// file itself, when it is the one its folder's settings are read from ([`path_in`]); else an
/// error saying which file is read, since this one's caps and topics would never apply (nor
/// is it read as a journey).
pub fn check_named(file: &Path) -> Result<Settings, Vec<FileError>> {
    let read_instead = path_in(dsl::folder_of(file));
    let is_read = read_instead
        .as_ref()
        .is_some_and(|p| p.file_name() == file.file_name());
    if is_read {
        return read(file);
    }
    let read_name = read_instead
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let loaded = matches!(settings_extension(file).as_deref(), Some("yaml" | "yml"));
    let message = match (loaded, read_name) {
        (true, Some(read)) => format!(
            "this settings file is not read: its folder's settings are read from {read} beside it ({SETTINGS_STEM}.yaml, else {SETTINGS_STEM}.yml): keep one settings file"
        ),
        (_, read) => format!(
            "this settings file is not read (nor as a journey): a folder's settings are read from {SETTINGS_STEM}.yaml or {SETTINGS_STEM}.yml: {}",
            match read {
                Some(read) => format!("move what it says into {read} beside it"),
                None => format!("rename it {SETTINGS_STEM}.yaml"),
            }
        ),
    };
    Err(vec![FileError {
        file: file.display().to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        message,
    }])
}

/// The settings that apply to journey `paths`, checked as `validate` checks them (and
/// `publish`, before it publishes): those of each folder named, and of the folder of each
/// journey file named on its own (judged by them as the folder's journeys are), each folder
/// once (compared as canonical paths).
#[derive(Debug, Default)]
pub struct Checked {
    /// Each folder's settings that read without error (its defaults where it has none).
    pub read: Vec<(std::path::PathBuf, Settings)>,
    /// The errors of the settings files, and of the settings files that nothing reads beside
    /// a folder named ([`unread_in`]).
    pub errors: Vec<FileError>,
    /// The settings files that nothing reads beside a journey file named on its own: warned
    /// of, as `simulate` warns of them.
    pub advice: Vec<FileError>,
}

/// [`Checked`] for journey `paths`; `named`: the settings files named on their own, checked
/// already ([`check_named`]): a folder's that it reads is not read again, and none of them is
/// told again as one that nothing reads.
pub fn check_for(paths: &[std::path::PathBuf], named: &[std::path::PathBuf]) -> Checked {
    let same = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let named_files: Vec<std::path::PathBuf> = named.iter().map(|f| same(f)).collect();
    // The folders whose settings were read already, as a settings file named on its own.
    let told: Vec<std::path::PathBuf> = named
        .iter()
        .filter(|f| path_in(dsl::folder_of(f)).is_some_and(|read| same(&read) == same(f)))
        .map(|f| same(dsl::folder_of(f)))
        .collect();
    // Folders named first: a file's folder named too is a folder named.
    let folders = paths
        .iter()
        .filter(|p| p.is_dir())
        .map(|d| (d.as_path(), true))
        .chain(
            paths
                .iter()
                .filter(|p| !p.is_dir())
                .map(|f| (dsl::folder_of(f), false)),
        );
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Checked::default();
    for (dir, is_named) in folders {
        if !seen.insert(same(dir)) {
            continue;
        }
        if !told.contains(&same(dir)) {
            match load(dir) {
                Ok(s) => out.read.push((dir.to_path_buf(), s)),
                Err(e) => out.errors.extend(e),
            }
        }
        let unread = unread_in(dir)
            .into_iter()
            .filter(|e| !named_files.contains(&same(Path::new(&e.file))));
        if is_named {
            out.errors.extend(unread);
        } else {
            out.advice.extend(unread);
        }
    }
    out
}

/// What to say of a settings file given where journeys go (`--journeys journeys/waymark.yaml`):
/// it holds its folder's settings, not a journey, and the folder is what to pass (its settings
/// apply to the journeys run from it); `None` for any other path. A settings file its folder
/// does not read is said to be one too, with [`check_named`]'s word on it.
pub fn given_as_journeys(path: &Path) -> Option<String> {
    given_as_journey(path, |dir, read| {
        format!(
            "pass the folder instead, `--journeys {}`{}",
            dir.display(),
            if read {
                ", which runs its journeys with these settings"
            } else {
                ""
            }
        )
    })
}

/// What to say of a settings file given where a journey file goes (`waymark publish
/// journeys/waymark.yaml`, `--journeys journeys/waymark.yaml`): it holds the settings of its
/// folder, not a journey; then `instead`, given the folder and whether it reads this file
/// ([`path_in`]): what to pass instead. `None` for any other path. A settings file its folder
/// does not read is said to be one too, with [`check_named`]'s word on it.
pub fn given_as_journey(path: &Path, instead: impl Fn(&Path, bool) -> String) -> Option<String> {
    let is_settings = path.is_file()
        && matches!(
            settings_extension(path).as_deref(),
            Some("yaml" | "yml" | "json")
        );
    if !is_settings {
        return None;
    }
    let folder = dsl::folder_of(path);
    let (dir, shown) = (folder.display(), path.display());
    let is_read = path_in(folder).is_some_and(|p| p.file_name() == path.file_name());
    if is_read {
        return Some(format!(
            "{shown} holds the settings of the folder {dir} (its caps and topics), not a journey: {}",
            instead(folder, true)
        ));
    }
    // Its folder does not read it: what it says does not apply, and [`check_named`] says why.
    let why: Vec<String> = check_named(path)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.message)
        .collect();
    Some(format!(
        "{shown} is a settings file of the folder {dir}, not a journey: {}; and {}",
        instead(folder, false),
        why.join("; ")
    ))
}

/// The settings files of a folder that nothing reads: a `waymark.json`, or a `waymark.yml`
/// beside the `waymark.yaml` the settings are read from ([`path_in`]). Each is an error of
/// [`check_named`], saying which file is read and what to do, so that caps or topics written
/// there are not silently without effect.
pub fn unread_in(dir: &Path) -> Vec<FileError> {
    let read = path_in(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut unread: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    settings_extension(p).as_deref(),
                    Some("yaml" | "yml" | "json")
                )
                && read.as_deref() != Some(p.as_path())
        })
        .collect();
    unread.sort();
    unread
        .iter()
        .filter_map(|p| check_named(p).err())
        .flatten()
        .collect()
}

/// Reads and parses one settings file.
fn read(path: &Path) -> Result<Settings, Vec<FileError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
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

/// The topics a folder's settings declare; `None` when they have errors (told on their own).
pub fn topics_of(dir: &Path) -> Option<Topics> {
    load(dir).ok().map(|s| s.topics)
}

/// How a settings value of the wrong shape is written (`caps` as a list, as other tools write
/// them), for the advice.
const EXAMPLES: &[(&str, &str)] = &[
    ("caps", "{push: {max: 3, per: 1d}, sms: {max: 2, per: 7d}}"),
    (
        "topics",
        "{newsletter: {name: Newsletter}, offers: {name: Offers, default: opt_in}}",
    ),
];

/// The file's cap keys, whatever their values: an unknown channel is told with a bad value
/// of another cap, in one reading.
#[derive(Deserialize)]
struct Keys {
    #[serde(default)]
    caps: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Parses settings text; `file` is for messages only.
pub fn parse(file: &str, text: &str) -> Result<Settings, Vec<FileError>> {
    let unknown = unknown_channels(file, text);
    let located = match dsl::parse_located::<Written>(file, text, EXAMPLES, advise) {
        Ok(Some(located)) => located,
        Ok(None) => return Ok(Settings::default()),
        Err(mut errors) => {
            errors.extend(unknown);
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(errors);
        }
    };
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let caps = located
        .value
        .caps
        .iter()
        .filter_map(|(name, cap)| Some((Channel::parse(name)?, *cap)))
        .collect();
    let mut errors = Vec::new();
    for (name, cap) in &located.value.caps {
        if cap.max == 0 {
            errors.push(located.error(
                &format!("caps.{name}.max"),
                format!("`max: 0` would skip every {name} message as `capped`: a cap limits how many go out, it does not switch a channel off; write 1 or more, and to send no {name}, take it out of the journeys' sends, or let each user say no with an opt-out or a subscription topic (`topics:`)"),
            ));
        }
    }
    for (id, topic) in &located.value.topics {
        if !waymark::topic::valid_id(id) {
            errors.push(located.error(
                &format!("topics.{id}"),
                format!("topic id `{id}` must be 1–64 lowercase letters, digits, `_` or `-` (an identify states it as `subscriptions: {{topics: {{newsletter: false}}}}`)"),
            ));
        }
        if topic.name.trim().is_empty() {
            errors.push(located.error(
                &format!("topics.{id}.name"),
                "give the topic a name people will read: the unsubscribe page says it",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Settings {
        caps,
        topics: Topics(located.value.topics),
    })
}

/// An error for each cap named for a channel there is not.
fn unknown_channels(file: &str, text: &str) -> Vec<FileError> {
    let Ok(Some(keys)) = dsl::parse_located::<Keys>(file, text, &[], advise) else {
        return Vec::new();
    };
    let channels: Vec<&str> = Channel::ALL.iter().map(Channel::as_str).collect();
    keys.value
        .caps
        .keys()
        .filter(|name| Channel::parse(name).is_none())
        .map(|name| {
            keys.error(
                &format!("caps.{name}"),
                format!(
                    "unknown channel `{name}`: {}caps are per channel, one of {}",
                    dsl::closest(name, channels.iter().copied())
                        .map(|c| format!("did you mean `{c}`? "))
                        .unwrap_or_default(),
                    channels.join(", ")
                ),
            )
        })
        .collect()
}

fn advise(message: &str) -> String {
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once('`'))
        .map(|(field, _)| field)
        .filter(|field| dsl::is_a_rate_limit(field))
    {
        return format!("unknown field `{field}`: {}", dsl::RATE_LIMIT_ADVICE);
    }
    if message.starts_with("unknown field") {
        return format!("{message} (a settings file holds `caps: {{push: {{max: 3, per: 1d}}}}` and `topics: {{newsletter: {{name: Newsletter}}}}`)");
    }
    message.to_string()
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
    fn topics_with_their_names_and_defaults() {
        let s = parse(
            "waymark.yaml",
            "topics:\n  newsletter: {name: Newsletter}\n  offers:\n    name: Offers\n    default: opt_in\n",
        )
        .expect("valid settings");
        assert_eq!(s.topics.display_name("newsletter"), "Newsletter");
        assert_eq!(
            s.topics.get("offers").map(|t| t.default),
            Some(waymark::topic::TopicDefault::OptIn)
        );
        let errs = parse("w.yaml", "topics:\n  News: {name: \"\"}\n").expect_err("bad topic");
        let told: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            told,
            [(2, "topics.News"), (2, "topics.News.name")],
            "{errs:?}"
        );
        let errs = parse("w.yaml", "topics:\n  news: {name: N, default: optin}\n")
            .expect_err("bad default");
        assert!(
            errs[0].message.contains("did you mean `opt_in`?"),
            "{}",
            errs[0].message
        );
    }

    /// Pinpoint's `MessagesPerSecond` or Braze's rate limiting set how fast messages go out:
    /// told there is no such limit, not sent back to `caps`, a per-user count, as if it were one.
    #[test]
    fn a_rate_limit_is_told_apart_from_a_cap() {
        let errs = parse(
            "w.yaml",
            "rate_limit: {push: 10}
",
        )
        .expect_err("no rate limits");
        assert_eq!((errs[0].line, errs[0].column), (1, 1), "{errs:?}");
        assert!(
            errs[0]
                .message
                .starts_with("unknown field `rate_limit`: Waymark has no delivery rate limit")
                && errs[0]
                    .message
                    .contains("sending quotas of your SES and SNS accounts")
                && errs[0].message.contains("is a frequency cap"),
            "{errs:?}"
        );
    }

    #[test]
    fn empty_file_means_no_caps() {
        assert_eq!(parse("w.yaml", "").expect("ok"), Settings::default());
        assert_eq!(
            parse("w.yaml", "# nothing\n").expect("ok"),
            Settings::default()
        );
    }

    /// A cap of 0 would skip every message of its channel, each with a `capped` detail naming
    /// no send that holds the cap: refused, saying how to send none of that channel.
    #[test]
    fn a_cap_of_zero_is_refused_at_its_max() {
        let errs = parse(
            "w.yaml",
            "caps:\n  push: {max: 3, per: 1d}\n  email: {max: 0, per: 1d}\n",
        )
        .expect_err("max 0");
        let told: Vec<(usize, usize, &str)> = errs
            .iter()
            .map(|e| (e.line, e.column, e.path.as_str()))
            .collect();
        assert_eq!(told, [(3, 11, "caps.email.max")], "{errs:?}");
        assert!(
            errs[0].message.contains("does not switch a channel off")
                && errs[0]
                    .message
                    .contains("take it out of the journeys' sends")
                && errs[0].message.contains("subscription topic"),
            "{errs:?}"
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
        // A misspelt field of a cap gets the nearest name, not silence or a missing `per`.
        let errs =
            parse("w.yaml", "caps:\n  push: {max: 1, pre: 1d}\n").expect_err("misspelt field");
        assert!(
            errs.iter().any(|e| e.line == 2
                && e.path == "caps.push.pre"
                && e.message
                    .contains("unknown field `pre`: did you mean `per`?")),
            "{errs:?}"
        );
        let errs = parse("w.yaml", "caps:\n  push: {max: 1, per: 1d, foo: 1}\n")
            .expect_err("unknown field");
        assert!(
            errs[0].message.contains("unknown field `foo`"),
            "{}",
            errs[0].message
        );
        // Caps written as a list, as other tools write them: shown as a map of channels.
        let errs =
            parse("w.yaml", "caps:\n  - {channel: email, max: 3, per: 1d}\n").expect_err("a list");
        assert_eq!(
            (errs[0].line, errs[0].path.as_str()),
            (1, "caps"),
            "{errs:?}"
        );
        assert_eq!(
            errs[0].message,
            "this is a list, where a map goes: write it like `caps: {push: {max: 3, per: 1d}, sms: {max: 2, per: 7d}}`"
        );
        // An unknown channel is told with another cap's bad value, in the file's order.
        let errs = parse(
            "w.yaml",
            "caps:\n  pushh: {max: 3, per: 1d}\n  sms: {max: 3, per: 1x}\n",
        )
        .expect_err("two problems");
        let told: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(told, [(2, "caps.pushh"), (3, "caps.sms.per")], "{errs:?}");
        assert!(
            errs[0].message.contains("did you mean `push`?"),
            "{}",
            errs[0].message
        );
    }
}
