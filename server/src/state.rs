//! Shared chat state: sessions and their nicks, rooms and their members, room history.
//!
//! One `std::sync::Mutex` guards it all (see [`Shared`]). Every command runs as one short critical
//! section that also queues its reply and the events it causes, so the order in which lines enter
//! the outboxes is the order in which the state changed: all members of a room see its messages
//! in one order, and a session's reply is queued before any event that follows from it. Nothing
//! in here awaits or touches a socket; fan-out is a non-blocking push of a shared `Bytes`.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lanchat_protocol::validate::{name_key, name_key_ref};
use lanchat_protocol::{
    encode_history_reply, ErrorCode, HistoryQuery, Member, NickChange, QuitEvent, ReplyData,
    RequestId, RoomInfo, RoomNick, SentMessage, ServerFrame, Status, TopicChange,
    MAX_ROOMS_PER_SESSION,
};
use uuid::Uuid;

use crate::history::{RoomHistory, StoredMessage};
use crate::outbox::Outbox;

/// Identifies a connection for its whole life (nicks change, this does not).
pub type SessionId = u64;

/// A refusal that becomes an `error` reply.
pub type Refusal = (ErrorCode, String);

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

#[derive(Debug)]
struct Session {
    nick: String,
    status: Status,
    status_text: Option<String>,
    /// Keys of the rooms this session is in.
    rooms: HashSet<String>,
    outbox: Outbox,
}

impl Session {
    fn member(&self) -> Member {
        Member {
            nick: self.nick.clone(),
            status: self.status,
            text: self.status_text.clone(),
        }
    }
}

#[derive(Debug)]
struct Room {
    /// As first spelled.
    name: String,
    topic: String,
    members: HashMap<SessionId, Outbox>,
    history: RoomHistory,
}

impl Room {
    fn broadcast_except(&self, except: SessionId, line: &Bytes) {
        for (id, outbox) in &self.members {
            if *id != except {
                outbox.push(line.clone());
            }
        }
    }
}

/// A topic set by `topic`, for durable storage.
#[derive(Debug, Clone)]
pub struct TopicChanged {
    pub room_key: String,
    pub room: String,
    pub topic: String,
}

/// All sessions and rooms. Methods are the commands; each returns the reply data or a refusal.
#[derive(Debug)]
pub struct State {
    sessions: HashMap<SessionId, Session>,
    nicks: HashMap<String, SessionId>,
    rooms: HashMap<String, Room>,
    default_room: String,
    history_len: usize,
}

impl State {
    pub fn new(default_room: &str, history_len: usize) -> Self {
        let mut state = State {
            sessions: HashMap::new(),
            nicks: HashMap::new(),
            rooms: HashMap::new(),
            default_room: default_room.to_owned(),
            history_len,
        };
        state.room_entry(default_room);
        state
    }

    pub fn users(&self) -> usize {
        self.sessions.len()
    }

    /// Rooms that have at least one member.
    pub fn active_rooms(&self) -> usize {
        self.rooms
            .values()
            .filter(|r| !r.members.is_empty())
            .count()
    }

    fn room_entry(&mut self, name: &str) -> &mut Room {
        let history_len = self.history_len;
        self.rooms.entry(name_key(name)).or_insert_with(|| Room {
            name: name.to_owned(),
            topic: String::new(),
            members: HashMap::new(),
            history: RoomHistory::new(history_len),
        })
    }

    /// Reload a stored message (durable history at start).
    pub fn restore_message(&mut self, room: &str, message: StoredMessage) {
        self.room_entry(room).history.push(message);
    }

    /// Reload a room topic (durable history at start).
    pub fn restore_topic(&mut self, room: &str, topic: String) {
        self.room_entry(room).topic = topic;
    }

    /// Register a session under `nick` and put it in the default room. `welcome` runs once the
    /// nick is known to be free, before anyone is told of the join, so the session's welcome is
    /// queued ahead of every event.
    pub fn register_with(
        &mut self,
        id: SessionId,
        nick: &str,
        outbox: Outbox,
        welcome: impl FnOnce(),
    ) -> Result<(), Refusal> {
        let key = name_key(nick);
        if self.nicks.contains_key(&key) {
            return refuse(ErrorCode::NickTaken, format!("nick \"{nick}\" is taken"));
        }
        welcome();
        self.nicks.insert(key, id);
        self.sessions.insert(
            id,
            Session {
                nick: nick.to_owned(),
                status: Status::Online,
                status_text: None,
                rooms: HashSet::new(),
                outbox,
            },
        );
        let default_room = self.default_room.clone();
        self.join(id, &default_room)?;
        Ok(())
    }

    fn session(&self, id: SessionId) -> &Session {
        self.sessions.get(&id).expect("registered session")
    }

    /// The current nick of a registered session.
    pub fn nick_of(&self, id: SessionId) -> Option<String> {
        self.sessions.get(&id).map(|s| s.nick.clone())
    }

    fn members(&self, room: &Room) -> Vec<Member> {
        let mut members: Vec<Member> = room
            .members
            .keys()
            .map(|id| self.session(*id).member())
            .collect();
        // One key per member, not two per comparison: a join reply in a big room is a big sort.
        members.sort_by_cached_key(|m| name_key(&m.nick));
        members
    }

    pub fn join(&mut self, id: SessionId, room: &str) -> Result<ReplyData, Refusal> {
        let key = name_key(room);
        let session = self.sessions.get(&id).expect("registered session");
        if !session.rooms.contains(&key) {
            if session.rooms.len() >= MAX_ROOMS_PER_SESSION {
                return refuse(
                    ErrorCode::TooManyRooms,
                    format!("a session may be in at most {MAX_ROOMS_PER_SESSION} rooms"),
                );
            }
            let nick = session.nick.clone();
            let outbox = session.outbox.clone();
            let entry = self.room_entry(room);
            let event = ServerFrame::Join(RoomNick {
                room: entry.name.clone(),
                nick,
            })
            .encode_line();
            entry.broadcast_except(id, &event);
            entry.members.insert(id, outbox);
            self.sessions
                .get_mut(&id)
                .expect("registered session")
                .rooms
                .insert(key.clone());
        }
        let room = &self.rooms[&key];
        Ok(ReplyData::Join {
            room: room.name.clone(),
            topic: room.topic.clone(),
            members: self.members(room),
        })
    }

    pub fn leave(&mut self, id: SessionId, room: &str) -> Result<ReplyData, Refusal> {
        let key = name_key(room);
        let session = self.sessions.get_mut(&id).expect("registered session");
        if !session.rooms.remove(&key) {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        }
        let nick = session.nick.clone();
        let entry = self.rooms.get_mut(&key).expect("joined room exists");
        entry.members.remove(&id);
        let name = entry.name.clone();
        let event = ServerFrame::Leave(RoomNick {
            room: name.clone(),
            nick,
        })
        .encode_line();
        entry.broadcast_except(id, &event);
        self.forget_room_if_unused(&key);
        Ok(ReplyData::Leave { room: name })
    }

    /// Drop a room that has no member, no history and no topic: it would only cost memory.
    fn forget_room_if_unused(&mut self, key: &str) {
        if key == name_key(&self.default_room) {
            return;
        }
        if let Some(room) = self.rooms.get(key) {
            if room.members.is_empty() && room.history.is_empty() && room.topic.is_empty() {
                self.rooms.remove(key);
            }
        }
    }

    /// Accept a room message: fan it out to the other members and keep it in history.
    /// Send `text` to the members of `room`. Returns the `ok` reply (for `re`) and the message
    /// line as delivered and stored.
    pub fn say(
        &mut self,
        id: SessionId,
        re: Option<&RequestId>,
        room: &str,
        text: &str,
    ) -> Result<(Bytes, Bytes), Refusal> {
        let key = name_key_ref(room);
        let session = self.sessions.get(&id).expect("registered session");
        if !session.rooms.contains(key.as_ref()) {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        }
        let entry = self
            .rooms
            .get_mut(key.as_ref())
            .expect("joined room exists");
        let (msg_id, ts) = new_message_id();
        let mut id_buf = Uuid::encode_buffer();
        let sent = SentMessage {
            id: msg_id.hyphenated().encode_lower(&mut id_buf),
            ts,
            from: &session.nick,
            text,
        };
        let line = sent.message_line(&entry.name);
        let reply = sent.say_reply_line(re, &entry.name);
        entry.broadcast_except(id, &line);
        entry.history.push(StoredMessage {
            id: msg_id,
            line: line.clone(),
        });
        Ok((reply, line))
    }

    /// Send `text` to the session called `to`. Returns the `ok` reply (for `re`).
    pub fn dm(
        &mut self,
        id: SessionId,
        re: Option<&RequestId>,
        to: &str,
        text: &str,
    ) -> Result<Bytes, Refusal> {
        let Some(target) = self.nicks.get(name_key_ref(to).as_ref()) else {
            return refuse(ErrorCode::NoSuchNick, format!("nobody is called \"{to}\""));
        };
        let target = self.session(*target);
        let (msg_id, ts) = new_message_id();
        let mut id_buf = Uuid::encode_buffer();
        let sent = SentMessage {
            id: msg_id.hyphenated().encode_lower(&mut id_buf),
            ts,
            from: &self.session(id).nick,
            text,
        };
        target.outbox.push(sent.direct_line(&target.nick));
        Ok(sent.dm_reply_line(re, &target.nick))
    }

    /// Every other session that shares at least one room with `id`, each once.
    fn neighbours(&self, id: SessionId) -> HashSet<SessionId> {
        let mut out = HashSet::new();
        for key in &self.session(id).rooms {
            out.extend(self.rooms[key].members.keys().copied());
        }
        out.remove(&id);
        out
    }

    fn tell_neighbours(&self, id: SessionId, line: &Bytes) {
        for other in self.neighbours(id) {
            self.session(other).outbox.push(line.clone());
        }
    }

    pub fn set_nick(&mut self, id: SessionId, new: &str) -> Result<ReplyData, Refusal> {
        let new_key = name_key(new);
        match self.nicks.get(&new_key) {
            Some(owner) if *owner != id => {
                return refuse(ErrorCode::NickTaken, format!("nick \"{new}\" is taken"))
            }
            _ => {}
        }
        let old = std::mem::replace(
            &mut self.sessions.get_mut(&id).expect("registered session").nick,
            new.to_owned(),
        );
        if old == new {
            return Ok(ReplyData::Nick { nick: old });
        }
        self.nicks.remove(&name_key(&old));
        self.nicks.insert(new_key, id);
        let event = ServerFrame::Nick(NickChange {
            old,
            new: new.to_owned(),
        })
        .encode_line();
        self.tell_neighbours(id, &event);
        Ok(ReplyData::Nick {
            nick: new.to_owned(),
        })
    }

    pub fn set_status(
        &mut self,
        id: SessionId,
        status: Status,
        text: Option<String>,
    ) -> Result<ReplyData, Refusal> {
        let text = text.filter(|t| !t.is_empty());
        let session = self.sessions.get_mut(&id).expect("registered session");
        session.status = status;
        session.status_text = text.clone();
        let event = ServerFrame::Presence(session.member()).encode_line();
        self.tell_neighbours(id, &event);
        Ok(ReplyData::Status { status, text })
    }

    /// Read the topic (`topic` = None) or set it; setting needs membership.
    pub fn topic(
        &mut self,
        id: SessionId,
        room: &str,
        topic: Option<String>,
    ) -> Result<(ReplyData, Option<TopicChanged>), Refusal> {
        let key = name_key(room);
        let Some(topic) = topic else {
            let (name, topic) = match self.rooms.get(&key) {
                Some(r) => (r.name.clone(), r.topic.clone()),
                None => (room.to_owned(), String::new()),
            };
            return Ok((ReplyData::Topic { room: name, topic }, None));
        };
        let session = self.sessions.get(&id).expect("registered session");
        if !session.rooms.contains(&key) {
            return refuse(ErrorCode::NotInRoom, format!("you are not in \"{room}\""));
        }
        let by = session.nick.clone();
        let entry = self.rooms.get_mut(&key).expect("joined room exists");
        entry.topic = topic.clone();
        let event = ServerFrame::Topic(TopicChange {
            room: entry.name.clone(),
            topic: topic.clone(),
            by,
        })
        .encode_line();
        entry.broadcast_except(id, &event);
        let name = entry.name.clone();
        Ok((
            ReplyData::Topic {
                room: name.clone(),
                topic: topic.clone(),
            },
            Some(TopicChanged {
                room_key: key,
                room: name,
                topic,
            }),
        ))
    }

    pub fn who(&self, room: &str) -> ReplyData {
        match self.rooms.get(&name_key(room)) {
            Some(r) => ReplyData::Who {
                room: r.name.clone(),
                members: self.members(r),
            },
            None => ReplyData::Who {
                room: room.to_owned(),
                members: Vec::new(),
            },
        }
    }

    /// Rooms with members, plus the default room, sorted by name.
    pub fn rooms(&self) -> ReplyData {
        let default_key = name_key(&self.default_room);
        let mut rooms: Vec<(String, RoomInfo)> = self
            .rooms
            .iter()
            .filter(|(k, r)| !r.members.is_empty() || **k == default_key)
            .map(|(k, r)| {
                (
                    k.clone(),
                    RoomInfo {
                        name: r.name.clone(),
                        members: r.members.len(),
                        topic: r.topic.clone(),
                    },
                )
            })
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        ReplyData::Rooms {
            rooms: rooms.into_iter().map(|(_, r)| r).collect(),
        }
    }

    /// The encoded `ok` reply to a history request.
    pub fn history(
        &self,
        re: Option<&lanchat_protocol::RequestId>,
        q: &HistoryQuery,
    ) -> Result<Bytes, Refusal> {
        let Some(room) = self.rooms.get(&name_key(&q.room)) else {
            return Ok(encode_history_reply(re, &q.room, std::iter::empty()));
        };
        let messages = room.history.query(q).map_err(|unknown| {
            (
                ErrorCode::BadFrame,
                format!("field `{}` must be a message id", unknown.0),
            )
        })?;
        Ok(encode_history_reply(
            re,
            &room.name,
            messages.into_iter().map(|m| &m.line[..]),
        ))
    }

    /// Remove a session, telling everyone who shared a room with it (once each) why it left.
    pub fn remove(&mut self, id: SessionId, reason: Option<&str>) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        if let Some(reason) = reason {
            let event = ServerFrame::Quit(QuitEvent {
                nick: self.session(id).nick.clone(),
                reason: reason.to_owned(),
            })
            .encode_line();
            self.tell_neighbours(id, &event);
        }
        let session = self.sessions.remove(&id).expect("checked above");
        self.nicks.remove(&name_key(&session.nick));
        for key in &session.rooms {
            if let Some(room) = self.rooms.get_mut(key) {
                room.members.remove(&id);
            }
            self.forget_room_if_unused(key);
        }
    }
}

/// A fresh message id (UUIDv7) and the same instant in milliseconds since the Unix epoch.
fn new_message_id() -> (Uuid, u64) {
    let id = Uuid::now_v7();
    let ts = id
        .get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        });
    (id, ts)
}
