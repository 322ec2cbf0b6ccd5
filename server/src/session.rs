//! One connection: the loop that reads lines and hands them to its [`Client`], its timers
//! (hello timeout, keepalive), and the writer task that drains its outbox to the socket. When a
//! request needs a room back from the data directory, the loop awaits that load (bounded by
//! [`LOAD_TIMEOUT`]) before the next line.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use lanchat_protocol::{ByeReason, ErrorCode, ErrorFrame, Line, LineCodec, ServerFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admission::Permit;
use crate::dispatch::{Client, End, Step};
use crate::logsafe;
use crate::outbox::{
    direct_outbox, framed_outbox, Alarm, Batch, Chunk, Framing, Outbox, OutboxReceiver,
};
use crate::store::RoomLoad;
use crate::{Peer, Shared};

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
/// The longest a request waits for its room to come back from disk.
const LOAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection carries protocol lines: the codec that reads them (JSON lines, or WebSocket
/// text messages) and how the writer frames them. The session loop, its timers, limits and
/// outbox are the same for every transport.
pub trait Transport: Decoder<Item = Line, Error = std::io::Error> + Send + 'static {
    /// How the writer frames the outbox's lines.
    fn framing(&self) -> Framing {
        Framing::Lines
    }

    /// The session's outbox, for replies the transport itself sends (a WebSocket pong).
    fn attach(&mut self, _outbox: &Outbox) {}

    /// The session has ended so (its bye, if any, queued): queue what the transport sends last
    /// (a WebSocket close) and let go of the outbox.
    fn finish(&mut self, _end: &End) {}
}

impl Transport for LineCodec {}

/// What a session starts from besides its streams: who is on the other end, what every session
/// shares, the server's shutdown, the connection's slot, and when its `hello` is due.
pub struct Start {
    pub peer: Peer,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
    pub permit: Permit,
    /// The hello timeout counts from the accept, so time spent on a TLS handshake (or an HTTP
    /// upgrade) is part of it.
    pub hello_deadline: Instant,
}

/// Serve one connection until it ends. Returns when the socket is closed.
pub fn serve<R, W>(
    reader: R,
    writer: W,
    peer: Peer,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    permit: Permit,
) -> impl Future<Output = ()> + Send
where
    R: Ready,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let codec = LineCodec::new(shared.config.limits.max_line);
    let start = Start {
        peer,
        hello_deadline: Instant::now() + shared.config.hello_timeout,
        shared,
        shutdown,
        permit,
    };
    serve_until(reader, codec, writer, start)
}

/// [`serve`] a connection with its own writer task (TLS, Unix sockets), by `start.hello_deadline`.
///
/// (These are plain functions returning the session's future, not `async fn`s: an `async fn`
/// keeps its arguments in its future beside the one it awaits, and every connected client
/// holds one session future.)
pub fn serve_until<R, C, W>(
    reader: R,
    codec: C,
    writer: W,
    start: Start,
) -> impl Future<Output = ()> + Send
where
    R: Ready,
    C: Transport,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let outbox = move |shared: &Shared, framing: Framing| {
        let config = &shared.config;
        let (outbox, receiver) = framed_outbox(config.outbox_frames, config.outbox_bytes, framing);
        let task = tokio::spawn(write_loop(writer, receiver, framing));
        (outbox, Writer::Task(task))
    };
    session(reader, codec, outbox, start)
}

/// [`serve_until`] for a plain TCP connection (JSON lines or WebSocket): its lines are written
/// by the server's flusher, once per turn of the runtime (see `outbox::Flusher`); a writer task
/// exists only while the socket is full, and the session drains what is left when it ends.
/// Needs the flusher running ([`crate::run`] starts it).
pub fn serve_plain<R, C>(
    reader: R,
    codec: C,
    writer: tokio::net::tcp::OwnedWriteHalf,
    start: Start,
) -> impl Future<Output = ()> + Send
where
    R: Ready,
    C: Transport,
{
    let outbox = move |shared: &Shared, framing: Framing| {
        let config = &shared.config;
        let (outbox, receiver) = direct_outbox(
            config.outbox_frames,
            config.outbox_bytes,
            framing,
            shared.flusher.clone(),
            writer,
        );
        (outbox, Writer::Direct(receiver))
    };
    session(reader, codec, outbox, start)
}

/// Who writes a session's socket, as the session sees it when it ends.
enum Writer {
    /// Its own writer task (TLS, Unix sockets).
    Task(tokio::task::JoinHandle<()>),
    /// The server's flusher, and a task only while the socket is full: the session drains
    /// what is left itself.
    Direct(OutboxReceiver),
}

/// The body of a session, whichever its transport and however its lines are written: `outbox`
/// makes its outbox and whatever writes it.
///
/// The session's parts are made here, before the future: an `async` body keeps a slot for each
/// argument it moves into something else, and every connected client holds one such future.
fn session<R, C, O>(
    reader: R,
    mut codec: C,
    outbox: O,
    start: Start,
) -> impl Future<Output = ()> + Send
where
    R: Ready,
    C: Transport,
    O: FnOnce(&Shared, Framing) -> (Outbox, Writer),
{
    let Start {
        peer,
        shared,
        shutdown,
        permit,
        hello_deadline,
    } = start;
    let (outbox, writer) = outbox(&shared, codec.framing());
    let id = shared.next_session_id();
    debug!(%peer, session = id, "connected");

    codec.attach(&outbox);
    // No read buffer before the first bytes if the reader can wait for them without one.
    let capacity = if R::WAITS { 0 } else { READ_BUFFER };
    let mut reader = FramedRead::with_capacity(reader, codec, capacity);
    let mut client = Client::new(id, peer, permit, shared.clone(), outbox);
    async move {
        let end = run(&mut client, &mut reader, &shared, &shutdown, hello_deadline).await;
        // On the heap, once per session: what the end keeps across its waits (the end, the
        // permit, the drain) would otherwise have slots of its own in every session's future
        // for its whole life, beside the loop's.
        Box::pin(finish(client, reader, writer, shared, end)).await
    }
}

/// The end of a session: log it, leave the state, let the writer drain what is queued (the
/// bye included), linger after a bye, then give the connection's slot back.
async fn finish<R: Ready, C: Transport>(
    mut client: Client,
    mut reader: FramedRead<R, C>,
    writer: Writer,
    shared: Arc<Shared>,
    end: End,
) {
    let linger = matches!(end, End::Quit(..) | End::Bye(..));
    let slow = matches!(end, End::SlowConsumer);
    let reason = end.describe();
    match client.nick() {
        Some(nick) => info!(peer = %client.peer(), %nick, %reason, "disconnected"),
        None => debug!(peer = %client.peer(), %reason, "disconnected before hello"),
    }
    // Leaving the state drops every other handle on the outbox, so the writer drains what is
    // queued (the bye included) and finishes.
    // The connection keeps its slot until the socket is closed (below), not just until it left.
    let permit = client.take_permit();
    drop(client);
    reader.decoder_mut().finish(&end);
    let grace = shared.config.shutdown_grace;
    // A slow consumer's writer may be stuck on a full socket: stop it now.
    match writer {
        Writer::Task(mut task) => {
            if slow || tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        Writer::Direct(mut receiver) => {
            if !slow {
                let _ = tokio::time::timeout(grace, receiver.drain()).await;
            }
            receiver.abort_writer();
        }
    }
    if linger {
        self::linger(reader.get_mut()).await;
    }
    drop(permit);
}

/// After a bye, read and discard for at most [`LINGER`] (or until the peer closes), so that the
/// peer sees the bye before the close rather than a reset that may destroy it.
pub async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    // On the heap: an array here would sit in every session's future for its whole life.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Drain the outbox to the socket: everything already queued goes out together.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut receiver: OutboxReceiver,
    framing: Framing,
) {
    // No cancellation is watched here (a future per batch costs locks on the hot path): when
    // the outbox overflows, the session ends and aborts this task.
    let mut batch = Batch::new(framing);
    while receiver.recv_batch(&mut batch).await {
        while let Some(chunk) = batch.next_chunk(WRITE_CHUNK) {
            let written = match chunk {
                Chunk::Gathered(bytes) => writer.write_all(bytes).await,
                Chunk::Line(line) => writer.write_all(&line).await,
            };
            // A TCP stream's flush does nothing; a TLS stream's sends the records it still holds.
            // Over TLS the chunk is encrypted once for this connection, as one write.
            if written.is_err() || writer.flush().await.is_err() {
                return;
            }
            // The kernel has the chunk: it stops counting against the outbox's bound.
            receiver.written(&mut batch);
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Size the read buffer for the next read, given the lines the last wake-up found. A session
/// whose reads come in full (a bot, a bridge, a busy sender) gets a large one, so that a read
/// takes hundreds of lines rather than a few; an interactive one (a line at a time) gives its
/// buffer back when it is empty, if its reader can wait for bytes without one (`lazy`: see
/// [`Ready`]), or else keeps a small one.
fn size_read_buffer(buf: &mut BytesMut, lines: usize, lazy: bool) {
    if lines >= BUSY_LINES {
        buf.reserve(READ_BUFFER_BUSY);
    } else if buf.is_empty() && lazy {
        *buf = BytesMut::new();
    } else if buf.is_empty() && buf.capacity() > READ_BUFFER {
        *buf = BytesMut::with_capacity(READ_BUFFER);
    }
}

/// The next line: once the reader has bytes (see [`Ready`]), with a read buffer for them.
async fn next_line<R: Ready, C: Transport>(
    reader: &mut FramedRead<R, C>,
) -> Option<std::io::Result<Line>> {
    if R::WAITS && reader.read_buffer().is_empty() {
        let io = reader.get_mut();
        std::future::poll_fn(move |cx| io.poll_ready(cx)).await;
    }
    // Reserved here, not left to the codec's reader: from an empty buffer it reads 8 bytes at a
    // time, growing it one doubling per read.
    reader.read_buffer_mut().reserve(READ_BUFFER);
    reader.next().await
}

/// A reader that can wait until it has bytes without a buffer to read them into, so that an
/// idle session holds none (issue 17: memory per idle client). Those that cannot keep a small
/// buffer.
pub trait Ready: AsyncRead + Unpin + Send + 'static {
    /// [`Ready::poll_ready`] waits for bytes; else it is ready at once.
    const WAITS: bool = false;

    /// Ready when a read may find bytes (or the end, or an error). A poll, not a future: it
    /// uses the socket's own reader slot, so waiting costs the session nothing.
    fn poll_ready(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Ready for tokio::net::tcp::OwnedReadHalf {
    const WAITS: bool = true;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // An error is for the read to find.
        self.as_ref().poll_read_ready(cx).map(|_| ())
    }
}

impl Ready for tokio::net::unix::OwnedReadHalf {
    const WAITS: bool = true;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.as_ref().poll_read_ready(cx).map(|_| ())
    }
}

impl<T: AsyncRead + Send + 'static> Ready for tokio::io::ReadHalf<T> {}

/// The connection loop of one session: lines in, timers, shutdown.
// A plain function returning its future, not an `async fn`: an `async fn` keeps a slot for each
// argument beside the local it is bound to, 40 bytes in every session's future here (and the
// session task's allocation grows in steps of 128 bytes; see `plain_tcp_session_futures_stay_small`).
#[allow(clippy::manual_async_fn)]
fn run<'a, R: Ready, C: Transport>(
    client: &'a mut Client,
    reader: &'a mut FramedRead<R, C>,
    shared: &'a Shared,
    shutdown: &'a CancellationToken,
    hello_deadline: Instant,
) -> impl Future<Output = End> + Send + 'a {
    async move {
        let start = Instant::now();
        let ping_interval = Duration::from_secs(shared.config.limits.ping_interval_s);
        let mut last_heard = start;
        let mut pinged = false;
        let timer = tokio::time::sleep_until(hello_deadline);
        tokio::pin!(timer);
        // Made once, not per line: each of these takes locks when it is created and dropped.
        let alarms = client.outbox().alarms();
        let alarm = alarms.notified();
        tokio::pin!(alarm);
        let shutting_down = shutdown.cancelled();
        tokio::pin!(shutting_down);
        let end = 'session: loop {
            tokio::select! {
                biased;
                _ = &mut alarm => {
                    match alarms.raised() {
                        Some(Alarm::SlowConsumer) => break End::SlowConsumer,
                        Some(Alarm::Replaced) => break End::Bye(
                            ByeReason::Replaced,
                            "another connection said hello with this nick's secret".into(),
                        ),
                        None => alarm.set(alarms.notified()),
                    }
                }
                _ = &mut shutting_down => {
                    break End::Bye(ByeReason::ShuttingDown, "the server is shutting down".into())
                }
                item = next_line(reader) => {
                    // One clock read per wake-up: the lines drained below arrived together.
                    last_heard = Instant::now();
                    let now = last_heard.into_std();
                    pinged = false;
                    // Then every line already buffered, without a trip through the select.
                    let mut item = item;
                    for n in 1.. {
                        let line = match item {
                            Some(Ok(line)) => line,
                            Some(Err(_)) | None => break 'session End::Lost,
                        };
                        let mut step = client.line(line, now);
                        // This session's next line waits (replies stay in request order); no
                        // other session does, and the chat lock is not held meanwhile. Boxed, and
                        // one await for both kinds: rare, and the session future stays small.
                        while matches!(step, Step::Load(_) | Step::Account(_)) {
                            step = Box::pin(wait_step(client, shared, step, now)).await;
                        }
                        if let Step::End(end) = step {
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
                                size_read_buffer(reader.read_buffer_mut(), n, R::WAITS);
                                break;
                            }
                        }
                    }
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if !client.is_registered() {
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
                        client.outbox().push(ServerFrame::Ping {}.encode_line());
                        timer.as_mut().reset(now + ping_interval);
                    }
                }
            }
            if client.is_registered() && timer.deadline() == hello_deadline {
                timer.as_mut().reset(last_heard + ping_interval);
            }
        };
        client.end(&end);
        end
    }
}

/// Take a step that waits (a room's load, an accounts job) and return the step after it.
async fn wait_step(
    client: &mut Client,
    shared: &Shared,
    step: Step,
    now: std::time::Instant,
) -> Step {
    match step {
        Step::Load(pending) => {
            let load = load_room(shared, &pending.room_key).await;
            client.resume(*pending, load, now)
        }
        Step::Account(job) => {
            let done = job.run(shared).await;
            client.account_done(done, Instant::now().into_std())
        }
        other => other,
    }
}

/// Bring a room back from the data directory, through the store's writer (so that it sees
/// every message accepted before). `None`, logged, when that fails or takes longer than
/// [`LOAD_TIMEOUT`]: the request then goes on with the room empty rather than stall the session.
async fn load_room(shared: &Shared, room_key: &str) -> Option<RoomLoad> {
    let store = shared.chat.store()?;
    let room = logsafe::field(room_key);
    let Some(answer) = store.load(room_key) else {
        warn!(%room, "history writer busy: room not loaded from disk, it starts empty");
        return None;
    };
    match tokio::time::timeout(LOAD_TIMEOUT, answer).await {
        Ok(Ok(load)) => Some(load),
        Ok(Err(_)) => {
            warn!(%room, "history writer stopped: room not loaded from disk, it starts empty");
            None
        }
        Err(_) => {
            warn!(%room, "loading a room from disk timed out: it starts empty");
            None
        }
    }
}

/// Refuse a connection before its session (over a limit, or plain when TLS is required): an
/// error and a bye, then close.
pub async fn refuse<W: AsyncWrite + Unpin>(
    mut writer: W,
    code: ErrorCode,
    reason: ByeReason,
    message: &str,
) {
    let mut out = Vec::new();
    out.extend_from_slice(
        &ServerFrame::Error(ErrorFrame {
            code,
            message: message.to_owned(),
            re: None,
            retry_after_ms: None,
        })
        .encode_line(),
    );
    out.extend_from_slice(
        &ServerFrame::Bye(lanchat_protocol::Bye {
            re: None,
            reason,
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
    /// 2.5 KiB per client, BENCHMARKS.md). A 4 KiB array held across an await once hid here.
    #[tokio::test]
    async fn session_future_stays_small() {
        let shared = crate::Shared::new(crate::Config::default());
        let (a, _b) = tokio::io::duplex(64);
        let (r, w) = tokio::io::split(a);
        let permit = shared.admit(crate::admission::Source::Unknown).unwrap();
        let token = CancellationToken::new();
        let fut = serve(r, w, Peer(None), shared.clone(), token, permit);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 2048, "session future is {size} bytes");
        eprintln!("session future: {size} bytes");
    }

    /// The size of a plain TCP session's future with `codec` (as port.rs starts it: the reader
    /// behind the bytes read to decide, written by the flusher).
    async fn plain_session_size<C: Transport>(codec: C) -> usize {
        let shared = crate::Shared::new(crate::Config::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (r, w) = listener.accept().await.unwrap().0.into_split();
        let r = crate::port::Prefixed::new(b"", r);
        let permit = shared.admit(crate::admission::Source::Unknown).unwrap();
        let token = CancellationToken::new();
        let deadline = Instant::now();
        let start = Start {
            peer: Peer(None),
            shared,
            shutdown: token,
            permit,
            hello_deadline: deadline,
        };
        let fut = serve_plain(r, codec, w, start);
        std::mem::size_of_val(&fut)
    }

    /// The sessions most clients have: JSON lines or WebSocket over plain TCP. The task that
    /// holds one is allocated in steps of 128 bytes (its alignment): with tokio 1.54 a task is
    /// its header (32 bytes), the scheduler's handle and the task's id (16), the tracker's
    /// token (8), the future and the trailer (48), so 1,024 bytes while the future is at most
    /// 920 (1,152 up to 1,048).
    #[tokio::test]
    async fn plain_tcp_session_futures_stay_small() {
        let lines = plain_session_size(LineCodec::new(1024)).await;
        let websocket = plain_session_size(crate::web::ws::WsCodec::new(1024)).await;
        eprintln!("plain TCP session future: {lines} bytes, WebSocket: {websocket}");
        assert!(lines <= 920, "plain TCP session future is {lines} bytes");
        assert!(
            websocket <= 920,
            "WebSocket session future is {websocket} bytes"
        );
    }
}
