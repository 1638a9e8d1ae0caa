//! Subscription topics (Customer.io's topics, Braze's subscription groups): what `waymark.yaml`
//! declares, and whether a user's stated choices let a topic's message reach her. Never I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::Profile;

/// Where a user stands with a topic before she says anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicDefault {
    /// Her messages go until she unsubscribes (a newsletter, product news).
    #[default]
    Subscribed,
    /// Nothing goes until she says yes (`subscriptions: {topics: {t: true}}`): consent asked
    /// for explicitly, as some countries' rules require of marketing.
    OptIn,
}

/// One declared topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// What people read: on the unsubscribe page, in the timeline's detail.
    pub name: String,
    /// `subscribed` (the default) or `opt_in`.
    #[serde(default)]
    pub default: TopicDefault,
}

/// The topics a deployment knows, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topics(pub BTreeMap<String, Topic>);

/// No topics: a deployment or a simulation that declares none.
pub static NONE: Topics = Topics(BTreeMap::new());

/// What the parameter of a deployment's topics must hold, for its error.
#[derive(Debug, thiserror::Error)]
#[error("must be a JSON object of topic id to {{\"name\": \"…\", \"default\": \"subscribed\" or \"opt_in\"}}: {0}")]
pub struct TopicsParameterError(String);

impl Topics {
    pub fn get(&self, id: &str) -> Option<&Topic> {
        self.0.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The topics of a deployment's parameter (`SUBSCRIPTION_TOPICS`), written as
    /// [`Topics::parameter`] writes them; empty text is none.
    pub fn parse_parameter(text: &str) -> Result<Topics, TopicsParameterError> {
        if text.trim().is_empty() {
            return Ok(Topics::default());
        }
        let topics: Topics =
            serde_json::from_str(text).map_err(|e| TopicsParameterError(e.to_string()))?;
        if let Some(bad) = topics.0.keys().find(|id| !valid_id(id)) {
            return Err(TopicsParameterError(format!(
                "`{bad}` is not a topic id (1–64 lowercase letters, digits, `_` or `-`)"
            )));
        }
        Ok(topics)
    }

    /// These topics as the deployment's parameter holds them (compact JSON).
    pub fn parameter(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The name people read for topic `id`: its declared name, else the id itself.
    pub fn display_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.get(id).map_or(id, |t| t.name.as_str())
    }
}

/// Whether `id` may name a topic: as a journey's id, 1–64 lowercase letters, digits, `_`, `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Why a topic's message does not reach a user: the skip's `reason` and its `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSkip {
    /// `topic_opted_out` (she said no) or `topic_not_opted_in` (an `opt_in` topic she never
    /// said yes to).
    pub reason: &'static str,
    pub detail: String,
}

/// The user's own choice for topic `id`, if she stated one (`subscriptions.topics.{id}`).
pub fn choice(profile: &Profile, id: &str) -> Option<bool> {
    profile
        .traits
        .get("subscriptions")
        .and_then(|s| s.get("topics"))
        .and_then(|t| t.get(id))
        .and_then(Value::as_bool)
}

/// What a send knows of its journey's topics: the running deployment's declarations, the one
/// the journey's version was published with, and how to take a topic neither declares.
#[derive(Debug, Clone, Copy)]
pub struct Declared<'a> {
    /// The running configuration's (`waymark.yaml`'s `topics`, a deployment's
    /// `SubscriptionTopics`): it wins, so a changed declaration applies to every version.
    pub running: &'a Topics,
    /// The declaration of the journey's topic when its version was published
    /// ([`crate::catalog::Published::topic`]), for a topic the running configuration has lost
    /// (a `sam deploy` without the parameter, an edit dropping it).
    pub published: Option<&'a Topic>,
    /// A topic declared by neither: `opt_in` in a deployment (a message nobody may have
    /// consented to is held back), `subscribed` in a simulation or test given no settings.
    pub otherwise: TopicDefault,
}

impl Declared<'static> {
    /// Nothing declared, taken as `subscribed`: a simulation or a test with no settings.
    pub const NONE: Declared<'static> = Declared {
        running: &NONE,
        published: None,
        otherwise: TopicDefault::Subscribed,
    };
}

impl<'a> Declared<'a> {
    /// Topic `id`'s declaration: the running one, else the published one.
    pub fn get(&self, id: &str) -> Option<&'a Topic> {
        self.running.get(id).or(self.published)
    }
}

/// Whether a message of topic `id` reaches `profile`: `None` when it does, else why not. Her
/// own choice wins; without one, the topic's default, as the running configuration declares
/// it, else as it was declared when the journey was published, else `declared.otherwise`
/// (`opt_in` in a deployment; `subscribed` only in a simulation or test given no settings).
pub fn standing(profile: &Profile, declared: &Declared<'_>, id: &str) -> Option<TopicSkip> {
    let topic = declared.get(id);
    let named = match topic {
        Some(t) if t.name != id => format!("topic `{id}` ({})", t.name),
        _ => format!("topic `{id}`"),
    };
    match choice(profile, id) {
        Some(true) => None,
        Some(false) => Some(TopicSkip {
            reason: "topic_opted_out",
            detail: match profile.topic_changed_at(id) {
                Some(at) => format!(
                    "unsubscribed from {named}: `subscriptions.topics.{id}` is false, since {at}"
                ),
                None => format!("unsubscribed from {named}: `subscriptions.topics.{id}` is false"),
            },
        }),
        None => match topic.map_or(declared.otherwise, |t| t.default) {
            TopicDefault::Subscribed => None,
            TopicDefault::OptIn if topic.is_none() => Some(TopicSkip {
                reason: "topic_not_opted_in",
                detail: format!(
                    "{named} is declared neither by this deployment (the stack's SubscriptionTopics parameter) nor in the journey's published version, so it is taken as `opt_in`: it reaches only users who stated `subscriptions: {{topics: {{{id}: true}}}}`; declare it and publish the journey again"
                ),
            }),
            TopicDefault::OptIn => Some(TopicSkip {
                reason: "topic_not_opted_in",
                detail: format!(
                    "not opted in to {named}, which is `opt_in`: it reaches a user once an identify states `subscriptions: {{topics: {{{id}: true}}}}`"
                ),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::parse_parameter(
            r#"{"newsletter": {"name": "Newsletter"}, "offers": {"name": "Offers", "default": "opt_in"}}"#,
        )
        .expect("topics")
    }

    fn with(subs: Value) -> Profile {
        let mut p = Profile::new("u");
        p.traits.insert("subscriptions".into(), subs);
        p
    }

    fn running(topics: &Topics) -> Declared<'_> {
        Declared {
            running: topics,
            published: None,
            otherwise: TopicDefault::OptIn,
        }
    }

    #[test]
    fn her_choice_wins_else_the_default() {
        let t = topics();
        let t = running(&t);
        let none = Profile::new("u");
        assert_eq!(standing(&none, &t, "newsletter"), None);
        let skip = standing(&none, &t, "offers").expect("opt_in");
        assert_eq!(skip.reason, "topic_not_opted_in");
        assert!(skip.detail.contains("topic `offers` (Offers)"), "{skip:?}");
        let said = with(serde_json::json!({"topics": {"newsletter": false, "offers": true}}));
        assert_eq!(standing(&said, &t, "offers"), None);
        let skip = standing(&said, &t, "newsletter").expect("unsubscribed");
        assert_eq!(skip.reason, "topic_opted_out");
        assert_eq!(
            skip.detail,
            "unsubscribed from topic `newsletter` (Newsletter): `subscriptions.topics.newsletter` is false"
        );
    }

    /// A topic the running configuration lost (a deploy without the parameter) keeps the
    /// default it was published with: an `opt_in` topic never sends as if it were not.
    #[test]
    fn a_topic_the_running_config_lost_keeps_its_published_default() {
        let none = Profile::new("u");
        let offers = Topic {
            name: "Offers".into(),
            default: TopicDefault::OptIn,
        };
        let lost = Declared {
            running: &NONE,
            published: Some(&offers),
            otherwise: TopicDefault::Subscribed,
        };
        let skip = standing(&none, &lost, "offers").expect("still opt_in");
        assert_eq!(skip.reason, "topic_not_opted_in");
        assert!(skip.detail.contains("topic `offers` (Offers)"), "{skip:?}");
        let yes = with(serde_json::json!({"topics": {"offers": true}}));
        assert_eq!(standing(&yes, &lost, "offers"), None);
        // The running declaration wins over the published one: a changed default applies.
        let t = topics();
        let now_subscribed = Topic {
            name: "Offers".into(),
            default: TopicDefault::Subscribed,
        };
        let changed = Declared {
            published: Some(&now_subscribed),
            ..running(&t)
        };
        assert!(standing(&none, &changed, "offers").is_some());
    }

    /// Declared nowhere: a deployment holds it back unless she said yes; a simulation with no
    /// settings sends it. Her no is honoured either way.
    #[test]
    fn a_topic_declared_nowhere_fails_closed_in_a_deployment() {
        let none = Profile::new("u");
        let skip = standing(&none, &running(&NONE), "news").expect("fails closed");
        assert_eq!(skip.reason, "topic_not_opted_in");
        assert!(skip.detail.contains("is declared neither"), "{skip:?}");
        let yes = with(serde_json::json!({"topics": {"news": true}}));
        assert_eq!(standing(&yes, &running(&NONE), "news"), None);
        assert_eq!(standing(&none, &Declared::NONE, "news"), None);
        let no = with(serde_json::json!({"topics": {"news": false}}));
        assert_eq!(
            standing(&no, &Declared::NONE, "news").map(|s| s.detail),
            Some("unsubscribed from topic `news`: `subscriptions.topics.news` is false".into())
        );
    }

    #[test]
    fn the_parameter_reads_back_and_explains_mistakes() {
        let t = topics();
        assert_eq!(Topics::parse_parameter(&t.parameter()).expect("again"), t);
        assert!(Topics::parse_parameter("").expect("none").is_empty());
        for bad in [
            "newsletter",
            r#"{"News": {"name": "N"}}"#,
            r#"{"n": {"name": "N", "default": "yes"}}"#,
            r#"{"n": {"title": "N"}}"#,
        ] {
            assert!(Topics::parse_parameter(bad).is_err(), "{bad}");
        }
    }
}
