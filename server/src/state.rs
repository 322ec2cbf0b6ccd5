//! The chat rules: users and their nicks, rooms and their members, room history, and what each
//! command changes.
//!
//! Every rule is a transition over [`State`] that returns [`Effects`]: the reply to the user who
//! acted, at most one event and who receives it, and what to persist. Nothing in here pushes to
//! a queue, awaits, or touches a socket or a file: [`crate::chat`] applies the effects in the same
//! critical section as the rule (which is where the ordering guarantees come from), and the
//! rules can be tested alone (see the tests below).
//!
//! `State` is generic over the mailbox `M` each user is reached through (the server's
//! [`crate::outbox::Outbox`], a recorder in tests). The rules only clone and store mailboxes; they
//! have no way to deliver through one.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lanchat_protocol::validate::{lookalike_keys, name_key, name_key_ref};
use lanchat_protocol::{
    encode_history_reply, ErrorCode, HistoryQuery, LeaveEvent, Member, NickChange, QuitEvent,
    Reply, ReplyData, RequestId, RoomNick, ServerFrame, Status, TopicChange, MAX_ROOMS_PER_SESSION,
};
use uuid::Uuid;

pub use crate::effects::{Audience, Delivery, Effects, Persist, RoomKey};
use crate::history::{new_message, RoomHistory, StoredMessage};
pub use privacy::{KeyChange, RoomSettings, Rule, RuleChange};
use users::{User, UserRooms};

/// Identifies a connection for its whole life (nicks change, this does not).
pub type SessionId = u64;

/// A refusal that becomes an `error` reply: the code and a message for the user.
pub type Refusal = (ErrorCode, String);

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

/// Proof that a session is registered: only [`State::register`] makes one and only
/// [`State::remove`] takes it back, so a rule given one can rely on the user being there.
#[derive(Debug)]
pub struct Registered {
    id: SessionId,
}

impl Registered {
    pub fn id(&self) -> SessionId {
        self.id
    }
}

/// The `ok` reply line to request `re`.
fn ok_line(re: Option<&RequestId>, data: ReplyData) -> Bytes {
    ServerFrame::Reply(Reply {
        re: re.cloned(),
        data,
    })
    .encode_line()
}

#[derive(Debug)]
struct Room<M> {
    key: RoomKey,
    /// As first spelled: every reply and event names the room this way.
    name: String,
    /// The name's [`lookalike_keys`]; the room owns those entries of [`State::room_skeletons`]
    /// that a lookalike restored before it does not.
    skeletons: Vec<String>,
    topic: String,
    /// Each member's mailbox, held here so that fan-out needs no look-up per recipient.
    members: HashMap<SessionId, M>,
    history: RoomHistory,
    /// When the room has no member but is kept (for its history or topic): since which tick, its
    /// place in [`State::idle`].
    idle_since: Option<u64>,
    /// Operators, modes and invitations (`privacy.rs`).
    privacy: privacy::Privacy,
}

/// All users and rooms. The methods are the rules; each returns its effects or a refusal.
#[derive(Debug)]
pub struct State<M> {
    /// Boxed: the map's table is sized for the most users it held, and stays so.
    users: HashMap<SessionId, Box<User<M>>>,
    nicks: HashMap<String, SessionId>,
    /// Each nick's lookalike keys: a nick that looks like another's is taken (see `lookalikes`).
    nick_skeletons: HashMap<String, SessionId>,
    rooms: HashMap<RoomKey, Room<M>>,
    /// The lookalike keys of each room held, and whose they are: a new room may not look like one
    /// held.
    room_skeletons: HashMap<String, RoomKey>,
    /// Rooms with at least one member, kept as a count so that beacons need no scan.
    active: usize,
    /// The rooms `rooms` lists (those with at least one member, and the default room), in key
    /// order, so that a page is read without looking at any other room.
    listed: BTreeSet<RoomKey>,
    /// Rooms kept without members, oldest first: the first to be forgotten when a new room is
    /// needed and `max_rooms` are held.
    idle: BTreeSet<(u64, RoomKey)>,
    /// Counts room changes, to order `idle`.
    tick: u64,
    /// With a data directory, rooms without members are forgotten after this long.
    room_idle: Option<Duration>,
    /// The tick at each recent expiry pass (see `expire_idle`), oldest first: the rooms idle
    /// since a tick before one `room_idle` old have been idle that long. About
    /// `room_idle` / the pass interval of them.
    passes: VecDeque<(Instant, u64)>,
    max_rooms: usize,
    /// Memory held by every room's history, and the most it may hold.
    history_bytes: usize,
    max_history_bytes: usize,
    default_room: String,
    history_len: usize,
    /// Cluster mode: room messages reach history from the stream, in its order (`remote.rs`).
    clustered: bool,
    /// Cluster mode: the members other nodes hold.
    remote: crate::cluster::Roster,
}

impl<M: Clone> State<M> {
    pub fn new(default_room: &str, history_len: usize) -> Self {
        let mut state = State {
            users: HashMap::new(),
            nicks: HashMap::new(),
            nick_skeletons: HashMap::new(),
            rooms: HashMap::new(),
            room_skeletons: HashMap::new(),
            active: 0,
            listed: BTreeSet::new(),
            idle: BTreeSet::new(),
            tick: 0,
            room_idle: None,
            passes: VecDeque::new(),
            max_rooms: usize::MAX,
            history_bytes: 0,
            max_history_bytes: usize::MAX,
            default_room: default_room.to_owned(),
            history_len,
            clustered: false,
            remote: Default::default(),
        };
        if let Some(room) = state.room_entry(default_room) {
            let key = room.key.clone();
            state.listed.insert(key);
        }
        state
    }

    /// Registered users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Rooms that have at least one member.
    pub fn active_rooms(&self) -> usize {
        self.active
    }

    /// The mailbox of a user, for delivery.
    pub fn mailbox(&self, id: SessionId) -> Option<&M> {
        self.users.get(&id).map(|u| &u.mailbox)
    }

    /// The members of a room and their mailboxes, for delivery (`None` if the room is gone).
    pub fn room_mailboxes(&self, key: &str) -> Option<impl Iterator<Item = (&SessionId, &M)>> {
        self.rooms.get(key).map(|r| r.members.iter())
    }

    /// The current nick of a registered user.
    pub fn nick(&self, who: &Registered) -> &str {
        &self.user(who).nick
    }

    fn user(&self, who: &Registered) -> &User<M> {
        // A `Registered` exists exactly as long as its user is in the map (see its doc).
        &self.users[&who.id]
    }

    fn user_mut(&mut self, who: &Registered) -> &mut User<M> {
        self.users
            .get_mut(&who.id)
            .unwrap_or_else(|| unreachable!("a Registered outlives its user"))
    }

    /// Reload a stored message (durable history at start).
    pub fn restore_message(&mut self, room: &str, message: StoredMessage) {
        if let Some(entry) = self.room_entry(room) {
            let change = entry.history.push(message);
            let key = entry.key.clone();
            self.kept(&key, change);
        }
    }

    /// Reload a room topic (durable history at start).
    pub fn restore_topic(&mut self, room: &str, topic: String) {
        if let Some(entry) = self.room_entry(room) {
            entry.topic = topic;
        }
    }

    /// Register session `id` under `nick`, reached through `mailbox`, and put it in the default
    /// room if `autojoin`. `welcome` is the reply: it reaches the new user before anyone is told
    /// of the join.
    pub fn register(
        &mut self,
        id: SessionId,
        nick: &str,
        mailbox: M,
        welcome: Bytes,
        autojoin: bool,
    ) -> Result<(Registered, Effects), Refusal> {
        let key = name_key(nick);
        if self.nicks.contains_key(&key) {
            return refuse(ErrorCode::NickTaken, format!("nick \"{nick}\" is taken"));
        }
        let skeletons = lookalike_keys(nick);
        self.check_nick_lookalike(nick, &skeletons, id)?;
        self.nicks.insert(key, id);
        self.claim_nick_skeletons(&skeletons, id);
        self.users.insert(
            id,
            Box::new(User {
                nick: nick.to_owned(),
                skeletons,
                status: Status::Online,
                status_text: None,
                rooms: UserRooms::default(),
                mailbox,
            }),
        );
        let who = Registered { id };
        let default_room = self.default_room.clone();
        let event = match autojoin {
            true => self.enter(&who, &default_room)?,
            false => None,
        };
        let effects = Effects::reply(welcome);
        Ok((
            who,
            match event {
                Some(Delivery { to, line }) => effects.with_event(to, line),
                None => effects,
            },
        ))
    }

    /// Put `who` in `room` (made if need be); the join event for the other members, if `who`
    /// was not already there.
    fn enter(&mut self, who: &Registered, room: &str) -> Result<Option<Delivery>, Refusal> {
        let user = self.user(who);
        let (nick, mailbox) = (user.nick.clone(), user.mailbox.clone());
        let max_rooms = self.max_rooms;
        let Some(entry) = self.room_entry(room) else {
            return refuse(
                ErrorCode::TooManyRooms,
                format!("the server holds its limit of {max_rooms} rooms; join one that exists"),
            );
        };
        if entry.members.contains_key(&who.id) {
            return Ok(None);
        }
        let first = entry.members.is_empty();
        entry.members.insert(who.id, mailbox);
        let idle = entry.idle_since.take();
        let key = entry.key.clone();
        let listable = Self::listable(entry);
        let line = ServerFrame::Join(RoomNick {
            room: entry.name.clone(),
            nick,
        })
        .encode_line();
        if let Some(since) = idle {
            self.idle.remove(&(since, key.clone()));
        }
        if first {
            self.active += 1;
            if listable {
                self.listed.insert(key.clone());
            }
        }
        self.user_mut(who).rooms.insert(key.clone());
        Ok(Some(Delivery {
            to: Audience::Room {
                key,
                except: who.id,
            },
            line,
        }))
    }

    fn members(&self, room: &Room<M>) -> Vec<Member> {
        let mut members: Vec<Member> = room
            .members
            .keys()
            .filter_map(|id| self.users.get(id))
            .map(|u| Member {
                op: room.privacy.is_operator(&u.nick),
                ..u.member()
            })
            .collect();
        // Operators are one set cluster-wide: another node's member may be one here too.
        members.extend(self.remote.members(&room.key).map(|m| Member {
            op: room.privacy.is_operator(&m.nick),
            ..m.clone()
        }));
        // One key per member, not two per comparison: a join reply in a big room is a big sort.
        members.sort_by_cached_key(|m| name_key(&m.nick));
        members
    }

    pub fn join(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        key: Option<&str>,
    ) -> Result<Effects, Refusal> {
        let user = self.user(who);
        if !user.rooms.contains(name_key_ref(room).as_ref())
            && user.rooms.len() >= MAX_ROOMS_PER_SESSION
        {
            return refuse(
                ErrorCode::TooManyRooms,
                format!("a session may be in at most {MAX_ROOMS_PER_SESSION} rooms"),
            );
        }
        self.check_room_lookalike(room)?;
        let made = self.admit(who, room, key)?;
        let event = self.enter(who, room)?;
        let persist = made.then(|| self.made_by(who, room)).flatten();
        let rule = persist.is_some().then(|| self.made_rule(who, room));
        let entry = &self.rooms[name_key_ref(room).as_ref()];
        let reply = ok_line(
            re,
            ReplyData::Join {
                room: entry.name.clone(),
                topic: entry.topic.clone(),
                members: self.members(entry),
            },
        );
        let mut effects = Effects::reply(reply);
        effects.persist = persist;
        effects.rule = rule.flatten().map(Box::new);
        Ok(match event {
            Some(Delivery { to, line }) => effects.with_event(to, line),
            None => effects,
        })
    }

    pub fn leave(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
    ) -> Result<Effects, Refusal> {
        let key = name_key_ref(room);
        let Some(entry) = self
            .rooms
            .get_mut(key.as_ref())
            .filter(|r| r.members.contains_key(&who.id))
        else {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        };
        entry.members.remove(&who.id);
        let (room_key, name) = (entry.key.clone(), entry.name.clone());
        let user = self.user_mut(who);
        user.rooms.remove(key.as_ref());
        let line = ServerFrame::Leave(LeaveEvent {
            room: name.clone(),
            nick: user.nick.clone(),
            kicked_by: None,
            reason: None,
        })
        .encode_line();
        self.left(&room_key);
        Ok(
            Effects::reply(ok_line(re, ReplyData::Leave { room: name })).with_event(
                Audience::Room {
                    key: room_key,
                    except: who.id,
                },
                line,
            ),
        )
    }

    /// Accept a room message: the `ok` reply, the message for the other members, kept in
    /// history and persisted as the same line.
    pub fn say(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        text: &str,
    ) -> Result<Effects, Refusal> {
        let Some(entry) = self
            .rooms
            .get_mut(name_key_ref(room).as_ref())
            .filter(|r| r.members.contains_key(&who.id))
        else {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        };
        // The user is looked up in the map directly: `self.user` would borrow all of `self`.
        let from = &self.users[&who.id].nick;
        let mut id_buf = Uuid::encode_buffer();
        let (msg_id, sent) = new_message(&mut id_buf, from, text);
        let line = sent.message_line(&entry.name);
        let reply = sent.say_reply_line(re, &entry.name);
        let key = entry.key.clone();
        if !self.clustered {
            let stored = StoredMessage {
                id: msg_id,
                line: line.clone(),
            };
            let change = entry.history.push(stored);
            self.kept(&key, change);
        }
        Ok(Effects {
            reply: Some(reply),
            event: Some(Delivery {
                to: Audience::Room {
                    key: key.clone(),
                    except: who.id,
                },
                line: line.clone(),
            }),
            persist: Some(Persist::Message {
                room_key: key,
                line,
            }),
            rule: None,
        })
    }

    /// Send `text` to the user called `to`.
    pub fn dm(
        &self,
        who: &Registered,
        re: Option<&RequestId>,
        to: &str,
        text: &str,
    ) -> Result<Effects, Refusal> {
        let Some((target_id, target)) = self
            .nicks
            .get(name_key_ref(to).as_ref())
            .and_then(|id| Some((*id, self.users.get(id)?)))
        else {
            return refuse(ErrorCode::NoSuchNick, format!("nobody is called \"{to}\""));
        };
        let mut id_buf = Uuid::encode_buffer();
        let (_, sent) = new_message(&mut id_buf, &self.user(who).nick, text);
        // Extension: the sender learns that the recipient is away or busy (and why).
        Ok(
            Effects::reply(sent.dm_reply_line(re, &target.nick, target.away()))
                .with_event(Audience::User(target_id), sent.direct_line(&target.nick)),
        )
    }

    /// Every other user who shares at least one room with `who`, each once.
    fn neighbours(&self, who: &Registered) -> Vec<SessionId> {
        let mut seen = HashSet::new();
        for key in &self.user(who).rooms {
            if let Some(room) = self.rooms.get(key) {
                seen.extend(room.members.keys().copied());
            }
        }
        seen.remove(&who.id);
        seen.into_iter().collect()
    }

    pub fn set_nick(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        new: &str,
    ) -> Result<Effects, Refusal> {
        let new_key = name_key(new);
        if self
            .nicks
            .get(&new_key)
            .is_some_and(|owner| *owner != who.id)
        {
            return refuse(ErrorCode::NickTaken, format!("nick \"{new}\" is taken"));
        }
        // The user's own nick does not count: `bob` may become `BOB`, or `b0b`.
        let skeletons = lookalike_keys(new);
        self.check_nick_lookalike(new, &skeletons, who.id)?;
        let user = self.user_mut(who);
        let old = std::mem::replace(&mut user.nick, new.to_owned());
        let old_skeletons = std::mem::replace(&mut user.skeletons, skeletons.clone());
        let reply = ok_line(
            re,
            ReplyData::Nick {
                nick: new.to_owned(),
            },
        );
        if old == new {
            return Ok(Effects::reply(reply));
        }
        self.nicks.remove(&name_key(&old));
        self.nicks.insert(new_key, who.id);
        self.release_nick_skeletons(&old_skeletons, who.id);
        self.claim_nick_skeletons(&skeletons, who.id);
        let line = ServerFrame::Nick(NickChange {
            old,
            new: new.to_owned(),
        })
        .encode_line();
        Ok(Effects::reply(reply).with_event(Audience::Users(self.neighbours(who)), line))
    }

    pub fn set_status(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        status: Status,
        text: Option<String>,
    ) -> Result<Effects, Refusal> {
        let text = text.filter(|t| !t.is_empty());
        let user = self.user_mut(who);
        user.status = status;
        user.status_text = text.clone();
        let line = ServerFrame::Presence(user.member()).encode_line();
        let reply = ok_line(re, ReplyData::Status { status, text });
        Ok(Effects::reply(reply).with_event(Audience::Users(self.neighbours(who)), line))
    }

    /// Read a room's topic (`topic` = None; anyone may) or set it (members only).
    pub fn topic(
        &mut self,
        who: &Registered,
        re: Option<&RequestId>,
        room: &str,
        topic: Option<String>,
    ) -> Result<Effects, Refusal> {
        let key = name_key_ref(room);
        let Some(topic) = topic else {
            let (room, topic) = match self.readable(who.id, room) {
                Some(r) => (r.name.clone(), r.topic.clone()),
                None => (room.to_owned(), String::new()),
            };
            return Ok(Effects::reply(ok_line(
                re,
                ReplyData::Topic { room, topic },
            )));
        };
        let by = self.user(who).nick.clone();
        let Some(entry) = self
            .rooms
            .get(key.as_ref())
            .filter(|r| r.members.contains_key(&who.id))
        else {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        };
        self.may_set_topic(who, entry)?;
        let entry = self.rooms.get_mut(key.as_ref()).expect("looked up above");
        entry.topic = topic.clone();
        let line = ServerFrame::Topic(TopicChange {
            room: entry.name.clone(),
            topic: topic.clone(),
            by,
        })
        .encode_line();
        let reply = ok_line(
            re,
            ReplyData::Topic {
                room: entry.name.clone(),
                topic: topic.clone(),
            },
        );
        Ok(Effects {
            reply: Some(reply),
            event: Some(Delivery {
                to: Audience::Room {
                    key: entry.key.clone(),
                    except: who.id,
                },
                line,
            }),
            persist: Some(Persist::Topic {
                room_key: entry.key.clone(),
                room: entry.name.clone(),
                topic,
                settings: entry.privacy.settings(),
            }),
            rule: None,
        })
    }

    /// The members of `room`; none for a room that does not exist or that `who` may not read.
    pub fn who(&self, who: &Registered, re: Option<&RequestId>, room: &str) -> Effects {
        let data = match self.readable(who.id, room) {
            Some(r) => ReplyData::Who {
                room: r.name.clone(),
                members: self.members(r),
            },
            None => ReplyData::Who {
                room: room.to_owned(),
                members: Vec::new(),
            },
        };
        Effects::reply(ok_line(re, data))
    }

    /// The `ok` reply to a history request, spliced from the stored lines. A room that does not
    /// exist, or that `who` may not read, has no history.
    pub fn history(
        &self,
        who: &Registered,
        re: Option<&RequestId>,
        q: &HistoryQuery,
    ) -> Result<Effects, Refusal> {
        let Some(room) = self.readable(who.id, &q.room) else {
            return Ok(Effects::reply(encode_history_reply(
                re,
                &q.room,
                std::iter::empty(),
            )));
        };
        let messages = room.history.query(q).map_err(|unknown| {
            (
                ErrorCode::BadFrame,
                format!("field `{}` must be a message id", unknown.0),
            )
        })?;
        Ok(Effects::reply(encode_history_reply(
            re,
            &room.name,
            messages.into_iter().map(|m| &m.line[..]),
        )))
    }

    /// Remove a user. With a reason, everyone who shared a room with them is told (once each).
    pub fn remove(&mut self, who: Registered, reason: Option<&str>) -> Effects {
        let mut effects = Effects::default();
        if let Some(reason) = reason {
            let line = ServerFrame::Quit(QuitEvent {
                nick: self.user(&who).nick.clone(),
                reason: reason.to_owned(),
            })
            .encode_line();
            effects = effects.with_event(Audience::Users(self.neighbours(&who)), line);
        }
        if let Some(user) = self.users.remove(&who.id) {
            self.nicks.remove(&name_key(&user.nick));
            self.release_nick_skeletons(&user.skeletons, who.id);
            for key in &user.rooms {
                if let Some(room) = self.rooms.get_mut(key) {
                    room.members.remove(&who.id);
                }
                self.left(key);
            }
        }
        effects
    }
}

mod holders;
mod keeping;
mod listing;
mod lookalikes;
mod privacy;
mod remote;
pub use remote::Away;
mod users;

#[cfg(test)]
#[path = "state_tests.rs"]
pub(crate) mod tests;
