//! DM conversations ("queries"): the nicks the user opened one with (`/query NICK`), the one
//! being talked in (shown in the prompt as `@bob>`; plain text typed there is a `dm`), and who
//! sent the last direct message (`/reply`). A conversation follows its partner's nick changes.
//!
//! Pure state, kept by [`super::Model`]; a conversation is named `@NICK`, which no room can be
//! (`@` is not allowed in room names).

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{ReplyData, ServerFrame};

use super::Show;

/// The prefix that names a conversation where a room name would be.
pub const QUERY_PREFIX: char = '@';

#[derive(Debug, Default)]
pub struct Queries {
    /// Open conversations, in the order they were opened.
    open: Vec<String>,
    /// The conversation being talked in, instead of the current room.
    active: Option<String>,
    /// Who sent the last direct message to the user.
    last_sender: Option<String>,
    /// The latest nick changes of partners (old key, new nick), newest last: a line typed at a
    /// prompt that still names the old nick goes to the new one.
    renames: Vec<(String, String)>,
}

/// Nick changes of partners remembered for [`Queries::now_called`].
const RENAMES_KEPT: usize = 64;

impl Queries {
    /// Open (or return to) the conversation with `nick` and make it the active one.
    pub fn open(&mut self, nick: &str) {
        let nick = match self.index(nick) {
            Some(i) => self.open[i].clone(),
            None => {
                self.open.push(nick.to_owned());
                nick.to_owned()
            }
        };
        self.active = Some(nick);
    }

    /// Close the conversation with `nick`; true when there was one.
    pub fn close(&mut self, nick: &str) -> bool {
        let Some(i) = self.index(nick) else {
            return false;
        };
        self.open.remove(i);
        if self.active.as_deref().map(name_key) == Some(name_key(nick)) {
            self.active = None;
        }
        true
    }

    /// Talk in the current room again.
    pub fn leave_active(&mut self) {
        self.active = None;
    }

    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    pub fn partners(&self) -> &[String] {
        &self.open
    }

    pub fn last_sender(&self) -> Option<&str> {
        self.last_sender.as_deref()
    }

    /// A direct message from `from` arrived.
    pub fn received_from(&mut self, from: &str) {
        self.last_sender = Some(from.to_owned());
    }

    /// The nick that `nick` (perhaps the partner's name before nick changes) is known by now.
    pub fn now_called(&self, nick: &str) -> String {
        let mut nick = nick.to_owned();
        // Newest last, so one pass follows a chain of changes in order.
        for (old, new) in &self.renames {
            if name_key(&nick) == *old {
                nick = new.clone();
            }
        }
        nick
    }

    /// `old` is now known as `new`: their conversation and `/reply` follow.
    pub fn rename(&mut self, old: &str, new: &str) {
        let key = name_key(old);
        if self.index(old).is_some() {
            if self.renames.len() == RENAMES_KEPT {
                self.renames.remove(0);
            }
            self.renames.push((key.clone(), new.to_owned()));
        }
        let slots = self
            .open
            .iter_mut()
            .chain(self.active.as_mut())
            .chain(self.last_sender.as_mut());
        for nick in slots {
            if name_key(nick) == key {
                *nick = new.to_owned();
            }
        }
    }

    fn index(&self, nick: &str) -> Option<usize> {
        let key = name_key(nick);
        self.open.iter().position(|n| name_key(n) == key)
    }
}

impl super::Model {
    /// `/query NICK`: open the conversation with `nick` (or go back to it) and talk in it.
    pub fn query(&mut self, nick: &str) -> Show {
        if name_key(nick) == name_key(&self.nick) {
            return Show::Error("that is you; /query someone else".into());
        }
        self.queries.open(nick);
        Show::Info(format!(
            "talking with {nick}: lines you type go to them only (/close ends it, /switch goes back to a room)"
        ))
    }

    /// `/close [NICK]` (or `/leave` in a conversation): end the conversation with `nick`, else
    /// the one talked in. `None` when there is no such conversation.
    pub fn close_query(&mut self, nick: Option<&str>) -> Option<Show> {
        let nick = nick.or(self.queries.active())?.to_owned();
        if !self.queries.close(&nick) {
            return None;
        }
        Some(Show::Info(match &self.current {
            Some(room) => format!("closed the conversation with {nick}; now talking in #{room}"),
            None => format!("closed the conversation with {nick}"),
        }))
    }

    /// The nick the partner of the conversation named `@nick` by a prompt is known by now.
    pub fn partner_now(&self, nick: &str) -> String {
        self.queries.now_called(nick)
    }

    /// The partner of the conversation talked in, if one is.
    pub fn active_query(&self) -> Option<&str> {
        self.queries.active()
    }

    /// Who `/reply` answers: the sender of the last direct message.
    pub fn reply_target(&self) -> Option<&str> {
        self.queries.last_sender()
    }

    /// What the prompt names: `@NICK` in a conversation, else the current room.
    pub fn conversation(&self) -> Option<String> {
        match self.queries.active() {
            Some(nick) => Some(format!("{QUERY_PREFIX}{nick}")),
            None => self.current.clone(),
        }
    }

    /// Everyone the user can see, for completion: the current room first, then the other
    /// rooms, then conversation partners; once each, never the user.
    pub fn known_nicks(&self) -> Vec<String> {
        let mut nicks = self.nicks_here();
        let others = self.rooms.iter().filter_map(|r| self.members(r));
        let more = others
            .flatten()
            .map(|m| m.nick.clone())
            .chain(self.queries.partners().iter().cloned());
        for nick in more {
            if !nicks.iter().any(|n| name_key(n) == name_key(&nick)) {
                nicks.push(nick);
            }
        }
        nicks.retain(|n| name_key(n) != name_key(&self.nick));
        nicks
    }

    /// A `rooms` reply fetched for completion: its names replace those heard before (a room
    /// emptied and gone is no longer offered), nothing shown.
    pub fn rooms_heard(&mut self, reply: &ServerFrame) {
        if let ServerFrame::Reply(r) = reply {
            if let ReplyData::Rooms { rooms, .. } = &r.data {
                self.known_rooms.clear();
                for room in rooms {
                    self.remember_room(&room.name);
                }
            }
        }
    }
}

/// The partner of a conversation name (`@bob` -> `bob`); `None` for a room name.
pub fn partner(conversation: &str) -> Option<&str> {
    conversation.strip_prefix(QUERY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_close_and_follow_a_nick_change() {
        let mut q = Queries::default();
        q.open("bob");
        q.open("cat");
        q.open("BOB");
        assert_eq!(q.partners(), ["bob", "cat"]);
        assert_eq!(q.active(), Some("bob"));
        q.received_from("bob");
        q.rename("Bob", "robert");
        assert_eq!(q.partners(), ["robert", "cat"]);
        assert_eq!(q.active(), Some("robert"));
        assert_eq!(q.last_sender(), Some("robert"));
        q.rename("robert", "rob");
        assert_eq!(q.now_called("BOB"), "rob");
        assert_eq!(q.now_called("cat"), "cat");
        q.rename("rob", "robert");
        assert!(q.close("ROBERT"));
        assert!(!q.close("robert"));
        assert_eq!(q.active(), None);
        assert_eq!(q.partners(), ["cat"]);
    }

    fn started(rooms: &[&str]) -> crate::model::Model {
        use crate::model::tests::{join_reply, welcome};
        let mut model = crate::model::Model::new("ann");
        model.welcomed(&welcome("ann", &[]), false);
        model.started(&welcome("ann", &[]));
        for (i, room) in rooms.iter().enumerate() {
            let members = [&["ann", "bob"][..], &["ann", "cat", "bob"][..]][i % 2];
            model.apply_reply(join_reply(room, members));
        }
        model
    }

    fn direct(from: &str, to: &str) -> ServerFrame {
        ServerFrame::Direct(lanchat_protocol::Direct {
            id: "d1".into(),
            ts: 1,
            from: from.into(),
            to: to.into(),
            text: "psst".into(),
        })
    }

    #[test]
    fn a_query_is_talked_in_until_closed_or_a_room_is_chosen() {
        use crate::commands::SwitchTarget;
        let mut model = started(&["lobby", "dev"]);
        assert_eq!(model.prompt(), "#dev> ");
        assert!(matches!(model.query("bob"), Show::Info(_)));
        assert_eq!(model.prompt(), "@bob> ");
        assert_eq!(model.conversation().as_deref(), Some("@bob"));
        assert_eq!(model.active_query(), Some("bob"));
        // Switching to a room leaves the conversation open but not talked in.
        model.switch(&SwitchTarget::Position(1));
        assert_eq!(model.prompt(), "#lobby> ");
        model.query("Bob");
        assert_eq!(model.prompt(), "@bob> ");
        assert!(model.close_query(None).is_some());
        assert_eq!(model.prompt(), "#lobby> ");
        assert_eq!(model.close_query(None), None, "nothing left to close");
        assert!(matches!(model.query("ann"), Show::Error(_)));
    }

    #[test]
    fn a_query_follows_its_partner_and_reply_answers_the_last_sender() {
        let mut model = started(&["lobby"]);
        assert_eq!(model.reply_target(), None);
        model.apply_event(direct("bob", "ann"));
        model.apply_event(direct("ann", "ann"));
        assert_eq!(model.reply_target(), Some("bob"), "not oneself");
        model.query("bob");
        model.apply_event(ServerFrame::Nick(lanchat_protocol::NickChange {
            old: "bob".into(),
            new: "robert".into(),
        }));
        assert_eq!(model.prompt(), "@robert> ");
        assert_eq!(model.reply_target(), Some("robert"));
        // A join reply makes the room current: the conversation is no longer talked in.
        model.apply_reply(crate::model::tests::join_reply("dev", &["ann"]));
        assert_eq!(model.prompt(), "#dev> ");
    }

    #[test]
    fn completion_knows_everyone_in_every_shared_room_and_every_partner() {
        let mut model = started(&["lobby", "dev"]);
        model.query("dan");
        model.switch(&crate::commands::SwitchTarget::Position(1));
        assert_eq!(model.known_nicks(), ["bob", "cat", "dan"]);
    }

    #[test]
    fn a_rooms_reply_fetched_for_completion_is_remembered_silently() {
        let mut model = started(&["lobby"]);
        let reply = crate::model::tests::ok(ReplyData::Rooms {
            rooms: vec![lanchat_protocol::RoomInfo {
                name: "rust".into(),
                members: 3,
                topic: String::new(),
            }],
            next: None,
        });
        model.rooms_heard(&reply);
        assert_eq!(model.room_names(), ["lobby", "rust"]);
        // A list fetched again replaces it: #rust is gone, #go is new.
        let again = crate::model::tests::ok(ReplyData::Rooms {
            rooms: vec![lanchat_protocol::RoomInfo {
                name: "go".into(),
                members: 1,
                topic: String::new(),
            }],
            next: None,
        });
        model.rooms_heard(&again);
        assert_eq!(model.room_names(), ["lobby", "go"]);
    }

    #[test]
    fn a_conversation_name_is_never_a_room_name() {
        assert_eq!(partner("@bob"), Some("bob"));
        assert_eq!(partner("lobby"), None);
        assert!(lanchat_protocol::validate::check_room("@bob").is_err());
    }
}
