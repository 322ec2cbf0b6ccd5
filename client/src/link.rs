//! The link to the server: dialing through a [`Dialer`] (TCP, or TLS around it in `tls.rs`;
//! WebSocket would plug in there too), hello (taking `nick_2`, `nick_3`, ... while the nick is taken), requests, pacing under
//! the server's rate limit, and after a loss, reconnecting with back-off and restoring the rooms,
//! the status and the messages missed. The [`Connection`] task owns the socket; the link holds
//! its handle and its event channel.
//!
//! Requests are made one at a time: while a reply is awaited, arriving events are held (so the
//! bounded event channel never fills up and stalls the connection task) and handed out after the
//! reply. The reply to each line has thus arrived before the next line is read, which is what
//! scripting mode needs to exit only once everything sent has been answered. What is held is
//! bounded (`link/held.rs`): past the bound the link drops the connection and says why.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use lanchat_protocol::bucket::TokenBucket;
use lanchat_protocol::{
    ByeReason, Command, ErrorCode, Hello, Limits, ServerFrame, Welcome, MAX_NAME_CHARS,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::connection::{Closed, Connection, Event, Incoming, Response};
use crate::model::{self, Backlog, Model, Show};
use crate::secrets::Secrets;
use crate::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long to wait before sending again a request the server refused as `rate_limited`, when it
/// gave no `retry_after_ms`; and the longest wait such a hint can ask for.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);
const RATE_LIMITED_WAIT_MAX: Duration = Duration::from_secs(10);
/// How many times in all a typed request is sent while the server answers `rate_limited`.
const RATE_LIMITED_TRIES: u32 = 3;

/// How long to wait before sending a `rate_limited` request again: the server's hint when it
/// gives one, bounded (a hint is not a promise), else a second.
fn retry_wait(retry_after_ms: Option<u64>) -> Duration {
    retry_after_ms.map_or(RATE_LIMITED_WAIT, |ms| {
        Duration::from_millis(ms).min(RATE_LIMITED_WAIT_MAX)
    })
}

/// A byte stream to a server.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T> Stream for T where T: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

/// How the link reaches the server: called for the first connection and for every reconnect.
/// Its `Display` names the server in messages ("cannot connect to ...").
pub trait Dialer: fmt::Display + Send {
    fn dial(&mut self) -> BoxFuture<'_, io::Result<Box<dyn Stream>>>;

    /// What the user knows the server by (its name when found by discovery, else the
    /// `HOST:PORT` typed): the key of its pin and of the secrets of its registered nicks, which
    /// must not change when its address does.
    fn server(&self) -> String {
        self.to_string()
    }

    /// A password will be sent from now on (typed after `auth_failed`): a dialer that may
    /// connect in plain text warns.
    fn password_follows(&mut self) {}

    /// Dial the next of the addresses given (the nodes of one cluster), in turn; false when there
    /// is only one.
    fn next_node(&mut self) -> bool {
        false
    }
}

/// A plain TCP connection to `host:port`, resolved again at each dial. Several addresses
/// (`host:port,host:port`: the nodes of one cluster) are dialled one at a time, the first until
/// [`Dialer::next_node`] moves on.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    targets: Vec<String>,
    current: usize,
}

impl TcpDialer {
    pub fn new(target: impl Into<String>) -> Self {
        let target: String = target.into();
        TcpDialer {
            // A host name has no comma, so a comma can only separate addresses.
            targets: target.split(',').map(str::to_owned).collect(),
            current: 0,
        }
    }

    fn target(&self) -> &str {
        &self.targets[self.current]
    }
}

impl fmt::Display for TcpDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.target())
    }
}

impl Dialer for TcpDialer {
    fn dial(&mut self) -> BoxFuture<'_, io::Result<Box<dyn Stream>>> {
        Box::pin(async move {
            let stream = TcpStream::connect(self.target()).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }

    fn next_node(&mut self) -> bool {
        self.current = (self.current + 1) % self.targets.len();
        self.targets.len() > 1
    }
}

/// A dial refused because the server is not the one trusted (its certificate does not match the
/// pin: see `tls.rs`). Carried inside the `io::Error` a dial returns, so that the link tells it
/// from a failure worth retrying: it never retries this one.
#[derive(Debug)]
pub struct Untrusted(pub String);

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Untrusted {}

impl Untrusted {
    /// The refusal inside a dial's error, if that is what it is.
    pub fn find(e: &io::Error) -> Option<&Untrusted> {
        e.get_ref()?.downcast_ref::<Untrusted>()
    }
}

/// Why a request got no reply: the connection is gone.
#[derive(Debug)]
pub struct Lost(pub Closed);

/// Why connecting failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Worth another try later (refused, timed out, server full, connection dropped).
    Retry(String),
    /// Trying again cannot help (incompatible protocol, invalid nick).
    Fatal(String),
    /// The server wants a password, or another one: only a new password can help.
    AuthFailed(String),
    /// The server's certificate is not the pinned one: nothing was sent, and nothing will be.
    Untrusted(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Retry(m)
            | ConnectError::Fatal(m)
            | ConnectError::AuthFailed(m)
            | ConnectError::Untrusted(m) => f.write_str(m),
        }
    }
}

/// A connection that said hello and was welcomed.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    pub welcome: Welcome,
    /// The nick asked for was taken; the welcome's has a suffix.
    pub nick_taken: bool,
}

/// The user's side of a reconnect: the pauses between attempts (the user may type, or quit,
/// meanwhile) and the lines to show.
pub trait Reconnecting {
    /// Wait `pause` before the next attempt; false when the user quit meanwhile.
    fn wait(&mut self, pause: Duration) -> impl Future<Output = bool>;
    /// Show these lines to the user whose nick is `me`.
    fn show(&mut self, show: Vec<Show>, me: &str);
}

/// The waits between reconnect attempts: from half a second, doubling after each failure up to
/// ten seconds, each with equal jitter.
#[derive(Debug)]
pub struct Backoff {
    delay: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay: BACKOFF_START,
            failures: 0,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt.
    pub fn wait(&self) -> Duration {
        jitter(self.delay)
    }

    /// An attempt failed: the delay doubles. Returns how many have failed.
    pub fn failed(&mut self) -> u32 {
        self.failures += 1;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        self.failures
    }

    /// The longest the next wait can be.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// The link. Built unconnected by [`Link::new`]; [`Link::connect`] dials.
pub struct Link {
    dialer: Box<dyn Dialer>,
    password: Option<String>,
    /// Stop reconnecting after this long (a script has no one to press Ctrl-C); `None`: never.
    give_up: Option<Duration>,
    conn: Option<Connection>,
    events: mpsc::Receiver<Event>,
    /// Frames that arrived while a reply was awaited, to be handled next (bounded).
    held: Held,
    /// Why the link dropped the connection itself (too much held), for the next request.
    dropped: Option<Closed>,
    pacer: TokenBucket,
    /// The secrets of registered nicks, sent in `hello` (see [`crate::secrets`]).
    secrets: Secrets,
    /// The longest message text the server takes, in bytes (from its `welcome`).
    max_text: usize,
    /// The cluster the server is a node of (`welcome.cluster`): after a loss, the link may fail
    /// over to another of the addresses given, which are then nodes of the same chat.
    cluster: Option<String>,
}

impl Link {
    pub fn new(
        dialer: Box<dyn Dialer>,
        password: Option<String>,
        give_up: Option<Duration>,
    ) -> Self {
        let (_, events) = mpsc::channel(1);
        Link {
            dialer,
            password,
            give_up,
            conn: None,
            events,
            held: Held::default(),
            dropped: None,
            pacer: pacer(&Limits::default()),
            secrets: Secrets::none(),
            max_text: Limits::default().max_text,
            cluster: None,
        }
    }

    /// Send the secrets kept in `secrets` with `hello` when there is one for the server and nick.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The password to give in the hellos from now on (one typed after `auth_failed`).
    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    /// A password is about to be asked for: the dialer warns if it would go in plain text.
    pub fn password_follows(&mut self) {
        self.dialer.password_follows();
    }

    /// The longest message text the server takes, in bytes.
    pub fn max_text(&self) -> usize {
        self.max_text
    }

    /// What the link dials, for messages.
    pub fn target(&self) -> String {
        self.dialer.to_string()
    }

    /// The server as the user knows it: see [`Dialer::server`].
    pub fn server(&self) -> String {
        self.dialer.server()
    }

    /// Dial and say hello as `nick`, or `nick_2`, `nick_3`, ... while the nick is taken.
    pub async fn connect(&mut self, nick: &str) -> Result<Connected, ConnectError> {
        self.conn = None;
        let stream = match timeout(CONNECT_TIMEOUT, self.dialer.dial()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(match Untrusted::find(&e) {
                    Some(refusal) => ConnectError::Untrusted(refusal.to_string()),
                    None => ConnectError::Retry(e.to_string()),
                })
            }
            Err(_) => return Err(ConnectError::Retry("timed out".into())),
        };
        let (conn, events) = Connection::spawn(stream);
        self.conn = Some(conn);
        self.events = events;
        let mut suffix = 1;
        let server = self.server();
        loop {
            let nick = with_suffix(nick, suffix);
            let hello = Command::Hello(Hello {
                secret: self.secrets.get(&server, &nick),
                nick,
                protocol: Some(lanchat_protocol::PROTOCOL_VERSION),
                client: Some(format!("lanchat-cli/{}", env!("CARGO_PKG_VERSION"))),
                password: self.password.clone(),
                autojoin: None,
            });
            let reply = match self.request(hello).await {
                Ok(r) => r,
                Err(Lost(closed)) => return Err(ConnectError::Retry(closed.to_string())),
            };
            match reply.frame {
                Some(ServerFrame::Welcome(welcome)) => {
                    self.pacer = pacer(&welcome.limits);
                    self.max_text = welcome.limits.max_text;
                    self.cluster.clone_from(&welcome.cluster);
                    return Ok(Connected {
                        welcome,
                        nick_taken: suffix > 1,
                    });
                }
                // Registered by someone else (or our secret is not the one): another nick too.
                Some(ServerFrame::Error(e))
                    if matches!(e.code, ErrorCode::NickTaken | ErrorCode::NickRegistered)
                        && suffix < 99 =>
                {
                    suffix += 1;
                }
                Some(ServerFrame::Error(e)) => {
                    let message = format!("{}: {}", e.code, e.message);
                    return Err(match e.code {
                        ErrorCode::ServerFull | ErrorCode::RateLimited => {
                            ConnectError::Retry(message)
                        }
                        ErrorCode::AuthFailed => ConnectError::AuthFailed(message),
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

    /// Send one request and wait for its reply, holding the events that arrive meanwhile.
    pub async fn request(&mut self, cmd: Command) -> Result<Response, Lost> {
        let Some(conn) = &self.conn else {
            return Err(Lost(self.dropped.take().unwrap_or_default()));
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
                    Some(Event::Frame(frame)) => {
                        if let Err(closed) = self.held.push(frame) {
                            self.conn = None;
                            return Err(Lost(closed));
                        }
                    }
                    Some(Event::Closed(closed)) => {
                        self.conn = None;
                        return Err(Lost(closed));
                    }
                    None => {
                        self.conn = None;
                        return Err(Lost(Closed::default()));
                    }
                },
                _ = sleep_until(deadline) => {
                    // A server that stops answering is as good as gone.
                    self.conn = None;
                    return Err(Lost(Closed { bye: None, error: Some("the server stopped answering".into()) }));
                }
            }
        }
    }

    /// A request the user typed: messages are paced under the server's rate limit, and a
    /// request refused as `rate_limited` is sent again a little later (three tries in all).
    pub async fn submit(&mut self, cmd: &Command) -> Result<Response, Lost> {
        let mut tries = 0;
        loop {
            if is_paced(cmd) {
                let wait = self.pacer.take_delay(Instant::now().into_std());
                if !wait.is_zero() {
                    self.pause(wait).await;
                }
            }
            let reply = self.request(cmd.clone()).await?;
            tries += 1;
            let retry_after = match &reply.frame {
                Some(ServerFrame::Error(e)) if e.code == ErrorCode::RateLimited => {
                    Some(retry_wait(e.retry_after_ms))
                }
                _ => None,
            };
            let Some(wait) = retry_after.filter(|_| tries < RATE_LIMITED_TRIES) else {
                return Ok(reply);
            };
            self.pause(wait).await;
        }
    }

    /// The next frame that arrived while a reply was awaited.
    pub fn held(&mut self) -> Option<Incoming> {
        self.held.pop()
    }

    /// The next frame from the server, or why the connection closed.
    pub async fn next_event(&mut self) -> Event {
        self.events
            .recv()
            .await
            .unwrap_or_else(|| Event::Closed(Closed::default()))
    }

    /// Send `quit` (the server answers `bye` and closes). False when there was no connection to
    /// say it on.
    pub async fn send_quit(&mut self, reason: Option<String>) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        conn.send(Command::Quit { reason }).await.is_ok()
    }

    /// Reconnect after a loss, waiting longer after each failed attempt, then restore what the
    /// model had. `Ok(false)` when the user quit while waiting; `Err` when the server ended the
    /// session for good, a reconnect cannot succeed, or a script gave up.
    pub async fn reconnect(
        &mut self,
        closed: Closed,
        model: &mut Model,
        user: &mut impl Reconnecting,
    ) -> Result<bool, Error> {
        self.conn = None;
        if let Some(bye) = &closed.bye {
            if is_final(bye.reason) {
                return Err(Error::Fatal(format!(
                    "disconnected: {} ({})",
                    bye.message, bye.reason
                )));
            }
        }
        let notice = format!("connection lost: {closed}; reconnecting");
        user.show(vec![Show::Info(notice)], model.nick());
        let started = Instant::now();
        let mut backoff = Backoff::default();
        let cluster = self.cluster.clone();
        let mut failed_over = false;
        loop {
            if !user.wait(backoff.wait()).await {
                return Ok(false);
            }
            let failure = match self.connect(model.hello_nick()).await {
                // Another of the addresses given that is not a node of the same cluster is
                // another chat: not one to rejoin the rooms on.
                Ok(connected) if failed_over && connected.welcome.cluster != cluster => {
                    self.conn = None;
                    self.cluster.clone_from(&cluster);
                    let cluster = cluster.as_deref().unwrap_or_default();
                    format!("{} is not a node of cluster {cluster}", self.dialer)
                }
                Ok(connected) => {
                    let welcome = model.welcomed(&connected.welcome, connected.nick_taken);
                    user.show(welcome, model.nick());
                    let mut shown = Vec::new();
                    let restored = self.restore(model, &connected.welcome, &mut shown).await;
                    user.show(shown, model.nick());
                    match restored {
                        Ok(()) => return Ok(true),
                        Err(Lost(closed)) => closed.to_string(),
                    }
                }
                Err(ConnectError::Fatal(m) | ConnectError::AuthFailed(m)) => {
                    return Err(Error::Fatal(format!("cannot reconnect: {m}")))
                }
                Err(ConnectError::Untrusted(m)) => return Err(Error::Untrusted(m)),
                Err(ConnectError::Retry(m)) => m,
            };
            let attempt = backoff.failed();
            // A cluster node that does not answer: another node is the same chat (its rooms,
            // its history), so the next attempt goes there.
            if let Some(cluster) = self.cluster.as_ref().filter(|_| self.dialer.next_node()) {
                failed_over = true;
                let notice = format!("trying another node of cluster {cluster}: {}", self.dialer);
                user.show(vec![Show::Info(notice)], model.nick());
            }
            if self.give_up.is_some_and(|limit| started.elapsed() > limit) {
                return Err(Error::Fatal(format!(
                    "gave up reconnecting to {} after {} s: {failure}",
                    self.dialer,
                    started.elapsed().as_secs()
                )));
            }
            if attempt == 1 || attempt % 5 == 0 {
                let notice = format!(
                    "reconnect attempt {attempt} failed ({failure}); next try within {:.1} s",
                    backoff.delay().as_secs_f64()
                );
                user.show(vec![Show::Info(notice)], model.nick());
            }
        }
    }

    /// After a reconnect: the same rooms and status, and every message missed meanwhile. What
    /// to show goes into `shown`, also when the connection is lost again halfway.
    async fn restore(
        &mut self,
        model: &mut Model,
        welcome: &Welcome,
        shown: &mut Vec<Show>,
    ) -> Result<(), Lost> {
        let plan = model.restore(welcome);
        for cmd in plan.leave {
            self.request(cmd).await?;
        }
        for (room, cmd) in plan.rejoin {
            if let Some(frame) = self.request(cmd).await?.frame {
                shown.extend(model.rejoined(&room, frame));
            }
        }
        if let Some(cmd) = plan.status {
            self.request(cmd).await?;
        }
        let mut caught_up = 0;
        for room in model.rooms().to_vec() {
            let mut query = Some(model.catch_up(&room));
            let mut missed = Vec::new();
            while let Some(q) = query.take() {
                let Some(frame) = self.request(Command::History(q.clone())).await?.frame else {
                    break;
                };
                let page = model.caught_up(&q, frame);
                missed.extend(page.show);
                caught_up += page.new;
                query = page.next;
            }
            shown.extend(model::bracket(Backlog::Missed, &room, missed));
        }
        shown.push(model.reconnected(caught_up));
        Ok(())
    }

    /// The connection task has ended: collect its last frames and why it closed.
    async fn closed_reason(&mut self) -> Closed {
        self.conn = None;
        while let Ok(Some(event)) = timeout(Duration::from_secs(1), self.events.recv()).await {
            match event {
                Event::Frame(frame) => {
                    if let Err(closed) = self.held.push(frame) {
                        return closed;
                    }
                }
                Event::Closed(closed) => return closed,
            }
        }
        Closed::default()
    }

    /// Wait, holding the frames that arrive meanwhile.
    async fn pause(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => return,
                event = self.events.recv() => match event {
                    Some(Event::Frame(frame)) => {
                        if let Err(closed) = self.held.push(frame) {
                            // Let the next request find out.
                            self.conn = None;
                            self.dropped = Some(closed);
                        }
                    }
                    // Let the next request find out.
                    _ => { sleep(deadline - Instant::now()).await; return; }
                },
            }
        }
    }
}

/// Messages (`say`, `dm`) are paced under the server's rate limit; other requests are not.
pub fn is_paced(cmd: &Command) -> bool {
    matches!(cmd, Command::Say { .. } | Command::Dm { .. })
}

/// A bucket a little under the server's figures: its bucket and ours do not start at the same
/// time.
fn pacer(limits: &Limits) -> TokenBucket {
    let burst = (f64::from(limits.rate_burst) - 1.0).max(1.0);
    let per_sec = f64::from(limits.rate_per_sec) * 0.9;
    TokenBucket::new(burst, per_sec, Instant::now().into_std())
}

/// A `bye` after which reconnecting cannot help (or is not wanted).
fn is_final(reason: ByeReason) -> bool {
    matches!(
        reason,
        ByeReason::AuthFailed
            | ByeReason::ProtocolUnsupported
            | ByeReason::TooManyErrors
            | ByeReason::Flood
            | ByeReason::Quit
            | ByeReason::TlsRequired
            // Our own secret took the nick over from elsewhere: coming back would take it back.
            | ByeReason::Replaced
    )
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

mod held;
#[cfg(test)]
mod tests;

use held::Held;
