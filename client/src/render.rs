//! The renderer: events and client notices to display lines. Pure: the clock and the time zone
//! come in through [`View`], so every format is unit-tested without a terminal.
//!
//! Lines start with a local `HH:MM` timestamp. Nicks get a stable colour (a hash of the lowercased
//! nick), DMs and mentions of the user's nick are highlighted and ring the bell, and joins, quits
//! and other notices are dimmed. Without colour (NO_COLOR, or output that is not a terminal) the
//! same text is produced with no escape sequences and no bell.

use chrono::{Local, TimeZone};
use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Direct, Member, Message, RoomInfo, ServerFrame, Status};

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const MENTION: &str = "\x1b[1;33m";
const DIRECT: &str = "\x1b[1;35m";
const ERROR: &str = "\x1b[31m";
/// Bright and normal foreground colours that read on dark and light backgrounds alike.
const NICK_COLOURS: [u8; 12] = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96];

/// What a line is rendered against: who the user is, and how to show it.
#[derive(Debug, Clone)]
pub struct View<'a> {
    /// The user's own nick (mentions, own messages).
    pub me: &'a str,
    /// Emit ANSI styles (and allow the bell).
    pub color: bool,
    /// Ring the terminal bell on mentions and DMs (only with `color`).
    pub bell: bool,
    /// Show the room of room messages (`#lobby`).
    pub show_room: bool,
    /// Milliseconds since the epoch, for notices that carry no timestamp.
    pub now_ms: u64,
    /// Seconds east of UTC at a given time (local time zone, or 0 in tests).
    pub utc_offset: fn(u64) -> i64,
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

    fn time(&self, ts_ms: u64) -> String {
        let local = (ts_ms / 1000) as i64 + (self.utc_offset)(ts_ms);
        let minute_of_day = local.rem_euclid(86_400) / 60;
        let stamp = format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60);
        self.style(DIM, &stamp)
    }

    fn nick(&self, nick: &str) -> String {
        if self.color {
            format!("\x1b[{}m{nick}{RESET}", nick_colour(nick))
        } else {
            nick.to_owned()
        }
    }

    fn room(&self, room: &str) -> String {
        if self.show_room {
            format!("{} ", self.style(BOLD, &format!("#{room}")))
        } else {
            String::new()
        }
    }

    fn line(&self, ts_ms: u64, body: String) -> Line {
        Line {
            text: format!("{} {body}", self.time(ts_ms)),
            bell: false,
        }
    }

    /// A dimmed notice: joins, leaves, quits, nick and status changes, client notices.
    pub fn notice(&self, text: &str) -> Line {
        self.line(self.now_ms, self.style(DIM, &format!("-- {text}")))
    }

    /// A client notice that is not dimmed (the user needs to read it).
    pub fn info(&self, text: &str) -> Line {
        self.line(self.now_ms, format!("-- {text}"))
    }

    /// An error or hint.
    pub fn error(&self, text: &str) -> Line {
        self.line(self.now_ms, self.style(ERROR, &format!("!! {text}")))
    }

    /// A room message, the user's own included (shown as sent).
    pub fn message(&self, msg: &Message) -> Line {
        let own = name_key(&msg.from) == name_key(self.me);
        let mention = !own && mentions(&msg.text, self.me);
        let body = match msg.text.strip_prefix("/me ") {
            Some(action) => format!("* {} {}", self.nick(&msg.from), self.text(action, mention)),
            None => format!(
                "<{}> {}",
                self.nick(&msg.from),
                self.text(&msg.text, mention)
            ),
        };
        let mut line = self.line(msg.ts, format!("{}{body}", self.room(&msg.room)));
        line.bell = mention && self.bell && self.color;
        line
    }

    fn text(&self, text: &str, highlight: bool) -> String {
        if highlight {
            self.style(MENTION, text)
        } else {
            text.to_owned()
        }
    }

    /// A direct message, received or sent.
    pub fn direct(&self, dm: &Direct) -> Line {
        let outgoing =
            name_key(&dm.from) == name_key(self.me) && name_key(&dm.to) != name_key(self.me);
        // The whole line in the DM style: a nick colour inside it would end the style early.
        let body = if outgoing {
            format!("-> *{}* {}", dm.to, dm.text)
        } else {
            format!("*{}* {}", dm.from, dm.text)
        };
        let mut line = self.line(dm.ts, self.style(DIRECT, &body));
        line.bell = !outgoing && self.bell && self.color;
        line
    }

    /// A server event. `None` for frames that are not shown (replies, ping) or unknown.
    pub fn event(&self, frame: &ServerFrame) -> Option<Line> {
        let line = match frame {
            ServerFrame::Message(m) => self.message(m),
            ServerFrame::Direct(d) => self.direct(d),
            ServerFrame::Join(j) => self.notice(&format!("{} joined #{}", j.nick, j.room)),
            ServerFrame::Leave(l) => match (&l.kicked_by, &l.reason) {
                (None, _) => self.notice(&format!("{} left #{}", l.nick, l.room)),
                (Some(by), None) => {
                    self.notice(&format!("{} was kicked from #{} by {by}", l.nick, l.room))
                }
                (Some(by), Some(why)) => self.notice(&format!(
                    "{} was kicked from #{} by {by} ({why})",
                    l.nick, l.room
                )),
            },
            ServerFrame::Mode(m) => self.notice(&format!(
                "{} set the modes of #{}: {}",
                m.by,
                m.room,
                modes(m.invite_only, m.has_key, m.topic_lock)
            )),
            ServerFrame::Invite(i) => self.notice(&format!(
                "{} invited you to #{}: /join {}",
                i.by, i.room, i.room
            )),
            ServerFrame::Quit(q) => self.notice(&format!("{} quit ({})", q.nick, q.reason)),
            ServerFrame::Nick(n) => self.notice(&format!("{} is now known as {}", n.old, n.new)),
            ServerFrame::Presence(m) => self.notice(&presence(m)),
            ServerFrame::Topic(t) if t.topic.is_empty() => {
                self.notice(&format!("{} cleared the topic of #{}", t.by, t.room))
            }
            ServerFrame::Topic(t) => self.notice(&format!(
                "{} set the topic of #{}: {}",
                t.by, t.room, t.topic
            )),
            ServerFrame::Bye(b) => self.info(&format!(
                "server said goodbye: {} ({})",
                b.message, b.reason
            )),
            ServerFrame::Error(e) => self.error(&format!("{}: {}", e.code, e.message)),
            ServerFrame::Welcome(_) | ServerFrame::Reply(_) | ServerFrame::Ping {} => return None,
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
                    Status::Online => format!("{op}{}", m.nick),
                    s => format!("{op}{} ({})", m.nick, s.as_str()),
                }
            })
            .collect();
        self.info(&format!(
            "#{room}: {} here: {}",
            members.len(),
            names.join(", ")
        ))
    }

    /// The server's room list, a line per room.
    pub fn rooms(&self, rooms: &[RoomInfo]) -> Vec<Line> {
        if rooms.is_empty() {
            return vec![self.info("no rooms")];
        }
        rooms
            .iter()
            .map(|r| {
                let topic = if r.topic.is_empty() {
                    String::new()
                } else {
                    format!(" - {}", r.topic)
                };
                self.info(&format!("#{} ({} members){topic}", r.name, r.members))
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

fn presence(m: &Member) -> String {
    match (m.status, &m.text) {
        (Status::Online, _) => format!("{} is back", m.nick),
        (s, Some(text)) => format!("{} is {}: {text}", m.nick, s.as_str()),
        (s, None) => format!("{} is {}", m.nick, s.as_str()),
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

/// The colour code of a nick: FNV-1a of its lowercase form, so it is the same in every run and
/// for every spelling.
pub fn nick_colour(nick: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name_key(nick).bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NICK_COLOURS[(hash % NICK_COLOURS.len() as u32) as usize]
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
mod tests {
    use super::*;
    use lanchat_protocol::{
        InviteEvent, LeaveEvent, ModeEvent, NickChange, QuitEvent, RoomNick, TopicChange,
    };

    // 2024-01-02 13:45:10 UTC
    const TS: u64 = 1_704_203_110_000;

    fn plain(me: &str) -> View<'_> {
        View {
            me,
            color: false,
            bell: true,
            show_room: false,
            now_ms: TS,
            utc_offset: |_| 0,
        }
    }

    fn msg(from: &str, text: &str) -> Message {
        Message {
            id: "0190-x".into(),
            ts: TS,
            room: "lobby".into(),
            from: from.into(),
            text: text.into(),
        }
    }

    #[test]
    fn plain_message_lines() {
        let v = plain("ann");
        assert_eq!(v.message(&msg("bob", "hi")).text, "13:45 <bob> hi");
        assert_eq!(
            v.message(&msg("bob", "/me waves")).text,
            "13:45 * bob waves"
        );
        assert_eq!(v.message(&msg("ann", "mine")).text, "13:45 <ann> mine");
        let v = View {
            show_room: true,
            ..plain("ann")
        };
        assert_eq!(v.message(&msg("bob", "hi")).text, "13:45 #lobby <bob> hi");
    }

    #[test]
    fn local_time_uses_the_offset() {
        let v = View {
            utc_offset: |_| -5 * 3600 - 1800,
            ..plain("ann")
        };
        assert_eq!(v.message(&msg("bob", "x")).text, "08:15 <bob> x");
        let v = View {
            utc_offset: |_| 11 * 3600,
            ..plain("ann")
        };
        assert_eq!(v.message(&msg("bob", "x")).text, "00:45 <bob> x");
    }

    #[test]
    fn plain_output_has_no_escapes_and_no_bell() {
        let v = plain("ann");
        let line = v.message(&msg("bob", "hey ann!"));
        assert!(!line.text.contains('\x1b'));
        assert!(!line.bell);
        let d = Direct {
            id: "i".into(),
            ts: TS,
            from: "bob".into(),
            to: "ann".into(),
            text: "psst".into(),
        };
        assert_eq!(v.direct(&d).text, "13:45 *bob* psst");
        let sent = Direct {
            from: "ann".into(),
            to: "bob".into(),
            ..d
        };
        assert_eq!(v.direct(&sent).text, "13:45 -> *bob* psst");
    }

    #[test]
    fn colour_highlights_mentions_and_dms_and_rings() {
        let v = View {
            color: true,
            ..plain("Ann")
        };
        let line = v.message(&msg("bob", "hey ann!"));
        assert!(line.text.contains(MENTION), "{:?}", line.text);
        assert!(line.bell);
        let quiet = View {
            bell: false,
            ..v.clone()
        };
        assert!(!quiet.message(&msg("bob", "hey ann!")).bell);
        let line = v.message(&msg("bob", "hey annie"));
        assert!(!line.text.contains(MENTION));
        assert!(!line.bell);
        // Own messages never ring.
        assert!(!v.message(&msg("ann", "I am ann")).bell);
        let d = Direct {
            id: "i".into(),
            ts: TS,
            from: "bob".into(),
            to: "ann".into(),
            text: "psst".into(),
        };
        let line = v.direct(&d);
        assert!(line.text.contains(DIRECT) && line.bell);
        // The nick is coloured with its own stable colour.
        let colour = format!("\x1b[{}mbob", nick_colour("bob"));
        assert!(v.message(&msg("bob", "x")).text.contains(&colour));
    }

    #[test]
    fn mention_rules() {
        assert!(mentions("ann: hi", "ann"));
        assert!(mentions("hi ANN", "ann"));
        assert!(mentions("(ann)", "ann"));
        assert!(mentions("annie and ann", "ann"));
        assert!(!mentions("annie", "ann"));
        assert!(!mentions("joann", "ann"));
        assert!(!mentions("ann_2 here", "ann"));
        assert!(mentions("Ünï says hi", "ünï"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn nick_colours_are_stable_and_case_blind() {
        assert_eq!(nick_colour("bob"), nick_colour("BOB"));
        assert_eq!(nick_colour("bob"), nick_colour("bob"));
        let distinct: std::collections::HashSet<u8> =
            ["ann", "bob", "cat", "dan", "eve", "fay", "gus"]
                .iter()
                .map(|n| nick_colour(n))
                .collect();
        assert!(distinct.len() > 2);
    }

    #[test]
    fn notices_are_dimmed() {
        let v = plain("ann");
        let join = ServerFrame::Join(RoomNick {
            room: "lobby".into(),
            nick: "bob".into(),
        });
        assert_eq!(v.event(&join).unwrap().text, "13:45 -- bob joined #lobby");
        let quit = ServerFrame::Quit(QuitEvent {
            nick: "bob".into(),
            reason: "connection lost".into(),
        });
        assert_eq!(
            v.event(&quit).unwrap().text,
            "13:45 -- bob quit (connection lost)"
        );
        let nick = ServerFrame::Nick(NickChange {
            old: "bob".into(),
            new: "rob".into(),
        });
        assert_eq!(
            v.event(&nick).unwrap().text,
            "13:45 -- bob is now known as rob"
        );
        let away = ServerFrame::Presence(Member {
            nick: "bob".into(),
            status: Status::Away,
            text: Some("lunch".into()),
            op: false,
        });
        assert_eq!(v.event(&away).unwrap().text, "13:45 -- bob is away: lunch");
        let topic = ServerFrame::Topic(TopicChange {
            room: "lobby".into(),
            topic: "t".into(),
            by: "bob".into(),
        });
        assert_eq!(
            v.event(&topic).unwrap().text,
            "13:45 -- bob set the topic of #lobby: t"
        );
        assert_eq!(v.event(&ServerFrame::Ping {}), None);
        let dim = View {
            color: true,
            ..plain("ann")
        };
        assert!(dim.event(&join).unwrap().text.contains(DIM));
    }

    #[test]
    fn private_room_events() {
        let v = plain("ann");
        let kicked = ServerFrame::Leave(LeaveEvent {
            room: "dev".into(),
            nick: "bob".into(),
            kicked_by: Some("ann".into()),
            reason: Some("spam".into()),
        });
        assert_eq!(
            v.event(&kicked).unwrap().text,
            "13:45 -- bob was kicked from #dev by ann (spam)"
        );
        let mode = ServerFrame::Mode(ModeEvent {
            room: "dev".into(),
            by: "ann".into(),
            invite_only: true,
            has_key: true,
            topic_lock: true,
        });
        assert_eq!(
            v.event(&mode).unwrap().text,
            "13:45 -- ann set the modes of #dev: invite-only, key, topic locked"
        );
        let invite = ServerFrame::Invite(InviteEvent {
            room: "dev".into(),
            by: "bob".into(),
        });
        assert_eq!(
            v.event(&invite).unwrap().text,
            "13:45 -- bob invited you to #dev: /join dev"
        );
        assert_eq!(modes(false, false, false), "public");
        let ops = [Member {
            nick: "ann".into(),
            status: Status::Online,
            text: None,
            op: true,
        }];
        assert_eq!(v.members("dev", &ops).text, "13:45 -- #dev: 1 here: @ann");
    }

    #[test]
    fn lists() {
        let v = plain("ann");
        let members = [
            Member {
                nick: "ann".into(),
                status: Status::Online,
                text: None,
                op: false,
            },
            Member {
                nick: "bob".into(),
                status: Status::Away,
                text: Some("lunch".into()),
                op: false,
            },
        ];
        assert_eq!(
            v.members("lobby", &members).text,
            "13:45 -- #lobby: 2 here: ann, bob (away)"
        );
        let rooms = [RoomInfo {
            name: "dev".into(),
            members: 3,
            topic: "rust".into(),
        }];
        assert_eq!(v.rooms(&rooms)[0].text, "13:45 -- #dev (3 members) - rust");
    }
}
