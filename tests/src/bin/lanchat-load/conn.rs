//! One client connection of any protocol: connect, register, join rooms, and the small
//! request/reply waits of the setup phase. The hot loops of a run live in `fanout.rs`; they use
//! the same buffers directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use crate::lines::LineReader;
use crate::proto::{Event, Proto};

/// Every setup step must finish within this (a registration, a join).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection's byte stream: plain TCP, or TLS pinned to the server's certificate
/// (`--tls FINGERPRINT`, to measure what encryption costs the server).
pub type Stream = Either<TcpStream, TlsStream<TcpStream>>;

pub struct Conn {
    pub proto: Proto,
    pub stream: Stream,
    pub lines: LineReader,
    /// Pending output, written by `flush`.
    pub out: Vec<u8>,
    pub nick: String,
    /// A WebSocket (`--ws`): `flush` sends each line of `out` as a masked text frame, made here.
    websocket: Option<Framer>,
}

/// Client frames for `--ws`: masked, as RFC 6455 requires of a client.
struct Framer {
    framed: Vec<u8>,
    /// xorshift32: masks that change from frame to frame (they need not be secret here).
    mask: u32,
}

impl Framer {
    fn frame_lines(&mut self, out: &[u8]) -> &[u8] {
        self.framed.clear();
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.framed.push(0x81);
            match line.len() {
                n if n < 126 => self.framed.push(0x80 | n as u8),
                n if n <= 0xFFFF => {
                    self.framed.push(0x80 | 126);
                    self.framed.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    self.framed.push(0x80 | 127);
                    self.framed.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            self.mask ^= self.mask << 13;
            self.mask ^= self.mask >> 17;
            self.mask ^= self.mask << 5;
            let mask = self.mask.to_be_bytes();
            self.framed.extend_from_slice(&mask);
            self.framed
                .extend(line.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        &self.framed
    }
}

/// Upgrade a connection to a WebSocket on `/ws` (no Origin: not a browser).
async fn upgrade(stream: &mut Stream, addr: SocketAddr) -> anyhow::Result<()> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
    let request = lanchat_tests::ws::upgrade_request(&addr.to_string(), None, &key);
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 256];
    while !head.ends_with(b"\r\n\r\n") {
        // The answer's head only: the server sends nothing more before the hello.
        let want = if head.len() < 4 {
            1
        } else {
            1.max(4 - trailing_crlf(&head))
        };
        let n = stream.read(&mut byte[..want]).await?;
        anyhow::ensure!(n > 0, "closed during the WebSocket upgrade");
        head.extend_from_slice(&byte[..n]);
        anyhow::ensure!(head.len() < 4096, "no end to the upgrade's answer");
    }
    let text = String::from_utf8_lossy(&head);
    anyhow::ensure!(text.starts_with("HTTP/1.1 101 "), "upgrade refused: {text}");
    let accept = lanchat_tests::ws::accept_key(&key);
    anyhow::ensure!(text.contains(&accept), "bad Sec-WebSocket-Accept: {text}");
    Ok(())
}

/// How many bytes of `\r\n\r\n` the head ends with.
fn trailing_crlf(head: &[u8]) -> usize {
    (1..=3)
        .rev()
        .find(|&n| head.ends_with(&b"\r\n\r\n"[..n]))
        .unwrap_or(0)
}

/// IRC operator credentials, used to set user mode +F (no flood throttling) on senders.
#[derive(Clone, Debug)]
pub struct Oper {
    pub name: String,
    pub password: String,
}

/// What a setup wait does with one line.
enum Step {
    Continue,
    Done,
}

impl Conn {
    pub async fn connect(
        proto: Proto,
        addr: SocketAddr,
        nick: String,
        read_buffer: usize,
        tls: Option<&Arc<ClientConfig>>,
        websocket: bool,
    ) -> anyhow::Result<Conn> {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "refusing to connect to {addr}: the generator only talks to loopback"
        );
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut stream = match tls {
            None => Either::Left(stream),
            Some(config) => {
                let name = ServerName::try_from("lanchat").expect("a valid DNS name");
                let handshake = TlsConnector::from(config.clone()).connect(name, stream);
                let tls = tokio::time::timeout(STEP_TIMEOUT, handshake)
                    .await
                    .context("TLS handshake timed out")?
                    .context("TLS handshake")?;
                Either::Right(tls)
            }
        };
        if websocket {
            tokio::time::timeout(STEP_TIMEOUT, upgrade(&mut stream, addr))
                .await
                .context("WebSocket upgrade timed out")??;
        }
        Ok(Conn {
            proto,
            stream,
            lines: if websocket {
                LineReader::websocket(read_buffer)
            } else {
                LineReader::new(read_buffer)
            },
            out: Vec::with_capacity(512),
            nick,
            websocket: websocket.then(|| Framer {
                framed: Vec::with_capacity(512),
                mask: 0x9E37_79B9,
            }),
        })
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            match &mut self.websocket {
                None => self.stream.write_all(&self.out).await?,
                Some(framer) => {
                    let framed = framer.frame_lines(&self.out);
                    self.stream.write_all(framed).await?
                }
            }
            self.out.clear();
        }
        Ok(())
    }

    /// Flush, then read lines (answering pings) until `f` says done. `f` sees the raw line and
    /// its classification and returns an error to abort.
    async fn wait<F>(&mut self, what: &str, mut f: F) -> anyhow::Result<()>
    where
        F: FnMut(&[u8], &Event) -> anyhow::Result<Step>,
    {
        self.flush().await?;
        let proto = self.proto;
        let work = async {
            loop {
                let mut done = false;
                while let Some(line) = self.lines.next_line() {
                    let ev = proto.classify(line);
                    match &ev {
                        Event::Ping(arg) => proto.pong(&mut self.out, arg),
                        Event::Closed => bail!("server closed: {}", String::from_utf8_lossy(line)),
                        _ => {}
                    }
                    if let Step::Done = f(line, &ev)? {
                        done = true;
                        break;
                    }
                }
                self.flush().await?;
                if done {
                    return Ok(());
                }
                if self.lines.fill(&mut self.stream).await? == 0 {
                    bail!("connection closed by the server");
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, work)
            .await
            .with_context(|| format!("{what} of {} timed out", self.nick))?
            .with_context(|| format!("{what} of {}", self.nick))
    }

    /// Register. lanchat: `hello` with `"autojoin":false`, so that registering thousands of
    /// clients does not make every one of them receive everybody's `join` event (and the
    /// default room left, should the server have joined it anyway: one without the extension).
    /// IRC:
    /// NICK/USER until 001, and with `oper`, OPER plus MODE +F. Redis: a PING round trip.
    pub async fn register(&mut self, oper: Option<&Oper>) -> anyhow::Result<()> {
        match self.proto {
            Proto::Redis => {
                // A PING round trip: the server has accepted and set up the client.
                crate::proto::resp_command(&mut self.out, &[b"PING"]);
                self.replies("PING", 1).await
            }
            Proto::Lanchat => {
                // Typed, not a `serde_json::Value` each way: registering is the whole of the
                // idle scenario, and the generator (one core) must not be what limits its rate.
                #[derive(serde::Serialize)]
                struct Hello<'a> {
                    r#type: &'static str,
                    nick: &'a str,
                    client: &'static str,
                    autojoin: bool,
                }
                #[derive(serde::Deserialize)]
                struct Welcome {
                    #[serde(default)]
                    rooms: Vec<String>,
                }
                let hello = Hello {
                    r#type: "hello",
                    nick: &self.nick,
                    client: "lanchat-load",
                    autojoin: false,
                };
                serde_json::to_writer(&mut self.out, &hello)?;
                self.out.push(b'\n');
                let mut rooms: Vec<String> = Vec::new();
                self.wait("hello", |line, ev| match ev {
                    Event::Reply { ok: true } => {
                        // `autojoin:false` honoured: no room to leave, and nothing to parse
                        // (a lanchat client has no more to do on a welcome than a Redis one
                        // on a PONG). A server without the extension named its default room.
                        if memchr::memmem::find(line, b"\"rooms\":[]").is_none() {
                            let welcome: Welcome = serde_json::from_slice(line)?;
                            rooms = welcome.rooms;
                        }
                        Ok(Step::Done)
                    }
                    Event::Reply { ok: false } => bail!("{}", String::from_utf8_lossy(line)),
                    _ => Ok(Step::Continue),
                })
                .await?;
                let n = rooms.len();
                for r in &rooms {
                    self.proto.leave(&mut self.out, r);
                }
                self.replies("leave the default room", n).await
            }
            Proto::Irc => {
                let nick = self.nick.clone();
                self.out.extend_from_slice(
                    format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes(),
                );
                self.wait("registration", |line, _| irc_numeric(line, &["001"]))
                    .await?;
                if let Some(op) = oper {
                    self.out.extend_from_slice(
                        format!("OPER {} {}\r\nMODE {nick} +F\r\n", op.name, op.password)
                            .as_bytes(),
                    );
                    self.wait("OPER", |line, _| irc_numeric(line, &["381"]))
                        .await?;
                    self.wait("MODE +F", |line, _| {
                        if irc_error(line) {
                            bail!("{}", String::from_utf8_lossy(line));
                        }
                        let is_mode =
                            line.windows(6).any(|w| w == b" MODE ") && line.ends_with(b"+F");
                        Ok(if is_mode { Step::Done } else { Step::Continue })
                    })
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// Join (subscribe to) every room in `rooms` and wait until all are confirmed.
    pub async fn join(&mut self, rooms: &[&str]) -> anyhow::Result<()> {
        match self.proto {
            Proto::Lanchat => {
                for r in rooms {
                    self.proto.join(&mut self.out, r);
                }
                self.replies("join", rooms.len()).await
            }
            Proto::Redis => {
                let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
                args.extend(rooms.iter().map(|r| r.as_bytes()));
                crate::proto::resp_command(&mut self.out, &args);
                self.replies("subscribe", rooms.len()).await
            }
            Proto::Irc => {
                let list: Vec<String> = rooms.iter().map(|r| format!("#{r}")).collect();
                self.out
                    .extend_from_slice(format!("JOIN {}\r\n", list.join(",")).as_bytes());
                let mut left = rooms.len();
                self.wait("join", |line, _| {
                    if let Step::Done = irc_numeric(line, &["366"])? {
                        left -= 1;
                    }
                    Ok(if left == 0 {
                        Step::Done
                    } else {
                        Step::Continue
                    })
                })
                .await
            }
        }
    }

    /// Leave one room and wait for the confirmation.
    pub async fn leave(&mut self, room: &str) -> anyhow::Result<()> {
        self.proto.leave(&mut self.out, room);
        match self.proto {
            Proto::Lanchat | Proto::Redis => self.replies("leave", 1).await,
            Proto::Irc => {
                self.wait("part", |line, _| {
                    if irc_error(line) {
                        bail!("{}", String::from_utf8_lossy(line));
                    }
                    let sp = line.iter().position(|&b| b == b' ').unwrap_or(0);
                    Ok(if line[sp..].starts_with(b" PART ") {
                        Step::Done
                    } else {
                        Step::Continue
                    })
                })
                .await
            }
        }
    }

    /// Wait for `n` replies (lanchat `ok`, RESP integers); any error reply fails.
    async fn replies(&mut self, what: &str, n: usize) -> anyhow::Result<()> {
        let mut left = n;
        if left == 0 {
            return self.flush().await.map_err(Into::into);
        }
        self.wait(what, |line, ev| match ev {
            Event::Reply { ok: true } => {
                left -= 1;
                Ok(if left == 0 {
                    Step::Done
                } else {
                    Step::Continue
                })
            }
            Event::Reply { ok: false } => bail!("{}", String::from_utf8_lossy(line)),
            _ => Ok(Step::Continue),
        })
        .await
    }
}

/// The numeric of an IRC server line `:server NNN ...`, if it has one.
fn numeric(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b":")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(sp + 1..sp + 4)?;
    (code.iter().all(u8::is_ascii_digit) && rest.get(sp + 4).is_none_or(|&b| b == b' '))
        .then_some(code)
}

fn irc_error(line: &[u8]) -> bool {
    matches!(numeric(line), Some([b'4' | b'5', ..]))
}

fn irc_numeric(line: &[u8], want: &[&str]) -> anyhow::Result<Step> {
    if irc_error(line) {
        bail!("{}", String::from_utf8_lossy(line));
    }
    Ok(match numeric(line) {
        Some(code) if want.iter().any(|w| w.as_bytes() == code) => Step::Done,
        _ => Step::Continue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irc_numerics() {
        assert_eq!(numeric(b":srv 001 nick :Welcome"), Some(&b"001"[..]));
        assert_eq!(numeric(b":a!b@c PRIVMSG #r :x"), None);
        assert!(irc_error(b":srv 433 * nick :Nickname already in use"));
        assert!(!irc_error(b":srv 366 nick #r :End of NAMES list"));
    }
}
