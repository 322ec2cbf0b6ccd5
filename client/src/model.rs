//! The chat as the user sees it: the nick, the joined rooms in the order they were joined and the
//! current one, who is in each room and how they are, the rooms heard of, the user's own status,
//! and which messages have been shown (so history fetched after a reconnect repeats none).
//!
//! Pure: replies and events come in as protocol values; what to show comes back as [`Show`]
//! values, and what to do next (fetch a room's history, the requests that restore a new
//! connection, in [`restore`]) as plain data. No I/O, no clock, so every rule is unit-tested
//! (`model/tests.rs`, and beside the code in `model/restore.rs`).

use std::collections::{HashMap, HashSet, VecDeque};

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{
    Command, Direct, ErrorFrame, HistoryQuery, Member, Message, ReplyData, RoomInfo, ServerFrame,
    Status, Welcome,
};

use crate::commands::{SwitchTarget, DEFAULT_HISTORY};

/// How many shown message ids are remembered to avoid showing one twice.
pub const SHOWN_IDS: usize = 4096;

/// One thing to show the user; the session renders it as the mode calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum Show {
    /// A client notice.
    Info(String),
    /// An error or a hint.
    Error(String),
    /// A room message; `room_shown` when its room is not the obvious one (the user is in several
    /// rooms, or the message is not for the current one).
    Message { message: Message, room_shown: bool },
    /// A direct message, received or sent.
    Direct(Direct),
    /// A server event shown as a notice: join, leave, quit, nick, presence, topic, bye.
    Event(ServerFrame),
    /// The members of a room.
    Members { room: String, members: Vec<Member> },
    /// The server's room list, and which of them the user is in.
    Rooms {
        rooms: Vec<RoomInfo>,
        joined: Vec<bool>,
    },
    /// Where a block of old messages starts or ends (see [`bracket`]); a notice, which `--json`
    /// has no use for.
    Backlog(String),
}

/// What a reply asks of the session: lines to show, then perhaps a room's history to fetch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub show: Vec<Show>,
    /// After a join: fetch the recent history of this room and show it with [`Model::history`].
    pub fetch_history: Option<String>,
}

impl From<Vec<Show>> for Outcome {
    fn from(show: Vec<Show>) -> Self {
        Outcome {
            show,
            fetch_history: None,
        }
    }
}

/// Message ids already shown, the oldest forgotten first.
#[derive(Debug, Default)]
struct ShownIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl ShownIds {
    /// Remember `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == SHOWN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// The state of the chat.
#[derive(Debug)]
pub struct Model {
    nick: String,
    /// Joined rooms, in the order they were joined (the order of /1, /2, ...).
    rooms: Vec<String>,
    current: Option<String>,
    /// The members of each joined room, by room key.
    members: HashMap<String, Vec<Member>>,
    /// Rooms joined or listed by `/rooms` (for completion).
    known_rooms: Vec<String>,
    /// The newest message id seen per room (by room key), for `history after` on reconnect.
    last_seen: HashMap<String, String>,
    shown: ShownIds,
    status: Status,
    status_text: Option<String>,
    server_name: String,
    /// The nick asked for while the server gave another (`ann_2`): taken back once free.
    wanted_nick: Option<String>,
    /// Unread counts, mentions, unanswered DMs, focus mode.
    activity: Activity,
    /// DM conversations (`/query`), one of which may be talked in instead of the current room.
    queries: Queries,
}

impl Model {
    /// Before the first `welcome`: only the nick the user asked for.
    pub fn new(nick: impl Into<String>) -> Self {
        Model {
            nick: nick.into(),
            rooms: Vec::new(),
            current: None,
            members: HashMap::new(),
            known_rooms: Vec::new(),
            last_seen: HashMap::new(),
            shown: ShownIds::default(),
            status: Status::Online,
            status_text: None,
            server_name: String::new(),
            wanted_nick: None,
            activity: Activity::default(),
            queries: Queries::default(),
        }
    }

    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The nick to say hello with: the one asked for, even while known by another.
    pub fn hello_nick(&self) -> &str {
        self.wanted_nick.as_deref().unwrap_or(&self.nick)
    }

    /// The nick asked for, while the server gave another; `None` once taken back or given up.
    pub fn wanted_nick(&self) -> Option<&str> {
        self.wanted_nick.as_deref()
    }

    /// Stop wanting the nick back (the user chose another with `/nick`, or it stayed taken).
    pub fn forget_wanted_nick(&mut self) {
        self.wanted_nick = None;
    }

    /// Whether `event` frees the nick wanted back: its holder quit or changed nick.
    pub fn frees_wanted_nick(&self, event: &ServerFrame) -> bool {
        let Some(wanted) = &self.wanted_nick else {
            return false;
        };
        match event {
            ServerFrame::Quit(q) => name_key(&q.nick) == name_key(wanted),
            ServerFrame::Nick(n) => name_key(&n.old) == name_key(wanted),
            _ => false,
        }
    }

    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// The joined rooms, in the order of /1, /2, ...
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    pub fn is_joined(&self, room: &str) -> bool {
        self.room_index(room).is_some()
    }

    /// The members of a joined room, as last heard.
    pub fn members(&self, room: &str) -> Option<&[Member]> {
        self.members.get(&name_key(room)).map(Vec::as_slice)
    }

    /// The REPL prompt: the current room.
    pub fn prompt(&self) -> String {
        if let Some(nick) = self.queries.active() {
            return format!("@{}> ", crate::sanitize::name(nick));
        }
        match &self.current {
            Some(room) => format!("#{}> ", crate::sanitize::name(room)),
            None => "(no room)> ".to_owned(),
        }
    }

    /// The nicks of the current room (for completion).
    pub fn nicks_here(&self) -> Vec<String> {
        self.current
            .as_deref()
            .and_then(|r| self.members(r))
            .map(|list| list.iter().map(|m| m.nick.clone()).collect())
            .unwrap_or_default()
    }

    /// The joined rooms, then the others heard of (for completion).
    pub fn room_names(&self) -> Vec<String> {
        let mut rooms = self.rooms.clone();
        for r in &self.known_rooms {
            if !rooms.iter().any(|x| name_key(x) == name_key(r)) {
                rooms.push(r.clone());
            }
        }
        rooms
    }

    // ----- connecting -----

    /// A `welcome` (first connect or reconnect): the nick the server gave, suffixed when the one
    /// asked for was taken.
    pub fn welcomed(&mut self, welcome: &Welcome, nick_taken: bool) -> Vec<Show> {
        let mut show = Vec::new();
        let asked = self.hello_nick().to_owned();
        if nick_taken {
            show.push(Show::Info(format!(
                "the nick {asked} is taken; you are {}",
                welcome.nick
            )));
            self.wanted_nick = Some(asked);
        } else {
            self.wanted_nick = None;
        }
        self.nick = welcome.nick.clone();
        self.server_name = welcome.name.clone();
        show
    }

    /// The first `welcome`: the server's greeting, and the rooms it put the user in (the first
    /// one current).
    pub fn started(&mut self, welcome: &Welcome) -> Vec<Show> {
        let mut show = vec![Show::Info(format!(
            "connected to {} ({}) as {}",
            welcome.name, welcome.server, welcome.nick
        ))];
        show.extend(
            welcome
                .motd
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Show::Info(l.to_owned())),
        );
        self.rooms = welcome.rooms.clone();
        self.current = self.rooms.first().cloned();
        show
    }

    /// Make a joined room current without a notice (`--room` naming a room already joined).
    pub fn set_current(&mut self, room: &str) {
        if let Some(i) = self.room_index(room) {
            self.current = Some(self.rooms[i].clone());
            self.read_current(None);
        }
    }

    // ----- replies -----

    /// What any reply does: the state it changes and the lines it shows.
    pub fn apply_reply(&mut self, reply: ServerFrame) -> Outcome {
        let data = match reply {
            ServerFrame::Reply(r) => r.data,
            ServerFrame::Error(e) => return vec![error_shown(&e)].into(),
            _ => return Outcome::default(),
        };
        let mut show = Vec::new();
        match data {
            ReplyData::Join {
                room,
                topic,
                members,
            } => {
                if !self.is_joined(&room) {
                    self.rooms.push(room.clone());
                }
                self.current = Some(room.clone());
                self.read_current(None);
                self.queries.leave_active();
                self.remember_room(&room);
                show.push(Show::Info(format!("joined #{room}")));
                if !topic.is_empty() {
                    show.push(Show::Info(format!("topic of #{room}: {topic}")));
                }
                show.push(Show::Members {
                    room: room.clone(),
                    members: members.clone(),
                });
                self.members.insert(name_key(&room), members);
                return Outcome {
                    show,
                    fetch_history: Some(room),
                };
            }
            ReplyData::Leave { room } => {
                self.remove_room(&room);
                show.push(Show::Info(format!("left #{room}")));
                if let Some(cur) = &self.current {
                    show.push(Show::Info(format!("now talking in #{cur}")));
                }
            }
            ReplyData::Nick { nick } => {
                self.wanted_nick = None;
                let old = std::mem::replace(&mut self.nick, nick.clone());
                self.rename_member(&old, &nick);
                show.push(Show::Info(format!("you are now known as {nick}")));
            }
            ReplyData::Status { status, text } => {
                show.push(Show::Info(match (status, &text) {
                    (Status::Online, _) => "you are back".to_owned(),
                    (s, Some(t)) => format!("you are {}: {t}", s.as_str()),
                    (s, None) => format!("you are {}", s.as_str()),
                }));
                let me = self.nick.clone();
                self.set_presence(&me, status, &text);
                self.status = status;
                self.status_text = text;
            }
            ReplyData::Register { nick, persistent } => show.push(Show::Info(match persistent {
                true => format!("{nick} is registered: only you can use it"),
                false => {
                    format!("{nick} is registered until the server restarts (it keeps no data)")
                }
            })),
            ReplyData::Unregister { nick } => {
                show.push(Show::Info(format!("{nick} is no longer registered")))
            }
            ReplyData::Topic { room, topic } => show.push(Show::Info(match topic.as_str() {
                "" => format!("#{room} has no topic"),
                t => format!("topic of #{room}: {t}"),
            })),
            ReplyData::Who { room, members } => {
                // Stored silently: shown only when the user asked (see `apply_reply_to`).
                if self.is_joined(&room) {
                    self.members.insert(name_key(&room), members);
                }
            }
            ReplyData::Rooms { rooms, next } => {
                for r in &rooms {
                    self.remember_room(&r.name);
                }
                let joined = rooms.iter().map(|r| self.is_joined(&r.name)).collect();
                show.push(Show::Rooms { rooms, joined });
                // One page at a time: a server may hold thousands of rooms.
                if let Some(next) = next {
                    show.push(Show::Info(format!("more rooms follow: /rooms {next}")));
                }
            }
            ReplyData::History { room, messages } => {
                if messages.is_empty() {
                    show.push(Show::Info("no messages".into()));
                }
                // `/history` shows messages again, even those shown before.
                let mut asked = Vec::new();
                for m in messages {
                    self.shown.insert(&m.id);
                    asked.push(self.seen(m));
                }
                show.extend(bracket(Backlog::Asked, &room, asked));
            }
            ReplyData::Mode(m) => show.push(Show::Info(format!(
                "modes of #{}: {}",
                m.room,
                crate::render::modes(m.invite_only, m.has_key, m.topic_lock)
            ))),
            ReplyData::Invite { room, nick } => {
                show.push(Show::Info(format!("invited {nick} to #{room}")))
            }
            ReplyData::Kick { room, nick } => {
                show.push(Show::Info(format!("removed {nick} from #{room}")))
            }
            ReplyData::Op { room, nick } => {
                show.push(Show::Info(format!("{nick} is now an operator of #{room}")))
            }
            ReplyData::Say { .. } | ReplyData::Dm { .. } | ReplyData::Ping {} => {}
        }
        show.into()
    }

    /// A reply to a command the user typed: own messages are shown as sent, and `/who` and
    /// `/topic TEXT` say what they did; the rest is [`Model::apply_reply`].
    pub fn apply_reply_to(&mut self, cmd: &Command, reply: ServerFrame) -> Outcome {
        if let (Command::Say { text, .. } | Command::Dm { text, .. }, ServerFrame::Error(e)) =
            (cmd, &reply)
        {
            // The typed line was erased (its echo would replace it): say what was not sent.
            return vec![Show::Error(format!(
                "{}: {} (not sent: {})",
                e.code,
                e.message,
                preview(text)
            ))]
            .into();
        }
        let ServerFrame::Reply(r) = &reply else {
            return self.apply_reply(reply);
        };
        match (cmd, &r.data) {
            (Command::Say { text, .. }, ReplyData::Say { id, ts, room }) => {
                let msg = Message {
                    id: id.clone(),
                    ts: *ts,
                    room: room.clone(),
                    from: self.nick.clone(),
                    text: text.clone(),
                };
                self.message(msg).into_iter().collect::<Vec<_>>().into()
            }
            (
                Command::Dm { text, .. },
                ReplyData::Dm {
                    id,
                    ts,
                    to,
                    away,
                    away_text,
                },
            ) => {
                // A DM to oneself also arrives as `direct`; show it once.
                if name_key(to) == name_key(&self.nick) {
                    return Outcome::default();
                }
                self.noticed_direct(&self.nick.clone(), to);
                let mut show = vec![Show::Direct(Direct {
                    id: id.clone(),
                    ts: *ts,
                    from: self.nick.clone(),
                    to: to.clone(),
                    text: text.clone(),
                })];
                // The server's extension: the recipient is away or busy.
                if *away == Some(true) {
                    show.push(Show::Info(crate::away::recipient_away(
                        to,
                        away_text.as_deref(),
                    )));
                }
                show.into()
            }
            (Command::Topic { topic: Some(_), .. }, ReplyData::Topic { room, topic }) => {
                vec![Show::Info(match topic.as_str() {
                    "" => format!("cleared the topic of #{room}"),
                    t => format!("set the topic of #{room}: {t}"),
                })]
                .into()
            }
            // A reply of another kind to these is not for the user.
            (
                Command::Say { .. } | Command::Dm { .. } | Command::Topic { topic: Some(_), .. },
                _,
            ) => Outcome::default(),
            (Command::Who { .. }, ReplyData::Who { room, members }) => {
                let asked = Show::Members {
                    room: room.clone(),
                    members: members.clone(),
                };
                let mut outcome = self.apply_reply(reply);
                outcome.show.insert(0, asked);
                outcome
            }
            _ => self.apply_reply(reply),
        }
    }

    /// The reply to a recent-history query (on start, after a join): the messages not shown yet.
    pub fn history(&mut self, reply: ServerFrame) -> Vec<Show> {
        match reply {
            ServerFrame::Reply(r) => match r.data {
                ReplyData::History { room, messages } => {
                    let shown = messages
                        .into_iter()
                        .filter_map(|m| self.message(m))
                        .collect();
                    bracket(Backlog::Recent, &room, shown)
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    // ----- events -----

    /// A server event (not a reply): the members it changes, and what to show.
    pub fn apply_event(&mut self, event: ServerFrame) -> Vec<Show> {
        match event {
            ServerFrame::Message(m) => {
                return self.message(m).map_or(Vec::new(), |s| self.noticed(s))
            }
            ServerFrame::Direct(d) => {
                self.noticed_direct(&d.from, &d.to);
                if name_key(&d.from) != name_key(&self.nick) {
                    self.queries.received_from(&d.from);
                }
                return vec![Show::Direct(d)];
            }
            ServerFrame::Error(e) => return vec![error_shown(&e)],
            ServerFrame::Welcome(_) | ServerFrame::Reply(_) | ServerFrame::Ping {} => {
                return Vec::new()
            }
            ServerFrame::Join(ref j) => {
                if let Some(list) = self.members.get_mut(&name_key(&j.room)) {
                    if !list.iter().any(|m| name_key(&m.nick) == name_key(&j.nick)) {
                        list.push(Member {
                            nick: j.nick.clone(),
                            status: Status::Online,
                            text: None,
                            op: false,
                        });
                    }
                }
            }
            // Removed by an operator: the room is left, as after `/leave`.
            ServerFrame::Leave(ref l) if name_key(&l.nick) == name_key(&self.nick) => {
                self.remove_room(&l.room);
            }
            ServerFrame::Leave(ref l) => {
                if let Some(list) = self.members.get_mut(&name_key(&l.room)) {
                    list.retain(|m| name_key(&m.nick) != name_key(&l.nick));
                }
            }
            ServerFrame::Quit(ref q) => {
                for list in self.members.values_mut() {
                    list.retain(|m| name_key(&m.nick) != name_key(&q.nick));
                }
            }
            // Someone's new nick; the user's own changes through the reply to `/nick`.
            ServerFrame::Nick(ref n) => {
                self.rename_member(&n.old, &n.new);
                self.queries.rename(&n.old, &n.new);
            }
            ServerFrame::Presence(ref p) => self.set_presence(&p.nick, p.status, &p.text),
            ServerFrame::Topic(_)
            | ServerFrame::Bye(_)
            | ServerFrame::Mode(_)
            | ServerFrame::Invite(_) => {}
        }
        vec![Show::Event(event)]
    }

    // ----- input -----

    /// `/switch ROOM` or `/N`: make a joined room current.
    pub fn switch(&mut self, target: &SwitchTarget) -> Show {
        let room = match target {
            SwitchTarget::Position(n) => match n.checked_sub(1).and_then(|i| self.rooms.get(i)) {
                Some(room) => room.clone(),
                None => {
                    return Show::Error(format!(
                        "no room at position {n}; you are in {}",
                        self.room_list()
                    ))
                }
            },
            SwitchTarget::Room(name) => match self.room_index(name) {
                Some(i) => self.rooms[i].clone(),
                None => return Show::Error(format!("you are not in #{name}; /join {name} first")),
            },
        };
        let show = Show::Info(format!("now talking in #{room}"));
        self.current = Some(room);
        self.read_current(None);
        self.queries.leave_active();
        show
    }

    // ----- helpers -----

    /// A room message, unless it was shown already.
    fn message(&mut self, m: Message) -> Option<Show> {
        self.shown.insert(&m.id).then(|| self.seen(m))
    }

    /// Note `m` as the newest of its room if it is, and show it.
    fn seen(&mut self, m: Message) -> Show {
        let key = name_key(&m.room);
        // Message ids are UUIDv7: their text order is their time order.
        if self.last_seen.get(&key).is_none_or(|seen| m.id > *seen) {
            self.last_seen.insert(key, m.id.clone());
        }
        let elsewhere = self.current.as_deref().map(name_key) != Some(name_key(&m.room));
        Show::Message {
            room_shown: self.rooms.len() > 1 || elsewhere,
            message: m,
        }
    }

    fn room_index(&self, room: &str) -> Option<usize> {
        let key = name_key(room);
        self.rooms.iter().position(|r| name_key(r) == key)
    }

    fn room_list(&self) -> String {
        if self.rooms.is_empty() {
            return "no room".into();
        }
        self.rooms
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}:#{r}", i + 1))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Forget a room; when it was current, the first room left becomes current.
    fn remove_room(&mut self, room: &str) {
        if let Some(i) = self.room_index(room) {
            let removed = self.rooms.remove(i);
            self.members.remove(&name_key(&removed));
            if self.current.as_deref().map(name_key) == Some(name_key(&removed)) {
                self.current = self.rooms.first().cloned();
            }
            self.read_current(Some(&removed));
        }
    }

    fn remember_room(&mut self, room: &str) {
        if !self
            .known_rooms
            .iter()
            .any(|r| name_key(r) == name_key(room))
        {
            self.known_rooms.push(room.to_owned());
        }
    }

    /// Every member entry of `nick`, in every room.
    fn member_entries(&mut self, nick: &str) -> impl Iterator<Item = &mut Member> + '_ {
        let key = name_key(nick);
        self.members
            .values_mut()
            .flatten()
            .filter(move |m| name_key(&m.nick) == key)
    }

    fn rename_member(&mut self, old: &str, new: &str) {
        for m in self.member_entries(old) {
            m.nick = new.to_owned();
        }
    }

    fn set_presence(&mut self, nick: &str, status: Status, text: &Option<String>) {
        for m in self.member_entries(nick) {
            m.status = status;
            m.text = text.clone();
        }
    }
}

/// A reply this version cannot decode: still show an error as one.
pub fn undecoded_reply(line: &str) -> Vec<Show> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    if v["type"] != "error" {
        return Vec::new();
    }
    let code = v["code"].as_str().unwrap_or("error");
    let message = v["message"].as_str().unwrap_or("");
    vec![Show::Error(format!("{code}: {message}"))]
}

/// The start of a message, to name it in a notice.
fn preview(text: &str) -> String {
    const CHARS: usize = 60;
    match text.char_indices().nth(CHARS) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

fn error_shown(e: &ErrorFrame) -> Show {
    Show::Error(format!("{}: {}", e.code, e.message))
}

/// The query for the recent messages of `room` shown on start and after a join.
pub fn recent_history(room: &str) -> Command {
    Command::History(HistoryQuery {
        room: room.to_owned(),
        before: None,
        after: None,
        limit: Some(DEFAULT_HISTORY),
    })
}

mod activity;
mod backlog;
pub mod queries;
mod restore;
#[cfg(test)]
mod tests;

use activity::Activity;
pub use backlog::{bracket, Backlog};
use queries::Queries;
pub use restore::{Page, Restore};
