//! Private rooms: operators, modes, invitations, kicks, and what non-members can (not) see.

use lanchat_protocol::ModeRequest;

use super::*;

/// A `mode` request (shared with the cluster's privacy tests).
pub(crate) fn mode(
    room: &str,
    invite_only: Option<bool>,
    key: Option<Option<&str>>,
) -> ModeRequest {
    ModeRequest {
        room: room.into(),
        invite_only,
        key: key.map(|k| k.map(str::to_owned)),
        topic_lock: None,
    }
}

/// `ann` makes `Secret` and makes it invite-only; `bob` and `cat` are in the lobby only.
fn invite_only_room() -> (Chat, [User; 3]) {
    let mut chat = Chat::new();
    let [ann, bob, cat] = chat.users(["ann", "bob", "cat"]);
    chat.join(&ann, "Secret");
    chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("secret", Some(true), None))
    });
    ann.inbox.take();
    (chat, [ann, bob, cat])
}

fn join_with(chat: &mut Chat, user: &User, room: &str, key: Option<&str>) -> Result<(), ErrorCode> {
    let result = chat.state.join(&user.who, None, room, key);
    match result {
        Ok(effects) => {
            deliver(&chat.state, Some(&user.inbox), effects);
            user.inbox.take();
            Ok(())
        }
        Err((code, _)) => Err(code),
    }
}

/// The reply to a rule `actor` runs (what reached it before is dropped).
fn answer(chat: &mut Chat, actor: &User, rule: Rule) -> Value {
    chat.act(actor, rule).pop().expect("a reply")
}

fn room_names(chat: &mut Chat, user: &User) -> Vec<String> {
    let reply = chat
        .act(user, &mut |st, me| Ok(st.rooms(me, None, None, 500)))
        .pop()
        .unwrap();
    reply["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_maker_of_a_room_is_its_first_operator() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    let persist = chat.run(&ann, &mut |st, me| st.join(me, None, "Ops", None));
    let reply = ann.inbox.take().pop().unwrap();
    assert_eq!(reply["members"][0]["op"], true, "{reply}");
    // Saved at once: with a data directory the maker stays operator after a restart.
    let Some(Persist::Topic { settings, .. }) = persist else {
        panic!("persisted: {persist:?}")
    };
    assert_eq!(settings.ops, ["ann"]);
    let reply = chat.join(&bob, "ops");
    let members = reply["members"].as_array().unwrap();
    assert_eq!(members[0]["nick"], "ann");
    assert_eq!(members[0]["op"], true);
    assert_eq!(members[1].get("op"), None, "a member is no operator");
    // The default room was made by the server: nobody is its operator.
    let reply = answer(&mut chat, &ann, &mut |st, me| Ok(st.who(me, None, "lobby")));
    assert!(reply["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.get("op").is_none()));
    let refused = chat.refused(&ann, &mut |st, me| {
        st.mode(me, None, mode("lobby", Some(true), None))
    });
    assert_eq!(refused, ErrorCode::NotOperator);
}

#[test]
fn only_operators_change_modes_invite_kick_or_op() {
    let mut chat = Chat::new();
    let [ann, bob, cat] = chat.users(["ann", "bob", "cat"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    let not_operator = [
        chat.refused(&bob, &mut |st, me| {
            st.mode(me, None, mode("ops", Some(true), None))
        }),
        chat.refused(&bob, &mut |st, me| st.invite(me, None, "ops", "cat")),
        chat.refused(&bob, &mut |st, me| st.kick(me, None, "ops", "ann", None)),
        chat.refused(&bob, &mut |st, me| st.op(me, None, "ops", "bob")),
    ];
    assert_eq!(not_operator, [ErrorCode::NotOperator; 4]);
    // A member may read the modes; a non-member is told what it would be told of no room.
    let reply = answer(&mut chat, &bob, &mut |st, me| {
        st.mode(me, None, mode("ops", None, None))
    });
    assert_eq!(reply["cmd"], "mode");
    assert_eq!(reply["invite_only"], false);
    let refused = chat.refused(&cat, &mut |st, me| {
        st.mode(me, None, mode("ops", None, None))
    });
    assert_eq!(refused, ErrorCode::NotInRoom);
    let unknown = chat.refused(&cat, &mut |st, me| {
        st.mode(me, None, mode("nope", None, None))
    });
    assert_eq!(unknown, ErrorCode::NotInRoom);
    // An operator makes bob one too; then bob may.
    let reply = answer(&mut chat, &ann, &mut |st, me| st.op(me, None, "ops", "BOB"));
    assert_eq!(reply["cmd"], "op");
    assert_eq!(reply["nick"], "bob");
    chat.run(&bob, &mut |st, me| {
        st.mode(me, None, mode("ops", Some(true), None))
    });
    let refused = chat.refused(&ann, &mut |st, me| st.op(me, None, "ops", "cat"));
    assert_eq!(refused, ErrorCode::NoSuchNick, "cat is not a member");
}

#[test]
fn a_mode_change_tells_the_members_but_never_the_key() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    ann.inbox.take();
    let persist = chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("ops", None, Some(Some("hunter2"))))
    });
    let reply = ann.inbox.take();
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["has_key"], true);
    let events = bob.inbox.take();
    assert_eq!(events[0]["type"], "mode");
    assert_eq!(events[0]["by"], "ann");
    assert_eq!(events[0]["has_key"], true);
    for line in reply.iter().chain(&events) {
        assert!(!line.to_string().contains("hunter2"), "{line}");
    }
    // The key is persisted (with the operators), for the room to come back as it was.
    let Some(Persist::Topic { settings, .. }) = persist else {
        panic!("persisted: {persist:?}")
    };
    assert_eq!(settings.key.as_deref(), Some("hunter2"));
    assert_eq!(settings.ops, ["ann"]);
    // `key: null` clears it.
    chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("ops", None, Some(None)))
    });
    assert_eq!(ann.inbox.take()[0]["has_key"], false);
}

#[test]
fn an_invite_only_room_refuses_the_uninvited_and_admits_an_invitation_once() {
    let (mut chat, [ann, bob, cat]) = invite_only_room();
    assert_eq!(
        join_with(&mut chat, &bob, "secret", None),
        Err(ErrorCode::NotInvited)
    );
    let reply = answer(&mut chat, &ann, &mut |st, me| {
        st.invite(me, None, "secret", "Bob")
    });
    assert_eq!(reply["cmd"], "invite");
    let invited = bob.inbox.take();
    assert_eq!(invited[0]["type"], "invite");
    assert_eq!(invited[0]["room"], "Secret");
    assert_eq!(invited[0]["by"], "ann");
    assert!(cat.inbox.take().is_empty(), "only the invitee is told");
    assert_eq!(
        join_with(&mut chat, &cat, "secret", None),
        Err(ErrorCode::NotInvited),
        "an invitation is for its nick only"
    );
    assert_eq!(join_with(&mut chat, &bob, "secret", None), Ok(()));
    chat.leave(&bob, "secret");
    assert_eq!(
        join_with(&mut chat, &bob, "secret", None),
        Err(ErrorCode::NotInvited),
        "used once"
    );
    // An operator comes back without an invitation.
    chat.leave(&ann, "secret");
    assert_eq!(join_with(&mut chat, &ann, "secret", None), Ok(()));
    let refused = chat.refused(&ann, &mut |st, me| st.invite(me, None, "secret", "nobody"));
    assert_eq!(refused, ErrorCode::NoSuchNick);
}

#[test]
fn a_keyed_room_admits_the_right_key_only() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "vault");
    chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("vault", None, Some(Some("s3cret"))))
    });
    assert_eq!(
        join_with(&mut chat, &bob, "vault", None),
        Err(ErrorCode::BadKey)
    );
    assert_eq!(
        join_with(&mut chat, &bob, "vault", Some("S3CRET")),
        Err(ErrorCode::BadKey),
        "keys are compared exactly"
    );
    assert_eq!(join_with(&mut chat, &bob, "vault", Some("s3cret")), Ok(()));
}

#[test]
fn a_kick_removes_the_member_and_tells_everyone_with_a_leave() {
    let mut chat = Chat::new();
    let [ann, bob, cat] = chat.users(["ann", "bob", "cat"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    chat.join(&cat, "ops");
    ann.inbox.take();
    bob.inbox.take();
    let reply = chat.act(&ann, &mut |st, me| {
        st.kick(me, None, "ops", "bob", Some("spam".into()))
    });
    assert_eq!(reply.len(), 1, "no event to the operator: {reply:?}");
    assert_eq!(reply[0]["cmd"], "kick");
    for user in [&bob, &cat] {
        let events = user.inbox.take();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (&e["type"], &e["room"], &e["nick"]),
            (&"leave".into(), &"ops".into(), &"bob".into())
        );
        assert_eq!(e["kicked_by"], "ann");
        assert_eq!(e["reason"], "spam");
    }
    let refused = chat.refused(&bob, &mut |st, me| st.say(me, None, "ops", "hi"));
    assert_eq!(refused, ErrorCode::NotInRoom, "bob is out");
    let refused = chat.refused(&ann, &mut |st, me| st.kick(me, None, "ops", "bob", None));
    assert_eq!(refused, ErrorCode::NoSuchNick);
}

#[test]
fn non_members_see_nothing_of_a_private_room() {
    let (mut chat, [ann, bob, _cat]) = invite_only_room();
    chat.run(&ann, &mut |st, me| {
        st.topic(me, None, "secret", Some("plans".into()))
    });
    chat.say(&ann, "secret", "the plan");
    ann.inbox.take();
    // Each answer equals the one for a room that does not exist.
    for asked in ["SECRET", "NOWHERE"] {
        let who = answer(&mut chat, &bob, &mut |st, me| Ok(st.who(me, None, asked)));
        assert_eq!(who["room"], asked);
        assert_eq!(who["members"], Value::Array(vec![]));
        let topic = answer(&mut chat, &bob, &mut |st, me| {
            st.topic(me, None, asked, None)
        });
        assert_eq!(
            (&topic["room"], &topic["topic"]),
            (&asked.into(), &"".into())
        );
        let q = HistoryQuery {
            room: asked.into(),
            before: None,
            after: None,
            limit: None,
        };
        let history = answer(&mut chat, &bob, &mut |st, me| st.history(me, None, &q));
        assert_eq!(history["room"], asked);
        assert_eq!(history["messages"], Value::Array(vec![]));
    }
    assert_eq!(room_names(&mut chat, &bob), ["Lobby"]);
    // A member sees it all, in `rooms` too.
    assert_eq!(room_names(&mut chat, &ann), ["Lobby", "Secret"]);
    let who = answer(
        &mut chat,
        &ann,
        &mut |st, me| Ok(st.who(me, None, "secret")),
    );
    assert_eq!(nicks(&who["members"]), ["ann"]);
    assert_eq!(read_topic(&mut chat, &ann, "secret").1, "plans");
    assert_eq!(history(&mut chat, &ann, "secret", None).1, ["the plan"]);
    // Public again: listed again, readable by all.
    chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("secret", Some(false), None))
    });
    assert_eq!(room_names(&mut chat, &bob), ["Lobby", "Secret"]);
    bob.inbox.take();
    assert_eq!(read_topic(&mut chat, &bob, "secret").1, "plans");
}

#[test]
fn a_locked_topic_is_set_by_operators_only() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    chat.run(&bob, &mut |st, me| {
        st.topic(me, None, "ops", Some("bob's".into()))
    });
    chat.run(&ann, &mut |st, me| {
        st.mode(
            me,
            None,
            ModeRequest {
                topic_lock: Some(true),
                ..mode("ops", None, None)
            },
        )
    });
    let refused = chat.refused(&bob, &mut |st, me| {
        st.topic(me, None, "ops", Some("x".into()))
    });
    assert_eq!(refused, ErrorCode::NotOperator);
    chat.run(&ann, &mut |st, me| {
        st.topic(me, None, "ops", Some("ann's".into()))
    });
    bob.inbox.take();
    assert_eq!(read_topic(&mut chat, &bob, "ops").1, "ann's");
}

#[test]
fn public_rooms_keep_todays_behaviour() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "open");
    chat.say(&ann, "open", "hello");
    assert_eq!(room_names(&mut chat, &bob), ["Lobby", "open"]);
    let who = answer(&mut chat, &bob, &mut |st, me| Ok(st.who(me, None, "open")));
    assert_eq!(nicks(&who["members"]), ["ann"]);
    assert_eq!(history(&mut chat, &bob, "open", None).1, ["hello"]);
    assert_eq!(join_with(&mut chat, &bob, "open", Some("any key")), Ok(()));
}

#[test]
fn a_private_room_is_kept_without_members_and_keeps_its_modes() {
    let (mut chat, [ann, bob, _]) = invite_only_room();
    chat.leave(&ann, "secret");
    assert!(chat.state.holds_room("secret"), "kept: it is private");
    assert_eq!(
        join_with(&mut chat, &bob, "secret", None),
        Err(ErrorCode::NotInvited)
    );
    // Restored from disk: the same.
    let mut fresh = Chat::new();
    let [bob2] = fresh.users(["bob"]);
    fresh.state.restore_settings(
        "Secret",
        RoomSettings {
            invite_only: true,
            ops: vec!["ann".into()],
            ..RoomSettings::default()
        },
    );
    assert_eq!(
        join_with(&mut fresh, &bob2, "secret", None),
        Err(ErrorCode::NotInvited)
    );
}

#[test]
fn a_lookalike_of_a_private_room_is_refused_without_naming_it() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    chat.run(&ann, &mut |st, me| {
        st.mode(me, None, mode("ops", Some(true), None))
    });
    let (code, message) = chat
        .state
        .join(&bob.who, None, "0PS", None)
        .expect_err("looks like ops");
    assert_eq!(code, ErrorCode::RoomInvalid);
    assert!(!message.contains("\"ops\""), "{message}");
    // A public one is named, as before: `a_new_room_that_looks_like_one_held_is_refused`.
}
