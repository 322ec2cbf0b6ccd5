//! One client as the protocol sees it: each line, from its decoded form to what it does.
//!
//! A request goes through the checks that need no state (its shape, names and texts, the rate
//! limit in [`Guard`]), then through its rule in [`crate::state`], applied with its fan-out by
//! [`Chat`]. Every command reads top to bottom in `Turn::command`. No I/O happens here: the
//! only output is lines queued in outboxes, and the session ([`crate::session`]) owns the socket
//! and the timers. A request about a room that is not in memory but may be on disk returns
//! [`Step::Load`] instead: the session brings the room back and calls [`Client::resume`]. A
//! request that needs a secret hashed or checked, or a session to leave, or the accounts saved
//! (see [`accounts`]) returns [`Step::Account`] the same way: the session runs the job and calls
//! [`Client::account_done`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lanchat_protocol::validate::{check_nick, check_room, check_short_text, check_text, name_key};
use lanchat_protocol::{
    Bye, ByeReason, Command, ErrorCode, ErrorFrame, Limits, Line, Reply, ReplyData, Request,
    RequestId, ServerFrame, MAX_STATUS_TEXT_CHARS, MAX_TOPIC_CHARS, ROOMS_PAGE_MAX,
};

use crate::admission::{Permit, Source};
use crate::budget::{Budget, Budgets};
use crate::chat::{deliver, Chat};
use crate::effects::Effects;
use crate::guard::{Guard, Verdict};
use crate::outbox::Outbox;
use crate::state::{Refusal, Registered, SessionId, State};
use crate::store::RoomLoad;
use crate::{Peer, Shared};

/// Longest `hello.client` kept for the log, in bytes.
const MAX_CLIENT_BYTES: usize = 64;

/// Why a session ends.
#[derive(Debug)]
pub enum End {
    /// The client sent `quit` (with this id); others see this reason.
    Quit(Option<RequestId>, String),
    /// The server closes after a bye.
    Bye(ByeReason, String),
    /// EOF or an I/O error.
    Lost,
    /// The outbox overflowed.
    SlowConsumer,
}

impl End {
    /// What the log says.
    pub fn describe(&self) -> String {
        match self {
            End::Quit(..) => "quit".into(),
            End::Bye(r, _) => r.to_string(),
            End::Lost => "connection lost".into(),
            End::SlowConsumer => "slow_consumer".into(),
        }
    }
}

/// What the session does after a line.
#[derive(Debug)]
pub enum Step {
    /// Read the next line.
    Next,
    /// End the session.
    End(End),
    /// Bring a room back from disk, then hand the answer to [`Client::resume`]: the request
    /// names a room that is not held in memory, and the server has a data directory.
    Load(Box<Pending>),
    /// Run an accounts job (hash, verify, wait for a replaced session, save), then hand its
    /// result to [`Client::account_done`].
    Account(Box<Job>),
}

mod accounts;
pub use accounts::{Done, Job};

impl From<Option<End>> for Step {
    fn from(end: Option<End>) -> Self {
        end.map_or(Step::Next, Step::End)
    }
}

/// A request waiting for its room to come back from disk. Its budget, if it has one, is
/// already charged: [`Client::resume`] applies it without charging again.
#[derive(Debug)]
pub struct Pending {
    /// The folded name of the room to load.
    pub room_key: String,
    re: Option<RequestId>,
    command: Command,
}

/// One connected client: who it is (once registered), its outbox and its protections. Dropping
/// it removes the user from the chat and tells their room-mates why.
pub struct Client {
    id: SessionId,
    peer: Peer,
    /// The connection's slot; `None` once handed back to the session (see [`Client::take_permit`]).
    permit: Option<Permit>,
    shared: Arc<Shared>,
    outbox: Outbox,
    registered: Option<Registered>,
    guard: Guard,
    /// The folded nick, once registered: what messages are charged to (with the address).
    nick_key: String,
    /// What room-mates are told when this client goes; `None` tells them nothing. Starts as
    /// "connection lost" so that any exit path not named in [`Client::end`] is reported as such.
    quit_reason: Option<Cow<'static, str>>,
    /// The folded nick whose secret this session has just proved, while its request is re-run.
    proven: Option<String>,
    /// The session that held the nick was told to leave: do not tell it again.
    replaced: bool,
    /// Cluster mode: the folded nick this session holds cluster-wide (see `cluster.rs`).
    claimed: Option<Box<str>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.release_claim();
        let Some(who) = self.registered.take() else {
            return;
        };
        // At shutdown everyone is leaving: no quit storm.
        let reason = match self.shared.is_shutting_down() {
            true => None,
            false => self.quit_reason.as_deref(),
        };
        let mut state = self.shared.chat.lock();
        let effects = self.removed(&mut state, who, reason);
        let _ = deliver(&state, None, effects);
        drop(state);
        self.shared.accounts.left(self.id);
    }
}

impl Client {
    pub fn new(
        id: SessionId,
        peer: Peer,
        permit: Permit,
        shared: Arc<Shared>,
        outbox: Outbox,
    ) -> Self {
        Client {
            id,
            peer,
            permit: Some(permit),
            outbox,
            registered: None,
            guard: Guard::default(),
            nick_key: String::new(),
            quit_reason: Some(Cow::Borrowed("connection lost")),
            shared,
            proven: None,
            replaced: false,
            claimed: None,
        }
    }

    /// Where the connection came from.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// The current nick, once registered.
    pub fn nick(&self) -> Option<String> {
        let who = self.registered.as_ref()?;
        Some(self.shared.chat.lock().nick(who).to_owned())
    }

    /// The connection's slot, for the session to hold until its socket is closed.
    pub fn take_permit(&mut self) -> Option<Permit> {
        self.permit.take()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn push(&self, frame: &ServerFrame) {
        self.outbox.push(frame.encode_line());
    }

    /// Handle one line read at `now`.
    pub fn line(&mut self, line: Line, now: Instant) -> Step {
        match line {
            Line::TooLong => {
                let max = self.shared.config.limits.max_line;
                let message = format!("line longer than {max} bytes; it was discarded");
                self.error(None, (ErrorCode::LineTooLong, message), now)
                    .into()
            }
            Line::Frame(bytes) => match Request::decode(&bytes) {
                Ok(request) => self.request(request, now, false),
                Err(e) => self.error(e.re, (e.code, e.message), now).into(),
            },
        }
    }

    /// Apply a request that waited for its room: `load` is what the disk held (`None` when the
    /// load failed or timed out: the request then finds the room empty). The room is restored
    /// only if it is still absent; the request is applied as if the room had been there.
    pub fn resume(&mut self, pending: Pending, load: Option<RoomLoad>, now: Instant) -> Step {
        let Pending {
            room_key: _,
            re,
            command,
        } = pending;
        if let Some(RoomLoad {
            room: Some(room),
            messages,
            topic,
            settings,
        }) = load
        {
            let mut state = self.shared.chat.lock();
            if state.restore_room(&room, messages, topic) || !state.holds_room(&room) {
                state.restore_settings(&room, settings);
            }
        }
        self.request(Request::new(re, command), now, true)
    }

    /// Queue the last words of a session ending for `end`, and settle what others are told.
    pub fn end(&mut self, end: &End) {
        match end {
            End::Quit(re, reason) => {
                self.quit_reason = Some(Cow::Owned(reason.clone()));
                self.push(&ServerFrame::Bye(Bye {
                    re: re.clone(),
                    reason: ByeReason::Quit,
                    message: "goodbye".into(),
                }));
            }
            End::Bye(reason, message) => {
                self.quit_reason = match reason {
                    ByeReason::ShuttingDown => None,
                    other => Some(Cow::Owned(other.as_str().replace('_', " "))),
                };
                self.push(&ServerFrame::Bye(Bye {
                    re: None,
                    reason: *reason,
                    message: message.clone(),
                }));
            }
            End::Lost => self.quit_reason = Some(Cow::Borrowed("connection lost")),
            End::SlowConsumer => {
                tracing::warn!(peer = %self.peer, nick = ?self.nick(), "slow_consumer: outbound queue full, dropping session");
                self.quit_reason = Some(Cow::Borrowed("slow consumer"));
            }
        }
    }

    /// Reply with an error, and end the session if the client keeps misbehaving.
    fn error(&mut self, re: Option<RequestId>, refusal: Refusal, now: Instant) -> Option<End> {
        self.refused(re, refusal.into(), now)
    }

    /// [`Client::error`] with the retry hint of a refusal for lack of budget.
    fn refused(&mut self, re: Option<RequestId>, refused: Refused, now: Instant) -> Option<End> {
        let Refused {
            refusal: (code, message),
            retry_after,
        } = refused;
        let retry_after_ms =
            retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        self.push(&ServerFrame::Error(ErrorFrame {
            code,
            message,
            re,
            retry_after_ms,
        }));
        let verdict = self.guard.record_error(code, now);
        if verdict == Verdict::TooManyErrors {
            let (_, message) = verdict.bye()?;
            self.push(&ServerFrame::Error(ErrorFrame {
                code: ErrorCode::TooManyErrors,
                message,
                re: None,
                retry_after_ms: None,
            }));
        }
        verdict
            .bye()
            .map(|(reason, message)| End::Bye(reason, message))
    }

    /// Apply a request; `loaded` when its room was just looked for on disk (and its budget
    /// charged then).
    fn request(&mut self, request: Request, now: Instant, loaded: bool) -> Step {
        let Request { id: re, command } = request;
        let source = self.permit.as_ref().map_or(Source::Unknown, Permit::source);
        let command = match self.account_command(re.as_ref(), command, now) {
            Ok(command) => command,
            Err(step) => return step,
        };
        let command = match self.claim_first(re.as_ref(), command, now) {
            Ok(command) => command,
            Err(step) => return step,
        };
        let turn = match self {
            Client {
                registered: Some(who),
                shared,
                outbox,
                nick_key,
                ..
            } => Turn {
                who,
                chat: &shared.chat,
                out: outbox,
                limits: &shared.config.limits,
                budgets: &shared.budgets,
                source,
                nick_key,
                loaded,
            },
            _ => return self.before_hello(re, command, now),
        };
        match turn.command(re.as_ref(), command, now) {
            Ok(Outcome::Done(end)) => end.into(),
            Ok(Outcome::Load { room_key, command }) => Step::Load(Box::new(Pending {
                room_key,
                re,
                command,
            })),
            Err(refused) => self.refused(re, refused, now).into(),
        }
    }
}

/// What one registered client's command works with: the chat, its own outbox, the limits and
/// the budgets its messages are charged to.
struct Turn<'a> {
    who: &'a Registered,
    chat: &'a Chat,
    out: &'a Outbox,
    limits: &'a Limits,
    budgets: &'a Budgets,
    source: Source,
    nick_key: &'a mut String,
    /// The request's room was just looked for on disk: do not look again, nor charge again.
    loaded: bool,
}

/// What became of a registered client's command.
enum Outcome {
    /// Applied (or answered); `Some` when the session must end.
    Done(Option<End>),
    /// Its room must come back from disk first (see [`Step::Load`]).
    Load { room_key: String, command: Command },
}

impl Turn<'_> {
    /// A registered client's command: its checks, then its rule.
    fn command(
        self,
        re: Option<&RequestId>,
        command: Command,
        now: Instant,
    ) -> Result<Outcome, Refused> {
        let Turn {
            who,
            chat,
            out,
            limits,
            budgets,
            source,
            nick_key,
            loaded,
        } = self;
        // A room not held in memory may be on disk: look there first (once).
        let absent = |room: &str| (!loaded).then(|| chat.absent_room_key(room)).flatten();
        // Checked after the request's own checks: a refused request costs nothing.
        let charge = |budget: &Budget, amount: f64, what: &str| {
            budget
                .charge(source, nick_key, amount, now)
                .map_err(|wait| Refused {
                    refusal: (
                        ErrorCode::RateLimited,
                        format!("too many {what}; this one was not applied"),
                    ),
                    retry_after: Some(wait),
                })
        };
        let events = "joins, leaves, nick, status, topic and room changes";
        match command {
            Command::Hello(_) => Err(Refused::from((
                ErrorCode::AlreadyRegistered,
                "this session has already said hello".to_owned(),
            ))),
            Command::Join { room, key } => {
                check_room(&room)?;
                if !loaded {
                    charge(&budgets.events, 1.0, events)?;
                }
                if let Some(room_key) = absent(&room) {
                    let command = Command::Join { room, key };
                    return Ok(Outcome::Load { room_key, command });
                }
                chat.run(out, |st| st.join(who, re, &room, key.as_deref()))?;
                Ok(Outcome::Done(None))
            }
            Command::Leave { room } => {
                charge(&budgets.events, 1.0, events)?;
                chat.run(out, |st| st.leave(who, re, &room))?;
                Ok(Outcome::Done(None))
            }
            Command::Say { room, text } => {
                check_text(&text, limits.max_text)?;
                charge(&budgets.messages, 1.0, "messages")?;
                chat.run_stored(out, re, |st| st.say(who, re, &room, &text))?;
                Ok(Outcome::Done(None))
            }
            Command::Dm { to, text } => {
                check_text(&text, limits.max_text)?;
                charge(&budgets.messages, 1.0, "messages")?;
                chat.run(out, |st| st.dm(who, re, &to, &text))?;
                Ok(Outcome::Done(None))
            }
            Command::Nick { nick, secret: _ } => {
                check_nick(&nick)?;
                charge(&budgets.events, 1.0, events)?;
                chat.run(out, |st| st.set_nick(who, re, &nick))?;
                *nick_key = name_key(&nick);
                Ok(Outcome::Done(None))
            }
            Command::Status { status, text } => {
                if let Some(t) = &text {
                    check_short_text("status text", t, MAX_STATUS_TEXT_CHARS)?;
                }
                charge(&budgets.events, 1.0, events)?;
                chat.run(out, |st| st.set_status(who, re, status, text))?;
                Ok(Outcome::Done(None))
            }
            Command::Topic { room, topic } => {
                if let Some(t) = &topic {
                    check_short_text("topic", t, MAX_TOPIC_CHARS)?;
                    charge(&budgets.events, 1.0, events)?;
                } else if let Some(room_key) = absent(&room) {
                    // Only a reading: setting needs membership, so the room is held.
                    let command = Command::Topic { room, topic };
                    return Ok(Outcome::Load { room_key, command });
                }
                chat.run(out, |st| st.topic(who, re, &room, topic))?;
                Ok(Outcome::Done(None))
            }
            Command::Who { room } => {
                chat.run(out, |st| Ok(st.who(who, re, &room)))?;
                Ok(Outcome::Done(None))
            }
            // Replies charged by their size once built: allowed while the budget holds anything.
            Command::Rooms { after, limit } => {
                // Nothing taken yet: the reply is charged its size once built.
                charge(&budgets.reply_bytes, 0.0, "history and rooms replies")?;
                let limit = limit.map_or(ROOMS_PAGE_MAX, |l| l as usize);
                let size = reply_size(chat, out, |st| {
                    Ok(st.rooms(who, re, after.as_deref(), limit))
                })?;
                budgets.reply_bytes.force(source, nick_key, size, now);
                Ok(Outcome::Done(None))
            }
            Command::History(query) => {
                // Nothing taken yet: the reply is charged its size once built.
                charge(&budgets.reply_bytes, 0.0, "history and rooms replies")?;
                if let Some(room_key) = absent(&query.room) {
                    let command = Command::History(query);
                    return Ok(Outcome::Load { room_key, command });
                }
                let size = reply_size(chat, out, |st| st.history(who, re, &query))?;
                budgets.reply_bytes.force(source, nick_key, size, now);
                Ok(Outcome::Done(None))
            }
            command @ (Command::Mode(_)
            | Command::Invite { .. }
            | Command::Kick { .. }
            | Command::Op { .. }) => {
                private::check(&command)?;
                charge(&budgets.events, 1.0, events)?;
                chat.run(out, |st| private::apply(st, who, re, command))?;
                Ok(Outcome::Done(None))
            }
            Command::Ping {} => {
                out.push(
                    ServerFrame::Reply(Reply {
                        re: re.cloned(),
                        data: ReplyData::Ping {},
                    })
                    .encode_line(),
                );
                Ok(Outcome::Done(None))
            }
            // Answered by `Client::account_command` before a turn is made.
            Command::Pong {} | Command::Register { .. } | Command::Unregister {} => {
                Ok(Outcome::Done(None))
            }
            Command::Quit { reason } => Ok(Outcome::Done(Some(End::Quit(
                re.cloned(),
                quit_reason(reason),
            )))),
        }
    }
}

/// A refusal, and for one for lack of budget, how long until the request would pass.
struct Refused {
    refusal: Refusal,
    retry_after: Option<Duration>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Refused {
            refusal,
            retry_after: None,
        }
    }
}

/// Run a rule whose reply is charged by its size; returns that size in bytes.
fn reply_size(
    chat: &Chat,
    out: &Outbox,
    rule: impl FnOnce(&State<Outbox>) -> Result<Effects, Refusal>,
) -> Result<f64, Refusal> {
    let mut size = 0;
    chat.run(out, |st| {
        let effects = rule(st)?;
        size = effects.reply.as_ref().map_or(0, |r| r.len());
        Ok(effects)
    })?;
    Ok(size as f64)
}

/// The reason others see for a `quit`: control characters removed, at most a topic's length,
/// and "quit" when nothing is left.
fn quit_reason(reason: Option<String>) -> String {
    let reason: String = reason
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TOPIC_CHARS)
        .collect();
    if reason.is_empty() {
        "quit".into()
    } else {
        reason
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

mod cluster;
mod hello;
mod private;

#[cfg(test)]
mod tests;
