//! Old messages shown in a block (the recent messages on start and after a join, `/history`, the
//! messages missed while disconnected) start with a line saying what follows and end with one
//! saying it is over, so that backlog is never taken for what is being said now.

use super::Show;

/// Which block of old messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// The recent messages of a room, on start or after a join.
    Recent,
    /// What `/history` asked for.
    Asked,
    /// What was said while the client was disconnected.
    Missed,
}

/// `show` between the lines that open and close the block of `room`, when it holds a message.
pub fn bracket(kind: Backlog, room: &str, show: Vec<Show>) -> Vec<Show> {
    let n = show
        .iter()
        .filter(|s| matches!(s, Show::Message { .. }))
        .count();
    if n == 0 {
        return show;
    }
    let plural = if n == 1 { "" } else { "s" };
    let (open, close) = match kind {
        Backlog::Recent => (
            format!("earlier in #{room} ({n} message{plural}):"),
            format!("end of earlier messages in #{room}"),
        ),
        Backlog::Asked => (
            format!("history of #{room} ({n} message{plural}):"),
            format!("end of the history of #{room}"),
        ),
        Backlog::Missed => (
            format!("missed in #{room} while disconnected ({n} message{plural}):"),
            format!("end of missed messages in #{room}"),
        ),
    };
    let mut out = Vec::with_capacity(show.len() + 2);
    out.push(Show::Backlog(open));
    out.extend(show);
    out.push(Show::Backlog(close));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{info, msg};

    fn mark(text: &str) -> Show {
        Show::Backlog(text.into())
    }

    fn shown(id: &str) -> Show {
        Show::Message {
            message: msg(id, "lobby", "bob"),
            room_shown: false,
        }
    }

    #[test]
    fn a_block_of_messages_is_opened_and_closed() {
        assert_eq!(
            bracket(Backlog::Recent, "lobby", vec![shown("01"), shown("02")]),
            vec![
                mark("earlier in #lobby (2 messages):"),
                shown("01"),
                shown("02"),
                mark("end of earlier messages in #lobby"),
            ]
        );
        assert_eq!(
            bracket(Backlog::Asked, "dev", vec![shown("01")])[0],
            mark("history of #dev (1 message):")
        );
        let missed = bracket(Backlog::Missed, "dev", vec![info("x"), shown("01")]);
        assert_eq!(
            missed[0],
            mark("missed in #dev while disconnected (1 message):")
        );
        assert_eq!(missed[3], mark("end of missed messages in #dev"));
        // Nothing to bracket: nothing added.
        assert_eq!(
            bracket(Backlog::Asked, "dev", vec![info("no messages")]),
            vec![info("no messages")]
        );
        assert!(bracket(Backlog::Missed, "dev", Vec::new()).is_empty());
    }
}
