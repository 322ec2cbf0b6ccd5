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
                .register(id, nick, inbox.clone(), Bytes::from_static(WELCOME))?;
        deliver(&self.state, Some(&inbox), effects);
        Ok(User { who, inbox })
    }

    /// A registered user whose welcome has been read.
    fn user(&mut self, nick: &str) -> User {
        let user = self.try_register(nick).expect("registered");
        assert_eq!(user.inbox.types(), ["welcome"]);
        user
    }

    /// Apply a rule's effects the way the server does; returns what to persist.
    fn apply(&self, actor: &User, effects: Result<Effects, Refusal>) -> Option<Persist> {
        deliver(&self.state, Some(&actor.inbox), effects.expect("allowed"))
    }

    fn join(&mut self, user: &User, room: &str) -> Value {
        let effects = self.state.join(&user.who, None, room);
        self.apply(user, effects);
        // Events that reached this user earlier are dropped with the reply.
        let reply = user.inbox.take().pop().expect("a reply");
        assert_eq!(reply["type"], "ok");
        reply
    }

    fn say(&mut self, user: &User, room: &str, text: &str) -> Option<Persist> {
        let effects = self.state.say(&user.who, None, room, text);
        self.apply(user, effects)
    }
}

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
    let ann = chat.user("ann");
    let bob = chat.user("Bob");
    let cy = chat.user("cy");
    ann.inbox.take();
    bob.inbox.take();
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
    let ann = chat.user("ann");
    // The default room is one of them.
    for i in 1..MAX_ROOMS_PER_SESSION {
        chat.join(&ann, &format!("r{i}"));
    }
    assert_eq!(
        code(chat.state.join(&ann.who, None, "one-too-many")),
        ErrorCode::TooManyRooms
    );
    // A room one is already in can still be joined (it changes nothing).
    chat.join(&ann, "r1");
}

#[test]
fn leave_tells_the_others_and_refuses_a_room_one_is_not_in() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    ann.inbox.take();
    let effects = chat.state.leave(&bob.who, Some(&RequestId::Int(7)), "OPS");
    chat.apply(&bob, effects);
    let reply = bob.inbox.take();
    assert_eq!(reply[0]["re"], 7);
    assert_eq!(reply[0]["room"], "ops");
    assert_eq!(ann.inbox.types(), ["leave"]);
    assert_eq!(
        code(chat.state.leave(&bob.who, None, "ops")),
        ErrorCode::NotInRoom
    );
    assert_eq!(
        code(chat.state.leave(&bob.who, None, "nowhere")),
        ErrorCode::NotInRoom
    );
}

#[test]
fn rooms_are_forgotten_when_empty_unless_they_hold_something() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    chat.join(&ann, "Tmp");
    let effects = chat.state.leave(&ann.who, None, "tmp");
    chat.apply(&ann, effects);
    ann.inbox.take();
    // Forgotten: the next to join spells it anew.
    assert_eq!(chat.join(&ann, "TMP")["room"], "TMP");
    chat.say(&ann, "tmp", "kept");
    let effects = chat.state.leave(&ann.who, None, "tmp");
    chat.apply(&ann, effects);
    assert_eq!(chat.join(&ann, "tmp")["room"], "TMP", "history keeps it");
    // The default room is never forgotten, even empty.
    let effects = chat.state.leave(&ann.who, None, "lobby");
    chat.apply(&ann, effects);
    ann.inbox.take();
    let effects = chat.state.rooms(None);
    chat.apply(&ann, Ok(effects));
    let rooms = &ann.inbox.take()[0]["rooms"];
    let names: Vec<&str> = rooms
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
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    let cy = chat.user("cy");
    ann.inbox.take();
    bob.inbox.take();
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
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    chat.join(&bob, "ops");
    assert_eq!(
        code(chat.state.say(&ann.who, None, "ops", "x")),
        ErrorCode::NotInRoom
    );
    assert_eq!(
        code(chat.state.say(&ann.who, None, "nowhere", "x")),
        ErrorCode::NotInRoom
    );
}

#[test]
fn dm_reaches_only_its_target_and_refuses_an_unknown_nick() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("Bob");
    let cy = chat.user("cy");
    ann.inbox.take();
    bob.inbox.take();
    let effects = chat
        .state
        .dm(&ann.who, Some(&RequestId::Str("d".into())), "bob", "psst");
    chat.apply(&ann, effects);
    let reply = ann.inbox.take();
    assert_eq!(reply[0]["cmd"], "dm");
    assert_eq!(reply[0]["to"], "Bob", "the target as it spells itself");
    assert_eq!(reply[0]["re"], "d");
    let got = bob.inbox.take();
    assert_eq!(got[0]["type"], "direct");
    assert_eq!(got[0]["text"], "psst");
    assert!(cy.inbox.take().is_empty());
    assert_eq!(
        code(chat.state.dm(&ann.who, None, "nobody", "x")),
        ErrorCode::NoSuchNick
    );
}

#[test]
fn nick_change_tells_each_neighbour_once_and_frees_the_old_nick() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    let loner = chat.user("loner");
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    let effects = chat.state.leave(&loner.who, None, "lobby");
    chat.apply(&loner, effects);
    for u in [&ann, &bob, &loner] {
        u.inbox.take();
    }
    let effects = chat.state.set_nick(&ann.who, None, "anna");
    chat.apply(&ann, effects);
    assert_eq!(ann.inbox.take()[0]["nick"], "anna");
    let got = bob.inbox.take();
    assert_eq!(got.len(), 1, "two shared rooms, one event: {got:?}");
    assert_eq!(got[0]["old"], "ann");
    assert_eq!(got[0]["new"], "anna");
    assert!(loner.inbox.take().is_empty(), "no shared room, no event");
    assert_eq!(chat.state.nick(&ann.who), "anna");
    chat.user("ann");
    assert_eq!(
        code(chat.state.set_nick(&bob.who, None, "ANNA")),
        ErrorCode::NickTaken
    );
    // One's own nick in another case is one's own.
    let effects = chat.state.set_nick(&ann.who, None, "Anna");
    chat.apply(&ann, effects);
    assert_eq!(chat.state.nick(&ann.who), "Anna");
}

#[test]
fn status_goes_to_neighbours_and_an_empty_text_is_none() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    ann.inbox.take();
    let effects = chat
        .state
        .set_status(&ann.who, None, Status::Away, Some(String::new()));
    chat.apply(&ann, effects);
    let reply = ann.inbox.take();
    assert_eq!(reply[0]["status"], "away");
    assert!(reply[0].get("text").is_none_or(Value::is_null));
    let got = bob.inbox.take();
    assert_eq!(got[0]["type"], "presence");
    assert_eq!(got[0]["nick"], "ann");
    assert_eq!(got[0]["status"], "away");
}

#[test]
fn topic_is_read_by_anyone_and_set_by_members_only() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    chat.join(&ann, "Ops");
    bob.inbox.take();
    assert_eq!(
        code(chat.state.topic(&bob.who, None, "ops", Some("mine".into()))),
        ErrorCode::NotInRoom
    );
    let effects = chat
        .state
        .topic(&ann.who, None, "OPS", Some("deploys".into()));
    let persist = chat.apply(&ann, effects);
    assert_eq!(
        persist,
        Some(Persist::Topic {
            room_key: "ops".into(),
            room: "Ops".into(),
            topic: "deploys".into()
        })
    );
    assert_eq!(ann.inbox.take()[0]["topic"], "deploys");
    assert!(bob.inbox.take().is_empty(), "bob is not in the room");
    let effects = chat.state.topic(&bob.who, None, "ops", None);
    chat.apply(&bob, effects);
    let read = bob.inbox.take();
    assert_eq!(read[0]["room"], "Ops");
    assert_eq!(read[0]["topic"], "deploys");
    // A room with a topic outlives its last member.
    let effects = chat.state.leave(&ann.who, None, "ops");
    chat.apply(&ann, effects);
    let effects = chat.state.topic(&bob.who, None, "ops", None);
    chat.apply(&bob, effects);
    assert_eq!(bob.inbox.take()[0]["topic"], "deploys");
    // An unknown room has no topic, and is named as asked.
    let effects = chat.state.topic(&bob.who, None, "Nowhere", None);
    chat.apply(&bob, effects);
    let read = bob.inbox.take();
    assert_eq!(read[0]["room"], "Nowhere");
    assert_eq!(read[0]["topic"], "");
}

#[test]
fn who_answers_in_the_rooms_spelling_or_as_asked() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    chat.apply(&ann, Ok(chat.state.who(None, "LOBBY")));
    let reply = ann.inbox.take();
    assert_eq!(reply[0]["room"], "Lobby");
    assert_eq!(nicks(&reply[0]["members"]), ["ann"]);
    chat.apply(&ann, Ok(chat.state.who(None, "Empty")));
    let reply = ann.inbox.take();
    assert_eq!(reply[0]["room"], "Empty");
    assert!(reply[0]["members"].as_array().unwrap().is_empty());
}

fn history(chat: &Chat, user: &User, q: HistoryQuery) -> Value {
    let effects = chat.state.history(None, &q);
    chat.apply(user, effects);
    user.inbox.take().remove(0)
}

fn query(room: &str, limit: Option<u32>) -> HistoryQuery {
    HistoryQuery {
        room: room.into(),
        before: None,
        after: None,
        limit,
    }
}

#[test]
fn history_keeps_the_newest_messages_as_sent() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    for i in 0..7 {
        chat.say(&ann, "lobby", &format!("m{i}"));
    }
    ann.inbox.take();
    let reply = history(&chat, &ann, query("LOBBY", None));
    assert_eq!(reply["room"], "Lobby");
    let texts: Vec<&str> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["m2", "m3", "m4", "m5", "m6"],
        "five kept, oldest first"
    );
    let reply = history(&chat, &ann, query("lobby", Some(2)));
    assert_eq!(reply["messages"].as_array().unwrap().len(), 2);
    let reply = history(&chat, &ann, query("Nowhere", None));
    assert_eq!(reply["room"], "Nowhere");
    assert!(reply["messages"].as_array().unwrap().is_empty());
}

#[test]
fn remove_tells_each_neighbour_once_and_frees_the_nick() {
    let mut chat = Chat::new();
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    chat.join(&ann, "ops");
    chat.join(&bob, "ops");
    bob.inbox.take();
    let effects = chat.state.remove(ann.who, Some("lunch"));
    deliver(&chat.state, None, effects);
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
    let ann = chat.user("ann");
    let bob = chat.user("bob");
    ann.inbox.take();
    // Bob joins a room, then Ann joins it and speaks: Bob sees her join, then her message; Ann
    // sees her join reply, then Bob's message that followed it.
    chat.join(&bob, "ops");
    let effects = chat.state.join(&ann.who, None, "ops");
    chat.apply(&ann, effects);
    chat.say(&ann, "ops", "first");
    chat.say(&bob, "ops", "second");
    assert_eq!(ann.inbox.types(), ["ok", "ok", "message"]);
    assert_eq!(bob.inbox.types(), ["join", "message", "ok"]);
}
