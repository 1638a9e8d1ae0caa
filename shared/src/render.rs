//! Journey diagrams: a journey as a Mermaid flowchart, for `waymark render` and docs. Pure text in,
//! text out; never validates (an unknown `goto` is drawn as a dangling node, not an error).

use std::fmt::Write as _;

use crate::journey::{
    Action, Journey, JourneyStatus, PastThen, Reentry, Send, Step, Template, TriggerKind,
};

/// A Mermaid `flowchart TD` of `j`: the trigger, one node per step labelled with its action, an
/// edge for every way on (`next`, `goto`, `on_event`, `on_timeout`, `else`, split paths, a
/// `wait_until`'s `if_past`), and the
/// exit and goal events as note nodes.
pub fn mermaid(j: &Journey) -> String {
    let mut d = Diagram::new(j);
    d.line("flowchart TD");
    // A comment line is read for directives (`%%{init: ...}%%`) all the same: no braces in it.
    let comment = |s: &str| one_line(s).replace('{', "(").replace('}', ")");
    d.line(&format!("    %% {}: {}", comment(&j.id), comment(&j.name)));
    d.line(&format!("    trigger([\"{}\"])", text(&trigger_label(j))));
    d.line(&format!(
        "    rules>\"{}\"]",
        rules_label(j)
            .iter()
            .map(|l| text(l))
            .collect::<Vec<_>>()
            .join("<br/>")
    ));
    d.line("    trigger -.- rules");
    if !j.exit_when.is_empty() {
        let events: Vec<String> = j
            .exit_when
            .iter()
            .map(|m| with_condition(&listened_text(m.listened()), m.condition.as_ref()))
            .collect();
        d.line(&format!(
            "    exit_when>\"exit when: {}\"]",
            text(&events.join(" or "))
        ));
        d.line("    trigger -.- exit_when");
    }
    if let Some(g) = &j.goal {
        let goal = format!(
            "goal: {} within {}",
            with_condition(&listened_text(g.listened()), g.condition.as_ref()),
            g.within
        );
        d.line(&format!("    goal>\"{}\"]", text(&goal)));
        d.line("    trigger -.- goal");
    }
    for (i, step) in j.steps.iter().enumerate() {
        let shape = match step.action() {
            Action::Exit => ("([", "])"),
            Action::Branch(_) | Action::Split(_) => ("{", "}"),
            Action::Wait(_) | Action::WaitUntil(_) | Action::WaitFor(_) => ("[/", "/]"),
            Action::Send(_) | Action::Update(_) => ("[", "]"),
        };
        d.line(&format!(
            "    s{i}{}\"{}<br/>{}\"{}",
            shape.0,
            text(&step.id),
            text(&action_label(step)),
            shape.1
        ));
    }
    match j.first() {
        Some(first) => {
            let to = d.node(Some(first));
            d.edge("trigger", &to, None);
        }
        None => {
            let to = d.node(None);
            d.edge("trigger", &to, None);
        }
    }
    for (i, step) in j.steps.iter().enumerate() {
        let from = format!("s{i}");
        let next = j.next_of(&step.id);
        match step.action() {
            Action::Exit => {}
            Action::Wait(_) | Action::Send(_) | Action::Update(_) => {
                let to = d.node(next);
                d.edge(&from, &to, None);
            }
            Action::WaitUntil(w) => {
                let to = d.node(next);
                d.edge(&from, &to, None);
                // A date already past that does not go on: its own way out.
                let past = w.if_past.as_ref().filter(|p| p.then != PastThen::GoOn);
                if let Some(p) = past.filter(|_| w.date.is_some()) {
                    let label = match p.by_more_than {
                        Some(by) => format!("past by more than {by}"),
                        None => "date past".to_string(),
                    };
                    match p.goto() {
                        Some(step) => {
                            let to = d.node(Some(step));
                            d.edge(&from, &to, Some(&label));
                        }
                        None => {
                            d.exited = true;
                            d.edge(&from, "exited", Some(&label));
                        }
                    }
                }
            }
            Action::WaitFor(w) => {
                // One edge per event it waits for; with several, each says its `where`.
                for way in w.ways() {
                    let to = d.node(way.goto.or(next));
                    let label = if w.has_paths() {
                        with_condition(way.event, way.condition)
                    } else {
                        way.event.to_string()
                    };
                    d.edge(&from, &to, Some(&label));
                }
                let on_timeout = d.node(w.on_timeout.as_deref().or(next));
                d.edge(&from, &on_timeout, Some(&format!("timeout {}", w.timeout)));
            }
            Action::Branch(b) => {
                for case in &b.cases {
                    let to = d.node(Some(&case.goto));
                    d.edge(&from, &to, Some(&condition_text(&case.when)));
                }
                let to = d.node(b.otherwise.as_deref().or(next));
                d.edge(&from, &to, Some("else"));
            }
            Action::Split(s) => {
                // An edge says the share of all the users who reach the split: the holdout's
                // share comes off the top, and the paths share the rest by weight.
                let rest = 100 - u32::from(s.holdout.unwrap_or(0).min(100));
                let weights: Vec<u32> = s.paths.iter().map(|p| p.weight).collect();
                for (p, share) in s.paths.iter().zip(shares(&weights, rest)) {
                    let name = p.name.as_deref().unwrap_or(&p.goto);
                    let to = d.node(Some(&p.goto));
                    d.edge(&from, &to, Some(&format!("{name} {share}%")));
                }
                if let Some(h) = s.holdout.filter(|h| *h > 0) {
                    d.holdout = true;
                    d.edge(&from, "holdout", Some(&format!("holdout {h}%")));
                }
            }
        }
    }
    d.finish()
}

struct Diagram<'a> {
    journey: &'a Journey,
    out: String,
    edges: Vec<String>,
    /// Whether an edge leads to the end node, the holdout node, or to steps that do not exist.
    end: bool,
    holdout: bool,
    /// Whether an edge leaves the journey (a `wait_until`'s `if_past: exit`).
    exited: bool,
    missing: Vec<String>,
}

impl<'a> Diagram<'a> {
    fn new(journey: &'a Journey) -> Self {
        Diagram {
            journey,
            out: String::new(),
            edges: Vec::new(),
            end: false,
            holdout: false,
            exited: false,
            missing: Vec::new(),
        }
    }

    fn line(&mut self, l: &str) {
        self.out.push_str(l);
        self.out.push('\n');
    }

    /// The node id for a step id (`None`: the journey ends).
    fn node(&mut self, step: Option<&str>) -> String {
        let Some(step) = step else {
            self.end = true;
            return "done".into();
        };
        if let Some(i) = self.journey.steps.iter().position(|s| s.id == step) {
            return format!("s{i}");
        }
        let i = match self.missing.iter().position(|m| m == step) {
            Some(i) => i,
            None => {
                self.missing.push(step.to_string());
                self.missing.len() - 1
            }
        };
        format!("missing{i}")
    }

    fn edge(&mut self, from: &str, to: &str, label: Option<&str>) {
        self.edges.push(match label {
            Some(l) => format!("    {from} -->|\"{}\"| {to}", text(l)),
            None => format!("    {from} --> {to}"),
        });
    }

    fn finish(mut self) -> String {
        if self.end {
            self.line("    done((end))");
        }
        if self.holdout {
            self.line("    holdout((holdout))");
        }
        if self.exited {
            self.line("    exited((exit))");
        }
        for (i, m) in self.missing.clone().iter().enumerate() {
            self.line(&format!("    missing{i}[\"{}: no such step\"]", text(m)));
        }
        let edges = std::mem::take(&mut self.edges);
        for e in edges {
            self.line(&e);
        }
        self.out
    }
}

fn trigger_label(j: &Journey) -> String {
    match j.trigger.kind() {
        Some(TriggerKind::Event { events, condition }) => {
            format!("on {}", with_condition(&events.describe(), condition))
        }
        Some(TriggerKind::TraitChanged { name, condition }) => {
            format!(
                "when {}",
                with_condition(&format!("{name} changes"), condition)
            )
        }
        Some(TriggerKind::Repeated(r)) => format!(
            "{} {} times within {}",
            with_condition(&r.event, r.condition.as_ref()),
            r.times,
            r.within
        ),
        Some(TriggerKind::Inactive(i)) => {
            let mut l = format!("inactive for {} (no {})", i.duration, i.events.join(", "));
            if let Some(c) = &i.condition {
                let _ = write!(l, " where {}", condition_text(c));
            }
            l
        }
        Some(TriggerKind::Schedule(s)) => {
            let mut l = format!("schedule {} {}", s.cron, s.timezone);
            if let Some(c) = &s.condition {
                let _ = write!(l, " where {}", condition_text(c));
            }
            l
        }
        None => "trigger (invalid)".into(),
    }
}

/// The rules around the steps, a line each: who may enter again (of a journey with an
/// `enrollment_key`, each value apart, as many at a time as she has values), and, where the
/// file says so, the status, quiet hours, the default time zone and whether the journey is
/// transactional.
fn rules_label(j: &Journey) -> Vec<String> {
    let mut lines = vec![match (&j.enrollment_key, &j.reentry) {
        (None, Reentry::Never) => "enters once per user".to_string(),
        (None, Reentry::AfterExit) => "enters again after exit".to_string(),
        (None, Reentry::After(d)) => {
            format!("enters again {d} after the last entry, once it ended")
        }
        (Some(k), Reentry::Never) => {
            format!("one enrollment per {k} at a time; enters once per value")
        }
        (Some(k), Reentry::AfterExit) => {
            format!("one enrollment per {k} at a time; a value enters again after exit")
        }
        (Some(k), Reentry::After(d)) => format!(
            "one enrollment per {k} at a time; a value enters again {d} after its last entry, once it ended"
        ),
    }];
    match j.status {
        JourneyStatus::Active => {}
        JourneyStatus::Closed => lines.push("closed: no new entries".into()),
        JourneyStatus::Stopped => lines.push("stopped: no entries, no sends".into()),
    }
    if let Some(q) = &j.quiet_hours {
        lines.push(format!(
            "quiet hours {}–{} in the user's time{}",
            String::from(q.start),
            String::from(q.end),
            if j.transactional {
                " (not applied: transactional)"
            } else {
                ""
            }
        ));
    }
    // The zone the steps read when the user has none: the journey's, else its schedule's.
    if let Some(z) = j.default_zone() {
        let from = if j.timezone.is_none() {
            " (the schedule's)"
        } else {
            ""
        };
        lines.push(format!("time zone {z}{from} when the user has none"));
    }
    if j.transactional {
        lines.push("transactional: no caps, no quiet hours".into());
    }
    lines
}

/// An exit's or a goal's event, or the trait whose change it watches (`plan changes`), as the
/// trigger's label says a `trait_changed` trigger.
fn listened_text(l: Option<crate::journey::Listened<'_>>) -> String {
    match l {
        Some(crate::journey::Listened::Event(name)) => name.to_string(),
        Some(crate::journey::Listened::TraitChanged(name)) => format!("{name} changes"),
        None => String::new(),
    }
}

fn with_condition(event: &str, condition: Option<&crate::condition::Condition>) -> String {
    match condition {
        Some(c) => format!("{event} where {}", condition_text(c)),
        None => event.to_string(),
    }
}

/// A condition as written in the file (conditions serialize to their source text).
fn condition_text(c: &crate::condition::Condition) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "condition".into(),
    }
}

fn action_label(step: &Step) -> String {
    match step.action() {
        Action::Wait(d) => format!("wait {d}"),
        Action::WaitUntil(w) => {
            if let Some(date) = w.date_text() {
                return format!("wait until {date}");
            }
            let mut l = "wait until".to_string();
            if let Some(t) = w.time {
                let _ = write!(l, " {}", String::from(t));
            }
            if !w.weekdays.is_empty() {
                let days: Vec<String> = w
                    .weekdays
                    .iter()
                    .map(|d| format!("{d:?}").to_lowercase())
                    .collect();
                let _ = write!(l, " on {}", days.join(", "));
            }
            l
        }
        Action::WaitFor(w) if w.has_paths() => {
            format!("wait for {} up to {}", w.events_label(), w.timeout)
        }
        Action::WaitFor(w) => format!(
            "wait for {} up to {}",
            with_condition(w.event.as_deref().unwrap_or_default(), w.condition.as_ref()),
            w.timeout
        ),
        Action::Branch(_) => "branch".into(),
        Action::Split(s) => {
            let weights: Vec<u32> = s.paths.iter().map(|p| p.weight).collect();
            let parts: Vec<String> = shares(&weights, 100).iter().map(u64::to_string).collect();
            let mut l = format!("split {}", parts.join("/"));
            if let Some(h) = s.holdout.filter(|h| *h > 0) {
                let _ = write!(l, ", holdout {h}%");
            }
            l
        }
        Action::Send(s) => send_label(s),
        Action::Update(u) => {
            let mut parts = Vec::new();
            if !u.set.is_empty() {
                parts.push(format!(
                    "set {}",
                    u.set.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if !u.unset.is_empty() {
                parts.push(format!("unset {}", u.unset.join(", ")));
            }
            format!("update: {}", parts.join("; "))
        }
        Action::Exit => "exit".into(),
    }
}

fn send_label(s: &Send) -> String {
    let mut l = match s.template() {
        Some(Template::Email(e)) => format!("email: {}", e.subject),
        Some(Template::Sms(t)) => format!("sms: {}", t.body),
        // A silent push shows nothing: its data is the message, named by its keys.
        Some(Template::Push(p)) if p.silent => {
            let keys: Vec<&str> = p.data.keys().map(String::as_str).collect();
            format!("push (silent, data: {})", keys.join(", "))
        }
        Some(Template::Push(p)) => format!(
            "push: {}",
            p.title.as_deref().or(p.body.as_deref()).unwrap_or_default()
        ),
        Some(Template::InApp(p)) => format!("in_app: {}", p.title),
        Some(Template::Webhook(w)) => format!("webhook: {} {}", w.method, w.url),
        None => "send".into(),
    };
    l = shorten(&l, 60);
    if let Some(f) = &s.fallback {
        let _ = write!(l, " (else {})", send_label(f));
    }
    if !s.locales.is_empty() {
        let keys: Vec<&str> = s.locales.keys().map(String::as_str).collect();
        let _ = write!(l, " [also {}]", keys.join(", "));
    }
    l
}

/// `weight` as a whole percentage of `total`, rounded.
/// `of` percent shared out by `weights`, in whole percents that add up to `of` (largest
/// remainders get the rounding), so a split's labels add up to 100.
fn shares(weights: &[u32], of: u32) -> Vec<u64> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<u64> = weights
        .iter()
        .map(|w| u64::from(*w) * u64::from(of))
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e / total).collect();
    let mut left = u64::from(of) - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties to the earlier path, so labels are stable.
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % total));
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    let s = one_line(s);
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for a quoted Mermaid label: entity codes for the characters Mermaid or its HTML
/// labels would read as syntax.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '|' => out.push_str("#124;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    // `%%{init: ...}%%` is a directive wherever it is written: no two `%` in a row.
    if out.contains("%%") {
        out = out.replace("%%", "#37;#37;");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CART: &str = r#"
id: cart
name: "Cart \"abandonment\""
trigger:
  event: cart_abandoned
exit_when:
  - event: order_cancelled
goal:
  event: order_completed
  within: 3d
steps:
  - id: wait_30m
    wait: 30m
  - id: push_reminder
    send:
      push:
        title: "You left <something>"
        body: "hi"
  - id: wait_order
    wait_for:
      event: order_completed
      timeout: 1d
      on_event: thanks
      on_timeout: pick
  - id: pick
    split:
      paths:
        - {weight: 1, goto: email_a, name: a}
        - {weight: 1, goto: email_b}
  - id: email_a
    send:
      email:
        subject: "A # 1"
        text: "x"
    next: done
  - id: email_b
    send:
      email:
        subject: "B"
        text: "x"
    next: done
  - id: thanks
    exit: true
  - id: done
    exit: true
"#;

    #[test]
    fn cart_journey_renders_every_step_and_edge() {
        let j = crate::dsl::parse("cart.yaml", CART).expect("valid journey");
        let m = mermaid(&j);
        let expected = r##"flowchart TD
    %% cart: Cart "abandonment"
    trigger(["on cart_abandoned"])
    rules>"enters once per user"]
    trigger -.- rules
    exit_when>"exit when: order_cancelled"]
    trigger -.- exit_when
    goal>"goal: order_completed within 3d"]
    trigger -.- goal
    s0[/"wait_30m<br/>wait 30m"/]
    s1["push_reminder<br/>push: You left #lt;something#gt;"]
    s2[/"wait_order<br/>wait for order_completed up to 1d"/]
    s3{"pick<br/>split 50/50"}
    s4["email_a<br/>email: A #35; 1"]
    s5["email_b<br/>email: B"]
    s6(["thanks<br/>exit"])
    s7(["done<br/>exit"])
    trigger --> s0
    s0 --> s1
    s1 --> s2
    s2 -->|"order_completed"| s6
    s2 -->|"timeout 1d"| s3
    s3 -->|"a 50%"| s4
    s3 -->|"email_b 50%"| s5
    s4 --> s7
    s5 --> s7
"##;
        assert_eq!(m, expected);
    }

    /// A `wait_for` with `paths` draws one edge per path, labelled with its event and `where`,
    /// and its box names the events.
    #[test]
    fn a_wait_for_with_paths_draws_an_edge_per_path() {
        let text = CART.replace(
            "      event: order_completed\n      timeout: 1d\n      on_event: thanks\n",
            "      paths:\n        - {event: order_completed, goto: thanks}\n        - {event: app_opened, where: \"event.screen == 'cart'\", goto: email_a}\n      timeout: 1d\n",
        );
        let j = crate::dsl::parse("cart.yaml", &text).expect("valid journey");
        let m = mermaid(&j);
        assert!(
            m.contains(r#"s2[/"wait_order<br/>wait for order_completed or app_opened up to 1d"/]"#),
            "{m}"
        );
        assert!(
            m.contains("    s2 -->|\"order_completed\"| s6\n    s2 -->|\"app_opened where event.screen == 'cart'\"| s4\n    s2 -->|\"timeout 1d\"| s3\n"),
            "{m}"
        );
    }

    /// A Mermaid directive written into a journey's name or a message's text stays text: its
    /// `%%` is entities in a label, and the comment line carries no braces.
    #[test]
    fn a_directive_in_a_name_or_a_message_does_not_reach_mermaid() {
        let j = crate::dsl::parse(
            "j.yaml",
            "id: j\nname: \"%%{init: {'theme': 'dark'}}%%\"\ntrigger: {event: e}\nsteps:\n  - id: s\n    send: {push: {title: \"%%{init: {'theme': 'dark'}}%% 50% off\", body: b}}\n",
        )
        .expect("valid");
        let m = mermaid(&j);
        assert!(!m.contains("%%{"), "{m}");
        assert!(m.contains("#37;#37;{init"), "{m}");
        assert!(m.contains("50% off"), "{m}");
    }

    #[test]
    fn a_trait_changed_trigger_names_the_trait_and_its_where() {
        let j = crate::dsl::parse(
            "j.yaml",
            "id: j\nname: J\ntrigger:\n  trait_changed: plan\n  where: \"event.to == 'pro'\"\nsteps:\n  - id: s\n    exit: true\n",
        )
        .expect("valid");
        let m = mermaid(&j);
        assert!(
            m.contains("    trigger([\"when plan changes where event.to == 'pro'\"])\n"),
            "{m}"
        );
    }

    /// A silent push (data only) is drawn as one, with its data's keys, not as `push:` with
    /// nothing after it.
    #[test]
    fn a_silent_push_is_drawn_as_silent() {
        let text = "id: j\nname: J\ntrigger: {event: e}\nsteps:\n  - id: sync\n    send: {push: {silent: true, data: {sync: orders, tab: home}}}\n";
        let m = mermaid(&crate::dsl::parse("j.yaml", text).expect("valid journey"));
        assert!(
            m.contains("    s0[\"sync<br/>push (silent, data: sync, tab)\"]\n"),
            "{m}"
        );
    }

    #[test]
    fn a_sends_languages_are_named_on_its_box() {
        let text = CART.replace(
            "  - id: wait_order\n",
            "      locales:\n        fr: {push: {title: \"Panier\", body: \".\"}}\n        pt-br: {push: {title: \"Carrinho\", body: \".\"}}\n  - id: wait_order\n",
        );
        let m = mermaid(&crate::dsl::parse("cart.yaml", &text).expect("valid journey"));
        assert!(
            m.contains(
                "s1[\"push_reminder<br/>push: You left #lt;something#gt; [also fr, pt-br]\"]"
            ),
            "{m}"
        );
    }

    #[test]
    fn the_entry_rule_status_quiet_hours_and_zone_are_noted_by_the_trigger() {
        let text = CART.replace(
            "exit_when:\n",
            "reentry: {after: 7d}\nstatus: closed\nquiet_hours: {start: \"21:00\", end: \"08:00\"}\ntimezone: Europe/Berlin\nexit_when:\n",
        );
        let m = mermaid(&crate::dsl::parse("cart.yaml", &text).expect("valid journey"));
        assert!(
            m.contains(
                "    rules>\"enters again 7d after the last entry, once it ended<br/>closed: no new entries<br/>quiet hours 21:00–08:00 in the user's time<br/>time zone Europe/Berlin when the user has none\"]\n    trigger -.- rules\n"
            ),
            "{m}"
        );
        let text = CART.replace(
            "exit_when:\n",
            "reentry: after_exit\ntransactional: true\nquiet_hours: {start: \"21:00\", end: \"08:00\"}\nexit_when:\n",
        );
        let m = mermaid(&crate::dsl::parse("cart.yaml", &text).expect("valid journey"));
        assert!(
            m.contains(
                "    rules>\"enters again after exit<br/>quiet hours 21:00–08:00 in the user's time (not applied: transactional)<br/>transactional: no caps, no quiet hours\"]"
            ),
            "{m}"
        );
    }

    /// A journey with an `enrollment_key` enters once per value at a time, not once per user:
    /// its entry rule says so, for each `reentry`.
    #[test]
    fn a_keyed_journeys_entry_rule_is_per_value() {
        let keyed = |reentry: &str| {
            format!(
                r#"
id: checkin
name: Check-in
trigger: {{event: flight_booked}}
enrollment_key: event.booking_id
reentry: {reentry}
steps:
  - id: remind
    send: {{email: {{subject: "Check in", text: "."}}}}
"#
            )
        };
        let rules = |reentry: &str| {
            let m = mermaid(&crate::dsl::parse("c.yaml", &keyed(reentry)).expect("valid"));
            m.lines()
                .find(|l| l.contains("rules>"))
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(
            rules("after_exit"),
            "    rules>\"one enrollment per event.booking_id at a time; a value enters again after exit\"]"
        );
        assert_eq!(
            rules("never"),
            "    rules>\"one enrollment per event.booking_id at a time; enters once per value\"]"
        );
        assert_eq!(
            rules("{after: 30d}"),
            "    rules>\"one enrollment per event.booking_id at a time; a value enters again 30d after its last entry, once it ended\"]"
        );
        // Hours stay hours: `24h` is elapsed time, not the calendar day `1d` is.
        assert_eq!(
            rules("{after: 24h}"),
            "    rules>\"one enrollment per event.booking_id at a time; a value enters again 24h after its last entry, once it ended\"]"
        );
    }

    /// A schedule in a named zone is the default zone of a journey without `timezone` (see
    /// [`Journey::default_zone`]): the summary says so, and whence; one in each user's zone
    /// names none.
    #[test]
    fn a_schedules_named_zone_is_noted_as_the_default_zone() {
        let schedule = |zone: &str| {
            format!(
                r#"
id: digest
name: Digest
trigger: {{schedule: {{cron: "0 9 * * mon", timezone: {zone}}}}}
reentry: after_exit
steps:
  - id: tell
    send: {{email: {{subject: "This week", text: "."}}}}
"#
            )
        };
        let m =
            mermaid(&crate::dsl::parse("d.yaml", &schedule("Australia/Sydney")).expect("valid"));
        assert!(
            m.contains("time zone Australia/Sydney (the schedule's) when the user has none"),
            "{m}"
        );
        let m = mermaid(&crate::dsl::parse("d.yaml", &schedule("user")).expect("valid"));
        assert!(!m.contains("time zone"), "{m}");
        let named =
            schedule("Australia/Sydney").replace("reentry:", "timezone: Europe/Berlin\nreentry:");
        let m = mermaid(&crate::dsl::parse("d.yaml", &named).expect("valid"));
        assert!(
            m.contains("time zone Europe/Berlin when the user has none"),
            "{m}"
        );
    }

    /// Every kind of trigger shows its `where`, an inactivity check's too (it decides who of
    /// the inactive users enter).
    #[test]
    fn each_triggers_condition_is_on_its_box() {
        for (trigger, label) in [
            (
                "{event: cart_abandoned, where: \"event.total > 0\"}",
                "on cart_abandoned where event.total #gt; 0",
            ),
            (
                "{repeated: {event: e, times: 3, within: 1d, where: \"event.n > 1\"}}",
                "e where event.n #gt; 1 3 times within 1d",
            ),
            (
                "{inactive: {events: [app_opened], for: 14d, where: \"profile.plan == 'prepaid'\"}}",
                "inactive for 2w (no app_opened) where profile.plan == 'prepaid'",
            ),
            (
                "{schedule: {cron: \"0 9 * * mon\", timezone: UTC, where: \"exists(profile.email)\"}}",
                "schedule 0 9 * * mon UTC where exists(profile.email)",
            ),
        ] {
            let text = CART.replace("trigger:\n  event: cart_abandoned\n", &format!("trigger: {trigger}\nreentry: after_exit\n"));
            assert_ne!(text, CART);
            let m = mermaid(&crate::dsl::parse("cart.yaml", &text).expect("valid journey"));
            assert!(m.contains(&format!("trigger([\"{label}\"])")), "{trigger}: {m}");
        }
    }

    #[test]
    fn a_splits_shares_add_up_to_a_hundred() {
        assert_eq!(shares(&[1, 3], 90), [23, 67]);
        assert_eq!(shares(&[1, 1, 1], 100), [34, 33, 33]);
        assert_eq!(shares(&[1, 3], 100), [25, 75]);
        assert_eq!(shares(&[0, 0], 100), [0, 0]);
        assert_eq!(shares(&[2, 1], 90), [60, 30]);
    }

    #[test]
    fn a_splits_edges_say_each_paths_share_of_everyone_with_the_holdout_off_the_top() {
        let text = CART.replace(
            "        - {weight: 1, goto: email_b}\n",
            "        - {weight: 2, goto: email_b}\n      holdout: 10\n",
        );
        let m = mermaid(&crate::dsl::parse("cart.yaml", &text).expect("valid journey"));
        assert!(
            m.contains("s3{\"pick<br/>split 33/67, holdout 10%\"}"),
            "{m}"
        );
        assert!(m.contains("s3 -->|\"a 30%\"| s4"), "{m}");
        assert!(m.contains("s3 -->|\"email_b 60%\"| s5"), "{m}");
        assert!(m.contains("s3 -->|\"holdout 10%\"| holdout"), "{m}");
    }

    #[test]
    fn a_wait_until_says_its_time_or_its_date() {
        let with = |wait: &str| {
            let text = format!(
                "id: w\nname: W\ntrigger: {{event: booked}}\nsteps:\n  - id: w\n    wait_until: {wait}\n"
            );
            mermaid(&crate::dsl::parse("w.yaml", &text).expect("valid journey"))
        };
        assert!(with(r#"{time: "09:00", weekdays: [mon, fri]}"#)
            .contains("wait until 09:00 on mon, fri"));
        assert!(
            with(r#"{date: event.starts_at, before: 1d, time: "09:00"}"#)
                .contains("wait until event.starts_at - 1d at 09:00")
        );
        assert!(with("{date: profile.renews_on, after: 2w}")
            .contains("wait until profile.renews_on + 2w\""));
        // As written: 24 hours is not the calendar day `1d` is, nor is 14 days 2 weeks.
        for written in ["24h", "1440m", "86400s", "1d2h", "14d"] {
            let m = with(&format!("{{date: event.departs_at, before: {written}}}"));
            assert!(
                m.contains(&format!("wait until event.departs_at - {written}\"")),
                "{m}"
            );
        }
    }

    #[test]
    fn a_wait_until_if_past_draws_its_way_out() {
        let with = |if_past: &str| {
            // The step it names, reached from it alone.
            let missed = if if_past == "missed" {
                "    next: done\n  - id: missed\n    send: {sms: {body: Missed}}\n"
            } else {
                ""
            };
            let text = format!(
                "id: w\nname: W\ntrigger: {{event: booked}}\nsteps:\n  - id: w\n    wait_until: {{date: event.starts_at, before: 1d, if_past: {if_past}}}\n  - id: remind\n    send: {{sms: {{body: Soon}}}}\n{missed}  - id: done\n    exit: true\n"
            );
            mermaid(&crate::dsl::parse("w.yaml", &text).expect("valid journey"))
        };
        let m = with("missed");
        assert!(m.contains("s0 --> s1"), "{m}");
        assert!(m.contains("s0 -->|\"date past\"| s2"), "{m}");
        let m = with("{by_more_than: 1d, then: exit}");
        assert!(m.contains("s0 -->|\"past by more than 1d\"| exited"), "{m}");
        assert!(m.contains("exited((exit))"), "{m}");
        // Going on, as without it: no other way out.
        let m = with("go_on");
        assert!(!m.contains("past"), "{m}");
        assert!(!m.contains("exited"), "{m}");
    }

    /// An exit and a goal on a trait's change are drawn as the trigger on one is said.
    #[test]
    fn an_exit_and_a_goal_on_a_trait_change_are_drawn() {
        let j = crate::dsl::parse(
            "offer.yaml",
            "id: offer\nname: Offer\ntrigger: {event: paywall_hit}\nexit_when:\n  - {event: account_closed}\n  - {trait_changed: subscriber, where: \"event.to == true\"}\ngoal: {trait_changed: plan, within: 7d}\nsteps:\n  - id: w\n    wait: 1d\n",
        )
        .expect("valid journey");
        let m = mermaid(&j);
        assert!(
            m.contains("exit_when>\"exit when: account_closed or subscriber changes where event.to == true\"]"),
            "{m}"
        );
        assert!(m.contains("goal>\"goal: plan changes within 1w\"]"), "{m}");
    }

    #[test]
    fn falling_off_the_end_and_unknown_steps_get_their_own_nodes() {
        let mut j = crate::dsl::parse("cart.yaml", CART).expect("valid journey");
        j.steps.truncate(2);
        j.steps[0].next = Some("no \"such\" step".into());
        j.exit_when.clear();
        j.goal = None;
        let m = mermaid(&j);
        assert!(m.contains("s0 --> missing0"), "{m}");
        assert!(
            m.contains("missing0[\"no #quot;such#quot; step: no such step\"]"),
            "{m}"
        );
        assert!(m.contains("s1 --> done"), "{m}");
        assert!(m.contains("done((end))"), "{m}");
        assert!(!m.contains("exit_when"), "{m}");
    }
}
