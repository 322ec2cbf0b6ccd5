//! Typed frames: `Request` (client to server) and `ServerFrame` (server to client).
//!
//! Requests are decoded by hand rather than by `serde` so that every error names the offending
//! field and carries the request's `id` back as `re` whenever it could be read. Everything is
//! encoded with `serde`, so encode-then-decode is the identity (see the tests).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumString, IntoStaticStr, VariantArray};

use crate::error::{DecodeError, ErrorCode};
use crate::fields::{Raw, RawFrame, RawObject};
use crate::private::{InviteEvent, ModeEvent, ModeRequest, RoomModes};
use crate::validate;
use crate::{
    HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX, MAX_ID_BYTES, MAX_NAME_CHARS, ROOMS_PAGE_MAX,
};

/// A request's `id`, echoed as `re` in its reply with the same JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    UInt(u64),
    Str(String),
}

impl From<u64> for RequestId {
    fn from(n: u64) -> Self {
        match i64::try_from(n) {
            Ok(i) => RequestId::Int(i),
            Err(_) => RequestId::UInt(n),
        }
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::Str(s.to_owned())
    }
}

/// Presence status of a session.
// The wire names come from the variant names, as for `ErrorCode`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Default,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    #[default]
    Online,
    Away,
    Busy,
}

impl Status {
    /// The status as written on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One client request: an optional id and a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    #[serde(flatten)]
    pub command: Command,
}

/// What a client can ask of the server. The variant name is the wire `type`.
///
/// `CommandType` is its field-less twin: the decoder reads `type` into it, then matches on it
/// exhaustively, so a new command cannot be left out of decoding.
#[derive(Debug, Clone, PartialEq, Serialize, IntoStaticStr, EnumDiscriminants)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(
    name(CommandType),
    vis(pub(crate)),
    derive(Hash, EnumString, IntoStaticStr, VariantArray),
    strum(serialize_all = "snake_case")
)]
pub enum Command {
    Hello(Hello),
    Join {
        room: String,
        /// The room's key, for a key-protected room (see PROTOCOL.md, "Private rooms").
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Leave {
        room: String,
    },
    Say {
        room: String,
        text: String,
    },
    Dm {
        to: String,
        text: String,
    },
    Nick {
        nick: String,
        /// Extension (accounts): the secret of `nick` when it is registered.
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    Status {
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Topic {
        room: String,
        /// `None` reads the topic; `Some("")` clears it.
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    Who {
        room: String,
    },
    /// `after`: list the rooms whose key sorts after this name's; `limit`: 1 to
    /// [`crate::ROOMS_PAGE_MAX`] rooms (default: that many).
    Rooms {
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    History(HistoryQuery),
    /// Private rooms: read or change a room's modes (operators change them).
    Mode(ModeRequest),
    /// Private rooms: let `nick` join `room` once.
    Invite {
        room: String,
        nick: String,
    },
    /// Private rooms: remove `nick` from `room`.
    Kick {
        room: String,
        nick: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Private rooms: make `nick` an operator of `room`.
    Op {
        room: String,
        nick: String,
    },
    Ping {},
    Pong {},
    Quit {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Extension (accounts): register the session's nick with this secret (or replace its
    /// secret); see [`validate::check_secret`] for its shape.
    Register {
        secret: String,
    },
    /// Extension (accounts): release the session's registered nick.
    Unregister {},
}

impl Command {
    /// The wire `type` of this command, which is also the `cmd` of its `ok` reply.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hello {
    pub nick: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Extension (accounts): the secret of `nick` when it is registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Extension: `false` registers without joining the default room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autojoin: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryQuery {
    pub room: String,
    /// A message id; a decoded request holds only strings that pass
    /// [`validate::is_message_id`] here and in `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl HistoryQuery {
    pub fn limit_or_default(&self) -> usize {
        self.limit.map_or(HISTORY_LIMIT_DEFAULT, |l| l as usize)
    }
}

impl Request {
    pub fn new(id: Option<RequestId>, command: Command) -> Self {
        Request { id, command }
    }

    /// Decode one line (without its LF) into a request, in the order the protocol specifies:
    /// JSON, object, `id`, `type`, known type, then the fields of that type.
    pub fn decode(line: &[u8]) -> Result<Request, DecodeError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| DecodeError::new(ErrorCode::BadJson, "line is not valid UTF-8", None))?;
        let frame: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
            DecodeError::new(ErrorCode::BadJson, format!("invalid JSON: {e}"), None)
        })?;
        let RawFrame::Object(mut obj) = frame else {
            return Err(DecodeError::new(
                ErrorCode::BadJson,
                "a frame must be a JSON object",
                None,
            ));
        };
        let id = decode_id(obj.take("id"))?;
        let mut fields = Fields { obj, re: id };
        let ty = match fields.obj.take("type") {
            Raw::Str(t) => t,
            _ => return Err(fields.bad("type", "a string")),
        };
        let Ok(ty) = ty.parse::<CommandType>() else {
            let shown: String = ty.chars().take(40).collect();
            return Err(DecodeError::new(
                ErrorCode::UnknownType,
                format!("unknown frame type \"{shown}\""),
                fields.re,
            ));
        };
        let command = match ty {
            CommandType::Hello => Command::Hello(Hello {
                nick: fields.string("nick")?,
                protocol: fields.opt_u64("protocol")?,
                client: fields.opt_string("client")?,
                password: fields.opt_string("password")?,
                secret: fields.opt_secret("secret")?,
                autojoin: fields.opt_bool("autojoin")?,
            }),
            CommandType::Join => Command::Join {
                room: fields.string("room")?,
                key: fields.opt_key("key")?.flatten(),
            },
            CommandType::Leave => Command::Leave {
                room: fields.string("room")?,
            },
            CommandType::Say => Command::Say {
                room: fields.string("room")?,
                text: fields.string("text")?,
            },
            CommandType::Dm => Command::Dm {
                to: fields.string("to")?,
                text: fields.string("text")?,
            },
            CommandType::Nick => Command::Nick {
                nick: fields.string("nick")?,
                secret: fields.opt_secret("secret")?,
            },
            CommandType::Status => {
                let status = fields.string("status")?;
                let Ok(status) = status.parse::<Status>() else {
                    return Err(fields.bad("status", "one of \"online\", \"away\", \"busy\""));
                };
                Command::Status {
                    status,
                    text: fields.opt_string("text")?,
                }
            }
            CommandType::Topic => Command::Topic {
                room: fields.string("room")?,
                topic: fields.opt_string("topic")?,
            },
            CommandType::Who => Command::Who {
                room: fields.string("room")?,
            },
            CommandType::Rooms => {
                let after = fields.opt_string("after")?;
                if after
                    .as_ref()
                    .is_some_and(|a| a.is_empty() || a.chars().count() > MAX_NAME_CHARS)
                {
                    return Err(fields.bad(
                        "after",
                        &format!("a room name (1 to {MAX_NAME_CHARS} characters)"),
                    ));
                }
                let limit = match fields.opt_u64("limit") {
                    Ok(None) => None,
                    Ok(Some(n)) if (1..=ROOMS_PAGE_MAX as u64).contains(&n) => Some(n as u32),
                    _ => {
                        return Err(
                            fields.bad("limit", &format!("an integer from 1 to {ROOMS_PAGE_MAX}"))
                        )
                    }
                };
                Command::Rooms { after, limit }
            }
            CommandType::History => {
                let room = fields.string("room")?;
                let before = fields.opt_message_id("before")?;
                let after = fields.opt_message_id("after")?;
                let limit = match fields.opt_u64("limit") {
                    Ok(None) => None,
                    Ok(Some(n)) if (1..=HISTORY_LIMIT_MAX as u64).contains(&n) => Some(n as u32),
                    _ => {
                        return Err(fields.bad(
                            "limit",
                            &format!("an integer from 1 to {HISTORY_LIMIT_MAX}"),
                        ))
                    }
                };
                Command::History(HistoryQuery {
                    room,
                    before,
                    after,
                    limit,
                })
            }
            CommandType::Mode => Command::Mode(ModeRequest {
                room: fields.string("room")?,
                invite_only: fields.opt_bool("invite_only")?,
                key: fields.opt_key("key")?,
                topic_lock: fields.opt_bool("topic_lock")?,
            }),
            CommandType::Invite => Command::Invite {
                room: fields.string("room")?,
                nick: fields.string("nick")?,
            },
            CommandType::Kick => Command::Kick {
                room: fields.string("room")?,
                nick: fields.string("nick")?,
                reason: fields.opt_string("reason")?,
            },
            CommandType::Op => Command::Op {
                room: fields.string("room")?,
                nick: fields.string("nick")?,
            },
            CommandType::Ping => Command::Ping {},
            CommandType::Pong => Command::Pong {},
            CommandType::Quit => Command::Quit {
                reason: fields.opt_string("reason")?,
            },
            CommandType::Register => match fields.opt_secret("secret")? {
                Some(secret) => Command::Register { secret },
                None => {
                    return Err(DecodeError::new(
                        ErrorCode::BadFrame,
                        "missing field `secret` (a string)",
                        fields.re,
                    ))
                }
            },
            CommandType::Unregister => Command::Unregister {},
        };
        Ok(Request {
            id: fields.re,
            command,
        })
    }

    /// Encode as one line, LF included.
    pub fn encode_line(&self) -> Bytes {
        encode_line(self)
    }
}

fn decode_id(id: Raw<'_>) -> Result<Option<RequestId>, DecodeError> {
    match id {
        Raw::Absent | Raw::Null => Ok(None),
        Raw::Str(s) if s.len() <= MAX_ID_BYTES => Ok(Some(RequestId::Str(s.into_owned()))),
        Raw::UInt(u) => Ok(Some(RequestId::from(u))),
        Raw::Int(i) => Ok(Some(RequestId::Int(i))),
        Raw::Str(_) | Raw::Bool(_) | Raw::Other => Err(DecodeError::new(
            ErrorCode::BadFrame,
            format!("field `id` must be a string of at most {MAX_ID_BYTES} bytes or an integer"),
            None,
        )),
    }
}

/// The fields of a request object being decoded; taking a field moves it out.
struct Fields<'a> {
    obj: RawObject<'a>,
    re: Option<RequestId>,
}

impl Fields<'_> {
    fn bad(&self, field: &str, expected: &str) -> DecodeError {
        DecodeError::new(
            ErrorCode::BadFrame,
            format!("field `{field}` must be {expected}"),
            self.re.clone(),
        )
    }

    fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        match self.obj.take(field) {
            Raw::Str(s) => Ok(s.into_owned()),
            Raw::Absent | Raw::Null => Err(DecodeError::new(
                ErrorCode::BadFrame,
                format!("missing field `{field}` (a string)"),
                self.re.clone(),
            )),
            _ => Err(self.bad(field, "a string")),
        }
    }

    fn opt_string(&mut self, field: &str) -> Result<Option<String>, DecodeError> {
        match self.obj.take(field) {
            Raw::Str(s) => Ok(Some(s.into_owned())),
            Raw::Absent | Raw::Null => Ok(None),
            _ => Err(self.bad(field, "a string")),
        }
    }

    /// An optional message id: a string with the shape of a UUID (a shape check only; whether
    /// the room holds that message is for the server to find out).
    fn opt_message_id(&mut self, field: &str) -> Result<Option<String>, DecodeError> {
        match self.opt_string(field)? {
            Some(id) if !validate::is_message_id(&id) => Err(self.bad(
                field,
                "a message id (a UUID such as 019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff)",
            )),
            id => Ok(id),
        }
    }

    /// An optional account secret: a string of the shape [`validate::check_secret`] accepts.
    fn opt_secret(&mut self, field: &str) -> Result<Option<String>, DecodeError> {
        match self.opt_string(field)? {
            Some(secret) if validate::check_secret(&secret).is_err() => Err(self.bad(
                field,
                &format!(
                    "a secret of {} to {} bytes without control characters",
                    crate::MIN_SECRET_BYTES,
                    crate::MAX_SECRET_BYTES
                ),
            )),
            secret => Ok(secret),
        }
    }

    fn opt_bool(&mut self, field: &str) -> Result<Option<bool>, DecodeError> {
        match self.obj.take(field) {
            Raw::Absent | Raw::Null => Ok(None),
            Raw::Bool(b) => Ok(Some(b)),
            _ => Err(self.bad(field, "true or false")),
        }
    }

    /// A room key: absent (`None`), `null` (`Some(None)`: in `mode`, clear the key) or a string
    /// that passes [`validate::is_room_key`].
    fn opt_key(&mut self, field: &str) -> Result<Option<Option<String>>, DecodeError> {
        match self.obj.take(field) {
            Raw::Absent => Ok(None),
            Raw::Null => Ok(Some(None)),
            Raw::Str(s) if validate::is_room_key(&s) => Ok(Some(Some(s.into_owned()))),
            _ => Err(self.bad(
                field,
                &format!(
                    "a key of 1 to {} characters without control characters",
                    crate::MAX_KEY_CHARS
                ),
            )),
        }
    }

    fn opt_u64(&mut self, field: &str) -> Result<Option<u64>, DecodeError> {
        match self.obj.take(field) {
            Raw::Absent | Raw::Null => Ok(None),
            Raw::UInt(n) => Ok(Some(n)),
            _ => Err(self.bad(field, "a non-negative integer")),
        }
    }
}

/// Encode any serialisable frame as one compact JSON line with its LF.
///
/// Into a buffer kept by the thread, then copied out at its exact size: one allocation per
/// line, where growing a fresh buffer took one per doubling (a `welcome` took three) and a
/// `Bytes` made from a buffer with room to spare allocates its shared header at once.
pub fn encode_line<T: Serialize + ?Sized>(frame: &T) -> Bytes {
    /// The buffer a thread keeps between lines; one grown past this (a large reply) is let go.
    const KEPT: usize = 64 * 1024;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        serde_json::to_writer(&mut *buf, frame).expect("frames always serialise");
        buf.push(b'\n');
        let line = Bytes::copy_from_slice(buf);
        if buf.capacity() > KEPT {
            *buf = Vec::new();
        }
        line
    })
}

/// Everything the server sends. The variant name is the wire `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome(Welcome),
    #[serde(rename = "ok")]
    Reply(Reply),
    Error(ErrorFrame),
    Bye(Bye),
    Join(RoomNick),
    Leave(LeaveEvent),
    Message(Message),
    Direct(Direct),
    Nick(NickChange),
    Presence(Member),
    Topic(TopicChange),
    Quit(QuitEvent),
    /// Private rooms: a room's modes changed.
    Mode(ModeEvent),
    /// Private rooms: you may join a room once.
    Invite(InviteEvent),
    Ping {},
}

impl ServerFrame {
    /// Encode as one line, LF included, ready to be shared by every recipient.
    pub fn encode_line(&self) -> Bytes {
        encode_line(self)
    }

    /// Decode one server line (without its LF). Clients should ignore lines whose `type` they do
    /// not know: new event types may be added without a protocol version change.
    pub fn decode(line: &[u8]) -> Result<ServerFrame, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<RequestId>,
    pub protocol: u64,
    pub server: String,
    pub name: String,
    pub session: String,
    pub nick: String,
    pub rooms: Vec<String>,
    pub motd: String,
    pub limits: Limits,
    /// Extension (cluster mode): the name of the cluster this server is a node of; absent from a
    /// server that runs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// The limits a server announces in `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_line: usize,
    pub max_text: usize,
    pub rate_burst: u32,
    /// 0 means no rate limit.
    pub rate_per_sec: u32,
    pub ping_interval_s: u64,
    /// Extension: requests that make the server tell others (`join`, `leave`, `nick`, `status`,
    /// `topic` set, and private rooms' `mode`, `invite`, `kick`, `op`) may come in bursts of this
    /// many. Absent from servers that do not limit them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_burst: Option<u32>,
    /// Extension: ... and this many per second after a burst; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_sec: Option<u32>,
    /// Extension: bytes of `history` and `rooms` replies a client may receive in a burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_bytes_burst: Option<u32>,
    /// Extension: ... and this many per second after a burst; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_bytes_per_sec: Option<u32>,
    /// Extension: the most rooms one `rooms` reply lists; a longer listing is paged (`after`,
    /// `next`). Absent from servers that list every room at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms_page: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: crate::DEFAULT_MAX_LINE,
            max_text: crate::DEFAULT_MAX_TEXT,
            rate_burst: crate::DEFAULT_RATE_BURST,
            rate_per_sec: crate::DEFAULT_RATE_PER_SEC,
            ping_interval_s: crate::DEFAULT_PING_INTERVAL_S,
            event_burst: Some(crate::DEFAULT_EVENT_BURST),
            events_per_sec: Some(crate::DEFAULT_EVENTS_PER_SEC),
            reply_bytes_burst: Some(crate::DEFAULT_REPLY_BYTES_BURST),
            reply_bytes_per_sec: Some(crate::DEFAULT_REPLY_BYTES_PER_SEC),
            rooms_page: Some(crate::ROOMS_PAGE_MAX as u32),
        }
    }
}

/// An `ok` frame: the reply to a successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<RequestId>,
    #[serde(flatten)]
    pub data: ReplyData,
}

/// The data of an `ok` reply; the variant name is the wire `cmd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ReplyData {
    Join {
        room: String,
        topic: String,
        members: Vec<Member>,
    },
    Leave {
        room: String,
    },
    Say {
        id: String,
        ts: u64,
        room: String,
    },
    Dm {
        id: String,
        ts: u64,
        to: String,
        /// Extension: `true` when the recipient's status is away or busy (else absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away: Option<bool>,
        /// Extension: the recipient's status text, with `away`, when they set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away_text: Option<String>,
    },
    Nick {
        nick: String,
    },
    Status {
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    Topic {
        room: String,
        topic: String,
    },
    Who {
        room: String,
        members: Vec<Member>,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
        /// Extension: present when more rooms follow: the last listed room's name, to pass as
        /// `after` for the next page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    History {
        room: String,
        messages: Vec<Message>,
    },
    /// The room's modes after the request (never its key: only whether it has one).
    Mode(RoomModes),
    Invite {
        room: String,
        nick: String,
    },
    Kick {
        room: String,
        nick: String,
    },
    Op {
        room: String,
        nick: String,
    },
    Ping {},
    /// Extension (accounts): `nick` is registered; `persistent` is false when the server keeps
    /// its accounts in memory only (no data directory, or the file could not be written).
    Register {
        nick: String,
        persistent: bool,
    },
    /// Extension (accounts): `nick` is registered no more.
    Unregister {
        nick: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub nick: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Extension (private rooms): in a room's member list, an operator of that room.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub op: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: usize,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<RequestId>,
    /// Extension, on `rate_limited`: how long until the same request would be accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bye {
    /// Present when the bye answers a `quit` that had an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<RequestId>,
    pub reason: crate::ByeReason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomNick {
    pub room: String,
    pub nick: String,
}

/// A `leave` event: `nick` left `room`, or was removed from it by the operator `kicked_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveEvent {
    pub room: String,
    pub nick: String,
    /// Extension (private rooms): the operator who removed `nick`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kicked_by: Option<String>,
    /// Extension: the operator's reason, with `kicked_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A room message, exactly as delivered to members and as stored in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub ts: u64,
    pub room: String,
    pub from: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    pub id: String,
    pub ts: u64,
    pub from: String,
    pub to: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NickChange {
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicChange {
    pub room: String,
    pub topic: String,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuitEvent {
    pub nick: String,
    pub reason: String,
}

/// The lines a `say` or `dm` produces, encoded from borrowed parts: the same bytes as building
/// the owned frame and calling `encode_line`, without copying any string first (the hot path of
/// a chat server; see the tests for the equivalence).
#[derive(Debug, Clone, Copy)]
pub struct SentMessage<'a> {
    pub id: &'a str,
    pub ts: u64,
    pub from: &'a str,
    pub text: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "message")]
struct MessageRef<'a> {
    id: &'a str,
    ts: u64,
    room: &'a str,
    from: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "direct")]
struct DirectRef<'a> {
    id: &'a str,
    ts: u64,
    from: &'a str,
    to: &'a str,
    text: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "ok")]
struct SentReplyRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    re: Option<&'a RequestId>,
    cmd: &'static str,
    id: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    away: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    away_text: Option<&'a str>,
}

impl SentMessage<'_> {
    /// The `message` event to the members of `room`.
    pub fn message_line(&self, room: &str) -> Bytes {
        let m = MessageRef {
            id: self.id,
            ts: self.ts,
            room,
            from: self.from,
            text: self.text,
        };
        encode_sized(
            &m,
            72 + self.id.len() + room.len() + self.from.len() + self.text.len(),
        )
    }

    /// The `direct` event to `to`.
    pub fn direct_line(&self, to: &str) -> Bytes {
        let d = DirectRef {
            id: self.id,
            ts: self.ts,
            from: self.from,
            to,
            text: self.text,
        };
        encode_sized(
            &d,
            72 + self.id.len() + to.len() + self.from.len() + self.text.len(),
        )
    }

    /// The `ok` reply to the `say` that sent it to `room`.
    pub fn say_reply_line(&self, re: Option<&RequestId>, room: &str) -> Bytes {
        self.reply(re, CommandType::Say, Some(room), None)
    }

    /// The `ok` reply to the `dm` that sent it to `to`; `away` is `Some(status text)` when the
    /// recipient is away or busy (the reply then says so).
    pub fn dm_reply_line(
        &self,
        re: Option<&RequestId>,
        to: &str,
        away: Option<Option<&str>>,
    ) -> Bytes {
        let r = SentReplyRef {
            re,
            cmd: CommandType::Dm.into(),
            id: self.id,
            ts: self.ts,
            room: None,
            to: Some(to),
            away: away.map(|_| true),
            away_text: away.flatten(),
        };
        let away_len = away.map_or(0, |t| 16 + t.map_or(0, |t| 16 + t.len()));
        encode_sized(&r, 92 + self.id.len() + to.len() + away_len)
    }

    fn reply(
        &self,
        re: Option<&RequestId>,
        cmd: CommandType,
        room: Option<&str>,
        to: Option<&str>,
    ) -> Bytes {
        let r = SentReplyRef {
            re,
            cmd: cmd.into(),
            id: self.id,
            ts: self.ts,
            room,
            to,
            away: None,
            away_text: None,
        };
        let re_len = match re {
            Some(RequestId::Str(s)) => s.len() + 16,
            Some(_) => 28,
            None => 0,
        };
        let name_len = room.or(to).map_or(0, str::len);
        encode_sized(&r, 64 + re_len + self.id.len() + name_len)
    }
}

/// `encode_line` with a capacity guess, so that a typical line is written without a realloc.
fn encode_sized<T: Serialize>(frame: &T, guess: usize) -> Bytes {
    // Escapes lengthen a string; an eighth more covers ordinary text.
    let mut buf = Vec::with_capacity(guess + guess / 8);
    serde_json::to_writer(&mut buf, frame).expect("frames always serialise");
    buf.push(b'\n');
    Bytes::from(buf)
}

/// Build the `ok` reply to `history` from messages already encoded as lines (each with or without
/// its trailing LF), so that stored messages are spliced in without being decoded and re-encoded.
pub fn encode_history_reply<'a>(
    re: Option<&RequestId>,
    room: &str,
    message_lines: impl IntoIterator<Item = &'a [u8]>,
) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(br#"{"type":"ok","cmd":"history""#);
    if let Some(re) = re {
        buf.extend_from_slice(br#","re":"#);
        serde_json::to_writer(&mut buf, re).expect("ids serialise");
    }
    buf.extend_from_slice(br#","room":"#);
    serde_json::to_writer(&mut buf, room).expect("strings serialise");
    buf.extend_from_slice(br#","messages":["#);
    for (i, line) in message_lines.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
    }
    buf.extend_from_slice(b"]}\n");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_lines_own_their_bytes() {
        // The thread's buffer is reused, and let go once a large line has grown it: every line
        // keeps what it was encoded as, whatever is encoded after it.
        let message = |text: String| {
            ServerFrame::Message(Message {
                id: "m".into(),
                ts: 1,
                room: "Lobby".into(),
                from: "Ann".into(),
                text,
            })
        };
        let frames = [
            message("short".into()),
            message("x".repeat(100_000)),
            message("after the large one".into()),
            message(String::new()),
        ];
        let lines: Vec<Bytes> = frames.iter().map(ServerFrame::encode_line).collect();
        for (frame, line) in frames.iter().zip(&lines) {
            assert_eq!(line.last(), Some(&b'\n'));
            let json = &line[..line.len() - 1];
            assert_eq!(ServerFrame::decode(json).unwrap(), *frame);
        }
    }

    #[test]
    fn sent_message_lines_equal_the_owned_frames() {
        let texts = ["hello", "quote \" and \\ and \n and \u{1} and é 🦀", ""];
        let ids = [
            None,
            Some(RequestId::Int(-4)),
            Some(RequestId::Str("a\"b".into())),
        ];
        for text in texts {
            for re in &ids {
                let sent = SentMessage {
                    id: "019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff",
                    ts: 1_763_769_600_123,
                    from: "Ann",
                    text,
                };
                let message = ServerFrame::Message(Message {
                    id: sent.id.into(),
                    ts: sent.ts,
                    room: "Lobby".into(),
                    from: "Ann".into(),
                    text: text.into(),
                });
                assert_eq!(sent.message_line("Lobby"), message.encode_line());
                let direct = ServerFrame::Direct(Direct {
                    id: sent.id.into(),
                    ts: sent.ts,
                    from: "Ann".into(),
                    to: "bob".into(),
                    text: text.into(),
                });
                assert_eq!(sent.direct_line("bob"), direct.encode_line());
                let say = ServerFrame::Reply(Reply {
                    re: re.clone(),
                    data: ReplyData::Say {
                        id: sent.id.into(),
                        ts: sent.ts,
                        room: "Lobby".into(),
                    },
                });
                assert_eq!(sent.say_reply_line(re.as_ref(), "Lobby"), say.encode_line());
                let dm = ServerFrame::Reply(Reply {
                    re: re.clone(),
                    data: ReplyData::Dm {
                        id: sent.id.into(),
                        ts: sent.ts,
                        to: "bob".into(),
                        away: None,
                        away_text: None,
                    },
                });
                assert_eq!(
                    sent.dm_reply_line(re.as_ref(), "bob", None),
                    dm.encode_line()
                );
                for text in [None, Some("lunch \"back\" at 2")] {
                    let away = ServerFrame::Reply(Reply {
                        re: re.clone(),
                        data: ReplyData::Dm {
                            id: sent.id.into(),
                            ts: sent.ts,
                            to: "bob".into(),
                            away: Some(true),
                            away_text: text.map(str::to_owned),
                        },
                    });
                    let line = sent.dm_reply_line(re.as_ref(), "bob", Some(text));
                    assert_eq!(line, away.encode_line());
                }
            }
        }
    }

    fn roundtrip(req: Request) {
        let line = req.encode_line();
        assert_eq!(line.last(), Some(&b'\n'));
        let back = Request::decode(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = vec![
            Command::Hello(Hello {
                nick: "ann".into(),
                protocol: Some(1),
                client: Some("test/1".into()),
                password: Some("pw".into()),
                secret: Some("correct horse".into()),
                autojoin: Some(false),
            }),
            Command::Hello(Hello {
                nick: "ann".into(),
                protocol: None,
                client: None,
                password: None,
                secret: None,
                autojoin: None,
            }),
            Command::Join {
                room: "r".into(),
                key: None,
            },
            Command::Join {
                room: "r".into(),
                key: Some("s3cret".into()),
            },
            Command::Mode(ModeRequest {
                room: "r".into(),
                invite_only: Some(true),
                key: Some(None),
                topic_lock: Some(false),
            }),
            Command::Mode(ModeRequest {
                room: "r".into(),
                invite_only: None,
                key: Some(Some("k".into())),
                topic_lock: None,
            }),
            Command::Mode(ModeRequest {
                room: "r".into(),
                invite_only: None,
                key: None,
                topic_lock: None,
            }),
            Command::Invite {
                room: "r".into(),
                nick: "bob".into(),
            },
            Command::Kick {
                room: "r".into(),
                nick: "bob".into(),
                reason: Some("spam".into()),
            },
            Command::Op {
                room: "r".into(),
                nick: "bob".into(),
            },
            Command::Leave { room: "r".into() },
            Command::Say {
                room: "r".into(),
                text: "hi \"there\"\n".into(),
            },
            Command::Dm {
                to: "bob".into(),
                text: "psst".into(),
            },
            Command::Nick {
                nick: "x".into(),
                secret: None,
            },
            Command::Nick {
                nick: "x".into(),
                secret: Some("\u{e9}t\u{e9} 2026 \u{1f511}".into()),
            },
            Command::Register {
                secret: "0123456789abcdef".into(),
            },
            Command::Unregister {},
            Command::Status {
                status: Status::Away,
                text: Some("lunch".into()),
            },
            Command::Status {
                status: Status::Busy,
                text: None,
            },
            Command::Topic {
                room: "r".into(),
                topic: None,
            },
            Command::Topic {
                room: "r".into(),
                topic: Some("".into()),
            },
            Command::Who { room: "r".into() },
            Command::Rooms {
                after: None,
                limit: None,
            },
            Command::Rooms {
                after: Some("Rust".into()),
                limit: Some(500),
            },
            Command::History(HistoryQuery {
                room: "r".into(),
                before: Some("019aa8dc-64b1-75f2-831e-b62e37c6d382".into()),
                after: Some("019AA8DC-487B-7A0D-B2C9-5AA144C1D0FF".into()),
                limit: Some(200),
            }),
            Command::Ping {},
            Command::Pong {},
            Command::Quit { reason: None },
            Command::Quit {
                reason: Some("bye".into()),
            },
        ];
        let covered: std::collections::HashSet<CommandType> =
            cmds.iter().map(CommandType::from).collect();
        assert_eq!(covered.len(), CommandType::VARIANTS.len(), "every command");
        for (i, c) in cmds.into_iter().enumerate() {
            roundtrip(Request::new(None, c.clone()));
            roundtrip(Request::new(Some(RequestId::Int(i as i64 - 3)), c.clone()));
            roundtrip(Request::new(Some(RequestId::UInt(u64::MAX)), c.clone()));
            roundtrip(Request::new(Some(RequestId::Str(format!("q{i}"))), c));
        }
    }

    #[test]
    fn status_names_agree_with_serde() {
        for &status in Status::VARIANTS {
            let name = status.as_str();
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(name.parse::<Status>(), Ok(status));
        }
        assert!("Away".parse::<Status>().is_err(), "case-sensitive");
    }

    #[test]
    fn errors_name_the_field_and_carry_re() {
        let e = Request::decode(br#"{"type":"say","id":7,"room":"r","text":5}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadFrame);
        assert!(e.message.contains("`text`"), "{}", e.message);
        assert_eq!(e.re, Some(RequestId::Int(7)));

        let e = Request::decode(br#"{"type":"say","id":"a","room":"r"}"#).unwrap_err();
        assert!(e.message.contains("missing field `text`"), "{}", e.message);
        assert_eq!(e.re, Some(RequestId::Str("a".into())));

        let e = Request::decode(br#"{"type":"nope","id":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert_eq!(e.re, Some(RequestId::Int(1)));

        let e = Request::decode(br#"{"id":1.5,"type":"ping"}"#).unwrap_err();
        assert_eq!((e.code, e.re), (ErrorCode::BadFrame, None));

        let e = Request::decode(b"[1]").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadJson);
        let e = Request::decode(b"{\"type\":\"\xff\"}").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadJson);
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn secrets_are_checked_by_their_shape() {
        for line in [
            &br#"{"type":"register","id":3,"secret":"short"}"#[..],
            br#"{"type":"register","id":3,"secret":"tab\there!"}"#,
            br#"{"type":"register","id":3}"#,
            br#"{"type":"register","id":3,"secret":12345678}"#,
            br#"{"type":"hello","id":3,"nick":"ann","secret":"1234567"}"#,
            br#"{"type":"nick","id":3,"nick":"ann","secret":"new\nline!"}"#,
        ] {
            let e = Request::decode(line).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadFrame, "{e:?}");
            assert!(e.message.contains("`secret`"), "{}", e.message);
            assert_eq!(e.re, Some(RequestId::Int(3)));
        }
        let long = format!(r#"{{"type":"register","secret":"{}"}}"#, "x".repeat(257));
        assert!(Request::decode(long.as_bytes()).is_err());
        let max = format!(r#"{{"type":"register","secret":"{}"}}"#, "x".repeat(256));
        assert!(Request::decode(max.as_bytes()).is_ok());
        // Eight bytes, fewer characters: the bound is in bytes.
        let ok = Request::decode(r#"{"type":"register","secret":"éééé"}"#.as_bytes());
        assert!(ok.is_ok());
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = vec![
            ServerFrame::Reply(Reply {
                re: Some(RequestId::Int(3)),
                data: ReplyData::Say {
                    id: "x".into(),
                    ts: 5,
                    room: "r".into(),
                },
            }),
            ServerFrame::Reply(Reply {
                re: None,
                data: ReplyData::Ping {},
            }),
            ServerFrame::Reply(Reply {
                re: Some(RequestId::Int(1)),
                data: ReplyData::Register {
                    nick: "ann".into(),
                    persistent: false,
                },
            }),
            ServerFrame::Reply(Reply {
                re: None,
                data: ReplyData::Unregister { nick: "ann".into() },
            }),
            ServerFrame::Ping {},
            ServerFrame::Error(ErrorFrame {
                code: ErrorCode::NotInRoom,
                message: "m".into(),
                re: Some(RequestId::Str("z".into())),
                retry_after_ms: Some(250),
            }),
        ];
        for f in frames {
            let line = f.encode_line();
            assert_eq!(ServerFrame::decode(&line).unwrap(), f);
        }
        assert_eq!(
            &ServerFrame::Ping {}.encode_line()[..],
            b"{\"type\":\"ping\"}\n"
        );
    }

    #[test]
    fn rooms_pages_are_asked_with_after_and_limit() {
        let decode = |line: &str| Request::decode(line.as_bytes()).map(|r| r.command);
        assert_eq!(
            decode(r#"{"type":"rooms"}"#).unwrap(),
            Command::Rooms {
                after: None,
                limit: None
            }
        );
        assert_eq!(
            decode(r#"{"type":"rooms","after":"Rust","limit":500,"after2":1}"#).unwrap(),
            Command::Rooms {
                after: Some("Rust".into()),
                limit: Some(500)
            }
        );
        assert_eq!(
            decode(r#"{"type":"rooms","after":null,"limit":null}"#).unwrap(),
            Command::Rooms {
                after: None,
                limit: None
            }
        );
        for (line, field) in [
            (r#"{"type":"rooms","id":3,"limit":0}"#, "limit"),
            (r#"{"type":"rooms","id":3,"limit":501}"#, "limit"),
            (r#"{"type":"rooms","id":3,"limit":-1}"#, "limit"),
            (r#"{"type":"rooms","id":3,"limit":"5"}"#, "limit"),
            (r#"{"type":"rooms","id":3,"after":5}"#, "after"),
            (r#"{"type":"rooms","id":3,"after":""}"#, "after"),
            (
                &format!(r#"{{"type":"rooms","id":3,"after":"{}"}}"#, "é".repeat(33)),
                "after",
            ),
        ] {
            let e = Request::decode(line.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadFrame, "{line}");
            assert!(
                e.message.contains(&format!("`{field}`")),
                "{line}: {}",
                e.message
            );
            assert_eq!(e.re, Some(RequestId::Int(3)));
        }
        // Exactly the longest name is a name.
        let longest = format!(r#"{{"type":"rooms","after":"{}"}}"#, "é".repeat(32));
        assert!(decode(&longest).is_ok());
    }

    #[test]
    fn rooms_reply_says_next_only_when_more_follow() {
        let last = ServerFrame::Reply(Reply {
            re: None,
            data: ReplyData::Rooms {
                rooms: vec![],
                next: None,
            },
        });
        assert_eq!(
            &last.encode_line()[..],
            b"{\"type\":\"ok\",\"cmd\":\"rooms\",\"rooms\":[]}\n"
        );
        let more = br#"{"type":"ok","cmd":"rooms","rooms":[],"next":"rust"}"#;
        let ServerFrame::Reply(r) = ServerFrame::decode(more).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.data,
            ReplyData::Rooms {
                rooms: vec![],
                next: Some("rust".into())
            }
        );
    }

    #[test]
    fn history_reply_splices_stored_lines() {
        let m = Message {
            id: "i".into(),
            ts: 1,
            room: "r".into(),
            from: "a".into(),
            text: "t".into(),
        };
        let line = ServerFrame::Message(m.clone()).encode_line();
        let out = encode_history_reply(Some(&RequestId::Int(9)), "r", [&line[..], &line[..]]);
        let ServerFrame::Reply(r) = ServerFrame::decode(&out).unwrap() else {
            panic!()
        };
        assert_eq!(r.re, Some(RequestId::Int(9)));
        assert_eq!(
            r.data,
            ReplyData::History {
                room: "r".into(),
                messages: vec![m.clone(), m]
            }
        );
    }
}
