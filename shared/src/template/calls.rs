//! The calls a template makes (`| replace('a', 'b')`, `is divisibleby(3)`, `range(3)`) checked
//! against what each filter, test and function takes, and its constant parts (`1/0`) worked out,
//! all before any send: MiniJinja finds a wrong argument only when it renders, so such a
//! mistake would fail every message. Reads the template's syntax tree; renders nothing.

use minijinja::machinery::ast::{CallArg, Expr, Stmt, UnaryOpKind};
use minijinja::value::ValueKind;
use minijinja::Environment;

/// What a call finds wrong, at a byte offset of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub offset: usize,
    pub message: String,
}

/// What an argument must be for the call not to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// Anything (text is made of numbers, and so on).
    Any,
    /// Text, and only text.
    Text,
    /// A whole number (a `true` is 1).
    Int,
    /// A whole number, 0 or more (a length).
    Count,
    /// A whole number, 1 or more (how many lists `batch` and `slice` make or hold).
    Positive,
    /// How `round` rounds: `'common'`, `'ceil'` or `'floor'`, and only those.
    Rounding,
    /// `true` or `false`, and only those.
    Bool,
    /// `true`, `false` or a whole number (`tojson`'s indent).
    IntOrBool,
    /// A map (`{'a': 1}`).
    Map,
}

/// How a call reads keyword arguments.
#[derive(Debug, Clone, Copy)]
pub enum Keywords {
    /// It has none: MiniJinja passes them, together, as one more positional argument (a map).
    No,
    /// These, and only these.
    Named(&'static [(&'static str, Arg)]),
    /// Any (they go on to another filter or test, or into a map).
    Any,
}

/// What one filter, test or function takes, after the value it applies to.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    pub name: &'static str,
    /// How to write it, for the advice.
    pub usage: &'static str,
    /// Its positional arguments, in order.
    pub params: &'static [(&'static str, Arg)],
    /// How many of `params` it needs.
    pub required: usize,
    pub keywords: Keywords,
    /// Takes any number more positional arguments than `params`.
    pub rest: bool,
}

const fn none(name: &'static str) -> Signature {
    Signature {
        name,
        usage: name,
        params: &[],
        required: 0,
        keywords: Keywords::No,
        rest: false,
    }
}

/// Takes one argument, anything.
const fn one(name: &'static str, usage: &'static str) -> Signature {
    Signature {
        name,
        usage,
        params: &[("value", Arg::Any)],
        required: 1,
        keywords: Keywords::No,
        rest: false,
    }
}

const fn variadic(name: &'static str, usage: &'static str, required: usize) -> Signature {
    Signature {
        name,
        usage,
        params: &[],
        required,
        keywords: Keywords::Any,
        rest: true,
    }
}

/// Every filter a template may use (MiniJinja's, and Waymark's `date`, `round`, `abs`,
/// `format`, `truncate` and `currency`), as MiniJinja 3 reads its arguments (a test checks each against MiniJinja).
pub const FILTERS: &[Signature] = &[
    none("safe"),
    none("escape"),
    none("e"),
    none("lower"),
    none("upper"),
    none("title"),
    none("capitalize"),
    none("length"),
    none("count"),
    none("items"),
    none("reverse"),
    none("lines"),
    none("abs"),
    none("first"),
    none("last"),
    none("list"),
    none("string"),
    none("bool"),
    none("pprint"),
    none("urlencode"),
    Signature {
        name: "replace",
        usage: "replace('old', 'new')",
        params: &[("old", Arg::Any), ("new", Arg::Any), ("count", Arg::Int)],
        required: 2,
        keywords: Keywords::Named(&[("count", Arg::Int)]),
        rest: false,
    },
    Signature {
        name: "dictsort",
        usage: "dictsort(by='value')",
        params: &[],
        required: 0,
        keywords: Keywords::Named(&[
            ("by", Arg::Text),
            ("case_sensitive", Arg::Bool),
            ("reverse", Arg::Bool),
        ]),
        rest: false,
    },
    Signature {
        name: "trim",
        usage: "trim('-')",
        params: &[("chars", Arg::Any)],
        required: 0,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "join",
        usage: "join(', ')",
        params: &[("d", Arg::Any), ("attribute", Arg::Text)],
        required: 0,
        keywords: Keywords::Named(&[("d", Arg::Any), ("attribute", Arg::Text)]),
        rest: false,
    },
    Signature {
        name: "split",
        usage: "split(',')",
        params: &[("separator", Arg::Text), ("maxsplits", Arg::Int)],
        required: 0,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "default",
        usage: "default('there')",
        params: &[("value", Arg::Any), ("boolean", Arg::Any)],
        required: 0,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "d",
        usage: "d('there')",
        params: &[("value", Arg::Any), ("boolean", Arg::Any)],
        required: 0,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "round",
        usage: "round(2)",
        params: &[("precision", Arg::Int), ("method", Arg::Rounding)],
        required: 0,
        keywords: Keywords::Named(&[("precision", Arg::Int), ("method", Arg::Rounding)]),
        rest: false,
    },
    Signature {
        name: "int",
        usage: "int(default=0)",
        params: &[("default", Arg::Any), ("base", Arg::Int)],
        required: 0,
        keywords: Keywords::Named(&[("default", Arg::Any), ("base", Arg::Int)]),
        rest: false,
    },
    Signature {
        name: "float",
        usage: "float(default=0.0)",
        params: &[("default", Arg::Any)],
        required: 0,
        keywords: Keywords::Named(&[("default", Arg::Any)]),
        rest: false,
    },
    one("attr", "attr('name')"),
    Signature {
        name: "min",
        usage: "min(attribute='price')",
        params: &[],
        required: 0,
        keywords: Keywords::Named(&[("case_sensitive", Arg::Bool), ("attribute", Arg::Text)]),
        rest: false,
    },
    Signature {
        name: "max",
        usage: "max(attribute='price')",
        params: &[],
        required: 0,
        keywords: Keywords::Named(&[("case_sensitive", Arg::Bool), ("attribute", Arg::Text)]),
        rest: false,
    },
    Signature {
        name: "sort",
        usage: "sort(attribute='name')",
        params: &[],
        required: 0,
        keywords: Keywords::Named(&[
            ("case_sensitive", Arg::Bool),
            ("reverse", Arg::Bool),
            ("attribute", Arg::Text),
        ]),
        rest: false,
    },
    Signature {
        name: "unique",
        usage: "unique(attribute='name')",
        params: &[],
        required: 0,
        keywords: Keywords::Named(&[("attribute", Arg::Text), ("case_sensitive", Arg::Bool)]),
        rest: false,
    },
    Signature {
        name: "batch",
        usage: "batch(3)",
        params: &[("count", Arg::Positive), ("fill_with", Arg::Any)],
        required: 1,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "slice",
        usage: "slice(3)",
        params: &[("count", Arg::Positive), ("fill_with", Arg::Any)],
        required: 1,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "sum",
        usage: "sum(attribute='price')",
        params: &[("attribute", Arg::Text), ("start", Arg::Any)],
        required: 0,
        keywords: Keywords::Named(&[("attribute", Arg::Text), ("start", Arg::Any)]),
        rest: false,
    },
    Signature {
        name: "indent",
        usage: "indent(2)",
        params: &[
            ("width", Arg::Int),
            ("first", Arg::Bool),
            ("blank", Arg::Bool),
        ],
        required: 0,
        keywords: Keywords::Named(&[
            ("width", Arg::Int),
            ("first", Arg::Bool),
            ("blank", Arg::Bool),
        ]),
        rest: false,
    },
    Signature {
        name: "groupby",
        usage: "groupby('city')",
        params: &[("attribute", Arg::Text)],
        required: 1,
        keywords: Keywords::Named(&[
            ("attribute", Arg::Text),
            ("default", Arg::Any),
            ("case_sensitive", Arg::Bool),
        ]),
        rest: false,
    },
    Signature {
        name: "tojson",
        usage: "tojson",
        params: &[("indent", Arg::IntOrBool)],
        required: 0,
        keywords: Keywords::Named(&[("indent", Arg::IntOrBool)]),
        rest: false,
    },
    Signature {
        name: "date",
        usage: "date('%H:%M', tz='Europe/Paris')",
        params: &[("format", Arg::Text)],
        required: 0,
        keywords: Keywords::Named(&[("tz", Arg::Text), ("locale", Arg::Text)]),
        rest: false,
    },
    Signature {
        name: "currency",
        usage: "currency('EUR')",
        params: &[("code", Arg::Text)],
        required: 1,
        keywords: Keywords::Named(&[("code", Arg::Text), ("locale", Arg::Text)]),
        rest: false,
    },
    variadic("select", "select('odd')", 0),
    variadic("reject", "reject('odd')", 0),
    variadic("selectattr", "selectattr('active')", 1),
    variadic("rejectattr", "rejectattr('active')", 1),
    variadic("map", "map(attribute='name')", 0),
    variadic("chain", "chain(other)", 0),
    variadic("zip", "zip(other)", 0),
    variadic("format", "format(event.total)", 0),
    Signature {
        name: "truncate",
        usage: "truncate(40)",
        params: &[
            ("length", Arg::Count),
            ("killwords", Arg::Bool),
            ("end", Arg::Text),
        ],
        required: 0,
        keywords: Keywords::Named(&[
            ("length", Arg::Count),
            ("killwords", Arg::Bool),
            ("end", Arg::Text),
            ("leeway", Arg::Count),
        ]),
        rest: false,
    },
];

/// Every test a template may use, as MiniJinja 3 reads its arguments.
pub const TESTS: &[Signature] = &[
    none("undefined"),
    none("defined"),
    none("none"),
    none("safe"),
    none("escaped"),
    none("boolean"),
    none("odd"),
    none("even"),
    none("number"),
    none("integer"),
    none("int"),
    none("float"),
    none("string"),
    none("sequence"),
    none("iterable"),
    none("mapping"),
    none("lower"),
    none("upper"),
    none("true"),
    none("false"),
    one("divisibleby", "divisibleby(3)"),
    one("startingwith", "startingwith('a')"),
    one("endingwith", "endingwith('a')"),
    one("eq", "eq(3)"),
    one("equalto", "equalto(3)"),
    one("ne", "ne(3)"),
    one("lt", "lt(3)"),
    one("lessthan", "lessthan(3)"),
    one("le", "le(3)"),
    one("gt", "gt(3)"),
    one("greaterthan", "greaterthan(3)"),
    one("ge", "ge(3)"),
    one("in", "in([1, 2])"),
    one("sameas", "sameas(false)"),
    // `'upper' is filter`: the name is the value tested.
    none("filter"),
    none("test"),
];

/// Every function a template may call, as MiniJinja 3 reads its arguments.
pub const FUNCTIONS: &[Signature] = &[
    Signature {
        name: "range",
        usage: "range(3) or range(1, 10)",
        params: &[("start", Arg::Int), ("stop", Arg::Int), ("step", Arg::Int)],
        required: 1,
        keywords: Keywords::No,
        rest: false,
    },
    Signature {
        name: "dict",
        usage: "dict(a=1)",
        params: &[("value", Arg::Map)],
        required: 0,
        keywords: Keywords::Any,
        rest: false,
    },
    Signature {
        name: "namespace",
        usage: "namespace(count=0)",
        params: &[("value", Arg::Map)],
        required: 0,
        keywords: Keywords::Any,
        rest: false,
    },
];

/// What a call is (for the advice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Filter,
    Test,
    Function,
}

/// The first problem of `source`'s calls and constant parts, in the order the template reads;
/// `None` when it has none, or when it does not parse (`check` reports that). `env` evaluates the
/// constant parts.
pub fn first_problem(source: &str, env: &Environment<'_>) -> Option<Problem> {
    let tree = minijinja::machinery::parse(source, "<template>", Default::default()).ok()?;
    let mut bound = Vec::new();
    binds(&tree, &mut bound);
    let mut walk = Walk {
        source,
        env,
        bound,
        rounds: 1,
        found: None,
        quoted: None,
    };
    walk.stmt(&tree);
    walk.found
}

/// Every filter or test named in quotes (`map('uper')`, `select('evn')`) that MiniJinja does
/// not know, in the template's order: where its quote is, its kind, its name, and what to say
/// of it. Empty for a template that does not parse (`check` reports that).
pub fn quoted_unknown(
    source: &str,
    env: &Environment<'_>,
) -> Vec<(usize, super::used::Kind, String, String)> {
    let Ok(tree) = minijinja::machinery::parse(source, "<template>", Default::default()) else {
        return Vec::new();
    };
    let mut bound = Vec::new();
    binds(&tree, &mut bound);
    let mut walk = Walk {
        source,
        env,
        bound,
        rounds: 1,
        found: None,
        quoted: Some(Vec::new()),
    };
    walk.stmt(&tree);
    walk.quoted.unwrap_or_default()
}

struct Walk<'s, 'e> {
    source: &'s str,
    env: &'e Environment<'e>,
    /// The names the template binds itself ([`binds`]).
    bound: Vec<&'s str>,
    /// How many times the statements walked are run each time the innermost `{% if %}`,
    /// macro or loop over data around them is: the product of the loops over a fixed list or
    /// `range()` they are in (`range(1000)` in `range(1000)`: a million).
    rounds: u64,
    found: Option<Problem>,
    /// When collecting the names given in quotes ([`quoted_unknown`]): those found so far.
    /// Nothing is reported then, so that the walk goes through the whole template.
    quoted: Option<Vec<(usize, super::used::Kind, String, String)>>,
}

impl Walk<'_, '_> {
    fn report(&mut self, offset: usize, message: String) {
        if self.found.is_none() && self.quoted.is_none() {
            self.found = Some(Problem { offset, message });
        }
    }

    fn stmts(&mut self, stmts: &[Stmt<'_>]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) {
        if self.found.is_some() {
            return;
        }
        match stmt {
            Stmt::Template(t) => {
                self.macro_cycle(&t.children);
                self.stmts(&t.children)
            }
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                if let Some(e) = &f.filter_expr {
                    self.expr(e);
                }
                let rounds = self.rounds_of(f);
                self.within(rounds, |w| w.stmts(&f.body));
                self.within(None, |w| w.stmts(&f.else_body));
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.within(None, |w| w.stmts(&i.true_body));
                self.within(None, |w| w.stmts(&i.false_body));
            }
            Stmt::WithBlock(w) => {
                for (_, value) in &w.assignments {
                    self.expr(value);
                }
                self.stmts(&w.body);
            }
            Stmt::Set(s) => self.expr(&s.expr),
            Stmt::SetBlock(s) => {
                if let Some(f) = &s.filter {
                    self.expr(f);
                }
                self.stmts(&s.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.stmts(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.stmts(&f.body);
            }
            Stmt::Macro(m) => {
                for d in &m.defaults {
                    self.expr(d);
                }
                let truth = |e: &Expr<'_>| self.truth(e);
                if let Some(at) = m.body.iter().find_map(|s| calls_itself(s, m.name, &truth)) {
                    self.report(at, endless_macro(m.name));
                    return;
                }
                self.within(None, |w| w.stmts(&m.body));
            }
            Stmt::CallBlock(c) => {
                self.expr(&c.call.expr);
                self.args(&c.call.args);
                self.within(None, |w| w.stmts(&c.macro_decl.body));
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                self.args(&d.call.args);
            }
            // Loading tags are refused before this (`template::loading_tag`); blocks and
            // loop controls hold no expression of their own.
            _ => {}
        }
    }

    /// Walks with the statements run `rounds` times more (a loop over a fixed list or
    /// `range()`), or, with `None`, as many times as data decides (an `{% if %}`, a macro, a loop
    /// over data): no more counted from the loops around.
    fn within(&mut self, rounds: Option<u64>, walk: impl FnOnce(&mut Self)) {
        let before = self.rounds;
        self.rounds = rounds.map_or(1, |n| before.saturating_mul(n));
        walk(self);
        self.rounds = before;
    }

    /// How many times the loop `f` goes round, when its list is fixed (`range(60000)`,
    /// `[1, 2]`: nothing ends a loop early, MiniJinja's `{% break %}` is not built in); reported when that, times the loops around
    /// it ([`Walk::rounds`]), is more work than a render may do: it would fail whenever reached.
    fn rounds_of(&mut self, f: &minijinja::machinery::ast::ForLoop<'_>) -> Option<u64> {
        if f.recursive || !self.fixed(&f.iter) {
            return None;
        }
        let (start, end) = extent(&f.iter);
        let text = self.source.get(start..end)?;
        let list = self.env.compile_expression(text).ok()?.eval(()).ok()?;
        let n = u64::try_from(list.try_iter().ok()?.count()).ok()?;
        let total = self.rounds.saturating_mul(n);
        if total > super::FUEL {
            let around = match self.rounds {
                1 => String::new(),
                r => format!(" ({n} times for each of the {r} rounds of the loops around it)"),
            };
            self.report(
                start,
                format!(
                    "this loop goes round {total} times{around}, more work than a message may take ({} rounds at most, fewer with what it prints): it would stop every message that reaches it; make it go round fewer times",
                    super::FUEL
                ),
            );
        }
        Some(n)
    }

    /// Whether `expr` is a list the template fixes: a constant part ([`constant`]), or a
    /// `range()` of them.
    fn fixed(&self, expr: &Expr<'_>) -> bool {
        constant(expr) || self.fixed_range(expr)
    }

    /// What a condition that depends on nothing the template is given always is (`true`,
    /// `1 == 1`), worked out; `None` for any other.
    fn truth(&self, expr: &Expr<'_>) -> Option<bool> {
        if !constant(expr) {
            return None;
        }
        // An `{% if %}`'s binary operation is spanned from its tag's `if`: from its operands.
        fn operands(expr: &Expr<'_>) -> (usize, usize) {
            match expr {
                Expr::BinOp(b) => (operands(&b.left).0, operands(&b.right).1),
                _ => extent(expr),
            }
        }
        let (start, end) = operands(expr);
        let text = self.source.get(start..end)?;
        Some(
            self.env
                .compile_expression(text)
                .ok()?
                .eval(())
                .ok()?
                .is_true(),
        )
    }

    /// Refuses macros of `stmts` (a template's) that call each other in a ring whatever they
    /// are given (`a` calls `b`, which calls `a`): none of them ever ends. Reported where the
    /// first of them, in the template's order, calls the next. (A macro calling itself alone
    /// is told where it is defined: [`endless_macro`].)
    fn macro_cycle(&mut self, stmts: &[Stmt<'_>]) {
        let macros: Vec<&minijinja::machinery::ast::Macro<'_>> = stmts
            .iter()
            .filter_map(|s| match s {
                Stmt::Macro(m) => Some(&**m),
                _ => None,
            })
            .collect();
        if macros.len() < 2 {
            return;
        }
        let truth = |e: &Expr<'_>| self.truth(e);
        // Each macro's first call of each other macro whatever it is given: (callee, where).
        let calls: Vec<Vec<(usize, usize)>> = macros
            .iter()
            .map(|m| {
                macros
                    .iter()
                    .enumerate()
                    .filter(|(_, other)| other.name != m.name)
                    .filter_map(|(j, other)| {
                        m.body
                            .iter()
                            .find_map(|s| calls_itself(s, other.name, &truth))
                            .map(|at| (j, at))
                    })
                    .collect()
            })
            .collect();
        for start in 0..macros.len() {
            // A path of calls from `start`, depth first, each macro once.
            let mut path: Vec<(usize, usize)> = Vec::new();
            let mut seen = vec![false; macros.len()];
            if let Some(ring) = ring_from(start, start, &calls, &mut seen, &mut path) {
                let names: Vec<String> = ring
                    .iter()
                    .map(|(j, _)| format!("`{}`", macros[*j].name))
                    .collect();
                let (next, at) = ring[0];
                let report = endless_ring(macros[start].name, macros[next].name, &names);
                self.report(at, report);
                return;
            }
        }
    }

    /// Whether `expr` is a call of MiniJinja's `range()` (not one the template binds) with
    /// constant arguments: worked out like other constant parts (`range(100000000)` fails).
    fn fixed_range(&self, expr: &Expr<'_>) -> bool {
        matches!(expr, Expr::Call(c)
            if matches!(&c.expr, Expr::Var(v) if v.id == "range")
                && !self.bound.contains(&"range")
                && c.args.iter().all(|a| matches!(a, CallArg::Pos(e) if constant(e))))
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    /// Checks the calls in `expr`, then, if it is a constant part that could fail, works it out.
    fn expr(&mut self, expr: &Expr<'_>) {
        if self.found.is_some() {
            return;
        }
        match expr {
            Expr::Var(_) | Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(e);
                }
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(e) = &i.false_expr {
                    self.expr(e);
                }
            }
            Expr::Filter(f) => {
                if let Some(e) = &f.expr {
                    self.expr(e);
                }
                self.args(&f.args);
                self.call(What::Filter, f.name, &f.args, expr);
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                self.args(&t.args);
                self.call(What::Test, t.name, &t.args, expr);
            }
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Call(c) => {
                self.expr(&c.expr);
                self.args(&c.args);
                match &c.expr {
                    Expr::Var(v) if self.data(&c.expr) => {
                        let at = name_offset(self.source, expr, v.id);
                        self.report(at, value_called(v.id));
                    }
                    Expr::Var(v) => self.call(What::Function, v.id, &c.args, expr),
                    Expr::GetAttr(g) if self.data(&g.expr) => {
                        let at = name_offset(self.source, expr, g.name);
                        let message = self.method_called(&g.expr, g.name, at, expr);
                        self.report(at, message);
                    }
                    Expr::GetItem(_) if self.data(&c.expr) => {
                        let (start, end) = extent(&c.expr);
                        let callee = self.source.get(start..end).unwrap_or("it").trim();
                        self.report(start, not_callable(callee));
                    }
                    _ => {}
                }
            }
            Expr::List(l) => l.items.iter().for_each(|e| self.expr(e)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| self.expr(e)),
            Expr::Map(m) => {
                for (k, v) in m.keys.iter().zip(&m.values) {
                    self.expr(k);
                    self.expr(v);
                }
            }
        }
        if self.found.is_none() && could_fail(expr) && (constant(expr) || self.fixed_range(expr)) {
            self.work_out(expr);
        }
    }

    /// Evaluates a constant part, reporting it when it fails (it would at every send).
    fn work_out(&mut self, expr: &Expr<'_>) {
        let (start, end) = extent(expr);
        let Some(text) = self.source.get(start..end) else {
            return;
        };
        // Its text alone may not read as an expression (a bracket around it): not checked.
        let Ok(compiled) = self.env.compile_expression(text) else {
            return;
        };
        if let Err(e) = compiled.eval(()) {
            // MiniJinja's "engine ran out of fuel", in the writer's words.
            if e.kind() == minijinja::ErrorKind::OutOfFuel {
                self.report(
                    start,
                    format!(
                        "`{}` is more work than a message may take to render (a repeat or a list too large): it would stop every message; make it smaller",
                        text.trim()
                    ),
                );
                return;
            }
            let why = match e.detail() {
                // MiniJinja's limit, and its words for it, said with the number.
                Some("range has too many elements") => {
                    format!("a `range()` holds at most {MAX_RANGE} numbers")
                }
                Some(detail) => detail.to_string(),
                None => e.kind().to_string(),
            };
            self.report(
                start,
                format!(
                    "`{}` fails whatever the data ({why}): it would stop every message; change or remove it",
                    text.trim()
                ),
            );
        }
    }

    /// Whether `expr` is data, which no call works on: a variable of the scope (a JSON value,
    /// text or a map of them) the template does not bind itself, a literal, a part of one, or
    /// what a filter makes of one.
    fn data(&self, expr: &Expr<'_>) -> bool {
        match expr {
            Expr::Var(v) => super::SCOPE.contains(&v.id) && !self.bound.contains(&v.id),
            Expr::Const(_) | Expr::List(_) | Expr::Tuple(_) | Expr::Map(_) => true,
            Expr::GetAttr(g) => self.data(&g.expr),
            Expr::GetItem(g) => self.data(&g.expr),
            Expr::Filter(f) => f.expr.as_ref().is_some_and(|e| self.data(e)),
            _ => false,
        }
    }

    /// What to say of `receiver.name(...)`, the method's name at byte `at`: a filter or test
    /// does what a Python method would.
    fn method_called(&self, receiver: &Expr<'_>, name: &str, at: usize, call: &Expr<'_>) -> String {
        let (start, end) = extent(receiver);
        let recv = self.source.get(start..end).unwrap_or("it").trim();
        let recv = match receiver {
            // `(x | upper).strip()`: kept apart from what follows.
            Expr::Filter(_) => format!("({recv})"),
            _ => recv.to_string(),
        };
        // The arguments as written, between the parentheses after the name.
        let close = (call.span().end_offset as usize).min(self.source.len());
        let inside = self
            .source
            .get(at + name.len()..close)
            .map(str::trim)
            .and_then(|t| t.strip_prefix('('))
            .and_then(|t| t.strip_suffix(')'))
            .map(str::trim)
            .unwrap_or_default();
        let given = |filter: &str| {
            if inside.is_empty() {
                filter.to_string()
            } else {
                format!("{filter}({inside})")
            }
        };
        let no_method = format!("`{recv}` has no method `{name}()` (a value has no methods here)");
        let write = match name {
            "upper" | "lower" | "title" | "capitalize" | "items" => format!("{recv} | {name}"),
            "strip" | "lstrip" | "rstrip" => format!("{recv} | {}", given("trim")),
            "replace" | "split" => format!("{recv} | {}", given(name)),
            "strftime" => format!("{recv} | {}", given("date")),
            "join" if !inside.is_empty() => format!("{inside} | join({recv})"),
            // Tests, for an `{% if %}`: no `{{ }}` around them.
            "startswith" | "endswith" => {
                let test = if name == "startswith" { "startingwith" } else { "endingwith" };
                return format!("{no_method}: write `{recv} is {test}({inside})`");
            }
            "keys" => {
                return format!(
                    "{no_method}: a map gives its keys in a loop, `{{% for key in {recv} %}}`, or as a list, `{recv} | list`"
                )
            }
            "values" => {
                return format!(
                    "{no_method}: loop over its keys and values with `{{% for key, value in {recv} | items %}}`"
                )
            }
            "get" if !inside.is_empty() && !inside.contains(',') => {
                return format!(
                    "{no_method}: write `{recv}[{inside}]`, with `| default('...')` for when it is missing"
                )
            }
            _ => return not_callable(&format!("{recv}.{name}")),
        };
        format!("{no_method}: write `{{{{ {write} }}}}`")
    }

    fn call(&mut self, what: What, name: &str, args: &[CallArg<'_>], at: &Expr<'_>) {
        if self.found.is_some() {
            return;
        }
        let table = match what {
            What::Filter => FILTERS,
            What::Test => TESTS,
            What::Function => FUNCTIONS,
        };
        // An unknown name is reported by `template::check`; a macro is its own.
        let Some(sig) = table.iter().find(|s| s.name == name) else {
            return;
        };
        if let Some(message) = mismatch(sig, what, args) {
            self.report(name_offset(self.source, at, name), message);
            return;
        }
        if what == What::Filter && matches!(name, "currency" | "date") {
            self.locale_literals(name, args);
        }
        if what == What::Filter {
            self.named_in_quotes(name, args);
        }
    }

    /// The filter `map('upper')` applies, or the test `select('odd')` and
    /// `selectattr('stock', 'gt', 0)` apply, named in quotes and unknown: MiniJinja looks it
    /// up only when it renders, and fails, whatever the list, in every message.
    fn named_in_quotes(&mut self, filter: &str, args: &[CallArg<'_>]) {
        use super::used::Kind;
        // A splat may hold the name, or `attribute=`, only known when it renders.
        if args
            .iter()
            .any(|a| matches!(a, CallArg::PosSplat(_) | CallArg::KwargSplat(_)))
        {
            return;
        }
        let (kind, place) = match filter {
            // `map(attribute='name')` takes an attribute, and no filter.
            "map"
                if args
                    .iter()
                    .any(|a| matches!(a, CallArg::Kwarg("attribute", _))) =>
            {
                return
            }
            "map" => (Kind::Filter, 0),
            "select" | "reject" => (Kind::Test, 0),
            // The first is the attribute tested (`selectattr('stock', 'gt', 0)`).
            "selectattr" | "rejectattr" => (Kind::Test, 1),
            _ => return,
        };
        let Some(e) = args
            .iter()
            .filter_map(|a| match a {
                CallArg::Pos(e) => Some(e),
                _ => None,
            })
            .nth(place)
        else {
            return;
        };
        let Expr::Const(c) = e else { return };
        let Some(name) = c.value.as_str() else {
            return;
        };
        if let Some(message) = super::unknown_name(kind, name, &format!("given to `{filter}`")) {
            let at = extent(e).0;
            match &mut self.quoted {
                Some(found) => found.push((at, kind, name.to_string(), message)),
                None => self.report(at, message),
            }
        }
    }

    /// A `currency` code, or a `locale=` of `currency` or `date`, written as text that cannot
    /// be one (`currency('EURO')`, `locale='German'`): it would print wrong in every message.
    fn locale_literals(&mut self, filter: &str, args: &[CallArg<'_>]) {
        for arg in args {
            let (code, e) = match arg {
                CallArg::Pos(e) | CallArg::Kwarg("code", e) if filter == "currency" => (true, e),
                CallArg::Kwarg("locale", e) => (false, e),
                _ => continue,
            };
            let Expr::Const(c) = e else { continue };
            let Some(text) = c.value.as_str() else {
                continue;
            };
            let problem = match code {
                true => super::currency::code_problem(text),
                false => super::currency::locale_problem(filter, text),
            };
            if let Some(message) = problem {
                self.report(extent(e).0, message);
                return;
            }
        }
    }
}

/// The macros `source` defines at its top level (not inside a block), in order: each one's
/// name and the bytes its definition covers, from its `{%`'s keyword to its `endmacro`. Empty
/// for a template that does not parse (`check` reports that).
pub fn top_macros(source: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    let Ok(Stmt::Template(t)) =
        minijinja::machinery::parse(source, "<template>", Default::default())
    else {
        return Vec::new();
    };
    t.children
        .iter()
        .filter_map(|s| match s {
            Stmt::Macro(m) => {
                let span = m.span();
                let range = span.start_offset as usize..span.end_offset as usize;
                let name = source
                    .get(range.clone())?
                    .split(['(', ' ', '\t', '\n', '\r'])
                    .nth(1)?;
                (name == m.name).then_some((name, range))
            }
            _ => None,
        })
        .collect()
}

/// The names of every macro `source` defines, at its top level or inside a block.
pub fn macro_names(source: &str) -> Vec<String> {
    fn all(stmts: &[Stmt<'_>], out: &mut Vec<String>) {
        for s in stmts {
            match s {
                Stmt::Macro(m) => {
                    out.push(m.name.to_string());
                    all(&m.body, out);
                }
                Stmt::Template(t) => all(&t.children, out),
                Stmt::ForLoop(f) => {
                    all(&f.body, out);
                    all(&f.else_body, out);
                }
                Stmt::IfCond(i) => {
                    all(&i.true_body, out);
                    all(&i.false_body, out);
                }
                Stmt::WithBlock(w) => all(&w.body, out),
                Stmt::SetBlock(b) => all(&b.body, out),
                Stmt::AutoEscape(a) => all(&a.body, out),
                Stmt::FilterBlock(f) => all(&f.body, out),
                Stmt::CallBlock(c) => all(&c.macro_decl.body, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(tree) = minijinja::machinery::parse(source, "<template>", Default::default()) {
        all(std::slice::from_ref(&tree), &mut out);
    }
    out
}

/// The most numbers MiniJinja's `range()` makes (a test checks it against MiniJinja).
const MAX_RANGE: usize = 100_000;

/// Where `stmt`, in the body of the macro `name`, calls it whatever the macro was given: not
/// under an `{% if %}`, in a loop, after an `and` or `or`, or in a branch of an `if` expression.
/// `truth` says what a condition that depends on nothing the template is given always is
/// (`{% if true %}`, `{% if 1 == 1 %}`): the body it always runs is read as run whatever the
/// macro was given.
fn calls_itself(
    stmt: &Stmt<'_>,
    name: &str,
    truth: &dyn Fn(&Expr<'_>) -> Option<bool>,
) -> Option<usize> {
    let any = |stmts: &[Stmt<'_>]| stmts.iter().find_map(|s| calls_itself(s, name, truth));
    match stmt {
        Stmt::EmitExpr(e) => called_in(&e.expr, name),
        Stmt::Set(s) => called_in(&s.expr, name),
        Stmt::Do(d) => called_in(&d.call.expr, name).or_else(|| called_in_args(&d.call.args, name)),
        Stmt::IfCond(i) => called_in(&i.expr, name).or_else(|| match truth(&i.expr) {
            Some(true) => any(&i.true_body),
            Some(false) => any(&i.false_body),
            None => None,
        }),
        Stmt::ForLoop(f) => called_in(&f.iter, name),
        Stmt::WithBlock(w) => w
            .assignments
            .iter()
            .find_map(|(_, v)| called_in(v, name))
            .or_else(|| any(&w.body)),
        Stmt::SetBlock(s) => any(&s.body),
        Stmt::AutoEscape(a) => any(&a.body),
        Stmt::FilterBlock(f) => any(&f.body),
        Stmt::CallBlock(c) => {
            called_in(&c.call.expr, name).or_else(|| called_in_args(&c.call.args, name))
        }
        _ => None,
    }
}

fn called_in_args(args: &[CallArg<'_>], name: &str) -> Option<usize> {
    args.iter().find_map(|a| match a {
        CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => {
            called_in(e, name)
        }
    })
}

/// Where `expr` calls `name` whenever it is worked out (see [`calls_itself`]).
fn called_in(expr: &Expr<'_>, name: &str) -> Option<usize> {
    use minijinja::machinery::ast::BinOpKind;
    match expr {
        Expr::Call(c) => match &c.expr {
            Expr::Var(v) if v.id == name => Some(c.expr.span().start_offset as usize),
            callee => called_in(callee, name).or_else(|| called_in_args(&c.args, name)),
        },
        Expr::Var(_) | Expr::Const(_) => None,
        Expr::Slice(s) => called_in(&s.expr, name).or_else(|| {
            [&s.start, &s.stop, &s.step]
                .into_iter()
                .flatten()
                .find_map(|e| called_in(e, name))
        }),
        Expr::UnaryOp(u) => called_in(&u.expr, name),
        Expr::BinOp(b) if matches!(b.op, BinOpKind::ScAnd | BinOpKind::ScOr) => {
            called_in(&b.left, name)
        }
        Expr::BinOp(b) => called_in(&b.left, name).or_else(|| called_in(&b.right, name)),
        Expr::Compare(c) => called_in(&c.expr, name)
            .or_else(|| c.ops.first().and_then(|o| called_in(&o.expr, name))),
        Expr::IfExpr(i) => called_in(&i.test_expr, name),
        Expr::Filter(f) => f
            .expr
            .as_ref()
            .and_then(|e| called_in(e, name))
            .or_else(|| called_in_args(&f.args, name)),
        Expr::Test(t) => called_in(&t.expr, name).or_else(|| called_in_args(&t.args, name)),
        Expr::GetAttr(g) => called_in(&g.expr, name),
        Expr::GetItem(g) => called_in(&g.expr, name).or_else(|| called_in(&g.subscript_expr, name)),
        Expr::List(l) => l.items.iter().find_map(|e| called_in(e, name)),
        Expr::Tuple(t) => t.items.iter().find_map(|e| called_in(e, name)),
        Expr::Map(m) => m
            .keys
            .iter()
            .chain(&m.values)
            .find_map(|e| called_in(e, name)),
    }
}

/// A ring of calls (callee, where) from `from` back to `start`, along `calls`, each macro
/// once: the first found depth first.
fn ring_from(
    start: usize,
    from: usize,
    calls: &[Vec<(usize, usize)>],
    seen: &mut Vec<bool>,
    path: &mut Vec<(usize, usize)>,
) -> Option<Vec<(usize, usize)>> {
    for &(to, at) in &calls[from] {
        path.push((to, at));
        if to == start {
            return Some(path.clone());
        }
        if !seen[to] {
            seen[to] = true;
            if let Some(ring) = ring_from(start, to, calls, seen, path) {
                return Some(ring);
            }
        }
        path.pop();
    }
    None
}

/// What to say of the macro `first` calling `next` here whatever it is given, the macros of
/// `ring` (their names, quoted, `first` last) calling each other so in turn.
fn endless_ring(first: &str, next: &str, ring: &[String]) -> String {
    format!(
        "the macro `{first}` calls `{next}` here whatever it is given, and they call each other so in turn (`{first}` calls {}), so none of them ever ends: it would stop every message that calls one; make one of these calls only under an `{{% if %}}` that stops, or write the text out",
        ring.join(" calls ")
    )
}

/// What to say of the macro `name` calling itself whatever it is given.
fn endless_macro(name: &str) -> String {
    format!(
        "the macro `{name}` calls itself here whatever it is given, so it never ends: it would stop every message that calls it; call it again only under an `{{% if %}}` that stops, or write the text out"
    )
}

/// What to say of `name()`, a variable of the scope called as if a function.
fn value_called(name: &str) -> String {
    if name == "now" {
        // Conditions have `now()`: authors write it in templates too.
        "`now` is a value, not a function (`now()` is for conditions): write `{{ now }}`, or `{{ now | date('%H:%M') }}` to format it".to_string()
    } else {
        format!("`{name}` is a value, not a function: write `{{{{ {name} }}}}`, without `()`")
    }
}

/// What to say of a call of `callee`, a value.
fn not_callable(callee: &str) -> String {
    format!(
        "`{callee}` is not callable (a value has no methods here): to read it, write `{callee}` without `()`; to change it, use a filter (https://docs.rs/minijinja/latest/minijinja/filters/)"
    )
}

/// Adds to `out` the names `stmt` binds (`{% set x %}`, a loop's target, a macro and its
/// arguments, `{% with x = ... %}`): a variable of the scope so bound may be anything.
fn binds<'a>(stmt: &Stmt<'a>, out: &mut Vec<&'a str>) {
    fn targets<'a>(expr: &Expr<'a>, out: &mut Vec<&'a str>) {
        match expr {
            Expr::Var(v) => out.push(v.id),
            Expr::List(l) => l.items.iter().for_each(|e| targets(e, out)),
            Expr::Tuple(t) => t.items.iter().for_each(|e| targets(e, out)),
            _ => {}
        }
    }
    let all = |stmts: &[Stmt<'a>], out: &mut Vec<&'a str>| stmts.iter().for_each(|s| binds(s, out));
    match stmt {
        Stmt::Template(t) => all(&t.children, out),
        Stmt::ForLoop(f) => {
            targets(&f.target, out);
            all(&f.body, out);
            all(&f.else_body, out);
        }
        Stmt::IfCond(i) => {
            all(&i.true_body, out);
            all(&i.false_body, out);
        }
        Stmt::WithBlock(w) => {
            w.assignments.iter().for_each(|(t, _)| targets(t, out));
            all(&w.body, out);
        }
        Stmt::Set(s) => targets(&s.target, out),
        Stmt::SetBlock(s) => {
            targets(&s.target, out);
            all(&s.body, out);
        }
        Stmt::AutoEscape(a) => all(&a.body, out),
        Stmt::FilterBlock(f) => all(&f.body, out),
        Stmt::Macro(m) => {
            out.push(m.name);
            m.args.iter().for_each(|a| targets(a, out));
            all(&m.body, out);
        }
        Stmt::CallBlock(c) => {
            c.macro_decl.args.iter().for_each(|a| targets(a, out));
            all(&c.macro_decl.body, out);
        }
        _ => {}
    }
}

/// Where the called name is written: a filter's or test's span starts at its name, a call's
/// at the function's.
fn name_offset(source: &str, at: &Expr<'_>, name: &str) -> usize {
    let span = at.span();
    let start = span.start_offset as usize;
    let end = (span.end_offset as usize).min(source.len());
    source
        .get(start..end)
        .and_then(|t| t.find(name))
        .map_or(start, |i| start + i)
}

/// The bytes `expr` covers, its parts included.
fn extent(expr: &Expr<'_>) -> (usize, usize) {
    let span = expr.span();
    let mut start = span.start_offset as usize;
    let mut end = span.end_offset as usize;
    let mut widen = |e: &Expr<'_>| {
        let (s, t) = extent(e);
        start = start.min(s);
        end = end.max(t);
    };
    match expr {
        Expr::Filter(f) => {
            if let Some(e) = &f.expr {
                widen(e);
            }
        }
        Expr::Test(t) => widen(&t.expr),
        Expr::BinOp(b) => {
            widen(&b.left);
            widen(&b.right);
        }
        Expr::Compare(c) => widen(&c.expr),
        Expr::GetAttr(g) => widen(&g.expr),
        Expr::GetItem(g) => widen(&g.expr),
        Expr::Slice(s) => widen(&s.expr),
        Expr::IfExpr(i) => widen(&i.true_expr),
        _ => {}
    }
    (start, end)
}

/// Whether `expr` depends on nothing the template is given (no variable, no call).
fn constant(expr: &Expr<'_>) -> bool {
    let args = |args: &[CallArg<'_>]| {
        args.iter().all(|a| match a {
            CallArg::Pos(e) | CallArg::Kwarg(_, e) => constant(e),
            _ => false,
        })
    };
    match expr {
        Expr::Var(_) | Expr::Call(_) => false,
        Expr::Const(_) => true,
        Expr::Slice(s) => {
            constant(&s.expr)
                && [&s.start, &s.stop, &s.step]
                    .into_iter()
                    .flatten()
                    .all(constant)
        }
        Expr::UnaryOp(u) => constant(&u.expr),
        Expr::BinOp(b) => constant(&b.left) && constant(&b.right),
        Expr::Compare(c) => constant(&c.expr) && c.ops.iter().all(|o| constant(&o.expr)),
        Expr::IfExpr(i) => {
            constant(&i.test_expr)
                && constant(&i.true_expr)
                && i.false_expr.as_ref().is_none_or(constant)
        }
        Expr::Filter(f) => f.expr.as_ref().is_some_and(constant) && args(&f.args),
        Expr::Test(t) => constant(&t.expr) && args(&t.args),
        Expr::GetAttr(g) => constant(&g.expr),
        Expr::GetItem(g) => constant(&g.expr) && constant(&g.subscript_expr),
        Expr::List(l) => l.items.iter().all(constant),
        Expr::Tuple(t) => t.items.iter().all(constant),
        Expr::Map(m) => m.keys.iter().chain(&m.values).all(constant),
    }
}

/// Whether working `expr` out could fail: a literal (a list of them too) cannot.
fn could_fail(expr: &Expr<'_>) -> bool {
    match expr {
        Expr::Const(_) | Expr::Var(_) => false,
        Expr::List(l) => l.items.iter().any(could_fail),
        Expr::Tuple(t) => t.items.iter().any(could_fail),
        Expr::Map(m) => m.keys.iter().chain(&m.values).any(could_fail),
        _ => true,
    }
}

/// What kind of value a literal argument is, when it is one.
fn literal_kind(expr: &Expr<'_>) -> Option<ValueKind> {
    match expr {
        Expr::Const(c) => Some(c.value.kind()),
        Expr::List(_) | Expr::Tuple(_) => Some(ValueKind::Seq),
        Expr::Map(_) => Some(ValueKind::Map),
        _ => None,
    }
}

/// Whether a literal of this kind (and value) cannot be `arg`.
fn wrong(arg: Arg, expr: &Expr<'_>) -> bool {
    // `-5` is the negation of a literal: a count that cannot be (nor, for `batch`, `-0`).
    if let (Arg::Count | Arg::Positive, Expr::UnaryOp(u)) = (arg, expr) {
        let negative = matches!(u.op, UnaryOpKind::Neg)
            && matches!(&u.expr, Expr::Const(c) if c.value.kind() == ValueKind::Number
                && f64::try_from(c.value.clone())
                    .is_ok_and(|f| f > 0.0 || arg == Arg::Positive));
        return negative;
    }
    let Some(kind) = literal_kind(expr) else {
        return false;
    };
    let value = match expr {
        Expr::Const(c) => Some(&c.value),
        _ => None,
    };
    let integral = || {
        value
            .and_then(|v| f64::try_from(v.clone()).ok())
            .is_some_and(|f| f.fract() == 0.0)
    };
    match kind {
        // An optional argument given `none` is as if left out.
        ValueKind::Undefined | ValueKind::None => false,
        _ => match arg {
            Arg::Any => false,
            Arg::Text => kind != ValueKind::String,
            // MiniJinja takes these three and refuses any other, whatever the value.
            Arg::Rounding => !value
                .and_then(|v| v.as_str())
                .is_some_and(|m| matches!(m, "common" | "ceil" | "floor")),
            Arg::Bool => kind != ValueKind::Bool,
            Arg::Map => kind != ValueKind::Map,
            Arg::Int | Arg::IntOrBool => match kind {
                ValueKind::Bool => false,
                ValueKind::Number => !integral(),
                _ => true,
            },
            Arg::Count => match kind {
                ValueKind::Bool => false,
                ValueKind::Number => {
                    !integral()
                        || value
                            .and_then(|v| f64::try_from(v.clone()).ok())
                            .is_some_and(|f| f < 0.0)
                }
                _ => true,
            },
            // `batch(0)` and `slice(0)` fail: "count cannot be 0".
            Arg::Positive => match kind {
                ValueKind::Bool => !value.is_some_and(|v| v.is_true()),
                ValueKind::Number => {
                    !integral()
                        || value
                            .and_then(|v| f64::try_from(v.clone()).ok())
                            .is_some_and(|f| f < 1.0)
                }
                _ => true,
            },
        },
    }
}

/// How an argument kind is said.
fn said(arg: Arg) -> &'static str {
    match arg {
        Arg::Any => "any value",
        Arg::Text => "text in quotes",
        Arg::Int => "a whole number",
        Arg::Count => "a whole number, 0 or more",
        Arg::Positive => "a whole number, 1 or more",
        Arg::Rounding => "'common', 'ceil' (up) or 'floor' (down)",
        Arg::Bool => "true or false",
        Arg::IntOrBool => "a whole number, true or false",
        Arg::Map => "a map like {'a': 1}",
    }
}

/// A small number as a word.
fn word(n: usize) -> String {
    match n {
        0 => "no".to_string(),
        1 => "one".to_string(),
        2 => "two".to_string(),
        3 => "three".to_string(),
        n => n.to_string(),
    }
}

/// The place `i` (0-based) said.
fn ordinal(i: usize) -> String {
    match i {
        0 => "first".to_string(),
        1 => "second".to_string(),
        2 => "third".to_string(),
        i => format!("{}th", i + 1),
    }
}

/// `n` arguments, said.
fn count(n: usize) -> String {
    match n {
        1 => "one argument".to_string(),
        n => format!("{} arguments", word(n)),
    }
}

/// What is wrong with calling `sig` with `args`, said with how to write it; `None` when nothing
/// is known to be.
fn mismatch(sig: &Signature, what: What, args: &[CallArg<'_>]) -> Option<String> {
    // A splat (`*xs`, `**kw`) gives arguments only known when it renders.
    if args
        .iter()
        .any(|a| matches!(a, CallArg::PosSplat(_) | CallArg::KwargSplat(_)))
    {
        return None;
    }
    let name = match what {
        What::Test => format!("the test `{}`", sig.name),
        What::Filter => format!("the filter `{}`", sig.name),
        What::Function => format!("`{}()`", sig.name),
    };
    let usage = match what {
        What::Test => format!("is {}", sig.usage),
        _ => sig.usage.to_string(),
    };
    let write = format!("write it like {usage}");
    let positional: Vec<&Expr<'_>> = args
        .iter()
        .filter_map(|a| match a {
            CallArg::Pos(e) => Some(e),
            _ => None,
        })
        .collect();
    let keywords: Vec<(&str, &Expr<'_>)> = args
        .iter()
        .filter_map(|a| match a {
            CallArg::Kwarg(k, e) => Some((*k, e)),
            _ => None,
        })
        .collect();
    let mut given = positional.len();
    match sig.keywords {
        Keywords::No if !keywords.is_empty() => {
            // They come as one more positional argument, a map.
            given += 1;
            let wrong_map = sig
                .params
                .get(positional.len())
                .is_some_and(|(_, arg)| !matches!(arg, Arg::Any));
            if given > sig.params.len() && !sig.rest || wrong_map {
                return Some(format!("{name} takes no `{}=`: {write}", keywords[0].0));
            }
        }
        Keywords::Named(named) => {
            for (k, e) in &keywords {
                match named.iter().find(|(n, _)| n == k) {
                    None => {
                        let known = named
                            .iter()
                            .map(|(n, _)| format!("`{n}=`"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Some(format!(
                            "{name} takes no `{k}=` (it takes {known}): {write}"
                        ));
                    }
                    // `round(2, precision=3)`: the keyword is an argument given already.
                    Some(_)
                        if sig.params[..positional.len().min(sig.params.len())]
                            .iter()
                            .any(|(p, _)| p == k) =>
                    {
                        let place = sig.params.iter().position(|(p, _)| p == k).unwrap_or(0);
                        return Some(format!(
                            "{name} is given `{k}` twice, as its {} argument and as `{k}=`: give it once, {write}",
                            ordinal(place)
                        ));
                    }
                    Some((_, arg)) if wrong(*arg, e) => {
                        return Some(format!(
                            "{name}: `{k}=` is {}, not `{}`: {write}",
                            said(*arg),
                            written(e)
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        _ => {}
    }
    let max = sig.params.len();
    let by_keyword = |param: &str| keywords.iter().any(|(k, _)| *k == param);
    // A needed argument may come by keyword (`groupby(attribute='city')`).
    let required_given = positional.len() >= sig.required
        || (sig.required <= max
            && sig.params[..sig.required]
                .iter()
                .enumerate()
                .all(|(i, (p, _))| i < positional.len() || by_keyword(p)));
    let too_many = !sig.rest && given > max;
    if too_many || !required_given {
        let takes = if sig.rest {
            format!("at least {}", count(sig.required))
        } else if sig.required == max {
            count(max)
        } else if sig.required == 0 {
            format!("at most {}", count(max))
        } else {
            let joint = if max == sig.required + 1 { "or" } else { "to" };
            format!("{} {joint} {}", word(sig.required), count(max))
        };
        return Some(format!("{name} takes {takes}: {write}"));
    }
    for (e, (param, arg)) in positional.iter().zip(sig.params) {
        if wrong(*arg, e) {
            return Some(format!(
                "{name}: its `{param}` is {}, not `{}`: {write}",
                said(*arg),
                written(e)
            ));
        }
    }
    None
}

/// How a literal argument is written, for the advice (text in single quotes).
fn written(expr: &Expr<'_>) -> String {
    match expr {
        Expr::Const(c) => match c.value.as_str() {
            Some(text) => format!("{text:?}").replace('"', "'"),
            // As a template writes it: `false`, not the `False` MiniJinja prints.
            None if c.value.kind() == ValueKind::Bool => c.value.is_true().to_string(),
            None => c.value.to_string(),
        },
        Expr::List(_) | Expr::Tuple(_) => "a list".to_string(),
        Expr::Map(_) => "a map".to_string(),
        Expr::UnaryOp(u) if matches!(u.op, UnaryOpKind::Neg) => format!("-{}", written(&u.expr)),
        _ => "it".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values a filter or test may be given: one of them suits each call that can work.
    const PROBES: &[&str] = &[
        "missing",
        "'2026-12-24T18:00:00Z'",
        "'Ab, c'",
        "3",
        "2.5",
        "true",
        "[1, 2]",
        "['a', 'b']",
        "[{'a': 1, 'x': 2}]",
        "{'a': 1}",
    ];

    fn template(what: What, probe: &str, call: &str) -> String {
        match what {
            What::Filter => format!("{{{{ {probe} | {call} }}}}"),
            What::Test => format!("{{% if {probe} is {call} %}}y{{% endif %}}"),
            What::Function => format!("{{{{ {call} }}}}"),
        }
    }

    /// Whether MiniJinja fails `call` whatever it is given.
    fn always_fails(what: What, call: &str) -> bool {
        PROBES.iter().all(|probe| {
            let env = crate::template::env();
            env.render_str(&template(what, probe, call), ()).is_err()
        })
    }

    /// What `first_problem` says of `call`.
    fn flagged(what: What, call: &str) -> Option<String> {
        first_problem(&template(what, "missing", call), crate::template::env()).map(|p| p.message)
    }

    /// A literal `param` takes.
    fn valid(param: &str, arg: Arg) -> &'static str {
        match arg {
            // `round`'s method is one of three.
            Arg::Rounding => "'floor'",
            // `currency`'s code and locale are checked as written.
            Arg::Text if param == "code" => "'EUR'",
            Arg::Text if param == "locale" => "'de-DE'",
            Arg::Any | Arg::Text => "'x'",
            Arg::Int | Arg::IntOrBool | Arg::Count | Arg::Positive => "2",
            Arg::Bool => "true",
            Arg::Map => "{'a': 1}",
        }
    }

    fn invalid(arg: Arg) -> &'static str {
        match arg {
            Arg::Any => unreachable!("anything will do"),
            Arg::Text | Arg::Map | Arg::Rounding => "5",
            Arg::Int | Arg::IntOrBool | Arg::Bool | Arg::Count | Arg::Positive => "'a'",
        }
    }

    /// A literal boolean is written back as a template writes it.
    #[test]
    fn a_boolean_argument_is_written_as_written() {
        for (call, said) in [
            ("batch(false)", "not `false`"),
            ("date(true)", "not `true`"),
        ] {
            let message = flagged(What::Filter, call).unwrap_or_default();
            assert!(message.contains(said), "{call}: {message}");
        }
    }

    /// The table says what MiniJinja does: each call it refuses fails whatever the value, each
    /// it takes (its usage, every argument given) works for some value.
    #[test]
    fn the_signatures_are_minijinjas() {
        let all = [
            (What::Filter, FILTERS),
            (What::Test, TESTS),
            (What::Function, FUNCTIONS),
        ];
        let mut wrong = Vec::new();
        for (what, table) in all {
            for sig in table {
                let mut good = vec![sig
                    .usage
                    .split(" or ")
                    .next()
                    .unwrap_or(sig.usage)
                    .to_string()];
                let mut bad = Vec::new();
                let with = |args: &[String]| format!("{}({})", sig.name, args.join(", "));
                let filled: Vec<String> = sig
                    .params
                    .iter()
                    .map(|(p, a)| valid(p, *a).to_string())
                    .collect();
                if !sig.rest {
                    good.push(with(&filled));
                    let mut more = filled.clone();
                    more.push("1".to_string());
                    bad.push(with(&more));
                }
                if sig.required > 0 {
                    bad.push(with(&filled[..sig.required - 1]));
                }
                for (i, (_, arg)) in sig.params.iter().enumerate() {
                    if *arg != Arg::Any {
                        let mut args = filled[..i].to_vec();
                        args.push(invalid(*arg).to_string());
                        bad.push(with(&args));
                    }
                }
                // Keywords after the arguments it needs.
                let keyword = |k: &str, v: &str| {
                    let mut args: Vec<String> = filled[..sig.required]
                        .iter()
                        .zip(sig.params)
                        .filter(|(_, (p, _))| *p != k)
                        .map(|(a, _)| a.clone())
                        .collect();
                    args.push(format!("{k}={v}"));
                    with(&args)
                };
                if let Keywords::Named(named) = sig.keywords {
                    bad.push(keyword("zzz", "1"));
                    for (k, arg) in named {
                        good.push(keyword(k, valid(k, *arg)));
                        if *arg != Arg::Any {
                            bad.push(keyword(k, invalid(*arg)));
                        }
                        // Given in place and by keyword too.
                        if let Some(i) = sig.params.iter().position(|(p, _)| p == k) {
                            let mut args = filled[..=i].to_vec();
                            args.push(format!("{k}={}", valid(k, *arg)));
                            bad.push(with(&args));
                        }
                    }
                }
                for call in good {
                    if always_fails(what, &call) || flagged(what, &call).is_some() {
                        wrong.push(format!(
                            "{what:?} {call} should work: {:?}",
                            flagged(what, &call)
                        ));
                    }
                }
                for call in bad {
                    if !always_fails(what, &call) || flagged(what, &call).is_none() {
                        wrong.push(format!(
                            "{what:?} {call} should fail (fails: {}, flagged: {:?})",
                            always_fails(what, &call),
                            flagged(what, &call)
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Every function the environment offers has a signature (its filters and tests are the
    /// tables' names: `the_suggested_names_are_minijinjas` holds each one known to it).
    #[test]
    fn every_filter_test_and_function_is_in_the_table() {
        let env = crate::template::env();
        for (name, _) in env.globals() {
            assert!(FUNCTIONS.iter().any(|s| s.name == name), "function {name}");
        }
    }
}
