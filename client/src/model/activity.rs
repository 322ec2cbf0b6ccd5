//! Awareness of many rooms (irssi's activity list): what arrived in the joined rooms that are not
//! current (unread counts, a mark when a message named the user), the direct messages not
//! answered yet, and focus mode, which prints only the current room, mentions and DMs and sums
//! the rest up in one line now and then.
//!
//! Pure, like the rest of the model: the session asks for [`Model::activity_line`] after each
//! change and hands it to the REPL.

use std::collections::HashMap;

use lanchat_protocol::validate::name_key;

use super::{Model, Show};
use crate::render::mentions;
use crate::sanitize;

/// In focus mode, hidden messages are summed up once this many have been hidden.
pub const SUMMARY_EVERY: usize = 10;

/// What arrived while the user looked elsewhere.
#[derive(Debug, Default)]
pub struct Activity {
    /// Unread messages by room key.
    unread: HashMap<String, Unread>,
    /// Who sent direct messages not answered yet, with how many, in order of arrival.
    dms: Vec<(String, usize)>,
    focus: bool,
    /// Messages hidden by focus mode since the last summary, by room, in order of arrival.
    hidden: Vec<(String, usize)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Unread {
    count: usize,
    mention: bool,
}

impl Activity {
    fn arrived(&mut self, room: &str, mention: bool) {
        let unread = self.unread.entry(name_key(room)).or_default();
        unread.count += 1;
        unread.mention |= mention;
    }

    /// The room is being read: its count starts again.
    fn read(&mut self, room: &str) {
        self.unread.remove(&name_key(room));
    }

    fn direct(&mut self, from: &str) {
        match self
            .dms
            .iter_mut()
            .find(|(n, _)| name_key(n) == name_key(from))
        {
            Some((_, count)) => *count += 1,
            None => self.dms.push((from.to_owned(), 1)),
        }
    }

    fn answered(&mut self, to: &str) {
        self.dms.retain(|(n, _)| name_key(n) != name_key(to));
    }

    fn hide(&mut self, room: &str) {
        match self
            .hidden
            .iter_mut()
            .find(|(r, _)| name_key(r) == name_key(room))
        {
            Some((_, count)) => *count += 1,
            None => self.hidden.push((room.to_owned(), 1)),
        }
    }

    /// The hidden messages summed up, and forgotten: when `due` only once there are
    /// [`SUMMARY_EVERY`] of them.
    fn summary(&mut self, due: bool) -> Option<String> {
        let total: usize = self.hidden.iter().map(|(_, n)| n).sum();
        if total == 0 || (due && total < SUMMARY_EVERY) {
            return None;
        }
        let rooms: Vec<String> = self
            .hidden
            .drain(..)
            .map(|(room, n)| format!("#{} {n}", sanitize::name(&room)))
            .collect();
        let what = if total == 1 { "message" } else { "messages" };
        Some(format!(
            "focus: {total} {what} not shown ({}); /focus shows everything",
            rooms.join(", ")
        ))
    }
}

impl Model {
    /// The activity line: `[1:lobby 2:dev(3) 3:ops(!) @bob(!)]`, a count after each room that
    /// is not current and has unread messages, `!` when one of them named the user, `@nick` for
    /// unanswered direct messages, `focus` first in focus mode. `None` while there is only one
    /// room and nothing else to say.
    pub fn activity_line(&self) -> Option<String> {
        let a = &self.activity;
        if self.rooms.len() < 2 && a.dms.is_empty() && !a.focus {
            return None;
        }
        let current = self.current.as_deref().map(name_key);
        let mut parts = Vec::new();
        if a.focus {
            parts.push("focus".to_owned());
        }
        for (i, room) in self.rooms.iter().enumerate() {
            let key = name_key(room);
            let unread = match a.unread.get(&key) {
                Some(u) if current.as_ref() != Some(&key) => *u,
                _ => Unread::default(),
            };
            let mark = match (unread.count, unread.mention) {
                (0, _) => String::new(),
                (_, true) if unread.count == 1 => "(!)".to_owned(),
                (n, true) => format!("({n}!)"),
                (n, false) => format!("({n})"),
            };
            parts.push(format!("{}:{}{mark}", i + 1, sanitize::name(room)));
        }
        for (nick, n) in &a.dms {
            let mark = if *n == 1 {
                "!".to_owned()
            } else {
                format!("{n}!")
            };
            parts.push(format!("@{}({mark})", sanitize::name(nick)));
        }
        Some(format!("[{}]", parts.join(" ")))
    }

    /// The 1-based position of the current room and how many rooms are joined (for the keys
    /// that go to the next and the previous room).
    pub fn position(&self) -> (usize, usize) {
        let at = self.current.as_deref().and_then(|r| self.room_index(r));
        (at.map_or(0, |i| i + 1), self.rooms.len())
    }

    pub fn focus(&self) -> bool {
        self.activity.focus
    }

    /// `/focus`: turn focus mode on or off; off, what was hidden is summed up.
    pub fn toggle_focus(&mut self) -> Vec<Show> {
        self.activity.focus = !self.activity.focus;
        if self.activity.focus {
            return vec![Show::Info(
                "focus: only this room, mentions and direct messages are shown; /focus again \
                 shows everything"
                    .into(),
            )];
        }
        let mut show: Vec<Show> = self
            .activity
            .summary(false)
            .map(Show::Info)
            .into_iter()
            .collect();
        show.push(Show::Info("focus off: every room is shown".into()));
        show
    }

    /// In focus mode, the summary of what was hidden (on switching rooms).
    pub fn focus_summary(&mut self) -> Option<Show> {
        self.activity.summary(false).map(Show::Info)
    }

    /// A new message about to be shown: counted when it is not in the current room, hidden in
    /// focus mode unless it names the user.
    pub(super) fn noticed(&mut self, show: Show) -> Vec<Show> {
        let Show::Message { message, .. } = &show else {
            return vec![show];
        };
        let own = name_key(&message.from) == name_key(&self.nick);
        let here = self.current.as_deref().map(name_key) == Some(name_key(&message.room));
        if own || here || !self.is_joined(&message.room) {
            return vec![show];
        }
        let mention = mentions(&message.text, &self.nick);
        self.activity.arrived(&message.room, mention);
        if !self.activity.focus || mention {
            return vec![show];
        }
        self.activity.hide(&message.room);
        self.activity
            .summary(true)
            .map(Show::Info)
            .into_iter()
            .collect()
    }

    /// A direct message received (`from` someone else) or sent (`to`, which answers it).
    pub(super) fn noticed_direct(&mut self, from: &str, to: &str) {
        if name_key(from) == name_key(&self.nick) {
            self.activity.answered(to);
        } else {
            self.activity.direct(from);
        }
    }

    /// The current room changed (or is left): it is read, and a room left is forgotten.
    pub(super) fn read_current(&mut self, left: Option<&str>) {
        if let Some(room) = left {
            self.activity.read(room);
        }
        if let Some(room) = self.current.clone() {
            self.activity.read(&room);
        }
    }
}

#[cfg(test)]
mod tests {
    use lanchat_protocol::{Direct, Message, ServerFrame};

    use super::*;
    use crate::commands::SwitchTarget;

    fn model(rooms: &[&str]) -> Model {
        let mut m = Model::new("ann");
        m.rooms = rooms.iter().map(|r| r.to_string()).collect();
        m.current = m.rooms.first().cloned();
        m
    }

    fn say(m: &mut Model, id: &str, room: &str, from: &str, text: &str) -> Vec<Show> {
        m.apply_event(ServerFrame::Message(Message {
            id: id.into(),
            ts: 0,
            room: room.into(),
            from: from.into(),
            text: text.into(),
        }))
    }

    fn dm(m: &mut Model, from: &str, to: &str) {
        m.apply_event(ServerFrame::Direct(Direct {
            id: "d".into(),
            ts: 0,
            from: from.into(),
            to: to.into(),
            text: "psst".into(),
        }));
    }

    #[test]
    fn one_room_needs_no_line() {
        assert_eq!(model(&["lobby"]).activity_line(), None);
        assert_eq!(
            model(&["lobby", "dev"]).activity_line().as_deref(),
            Some("[1:lobby 2:dev]")
        );
    }

    #[test]
    fn messages_elsewhere_are_counted_and_a_switch_reads_them() {
        let mut m = model(&["lobby", "dev", "ops"]);
        say(&mut m, "1", "dev", "bob", "one");
        say(&mut m, "2", "dev", "bob", "two");
        say(&mut m, "3", "lobby", "bob", "here, so read");
        say(&mut m, "4", "ops", "bob", "hey ANN, look");
        assert_eq!(
            m.activity_line().as_deref(),
            Some("[1:lobby 2:dev(2) 3:ops(!)]")
        );
        say(&mut m, "5", "ops", "bob", "again");
        assert_eq!(
            m.activity_line().as_deref(),
            Some("[1:lobby 2:dev(2) 3:ops(2!)]")
        );
        m.switch(&SwitchTarget::Position(2));
        assert_eq!(
            m.activity_line().as_deref(),
            Some("[1:lobby 2:dev 3:ops(2!)]")
        );
        m.switch(&SwitchTarget::Room("ops".into()));
        m.switch(&SwitchTarget::Position(1));
        assert_eq!(m.activity_line().as_deref(), Some("[1:lobby 2:dev 3:ops]"));
        assert_eq!(m.position(), (1, 3));
    }

    #[test]
    fn a_mention_is_a_word_and_own_or_repeated_messages_do_not_count() {
        let mut m = model(&["lobby", "dev"]);
        say(&mut m, "1", "dev", "bob", "annie is not ann_");
        say(
            &mut m,
            "1",
            "dev",
            "bob",
            "shown twice (a catch-up): counted once",
        );
        say(&mut m, "2", "dev", "ann", "ann: my own line");
        assert_eq!(m.activity_line().as_deref(), Some("[1:lobby 2:dev(1)]"));
    }

    #[test]
    fn a_direct_message_is_marked_until_answered() {
        let mut m = model(&["lobby"]);
        dm(&mut m, "bob", "ann");
        dm(&mut m, "Bob", "ann");
        assert_eq!(m.activity_line().as_deref(), Some("[1:lobby @bob(2!)]"));
        dm(&mut m, "ann", "BOB");
        assert_eq!(m.activity_line(), None);
    }

    #[test]
    fn focus_hides_other_rooms_but_not_mentions_and_sums_them_up() {
        let mut m = model(&["lobby", "dev"]);
        m.toggle_focus();
        assert!(say(&mut m, "1", "dev", "bob", "chatter").is_empty());
        assert_eq!(say(&mut m, "2", "dev", "bob", "ann?").len(), 1);
        assert_eq!(say(&mut m, "3", "lobby", "bob", "here").len(), 1);
        assert_eq!(
            m.activity_line().as_deref(),
            Some("[focus 1:lobby 2:dev(2!)]")
        );
        assert_eq!(
            m.focus_summary(),
            Some(Show::Info(
                "focus: 1 message not shown (#dev 1); /focus shows everything".into()
            ))
        );
        assert_eq!(m.focus_summary(), None);
        let mut summaries = Vec::new();
        for i in 0..SUMMARY_EVERY {
            summaries.extend(say(&mut m, &format!("x{i}"), "dev", "bob", "more"));
        }
        assert_eq!(
            summaries,
            vec![Show::Info(format!(
                "focus: {SUMMARY_EVERY} messages not shown (#dev {SUMMARY_EVERY}); /focus shows everything"
            ))]
        );
        let off = m.toggle_focus();
        assert_eq!(
            off,
            vec![Show::Info("focus off: every room is shown".into())]
        );
        assert_eq!(say(&mut m, "y", "dev", "bob", "shown again").len(), 1);
    }
}
