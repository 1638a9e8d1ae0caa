//! A webhook call as HTTP carries it: the checks of its URL and headers (for a journey's file,
//! a user's rendered call and the deployed sender alike) and the headers the sender adds.

use std::collections::BTreeMap;

/// How a webhook's URL is written, for the messages that refuse one.
pub const WEBHOOK_URL_ADVICE: &str =
    "write it like `https://api.example.com/hooks/order?user={{ user_id | urlencode }}`";

/// The headers a webhook call goes out with: the step's own, `Content-Type: application/json`
/// when it has a body and names no `Content-Type`, and `Idempotency-Key`, the send's ledger key
/// made [`header_safe`], unless it names one. The deployed sender sends these, and the local
/// outbox shows them, so that a call looks the same in both.
pub fn webhook_headers_sent(
    headers: &BTreeMap<String, String>,
    has_body: bool,
    ledger_key: &str,
) -> BTreeMap<String, String> {
    let set = |name: &str| headers.keys().any(|k| k.eq_ignore_ascii_case(name));
    let mut sent = headers.clone();
    if has_body && !set("content-type") {
        sent.insert("Content-Type".into(), "application/json".into());
    }
    if !set("idempotency-key") {
        sent.insert("Idempotency-Key".into(), header_safe(ledger_key));
    }
    sent
}

/// `key` as an HTTP header value carries it: `%`, spaces, control characters and bytes
/// outside ASCII percent-encoded (a user id may hold any of them), the rest as it is, so the
/// keys of two sends stay two.
pub fn header_safe(key: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What is wrong with `url` as a webhook's whole URL (an https:// or http:// URL with a host and,
/// if it names one, a port HTTP has), if anything: the same check for a URL written whole in
/// the journey, one rendered for a user, and the deployed sender's. Said of the URL without
/// naming it (`is not a URL with a host: ...`): a rendered one may carry the user's token or
/// address, and the caller says which URL it is.
pub fn webhook_url_problem(url: &str) -> Option<String> {
    let advice = WEBHOOK_URL_ADVICE;
    if url.trim().is_empty() {
        return Some(format!("is empty: {advice}"));
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some(format!("is not a URL: {advice}"));
    };
    let scheme = uri.scheme_str().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Some(format!("is not an https:// (or http://) URL: {advice}"));
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Some(format!("is not a URL with a host: {advice}"));
    };
    // What follows the host is nothing or `:port` (an empty port is the scheme's own).
    let text = authority.as_str();
    let text = text.rsplit_once('@').map_or(text, |(_, h)| h);
    let after_host = text.strip_prefix(authority.host()).unwrap_or_default();
    if after_host.len() > 1 && authority.port_u16().is_none_or(|p| p == 0) {
        return Some(format!(
            "names a port that is not one (1 to 65535): {advice}"
        ));
    }
    None
}

/// What is wrong with `url`, rendered for a user from the journey's URL `template`, as to the
/// host it goes to, if anything: a user's data must not send the call, its headers (an API
/// key) and body with it, to a host the journey does not name (a trait `attacker.example/#`
/// or `@attacker.example` filling part of the host). The template's host, from its `://` to
/// the `/`, `?` or `#` that ends it, is matched: its fixed text as written (letters in any
/// case), each piece of data in it (a `{{ }}`, or a run of `{% %}` tags and what they hold)
/// one label at most (no `.`, `:` or `@`); data at its end, with no fixed text after it, may
/// only begin the path. A host that is all data (`https://{{ profile.crm_host }}/...`), or a
/// URL all data (`{{ profile.webhook_url }}`), is the journey's choice: any host, without
/// `@`. A template whose scheme holds data is refused (the data could write a host first).
pub fn host_problem(template: &str, url: &str) -> Option<String> {
    let pieces = template_pieces(template);
    // No data at all, or all of it: checked as any URL is.
    match pieces.first() {
        None | Some(Piece::Data) => return None,
        Some(Piece::Fixed(_)) if pieces.len() == 1 => return None,
        _ => {}
    }
    let Some(Piece::Fixed(first)) = pieces.first() else {
        return None;
    };
    let Some(scheme_end) = first.find("://") else {
        return Some(
            "has data in its scheme: write `https://` and the host out, or give the whole URL from data"
                .into(),
        );
    };
    // The host's pattern: fixed text and pieces of data, up to the first `/`, `?` or `#` of the
    // fixed text (`marked`), or the template's end.
    let mut pattern: Vec<Piece> = Vec::new();
    let mut marked = false;
    let mut rest = vec![Piece::Fixed(first[scheme_end + 3..].to_string())];
    rest.extend(pieces.into_iter().skip(1));
    for piece in rest {
        match piece {
            Piece::Data => {
                if !matches!(pattern.last(), Some(Piece::Data)) {
                    pattern.push(Piece::Data);
                }
            }
            Piece::Fixed(text) => {
                let (host, ended) = match text.find(['/', '?', '#']) {
                    Some(i) => (&text[..i], true),
                    None => (&text[..], false),
                };
                if !host.is_empty() {
                    pattern.push(Piece::Fixed(host.to_ascii_lowercase()));
                }
                if ended {
                    marked = true;
                    break;
                }
            }
        }
    }
    let written: String = pattern
        .iter()
        .map(|p| match p {
            Piece::Fixed(t) => t.as_str(),
            Piece::Data => "…",
        })
        .collect();
    let refused = || {
        Some(format!(
            "goes to another host than the journey's `{written}`: data in the URL must not change its host (put it in the path or the query, or branch to URLs written out)"
        ))
    };
    let rendered = url.parse::<http::Uri>().ok()?;
    let authority = rendered
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    // Data that ends the template with no fixed text after it may begin the path, and adds
    // nothing to the host, unless it fills a label of its own (`https://api.{{ region }}`).
    if !marked && matches!(pattern.last(), Some(Piece::Data)) {
        let before = pattern.len().checked_sub(2).and_then(|i| pattern.get(i));
        let own_label = match before {
            None => true,
            Some(Piece::Fixed(t)) => t.ends_with('.'),
            Some(Piece::Data) => false,
        };
        if !own_label {
            pattern.pop();
        }
    }
    let all_data = matches!(pattern.as_slice(), [Piece::Data]);
    let fits = if all_data {
        !authority.is_empty() && !authority.contains('@')
    } else {
        host_fits(&pattern, &authority)
    };
    if fits {
        None
    } else {
        refused()
    }
}

/// A URL template as fixed text and pieces of data (`{{ }}`, `{% %}`; a `{# #}` comment is
/// nothing). Fixed text between `{% %}` tags (an `if`'s branches) is data: which of it is
/// written depends on the user.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Fixed(String),
    Data,
}

fn template_pieces(template: &str) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut rest = template;
    let mut depth = 0usize;
    let push = |pieces: &mut Vec<Piece>, p: Piece| match (pieces.last_mut(), p) {
        (Some(Piece::Fixed(t)), Piece::Fixed(more)) => t.push_str(&more),
        (Some(Piece::Data), Piece::Data) => {}
        (_, p) => pieces.push(p),
    };
    while !rest.is_empty() {
        let next = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|open| rest.find(open).map(|i| (i, *open)))
            .min();
        let Some((i, open)) = next else {
            let p = if depth > 0 {
                Piece::Data
            } else {
                Piece::Fixed(rest.to_string())
            };
            push(&mut pieces, p);
            break;
        };
        if i > 0 {
            let p = if depth > 0 {
                Piece::Data
            } else {
                Piece::Fixed(rest[..i].to_string())
            };
            push(&mut pieces, p);
        }
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let Some(end) = rest[i + 2..].find(close) else {
            push(&mut pieces, Piece::Data);
            break;
        };
        let tag = rest[i + 2..i + 2 + end].trim().trim_matches('-').trim();
        match open {
            "{#" => {}
            "{%" => {
                let word = tag.split_whitespace().next().unwrap_or_default();
                if matches!(word, "if" | "for" | "with" | "macro" | "raw") {
                    depth += 1;
                } else if word.starts_with("end") {
                    depth = depth.saturating_sub(1);
                }
                push(&mut pieces, Piece::Data);
            }
            _ => push(&mut pieces, Piece::Data),
        }
        rest = &rest[i + 2 + end + 2..];
    }
    pieces
}

/// Whether `host` (lower case) is the `pattern`'s fixed text in order, each piece of data
/// between filling at most one label's part (no `.`, `:` or `@`).
fn host_fits(pattern: &[Piece], host: &str) -> bool {
    match pattern.split_first() {
        None => host.is_empty(),
        Some((Piece::Fixed(t), rest)) => host
            .strip_prefix(t.as_str())
            .is_some_and(|h| host_fits(rest, h)),
        Some((Piece::Data, rest)) => {
            let most = host.find(['.', ':', '@']).unwrap_or(host.len());
            (0..=most).any(|n| host_fits(rest, &host[n..]))
        }
    }
}

/// What is wrong with `name` as an HTTP header name (a webhook's), if anything.
pub fn header_name_problem(name: &str) -> Option<String> {
    http::HeaderName::from_bytes(name.as_bytes())
        .is_err()
        .then(|| {
            format!(
                "`{name}` is not an HTTP header name: letters, digits and `-`, like `X-Api-Key`"
            )
        })
}

/// What is wrong with `value` as an HTTP header value (a webhook's), if anything: a control
/// character (a line break, a NUL, DEL); text beyond ASCII passes, as the HTTP client sends it.
pub fn header_value_problem(value: &str) -> Option<String> {
    http::HeaderValue::from_str(value).is_err().then(|| {
        "is not an HTTP header value: no line breaks or other control characters (put such text through `| urlencode`)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_in_a_webhooks_url_does_not_change_its_host() {
        let region = "https://{{ profile.region | urlencode }}.api.crm.example/v1/orders";
        assert_eq!(
            host_problem(region, "https://eu-west.api.crm.example/v1/orders"),
            None
        );
        for attack in [
            "https://attacker.example/x.api.crm.example/v1/orders",
            "https://attacker.example/#.api.crm.example/v1/orders",
            "https://a.b.api.crm.example/v1/orders",
            "https://u@evil.example/.api.crm.example/v1/orders",
        ] {
            let why = host_problem(region, attack).expect(attack);
            assert!(why.contains("`….api.crm.example`"), "{why}");
        }
        let path = "https://hooks.example/{{ event.p }}";
        assert_eq!(host_problem(path, "https://hooks.example/a/b?c"), None);
        assert!(host_problem(path, "https://evil.example/x").is_some());
        // The `@` trick: fixed text that stops inside the host.
        let at = "https://hooks.example{{ event.p }}";
        assert!(host_problem(at, "https://hooks.example@evil.example/steal").is_some());
        assert_eq!(host_problem(at, "https://hooks.example/steal"), None);
        // A host all data, or no data at all: the journey's choice, checked elsewhere.
        assert_eq!(
            host_problem("{{ profile.hook }}", "https://x.example/"),
            None
        );
        assert_eq!(
            host_problem("https://a.example/", "https://b.example/"),
            None
        );
        let host = "https://{{ profile.crm_host }}/v1/orders";
        assert_eq!(
            host_problem(host, "https://hooks.partner.example/v1/orders"),
            None
        );
        assert!(host_problem(host, "https://u@evil.example/v1/orders").is_some());
        // Two pieces of data in the host: each one label, the fixed text between as written.
        let two = "https://{{ profile.sub }}.{{ profile.region }}.api.crm.example/v1/orders";
        assert_eq!(
            host_problem(two, "https://a.eu.api.crm.example/v1/orders"),
            None
        );
        for attack in [
            "https://attacker.example/#.eu.api.crm.example/v1/orders",
            "https://a.b.eu.api.crm.example/v1/orders",
        ] {
            assert!(host_problem(two, attack).is_some(), "{attack}");
        }
        // Data in the scheme could write a host before the journey's.
        let scheme = "http{{ profile.tls }}://api.crm.example/v1/orders";
        let why = host_problem(
            scheme,
            "https://attacker.example/#://api.crm.example/v1/orders",
        );
        assert!(why.is_some_and(|w| w.contains("scheme")));
        // Data right after a written host begins the path; it does not lengthen the host.
        let ip = "http://10.0.0.1{{ event.path }}";
        assert!(host_problem(ip, "http://10.0.0.19/x").is_some());
        assert_eq!(host_problem(ip, "http://10.0.0.1/x"), None);
        assert_eq!(host_problem("https://api.{{ r }}", "https://api.eu/"), None);
        // An `if`'s branches are data; a comment is nothing; a password between fixed text.
        let branch =
            "https://{% if profile.eu %}eu{% else %}us{% endif %}.api.crm.example/v1/{{ user_id }}";
        assert_eq!(
            host_problem(branch, "https://us.api.crm.example/v1/u1"),
            None
        );
        assert!(host_problem(branch, "https://evil.example/.api.crm.example/v1/u1").is_some());
        let note = "https://api.example.com{# the EU one #}/v1/{{ user_id }}";
        assert_eq!(host_problem(note, "https://api.example.com/v1/u1"), None);
        let user = "https://svc:{{ pw | urlencode }}@api.example.com/x";
        assert_eq!(
            host_problem(user, "https://svc:p%40ss@api.example.com/x"),
            None
        );
        assert!(host_problem(user, "https://svc:x@evil.example/@api.example.com/x").is_some());
        // Letters in any case.
        assert_eq!(
            host_problem(
                "https://API.Example.com/{{ p }}",
                "https://api.example.COM/a"
            ),
            None
        );
    }

    #[test]
    fn a_webhook_goes_out_with_the_headers_the_step_left_unnamed() {
        let own = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            webhook_headers_sent(&own(&[("x-a", "1")]), true, "j:zoë 1:1#s#2"),
            own(&[
                ("x-a", "1"),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "j:zo%C3%AB%201:1#s#2"),
            ])
        );
        // Named by the step, in any case, they are the step's; no body, no content type.
        let named = own(&[("content-type", "text/csv"), ("IDEMPOTENCY-KEY", "k-1")]);
        assert_eq!(webhook_headers_sent(&named, true, "j:u:1#s#1"), named);
        assert_eq!(
            webhook_headers_sent(&BTreeMap::new(), false, "j:u:1#s#1"),
            own(&[("Idempotency-Key", "j:u:1#s#1")])
        );
    }
}
