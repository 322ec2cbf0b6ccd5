//! Where what the model shows goes: a [`Screen`] (stdout and stderr, or above the REPL prompt),
//! rendered by [`crate::render`] in the form the [`Mode`] calls for. With `--json`, stdout carries
//! the server's frames only and client notices go to stderr; in scripting mode errors go to
//! stderr.

use std::path::PathBuf;

use crate::config::Notify;
use crate::logs::Logs;
use crate::model::Show;
use crate::render::{self, Line, Look, View};

/// Where display lines go.
pub trait Screen: Send {
    /// A line of the chat (stdout, or above the prompt).
    fn out(&mut self, text: &str);
    /// A diagnostic line (stderr in scripting mode, above the prompt interactively).
    fn err(&mut self, text: &str);
}

/// Plain stdout and stderr.
#[derive(Debug, Default)]
pub struct StdScreen;

impl Screen for StdScreen {
    fn out(&mut self, text: &str) {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (a pipe whose reader left) must not crash the client.
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    fn err(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// How the client talks to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person at a terminal, through the REPL.
    Interactive,
    /// stdin is not a terminal: lines in, plain lines out.
    Script,
    /// Scripting, printing every server frame exactly as received.
    Json,
}

/// A screen and how to write on it.
pub struct Output {
    screen: Box<dyn Screen>,
    mode: Mode,
    color: bool,
    bell: bool,
    look: Look,
    logs: Option<Logs>,
    notify: Notify,
    /// Notifications go through tmux's passthrough.
    tmux: bool,
    /// The notification sequence to send with the next line.
    alert: String,
}

impl Output {
    pub fn new(screen: Box<dyn Screen>, mode: Mode, color: bool, bell: bool) -> Self {
        Output {
            screen,
            mode,
            color,
            bell,
            look: Look::default(),
            logs: None,
            notify: Notify::Off,
            tmux: false,
            alert: String::new(),
        }
    }

    /// Sending desktop notifications for mentions and DMs.
    pub fn with_notify(mut self, notify: Notify) -> Self {
        self.notify = notify;
        self.tmux = crate::notify::in_tmux();
        self
    }

    /// Keeping chat logs there, each rotated before it grows past `max` bytes.
    pub fn with_logs(mut self, dir: Option<PathBuf>, max: Option<u64>) -> Self {
        self.logs = dir.map(|dir| Logs::new(dir).rotate_at(max));
        self
    }

    /// With the config's highlight words and time format.
    pub fn with_look(mut self, look: Look) -> Self {
        self.look = look;
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Print somewhere else from now on (the REPL, once it runs).
    pub fn set_screen(&mut self, screen: Box<dyn Screen>) {
        self.screen = screen;
    }

    /// A server line as received (`--json`), its control characters escaped.
    pub fn frame(&mut self, line: &str) {
        self.screen.out(&crate::sanitize::json_line(line));
    }

    /// A client notice (it renders the same whoever the user is).
    pub fn info(&mut self, text: &str) {
        self.show(Show::Info(text.to_owned()), "");
    }

    /// Show each of `show` to the user whose nick is `me`.
    pub fn show_all(&mut self, show: Vec<Show>, me: &str) {
        for s in show {
            self.show(s, me);
        }
    }

    /// Show one thing to the user whose nick is `me`.
    pub fn show(&mut self, show: Show, me: &str) {
        if let Some(problem) = self.log(&show, me) {
            self.diagnostic(&problem);
        }
        // NO_COLOR means no colour, not no notification: the bell rings and mentions are marked
        // with text. Not in scripts, whose output is read by programs.
        let interactive = self.mode == Mode::Interactive;
        let view = View {
            me,
            color: self.color,
            bell: self.bell && interactive,
            mark: interactive && !self.color,
            show_room: self.mode != Mode::Interactive,
            now_ms: render::now_ms(),
            utc_offset: render::local_utc_offset,
            look: &self.look,
        };
        if interactive && self.notify != Notify::Off {
            self.alert = crate::notify::passthrough(alert(&show, &view, self.notify), self.tmux);
        }
        match show {
            Show::Info(text) if self.mode == Mode::Json => self.diagnostic(&text),
            Show::Info(text) => self.line(view.info(&text)),
            Show::Backlog(_) if self.mode == Mode::Json => {}
            Show::Backlog(text) => self.line(view.info(&text)),
            Show::Error(text) if self.mode == Mode::Interactive => self.line(view.error(&text)),
            Show::Error(text) => self.diagnostic(&text),
            Show::Message {
                message,
                room_shown,
            } => {
                let view = View {
                    show_room: view.show_room || room_shown,
                    ..view
                };
                self.line(view.message(&message));
            }
            Show::Direct(dm) => self.line(view.direct(&dm)),
            Show::Event(frame) => {
                if let Some(line) = view.event(&frame) {
                    self.line(line);
                }
            }
            Show::Members { room, members } => self.line(view.members(&room, &members)),
            Show::Rooms { rooms, joined } => {
                for line in view.listed(&rooms, &joined) {
                    self.line(line);
                }
            }
        }
    }

    /// A chat line; none with `--json`, whose stdout is the server's frames.
    fn line(&mut self, line: Line) {
        if self.mode == Mode::Json {
            return;
        }
        let alert = std::mem::take(&mut self.alert);
        if line.bell || !alert.is_empty() {
            let bell = if line.bell { "\x07" } else { "" };
            self.screen.out(&format!("{alert}{bell}{}", line.text));
        } else {
            self.screen.out(&line.text);
        }
    }

    /// Write a message or a DM to the logs; `Some(problem)` the first time that fails.
    fn log(&mut self, show: &Show, me: &str) -> Option<String> {
        let logs = self.logs.as_mut()?;
        match show {
            Show::Message { message, .. } => logs.message(message),
            Show::Direct(dm) => logs.direct(dm, me),
            _ => None,
        }
    }

    fn diagnostic(&mut self, text: &str) {
        self.screen.err(&format!("lanchat: {text}"));
    }
}

/// How old a message may be and still notify (milliseconds).
const FRESH_MS: u64 = 60_000;

/// The notification sequence for a mention of the user or a DM to them (else empty).
fn alert(show: &Show, view: &View, notify: Notify) -> String {
    use lanchat_protocol::validate::name_key;
    let own = |nick: &str| name_key(nick) == name_key(view.me);
    match show {
        // Not for the history shown at the start or after a reconnect: only what just arrived.
        Show::Message { message: m, .. } if m.ts + FRESH_MS < view.now_ms => String::new(),
        Show::Message { message: m, .. } if !own(&m.from) && view.mentioned(&m.text) => {
            let title = format!("{} in #{}", m.from, m.room);
            crate::notify::sequence(notify, &title, &m.text)
        }
        Show::Direct(dm) if !own(&dm.from) => crate::notify::sequence(notify, &dm.from, &dm.text),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanchat_protocol::{Direct, Message};

    const NOW: u64 = 1_704_203_110_000;

    fn said(from: &str, text: &str, ts: u64) -> Show {
        Show::Message {
            message: Message {
                id: "x".into(),
                ts,
                room: "lobby".into(),
                from: from.into(),
                text: text.into(),
            },
            room_shown: false,
        }
    }

    #[test]
    fn only_fresh_mentions_and_dms_to_the_user_notify() {
        let look = Look {
            highlight: vec!["deploy".into()],
            timestamp: None,
        };
        let view = View {
            me: "ann",
            color: false,
            bell: true,
            mark: true,
            show_room: false,
            now_ms: NOW,
            utc_offset: |_| 0,
            look: &look,
        };
        let osc = |show: Show| alert(&show, &view, Notify::Osc777);
        assert_eq!(
            osc(said("bob", "ann: hi", NOW)),
            "\x1b]777;notify;bob in #lobby;ann: hi\x07"
        );
        assert!(!osc(said("bob", "the deploy", NOW - 1000)).is_empty());
        assert_eq!(osc(said("bob", "just chatting", NOW)), "");
        assert_eq!(osc(said("ann", "ann: note to self", NOW)), "");
        assert_eq!(osc(said("bob", "ann: hi", NOW - 3_600_000)), "", "history");
        let dm = |from: &str, to: &str| {
            Show::Direct(Direct {
                id: "y".into(),
                ts: NOW,
                from: from.into(),
                to: to.into(),
                text: "psst".into(),
            })
        };
        assert_eq!(osc(dm("bob", "ann")), "\x1b]777;notify;bob;psst\x07");
        assert_eq!(osc(dm("ann", "bob")), "", "sent, not received");
    }
}
