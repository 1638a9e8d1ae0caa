//! Message templates: MiniJinja with only `profile`, `event`, `trigger`, `waited`, `journey`,
//! `user_id`, `now` and `unsubscribe_url` in scope (and, in a webhook's call, `secrets`, which
//! renders markers, never values). No loader, no file or environment access, bounded work per render.

mod blocks;
mod calls;
mod currency;
mod date;
pub(crate) use date::{digits_time, epoch_number, instant_text, zone_of, zoned_text};
mod direct;
mod habits;
mod number;
mod text;
mod used;

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use foldhash::fast::FixedState;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

pub use direct::Scope;

/// The variables a template may use.
pub const SCOPE: [&str; 8] = [
    "profile",
    "event",
    "trigger",
    "waited",
    "journey",
    "user_id",
    "now",
    "unsubscribe_url",
];

/// The variables of [`SCOPE`] a template outside an email may use: `unsubscribe_url` is an
/// email's link (see `dsl`), so an unknown variable's advice there leaves it out.
pub const SCOPE_OUTSIDE_EMAIL: [&str; 7] = [
    "profile", "event", "trigger", "waited", "journey", "user_id", "now",
];

/// The variables a webhook's `url`, `headers` and `body` may use: [`SCOPE_OUTSIDE_EMAIL`] and
/// `secrets` (see [`crate::secrets`]).
pub const SCOPE_WEBHOOK: [&str; 8] = [
    "profile",
    "event",
    "trigger",
    "waited",
    "journey",
    "user_id",
    "now",
    crate::secrets::ROOT,
];

/// The fields of `journey` in a template's scope (see `Scope`).
pub const JOURNEY_FIELDS: [&str; 4] = ["id", "name", "version", "timezone"];

/// What a render that ran out of [`FUEL`] is told.
const OUT_OF_FUEL: &str = "it takes more work to render than a message may (a loop over very many items, a text repeated very many times, or a macro that calls itself): make its loops and repeats smaller";

/// What a render whose calls nest deeper than [`RECURSION_LIMIT`] allows is told.
const TOO_DEEP: &str = "its macros call one another (or themselves) too deeply for this user's data: a message's macro calls nest at most about 5 deep; loop over the items instead, or nest fewer calls";

/// How deep one render's calls, blocks and loops may nest (MiniJinja's recursion limit, each
/// macro call taking a few levels), so that a render cannot exhaust the stack.
const RECURSION_LIMIT: usize = 32;

/// Upper bound on the work one render may do (MiniJinja fuel), so a template cannot loop forever.
const FUEL: u64 = 50_000;

/// A template problem, with the line inside the template text (1-based) where MiniJinja knows it,
/// and the column in that line (1-based, in characters) where the check knows it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl TemplateError {
    /// A problem at byte `offset` of `source`.
    fn at(source: &str, offset: usize, message: String) -> Self {
        let before = source.get(..offset).unwrap_or(source);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        TemplateError {
            line: Some(before.matches('\n').count() + 1),
            column: Some(before[line_start..].chars().count() + 1),
            message,
        }
    }
}

fn build(escape: AutoEscape) -> Environment<'static> {
    let mut env = Environment::new();
    // A missing value prints nothing, also deeper down (`profile.address.city` for a user with
    // no address; `| default(...)` and `is defined` see it as missing): under MiniJinja's
    // lenient default that stopped the message (`render_error`) at send time.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(format_value);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_auto_escape_callback(move |_| escape.clone());
    env.add_filter("date", date::date);
    env.add_filter("round", number::round);
    env.add_filter("abs", number::abs);
    env.add_filter("format", number::format);
    env.add_filter("truncate", text::truncate);
    env.add_filter("currency", currency::currency);
    // `debug()` prints the whole context into the message: the user's address, phone and
    // every trait, her unsubscribe link. No message needs it, and `waymark validate` names it
    // unknown.
    env.remove_global("debug");
    // A null reaches a template as a missing value (`NullAsMissing`): `is none` still holds for
    // it, as it did when it was MiniJinja's `none`.
    env.add_test("none", |v: &minijinja::Value| {
        v.is_none() || v.is_undefined()
    });
    env
}

/// A JSON value as a template sees it: a null (an event property or trait sent as `null`) is a
/// value the user or the event does not have, at any depth. Read as MiniJinja's `none`, it
/// printed `None` through every filter that takes text (`upper` gave `NONE`) and `~`, and
/// `length` failed; read as missing it prints nothing everywhere, `length` is 0 and
/// `default('x')` stands in for it, as for a trait never sent.
struct NullAsMissing<'a>(&'a serde_json::Value);

impl Serialize for NullAsMissing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value as J;
        match self.0 {
            // Into MiniJinja's serializer a `minijinja::Value` goes as itself (undefined).
            J::Null => minijinja::Value::UNDEFINED.serialize(s),
            J::Array(items) => s.collect_seq(items.iter().map(NullAsMissing)),
            J::Object(map) => s.collect_map(map.iter().map(|(k, v)| (k, NullAsMissing(v)))),
            other => other.serialize(s),
        }
    }
}

/// `json` as a template value, a null in it read as missing ([`NullAsMissing`]).
fn template_value(json: &serde_json::Value) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(NullAsMissing(json)))
}

/// Text the scope may lack (`journey.timezone`, `unsubscribe_url`): missing when absent.
fn text_or_missing(text: Option<&str>) -> minijinja::Value {
    text.map_or(minijinja::Value::UNDEFINED, minijinja::Value::from)
}

/// How a value is printed: as MiniJinja prints it, but a `none` (the scope's nulls are
/// missing values already; one a template makes, as `{{ none }}`) prints nothing rather than
/// `None`.
pub(crate) fn format_value(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() {
        return Ok(());
    }
    minijinja::escape_formatter(out, state, value)
}

/// The environment for checking templates (rendering uses the cache below).
fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| build(AutoEscape::None))
}

/// Template tags that load other templates: a message template is self-contained.
const LOADING_TAGS: [&str; 4] = ["include", "import", "from", "extends"];

/// The first tag in `source` that would load another template, with its line.
fn loading_tag(source: &str) -> Option<(&'static str, usize)> {
    let mut rest = source;
    let mut offset = 0;
    while let Some(i) = rest.find("{%") {
        let after = rest[i + 2..].trim_start_matches(['-', '+']).trim_start();
        let word: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if let Some(tag) = LOADING_TAGS.iter().find(|t| **t == word) {
            return Some((tag, offset + i));
        }
        offset += i + 2;
        rest = &rest[i + 2..];
    }
    None
}

/// Whether `text` holds template syntax (a `{{ }}`, `{% %}` or `{# #}`): a profile update's
/// value is rendered only then, and kept as written otherwise.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// Checks a template's syntax and that it uses only variables in [`SCOPE`].
pub fn check(source: &str) -> Result<(), TemplateError> {
    check_offering(source, &SCOPE)
}

/// [`check`], naming only the variables of `offered` (those of the template's channel) in the
/// advice for an unknown one.
pub fn check_offering(source: &str, offered: &[&str]) -> Result<(), TemplateError> {
    if let Some((tag, at)) = loading_tag(source) {
        return Err(TemplateError::at(
            source,
            at,
            format!(
                "`{{% {tag} %}}` loads another template, and a message template stands alone: write the text here instead"
            ),
        ));
    }
    let tmpl = env().template_from_str(source).map_err(|e| {
        // Another language's habit (`| default: "there"`, `{% assign %}`) is said as such,
        // where it is what MiniJinja could not read.
        if let Some((at, message)) = habits::at_error(source, e.range(), e.line()) {
            return TemplateError::at(source, at, message);
        }
        // A block left open: MiniJinja finds it at the end of the text and names the text's
        // last stretch, so it is told at the tag that opened it.
        if let Some((kind, at)) = open_block(&e, source) {
            return TemplateError::at(source, at, unclosed_block(kind));
        }
        // At the place MiniJinja names where it knows one (a block's `>` folds the
        // template's lines into one: a line alone would not find it in the file).
        match e.range() {
            Some(r) => TemplateError::at(source, r.start, from_minijinja(e).message),
            None => from_minijinja(e),
        }
    })?;
    // MiniJinja looks filters and tests up only when it renders: name them here, the first at
    // its place and the others after it, so that one run of validate names them all.
    // Those named in quotes (`map('uper')`, `select('evn')`) too, where the text has them.
    let mut named: Vec<(usize, used::Kind, String, String)> = Vec::new();
    for used in used::names(source) {
        if let Some(message) = unknown_name(used.kind, used.name, "in template") {
            let at = used.end.saturating_sub(used.name.len());
            named.push((at, used.kind, used.name.to_string(), message));
        }
    }
    named.extend(calls::quoted_unknown(source, env()));
    named.sort_by_key(|(at, ..)| *at);
    let mut unknown_names: Vec<(usize, String, used::Kind, String)> = Vec::new();
    for (at, kind, name, message) in named {
        if !unknown_names
            .iter()
            .any(|(_, _, k, n)| *k == kind && *n == name)
        {
            unknown_names.push((at, message, kind, name));
        }
    }
    if let Some(((at, message, _, _), rest)) = unknown_names.split_first() {
        let others: Vec<String> = rest
            .iter()
            .map(|(_, _, kind, name)| {
                let (what, names) = match kind {
                    used::Kind::Filter => ("filter", calls::FILTERS),
                    used::Kind::Test => ("test", calls::TESTS),
                };
                let guess = crate::dsl::closest(name, names.iter().map(|s| s.name))
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                // By name: a line of the template is not the file's (a `>` block folds them).
                format!("{what} `{name}`{guess}")
            })
            .collect();
        let message = if others.is_empty() {
            message.clone()
        } else {
            format!(
                "{message}; also unknown in this text: {}",
                others.join(", ")
            )
        };
        return Err(TemplateError::at(source, *at, message));
    }
    // A `date` whose fixed format or zone cannot work would fail every send.
    if let Some(e) = date_argument_problem(source) {
        return Err(e);
    }
    // So would a call given what it cannot take (`replace('a')`, `round('a')`), or a part that
    // fails whatever the data (`1/0`).
    if let Some(p) = calls::first_problem(source, env()) {
        return Err(TemplateError::at(source, p.offset, p.message));
    }
    let secrets_offered = offered.contains(&crate::secrets::ROOT);
    let mut unknown: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !SCOPE.contains(&v.as_str()))
        .filter(|v| !(secrets_offered && v == crate::secrets::ROOT))
        // MiniJinja's own functions (`range`, `dict`, `namespace`) are there too.
        .filter(|v| !env().globals().any(|(name, _)| name == v.as_str()))
        .collect();
    // In the order the text names them (by the line naming each, then by name), so the first
    // told what to write is the first a reader meets.
    unknown.sort_by_cached_key(|v| (line_naming(source, v), v.clone()));
    // A macro's call of one defined further down is no unknown variable: said as a macro.
    if let Some(e) = macros_defined_later(source, &mut unknown) {
        return Err(e);
    }
    // `journey` is the journey's own few fields: a misspelt one would print nothing.
    let mut fields: Vec<String> = tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter_map(|v| {
            let field = v.strip_prefix("journey.")?.split('.').next()?.to_string();
            (!JOURNEY_FIELDS.contains(&field.as_str())).then_some(field)
        })
        .collect();
    fields.sort();
    if let Some(field) = fields.first() {
        let guess = crate::dsl::closest(field, JOURNEY_FIELDS.iter().copied())
            .map(|n| format!("did you mean `journey.{n}`? "))
            .unwrap_or_default();
        let message = format!(
            "`journey` has no field `{field}`: {guess}use one of {}",
            JOURNEY_FIELDS.map(|f| format!("`journey.{f}`")).join(", ")
        );
        return Err(naming(source, "journey", Some(field), message));
    }
    // A secret outside a webhook's call: said why, where it is.
    if unknown.iter().any(|v| v == crate::secrets::ROOT) {
        let at = secrets_uses(source).first().copied().unwrap_or(0);
        return Err(TemplateError::at(
            source,
            at,
            crate::secrets::ONLY_IN_WEBHOOKS.to_string(),
        ));
    }
    if secrets_offered {
        if let Some(e) = secrets_problem(source) {
            return Err(e);
        }
    }
    if let Some(first) = unknown.first() {
        let guess = crate::dsl::closest(first, offered.iter().copied())
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        // The others too, so that one run of validate names them all.
        // At most a few more, so that a pasted text of another tool does not fill the screen.
        const MORE: usize = 5;
        let rest = &unknown[1..];
        let others = match rest.len() {
            0 => String::new(),
            n => {
                let mut named: Vec<String> =
                    rest.iter().take(MORE).map(|v| format!("`{v}`")).collect();
                if n > MORE {
                    named.push(format!("and {} more", n - MORE));
                }
                format!("; also unknown in this text: {}", named.join(", "))
            }
        };
        let message = format!(
            "unknown variable `{first}` in template: {guess}use one of {} (e.g. `{{{{ profile.first_name }}}}` or `{{{{ event.total }}}}`){others}",
            offered.join(", ")
        );
        return Err(naming(source, first, None, message));
    }
    Ok(())
}

/// Takes out of `unknown` the names of macros `source` defines at its top level further down
/// than a macro that calls them: MiniJinja looks a name up when the call runs, so a macro may
/// call one defined after it (two macros calling each other, with a base case), as long as
/// the template calls it only once both are defined. A call that would run before (the
/// template calling a macro above its definition, or calling one that calls it) is refused,
/// saying which to define first, as is a call of a macro defined inside a block, where it is
/// not known.
fn macros_defined_later(source: &str, unknown: &mut Vec<String>) -> Option<TemplateError> {
    let all = calls::macro_names(source);
    if !unknown.iter().any(|v| all.contains(v)) {
        return None;
    }
    let top = calls::top_macros(source);
    let inside = |at: usize| top.iter().find(|(_, r)| r.contains(&at)).map(|(n, _)| *n);
    for v in unknown.clone() {
        if !all.contains(&v) {
            continue;
        }
        let Some((_, defined)) = top.iter().find(|(n, _)| *n == v) else {
            let at = variable_uses(source, &v).first().copied().unwrap_or(0);
            return Some(TemplateError::at(
                source,
                at,
                format!(
                    "the macro `{v}` is defined inside a block (an `{{% if %}}`, a loop, another macro), so where it is called here it is known only if that block ran (and never from a loop's or another macro's inside): define `{{% macro {v}(...) %}}` outside any block, before the macro or the line that calls it"
                ),
            ));
        };
        // The macros that may call `v` when called: those whose bodies name it, those whose
        // bodies name one of them, and so on.
        let mut callers: Vec<&str> = vec![v.as_str()];
        let mut i = 0;
        while let Some(name) = callers.get(i).copied() {
            for at in variable_uses(source, name) {
                if let Some(m) = inside(at).filter(|m| !callers.contains(m)) {
                    callers.push(m);
                }
            }
            i += 1;
        }
        // A call outside every macro, above `v`'s definition, runs before `v` is defined.
        let early = callers
            .iter()
            .flat_map(|c| variable_uses(source, c).into_iter().map(move |at| (at, *c)))
            .filter(|(at, _)| *at < defined.start && inside(*at).is_none())
            .min();
        if let Some((at, c)) = early {
            let message = if c == v {
                format!(
                    "the macro `{v}` is called here, above the `{{% macro {v} %}}` that defines it, where it is not known yet: define it before its first call"
                )
            } else {
                format!(
                    "`{c}` is called here and calls the macro `{v}`, which is defined only further down, so that call would fail: define `{v}` before this line, or call `{c}` after `{v}` is defined"
                )
            };
            return Some(TemplateError::at(source, at, message));
        }
        unknown.retain(|u| *u != v);
    }
    None
}

/// The block `source` leaves open (its keyword and where its `{%` is), when that is what
/// MiniJinja's error `e` is: the end of the text reached inside a block.
fn open_block(e: &minijinja::Error, source: &str) -> Option<(&'static str, usize)> {
    (e.kind() == minijinja::ErrorKind::SyntaxError
        && e.detail() == Some("unexpected end of input, expected end of block"))
    .then(|| blocks::unclosed(source))
    .flatten()
}

/// What to say of a block tag `{% kind %}` the template does not close.
fn unclosed_block(kind: &str) -> String {
    format!(
        "this `{{% {kind} %}}` is not closed (the text ends inside it): add `{{% end{kind} %}}` where the part it holds ends"
    )
}

/// The problem `message` where `source`'s tags first read the variable `root` (its `field`, when
/// given: `journey.nmae`), at that character; where no tag can be told to, on the first line
/// naming it.
fn naming(source: &str, root: &str, field: Option<&str>, message: String) -> TemplateError {
    match first_use(source, root, field) {
        Some(at) => TemplateError::at(source, at, message),
        None => TemplateError {
            line: line_naming(
                source,
                &field.map_or_else(|| root.to_string(), |f| format!("{root}.{f}")),
            ),
            column: None,
            message,
        },
    }
}

/// The byte offset where `source`'s tags first read the variable `root` (its `field`, when
/// given and not empty: `event.total`), if a tag can be told to.
fn first_use(source: &str, root: &str, field: Option<&str>) -> Option<usize> {
    let field = field.filter(|f| !f.is_empty());
    variable_uses(source, root).into_iter().find(|&at| {
        field.is_none_or(|f| {
            let rest = source[at + root.len()..].trim_start();
            rest.strip_prefix('.')
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix(f))
                .is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
        })
    })
}

/// The place in `source` (0-based, in characters) where its tags first read the variable
/// `root` (its `field`, when given and not empty), if a tag can be told to: for a problem
/// [`fields_of`] or [`reads`] finds, so that it is told at its character, which its line alone
/// does not find in a `>` block (the block's lines are one line of the template).
pub fn place_of_use(source: &str, root: &str, field: Option<&str>) -> Option<usize> {
    first_use(source, root, field).map(|at| source[..at].chars().count())
}

/// The byte offsets where `source`'s tags read the variable `secrets` (not `profile.secrets`,
/// not in a string or a comment).
fn secrets_uses(source: &str) -> Vec<usize> {
    variable_uses(source, crate::secrets::ROOT)
}

/// The byte offsets where `source`'s tags read the variable `root` (not `profile.<root>`, not
/// in a string or a comment).
fn variable_uses(source: &str, root: &str) -> Vec<usize> {
    let (parts, _) = used::layout(source);
    let bytes = source.as_bytes();
    let ident = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    source
        .match_indices(root)
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = i.checked_sub(1).map(|b| bytes[b]);
            !before.is_some_and(|b| ident(&b) || b == b'.')
                && !bytes.get(i + root.len()).is_some_and(ident)
                && used::part_at(&parts, i) == used::Part::Code
        })
        .collect()
}

/// The block around the byte offset `at` of `source` that captures what it renders and may
/// change it (`filter`, a `set` block, `macro`, `call`), if any: its keyword. `tags` are the
/// template's tags ([`used::layout`]).
fn capturing_block_at(
    source: &str,
    tags: &[std::ops::Range<usize>],
    at: usize,
) -> Option<&'static str> {
    let mut open: Vec<&'static str> = Vec::new();
    for r in tags.iter().filter(|r| r.end <= at) {
        let Some(inner) = source
            .get(r.clone())
            .and_then(|t| t.strip_prefix("{%")?.strip_suffix("%}"))
        else {
            continue;
        };
        let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
        let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner).trim();
        let word = inner.split_whitespace().next().unwrap_or_default();
        match word {
            "filter" => open.push("filter"),
            "macro" => open.push("macro"),
            "call" => open.push("call"),
            // `{% set x = ... %}` sets a value; `{% set x %}` captures a block.
            "set" if !inner.contains('=') => open.push("set"),
            "endfilter" | "endmacro" | "endcall" | "endset" => {
                let kind = &word[3..];
                if let Some(i) = open.iter().rposition(|k| *k == kind) {
                    open.truncate(i);
                }
            }
            _ => {}
        }
    }
    open.last().copied()
}

/// Whether `source` (a webhook's `url`, header or `body`) reads a secret.
pub fn reads_secrets(source: &str) -> bool {
    source.contains(crate::secrets::ROOT) && !secrets_uses(source).is_empty()
}

/// What is wrong with how `source` (a webhook's `url`, header or `body`) reads its secrets, if
/// anything: each is written alone in its tag, `{{ secrets.NAME }}`, with a name
/// [`crate::secrets::is_name`] takes. No filter and no expression: the engine renders a marker,
/// not the value, and the sender encodes the value for where it lands (a filter would encode
/// or change the marker instead).
fn secrets_problem(source: &str) -> Option<TemplateError> {
    let (_, tags) = used::layout(source);
    for at in secrets_uses(source) {
        if let Some(block) = capturing_block_at(source, &tags, at) {
            return Some(TemplateError::at(
                source,
                at,
                format!("a secret is not read inside a `{{% {block} %}}` block: the block would change, drop or repeat the marker the engine renders for it (the sender puts the value in after, encoded for where it lands); write `{{{{ secrets.NAME }}}}` outside it"),
            ));
        }
        let inner = tags
            .iter()
            .find(|r| r.contains(&at))
            .and_then(|r| source.get(r.clone()))
            .and_then(|tag| tag.strip_prefix("{{")?.strip_suffix("}}"))
            .map(|inner| {
                let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
                inner.strip_suffix(['-', '+']).unwrap_or(inner).trim()
            });
        let name = inner.and_then(|i| i.strip_prefix(crate::secrets::ROOT)?.strip_prefix('.'));
        match name {
            Some(name) if crate::secrets::is_name(name) => {}
            Some(name)
                if !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                return Some(TemplateError::at(
                    source,
                    at,
                    format!(
                        "`{name}` is not a secret's name: {}",
                        crate::secrets::NAME_ADVICE
                    ),
                ));
            }
            _ => {
                return Some(TemplateError::at(
                    source,
                    at,
                    "a secret is written alone in its tag, like `{{ secrets.API_KEY }}`, with no filter or expression: the sender puts its value in right before the call, encoded for where it lands (percent-encoded in the URL, escaped inside a JSON body's string)".to_string(),
                ));
            }
        }
    }
    None
}

/// Where a template's text holds JavaScript's `${first_name}`, which compiles and is sent as
/// written: its byte offset, and what to say.
pub(crate) fn placeholder_in_text(source: &str) -> Option<(usize, String)> {
    habits::placeholder_in_text(source)
}

/// Where a template that compiles reads a path in Segment's payload shape
/// (`event.properties.amount`, see [`crate::dsl::segment_shape`]) in one of its expressions (not
/// in its text or a string): its byte offset, and what to say.
pub(crate) fn segment_shape(source: &str) -> Option<(usize, String)> {
    let tmpl = env().template_from_str(source).ok()?;
    let read: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    let (parts, _) = used::layout(source);
    crate::dsl::segment_shape(source, &read, |at| {
        used::part_at(&parts, at) == used::Part::Code
    })
}

/// Where the text that every rendering of `source` prints as written passes `most` characters:
/// the character (0-based) of `source` past the limit, and how many such characters it holds.
/// That text is the text outside every tag and every `{% %}` block (an `if`'s or a loop's text
/// may not print), each stretch without the spaces at its ends (a `-` or a block's tag may trim
/// them): what a message holds at least, whatever the data. `None` within `most`, or for a
/// template that does not compile (`check` reports that).
pub(crate) fn fixed_text_past(source: &str, most: usize) -> Option<(usize, usize)> {
    if is_template(source) && env().template_from_str(source).is_err() {
        return None;
    }
    // The blocks whose text may not print: every block tag ([`blocks::OPENERS`]) but `raw`,
    // whose text prints as written, and `set` only in its block form, with no `=`.
    let opens_block = |word: &str, body: &str| match word {
        "raw" => false,
        "set" => !body.contains('='),
        _ => blocks::OPENERS.contains(&word),
    };
    let (parts, tags) = used::layout(source);
    let mut depth = 0usize;
    let mut count = 0usize;
    let mut past = None;
    for (k, (range, part)) in parts.iter().enumerate() {
        match part {
            used::Part::Code => {
                let Some(tag) = tags.iter().find(|t| t.start == range.start) else {
                    continue;
                };
                let Some(body) = source[tag.clone()]
                    .strip_prefix("{%")
                    .and_then(|b| b.strip_suffix("%}"))
                else {
                    continue;
                };
                let body = body.trim_matches(['-', '+', ' ', '\t', '\n', '\r']);
                let word = body.split_whitespace().next().unwrap_or_default();
                if opens_block(word, body) {
                    depth += 1;
                } else if word.starts_with("end") && word != "endraw" {
                    depth = depth.saturating_sub(1);
                }
            }
            used::Part::Text if depth == 0 => {
                let mut text = &source[range.clone()];
                let mut start = range.start;
                if k > 0 {
                    let trimmed = text.trim_start();
                    start += text.len() - trimmed.len();
                    text = trimmed;
                }
                if k + 1 < parts.len() || text.ends_with('\n') {
                    text = text.trim_end();
                }
                for (i, _) in text.char_indices() {
                    count += 1;
                    if count == most + 1 {
                        past = Some(source[..start + i].chars().count());
                    }
                }
            }
            _ => {}
        }
    }
    past.map(|at| (at, count))
}

/// The first `date` call of `source` whose arguments written as string literals cannot work
/// (`date('%')`, `date(tz='Europe/Pariss')`), or that names a keyword other than `tz` and
/// `locale`; an argument that is an expression (`tz=profile.zone`) is known only when it
/// renders. `source` has compiled.
fn date_argument_problem(source: &str) -> Option<TemplateError> {
    for used in used::names(source) {
        if used.kind != used::Kind::Filter || used.name != "date" {
            continue;
        }
        let Some(arguments) = used::arguments(source, used.end) else {
            continue;
        };
        let mut positional = 0;
        for argument in arguments {
            let fail = |message: String| Some(TemplateError::at(source, argument.at, message));
            // The text MiniJinja reads from the literal, escapes and all.
            let text = argument.literal.and_then(|literal| {
                let value = env().compile_expression(literal).ok()?.eval(()).ok()?;
                value.as_str().map(str::to_string)
            });
            let problem = match argument.keyword {
                Some("tz") => date::argument_problem(None, text.as_deref()),
                // Checked with `currency`'s, at its column (`calls`).
                Some("locale") => None,
                Some(other) => {
                    return fail(format!(
                        "date: takes a format, `tz=` and `locale=`, not `{other}=`: write it like date('%H:%M', tz='Europe/Paris', locale='fr')"
                    ))
                }
                None => {
                    positional += 1;
                    if positional > 1 {
                        return fail(
                            "date: takes one format; give the zone as `tz=`: write it like date('%H:%M', tz='Europe/Paris')".to_string(),
                        );
                    }
                    date::argument_problem(text.as_deref(), None)
                }
            };
            if let Some(message) = problem {
                return fail(message);
            }
        }
    }
    None
}

/// The line of `source` that reads the variable `name` (`unsubscribe_url`), if it reads it.
/// Nothing for a template that does not compile (`check` reports that).
pub fn reads(source: &str, name: &str) -> Option<usize> {
    let tmpl = env().template_from_str(source).ok()?;
    if !tmpl.undeclared_variables(false).contains(name) {
        return None;
    }
    Some(line_naming(source, name).unwrap_or(1))
}

/// The first line of `source` (1-based) that holds `name`, if one does.
fn line_naming(source: &str, name: &str) -> Option<usize> {
    source.lines().position(|l| l.contains(name)).map(|i| i + 1)
}

/// The fields of `event` that `source` reads (`plan` for `{{ event.plan }}`, `items` for a loop
/// over `event.items`; empty text when it reads `event` whole), each with a line of the template
/// that names it. Nothing for a template that does not compile (`check` reports that).
pub fn event_fields(source: &str) -> Vec<(String, usize)> {
    fields_of(source, "event")
}

/// The fields of the variable `root` (`event`, `trigger`, `waited`) that `source` reads, as
/// [`event_fields`] says them for `event`.
pub fn fields_of(source: &str, root: &str) -> Vec<(String, usize)> {
    let Ok(tmpl) = env().template_from_str(source) else {
        return Vec::new();
    };
    let dotted = format!("{root}.");
    let mut fields: Vec<String> = tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter_map(|v| {
            if v == root {
                Some(String::new())
            } else {
                v.strip_prefix(dotted.as_str())
                    .map(|f| f.split('.').next().unwrap_or(f).to_string())
            }
        })
        .collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .map(|f| {
            let written = if f.is_empty() {
                root.to_string()
            } else {
                format!("{root}.{f}")
            };
            let line = line_naming(source, &written).unwrap_or(1);
            (f, line)
        })
        .collect()
}

/// Whether MiniJinja knows `name` as a filter (or a test), asked through its own `is filter`
/// and `is test`.
fn known(kind: used::Kind, name: &str) -> bool {
    let question = match kind {
        used::Kind::Filter => "name is filter",
        used::Kind::Test => "name is test",
    };
    env()
        .compile_expression(question)
        .and_then(|e| e.eval(minijinja::context! { name => name }))
        .map(|v| v.is_true())
        // Should the question itself fail, the render will say what is wrong.
        .unwrap_or(true)
}

/// What to say about a filter or test MiniJinja does not know (`None` when it knows it),
/// `place` saying where it is named (`in template`, `given to \`map\``).
fn unknown_name(kind: used::Kind, name: &str, place: &str) -> Option<String> {
    if known(kind, name) {
        return None;
    }
    // The names `calls` has a signature for are the environment's (a test holds them so).
    let (what, names, page) = match kind {
        used::Kind::Filter => ("filter", calls::FILTERS, "filters"),
        used::Kind::Test => ("test", calls::TESTS, "tests"),
    };
    if let Some(habit) = (kind == used::Kind::Filter)
        .then(|| habits::filter(name))
        .flatten()
    {
        return Some(format!("unknown filter `{name}` {place}: {habit}"));
    }
    let guess = crate::dsl::closest(name, names.iter().map(|s| s.name))
        .map(|n| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    Some(format!(
        "unknown {what} `{name}` {place}: {guess}MiniJinja's {page} are listed at https://docs.rs/minijinja/latest/minijinja/{page}/"
    ))
}

/// How many compiled templates the render cache keeps before it starts over.
const CACHE_LIMIT: usize = 4096;

/// A template source as the render cache knows it.
enum Compiled {
    /// No tag, expression or comment in it: always renders to this text.
    Constant(String),
    /// Compiled in the cache's environment under this (short) name.
    Named(String),
    /// Rendered directly from a [`Scope`]; by MiniJinja under the name when the program
    /// declines, or when the caller has only template values.
    Direct(direct::Program, String),
}

/// A scope to render several templates in: directly where a template allows, through
/// MiniJinja otherwise, with the scope converted into template values at most once.
pub struct Context<'a> {
    scope: Scope<'a>,
    values: OnceLock<minijinja::Value>,
}

impl<'a> Context<'a> {
    pub fn new(scope: Scope<'a>) -> Self {
        Context {
            scope,
            values: OnceLock::new(),
        }
    }

    /// The scope as MiniJinja sees it: `profile` (the traits, plus `user_id`), `event`,
    /// `trigger`, `waited` (missing when no `wait_for` was met), `journey` (`id`, `name`, `version`, `timezone`), `user_id`, `now` and `unsubscribe_url`.
    fn values(&self) -> &minijinja::Value {
        self.values.get_or_init(|| {
            let s = &self.scope;
            let mut profile = s.traits.clone();
            profile
                .entry("user_id".to_string())
                .or_insert_with(|| serde_json::Value::String(s.profile_user_id.to_string()));
            minijinja::context! {
                profile => template_value(&serde_json::Value::Object(profile)),
                event => template_value(s.event),
                trigger => template_value(s.trigger),
                waited => template_value(s.waited),
                journey => minijinja::context! {
                    id => s.journey_id,
                    name => s.journey_name,
                    version => s.journey_version,
                    timezone => text_or_missing(s.journey_timezone),
                },
                user_id => s.user_id,
                now => s.now.to_string(),
                unsubscribe_url => text_or_missing(s.unsubscribe_url),
                // Read by `date` only: no template names it (an unknown variable to validate).
                __language => text_or_missing(s.language),
            }
        })
    }

    /// Renders `source`; `html` turns on HTML escaping of values.
    pub fn render(&self, source: &str, html: bool) -> Result<String, TemplateError> {
        render_cached(source, Given::Scope(self), html)
    }

    /// Renders a webhook's `source` (its `url`, a header, its `body`): each `{{ secrets.NAME }}`
    /// as the secret's marker ([`crate::secrets::marker`]), never its value; with the names of
    /// the secrets it put markers for (in order, repeats kept). In a call that reads a secret
    /// (`call_reads_secrets`, as [`reads_secrets`] says of its fields), a marker-opening
    /// character in the output that this render did not put there came from the user's data,
    /// which must not name a secret for the sender to put in: that is an error, as is a marker
    /// a block changed or dropped (`{% filter upper %}`, `{% set %}`: validate refuses them).
    /// In a call that reads none, the sender puts nothing in, and the character is text.
    pub fn render_webhook(
        &self,
        source: &str,
        call_reads_secrets: bool,
    ) -> Result<(String, Vec<String>), TemplateError> {
        use crate::secrets::{marker, CLOSE, OPEN};
        use std::sync::atomic::Ordering;
        let markers = reads_secrets(source).then(|| SecretMarkers {
            nonce: render_nonce(),
            given: Default::default(),
        });
        let (out, markers) = match markers {
            None => (self.render(source, false)?, None),
            Some(m) => {
                let m = std::sync::Arc::new(m);
                let values = minijinja::context! {
                    secrets => minijinja::Value::from_dyn_object(m.clone()),
                    ..self.values().clone()
                };
                (
                    render_cached(source, Given::Values(&values), false)?,
                    Some(m),
                )
            }
        };
        if !call_reads_secrets && markers.is_none() {
            return Ok((out, Vec::new()));
        }
        let stray = || {
            TemplateError {
            line: None,
            column: None,
            message: format!(
                "a value for this user holds the character U+{:04X}, which marks a secret: data cannot name a secret",
                u32::from(OPEN)
            ),
        }
        };
        let mut names = Vec::new();
        let mut settled = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(OPEN) {
            settled.push_str(&rest[..i]);
            let after = &rest[i + OPEN.len_utf8()..];
            let ours = markers
                .as_ref()
                .and_then(|m| after.strip_prefix(m.nonce.as_str()))
                .and_then(|a| a.strip_prefix(':'))
                .and_then(|a| Some((a, a.find(CLOSE)?)))
                .filter(|(a, end)| crate::secrets::is_name(&a[..*end]));
            let Some((a, end)) = ours else {
                return Err(stray());
            };
            settled.push_str(&marker(&a[..end]));
            names.push(a[..end].to_string());
            rest = &a[end + CLOSE.len_utf8()..];
        }
        settled.push_str(rest);
        // Each secret the template gave is in the output once, unchanged: none dropped, none
        // repeated by a block that captured it.
        let given = markers.map_or(0, |m| m.given.load(Ordering::Relaxed));
        if given != names.len() {
            return Err(TemplateError {
                line: None,
                column: None,
                message: "a secret's marker was changed, dropped or repeated before the output (a `{% filter %}`, `{% set %}`, `{% macro %}` or `{% call %}` block around `{{ secrets.NAME }}`): a secret is written alone in its tag, outside such blocks".into(),
            });
        }
        Ok((settled, names))
    }

    /// The value of a template that is one `{{ expression }}` and nothing else, as JSON, when
    /// it is a number, a truth value, a list or an object: a profile update keeps its type
    /// (`orders: "{{ (profile.orders or 0) + 1 }}"` stays a number a condition can compare).
    /// `Some(Ok(None))` when its value is missing or none (no value to keep); `None` when the
    /// template is more than one expression, or its value is text: those are rendered as text,
    /// as any other template.
    pub fn evaluate(
        &self,
        source: &str,
    ) -> Option<Result<Option<serde_json::Value>, TemplateError>> {
        // Compiled once: what does not compile as one expression is rendered as text.
        let expr = env()
            .compile_expression_owned(sole_expression_text(source)?.to_string())
            .ok()?;
        let value = expr.eval(self.values());
        let value = match value {
            Ok(v) => v,
            Err(e) => return Some(Err(from_minijinja(e))),
        };
        if value.is_undefined() || value.is_none() {
            return Some(Ok(None));
        }
        match serde_json::to_value(&value) {
            // An infinite or not-a-number result is JSON's null: rendered as text instead.
            Ok(serde_json::Value::Null | serde_json::Value::String(_)) | Err(_) => None,
            Ok(typed) => Some(Ok(Some(typed))),
        }
    }
}

/// `secrets` as a webhook's render sees it: `secrets.NAME` is a marker naming the secret and
/// carrying this render's nonce, so that a marker in the user's data is told from the
/// template's own.
/// It counts the markers it gives, which the output must hold as they were.
#[derive(Debug)]
struct SecretMarkers {
    nonce: String,
    given: std::sync::atomic::AtomicUsize,
}

impl minijinja::value::Object for SecretMarkers {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let name = key.as_str()?;
        self.given
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(minijinja::Value::from(format!(
            "{}{}:{name}{}",
            crate::secrets::OPEN,
            self.nonce,
            crate::secrets::CLOSE
        )))
    }
}

/// A value no user's data can guess, for one render's secret markers: the process's random
/// hash keys applied to a count.
fn render_nonce() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let keys = KEYS.get_or_init(std::hash::RandomState::new);
    format!("{:016x}{:016x}", keys.hash_one(n), keys.hash_one(!n))
}

/// What lies between a template's outer `{{ }}` (spaces around them, and MiniJinja's `{{-`/`-}}`,
/// allowed): the template is one expression when MiniJinja reads this as one, so
/// `{{ {'city': event.city} }}` is one (its map closes with `}}` too) and `{{ a }} {{ b }}` or
/// `{{ a }}}` are not.
fn sole_expression_text(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    Some(inner.strip_suffix(['-', '+']).unwrap_or(inner).trim())
}

/// What a render was given to render with.
enum Given<'c, 'a> {
    Values(&'c minijinja::Value),
    Scope(&'c Context<'a>),
}

impl Given<'_, '_> {
    fn values(&self) -> &minijinja::Value {
        match self {
            Given::Values(v) => v,
            Given::Scope(c) => c.values(),
        }
    }
}

fn render_compiled(
    env: &Environment<'static>,
    compiled: &Compiled,
    given: &Given<'_, '_>,
    html: bool,
) -> Result<String, TemplateError> {
    let name = match compiled {
        Compiled::Constant(text) => return Ok(text.clone()),
        Compiled::Named(name) => name,
        Compiled::Direct(program, name) => {
            if let Given::Scope(c) = given {
                if let Ok(out) = program.render(&c.scope, html) {
                    return Ok(out);
                }
            }
            name
        }
    };
    let t = env.get_template(name).map_err(from_minijinja)?;
    t.render(given.values()).map_err(from_minijinja)
}

/// Compiled templates by source text, so that a journey's templates are parsed once per process
/// and each render finds its template with one hash of the source (no copy of it).
struct Cache {
    /// Holds the compiled templates, named `h<n>` (HTML-escaped) or `t<n>`.
    env: Environment<'static>,
    /// By source text: `[text, html]`.
    by_source: [HashMap<Box<str>, Compiled, FixedState>; 2],
    added: usize,
}

fn cache() -> &'static RwLock<Cache> {
    static CACHE: OnceLock<RwLock<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut env = build(AutoEscape::None);
        env.set_auto_escape_callback(|name| {
            if name.starts_with('h') {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        RwLock::new(Cache {
            env,
            by_source: Default::default(),
            added: 0,
        })
    })
}

/// Renders a template with the given context (a null in it read as missing, as a
/// [`Context`]'s). `html` turns on HTML escaping of values.
pub fn render<C: Serialize>(source: &str, ctx: &C, html: bool) -> Result<String, TemplateError> {
    let json = serde_json::to_value(ctx).map_err(|e| TemplateError {
        line: None,
        column: None,
        message: format!("template error: the context is not JSON: {e}"),
    })?;
    render_value(source, &template_value(&json), html)
}

/// Renders with a context already converted (render several templates with one conversion);
/// a `none` in it is MiniJinja's, not missing.
pub fn render_value(
    source: &str,
    ctx: &minijinja::Value,
    html: bool,
) -> Result<String, TemplateError> {
    render_cached(source, Given::Values(ctx), html)
}

fn render_cached(source: &str, given: Given<'_, '_>, html: bool) -> Result<String, TemplateError> {
    let side = usize::from(html);
    {
        let guard = cache().read().unwrap_or_else(|p| p.into_inner());
        if let Some(compiled) = guard.by_source[side].get(source) {
            return render_compiled(&guard.env, compiled, &given, html);
        }
    }
    let mut guard = cache().write().unwrap_or_else(|p| p.into_inner());
    let c = &mut *guard;
    if c.added >= CACHE_LIMIT {
        c.env.clear_templates();
        c.by_source = Default::default();
        c.added = 0;
    }
    let name = format!("{}{}", if html { 'h' } else { 't' }, c.added);
    c.env
        .add_template_owned(name.clone(), source.to_string())
        .map_err(from_minijinja)?;
    c.added += 1;
    // Text with no `{` has no tag, expression or comment: what it renders to (MiniJinja's
    // handling of a trailing newline included) is the same for every context.
    let compiled = if !source.contains('{') {
        let t = c.env.get_template(&name).map_err(from_minijinja)?;
        Compiled::Constant(t.render(given.values()).map_err(from_minijinja)?)
    } else {
        match direct::Program::compile(source) {
            Ok(program) => Compiled::Direct(program, name),
            Err(direct::Declined) => Compiled::Named(name),
        }
    };
    let out = render_compiled(&c.env, &compiled, &given, html);
    c.by_source[side].insert(source.into(), compiled);
    out
}

/// MiniJinja's error as the template's writer reads it: its detail, else what kind it is;
/// never its `Display`, which names the template by the name given it here (`t21`), no name
/// of the writer's.
fn from_minijinja(e: minijinja::Error) -> TemplateError {
    let message = match (e.kind(), e.detail()) {
        (minijinja::ErrorKind::OutOfFuel, _) => OUT_OF_FUEL.to_string(),
        (minijinja::ErrorKind::InvalidOperation, Some("recursion limit exceeded")) => {
            TOO_DEEP.to_string()
        }
        (_, Some(detail)) if !detail.is_empty() => detail.to_string(),
        (kind, _) => kind.to_string(),
    };
    TemplateError {
        line: e.line(),
        column: None,
        message: format!("template error: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A render that runs out of fuel says what to change, and no error names the template by
    /// the name it was given inside (`t0`), which is no name of the writer's.
    #[test]
    fn a_render_out_of_fuel_says_what_to_change_and_no_inner_name() {
        let ctx = json!({"event": {"n": 5}});
        let e =
            render("{{ range(100000) | list | length }}", &ctx, false).expect_err("out of fuel");
        assert_eq!(e.message, format!("template error: {OUT_OF_FUEL}"));
        for source in [
            "{{ range(100000) | list | length }}",
            "{% for i in event.n %}{{ i }}{% endfor %}",
            "{{ event.n / 0 }}",
        ] {
            let e = render(source, &ctx, false).expect_err(source);
            assert!(
                !e.message.contains("(in t") && !e.message.contains("(in h"),
                "{source}: {}",
                e.message
            );
        }
    }

    /// `journey` has four fields; a misspelt one is named, with the nearest, not printed empty.
    #[test]
    fn a_journey_field_that_does_not_exist_is_an_error() {
        assert!(check("{{ journey.id }} {{ journey.name }} v{{ journey.version }}{% if journey.timezone %}!{% endif %}").is_ok());
        let e = check("Hi\n{{ journey.idd }}").expect_err("no such field");
        assert_eq!(e.line, Some(2));
        assert_eq!(
            e.message,
            "`journey` has no field `idd`: did you mean `journey.id`? use one of `journey.id`, `journey.name`, `journey.version`, `journey.timezone`"
        );
    }

    /// Liquid's, Handlebars' and JavaScript's ways are told in MiniJinja's, where they are.
    #[test]
    fn another_languages_habit_is_told_how_it_is_written_here() {
        let e = check("Hi\n{{ profile.first_name | default: \"there\" }}").expect_err("Liquid");
        assert_eq!((e.line, e.column), (Some(2), Some(23)));
        assert_eq!(
            e.message,
            "`| default: \"there\"` gives a filter its argument as Liquid does: write `| default(\"there\")`"
        );
        let e = check("{{ event.items | size }} items").expect_err("size");
        assert_eq!(
            e.message,
            "unknown filter `size` in template: `size` is Liquid's: here it is `length` (`| length`)"
        );
        let e = check("{% assign n = event.items | length %}{{ n }}").expect_err("assign");
        assert!(
            e.message
                .contains("write `{% set n = event.items | length %}`"),
            "{}",
            e.message
        );
        // `elsif` and its kin, at the tag's line and column, not the text's start.
        for tag in ["elsif", "elseif", "else if"] {
            let e = check(&format!(
                "{{% if profile.plan == 'pro' %}}Pro\n  {{% {tag} profile.plan == 'basic' %}}Basic{{% endif %}}"
            ))
            .expect_err(tag);
            assert_eq!(
                (e.line, e.column),
                (Some(2), Some(3)),
                "{tag}: {}",
                e.message
            );
            assert!(
                e.message
                    .ends_with(": write `{% elif profile.plan == 'basic' %}`"),
                "{tag}: {}",
                e.message
            );
        }
        let e = check("Hi {{${first_name}}}").expect_err("JavaScript");
        assert!(
            e.message.contains("`{{ profile.first_name }}`"),
            "{}",
            e.message
        );
        let e = check("{{#if profile.vip}}VIP{{/if}}").expect_err("Handlebars");
        assert!(
            e.message.contains("`{% if profile.vip %}`"),
            "{}",
            e.message
        );
        // Liquid's `| plus: 5` is advised in a form that compiles, not `| plus(5)`.
        for (liquid, advised) in [
            ("{{ event.total | plus: 5 }}", "{{ event.total + 5 }}"),
            (
                "{{ profile.first_name | append: '!' }}",
                "{{ profile.first_name ~ '!' }}",
            ),
        ] {
            let e = check(liquid).expect_err(liquid);
            assert!(
                e.message.contains(&format!("write `{advised}`")),
                "{}",
                e.message
            );
            assert!(check(advised).is_ok(), "{advised}");
        }
        // A template that compiles is never refused for looking like one.
        assert!(
            check("Save {{ '$' }}{ 5 | 6 }: {{ profile.first_name | default('there') }}").is_ok()
        );
    }

    /// A habit elsewhere in a template, in a string or in a raw block never hides what
    /// MiniJinja could not read: its own error is told.
    #[test]
    fn a_habit_away_from_the_error_leaves_minijinjas_own() {
        for source in [
            "{\"text\": \"Deploy {{ '${env}' }}\", \"user\": \"{{ profile.name }\"}",
            "{% raw %}{{#each items}}{% endraw %} {{ profile.name }",
            "Hi ${first_name}, {{ profile.name }",
            "{{ profile.name }\n{{#if profile.vip}}VIP{{/if}}",
        ] {
            let e = check(source).expect_err(source);
            let own = from_minijinja(env().template_from_str(source).expect_err(source));
            assert_eq!(e.message, own.message, "{source}");
            assert!(e.message.starts_with("template error: "), "{}", e.message);
        }
        // The habit the error is in is still told, also on a line of its own.
        let e = check("Hi {{ name }}\n{{#each event.items}}{{ this }}{{/each}}").expect_err("each");
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("`{% for item in event.items %}`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn unknown_filters_and_tests_are_caught_before_any_send() {
        let e =
            check("Hi\n{{ profile.first_name | default('there') | titel }}").expect_err("titel");
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("unknown filter `titel`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("did you mean `title`?"), "{}", e.message);
        let e = check("Hi {{ profle.first_name }}").expect_err("a misspelt variable");
        assert!(
            e.message.contains("did you mean `profile`?"),
            "{}",
            e.message
        );
        let e = check("{% if event.n is odd_number %}x{% endif %}").expect_err("odd_number");
        assert!(
            e.message.contains("unknown test `odd_number`"),
            "{}",
            e.message
        );
        // `false`, `filter` and `test` are tests too.
        for (written, meant) in [("fals", "false"), ("filtr", "filter"), ("tset", "test")] {
            let e = check(&format!("{{% if event.n is {written} %}}x{{% endif %}}"))
                .expect_err(written);
            assert!(
                e.message.contains(&format!("did you mean `{meant}`?")),
                "{}",
                e.message
            );
        }
        let e = check("{% filter shout %}x{% endfilter %}").expect_err("shout");
        assert!(
            e.message.contains("unknown filter `shout`"),
            "{}",
            e.message
        );
        // MiniJinja's functions are no unknown variables; other calls are.
        assert!(check("{% for i in range(3) %}{{ i }}{% endfor %}{{ dict(a=1).a }}").is_ok());
        assert!(check("{{ money(event.total) }}").is_err());
        // Nor `debug()`, which would print every trait into the message.
        assert!(check("{{ debug() }}").is_err());
        // Filters other engines have and this one does not (Waymark adds `date`).
        assert!(check("{{ now | datetimeformat }}").is_err());
        assert!(check("{{ event.total | money }}").is_err());
        assert!(check("{{ now | date('%d %B') }}").is_ok());
        assert!(check(
            "{{ event.items | map(attribute='name') | join(', ') | upper }} {% if event.n is not divisibleby(3) %}{% endif %}"
        )
        .is_ok());
    }

    /// Every unknown filter and test of a text is named in one error: the first at its place,
    /// the others after it (each once), so that one run of validate names them all.
    #[test]
    fn every_unknown_filter_of_a_text_is_named() {
        let e = check("{{ profile.name | titel }}\n{{ event.x | uper }} {{ event.y | uper }}{% if event.n is od %}{% endif %}")
            .expect_err("unknown filters");
        assert_eq!((e.line, e.column), (Some(1), Some(19)), "{}", e.message);
        assert!(
            e.message
                .starts_with("unknown filter `titel` in template: did you mean `title`?"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with("; also unknown in this text: filter `uper` (did you mean `upper`?), test `od` (did you mean `odd`?)"),
            "{}",
            e.message
        );
        // One unknown name, however often used: no list.
        let e = check("{{ event.x | uper }} {{ event.y | uper }}").expect_err("uper");
        assert!(!e.message.contains("also unknown"), "{}", e.message);
        // Those named in quotes too, in the order the text has them, with the others.
        let e = check("{{ event.xs | map('uper') }} {{ event.ys | map('titel') }}")
            .expect_err("quoted");
        assert_eq!((e.line, e.column), (Some(1), Some(19)), "{}", e.message);
        assert!(
            e.message
                .starts_with("unknown filter `uper` given to `map`: did you mean `upper`?"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .ends_with("; also unknown in this text: filter `titel` (did you mean `title`?)"),
            "{}",
            e.message
        );
        let e = check("{{ event.x | titel }} {{ event.ys | map('uper') | select('evn') }} {{ event.zs | map('uper') }}")
            .expect_err("both");
        assert!(
            e.message.starts_with("unknown filter `titel` in template")
                && e.message.ends_with("; also unknown in this text: filter `uper` (did you mean `upper`?), test `evn` (did you mean `even`?)"),
            "{}",
            e.message
        );
    }

    /// A filter `map` applies, or a test `select`, `reject`, `selectattr` or `rejectattr`
    /// applies, named in quotes, is checked as one after `|` or `is` is: MiniJinja looks it up
    /// only when it renders, so an unknown one would skip every user as a render error.
    #[test]
    fn filters_and_tests_named_in_quotes_are_caught_before_any_send() {
        for (source, unknown, meant, line, column) in [
            (
                "Items:\n{{ event.items | map('uper') | join(', ') }}",
                "unknown filter `uper` given to `map`",
                Some("upper"),
                2,
                22,
            ),
            (
                "{{ event.items | selectattr('stock', 'greater', 0) | list }}",
                "unknown test `greater` given to `selectattr`",
                None,
                1,
                38,
            ),
            (
                "{{ event.items | rejectattr('stock', 'nonee') | list }}",
                "unknown test `nonee` given to `rejectattr`",
                Some("none"),
                1,
                38,
            ),
            (
                "{{ event.n | select('evn') | list }}",
                "unknown test `evn` given to `select`",
                Some("even"),
                1,
                21,
            ),
            (
                "{{ event.n | reject('defind') | list }}",
                "unknown test `defind` given to `reject`",
                Some("defined"),
                1,
                21,
            ),
        ] {
            let (l, c, message) = refused(source);
            assert_eq!((l, c), (Some(line), Some(column)), "{source}: {message}");
            assert!(message.contains(unknown), "{source}: {message}");
            if let Some(meant) = meant {
                assert!(
                    message.contains(&format!("did you mean `{meant}`?")),
                    "{source}: {message}"
                );
            }
            assert!(message.contains("/minijinja/"), "{source}: {message}");
        }
        // The forms MiniJinja takes still pass: an attribute, a known filter or test, no test.
        for source in [
            "{{ event.items | map(attribute='x') | join(', ') }}",
            "{{ event.items | map(attribute='x', default='upper') | join(', ') }}",
            "{{ event.items | map('upper') | join(', ') }}",
            "{{ event.items | map('truncate', 10) | join(', ') }}",
            "{{ event.items | selectattr('stock') | list }}",
            "{{ event.items | selectattr('stock', 'gt', 0) | list }}",
            "{{ event.items | rejectattr('stock', 'none') | list }}",
            "{{ event.items | select('odd') | list }} {{ event.items | reject | list }}",
            "{{ event.items | select | list }} {{ event.items | select(event.test) | list }}",
        ] {
            assert!(check(source).is_ok(), "{source}: {:?}", check(source));
        }
    }

    /// What `check` says of `source`: its line, column and message.
    fn refused(source: &str) -> (Option<usize>, Option<usize>, String) {
        let e = check(source).expect_err(source);
        (e.line, e.column, e.message)
    }

    #[test]
    fn a_filter_given_too_few_arguments_is_refused() {
        let (line, column, message) = refused("Hi\n  {{ event.code | replace('-') }}");
        assert_eq!((line, column), (Some(2), Some(19)));
        assert_eq!(
            message,
            "the filter `replace` takes two or three arguments: write it like replace('old', 'new')"
        );
        let (_, _, message) = refused("{{ event.items | batch }}");
        assert!(message.contains("takes one or two arguments"), "{message}");
    }

    /// `currency` given what cannot be money in any message: a code or a locale that is no
    /// text, a code no currency has (with the nearest), a locale that is no tag; refused at the
    /// argument's line and column. A path is known only when it renders.
    #[test]
    fn a_currency_that_cannot_be_is_refused() {
        for (source, at, said) in [
            (
                "Total:\n  {{ event.total | currency(5) }}",
                (2, 20),
                "the filter `currency`: its `code` is text in quotes, not `5`: write it like currency('EUR')",
            ),
            (
                "{{ event.total | currency('EURO') }}",
                (1, 27),
                "currency: 'EURO' is not an ISO 4217 currency code: did you mean 'EUR'? write one like currency('EUR'), or currency(event.currency) to take it from the event",
            ),
            (
                "{{ event.total | currency(code='usdd') }}",
                (1, 32),
                "currency: 'usdd' is not an ISO 4217 currency code: did you mean 'USD'?",
            ),
            (
                "{{ event.total | currency('EUR', locale='German') }}",
                (1, 41),
                "currency: 'German' is not a locale tag: write one like locale='de-DE'",
            ),
            (
                "{{ event.total | currency }}",
                (1, 18),
                "the filter `currency` takes one argument: write it like currency('EUR')",
            ),
            (
                "{{ event.total | currency('EUR', 'de') }}",
                (1, 18),
                "the filter `currency` takes one argument",
            ),
            (
                "{{ event.total | currency('EUR', lang='de') }}",
                (1, 18),
                "the filter `currency` takes no `lang=` (it takes `code=`, `locale=`)",
            ),
        ] {
            let (line, column, message) = refused(source);
            assert_eq!((line, column), (Some(at.0), Some(at.1)), "{source}");
            assert!(message.starts_with(said), "{source}: {message}");
        }
        let (_, _, message) = refused("{{ event.total | currenc('EUR') }}");
        assert!(message.contains("did you mean `currency`?"), "{message}");
        for fine in [
            "{{ event.total | currency('EUR') }}",
            "{{ event.total | currency('eur', locale='pt_BR') }}",
            "{{ event.total | currency(code=event.currency, locale=profile.locale) }}",
            "{{ event.total | currency(event.currency) }}",
            // Covered or not, a tag is a tag (Welsh is printed as English is).
            "{{ event.total | currency('GBP', locale='cy-GB') }}",
            "{{ event.total | currency('CNY', locale='zh-Hant-TW') }}",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }

    /// `currency('')` writes the amount alone, as a missing `event.currency` does: validate
    /// takes it, as rendering does, rather than refusing a template that renders.
    #[test]
    fn an_empty_currency_code_is_taken_as_rendering_takes_it() {
        let ctx = serde_json::json!({"event": {"total": 1234.5}, "profile": {"locale": "de"}});
        for source in [
            "{{ event.total | currency('') }}",
            "{{ event.total | currency(' ') }}",
            "{{ event.total | currency(code='') }}",
        ] {
            assert_eq!(check(source), Ok(()), "{source}");
            let got = render(source, &ctx, false).map_err(|e| e.message);
            assert_eq!(got.as_deref(), Ok("1.234,50"), "{source}");
        }
    }

    /// The README's Stripe example: amounts in the minor unit, divided by 100, pass validate
    /// and print as money.
    #[test]
    fn a_stripe_amount_divided_by_100_prints_as_money() {
        let source = "{{ (event.amount / 100) | currency(event.currency) }}";
        assert_eq!(check(source), Ok(()));
        let ctx = serde_json::json!({"event": {"amount": 8990, "currency": "eur"}, "profile": {}});
        let got = render(source, &ctx, false).map_err(|e| e.message);
        assert_eq!(got.as_deref(), Ok("€89.90"));
    }

    #[test]
    fn a_filter_given_too_many_arguments_is_refused() {
        let (_, _, message) = refused("{{ profile.name | upper('x') }}");
        assert_eq!(
            message,
            "the filter `upper` takes no arguments: write it like upper"
        );
        let (_, _, message) = refused("{{ now | date('%d', 'Europe/Paris') }}");
        assert!(message.contains("tz="), "{message}");
    }

    #[test]
    fn a_literal_argument_of_the_wrong_kind_is_refused() {
        let (line, column, message) = refused("{{ event.total | round('a') }}");
        assert_eq!((line, column), (Some(1), Some(18)));
        assert_eq!(
            message,
            "the filter `round`: its `precision` is a whole number, not `'a'`: write it like round(2)"
        );
        let (_, _, message) = refused("{{ event.at | date(5) }}");
        assert!(
            message.contains("its `format` is text in quotes, not `5`"),
            "{message}"
        );
        let (_, _, message) = refused("{{ event.name | split(',', 'all') }}");
        assert!(
            message.contains("`maxsplits` is a whole number"),
            "{message}"
        );
        let (_, _, message) = refused("{{ event.items | sort(reverse='yes') }}");
        assert!(message.contains("`reverse=` is true or false"), "{message}");
        // A length is 0 or more.
        let (_, _, message) = refused("{{ event.name | truncate(-5) }}");
        assert!(
            message.contains("`length` is a whole number, 0 or more, not `-5`"),
            "{message}"
        );
        let (_, _, message) = refused("{{ event.name | truncate(5, leeway=-1) }}");
        assert!(
            message.contains("`leeway=` is a whole number, 0 or more"),
            "{message}"
        );
    }

    /// A literal MiniJinja takes by its kind and refuses by its value, whatever the data:
    /// `round`'s method is `common`, `ceil` or `floor`; `batch` and `slice` make at least one.
    #[test]
    fn a_literal_argument_of_the_right_kind_and_a_wrong_value_is_refused() {
        let (line, column, message) = refused("{{ event.total | round(2, 'up') }}");
        assert_eq!((line, column), (Some(1), Some(18)));
        assert_eq!(
            message,
            "the filter `round`: its `method` is 'common', 'ceil' (up) or 'floor' (down), not `'up'`: write it like round(2)"
        );
        let (_, _, message) = refused("{{ event.total | round(method='nearest') }}");
        assert!(
            message
                .contains("`method=` is 'common', 'ceil' (up) or 'floor' (down), not `'nearest'`"),
            "{message}"
        );
        for (source, count) in [
            ("{{ event.items | batch(0) | list }}", "0"),
            ("{{ event.items | slice(0) | list }}", "0"),
            ("{{ event.items | batch(-1) | list }}", "-1"),
        ] {
            let (_, _, message) = refused(source);
            assert!(
                message.contains(&format!(
                    "its `count` is a whole number, 1 or more, not `{count}`"
                )),
                "{source}: {message}"
            );
        }
        // `false` is 0 to MiniJinja.
        let (_, _, message) = refused("{{ event.items | slice(false) | list }}");
        assert!(message.contains("a whole number, 1 or more"), "{message}");
        // Each refused form fails every render, whatever the data.
        let ctx = serde_json::json!({"event": {"total": 1.5, "items": [1, 2, 3]}});
        for source in [
            "{{ event.total | round(2, 'up') }}",
            "{{ event.total | round(method='nearest') }}",
            "{{ event.items | batch(0) | list }}",
            "{{ event.items | slice(0) | list }}",
            "{{ event.items | batch(-1) | list }}",
            "{{ event.items | slice(false) | list }}",
        ] {
            assert!(render(source, &ctx, false).is_err(), "{source}");
        }
        // The values MiniJinja takes still pass, and render.
        for source in [
            "{{ event.total | round(2, 'ceil') }}",
            "{{ event.total | round(method='floor') }}",
            "{{ event.total | round(0, 'common') }}",
            "{{ event.total | round(2, profile.method) }}",
            "{{ event.items | batch(1) | list }} {{ event.items | slice(3, 0) | list }}",
            "{{ event.items | batch(event.n or 2) | list }}",
        ] {
            assert_eq!(check(source), Ok(()), "{source}");
        }
        assert_eq!(
            render("{{ event.total | round(0, 'ceil') }}", &ctx, false).map_err(|e| e.message),
            Ok("2.0".to_string())
        );
    }

    #[test]
    fn an_unknown_keyword_is_refused() {
        let (_, _, message) = refused("{{ event.total | round(precison=2) }}");
        assert_eq!(
            message,
            "the filter `round` takes no `precison=` (it takes `precision=`, `method=`): write it like round(2)"
        );
        // A filter that takes no keywords gets them as one more argument, a map.
        let (_, _, message) = refused("{{ event.name | split(sep=',') }}");
        assert_eq!(
            message,
            "the filter `split` takes no `sep=`: write it like split(',')"
        );
    }

    #[test]
    fn a_test_or_function_given_the_wrong_arguments_is_refused() {
        let (_, _, message) = refused("{% if event.n is divisibleby %}x{% endif %}");
        assert_eq!(
            message,
            "the test `divisibleby` takes one argument: write it like is divisibleby(3)"
        );
        let (_, _, message) = refused("{% for i in range('a') %}{{ i }}{% endfor %}");
        assert!(
            message.starts_with("`range()`: its `start` is a whole number, not `'a'`"),
            "{message}"
        );
        let (_, _, message) = refused("{% for i in range() %}{% endfor %}");
        assert!(
            message
                .contains("takes one to three arguments: write it like range(3) or range(1, 10)"),
            "{message}"
        );
    }

    /// Work no render can finish, whatever the data: a `range()` over MiniJinja's limit, fixed
    /// loops going round more than the fuel allows, a macro that calls itself whatever it is
    /// given. Each is refused where it is written, and each does fail to render.
    #[test]
    fn work_no_message_can_finish_is_refused() {
        let ctx = json!({"event": {"n": 3, "items": [1, 2]}});
        for (source, at, says) in [
            (
                "Hi\n{% for i in range(100000000) %}{{ i }}{% endfor %}",
                (2, 13),
                "`range(100000000)` fails whatever the data (a `range()` holds at most 100000 numbers)",
            ),
            (
                "{% for i in range(60000) %}.{% endfor %}",
                (1, 13),
                "this loop goes round 60000 times, more work than a message may take (50000 rounds at most",
            ),
            (
                "{% for i in range(1000) %}{% with x = i %}{% for j in [1, 2, 3] %}{% for k in range(1, 40) %}{{ k }}{% endfor %}{% endfor %}{% endwith %}{% endfor %}",
                (1, 79),
                "this loop goes round 117000 times (39 times for each of the 3000 rounds of the loops around it)",
            ),
            (
                "{% macro f(n) %}{{ n }}{{ f(n - 1) }}{% endmacro %}{{ f(event.n) }}",
                (1, 27),
                "the macro `f` calls itself here whatever it is given, so it never ends: it would stop every message that calls it; call it again only under an `{% if %}` that stops",
            ),
            (
                "{% macro f() %}{% if f() %}x{% endif %}{% endmacro %}{{ f() }}",
                (1, 22),
                "the macro `f` calls itself here",
            ),
            // Under an `{% if %}` that always holds, or in the `else` of one that never does.
            (
                "{% macro f(n) %}{% if true %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(event.n) }}",
                (1, 40),
                "the macro `f` calls itself here whatever it is given",
            ),
            (
                "{% macro f(n) %}{% if 1 > 2 %}.{% else %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(event.n) }}",
                (1, 45),
                "the macro `f` calls itself here whatever it is given",
            ),
            // Through another macro: `a` calls `b`, which calls `a`.
            (
                "{% macro a(n) %}{{ n }}{{ b(n) }}{% endmacro %}\n{% macro b(n) %}{{ a(n - 1) }}{% endmacro %}{{ a(event.n) }}",
                (1, 27),
                "the macro `a` calls `b` here whatever it is given, and they call each other so in turn (`a` calls `b` calls `a`), so none of them ever ends",
            ),
            (
                "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{% if true %}{{ c() }}{% endif %}{% endmacro %}{% macro c() %}{{ a() }}{% endmacro %}{{ a() }}",
                (1, 19),
                "the macro `a` calls `b` here whatever it is given, and they call each other so in turn (`a` calls `b` calls `c` calls `a`)",
            ),
        ] {
            let (line, column, message) = refused(source);
            assert_eq!((line, column), (Some(at.0), Some(at.1)), "{source}: {message}");
            assert!(message.starts_with(says), "{source}: {message}");
            assert!(render(source, &ctx, false).is_err(), "{source} renders");
        }
        // What may end, or runs as data decides: not refused.
        for fine in [
            "{% for i in range(50000) %}{% endfor %}",
            "{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
            // The inner loop runs for one round of the outer only.
            "{% for i in range(1000) %}{% if i == 0 %}{% for j in range(1000) %}{% endfor %}{% endif %}{% endfor %}",
            "{% for i in range(1000) %}{% for x in event.items %}{% for j in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
            "{% for i in range(event.n) %}{{ i }}{% endfor %}",
            "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(event.n) }}",
            "{% macro f(n) %}{{ n > 0 and f(n - 1) }}{{ f(n - 1) if n > 0 }}{% endmacro %}{{ f(3) }}",
            // An `{% if %}` that never holds, or whose `else` never runs.
            "{% macro f(n) %}{% if false %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
            "{% macro f(n) %}{% if true %}.{% else %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
            // One calling another that ends.
            "{% macro b(n) %}{{ n }}{% endmacro %}{% macro a(n) %}{{ b(n) }}{{ b(n) }}{% endmacro %}{{ a(3) }}",
            "{% for i in range(3) %}{{ range(5) | list | length }}{% endfor %}",
        ] {
            assert!(check(fine).is_ok(), "{fine}: {:?}", check(fine));
        }
        // Each other, with a base case (`a` calls `b` only while `n` is above 0): no ring is
        // said of it, and it renders.
        let based = "{% macro a(n) %}{% if n > 0 %}{{ b(n) }}{% endif %}{% endmacro %}{% macro b(n) %}{{ n }}{{ a(n - 1) }}{% endmacro %}{{ a(event.n) }}";
        assert_eq!(check(based), Ok(()));
        let two = json!({"event": {"n": 2}});
        assert_eq!(render(based, &two, false).as_deref(), Ok("21"));
        // Deeper than a render may nest calls: said in the writer's words.
        let e = render(based, &ctx, false).expect_err("too deep");
        assert_eq!(e.message, format!("template error: {TOO_DEEP}"));
        // MiniJinja's own limit, as `calls` says it.
        assert!(check("{{ range(100000) | length }}").is_ok());
        assert!(check("{{ range(100001) | length }}").is_err());
    }

    /// A macro may call one defined further down (MiniJinja looks the name up when the call
    /// runs), so two macros may call each other with a base case: validate takes it, and it
    /// renders. A call that would run before the macro it reaches is defined is refused,
    /// naming the macro and saying to define it first, not as an unknown variable; so is a
    /// macro defined inside a block and called outside it.
    #[test]
    fn a_macro_may_call_one_defined_further_down() {
        let ctx = json!({"event": {"n": 3}});
        let even_odd = "{% macro even(n) %}{% if n == 0 %}even{% else %}{{ odd(n - 1) }}{% endif %}{% endmacro %}\n{% macro odd(n) %}{% if n == 0 %}odd{% else %}{{ even(n - 1) }}{% endif %}{% endmacro %}\n{{ even(event.n) }} {{ odd(3) }}";
        let later =
            "{% macro a() %}[{{ b() }}]{% endmacro %}{% macro b() %}x{% endmacro %}{{ a() }}";
        for (source, renders) in [(even_odd, "\n\nodd even"), (later, "[x]")] {
            assert_eq!(check(source), Ok(()), "{source}");
            assert_eq!(
                render(source, &ctx, false).as_deref(),
                Ok(renders),
                "{source}"
            );
        }
        for (source, at, says) in [
            (
                "{% macro a() %}{{ b() }}{% endmacro %}\n{{ a() }}\n{% macro b() %}x{% endmacro %}",
                (2, 4),
                "`a` is called here and calls the macro `b`, which is defined only further down, so that call would fail: define `b` before this line, or call `a` after `b` is defined",
            ),
            (
                "Hi {{ b() }}\n{% macro b() %}x{% endmacro %}",
                (1, 7),
                "the macro `b` is called here, above the `{% macro b %}` that defines it, where it is not known yet: define it before its first call",
            ),
            (
                "{% macro a() %}{{ b() }}{% endmacro %}{% for i in [1] %}{% macro b() %}x{% endmacro %}{% endfor %}{{ a() }}",
                (1, 19),
                "the macro `b` is defined inside a block (an `{% if %}`, a loop, another macro)",
            ),
        ] {
            let (line, column, message) = refused(source);
            assert_eq!((line, column), (Some(at.0), Some(at.1)), "{source}: {message}");
            assert!(message.starts_with(says), "{source}: {message}");
            assert!(!message.contains("unknown variable"), "{source}: {message}");
            assert!(render(source, &ctx, false).is_err(), "{source} renders");
        }
    }

    #[test]
    fn a_part_that_fails_whatever_the_data_is_refused() {
        let (line, column, message) = refused("Total\n{{ 1/0 }}");
        assert_eq!((line, column), (Some(2), Some(4)));
        assert!(
            message.starts_with("`1/0` fails whatever the data ("),
            "{message}"
        );
        // Inside a larger expression too, and through a filter.
        let (_, column, message) = refused("{{ event.code ~ (1 // 0) }}");
        assert_eq!(column, Some(18), "{message}");
        let (_, _, message) = refused("{{ 'soon' | round }}");
        assert!(message.contains("`'soon' | round`"), "{message}");
        // More work than a render may do, said in the writer's words, not MiniJinja's
        // "engine ran out of fuel"; and at send time when the data makes it so.
        let (line, column, message) = refused("Hi\n{% set s = 'x' * 100000000 %}{{ s }}");
        assert_eq!((line, column), (Some(2), Some(12)), "{message}");
        assert_eq!(
            message,
            "`'x' * 100000000` is more work than a message may take to render (a repeat or a list too large): it would stop every message; make it smaller"
        );
        let e = render(
            "{{ 'x' * event.n }}",
            &json!({"event": {"n": 100_000_000}}),
            false,
        )
        .expect_err("too much work");
        assert_eq!(e.message, format!("template error: {OUT_OF_FUEL}"));
        assert!(!e.message.contains("fuel"), "{}", e.message);
    }

    /// `now()` is a condition's; in a template `now` is text, and calling it failed every send.
    #[test]
    fn now_called_as_a_function_is_refused() {
        let (line, column, message) = refused("Sent\n  at {{ now() }}");
        assert_eq!((line, column), (Some(2), Some(9)));
        assert_eq!(
            message,
            "`now` is a value, not a function (`now()` is for conditions): write `{{ now }}`, or `{{ now | date('%H:%M') }}` to format it"
        );
        let (_, column, _) = refused("{{ now() | date('%H') }}");
        assert_eq!(column, Some(4));
        let (_, _, message) = refused("{{ user_id() }}");
        assert_eq!(
            message,
            "`user_id` is a value, not a function: write `{{ user_id }}`, without `()`"
        );
    }

    /// A Python method on a value (MiniJinja has none without pycompat) is refused, saying the
    /// filter or test that does its work.
    #[test]
    fn a_method_on_a_value_is_refused_with_the_filter_to_use() {
        for (source, method, write) in [
            (
                "{{ profile.name.upper() }}",
                "upper",
                "`{{ profile.name | upper }}`",
            ),
            (
                "{{ profile.name.lower() }}",
                "lower",
                "`{{ profile.name | lower }}`",
            ),
            (
                "{{ profile.name.title() }}",
                "title",
                "`{{ profile.name | title }}`",
            ),
            (
                "{{ profile.name.strip() }}",
                "strip",
                "`{{ profile.name | trim }}`",
            ),
            (
                "{{ event.code.replace('-', '') }}",
                "replace",
                "`{{ event.code | replace('-', '') }}`",
            ),
            (
                "{{ event.tags.split(',') }}",
                "split",
                "`{{ event.tags | split(',') }}`",
            ),
            (
                "{{ ', '.join(event.items) }}",
                "join",
                "`{{ event.items | join(', ') }}`",
            ),
            (
                "{{ event.items.items() }}",
                "items",
                "`{{ event.items | items }}`",
            ),
            (
                "{{ now.strftime('%H:%M') }}",
                "strftime",
                "`{{ now | date('%H:%M') }}`",
            ),
            (
                "{% if profile.email.endswith('.fr') %}x{% endif %}",
                "endswith",
                "`profile.email is endingwith('.fr')`",
            ),
            (
                "{% if profile.name.startswith('A') %}x{% endif %}",
                "startswith",
                "`profile.name is startingwith('A')`",
            ),
            ("{{ 'a'.upper() }}", "upper", "`{{ 'a' | upper }}`"),
        ] {
            let (line, column, message) = refused(source);
            // At the method's name.
            let at = source.find(&format!(".{method}(")).map(|i| i + 2);
            assert_eq!((line, column), (Some(1), at), "{source}: {message}");
            assert!(message.contains("has no method"), "{source}: {message}");
            assert!(
                message.ends_with(&format!("write {write}")),
                "{source}: {message}"
            );
        }
        let (_, _, message) = refused("{{ profile.prefs.keys() }}");
        assert!(
            message.contains("`{% for key in profile.prefs %}`"),
            "{message}"
        );
        let (_, _, message) = refused("{{ profile.prefs.values() }}");
        assert!(
            message.contains("`{% for key, value in profile.prefs | items %}`"),
            "{message}"
        );
        let (_, _, message) = refused("{{ profile.prefs.get('lang') }}");
        assert!(message.contains("`profile.prefs['lang']`"), "{message}");
    }

    /// Any other call of a value (a path of the scope, a literal) fails whatever the data.
    #[test]
    fn calling_a_value_is_refused() {
        let (line, column, message) = refused("{{ journey.id() }}");
        assert_eq!((line, column), (Some(1), Some(12)));
        assert_eq!(
            message,
            "`journey.id` is not callable (a value has no methods here): to read it, write `journey.id` without `()`; to change it, use a filter (https://docs.rs/minijinja/latest/minijinja/filters/)"
        );
        let (_, _, message) = refused("{{ profile.name.isdigit() }}");
        assert!(
            message.starts_with("`profile.name.isdigit` is not callable"),
            "{message}"
        );
        let (_, column, message) = refused("{{ profile['name']() }}");
        assert_eq!(column, Some(4), "{message}");
        assert!(
            message.starts_with("`profile['name']` is not callable"),
            "{message}"
        );
        let (_, _, message) = refused("{{ (profile.name | upper).strip() }}");
        assert!(
            message.ends_with("write `{{ (profile.name | upper) | trim }}`"),
            "{message}"
        );
    }

    /// Every call refused above fails at send time whatever the user's data: none is refused
    /// that could work.
    #[test]
    fn the_calls_refused_on_values_fail_for_every_user() {
        let calls = [
            "{{ now() }}",
            "{{ user_id() }}",
            "{{ journey.id() }}",
            "{{ journey() }}",
            "{{ profile.name.upper() }}",
            "{{ profile.name.strip() }}",
            "{{ profile.name.replace('a', 'b') }}",
            "{{ profile.name.split(',') }}",
            "{{ ', '.join(profile.name) }}",
            "{{ profile.name.items() }}",
            "{{ profile.name.keys() }}",
            "{{ profile.name.values() }}",
            "{{ profile.name.get('a') }}",
            "{{ profile.name.startswith('a') }}",
            "{{ now.strftime('%H') }}",
            "{{ profile.name.isdigit() }}",
            "{{ profile['name']() }}",
            "{{ profile.name() }}",
            "{{ (profile.name | upper).strip() }}",
            "{{ 'a'.upper() }}",
        ];
        let names = [
            json!("Ann"),
            json!(3),
            json!(null),
            json!(["a"]),
            json!({"a": 1, "upper": "x", "keys": "x", "name": "x"}),
        ];
        for call in calls {
            assert!(check(call).is_err(), "{call} is not refused");
            for name in &names {
                let context = json!({
                    "profile": {"name": name},
                    "user_id": "u1",
                    "now": "2026-12-24T18:00:00Z",
                    "journey": {"id": "j", "name": "J", "version": 1},
                });
                assert!(
                    render(call, &context, false).is_err(),
                    "{call} renders for the name {name}"
                );
            }
        }
    }

    /// A constant part of types that cannot go together fails every send.
    #[test]
    fn a_constant_of_incompatible_types_is_refused() {
        for source in [
            "{{ 'x' + 1 }}",
            "{{ 'x' * 'y' }}",
            "{{ 1 + 'x' }}",
            "{{ [1] + 1 }}",
        ] {
            let (_, column, message) = refused(source);
            assert_eq!(column, Some(4), "{source}");
            assert!(message.contains("fails whatever the data"), "{message}");
        }
    }

    /// `round(2, precision=3)`: one argument given twice fails every send.
    #[test]
    fn an_argument_given_in_place_and_by_keyword_is_refused() {
        let (line, column, message) = refused("{{ event.total | round(2, precision=3) }}");
        assert_eq!((line, column), (Some(1), Some(18)));
        assert_eq!(
            message,
            "the filter `round` is given `precision` twice, as its first argument and as `precision=`: give it once, write it like round(2)"
        );
        let (_, _, message) = refused("{{ event.code | replace('a', 'b', 1, count=2) }}");
        assert!(message.contains("as its third argument"), "{message}");
    }

    /// What a template binds itself, a loop's variable, a macro, MiniJinja's functions and
    /// `now` as a value are no values called.
    #[test]
    fn calls_that_work_are_not_refused() {
        for source in [
            "{{ now }} {{ now | date('%H:%M') }} {{ now | date('%d %B', tz='Europe/Paris') }}",
            "{{ profile.items | length }} {{ profile.address.city }} {{ event.items[0].name }} {{ journey.id }}",
            "{% for i in range(3) %}{{ loop.index }} {{ loop.cycle('a', 'b') }}{% endfor %}",
            "{% for item in event.items %}{{ item.name }}{% endfor %}{{ dict(a=1).a }}",
            "{% set ns = namespace(n=0) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}",
            "{% macro greet(name) %}Hi {{ name }}{% endmacro %}{{ greet(profile.first_name) }}",
            "{% macro profile() %}x{% endmacro %}{{ profile() }}",
            "{% set now = dict %}{{ now(a=1) }}",
            "{% if profile.name is startingwith('A') %}x{% endif %}{{ profile.name | upper | trim }}",
        ] {
            assert_eq!(check(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn valid_calls_are_not_refused() {
        for source in [
            "{{ event.total | round }} {{ event.total | round(2) }} {{ event.total | round(precision=2) }} {{ event.total | round(2, 'floor') }} {{ event.total | round(method='ceil') }}",
            "{{ event.code | replace('-', '') }} {{ event.code | replace('a', 'b', 1) }} {{ event.code | replace('a', 'b', count=1) }} {{ event.code | replace(1, 2) }}",
            "{{ profile.name | default('there', true) }} {{ profile.name | d('x') }} {{ profile.name | default }}",
            "{{ now | date }} {{ now | date('%d %B', tz='Europe/Paris') }} {{ now | date(tz=profile.timezone) }} {{ now | date(profile.format) }}",
            "{{ event | tojson }} {{ event | tojson(indent=2) }} {{ event | tojson(true) }}",
            "{{ event.items | map(attribute='name') | join(', ') }} {{ event.items | selectattr('active', 'eq', true) | list }} {{ event.items | join(d='-') }}",
            "{{ '%.2f' | format(event.total) }} {{ event.items | batch(3, '-') | list }} {{ event.items | slice(2) | list }}",
            "{{ event.items | sort(attribute='name', reverse=true) }} {{ event.items | groupby('city') }} {{ event.items | groupby(attribute='city', default='x') }}",
            "{{ event.n | int(default=0, base=16) }} {{ event.n | float(0) }} {{ event.text | indent(2, true) }} {{ event.text | split(',', 1) }}",
            "{% for i in range(1, 10, 2) %}{{ i }}{% endfor %}{{ dict(a=1).a }}{% set ns = namespace(count=0) %}",
            "{% if event.n is divisibleby 3 %}{% endif %}{% if event.n is divisibleby(3) %}{% endif %}{% if event.n is not none %}{% endif %}",
            "{{ 1 + 2 }} {{ 'a' ~ 'b' }} {{ [1, 2] | length }} {{ (event.total or 0) + 1 }} {{ event.price / 100 }}",
            "{{ event.code | replace(profile.a, profile.b) }} {{ event.total | round(profile.digits) }}",
        ] {
            assert_eq!(check(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn tojson_builds_json_bodies_whatever_the_values_hold() {
        let body = render(
            r#"{"user": {{ user_id | tojson }}, "items": {{ event.items | tojson }}}"#,
            &json!({"user_id": "ann \"the\" <admin>", "event": {"items": [{"name": "Sock\n"}]}}),
            false,
        )
        .expect("renders");
        let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
        assert_eq!(v["user"], "ann \"the\" <admin>");
        assert_eq!(v["items"][0]["name"], "Sock\n");
        assert!(check("{{ event | tojson }}").is_ok());
    }

    #[test]
    fn the_event_fields_a_template_reads() {
        assert_eq!(
            event_fields("Hi {{ profile.first_name }}\n{% for i in event.items %}{{ i.name }} {{ event.currency }}{% endfor %}\n{{ event.items | length }}"),
            vec![("currency".to_string(), 2), ("items".to_string(), 2)]
        );
        assert_eq!(event_fields("{{ event }}"), vec![(String::new(), 1)]);
        assert_eq!(event_fields("{{ profile.x }} {{ now }}"), vec![]);
        assert_eq!(event_fields("{{ event.x "), vec![]);
    }

    #[test]
    fn the_suggested_names_are_minijinjas() {
        for f in calls::FILTERS {
            assert!(known(used::Kind::Filter, f.name), "filter {}", f.name);
        }
        for t in calls::TESTS {
            assert!(known(used::Kind::Test, t.name), "test {}", t.name);
        }
        assert!(!known(used::Kind::Filter, "titel"));
        assert!(!known(used::Kind::Test, "titel"));
    }

    #[test]
    fn accepts_scope_variables_and_loops() {
        assert!(check(
            "Hi {{ profile.first_name }}, {% for i in event.items %}{{ i.name }}{% endfor %}"
        )
        .is_ok());
        assert!(check("{{ journey.name }} {{ user_id }} {{ unsubscribe_url }}").is_ok());
    }

    #[test]
    fn rejects_templates_that_load_other_templates() {
        for src in [
            "{% include 'x' %}",
            "a\n{%- import 'x' as y %}",
            "{% from 'x' import y %}",
            "{%extends 'x'%}",
        ] {
            let e = check(src).expect_err(src);
            assert!(e.message.contains("stands alone"), "{}", e.message);
        }
        assert_eq!(
            check("a\n{%- import 'x' as y %}").unwrap_err().line,
            Some(2)
        );
        assert!(check("{% for included in event.items %}{{ included }}{% endfor %}").is_ok());
    }

    /// What a test's template sees: user `u1`, these traits and this trigger event, in the
    /// journey `(id, name, version)`, at 2026-12-01T10:00:00Z.
    fn scope_of<'a>(
        traits: &'a serde_json::Value,
        event: &'a serde_json::Value,
        (journey_id, journey_name, journey_version): (&'a str, &'a str, u64),
    ) -> Scope<'a> {
        Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            traits: traits.as_object().expect("map"),
            profile_user_id: "u1",
            user_id: "u1",
            event,
            journey_id,
            journey_name,
            journey_version,
            journey_timezone: None,
            now: "2026-12-01T10:00:00Z".parse().expect("timestamp"),
            unsubscribe_url: None,
            language: None,
        }
    }

    #[test]
    fn rejects_unknown_variables_and_bad_syntax() {
        let e = check("Hello {{ name }}").unwrap_err();
        assert!(e.message.contains("`name`"), "{}", e.message);
        assert!(!e.message.contains("also unknown"), "{}", e.message);
        // Every unknown variable of a text is named at once, not one a run of validate.
        let e = check("Hi {{ first_name }},\n{{ user.email }} {{ customer.id }}").unwrap_err();
        assert!(
            e.message.starts_with("unknown variable `first_name`"),
            "{}",
            e.message
        );
        assert_eq!(e.line, Some(1));
        assert!(
            e.message
                .ends_with("; also unknown in this text: `customer`, `user`"),
            "{}",
            e.message
        );
        let many = (0..9)
            .map(|i| format!("{{{{ v{i} }}}}"))
            .collect::<String>();
        let e = check(&many).unwrap_err();
        assert!(
            e.message
                .ends_with("`v1`, `v2`, `v3`, `v4`, `v5`, and 3 more"),
            "{}",
            e.message
        );
        let e = check("Hello {{ profile.name ").unwrap_err();
        assert!(e.message.starts_with("template error"), "{}", e.message);
        assert_eq!(e.line, Some(1));
    }

    /// A block the text never closes is told at the tag that opens it, with the end to add:
    /// MiniJinja finds it at the end of the text, and its place was the text's last stretch
    /// (on the right line only when the template is one line).
    #[test]
    fn a_block_left_open_is_told_at_its_opening_tag() {
        for (source, at, end) in [
            (
                "Hello {{ profile.first_name }},\n  {% if event.total > 100 %}free shipping!\nSee you soon.\nThe team",
                (2, 3),
                "{% endif %}",
            ),
            (
                "Your items:\n{% for item in event.items %}\n- {{ item.name }}\n{% if item.gift %}(gift){% endif %}\nThanks",
                (2, 1),
                "{% endfor %}",
            ),
            (
                "{% if event.vip %}VIP\n{% else %}\n  {%- if event.new %}new\n{% endif %}\nbye",
                (1, 1),
                "{% endif %}",
            ),
        ] {
            let e = check(source).expect_err(source);
            assert_eq!((e.line, e.column), (Some(at.0), Some(at.1)), "{source}: {e}");
            assert!(e.message.contains(&format!("add `{end}`")), "{}", e.message);
        }
        // A tag that is not closed itself keeps MiniJinja's own error, where it stopped.
        let e = check("Hi\n{% if event.vip ").expect_err("open tag");
        assert!(e.message.starts_with("template error"), "{}", e.message);
    }

    /// What the README says of `{% if %}`: MiniJinja's comparisons, not a condition's.
    #[test]
    fn an_if_compares_as_minijinja_does_not_as_a_condition() {
        let ctx = json!({"profile": {}, "event": {"s": "3"}});
        let source = "{% if profile.points < 100 %}A{% else %}B{% endif %}|{% if event.s > 5 %}Y{% else %}N{% endif %}|{% if profile.points is defined and profile.points < 100 %}C{% else %}D{% endif %}|{% if event.s | int > 5 %}P{% else %}Q{% endif %}";
        assert_eq!(render(source, &ctx, false).unwrap(), "A|Y|D|Q");
    }

    #[test]
    fn renders_and_escapes_html() {
        let ctx = json!({"profile": {"first_name": "<b>Ann</b>"}});
        assert_eq!(
            render("Hi {{ profile.first_name }}", &ctx, false).unwrap(),
            "Hi <b>Ann</b>"
        );
        assert_eq!(
            render("Hi {{ profile.first_name }}", &ctx, true).unwrap(),
            "Hi &lt;b&gt;Ann&lt;&#x2f;b&gt;"
        );
    }

    #[test]
    fn text_without_tags_renders_as_minijinja_renders_it() {
        let ctx = json!({"profile": {"first_name": "Ann"}});
        // MiniJinja drops one trailing newline; the cached constant must do the same, every time.
        for (source, want) in [
            (
                "You left something in your cart",
                "You left something in your cart",
            ),
            ("Two lines\nand a newline\n", "Two lines\nand a newline"),
            ("Blank line kept\n\n", "Blank line kept\n"),
            ("", ""),
            (
                "<b>not escaped: it is the template's own text</b>",
                "<b>not escaped: it is the template's own text</b>",
            ),
        ] {
            for html in [false, true] {
                assert_eq!(render(source, &ctx, html).unwrap(), want, "{source:?}");
                assert_eq!(
                    render(source, &ctx, html).unwrap(),
                    want,
                    "{source:?} again"
                );
            }
        }
    }

    #[test]
    fn the_same_source_renders_escaped_or_not_as_asked() {
        let ctx = json!({"event": {"name": "<i>x</i>"}});
        let source = "Item: {{ event.name }} (cache test)";
        for _ in 0..2 {
            assert_eq!(
                render(source, &ctx, false).unwrap(),
                "Item: <i>x</i> (cache test)"
            );
            assert_eq!(
                render(source, &ctx, true).unwrap(),
                "Item: &lt;i&gt;x&lt;&#x2f;i&gt; (cache test)"
            );
        }
    }

    #[test]
    fn a_full_cache_starts_over_and_still_renders() {
        let ctx = json!({"profile": {}});
        for i in 0..(CACHE_LIMIT + 10) {
            let source = format!("{{{{ profile.x | default('d') }}}} {i}");
            assert_eq!(render(&source, &ctx, false).unwrap(), format!("d {i}"));
        }
        assert_eq!(
            render("{{ profile.x | default('d') }} 0", &ctx, false).unwrap(),
            "d 0"
        );
    }

    #[test]
    fn a_value_in_a_url_is_encoded_with_urlencode() {
        assert!(check("https://h.example/o?u={{ user_id | urlencode }}").is_ok());
        let ctx = json!({"user_id": "ann & bob/1"});
        assert_eq!(
            render("?u={{ user_id | urlencode }}", &ctx, false).as_deref(),
            Ok("?u=ann%20%26%20bob/1")
        );
    }

    #[test]
    fn a_null_reads_as_a_missing_value_through_filters_and_concatenation() {
        let with_null = json!({"event": {"coupon": null, "n": 0, "items": [null, "hat"],
            "address": null}, "profile": {"nick": null}});
        let without = json!({"event": {"n": 0, "items": [null, "hat"]}, "profile": {}});
        for (source, want) in [
            ("[{{ event.coupon }}][{{ event.n }}]", "[][0]"),
            ("Your code: {{ event.coupon | upper }}", "Your code: "),
            (
                "Code {{ event.coupon | trim | default('WELCOME10', true) }}",
                "Code WELCOME10",
            ),
            ("Hi {{ profile.nick | title }}!", "Hi !"),
            ("{{ 'ref-' ~ event.coupon ~ '.' }}", "ref-."),
            (
                "[{{ event.coupon | lower }}|{{ event.coupon | capitalize }}|{{ event.coupon | string }}]",
                "[||]",
            ),
            ("[{{ event.coupon | replace('a', 'b') }}]", "[]"),
            ("{{ event.coupon | length }}", "0"),
            ("{{ event.coupon | default('none left') }}", "none left"),
            (
                "{% if event.coupon is defined %}d{% else %}u{% endif %}{% if event.coupon is none %}n{% endif %}",
                "un",
            ),
            ("{{ event.address.city | upper }}.", "."),
            ("{% for i in event.coupon %}x{% endfor %}.", "."),
            ("{{ event.items | join(',') }}", ",hat"),
            ("{{ event.coupon | tojson }}", "null"),
        ] {
            for html in [false, true] {
                assert_eq!(
                    render(source, &with_null, html).as_deref(),
                    Ok(want),
                    "{source} (html: {html})"
                );
            }
            // Absent altogether, it reads the same (the list keeps its null).
            assert_eq!(
                render(source, &with_null, false),
                render(source, &without, false),
                "{source}"
            );
        }
        // Through a `Context`, rendered directly where the template allows: the same.
        let traits = json!({"nick": null});
        let event = json!({"coupon": null});
        let ctx = Context::new(scope_of(&traits, &event, ("coupon", "Coupon", 1)));
        for (source, want) in [
            ("{{ event.coupon | upper }}|{{ profile.nick | lower }}|{{ event.coupon | trim }} (null test)", "|| (null test)"),
            ("{{ event.coupon | length }}|{{ profile.nick | default('friend') }} (null test)", "0|friend (null test)"),
            ("{% if event.coupon is defined %}d{% else %}u{% endif %}{{ journey.timezone | upper }}{{ unsubscribe_url | lower }} (null test)", "u (null test)"),
            ("{{ 'ref-' ~ event.coupon }}|{{ profile.nick | title }} (null test)", "ref-| (null test)"),
        ] {
            assert_eq!(ctx.render(source, false).as_deref(), Ok(want), "{source}");
            assert_eq!(ctx.render(source, true).as_deref(), Ok(want), "{source} (html)");
        }
    }

    #[test]
    fn a_context_renders_as_minijinja_whether_directly_or_not() {
        let traits = json!({"first_name": "ann <3"});
        let event = json!({"items": [{"name": "Socks"}, {"name": "Hat"}]});
        let ctx = Context::new(scope_of(&traits, &event, ("cart", "Cart", 2)));
        let values = json!({"profile": {"first_name": "ann <3", "user_id": "u1"}, "event": event,
            "journey": {"id": "cart", "name": "Cart", "version": 2, "timezone": null}, "user_id": "u1",
            "now": "2026-12-01T10:00:00Z", "unsubscribe_url": null});
        for (source, want) in [
            // Rendered directly.
            (
                "Hi {{ profile.first_name }}: {% for i in event.items %}{{ i.name }} {% endfor %}(v{{ journey.version }}, {{ unsubscribe_url }})",
                "Hi ann <3: Socks Hat (v2, )",
            ),
            // Declined when compiling (`title`, `loop`): MiniJinja renders.
            (
                "Hi {{ profile.first_name | title }}: {% for i in event.items %}{{ loop.index }}.{{ i.name }} {% endfor %}(context test)",
                "Hi Ann <3: 1.Socks 2.Hat (context test)",
            ),
            // Compiled directly, declined while rendering (`profile` printed whole).
            (
                "{{ profile.user_id }} {{ profile }} (context test)",
                "u1 {'first_name': 'ann <3', 'user_id': 'u1'} (context test)",
            ),
        ] {
            assert_eq!(ctx.render(source, false).as_deref(), Ok(want), "{source}");
            assert_eq!(
                ctx.render(source, false),
                render(source, &values, false),
                "{source}"
            );
            assert_eq!(
                ctx.render(source, true),
                render(source, &values, true),
                "{source} (html)"
            );
        }
        // An attribute of an undefined value is undefined too, either way: it prints nothing,
        // and `default` and `is defined` see it as missing (a user with no address still gets
        // the message).
        for (source, want) in [
            (
                "{{ profile.address.city }} (context test)",
                " (context test)",
            ),
            (
                "{{ profile.address.city | default('your city') }} (context test)",
                "your city (context test)",
            ),
            (
                "{% if profile.address.city is defined %}x{% else %}none{% endif %} (context test)",
                "none (context test)",
            ),
            (
                "{% for l in event.nope.lines %}{{ l }}{% endfor %}(context test)",
                "(context test)",
            ),
        ] {
            assert_eq!(ctx.render(source, false).as_deref(), Ok(want), "{source}");
            assert_eq!(
                ctx.render(source, false),
                render(source, &values, false),
                "{source}"
            );
        }
    }

    #[test]
    fn a_webhook_renders_each_secret_as_its_marker_and_refuses_one_from_data() {
        let traits = json!({"nick": crate::secrets::marker("KEY")});
        let event = json!({});
        let ctx = Context::new(scope_of(&traits, &event, ("hook", "Hook", 1)));
        assert_eq!(
            ctx.render_webhook("Bearer {{ secrets.KEY }} for {{ user_id }}", true),
            Ok((
                format!("Bearer {} for u1", crate::secrets::marker("KEY")),
                vec!["KEY".to_string()]
            ))
        );
        // In a call that reads a secret (in this field or another), data holding the
        // character is refused.
        for source in ["{{ profile.nick }}", "{{ secrets.KEY }} {{ profile.nick }}"] {
            let e = ctx.render_webhook(source, true).expect_err(source);
            assert!(e.message.contains("which marks a secret"), "{}", e.message);
        }
        // In a call that reads none, it is text (the sender puts no secret in).
        assert_eq!(
            ctx.render_webhook("{{ profile.nick }}", false),
            Ok((crate::secrets::marker("KEY"), Vec::new()))
        );
        // A block that captures, changes or drops a marker.
        for source in [
            "{% filter upper %}{{ secrets.KEY }}{% endfilter %}",
            "{% set x %}{{ secrets.KEY }}{% endset %}{{ x|urlencode }}",
            "{% set x %}{{ secrets.KEY }}{% endset %}{{ x }}{{ x }}",
            "{% set x %}{{ secrets.KEY }}{% endset %}none",
        ] {
            let e = ctx.render_webhook(source, true).expect_err(source);
            assert!(
                e.message.contains("which marks a secret")
                    || e.message.contains("was changed, dropped or repeated"),
                "{source}: {}",
                e.message
            );
        }
        assert_eq!(
            ctx.render_webhook("{% for i in [1, 2] %}{{ secrets.KEY }}{% endfor %}", true)
                .map(|(_, names)| names),
            Ok(vec!["KEY".to_string(), "KEY".to_string()])
        );
        // Outside a webhook `secrets` is no variable at all.
        assert_eq!(
            ctx.render("[{{ secrets.KEY }}]", false).as_deref(),
            Ok("[]")
        );
    }

    #[test]
    fn cannot_read_files_or_loop_forever() {
        let ctx = json!({});
        assert!(render("{% include '/etc/passwd' %}", &ctx, false).is_err());
        assert!(render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &ctx,
            false
        )
        .is_err());
    }
}
