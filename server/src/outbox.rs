//! A session's bounded outbound queue: encoded lines waiting for that session's writer task.
//!
//! Bounded twice, by frames and by bytes, because either alone lets a slow reader hold a lot of
//! memory (many tiny frames, or a few 200-message history replies). A push never waits: when the
//! queue is full the push fails, the queue is marked overflowed, and the session ends as a slow
//! consumer, so no sender and no other session is ever delayed by one slow reader.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The sending side; cheap to clone (one per room the session is in).
#[derive(Clone, Debug)]
pub struct Outbox {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Bytes>,
}

#[derive(Debug)]
struct Inner {
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    /// Checked on every push: a plain flag, since a token's check takes a lock.
    full: AtomicBool,
    /// Wakes the session and its writer once, when the queue overflows.
    overflowed: CancellationToken,
}

impl Inner {
    fn overflow(&self) {
        self.full.store(true, Ordering::Relaxed);
        self.overflowed.cancel();
    }
}

/// The receiving side, owned by the session's writer task.
#[derive(Debug)]
pub struct OutboxReceiver {
    inner: Arc<Inner>,
    rx: mpsc::Receiver<Bytes>,
}

/// Make a queue holding at most `max_frames` lines and `max_bytes` bytes.
pub fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::channel(max_frames.max(1));
    let inner = Arc::new(Inner {
        queued_bytes: AtomicUsize::new(0),
        max_bytes,
        full: AtomicBool::new(false),
        overflowed: CancellationToken::new(),
    });
    (
        Outbox {
            inner: inner.clone(),
            tx,
        },
        OutboxReceiver { inner, rx },
    )
}

impl Outbox {
    /// Queue a line without waiting. Returns false if the line was not queued: the queue
    /// overflowed (now or before) or the writer is gone.
    pub fn push(&self, line: Bytes) -> bool {
        if self.inner.full.load(Ordering::Relaxed) {
            return false;
        }
        let len = line.len();
        let queued = self.inner.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > self.inner.max_bytes {
            self.inner.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            self.inner.overflow();
            return false;
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(err) => {
                self.inner.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                if matches!(err, mpsc::error::TrySendError::Full(_)) {
                    self.inner.overflow();
                }
                false
            }
        }
    }

    /// Completes once a push has failed for lack of room.
    pub async fn overflowed(&self) {
        self.inner.overflowed.cancelled().await
    }

    pub fn is_overflowed(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }
}

impl OutboxReceiver {
    /// The next line, or `None` once every `Outbox` handle is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let line = self.rx.recv().await?;
        self.inner
            .queued_bytes
            .fetch_sub(line.len(), Ordering::Relaxed);
        Some(line)
    }

    /// A line already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let line = self.rx.try_recv().ok()?;
        self.inner
            .queued_bytes
            .fetch_sub(line.len(), Ordering::Relaxed);
        Some(line)
    }

    /// Cancelled once the queue has overflowed: the writer stops at once, the session is dropped.
    pub fn overflow_token(&self) -> CancellationToken {
        self.inner.overflowed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_frames_and_bytes() {
        let (tx, mut rx) = outbox(2, 1000);
        assert!(tx.push(Bytes::from_static(b"a\n")));
        assert!(tx.push(Bytes::from_static(b"b\n")));
        assert!(!tx.push(Bytes::from_static(b"c\n")));
        assert!(tx.is_overflowed());
        assert!(!tx.push(Bytes::from_static(b"d\n")), "stays overflowed");
        assert_eq!(rx.recv().await.unwrap(), "a\n");

        let (tx, mut rx) = outbox(100, 10);
        assert!(tx.push(Bytes::from(vec![b'x'; 6])));
        assert!(!tx.push(Bytes::from(vec![b'y'; 6])));
        assert_eq!(rx.recv().await.unwrap().len(), 6);
        assert!(tx.is_overflowed());
    }

    #[tokio::test]
    async fn bytes_are_released_as_the_writer_drains() {
        let (tx, mut rx) = outbox(100, 10);
        for _ in 0..20 {
            assert!(tx.push(Bytes::from(vec![b'x'; 8])));
            assert_eq!(rx.try_recv().unwrap().len(), 8);
        }
        assert!(!tx.is_overflowed());
    }
}
