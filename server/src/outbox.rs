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
//! nothing) and writes it in as few writes as it can (see [`Batch`]). The bound covers what is
//! queued; the batch the writer is writing is at most one queue's worth more.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    /// Wakes the session once, when the queue overflows (it then aborts the writer).
    overflowed: CancellationToken,
}

/// What the lock guards: the queued lines and the queue's flags.
#[derive(Debug, Default)]
struct Pending {
    lines: VecDeque<Bytes>,
    bytes: usize,
    max_frames: u32,
    max_bytes: u32,
    writer_waiting: bool,
    /// The writer is gone: nothing more will be read.
    closed: bool,
    /// A push failed for lack of room; no push succeeds after that.
    overflowed: bool,
}

/// Make a queue holding at most `max_frames` lines and `max_bytes` bytes.
pub fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let queue = Arc::new(Queue {
        state: Mutex::new(Pending {
            max_frames: u32::try_from(max_frames.max(1)).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            ..Pending::default()
        }),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
        overflowed: CancellationToken::new(),
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
        self.overflowed.cancel();
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
        let q = &*self.queue;
        let mut state = q.lock();
        if state.closed || state.overflowed {
            return false;
        }
        if state.lines.len() >= state.max_frames as usize
            || state.bytes + line.len() > state.max_bytes as usize
        {
            state.overflowed = true;
            drop(state);
            q.overflow();
            return false;
        }
        state.bytes += line.len();
        state.lines.push_back(line);
        let wake = std::mem::take(&mut state.writer_waiting);
        drop(state);
        if wake {
            q.ready.notify_one();
        }
        true
    }

    /// Cancelled once a push has failed for lack of room: the session ends as a slow consumer.
    pub fn overflow_token(&self) -> CancellationToken {
        self.queue.overflowed.clone()
    }
}

impl OutboxReceiver {
    /// Wait for lines and move all of them into `batch` (which must be empty). Returns false,
    /// with `batch` empty, once every `Outbox` is dropped and nothing is left. Before it waits
    /// on an empty queue it lets `batch` give back large buffers: an idle session holds little.
    pub async fn recv_batch(&mut self, batch: &mut Batch) -> bool {
        debug_assert!(batch.lines.is_empty());
        loop {
            {
                let mut state = self.queue.lock();
                if !state.lines.is_empty() {
                    std::mem::swap(&mut state.lines, &mut batch.lines);
                    batch.bytes = std::mem::take(&mut state.bytes);
                    return true;
                }
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
}

/// The writer's side: lines taken from the queue in one swap, and the buffer they are gathered
/// into for writing. The two sides trade line queues, so steady traffic allocates nothing.
#[derive(Debug, Default)]
pub struct Batch {
    lines: VecDeque<Bytes>,
    /// Bytes in `lines`.
    bytes: usize,
    buf: Vec<u8>,
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
    /// Take the next chunk of at most `max` bytes (or one longer line); `None` once empty.
    pub fn next_chunk(&mut self, max: usize) -> Option<Chunk<'_>> {
        let first = self.lines.front()?.len();
        if first >= max {
            self.bytes -= first;
            return self.lines.pop_front().map(Chunk::Line);
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
        state.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn take(rx: &mut OutboxReceiver) -> Vec<Bytes> {
        let mut batch = Batch::default();
        assert!(rx.recv_batch(&mut batch).await);
        batch.lines.into_iter().collect()
    }

    #[tokio::test]
    async fn bounded_by_frames_and_bytes() {
        let (tx, mut rx) = outbox(2, 1000);
        assert!(tx.push(Bytes::from_static(b"a\n")));
        assert!(tx.push(Bytes::from_static(b"b\n")));
        assert!(!tx.push(Bytes::from_static(b"c\n")));
        assert!(tx.overflow_token().is_cancelled());
        assert!(!tx.push(Bytes::from_static(b"d\n")), "stays overflowed");
        assert_eq!(take(&mut rx).await, ["a\n", "b\n"]);

        let (tx, mut rx) = outbox(100, 10);
        assert!(tx.push(Bytes::from(vec![b'x'; 6])));
        assert!(!tx.push(Bytes::from(vec![b'y'; 6])));
        assert_eq!(take(&mut rx).await.len(), 1);
        assert!(tx.overflow_token().is_cancelled());
    }

    #[tokio::test]
    async fn bytes_are_released_as_the_writer_drains() {
        let (tx, mut rx) = outbox(100, 10);
        for _ in 0..20 {
            assert!(tx.push(Bytes::from(vec![b'x'; 8])));
            assert_eq!(take(&mut rx).await.len(), 1);
        }
        assert!(!tx.overflow_token().is_cancelled());
    }

    #[tokio::test]
    async fn the_writer_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = outbox(100, 1000);
        let tx2 = tx.clone();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut batch = Batch::default();
            while rx.recv_batch(&mut batch).await {
                got.extend(batch.lines.drain(..));
            }
            got
        });
        assert!(tx.push(Bytes::from_static(b"1\n")));
        drop(tx);
        assert!(tx2.push(Bytes::from_static(b"2\n")));
        drop(tx2);
        assert_eq!(writer.await.unwrap(), ["1\n", "2\n"]);
    }

    #[tokio::test]
    async fn chunks_gather_small_lines_and_pass_long_ones_whole() {
        let (tx, mut rx) = outbox(100, 1000);
        for line in ["ab\n", "cd\n", "ef\n", "0123456789\n", "gh\n"] {
            assert!(tx.push(Bytes::from_static(line.as_bytes())));
        }
        let mut batch = Batch::default();
        assert!(rx.recv_batch(&mut batch).await);
        let mut got = Vec::new();
        while let Some(chunk) = batch.next_chunk(7) {
            got.push(match chunk {
                Chunk::Gathered(b) => format!("gathered {}", String::from_utf8_lossy(b)),
                Chunk::Line(b) => format!("line {}", String::from_utf8_lossy(&b)),
            });
        }
        assert_eq!(
            got,
            [
                "gathered ab\ncd\n",
                "gathered ef\n",
                "line 0123456789\n",
                "gathered gh\n"
            ]
        );
        assert!(batch.lines.is_empty());
        assert_eq!(batch.bytes, 0);
    }

    #[test]
    fn a_push_touches_one_cache_line() {
        assert!(std::mem::size_of::<Mutex<Pending>>() <= 64);
        assert_eq!(std::mem::offset_of!(Queue, state), 0);
        assert_eq!(std::mem::align_of::<Queue>(), 64);
    }

    #[tokio::test]
    async fn pushes_fail_once_the_writer_is_gone() {
        let (tx, rx) = outbox(100, 1000);
        drop(rx);
        assert!(!tx.push(Bytes::from_static(b"x\n")));
        assert!(
            !tx.overflow_token().is_cancelled(),
            "a closed queue is not a slow consumer"
        );
    }
}
