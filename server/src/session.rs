//! One client connection: reads lines, applies requests to the shared state, and owns the
//! writer task that drains the session's outbox to the socket.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use lanchat_protocol::validate::{check_nick, check_room, check_short_text, check_text};
use lanchat_protocol::{
    ByeReason, Command, ErrorCode, ErrorFrame, Hello, Line, LineCodec, Reply, ReplyData, Request,
    RequestId, ServerFrame, Welcome, MAX_STATUS_TEXT_CHARS, MAX_TOPIC_CHARS, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::outbox::{outbox, Batch, Chunk, Outbox, OutboxReceiver};
use crate::state::{Refusal, SessionId, State};
use crate::{ConnectionPermit, Shared};

/// Protocol violations tolerated within `ERROR_WINDOW` before `bye too_many_errors`.
const MAX_ERRORS: usize = 20;
/// `rate_limited` replies tolerated within `ERROR_WINDOW` before `bye flood`.
const MAX_RATE_LIMITED: usize = 50;
const ERROR_WINDOW: Duration = Duration::from_secs(60);
/// Bytes given to one `write` at most: lines are gathered into a buffer this large.
const WRITE_CHUNK: usize = 64 * 1024;
/// Lines handled per wake-up before the session looks at its timers and cancellation again.
const DRAIN_LINES: usize = 64;
/// Initial read buffer: enough for a typical line; it grows as a long line needs.
const READ_BUFFER: usize = 512;
/// Read buffer of a session that sends many lines at once.
const READ_BUFFER_BUSY: usize = 16 * 1024;
/// Lines found in one wake-up that make a session busy.
const BUSY_LINES: usize = 3;
/// After a bye, how long to keep reading (and discarding) so the peer sees the bye before the
/// close, rather than a reset that may destroy it.
const LINGER: Duration = Duration::from_secs(1);

/// Where the connection came from; `None` for a Unix socket.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::SocketAddr>);

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.map(|a| a.ip())
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("unix"),
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent `quit` (with this id); others see this reason.
    Quit(Option<RequestId>, String),
    /// The server closes after a bye.
    Bye(ByeReason, String),
    /// EOF or an I/O error.
    Lost,
    /// The outbox overflowed.
    SlowConsumer,
}

/// Serve one connection until it ends. Returns when the socket is closed.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    peer: Peer,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let (outbox, receiver) = outbox(config.outbox_frames, config.outbox_bytes);
    let writer = tokio::spawn(write_loop(writer, receiver));
    let id = shared.next_session_id();
    debug!(%peer, session = id, "connected");

    let mut reader =
        FramedRead::with_capacity(reader, LineCodec::new(config.limits.max_line), READ_BUFFER);
    let mut session = Session::new(id, peer, shared.clone(), outbox);
    let end = session.run(&mut reader, &shutdown).await;
    let linger = matches!(end, End::Quit(..) | End::Bye(..));
    let slow = matches!(end, End::SlowConsumer);
    let reason = match &end {
        End::Quit(..) => "quit".to_owned(),
        End::Bye(r, _) => r.to_string(),
        End::Lost => "connection lost".to_owned(),
        End::SlowConsumer => "slow_consumer".to_owned(),
    };
    match &session.nick {
        Some(nick) => info!(%peer, %nick, %reason, "disconnected"),
        None => debug!(%peer, %reason, "disconnected before hello"),
    }
    // Leaving the state drops every other handle on the outbox, so the writer drains what is
    // queued (the bye included) and finishes.
    drop(session);
    let grace = shared.config.shutdown_grace;
    let mut writer = writer;
    // A slow consumer's writer may be stuck on a full socket: stop it now.
    if slow || tokio::time::timeout(grace, &mut writer).await.is_err() {
        writer.abort();
    }
    if linger {
        // On the heap: an array here would sit in every session's future for its whole life.
        let mut sink = vec![0u8; 4096];
        let inner = reader.get_mut();
        let _ = tokio::time::timeout(LINGER, async {
            while let Ok(n) = inner.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    drop(permit);
}

/// Drain the outbox to the socket: everything already queued goes out together.
async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut receiver: OutboxReceiver) {
    // No cancellation is watched here (a future per batch costs locks on the hot path): when
    // the outbox overflows, the session ends and aborts this task.
    let mut batch = Batch::default();
    while receiver.recv_batch(&mut batch).await {
        while let Some(chunk) = batch.next_chunk(WRITE_CHUNK) {
            let written = match chunk {
                Chunk::Gathered(bytes) => writer.write_all(bytes).await,
                Chunk::Line(line) => writer.write_all(&line).await,
            };
            if written.is_err() {
                return;
            }
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Size the read buffer for the next read, given the lines the last wake-up found. An
/// interactive session (a line at a time) keeps the small initial buffer; one whose reads
/// come in full (a bot, a bridge, a busy sender) gets a large one, so that a read takes
/// hundreds of lines rather than a few. It shrinks back once that session goes quiet.
fn size_read_buffer(buf: &mut BytesMut, lines: usize) {
    if lines >= BUSY_LINES {
        buf.reserve(READ_BUFFER_BUSY);
    } else if buf.is_empty() && buf.capacity() > READ_BUFFER {
        *buf = BytesMut::with_capacity(READ_BUFFER);
    }
}

/// A sliding window of recent event times.
struct Window {
    times: VecDeque<Instant>,
    max: usize,
}

impl Window {
    fn new(max: usize) -> Self {
        // Empty until the first error: most sessions never make one.
        Window {
            times: VecDeque::new(),
            max,
        }
    }

    /// Record one; true when `max` happened within `ERROR_WINDOW`.
    fn record(&mut self, now: Instant) -> bool {
        while self.times.front().is_some_and(|t| now - *t > ERROR_WINDOW) {
            self.times.pop_front();
        }
        self.times.push_back(now);
        if self.times.len() > self.max {
            self.times.pop_front();
        }
        self.times.len() >= self.max
    }
}

/// Token bucket for `say` and `dm`.
struct RateLimit {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl RateLimit {
    fn new(burst: u32, per_sec: u32) -> Self {
        RateLimit {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            last: Instant::now(),
        }
    }

    /// Take a token if there is one. Reads the clock only when there is a limit.
    fn allow(&mut self) -> bool {
        self.per_sec == 0.0 || self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        if self.per_sec == 0.0 {
            return true;
        }
        let elapsed = (now - self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Session {
    id: SessionId,
    peer: Peer,
    shared: Arc<Shared>,
    outbox: Outbox,
    /// Set by a successful hello.
    nick: Option<String>,
    /// What room-mates are told when this session goes; `None` tells them nothing. Starts as
    /// "connection lost" so that any exit path not named below is reported as such.
    quit_reason: Option<String>,
    errors: Window,
    rate_limited: Window,
    rate: RateLimit,
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.nick.is_some() {
            // At shutdown everyone is leaving: no quit storm.
            let reason = match self.shared.is_shutting_down() {
                true => None,
                false => self.quit_reason.as_deref(),
            };
            self.shared.state().remove(self.id, reason);
        }
    }
}

impl Session {
    fn new(id: SessionId, peer: Peer, shared: Arc<Shared>, outbox: Outbox) -> Self {
        let limits = shared.config.limits;
        Session {
            id,
            peer,
            outbox,
            nick: None,
            quit_reason: Some("connection lost".into()),
            errors: Window::new(MAX_ERRORS),
            rate_limited: Window::new(MAX_RATE_LIMITED),
            rate: RateLimit::new(limits.rate_burst, limits.rate_per_sec),
            shared,
        }
    }

    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FramedRead<R, LineCodec>,
        shutdown: &CancellationToken,
    ) -> End {
        let start = Instant::now();
        let hello_deadline = start + self.shared.config.hello_timeout;
        let ping_interval = Duration::from_secs(self.shared.config.limits.ping_interval_s);
        let mut last_heard = start;
        let mut pinged = false;
        let timer = tokio::time::sleep_until(hello_deadline);
        tokio::pin!(timer);
        // Made once, not per line: each of these takes locks when it is created and dropped.
        let overflow = self.outbox.overflow_token();
        let overflowed = overflow.cancelled();
        tokio::pin!(overflowed);
        let shutting_down = shutdown.cancelled();
        tokio::pin!(shutting_down);
        let end = 'session: loop {
            tokio::select! {
                biased;
                _ = &mut overflowed => break End::SlowConsumer,
                _ = &mut shutting_down => {
                    break End::Bye(ByeReason::ShuttingDown, "the server is shutting down".into())
                }
                item = reader.next() => {
                    last_heard = Instant::now();
                    pinged = false;
                    // Then every line already buffered, without a trip through the select.
                    let mut item = item;
                    for n in 1.. {
                        let line = match item {
                            Some(Ok(line)) => line,
                            Some(Err(_)) | None => break 'session End::Lost,
                        };
                        if let Some(end) = self.handle_line(line) {
                            break 'session end;
                        }
                        if n == DRAIN_LINES {
                            break;
                        }
                        // Polled without a waker: `None` when nothing complete is buffered, and
                        // the select polls the reader again with the task's own waker.
                        match reader.next().now_or_never() {
                            Some(next) => item = next,
                            None => {
                                size_read_buffer(reader.read_buffer_mut(), n);
                                break;
                            }
                        }
                    }
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if self.nick.is_none() {
                        break End::Bye(
                            ByeReason::HelloTimeout,
                            "no hello within the time allowed".into(),
                        );
                    }
                    let due = last_heard + ping_interval * if pinged { 2 } else { 1 };
                    if now < due {
                        timer.as_mut().reset(due);
                    } else if pinged {
                        break End::Bye(ByeReason::PingTimeout, "no answer to ping".into());
                    } else {
                        pinged = true;
                        self.outbox.push(ServerFrame::Ping {}.encode_line());
                        timer.as_mut().reset(now + ping_interval);
                    }
                }
            }
            if self.nick.is_some() && timer.deadline() == hello_deadline {
                timer.as_mut().reset(last_heard + ping_interval);
            }
        };
        match &end {
            End::Quit(re, reason) => {
                self.quit_reason = Some(reason.clone());
                self.push(&ServerFrame::Bye(lanchat_protocol::Bye {
                    re: re.clone(),
                    reason: ByeReason::Quit,
                    message: "goodbye".into(),
                }));
            }
            End::Bye(reason, message) => {
                self.quit_reason = match reason {
                    ByeReason::ShuttingDown => None,
                    other => Some(other.as_str().replace('_', " ")),
                };
                self.push(&ServerFrame::Bye(lanchat_protocol::Bye {
                    re: None,
                    reason: *reason,
                    message: message.clone(),
                }));
            }
            End::Lost => self.quit_reason = Some("connection lost".into()),
            End::SlowConsumer => {
                tracing::warn!(peer = %self.peer, nick = ?self.nick, "slow_consumer: outbound queue full, dropping session");
                self.quit_reason = Some("slow consumer".into());
            }
        }
        end
    }

    fn push(&self, frame: &ServerFrame) {
        self.outbox.push(frame.encode_line());
    }

    fn handle_line(&mut self, line: Line) -> Option<End> {
        match line {
            Line::TooLong => {
                let max = self.shared.config.limits.max_line;
                self.error(
                    None,
                    ErrorCode::LineTooLong,
                    format!("line longer than {max} bytes; it was discarded"),
                )
            }
            Line::Frame(bytes) => match Request::decode(&bytes) {
                Ok(request) => self.dispatch(request),
                Err(e) => self.error(e.re, e.code, e.message),
            },
        }
    }

    /// Reply with an error, and end the session if the client keeps misbehaving.
    fn error(&mut self, re: Option<RequestId>, code: ErrorCode, message: String) -> Option<End> {
        self.push(&ServerFrame::Error(ErrorFrame { code, message, re }));
        let now = Instant::now();
        if code == ErrorCode::RateLimited {
            if self.rate_limited.record(now) {
                return Some(End::Bye(
                    ByeReason::Flood,
                    format!("{MAX_RATE_LIMITED} rate-limited messages within a minute"),
                ));
            }
        } else if code.is_protocol_violation() && self.errors.record(now) {
            self.push(&ServerFrame::Error(ErrorFrame {
                code: ErrorCode::TooManyErrors,
                message: format!("{MAX_ERRORS} protocol errors within a minute"),
                re: None,
            }));
            return Some(End::Bye(
                ByeReason::TooManyErrors,
                format!("{MAX_ERRORS} protocol errors within a minute"),
            ));
        }
        None
    }

    fn refused(&mut self, re: Option<RequestId>, refusal: Refusal) -> Option<End> {
        self.error(re, refusal.0, refusal.1)
    }

    /// Run `f` on the state and queue its reply in the same critical section, so the reply is
    /// queued before any event that follows it.
    fn apply(
        &mut self,
        re: Option<RequestId>,
        f: impl FnOnce(&mut State) -> Result<ReplyData, Refusal>,
    ) -> Option<End> {
        self.apply_encoded(re, |state, re| {
            f(state).map(|data| {
                ServerFrame::Reply(Reply {
                    re: re.cloned(),
                    data,
                })
                .encode_line()
            })
        })
    }

    /// [`Session::apply`] for commands that encode their own reply line (`say`, `dm`: the hot
    /// path, encoded from borrowed strings).
    fn apply_encoded(
        &mut self,
        re: Option<RequestId>,
        f: impl FnOnce(&mut State, Option<&RequestId>) -> Result<Bytes, Refusal>,
    ) -> Option<End> {
        let result = {
            let mut state = self.shared.state();
            f(&mut state, re.as_ref()).map(|line| {
                self.outbox.push(line);
            })
        };
        match result {
            Ok(()) => None,
            Err(refusal) => self.refused(re, refusal),
        }
    }

    fn reply(&mut self, re: Option<RequestId>, data: ReplyData) -> Option<End> {
        self.push(&ServerFrame::Reply(Reply { re, data }));
        None
    }

    fn dispatch(&mut self, request: Request) -> Option<End> {
        let Request { id: re, command } = request;
        if self.nick.is_none() {
            return match command {
                Command::Hello(hello) => self.hello(re, hello),
                Command::Pong {} => None,
                _ => self.error(
                    re,
                    ErrorCode::NotRegistered,
                    "send hello before anything else".into(),
                ),
            };
        }
        let id = self.id;
        let max_text = self.shared.config.limits.max_text;
        match command {
            Command::Hello(_) => self.error(
                re,
                ErrorCode::AlreadyRegistered,
                "this session has already said hello".into(),
            ),
            Command::Join { room } => match check_room(&room) {
                Ok(()) => self.apply(re, |st| st.join(id, &room)),
                Err(r) => self.refused(re, r),
            },
            Command::Leave { room } => self.apply(re, |st| st.leave(id, &room)),
            Command::Say { room, text } => {
                if let Err(refusal) = self.admit_message(&text, max_text) {
                    return self.refused(re, refusal);
                }
                let shared = self.shared.clone();
                self.apply_encoded(re, |st, re| {
                    let (reply, line) = st.say(id, re, &room, &text)?;
                    shared.persist_message(&room, line);
                    Ok(reply)
                })
            }
            Command::Dm { to, text } => {
                if let Err(refusal) = self.admit_message(&text, max_text) {
                    return self.refused(re, refusal);
                }
                self.apply_encoded(re, |st, re| st.dm(id, re, &to, &text))
            }
            Command::Nick { nick } => match check_nick(&nick) {
                Ok(()) => {
                    let r = self.apply(re, |st| st.set_nick(id, &nick));
                    if let Some(current) = self.shared.state().nick_of(id) {
                        self.nick = Some(current);
                    }
                    r
                }
                Err(r) => self.refused(re, r),
            },
            Command::Status { status, text } => {
                if let Some(t) = &text {
                    if let Err(r) = check_short_text("status text", t, MAX_STATUS_TEXT_CHARS) {
                        return self.refused(re, r);
                    }
                }
                self.apply(re, |st| st.set_status(id, status, text))
            }
            Command::Topic { room, topic } => {
                if let Some(t) = &topic {
                    if let Err(r) = check_short_text("topic", t, MAX_TOPIC_CHARS) {
                        return self.refused(re, r);
                    }
                }
                let shared = self.shared.clone();
                self.apply(re, |st| {
                    let (reply, changed) = st.topic(id, &room, topic)?;
                    if let Some(c) = changed {
                        shared.persist_topic(c.room_key, c.room, c.topic);
                    }
                    Ok(reply)
                })
            }
            Command::Who { room } => self.apply(re, |st| Ok(st.who(&room))),
            Command::Rooms {} => self.apply(re, |st| Ok(st.rooms())),
            Command::History(query) => {
                let result = self.shared.state().history(re.as_ref(), &query);
                match result {
                    Ok(line) => {
                        self.outbox.push(line);
                        None
                    }
                    Err(r) => self.refused(re, r),
                }
            }
            Command::Ping {} => self.reply(re, ReplyData::Ping {}),
            Command::Pong {} => None,
            Command::Quit { reason } => {
                let reason: String = reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "quit".into())
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_TOPIC_CHARS)
                    .collect();
                Some(End::Quit(re, reason))
            }
        }
    }

    /// The checks every message (`say`, `dm`) passes before it touches the state: its text,
    /// then the rate limit (a refused message is not delivered and costs no token).
    fn admit_message(&mut self, text: &str, max_text: usize) -> Result<(), Refusal> {
        check_text(text, max_text)?;
        if !self.rate.allow() {
            return Err((
                ErrorCode::RateLimited,
                "too many messages; this one was not delivered".into(),
            ));
        }
        Ok(())
    }

    fn hello(&mut self, re: Option<RequestId>, hello: Hello) -> Option<End> {
        let config = &self.shared.config;
        if let Some(version) = hello.protocol {
            if version != PROTOCOL_VERSION {
                let message = format!("this server speaks protocol {PROTOCOL_VERSION}");
                self.error(re, ErrorCode::ProtocolUnsupported, message.clone());
                return Some(End::Bye(ByeReason::ProtocolUnsupported, message));
            }
        }
        if let Some(expected) = &config.password {
            let given = hello.password.as_deref().unwrap_or("");
            if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                info!(peer = %self.peer, "authentication failed");
                self.error(
                    re,
                    ErrorCode::AuthFailed,
                    "wrong or missing password".into(),
                );
                return Some(End::Bye(
                    ByeReason::AuthFailed,
                    "wrong or missing password".into(),
                ));
            }
        }
        if let Err(r) = check_nick(&hello.nick) {
            return self.refused(re, r);
        }
        let welcome = ServerFrame::Welcome(Welcome {
            re: re.clone(),
            protocol: PROTOCOL_VERSION,
            server: lanchat_protocol::server_string(),
            name: config.name.clone(),
            session: uuid::Uuid::new_v4().to_string(),
            nick: hello.nick.clone(),
            rooms: vec![config.default_room.clone()],
            motd: config.motd.clone(),
            limits: config.limits,
        })
        .encode_line();
        let result = {
            let mut state = self.shared.state();
            state.register_with(self.id, &hello.nick, self.outbox.clone(), || {
                self.outbox.push(welcome);
            })
        };
        if let Err(r) = result {
            return self.refused(re, r);
        }
        let client: String = hello.client.unwrap_or_default().chars().take(64).collect();
        info!(peer = %self.peer, nick = %hello.nick, %client, "registered");
        self.nick = Some(hello.nick);
        None
    }
}

/// Compare secrets without an early exit, so timing does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Refuse a connection that is over a limit: an error and a bye, then close.
pub async fn refuse<W: AsyncWrite + Unpin>(mut writer: W, message: &str) {
    let mut out = Vec::new();
    out.extend_from_slice(
        &ServerFrame::Error(ErrorFrame {
            code: ErrorCode::ServerFull,
            message: message.to_owned(),
            re: None,
        })
        .encode_line(),
    );
    out.extend_from_slice(
        &ServerFrame::Bye(lanchat_protocol::Bye {
            re: None,
            reason: ByeReason::ServerFull,
            message: message.to_owned(),
        })
        .encode_line(),
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        writer.write_all(&Bytes::from(out)).await?;
        writer.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connected client holds one session future: keep it small (idle memory target of
    /// 8 KiB per client, BENCHMARKS.md). A 4 KiB array held across an await once hid here.
    #[test]
    fn session_future_stays_small() {
        let shared = crate::Shared::new(crate::Config::default());
        let (a, _b) = tokio::io::duplex(64);
        let (r, w) = tokio::io::split(a);
        let permit = shared.admit(None).unwrap();
        let token = CancellationToken::new();
        let fut = serve(r, w, Peer(None), shared.clone(), token, permit);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 2048, "session future is {size} bytes");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn window_counts_within_a_minute() {
        let mut w = Window::new(3);
        let t = Instant::now();
        assert!(!w.record(t));
        assert!(!w.record(t));
        assert!(!w.record(t + Duration::from_secs(61)));
        assert!(!w.record(t + Duration::from_secs(62)));
        assert!(w.record(t + Duration::from_secs(63)));
    }

    #[test]
    fn rate_limit_bucket() {
        let t = Instant::now();
        let mut r = RateLimit::new(2, 1);
        r.last = t;
        assert!(r.allow_at(t));
        assert!(r.allow_at(t));
        assert!(!r.allow_at(t));
        assert!(r.allow_at(t + Duration::from_millis(1001)));
        let mut unlimited = RateLimit::new(0, 0);
        assert!((0..1000).all(|_| unlimited.allow_at(t)));
        assert!(unlimited.allow());
    }
}
