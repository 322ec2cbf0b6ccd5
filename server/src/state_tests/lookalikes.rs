//! Lookalike nicks and rooms: refused while the one they look like is held, free once it is not.

use super::*;

#[test]
fn a_nick_that_looks_like_anothers_is_taken() {
    let mut chat = Chat::new();
    let [_alice, bob] = chat.users(["alice", "bob"]);
    // Cyrillic а, fullwidth, mathematical bold, case, `rn` for `m` (not for the user's own).
    for lookalike in ["аlice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞", "ALICE", "a1ice"] {
        let (code, message) = chat
            .state
            .register(99, lookalike, Inbox::default(), Bytes::new(), true)
            .expect_err(lookalike);
        assert_eq!(code, ErrorCode::NickTaken, "{lookalike}");
        let code = chat.refused(&bob, &mut |st, me| st.set_nick(me, None, lookalike));
        assert_eq!(code, ErrorCode::NickTaken, "{lookalike}");
        if lookalike != "ALICE" {
            assert!(
                message.contains("looks like the nick of \"alice\""),
                "{message}"
            );
        }
    }
    chat.user("rnike");
    assert_eq!(code(chat.try_register("mike")), ErrorCode::NickTaken);
    // A capital I looks like an l, though it is an i.
    chat.user("Ian");
    assert_eq!(code(chat.try_register("lan")), ErrorCode::NickTaken);
    assert_eq!(code(chat.try_register("IAN")), ErrorCode::NickTaken);
    chat.user("lain");
    assert_eq!(code(chat.try_register("Iain")), ErrorCode::NickTaken);
    assert_eq!(chat.state.users(), 5, "no refusal registered anyone");
}

#[test]
fn one_may_take_a_lookalike_of_ones_own_nick_and_frees_the_old_one() {
    let mut chat = Chat::new();
    let [bob] = chat.users(["bob"]);
    chat.act(&bob, &mut |st, me| st.set_nick(me, None, "BOB"));
    chat.act(&bob, &mut |st, me| st.set_nick(me, None, "b0b"));
    assert_eq!(chat.state.nick(&bob.who), "b0b");
    assert_eq!(code(chat.try_register("bob")), ErrorCode::NickTaken);
    chat.act(&bob, &mut |st, me| st.set_nick(me, None, "robert"));
    // The old nick's skeleton went with it: someone else may be `bob` now, and once they are
    // gone, `B0B`.
    let other = chat.user("bob");
    assert_eq!(code(chat.try_register("r0bert")), ErrorCode::NickTaken);
    let _ = chat.state.remove(other.who, None);
    chat.user("B0B");
}

#[test]
fn a_new_room_that_looks_like_one_held_is_refused() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    let (code, message) = chat
        .state
        .join(&bob.who, None, "0PS", None)
        .expect_err("a lookalike");
    assert_eq!(code, ErrorCode::RoomInvalid);
    assert_eq!(
        message,
        "\"0PS\" looks like the room \"ops\"; join that one"
    );
    assert_eq!(
        code_of_join(&mut chat, &bob, "lobby"),
        None,
        "the room itself, any case"
    );
    assert_eq!(code_of_join(&mut chat, &bob, "OPS"), None);
    assert_eq!(code_of_join(&mut chat, &bob, "Lobby"), None);
    assert_eq!(
        code_of_join(&mut chat, &bob, "l0bby"),
        Some(ErrorCode::RoomInvalid)
    );
    // A capital I looks like an l.
    chat.join(&ann, "Intro");
    assert_eq!(
        code_of_join(&mut chat, &bob, "lntro"),
        Some(ErrorCode::RoomInvalid)
    );
}

fn code_of_join(chat: &mut Chat, user: &User, room: &str) -> Option<ErrorCode> {
    let result = chat.state.join(&user.who, None, room, None);
    result.err().map(|(code, _)| code)
}

#[test]
fn a_forgotten_room_releases_its_skeleton() {
    let mut chat = Chat {
        state: State::new("Lobby", 5).with_max_rooms(2),
        next_id: 1,
    };
    let [ann] = chat.users(["ann"]);
    // Forgotten when its last member leaves.
    chat.join(&ann, "ops");
    chat.leave(&ann, "ops");
    assert_eq!(chat.join(&ann, "0ps")["room"], "0ps");
    // Forgotten when the room cap needs its place (it kept a message).
    chat.say(&ann, "0ps", "kept");
    chat.leave(&ann, "0ps");
    chat.join(&ann, "other");
    chat.leave(&ann, "other");
    assert_eq!(chat.join(&ann, "OPS")["room"], "OPS");
}

#[test]
fn restored_rooms_that_look_alike_are_both_kept() {
    let mut chat = Chat::new();
    chat.state.restore_topic("ops", "first".into());
    chat.state.restore_topic("0ps", "second".into());
    assert_eq!(chat.state.rooms_held(), 3);
    let [ann] = chat.users(["ann"]);
    assert_eq!(chat.join(&ann, "0PS")["topic"], "second");
    assert_eq!(chat.join(&ann, "Ops")["topic"], "first");
}
