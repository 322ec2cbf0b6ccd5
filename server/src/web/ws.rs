//! The WebSocket side of the chat port (RFC 6455): the handshake's accept key, the frames the
//! server sends (unmasked), and [`WsCodec`], which turns the client's frames into the same
//! [`Line`] items as the JSON-lines codec, so that one session loop serves both transports.
//!
//! One text message is one protocol line. A message longer than the line limit is one
//! [`Line::TooLong`] (the session replies `line_too_long`, as for an overlong TCP line) and the
//! rest of it is skipped as it arrives, never buffered: a frame is held whole only while the
//! message it belongs to is within the limit, so the codec holds at most the limit twice (the
//! message so far and one frame of it). Pings are answered with pongs, a close with a close; a
//! frame that breaks the RFC (unmasked, binary, reserved bits or opcodes, a long or fragmented
//! control frame, text that is not UTF-8) gets a close with its code and ends the session.

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use lanchat_protocol::Line;
use sha1::{Digest, Sha1};
use tokio_util::codec::Decoder;
use tracing::debug;

use crate::dispatch::End;
use crate::outbox::{Framing, Outbox};
use crate::session::Transport;
use lanchat_protocol::ByeReason;

/// The GUID every accept key is derived with (RFC 6455, 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;
/// FIN: the last (or only) frame of a message.
const FIN: u8 = 0x80;
/// The longest payload of a control frame.
pub const MAX_CONTROL: usize = 125;

/// Close codes the server sends (RFC 6455, 7.4.1).
pub mod close {
    /// Normal closure: after a `bye`, or in answer to the client's close.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the RFC (unmasked, reserved bits or opcode, bad fragmentation).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary message: the protocol is text.
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The header of an unmasked frame with FIN set: at most 10 bytes, and how many are used. It
/// depends only on the opcode and the payload's length.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = FIN | opcode;
    let used = if len < 126 {
        h[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, used)
}

/// The bytes a header for `len` payload bytes takes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// A protocol line as one unmasked text frame, its LF left out: what the writer of a WebSocket
/// session would send for it, made once for every WebSocket member of a room.
pub fn text_frame(line: &[u8]) -> Bytes {
    frame(OP_TEXT, line.strip_suffix(b"\n").unwrap_or(line))
}

/// A whole unmasked frame (a control frame, or a text frame in tests and examples).
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let (h, used) = header(opcode, payload.len());
    let mut out = BytesMut::with_capacity(used + payload.len());
    out.extend_from_slice(&h[..used]);
    out.extend_from_slice(payload);
    out.freeze()
}

/// A close frame with its code and a short reason (cut to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    frame(OP_CLOSE, &payload)
}

/// Decoder of the client's frames into lines (see the module's doc). Control replies go out
/// through the session's outbox, pre-framed: see [`Framing::WebSocket`].
#[derive(Debug)]
pub struct WsCodec {
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    /// Where pongs and closes go; `None` before the session attaches it and after the close.
    outbox: Option<Outbox>,
    /// The text message being assembled from its fragments, if it came in more than one. Boxed:
    /// the codec sits in every session's future, and fragmented messages are rare.
    fragments: Option<Box<BytesMut>>,
    max_line: u32,
    /// A text message has begun and its last fragment has not come.
    in_message: bool,
    /// The message in progress passed the limit: its remaining fragments are skipped.
    discarding: bool,
}

/// How a frame ended the connection: the close code sent, and why (for the log).
fn failure(code: u16, why: &'static str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("websocket {code}: {why}"),
    )
}

impl WsCodec {
    pub fn new(max_line: usize) -> WsCodec {
        WsCodec {
            skip: 0,
            outbox: None,
            fragments: None,
            max_line: u32::try_from(max_line).unwrap_or(u32::MAX),
            in_message: false,
            discarding: false,
        }
    }

    /// Bytes of the message assembled so far.
    fn assembled(&self) -> usize {
        self.fragments.as_ref().map_or(0, |m| m.len())
    }

    /// Queue a pre-framed reply; false once the outbox is gone or full (the session then ends
    /// as a slow consumer, as for any line).
    fn reply(&self, frame: Bytes) -> bool {
        self.outbox.as_ref().is_some_and(|o| o.push(frame))
    }

    /// Send a close with `code` and end the session: the codec's error ends the read loop.
    fn fail(&mut self, code: u16, why: &'static str) -> std::io::Error {
        debug!(code, why, "websocket closed by the server");
        self.reply(close_frame(code, why));
        self.outbox = None;
        failure(code, why)
    }
}

impl Transport for WsCodec {
    fn framing(&self) -> Framing {
        Framing::WebSocket
    }

    fn attach(&mut self, outbox: &Outbox) {
        self.outbox = Some(outbox.clone());
    }

    fn finish(&mut self, end: &End) {
        // After a bye (or quit) the close follows it; a lost or failed connection has sent
        // its close already, if any; a slow consumer's writer is stopped.
        let code = match end {
            End::Bye(ByeReason::ShuttingDown, _) => Some(close::GOING_AWAY),
            End::Bye(..) | End::Quit(..) => Some(close::NORMAL),
            End::Lost | End::SlowConsumer => None,
        };
        if let Some(code) = code {
            self.reply(close_frame(code, ""));
        }
        // The writer finishes once every handle on the outbox is gone: this is the last.
        self.outbox = None;
    }
}

impl Decoder for WsCodec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                buf.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            if buf.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (buf[0], buf[1]);
            let (fin, opcode) = (b0 & FIN != 0, b0 & 0x0F);
            if b0 & 0x70 != 0 {
                return Err(self.fail(close::PROTOCOL_ERROR, "reserved bits set"));
            }
            if b1 & 0x80 == 0 {
                return Err(self.fail(close::PROTOCOL_ERROR, "client frames must be masked"));
            }
            let (len_bytes, len7) = match b1 & 0x7F {
                126 => (2, None),
                127 => (8, None),
                n => (0, Some(n as u64)),
            };
            let head = 2 + len_bytes + 4;
            if buf.len() < head {
                return Ok(None);
            }
            let len = match len7 {
                Some(n) => n,
                None if len_bytes == 2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
                None => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
            };
            if len >> 63 != 0 {
                return Err(self.fail(close::PROTOCOL_ERROR, "length out of range"));
            }
            let mask: [u8; 4] = buf[head - 4..head].try_into().expect("4 bytes");
            match opcode {
                OP_CLOSE | OP_PING | OP_PONG => {
                    if !fin || len > MAX_CONTROL as u64 {
                        return Err(self.fail(close::PROTOCOL_ERROR, "bad control frame"));
                    }
                    let len = len as usize;
                    if buf.len() < head + len {
                        return Ok(None);
                    }
                    buf.advance(head);
                    let mut payload = buf.split_to(len);
                    unmask(&mut payload, mask, 0);
                    match opcode {
                        OP_PING => {
                            self.reply(frame(OP_PONG, &payload));
                        }
                        OP_CLOSE => return Err(self.closed_by_peer(&payload)),
                        _ => {}
                    }
                }
                OP_TEXT | OP_CONTINUATION => {
                    if (opcode == OP_TEXT) == self.in_message {
                        return Err(self.fail(close::PROTOCOL_ERROR, "bad fragmentation"));
                    }
                    if self.discarding {
                        buf.advance(head);
                        self.skip = len;
                        self.in_message = !fin;
                        self.discarding = !fin;
                        continue;
                    }
                    if self.assembled() as u64 + len > u64::from(self.max_line) {
                        // Told now, skipped as it arrives: nothing of it is kept.
                        buf.advance(head);
                        self.skip = len;
                        self.in_message = !fin;
                        self.discarding = !fin;
                        self.fragments = None;
                        return Ok(Some(Line::TooLong));
                    }
                    let len = len as usize;
                    if buf.len() < head + len {
                        buf.reserve(head + len - buf.len());
                        return Ok(None);
                    }
                    buf.advance(head);
                    self.in_message = !fin;
                    let line = if self.fragments.is_none() && fin {
                        let mut payload = buf.split_to(len);
                        unmask(&mut payload, mask, 0);
                        payload
                    } else {
                        let message = self.fragments.get_or_insert_with(Default::default);
                        let start = message.len();
                        message.extend_from_slice(&buf[..len]);
                        buf.advance(len);
                        unmask(&mut message[start..], mask, 0);
                        if !fin {
                            continue;
                        }
                        *self.fragments.take().expect("assembled above")
                    };
                    if std::str::from_utf8(&line).is_err() {
                        return Err(self.fail(close::INVALID_DATA, "text is not UTF-8"));
                    }
                    // An empty message is an empty line: nothing.
                    if !line.is_empty() {
                        return Ok(Some(Line::Frame(line)));
                    }
                }
                OP_BINARY => {
                    return Err(self.fail(close::UNSUPPORTED, "binary messages are not accepted"))
                }
                _ => return Err(self.fail(close::PROTOCOL_ERROR, "reserved opcode")),
            }
        }
    }
}

impl WsCodec {
    /// The client's close: answer it (echoing a valid code) and end the session.
    fn closed_by_peer(&mut self, payload: &[u8]) -> std::io::Error {
        let code = match payload {
            [] => close::NORMAL,
            [a, b, ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
                if valid && std::str::from_utf8(&payload[2..]).is_ok() {
                    code
                } else {
                    close::PROTOCOL_ERROR
                }
            }
            [_] => close::PROTOCOL_ERROR,
        };
        self.reply(close_frame(code, ""));
        self.outbox = None;
        failure(code, "closed by the client")
    }
}

/// XOR `data` with the mask, as if it started `offset` bytes into the masked payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    // Word at a time: a chat line is short, a history-sized one is not.
    let mut i = 0;
    let rotated = u32::from_ne_bytes([
        mask[offset % 4],
        mask[(offset + 1) % 4],
        mask[(offset + 2) % 4],
        mask[(offset + 3) % 4],
    ]);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let word = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ rotated;
        chunk.copy_from_slice(&word.to_ne_bytes());
        i += 4;
    }
    for (j, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[(offset + i + j) % 4];
    }
}

#[cfg(test)]
#[path = "ws_tests.rs"]
mod tests;
