//! The connection: one task owns the socket. Requests come in through a channel, each with a
//! oneshot for its reply (matched by `re`, which is the integer id this task assigns); every
//! frame the server sends goes out, in arrival order, through one bounded event channel. The task
//! answers the server's keepalive `ping` with `pong` by itself.
//!
//! Server frames of a type this client does not know are still delivered (with `frame: None`) so
//! that `--json` can print them; everything else ignores them.

use std::collections::HashMap;

use futures::StreamExt;
use lanchat_protocol::{Bye, Command, Line, LineCodec, Request, RequestId, ServerFrame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

/// The longest server line this client accepts. The server's own requests limit (16 KiB) does
/// not bound what it sends: a `history` reply of 200 messages of 4 KiB each is about 1 MiB.
pub const MAX_SERVER_LINE: usize = 8 * 1024 * 1024;
/// Events buffered before the task stops reading the socket (TCP then pushes back).
pub const EVENT_CAPACITY: usize = 1024;

/// One line the server sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The line exactly as received, without its LF.
    pub line: String,
    /// The decoded frame; `None` for a type (or `ok` cmd) this client does not know.
    pub frame: Option<ServerFrame>,
    /// This frame is the reply to one of our requests (it was also handed to the requester).
    pub is_reply: bool,
}

/// What the event channel carries.
// Frames are nearly every event: boxing them would cost an allocation per line to shrink the
// rare `Closed`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Frame(Incoming),
    /// The connection is gone; no more events follow.
    Closed(Closed),
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Closed {
    /// The server's `bye`, when it said goodbye before closing.
    pub bye: Option<Bye>,
    /// The I/O error, when there was one.
    pub error: Option<String>,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.bye, &self.error) {
            (Some(bye), _) => write!(f, "server said goodbye: {} ({})", bye.message, bye.reason),
            (None, Some(e)) => f.write_str(e),
            (None, None) => f.write_str("the server closed the connection"),
        }
    }
}

/// The reply to a request: `ok`, `error` or `welcome`.
pub type Response = Incoming;

/// The connection task is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not connected")]
pub struct NotConnected;

struct Outgoing {
    command: Command,
    reply: Option<oneshot::Sender<Response>>,
}

/// A handle to the connection task. Dropping every handle closes the connection.
#[derive(Debug, Clone)]
pub struct Connection {
    outbox: mpsc::Sender<Outgoing>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("command", &self.command)
            .finish()
    }
}

impl Connection {
    /// Start the task that owns `stream`; returns the handle and the event channel.
    pub fn spawn<S>(stream: S) -> (Connection, mpsc::Receiver<Event>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (outbox, requests) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(EVENT_CAPACITY);
        tokio::spawn(run(stream, requests, events_tx));
        (Connection { outbox }, events)
    }

    /// Send a request; the returned receiver yields its reply (or fails if the connection ends
    /// first).
    pub async fn request(
        &self,
        command: Command,
    ) -> Result<oneshot::Receiver<Response>, NotConnected> {
        let (tx, rx) = oneshot::channel();
        self.outbox
            .send(Outgoing {
                command,
                reply: Some(tx),
            })
            .await
            .map_err(|_| NotConnected)?;
        Ok(rx)
    }

    /// Send a frame that gets no reply matched by `re` (`pong`, and `quit`, answered by `bye`).
    pub async fn send(&self, command: Command) -> Result<(), NotConnected> {
        self.outbox
            .send(Outgoing {
                command,
                reply: None,
            })
            .await
            .map_err(|_| NotConnected)
    }
}

async fn run<S>(stream: S, mut requests: mpsc::Receiver<Outgoing>, events: mpsc::Sender<Event>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = FramedRead::new(read, LineCodec::new(MAX_SERVER_LINE));
    let mut pending: HashMap<i64, oneshot::Sender<Response>> = HashMap::new();
    let mut next_id: i64 = 1;
    let mut bye = None;
    let error = loop {
        tokio::select! {
            out = requests.recv() => {
                let Some(out) = out else {
                    // Every handle dropped: hang up.
                    let _ = write.shutdown().await;
                    return;
                };
                let id = out.reply.as_ref().map(|_| {
                    let id = next_id;
                    next_id += 1;
                    id
                });
                let line = Request::new(id.map(RequestId::Int), out.command).encode_line();
                if let Err(e) = write.write_all(&line).await {
                    break Some(e.to_string());
                }
                if let (Some(id), Some(reply)) = (id, out.reply) {
                    pending.insert(id, reply);
                }
            }
            line = lines.next() => match line {
                Some(Ok(Line::Frame(bytes))) => {
                    let line = String::from_utf8_lossy(&bytes).into_owned();
                    let frame = ServerFrame::decode(line.as_bytes()).ok();
                    if matches!(frame, Some(ServerFrame::Ping {})) {
                        let pong = Request::new(None, Command::Pong {}).encode_line();
                        if let Err(e) = write.write_all(&pong).await {
                            break Some(e.to_string());
                        }
                    }
                    if let Some(ServerFrame::Bye(b)) = &frame {
                        bye = Some(b.clone());
                    }
                    let mut incoming = Incoming { line, frame, is_reply: false };
                    if let Some(reply) = reply_id(&incoming).and_then(|id| pending.remove(&id)) {
                        incoming.is_reply = true;
                        let _ = reply.send(incoming.clone());
                    }
                    if events.send(Event::Frame(incoming)).await.is_err() {
                        // Nobody listens any more; the handle owner is shutting down.
                        return;
                    }
                }
                Some(Ok(Line::TooLong)) => {
                    tracing::warn!("ignored a server line longer than {MAX_SERVER_LINE} bytes");
                }
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            },
        }
    };
    // Fail the waiting requests before announcing the end, so a requester never waits for a
    // reply that cannot come.
    drop(pending);
    let _ = events.send(Event::Closed(Closed { bye, error })).await;
}

/// The `re` of a reply, when it is one of our integer ids.
fn reply_id(incoming: &Incoming) -> Option<i64> {
    let re = match &incoming.frame {
        Some(ServerFrame::Reply(r)) => r.re.clone(),
        Some(ServerFrame::Error(e)) => e.re.clone(),
        Some(ServerFrame::Welcome(w)) => w.re.clone(),
        Some(_) => None,
        // An unknown frame type or ok cmd can still be a reply.
        None => serde_json::from_str::<serde_json::Value>(&incoming.line)
            .ok()
            .and_then(|v| v.get("re").and_then(serde_json::Value::as_i64))
            .map(RequestId::Int),
    }?;
    match re {
        RequestId::Int(i) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeServer, T};
    use tokio::time::timeout;

    fn pair() -> (Connection, mpsc::Receiver<Event>, FakeServer) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (conn, events) = Connection::spawn(client);
        (conn, events, FakeServer::new(server))
    }

    async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
        timeout(T, events.recv()).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn replies_are_matched_by_re_and_events_flow_in_order() {
        let (conn, mut events, mut server) = pair();
        let a = conn
            .request(Command::Rooms {
                after: None,
                limit: None,
            })
            .await
            .unwrap();
        let b = conn
            .request(Command::Who { room: "x".into() })
            .await
            .unwrap();
        let ra = server.recv().await;
        let rb = server.recv().await;
        assert_eq!(
            (ra["type"].as_str(), ra["id"].as_i64()),
            (Some("rooms"), Some(1))
        );
        assert_eq!(
            (rb["type"].as_str(), rb["id"].as_i64()),
            (Some("who"), Some(2))
        );

        server
            .send(r#"{"type":"join","room":"x","nick":"bob"}"#)
            .await;
        server
            .send(r#"{"type":"ok","cmd":"who","re":2,"room":"x","members":[]}"#)
            .await;
        server
            .send(r#"{"type":"error","code":"bad_frame","message":"m","re":1}"#)
            .await;

        let rb = timeout(T, b).await.unwrap().unwrap();
        assert!(rb.is_reply);
        assert!(matches!(rb.frame, Some(ServerFrame::Reply(_))));
        let ra = timeout(T, a).await.unwrap().unwrap();
        assert!(matches!(ra.frame, Some(ServerFrame::Error(_))));

        let Event::Frame(join) = next_event(&mut events).await else {
            panic!()
        };
        assert!(!join.is_reply);
        assert_eq!(join.line, r#"{"type":"join","room":"x","nick":"bob"}"#);
        let Event::Frame(who) = next_event(&mut events).await else {
            panic!()
        };
        assert!(who.is_reply);
    }

    #[tokio::test]
    async fn ping_is_answered_and_unknown_frames_pass_through() {
        let (_conn, mut events, mut server) = pair();
        server.send(r#"{"type":"ping"}"#).await;
        assert_eq!(server.recv().await, serde_json::json!({"type":"pong"}));
        server.send(r#"{"type":"shiny_new_event","x":1}"#).await;
        let Event::Frame(ping) = next_event(&mut events).await else {
            panic!()
        };
        assert_eq!(ping.frame, Some(ServerFrame::Ping {}));
        let Event::Frame(unknown) = next_event(&mut events).await else {
            panic!()
        };
        assert_eq!(unknown.frame, None);
        assert_eq!(unknown.line, r#"{"type":"shiny_new_event","x":1}"#);
    }

    #[tokio::test]
    async fn unknown_reply_cmd_still_answers_its_request() {
        let (conn, _events, mut server) = pair();
        let rx = conn
            .request(Command::Rooms {
                after: None,
                limit: None,
            })
            .await
            .unwrap();
        server.recv().await;
        server.send(r#"{"type":"ok","cmd":"future","re":1}"#).await;
        let r = timeout(T, rx).await.unwrap().unwrap();
        assert_eq!(r.frame, None);
        assert!(r.is_reply);
    }

    #[tokio::test]
    async fn close_fails_pending_requests_and_reports_bye() {
        let (conn, mut events, mut server) = pair();
        let rx = conn
            .request(Command::Rooms {
                after: None,
                limit: None,
            })
            .await
            .unwrap();
        server.recv().await;
        server
            .send(r#"{"type":"bye","reason":"shutting_down","message":"restarting"}"#)
            .await;
        drop(server);
        assert!(timeout(T, rx).await.unwrap().is_err());
        let Event::Frame(bye) = next_event(&mut events).await else {
            panic!()
        };
        assert!(matches!(bye.frame, Some(ServerFrame::Bye(_))));
        let Event::Closed(closed) = next_event(&mut events).await else {
            panic!()
        };
        assert_eq!(closed.bye.unwrap().message, "restarting");
        drop(conn);
    }
}
