//! The lanchat wire protocol, version 1: one JSON object per LF-terminated line over TCP (or a
//! Unix socket), plus JSON datagrams for UDP discovery. PROTOCOL.md is the normative description;
//! this crate is its Rust implementation, shared by the server and the Rust client.
//!
//! - [`frame`]: `Request` (client to server, decoded with precise errors) and `ServerFrame`.
//! - [`codec`]: the bounded line decoder (`Line::TooLong` is an item, not an error).
//! - [`validate`]: nick, room and text rules; [`names`]: the Unicode rules of names (folding,
//!   lookalikes, invisible characters, mixed scripts).
//! - [`error`]: error codes, bye reasons, and the decode error.
//! - [`discovery`]: UDP beacon and discover datagrams.
//! - [`private`]: the frames of private rooms (`mode`, `invite`).
//! - [`bucket`]: the token bucket behind the server's rate limit and the client's pacer.
//! - `pin` (feature `tls`): the certificate fingerprint and a rustls verifier that trusts exactly
//!   the pinned certificate.

pub mod bucket;
pub mod codec;
pub mod discovery;
pub mod error;
mod fields;
pub mod frame;
pub mod names;
#[cfg(feature = "tls")]
pub mod pin;
pub mod private;
pub mod validate;

pub use codec::{Line, LineCodec};
pub use error::{ByeReason, DecodeError, ErrorCode};
pub use frame::{
    encode_history_reply, encode_line, Bye, Command, Direct, ErrorFrame, Hello, HistoryQuery,
    LeaveEvent, Limits, Member, Message, NickChange, QuitEvent, Reply, ReplyData, Request,
    RequestId, RoomInfo, RoomNick, SentMessage, ServerFrame, Status, TopicChange, Welcome,
};
pub use private::{InviteEvent, ModeEvent, ModeRequest, RoomModes};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// Default TCP port.
pub const DEFAULT_PORT: u16 = 7878;
/// Default UDP discovery port (beacons and discover queries).
pub const DEFAULT_ANNOUNCE_PORT: u16 = 7879;
/// Default maximum line length in bytes, LF excluded.
pub const DEFAULT_MAX_LINE: usize = 16384;
/// Default maximum message text in bytes.
pub const DEFAULT_MAX_TEXT: usize = 4096;
pub const DEFAULT_RATE_BURST: u32 = 10;
pub const DEFAULT_RATE_PER_SEC: u32 = 5;
pub const DEFAULT_PING_INTERVAL_S: u64 = 60;
/// Requests that tell others (join, leave, nick, status, topic set) in a burst: room for a client
/// rejoining its 100 rooms after a reconnect.
pub const DEFAULT_EVENT_BURST: u32 = 200;
pub const DEFAULT_EVENTS_PER_SEC: u32 = 2;
/// Bytes of history and rooms replies in a burst: a long absence caught up in many rooms.
pub const DEFAULT_REPLY_BYTES_BURST: u32 = 8 * 1024 * 1024;
pub const DEFAULT_REPLY_BYTES_PER_SEC: u32 = 1024 * 1024;
/// Longest request id string, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest nick or room name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
pub const MAX_STATUS_TEXT_CHARS: usize = 100;
pub const MAX_TOPIC_CHARS: usize = 300;
/// Extension (private rooms): longest room key, in characters.
pub const MAX_KEY_CHARS: usize = 64;
pub const HISTORY_LIMIT_DEFAULT: usize = 50;
pub const HISTORY_LIMIT_MAX: usize = 200;
/// Extension: how many rooms one session may be in at once.
pub const MAX_ROOMS_PER_SESSION: usize = 100;
/// Extension: rooms listed by one `rooms` reply at most (and by default). 500 keeps the largest
/// page (names and topics at their longest, about 1.4 KiB a room) under the largest `history`
/// reply (200 texts of 4 KiB), and the server's lock held for 500 entries, not for every room.
pub const ROOMS_PAGE_MAX: usize = 500;
/// Extension (accounts): the shortest and longest secret of a registered nick, in UTF-8 bytes.
pub const MIN_SECRET_BYTES: usize = 8;
pub const MAX_SECRET_BYTES: usize = 256;

/// The `server` string of welcome and beacons.
pub fn server_string() -> String {
    format!("lanchat/{}", env!("CARGO_PKG_VERSION"))
}
