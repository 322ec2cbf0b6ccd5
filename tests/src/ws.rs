//! A WebSocket client (RFC 6455, client side) for the tests and the load generator: the upgrade
//! with its accept-key check, masked frames out, unmasked frames in, and [`lines`], which makes a
//! WebSocket look like a JSON-lines socket so that a [`TestClient`] drives it unchanged. Also a
//! one-request HTTP client ([`http_request`]) for the web app's pages.
//!
//! Hand-written (it is small) rather than a library, so that tests can also send what a library
//! refuses to: unmasked frames, binary messages, overlong or split messages.

use base64::Engine;
use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf,
    WriteHalf,
};
use tokio::task::JoinHandle;

use crate::{TestClient, WAIT};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame (`None` without one).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A response to one HTTP request, read to the end (the server closes after it).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Header names (lowercase) and values.
type Headers = Vec<(String, String)>;

/// Split a response head from what follows it: its status, its headers and its length; `None`
/// until the head is complete.
fn split_head(buf: &[u8]) -> Option<(u16, Headers, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, end))
}

/// Send `request` (the whole request, head and blank line) and read the response to EOF.
pub async fn http_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> Response {
    stream.write_all(request).await.expect("write request");
    stream.flush().await.expect("flush request");
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server closes after its answer")
        .expect("read the answer");
    let (status, headers, end) = split_head(&all).unwrap_or_else(|| {
        panic!(
            "no HTTP response head in {:?}",
            String::from_utf8_lossy(&all)
        )
    });
    Response {
        status,
        headers,
        body: all[end..].to_vec(),
    }
}

/// A plain `GET path` with a `Host` header.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lanchat-tests\r\n\r\n").into_bytes()
}

/// The `Sec-WebSocket-Accept` for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Bytes that differ from one call to the next (masks and keys need not be secret here).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let n = chunk.len();
        chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..n]);
    }
    out
}

/// The upgrade request for `/ws`, with `Origin` when given.
pub fn upgrade_request(host: &str, origin: Option<&str>, key: &str) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
}

/// A client WebSocket over any stream.
pub struct WsConn<S> {
    pub reader: WsReader<ReadHalf<S>>,
    pub writer: WsWriter<WriteHalf<S>>,
}

/// The receiving half: frames from the server.
pub struct WsReader<R> {
    inner: R,
    buf: BytesMut,
}

/// The sending half: masked frames to the server.
pub struct WsWriter<W> {
    inner: W,
}

/// Upgrade `stream` to a WebSocket (`Host` as given, `Origin` when given). The refusal's
/// response when the server answers anything but 101.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    origin: Option<&str>,
) -> Result<WsConn<S>, Response> {
    upgrade_sending(stream, host, origin, &[]).await
}

/// [`upgrade`], with `early` (frames) written together with the request, before the answer.
pub async fn upgrade_sending<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    origin: Option<&str>,
    early: &[u8],
) -> Result<WsConn<S>, Response> {
    let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<16>());
    let mut request = upgrade_request(host, origin, &key).into_bytes();
    request.extend_from_slice(early);
    stream.write_all(&request).await.expect("write upgrade");
    stream.flush().await.expect("flush upgrade");
    let mut buf = BytesMut::new();
    let (status, headers, end) = loop {
        if let Some(head) = split_head(&buf) {
            break head;
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("an answer to the upgrade in time")
            .expect("read the upgrade's answer");
        assert!(n > 0, "closed before answering the upgrade");
    };
    if status != 101 {
        let mut body = buf[end..].to_vec();
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut body)).await;
        return Err(Response {
            status,
            headers,
            body,
        });
    }
    let accept = headers.iter().find(|(n, _)| n == "sec-websocket-accept");
    assert_eq!(
        accept.map(|(_, v)| v.as_str()),
        Some(accept_key(&key).as_str())
    );
    buf.advance(end);
    let (r, w) = tokio::io::split(stream);
    Ok(WsConn {
        reader: WsReader { inner: r, buf },
        writer: WsWriter { inner: w },
    })
}

/// A client frame's bytes: `masked` as the RFC requires (tests also send unmasked ones).
pub fn encode(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask: [u8; 4] = random_bytes();
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// Send raw bytes (frames made with [`encode`], or anything else).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes).await?;
        self.inner.flush().await
    }

    /// Send one masked frame.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.send_raw(&encode(fin, opcode, payload, true)).await
    }

    /// Send one text message.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send(true, OP_TEXT, text.as_bytes()).await
    }
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// The next frame, or `None` at EOF. Panics when none comes within [`WAIT`], or when the
    /// server masks a frame (it must not).
    pub async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("a WebSocket frame in time")
    }

    /// The next frame without a time limit (the load generator's reader).
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.parse() {
                return Some(frame);
            }
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
        let (head, len) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            ),
            126 | 127 => return None,
            n => (2, n as usize),
        };
        if b.len() < head + len {
            self.buf.reserve(head + len - b.len());
            return None;
        }
        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0F);
        self.buf.advance(head);
        let payload = self.buf.split_to(len).to_vec();
        Some(Frame {
            fin,
            opcode,
            payload,
        })
    }

    /// Read frames until the server's close; its code. Panics at EOF without one.
    pub async fn until_close(&mut self) -> (Vec<Frame>, u16) {
        let mut before = Vec::new();
        loop {
            let frame = self.frame().await.expect("a close frame before EOF");
            if frame.opcode == OP_CLOSE {
                return (before, frame.close_code().unwrap_or(1005));
            }
            before.push(frame);
        }
    }

    /// After the close: the server closes the connection.
    pub async fn expect_eof(&mut self) {
        let frame = self.frame().await;
        assert!(frame.is_none(), "a frame after the close: {frame:?}");
    }
}

/// What [`lines`] saw when the WebSocket ended: the close code, if the server sent a close.
pub type Ended = JoinHandle<Option<u16>>;

/// Carry a WebSocket as JSON lines: a [`TestClient`] whose lines go out as text messages and
/// whose incoming text messages come in as lines. Two tasks pump the two directions; the
/// returned handle ends with the server's close code once the server closes.
pub fn lines<S>(conn: WsConn<S>, nick: &str) -> (TestClient<DuplexStream>, Ended)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (near, far) = tokio::io::duplex(256 * 1024);
    let (far_r, mut far_w) = tokio::io::split(far);
    let WsConn {
        mut reader,
        mut writer,
    } = conn;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(far_r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if writer.send_text(&line).await.is_err() {
                break;
            }
        }
    });
    let ended = tokio::spawn(async move {
        while let Some(frame) = reader.next().await {
            match frame.opcode {
                OP_TEXT => {
                    assert!(frame.fin, "the server sends each line as one frame");
                    let mut line = frame.payload;
                    assert!(!line.contains(&b'\n'), "no LF in a message");
                    line.push(b'\n');
                    if far_w.write_all(&line).await.is_err() {
                        return None;
                    }
                }
                OP_CLOSE => {
                    let _ = far_w.shutdown().await;
                    return Some(frame.close_code().unwrap_or(1005));
                }
                other => panic!("unexpected frame opcode {other}"),
            }
        }
        let _ = far_w.shutdown().await;
        None
    });
    let mut client = TestClient::from_stream(near);
    client.nick = nick.to_owned();
    (client, ended)
}
