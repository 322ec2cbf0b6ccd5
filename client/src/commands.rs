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
    /// `/focus`: show only the current room, mentions and DMs (or everything again).
    Focus,
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
    (
        "/focus",
        "",
        "only this room, mentions and DMs (again: all)",
    ),
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
        "focus" => no_args(rest, Action::Focus, || usage("focus"))?,
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
        Action::Switch(_) | Action::Quit(_) | Action::Help | Action::Focus => return Ok(None),
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
mod tests;
