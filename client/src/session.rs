//! The session wires the parts together: input lines (from the REPL or stdin) become requests on
//! the [`Link`], replies and events go through the [`Model`], and what the model shows goes to
//! the [`Output`]. It decides nothing about the chat itself; it is the one place that awaits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use lanchat_protocol::{Command, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::commands::{self, Action};
use crate::connection::{Closed, Event, Incoming, Response};
use crate::joins::Joins;
use crate::link::{self, ConnectError, Dialer, Link, Lost, Reconnecting};
use crate::model::{self, Model, Outcome, Show};
use crate::output::{Mode, Output, Screen};
use crate::repl::Shared;
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
}

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
    queued_input: VecDeque<String>,
    /// `--room`: joined (or made current) at the start.
    room: Option<String>,
    /// Joins in bursts, held to be summed up.
    joins: Joins,
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
        Session {
            model: Model::new(opts.nick),
            link: Link::new(dialer, opts.password, give_up),
            output: Output::new(screen, opts.mode, opts.color, opts.bell),
            shared,
            queued_input: VecDeque::new(),
            room: opts.room,
            joins: Joins::default(),
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
        let connected = self
            .link
            .connect(self.model.nick())
            .await
            .map_err(|e| match e {
                ConnectError::Untrusted(why) => Error::Untrusted(why),
                e => Error::Fatal(format!("cannot connect to {}: {e}", self.link.target())),
            })?;
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
        }
        for room in &rooms {
            self.show_history(room).await?;
        }
        let Some(room) = self.room.clone() else {
            return Ok(None);
        };
        if self.model.is_joined(&room) {
            self.model.set_current(&room);
            return Ok(None);
        }
        let reply = self
            .link
            .request(Command::Join { room: room.clone() })
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

    /// Read input until the user quits (or stdin ends in scripting mode), then say goodbye.
    pub async fn run(mut self, mut input: mpsc::Receiver<String>) -> Result<(), Error> {
        loop {
            while let Some(frame) = self.link.held() {
                self.on_frame(frame);
            }
            let summary_due = self.joins.due();
            let flow = if let Some(line) = self.queued_input.pop_front() {
                self.on_line(&line).await
            } else {
                tokio::select! {
                    _ = sleep_until(summary_due.unwrap_or_else(Instant::now)), if summary_due.is_some() => {
                        self.flush_joins(false);
                        Flow::Continue
                    }
                    line = input.recv() => match line {
                        Some(line) => {
                            let flow = self.on_line(&line).await;
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
                    return Ok(());
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
        input: &mut mpsc::Receiver<String>,
    ) -> Result<bool, Error> {
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

    async fn on_line(&mut self, line: &str) -> Flow {
        let action = match commands::parse(line) {
            Ok(Some(action)) => action,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.show(Show::Error(hint.0));
                return Flow::Continue;
            }
        };
        match &action {
            Action::Quit(reason) => return Flow::Quit(reason.clone()),
            Action::Help => {
                self.show_all(commands::help_lines().into_iter().map(Show::Info).collect());
                return Flow::Continue;
            }
            Action::Switch(target) => {
                let switched = self.model.switch(target);
                self.show(switched);
                self.publish();
                return Flow::Continue;
            }
            _ => {}
        }
        let cmd = match commands::to_command(&action, self.model.current()) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.show(Show::Error(hint.0));
                return Flow::Continue;
            }
        };
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
            match self.send(cmd).await {
                Flow::Continue => {}
                flow => return flow,
            }
        }
        Flow::Continue
    }

    /// Send one request the user typed and show what its reply does.
    async fn send(&mut self, cmd: Command) -> Flow {
        let reply = match self.link.submit(&cmd).await {
            Ok(reply) => reply,
            Err(Lost(closed)) => {
                if link::is_paced(&cmd) {
                    self.show(Show::Error("the connection was lost before the server confirmed the last line; it may not have been sent".into()));
                }
                return Flow::Lost(closed);
            }
        };
        let outcome = match reply.frame {
            Some(frame) => self.model.apply_reply_to(&cmd, frame),
            None => model::undecoded_reply(&reply.line).into(),
        };
        match self.apply(outcome).await {
            Ok(()) => Flow::Continue,
            Err(Lost(closed)) => Flow::Lost(closed),
        }
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
            self.output.frame(&incoming.line);
        }
        // Replies were handled by their requester; unknown frames are not shown.
        if incoming.is_reply {
            return;
        }
        let Some(frame) = incoming.frame else { return };
        let shown = self.model.apply_event(frame);
        let (joins, now) = (&mut self.joins, Instant::now());
        let shown = shown
            .into_iter()
            .filter(|s| match s {
                Show::Event(ServerFrame::Join(j)) => joins.join(&j.room, &j.nick, now),
                _ => true,
            })
            .collect();
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

    fn show_all(&mut self, show: Vec<Show>) {
        self.output.show_all(show, self.model.nick());
    }

    /// Publish the prompt and the completion words to the REPL thread.
    fn publish(&self) {
        if let Some(shared) = &self.shared {
            let model = &self.model;
            shared.publish(model.prompt(), model.nicks_here(), model.room_names());
        }
    }

    fn ack(&self) {
        if let Some(shared) = &self.shared {
            shared.ack();
        }
    }
}

/// The session while the link reconnects: waits watching the input, and shows what the link
/// reports.
struct Offline<'a> {
    output: &'a mut Output,
    shared: Option<&'a Shared>,
    input: &'a mut mpsc::Receiver<String>,
    queued_input: &'a mut VecDeque<String>,
}

impl Reconnecting for Offline<'_> {
    /// Interactively, lines typed meanwhile are queued (and /quit quits); a script just waits.
    async fn wait(&mut self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        if self.output.mode() != Mode::Interactive {
            sleep_until(deadline).await;
            return true;
        }
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return true,
                line = self.input.recv() => {
                    let Some(line) = line else { return false };
                    if let Some(shared) = self.shared {
                        shared.ack();
                    }
                    match commands::parse(&line) {
                        Ok(Some(Action::Quit(_))) => return false,
                        Ok(None) => {}
                        _ => {
                            self.output.info("not connected; this will be sent once reconnected");
                            self.queued_input.push_back(line);
                        }
                    }
                }
            }
        }
    }

    fn show(&mut self, show: Vec<Show>, me: &str) {
        self.output.show_all(show, me);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::{json, Value};

    use super::*;
    use crate::testing::{fake_dialer, FakeServer, Servers, T};

    /// Keeps what is shown, without time stamps, and reports each line as it comes.
    #[derive(Clone)]
    struct Captured {
        lines: Arc<Mutex<Vec<String>>>,
        each: mpsc::UnboundedSender<String>,
    }

    impl Captured {
        fn new() -> (Captured, mpsc::UnboundedReceiver<String>) {
            let (each, rx) = mpsc::unbounded_channel();
            let lines = Arc::default();
            (Captured { lines, each }, rx)
        }

        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }

        fn keep(&self, line: String) {
            let _ = self.each.send(line.clone());
            self.lines.lock().unwrap().push(line);
        }
    }

    impl Screen for Captured {
        fn out(&mut self, text: &str) {
            // Messages of other days (these tests' are from 1970) carry a date too.
            let b = text.as_bytes();
            let dated = b.len() > 11 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ';
            let text = if dated { &text[11..] } else { text };
            let b = text.as_bytes();
            let stamped = b.len() > 6 && b[2] == b':' && b[5] == b' ';
            self.keep(if stamped { &text[6..] } else { text }.to_owned());
        }

        fn err(&mut self, text: &str) {
            self.keep(format!("stderr: {text}"));
        }
    }

    fn options(mode: Mode, room: Option<&str>) -> Options {
        Options {
            nick: "ann".into(),
            password: None,
            room: room.map(str::to_owned),
            mode,
            color: false,
            bell: false,
        }
    }

    /// Plays the server for each connection in turn, answering as a server would, until the
    /// client quits (the answer is `bye`) or, on the first connection, `drop_after` requests
    /// were answered; returns the type (and room) of each request.
    async fn serve(mut servers: Servers, mut drop_after: Option<usize>) -> Vec<String> {
        let mut asked = Vec::new();
        let mut first = true;
        while let Some(stream) = servers.recv().await {
            let drop_here = drop_after.take();
            let mut server = FakeServer::new(stream);
            server.welcome(&["lobby"], 10, 5).await;
            let mut answered = 0;
            while let Some(request) = server.next().await {
                let room = request["room"].as_str().unwrap_or("").to_owned();
                let kind = request["type"].as_str().unwrap_or("").to_owned();
                asked.push(format!("{kind} {room}").trim_end().to_owned());
                let members = json!([{"nick": "ann", "status": "online"}]);
                let history = |messages: Value| json!({"type": "ok", "cmd": "history", "room": room, "messages": messages});
                let reply = match kind.as_str() {
                    "history" if room == "lobby" && first => history(json!([{"id": "01", "ts": 1,
                        "room": "lobby", "from": "bob", "text": "earlier"}])),
                    "history" => history(json!([])),
                    "who" => json!({"type": "ok", "cmd": "who", "room": room, "members": members}),
                    "join" => json!({"type": "ok", "cmd": "join", "room": room, "topic": "",
                        "members": members}),
                    "say" => json!({"type": "ok", "cmd": "say", "id": "02", "ts": 2,
                        "room": room}),
                    "quit" => {
                        let bye = json!({"type": "bye", "reason": "quit", "message": "bye"});
                        server.send(&bye.to_string()).await;
                        return asked;
                    }
                    other => panic!("unexpected {other}"),
                };
                server.answer(&request, reply).await;
                answered += 1;
                if drop_here == Some(answered) {
                    break;
                }
            }
            first = false;
        }
        asked
    }

    async fn wait_for(shown: &mut mpsc::UnboundedReceiver<String>, what: &str) {
        while let Some(line) = timeout(T, shown.recv()).await.unwrap() {
            if line.contains(what) {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_script_joins_its_room_says_its_lines_and_says_goodbye() {
        let (dialer, servers, _) = fake_dialer(0);
        let server = tokio::spawn(serve(servers, None));
        let (screen, _) = Captured::new();
        let opts = options(Mode::Script, Some("dev"));
        let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
        timeout(T, session.start()).await.unwrap().unwrap();
        let (typed, input) = mpsc::channel(4);
        typed.send("hello".into()).await.unwrap();
        drop(typed);
        timeout(T, session.run(input)).await.unwrap().unwrap();
        assert_eq!(
            screen.lines(),
            [
                "-- connected to office (fake/1) as ann",
                "-- earlier in #lobby (1 message):",
                "#lobby <bob> earlier",
                "-- end of earlier messages in #lobby",
                "-- joined #dev",
                "-- #dev: 1 here: ann",
                "#dev <ann> hello",
            ]
        );
        let asked = timeout(T, server).await.unwrap().unwrap();
        assert_eq!(
            asked,
            [
                "history lobby",
                "join dev",
                "history dev",
                "say dev",
                "quit"
            ]
        );
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_sent_as_several_and_the_user_told() {
        let (dialer, servers, _) = fake_dialer(0);
        let server = tokio::spawn(serve(servers, None));
        let (screen, _) = Captured::new();
        let opts = options(Mode::Script, Some("dev"));
        let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
        timeout(T, session.start()).await.unwrap().unwrap();
        let (typed, input) = mpsc::channel(4);
        // 5,000 bytes; the fake server's max_text is 4,096.
        typed.send("word ".repeat(1000)).await.unwrap();
        drop(typed);
        timeout(T, session.run(input)).await.unwrap().unwrap();
        let lines = screen.lines();
        assert!(
            lines.contains(
                &"-- the message is over the server's limit of 4096 bytes: sent as 2 messages"
                    .to_owned()
            ),
            "{lines:?}"
        );
        let asked = timeout(T, server).await.unwrap().unwrap();
        assert_eq!(asked.iter().filter(|a| *a == "say dev").count(), 2);
    }

    #[tokio::test]
    async fn json_mode_prints_every_frame_through_the_goodbye() {
        let (dialer, servers, _) = fake_dialer(0);
        let server = tokio::spawn(serve(servers, None));
        let (screen, _) = Captured::new();
        let mut session = Session::new(
            options(Mode::Json, None),
            dialer,
            Box::new(screen.clone()),
            None,
        );
        timeout(T, session.start()).await.unwrap().unwrap();
        let (_, input) = mpsc::channel(1);
        timeout(T, session.run(input)).await.unwrap().unwrap();
        let lines = screen.lines();
        assert_eq!(
            lines[0],
            "stderr: lanchat: connected to office (fake/1) as ann"
        );
        let frames: Vec<Value> = lines[1..]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["welcome", "ok", "bye"]);
        timeout(T, server).await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn lines_typed_while_reconnecting_are_sent_once_reconnected() {
        let (dialer, servers, _) = fake_dialer(0);
        // The first connection drops after the who and history of the start.
        let server = tokio::spawn(serve(servers, Some(2)));
        let (screen, mut shown) = Captured::new();
        let opts = options(Mode::Interactive, None);
        let mut session = Session::new(opts, dialer, Box::new(screen.clone()), None);
        timeout(T, session.start()).await.unwrap().unwrap();
        let (typed, input) = mpsc::channel(4);
        let user = async move {
            wait_for(&mut shown, "reconnecting").await;
            typed.send("hi".into()).await.unwrap();
            wait_for(&mut shown, "<ann> hi").await;
        };
        let (ended, ()) = tokio::join!(timeout(T, session.run(input)), user);
        ended.unwrap().unwrap();
        assert_eq!(
            screen.lines(),
            [
                "-- connected to office (fake/1) as ann",
                "-- earlier in #lobby (1 message):",
                "<bob> earlier",
                "-- end of earlier messages in #lobby",
                "-- connection lost: the server closed the connection; reconnecting",
                "-- not connected; this will be sent once reconnected",
                "-- reconnected to office as ann; caught up 0 messages",
                "<ann> hi",
            ]
        );
        let asked = timeout(T, server).await.unwrap().unwrap();
        assert_eq!(
            asked,
            [
                "who lobby",
                "history lobby",
                "who lobby",
                "history lobby",
                "say lobby",
                "quit"
            ]
        );
    }
}
