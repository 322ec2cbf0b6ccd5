use futures::FutureExt;

use super::*;

async fn take(rx: &mut OutboxReceiver) -> Vec<Bytes> {
    let mut batch = Batch::default();
    assert!(rx.recv_batch(&mut batch).await);
    batch.lines.into_iter().map(|l| Bytes::clone(&l)).collect()
}

#[tokio::test]
async fn bounded_by_frames_and_bytes() {
    let (tx, mut rx) = outbox(2, 1000);
    assert!(tx.push(Bytes::from_static(b"a\n")));
    assert!(tx.push(Bytes::from_static(b"b\n")));
    assert!(!tx.push(Bytes::from_static(b"c\n")));
    assert_eq!(tx.alarms().raised(), Some(Alarm::SlowConsumer));
    assert!(!tx.push(Bytes::from_static(b"d\n")), "stays overflowed");
    assert_eq!(take(&mut rx).await, ["a\n", "b\n"]);

    let (tx, mut rx) = outbox(100, 10);
    assert!(tx.push(Bytes::from(vec![b'x'; 6])));
    assert!(!tx.push(Bytes::from(vec![b'y'; 6])));
    assert_eq!(take(&mut rx).await.len(), 1);
    assert_eq!(tx.alarms().raised(), Some(Alarm::SlowConsumer));
}

/// Frames and bytes counted against the bounds: queued, and taken by the writer.
fn held(rx: &OutboxReceiver) -> (usize, usize) {
    let state = rx.queue.lock();
    (
        state.lines.len() + (rx.queue.max_frames - state.max_queued) as usize,
        (rx.queue.max_bytes - state.room_bytes) as usize,
    )
}

/// What the writer task does with a batch, the socket aside: write each chunk in turn, then
/// come back for more, find the queue empty and wait (the test does not).
fn write_batch(rx: &mut OutboxReceiver, batch: &mut Batch, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = batch.next_chunk(chunk) {
        match c {
            Chunk::Gathered(b) => out.extend_from_slice(b),
            Chunk::Line(b) => out.extend_from_slice(&b),
        }
        rx.written(batch);
    }
    assert!(rx.recv_batch(batch).now_or_never().is_none(), "queue empty");
    out
}

fn line(fill: u8, len: usize) -> Bytes {
    Bytes::from(vec![fill; len])
}

#[tokio::test]
async fn bytes_are_released_as_the_writer_drains() {
    let (tx, mut rx) = outbox(100, 10);
    let mut batch = Batch::default();
    for _ in 0..20 {
        assert!(tx.push(line(b'x', 8)));
        assert!(rx.recv_batch(&mut batch).await);
        assert_eq!(write_batch(&mut rx, &mut batch, 64).len(), 8);
        assert_eq!(held(&rx), (0, 0));
    }
    assert_eq!(tx.alarms().raised(), None);
}

/// A reader that stops reading leaves its writer stuck in a write with a batch in hand: what
/// it holds counts, so the session holds one bound's worth, not one in the batch plus one
/// queued.
#[tokio::test]
async fn a_writer_that_writes_nothing_holds_its_batch_against_the_bound() {
    let (tx, mut rx) = outbox(100, 100);
    assert!(tx.push(line(b'a', 60)));
    let mut batch = Batch::default();
    assert!(rx.recv_batch(&mut batch).await);
    let _stuck = batch.next_chunk(64 * 1024);
    assert!(tx.push(line(b'b', 30)));
    assert_eq!(held(&rx), (2, 90));
    assert!(!tx.push(line(b'c', 20)), "60 taken + 30 queued + 20 > 100");
    assert_eq!(tx.alarms().raised(), Some(Alarm::SlowConsumer));

    let (tx, mut rx) = outbox(3, 1000);
    assert!(tx.push(line(b'a', 2)));
    assert!(tx.push(line(b'b', 2)));
    let mut batch = Batch::default();
    assert!(rx.recv_batch(&mut batch).await);
    assert!(tx.push(line(b'c', 2)));
    assert!(!tx.push(line(b'd', 2)), "2 taken + 1 queued frames = 3");
    assert_eq!(tx.alarms().raised(), Some(Alarm::SlowConsumer));
}

#[tokio::test]
async fn a_chunk_stops_counting_once_it_is_written() {
    let (tx, mut rx) = outbox(100, 100);
    for fill in *b"abcd" {
        assert!(tx.push(line(fill, 20)));
    }
    let mut batch = Batch::default();
    assert!(rx.recv_batch(&mut batch).await);
    assert!(tx.push(line(b'e', 20)));
    assert_eq!(held(&rx), (5, 100), "full: 80 taken, 20 queued");

    assert!(matches!(batch.next_chunk(40), Some(Chunk::Gathered(b)) if b.len() == 40));
    assert_eq!(held(&rx), (5, 100), "a chunk being written still counts");
    rx.written(&mut batch);
    assert_eq!(held(&rx), (3, 60));
    assert!(tx.push(line(b'f', 40)));

    // The batch's last chunk comes back when the writer returns for more.
    assert!(batch.next_chunk(40).is_some());
    rx.written(&mut batch);
    assert!(rx.recv_batch(&mut batch).await);
    assert_eq!(held(&rx), (2, 60), "e and f, taken");
    assert!(tx.push(line(b'g', 40)));
    assert!(!tx.push(line(b'h', 1)));
    assert_eq!(tx.alarms().raised(), Some(Alarm::SlowConsumer));
}

#[tokio::test]
async fn the_writer_ends_when_every_sender_is_gone() {
    let (tx, mut rx) = outbox(100, 1000);
    let tx2 = tx.clone();
    let writer = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut batch = Batch::default();
        while rx.recv_batch(&mut batch).await {
            got.extend(batch.lines.drain(..).map(|l| Bytes::clone(&l)));
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
        tx.alarms().raised().is_none(),
        "a closed queue is not a slow consumer"
    );
}

/// A room's event goes to a WebSocket session as one text frame made once for all of them (the
/// same allocation), and to a TCP session as the line itself.
#[tokio::test]
async fn a_line_for_many_is_framed_once_for_websocket_sessions() {
    let (ws, mut ws_rx) = framed_outbox(10, 1000, Framing::WebSocket);
    let (ws2, mut ws2_rx) = framed_outbox(10, 1000, Framing::WebSocket);
    let (tcp, mut tcp_rx) = outbox(10, 1000);
    let line = LineRef::new(Bytes::from_static(b"{\"type\":\"message\"}\n"));
    let mut framed = None;
    assert!(ws.push_shared(&line, &mut framed));
    assert!(tcp.push_shared(&line, &mut framed));
    assert!(ws2.push_shared(&line, &mut framed));
    let frame = framed.expect("framed for the WebSocket sessions");
    assert_eq!(&frame[..], &b"\x81\x12{\"type\":\"message\"}"[..]);
    assert_eq!(take(&mut tcp_rx).await, [Bytes::clone(&line)]);
    for rx in [&mut ws_rx, &mut ws2_rx] {
        let got = take(rx).await;
        assert_eq!(
            got[0].as_ptr(),
            frame.as_ptr(),
            "the same frame, not a copy"
        );
        // The writer sends it as it is.
        let mut batch = Batch::new(Framing::WebSocket);
        batch.lines.extend(got.into_iter().map(LineRef::new));
        batch.bytes = frame.len();
        let chunk = match batch.next_chunk(64 * 1024) {
            Some(Chunk::Gathered(b)) => b.to_vec(),
            Some(Chunk::Line(b)) => b.to_vec(),
            None => panic!("a chunk"),
        };
        assert_eq!(chunk, frame[..]);
    }
}
