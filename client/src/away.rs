//! Being away: automatic away after `away_after` minutes without a typed line (config; off by
//! default), automatic return on the next typed line, and while away (automatically or by
//! `/away` or `/busy`) a tally of what arrived, told in one line on return. Pure: the clock comes
//! in as an argument; the session sends the status requests this decides.

use std::collections::HashSet;
use std::time::Duration;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Command, Status};
use tokio::time::Instant;

use crate::model::Show;
use crate::render::{count, mentions};

/// The user's presence as this client set it, and what arrived meanwhile.
#[derive(Debug)]
pub struct Away {
    after: Option<Duration>,
    last_typed: Instant,
    /// Set away by this module (not by the user): the next typed line sets them back.
    auto: bool,
    /// Away or busy since the server confirmed it: tallying.
    tally: Option<Tally>,
}

/// What arrived while away.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    messages: u64,
    rooms: HashSet<String>,
    mentions: u64,
    dms: u64,
}

impl Away {
    /// `after`: automatic away after that long without a typed line (`None`: never).
    pub fn new(after: Option<Duration>, now: Instant) -> Away {
        Away {
            after,
            last_typed: now,
            auto: false,
            tally: None,
        }
    }

    /// When to go away automatically: never when off or already away.
    pub fn due(&self) -> Option<Instant> {
        match (self.after, &self.tally) {
            (Some(after), None) if !self.auto => Some(self.last_typed + after),
            _ => None,
        }
    }

    /// The idle time is over: the request that sets the user away.
    pub fn went_idle(&mut self) -> Command {
        self.auto = true;
        let minutes = self.after.map_or(0, |d| d.as_secs().div_ceil(60));
        Command::Status {
            status: Status::Away,
            text: Some(format!("idle for {minutes} min")),
        }
    }

    /// A line was typed: the request that sets the user back first, when they went away
    /// automatically and the line does not set a status of its own.
    pub fn typed(&mut self, line: &str, now: Instant) -> Option<Command> {
        self.last_typed = now;
        if !std::mem::take(&mut self.auto) {
            return None;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        if matches!(word, "/away" | "/back" | "/busy") {
            return None;
        }
        Some(Command::Status {
            status: Status::Online,
            text: None,
        })
    }

    /// The server confirmed a status of the user's: tally from away or busy, and on the way
    /// back the one-line summary of what arrived.
    pub fn status_set(&mut self, status: Status) -> Option<String> {
        match status {
            Status::Online => {
                self.auto = false;
                self.tally.take().map(|t| t.summary())
            }
            _ => {
                self.tally.get_or_insert_with(Tally::default);
                None
            }
        }
    }

    /// Count what was shown, while away: room messages of others (and mentions of `me` or a
    /// `highlight` word among them), and DMs to the user.
    pub fn count(&mut self, shown: &[Show], me: &str, highlight: &[String]) {
        let Some(tally) = &mut self.tally else { return };
        for show in shown {
            match show {
                Show::Message { message: m, .. } if name_key(&m.from) != name_key(me) => {
                    tally.messages += 1;
                    tally.rooms.insert(name_key(&m.room));
                    let mentioned = std::iter::once(me)
                        .chain(highlight.iter().map(String::as_str))
                        .any(|w| mentions(&m.text, w));
                    tally.mentions += u64::from(mentioned);
                }
                Show::Direct(dm) if name_key(&dm.from) != name_key(me) => tally.dms += 1,
                _ => {}
            }
        }
    }
}

impl Tally {
    /// `while you were away: 5 messages in 2 rooms, 1 mention, 2 DMs`.
    pub fn summary(&self) -> String {
        if self.messages == 0 && self.dms == 0 {
            return "while you were away: nothing arrived".into();
        }
        format!(
            "while you were away: {} in {}, {}, {}",
            count(self.messages, "message", "messages"),
            count(self.rooms.len() as u64, "room", "rooms"),
            count(self.mentions, "mention", "mentions"),
            count(self.dms, "DM", "DMs"),
        )
    }
}

/// The notice for a DM whose reply says its recipient is away or busy.
pub fn recipient_away(to: &str, text: Option<&str>) -> String {
    match text {
        Some(text) => format!("{to} is away: {text}"),
        None => format!("{to} is away"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanchat_protocol::{Direct, Message};

    fn msg(from: &str, room: &str, text: &str) -> Show {
        Show::Message {
            message: Message {
                id: "x".into(),
                ts: 0,
                room: room.into(),
                from: from.into(),
                text: text.into(),
            },
            room_shown: false,
        }
    }

    fn dm(from: &str) -> Show {
        Show::Direct(Direct {
            id: "y".into(),
            ts: 0,
            from: from.into(),
            to: "ann".into(),
            text: "psst".into(),
        })
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn idle_goes_away_and_the_next_line_comes_back() {
        let t0 = Instant::now();
        let mut away = Away::new(Some(30 * MIN), t0);
        assert_eq!(away.due(), Some(t0 + 30 * MIN));
        assert_eq!(away.typed("hi", t0 + MIN), None);
        assert_eq!(away.due(), Some(t0 + 31 * MIN));
        let going = away.went_idle();
        assert_eq!(
            going,
            Command::Status {
                status: Status::Away,
                text: Some("idle for 30 min".into())
            }
        );
        assert_eq!(away.status_set(Status::Away), None);
        assert_eq!(away.due(), None, "no second auto-away while away");
        let back = away.typed("hello", t0 + 40 * MIN);
        assert!(matches!(
            back,
            Some(Command::Status {
                status: Status::Online,
                ..
            })
        ));
        assert_eq!(
            away.status_set(Status::Online).as_deref(),
            Some("while you were away: nothing arrived")
        );
        assert_eq!(away.due(), Some(t0 + 70 * MIN));
        assert_eq!(Away::new(None, t0).due(), None);
    }

    #[test]
    fn a_status_command_typed_while_auto_away_is_not_doubled() {
        let t0 = Instant::now();
        let mut away = Away::new(Some(MIN), t0);
        away.went_idle();
        away.status_set(Status::Away);
        assert_eq!(away.typed("/back", t0 + MIN), None);
        assert!(away.status_set(Status::Online).is_some());
    }

    #[test]
    fn the_summary_counts_messages_rooms_mentions_and_dms() {
        let mut away = Away::new(None, Instant::now());
        let highlight = ["deploy".to_owned()];
        away.count(&[msg("bob", "lobby", "before")], "ann", &highlight);
        away.status_set(Status::Busy);
        away.count(
            &[
                msg("bob", "lobby", "hi"),
                msg("Bob", "Dev", "ann: look"),
                msg("cy", "dev", "the deploy"),
                msg("ann", "dev", "my own"),
                dm("bob"),
                dm("cy"),
            ],
            "ann",
            &highlight,
        );
        assert_eq!(
            away.status_set(Status::Online).as_deref(),
            Some("while you were away: 3 messages in 2 rooms, 2 mentions, 2 DMs")
        );
        assert_eq!(away.status_set(Status::Online), None, "told once");
        assert_eq!(recipient_away("bob", Some("lunch")), "bob is away: lunch");
        assert_eq!(recipient_away("bob", None), "bob is away");
    }
}
