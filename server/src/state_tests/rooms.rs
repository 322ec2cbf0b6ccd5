//! `rooms`, paged: which rooms are listed, in what order, and where a page ends.

use super::*;

/// One `rooms` page as `actor` sees it: the names listed and `next`.
fn page(
    chat: &mut Chat,
    actor: &User,
    after: Option<&str>,
    limit: usize,
) -> (Vec<String>, Option<String>) {
    let reply = chat
        .act(actor, &mut |st, me| Ok(st.rooms(me, None, after, limit)))
        .pop()
        .expect("a reply");
    assert_eq!(reply["cmd"], "rooms");
    let names = reply["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["name"].as_str().expect("a name").to_owned())
        .collect();
    (names, reply["next"].as_str().map(str::to_owned))
}

#[test]
fn rooms_are_listed_a_page_at_a_time_in_key_order() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    for room in ["delta", "Alpha", "charlie", "Bravo", "echo"] {
        chat.join(&ann, room);
    }
    let (names, next) = page(&mut chat, &ann, None, 500);
    assert_eq!(
        names,
        ["Alpha", "Bravo", "charlie", "delta", "echo", "Lobby"]
    );
    assert_eq!(next, None, "no `next` on the last page");

    let (names, next) = page(&mut chat, &ann, None, 2);
    assert_eq!(names, ["Alpha", "Bravo"]);
    assert_eq!(next.as_deref(), Some("Bravo"));
    // `after` is compared by key: any spelling of the name, and the page goes on from there.
    let (names, next) = page(&mut chat, &ann, Some("BRAVO"), 2);
    assert_eq!(names, ["charlie", "delta"]);
    assert_eq!(next.as_deref(), Some("delta"));
    let (names, next) = page(&mut chat, &ann, Some("delta"), 2);
    assert_eq!(names, ["echo", "Lobby"]);
    assert_eq!(next, None, "exactly the last rooms: nothing follows");
    // A name that is not a room: the rooms after where it would be.
    let (names, _) = page(&mut chat, &ann, Some("bz"), 2);
    assert_eq!(names, ["charlie", "delta"]);
    let (names, next) = page(&mut chat, &ann, Some("zzz"), 2);
    assert!(names.is_empty() && next.is_none());
}

#[test]
fn only_rooms_with_members_and_the_default_room_are_listed() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "kept");
    chat.say(&ann, "kept", "history keeps this room in memory");
    chat.join(&ann, "shared");
    chat.join(&bob, "shared");
    chat.leave(&ann, "kept");
    chat.leave(&ann, "shared");
    chat.leave(&ann, "lobby");
    chat.leave(&bob, "lobby");
    // "kept" is held (idle, with history) but not listed; the default room is, empty.
    let (names, next) = page(&mut chat, &ann, None, 500);
    assert_eq!(names, ["Lobby", "shared"]);
    assert_eq!(next, None);
    // The last member going takes a room off the list; a new one puts it back.
    chat.leave(&bob, "shared");
    assert_eq!(page(&mut chat, &ann, None, 500).0, ["Lobby"]);
    chat.join(&bob, "kept");
    assert_eq!(page(&mut chat, &ann, None, 500).0, ["kept", "Lobby"]);
    // A user who goes takes their rooms off the list too.
    let effects = chat.state.remove(bob.who, None);
    deliver(&chat.state, None, effects);
    assert_eq!(page(&mut chat, &ann, None, 500).0, ["Lobby"]);
}
