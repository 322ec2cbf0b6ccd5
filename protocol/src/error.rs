//! Error codes and close reasons as they appear on the wire, and the decode error of a request line.

use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantArray};

use crate::frame::RequestId;

/// The `code` of an `error` frame.
///
/// Clients must treat a code they do not know as a generic error: new codes may be added without a
/// protocol version change.
// Wire names come from the variant names, by the same snake_case rule for serde and for
// `as_str` (strum); the tests check that the two agree for every variant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// Extension: the server was started with `--require-tls` and this connection is plain TCP.
    /// Followed by a `bye` with reason `tls_required`.
    TlsRequired,
    /// Extension (accounts): the nick is registered and the request did not carry its secret,
    /// or carried a wrong one, or the address made too many wrong guesses lately.
    NickRegistered,
    /// Extension (accounts): the server holds its limit of accounts (`--max-accounts`).
    TooManyAccounts,
    /// Extension (private rooms): the room is invite-only and you have no invitation.
    NotInvited,
    /// Extension (private rooms): the room has a key and you gave none or the wrong one.
    BadKey,
    /// Extension (private rooms): only the room's operators may do this.
    NotOperator,
    /// Extension (cluster mode): the cluster's message store cannot be reached; the request was
    /// not applied and may be sent again later.
    Unavailable,
    /// A code this version does not know (sent by a newer server). Never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code this version sends: all but `Unknown`, which is declared last.
    pub const ALL: [ErrorCode; 26] = {
        let variants = <ErrorCode as VariantArray>::VARIANTS;
        assert!(variants.len() == 27 && matches!(variants[26], ErrorCode::Unknown));
        let mut all = [ErrorCode::Unknown; 26];
        let mut i = 0;
        while i < all.len() {
            all[i] = variants[i];
            i += 1;
        }
        all
    };

    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// Extension: plain TCP refused by a server started with `--require-tls`.
    TlsRequired,
    /// Extension (accounts): another connection said hello with this nick's secret and took it
    /// over.
    Replaced,
    /// A reason this version does not know (sent by a newer server). Never sent.
    #[serde(other)]
    Unknown,
}

impl ByeReason {
    /// The reason as written on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
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
    }

    /// serde's name and `as_str` come from the same variant name by the same rule: check they
    /// agree, in both directions, for every variant.
    fn names_agree<T>(variants: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>,
        &'static str: From<T>,
    {
        for &v in variants {
            let name: &'static str = v.into();
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(),
                v
            );
        }
    }

    #[test]
    fn wire_names_agree_with_serde() {
        names_agree(ErrorCode::VARIANTS);
        names_agree(ByeReason::VARIANTS);
        assert_eq!(ErrorCode::BadJson.as_str(), "bad_json");
        assert_eq!(ByeReason::ShuttingDown.to_string(), "shutting_down");
        assert!(!ErrorCode::ALL.contains(&ErrorCode::Unknown));
        assert_eq!(ErrorCode::ALL[18], ErrorCode::TooManyRooms);
    }

    #[test]
    fn tls_required_is_an_extension_code_and_reason() {
        assert_eq!(ErrorCode::ALL[19], ErrorCode::TlsRequired);
        assert_eq!(ErrorCode::TlsRequired.as_str(), "tls_required");
        assert_eq!(ErrorCode::ALL[20], ErrorCode::NickRegistered);
        assert_eq!(ErrorCode::ALL[21].as_str(), "too_many_accounts");
        assert_eq!(ByeReason::Replaced.as_str(), "replaced");
        assert_eq!(ByeReason::TlsRequired.as_str(), "tls_required");
        assert!(!ErrorCode::TlsRequired.is_protocol_violation());
        let c: ErrorCode = serde_json::from_str("\"tls_required\"").unwrap();
        assert_eq!(c, ErrorCode::TlsRequired);
        let r: ByeReason = serde_json::from_str("\"tls_required\"").unwrap();
        assert_eq!(r, ByeReason::TlsRequired);
    }

    #[test]
    fn private_room_codes_are_extensions_and_user_mistakes() {
        let codes = [
            ErrorCode::NotInvited,
            ErrorCode::BadKey,
            ErrorCode::NotOperator,
        ];
        assert_eq!(&ErrorCode::ALL[22..25], &codes);
        assert_eq!(ErrorCode::ALL[25].as_str(), "unavailable");
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["not_invited", "bad_key", "not_operator"]);
        assert!(codes.iter().all(|c| !c.is_protocol_violation()));
    }
}
