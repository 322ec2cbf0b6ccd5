//! Error codes and close reasons as they appear on the wire, and the decode error of a request line.

use serde::{Deserialize, Serialize};

use crate::frame::RequestId;

/// The `code` of an `error` frame.
///
/// Clients must treat a code they do not know as a generic error: new codes may be added without a
/// protocol version change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadFrame,
    UnknownType,
    LineTooLong,
    NotRegistered,
    AlreadyRegistered,
    ProtocolUnsupported,
    AuthFailed,
    NickInvalid,
    NickTaken,
    RoomInvalid,
    NotInRoom,
    NoSuchNick,
    TextInvalid,
    TextTooLong,
    RateLimited,
    ServerFull,
    TooManyErrors,
    /// Extension: a session may be a member of at most `MAX_ROOMS_PER_SESSION` rooms.
    TooManyRooms,
    /// A code this version does not know (sent by a newer server). Never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadJson,
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::LineTooLong,
        ErrorCode::NotRegistered,
        ErrorCode::AlreadyRegistered,
        ErrorCode::ProtocolUnsupported,
        ErrorCode::AuthFailed,
        ErrorCode::NickInvalid,
        ErrorCode::NickTaken,
        ErrorCode::RoomInvalid,
        ErrorCode::NotInRoom,
        ErrorCode::NoSuchNick,
        ErrorCode::TextInvalid,
        ErrorCode::TextTooLong,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::TooManyErrors,
        ErrorCode::TooManyRooms,
    ];

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::ProtocolUnsupported => "protocol_unsupported",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::NickInvalid => "nick_invalid",
            ErrorCode::NickTaken => "nick_taken",
            ErrorCode::RoomInvalid => "room_invalid",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::NoSuchNick => "no_such_nick",
            ErrorCode::TextInvalid => "text_invalid",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManyErrors => "too_many_errors",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// Whether this error says the client is broken (as opposed to a user mistake or a busy
    /// server). These count toward the `too_many_errors` limit.
    pub fn is_protocol_violation(self) -> bool {
        matches!(
            self,
            ErrorCode::BadJson
                | ErrorCode::BadFrame
                | ErrorCode::UnknownType
                | ErrorCode::LineTooLong
                | ErrorCode::NotRegistered
                | ErrorCode::AlreadyRegistered
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `reason` of a `bye` frame: why the server is closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    Quit,
    HelloTimeout,
    PingTimeout,
    TooManyErrors,
    Flood,
    ShuttingDown,
    ServerFull,
    AuthFailed,
    ProtocolUnsupported,
    /// A reason this version does not know (sent by a newer server). Never sent.
    #[serde(other)]
    Unknown,
}

impl ByeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ByeReason::Quit => "quit",
            ByeReason::HelloTimeout => "hello_timeout",
            ByeReason::PingTimeout => "ping_timeout",
            ByeReason::TooManyErrors => "too_many_errors",
            ByeReason::Flood => "flood",
            ByeReason::ShuttingDown => "shutting_down",
            ByeReason::ServerFull => "server_full",
            ByeReason::AuthFailed => "auth_failed",
            ByeReason::ProtocolUnsupported => "protocol_unsupported",
            ByeReason::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ByeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request line could not be turned into a [`crate::Request`]. The server answers it with an
/// `error` frame carrying `code`, `message` and, when the id could be read, `re`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub re: Option<RequestId>,
}

impl DecodeError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>, re: Option<RequestId>) -> Self {
        DecodeError {
            code,
            message: message.into(),
            re,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_decode_as_unknown() {
        let c: ErrorCode = serde_json::from_str("\"from_the_future\"").unwrap();
        assert_eq!(c, ErrorCode::Unknown);
        let r: ByeReason = serde_json::from_str("\"later\"").unwrap();
        assert_eq!(r, ByeReason::Unknown);
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }
}
