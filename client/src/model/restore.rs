//! Putting a new connection back where the lost one was: the rooms to leave and rejoin, the
//! status to set again, and catching up on the messages missed, page by page. Pure like the rest
//! of the model; [`crate::link`] makes the requests.

use std::collections::HashSet;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{
    Command, ErrorCode, HistoryQuery, ReplyData, ServerFrame, Status, Welcome, HISTORY_LIMIT_MAX,
};

use super::{Model, Show};
use crate::commands::DEFAULT_HISTORY;

/// The requests that put a new connection back where the lost one was.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    /// Rooms the server put us in that the user had left.
    pub leave: Vec<Command>,
    /// Each room the user was in, with the request that gets its members back: `who` for the
    /// rooms the server put us in, `join` for the others. Apply replies with [`Model::rejoined`].
    pub rejoin: Vec<(String, Command)>,
    /// The user's status, when it is not `online`.
    pub status: Option<Command>,
}

/// One page of catching up on a room after a reconnect.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub show: Vec<Show>,
    /// How many of its messages had not been shown.
    pub new: usize,
    /// The next query, when there is more to fetch.
    pub next: Option<HistoryQuery>,
}

impl Model {
    /// The requests that restore the rooms and status on a new connection whose `welcome` put
    /// the user in `welcome.rooms`.
    pub fn restore(&self, welcome: &Welcome) -> Restore {
        let wanted: HashSet<String> = self.rooms.iter().map(|r| name_key(r)).collect();
        let given: HashSet<String> = welcome.rooms.iter().map(|r| name_key(r)).collect();
        let leave = welcome
            .rooms
            .iter()
            .filter(|r| !wanted.contains(&name_key(r)))
            .map(|room| Command::Leave { room: room.clone() })
            .collect();
        let rejoin = self
            .rooms
            .iter()
            .map(|room| {
                let room = room.clone();
                let cmd = if given.contains(&name_key(&room)) {
                    Command::Who { room: room.clone() }
                } else {
                    // A key is not kept: an operator comes back without one.
                    Command::Join {
                        room: room.clone(),
                        key: None,
                    }
                };
                (room, cmd)
            })
            .collect();
        let status = (self.status != Status::Online).then(|| Command::Status {
            status: self.status,
            text: self.status_text.clone(),
        });
        Restore {
            leave,
            rejoin,
            status,
        }
    }

    /// The reply to one of [`Restore::rejoin`]: the room's members, or the room is gone.
    pub fn rejoined(&mut self, room: &str, reply: ServerFrame) -> Vec<Show> {
        match reply {
            ServerFrame::Reply(r) => match r.data {
                ReplyData::Join { members, .. } | ReplyData::Who { members, .. } => {
                    self.members.insert(name_key(room), members);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            ServerFrame::Error(e) => {
                self.remove_room(room);
                vec![Show::Error(format!(
                    "could not rejoin #{room}: {}: {}",
                    e.code, e.message
                ))]
            }
            _ => Vec::new(),
        }
    }

    /// The first query to catch up on `room`: everything after the last message seen, or the
    /// recent history when none was seen.
    pub fn catch_up(&self, room: &str) -> HistoryQuery {
        let after = self.last_seen.get(&name_key(room)).cloned();
        let limit = if after.is_some() {
            HISTORY_LIMIT_MAX as u32
        } else {
            DEFAULT_HISTORY
        };
        HistoryQuery {
            room: room.to_owned(),
            before: None,
            after,
            limit: Some(limit),
        }
    }

    /// The reply to a catch-up `query`: the messages not shown yet, and the next page while
    /// pages come back full.
    pub fn caught_up(&mut self, query: &HistoryQuery, reply: ServerFrame) -> Page {
        let mut page = Page {
            show: Vec::new(),
            new: 0,
            next: None,
        };
        let messages = match reply {
            ServerFrame::Reply(r) => match r.data {
                ReplyData::History { messages, .. } => messages,
                _ => return page,
            },
            ServerFrame::Error(e) if query.after.is_some() && e.code == ErrorCode::BadFrame => {
                // The server no longer knows our last message (its history was reset).
                page.show.push(Show::Info(format!(
                    "the server lost the history of #{}; showing its latest messages",
                    query.room
                )));
                self.last_seen.remove(&name_key(&query.room));
                page.next = Some(self.catch_up(&query.room));
                return page;
            }
            _ => return page,
        };
        if query.after.is_some() && messages.len() >= HISTORY_LIMIT_MAX {
            page.next = messages.last().map(|last| HistoryQuery {
                after: Some(last.id.clone()),
                ..query.clone()
            });
        }
        // Counted as unread (and hidden in focus mode) like messages that arrive live; those
        // shown before the loss are not shown, nor counted, again.
        for m in messages {
            if let Some(shown) = self.message(m) {
                page.show.extend(self.noticed(shown));
                page.new += 1;
            }
        }
        page
    }

    /// The notice that ends a reconnect.
    pub fn reconnected(&self, caught_up: usize) -> Show {
        Show::Info(format!(
            "reconnected to {} as {}; caught up {caught_up} message{}",
            self.server_name,
            self.nick,
            if caught_up == 1 { "" } else { "s" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{
        ann_in, error, history_reply, ids, info, join_reply, msg, nicks, welcome,
    };
    use lanchat_protocol::Message;

    #[test]
    fn restoring_leaves_the_servers_extra_rooms_and_rejoins_the_users() {
        let model = ann_in(&["lobby", "dev"]);
        let plan = model.restore(&welcome("ann", &["Lobby", "random"]));
        assert_eq!(
            plan.leave,
            vec![Command::Leave {
                room: "random".into()
            }]
        );
        assert_eq!(
            plan.rejoin,
            vec![
                (
                    "lobby".to_owned(),
                    Command::Who {
                        room: "lobby".into()
                    }
                ),
                (
                    "dev".to_owned(),
                    Command::Join {
                        room: "dev".into(),
                        key: None
                    }
                ),
            ]
        );
        assert_eq!(plan.status, None);
    }

    #[test]
    fn a_room_that_cannot_be_rejoined_is_dropped() {
        let mut model = ann_in(&["lobby", "dev"]);
        model.set_current("dev");
        let shown = model.rejoined("lobby", join_reply("lobby", &["ann", "cat"]));
        assert!(shown.is_empty());
        assert_eq!(nicks(&model, "lobby"), ["ann", "cat"]);
        let shown = model.rejoined("dev", error(ErrorCode::TooManyRooms, "full"));
        assert_eq!(
            shown,
            vec![Show::Error(
                "could not rejoin #dev: too_many_rooms: full".into()
            )]
        );
        assert_eq!(model.rooms(), ["lobby"]);
        assert_eq!(model.current(), Some("lobby"));
    }

    #[test]
    fn catching_up_starts_after_the_newest_message_seen() {
        let mut model = ann_in(&["lobby", "dev"]);
        assert_eq!(model.catch_up("lobby").after, None);
        assert_eq!(model.catch_up("lobby").limit, Some(DEFAULT_HISTORY));
        // Ids are UUIDv7, ordered as text: an older one arriving late does not move the mark.
        model.apply_event(ServerFrame::Message(msg("05", "lobby", "bob")));
        model.apply_event(ServerFrame::Message(msg("03", "LOBBY", "bob")));
        let q = model.catch_up("lobby");
        assert_eq!(q.after.as_deref(), Some("05"));
        assert_eq!(q.limit, Some(HISTORY_LIMIT_MAX as u32));

        // Missed messages are shown and counted; those shown before the loss are not.
        let reply = history_reply(
            "lobby",
            vec![msg("05", "lobby", "bob"), msg("06", "lobby", "bob")],
        );
        let page = model.caught_up(&q, reply);
        assert_eq!(
            (ids(&page.show), page.new, page.next),
            (vec!["06"], 1, None)
        );
        assert_eq!(
            model.reconnected(1),
            info("reconnected to office as ann; caught up 1 message")
        );
        assert_eq!(
            model.reconnected(2),
            info("reconnected to office as ann; caught up 2 messages")
        );
    }

    #[test]
    fn missed_messages_count_as_unread_but_not_those_seen_before() {
        let mut model = ann_in(&["lobby", "dev"]);
        model.set_current("lobby");
        model.apply_event(ServerFrame::Message(msg("05", "dev", "bob")));
        model.set_current("dev");
        model.set_current("lobby");
        assert_eq!(model.activity_line().as_deref(), Some("[1:lobby 2:dev]"));
        let q = model.catch_up("dev");
        let reply = history_reply(
            "dev",
            vec![
                msg("05", "dev", "bob"),
                msg("06", "dev", "bob"),
                msg("07", "dev", "cat"),
            ],
        );
        let page = model.caught_up(&q, reply);
        assert_eq!(page.new, 2);
        assert_eq!(model.activity_line().as_deref(), Some("[1:lobby 2:dev(2)]"));
        // In the current room, nothing is unread.
        let q = model.catch_up("lobby");
        model.caught_up(&q, history_reply("lobby", vec![msg("08", "lobby", "bob")]));
        assert_eq!(model.activity_line().as_deref(), Some("[1:lobby 2:dev(2)]"));
    }

    #[test]
    fn a_full_page_asks_for_the_next() {
        let mut model = ann_in(&["lobby"]);
        model.apply_event(ServerFrame::Message(msg("0000", "lobby", "bob")));
        let q = model.catch_up("lobby");
        let page: Vec<Message> = (1..=HISTORY_LIMIT_MAX)
            .map(|i| msg(&format!("{i:04}"), "lobby", "bob"))
            .collect();
        let page = model.caught_up(&q, history_reply("lobby", page));
        assert_eq!(page.new, HISTORY_LIMIT_MAX);
        let next = page.next.expect("another page");
        assert_eq!(next.after.as_deref(), Some("0200"));
        assert_eq!(next.limit, q.limit);
        // A full page of recent history (nothing seen before) is all there is to show.
        let mut fresh = ann_in(&["dev"]);
        let q = fresh.catch_up("dev");
        let page: Vec<Message> = (1..=HISTORY_LIMIT_MAX)
            .map(|i| msg(&format!("{i:04}"), "dev", "bob"))
            .collect();
        assert_eq!(fresh.caught_up(&q, history_reply("dev", page)).next, None);
    }

    #[test]
    fn a_server_that_lost_its_history_is_asked_for_its_latest() {
        let mut model = ann_in(&["lobby"]);
        model.apply_event(ServerFrame::Message(msg("05", "lobby", "bob")));
        let q = model.catch_up("lobby");
        let page = model.caught_up(&q, error(ErrorCode::BadFrame, "unknown id"));
        assert_eq!(
            page.show,
            vec![info(
                "the server lost the history of #lobby; showing its latest messages"
            )]
        );
        let next = page.next.expect("the latest messages");
        assert_eq!(
            (next.after.as_deref(), next.limit),
            (None, Some(DEFAULT_HISTORY))
        );
        // Without an `after`, an error ends the catch-up.
        let page = model.caught_up(&next, error(ErrorCode::BadFrame, "no"));
        assert_eq!((page.show, page.new, page.next), (vec![], 0, None));
    }
}
