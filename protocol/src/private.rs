//! The frames of private rooms (PROTOCOL.md, "Private rooms"): the `mode` request, the modes a
//! room reports, and the `mode` and `invite` events. A room's key is only ever sent by a client;
//! the server says whether a room has one, never what it is.

use serde::{Deserialize, Serialize};

/// A `mode` request: each field absent leaves that mode as it is; all absent reads the modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeRequest {
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_only: Option<bool>,
    /// `Some(None)` (`"key": null`) clears the key; `Some(Some(k))` sets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_lock: Option<bool>,
}

impl ModeRequest {
    /// Whether the request changes anything (or only reads).
    pub fn changes(&self) -> bool {
        self.invite_only.is_some() || self.key.is_some() || self.topic_lock.is_some()
    }
}

/// A room's modes as the server reports them (the `ok` reply to `mode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomModes {
    pub room: String,
    pub invite_only: bool,
    pub has_key: bool,
    pub topic_lock: bool,
}

/// The `mode` event: an operator (`by`) changed a room's modes; these are the modes now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeEvent {
    pub room: String,
    pub by: String,
    pub invite_only: bool,
    pub has_key: bool,
    pub topic_lock: bool,
}

/// The `invite` event, to the invited user only: `by` invited you to join `room` (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteEvent {
    pub room: String,
    pub by: String,
}
