//! The session wires the parts together: input lines (from the REPL or stdin) become requests on
//! the [`Link`], replies and events go through the [`Model`], and what the model shows goes to
//! the [`Output`]. It decides nothing about the chat itself; it is the one place that awaits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{Command, ErrorCode, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::away::Away;
use crate::commands::{self, Action};
use crate::connection::{Closed, Event, Incoming, Response};
use crate::joins::Joins;
use crate::link::{self, ConnectError, Dialer, Link, Lost};
use crate::model::{self, queries, Model, Outcome, Show};
use crate::output::{Mode, Output, Screen};
use crate::repl::{Shared, Typed};
use crate::scripting::{self, Failures};
use crate::secrets::{self, Secrets};
use crate::split;
use crate::Error;

const BYE_TIMEOUT: Duration = Duration::from_secs(3);
/// A script (no one at the keyboard to press Ctrl-C) stops trying after this long.
const SCRIPT_GIVE_UP: Duration = Duration::from_secs(120);

/// Everything the session needs to know up front.
#[derive(Debug, Clone)]
pub struct Options {
    pub nick: String,
    pub password: Option<String>,
    /// The room to join (and to say input lines to in scripting mode).
    pub room: Option<String>,
    pub mode: Mode,
    pub color: bool,
    pub bell: bool,
    /// Where the secrets of registered nicks are kept (`/register`).
    pub secrets: Secrets,
    /// A person at a terminal can be asked for the password when the server refuses the hello
    /// with `auth_failed`.
    pub ask_password: bool,
    /// From the config file: rooms to join, highlight words, time format.
    pub extras: crate::config::Extras,
}

/// Times a password is asked for after `auth_failed` before giving up.
const PASSWORD_TRIES: u32 = 3;
/// What to do after an input line.
enum Flow {
    Continue,
    Quit(Option<String>),
    Lost(Closed),
}

/// The session. Built by [`Session::new`], started by [`Session::start`], driven by
/// [`Session::run`].
pub struct Session {
    model: Model,
    link: Link,
    output: Output,
    /// The REPL's prompt and completion words, when there is a REPL.
    shared: Option<Arc<Shared>>,
    /// Input lines typed while reconnecting, sent once connected.
    queued_input: VecDeque<Typed>,
    /// `--room`: joined (or made current) at the start.
    room: Option<String>,
    /// The config's `autojoin`: joined at the start.
    autojoin: Vec<String>,
    ask_password: bool,
    /// While the server gave us another nick than the one asked for.
    reclaim: Option<Reclaim>,
    /// Direct messages typed offline whose recipient was not back yet, oldest first.
    undelivered: VecDeque<UndeliveredDm>,
    /// Joins in bursts, held to be summed up.
    joins: Joins,
    /// Commands that failed: with `--json`, the exit status says so.
    failures: Failures,
    /// Automatic away, and what arrived while away.
    away: Away,
    /// The config's highlight words (for the tally while away).
    highlight: Vec<String>,
}

impl Session {
    /// A session that will reach the server through `dialer`.
    pub fn new(
        opts: Options,
        dialer: Box<dyn Dialer>,
        screen: Box<dyn Screen>,
        shared: Option<Arc<Shared>>,
    ) -> Self {
        let give_up = (opts.mode != Mode::Interactive).then_some(SCRIPT_GIVE_UP);
        let highlight = opts.extras.look.highlight.clone();
        Session {
            model: Model::new(opts.nick),
            link: Link::new(dialer, opts.password, give_up).with_secrets(opts.secrets),
            output: Output::new(screen, opts.mode, opts.color, opts.bell)
                .with_look(opts.extras.look)
                .with_logs(opts.extras.log_dir, opts.extras.log_max)
                .with_notify(opts.extras.notify),
            shared,
            queued_input: VecDeque::new(),
            room: opts.room,
            autojoin: opts.extras.autojoin,
            ask_password: opts.ask_password,
            reclaim: None,
            undelivered: VecDeque::new(),
            joins: Joins::default(),
            failures: Failures::default(),
            // Only a person goes idle: a script's status stays as it sets it.
            away: Away::new(
                opts.extras
                    .away_after
                    .filter(|_| opts.mode == Mode::Interactive),
                Instant::now(),
            ),
            highlight,
        }
    }

    /// Print somewhere else from now on (the REPL, once it runs).
    pub fn set_screen(&mut self, screen: Box<dyn Screen>, shared: Option<Arc<Shared>>) {
        self.output.set_screen(screen);
        self.shared = shared;
        self.publish();
    }

    /// Connect, say hello, join, show recent history. Errors here end the program.
    pub async fn start(&mut self) -> Result<(), Error> {
        let mut asked = 0;
        let connected = loop {
            match self.link.connect(self.model.nick()).await {
                Ok(connected) => break connected,
                Err(ConnectError::AuthFailed(why))
                    if self.ask_password && asked < PASSWORD_TRIES =>
                {
                    asked += 1;
                    self.show(Show::Error(format!("{}: {why}", self.link.target())));
                    // A new dial follows: the certificate is checked against its pin again
                    // before the password is sent.
                    self.link.password_follows();
                    let password = ask_password(&self.link.target()).await?;
                    self.link.set_password(Some(password));
                }
                Err(ConnectError::AuthFailed(why)) => {
                    return Err(Error::Fatal(format!(
                        "cannot connect to {}: {why}; give the password with --password-file PATH \
                         or the LANCHAT_PASSWORD environment variable, or type it when asked in a \
                         terminal",
                        self.link.target()
                    )))
                }
                Err(ConnectError::Untrusted(why)) => return Err(Error::Untrusted(why)),
                Err(e) => {
                    return Err(Error::Fatal(format!(
                        "cannot connect to {}: {e}",
                        self.link.target()
                    )))
                }
            }
        };
        let welcome = self
            .model
            .welcomed(&connected.welcome, connected.nick_taken);
        self.show_all(welcome);
        let started = self.model.started(&connected.welcome);
        self.show_all(started);
        match self.setup().await {
            Ok(None) => {}
            Ok(Some(fatal)) => return Err(Error::Fatal(fatal)),
            Err(Lost(closed)) => {
                return Err(Error::Fatal(format!(
                    "lost the connection while starting: {closed}"
                )))
            }
        }
        self.publish();
        self.plan_reclaim();
        Ok(())
    }

    /// The members (interactively) and recent history of the rooms the server put us in, then
    /// `--room`. `Ok(Some(why))` when a script cannot join its room.
    async fn setup(&mut self) -> Result<Option<String>, Lost> {
        let rooms = self.model.rooms().to_vec();
        if self.output.mode() == Mode::Interactive {
            for room in &rooms {
                let who = Command::Who { room: room.clone() };
                if let Ok(reply) = self.link.request(who).await {
                    self.on_reply(reply).await?;
                }
            }
            self.fetch_room_names().await?;
        }
        for room in &rooms {
            self.show_history(room).await?;
        }
        self.autojoin().await?;
        let Some(room) = self.room.clone() else {
            return Ok(None);
        };
        if self.model.is_joined(&room) {
            self.model.set_current(&room);
            return Ok(None);
        }
        let reply = self
            .link
            .request(Command::Join {
                room: room.clone(),
                key: None,
            })
            .await?;
        if let Some(ServerFrame::Error(e)) = &reply.frame {
            if self.output.mode() != Mode::Interactive {
                return Ok(Some(format!(
                    "cannot join #{room}: {}: {}",
                    e.code, e.message
                )));
            }
        }
        self.on_reply(reply).await?;
        Ok(None)
    }

    /// Join the config's `autojoin` rooms not joined yet; a refusal is shown and the rest go on.
    async fn autojoin(&mut self) -> Result<(), Lost> {
        for room in self.autojoin.clone() {
            if !self.model.is_joined(&room) && self.room.as_deref() != Some(room.as_str()) {
                let reply = self.link.request(Command::Join { room, key: None }).await?;
                self.on_reply(reply).await?;
            }
        }
        Ok(())
    }

    /// Read input until the user quits (or stdin ends in scripting mode), then say goodbye.
    pub async fn run(mut self, mut input: mpsc::Receiver<Typed>) -> Result<(), Error> {
        loop {
            while let Some(frame) = self.link.held() {
                self.on_frame(frame);
            }
            let reclaim_at = self.reclaim.map(|r| r.at);
            let dm_at = self.undelivered.iter().map(|d| d.at).min();
            let summary_due = self.joins.due();
            let away_due = self.away.due();
            let flow = if let Some(line) = self.queued_input.pop_front() {
                self.on_line(&line, true).await
            } else {
                tokio::select! {
                    _ = sleep_until(dm_at.unwrap_or_else(Instant::now)), if dm_at.is_some() => {
                        self.retry_dms().await
                    }
                    _ = sleep_until(reclaim_at.unwrap_or_else(Instant::now)), if reclaim_at.is_some() => {
                        self.reclaim_nick().await
                    }
                    _ = sleep_until(away_due.unwrap_or_else(Instant::now)), if away_due.is_some() => {
                        let idle = self.away.went_idle();
                        self.send(idle, false).await
                    }
                    _ = sleep_until(summary_due.unwrap_or_else(Instant::now)), if summary_due.is_some() => {
                        self.flush_joins(false);
                        Flow::Continue
                    }
                    line = input.recv() => match line {
                        Some(line) => {
                            let flow = self.on_line(&line, false).await;
                            self.ack();
                            flow
                        }
                        // stdin closed (or the REPL ended): everything sent has been answered.
                        None => Flow::Quit(None),
                    },
                    event = self.link.next_event() => match event {
                        Event::Frame(frame) => {
                            self.on_frame(frame);
                            Flow::Continue
                        }
                        Event::Closed(closed) => Flow::Lost(closed),
                    },
                }
            };
            if !matches!(flow, Flow::Continue) {
                self.flush_joins(true);
            }
            match flow {
                Flow::Continue => {}
                Flow::Quit(reason) => {
                    self.quit(reason).await;
                    return match self.output.mode() {
                        Mode::Json => self.failures.outcome(),
                        _ => Ok(()),
                    };
                }
                Flow::Lost(closed) => {
                    if !self.reconnect(closed, &mut input).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reconnect after a loss. `Ok(false)` when the user quit meanwhile.
    async fn reconnect(
        &mut self,
        closed: Closed,
        input: &mut mpsc::Receiver<Typed>,
    ) -> Result<bool, Error> {
        self.joins.lost(&self.model, Instant::now());
        let mut offline = Offline {
            output: &mut self.output,
            shared: self.shared.as_deref(),
            input,
            queued_input: &mut self.queued_input,
        };
        let restored = self
            .link
            .reconnect(closed, &mut self.model, &mut offline)
            .await?;
        if restored {
            self.publish();
            self.plan_reclaim();
        }
        Ok(restored)
    }

    async fn quit(&mut self, reason: Option<String>) {
        if !self.link.send_quit(reason).await {
            return;
        }
        // Wait for bye (or the close), showing what arrives meanwhile.
        let _ = timeout(BYE_TIMEOUT, async {
            while let Event::Frame(frame) = self.link.next_event().await {
                // Our own goodbye needs no comment; --json still prints the frame.
                let bye = matches!(frame.frame, Some(ServerFrame::Bye(_)));
                if bye && self.output.mode() != Mode::Json {
                    continue;
                }
                self.on_frame(frame);
            }
        })
        .await;
    }

    // ----- input -----

    /// One input line; `offline` when it was typed while disconnected.
    async fn on_line(&mut self, typed: &Typed, offline: bool) -> Flow {
        if let Some(back) = self.away.typed(&typed.line, Instant::now()) {
            if let flow @ (Flow::Quit(_) | Flow::Lost(_)) = self.send(back, offline).await {
                return flow;
            }
        }
        let action = match commands::parse(&typed.line) {
            Ok(Some(action)) => action,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.failed(Show::Error(hint.0));
                return Flow::Continue;
            }
        };
        let action = match self.in_conversation(action, typed) {
            Ok(action) => action,
            Err(flow) => return flow,
        };
        match &action {
            Action::Quit(reason) => return Flow::Quit(reason.clone()),
            Action::Help => {
                self.show_all(commands::help_lines().into_iter().map(Show::Info).collect());
                return Flow::Continue;
            }
            Action::Switch(target) => {
                let switched = self.model.switch(target);
                let hidden = self.model.focus_summary();
                self.show_all(hidden.into_iter().chain([switched]).collect());
                self.publish();
                return Flow::Continue;
            }
            Action::Focus => {
                let focus = self.model.toggle_focus();
                self.show_all(focus);
                self.publish();
                return Flow::Continue;
            }
            _ => {}
        }
        let action = match action {
            Action::Register(None) => match secrets::generate() {
                Ok(secret) => Action::Register(Some(secret)),
                Err(e) => {
                    self.show(Show::Error(format!("cannot make a secret: {e}")));
                    return Flow::Continue;
                }
            },
            other => other,
        };
        // The room the prompt named, which may no longer be the current one.
        // A conversation's prompt (`@bob>`): commands there are for the current room.
        let room = match &typed
            .room
            .as_ref()
            .filter(|r| queries::partner(r).is_none())
        {
            Some(room) if !self.model.is_joined(room) => {
                let text = typed.line.trim_end();
                self.failed(Show::Error(format!(
                    "not sent: you are no longer in #{room} (the prompt named it): {text}"
                )));
                return Flow::Continue;
            }
            Some(room) => Some(room.as_str()),
            None => self.model.current(),
        };
        let cmd = match commands::to_command(&action, room) {
            // A registered nick of ours: its kept secret goes with the request.
            Ok(Some(Command::Nick { nick, secret: None })) => Command::Nick {
                secret: self.link.secrets().get(&self.link.server(), &nick),
                nick,
            },
            Ok(Some(cmd)) => cmd,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.failed(Show::Error(hint.0));
                return Flow::Continue;
            }
        };
        if matches!(cmd, Command::Nick { .. }) {
            // The user's choice now, not the nick asked for at the start.
            self.model.forget_wanted_nick();
            self.reclaim = None;
        }
        let parts = match split::over_limit(&cmd, self.link.max_text()) {
            Some(parts) => {
                self.show(Show::Info(format!(
                    "the message is over the server's limit of {} bytes: sent as {} messages",
                    self.link.max_text(),
                    parts.len()
                )));
                parts
            }
            None => vec![cmd],
        };
        for cmd in parts {
            match self.send(cmd, offline).await {
                Flow::Continue => {}
                flow => return flow,
            }
        }
        Flow::Continue
    }

    /// Send one request the user typed (`offline`: while disconnected, so a direct message may
    /// wait for its recipient) and show what its reply does.
    async fn send(&mut self, cmd: Command, offline: bool) -> Flow {
        let reply = match self.link.submit(&cmd).await {
            Ok(reply) => reply,
            Err(Lost(closed)) => {
                if link::is_paced(&cmd) {
                    self.show(Show::Error("the connection was lost before the server confirmed the last line; it may not have been sent".into()));
                }
                return Flow::Lost(closed);
            }
        };
        if let (Command::Dm { to, .. }, Some(ServerFrame::Error(e))) = (&cmd, &reply.frame) {
            if offline && e.code == ErrorCode::NoSuchNick {
                self.show(Show::Info(format!(
                    "{to} is not back yet; trying again for two minutes: {}",
                    dm_text(&cmd)
                )));
                self.undelivered.push_back(UndeliveredDm {
                    to: to.clone(),
                    cmd,
                    at: Instant::now() + DM_RETRY_FIRST,
                    tries: 1,
                });
                return Flow::Continue;
            }
        }
        self.on_sent(&cmd, reply).await
    }

    /// Show the reply to a request the user typed (a refused direct message with its text).
    async fn on_sent(&mut self, cmd: &Command, reply: Response) -> Flow {
        let refused = match &reply.frame {
            Some(frame) => matches!(frame, ServerFrame::Error(_)),
            None => !model::undecoded_reply(&reply.line).is_empty(),
        };
        if refused {
            self.failures.note();
        }
        if let (Command::Dm { to, text }, Some(ServerFrame::Error(e))) = (cmd, &reply.frame) {
            self.show(Show::Error(format!(
                "not delivered to {to}: {}: {}; it said: {text}",
                e.code, e.message
            )));
            return Flow::Continue;
        }
        if let Some(ServerFrame::Reply(ok)) = &reply.frame {
            let server = self.link.server();
            if let Err(message) = self.link.secrets().after_reply(&server, cmd, &ok.data) {
                self.show(Show::Error(message));
            }
        }
        let ok = matches!(reply.frame, Some(ServerFrame::Reply(_)));
        let outcome = match reply.frame {
            Some(frame) => self.model.apply_reply_to(cmd, frame),
            None => model::undecoded_reply(&reply.line).into(),
        };
        let applied = self.apply(outcome).await;
        if let (Command::Status { status, .. }, true) = (cmd, ok) {
            if let Some(summary) = self.away.status_set(*status) {
                self.show(Show::Info(summary));
            }
        }
        if let Err(Lost(closed)) = applied {
            return Flow::Lost(closed);
        }
        // The rooms to complete after `/join` may have changed: a room made or emptied.
        let rooms_changed = matches!(
            cmd,
            Command::Join { .. } | Command::Leave { .. } | Command::Rooms { .. }
        );
        if ok && rooms_changed && self.output.mode() == Mode::Interactive {
            if let Err(Lost(closed)) = self.fetch_room_names().await {
                return Flow::Lost(closed);
            }
            self.publish();
        }
        Flow::Continue
    }

    // ----- replies and events -----

    async fn on_reply(&mut self, reply: Response) -> Result<(), Lost> {
        let outcome = match reply.frame {
            Some(frame) => self.model.apply_reply(frame),
            None => model::undecoded_reply(&reply.line).into(),
        };
        self.apply(outcome).await
    }

    /// Show what a reply did, then fetch the history it asks for.
    async fn apply(&mut self, outcome: Outcome) -> Result<(), Lost> {
        self.show_all(outcome.show);
        self.publish();
        match outcome.fetch_history {
            Some(room) => self.show_history(&room).await,
            None => Ok(()),
        }
    }

    /// The recent messages of `room` not shown yet.
    async fn show_history(&mut self, room: &str) -> Result<(), Lost> {
        let reply = self.link.request(model::recent_history(room)).await?;
        if let Some(frame) = reply.frame {
            let shown = self.model.history(frame);
            self.show_all(shown);
        }
        Ok(())
    }

    fn on_frame(&mut self, incoming: Incoming) {
        if self.output.mode() == Mode::Json {
            let line = scripting::history_marked(&incoming.line, incoming.frame.as_ref());
            self.output.frame(&line);
        }
        // Replies were handled by their requester; unknown frames are not shown.
        if incoming.is_reply {
            return;
        }
        let Some(frame) = incoming.frame else { return };
        // Someone appearing may be the recipient of a message waiting for them.
        let appeared = match &frame {
            ServerFrame::Join(j) => Some(j.nick.as_str()),
            ServerFrame::Nick(n) => Some(n.new.as_str()),
            _ => None,
        };
        if let Some(nick) = appeared {
            for dm in &mut self.undelivered {
                if name_key(&dm.to) == name_key(nick) {
                    dm.at = Instant::now();
                }
            }
        }
        if self.model.frees_wanted_nick(&frame) {
            if let Some(reclaim) = &mut self.reclaim {
                reclaim.at = Instant::now();
            }
        }
        let now = Instant::now();
        self.joins.note(&frame, now);
        let shown = self.model.apply_event(frame);
        let joins = &mut self.joins;
        let shown = shown
            .into_iter()
            .filter(|s| match s {
                Show::Event(ServerFrame::Join(j)) => joins.join(&j.room, &j.nick, now),
                _ => true,
            })
            .collect::<Vec<_>>();
        self.away.count(&shown, self.model.nick(), &self.highlight);
        self.show_all(shown);
        self.publish();
    }

    // ----- output -----

    /// The summaries of the bursts of joins that are over (all of them when `all`).
    fn flush_joins(&mut self, all: bool) {
        let summaries = self.joins.flush(Instant::now(), all);
        self.show_all(summaries);
    }

    fn show(&mut self, show: Show) {
        self.output.show(show, self.model.nick());
    }

    /// Show why a typed line was not done, and count it as a failed command.
    fn failed(&mut self, show: Show) {
        self.failures.note();
        self.show(show);
    }

    fn show_all(&mut self, show: Vec<Show>) {
        self.output.show_all(show, self.model.nick());
    }

    /// Publish the prompt and the completion words to the REPL thread.
    fn publish(&self) {
        if let Some(shared) = &self.shared {
            let model = &self.model;
            let room = model.conversation();
            shared.publish(
                model.prompt(),
                room,
                model.known_nicks(),
                model.room_names(),
            );
            shared.set_activity(model.activity_line(), model.position());
        }
    }

    fn ack(&self) {
        if let Some(shared) = &self.shared {
            shared.ack();
        }
    }
}

/// Ask the person at the terminal for the password of `server`, without echo.
pub async fn ask_password(server: &str) -> Result<String, Error> {
    let prompt = format!("password for {server}: ");
    tokio::task::spawn_blocking(move || crate::repl::read_password(&prompt))
        .await
        .map_err(|e| Error::Fatal(format!("cannot ask for the password: {e}")))?
        .map_err(|e| Error::Fatal(format!("cannot read the password: {e}")))
}

mod conversations;
mod offline;
mod retries;

use offline::Offline;

use retries::{dm_text, Reclaim, UndeliveredDm, DM_RETRY_FIRST};

#[cfg(test)]
mod tests;
