//! Habits from other template languages that MiniJinja does not read, and how to write each
//! here: Liquid's `| default: "there"`, `| size` and `{% assign %}`, Handlebars' `{{#if}}`,
//! JavaScript's `${…}`. Reads text only, and is asked only about a template that does not
//! compile or names a filter MiniJinja lacks: it never refuses one that works.

use std::ops::Range;

use super::used;

/// Liquid's filters (and Shopify's, as Segment's and Braze's users write them) that MiniJinja
/// has under another name, or does with an operator.
const FILTERS: &[(&str, &str)] = &[
    ("size", "`length` (`| length`)"),
    ("upcase", "`upper` (`| upper`)"),
    ("downcase", "`lower` (`| lower`)"),
    ("strip", "`trim` (`| trim`)"),
    ("json", "`tojson` (`| tojson`)"),
    ("append", "`~` (`{{ profile.first_name ~ '!' }}`)"),
    ("prepend", "`~` (`{{ 'Hi ' ~ profile.first_name }}`)"),
    ("plus", "`+` (`{{ event.total + 5 }}`)"),
    ("minus", "`-` (`{{ event.total - 5 }}`)"),
    ("times", "`*` (`{{ event.total * 2 }}`)"),
    ("divided_by", "`/` (`{{ event.total / 2 }}`)"),
    // Braze's, after Rails': for money, which is what it is most often put on.
    (
        "number_with_delimiter",
        "`currency` for money, which groups the thousands (`| currency('USD')`, or \
         `| currency('')` for the amount alone)",
    ),
];

/// What to write for a filter MiniJinja does not know that another language has (`size` is
/// `length`), for the unknown filter's error.
pub fn filter(name: &str) -> Option<String> {
    let (_, instead) = FILTERS.iter().find(|(n, _)| *n == name)?;
    Some(format!("`{name}` is Liquid's: here it is {instead}"))
}

/// Every habit of another template language in `source` that is read as code or text (not in
/// a string, a comment or a `{% raw %}` block), by its byte offset, in order, with what to
/// write instead.
pub fn all(source: &str) -> Vec<(usize, String)> {
    let (parts, _) = used::layout(source);
    let mut found: Vec<(usize, String)> = [
        handlebars(source),
        javascript(source),
        liquid_tag(source),
        liquid_argument(source),
    ]
    .into_iter()
    .flatten()
    .filter(|(at, _)| used::part_at(&parts, *at) != used::Part::Quoted)
    .collect();
    found.sort_by_key(|(at, _)| *at);
    found
}

/// The habit of another template language that is what MiniJinja failed to read (its error is
/// at `error`, bytes of `source`, or else on line `line`): one at its very place, or before it in
/// the tag it is in; `None` when there is none there, and MiniJinja's own error says what is
/// wrong. A habit elsewhere in a template that fails for another reason (a missing `}`) would
/// hide the real error.
pub fn at_error(
    source: &str,
    error: Option<Range<usize>>,
    line: Option<usize>,
) -> Option<(usize, String)> {
    let (_, tags) = used::layout(source);
    let line_of = |at: usize| source[..at].matches('\n').count() + 1;
    all(source).into_iter().find(|(at, _)| match &error {
        Some(e) => {
            let e = e.start;
            // At the error or before it in its tag: MiniJinja stops at the first thing it
            // cannot read, and a habit after that is no part of it.
            *at == e
                || *at < e
                    && tags.iter().any(|t| {
                        let holds =
                            |x: usize| t.contains(&x) || (x == t.end && t.end == source.len());
                        holds(e) && t.contains(at)
                    })
        }
        None => line.is_some_and(|l| line_of(*at) == l),
    })
}

fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier `text` starts with.
fn identifier(text: &str) -> &str {
    let end = text.find(|c: char| !word(c)).unwrap_or(text.len());
    &text[..end]
}

/// `{{#if x}}`, `{{#each items}}`, `{{/if}}`, `{{else}}`: Handlebars' blocks.
fn handlebars(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices("{{") {
        let inner = source[at + 2..].trim_start_matches(['~', ' ']);
        let close = inner.find("}}").unwrap_or(inner.len());
        let body = inner[..close].trim_end_matches(['~', ' ']);
        let written = format!("{{{{{body}}}}}");
        let advice = if let Some(block) = body.strip_prefix('#') {
            let helper = identifier(block);
            let rest = block[helper.len()..].trim();
            match helper {
                "if" => format!("write `{{% if {rest} %}}` … `{{% endif %}}`"),
                "unless" => format!("write `{{% if not {rest} %}}` … `{{% endif %}}`"),
                "each" => format!("write `{{% for item in {rest} %}}` … `{{% endfor %}}`"),
                _ => "write MiniJinja's tags: `{% if … %}`, `{% for … in … %}`".to_string(),
            }
        } else if let Some(end) = body.strip_prefix('/') {
            match identifier(end) {
                "if" | "unless" => "write `{% endif %}`".to_string(),
                "each" => "write `{% endfor %}`".to_string(),
                _ => "write MiniJinja's end tag: `{% endif %}`, `{% endfor %}`".to_string(),
            }
        } else if body == "else" {
            "write `{% else %}`".to_string()
        } else {
            continue;
        };
        out.push((
            at,
            format!("`{written}` is Handlebars: blocks here are tags in `{{% %}}`, {advice}"),
        ));
    }
    out
}

/// `${first_name}`: a JavaScript template literal's placeholder.
fn javascript(source: &str) -> Vec<(usize, String)> {
    placeholders(source)
        .into_iter()
        .map(|(at, name)| (at, placeholder(name, "")))
        .collect()
}

/// Every `${name}` of `source` with its byte offset. A price before a value (`${{ event.total
/// }}`) is no placeholder: a name or a path only.
fn placeholders(source: &str) -> Vec<(usize, &str)> {
    source
        .match_indices("${")
        .filter_map(|(at, _)| {
            let inner = &source[at + 2..];
            let name = inner[..inner.find('}')?].trim();
            let path = !name.is_empty() && name.chars().all(|c| word(c) || c == '.');
            path.then_some((at, name))
        })
        .collect()
}

/// The first `${name}` in `source`'s text (outside its tags, comments and raw blocks), which
/// compiles and is sent as written: its byte offset, and what to say.
pub fn placeholder_in_text(source: &str) -> Option<(usize, String)> {
    let (parts, _) = used::layout(source);
    let (at, name) = placeholders(source)
        .into_iter()
        .find(|(at, _)| used::part_at(&parts, *at) == used::Part::Text)?;
    Some((at, placeholder(name, ", sent here as it is written")))
}

/// What to say of `${name}`, JavaScript's placeholder (`said` after its name).
fn placeholder(name: &str, said: &str) -> String {
    let path = if name.starts_with("profile.") || name.starts_with("event.") {
        name.to_string()
    } else {
        format!("profile.{name}")
    };
    format!(
        "`${{{name}}}` is JavaScript's{said}: a value is written `{{{{ {path} }}}}` (a trait is `profile.*`, the event's property `event.*`)"
    )
}

/// `{% assign x = 1 %}`, `{% capture %}`, `{% unless %}`, `{% case %}`, `{% elsif %}`: Liquid's
/// tags (and `{% elseif %}`, `{% else if %}`, as other languages write `elif`).
fn liquid_tag(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (at, _) in source.match_indices("{%") {
        let inner = source[at + 2..].trim_start_matches(['-', ' ']);
        let close = inner.find("%}").unwrap_or(inner.len());
        let body = inner[..close].trim_end_matches(['-', ' ']);
        let tag = identifier(body);
        let rest = body[tag.len()..].trim();
        let advice = match tag {
            "assign" => format!("write `{{% set {rest} %}}`"),
            "capture" => format!("write `{{% set {rest} %}}` … `{{% endset %}}`"),
            "endcapture" => "write `{% endset %}`".to_string(),
            "unless" => format!("write `{{% if not ({rest}) %}}` … `{{% endif %}}`"),
            "endunless" | "endcase" => "write `{% endif %}`".to_string(),
            "case" => format!(
                "write `{{% if {rest} == 'a' %}}` … `{{% elif {rest} == 'b' %}}` … `{{% endif %}}`"
            ),
            "when" => "write `{% elif … == 'b' %}`, after an `{% if %}`".to_string(),
            "elsif" | "elseif" => format!("write `{{% elif {rest} %}}`"),
            "else" if identifier(rest) == "if" => {
                format!("write `{{% elif {} %}}`", rest["if".len()..].trim())
            }
            _ => continue,
        };
        let whose = match tag {
            "elseif" | "else" => "not MiniJinja's",
            _ => "Liquid's",
        };
        out.push((at, format!("`{{% {body} %}}` is {whose}: {advice}")));
    }
    out
}

/// `| default: "there"`, `| date: "%b"`: a filter given its argument after a colon, as Liquid
/// does, inside a `{{ }}` or a `{% %}`.
fn liquid_argument(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for open in ["{{", "{%"] {
        let shut = if open == "{{" { "}}" } else { "%}" };
        for (start, _) in source.match_indices(open) {
            let from = start + 2;
            let end = source[from..].find(shut).map_or(source.len(), |e| from + e);
            let tag = &source[from..end];
            for (bar, _) in tag.match_indices('|') {
                let after = tag[bar + 1..].trim_start();
                let name = identifier(after);
                if name.is_empty() {
                    continue;
                }
                let Some(argument) = after[name.len()..].trim_start().strip_prefix(':') else {
                    continue;
                };
                let argument = argument
                    .split('|')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_end_matches('-')
                    .trim();
                let written = format!("`| {name}: {argument}`");
                let lhs = tag[..bar].trim().trim_start_matches(['-', '+']).trim();
                out.push((
                    from + bar,
                    argument_advice(&written, open, lhs, name, argument),
                ));
            }
        }
    }
    out
}

/// What to write for `written`, Liquid's `| name: argument` after `lhs` in a tag opened by
/// `open`: MiniJinja's call of the filter when it has one, the operator Liquid's arithmetic and
/// joining filters are (`| plus: 5` is `+ 5`), else that it has no such filter.
fn argument_advice(written: &str, open: &str, lhs: &str, name: &str, argument: &str) -> String {
    let operator = match name {
        "plus" => Some("+"),
        "minus" => Some("-"),
        "times" => Some("*"),
        "divided_by" => Some("/"),
        "append" | "prepend" => Some("~"),
        _ => None,
    };
    if let Some(op) = operator {
        let expression = if open != "{{" || lhs.is_empty() {
            None
        } else if name == "prepend" {
            Some(format!("{argument} ~ {lhs}"))
        } else {
            Some(format!("{lhs} {op} {argument}"))
        };
        let whole = if name == "divided_by" {
            " (`//` keeps a whole number, as Liquid's does for two whole numbers)"
        } else {
            ""
        };
        return match expression {
            Some(e) => format!(
                "{written} is Liquid's filter: MiniJinja writes it with `{op}`: write `{{{{ {e} }}}}`{whole}"
            ),
            None => {
                let (_, instead) = FILTERS.iter().find(|(n, _)| *n == name).copied().unwrap_or_default();
                format!("{written} is Liquid's filter: MiniJinja writes it with {instead}{whole}")
            }
        };
    }
    if super::calls::FILTERS.iter().any(|f| f.name == name) {
        return format!(
            "{written} gives a filter its argument as Liquid does: write `| {name}({argument})`"
        );
    }
    if let Some((_, instead)) = FILTERS.iter().find(|(n, _)| *n == name) {
        return format!("{written} is Liquid's: here it is {instead}");
    }
    let guess = crate::dsl::closest(name, super::calls::FILTERS.iter().map(|f| f.name))
        .map(|n| format!(": did you mean `{n}` (`| {n}(…)`)?"))
        .unwrap_or_else(|| {
            ": its filters are listed at https://docs.rs/minijinja/latest/minijinja/filters/"
                .to_string()
        });
    format!("{written} gives a filter its argument as Liquid does, and MiniJinja has no filter `{name}`{guess}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_habit_is_told_how_it_is_written_here() {
        for (source, at, says) in [
            (
                "Hi {{ name | default: \"there\" }}",
                11,
                "`| default: \"there\"` gives a filter its argument as Liquid does: write `| default(\"there\")`",
            ),
            (
                "{{ now | date: \"%b\" | upper }}",
                7,
                "write `| date(\"%b\")`",
            ),
            (
                "{% assign x = 1 %}{{ x }}",
                0,
                "`{% assign x = 1 %}` is Liquid's: write `{% set x = 1 %}`",
            ),
            (
                "Hi {{${first_name}}}",
                5,
                "`${first_name}` is JavaScript's: a value is written `{{ profile.first_name }}`",
            ),
            (
                "{{#if profile.vip}}Hi{{/if}}",
                0,
                "`{{#if profile.vip}}` is Handlebars: blocks here are tags in `{% %}`, write `{% if profile.vip %}` … `{% endif %}`",
            ),
            ("x {{/each}}", 2, "write `{% endfor %}`"),
            // Liquid's arithmetic and joining filters are MiniJinja's operators, in full.
            (
                "{{ event.total | plus: 5 }}",
                15,
                "`| plus: 5` is Liquid's filter: MiniJinja writes it with `+`: write `{{ event.total + 5 }}`",
            ),
            ("{{ event.total | minus: 5 }}", 15, "write `{{ event.total - 5 }}`"),
            ("{{ event.total | times: 2 }}", 15, "write `{{ event.total * 2 }}`"),
            ("{{ event.total | divided_by: 2 }}", 15, "write `{{ event.total / 2 }}` (`//` keeps"),
            ("{{ profile.first_name | append: '!' }}", 22, "write `{{ profile.first_name ~ '!' }}`"),
            ("{{ profile.first_name | prepend: 'Hi ' }}", 22, "write `{{ 'Hi ' ~ profile.first_name }}`"),
            ("{% set n = event.total | plus: 5 %}", 23, "MiniJinja writes it with `+` (`{{ event.total + 5 }}`)"),
            // A filter MiniJinja lacks is not advised as a call it cannot make.
            (
                "{{ event.note | truncatewords: 5 }}",
                14,
                "MiniJinja has no filter `truncatewords`",
            ),
            (
                "{% unless event.paid %}pay{% endunless %}",
                0,
                "write `{% if not (event.paid) %}`",
            ),
            // Liquid's `elsif`, and the other languages' ways, at their tag.
            (
                "{% if a %}x{% elsif profile.plan == 'basic' %}y{% endif %}",
                11,
                "`{% elsif profile.plan == 'basic' %}` is Liquid's: write `{% elif profile.plan == 'basic' %}`",
            ),
            (
                "{% if a %}x{%- elseif b -%}y{% endif %}",
                11,
                "`{% elseif b %}` is not MiniJinja's: write `{% elif b %}`",
            ),
            (
                "{% if a %}x{% else  if b %}y{% endif %}",
                11,
                "`{% else  if b %}` is not MiniJinja's: write `{% elif b %}`",
            ),
        ] {
            let (found, message) = all(source)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("{source}"));
            assert_eq!(found, at, "{source}: {message}");
            assert!(message.contains(says), "{source}: {message}");
        }
        // MiniJinja's own forms are no habit.
        for (source, wrong) in [
            ("{{ event.total | plus: 5 }}", "plus("),
            ("{{ event.note | truncatewords: 5 }}", "truncatewords("),
        ] {
            for (_, message) in all(source) {
                assert!(!message.contains(wrong), "{source}: {message}");
            }
        }
        for source in [
            "{{ name | default('there') }}",
            "{% set x = 1 %}{{ x }}",
            "{% if a %}{{ b }}{% endif %}",
            "{% if a %}x{% elif b %}y{% else %}z{% endif %}",
            "{% if a %}x{% else %}{% if b %}y{% endif %}{% endif %}",
            "Price: 5 | 6 {{ a }}",
            "Only ${{ event.total }",
        ] {
            assert_eq!(all(source), [], "{source}");
        }
        assert_eq!(
            filter("size").as_deref(),
            Some("`size` is Liquid's: here it is `length` (`| length`)")
        );
        assert_eq!(filter("length"), None);
        assert!(filter("number_with_delimiter")
            .is_some_and(|m| m.contains("`| currency('')` for the amount alone")));
    }
}
