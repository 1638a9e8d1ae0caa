//! Templates compiled to a direct renderer: the common part of MiniJinja's language (text,
//! `{{ path | default('x') | length }}`, `{% if %}` on comparisons and tests, `{% for x in
//! path %}`) rendered straight from the borrowed profile and event, with no conversion into
//! template values. Whatever falls outside that part, when compiling or while rendering (a
//! filter it does not know, a value it would print differently, too much work), is left to
//! MiniJinja, so what a template renders to is always what MiniJinja renders.

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::{Map, Value};

/// What a template sees, borrowed from the enrollment and the profile.
pub struct Scope<'a> {
    /// The profile's traits (`profile.*`); `profile.user_id` falls back to `user_id`.
    pub traits: &'a Map<String, Value>,
    /// The profile's own user id (`profile.user_id` when the traits have none).
    pub profile_user_id: &'a str,
    /// The enrollment's user (`user_id`).
    pub user_id: &'a str,
    /// The trigger event's properties (`event.*`).
    pub event: &'a Value,
    /// The trigger event's properties again (`trigger.*`), as conditions name them.
    pub trigger: &'a Value,
    /// The properties of the event that met the enrollment's latest `wait_for` (`waited.*`);
    /// null (missing) when none did.
    pub waited: &'a Value,
    pub journey_id: &'a str,
    pub journey_name: &'a str,
    pub journey_version: u64,
    /// The journey's default time zone (`journey.timezone`), for users without one of their own.
    pub journey_timezone: Option<&'a str>,
    /// The transition's time (`now`), spelled (RFC 3339) only when a template reads it.
    pub now: jiff::Timestamp,
    pub unsubscribe_url: Option<&'a str>,
    /// The language the text being rendered is written in: the user's locale when a `locales`
    /// variant was chosen for her, `None` for the default text. `date` writes its month and
    /// weekday names in it (English when `None`) unless told `locale=`.
    pub language: Option<&'a str>,
}

/// Work a direct render may do before it leaves the template to MiniJinja, whose own limit
/// (fuel) then decides. Each unit here stands for at least one of MiniJinja's instructions and
/// at most a few, so a render that stays under this could not have run out of MiniJinja's fuel.
const WORK: u32 = 5_000;

/// How deep `if` and `for` may nest in a compiled template.
const DEPTH: usize = 16;

/// A template compiled for direct rendering.
#[derive(Debug)]
pub struct Program {
    nodes: Vec<Node>,
    /// The output's likely size: its text once, and a little for each value printed (the
    /// output is allocated once at that size, not grown from nothing).
    size: usize,
}

/// How long `nodes` likely render: every text once (a loop's body once, a branch's longest).
fn likely_size(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|n| match n {
            Node::Text(t) => t.len(),
            Node::Out(_) => 16,
            Node::If {
                branches,
                otherwise,
            } => branches
                .iter()
                .map(|(_, b)| likely_size(b))
                .chain([likely_size(otherwise)])
                .max()
                .unwrap_or(0),
            Node::For { body, .. } => likely_size(body),
        })
        .sum()
}

#[derive(Debug)]
enum Node {
    Text(Box<str>),
    Out(Expr),
    If {
        branches: Vec<(Cond, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    For {
        iter: Expr,
        body: Vec<Node>,
    },
}

#[derive(Debug)]
enum Root {
    Profile,
    Event,
    Trigger,
    Waited,
    Journey,
    UserId,
    Now,
    Unsubscribe,
    /// A loop variable, by nesting depth.
    Local(usize),
}

#[derive(Debug)]
enum Lit {
    Str(Box<str>),
    Int(i64),
    Float(f64),
}

#[derive(Debug)]
enum Filter {
    Default(Lit),
    Length,
    Upper,
    Lower,
    Trim,
    /// `date`, `date('%H:%M')`, either with `locale=` (a path or a literal with filters), on
    /// text (see `template::date`); anything else (`tz=`), MiniJinja's.
    Date {
        format: Option<Box<str>>,
        locale: Option<Box<Expr>>,
    },
    /// `currency(code)` or `currency(code=code)`, with or without `locale=`, each a path or a
    /// literal with filters (see `template::currency`).
    Currency {
        code: Box<Expr>,
        locale: Option<Box<Expr>>,
    },
}

#[derive(Debug)]
enum Expr {
    Path(Root, Vec<Box<str>>),
    Lit(Lit),
    Filtered(Box<Expr>, Filter),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
enum Cond {
    Truthy(Expr),
    Defined(Expr, bool),
    Cmp(Expr, Op, Expr),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

/// Not for the direct renderer: MiniJinja renders it.
#[derive(Debug)]
pub struct Declined;

type Direct<T> = Result<T, Declined>;

// ---------------------------------------------------------------------------------------------
// Compiling

/// A piece of template source between tags.
enum Piece<'s> {
    Text(&'s str),
    Expr(&'s str),
    Stmt(&'s str),
}

/// Splits `source` into text, `{{ }}` and `{% %}` pieces (comments dropped), the way
/// MiniJinja's lexer does with its default settings; whitespace control and raw blocks decline.
fn pieces(source: &str) -> Direct<Vec<Piece<'_>>> {
    // MiniJinja drops one trailing newline (and a carriage return before it).
    let source = source.strip_suffix('\n').unwrap_or(source);
    let source = source.strip_suffix('\r').unwrap_or(source);
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' || !matches!(bytes[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        let kind = bytes[i + 1];
        if i > text_start {
            out.push(Piece::Text(&source[text_start..i]));
        }
        let inner_start = i + 2;
        if matches!(bytes.get(inner_start), Some(b'-' | b'+')) {
            return Err(Declined);
        }
        let close = match kind {
            b'{' => b'}',
            b'%' => b'%',
            _ => b'#',
        };
        let end = find_close(bytes, inner_start, close, kind != b'#')?;
        let inner = &source[inner_start..end];
        if inner.ends_with(['-', '+']) {
            return Err(Declined);
        }
        match kind {
            b'{' => out.push(Piece::Expr(inner)),
            b'%' => out.push(Piece::Stmt(inner)),
            _ => {}
        }
        i = end + 2;
        text_start = i;
    }
    if text_start < source.len() {
        out.push(Piece::Text(&source[text_start..]));
    }
    Ok(out)
}

/// Where the closing `close}` of a tag begins, skipping string literals when `quoted`.
fn find_close(bytes: &[u8], from: usize, close: u8, quoted: bool) -> Direct<usize> {
    let mut i = from;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    return Err(Declined);
                }
                if b == q {
                    quote = None;
                }
            }
            None if quoted && (b == b'\'' || b == b'"') => quote = Some(b),
            None if b == close && bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            None => {}
        }
        i += 1;
    }
    Err(Declined)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'s> {
    Ident(&'s str),
    Str(&'s str),
    Int(i64),
    Float(f64),
    Punct(&'static str),
}

fn tokens(s: &str) -> Direct<Vec<Tok<'_>>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(&s[start..i]));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            // Exponents, underscores, a name glued to a number: MiniJinja's to read.
            if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                return Err(Declined);
            }
            let text = &s[start..i];
            out.push(if float {
                Tok::Float(text.parse().map_err(|_| Declined)?)
            } else {
                Tok::Int(text.parse().map_err(|_| Declined)?)
            });
        } else if c == b'\'' || c == b'"' {
            let start = i + 1;
            let end = s[start..].find(c as char).ok_or(Declined)? + start;
            let text = &s[start..end];
            if text.contains('\\') {
                return Err(Declined);
            }
            out.push(Tok::Str(text));
            i = end + 1;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let p = match two {
                "==" => "==",
                "!=" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    b'<' => "<",
                    b'>' => ">",
                    b'.' => ".",
                    b'|' => "|",
                    b'(' => "(",
                    b')' => ")",
                    b',' => ",",
                    b'=' => "=",
                    _ => return Err(Declined),
                },
            };
            i += p.len();
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

/// Words MiniJinja reads as something other than a variable.
const RESERVED: [&str; 16] = [
    "and", "or", "not", "is", "in", "if", "else", "true", "false", "none", "True", "False", "None",
    "loop", "self", "super",
];

struct Parser<'t, 's> {
    toks: &'t [Tok<'s>],
    at: usize,
    locals: &'t [&'s str],
}

impl<'s> Parser<'_, 's> {
    fn peek(&self) -> Option<&Tok<'s>> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok<'s>> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(q)) if *q == w) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> Direct<()> {
        if self.at == self.toks.len() {
            Ok(())
        } else {
            Err(Declined)
        }
    }

    fn cond(&mut self) -> Direct<Cond> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Direct<Cond> {
        let mut left = self.not()?;
        while self.eat_word("and") {
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Direct<Cond> {
        if self.eat_word("not") {
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.compare()
    }

    fn compare(&mut self) -> Direct<Cond> {
        let left = self.filtered()?;
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            let defined = match self.next() {
                Some(Tok::Ident("defined")) => true,
                Some(Tok::Ident("undefined")) => false,
                _ => return Err(Declined),
            };
            return Ok(Cond::Defined(left, defined != negated));
        }
        let op = match self.peek() {
            Some(Tok::Punct("==")) => Op::Eq,
            Some(Tok::Punct("!=")) => Op::Ne,
            Some(Tok::Punct("<")) => Op::Lt,
            Some(Tok::Punct("<=")) => Op::Le,
            Some(Tok::Punct(">")) => Op::Gt,
            Some(Tok::Punct(">=")) => Op::Ge,
            _ => return Ok(Cond::Truthy(left)),
        };
        self.at += 1;
        let right = self.filtered()?;
        // `a < b < c` chains in MiniJinja.
        if matches!(
            self.peek(),
            Some(Tok::Punct("==" | "!=" | "<" | "<=" | ">" | ">="))
        ) {
            return Err(Declined);
        }
        Ok(Cond::Cmp(left, op, right))
    }

    fn filtered(&mut self) -> Direct<Expr> {
        let mut e = self.primary()?;
        while self.eat_punct("|") {
            let Some(Tok::Ident(name)) = self.next() else {
                return Err(Declined);
            };
            let f = match name {
                "default" => {
                    if !self.eat_punct("(") {
                        return Err(Declined);
                    }
                    let lit = self.literal()?;
                    if !self.eat_punct(")") {
                        return Err(Declined);
                    }
                    Filter::Default(lit)
                }
                "length" => Filter::Length,
                "upper" => Filter::Upper,
                "lower" => Filter::Lower,
                "trim" => Filter::Trim,
                "date" => self.date()?,
                "currency" => self.currency()?,
                _ => return Err(Declined),
            };
            if !matches!(
                f,
                Filter::Default(_) | Filter::Date { .. } | Filter::Currency { .. }
            ) && self.eat_punct("(")
                && !self.eat_punct(")")
            {
                return Err(Declined);
            }
            e = Expr::Filtered(Box::new(e), f);
        }
        Ok(e)
    }

    /// `date`'s arguments, after its name: none, or one format string, then maybe `locale=`
    /// (no `tz=`: MiniJinja's).
    fn date(&mut self) -> Direct<Filter> {
        let (mut format, mut locale) = (None, None);
        if !self.eat_punct("(") || self.eat_punct(")") {
            return Ok(Filter::Date { format, locale });
        }
        if let Some(Tok::Str(_)) = self.peek() {
            let Lit::Str(f) = self.literal()? else {
                return Err(Declined);
            };
            format = Some(f);
        }
        if format.is_none() || self.eat_punct(",") {
            let (Some(Tok::Ident("locale")), Some(Tok::Punct("="))) = (self.next(), self.next())
            else {
                return Err(Declined);
            };
            locale = Some(Box::new(self.filtered()?));
        }
        if !self.eat_punct(")") {
            return Err(Declined);
        }
        Ok(Filter::Date { format, locale })
    }

    /// `currency`'s arguments, after its name: one code, in place or as `code=`, and maybe
    /// `locale=`; anything else (another argument, one given twice) is MiniJinja's to refuse.
    fn currency(&mut self) -> Direct<Filter> {
        if !self.eat_punct("(") {
            return Err(Declined);
        }
        let (mut code, mut locale) = (None, None);
        let mut first = true;
        while !self.eat_punct(")") {
            if !first && !self.eat_punct(",") {
                return Err(Declined);
            }
            first = false;
            let keyword = match (self.peek(), self.toks.get(self.at + 1)) {
                (Some(Tok::Ident(k)), Some(Tok::Punct("="))) => {
                    let k = *k;
                    self.at += 2;
                    Some(k)
                }
                _ => None,
            };
            let value = Box::new(self.filtered()?);
            let slot = match keyword {
                None | Some("code") => &mut code,
                Some("locale") => &mut locale,
                Some(_) => return Err(Declined),
            };
            if slot.replace(value).is_some() {
                return Err(Declined);
            }
        }
        Ok(Filter::Currency {
            code: code.ok_or(Declined)?,
            locale,
        })
    }

    fn literal(&mut self) -> Direct<Lit> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s.into())),
            Some(Tok::Int(i)) => Ok(Lit::Int(i)),
            Some(Tok::Float(f)) => Ok(Lit::Float(f)),
            _ => Err(Declined),
        }
    }

    fn primary(&mut self) -> Direct<Expr> {
        match self.peek() {
            Some(Tok::Str(_) | Tok::Int(_) | Tok::Float(_)) => {
                return Ok(Expr::Lit(self.literal()?))
            }
            Some(Tok::Ident(_)) => {}
            _ => return Err(Declined),
        }
        let Some(Tok::Ident(name)) = self.next() else {
            return Err(Declined);
        };
        let root = if let Some(depth) = self.locals.iter().rposition(|l| *l == name) {
            Root::Local(depth)
        } else {
            match name {
                "profile" => Root::Profile,
                "event" => Root::Event,
                "trigger" => Root::Trigger,
                "waited" => Root::Waited,
                "journey" => Root::Journey,
                "user_id" => Root::UserId,
                "now" => Root::Now,
                "unsubscribe_url" => Root::Unsubscribe,
                _ => return Err(Declined),
            }
        };
        let mut attrs = Vec::new();
        while self.eat_punct(".") {
            match self.next() {
                Some(Tok::Ident(a)) => attrs.push(Box::from(a)),
                _ => return Err(Declined),
            }
        }
        Ok(Expr::Path(root, attrs))
    }
}

fn parse_expr(inner: &str, locals: &[&str]) -> Direct<Expr> {
    let toks = tokens(inner)?;
    let mut p = Parser {
        toks: &toks,
        at: 0,
        locals,
    };
    let e = p.filtered()?;
    p.done()?;
    Ok(e)
}

fn parse_cond(toks: &[Tok<'_>], locals: &[&str]) -> Direct<Cond> {
    let mut p = Parser {
        toks,
        at: 0,
        locals,
    };
    let c = p.cond()?;
    p.done()?;
    Ok(c)
}

/// What closed a block of nodes.
enum Closer {
    Eof,
    Elif(Cond),
    Else,
    EndIf,
    EndFor,
}

struct Compiler<'s> {
    pieces: std::vec::IntoIter<Piece<'s>>,
    locals: Vec<&'s str>,
    /// Blocks open around the piece being compiled.
    depth: usize,
}

impl<'s> Compiler<'s> {
    fn block(&mut self) -> Direct<(Vec<Node>, Closer)> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            match piece {
                Piece::Text(t) => nodes.push(Node::Text(t.into())),
                Piece::Expr(inner) => nodes.push(Node::Out(parse_expr(inner, &self.locals)?)),
                Piece::Stmt(inner) => {
                    let toks = tokens(inner)?;
                    let (head, rest) = toks.split_first().ok_or(Declined)?;
                    match head {
                        Tok::Ident("if") => {
                            nodes.push(self.if_block(parse_cond(rest, &self.locals)?)?)
                        }
                        Tok::Ident("elif") => {
                            return Ok((nodes, Closer::Elif(parse_cond(rest, &self.locals)?)))
                        }
                        Tok::Ident("else") if rest.is_empty() => return Ok((nodes, Closer::Else)),
                        Tok::Ident("endif") if rest.is_empty() => {
                            return Ok((nodes, Closer::EndIf))
                        }
                        Tok::Ident("endfor") if rest.is_empty() => {
                            return Ok((nodes, Closer::EndFor))
                        }
                        Tok::Ident("for") => nodes.push(self.for_block(rest)?),
                        _ => return Err(Declined),
                    }
                }
            }
        }
        Ok((nodes, Closer::Eof))
    }

    fn if_block(&mut self, first: Cond) -> Direct<Node> {
        if self.depth >= DEPTH {
            return Err(Declined);
        }
        self.depth += 1;
        let node = self.if_rest(first);
        self.depth -= 1;
        node
    }

    fn if_rest(&mut self, first: Cond) -> Direct<Node> {
        let mut branches = Vec::new();
        let mut cond = first;
        loop {
            let (nodes, end) = self.block()?;
            branches.push((cond, nodes));
            match end {
                Closer::Elif(c) => cond = c,
                Closer::Else => {
                    let (otherwise, end) = self.block()?;
                    if !matches!(end, Closer::EndIf) {
                        return Err(Declined);
                    }
                    return Ok(Node::If {
                        branches,
                        otherwise,
                    });
                }
                Closer::EndIf => {
                    return Ok(Node::If {
                        branches,
                        otherwise: Vec::new(),
                    })
                }
                Closer::Eof | Closer::EndFor => return Err(Declined),
            }
        }
    }

    fn for_block(&mut self, rest: &[Tok<'s>]) -> Direct<Node> {
        // `for NAME in PATH-OR-FILTERED`, nothing else (no unpacking, `if`, `recursive`).
        let [Tok::Ident(var), Tok::Ident("in"), iter @ ..] = rest else {
            return Err(Declined);
        };
        if RESERVED.contains(var) || crate::template::SCOPE.contains(var) || iter.is_empty() {
            return Err(Declined);
        }
        if self.depth >= DEPTH {
            return Err(Declined);
        }
        let mut p = Parser {
            toks: iter,
            at: 0,
            locals: &self.locals,
        };
        let iter = p.filtered()?;
        p.done()?;
        self.locals.push(var);
        self.depth += 1;
        let block = self.block();
        self.depth -= 1;
        self.locals.pop();
        let (body, end) = block?;
        if !matches!(end, Closer::EndFor) {
            return Err(Declined);
        }
        Ok(Node::For { iter, body })
    }
}

impl Program {
    /// Compiles `source`, or declines when it uses anything the direct renderer does not do.
    pub fn compile(source: &str) -> Direct<Program> {
        let mut c = Compiler {
            pieces: pieces(source)?.into_iter(),
            locals: Vec::new(),
            depth: 0,
        };
        let (nodes, end) = c.block()?;
        if !matches!(end, Closer::Eof) {
            return Err(Declined);
        }
        let size = likely_size(&nodes);
        Ok(Program { nodes, size })
    }

    /// Renders, or declines (the caller renders with MiniJinja instead).
    pub fn render<'r>(&'r self, scope: &'r Scope<'r>, html: bool) -> Direct<String> {
        let mut r = Renderer {
            scope,
            html,
            locals: Vec::new(),
            work: 0,
            out: String::with_capacity(self.size),
        };
        r.nodes(&self.nodes)?;
        Ok(r.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// A value while rendering, borrowed where it can be.
enum V<'a> {
    /// A value the scope does not have, a null included (as `template::NullAsMissing` reads it).
    Undefined,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Seq(&'a [Value]),
    Map(&'a Map<String, Value>),
    Profile,
    Journey,
}

fn json(v: &Value) -> V<'_> {
    match v {
        Value::Null => V::Undefined,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                V::U64(u)
            } else if let Some(i) = n.as_i64() {
                V::I64(i)
            } else {
                n.as_f64().map(V::F64).unwrap_or(V::Undefined)
            }
        }
        Value::String(s) => V::Str(Cow::Borrowed(s)),
        Value::Array(a) => V::Seq(a),
        Value::Object(m) => V::Map(m),
    }
}

fn lit(l: &Lit) -> V<'_> {
    match l {
        Lit::Str(s) => V::Str(Cow::Borrowed(s)),
        Lit::Int(i) => V::I64(*i),
        Lit::Float(f) => V::F64(*f),
    }
}

/// A number as MiniJinja compares it: exactly as integers, or as floats when one of them is.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &V<'_>) -> Option<Num> {
    match v {
        V::U64(u) => Some(Num::Int(i128::from(*u))),
        V::I64(i) => Some(Num::Int(i128::from(*i))),
        V::F64(f) if f.is_finite() => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Integers a float holds exactly.
const EXACT: i128 = 1 << 53;

fn compare(a: &V<'_>, b: &V<'_>) -> Direct<std::cmp::Ordering> {
    if let (V::Str(x), V::Str(y)) = (a, b) {
        return Ok(x.as_ref().cmp(y.as_ref()));
    }
    match (num(a).ok_or(Declined)?, num(b).ok_or(Declined)?) {
        (Num::Int(x), Num::Int(y)) => Ok(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).ok_or(Declined),
        (Num::Int(x), Num::Float(y)) if x.abs() <= EXACT => {
            (x as f64).partial_cmp(&y).ok_or(Declined)
        }
        (Num::Float(x), Num::Int(y)) if y.abs() <= EXACT => {
            x.partial_cmp(&(y as f64)).ok_or(Declined)
        }
        _ => Err(Declined),
    }
}

fn truthy(v: &V<'_>) -> Direct<bool> {
    Ok(match v {
        V::Undefined => false,
        V::Bool(b) => *b,
        V::U64(u) => *u != 0,
        V::I64(i) => *i != 0,
        V::F64(f) => *f != 0.0,
        V::Str(s) => !s.is_empty(),
        V::Seq(s) => !s.is_empty(),
        V::Map(m) => !m.is_empty(),
        V::Profile | V::Journey => return Err(Declined),
    })
}

/// MiniJinja's HTML escaping (`<`, `>`, `&`, `"`, `'` and `/`).
fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            b'/' => "&#x2f;",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(rep);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

struct Renderer<'r> {
    scope: &'r Scope<'r>,
    html: bool,
    locals: Vec<&'r Value>,
    work: u32,
    out: String,
}

impl<'r> Renderer<'r> {
    fn charge(&mut self, units: u32) -> Direct<()> {
        self.work += units;
        if self.work > WORK {
            return Err(Declined);
        }
        Ok(())
    }

    fn nodes(&mut self, nodes: &'r [Node]) -> Direct<()> {
        for n in nodes {
            self.charge(1)?;
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Out(e) => {
                    let v = self.eval(e)?;
                    self.write(&v)?;
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mut taken = false;
                    for (cond, body) in branches {
                        if self.cond(cond)? {
                            self.nodes(body)?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.nodes(otherwise)?;
                    }
                }
                Node::For { iter, body } => {
                    let V::Seq(items) = self.eval(iter)? else {
                        return Err(Declined);
                    };
                    for item in items {
                        self.charge(2)?;
                        self.locals.push(item);
                        let r = self.nodes(body);
                        self.locals.pop();
                        r?;
                    }
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, v: &V<'_>) -> Direct<()> {
        match v {
            V::Undefined => {}
            V::Bool(b) => self.out.push_str(if *b { "True" } else { "False" }),
            V::U64(u) => write!(self.out, "{u}").map_err(|_| Declined)?,
            V::I64(i) => write!(self.out, "{i}").map_err(|_| Declined)?,
            V::F64(f) => {
                if !f.is_finite() {
                    return Err(Declined);
                }
                let at = self.out.len();
                write!(self.out, "{f}").map_err(|_| Declined)?;
                if !self.out[at..].contains('.') {
                    self.out.push_str(".0");
                }
            }
            V::Str(s) if self.html => escape_into(&mut self.out, s),
            V::Str(s) => self.out.push_str(s),
            V::Seq(_) | V::Map(_) | V::Profile | V::Journey => return Err(Declined),
        }
        Ok(())
    }

    fn cond(&mut self, c: &'r Cond) -> Direct<bool> {
        self.charge(1)?;
        Ok(match c {
            Cond::Truthy(e) => truthy(&self.eval(e)?)?,
            Cond::Defined(e, want) => {
                let v = self.eval(e)?;
                matches!(v, V::Undefined) != *want
            }
            Cond::Cmp(a, op, b) => {
                let (a, b) = (self.eval(a)?, self.eval(b)?);
                let o = compare(&a, &b)?;
                use std::cmp::Ordering::*;
                match op {
                    Op::Eq => o == Equal,
                    Op::Ne => o != Equal,
                    Op::Lt => o == Less,
                    Op::Le => o != Greater,
                    Op::Gt => o == Greater,
                    Op::Ge => o != Less,
                }
            }
            Cond::Not(c) => !self.cond(c)?,
            Cond::And(a, b) => self.cond(a)? && self.cond(b)?,
            Cond::Or(a, b) => self.cond(a)? || self.cond(b)?,
        })
    }

    /// `value | date(format, locale=...)` on text as `template::date` writes it; what MiniJinja's
    /// filter refuses (a locale that is not text) or this one does not read (a number)
    /// declines.
    fn date(
        &mut self,
        value: V<'r>,
        format: &'r Option<Box<str>>,
        locale: &'r Option<Box<Expr>>,
    ) -> Direct<V<'r>> {
        let tag = self.locale_arg(locale)?;
        let V::Str(text) = value else {
            return Err(Declined);
        };
        // The user's zone and locale as MiniJinja's filter finds them.
        let tz = super::date::zone_of(
            self.scope.traits.get("timezone").and_then(Value::as_str),
            self.scope.journey_timezone,
        );
        let zoned = super::date::zoned_text(&text, &tz).ok_or(Declined)?;
        // The text's own language, as MiniJinja's filter finds it.
        let tag = tag.or_else(|| self.scope.language.map(Cow::Borrowed));
        let names = super::date::names(tag.as_deref());
        let text = super::date::format(format.as_deref(), &zoned, names).ok_or(Declined)?;
        Ok(V::Str(Cow::Owned(text)))
    }

    /// A `locale=` argument's text: none when not given or missing; what MiniJinja's filters
    /// refuse (a value that is not text) declines.
    fn locale_arg(&mut self, locale: &'r Option<Box<Expr>>) -> Direct<Option<Cow<'r, str>>> {
        match locale {
            None => Ok(None),
            Some(l) => match self.eval(l)? {
                V::Undefined => Ok(None),
                V::Str(s) => Ok(Some(s)),
                _ => Err(Declined),
            },
        }
    }

    /// `value | currency(code, locale=...)` as `template::currency` writes it; what MiniJinja's
    /// filter refuses (a code or locale that is not text, a value that is no number) declines.
    fn currency(
        &mut self,
        value: V<'r>,
        code: &'r Expr,
        locale: &'r Option<Box<Expr>>,
    ) -> Direct<V<'r>> {
        use super::currency::{self, Code};
        let code = match self.eval(code)? {
            V::Undefined => None,
            V::Str(s) => Some(s),
            _ => return Err(Declined),
        };
        let tag = self.locale_arg(locale)?;
        if matches!(value, V::Undefined) {
            return Ok(V::Undefined);
        }
        let code = match code.as_deref().map(str::trim) {
            None | Some("") => Code::Missing,
            Some(c) => Code::Text(c),
        };
        let tag = tag.or_else(|| {
            let own = self.scope.traits.get("locale")?.as_str()?;
            Some(Cow::Borrowed(own))
        });
        let locale = currency::locale(tag.as_deref());
        let text = match value {
            V::U64(u) => currency::format_int(i128::from(u), &code, locale),
            V::I64(i) => currency::format_int(i128::from(i), &code, locale),
            V::F64(f) => currency::format_f64(f, &code, locale),
            V::Str(s) => currency::text_amount(&s)
                .and_then(|amount| currency::format(&amount, &code, locale)),
            _ => None,
        };
        Ok(V::Str(Cow::Owned(text.ok_or(Declined)?)))
    }

    fn eval(&mut self, e: &'r Expr) -> Direct<V<'r>> {
        self.charge(1)?;
        match e {
            Expr::Lit(l) => Ok(lit(l)),
            Expr::Path(root, attrs) => {
                let s = self.scope;
                let mut v = match root {
                    Root::Profile => V::Profile,
                    Root::Event => json(s.event),
                    Root::Trigger => json(s.trigger),
                    Root::Waited => json(s.waited),
                    Root::Journey => V::Journey,
                    Root::UserId => V::Str(Cow::Borrowed(s.user_id)),
                    Root::Now => V::Str(Cow::Owned(s.now.to_string())),
                    Root::Unsubscribe => match s.unsubscribe_url {
                        Some(u) => V::Str(Cow::Borrowed(u)),
                        None => V::Undefined,
                    },
                    Root::Local(i) => json(self.locals.get(*i).ok_or(Declined)?),
                };
                for a in attrs {
                    self.charge(1)?;
                    v = match v {
                        V::Map(m) => m.get(a.as_ref()).map(json).unwrap_or(V::Undefined),
                        V::Profile => match s.traits.get(a.as_ref()) {
                            Some(t) => json(t),
                            None if a.as_ref() == "user_id" => {
                                V::Str(Cow::Borrowed(s.profile_user_id))
                            }
                            None => V::Undefined,
                        },
                        V::Journey => match a.as_ref() {
                            "id" => V::Str(Cow::Borrowed(s.journey_id)),
                            "name" => V::Str(Cow::Borrowed(s.journey_name)),
                            "version" => V::U64(s.journey_version),
                            "timezone" => s
                                .journey_timezone
                                .map_or(V::Undefined, |z| V::Str(Cow::Borrowed(z))),
                            _ => V::Undefined,
                        },
                        // An attribute of anything else (undefined, a list, a string…): MiniJinja
                        // decides, and may refuse.
                        _ => return Err(Declined),
                    };
                }
                Ok(v)
            }
            Expr::Filtered(inner, f) => {
                self.charge(2)?;
                let v = self.eval(inner)?;
                Ok(match (f, v) {
                    (Filter::Default(l), V::Undefined) => lit(l),
                    (Filter::Default(_), v) => v,
                    (Filter::Length, V::Seq(s)) => V::U64(s.len() as u64),
                    (Filter::Length, V::Map(m)) => V::U64(m.len() as u64),
                    (Filter::Length, V::Str(s)) => V::U64(s.chars().count() as u64),
                    // MiniJinja's filters read a missing value (a null too) as no text.
                    (Filter::Length, V::Undefined) => V::U64(0),
                    (Filter::Upper | Filter::Lower | Filter::Trim, V::Undefined) => {
                        V::Str(Cow::Borrowed(""))
                    }
                    (Filter::Upper, V::Str(s)) => V::Str(Cow::Owned(s.to_uppercase())),
                    (Filter::Lower, V::Str(s)) => V::Str(Cow::Owned(s.to_lowercase())),
                    (Filter::Trim, V::Str(s)) => V::Str(Cow::Owned(s.trim().to_string())),
                    (Filter::Date { format, locale }, v) => self.date(v, format, locale)?,
                    (Filter::Currency { code, locale }, v) => self.currency(v, code, locale)?,
                    _ => return Err(Declined),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::{AutoEscape, Environment};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use serde_json::json;
    use std::cell::Cell;

    /// MiniJinja set up as the render cache sets it up.
    fn minijinja(html: bool) -> Environment<'static> {
        crate::template::build(if html {
            AutoEscape::Html
        } else {
            AutoEscape::None
        })
    }

    #[derive(Debug)]
    struct Case {
        traits: Map<String, Value>,
        event: Value,
        /// The trigger event (`trigger.*`), and the event a `wait_for` met (`waited.*`, often
        /// none).
        trigger: Value,
        waited: Value,
        unsubscribe: Option<String>,
        journey_zone: Option<&'static str>,
    }

    impl Case {
        fn scope(&self) -> Scope<'_> {
            Scope {
                trigger: &self.trigger,
                waited: &self.waited,
                traits: &self.traits,
                profile_user_id: "u-1",
                user_id: "u-1",
                event: &self.event,
                journey_id: "cart",
                journey_name: "Cart <abandonment>",
                journey_version: 3,
                journey_timezone: self.journey_zone,
                now: "2026-12-01T10:00:00Z".parse().expect("timestamp"),
                unsubscribe_url: self.unsubscribe.as_deref(),
                // As in a `locales` variant chosen for her: her locale.
                language: self.traits.get("locale").and_then(Value::as_str),
            }
        }
    }

    /// What MiniJinja renders `source` to over the case's scope, converted as the engine
    /// converts it when it falls back.
    fn by_minijinja(source: &str, case: &Case, html: bool) -> Option<Result<String, String>> {
        let env = minijinja(html);
        let tmpl = env.template_from_str(source).ok()?;
        let ctx = crate::template::Context::new(case.scope());
        Some(tmpl.render(ctx.values()).map_err(|e| format!("{e:#}")))
    }

    /// Renders directly and checks the output is MiniJinja's; says whether it rendered.
    fn agrees(source: &str, case: &Case, html: bool) -> Result<bool, TestCaseError> {
        let Ok(program) = Program::compile(source) else {
            return Ok(false);
        };
        let Ok(direct) = program.render(&case.scope(), html) else {
            return Ok(false);
        };
        match by_minijinja(source, case, html) {
            Some(Ok(mj)) => prop_assert_eq!(&direct, &mj, "{:?} (html: {})", source, html),
            Some(Err(e)) => prop_assert!(
                false,
                "{source:?} (html: {html}) rendered directly to {direct:?}, MiniJinja failed: {e}"
            ),
            None => prop_assert!(
                false,
                "{source:?} compiled directly, MiniJinja does not compile it"
            ),
        }
        Ok(true)
    }

    const KEYS: [&str; 13] = [
        "first_name",
        "locale",
        "name",
        "items",
        "total",
        "price",
        "stock",
        "tags",
        "id",
        "version",
        "user_id",
        "missing",
        "nested",
    ];

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            prop::sample::select(vec![
                "Ann",
                "<b>Ann</b>",
                "O'Neil & \"co\"",
                "a/b",
                "",
                "  pad  ",
                "zoë",
                "ÉCOLE",
                "42",
                "a\nb",
                "2026-03-10T22:59:59Z",
                "fr-CA",
                "ja",
            ])
            .prop_map(|s| json!(s)),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            prop::sample::select(vec![0i64, 1, 3, 5, -5, 40, 9_007_199_254_740_993])
                .prop_map(|i| json!(i)),
            prop::sample::select(vec![
                79.9,
                10.0,
                0.1,
                -0.0,
                1e21,
                1e-7,
                5.0,
                4.999,
                0.30000000000000004,
                -2.5,
                9_007_199_254_740_992.0,
            ])
            .prop_map(|f| json!(f)),
            any::<bool>().prop_map(|b| json!(b)),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..4)
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    )),
            ]
        })
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..6),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..6),
            prop::option::of(Just("https://x.test/u?a=1&b=<2>".to_string())),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), value(), 0..4),
            prop::option::of(prop::collection::btree_map(
                prop::sample::select(KEYS.to_vec()),
                value(),
                0..4,
            )),
        )
            .prop_map(|(traits, event, unsubscribe, trigger, waited)| Case {
                traits: traits
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                event: Value::Object(event.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
                trigger: Value::Object(
                    trigger
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
                waited: waited.map_or(Value::Null, |w| {
                    Value::Object(w.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
                unsubscribe,
                journey_zone: None,
            })
    }

    fn expr() -> impl Strategy<Value = String> {
        let root = prop_oneof![
            8 => prop::sample::select(vec!["profile", "event", "journey", "profile", "event", "user_id", "now", "unsubscribe_url", "item", "trigger", "waited"]),
            1 => prop::sample::select(vec!["x", "loop", "range"]),
        ];
        let attrs = prop_oneof![
            4 => prop::collection::vec(prop::sample::select(KEYS.to_vec()), 1..2),
            1 => prop::collection::vec(prop::sample::select(KEYS.to_vec()), 0..3),
        ];
        let literal = prop::sample::select(vec!["'lit'", "\"x/y\"", "5", "2.5", "0", "'5'"]);
        let filter = prop_oneof![
            8 => prop::sample::select(vec![
                " | default('there')", "|default(3)", " | default(1.5)", "|length", " | upper",
                " | lower", "|trim", " | length()", "|default('a/<b>')",
            ]),
            1 => prop::sample::select(vec![
                "|d('x')", " | title", " | currency('EUR')",
                " | currency(event.price, locale='de-CH')",
                "|currency(code='jpy',locale=item.name)",
                " | date('%A %-d %B %p')", "|date(locale=item.name)",
                " | date('%a %b %c', locale='ru')",
            ]),
        ];
        let filters = prop::collection::vec(filter, 0..3);
        let path = (root, attrs).prop_map(|(r, a)| {
            let path: String = a.iter().map(|k| format!(".{k}")).collect();
            format!("{r}{path}")
        });
        let primary = prop_oneof![4 => path, 1 => literal.prop_map(str::to_string)];
        (primary, filters).prop_map(|(p, f)| format!("{p}{}", f.concat()))
    }

    fn cond() -> impl Strategy<Value = String> {
        let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
        let leaf = prop_oneof![
            expr(),
            expr().prop_map(|e| format!("{e} is defined")),
            expr().prop_map(|e| format!("{e} is not defined")),
            expr().prop_map(|e| format!("{e} is undefined")),
            (expr(), op, expr()).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        ];
        leaf.prop_recursive(2, 4, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|c| format!("not {c}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("{a} or {b}")),
            ]
        })
    }

    fn template() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            6 => prop::sample::select(vec![
                "Hi ", "\n", "<p>", "}", "{", " } ", "a/b", "ü", "{# note #}", "\r\n",
            ])
            .prop_map(str::to_string),
            1 => Just("{{- user_id }}".to_string()),
            4 => expr().prop_map(|e| format!("{{{{ {e} }}}}")),
            2 => expr().prop_map(|e| format!("{{{{{e}}}}}")),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            let body = prop::collection::vec(inner, 0..3).prop_map(|v| v.concat());
            prop_oneof![
                (cond(), body.clone()).prop_map(|(c, b)| format!("{{% if {c} %}}{b}{{% endif %}}")),
                (cond(), body.clone(), cond(), body.clone(), body.clone()).prop_map(
                    |(c, b, c2, b2, e)| format!(
                        "{{% if {c} %}}{b}{{% elif {c2} %}}{b2}{{% else %}}{e}{{% endif %}}"
                    )
                ),
                (
                    prop::sample::select(vec!["item", "x"]),
                    expr(),
                    body.clone()
                )
                    .prop_map(|(v, e, b)| format!("{{% for {v} in {e} %}}{b}{{% endfor %}}")),
                body,
            ]
        })
    }

    #[test]
    fn renders_what_minijinja_renders_or_declines() {
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        });
        let (tried, rendered, compiled) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
        runner
            .run(
                &(template(), case(), any::<bool>()),
                |(source, case, html)| {
                    tried.set(tried.get() + 1);
                    if Program::compile(&source).is_ok() {
                        compiled.set(compiled.get() + 1);
                    }
                    if agrees(&source, &case, html)? {
                        rendered.set(rendered.get() + 1);
                    }
                    Ok(())
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        // Not vacuous: many generated templates are in the direct part of the language (the
        // generator also makes what it declines: whitespace control, unknown filters, `loop`,
        // attributes of lists and strings, comparisons of unlike values).
        assert!(
            rendered.get() * 8 > tried.get(),
            "only {} of {} rendered directly ({} compiled)",
            rendered.get(),
            tried.get(),
            compiled.get()
        );
    }

    #[test]
    fn prints_and_compares_every_kind_of_value_as_minijinja_does() {
        let values = [
            json!("Ann"),
            json!("<b>O'Neil & \"co\"</b> a/b"),
            json!(""),
            json!("zoë"),
            json!(0),
            json!(5),
            json!(-5),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(79.9),
            json!(10.0),
            json!(5.0),
            json!(-0.0),
            json!(1e21),
            json!(1e-7),
            json!(0.1),
            json!(true),
            json!(false),
            json!(null),
            json!(9_007_199_254_740_993u64),
            json!(9_007_199_254_740_992.0),
        ];
        let mut rendered = 0;
        for v in &values {
            for w in &values {
                let case = Case {
                    trigger: json!({"order_id": "o-1"}),
                    waited: Value::Null,
                    traits: Map::new(),
                    event: json!({"v": v, "w": w}),
                    unsubscribe: None,
                    journey_zone: None,
                };
                for source in [
                    "{{ event.v }}",
                    "{{ event.u | default('d') }}|{{ event.v | default('d') }}",
                    "{{ event.v | upper }}|{{ event.v | length }}",
                    "{{ event.v | lower }}|{{ event.v | trim | default('d') }}|{{ event.v | trim | length }}",
                    "{% if event.v is defined %}d{% endif %}{% if event.v | upper %}t{% endif %}",
                    "{% if event.v %}t{% else %}f{% endif %}",
                    "{% if event.v < event.w %}<{% elif event.v == event.w %}={% else %}>{% endif %}",
                    "{% if event.v >= 5 %}ge{% endif %}{% if event.v != 'Ann' %}ne{% endif %}",
                ] {
                    for html in [false, true] {
                        if agrees(source, &case, html).expect("agrees") {
                            rendered += 1;
                        }
                    }
                }
            }
        }
        assert!(rendered > 1_000, "{rendered}");
    }

    /// `trigger.*` and `waited.*` are read in place like `event.*`, to what MiniJinja renders;
    /// a `waited` that is none (no `wait_for` met) is missing to both.
    #[test]
    fn trigger_and_waited_render_directly_as_minijinja_does() {
        for waited in [json!({"stars": 5, "order_id": "o-1"}), Value::Null] {
            let case = Case {
                trigger: json!({"order_id": "o-1", "items": [{"name": "Pho"}]}),
                waited: waited.clone(),
                traits: Map::new(),
                event: json!({"order_id": "o-1"}),
                unsubscribe: None,
                journey_zone: None,
            };
            for source in [
                "{{ trigger.order_id }}/{{ waited.stars }}",
                "{% if waited.stars >= 4 %}coupon{% else %}sorry{% endif %}",
                "{% if waited is defined %}w{% endif %}{{ waited | length }}",
                "{% for i in trigger.items %}{{ i.name | upper }}{% endfor %}",
                "{% if trigger.order_id == event.order_id %}same{% endif %}",
            ] {
                for html in [false, true] {
                    agrees(source, &case, html).expect("agrees");
                }
            }
            let direct = Program::compile("{{ trigger.order_id }}")
                .and_then(|p| p.render(&case.scope(), false));
            assert_eq!(direct.ok().as_deref(), Some("o-1"), "rendered directly");
        }
    }

    /// A null is a missing value to both renderers: rendered directly (not left to MiniJinja),
    /// to the text MiniJinja gives.
    #[test]
    fn a_null_renders_directly_as_a_missing_value() {
        let case = Case {
            trigger: json!({"order_id": "o-1"}),
            waited: Value::Null,
            traits: json!({"nick": null})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            event: json!({"v": null, "items": [{"name": null}]}),
            unsubscribe: None,
            journey_zone: None,
        };
        for (source, want) in [
            (
                "{{ event.v | upper }}|{{ event.v | length }}|{{ event.v | default('d') }}|{{ event.v | trim | lower }}",
                "|0|d|",
            ),
            (
                "{% if event.v is defined %}d{% else %}u{% endif %}{% if profile.nick %}t{% endif %}",
                "u",
            ),
            (
                "{% for i in event.items %}[{{ i.name | upper }}]{% endfor %}{{ unsubscribe_url | lower }}{{ journey.timezone | length }}",
                "[]0",
            ),
        ] {
            let program = Program::compile(source).expect("compiles");
            for html in [false, true] {
                assert_eq!(
                    program.render(&case.scope(), html).ok().as_deref(),
                    Some(want),
                    "{source}"
                );
                assert!(agrees(source, &case, html).expect("agrees"), "{source}");
            }
        }
    }

    #[test]
    fn the_cart_templates_render_directly_and_as_minijinja_does() {
        let journey = crate::dsl::parse(
            "cart.yaml",
            include_str!("../../../examples/journeys/cart_abandonment.yaml"),
        )
        .expect("valid journey");
        let mut sources = Vec::new();
        collect_templates(&serde_json::to_value(&journey).expect("json"), &mut sources);
        assert!(sources.len() >= 4, "{sources:?}");
        let case = Case {
            trigger: json!({"order_id": "o-1"}),
            waited: Value::Null,
            traits: json!({"first_name": "Ann <3", "email": "a@x.test"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            event: json!({"cart_id": "c/1", "total": 89.9, "currency": "EUR",
                "items": [{"name": "Trail shoes", "price": 79.9, "stock": 3}, {"name": "Socks", "price": 10, "stock": 40}, {"name": "Hat", "price": 5.0}]}),
            unsubscribe: Some("https://x.test/u?t=1&a=b".into()),
            journey_zone: None,
        };
        for source in sources {
            for html in [false, true] {
                assert!(agrees(&source, &case, html).expect("agrees"), "{source:?}");
            }
        }
    }

    /// Every string in a journey that holds a tag.
    fn collect_templates(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| collect_templates(v, out)),
            Value::Object(m) => m.values().for_each(|v| collect_templates(v, out)),
            _ => {}
        }
    }

    /// `date` renders directly what MiniJinja's filter renders, in the user's zone, and leaves
    /// to MiniJinja what it does not read (numbers, absent values, `tz=`, bad text).
    #[test]
    fn the_date_filter_renders_as_minijinja_renders_it() {
        let sources = [
            "{{ event.at | date }}",
            "{{ event.at | date() }}",
            "{{ event.at | date('%A %-d %B at %H:%M') }}",
            "{{ event.day | date('%H:%M %Z') }}",
            "{{ event.local | date('%Y-%m-%d %H:%M') }}",
            "<p>{{ event.at | date('<%H>') }}</p>",
            "{{ event.at | date('%H:%M') | upper }}",
            "{{ journey.timezone }}",
            "{{ event.bad | date }}",
            "{{ event.epoch | date }}",
            "{{ event.missing | date }}",
            "{{ event.at | date('%H', tz='Asia/Tokyo') }}",
        ];
        let mut rendered = 0;
        let mut localized = 0;
        // The user's zone, then the journey's, as a wait finds them.
        for (zone, journey_zone) in [
            Some("Europe/Paris"),
            Some("America/Chicago"),
            Some("Mars/Base"),
            None,
        ]
        .into_iter()
        .flat_map(|z| {
            [
                (z, None),
                (z, Some("Asia/Tokyo")),
                (z, Some("Nowhere/Land")),
            ]
        }) {
            let mut traits = Map::new();
            if let Some(z) = zone {
                traits.insert("timezone".into(), json!(z));
            }
            let case = Case {
                trigger: json!({"order_id": "o-1"}),
                waited: Value::Null,
                traits,
                event: json!({"at": "2026-12-24T18:30:00Z", "day": "2026-12-24",
                              "local": "2026-03-29T02:30:00", "bad": "soon", "epoch": 1798137000}),
                unsubscribe: None,
                journey_zone,
            };
            for source in sources {
                for html in [false, true] {
                    match agrees(source, &case, html) {
                        Ok(true) => rendered += 1,
                        Ok(false) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
        // The first eight sources in every pair of zones, both modes; the rest go to MiniJinja.
        assert_eq!(rendered, 8 * 4 * 3 * 2);
        // Names in the user's language, or the one `locale=` names, as MiniJinja's filter
        // writes them: every directive that writes a name, with flags, and the C forms.
        let sources = [
            "{{ event.at | date('%A %-d %B %Y, %H:%M %p') }}",
            "{{ event.at | date('%a %b %h %P %^A %^b %#p %_10B %:B %%B %c %x %X %r') }}",
            "{{ event.at | date('%A', locale='de-AT') }}",
            "{{ event.at | date(locale=event.locale) }}",
            "{{ event.at | date('%B', locale=event.locale) }}",
            "{{ event.at | date('%B', locale=event.missing) }}",
            "{{ event.at | date('%B', locale=event.locale | default('ja')) }}",
            "{{ event.at | date('%B', locale=5) }}",
        ];
        for locale in [
            json!("fr-FR"),
            json!("de_AT.UTF-8"),
            json!("es-MX"),
            json!("ru"),
            json!("ja-JP"),
            json!("zh-Hant-TW"),
            json!("en-GB"),
            json!("ar"),
            json!("German"),
            json!(5),
            json!(null),
        ] {
            for at in ["2026-01-04T08:05:09Z", "2026-03-10T22:59:59Z", "2026-12-24"] {
                let case = Case {
                    trigger: Value::Null,
                    waited: Value::Null,
                    traits: json!({"locale": locale, "timezone": "Europe/Paris"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    event: json!({"at": at, "locale": locale}),
                    unsubscribe: None,
                    journey_zone: None,
                };
                for source in sources {
                    for html in [false, true] {
                        match agrees(source, &case, html) {
                            Ok(true) => localized += 1,
                            Ok(false) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        }
        // All but `locale=` given what is not text (the number 5, in the last source, and as
        // `event.locale` in three others): MiniJinja's to refuse.
        assert_eq!(localized, (11 * 7 - 3) * 3 * 2);
        for declined in [
            "{{ event.bad | date }}",
            "{{ event.epoch | date }}",
            "{{ event.missing | date }}",
        ] {
            let program = Program::compile(declined).expect("compiles");
            let case = Case {
                trigger: json!({"order_id": "o-1"}),
                waited: Value::Null,
                traits: Map::new(),
                event: json!({"bad": "soon", "epoch": 1}),
                unsubscribe: None,
                journey_zone: None,
            };
            assert!(program.render(&case.scope(), false).is_err(), "{declined}");
        }
        for declined in [
            "{{ event.at | date('%H', tz='Asia/Tokyo') }}",
            "{{ event.at | date('%H', locale='fr', tz='UTC') }}",
            "{{ event.at | date(tz='UTC', locale='fr') }}",
            "{{ event.at | date('%H', 'fr') }}",
            "{{ event.at | date('%H', locale='fr',) }}",
        ] {
            assert!(Program::compile(declined).is_err(), "{declined}");
        }
    }

    /// `currency` renders directly what MiniJinja's filter renders, in the user's locale or the
    /// one named, and leaves to MiniJinja what its filter refuses (a value that is no number, a
    /// code or a locale that is not text).
    #[test]
    fn the_currency_filter_renders_as_minijinja_renders_it() {
        let sources = [
            "{{ event.total | currency(event.currency) }}",
            "{{ event.total | currency('EUR') }}",
            "{{ event.total | currency(code='jpy') }}",
            "<b>{{ event.total | currency('CHF', locale='de-CH') }}</b>",
            "{{ event.total | currency(event.currency, locale=event.locale) }}",
            "{{ event.total | currency(event.currency | default('USD')) }}",
            "{% for i in event.items %}{{ i.price | currency(event.currency) }};{% endfor %}",
            "{{ event.total | currency(event.currency) | default('n/a') }}",
        ];
        let mut rendered = 0;
        let mut tried = 0;
        for locale in [
            json!("de-DE"),
            json!("fr"),
            json!("en-IN"),
            json!("pt_BR"),
            json!("xx"),
            json!(5),
            json!(null),
        ] {
            for total in [
                json!(1234.5),
                json!(-0.001),
                json!(123456789),
                json!("19.99"),
                json!(" 7 "),
                json!("2.6749999999999998"),
                json!("100000000000000000.5"),
                json!("-.5e1"),
                json!(""),
                json!("soon"),
                json!(true),
                json!(null),
                json!(2.675),
            ] {
                for code in [
                    json!("EUR"),
                    json!("kwd"),
                    json!("XYZ"),
                    json!(""),
                    json!(978),
                    json!(null),
                ] {
                    let case = Case {
                        traits: json!({ "locale": locale })
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        event: json!({"total": total, "currency": code, "locale": locale,
                            "items": [{"price": total}, {"price": 5}]}),
                        trigger: Value::Null,
                        waited: Value::Null,
                        unsubscribe: None,
                        journey_zone: None,
                    };
                    for source in sources {
                        for html in [false, true] {
                            tried += 1;
                            match agrees(source, &case, html) {
                                Ok(true) => rendered += 1,
                                Ok(false) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                }
            }
        }
        // Most render directly: all but a value or code MiniJinja's filter refuses.
        assert!(rendered * 2 > tried, "{rendered} of {tried}");
        let case = Case {
            traits: json!({"locale": "de-CH"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            event: json!({"total": -1234.5, "currency": "CHF"}),
            trigger: Value::Null,
            waited: Value::Null,
            unsubscribe: None,
            journey_zone: None,
        };
        let program = Program::compile(sources[0]).expect("compiles");
        assert_eq!(
            program.render(&case.scope(), true).ok().as_deref(),
            Some("CHF-1&#x27;234.50")
        );
        for declined in [
            "{{ event.total | currency }}",
            "{{ event.total | currency() }}",
            "{{ event.total | currency('EUR', 'de') }}",
            "{{ event.total | currency('EUR', code='USD') }}",
            "{{ event.total | currency('EUR', lang='de') }}",
            "{{ event.total | currency('EUR' locale='de') }}",
        ] {
            assert!(Program::compile(declined).is_err(), "{declined}");
        }
    }

    #[test]
    fn every_example_journeys_templates_compile_directly() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/journeys");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("examples") {
            let path = entry.expect("entry").path();
            // The journey set's own settings (caps), not a journey.
            if path.file_name().is_some_and(|n| n == "waymark.yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let journey = crate::dsl::parse(&path.display().to_string(), &text).expect("valid");
            let mut sources = Vec::new();
            collect_templates(&serde_json::to_value(&journey).expect("json"), &mut sources);
            for s in sources {
                assert!(Program::compile(&s).is_ok(), "{}: {s:?}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 8, "{seen} templates");
    }

    #[test]
    fn declines_what_it_does_not_do() {
        for source in [
            "{{- profile.name }}",
            "{{ profile.name -}}",
            "{% raw %}{{ x }}{% endraw %}",
            "{% set a = 1 %}",
            "{% for a, b in event.items %}{% endfor %}",
            "{% for i in event.items %}{{ loop.index }}{% endfor %}",
            "{% for i in event.items %}{% else %}none{% endfor %}",
            "{{ profile['name'] }}",
            "{{ profile.name ~ 'x' }}",
            "{{ profile.name | title }}",
            "{{ -1 }}",
            "{{ 'a\\'b' }}",
            "{{ range(3) }}",
            "{% if a %}",
            "{% endif %}",
            "{% include 'x' %}",
        ] {
            assert!(Program::compile(source).is_err(), "{source:?}");
        }
        // Compiles, then declines at render time: an attribute of an undefined value.
        let case = Case {
            trigger: json!({"order_id": "o-1"}),
            waited: Value::Null,
            traits: Map::new(),
            event: json!({}),
            unsubscribe: None,
            journey_zone: None,
        };
        let p = Program::compile("{{ profile.address.city }}").expect("compiles");
        assert!(p.render(&case.scope(), false).is_err());
        // Too much work for a direct render: MiniJinja's fuel decides.
        let many = json!({"items": vec![json!({"name": "n"}); 3_000]});
        let case = Case {
            trigger: json!({"order_id": "o-1"}),
            waited: Value::Null,
            traits: Map::new(),
            event: many,
            unsubscribe: None,
            journey_zone: None,
        };
        let p = Program::compile("{% for i in event.items %}{{ i.name }}{% endfor %}")
            .expect("compiles");
        assert!(p.render(&case.scope(), false).is_err());
    }
}
