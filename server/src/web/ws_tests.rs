use super::*;

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { FIN } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
    out
}

/// A codec attached to an outbox, and the receiver to see its replies.
fn codec(max_line: usize) -> (WsCodec, crate::outbox::OutboxReceiver, Outbox) {
    let (tx, rx) = crate::outbox::outbox(100, 100_000);
    let mut c = WsCodec::new(max_line);
    c.attach(&tx);
    (c, rx, tx)
}

/// Feed `bytes` in pieces of `step` and collect every item; the error, if one ends it.
fn decode_all(c: &mut WsCodec, bytes: &[u8], step: usize) -> (Vec<Line>, Option<std::io::Error>) {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in bytes.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match c.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

/// The replies the codec queued, as the writer would send them.
fn replies(rx: &mut crate::outbox::OutboxReceiver) -> Vec<u8> {
    use futures::FutureExt;
    let mut batch = crate::outbox::Batch::new(Framing::WebSocket);
    let mut out = Vec::new();
    while rx.recv_batch(&mut batch).now_or_never() == Some(true) {
        while let Some(chunk) = batch.next_chunk(64 * 1024) {
            match chunk {
                crate::outbox::Chunk::Gathered(b) => out.extend_from_slice(b),
                crate::outbox::Chunk::Line(b) => out.extend_from_slice(&b),
            }
        }
        rx.written(&mut batch);
    }
    out
}

fn frame_line(bytes: &[u8]) -> Line {
    Line::Frame(BytesMut::from(bytes))
}

#[test]
fn the_accept_key_of_rfc_6455() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn server_frame_headers_at_the_length_boundaries() {
    for (len, head) in [
        (0, vec![0x81, 0]),
        (125, vec![0x81, 125]),
        (126, vec![0x81, 126, 0, 126]),
        (65535, vec![0x81, 126, 0xff, 0xff]),
        (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let (h, used) = header(OP_TEXT, len);
        assert_eq!(&h[..used], &head[..], "{len}");
        assert_eq!(header_len(len), used, "{len}");
    }
    // The test vectors of PROTOCOL.md ("WebSocket transport").
    let ping = frame(OP_TEXT, br#"{"type":"ping"}"#);
    assert_eq!(
        hex(&ping),
        "81 0f 7b 22 74 79 70 65 22 3a 22 70 69 6e 67 22 7d"
    );
    assert_eq!(hex(&close_frame(close::NORMAL, "")), "88 02 03 e8");
}

fn hex(bytes: &[u8]) -> String {
    let digits: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    digits.join(" ")
}

#[test]
fn the_client_frame_of_protocol_md() {
    let bytes = [
        0x81, 0x8f, 0x37, 0xfa, 0x21, 0x3d, 0x4c, 0xd8, 0x55, 0x44, 0x47, 0x9f, 0x03, 0x07, 0x15,
        0x8a, 0x4e, 0x53, 0x50, 0xd8, 0x5c,
    ];
    let (mut c, _rx, _tx) = codec(1000);
    let (items, err) = decode_all(&mut c, &bytes, usize::MAX);
    assert!(err.is_none());
    assert_eq!(items, [frame_line(br#"{"type":"pong"}"#)]);
}

#[test]
fn client_frames_at_the_length_boundaries_in_any_pieces() {
    for len in [1, 125, 126, 127, 65535, 65536] {
        let text = vec![b'a'; len];
        let (mut c, _rx, _tx) = codec(100_000);
        for step in [1, 7, usize::MAX] {
            let (items, err) = decode_all(&mut c, &client_frame(true, OP_TEXT, &text), step);
            assert!(err.is_none(), "{len}");
            assert_eq!(items, [frame_line(&text)], "{len} in pieces of {step}");
        }
    }
}

#[test]
fn fragments_make_one_line_with_control_frames_between() {
    let (mut c, mut rx, _tx) = codec(1000);
    let mut bytes = client_frame(false, OP_TEXT, b"{\"type\":");
    bytes.extend(client_frame(true, OP_PING, b"hi"));
    bytes.extend(client_frame(false, OP_CONTINUATION, b"\"pi"));
    bytes.extend(client_frame(true, OP_PONG, b""));
    bytes.extend(client_frame(true, OP_CONTINUATION, b"ng\"}"));
    bytes.extend(client_frame(true, OP_TEXT, b"{}"));
    bytes.extend(client_frame(true, OP_TEXT, b""));
    for step in [1, 3, usize::MAX] {
        let (items, err) = decode_all(&mut c, &bytes, step);
        assert!(err.is_none());
        assert_eq!(
            items,
            [frame_line(br#"{"type":"ping"}"#), frame_line(b"{}")]
        );
        assert_eq!(replies(&mut rx), [0x8a, 2, b'h', b'i'], "the ping's pong");
    }
}

#[test]
fn an_overlong_message_is_one_too_long_and_never_buffered() {
    // One frame over the limit: told at its header, before its payload arrives.
    let (mut c, _rx, _tx) = codec(100);
    let big = client_frame(true, OP_TEXT, &[b'x'; 101]);
    let (items, _) = decode_all(&mut c, &big[..8], usize::MAX);
    assert_eq!(items, [Line::TooLong]);
    let mut rest = big[8..].to_vec();
    rest.extend(client_frame(true, OP_TEXT, b"{}"));
    let (items, _) = decode_all(&mut c, &rest, 5);
    assert_eq!(items, [frame_line(b"{}")], "the next message is read");

    // Fragments whose sum passes the limit: one TooLong, the rest skipped, pings answered.
    let (mut c, mut rx, _tx) = codec(100);
    let mut bytes = client_frame(false, OP_TEXT, &[b'a'; 60]);
    bytes.extend(client_frame(false, OP_CONTINUATION, &[b'b'; 60]));
    bytes.extend(client_frame(true, OP_PING, b""));
    bytes.extend(client_frame(false, OP_CONTINUATION, &[b'c'; 60]));
    bytes.extend(client_frame(true, OP_CONTINUATION, &[b'd'; 60]));
    bytes.extend(client_frame(true, OP_TEXT, &[b'e'; 100]));
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in bytes.chunks(9) {
        buf.extend_from_slice(piece);
        while let Some(item) = c.decode(&mut buf).unwrap() {
            items.push(item);
        }
        assert!(
            buf.len() + c.assembled() <= 2 * (100 + 14),
            "held {}",
            buf.len()
        );
    }
    assert_eq!(items, [Line::TooLong, frame_line(&[b'e'; 100])]);
    assert_eq!(replies(&mut rx), [0x8a, 0]);
}

#[test]
fn rule_breakers_get_a_close_with_their_code() {
    let unmasked = {
        let mut f = frame(OP_TEXT, b"{}").to_vec();
        f[1] &= 0x7f;
        f
    };
    let cases: [(Vec<u8>, u16); 7] = [
        (unmasked, close::PROTOCOL_ERROR),
        (client_frame(true, OP_BINARY, b"\x00"), close::UNSUPPORTED),
        (client_frame(true, 0x3, b""), close::PROTOCOL_ERROR),
        (client_frame(false, OP_PING, b""), close::PROTOCOL_ERROR),
        (
            client_frame(true, OP_PING, &[0; 126]),
            close::PROTOCOL_ERROR,
        ),
        (
            client_frame(true, OP_CONTINUATION, b"x"),
            close::PROTOCOL_ERROR,
        ),
        (
            client_frame(true, OP_TEXT, b"\xff\xfe"),
            close::INVALID_DATA,
        ),
    ];
    for (bytes, code) in cases {
        let (mut c, mut rx, _tx) = codec(1000);
        let (items, err) = decode_all(&mut c, &bytes, usize::MAX);
        assert!(items.is_empty());
        assert!(err.is_some(), "{code}");
        let sent = replies(&mut rx);
        assert_eq!(sent[0], 0x88, "{code}: a close");
        assert_eq!(u16::from_be_bytes([sent[2], sent[3]]), code);
        assert!(c.outbox.is_none(), "let go of the outbox");
    }
}

#[test]
fn a_close_is_answered_with_its_code() {
    let (mut c, mut rx, _tx) = codec(1000);
    let (_, err) = decode_all(&mut c, &client_frame(true, OP_CLOSE, &[0x03, 0xe9]), 1);
    assert!(err.is_some());
    assert_eq!(replies(&mut rx), [0x88, 2, 0x03, 0xe9]);
}

#[test]
fn the_session_end_sends_the_close() {
    let (mut c, mut rx, _tx) = codec(1000);
    c.finish(&End::Bye(ByeReason::PingTimeout, "x".into()));
    assert_eq!(replies(&mut rx), [0x88, 2, 0x03, 0xe8]);
    let (mut c, mut rx, _tx) = codec(1000);
    c.finish(&End::Lost);
    assert!(replies(&mut rx).is_empty());
}

#[test]
fn lines_go_out_as_text_frames_long_ones_in_two_writes() {
    let (tx, mut rx) = crate::outbox::outbox(100, 1_000_000);
    tx.push(Bytes::from_static(b"{\"a\":1}\n"));
    tx.push(close_frame(close::NORMAL, ""));
    let long = format!("{{\"t\":\"{}\"}}\n", "x".repeat(70_000));
    tx.push(Bytes::from(long.clone()));
    let mut batch = crate::outbox::Batch::new(Framing::WebSocket);
    use futures::FutureExt;
    assert_eq!(rx.recv_batch(&mut batch).now_or_never(), Some(true));
    let mut chunks = Vec::new();
    while let Some(chunk) = batch.next_chunk(64 * 1024) {
        chunks.push(match chunk {
            crate::outbox::Chunk::Gathered(b) => b.to_vec(),
            crate::outbox::Chunk::Line(b) => b.to_vec(),
        });
    }
    let mut first = vec![0x81, 7];
    first.extend_from_slice(b"{\"a\":1}");
    first.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
    assert_eq!(chunks[0], first);
    let payload = long.len() - 1;
    assert_eq!(chunks[1][..2], [0x81, 127]);
    assert_eq!(chunks[1][2..], (payload as u64).to_be_bytes());
    assert_eq!(chunks[2], long.as_bytes()[..payload]);
    assert_eq!(chunks.len(), 3);
}
