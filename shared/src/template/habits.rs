//! Habits from other template languages that MiniJinja does not read, and how to write each
//! here: Liquid's `| default: "there"`, `| size` and `{% assign %}`, Handlebars' `{{#if}}`,
//! JavaScript's `${…}`. Reads text only, and is asked only about a template that does not
//! compile or names a filter MiniJinja lacks: it never refuses one that works.

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
];

/// What to write for a filter MiniJinja does not know that another language has (`size` is
/// `length`), for the unknown filter's error.
pub fn filter(name: &str) -> Option<String> {
    let (_, instead) = FILTERS.iter().find(|(n, _)| *n == name)?;
    Some(format!("`{name}` is Liquid's: here it is {instead}"))
}

/// The first habit of another template language in `source` (by its byte offset), with what
/// to write instead; `None` when there is none, and MiniJinja's own error says the rest.
pub fn first(source: &str) -> Option<(usize, String)> {
    [
        handlebars(source),
        javascript(source),
        liquid_tag(source),
        liquid_argument(source),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|(at, _)| *at)
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
fn handlebars(source: &str) -> Option<(usize, String)> {
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
        return Some((
            at,
            format!("`{written}` is Handlebars: blocks here are tags in `{{% %}}`, {advice}"),
        ));
    }
    None
}

/// `${first_name}`: a JavaScript template literal's placeholder.
fn javascript(source: &str) -> Option<(usize, String)> {
    // A price before a value (`${{ event.total }}`) is no placeholder: a name or a path only.
    let (at, name) = source.match_indices("${").find_map(|(at, _)| {
        let inner = &source[at + 2..];
        let name = inner[..inner.find('}')?].trim();
        let path = !name.is_empty() && name.chars().all(|c| word(c) || c == '.');
        path.then_some((at, name))
    })?;
    let path = if name.starts_with("profile.") || name.starts_with("event.") {
        name.to_string()
    } else {
        format!("profile.{name}")
    };
    Some((
        at,
        format!(
            "`${{{name}}}` is JavaScript's: a value is written `{{{{ {path} }}}}` (a trait is `profile.*`, the event's property `event.*`)"
        ),
    ))
}

/// `{% assign x = 1 %}`, `{% capture %}`, `{% unless %}`, `{% case %}`: Liquid's tags.
fn liquid_tag(source: &str) -> Option<(usize, String)> {
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
            _ => continue,
        };
        return Some((at, format!("`{{% {body} %}}` is Liquid's: {advice}")));
    }
    None
}

/// `| default: "there"`, `| date: "%b"`: a filter given its argument after a colon, as Liquid
/// does, inside a `{{ }}` or a `{% %}`.
fn liquid_argument(source: &str) -> Option<(usize, String)> {
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
                return Some((
                    from + bar,
                    format!(
                        "`| {name}: {argument}` gives a filter its argument as Liquid does: write `| {name}({argument})`"
                    ),
                ));
            }
        }
    }
    None
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
            (
                "{% unless event.paid %}pay{% endunless %}",
                0,
                "write `{% if not (event.paid) %}`",
            ),
        ] {
            let (found, message) = first(source).unwrap_or_else(|| panic!("{source}"));
            assert_eq!(found, at, "{source}: {message}");
            assert!(message.contains(says), "{source}: {message}");
        }
        // MiniJinja's own forms are no habit.
        for source in [
            "{{ name | default('there') }}",
            "{% set x = 1 %}{{ x }}",
            "{% if a %}{{ b }}{% endif %}",
            "Price: 5 | 6 {{ a }}",
            "Only ${{ event.total }",
        ] {
            assert_eq!(first(source), None, "{source}");
        }
        assert_eq!(
            filter("size").as_deref(),
            Some("`size` is Liquid's: here it is `length` (`| length`)")
        );
        assert_eq!(filter("length"), None);
    }
}
