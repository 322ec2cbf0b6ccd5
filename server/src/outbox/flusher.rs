//! Writing plain TCP sessions' queues once per turn of the runtime, as Redis does before it
//! sleeps (issue 17).
//!
//! With a writer task per session, a push to a waiting writer wakes it, and the runtime soon
//! runs it: it writes what is queued at that instant, often one line. How many lines a write
//! carries then depends on how the clients write: a sender that writes one message per `write()`
//! (a person, most bots) cost the server three to four times the sends of one that pipelines.
//!
//! Here a push to an idle queue only puts the queue on the flusher's list, and the flusher
//! runs after the rest of the turn: every session that had lines to read has read them and
//! fanned them out, and each queue is written once with everything the turn put in it, with a
//! non-blocking write from the flusher itself (no task woken per session). The busier the server,
//! the longer a turn and the more a write carries; an idle server writes a lone line at once.
//!
//! A write that would block (a reader that is behind) hands the queue to a writer task spawned
//! for it, which waits for the socket and writes until the queue is empty, gives the queue back
//! and ends. An idle session has no writer task at all; when it ends, the session drains what
//! is left itself ([`OutboxReceiver::drain`]).
//! Everything else is as before: one writer at a time per queue, lines in order, the same
//! bounds (lines the flusher holds count until written), slow consumers dropped by the push.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use super::{Batch, Chunk, Framing, OutboxReceiver, Pending, Queue};

/// Bytes gathered into one write at most (as the writer task's chunks).
const WRITE_CHUNK: usize = 64 * 1024;
/// Line buffer capacity a queue always keeps (4 line references, 32 bytes); more only while its
/// writes need it (see `Queue::flush`).
const LINES_KEPT: usize = 4;
/// A queue left with a larger buffer gives it back at the next pass that finds it empty, or
/// after this long if no pass comes.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_millis(100);
/// A pass that took at least this much CPU is followed by a pause as long (timers are 1 ms
/// granular).
const COALESCE_FROM: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest pause after a pass.
const COALESCE_MAX: std::time::Duration = std::time::Duration::from_millis(20);
/// A pass whose writes carried this many lines each (on average) or more is followed by a pause
/// of at least [`COALESCE_FROM`], however little CPU it took: lines come faster than the queues
/// are written.
const COALESCE_LINES: usize = 4;
/// Queues written before the flusher lets the sessions run (and comes back): about 150 us of
/// sends.
const QUEUES_PER_POLL: usize = 32;
/// The list of queues to write keeps room for this many between passes.
const LIST_KEPT: usize = 1024;

/// The queues that have lines and nobody writing them, and the task that writes them.
#[derive(Debug, Default)]
pub struct Flusher {
    dirty: Mutex<Vec<Arc<Queue>>>,
    wake: Notify,
}

impl Flusher {
    pub fn new() -> Arc<Flusher> {
        Arc::new(Flusher::default())
    }

    /// Put a queue that just became non-empty (and had nobody writing it) on the list.
    pub(super) fn schedule(&self, queue: Arc<Queue>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        dirty.push(queue);
        let first = dirty.len() == 1;
        drop(dirty);
        if first {
            self.wake.notify_one();
        }
    }

    /// The flusher task: runs for as long as the runtime does.
    pub async fn run(self: Arc<Self>) {
        let mut batch = Batch::default();
        let mut list = Vec::new();
        // Queues written last pass that kept a large line buffer.
        // Weak: a session that ends meanwhile is not kept (nor its socket open) for this.
        let mut trim: Vec<Weak<Queue>> = Vec::new();
        loop {
            if trim.is_empty() {
                self.wake.notified().await;
            } else if tokio::time::timeout(TRIM_AFTER, self.wake.notified())
                .await
                .is_err()
            {
                // Quiet since the last pass: the burst is over, even if no push comes to wake
                // the flusher again (an idle server).
                trim.drain(..)
                    .filter_map(|q| q.upgrade())
                    .for_each(|q| q.trim());
                continue;
            }
            // Let the rest of this turn run first: the other sessions' lines and their fan-out
            // land in the queues before any of them is written.
            tokio::task::yield_now().await;
            let mut started = thread_cpu();
            let mut took = std::time::Duration::ZERO;
            // Those that got nothing since (their burst is over) give their buffer back.
            trim.drain(..)
                .filter_map(|q| q.upgrade())
                .for_each(|q| q.trim());
            // One pass writes the queues listed when it starts. The flusher lets the sessions
            // run every few queues: a line read meanwhile goes out in this pass to the queues
            // not yet written, and in the next one to the others, so that no line waits for a
            // whole pass to end before it is even read. A queue written in this pass and
            // pushed to again waits for the next pass.
            std::mem::swap(
                &mut list,
                &mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()),
            );
            let (mut writes, mut lines) = (0usize, 0usize);
            for (n, queue) in list.drain(..).enumerate() {
                let flushed = queue.flush(&mut batch);
                if flushed.large {
                    trim.push(Arc::downgrade(&queue));
                }
                if flushed.lines > 0 {
                    writes += 1;
                    lines += flushed.lines;
                }
                if n % QUEUES_PER_POLL == QUEUES_PER_POLL - 1 {
                    took += thread_cpu().saturating_sub(started);
                    tokio::task::yield_now().await;
                    started = thread_cpu();
                }
            }
            if list.capacity() > 4 * LIST_KEPT {
                list = Vec::new();
            }
            // A long pass means a busy server: give the sessions as long again to read and fan
            // out before the next one, so that each write carries more (at most half the CPU
            // goes to writing). Short passes (a quiet server) are followed at once. CPU time,
            // not wall time: a pass the scheduler interrupted (other processes on the machine)
            // is not a busy server, and pausing after it would only add latency. Only the
            // flusher's own: what the sessions did while it let them run is theirs.
            //
            // A short pass whose writes each carried several lines is a busy server too, one
            // whose queues are few or whose lines are small: without a pause its passes would
            // follow each other with a few lines a write, and stay too short to ever pause
            // (one room of 100 at full rate settled either way from run to run, at 13 or 75
            // deliveries a send: BENCHMARKS.md, fifth session). A quiet server's writes carry a
            // line or two, and are never held back.
            took += thread_cpu().saturating_sub(started);
            if took >= COALESCE_FROM || (writes > 0 && lines >= COALESCE_LINES * writes) {
                tokio::time::sleep(took.clamp(COALESCE_FROM, COALESCE_MAX)).await;
            }
        }
    }
}

/// What one [`Queue::flush`] did.
#[derive(Debug, Default)]
struct Flushed {
    /// Lines taken to be written (all of them, or what a blocked write left to the writer task).
    lines: usize,
    /// The queue is left with a line buffer over [`LINES_KEPT`], for [`Queue::trim`] to look at
    /// next pass.
    large: bool,
}

impl Queue {
    /// Write out what is queued, from the flusher, without blocking.
    fn flush(self: &Arc<Self>, batch: &mut Batch) -> Flushed {
        let mut flushed = Flushed::default();
        let Some(direct) = &self.direct else {
            return flushed;
        };
        loop {
            {
                let mut state = self.lock();
                if state.closed || state.handed_off {
                    state.flushing = false;
                    return flushed;
                }
                if state.lines.is_empty() {
                    state.flushing = false;
                    state.writer_waiting = true;
                    // Closing: the writer task waits for the flusher before it shuts down.
                    let closing = self.senders.load(Ordering::Acquire) == 0;
                    let large = state.lines.capacity() > LINES_KEPT;
                    drop(state);
                    if closing {
                        self.ready.notify_one();
                    }
                    flushed.large = large;
                    return flushed;
                }
                std::mem::swap(&mut state.lines, &mut batch.lines);
                flushed.lines += batch.lines.len();
                batch.framing = if state.websocket {
                    Framing::WebSocket
                } else {
                    Framing::Lines
                };
                // Nobody else holds lines of this queue: the bytes counted are all in them.
                batch.bytes = (self.max_bytes - state.room_bytes) as usize;
                // The lines stay counted (`room_bytes` is unchanged) until written.
                state.max_queued = self.max_frames - batch.lines.len() as u32;
                state.flushing = true;
            }
            let taken = batch.bytes;
            let rest = write_now(&direct.socket, batch);
            let mut state = self.lock();
            state.flushing = false;
            state.max_queued = self.max_frames;
            match rest {
                None => {
                    state.room_bytes += taken as u32;
                    if state.lines.is_empty() {
                        // Each queue keeps its own line buffer: steady traffic allocates
                        // nothing, and no queue is left holding another's large one.
                        std::mem::swap(&mut state.lines, &mut batch.lines);
                    }
                }
                Some(rest) => {
                    // What is left of the chunk goes out first, as it is (framed already); then
                    // the lines not yet written, in front of what was pushed meanwhile. The
                    // writer task takes over.
                    let mut raw = VecDeque::from([rest]);
                    if std::mem::take(&mut batch.header_sent) {
                        // A long line's WebSocket header is out: its payload is raw too.
                        if let Some(line) = batch.lines.pop_front() {
                            let payload = line.len() - usize::from(line.last() == Some(&b'\n'));
                            raw.push_back(line.slice(..payload));
                        }
                    }
                    batch.lines.extend(state.lines.drain(..));
                    std::mem::swap(&mut state.lines, &mut batch.lines);
                    batch.bytes = 0;
                    // Counted anew: what is held is what is left (framing changed the sizes).
                    let held: usize = raw.iter().map(Bytes::len).sum::<usize>()
                        + state.lines.iter().map(|l| l.len()).sum::<usize>();
                    state.raw = Some(Box::new(raw));
                    state.room_bytes = self.max_bytes.saturating_sub(held as u32);
                    state.handed_off = true;
                    drop(state);
                    // A finished task's handle may be replaced; a running one cannot be here
                    // (`handed_off` was false, and a task clears it last).
                    let task = tokio::spawn(write_handed(self.clone()));
                    *direct.handed.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                    return flushed;
                }
            }
        }
    }
}

impl Queue {
    /// Give back a line buffer over [`LINES_KEPT`] if nothing came since the last pass: a burst
    /// (a registration storm, a history reply) is over, and an idle session should hold next to
    /// nothing. A queue still in use keeps its buffer.
    fn trim(&self) {
        let mut state = self.lock();
        if state.lines.is_empty() && state.writer_waiting && state.lines.capacity() > LINES_KEPT {
            state.lines = VecDeque::new();
        }
    }
}

/// CPU time of the calling thread (the flusher reads it on each side of its yields every
/// [`QUEUES_PER_POLL`] queues, so a pass is never over-counted by the sessions' time nor by
/// another thread's). Zero where the clock is not available.
fn thread_cpu() -> std::time::Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

/// Write the batch without blocking. `None` when all of it was written (or the connection is
/// gone: the session sees that on its side); otherwise what is left of the chunk being written,
/// with the lines after it still in `batch`.
fn write_now(socket: &OwnedWriteHalf, batch: &mut Batch) -> Option<Bytes> {
    while let Some(chunk) = batch.next_chunk(WRITE_CHUNK) {
        let bytes: &[u8] = match &chunk {
            Chunk::Gathered(b) => b,
            Chunk::Line(b) => b,
        };
        match socket.try_write(bytes) {
            Ok(n) if n == bytes.len() => {}
            Ok(n) => return Some(Bytes::copy_from_slice(&bytes[n..])),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return Some(match chunk {
                    Chunk::Line(b) => b,
                    Chunk::Gathered(b) => Bytes::copy_from_slice(b),
                });
            }
            Err(_) => {
                // The connection is broken: what is left is dropped, as the writer task would.
                batch.lines.clear();
                batch.bytes = 0;
                batch.header_sent = false;
                return None;
            }
        }
    }
    None
}

/// The task a blocked write of the flusher's hands a queue to: it waits for the socket, writes
/// until the queue is empty, gives the queue back to the flusher and ends.
async fn write_handed(queue: Arc<Queue>) {
    let mut batch = Batch::new(queue.framing());
    loop {
        {
            let mut state = queue.lock();
            state.room_bytes += std::mem::take(&mut batch.counted_bytes);
            batch.counted_frames = 0;
            state.max_queued = queue.max_frames;
            if !queue.take_held(&mut state, &mut batch) {
                // Written out: the queue goes back to the flusher, and a session draining at its
                // end (which waits for this task) may go on.
                state.handed_off = false;
                state.writer_waiting = true;
                drop(state);
                queue.ready.notify_one();
                return;
            }
        }
        if queue.write_batch(&mut batch).await.is_err() {
            // The connection is broken: nothing more is written (the session sees it when it
            // reads), and pushes fail from now on, as after any writer's end.
            let mut state = queue.lock();
            state.closed = true;
            state.lines = VecDeque::new();
            state.raw = None;
            drop(state);
            queue.ready.notify_one();
            return;
        }
    }
}

impl Queue {
    /// How the writer frames this queue's lines.
    fn framing(&self) -> Framing {
        match self.lock().websocket {
            true => Framing::WebSocket,
            false => Framing::Lines,
        }
    }

    /// Take what is queued into `batch` (see [`Queue::take`]); false when nothing is.
    fn take_held(&self, state: &mut Pending, batch: &mut Batch) -> bool {
        if state.lines.is_empty() && state.raw.is_none() {
            return false;
        }
        self.take(state, batch);
        true
    }

    /// Write all of `batch` to the socket, waiting for it as needed.
    async fn write_batch(&self, batch: &mut Batch) -> std::io::Result<()> {
        let Some(direct) = &self.direct else {
            return Ok(());
        };
        while let Some(chunk) = batch.next_chunk(WRITE_CHUNK) {
            match chunk {
                Chunk::Gathered(bytes) => write_all(&direct.socket, bytes).await?,
                Chunk::Line(line) => write_all(&direct.socket, &line).await?,
            }
            self.written(batch);
        }
        Ok(())
    }
}

async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl OutboxReceiver {
    /// The end of a plain TCP session (every `Outbox` dropped): wait for the flusher and for a
    /// writer task a blocked write spawned, then write what is left. Dropping the receiver
    /// afterwards closes the socket's write side (the queue holds the write half).
    pub async fn drain(&mut self) {
        let queue = &*self.queue;
        let mut batch = Batch::new(queue.framing());
        loop {
            let mine = {
                let mut state = queue.lock();
                state.room_bytes += std::mem::take(&mut batch.counted_bytes);
                batch.counted_frames = 0;
                state.max_queued = queue.max_frames;
                if state.closed {
                    return;
                }
                let free = !state.flushing && !state.handed_off;
                if free {
                    if !queue.take_held(&mut state, &mut batch) {
                        return;
                    }
                    // The flusher may still hold this queue on its list: it must keep off.
                    state.handed_off = true;
                    state.writer_waiting = false;
                }
                free
            };
            if !mine {
                queue.ready.notified().await;
                continue;
            }
            if queue.write_batch(&mut batch).await.is_err() {
                return;
            }
            queue.lock().handed_off = false;
        }
    }

    /// Stop a writer task still waiting for the socket (a slow consumer's, or one past the
    /// grace given at the end).
    pub fn abort_writer(&self) {
        if let Some(direct) = &self.queue.direct {
            if let Some(task) = direct
                .handed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::{direct_outbox, Outbox, OutboxReceiver};
    use super::*;

    /// A direct outbox on one end of a loopback connection, its flusher running; the other end
    /// is returned for reading.
    async fn pair(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver, TcpStream) {
        framed_pair(max_frames, max_bytes, Framing::Lines).await
    }

    async fn framed_pair(
        max_frames: usize,
        max_bytes: usize,
        framing: Framing,
    ) -> (Outbox, OutboxReceiver, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_read, write) = accepted.unwrap().0.into_split();
        let flusher = Flusher::new();
        tokio::spawn(flusher.clone().run());
        let (outbox, receiver) = direct_outbox(max_frames, max_bytes, framing, flusher, write);
        // The read half is dropped: a TCP read half has nothing to close.
        (outbox, receiver, client.unwrap())
    }

    fn line(n: usize, len: usize) -> Bytes {
        let mut s = format!("{n:08}").into_bytes();
        s.resize(len - 1, b'.');
        s.push(b'\n');
        Bytes::from(s)
    }

    async fn read_lines(peer: &mut TcpStream, n: usize, len: usize) -> Vec<usize> {
        let mut buf = vec![0u8; n * len];
        tokio::time::timeout(Duration::from_secs(10), peer.read_exact(&mut buf))
            .await
            .expect("lines arrive")
            .unwrap();
        buf.chunks(len)
            .map(|l| std::str::from_utf8(&l[..8]).unwrap().parse().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_flusher_writes_pushed_lines_in_order() {
        let (outbox, _receiver, mut peer) = pair(1000, 1 << 20).await;
        for n in 0..100 {
            assert!(outbox.push(line(n, 40)));
        }
        assert_eq!(
            read_lines(&mut peer, 100, 40).await,
            (0..100).collect::<Vec<_>>()
        );
        // Idle again: the next push is written too.
        assert!(outbox.push(line(100, 40)));
        assert_eq!(read_lines(&mut peer, 1, 40).await, [100]);
    }

    /// More queues than the flusher writes between its yields, and lines pushed to all of them
    /// while it writes (the pusher runs at each of its yields): a queue written earlier in the
    /// pass gets the later lines in the next pass, the others in this one. Every reader gets
    /// every line, in order.
    #[tokio::test]
    async fn lines_pushed_during_a_pass_all_arrive_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flusher = Flusher::new();
        tokio::spawn(flusher.clone().run());
        let mut outboxes = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..3 * QUEUES_PER_POLL + 5 {
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let write = accepted.unwrap().0.into_split().1;
            let (outbox, receiver) =
                direct_outbox(1000, 1 << 20, Framing::Lines, flusher.clone(), write);
            outboxes.push((outbox, receiver));
            peers.push(client.unwrap());
        }
        let lines = 200;
        for n in 0..lines {
            for (outbox, _) in &outboxes {
                assert!(outbox.push(line(n, 40)));
            }
            tokio::task::yield_now().await;
        }
        for peer in &mut peers {
            assert_eq!(
                read_lines(peer, lines, 40).await,
                (0..lines).collect::<Vec<_>>()
            );
        }
    }

    /// A reader that stops reading fills the socket: the flusher's write would block, a writer
    /// task takes over and waits, and nothing is lost or reordered when the reader comes back;
    /// then the queue is the flusher's again and the writer task is gone.
    #[tokio::test]
    async fn a_full_socket_hands_the_queue_to_the_writer_task_and_back() {
        let len = 1000;
        let (outbox, _receiver, mut peer) = pair(100_000, 64 << 20).await;
        // Far more than loopback socket buffers hold (a few MB at most).
        let total = 20_000;
        for n in 0..total {
            assert!(outbox.push(line(n, len)), "line {n} fits the bounds");
            if n % 1000 == 999 {
                // Let the flusher run (and find the socket full).
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(
            read_lines(&mut peer, total, len).await,
            (0..total).collect::<Vec<_>>()
        );
        {
            let state = outbox.queue.lock();
            assert!(state.lines.is_empty() && !state.flushing);
        }
        assert!(outbox.push(line(total, len)));
        assert_eq!(read_lines(&mut peer, 1, len).await, [total]);
        assert!(!outbox.queue.lock().handed_off, "given back to the flusher");
        let task = outbox
            .queue
            .direct
            .as_ref()
            .unwrap()
            .handed
            .lock()
            .unwrap()
            .take();
        let task = task.expect("a writer task was spawned when the socket was full");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the writer task ends once the queue is empty")
            .unwrap();
    }

    /// A session that never fills its socket never has a writer task.
    #[tokio::test]
    async fn no_writer_task_while_the_socket_takes_everything() {
        let (outbox, _receiver, mut peer) = pair(1000, 1 << 20).await;
        for n in 0..10 {
            assert!(outbox.push(line(n, 40)));
            assert_eq!(read_lines(&mut peer, 1, 40).await, [n]);
        }
        let handed = outbox.queue.direct.as_ref().unwrap().handed.lock().unwrap();
        assert!(handed.is_none(), "no writer task");
    }

    /// The same hand-over for a WebSocket session: what the flusher could not write (part of a
    /// gathered chunk, a long line's header without its payload) goes out as it is, so every
    /// frame arrives whole and in order, lines of 100 KiB included.
    #[tokio::test]
    async fn a_full_socket_hands_framed_bytes_over_unchanged() {
        let (outbox, _receiver, mut peer) =
            framed_pair(100_000, 64 << 20, Framing::WebSocket).await;
        let lines: Vec<Bytes> = (0..3000)
            .map(|n| line(n, if n % 100 == 7 { 100_000 } else { 300 }))
            .collect();
        for (n, l) in lines.iter().enumerate() {
            assert!(outbox.push(l.clone()));
            if n % 50 == 49 {
                tokio::task::yield_now().await;
            }
        }
        for (n, want) in lines.iter().enumerate() {
            let mut head = [0u8; 2];
            tokio::time::timeout(Duration::from_secs(10), peer.read_exact(&mut head))
                .await
                .expect("a frame arrives")
                .unwrap();
            assert_eq!(head[0], 0x81, "frame {n}: FIN and text");
            let len = match head[1] {
                126 => usize::from(peer.read_u16().await.unwrap()),
                127 => peer.read_u64().await.unwrap() as usize,
                short => usize::from(short),
            };
            let mut payload = vec![0u8; len];
            peer.read_exact(&mut payload).await.unwrap();
            assert_eq!(payload, want[..want.len() - 1], "frame {n}");
        }
    }

    /// A session that ends while a writer task waits for its full socket: its drain waits for
    /// that task, then writes what is left, and the reader gets every line, in order, then EOF.
    #[tokio::test]
    async fn the_end_of_the_session_waits_for_a_writer_task_then_drains() {
        let len = 1000;
        let (outbox, mut receiver, mut peer) = pair(100_000, 64 << 20).await;
        let total = 20_000;
        for n in 0..total {
            assert!(outbox.push(line(n, len)));
            if n % 1000 == 999 {
                tokio::task::yield_now().await;
            }
        }
        // Lines far beyond what the socket buffers hold: the flusher's write blocked.
        let direct = outbox.queue.direct.as_ref().unwrap();
        let handed = || direct.handed.lock().unwrap().is_some();
        for _ in 0..1000 {
            if handed() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(handed(), "a writer task took the queue over");
        let queue = outbox.queue.clone();
        drop(outbox);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.map(|_| all)
        });
        tokio::time::timeout(Duration::from_secs(10), receiver.drain())
            .await
            .expect("the drain ends");
        drop(receiver);
        drop(queue);
        let all = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("closed after the lines")
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), total * len);
        let order: Vec<usize> = all
            .chunks(len)
            .map(|l| std::str::from_utf8(&l[..8]).unwrap().parse().unwrap())
            .collect();
        assert_eq!(order, (0..total).collect::<Vec<_>>());
    }

    /// Lines the flusher or the writer holds still count: a reader that never reads overflows
    /// the queue at its byte bound, not later.
    #[tokio::test]
    async fn a_reader_that_never_reads_overflows_the_bound() {
        let (outbox, receiver, _peer) = pair(1_000_000, 8 << 20).await;
        let mut pushed = 0usize;
        while outbox.push(line(pushed, 1000)) {
            pushed += 1;
            if pushed % 100 == 0 {
                tokio::task::yield_now().await;
            }
            assert!(pushed < 100_000, "never overflowed");
        }
        // The bound (8 MiB) plus what the kernel took (socket buffers, a few MiB at most).
        assert!((8_000..28_000).contains(&pushed), "{pushed} lines");
        assert_eq!(
            outbox.alarms().raised(),
            Some(super::super::Alarm::SlowConsumer)
        );
        receiver.abort_writer();
    }

    /// When the session ends, what is queued is written, then the connection is closed.
    #[tokio::test]
    async fn the_end_of_the_session_drains_then_closes() {
        let (outbox, mut receiver, mut peer) = pair(1000, 1 << 20).await;
        for n in 0..50 {
            assert!(outbox.push(line(n, 30)));
        }
        drop(outbox);
        tokio::time::timeout(Duration::from_secs(10), receiver.drain())
            .await
            .expect("the drain ends");
        drop(receiver);
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut all))
            .await
            .expect("closed after the lines")
            .unwrap();
        assert_eq!(all.len(), 50 * 30);
        assert!(all.starts_with(b"00000000") && all.ends_with(b".\n"));
    }
}
