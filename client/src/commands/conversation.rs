//! The commands of DM conversations: `/query NICK`, `/reply [TEXT]`, `/close [NICK]` (what
//! they do is the model's, in `model::queries`, and the session's).

use lanchat_protocol::validate::check_nick;

use super::Hint;

/// A conversation command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// Talk with NICK: plain text typed goes to them as a direct message.
    Query(String),
    /// Answer the last DM sender; without text, talk with them.
    Reply(Option<String>),
    /// End the conversation with NICK, or the one talked in.
    Close(Option<String>),
}

/// `/NAME REST` for NAME one of `query`, `reply` (`r`), `close`.
pub fn conversation(name: &str, rest: &str) -> Result<Conversation, Hint> {
    let nick = |usage: &str| {
        let mut words = rest.split_whitespace();
        match (words.next(), words.next()) {
            (Some(nick), None) => check_nick(nick)
                .map(|()| nick.to_owned())
                .map_err(|(_, why)| Hint(why)),
            _ => Err(Hint(format!("usage: {usage}"))),
        }
    };
    Ok(match name.to_lowercase().as_str() {
        "query" => Conversation::Query(nick("/query NICK")?),
        "close" if rest.is_empty() => Conversation::Close(None),
        "close" => Conversation::Close(Some(nick("/close [NICK]")?)),
        _ if rest.is_empty() => Conversation::Reply(None),
        _ => Conversation::Reply(Some(rest.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, to_command, Action};
    use super::*;

    fn ok(line: &str) -> Conversation {
        match parse(line) {
            Ok(Some(Action::Conversation(c))) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn conversation_commands() {
        assert_eq!(ok("/query bob"), Conversation::Query("bob".into()));
        assert_eq!(ok("/QUERY bob"), Conversation::Query("bob".into()));
        assert_eq!(ok("/reply"), Conversation::Reply(None));
        assert_eq!(
            ok("/r on my way "),
            Conversation::Reply(Some("on my way".into()))
        );
        assert_eq!(ok("/close"), Conversation::Close(None));
        assert_eq!(ok("/close bob"), Conversation::Close(Some("bob".into())));
        assert_eq!(parse("/query").unwrap_err().0, "usage: /query NICK");
        assert_eq!(parse("/query bob cat").unwrap_err().0, "usage: /query NICK");
        assert!(parse("/query b@b").is_err());
        let action = Action::Conversation(Conversation::Close(None));
        assert_eq!(to_command(&action, Some("lobby")), Ok(None));
    }
}
