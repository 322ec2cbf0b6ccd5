//! Rooms without members forgotten after `--room-idle` (with a data directory), and rooms
//! brought back from disk. Time is passed in, so each test says to the pass when a room goes.

use std::time::{Duration, Instant};

use super::*;

const IDLE: Duration = Duration::from_secs(600);
const PASS: Duration = Duration::from_secs(5);

fn idle_chat() -> Chat {
    Chat {
        state: State::new("Lobby", 5).with_room_idle(IDLE),
        next_id: 1,
    }
}

/// Expiry passes every `PASS` from `from` to `to` (inclusive); how many rooms they forgot.
fn passes(chat: &mut Chat, from: Instant, to: Duration) -> usize {
    let mut forgotten = 0;
    let mut at = Duration::ZERO;
    while at <= to {
        forgotten += chat.state.expire_idle(from + at, 1000);
        at += PASS;
    }
    forgotten
}

#[test]
fn a_room_without_members_is_forgotten_after_the_idle_time_and_not_before() {
    let mut chat = idle_chat();
    let [ann] = chat.users(["ann"]);
    let start = Instant::now();
    chat.state.expire_idle(start, 1000);
    chat.join(&ann, "attic");
    chat.say(&ann, "attic", "dusty");
    chat.join(&ann, "busy");
    chat.leave(&ann, "attic");
    assert_eq!(chat.state.rooms_held(), 3);
    // Left just after the pass at 0 s: still held at the pass 600 s after it...
    assert_eq!(passes(&mut chat, start + PASS, IDLE - PASS), 0);
    assert!(chat.state.holds_room("ATTIC"));
    // ... and forgotten by the next one; the room with a member and the default room stay.
    assert_eq!(chat.state.expire_idle(start + IDLE + PASS, 1000), 1);
    assert!(!chat.state.holds_room("attic"));
    assert!(chat.state.holds_room("busy") && chat.state.holds_room("lobby"));
    assert_eq!(
        chat.state.history_bytes(),
        0,
        "its history's memory is given back"
    );
    // The default room, even empty, is never forgotten.
    chat.leave(&ann, "lobby");
    assert_eq!(passes(&mut chat, start + IDLE * 2, IDLE * 2), 0);
    assert!(chat.state.holds_room("lobby"));
}

#[test]
fn a_room_joined_again_is_not_forgotten_and_each_pass_is_bounded() {
    let mut chat = idle_chat();
    let [ann] = chat.users(["ann"]);
    let start = Instant::now();
    chat.state.expire_idle(start, 1000);
    for i in 0..30 {
        let room = format!("r{i}");
        chat.join(&ann, &room);
        chat.say(&ann, &room, "x");
        chat.leave(&ann, &room);
    }
    chat.join(&ann, "r7");
    // The pass after they went idle; from a pass `IDLE` later, they go.
    assert_eq!(chat.state.expire_idle(start + PASS, 1000), 0);
    let later = start + PASS + IDLE;
    assert_eq!(
        chat.state.expire_idle(later, 10),
        10,
        "at most `max` a pass"
    );
    assert_eq!(chat.state.expire_idle(later + PASS, 10), 10);
    assert_eq!(
        chat.state.expire_idle(later + PASS * 2, 10),
        9,
        "r7 has a member"
    );
    assert!(chat.state.holds_room("r7"));
    assert_eq!(chat.state.rooms_held(), 2);
}

#[test]
fn without_an_idle_time_rooms_are_kept() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    chat.join(&ann, "attic");
    chat.say(&ann, "attic", "dusty");
    chat.leave(&ann, "attic");
    let start = Instant::now();
    assert_eq!(chat.state.expire_idle(start, 1000), 0);
    assert_eq!(chat.state.expire_idle(start + IDLE * 10, 1000), 0);
    assert!(chat.state.holds_room("attic"));
}

#[test]
fn a_room_comes_back_from_disk_only_if_it_is_not_held() {
    let mut chat = idle_chat();
    let [ann] = chat.users(["ann"]);
    let line = |text: &str| {
        StoredMessage {
        id: Uuid::now_v7(),
        line: Bytes::from(format!(
            "{{\"type\":\"message\",\"id\":\"x\",\"ts\":1,\"room\":\"Attic\",\"from\":\"bob\",\"text\":\"{text}\"}}\n"
        )),
    }
    };
    assert!(chat
        .state
        .restore_room("Attic", vec![line("a"), line("b")], "old boxes".into()));
    // Restored without members: not listed, kept idle; a join finds the topic and the spelling.
    let joined = chat.join(&ann, "attic");
    assert_eq!(
        (&joined["room"], &joined["topic"]),
        (&json("Attic"), &json("old boxes"))
    );
    assert_eq!(history(&mut chat, &ann, "attic", None).1, ["a", "b"]);
    // Held now: a second load (two sessions raced) changes nothing.
    assert!(!chat
        .state
        .restore_room("Attic", vec![line("stale")], String::new()));
    assert_eq!(history(&mut chat, &ann, "attic", None).1, ["a", "b"]);
    // Nothing on disk: nothing made.
    assert!(!chat.state.restore_room("Empty", Vec::new(), String::new()));
    assert!(!chat.state.holds_room("empty"));
}

fn json(s: &str) -> Value {
    Value::String(s.to_owned())
}
