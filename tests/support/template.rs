//! template.yaml as the tests read it: YAML (with CloudFormation's short tags) as JSON, and a
//! small resolver for the intrinsics the tests need (`Ref`, `Fn::GetAtt`, `Fn::If`, `Fn::Sub`,
//! `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::Equals`, `Fn::Not`), so the resources and the
//! functions' environment come from the template itself and cannot drift from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{json, Map, Value};

/// The repository's template.yaml, as JSON (`!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is
/// `{"Fn::GetAtt": "A.B"}`, any other `!Tag v` is `{"Fn::Tag": v}`).
pub fn load() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let docs = Yaml::load_from_str(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"));
    let doc = docs.first().expect("template.yaml has a document");
    to_json(doc)
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => json!(b),
        Scalar::Integer(i) => json!(i),
        Scalar::FloatingPoint(f) => json!(f.into_inner()),
        Scalar::String(s) => json!(s.as_ref()),
    }
}

fn to_json(y: &Yaml<'_>) -> Value {
    match y {
        Yaml::Value(s) => scalar(s),
        Yaml::Representation(s, _, _) => json!(s.as_ref()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Yaml::Tagged(tag, node) => {
            let inner = to_json(node);
            match tag.suffix.as_str() {
                "Ref" => json!({ "Ref": inner }),
                name => json!({ format!("Fn::{name}"): inner }),
            }
        }
        Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

/// Values for `Ref` and `Fn::GetAtt`: parameters and created resources by logical id.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    /// `Ref` of a parameter or a resource (a table name, a queue URL, …).
    pub refs: BTreeMap<String, String>,
    /// `Fn::GetAtt` by `Logical.Attribute`.
    pub attrs: BTreeMap<String, String>,
}

impl Bindings {
    pub fn pseudo() -> Self {
        let mut b = Bindings::default();
        for (k, v) in [
            ("AWS::Region", "us-east-1"),
            ("AWS::AccountId", "123456789012"),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
        ] {
            b.refs.insert(k.into(), v.into());
        }
        b
    }

    fn get_ref(&self, name: &str) -> Option<String> {
        self.refs.get(name).cloned()
    }

    /// Resolves an intrinsic-bearing value to a string; `None` when something it names is not
    /// bound (or it is `AWS::NoValue`).
    pub fn resolve(&self, template: &Value, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next()?;
                match k.as_str() {
                    "Ref" => self.get_ref(arg.as_str()?),
                    "Fn::GetAtt" => {
                        let name = match arg {
                            Value::String(s) => s.clone(),
                            Value::Array(a) => {
                                format!("{}.{}", a.first()?.as_str()?, a.get(1)?.as_str()?)
                            }
                            _ => return None,
                        };
                        self.attrs.get(&name).cloned()
                    }
                    "Fn::If" => {
                        let a = arg.as_array()?;
                        let holds = self.condition(template, a.first()?.as_str()?)?;
                        self.resolve(template, a.get(if holds { 1 } else { 2 })?)
                    }
                    "Fn::Sub" => {
                        let mut s = arg.as_str()?.to_string();
                        while let Some(start) = s.find("${") {
                            let end = start + s[start..].find('}')?;
                            let name = &s[start + 2..end];
                            let value = self
                                .get_ref(name)
                                .or_else(|| self.attrs.get(name).cloned())?;
                            s.replace_range(start..=end, &value);
                        }
                        Some(s)
                    }
                    "Fn::Join" => {
                        let a = arg.as_array()?;
                        let parts = self.resolve_list(template, a.get(1)?)?;
                        Some(parts.join(a.first()?.as_str()?))
                    }
                    "Fn::Select" => {
                        let a = arg.as_array()?;
                        let i = match a.first()? {
                            Value::String(i) => i.parse().ok()?,
                            i => usize::try_from(i.as_u64()?).ok()?,
                        };
                        self.resolve_list(template, a.get(1)?)?.into_iter().nth(i)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A list value (`Fn::Split`'s, or a list of values), resolved item by item.
    fn resolve_list(&self, template: &Value, v: &Value) -> Option<Vec<String>> {
        if let Some(a) = v.get("Fn::Split").and_then(Value::as_array) {
            let on = a.first()?.as_str()?;
            let text = self.resolve(template, a.get(1)?)?;
            return Some(text.split(on).map(str::to_string).collect());
        }
        v.as_array()?
            .iter()
            .map(|item| self.resolve(template, item))
            .collect()
    }

    /// `v` with its `!If`s decided: the branch the stack's parameters choose, `None` for
    /// `AWS::NoValue` (or nothing at all).
    pub fn chosen<'a>(&self, template: &Value, v: Option<&'a Value>) -> Option<&'a Value> {
        let v = v?;
        if let Some(arms) = v.get("Fn::If").and_then(Value::as_array) {
            let holds = self.condition(template, arms.first()?.as_str()?)?;
            return self.chosen(template, arms.get(if holds { 1 } else { 2 }));
        }
        if v.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
            return None;
        }
        Some(v)
    }

    fn condition(&self, template: &Value, name: &str) -> Option<bool> {
        self.truth(template, template.get("Conditions")?.get(name)?)
    }

    fn truth(&self, template: &Value, v: &Value) -> Option<bool> {
        let m = v.as_object()?;
        let (k, arg) = m.iter().next()?;
        match k.as_str() {
            "Fn::Not" => Some(!self.truth(template, arg.as_array()?.first()?)?),
            "Fn::Equals" => {
                let a = arg.as_array()?;
                Some(self.resolve(template, a.first()?)? == self.resolve(template, a.get(1)?)?)
            }
            "Condition" => self.condition(template, arg.as_str()?),
            _ => None,
        }
    }

    /// A function's environment: the template's `Globals` merged with its own, resolved.
    pub fn environment(&self, template: &Value, function: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let global = template.pointer("/Globals/Function/Environment/Variables");
        let own = template.pointer(&format!(
            "/Resources/{function}/Properties/Environment/Variables"
        ));
        for vars in [global, own].into_iter().flatten() {
            for (k, v) in vars.as_object().into_iter().flatten() {
                match self.resolve(template, v) {
                    Some(s) => {
                        out.insert(k.clone(), s);
                    }
                    None => panic!("{function}: cannot resolve {k} = {v}"),
                }
            }
        }
        out
    }
}

/// A resource's `Properties`.
pub fn properties<'a>(template: &'a Value, logical: &str) -> &'a Value {
    template
        .pointer(&format!("/Resources/{logical}/Properties"))
        .unwrap_or_else(|| panic!("template.yaml has no resource {logical}"))
}
