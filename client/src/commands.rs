//! The command parser: one input line to an [`Action`], and an action plus the session's state to
//! a protocol [`Command`]. Pure: no I/O, so every rule is unit-tested here.
//!
//! `/me ACTION` is sent as a plain `say` whose text is `/me ACTION` (the server rejects control
//! characters, so IRC's CTCP framing is not available); [`crate::render`] shows such messages as
//! actions. A line starting with `//` says the rest literally with one slash removed.

use lanchat_protocol::validate::{check_nick, check_room, check_secret, is_room_key};
use lanchat_protocol::{Command, HistoryQuery, ModeRequest, Status, HISTORY_LIMIT_MAX};

mod conversation;
pub use conversation::{conversation, Conversation};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Plain text for the current room.
    Say(String),
    /// `/me waves`: an action in the current room.
    Me(String),
    Join(String),
    /// `/join ROOM KEY`: a key-protected room.
    JoinWithKey(String, String),
    /// `/mode [+i|-i] [+k KEY|-k] [+t|-t]` for the current room: the changes (none: show).
    Mode(ModeChange),
    Invite(String),
    Kick {
        nick: String,
        reason: Option<String>,
    },
    Op(String),
    /// Leave the named room, or the current one.
    Leave(Option<String>),
    Switch(SwitchTarget),
    Msg {
        to: String,
        text: String,
    },
    /// `/query`, `/reply`, `/close`: DM conversations.
    Conversation(Conversation),
    Nick(String),
    Who(Option<String>),
    /// The page of rooms after this one (`None`: the first page).
    Rooms(Option<String>),
    /// `None` shows the topic, `Some` sets it.
    Topic(Option<String>),
    Away(Option<String>),
    Back,
    Busy(Option<String>),
    History(Option<u32>),
    /// Register the current nick with this secret (`None`: the client makes one up).
    Register(Option<String>),
    Unregister,
    Quit(Option<String>),
    Help,
}

/// The changes of a `/mode` line; `None` leaves a mode as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeChange {
    pub invite_only: Option<bool>,
    /// `Some(None)` removes the key.
    pub key: Option<Option<String>>,
    pub topic_lock: Option<bool>,
}

/// Where `/switch` (or `/1`, `/2`, ...) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchTarget {
    Room(String),
    /// 1-based position in the list of joined rooms.
    Position(usize),
}

/// A one-line hint for input that is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every command with its arguments and what it does, for `/help` and tab completion.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "/join",
        "ROOM [KEY]",
        "join a room (with its key, if it has one) and switch to it",
    ),
    (
        "/leave",
        "[ROOM]",
        "leave a room (default: the current one)",
    ),
    (
        "/switch",
        "ROOM",
        "make a joined room current (or /1, /2, ... by position)",
    ),
    ("/msg", "NICK TEXT", "send a direct message"),
    ("/query", "NICK", "talk with NICK alone (prompt: @NICK)"),
    ("/reply", "[TEXT]", "answer the last direct message"),
    ("/close", "[NICK]", "end a conversation (default: this one)"),
    ("/me", "ACTION", "say an action: /me waves"),
    ("/nick", "NEW", "change your nick"),
    ("/who", "[ROOM]", "list the members of a room"),
    (
        "/rooms",
        "[after]",
        "list the server's rooms, a page at a time",
    ),
    (
        "/topic",
        "[TEXT | --clear]",
        "show, set or clear the current room's topic",
    ),
    (
        "/mode",
        "[+i|-i] [+k KEY|-k] [+t|-t]",
        "show or set (operators) the room's modes: invite-only, key, topic lock",
    ),
    (
        "/invite",
        "NICK",
        "let NICK join the current room once (operators)",
    ),
    (
        "/kick",
        "NICK [REASON]",
        "remove NICK from the current room (operators)",
    ),
    (
        "/op",
        "NICK",
        "make NICK an operator of the current room (operators)",
    ),
    ("/away", "[TEXT]", "mark yourself away"),
    ("/back", "", "mark yourself online again"),
    ("/busy", "[TEXT]", "mark yourself busy"),
    (
        "/history",
        "[N]",
        "show the last N messages of the current room (default 20)",
    ),
    (
        "/register",
        "[SECRET]",
        "reserve your nick on this server (the secret is kept in your config)",
    ),
    ("/unregister", "", "release your registered nick"),
    ("/quit", "[REASON]", "leave the chat"),
    ("/help", "", "show this list"),
];

/// Messages shown by `/history` without a count, and on join.
pub const DEFAULT_HISTORY: u32 = 20;

/// Parse one input line. `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Action>, Hint> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(literal) = line.strip_prefix("//") {
        return Ok(Some(Action::Say(format!("/{literal}"))));
    }
    let Some(body) = line.strip_prefix('/') else {
        return Ok(Some(Action::Say(line.to_owned())));
    };
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (body, ""),
    };
    let rest_opt = (!rest.is_empty()).then(|| rest.to_owned());
    let usage = |cmd: &str| {
        let (_, args, _) = COMMANDS
            .iter()
            .find(|(c, _, _)| &c[1..] == cmd)
            .expect("usage of a known command");
        Hint(format!("usage: /{cmd} {args}"))
    };
    let action = match name.to_lowercase().as_str() {
        "join" | "j" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
            [room] => Action::Join(room_name(room)?),
            [room, key] if is_room_key(key) => Action::JoinWithKey(room_name(room)?, key.into()),
            _ => return Err(usage("join")),
        },
        "mode" => Action::Mode(mode_change(rest).ok_or_else(|| usage("mode"))?),
        "invite" => Action::Invite(nick_arg(rest).ok_or_else(|| usage("invite"))??),
        "op" => Action::Op(nick_arg(rest).ok_or_else(|| usage("op"))??),
        "kick" => {
            let (nick, reason) = match rest.split_once(char::is_whitespace) {
                Some((nick, reason)) => (nick, Some(reason.trim().to_owned())),
                None => (rest, None),
            };
            Action::Kick {
                nick: nick_arg(nick).ok_or_else(|| usage("kick"))??,
                reason,
            }
        }
        "leave" | "part" => match rest {
            "" => Action::Leave(None),
            r => Action::Leave(Some(one_room(r).ok_or_else(|| usage("leave"))??)),
        },
        "switch" | "s" => {
            let arg = one_word(rest).ok_or_else(|| usage("switch"))?;
            match arg.parse::<usize>() {
                Ok(n) => Action::Switch(SwitchTarget::Position(n)),
                Err(_) => Action::Switch(SwitchTarget::Room(room_name(arg)?)),
            }
        }
        "msg" | "m" | "dm" => {
            let (to, text) = rest
                .split_once(char::is_whitespace)
                .map(|(to, text)| (to, text.trim()))
                .filter(|(_, text)| !text.is_empty())
                .ok_or_else(|| usage("msg"))?;
            check_nick(to).map_err(|(_, why)| Hint(why))?;
            Action::Msg {
                to: to.to_owned(),
                text: text.to_owned(),
            }
        }
        "query" | "reply" | "r" | "close" => Action::Conversation(conversation(name, rest)?),
        "me" => Action::Me(rest_opt.ok_or_else(|| usage("me"))?),
        "nick" => {
            let nick = one_word(rest).ok_or_else(|| usage("nick"))?;
            check_nick(nick).map_err(|(_, why)| Hint(why))?;
            Action::Nick(nick.to_owned())
        }
        "who" | "names" => match rest {
            "" => Action::Who(None),
            r => Action::Who(Some(one_room(r).ok_or_else(|| usage("who"))??)),
        },
        "rooms" | "list" => match rest {
            "" => Action::Rooms(None),
            r => Action::Rooms(Some(one_room(r).ok_or_else(|| usage("rooms"))??)),
        },
        // The protocol clears a topic set to "", which cannot be typed: `--clear` asks for it.
        "topic" if rest == "--clear" => Action::Topic(Some(String::new())),
        "topic" => Action::Topic(rest_opt),
        "away" => Action::Away(rest_opt),
        "back" => no_args(rest, Action::Back, || usage("back"))?,
        "busy" => Action::Busy(rest_opt),
        "history" => match rest {
            "" => Action::History(None),
            n => match n.parse::<u32>() {
                Ok(n) if (1..=HISTORY_LIMIT_MAX as u32).contains(&n) => Action::History(Some(n)),
                _ => {
                    return Err(Hint(format!(
                        "usage: /history [N] with N from 1 to {HISTORY_LIMIT_MAX}"
                    )))
                }
            },
        },
        "register" => match rest {
            "" => Action::Register(None),
            secret => {
                check_secret(secret).map_err(Hint)?;
                Action::Register(Some(secret.to_owned()))
            }
        },
        "unregister" => no_args(rest, Action::Unregister, || usage("unregister"))?,
        "quit" | "exit" | "q" => Action::Quit(rest_opt),
        "help" | "?" => Action::Help,
        n if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && rest.is_empty() => {
            match n.parse::<usize>() {
                Ok(pos) => Action::Switch(SwitchTarget::Position(pos)),
                Err(_) => return Err(Hint(format!("no room at position {n}"))),
            }
        }
        _ => {
            let shown: String = name.chars().take(20).collect();
            return Err(Hint(format!(
                "unknown command /{shown}; /help lists the commands (start with // to say a line beginning with /)"
            )));
        }
    };
    Ok(Some(action))
}

/// Whether `line` gives a room key (`/join ROOM KEY`, `/mode +k KEY`): such a line is not kept in
/// the input history on disk.
pub fn holds_key(line: &str) -> bool {
    match parse(line) {
        Ok(Some(Action::JoinWithKey(..))) => true,
        Ok(Some(Action::Mode(change))) => matches!(change.key, Some(Some(_))),
        _ => false,
    }
}

/// `Some(Ok(nick))` for exactly one valid nick.
fn nick_arg(rest: &str) -> Option<Result<String, Hint>> {
    one_word(rest).map(|nick| {
        check_nick(nick).map_err(|(_, why)| Hint(why))?;
        Ok(nick.to_owned())
    })
}

/// The words of `/mode`: `+i`/`-i`, `+k KEY`/`-k`, `+t`/`-t`, in any order; `None` if one is
/// not understood.
fn mode_change(rest: &str) -> Option<ModeChange> {
    let mut change = ModeChange::default();
    let mut words = rest.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "+i" | "-i" => change.invite_only = Some(word == "+i"),
            "+t" | "-t" => change.topic_lock = Some(word == "+t"),
            "-k" => change.key = Some(None),
            "+k" => change.key = Some(Some(words.next().filter(|k| is_room_key(k))?.to_owned())),
            _ => return None,
        }
    }
    Some(change)
}

fn one_word(rest: &str) -> Option<&str> {
    let mut words = rest.split_whitespace();
    let word = words.next()?;
    words.next().is_none().then_some(word)
}

/// `Some(Ok(room))` for exactly one valid room name, `Some(Err)` for one invalid name.
fn one_room(rest: &str) -> Option<Result<String, Hint>> {
    one_word(rest).map(room_name)
}

/// Room names are shown as `#name`; accept the `#` when typed.
pub fn room_name(word: &str) -> Result<String, Hint> {
    let room = word.strip_prefix('#').unwrap_or(word);
    check_room(room).map_err(|(_, why)| Hint(why))?;
    Ok(room.to_owned())
}

fn no_args(rest: &str, action: Action, usage: impl Fn() -> Hint) -> Result<Action, Hint> {
    if rest.is_empty() {
        Ok(action)
    } else {
        Err(usage())
    }
}

/// The request an action needs, given the current room. `Ok(None)` for actions handled by the
/// client alone (`/switch`, `/help`, `/quit`).
pub fn to_command(action: &Action, current: Option<&str>) -> Result<Option<Command>, Hint> {
    let need_room = || {
        current
            .map(str::to_owned)
            .ok_or_else(|| Hint("you are in no room; /join ROOM first".into()))
    };
    let cmd = match action {
        Action::Say(text) => Command::Say {
            room: need_room()?,
            text: text.clone(),
        },
        Action::Me(act) => Command::Say {
            room: need_room()?,
            text: format!("/me {act}"),
        },
        Action::Join(room) => Command::Join {
            room: room.clone(),
            key: None,
        },
        Action::JoinWithKey(room, key) => Command::Join {
            room: room.clone(),
            key: Some(key.clone()),
        },
        Action::Mode(change) => Command::Mode(ModeRequest {
            room: need_room()?,
            invite_only: change.invite_only,
            key: change.key.clone(),
            topic_lock: change.topic_lock,
        }),
        Action::Invite(nick) => Command::Invite {
            room: need_room()?,
            nick: nick.clone(),
        },
        Action::Kick { nick, reason } => Command::Kick {
            room: need_room()?,
            nick: nick.clone(),
            reason: reason.clone(),
        },
        Action::Op(nick) => Command::Op {
            room: need_room()?,
            nick: nick.clone(),
        },
        Action::Leave(room) => Command::Leave {
            room: match room {
                Some(r) => r.clone(),
                None => need_room()?,
            },
        },
        Action::Msg { to, text } => Command::Dm {
            to: to.clone(),
            text: text.clone(),
        },
        Action::Nick(nick) => Command::Nick {
            nick: nick.clone(),
            secret: None,
        },
        Action::Who(room) => Command::Who {
            room: match room {
                Some(r) => r.clone(),
                None => need_room()?,
            },
        },
        Action::Rooms(after) => Command::Rooms {
            after: after.clone(),
            limit: None,
        },
        Action::Topic(topic) => Command::Topic {
            room: need_room()?,
            topic: topic.clone(),
        },
        Action::Away(text) => Command::Status {
            status: Status::Away,
            text: text.clone(),
        },
        Action::Back => Command::Status {
            status: Status::Online,
            text: None,
        },
        Action::Busy(text) => Command::Status {
            status: Status::Busy,
            text: text.clone(),
        },
        Action::History(n) => Command::History(HistoryQuery {
            room: need_room()?,
            before: None,
            after: None,
            limit: Some(n.unwrap_or(DEFAULT_HISTORY)),
        }),
        Action::Register(Some(secret)) => Command::Register {
            secret: secret.clone(),
        },
        Action::Unregister => Command::Unregister {},
        // The session makes a secret up first.
        Action::Register(None) | Action::Conversation(_) => return Ok(None),
        Action::Switch(_) | Action::Quit(_) | Action::Help => return Ok(None),
    };
    Ok(Some(cmd))
}

/// The `/help` text, one line per command.
pub fn help_lines() -> Vec<String> {
    let mut lines: Vec<String> = COMMANDS
        .iter()
        .map(|(cmd, args, what)| format!("{:<22} {what}", format!("{cmd} {args}")))
        .collect();
    lines.push(
        "text without a leading / goes to the current room; // says a line starting with /".into(),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Action {
        parse(line).unwrap().unwrap()
    }

    fn hint(line: &str) -> String {
        parse(line).unwrap_err().0
    }

    #[test]
    fn plain_text_and_blank_lines() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(ok("hello there"), Action::Say("hello there".into()));
        assert_eq!(ok("  indented\r\n"), Action::Say("  indented".into()));
        assert_eq!(ok("//not a command"), Action::Say("/not a command".into()));
    }

    #[test]
    fn account_commands() {
        assert_eq!(ok("/register"), Action::Register(None));
        assert_eq!(
            ok("/register my long secret"),
            Action::Register(Some("my long secret".into()))
        );
        assert!(hint("/register short").contains("8 to 256 bytes"));
        assert_eq!(ok("/unregister"), Action::Unregister);
        assert_eq!(hint("/unregister me"), "usage: /unregister ");
        assert_eq!(to_command(&Action::Register(None), None), Ok(None));
        assert_eq!(
            to_command(&Action::Unregister, None),
            Ok(Some(Command::Unregister {}))
        );
    }

    #[test]
    fn private_room_commands() {
        assert_eq!(
            ok("/join #vault s3cret"),
            Action::JoinWithKey("vault".into(), "s3cret".into())
        );
        assert_eq!(hint("/join a b c"), "usage: /join ROOM [KEY]");
        assert_eq!(ok("/mode"), Action::Mode(ModeChange::default()));
        assert_eq!(
            ok("/mode +i -t +k k3y"),
            Action::Mode(ModeChange {
                invite_only: Some(true),
                key: Some(Some("k3y".into())),
                topic_lock: Some(false),
            })
        );
        assert_eq!(
            ok("/mode -k"),
            Action::Mode(ModeChange {
                key: Some(None),
                ..ModeChange::default()
            })
        );
        assert!(hint("/mode +k").starts_with("usage: /mode"));
        assert!(hint("/mode +x").starts_with("usage: /mode"));
        assert_eq!(ok("/invite bob"), Action::Invite("bob".into()));
        assert_eq!(ok("/op bob"), Action::Op("bob".into()));
        assert_eq!(
            ok("/kick bob  go away "),
            Action::Kick {
                nick: "bob".into(),
                reason: Some("go away".into())
            }
        );
        assert!(hint("/kick").starts_with("usage: /kick"));
        let cmd = |a: Action| to_command(&a, Some("dev")).unwrap().unwrap();
        assert_eq!(
            cmd(ok("/mode -k +i")),
            Command::Mode(ModeRequest {
                room: "dev".into(),
                invite_only: Some(true),
                key: Some(None),
                topic_lock: None,
            })
        );
        assert_eq!(
            cmd(ok("/join dev pw")),
            Command::Join {
                room: "dev".into(),
                key: Some("pw".into())
            }
        );
        assert_eq!(
            cmd(ok("/kick bob")),
            Command::Kick {
                room: "dev".into(),
                nick: "bob".into(),
                reason: None
            }
        );
        assert!(
            to_command(&ok("/invite bob"), None).is_err(),
            "needs a room"
        );
        assert!(holds_key("/join vault s3cret"));
        assert!(holds_key("/mode +i +k s3cret"));
        assert!(!holds_key("/mode -k"));
        assert!(!holds_key("/join vault"));
        assert!(!holds_key("s3cret"));
    }

    #[test]
    fn room_commands() {
        assert_eq!(ok("/join dev"), Action::Join("dev".into()));
        assert_eq!(ok("/join #dev"), Action::Join("dev".into()));
        assert_eq!(ok("/JOIN Dev"), Action::Join("Dev".into()));
        assert_eq!(ok("/leave"), Action::Leave(None));
        assert_eq!(ok("/leave #dev"), Action::Leave(Some("dev".into())));
        assert_eq!(
            ok("/switch dev"),
            Action::Switch(SwitchTarget::Room("dev".into()))
        );
        assert_eq!(ok("/switch 2"), Action::Switch(SwitchTarget::Position(2)));
        assert_eq!(ok("/2"), Action::Switch(SwitchTarget::Position(2)));
        assert_eq!(ok("/who"), Action::Who(None));
        assert_eq!(ok("/who lobby"), Action::Who(Some("lobby".into())));
        assert_eq!(ok("/rooms"), Action::Rooms(None));
        assert_eq!(ok("/rooms #rust"), Action::Rooms(Some("rust".into())));
        assert_eq!(ok("/topic"), Action::Topic(None));
        assert_eq!(
            ok("/topic  release on friday "),
            Action::Topic(Some("release on friday".into()))
        );
        assert_eq!(ok("/topic --clear"), Action::Topic(Some(String::new())));
        assert_eq!(
            to_command(&ok("/topic --clear"), Some("lobby")).unwrap(),
            Some(Command::Topic {
                room: "lobby".into(),
                topic: Some(String::new())
            })
        );
    }

    #[test]
    fn people_and_status() {
        assert_eq!(
            ok("/msg bob  hi there "),
            Action::Msg {
                to: "bob".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(ok("/me waves"), Action::Me("waves".into()));
        assert_eq!(ok("/nick ann_2"), Action::Nick("ann_2".into()));
        assert_eq!(ok("/away lunch"), Action::Away(Some("lunch".into())));
        assert_eq!(ok("/away"), Action::Away(None));
        assert_eq!(ok("/back"), Action::Back);
        assert_eq!(ok("/busy"), Action::Busy(None));
        assert_eq!(ok("/history"), Action::History(None));
        assert_eq!(ok("/history 50"), Action::History(Some(50)));
        assert_eq!(ok("/quit"), Action::Quit(None));
        assert_eq!(ok("/quit see you"), Action::Quit(Some("see you".into())));
        assert_eq!(ok("/help"), Action::Help);
    }

    #[test]
    fn wrong_arguments_get_one_line_hints() {
        assert_eq!(hint("/join"), "usage: /join ROOM [KEY]");
        assert_eq!(hint("/join a b c"), "usage: /join ROOM [KEY]");
        assert!(hint("/join a/b").contains("may contain only"));
        assert_eq!(hint("/msg bob"), "usage: /msg NICK TEXT");
        assert_eq!(hint("/msg"), "usage: /msg NICK TEXT");
        assert!(hint("/msg b@b hi").contains("nick"));
        assert_eq!(hint("/me"), "usage: /me ACTION");
        assert_eq!(hint("/nick"), "usage: /nick NEW");
        assert!(hint("/nick a b").starts_with("usage"));
        assert!(hint("/history 0").starts_with("usage: /history"));
        assert!(hint("/history 201").starts_with("usage: /history"));
        assert!(hint("/history x").starts_with("usage: /history"));
        assert_eq!(hint("/back now"), "usage: /back ");
        assert!(hint("/frobnicate").starts_with("unknown command /frobnicate"));
        assert!(hint("/").starts_with("unknown command"));
        for h in ["/join", "/frobnicate x y", "/msg"] {
            assert!(!hint(h).contains('\n'));
        }
    }

    #[test]
    fn actions_become_requests() {
        let cur = Some("lobby");
        assert_eq!(
            to_command(&ok("hi"), cur).unwrap(),
            Some(Command::Say {
                room: "lobby".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            to_command(&ok("/me waves"), cur).unwrap(),
            Some(Command::Say {
                room: "lobby".into(),
                text: "/me waves".into()
            })
        );
        assert_eq!(
            to_command(&ok("/leave"), cur).unwrap(),
            Some(Command::Leave {
                room: "lobby".into()
            })
        );
        assert_eq!(
            to_command(&ok("/back"), cur).unwrap(),
            Some(Command::Status {
                status: Status::Online,
                text: None
            })
        );
        assert_eq!(
            to_command(&ok("/history"), cur).unwrap(),
            Some(Command::History(HistoryQuery {
                room: "lobby".into(),
                before: None,
                after: None,
                limit: Some(20)
            }))
        );
        assert_eq!(to_command(&ok("/2"), cur).unwrap(), None);
        assert!(to_command(&ok("hi"), None).unwrap_err().0.contains("/join"));
        assert_eq!(
            to_command(&ok("/join x"), None).unwrap(),
            Some(Command::Join {
                room: "x".into(),
                key: None
            })
        );
    }

    #[test]
    fn help_covers_every_command() {
        let help = help_lines().join("\n");
        for (cmd, _, _) in COMMANDS {
            assert!(help.contains(cmd));
        }
    }
}
