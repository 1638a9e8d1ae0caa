//! A function's IAM policy as template.yaml gives its role, and the check the probes make of
//! every request a function sends: moto grants everything, so without this a call the role
//! does not allow (a queue it may not send to, an action left out) passes every test and fails
//! only in AWS.

use serde_json::Value;

use super::template::Bindings;

/// One `Allow` statement: its action patterns and the resources it names, resolved (`None` for
/// a resource the tests create no counterpart of, such as an SES identity).
#[derive(Debug, Clone)]
struct Statement {
    actions: Vec<String>,
    resources: Vec<Option<String>>,
}

/// What one function's role allows.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    statements: Vec<Statement>,
    /// Queue URLs and table names as the tests made them, with their ARNs.
    arns: Vec<(String, String)>,
}

/// A request as IAM authorizes it: the action, and the resource when the tests can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub action: String,
    pub resource: Option<String>,
}

impl Policy {
    /// The policy of `function`'s role (`Properties.Role: !GetAtt <Role>.Arn`): the statements
    /// of its inline policies, `!If` branches chosen as the stack's parameters choose them.
    pub fn of(template: &Value, bindings: &Bindings, function: &str) -> Policy {
        let role = template
            .pointer(&format!("/Resources/{function}/Properties/Role/Fn::GetAtt"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_suffix(".Arn"))
            .unwrap_or_else(|| panic!("{function} has no `Role: !GetAtt <Role>.Arn`"));
        let policies = template
            .pointer(&format!("/Resources/{role}/Properties/Policies"))
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{role} has no inline Policies"));
        let mut statements = Vec::new();
        for p in policies {
            let listed = p.pointer("/PolicyDocument/Statement");
            for s in bindings
                .chosen(template, listed)
                .into_iter()
                .flat_map(items)
            {
                let Some(s) = bindings.chosen(template, Some(s)) else {
                    continue;
                };
                if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
                    continue;
                }
                let actions = strings(s.get("Action"));
                let resources = s
                    .get("Resource")
                    .map(|r| match r {
                        Value::Array(rs) => {
                            rs.iter().map(|r| bindings.resolve(template, r)).collect()
                        }
                        r => vec![bindings.resolve(template, r)],
                    })
                    .unwrap_or_default();
                statements.push(Statement { actions, resources });
            }
        }
        let arns = bindings
            .attrs
            .iter()
            .filter_map(|(attr, arn)| {
                let logical = attr.strip_suffix(".Arn")?;
                Some((bindings.refs.get(logical)?.clone(), arn.clone()))
            })
            .collect();
        Policy { statements, arns }
    }

    /// Whether some statement allows `call`: its action, and its resource when it has one the
    /// tests can name (an unnamed one is judged by the action alone).
    pub fn allows(&self, call: &Call) -> bool {
        self.statements.iter().any(|s| {
            s.actions.iter().any(|a| glob(a, &call.action))
                && match &call.resource {
                    None => true,
                    Some(r) => s
                        .resources
                        .iter()
                        .any(|p| p.as_deref().is_some_and(|p| glob(p, r))),
                }
        })
    }

    /// The ARN of a queue URL or table name the tests made.
    fn arn(&self, name: &str) -> Option<String> {
        self.arns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, arn)| arn.clone())
    }

    /// The calls IAM authorizes for one request of `service`'s `operation` with `body`.
    pub fn calls(&self, service: &str, operation: &str, body: &[u8]) -> Vec<Call> {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let on = |action: String, resource: Option<String>| Call { action, resource };
        match service {
            "DynamoDB" => {
                let table = |t: &Value, index: Option<&Value>| {
                    let arn = t.as_str().and_then(|t| self.arn(t))?;
                    Some(match index.and_then(Value::as_str) {
                        Some(i) => format!("{arn}/index/{i}"),
                        None => arn,
                    })
                };
                match operation {
                    // Authorized item by item, as the underlying writes (DynamoDB's IAM guide).
                    "TransactWriteItems" => items(&json["TransactItems"])
                        .flat_map(|item| item.as_object().into_iter().flatten())
                        .map(|(kind, x)| {
                            let action = match kind.as_str() {
                                "Put" => "PutItem",
                                "Update" => "UpdateItem",
                                "Delete" => "DeleteItem",
                                _ => "ConditionCheckItem",
                            };
                            on(format!("dynamodb:{action}"), table(&x["TableName"], None))
                        })
                        .collect(),
                    "BatchGetItem" | "BatchWriteItem" => json["RequestItems"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(t, _)| {
                            on(
                                format!("dynamodb:{operation}"),
                                table(&Value::String(t.clone()), None),
                            )
                        })
                        .collect(),
                    _ => vec![on(
                        format!("dynamodb:{operation}"),
                        table(&json["TableName"], json.get("IndexName")),
                    )],
                }
            }
            "SQS" => {
                // A batch is authorized as its single form.
                let action = operation.strip_suffix("Batch").unwrap_or(operation);
                let queue = json["QueueUrl"].as_str().and_then(|q| self.arn(q));
                vec![on(format!("sqs:{action}"), queue)]
            }
            "SESv2" => vec![on(format!("ses:{operation}"), None)],
            // Authorized on the endpoint or application named (an SMS, to a phone number,
            // names none).
            "SNS" => {
                let params = super::form_params(body);
                let resource = ["EndpointArn", "PlatformApplicationArn", "TargetArn"]
                    .iter()
                    .find_map(|k| params.get(*k).cloned());
                vec![on(format!("sns:{operation}"), resource)]
            }
            other => vec![on(
                format!("{}:{operation}", other.to_ascii_lowercase()),
                None,
            )],
        }
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM's wildcards: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}
