//! The workload of one seed: users, their identify calls and the events of the cart and
//! onboarding journeys at random times (some seconds apart, some days), with client retries that
//! repeat a messageId. Only data: nothing here runs.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use waymark::event::Kind;

use crate::rng::Rng;

/// One request intake receives.
#[derive(Debug, Clone)]
pub struct Line {
    /// When intake receives it.
    pub at: Timestamp,
    pub kind: Kind,
    pub body: Value,
    pub message_id: String,
}

/// What a user does, for the oracles.
#[derive(Debug, Clone, Default)]
pub struct UserPlan {
    pub id: String,
    /// The messageId of the user's first identify (email, phone, push token).
    pub identify: String,
    pub has_device: bool,
    pub has_phone: bool,
    /// cart_abandoned events: (messageId, time, whether `event.total > 0`).
    pub carts: Vec<(String, Timestamp, bool)>,
    pub orders: Vec<(String, Timestamp)>,
    pub signed_up: Vec<(String, Timestamp)>,
    pub registered: Vec<(String, Timestamp)>,
    /// app_opened events (the churn journey's activity).
    pub opened: Vec<(String, Timestamp)>,
    /// The time zone the first identify names (none: UTC).
    pub timezone: Option<String>,
    /// A viewer of the streaming service: on the free plan (`Some(true)`) or premium.
    pub free: Option<bool>,
    /// episode_watched events (the upsell journey's trigger), in the script's order.
    pub watched: Vec<(String, Timestamp)>,
    /// One of the carts was abandoned anonymously, with this `anonymousId`, and the user logged
    /// in (an identify with both ids) at this time, within four hours of it.
    pub anonymous: Option<(String, Timestamp)>,
}

pub struct Workload {
    pub start: Timestamp,
    pub lines: Vec<Line>,
    pub users: Vec<UserPlan>,
}

const NAMES: [&str; 8] = [
    "Ada", "Ben", "Chloé", "Dev", "Eun-ji", "Femi", "Gus", "Hana",
];
pub const ZONES: [&str; 3] = ["Europe/Paris", "America/New_York", "Asia/Tokyo"];

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

struct Builder<'a> {
    rng: &'a mut Rng,
    lines: Vec<Line>,
    next_id: u64,
}

impl Builder<'_> {
    fn message_id(&mut self) -> String {
        self.next_id += 1;
        format!("m-{:05}", self.next_id)
    }

    /// A request at `at` (the client's time), received up to two seconds later; sometimes the
    /// client retries it with the same messageId.
    fn push(&mut self, at: Timestamp, kind: Kind, mut body: Value) -> String {
        let id = self.message_id();
        body["messageId"] = json!(id);
        body["timestamp"] = json!(at.to_string());
        let received = at + SignedDuration::from_millis(self.rng.between(0, 2_000));
        self.lines.push(Line {
            at: received,
            kind,
            body: body.clone(),
            message_id: id.clone(),
        });
        if self.rng.chance(0.15) {
            let later = match self.rng.below(3) {
                0 => SignedDuration::ZERO,
                1 => secs(self.rng.between(1, 5)),
                _ => secs(self.rng.between(60, 1_800)),
            };
            self.lines.push(Line {
                at: received + later,
                kind,
                body,
                message_id: id.clone(),
            });
        }
        id
    }

    fn track(&mut self, user: &str, at: Timestamp, event: &str, properties: Value) -> String {
        let body = json!({"userId": user, "event": event, "properties": properties});
        self.push(at, Kind::Track, body)
    }
}

/// How long after `t` a follow-up happens: seconds (racing the entry), minutes, hours or days,
/// or within seconds of one of the `sends` (offsets from `t`), racing the send it should cancel.
fn soon_or_late(rng: &mut Rng, t: Timestamp, late: i64, sends: &[i64]) -> Timestamp {
    let d = match rng.below(6) {
        0 => rng.between(1, 10),
        1 => rng.between(10, 1_800),
        2 => rng.between(1_800, 6 * 3_600),
        3 => rng.between(6 * 3_600, late),
        _ => (*rng.pick(sends) + rng.between(-1, 2)).max(1),
    };
    t + secs(d)
}

fn cart(rng: &mut Rng, n: u64, qualifies: bool) -> Value {
    let items: Vec<Value> = (0..rng.between(1, 3))
        .map(|i| {
            json!({"name": format!("item {i}"), "price": rng.between(5, 120), "stock": rng.between(0, 9)})
        })
        .collect();
    let total = if qualifies { rng.between(5, 300) } else { 0 };
    json!({"cart_id": format!("c-{n}"), "total": total, "currency": "EUR", "items": items})
}

pub fn generate(rng: &mut Rng, start: Timestamp, users: usize) -> Workload {
    let mut b = Builder {
        rng,
        lines: Vec::new(),
        next_id: 0,
    };
    let mut plans = Vec::with_capacity(users);
    for i in 0..users {
        let id = format!("u{i:02}");
        let mut plan = UserPlan {
            id: id.clone(),
            has_device: b.rng.chance(0.85),
            has_phone: b.rng.chance(0.6),
            ..UserPlan::default()
        };
        let t0 = start + secs(b.rng.between(0, 600));
        let mut traits = json!({
            "email": format!("{id}@shop.example"),
            "first_name": b.rng.pick(&NAMES).to_string(),
        });
        if plan.has_phone {
            traits["phone"] = json!(format!("+1415555{:04}", i));
        }
        if plan.has_device {
            traits["push_tokens"] = json!([{"platform": "fcm", "token": format!("fcm-{id}")}]);
        }
        if b.rng.chance(0.3) {
            let zone = b.rng.pick(&ZONES).to_string();
            traits["timezone"] = json!(zone);
            plan.timezone = Some(zone);
        }
        if b.rng.chance(0.3) {
            let free = b.rng.chance(0.8);
            traits["plan"] = json!(if free { "free" } else { "premium" });
            plan.free = Some(free);
        }
        plan.identify = b.push(t0, Kind::Identify, json!({"userId": id, "traits": traits}));
        if plan.free.is_some() {
            // One to five episodes over ten days: some three within seven days, some not; a
            // few arrive late (the client's timestamp hours before it is sent).
            for n in 0..b.rng.between(1, 5) {
                let at = t0 + secs(b.rng.between(60, 10 * 86_400));
                let id_ = b.track(
                    &id,
                    at,
                    "episode_watched",
                    json!({"series": format!("s-{n}")}),
                );
                if b.rng.chance(0.2) {
                    let late = secs(b.rng.between(3_600, 6 * 3_600));
                    for l in b.lines.iter_mut().filter(|l| l.message_id == id_) {
                        l.at += late;
                    }
                }
                plan.watched.push((id_, at));
            }
        }

        if b.rng.chance(0.75) {
            let mut t = t0 + secs(b.rng.between(60, 4 * 3_600));
            let carts = match b.rng.below(20) {
                0..=11 => 1,
                12..=15 => 2,
                16..=17 => 3,
                _ => 4,
            };
            // Which cart, if any, is abandoned anonymously: the first, or one after the user's
            // own (whose ended enrollment the anonymous one's continuation then takes the place
            // of, before the user's next cart enters again).
            let anonymous = b.rng.chance(0.25).then(|| b.rng.below(carts));
            for n in 0..carts {
                let qualifies = b.rng.chance(0.9);
                let props = cart(b.rng, n, qualifies);
                let cart_id = if anonymous == Some(n) {
                    // Abandoned before logging in; the login comes seconds later (racing the
                    // entry), minutes later, around the push, or up to four hours later (always
                    // before the email, which then goes to the user's address).
                    let device = format!("a-{id}");
                    let body = json!({"anonymousId": device, "event": "cart_abandoned", "properties": props});
                    let cart_id = b.push(t, Kind::Track, body);
                    let after = match b.rng.below(4) {
                        0 => b.rng.between(1, 10),
                        1 => b.rng.between(10, 1_800),
                        2 => 1_800 + b.rng.between(-2, 3),
                        _ => b.rng.between(1_800, 4 * 3_600),
                    };
                    let login = t + secs(after);
                    b.push(
                        login,
                        Kind::Identify,
                        json!({"userId": id, "anonymousId": device, "traits": {}}),
                    );
                    plan.anonymous = Some((device, login));
                    cart_id
                } else {
                    b.track(&id, t, "cart_abandoned", props)
                };
                plan.carts.push((cart_id, t, qualifies));
                if b.rng.chance(0.2) {
                    // Identify and track for the same user at the same moment.
                    let name = b.rng.pick(&NAMES).to_string();
                    b.push(
                        t,
                        Kind::Identify,
                        json!({"userId": id, "traits": {"first_name": name}}),
                    );
                }
                if b.rng.chance(0.45) {
                    let at = soon_or_late(b.rng, t, 3 * 86_400, &[1_800, 1_800 + 4 * 3_600]);
                    let total = b.rng.between(5, 300);
                    let order = b.track(
                        &id,
                        at,
                        "order_completed",
                        json!({"order_id": format!("o-{n}"), "total": total}),
                    );
                    plan.orders.push((order, at));
                    t = at;
                }
                t += if b.rng.chance(0.5) {
                    // Around the journey's last send: a re-entry racing it.
                    secs(1_800 + 4 * 3_600 + b.rng.between(-2, 240))
                } else {
                    secs(b.rng.between(60, 2 * 3_600))
                };
            }
        }
        if b.rng.chance(0.6) {
            let t = t0 + secs(b.rng.between(0, 2 * 3_600));
            let signed = b.track(&id, t, "signed_up", json!({"plan": "basic"}));
            plan.signed_up.push((signed, t));
            if b.rng.chance(0.5) {
                let at = soon_or_late(b.rng, t, 8 * 86_400, &[86_400, 3 * 86_400]);
                let reg = b.track(&id, at, "registration_completed", json!({}));
                plan.registered.push((reg, at));
            }
        }
        if b.rng.chance(0.3) {
            let at = t0 + secs(b.rng.between(60, 86_400));
            let opened = b.track(&id, at, "app_opened", json!({}));
            plan.opened.push((opened, at));
        }
        plans.push(plan);
    }
    let mut lines = b.lines;
    lines.sort_by_key(|l| l.at);
    Workload {
        start,
        lines,
        users: plans,
    }
}
