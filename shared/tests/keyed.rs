//! Journeys with an `enrollment_key`: a user is in the journey once per value of a path of her
//! trigger event at a time (a round trip's two bookings, each reminded), the entry rules apply
//! to each value apart, and exits, wake-ups, logins and stops find each enrollment on its own.

mod support;

use support::*;
use waymark::enrollment::Status;
use waymark::journey::MAX_KEYED;
use waymark::timeline::What;

/// A reminder 24 hours before each booked flight; a cancellation ends its own booking's.
const CHECKIN: &str = r#"
id: checkin
name: Check-in
trigger: {event: flight_booked}
enrollment_key: event.booking_id
reentry: after_exit
exit_when:
  - event: flight_cancelled
    where: "event.booking_id == trigger.booking_id"
steps:
  - id: opens
    wait_until: {date: event.departs_at, before: 24h}
  - id: remind
    send:
      email: {subject: "Check in for {{ trigger.flight }}", text: "Booking {{ trigger.booking_id }}"}
"#;

const ANN: &str = r#"{"at":"2026-12-01T08:00:00Z","type":"identify","userId":"ann","traits":{"email":"ann@example.com"}}"#;

/// A `flight_booked` of `user` at `at`, message `id`, with these properties (JSON).
fn booked(at: &str, user: &str, id: &str, properties: &str) -> String {
    format!(
        r#"{{"at":"{at}","type":"track","userId":"{user}","event":"flight_booked","messageId":"{id}","properties":{properties}}}"#
    )
}

/// A booking `b` of flight `f` leaving at `departs`.
fn flight(b: &str, f: &str, departs: &str) -> String {
    format!(r#"{{"booking_id":"{b}","flight":"{f}","departs_at":"{departs}"}}"#)
}

fn refused(out: &[waymark::simulate::Output], user: &str) -> Vec<String> {
    entries(out, user)
        .into_iter()
        .filter_map(|e| match &e.what {
            What::NotEntered { reason, detail, .. } => Some(format!(
                "{} [{}] {reason}: {}",
                e.at,
                e.enrollment,
                detail.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

fn entered_ids(out: &[waymark::simulate::Output], user: &str) -> Vec<String> {
    entries(out, user)
        .into_iter()
        .filter(|e| matches!(e.what, What::Entered { .. }))
        .map(|e| e.enrollment.to_string())
        .collect()
}

#[tokio::test]
async fn a_round_trip_gets_a_reminder_for_each_flight() {
    let script = [
        ANN.to_string(),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "b-out",
            &flight("OUT1", "TP1350", "2026-12-05T07:30:00Z"),
        ),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "b-ret",
            &flight("RET1", "TP1351", "2026-12-09T18:45:00Z"),
        ),
    ]
    .join("\n");
    let out = sim(&[CHECKIN], &script).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-04T07:30:00Z ann email remind: Check in for TP1350",
            "2026-12-08T18:45:00Z ann email remind: Check in for TP1351",
        ]
    );
    // Each its own enrollment: its own id, its own sends in the ledger.
    assert_eq!(
        entered_ids(&out, "ann"),
        ["checkin:ann:OUT1:1", "checkin:ann:RET1:1"]
    );
    let ids: Vec<String> = messages_to(&out, "ann")
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(
        ids,
        ["checkin:ann:OUT1:1#remind#2", "checkin:ann:RET1:1#remind#2"]
    );
    assert!(
        refused(&out, "ann").is_empty(),
        "{:?}",
        refused(&out, "ann")
    );
}

/// The entry rule applies to each value apart: the same booking again is refused while its
/// enrollment is active (`enrolled`), then as the rule says once it ended; another booking
/// enters whatever the first's state.
#[tokio::test]
async fn reentry_applies_to_each_value_apart() {
    let rule = |reentry: &str| CHECKIN.replace("reentry: after_exit", reentry);
    let b1 = flight("B1", "F1", "2026-12-02T12:00:00Z");
    let b2 = flight("B2", "F2", "2026-12-04T12:00:00Z");
    let script = [
        ANN.to_string(),
        booked("2026-12-01T09:00:00Z", "ann", "m1", &b1),
        // the same booking while its reminder is pending
        booked("2026-12-01T10:00:00Z", "ann", "m2", &b1),
        // after it completed (2026-12-01T12:00)
        booked("2026-12-01T13:00:00Z", "ann", "m3", &b1),
        booked("2026-12-01T13:00:00Z", "ann", "m4", &b2),
    ]
    .join("\n");
    for (reentry, entered, refusals) in [
        (
            "reentry: never",
            vec!["checkin:ann:B1:1", "checkin:ann:B2:1"],
            vec![
                "2026-12-01T10:00:00Z [checkin:ann:B1:1] enrolled: in the journey for `event.booking_id` B1 since 2026-12-01T09:00:00Z (on version 1, at step `opens`): one enrollment a value at a time",
                "2026-12-01T13:00:00Z [checkin:ann:B1:1] reentry: `reentry: never`, and the user entered on 2026-12-01T09:00:00Z",
            ],
        ),
        (
            "reentry: after_exit",
            vec!["checkin:ann:B1:1", "checkin:ann:B1:2", "checkin:ann:B2:1"],
            vec![
                "2026-12-01T10:00:00Z [checkin:ann:B1:1] enrolled: in the journey for `event.booking_id` B1 since 2026-12-01T09:00:00Z (on version 1, at step `opens`): one enrollment a value at a time",
            ],
        ),
        (
            "reentry: {after: 1d}",
            vec!["checkin:ann:B1:1", "checkin:ann:B2:1"],
            vec![
                "2026-12-01T10:00:00Z [checkin:ann:B1:1] enrolled: in the journey for `event.booking_id` B1 since 2026-12-01T09:00:00Z (on version 1, at step `opens`): one enrollment a value at a time",
                "2026-12-01T13:00:00Z [checkin:ann:B1:1] reentry: `reentry: after 1d`: may enter again from 2026-12-02T09:00:00Z",
            ],
        ),
    ] {
        let out = sim(&[&rule(reentry)], &script).await;
        let mut ids = entered_ids(&out, "ann");
        ids.sort();
        assert_eq!(ids, entered, "{reentry}");
        assert_eq!(refused(&out, "ann"), refusals, "{reentry}");
        // one reminder per enrollment, none twice
        assert_eq!(outbox(&out).len(), entered.len(), "{reentry}: {:?}", outbox(&out));
    }
}

/// A trigger without a value at the path (missing, null, empty, not a string or a number)
/// enters her in nothing, and says so, naming the path; a number is a value.
#[tokio::test]
async fn a_trigger_without_a_key_value_is_not_entered_and_says_why() {
    let cases = [
        (
            r#"{"departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event has no `event.booking_id`",
        ),
        (
            r#"{"booking_id":null,"departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event has no `event.booking_id`",
        ),
        (
            r#"{"booking_id":"  ","departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event's `event.booking_id` is empty",
        ),
        (
            r#"{"booking_id":["a"],"departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event's `event.booking_id` is a list, not a string or a number",
        ),
        (
            r#"{"booking_id":{"a":1},"departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event's `event.booking_id` is an object, not a string or a number",
        ),
        (
            r#"{"booking_id":true,"departs_at":"2026-12-03T12:00:00Z"}"#,
            "the trigger event's `event.booking_id` is a boolean, not a string or a number",
        ),
    ];
    for (properties, why) in cases {
        let script = [
            ANN.to_string(),
            booked("2026-12-01T09:00:00Z", "ann", "m1", properties),
        ]
        .join("\n");
        let out = sim(&[CHECKIN], &script).await;
        assert!(entered_ids(&out, "ann").is_empty(), "{properties}");
        assert_eq!(
            refused(&out, "ann"),
            [format!(
                "2026-12-01T09:00:00Z [] no_key: `enrollment_key: event.booking_id`: {why}{}",
                if why.ends_with('`') {
                    ", and an enrollment of this journey is one per value"
                } else {
                    ""
                }
            )],
            "{properties}"
        );
        assert!(outbox(&out).is_empty());
    }
    let script = [
        ANN.to_string(),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m1",
            r#"{"booking_id":4711,"flight":"F","departs_at":"2026-12-03T12:00:00Z"}"#,
        ),
    ]
    .join("\n");
    let out = sim(&[CHECKIN], &script).await;
    assert_eq!(entered_ids(&out, "ann"), ["checkin:ann:4711:1"]);
    assert_eq!(outbox(&out).len(), 1);
}

/// A key holding `#` or `%` keeps its enrollment's id and record apart from any other: a
/// ledger key is `{enrollment}#{step}#{seq}`.
#[tokio::test]
async fn a_key_with_a_hash_is_escaped_in_ids() {
    let script = [
        ANN.to_string(),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m1",
            &flight("A#1", "F1", "2026-12-03T12:00:00Z"),
        ),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m2",
            &flight("A%231", "F2", "2026-12-03T12:00:00Z"),
        ),
    ]
    .join("\n");
    let out = sim(&[CHECKIN], &script).await;
    assert_eq!(
        entered_ids(&out, "ann"),
        ["checkin:ann:A%231:1", "checkin:ann:A%25231:1"]
    );
    assert_eq!(outbox(&out).len(), 2, "{:?}", outbox(&out));
}

/// She is in the journey at most [`MAX_KEYED`] times at once: the next value is refused until
/// one of those ends.
#[tokio::test]
async fn her_enrollments_at_once_are_bounded() {
    let mut script = vec![ANN.to_string()];
    for i in 0..=MAX_KEYED {
        script.push(booked(
            "2026-12-01T09:00:00Z",
            "ann",
            &format!("m{i}"),
            &flight(&format!("B{i:02}"), "F", "2026-12-10T12:00:00Z"),
        ));
    }
    // one ends; then the refused booking comes again and enters
    script.push(r#"{"at":"2026-12-01T10:00:00Z","type":"track","userId":"ann","event":"flight_cancelled","messageId":"c0","properties":{"booking_id":"B00"}}"#.to_string());
    script.push(booked(
        "2026-12-01T11:00:00Z",
        "ann",
        "again",
        &flight(&format!("B{MAX_KEYED:02}"), "F", "2026-12-10T12:00:00Z"),
    ));
    let out = sim(&[CHECKIN], &script.join("\n")).await;
    assert_eq!(entered_ids(&out, "ann").len(), MAX_KEYED + 1);
    assert_eq!(
        refused(&out, "ann"),
        [format!("2026-12-01T09:00:00Z [] too_many: in the journey {MAX_KEYED} times at once already (for as many values of `enrollment_key`), the most a user may be: she enters it again for a new value once one of those ends")]
    );
    assert_eq!(outbox(&out).len(), MAX_KEYED, "B00 cancelled");
}

/// Each enrollment judges an exit event on its own: one whose `where` reads `trigger.*` ends
/// only the booking it names; one with no `where` ends them all.
#[tokio::test]
async fn an_exit_on_the_trigger_ends_its_own_enrollment_and_one_without_where_all() {
    let all = CHECKIN.replace("exit_when:\n", "exit_when:\n  - event: account_closed\n");
    let base = [
        ANN.to_string(),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m1",
            &flight("B1", "F1", "2026-12-05T12:00:00Z"),
        ),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m2",
            &flight("B2", "F2", "2026-12-06T12:00:00Z"),
        ),
        booked(
            "2026-12-01T09:00:00Z",
            "ann",
            "m3",
            &flight("B3", "F3", "2026-12-07T12:00:00Z"),
        ),
    ];
    let cancel = r#"{"at":"2026-12-02T09:00:00Z","type":"track","userId":"ann","event":"flight_cancelled","messageId":"c2","properties":{"booking_id":"B2"}}"#;
    let out = sim(&[&all], &[base.join("\n"), cancel.into()].join("\n")).await;
    assert_eq!(
        outbox(&out),
        [
            "2026-12-04T12:00:00Z ann email remind: Check in for F1",
            "2026-12-06T12:00:00Z ann email remind: Check in for F3",
        ]
    );
    let exits: Vec<String> = entries(&out, "ann")
        .into_iter()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    assert_eq!(exits, ["checkin:ann:B2:1"]);

    let closed = r#"{"at":"2026-12-02T09:00:00Z","type":"track","userId":"ann","event":"account_closed","messageId":"x"}"#;
    let out = sim(&[&all], &[base.join("\n"), closed.into()].join("\n")).await;
    assert!(outbox(&out).is_empty(), "{:?}", outbox(&out));
    let mut exits: Vec<String> = entries(&out, "ann")
        .into_iter()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    exits.sort();
    assert_eq!(
        exits,
        ["checkin:ann:B1:1", "checkin:ann:B2:1", "checkin:ann:B3:1"]
    );
}

/// Each `unmet` entry of `user`: `[enrollment] by: detail`.
fn unmet_of(out: &[waymark::simulate::Output], user: &str) -> Vec<String> {
    entries(out, user)
        .into_iter()
        .filter_map(|e| match &e.what {
            What::Unmet { by, detail, .. } => Some(format!(
                "[{}] {by}: {}",
                e.enrollment,
                detail.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

/// An exit or a wait whose `where` compares the key on the event and the trigger is not unmet
/// at the other values' enrollments by an event for one value: a cancellation of B1 leaves
/// B2's and B3's timelines without `unmet`. One for B2 that another part of the `where`
/// refuses is unmet at B2's alone; one with no value of the key at all, at each.
#[tokio::test]
async fn an_event_for_another_value_of_the_key_is_not_unmet_at_its_enrollments() {
    let exit = CHECKIN.replace(
        "where: \"event.booking_id == trigger.booking_id\"",
        "where: \"event.booking_id == trigger.booking_id and event.by == 'airline'\"",
    );
    // The same, waiting for the payment of its own booking.
    let wait = r#"
id: checkin
name: Check-in
trigger: {event: flight_booked}
enrollment_key: event.booking_id
steps:
  - id: paid
    wait_for:
      event: payment_received
      where: "event.booking_id == trigger.booking_id and event.amount > 0"
      timeout: 3d
      on_timeout: remind
  - id: remind
    send:
      email: {subject: "Check in for {{ trigger.flight }}", text: "Booking {{ trigger.booking_id }}"}
"#;
    let bookings: Vec<String> = [("m1", "B1"), ("m2", "B2"), ("m3", "B3")]
        .iter()
        .map(|(m, b)| {
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                m,
                &flight(b, "F", "2026-12-05T12:00:00Z"),
            )
        })
        .collect();
    let event = |name: &str, id: &str, properties: &str| {
        format!(
            r#"{{"at":"2026-12-02T09:00:00Z","type":"track","userId":"ann","event":"{name}","messageId":"{id}","properties":{properties}}}"#
        )
    };
    for (journey, by, name, other, theirs, none) in [
        (
            &*exit,
            "exit_when",
            "flight_cancelled",
            r#"{"booking_id":"B2","by":"user"}"#,
            r#"{"booking_id":"B1","by":"airline"}"#,
            r#"{"by":"user"}"#,
        ),
        (
            wait,
            "wait_for",
            "payment_received",
            r#"{"booking_id":"B2","amount":0}"#,
            r#"{"booking_id":"B1","amount":90}"#,
            r#"{"amount":0}"#,
        ),
    ] {
        // B1's own event takes B1's enrollment, and says nothing at B2's and B3's.
        let script = [bookings.join("\n"), ANN.into(), event(name, "e1", theirs)].join("\n");
        let out = sim(&[journey], &script).await;
        assert_eq!(unmet_of(&out, "ann"), Vec::<String>::new(), "{by}");
        // B2's, refused by the rest of its `where`, is unmet at B2's alone.
        let script = [bookings.join("\n"), ANN.into(), event(name, "e2", other)].join("\n");
        let out = sim(&[journey], &script).await;
        let unmet = unmet_of(&out, "ann");
        assert_eq!(unmet.len(), 1, "{by}: {unmet:?}");
        assert!(
            unmet[0].starts_with(&format!(
                "[checkin:ann:B2:1] {by}: `where: event.booking_id == trigger.booking_id and "
            )),
            "{by}: {unmet:?}"
        );
        // One with no booking at all names none: unmet at each.
        let script = [bookings.join("\n"), ANN.into(), event(name, "e3", none)].join("\n");
        let out = sim(&[journey], &script).await;
        let mut at: Vec<String> = unmet_of(&out, "ann")
            .iter()
            .map(|u| u.split(']').next().unwrap_or_default().to_string())
            .collect();
        at.sort();
        assert_eq!(
            at,
            [
                "[checkin:ann:B1:1",
                "[checkin:ann:B2:1",
                "[checkin:ann:B3:1"
            ],
            "{by}"
        );
    }
}

/// An exit without `trigger.*` that arrived before the triggers (events out of order: the
/// profile marks it) ends each enrollment it came after, and none it came before.
#[tokio::test]
async fn an_exit_that_arrived_before_its_triggers_ends_each_enrollment_it_followed() {
    let marked = CHECKIN.replace(
        "exit_when:\n",
        "exit_when:\n  - event: account_closed\n    where: \"event.reason == 'fraud'\"\n",
    );
    let script = [
        ANN.to_string(),
        // closed at 09:30, delivered first; the bookings of 09:00 and 10:00 arrive after
        r#"{"at":"2026-12-01T11:00:00Z","type":"track","userId":"ann","event":"account_closed","messageId":"x","timestamp":"2026-12-01T09:30:00Z","properties":{"reason":"fraud"}}"#.to_string(),
        format!(r#"{{"at":"2026-12-01T11:01:00Z","type":"track","userId":"ann","event":"flight_booked","messageId":"m1","timestamp":"2026-12-01T09:00:00Z","properties":{}}}"#, flight("B1", "F1", "2026-12-05T12:00:00Z")),
        format!(r#"{{"at":"2026-12-01T11:01:00Z","type":"track","userId":"ann","event":"flight_booked","messageId":"m2","timestamp":"2026-12-01T09:00:00Z","properties":{}}}"#, flight("B2", "F2", "2026-12-05T12:00:00Z")),
        format!(r#"{{"at":"2026-12-01T11:02:00Z","type":"track","userId":"ann","event":"flight_booked","messageId":"m3","timestamp":"2026-12-01T10:00:00Z","properties":{}}}"#, flight("B3", "F3", "2026-12-06T12:00:00Z")),
    ]
    .join("\n");
    let out = sim(&[&marked], &script).await;
    assert_eq!(
        outbox(&out),
        ["2026-12-05T12:00:00Z ann email remind: Check in for F3"]
    );
    let mut exits: Vec<String> = entries(&out, "ann")
        .into_iter()
        .filter(|e| matches!(e.what, What::Exited { .. }))
        .map(|e| e.enrollment.to_string())
        .collect();
    exits.sort();
    assert_eq!(exits, ["checkin:ann:B1:1", "checkin:ann:B2:1"]);
}

/// The same two bookings delivered twice each, in either order, enter once each and send once
/// each.
#[tokio::test]
async fn repeated_and_reordered_triggers_send_once_each() {
    let one = booked(
        "2026-12-01T09:00:00Z",
        "ann",
        "m1",
        &flight("B1", "F1", "2026-12-03T12:00:00Z"),
    );
    let two = booked(
        "2026-12-01T09:00:00Z",
        "ann",
        "m2",
        &flight("B2", "F2", "2026-12-04T12:00:00Z"),
    );
    for order in [
        [&one, &two, &one, &two],
        [&two, &one, &one, &two],
        [&two, &two, &one, &one],
    ] {
        let mut script = vec![ANN.to_string()];
        script.extend(order.iter().map(|s| s.to_string()));
        let out = sim(&[CHECKIN], &script.join("\n")).await;
        assert_eq!(
            outbox(&out),
            [
                "2026-12-02T12:00:00Z ann email remind: Check in for F1",
                "2026-12-03T12:00:00Z ann email remind: Check in for F2",
            ]
        );
        assert!(
            refused(&out, "ann").is_empty(),
            "a retry is not refused: {:?}",
            refused(&out, "ann")
        );
    }
}

/// A visitor books a flight on her phone before logging in, having booked another as herself:
/// at the login the visitor's enrollment goes on as hers beside her own (another value), and
/// each flight gets its one reminder. One for a booking she is in already ends.
#[tokio::test]
async fn a_visitors_keyed_enrollments_go_on_as_hers_at_login() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    let anon = |at: &str, id: &str, properties: &str| {
        format!(
            r#"{{"at":"{at}","type":"track","anonymousId":"dev-1","event":"flight_booked","messageId":"{id}","properties":{properties}}}"#
        )
    };
    h.play(
        &[
            ANN.to_string(),
            booked("2026-12-01T09:00:00Z", "ann", "m1", &flight("B1", "F1", "2026-12-03T12:00:00Z")),
            anon("2026-12-01T09:10:00Z", "v2", &flight("B2", "F2", "2026-12-04T12:00:00Z")),
            // the same booking as hers, seen again from the phone
            anon("2026-12-01T09:20:00Z", "v1", &flight("B1", "F1", "2026-12-03T12:00:00Z")),
            r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"login","traits":{}}"#.to_string(),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-05T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-02T12:00:00Z ann email remind: Check in for F1",
            "2026-12-03T12:00:00Z ann email remind: Check in for F2",
        ]
    );
    let view = h.rt.user("ann").await.expect("ann");
    let mut states: Vec<(String, String, Status)> = view
        .enrollments
        .iter()
        .map(|e| (e.id.to_string(), e.user_id.to_string(), e.status))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            ("checkin:ann:B1:1".into(), "ann".into(), Status::Completed),
            (
                "checkin:anon:dev-1:B1:1".into(),
                "anon:dev-1".into(),
                Status::Exited
            ),
            (
                "checkin:anon:dev-1:B2:1".into(),
                "ann".into(),
                Status::Completed
            ),
        ]
    );
}

/// A stopped journey ends each of her keyed enrollments within the scheduler's next minute
/// (the sweep reads each profile's records of the journey).
#[tokio::test]
async fn a_stop_ends_every_keyed_enrollment_at_once() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-05T12:00:00Z"),
            ),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m2",
                &flight("B2", "F2", "2026-12-06T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.publish(&CHECKIN.replace("steps:\n", "status: stopped\nsteps:\n"))
        .await;
    let stopped_at = h.now();
    assert_eq!(h.rt.tick().await.expect("tick").stops, 1);
    h.advance_to(stopped_at).await;
    let view = h.rt.user("ann").await.expect("ann");
    assert_eq!(view.enrollments.len(), 2);
    for e in &view.enrollments {
        assert_eq!(e.status, Status::Exited, "{}", e.id);
        assert_eq!(e.ended_at, Some(stopped_at), "{}", e.id);
        assert_eq!(e.end_reason.as_deref(), Some("journey stopped"), "{}", e.id);
    }
    h.advance_to(at("2026-12-08T00:00:00Z")).await;
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
}

/// `enrollment_key` keys by the trigger event: refused with a trigger that has none of her own,
/// and when it reads anything but the event.
#[test]
fn an_enrollment_key_is_refused_without_an_event_trigger() {
    let text = |trigger: &str, key: &str| {
        format!("id: j\nname: J\ntrigger: {trigger}\nenrollment_key: {key}\nreentry: after_exit\nsteps:\n  - id: s\n    exit: true\n")
    };
    for (trigger, kind) in [
        ("{schedule: {cron: \"0 9 * * *\"}}", "a `schedule`"),
        ("{trait_changed: plan}", "a `trait_changed`"),
        (
            "{repeated: {event: e, times: 2, within: 1d}}",
            "a `repeated`",
        ),
        ("{inactive: {events: [e], for: 7d}}", "an `inactive`"),
    ] {
        let e = waymark::dsl::parse("j.yaml", &text(trigger, "event.id"))
            .expect_err(trigger)
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            e.contains(&format!("{kind} trigger enters her on no event of her own")),
            "{trigger}: {e}"
        );
        assert!(e.contains("use `trigger: {event: <name>}`"), "{e}");
    }
    let e = waymark::dsl::parse("j.yaml", &text("{event: e}", "profile.id"))
        .expect_err("profile")
        .iter()
        .map(|f| f.message.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        e.contains("`profile.id` is not a value of the trigger event"),
        "{e}"
    );
    for key in ["event.booking_id", "trigger.booking.id"] {
        waymark::dsl::parse("j.yaml", &text("{event: e}", key)).expect(key);
    }
}

/// An ended enrollment's record is kept as long as its trigger can come back after its end
/// (15 days: it ended at 2026-12-02T12:00; a dead-letter queue keeps a message 14 days), and no shorter than its goal's window after its
/// entry; what its value's enrollments left (its id's number, what the entry rule reads) 430
/// days after that: longer than anything its id names (ledger, timeline, inbox: 400 days,
/// written while the record lives), and than the entry rule reads it (`reentry: never`: for
/// good). An active one, and a journey without a key, are kept for good. A wake-up that finds
/// no record of a keyed enrollment is stale, and dropped.
#[tokio::test]
async fn an_ended_keyed_enrollment_leaves_its_number_longer_than_what_its_id_names() {
    use waymark::store::{Expect, Key, Store};
    let goal = "goal: {event: checked_in, within: 30d}\nsteps:\n";
    for (reentry, with_goal, record, last_entry) in [
        (
            "reentry: after_exit",
            false,
            "2026-12-17T12:00:00Z",
            Some("2028-02-20T12:00:00Z"),
        ),
        (
            "reentry: after_exit",
            true,
            "2026-12-31T09:00:00Z",
            Some("2028-03-05T09:00:00Z"),
        ),
        (
            "reentry: {after: 14d}",
            false,
            "2026-12-17T12:00:00Z",
            Some("2028-02-20T12:00:00Z"),
        ),
        ("reentry: never", false, "2026-12-17T12:00:00Z", None),
    ] {
        let mut text = CHECKIN.replace("reentry: after_exit", reentry);
        if with_goal {
            text = text.replace("steps:\n", goal);
        }
        let h = Harness::new("2026-12-01T08:00:00Z");
        h.publish(&text).await;
        h.play(
            &[
                ANN.to_string(),
                // completes at 2026-12-02T12:00
                booked(
                    "2026-12-01T09:00:00Z",
                    "ann",
                    "m1",
                    &flight("B1", "F1", "2026-12-03T12:00:00Z"),
                ),
                booked(
                    "2026-12-01T09:00:00Z",
                    "ann",
                    "m2",
                    &flight("B2", "F2", "2026-12-09T12:00:00Z"),
                ),
            ]
            .join("\n"),
        )
        .await;
        h.advance_to(at("2026-12-03T00:00:00Z")).await;
        let stored = |sk: &str| {
            let store = h.store.clone();
            let key = Key::new("U#ann", sk);
            async move { store.get(&key).await.expect("read") }
        };
        let expires = |sk: &'static str| {
            let got = stored(sk);
            async move { got.await.unwrap_or_else(|| panic!("{sk}")).expires }
        };
        let day = 86_400;
        let (record, last_entry) = (
            at(record).as_second(),
            last_entry.map(|t| at(t).as_second()),
        );
        assert_eq!(
            expires("E#checkin#B1").await,
            Some(record),
            "{reentry} {with_goal}"
        );
        assert_eq!(
            expires("K#checkin#B1").await,
            last_entry,
            "{reentry} {with_goal}"
        );
        if let Some(last_entry) = last_entry {
            assert!(last_entry >= record + 400 * day, "{reentry}");
        }
        assert_eq!(expires("E#checkin#B2").await, None, "active: {reentry}");
        assert!(stored("K#checkin#B2").await.is_none(), "active: {reentry}");

        // A wake-up of an expired record is stale.
        let key = Key::new("U#ann", "E#checkin#B2");
        h.store.delete(&key, Expect::Any).await.expect("delete");
        h.advance_to(at("2026-12-09T00:00:00Z")).await;
        assert_eq!(h.outbox().len(), 1, "{reentry}: {:?}", h.outbox());
    }
    // A journey without a key keeps its one record.
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(REMIND).await;
    h.play(&[ANN.to_string(), r#"{"at":"2026-12-01T09:00:00Z","type":"track","userId":"ann","event":"signed_up","messageId":"s"}"#.to_string()].join("\n")).await;
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    let r = h
        .store
        .get(&Key::new("U#ann", "E#remind"))
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(r.expires, None);
    assert!(h.store.query("U#ann", "K#").await.expect("read").is_empty());
    assert_eq!(h.outbox().len(), 1);
}

/// A login moves the visitor's keyed enrollments to her within the bound: past it, the
/// visitor's ends, saying why.
#[tokio::test]
async fn a_login_moves_the_visitors_keyed_enrollments_within_the_bound() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    let mut script = vec![ANN.to_string()];
    for i in 1..MAX_KEYED {
        script.push(booked(
            "2026-12-01T09:00:00Z",
            "ann",
            &format!("m{i}"),
            &flight(&format!("B{i:02}"), "F", "2026-12-10T12:00:00Z"),
        ));
    }
    for v in ["V1", "V2"] {
        script.push(format!(
            r#"{{"at":"2026-12-01T09:10:00Z","type":"track","anonymousId":"dev-1","event":"flight_booked","messageId":"{v}","properties":{}}}"#,
            flight(v, "F", "2026-12-10T12:00:00Z")
        ));
    }
    script.push(r#"{"at":"2026-12-01T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"login","traits":{}}"#.to_string());
    h.play(&script.join("\n")).await;
    let view = h.rt.user("ann").await.expect("ann");
    let active = view.enrollments.iter().filter(|e| e.is_active()).count();
    assert_eq!(active, MAX_KEYED);
    let ended: Vec<String> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Merged {
                ended: true,
                reason,
                ..
            } => Some(format!(
                "{}: {}",
                e.enrollment,
                reason.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        [format!("checkin:anon:dev-1:V2:1: ann is in this journey {MAX_KEYED} times at once already, the most a user may be")]
    );
    h.advance_to(at("2026-12-11T00:00:00Z")).await;
    assert_eq!(h.outbox().len(), MAX_KEYED);
}

/// Emulates DynamoDB's TTL on `user`'s partition: deletes each record expired at `now`.
async fn expire(h: &Harness, user: &str) {
    use waymark::store::{Expect, Store};
    let now = h.now().as_second();
    let pk = format!("U#{user}");
    for r in h.store.query(&pk, "").await.expect("query") {
        if r.expires.is_some_and(|t| t <= now) {
            h.store.delete(&r.key, Expect::Any).await.expect("delete");
        }
    }
}

/// A booking entered again after its first enrollment ended and the entry rule's time passed
/// is a new enrollment with an id of its own (`n` 2), never the first one's: its reminder is
/// not found sent in the ledger, where the first one's stays 400 days.
#[tokio::test]
async fn a_value_entered_again_long_after_never_reuses_an_id() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2027-01-15T00:00:00Z")).await;
    expire(&h, "ann").await;
    h.play(&booked(
        "2027-01-15T09:00:00Z",
        "ann",
        "m2",
        &flight("B1", "F9", "2027-01-20T12:00:00Z"),
    ))
    .await;
    h.advance_to(at("2027-01-21T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-02T12:00:00Z ann email remind: Check in for F1",
            "2027-01-19T12:00:00Z ann email remind: Check in for F9",
        ]
    );
}

/// Her timeline's entries and refusals of the journey, one line each: `entered <id>` or
/// `not_entered <reason> [<id>]: <detail>`.
async fn entries_of(h: &Harness, user: &str) -> Vec<String> {
    let mut view = h.rt.user(user).await.expect("user");
    view.timeline.sort_by_key(|e| e.at);
    view.timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Entered { .. } => Some(format!("entered {}", e.enrollment)),
            What::NotEntered { reason, detail, .. } => Some(format!(
                "not_entered {reason} [{}]: {}",
                e.enrollment,
                detail.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

/// Once an ended enrollment's record is gone (7 days after its end), the same value is judged
/// by what it left: entered again with the next id (`n` 2) under `after_exit`, refused for
/// good under `never`, and until its time under `after`, naming the enrollment in the way.
#[tokio::test]
async fn a_value_whose_record_is_gone_is_judged_and_numbered_by_what_it_left() {
    use waymark::store::{Key, Store};
    for (reentry, sent, last) in [
        ("reentry: after_exit", 2, "entered checkin:ann:B1:2".to_string()),
        (
            "reentry: never",
            1,
            "not_entered reentry [checkin:ann:B1:1]: `reentry: never`, and the user entered on 2026-12-01T09:00:00Z".to_string(),
        ),
        (
            "reentry: {after: 60d}",
            1,
            "not_entered reentry [checkin:ann:B1:1]: `reentry: after 60d`: may enter again from 2027-01-30T09:00:00Z".to_string(),
        ),
    ] {
        let h = Harness::new("2026-12-01T08:00:00Z");
        h.publish(&CHECKIN.replace("reentry: after_exit", reentry))
            .await;
        h.play(
            &[
                ANN.to_string(),
                booked(
                    "2026-12-01T09:00:00Z",
                    "ann",
                    "m1",
                    &flight("B1", "F1", "2026-12-03T12:00:00Z"),
                ),
            ]
            .join("\n"),
        )
        .await;
        h.advance_to(at("2026-12-20T00:00:00Z")).await;
        expire(&h, "ann").await;
        let gone = h.store.get(&Key::new("U#ann", "E#checkin#B1")).await;
        assert!(gone.expect("read").is_none(), "{reentry}");
        h.play(&booked(
            "2026-12-20T09:00:00Z",
            "ann",
            "m2",
            &flight("B1", "F9", "2026-12-28T12:00:00Z"),
        ))
        .await;
        h.advance_to(at("2026-12-29T00:00:00Z")).await;
        assert_eq!(h.outbox().len(), sent, "{reentry}: {:?}", h.outbox());
        assert_eq!(
            entries_of(&h, "ann").await.last(),
            Some(&last),
            "{reentry}"
        );
    }
}

/// A booking's trigger redriven from the dead-letter queue with no duplicate marker (it failed
/// after it entered her, before it was marked handled; a queue keeps a message a week, its
/// dead-letter queue until 14 days after it was sent) finds its ended enrollment still kept,
/// and enters nothing: no second reminder for one booking.
#[tokio::test]
async fn a_trigger_redriven_without_its_duplicate_marker_enters_nothing() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    let trigger = booked(
        "2026-12-01T09:00:00Z",
        "ann",
        "m1",
        &flight("B1", "F1", "2026-12-03T12:00:00Z"),
    );
    h.play(&[ANN.to_string(), trigger.clone()].join("\n")).await;
    // Ended at 2026-12-02T12:00 with its reminder; 11 days later, with no marker (one lives
    // as long as the message can come back: taken away here, as if never written).
    h.advance_to(at("2026-12-13T00:00:00Z")).await;
    expire(&h, "ann").await;
    {
        use waymark::store::{Expect, Key, Store};
        h.store
            .delete(&Key::new("U#ann", "D#m1"), Expect::Any)
            .await
            .expect("delete");
    }
    let script = waymark::simulate::parse_script(&trigger).expect("script");
    let limits = waymark::event::Limits {
        max_past: jiff::SignedDuration::from_hours(24 * 30),
        max_future: jiff::SignedDuration::from_hours(1),
    };
    let body = serde_json::to_vec(&script[0].payload).expect("payload");
    let again = waymark::event::parse_call(waymark::event::Call::Track, &body, h.now(), &limits)
        .expect("event");
    h.deliver(again).await;
    h.advance_to(at("2026-12-14T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-02T12:00:00Z ann email remind: Check in for F1"]
    );
}

/// A buyer with a booking a value, each ended within minutes: an event of hers days later
/// reads her live enrollments alone, not a record a booking of the last 430 days; what each
/// value left is kept apart, and read only when that value triggers again.
#[tokio::test]
async fn an_event_reads_only_her_live_enrollments_however_many_values_ended() {
    use waymark::store::Store;
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(CHECKIN).await;
    let mut script = vec![ANN.replace("08:00:00", "09:00:00")];
    // Flights leaving within the hour: each reminded at once, and ended.
    for i in 0..40 {
        script.push(booked(
            &format!("2026-12-01T09:{:02}:00Z", i + 1),
            "ann",
            &format!("m{i}"),
            &flight(&format!("B{i:02}"), "F", "2026-12-01T10:00:00Z"),
        ));
    }
    script.push(booked(
        "2026-12-01T09:50:00Z",
        "ann",
        "live",
        &flight("LIVE", "F", "2026-12-20T12:00:00Z"),
    ));
    h.play(&script.join("\n")).await;
    assert_eq!(h.outbox().len(), 40);
    h.advance_to(at("2026-12-17T00:00:00Z")).await;
    expire(&h, "ann").await;
    faulty.take_queried();
    h.play(r#"{"at":"2026-12-17T09:00:00Z","type":"track","userId":"ann","event":"flight_cancelled","messageId":"c","properties":{"booking_id":"OTHER"}}"#)
        .await;
    let queried = faulty.take_queried();
    assert_eq!(queried.get("E#"), Some(&1), "{queried:?}");
    assert_eq!(queried.get("K#"), None, "{queried:?}");
    let left = h.store.query("U#ann", "K#").await.expect("read");
    assert_eq!(left.len(), 40);
    // The live one goes on.
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    assert_eq!(h.outbox().len(), 41);
}

/// A login moves the visitor's enrollment of a value whose record of hers is gone: numbered
/// no lower than her last enrollment of the value, so that her next one takes an id of its
/// own (`n` 3) while the moved one's record is still kept; with `never`, the moved one ends.
#[tokio::test]
async fn a_login_judges_and_numbers_the_visitors_value_by_what_hers_left() {
    let visitor = |at: &str, id: &str, departs: &str| {
        format!(
            r#"{{"at":"{at}","type":"track","anonymousId":"dev-1","event":"flight_booked","messageId":"{id}","properties":{}}}"#,
            flight("B1", "FV", departs)
        )
    };
    let login = r#"{"at":"2026-12-20T10:00:00Z","type":"identify","userId":"ann","anonymousId":"dev-1","messageId":"login","traits":{}}"#;

    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T12:00:00Z"),
            ),
            booked(
                "2026-12-05T09:00:00Z",
                "ann",
                "m2",
                &flight("B1", "F2", "2026-12-07T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    expire(&h, "ann").await;
    h.play(
        &[
            visitor("2026-12-20T09:00:00Z", "v1", "2026-12-30T12:00:00Z"),
            login.to_string(),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-31T00:00:00Z")).await;
    h.play(&booked(
        "2026-12-31T09:00:00Z",
        "ann",
        "m3",
        &flight("B1", "F3", "2027-01-05T12:00:00Z"),
    ))
    .await;
    h.advance_to(at("2027-01-06T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        [
            "2026-12-02T12:00:00Z ann email remind: Check in for F1",
            "2026-12-06T12:00:00Z ann email remind: Check in for F2",
            "2026-12-29T12:00:00Z ann email remind: Check in for FV",
            "2027-01-04T12:00:00Z ann email remind: Check in for F3",
        ]
    );
    assert_eq!(
        entries_of(&h, "ann").await.last().map(String::as_str),
        Some("entered checkin:ann:B1:3")
    );

    // With `never`, her value may not enter again: the visitor's ends at the login.
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHECKIN.replace("reentry: after_exit", "reentry: never"))
        .await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    expire(&h, "ann").await;
    h.play(
        &[
            visitor("2026-12-20T09:00:00Z", "v1", "2026-12-30T12:00:00Z"),
            login.to_string(),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-31T00:00:00Z")).await;
    assert_eq!(
        h.outbox(),
        ["2026-12-02T12:00:00Z ann email remind: Check in for F1"]
    );
    let view = h.rt.user("ann").await.expect("user");
    let ended: Vec<String> = view
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            What::Merged {
                ended: true,
                reason,
                ..
            } => reason.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        ended,
        ["ann may not be in this journey again: `reentry: never`, and the user entered on 2026-12-01T09:00:00Z"]
    );
}

/// A value the anonymous visitor she turned out to be entered, with `never`, stays refused to
/// her once the visitor's record of it is gone: what it left says so.
#[tokio::test]
async fn a_visitors_value_whose_record_is_gone_still_counts_at_her_entry() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(&CHECKIN.replace("reentry: after_exit", "reentry: never"))
        .await;
    h.play(&format!(
        r#"{{"at":"2026-12-01T09:00:00Z","type":"track","anonymousId":"dev-2","event":"flight_booked","messageId":"v1","properties":{}}}"#,
        flight("B7", "F7", "2026-12-03T12:00:00Z")
    ))
    .await;
    h.advance_to(at("2026-12-20T00:00:00Z")).await;
    expire(&h, "anon:dev-2").await;
    h.play(
        &[
            ANN.replace("2026-12-01T08:00:00Z", "2026-12-20T08:00:00Z")
                .replace(
                    r#""userId":"ann""#,
                    r#""userId":"ann","anonymousId":"dev-2""#,
                ),
            booked(
                "2026-12-20T09:00:00Z",
                "ann",
                "m1",
                &flight("B7", "F8", "2026-12-28T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-29T00:00:00Z")).await;
    // (The visitor had no address: her reminder was skipped.)
    assert_eq!(h.outbox(), Vec::<String>::new());
    assert_eq!(
        entries_of(&h, "ann").await.last().map(String::as_str),
        Some("not_entered reentry [checkin:anon:dev-2:B7:1]: `reentry: never`, and the user entered on 2026-12-01T09:00:00Z (as the anonymous visitor `anon:dev-2` she turned out to be)")
    );
}

/// Ann's booking B1, leaving within the hour: reminded at once, and ended, but the reminder's
/// ledger write fails (once), so her ended record is stored still owing its outbox, and the
/// event is to be retried.
async fn ended_owing_its_reminder() -> Harness {
    let (h, faulty) = support::faulty::faulty_harness();
    h.publish(CHECKIN).await;
    h.play(&ANN.replace("08:00:00", "09:00:00")).await;
    *faulty.fail_write_of.lock().expect("fail") = Some("L#".into());
    h.play(&booked(
        "2026-12-01T09:01:00Z",
        "ann",
        "m1",
        &flight("B1", "F1", "2026-12-01T10:00:00Z"),
    ))
    .await;
    assert!(faulty.fail_write_of.lock().expect("fail").is_none());
    assert_eq!(h.outbox().len(), 0);
    h
}

/// An ended record read from the store that still owes its outbox, with no last entry beside
/// it (an earlier build's, kept longer): its settle keeps the value's last entry before it
/// writes the record with its own, shorter time.
#[tokio::test]
async fn an_ended_record_without_a_last_entry_gets_one_at_its_settle() {
    use waymark::store::{Expect, Key, Store};
    let h = ended_owing_its_reminder().await;
    let last = Key::new("U#ann", "K#checkin#B1");
    h.store.delete(&last, Expect::Any).await.expect("delete");
    h.advance_to(at("2026-12-02T00:00:00Z")).await;
    assert_eq!(h.outbox().len(), 1);
    let kept = h.store.get(&last).await.expect("read").expect("kept");
    let record = h.store.get(&Key::new("U#ann", "E#checkin#B1")).await;
    let record = record.expect("read").expect("kept");
    assert!(record.expires.is_some(), "{record:?}");
    assert!(kept.expires > record.expires, "{kept:?}");
}

/// An ended record that still owes its outbox, settled long after its end (read before
/// DynamoDB's lazy TTL deleted it): written again, it is kept from its settle, not from its
/// end, so that it does not go the moment it is written (a settle that fails again leaves
/// what it still owes in it, for the message's retry to find).
#[tokio::test]
async fn an_ended_record_settled_long_after_its_end_is_kept_from_the_settle() {
    use waymark::store::{Key, Store};
    let h = ended_owing_its_reminder().await;
    // Settled 19 days after its end (ended + 15 days is past).
    h.clock.set(at("2026-12-20T09:00:00Z"));
    h.advance_to(at("2026-12-20T09:05:00Z")).await;
    assert_eq!(h.outbox().len(), 1);
    let record = h.store.get(&Key::new("U#ann", "E#checkin#B1")).await;
    let record = record.expect("read").expect("kept");
    let from_settle = at("2026-12-20T09:00:00Z") + jiff::SignedDuration::from_hours(24 * 15);
    assert!(
        record.expires >= Some(from_settle.as_second()),
        "{:?}",
        record.expires
    );
}

/// An ended keyed record is kept for its own version's goal window, whatever the latest
/// version says (review r1 MEDIUM): a version published during the enrollment without the
/// goal does not shorten it, and a goal event within the window it entered with converts it
/// after the dedup time is past.
#[tokio::test]
async fn an_ended_record_keeps_the_goal_window_of_its_own_version() {
    use waymark::store::{Key, Store};
    let with_goal = CHECKIN.replace(
        "steps:\n",
        "goal: {event: checked_in, within: 30d}\nsteps:\n",
    );
    let h = Harness::new("2026-12-01T08:00:00Z");
    assert_eq!(h.publish(&with_goal).await, 1);
    h.play(
        &[
            ANN.to_string(),
            // completes at 2026-12-02T12:00
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    // the next version, published while she waits, has no goal
    h.advance_to(at("2026-12-01T12:00:00Z")).await;
    assert_eq!(h.publish(CHECKIN).await, 2);
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(h.outbox().len(), 1);
    let record = h.store.get(&Key::new("U#ann", "E#checkin#B1")).await;
    let record = record.expect("read").expect("kept");
    // 30 days after its entry, not 15 after its end (2026-12-17T12:00)
    assert_eq!(record.expires, Some(at("2026-12-31T09:00:00Z").as_second()));
    // a goal on day 20, after what 15 days would have kept, still converts it
    h.advance_to(at("2026-12-20T09:00:00Z")).await;
    expire(&h, "ann").await;
    h.play(r#"{"at":"2026-12-20T09:00:00Z","type":"track","userId":"ann","event":"checked_in","messageId":"c1"}"#)
        .await;
    let converted =
        h.rt.user("ann")
            .await
            .expect("ann")
            .timeline
            .iter()
            .filter(|e| matches!(e.what, What::Converted { .. }))
            .count();
    assert_eq!(converted, 1);
}

/// Her erasure deletes what her values left with the rest of her partition.
#[tokio::test]
async fn an_erasure_deletes_what_her_values_left() {
    use waymark::store::Store;
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T12:00:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    h.advance_to(at("2026-12-03T00:00:00Z")).await;
    assert_eq!(h.store.query("U#ann", "K#").await.expect("read").len(), 1);
    h.rt.erase("ann").await.expect("erase");
    let left: Vec<String> = h
        .store
        .query("U#ann", "")
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.key.sk.to_string())
        .collect();
    assert_eq!(left, ["P"]);
}

/// A whole number is one value however written: `1.0` is `1`, and so is `"1"`.
#[test]
fn a_whole_number_is_one_value_however_written() {
    let j = journey(CHECKIN);
    for v in [
        serde_json::json!(1),
        serde_json::json!(1.0),
        serde_json::json!("1"),
    ] {
        assert_eq!(
            j.key_of(&serde_json::json!({ "booking_id": v })),
            Some(Ok("1".to_string())),
            "{v}"
        );
    }
    assert_eq!(
        j.key_of(&serde_json::json!({"booking_id": 1.5})),
        Some(Ok("1.5".to_string()))
    );
}

/// A number is one key however it is written, also a whole one past 1e15 (`1e16` is the
/// integer `10000000000000000`) and past 2^63; a string is taken as written, so `"1.0"` is no
/// number's spelling (text is an id: `"1.10"` is not `"1.1"`).
#[test]
fn a_number_is_one_key_however_written_and_text_as_written() {
    let j = journey(CHECKIN);
    let key = |written: &str| {
        let event: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"booking_id": {written}}}"#)).expect(written);
        j.key_of(&event).expect("a keyed journey").expect("a key")
    };
    let same = [
        (
            "1000",
            &["1000.0", "1e3", "1E+3", "1.000e3", "\"1000\""][..],
        ),
        (
            "10000000000000000",
            &["1e16", "10000000000000000.0", "1.0e16"][..],
        ),
        (
            "10000000000000000000",
            &["1e19", "10000000000000000000.0"][..],
        ),
        (
            "-1000000000000000000",
            &["-1e18", "-1000000000000000000.0"][..],
        ),
        ("0", &["-0", "-0.0", "0.0", "0e5"][..]),
        ("1.5", &["1.50", "15e-1"][..]),
    ];
    for (one, others) in same {
        assert_eq!(key(one), one.trim_matches('"'), "{one}");
        for other in others {
            assert_eq!(key(other), key(one), "{other} is {one}");
        }
    }
    assert_eq!(key("\"1.0\""), "1.0");
    assert_eq!(key("\"1.10\""), "1.10");
    assert_ne!(key("\"1.10\""), key("\"1.1\""));
}

/// `GET /v1/users/{id}` names each keyed journey's `enrollment_key` path beside her
/// enrollments' values, and says when it was read, so that `waymark why` tells a wake-up past
/// its time (the scheduler not run: here, the clock moved past it and nothing handled) from one
/// still to come.
#[tokio::test]
async fn the_user_view_names_the_key_and_when_it_was_read() {
    let h = Harness::new("2026-12-01T08:00:00Z");
    h.publish(CHECKIN).await;
    h.play(
        &[
            ANN.to_string(),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m1",
                &flight("B1", "F1", "2026-12-03T10:30:00Z"),
            ),
            booked(
                "2026-12-01T09:00:00Z",
                "ann",
                "m2",
                &flight("B2", "F2", "2026-12-09T10:30:00Z"),
            ),
        ]
        .join("\n"),
    )
    .await;
    // The engine is not run past B1's check-in: the clock alone moves.
    h.clock.set(at("2026-12-02T10:42:00Z"));
    let api = support::view::api(&h);
    let (status, view, text) = support::view::user_view(&api, "ann").await;
    assert_eq!(status, http::StatusCode::OK, "{text}");
    assert_eq!(view["at"], "2026-12-02T10:42:00Z", "{text}");
    assert_eq!(
        view["enrollment_keys"],
        serde_json::json!({"checkin": "event.booking_id"}),
        "{text}"
    );
    let mut pending: Vec<(String, String)> = view["enrollments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["key"].as_str().unwrap_or_default().to_string(),
                e["pending"]["at"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    pending.sort();
    assert_eq!(
        pending,
        [
            ("B1".into(), "2026-12-02T10:30:00Z".into()),
            ("B2".into(), "2026-12-08T10:30:00Z".into())
        ]
    );
}
