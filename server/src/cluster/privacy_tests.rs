//! Two nodes' states fed the same privacy changes in one stream order, without NATS: the rules
//! of a room made private on one hold on the other.

use bytes::Bytes;
use lanchat_protocol::{ErrorCode, RoomNick, ServerFrame};
use serde_json::Value;

use super::{apply, encode};
use crate::cluster::inbound::apply as apply_event;
use crate::cluster::wire::Origin;
use crate::effects::{Audience, Effects};
use crate::state::tests::privacy::mode;
use crate::state::{Registered, RuleChange, State};

fn origin(node: &str) -> Origin {
    Origin {
        node: node.into(),
        except: 0,
        deadline_ms: 0,
    }
}

/// A node's state with users (sessions 1, 2, ...) in the lobby.
fn node(nicks: &[&str]) -> (State<()>, Vec<Registered>) {
    let mut state = State::new("lobby", 10);
    state.set_clustered();
    let users = nicks
        .iter()
        .zip(1..)
        .map(|(nick, id)| {
            state
                .register(id, nick, (), Bytes::from_static(b"welcome\n"), true)
                .unwrap()
                .0
        })
        .collect();
    (state, users)
}

/// The change a rule made (it must have made one).
fn change(effects: Result<Effects, (ErrorCode, String)>) -> RuleChange {
    *effects.expect("accepted").rule.expect("a privacy change")
}

/// `change`, read from the stream by the node `me`, made by the node `by`.
fn read(state: &mut State<()>, me: &str, by: &str, change: &RuleChange) -> Effects {
    let key = lanchat_protocol::validate::name_key(&change.room);
    apply(state, me, &key, &origin(by), &encode(change), true)
}

fn join_code(
    state: &mut State<()>,
    who: &Registered,
    room: &str,
    key: Option<&str>,
) -> Option<ErrorCode> {
    state.join(who, None, room, key).err().map(|(code, _)| code)
}

fn reply(effects: Effects) -> Value {
    serde_json::from_slice(&effects.reply.unwrap()).unwrap()
}

#[test]
fn a_room_made_invite_only_on_one_node_refuses_on_the_other_until_an_invite() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob", "cat"]);
    let made = change(a.join(&ann[0], None, "Secret", None));
    let private = change(a.mode(&ann[0], None, mode("secret", Some(true), None)));
    for c in [&made, &private] {
        let _ = read(&mut b, "b", "a", c);
    }
    assert_eq!(
        join_code(&mut b, &bob[0], "secret", None),
        Some(ErrorCode::NotInvited)
    );
    // Nothing of it shows to a non-member here.
    let who = reply(b.who(&bob[0], None, "secret"));
    assert_eq!(who["members"], serde_json::json!([]), "{who}");
    // Invited from a: bob, on b, is told, and may come in once.
    a.roster().join("lobby", "b", "bob");
    let invite = change(a.invite(&ann[0], None, "secret", "bob"));
    let told = read(&mut b, "b", "a", &invite).event.expect("bob is told");
    assert_eq!(told.to, Audience::User(1));
    assert_eq!(
        &told.line[..],
        b"{\"type\":\"invite\",\"room\":\"Secret\",\"by\":\"ann\"}\n"
    );
    assert_eq!(join_code(&mut b, &bob[0], "secret", None), None);
    // cat was not invited.
    assert_eq!(
        join_code(&mut b, &bob[1], "secret", None),
        Some(ErrorCode::NotInvited)
    );
}

#[test]
fn a_key_reaches_other_nodes_in_the_change_never_in_the_event() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "vault", None));
    let effects = a
        .mode(&ann[0], None, mode("vault", None, Some(Some("s3cret"))))
        .unwrap();
    let line = effects.event.as_ref().unwrap().line.clone();
    assert!(
        !String::from_utf8_lossy(&line).contains("s3cret"),
        "{line:?}"
    );
    let keyed = effects.rule.unwrap();
    for c in [&made, &keyed] {
        let _ = read(&mut b, "b", "a", c);
    }
    assert_eq!(
        join_code(&mut b, &bob[0], "vault", Some("nope")),
        Some(ErrorCode::BadKey)
    );
    assert_eq!(
        join_code(&mut b, &bob[0], "vault", None),
        Some(ErrorCode::BadKey)
    );
    assert_eq!(join_code(&mut b, &bob[0], "vault", Some("s3cret")), None);
}

#[test]
fn operators_are_one_set_an_op_given_on_one_node_counts_on_the_other() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let _ = read(&mut b, "b", "a", &made);
    assert!(b.join(&bob[0], None, "dev", None).is_ok());
    // Not an operator on b before ann makes him one on a.
    let refused = b
        .mode(&bob[0], None, mode("dev", Some(true), None))
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::NotOperator);
    a.roster().join("dev", "b", "bob");
    let op = change(a.op(&ann[0], None, "dev", "bob"));
    let _ = read(&mut b, "b", "a", &op);
    assert!(b.mode(&bob[0], None, mode("dev", Some(true), None)).is_ok());
    // b's `who` marks ann, another node's member, as an operator.
    b.roster().join("dev", "a", "ann");
    let who = reply(b.who(&bob[0], None, "dev"));
    let ann_op = who["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["nick"] == "ann")
        .unwrap()["op"]
        .clone();
    assert_eq!(ann_op, true, "{who}");
}

#[test]
fn changes_made_at_once_on_two_nodes_end_alike_in_stream_order() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let _ = read(&mut b, "b", "a", &made);
    let _ = read(&mut a, "a", "a", &made);
    let _ = b.join(&bob[0], None, "dev", None).unwrap();
    a.roster().join("dev", "b", "bob");
    let op = change(a.op(&ann[0], None, "dev", "bob"));
    for (s, me) in [(&mut a, "a"), (&mut b, "b")] {
        let _ = read(s, me, "a", &op);
    }
    // Each node changes the key at once: the stream holds a's first, then b's.
    let on_a = change(a.mode(&ann[0], None, mode("dev", None, Some(Some("from-a")))));
    let on_b = change(b.mode(&bob[0], None, mode("dev", Some(true), Some(Some("from-b")))));
    for (s, me) in [(&mut a, "a"), (&mut b, "b")] {
        let _ = read(s, me, "a", &on_a);
        let _ = read(s, me, "b", &on_b);
    }
    let settings = a.settings_of("dev").unwrap();
    assert_eq!(Some(&settings), b.settings_of("dev").as_ref());
    assert_eq!(settings.key.as_deref(), Some("from-b"));
    assert!(settings.invite_only);
}

#[test]
fn a_kick_from_another_node_removes_the_member_here_and_tells_the_room() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bc) = node(&["bob", "cat"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let _ = read(&mut b, "b", "a", &made);
    for u in &bc {
        let _ = b.join(u, None, "dev", None).unwrap();
    }
    a.roster().join("dev", "b", "bob");
    a.roster().join("dev", "b", "cat");
    let kick = change(a.kick(&ann[0], None, "dev", "bob", Some("spam".into())));
    let told = read(&mut b, "b", "a", &kick)
        .event
        .expect("the room is told");
    let Audience::Users(mut ids) = told.to else {
        panic!("{:?}", told.to)
    };
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "bob himself and cat");
    let line: Value = serde_json::from_slice(&told.line).unwrap();
    assert_eq!(line["kicked_by"], "ann");
    assert_eq!(line["reason"], "spam");
    // bob is out on b; on a, he is no longer listed.
    let who = reply(b.who(&bc[1], None, "dev"));
    assert!(
        who["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["nick"] != "bob"),
        "{who}"
    );
    let who = reply(a.who(&ann[0], None, "dev"));
    assert!(
        who["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["nick"] != "bob"),
        "{who}"
    );
    assert_eq!(
        b.leave(&bc[0], None, "dev").unwrap_err().0,
        ErrorCode::NotInRoom
    );
}

#[test]
fn a_node_reading_a_room_s_changes_from_the_middle_starts_from_their_settings() {
    let (mut a, ann) = node(&["ann"]);
    let (mut late, bob) = node(&["bob"]);
    let _ = change(a.join(&ann[0], None, "Secret", None));
    let _ = change(a.mode(&ann[0], None, mode("secret", Some(true), None)));
    // Only the last change is still on the stream, read before this node started.
    let kept = change(a.mode(&ann[0], None, mode("secret", None, Some(Some("k")))));
    let key = lanchat_protocol::validate::name_key("Secret");
    let effects = apply(&mut late, "late", &key, &origin("a"), &encode(&kept), false);
    assert!(effects.event.is_none());
    assert_eq!(
        join_code(&mut late, &bob[0], "secret", Some("k")),
        Some(ErrorCode::NotInvited)
    );
    let rooms = reply(late.rooms(&bob[0], None, None, 10));
    assert_eq!(
        rooms["rooms"].as_array().unwrap().len(),
        1,
        "the lobby only: {rooms}"
    );
}

#[test]
fn a_join_read_from_the_stream_uses_the_invitation_everywhere() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, _) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let private = change(a.mode(&ann[0], None, mode("dev", Some(true), None)));
    a.roster().join("lobby", "b", "bob");
    let invite = change(a.invite(&ann[0], None, "dev", "bob"));
    for c in [&made, &private, &invite] {
        let _ = read(&mut b, "b", "a", c);
        let _ = read(&mut a, "a", "a", c);
    }
    // bob joined on a third node: a and b read his join, and the invitation is gone on both.
    let join = ServerFrame::Join(RoomNick {
        room: "dev".into(),
        nick: "bob".into(),
    })
    .encode_line();
    for (s, me) in [(&mut a, "a"), (&mut b, "b")] {
        let _ = apply_event(s, me, Some("dev".into()), &origin("c"), &join, true);
    }
    let (mut c, bob) = node(&["bob"]);
    for cg in [&made, &private, &invite] {
        let _ = read(&mut c, "c", "a", cg);
    }
    let _ = apply_event(&mut c, "c", Some("dev".into()), &origin("c"), &join, true);
    assert_eq!(
        join_code(&mut c, &bob[0], "dev", None),
        Some(ErrorCode::NotInvited)
    );
    assert_eq!(b.invitations_of("dev"), 0);
    assert_eq!(a.invitations_of("dev"), 0);
}

#[test]
fn a_record_that_is_not_a_change_of_its_room_changes_nothing() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let private = change(a.mode(&ann[0], None, mode("dev", Some(true), None)));
    // On another room's subject, or not a change at all.
    let other = apply(
        &mut b,
        "b",
        "elsewhere",
        &origin("a"),
        &encode(&private),
        true,
    );
    assert!(other.event.is_none());
    let junk = apply(
        &mut b,
        "b",
        "dev",
        &origin("a"),
        b"{\"type\":\"mode\"}",
        true,
    );
    assert!(junk.event.is_none());
    let _ = made;
    assert_eq!(join_code(&mut b, &bob[0], "dev", None), None);
}

#[test]
fn a_room_made_on_two_nodes_at_once_was_made_by_the_first_in_the_stream() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    // Each joins before reading the other's join: each node thinks its user made the room.
    let on_a = change(a.join(&ann[0], None, "dev", None));
    a.roster().arriving("dev", 1);
    let on_b = change(b.join(&bob[0], None, "dev", None));
    b.roster().arriving("dev", 1);
    let join = |nick: &str| {
        ServerFrame::Join(RoomNick {
            room: "dev".into(),
            nick: nick.into(),
        })
        .encode_line()
    };
    // The stream: a's change and join (by its session 1), then b's.
    let by = |node: &str| Origin {
        except: 1,
        ..origin(node)
    };
    for (s, me) in [(&mut a, "a"), (&mut b, "b")] {
        let _ = read(s, me, "a", &on_a);
        let _ = apply_event(s, me, Some("dev".into()), &by("a"), &join("ann"), true);
        let _ = read(s, me, "b", &on_b);
        let _ = apply_event(s, me, Some("dev".into()), &by("b"), &join("bob"), true);
    }
    for s in [&a, &b] {
        assert_eq!(s.settings_of("dev").unwrap().ops, ["ann"]);
    }
    let refused = b
        .mode(&bob[0], None, mode("dev", Some(true), None))
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::NotOperator);
}

#[test]
fn a_making_of_a_room_private_here_leaves_its_rules() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, _) = node(&["bob"]);
    let made = change(a.join(&ann[0], None, "Secret", None));
    let private = change(a.mode(&ann[0], None, mode("secret", Some(true), None)));
    for c in [&made, &private] {
        let _ = read(&mut b, "b", "a", c);
    }
    let _ = a.leave(&ann[0], None, "secret").unwrap();
    // A third node that dropped the room makes it again, public, with cat its maker.
    let (mut c, cat) = node(&["cat"]);
    let again = change(c.join(&cat[0], None, "secret", None));
    let _ = read(&mut b, "b", "c", &again);
    let settings = b.settings_of("secret").unwrap();
    assert!(settings.invite_only, "{settings:?}");
    assert_eq!(settings.ops, ["ann"]);
}

#[test]
fn a_public_room_is_kept_with_its_operators_while_another_node_s_member_is_in_it() {
    let (mut a, ann) = node(&["ann"]);
    let made = change(a.join(&ann[0], None, "dev", None));
    let _ = read(&mut a, "a", "a", &made);
    let join = ServerFrame::Join(RoomNick {
        room: "dev".into(),
        nick: "bob".into(),
    })
    .encode_line();
    let _ = apply_event(&mut a, "a", Some("dev".into()), &origin("b"), &join, true);
    // ann leaves; bob, on b, is still in: the room and its operator stay here.
    let _ = a.leave(&ann[0], None, "dev").unwrap();
    assert_eq!(a.settings_of("dev").unwrap().ops, ["ann"]);
    // bob quits: nobody is left anywhere, and a public room with nothing in it is forgotten.
    let quit = Bytes::from_static(b"{\"type\":\"quit\",\"nick\":\"bob\",\"reason\":\"bye\"}\n");
    let _ = apply_event(&mut a, "a", None, &origin("b"), &quit, true);
    assert_eq!(a.settings_of("dev"), None);
}

/// A room event line of `frame`'s kind (`join` or `leave`).
fn room_line(kind: &str, room: &str, nick: &str) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"{kind}\",\"room\":\"{room}\",\"nick\":\"{nick}\"}}\n"
    ))
}

#[test]
fn a_node_reading_the_stream_later_finds_the_same_maker_as_the_nodes_that_were_there() {
    let (mut a, ann) = node(&["ann"]);
    let (mut b, bob) = node(&["bob"]);
    // Made on two nodes at once, as a late node reads it: a's change and join, then b's.
    let on_a = change(a.join(&ann[0], None, "dev", None));
    let on_b = change(b.join(&bob[0], None, "dev", None));
    let (mut late, _) = node(&["cy"]);
    let key = "dev";
    let _ = apply(&mut late, "late", key, &origin("a"), &encode(&on_a), false);
    let _ = apply_event(
        &mut late,
        "late",
        Some(key.into()),
        &origin("a"),
        &room_line("join", "dev", "ann"),
        false,
    );
    let _ = apply(&mut late, "late", key, &origin("b"), &encode(&on_b), false);
    let _ = apply_event(
        &mut late,
        "late",
        Some(key.into()),
        &origin("b"),
        &room_line("join", "dev", "bob"),
        false,
    );
    assert_eq!(late.settings_of("dev").unwrap().ops, ["ann"]);

    // Made again after everyone left: the new maker, as for the nodes that were there.
    let (mut c, cat) = node(&["cat"]);
    let again = change(c.join(&cat[0], None, "dev", None));
    for (line, by) in [
        (room_line("leave", "dev", "ann"), "a"),
        (room_line("leave", "dev", "bob"), "b"),
    ] {
        let _ = apply_event(
            &mut late,
            "late",
            Some(key.into()),
            &origin(by),
            &line,
            false,
        );
    }
    let _ = apply(&mut late, "late", key, &origin("c"), &encode(&again), false);
    assert_eq!(late.settings_of("dev").unwrap().ops, ["cat"]);
}
