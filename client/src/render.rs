//! The renderer: events and client notices to display lines. Pure: the clock and the time zone
//! come in through [`View`], so every format is unit-tested without a terminal.
//!
//! Lines start with a local `HH:MM` timestamp (with the date before it when the line is not from
//! today). Nicks get a stable colour (a hash of the lowercased nick; the user's own is also bold
//! and underlined), DMs and mentions of the user's nick are highlighted and ring the bell, and
//! joins, quits and other notices are dimmed. Without colour (NO_COLOR, or output that is not a
//! terminal) the same text is produced with no escape sequences; mentions and DMs are then marked
//! `>>` instead (see [`View::mark`]).
//!
//! Every string from the server goes through [`crate::sanitize`] here, and a text of several
//! lines shows its later lines indented under the first with a `|` marker, so no line of a
//! message can pass for a line of its own (another nick's message, or a notice).

use chrono::{Local, TimeZone};
use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Direct, Member, Message, RoomInfo, ServerFrame, Status};

pub use crate::config::{Look, PLAIN_LOOK};
use crate::sanitize;

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const MENTION: &str = "\x1b[1;33m";
const DIRECT: &str = "\x1b[1;35m";
const ERROR: &str = "\x1b[31m";
/// Marks the user's own nick (with its colour).
const OWN: &str = "\x1b[1;4m";
/// What starts the later lines of a text of several lines (after the indent).
pub const CONTINUATION: &str = "| ";
/// What marks a mention or a DM when there is no colour to highlight it.
pub const MARK: &str = ">> ";
/// Nick colours from the 256-colour palette, all of middle lightness so that each reads on a
/// dark and on a light background (no dark blue, no yellow, no grey), and no pure red, which
/// errors use.
const NICK_COLOURS: [u8; 15] = [
    33, 37, 34, 70, 136, 166, 162, 128, 99, 30, 130, 61, 168, 106, 172,
];

/// What a line is rendered against: who the user is, and how to show it.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// The user's own nick (mentions, own messages).
    pub me: &'a str,
    /// Emit ANSI styles (and allow the bell).
    pub color: bool,
    /// Ring the terminal bell on mentions and DMs.
    pub bell: bool,
    /// Mark mentions and DMs with [`MARK`] (when there is no colour to highlight them).
    pub mark: bool,
    /// Show the room of room messages (`#lobby`).
    pub show_room: bool,
    /// Milliseconds since the epoch, for notices that carry no timestamp.
    pub now_ms: u64,
    /// Seconds east of UTC at a given time (local time zone, or 0 in tests).
    pub utc_offset: fn(u64) -> i64,
    /// The config file's highlight words and timestamp format.
    pub look: &'a Look,
}

/// One display line, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    /// Ring the terminal bell when printing it.
    pub bell: bool,
}

impl<'a> View<'a> {
    fn style(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    /// `HH:MM`, or `YYYY-MM-DD HH:MM` when `ts_ms` is not on today's local date.
    fn time(&self, ts_ms: u64) -> String {
        let local = |ms: u64| (ms / 1000) as i64 + (self.utc_offset)(ms);
        let at = local(ts_ms);
        let minute_of_day = at.rem_euclid(86_400) / 60;
        let mut stamp = match &self.look.timestamp {
            Some(format) => chrono::DateTime::from_timestamp(at, 0)
                .map_or_else(String::new, |d| d.format(format).to_string()),
            None => format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60),
        };
        let day = at.div_euclid(86_400);
        if day != local(self.now_ms).div_euclid(86_400) {
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0).map_or_else(
                || format!("day {day}"),
                |d| d.format("%Y-%m-%d").to_string(),
            );
            stamp = format!("{date} {stamp}");
        }
        self.style(DIM, &stamp)
    }

    fn nick(&self, nick: &str) -> String {
        let shown = sanitize::name(nick);
        if !self.color {
            return shown;
        }
        let own = if name_key(nick) == name_key(self.me) {
            OWN
        } else {
            ""
        };
        format!("{own}\x1b[38;5;{}m{shown}{RESET}", nick_colour(nick))
    }

    fn room(&self, room: &str) -> String {
        if self.show_room {
            let room = sanitize::name(room);
            format!("{} ", self.style(BOLD, &format!("#{room}")))
        } else {
            String::new()
        }
    }

    /// A line: the time, `head`, then `text` (from the server) in `style`, its later lines (if
    /// it has several) indented under the first behind [`CONTINUATION`].
    fn lines(&self, ts_ms: u64, head: &str, text: &str, style: Option<&str>) -> Line {
        let first = format!("{} {head}", self.time(ts_ms));
        let indent = sanitize::width(&first).saturating_sub(CONTINUATION.len());
        let styled = |t: &str| match style {
            Some(s) => self.style(s, t),
            None => t.to_owned(),
        };
        let mut out = first;
        for (i, line) in sanitize::lines(text).iter().enumerate() {
            if i > 0 {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                out.push_str(&self.style(DIM, CONTINUATION.trim_end()));
                out.push(' ');
            }
            out.push_str(&styled(line));
        }
        Line {
            text: out,
            bell: false,
        }
    }

    /// A dimmed notice: joins, leaves, quits, nick and status changes, client notices.
    pub fn notice(&self, text: &str) -> Line {
        self.lines(self.now_ms, "", &format!("-- {text}"), Some(DIM))
    }

    /// A client notice that is not dimmed (the user needs to read it).
    pub fn info(&self, text: &str) -> Line {
        self.lines(self.now_ms, "", &format!("-- {text}"), None)
    }

    /// An error or hint.
    pub fn error(&self, text: &str) -> Line {
        self.lines(self.now_ms, "", &format!("!! {text}"), Some(ERROR))
    }

    fn marked(&self, notify: bool) -> &'static str {
        if notify && self.mark {
            MARK
        } else {
            ""
        }
    }

    /// Whether `text` mentions the user: their nick or a highlight word.
    pub fn mentioned(&self, text: &str) -> bool {
        mentions(text, self.me) || self.look.highlight.iter().any(|w| mentions(text, w))
    }

    /// A room message, the user's own included (shown as sent).
    pub fn message(&self, msg: &Message) -> Line {
        let own = name_key(&msg.from) == name_key(self.me);
        let mention = !own && self.mentioned(&msg.text);
        let (head, text) = match msg.text.strip_prefix("/me ") {
            Some(action) => (format!("* {} ", self.nick(&msg.from)), action),
            None => (format!("<{}> ", self.nick(&msg.from)), msg.text.as_str()),
        };
        let head = format!("{}{}{head}", self.marked(mention), self.room(&msg.room));
        let mut line = self.lines(msg.ts, &head, text, mention.then_some(MENTION));
        line.bell = mention && self.bell;
        line
    }

    /// A direct message, received or sent.
    pub fn direct(&self, dm: &Direct) -> Line {
        let outgoing =
            name_key(&dm.from) == name_key(self.me) && name_key(&dm.to) != name_key(self.me);
        // The whole line in the DM style: a nick colour inside it would end the style early.
        let head = if outgoing {
            format!("-> *{}* ", sanitize::name(&dm.to))
        } else {
            format!("*{}* ", sanitize::name(&dm.from))
        };
        let head = format!("{}{}", self.marked(!outgoing), self.style(DIRECT, &head));
        let mut line = self.lines(dm.ts, &head, &dm.text, Some(DIRECT));
        line.bell = !outgoing && self.bell;
        line
    }

    /// A server event. `None` for frames that are not shown (replies, ping, and `bye`, which
    /// the notice about the lost connection or the exit message tells) or unknown.
    pub fn event(&self, frame: &ServerFrame) -> Option<Line> {
        let name = sanitize::name;
        let line = match frame {
            ServerFrame::Message(m) => self.message(m),
            ServerFrame::Direct(d) => self.direct(d),
            ServerFrame::Join(j) => {
                self.notice(&format!("{} joined #{}", name(&j.nick), name(&j.room)))
            }
            ServerFrame::Leave(l) => match (&l.kicked_by, &l.reason) {
                (None, _) => self.notice(&format!("{} left #{}", name(&l.nick), name(&l.room))),
                (Some(by), None) => self.notice(&format!(
                    "{} was kicked from #{} by {}",
                    name(&l.nick),
                    name(&l.room),
                    name(by)
                )),
                (Some(by), Some(why)) => self.notice(&format!(
                    "{} was kicked from #{} by {} ({why})",
                    name(&l.nick),
                    name(&l.room),
                    name(by)
                )),
            },
            ServerFrame::Mode(m) => self.notice(&format!(
                "{} set the modes of #{}: {}",
                name(&m.by),
                name(&m.room),
                modes(m.invite_only, m.has_key, m.topic_lock)
            )),
            ServerFrame::Invite(i) => self.notice(&format!(
                "{} invited you to #{}: /join {}",
                name(&i.by),
                name(&i.room),
                name(&i.room)
            )),
            ServerFrame::Quit(q) if q.reason.is_empty() || q.reason == "quit" => {
                self.notice(&format!("{} quit", name(&q.nick)))
            }
            ServerFrame::Quit(q) => self.notice(&format!("{} quit ({})", name(&q.nick), q.reason)),
            ServerFrame::Nick(n) => self.notice(&format!(
                "{} is now known as {}",
                name(&n.old),
                name(&n.new)
            )),
            ServerFrame::Presence(m) => self.notice(&presence(m)),
            ServerFrame::Topic(t) if t.topic.is_empty() => self.notice(&format!(
                "{} cleared the topic of #{}",
                name(&t.by),
                name(&t.room)
            )),
            ServerFrame::Topic(t) => self.notice(&format!(
                "{} set the topic of #{}: {}",
                name(&t.by),
                name(&t.room),
                t.topic
            )),
            ServerFrame::Error(e) => self.error(&format!("{}: {}", e.code, e.message)),
            ServerFrame::Bye(_)
            | ServerFrame::Welcome(_)
            | ServerFrame::Reply(_)
            | ServerFrame::Ping {} => return None,
        };
        Some(line)
    }

    /// The member list of a room, one line (operators marked `@`).
    pub fn members(&self, room: &str, members: &[Member]) -> Line {
        let names: Vec<String> = members
            .iter()
            .map(|m| {
                let op = if m.op { "@" } else { "" };
                match m.status {
                    Status::Online => format!("{op}{}", sanitize::name(&m.nick)),
                    s => format!("{op}{} ({})", sanitize::name(&m.nick), s.as_str()),
                }
            })
            .collect();
        self.info(&format!(
            "#{}: {} here: {}",
            sanitize::name(room),
            members.len(),
            names.join(", ")
        ))
    }

    /// The server's room list, a line per room.
    pub fn rooms(&self, rooms: &[RoomInfo]) -> Vec<Line> {
        self.listed(rooms, &[])
    }

    /// The room list, the rooms the user is in (`joined`, in the same order) marked `*`.
    pub fn listed(&self, rooms: &[RoomInfo], joined: &[bool]) -> Vec<Line> {
        if rooms.is_empty() {
            return vec![self.info("no rooms")];
        }
        rooms
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mark = if joined.get(i) == Some(&true) {
                    "* "
                } else {
                    ""
                };
                let topic = if r.topic.is_empty() {
                    String::new()
                } else {
                    format!(" - {}", r.topic)
                };
                self.info(&format!(
                    "{mark}#{} ({}){topic}",
                    sanitize::name(&r.name),
                    count(r.members as u64, "member", "members")
                ))
            })
            .collect()
    }
}

/// A room's modes in words: "public", or what makes it private and whether its topic is locked.
pub fn modes(invite_only: bool, has_key: bool, topic_lock: bool) -> String {
    let mut words = Vec::new();
    if invite_only {
        words.push("invite-only");
    }
    if has_key {
        words.push("key");
    }
    if words.is_empty() {
        words.push("public");
    }
    if topic_lock {
        words.push("topic locked");
    }
    words.join(", ")
}

/// `1 member`, `2 members`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn presence(m: &Member) -> String {
    let nick = sanitize::name(&m.nick);
    match (m.status, &m.text) {
        (Status::Online, _) => format!("{nick} is back"),
        (s, Some(text)) => format!("{nick} is {}: {text}", s.as_str()),
        (s, None) => format!("{nick} is {}", s.as_str()),
    }
}

/// Whether `text` names `nick` as a word (case-insensitively; nick characters around it do not
/// count as a boundary, so "annie" does not mention "ann").
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let is_nick_char = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let text = text.to_lowercase();
    let nick = nick.to_lowercase();
    let mut from = 0;
    while let Some(at) = text[from..].find(&nick) {
        let start = from + at;
        let end = start + nick.len();
        let before_ok = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_nick_char(c));
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_nick_char(c));
        if before_ok && after_ok {
            return true;
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The 256-colour code of a nick: a hash of its folded form, so it is the same in every run and
/// for every spelling. FNV-1a alone spreads short nicks badly over a small palette (its low bits
/// depend mostly on the last byte: "ann", "bob" and "dan" collided); the 64-bit form with
/// MurmurHash3's finaliser mixes every byte into every bit.
pub fn nick_colour(nick: &str) -> u8 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name_key(nick).bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    NICK_COLOURS[(hash % NICK_COLOURS.len() as u64) as usize]
}

/// Seconds east of UTC in the local time zone at `ts_ms` (honours TZ and DST).
pub fn local_utc_offset(ts_ms: u64) -> i64 {
    let secs = i64::try_from(ts_ms / 1000).unwrap_or(i64::MAX);
    Local
        .timestamp_opt(secs, 0)
        .single()
        .map_or(0, |t| i64::from(t.offset().local_minus_utc()))
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod display_tests;
