//! What `--json` promises a bot beyond printing the server's frames: the messages inside a
//! `history` reply are marked `history_message`, so a filter for live messages (`grep
//! '"type":"message"'`, `jq 'select(.type=="message")'`) never takes a line of history for one;
//! and a command that failed makes the exit status 1 once the input is done.
//!
//! The server keeps history as the exact wire lines of the messages, so a history reply holds
//! `{"type":"message",...}` objects that a line filter cannot tell from live ones. Marking them
//! inside the one reply line (rather than printing them as frames of their own) keeps one line
//! per frame and one reply per request.

use std::borrow::Cow;

use lanchat_protocol::{ReplyData, ServerFrame};

use crate::Error;

/// What the messages of a history reply are marked as in `--json` output.
pub const HISTORY_MESSAGE: &str = "history_message";

/// `line` as `--json` prints it: a history reply with its messages marked, anything else as is.
pub fn history_marked<'a>(line: &'a str, frame: Option<&ServerFrame>) -> Cow<'a, str> {
    let Some(ServerFrame::Reply(reply)) = frame else {
        return Cow::Borrowed(line);
    };
    let ReplyData::History { messages, .. } = &reply.data else {
        return Cow::Borrowed(line);
    };
    if messages.is_empty() {
        return Cow::Borrowed(line);
    }
    // Inside a JSON string every quote is escaped, so this text can only be a `type` member:
    // replacing it keeps the line byte for byte but for the mark.
    const LIVE: &str = r#""type":"message""#;
    if line.contains(LIVE) {
        return Cow::Owned(line.replace(LIVE, &format!(r#""type":"{HISTORY_MESSAGE}""#)));
    }
    // A server that writes `"type": "message"` (or no type): rewrite the frame.
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(line) else {
        return Cow::Borrowed(line);
    };
    if let Some(list) = value.get_mut("messages").and_then(|m| m.as_array_mut()) {
        for message in list.iter_mut().filter_map(|m| m.as_object_mut()) {
            message.insert("type".into(), HISTORY_MESSAGE.into());
        }
    }
    Cow::Owned(value.to_string())
}

/// The commands of a `--json` session that failed: refused by the server (an `error` reply)
/// or not understood by the client.
#[derive(Debug, Default)]
pub struct Failures {
    count: usize,
}

impl Failures {
    pub fn note(&mut self) {
        self.count += 1;
    }

    /// How the session ends once the input is done: exit status 1 when a command failed.
    pub fn outcome(&self) -> Result<(), Error> {
        match self.count {
            0 => Ok(()),
            1 => Err(Error::Fatal(
                "1 command failed (see the error frame)".into(),
            )),
            n => Err(Error::Fatal(format!(
                "{n} commands failed (see the error frames)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Option<ServerFrame> {
        ServerFrame::decode(line.as_bytes()).ok()
    }

    #[test]
    fn history_messages_are_marked_and_nothing_else_changes() {
        let line = r#"{"type":"ok","cmd":"history","re":4,"room":"rust","messages":[{"type":"message","id":"019aa8dc-487b-7a0d-b2c9-5aa144c1d0ff","ts":1,"room":"rust","from":"bob","text":"say \"type\":\"message\""}]}"#;
        let marked = history_marked(line, decode(line).as_ref());
        assert!(!marked.contains(r#""type":"message""#), "{marked}");
        assert_eq!(
            marked,
            line.replacen(r#""type":"message""#, r#""type":"history_message""#, 1)
        );
        let value: serde_json::Value = serde_json::from_str(&marked).unwrap();
        assert_eq!(value["messages"][0]["text"], r#"say "type":"message""#);

        let spaced = line.replace(r#""type":"message""#, r#""type": "message""#);
        let marked = history_marked(&spaced, decode(&spaced).as_ref());
        let value: serde_json::Value = serde_json::from_str(&marked).unwrap();
        assert_eq!(value["messages"][0]["type"], "history_message");
        assert_eq!(value["type"], "ok");

        let live = r#"{"type":"message","id":"x","ts":1,"room":"rust","from":"bob","text":"hi"}"#;
        assert_eq!(history_marked(live, decode(live).as_ref()), live);
        assert_eq!(history_marked("not json", None), "not json");
    }

    #[test]
    fn a_failed_command_makes_the_exit_status_1() {
        let mut failures = Failures::default();
        assert!(failures.outcome().is_ok());
        failures.note();
        failures.note();
        let err = failures.outcome().unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "2 commands failed (see the error frames)");
    }
}
