//! A session's bounded outbound queue: encoded lines waiting for that session's writer task.
//!
//! Bounded twice, by frames and by bytes, because either alone lets a slow reader hold a lot of
//! memory (many tiny frames, or a few 200-message history replies). A push never waits: when the
//! queue is full the push fails, the queue is marked overflowed, and the session ends as a slow
//! consumer, so no sender and no other session is ever delayed by one slow reader.
//!
//! Why not a tokio mpsc channel: fan-out pushes one line per recipient, and a channel pays a
//! semaphore, a slot and a wake-up for each. Here a push is a short uncontended lock and a
//! `VecDeque` push, and the writer is woken only when it is actually waiting; it then takes
//! everything queued in one swap (the two sides trade buffers, so steady traffic allocates
//! nothing) and writes it in as few writes as it can (see [`Batch`]).
//!
//! The bound covers what is queued *and* what the writer has taken but not yet handed to the
//! kernel: a line stops counting only once the write of its chunk has returned. A reader that
//! stops reading thus holds at most `max_bytes` of lines (and `max_frames` frames) in the
//! server, wherever they are, plus the writer's one gathered chunk buffer (at most the chunk
//! size). Were the count reset when the writer takes a batch, a writer stuck on a full socket
//! would hold one full queue while the queue filled again: twice the bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// A queued line: a reference to an encoded line, 8 bytes in a queue where a `Bytes` takes 32.
/// A room's event is one allocation shared by every member's queue; at 1,000 queues of 100
/// lines each, a quarter of the memory a push writes to is a quarter of the cache misses.
pub type LineRef = Arc<Bytes>;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

mod flusher;
pub use flusher::Flusher;

/// The sending side; cheap to clone (one per room the session is in).
#[derive(Debug)]
pub struct Outbox {
    queue: Arc<Queue>,
}

/// The receiving side, owned by the session's writer task.
#[derive(Debug)]
pub struct OutboxReceiver {
    queue: Arc<Queue>,
}

// Aligned so that a push, which is made once per recipient of every message, touches one cache
// line of the queue: the lock and everything it guards (see the layout test).
#[derive(Debug)]
#[repr(C, align(64))]
struct Queue {
    state: Mutex<Pending>,
    /// Wakes the writer when it waits on an empty queue (or the last sender is gone).
    ready: Notify,
    /// Live `Outbox` handles; at zero the writer drains what is left and ends.
    senders: AtomicUsize,
    /// Wakes the session when it must end for a reason others found (see [`Alarm`]): the
    /// queue overflowed, or another connection took its nick over. One `Notify` inline rather
    /// than a cancellation token each: nothing allocated per session, one waiter to poll.
    alarm: Notify,
    /// A plain TCP session's socket and the flusher that writes to it (see [`Flusher`]);
    /// `None` for a session whose writer task does all the writing.
    direct: Option<Direct>,
    /// The bounds, which the state keeps only as the room left under them.
    max_frames: u32,
    max_bytes: u32,
}

/// What the flusher needs to write a queue out, and the task that takes over when a write
/// would block (spawned then, not before: an idle session has no writer task).
#[derive(Debug)]
struct Direct {
    flusher: Arc<Flusher>,
    socket: OwnedWriteHalf,
    handed: Mutex<Option<JoinHandle<()>>>,
}

/// What the lock guards: the queued lines, the room left under the bounds, and the flags.
/// The room is kept so that a push reads one figure per bound and writes only the bytes: the
/// writer, which changes its share once per chunk, does the rest.
#[derive(Debug, Default)]
struct Pending {
    lines: VecDeque<LineRef>,
    /// Bytes ready for the wire, written before `lines`: what was left of a write of the
    /// flusher's that would have blocked (a part of a chunk, already framed for WebSocket).
    /// Boxed, and only while there are some (rarely): the lock and what a push reads stay in
    /// one cache line.
    #[allow(clippy::box_collection)] // 8 bytes here, not a `VecDeque`'s 32: see above
    raw: Option<Box<VecDeque<Bytes>>>,
    /// The writer frames lines as WebSocket text frames: lines delivered to many come framed.
    /// (Here rather than beside the lock: a push reads it under the lock, in the same line.)
    websocket: bool,
    /// Frames `lines` may hold: `max_frames` less those the writer has taken and not yet written.
    max_queued: u32,
    /// Bytes that may still be pushed: `max_bytes` less those in `lines` and those the writer
    /// has taken and not yet written (the batch keeps count of its share).
    room_bytes: u32,
    /// Nobody is writing this queue out nor about to: the next push must arrange it (wake the
    /// writer task, or hand the queue to the flusher).
    writer_waiting: bool,
    /// The flusher has taken lines from here and is writing them.
    flushing: bool,
    /// A write of the flusher's would have blocked: the writer task is in charge (it waits for
    /// the socket) until the queue is empty again.
    handed_off: bool,
    /// The writer is gone: nothing more will be read.
    closed: bool,
    /// A push failed for lack of room; no push succeeds after that.
    overflowed: bool,
    /// Another connection took this session's nick over (`bye replaced`).
    replaced: bool,
}

/// Make a queue holding at most `max_frames` lines and `max_bytes` bytes.
pub fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    make(max_frames, max_bytes, None, Framing::Lines)
}

/// [`outbox`] for a session whose writer frames lines so: a WebSocket session's outbox takes
/// lines delivered to many already framed (see [`Outbox::push_shared`]).
pub fn framed_outbox(
    max_frames: usize,
    max_bytes: usize,
    framing: Framing,
) -> (Outbox, OutboxReceiver) {
    make(max_frames, max_bytes, None, framing)
}

/// [`outbox`] for a plain TCP session: `flusher` writes what is queued straight to `socket`,
/// once per turn of the runtime; a task is spawned to take over only when a write would block,
/// and the session drains the rest itself when it ends ([`OutboxReceiver::drain`]).
pub fn direct_outbox(
    max_frames: usize,
    max_bytes: usize,
    framing: Framing,
    flusher: Arc<Flusher>,
    socket: OwnedWriteHalf,
) -> (Outbox, OutboxReceiver) {
    let direct = Direct {
        flusher,
        socket,
        handed: Mutex::new(None),
    };
    make(max_frames, max_bytes, Some(direct), framing)
}

fn make(
    max_frames: usize,
    max_bytes: usize,
    direct: Option<Direct>,
    framing: Framing,
) -> (Outbox, OutboxReceiver) {
    let max_frames = u32::try_from(max_frames.max(1)).unwrap_or(u32::MAX);
    let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX);
    let queue = Arc::new(Queue {
        state: Mutex::new(Pending {
            max_queued: max_frames,
            room_bytes: max_bytes,
            // A direct queue starts idle; a writer task says so itself when it first waits.
            writer_waiting: direct.is_some(),
            websocket: framing == Framing::WebSocket,
            ..Pending::default()
        }),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
        alarm: Notify::new(),
        direct,
        max_frames,
        max_bytes,
    });
    (
        Outbox {
            queue: queue.clone(),
        },
        OutboxReceiver { queue },
    )
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it; recover rather than spread a poison.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn overflow(&self) {
        self.alarm.notify_one();
    }
}

/// Why others want a session to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// Its queue overflowed: a slow consumer.
    SlowConsumer,
    /// A `hello` with its nick and secret took the nick over.
    Replaced,
}

/// A handle on a session's alarms, which does not count as a sender (the session can end
/// while others hold one).
#[derive(Debug, Clone)]
pub struct Alarms {
    queue: Arc<Queue>,
}

impl Alarms {
    /// Tell the session that another connection took its nick over.
    pub fn replace(&self) {
        self.queue.lock().replaced = true;
        self.queue.alarm.notify_one();
    }

    /// Completes when an alarm may have gone off since the last one was seen (a permit is kept
    /// for a future made later): then [`Alarms::raised`] says which.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.queue.alarm.notified()
    }

    /// The alarm raised, if any; a slow consumer first.
    pub fn raised(&self) -> Option<Alarm> {
        let state = self.queue.lock();
        if state.overflowed {
            Some(Alarm::SlowConsumer)
        } else if state.replaced {
            Some(Alarm::Replaced)
        } else {
            None
        }
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The writer may be waiting: let it see that nothing more will come.
            self.queue.ready.notify_one();
        }
    }
}

impl Outbox {
    /// Queue a line without waiting. Returns false if the line was not queued: the queue
    /// overflowed (now or before) or the writer is gone.
    pub fn push(&self, line: Bytes) -> bool {
        // Allocated before the lock is taken, not while it is held.
        let line = Arc::new(line);
        self.push_with(|_| line)
    }

    /// [`push`](Self::push) the line `make` returns, given whether the writer frames lines for
    /// WebSocket (read under the push's own lock).
    fn push_with(&self, make: impl FnOnce(bool) -> LineRef) -> bool {
        let q = &*self.queue;
        let mut state = q.lock();
        if state.closed || state.overflowed {
            return false;
        }
        let line = make(state.websocket);
        if state.lines.len() >= state.max_queued as usize || line.len() > state.room_bytes as usize
        {
            state.overflowed = true;
            drop(state);
            q.overflow();
            return false;
        }
        // Cannot truncate: the line fits in `room_bytes`, a `u32`.
        state.room_bytes -= line.len() as u32;
        state.lines.push_back(line);
        let wake = std::mem::take(&mut state.writer_waiting);
        drop(state);
        if wake {
            match &q.direct {
                Some(direct) => direct.flusher.schedule(self.queue.clone()),
                None => q.ready.notify_one(),
            }
        }
        true
    }

    /// Queue a line that goes to many sessions (a room's event): as it is, or, for a WebSocket
    /// session, as a text frame made once for all of them (`framed` keeps it between calls),
    /// so that no recipient pays for framing the line again.
    pub fn push_shared(&self, line: &LineRef, framed: &mut Option<LineRef>) -> bool {
        self.push_with(|websocket| {
            if websocket {
                let frame =
                    framed.get_or_insert_with(|| Arc::new(crate::web::ws::text_frame(line)));
                frame.clone()
            } else {
                line.clone()
            }
        })
    }

    /// The session's alarms: a push that failed for lack of room raises one (the session ends
    /// as a slow consumer).
    pub fn alarms(&self) -> Alarms {
        Alarms {
            queue: self.queue.clone(),
        }
    }
}

impl OutboxReceiver {
    /// Wait for lines and move all of them into `batch` (which must be empty: everything taken
    /// before has been written). They keep counting against the bounds until
    /// [`written`](Self::written) or the next call gives them back. Returns false, with `batch`
    /// empty, once every `Outbox` is dropped and nothing is left. Before it waits on an empty
    /// queue it lets `batch` give back large buffers: an idle session holds little.
    pub async fn recv_batch(&mut self, batch: &mut Batch) -> bool {
        debug_assert!(batch.lines.is_empty());
        loop {
            {
                let mut state = self.queue.lock();
                // The batch is written: what it took stops counting. What counts now is what
                // is queued, which it takes, and which goes on counting.
                state.room_bytes += std::mem::take(&mut batch.counted_bytes);
                if !state.lines.is_empty() {
                    self.take(&mut state, batch);
                    return true;
                }
                batch.counted_frames = 0;
                state.max_queued = self.queue.max_frames;
                if self.queue.senders.load(Ordering::Acquire) == 0 {
                    return false;
                }
                state.writer_waiting = true;
            }
            batch.shrink();
            // A notify_one before we wait leaves a permit, so no wake-up is lost.
            self.queue.ready.notified().await;
        }
    }

    /// Move everything queued into `batch`, which goes on counting it against the bounds.
    fn take(&self, state: &mut Pending, batch: &mut Batch) {
        self.queue.take(state, batch);
    }

    /// The chunk last taken from `batch` has been written: its lines stop counting against the
    /// bounds. When it was the batch's last chunk this takes no lock: the writer's next
    /// [`recv_batch`](Self::recv_batch), which it calls without waiting in between, gives them
    /// back in the lock it takes anyway (so a batch of one chunk, the usual case, costs one
    /// lock, as it did before the writer's share was counted).
    pub fn written(&self, batch: &mut Batch) {
        self.queue.written(batch);
    }
}

impl Queue {
    /// Move everything queued into `batch`, which goes on counting it against the bounds.
    fn take(&self, state: &mut Pending, batch: &mut Batch) {
        std::mem::swap(&mut state.lines, &mut batch.lines);
        if let Some(raw) = state.raw.take() {
            batch.raw.extend(*raw);
        }
        // (`lines.len()` fits: it was at most `max_queued`, a `u32`.)
        batch.counted_frames = batch.lines.len() as u32;
        batch.counted_bytes = self.max_bytes - state.room_bytes;
        batch.bytes = batch.counted_bytes as usize;
        state.max_queued = self.max_frames - batch.counted_frames;
    }

    /// See [`OutboxReceiver::written`].
    fn written(&self, batch: &mut Batch) {
        if batch.lines.is_empty() {
            return;
        }
        // What is left of the batch goes on counting. (It fits in `u32`s: it was counted so.)
        let (frames, bytes) = (batch.lines.len() as u32, batch.bytes as u32);
        let mut state = self.lock();
        state.max_queued = self.max_frames - frames;
        state.room_bytes += batch.counted_bytes - bytes;
        drop(state);
        (batch.counted_frames, batch.counted_bytes) = (frames, bytes);
    }
}

/// How the writer frames the lines it takes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// As queued: JSON lines, LF included.
    #[default]
    Lines,
    /// Each line as one unmasked WebSocket text frame, without its LF. The header depends only
    /// on the line's length: a few instructions per recipient, the payload shared as for TCP.
    /// An item whose first byte has the high bit set (FIN) is a frame already (a pong, a close,
    /// queued by the WebSocket codec) and goes out as it is: a line starts with `{`.
    WebSocket,
}

/// The writer's side: lines taken from the queue in one swap, and the buffer they are gathered
/// into for writing. The two sides trade line queues, so steady traffic allocates nothing.
#[derive(Debug, Default)]
pub struct Batch {
    lines: VecDeque<LineRef>,
    /// Bytes ready for the wire, written before `lines` as they are (see `Pending::raw`).
    raw: VecDeque<Bytes>,
    /// Bytes in `raw` and `lines`.
    bytes: usize,
    /// This batch's share of the queue's counts: what it took and has not given back, the
    /// chunk being written included.
    counted_frames: u32,
    counted_bytes: u32,
    buf: Vec<u8>,
    framing: Framing,
    /// WebSocket: the header of the long line at the front has been written, its payload not.
    header_sent: bool,
}

/// The next piece of a batch to write.
#[derive(Debug)]
pub enum Chunk<'a> {
    /// Consecutive small lines copied into one buffer: for the short lines of a chat, a copy
    /// costs less than handing the kernel one buffer per line.
    Gathered(&'a [u8]),
    /// A line of the chunk size or more (a long history reply), written from its own buffer.
    Line(Bytes),
}

/// A gathered write buffer larger than this is given back when the queue runs empty.
const BUFFER_KEPT: usize = 512;
/// Line queue capacity kept when the queue runs empty.
const LINES_KEPT: usize = 64;

impl Batch {
    /// An empty batch whose lines go out framed so.
    pub fn new(framing: Framing) -> Batch {
        Batch {
            framing,
            ..Batch::default()
        }
    }

    /// Take the next chunk of at most `max` bytes (or one longer line); `None` once empty.
    pub fn next_chunk(&mut self, max: usize) -> Option<Chunk<'_>> {
        if let Some(raw) = self.raw.pop_front() {
            self.bytes -= raw.len();
            return Some(Chunk::Line(raw));
        }
        if self.framing == Framing::WebSocket {
            return self.next_ws_chunk(max);
        }
        let first = self.lines.front()?.len();
        if first >= max {
            self.bytes -= first;
            return self
                .lines
                .pop_front()
                .map(|l| Chunk::Line(Bytes::clone(&l)));
        }
        self.buf.clear();
        self.buf.reserve(self.bytes.min(max));
        while let Some(line) = self.lines.front() {
            if self.buf.len() + line.len() > max {
                break;
            }
            self.buf.extend_from_slice(line);
            self.bytes -= line.len();
            self.lines.pop_front();
        }
        Some(Chunk::Gathered(&self.buf))
    }

    /// [`next_chunk`](Self::next_chunk) for [`Framing::WebSocket`]: each line as a text frame.
    /// A line too long for a chunk goes as two: its header, then its payload from its own buffer.
    fn next_ws_chunk(&mut self, max: usize) -> Option<Chunk<'_>> {
        let framed = |line: &[u8]| -> (usize, usize) {
            if line.first().is_some_and(|b| b & 0x80 != 0) {
                return (0, 0);
            }
            let payload = line.len() - usize::from(line.last() == Some(&b'\n'));
            (crate::web::ws::header_len(payload), payload)
        };
        let first = self.lines.front()?;
        let (head, payload) = framed(first);
        if self.header_sent || head + payload >= max {
            if !self.header_sent && head > 0 {
                self.header_sent = true;
                let (h, used) = crate::web::ws::header(crate::web::ws::OP_TEXT, payload);
                self.buf.clear();
                self.buf.extend_from_slice(&h[..used]);
                return Some(Chunk::Gathered(&self.buf));
            }
            self.header_sent = false;
            let line = self.lines.pop_front()?;
            self.bytes -= line.len();
            let payload = if head > 0 { payload } else { line.len() };
            return Some(Chunk::Line(line.slice(..payload)));
        }
        self.buf.clear();
        // Room for the lines and a header each: in a chunk a header is 2 or 4 bytes (a payload of
        // 64 KiB or more goes alone, above), one more than the LF it replaces at most. Reserved
        // short, the buffer would grow mid-batch and copy what it holds.
        self.buf
            .reserve((self.bytes + 3 * self.lines.len()).min(max));
        while let Some(line) = self.lines.front() {
            let (head, payload) = framed(line);
            if self.buf.len() + head + payload > max && !self.buf.is_empty() {
                break;
            }
            // Headers of a known size (0x81: FIN and text) are stored in place, not through a
            // copy call.
            match head {
                0 => self.buf.extend_from_slice(line),
                2 => self.buf.extend_from_slice(&[0x81, payload as u8]),
                4 => {
                    let [hi, lo] = (payload as u16).to_be_bytes();
                    self.buf.extend_from_slice(&[0x81, 126, hi, lo]);
                }
                _ => {
                    let (h, used) = crate::web::ws::header(crate::web::ws::OP_TEXT, payload);
                    self.buf.extend_from_slice(&h[..used]);
                }
            }
            if head > 0 {
                self.buf.extend_from_slice(&line[..payload]);
            }
            self.bytes -= line.len();
            self.lines.pop_front();
        }
        Some(Chunk::Gathered(&self.buf))
    }

    fn shrink(&mut self) {
        if self.lines.capacity() > LINES_KEPT {
            self.lines = VecDeque::new();
        }
        if self.buf.capacity() > BUFFER_KEPT {
            self.buf = Vec::new();
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.closed = true;
        state.lines = VecDeque::new();
        state.raw = None;
    }
}

#[cfg(test)]
mod tests;
