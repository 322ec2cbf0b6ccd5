//! The rules for nicks, room names and texts, shared by the server and the clients.

use std::borrow::Cow;

use crate::error::ErrorCode;
pub use crate::names::{fold, look_alike, lookalike_keys, skeleton_key};
use crate::MAX_NAME_CHARS;

/// Check a nick or room name: 1 to 32 characters, each a letter, a digit, `_`, `-` or `.`; no
/// invisible character; and, once folded, only characters Unicode allows in identifiers, from one
/// script (see [`crate::names`]). The message completes "a nick ..." or "a room name ...".
pub fn check_name(name: &str) -> Result<(), String> {
    let mut count = 0;
    for ch in name.chars() {
        count += 1;
        if count > MAX_NAME_CHARS {
            return Err("must be at most 32 characters".into());
        }
        if !(ch.is_alphanumeric() || matches!(ch, '_' | '-' | '.')) {
            return Err("may contain only letters, digits, '_', '-' and '.'".into());
        }
    }
    if count == 0 {
        return Err("must not be empty".into());
    }
    crate::names::check_unicode(name)
}

/// Check a nick, giving the protocol's error code and a message on failure.
pub fn check_nick(nick: &str) -> Result<(), (ErrorCode, String)> {
    check_name(nick).map_err(|why| (ErrorCode::NickInvalid, format!("a nick {why}")))
}

/// Check a room name, giving the protocol's error code and a message on failure.
pub fn check_room(room: &str) -> Result<(), (ErrorCode, String)> {
    check_name(room).map_err(|why| (ErrorCode::RoomInvalid, format!("a room name {why}")))
}

/// The key under which names are compared: Unicode lowercase, so `Ann` and `ann` are one nick.
pub fn name_key(name: &str) -> String {
    name_key_ref(name).into_owned()
}

/// [`name_key`] without a copy when the name is already its own key (lowercase ASCII, the
/// common case): for look-ups on hot paths.
pub fn name_key_ref(name: &str) -> Cow<'_, str> {
    if name
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

/// Check a message text (`say`, `dm`): 1 to `max_bytes` bytes, no control characters other than
/// newline and tab.
pub fn check_text(text: &str, max_bytes: usize) -> Result<(), (ErrorCode, String)> {
    if text.is_empty() {
        return Err((ErrorCode::TextInvalid, "text must not be empty".into()));
    }
    if text.len() > max_bytes {
        return Err((
            ErrorCode::TextTooLong,
            format!("text is {} bytes; the limit is {max_bytes}", text.len()),
        ));
    }
    check_controls(text)
}

/// Check a short text (status text, topic): at most `max_chars` characters, no control characters
/// other than newline and tab. May be empty.
pub fn check_short_text(
    what: &str,
    text: &str,
    max_chars: usize,
) -> Result<(), (ErrorCode, String)> {
    if text.chars().count() > max_chars {
        return Err((
            ErrorCode::TextTooLong,
            format!("{what} must be at most {max_chars} characters"),
        ));
    }
    check_controls(text)
}

/// Whether `id` has the shape of a message id: a UUID in its 36-character hyphenated form
/// (8-4-4-4-12 hexadecimal digits, either case), as the server writes message ids. `history`
/// refuses any other `before` or `after` when the request is decoded.
/// Whether `key` can be a room key: 1 to [`crate::MAX_KEY_CHARS`] characters, none of them a
/// control character (a key is typed by people and passed on by word of mouth).
pub fn is_room_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= crate::MAX_KEY_CHARS
        && !key.chars().any(char::is_control)
}

pub fn is_message_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether `secret` has the shape of an account secret: [`crate::MIN_SECRET_BYTES`] to
/// [`crate::MAX_SECRET_BYTES`] bytes of UTF-8 and no control character at all (a secret is
/// typed or pasted on one line). A request with another `secret` is `bad_frame`.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let (min, max) = (crate::MIN_SECRET_BYTES, crate::MAX_SECRET_BYTES);
    if !(min..=max).contains(&secret.len()) {
        return Err(format!("a secret is {min} to {max} bytes"));
    }
    match secret.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("a secret may not hold U+{:04X}", c as u32)),
        None => Ok(()),
    }
}

fn check_controls(text: &str) -> Result<(), (ErrorCode, String)> {
    match text
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        Some(c) => Err((
            ErrorCode::TextInvalid,
            format!("text contains control character U+{:04X}", c as u32),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "ann",
            "Ünïcødé",
            "a_b-c.d",
            "..",
            "1234",
            &"x".repeat(32),
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "😀", &"x".repeat(33), "a\u{7}"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(name_key("ÄnN"), "änn");
        assert_eq!(name_key("ann"), "ann");
    }

    #[test]
    fn message_ids() {
        for ok in [
            "019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff",
            "019AA8DC-487B-7A0D-B2C9-5AA144C1D0FF",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(is_message_id(ok), "{ok}");
        }
        for bad in [
            "",
            "not-an-id",
            "019aa8dc487b7a0db2c95aa144c1d0ff",
            "{019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff}",
            "urn:uuid:019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff",
            "019aa8dc-487b-7a0d-b2c9-5aa144c1d0f",
            "019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff0",
            "019aa8dc-487b-7a0d-b2c9-5aa144c1d0fg",
            "019aa8dc-487b-7a0d-b2c9+5aa144c1d0ff",
            " 019aa8dc-487b-7a0d-b2c9-5aa144c1d0f",
            "019aa8dc-487b-7a0d-b2c9-5aa144c1d0ﬀ",
        ] {
            assert!(!is_message_id(bad), "{bad}");
        }
    }

    #[test]
    fn texts() {
        assert!(check_text("hi\n\tthere", 10).is_ok());
        assert_eq!(check_text("", 10).unwrap_err().0, ErrorCode::TextInvalid);
        assert_eq!(
            check_text("a\u{7}", 10).unwrap_err().0,
            ErrorCode::TextInvalid
        );
        assert_eq!(check_text("a\r", 10).unwrap_err().0, ErrorCode::TextInvalid);
        assert_eq!(
            check_text(&"é".repeat(6), 11).unwrap_err().0,
            ErrorCode::TextTooLong
        );
        assert!(check_text(&"x".repeat(10), 10).is_ok());
        assert!(check_short_text("topic", &"é".repeat(300), 300).is_ok());
        assert!(check_short_text("topic", &"é".repeat(301), 300).is_err());
    }
}
