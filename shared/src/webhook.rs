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

/// How a webhook's body is read by its receiver, by the step's `Content-Type` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMedia {
    /// JSON: the step names no `Content-Type`, or `application/json` or a `+json` type (not
    /// NDJSON, several values a body).
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// Anything else, taken as it is.
    Other,
}

/// How the receiver reads the body of a call with the step's `headers`.
pub fn body_media(headers: &BTreeMap<String, String>) -> BodyMedia {
    let Some((_, v)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    else {
        return BodyMedia::Json;
    };
    let media = v.split(';').next().unwrap_or_default().trim();
    let media = media.to_ascii_lowercase();
    if media == "application/json" || media.ends_with("+json") {
        BodyMedia::Json
    } else if media == "application/x-www-form-urlencoded" {
        BodyMedia::Form
    } else {
        BodyMedia::Other
    }
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

/// The fixed text of a URL template before its first tag; `None` when it has no tag (no data),
/// or nothing but spaces before it (the whole URL is data).
fn fixed_before_data(template: &str) -> Option<&str> {
    let tag = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|open| template.find(open))
        .min()?;
    let fixed = &template[..tag];
    (!fixed.trim().is_empty()).then_some(fixed)
}

/// What is wrong with the host of a webhook's URL `template`, if anything: a user's data must
/// not choose where the call, its headers (an API key) and body with it, goes (a trait
/// `attacker.example/#` filling part of a host, `@attacker.example` after it, a label
/// lengthened into another domain). So data may come only after the host is written out whole,
/// scheme, host and port, up to the `/`, `?` or `#` that ends it; or the whole URL is data
/// (`{{ profile.webhook_url }}`), the journey's explicit choice. `None` for a URL with no data.
pub fn template_host_problem(template: &str) -> Option<String> {
    fixed_host_problem(fixed_before_data(template)?)
}

/// [`template_host_problem`] of the text a URL template has before its first tag.
fn fixed_host_problem(fixed: &str) -> Option<String> {
    let Some(scheme_end) = fixed.find("://") else {
        return Some(format!(
            "has data in its scheme: write `https://` and the host out before any `{{{{ }}}}`, or give the whole URL from data: {WEBHOOK_URL_ADVICE}"
        ));
    };
    if !fixed[scheme_end + 3..].contains(['/', '?', '#']) {
        return Some(format!(
            "has data in its host: a user's data must not choose where the call and its headers go, so write the host out whole before any `{{{{ }}}}` and put data in the path or the query (to pick among hosts, branch to steps with URLs written out, or give the whole URL from data, `{{{{ profile.webhook_url }}}}`): {WEBHOOK_URL_ADVICE}"
        ));
    }
    None
}

/// Why a call that carries a secret needs its URL's host written out.
pub const SECRET_HOST_ADVICE: &str = "a call that carries a secret goes only to a host the journey writes out: write `https://` and the host before any `{{ }}` (a URL given whole by data, `{{ profile.webhook_url }}`, would let a user's data choose where the secret goes)";

/// Whether the URL `template` writes its scheme and host out whole before any tag (or has no
/// tag): data then cannot choose the host, and a call may carry a secret.
pub fn host_written_out(template: &str) -> bool {
    let tag = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|open| template.find(open))
        .min();
    match tag {
        None => true,
        Some(at) => {
            let fixed = &template[..at];
            !fixed.trim().is_empty() && fixed_host_problem(fixed).is_none()
        }
    }
}

/// What is wrong with `url`, rendered for a user from the journey's URL `template`, as to the
/// host it goes to, if anything: the host the template writes out (see
/// [`template_host_problem`], which `waymark validate` applies), or, for a template published
/// before that check, any data in the host at all.
pub fn host_problem(template: &str, url: &str) -> Option<String> {
    let fixed = fixed_before_data(template)?;
    if let Some(why) = fixed_host_problem(fixed) {
        return Some(why);
    }
    let after = fixed.find("://").map(|i| &fixed[i + 3..])?;
    let host = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    let rendered = url.parse::<http::Uri>().ok()?;
    let authority = rendered.authority().map(|a| a.as_str()).unwrap_or_default();
    (!authority.eq_ignore_ascii_case(host)).then(|| {
        format!("goes to another host than the journey's `{host}`: data in the URL must not change its host")
    })
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
    fn data_in_a_webhooks_url_comes_after_its_host() {
        // Data in the host, in any form, is refused: the template's, whatever the user sends.
        for template in [
            "https://{{ profile.region | urlencode }}.api.crm.example/v1/orders",
            "https://{{ profile.sub }}.{{ profile.region }}.api.crm.example/v1/orders",
            "https://hooks.example{{ event.p }}",
            "https://api.acme.com{{ profile.prefix }}/orders",
            "http://10.0.0.1{{ event.p }}/cb",
            "https://{% if profile.eu %}eu.{% endif %}api.acme.com/v1",
            "https://{{ profile.crm_host }}/v1/orders",
            "https://x.example:{{ profile.port }}/h",
            "https://svc:{{ pw | urlencode }}@api.example.com/x",
        ] {
            let why = template_host_problem(template).expect(template);
            assert!(why.starts_with("has data in its host"), "{template}: {why}");
            assert!(host_problem(template, "https://anything.example/").is_some());
        }
        let scheme = "http{{ profile.tls }}://api.crm.example/v1/orders";
        assert!(template_host_problem(scheme).is_some_and(|w| w.contains("scheme")));
        // After the host: the path, the query; the rendered URL goes to the host written.
        let path = "https://Hooks.Example/{{ event.p }}?u={{ user_id | urlencode }}";
        assert_eq!(template_host_problem(path), None);
        assert_eq!(host_problem(path, "https://hooks.example/a/b?u=1"), None);
        assert!(host_problem(path, "https://evil.example/x").is_some());
        let port = "https://x.example:8443/h?u={{ user_id }}";
        assert_eq!(host_problem(port, "https://x.example:8443/h?u=1"), None);
        // The whole URL from data, or no data at all: the journey's choice, checked elsewhere.
        assert_eq!(template_host_problem("{{ profile.hook }}"), None);
        assert_eq!(
            host_problem("{{ profile.hook }}", "https://x.example/"),
            None
        );
        assert_eq!(
            host_problem(
                "{% if a %}https://a.example{% else %}https://b.example{% endif %}/x",
                "https://b.example/x"
            ),
            None
        );
        assert_eq!(
            host_problem("https://a.example/", "https://b.example/"),
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
