//! The chat rules, one test (at least) per command and per refusal, without a socket: each user's
//! mailbox is a recorder, and effects are applied by the same `deliver` the server uses.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use lanchat_protocol::{ErrorCode, HistoryQuery, RequestId, Status, MAX_ROOMS_PER_SESSION};
use serde_json::Value;

use super::*;
use crate::chat::{deliver, Mailbox};

/// A mailbox that keeps what it is given.
#[derive(Clone, Default, Debug)]
struct Inbox(Rc<RefCell<Vec<Bytes>>>);

impl Mailbox for Inbox {
    fn deliver(&self, line: Bytes) {
        self.0.borrow_mut().push(line);
    }
}

impl Inbox {
    /// Everything received since the last call, as JSON.
    fn take(&self) -> Vec<Value> {
        self.0
            .borrow_mut()
            .drain(..)
            .map(|l| {
                assert_eq!(l.last(), Some(&b'\n'), "every line ends with LF");
                serde_json::from_slice(&l).expect("a JSON line")
            })
            .collect()
    }

    /// The `type` of everything received since the last call.
    fn types(&self) -> Vec<String> {
        self.take()
            .iter()
            .map(|v| v["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

#[derive(Debug)]
struct User {
    who: Registered,
    inbox: Inbox,
}

struct Chat {
    state: State<Inbox>,
    next_id: SessionId,
}

const WELCOME: &[u8] = b"{\"type\":\"welcome\"}\n";

impl Chat {
    fn new() -> Self {
        Chat {
            state: State::new("Lobby", 5),
            next_id: 1,
        }
    }

    fn try_register(&mut self, nick: &str) -> Result<User, Refusal> {
        let inbox = Inbox::default();
        let id = self.next_id;
        self.next_id += 1;
        let (who, effects) =
            self.state
                .register(id, nick, inbox.clone(), Bytes::from_static(WELCOME), true)?;
        deliver(&self.state, Some(&inbox), effects);
        Ok(User { who, inbox })
    }

    /// A registered user whose welcome has been read.
    fn user(&mut self, nick: &str) -> User {
        let user = self.try_register(nick).expect("registered");
        assert_eq!(user.inbox.types(), ["welcome"]);
        user
    }

    /// Users registered in the default room, in this order, with nothing left to read.
    fn users<const N: usize>(&mut self, nicks: [&str; N]) -> [User; N] {
        let users = nicks.map(|n| self.user(n));
        for u in &users {
            u.inbox.take();
        }
        users
    }

    /// Run a rule as `actor` and apply its effects the way the server does; returns what to
    /// persist. What the actor receives stays in its inbox.
    fn run(&mut self, actor: &User, rule: Rule) -> Option<Persist> {
        let effects = rule(&mut self.state, &actor.who).expect("allowed");
        deliver(&self.state, Some(&actor.inbox), effects)
    }

    /// [`Chat::run`], then everything the actor received (its reply last).
    fn act(&mut self, actor: &User, rule: Rule) -> Vec<Value> {
        self.run(actor, rule);
        actor.inbox.take()
    }

    /// The code a rule is refused with; a refused rule changes nothing and delivers nothing.
    fn refused(&mut self, actor: &User, rule: Rule) -> ErrorCode {
        rule(&mut self.state, &actor.who).expect_err("refused").0
    }

    /// Join `room`; returns the reply (events that reached the user before it are dropped).
    fn join(&mut self, user: &User, room: &str) -> Value {
        let reply = self
            .act(user, &mut |st, me| st.join(me, None, room, None))
            .pop()
            .expect("a reply");
        assert_eq!(reply["type"], "ok");
        reply
    }

    fn leave(&mut self, user: &User, room: &str) -> Vec<Value> {
        self.act(user, &mut |st, me| st.leave(me, None, room))
    }

    fn say(&mut self, user: &User, room: &str, text: &str) -> Option<Persist> {
        self.run(user, &mut |st, me| st.say(me, None, room, text))
    }
}

/// A rule as the tests call it: the state and the acting user.
type Rule<'a> = &'a mut dyn FnMut(&mut State<Inbox>, &Registered) -> Result<Effects, Refusal>;

fn code<T: std::fmt::Debug>(r: Result<T, Refusal>) -> ErrorCode {
    r.expect_err("refused").0
}

fn nicks(members: &Value) -> Vec<&str> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["nick"].as_str().unwrap())
        .collect()
}

#[test]
fn register_welcomes_first_then_tells_the_default_room() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.try_register("bob").unwrap();
    assert_eq!(bob.inbox.types(), ["welcome"], "no join event to oneself");
    let events = ann.inbox.take();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "join");
    assert_eq!(
        events[0]["room"], "Lobby",
        "rooms are named as first spelled"
    );
    assert_eq!(events[0]["nick"], "bob");
    assert_eq!(chat.state.users(), 2);
}

#[test]
fn nicks_are_unique_across_case_and_unicode_case() {
    let mut chat = Chat::new();
    chat.user("Ann");
    assert_eq!(code(chat.try_register("aNN")), ErrorCode::NickTaken);
    chat.user("Élodie");
    assert_eq!(code(chat.try_register("élodie")), ErrorCode::NickTaken);
    chat.user("ann2");
}

#[test]
fn join_replies_with_members_sorted_and_tells_the_room_once() {
    let mut chat = Chat::new();
    let [ann, bob, cy] = chat.users(["ann", "Bob", "cy"]);
    let reply = chat.join(&ann, "Ops");
    assert_eq!(reply["cmd"], "join");
    assert_eq!(reply["room"], "Ops");
    assert_eq!(nicks(&reply["members"]), ["ann"]);
    chat.join(&cy, "ops");
    let reply = chat.join(&bob, "OPS");
    assert_eq!(reply["room"], "Ops", "the first spelling stays");
    assert_eq!(nicks(&reply["members"]), ["ann", "Bob", "cy"]);
    let seen: Vec<Value> = ann.inbox.take();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|e| e["type"] == "join" && e["room"] == "Ops"));
    // Joining a room one is in: the reply again, no event.
    chat.join(&bob, "ops");
    assert!(ann.inbox.take().is_empty());
}

#[test]
fn join_refuses_more_than_the_room_limit() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    // The default room is one of them.
    for i in 1..MAX_ROOMS_PER_SESSION {
        chat.join(&ann, &format!("r{i}"));
    }
    let code = chat.refused(&ann, &mut |st, me| st.join(me, None, "one-too-many", None));
    assert_eq!(code, ErrorCode::TooManyRooms);
    // A room one is already in can still be joined (it changes nothing).
    chat.join(&ann, "r1");
}

#[test]
fn leave_tells_the_others_and_refuses_a_room_one_is_not_in() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    ann.inbox.take();
    let reply = chat.act(&bob, &mut |st, me| {
        st.leave(me, Some(&RequestId::Int(7)), "OPS")
    });
    assert_eq!(reply[0]["re"], 7);
    assert_eq!(reply[0]["room"], "ops");
    assert_eq!(ann.inbox.types(), ["leave"]);
    for room in ["ops", "nowhere"] {
        let code = chat.refused(&bob, &mut |st, me| st.leave(me, None, room));
        assert_eq!(code, ErrorCode::NotInRoom, "{room}");
    }
}

#[test]
fn rooms_are_forgotten_when_empty_unless_they_hold_something() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    chat.join(&ann, "Tmp");
    chat.leave(&ann, "tmp");
    // Forgotten: the next to join spells it anew.
    assert_eq!(chat.join(&ann, "TMP")["room"], "TMP");
    chat.say(&ann, "tmp", "kept");
    chat.leave(&ann, "tmp");
    assert_eq!(chat.join(&ann, "tmp")["room"], "TMP", "history keeps it");
    // The default room is never forgotten, even empty.
    chat.leave(&ann, "lobby");
    let reply = chat.act(&ann, &mut |st, me| Ok(st.rooms(me, None, None, 500)));
    let names: Vec<&str> = reply[0]["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Lobby", "TMP"]);
}

#[test]
fn say_replies_to_the_sender_and_delivers_one_line_to_everyone_else() {
    let mut chat = Chat::new();
    let [ann, bob, cy] = chat.users(["ann", "bob", "cy"]);
    let persist = chat.say(&ann, "LOBBY", "hi");
    let reply = ann.inbox.take();
    assert_eq!(reply.len(), 1, "no copy of one's own message");
    assert_eq!(reply[0]["cmd"], "say");
    assert_eq!(reply[0]["room"], "Lobby");
    for other in [&bob, &cy] {
        let got = other.inbox.take();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["type"], "message");
        assert_eq!(got[0]["from"], "ann");
        assert_eq!(got[0]["text"], "hi");
        assert_eq!(
            got[0]["id"], reply[0]["id"],
            "reply and message share the id"
        );
    }
    let Some(Persist::Message { room_key, line }) = persist else {
        panic!("a message is persisted");
    };
    assert_eq!(&*room_key, "lobby");
    let stored: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(
        stored["text"], "hi",
        "the stored line is the delivered line"
    );
}

#[test]
fn say_refuses_a_room_one_is_not_in() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&bob, "ops");
    for room in ["ops", "nowhere"] {
        let code = chat.refused(&ann, &mut |st, me| st.say(me, None, room, "x"));
        assert_eq!(code, ErrorCode::NotInRoom, "{room}");
    }
    assert!(
        bob.inbox.take().is_empty(),
        "a refused message reaches nobody"
    );
}

#[test]
fn dm_reaches_only_its_target_and_refuses_an_unknown_nick() {
    let mut chat = Chat::new();
    let [ann, bob, cy] = chat.users(["ann", "Bob", "cy"]);
    let re = RequestId::Str("d".into());
    let reply = chat.act(&ann, &mut |st, me| st.dm(me, Some(&re), "bob", "psst"));
    assert_eq!(reply[0]["cmd"], "dm");
    assert_eq!(reply[0]["to"], "Bob", "the target as it spells itself");
    assert_eq!(reply[0]["re"], "d");
    let got = bob.inbox.take();
    assert_eq!(got[0]["type"], "direct");
    assert_eq!(got[0]["text"], "psst");
    assert!(cy.inbox.take().is_empty());
    let code = chat.refused(&ann, &mut |st, me| st.dm(me, None, "nobody", "x"));
    assert_eq!(code, ErrorCode::NoSuchNick);
}

#[test]
fn a_dm_to_someone_away_or_busy_says_so_in_its_reply() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    // The reply is the last frame: presence events from bob (sharing the lobby) come before it.
    let dm = |chat: &mut Chat, text: &str| {
        let frames = chat.act(&ann, &mut |st, me| st.dm(me, None, "bob", text));
        frames.last().cloned().unwrap()
    };
    let reply = dm(&mut chat, "one");
    assert!(reply.get("away").is_none() && reply.get("away_text").is_none());
    chat.act(&bob, &mut |st, me| {
        st.set_status(me, None, Status::Away, Some("lunch".into()))
    });
    let reply = dm(&mut chat, "two");
    assert_eq!(reply["away"], true);
    assert_eq!(reply["away_text"], "lunch");
    chat.act(&bob, &mut |st, me| {
        st.set_status(me, None, Status::Busy, None)
    });
    let reply = dm(&mut chat, "three");
    assert_eq!(reply["away"], true);
    assert!(reply.get("away_text").is_none());
    chat.act(&bob, &mut |st, me| {
        st.set_status(me, None, Status::Online, None)
    });
    let reply = dm(&mut chat, "four");
    assert!(reply.get("away").is_none());
    // The message itself is delivered all the same.
    let got = bob.inbox.take();
    assert!(got
        .iter()
        .any(|f| f["type"] == "direct" && f["text"] == "four"));
}

#[test]
fn nick_change_tells_each_neighbour_once_and_frees_the_old_nick() {
    let mut chat = Chat::new();
    let [ann, bob, loner] = chat.users(["ann", "bob", "loner"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    chat.leave(&loner, "lobby");
    ann.inbox.take();
    bob.inbox.take();
    let reply = chat.act(&ann, &mut |st, me| st.set_nick(me, None, "anna"));
    assert_eq!(reply[0]["nick"], "anna");
    let got = bob.inbox.take();
    assert_eq!(got.len(), 1, "two shared rooms, one event: {got:?}");
    assert_eq!(got[0]["old"], "ann");
    assert_eq!(got[0]["new"], "anna");
    assert!(loner.inbox.take().is_empty(), "no shared room, no event");
    assert_eq!(chat.state.nick(&ann.who), "anna");
    chat.user("ann");
    let code = chat.refused(&bob, &mut |st, me| st.set_nick(me, None, "ANNA"));
    assert_eq!(code, ErrorCode::NickTaken);
    // One's own nick in another case is one's own.
    chat.act(&ann, &mut |st, me| st.set_nick(me, None, "Anna"));
    assert_eq!(chat.state.nick(&ann.who), "Anna");
}

#[test]
fn status_goes_to_neighbours_and_an_empty_text_is_none() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    let reply = chat.act(&ann, &mut |st, me| {
        st.set_status(me, None, Status::Away, Some(String::new()))
    });
    assert_eq!(reply[0]["status"], "away");
    assert!(reply[0].get("text").is_none_or(Value::is_null));
    let got = bob.inbox.take();
    assert_eq!(got[0]["type"], "presence");
    assert_eq!(got[0]["nick"], "ann");
    assert_eq!(got[0]["status"], "away");
}

/// The topic of `room` as `user` reads it: the room's spelling and its topic.
fn read_topic(chat: &mut Chat, user: &User, room: &str) -> (String, String) {
    let reply = chat.act(user, &mut |st, me| st.topic(me, None, room, None));
    let text = |k: &str| reply[0][k].as_str().unwrap().to_owned();
    (text("room"), text("topic"))
}

#[test]
fn topic_is_read_by_anyone_and_set_by_members_only() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "Ops");
    let code = chat.refused(&bob, &mut |st, me| {
        st.topic(me, None, "ops", Some("mine".into()))
    });
    assert_eq!(code, ErrorCode::NotInRoom);
    let persist = chat.run(&ann, &mut |st, me| {
        st.topic(me, None, "OPS", Some("deploys".into()))
    });
    assert_eq!(
        persist,
        Some(Persist::Topic {
            room_key: "ops".into(),
            room: "Ops".into(),
            topic: "deploys".into(),
            // Ann made the room: its first operator, kept with the topic.
            settings: RoomSettings {
                ops: vec!["ann".into()],
                ..RoomSettings::default()
            },
        })
    );
    assert_eq!(ann.inbox.take()[0]["topic"], "deploys");
    assert!(bob.inbox.take().is_empty(), "bob is not in the room");
    assert_eq!(
        read_topic(&mut chat, &bob, "ops"),
        ("Ops".into(), "deploys".into())
    );
    // A room with a topic outlives its last member.
    chat.leave(&ann, "ops");
    assert_eq!(read_topic(&mut chat, &bob, "ops").1, "deploys");
    // An unknown room has no topic, and is named as asked.
    assert_eq!(
        read_topic(&mut chat, &bob, "Nowhere"),
        ("Nowhere".into(), String::new())
    );
}

#[test]
fn who_answers_in_the_rooms_spelling_or_as_asked() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    let reply = chat.act(&ann, &mut |st, me| Ok(st.who(me, None, "LOBBY")));
    assert_eq!(reply[0]["room"], "Lobby");
    assert_eq!(nicks(&reply[0]["members"]), ["ann"]);
    let reply = chat.act(&ann, &mut |st, me| Ok(st.who(me, None, "Empty")));
    assert_eq!(reply[0]["room"], "Empty");
    assert!(reply[0]["members"].as_array().unwrap().is_empty());
}

/// The texts of a history reply to `user`, and the room it names.
fn history(chat: &mut Chat, user: &User, room: &str, limit: Option<u32>) -> (String, Vec<String>) {
    let q = HistoryQuery {
        room: room.into(),
        before: None,
        after: None,
        limit,
    };
    // The reply is the last thing received (replies to earlier says may come before it).
    let reply = chat
        .act(user, &mut |st, me| st.history(me, None, &q))
        .pop()
        .unwrap();
    let texts = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    (reply["room"].as_str().unwrap().to_owned(), texts)
}

#[test]
fn history_keeps_the_newest_messages_as_sent() {
    let mut chat = Chat::new();
    let [ann] = chat.users(["ann"]);
    for i in 0..7 {
        chat.say(&ann, "lobby", &format!("m{i}"));
    }
    ann.inbox.take();
    let (room, texts) = history(&mut chat, &ann, "LOBBY", None);
    assert_eq!(room, "Lobby");
    assert_eq!(
        texts,
        ["m2", "m3", "m4", "m5", "m6"],
        "five kept, oldest first"
    );
    assert_eq!(history(&mut chat, &ann, "lobby", Some(2)).1, ["m5", "m6"]);
    assert_eq!(
        history(&mut chat, &ann, "Nowhere", None),
        ("Nowhere".into(), vec![])
    );
}

#[test]
fn remove_tells_each_neighbour_once_and_frees_the_nick() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    bob.inbox.take();
    let effects = chat.state.remove(ann.who, Some("lunch"));
    let _ = deliver(&chat.state, None, effects);
    let got = bob.inbox.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "quit");
    assert_eq!(got[0]["reason"], "lunch");
    assert_eq!(chat.state.users(), 1);
    chat.user("ann");
    // Without a reason (shutdown) nobody is told.
    let effects = chat.state.remove(bob.who, None);
    assert!(effects.event.is_none());
}

#[test]
fn a_reply_is_queued_before_the_events_that_follow_it() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    // Bob joins a room, then Ann joins it and speaks: Bob sees her join, then her message; Ann
    // sees her join reply, then Bob's message that followed it.
    chat.join(&bob, "ops");
    chat.run(&ann, &mut |st, me| st.join(me, None, "ops", None));
    chat.say(&ann, "ops", "first");
    chat.say(&bob, "ops", "second");
    assert_eq!(ann.inbox.types(), ["ok", "ok", "message"]);
    assert_eq!(bob.inbox.types(), ["join", "message", "ok"]);
}

#[test]
fn active_rooms_are_counted_as_members_come_and_go() {
    let mut chat = Chat::new();
    let [ann, bob] = chat.users(["ann", "bob"]);
    assert_eq!(chat.state.active_rooms(), 1, "the lobby");
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    chat.join(&bob, "dev");
    assert_eq!(chat.state.active_rooms(), 3);
    chat.leave(&ann, "ops");
    assert_eq!(chat.state.active_rooms(), 3, "bob is still in ops");
    let effects = chat.state.remove(bob.who, None);
    let _ = deliver(&chat.state, None, effects);
    assert_eq!(chat.state.active_rooms(), 1, "ann is in the lobby");
    chat.leave(&ann, "lobby");
    assert_eq!(chat.state.active_rooms(), 0);
}

#[test]
fn the_room_cap_forgets_the_longest_idle_room_and_refuses_when_all_are_in_use() {
    let mut chat = Chat {
        state: State::new("Lobby", 5).with_max_rooms(3),
        next_id: 1,
    };
    let [ann, bob] = chat.users(["ann", "bob"]);
    // Two rooms kept without members (each holds a message), the older first.
    for room in ["old", "newer"] {
        chat.join(&ann, room);
        chat.say(&ann, room, "kept");
        chat.leave(&ann, room);
    }
    assert_eq!(chat.state.rooms_held(), 3);
    // A third room: the one idle longest is forgotten to make room.
    chat.join(&bob, "fresh");
    assert_eq!(chat.state.rooms_held(), 3);
    let (_, texts) = history(&mut chat, &ann, "old", None);
    assert!(texts.is_empty(), "old was forgotten");
    assert_eq!(history(&mut chat, &ann, "newer", None).1, ["kept"]);
    // Every room held has members now (lobby, fresh, and newer once ann is back in it).
    chat.join(&ann, "newer");
    let code = chat.refused(&ann, &mut |st, me| st.join(me, None, "one-more", None));
    assert_eq!(code, ErrorCode::TooManyRooms);
    // Rooms that exist can still be joined.
    chat.join(&ann, "fresh");
    assert_eq!(chat.state.rooms_held(), 3);
}

#[test]
fn restored_rooms_beyond_the_cap_are_not_held() {
    let mut state: State<Inbox> = State::new("lobby", 5).with_max_rooms(2);
    for room in ["a", "b", "c"] {
        state.restore_topic(room, format!("topic of {room}"));
    }
    assert_eq!(
        state.rooms_held(),
        2,
        "the lobby and the newest restored room"
    );
}

#[test]
fn history_memory_is_bounded_and_idle_rooms_give_theirs_up_first() {
    // Room for about 12 short messages in all.
    let cost = |text: &str| {
        // The line of a message from "ann" in room "a" or "b": measured, not guessed.
        let mut probe = Chat::new();
        let [ann] = probe.users(["ann"]);
        probe.join(&ann, "a");
        let before = probe.state.history_bytes();
        probe.say(&ann, "a", text);
        probe.state.history_bytes() - before
    };
    let one = cost("0123456789");
    let mut chat = Chat {
        state: State::new("Lobby", 100).with_history_memory(12 * one),
        next_id: 1,
    };
    let [ann, bob] = chat.users(["ann", "bob"]);
    chat.join(&ann, "a");
    for _ in 0..8 {
        chat.say(&ann, "a", "0123456789");
    }
    chat.leave(&ann, "a"); // "a" is now idle, with 8 messages
    chat.join(&bob, "b");
    for _ in 0..8 {
        chat.say(&bob, "b", "0123456789");
    }
    assert!(chat.state.history_bytes() <= 12 * one);
    // The idle room gave up its oldest messages; the active one kept all of its own.
    assert_eq!(history(&mut chat, &bob, "b", None).1.len(), 8);
    assert_eq!(history(&mut chat, &bob, "a", None).1.len(), 4);
    // With nothing idle left to give, the room written to gives up its own oldest.
    for _ in 0..10 {
        chat.say(&bob, "b", "0123456789");
    }
    assert!(chat.state.history_bytes() <= 12 * one);
    assert!(
        history(&mut chat, &bob, "a", None).1.is_empty(),
        "a gave everything"
    );
    assert_eq!(history(&mut chat, &bob, "b", None).1.len(), 12);
}

#[path = "state_tests/lookalikes.rs"]
mod lookalikes;

#[path = "state_tests/rooms.rs"]
mod rooms;

#[path = "state_tests/idle.rs"]
mod idle;

#[path = "state_tests/privacy.rs"]
pub(crate) mod privacy;
