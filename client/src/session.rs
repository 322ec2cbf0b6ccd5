//! The chat session: connects and says hello, keeps what the user has (nick, rooms, status, the
//! last message seen in each room), turns input lines into requests and server frames into
//! display lines, and reconnects after a connection loss without losing messages.
//!
//! Requests are made one at a time: while a reply is awaited, arriving events are kept in a
//! backlog (so the bounded event channel never fills up and stalls the connection task) and shown
//! after the reply. The reply to each line has thus arrived before the next line is read, which is
//! what scripting mode needs to exit only once everything sent has been answered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use lanchat_protocol::validate::name_key;
use lanchat_protocol::{
    ByeReason, Command, Direct, ErrorCode, ErrorFrame, Hello, HistoryQuery, Limits, Member,
    Message, ReplyData, ServerFrame, Status, Welcome, HISTORY_LIMIT_MAX, MAX_NAME_CHARS,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

use crate::commands::{self, Action, SwitchTarget, DEFAULT_HISTORY};
use crate::connection::{Closed, Connection, Event, Incoming, Response};
use crate::render::{self, Line, View};
use crate::repl::Shared;
use crate::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const BYE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A script (no one at the keyboard to press Ctrl-C) stops trying after this long.
const SCRIPT_GIVE_UP: Duration = Duration::from_secs(120);
/// How many shown message ids are remembered to avoid showing one twice.
const SHOWN_IDS: usize = 4096;

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

/// How the session talks to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person at a terminal, through the REPL.
    Interactive,
    /// stdin is not a terminal: lines in, plain lines out.
    Script,
    /// Scripting, printing every server frame exactly as received.
    Json,
}

/// Everything the session needs to know up front.
#[derive(Debug, Clone)]
pub struct Options {
    /// `host:port` (resolved again at each reconnect).
    pub target: String,
    pub nick: String,
    pub password: Option<String>,
    /// The room to join (and to say input lines to in scripting mode).
    pub room: Option<String>,
    pub mode: Mode,
    pub color: bool,
    pub bell: bool,
}

/// Why a request got no reply.
#[derive(Debug)]
struct Lost(Closed);

/// What to do after an input line.
enum Flow {
    Continue,
    Quit(Option<String>),
    Lost(Closed),
}

enum ConnectError {
    /// Worth another try later (refused, timed out, server full, connection dropped).
    Retry(String),
    /// Trying again cannot help (bad password, incompatible protocol, invalid nick).
    Fatal(String),
}

/// Message ids already shown, so history fetched after a reconnect does not repeat them.
#[derive(Debug, Default)]
struct ShownIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl ShownIds {
    /// Remember `id`; false when it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == SHOWN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// Client-side pacing of `say` and `dm` under the server's announced rate limit, so a script
/// piping many lines is slowed down instead of having lines rejected as `rate_limited`.
#[derive(Debug)]
struct Pacer {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl Pacer {
    fn new(limits: &Limits) -> Self {
        // A little under the server's figures: its bucket and ours do not start at the same time.
        let burst = (f64::from(limits.rate_burst) - 1.0).max(1.0);
        Pacer {
            tokens: burst,
            burst,
            per_sec: f64::from(limits.rate_per_sec) * 0.9,
            last: Instant::now(),
        }
    }

    /// How long to wait before the next message may go; takes its token.
    fn delay(&mut self) -> Duration {
        if self.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

/// The session. Built by [`Session::new`], driven by [`Session::run`].
pub struct Session {
    opts: Options,
    screen: Box<dyn Screen>,
    shared: Option<Arc<Shared>>,
    conn: Option<Connection>,
    events: mpsc::Receiver<Event>,
    /// Frames that arrived while a reply was awaited, shown next.
    backlog: VecDeque<Incoming>,
    /// Input lines typed while reconnecting, sent once connected.
    queued_input: VecDeque<String>,
    nick: String,
    /// Joined rooms, in the order they were joined (the order of /1, /2, ...).
    rooms: Vec<String>,
    current: Option<String>,
    members: HashMap<String, Vec<Member>>,
    known_rooms: Vec<String>,
    /// The newest message id seen per room (by room key), for `history after` on reconnect.
    last_seen: HashMap<String, String>,
    shown: ShownIds,
    status: Status,
    status_text: Option<String>,
    pacer: Pacer,
    server_name: String,
}

impl Session {
    pub fn new(opts: Options, screen: Box<dyn Screen>, shared: Option<Arc<Shared>>) -> Self {
        let (_, events) = mpsc::channel(1);
        Session {
            nick: opts.nick.clone(),
            opts,
            screen,
            shared,
            conn: None,
            events,
            backlog: VecDeque::new(),
            queued_input: VecDeque::new(),
            rooms: Vec::new(),
            current: None,
            members: HashMap::new(),
            known_rooms: Vec::new(),
            last_seen: HashMap::new(),
            shown: ShownIds::default(),
            status: Status::Online,
            status_text: None,
            pacer: Pacer::new(&Limits::default()),
            server_name: String::new(),
        }
    }

    /// Print somewhere else from now on (the REPL, once it runs).
    pub fn set_screen(&mut self, screen: Box<dyn Screen>, shared: Option<Arc<Shared>>) {
        self.screen = screen;
        self.shared = shared;
        self.update_shared();
    }

    /// Connect, say hello, join, show recent history. Errors here end the program.
    pub async fn start(&mut self) -> Result<(), Error> {
        let welcome = match self.connect().await {
            Ok(w) => w,
            Err(ConnectError::Retry(m)) | Err(ConnectError::Fatal(m)) => {
                return Err(Error::Fatal(format!(
                    "cannot connect to {}: {m}",
                    self.opts.target
                )))
            }
        };
        self.info(&format!(
            "connected to {} ({}) as {}",
            welcome.name, welcome.server, welcome.nick
        ));
        for line in welcome.motd.lines().filter(|l| !l.trim().is_empty()) {
            self.info(line);
        }
        self.rooms = welcome.rooms.clone();
        self.current = self.rooms.first().cloned();
        let setup = async {
            if self.opts.mode == Mode::Interactive {
                for room in self.rooms.clone() {
                    if let Ok(r) = self.request(Command::Who { room }).await {
                        self.on_reply(r).await?;
                    }
                }
            }
            for room in self.rooms.clone() {
                self.show_history(&room, DEFAULT_HISTORY).await?;
            }
            if let Some(room) = self.opts.room.clone() {
                if self.room_index(&room).is_none() {
                    let reply = self.request(Command::Join { room: room.clone() }).await?;
                    if let Some(ServerFrame::Error(e)) = &reply.frame {
                        if self.opts.mode != Mode::Interactive {
                            return Ok(Some(format!(
                                "cannot join #{room}: {}: {}",
                                e.code, e.message
                            )));
                        }
                    }
                    self.on_reply(reply).await?;
                } else {
                    self.current = self
                        .rooms
                        .iter()
                        .find(|r| name_key(r) == name_key(&room))
                        .cloned();
                }
            }
            Ok::<_, Lost>(None)
        };
        match setup.await {
            Ok(None) => {}
            Ok(Some(fatal)) => return Err(Error::Fatal(fatal)),
            Err(Lost(closed)) => {
                return Err(Error::Fatal(format!(
                    "lost the connection while starting: {closed}"
                )))
            }
        }
        self.update_shared();
        Ok(())
    }

    /// Read input until the user quits (or stdin ends in scripting mode), then say goodbye.
    pub async fn run(mut self, mut input: mpsc::Receiver<String>) -> Result<(), Error> {
        loop {
            while let Some(frame) = self.backlog.pop_front() {
                self.on_frame(frame).await;
            }
            let flow = if let Some(line) = self.queued_input.pop_front() {
                self.on_line(&line).await
            } else {
                tokio::select! {
                    line = input.recv() => match line {
                        Some(line) => {
                            let flow = self.on_line(&line).await;
                            self.ack();
                            flow
                        }
                        // stdin closed (or the REPL ended): everything sent has been answered.
                        None => Flow::Quit(None),
                    },
                    event = self.events.recv() => match event {
                        Some(Event::Frame(frame)) => {
                            self.on_frame(frame).await;
                            Flow::Continue
                        }
                        Some(Event::Closed(closed)) => Flow::Lost(closed),
                        None => Flow::Lost(Closed::default()),
                    },
                }
            };
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

    // ----- connecting -----

    async fn connect(&mut self) -> Result<Welcome, ConnectError> {
        self.conn = None;
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.opts.target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(ConnectError::Retry(e.to_string())),
            Err(_) => return Err(ConnectError::Retry("timed out".into())),
        };
        let _ = stream.set_nodelay(true);
        let (conn, events) = Connection::spawn(stream);
        self.conn = Some(conn);
        self.events = events;
        let base = self.nick.clone();
        let mut suffix = 1;
        loop {
            let nick = with_suffix(&base, suffix);
            let hello = Command::Hello(Hello {
                nick: nick.clone(),
                protocol: Some(lanchat_protocol::PROTOCOL_VERSION),
                client: Some(format!("lanchat-cli/{}", env!("CARGO_PKG_VERSION"))),
                password: self.opts.password.clone(),
            });
            let reply = match self.request(hello).await {
                Ok(r) => r,
                Err(Lost(closed)) => return Err(ConnectError::Retry(closed.to_string())),
            };
            match reply.frame {
                Some(ServerFrame::Welcome(w)) => {
                    if suffix > 1 {
                        self.info(&format!("the nick {base} is taken; you are {}", w.nick));
                    }
                    self.nick = w.nick.clone();
                    self.pacer = Pacer::new(&w.limits);
                    self.server_name = w.name.clone();
                    return Ok(w);
                }
                Some(ServerFrame::Error(e)) if e.code == ErrorCode::NickTaken && suffix < 99 => {
                    suffix += 1;
                }
                Some(ServerFrame::Error(e)) => {
                    let message = format!("{}: {}", e.code, e.message);
                    return Err(match e.code {
                        ErrorCode::ServerFull | ErrorCode::RateLimited => {
                            ConnectError::Retry(message)
                        }
                        _ => ConnectError::Fatal(message),
                    });
                }
                _ => {
                    return Err(ConnectError::Fatal(format!(
                        "unexpected reply to hello: {}",
                        reply.line
                    )))
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
        self.conn = None;
        if let Some(bye) = &closed.bye {
            match bye.reason {
                ByeReason::AuthFailed
                | ByeReason::ProtocolUnsupported
                | ByeReason::TooManyErrors
                | ByeReason::Flood
                | ByeReason::Quit => {
                    return Err(Error::Fatal(format!(
                        "disconnected: {} ({})",
                        bye.message, bye.reason
                    )))
                }
                _ => {}
            }
        }
        self.info(&format!("connection lost: {closed}; reconnecting"));
        let started = Instant::now();
        let mut delay = BACKOFF_START;
        let mut attempt = 0u32;
        loop {
            if !self.wait_watching_input(jitter(delay), input).await {
                return Ok(false);
            }
            attempt += 1;
            let failure = match self.connect().await {
                Ok(welcome) => match self.restore(welcome).await {
                    Ok(()) => return Ok(true),
                    Err(Lost(closed)) => closed.to_string(),
                },
                Err(ConnectError::Fatal(m)) => {
                    return Err(Error::Fatal(format!("cannot reconnect: {m}")))
                }
                Err(ConnectError::Retry(m)) => m,
            };
            delay = (delay * 2).min(BACKOFF_MAX);
            if self.opts.mode != Mode::Interactive && started.elapsed() > SCRIPT_GIVE_UP {
                return Err(Error::Fatal(format!(
                    "gave up reconnecting to {} after {} s: {failure}",
                    self.opts.target,
                    started.elapsed().as_secs()
                )));
            }
            if attempt == 1 || attempt % 5 == 0 {
                self.info(&format!(
                    "reconnect attempt {attempt} failed ({failure}); next try within {:.1} s",
                    delay.as_secs_f64()
                ));
            }
        }
    }

    /// Sleep for `wait`; interactively, lines typed meanwhile are queued (and /quit quits).
    async fn wait_watching_input(
        &mut self,
        wait: Duration,
        input: &mut mpsc::Receiver<String>,
    ) -> bool {
        let deadline = Instant::now() + wait;
        if self.opts.mode != Mode::Interactive {
            tokio::time::sleep_until(deadline).await;
            return true;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                line = input.recv() => {
                    let Some(line) = line else { return false };
                    self.ack();
                    match commands::parse(&line) {
                        Ok(Some(Action::Quit(_))) => return false,
                        Ok(None) => {}
                        _ => {
                            self.info("not connected; this will be sent once reconnected");
                            self.queued_input.push_back(line);
                        }
                    }
                }
            }
        }
    }

    /// After a reconnect: the same rooms, status, and every message missed meanwhile.
    async fn restore(&mut self, welcome: Welcome) -> Result<(), Lost> {
        let wanted = self.rooms.clone();
        let wanted_keys: HashSet<String> = wanted.iter().map(|r| name_key(r)).collect();
        for room in &welcome.rooms {
            if !wanted_keys.contains(&name_key(room)) {
                self.request(Command::Leave { room: room.clone() }).await?;
            }
        }
        let default_keys: HashSet<String> = welcome.rooms.iter().map(|r| name_key(r)).collect();
        for room in &wanted {
            let cmd = if default_keys.contains(&name_key(room)) {
                Command::Who { room: room.clone() }
            } else {
                Command::Join { room: room.clone() }
            };
            let reply = self.request(cmd).await?;
            match reply.frame {
                Some(ServerFrame::Reply(r)) => match r.data {
                    ReplyData::Join { members, .. } | ReplyData::Who { members, .. } => {
                        self.members.insert(name_key(room), members);
                    }
                    _ => {}
                },
                Some(ServerFrame::Error(e)) => {
                    self.error(&format!(
                        "could not rejoin #{room}: {}: {}",
                        e.code, e.message
                    ));
                    self.remove_room(room);
                }
                _ => {}
            }
        }
        if self.status != Status::Online {
            let cmd = Command::Status {
                status: self.status,
                text: self.status_text.clone(),
            };
            self.request(cmd).await?;
        }
        let mut caught_up = 0;
        for room in self.rooms.clone() {
            caught_up += self.catch_up(&room).await?;
        }
        self.info(&format!(
            "reconnected to {} as {}; caught up {caught_up} message{}",
            self.server_name,
            self.nick,
            if caught_up == 1 { "" } else { "s" }
        ));
        self.update_shared();
        Ok(())
    }

    /// Show the messages of `room` newer than the last one seen; returns how many were new.
    async fn catch_up(&mut self, room: &str) -> Result<usize, Lost> {
        let mut count = 0;
        let mut after = self.last_seen.get(&name_key(room)).cloned();
        loop {
            let query = HistoryQuery {
                room: room.to_owned(),
                before: None,
                limit: Some(if after.is_some() {
                    HISTORY_LIMIT_MAX as u32
                } else {
                    DEFAULT_HISTORY
                }),
                after: after.clone(),
            };
            let reply = self.request(Command::History(query)).await?;
            let messages = match reply.frame {
                Some(ServerFrame::Reply(r)) => match r.data {
                    ReplyData::History { messages, .. } => messages,
                    _ => return Ok(count),
                },
                Some(ServerFrame::Error(e)) if after.is_some() && e.code == ErrorCode::BadFrame => {
                    // The server no longer knows our last message (its history was reset).
                    self.info(&format!(
                        "the server lost the history of #{room}; showing its latest messages"
                    ));
                    after = None;
                    self.last_seen.remove(&name_key(room));
                    continue;
                }
                _ => return Ok(count),
            };
            let full = messages.len() >= HISTORY_LIMIT_MAX;
            for m in &messages {
                if self.show_message(m) {
                    count += 1;
                }
            }
            match (full && after.is_some(), messages.last()) {
                (true, Some(last)) => after = Some(last.id.clone()),
                _ => return Ok(count),
            }
        }
    }

    async fn quit(&mut self, reason: Option<String>) {
        let Some(conn) = self.conn.take() else { return };
        if conn.send(Command::Quit { reason }).await.is_err() {
            return;
        }
        // Wait for bye (or the close), showing what arrives meanwhile.
        let _ = timeout(BYE_TIMEOUT, async {
            while let Some(Event::Frame(frame)) = self.events.recv().await {
                // Our own goodbye needs no comment; --json still prints the frame.
                if matches!(frame.frame, Some(ServerFrame::Bye(_))) && self.opts.mode != Mode::Json
                {
                    continue;
                }
                self.on_frame(frame).await;
            }
        })
        .await;
    }

    // ----- requests -----

    /// Send one request and wait for its reply, keeping the events that arrive meanwhile.
    async fn request(&mut self, cmd: Command) -> Result<Response, Lost> {
        let Some(conn) = &self.conn else {
            return Err(Lost(Closed::default()));
        };
        let mut reply = match conn.request(cmd).await {
            Ok(rx) => rx,
            Err(_) => return Err(Lost(self.closed_reason().await)),
        };
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            tokio::select! {
                biased;
                r = &mut reply => match r {
                    Ok(r) => return Ok(r),
                    Err(_) => return Err(Lost(self.closed_reason().await)),
                },
                event = self.events.recv() => match event {
                    Some(Event::Frame(frame)) => self.backlog.push_back(frame),
                    Some(Event::Closed(closed)) => {
                        self.conn = None;
                        return Err(Lost(closed));
                    }
                    None => {
                        self.conn = None;
                        return Err(Lost(Closed::default()));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    // A server that stops answering is as good as gone.
                    self.conn = None;
                    return Err(Lost(Closed { bye: None, error: Some("the server stopped answering".into()) }));
                }
            }
        }
    }

    /// The connection task has ended: collect its last frames and why it closed.
    async fn closed_reason(&mut self) -> Closed {
        self.conn = None;
        while let Ok(Some(event)) = timeout(Duration::from_secs(1), self.events.recv()).await {
            match event {
                Event::Frame(frame) => self.backlog.push_back(frame),
                Event::Closed(closed) => return closed,
            }
        }
        Closed::default()
    }

    async fn pause(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                event = self.events.recv() => match event {
                    Some(Event::Frame(frame)) => self.backlog.push_back(frame),
                    // Let the next request find out.
                    _ => { sleep(deadline - Instant::now()).await; return; }
                },
            }
        }
    }

    // ----- input -----

    async fn on_line(&mut self, line: &str) -> Flow {
        let action = match commands::parse(line) {
            Ok(Some(action)) => action,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.error(&hint.0);
                return Flow::Continue;
            }
        };
        match &action {
            Action::Quit(reason) => return Flow::Quit(reason.clone()),
            Action::Help => {
                for line in commands::help_lines() {
                    self.info(&line);
                }
                return Flow::Continue;
            }
            Action::Switch(target) => {
                self.switch(target);
                return Flow::Continue;
            }
            _ => {}
        }
        let cmd = match commands::to_command(&action, self.current.as_deref()) {
            Ok(Some(cmd)) => cmd,
            Ok(None) => return Flow::Continue,
            Err(hint) => {
                self.error(&hint.0);
                return Flow::Continue;
            }
        };
        let paced = matches!(cmd, Command::Say { .. } | Command::Dm { .. });
        for attempt in 0..3 {
            if paced {
                let wait = self.pacer.delay();
                if !wait.is_zero() {
                    self.pause(wait).await;
                }
            }
            let reply = match self.request(cmd.clone()).await {
                Ok(r) => r,
                Err(Lost(closed)) => {
                    if paced {
                        self.error("the connection was lost before the server confirmed the last line; it may not have been sent");
                    }
                    return Flow::Lost(closed);
                }
            };
            let rate_limited = matches!(&reply.frame, Some(ServerFrame::Error(e)) if e.code == ErrorCode::RateLimited);
            if rate_limited && attempt < 2 {
                self.pause(Duration::from_secs(1)).await;
                continue;
            }
            if let Err(Lost(closed)) = self.on_reply_to(&cmd, reply).await {
                return Flow::Lost(closed);
            }
            break;
        }
        Flow::Continue
    }

    fn switch(&mut self, target: &SwitchTarget) {
        let room = match target {
            SwitchTarget::Position(n) => match n.checked_sub(1).and_then(|i| self.rooms.get(i)) {
                Some(room) => room.clone(),
                None => {
                    self.error(&format!(
                        "no room at position {n}; you are in {}",
                        self.room_list()
                    ));
                    return;
                }
            },
            SwitchTarget::Room(name) => match self.room_index(name) {
                Some(i) => self.rooms[i].clone(),
                None => {
                    self.error(&format!("you are not in #{name}; /join {name} first"));
                    return;
                }
            },
        };
        self.info(&format!("now talking in #{room}"));
        self.current = Some(room);
        self.update_shared();
    }

    /// A reply to a command the user typed (own messages are shown as sent).
    async fn on_reply_to(&mut self, cmd: &Command, reply: Response) -> Result<(), Lost> {
        match (&reply.frame, cmd) {
            (Some(ServerFrame::Reply(r)), Command::Say { text, .. }) => {
                if let ReplyData::Say { id, ts, room } = &r.data {
                    let msg = Message {
                        id: id.clone(),
                        ts: *ts,
                        room: room.clone(),
                        from: self.nick.clone(),
                        text: text.clone(),
                    };
                    self.show_message(&msg);
                }
                Ok(())
            }
            (Some(ServerFrame::Reply(r)), Command::Dm { text, .. }) => {
                if let ReplyData::Dm { id, ts, to } = &r.data {
                    let dm = Direct {
                        id: id.clone(),
                        ts: *ts,
                        from: self.nick.clone(),
                        to: to.clone(),
                        text: text.clone(),
                    };
                    // A DM to oneself also arrives as `direct`; show it once.
                    if name_key(to) != name_key(&self.nick) {
                        let line = self.view().direct(&dm);
                        self.show(line);
                    }
                }
                Ok(())
            }
            (Some(ServerFrame::Reply(r)), Command::Topic { topic: Some(_), .. }) => {
                if let ReplyData::Topic { room, topic } = &r.data {
                    match topic.as_str() {
                        "" => self.info(&format!("cleared the topic of #{room}")),
                        t => self.info(&format!("set the topic of #{room}: {t}")),
                    }
                }
                Ok(())
            }
            (Some(ServerFrame::Reply(r)), Command::Who { .. }) => {
                if let ReplyData::Who { room, members } = &r.data {
                    let line = self.view().members(room, members);
                    self.show(line);
                }
                self.on_reply(reply).await
            }
            _ => self.on_reply(reply).await,
        }
    }

    /// What every reply does to the session's state and screen.
    async fn on_reply(&mut self, reply: Response) -> Result<(), Lost> {
        let r = match reply.frame {
            Some(ServerFrame::Reply(r)) => r,
            Some(ServerFrame::Error(e)) => {
                self.error_frame(&e);
                return Ok(());
            }
            Some(_) => return Ok(()),
            None => {
                // A reply this version cannot decode: still show an error as one.
                let v: serde_json::Value = serde_json::from_str(&reply.line).unwrap_or_default();
                if v["type"] == "error" {
                    let code = v["code"].as_str().unwrap_or("error");
                    let message = v["message"].as_str().unwrap_or("");
                    self.error(&format!("{code}: {message}"));
                }
                return Ok(());
            }
        };
        match r.data {
            ReplyData::Join {
                room,
                topic,
                members,
            } => {
                if self.room_index(&room).is_none() {
                    self.rooms.push(room.clone());
                }
                self.current = Some(room.clone());
                self.remember_room(&room);
                self.info(&format!("joined #{room}"));
                if !topic.is_empty() {
                    self.info(&format!("topic of #{room}: {topic}"));
                }
                let line = self.view().members(&room, &members);
                self.show(line);
                self.members.insert(name_key(&room), members);
                self.update_shared();
                self.show_history(&room, DEFAULT_HISTORY).await?;
            }
            ReplyData::Leave { room } => {
                self.remove_room(&room);
                self.info(&format!("left #{room}"));
                if let Some(cur) = &self.current {
                    self.info(&format!("now talking in #{cur}"));
                }
                self.update_shared();
            }
            ReplyData::Nick { nick } => {
                let old = std::mem::replace(&mut self.nick, nick.clone());
                self.rename_member(&old, &nick);
                self.info(&format!("you are now known as {nick}"));
            }
            ReplyData::Status { status, text } => {
                self.status = status;
                self.status_text = text.clone();
                match (status, text) {
                    (Status::Online, _) => self.info("you are back"),
                    (s, Some(t)) => self.info(&format!("you are {}: {t}", s.as_str())),
                    (s, None) => self.info(&format!("you are {}", s.as_str())),
                }
                let me = self.nick.clone();
                self.set_presence(&me, status, self.status_text.clone());
            }
            ReplyData::Topic { room, topic } => match topic.as_str() {
                "" => self.info(&format!("#{room} has no topic")),
                t => self.info(&format!("topic of #{room}: {t}")),
            },
            ReplyData::Who { room, members } => {
                // Stored silently: shown only when the user asked (see `on_reply_to`).
                if self.room_index(&room).is_some() {
                    self.members.insert(name_key(&room), members);
                    self.update_shared();
                }
            }
            ReplyData::Rooms { rooms } => {
                for r in &rooms {
                    self.remember_room(&r.name);
                }
                for line in self.view().rooms(&rooms) {
                    self.show(line);
                }
                self.update_shared();
            }
            ReplyData::History { messages, .. } => {
                for m in &messages {
                    self.show_message_again(m);
                }
                if messages.is_empty() {
                    self.info("no messages");
                }
            }
            ReplyData::Say { .. } | ReplyData::Dm { .. } | ReplyData::Ping {} => {}
        }
        Ok(())
    }

    async fn show_history(&mut self, room: &str, limit: u32) -> Result<(), Lost> {
        let query = HistoryQuery {
            room: room.to_owned(),
            before: None,
            after: None,
            limit: Some(limit),
        };
        let reply = self.request(Command::History(query)).await?;
        if let Some(ServerFrame::Reply(r)) = reply.frame {
            if let ReplyData::History { messages, .. } = r.data {
                for m in &messages {
                    self.show_message(m);
                }
            }
        }
        Ok(())
    }

    // ----- events -----

    async fn on_frame(&mut self, incoming: Incoming) {
        if self.opts.mode == Mode::Json {
            self.screen.out(&incoming.line);
        }
        if incoming.is_reply {
            return;
        }
        let Some(frame) = incoming.frame else { return };
        match &frame {
            ServerFrame::Message(m) => {
                self.show_message(m);
                return;
            }
            ServerFrame::Join(j) => {
                if let Some(list) = self.members.get_mut(&name_key(&j.room)) {
                    if !list.iter().any(|m| name_key(&m.nick) == name_key(&j.nick)) {
                        list.push(Member {
                            nick: j.nick.clone(),
                            status: Status::Online,
                            text: None,
                        });
                    }
                }
            }
            ServerFrame::Leave(l) => {
                if let Some(list) = self.members.get_mut(&name_key(&l.room)) {
                    list.retain(|m| name_key(&m.nick) != name_key(&l.nick));
                }
            }
            ServerFrame::Quit(q) => {
                for list in self.members.values_mut() {
                    list.retain(|m| name_key(&m.nick) != name_key(&q.nick));
                }
            }
            ServerFrame::Nick(n) => self.rename_member(&n.old, &n.new),
            ServerFrame::Presence(p) => self.set_presence(&p.nick, p.status, p.text.clone()),
            ServerFrame::Error(e) => {
                self.error_frame(e);
                return;
            }
            _ => {}
        }
        self.update_shared();
        if let Some(line) = self.view().event(&frame) {
            self.show(line);
        }
    }

    /// Show a room message unless it was shown already; true when it was new.
    fn show_message(&mut self, m: &Message) -> bool {
        if !self.shown.insert(&m.id) {
            return false;
        }
        self.note_seen(m);
        let line = self.view_for(&m.room).message(m);
        self.show(line);
        true
    }

    /// Show a message even if it was shown before (`/history`).
    fn show_message_again(&mut self, m: &Message) {
        self.shown.insert(&m.id);
        self.note_seen(m);
        let line = self.view_for(&m.room).message(m);
        self.show(line);
    }

    fn note_seen(&mut self, m: &Message) {
        let key = name_key(&m.room);
        // Message ids are UUIDv7: their text order is their time order.
        let newer = self.last_seen.get(&key).is_none_or(|seen| m.id > *seen);
        if newer {
            self.last_seen.insert(key, m.id.clone());
        }
    }

    // ----- state helpers -----

    fn room_index(&self, room: &str) -> Option<usize> {
        let key = name_key(room);
        self.rooms.iter().position(|r| name_key(r) == key)
    }

    fn room_list(&self) -> String {
        if self.rooms.is_empty() {
            return "no room".into();
        }
        self.rooms
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}:#{r}", i + 1))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn remove_room(&mut self, room: &str) {
        if let Some(i) = self.room_index(room) {
            let removed = self.rooms.remove(i);
            self.members.remove(&name_key(&removed));
            if self.current.as_deref().map(name_key) == Some(name_key(&removed)) {
                self.current = self.rooms.first().cloned();
            }
        }
    }

    fn remember_room(&mut self, room: &str) {
        if !self
            .known_rooms
            .iter()
            .any(|r| name_key(r) == name_key(room))
        {
            self.known_rooms.push(room.to_owned());
        }
    }

    fn rename_member(&mut self, old: &str, new: &str) {
        for list in self.members.values_mut() {
            for m in list.iter_mut() {
                if name_key(&m.nick) == name_key(old) {
                    m.nick = new.to_owned();
                }
            }
        }
    }

    fn set_presence(&mut self, nick: &str, status: Status, text: Option<String>) {
        for list in self.members.values_mut() {
            for m in list.iter_mut() {
                if name_key(&m.nick) == name_key(nick) {
                    m.status = status;
                    m.text = text.clone();
                }
            }
        }
    }

    /// Publish the prompt and the completion words to the REPL thread.
    fn update_shared(&self) {
        let Some(shared) = &self.shared else { return };
        let prompt = match &self.current {
            Some(room) => format!("#{room}> "),
            None => "(no room)> ".to_owned(),
        };
        let nicks = self
            .current
            .as_ref()
            .and_then(|r| self.members.get(&name_key(r)))
            .map(|list| list.iter().map(|m| m.nick.clone()).collect())
            .unwrap_or_default();
        let mut rooms = self.rooms.clone();
        for r in &self.known_rooms {
            if !rooms.iter().any(|x| name_key(x) == name_key(r)) {
                rooms.push(r.clone());
            }
        }
        shared.publish(prompt, nicks, rooms);
    }

    fn ack(&self) {
        if let Some(shared) = &self.shared {
            shared.ack();
        }
    }

    // ----- output -----

    fn view(&self) -> View<'_> {
        View {
            me: &self.nick,
            color: self.opts.color,
            bell: self.opts.bell,
            show_room: self.opts.mode != Mode::Interactive || self.rooms.len() > 1,
            now_ms: render::now_ms(),
            utc_offset: render::local_utc_offset,
        }
    }

    /// The view for a message of `room`: the room is shown when it is not the obvious one.
    fn view_for(&self, room: &str) -> View<'_> {
        let mut view = self.view();
        let elsewhere = self.current.as_deref().map(name_key) != Some(name_key(room));
        view.show_room = view.show_room || elsewhere;
        view
    }

    fn show(&mut self, line: Line) {
        if self.opts.mode == Mode::Json {
            return;
        }
        if line.bell {
            self.screen.out(&format!("\x07{}", line.text));
        } else {
            self.screen.out(&line.text);
        }
    }

    /// A client notice: on the chat screen, or on stderr with `--json` (stdout is frames only).
    fn info(&mut self, text: &str) {
        match self.opts.mode {
            Mode::Json => self.screen.err(&format!("lanchat: {text}")),
            _ => {
                let line = self.view().info(text);
                self.show(line);
            }
        }
    }

    fn error(&mut self, text: &str) {
        match self.opts.mode {
            Mode::Interactive => {
                let line = self.view().error(text);
                self.show(line);
            }
            _ => self.screen.err(&format!("lanchat: {text}")),
        }
    }

    fn error_frame(&mut self, e: &ErrorFrame) {
        self.error(&format!("{}: {}", e.code, e.message));
    }
}

/// `nick`, or `nick_N` cut to fit the 32-character limit.
pub fn with_suffix(nick: &str, n: u32) -> String {
    if n <= 1 {
        return nick.to_owned();
    }
    let suffix = format!("_{n}");
    let keep = MAX_NAME_CHARS - suffix.chars().count();
    let base: String = nick.chars().take(keep).collect();
    format!("{base}{suffix}")
}

/// Equal jitter: half the delay plus a random part of the other half, so clients cut off
/// together do not come back together.
fn jitter(delay: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    delay / 2 + delay.mul_f64(0.5 * random)
}

/// A nick from a login name: disallowed characters become `_`, at most 32 characters.
pub fn sanitise_nick(login: &str) -> String {
    let nick: String = login
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if nick.is_empty() {
        "guest".into()
    } else {
        nick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_fit_the_nick_limit() {
        assert_eq!(with_suffix("ann", 1), "ann");
        assert_eq!(with_suffix("ann", 2), "ann_2");
        let long = "x".repeat(32);
        assert_eq!(with_suffix(&long, 12).chars().count(), 32);
        assert!(with_suffix(&long, 12).ends_with("_12"));
    }

    #[test]
    fn login_names_become_valid_nicks() {
        assert_eq!(sanitise_nick("ann"), "ann");
        assert_eq!(sanitise_nick("ann smith@corp"), "ann_smith_corp");
        assert_eq!(sanitise_nick(""), "guest");
        assert_eq!(sanitise_nick(&"y".repeat(40)).chars().count(), 32);
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn shown_ids_are_bounded() {
        let mut shown = ShownIds::default();
        assert!(shown.insert("a"));
        assert!(!shown.insert("a"));
        for i in 0..SHOWN_IDS {
            shown.insert(&i.to_string());
        }
        assert_eq!(shown.set.len(), SHOWN_IDS);
        assert!(shown.insert("a"));
    }

    #[tokio::test]
    async fn pacer_follows_the_announced_rate() {
        let limits = Limits {
            rate_burst: 3,
            rate_per_sec: 10,
            ..Limits::default()
        };
        let mut p = Pacer::new(&limits);
        assert!(p.delay().is_zero());
        assert!(p.delay().is_zero());
        assert!(!p.delay().is_zero());
        let unlimited = Limits {
            rate_per_sec: 0,
            ..Limits::default()
        };
        let mut p = Pacer::new(&unlimited);
        for _ in 0..100 {
            assert!(p.delay().is_zero());
        }
    }
}
