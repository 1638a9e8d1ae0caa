//! Conditions in journey files: a small, safe expression language over event.*, trigger.*, waited.* and profile.*; no code runs from a journey file.
//!
//! ```text
//! event.total >= 50 and profile.country in ['FR', 'DE']
//! not exists(profile.unsubscribed_at) or profile.last_order_at < ago('30d')
//! event.items[0].sku == 'A-1' and event.tags contains 'gift'
//! ```
//!
//! Paths start at `event`, `trigger`, `waited` or `profile` (`event.a.b`, `event.items[0]`,
//! `profile['first name']`, `trigger.order_id`: see [`Scope`]);
//! a missing path reads as `null`. Values are numbers, strings in `'…'` or `"…"`, `true`, `false`,
//! `null`, lists `[1, 'a']`, times: `time('2026-01-01T00:00:00Z')`, `now()`, `ago('7d')`, and
//! whole days from today to a date, in the user's zone: `days_until(profile.trial_ends_at) == 3`,
//! `days_since(profile.signed_up_at) == 7`, and the number a path holds or its text says
//! (`"12.50"`, as money is often sent): `number(event.balance) < 50`, and the text a path holds
//! in lower or upper case, to compare text whatever its case: `lower(event.country) == 'de'`.
//! Operators are `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `contains`, `not contains`,
//! the condition `exists(path)`, and `and`, `or`, `not` with parentheses. `not` applies to the
//! comparison after it (`not a == b` is `not (a == b)`), comparisons bind tighter than `and`, and
//! `and` tighter than `or`.
//!
//! Evaluation never fails: comparing values of different types is false (`!=`, `not in` and
//! `not contains` are the negations of `==`, `in` and `contains`), numbers compare numerically
//! (`1 == 1.0`), strings lexicographically (`"7.00" > "50"`: `number(…)` reads them as numbers),
//! and a string compared with a time is read as an RFC 3339 time. A bare path is a condition that holds when the value is `true`. Parsing rejects
//! conditions longer than 4096 characters or nested deeper than 32 levels, so evaluation is bounded.

use std::cmp::Ordering;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

use crate::duration::Duration;

/// The longest condition, in characters.
const MAX_LEN: usize = 4096;
/// How deeply parentheses, `not` and lists may nest.
const MAX_DEPTH: usize = 32;

/// A parsed condition, kept with its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// What a condition reads: the event (`event.*`), the enrollment's trigger event (`trigger.*`),
/// the event that met the enrollment's latest `wait_for` (`waited.*`, null when none did), the
/// user's profile, and the current time; `zone`, the journey's default time zone, for a user
/// without `profile.timezone` (the day `anniversary(…)`, `days_until(…)` and `days_since(…)` read
/// is the user's, as a wait's is).
/// In a step, `event` and `trigger` are both the trigger event; in a `wait_for`'s, an
/// `exit_when`'s or a goal's `where`, `event` is the event that came.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub event: &'a Value,
    pub trigger: &'a Value,
    pub waited: &'a Value,
    pub profile: &'a Value,
    pub now: Timestamp,
    pub zone: Option<&'a str>,
}

/// Why a string is not a condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConditionError {
    /// Where the problem is, in characters from the start of the source.
    pub offset: usize,
    /// What is wrong, and what to write instead.
    pub message: String,
}

fn error<T>(offset: usize, message: impl Into<String>) -> Result<T, ConditionError> {
    Err(ConditionError {
        offset,
        message: message.into(),
    })
}

impl Condition {
    pub fn parse(src: &str) -> Result<Condition, ConditionError> {
        let chars: Vec<char> = src.chars().collect();
        if chars.len() > MAX_LEN {
            return error(
                MAX_LEN,
                format!(
                    "the condition is {} characters long, and the limit is {MAX_LEN}: split it into \
                     several conditions, or keep a precomputed field in the profile",
                    chars.len()
                ),
            );
        }
        let tokens = lex(&chars)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            depth: 0,
        };
        if parser.peek().kind == Tok::End {
            return error(
                0,
                "the condition is empty: write one like event.total >= 50",
            );
        }
        let expr = parser.parse_or()?;
        let next = parser.peek();
        if next.kind != Tok::End {
            let message = match &next.kind {
                Tok::RParen => "this \")\" closes nothing: remove it, or add a \"(\" before".to_string(),
                Tok::Ident(word) if KEYWORDS.contains(&word.to_lowercase().as_str()) => {
                    format!("write \"{}\" in lower case", word.to_lowercase())
                }
                other => format!(
                    "unexpected {} after a complete condition: join conditions with \"and\" or \"or\"",
                    other.describe()
                ),
            };
            return error(next.at, message);
        }
        Ok(Condition {
            source: src.to_string(),
            expr,
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every path the condition reads, as written ("event.total", "profile.country"), once each,
    /// in order of first appearance.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.expr.collect_paths(&mut out);
        out.iter().map(|p| p.to_string()).collect()
    }

    /// Whether the condition reads the enrollment it is judged for (`trigger.*` or
    /// `waited.*`): on an event with no enrollment to judge it for, it cannot be told.
    pub fn reads_enrollment(&self) -> bool {
        self.paths().iter().any(|p| {
            ["trigger", "waited"].iter().any(|root| {
                p.strip_prefix(root)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        })
    }

    /// Whether the condition holds only for an event whose value at `key`'s place equals the
    /// trigger's (`key` `event.booking_id`): the condition is `event.booking_id ==
    /// trigger.booking_id` (either way round, plain paths), or an `and` with that among its
    /// parts, as an exit or a wait that tells one enrollment of a keyed journey from another
    /// is written. Anything else (an `or` around it, `!=`, `lower(…)` on either side, the
    /// comparison under a `not`) may hold for an event of another value, so it is not one.
    pub fn requires_same_key(&self, key: &ValuePath) -> bool {
        let is_key = |o: &Operand, root: Root| matches!(o, Operand::Path(p) if p.root == root && p.segments == key.path.segments);
        let same = |e: &Expr| match e {
            Expr::Compare {
                op: Op::Eq,
                left,
                right,
                ..
            } => {
                (is_key(left, Root::Event) && is_key(right, Root::Trigger))
                    || (is_key(left, Root::Trigger) && is_key(right, Root::Event))
            }
            _ => false,
        };
        match &self.expr {
            Expr::And(parts) => parts.iter().any(same),
            e => same(e),
        }
    }

    /// What the paths the condition reads held in `scope`, for saying why it did not hold:
    /// `event.total = 30, profile.country missing`; a path compared with a number that holds
    /// text saying one is named with what reads it: `event.balance = "12.50"; event.balance is
    /// text, which number(event.balance) reads as a number`. Each value is cut at
    /// [`SHOWN_VALUE_CHARS`] characters; at most [`SHOWN_PATHS`] paths are named.
    pub fn values(&self, scope: &Scope<'_>) -> String {
        values_of([self], scope)
    }

    /// Why the condition did not hold, for a timeline: `` `where: event.total > 10` was false
    /// (event.total = 5) `` (what its paths held, as [`Condition::values`] says).
    pub fn why_false(&self, scope: &Scope<'_>) -> String {
        self.said_false(scope, "was false")
    }

    /// Why the condition does not hold now, as [`Condition::why_false`] says it of a time
    /// gone: `` `where: profile.plan == 'pro'` is false now (profile.plan = "free") ``.
    pub fn why_false_now(&self, scope: &Scope<'_>) -> String {
        self.said_false(scope, "is false now")
    }

    /// Why the condition does not hold in `scope`, with `verdict` saying when: `` `where: …`
    /// is false at its minute (profile.birthday = "1990-12-25") ``.
    pub fn said_false(&self, scope: &Scope<'_>, verdict: &str) -> String {
        match self.values(scope).as_str() {
            "" => format!("`where: {}` {verdict}", self.source),
            values => format!("`where: {}` {verdict} ({values})", self.source),
        }
    }

    /// Where the condition orders a path against text that says a number (`event.balance <
    /// "50"`), which compares text character by character (`"7.00"` comes after `"50"`): the
    /// operator's place, in characters from the start, and what to write instead.
    pub fn numbers_compared_as_text(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        self.expr.numbers_compared_as_text(&mut out);
        out
    }

    /// Where the condition compares `lower(…)` with text that has upper-case letters (`upper(…)`
    /// with lower-case ones), which it never matches (`lower(event.country) == 'DE'`): the
    /// operator's place, in characters from the start, and what to write instead.
    pub fn text_in_the_wrong_case(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        self.expr.text_in_the_wrong_case(&mut out);
        out
    }

    /// Whether what the condition says depends on when it is read, not only on the values
    /// it reads: it holds `anniversary(…)`, `days_until(…)`, `days_since(…)`, `now()` or `ago(…)`.
    pub fn reads_the_clock(&self) -> bool {
        self.expr.reads_the_clock()
    }

    /// Whether the condition holds. Never panics; a missing or mistyped value makes a comparison
    /// false rather than an error.
    pub fn eval(&self, scope: &Scope<'_>) -> bool {
        self.expr.holds(scope)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

// ---------------------------------------------------------------------------------------------
// The syntax tree.

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        op: Op,
        left: Operand,
        right: Operand,
        /// Where the operator is, in characters from the start of the source.
        at: usize,
    },
    Exists(Path),
    /// `anniversary(path)`: today, in the user's time zone, is the day and month of the date
    /// the path holds, `days` days ahead (`anniversary(profile.renews_on, '7d')`: a week before).
    Anniversary {
        path: Path,
        days: i64,
    },
    /// A bare path or `true`/`false`: holds when the value is `true`.
    Truthy(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Contains,
    NotContains,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Contains => "contains",
            Op::NotContains => "not contains",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Path),
    /// `null`, a boolean, a number or a string.
    Literal(Value),
    List(Vec<Operand>),
    Time(Timestamp),
    /// `time(path)`: the instant the RFC 3339 text a path holds says, so that two paths compare
    /// as instants whatever their offsets; null for anything else.
    TimeOf(Path),
    Now,
    Ago(Duration),
    /// `days_until(path)` or `days_since(path)`: the whole days from today, in the user's time
    /// zone, to the date the path holds (negative once it is past), or from it to today.
    Days(Days, Path),
    /// `number(path)`: the number the path holds, or the one its text says (`"12.50"`, as money
    /// is often sent); null for anything else.
    Number(Path),
    /// `lower(path)` or `upper(path)`: the text the path holds in that case (Unicode's, so
    /// `"ÄRGER"` is `"ärger"`); null for anything else.
    Case(Case, Path),
}

/// Which case [`Operand::Case`] gives text in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lower,
    Upper,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Lower => "lower",
            Case::Upper => "upper",
        }
    }

    /// `text` in this case.
    fn of(self, text: &str) -> String {
        match self {
            Case::Lower => text.to_lowercase(),
            Case::Upper => text.to_uppercase(),
        }
    }
}

/// Which way [`Operand::Days`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Days {
    /// `days_until(path)`: from today to the date; 3 three days before it.
    Until,
    /// `days_since(path)`: from the date to today; 7 a week after it.
    Since,
}

impl Days {
    fn name(self) -> &'static str {
        match self {
            Days::Until => "days_until",
            Days::Since => "days_since",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Event,
    Trigger,
    Waited,
    Profile,
}

impl Root {
    /// The roots a path may start at, as written.
    const ALL: [(&'static str, Root); 4] = [
        ("event", Root::Event),
        ("trigger", Root::Trigger),
        ("waited", Root::Waited),
        ("profile", Root::Profile),
    ];

    fn of(name: &str) -> Option<Root> {
        Root::ALL.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }

    fn name(self) -> &'static str {
        match self {
            Root::Event => "event",
            Root::Trigger => "trigger",
            Root::Waited => "waited",
            Root::Profile => "profile",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Path {
    root: Root,
    segments: Vec<Segment>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        for segment in &self.segments {
            match segment {
                Segment::Key(k) if is_identifier(k) => write!(f, ".{k}")?,
                Segment::Key(k) => {
                    write!(f, "['{}']", k.replace('\\', "\\\\").replace('\'', "\\'"))?
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// What kind of value an operand is, as far as parsing can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Null,
    Bool,
    Number,
    String,
    List,
    Time,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unknown => "a path",
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::List => "a list",
            Kind::Time => "a time",
        }
    }
}

impl Operand {
    fn kind(&self) -> Kind {
        match self {
            Operand::Path(_) => Kind::Unknown,
            Operand::Literal(Value::Null) => Kind::Null,
            Operand::Literal(Value::Bool(_)) => Kind::Bool,
            Operand::Literal(Value::Number(_)) | Operand::Days(..) | Operand::Number(_) => {
                Kind::Number
            }
            Operand::Literal(Value::String(_)) | Operand::Case(..) => Kind::String,
            Operand::Literal(_) | Operand::List(_) => Kind::List,
            Operand::Time(_) | Operand::TimeOf(_) | Operand::Now | Operand::Ago(_) => Kind::Time,
        }
    }

    fn reads_the_clock(&self) -> bool {
        match self {
            Operand::Now | Operand::Ago(_) | Operand::Days(..) => true,
            Operand::List(items) => items.iter().any(Operand::reads_the_clock),
            Operand::Path(_)
            | Operand::Literal(_)
            | Operand::Time(_)
            | Operand::TimeOf(_)
            | Operand::Number(_)
            | Operand::Case(..) => false,
        }
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Operand::Path(p)
            | Operand::Days(_, p)
            | Operand::Number(p)
            | Operand::Case(_, p)
            | Operand::TimeOf(p) => push_unique(out, p),
            Operand::List(items) => items.iter().for_each(|i| i.collect_paths(out)),
            Operand::Literal(_) | Operand::Time(_) | Operand::Now | Operand::Ago(_) => {}
        }
    }
}

fn push_unique<'a>(out: &mut Vec<&'a Path>, path: &'a Path) {
    if !out.contains(&path) {
        out.push(path);
    }
}

/// What the paths `conditions` read held in `scope` (see [`Condition::values`]), each path
/// once: why none of a branch's cases held.
pub fn values_of<'c>(
    conditions: impl IntoIterator<Item = &'c Condition>,
    scope: &Scope<'_>,
) -> String {
    let conditions: Vec<&Condition> = conditions.into_iter().collect();
    let mut paths = Vec::new();
    for c in &conditions {
        c.expr.collect_paths(&mut paths);
    }
    let mut out: Vec<String> = paths
        .iter()
        .take(SHOWN_PATHS)
        .map(|p| match p.lookup(scope) {
            None | Some(Value::Null) => format!("{p} missing"),
            // Kept out of the timeline, as out of the logs it goes to.
            Some(v) if p.is_private() || looks_like_an_address(v) => format!("{p} set (not shown)"),
            // Whatever it holds inside (a customer's email, an address) is not shown either.
            Some(v) => format!("{p} = {}", shown("", v)),
        })
        .collect();
    if paths.len() > SHOWN_PATHS {
        out.push(format!("{} more", paths.len() - SHOWN_PATHS));
    }
    let mut said = out.join(", ");
    if let Some((path, list)) = conditions
        .iter()
        .find_map(|c| c.expr.number_sent_as_text(scope))
        .filter(|(p, _)| !p.is_private())
    {
        said.push_str(&match list {
            None => format!("; {path} is text, which number({path}) reads as a number"),
            Some(list) => format!(
                "; {path} is a number, which the list's text never equals: write its numbers unquoted, {list}"
            ),
        });
    }
    said
}

/// The value of the key `key` as the timeline shows it (as [`Condition::values`] does): JSON,
/// cut short; an address or a secret (by its key or its look) not shown, nor what an object or a
/// list holds.
pub fn shown(key: &str, v: &Value) -> String {
    match v {
        _ if is_private_key(key) || looks_like_an_address(v) => "(not shown)".to_string(),
        Value::Object(m) => format!("an object of {}", count(m.len(), "key")),
        Value::Array(items) => format!("a list of {}", count(items.len(), "item")),
        v => shown_value(v),
    }
}

/// A value of a list as a condition writes it, its text in `case`: `'de'`, `3`, `null`.
fn written(operand: &Operand, case: Case) -> String {
    match operand {
        Operand::Literal(Value::String(s)) => quoted(&case.of(s)),
        Operand::Literal(v) => v.to_string(),
        Operand::Time(t) => format!("time('{t}')"),
        Operand::Now => "now()".to_string(),
        Operand::Ago(d) => format!("ago('{d}')"),
        // Not in a list: parsing refuses them there.
        Operand::Path(p)
        | Operand::Days(_, p)
        | Operand::Number(p)
        | Operand::Case(_, p)
        | Operand::TimeOf(p) => p.to_string(),
        Operand::List(_) => "[…]".to_string(),
    }
}

/// Text as a condition writes it, in single quotes.
fn quoted(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .replace('\r', "\\r");
    format!("'{escaped}'")
}

/// Whether a value reads as an email address or a phone number, whatever its key (a
/// `recipient`, a `contact`): not shown either. A day (`2026-11-01`) is digits and dashes too,
/// but shown: a time condition is read by it. (A date and time has a `T` or a `:`, which no
/// phone number is written with.)
fn looks_like_an_address(v: &Value) -> bool {
    let Some(text) = v.as_str() else {
        return false;
    };
    let digits = text.chars().filter(char::is_ascii_digit).count();
    text.contains('@')
        || (digits >= 7
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c))
            && !is_a_day(text))
}

/// Whether `text` is a calendar day written as ISO 8601 writes it, `YYYY-MM-DD` and nothing
/// else, as waits and the `date` filter read one: never a phone number's grouping. Also one
/// past its month's end (`2027-02-29`, `2026-04-31`): a day mistaken, shown so that the timeline
/// says which value was not a time; a month past 12 is no day's.
fn is_a_day(text: &str) -> bool {
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let (month, day) = (text.get(5..7), text.get(8..10));
    let in_range = |part: Option<&str>, most: u8| {
        part.and_then(|p| p.parse::<u8>().ok())
            .is_some_and(|n| (1..=most).contains(&n))
    };
    shape && in_range(month, 12) && in_range(day, 31)
}

/// `n` things, in the singular for one.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

/// How many of a condition's paths [`Condition::values`] names.
pub const SHOWN_PATHS: usize = 8;
/// How much of a value [`Condition::values`] shows, in characters.
pub const SHOWN_VALUE_CHARS: usize = 60;

/// A value as a condition's explanation shows it: JSON, cut short with `…`.
fn shown_value(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl Expr {
    fn numbers_compared_as_text(&self, out: &mut Vec<(usize, String)>) {
        match self {
            Expr::Or(items) | Expr::And(items) => {
                items.iter().for_each(|e| e.numbers_compared_as_text(out))
            }
            Expr::Not(inner) => inner.numbers_compared_as_text(out),
            Expr::Compare {
                op,
                left,
                right,
                at,
            } if op.is_ordering() => {
                let number = |o: &Operand| match o {
                    Operand::Literal(Value::String(s)) => {
                        number_in_text(s).map(|_| number_literal(s))
                    }
                    _ => None,
                };
                let (l, r, text) = match (left, right) {
                    (Operand::Path(p), lit) => match number(lit) {
                        Some(n) => (format!("number({p})"), n.clone(), n),
                        None => return,
                    },
                    (lit, Operand::Path(p)) => match number(lit) {
                        Some(n) => (n.clone(), format!("number({p})"), n),
                        None => return,
                    },
                    _ => return,
                };
                let op = op.text();
                out.push((
                    *at,
                    format!(
                        "\"{op}\" between a path and the text \"{text}\" compares text, character \
                         by character (\"7.00\" comes after \"50\", and \"1000.00\" before it): to \
                         compare numbers, sent as numbers or as text, write {l} {op} {r}"
                    ),
                ));
            }
            _ => {}
        }
    }

    fn text_in_the_wrong_case(&self, out: &mut Vec<(usize, String)>) {
        let (op, left, right, at) = match self {
            Expr::Or(items) | Expr::And(items) => {
                return items.iter().for_each(|e| e.text_in_the_wrong_case(out));
            }
            Expr::Not(inner) => return inner.text_in_the_wrong_case(out),
            Expr::Compare {
                op,
                left,
                right,
                at,
            } if !op.is_ordering() => (*op, left, right, *at),
            _ => return,
        };
        // The text the cased value is compared with, or looked for; not text it is looked for
        // in (`lower(event.a) in 'Deutsch'` holds for "deutsch").
        let (case, path, other, first) = match (left, right) {
            (Operand::Case(case, path), other) => (*case, path, other, true),
            (other, Operand::Case(case, path)) => (*case, path, other, false),
            _ => return,
        };
        let hay = matches!(
            (first, op),
            (true, Op::In | Op::NotIn) | (false, Op::Contains | Op::NotContains)
        );
        let texts: Vec<&str> = match other {
            Operand::Literal(Value::String(s)) if !hay => vec![s.as_str()],
            Operand::List(items) => items
                .iter()
                .filter_map(|i| match i {
                    Operand::Literal(Value::String(s)) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => return,
        };
        let Some(wrong) = texts.into_iter().find(|t| case.of(t) != *t) else {
            return;
        };
        let fixed = match other {
            // Once each: `['de', 'DE']` is `['de']`.
            Operand::List(items) => {
                let mut once: Vec<String> = Vec::new();
                for item in items.iter().map(|i| written(i, case)) {
                    if !once.contains(&item) {
                        once.push(item);
                    }
                }
                format!("[{}]", once.join(", "))
            }
            other => written(other, case),
        };
        let name = case.name();
        let call = format!("{name}({path})");
        let (l, r) = if first {
            (&call, &fixed)
        } else {
            (&fixed, &call)
        };
        let letters = match case {
            Case::Lower => "upper-case",
            Case::Upper => "lower-case",
        };
        out.push((
            at,
            format!(
                "{call} is {name}-case text, which {} (it has {letters} letters) never matches: \
                 write {l} {} {r}",
                quoted(wrong),
                op.text()
            ),
        ));
    }

    /// The first path compared with a number (`event.balance < 50`), or looked for in a list of
    /// numbers (`event.size in [1, 2]`), that holds text saying one (`"12.50"`), which no
    /// comparison with a number holds for; or looked for in a list of text saying numbers
    /// (`event.size in ['1', '2']`) and holding a number one of them says, which no text equals:
    /// then with the list written with its numbers unquoted (`[1, 2]`).
    fn number_sent_as_text(&self, scope: &Scope<'_>) -> Option<(&Path, Option<String>)> {
        // What the path holds, when the timeline shows it.
        let held = |p: &Path| p.lookup(scope).filter(|v| !looks_like_an_address(v));
        let text_saying_a_number = |p: &Path| {
            held(p)
                .and_then(Value::as_str)
                .and_then(number_in_text)
                .is_some()
        };
        match self {
            Expr::Or(items) | Expr::And(items) => {
                items.iter().find_map(|e| e.number_sent_as_text(scope))
            }
            Expr::Not(inner) => inner.number_sent_as_text(scope),
            Expr::Compare {
                op: Op::In | Op::NotIn,
                left: Operand::Path(p),
                right: Operand::List(items),
                ..
            } => {
                let number = |o: &Operand| matches!(o, Operand::Literal(Value::Number(_)));
                let text = |o: &Operand| matches!(o, Operand::Literal(Value::String(_)));
                // Text in the list saying the number `n` (`'30'` for 30).
                let says = |o: &Operand, n: f64| match o {
                    Operand::Literal(Value::String(s)) => {
                        number_in_text(s).is_some_and(|t| t.map_or_else(|f| f, |i| i as f64) == n)
                    }
                    _ => false,
                };
                if items.iter().any(number) && !items.iter().any(text) && text_saying_a_number(p) {
                    return Some((p, None));
                }
                let n = held(p).and_then(Value::as_f64);
                if n.is_some_and(|n| items.iter().any(|o| says(o, n))) {
                    let unquoted: Vec<String> = items
                        .iter()
                        .map(|o| match o {
                            Operand::Literal(Value::String(s)) => match number_in_text(s) {
                                Some(_) => number_literal(s),
                                None => quoted(s),
                            },
                            // Not text: `written` keeps it as it is.
                            o => written(o, Case::Lower),
                        })
                        .collect();
                    return Some((p, Some(format!("[{}]", unquoted.join(", ")))));
                }
                None
            }
            Expr::Compare { left, right, .. } => [(left, right), (right, left)]
                .into_iter()
                .find_map(|(a, b)| match (a, b.kind()) {
                    (Operand::Path(p), Kind::Number) if text_saying_a_number(p) => Some((p, None)),
                    _ => None,
                }),
            _ => None,
        }
    }

    fn reads_the_clock(&self) -> bool {
        match self {
            Expr::Or(items) | Expr::And(items) => items.iter().any(Expr::reads_the_clock),
            Expr::Not(inner) => inner.reads_the_clock(),
            Expr::Compare { left, right, .. } => left.reads_the_clock() || right.reads_the_clock(),
            Expr::Anniversary { .. } => true,
            Expr::Exists(_) => false,
            Expr::Truthy(op) => op.reads_the_clock(),
        }
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Expr::Or(items) | Expr::And(items) => items.iter().for_each(|e| e.collect_paths(out)),
            Expr::Not(inner) => inner.collect_paths(out),
            Expr::Compare { left, right, .. } => {
                left.collect_paths(out);
                right.collect_paths(out);
            }
            Expr::Exists(p) | Expr::Anniversary { path: p, .. } => push_unique(out, p),
            Expr::Truthy(op) => op.collect_paths(out),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(Number),
    Str(String),
    Cmp(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("\"{s}\""),
            Tok::Number(n) => format!("the number {n}"),
            Tok::Str(s) => format!("the string '{s}'"),
            Tok::Cmp(op) => format!("\"{}\"", op.text()),
            Tok::LParen => "\"(\"".to_string(),
            Tok::RParen => "\")\"".to_string(),
            Tok::LBracket => "\"[\"".to_string(),
            Tok::RBracket => "\"]\"".to_string(),
            Tok::Comma => "\",\"".to_string(),
            Tok::Dot => "\".\"".to_string(),
            Tok::End => "the end of the condition".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Tok,
    /// Character offset of the token's first character.
    at: usize,
}

fn lex(chars: &[char]) -> Result<Vec<Token>, ConditionError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let at = i;
        let next = chars.get(i + 1).copied();
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '=' if next == Some('=') => {
                i += 1;
                Tok::Cmp(Op::Eq)
            }
            // `=>` and `=<` are `>=` and `<=` written the other way round, not `==`.
            '=' if next == Some('>') => {
                return error(
                    at,
                    "write \">=\" for \"at least\" (the \"=\" comes second), like event.n >= 10",
                )
            }
            '=' if next == Some('<') => {
                return error(
                    at,
                    "write \"<=\" for \"at most\" (the \"=\" comes second), like event.n <= 10",
                )
            }
            // `=!` is `!=` written the other way round, not `==` and a stray `!`.
            '=' if next == Some('!') => return error(
                at,
                "write \"!=\" for \"not equal\" (the \"=\" comes second), like event.plan != 'pro'",
            ),
            '=' => return error(at, "write \"==\" to compare, like event.plan == 'pro'"),
            '!' if next == Some('=') => {
                i += 1;
                Tok::Cmp(Op::Ne)
            }
            '!' => {
                return error(
                    at,
                    "write \"not\" instead of \"!\", like not exists(event.coupon)",
                )
            }
            '<' if next == Some('=') => {
                i += 1;
                Tok::Cmp(Op::Le)
            }
            '<' if next == Some('>') => return error(at, "write \"!=\" for \"not equal\""),
            '<' => Tok::Cmp(Op::Lt),
            '>' if next == Some('=') => {
                i += 1;
                Tok::Cmp(Op::Ge)
            }
            '>' => Tok::Cmp(Op::Gt),
            '&' => return error(at, "write \"and\" instead of \"&&\""),
            '|' if next == Some('|') => return error(at, "write \"or\" instead of \"||\""),
            '|' => return error(at, after_a_bar(chars, &tokens, at)),
            '\'' | '"' => {
                let (s, end) = lex_string(chars, at)?;
                i = end;
                tokens.push(Token {
                    kind: Tok::Str(s),
                    at,
                });
                continue;
            }
            '-' if !next.is_some_and(|n| n.is_ascii_digit()) => {
                // `event.first-name` most often; `profile.x - 3d`, date arithmetic, sometimes.
                return error(
                    at,
                    format!(
                        "unexpected \"-\": for a key with \"-\" in it, write it in brackets, like \
                         event['first-name']; conditions have no arithmetic{}",
                        days_hint_after(chars, i + 1)
                    ),
                );
            }
            '+' => {
                return error(
                    at,
                    format!(
                        "unexpected \"+\": conditions have no arithmetic{}",
                        days_hint_after(chars, i + 1)
                    ),
                );
            }
            c if c == '-' || c.is_ascii_digit() => {
                let (n, end) = lex_number(chars, at)?;
                i = end;
                tokens.push(Token {
                    kind: Tok::Number(n),
                    at,
                });
                continue;
            }
            c if is_ident_start(c) => {
                let end = chars[at..]
                    .iter()
                    .position(|&c| !is_ident_char(c))
                    .map_or(chars.len(), |n| at + n);
                tokens.push(Token {
                    kind: Tok::Ident(chars[at..end].iter().collect()),
                    at,
                });
                i = end;
                continue;
            }
            other => {
                return error(
                    at,
                    format!(
                        "unexpected character \"{other}\": conditions are made of paths like event.total, \
                         values like 50 or 'FR', and ==, !=, <, <=, >, >=, in, contains, exists(), and, or, not"
                    ),
                );
            }
        };
        i += 1;
        tokens.push(Token { kind, at });
    }
    tokens.push(Token {
        kind: Tok::End,
        at: chars.len(),
    });
    Ok(tokens)
}

/// What to write for a single `|` at `at`: a template's filter (`event.balance | float`,
/// `event.plan | lower`), which conditions have none of, or an `or` written as in a shell.
fn after_a_bar(chars: &[char], before: &[Token], at: usize) -> String {
    let rest = chars.get(at + 1..).unwrap_or_default();
    let word: String = rest
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take_while(|&&c| is_ident_char(c))
        .collect();
    let lower = word.to_lowercase();
    // `| lower` is a filter; `| lower(event.a) == 'x'` a condition after a shell's `or`.
    let called = rest
        .iter()
        .skip_while(|c| c.is_whitespace())
        .skip_while(|&&c| is_ident_char(c))
        .find(|c| !c.is_whitespace())
        == Some(&'(');
    let filter_named = CASES.contains(&lower.as_str()) && !called;
    if Root::of(&lower).is_some() || (KEYWORDS.contains(&lower.as_str()) && !filter_named) {
        return "write \"or\" between conditions, not \"|\"".to_string();
    }
    // The path the filter was put on: the tokens of a path just before the bar.
    let start = before
        .iter()
        .rev()
        .take_while(|t| match &t.kind {
            Tok::Ident(w) => !KEYWORDS.contains(&w.as_str()),
            Tok::Dot | Tok::LBracket | Tok::RBracket | Tok::Str(_) | Tok::Number(_) => true,
            _ => false,
        })
        .last()
        .map_or(at, |t| t.at);
    let written: String = chars[start..at].iter().collect();
    let path = match written.trim() {
        p if Root::ALL.iter().any(|(root, _)| p.starts_with(root)) => p.to_string(),
        // No path before the bar (a value, a bare word): a placeholder, not a made-up path.
        _ => "<path>".to_string(),
    };
    let filter = if word.is_empty() {
        "\"|\"".to_string()
    } else {
        format!("\"| {word}\"")
    };
    let then = if CASTS.contains(&lower.as_str())
        || ["plus", "minus", "times", "round", "abs"].contains(&lower.as_str())
    {
        format!("to read a number sent as text write number({path}), like number({path}) < 50")
    } else if CASES.contains(&lower.as_str()) {
        case_hint(&lower, &path)
    } else if lower == "default" {
        format!(
            "a missing path is null, so write (not exists({path}) or {path} == 'x') for a \
             default of 'x'"
        )
    } else {
        "they compare paths and values as they are, with the functions exists(), number(), \
         lower(), upper(), days_until(), days_since(), anniversary(), time(), now() and ago(); to \
         join conditions write \"or\""
            .to_string()
    };
    format!("conditions have no filters ({filter} is a template's): {then}")
}

/// A quoted string starting at `at`; returns it and the offset after the closing quote.
fn lex_string(chars: &[char], at: usize) -> Result<(String, usize), ConditionError> {
    let quote = chars[at];
    let mut s = String::new();
    let mut i = at + 1;
    loop {
        match chars.get(i) {
            None => {
                return error(
                    at,
                    format!("this string has no closing quote: end it with {quote}"),
                );
            }
            Some(&c) if c == quote => return Ok((s, i + 1)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('\\') => '\\',
                    Some('\'') => '\'',
                    Some('"') => '"',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    Some('r') => '\r',
                    Some(other) => {
                        return error(
                            i,
                            format!(
                                "unknown escape \"\\{other}\": strings allow \\\\, \\', \\\", \\n, \\t \
                                 and \\r"
                            ),
                        );
                    }
                    None => {
                        return error(
                            at,
                            format!("this string has no closing quote: end it with {quote}"),
                        );
                    }
                };
                s.push(escaped);
                i += 2;
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

/// A number starting at `at` (with an optional minus); returns it and the offset after it.
fn lex_number(chars: &[char], at: usize) -> Result<(Number, usize), ConditionError> {
    let digits_from = |i: usize| {
        chars[i.min(chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = at + usize::from(chars[at] == '-');
    i += digits_from(i);
    let mut integer = true;
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        integer = false;
        i += 1;
        i += digits_from(i);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
        let exp = digits_from(i + 1 + sign);
        if exp > 0 {
            integer = false;
            i += 1 + sign + exp;
        }
    }
    if chars.get(i).is_some_and(|&c| is_ident_char(c)) {
        let end = chars[i..]
            .iter()
            .position(|&c| !is_ident_char(c))
            .map_or(chars.len(), |n| i + n);
        let text: String = chars[at..end].iter().collect();
        let unsigned = text.trim_start_matches('-');
        // `-14d`: days taken from a date, most likely (a bare `3d` may be text: its advice
        // below says to quote it).
        if text.starts_with('-') && is_days(unsigned) {
            return error(
                at,
                format!(
                    "\"{text}\" is not a number: conditions have no arithmetic ({DAYS_HINT}); \
                     to write a duration use ago('{unsigned}')"
                ),
            );
        }
        return error(
            at,
            format!(
                "\"{text}\" is not a number: to write a duration use ago('{text}'), \
                 to write text quote it, like '{text}'"
            ),
        );
    }
    let text: String = chars[at..i].iter().collect();
    let number = if integer {
        text.parse::<i64>()
            .map(Number::from)
            .or_else(|_| text.parse::<u64>().map(Number::from))
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
    } else {
        text.parse::<f64>().ok().and_then(Number::from_f64)
    };
    match number {
        Some(n) => Ok((n, i)),
        None => error(at, format!("the number {text} is too large")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

const KEYWORDS: [&str; 18] = [
    "and",
    "or",
    "not",
    "in",
    "contains",
    "true",
    "false",
    "null",
    "exists",
    "time",
    "now",
    "ago",
    "anniversary",
    "days_until",
    "days_since",
    "number",
    "lower",
    "upper",
];

/// Whether `text` is a duration in days or weeks, like `3d` or `2w`.
fn is_days(text: &str) -> bool {
    text.strip_suffix(['d', 'w'])
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// [`DAYS_HINT`], in parentheses, when a duration in days (`3d`, `2w`) comes at `from` after
/// spaces: a `-` or `+` before it is date arithmetic. Nothing otherwise.
fn days_hint_after(chars: &[char], from: usize) -> String {
    let rest = chars.get(from..).unwrap_or_default();
    let word: String = rest
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take_while(|&&c| is_ident_char(c))
        .collect();
    match is_days(&word) {
        true => format!(" ({DAYS_HINT})"),
        false => String::new(),
    }
}

/// What to write for a date some days ahead or ago, where someone reached for arithmetic.
const DAYS_HINT: &str = "for a date some days away, count the days from today in the user's \
                         zone: days_until(profile.trial_ends_at) == 3 three days before it, \
                         days_since(profile.signed_up_at) == 7 a week after it";

const VALUE_HINT: &str =
    "write a path like event.total, or a value like 50, 'FR', true, null or ['FR', 'DE']";

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    depth: usize,
}

/// The last token is always `Tok::End`, which `bump` never moves past.
static END: Token = Token {
    kind: Tok::End,
    at: 0,
};

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .unwrap_or(&END)
    }

    fn peek_kind_at(&self, n: usize) -> &'t Tok {
        self.tokens.get(self.pos + n).map_or(&END.kind, |t| &t.kind)
    }

    fn bump(&mut self) -> &'t Token {
        let t = self.peek();
        if t.kind != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().kind, Tok::Ident(s) if s == kw)
    }

    fn enter(&mut self, at: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return error(
                at,
                format!("the condition nests deeper than {MAX_DEPTH} levels: remove parentheses or split it"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn expect(
        &mut self,
        want: &Tok,
        message: impl FnOnce(&Tok) -> String,
    ) -> Result<(), ConditionError> {
        let t = self.peek();
        if &t.kind == want {
            self.bump();
            Ok(())
        } else {
            error(t.at, message(&t.kind))
        }
    }

    fn parse_or(&mut self) -> Result<Expr, ConditionError> {
        let first = self.parse_and()?;
        if !self.is_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("or") {
            self.bump();
            items.push(self.parse_and()?);
        }
        Ok(Expr::Or(items))
    }

    fn parse_and(&mut self) -> Result<Expr, ConditionError> {
        let first = self.parse_not()?;
        if !self.is_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("and") {
            self.bump();
            items.push(self.parse_not()?);
        }
        Ok(Expr::And(items))
    }

    fn parse_not(&mut self) -> Result<Expr, ConditionError> {
        if !self.is_keyword("not") {
            return self.parse_comparison();
        }
        let at = self.bump().at;
        if matches!(self.peek_kind_at(0), Tok::Ident(s) if s == "in" || s == "contains") {
            return error(
                at,
                "\"not in\" and \"not contains\" go between two values, like \
                 event.country not in ['FR']",
            );
        }
        self.enter(at)?;
        let inner = self.parse_not()?;
        self.leave();
        Ok(Expr::Not(Box::new(inner)))
    }

    fn parse_comparison(&mut self) -> Result<Expr, ConditionError> {
        let start = self.peek().at;
        let left = match &self.peek().kind {
            Tok::LParen => {
                let open = self.bump().at;
                self.enter(open)?;
                let inner = self.parse_or()?;
                self.expect(&Tok::RParen, |found| {
                    format!(
                        "expected \")\" to close the \"(\" at character {}, found {}",
                        open + 1,
                        found.describe()
                    )
                })?;
                self.leave();
                match inner {
                    // "(event.total) > 5": the group was a value after all.
                    Expr::Truthy(operand) if self.peek_op()?.is_some() => operand,
                    other => {
                        if self.peek_op()?.is_some() {
                            return error(
                                self.peek().at,
                                "parentheses group whole conditions: compare inside them, \
                                 like (event.a == 1) or …",
                            );
                        }
                        return Ok(other);
                    }
                }
            }
            Tok::Ident(s) if s == "exists" || s == "anniversary" => {
                let e = if s == "exists" {
                    self.parse_exists()?
                } else {
                    self.parse_anniversary()?
                };
                if let Some((op, at)) = self.peek_op()? {
                    return error(
                        at,
                        format!(
                            "{s}(…) is a condition by itself, so it can't be compared with \"{}\": \
                             write {s}(…) == true as just {s}(…), and not {s}(…) for false",
                            op.text()
                        ),
                    );
                }
                return Ok(e);
            }
            _ => self.parse_operand()?,
        };
        if let Operand::Path(path) = &left {
            self.reject_template_test(path)?;
        }
        let Some((op, op_at)) = self.peek_op()? else {
            return truthy(left, start);
        };
        self.skip_op(op);
        if let (Operand::Path(path), Op::Eq | Op::Ne) = (&left, op) {
            self.reject_none(path, op)?;
        }
        let right = self.parse_operand()?;
        check_operands(op, &left, &right, op_at)?;
        if let Some((next, at)) = self.peek_op()? {
            return error(
                at,
                format!(
                    "comparisons don't chain: write \"a {} b and b {} c\" with \"and\"",
                    op.text(),
                    next.text()
                ),
            );
        }
        Ok(Expr::Compare {
            op,
            left,
            right,
            at: op_at,
        })
    }

    /// A template's test after a path (`event.from is none`, `profile.email is defined`,
    /// `… is not defined`): conditions have no `is`, and test a path with `exists(…)`.
    fn reject_template_test(&self, path: &Path) -> Result<(), ConditionError> {
        let t = self.peek();
        if !matches!(&t.kind, Tok::Ident(s) if s.eq_ignore_ascii_case("is")) {
            return Ok(());
        }
        let word = |n: usize| match self.peek_kind_at(n) {
            Tok::Ident(s) => Some(s.to_lowercase()),
            _ => None,
        };
        let negated = word(1).as_deref() == Some("not");
        let test = word(if negated { 2 } else { 1 });
        let present = match test.as_deref() {
            Some("defined") => Some(!negated),
            Some("none" | "null" | "undefined") => Some(negated),
            _ => None,
        };
        let message = match (present, test) {
            (Some(present), Some(test)) => {
                let written = if negated {
                    format!("is not {test}")
                } else {
                    format!("is {test}")
                };
                let (write, holds) = if present {
                    (format!("exists({path})"), "is there and not null")
                } else {
                    (
                        format!("not exists({path}) (or {path} == null)"),
                        "is missing or null",
                    )
                };
                format!(
                    "\"{written}\" is a template's test, and conditions have no \"is\": write {write}, \
                     which holds when {path} {holds}"
                )
            }
            _ => format!(
                "conditions have no \"is\": compare with \"==\", like {path} == 'pro', or test whether \
                 the value is there with exists({path}) or not exists({path})"
            ),
        };
        error(t.at, message)
    }

    /// `event.from == none` (or `nil`, `undefined`) after `==` or `!=`: a missing value is
    /// `null`, and `exists(…)` tests for it.
    fn reject_none(&self, path: &Path, op: Op) -> Result<(), ConditionError> {
        let t = self.peek();
        let Tok::Ident(name) = &t.kind else {
            return Ok(());
        };
        let lower = name.to_lowercase();
        if !matches!(lower.as_str(), "none" | "nil" | "undefined")
            || self.peek_kind_at(1) == &Tok::LParen
        {
            return Ok(());
        }
        let write = if op == Op::Eq {
            format!("not exists({path}) (or {path} == null)")
        } else {
            format!("exists({path}) (or {path} != null)")
        };
        error(
            t.at,
            format!(
                "conditions have no \"{name}\": a missing value is null, so write {write}; to write \
                 text, quote it: '{name}'"
            ),
        )
    }

    /// The comparison operator at the cursor, if any, and where it is.
    fn peek_op(&self) -> Result<Option<(Op, usize)>, ConditionError> {
        let t = self.peek();
        let op =
            match &t.kind {
                Tok::Cmp(op) => *op,
                Tok::Ident(s) if s == "in" => Op::In,
                Tok::Ident(s) if s == "contains" => Op::Contains,
                Tok::Ident(s) if s == "not" => match self.peek_kind_at(1) {
                    Tok::Ident(s) if s == "in" => Op::NotIn,
                    Tok::Ident(s) if s == "contains" => Op::NotContains,
                    _ => return error(
                        t.at,
                        "after a value, \"not\" goes with \"in\" or \"contains\" (a not in b); \
                         to negate a comparison put not first: not (a == b)",
                    ),
                },
                _ => return Ok(None),
            };
        Ok(Some((op, t.at)))
    }

    fn skip_op(&mut self, op: Op) {
        self.bump();
        if matches!(op, Op::NotIn | Op::NotContains) {
            self.bump();
        }
    }

    fn parse_exists(&mut self) -> Result<Expr, ConditionError> {
        self.bump();
        self.expect(&Tok::LParen, |_| {
            "write exists with a path in parentheses, like exists(event.coupon)".into()
        })?;
        let t = self.bump();
        let path = match &t.kind {
            Tok::Ident(root) if Root::of(root).is_some() => self.parse_path(root, t.at)?,
            _ => return error(t.at, "exists() takes a path, like exists(event.coupon)"),
        };
        self.expect(&Tok::RParen, |found| {
            format!(
                "expected \")\" to close exists(, found {}",
                found.describe()
            )
        })?;
        Ok(Expr::Exists(path))
    }

    /// `anniversary(path)` or `anniversary(path, '7d')`: a path holding a date, and how many
    /// whole days before its anniversary the condition holds.
    fn parse_anniversary(&mut self) -> Result<Expr, ConditionError> {
        self.bump();
        self.open_call("anniversary")?;
        let t = self.bump();
        let path =
            match &t.kind {
                Tok::Ident(root) if Root::of(root).is_some() => self.parse_path(root, t.at)?,
                _ => return error(
                    t.at,
                    "anniversary() takes a path holding a date, like anniversary(profile.birthday)",
                ),
            };
        let mut days = 0;
        if self.peek().kind == Tok::Comma {
            self.bump();
            let t = self.bump();
            let Tok::Str(text) = &t.kind else {
                return error(
                    t.at,
                    "anniversary()'s second argument is how long before the day, in days and quotes, like anniversary(profile.renews_on, '7d')",
                );
            };
            // Days after the day: a one-off date's count, or a wait after the day.
            if let Some(after) = text.trim().strip_prefix('-') {
                let n = after
                    .parse::<Duration>()
                    .ok()
                    .map(|d| d.as_secs() / 86_400)
                    .filter(|n| *n > 0)
                    .map_or_else(|| "3".to_string(), |n| n.to_string());
                return error(
                    t.at,
                    format!(
                        "anniversary() counts days before the day, not after: for {n} days after a one-off date write days_since({path}) == {n}; for {n} days after each year's day, enter on anniversary({path}) and begin the steps with `wait: {n}d`"
                    ),
                );
            }
            let d = text
                .parse::<Duration>()
                .map_err(|e| ConditionError {
                    offset: t.at,
                    message: format!("in anniversary(…, '{text}'): {}", e.message),
                })?
                .as_secs();
            if d % 86_400 != 0 || d > 365 * 86_400 {
                return error(
                    t.at,
                    format!(
                        "'{text}' is not a whole number of days up to a year: write days, like '7d' or '2w'"
                    ),
                );
            }
            days = (d / 86_400) as i64;
        }
        self.expect(&Tok::RParen, |found| {
            format!(
                "expected \")\" to close anniversary(, found {}",
                found.describe()
            )
        })?;
        Ok(Expr::Anniversary { path, days })
    }

    fn parse_operand(&mut self) -> Result<Operand, ConditionError> {
        let t = self.bump();
        match &t.kind {
            Tok::Number(n) => Ok(Operand::Literal(Value::Number(n.clone()))),
            Tok::Str(s) => Ok(Operand::Literal(Value::String(s.clone()))),
            Tok::LBracket => self.parse_list(t.at),
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Operand::Literal(Value::Bool(true))),
                "false" => Ok(Operand::Literal(Value::Bool(false))),
                "null" => Ok(Operand::Literal(Value::Null)),
                "event" | "trigger" | "waited" | "profile" => {
                    Ok(Operand::Path(self.parse_path(name, t.at)?))
                }
                "now" => {
                    self.open_call("now")?;
                    self.close_call("now", "takes no arguments")?;
                    Ok(Operand::Now)
                }
                "time" => self.parse_time(),
                "ago" => self.parse_ago(),
                "days_until" => self.parse_days(Days::Until),
                "days_since" => self.parse_days(Days::Since),
                "number" => self.parse_number(),
                "lower" => self.parse_case(Case::Lower),
                "upper" => self.parse_case(Case::Upper),
                "exists" => error(
                    t.at,
                    "exists(…) is a condition by itself: combine it with and / or, like \
                     exists(event.coupon) and event.total > 50",
                ),
                "anniversary" => error(
                    t.at,
                    "anniversary(…) is a condition by itself: combine it with and / or, like \
                     anniversary(profile.birthday) and profile.plan == 'pro'",
                ),
                kw if KEYWORDS.contains(&kw) => error(
                    t.at,
                    format!("expected a value, found \"{kw}\": {VALUE_HINT}"),
                ),
                other => error(t.at, unknown_name(other, self.peek().kind == Tok::LParen)),
            },
            Tok::End => error(t.at, format!("the condition ends too early: {VALUE_HINT}")),
            Tok::Dot if matches!(self.peek().kind, Tok::Number(_)) => error(
                t.at,
                "write numbers with a digit before the point, like 0.5",
            ),
            other => error(
                t.at,
                format!("expected a value, found {}: {VALUE_HINT}", other.describe()),
            ),
        }
    }

    fn parse_path(&mut self, root: &str, at: usize) -> Result<Path, ConditionError> {
        let root = Root::of(root).unwrap_or(Root::Profile);
        let mut segments = Vec::new();
        loop {
            match &self.peek().kind {
                Tok::Dot => {
                    self.bump();
                    let t = self.bump();
                    match &t.kind {
                        Tok::Ident(key) => segments.push(Segment::Key(key.clone())),
                        Tok::Number(_) => {
                            return error(
                                t.at,
                                "write array elements in brackets, like event.items[0]",
                            );
                        }
                        other => {
                            return error(
                                t.at,
                                format!(
                                    "expected a field name after \".\", found {}; for other keys write \
                                     them in brackets, like ['first name']",
                                    other.describe()
                                ),
                            );
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let t = self.bump();
                    let segment = match &t.kind {
                        Tok::Str(key) => Segment::Key(key.clone()),
                        Tok::Number(n) => match n.as_u64().and_then(|i| usize::try_from(i).ok()) {
                            Some(i) => Segment::Index(i),
                            None => {
                                let message = format!(
                                    "{n} is not an index: write a whole number from 0, like [0]"
                                );
                                return error(t.at, message);
                            }
                        },
                        other => {
                            return error(
                                t.at,
                                format!(
                                    "expected an index like [0] or a key like ['name'], found {}",
                                    other.describe()
                                ),
                            );
                        }
                    };
                    self.expect(&Tok::RBracket, |found| {
                        format!("expected \"]\", found {}", found.describe())
                    })?;
                    segments.push(segment);
                }
                _ => break,
            }
        }
        if segments.is_empty() {
            let name = root.name();
            return error(
                at,
                format!("write a field after \"{name}\", like {name}.total"),
            );
        }
        Ok(Path { root, segments })
    }

    fn parse_list(&mut self, open: usize) -> Result<Operand, ConditionError> {
        self.enter(open)?;
        let mut items = Vec::new();
        loop {
            if self.peek().kind == Tok::RBracket {
                self.bump();
                break;
            }
            let at = self.peek().at;
            let item = self.parse_operand()?;
            if matches!(
                item,
                Operand::Path(_)
                    | Operand::List(_)
                    | Operand::Days(..)
                    | Operand::Number(_)
                    | Operand::Case(..)
                    | Operand::TimeOf(_)
            ) {
                return error(
                    at,
                    "lists hold values like 1, 'a', true, null or time('…'), not paths or lists",
                );
            }
            items.push(item);
            let t = self.bump();
            match t.kind {
                Tok::Comma => {}
                Tok::RBracket => break,
                ref other => {
                    return error(
                        t.at,
                        format!(
                            "expected \",\" or \"]\" in the list opened at character {}, found {}",
                            open + 1,
                            other.describe()
                        ),
                    );
                }
            }
        }
        self.leave();
        Ok(Operand::List(items))
    }

    fn open_call(&mut self, name: &str) -> Result<(), ConditionError> {
        self.expect(&Tok::LParen, |_| {
            format!(
                "{name} is a function: write {name}(…), like {}",
                example(name)
            )
        })
    }

    fn close_call(&mut self, name: &str, what: &str) -> Result<(), ConditionError> {
        self.expect(&Tok::RParen, |_| {
            format!("{name}() {what}, like {}", example(name))
        })
    }

    /// The string argument of `name(…)`, and where it is.
    fn string_argument(
        &mut self,
        name: &str,
        what: &str,
    ) -> Result<(String, usize), ConditionError> {
        self.open_call(name)?;
        let t = self.bump();
        let Tok::Str(s) = &t.kind else {
            return error(
                t.at,
                format!("{name}() takes {what} in quotes, like {}", example(name)),
            );
        };
        self.close_call(name, &format!("takes one argument, {what} in quotes"))?;
        Ok((s.clone(), t.at))
    }

    /// `time('…')`, or `time(path)`, its name just read.
    fn parse_time(&mut self) -> Result<Operand, ConditionError> {
        let what = "an RFC 3339 time in quotes, or a path holding one";
        self.open_call("time")?;
        let t = self.bump();
        let (s, at) = match &t.kind {
            Tok::Str(s) => (s.clone(), t.at),
            Tok::Ident(root) if Root::of(root).is_some() => {
                let path = self.parse_path(root, t.at)?;
                self.close_call("time", &format!("takes one argument, {what}"))?;
                return Ok(Operand::TimeOf(path));
            }
            _ => {
                return error(
                    t.at,
                    format!("time() takes {what}, like {}", example("time")),
                )
            }
        };
        self.close_call("time", &format!("takes one argument, {what}"))?;
        match s.parse::<Timestamp>() {
            Ok(t) => Ok(Operand::Time(t)),
            Err(_) => error(
                at,
                format!(
                    "'{s}' is not an RFC 3339 time: write a date, a time and an offset, like \
                     time('2026-01-01T00:00:00Z') or time('2026-01-01T09:00:00+01:00')"
                ),
            ),
        }
    }

    fn parse_ago(&mut self) -> Result<Operand, ConditionError> {
        let (s, at) = self.string_argument("ago", "a duration")?;
        if s.trim_start().starts_with('-') {
            return error(
                at,
                format!(
                    "ago('{s}'): ago() counts back from now and takes no minus; a time ahead is \
                     compared with now(), like profile.renews_at > now(); {DAYS_HINT}"
                ),
            );
        }
        match s.parse::<Duration>() {
            Ok(d) => Ok(Operand::Ago(d)),
            Err(e) => error(at, format!("in ago('{s}'): {}", e.message)),
        }
    }

    /// `days_until(path)` or `days_since(path)`, its name just read: a path holding a date.
    fn parse_days(&mut self, days: Days) -> Result<Operand, ConditionError> {
        let name = days.name();
        self.open_call(name)?;
        let t = self.bump();
        let path = match &t.kind {
            Tok::Ident(root) if Root::of(root).is_some() => self.parse_path(root, t.at)?,
            Tok::Str(s) => {
                return error(
                    t.at,
                    format!(
                        "{name}() takes a path holding a date, not the date itself, like {}; \
                         to compare a date with a fixed day, write profile.renews_on == '{s}'",
                        example(name)
                    ),
                )
            }
            _ => {
                return error(
                    t.at,
                    format!(
                        "{name}() takes a path holding a date, like {}",
                        example(name)
                    ),
                )
            }
        };
        self.expect(&Tok::RParen, |found| {
            let n = if days == Days::Until { 3 } else { 7 };
            match found {
                Tok::Comma => format!(
                    "{name}() takes one path, and gives a number of days to compare: write \
                     {name}(…) == {n}, not a second argument"
                ),
                other => format!(
                    "expected \")\" to close {name}(, found {}",
                    other.describe()
                ),
            }
        })?;
        Ok(Operand::Days(days, path))
    }

    /// `number(path)`, its name just read: a path holding a number, or text that says one.
    fn parse_number(&mut self) -> Result<Operand, ConditionError> {
        self.open_call("number")?;
        let t = self.bump();
        let path = match &t.kind {
            Tok::Ident(root) if Root::of(root).is_some() => self.parse_path(root, t.at)?,
            Tok::Str(s) => {
                let write = match number_in_text(s) {
                    Some(_) => format!("the number itself, unquoted: {}", number_literal(s)),
                    None => format!("a path, like {}", example("number")),
                };
                return error(
                    t.at,
                    format!("number() reads a path holding a number sent as text; write {write}"),
                );
            }
            _ => {
                return error(
                    t.at,
                    format!(
                        "number() takes a path holding a number or text that says one, like {}",
                        example("number")
                    ),
                )
            }
        };
        self.expect(&Tok::RParen, |found| {
            format!(
                "expected \")\" to close number(, found {}",
                found.describe()
            )
        })?;
        Ok(Operand::Number(path))
    }

    /// `lower(path)` or `upper(path)`, its name just read: a path holding text.
    fn parse_case(&mut self, case: Case) -> Result<Operand, ConditionError> {
        let name = case.name();
        self.open_call(name)?;
        let t = self.bump();
        let path = match &t.kind {
            Tok::Ident(root) if Root::of(root).is_some() => self.parse_path(root, t.at)?,
            Tok::Str(s) => {
                return error(
                    t.at,
                    format!(
                        "{name}() reads a path holding text, like {}; text in quotes compares as \
                         written, so write it in {name} case: '{}'",
                        example(name),
                        case.of(s)
                    ),
                )
            }
            Tok::Ident(f) if self.peek().kind == Tok::LParen => {
                return error(
                    t.at,
                    format!(
                        "{name}() takes a path, not {f}(…): functions don't nest; write {}",
                        example(name)
                    ),
                )
            }
            _ => {
                return error(
                    t.at,
                    format!("{name}() takes a path holding text, like {}", example(name)),
                )
            }
        };
        self.expect(&Tok::RParen, |found| match found {
            Tok::Comma => format!(
                "{name}() takes one path: write one {name}(…) for each, like {}",
                example(name)
            ),
            other => format!(
                "expected \")\" to close {name}(, found {}",
                other.describe()
            ),
        })?;
        Ok(Operand::Case(case, path))
    }
}

fn example(function: &str) -> &'static str {
    match function {
        "number" => "number(event.balance) < 50",
        "lower" => "lower(event.country) == 'de'",
        "upper" => "upper(event.country) == 'DE'",
        "time" => "time('2026-01-01T00:00:00Z')",
        "ago" => "ago('7d')",
        "now" => "now()",
        "anniversary" => "anniversary(profile.birthday)",
        "days_until" => "days_until(profile.trial_ends_at) == 3",
        "days_since" => "days_since(profile.signed_up_at) == 7",
        _ => "exists(event.coupon)",
    }
}

fn unknown_name(name: &str, called: bool) -> String {
    let lower = name.to_lowercase();
    if KEYWORDS.contains(&lower.as_str()) || Root::of(&lower).is_some() {
        return format!("write \"{lower}\" in lower case");
    }
    if called {
        const FUNCTIONS: &str = "the functions are exists(), anniversary(), days_until(), \
                                 days_since(), number(), lower(), upper(), time(), now() and ago()";
        if CASTS.contains(&lower.as_str()) {
            return format!("unknown function \"{name}\": {NUMBER_HINT}");
        }
        if CASES.contains(&lower.as_str()) {
            return format!("unknown function \"{name}\": {}", case_hint(&lower, "…"));
        }
        // `date_diff`, `days_between`, `today`, `from_now`, `datediff`, `add_days`…, whole
        // words of the name: not the "date" in `validate` or the "day" in `birthday`.
        const DATE_WORDS: [&str; 18] = [
            "day",
            "days",
            "date",
            "dates",
            "diff",
            "today",
            "tomorrow",
            "yesterday",
            "later",
            "ahead",
            "datediff",
            "dateadd",
            "datesub",
            "daysbetween",
            "daysleft",
            "adddays",
            "daysuntil",
            "dayssince",
        ];
        let words: Vec<&str> = lower.split('_').collect();
        let dates = words.iter().any(|w| DATE_WORDS.contains(w))
            || words.windows(2).any(|w| w == ["from", "now"]);
        if dates {
            return format!("unknown function \"{name}\": {DAYS_HINT}; {FUNCTIONS}");
        }
        return format!("unknown function \"{name}\": {FUNCTIONS}");
    }
    if name == crate::secrets::ROOT {
        return format!(
            "unknown name \"{name}\": {}",
            crate::secrets::ONLY_IN_WEBHOOKS
        );
    }
    format!(
        "unknown name \"{name}\": paths start with \"event.\" or \"profile.\", like event.{name} or \
         profile.{name} (or \"trigger.\", the enrollment's trigger event, and \"waited.\", the event \
         its latest wait_for met); to write text, quote it: '{name}'"
    )
}

/// Other languages' names for reading a number from text (`float(…)`, `| int`, `| plus: 0`),
/// which `number(…)` is here.
const CASTS: [&str; 16] = [
    "float",
    "int",
    "integer",
    "decimal",
    "double",
    "num",
    "to_number",
    "tonumber",
    "to_integer",
    "to_float",
    "to_f",
    "to_i",
    "parsefloat",
    "parseint",
    "parse_float",
    "parse_int",
];

/// What to write for a number sent as text.
const NUMBER_HINT: &str = "to read a number sent as text (\"12.50\") write number(…), like \
                           number(event.balance) < 50";

/// Other languages' names for changing a text's case, which `lower(…)` and `upper(…)` are here.
const CASES: [&str; 10] = [
    "lower",
    "upper",
    "lowercase",
    "uppercase",
    "downcase",
    "upcase",
    "capitalize",
    "title",
    "tolowercase",
    "touppercase",
];

/// What to write where someone reached for a text's case with `word` (`| downcase`,
/// `toUpperCase`), on `path` (`…` when not known).
fn case_hint(word: &str, path: &str) -> String {
    let (case, text) = match word {
        "upper" | "uppercase" | "upcase" | "touppercase" => (Case::Upper, "PRO"),
        _ => (Case::Lower, "pro"),
    };
    let name = case.name();
    let like = match path {
        "…" => "event.plan",
        p => p,
    };
    format!(
        "to compare text whatever its case write {name}({path}), like {name}({like}) == '{text}'"
    )
}

/// A bare operand used as a condition: only paths and `true`/`false` make sense.
fn truthy(operand: Operand, at: usize) -> Result<Expr, ConditionError> {
    if let Operand::Case(case, _) = &operand {
        let name = case.name();
        return error(
            at,
            format!(
                "{name}(…) is text, not a condition by itself: compare it, like {}",
                example(name)
            ),
        );
    }
    if let Operand::Days(days, _) = &operand {
        let name = days.name();
        return error(
            at,
            format!(
                "{name}(…) is a number of days, not a condition by itself: compare it, like {}",
                example(name)
            ),
        );
    }
    match operand.kind() {
        Kind::Unknown | Kind::Bool => Ok(Expr::Truthy(operand)),
        kind => error(
            at,
            format!(
                "{} is not a condition by itself: compare it with something, like event.total >= 50",
                kind.name()
            ),
        ),
    }
}

/// Rejects comparisons that are false whatever the event and profile, judging by literals.
fn check_operands(
    op: Op,
    left: &Operand,
    right: &Operand,
    at: usize,
) -> Result<(), ConditionError> {
    let (l, r) = (left.kind(), right.kind());
    let op_text = op.text();
    match op {
        Op::In | Op::NotIn => {
            if !matches!(r, Kind::Unknown | Kind::List | Kind::String) {
                return error(
                    at,
                    format!(
                        "\"{op_text}\" needs a list, an array path or a string after it, not {}: like \
                         event.country {op_text} ['FR', 'DE']",
                        r.name()
                    ),
                );
            }
        }
        Op::Contains | Op::NotContains => {
            if !matches!(l, Kind::Unknown | Kind::List | Kind::String) {
                return error(
                    at,
                    format!(
                        "\"{op_text}\" needs an array path, a list or a string before it, not {}: like \
                         event.tags {op_text} 'gift'",
                        l.name()
                    ),
                );
            }
        }
        _ => {
            for kind in [l, r] {
                if op.is_ordering() && matches!(kind, Kind::Null | Kind::Bool | Kind::List) {
                    return error(
                        at,
                        format!(
                            "\"{op_text}\" compares numbers, strings and times, not {}: for true, false or \
                             null use == or !=",
                            kind.name()
                        ),
                    );
                }
            }
            // days_until(…) is null when its path holds no date, number(…) when it holds no
            // number, lower(…) and upper(…) when it holds no text, as a path is when missing.
            let days_or_null = |a: &Operand, b: Kind| {
                matches!(
                    a,
                    Operand::Days(..) | Operand::Number(_) | Operand::Case(..) | Operand::TimeOf(_)
                ) && b == Kind::Null
            };
            let comparable = l == r
                || l == Kind::Unknown
                || r == Kind::Unknown
                || days_or_null(left, r)
                || days_or_null(right, l)
                || matches!(
                    (l, r),
                    (Kind::String, Kind::Time) | (Kind::Time, Kind::String)
                );
            if !comparable {
                // `number(event.balance) < '50'`: the number in quotes.
                let quoted = [(left, r), (right, l)]
                    .into_iter()
                    .find_map(|(o, other)| match (o, other) {
                        (Operand::Literal(Value::String(s)), Kind::Number) => {
                            number_in_text(s).map(|_| number_literal(s))
                        }
                        _ => None,
                    })
                    .map_or(String::new(), |n| {
                        format!(": write the number unquoted, {n}")
                    });
                return error(
                    at,
                    format!(
                        "this compares {} with {}, which is never true{quoted}",
                        l.name(),
                        r.name()
                    ),
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// The day a text names: `1990-05-17`, or the date of an RFC 3339 time as written
/// (`1990-05-17T00:00:00Z` is the 17th whatever its offset: a birthday is a day, not an instant).
fn date_in(text: &str) -> Option<jiff::civil::Date> {
    let day = text.get(..10)?;
    let rest = &text[10..];
    if !(rest.is_empty() || rest.starts_with(['T', 't', ' '])) {
        return None;
    }
    day.parse().ok()
}

/// The day whose anniversary `anniversary(…)` looks for in `value`: a day, or an RFC 3339
/// time's date as written ([`date_in`]); a time that writes no date, a number or text of
/// digits alone as a wait reads them (seconds since 1970, milliseconds from 1e11 on:
/// [`crate::template::digits_time`], so other digits are no date), dated in the user's zone.
fn anniversary_date(value: &Value, scope: &Scope<'_>) -> Option<jiff::civil::Date> {
    let at = match value {
        Value::String(text) => match crate::template::digits_time(text) {
            Some(at) => at?,
            None => return date_in(text),
        },
        Value::Number(n) => crate::template::epoch_number(n.as_f64()?)?,
        _ => return None,
    };
    Some(user_zone(scope).to_datetime(at).date())
}

/// The user's zone (`profile.timezone`, else the journey's default, else UTC).
fn user_zone(scope: &Scope<'_>) -> jiff::tz::TimeZone {
    crate::template::zone_of(
        scope.profile.get("timezone").and_then(Value::as_str),
        scope.zone,
    )
}

/// Today in the user's zone.
fn today(scope: &Scope<'_>) -> jiff::civil::Date {
    user_zone(scope).to_datetime(scope.now).date()
}

/// Whether `days` days after today, in the user's zone, is the day and month of `date`; a
/// 29 February's is the 28th in other years.
fn is_anniversary(date: jiff::civil::Date, scope: &Scope<'_>, days: i64) -> bool {
    let Some(day) = today(scope).checked_add(jiff::Span::new().days(days)).ok() else {
        return false;
    };
    let leap_day = date.month() == 2 && date.day() == 29;
    (day.month(), day.day()) == (date.month(), date.day())
        || (leap_day && !day.in_leap_year() && day.month() == 2 && day.day() == 28)
}

static NULL: Value = Value::Null;

/// The whole days from today, in the user's zone, to the date `value` holds, negative once it
/// is past; none when it holds no date. A time with an offset or `Z` is an instant, and its date
/// is the one in her zone, as a wait and the `date` filter read it (`…T03:00:00Z` is the day
/// before in Los Angeles); a day, or a local date and time without an offset, is the date as
/// written. A number is a time as a wait reads it: seconds since 1970, milliseconds from 1e11
/// on (`trial_end: 1797638400`, as Stripe sends it), dated in her zone, and so is text of digits
/// alone that a wait reads as one (`"1797638400"`: [`crate::template::digits_time`]; other
/// digits, `"20261219"`, are no date).
fn days_until(value: Option<&Value>, scope: &Scope<'_>) -> Option<i64> {
    let date = match value? {
        Value::String(text) => {
            if let Some(at) = crate::template::digits_time(text) {
                user_zone(scope).to_datetime(at?).date()
            } else {
                let written = date_in(text)?;
                match crate::template::instant_text(text) {
                    Some(at) => user_zone(scope).to_datetime(at).date(),
                    None => written,
                }
            }
        }
        Value::Number(n) => {
            let at = crate::template::epoch_number(n.as_f64()?)?;
            user_zone(scope).to_datetime(at).date()
        }
        _ => return None,
    };
    let span = today(scope).until((jiff::Unit::Day, date)).ok()?;
    Some(i64::from(span.get_days()))
}

/// A value during evaluation: from the data, a time, a list literal, or a number made while
/// reading (a number of days, or the number a text says).
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Json(&'a Value),
    Time(Timestamp),
    List(&'a [Operand]),
    Int(i64),
    Float(f64),
}

impl Val<'_> {
    /// The number it is, if it is one.
    fn number(self) -> Option<Number> {
        match self {
            Val::Json(Value::Number(n)) => Some(n.clone()),
            Val::Int(i) => Some(Number::from(i)),
            Val::Float(f) => Number::from_f64(f),
            _ => None,
        }
    }

    /// Whether it is a number made while reading (not one from the data).
    fn is_made_number(self) -> bool {
        matches!(self, Val::Int(_) | Val::Float(_))
    }
}

/// The number `value` holds, or the one its text says as the templates' `round` and `abs` read
/// it (`"12.50"`, `" 7 "`, `"1e3"`; a whole number exactly); `None` for anything else
/// (`"12,50"`, `"£5"`, `""`, `true`).
fn number_in<'a>(value: Option<&'a Value>) -> Val<'a> {
    match value {
        Some(v @ Value::Number(_)) => Val::Json(v),
        Some(Value::String(text)) => match number_in_text(text) {
            Some(Ok(i)) => Val::Int(i),
            Some(Err(f)) => Val::Float(f),
            None => Val::Json(&NULL),
        },
        _ => Val::Json(&NULL),
    }
}

/// Text that says a number, as a condition writes the number (`"+.5"` is `0.5`).
fn number_literal(text: &str) -> String {
    let text = text.trim();
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    match unsigned.starts_with('.') {
        true => format!("{sign}0{unsigned}"),
        false => format!("{sign}{unsigned}"),
    }
}

/// The number a text says: a whole number (`Ok`) or any other finite one (`Err`).
fn number_in_text(text: &str) -> Option<Result<i64, f64>> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Some(Ok(i));
    }
    // Rust reads "inf" and "NaN" too, which are no amounts.
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && text.bytes().any(|b| b.is_ascii_digit()))
        .map(Err)
}

impl Expr {
    fn holds(&self, scope: &Scope<'_>) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.holds(scope)),
            Expr::And(items) => items.iter().all(|e| e.holds(scope)),
            Expr::Not(inner) => !inner.holds(scope),
            Expr::Exists(path) => path.lookup(scope).is_some_and(|v| !v.is_null()),
            Expr::Anniversary { path, days } => path
                .lookup(scope)
                .and_then(|v| anniversary_date(v, scope))
                .is_some_and(|date| is_anniversary(date, scope, *days)),
            Expr::Truthy(operand) => matches!(
                operand.value(scope, &mut None),
                Val::Json(Value::Bool(true))
            ),
            Expr::Compare {
                op, left, right, ..
            } => {
                let (mut made_left, mut made_right) = (None, None);
                let l = left.value(scope, &mut made_left);
                let r = right.value(scope, &mut made_right);
                // Two operands that both read nothing (a missing path, a function of one) are
                // not equal: `event.order_id == trigger.order_id` is not met by two events that
                // both lack it. `== null`, the literal, still tells a missing value.
                let neither = || nothing(left, l) && nothing(right, r);
                match op {
                    Op::Eq => !neither() && equal(l, r, scope),
                    Op::Ne => neither() || !equal(l, r, scope),
                    Op::Lt => order(l, r) == Some(Ordering::Less),
                    Op::Le => matches!(order(l, r), Some(Ordering::Less | Ordering::Equal)),
                    Op::Gt => order(l, r) == Some(Ordering::Greater),
                    Op::Ge => matches!(order(l, r), Some(Ordering::Greater | Ordering::Equal)),
                    Op::In => member(l, r, scope),
                    Op::NotIn => !member(l, r, scope),
                    Op::Contains => member(r, l, scope),
                    Op::NotContains => !member(r, l, scope),
                }
            }
        }
    }
}

/// The keys under which a user's addresses are kept (traits, and an event's own copies).
/// Parts of a key (in any case) that mark what it holds as an address or a secret, which
/// [`Condition::values`] does not show: `Email`, `email_address`, `phone_number`, `fcm_token`,
/// `password`, `card_number`, `shipping_address`…
const PRIVATE_KEY_PARTS: [&str; 13] = [
    "email", "phone", "mobile", "token", "password", "passwd", "secret", "card", "address", "iban",
    "ssn", "api_key", "apikey",
];

/// Whether a key names what may be an address or a secret (see [`PRIVATE_KEY_PARTS`]).
fn is_private_key(k: &str) -> bool {
    PRIVATE_KEY_PARTS.iter().any(|part| {
        k.as_bytes()
            .windows(part.len())
            .any(|w| w.eq_ignore_ascii_case(part.as_bytes()))
    })
}

impl Path {
    /// Whether the path reads what may be an address or a secret (see [`PRIVATE_KEY_PARTS`]).
    fn is_private(&self) -> bool {
        self.segments.iter().any(|s| match s {
            Segment::Key(k) => is_private_key(k),
            Segment::Index(_) => false,
        })
    }

    fn lookup<'a>(&self, scope: &Scope<'a>) -> Option<&'a Value> {
        let mut value = match self.root {
            Root::Event => scope.event,
            Root::Trigger => scope.trigger,
            Root::Waited => scope.waited,
            Root::Profile => scope.profile,
        };
        for segment in &self.segments {
            value = match (segment, value) {
                (Segment::Key(k), Value::Object(map)) => map.get(k)?,
                (Segment::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

impl Operand {
    /// What the operand reads in `scope`. The text `lower(…)` or `upper(…)` makes is kept in
    /// `made`, which the value borrows.
    fn value<'a>(&'a self, scope: &Scope<'a>, made: &'a mut Option<Value>) -> Val<'a> {
        match self {
            Operand::Path(p) => Val::Json(p.lookup(scope).unwrap_or(&NULL)),
            Operand::Literal(v) => Val::Json(v),
            Operand::List(items) => Val::List(items),
            Operand::Time(t) => Val::Time(*t),
            Operand::TimeOf(p) => match p.lookup(scope) {
                Some(Value::String(text)) => parse_time(text).map_or(Val::Json(&NULL), Val::Time),
                _ => Val::Json(&NULL),
            },
            Operand::Now => Val::Time(scope.now),
            Operand::Ago(d) => {
                Val::Time(scope.now.checked_sub(d.to_jiff()).unwrap_or(Timestamp::MIN))
            }
            Operand::Days(days, p) => match (days, days_until(p.lookup(scope), scope)) {
                (Days::Until, Some(n)) => Val::Int(n),
                (Days::Since, Some(n)) => Val::Int(-n),
                (_, None) => Val::Json(&NULL),
            },
            Operand::Number(p) => number_in(p.lookup(scope)),
            Operand::Case(case, p) => match p.lookup(scope) {
                Some(Value::String(text)) => Val::Json(made.insert(Value::String(case.of(text)))),
                _ => Val::Json(&NULL),
            },
        }
    }
}

/// Whether `operand` read nothing: a path (or a function of one) that found no value or
/// `null`, not the literal `null`.
fn nothing(operand: &Operand, value: Val<'_>) -> bool {
    !matches!(operand, Operand::Literal(_)) && matches!(value, Val::Json(Value::Null))
}

fn parse_time(s: &str) -> Option<Timestamp> {
    crate::template::instant_text(s)
}

fn equal(a: Val<'_>, b: Val<'_>, scope: &Scope<'_>) -> bool {
    match (a, b) {
        (Val::Json(x), Val::Json(y)) => json_equal(x, y),
        _ if a.is_made_number() || b.is_made_number() => order(a, b) == Some(Ordering::Equal),
        (Val::Time(t), Val::Time(u)) => t == u,
        (Val::Time(t), Val::Json(Value::String(s)))
        | (Val::Json(Value::String(s)), Val::Time(t)) => parse_time(s) == Some(t),
        (Val::List(items), Val::Json(Value::Array(values)))
        | (Val::Json(Value::Array(values)), Val::List(items)) => {
            items.len() == values.len()
                && items
                    .iter()
                    .zip(values)
                    .all(|(i, v)| equal(i.value(scope, &mut None), Val::Json(v), scope))
        }
        (Val::List(xs), Val::List(ys)) => {
            xs.len() == ys.len()
                && xs.iter().zip(ys).all(|(x, y)| {
                    equal(x.value(scope, &mut None), y.value(scope, &mut None), scope)
                })
        }
        _ => false,
    }
}

/// JSON equality as conditions compare: numbers by value (`1` is `1.0`), arrays and objects
/// element by element.
pub(crate) fn json_equal(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => x == y,
    }
}

/// Integers compare exactly; anything with a fraction compares as floating point.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn order(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.number(), b.number()) {
        return compare_numbers(&x, &y);
    }
    match (a, b) {
        (Val::Json(Value::String(x)), Val::Json(Value::String(y))) => Some(x.cmp(y)),
        (Val::Time(t), Val::Time(u)) => Some(t.cmp(&u)),
        (Val::Time(t), Val::Json(Value::String(s))) => parse_time(s).map(|u| t.cmp(&u)),
        (Val::Json(Value::String(s)), Val::Time(t)) => parse_time(s).map(|u| u.cmp(&t)),
        _ => None,
    }
}

/// Whether `needle` is an element of the list or array `hay`, or a substring of the string `hay`.
fn member(needle: Val<'_>, hay: Val<'_>, scope: &Scope<'_>) -> bool {
    match hay {
        Val::List(items) => items
            .iter()
            .any(|i| equal(needle, i.value(scope, &mut None), scope)),
        Val::Json(Value::Array(values)) => {
            values.iter().any(|v| equal(needle, Val::Json(v), scope))
        }
        Val::Json(Value::String(h)) => {
            matches!(needle, Val::Json(Value::String(n)) if h.contains(n.as_str()))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Journey files.

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Condition;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a condition like \"event.total >= 50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Condition, E> {
                Condition::parse(v).map_err(|e| {
                    E::custom(format!("{} (at character {})", e.message, e.offset + 1))
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_LEN,
            "description": "A condition over event.*, trigger.*, waited.* and profile.*: paths like event.total or \
                            event.items[0].sku; values 50, 'FR', true, null, ['FR', 'DE'], \
                            time('2026-01-01T00:00:00Z'), time(path) (an RFC 3339 time it holds, \
                            as an instant whatever its offset), now(), ago('7d'), days_until(path) and \
                            days_since(path) (whole days from today to a date, in the user's zone), \
                            number(path) (a number, or text that says one: \"12.50\"), \
                            lower(path) and upper(path) (its text in lower or upper case); \
                            operators ==, !=, <, <=, >, >=, in, not in, contains, exists(path), \
                            anniversary(path), and, or, not, parentheses.",
            "examples": [
                "event.total >= 50 and profile.country in ['FR', 'DE']",
                "profile.last_order_at < ago('30d')",
                "days_until(profile.trial_ends_at) == 3"
            ]
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A path alone.

/// A path alone, as a step reads one value from the event or the profile
/// (`wait_until: {date: event.appointment_at}`): the paths of conditions, nothing else. Two are
/// equal when they read the same path, written alike, whatever the space before it.
#[derive(Debug, Clone)]
pub struct ValuePath {
    source: String,
    path: Path,
    /// The characters of space before the path in the text it was read from.
    leading: usize,
}

impl ValuePath {
    /// A path to a value of the trigger event (`event.*`, `trigger.*`), the event a `wait_for`
    /// met (`waited.*`) or the profile. Its errors are its own, not the
    /// condition language's: they say what a `date` takes, and what to do with a fixed date.
    pub fn parse(src: &str) -> Result<ValuePath, ConditionError> {
        if let Ok(Condition {
            expr: Expr::Truthy(Operand::Path(path)),
            ..
        }) = Condition::parse(src)
        {
            let trimmed = src.trim_start();
            return Ok(ValuePath {
                source: trimmed.trim_end().to_string(),
                path,
                leading: src[..src.len() - trimmed.len()].chars().count(),
            });
        }
        error(0, not_a_path(src))
    }

    /// The value it reads, if there is one.
    pub fn lookup<'a>(&self, scope: &Scope<'a>) -> Option<&'a Value> {
        self.path.lookup(scope)
    }

    /// The path as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How many characters of space the text it was read from had before [`Self::source`]: a
    /// place in the source is that many characters further in the file.
    pub fn leading(&self) -> usize {
        self.leading
    }

    /// What it holds in `scope` as the timeline shows values (as [`Condition::values`] does:
    /// cut short; not shown when the path or the value looks like an address or a secret);
    /// `None` when it holds nothing.
    pub fn shown(&self, scope: &Scope<'_>) -> Option<String> {
        let v = self.lookup(scope).filter(|v| !v.is_null())?;
        // The path's own keys are judged here (all of them); `shown` judges the value.
        Some(if self.path.is_private() {
            "(not shown)".to_string()
        } else {
            shown("", v)
        })
    }
}

/// Why `src` is not a path to a time (`wait_until.date`), and what to write instead.
fn not_a_path(src: &str) -> String {
    const TAKES: &str = "`date` takes a path to a time on the trigger event (event.*, also \
                         trigger.*), the event a wait_for met (waited.*) or the profile, like \
                         event.starts_at or profile.trial_ends_at";
    let text = src.trim();
    // YAML has taken the file's own quotes off; quotes left are the text's.
    let bare = text.trim_matches(|c| c == '\'' || c == '"').trim();
    if bare.starts_with(|c: char| c.is_ascii_digit()) {
        return format!(
            "`{bare}` is a fixed date, and a fixed date cannot be written here: {TAKES}. \
             Send the date on the trigger event, or keep it on the profile (an `update` step \
             before this one can set it: `update: {{set: {{sale_starts_at: \"{bare}\"}}}}`, \
             then `date: profile.sale_starts_at`)"
        );
    }
    if bare.starts_with("now(") {
        return format!(
            "`{bare}` is not a path: {TAKES}; to wait a while from now, write `wait: 3d` \
             instead of this `wait_until`"
        );
    }
    let word = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if word && !bare.starts_with("event.") && !bare.starts_with("profile.") {
        let field = bare.rsplit('.').next().unwrap_or(bare);
        return format!("`{bare}` is not a path: {TAKES}; write event.{field} or profile.{field}");
    }
    if text.is_empty() {
        return format!("empty: {TAKES}");
    }
    format!("`{text}` is not a path: {TAKES}")
}

impl PartialEq for ValuePath {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.path == other.path
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for ValuePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for ValuePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ValuePath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path like \"event.appointment_at\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ValuePath, E> {
                ValuePath::parse(v).map_err(|e| E::custom(e.message))
            }
            // A number in the file (`date: 1795000000`) is a fixed time too.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ValuePath, E> {
                Err(E::custom(not_a_path(&v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ValuePath, E> {
                Err(E::custom(not_a_path(&v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ValuePath, E> {
                Err(E::custom(not_a_path(&v.to_string())))
            }
        }
        // Any: a number is read as one, to be told it is a fixed time.
        deserializer.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for ValuePath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ValuePath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\s*(event|trigger|waited|profile)\\b",
            "description": "A value of the trigger event (event.*, also trigger.*), the event a \
                            wait_for met (waited.*) or the profile: event.appointment_at, \
                            profile.renewal_at, event.items[0].sku, waited.rebooked_at.",
            "examples": ["event.appointment_at", "profile.renewal_at"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_path_is_a_path_alone() {
        let p = ValuePath::parse("event.booking.starts_at").expect("a path");
        assert_eq!(p.source(), "event.booking.starts_at");
        let event = serde_json::json!({"booking": {"starts_at": "2026-12-24T09:00:00Z"}});
        let profile = serde_json::json!({});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: Timestamp::UNIX_EPOCH,
            zone: None,
        };
        assert_eq!(
            p.lookup(&scope),
            Some(&Value::String("2026-12-24T09:00:00Z".into()))
        );
        assert_eq!(
            ValuePath::parse("profile.x")
                .expect("a path")
                .lookup(&scope),
            None
        );
        // Each error says what a `date` takes, never the condition language's (a number "is
        // not a condition by itself"), and what to write instead.
        let takes = "`date` takes a path to a time on the trigger event (event.*, also trigger.*), the event a wait_for met (waited.*) or the profile, like event.starts_at or profile.trial_ends_at";
        for (bad, says) in [
            ("event.a > 1", "`event.a > 1` is not a path"),
            ("true", "write event.true or profile.true"),
            ("starts_at", "write event.starts_at or profile.starts_at"),
            ("'starts_at'", "write event.starts_at or profile.starts_at"),
            ("now()", "write `wait: 3d`"),
            ("2026-11-27", "a fixed date cannot be written here"),
            (
                "2026-11-27T08:00:00Z",
                "`update: {set: {sale_starts_at: \"2026-11-27T08:00:00Z\"}}`",
            ),
            ("'2026-11-27'", "`2026-11-27` is a fixed date"),
            ("", "empty"),
        ] {
            let e = ValuePath::parse(bad).expect_err(bad).message;
            assert!(e.contains(takes), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
    use proptest::prelude::*;
    use serde_json::json;

    /// A `where` holds only for the enrollment's own key value when it is the equality of the
    /// key's place on the event and the trigger, alone or in an `and`; anything an event of
    /// another value may meet is not such a `where`.
    #[test]
    fn a_where_requires_the_same_key_only_through_an_equality_it_cannot_hold_without() {
        let key = ValuePath::parse("event.booking_id").expect("path");
        for (src, same) in [
            ("event.booking_id == trigger.booking_id", true),
            ("trigger.booking_id == event.booking_id", true),
            ("event.booking_id == trigger.booking_id and event.by == 'airline'", true),
            ("event.by == 'airline' and trigger.booking_id == event.booking_id", true),
            ("event.booking_id == trigger.booking_id or event.all == true", false),
            ("event.booking_id != trigger.booking_id and event.ok == true", false),
            ("lower(event.booking_id) == lower(trigger.booking_id)", false),
            ("not (event.booking_id == trigger.booking_id)", false),
            ("(event.booking_id == trigger.booking_id or event.all == true) and event.ok == true", false),
            ("event.trip_id == trigger.trip_id", false),
            ("event.booking_id == trigger.trip_id", false),
            ("event.booking_id == event.booking_id", false),
        ] {
            assert_eq!(cond(src).requires_same_key(&key), same, "{src}");
        }
    }

    fn cond(s: &str) -> Condition {
        Condition::parse(s).unwrap_or_else(|e| panic!("{s}: {e} at {}", e.offset))
    }

    fn now() -> Timestamp {
        "2026-06-15T12:00:00Z".parse().unwrap()
    }

    fn event() -> Value {
        json!({
            "name": "order_placed",
            "total": 75,
            "price": 19.99,
            "big": 9007199254740993u64,
            "count": 3,
            "currency": "EUR",
            "empty": "",
            "gift": true,
            "paid": false,
            "coupon": null,
            "tags": ["gift", "express", 3],
            "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
            "at": "2026-06-15T11:30:00Z",
            "bad_time": "yesterday",
            "first name": "Ann",
            "it's": 1,
            "nested": {"deep": {"value": 1.0}},
            "pair": [1, "a"],
            "obj": {"a": 1, "b": [1, 2]},
        })
    }

    fn profile() -> Value {
        json!({
            "country": "FR",
            "vip": true,
            "last_order_at": "2026-05-01T08:00:00+02:00",
            "signed_up_at": "2026-06-10T00:00:00Z",
            "orders": 0,
            "emails": [],
        })
    }

    /// A date path's value is shown as a condition's values are: a path that names a secret
    /// anywhere along it is not.
    #[test]
    fn a_value_path_shows_what_it_holds_as_conditions_do() {
        let profile = json!({"renews_on": "soon", "card": {"expires": "12/27"}, "none": null});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &Value::Null,
            profile: &profile,
            now: now(),
            zone: None,
        };
        let shown = |p: &str| ValuePath::parse(p).expect("a path").shown(&scope);
        assert_eq!(shown("profile.renews_on").as_deref(), Some("\"soon\""));
        assert_eq!(
            shown("profile.card.expires").as_deref(),
            Some("(not shown)")
        );
        assert_eq!(shown("profile.none"), None);
        assert_eq!(shown("profile.missing"), None);
    }

    /// `time(path)` reads the RFC 3339 text a path holds as an instant, so two paths compare
    /// as times whatever their offsets (as text, `…+05:00` and `…Z` compare by their characters);
    /// anything else is null to it, and the comparison false.
    #[test]
    fn time_of_a_path_compares_two_paths_as_instants() {
        let check = |c: &str, event: Value, profile: Value| {
            cond(c).eval(&Scope {
                trigger: &Value::Null,
                waited: &Value::Null,
                event: &event,
                profile: &profile,
                now: "2026-12-10T00:00:00Z".parse().expect("time"),
                zone: None,
            })
        };
        // 10:00 in Karachi is 05:00 UTC: before 06:00 UTC, though its text sorts after.
        let event = json!({"at": "2026-12-10T10:00:00+05:00"});
        let profile = json!({"trial_end": "2026-12-10T06:00:00Z"});
        assert!(check(
            "event.at > profile.trial_end",
            event.clone(),
            profile.clone()
        ));
        let instants = "time(event.at) > time(profile.trial_end)";
        assert!(!check(instants, event.clone(), profile.clone()));
        assert!(check(
            "time(event.at) < time(profile.trial_end)",
            event.clone(),
            profile.clone()
        ));
        assert!(check(
            "time(event.at) == time('2026-12-10T05:00:00Z')",
            event.clone(),
            profile.clone()
        ));
        // A date and time with its offset after a space (Ruby's `Time#to_s`) is an instant too.
        assert!(check(
            "time(event.at) == time('2026-12-10T05:00:00Z')",
            json!({"at": "2026-12-10 10:00:00 +0500"}),
            profile.clone()
        ));
        // No RFC 3339 time (a day, digits, a missing path): null, so false, and `!=` true.
        for held in [
            json!("2026-12-10"),
            json!("1797638400"),
            json!(1797638400),
            Value::Null,
        ] {
            let profile = json!({ "trial_end": held });
            assert!(!check(instants, event.clone(), profile.clone()), "{held}");
            assert!(
                !check(
                    "time(event.at) <= time(profile.trial_end)",
                    event.clone(),
                    profile.clone()
                ),
                "{held}"
            );
            assert!(
                check(
                    "time(event.at) != time(profile.trial_end)",
                    event.clone(),
                    profile.clone()
                ),
                "{held}"
            );
        }
        assert!(check(
            "time(profile.trial_end) == null",
            event.clone(),
            json!({})
        ));
        // The timeline says what the path held.
        let c = cond(instants);
        let profile = json!({"trial_end": "soon"});
        let scope = Scope {
            trigger: &Value::Null,
            waited: &Value::Null,
            event: &event,
            profile: &profile,
            now: "2026-12-10T00:00:00Z".parse().expect("time"),
            zone: None,
        };
        let why = values_of([&c], &scope);
        assert!(why.contains("profile.trial_end = \"soon\""), "{why}");
        // One path, no nesting, not in a list.
        for bad in [
            "time(event.at, profile.x) > now()",
            "time(lower(event.at)) > now()",
            "event.at in [time(profile.x)]",
            "time(3) > now()",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad}");
        }
    }

    /// `anniversary(…)` reads a time written as digits alone (seconds since 1970, or 13 digits
    /// of milliseconds, not starting with 0) or as a number as a wait, the `date` filter and
    /// `days_until` read it: an instant, whose date is the one in the user's zone. Other
    /// digits (a day written `20261219`, a phone number) are no date.
    #[test]
    fn anniversary_reads_a_time_in_digits_as_a_wait_does() {
        let check = |birthday: Value, now: &str, timezone: Option<&str>| {
            let profile = match timezone {
                Some(tz) => json!({"birthday": birthday, "timezone": tz}),
                None => json!({ "birthday": birthday }),
            };
            cond("anniversary(profile.birthday)").eval(&Scope {
                trigger: &Value::Null,
                waited: &Value::Null,
                event: &Value::Null,
                profile: &profile,
                now: now.parse().expect("time"),
                zone: None,
            })
        };
        // 2026-12-19T00:00:00Z: the 19th in UTC, the 18th in Los Angeles.
        for written in [
            json!("1797638400"),
            json!("1797638400000"),
            json!(1797638400),
        ] {
            assert!(
                check(written.clone(), "2027-12-19T09:00:00Z", None),
                "{written}"
            );
            assert!(
                !check(written.clone(), "2027-12-18T09:00:00Z", None),
                "{written}"
            );
            let la = Some("America/Los_Angeles");
            assert!(
                check(written.clone(), "2027-12-18T20:00:00Z", la),
                "{written}"
            );
            assert!(
                !check(written.clone(), "2027-12-19T20:00:00Z", la),
                "{written}"
            );
        }
        // Digits that are no time, as for a wait: never a day.
        for written in ["20261219", "0612345671", "179763840", "12345678901"] {
            for day in 1..=31 {
                let now = format!("2027-12-{day:02}T12:00:00Z");
                assert!(!check(json!(written), &now, None), "{written} on {now}");
            }
        }
    }

    /// `anniversary(path)` holds on the day and month of the date the path holds, in the user's
    /// zone, else the journey's, else UTC; `'7d'` a week before; a 29 February on the 28th in
    /// other years; an instant's date as written.
    #[test]
    fn anniversary_is_the_users_day_of_a_date() {
        let check = |c: &str, profile: Value, now: &str, zone: Option<&str>| {
            cond(c).eval(&Scope {
                trigger: &serde_json::Value::Null,
                waited: &serde_json::Value::Null,
                event: &Value::Null,
                profile: &profile,
                now: now.parse().expect("time"),
                zone,
            })
        };
        let born = |d: &str| json!({"birthday": d});
        let is = "anniversary(profile.birthday)";
        assert!(check(is, born("1990-05-17"), "2026-05-17T09:00:00Z", None));
        assert!(!check(is, born("1990-05-17"), "2026-05-16T09:00:00Z", None));
        assert!(!check(is, born("1990-05-17"), "2026-06-17T09:00:00Z", None));
        // As written, whatever its offset.
        assert!(check(
            is,
            born("1990-05-17T00:00:00-08:00"),
            "2026-05-17T12:00:00Z",
            None
        ));
        assert!(!check(is, born("not a date"), "2026-05-17T12:00:00Z", None));
        assert!(!check(is, json!({}), "2026-05-17T12:00:00Z", None));
        assert!(!check(
            is,
            json!({"birthday": 19900517}),
            "2026-05-17T12:00:00Z",
            None
        ));
        // 23:30 UTC on the 16th is the 17th in Paris: her zone, then the journey's.
        let night = "2026-05-16T23:30:00Z";
        let in_paris = json!({"birthday": "1990-05-17", "timezone": "Europe/Paris"});
        assert!(check(is, in_paris.clone(), night, None));
        assert!(check(is, in_paris, night, Some("America/New_York")));
        assert!(!check(is, born("1990-05-17"), night, None));
        assert!(check(is, born("1990-05-17"), night, Some("Europe/Paris")));
        // A week before.
        let week = "anniversary(profile.birthday, '7d')";
        assert!(check(
            week,
            born("1990-05-17"),
            "2026-05-10T09:00:00Z",
            None
        ));
        assert!(!check(
            week,
            born("1990-05-17"),
            "2026-05-17T09:00:00Z",
            None
        ));
        assert!(check(
            week,
            born("1990-01-03"),
            "2026-12-27T09:00:00Z",
            None
        ));
        // Leap days.
        assert!(check(is, born("2000-02-29"), "2027-02-28T09:00:00Z", None));
        assert!(!check(is, born("2000-02-29"), "2028-02-28T09:00:00Z", None));
        assert!(check(is, born("2000-02-29"), "2028-02-29T09:00:00Z", None));
        // A condition by itself, combined with others.
        assert!(check(
            "anniversary(profile.birthday) and not exists(profile.x)",
            born("1990-05-17"),
            "2026-05-17T09:00:00Z",
            None
        ));
        for (bad, says) in [
            (
                "anniversary(profile.birthday) == true",
                "is a condition by itself",
            ),
            ("anniversary('1990-05-17')", "takes a path holding a date"),
            (
                "anniversary(profile.birthday, 7)",
                "how long before the day",
            ),
            (
                "anniversary(profile.birthday, '12h')",
                "whole number of days",
            ),
            (
                "anniversary(profile.birthday, 'x')",
                "in anniversary(…, 'x')",
            ),
            (
                "event.x == anniversary(profile.b)",
                "is a condition by itself",
            ),
            ("aniversary(profile.b)", "anniversary()"),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert_eq!(cond(week).paths(), ["profile.birthday"]);
    }

    /// `days_until(path)` and `days_since(path)` count the whole calendar days between today, in
    /// the user's zone (hers, else the journey's, else UTC), and the date the path holds (a day
    /// or a local date and time as written, a time with an offset on her calendar), whatever
    /// the hour; a missing or unreadable date is null.
    #[test]
    fn days_until_and_since_count_the_users_days_to_a_date() {
        let days = |c: &str, profile: Value, now: &str, zone: Option<&str>| -> Option<i64> {
            let scope = Scope {
                trigger: &Value::Null,
                waited: &Value::Null,
                event: &Value::Null,
                profile: &profile,
                now: now.parse().expect("time"),
                zone,
            };
            let op = Condition::parse(&format!("{c} == 0")).expect(c);
            let Expr::Compare { left, .. } = &op.expr else {
                panic!("{c} is a comparison");
            };
            match left.value(&scope, &mut None) {
                Val::Int(n) => Some(n),
                Val::Json(Value::Null) => None,
                other => panic!("{c}: {other:?}"),
            }
        };
        let trial = |d: Value| json!({ "trial_ends_at": d });
        let until = "days_until(profile.trial_ends_at)";
        let since = "days_since(profile.trial_ends_at)";
        let ends = || trial(json!("2026-12-20"));
        // Whole days, whatever the hour; negative once it is past; since is until's opposite.
        for (now, n) in [
            ("2026-12-17T00:00:00Z", 3),
            ("2026-12-17T23:59:59Z", 3),
            ("2026-12-18T00:00:00Z", 2),
            ("2026-12-20T12:00:00Z", 0),
            ("2026-12-21T00:00:00Z", -1),
            ("2026-11-20T09:00:00Z", 30),
            ("2027-12-20T09:00:00Z", -365),
            ("2020-12-20T09:00:00Z", 2191),
        ] {
            assert_eq!(days(until, ends(), now, None), Some(n), "{now}");
            assert_eq!(days(since, ends(), now, None), Some(-n), "{now}");
        }
        // Across a month, a year's end and a leap day.
        let on = |d: &str| trial(json!(d));
        let noon = "2028-02-27T12:00:00Z";
        assert_eq!(days(until, on("2028-03-01"), noon, None), Some(3));
        assert_eq!(
            days(until, on("2027-01-02"), "2026-12-30T12:00:00Z", None),
            Some(3)
        );
        // Today is the user's: 23:30 UTC on the 16th is the 17th in Paris, and 15:30 in Los
        // Angeles; her zone first, then the journey's.
        let night = "2026-12-16T23:30:00Z";
        let in_zone = |zone: &str| json!({"trial_ends_at": "2026-12-20", "timezone": zone});
        assert_eq!(days(until, ends(), night, None), Some(4));
        assert_eq!(days(until, in_zone("Europe/Paris"), night, None), Some(3));
        assert_eq!(
            days(
                until,
                in_zone("Europe/Paris"),
                night,
                Some("America/Los_Angeles")
            ),
            Some(3)
        );
        assert_eq!(days(until, ends(), night, Some("Europe/Paris")), Some(3));
        assert_eq!(
            days(until, ends(), night, Some("Pacific/Auckland")),
            Some(3)
        );
        assert_eq!(
            days(
                until,
                in_zone("America/Los_Angeles"),
                night,
                Some("Europe/Paris")
            ),
            Some(4)
        );
        // An RFC 3339 time with an offset or `Z` is an instant: its date is the one in her
        // zone, as a wait and the `date` filter read it. A trial ending on the 20th at 23:00 in
        // Los Angeles ends on the 20th there, and on the 21st in Paris and in UTC.
        let pst = "2026-12-20T23:00:00-08:00";
        assert_eq!(days(until, trial(json!(pst)), night, None), Some(5));
        // Written with its offset after a space (Ruby's `Time#to_s`), the same instant.
        let spaced = "2026-12-20 23:00:00 -0800";
        assert_eq!(days(until, trial(json!(spaced)), night, None), Some(5));
        assert_eq!(
            days(
                until,
                json!({"trial_ends_at": pst, "timezone": "Europe/Paris"}),
                night,
                None
            ),
            Some(4)
        );
        assert_eq!(
            days(until, trial(json!(pst)), night, Some("America/Los_Angeles")),
            Some(4)
        );
        // What an app's `toISOString()` stores: 03:00Z on the 20th is 19:00 on the 19th in Los
        // Angeles, so her trial ends on the 19th, 3 days after her 16th.
        let utc =
            json!({"trial_ends_at": "2026-12-20T03:00:00Z", "timezone": "America/Los_Angeles"});
        assert_eq!(days(until, utc.clone(), night, None), Some(3));
        assert_eq!(days(since, utc, night, None), Some(-3));
        // A day, and a local date and time without an offset, are the date as written.
        let local = |d: &str| json!({"trial_ends_at": d, "timezone": "America/Los_Angeles"});
        assert_eq!(days(until, local("2026-12-20"), night, None), Some(4));
        assert_eq!(
            days(until, local("2026-12-20T00:30:00"), night, None),
            Some(4)
        );
        // In UTC, at 09:00 on the 17th: each instant's date there.
        for (written, n) in [
            ("2026-12-20T00:00:00Z", 3),
            ("2026-12-20T00:00:00+14:00", 2),
            ("2026-12-20T23:59:59.999-12:00", 4),
            ("2026-12-20T13:59:59+14:00", 2),
            ("2026-12-20t10:00:00z", 3),
            ("2026-12-20 10:00:00Z", 3),
            ("2026-12-20T10:00:00", 3),
            ("2026-12-20 23:59:59", 3),
        ] {
            let at = "2026-12-17T09:00:00Z";
            assert_eq!(
                days(until, trial(json!(written)), at, None),
                Some(n),
                "{written}"
            );
        }
        // Not a date: null, so every comparison but != is false.
        for bad in [
            json!(null),
            json!("soon"),
            json!("2026-13-01"),
            json!("2026-12-20X"),
            json!("20261220"),
            json!("12/20/2026"),
            json!(""),
            json!(true),
            json!(["2026-12-20"]),
            json!({"at": "2026-12-20"}),
        ] {
            assert_eq!(days(until, trial(bad.clone()), night, None), None, "{bad}");
            let scope_profile = trial(bad.clone());
            let scope = Scope {
                trigger: &Value::Null,
                waited: &Value::Null,
                event: &Value::Null,
                profile: &scope_profile,
                now: night.parse().expect("time"),
                zone: None,
            };
            for c in [
                "days_until(profile.trial_ends_at) == 4",
                "days_until(profile.trial_ends_at) <= 4",
                "days_since(profile.trial_ends_at) >= -4",
                "days_since(profile.trial_ends_at) < 1000000",
                "days_until(profile.trial_ends_at) in [3, 4]",
            ] {
                assert!(!cond(c).eval(&scope), "{c} with {bad}");
            }
            assert!(cond("days_until(profile.trial_ends_at) != 4").eval(&scope));
            // Compared with null, as a missing path is, and in a list holding null.
            assert!(cond("days_until(profile.trial_ends_at) == null").eval(&scope));
            assert!(cond("null == days_since(profile.trial_ends_at)").eval(&scope));
            assert!(cond("days_until(profile.trial_ends_at) in [null]").eval(&scope));
            assert!(!cond("days_until(profile.trial_ends_at) != null").eval(&scope));
        }
        assert_eq!(days(until, json!({}), night, None), None);
        // A number is seconds since 1970 (Stripe's `trial_end`), milliseconds from 1e11 on,
        // as a wait reads it, dated in her zone: 1797638400 is 00:00Z on the 19th, the 18th
        // in Los Angeles; 3 is the first seconds of 1970.
        for (n, zone, expected) in [
            (json!(1797638400), None, 3),
            (json!(1797638400.4), None, 3),
            (json!(1797638400000_i64), None, 3),
            (json!(1797638400), Some("America/Los_Angeles"), 2),
            (json!(1797638400000_i64), Some("America/Los_Angeles"), 2),
            (json!(3), None, -20_803),
        ] {
            assert_eq!(
                days(until, trial(n.clone()), night, zone),
                Some(expected),
                "{n} in {zone:?}"
            );
            assert_eq!(
                days(since, trial(n.clone()), night, zone),
                Some(-expected),
                "{n} in {zone:?}"
            );
        }
        // Any path: the event's, the trigger's.
        let event = json!({"starts_on": "2026-12-20"});
        let scope = Scope {
            trigger: &event,
            waited: &Value::Null,
            event: &event,
            profile: &Value::Null,
            now: "2026-12-17T09:00:00Z".parse().expect("time"),
            zone: None,
        };
        for c in [
            "days_until(event.starts_on) == 3",
            "days_until(trigger.starts_on) == 3.0",
            "3 == days_until(event.starts_on)",
            "days_since(event.starts_on) == -3",
            "days_until(event.starts_on) > 2 and days_until(event.starts_on) < 4",
            "days_until(event.starts_on) in [1, 3, 7]",
            "[1, 3, 7] contains days_until(event.starts_on)",
            "days_until(event.starts_on) == days_until(trigger.starts_on)",
            "not days_until(event.starts_on) >= 4",
            "days_until(event.starts_on) != 2",
            "days_until(event.starts_on) < 3.5",
            "days_until(event.starts_on) != null",
            "null != days_since(event.starts_on)",
        ] {
            assert!(cond(c).eval(&scope), "{c}");
        }
        for c in [
            "days_until(event.starts_on) == null",
            "days_until(event.starts_on) in [null]",
            "days_until(event.starts_on) == 2",
            "days_until(event.starts_on) in [1, 2]",
            "days_until(event.starts_on) <= 2",
        ] {
            assert!(!cond(c).eval(&scope), "{c}");
        }
        assert_eq!(
            cond("days_until(profile.trial_ends_at) == 3 and days_since(event.x) > 1").paths(),
            ["profile.trial_ends_at", "event.x"]
        );
    }

    /// `number(path)` reads a number sent as text as that number, and a number as itself;
    /// anything else is null, so comparisons with it are false (`!=` true).
    #[test]
    fn number_reads_a_number_sent_as_text() {
        let event = json!({
            "balance": "12.50", "large": "1000.00", "spaced": " 7 ", "comma": "12,50",
            "word": "abc", "n": 30, "inf": "inf", "nan": "NaN", "flag": true, "empty": "",
            "exact": "9007199254740993", "exp": "1e3", "neg": "-.5",
        });
        let profile = json!({});
        let scope = Scope {
            trigger: &Value::Null,
            waited: &Value::Null,
            event: &event,
            profile: &profile,
            now: now(),
            zone: None,
        };
        for (src, holds) in [
            ("number(event.balance) < 50", true),
            ("number(event.large) < 50", false),
            ("number(event.large) >= 1000", true),
            ("number(event.balance) == 12.5", true),
            ("number(event.spaced) == 7", true),
            ("number(event.n) > 20", true),
            ("number(event.exp) == 1000", true),
            ("number(event.neg) < 0", true),
            ("number(event.exact) == 9007199254740993", true),
            ("number(event.exact) == 9007199254740992", false),
            ("number(event.balance) in [12.5, 13]", true),
            ("number(event.balance) < number(event.large)", true),
            ("number(event.balance) == number(event.balance)", true),
            ("number(event.comma) < 50", false),
            ("number(event.comma) >= 50", false),
            ("number(event.comma) != 50", true),
            ("number(event.comma) == null", true),
            ("number(event.word) < 50", false),
            ("number(event.inf) > 0", false),
            ("number(event.nan) != 0", true),
            ("number(event.flag) == 1", false),
            ("number(event.empty) == 0", false),
            ("number(event.missing) == null", true),
            ("number(event.missing) < 50", false),
            // Without it, text compares as text, and with a number never.
            ("event.large < '50'", true),
            ("event.balance < 50", false),
        ] {
            assert_eq!(cond(src).eval(&scope), holds, "{src}");
        }
        assert_eq!(
            cond("number(event.balance) < 50").paths(),
            ["event.balance"]
        );
        assert!(!cond("number(event.balance) < 50").reads_the_clock());
    }

    /// What to write instead of a cast, a filter or a lower-casing written as in a template.
    #[test]
    fn filters_and_casts_say_what_to_write() {
        for (bad, offset, says) in [
            (
                "event.balance | float < 50",
                14,
                "conditions have no filters (\"| float\" is a template's): to read a number sent as text write number(event.balance), like number(event.balance) < 50",
            ),
            ("event['bal'] | int < 50", 13, "write number(event['bal'])"),
            (
                "'12.50' | float < 50",
                8,
                "write number(<path>), like number(<path>) < 50",
            ),
            ("balance | int < 50", 8, "write number(<path>)"),
            ("profile.x|plus: 0 > 5", 9, "number(profile.x)"),
            (
                "event.plan | lower == 'pro'",
                11,
                "conditions have no filters (\"| lower\" is a template's): to compare text whatever its case write lower(event.plan), like lower(event.plan) == 'pro'",
            ),
            ("event.plan | upcase == 'PRO'", 11, "write upper(event.plan), like upper(event.plan) == 'PRO'"),
            ("'x' | downcase == 'x'", 4, "write lower(<path>), like lower(<path>) == 'pro'"),
            ("event.a == 1 | lower(event.b) == 'x'", 13, "write \"or\" between conditions, not \"|\""),
            (
                "event.plan | default('free') == 'free'",
                11,
                "write (not exists(event.plan) or event.plan == 'x')",
            ),
            ("event.a | join(',') == 'x'", 8, "they compare paths and values as they are"),
            ("event.a == 1 | event.b == 2", 13, "write \"or\" between conditions, not \"|\""),
            ("event.a == 1 || event.b == 2", 13, "write \"or\" instead of \"||\""),
            ("float(event.balance) < 50", 0, "unknown function \"float\": to read a number sent as text"),
            ("parseInt(event.n) < 5", 0, "write number(…), like number(event.balance) < 50"),
            ("LOWER(event.plan) == 'pro'", 0, "write \"lower\" in lower case"),
            (
                "downcase(event.plan) == 'pro'",
                0,
                "unknown function \"downcase\": to compare text whatever its case write lower(…), like lower(event.plan) == 'pro'",
            ),
            ("toUpperCase(event.plan) == 'PRO'", 0, "write upper(…), like upper(event.plan) == 'PRO'"),
            ("number('12') < 5", 7, "write the number itself, unquoted: 12"),
            ("number('+.5') < 5", 7, "unquoted: 0.5"),
            ("number('x') < 5", 7, "write a path, like number(event.balance) < 50"),
            ("number(3) < 5", 7, "takes a path holding a number"),
            ("number(event.a, 2) < 5", 14, "to close number("),
            ("number == 3", 7, "number is a function"),
            ("Number(event.a) == 3", 0, "write \"number\" in lower case"),
            ("number(event.a) < '50'", 16, "a number with a string, which is never true: write the number unquoted, 50"),
            ("'7' == number(event.a)", 4, "write the number unquoted, 7"),
            ("number(event.a) == 'x'", 16, "which is never true (at"),
            ("number(event.a)", 0, "a number is not a condition by itself"),
            ("event.n in [number(event.a)]", 12, "not paths or lists"),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert_eq!(e.offset, offset, "{bad}: {}", e.message);
            let message = format!("{} (at", e.message);
            assert!(message.contains(says), "{bad}: {}", e.message);
        }
    }

    /// A number in quotes ordered against a path compares text: found, at the operator, with
    /// what to write; text that says no number, or `==`, is no such case.
    #[test]
    fn a_number_in_quotes_ordered_against_a_path_is_found() {
        let found = |src: &str| cond(src).numbers_compared_as_text();
        let said = found("event.balance < \"50\"");
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].0, 14);
        assert!(
            said[0].1.ends_with("write number(event.balance) < 50"),
            "{}",
            said[0].1
        );
        assert!(said[0]
            .1
            .starts_with("\"<\" between a path and the text \"50\" compares text"));
        let said = found("event.a == 1 and ('10.5' >= profile.b or not event.c > ' 3 ')");
        let written: Vec<_> = said
            .iter()
            .map(|(at, m)| (*at, m.rsplit("write ").next().unwrap_or("")))
            .collect();
        assert_eq!(
            written,
            [
                (25, "10.5 >= number(profile.b)"),
                (53, "number(event.c) > 3")
            ]
        );
        for quiet in [
            "event.a == '50'",
            "event.a < 'abc'",
            "event.at < '2026-01-01'",
            "event.a < 50",
            "number(event.a) < 50",
            "event.tags contains '5'",
        ] {
            assert!(found(quiet).is_empty(), "{quiet}");
        }
    }

    /// `lower(path)` and `upper(path)` give the text a path holds in one case (Unicode's, not
    /// only ASCII's), on either side of `==`, `!=`, `in`, `not in` and `contains`; anything
    /// but text is null, as `number(…)`'s non-numbers are, so comparisons with it are false
    /// (`!=` true).
    #[test]
    fn lower_and_upper_compare_text_whatever_its_case() {
        let event = json!({
            "country": "DE", "plan": "Pro", "word": "ÄRGER", "small": "ärger", "street": "Straße",
            "title": "Big SALE today", "n": 5, "flag": true, "tags": ["A"], "empty": "",
            "obj": {"a": "B"},
        });
        let profile = json!({"country": "de"});
        let scope = Scope {
            trigger: &Value::Null,
            waited: &Value::Null,
            event: &event,
            profile: &profile,
            now: now(),
            zone: None,
        };
        for (src, holds) in [
            ("lower(event.country) == 'de'", true),
            ("lower(profile.country) == 'de'", true),
            ("'de' == lower(event.country)", true),
            ("lower(event.country) != 'de'", false),
            ("lower(event.country) == lower(profile.country)", true),
            ("upper(profile.country) == event.country", true),
            ("lower(event.plan) in ['pro', 'team']", true),
            ("lower(event.plan) not in ['pro', 'team']", false),
            ("lower(event.plan) in 'pro plans'", true),
            ("lower(event.title) contains 'sale'", true),
            ("lower(event.title) not contains 'sale'", false),
            ("'sale' in lower(event.title)", true),
            ("upper(event.title) contains 'SALE TODAY'", true),
            ("lower(event.word) == 'ärger'", true),
            ("lower(event.word) == event.small", true),
            ("upper(event.small) == 'ÄRGER'", true),
            ("upper(event.street) == 'STRASSE'", true),
            ("lower(event.street) == 'straße'", true),
            ("lower(event.empty) == ''", true),
            ("lower(event.country) < 'e'", true),
            // Without it, text compares exactly as sent.
            ("event.country == 'de'", false),
            ("event.plan in ['pro', 'team']", false),
            // Anything but text is null.
            ("lower(event.n) == '5'", false),
            ("lower(event.n) == null", true),
            ("lower(event.n) != 'x'", true),
            ("lower(event.flag) == 'true'", false),
            ("lower(event.tags) contains 'a'", false),
            ("lower(event.obj) == null", true),
            ("lower(event.missing) == null", true),
            ("lower(event.missing) != 'de'", true),
            // Two that read nothing are not equal (as two missing paths are not).
            ("lower(event.missing) == lower(event.other)", false),
            ("lower(event.missing) != lower(event.other)", true),
            ("lower(event.missing) < 'z'", false),
        ] {
            assert_eq!(cond(src).eval(&scope), holds, "{src}");
        }
        let c = cond("lower(event.country) == 'de' and upper(profile.plan) == 'PRO'");
        assert_eq!(c.paths(), ["event.country", "profile.plan"]);
        assert!(!c.reads_the_clock());
        assert_eq!(
            cond("lower(event.country) == 'fr'").values(&scope),
            "event.country = \"DE\""
        );
    }

    /// What nests and what does not: `lower(…)` and `upper(…)` take one path, are text to
    /// compare (not a condition, nor a list's value), and take no function, nor does
    /// `number(…)` take them.
    #[test]
    fn lower_and_upper_take_one_path() {
        for good in [
            "lower(event.country) == 'de'",
            "lower(event['Country Code']) in ['de', 'at']",
            "lower(event.items[0].sku) contains 'a-'",
            "upper(trigger.code) != 'X'",
            "lower(waited.answer) == null",
            "not lower(profile.plan) == 'pro' or exists(profile.plan)",
            "lower(event.at) < now()",
            "profile.lower == 'x' and event.upper.a == 1",
        ] {
            Condition::parse(good).unwrap_or_else(|e| panic!("{good}: {}", e.message));
        }
        for (bad, offset, says) in [
            ("lower('DE') == event.c", 6, "lower() reads a path holding text, like lower(event.country) == 'de'; text in quotes compares as written, so write it in lower case: 'de'"),
            ("upper('Straße') == event.c", 6, "write it in upper case: 'STRASSE'"),
            ("lower(3) == 'x'", 6, "lower() takes a path holding text, like lower(event.country) == 'de'"),
            ("lower(upper(event.c)) == 'x'", 6, "lower() takes a path, not upper(…): functions don't nest; write lower(event.country) == 'de'"),
            ("lower(number(event.c)) == 'x'", 6, "not number(…): functions don't nest"),
            ("number(lower(event.c)) < 5", 7, "number() takes a path holding a number"),
            ("lower(event.a, event.b) == 'x'", 13, "lower() takes one path: write one lower(…) for each"),
            ("lower(event.a == 'x'", 14, "expected \")\" to close lower(, found \"==\""),
            ("lower == 'x'", 6, "lower is a function: write lower(…), like lower(event.country) == 'de'"),
            ("lower(event.a)", 0, "lower(…) is text, not a condition by itself: compare it, like lower(event.country) == 'de'"),
            ("Upper(event.a) == 'X'", 0, "write \"upper\" in lower case"),
            ("lower(event.a) == 5", 15, "this compares a string with a number, which is never true"),
            ("lower(event.a) > true", 15, "not a boolean"),
            ("event.a in ['x', lower(event.b)]", 17, "not paths or lists"),
            ("exists(lower(event.a))", 7, "exists() takes a path"),
            ("days_until(lower(event.a)) == 3", 11, "days_until() takes a path holding a date"),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert_eq!(e.offset, offset, "{bad}: {}", e.message);
            let message = format!("{} (at", e.message);
            assert!(message.contains(says), "{bad}: {}", e.message);
        }
    }

    /// `lower(…)` compared with text that has upper-case letters (`upper(…)` with lower-case
    /// ones) never matches: found at the operator, with the comparison to write; text it is
    /// looked for in, or text in its own case, is no such case.
    #[test]
    fn text_in_the_wrong_case_for_lower_or_upper_is_found() {
        let found = |src: &str| cond(src).text_in_the_wrong_case();
        for (src, at, says) in [
            ("lower(event.country) == 'DE'", 21, "lower(event.country) is lower-case text, which 'DE' (it has upper-case letters) never matches: write lower(event.country) == 'de'"),
            ("'De' != lower(event.c)", 5, "which 'De' (it has upper-case letters) never matches: write 'de' != lower(event.c)"),
            ("lower(profile.plan) in ['pro', 'Team', 3, null]", 20, "which 'Team' (it has upper-case letters) never matches: write lower(profile.plan) in ['pro', 'team', 3, null]"),
            ("lower(event.word) not in ['ÄRGER']", 18, "write lower(event.word) not in ['ärger']"),
            ("lower(event.t) contains 'Sale'", 15, "write lower(event.t) contains 'sale'"),
            ("'SALE' in lower(event.t)", 7, "write 'sale' in lower(event.t)"),
            ("['DE'] contains lower(event.c)", 7, "write ['de'] contains lower(event.c)"),
            ("lower(event.c) in ['de', 'DE', 'At']", 15, "write lower(event.c) in ['de', 'at']"),
            ("upper(event.c) == 'de'", 15, "upper(event.c) is upper-case text, which 'de' (it has lower-case letters) never matches: write upper(event.c) == 'DE'"),
            ("upper(event.s) == 'STRAßE'", 15, "write upper(event.s) == 'STRASSE'"),
            ("lower(event['a b']) == 'It\\'s'", 20, "write lower(event['a b']) == 'it\\'s'"),
        ] {
            let said = found(src);
            assert_eq!(said.len(), 1, "{src}: {said:?}");
            assert_eq!(said[0].0, at, "{src}: {}", said[0].1);
            assert!(said[0].1.ends_with(says), "{src}: {}", said[0].1);
        }
        let said = found("event.a == 1 and (lower(event.b) == 'X' or not upper(event.c) in ['y'])");
        let written: Vec<_> = said
            .iter()
            .map(|(at, m)| (*at, m.rsplit("write ").next().unwrap_or("")))
            .collect();
        assert_eq!(
            written,
            [
                (33, "lower(event.b) == 'x'"),
                (62, "upper(event.c) in ['Y']")
            ]
        );
        for quiet in [
            "lower(event.c) == 'de'",
            "lower(event.c) in ['de', 'at', 3]",
            "lower(event.c) in 'Deutschland'",
            "'Deutschland' contains lower(event.c)",
            "lower(event.c) < 'M'",
            "lower(event.c) == '123'",
            "upper(event.c) == 'DE'",
            "event.c == 'DE'",
            "lower(event.c) == event.d",
        ] {
            assert!(found(quiet).is_empty(), "{quiet}: {:?}", found(quiet));
        }
    }

    /// Why a comparison with a number was false when its path held text saying one: the
    /// timeline names `number(…)` (not for a path that may hold a secret).
    #[test]
    fn a_number_sent_as_text_is_named_in_why_it_did_not_hold() {
        let event = json!({"balance": "12.50", "n": 30, "card_total": "5", "to": "+447700900111"});
        let profile = json!({});
        let scope = Scope {
            trigger: &Value::Null,
            waited: &Value::Null,
            event: &event,
            profile: &profile,
            now: now(),
            zone: None,
        };
        assert_eq!(
            cond("event.balance < 50").values(&scope),
            "event.balance = \"12.50\"; event.balance is text, which number(event.balance) reads as a number"
        );
        assert_eq!(
            cond("event.n > 40 or days_until(event.balance) == 3 or 1 >= event.balance").values(&scope),
            "event.n = 30, event.balance = \"12.50\"; event.balance is text, which number(event.balance) reads as a number"
        );
        // Looked for in a list: text saying a number in a list of numbers, and a number in a
        // list of text saying numbers.
        assert_eq!(
            cond("event.balance in [12.5, 13]").values(&scope),
            "event.balance = \"12.50\"; event.balance is text, which number(event.balance) reads as a number"
        );
        assert_eq!(
            cond("event.n not in ['30', 'X', 40]").values(&scope),
            "event.n = 30; event.n is a number, which the list's text never equals: write its numbers unquoted, [30, 'X', 40]"
        );
        assert!(cond("number(event.balance) in [12.5, 13]").eval(&scope));
        assert!(cond("event.n in [30, 'X', 40]").eval(&scope));
        for quiet in [
            "event.balance in ['12.50', 3]",
            "event.n in ['1', 'x']",
            "event.n in [1, 2]",
            "event.to in [1, 2]",
            "event.n > 40",
            "event.balance == '1'",
            "number(event.balance) > 40",
            "event.card_total < 3",
            "event.to > 3",
        ] {
            assert!(!cond(quiet).values(&scope).contains("is text"), "{quiet}");
        }
    }

    /// What to write instead of `days_until(…)` misused, and of date arithmetic it replaces.
    #[test]
    fn days_until_and_since_say_what_to_write() {
        for (bad, offset, says) in [
            (
                "days_until(profile.trial_ends_at)",
                0,
                "is a number of days, not a condition by itself: compare it, like days_until(profile.trial_ends_at) == 3",
            ),
            (
                "not days_since(profile.signed_up_at)",
                4,
                "like days_since(profile.signed_up_at) == 7",
            ),
            (
                "days_until('2026-12-20') == 3",
                11,
                "takes a path holding a date, not the date itself",
            ),
            ("days_until(3) == 3", 11, "takes a path holding a date"),
            ("days_until() == 3", 11, "takes a path holding a date"),
            (
                "days_until(profile.x, '3d') == 1",
                20,
                "takes one path, and gives a number of days to compare: write days_until(…) == 3",
            ),
            ("days_until(profile.x == 3", 21, "to close days_until("),
            ("days_until == 3", 11, "days_until is a function"),
            ("days_until(profile.x) == '3'", 22, "a number with a string"),
            (
                "days_until(profile.x) > now()",
                22,
                "a number with a time",
            ),
            ("days_until(profile.x) == true", 22, "a number with a boolean"),
            (
                "days_until(profile.x) < null",
                22,
                "for true, false or null use == or !=",
            ),
            ("event.n in [days_until(profile.x)]", 12, "not paths or lists"),
            ("DAYS_UNTIL(profile.x) == 3", 0, "write \"days_until\" in lower case"),
            ("Days_Since(profile.x) == 3", 0, "in lower case"),
            // Date arithmetic, and the functions other tools have, point here.
            (
                "profile.trial_ends_at < ago('-3d')",
                28,
                "days_until(profile.trial_ends_at) == 3",
            ),
            ("profile.trial_ends_at < ago('-3d')", 28, "now()"),
            ("profile.trial_ends_at - 3d == now()", 22, "days_until("),
            (
                "profile.trial_ends_at - 3d == now()",
                22,
                "for a key with \"-\" in it",
            ),
            ("profile.signed_up_at + 7d < now()", 21, "days_since("),
            ("profile.signed_up_at -7d < now()", 21, "days_since("),
            ("profile.signed_up_at -7d < now()", 21, "ago('7d')"),
            ("profile.signed_up_at < now() -1w", 29, "days_until("),
            (
                "days_until(event.x) == -days_since(event.x)",
                23,
                "no arithmetic",
            ),
            (
                "date_diff(profile.trial_ends_at, now()) == 3",
                0,
                "days_until(profile.trial_ends_at) == 3",
            ),
            ("datediff(now(), profile.x) == 3", 0, "days_since("),
            ("days_between(profile.x) == 3", 0, "days_until("),
            ("DAYS_LEFT(profile.x) == 3", 0, "days_until("),
            ("today() == profile.x", 0, "days_since("),
            ("from_now('3d') > profile.x", 0, "days_until("),
            ("len(event.x) == 1", 0, "days_until(), days_since()"),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert!(e.message.contains(says), "{bad}: {}", e.message);
            assert_eq!(e.offset, offset, "{bad}: {}", e.message);
        }
        // The advice compares with ==: on a daily schedule with `reentry: after_exit`, >= 7
        // would enter her again at every run from a week on.
        for bad in [
            "days_since(profile.x)",
            "days_until(profile.x)",
            "profile.x - 3d == now()",
            "date_diff(profile.x) == 3",
            "days_since('2026-12-20') == 7",
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert!(!e.message.contains(">="), "{bad}: {}", e.message);
        }
        // The bracket advice comes first; the days advice only when a `-` or `+` is followed
        // by a duration in days; a bare `3d` keeps its advice to quote text; an unknown function
        // is named like a date only by whole words.
        for (bad, says, not) in [
            (
                "event.first-name == 'a'",
                "like event['first-name']",
                "some days away",
            ),
            (
                "event.first - name == 'a'",
                "like event['first-name']",
                "some days away",
            ),
            ("event.n == -event.m", "no arithmetic", "some days away"),
            ("event.n + 1 == 2", "no arithmetic", "some days away"),
            ("event.n + event.m == 2", "no arithmetic", "some days away"),
            ("event.at + 7 == 2", "no arithmetic", "some days away"),
            (
                "event.format == 3d",
                "to write text quote it, like '3d'",
                "some days away",
            ),
            (
                "event.format == 2w",
                "quote it, like '2w'",
                "some days away",
            ),
            (
                "validate(event.x) == 1",
                "unknown function",
                "some days away",
            ),
            ("update(event.x) == 1", "unknown function", "some days away"),
            (
                "candidate(event.x) == 1",
                "unknown function",
                "some days away",
            ),
            (
                "birthday(profile.x) == 1",
                "unknown function",
                "some days away",
            ),
            (
                "mandate(profile.x) == 1",
                "unknown function",
                "some days away",
            ),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert!(e.message.contains(says), "{bad}: {}", e.message);
            assert!(!e.message.contains(not), "{bad}: {}", e.message);
        }
        for (bad, first, then) in [
            (
                "profile.x - 3d == now()",
                "event['first-name']",
                "days_until(",
            ),
            (
                "profile.x -  2w == now()",
                "event['first-name']",
                "days_since(",
            ),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            let (a, b) = (e.message.find(first), e.message.find(then));
            assert!(a.is_some() && b.is_some() && a < b, "{bad}: {}", e.message);
        }
        for (bad, says) in [
            ("profile.x + 3d < now()", "days_until("),
            ("event.format == -3d", "days_until("),
            ("add_days(profile.x, 3) == now()", "days_until("),
            ("dateAdd(profile.x) == now()", "days_until("),
            ("daysBetween(profile.x) == 3", "days_until("),
            ("trial_days_left(profile.x) == 3", "days_until("),
        ] {
            let e = Condition::parse(bad).expect_err(bad);
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        // A duration with no day in it keeps its own advice.
        let e = Condition::parse("event.total >= 5m").expect_err("5m");
        assert!(!e.message.contains("days_until"), "{}", e.message);
    }

    fn holds(s: &str) -> bool {
        let (event, profile) = (event(), profile());
        cond(s).eval(&Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: now(),
            zone: None,
        })
    }

    /// `path == null`, which the advice for a template's `is none` offers, answers as
    /// `not exists(path)` does, whatever the path holds (and `!=` as `exists`).
    #[test]
    fn equal_to_null_is_not_exists() {
        let event = serde_json::json!({"none": null, "zero": 0, "empty": "", "no": false, "list": [], "obj": {}});
        let profile = serde_json::json!({});
        for path in [
            "none",
            "zero",
            "empty",
            "no",
            "list",
            "obj",
            "missing",
            "none.deeper",
        ] {
            let at = |src: String| {
                cond(&src).eval(&Scope {
                    trigger: &serde_json::Value::Null,
                    waited: &serde_json::Value::Null,
                    event: &event,
                    profile: &profile,
                    now: now(),
                    zone: None,
                })
            };
            let p = format!("event.{path}");
            assert_eq!(
                at(format!("{p} == null")),
                at(format!("not exists({p})")),
                "{p}"
            );
            assert_eq!(
                at(format!("{p} != null")),
                at(format!("exists({p})")),
                "{p}"
            );
            // Two paths that both read nothing are not equal (`!=` is its opposite): a path
            // equals itself only when it holds a value, and never the trigger's missing one.
            let read = at(format!("exists({p})"));
            assert!(!at(format!("{p} == trigger.order_id")), "{p}");
            assert!(at(format!("{p} != trigger.order_id")), "{p}");
            assert_eq!(at(format!("{p} != {p}")), !read, "{p} != {p}");
            assert_eq!(at(format!("{p} == {p}")), read, "{p} == {p}");
        }
        // Text that reads nothing through a function: not equal either.
        let at = |src: &str| {
            cond(src).eval(&Scope {
                trigger: &serde_json::Value::Null,
                waited: &serde_json::Value::Null,
                event: &event,
                profile: &profile,
                now: now(),
                zone: None,
            })
        };
        assert!(!at("lower(event.missing) == lower(profile.missing)"));
        assert!(!at(
            "days_until(event.missing) == days_since(profile.missing)"
        ));
        assert!(at("lower(event.missing) == null"));
    }

    /// What a false condition's paths held is said, each once, addresses hidden, long values
    /// cut, many paths counted.
    #[test]
    fn says_what_its_paths_held() {
        let event = serde_json::json!({"total": 30, "note": "x".repeat(100), "email": "a@b.c",
            "customer": {"email": "ann@example.com"}, "items": [{"sku": "a"}, {"sku": "b"}],
            "device_type": "ios"});
        let profile = serde_json::json!({"plan": "free", "email": "ann@example.com",
            "phone": "+33612345678", "Email_Address": "ann@example.com",
            "fcm_token": "tok", "card_number": "4111"});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: Timestamp::UNIX_EPOCH,
            zone: None,
        };
        let c = Condition::parse(
            "event.total > 50 and (profile.plan == 'pro' or event.total > 100) \
             and exists(profile.country) and profile.email contains '@corp.com' \
             and event['email'] == 'x' and profile.phone in ['+1'] and event.note == ''",
        )
        .expect("a condition");
        assert!(!c.eval(&scope));
        assert_eq!(
            c.values(&scope),
            format!(
                "event.total = 30, profile.plan = \"free\", profile.country missing, \
                 profile.email set (not shown), event.email set (not shown), \
                 profile.phone set (not shown), event.note = \"{}…",
                "x".repeat(59)
            )
        );
        // Nothing inside an object or a list is shown, nor a key that looks private in any
        // case; other keys are.
        let c = Condition::parse(
            "exists(event.customer) and event.items == 1 and profile.Email_Address == 'x' \
             and profile.fcm_token == 'x' and profile.card_number == 'x' \
             and event.device_type == 'android'",
        )
        .expect("a condition");
        assert_eq!(
            c.values(&scope),
            "event.customer = an object of 1 key, event.items = a list of 2 items, \
             profile.Email_Address set (not shown), profile.fcm_token set (not shown), \
             profile.card_number set (not shown), event.device_type = \"ios\""
        );
        // Nor a value that reads as an address, whatever its key; other numbers are shown.
        let event = serde_json::json!({"recipient": "ann@example.com", "to": "+33 6 12 34 56 78",
            "list": ["a@b.c"], "order_id": "A-1234567", "total": 1234567});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: Timestamp::UNIX_EPOCH,
            zone: None,
        };
        let c = Condition::parse(
            "event.recipient == 'x' and event.to == 'x' and event.list[0] == 'x' \
             and event.order_id == 'x' and event.total == 1",
        )
        .expect("a condition");
        assert_eq!(
            c.values(&scope),
            "event.recipient set (not shown), event.to set (not shown), \
             event.list[0] set (not shown), event.order_id = \"A-1234567\", \
             event.total = 1234567"
        );
        // A date or a date and time is shown, however many digits it has: a time condition is
        // read by it. A phone number written any way people write one is not.
        let event = serde_json::json!({"day": "2026-11-01", "at": "2026-11-01T10:00:00Z",
            "local": "2026-11-01T10:00", "spaced": "2026-11-01 10:00:00", "offset": "2026-11-01T10:00:00+05:30",
            "e164": "+33612345678", "fr": "06 12 34 56 78", "us": "123-456-7890", "dotted": "06.12.34.56.78",
            "not_a_day": "2026-13-01", "us_dashed": "1234-56-7890", "compact": "20261101"});
        let scope = Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event,
            profile: &profile,
            now: Timestamp::UNIX_EPOCH,
            zone: None,
        };
        let c = Condition::parse(
            "event.day < time('2026-01-01T00:00:00Z') and event.at < now() and event.local == 1 \
             and event.spaced == 1 and event.offset == 1 and event.e164 == 1 and event.fr == 1 \
             and event.us == 1",
        )
        .expect("a condition");
        assert_eq!(
            c.values(&scope),
            "event.day = \"2026-11-01\", event.at = \"2026-11-01T10:00:00Z\", \
             event.local = \"2026-11-01T10:00\", event.spaced = \"2026-11-01 10:00:00\", \
             event.offset = \"2026-11-01T10:00:00+05:30\", event.e164 set (not shown), \
             event.fr set (not shown), event.us set (not shown)"
        );
        // A day past its month's end is a day mistaken, shown: the timeline says which value
        // was no time (a wait on it ends "… = \"2027-02-29\" is not a time").
        let leap = serde_json::json!({"leap": "2027-02-29", "april": "2026-04-31"});
        let leap_scope = Scope {
            event: &leap,
            ..scope
        };
        let c = Condition::parse("event.leap == 1 and event.april == 1").expect("a condition");
        assert_eq!(
            c.values(&leap_scope),
            "event.leap = \"2027-02-29\", event.april = \"2026-04-31\""
        );
        let c = Condition::parse(
            "event.dotted == 1 and event.not_a_day == 1 and event.us_dashed == 1 \
             and event.compact == 1",
        )
        .expect("a condition");
        assert_eq!(
            c.values(&scope),
            "event.dotted set (not shown), event.not_a_day set (not shown), \
             event.us_dashed set (not shown), event.compact set (not shown)"
        );
        let many = Condition::parse(
            "event.a == 1 or event.b == 1 or event.c == 1 or event.d == 1 or event.e == 1 \
             or event.f == 1 or event.g == 1 or event.h == 1 or event.i == 1 or event.j == 1",
        )
        .expect("a condition");
        assert_eq!(
            many.values(&scope),
            "event.a missing, event.b missing, event.c missing, event.d missing, \
             event.e missing, event.f missing, event.g missing, event.h missing, 2 more"
        );
        let none = Condition::parse("now() > '2020-01-01T00:00:00Z'").expect("a condition");
        assert_eq!(none.values(&scope), "");
    }

    #[test]
    fn evaluates() {
        let cases: &[(&str, bool)] = &[
            // Numbers.
            ("event.total >= 50", true),
            ("event.total > 75", false),
            ("event.total == 75.0", true),
            ("event.total != 75", false),
            ("event.total < 75.5", true),
            ("event.total <= 75", true),
            ("event.price > 19.98 and event.price < 20", true),
            ("event.big == 9007199254740992", false),
            ("event.big > 9007199254740992", true),
            ("event.big == 9007199254740993", true),
            ("event.count == 3 and event.count == 3.0", true),
            ("-1 < event.count", true),
            ("event.price > -1e3", true),
            ("event.nested.deep.value == 1", true),
            // Strings.
            ("event.currency == 'EUR'", true),
            ("event.currency == \"EUR\"", true),
            ("event.currency != 'USD'", true),
            ("event.currency < 'USD'", true),
            ("event.currency > 'EU'", true),
            ("event.empty == ''", true),
            ("event['first name'] == 'Ann'", true),
            ("event['it\\'s'] == 1", true),
            // Different types: false, and != is its negation.
            ("event.total == '75'", false),
            ("event.total != '75'", true),
            ("event.currency > 5", false),
            ("event.currency < 5", false),
            ("event.gift == 1", false),
            ("event.tags > 1", false),
            // Booleans and null.
            ("event.gift", true),
            ("event.paid", false),
            ("event.currency", false),
            ("event.missing", false),
            ("event.gift == true", true),
            ("event.paid == false", true),
            ("true", true),
            ("false", false),
            ("event.coupon == null", true),
            ("event.missing == null", true),
            ("event.missing.deeper[3] == null", true),
            ("event.total != null", true),
            ("event.missing != null", false),
            // Membership.
            ("profile.country in ['FR', 'DE']", true),
            ("profile.country in ['US']", false),
            ("profile.country not in ['US', 'CA']", true),
            ("profile.country in []", false),
            ("event.total in [74, 75.0, 'x']", true),
            ("'gift' in event.tags", true),
            ("3 in event.tags", true),
            ("'gif' in event.tags", false),
            ("'UR' in event.currency", true),
            ("'ur' in event.currency", false),
            ("event.missing in ['a']", false),
            ("event.missing not in ['a']", true),
            ("null in [null]", true),
            ("1 in event.total", false),
            ("event.tags contains 'express'", true),
            ("event.tags contains 'EXPRESS'", false),
            ("event.tags not contains 'slow'", true),
            ("event.currency contains 'EU'", true),
            ("event.total contains 7", false),
            ("event.missing contains 'a'", false),
            ("event.pair == [1, 'a']", true),
            ("event.pair == [1.0, 'a']", true),
            ("event.pair == [1]", false),
            ("profile.emails == []", true),
            ("event.obj == event.obj", true),
            ("event.items[0].sku == 'A-1'", true),
            ("event.items[1].qty == 1", true),
            ("event.items[2].sku == null", true),
            ("event.items[0]['sku'] == 'A-1'", true),
            ("event.currency[0] == null", true),
            // Exists.
            ("exists(event.total)", true),
            ("exists(event.coupon)", false),
            ("exists(event.missing)", false),
            ("not exists(event.missing)", true),
            ("exists(event.items[1].sku)", true),
            ("exists(event.items[5].sku)", false),
            ("exists(profile.orders)", true),
            // Times.
            ("profile.last_order_at < ago('30d')", true),
            ("profile.last_order_at < ago('50d')", false),
            ("profile.signed_up_at > ago('7d')", true),
            ("profile.signed_up_at >= ago('5d12h')", true),
            ("profile.signed_up_at > ago('5d12h')", false),
            ("ago('5d12h') == profile.signed_up_at", true),
            ("event.at < now()", true),
            ("event.at > ago('1h')", true),
            ("event.at == time('2026-06-15T13:30:00+02:00')", true),
            ("event.at == '2026-06-15T11:30:00Z'", true),
            ("event.at == '2026-06-15T13:30:00+02:00'", false), // two strings: compared as text
            ("time('2026-01-01T00:00:00Z') < now()", true),
            ("profile.last_order_at > time('2026-05-01T05:59:59Z')", true),
            (
                "profile.last_order_at > time('2026-05-01T06:00:00Z')",
                false,
            ),
            ("event.bad_time < now()", false),
            ("event.bad_time > now()", false),
            ("event.total < now()", false),
            ("event.missing < now()", false),
            ("event.at in [time('2026-06-15T11:30:00Z')]", true),
            // Logic and precedence.
            ("event.total > 50 and profile.country == 'FR'", true),
            ("event.total > 100 or profile.country == 'FR'", true),
            ("event.total > 100 or profile.country == 'DE'", false),
            ("not event.total > 100", true),
            ("not event.total > 50", false),
            ("not not event.gift", true),
            ("true or false and false", true),
            ("(true or false) and false", false),
            ("not true or true", true),
            ("not (true or true)", false),
            ("not false and false", false),
            (
                "event.total > 50 and (profile.country == 'DE' or profile.vip)",
                true,
            ),
            ("(event.total) > 50", true),
            ("((event.total > 50))", true),
            (
                "profile.vip and not event.paid and event.tags contains 'gift'",
                true,
            ),
        ];
        for &(text, want) in cases {
            assert_eq!(holds(text), want, "{text}");
        }
    }

    #[test]
    fn reads_the_data_it_is_given() {
        let c = cond("event.total >= 50 and profile.country in ['FR', 'DE']");
        let run = |event: Value, profile: Value| {
            c.eval(&Scope {
                trigger: &serde_json::Value::Null,
                waited: &serde_json::Value::Null,
                event: &event,
                profile: &profile,
                now: now(),
                zone: None,
            })
        };
        assert!(run(json!({"total": 50}), json!({"country": "DE"})));
        assert!(!run(json!({"total": 49.9}), json!({"country": "DE"})));
        assert!(!run(json!({"total": 50}), json!({})));
        assert!(!run(json!(null), json!(null)));
        assert!(!run(json!([1, 2]), json!("FR")));
    }

    #[test]
    fn rejects_with_an_offset_and_what_to_write() {
        // (source, offset, fragment of the message)
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "is empty"),
            ("   ", 0, "is empty"),
            (
                "journey.id == 'x'",
                0,
                "paths start with \"event.\" or \"profile.\"",
            ),
            ("total >= 50", 0, "like event.total"),
            ("event.total >= fifty", 15, "unknown name \"fifty\""),
            // Days after an anniversary: a one-off date's count, or a wait after the day.
            (
                "anniversary(profile.renews_on, '-3d')",
                31,
                "anniversary() counts days before the day, not after: for 3 days after a one-off \
                 date write days_since(profile.renews_on) == 3; for 3 days after each year's day, \
                 enter on anniversary(profile.renews_on) and begin the steps with `wait: 3d`",
            ),
            (
                "anniversary(profile.birthday, '-1w')",
                30,
                "days_since(profile.birthday) == 7",
            ),
            // A template's tests, and Python's None.
            (
                "event.from is none",
                11,
                "\"is none\" is a template's test, and conditions have no \"is\": write \
                 not exists(event.from) (or event.from == null)",
            ),
            (
                "profile.email is defined",
                14,
                "write exists(profile.email), which holds",
            ),
            (
                "profile.phone is not defined",
                14,
                "\"is not defined\" is a template's test, and conditions have no \"is\": write \
                 not exists(profile.phone)",
            ),
            ("event.x is not none", 8, "write exists(event.x),"),
            ("event.x IS NULL", 8, "write not exists(event.x)"),
            (
                "event.total > 5 and (event.from is none)",
                32,
                "write not exists(event.from)",
            ),
            (
                "profile.plan is 'pro'",
                13,
                "compare with \"==\", like profile.plan == 'pro'",
            ),
            (
                "event.from == none",
                14,
                "a missing value is null, so write not exists(event.from) (or event.from == null)",
            ),
            (
                "event.from != None",
                14,
                "conditions have no \"None\": a missing value is null, so write exists(event.from)",
            ),
            (
                "event.from == undefined",
                14,
                "write not exists(event.from)",
            ),
            ("event.total = 50", 12, "write \"==\""),
            ("event.total => 50", 12, "write \">=\" for \"at least\""),
            ("event.total =< 50", 12, "write \"<=\" for \"at most\""),
            ("event.total=>50", 11, "like event.n >= 10"),
            (
                "event.x =! 3",
                8,
                "write \"!=\" for \"not equal\" (the \"=\" comes second)",
            ),
            ("event.total <> 50", 12, "write \"!=\""),
            ("!exists(event.x)", 0, "write \"not\""),
            ("event.a && event.b", 8, "write \"and\""),
            ("event.a || event.b", 8, "write \"or\""),
            ("event.a AND event.b", 8, "write \"and\" in lower case"),
            ("event.a == True", 11, "write \"true\" in lower case"),
            ("Event.a == 1", 0, "write \"event\" in lower case"),
            ("event.total >= 50 and", 21, "ends too early"),
            ("event.total >=", 14, "ends too early"),
            (
                "event.total >= 50 50",
                18,
                "join conditions with \"and\" or \"or\"",
            ),
            ("event.total >= 50)", 17, "closes nothing"),
            (
                "(event.total >= 50",
                18,
                "to close the \"(\" at character 1",
            ),
            ("event", 0, "write a field after \"event\""),
            ("exists(profile) ", 7, "write a field after \"profile\""),
            ("event.", 6, "expected a field name"),
            ("event.items.0", 12, "[0]"),
            ("event.items[-1]", 12, "from 0"),
            ("event.items[1.5]", 12, "from 0"),
            ("event.items[x]", 12, "expected an index"),
            ("event.items[0", 13, "expected \"]\""),
            ("event.a-b == 1", 7, "event['first-name']"),
            ("event.currency == 'EUR", 18, "no closing quote"),
            ("event.currency == 'E\\UR'", 20, "unknown escape"),
            ("event.total >= .5", 15, "0.5"),
            ("event.total >= 1e999", 15, "too large"),
            ("event.total >= 5m", 15, "ago('5m')"),
            ("50", 0, "a number is not a condition"),
            ("'FR'", 0, "a string is not a condition"),
            ("null", 0, "null is not a condition"),
            ("now()", 0, "a time is not a condition"),
            ("['a']", 0, "a list is not a condition"),
            ("1 < event.a < 3", 12, "comparisons don't chain"),
            ("event.a not == 1", 8, "not (a == b)"),
            ("not in ['a']", 0, "go between two values"),
            (
                "event.total > true",
                12,
                "for true, false or null use == or !=",
            ),
            ("event.total < null", 12, "for true, false or null"),
            ("event.total < [1]", 12, "not a list"),
            (
                "event.country in 'FR' and event.x in 5",
                34,
                "\"in\" needs a list",
            ),
            ("5 contains 'a'", 2, "\"contains\" needs"),
            ("1 == 'a'", 2, "never true"),
            ("now() == 5", 6, "never true"),
            ("exists(event.x) == true", 16, "is a condition by itself"),
            ("event.a == exists(event.x)", 11, "is a condition by itself"),
            ("exists('event.x')", 7, "exists() takes a path"),
            ("exists event.x", 7, "exists(event.coupon)"),
            ("exists(event.x", 14, "to close exists("),
            ("event.a in [event.b]", 12, "not paths or lists"),
            ("event.a in [[1]]", 12, "not paths or lists"),
            ("event.a in [1 2]", 14, "expected \",\" or \"]\""),
            ("event.a in [1,", 14, "ends too early"),
            ("event.at < time('2026-01-01')", 16, "not an RFC 3339 time"),
            ("event.at < time(2026)", 16, "in quotes"),
            (
                "event.at < time('2026-01-01T00:00:00Z', 1)",
                38,
                "takes one argument",
            ),
            ("event.at < time", 15, "time is a function"),
            (
                "event.at < ago('7 days')",
                15,
                "\"7 days\" is not a duration",
            ),
            ("event.at < ago('0s')", 15, "at least one second"),
            ("event.at < now(1)", 15, "takes no arguments"),
            ("event.at < len(event.x)", 11, "unknown function \"len\""),
            (
                "(event.a) == 1 and (event.b == 1) == true",
                34,
                "parentheses group whole conditions",
            ),
            ("event.a == ()", 11, "expected a value"),
            ("event.a == 1 @", 13, "unexpected character \"@\""),
            ("event.a == ,", 11, "expected a value, found \",\""),
            ("and", 0, "expected a value, found \"and\""),
        ];
        for &(text, offset, fragment) in cases {
            let err = Condition::parse(text).expect_err(text);
            assert!(
                err.message.contains(fragment),
                "{text:?}: {:?} lacks {fragment:?}",
                err.message
            );
            assert_eq!(err.offset, offset, "{text:?}: {}", err.message);
        }
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let err = Condition::parse("event.name == 'é' and é").unwrap_err();
        assert_eq!(err.offset, 22, "{}", err.message);
        assert!(holds("event['first name'] in ['Ann', 'Zoé']"));
        assert_eq!(cond("event.café == 'x'").paths(), ["event.café"]);
    }

    #[test]
    fn bounds_length_and_depth() {
        let deep = |n: usize| format!("{}event.gift{}", "(".repeat(n), ")".repeat(n));
        assert!(Condition::parse(&deep(MAX_DEPTH)).is_ok());
        let err = Condition::parse(&deep(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.offset, MAX_DEPTH);
        assert!(err.message.contains("deeper than 32"), "{}", err.message);

        let nots = |n: usize| format!("{}event.gift", "not ".repeat(n));
        assert!(cond(&nots(MAX_DEPTH)).eval(&Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event(),
            profile: &profile(),
            now: now(),
            zone: None
        }));
        assert!(Condition::parse(&nots(MAX_DEPTH + 1)).is_err());

        let lists = format!("event.a in {}1{}", "[".repeat(40), "]".repeat(40));
        assert!(Condition::parse(&lists).is_err());

        let long = format!("event.total > 1{}", " or event.total > 1".repeat(213));
        assert!(long.chars().count() <= MAX_LEN);
        assert!(cond(&long).eval(&Scope {
            trigger: &serde_json::Value::Null,
            waited: &serde_json::Value::Null,
            event: &event(),
            profile: &profile(),
            now: now(),
            zone: None
        }));
        let too_long = format!("{long}{}", " ".repeat(MAX_LEN));
        let err = Condition::parse(&too_long).unwrap_err();
        assert_eq!(err.offset, MAX_LEN);
        assert!(err.message.contains("limit is 4096"), "{}", err.message);
    }

    #[test]
    fn lists_paths_as_written() {
        let cases: &[(&str, &[&str])] = &[
            (
                "event.total >= 50 and profile.country in ['FR', 'DE']",
                &["event.total", "profile.country"],
            ),
            (
                "event.items[0].sku == 'A' or event.items[0].sku == 'B'",
                &["event.items[0].sku"],
            ),
            (
                "exists(profile.a.b) and not profile.x",
                &["profile.a.b", "profile.x"],
            ),
            (
                "event['first name'] == event . last",
                &["event['first name']", "event.last"],
            ),
            ("event['a'] == 1", &["event.a"]),
            ("event['it\\'s'] == 1", &["event['it\\'s']"]),
            (
                "event.tags contains profile.tag",
                &["event.tags", "profile.tag"],
            ),
            ("true", &[]),
            ("now() > ago('1d')", &[]),
        ];
        for &(text, want) in cases {
            assert_eq!(cond(text).paths(), want, "{text}");
        }
    }

    /// A `where` that reads the date or the clock is judged as of when it is read: the user's
    /// view says so of a schedule's.
    #[test]
    fn knows_when_it_reads_the_clock() {
        for (text, reads) in [
            ("anniversary(profile.birthday)", true),
            ("not anniversary(profile.renews_on, '7d')", true),
            ("days_until(profile.trial_ends_at) == 3", true),
            (
                "profile.plan == 'pro' or days_since(profile.signed_up_at) >= 7",
                true,
            ),
            ("profile.last_order_at < ago('30d')", true),
            (
                "profile.plan == 'pro' or profile.trial_ends_at > now()",
                true,
            ),
            ("profile.at in [now(), 'x']", true),
            ("profile.at < time('2026-12-01T00:00:00Z')", false),
            ("profile.plan == 'pro' and exists(profile.email)", false),
        ] {
            assert_eq!(cond(text).reads_the_clock(), reads, "{text}");
        }
        let profile = serde_json::json!({"plan": "free", "email": "a@b.example"});
        let scope = Scope {
            event: &Value::Null,
            trigger: &Value::Null,
            waited: &Value::Null,
            profile: &profile,
            now: Timestamp::UNIX_EPOCH,
            zone: None,
        };
        assert_eq!(
            cond("profile.plan == 'pro' and exists(profile.email)").why_false_now(&scope),
            "`where: profile.plan == 'pro' and exists(profile.email)` is false now \
             (profile.plan = \"free\", profile.email set (not shown))"
        );
    }

    #[test]
    fn written_paths_parse_back_to_the_same_path() {
        for text in [
            "event['first name'] == 1",
            "event['it\\'s'] == 1",
            "event['a\\\\b'][2].c == 1",
        ] {
            let path = cond(text).paths().remove(0);
            let again = cond(&format!("{path} == 1"));
            assert_eq!(again.paths(), std::slice::from_ref(&path), "{text}");
            assert_eq!(again.expr, cond(text).expr, "{text}");
        }
    }

    #[test]
    fn serializes_as_its_source() {
        let c: Condition = serde_json::from_str("\"event.total >= 50\"").unwrap();
        assert_eq!(c.source(), "event.total >= 50");
        assert_eq!(c.to_string(), "event.total >= 50");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"event.total >= 50\"");
        assert_eq!(c, cond("event.total >= 50"));

        let err = serde_json::from_str::<Condition>("\"total >= 50\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("like event.total") && err.contains("(at character 1)"),
            "{err}"
        );
        let err = serde_json::from_str::<Condition>("true")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a condition like"), "{err}");

        let schema = schemars::schema_for!(Condition);
        assert_eq!(schema.as_value()["type"], "string");
        assert!(schema.as_value()["description"]
            .as_str()
            .is_some_and(|d| d.contains("exists(path)")));
    }

    /// `trigger.*` and `waited.*` read their own events, beside `event.*`; what they held is
    /// shown as an event's values are (an address not), and a missing `waited` is null.
    #[test]
    fn trigger_and_waited_read_their_own_events() {
        let event = json!({"order_id": "o-0", "stars": 5});
        let trigger = json!({"order_id": "o-1", "email": "ann@example.com"});
        let waited = json!({"stars": 2});
        let profile = json!({});
        let scope = Scope {
            event: &event,
            trigger: &trigger,
            waited: &waited,
            profile: &profile,
            now: now(),
            zone: None,
        };
        let c = cond("event.order_id == trigger.order_id or waited.stars >= 4");
        assert!(!c.eval(&scope));
        assert_eq!(
            c.values(&scope),
            r#"event.order_id = "o-0", trigger.order_id = "o-1", waited.stars = 2"#
        );
        assert!(cond("exists(trigger.order_id) and not exists(trigger.stars)").eval(&scope));
        assert_eq!(
            cond("trigger.email == 'x'").values(&scope),
            "trigger.email set (not shown)"
        );
        let none = Scope {
            waited: &Value::Null,
            ..scope
        };
        assert!(!cond("exists(waited.stars)").eval(&none));
        assert_eq!(
            cond("waited.stars >= 4").values(&none),
            "waited.stars missing"
        );
        // A root alone is no path; a misspelt one is told the roots.
        let e = Condition::parse("waited == 1").expect_err("a root alone");
        assert!(e.message.contains("like waited.total"), "{}", e.message);
        let e = Condition::parse("triger.order_id == 'x'").expect_err("unknown name");
        assert!(e.message.contains("\"trigger.\""), "{}", e.message);
    }

    /// Pieces to build condition-like strings from, valid and not.
    const PIECES: &[&str] = &[
        "event",
        "profile",
        "trigger",
        "waited",
        ".",
        "total",
        "tags",
        "items",
        "[",
        "]",
        "0",
        "1.5",
        "-2",
        "'FR'",
        "\"x\"",
        "(",
        ")",
        ",",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not",
        "contains",
        "and",
        "or",
        "exists",
        "time",
        "now",
        "ago",
        "'7d'",
        "'2026-01-01T00:00:00Z'",
        "true",
        "false",
        "null",
        " ",
        "'",
        "\\",
        "=",
        "!",
        "é",
        "@",
    ];

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            if let Err(e) = Condition::parse(&s) {
                prop_assert!(e.offset <= s.chars().count());
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn parse_and_eval_never_panic_on_token_soup(
            pieces in prop::collection::vec(prop::sample::select(PIECES), 0..40),
        ) {
            let s = pieces.join(" ");
            match Condition::parse(&s) {
                Ok(c) => {
                    let (event, profile) = (event(), profile());
                    let _ = c.eval(&Scope { trigger: &event, waited: &profile, event: &event, profile: &profile, now: now(), zone: None });
                    for p in c.paths() {
                        prop_assert!(["event", "profile", "trigger", "waited"].iter().any(|r| p.starts_with(r)), "{}", p);
                    }
                }
                Err(e) => prop_assert!(e.offset <= s.chars().count()),
            }
            let glued = pieces.concat();
            if let Err(e) = Condition::parse(&glued) {
                prop_assert!(e.offset <= glued.chars().count());
            }
        }

        #[test]
        fn comparisons_of_numbers_agree_with_f64(a in -1e6f64..1e6, b in -1e6f64..1e6) {
            let event = json!({"a": a, "b": b});
            let scope = Scope { trigger: &serde_json::Value::Null, waited: &serde_json::Value::Null, event: &event, profile: &Value::Null, now: now(), zone: None };
            prop_assert_eq!(cond("event.a < event.b").eval(&scope), a < b);
            prop_assert_eq!(cond("event.a == event.b").eval(&scope), a == b);
            prop_assert_eq!(cond("event.a >= event.b").eval(&scope), a >= b);
        }
    }
}
