//! Least privilege in template.yaml: no IAM statement may allow `Resource: '*'`, except the
//! documented statements of the SMS calls IAM knows no resource for (`sns:Publish` to a phone
//! number, `sns:ListPhoneNumbersOptedOut`), one action each. Walks every `Statement` list in the
//! template (role policies, resource policies, statements under `!If`), so a new role or policy
//! is checked without touching this test. (That each function's role allows what it calls is
//! checked by every test over moto: see `support::policy`.)

use saphyr::{LoadableYamlNode, Scalar, Yaml};

/// One IAM statement found in the template.
#[derive(Debug)]
struct Statement {
    /// Where: the keys leading to its `Statement` list, and its index there.
    path: String,
    sid: Option<String>,
    effect: Option<String>,
    actions: Vec<String>,
    resources: Vec<String>,
    not_resource: bool,
}

fn text(node: &Yaml) -> Option<String> {
    match node {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Representation(s, _, _) => Some(s.to_string()),
        // `!Sub '*'` and friends still mean what they say.
        Yaml::Tagged(_, inner) => text(inner),
        _ => None,
    }
}

fn get<'a>(map: &'a Yaml<'a>, key: &str) -> Option<&'a Yaml<'a>> {
    match map {
        Yaml::Mapping(m) => m
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// A string or a list of strings (intrinsic functions are shown by their tag, e.g. `!GetAtt`).
fn strings(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Sequence(items) => items.iter().flat_map(strings).collect(),
        Yaml::Tagged(tag, inner) => match text(inner) {
            Some(s) if s == "*" => vec![s],
            _ => vec![format!("{}{}", tag.handle, tag.suffix)],
        },
        other => text(other).into_iter().collect(),
    }
}

fn is_if(node: &Yaml) -> bool {
    matches!(node, Yaml::Tagged(tag, _) if tag.suffix == "If" || tag.suffix == "Fn::If")
}

/// The statements of a `Statement` value: a list, a single statement, and either branch of an
/// `!If [condition, then, else]`.
fn statements_in(node: &Yaml, path: &str, out: &mut Vec<Statement>) {
    match node {
        Yaml::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                statements_in(item, &format!("{path}[{i}]"), out);
            }
        }
        Yaml::Tagged(_, inner) if is_if(node) => {
            if let Yaml::Sequence(parts) = &**inner {
                for (i, branch) in parts.iter().enumerate().skip(1) {
                    statements_in(branch, &format!("{path}.If[{i}]"), out);
                }
            }
        }
        Yaml::Mapping(_) if get(node, "Effect").is_some() => out.push(Statement {
            path: path.to_string(),
            sid: get(node, "Sid").and_then(text),
            effect: get(node, "Effect").and_then(text),
            actions: get(node, "Action").map(strings).unwrap_or_default(),
            resources: get(node, "Resource").map(strings).unwrap_or_default(),
            not_resource: get(node, "NotResource").is_some(),
        }),
        _ => {}
    }
}

/// Every statement anywhere in the template.
fn walk(node: &Yaml, path: &str, out: &mut Vec<Statement>) {
    match node {
        Yaml::Mapping(m) => {
            for (k, v) in m.iter() {
                let key = text(k).unwrap_or_default();
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key == "Statement" {
                    statements_in(v, &here, out);
                } else {
                    walk(v, &here, out);
                }
            }
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), out);
            }
        }
        Yaml::Tagged(_, inner) => walk(inner, path, out),
        _ => {}
    }
}

fn template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn statements(source: &str) -> Vec<Statement> {
    let docs = Yaml::load_from_str(source).expect("template.yaml is YAML");
    let mut out = Vec::new();
    for doc in &docs {
        walk(doc, "", &mut out);
    }
    out
}

/// The exceptions, calls IAM knows no resource for: publishing SMS to a phone number, and
/// listing the account's SMS opt-outs.
const ACCOUNT_LEVEL: [&str; 2] = ["sns:Publish", "sns:ListPhoneNumbersOptedOut"];

fn is_account_level(s: &Statement) -> bool {
    s.effect.as_deref() == Some("Allow")
        && s.actions.len() == 1
        && ACCOUNT_LEVEL.contains(&s.actions[0].as_str())
}

#[test]
fn no_statement_allows_every_resource_but_the_account_level_sms_calls() {
    let source = template();
    let all = statements(&source);
    assert!(
        all.len() >= 10,
        "found only {} statements: the walk no longer understands template.yaml",
        all.len()
    );
    let wildcard: Vec<&Statement> = all
        .iter()
        .filter(|s| s.not_resource || s.resources.iter().any(|r| r == "*"))
        .collect();
    let offending: Vec<String> = wildcard
        .iter()
        .filter(|s| s.not_resource || !is_account_level(s))
        .map(|s| {
            format!(
                "{} (Sid {:?}): Action {:?} on Resource {:?}{}",
                s.path,
                s.sid,
                s.actions,
                s.resources,
                if s.not_resource { " (NotResource)" } else { "" }
            )
        })
        .collect();
    assert!(
        offending.is_empty(),
        "statements allowing every resource: name the resources (ARNs, !GetAtt, !Sub) instead:\n{}",
        offending.join("\n")
    );
    assert!(
        wildcard.len() <= ACCOUNT_LEVEL.len(),
        "more `Resource: '*'` statements than account-level calls: {wildcard:#?}"
    );
}

#[test]
fn each_account_level_exception_is_documented_where_it_stands() {
    let source = template();
    let all = statements(&source);
    for s in all.iter().filter(|s| s.resources.iter().any(|r| r == "*")) {
        let sid = s
            .sid
            .as_deref()
            .unwrap_or_else(|| panic!("{}: give the exception a Sid", s.path));
        let lines: Vec<&str> = source.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(&format!("Sid: {sid}")))
            .unwrap_or_else(|| panic!("Sid {sid} not found in the text"));
        let comment: String = lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .map(|l| l.trim_start().trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            comment.contains("SMS") && comment.contains("ARN"),
            "the `Resource: '*'` statement {sid} needs a comment above it saying why (an SMS call with no ARN to name), found {comment:?}"
        );
    }
}

#[test]
fn the_walk_catches_wildcards_in_lists_and_under_if() {
    let yaml = r#"
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyDocument:
            Statement:
              - Effect: Allow
                Action: sns:Publish
                Resource: '*'
              - !If
                - SomeCondition
                - Effect: Allow
                  Action: [s3:GetObject]
                  Resource: ['arn:aws:s3:::bucket/*', '*']
                - !Ref AWS::NoValue
              - Effect: Allow
                Action: [sns:Publish, sns:CreateTopic]
                Resource: !Sub '*'
              - Effect: Allow
                Action: sqs:SendMessage
                NotResource: arn:aws:sqs:us-east-1:1:q
  Topic:
    Type: AWS::SNS::TopicPolicy
    Properties:
      PolicyDocument:
        Statement:
          Effect: Allow
          Action: sns:Publish
          Resource: !Ref Topic
"#;
    let all = statements(yaml);
    assert_eq!(all.len(), 5, "{all:#?}");
    let flagged: Vec<&str> = all
        .iter()
        .filter(|s| {
            s.not_resource || (s.resources.iter().any(|r| r == "*") && !is_account_level(s))
        })
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(flagged.len(), 3, "{flagged:?}");
}
